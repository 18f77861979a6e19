/* server/toolchoice.c — the tool-call constraint (see toolchoice.h).
 *
 * The format is a byte automaton over the generated text. Its state (st) is a few integers, copied
 * freely: a token is checked by running its bytes through a copy (sim). Two kinds of state:
 *   - free text (M_THINK, M_VALUE): any byte; "watch" tags (all start with '<' and hold no other
 *     '<') are tracked as the range of tags whose first m bytes were just written, so a tag ends
 *     the free text ("</think>", "</parameter>") or is refused ("</function>" inside a value);
 *   - forced text (M_ALT): one of a sorted set of literals ("<tool_call>", "NAME>", ...), optionally
 *     after a few whitespace bytes, tracked the same way: the literals that start with the m bytes
 *     written form a contiguous range [lo, hi) of the sorted set. Every set is prefix-free (each
 *     literal ends with a byte no other literal has at that position: '>', '=' ...), so a literal is
 *     complete exactly when the range is that one literal and m reached its length.
 * Masks (op_allowed): forced text starts from an empty mask and tries, for each of the 256 first
 * bytes the state accepts, the tokens of that byte's group; free text starts from a full mask and
 * re-checks only the tokens with a '<' (and, after a partial tag, the groups of the bytes that
 * continue it), then clears the end-of-generation tokens. */
#include "server/toolchoice.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_NAME = 256, MAX_FREE_NAME = 64, WS_PRE = 8, WS = 4, WS_ENDTHINK = 2,
       MAX_INT_DIGITS = 15,    /* a typed number's digits: exact in a double (the parser reads numbers as reals) */
       MAX_FRAC_DIGITS = 15, MAX_EXP_DIGITS = 3, MAX_ENUM = 256 };

/* ---- the vocabulary ----------------------------------------------------------------------------- */

struct tchoice_vocab {
    const ar_vocab *v;
    uint64_t        hash;
    int32_t         n;
    uint32_t       *off;         /* [n + 1]: token i's bytes are bytes[off[i] .. off[i + 1]) */
    char           *bytes;
    uint32_t       *eog_bits;    /* [ceil(n / 32)] */
    int32_t        *eog;         /* end-of-generation tokens */
    int             n_eog;
    int32_t        *lt;          /* other tokens whose bytes hold a '<' */
    int             n_lt;
    int32_t        *by_first;    /* other tokens with bytes, grouped by their first byte: */
    uint32_t        first[257];  /*   by_first[first[b] .. first[b + 1]) start with b */
    tchoice_vocab  *next;        /* the cache */
};

static uint64_t vocab_hash(const ar_vocab *v)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const int32_t n = ar_vocab_size(v);
    for (int32_t i = 0; i < n; i++) {
        size_t len = 0;
        const unsigned char *t = (const unsigned char *)ar_token_text(v, i, &len);
        h = (h ^ ((uint64_t)len << 8 | (uint64_t)ar_token_type(v, i))) * 0x100000001b3ull;
        for (size_t k = 0; t && k < len; k++) h = (h ^ t[k]) * 0x100000001b3ull;
    }
    return h ^ (uint64_t)n;
}

static void vocab_free(tchoice_vocab *t)
{
    if (!t) return;
    free(t->off);
    free(t->bytes);
    free(t->eog_bits);
    free(t->eog);
    free(t->lt);
    free(t->by_first);
    free(t);
}

static tchoice_vocab *vocab_build(const ar_vocab *v, uint64_t hash, ar_error *err)
{
    const int32_t n = ar_vocab_size(v);
    tchoice_vocab *t = calloc(1, sizeof *t);
    size_t cap = ar_vocab_max_piece(v) + 1, size = 0, bcap = (size_t)n * 4 + 64;
    char *tmp = malloc(cap);
    if (t) {
        t->v = v;
        t->hash = hash;
        t->n = n;
        t->off = malloc(((size_t)n + 1) * sizeof *t->off);
        t->bytes = malloc(bcap);
        t->eog_bits = calloc(((size_t)n + 31) / 32, sizeof *t->eog_bits);
        t->eog = malloc(((size_t)n + 1) * sizeof *t->eog);
        t->lt = malloc(((size_t)n + 1) * sizeof *t->lt);
        t->by_first = malloc(((size_t)n + 1) * sizeof *t->by_first);
    }
    if (!t || !tmp || !t->off || !t->bytes || !t->eog_bits || !t->eog || !t->lt || !t->by_first) goto oom;
    uint32_t count[256] = { 0 };
    for (int32_t i = 0; i < n; i++) {
        size_t len = ar_token_to_bytes(v, i, false, tmp, cap);
        if (len > cap) len = cap;   /* cannot happen: max_piece bounds it */
        if (size + len > bcap) {
            while (size + len > bcap) bcap *= 2;
            char *b = realloc(t->bytes, bcap);
            if (!b) goto oom;
            t->bytes = b;
        }
        if (size + len > UINT32_MAX) goto oom;
        t->off[i] = (uint32_t)size;
        memcpy(t->bytes + size, tmp, len);
        size += len;
        if (ar_token_is_eog(v, i)) {
            t->eog_bits[i >> 5] |= 1u << (i & 31);
            t->eog[t->n_eog++] = i;
        } else if (len) {
            count[(unsigned char)tmp[0]]++;
            if (memchr(tmp, '<', len)) t->lt[t->n_lt++] = i;
        }
    }
    t->off[n] = (uint32_t)size;
    t->first[0] = 0;
    for (int b = 0; b < 256; b++) t->first[b + 1] = t->first[b] + count[b];
    uint32_t fill[256];
    memcpy(fill, t->first, sizeof fill);
    for (int32_t i = 0; i < n; i++) {
        if (t->off[i + 1] == t->off[i] || (t->eog_bits[i >> 5] >> (i & 31) & 1u)) continue;
        t->by_first[fill[(unsigned char)t->bytes[t->off[i]]]++] = i;
    }
    free(tmp);
    return t;
oom:
    free(tmp);
    vocab_free(t);
    ar_fail(err, AR_ENOMEM, "tool_choice: out of memory for the vocabulary's tables");
    return NULL;
}

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static tchoice_vocab *cache;   /* never freed: requests in flight may still use an entry */

const tchoice_vocab *tchoice_vocab_get(const ar_vocab *v, ar_error *err)
{
    const uint64_t h = vocab_hash(v);
    pthread_mutex_lock(&cache_mu);
    tchoice_vocab *t = cache;
    while (t && !(t->v == v && t->hash == h && t->n == ar_vocab_size(v))) t = t->next;
    if (!t && (t = vocab_build(v, h, err))) {
        t->next = cache;
        cache = t;
    }
    pthread_mutex_unlock(&cache_mu);
    return t;
}

static inline bool is_eog(const tchoice_vocab *tv, int32_t id)
{
    return id >= 0 && id < tv->n && (tv->eog_bits[id >> 5] >> (id & 31) & 1u);
}

/* ---- literal sets ------------------------------------------------------------------------------- */

typedef struct alt {
    const char *s;
    int         len;
    int         arg;   /* function or parameter index; BODY: B_CLOSE / B_PARAM; watch tags: their action */
} alt;

typedef struct altset {
    alt *a;
    int  n;
    int  ws;    /* whitespace bytes allowed before the literal */
    bool eog;   /* the end of generation may come instead (before any byte of the literal) */
} altset;

enum { A_PRE, A_FUNC, A_NAME, A_BODY, A_TAIL, A_POST, A_ENDTHINK, A_BOOL, A_ENDPARAM, N_FIXED,
       A_PNAME = N_FIXED,   /* the open call's function's parameter names */
       A_PENUM };           /* the open parameter's enum values */
enum { B_CLOSE, B_PARAM };
enum { W_END, W_CALL, W_REFUSE };   /* watch tag actions: end the free text, start a call, refuse */

static int alt_cmp(const void *pa, const void *pb)
{
    const alt *a = pa, *b = pb;
    int k = memcmp(a->s, b->s, (size_t)(a->len < b->len ? a->len : b->len));
    return k ? k : a->len - b->len;
}

/* The byte at position m of a literal, -1 past its end (so shorter literals sort first). */
static inline int key(const alt *a, int m) { return a->len > m ? (unsigned char)a->s[m] : -1; }

/* Within [lo, hi) (literals sharing their first m bytes), the literals whose byte m is b. */
static void narrow(const altset *A, int *lo, int *hi, int m, int b)
{
    int l = *lo, h = *hi;
    while (l < h) {
        int mid = l + (h - l) / 2;
        if (key(&A->a[mid], m) < b) l = mid + 1;
        else h = mid;
    }
    int e = l;
    h = *hi;
    while (e < h) {
        int mid = e + (h - e) / 2;
        if (key(&A->a[mid], m) <= b) e = mid + 1;
        else h = mid;
    }
    *lo = l;
    *hi = e;
}

/* ---- the constraint ----------------------------------------------------------------------------- */

/* A parameter's value as its JSON schema types it: free text (strings and anything the constraint does
 * not model: objects, arrays, unions), a JSON number, a JSON boolean, or one of a string enum's values. */
enum { PT_FREE, PT_INT, PT_NUM, PT_BOOL, PT_ENUM };

typedef struct tfunc {
    char    *name;
    altset   params;      /* "P>" per schema property, sorted; arg = the property's index */
    int      n_props;     /* schema properties (writable or not): the indices of ptype / penum */
    uint8_t *ptype;       /* [n_props] PT_* */
    altset  *penum;       /* [n_props] PT_ENUM: "\nVALUE\n</parameter>" per value, sorted */
    int      untracked;   /* writable properties with index >= 64 (never counted as given) */
    bool     free_names;  /* the schema lists no properties: any parameter name */
    uint64_t all;         /* properties with index < 64 (tracked: given at most once) */
    uint64_t required;
} tfunc;

enum { M_THINK, M_VALUE, M_ALT, M_FNAME, M_DONE, M_FREE,
       M_NUM,     /* a typed number (st.num: where in the JSON number grammar) */
       M_TEXT };  /* lazy (tool_choice auto): the answer's free text, until a "<tool_call>" */
enum { NS_WS, NS_SIGN, NS_ZERO, NS_INT, NS_DOT, NS_FRAC, NS_E, NS_ESIGN, NS_EXP };

typedef struct st {
    int      mode;
    int      set;      /* M_ALT: A_* */
    int      ws;       /* M_ALT: whitespace bytes still allowed */
    int      fn;       /* the open call's function, -1 */
    int      param;    /* the open value's property index (M_NUM, A_PENUM) */
    int      num, nd;  /* M_NUM: NS_* and the digits of the current part */
    int      lo, hi, m;/* M_ALT and free text: the literals / tags matching the last m bytes */
    int      fname;    /* M_FNAME: bytes of the name so far */
    int      calls;    /* completed calls */
    uint64_t used;     /* tracked parameters given in the open call */
} st;

struct tchoice {
    const tchoice_vocab *tv;
    tfunc   *fn;
    int      n_fn;
    altset   sets[N_FIXED];
    alt      fixed[12];         /* the fixed sets' storage */
    alt     *names;             /* A_NAME's storage */
    altset   watch_think, watch_value, watch_text;
    alt      wt[2], wv[3], wx[1];
    bool     parallel;
    bool     lazy;              /* tool_choice auto: constrain only from a "<tool_call>" the model writes */
    int      budget, think_reserve;
    st       init, cur;
    int      n_gen;             /* tokens accepted */
};

static inline bool is_ws(int b) { return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v'; }

static const altset *set_of(const tchoice *c, const st *s)
{
    if (s->set == A_PNAME) return &c->fn[s->fn].params;
    if (s->set == A_PENUM) return &c->fn[s->fn].penum[s->param];
    return &c->sets[s->set];
}

static void enter_alt(const tchoice *c, st *s, int set)
{
    s->mode = M_ALT;
    s->set = set;
    s->m = 0;
    s->lo = 0;
    s->hi = set_of(c, s)->n;
    s->ws = set_of(c, s)->ws;
}

static void enter_free(st *s, int mode)
{
    s->mode = mode;
    s->m = 0;
}

static bool enabled(const tchoice *c, const st *s, const alt *a)
{
    if (s->set == A_BODY) {
        const tfunc *f = &c->fn[s->fn];
        if (a->arg == B_CLOSE) return !(f->required & ~s->used);
        return f->free_names || f->untracked > 0 || (f->all & ~s->used);
    }
    if (s->set == A_PNAME) return a->arg >= 64 || !(s->used >> a->arg & 1u);
    return true;
}

static void complete_alt(const tchoice *c, st *s, const alt *a)
{
    switch (s->set) {
    case A_PRE:
    case A_POST: enter_alt(c, s, A_FUNC); break;
    case A_FUNC: enter_alt(c, s, A_NAME); break;
    case A_NAME:
        s->fn = a->arg;
        s->used = 0;
        enter_alt(c, s, A_BODY);
        break;
    case A_BODY:
        if (a->arg == B_CLOSE) enter_alt(c, s, A_TAIL);
        else if (c->fn[s->fn].free_names) { s->mode = M_FNAME; s->fname = 0; }
        else enter_alt(c, s, A_PNAME);
        break;
    case A_PNAME: {
        const tfunc *f = &c->fn[s->fn];
        if (a->arg < 64) s->used |= 1ull << a->arg;
        s->param = a->arg;
        const int ty = a->arg < f->n_props ? f->ptype[a->arg] : PT_FREE;
        if (ty == PT_INT || ty == PT_NUM) {
            s->mode = M_NUM;
            s->num = NS_WS;
            s->nd = 0;
            s->ws = WS;
        } else if (ty == PT_BOOL) {
            enter_alt(c, s, A_BOOL);
        } else if (ty == PT_ENUM) {
            enter_alt(c, s, A_PENUM);
        } else {
            enter_free(s, M_VALUE);
        }
        break;
    }
    case A_BOOL: enter_alt(c, s, A_ENDPARAM); break;
    case A_ENDPARAM:
    case A_PENUM: enter_alt(c, s, A_BODY); break;
    case A_TAIL:
        s->calls++;
        s->fn = -1;
        if (c->parallel) enter_alt(c, s, A_POST);
        else s->mode = M_DONE;
        break;
    default:   /* A_ENDTHINK */
        enter_alt(c, s, A_PRE);
        break;
    }
}

static bool step(const tchoice *c, st *s, int b);

/* A typed value's JSON number (integer: no fraction or exponent), after up to WS whitespace bytes; a
 * complete number ends at whitespace or '<' ("</parameter>" follows). Digit counts are bounded so the
 * model cannot stall in a value. */
static bool step_num(const tchoice *c, st *s, int b)
{
    const bool integer = c->fn[s->fn].ptype[s->param] == PT_INT;
    const bool digit = b >= '0' && b <= '9';
    if (is_ws(b) || b == '<') {
        if (s->num == NS_WS) {
            if (b == '<' || !s->ws) return false;
            s->ws--;
            return true;
        }
        if (s->num != NS_ZERO && s->num != NS_INT && s->num != NS_FRAC && s->num != NS_EXP) return false;
        enter_alt(c, s, A_ENDPARAM);
        return step(c, s, b);
    }
    switch (s->num) {
    case NS_WS:
        if (b == '-') { s->num = NS_SIGN; return true; }
        /* fall through */
    case NS_SIGN:
        if (!digit) return false;
        s->num = b == '0' ? NS_ZERO : NS_INT;
        s->nd = 1;
        return true;
    case NS_ZERO:
    case NS_INT:
        if (digit) {
            if (s->num == NS_ZERO || s->nd >= MAX_INT_DIGITS) return false;
            s->nd++;
            return true;
        }
        if (integer) return false;
        if (b == '.') { s->num = NS_DOT; return true; }
        if (b == 'e' || b == 'E') { s->num = NS_E; return true; }
        return false;
    case NS_DOT:
        if (!digit) return false;
        s->num = NS_FRAC;
        s->nd = 1;
        return true;
    case NS_FRAC:
        if (digit) {
            if (s->nd >= MAX_FRAC_DIGITS) return false;
            s->nd++;
            return true;
        }
        if (b == 'e' || b == 'E') { s->num = NS_E; return true; }
        return false;
    case NS_E:
        if (b == '+' || b == '-') { s->num = NS_ESIGN; return true; }
        /* fall through */
    case NS_ESIGN:
        if (!digit) return false;
        s->num = NS_EXP;
        s->nd = 1;
        return true;
    default:   /* NS_EXP */
        if (!digit || s->nd >= MAX_EXP_DIGITS) return false;
        s->nd++;
        return true;
    }
}

/* One byte of text: false when it leaves the format (s is then undefined). */
static bool step(const tchoice *c, st *s, int b)
{
    switch (s->mode) {
    case M_FREE: return true;
    case M_DONE: return false;
    case M_NUM: return step_num(c, s, b);
    case M_FNAME:
        if (b == '>') {
            if (!s->fname) return false;
            enter_free(s, M_VALUE);
            return true;
        }
        if (b == '<' || b == '\n' || s->fname >= MAX_FREE_NAME) return false;
        s->fname++;
        return true;
    case M_THINK:
    case M_TEXT:
    case M_VALUE: {
        const altset *w = s->mode == M_THINK ? &c->watch_think : s->mode == M_TEXT ? &c->watch_text : &c->watch_value;
        if (s->m > 0) {
            int lo = s->lo, hi = s->hi;
            narrow(w, &lo, &hi, s->m, b);
            if (lo < hi) {
                s->lo = lo;
                s->hi = hi;
                if (w->a[lo].len > ++s->m) return true;
                const int act = w->a[lo].arg;   /* a complete tag */
                if (act == W_REFUSE) return false;
                if (s->mode == M_VALUE) enter_alt(c, s, A_BODY);
                else if (act == W_CALL) enter_alt(c, s, A_FUNC);
                else if (c->lazy) enter_free(s, M_TEXT);   /* "</think>": the answer, free */
                else enter_alt(c, s, A_PRE);
                return true;
            }
            s->m = 0;
        }
        if (b == '<') {
            s->m = 1;
            s->lo = 0;
            s->hi = w->n;
        }
        return true;
    }
    default: {
        const altset *A = set_of(c, s);
        if (s->m == 0 && is_ws(b) && s->ws) {
            s->ws--;
            return true;
        }
        int lo = s->lo, hi = s->hi;
        narrow(A, &lo, &hi, s->m, b);
        bool any = false;
        for (int i = lo; i < hi && !any; i++) any = enabled(c, s, &A->a[i]);
        if (!any) return false;
        s->lo = lo;
        s->hi = hi;
        if (A->a[lo].len == ++s->m) complete_alt(c, s, &A->a[lo]);
        return true;
    }
    }
}

static bool sim(const tchoice *c, st s, const char *p, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (!step(c, &s, (unsigned char)p[k])) return false;
    return true;
}

static bool eog_ok(const tchoice *c, const st *s)
{
    return s->mode == M_DONE || s->mode == M_FREE || (s->mode == M_ALT && s->set == A_POST && s->m == 0) ||
           (c->lazy && (s->mode == M_THINK || s->mode == M_TEXT));
}

/* ---- ops ---------------------------------------------------------------------------------------- */

static inline void bit_set(uint32_t *m, int32_t i) { m[i >> 5] |= 1u << (i & 31); }
static inline void bit_clear(uint32_t *m, int32_t i) { m[i >> 5] &= ~(1u << (i & 31)); }

static bool op_allowed(void *user, uint32_t *mask, int32_t n_vocab)
{
    tchoice *c = user;
    const tchoice_vocab *tv = c->tv;
    st *s = &c->cur;
    if (s->mode == M_FREE) return false;
    /* lazy: free text is free until a tag is under way (no cost per token outside tool calls) */
    if (c->lazy && (s->mode == M_THINK || s->mode == M_TEXT) && s->m == 0) return false;
    if (!c->lazy && s->mode == M_THINK && c->budget > 0 && c->budget - c->n_gen <= c->think_reserve)
        enter_alt(c, s, A_ENDTHINK);   /* the reasoning budget is spent: close it */
    const size_t words = ((size_t)n_vocab + 31) / 32;
    const int32_t nv = n_vocab < tv->n ? n_vocab : tv->n;

    if (s->mode == M_THINK || s->mode == M_VALUE || s->mode == M_TEXT) {
        memset(mask, 0xff, words * sizeof *mask);
        for (int32_t i = nv; i < n_vocab; i++) bit_clear(mask, i);   /* ids past the tokenizer's */
        if (!eog_ok(c, s))
            for (int i = 0; i < tv->n_eog; i++)
                if (tv->eog[i] < nv) bit_clear(mask, tv->eog[i]);
        /* tokens whose first byte continues (or completes) a partial tag */
        for (int b = 0; b < 256; b++) {
            st t = *s;
            bool ok = step(c, &t, b);
            if (ok && t.m == 0 && t.mode == s->mode) continue;   /* the rest of the token decides: below */
            for (uint32_t k = tv->first[b]; k < tv->first[b + 1]; k++) {
                int32_t id = tv->by_first[k];
                if (id >= nv) continue;
                const char *p = tv->bytes + tv->off[id];
                if (!ok || !sim(c, t, p + 1, tv->off[id + 1] - tv->off[id] - 1)) bit_clear(mask, id);
            }
        }
        /* tokens that hold a tag, or part of one */
        for (int i = 0; i < tv->n_lt; i++) {
            int32_t id = tv->lt[i];
            if (id < nv && !sim(c, *s, tv->bytes + tv->off[id], tv->off[id + 1] - tv->off[id])) bit_clear(mask, id);
        }
        return true;
    }

    memset(mask, 0, words * sizeof *mask);
    if (eog_ok(c, s))
        for (int i = 0; i < tv->n_eog; i++)
            if (tv->eog[i] < nv) bit_set(mask, tv->eog[i]);
    if (s->mode == M_DONE) return true;
    for (int b = 0; b < 256; b++) {
        st t = *s;
        if (!step(c, &t, b)) continue;
        for (uint32_t k = tv->first[b]; k < tv->first[b + 1]; k++) {
            int32_t id = tv->by_first[k];
            if (id < nv && sim(c, t, tv->bytes + tv->off[id] + 1, tv->off[id + 1] - tv->off[id] - 1)) bit_set(mask, id);
        }
    }
    return true;
}

static void op_accept(void *user, int32_t token)
{
    tchoice *c = user;
    const tchoice_vocab *tv = c->tv;
    c->n_gen++;
    st *s = &c->cur;
    if (s->mode == M_FREE) return;
    if (is_eog(tv, token)) { s->mode = M_DONE; return; }
    if (token < 0 || token >= tv->n) return;
    const char *p = tv->bytes + tv->off[token];
    const size_t n = tv->off[token + 1] - tv->off[token];
    if (n == 0 && s->mode != M_THINK && s->mode != M_VALUE && s->mode != M_TEXT) { s->mode = M_FREE; return; }
    for (size_t k = 0; k < n; k++)
        if (!step(c, s, (unsigned char)p[k])) {   /* not a token the mask allowed: stop constraining */
            s->mode = M_FREE;
            return;
        }
}

static void op_reset(void *user)
{
    tchoice *c = user;
    c->cur = c->init;
    c->n_gen = 0;
}

const ar_constraint_ops tchoice_ops = { op_allowed, op_accept, op_reset };

/* ---- creation ----------------------------------------------------------------------------------- */

static bool writable_name(const char *s, size_t n)
{
    if (n == 0 || n > MAX_NAME || is_ws((unsigned char)s[0]) || is_ws((unsigned char)s[n - 1])) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '<' || s[i] == '>' || s[i] == '\n' || s[i] == '\0') return false;
    return true;
}

/* "name" + ">" (malloc'd). */
static char *with_gt(const char *s, size_t n)
{
    char *p = malloc(n + 2);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '>';
    p[n + 1] = 0;
    return p;
}

static void func_free(tfunc *f)
{
    free(f->name);
    for (int i = 0; i < f->params.n; i++) free((char *)f->params.a[i].s);
    free(f->params.a);
    for (int i = 0; f->penum && i < f->n_props; i++) {
        for (int k = 0; k < f->penum[i].n; k++) free((char *)f->penum[i].a[k].s);
        free(f->penum[i].a);
    }
    free(f->penum);
    free(f->ptype);
}

/* A property's value type (PT_*): a single "type" of integer, number or boolean, or an "enum" of strings
 * the format can hold (no '<' or newline, at most MAX_ENUM of them); anything else is free text. */
static int value_type(json_t *v)
{
    if (!json_is_object(v)) return PT_FREE;
    json_t *en = json_object_get(v, "enum");
    if (json_is_array(en)) {
        size_t i, n = json_array_size(en);
        json_t *e;
        if (n == 0 || n > MAX_ENUM) return PT_FREE;
        json_array_foreach(en, i, e) {
            const char *t = json_string_value(e);
            if (!t || strchr(t, '<') || strchr(t, '\n') || strlen(t) != json_string_length(e)) return PT_FREE;
        }
        return PT_ENUM;
    }
    const char *t = json_string_value(json_object_get(v, "type"));
    if (!t) return PT_FREE;
    if (!strcmp(t, "integer")) return PT_INT;
    if (!strcmp(t, "number")) return PT_NUM;
    if (!strcmp(t, "boolean")) return PT_BOOL;
    return PT_FREE;
}

/* The enum's literals: "\n" VALUE "\n</parameter>" (the template's form), sorted, without repeats. */
static int load_enum(altset *set, json_t *en)
{
    static const char end[] = "\n</parameter>";
    size_t i, n = json_array_size(en);
    json_t *e;
    set->a = calloc(n, sizeof *set->a);
    if (!set->a) return AR_ENOMEM;
    json_array_foreach(en, i, e) {
        const char *t = json_string_value(e);
        const size_t len = strlen(t);
        char *lit = malloc(len + sizeof end + 1);
        if (!lit) return AR_ENOMEM;
        lit[0] = '\n';
        memcpy(lit + 1, t, len);
        memcpy(lit + 1 + len, end, sizeof end);
        set->a[set->n++] = (alt){ .s = lit, .len = (int)(len + sizeof end) };
    }
    qsort(set->a, (size_t)set->n, sizeof *set->a, alt_cmp);
    int k = 0;
    for (int j = 0; j < set->n; j++) {
        if (k && alt_cmp(&set->a[k - 1], &set->a[j]) == 0) { free((char *)set->a[j].s); continue; }
        set->a[k++] = set->a[j];
    }
    set->n = k;
    return 0;
}

/* The function's schema: parameters (properties) and the required ones. */
static int load_params(tfunc *f, json_t *schema)
{
    json_t *props = json_is_object(schema) ? json_object_get(schema, "properties") : NULL;
    if (!json_is_object(props)) { f->free_names = true; return 0; }
    size_t n = json_object_size(props);
    f->params.a = calloc(n ? n : 1, sizeof *f->params.a);
    f->ptype = calloc(n ? n : 1, sizeof *f->ptype);
    f->penum = calloc(n ? n : 1, sizeof *f->penum);
    if (!f->params.a || !f->ptype || !f->penum) return AR_ENOMEM;
    f->n_props = (int)n;
    const char *key;
    json_t *v;
    int idx = 0;
    json_object_foreach(props, key, v) {
        size_t len = strlen(key);
        f->ptype[idx] = (uint8_t)value_type(v);
        if (f->ptype[idx] == PT_ENUM && load_enum(&f->penum[idx], json_object_get(v, "enum"))) return AR_ENOMEM;
        if (!writable_name(key, len)) { idx++; continue; }
        char *s = with_gt(key, len);
        if (!s) return AR_ENOMEM;
        f->params.a[f->params.n++] = (alt){ .s = s, .len = (int)len + 1, .arg = idx };
        if (idx < 64) f->all |= 1ull << idx;
        else f->untracked++;
        idx++;
    }
    json_t *req = json_object_get(schema, "required");
    size_t i;
    json_array_foreach(req, i, v) {
        const char *r = json_string_value(v);
        if (!r) continue;
        for (int k = 0; k < f->params.n; k++) {
            const alt *a = &f->params.a[k];
            if (a->arg < 64 && (size_t)a->len == strlen(r) + 1 && !memcmp(a->s, r, strlen(r)))
                f->required |= 1ull << a->arg;
        }
    }
    qsort(f->params.a, (size_t)f->params.n, sizeof *f->params.a, alt_cmp);
    return 0;
}

void tchoice_free(tchoice *c)
{
    if (!c) return;
    for (int i = 0; i < c->n_fn; i++) func_free(&c->fn[i]);
    free(c->fn);
    if (c->names)
        for (int i = 0; i < c->sets[A_NAME].n; i++) free((char *)c->names[i].s);
    free(c->names);
    free(c);
}

static altset one(alt *slot, const char *lit, int ws, bool eog)
{
    *slot = (alt){ .s = lit, .len = (int)strlen(lit) };
    return (altset){ .a = slot, .n = 1, .ws = ws, .eog = eog };
}

int tchoice_create(tchoice **out, const tchoice_vocab *tv, const tchoice_params *p, ar_error *err)
{
    *out = NULL;
    tchoice *c = calloc(1, sizeof *c);
    if (!c) return ar_fail(err, AR_ENOMEM, "tool_choice: out of memory");
    c->tv = tv;
    c->parallel = p->parallel;
    c->lazy = p->lazy && !p->name;
    c->budget = p->budget;
    if (p->think_reserve > 0) {
        c->think_reserve = p->think_reserve;
    } else {
        int r = p->budget / 4;
        c->think_reserve = r < 64 ? 64 : r > 4096 ? 4096 : r;
    }
    c->fn = calloc((size_t)(p->n_tools > 0 ? p->n_tools : 1), sizeof *c->fn);
    c->names = calloc((size_t)(p->n_tools > 0 ? p->n_tools : 1), sizeof *c->names);
    if (!c->fn || !c->names) { tchoice_free(c); return ar_fail(err, AR_ENOMEM, "tool_choice: out of memory"); }

    int rc = 0;
    for (int i = 0; i < p->n_tools && !rc; i++) {
        json_error_t je;
        json_t *t = json_loads(p->tools[i], 0, &je);
        json_t *f = json_object_get(t, "function");
        if (!json_is_object(f)) f = t;
        const char *name = json_string_value(json_object_get(f, "name"));
        json_t *schema = json_object_get(f, "parameters");
        if (!schema) schema = json_object_get(f, "input_schema");
        size_t len = name ? strlen(name) : 0;
        bool dup = false;
        for (int k = 0; k < c->n_fn && name; k++) dup |= !strcmp(c->fn[k].name, name);
        if (!t) rc = ar_fail(err, AR_EINVAL, "tool_choice: tool %d is not JSON: %s", i, je.text);
        else if (name && !dup && (!p->name || !strcmp(p->name, name)) && writable_name(name, len)) {
            tfunc *fn = &c->fn[c->n_fn];
            if (!(fn->name = strdup(name)) || load_params(fn, schema)) {
                func_free(fn);
                *fn = (tfunc){ 0 };
                rc = ar_fail(err, AR_ENOMEM, "tool_choice: out of memory");
            } else {
                char *s = with_gt(name, len);
                if (!s) rc = ar_fail(err, AR_ENOMEM, "tool_choice: out of memory");
                else c->names[c->sets[A_NAME].n++] = (alt){ .s = s, .len = (int)len + 1, .arg = c->n_fn };
                c->n_fn++;
            }
        }
        json_decref(t);
    }
    if (!rc && c->n_fn == 0)
        rc = p->name ? ar_fail(err, AR_EINVAL, "tool_choice: the function '%s' cannot be called in the model's "
                                               "tool-call format (an empty or over-long name, or one with '<', '>' or "
                                               "a newline)", p->name)
                     : ar_fail(err, AR_EINVAL, "tool_choice: no tool can be called in the model's tool-call format");
    if (rc) { tchoice_free(c); return rc; }

    qsort(c->names, (size_t)c->sets[A_NAME].n, sizeof *c->names, alt_cmp);
    c->sets[A_NAME].a = c->names;
    c->sets[A_PRE] = one(&c->fixed[0], "<tool_call>", WS_PRE, false);
    c->sets[A_FUNC] = one(&c->fixed[1], "<function=", WS, false);
    c->fixed[2] = (alt){ .s = "</function>", .len = 11, .arg = B_CLOSE };   /* sorted: '/' < 'p' */
    c->fixed[3] = (alt){ .s = "<parameter=", .len = 11, .arg = B_PARAM };
    c->sets[A_BODY] = (altset){ .a = &c->fixed[2], .n = 2, .ws = WS };
    c->sets[A_TAIL] = one(&c->fixed[4], "</tool_call>", WS, false);
    c->sets[A_POST] = one(&c->fixed[5], "<tool_call>", WS, true);
    c->sets[A_ENDTHINK] = one(&c->fixed[6], "</think>", WS_ENDTHINK, false);
    c->fixed[7] = (alt){ .s = "false", .len = 5 };   /* sorted */
    c->fixed[8] = (alt){ .s = "true", .len = 4 };
    c->sets[A_BOOL] = (altset){ .a = &c->fixed[7], .n = 2, .ws = WS };
    c->sets[A_ENDPARAM] = one(&c->fixed[9], "</parameter>", WS, false);
    c->wt[0] = (alt){ .s = "</think>", .len = 8, .arg = W_END };
    c->wt[1] = (alt){ .s = "<tool_call>", .len = 11, .arg = W_CALL };
    c->watch_think = (altset){ .a = c->wt, .n = 2 };
    c->wv[0] = (alt){ .s = "</function>", .len = 11, .arg = W_REFUSE };
    c->wv[1] = (alt){ .s = "</parameter>", .len = 12, .arg = W_END };
    c->wv[2] = (alt){ .s = "</tool_call>", .len = 12, .arg = W_REFUSE };
    c->watch_value = (altset){ .a = c->wv, .n = 3 };
    c->wx[0] = (alt){ .s = "<tool_call>", .len = 11, .arg = W_CALL };
    c->watch_text = (altset){ .a = c->wx, .n = 1 };

    c->init = (st){ .fn = -1 };
    if (p->reasoning_open) enter_free(&c->init, M_THINK);
    else if (c->lazy) enter_free(&c->init, M_TEXT);
    else enter_alt(c, &c->init, A_PRE);
    c->cur = c->init;
    *out = c;
    return 0;
}

int tchoice_n_calls(const tchoice *c) { return c->cur.calls; }

const char *tchoice_state(const tchoice *c)
{
    static const char *const alts[] = { "pre", "function", "name", "body", "tail", "post", "endthink", "bool",
                                        "endparam", "param", "enum" };
    switch (c->cur.mode) {
    case M_THINK: return "think";
    case M_TEXT: return "text";
    case M_NUM: return "number";
    case M_VALUE: return "value";
    case M_FNAME: return "param";
    case M_DONE: return "done";
    case M_FREE: return "free";
    default: return alts[c->cur.set];
    }
}
