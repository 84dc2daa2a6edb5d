/* The peer node behind a mount: see fs_services.h. */
#include "fs/fs_services.h"

#include <string.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "net/sock.h"

static int start_node(struct fs_mount *m, const struct fs_options *opts, char *err, size_t errlen)
{
    struct node_config cfg = {
        .trackers = opts->trackers,
        .serve = true,
        .listen = opts->listen_addr,
        .cache_root = opts->cache,
        .cache_max = opts->cache_max,
        .verify = opts->verify,
        .upload_slots = (int)opts->upload_slots,
    };
    char why[CASCADE_ERRLEN];
    if (node_start(&cfg, &m->node, why, sizeof why) != 0) {
        cascade_errf(err, errlen, "%s", why);
        return -1;
    }
    node_address(m->node, &m->server_addr);
    return 0;
}

/* Add f to the node. A user's data file is verified (adopted) now, before
 * the mount appears; a fill is queued (the node fills a few files at a
 * time, each keeping its store open until complete). */
static int add_file(struct fs_mount *m, struct fs_file *f, const struct fs_options *opts,
                    char *err, size_t errlen)
{
    struct node_file_options fo = {
        .data_path = opts->data,
        /* A user's data file we may not write is still fine to serve from. */
        .read_only = opts->data && access(opts->data, W_OK) != 0,
        .adopt = opts->data != NULL,
    };
    if (node_add_file(m->node, &f->meta, &fo, &f->nf, err, errlen) != 0)
        return -1;
    if (opts->data) {
        if (!node_file_open(f->nf, err, errlen))
            return -1;
        node_file_close(f->nf);
    }
    if (opts->fill)
        node_file_fill(f->nf);
    return 0;   /* else it joins its swarm when first opened */
}

/* A limit must leave room for a few of the largest blocks it manages, or
 * a read could evict what it waits for. */
#define FS_CACHE_MIN_BLOCKS 4

static int check_cache_max(const struct fs_mount *m, const struct fs_options *opts,
                           char *err, size_t errlen)
{
    if (!opts->cache_max || opts->data)
        return 0;
    for (size_t i = 0; i < m->n_files; i++) {
        const struct cascade_meta *meta = &m->files[i].meta;
        if (meta->block_size > opts->cache_max / FS_CACHE_MIN_BLOCKS) {
            char lim[32], bs[32];
            cascade_human_bytes(opts->cache_max, lim, sizeof lim);
            cascade_human_bytes(meta->block_size, bs, sizeof bs);
            cascade_errf(err, errlen, "cache_max=%s holds fewer than %d blocks of %s "
                         "(blocks of %s): give a larger limit", lim, FS_CACHE_MIN_BLOCKS,
                         meta->name, bs);
            return -1;
        }
    }
    return 0;
}

/* Answer `cascade status` on a control socket. Without it the mount still
 * works (and its xattrs tell the same figures): a warning, no failure. */
static void start_status(struct fs_mount *m, const struct fs_options *opts)
{
    struct node_status_info info = {
        .program = "cascadefs", .mountpoint = m->mountpoint, .cache_root = opts->cache,
    };
    char why[CASCADE_ERRLEN];
    if (node_status_serve(m->node, &info, &m->status, why, sizeof why) != 0)
        log_warn("no live status for cascade status (%s); the xattrs still tell the "
                 "figures", why);
    else
        log_debug("status: %s", node_status_socket(m->status));
}

int fs_services_start(struct fs_mount *m, const struct fs_options *opts,
                      char *err, size_t errlen)
{
    if (check_cache_max(m, opts, err, errlen) != 0)
        return -1;
    /* With a limit, replies are copied: a spliced reply reads the data file
     * after our read returns, when its blocks may already be evicted. */
    m->cache_max = opts->data ? 0 : opts->cache_max;
    if (start_node(m, opts, err, errlen) != 0)
        return -1;
    uint64_t holding = 0;
    for (size_t i = 0; i < m->n_files; i++) {
        if (add_file(m, &m->files[i], opts, err, errlen) != 0)
            goto fail;
        holding += node_file_held_count(m->files[i].nf) > 0;
    }
    start_status(m, opts);
    char addr[SOCK_ADDRSTRLEN];
    sock_format_addr(&m->server_addr, addr, sizeof addr);
    log_info("%zu file%s, %llu with blocks in the cache; serving on %s", m->n_files,
             m->n_files == 1 ? "" : "s", (unsigned long long)holding, addr);
    return 0;
fail:
    fs_services_stop(m);
    return -1;
}

void fs_services_stop(struct fs_mount *m)
{
    node_status_stop(m->status);   /* it reads the node: first */
    m->status = NULL;
    fs_notifier_stop(m);   /* it asks the node about every file */
    for (size_t i = 0; i < m->n_files; i++)
        m->files[i].nf = NULL;
    node_stop(m->node);
    m->node = NULL;
}
