/* cli/serve.c — `arbor serve`: the OpenAI-compatible HTTP server.
 *
 * Flow: parse flags (errors before any work), check the model file exists, start HTTP (so /health
 * answers 503 "loading" while the weights load, as clients expect), load the model, attach it,
 * then wait for SIGINT/SIGTERM and shut down cleanly (queued and running requests end with
 * 503). Signals are blocked in every thread and taken with sigwait by the main thread. */
#include "cli/cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "arbor.h"
#include "base/log.h"
#include "server/serve.h"
#include "tok/chat.h"

#define DEFAULT_MODEL "models/arbor-tiny-target.gguf"

static void usage(FILE *out)
{
    fprintf(out,
        "usage: arbor serve [-m MODEL] [options]\n"
        "\n"
        "  -m, --model PATH     qwen35 GGUF model (default " DEFAULT_MODEL ", the bundled model)\n"
        "      --host H         listen address (default 127.0.0.1: this machine only)\n"
        "      --port P         port (default 8080; 0: any free port, printed at start)\n"
        "      --api-key K      require this key (Authorization: Bearer K, or x-api-key: K);\n"
        "                       the ARBOR_API_KEY environment variable works too\n"
        "  -c, --ctx N          context size in tokens (default 4096, at most the training context)\n"
        "  -t, --threads N      threads (default: one per core)\n"
        "      --kv-type f16|f32  attention KV cache type (default f16, as llama.cpp; -ctk is accepted)\n"
        "  -b, --batch-size N   most prompt tokens per forward (default 512)\n"
        "      --parallel N     requests generated at once, batched into one forward per step (default 4);\n"
        "                       more wait in a queue (503 server_busy when it holds 64)\n"
        "      --cache-mib N    prefix cache size in MiB (default 1024; 0: off): a conversation's next turn\n"
        "                       resumes from its last message boundary instead of prefilling it all again\n"
        "      --prefill-budget N  most prompt tokens per step over all requests (default: the batch size);\n"
        "                       smaller keeps the others' decode smooth while a long prompt is prefilled\n"
        "      --draft D.gguf   DFlash drafter: lossless speculative decoding for every request (chain, or\n"
        "                       DDTree with --budget), batched with --parallel like plain decoding;\n"
        "                       /metrics reports the acceptance length (arbor_spec_acceptance_length)\n"
        "      --block N        tokens verified per step with the drafter, 2..64 (default: its trained block;\n"
        "                       1: speculation off, the drafter unused)\n"
        "      --budget N|auto  DDTree: verify a tree of N draft nodes per step (auto: chosen from measured\n"
        "                       forward times and acceptance); default: a chain\n"
        "      --cors           allow browser clients from any origin (CORS headers, preflight)\n"
        "      --alias NAME     model id reported by /v1/models (default: the file name)\n"
        "      --chat-family F  prompt template: auto (default: from the model's tokenizer.chat_template;\n"
        "                       ChatML, with a warning, for templates not of the Qwen3.5 family),\n"
        "                       qwen3.5, qwen3.6 or chatml\n"
        "      --max-body N     largest request body in bytes (default 33554432)\n"
        "\n"
        "endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models (OpenAI)\n"
        "           POST /v1/messages, POST /v1/messages/count_tokens (Anthropic)\n"
        "           POST /v1/responses, POST /v1/responses/input_tokens (OpenAI Responses)\n"
        "           GET /health, GET /metrics, POST /tokenize, /detokenize, /apply-template\n"
        "           (docs/API.md describes every field)\n");
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

int cmd_serve(int argc, char **argv)
{
    const char *model_path = NULL, *draft_path = NULL;
    long n_threads = 0, n_batch = 512, port, n_ctx, max_body, block, budget, parallel, cache_mib, prefill;
    bool kv_f32 = false;
    srv_options so = srv_defaults();
    so.api_key = getenv("ARBOR_API_KEY");

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
#define IS(s) (!strcmp(a, s))
#define NEED() do { if (!v) return cli_fail("%s needs a value (see arbor serve --help)", a); i++; } while (0)
        if (IS("-h") || IS("--help")) { usage(stdout); return 0; }
        else if (IS("-m") || IS("--model")) { NEED(); model_path = v; }
        else if (IS("--host")) { NEED(); so.host = v; }
        else if (IS("--port")) { NEED(); rc = parse_long(a, v, 0, 65535, &port); so.port = (int)port; }
        else if (IS("--api-key")) { NEED(); so.api_key = v; }
        else if (IS("-c") || IS("--ctx") || IS("--ctx-size")) { NEED(); rc = parse_long(a, v, 16, 1L << 24, &n_ctx); so.n_ctx = (int)n_ctx; }
        else if (IS("-t") || IS("--threads")) { NEED(); rc = parse_long(a, v, 1, 1024, &n_threads); }
        else if (IS("--kv-type") || IS("-ctk") || IS("--cache-type-k")) { NEED(); rc = cli_kv_type(a, v, &kv_f32); }
        else if (IS("-b") || IS("--batch-size")) { NEED(); rc = parse_long(a, v, 1, 65536, &n_batch); }
        else if (IS("--parallel") || IS("-np")) { NEED(); rc = parse_long(a, v, 1, 256, &parallel); so.n_parallel = (int)parallel; }
        else if (IS("--cache-mib")) { NEED(); rc = parse_long(a, v, 0, 1L << 20, &cache_mib); so.cache_bytes = (size_t)cache_mib << 20; }
        else if (IS("--prefill-budget")) { NEED(); rc = parse_long(a, v, 1, 65536, &prefill); so.prefill_budget = (int)prefill; }
        else if (IS("--draft") || IS("-md")) { NEED(); draft_path = v; }
        else if (IS("--block")) { NEED(); rc = parse_long(a, v, 1, 64, &block); so.draft_block = (int)block; }
        else if (IS("--budget")) {
            NEED();
            if (!strcmp(v, "auto")) so.draft_budget = -1;
            else { rc = parse_long(a, v, 1, 256, &budget); so.draft_budget = (int)budget; }
        }
        else if (IS("--cors")) so.cors = true;
        else if (IS("--alias")) { NEED(); so.model_name = v; }
        else if (IS("--chat-family")) {
            NEED();
            if (!strcmp(v, "auto")) so.chat_family = -1;
            else if (!strcmp(v, "qwen3.5")) so.chat_family = AR_CHAT_QWEN35;
            else if (!strcmp(v, "qwen3.6")) so.chat_family = AR_CHAT_QWEN36;
            else if (!strcmp(v, "chatml")) so.chat_family = AR_CHAT_CHATML;
            else return cli_fail("serve: --chat-family %s: want auto, qwen3.5, qwen3.6 or chatml", v);
        }
        else if (IS("--max-body")) { NEED(); rc = parse_long(a, v, 1024, 1L << 34, &max_body); so.max_body = (size_t)max_body; }
        else return cli_fail("serve: unknown argument '%s' (see arbor serve --help)", a);
        if (rc) return rc;
#undef IS
#undef NEED
    }
    if (so.draft_budget && !draft_path) return cli_fail("serve: --budget needs --draft D.gguf");
    if (so.draft_block && !draft_path) return cli_fail("serve: --block needs --draft D.gguf");
    if (!model_path) {
        struct stat st;
        if (stat(DEFAULT_MODEL, &st))
            return cli_fail("serve: no model: pass -m MODEL, run from the repository root to use the bundled model "
                            "(" DEFAULT_MODEL ")");
        model_path = DEFAULT_MODEL;
    }
    struct stat st;
    if (stat(model_path, &st)) return cli_fail("serve: cannot open model '%s': %s", model_path, strerror(errno));

    /* every thread created from here on inherits the blocked signals; main takes them with sigwait */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    ar_error err = { 0 };
    srv *server = NULL;
    if (srv_create(&server, &so, &err)) return cli_fail("%s", err.msg);
    ar_log(AR_LOG_INFO, "listening on http://%s:%d (loading the model; /health answers 503 until it is ready)",
           so.host, srv_port(server));
    fprintf(stderr, "arbor serve: port %d\n", srv_port(server));

    ar_model_params mp = ar_model_defaults();
    mp.kv_f32 = kv_f32;
    mp.n_threads = (int)n_threads;
    mp.max_batch = (int)n_batch;
    ar_model *model = NULL;
    int ret = 1;
    if (ar_model_load(&model, model_path, &mp, &err)) { cli_fail("%s", err.msg); goto done; }
    if (draft_path && ar_model_load_draft(model, draft_path, &err)) { cli_fail("%s", err.msg); goto done; }
    if (srv_attach_model(server, model, model_path, &err)) { cli_fail("%s", err.msg); goto done; }
    ar_log(AR_LOG_INFO, "ready: model '%s', context %d tokens, http://%s:%d/v1", srv_model_name(server),
           srv_n_ctx(server), so.host, srv_port(server));

    int sig = 0;
    sigwait(&sigs, &sig);
    ar_log(AR_LOG_INFO, "%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    ret = 0;
done:
    srv_free(server);
    ar_model_free(model);
    return ret;
}
