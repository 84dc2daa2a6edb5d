/* `cascade status MOUNTPOINT|FILE...`: progress of a cascadefs mount, read
 * from the user.cascade.* extended attributes the mount publishes (see
 * net/status_xattr.h), so it needs no connection to the mount process. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "cascade/util.h"
#include "net/cli/cli.h"
#include "net/status_xattr.h"

#define STATUS_MAP_COLUMNS 64
#define STATUS_MAP_MAX 65536

struct file_status {
    uint64_t blocks_total, blocks_held;
    uint64_t peers_known, peers_connected;
    uint64_t bytes_fetched, bytes_served;
    char map[STATUS_MAP_MAX + 1];     /* as published; may be compressed */
};

static void status_usage(FILE *out)
{
    fprintf(out,
        "usage: cascade status [--no-map] MOUNTPOINT|FILE...\n"
        "Show the progress of a cascadefs mount: per file, blocks held, peers,\n"
        "bytes fetched and served, and a block map ('#' held, '+' partly, '.' not).\n"
        "  --no-map     leave out the block map\n"
        "  -h, --help   this text\n"
        "Exit status: 0 shown, 1 not a cascadefs mount (or unreadable), 2 bad usage.\n");
}

/* Read one attribute as text; -1 (errno set) when it is not there. */
static ssize_t read_attr(const char *path, const char *attr, char *buf, size_t len)
{
    char name[64];
    snprintf(name, sizeof name, STATUS_XATTR_PREFIX "%s", attr);
    ssize_t n = getxattr(path, name, buf, len - 1);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return n;
}

static int read_number(const char *path, const char *attr, uint64_t *out)
{
    char text[32];
    if (read_attr(path, attr, text, sizeof text) < 0)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end) {
        errno = EINVAL;
        return -1;
    }
    *out = v;
    return 0;
}

static int read_status(const char *path, struct file_status *st)
{
    struct { const char *name; uint64_t *out; } nums[] = {
        {STATUS_XATTR_BLOCKS_TOTAL, &st->blocks_total}, {STATUS_XATTR_BLOCKS_HELD, &st->blocks_held},
        {STATUS_XATTR_PEERS_KNOWN, &st->peers_known}, {STATUS_XATTR_PEERS_CONNECTED, &st->peers_connected},
        {STATUS_XATTR_BYTES_FETCHED, &st->bytes_fetched}, {STATUS_XATTR_BYTES_SERVED, &st->bytes_served},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        if (read_number(path, nums[i].name, nums[i].out) != 0)
            return -1;
    if (read_attr(path, STATUS_XATTR_MAP, st->map, sizeof st->map) < 0)
        st->map[0] = '\0';
    return 0;
}

/* Squeeze the published map into at most STATUS_MAP_COLUMNS characters. */
static void compress_map(const char *map, char *out)
{
    size_t len = strlen(map);
    size_t cols = len < STATUS_MAP_COLUMNS ? len : STATUS_MAP_COLUMNS;
    for (size_t c = 0; c < cols; c++) {
        size_t from = c * len / cols, to = (c + 1) * len / cols;
        size_t full = 0, empty = 0;
        for (size_t i = from; i < to; i++) {
            full += map[i] == '#';
            empty += map[i] == '.';
        }
        out[c] = full == to - from ? '#' : empty == to - from ? '.' : '+';
    }
    out[cols] = '\0';
}

static void print_status(const char *name, const struct file_status *st, bool show_map)
{
    char fetched[32], served[32];
    cascade_human_bytes(st->bytes_fetched, fetched, sizeof fetched);
    cascade_human_bytes(st->bytes_served, served, sizeof served);
    double pct = st->blocks_total ? 100.0 * (double)st->blocks_held / (double)st->blocks_total
                                  : 100.0;
    printf("%s  %" PRIu64 "/%" PRIu64 " blocks (%.1f%%)  peers %" PRIu64 " known, %" PRIu64
           " connected  fetched %s  served %s\n", name, st->blocks_held, st->blocks_total,
           pct, st->peers_known, st->peers_connected, fetched, served);
    if (show_map && st->map[0]) {
        char line[STATUS_MAP_COLUMNS + 1];
        compress_map(st->map, line);
        printf("  [%s]\n", line);
    }
}

static int status_file(const char *path, const char *name, bool show_map)
{
    struct file_status *st = malloc(sizeof *st);
    if (!st) {
        fprintf(stderr, "cascade status: out of memory\n");
        return CASCADE_EXIT_FAIL;
    }
    int rc = read_status(path, st);
    if (rc == 0)
        print_status(name, st, show_map);
    else
        fprintf(stderr, "cascade status: %s is not a file in a cascadefs mount (%s)\n",
                path, strerror(errno));
    free(st);
    return rc == 0 ? CASCADE_EXIT_OK : CASCADE_EXIT_FAIL;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every file in the mount's root, in name order. */
static int status_mount(const char *dir, bool show_map)
{
    char probe[32];
    if (read_attr(dir, STATUS_XATTR_FILES, probe, sizeof probe) < 0) {
        fprintf(stderr, "cascade status: %s is not a cascadefs mount (%s)\n", dir,
                errno == ENODATA || errno == ENOTSUP ? "no user.cascade attributes"
                                                     : strerror(errno));
        return CASCADE_EXIT_FAIL;
    }
    struct dirent **entries = NULL;
    int n = scandir(dir, &entries, NULL, NULL);
    if (n < 0) {
        fprintf(stderr, "cascade status: cannot list %s: %s\n", dir, strerror(errno));
        return CASCADE_EXIT_FAIL;
    }
    char **names = calloc((size_t)n + 1, sizeof *names);
    size_t count = 0;
    int code = names ? CASCADE_EXIT_OK : CASCADE_EXIT_FAIL;
    for (int i = 0; i < n; i++) {
        if (names && entries[i]->d_name[0] != '.')
            names[count++] = entries[i]->d_name;
    }
    if (names)
        qsort(names, count, sizeof *names, compare_names);
    for (size_t i = 0; i < count && code == CASCADE_EXIT_OK; i++) {
        size_t len = strlen(dir) + strlen(names[i]) + 2;
        char *path = malloc(len);
        if (!path) {
            code = CASCADE_EXIT_FAIL;
            break;
        }
        snprintf(path, len, "%s/%s", dir, names[i]);
        if (status_file(path, names[i], show_map) != CASCADE_EXIT_OK)
            code = CASCADE_EXIT_FAIL;
        free(path);
    }
    free(names);
    for (int i = 0; i < n; i++)
        free(entries[i]);
    free(entries);
    return code;
}

static int status_path(const char *path, bool show_map)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "cascade status: %s: %s\n", path, strerror(errno));
        return CASCADE_EXIT_FAIL;
    }
    if (S_ISDIR(sb.st_mode))
        return status_mount(path, show_map);
    const char *slash = strrchr(path, '/');
    return status_file(path, slash ? slash + 1 : path, show_map);
}

int cli_status(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"no-map", no_argument, NULL, 'n'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool show_map = true;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': show_map = false; break;
        case 'h': status_usage(stdout); return CASCADE_EXIT_OK;
        default: status_usage(stderr); return CASCADE_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        status_usage(stderr);
        return CASCADE_EXIT_USAGE;
    }
    int code = CASCADE_EXIT_OK;
    for (int i = optind; i < argc; i++)
        if (status_path(argv[i], show_map) != CASCADE_EXIT_OK)
            code = CASCADE_EXIT_FAIL;
    return code;
}
