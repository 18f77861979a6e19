/* tests/test_quant_oracle.c — bit identity of arbor's quantization with llama.cpp's.
 *
 * 1. Dequantization: every non-F32 tensor of the llama.cpp-made fixtures (tiny-q8_0, -q4_k_m, -q5_k_m,
 *    -q6_k, plus tiny-f16 / tiny-bf16) decoded by ar_dequantize_row must equal, bit for bit, what
 *    the oracle's `dequant` mode gets from ggml's own to_float.
 * 2. Quantization: `ar_quantize_model` of tiny-f32 must give the same type for every tensor as
 *    llama_model_quantize and byte-identical tensor data (both use the reference quantizers, no
 *    importance matrix); in fact the whole files are identical, which is checked too. The four
 *    fixture types are compared with the fixture files; every other file type the oracle offers
 *    is quantized by the oracle here, and so are F16/BF16 inputs.
 * 3. Odd shapes: a model made here (F16 weights, n_embd 144 and n_ff 352 so that rows are not
 *    multiples of 256 or even 32, 12 layers, untied, one MTP block) exercises the fallback types
 *    (Q5_0, Q5_1, Q8_0, IQ4_NL, F16) and longer mixes; the file types the oracle does not offer
 *    are listed as unchecked.
 * Needs $ARBOR_FIXTURES (scripts/fixtures.sh) and $ARBOR_ORACLE (scripts/oracle.sh); a missing one
 * is a failed check, never a skip. */
#include "base/log.h"
#include "base/timer.h"
#include "format/gguf.h"
#include "format/quant.h"
#include "format/quantize_model.h"
#include "model/mkmodel.h"
#include "tests/test.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];
static const char *oracle;

/* Paths live in a ring of 16 buffers: callers copy a path they keep across many calls. */
static const char *tmp_path(const char *name)
{
    static char p[16][600];
    static int k;
    char *s = p[k++ % 16];
    snprintf(s, sizeof p[0], "%s/%s", tmpdir, name);
    return s;
}

static const char *fixture(const char *name)
{
    static char p[16][600];
    static int k;
    char *s = p[k++ % 16];
    snprintf(s, sizeof p[0], "%s/%s", test_fixtures(), name);
    return s;
}

static bool exists(const char *path) { return access(path, R_OK) == 0; }

/* Run the oracle with argv (NULL-terminated, argv[0] = mode); its output goes to a log that is
 * printed when it fails. Returns the exit status (or -1). */
static int run_oracle(const char *const *args)
{
    const char *log = tmp_path("oracle.log");
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)oracle;
    for (int i = 0; args[i] && n < 15; i++) argv[n++] = (char *)args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
        execv(oracle, argv);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0) return -1;
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (rc) {
        printf("oracle %s failed (%d):\n", args[0], rc);
        FILE *f = fopen(log, "r");
        char line[512];
        for (int i = 0; f && i < 20 && fgets(line, sizeof line, f); i++) fputs(line, stdout);
        if (f) fclose(f);
    }
    return rc;
}

static void *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(n > 0 ? (size_t)n : 1);
    if (p && n > 0 && fread(p, 1, (size_t)n, f) != (size_t)n) { free(p); p = NULL; }
    fclose(f);
    *size = n > 0 ? (size_t)n : 0;
    return p;
}

/* ---- 1. dequantization ---------------------------------------------------------------------- */

static int checked_by_type[AR_DTYPE_COUNT];

static void dequant_file(const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s", fixture(name));
    gguf_file *f = NULL;
    ar_error err = { 0 };
    if (gguf_open(&f, path, &err)) {
        CHECK(0, "fixture %s: %s (run scripts/fixtures.sh)", path, err.msg);
        return;
    }
    char out[600];
    snprintf(out, sizeof out, "%s", tmp_path("dequant.bin"));
    int n_ok = 0, n_bad = 0;
    long long n_diff_values = 0;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (t->type == AR_F32) continue;   /* a plain copy on both sides */
        const char *args[] = { "dequant", path, t->name, out, NULL };
        if (run_oracle(args)) {
            CHECK(0, "%s: oracle dequant of %s failed", name, t->name);
            continue;
        }
        size_t size;
        float *ref = read_all(out, &size);
        float *mine = malloc((size_t)t->n_elements * sizeof(float));
        const int64_t n = t->ne[0], rows = t->n_elements / n;
        const size_t rb = ar_row_bytes(t->type, n);
        int rc = AR_OK;
        for (int64_t r = 0; r < rows && !rc; r++)
            rc = ar_dequantize_row(t->type, (const uint8_t *)t->data + r * rb, mine + r * n, n);
        bool same = ref && mine && !rc && size == (size_t)t->n_elements * sizeof(float) && !memcmp(ref, mine, size);
        if (!same && ref && mine && !rc && size == (size_t)t->n_elements * sizeof(float))
            for (int64_t k = 0; k < t->n_elements; k++) n_diff_values += memcmp(&ref[k], &mine[k], 4) != 0;
        CHECK(same, "%s: %s (%s): arbor's dequantization differs from ggml's (rc %d, %zu bytes)", name, t->name,
              ar_dtype_name(t->type), rc, size);
        if (same) { n_ok++; checked_by_type[t->type]++; } else n_bad++;
        free(ref);
        free(mine);
    }
    printf("ok dequant %-16s %d/%d non-F32 tensors bit-identical to ggml's to_float (differing values: %lld)\n", name, n_ok,
           n_ok + n_bad, n_diff_values);
    gguf_close(f);
}

/* ---- 2. quantization ------------------------------------------------------------------------ */

static int n_files_identical, n_files_compared;

/* Compare arbor's quantization of `src` with llama.cpp's file `ref`. */
static void compare_quant(const char *label, const char *src, const char *ftype, const char *ref)
{
    char mine[600];
    snprintf(mine, sizeof mine, "%s", tmp_path("arbor.gguf"));
    ar_error err = { 0 };
    int rc = ar_quantize_model(src, mine, ftype, 2, &err);
    CHECK(rc == AR_OK, "%s: arbor quantize: %s", label, err.msg);
    if (rc) return;
    gguf_file *a = NULL, *l = NULL;
    if (gguf_open(&a, mine, &err) || gguf_open(&l, ref, &err)) {
        CHECK(0, "%s: %s", label, err.msg);
        gguf_close(a);
        return;
    }
    int n_type = 0, n_data = 0, n = (int)gguf_n_tensors(l);
    CHECK(gguf_n_tensors(a) == gguf_n_tensors(l), "%s: %lld tensors, llama.cpp has %lld", label, (long long)gguf_n_tensors(a),
          (long long)gguf_n_tensors(l));
    for (int64_t i = 0; i < gguf_n_tensors(l); i++) {
        const gguf_tensor *tl = gguf_tensor_at(l, i), *ta = gguf_find_tensor(a, tl->name);
        if (!ta) {
            CHECK(0, "%s: arbor's file lacks %s", label, tl->name);
            continue;
        }
        bool type_ok = ta->type == tl->type;
        bool data_ok = type_ok && ta->nbytes == tl->nbytes && !memcmp(ta->data, tl->data, tl->nbytes);
        CHECK(type_ok, "%s: %s is %s in arbor's file, %s in llama.cpp's", label, tl->name, ar_dtype_name(ta->type),
              ar_dtype_name(tl->type));
        CHECK(!type_ok || data_ok, "%s: %s (%s): data differs from llama.cpp's", label, tl->name, ar_dtype_name(tl->type));
        n_type += type_ok;
        n_data += data_ok;
    }
    uint32_t fa = 0, fl = 1;
    gguf_get_u32(a, "general.file_type", &fa, &err);
    gguf_get_u32(l, "general.file_type", &fl, &err);
    CHECK(fa == fl, "%s: general.file_type %u, llama.cpp writes %u", label, fa, fl);
    gguf_close(a);
    gguf_close(l);
    size_t sa, sl;
    void *ba = read_all(mine, &sa), *bl = read_all(ref, &sl);
    bool identical = ba && bl && sa == sl && !memcmp(ba, bl, sa);
    CHECK(identical, "%s: the files differ (%zu vs %zu bytes) although every tensor matches", label, sa, sl);
    free(ba);
    free(bl);
    n_files_compared++;
    n_files_identical += identical;
    printf("ok quantize %-22s types %d/%d, data %d/%d tensors identical, whole file %s\n", label, n_type, n, n_data, n,
           identical ? "identical" : "DIFFERENT");
    unlink(mine);
}

static void quant_vs_oracle(const char *src_name, const char *ftype)
{
    char label[64];
    snprintf(label, sizeof label, "%s -> %s", src_name, ftype);
    char ref[600], src[600];
    snprintf(ref, sizeof ref, "%s", tmp_path("llama.gguf"));
    snprintf(src, sizeof src, "%s", fixture(src_name));
    const char *args[] = { "quantize", src, ref, ftype, NULL };
    if (run_oracle(args)) {
        CHECK(0, "%s: oracle quantize failed", label);
        return;
    }
    compare_quant(label, src, ftype, ref);
    unlink(ref);
}


/* ---- 3. odd shapes ------------------------------------------------------------------------- */

static bool oracle_offers(const char *ftype)
{
    const char *args[] = { "help", NULL };
    run_oracle(args);
    size_t n;
    char *help = read_all(tmp_path("oracle.log"), &n);
    char needle[32];
    snprintf(needle, sizeof needle, " %s", ftype);
    bool found = false;
    for (char *p = help; p && (p = strstr(p, needle)); p++)
        if (p[strlen(needle)] == ' ' || p[strlen(needle)] == ')' || p[strlen(needle)] == '\n') { found = true; break; }
    free(help);
    return found;
}

static void odd_shapes(size_t n_types)
{
    mkmodel_params p;
    ar_error err = { 0 };
    if (mkmodel_preset(&p, "tiny", &err)) {
        CHECK(0, "mkmodel preset: %s", err.msg);
        return;
    }
    char vocab_src[600];
    snprintf(vocab_src, sizeof vocab_src, "%s", fixture("vocab-qwen35.gguf"));
    p.n_embd = 144;
    p.n_ff = 352;
    p.n_layer = 12;
    p.tied = false;
    p.nextn = 1;
    p.type = AR_F16;
    p.seed = 4;
    p.vocab = "small:4096";
    p.vocab_src = vocab_src;
    p.quiet = true;
    char src[600];
    snprintf(src, sizeof src, "%s", tmp_path("odd-f16.gguf"));
    int rc = mkmodel_write(&p, src, NULL, &err);
    CHECK(rc == AR_OK, "mkmodel odd shapes: %s", err.msg);
    if (rc) return;
    static const char *const types[] = { "q4_k_m", "q5_k_m", "q6_k", "iq4_xs", "q8_0", "q4_0",
                                         "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "iq4_nl" };
    char unchecked[256] = "";
    if (n_types > sizeof types / sizeof types[0]) n_types = sizeof types / sizeof types[0];
    for (size_t i = 0; i < n_types; i++) {
        if (i >= 6 && !oracle_offers(types[i])) {
            snprintf(unchecked + strlen(unchecked), sizeof unchecked - strlen(unchecked), " %s", types[i]);
            continue;
        }
        char label[64], ref[600];
        snprintf(label, sizeof label, "odd-f16 -> %s", types[i]);
        snprintf(ref, sizeof ref, "%s", tmp_path("llama-odd.gguf"));
        const char *args[] = { "quantize", src, ref, types[i], NULL };
        if (run_oracle(args)) {
            CHECK(0, "%s: oracle quantize failed", label);
            continue;
        }
        compare_quant(label, src, types[i], ref);
        unlink(ref);
    }
    if (*unchecked) printf("note: not compared with llama.cpp (the oracle does not offer them):%s\n", unchecked);
    unlink(src);
}

int main(void)
{
    ar_log_level = AR_LOG_WARN;   /* no progress lines from the quantizer */
    oracle = getenv("ARBOR_ORACLE");
    if (!oracle || !*oracle) oracle = "build/oracle/llama_oracle";
    snprintf(tmpdir, sizeof tmpdir, "%s", "/tmp/arbor-test-quant-oracle-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    bool have_oracle = access(oracle, X_OK) == 0;
    CHECK(have_oracle, "llama.cpp oracle '%s' not found: run scripts/oracle.sh or set ARBOR_ORACLE", oracle);
    static const char *const fixtures_needed[] = { "tiny-f32.gguf", "tiny-f16.gguf", "tiny-bf16.gguf", "tiny-q8_0.gguf",
                                                   "tiny-q4_k_m.gguf", "tiny-q5_k_m.gguf", "tiny-q6_k.gguf",
                                                   "tiny-q3_k_m.gguf", "tiny-q2_k.gguf" };
    bool have_all = true;
    for (size_t i = 0; i < sizeof fixtures_needed / sizeof fixtures_needed[0]; i++) {
        bool ok = exists(fixture(fixtures_needed[i]));
        CHECK(ok, "fixture %s missing: run scripts/fixtures.sh (ARBOR_FIXTURES=%s)", fixture(fixtures_needed[i]), test_fixtures());
        have_all &= ok;
    }
    if (have_oracle && have_all) {
        /* 1. dequantization, tensor by tensor */
        double t0 = ar_now();
        static const char *const dq[] = { "tiny-q8_0.gguf", "tiny-q4_k_m.gguf", "tiny-q5_k_m.gguf", "tiny-q6_k.gguf",
                                          "tiny-q3_k_m.gguf", "tiny-q2_k.gguf", "tiny-f16.gguf", "tiny-bf16.gguf" };
        for (size_t i = 0; i < sizeof dq / sizeof dq[0]; i++) dequant_file(dq[i]);
        int n_types = 0, n_tensors = 0;
        printf("ok dequant checked:");
        for (int t = 0; t < AR_DTYPE_COUNT; t++)
            if (checked_by_type[t]) { printf(" %s x%d", ar_dtype_name(t), checked_by_type[t]); n_types++; n_tensors += checked_by_type[t]; }
        printf(" (%d tensors, %d types, %.1f s)\n", n_tensors, n_types, ar_now() - t0);
        t0 = ar_now();
        CHECK(n_types >= 6, "only %d types were checked", n_types);

        /* 2. quantization: the fixtures llama.cpp made, then every other type the oracle offers */
        static const char *const fix_types[] = { "q8_0", "q4_k_m", "q5_k_m", "q6_k", "q3_k_m", "q2_k" };
        for (size_t i = 0; i < sizeof fix_types / sizeof fix_types[0]; i++) {
            char ref[64], label[64];
            snprintf(ref, sizeof ref, "tiny-%s.gguf", fix_types[i]);
            snprintf(label, sizeof label, "tiny-f32 -> %s", fix_types[i]);
            compare_quant(label, fixture("tiny-f32.gguf"), fix_types[i], fixture(ref));
        }
        static const char *const more[] = { "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_s", "q5_k_s", "iq4_xs", "q3_k_s", "q3_k_l",
                                            "f16", "bf16", "f32" };
        const size_t n_more = test_sanitized() ? 3 : sizeof more / sizeof more[0];
        for (size_t i = 0; i < n_more; i++) quant_vs_oracle("tiny-f32.gguf", more[i]);
        quant_vs_oracle("tiny-f16.gguf", "q4_k_m");
        quant_vs_oracle("tiny-bf16.gguf", "q6_k");
        odd_shapes(test_sanitized() ? 2 : 99);
        printf("ok quantize: %d/%d files byte-identical to llama.cpp's (%.1f s)\n", n_files_identical, n_files_compared, ar_now() - t0);
    }
    unlink(tmp_path("dequant.bin"));
    unlink(tmp_path("oracle.log"));
    rmdir(tmpdir);
    TEST_END();
}
