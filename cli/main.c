/* cli/main.c — the arbor command: dispatches to one subcommand per file in cli/. */
#include "cli/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct { const char *name; int (*fn)(int, char **); const char *help; } commands[] = {
    { "serve",    cmd_serve,    "OpenAI/Anthropic-compatible HTTP server ([-m MODEL] [--port P])" },
    { "run",      cmd_run,      "generate text from a prompt (-m MODEL -p PROMPT [-n N] [--chat])" },
    { "eval",     cmd_eval,     "write the logits of every position (LLOGITS1) for comparisons" },
    { "bench",    cmd_bench,    "measure prompt, decode and verify(M) speed (-m MODEL [--verify 1,2,4,...])" },
    { "info",     cmd_info,     "describe a GGUF file (architecture, tensors, tokenizer)" },
    { "tokenize", cmd_tokenize, "print token ids of a text (-m MODEL [--special] [-v] TEXT | -f FILE)" },
    { "quantize", cmd_quantize, "quantize a GGUF (IN OUT TYPE, e.g. q4_k_m, q8_0)" },
    { "mkmodel",  cmd_mkmodel,  "write a synthetic qwen35 GGUF with random weights" },
    { "mkdraft",  cmd_mkdraft,  "write a synthetic DFlash drafter GGUF for a target" },
};

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("arbor: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_kv_type(const char *flag, const char *v, bool *f32)
{
    if (v && !strcmp(v, "f16")) *f32 = false;
    else if (v && !strcmp(v, "f32")) *f32 = true;
    else return cli_fail("%s: '%s' is not a KV cache type (f16, the default, or f32)", flag, v ? v : "");
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: arbor COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].help);
    fprintf(out, "\n'arbor COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) { usage(stderr); return 1; }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) { usage(stdout); return 0; }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    cli_fail("unknown command '%s'", argv[1]);
    usage(stderr);
    return 1;
}
