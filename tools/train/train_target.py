#!/usr/bin/python3
"""Train the qwen35-architecture target of the bundled tiny model (model.py Target) on the tokenized corpus.

Seeded and resumable: the data of step s depends only on (seed, s); OUT/target.ckpt holds model, optimizer
and step and is rewritten every --ckpt-every steps; a rerun with the same arguments continues from it.
--steps fixes the length; --time-budget S instead measures the first steps and picks the largest step count
that fits in S seconds (the chosen count is logged and stored: pass it as --steps to reproduce the run).

  train_target.py --data DIR --out DIR [--preset full|tiny] [--steps N | --time-budget S] [--device cuda]
Outputs: OUT/target.ckpt (resume), OUT/target.pt (weights + config), OUT/target.json (log, eval).
"""
import argparse, json, math, os, time

import torch
import torch.nn.functional as F

import common
from common import log, tqdm
from model import Target, TargetConfig, config_dict


@torch.no_grad()
def evaluate(model, toks, seq, batch, device, limit=None, bf16=False):
    """Mean next-token loss (nats) over non-overlapping held-out windows of seq tokens."""
    model.eval()
    wins = common.eval_windows(toks, seq, limit)
    tot, n = 0.0, 0
    for i in range(0, len(wins), batch):
        x = torch.stack(wins[i:i + batch]).to(device)
        with common.amp(device, bf16):
            logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), x[:, 1:].reshape(-1), reduction="sum")
        tot += loss.item()
        n += x[:, 1:].numel()
    model.train()
    return tot / max(1, n)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dir with train.bin, test.bin, tokens.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", default="full", choices=sorted(common.TARGET_PRESETS))
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--time-budget", type=float, default=0, help="seconds; picks --steps from measured speed")
    ap.add_argument("--max-tokens", type=float, default=0, help="with --time-budget: cap steps at this many tokens")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=0, help="default: the preset's ctx_train")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=0)
    ap.add_argument("--eval-windows", type=int, default=64, help="held-out windows for the periodic eval")
    ap.add_argument("--final-eval-windows", type=int, default=0, help="limit the final held-out eval (0 = all)")
    ap.add_argument("--shards", default="", help="also write fp16 weight shards with this path prefix")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the matmuls (fp32 weights, optimizer,"
                    " loss and GDN recurrence); the periodic evals too, the final eval stays fp32")
    args = ap.parse_args()
    common.setup(args)
    os.makedirs(args.out, exist_ok=True)

    cfg = TargetConfig(n_vocab=args.vocab, **common.TARGET_PRESETS[args.preset])
    seq = args.seq or cfg.ctx_train
    dev = torch.device(args.device)
    model = Target(cfg).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(common.param_groups(model, args.wd, no_decay=("embed",)), lr=args.lr,
                            betas=(0.9, 0.95), eps=1e-8)
    train = common.load_tokens(args.data, "train")
    test = common.load_tokens(args.data, "test")
    ck_path = os.path.join(args.out, "target.ckpt")
    step, total, history, elapsed = 0, args.steps, [], 0.0
    if os.path.exists(ck_path):
        ck = torch.load(ck_path, map_location=dev)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, total, history, elapsed = ck["step"], ck["total"], ck["history"], ck["elapsed"]
        log("target: resumed at step %d of %d" % (step, total))
    if not total and not args.time_budget:
        raise SystemExit("train_target: give --steps or --time-budget")
    log("target: %s, %.2fM params, %d train tokens, batch %d x %d, %d steps, device %s%s, %d threads"
        % (args.preset, n_params / 1e6, len(train), args.batch, seq, total, args.device,
           " (bf16 autocast)" if args.bf16 else "", torch.get_num_threads()))

    def save_ckpt():
        common.save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                            "total": total, "history": history, "elapsed": elapsed}, ck_path)

    bar = tqdm(total=total or 1, initial=step, desc="target", dynamic_ncols=True)
    t_start = time.time() - elapsed
    t_probe = None
    ema = None
    while not total or step < total:
        if not total:
            # time-budget mode: measure steps 3..10 (after warm-up), then fix the step count
            if step == 3:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t_probe = time.time()
            if step == 11:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                per = (time.time() - t_probe) / 8
                total = max(12, int((args.time_budget - (time.time() - t_start)) / per) + step)
                if args.max_tokens:
                    total = min(total, int(args.max_tokens / (args.batch * seq)))
                bar.total = total
                log("\ntarget: %.3f s/step -> --steps %d" % (per, total))
        lr = common.lr_at(step, total or 10 ** 9, args.lr, args.warmup)
        for gr in opt.param_groups:
            gr["lr"] = lr
        x = common.train_windows(train, step, args.seed, args.batch, seq).to(dev)
        with common.amp(dev, args.bf16):
            logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, cfg.n_vocab).float(), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        lv = loss.item()
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        bar.update(1)
        bar.set_postfix_str("loss %.3f lr %.2e gn %.2f" % (ema, lr, float(gn)))
        if step % 50 == 0:
            history.append({"step": step, "loss": round(ema, 4), "lr": lr, "time": round(time.time() - t_start, 1)})
        if args.eval_every and step % args.eval_every == 0:
            ev = evaluate(model, test, seq, args.batch, dev, args.eval_windows, args.bf16)
            history.append({"step": step, "test_loss": round(ev, 4), "test_ppl": round(math.exp(ev), 2)})
            log("\ntarget: step %d held-out loss %.4f ppl %.2f" % (step, ev, math.exp(ev)))
        elapsed = time.time() - t_start
        if step % args.ckpt_every == 0:
            save_ckpt()
    bar.close()
    elapsed = time.time() - t_start
    save_ckpt()

    ev = evaluate(model, test, seq, args.batch, dev, args.final_eval_windows or None)
    stats = json.load(open(os.path.join(args.data, "tokens.json")))
    bpt = ev / math.log(2)
    result = {"preset": args.preset, "params": n_params, "config": config_dict(cfg), "args": vars(args),
              "steps": step, "tokens_seen": step * args.batch * seq, "train_seconds": round(elapsed, 1),
              "test_loss": ev, "test_ppl": math.exp(ev), "test_bits_per_byte": bpt / stats["test"]["bytes_per_token"],
              "history": history}
    log("target: %d steps in %.0f s; held-out loss %.4f, ppl %.2f, %.3f bits/byte"
        % (step, elapsed, ev, math.exp(ev), result["test_bits_per_byte"]))
    torch.save({"config": config_dict(cfg), "model": model.state_dict()}, os.path.join(args.out, "target.pt"))
    common.write_json(os.path.join(args.out, "target.json"), result)
    if args.shards:
        common.save_shards(model.state_dict(), args.shards)
        common.write_json(args.shards + ".json", {"config": config_dict(cfg), "result": result})


if __name__ == "__main__":
    main()
