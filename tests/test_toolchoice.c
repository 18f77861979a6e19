/* tests/test_toolchoice.c — constrained decoding for tool_choice (server/toolchoice.c) and the
 * sampler's constraint hook it rides on (spec/sample.c).
 *
 * 1. The hook, with a toy constraint: arming (prompt tokens accepted before the first sample are not
 *    shown to the constraint), greedy / random / dist only ever yield allowed tokens, a single
 *    allowed token is forced, allowed tokens that are all -inf are drawn uniformly, reset and detach.
 * 2. The tool-call state machine on the Qwen3.5 vocabulary fixture (vocab-qwen35.gguf, 248K tokens):
 *    prefix forcing of "<tool_call>\n<function=", allowed names (required / named), schema parameters,
 *    end-of-generation masked in reasoning and values, "</function>" refused before the required
 *    parameters and inside values, parallel calls on / off, thinking left open by the prompt, the
 *    reasoning cut that keeps room for the call, reset; and the mask's cost per step.
 * 3. The sampler driven by random logits through the constraint, on the Qwen3.5 vocabulary and on the
 *    tiny-f32 fixture's 4096-token one (where "<tool_call>" is several tokens): the output, parsed by
 *    tok/toolcall.h, holds a call of an allowed tool with JSON arguments and ends as required.
 * 4. Under speculation (the bundled trained target and drafter): one session (chain, DDTree) and the
 *    scheduler with the DFlash hook emit, at temperature 0, exactly the tokens of plain decoding under
 *    the same constraint. */
#include "tests/test.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

#include "arbor.h"
#include "base/log.h"
#include "base/timer.h"
#include "engine/generate.h"
#include "engine/sched.h"
#include "engine/spec_hook.h"
#include "format/gguf.h"
#include "server/toolchoice.h"
#include "spec/sample.h"
#include "tok/toolcall.h"
#include "tok/vocab.h"

/* ---- 1. the sampler's hook ---------------------------------------------------------------------- */

typedef struct toy {
    int  mode;        /* 0: even ids only; 1: only `forced`; 2: every id (returns false) */
    int  forced;
    int  n_accepted;
    int  last;
    int  n_reset;
} toy;

static bool toy_allowed(void *user, uint32_t *mask, int32_t n_vocab)
{
    toy *t = user;
    if (t->mode == 2) return false;
    for (int32_t w = 0; w < (n_vocab + 31) / 32; w++) mask[w] = t->mode == 0 ? 0x55555555u : 0;
    if (t->mode == 1) mask[t->forced >> 5] |= 1u << (t->forced & 31);
    return true;
}

static void toy_accept(void *user, int32_t token)
{
    toy *t = user;
    t->n_accepted++;
    t->last = token;
}

static void toy_reset(void *user) { ((toy *)user)->n_reset++; }

static const ar_constraint_ops TOY = { toy_allowed, toy_accept, toy_reset };

static void test_hook(void)
{
    enum { NV = 100 };
    float logits[NV];
    for (int i = 0; i < NV; i++) logits[i] = (float)((i * 37) % 17) * 0.3f;
    logits[51] = 50.0f;   /* the unconstrained favourite is odd */
    toy t = { 0 };
    ar_sampler_params p = ar_sampler_defaults();
    p.temp = 0.0f;
    p.constraint = &TOY;
    p.constraint_user = &t;
    ar_sampler *s = NULL;
    ar_error err = { 0 };
    CHECK(ar_sampler_create(&s, &p, NV, &err) == 0, "create: %s", err.msg);
    if (!s) return;
    for (int i = 0; i < 5; i++) ar_sampler_accept(s, i);   /* a prompt: not shown to the constraint */
    CHECK(t.n_accepted == 0, "prompt tokens reached the constraint: %d", t.n_accepted);
    int32_t y = ar_sampler_sample(s, logits);
    CHECK(y % 2 == 0, "greedy picked a disallowed token %d", (int)y);
    ar_sampler_accept(s, y);
    CHECK(t.n_accepted == 1 && t.last == y, "accept after arming: %d %d", t.n_accepted, t.last);

    /* random draws: never an odd id, over many draws */
    ar_sampler_free(s);
    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 7;
    logits[51] = 2.0f;
    CHECK(ar_sampler_create(&s, &p, NV, &err) == 0, "create: %s", err.msg);
    if (!s) return;
    int odd = 0, distinct = 0;
    bool seen[NV] = { false };
    for (int i = 0; i < 2000; i++) {
        y = ar_sampler_sample(s, logits);
        ar_sampler_accept(s, y);
        odd += y % 2;
        if (!seen[y]) { seen[y] = true; distinct++; }
    }
    CHECK(odd == 0 && distinct > 20, "random draws: %d odd, %d distinct", odd, distinct);
    int32_t ids[NV];
    float probs[NV];
    int n = ar_sampler_dist(s, logits, ids, probs, NV);
    bool dist_ok = n == NV / 2;
    for (int i = 0; i < n && i < NV; i++) dist_ok &= ids[i] % 2 == 0;
    CHECK(dist_ok, "dist: support %d, all even", n);

    /* one allowed token: forced, with top-k / top-p / min-p on */
    t.mode = 1;
    t.forced = 3;
    ar_sampler_free(s);
    p = ar_sampler_defaults();
    p.seed = 1;
    p.constraint = &TOY;
    p.constraint_user = &t;
    CHECK(ar_sampler_create(&s, &p, NV, &err) == 0, "create: %s", err.msg);
    if (!s) return;
    bool forced = true;
    for (int i = 0; i < 50; i++) forced &= ar_sampler_sample(s, logits) == 3;
    CHECK(forced, "a single allowed token is forced");
    /* every allowed token at -inf: still an allowed one */
    float neg[NV];
    for (int i = 0; i < NV; i++) neg[i] = i == 10 ? 5.0f : -INFINITY;
    t.mode = 0;
    y = ar_sampler_sample(s, neg);
    CHECK(y % 2 == 0, "allowed tokens all -inf: drew %d", (int)y);
    p.temp = 0.0f;
    ar_sampler_free(s);
    CHECK(ar_sampler_create(&s, &p, NV, &err) == 0, "create: %s", err.msg);
    if (!s) return;
    neg[10] = -INFINITY;
    neg[11] = 3.0f;
    y = ar_sampler_sample(s, neg);
    CHECK(y % 2 == 0, "greedy, allowed tokens all -inf: %d", (int)y);

    /* reset: the constraint is reset and disarmed (prompt accepts are hidden again) */
    int before = t.n_accepted, resets = t.n_reset;
    ar_sampler_reset(s);
    ar_sampler_accept(s, 4);
    CHECK(t.n_reset == resets + 1 && t.n_accepted == before, "reset: %d resets, %d accepts", t.n_reset - resets,
          t.n_accepted - before);
    /* returning false: no restriction */
    t.mode = 2;
    logits[51] = 50.0f;
    CHECK(ar_sampler_sample(s, logits) == 51, "a constraint that allows everything");
    /* detach */
    t.mode = 0;
    ar_sampler_set_constraint(s, NULL, NULL);
    CHECK(ar_sampler_sample(s, logits) == 51, "detached");
    ar_sampler_set_constraint(s, &TOY, &t);
    CHECK(ar_sampler_sample(s, logits) != 51, "attached again");
    ar_sampler_free(s);
}

/* ---- helpers over a vocabulary ------------------------------------------------------------------ */

static const char *WEATHER =
    "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"w\", \"parameters\": "
    "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}, \"days\": {\"type\": \"integer\"}}, "
    "\"required\": [\"city\"]}}}";
static const char *PING =
    "{\"type\": \"function\", \"function\": {\"name\": \"ping\", \"parameters\": {\"type\": \"object\", \"properties\": {}}}}";
static const char *GET_TIME = "{\"name\": \"get_time\", \"input_schema\": {\"type\": \"object\"}}";   /* no properties */
static const char *BAD = "{\"type\": \"function\", \"function\": {\"name\": \"a<b\"}}";
static const char *TYPED =
    "{\"type\": \"function\", \"function\": {\"name\": \"edit\", \"parameters\": {\"type\": \"object\", "
    "\"properties\": {\"line\": {\"type\": \"integer\"}, \"scale\": {\"type\": \"number\"}, "
    "\"dry\": {\"type\": \"boolean\"}, \"mode\": {\"enum\": [\"add\", \"addall\", \"del\", \"add\"]}, "
    "\"text\": {\"type\": \"string\"}, \"any\": {\"type\": [\"integer\", \"null\"]}}}}}";

typedef struct vfix {
    const char *label;
    ar_vocab *v;
    const tchoice_vocab *tv;
    uint32_t *mask;
    int32_t n;
} vfix;

static bool load_vocab(vfix *f, const char *file, const char *label)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", test_fixtures(), file);
    gguf_file *g = NULL;
    ar_error err = { 0 };
    *f = (vfix){ .label = label };
    if (gguf_open(&g, path, &err) || ar_vocab_load(&f->v, g, &err)) {
        CHECK(0, "fixture %s: %s (run scripts/fixtures.sh)", path, err.msg);
        gguf_close(g);
        return false;
    }
    gguf_close(g);
    f->n = ar_vocab_size(f->v);
    f->mask = calloc(((size_t)f->n + 31) / 32, sizeof *f->mask);
    f->tv = tchoice_vocab_get(f->v, &err);
    CHECK(f->tv != NULL, "%s: tables: %s", label, err.msg);
    return f->tv && f->mask;
}

static void free_vocab(vfix *f)
{
    ar_vocab_free(f->v);
    free(f->mask);
}

static tchoice *make_p(const vfix *f, const char *const *tools, int n_tools, const char *name, bool think,
                       bool parallel, int budget, bool lazy)
{
    tchoice_params p = { .tools = tools, .n_tools = n_tools, .name = name, .reasoning_open = think,
                         .parallel = parallel, .budget = budget, .lazy = lazy };
    tchoice *c = NULL;
    ar_error err = { 0 };
    CHECK(tchoice_create(&c, f->tv, &p, &err) == 0, "%s: tchoice_create: %s", f->label, err.msg);
    return c;
}

static tchoice *make(const vfix *f, const char *const *tools, int n_tools, const char *name, bool think, bool parallel,
                     int budget)
{
    return make_p(f, tools, n_tools, name, think, parallel, budget, false);
}

static bool allowed(vfix *f, tchoice *c, int32_t id)
{
    if (!tchoice_ops.allowed(c, f->mask, f->n)) return true;
    return f->mask[id >> 5] >> (id & 31) & 1u;
}

static int n_allowed(vfix *f, tchoice *c)
{
    if (!tchoice_ops.allowed(c, f->mask, f->n)) return f->n;
    int k = 0;
    for (int32_t i = 0; i < f->n; i++) k += f->mask[i >> 5] >> (i & 31) & 1u;
    return k;
}

/* Feed text as the model would write it (its tokenization); each token must be allowed. Returns the
 * number of tokens refused (the first refused one is not accepted and stops the feed). */
static int feed(vfix *f, tchoice *c, const char *text)
{
    int32_t *ids = NULL;
    size_t n = 0;
    ar_error err = { 0 };
    if (ar_tokenize(f->v, text, strlen(text), false, &ids, &n, &err)) return -1;
    int refused = 0;
    for (size_t i = 0; i < n; i++) {
        if (!allowed(f, c, ids[i])) { refused = 1; break; }
        tchoice_ops.accept(c, ids[i]);
    }
    free(ids);
    return refused;
}

/* The one token that text is in this vocabulary (-1 when it is several). */
static int32_t tok1(vfix *f, const char *text)
{
    int32_t *ids = NULL;
    size_t n = 0;
    ar_error err = { 0 };
    if (ar_tokenize(f->v, text, strlen(text), false, &ids, &n, &err)) return -1;
    int32_t id = n == 1 ? ids[0] : -1;
    free(ids);
    return id;
}

static int32_t eog_token(vfix *f)
{
    int32_t e = ar_token_find(f->v, "<|im_end|>");
    return e >= 0 ? e : ar_vocab_eos(f->v);
}

/* Only end-of-generation tokens are allowed. */
static bool only_eog(vfix *f, tchoice *c)
{
    if (!tchoice_ops.allowed(c, f->mask, f->n)) return false;
    int k = 0;
    for (int32_t i = 0; i < f->n; i++)
        if (f->mask[i >> 5] >> (i & 31) & 1u) {
            if (!ar_token_is_eog(f->v, i)) return false;
            k++;
        }
    return k > 0;
}

/* ---- 2. the state machine ----------------------------------------------------------------------- */

static void test_machine(vfix *f)
{
    const char *tools[] = { WEATHER, PING, GET_TIME };
    const int32_t eog = eog_token(f);
    CHECK(eog >= 0 && ar_token_is_eog(f->v, eog), "%s: an end-of-generation token", f->label);

    /* required, thinking off, parallel off: a whole call, then only the end */
    tchoice *c = make(f, tools, 3, NULL, false, false, 0);
    if (!c) return;
    CHECK(!strcmp(tchoice_state(c), "pre"), "state %s", tchoice_state(c));
    CHECK(!allowed(f, c, eog), "%s: end of generation before the call", f->label);
    int32_t hello = tok1(f, "a"), tc = tok1(f, "<tool_call>"), lt = tok1(f, "<"), nl = tok1(f, "\n");
    CHECK(hello >= 0 && !allowed(f, c, hello), "%s: text before the call", f->label);
    CHECK(lt >= 0 && allowed(f, c, lt), "%s: '<' starts the call", f->label);
    CHECK(nl >= 0 && allowed(f, c, nl), "%s: a newline first", f->label);
    if (tc >= 0) CHECK(allowed(f, c, tc), "%s: the <tool_call> token", f->label);
    int k = n_allowed(f, c);
    CHECK(k > 1 && k < 2000, "%s: %d tokens allowed at the start of a call", f->label, k);
    CHECK(feed(f, c, "<tool_call>\n<function=") == 0, "%s: the call's head", f->label);
    CHECK(!strcmp(tchoice_state(c), "name"), "state %s", tchoice_state(c));
    int32_t get = tok1(f, "get"), foo = tok1(f, "foo");
    CHECK(get < 0 || allowed(f, c, get), "%s: 'get' starts two names", f->label);
    CHECK(foo < 0 || !allowed(f, c, foo), "%s: 'foo' starts no name", f->label);
    CHECK(feed(f, c, "get_weather>\n") == 0 && !strcmp(tchoice_state(c), "body"), "%s: name, state %s", f->label,
          tchoice_state(c));
    /* the required city first: "</function>" refused, an unknown parameter refused */
    {
        tchoice *d = make(f, tools, 3, NULL, false, false, 0);
        CHECK(feed(f, d, "<tool_call>\n<function=get_weather>\n</function>") == 1, "%s: </function> before city", f->label);
        tchoice_free(d);
        d = make(f, tools, 3, NULL, false, false, 0);
        CHECK(feed(f, d, "<tool_call>\n<function=get_weather>\n<parameter=country>") == 1, "%s: unknown parameter",
              f->label);
        tchoice_free(d);
    }
    CHECK(feed(f, c, "<parameter=days>\n3\n</parameter>\n") == 0, "%s: an optional parameter first", f->label);
    CHECK(feed(f, c, "<parameter=city>\n") == 0 && !strcmp(tchoice_state(c), "value"), "%s: city, state %s", f->label,
          tchoice_state(c));
    CHECK(!allowed(f, c, eog), "%s: end of generation inside a value", f->label);
    CHECK(feed(f, c, "Paris <b>x</b> a<c") == 0, "%s: '<' inside a value", f->label);
    {   /* "</function>" / "</tool_call>" inside a value: refused */
        tchoice *d = make(f, tools, 3, NULL, false, false, 0);
        CHECK(feed(f, d, "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis</function>") == 1,
              "%s: </function> ends no value", f->label);
        tchoice_free(d);
    }
    CHECK(feed(f, c, "\n</parameter>\n") == 0, "%s: end of value", f->label);
    {
        tchoice *d = make(f, tools, 3, NULL, false, false, 0);
        CHECK(feed(f, d, "<tool_call>\n<function=get_weather>\n<parameter=city>\nA\n</parameter>\n<parameter=city>") == 1,
              "%s: a parameter given twice", f->label);
        tchoice_free(d);
    }
    CHECK(feed(f, c, "</function>\n</tool_call>") == 0, "%s: the call's end", f->label);
    CHECK(tchoice_n_calls(c) == 1 && !strcmp(tchoice_state(c), "done"), "%s: %d calls, state %s", f->label,
          tchoice_n_calls(c), tchoice_state(c));
    CHECK(only_eog(f, c), "%s: parallel calls off: only the end of generation", f->label);
    tchoice_ops.accept(c, eog);
    tchoice_ops.reset(c);
    CHECK(!strcmp(tchoice_state(c), "pre") && tchoice_n_calls(c) == 0, "%s: reset: %s", f->label, tchoice_state(c));
    tchoice_free(c);

    /* named: only that function */
    c = make(f, tools, 3, "ping", false, true, 0);
    if (c) {
        CHECK(feed(f, c, "<tool_call>\n<function=get_weather>") == 1, "%s: named: another function", f->label);
        tchoice_free(c);
    }
    c = make(f, tools, 3, "ping", false, true, 0);
    if (c) {
        CHECK(feed(f, c, "\n\n<tool_call>\n<function=ping>\n</function>\n</tool_call>") == 0, "%s: named: ping", f->label);
        /* parallel on: the end, or another call after whitespace; no text */
        CHECK(allowed(f, c, eog), "%s: parallel: the end may come", f->label);
        CHECK(hello < 0 || !allowed(f, c, hello), "%s: parallel: no text after a call", f->label);
        CHECK(feed(f, c, "\n<tool_call>\n<function=ping>\n</function>\n</tool_call>") == 0 && tchoice_n_calls(c) == 2,
              "%s: a second call: %d", f->label, tchoice_n_calls(c));
        CHECK(feed(f, c, "\n\n\n\n\n\n") == 1, "%s: whitespace is bounded", f->label);
        tchoice_free(c);
    }
    /* a schema without properties: any parameter name */
    c = make(f, tools, 3, "get_time", false, false, 0);
    if (c) {
        CHECK(feed(f, c, "<tool_call>\n<function=get_time>\n<parameter=zone>\nUTC\n</parameter>\n</function>\n</tool_call>") == 0,
              "%s: free parameter names", f->label);
        CHECK(only_eog(f, c), "%s: then the end", f->label);
        tchoice_free(c);
    }
    /* a name the format cannot hold */
    {
        const char *bad[] = { BAD };
        tchoice_params p = { .tools = bad, .n_tools = 1 };
        tchoice *d = NULL;
        ar_error err = { 0 };
        CHECK(tchoice_create(&d, f->tv, &p, &err) == AR_EINVAL && !d, "%s: unwritable name: %s", f->label, err.msg);
        p.tools = (const char *[]){ "not json" };
        CHECK(tchoice_create(&d, f->tv, &p, &err) == AR_EINVAL && !d, "%s: not JSON: %s", f->label, err.msg);
    }

    /* thinking left open: free text without the end, then the call */
    c = make(f, tools, 3, NULL, true, false, 0);
    if (c) {
        CHECK(!strcmp(tchoice_state(c), "think") && !allowed(f, c, eog), "%s: think: no end", f->label);
        CHECK(hello >= 0 && allowed(f, c, hello), "%s: think: text", f->label);
        CHECK(feed(f, c, "The user wants <b>weather</b>; use </thin the tool.") == 0, "%s: reasoning", f->label);
        CHECK(feed(f, c, "\n</think>\n\n") == 0 && !strcmp(tchoice_state(c), "pre"), "%s: end of reasoning: %s", f->label,
              tchoice_state(c));
        CHECK(hello < 0 || !allowed(f, c, hello), "%s: no content after reasoning", f->label);
        tchoice_free(c);
    }
    /* "<tool_call>" inside reasoning ends it, as the parser does */
    c = make(f, tools, 3, NULL, true, false, 0);
    if (c) {
        CHECK(feed(f, c, "hmm <tool_call>\n<function=ping>") == 0 && !strcmp(tchoice_state(c), "body"),
              "%s: a call from reasoning: %s", f->label, tchoice_state(c));
        tchoice_free(c);
    }
    /* the reasoning budget: with 100 tokens and a reserve of 64, reasoning is closed after 36 */
    c = make(f, tools, 3, NULL, true, false, 100);
    if (c) {
        int32_t word = tok1(f, "a");
        int i = 0;
        while (i < 100 && allowed(f, c, word)) { tchoice_ops.accept(c, word); i++; }
        CHECK(i == 36, "%s: reasoning cut after %d tokens", f->label, i);
        CHECK(!strcmp(tchoice_state(c), "endthink"), "%s: state %s", f->label, tchoice_state(c));
        CHECK(feed(f, c, "\n</think>\n\n<tool_call>\n<function=ping>\n</function>\n</tool_call>") == 0 && only_eog(f, c),
              "%s: the call after the cut", f->label);
        tchoice_free(c);
    }
}

/* Cost of one mask per state on this vocabulary. */
static void test_cost(vfix *f)
{
    const char *tools[] = { WEATHER, PING, GET_TIME };
    static const struct { const char *label, *prefix; bool think; } at[] = {
        { "think", "", true },
        { "pre", "", false },
        { "name", "<tool_call>\n<function=", false },
        { "value", "<tool_call>\n<function=get_weather>\n<parameter=city>\nPa", false },
    };
    const int reps = test_sanitized() ? 2 : 20;
    char line[256];
    int o = snprintf(line, sizeof line, "%s: mask ms per step:", f->label);
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        tchoice *c = make(f, tools, 3, NULL, at[i].think, false, 0);
        if (!c) return;
        feed(f, c, at[i].prefix);
        double t0 = ar_now();
        for (int r = 0; r < reps; r++) tchoice_ops.allowed(c, f->mask, f->n);
        double ms = (ar_now() - t0) * 1e3 / reps;
        o += snprintf(line + o, sizeof line - (size_t)o, " %s %.3f", at[i].label, ms);
        CHECK(test_sanitized() || ms < 20.0, "%s: mask in state %s takes %.2f ms", f->label, at[i].label, ms);
        tchoice_free(c);
    }
    double t0 = ar_now();
    ar_error err = { 0 };
    const tchoice_vocab *again = tchoice_vocab_get(f->v, &err);
    double lookup = (ar_now() - t0) * 1e3;
    CHECK(again == f->tv, "%s: the tables are cached", f->label);
    printf("%s; tables lookup (per request) %.3f ms\n", line, lookup);
}

/* Typed values: a property whose schema type is integer / number / boolean, or a string enum, can only
 * be written as such (JSON number grammar with bounded digits, true / false, one of the enum values in
 * the template's "\nVALUE\n</parameter>" form); strings and unions stay free text. */
static void test_typed(vfix *f)
{
    const char *tools[] = { TYPED };
    static const struct { const char *text; int refused; const char *state; } cases[] = {
        { "<parameter=line>\n42\n</parameter>\n", 0, "body" },
        { "<parameter=line>\n-7</parameter>", 0, "body" },
        { "<parameter=line>\nforty", 1, NULL },
        { "<parameter=line>\n4.5", 1, NULL },            /* an integer has no fraction */
        { "<parameter=line>\n042", 1, NULL },            /* no leading zeros in JSON */
        { "<parameter=line>\n\n</parameter>", 1, NULL }, /* an empty number */
        { "<parameter=line>\n1234567890123456", 1, NULL },   /* 16 digits: over the bound */
        { "<parameter=line>\n123456789012345\n", 0, "endparam" },
        { "<parameter=scale>\n-0.25e+3\n</parameter>", 0, "body" },
        { "<parameter=scale>\n1.", 0, "number" },
        { "<parameter=scale>\n1.\n", 1, NULL },          /* "1." is not a number */
        { "<parameter=scale>\n2E", 0, "number" },
        { "<parameter=dry>\ntrue\n</parameter>", 0, "body" },
        { "<parameter=dry>\nfalse</parameter>", 0, "body" },
        { "<parameter=dry>\nTrue", 1, NULL },
        { "<parameter=dry>\nyes", 1, NULL },
        { "<parameter=mode>\nadd\n</parameter>", 0, "body" },
        { "<parameter=mode>\naddall\n</parameter>", 0, "body" },
        { "<parameter=mode>\nadd", 0, "enum" },
        { "<parameter=mode>\nadds", 1, NULL },
        { "<parameter=mode>\nmul", 1, NULL },
        { "<parameter=text>\n42 or anything <b>\n</parameter>", 0, "body" },
        { "<parameter=any>\nnull\n</parameter>", 0, "body" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tchoice *c = make(f, tools, 1, NULL, false, false, 0);
        if (!c) return;
        CHECK(feed(f, c, "<tool_call>\n<function=edit>\n") == 0, "%s: typed: the head", f->label);
        const int refused = feed(f, c, cases[i].text);
        CHECK(refused == cases[i].refused && (!cases[i].state || !strcmp(tchoice_state(c), cases[i].state)),
              "%s: typed %zu: refused %d (want %d), state %s (want %s)", f->label, i, refused, cases[i].refused,
              tchoice_state(c), cases[i].state ? cases[i].state : "-");
        tchoice_free(c);
    }
    /* in a number only digits (and the grammar's signs / dots / exponents) may come */
    tchoice *c = make(f, tools, 1, NULL, false, false, 0);
    if (!c) return;
    feed(f, c, "<tool_call>\n<function=edit>\n<parameter=line>\n12");
    int32_t d5 = tok1(f, "5"), a = tok1(f, "a"), nl = tok1(f, "\n"), lt = tok1(f, "<");
    CHECK(d5 >= 0 && allowed(f, c, d5) && a >= 0 && !allowed(f, c, a) && nl >= 0 && allowed(f, c, nl) && lt >= 0 &&
              allowed(f, c, lt) && !allowed(f, c, eog_token(f)),
          "%s: typed: the mask inside an integer", f->label);
    tchoice_free(c);
}

/* Lazy (tool_choice auto): text and the end are free, and cost nothing (no mask) outside a tag; a call
 * the model starts is held to the format; after it, parallel off, only the end. */
static void test_lazy(vfix *f)
{
    const char *tools[] = { WEATHER, PING, TYPED };
    const int32_t eog = eog_token(f);
    for (int think = 0; think < 2; think++) {
        tchoice *c = make_p(f, tools, 3, NULL, think, false, 64, true);
        if (!c) return;
        CHECK(!strcmp(tchoice_state(c), think ? "think" : "text"), "%s: lazy starts in %s", f->label, tchoice_state(c));
        CHECK(!tchoice_ops.allowed(c, f->mask, f->n), "%s: lazy: no mask in free text", f->label);
        if (think) CHECK(feed(f, c, "Let me see.\n</think>\n\n") == 0 && !strcmp(tchoice_state(c), "text"),
                         "%s: lazy: reasoning ends in text (%s)", f->label, tchoice_state(c));
        CHECK(feed(f, c, "The answer is 4 <b>bold</b> a<c.") == 0 && allowed(f, c, eog), "%s: lazy: free text, the end",
              f->label);
        /* a partial tag: the mask is computed, the end still allowed, the tag may be left */
        CHECK(feed(f, c, "<tool") == 0 && tchoice_ops.allowed(c, f->mask, f->n) && allowed(f, c, eog),
              "%s: lazy: after a partial tag", f->label);
        CHECK(feed(f, c, "box> ok ") == 0 && !strcmp(tchoice_state(c), "text"), "%s: lazy: a tag left (%s)", f->label,
              tchoice_state(c));
        CHECK(feed(f, c, "<tool_call>\n<function=") == 0 && !strcmp(tchoice_state(c), "name"), "%s: lazy: a call (%s)",
              f->label, tchoice_state(c));
        tchoice *d = make_p(f, tools, 3, NULL, think, false, 64, true);
        CHECK(feed(f, d, think ? "x</think>\n<tool_call>\n<function=get_wind>" : "<tool_call>\n<function=get_wind>") == 1,
              "%s: lazy: an unknown function refused", f->label);
        tchoice_free(d);
        CHECK(feed(f, c, "edit>\n<parameter=line>\n") == 0 && !allowed(f, c, tok1(f, "x")) && !allowed(f, c, eog),
              "%s: lazy: typed inside the call", f->label);
        CHECK(feed(f, c, "9\n</parameter>\n</function>\n</tool_call>") == 0 && only_eog(f, c),
              "%s: lazy: after the call, the end (%s)", f->label, tchoice_state(c));
        tchoice_ops.reset(c);
        CHECK(!strcmp(tchoice_state(c), think ? "think" : "text"), "%s: lazy: reset", f->label);
        tchoice_free(c);
    }
    /* a named tool is never lazy */
    tchoice *c = make_p(f, tools, 3, "ping", false, false, 64, true);
    if (c) CHECK(!strcmp(tchoice_state(c), "pre"), "%s: named + lazy is required (%s)", f->label, tchoice_state(c));
    tchoice_free(c);
}

/* ---- 3. random logits through the sampler ------------------------------------------------------- */

typedef struct calls {
    int  n;
    char name[4][64];
    char args[4][512];
    int  len[4];
} calls;

static int on_event(void *ctx, const ar_tc_event *ev)
{
    calls *c = ctx;
    if (ev->call_index < 0 || ev->call_index >= 4) return 0;
    if (ev->kind == AR_TC_CALL_START) {
        c->n = ev->call_index + 1;
        snprintf(c->name[ev->call_index], 64, "%s", ev->name);
    } else if (ev->kind == AR_TC_CALL_ARGS) {
        int *l = &c->len[ev->call_index];
        size_t k = ev->len < (size_t)(511 - *l) ? ev->len : (size_t)(511 - *l);
        memcpy(c->args[ev->call_index] + *l, ev->data, k);
        *l += (int)k;
        c->args[ev->call_index][*l] = 0;
    }
    return 0;
}

static uint64_t rng_state = 88172645463325252ull;
static float rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)(rng_state >> 40) / (float)(1 << 24);
}

/* Generate with random logits (a model that never writes a call by itself) through an ar_sampler
 * carrying the constraint; returns the number of tokens, *eog when it ended by itself. */
static int run_random(vfix *f, tchoice *c, float temp, int budget, const char *tools_json, bool think, calls *out,
                      bool *eog)
{
    ar_sampler_params p = ar_sampler_defaults();
    p.temp = temp;
    p.seed = 5;
    p.constraint = &tchoice_ops;
    p.constraint_user = c;
    ar_sampler *s = NULL;
    ar_error err = { 0 };
    if (ar_sampler_create(&s, &p, f->n, &err)) { CHECK(0, "sampler: %s", err.msg); return 0; }
    float *logits = malloc((size_t)f->n * sizeof *logits);
    char piece[512];
    size_t cap = sizeof piece;
    ar_toolcall_parser *tp = ar_tc_create(tools_json, think, &err);
    *out = (calls){ 0 };
    *eog = false;
    for (int i = 0; i < 20; i++) ar_sampler_accept(s, i);   /* "prompt" */
    int n = 0;
    for (; n < budget && logits && tp; n++) {
        for (int32_t i = 0; i < f->n; i++) logits[i] = rnd() * 8.0f;
        int32_t y = ar_sampler_sample(s, logits);
        ar_sampler_accept(s, y);
        if (ar_token_is_eog(f->v, y)) { *eog = true; n++; break; }
        size_t len = ar_token_to_bytes(f->v, y, false, piece, cap);
        ar_tc_feed(tp, piece, len < cap ? len : cap, on_event, out);
    }
    if (tp) ar_tc_finish(tp, on_event, out);
    ar_tc_free(tp);
    free(logits);
    ar_sampler_free(s);
    return n;
}

static void test_random(vfix *f)
{
    const char *tools[] = { WEATHER, PING, GET_TIME };
    const char *all = "[" "%s, %s, %s" "]";
    char tools_json[2048];
    snprintf(tools_json, sizeof tools_json, all, WEATHER, PING, GET_TIME);
    const bool small = test_sanitized();
    calls cl;
    bool eog;

    /* named, parameterless, parallel off: the call is forced whole, then the end */
    for (int think = 0; think < 2; think++)
        for (int hot = 0; hot < 2; hot++) {
            tchoice *c = make(f, tools, 3, "ping", think, false, 120);
            if (!c) return;
            int n = run_random(f, c, hot ? 1.0f : 0.0f, 120, tools_json, think, &cl, &eog);
            CHECK(eog && cl.n == 1 && !strcmp(cl.name[0], "ping") && !strcmp(cl.args[0], "{}"),
                  "%s: random %s%s named ping: %d tokens, eog %d, %d calls (%s %s)", f->label, hot ? "hot" : "greedy",
                  think ? " thinking" : "", n, eog, cl.n, cl.name[0], cl.args[0]);
            tchoice_free(c);
        }
    /* required over every tool: a call of one of them, arguments one JSON object (a value of random
     * text may run to the budget: then the call is cut, as max_tokens would cut it) */
    int rounds = small ? 2 : 6;
    for (int r = 0; r < rounds; r++) {
        tchoice *c = make(f, tools, 3, NULL, r & 1, r % 3 == 0, 60);
        if (!c) return;
        int n = run_random(f, c, 1.0f, 60, tools_json, r & 1, &cl, &eog);
        bool names = cl.n >= 1;
        for (int i = 0; i < cl.n && i < 4; i++) {
            names &= !strcmp(cl.name[i], "get_weather") || !strcmp(cl.name[i], "ping") || !strcmp(cl.name[i], "get_time");
            json_error_t je;
            json_t *j = json_loads(cl.args[i], 0, &je);
            names &= json_is_object(j);
            json_decref(j);
        }
        CHECK(names, "%s: random required round %d: %d tokens, %d calls, first %s %s", f->label, r, n, cl.n,
              cl.name[0], cl.args[0]);
        tchoice_free(c);
    }
}

/* ---- 4. under speculation ----------------------------------------------------------------------- *
 * The bundled trained pair (models/arbor-tiny-target.gguf + arbor-tiny-dflash.gguf): the constraint rides
 * on the sampler, which the chain and DDTree walks call once per emitted token, so at temperature 0
 * speculative decoding (one session: chain, tree; the scheduler with the DFlash hook: chain, tree) emits
 * exactly the tokens of plain decoding under the same constraint. */

typedef struct gen_out {
    int32_t ids[256];
    int     n;
    bool    done;
} gen_out;

static bool on_gen(void *user, int32_t token, const char *piece, size_t len)
{
    (void)piece;
    (void)len;
    gen_out *o = user;
    if (token >= 0 && o->n < 256) o->ids[o->n++] = token;
    return false;
}

static bool on_sched_tok(void *user, int32_t token, const char *piece, size_t len, const float *logits)
{
    (void)logits;
    return on_gen(user, token, piece, len);
}

static void on_sched_done(void *user, const ar_sched_result *res)
{
    gen_out *o = user;
    o->done = res->status == 0;
}

static void test_speculative(void)
{
    ar_error err = { 0 };
    ar_model_params mp = ar_model_defaults();
    mp.prefault = false;
    mp.n_threads = 1;
    ar_model *m = NULL;
    int rc = ar_model_load(&m, "models/arbor-tiny-target.gguf", &mp, &err);
    if (!rc) rc = ar_model_load_draft(m, "models/arbor-tiny-dflash.gguf", &err);
    CHECK(rc == 0, "the bundled pair models/arbor-tiny-target.gguf + arbor-tiny-dflash.gguf (run from the repository "
          "root): %s", err.msg);
    if (rc) { ar_model_free(m); return; }
    const char *tools[] = { WEATHER, PING, GET_TIME };
    ar_chat_msg msgs[] = { { .role = "user", .content = "What is the weather in Paris?" } };
    char *prompt = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    rc = ar_chat_render_tools(msgs, 1, tools, 3, true, true, &prompt, &err);
    if (!rc) rc = ar_model_tokenize(m, prompt, strlen(prompt), true, &ids, &n_ids, &err);
    CHECK(rc == 0, "prompt: %s", err.msg);
    const tchoice_vocab *tv = rc ? NULL : tchoice_vocab_get(ar_model_vocab(m), &err);
    const int n_predict = test_sanitized() ? 96 : 160;
    static const struct { const char *name; int block, budget; bool sched; } modes[] = {
        { "plain", 1, 0, false }, { "chain", 0, 0, false }, { "tree-8", 0, 8, false },
        { "sched plain", 1, 0, true }, { "sched chain", 0, 0, true }, { "sched tree-8", 0, 8, true },
    };
    gen_out ref = { 0 };
    for (size_t k = 0; tv && k < sizeof modes / sizeof modes[0]; k++) {
        tchoice_params tp = { .tools = tools, .n_tools = 3, .reasoning_open = true, .parallel = false, .budget = n_predict };
        tchoice *c = NULL;
        if (tchoice_create(&c, tv, &tp, &err)) { CHECK(0, "tchoice_create: %s", err.msg); break; }
        ar_sampler_params smp = ar_sampler_defaults();
        smp.temp = 0.0f;
        smp.constraint = &tchoice_ops;
        smp.constraint_user = c;
        gen_out o = { 0 };
        ar_gen_stats st = { 0 };
        int steps = 0;
        if (!modes[k].sched) {
            ar_session_params sp = ar_session_defaults();
            sp.sampling = smp;
            sp.n_ctx = 2048;
            sp.draft_block = modes[k].block;
            sp.draft_budget = modes[k].budget;
            ar_session *s = NULL;
            rc = ar_session_create(&s, m, &sp, &err);
            if (!rc) rc = ar_generate(s, ids, (int)n_ids, n_predict, on_gen, &o, &st, &err);
            ar_session_free(s);
            steps = st.n_steps;
            o.done = rc == 0;
        } else {
            ar_sched_params p = ar_sched_defaults();
            p.n_parallel = 1;
            p.n_ctx = 2048;
            ar_sched *s = NULL;
            rc = ar_sched_create(&s, m, &p, &err);
            ar_sched_request q = { .prompt = ids, .n_prompt = (int)n_ids, .n_predict = n_predict, .sampling = smp,
                                   .on_token = on_sched_tok, .on_done = on_sched_done, .user = &o };
            ar_spec_hook_params hp = ar_spec_hook_defaults();
            hp.budget = modes[k].budget;
            if (!rc && modes[k].block != 1) rc = ar_spec_hook_dflash(&q.spec, m, p.n_ctx, 0, &hp, &err);
            if (!rc) rc = ar_sched_submit(s, &q, NULL, &err);
            while (!rc && ar_sched_step(s) > 0) steps++;
            ar_sched_free(s);
            if (modes[k].block == 1) steps = 0;
        }
        CHECK(rc == 0 && o.done, "%s: %s", modes[k].name, err.msg);
        /* the text: a call of one of the tools, then the end */
        char text[8192];
        size_t len = 0;
        for (int i = 0; i < o.n; i++) {
            size_t w = ar_token_to_bytes(ar_model_vocab(m), o.ids[i], false, text + len, sizeof text - len - 1);
            len += w < sizeof text - len - 1 ? w : sizeof text - len - 1;
        }
        text[len] = 0;
        calls cl = { 0 };
        ar_toolcall_parser *tp2 = ar_tc_create("[" "{\"name\": \"get_weather\"}, {\"name\": \"ping\"}, {\"name\": \"get_time\"}" "]",
                                               true, &err);
        if (tp2) {
            ar_tc_feed(tp2, text, len, on_event, &cl);
            ar_tc_finish(tp2, on_event, &cl);
        }
        ar_tc_free(tp2);
        const bool ended = o.n > 0 && ar_model_token_is_eog(m, o.ids[o.n - 1]);
        if (k == 0) {
            ref = o;
            printf("speculative: plain answer under the constraint (%d tokens): %.300s\n", o.n, text);
            CHECK(cl.n == 1 && (ended || o.n == n_predict), "plain: %d calls, ended %d", cl.n, ended);
        } else {
            int d = 0;
            while (d < o.n && d < ref.n && o.ids[d] == ref.ids[d]) d++;
            CHECK(o.n == ref.n && d == o.n, "%s: differs from plain decoding at token %d of %d/%d", modes[k].name, d, o.n,
                  ref.n);
            CHECK(modes[k].block == 1 || steps > 0, "%s: no speculative step ran", modes[k].name);
        }
        tchoice_free(c);
    }
    free(ids);
    free(prompt);
    ar_model_free(m);
}

int main(void)
{
    ar_log_level = AR_LOG_WARN;
    test_hook();
    vfix q, t;
    if (load_vocab(&q, "vocab-qwen35.gguf", "qwen35 vocab")) {
        test_machine(&q);
        test_typed(&q);
        test_lazy(&q);
        test_cost(&q);
        test_random(&q);
    }
    free_vocab(&q);
    if (load_vocab(&t, "tiny-f32.gguf", "tiny-f32 vocab")) {
        test_machine(&t);
        test_typed(&t);
        test_lazy(&t);
        test_cost(&t);
        test_random(&t);
    }
    free_vocab(&t);
    test_speculative();
    TEST_END();
}
