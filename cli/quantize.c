/* cli/quantize.c — placeholder until the subcommand lands (replaced by its owner). */
#include "cli/cli.h"
int cmd_quantize(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("'quantize' is not built yet"); }
