/* cli/eval.c — `arbor eval`: the logits of every prompt position and of N greedy steps, written in
 * the oracle's LLOGITS1 format (specs/oracle.md §2, tests/oracle/README.md) so the two files compare
 * row by row.
 *
 * Row convention (same as `llama_oracle eval`): n_rows = n_prompt + N; token[] = prompt ids then the
 * generated ids; pos[i] = i; row i = the logits computed when token[i] was fed at position i. The
 * prompt is evaluated as chains of up to -b nodes (each chunk committed before the next), then one
 * node per greedy step (argmax, ties to the lowest id). */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/timer.h"
#include "model/qwen35.h"
#include "tok/vocab.h"

static const char usage_text[] =
    "usage: arbor eval -m MODEL (-p TEXT | --ids \"1 2 3\" | --ids-file F) [-n N] --logits-out F.bin\n"
    "                  [-t THREADS] [-c CTX] [-b BATCH] [--special] [--kv-type f16|f32]\n"
    "\n"
    "Writes the logits of every prompt position and of N greedy steps (LLOGITS1, as llama_oracle eval).\n"
    "  -p TEXT            prompt text (tokenized with the model's vocabulary)\n"
    "  --special          parse special tokens (<|im_start|> ...) in TEXT\n"
    "  --ids \"1 2 3\"      prompt token ids (no tokenizer needed); --ids-file F reads them from a file\n"
    "  -n N               greedy steps after the prompt (default 0)\n"
    "  --logits-out F     output file (-o is accepted too)\n"
    "  -c CTX             context size (default prompt + N)\n"
    "  -b BATCH           nodes per forward while reading the prompt (default 128)\n"
    "  -t THREADS         default: one per core\n"
    "  --kv-type T        attention KV cache type: f16 (default, as llama.cpp) or f32 (llama_oracle eval's)\n";

static int parse_long(const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi)
        return cli_fail("%s: expected an integer in [%ld, %ld], got '%s'", flag, lo, hi, s ? s : "(nothing)");
    *out = v;
    return 0;
}

/* Space/comma/newline separated ids. */
static int parse_ids(const char *s, const char *what, int32_t **out, int *n_out)
{
    size_t cap = 16, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return cli_fail("out of memory");
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\n' || *s == '\t' || *s == '\r') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX) {
            free(ids);
            return cli_fail("%s: bad token id near '%.20s'", what, s);
        }
        if (n == cap) {
            int32_t *g = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!g) { free(ids); return cli_fail("out of memory"); }
            ids = g;
        }
        ids[n++] = (int32_t)v;
        s = end;
    }
    *out = ids;
    *n_out = (int)n;
    return 0;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *g = realloc(buf, cap *= 2);
            if (!g) { free(buf); buf = NULL; }
            else buf = g;
        }
    }
    fclose(f);
    if (buf) buf[n] = 0;
    return buf;
}

static int32_t argmax(const float *v, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int cmd_eval(int argc, char **argv)
{
    const char *model_path = NULL, *text = NULL, *ids_arg = NULL, *ids_file = NULL, *out_path = NULL;
    long n_gen = 0, threads = 0, n_ctx = 0, n_batch = 128;
    bool special = false, kv_f32 = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(usage_text, stdout); return 0; }
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) { model_path = v; i++; }
        else if (!strcmp(a, "-p") && v) { text = v; i++; }
        else if (!strcmp(a, "--ids") && v) { ids_arg = v; i++; }
        else if (!strcmp(a, "--ids-file") && v) { ids_file = v; i++; }
        else if ((!strcmp(a, "--logits-out") || !strcmp(a, "-o")) && v) { out_path = v; i++; }
        else if (!strcmp(a, "--special")) special = true;
        else if (!strcmp(a, "--kv-type") && v) { if (cli_kv_type(a, v, &kv_f32)) return 1; i++; }
        else if (!strcmp(a, "-n") && v) { if (parse_long(a, v, 0, 1 << 20, &n_gen)) return 1; i++; }
        else if (!strcmp(a, "-t") && v) { if (parse_long(a, v, 1, 1024, &threads)) return 1; i++; }
        else if (!strcmp(a, "-c") && v) { if (parse_long(a, v, 1, 1 << 30, &n_ctx)) return 1; i++; }
        else if (!strcmp(a, "-b") && v) { if (parse_long(a, v, 1, 1 << 16, &n_batch)) return 1; i++; }
        else { fputs(usage_text, stderr); return cli_fail("eval: unexpected argument '%s'", a); }
    }
    if (!model_path) { fputs(usage_text, stderr); return cli_fail("eval: -m MODEL is required"); }
    if (!!text + !!ids_arg + !!ids_file != 1) { fputs(usage_text, stderr); return cli_fail("eval: give exactly one of -p, --ids, --ids-file"); }
    if (!out_path) { fputs(usage_text, stderr); return cli_fail("eval: --logits-out FILE is required"); }

    int32_t *prompt = NULL;
    int n_prompt = 0;
    if (ids_arg && parse_ids(ids_arg, "--ids", &prompt, &n_prompt)) return 1;
    if (ids_file) {
        char *s = read_file(ids_file);
        if (!s) return cli_fail("cannot read '%s': %s", ids_file, strerror(errno));
        int rc = parse_ids(s, ids_file, &prompt, &n_prompt);
        free(s);
        if (rc) return 1;
    }
    if (!text && n_prompt == 0) { free(prompt); return cli_fail("eval: empty prompt"); }
    if (text && !*text) return cli_fail("eval: empty prompt");
    if (!text && n_ctx && n_prompt + n_gen > n_ctx) {   /* known before loading anything */
        free(prompt);
        return cli_fail("eval: prompt (%d tokens) + %ld generated tokens do not fit in the context of %ld", n_prompt, n_gen, n_ctx);
    }

    ar_error err;
    qwen35_model *m = NULL;
    qwen35_ctx *c = NULL;
    qwen35_seq *s = NULL;
    float *logits = NULL;
    ar_node *nodes = NULL;
    FILE *out = NULL;
    int32_t *tokens = NULL;
    int ret = 1;

    if (qwen35_load(&m, model_path, &err) != AR_OK) { cli_fail("%s", err.msg); goto done; }
    qwen35_set_kv_f32(m, kv_f32);
    const qwen35_hparams *hp = qwen35_hparams_of(m);
    if (text) {
        ar_vocab *v = NULL;
        if (ar_vocab_load(&v, qwen35_gguf(m), &err) != AR_OK) { cli_fail("%s", err.msg); goto done; }
        size_t n = 0;
        int rc = ar_tokenize(v, text, strlen(text), special, &prompt, &n, &err);
        ar_vocab_free(v);
        if (rc != AR_OK) { cli_fail("%s", err.msg); goto done; }
        n_prompt = (int)n;
        if (n_prompt == 0) { cli_fail("eval: the prompt has no tokens"); goto done; }
    }
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= hp->n_vocab) {
            cli_fail("eval: prompt token %d at position %d is out of the vocabulary [0, %d)", prompt[i], i, hp->n_vocab);
            goto done;
        }
    const long n_rows = (long)n_prompt + n_gen;
    if (!n_ctx) n_ctx = n_rows;
    if (n_rows > n_ctx) {
        cli_fail("eval: prompt (%d tokens) + %ld generated tokens do not fit in the context of %ld", n_prompt, n_gen, n_ctx);
        goto done;
    }
    if (hp->n_ctx_train > 0 && n_ctx > hp->n_ctx_train)
        ar_log(AR_LOG_WARN, "context %ld exceeds the model's training context %d", n_ctx, hp->n_ctx_train);

    const int max_nodes = (int)(n_batch < n_prompt ? n_batch : n_prompt);
    if (qwen35_ctx_create(&c, m, max_nodes, (int)threads, &err) != AR_OK ||
        qwen35_seq_create(&s, m, (int)n_ctx, &err) != AR_OK) { cli_fail("%s", err.msg); goto done; }
    logits = malloc((size_t)max_nodes * (size_t)hp->n_vocab * sizeof(float));
    nodes = malloc((size_t)max_nodes * sizeof *nodes);
    tokens = malloc((size_t)n_rows * sizeof *tokens);
    int *path = malloc((size_t)max_nodes * sizeof *path);
    if (!logits || !nodes || !tokens || !path) { free(path); cli_fail("out of memory"); goto done; }
    for (int i = 0; i < max_nodes; i++) path[i] = i;
    memcpy(tokens, prompt, (size_t)n_prompt * sizeof *tokens);

    out = fopen(out_path, "wb");
    if (!out) { free(path); cli_fail("cannot create '%s': %s", out_path, strerror(errno)); goto done; }
    int32_t hdr[2] = { (int32_t)n_rows, hp->n_vocab };
    fwrite("LLOGITS1", 1, 8, out);
    fwrite(hdr, 4, 2, out);
    long tok_off = ftell(out);
    for (int32_t i = 0; i < (int32_t)n_rows; i++) fwrite(&i, 4, 1, out);   /* tokens, rewritten at the end */
    for (int32_t i = 0; i < (int32_t)n_rows; i++) fwrite(&i, 4, 1, out);   /* pos */

    double t0 = ar_now();
    int32_t next = 0;
    for (int p0 = 0; p0 < n_prompt; p0 += max_nodes) {
        int n = n_prompt - p0 < max_nodes ? n_prompt - p0 : max_nodes;
        for (int i = 0; i < n; i++)
            nodes[i] = (ar_node){ .seq = 0, .token = prompt[p0 + i], .pos = p0 + i, .parent = i - 1, .want_logits = true,
                                 .commit = true };
        ar_batch b = { .n_nodes = n, .nodes = nodes, .logits = logits };
        if (qwen35_forward(c, &s, &b, &err) != AR_OK || qwen35_commit(c, s, path, n, &err) != AR_OK) {
            free(path); cli_fail("%s", err.msg); goto done;
        }
        fwrite(logits, sizeof(float), (size_t)n * (size_t)hp->n_vocab, out);
        if (p0 + n == n_prompt) next = argmax(logits + (size_t)(n - 1) * hp->n_vocab, hp->n_vocab);
    }
    double t1 = ar_now();
    for (long g = 0; g < n_gen; g++) {
        const int r = n_prompt + (int)g;
        tokens[r] = next;
        nodes[0] = (ar_node){ .seq = 0, .token = next, .pos = r, .parent = -1, .want_logits = true, .commit = true };
        ar_batch b = { .n_nodes = 1, .nodes = nodes, .logits = logits };
        if (qwen35_forward(c, &s, &b, &err) != AR_OK || qwen35_commit(c, s, path, 1, &err) != AR_OK) {
            free(path); cli_fail("%s", err.msg); goto done;
        }
        fwrite(logits, sizeof(float), (size_t)hp->n_vocab, out);
        next = argmax(logits, hp->n_vocab);
    }
    double t2 = ar_now();
    free(path);
    if (fseek(out, tok_off, SEEK_SET) != 0 || fwrite(tokens, 4, (size_t)n_rows, out) != (size_t)n_rows) {
        cli_fail("cannot write '%s': %s", out_path, strerror(errno));
        goto done;
    }
    int close_rc = fclose(out);
    out = NULL;
    if (close_rc != 0) { cli_fail("cannot write '%s': %s", out_path, strerror(errno)); goto done; }
    for (long g = 0; g < n_gen; g++) printf(g ? " %d" : "%d", tokens[n_prompt + g]);
    if (n_gen) printf("\n");
    ar_log(AR_LOG_INFO, "prompt: %d tokens in %.3f s (%.1f t/s); generation: %ld tokens in %.3f s (%.1f t/s)",
           n_prompt, t1 - t0, n_prompt / (t1 - t0 > 0 ? t1 - t0 : 1e-9), n_gen, t2 - t1,
           n_gen ? n_gen / (t2 - t1 > 0 ? t2 - t1 : 1e-9) : 0.0);
    ret = 0;
done:
    if (out) fclose(out);
    free(tokens);
    free(nodes);
    free(logits);
    free(prompt);
    qwen35_seq_free(s);
    qwen35_ctx_free(c);
    qwen35_free(m);
    return ret;
}
