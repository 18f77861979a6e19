/* tok/toolcall.h — incremental parser for what a Qwen3.5/3.6 model writes (spec qwen35.md §6.5).
 *
 * The model's output is reasoning (inside <think>...</think>; the generation prompt usually opens the
 * block already), then content, then zero or more tool calls in the XML-ish Qwen3-Coder form:
 *
 *     <tool_call>\n<function=NAME>\n<parameter=P>\nVALUE\n</parameter>\n...</function>\n</tool_call>
 *
 * Feed the generated text in pieces of any size (a split may fall inside a tag or inside a UTF-8
 * sequence); the parser calls back with events:
 *   AR_TC_TEXT        content outside tool calls (data, len)
 *   AR_TC_REASONING   reasoning text (data, len)
 *   AR_TC_CALL_START  a call begins (call_index 0, 1, ..., name, id)
 *   AR_TC_CALL_ARGS   a piece of the call's arguments as JSON text (data, len); the pieces of one call
 *                     concatenate to one JSON object, e.g. {"city":"Paris","days":3}
 *   AR_TC_CALL_END    the call is complete
 * Every data piece is valid UTF-8 (invalid bytes of the model's output become U+FFFD). Text that might
 * be the start of a tag is held back until it is decided, and flushed by ar_tc_finish.
 *
 * Rules (llama.cpp common/parsers/qwen3-coder.cpp, made lenient):
 *  - reasoning ends at "</think>" or at a tool call; it is trimmed of surrounding whitespace;
 *  - whitespace between content and a tag is dropped (the template puts "\n\n" there);
 *  - "<tool_call>" starts a call only when the function named next is one of the tools given; with no
 *    tools, or an unknown name, or anything else after "<tool_call>", the text stays content;
 *  - a parameter value is the text between "<parameter=P>\n" and "\n</parameter>" (one newline stripped
 *    at each end), typed by the tool's JSON schema: a string parameter becomes a JSON string (streamed
 *    as it arrives); a parameter whose types exclude "string" keeps its text as JSON when it parses as
 *    JSON (like llama.cpp, which leaves the schema to the grammar), else becomes a string; a union with
 *    "string" (and an unknown or schema-less parameter) is JSON only when the text parses as a non-string
 *    value of one of its types, else the string;
 *  - a repeated parameter name keeps its first value;
 *  - malformed output never fails: garbage inside a call ends the call (its JSON is closed) and is
 *    content again; an unterminated call is closed by ar_tc_finish.
 * Call ids are "call_" + 24 letters/digits, unique per parser and call (ar_tc_set_id_seed makes them
 * reproducible). */
#ifndef AR_TOK_TOOLCALL_H
#define AR_TOK_TOOLCALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef enum { AR_TC_TEXT, AR_TC_REASONING, AR_TC_CALL_START, AR_TC_CALL_ARGS, AR_TC_CALL_END } ar_tc_event_kind;

typedef struct ar_tc_event {
    ar_tc_event_kind kind;
    int              call_index;   /* the call's index for CALL_* events, -1 for TEXT / REASONING */
    const char      *name;         /* function name (CALL_*), else NULL */
    const char      *id;           /* call id (CALL_*), else NULL */
    const char      *data;         /* TEXT, REASONING, CALL_ARGS: the piece (not NUL-terminated) */
    size_t           len;
} ar_tc_event;

/* Pointers in ev are valid during the call only. A non-zero return stops the parser: ar_tc_feed /
 * ar_tc_finish return that value, and the parser must not be fed again. */
typedef int (*ar_tc_cb)(void *ctx, const ar_tc_event *ev);

typedef struct ar_toolcall_parser ar_toolcall_parser;

/* tools_json: the request's tools array (OpenAI {"type": "function", "function": {"name",
 * "parameters"}} or Anthropic {"name", "input_schema"} elements), or NULL / "[]" for none.
 * starts_in_reasoning: the generation prompt already opened "<think>" (Qwen3.5/3.6 with thinking on);
 * otherwise a "<think>" at the very start of the output opens reasoning. Returns NULL and fills err
 * (AR_EFORMAT: tools_json is not JSON; AR_ENOMEM). */
ar_toolcall_parser *ar_tc_create(const char *tools_json, bool starts_in_reasoning, ar_error *err);
void ar_tc_free(ar_toolcall_parser *p);

/* Call ids from now on derive from seed (tests); by default each parser gets a fresh seed. */
void ar_tc_set_id_seed(ar_toolcall_parser *p, uint64_t seed);

/* Parse the next piece of generated text. Returns 0 or the callback's non-zero value (or AR_ENOMEM). */
int ar_tc_feed(ar_toolcall_parser *p, const char *text, size_t len, ar_tc_cb cb, void *ctx);

/* End of generation: flush held-back text, close an unterminated call. */
int ar_tc_finish(ar_toolcall_parser *p, ar_tc_cb cb, void *ctx);

/* Number of tool calls started so far. */
int ar_tc_n_calls(const ar_toolcall_parser *p);

#endif
