"""Shared helpers of the training scripts: data windows, LR schedule, checkpoints, progress, presets."""
import json, math, os, sys, time

import numpy as np
import torch

from model import TargetConfig, DraftConfig

try:
    from tqdm import tqdm
except ImportError:                                   # plain fallback progress bar
    class tqdm:
        def __init__(self, total=0, initial=0, desc="", **kw):
            self.n, self.total, self.desc, self.t0, self.post = initial, total, desc, time.time(), ""

        def update(self, k=1):
            self.n += k
            if self.n % 10 == 0 or self.n == self.total:
                rate = self.n / max(1e-9, time.time() - self.t0)
                print("\r%s %d/%d %.2f it/s %s" % (self.desc, self.n, self.total, rate, self.post),
                      end="", file=sys.stderr, flush=True)

        def set_postfix_str(self, s):
            self.post = s

        def close(self):
            print(file=sys.stderr)


# Model shapes. "full" is the bundled model; "tiny" is for dry runs of the pipeline.
TARGET_PRESETS = {
    "full": dict(n_embd=384, n_layer=8, n_ff=1024, n_head=6, n_head_kv=2, head_dim=64, n_rot=16,
                 gdn_k_heads=3, gdn_v_heads=6, gdn_head_dim=64, ctx_train=512),
    "tiny": dict(n_embd=64, n_layer=4, n_ff=128, n_head=2, n_head_kv=1, head_dim=32, n_rot=8,
                 gdn_k_heads=1, gdn_v_heads=2, gdn_head_dim=32, ctx_train=128),
}
DRAFT_PRESETS = {
    "full": dict(n_layer=2, n_ff=1024, n_head=6, n_head_kv=2, head_dim=64, block_size=16,
                 target_layer_ids=[1, 4, 6]),
    "tiny": dict(n_layer=1, n_ff=128, n_head=2, n_head_kv=1, head_dim=32, block_size=16,
                 target_layer_ids=[1, 2]),
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def setup(args):
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def amp(device, on):
    """bfloat16 autocast context on `device` (a no-op context when `on` is false)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bool(on))


def load_tokens(data, split):
    toks = np.fromfile(os.path.join(data, split + ".bin"), dtype=np.uint16)
    return torch.from_numpy(toks.astype(np.int64))


def train_windows(toks, step, seed, batch, seq):
    """Random windows of seq+1 tokens for one step; depends only on (seed, step), so a resumed run sees
    exactly the same data."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(toks) - seq - 1, size=batch)
    return torch.stack([toks[s:s + seq + 1] for s in starts])


def eval_windows(toks, seq, limit=None):
    n = (len(toks) - 1) // seq
    if limit:
        n = min(n, limit)
    return [toks[i * seq:i * seq + seq + 1] for i in range(n)]


def lr_at(step, total, peak, warmup, final_frac=0.1):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def param_groups(model, wd, no_decay=()):
    decay, rest = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.dim() == 2 and not any(s in name for s in no_decay) and not name.endswith(".conv"):
            decay.append(p)
        else:
            rest.append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]


def save_atomic(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_shards(state, prefix, max_bytes=15 * 1000 * 1000):
    """Model weights as fp16 shards of at most max_bytes (for copying off a remote machine)."""
    shard, size, k, names = {}, 0, 0, []
    for name, t in state.items():
        t = t.detach().to("cpu", torch.float16).contiguous()
        if shard and size + t.numel() * 2 > max_bytes:
            names.append("%s.%d.pt" % (prefix, k))
            torch.save(shard, names[-1])
            shard, size, k = {}, 0, k + 1
        shard[name] = t
        size += t.numel() * 2
    if shard:
        names.append("%s.%d.pt" % (prefix, k))
        torch.save(shard, names[-1])
    return names


def load_shards(prefix):
    state, k = {}, 0
    while os.path.exists("%s.%d.pt" % (prefix, k)):
        state.update(torch.load("%s.%d.pt" % (prefix, k), map_location="cpu"))
        k += 1
    return {n: t.float() for n, t in state.items()}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def load_weights(path):
    """{"config", "model"} from a .pt of the training scripts, or from an fp16 shard prefix (PREFIX.N.pt +
    PREFIX.json, as written with --shards)."""
    if os.path.exists(path + ".0.pt"):
        with open(path + ".json") as f:
            meta = json.load(f)
        return {"config": meta["config"], "model": load_shards(path)}
    return torch.load(path, map_location="cpu")
