/* The `cascade` program: dispatch to a subcommand (see cli.h). */
#include <stdio.h>
#include <string.h>

#include "net/cli/cli.h"

static const struct {
    const char *name;
    int (*run)(int, char **);
    const char *summary;
} commands[] = {
    {"create", cli_create, "make FILE.cascade from a data file"},
    {"info",   cli_info,   "show what a .cascade file describes"},
    {"verify", cli_verify, "check a data file against a .cascade file"},
    {"get",    cli_get,    "download a file from peers (download only)"},
    {"seed",   cli_seed,   "download what is missing, then serve files to peers"},
    {"status", cli_status, "show what running mounts and seeders are doing"},
    {"cache",  cli_cache,  "list, measure, trim or check the block cache"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: cascade COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-7s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'cascade COMMAND --help' describes one command;\n"
                 "'cascade -V' (or --version) prints the version.\n"
                 "Exit status: 0 success, 1 failure, 2 bad usage or bad input.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CASCADE_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return CASCADE_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("cascade %s\n", CASCADEFS_VERSION);
        return CASCADE_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "cascade: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return CASCADE_EXIT_USAGE;
}
