/* tests/test_chat.c — the Qwen3.5/3.6 chat template against exact expected strings.
 *
 * The expected strings are spec qwen35.md §6's examples, and renders of
 * llama.cpp models/templates/Qwen3.5-4B.jinja by a Jinja engine (@huggingface/jinja, checked by hand
 * against llama.cpp's own Jinja rules where the two differ: `lstrip('\n')` strips only newlines,
 * `string` of true is "True", floats print like C++ ostream). */
#include "tok/chat.h"
#include "tests/test.h"

#include <string.h>

#define MSG(r, c) { .role = (r), .content = (c) }
#define AMSG(c, rc, tc, n) { .role = "assistant", .content = (c), .reasoning_content = (rc), .tool_calls = (tc), .n_tool_calls = (n) }

#define TOOLS_BLOCK                                                                                                \
    "# Tools\n\nYou have access to the following functions:\n\n<tools>\n"                                          \
    "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather (°C)\", " \
    "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": "    \
    "[\"city\"]}}}\n</tools>\n\n"                                                                                   \
    "If you choose to call a function ONLY reply in the following format with NO suffix:\n\n<tool_call>\n"        \
    "<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"                  \
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple "       \
    "lines\n</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n- Function calls MUST follow the " \
    "specified format: an inner <function=...></function> block must be nested within <tool_call></tool_call> "  \
    "XML tags\n- Required parameters MUST be specified\n- You may provide optional reasoning for your function "  \
    "call in natural language BEFORE the function call, but NOT after\n- If there is no function call "           \
    "available, answer the question like normal with your current knowledge and do not tell the user about "     \
    "function calls\n</IMPORTANT>"

static const char *WEATHER_TOOL =
    "{ \"type\":\"function\", \"function\": {\"name\":\"get_weather\",\"description\":\"Get the weather (\\u00b0C)\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}}";

/* Render and compare; on a mismatch print where the strings part. */
static void expect(const char *name, const ar_chat_msg *m, int n, const char *const *tools, int n_tools, bool gen,
                   bool think, const char *want)
{
    char *got = NULL;
    ar_error err = {0};
    int rc = ar_chat_render_tools(m, n, tools, n_tools, gen, think, &got, &err);
    CHECK(rc == 0, "%s: render failed: %s", name, err.msg);
    if (rc) return;
    bool ok = !strcmp(got, want);
    if (!ok) {
        size_t i = 0;
        while (got[i] && got[i] == want[i]) i++;
        printf("%s: differs at byte %zu\n  got:  \"%.80s\"\n  want: \"%.80s\"\n", name, i, got + i, want + i);
    }
    CHECK(ok, "%s: rendered text differs", name);
    free(got);
}

static void expect_error(const char *name, const ar_chat_msg *m, int n, const char *const *tools, int n_tools,
                         int code, const char *substr)
{
    char *got = (char *)1;
    ar_error err = {0};
    int rc = ar_chat_render_tools(m, n, tools, n_tools, true, true, &got, &err);
    CHECK(rc == code && got == NULL, "%s: rc %d (want %d)", name, rc, code);
    CHECK(strstr(err.msg, substr) != NULL, "%s: message '%s' lacks '%s'", name, err.msg, substr);
}

int main(void)
{
    /* (a) system + user + generation prompt, thinking on */
    ar_chat_msg a[] = { MSG("system", "You are a helpful assistant."), MSG("user", "Hello!") };
    char *out = NULL;
    ar_error err = {0};
    CHECK(ar_chat_render(a, 2, true, true, &out, &err) == 0, "ar_chat_render: %s", err.msg);
    CHECK(out && !strcmp(out, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!"
                              "<|im_end|>\n<|im_start|>assistant\n<think>\n"),
          "(a) spec 6.1 example: got '%s'", out ? out : "(null)");
    free(out);

    /* (b) thinking disabled */
    expect("(b) enable_thinking=false", a, 2, NULL, 0, true, false,
           "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
           "<|im_start|>assistant\n<think>\n\n</think>\n\n");

    /* no system, no generation prompt, trimming */
    ar_chat_msg t[] = { MSG("user", "  Hi there \n\n") };
    expect("trim user", t, 1, NULL, 0, false, true, "<|im_start|>user\nHi there<|im_end|>\n");

    /* empty system message is still emitted without tools */
    ar_chat_msg es[] = { MSG("system", ""), MSG("user", "hi") };
    expect("empty system", es, 2, NULL, 0, true, true,
           "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n");
    ar_chat_msg ns[] = { MSG("system", NULL), MSG("user", "hi") };
    expect("NULL system content", ns, 2, NULL, 0, true, true,
           "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n");

    /* (d) history: an older assistant turn loses its reasoning */
    ar_chat_msg h[] = { MSG("system", "  sys  "), MSG("user", "q1"),
                        MSG("assistant", "<think>\nold reasoning\n</think>\n\nanswer one"), MSG("user", "q2") };
    expect("(d) history drops old reasoning", h, 4, NULL, 0, true, true,
           "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\nanswer one"
           "<|im_end|>\n<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n<think>\n");

    /* assistant after the last query keeps reasoning (from reasoning_content or from <think> in content);
     * lstrip('\n') keeps the space before "a2" (llama.cpp and Python; the JS engine strips it). */
    ar_chat_msg r[] = { MSG("user", "q1"), AMSG("plain answer", "  why \n", NULL, 0), MSG("user", "q2"),
                        MSG("assistant", "\n<think>r2</think>\n\n a2 ") };
    expect("reasoning of the current turn", r, 4, NULL, 0, false, true,
           "<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\nplain answer<|im_end|>\n<|im_start|>user\nq2"
           "<|im_end|>\n<|im_start|>assistant\n<think>\nr2\n</think>\n\n a2<|im_end|>\n");
    ar_chat_msg r2[] = { MSG("user", "q"), AMSG("ans", "  thought  ", NULL, 0) };
    expect("reasoning_content wins", r2, 2, NULL, 0, false, true,
           "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\nthought\n</think>\n\nans<|im_end|>\n");

    /* (c)+(d) spec 6.4 worked example: tools, reasoning, a tool call, a tool result */
    ar_chat_tool_call call = { "get_weather", "{\"city\": \"Paris\"}" };
    ar_chat_msg w[] = { MSG("system", "You are concise."), MSG("user", "Weather in Paris?"),
                        AMSG("", "Need the weather tool.", &call, 1), MSG("tool", "{\"temp_c\": 21}") };
    const char *tools[] = { WEATHER_TOOL };
    expect("(c)(d) spec 6.4 worked example", w, 4, tools, 1, true, true,
           "<|im_start|>system\n" TOOLS_BLOCK "\n\nYou are concise.<|im_end|>\n<|im_start|>user\nWeather in Paris?"
           "<|im_end|>\n<|im_start|>assistant\n<think>\nNeed the weather tool.\n</think>\n\n<tool_call>\n"
           "<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call><|im_end|>\n"
           "<|im_start|>user\n<tool_response>\n{\"temp_c\": 21}\n</tool_response><|im_end|>\n"
           "<|im_start|>assistant\n<think>\n");

    /* tools without a system message (and with an empty one: nothing appended) */
    ar_chat_msg u[] = { MSG("user", "hi") };
    const char *want_tools_only = "<|im_start|>system\n" TOOLS_BLOCK "<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                                  "<|im_start|>assistant\n<think>\n";
    expect("tools, no system", u, 1, tools, 1, true, true, want_tools_only);
    expect("tools, empty system", es, 2, tools, 1, true, true, want_tools_only);

    /* several calls with every value kind, consecutive tool results, thinking off */
    ar_chat_tool_call calls[] = {
        { "f", "{\"s\":\"a\\nb\",\"n\":3,\"o\":{\"k\":[1,\"x\"]},\"a\":[1, 2]}" },
        { "g", "{}" },
    };
    ar_chat_msg m[] = { MSG("user", "do two"), AMSG("Calling.", NULL, calls, 2), MSG("tool", "r1"),
                        MSG("tool", " r2 "), MSG("assistant", "done") };
    expect("two calls, two results", m, 5, NULL, 0, true, false,
           "<|im_start|>user\ndo two<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nCalling.\n\n"
           "<tool_call>\n<function=f>\n<parameter=s>\na\nb\n</parameter>\n<parameter=n>\n3\n</parameter>\n"
           "<parameter=o>\n{\"k\": [1, \"x\"]}\n</parameter>\n<parameter=a>\n[1, 2]\n</parameter>\n</function>\n"
           "</tool_call>\n<tool_call>\n<function=g>\n</function>\n</tool_call><|im_end|>\n<|im_start|>user\n"
           "<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n</tool_response><|im_end|>\n"
           "<|im_start|>assistant\n<think>\n\n</think>\n\ndone<|im_end|>\n<|im_start|>assistant\n<think>\n\n"
           "</think>\n\n");

    /* llama.cpp Jinja value rendering: True/False/None, floats like ostream, unicode, re-escaped strings */
    ar_chat_tool_call kinds = { "k", " { \"b\": true, \"c\": false, \"z\": null, \"f\": 2.50, \"g\": 21.0, "
                                     "\"e\": 1e-7, \"big\": 12345678901234, \"u\": \"caf\\u00e9 \\ud83d\\ude00\", "
                                     "\"q\": {\"s\": \"a\\\"b\\\\c\\t\"} } " };
    ar_chat_msg k[] = { MSG("user", "q"), AMSG(NULL, NULL, &kinds, 1) };
    expect("argument value kinds", k, 2, NULL, 0, false, true,
           "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n<tool_call>\n"
           "<function=k>\n<parameter=b>\nTrue\n</parameter>\n<parameter=c>\nFalse\n</parameter>\n"
           "<parameter=z>\nNone\n</parameter>\n<parameter=f>\n2.5\n</parameter>\n<parameter=g>\n21\n</parameter>\n"
           "<parameter=e>\n1e-07\n</parameter>\n<parameter=big>\n12345678901234\n</parameter>\n"
           "<parameter=u>\ncafé \xF0\x9F\x98\x80\n</parameter>\n<parameter=q>\n{\"s\": \"a\\\"b\\\\c\\t\"}\n"
           "</parameter>\n</function>\n</tool_call><|im_end|>\n");

    /* a user turn that is only a tool response does not count as the query */
    ar_chat_msg tr[] = { MSG("user", "real question"), MSG("assistant", "<think>x</think>calling"),
                         MSG("user", " <tool_response>\nok\n</tool_response>") };
    expect("tool-response user turn is not the query", tr, 3, NULL, 0, false, true,
           "<|im_start|>user\nreal question<|im_end|>\n<|im_start|>assistant\n<think>\nx\n</think>\n\ncalling"
           "<|im_end|>\n<|im_start|>user\n<tool_response>\nok\n</tool_response><|im_end|>\n");

    /* errors, with the template's own messages */
    ar_chat_msg late[] = { MSG("user", "x"), MSG("system", "late") };
    expect_error("system not first", late, 2, NULL, 0, AR_EINVAL, "System message must be at the beginning");
    ar_chat_msg only_sys[] = { MSG("system", "only") };
    expect_error("no user", only_sys, 1, NULL, 0, AR_EINVAL, "No user query found in messages.");
    ar_chat_msg only_tr[] = { MSG("user", "<tool_response>\nx\n</tool_response>") };
    expect_error("only a tool response", only_tr, 1, NULL, 0, AR_EINVAL, "No user query found");
    expect_error("no messages", a, 0, NULL, 0, AR_EINVAL, "No messages provided.");
    ar_chat_msg bad_role[] = { MSG("user", "x"), MSG("robot", "y") };
    expect_error("unknown role", bad_role, 2, NULL, 0, AR_EINVAL, "Unexpected message role 'robot'");
    ar_chat_msg no_role[] = { MSG(NULL, "x") };
    expect_error("missing role", no_role, 1, NULL, 0, AR_EINVAL, "has no role");
    const char *bad_tools[] = { "{\"type\": \"function\", \"function\": {\"name\": }" };
    expect_error("bad tool JSON", u, 1, bad_tools, 1, AR_EFORMAT, "tool 0 is not valid JSON");
    ar_chat_tool_call badc[] = { { "f", "[1, 2]" }, { "g", "{\"a\": 1,}" }, { "h", "{\"a\": \"\\ud800\"}" } };
    for (int i = 0; i < 3; i++) {
        ar_chat_msg bc[] = { MSG("user", "q"), AMSG("", NULL, &badc[i], 1) };
        expect_error("bad call arguments", bc, 2, NULL, 0, AR_EFORMAT, "arguments is not valid JSON");
    }
    /* deep nesting is an error, not a stack overflow */
    static char deep[4096];
    size_t p = 0;
    p += (size_t)snprintf(deep, sizeof deep, "{\"a\": ");
    for (int i = 0; i < 1000; i++) deep[p++] = '[';
    deep[p] = 0;
    ar_chat_tool_call dc = { "d", deep };
    ar_chat_msg dm[] = { MSG("user", "q"), AMSG("", NULL, &dc, 1) };
    expect_error("deep nesting", dm, 2, NULL, 0, AR_EFORMAT, "nested too deeply");
    TEST_END();
}
