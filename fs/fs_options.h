/* Command line of cascadefs: our -o options (one fuse_opt table), the
 * positional arguments (.cascade files or a folder, then the mount point),
 * and what is left over for libfuse (-f, -d, -s, allow_other, ...).
 *
 *   cascadefs [options] FILE.cascade... | DIR  MOUNTPOINT
 *
 * Options may come before or after the positionals, as mount.fuse3 calls
 * `cascadefs SOURCE MOUNTPOINT -o OPTIONS` for an /etc/fstab line. */
#ifndef FS_OPTIONS_H
#define FS_OPTIONS_H

#include <fuse_opt.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cascade/store.h"
#include "net/tracker_client.h"

#define FS_DEFAULT_LISTEN "0.0.0.0:0"
#define FS_DEFAULT_READAHEAD_BLOCKS 2
#define FS_DEFAULT_TIMEOUT_S 30

/* Filled by fs_options_parse; strings are owned (free with fs_options_free). */
struct fs_options {
    char *tracker;          /* -o tracker=HOST:PORT[,HOST:PORT...] (else $CASCADE_TRACKER, else default) */
    char *listen;           /* -o listen=IP:PORT for serving blocks */
    char *cache;            /* -o cache=DIR (NULL: the store's default root) */
    char *data;             /* -o data=PATH: a local data file (one .cascade only) */
    unsigned readahead;     /* -o readahead=N: read-ahead beyond a run, in blocks */
    unsigned timeout;       /* -o timeout=SECONDS: a read waits this long, then EIO */
    unsigned upload_slots;  /* -o upload_slots=N: blocks sent to peers at once (0: default) */
    int fill;               /* -o fill: fetch every block in the background */
    int nosplice;           /* -o nosplice: copy read replies through memory */
    int stack;              /* -o stack: mount even on top of a cascadefs mount */
    char *cache_max_arg;    /* -o cache_max=SIZE|N%: limit of the cache's own data */
    char *verify_arg;       /* -o verify=first|always|never */
    int show_help;
    int show_version;

    char **positionals;     /* every non-option argument, in order */
    size_t n_positionals;

    /* Parsed forms of the strings above. */
    struct tracker_list trackers;
    struct sockaddr_in listen_addr;
    uint64_t cache_max;     /* bytes (0: no limit) */
    enum cascade_verify verify;
};

/* Parse argv into opts; args keeps what libfuse should see (program name,
 * FUSE options, and the mount point, which goes back in last).
 * 0 on success; -1 with a message for bad usage. With --help/--version
 * it returns 0 and sets show_help/show_version (args still usable for
 * fuse_lib_help). */
int fs_options_parse(int argc, char **argv, struct fs_options *opts, struct fuse_args *args,
                     char *err, size_t errlen);
void fs_options_free(struct fs_options *opts);

/* The .cascade sources: every positional but the last (the mount point). */
static inline size_t fs_options_source_count(const struct fs_options *opts)
{
    return opts->n_positionals ? opts->n_positionals - 1 : 0;
}

void fs_options_usage(const char *prog, FILE *out);

#endif
