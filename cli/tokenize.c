/* cli/tokenize.c — placeholder until the subcommand lands (replaced by its owner). */
#include "cli/cli.h"
int cmd_tokenize(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("'tokenize' is not built yet"); }
