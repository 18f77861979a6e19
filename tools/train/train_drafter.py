#!/usr/bin/python3
"""Train the DFlash drafter of the bundled tiny model on the frozen target (DFlash recipe, specs/dflash.md).

1. Data: the target's own greedy continuations (as SpecForge regenerates training data with the target):
   --gen-seqs prompts of --gen-prompt tokens, drawn from the training corpus with the seed, each continued
   greedily to --seq tokens. Stored in OUT/gen-train.bin (and --gen-test held-out ones from test.bin in
   OUT/gen-test.bin, used to estimate the acceptance length). --gen-seqs 0 trains on corpus windows.
2. Per step: target tap features of each sequence (no grad); --anchors anchor positions P (shared by the
   batch) each make a block [x_P, MASK x 15] at positions P..P+15; block rows see the fused context features
   of positions < P and every row of their own block; row j predicts x_{P+j} through the target's frozen LM
   head (no target output norm); loss = cross-entropy weighted by exp(-(j-1)/gamma).
Reported: per-position accuracy and the acceptance length it implies, 1 + E[leading correct drafts].

  train_drafter.py --data DIR --tok TOK.json --target OUT/target.pt --out DIR [--steps N | --time-budget S]
Outputs: OUT/drafter.ckpt (resume), OUT/drafter.pt (weights + config), OUT/drafter.json (log, eval).
"""
import argparse, json, math, os, time

import numpy as np
import torch
import torch.nn.functional as F

import common
from common import log, tqdm
from model import Target, TargetConfig, Drafter, DraftConfig, config_dict, generate


def load_target(args, dev):
    ck = common.load_weights(args.target)
    cfg, state = TargetConfig(**ck["config"]), ck["model"]
    model = Target(cfg)
    model.load_state_dict(state)
    model.to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, cfg


def make_gen(model, toks, n, prompt, seq, seed, batch, dev, path, desc):
    if os.path.exists(path):
        return torch.from_numpy(np.fromfile(path, dtype=np.uint16).astype(np.int64)).view(-1, seq)
    rng = np.random.default_rng([seed, 7])
    starts = rng.integers(0, len(toks) - prompt, size=n)
    out = []
    bar = tqdm(total=n, desc=desc, dynamic_ncols=True)
    for i in range(0, n, batch):
        p = torch.stack([toks[s:s + prompt] for s in starts[i:i + batch]]).to(dev)
        out.append(generate(model, p, seq - prompt).cpu())
        bar.update(len(p))
    bar.close()
    data = torch.cat(out)
    data.numpy().astype(np.uint16).tofile(path + ".tmp")
    os.replace(path + ".tmp", path)
    return data


def block_batch(x, anchors, bs, mask_id):
    """x [B,T] tokens; anchors [A] -> block tokens [B, A*bs], labels [B, A, bs-1], positions [A*bs]."""
    B, T = x.shape
    offs = torch.arange(bs, device=x.device)
    idx = anchors[:, None] + offs[None, :]                               # [A, bs]
    blk = torch.full((B, len(anchors), bs), mask_id, dtype=x.dtype, device=x.device)
    blk[:, :, 0] = x[:, anchors]
    labels = x[:, idx[:, 1:]]                                            # [B, A, bs-1]
    return blk.view(B, -1), labels, idx.reshape(-1)


def block_mask(anchors, bs, T, dev):
    """[1, A*bs, T + A*bs]: block rows see context p < P_a and all rows of their own block."""
    A = len(anchors)
    ctx = torch.arange(T, device=dev)[None, :] < anchors[:, None]        # [A, T]
    ctx = ctx[:, None, :].expand(A, bs, T).reshape(A * bs, T)
    own = torch.block_diag(*[torch.ones(bs, bs, dtype=torch.bool, device=dev)] * A)
    return torch.cat([ctx, own], dim=1)[None]


def drafter_loss(drafter, target, x, anchors, cfg, feats=None):
    B, T = x.shape
    bs = cfg.block_size
    if feats is None:
        with torch.no_grad():
            _, feats = target(x, taps=tuple(cfg.target_layer_ids), taps_only=True)
    blk, labels, pos_blk = block_batch(x, anchors, bs, cfg.mask_token_id)
    with torch.no_grad():
        emb = target.embed(blk)
    mask = block_mask(anchors, bs, T, x.device)
    h = drafter(feats, emb, pos_blk, torch.arange(T, device=x.device), mask)      # [B, A*bs, E]
    h = h.view(B, len(anchors), bs, -1)[:, :, 1:]                                   # rows 1..bs-1
    logits = target.lm_head(h).float()                                              # [B, A, bs-1, V]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    ce = ce.view(B, len(anchors), bs - 1)
    correct = logits.argmax(-1) == labels                                            # [B, A, bs-1]
    return ce, correct


def accept_len(correct):
    """1 + mean number of leading correct drafts (what greedy chain verification would accept)."""
    lead = torch.cumprod(correct.long(), dim=-1).sum(-1).float()
    return 1.0 + lead.mean().item()


def pick_anchors(rng, lo, T, bs, A):
    hi = T - bs                                                          # P + bs - 1 <= T - 1
    n = min(A, hi - lo + 1)
    return np.sort(rng.choice(np.arange(lo, hi + 1), size=n, replace=False))


@torch.no_grad()
def evaluate(drafter, target, data, cfg, lo, batch, dev, A, bf16=False):
    drafter.eval()
    pos_acc = torch.zeros(cfg.block_size - 1)
    n, lens = 0, []
    rng = np.random.default_rng(99)
    for i in range(0, len(data), batch):
        x = data[i:i + batch].to(dev)
        anchors = torch.from_numpy(pick_anchors(rng, lo, x.shape[1], cfg.block_size, A)).to(dev)
        with common.amp(dev, bf16):
            _, correct = drafter_loss(drafter, target, x, anchors, cfg)
        pos_acc += correct.float().sum((0, 1)).cpu()
        n += correct.shape[0] * correct.shape[1]
        lens.append((accept_len(correct), correct.shape[0] * correct.shape[1]))
    drafter.train()
    tau = sum(l * w for l, w in lens) / max(1, sum(w for _, w in lens))
    return (pos_acc / max(1, n)).tolist(), tau


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--tok", required=True)
    ap.add_argument("--target", required=True, help="target.pt of train_target.py, or its --shards prefix")
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", default="full", choices=sorted(common.DRAFT_PRESETS))
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--time-budget", type=float, default=0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=0, help="default: the target's ctx_train")
    ap.add_argument("--anchors", type=int, default=16)
    ap.add_argument("--gamma", type=float, default=7.0, help="loss weight exp(-(j-1)/gamma) of block row j")
    ap.add_argument("--gen-seqs", type=int, default=1024)
    ap.add_argument("--gen-test", type=int, default=64)
    ap.add_argument("--gen-prompt", type=int, default=64)
    ap.add_argument("--gen-batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=4321)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=0)
    ap.add_argument("--shards", default="")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the target features and the drafter"
                    " (fp32 weights, optimizer and loss; the data generation stays fp32)")
    args = ap.parse_args()
    common.setup(args)
    os.makedirs(args.out, exist_ok=True)
    dev = torch.device(args.device)

    target, tcfg = load_target(args, dev)
    tok = json.load(open(args.tok))
    cfg = DraftConfig(n_embd=tcfg.n_embd, mask_token_id=tok["tokens"].index("<|mask|>"),
                      rope_base=tcfg.rope_base, **common.DRAFT_PRESETS[args.preset])
    assert max(cfg.target_layer_ids) < tcfg.n_layer - 1
    seq = args.seq or tcfg.ctx_train
    train_toks = common.load_tokens(args.data, "train")
    test_toks = common.load_tokens(args.data, "test")
    t0 = time.time()
    if args.gen_seqs:
        train_data = make_gen(target, train_toks, args.gen_seqs, args.gen_prompt, seq, args.seed, args.gen_batch,
                              dev, os.path.join(args.out, "gen-train.bin"), "generate train")
        lo = args.gen_prompt - 1
    else:
        train_data, lo = None, 1
    test_data = make_gen(target, test_toks, args.gen_test, args.gen_prompt, seq, args.seed + 1, args.gen_batch,
                         dev, os.path.join(args.out, "gen-test.bin"), "generate test")
    gen_seconds = time.time() - t0
    log("drafter: data ready in %.0f s" % gen_seconds)

    drafter = Drafter(cfg).to(dev)
    n_params = sum(p.numel() for p in drafter.parameters())
    opt = torch.optim.AdamW(common.param_groups(drafter, args.wd), lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    w = torch.exp(-torch.arange(cfg.block_size - 1, dtype=torch.float32) / args.gamma).to(dev)
    ck_path = os.path.join(args.out, "drafter.ckpt")
    step, total, history, elapsed = 0, args.steps, [], 0.0
    if os.path.exists(ck_path):
        ck = torch.load(ck_path, map_location=dev)
        drafter.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, total, history, elapsed = ck["step"], ck["total"], ck["history"], ck["elapsed"]
        log("drafter: resumed at step %d of %d" % (step, total))
    if not total and not args.time_budget:
        raise SystemExit("train_drafter: give --steps or --time-budget")
    log("drafter: %s, %.2fM params, taps %s, batch %d x %d, %d anchors, %d steps, device %s%s, %d threads"
        % (args.preset, n_params / 1e6, cfg.target_layer_ids, args.batch, seq, args.anchors, total, args.device,
           " (bf16 autocast)" if args.bf16 else "", torch.get_num_threads()))

    def save_ckpt():
        common.save_atomic({"model": drafter.state_dict(), "opt": opt.state_dict(), "step": step,
                            "total": total, "history": history, "elapsed": elapsed}, ck_path)

    bar = tqdm(total=total or 1, initial=step, desc="drafter", dynamic_ncols=True)
    t_start = time.time() - elapsed
    t_probe, ema, ema_tau = None, None, None
    while not total or step < total:
        if not total:
            if step == 3:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t_probe = time.time()
            if step == 11:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                per = (time.time() - t_probe) / 8
                total = max(12, int((args.time_budget - (time.time() - t_start)) / per) + step)
                bar.total = total
                log("\ndrafter: %.3f s/step -> --steps %d" % (per, total))
        lr = common.lr_at(step, total or 10 ** 9, args.lr, args.warmup)
        for gr in opt.param_groups:
            gr["lr"] = lr
        rng = np.random.default_rng([args.seed, step])
        if train_data is not None:
            x = train_data[torch.from_numpy(rng.integers(0, len(train_data), size=args.batch))].to(dev)
        else:
            x = common.train_windows(train_toks, step, args.seed, args.batch, seq)[:, :seq].to(dev)
        anchors = torch.from_numpy(pick_anchors(rng, lo, seq, cfg.block_size, args.anchors)).to(dev)
        with common.amp(dev, args.bf16):
            ce, correct = drafter_loss(drafter, target, x, anchors, cfg)
        loss = (ce * w).sum() / (w.sum() * ce.shape[0] * ce.shape[1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(drafter.parameters(), 1.0)
        opt.step()
        step += 1
        lv, tau = loss.item(), accept_len(correct)
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        ema_tau = tau if ema_tau is None else 0.98 * ema_tau + 0.02 * tau
        bar.update(1)
        bar.set_postfix_str("loss %.3f tau %.2f lr %.2e" % (ema, ema_tau, lr))
        if step % 50 == 0:
            history.append({"step": step, "loss": round(ema, 4), "tau": round(ema_tau, 3),
                            "time": round(time.time() - t_start, 1)})
        if args.eval_every and step % args.eval_every == 0:
            acc, tau_t = evaluate(drafter, target, test_data, cfg, args.gen_prompt - 1, args.batch, dev, args.anchors,
                                  args.bf16)
            history.append({"step": step, "test_tau": round(tau_t, 3)})
            log("\ndrafter: step %d held-out acceptance length %.3f, acc@1 %.3f" % (step, tau_t, acc[0]))
        elapsed = time.time() - t_start
        if step % args.ckpt_every == 0:
            save_ckpt()
    bar.close()
    elapsed = time.time() - t_start
    save_ckpt()
    acc, tau_t = evaluate(drafter, target, test_data, cfg, args.gen_prompt - 1, args.batch, dev, args.anchors,
                                  args.bf16)
    result = {"preset": args.preset, "params": n_params, "config": config_dict(cfg), "args": vars(args),
              "steps": step, "train_seconds": round(elapsed, 1), "gen_seconds": round(gen_seconds, 1),
              "test_accept_len": tau_t, "test_pos_acc": [round(a, 4) for a in acc], "history": history}
    log("drafter: %d steps in %.0f s; held-out acceptance length %.3f; per-position acc %s"
        % (step, elapsed, tau_t, " ".join("%.2f" % a for a in acc)))
    torch.save({"config": config_dict(cfg), "model": drafter.state_dict()}, os.path.join(args.out, "drafter.pt"))
    common.write_json(os.path.join(args.out, "drafter.json"), result)
    if args.shards:
        common.save_shards(drafter.state_dict(), args.shards)
        common.write_json(args.shards + ".json", {"config": config_dict(cfg), "result": result})


if __name__ == "__main__":
    main()
