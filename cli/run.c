/* cli/run.c — `arbor run`: generate text from a prompt, streaming it to stdout.
 *
 * Flow: parse flags (all errors before any work), load the model (progress on stderr), build the
 * prompt (raw text, or the chat template with --chat), tokenize, check it fits the context, then
 * ar_generate with a callback that writes and flushes each piece. Timings go to stderr at the end.
 * With --draft the model gets a DFlash drafter and generation is speculative (lossless: the same tokens
 * at --temp 0, the same distribution otherwise): chain verification of --block tokens per step, or with
 * --budget N|auto a DDTree of N draft nodes per step (auto: chosen per step from measured costs). The
 * last stderr line names the mode and gives the acceptance length (tokens committed per step), the
 * per-step draft / verify / commit times and the generation rate. */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arbor.h"
#include "base/log.h"

static void usage(FILE *out)
{
    fprintf(out,
        "usage: arbor run -m MODEL (-p PROMPT | -f FILE) [options]\n"
        "\n"
        "  -m, --model PATH          qwen35 GGUF model\n"
        "  -p, --prompt TEXT         prompt text\n"
        "  -f, --file PATH           read the prompt from a file\n"
        "  -n, --n-predict N         tokens to generate (-1: until the model stops; default -1)\n"
        "  -c, --ctx-size N          context size in tokens (default 4096)\n"
        "  -t, --threads N           threads (default: one per core)\n"
        "      --kv-type f16|f32     attention KV cache type (default f16, as llama.cpp; -ctk is accepted)\n"
        "  -b, --batch-size N        most tokens per forward while reading the prompt (default 512)\n"
        "      --chat                wrap the prompt in the model's chat template (thinking on)\n"
        "      --no-think            with --chat: disable thinking (empty think block)\n"
        "      --system TEXT         with --chat: system message\n"
        "      --special             print control tokens (<|im_end|> ...) too\n"
        "\n"
        "sampling (llama.cpp's defaults and order: penalties, top-k, top-p, min-p, temperature):\n"
        "      --temp T              temperature (default 0.8; 0 = greedy)\n"
        "      --top-k K             (default 40; 0 = off)\n"
        "      --top-p P             (default 0.95; 1 = off)\n"
        "      --min-p P             (default 0.05; 0 = off)\n"
        "      --repeat-penalty R    (default 1 = off)\n"
        "      --repeat-last-n N     tokens the penalties look at (default 64; -1 = context)\n"
        "      --presence-penalty P  (default 0)\n"
        "      --frequency-penalty F (default 0)\n"
        "      --seed S              random seed (default: random, printed)\n"
        "\n"
        "speculative decoding (lossless: --temp 0 gives plain decoding's tokens, sampling its distribution):\n"
        "      --draft PATH          DFlash drafter GGUF made for the model (default: verify chains of drafts)\n"
        "      --swa-lucebox         drafters with sliding-window layers: Lucebox's window rule instead of\n"
        "                            llama.cpp's (the default)\n"
        "      --block N             tokens per step: the anchor + up to N-1 drafts, 2..64 (default: the\n"
        "                            drafter's trained block); with --budget, the tree's depth + 1\n"
        "      --budget N|auto       verify a DDTree of N draft nodes per step (1..batch size - 1) instead of a\n"
        "                            chain; auto: the budget that maximises tokens/s, re-chosen every step\n"
        "                            from measured forward times and acceptance (at most min(256, batch - 1))\n"
        "      --tree-k K            with --budget: drafter candidates per depth, 1..64 (default min(N, 64))\n"
        "      --chain-seed          with --budget: select the drafter's top-1 chain first, then best-first\n");
}

static int parse_long(const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return cli_fail("%s: '%s' is not an integer in [%ld, %ld]", flag, s, lo, hi);
    *out = v;
    return 0;
}

static int parse_float(const char *flag, const char *s, float lo, float hi, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return cli_fail("%s: '%s' is not a number in [%g, %g]", flag, s, (double)lo, (double)hi);
    *out = v;
    return 0;
}

static char *read_text_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) { cli_fail("cannot open prompt file '%s': %s", path, strerror(errno)); return NULL; }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (n + 1 >= cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) { free(buf); buf = NULL; break; }
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    bool bad = !buf || ferror(f);
    fclose(f);
    if (bad) { free(buf); cli_fail("cannot read prompt file '%s'", path); return NULL; }
    buf[n] = 0;
    return buf;
}

typedef struct stream {
    char last;   /* last byte written */
    bool any;
} stream;

static bool on_token(void *user, int32_t token, const char *piece, size_t len)
{
    (void)token;
    stream *st = user;
    if (len) {
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
        st->last = piece[len - 1];
        st->any = true;
    }
    return false;
}

static double rate(int n, double s) { return s > 0 ? n / s : 0.0; }

/* The last line: the decoding mode, tokens committed per step (acceptance length), the per-step costs and
 * the generation rate. Plain decoding commits one token per forward. */
static void print_decode_line(const ar_session *sess, const ar_gen_stats *gs)
{
    const int block = ar_session_draft_block(sess), budget = ar_session_draft_budget(sess);
    char mode[128];
    if (block == 0) snprintf(mode, sizeof mode, "plain");
    else if (budget == 0) snprintf(mode, sizeof mode, "chain block %d", block);
    else if (budget > 0) snprintf(mode, sizeof mode, "ddtree budget %d (block %d)", budget, block);
    else snprintf(mode, sizeof mode, "ddtree budget auto (mean %.1f nodes, block %d)",
                  gs->n_steps ? (double)gs->n_drafted / gs->n_steps : 0.0, block);
    if (gs->n_steps == 0) {
        fprintf(stderr, "decode: %s, %d tokens, acceptance length 1.00 tokens/step (one forward per token); %.2f t/s\n",
                mode, gs->n_gen, rate(gs->n_gen, gs->gen_s));
        return;
    }
    const double ms = 1000.0 / gs->n_steps;
    fprintf(stderr, "decode: %s, %d steps, acceptance length %.2f tokens/step (%d of %d drafts accepted, %.1f%%); "
            "per step: draft %.1f ms, verify %.1f ms, commit %.1f ms; %.2f t/s\n",
            mode, gs->n_steps, (double)gs->n_step_tokens / gs->n_steps, gs->n_accepted, gs->n_drafted,
            gs->n_drafted ? 100.0 * gs->n_accepted / gs->n_drafted : 0.0, gs->draft_s * ms, gs->verify_s * ms,
            gs->commit_s * ms, rate(gs->n_gen, gs->gen_s));
}

int cmd_run(int argc, char **argv)
{
    const char *model_path = NULL, *prompt_arg = NULL, *prompt_file = NULL, *system = NULL, *draft_path = NULL;
    long n_predict = -1, n_ctx = 4096, n_threads = 0, n_batch = 512, block = 0, budget = 0, tree_k = 0;
    const char *budget_arg = NULL;
    bool chain_seed = false;
    bool chat = false, think = true, special = false, swa_lucebox = false, kv_f32 = false;
    ar_session_params sp = ar_session_defaults();
    ar_sampler_params *smp = &sp.sampling;
    bool seed_given = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long l;
        int rc = 0;
#define IS(s) (!strcmp(a, s))
#define NEED() do { if (!v) return cli_fail("%s needs a value (see arbor run --help)", a); i++; } while (0)
        if (IS("-h") || IS("--help")) { usage(stdout); return 0; }
        else if (IS("-m") || IS("--model")) { NEED(); model_path = v; }
        else if (IS("-p") || IS("--prompt")) { NEED(); prompt_arg = v; }
        else if (IS("-f") || IS("--file")) { NEED(); prompt_file = v; }
        else if (IS("-n") || IS("--n-predict")) { NEED(); rc = parse_long(a, v, -1, 1L << 30, &n_predict); }
        else if (IS("-c") || IS("--ctx-size")) { NEED(); rc = parse_long(a, v, 1, 1L << 24, &n_ctx); }
        else if (IS("-t") || IS("--threads")) { NEED(); rc = parse_long(a, v, 1, 1024, &n_threads); }
        else if (IS("-b") || IS("--batch-size")) { NEED(); rc = parse_long(a, v, 1, 65536, &n_batch); }
        else if (IS("--chat")) chat = true;
        else if (IS("--no-think")) think = false;
        else if (IS("--system")) { NEED(); system = v; }
        else if (IS("--special")) special = true;
        else if (IS("--draft")) { NEED(); draft_path = v; }
        else if (IS("--block")) { NEED(); rc = parse_long(a, v, 2, 64, &block); }
        else if (IS("--swa-lucebox")) swa_lucebox = true;
        else if (IS("--kv-type") || IS("-ctk") || IS("--cache-type-k")) { NEED(); rc = cli_kv_type(a, v, &kv_f32); }
        else if (IS("--budget")) { NEED(); budget_arg = v; }
        else if (IS("--tree-k")) { NEED(); rc = parse_long(a, v, 1, 64, &tree_k); }
        else if (IS("--chain-seed")) chain_seed = true;
        else if (IS("--temp")) { NEED(); rc = parse_float(a, v, 0.0f, 1e6f, &smp->temp); }
        else if (IS("--top-k")) { NEED(); rc = parse_long(a, v, 0, 1L << 30, &l); smp->top_k = (int)l; }
        else if (IS("--top-p")) { NEED(); rc = parse_float(a, v, 0.0f, 1.0f, &smp->top_p); }
        else if (IS("--min-p")) { NEED(); rc = parse_float(a, v, 0.0f, 1.0f, &smp->min_p); }
        else if (IS("--repeat-penalty")) { NEED(); rc = parse_float(a, v, 1e-6f, 1e6f, &smp->repeat_penalty); }
        else if (IS("--repeat-last-n")) { NEED(); rc = parse_long(a, v, -1, 1L << 24, &l); smp->repeat_last_n = (int)l; }
        else if (IS("--presence-penalty")) { NEED(); rc = parse_float(a, v, -1e6f, 1e6f, &smp->presence_penalty); }
        else if (IS("--frequency-penalty")) { NEED(); rc = parse_float(a, v, -1e6f, 1e6f, &smp->frequency_penalty); }
        else if (IS("--seed")) {
            NEED();
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-' || s == AR_SEED_RANDOM)
                return cli_fail("--seed: '%s' is not an integer in [0, 2^64 - 2]", v);
            smp->seed = s;
            seed_given = true;
        }
        else return cli_fail("run: unknown argument '%s' (see arbor run --help)", a);
        if (rc) return rc;
#undef IS
#undef NEED
    }
    if (!model_path) return cli_fail("run: no model (-m MODEL)");
    if (prompt_arg && prompt_file) return cli_fail("run: give the prompt with -p or -f, not both");
    if ((system || !think) && !chat) return cli_fail("run: --system and --no-think need --chat");
    if (block && !draft_path) return cli_fail("run: --block needs --draft");
    if (budget_arg) {   /* after the loop: its range depends on -b */
        if (!draft_path) return cli_fail("run: --budget needs --draft");
        if (!strcmp(budget_arg, "auto")) {
            if (n_batch < 2) return cli_fail("run: --budget auto needs a batch size of at least 2 (-b)");
            budget = -1;
        } else if (n_batch < 2) {
            return cli_fail("run: --budget needs a batch size of at least 2 (-b): a tree of N nodes is N + 1 per forward");
        } else {
            char flag[64];
            snprintf(flag, sizeof flag, "--budget (or 'auto'; the batch size is %ld)", n_batch);
            if (parse_long(flag, budget_arg, 1, n_batch - 1, &budget)) return 1;
        }
    }
    if ((tree_k || chain_seed) && !budget_arg) return cli_fail("run: --tree-k and --chain-seed need --budget");

    char *file_text = NULL;
    if (prompt_file && !(file_text = read_text_file(prompt_file))) return 1;
    const char *prompt = prompt_arg ? prompt_arg : file_text;
    if (!prompt || !*prompt) { free(file_text); return cli_fail("run: empty prompt (give one with -p TEXT or -f FILE)"); }

    /* the chat template first: its errors are the user's, before any loading */
    char *text = NULL;
    ar_error err = {0};
    if (chat) {
        ar_chat_msg msgs[2];
        int n = 0;
        if (system) msgs[n++] = (ar_chat_msg){ .role = "system", .content = system };
        msgs[n++] = (ar_chat_msg){ .role = "user", .content = prompt };
        if (ar_chat_render(msgs, n, true, think, &text, &err)) { free(file_text); return cli_fail("%s", err.msg); }
    } else {
        text = strdup(prompt);
    }
    free(file_text);
    if (!text) return cli_fail("out of memory");

    int ret = 1;
    ar_model *model = NULL;
    ar_session *sess = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;

    ar_model_params mp = ar_model_defaults();
    mp.n_threads = (int)n_threads;
    mp.max_batch = (int)n_batch;
    mp.draft_swa_lucebox = swa_lucebox;
    mp.kv_f32 = kv_f32;
    ar_log(AR_LOG_INFO, "loading %s", model_path);
    if (ar_model_load(&model, model_path, &mp, &err)) { cli_fail("%s", err.msg); goto done; }
    if (draft_path) {
        ar_log(AR_LOG_INFO, "loading drafter %s", draft_path);
        if (ar_model_load_draft(model, draft_path, &err)) { cli_fail("%s", err.msg); goto done; }
    }
    if (ar_model_tokenize(model, text, strlen(text), true, &ids, &n_ids, &err)) { cli_fail("%s", err.msg); goto done; }
    if (n_ids == 0) { cli_fail("run: the prompt has no tokens"); goto done; }
    if ((long)n_ids > n_ctx) {
        cli_fail("run: the prompt is %zu tokens, longer than the context (%ld); raise -c", n_ids, n_ctx);
        goto done;
    }
    sp.n_ctx = (int)n_ctx;
    sp.special = special;
    sp.draft_block = (int)block;
    sp.draft_budget = (int)budget;
    sp.draft_top_k = (int)tree_k;
    sp.draft_chain_seed = chain_seed;
    if (ar_session_create(&sess, model, &sp, &err)) { cli_fail("%s", err.msg); goto done; }
    if (smp->temp > 0.0f && !seed_given) ar_log(AR_LOG_INFO, "seed %llu", (unsigned long long)ar_session_seed(sess));

    stream st = { 0 };
    ar_gen_stats gs;
    if (ar_generate(sess, ids, (int)n_ids, (int)n_predict, on_token, &st, &gs, &err)) {
        if (st.any) fputc('\n', stdout);
        cli_fail("%s", err.msg);
        goto done;
    }
    if (st.any && st.last != '\n') fputc('\n', stdout);
    fflush(stdout);
    if (gs.stop == AR_STOP_CONTEXT) ar_log(AR_LOG_WARN, "stopped: the context (%d tokens) is full", ar_session_n_ctx(sess));
    fprintf(stderr, "prompt: %d tokens in %.3f s (%.2f t/s), generation: %d tokens in %.3f s (%.2f t/s)\n",
            gs.n_prompt, gs.prompt_s, rate(gs.n_prompt, gs.prompt_s), gs.n_gen, gs.gen_s, rate(gs.n_gen, gs.gen_s));
    print_decode_line(sess, &gs);
    ret = 0;
done:
    free(ids);
    free(text);
    ar_session_free(sess);
    ar_model_free(model);
    return ret;
}
