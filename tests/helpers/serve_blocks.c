/* serve_blocks: one file served through the block server and nothing else
 * (no tracker, no fetching), for contrib/bench/bench_server_attack.sh.
 *
 *   serve_blocks --data FILE --cache DIR [--listen IP:PORT] [--block-size N]
 *                [--max-connections N] [--max-per-address N]
 *                [--request-timeout MS] [--idle-timeout MS]
 *
 * Makes DIR (if need be) and DIR/served.cascade for FILE, verifies FILE into a read-only store
 * under DIR, then prints "hash HEX", "blocks N" and "listening on IP:PORT"
 * on stdout. On SIGTERM or SIGINT it prints one line of the server's stats
 * ("stats blocks_served=... connections_shed=...") and exits 0. Limits left
 * out (or 0) are the server's defaults. Exit 1 on failure, 2 on bad usage. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cascade/create.h"
#include "cascade/log.h"
#include "cascade/meta.h"
#include "cascade/store.h"
#include "cascade/util.h"
#include "net/block_server.h"
#include "net/sock.h"

struct options {
    const char *data, *cache, *listen, *block_size;
    const char *limits[4];   /* max-connections, max-per-address, request-timeout, idle-timeout */
};

static const char *const limit_names[4] = {"--max-connections", "--max-per-address",
                                           "--request-timeout", "--idle-timeout"};

/* The one file, always there: the server pins nothing we could lose. */
struct served {
    struct cascade_meta meta;
    struct cascade_store *store;
};

static void *source_acquire(void *ctx, const uint8_t *hash, struct cascade_store **st,
                            uint64_t *block_count)
{
    struct served *s = ctx;
    if (memcmp(hash, s->meta.cascade_hash, CASCADE_HASH_LEN) != 0)
        return NULL;
    *st = s->store;
    *block_count = s->meta.block_count;
    return s;
}

static void source_release(void *ctx, void *file, uint64_t bytes_sent)
{
    (void)ctx;
    (void)file;
    (void)bytes_sent;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: serve_blocks --data FILE --cache DIR [--listen IP:PORT] [--block-size N]\n"
                 "                    [--max-connections N] [--max-per-address N]\n"
                 "                    [--request-timeout MS] [--idle-timeout MS]\n");
}

static int parse_args(int argc, char **argv, struct options *o)
{
    memset(o, 0, sizeof *o);
    o->listen = "127.0.0.1:0";
    for (int i = 1; i < argc; i++) {
        const char **slot = NULL;
        if (strcmp(argv[i], "--data") == 0) slot = &o->data;
        else if (strcmp(argv[i], "--cache") == 0) slot = &o->cache;
        else if (strcmp(argv[i], "--listen") == 0) slot = &o->listen;
        else if (strcmp(argv[i], "--block-size") == 0) slot = &o->block_size;
        for (int k = 0; k < 4; k++)
            if (strcmp(argv[i], limit_names[k]) == 0)
                slot = &o->limits[k];
        if (!slot || i + 1 >= argc) {
            fprintf(stderr, "serve_blocks: unexpected argument '%s'\n", argv[i]);
            return -1;
        }
        *slot = argv[++i];
    }
    if (!o->data || !o->cache) {
        fprintf(stderr, "serve_blocks: --data and --cache are required\n");
        return -1;
    }
    return 0;
}

/* The server's limits from the options; -1 with a message. */
static int parse_limits(const struct options *o, struct block_server_config *cfg)
{
    int *fields[4] = {&cfg->max_connections, &cfg->max_per_address, &cfg->request_timeout_ms,
                      &cfg->idle_timeout_ms};
    for (int k = 0; k < 4; k++) {
        uint64_t v = 0;
        if (o->limits[k] && (cascade_parse_size(o->limits[k], &v) < 0 || v > INT_MAX)) {
            fprintf(stderr, "serve_blocks: %s: '%s' is not a count from 0 to %d\n",
                    limit_names[k], o->limits[k], INT_MAX);
            return -1;
        }
        *fields[k] = (int)v;
    }
    return 0;
}

/* The .cascade of the data file, its meta and a verified store. */
static int open_served(const struct options *o, struct served *s)
{
    char err[CASCADE_ERRLEN], path[4096];
    uint64_t bs = CASCADE_DEFAULT_BLOCK_SIZE;
    if (o->block_size && (cascade_parse_size(o->block_size, &bs) < 0 || bs == 0)) {
        fprintf(stderr, "serve_blocks: --block-size: '%s' is not a size\n", o->block_size);
        return -1;
    }
    if (mkdir(o->cache, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "serve_blocks: %s: %s\n", o->cache, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/served.cascade", o->cache);
    struct cascade_store_options so = {.cache_root = o->cache, .data_path = o->data,
                                       .read_only = true};
    if (cascade_create(o->data, bs, path, NULL, NULL, err, sizeof err) < 0 ||
        cascade_meta_load(path, &s->meta, err, sizeof err) < 0 ||
        cascade_store_open(&s->meta, &so, &s->store, err, sizeof err) < 0) {
        fprintf(stderr, "serve_blocks: %s\n", err);
        return -1;
    }
    if (cascade_store_adopt(s->store, NULL) < 0 || !cascade_store_complete(s->store)) {
        fprintf(stderr, "serve_blocks: %s does not verify against its own .cascade\n", o->data);
        return -1;
    }
    return 0;
}

static void print_stats(struct block_server *srv)
{
    struct block_server_stats st;
    block_server_get_stats(srv, &st);
    printf("stats blocks_served=%llu connections_total=%llu connections_open=%llu "
           "connections_shed=%llu connections_refused=%llu requests_timed_out=%llu\n",
           (unsigned long long)st.blocks_served, (unsigned long long)st.connections_total,
           (unsigned long long)st.connections_open, (unsigned long long)st.connections_shed,
           (unsigned long long)st.connections_refused, (unsigned long long)st.requests_timed_out);
}

int main(int argc, char **argv)
{
    struct options o;
    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return CASCADE_EXIT_OK;
    }
    struct block_server_config cfg = {0};
    char err[CASCADE_ERRLEN];
    if (parse_args(argc, argv, &o) < 0 || parse_limits(&o, &cfg) < 0) {
        usage(stderr);
        return CASCADE_EXIT_USAGE;
    }
    if (sock_parse_addr(o.listen, "127.0.0.1", 0, &cfg.listen, err, sizeof err) < 0) {
        fprintf(stderr, "serve_blocks: --listen: %s\n", err);
        return CASCADE_EXIT_USAGE;
    }
    cascade_log_init("serve_blocks", CASCADE_LOG_WARN, false);
    /* Signals are taken by sigwait below; the server's thread inherits the mask. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    struct served s = {0};
    if (open_served(&o, &s) < 0)
        return CASCADE_EXIT_FAIL;
    cfg.source = (struct block_server_source){.ctx = &s, .acquire = source_acquire, .release = source_release};
    struct block_server *srv;
    if (block_server_start(&cfg, &srv, err, sizeof err) < 0) {
        fprintf(stderr, "serve_blocks: %s\n", err);
        return CASCADE_EXIT_FAIL;
    }
    char hex[CASCADE_HEX_LEN], addr[SOCK_ADDRSTRLEN];
    cascade_hex(s.meta.cascade_hash, CASCADE_HASH_LEN, hex);
    struct sockaddr_in bound;
    block_server_address(srv, &bound);
    sock_format_addr(&bound, addr, sizeof addr);
    printf("hash %s\nblocks %llu\nlistening on %s\n", hex,
           (unsigned long long)s.meta.block_count, addr);
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    print_stats(srv);
    block_server_stop(srv);
    cascade_store_close(s.store);
    cascade_meta_free(&s.meta);
    return CASCADE_EXIT_OK;
}
