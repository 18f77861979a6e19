/* cli/mkmodel.c — `arbor mkmodel`: write a synthetic qwen35 GGUF with seeded random weights.
 * Parses flags over a preset (model/mkmodel.h does the work). */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/pool.h"
#include "format/quant.h"
#include "model/mkmodel.h"

static const char usage_text[] =
    "usage: arbor mkmodel -o OUT.gguf [options]\n"
    "\n"
    "Writes a synthetic qwen35 model with seeded random weights (same flags + seed = same bytes).\n"
    "\n"
    "  -o, --output FILE        output GGUF (required)\n"
    "  --preset tiny|mid|27b    starting shape (default tiny); every value below overrides it\n"
    "                           tiny: 256 embd, 4 layers (3 GDN + 1 attention), vocab small:4096, tied\n"
    "                           mid:  Qwen3.5-2B shape, 1.88 B params, vocab padded to 248320, tied\n"
    "                           27b:  Qwen3.6-27B shape, untied, vocab 248320, random blocks\n"
    "  --type T                 type of the 2-D weights: f32 f16 bf16 q8_0 q4_0 q4_k q5_k q6_k ... (default f32);\n"
    "                           1-D tensors, norms, ssm_conv1d, ssm_a, ssm_dt stay F32\n"
    "  --random-blocks          quantized types: random valid blocks instead of quantizing floats (27b default)\n"
    "  --no-random-blocks       always quantize random floats\n"
    "  --seed N                 (default 1)\n"
    "  --vocab FILE.gguf        copy every tokenizer.* key of FILE (n_vocab = its token count)\n"
    "  --vocab small:N          first N-3 tokens of the vocab source + <|endoftext|> <|im_start|> <|im_end|>,\n"
    "                           and the merges that stay inside (a small but real byte-level BPE vocab)\n"
    "  --vocab-src FILE         vocab source for small:N / the default (default $ARBOR_FIXTURES/vocab-qwen35.gguf)\n"
    "  --pad-vocab N            pad the vocab to N tokens with [PAD<id>] (type UNUSED)\n"
    "  --chat-template FILE     tokenizer.chat_template text (default: the vocab source's, or a short Qwen one)\n"
    "  --name S                 general.name\n"
    "  --n-layer N  --n-embd N  --n-ff N  --n-head N  --n-head-kv N  --head-dim N  --rope-dim N\n"
    "  --rope-theta F  --eps F  --ctx N\n"
    "  --gdn-k-heads N  --gdn-v-heads N  --gdn-head-dim N  --conv-kernel N\n"
    "  --full-attn-interval N   layer i is attention iff (i+1) %% N == 0 (default 4)\n"
    "  --recurrent-layers LIST  explicit per-layer flags, e.g. 1,1,1,0 (1 = Gated DeltaNet); sets n_layer\n"
    "  --tied | --untied        share token_embd as the LM head, or write output.weight\n"
    "  --nextn N                append N (0|1) MTP blocks as llama.cpp names them\n"
    "  -t, --threads N          generator threads (default: all cores); the output does not depend on it\n"
    "  -q, --quiet              no progress or summary\n";

static int parse_int(const char *flag, const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi)
        return cli_fail("%s: expected an integer in [%ld, %ld], got '%s'", flag, lo, hi, s ? s : "(nothing)");
    *out = (int)v;
    return 0;
}

static int parse_float(const char *flag, const char *s, float *out)
{
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !(v > 0))
        return cli_fail("%s: expected a positive number, got '%s'", flag, s ? s : "(nothing)");
    *out = (float)v;
    return 0;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) { free(buf); return NULL; }
    buf[n] = 0;
    return buf;
}

int cmd_mkmodel(int argc, char **argv)
{
    const char *preset = "tiny", *out = NULL, *template_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { fputs(usage_text, stdout); return 0; }
        if (!strcmp(argv[i], "--preset")) {
            if (i + 1 == argc) return cli_fail("--preset needs tiny, mid or 27b");
            preset = argv[++i];
        }
    }
    mkmodel_params p;
    ar_error err = { 0 };
    if (mkmodel_preset(&p, preset, &err)) return cli_fail("%s", err.msg);

    int n_threads = 0, n_layer_flag = -1, rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define FLAG(name) (!strcmp(a, name))
#define INT(name, field, lo, hi) else if (FLAG(name)) { rc = parse_int(a, v, lo, hi, &(field)); i++; }
#define FLT(name, field) else if (FLAG(name)) { rc = parse_float(a, v, &(field)); i++; }
        if (FLAG("--preset")) i++;
        else if (FLAG("-o") || FLAG("--output")) { if (!v) return cli_fail("%s needs a file", a); out = v; i++; }
        else if (FLAG("--type")) {
            if (!v || (p.type = ar_dtype_from_name(v)) < 0)
                return cli_fail("--type: unknown type '%s' (f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k, ...)",
                                v ? v : "");
            i++;
        }
        else if (FLAG("--random-blocks")) p.random_blocks = true;
        else if (FLAG("--no-random-blocks")) p.random_blocks = false;
        else if (FLAG("--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = v ? strtoull(v, &end, 10) : 0;
            if (!v || !*v || *end || errno || *v == '-') return cli_fail("--seed: expected a non-negative integer, got '%s'", v ? v : "");
            p.seed = s;
            i++;
        }
        else if (FLAG("--vocab")) { if (!v) return cli_fail("--vocab needs FILE.gguf or small:N"); p.vocab = v; i++; }
        else if (FLAG("--vocab-src")) { if (!v) return cli_fail("--vocab-src needs a file"); p.vocab_src = v; i++; }
        else if (FLAG("--chat-template")) { if (!v) return cli_fail("--chat-template needs a file"); template_path = v; i++; }
        else if (FLAG("--name")) { if (!v) return cli_fail("--name needs a value"); p.name = v; i++; }
        INT("--pad-vocab", p.pad_vocab, 0, 1 << 30)
        INT("--n-layer", n_layer_flag, 1, MKMODEL_MAX_LAYERS - 1)
        INT("--n-embd", p.n_embd, 1, 1 << 20)
        INT("--n-ff", p.n_ff, 1, 1 << 22)
        INT("--n-head", p.n_head, 1, 4096)
        INT("--n-head-kv", p.n_head_kv, 1, 4096)
        INT("--head-dim", p.head_dim, 2, 1 << 16)
        INT("--rope-dim", p.rope_dim, 2, 1 << 16)
        FLT("--rope-theta", p.rope_theta)
        FLT("--eps", p.eps)
        INT("--ctx", p.ctx, 1, 1 << 30)
        INT("--gdn-k-heads", p.gdn_k_heads, 1, 4096)
        INT("--gdn-v-heads", p.gdn_v_heads, 1, 4096)
        INT("--gdn-head-dim", p.gdn_head_dim, 1, 1 << 16)
        INT("--conv-kernel", p.conv_kernel, 1, 64)
        INT("--full-attn-interval", p.full_attn_interval, 1, 1 << 20)
        INT("--nextn", p.nextn, 0, 1)
        INT("-t", n_threads, 1, 1024)
        INT("--threads", n_threads, 1, 1024)
        else if (FLAG("--recurrent-layers")) {
            if (!v || !*v) return cli_fail("--recurrent-layers needs a list like 1,1,1,0");
            int n = 0;
            for (const char *s = v; *s;) {
                if ((*s != '0' && *s != '1') || (s[1] && s[1] != ',') || (s[1] == ',' && !s[2]))
                    return cli_fail("--recurrent-layers: expected 0/1 flags separated by commas, got '%s'", v);
                if (n == MKMODEL_MAX_LAYERS - 1) return cli_fail("--recurrent-layers: too many layers");
                p.recurrent[n++] = *s == '1';
                s += s[1] ? 2 : 1;
            }
            p.has_recurrent = true;
            p.n_recurrent = n;
            i++;
        }
        else if (FLAG("--tied")) p.tied = true;
        else if (FLAG("--untied")) p.tied = false;
        else if (FLAG("-q") || FLAG("--quiet")) p.quiet = true;
        else return cli_fail("mkmodel: unknown option '%s' (see arbor mkmodel --help)", a);
#undef FLAG
#undef INT
#undef FLT
    }
    if (rc) return rc;
    if (!out) return cli_fail("mkmodel: -o OUT.gguf is required (see arbor mkmodel --help)");
    if (n_layer_flag > 0) p.n_layer = n_layer_flag;
    else if (p.has_recurrent) p.n_layer = p.n_recurrent;
    if (p.has_recurrent && p.n_recurrent != p.n_layer)
        return cli_fail("--recurrent-layers has %d flags but --n-layer is %d", p.n_recurrent, p.n_layer);

    char *template_text = NULL;
    if (template_path) {
        if (!(template_text = read_text(template_path))) return cli_fail("cannot read chat template %s", template_path);
        p.chat_template = template_text;
    }
    ar_pool *pool = ar_pool_create(n_threads);
    if (!pool) { free(template_text); return cli_fail("cannot create the thread pool"); }
    rc = mkmodel_write(&p, out, pool, &err);
    ar_pool_free(pool);
    free(template_text);
    if (rc) return cli_fail("mkmodel: %s", err.msg);
    return 0;
}
