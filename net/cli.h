/* Subcommands of the `cascade` program. Each takes argc/argv starting at the
 * subcommand name and returns the exit code:
 *   0 success, 1 failure (the work could not be done), 2 bad usage or bad input. */
#ifndef NET_CLI_H
#define NET_CLI_H

enum cli_exit { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

int cli_create(int argc, char **argv);
int cli_info(int argc, char **argv);
int cli_verify(int argc, char **argv);
int cli_get(int argc, char **argv);
int cli_seed(int argc, char **argv);
int cli_status(int argc, char **argv);

#endif
