/* cli/run.c — placeholder until the subcommand lands (replaced by its owner). */
#include "cli/cli.h"
int cmd_run(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("'run' is not built yet"); }
