/* server/http.h — the HTTP layer: a libmicrohttpd daemon, routing, request bodies, API keys, CORS,
 * plain and streamed (chunked) responses. Knows nothing of models or of any API's JSON beyond the
 * error formatter each route names.
 *
 * Threads: one thread per connection (libmicrohttpd's thread-per-connection mode), so a handler
 * may block (a non-streamed completion waits for the worker in it) and a stream's reader may wait
 * for the next bytes; an idle keep-alive connection holds a thread until the client closes it or
 * the connection timeout ends it.
 *
 * Per request, before the handler runs: the route is found (404 / 405 otherwise), the API key is
 * checked unless the route is public (401), the body is read up to max_body bytes (413 as soon as
 * Content-Length says it is larger, or when the bytes pass the limit). All errors use the route's
 * error formatter (OpenAI's shape by default); a 404 / 405 uses the formatter of the longest route
 * path the URL extends, so "/v1/messages/nothing" answers in Anthropic's shape. */
#ifndef AR_SERVER_HTTP_H
#define AR_SERVER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "base/error.h"
#include "server/json.h"

typedef struct http_server http_server;
typedef struct http_req http_req;

/* Must answer with exactly one http_reply* call before returning. */
typedef void (*http_handler)(void *user, http_req *r);
/* The body for an error on this route (malloc'd). */
typedef char *(*http_error_format)(const api_error *e);

/* A stream's producer. Write up to max bytes into buf and return the count; block while nothing is
 * ready; return 0 at the end of the stream, -1 to abort the connection. */
typedef ssize_t (*http_stream_read)(void *ctx, char *buf, size_t max);
/* Called once when the connection is done with the stream (sent, failed, or the client left). */
typedef void (*http_stream_done)(void *ctx, bool completed);

typedef struct http_options {
    const char *host;            /* bind address (default 127.0.0.1) */
    int         port;            /* 0: an ephemeral port (see http_port) */
    const char *api_key;         /* NULL/"": no key needed */
    bool        cors;            /* add CORS headers and answer preflight OPTIONS */
    size_t      max_body;        /* request body limit in bytes */
    unsigned    conn_timeout_s;  /* idle connection timeout (0: none) */
    unsigned    max_conns;
    /* Called once per response with the route's name ("other" for unknown paths) and the status. */
    void (*on_response)(void *user, const char *endpoint, int status);
    void *user;
} http_options;

int  http_create(http_server **out, const http_options *o, ar_error *err);   /* routes first, then http_start */
int  http_start(http_server *h, ar_error *err);                               /* binds and serves */
void http_free(http_server *h);                                             /* stops; NULL ok */
int  http_port(const http_server *h);

/* Register a route (before http_start: the route table is read without locks).
 * fmt NULL: OpenAI's error shape. public_route: no API key needed. */
int  http_route(http_server *h, const char *method, const char *path, http_handler fn, void *user,
                http_error_format fmt, bool public_route);

/* Request accessors (valid during the handler). */
const char *http_method(const http_req *r);
const char *http_path(const http_req *r);
const char *http_body(const http_req *r, size_t *len);
const char *http_header(const http_req *r, const char *name);   /* case-insensitive; NULL if absent */
const char *http_query(const http_req *r, const char *name);    /* URL argument; NULL if absent */
int         http_fd(const http_req *r);                          /* the connection's socket */

/* Answers. The body is copied. */
void http_reply(http_req *r, int status, const char *content_type, const char *body, size_t len);
void http_reply_json(http_req *r, int status, const char *json);
void http_reply_error(http_req *r, const api_error *e);   /* in the route's error format */
/* A chunked response produced by read(ctx, ...) on this connection's thread; done(ctx) is called
 * exactly once (also when queuing fails). */
void http_reply_stream(http_req *r, int status, const char *content_type, http_stream_read read,
                       http_stream_done done, void *ctx);

#endif
