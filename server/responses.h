/* server/responses.h — the OpenAI Responses endpoints (what Codex speaks):
 *   POST /v1/responses                 a response, streamed (typed events with sequence_number,
 *                                      ending with response.completed) or not; output items
 *                                      reasoning / message / function_call
 *   POST /v1/responses/input_tokens    {"object":"response.input_tokens","input_tokens":N}
 * Also served without the /v1 prefix. Errors in OpenAI's shape. The request translation is
 * request_responses.c (req_parse_responses); the server is stateless (no stored responses). */
#ifndef AR_SERVER_RESPONSES_H
#define AR_SERVER_RESPONSES_H

#include "server/http.h"
#include "server/serve.h"

int responses_register(srv *s, http_server *h);

#endif
