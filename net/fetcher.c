/* The fetcher: see fetcher.h for what it promises. This file: starting
 * and stopping, the public calls, peers from the tracker, the put workers.
 * fetcher_loop.c: the event loop (choosing blocks, connections, answers).
 *
 * Threads:
 *   - the loop thread owns every peer connection (poll over non-blocking
 *     sockets plus an eventfd that wants/puts/stop write to): it reads
 *     answers, assigns blocks, writes requests;
 *   - FETCHER_PUT_WORKERS put workers verify and store the blocks that
 *     arrived (cascade_store_put hashes), so hashing overlaps reading;
 *   - an announcer thread (when there is a tracker) feeds peers in.
 *
 * Lock: one mutex `lock` guards the per-block state (prio, inflight, done),
 * the cursors, the peer table (except each peer's conn, which only the
 * loop thread touches), the put queue, the stats and the flags. Nothing
 * slow happens under it (no hashing, no blocking I/O); the announcer's and
 * the store's locks are never taken while holding it, except the store's
 * in fetcher_start before any thread runs.
 *
 * Choosing work (pick_block): blocks whose request got stuck on a slow
 * peer first (a duplicate request elsewhere: the head of a connection after
 * request_timeout, urgent blocks after 1.5 s), then the highest priority
 * wanted block that is neither held nor in flight, lowest index first.
 * A cursor per priority skips what is held or in flight; a block that
 * comes back (peer failed, status 2) pulls its cursor back. In the endgame
 * (few blocks missing, all in flight) idle peers double them.
 */
#include "net/fetcher.h"

#include <errno.h>
#include <ifaddrs.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "net/fetcher_internal.h"

/* Recycled block buffers: reading into fresh memory costs a page fault per
 * page, which on loopback is a good part of the time. Under lock. */
uint8_t *fetcher_pool_take(struct fetcher *f)
{
    if (f->n_pool > 0)
        return f->pool[--f->n_pool];
    return malloc(f->meta->block_size);
}

void fetcher_pool_give(struct fetcher *f, uint8_t *buf, size_t cap)
{
    if (cap == f->meta->block_size && f->n_pool < FETCHER_POOL_MAX)
        f->pool[f->n_pool++] = buf;
    else
        free(buf);
}

/* ---- peers ------------------------------------------------------------ */

static bool same_addr(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
    return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

/* An address that would reach ourselves: cfg->self, what we announce, or
 * our own port on any of our own addresses. */
static bool fetcher_is_ours(const struct fetcher *f, const struct sockaddr_in *a)
{
    if ((f->cfg.self.sin_port && same_addr(a, &f->cfg.self)) ||
        (f->announced.sin_port && same_addr(a, &f->announced)))
        return true;
    uint16_t port = ntohs(a->sin_port);
    if (port == 0 || (port != ntohs(f->cfg.self.sin_port) && port != f->cfg.announce_port))
        return false;
    uint32_t ip = ntohl(a->sin_addr.s_addr);
    if ((ip >> 24) == 127 || ip == 0)
        return true;
    for (size_t i = 0; i < f->n_local_ips; i++)
        if (f->local_ips[i] == ip)
            return true;
    return false;
}

/* Under lock. */
static void fetcher_add_peer_locked(struct fetcher *f, const struct sockaddr_in *addr)
{
    if (fetcher_is_ours(f, addr) || addr->sin_port == 0 || addr->sin_addr.s_addr == 0)
        return;
    for (size_t i = 0; i < f->n_peers; i++)
        if (same_addr(&f->peers[i]->addr, addr))
            return;
    if (f->n_peers >= FETCHER_MAX_PEERS)
        return;
    struct fetch_peer *p = calloc(1, sizeof *p);
    if (!p)
        return;
    p->addr = *addr;
    p->conn.fd = -1;
    f->peers[f->n_peers++] = p;
    f->stats.peers_known = f->n_peers;
    char a[SOCK_ADDRSTRLEN];
    peer_name(p, a, sizeof a);
    log_debug("fetcher: new peer %s", a);
}

static void on_tracker_peers(void *ctx, const struct wire_peer_record *recs, size_t n,
                             const struct sockaddr_in *announced)
{
    struct fetcher *f = ctx;
    pthread_mutex_lock(&f->lock);
    f->announced = *announced;
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_in a;
        sock_make_addr(recs[i].ip, recs[i].port, &a);
        fetcher_add_peer_locked(f, &a);
    }
    pthread_mutex_unlock(&f->lock);
    wake_loop(f);
}

static int load_local_ips(struct fetcher *f)
{
    struct ifaddrs *ifa = NULL;
    if (getifaddrs(&ifa) < 0)
        return 0;   /* only 127/8 and cfg->self are then known to be ours */
    size_t n = 0;
    for (struct ifaddrs *i = ifa; i; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET)
            n++;
    f->local_ips = calloc(n ? n : 1, sizeof *f->local_ips);
    if (!f->local_ips) {
        freeifaddrs(ifa);
        return -1;
    }
    for (struct ifaddrs *i = ifa; i; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET)
            f->local_ips[f->n_local_ips++] =
                ntohl(((const struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr);
    freeifaddrs(ifa);
    return 0;
}

static void block_landed(struct fetcher *f, uint64_t idx, size_t len)
{
    if (bit_get(f->done, idx))
        return;
    bit_set(f->done, idx);
    f->held_count++;
    while (f->low_missing < f->meta->block_count && bit_get(f->done, f->low_missing))
        f->low_missing++;
    if (f->prio[idx] != FETCH_NONE)
        f->wanted_missing--;
    f->stats.bytes_fetched += len;
    f->stats.blocks_fetched++;
    f->last_useful_ms = cascade_now_ms();
    pthread_cond_broadcast(&f->landed);
}

/* ---- put workers ------------------------------------------------------ */

static void put_finish(struct fetcher *f, struct put_item *it, int r)
{
    struct fetch_peer *p = f->peers[it->peer];
    p->verifying--;
    if (r == CASCADE_STORE_OK) {
        if (cascade_log_enabled(CASCADE_LOG_DEBUG)) {
            char a[SOCK_ADDRSTRLEN];
            peer_name(p, a, sizeof a);
            log_debug("fetched block %llu (%zu bytes) from %s", (unsigned long long)it->block,
                      it->len, a);
        }
        block_landed(f, it->block, it->len);
        fetcher_block_release(f, it->block);
        return;
    }
    fetcher_block_release(f, it->block);
    if (r == CASCADE_STORE_EHASH) {
        char a[SOCK_ADDRSTRLEN];
        peer_name(p, a, sizeof a);
        f->stats.bad_blocks++;
        if (!p->banned) {
            p->banned = true;   /* the loop closes the connection */
            f->stats.peers_dropped++;
            log_warn("peer %s dropped: block %llu does not match its hash", a,
                     (unsigned long long)it->block);
        }
        return;
    }
    log_error("fetcher: storing block %llu failed (%d)", (unsigned long long)it->block, r);
    f->store_failed = true;
    pthread_cond_broadcast(&f->landed);
}

static void *put_worker(void *arg)
{
    struct fetcher *f = arg;
    pthread_mutex_lock(&f->lock);
    for (;;) {
        while (!f->put_head && !f->stopping)
            pthread_cond_wait(&f->put_ready, &f->lock);
        if (f->stopping)
            break;
        struct put_item *it = f->put_head;
        f->put_head = it->next;
        if (!f->put_head)
            f->put_tail = NULL;
        f->put_len--;
        pthread_mutex_unlock(&f->lock);
        int r = cascade_store_put(f->st, it->block, it->data, it->len);
        pthread_mutex_lock(&f->lock);
        fetcher_pool_give(f, it->data, it->cap);
        put_finish(f, it, r);
        free(it);
        wake_loop(f);
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

/* ---- public API ------------------------------------------------------- */

static int fetcher_alloc(struct fetcher *f, char *err, size_t errlen)
{
    uint64_t n = f->meta->block_count;
    size_t bits = (size_t)((n + 7) / 8);
    f->prio = calloc(n ? n : 1, 1);
    f->inflight = calloc(n ? n : 1, 1);
    f->done = calloc(bits ? bits : 1, 1);
    f->peers = calloc(FETCHER_MAX_PEERS, sizeof *f->peers);
    if (!f->prio || !f->inflight || !f->done || !f->peers || load_local_ips(f) < 0) {
        cascade_errf(err, errlen, "out of memory for %llu blocks", (unsigned long long)n);
        return -1;
    }
    cascade_store_held_map(f->st, f->done);
    for (uint64_t i = 0; i < n; i++)
        f->held_count += bit_get(f->done, i);
    while (f->low_missing < n && bit_get(f->done, f->low_missing))
        f->low_missing++;
    return 0;
}

static void fetcher_apply_defaults(struct fetcher *f)
{
    uint64_t bs = f->meta->block_size;
    uint64_t d = bs ? FETCHER_BYTES_IN_FLIGHT / bs : 2;
    f->depth_base = d < 2 ? 2 : d > FETCHER_MAX_DEPTH / 2 ? FETCHER_MAX_DEPTH / 2 : (int)d;
    f->max_connections = f->cfg.max_connections > 0 ? f->cfg.max_connections : 8;
    f->connect_timeout_ms = f->cfg.connect_timeout_ms > 0 ? f->cfg.connect_timeout_ms : 3000;
    /* Give a big block time at a modest 256 KiB/s before asking elsewhere. */
    uint64_t t = 10000 + bs / 256;
    f->request_timeout_ms = f->cfg.request_timeout_ms > 0 ? f->cfg.request_timeout_ms
                            : t > 600000 ? 600000 : (int)t;
}

/* The announcer first: the loop reads f->announcer, so it must be set
 * before the loop thread exists. */
static int fetcher_start_announcer(struct fetcher *f, char *err, size_t errlen)
{
    if (f->cfg.tracker.sin_port == 0)
        return 0;
    int list_s = f->cfg.tracker_interval_s;
    struct announcer_config ac = {
        .tracker = f->cfg.tracker,
        .subscribe = f->cfg.subscribe,
        .announce_ip = f->cfg.announce_ip,
        .announce_port = f->cfg.announce_port,
        .list_interval_s = list_s,
        .subscribe_interval_s = list_s > 0 && list_s * 2 < 600 ? list_s * 2 : 600,
    };
    memcpy(ac.hash, f->meta->cascade_hash, CASCADE_HASH_LEN);
    return announcer_start(&ac, on_tracker_peers, f, &f->announcer, err, errlen);
}

static int fetcher_start_threads(struct fetcher *f, char *err, size_t errlen)
{
    int rc;
    for (int i = 0; i < FETCHER_PUT_WORKERS; i++) {
        if ((rc = pthread_create(&f->workers[i], NULL, put_worker, f)) != 0) {
            cascade_errf(err, errlen, "pthread_create: %s", strerror(rc));
            return -1;
        }
        f->n_workers++;
    }
    if (fetcher_start_announcer(f, err, errlen) < 0)
        return -1;
    if ((rc = pthread_create(&f->loop_thread, NULL, fetcher_loop, f)) != 0) {
        cascade_errf(err, errlen, "pthread_create: %s", strerror(rc));
        return -1;
    }
    f->loop_started = true;
    return 0;
}

int fetcher_start(struct cascade_store *st, const struct fetcher_config *cfg,
                  struct fetcher **out, char *err, size_t errlen)
{
    struct fetcher *f = calloc(1, sizeof *f);
    if (!f) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    f->st = st;
    f->meta = cascade_store_meta(st);
    f->cfg = *cfg;
    f->cfg.static_peers = NULL;   /* copied below; the caller's array need not live on */
    f->cfg.n_static_peers = 0;
    f->wake_fd = -1;
    fetcher_apply_defaults(f);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->landed, &ca);
    pthread_cond_init(&f->put_ready, &ca);
    pthread_condattr_destroy(&ca);
    f->last_useful_ms = cascade_now_ms();
    if (fetcher_alloc(f, err, errlen) < 0)
        goto fail;
    f->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (f->wake_fd < 0) {
        cascade_errf(err, errlen, "eventfd: %s", strerror(errno));
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_static_peers; i++)
        fetcher_add_peer_locked(f, &cfg->static_peers[i]);
    if (fetcher_start_threads(f, err, errlen) < 0)
        goto fail;
    *out = f;
    return 0;
fail:
    fetcher_stop(f);
    return -1;
}

void fetcher_want(struct fetcher *f, uint64_t first, uint64_t count, enum fetch_priority prio)
{
    uint64_t n = f->meta->block_count;
    if (prio <= FETCH_NONE || prio > FETCH_URGENT || first >= n)
        return;
    uint64_t end = count > n - first ? n : first + count;
    bool changed = false;
    pthread_mutex_lock(&f->lock);
    for (uint64_t i = first; i < end; i++) {
        if (bit_get(f->done, i) || f->prio[i] >= prio)
            continue;
        if (f->prio[i] == FETCH_NONE)
            f->wanted_missing++;
        f->prio[i] = (uint8_t)prio;
        if (!changed && i < f->cursor[prio])
            f->cursor[prio] = i;
        changed = true;
    }
    pthread_mutex_unlock(&f->lock);
    if (changed)
        wake_loop(f);
}

void fetcher_want_all(struct fetcher *f)
{
    fetcher_want(f, 0, f->meta->block_count, FETCH_BACKGROUND);
}

static void deadline_in(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int fetcher_wait(struct fetcher *f, uint64_t idx, int timeout_ms)
{
    if (idx >= f->meta->block_count)
        return -ERANGE;
    struct timespec ts;
    deadline_in(&ts, timeout_ms > 0 ? (uint64_t)timeout_ms : 0);
    int r = 0, rc = 0;
    pthread_mutex_lock(&f->lock);
    for (;;) {
        if (bit_get(f->done, idx)) { r = 0; break; }
        if (f->stopping) { r = -ECANCELED; break; }
        if (f->store_failed) { r = -EIO; break; }
        if (rc == ETIMEDOUT) { r = -ETIMEDOUT; break; }
        rc = pthread_cond_timedwait(&f->landed, &f->lock, &ts);
    }
    pthread_mutex_unlock(&f->lock);
    return r;
}

int fetcher_wait_complete(struct fetcher *f, int timeout_ms, int stall_ms)
{
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : cascade_now_ms() + (uint64_t)timeout_ms;
    int r;
    pthread_mutex_lock(&f->lock);
    for (;;) {
        uint64_t now = cascade_now_ms();
        if (f->held_count == f->meta->block_count) { r = 0; break; }
        if (f->stopping) { r = -ECANCELED; break; }
        if (f->store_failed) { r = -EIO; break; }
        if (stall_ms >= 0 && now - f->last_useful_ms >= (uint64_t)stall_ms) {
            r = -EHOSTUNREACH;
            break;
        }
        if (now >= deadline) { r = -ETIMEDOUT; break; }
        uint64_t wait = deadline - now;
        if (wait > 250)
            wait = 250;   /* re-check the stall clock */
        struct timespec ts;
        deadline_in(&ts, wait);
        pthread_cond_timedwait(&f->landed, &f->lock, &ts);
    }
    pthread_mutex_unlock(&f->lock);
    return r;
}

uint64_t fetcher_first_missing(struct fetcher *f)
{
    uint64_t n = f->meta->block_count, i;
    pthread_mutex_lock(&f->lock);
    for (i = 0; i < n && bit_get(f->done, i); i++)
        ;
    pthread_mutex_unlock(&f->lock);
    return i;
}

void fetcher_get_stats(struct fetcher *f, struct fetcher_stats *out)
{
    pthread_mutex_lock(&f->lock);
    *out = f->stats;
    pthread_mutex_unlock(&f->lock);
}

void fetcher_stop(struct fetcher *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->lock);
    f->stopping = true;
    pthread_cond_broadcast(&f->landed);
    pthread_cond_broadcast(&f->put_ready);
    pthread_mutex_unlock(&f->lock);
    if (f->wake_fd >= 0)
        wake_loop(f);
    if (f->loop_started)
        pthread_join(f->loop_thread, NULL);
    for (int i = 0; i < f->n_workers; i++)
        pthread_join(f->workers[i], NULL);
    /* After the loop (which asks it for peers); its callback only takes our
     * lock, so it cannot be waiting for us. */
    announcer_stop(f->announcer);
    f->announcer = NULL;
    while (f->put_head) {
        struct put_item *it = f->put_head;
        f->put_head = it->next;
        free(it->data);
        free(it);
    }
    while (f->n_pool > 0)
        free(f->pool[--f->n_pool]);
    for (size_t i = 0; f->peers && i < f->n_peers; i++) {
        if (f->peers[i]->open)
            peer_conn_close(&f->peers[i]->conn);
        free(f->peers[i]->lacks);
        free(f->peers[i]);
    }
    if (f->wake_fd >= 0)
        close(f->wake_fd);
    pthread_cond_destroy(&f->landed);
    pthread_cond_destroy(&f->put_ready);
    pthread_mutex_destroy(&f->lock);
    free(f->peers);
    free(f->prio);
    free(f->inflight);
    free(f->done);
    free(f->local_ips);
    free(f);
}
