/* server/gen.c — one request's generation: prompt preparation (template, prefix-cache boundaries),
 * submission to the scheduler (with a speculative hook when the model has a drafter), and the text
 * pipeline that turns raw model text into events (see gen.h).
 *
 * Text pipeline, each stage holding back only what it cannot decide yet:
 *   raw pieces -> stop strings (hold back a suffix that may start a stop string; cut at a match)
 *              -> chat: tok/toolcall.h's incremental parser (reasoning inside <think>...</think>,
 *                 content, and <tool_call> blocks of the tools the model was shown, as JSON
 *                 arguments); completions: the raw text as content
 *              -> gen_sink.
 * Stop strings apply to the raw generated text (reasoning included), as llama.cpp does.
 *
 * The scheduler runs the pipeline (gen_submit; engine/sched.h batches the requests, chunks their
 * prompts, builds each one's sampler, resumes them from the prefix cache at the message boundaries
 * gen_prepare lists and, with a drafter, verifies each request's speculative hook); gen_run runs it
 * over the tests' script instead of a model. The pipeline state lives on the heap for the
 * scheduler, from gen_submit to the request's on_done.
 * tool_choice "required" / named (and "auto", lazily: from a "<tool_call>" the model starts):
 * server/toolchoice.h's constraint is made per request and travels in
 * the sampling parameters (ar_sampler_params.constraint) to whichever engine builds the sampler; the
 * scheduler drops its sampler when the request ends, and the constraint with it.
 * The chat prompt itself is rendered by render.c (gen_render_chat). */
#include "server/gen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/timer.h"
#include "engine/generate.h"
#include "engine/spec_hook.h"
#include "server/toolchoice.h"
#include "tok/chat.h"
#include "tok/toolcall.h"

/* ---- prompt ------------------------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

static void find_bounds(const ar_model *m, const srv_request *r, gen_prompt *p);

int gen_prepare(const ar_model *m, int n_ctx, const srv_request *r, gen_prompt *out, api_error *e)
{
    *out = (gen_prompt){ 0 };
    const char *field = r->kind == REQ_CHAT ? "messages" : "prompt";
    ar_error err = { 0 };
    if (r->kind == REQ_CHAT) {
        if (gen_render_chat(r, &out->text, e)) return -1;
        out->reasoning_open = ends_with(out->text, "<think>\n");
    } else if (r->prompt) {
        if (!(out->text = strdup(r->prompt))) return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (out->text) {
        size_t n = 0;
        if (ar_model_tokenize(m, out->text, strlen(out->text), true, &out->ids, &n, &err)) {
            gen_prompt_free(out);
            return api_bad(e, field, "cannot tokenize the prompt: %s", err.msg);
        }
        if (n > (size_t)INT32_MAX / 2) { gen_prompt_free(out); return api_bad(e, field, "the prompt is too long"); }
        out->n = (int)n;
    } else {
        int32_t nv = ar_model_n_vocab(m);
        for (size_t i = 0; i < r->n_prompt_ids; i++)
            if (r->prompt_ids[i] >= nv) {
                char p[64];
                js_path_index(p, sizeof p, "prompt", i);
                return api_bad(e, p, "token id %d is outside the vocabulary [0, %d)", (int)r->prompt_ids[i], (int)nv);
            }
        out->ids = malloc((r->n_prompt_ids ? r->n_prompt_ids : 1) * sizeof *out->ids);
        if (!out->ids) return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        memcpy(out->ids, r->prompt_ids, r->n_prompt_ids * sizeof *out->ids);
        out->n = (int)r->n_prompt_ids;
    }
    if (out->n == 0) { gen_prompt_free(out); return api_bad(e, field, "the prompt is empty (no tokens)"); }
    if (out->n >= n_ctx) {
        int n = out->n;
        gen_prompt_free(out);
        return api_fail(e, 400, "invalid_request_error", "context_length_exceeded", field,
                        "This model's maximum context length is %d tokens. However, your %s resulted in %d tokens, "
                        "which leaves no room for the completion. Shorten the %s, or start the server with a "
                        "larger --ctx.", n_ctx, field, n, field);
    }
    out->n_ctx = n_ctx;
    if (r->kind == REQ_CHAT) find_bounds(m, r, out);
    return 0;
}

/* The prompt text up to the end of message k (1..n_msgs), or NULL. For k < n_msgs: the first k + 1
 * messages rendered, cut where message k + 1 starts (its "<|im_start|>", the last one in that text;
 * consecutive tool results share one block, then there is no boundary at k). Rendering k + 1
 * messages rather than k keeps what follows message k in view: the Qwen3.5 template refuses a
 * conversation without a user query (the system message alone) and renders an assistant turn
 * differently before and after the last user query. The cut text is byte-identical for every
 * conversation that shares its first k messages (and tools): a shared system prompt is reused
 * between conversations. For k == n_msgs: the whole conversation without the generation prompt. */
static char *render_upto(const srv_request *r, int k)
{
    char *text = NULL;
    ar_error err = { 0 };
    if (gen_render_msgs(r, k < r->n_msgs ? k + 1 : k, false, &text, &err)) return NULL;
    if (k == r->n_msgs) return text;
    static const char mark[] = "<|im_start|>";
    char *last = NULL;
    for (char *q = strstr(text, mark); q; q = strstr(q + 1, mark)) last = q;
    if (!last || last == text) { free(text); return NULL; }
    *last = 0;
    return text;
}

/* Message boundaries: for k = 1..n, the token count of the prompt up to the end of message k when
 * those ids are a prefix of the whole prompt's (a later turn of the conversation, or another
 * conversation with the same system prompt, resumes from there). Best effort. */
static void find_bounds(const ar_model *m, const srv_request *r, gen_prompt *p)
{
    if (r->n_msgs <= 0 || !(p->bounds = calloc((size_t)r->n_msgs, sizeof *p->bounds))) return;
    for (int k = 1; k <= r->n_msgs; k++) {
        char *text = render_upto(r, k);
        if (!text) continue;
        int32_t *ids = NULL;
        size_t n = 0;
        ar_error err = { 0 };
        if (!ar_model_tokenize(m, text, strlen(text), true, &ids, &n, &err) && n > 0 && n <= (size_t)p->n &&
            !memcmp(ids, p->ids, n * sizeof *ids) && (p->n_bounds == 0 || (int)n > p->bounds[p->n_bounds - 1]))
            p->bounds[p->n_bounds++] = (int)n;
        free(ids);
        free(text);
    }
}

void gen_prompt_free(gen_prompt *p)
{
    if (!p) return;
    free(p->bounds);
    free(p->ids);
    free(p->text);
    *p = (gen_prompt){ 0 };
}

/* ---- the text pipeline -------------------------------------------------------------------------- */

typedef struct gen_state {
    const ar_model    *m;
    const srv_request *r;
    const gen_sink    *sink;
    gen_sink           sink_copy;  /* gen_submit: sink points here */
    const gen_prompt  *p;
    gen_done_fn        done;
    void              *done_user;
    gen_cancel_fn      cancelled;
    void              *cancel_user;
    bool cancel_hit, stop_hit;
    const char *stop_word;
    sbuf stop_buf;                 /* raw text the stop matcher holds back */
    ar_toolcall_parser *tc;        /* chat: reasoning / content / tool calls; NULL: raw text (completions) */
    tchoice *tcons;                /* tool_choice required / named: the sampler's constraint; NULL: none */
    int  tc_rc;                    /* the parser failed (out of memory): later text is dropped */
    bool in_reasoning;             /* the text being generated is reasoning (for the token count) */
    bool left_reasoning;           /* content or a tool call came: reasoning is over */
    int  n_reasoning;
    /* history fill (gen_spec.fill): the answer as the client receives it */
    ar_sched *sched;
    bool  fill;
    sbuf  ans_content, ans_reasoning;
    /* logprobs scratch: (GEN_MAX_TOP_LOGPROBS + 1) token texts */
    char  *lp_text;
    size_t lp_cap;                 /* bytes per text */
} gen_state;

static void sb_consume(sbuf *b, size_t k)
{
    if (k >= b->n) { sb_clear(b); return; }
    memmove(b->p, b->p + k, b->n - k);
    b->n -= k;
    b->p[b->n] = 0;
}

/* Longest k < len(pat) such that the last k bytes of s[0..n) equal the first k of pat. */
static size_t partial_suffix(const char *s, size_t n, const char *pat, size_t plen)
{
    size_t k = plen - 1 < n ? plen - 1 : n;
    for (; k > 0; k--)
        if (!memcmp(s + n - k, pat, k)) return k;
    return 0;
}

/* tok/toolcall.h events -> the sink. */
static int on_tc_event(void *ctx, const ar_tc_event *ev)
{
    gen_state *g = ctx;
    const gen_sink *k = g->sink;
    switch (ev->kind) {
    case AR_TC_REASONING:
        if (g->fill) sb_put(&g->ans_reasoning, ev->data, ev->len);
        if (!g->left_reasoning) g->in_reasoning = true;
        if (k->reasoning && ev->len) k->reasoning(k->user, ev->data, ev->len);
        break;
    case AR_TC_TEXT:
        if (g->fill) sb_put(&g->ans_content, ev->data, ev->len);
        g->in_reasoning = false;
        g->left_reasoning = true;
        if (k->content && ev->len) k->content(k->user, ev->data, ev->len);
        break;
    case AR_TC_CALL_START:
        g->in_reasoning = false;
        g->left_reasoning = true;
        if (k->tool_call_begin) k->tool_call_begin(k->user, ev->call_index, ev->id, ev->name);
        break;
    case AR_TC_CALL_ARGS:
        if (k->tool_call_args && ev->len) k->tool_call_args(k->user, ev->call_index, ev->data, ev->len);
        break;
    case AR_TC_CALL_END:
        if (k->tool_call_end) k->tool_call_end(k->user, ev->call_index);
        break;
    }
    return 0;
}

/* Text that passed the stop strings: through the parser (chat) or straight to content (completions).
 * final: no more text will come. */
static void parse_feed(gen_state *g, const char *text, size_t len, bool final)
{
    if (!g->tc) {
        if (len && g->sink->content) g->sink->content(g->sink->user, text, len);
        return;
    }
    if (g->tc_rc) return;
    if (len) g->tc_rc = ar_tc_feed(g->tc, text, len, on_tc_event, g);
    if (final && !g->tc_rc) g->tc_rc = ar_tc_finish(g->tc, on_tc_event, g);
}

static void stop_feed(gen_state *g, const char *text, size_t len, bool final)
{
    const srv_request *r = g->r;
    if (r->n_stop == 0) { parse_feed(g, text, len, final); return; }
    sbuf *b = &g->stop_buf;
    sb_put(b, text, len);
    size_t best = SIZE_MAX;
    int which = -1;
    for (int i = 0; i < r->n_stop; i++) {
        const char *hit = b->n ? memmem(b->p, b->n, r->stop[i], strlen(r->stop[i])) : NULL;
        if (hit && (size_t)(hit - b->p) < best) { best = (size_t)(hit - b->p); which = i; }
    }
    if (which >= 0) {
        g->stop_hit = true;
        g->stop_word = r->stop[which];
        parse_feed(g, b->p, best, true);
        sb_clear(b);
        return;
    }
    size_t hold = 0;
    if (!final)
        for (int i = 0; i < r->n_stop; i++) {
            size_t k = partial_suffix(b->p, b->n, r->stop[i], strlen(r->stop[i]));
            if (k > hold) hold = k;
        }
    parse_feed(g, b->p, b->n - hold, final);
    sb_consume(b, b->n - hold);
}

/* ---- logprobs ----------------------------------------------------------------------------------- */

static void emit_logprob(gen_state *g, int32_t token, const float *lg)
{
    const int32_t nv = ar_model_n_vocab(g->m);
    float mx = -INFINITY;
    for (int32_t i = 0; i < nv; i++) mx = lg[i] > mx ? lg[i] : mx;
    double sum = 0;
    for (int32_t i = 0; i < nv; i++) sum += exp((double)(lg[i] - mx));
    const double lse = mx + log(sum);

    gen_logprob lp = { 0 };
    int k = g->r->top_logprobs < GEN_MAX_TOP_LOGPROBS ? g->r->top_logprobs : GEN_MAX_TOP_LOGPROBS;
    /* top-k by insertion: k <= 20, one pass over the vocabulary */
    for (int32_t i = 0; i < nv && k > 0; i++) {
        if (lp.n_top == k && lg[i] <= lp.top[k - 1].logprob) continue;
        int j = lp.n_top < k ? lp.n_top++ : k - 1;
        while (j > 0 && lp.top[j - 1].logprob < lg[i]) { lp.top[j] = lp.top[j - 1]; j--; }
        lp.top[j] = (gen_top){ .token = i, .logprob = lg[i] };
    }
    const ar_vocab *v = ar_model_vocab(g->m);
    size_t cap = g->lp_cap;
    lp.chosen.token = token;
    lp.chosen.logprob = (float)(lg[token] - lse);
    lp.chosen.text = g->lp_text;
    lp.chosen.len = ar_token_to_bytes(v, token, false, g->lp_text, cap);
    if (lp.chosen.len > cap) lp.chosen.len = cap;
    for (int i = 0; i < lp.n_top; i++) {
        char *t = g->lp_text + (size_t)(i + 1) * cap;
        lp.top[i].logprob = (float)(lp.top[i].logprob - lse);
        lp.top[i].text = t;
        lp.top[i].len = ar_token_to_bytes(v, lp.top[i].token, false, t, cap);
        if (lp.top[i].len > cap) lp.top[i].len = cap;
    }
    g->sink->logprob(g->sink->user, &lp);
}

/* ---- generation --------------------------------------------------------------------------------- */

static bool on_token_logits(gen_state *g, int32_t token, const char *piece, size_t len, const float *logits)
{
    if (g->stop_hit || g->cancel_hit) return true;
    if (token >= 0) {
        if (g->r->logprobs && g->sink->logprob && logits && !ar_model_token_is_eog(g->m, token))
            emit_logprob(g, token, logits);
        if (g->in_reasoning) g->n_reasoning++;
    }
    stop_feed(g, piece, len, false);
    if (g->stop_hit) return true;
    if (g->cancelled && g->cancelled(g->cancel_user)) { g->cancel_hit = true; return true; }
    return false;
}

/* Tests: the request's script stands in for the model's output, 3 bytes per "token". */
static void run_script(gen_state *g, gen_result *res)
{
    const char *text = g->r->script;
    size_t n = strlen(text);
    res->finish = GEN_FINISH_STOP;
    for (size_t i = 0; i < n;) {
        if (g->r->max_tokens > 0 && res->n_gen >= g->r->max_tokens) { res->finish = GEN_FINISH_LENGTH; break; }
        size_t k = n - i < 3 ? n - i : 3;
        res->n_gen++;
        if (g->in_reasoning) g->n_reasoning++;
        stop_feed(g, text + i, k, false);
        i += k;
        if (g->stop_hit) break;
        if (g->cancelled && g->cancelled(g->cancel_user)) { g->cancel_hit = true; break; }
    }
    if (g->cancel_hit) res->finish = GEN_FINISH_CANCELLED;
    else if (!g->stop_hit) stop_feed(g, "", 0, true);
}

/* The output parser for a chat request: it knows the tools the model was shown (none when
 * tool_choice is "none") and whether the prompt left a reasoning block open. */
static int make_parser(const srv_request *r, const gen_prompt *p, ar_toolcall_parser **out, ar_error *err)
{
    sbuf tools = { 0 };
    int n = r->tool_choice == REQ_TOOLS_NONE ? 0 : r->n_tools;
    sb_puts(&tools, "[");
    for (int i = 0; i < n; i++) {
        if (i) sb_puts(&tools, ",");
        sb_puts(&tools, r->tools[i].json);
    }
    sb_puts(&tools, "]");
    if (tools.oom) { sb_free(&tools); return ar_fail(err, AR_ENOMEM, "out of memory"); }
    *out = ar_tc_create(tools.p, p->reasoning_open, err);
    sb_free(&tools);
    return *out ? 0 : (err->code ? err->code : AR_ENOMEM);
}

/* The tool-call constraint (toolchoice.h) for a generation of at most n_ctx - p->n tokens (and
 * max_tokens): tool_choice "required" / named make the model call a tool; "auto" (the default when
 * tools are given) leaves it free until it starts a call, which is then held to the format (a known
 * function, its schema's parameters, typed values). *out stays NULL for other requests, and when no
 * tool can be written in the format (the request then runs unconstrained; logged for required / named). */
static int make_constraint(const ar_model *m, const srv_request *r, const gen_prompt *p, int n_ctx, tchoice **out,
                           ar_error *err)
{
    *out = NULL;
    if (!m || r->script || r->kind != REQ_CHAT || r->n_tools == 0 || r->tool_choice == REQ_TOOLS_NONE) return 0;
    const bool lazy = r->tool_choice == REQ_TOOLS_AUTO;
    const tchoice_vocab *tv = tchoice_vocab_get(ar_model_vocab(m), err);
    if (!tv) return err->code ? err->code : AR_ENOMEM;
    const char **tools = malloc((size_t)r->n_tools * sizeof *tools);
    if (!tools) return ar_fail(err, AR_ENOMEM, "out of memory");
    for (int i = 0; i < r->n_tools; i++) tools[i] = r->tools[i].json;
    int budget = n_ctx > 0 ? n_ctx - p->n : 0;
    if (r->max_tokens > 0 && (budget <= 0 || r->max_tokens < budget)) budget = r->max_tokens;
    const tchoice_params tp = {
        .tools = tools, .n_tools = r->n_tools, .name = r->tool_choice == REQ_TOOLS_NAMED ? r->tool_choice_name : NULL,
        .reasoning_open = p->reasoning_open, .parallel = r->parallel_tool_calls, .budget = budget, .lazy = lazy,
    };
    ar_error e2 = { 0 };
    int rc = tchoice_create(out, tv, &tp, &e2);
    free(tools);
    if (rc == AR_EINVAL) {
        ar_log(lazy ? AR_LOG_DEBUG : AR_LOG_WARN, "%s: tool_choice is not enforced for this request", e2.msg);
        return 0;
    }
    if (rc) *err = e2;
    return rc;
}

/* The request's sampling parameters, with its tool_choice constraint (if any). */
static ar_sampler_params sampling_of(const gen_state *g)
{
    ar_sampler_params sp = g->r->sampling;
    if (g->tcons) {
        sp.constraint = &tchoice_ops;
        sp.constraint_user = g->tcons;
    }
    return sp;
}

int gen_run(const srv_request *r, const gen_prompt *p, const gen_sink *sink, gen_cancel_fn cancelled,
            void *cancel_user, gen_result *res, ar_error *err)
{
    *res = (gen_result){ .finish = GEN_FINISH_STOP, .n_prompt = p->n };
    if (!r->script) return ar_fail(err, AR_EINVAL, "gen_run: the request has no script");
    gen_state g = {
        .r = r, .sink = sink, .cancelled = cancelled, .cancel_user = cancel_user,
        .in_reasoning = r->kind == REQ_CHAT && p->reasoning_open,
    };
    int rc = 0;
    if (r->kind == REQ_CHAT && (rc = make_parser(r, p, &g.tc, err))) return rc;
    run_script(&g, res);
    if (g.tc_rc) {
        rc = ar_fail(err, AR_ENOMEM, "out of memory parsing the model's output");
    } else {
        res->n_tool_calls = g.tc ? ar_tc_n_calls(g.tc) : 0;
        if (res->finish == GEN_FINISH_STOP && res->n_tool_calls > 0) res->finish = GEN_FINISH_TOOL_CALLS;
        res->n_reasoning = g.n_reasoning;
        res->stop_word = g.stop_word;
    }
    sb_free(&g.stop_buf);
    ar_tc_free(g.tc);
    return rc;
}

/* ---- the scheduler ------------------------------------------------------------------------------ */

static void state_free(gen_state *g)
{
    tchoice_free(g->tcons);
    sb_free(&g->stop_buf);
    sb_free(&g->ans_content);
    sb_free(&g->ans_reasoning);
    ar_tc_free(g->tc);
    free(g->lp_text);
    free(g);
}

static bool sched_on_token(void *user, int32_t token, const char *piece, size_t len, const float *logits)
{
    return on_token_logits(user, token, piece, len, logits);
}

/* History fill. A chat template may render an answer differently once a later user message follows it
 * (Qwen3.5 drops the reasoning block of earlier turns), so the next turn's prompt diverges from the
 * cached context at the start of this answer and would re-evaluate all of it. When an answer ends
 * without tool calls (the next message is then the user's), its history form, the conversation up to
 * the end of this answer as the next turn renders it, is prefilled now as a prefill-only request
 * (ar_sched_request.fill) with a prefix-cache snapshot at its end: by the time the user (or agent)
 * sends the next message, only that message is left to evaluate; a next turn that comes before the fill
 * is done waits for it rather than evaluating the same tokens. Only when the scheduler has nothing else
 * to do, and only from a cached base (max_prefill). Best effort: nothing is reported. */
static void history_fill(gen_state *g, int n_gen)
{
    const srv_request *r = g->r;
    if (g->ans_content.oom || g->ans_reasoning.oom) return;
    /* idle time only: with other requests running or queued, the fill would take their slots and their
     * prefill budget (on a busy server the next turn evaluates the answer itself, as without a fill) */
    ar_sched_stats st;
    ar_sched_get_stats(g->sched, &st);
    if (st.n_queued > 0 || st.n_active > 1) return;
    req_msg *msgs = calloc((size_t)r->n_msgs + 2, sizeof *msgs);
    if (!msgs) return;
    memcpy(msgs, r->msgs, (size_t)r->n_msgs * sizeof *msgs);
    msgs[r->n_msgs] = (req_msg){ .role = "assistant", .content = g->ans_content.p ? g->ans_content.p : "",
                                 .reasoning = g->ans_reasoning.n ? g->ans_reasoning.p : NULL };
    msgs[r->n_msgs + 1] = (req_msg){ .role = "user", .content = "" };
    srv_request h = *r;
    h.msgs = msgs;
    h.n_msgs = r->n_msgs + 2;
    char *text = render_upto(&h, r->n_msgs + 1);   /* up to the start of the (empty) next user message */
    free(msgs);
    if (!text) return;
    int32_t *ids = NULL;
    size_t n = 0;
    ar_error err = { 0 };
    if (!ar_model_tokenize(g->m, text, strlen(text), true, &ids, &n, &err) && n > 0 && (int)n < g->p->n_ctx) {
        const int bound = (int)n;
        /* the answer re-rendered plus its frame; more means the base snapshot is gone: skip */
        const ar_sched_request q = { .prompt = ids, .n_prompt = (int)n, .n_predict = 0,
                                     .sampling = ar_sampler_defaults(), .boundaries = &bound, .n_boundaries = 1,
                                     .fill = true, .max_prefill = n_gen + 64 };
        if (ar_sched_submit(g->sched, &q, NULL, &err))
            ar_log(AR_LOG_DEBUG, "history fill not queued: %s", err.msg);
    }
    free(ids);
    free(text);
}

static void sched_on_done(void *user, const ar_sched_result *sr)
{
    gen_state *g = user;
    gen_result res = { .finish = GEN_FINISH_STOP, .n_prompt = g->p->n, .n_cached = sr->n_cached, .n_gen = sr->n_gen,
                       .queue_s = sr->queue_s, .prompt_s = sr->prompt_s, .gen_s = sr->gen_s,
                       .n_spec_steps = sr->n_spec_steps, .n_spec_tokens = sr->n_spec_tokens,
                       .n_spec_nodes = sr->n_spec_nodes };
    ar_error err = { 0 };
    int rc = sr->status;
    if (rc) {
        err = sr->err;
    } else {
        if (sr->cancelled) g->cancel_hit = true;
        if (!g->stop_hit && !g->cancel_hit) stop_feed(g, "", 0, true);
        if (g->cancel_hit) res.finish = GEN_FINISH_CANCELLED;
        else if (g->stop_hit || sr->stop == AR_STOP_EOG) res.finish = GEN_FINISH_STOP;
        else if (sr->stop == AR_STOP_LENGTH || sr->stop == AR_STOP_CONTEXT) res.finish = GEN_FINISH_LENGTH;
        if (g->tc_rc) {
            rc = ar_fail(&err, AR_ENOMEM, "out of memory parsing the model's output");
        } else {
            res.n_tool_calls = g->tc ? ar_tc_n_calls(g->tc) : 0;
            if (res.finish == GEN_FINISH_STOP && res.n_tool_calls > 0) res.finish = GEN_FINISH_TOOL_CALLS;
            res.n_reasoning = g->n_reasoning;
            res.stop_word = g->stop_word;
        }
    }
    if (!rc && g->fill && (res.finish == GEN_FINISH_STOP || res.finish == GEN_FINISH_LENGTH)) history_fill(g, res.n_gen);
    g->done(g->done_user, rc, &res, &err);
    state_free(g);
}

int gen_submit(ar_sched *sched, const ar_model *m, const gen_spec *spec, const srv_request *r, const gen_prompt *p,
               const gen_sink *sink, gen_cancel_fn cancelled, void *cancel_user, gen_done_fn done, void *done_user,
               uint64_t *id, ar_error *err)
{
    gen_state *g = calloc(1, sizeof *g);
    if (!g) return ar_fail(err, AR_ENOMEM, "out of memory");
    *g = (gen_state){
        .r = r, .sink_copy = *sink, .p = p, .done = done, .done_user = done_user, .cancelled = cancelled,
        .cancel_user = cancel_user, .in_reasoning = r->kind == REQ_CHAT && p->reasoning_open,
    };
    g->sink = &g->sink_copy;
    int rc = 0;
    if (r->kind == REQ_CHAT && (rc = make_parser(r, p, &g->tc, err))) { free(g); return rc; }
    if ((rc = make_constraint(m, r, p, p->n_ctx, &g->tcons, err))) { state_free(g); return rc; }
    ar_sched_request q = {
        .prompt = p->ids, .n_prompt = p->n, .n_predict = r->max_tokens > 0 ? r->max_tokens : -1,
        .sampling = sampling_of(g), .boundaries = p->bounds, .n_boundaries = p->n_bounds,
        .cache_final = r->kind == REQ_CHAT, .on_token = sched_on_token, .on_done = sched_on_done, .user = g,
    };
    g->m = m;   /* logprobs: the vocabulary, and the width of the logits rows */
    g->sched = sched;
    g->fill = spec && spec->fill && r->kind == REQ_CHAT && !r->script && m;
    if (r->logprobs) {
        g->lp_cap = ar_vocab_max_piece(ar_model_vocab(g->m)) + 1;
        if (!(g->lp_text = malloc((GEN_MAX_TOP_LOGPROBS + 1) * g->lp_cap))) {
            state_free(g);
            return ar_fail(err, AR_ENOMEM, "out of memory for logprobs");
        }
    }
    /* speculative decoding: a hook of its own per request (engine/spec_hook.h), any --parallel */
    ar_sched_spec *hook = NULL;
    if (spec && ar_model_has_draft(m) && spec->block != 1) {
        ar_spec_hook_params hp = ar_spec_hook_defaults();
        hp.budget = spec->budget;
        if ((rc = ar_spec_hook_dflash(&hook, m, p->n_ctx, spec->block, &hp, err))) { state_free(g); return rc; }
        q.spec = hook;
    }
    if ((rc = ar_sched_submit(sched, &q, id, err))) {
        ar_spec_hook_free(hook);
        state_free(g);
        return rc;
    }
    return 0;
}
