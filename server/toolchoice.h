/* server/toolchoice.h — tool_choice "required" / a named tool, and parallel tool calls off, enforced
 * by constrained decoding: an ar_constraint_ops (spec/sample.h) that keeps the generated text inside
 * the Qwen3.5/3.6 tool-call format (specs qwen35.md §6.5) as tok/toolcall.h parses it. With
 * tool_choice "auto" the same constraint runs lazily (tchoice_params.lazy): text and the end of the
 * turn are free (no mask at all outside a tag), and a call the model starts with "<tool_call>" is held
 * to the format from there on:
 *
 *   [reasoning ... "</think>"]  ws  "<tool_call>" ws "<function=" NAME ">"
 *       ( ws "<parameter=" PARAM ">" VALUE "</parameter>" )*  ws "</function>" ws "</tool_call>"
 *   then, parallel calls allowed: ws and another "<tool_call>..." or the end of generation;
 *   parallel calls off: the end of generation.
 *
 * - reasoning: when the prompt leaves "<think>" open, anything goes except an end-of-generation
 *   token, until "</think>" (or a "<tool_call>", which the parser also takes as the end of
 *   reasoning). When the generation budget is known and only think_reserve tokens are left, the
 *   constraint closes the reasoning itself (only "</think>" may come, after up to 2 whitespace
 *   bytes), so a call still fits: a reasoning budget for tool_choice required.
 * - ws: up to 8 whitespace bytes before "<tool_call>", 4 elsewhere (the template writes "\n" or
 *   "\n\n"), so a model cannot stall in whitespace;
 * - NAME: one of the allowed functions (every tool for "required", the named one otherwise);
 * - PARAM: a property of that function's JSON schema not given yet in this call (any name of at most
 *   64 bytes when the schema lists no properties); "</function>" only once the schema's required
 *   properties are all given;
 * - VALUE, typed by the property's schema: "type" integer / number: ws, a JSON number (integer: no
 *   fraction or exponent; at most 15 integer digits, 15 fraction digits, 3 exponent digits), ws,
 *   "</parameter>"; boolean: ws "true" | "false" ws "</parameter>"; a string "enum" (values without
 *   '<' or newline): "\n" VALUE "\n</parameter>". Otherwise (strings, objects, arrays, unions) free
 *   text: anything except an end-of-generation token, "</function>" or "</tool_call>" (which would
 *   end the value implicitly); the first "</parameter>" ends it. A value the budget cuts stays cut
 *   (finish "length"): the constraint never closes a call it did not see finished, so a truncated
 *   file or command is never passed off as a complete call.
 * Text is matched on the bytes of the tokens (special tokens print nothing: they are only allowed
 * where anything is); a token is allowed when all its bytes keep the text inside the format, so the
 * model picks its own tokenization of the forced parts ("<tool_call>" as one added token or as
 * "<", "tool", "_call", ">").
 *
 * Cost per step: free text (reasoning, values) checks only the tokens with a '<' (a few thousand of
 * 248K); forced text checks only the tokens whose first byte may come (tokens grouped by first byte
 * once per vocabulary: tchoice_vocab_get). About 0.1-1 ms per token on a 248K vocabulary.
 * Nothing is allocated per step. */
#ifndef AR_SERVER_TOOLCHOICE_H
#define AR_SERVER_TOOLCHOICE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "spec/sample.h"
#include "tok/vocab.h"

/* The vocabulary's token pieces, grouped for the masks. Built on first use and cached for the life of
 * the process (keyed by the vocabulary and a hash of its token texts, so a freed vocabulary whose
 * address is reused is never mistaken for the old one). Thread-safe; NULL (err filled) when out of
 * memory. */
typedef struct tchoice_vocab tchoice_vocab;
const tchoice_vocab *tchoice_vocab_get(const ar_vocab *v, ar_error *err);

typedef struct tchoice_params {
    const char *const *tools;   /* the request's tools, each one JSON object: {"type": "function", "function":
                                   {"name", "parameters"}} (server/request.h) or {"name", "parameters" |
                                   "input_schema"} */
    int         n_tools;
    const char *name;           /* NULL: any of the tools (required / any); else only this one (named) */
    bool        reasoning_open; /* the prompt ends inside an open "<think>" block */
    bool        parallel;       /* more than one call (false: the end of generation after the first) */
    bool        lazy;           /* tool_choice auto (name must be NULL): the model may answer in text or
                                   end; a call it starts ("<tool_call>") is held to the format from there */
    int         budget;         /* tokens the generation may produce at most (max_tokens, or the context
                                   room); <= 0: unknown (no reasoning cut) */
    int         think_reserve;  /* reasoning is closed when this many budget tokens are left; <= 0: a
                                   quarter of the budget, at least 64 and at most 4096 */
} tchoice_params;

typedef struct tchoice tchoice;

/* AR_EINVAL when no allowed function can be written in the format (a name that is empty, longer
 * than 256 bytes or holds '<', '>' or a newline), or the tools are not JSON. */
int  tchoice_create(tchoice **out, const tchoice_vocab *tv, const tchoice_params *p, ar_error *err);
void tchoice_free(tchoice *c);

/* The ops to attach with ar_sampler_set_constraint / ar_sampler_params.constraint (user: the tchoice). */
extern const ar_constraint_ops tchoice_ops;

/* Introspection (tests, logs). */
int         tchoice_n_calls(const tchoice *c);     /* calls completed ("</tool_call>" written) */
const char *tchoice_state(const tchoice *c);       /* "think", "pre", "function", "name", "body",
                                                      "param", "value", "tail", "post", "done", "free" */

#endif
