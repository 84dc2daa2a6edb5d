/* The state of one cascadefs mount and the FUSE operations over it.
 *
 * The tree is flat: the root folder (mode 0555) holds one read-only file
 * (mode 0444) per .cascade file, named after it without ".cascade". Names
 * and sizes come from the .cascade files alone, so listing and stat never
 * touch the network. Everything that would write answers EROFS.
 *
 * A read goes down once and comes back once: it asks the peer node for its
 * byte range (missing blocks wanted urgently, the handle's read-ahead
 * window as prefetch; see readahead.h), waits once until the mount's
 * timeout, then replies from the store (under a pin of its blocks; see
 * store.h). An open handle keeps its file's store open (a node pin) until
 * release.
 *
 * Attributes and names are cached by the kernel for a day, but a file's
 * st_blocks (its held bytes, for `du`) changes as blocks arrive or are
 * evicted: a thread of the mount tells the kernel to forget the entry of
 * a file whose held bytes changed, at most once a second per file. */
#ifndef FS_OPS_H
#define FS_OPS_H

#include <fuse.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "cascade/meta.h"
#include "cascade/store.h"
#include "net/node.h"
#include "net/node_status.h"

/* One mounted file. meta, name and mtime are set before mounting; nf once
 * the process runs in the background. */
struct fs_file {
    char *cascade_path;            /* where the .cascade file was read */
    struct cascade_meta meta;      /* meta.name is the name in the mount */
    char hash_hex[CASCADE_HEX_LEN];
    time_t mtime;                  /* of the .cascade file */
    struct node_file *nf;          /* its place in the node */
};

struct fs_mount {
    struct fs_file *files;         /* sorted by name (bsearch) */
    size_t n_files;
    struct peer_node *node;        /* fetches and serves every file; NULL until started */
    struct node_status_server *status; /* answers `cascade status`; NULL if it could not start */
    const char *mountpoint;        /* absolute (as libfuse resolved it), for the status */
    struct sockaddr_in server_addr;/* the address it really listens on */
    int timeout_ms;                /* how long a read waits for a block */
    uint64_t readahead_blocks;     /* first read-ahead window */
    uid_t uid;                     /* owner shown for every entry */
    gid_t gid;
    time_t mount_time;             /* mtime of the root folder */
    bool splice_allowed;           /* false with -o nosplice */
    atomic_bool reply_by_splice;   /* set once by init: see fs_ops.c */
    uint64_t cache_max;            /* the cache limit (0: none): replies are copied */
    struct fs_attr_notifier *notifier; /* tells the kernel of new held bytes (fs_ops.c) */
};

/* The table of operations; private_data of fuse_new must be a struct fs_mount. */
extern const struct fuse_operations fs_operations;

/* Stop the thread that tells the kernel of new held bytes (started by the
 * mount's init); before the node stops. Safe when it never started. */
void fs_notifier_stop(struct fs_mount *m);

/* File by its path in the mount ("/NAME"); NULL when there is none. */
struct fs_file *fs_mount_find(struct fs_mount *m, const char *path);

#endif
