// tests/oracle/dflash_oracle.cpp — one DFlash step through llama.cpp, as reference data for arbor.
//
// Not part of libarbor. scripts/oracle.sh builds it (C++17) against the pinned llama.cpp source tree
// (build/oracle/llama.cpp; llama-ext.h from its src/ holds the DFlash hooks, exported C++-mangled) and
// links the prebuilt libs of node-llama-cpp 3.22.1 (llama.cpp 0.5.0).
//
// What it does, exactly as llama.cpp's speculative-simple + common/speculative.cpp (draft-dflash) do
// for the first draft of a generation (specs/oracle.md §4.2):
//   1. target decode of prompt[0 .. N-2] with llama_set_embeddings_layer_inp on for every tap layer
//      of the drafter (dflash.target_layers: the INPUT of those target layers);
//   2. "KV injection": the concatenated taps [N-1][n_tap * n_embd] decoded as an embedding batch by the
//      drafter context (ctx_other = target context) at positions 0 .. N-2;
//   3. one noise block [prompt[N-1], MASK x n_draft] at positions N-1 .. N-1+n_draft, non-causal
//      (unless dflash.attention.causal), logits for every row.
// Outputs: PREFIX.features.bin  "LLFEAT01", int32 n_rows, n_tap, n_embd, int32 taps[n_tap],
//                               float feat[n_rows][n_tap * n_embd]   (rows = prompt positions 0 .. N-2)
//          PREFIX.draft_logits.bin "LLOGITS1", int32 n_rows, n_vocab, int32 token[n_rows], int32 pos[n_rows],
//                               float logits[n_rows][n_vocab]         (rows = block rows, anchor first)
// and prints "draft: t1 t2 ..." (argmax of rows 1..n_draft, what llama.cpp's top-k sampler picks first).
// Oracle settings: flash attention off, F32 KV caches (specs/oracle.md §2.2).
#include <dlfcn.h>

#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "llama-ext.h"
#include "llama.h"

static bool g_verbose;
static ggml_log_level g_last_level = GGML_LOG_LEVEL_INFO;

[[noreturn]] static void die(const char * fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("dflash_oracle: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void log_filter(ggml_log_level level, const char * text, void *) {
    if (level != GGML_LOG_LEVEL_CONT) {
        g_last_level = level;
    }
    if (g_verbose || g_last_level == GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

// The CPU backend is a separate .so next to libllama (GGML_BACKEND_DL): load it from there.
static void oracle_init() {
    llama_log_set(log_filter, nullptr);
    Dl_info info;
    if (!dladdr((void *) (uintptr_t) &llama_backend_init, &info) || !info.dli_fname) {
        die("dladdr cannot locate libllama; is the oracle linked against the npm package's libs?");
    }
    std::string dir = info.dli_fname;
    size_t slash = dir.rfind('/');
    dir = slash == std::string::npos ? "." : dir.substr(0, slash);
    const char * variant = getenv("LLAMA_CPU_VARIANT");
    if (variant && *variant) {
        std::string path = dir + "/libggml-cpu-" + variant + ".so";
        if (!ggml_backend_load(path.c_str())) {
            die("LLAMA_CPU_VARIANT=%s: cannot load '%s'", variant, path.c_str());
        }
    } else {
        ggml_backend_load_all_from_path(dir.c_str());
    }
    if (!ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU)) {
        die("no CPU backend loaded from '%s' (expected libggml-cpu-*.so there; rerun scripts/oracle.sh)", dir.c_str());
    }
    llama_backend_init();
}

static long parse_long(const char * s, const char * what, long lo, long hi) {
    char * end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) {
        die("bad %s '%s' (expected an integer in [%ld, %ld])", what, s, lo, hi);
    }
    return v;
}

static std::vector<llama_token> parse_ids(const char * s) {
    std::vector<llama_token> ids;
    const char * p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == ',') {
            p++;
        }
        if (!*p) {
            break;
        }
        char * end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > INT32_MAX) {
            die("bad token id in --ids near '%.20s'", p);
        }
        ids.push_back((llama_token) v);
        p = end;
    }
    return ids;
}

static llama_model * load_model(const char * path) {
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * m = llama_model_load_from_file(path, mp);
    if (!m) {
        die("llama.cpp cannot load '%s' (see its error above; -v shows the full log)", path);
    }
    return m;
}

static llama_context * new_context(llama_model * model, uint32_t n_ctx, uint32_t n_batch, int threads,
                                   llama_context * other) {
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx           = n_ctx;
    cp.n_batch         = n_batch;
    cp.n_ubatch        = n_batch;
    cp.n_seq_max       = 1;
    cp.n_threads       = threads;
    cp.n_threads_batch = threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k          = GGML_TYPE_F32;
    cp.type_v          = GGML_TYPE_F32;
    cp.no_perf         = true;
    cp.ctx_other       = other;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        die("llama.cpp cannot create a context (n_ctx %u, n_batch %u; see the error above)", n_ctx, n_batch);
    }
    return ctx;
}

static void put(FILE * f, const void * p, size_t size, size_t n, const std::string & path) {
    if (fwrite(p, size, n, f) != n) {
        die("cannot write '%s': %s", path.c_str(), strerror(errno));
    }
}

static bool meta_true(const llama_model * m, const char * key) {
    char buf[32] = {};
    return llama_model_meta_val_str(m, key, buf, sizeof buf) >= 0 && strcmp(buf, "true") == 0;
}

static const char usage[] =
    "usage: dflash_oracle -m TARGET.gguf -md DRAFT.gguf (-p TEXT | --ids \"1 2 3\") [--n-draft N] [-o PREFIX]\n"
    "                     [-t THREADS] [-v]\n"
    "  one DFlash step (speculative-simple's first draft): target taps of prompt[0..N-2] -> drafter KV\n"
    "  (TEXT is tokenized as speculative-simple does: special tokens added and parsed)\n"
    "  injection -> block [prompt[N-1], MASK x N] (default N = dflash.block_size - 1)\n"
    "  writes PREFIX.features.bin (LLFEAT01) and PREFIX.draft_logits.bin (LLOGITS1); prints the draft tokens\n"
    "  env: LLAMA_VERBOSE=1 (= -v), LLAMA_CPU_VARIANT=zen4|icelake|haswell|... forces one CPU backend\n";

int main(int argc, char ** argv) {
    const char * target_path = nullptr, * draft_path = nullptr, * text = nullptr, * ids_arg = nullptr;
    const char * prefix = nullptr;
    long n_draft = -1, threads = 2;
    g_verbose = getenv("LLAMA_VERBOSE") && *getenv("LLAMA_VERBOSE") == '1';
    for (int i = 1; i < argc; i++) {
        const char * a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-m") && has) {
            target_path = argv[++i];
        } else if (!strcmp(a, "-md") && has) {
            draft_path = argv[++i];
        } else if (!strcmp(a, "-p") && has) {
            text = argv[++i];
        } else if (!strcmp(a, "--ids") && has) {
            ids_arg = argv[++i];
        } else if (!strcmp(a, "--n-draft") && has) {
            n_draft = parse_long(argv[++i], "--n-draft", 1, 1024);
        } else if (!strcmp(a, "-o") && has) {
            prefix = argv[++i];
        } else if (!strcmp(a, "-t") && has) {
            threads = parse_long(argv[++i], "-t", 1, 1024);
        } else if (!strcmp(a, "-v")) {
            g_verbose = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "help")) {
            fputs(usage, stdout);
            return 0;
        } else {
            die("unexpected argument '%s'\n%s", a, usage);
        }
    }
    if (!target_path || !draft_path || (!!text + !!ids_arg) != 1) {
        die("%s", usage);
    }

    oracle_init();
    llama_model * model_tgt = load_model(target_path);
    llama_model * model_dft = load_model(draft_path);
    const llama_vocab * vocab = llama_model_get_vocab(model_tgt);
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    const int32_t n_embd  = llama_model_n_embd(model_tgt);

    std::vector<llama_token> prompt;
    if (text) {
        // as speculative-simple: common_tokenize(ctx, prompt, add_special = true, parse_special = true)
        int32_t n = -llama_tokenize(vocab, text, (int32_t) strlen(text), nullptr, 0, true, true);
        prompt.resize(n > 0 ? n : 0);
        if (n > 0 && llama_tokenize(vocab, text, (int32_t) strlen(text), prompt.data(), n, true, true) != n) {
            die("tokenization failed");
        }
    } else {
        prompt = parse_ids(ids_arg);
    }
    const int32_t N = (int32_t) prompt.size();
    if (N < 2) {
        die("the prompt needs at least 2 tokens (N-1 to decode, the last one is the anchor); got %d", N);
    }
    for (llama_token t : prompt) {
        if (t < 0 || t >= n_vocab) {
            die("prompt token %d is out of the vocabulary [0, %d)", t, n_vocab);
        }
    }

    const int32_t * taps  = llama_model_target_layer_ids(model_dft);
    const int32_t   n_tap = (int32_t) llama_model_target_layer_ids_n(model_dft);
    if (!taps || n_tap <= 0) {
        die("'%s' has no DFlash target layers (is it a dflash drafter?)", draft_path);
    }
    int32_t block_size = 16;
    {
        char buf[32] = {};
        if (llama_model_meta_val_str(model_dft, "dflash.block_size", buf, sizeof buf) >= 0) {
            block_size = atoi(buf);
        }
    }
    if (n_draft < 0) {
        n_draft = block_size - 1;
    }
    const llama_token mask = llama_vocab_mask(llama_model_get_vocab(model_dft));
    if (mask < 0 || mask >= n_vocab) {
        die("the drafter's mask token %d is not in the vocabulary (tokenizer.ggml.mask_token_id)", mask);
    }
    const bool causal = meta_true(model_dft, "dflash.attention.causal");

    const uint32_t n_ctx   = (uint32_t) (N + n_draft + 16);
    const uint32_t n_batch = (uint32_t) (N > n_draft + 1 ? N : n_draft + 1);
    llama_context * ctx_tgt = new_context(model_tgt, n_ctx, n_batch, (int) threads, nullptr);
    for (int32_t k = 0; k < n_tap; k++) {
        llama_set_embeddings_layer_inp(ctx_tgt, (uint32_t) taps[k], true);
    }
    llama_context * ctx_dft = new_context(model_dft, n_ctx, n_batch, (int) threads, ctx_tgt);
    llama_set_embeddings_nextn(ctx_dft, true, /*masked*/ true);
    llama_set_causal_attn(ctx_dft, causal);

    // 1. target: prompt[0 .. N-2], no logits (speculative-simple)
    const int32_t n_rows = N - 1;
    llama_batch batch = llama_batch_init(n_batch, 0, 1);
    batch.n_tokens = n_rows;
    for (int32_t i = 0; i < n_rows; i++) {
        batch.token[i]     = prompt[i];
        batch.pos[i]       = i;
        batch.n_seq_id[i]  = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i]    = false;
    }
    if (llama_decode(ctx_tgt, batch) != 0) {
        die("target llama_decode failed on %d tokens", n_rows);
    }

    // 2. features, in tap order, then KV injection into the drafter at the same positions
    const size_t n_feat = (size_t) n_tap * n_embd;
    std::vector<float> feat((size_t) n_rows * n_feat);
    for (int32_t k = 0; k < n_tap; k++) {
        const float * layer = llama_get_embeddings_layer_inp(ctx_tgt, (uint32_t) taps[k]);
        if (!layer) {
            die("target layer %d input was not extracted", taps[k]);
        }
        for (int32_t i = 0; i < n_rows; i++) {
            memcpy(feat.data() + (size_t) i * n_feat + (size_t) k * n_embd, layer + (size_t) i * n_embd,
                   (size_t) n_embd * sizeof(float));
        }
    }
    const bool is_mrope = llama_model_rope_type(model_dft) == LLAMA_ROPE_TYPE_MROPE;
    llama_batch inject = llama_batch_init(n_rows, (int32_t) n_feat, 1);
    if (is_mrope) {
        free(inject.pos);
        inject.pos = (llama_pos *) malloc(sizeof(llama_pos) * 4 * (size_t) n_rows);
    }
    inject.n_tokens = n_rows;
    memcpy(inject.embd, feat.data(), feat.size() * sizeof(float));
    for (int32_t i = 0; i < n_rows; i++) {
        inject.pos[i] = i;
        if (is_mrope) {
            inject.pos[1 * n_rows + i] = i;
            inject.pos[2 * n_rows + i] = i;
            inject.pos[3 * n_rows + i] = 0;
        }
        inject.n_seq_id[i]  = 1;
        inject.seq_id[i][0] = 0;
        inject.logits[i]    = false;
    }
    if (llama_decode(ctx_dft, inject) != 0) {
        die("drafter llama_decode failed on the %d-row feature injection", n_rows);
    }

    // 3. the noise block
    const int32_t n_block = (int32_t) n_draft + 1;
    batch.n_tokens = n_block;
    for (int32_t i = 0; i < n_block; i++) {
        batch.token[i]     = i == 0 ? prompt[N - 1] : mask;
        batch.pos[i]       = n_rows + i;
        batch.n_seq_id[i]  = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i]    = true;
    }
    if (llama_decode(ctx_dft, batch) != 0) {
        die("drafter llama_decode failed on the %d-row block", n_block);
    }

    std::vector<llama_token> draft;
    for (int32_t i = 1; i < n_block; i++) {
        const float * row = llama_get_logits_ith(ctx_dft, i);
        int32_t best = 0;
        for (int32_t v = 1; v < n_vocab; v++) {
            if (row[v] > row[best]) {
                best = v;
            }
        }
        draft.push_back(best);
    }

    if (prefix) {
        std::string fpath = std::string(prefix) + ".features.bin";
        FILE * f = fopen(fpath.c_str(), "wb");
        if (!f) {
            die("cannot create '%s': %s", fpath.c_str(), strerror(errno));
        }
        put(f, "LLFEAT01", 1, 8, fpath);
        put(f, &n_rows, 4, 1, fpath);
        put(f, &n_tap, 4, 1, fpath);
        put(f, &n_embd, 4, 1, fpath);
        put(f, taps, 4, (size_t) n_tap, fpath);
        put(f, feat.data(), sizeof(float), feat.size(), fpath);
        if (fclose(f) != 0) {
            die("cannot write '%s'", fpath.c_str());
        }

        std::string lpath = std::string(prefix) + ".draft_logits.bin";
        f = fopen(lpath.c_str(), "wb");
        if (!f) {
            die("cannot create '%s': %s", lpath.c_str(), strerror(errno));
        }
        put(f, "LLOGITS1", 1, 8, lpath);
        put(f, &n_block, 4, 1, lpath);
        put(f, &n_vocab, 4, 1, lpath);
        for (int32_t i = 0; i < n_block; i++) {
            put(f, &batch.token[i], 4, 1, lpath);
        }
        for (int32_t i = 0; i < n_block; i++) {
            put(f, &batch.pos[i], 4, 1, lpath);
        }
        for (int32_t i = 0; i < n_block; i++) {
            put(f, llama_get_logits_ith(ctx_dft, i), sizeof(float), (size_t) n_vocab, lpath);
        }
        if (fclose(f) != 0) {
            die("cannot write '%s'", lpath.c_str());
        }
    }

    printf("ids:");
    for (llama_token t : prompt) {
        printf(" %d", t);
    }
    printf("\ntaps:");
    for (int32_t k = 0; k < n_tap; k++) {
        printf(" %d", taps[k]);
    }
    printf("\nmask: %d\nanchor: %d at %d\ndraft:", mask, prompt[N - 1], n_rows);
    for (llama_token t : draft) {
        printf(" %d", t);
    }
    printf("\n");

    llama_batch_free(inject);
    llama_batch_free(batch);
    llama_free(ctx_dft);
    llama_free(ctx_tgt);
    llama_model_free(model_dft);
    llama_model_free(model_tgt);
    llama_backend_free();
    return 0;
}
