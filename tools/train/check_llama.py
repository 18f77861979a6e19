#!/usr/bin/python3
"""Check that llama.cpp computes what the PyTorch pair computes, and measure DFlash in llama.cpp.

1. tokenizer: every held-out document through tokenizer.py and through llama.cpp (llama_oracle tokbatch);
   raw-text documents without special-token parsing, chat documents with it; all must be identical.
2. target: logits of held-out windows, PyTorch (sequential GDN, float64) vs llama_oracle eval of the F32
   GGUF (flash attention off, F32 KV); also the Q8_0 GGUF (argmax agreement, max difference).
   Held-out perplexity: PyTorch on all held-out tokens, and llama.cpp's Q8_0 GGUF on a subset.
3. drafter: one DFlash step, PyTorch vs dflash_oracle on the F32 pair: tap features and draft logits.
4. the DFlash loop: PyTorch's greedy chain loop vs llama-speculative-simple on the F32 pair, one prompt
   (same accepted-draft count and the same text expected).
5. DFlash in llama.cpp: llama-speculative-simple --spec-type draft-dflash, greedy, on held-out prompts with
   the Q8_0 pair; acceptance length = generated / target verify rounds = n_predict / (n_predict - n_accept).
Writes a JSON report (--report).
"""
import argparse, json, math, os, re, struct, subprocess, sys, tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer as tk  # noqa: E402
from model import Target, TargetConfig, Drafter, DraftConfig  # noqa: E402
from train_drafter import block_mask  # noqa: E402
from common import load_weights  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_logits(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"LLOGITS1"
        n_rows, n_vocab = struct.unpack("<ii", f.read(8))
        toks = np.frombuffer(f.read(4 * n_rows), dtype=np.int32)
        f.read(4 * n_rows)
        logits = np.frombuffer(f.read(4 * n_rows * n_vocab), dtype=np.float32).reshape(n_rows, n_vocab)
    return toks, logits


def read_feats(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"LLFEAT01"
        n_rows, n_tap, n_embd = struct.unpack("<iii", f.read(12))
        taps = np.frombuffer(f.read(4 * n_tap), dtype=np.int32)
        feat = np.frombuffer(f.read(4 * n_rows * n_tap * n_embd), dtype=np.float32).reshape(n_rows, n_tap * n_embd)
    return taps, feat


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit("check: %s failed (%d):\n%s" % (cmd[0], r.returncode, r.stderr[-3000:]))
    return r


def check_tokenizer(tok, corpus, oracle, gguf, tmp):
    docs = [json.loads(l) for l in open(os.path.join(corpus, "test.jsonl"))]
    res = {}
    for special in (False, True):
        sel = [d for d in docs if (d["src"] == "chat") == special]
        inp = os.path.join(tmp, "tok%d.bin" % special)
        with open(inp, "wb") as f:
            for d in sel:
                b = d["text"].encode()
                f.write(struct.pack("<I", len(b)) + b)
        out = os.path.join(tmp, "tok%d.txt" % special)
        run([oracle, "tokbatch", gguf, inp, out] + (["--special"] if special else []))
        lines = open(out).read().split("\n")
        bad, ntok = [], 0
        for i, d in enumerate(sel):
            mine = tok.encode(d["text"], parse_special=special)
            theirs = [int(x) for x in lines[i].split()] if lines[i].strip() else []
            ntok += len(mine)
            if mine != theirs:
                bad.append(d["path"])
        res["special" if special else "raw"] = {"docs": len(sel), "tokens": ntok, "mismatched_docs": bad[:10],
                                                "n_mismatched": len(bad)}
        print("check: tokenizer (%s): %d/%d held-out documents identical (%d tokens)"
              % ("chat, specials parsed" if special else "raw text", len(sel) - len(bad), len(sel), ntok))
    return res


def load_target(path):
    ck = load_weights(path)
    m = Target(TargetConfig(**ck["config"]))
    m.load_state_dict(ck["model"])
    return m.eval()


def check_target(model, test, oracle, g_f32, g_q8, tmp, n_windows, seq):
    res = []
    m64 = model.double()
    for wi in range(n_windows):
        start = (wi * 7919 * seq) % (len(test) - seq)
        ids = test[start:start + seq]
        idf = os.path.join(tmp, "ids.txt")
        open(idf, "w").write(" ".join(map(str, ids.tolist())))
        with torch.no_grad():
            ref = m64(ids[None], mode="sequential")[0].numpy()
        row = {"start": int(start), "tokens": seq}
        for name, g in (("f32", g_f32), ("q8_0", g_q8)):
            out = os.path.join(tmp, "l.bin")
            run([oracle, "eval", g, "--ids-file", idf, "-o", out, "-t", "2"])
            _, lg = read_logits(out)
            d = np.abs(lg.astype(np.float64) - ref)
            agree = float((lg.argmax(-1) == ref.argmax(-1)).mean())
            row[name] = {"max_abs": float(d.max()), "max_rel": float(d.max() / (np.abs(ref).max())),
                         "argmax_agree": agree}
        print("check: target logits, held-out window %d (%d tokens): F32 GGUF max|d| %.2e (rel %.1e), argmax "
              "agree %.4f; Q8_0 max|d| %.3f, argmax agree %.4f"
              % (wi, seq, row["f32"]["max_abs"], row["f32"]["max_rel"], row["f32"]["argmax_agree"],
                 row["q8_0"]["max_abs"], row["q8_0"]["argmax_agree"]))
        res.append(row)
    model.float()
    return res


def check_drafter(target, drafter_path, test, dflash_oracle, g_t, g_d, tmp, n_prompt):
    ck = load_weights(drafter_path)
    cfg = DraftConfig(**ck["config"])
    dr = Drafter(cfg)
    dr.load_state_dict(ck["model"])
    dr.eval()
    ids = test[1000:1000 + n_prompt]
    prefix = os.path.join(tmp, "df")
    r = run([dflash_oracle, "-m", g_t, "-md", g_d, "--ids", " ".join(map(str, ids.tolist())), "-o", prefix,
             "-t", "2"])
    taps, feat = read_feats(prefix + ".features.bin")
    _, dl = read_logits(prefix + ".draft_logits.bin")
    with torch.no_grad():
        _, f = target(ids[None], taps=tuple(cfg.target_layer_ids))
        N, bs = n_prompt, cfg.block_size
        T = N - 1
        blk = torch.full((1, bs), cfg.mask_token_id, dtype=torch.long)
        blk[0, 0] = ids[N - 1]
        anchors = torch.tensor([N - 1])
        mask = block_mask(anchors, bs, T, torch.device("cpu"))
        h = dr(f[:, :T], target.embed(blk), torch.arange(N - 1, N - 1 + bs), torch.arange(T), mask)
        logits = target.lm_head(h)[0].numpy()
    fd = np.abs(feat - f[0, :T].numpy())
    ld = np.abs(dl - logits)
    agree = float((dl[1:].argmax(-1) == logits[1:].argmax(-1)).mean())
    res = {"taps_gguf": taps.tolist(), "feat_max_abs": float(fd.max()), "draft_logits_max_abs": float(ld.max()),
           "draft_logits_max_rel": float(ld.max() / np.abs(logits).max()), "draft_argmax_agree": agree,
           "oracle_draft": r.stdout.strip().split("\n")[-1] if r.stdout else ""}
    print("check: drafter step (%d-token prompt): features max|d| %.2e, draft logits max|d| %.2e (rel %.1e), "
          "draft argmax agree %.3f" % (n_prompt, res["feat_max_abs"], res["draft_logits_max_abs"],
                                        res["draft_logits_max_rel"], agree))
    return res


def check_spec(tok, spec_bin, g_t, g_d, corpus, n_prompts, n_gen, tmp):
    docs = [json.loads(l) for l in open(os.path.join(corpus, "test.jsonl"))]
    docs = [d for d in docs if d["src"] != "chat" and len(d["text"]) > 1200]
    step = max(1, len(docs) // n_prompts)
    rows, tot_pred, tot_acc, tot_drafted = [], 0, 0, 0
    for d in docs[::step][:n_prompts]:
        ids = tok.encode(d["text"])[:96]
        text = tok.decode(ids)
        pf = os.path.join(tmp, "prompt.txt")
        open(pf, "w").write(text)
        r = run([spec_bin, "-m", g_t, "-md", g_d, "-f", pf, "--spec-type", "draft-dflash",
                 "--spec-draft-n-max", "15", "-n", str(n_gen), "--temp", "0", "--top-k", "1", "-t", "2",
                 "-c", "2048"])
        log = r.stdout + r.stderr
        get = lambda k: int(re.search(r"%s\s*=\s*(\d+)" % k, log).group(1))
        n_pred, n_drafted, n_acc = get("n_predict"), get("n_drafted"), get("n_accept")
        tau = n_pred / max(1, n_pred - n_acc)
        rows.append({"src": d["src"], "path": d["path"], "n_predict": n_pred, "n_drafted": n_drafted,
                     "n_accept": n_acc, "accept_len": round(tau, 3)})
        tot_pred += n_pred
        tot_acc += n_acc
        tot_drafted += n_drafted
        print("check: dflash %-7s %-60s n_predict %d accepted %d/%d -> acceptance length %.2f"
              % (d["src"], d["path"][-60:], n_pred, n_acc, n_drafted, tau))
    tau = tot_pred / max(1, tot_pred - tot_acc)
    print("check: dflash overall: %d generated, %d of %d drafts accepted, acceptance length %.3f"
          % (tot_pred, tot_acc, tot_drafted, tau))
    return {"prompts": rows, "accept_len": tau, "n_predict": tot_pred, "n_accept": tot_acc,
            "n_drafted": tot_drafted}


@torch.no_grad()
def check_ppl(model, test, oracle, g_q8, tmp, seq, n_llama):
    """Held-out perplexity: PyTorch over all non-overlapping windows of seq tokens; llama.cpp (Q8_0 GGUF)
    and PyTorch again over the first n_llama windows."""
    import torch.nn.functional as F
    wins = [test[i * seq:i * seq + seq + 1] for i in range((len(test) - 1) // seq)]
    losses = []
    for i in range(0, len(wins), 8):
        x = torch.stack(wins[i:i + 8])
        lg = model(x[:, :-1])
        losses.append(F.cross_entropy(lg.reshape(-1, lg.shape[-1]), x[:, 1:].reshape(-1), reduction="none").view(len(x), -1))
    losses = torch.cat(losses)
    res = {"windows": len(wins), "seq": seq, "torch_loss": losses.mean().item(), "torch_ppl": math.exp(losses.mean().item())}
    ll = []
    for w in wins[:n_llama]:
        idf = os.path.join(tmp, "ids.txt")
        open(idf, "w").write(" ".join(map(str, w[:-1].tolist())))
        out = os.path.join(tmp, "l.bin")
        run([oracle, "eval", g_q8, "--ids-file", idf, "-o", out, "-t", "2"])
        _, lg = read_logits(out)
        lg = torch.from_numpy(lg.astype(np.float64))
        ll.append(F.cross_entropy(lg, w[1:], reduction="none"))
    ll = torch.cat(ll)
    sub = losses[:n_llama].reshape(-1).double()
    res.update({"subset_windows": n_llama, "subset_torch_ppl": math.exp(sub.mean().item()),
                "subset_llama_q8_0_ppl": math.exp(ll.mean().item())})
    print("check: held-out perplexity (PyTorch, %d windows of %d): %.3f (loss %.4f); first %d windows: PyTorch %.3f, "
          "llama.cpp Q8_0 %.3f" % (len(wins), seq, res["torch_ppl"], res["torch_loss"], n_llama,
                                   res["subset_torch_ppl"], res["subset_llama_q8_0_ppl"]))
    return res


@torch.no_grad()
def dflash_loop(target, drafter, cfg, prompt, n_gen, eog):
    """The chain DFlash loop of llama.cpp's speculative-simple (greedy), in PyTorch, recomputing the target
    over the whole sequence each round: returns (tokens, n_predict, n_accept)."""
    seq = list(prompt)
    n_predict = n_accept = 0
    bs = cfg.block_size
    while True:
        n = len(seq)
        x = torch.tensor(seq)[None]
        _, feats = target(x[:, :n - 1], taps=tuple(cfg.target_layer_ids))
        blk = torch.full((1, bs), cfg.mask_token_id, dtype=torch.long)
        blk[0, 0] = seq[-1]
        mask = block_mask(torch.tensor([n - 1]), bs, n - 1, torch.device("cpu"))
        h = drafter(feats, target.embed(blk), torch.arange(n - 1, n - 1 + bs), torch.arange(n - 1), mask)
        draft = target.lm_head(h)[0, 1:].argmax(-1).tolist()
        logits = target(torch.tensor(seq + draft)[None])[0, n - 1:]
        pred = logits.argmax(-1).tolist()
        a = 0
        while a < len(draft) and draft[a] == pred[a]:
            a += 1
        new = pred[:a + 1]
        n_accept += a
        n_predict += len(new)
        stop = False
        for t in new:
            seq.append(t)
            if t in eog:
                stop = True
                break
        if stop or n_predict > n_gen:
            return seq[len(prompt):], n_predict, n_accept


def check_loop(tok, target, drafter_path, spec_bin, g_t, g_d, corpus, n_gen, tmp):
    """PyTorch DFlash loop vs llama.cpp speculative-simple on the F32 pair, one held-out prompt."""
    ck = load_weights(drafter_path)
    cfg = DraftConfig(**ck["config"])
    dr = Drafter(cfg)
    dr.load_state_dict(ck["model"])
    dr.eval()
    docs = [json.loads(l) for l in open(os.path.join(corpus, "test.jsonl"))]
    d = [d for d in docs if d["src"] == "python"][0]
    ids = tok.encode(d["text"])[:96]
    eog = {tok.id["<|endoftext|>"], tok.id["<|im_end|>"]}
    out, n_pred, n_acc = dflash_loop(target, dr, cfg, ids, n_gen, eog)
    pf = os.path.join(tmp, "prompt.txt")
    open(pf, "w").write(tok.decode(ids))
    r = run([spec_bin, "-m", g_t, "-md", g_d, "-f", pf, "--spec-type", "draft-dflash", "--spec-draft-n-max",
             str(cfg.block_size - 1), "-n", str(n_gen), "--temp", "0", "--top-k", "1", "-t", "2", "-c", "2048"])
    log = r.stdout + r.stderr
    get = lambda k: int(re.search(r"%s\s*=\s*(\d+)" % k, log).group(1))
    same_text = tok.decode(out) in r.stdout
    res = {"path": d["path"], "torch": {"n_predict": n_pred, "n_accept": n_acc},
           "llama": {"n_predict": get("n_predict"), "n_accept": get("n_accept")}, "same_text": same_text}
    print("check: dflash loop, PyTorch vs llama.cpp (F32 pair, %s): n_predict %d vs %d, n_accept %d vs %d, "
          "generated text identical: %s" % (d["path"], n_pred, res["llama"]["n_predict"], n_acc,
                                            res["llama"]["n_accept"], same_text))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tok", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--drafter", required=True)
    ap.add_argument("--target-f32", required=True)
    ap.add_argument("--drafter-f32", required=True)
    ap.add_argument("--target-gguf", required=True)
    ap.add_argument("--drafter-gguf", required=True)
    ap.add_argument("--oracle-dir", default=os.path.join(ROOT, "build/oracle"))
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--ppl-windows", type=int, default=16, help="held-out windows evaluated through llama.cpp")
    ap.add_argument("--skip", default="", help="comma list of: tok,target,ppl,drafter,loop,spec")
    ap.add_argument("--report", default="")
    args = ap.parse_args()
    torch.set_num_threads(2)
    skip = set(args.skip.split(","))
    oracle = os.path.join(args.oracle_dir, "llama_oracle")
    tok = tk.Tokenizer.load(args.tok)
    test = torch.from_numpy(np.fromfile(os.path.join(args.data, "test.bin"), dtype=np.uint16).astype(np.int64))
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "tok" not in skip:
            report["tokenizer"] = check_tokenizer(tok, args.corpus, oracle, args.target_gguf, tmp)
        target = load_target(args.target)
        if "target" not in skip:
            report["target"] = check_target(target, test, oracle, args.target_f32, args.target_gguf, tmp,
                                            args.windows, args.seq)
        if "ppl" not in skip:
            report["ppl"] = check_ppl(target, test, oracle, args.target_gguf, tmp, 512, args.ppl_windows)
        if "drafter" not in skip:
            report["drafter"] = check_drafter(target, args.drafter, test, os.path.join(args.oracle_dir, "dflash_oracle"),
                                              args.target_f32, args.drafter_f32, tmp, 100)
        if "loop" not in skip:
            report["loop"] = check_loop(tok, target, args.drafter, os.path.join(args.oracle_dir, "llama-speculative-simple"),
                                        args.target_f32, args.drafter_f32, args.corpus, args.gen, tmp)
        if "spec" not in skip:
            report["dflash"] = check_spec(tok, os.path.join(args.oracle_dir, "llama-speculative-simple"),
                                          args.target_gguf, args.drafter_gguf, args.corpus, args.prompts, args.gen, tmp)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
