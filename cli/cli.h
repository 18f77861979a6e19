/* cli/cli.h — subcommands of the arbor CLI. Each returns the process exit code. */
#ifndef AR_CLI_H
#define AR_CLI_H

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

#endif
