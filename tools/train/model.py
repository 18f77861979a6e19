"""PyTorch definitions of the bundled tiny model pair, written in GGUF semantics so that export is a
plain copy: the qwen35 target (specs/qwen35.md section 3) and the DFlash drafter (specs/dflash.md 1).

Conventions that make llama.cpp compute the same function as this module:
- every RMSNorm weight is the effective multiplier (no "+1" at run time or at export);
- `A_log` is exported as ssm_a = -exp(A_log); conv1d weight [C,1,4] as [C,4] (tap 3 = current token);
- GDN value head j uses query/key head j % H_k ("tiled" order) - this module is written in that order;
- attn_q rows are per head [query(D) | gate(D)];
- RoPE is NeoX on the first n_rot dims of each head; theta_i = pos * base^(-2i/n_rot);
- GDN: q, k L2-normalised x/sqrt(sum x^2 + eps); output scaled by 1/sqrt(d_k); gated RMSNorm per head.
The GDN layer has two equivalent forms: `chunked` (training; WY/UT transform, specs/training.md) and
`sequential` (the per-token recurrence llama.cpp runs), checked against each other in selftest().
"""
import math
from dataclasses import dataclass, field, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class TargetConfig:
    n_vocab: int = 8192
    n_embd: int = 256
    n_layer: int = 8
    n_ff: int = 768
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 64
    n_rot: int = 16
    rope_base: float = 10000.0
    gdn_k_heads: int = 2
    gdn_v_heads: int = 4
    gdn_head_dim: int = 64
    conv_kernel: int = 4
    full_attention_interval: int = 4
    eps: float = 1e-6
    ctx_train: int = 512
    gdn_chunk: int = 64

    def is_recurrent(self, il):
        return (il + 1) % self.full_attention_interval != 0


@dataclass
class DraftConfig:
    n_embd: int = 256          # = target n_embd
    n_layer: int = 2
    n_ff: int = 768
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 64
    rope_base: float = 10000.0
    eps: float = 1e-6
    block_size: int = 16
    target_layer_ids: list = field(default_factory=lambda: [1, 4, 6])   # HF convention: output of layer i
    mask_token_id: int = 0


def f32(t):
    """Half-precision tensors (from autocast) to float32; float32/float64 unchanged."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def l2_norm(x, eps):
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps)


_ROPE_CACHE = {}


def rope_neox(x, pos, n_rot, base):
    """x [..., T, H, D]; pos [T] (int); rotates dims [0, n_rot) with NeoX pairing (i, i + n_rot/2)."""
    half = n_rot // 2
    key = (pos.shape[0], int(pos[0]), int(pos[-1]), n_rot, base, x.dtype, x.device)
    cs = _ROPE_CACHE.get(key)
    if cs is None:
        inv = base ** (-torch.arange(0, half, dtype=torch.float64) * 2.0 / n_rot)
        ang = pos.detach().cpu().to(torch.float64)[:, None] * inv[None, :]   # [T, half]
        cs = (torch.cos(ang).to(x.dtype)[:, None, :].to(x.device), torch.sin(ang).to(x.dtype)[:, None, :].to(x.device))
        if len(_ROPE_CACHE) > 64:
            _ROPE_CACHE.clear()
        _ROPE_CACHE[key] = cs
    cos, sin = cs
    x1, x2, rest = x[..., :half], x[..., half:n_rot], x[..., n_rot:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos, rest], dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


class FFN(nn.Module):
    def __init__(self, e, f):
        super().__init__()
        self.gate = nn.Linear(e, f, bias=False)
        self.up = nn.Linear(e, f, bias=False)
        self.down = nn.Linear(f, e, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


_MASK_CACHE = {}


def causal_bias(T, device, dtype):
    key = (T, device, dtype)
    m = _MASK_CACHE.get(key)
    if m is None:
        m = torch.zeros(T, T, dtype=dtype, device=device).masked_fill(
            torch.ones(T, T, dtype=torch.bool, device=device).triu(1), float("-inf"))
        _MASK_CACHE[key] = m
    return m


class GatedAttention(nn.Module):
    """qwen35 full-attention layer (qwen35.md 3.3), causal over the sequence."""

    def __init__(self, c: TargetConfig):
        super().__init__()
        self.c = c
        self.wq = nn.Linear(c.n_embd, 2 * c.n_head * c.head_dim, bias=False)
        self.wk = nn.Linear(c.n_embd, c.n_head_kv * c.head_dim, bias=False)
        self.wv = nn.Linear(c.n_embd, c.n_head_kv * c.head_dim, bias=False)
        self.wo = nn.Linear(c.n_head * c.head_dim, c.n_embd, bias=False)
        self.q_norm = RMSNorm(c.head_dim, c.eps)
        self.k_norm = RMSNorm(c.head_dim, c.eps)

    def forward(self, h, pos, state=None):
        """h [B,T,E], pos [T]. With `state` (dict) K/V are appended to state["k"], state["v"] and the
        queries attend to the whole cache (positions must continue the cached ones)."""
        c = self.c
        B, T, _ = h.shape
        D = c.head_dim
        qg = self.wq(h).view(B, T, c.n_head, 2 * D)
        q, gate = qg[..., :D], qg[..., D:]
        k = self.wk(h).view(B, T, c.n_head_kv, D)
        v = self.wv(h).view(B, T, c.n_head_kv, D)
        q = rope_neox(self.q_norm(q), pos, c.n_rot, c.rope_base)
        k = rope_neox(self.k_norm(k), pos, c.n_rot, c.rope_base)
        rep = c.n_head // c.n_head_kv
        n_past = 0
        if state is not None:
            if "k" in state:
                n_past = state["k"].shape[1]
                k = torch.cat([state["k"], k], dim=1)
                v = torch.cat([state["v"], v], dim=1)
            state["k"], state["v"] = k, v
        Tk = k.shape[1]
        # GQA without copying K/V: q head a = g * rep + r uses kv head g; fold r into the row axis
        qh = q.view(B, T, c.n_head_kv, rep, D).permute(0, 2, 3, 1, 4).reshape(B, c.n_head_kv, rep * T, D)
        kh, vh = k.transpose(1, 2), v.transpose(1, 2)                   # [B, Hkv, Tk, D]
        s = (qh @ kh.transpose(-1, -2)) * (1.0 / math.sqrt(D))
        s = s.view(B, c.n_head_kv, rep, T, Tk) + causal_bias(Tk, h.device, h.dtype)[n_past:]
        o = torch.softmax(s, dim=-1).view(B, c.n_head_kv, rep * T, Tk) @ vh
        o = o.view(B, c.n_head_kv, rep, T, D).permute(0, 3, 1, 2, 4).reshape(B, T, c.n_head, D)
        o = o * torch.sigmoid(gate)
        return self.wo(o.reshape(B, T, c.n_head * D))


def gdn_sequential(q, k, v, g, beta, S=None):
    """Per-token gated delta rule (qwen35.md 3.4 step 6). q,k,v [B,T,H,d] (q pre-scaled), g,beta [B,T,H].
    Returns o [B,T,H,d] and the final state S [B,H,d,d] (rows = key index, cols = value index)."""
    B, T, H, d = v.shape
    if S is None:
        S = torch.zeros(B, H, d, d, dtype=v.dtype, device=v.device)
    outs = []
    for t in range(T):
        S = S * torch.exp(g[:, t])[..., None, None]
        kt, vt, qt = k[:, t], v[:, t], q[:, t]
        pred = torch.einsum("bhij,bhi->bhj", S, kt)
        delta = beta[:, t][..., None] * (vt - pred)
        S = S + kt[..., :, None] * delta[..., None, :]
        outs.append(torch.einsum("bhij,bhi->bhj", S, qt))
    return torch.stack(outs, dim=1), S


def gdn_chunked(q, k, v, g, beta, chunk=64, S=None, want_state=False):
    """Chunked (WY / UT transform) form of gdn_sequential; same arguments, T padded to a multiple of chunk.
    Within a chunk, with G the cumulative log-decay: Dm[i,j] = exp(G_i - G_j) (j <= i), A = strict_lower(
    diag(beta) K K^T * Dm), T = (I + A)^-1, W = T diag(beta e^G) K, U = T diag(beta) V, Delta = U - W S,
    O = diag(e^G) Q S + (Q K^T * Dm) Delta, S <- e^G_last S + (K * e^(G_last - G))^T Delta."""
    B, T, H, d = v.shape
    L = min(chunk, T)
    pad = (-T) % L
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (q, k, v))
        g, beta = (F.pad(t, (0, 0, 0, pad)) for t in (g, beta))
    N = (T + pad) // L
    q, k, v = (t.reshape(B, N, L, H, d).permute(0, 3, 1, 2, 4).contiguous() for t in (q, k, v))   # [B,H,N,L,d]
    g, beta = (t.reshape(B, N, L, H).permute(0, 3, 1, 2).contiguous() for t in (g, beta))         # [B,H,N,L]
    G = torch.cumsum(g, dim=-1)
    causal = torch.ones(L, L, dtype=torch.bool, device=v.device).tril()
    Dm = torch.exp((G[..., :, None] - G[..., None, :]).masked_fill(~causal, float("-inf")))
    A = ((beta[..., :, None] * Dm) * (k @ k.transpose(-1, -2))).tril(-1)
    eye = torch.eye(L, dtype=v.dtype, device=v.device)
    Tm = torch.linalg.solve_triangular(A + eye, eye.expand_as(A), upper=False, unitriangular=True)
    U = Tm @ (beta[..., None] * v)
    QK = (q @ k.transpose(-1, -2)) * Dm
    if N == 1 and S is None and not want_state:    # one chunk from a zero state: O = (Q K^T * Dm) U
        o = QK[:, :, 0] @ U[:, :, 0]
        return o.permute(0, 2, 1, 3)[:, :T], None
    eG = torch.exp(G)
    W = Tm @ ((beta * eG)[..., None] * k)
    if S is None:
        S = torch.zeros(B, H, d, d, dtype=v.dtype, device=v.device)
    gl = G[..., -1]                                                       # [B,H,N]
    kdec = k * torch.exp(gl[..., None] - G)[..., None]
    outs = []
    for qn, Un, Wn, QKn, eGn, gln, kn in zip(q.unbind(2), U.unbind(2), W.unbind(2), QK.unbind(2),
                                            eG.unbind(2), torch.exp(gl).unbind(2), kdec.unbind(2)):
        delta = Un - Wn @ S
        outs.append(eGn[..., None] * (qn @ S) + QKn @ delta)
        S = gln[..., None, None] * S + kn.transpose(-1, -2) @ delta
    o = torch.stack(outs, dim=2)                                         # [B,H,N,L,d]
    o = o.permute(0, 2, 3, 1, 4).reshape(B, N * L, H, d)[:, :T]
    return o, S


class GatedDeltaNet(nn.Module):
    """qwen35 Gated DeltaNet layer (qwen35.md 3.4), tiled value-head order."""

    def __init__(self, c: TargetConfig):
        super().__init__()
        self.c = c
        Hk, Hv, d = c.gdn_k_heads, c.gdn_v_heads, c.gdn_head_dim
        self.n_ch = 2 * Hk * d + Hv * d
        self.wqkv = nn.Linear(c.n_embd, self.n_ch, bias=False)
        self.wgate = nn.Linear(c.n_embd, Hv * d, bias=False)
        self.wbeta = nn.Linear(c.n_embd, Hv, bias=False)
        self.walpha = nn.Linear(c.n_embd, Hv, bias=False)
        self.conv = nn.Parameter(torch.empty(self.n_ch, c.conv_kernel).uniform_(-0.5, 0.5))
        dt = torch.exp(torch.empty(Hv).uniform_(math.log(1e-3), math.log(1e-1)))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(Hv).uniform_(1, 16)))
        self.norm = RMSNorm(d, c.eps)
        self.wout = nn.Linear(Hv * d, c.n_embd, bias=False)

    def forward(self, h, mode="chunked", state=None):
        """h [B,T,E]. With `state` (a dict, empty for a fresh sequence) the layer continues from and
        updates the recurrent state: conv window (last K-1 raw qkv rows) and S."""
        c = self.c
        B, T, _ = h.shape
        Hk, Hv, d = c.gdn_k_heads, c.gdn_v_heads, c.gdn_head_dim
        mixed = self.wqkv(h)                                             # [B,T,C]
        z = self.wgate(h).view(B, T, Hv, d)
        beta = torch.sigmoid(self.wbeta(h))
        g = -torch.exp(self.A_log) * F.softplus(self.walpha(h) + self.dt_bias, threshold=20.0)
        K = c.conv_kernel
        if state is not None:
            prev = state.get("conv")
            if prev is None:
                prev = torch.zeros(B, K - 1, self.n_ch, dtype=h.dtype, device=h.device)
            full = torch.cat([prev, mixed], dim=1)
            state["conv"] = full[:, -(K - 1):]
            u = F.conv1d(full.transpose(1, 2), self.conv[:, None, :], groups=self.n_ch)
        else:
            u = F.conv1d(F.pad(mixed.transpose(1, 2), (K - 1, 0)), self.conv[:, None, :], groups=self.n_ch)
        u = F.silu(u.transpose(1, 2))
        q = l2_norm(u[..., :Hk * d].view(B, T, Hk, d), c.eps)
        k = l2_norm(u[..., Hk * d:2 * Hk * d].view(B, T, Hk, d), c.eps)
        v = u[..., 2 * Hk * d:].view(B, T, Hv, d)
        rep = Hv // Hk
        q = q.repeat(1, 1, rep, 1) / math.sqrt(d)                       # tiled: v head j -> qk head j % Hk
        k = k.repeat(1, 1, rep, 1)
        with torch.autocast(h.device.type, enabled=False):              # the recurrence runs in fp32 under
            o = self.recurrence(f32(q), f32(k), f32(v), f32(g), f32(beta), mode, state)   # autocast
        y = self.norm(o) * F.silu(f32(z))
        return self.wout(y.reshape(B, T, Hv * d))

    def recurrence(self, q, k, v, g, beta, mode, state):
        c = self.c
        T = v.shape[1]
        if state is not None:
            if T == 1 or mode == "sequential":
                o, state["S"] = gdn_sequential(q, k, v, g, beta, state.get("S"))
            else:
                o, state["S"] = gdn_chunked(q, k, v, g, beta, chunk=c.gdn_chunk, S=state.get("S"), want_state=True)
        elif mode == "chunked":
            o, _ = gdn_chunked(q, k, v, g, beta, chunk=c.gdn_chunk)
        else:
            o, _ = gdn_sequential(q, k, v, g, beta)
        return o


class TargetLayer(nn.Module):
    def __init__(self, c, il):
        super().__init__()
        self.recurrent = c.is_recurrent(il)
        self.attn_norm = RMSNorm(c.n_embd, c.eps)
        self.mixer = GatedDeltaNet(c) if self.recurrent else GatedAttention(c)
        self.post_norm = RMSNorm(c.n_embd, c.eps)
        self.ffn = FFN(c.n_embd, c.n_ff)

    def forward(self, x, pos, mode, state=None):
        h = self.attn_norm(x)
        x = x + (self.mixer(h, mode, state) if self.recurrent else self.mixer(h, pos, state))
        return x + self.ffn(self.post_norm(x))


class Target(nn.Module):
    def __init__(self, c: TargetConfig):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c.n_vocab, c.n_embd)
        self.layers = nn.ModuleList([TargetLayer(c, il) for il in range(c.n_layer)])
        self.out_norm = RMSNorm(c.n_embd, c.eps)
        self.lm_head = nn.Linear(c.n_embd, c.n_vocab, bias=False)
        self.reset_parameters()

    def reset_parameters(self):
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() == 2 and not name.endswith(".conv"):
                nn.init.normal_(p, std=std)
                if name.endswith(("wo.weight", "wout.weight", "down.weight")):
                    p.data.mul_(1 / math.sqrt(2 * self.c.n_layer))

    def forward(self, tokens, mode="chunked", taps=(), pos0=0, states=None, taps_only=False):
        """tokens [B,T] -> logits [B,T,V] (and the outputs of the layers in `taps`, HF convention).
        `states`: list of per-layer dicts ([{}] * n_layer for a fresh sequence) to continue a sequence
        incrementally; pos0 = number of tokens already in the states. taps_only: stop after the last tap
        layer and return (None, features)."""
        T = tokens.shape[1]
        pos = torch.arange(pos0, pos0 + T, device=tokens.device)
        x = self.embed(tokens)
        feats = {}
        for il, layer in enumerate(self.layers):
            x = layer(x, pos, mode, None if states is None else states[il])
            if il in taps:
                feats[il] = x
            if taps_only and taps and len(feats) == len(taps):
                return None, torch.cat([feats[i] for i in taps], dim=-1)
        logits = self.lm_head(self.out_norm(x))
        if taps:
            return logits, torch.cat([feats[i] for i in taps], dim=-1)
        return logits


@torch.no_grad()
def generate(model, prompt, n_new):
    """Greedy continuation: prompt [B,P] -> [B, P + n_new] (incremental, GDN state + KV cache)."""
    states = [{} for _ in model.layers]
    logits = model(prompt, states=states)
    out = [prompt]
    pos = prompt.shape[1]
    tok = logits[:, -1].argmax(-1, keepdim=True)
    for i in range(n_new):
        out.append(tok)
        if i == n_new - 1:
            break
        logits = model(tok, pos0=pos, states=states)
        pos += 1
        tok = logits[:, -1].argmax(-1, keepdim=True)
    return torch.cat(out, dim=1)


# ---- DFlash drafter -----------------------------------------------------------------------------------

class DraftLayer(nn.Module):
    def __init__(self, c: DraftConfig):
        super().__init__()
        self.c = c
        self.attn_norm = RMSNorm(c.n_embd, c.eps)
        self.wq = nn.Linear(c.n_embd, c.n_head * c.head_dim, bias=False)
        self.wk = nn.Linear(c.n_embd, c.n_head_kv * c.head_dim, bias=False)
        self.wv = nn.Linear(c.n_embd, c.n_head_kv * c.head_dim, bias=False)
        self.wo = nn.Linear(c.n_head * c.head_dim, c.n_embd, bias=False)
        self.q_norm = RMSNorm(c.head_dim, c.eps)
        self.k_norm = RMSNorm(c.head_dim, c.eps)
        self.ffn_norm = RMSNorm(c.n_embd, c.eps)
        self.ffn = FFN(c.n_embd, c.n_ff)

    def forward(self, h, ctx, pos_blk, pos_ctx, mask):
        """h [B,M,E] block rows, ctx [B,T,E] fused context rows, mask [B or 1, M, T+M] (True = visible)."""
        c = self.c
        B, M, _ = h.shape
        T = ctx.shape[1]
        D = c.head_dim
        x = self.attn_norm(h)
        q = rope_neox(self.q_norm(self.wq(x).view(B, M, c.n_head, D)), pos_blk, D, c.rope_base)
        kb = rope_neox(self.k_norm(self.wk(x).view(B, M, c.n_head_kv, D)), pos_blk, D, c.rope_base)
        vb = self.wv(x).view(B, M, c.n_head_kv, D)
        kc = rope_neox(self.k_norm(self.wk(ctx).view(B, T, c.n_head_kv, D)), pos_ctx, D, c.rope_base)
        vc = self.wv(ctx).view(B, T, c.n_head_kv, D)
        k = torch.cat([kc, kb], dim=1)
        v = torch.cat([vc, vb], dim=1)
        rep = c.n_head // c.n_head_kv
        k = k.repeat_interleave(rep, dim=2).transpose(1, 2)
        v = v.repeat_interleave(rep, dim=2).transpose(1, 2)
        q = q.transpose(1, 2)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        s = s.masked_fill(~mask[:, None], float("-inf"))
        o = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, M, c.n_head * D)
        h = h + self.wo(o)
        return h + self.ffn(self.ffn_norm(h))


class Drafter(nn.Module):
    def __init__(self, c: DraftConfig):
        super().__init__()
        self.c = c
        n_tap = len(c.target_layer_ids)
        self.fc = nn.Linear(n_tap * c.n_embd, c.n_embd, bias=False)
        self.hidden_norm = RMSNorm(c.n_embd, c.eps)
        self.layers = nn.ModuleList([DraftLayer(c) for _ in range(c.n_layer)])
        self.out_norm = RMSNorm(c.n_embd, c.eps)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
                if name.endswith(("wo.weight", "down.weight")):
                    p.data.mul_(1 / math.sqrt(2 * c.n_layer))

    def forward(self, feats, blk_emb, pos_blk, pos_ctx, mask):
        """feats [B,T,n_tap*E] target tap features of the context, blk_emb [B,M,E] target embeddings of
        the block tokens -> normed hidden states [B,M,E] (apply the target's LM head to get logits)."""
        ctx = self.hidden_norm(self.fc(feats))
        h = blk_emb
        for layer in self.layers:
            h = layer(h, ctx, pos_blk, pos_ctx, mask)
        return self.out_norm(h)


def config_dict(c):
    return asdict(c)


def selftest():
    torch.manual_seed(0)
    B, T, H, d = 2, 150, 4, 16
    q = F.normalize(torch.randn(B, T, H, d, dtype=torch.float64), dim=-1) / 4
    k = F.normalize(torch.randn(B, T, H, d, dtype=torch.float64), dim=-1)
    v = torch.randn(B, T, H, d, dtype=torch.float64)
    g = -torch.rand(B, T, H, dtype=torch.float64) * 2
    beta = torch.rand(B, T, H, dtype=torch.float64)
    o1, s1 = gdn_sequential(q, k, v, g, beta)
    o2, s2 = gdn_chunked(q, k, v, g, beta, chunk=64)
    o3, _ = gdn_chunked(q, k, v, g, beta, chunk=256)
    print("gdn one chunk vs sequential: max|do| %.3g" % (o1 - o3).abs().max())
    print("gdn chunked vs sequential: max|do| %.3g max|dS| %.3g" % ((o1 - o2).abs().max(), (s1 - s2).abs().max()))
    c = TargetConfig(n_vocab=300, n_embd=64, n_layer=4, n_ff=96, n_head=2, n_head_kv=1, head_dim=32, n_rot=8,
                     gdn_k_heads=2, gdn_v_heads=4, gdn_head_dim=16)
    m = Target(c).double()
    toks = torch.randint(0, 300, (2, 100))
    with torch.no_grad():
        a, b = m(toks, "chunked"), m(toks, "sequential")
    print("target chunked vs sequential logits: max|d| %.3g" % (a - b).abs().max())
    with torch.no_grad():
        states = [{} for _ in m.layers]
        parts = [m(toks[:, :37], states=states)]
        for t in range(37, 100):
            parts.append(m(toks[:, t:t + 1], pos0=t, states=states))
        inc = torch.cat(parts, dim=1)
    print("target incremental (prefill 37 + 63 single steps) vs full: max|d| %.3g" % (a - inc).abs().max())


if __name__ == "__main__":
    selftest()
