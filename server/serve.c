/* server/serve.c — the server object: HTTP daemon + model + the scheduler (speculative or not, any
 * --parallel), /health and /metrics (see serve.h).
 *
 * Job lifetime: a job has up to two owners, the HTTP side (the handler thread for a non-streamed
 * request, the stream's connection for a streamed one) and the engine from submission to its done
 * callback; it is freed when both have let go. Everything a job shares between threads is under its
 * mutex. The client's socket is polled for a hang-up only under that mutex and only while the
 * connection still owns it (the stream's done callback clears it before libmicrohttpd closes the
 * socket). */
#include "server/serve.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/timer.h"
#include "engine/generate.h"
#include "engine/sched.h"
#include "model/qwen35.h"
#include "server/anthropic.h"
#include "server/openai.h"
#include "server/responses.h"
#include "tok/chat.h"

/* ---- metrics ------------------------------------------------------------------------------------ */

typedef struct status_count {
    char endpoint[64];
    int  status;
    unsigned long long n;
} status_count;

typedef struct metrics {
    status_count *by_status;
    int n_by_status;
    unsigned long long prompt_tokens, cached_tokens, gen_tokens, generations, cancelled, gen_errors, queue_waits;
    unsigned long long spec_steps, spec_tokens, spec_nodes;
    double prompt_s, gen_s, queue_wait_s;
    double last_prompt_tps, last_gen_tps;
} metrics;

/* ---- server ------------------------------------------------------------------------------------- */

struct srv_job {
    srv *s;
    const srv_request *req;
    const gen_prompt  *prompt;
    gen_sink           sink;
    srv_job_done       done_fn;
    void *user;
    void (*free_user)(void *);
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int   refs;
    bool  submitted;         /* id names it in the scheduler */
    uint64_t id;
    bool  done;              /* the generation ended (or the job was dropped) */
    bool  cancelled;
    bool  stream;
    int   fd;                /* the client's socket while the connection owns it; -1 after */
    sbuf  out;               /* stream bytes not yet sent */
    size_t out_pos;
    double last_send;
    char *keepalive;
    srv_job_error_fn on_error;
    int   status;            /* non-streamed answer */
    char *body;
    double t_queued;
};

struct srv {
    srv_options     o;
    char           *host, *api_key, *name;
    http_server    *http;
    ar_model       *model;
    ar_sched       *sched;
    int             chat_family;   /* tok/chat.h: the model's template family */
    int             n_ctx;
    atomic_bool     ready;
    atomic_bool     stopping;
    pthread_mutex_t mu;       /* metrics, streams */
    pthread_cond_t  cv;
    int             n_streams;   /* streams the connections still send */
    metrics         m;
};

srv_options srv_defaults(void)
{
    return (srv_options){ .host = "127.0.0.1", .port = 8080, .max_body = 32u << 20, .n_ctx = 0, .ping_s = 10.0,
                          .max_queue = 64, .conn_timeout_s = 300, .n_parallel = 4, .cache_bytes = (size_t)1 << 30,
                          .chat_family = -1 };
}

static void on_response(void *user, const char *endpoint, int status)
{
    srv *s = user;
    pthread_mutex_lock(&s->mu);
    status_count *c = NULL;
    for (int i = 0; i < s->m.n_by_status; i++)
        if (s->m.by_status[i].status == status && !strcmp(s->m.by_status[i].endpoint, endpoint)) c = &s->m.by_status[i];
    if (!c) {
        status_count *b = realloc(s->m.by_status, (size_t)(s->m.n_by_status + 1) * sizeof *b);
        if (b) {
            s->m.by_status = b;
            c = &b[s->m.n_by_status++];
            *c = (status_count){ .status = status };
            snprintf(c->endpoint, sizeof c->endpoint, "%s", endpoint);
        }
    }
    if (c) c->n++;
    pthread_mutex_unlock(&s->mu);
}

/* ---- jobs --------------------------------------------------------------------------------------- */

srv_job *srv_job_new(srv *s, const srv_request *req, const gen_prompt *prompt, const gen_sink *sink,
                     srv_job_done done, void *user, void (*free_user)(void *))
{
    srv_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    j->s = s;
    j->req = req;
    j->prompt = prompt;
    j->sink = *sink;
    j->done_fn = done;
    j->user = user;
    j->free_user = free_user;
    j->refs = 1;
    j->fd = -1;
    return j;
}

void *srv_job_user(srv_job *j) { return j->user; }

static void job_destroy(srv_job *j)
{
    if (j->free_user) j->free_user(j->user);
    sb_free(&j->out);
    free(j->keepalive);
    free(j->body);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static void job_release(srv_job *j)
{
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left == 0) job_destroy(j);
}

void srv_job_free_unsubmitted(srv_job *j)
{
    if (j) job_release(j);
}

void srv_job_write(srv_job *j, const char *bytes, size_t n)
{
    pthread_mutex_lock(&j->mu);
    sb_put(&j->out, bytes, n);
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

void srv_job_set_keepalive(srv_job *j, const char *text)
{
    pthread_mutex_lock(&j->mu);
    free(j->keepalive);
    j->keepalive = text ? strdup(text) : NULL;
    pthread_mutex_unlock(&j->mu);
}

void srv_job_set_error(srv_job *j, srv_job_error_fn fn) { j->on_error = fn; }

void srv_job_reply(srv_job *j, int status, char *body)
{
    pthread_mutex_lock(&j->mu);
    free(j->body);
    j->status = status;
    j->body = body;
    pthread_mutex_unlock(&j->mu);
}

bool srv_job_cancelled(srv_job *j)
{
    pthread_mutex_lock(&j->mu);
    if (!j->cancelled && j->fd >= 0) {
        struct pollfd p = { .fd = j->fd, .events = POLLRDHUP };
        if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) j->cancelled = true;
    }
    bool c = j->cancelled;
    pthread_mutex_unlock(&j->mu);
    return c;
}

void srv_job_account(srv_job *j, const gen_result *res)
{
    srv *s = j->s;
    pthread_mutex_lock(&s->mu);
    s->m.generations++;
    s->m.prompt_tokens += (unsigned long long)res->n_prompt;
    s->m.cached_tokens += (unsigned long long)res->n_cached;
    s->m.queue_waits++;
    s->m.queue_wait_s += res->queue_s;
    s->m.gen_tokens += (unsigned long long)res->n_gen;
    s->m.spec_steps += (unsigned long long)res->n_spec_steps;
    s->m.spec_tokens += (unsigned long long)res->n_spec_tokens;
    s->m.spec_nodes += (unsigned long long)res->n_spec_nodes;
    s->m.prompt_s += res->prompt_s;
    s->m.gen_s += res->gen_s;
    if (res->prompt_s > 0) s->m.last_prompt_tps = res->n_prompt / res->prompt_s;
    if (res->gen_s > 0 && res->n_gen > 1) s->m.last_gen_tps = (res->n_gen - 1) / res->gen_s;
    if (res->finish == GEN_FINISH_CANCELLED) s->m.cancelled++;
    pthread_mutex_unlock(&s->mu);
}

void srv_job_failed(srv_job *j)
{
    pthread_mutex_lock(&j->s->mu);
    j->s->m.gen_errors++;
    pthread_mutex_unlock(&j->s->mu);
}

/* Mark done (worker finished, or the job was dropped) and wake the HTTP side. */
static void job_finish(srv_job *j)
{
    pthread_mutex_lock(&j->mu);
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* Stream reader: runs on the connection's thread. */
static ssize_t job_read(void *ctx, char *buf, size_t max)
{
    srv_job *j = ctx;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        if (j->out_pos < j->out.n) {
            size_t k = j->out.n - j->out_pos < max ? j->out.n - j->out_pos : max;
            memcpy(buf, j->out.p + j->out_pos, k);
            j->out_pos += k;
            if (j->out_pos == j->out.n) { sb_clear(&j->out); j->out_pos = 0; }
            j->last_send = ar_now();
            pthread_mutex_unlock(&j->mu);
            return (ssize_t)k;
        }
        if (j->done) { pthread_mutex_unlock(&j->mu); return 0; }
        double ping = j->s->o.ping_s > 0 ? j->s->o.ping_s : 10.0;
        double due = j->last_send + ping, now = ar_now();
        if (now >= due) {
            const char *ka = j->keepalive ? j->keepalive : ": keep-alive\n\n";
            sb_puts(&j->out, ka);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double wait = due - now;
        long long ns = (long long)ts.tv_nsec + (long long)((wait - (long long)wait) * 1e9);
        ts.tv_sec += (time_t)wait + (time_t)(ns / 1000000000LL);
        ts.tv_nsec = (long)(ns % 1000000000LL);
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    }
}

/* The connection is done with the stream: the client has it all, or went away. */
static void job_stream_done(void *ctx, bool completed)
{
    srv_job *j = ctx;
    pthread_mutex_lock(&j->mu);
    j->fd = -1;
    (void)completed;
    bool cancel = !j->done && j->submitted;
    if (!j->done) j->cancelled = true;   /* the stream ended before the job did: the client left */
    uint64_t id = j->id;
    pthread_mutex_unlock(&j->mu);
    if (cancel && j->s->sched) ar_sched_cancel(j->s->sched, id);
    srv *s = j->s;
    job_release(j);
    pthread_mutex_lock(&s->mu);
    s->n_streams--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void reply_unavailable(http_req *r, const char *code, const char *msg)
{
    api_error e;
    api_fail(&e, 503, "server_error", code, NULL, "%s", msg);
    http_reply_error(r, &e);
}

static bool job_cancelled_cb(void *user)
{
    srv_job *j = user;
    return atomic_load(&j->s->stopping) || srv_job_cancelled(j);
}

/* The job's error in its endpoint's shape (the server stopping). */
static void job_error(srv_job *j, const api_error *e)
{
    if (j->on_error) {
        j->on_error(j, j->user, e);
    } else if (j->stream) {
        char *body = api_error_openai(e);
        if (body) {
            srv_job_write(j, "data: ", 6);
            srv_job_write(j, body, strlen(body));
            srv_job_write(j, "\n\n", 2);
        }
        free(body);
    } else {
        srv_job_reply(j, 503, api_error_openai(e));
    }
}

/* The engine is done with the job (any engine thread, or ar_sched_free). */
static void job_gen_done(void *user, int rc, const gen_result *res, const ar_error *err)
{
    srv_job *j = user;
    srv *s = j->s;
    if (!rc && res->finish == GEN_FINISH_CANCELLED && atomic_load(&s->stopping)) {
        srv_job_account(j, res);
        api_error e;
        api_fail(&e, 503, "server_error", "shutting_down", NULL, "The server is shutting down");
        job_error(j, &e);
        pthread_mutex_lock(&j->mu);
        j->cancelled = true;
        pthread_mutex_unlock(&j->mu);
    } else {
        j->done_fn(j, j->user, rc, res, err);
    }
    job_finish(j);
    job_release(j);
}

/* Hand the job to the engine (it holds a reference until job_gen_done). Returns 0, or fills e. */
static int job_start(srv *s, srv_job *j, api_error *e)
{
    pthread_mutex_lock(&j->mu);
    j->refs++;   /* the engine's */
    pthread_mutex_unlock(&j->mu);
    j->t_queued = ar_now();
    if (s->o.script) {   /* tests: the scripted "model" runs here, on the connection's thread */
        gen_result res;
        ar_error err = { 0 };
        int rc = gen_run(j->req, j->prompt, &j->sink, job_cancelled_cb, j, &res, &err);
        job_gen_done(j, rc, &res, &err);
        return 0;
    }
    ar_error err = { 0 };
    pthread_mutex_lock(&j->mu);
    j->submitted = true;
    pthread_mutex_unlock(&j->mu);
    const gen_spec spec = { .block = s->o.draft_block, .budget = s->o.draft_budget, .fill = s->o.cache_bytes > 0 };
    int rc = gen_submit(s->sched, s->model, &spec, j->req, j->prompt, &j->sink, job_cancelled_cb, j, job_gen_done, j,
                        &j->id, &err);
    if (rc) {
        pthread_mutex_lock(&j->mu);
        j->submitted = false;
        pthread_mutex_unlock(&j->mu);
        job_release(j);
        if (rc == AR_ERANGE && strstr(err.msg, "queue is full"))
            return api_fail(e, 503, "server_error", "server_busy", NULL, "The server's queue is full; retry later");
        return api_fail(e, rc == AR_ENOMEM ? 500 : 400, rc == AR_ENOMEM ? "server_error" : "invalid_request_error",
                        NULL, NULL, "%s", err.msg);
    }
    return 0;
}

void srv_submit(srv *s, http_req *r, srv_job *j, bool stream)
{
    api_error e;
    if (srv_check_ready(s, &e)) { job_release(j); http_reply_error(r, &e); return; }
    j->stream = stream;
    j->fd = http_fd(r);
    j->last_send = ar_now();
    if (atomic_load(&s->stopping)) {
        job_release(j);
        reply_unavailable(r, "shutting_down", "The server is shutting down");
        return;
    }
    if (job_start(s, j, &e)) { job_release(j); http_reply_error(r, &e); return; }

    if (stream) {
        pthread_mutex_lock(&s->mu);
        s->n_streams++;
        pthread_mutex_unlock(&s->mu);
        http_reply_stream(r, 200, "text/event-stream", job_read, job_stream_done, j);   /* takes our ref */
        return;
    }
    /* non-streamed: wait here (this connection's own thread) */
    pthread_mutex_lock(&j->mu);
    while (!j->done) pthread_cond_wait(&j->cv, &j->mu);
    j->fd = -1;
    int status = j->status;
    char *body = j->body;
    j->body = NULL;
    bool cancelled = j->cancelled;
    pthread_mutex_unlock(&j->mu);
    if (body) http_reply_json(r, status ? status : 200, body);
    else if (cancelled) reply_unavailable(r, "cancelled", "The request was cancelled");
    else {
        api_fail(&e, 500, "server_error", NULL, NULL, "the generation produced no answer");
        http_reply_error(r, &e);
    }
    free(body);
    job_release(j);
}

/* ---- /health, /metrics -------------------------------------------------------------------------- */

static void handle_health(void *user, http_req *r)
{
    srv *s = user;
    api_error e;
    if (srv_check_ready(s, &e)) { http_reply_error(r, &e); return; }
    http_reply_json(r, 200, "{\"status\":\"ok\"}");
}

static void handle_metrics(void *user, http_req *r)
{
    srv *s = user;
    sbuf b = { 0 };
    ar_sched_stats st = { 0 };
    if (s->sched) ar_sched_get_stats(s->sched, &st);
    pthread_mutex_lock(&s->mu);
    const metrics *m = &s->m;
    int depth = s->sched ? st.n_queued : 0, running = s->sched ? st.n_active : 0;
    sb_puts(&b, "# HELP arbor_requests_total HTTP responses by endpoint and status.\n"
                "# TYPE arbor_requests_total counter\n");
    for (int i = 0; i < m->n_by_status; i++)
        sb_printf(&b, "arbor_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", m->by_status[i].endpoint,
                  m->by_status[i].status, m->by_status[i].n);
    unsigned long long errors = 0;
    for (int i = 0; i < m->n_by_status; i++)
        if (m->by_status[i].status >= 400) errors += m->by_status[i].n;
    sb_printf(&b,
              "# HELP arbor_request_errors_total HTTP responses with a 4xx or 5xx status.\n"
              "# TYPE arbor_request_errors_total counter\narbor_request_errors_total %llu\n"
              "# HELP arbor_generation_errors_total Generations the engine failed (500s and errors mid-stream).\n"
              "# TYPE arbor_generation_errors_total counter\narbor_generation_errors_total %llu\n"
              "# HELP arbor_generations_total Generations run.\n"
              "# TYPE arbor_generations_total counter\narbor_generations_total %llu\n"
              "# HELP arbor_cancelled_total Generations stopped because the client went away.\n"
              "# TYPE arbor_cancelled_total counter\narbor_cancelled_total %llu\n"
              "# HELP arbor_prompt_tokens_total Prompt tokens processed.\n"
              "# TYPE arbor_prompt_tokens_total counter\narbor_prompt_tokens_total %llu\n"
              "# HELP arbor_generated_tokens_total Tokens generated.\n"
              "# TYPE arbor_generated_tokens_total counter\narbor_generated_tokens_total %llu\n"
              "# HELP arbor_prompt_seconds_total Seconds spent on prompts.\n"
              "# TYPE arbor_prompt_seconds_total counter\narbor_prompt_seconds_total %.6f\n"
              "# HELP arbor_generation_seconds_total Seconds spent generating.\n"
              "# TYPE arbor_generation_seconds_total counter\narbor_generation_seconds_total %.6f\n"
              "# HELP arbor_prompt_tokens_per_second Prompt speed of the last generation.\n"
              "# TYPE arbor_prompt_tokens_per_second gauge\narbor_prompt_tokens_per_second %.3f\n"
              "# HELP arbor_generation_tokens_per_second Decode speed of the last generation.\n"
              "# TYPE arbor_generation_tokens_per_second gauge\narbor_generation_tokens_per_second %.3f\n"
              "# HELP arbor_queue_depth Jobs waiting for a sequence slot.\n"
              "# TYPE arbor_queue_depth gauge\narbor_queue_depth %d\n"
              "# HELP arbor_requests_running Jobs being generated.\n"
              "# TYPE arbor_requests_running gauge\narbor_requests_running %d\n"
              "# HELP arbor_queue_wait_seconds Time jobs waited in the queue.\n"
              "# TYPE arbor_queue_wait_seconds summary\narbor_queue_wait_seconds_sum %.6f\n"
              "arbor_queue_wait_seconds_count %llu\n",
              errors, m->gen_errors, m->generations, m->cancelled, m->prompt_tokens, m->gen_tokens, m->prompt_s,
              m->gen_s, m->last_prompt_tps, m->last_gen_tps, depth, running, m->queue_wait_s,
              m->queue_waits);
    sb_printf(&b,
              "# HELP arbor_prompt_cached_tokens_total Prompt tokens restored from the prefix cache (in the prompt tokens).\n"
              "# TYPE arbor_prompt_cached_tokens_total counter\narbor_prompt_cached_tokens_total %llu\n",
              m->cached_tokens);
    sb_printf(&b,
              "# HELP arbor_spec_steps_total Speculative steps (a drafter attached: one verify of a chain or tree).\n"
              "# TYPE arbor_spec_steps_total counter\narbor_spec_steps_total %llu\n"
              "# HELP arbor_spec_tokens_total Tokens emitted by speculative steps.\n"
              "# TYPE arbor_spec_tokens_total counter\narbor_spec_tokens_total %llu\n"
              "# HELP arbor_spec_draft_nodes_total Draft nodes verified by speculative steps (anchors not counted).\n"
              "# TYPE arbor_spec_draft_nodes_total counter\narbor_spec_draft_nodes_total %llu\n"
              "# HELP arbor_spec_acceptance_length Tokens per speculative step (spec_tokens / spec_steps; 0 before any).\n"
              "# TYPE arbor_spec_acceptance_length gauge\narbor_spec_acceptance_length %.4f\n",
              m->spec_steps, m->spec_tokens, m->spec_nodes,
              m->spec_steps ? (double)m->spec_tokens / (double)m->spec_steps : 0.0);
    pthread_mutex_unlock(&s->mu);
    if (s->sched) {
        const ar_pcache_stats *c = &st.cache;
        sb_printf(&b,
                  "# HELP arbor_sched_active_sequences Requests holding a sequence slot.\n"
                  "# TYPE arbor_sched_active_sequences gauge\narbor_sched_active_sequences %d\n"
                  "# HELP arbor_sched_queue_depth Requests waiting for a sequence slot.\n"
                  "# TYPE arbor_sched_queue_depth gauge\narbor_sched_queue_depth %d\n"
                  "# HELP arbor_sched_parallel Sequence slots (--parallel).\n"
                  "# TYPE arbor_sched_parallel gauge\narbor_sched_parallel %d\n"
                  "# HELP arbor_kv_pages Live KV pages (sequences and prefix cache).\n"
                  "# TYPE arbor_kv_pages gauge\narbor_kv_pages %ld\n"
                  "# HELP arbor_kv_bytes Bytes of the live KV pages.\n"
                  "# TYPE arbor_kv_bytes gauge\narbor_kv_bytes %zu\n"
                  "# HELP arbor_cache_bytes Bytes the prefix cache holds.\n"
                  "# TYPE arbor_cache_bytes gauge\narbor_cache_bytes %zu\n"
                  "# HELP arbor_cache_entries Prefix cache entries.\n"
                  "# TYPE arbor_cache_entries gauge\narbor_cache_entries %ld\n"
                  "# HELP arbor_sched_steps_total Forwards the scheduler ran.\n"
                  "# TYPE arbor_sched_steps_total counter\narbor_sched_steps_total %llu\n"
                  "# HELP arbor_sched_prefilled_tokens_total Prompt tokens evaluated.\n"
                  "# TYPE arbor_sched_prefilled_tokens_total counter\narbor_sched_prefilled_tokens_total %llu\n"
                  "# HELP arbor_sched_cached_tokens_total Prompt tokens restored from the prefix cache.\n"
                  "# TYPE arbor_sched_cached_tokens_total counter\narbor_sched_cached_tokens_total %llu\n"
                  "# HELP arbor_sched_generated_tokens_total Tokens the scheduler generated.\n"
                  "# TYPE arbor_sched_generated_tokens_total counter\narbor_sched_generated_tokens_total %llu\n"
                  "# HELP arbor_cache_hits_total Requests that resumed from the prefix cache.\n"
                  "# TYPE arbor_cache_hits_total counter\narbor_cache_hits_total %llu\n"
                  "# HELP arbor_cache_misses_total Requests that found no prefix cache entry.\n"
                  "# TYPE arbor_cache_misses_total counter\narbor_cache_misses_total %llu\n"
                  "# HELP arbor_cache_evictions_total Prefix cache entries evicted.\n"
                  "# TYPE arbor_cache_evictions_total counter\narbor_cache_evictions_total %llu\n"
                  "# HELP arbor_batch_nodes Nodes per forward (batch size).\n"
                  "# TYPE arbor_batch_nodes histogram\n",
                  st.n_active, st.n_queued, st.n_parallel, st.kv_pages, st.kv_bytes, c->bytes,
                  (long)c->n_entries, (unsigned long long)st.n_steps, (unsigned long long)st.n_prefilled,
                  (unsigned long long)st.n_cached, (unsigned long long)st.n_generated, (unsigned long long)c->n_hits,
                  (unsigned long long)c->n_misses, (unsigned long long)c->n_evicted);
        unsigned long long cum = 0;
        for (int i = 0; i < AR_SCHED_HIST; i++) {
            cum += (unsigned long long)st.batch_hist[i];
            if (i < AR_SCHED_HIST - 1) sb_printf(&b, "arbor_batch_nodes_bucket{le=\"%d\"} %llu\n", 1 << i, cum);
            else sb_printf(&b, "arbor_batch_nodes_bucket{le=\"+Inf\"} %llu\n", cum);
        }
        sb_printf(&b, "arbor_batch_nodes_sum %llu\narbor_batch_nodes_count %llu\n", (unsigned long long)st.n_nodes,
                  (unsigned long long)st.n_steps);
    }
    if (b.oom) { sb_free(&b); http_reply(r, 500, "text/plain", "out of memory\n", 14); return; }
    http_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.n);
    sb_free(&b);
}

/* ---- lifecycle ---------------------------------------------------------------------------------- */

const ar_model *srv_model(const srv *s) { return atomic_load(&s->ready) ? s->model : NULL; }
int srv_n_ctx(const srv *s) { return s->n_ctx; }
const char *srv_model_name(const srv *s) { return s->name ? s->name : "arbor"; }
int srv_n_ctx_train(const srv *s) { return s->model ? ar_model_n_ctx_train(s->model) : 0; }
int srv_port(const srv *s) { return http_port(s->http); }
const char *srv_script(const srv *s) { return s->o.script; }

int srv_check_ready(const srv *s, api_error *e)
{
    if (atomic_load(&s->ready)) return 0;
    return api_fail(e, 503, "server_error", "model_loading", NULL, "Loading model");
}

int srv_create(srv **out, const srv_options *o, ar_error *err)
{
    *out = NULL;
    srv *s = calloc(1, sizeof *s);
    if (!s) return ar_fail(err, AR_ENOMEM, "out of memory creating the server");
    s->o = *o;
    srv_options d = srv_defaults();
    if (s->o.max_queue <= 0) s->o.max_queue = d.max_queue;
    if (s->o.ping_s <= 0) s->o.ping_s = d.ping_s;
    if (!s->o.max_body) s->o.max_body = d.max_body;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    atomic_init(&s->ready, false);
    atomic_init(&s->stopping, false);
    if (o->model_name && !(s->name = strdup(o->model_name))) { srv_free(s); return ar_fail(err, AR_ENOMEM, "out of memory"); }

    http_options ho = { .host = o->host, .port = o->port, .api_key = o->api_key, .cors = o->cors,
                        .max_body = s->o.max_body, .conn_timeout_s = o->conn_timeout_s, .on_response = on_response,
                        .user = s };
    int rc = http_create(&s->http, &ho, err);
    if (!rc) rc = http_route(s->http, "GET", "/health", handle_health, s, NULL, true);
    if (!rc) rc = http_route(s->http, "GET", "/v1/health", handle_health, s, NULL, true);
    if (!rc) rc = http_route(s->http, "GET", "/metrics", handle_metrics, s, NULL, false);
    if (!rc) rc = openai_register(s, s->http);
    if (!rc) rc = anthropic_register(s, s->http);
    if (!rc) rc = responses_register(s, s->http);
    if (rc == AR_ENOMEM) ar_fail(err, AR_ENOMEM, "out of memory registering routes");
    if (!rc) rc = http_start(s->http, err);
    if (rc) { srv_free(s); return rc; }
    *out = s;
    return 0;
}

static char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 5 && !strcmp(b + n - 5, ".gguf")) n -= 5;
    return strndup(b, n);
}

/* The model's chat template family (tok/chat.h) from its GGUF's tokenizer.chat_template: Qwen3.5 /
 * Qwen3.6 render their own template; a template of another family gets ChatML, with a warning. */
static int model_chat_family(const ar_model *m)
{
    const gguf_file *f = m->qm ? qwen35_gguf(m->qm) : NULL;
    const gguf_kv *kv = f ? gguf_find(f, "tokenizer.chat_template") : NULL;
    char *text = NULL;
    if (kv && kv->type == GGUF_T_STRING && (text = malloc(kv->v.str.len + 1))) {
        memcpy(text, kv->v.str.ptr, kv->v.str.len);
        text[kv->v.str.len] = 0;
    }
    int family = ar_chat_family(text);
    if (family == AR_CHAT_CHATML)
        ar_log(AR_LOG_WARN, "the model's chat template (%zu bytes) is not of the Qwen3.5 family: prompts are "
               "rendered as plain ChatML (no tools, no thinking)", text ? strlen(text) : (size_t)0);
    else if (text && *text && !ar_chat_template_is_known(text))
        ar_log(AR_LOG_WARN, "the model's chat template differs from the published %s template: prompts are "
               "rendered with the published one", ar_chat_family_name(family));
    free(text);
    return family;
}

int srv_chat_family(const srv *s) { return s->chat_family; }

int srv_attach_model(srv *s, ar_model *m, const char *path, ar_error *err)
{
    if (!s->name && !(s->name = base_name(path ? path : "arbor"))) return ar_fail(err, AR_ENOMEM, "out of memory");
    int n_parallel = s->o.n_parallel > 0 ? s->o.n_parallel : 4;
    int rc;
    s->chat_family = s->o.chat_family >= AR_CHAT_QWEN35 && s->o.chat_family <= AR_CHAT_CHATML ? s->o.chat_family
                                                                                             : model_chat_family(m);
    /* one mechanism for every --parallel: the scheduler; with a drafter, each request brings its own
     * speculative hook (gen_submit) */
    ar_sched_params sp = ar_sched_defaults();
    sp.n_parallel = n_parallel;
    int n_train = ar_model_n_ctx_train(m);
    sp.n_ctx = s->o.n_ctx > 0 ? s->o.n_ctx : (n_train > 0 && n_train < 4096 ? n_train : 4096);
    sp.max_queue = s->o.max_queue;
    sp.cache_bytes = s->o.cache_bytes;
    if (s->o.prefill_budget > 0) sp.prefill_budget = s->o.prefill_budget;
    if ((rc = ar_sched_create(&s->sched, m, &sp, err))) return rc;
    if ((rc = ar_sched_start(s->sched, err))) {
        ar_sched_free(s->sched);
        s->sched = NULL;
        return rc;
    }
    s->n_ctx = sp.n_ctx;
    s->model = m;
    atomic_store(&s->ready, true);
    return 0;
}

void srv_free(srv *s)
{
    if (!s) return;
    /* 1. stop taking work; the scheduler ends every request (done: 503 frames and replies) */
    atomic_store(&s->stopping, true);
    ar_sched_free(s->sched);
    s->sched = NULL;
    /* 2. streams send their last frames (at most 2 s), then connections close */
    pthread_mutex_lock(&s->mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 2;
    while (s->n_streams > 0)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts)) break;
    pthread_mutex_unlock(&s->mu);
    http_free(s->http);
    free(s->m.by_status);
    free(s->name);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
