/* cli/cli.h — subcommands of the arbor CLI. Each returns the process exit code. */
#ifndef AR_CLI_H
#define AR_CLI_H

#include <stdbool.h>

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_mkdraft(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* Print "arbor: <msg>" to stderr and return 1. */
int cli_fail(const char *fmt, ...);

/* --kv-type f16|f32 (also llama.cpp's -ctk / --cache-type-k spelling): *f32 = v is "f32".
 * Returns 0, or prints what is allowed and returns 1. */
int cli_kv_type(const char *flag, const char *v, bool *f32);

#endif
