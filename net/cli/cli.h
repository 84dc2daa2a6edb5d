/* Subcommands of the `cascade` program. Each takes argc/argv starting at the
 * subcommand name and returns the exit code (enum cascade_exit in util.h):
 *   0 success, 1 failure (the work could not be done), 2 bad usage or bad input. */
#ifndef NET_CLI_H
#define NET_CLI_H

#include "cascade/util.h"

int cli_create(int argc, char **argv);
int cli_info(int argc, char **argv);
int cli_verify(int argc, char **argv);
int cli_get(int argc, char **argv);
int cli_seed(int argc, char **argv);
int cli_status(int argc, char **argv);
int cli_cache(int argc, char **argv);

#endif
