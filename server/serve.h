/* server/serve.h — the server object: the HTTP daemon, the model, the scheduler that generates for
 * many requests at once (engine/sched.h: --parallel sequences batched into one forward per step, a
 * prefix cache so a conversation's next turn resumes where the last one ended), /health, /metrics,
 * and the job API the endpoint modules (openai.c, anthropic.c, responses.c) build on.
 *
 * A job is one generation request. The endpoint's HTTP handler parses and prepares it (all client
 * errors are answered there, before queuing), then srv_submit hands it to the scheduler:
 *   - streamed: the connection answers at once with an SSE stream fed by srv_job_write (bytes the
 *     endpoint already wrote, e.g. a first role chunk, go out while the job waits in the queue);
 *     when the stream is idle for ping_s seconds the connection sends the job's keep-alive text
 *     (": keep-alive\n\n" by default; Anthropic's "event: ping") — during queue waits and long
 *     prefills alike;
 *   - non-streamed: the handler thread waits for srv_job_reply and answers with it.
 * The job's sink gets the generation's events on the scheduler's thread, then done(j, user, rc, res,
 * err) writes the final frame or the reply. A client that leaves (its stream ends early, or its
 * socket hangs up: polled after every token) cancels its request; the others go on.
 *
 * Speculative serving: with a drafter attached to the model, every job brings its own speculative hook
 * (engine/spec_hook.h: chain, DDTree of draft_budget nodes, or auto) to the same scheduler, at any
 * n_parallel; draft_block 1 turns speculation off. /metrics counts the speculative steps and tokens.
 *
 * Chat template: the model's GGUF tokenizer.chat_template decides the family (tok/chat.h
 * ar_chat_family); a template of another family than Qwen3.5 / 3.6 is rendered as ChatML (warning at
 * load). Endpoints set srv_request.chat_family = srv_chat_family(s) before rendering. */
#ifndef AR_SERVER_SERVE_H
#define AR_SERVER_SERVE_H

#include <stdbool.h>
#include <stddef.h>

#include "arbor.h"
#include "server/gen.h"
#include "server/http.h"
#include "server/json.h"

typedef struct srv srv;

typedef struct srv_options {
    const char *host;           /* default 127.0.0.1 (loopback only) */
    int         port;           /* default 8080; 0: ephemeral (srv_port tells) */
    const char *api_key;        /* NULL: none */
    bool        cors;           /* off by default */
    size_t      max_body;       /* default 32 MiB */
    int         n_ctx;          /* context of each sequence; <= 0: 4096 capped at the training context */
    int         n_parallel;     /* requests generating at once (scheduler slots); default 4 */
    size_t      cache_bytes;    /* prefix cache cap; 0: no prefix cache. default 1 GiB */
    int         prefill_budget; /* most prompt tokens per step; <= 0: the model's batch size */
    double      ping_s;         /* SSE keep-alive interval; default 10 */
    int         max_queue;      /* jobs waiting at most (then 503); default 64 */
    unsigned    conn_timeout_s; /* idle keep-alive connection timeout; default 300 */
    const char *model_name;     /* the id /v1/models reports; NULL: the file name */
    int         draft_block;    /* with a drafter attached to the model: tokens per step, 2..64; 0: the drafter's;
                                   1: speculation off */
    int         draft_budget;   /* draft nodes per step: 0 chain, N tree of N nodes, -1 auto */
    int         chat_family;    /* -1 (default): the model's template decides (tok/chat.h ar_chat_family);
                                   else AR_CHAT_QWEN35 / QWEN36 / CHATML, whatever the model carries */
    const char *script;         /* tests only: every generation "outputs" this text (see srv_request) */
} srv_options;

srv_options srv_defaults(void);

/* Start serving HTTP: /health answers 503 "loading" until srv_attach_model. */
int  srv_create(srv **out, const srv_options *o, ar_error *err);
/* Use model m (not owned: free it after srv_free): creates and starts the scheduler (and the
 * speculative hooks of a drafter); ready. */
int  srv_attach_model(srv *s, ar_model *m, const char *path, ar_error *err);
int  srv_port(const srv *s);
/* Stops: queued and running jobs end with 503 (an error frame when streamed), connections close. NULL ok. */
void srv_free(srv *s);

/* For endpoint modules. */
const ar_model *srv_model(const srv *s);      /* NULL until attached */
int             srv_n_ctx(const srv *s);
const char     *srv_model_name(const srv *s);
const char     *srv_script(const srv *s);     /* srv_options.script */
int             srv_n_ctx_train(const srv *s);
int             srv_chat_family(const srv *s);   /* tok/chat.h AR_CHAT_*: the model's template family */
/* 0 when a model is attached; else fills e with 503 "loading model" and returns -1. */
int             srv_check_ready(const srv *s, api_error *e);

/* ---- jobs --------------------------------------------------------------------------------------- */

typedef struct srv_job srv_job;
/* The end of the job's generation: rc 0 and res, or an engine failure (rc, err). Runs on the
 * scheduler's thread: account (srv_job_account / srv_job_failed) and write the last frame or reply. */
typedef void (*srv_job_done)(srv_job *j, void *user, int rc, const gen_result *res, const ar_error *err);

/* A job generating req's prompt into sink (copied; req, prompt and sink->user must live as long as
 * user); done as above; free_user(user) when the job is freed. */
srv_job *srv_job_new(srv *s, const srv_request *req, const gen_prompt *prompt, const gen_sink *sink,
                     srv_job_done done, void *user, void (*free_user)(void *));
void     srv_job_free_unsubmitted(srv_job *j);   /* a job that was never submitted */
void    *srv_job_user(srv_job *j);

/* Stream bytes to the client (any thread). */
void srv_job_write(srv_job *j, const char *bytes, size_t n);
void srv_job_set_keepalive(srv_job *j, const char *text);   /* copied; default ": keep-alive\n\n" */
/* How an error that ends the job outside its generation (the server stopping)
 * reaches the client, in the endpoint's own shape: fn writes the stream's error frame or sets the
 * answer with srv_job_reply. Default: OpenAI's shape ("data: {"error": ...}" when streamed). */
typedef void (*srv_job_error_fn)(srv_job *j, void *user, const api_error *e);
void srv_job_set_error(srv_job *j, srv_job_error_fn fn);
/* The non-streamed answer: status and body (taken: malloc'd JSON). */
void srv_job_reply(srv_job *j, int status, char *body);
bool srv_job_cancelled(srv_job *j);
/* Count one finished generation in /metrics (tokens, seconds, cancellations). */
void srv_job_account(srv_job *j, const gen_result *res);
/* Count an engine failure (500, or an error event mid-stream) in /metrics. */
void srv_job_failed(srv_job *j);

/* Queue the job and answer r (see the top of this file). Takes the job in every case; answers 503
 * when the server is not ready, is stopping or its queue is full (server_busy). */
void srv_submit(srv *s, http_req *r, srv_job *j, bool stream);

#endif
