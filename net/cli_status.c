/* PLACEHOLDER until its issue lands: replaced by the real subcommands. */
#include <stdio.h>
#include "net/cli.h"
int cli_status(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "cascade %s: not built yet\n", argv[0]);
    return CLI_FAIL;
}
