/* Stores, block server and fetchers behind a mount: see fs_services.h. */
#include "fs/fs_services.h"

#include <arpa/inet.h>
#include <string.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "net/sock.h"

static int open_store(struct fs_file *f, const struct fs_options *opts,
                      char *err, size_t errlen)
{
    struct cascade_store_options so = {
        .cache_root = opts->cache,
        .data_path = opts->data,
        /* A user's data file we may not write is still fine to serve from. */
        .read_only = opts->data && access(opts->data, W_OK) != 0,
    };
    char why[CASCADE_ERRLEN];
    if (cascade_store_open(&f->meta, &so, &f->store, why, sizeof why) != 0) {
        cascade_errf(err, errlen, "%s: cannot open the block cache: %s", f->meta.name, why);
        return -1;
    }
    if (opts->data) {
        /* Verified once at start: only blocks that match their hash count. */
        int64_t marked = cascade_store_adopt(f->store, NULL);
        if (marked < 0) {
            cascade_errf(err, errlen, "%s: cannot read %s", f->meta.name, opts->data);
            return -1;
        }
        log_info("%s: %lld blocks of %s verified and adopted", f->meta.name,
                 (long long)marked, opts->data);
    }
    log_info("%s: %llu of %llu blocks held (cache %s)", f->meta.name,
             (unsigned long long)cascade_store_held_count(f->store),
             (unsigned long long)f->meta.block_count, cascade_store_dir(f->store));
    return 0;
}

static int start_server(struct fs_mount *m, const struct fs_options *opts,
                        char *err, size_t errlen)
{
    struct block_server_config cfg = { .listen = opts->listen_addr };
    char why[CASCADE_ERRLEN], addr[SOCK_ADDRSTRLEN];
    if (block_server_start(&cfg, &m->server, why, sizeof why) != 0) {
        cascade_errf(err, errlen, "cannot serve blocks: %s", why);
        return -1;
    }
    block_server_address(m->server, &m->server_addr);
    for (size_t i = 0; i < m->n_files; i++)
        if (block_server_add_store(m->server, m->files[i].store) != 0) {
            cascade_errf(err, errlen, "%s: cannot register with the block server",
                         m->files[i].meta.name);
            return -1;
        }
    sock_format_addr(&m->server_addr, addr, sizeof addr);
    log_info("serving blocks on %s", addr);
    return 0;
}

static int start_fetcher(struct fs_mount *m, struct fs_file *f, const struct fs_options *opts,
                         char *err, size_t errlen)
{
    uint32_t listen_ip = ntohl(m->server_addr.sin_addr.s_addr);
    struct fetcher_config cfg = {
        .tracker = opts->trackers.addr[0],
        .subscribe = true,
        /* Listening on every address: announce the one the tracker sees. */
        .announce_ip = listen_ip,
        .announce_port = ntohs(m->server_addr.sin_port),
        .self = m->server_addr,
    };
    char why[CASCADE_ERRLEN];
    if (fetcher_start(f->store, &cfg, &f->fetcher, why, sizeof why) != 0) {
        cascade_errf(err, errlen, "%s: cannot start fetching: %s", f->meta.name, why);
        return -1;
    }
    if (opts->fill)
        fetcher_want_all(f->fetcher);
    return 0;
}

int fs_services_start(struct fs_mount *m, const struct fs_options *opts,
                      char *err, size_t errlen)
{
    for (size_t i = 0; i < m->n_files; i++)
        if (open_store(&m->files[i], opts, err, errlen) != 0)
            goto fail;
    if (start_server(m, opts, err, errlen) != 0)
        goto fail;
    for (size_t i = 0; i < m->n_files; i++)
        if (start_fetcher(m, &m->files[i], opts, err, errlen) != 0)
            goto fail;
    return 0;
fail:
    fs_services_stop(m);
    return -1;
}

void fs_services_stop(struct fs_mount *m)
{
    for (size_t i = 0; i < m->n_files; i++) {
        fetcher_stop(m->files[i].fetcher);
        m->files[i].fetcher = NULL;
    }
    block_server_stop(m->server);
    m->server = NULL;
    for (size_t i = 0; i < m->n_files; i++) {
        cascade_store_close(m->files[i].store);
        m->files[i].store = NULL;
    }
}
