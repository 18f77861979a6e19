/* cli/info.c — placeholder until the subcommand lands (replaced by its owner). */
#include "cli/cli.h"
int cmd_info(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("'info' is not built yet"); }
