#!/usr/bin/python3
"""Time target training steps on this machine, float32 vs bfloat16 autocast, and (with --weights) compare the
held-out loss of a trained target in both precisions. Random tokens, seed 0; one untimed warm-up step.

  bench_step.py [--preset full] [--batch 8] [--seq 512] [--threads 2] [--steps 2] [--modes fp32,bf16]
                [--weights TARGET.pt --data DIR --windows 8] [--profile]
"""
import argparse, math, sys, time

import torch
import torch.nn.functional as F

import common
from model import Target, TargetConfig


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="full", choices=sorted(common.TARGET_PRESETS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per mode")
    ap.add_argument("--modes", default="fp32,bf16")
    ap.add_argument("--profile", action="store_true", help="print torch.profiler's top ops of one step per mode")
    ap.add_argument("--weights", default="", help="a trained target.pt (or shard prefix): compare eval losses")
    ap.add_argument("--data", default="", help="with --weights: dir with test.bin")
    ap.add_argument("--windows", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = TargetConfig(n_vocab=8192, **common.TARGET_PRESETS[args.preset])
    model = Target(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, cfg.n_vocab, (args.batch, args.seq + 1))
    print("bench_step: %s, %.2fM params, batch %d x %d, %d threads"
          % (args.preset, sum(p.numel() for p in model.parameters()) / 1e6, args.batch, args.seq, args.threads))

    def step(bf16):
        with common.amp("cpu", bf16):
            logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, cfg.n_vocab).float(), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    for mode in filter(None, args.modes.split(",")):
        bf16 = mode == "bf16"
        step(bf16)
        t = time.time()
        for _ in range(args.steps):
            step(bf16)
        dt = (time.time() - t) / args.steps
        print("bench_step: %s %.2f s/step, %.0f tokens/s" % (mode, dt, args.batch * args.seq / dt), flush=True)
        if args.profile:
            with torch.profiler.profile() as p:
                step(bf16)
            print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))

    if args.weights:
        ck = common.load_weights(args.weights)
        m = Target(TargetConfig(**ck["config"]))
        m.load_state_dict(ck["model"])
        m.eval()
        w = torch.stack(common.eval_windows(common.load_tokens(args.data, "test"), args.seq, args.windows))
        ref = None
        for bf16 in (False, True):
            with torch.no_grad(), common.amp("cpu", bf16):
                lg = m(w[:, :-1]).float()
            loss = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), w[:, 1:].reshape(-1)).item()
            line = "bench_step: first %d held-out windows, %s: loss %.4f (ppl %.2f)" % (
                len(w), "bf16" if bf16 else "fp32", loss, math.exp(loss))
            if ref is None:
                ref = lg
            else:
                line += ", max|d logit| vs fp32 %.3f, argmax agreement %.4f" % (
                    (lg - ref).abs().max(), (lg.argmax(-1) == ref.argmax(-1)).float().mean())
            print(line)


if __name__ == "__main__":
    sys.exit(main())
