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
    for (size_t i = 0; i < m->n_files; i++)
        m->files[i].nf = NULL;
    node_stop(m->node);
    m->node = NULL;
}
