/* The peer node: see node.h. This file: start and stop (the one place
 * their order lives), the table of files, the block server's source, and
 * the node-wide figures. */
#include "net/node.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cascade/bitmap.h"
#include "cascade/log.h"
#include "cascade/util.h"
#include "net/node_internal.h"

#define NODE_DEFAULT_CONNECTIONS 32
#define NODE_DEFAULT_CONNECT_MS 3000
#define NODE_DEFAULT_BUFFER_BYTES (32u << 20)
#define NODE_DEFAULT_IDLE_STORES 16

/* ---- the table of files ---- */

static int compare_hash(const uint8_t *hash, const struct node_file *f)
{
    return memcmp(hash, f->meta->cascade_hash, CASCADE_HASH_LEN);
}

/* Where hash is, or would go, in by_hash. Under lock. */
static size_t by_hash_slot(const struct peer_node *n, const uint8_t *hash, bool *found)
{
    size_t lo = 0, hi = n->n_files;
    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = compare_hash(hash, n->by_hash[mid]);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static struct node_file *node_find(struct peer_node *n, const uint8_t *hash)
{
    pthread_mutex_lock(&n->lock);
    bool found;
    size_t slot = by_hash_slot(n, hash, &found);
    struct node_file *f = found ? n->by_hash[slot] : NULL;
    pthread_mutex_unlock(&n->lock);
    return f;
}

static int node_grow_files(struct peer_node *n)
{
    if (n->n_files < n->files_cap)
        return 0;
    size_t cap = n->files_cap ? 2 * n->files_cap : 16;
    struct node_file **files = realloc(n->files, cap * sizeof *files);
    if (!files)
        return -1;
    n->files = files;
    struct node_file **by_hash = realloc(n->by_hash, cap * sizeof *by_hash);
    if (!by_hash)
        return -1;
    n->by_hash = by_hash;
    n->files_cap = cap;
    return 0;
}

int node_add_file(struct peer_node *n, const struct cascade_meta *meta,
                  const struct node_file_options *opts, struct node_file **out,
                  char *err, size_t errlen)
{
    static const struct node_file_options defaults = {0};
    struct node_file *f = node_file_new(n, meta, opts ? opts : &defaults, err, errlen);
    if (!f)
        return -1;
    pthread_mutex_lock(&n->lock);
    bool found;
    size_t slot = by_hash_slot(n, meta->cascade_hash, &found);
    if (found || node_grow_files(n) != 0) {
        pthread_mutex_unlock(&n->lock);
        if (found) {
            char hex[CASCADE_HEX_LEN];
            cascade_hex(meta->cascade_hash, CASCADE_HASH_LEN, hex);
            cascade_errf(err, errlen, "a file with cascade hash %.16s... is there already", hex);
        } else {
            cascade_errf(err, errlen, "out of memory");
        }
        node_file_free(f);
        return -1;
    }
    f->index = (uint32_t)n->n_files;
    n->files[n->n_files] = f;
    /* Bodies of the largest blocks must fit a few at a time. */
    if (meta->block_size <= SIZE_MAX / 3 && n->buf_limit < 3 * meta->block_size)
        n->buf_limit = 3 * (size_t)meta->block_size;
    memmove(n->by_hash + slot + 1, n->by_hash + slot, (n->n_files - slot) * sizeof *n->by_hash);
    n->by_hash[slot] = f;
    n->n_files++;
    node_cache_add_file(f);
    /* Blocks already in the cache are worth serving: say so at once. */
    if (n->agent && n->cfg.serve && f->held_hint > 0) {
        f->announced = true;
        tracker_agent_track(n->agent, f->index, meta->cascade_hash, true, false);
    }
    pthread_mutex_unlock(&n->lock);
    *out = f;
    return 0;
}

/* ---- the block server's source ---- */

static void *source_acquire(void *ctx, const uint8_t *hash, struct cascade_store **st,
                            uint64_t *block_count)
{
    struct node_file *f = node_find(ctx, hash);
    if (!f)
        return NULL;
    *block_count = f->meta->block_count;
    *st = node_file_pin_to_serve(f);
    return f;
}

static void source_release(void *ctx, void *file, uint64_t bytes_sent)
{
    (void)ctx;
    struct node_file *f = file;
    atomic_fetch_add_explicit(&f->bytes_served, bytes_sent, memory_order_relaxed);
    node_file_unpin(f);
}

static void source_asked_missing(void *ctx, void *file, uint64_t block,
                                 const struct sockaddr_in *from)
{
    struct peer_node *n = ctx;
    pthread_mutex_lock(&n->lock);
    fetch_peers_asked_missing(n, file, block, from->sin_addr.s_addr);
    pthread_mutex_unlock(&n->lock);
}

/* The swarm's source spreads its blocks: see first_copy.h. */
static bool source_hold_back(void *ctx, void *file, struct cascade_store *st, uint64_t block,
                             bool others_waiting)
{
    (void)ctx;
    struct node_file *f = file;
    /* A file we fetched blocks of came from peers that have them. */
    if (atomic_load_explicit(&f->blocks_fetched, memory_order_relaxed) ||
        !cascade_store_complete(st))
        return false;
    uint64_t now = cascade_now_ms();
    bool round_done = false;
    bool hold = first_copy_hold_back(&f->first_copy, block, others_waiting, now, &round_done);
    if (round_done)
        log_info("%s: every block has been handed out at least once (the last one leaving now, "
                 "%.1f s after the first)", f->name, (double)(now - f->first_copy.base_ms) / 1000.0);
    return hold;
}

/* ---- the tracker agent's answers ---- */

static size_t on_tracker_peers(void *ctx, uint32_t file, const struct wire_peer_record *recs,
                               size_t count, const struct sockaddr_in *announced, size_t tracker)
{
    struct peer_node *n = ctx;
    pthread_mutex_lock(&n->lock);
    size_t added = fetch_peers_from_tracker(n, file, recs, count, announced, tracker);
    pthread_mutex_unlock(&n->lock);
    node_wake_loop(n);
    return added;
}

/* ---- start ---- */

static void node_apply_defaults(struct peer_node *n)
{
    n->max_connections = n->cfg.max_connections > 0 ? n->cfg.max_connections
                                                    : NODE_DEFAULT_CONNECTIONS;
    n->connect_timeout_ms = n->cfg.connect_timeout_ms > 0 ? n->cfg.connect_timeout_ms
                                                          : NODE_DEFAULT_CONNECT_MS;
    n->buf_limit = n->cfg.buffer_bytes ? n->cfg.buffer_bytes : NODE_DEFAULT_BUFFER_BYTES;
    n->max_idle_stores = n->cfg.max_idle_stores > 0 ? n->cfg.max_idle_stores
                                                    : NODE_DEFAULT_IDLE_STORES;
    n->lacks_forget_ms = n->cfg.lacks_forget_ms > 0 ? (uint64_t)n->cfg.lacks_forget_ms
                                                    : NODE_LACKS_FORGET_MS;
}

/* The node keeps its own copies of what cfg points to. */
static int node_copy_config(struct peer_node *n, const struct node_config *cfg)
{
    if (cfg->cache_root && !(n->cache_root = strdup(cfg->cache_root)))
        return -1;
    n->cfg.cache_root = n->cache_root;
    n->cfg.static_peers = NULL;
    n->cfg.n_static_peers = 0;
    if (cfg->n_static_peers == 0)
        return 0;
    n->static_peers = calloc(cfg->n_static_peers, sizeof *n->static_peers);
    if (!n->static_peers)
        return -1;
    memcpy(n->static_peers, cfg->static_peers, cfg->n_static_peers * sizeof *n->static_peers);
    n->n_static_peers = cfg->n_static_peers;
    return 0;
}

static int node_start_server(struct peer_node *n, char *err, size_t errlen)
{
    if (!n->cfg.serve)
        return 0;
    struct block_server_config bc = {
        .listen = n->cfg.listen,
        .source = {n, source_acquire, source_release, source_asked_missing, source_hold_back},
        .watch = {n, node_inbound_sent, node_inbound_closed},
        .upload_slots = n->cfg.upload_slots,
    };
    char why[CASCADE_ERRLEN];
    if (block_server_start(&bc, &n->server, why, sizeof why) != 0) {
        cascade_errf(err, errlen, "cannot serve blocks: %s", why);
        return -1;
    }
    block_server_address(n->server, &n->server_addr);
    return 0;
}

static int node_start_agent(struct peer_node *n, char *err, size_t errlen)
{
    if (n->cfg.trackers.n == 0)
        return 0;
    uint32_t ip = n->cfg.announce_ip ? n->cfg.announce_ip
                                     : ntohl(n->server_addr.sin_addr.s_addr);
    struct tracker_agent_config ac = {
        .trackers = n->cfg.trackers,
        .announce_ip = ip,   /* 0 (listening on every address): learned per tracker */
        .announce_port = ntohs(n->server_addr.sin_port),
        .list_interval_s = n->cfg.list_interval_s,
        .subscribe_interval_s = n->cfg.subscribe_interval_s,
    };
    return tracker_agent_start(&ac, on_tracker_peers, n, &n->agent, err, errlen);
}

static int node_start_loop(struct peer_node *n, char *err, size_t errlen)
{
    int rc = pthread_create(&n->loop_thread, NULL, fetch_loop_main, n);
    if (rc != 0) {
        cascade_errf(err, errlen, "cannot start the fetch loop: %s", strerror(rc));
        return -1;
    }
    n->loop_started = true;
    return 0;
}

int node_start(const struct node_config *cfg, struct peer_node **out, char *err, size_t errlen)
{
    *out = NULL;
    sock_raise_fd_limit();   /* many files and many peers want many descriptors */
    struct peer_node *n = calloc(1, sizeof *n);
    if (!n) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    n->cfg = *cfg;
    n->wake_fd = -1;
    atomic_init(&n->stores_open, 0);
    atomic_init(&n->interrupt_pending, false);
    n->rng = (cascade_now_ms() ^ ((uint64_t)getpid() << 32)) | 1;
    node_apply_defaults(n);
    if (pthread_mutex_init(&n->lock, NULL) != 0 ||
        cascade_cond_init_monotonic(&n->put_ready) != 0 ||
        cascade_cond_init_monotonic(&n->house_wake) != 0 || node_cache_init(n) != 0) {
        cascade_errf(err, errlen, "cannot set up the node's locks");
        free(n);
        return -1;
    }
    n->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    n->inbound = node_inbound_new();
    if (n->wake_fd < 0 || !n->inbound || node_copy_config(n, cfg) != 0 ||
        fetch_peers_init(n) != 0) {
        cascade_errf(err, errlen, "cannot set up the node: %s",
                     n->wake_fd < 0 ? strerror(errno) : "out of memory");
        goto fail;
    }
    /* The server first: the tracker agent announces its real port. */
    if (node_start_server(n, err, errlen) != 0 || node_start_agent(n, err, errlen) != 0 ||
        node_workers_start(n, err, errlen) != 0 || node_house_start(n, err, errlen) != 0 ||
        node_start_loop(n, err, errlen) != 0)
        goto fail;
    if (n->server) {
        char addr[SOCK_ADDRSTRLEN];
        sock_format_addr(&n->server_addr, addr, sizeof addr);
        log_info("serving blocks on %s", addr);
    }
    *out = n;
    return 0;
fail:
    node_stop(n);
    return -1;
}

/* ---- stop ---- */

void node_interrupt_from_signal(struct peer_node *n)
{
    atomic_store(&n->interrupt_pending, true);
    uint64_t one = 1;
    ssize_t w = write(n->wake_fd, &one, sizeof one);   /* the loop does the rest */
    (void)w;
}

void node_interrupt(struct peer_node *n)
{
    pthread_mutex_lock(&n->lock);
    n->interrupted = true;
    for (size_t i = 0; i < n->n_files; i++)
        pthread_cond_broadcast(&n->files[i]->landed);
    pthread_mutex_unlock(&n->lock);
}

int node_stop(struct peer_node *n)
{
    if (!n)
        return 0;
    /* 1. No new waits; every reader wakes now. */
    pthread_mutex_lock(&n->lock);
    n->stopping = true;
    for (size_t i = 0; i < n->n_files; i++)
        pthread_cond_broadcast(&n->files[i]->landed);
    /* 2. No new peers. The loop and readers use the agent under the lock:
     * unhook it there, stop it outside (its thread may want the lock). */
    struct tracker_agent *agent = n->agent;
    n->agent = NULL;
    pthread_mutex_unlock(&n->lock);
    tracker_agent_stop(agent);
    /* 3. No new requests; connections close. */
    if (n->loop_started) {
        node_wake_loop(n);
        pthread_join(n->loop_thread, NULL);
        n->loop_started = false;
    }
    /* 4. Blocks already received are stored, not lost. */
    node_workers_stop(n);
    /* 5. No more serving (every pin of the server comes back). */
    block_server_stop(n->server);
    n->server = NULL;
    /* 6. Then the stores: flushed and closed. */
    node_house_stop(n);
    int rc = 0;
    uint64_t got = 0, lost = 0;
    for (size_t i = 0; i < n->n_files; i++) {
        struct node_file *f = n->files[i];
        if (f->fetch.store) {   /* the fetch pin */
            f->fetch.store = NULL;
            node_file_unpin(f);
        }
        if (f->pins > 0)
            log_warn("%s: still open by %d users at stop", f->name, f->pins);
        got += atomic_load(&f->bytes_fetched);
        lost += atomic_load(&f->bytes_wasted);
        f->pins = 0;
        if (node_file_close_if_idle(f, UINT64_MAX) && f->close_failed)
            rc = -1;
        node_file_free(f);
    }
    if (got > 0)
        log_info("fetched %llu bytes; %llu more arrived twice and were dropped",
                 (unsigned long long)got, (unsigned long long)lost);
    node_buffer_trim(n);
    fetch_peers_free(n);
    node_inbound_free(n->inbound);
    if (n->wake_fd >= 0)
        close(n->wake_fd);
    pthread_cond_destroy(&n->put_ready);
    pthread_cond_destroy(&n->house_wake);
    pthread_mutex_destroy(&n->lock);
    node_cache_destroy(n);
    free(n->files);
    free(n->by_hash);
    free(n->static_peers);
    free(n->cache_root);
    free(n);
    return rc;
}

/* ---- figures ---- */

void node_address(const struct peer_node *n, struct sockaddr_in *out)
{
    *out = n->server_addr;
}

void node_get_stats(struct peer_node *n, struct node_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&n->lock);
    size_t tables = n->files_cap * 2 * sizeof(struct node_file *) + NODE_MAX_PEERS * sizeof(void *);
    for (size_t i = 0; i < n->n_peers; i++) {
        const struct fetch_peer *p = n->peers[i];
        out->peers_known += fetch_peer_counts(p);
        out->peers_connected += p->open;
        tables += sizeof *p + p->files_cap * sizeof *p->files;
        for (size_t k = 0; k < p->n_files; k++)
            if (p->files[k].lacks)
                tables += bitmap_bytes(n->files[p->files[k].file]->meta->block_count) + 1;
    }
    out->buffer_bytes = n->buf_out + n->buf_pooled;
    out->buffer_bytes_peak = n->buf_peak;
    out->buffer_limit = n->buf_limit;
    if (n->server) {
        struct block_server_stats ss;
        block_server_get_stats(n->server, &ss);
        out->connections_served = ss.connections_total;
    }
    for (size_t i = 0; i < n->n_files; i++) {
        struct node_file *f = n->files[i];
        out->bytes_fetched += atomic_load_explicit(&f->bytes_fetched, memory_order_relaxed);
        out->bytes_served += atomic_load_explicit(&f->bytes_served, memory_order_relaxed);
        tables += sizeof *f;
        if (f->fetch.prio)   /* a priority, a request count and a rarity per block */
            tables += 3 * (size_t)(f->meta->block_count ? f->meta->block_count : 1);
    }
    out->table_bytes = tables;
    out->stores_open = (size_t)atomic_load(&n->stores_open);
    pthread_mutex_unlock(&n->lock);
    pthread_mutex_lock(&n->cache_lock);
    out->cache_bytes = n->cache_used;
    pthread_mutex_unlock(&n->cache_lock);
    out->cache_max = n->cfg.cache_max;
    out->bytes_evicted = atomic_load(&n->bytes_evicted);
}
