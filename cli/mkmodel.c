/* cli/mkmodel.c — placeholder until the subcommand lands (replaced by its owner). */
#include "cli/cli.h"
int cmd_mkmodel(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("'mkmodel' is not built yet"); }
