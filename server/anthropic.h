/* server/anthropic.h — the Anthropic Messages endpoints (what Claude Code speaks):
 *   POST /v1/messages                 messages, streamed (message_start, content_block_*, ping,
 *                                     message_delta, message_stop) or not; thinking / text /
 *                                     tool_use blocks; stop_reason end_turn / max_tokens /
 *                                     stop_sequence / tool_use
 *   POST /v1/messages/count_tokens    {"input_tokens": N} for a messages body
 * Errors in Anthropic's shape {"type":"error","error":{"type","message"}}. The request translation
 * is request_anthropic.c (req_parse_anthropic). */
#ifndef AR_SERVER_ANTHROPIC_H
#define AR_SERVER_ANTHROPIC_H

#include "server/http.h"
#include "server/json.h"
#include "server/serve.h"

int anthropic_register(srv *s, http_server *h);

/* {"type":"error","error":{"type":...,"message":...}} with the Anthropic error type for e->status
 * (400 invalid_request_error, 401 authentication_error, 403 permission_error, 404 not_found_error,
 * 413 request_too_large, 429 rate_limit_error, 503 overloaded_error, other 5xx api_error).
 * malloc'd. */
char *api_error_anthropic(const api_error *e);

#endif
