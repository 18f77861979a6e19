/* cli/mkdraft.c — `arbor mkdraft`: write a synthetic DFlash drafter GGUF for a qwen35 target.
 * Parses flags over a preset (model/mkdraft.h does the work). */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/pool.h"
#include "format/quant.h"
#include "model/mkdraft.h"

static const char usage_text[] =
    "usage: arbor mkdraft -o OUT.gguf --target TARGET.gguf [options]\n"
    "\n"
    "Writes a synthetic DFlash drafter with seeded random weights for a qwen35 target (its hidden size,\n"
    "layer count and tokenizer). The drafter has no token_embd/output: it uses the target's.\n"
    "\n"
    "  -o, --output FILE        output GGUF (required)\n"
    "  --target FILE            the target qwen35 GGUF (required)\n"
    "  --preset tiny|mid        starting shape (default tiny); every value below overrides it\n"
    "                           tiny: 2 layers, 4/2 heads x 64, ff 512, block 16, 3 taps spread over the target\n"
    "                           mid:  5 layers, 16/4 heads x 128, ff 6144, block 16, 5 taps (z-lab rule), f16\n"
    "  --n-layer N  --n-head N  --n-head-kv N  --head-dim N  --n-ff N\n"
    "  --block N                trained block size (dflash.block_size, default 16)\n"
    "  --target-layers LIST     tapped target layers as HF ids (OUTPUT of layer i), e.g. 1,4,6;\n"
    "                           the llama.cpp layout stores them +1 (input of layer i+1)\n"
    "  --type T                 type of the 2-D weights: f32 f16 bf16 q8_0 q4_0 q4_k ... (norms stay F32)\n"
    "  --layout llamacpp|lucebox  arch 'dflash' (llama.cpp converter, default) or 'qwen35-dflash-draft' (Lucebox)\n"
    "  --seed N                 (default 1); the same seed gives the same weights in both layouts\n"
    "  --rope-theta F           drafter rope base (default 1e6)  --eps F  --ctx N\n"
    "  --swa W                  layers 0..n-2 use a sliding window of W (the last layer stays full)\n"
    "  --causal                 dflash.attention.causal = true (llama.cpp layout)\n"
    "  --mask-id N              mask token (default 248070 when the vocab has it, else the last token)\n"
    "  --variant dflash2|dspark add that family's marker tensor/keys (an unrunnable file, for refusal tests)\n"
    "  --name S                 general.name\n"
    "  -t, --threads N          generator threads (default: all cores)\n"
    "  -q, --quiet              no summary\n";

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

static int parse_list(const char *s, int *out, int cap, int *n)
{
    *n = 0;
    if (!s || !*s) return cli_fail("--target-layers needs a list like 1,4,6");
    for (const char *p = s; *p;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > 100000 || (*end && *end != ','))
            return cli_fail("--target-layers: bad list '%s' (non-negative integers separated by commas)", s);
        if (*n == cap) return cli_fail("--target-layers: more than %d layers", cap);
        out[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return 0;
}

int cmd_mkdraft(int argc, char **argv)
{
    const char *preset = "tiny", *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { fputs(usage_text, stdout); return 0; }
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[i + 1];
    }
    mkdraft_params p;
    ar_error err = { 0 };
    if (mkdraft_preset(&p, preset, &err)) return cli_fail("%s", err.msg);

    int n_threads = 0, rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define FLAG(name) (!strcmp(a, name))
#define INT(name, field, lo, hi) else if (FLAG(name)) { rc = parse_int(a, v, lo, hi, &(field)); i++; }
#define FLT(name, field) else if (FLAG(name)) { rc = parse_float(a, v, &(field)); i++; }
        if (FLAG("--preset")) i++;
        else if (FLAG("-o") || FLAG("--output")) { if (!v) return cli_fail("%s needs a file", a); out = v; i++; }
        else if (FLAG("--target")) { if (!v) return cli_fail("--target needs a file"); p.target = v; i++; }
        else if (FLAG("--name")) { if (!v) return cli_fail("--name needs a value"); p.name = v; i++; }
        else if (FLAG("--type")) {
            if (!v || (p.type = ar_dtype_from_name(v)) < 0)
                return cli_fail("--type: unknown type '%s' (f32, f16, bf16, q8_0, q4_0, q4_k, ...)", v ? v : "");
            i++;
        }
        else if (FLAG("--layout")) {
            if (v && (!strcmp(v, "llamacpp") || !strcmp(v, "llama.cpp"))) p.layout = MKDRAFT_LLAMACPP;
            else if (v && !strcmp(v, "lucebox")) p.layout = MKDRAFT_LUCEBOX;
            else return cli_fail("--layout: expected llamacpp or lucebox, got '%s'", v ? v : "");
            i++;
        }
        else if (FLAG("--variant")) { if (!v) return cli_fail("--variant needs dflash2 or dspark"); p.variant = v; i++; }
        else if (FLAG("--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = v ? strtoull(v, &end, 10) : 0;
            if (!v || !*v || *end || errno || *v == '-') return cli_fail("--seed: expected a non-negative integer, got '%s'", v ? v : "");
            p.seed = s;
            i++;
        }
        else if (FLAG("--target-layers")) { rc = parse_list(v, p.target_layers, MKDRAFT_MAX_TAPS, &p.n_tap); i++; }
        else if (FLAG("--causal")) p.causal = true;
        else if (FLAG("-q") || FLAG("--quiet")) p.quiet = true;
        INT("--n-layer", p.n_layer, 1, MKDRAFT_MAX_LAYERS)
        INT("--n-head", p.n_head, 1, 4096)
        INT("--n-head-kv", p.n_head_kv, 1, 4096)
        INT("--head-dim", p.head_dim, 2, 4096)
        INT("--n-ff", p.n_ff, 1, 1 << 22)
        INT("--block", p.block_size, 2, 1024)
        INT("--ctx", p.ctx, 1, 1 << 30)
        INT("--swa", p.swa_window, 1, 1 << 30)
        INT("--mask-id", p.mask_token, 0, 1 << 30)
        INT("-t", n_threads, 1, 1024)
        INT("--threads", n_threads, 1, 1024)
        FLT("--rope-theta", p.rope_theta)
        FLT("--eps", p.eps)
        else return cli_fail("mkdraft: unknown argument '%s' (try --help)", a);
#undef FLAG
#undef INT
#undef FLT
    }
    if (rc) return rc;
    if (!out) return cli_fail("mkdraft: -o OUT.gguf is required (try --help)");
    if (!p.target) return cli_fail("mkdraft: --target TARGET.gguf is required (try --help)");

    ar_pool *pool = ar_pool_create(n_threads);
    if (!pool) return cli_fail("cannot create the thread pool");
    rc = mkdraft_write(&p, out, pool, &err);
    ar_pool_free(pool);
    if (rc) return cli_fail("%s", err.msg);
    return 0;
}
