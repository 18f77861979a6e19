#!/usr/bin/python3
"""Write the trained pair as GGUF files llama.cpp (and arbor) load: the target as arch `qwen35`
(specs/qwen35.md 1-2) and the drafter as arch `dflash` (specs/dflash.md 2.1-2.2), both with the
tokenizer (gpt2 BPE, qwen35 pre-tokenizer), the special tokens and the Qwen3.5 chat template.

Uses llama.cpp's gguf-py (part of the oracle package, not vendored): $ARBOR_LLAMA_SRC/gguf-py, default
build/oracle/llama.cpp/gguf-py. Types: f32 (oracle comparisons), f16, q8_0 (bundled). With f16/q8_0 the
1-D tensors, norms, ssm_conv1d, ssm_a, ssm_dt, ssm_alpha and ssm_beta stay F32.

  export_gguf.py --tok TOK.json --target target.pt [--drafter drafter.pt] --out-target T.gguf
                 [--out-drafter D.gguf] [--type q8_0] [--ctx 2048]
"""
import argparse, os, sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LLAMA_SRC = os.environ.get("ARBOR_LLAMA_SRC", os.path.join(ROOT, "build/oracle/llama.cpp"))
sys.path.insert(0, os.path.join(LLAMA_SRC, "gguf-py"))
import gguf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer as tk  # noqa: E402
from model import TargetConfig, DraftConfig  # noqa: E402
from common import load_weights  # noqa: E402

FTYPE = {"f32": (gguf.LlamaFileType.ALL_F32, gguf.GGMLQuantizationType.F32),
         "f16": (gguf.LlamaFileType.MOSTLY_F16, gguf.GGMLQuantizationType.F16),
         "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, gguf.GGMLQuantizationType.Q8_0)}
KEEP_F32 = ("_norm.weight", "ssm_conv1d.weight", "ssm_a", "ssm_dt.bias", "ssm_alpha.weight", "ssm_beta.weight")


def add(w, name, t, qtype):
    a = t.detach().to(torch.float32).cpu().numpy()
    if a.ndim == 1 or name.endswith(KEEP_F32) or qtype == gguf.GGMLQuantizationType.F32:
        w.add_tensor(name, np.ascontiguousarray(a, dtype=np.float32))
    elif qtype == gguf.GGMLQuantizationType.F16:
        w.add_tensor(name, a.astype(np.float16))
    else:
        if a.shape[-1] % 32:
            w.add_tensor(name, np.ascontiguousarray(a, dtype=np.float32))
        else:
            w.add_tensor(name, gguf.quants.quantize(a, qtype), raw_dtype=qtype)


def add_vocab(w, tok, template):
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen35")
    w.add_token_list(tok.tokens)
    w.add_token_types(tok.types)
    w.add_token_merges(tok.merges)
    w.add_bos_token_id(tok.id["<|endoftext|>"])
    w.add_eos_token_id(tok.id["<|im_end|>"])
    w.add_pad_token_id(tok.id["<|endoftext|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(template)


def sections(n_rot):
    """M-RoPE sections [t, h, w, 0] summing to n_rot/2, balanced like Qwen's [11, 11, 10, 0]: ggml's
    interleaved M-RoPE gives frequency i to stream i % 3 only while i < 3 * section, else to the 4th
    stream (position 0 for text, i.e. no rotation), so unbalanced sections would leave dims unrotated."""
    s = n_rot // 2
    t = (s + 2) // 3
    h = (s - t + 1) // 2
    return [t, h, s - t - h, 0]


def export_target(path, ck, tok, template, ftype, ctx, name):
    c = TargetConfig(**ck["config"])
    sd = ck["model"]
    ft, qt = FTYPE[ftype]
    w = gguf.GGUFWriter(path, "qwen35")
    w.add_name(name)
    w.add_file_type(ft)
    if ftype == "q8_0":
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(ctx)
    w.add_embedding_length(c.n_embd)
    w.add_block_count(c.n_layer)
    w.add_feed_forward_length(c.n_ff)
    w.add_head_count(c.n_head)
    w.add_head_count_kv(c.n_head_kv)
    w.add_key_length(c.head_dim)
    w.add_value_length(c.head_dim)
    w.add_layer_norm_rms_eps(c.eps)
    w.add_rope_freq_base(c.rope_base)
    w.add_rope_dimension_count(c.n_rot)
    w.add_rope_dimension_sections(sections(c.n_rot))
    w.add_ssm_conv_kernel(c.conv_kernel)
    w.add_ssm_inner_size(c.gdn_v_heads * c.gdn_head_dim)
    w.add_ssm_state_size(c.gdn_head_dim)
    w.add_ssm_time_step_rank(c.gdn_v_heads)
    w.add_ssm_group_count(c.gdn_k_heads)
    w.add_full_attention_interval(c.full_attention_interval)
    add_vocab(w, tok, template)

    add(w, "token_embd.weight", sd["embed.weight"], qt)
    add(w, "output_norm.weight", sd["out_norm.weight"], qt)
    add(w, "output.weight", sd["lm_head.weight"], qt)
    for il in range(c.n_layer):
        p, b = "layers.%d." % il, "blk.%d." % il
        add(w, b + "attn_norm.weight", sd[p + "attn_norm.weight"], qt)
        add(w, b + "post_attention_norm.weight", sd[p + "post_norm.weight"], qt)
        add(w, b + "ffn_gate.weight", sd[p + "ffn.gate.weight"], qt)
        add(w, b + "ffn_up.weight", sd[p + "ffn.up.weight"], qt)
        add(w, b + "ffn_down.weight", sd[p + "ffn.down.weight"], qt)
        m = p + "mixer."
        if c.is_recurrent(il):
            add(w, b + "attn_qkv.weight", sd[m + "wqkv.weight"], qt)
            add(w, b + "attn_gate.weight", sd[m + "wgate.weight"], qt)
            add(w, b + "ssm_beta.weight", sd[m + "wbeta.weight"], qt)
            add(w, b + "ssm_alpha.weight", sd[m + "walpha.weight"], qt)
            add(w, b + "ssm_dt.bias", sd[m + "dt_bias"], qt)
            add(w, b + "ssm_a", -torch.exp(sd[m + "A_log"].double()).float(), qt)
            add(w, b + "ssm_conv1d.weight", sd[m + "conv"], qt)
            add(w, b + "ssm_norm.weight", sd[m + "norm.weight"], qt)
            add(w, b + "ssm_out.weight", sd[m + "wout.weight"], qt)
        else:
            add(w, b + "attn_q.weight", sd[m + "wq.weight"], qt)
            add(w, b + "attn_k.weight", sd[m + "wk.weight"], qt)
            add(w, b + "attn_v.weight", sd[m + "wv.weight"], qt)
            add(w, b + "attn_output.weight", sd[m + "wo.weight"], qt)
            add(w, b + "attn_q_norm.weight", sd[m + "q_norm.weight"], qt)
            add(w, b + "attn_k_norm.weight", sd[m + "k_norm.weight"], qt)
    write(w)


def export_drafter(path, ck, tok, template, ftype, ctx, name):
    c = DraftConfig(**ck["config"])
    sd = ck["model"]
    ft, qt = FTYPE[ftype]
    w = gguf.GGUFWriter(path, "dflash")
    w.add_name(name)
    w.add_file_type(ft)
    if ftype == "q8_0":
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(ctx)
    w.add_embedding_length(c.n_embd)
    w.add_block_count(c.n_layer)
    w.add_feed_forward_length(c.n_ff)
    w.add_head_count(c.n_head)
    w.add_head_count_kv(c.n_head_kv)
    w.add_key_length(c.head_dim)
    w.add_value_length(c.head_dim)
    w.add_layer_norm_rms_eps(c.eps)
    w.add_rope_freq_base(c.rope_base)
    w.add_rope_dimension_count(c.head_dim)
    w.add_rope_dimension_sections([c.head_dim // 2, 0, 0, 0])    # M-RoPE target: temporal dim only
    w.add_target_layers([i + 1 for i in c.target_layer_ids])      # llama.cpp: layer-input convention
    w.add_block_size(c.block_size)
    add_vocab(w, tok, template)
    w.add_mask_token_id(c.mask_token_id)

    add(w, "fc.weight", sd["fc.weight"], qt)
    add(w, "enc.output_norm.weight", sd["hidden_norm.weight"], qt)
    add(w, "output_norm.weight", sd["out_norm.weight"], qt)
    for il in range(c.n_layer):
        p, b = "layers.%d." % il, "blk.%d." % il
        add(w, b + "attn_norm.weight", sd[p + "attn_norm.weight"], qt)
        add(w, b + "attn_q.weight", sd[p + "wq.weight"], qt)
        add(w, b + "attn_k.weight", sd[p + "wk.weight"], qt)
        add(w, b + "attn_v.weight", sd[p + "wv.weight"], qt)
        add(w, b + "attn_output.weight", sd[p + "wo.weight"], qt)
        add(w, b + "attn_q_norm.weight", sd[p + "q_norm.weight"], qt)
        add(w, b + "attn_k_norm.weight", sd[p + "k_norm.weight"], qt)
        add(w, b + "ffn_norm.weight", sd[p + "ffn_norm.weight"], qt)
        add(w, b + "ffn_gate.weight", sd[p + "ffn.gate.weight"], qt)
        add(w, b + "ffn_up.weight", sd[p + "ffn.up.weight"], qt)
        add(w, b + "ffn_down.weight", sd[p + "ffn.down.weight"], qt)
    write(w)


def write(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tok", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--drafter", default="")
    ap.add_argument("--out-target", required=True)
    ap.add_argument("--out-drafter", default="")
    ap.add_argument("--type", default="q8_0", choices=sorted(FTYPE))
    ap.add_argument("--ctx", type=int, default=2048, help="context_length written to the GGUFs")
    ap.add_argument("--template", default=os.path.join(LLAMA_SRC, "models/templates/Qwen3.5-4B.jinja"))
    ap.add_argument("--name", default="arbor-tiny")
    args = ap.parse_args()
    tok = tk.Tokenizer.load(args.tok)
    with open(args.template) as f:
        template = f.read()
    export_target(args.out_target, load_weights(args.target), tok, template, args.type,
                  args.ctx, args.name)
    print("export: %s (%.1f MB)" % (args.out_target, os.path.getsize(args.out_target) / 1e6))
    if args.drafter:
        export_drafter(args.out_drafter, load_weights(args.drafter), tok, template, args.type,
                       args.ctx, args.name + "-dflash")
        print("export: %s (%.1f MB)" % (args.out_drafter, os.path.getsize(args.out_drafter) / 1e6))


if __name__ == "__main__":
    main()
