/* server/openai.h — the OpenAI-compatible endpoints:
 *   POST /v1/chat/completions   chat, streamed (SSE chat.completion.chunk) or not; reasoning as
 *                               reasoning_content; tool calls; finish_reason stop/length/tool_calls
 *   POST /v1/completions        raw prompt completion (text_completion)
 *   GET  /v1/models             the one model, with its context length
 *   POST /tokenize, /detokenize, /apply-template   llama.cpp-style helpers (prompt budgeting, tests)
 * Each is also served without the /v1 prefix, as llama.cpp does. */
#ifndef AR_SERVER_OPENAI_H
#define AR_SERVER_OPENAI_H

#include <stddef.h>

#include "server/http.h"
#include "server/serve.h"

int openai_register(srv *s, http_server *h);

/* A response/call id: prefix followed by 24 random alphanumerics ("chatcmpl-...", "call_..."). */
void oai_new_id(char *out, size_t cap, const char *prefix);

#endif
