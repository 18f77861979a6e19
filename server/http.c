/* server/http.c — libmicrohttpd glue: daemon, routing, body accumulation with a size limit, API keys,
 * CORS and responses (see http.h).
 *
 * libmicrohttpd calls on_access several times per request: once with the headers (we find the route,
 * check the key and Content-Length, and may answer at once: MHD then skips the body and closes),
 * then once per body piece (appended to r->body, or counted and dropped past the limit), then once
 * with no data (the handler runs). on_completed frees the per-request state. */
#include "server/http.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "base/log.h"

typedef struct route {
    char *method, *path;
    http_handler fn;
    void *user;
    http_error_format fmt;
    bool public_route;
} route;

struct http_server {
    struct MHD_Daemon *d;
    http_options o;
    char *host, *api_key;
    route *routes;
    int    n_routes;
    int    port;
};

struct http_req {
    http_server *h;
    struct MHD_Connection *conn;
    const char *method, *url;
    const route *rt;
    http_error_format fmt;   /* no route matched: the error format of the nearest route above the path */
    sbuf body;
    size_t body_seen;
    bool too_large;
    bool answered;
};

/* ---- responses ---------------------------------------------------------------------------------- */

static const char *endpoint_of(const http_req *r) { return r->rt ? r->rt->path : "other"; }

static void add_cors(const http_server *h, struct MHD_Response *resp)
{
    if (!h->o.cors) return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    MHD_add_response_header(resp, "Access-Control-Expose-Headers", "*");
}

static void queue(http_req *r, int status, struct MHD_Response *resp)
{
    if (!resp) {
        ar_log(AR_LOG_ERROR, "http: cannot create a response (out of memory)");
        r->answered = true;
        return;
    }
    add_cors(r->h, resp);
    if (MHD_queue_response(r->conn, (unsigned)status, resp) != MHD_YES)
        ar_log(AR_LOG_WARN, "http: cannot queue the %d response to %s %s", status, r->method, r->url);
    MHD_destroy_response(resp);
    r->answered = true;
    if (r->h->o.on_response) r->h->o.on_response(r->h->o.user, endpoint_of(r), status);
}

void http_reply(http_req *r, int status, const char *content_type, const char *body, size_t len)
{
    if (r->answered) return;
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp && content_type) MHD_add_response_header(resp, "Content-Type", content_type);
    queue(r, status, resp);
}

void http_reply_json(http_req *r, int status, const char *json)
{
    http_reply(r, status, "application/json", json, strlen(json));
}

void http_reply_error(http_req *r, const api_error *e)
{
    http_error_format fmt = r->rt ? r->rt->fmt : r->fmt;
    char *body = fmt ? fmt(e) : api_error_openai(e);
    if (!body) body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
    if (e->status >= 500 && e->status != 503) ar_log(AR_LOG_WARN, "%s %s -> %d: %s", r->method, r->url, e->status, e->message);
    else ar_log(AR_LOG_DEBUG, "%s %s -> %d: %s", r->method, r->url, e->status, e->message);
    http_reply_json(r, e->status, body ? body : "{}");
    free(body);
}

typedef struct stream_ctx {
    http_stream_read read;
    http_stream_done done;
    void *ctx;
    bool ended;
} stream_ctx;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream_ctx *s = cls;
    ssize_t n = s->read(s->ctx, buf, max);
    if (n > 0) return n;
    if (n == 0) { s->ended = true; return MHD_CONTENT_READER_END_OF_STREAM; }
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static void stream_free(void *cls)
{
    stream_ctx *s = cls;
    s->done(s->ctx, s->ended);
    free(s);
}

void http_reply_stream(http_req *r, int status, const char *content_type, http_stream_read read,
                       http_stream_done done, void *ctx)
{
    stream_ctx *s = calloc(1, sizeof *s);
    struct MHD_Response *resp = NULL;
    if (s) {
        *s = (stream_ctx){ .read = read, .done = done, .ctx = ctx };
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_free);
    }
    if (!resp) {
        free(s);
        done(ctx, false);
        api_error e;
        api_fail(&e, 500, "server_error", NULL, NULL, "out of memory starting a stream");
        http_reply_error(r, &e);
        return;
    }
    MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    queue(r, status, resp);
}

/* ---- accessors ---------------------------------------------------------------------------------- */

const char *http_method(const http_req *r) { return r->method; }
const char *http_path(const http_req *r) { return r->url; }

const char *http_body(const http_req *r, size_t *len)
{
    *len = r->body.n;
    return r->body.p ? r->body.p : "";
}

const char *http_header(const http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_query(const http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

int http_fd(const http_req *r)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* ---- request handling --------------------------------------------------------------------------- */

static void fail(http_req *r, int status, const char *type, const char *code, const char *fmt, ...)
{
    api_error e = { .status = status, .type = type, .code = code };
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    http_reply_error(r, &e);
}

/* Constant-time comparison (the key must not leak through timing). */
static bool key_equal(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    unsigned char diff = (unsigned char)(na != nb);
    for (size_t i = 0; i < na; i++) diff |= (unsigned char)(a[i] ^ b[i % (nb ? nb : 1)]);
    return diff == 0;
}

static bool authorized(const http_req *r)
{
    const char *key = r->h->api_key;
    if (!key || !*key) return true;
    const char *x = http_header(r, "x-api-key");
    if (x && key_equal(x, key)) return true;
    const char *auth = http_header(r, "Authorization");
    if (auth && !strncasecmp(auth, "Bearer ", 7)) {
        auth += 7;
        while (*auth == ' ') auth++;
        if (key_equal(auth, key)) return true;
    }
    return false;
}

static void preflight(http_req *r)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (resp) {
        const char *hdrs = http_header(r, "Access-Control-Request-Headers");
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                hdrs ? hdrs : "Authorization, Content-Type, x-api-key, anthropic-version");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
    }
    queue(r, 204, resp);
}

/* The error format for a path no route serves: that of the longest route path it extends
 * ("/v1/messages/batches" answers in the format of "/v1/messages"), else OpenAI's. */
static http_error_format nearest_format(const http_server *h, const char *url)
{
    http_error_format fmt = NULL;
    size_t best = 0;
    for (int i = 0; i < h->n_routes; i++) {
        size_t n = strlen(h->routes[i].path);
        if (n > best && !strncmp(url, h->routes[i].path, n) && (url[n] == '/' || url[n] == 0)) {
            best = n;
            fmt = h->routes[i].fmt;
        }
    }
    return fmt;
}

/* The first call: route, key, size. May answer at once. */
static void begin(http_req *r)
{
    http_server *h = r->h;
    if (h->o.cors && !strcmp(r->method, "OPTIONS")) { preflight(r); return; }
    bool path_known = false;
    for (int i = 0; i < h->n_routes; i++) {
        if (strcmp(h->routes[i].path, r->url)) continue;
        path_known = true;
        if (!strcmp(h->routes[i].method, r->method)) { r->rt = &h->routes[i]; break; }
    }
    if (!r->rt) {
        r->fmt = nearest_format(h, r->url);
        if (path_known)
            fail(r, 405, "invalid_request_error", "method_not_allowed", "Method %s is not allowed on %s", r->method, r->url);
        else
            fail(r, 404, "invalid_request_error", "unknown_url", "Unknown request URL: %s %s", r->method, r->url);
        return;
    }
    if (!r->rt->public_route && !authorized(r)) {
        fail(r, 401, "authentication_error", "invalid_api_key",
             "Incorrect or missing API key: send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'");
        return;
    }
    const char *cl = http_header(r, "Content-Length");
    if (cl) {
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (end != cl && n > h->o.max_body)
            fail(r, 413, "invalid_request_error", "request_too_large",
                 "The request body is %llu bytes; this server accepts at most %zu (arbor serve --max-body)", n,
                 h->o.max_body);
    }
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version;
    http_server *h = cls;
    http_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *r = (http_req){ .h = h, .conn = conn, .method = method, .url = url };
        *con_cls = r;
        begin(r);
        return MHD_YES;
    }
    if (*upload_size) {
        r->body_seen += *upload_size;
        if (!r->answered && !r->too_large) {
            if (r->body_seen > h->o.max_body) {
                r->too_large = true;
                sb_free(&r->body);
            } else {
                sb_put(&r->body, upload, *upload_size);
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->answered) return MHD_YES;
    if (r->too_large)
        fail(r, 413, "invalid_request_error", "request_too_large",
             "The request body is over %zu bytes, the most this server accepts (arbor serve --max-body)", h->o.max_body);
    else if (r->body.oom)
        fail(r, 500, "server_error", NULL, "out of memory reading the request body");
    else
        r->rt->fn(r->rt->user, r);
    if (!r->answered) fail(r, 500, "server_error", NULL, "the handler for %s gave no answer", r->url);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls; (void)conn; (void)toe;
    http_req *r = *con_cls;
    if (!r) return;
    sb_free(&r->body);
    free(r);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
    ar_log(AR_LOG_DEBUG, "http: %s", msg);
}

/* ---- daemon ------------------------------------------------------------------------------------- */

int http_route(http_server *h, const char *method, const char *path, http_handler fn, void *user,
               http_error_format fmt, bool public_route)
{
    route *rt = realloc(h->routes, (size_t)(h->n_routes + 1) * sizeof *rt);
    if (!rt) return AR_ENOMEM;
    h->routes = rt;
    rt = &rt[h->n_routes];
    *rt = (route){ .method = strdup(method), .path = strdup(path), .fn = fn, .user = user, .fmt = fmt,
                   .public_route = public_route };
    if (!rt->method || !rt->path) { free(rt->method); free(rt->path); return AR_ENOMEM; }
    h->n_routes++;
    return 0;
}

int http_create(http_server **out, const http_options *o, ar_error *err)
{
    *out = NULL;
    http_server *h = calloc(1, sizeof *h);
    if (!h) return ar_fail(err, AR_ENOMEM, "out of memory starting the HTTP server");
    h->o = *o;
    h->host = strdup(o->host && *o->host ? o->host : "127.0.0.1");
    h->api_key = o->api_key && *o->api_key ? strdup(o->api_key) : NULL;
    if (!h->host || (o->api_key && *o->api_key && !h->api_key)) { http_free(h); return ar_fail(err, AR_ENOMEM, "out of memory"); }
    h->o.host = h->host;
    h->o.api_key = h->api_key;
    if (!h->o.max_body) h->o.max_body = 32u << 20;
    if (!h->o.max_conns) h->o.max_conns = 256;
    *out = h;
    return 0;
}

int http_start(http_server *h, ar_error *err)
{
    const http_options *o = &h->o;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int gai = getaddrinfo(h->host, port, &hints, &ai);
    if (gai || !ai)
        return ar_fail(err, AR_EINVAL, "cannot resolve the listen address '%s': %s", h->host, gai_strerror(gai));
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    h->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_access, h,
                            MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->conn_timeout_s,
                            MHD_OPTION_CONNECTION_LIMIT, h->o.max_conns,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024),
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->d)
        return ar_fail(err, AR_EIO, "cannot listen on %s port %d (in use, or not an address of this machine?)",
                       h->host, o->port);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : o->port;
    return 0;
}

int http_port(const http_server *h) { return h->port; }

void http_free(http_server *h)
{
    if (!h) return;
    if (h->d) MHD_stop_daemon(h->d);
    for (int i = 0; i < h->n_routes; i++) { free(h->routes[i].method); free(h->routes[i].path); }
    free(h->routes);
    free(h->host);
    free(h->api_key);
    free(h);
}
