/* The fetcher: see fetcher.h for what it promises.
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
 * peer first (a duplicate request elsewhere), then the highest priority
 * wanted block that is neither held nor in flight, lowest index first.
 * A cursor per priority skips what is held or in flight; a block that
 * comes back (peer failed, status 2) pulls its cursor back.
 */
#include "net/fetcher.h"

#include <errno.h>
#include <ifaddrs.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "net/announcer.h"
#include "net/peer_conn.h"
#include "net/sock.h"

#define FETCHER_PUT_WORKERS 2
#define FETCHER_MAX_PEERS 1024             /* known peers kept; more are ignored */
#define FETCHER_MAX_DEPTH 64
#define FETCHER_BYTES_IN_FLIGHT (4u << 20) /* per peer, for the default depth */
#define FETCHER_LACKS_FORGET_MS 30000      /* re-ask a peer that said "not present" */
#define FETCHER_STALE_MAX 64
#define FETCHER_SCAN_LIMIT 8192            /* blocks looked at per pick */
#define FETCHER_BACKOFF_MIN_MS 500
#define FETCHER_BACKOFF_MAX_MS 60000
#define FETCHER_TICK_MS 100
#define FETCHER_IDLE_TICK_MS 500
#define FETCHER_URGENT_EXTRA 2             /* urgent requests allowed past the depth */
#define FETCHER_ENDGAME_BLOCKS 1024        /* at most this many missing: endgame */
#define FETCHER_URGENT_STUCK_MS 1500       /* urgent blocks behind a head this old go elsewhere too */
#define FETCHER_POOL_MAX 24                /* recycled block buffers kept */
#define FETCHER_POOL_BLOCK_MAX (16u << 20) /* bigger blocks are not recycled */

struct fetch_peer {
    struct sockaddr_in addr;
    bool banned;                 /* misbehaved: never again */
    bool open;                   /* conn is in use */
    int failures;                /* consecutive, for the backoff */
    uint64_t retry_at_ms;
    uint8_t *lacks;              /* blocks it said it does not have (bitmap) or NULL */
    uint64_t lacks_since_ms;
    int verifying;               /* its blocks waiting for or in a put worker */
    double rate;                 /* EWMA of bytes/s while busy */
    uint64_t rate_mark_ms, rate_mark_bytes;
    struct peer_conn conn;       /* loop thread only */
};

struct put_item {
    struct put_item *next;
    uint64_t block;
    uint8_t *data;
    size_t len;
    size_t cap;                  /* bytes allocated at data */
    size_t peer;
};

struct fetcher {
    struct cascade_store *st;
    const struct cascade_meta *meta;
    struct fetcher_config cfg;
    int depth_base;
    int request_timeout_ms;
    int connect_timeout_ms;
    int max_connections;

    pthread_mutex_t lock;
    pthread_cond_t landed;       /* broadcast when a block lands or state changes */
    pthread_cond_t put_ready;    /* the put queue got an item, or stopping */
    uint8_t *prio;               /* enum fetch_priority per block */
    uint8_t *inflight;           /* requests out + verifications pending, per block */
    uint8_t *done;               /* held (bitmap) */
    uint64_t held_count;
    uint64_t wanted_missing;     /* wanted and not held */
    uint64_t low_missing;        /* no block below this is missing (a hint) */
    uint64_t cursor[FETCH_URGENT + 1];
    uint64_t stale[FETCHER_STALE_MAX];
    size_t n_stale;
    struct fetch_peer **peers;
    size_t n_peers;
    uint8_t *pool[FETCHER_POOL_MAX];   /* recycled block buffers (block_size bytes) */
    size_t n_pool;
    struct put_item *put_head, *put_tail;
    size_t put_len;
    bool stopping;
    bool store_failed;
    uint64_t last_useful_ms;     /* a block landed or bytes arrived */
    struct fetcher_stats stats;
    uint32_t *local_ips;         /* our interface addresses (host order) */
    size_t n_local_ips;
    struct sockaddr_in announced;

    int wake_fd;                 /* eventfd */
    pthread_t loop_thread;
    pthread_t workers[FETCHER_PUT_WORKERS];
    int n_workers;
    bool loop_started;
    struct announcer *announcer;
};

/* ---- small helpers ---------------------------------------------------- */

static bool bit_get(const uint8_t *bits, uint64_t i)
{
    return bits[i / 8] & (1u << (i % 8));
}

static void bit_set(uint8_t *bits, uint64_t i)
{
    bits[i / 8] |= (uint8_t)(1u << (i % 8));
}

static uint64_t block_len(const struct cascade_meta *m, uint64_t idx)
{
    if (idx >= m->block_count)
        return 0;
    uint64_t rest = m->size - idx * m->block_size;
    return rest < m->block_size ? rest : m->block_size;
}

static uint64_t expected_len_cb(void *ctx, uint64_t idx)
{
    return block_len(ctx, idx);
}

static void wake_loop(struct fetcher *f)
{
    uint64_t one = 1;
    ssize_t n = write(f->wake_fd, &one, sizeof one);
    (void)n;   /* EAGAIN: the counter is already non-zero, the loop will wake */
}

static void peer_name(const struct fetch_peer *p, char *out, size_t outlen)
{
    sock_format_addr(&p->addr, out, outlen);
}

/* Recycled block buffers: reading into fresh memory costs a page fault per
 * page, which on loopback is a good part of the time. Under lock. */
static uint8_t *pool_take(struct fetcher *f)
{
    if (f->n_pool > 0)
        return f->pool[--f->n_pool];
    return malloc(f->meta->block_size);
}

static void pool_give(struct fetcher *f, uint8_t *buf, size_t cap)
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

/* ---- block bookkeeping (under lock) ----------------------------------- */

/* A request for idx ended without the block: it may be picked again. */
static void block_release(struct fetcher *f, uint64_t idx)
{
    if (f->inflight[idx] > 0)
        f->inflight[idx]--;
    int p = f->prio[idx];
    if (f->inflight[idx] == 0 && p != FETCH_NONE && !bit_get(f->done, idx) && idx < f->cursor[p])
        f->cursor[p] = idx;
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

static bool peer_lacks(struct fetcher *f, struct fetch_peer *p, uint64_t idx, uint64_t now)
{
    if (!p->lacks)
        return false;
    if (now - p->lacks_since_ms > FETCHER_LACKS_FORGET_MS) {
        free(p->lacks);
        p->lacks = NULL;
        return false;
    }
    (void)f;
    return bit_get(p->lacks, idx);
}

static void peer_mark_lacks(struct fetcher *f, struct fetch_peer *p, uint64_t idx)
{
    if (!p->lacks) {
        p->lacks = calloc((f->meta->block_count + 7) / 8, 1);
        if (!p->lacks)
            return;
        p->lacks_since_ms = cascade_now_ms();
    }
    bit_set(p->lacks, idx);
}

static bool conn_has(const struct peer_conn *pc, uint64_t idx)
{
    for (size_t i = 0; i < pc->inflight_count; i++)
        if (pc->inflight[(pc->inflight_head + i) % pc->inflight_cap] == idx)
            return true;
    return false;
}

/* A stuck block another peer may ask for again, or UINT64_MAX. */
static uint64_t pick_stale(struct fetcher *f, struct fetch_peer *p, uint64_t now, int min_prio)
{
    for (size_t i = 0; i < f->n_stale; i++) {
        uint64_t idx = f->stale[i];
        if (bit_get(f->done, idx)) {
            f->stale[i--] = f->stale[--f->n_stale];
            continue;
        }
        if (f->prio[idx] < min_prio || conn_has(&p->conn, idx) || peer_lacks(f, p, idx, now))
            continue;
        f->stale[i] = f->stale[--f->n_stale];
        return idx;
    }
    return UINT64_MAX;
}

static bool block_skippable(const struct fetcher *f, uint64_t idx, int prio)
{
    return f->prio[idx] != prio || f->inflight[idx] || bit_get(f->done, idx);
}

/* The next block for peer p at min_prio or above, or UINT64_MAX when it
 * has nothing to do. */
static uint64_t pick_block(struct fetcher *f, struct fetch_peer *p, uint64_t now, int min_prio)
{
    uint64_t n = f->meta->block_count;
    uint64_t idx = pick_stale(f, p, now, min_prio);
    if (idx != UINT64_MAX)
        return idx;
    for (int prio = FETCH_URGENT; prio >= min_prio; prio--) {
        while (f->cursor[prio] < n && block_skippable(f, f->cursor[prio], prio))
            f->cursor[prio]++;
        uint64_t scanned = 0;
        for (idx = f->cursor[prio]; idx < n && scanned < FETCHER_SCAN_LIMIT; idx++, scanned++) {
            if (block_skippable(f, idx, prio) || peer_lacks(f, p, idx, now))
                continue;
            return idx;
        }
    }
    return UINT64_MAX;
}

/* Endgame: the few blocks still missing are all in flight; rather than let
 * a slow or stalled peer hold the last ones, ask p too (at most two
 * requests per block). UINT64_MAX when there is none to double. */
static uint64_t pick_endgame(struct fetcher *f, struct fetch_peer *p, uint64_t now)
{
    if (f->wanted_missing == 0 || f->wanted_missing > FETCHER_ENDGAME_BLOCKS)
        return UINT64_MAX;
    uint64_t n = f->meta->block_count, end = f->low_missing + FETCHER_SCAN_LIMIT;
    for (uint64_t idx = f->low_missing; idx < n && idx < end; idx++) {
        if (bit_get(f->done, idx) || f->prio[idx] == FETCH_NONE)
            continue;
        if (f->inflight[idx] == 1 && !peer_lacks(f, p, idx, now) && !conn_has(&p->conn, idx))
            return idx;
    }
    return UINT64_MAX;
}

/* ---- connections (loop thread, under lock) ---------------------------- */

static void peer_return_inflight(struct fetcher *f, struct fetch_peer *p)
{
    size_t n = p->conn.inflight_count;
    if (n == 0)
        return;
    uint64_t *blocks = malloc(n * sizeof *blocks);
    if (!blocks) {   /* cannot list them: release one by one from the ring */
        while (p->conn.inflight_count) {
            block_release(f, peer_conn_head(&p->conn));
            p->conn.inflight_head = (p->conn.inflight_head + 1) % p->conn.inflight_cap;
            p->conn.inflight_count--;
        }
        return;
    }
    n = peer_conn_drain_inflight(&p->conn, blocks);
    for (size_t i = 0; i < n; i++)
        block_release(f, blocks[i]);
    free(blocks);
}

enum peer_verdict { PEER_IDLE_CLOSE, PEER_BACKOFF, PEER_BAN };

/* Close p's connection; its blocks go back to the pool. */
static void peer_disconnect(struct fetcher *f, struct fetch_peer *p, enum peer_verdict verdict,
                            const char *why)
{
    char a[SOCK_ADDRSTRLEN];
    peer_name(p, a, sizeof a);
    bool busy = p->conn.inflight_count > 0;
    uint64_t received = p->conn.bytes_received;
    peer_return_inflight(f, p);
    if (p->open) {
        peer_conn_close(&p->conn);
        p->open = false;
        f->stats.peers_connected--;
    }
    if (verdict == PEER_BAN) {
        if (!p->banned) {
            p->banned = true;
            f->stats.peers_dropped++;
            log_warn("peer %s dropped: %s", a, why);
        }
        return;
    }
    /* Closing a connection that has served us and has nothing pending is
     * normal (servers time idle ones out); anything else earns a backoff,
     * so a peer that hangs up at once is not redialled in a tight loop. */
    if (verdict == PEER_IDLE_CLOSE && !busy && received > 0) {
        log_debug("peer %s: idle connection closed (%s)", a, why);
        p->retry_at_ms = 0;
        return;
    }
    if (p->failures < 16)
        p->failures++;
    uint64_t delay = (uint64_t)FETCHER_BACKOFF_MIN_MS << (p->failures - 1);
    if (delay > FETCHER_BACKOFF_MAX_MS)
        delay = FETCHER_BACKOFF_MAX_MS;
    p->retry_at_ms = cascade_now_ms() + delay;
    log_debug("peer %s: %s; retry in %llu ms", a, why, (unsigned long long)delay);
}

/* best_rate: the fastest open peer's rate. */
static int peer_depth(const struct fetcher *f, const struct fetch_peer *p, double best)
{
    if (f->cfg.pipeline_depth > 0)
        return f->cfg.pipeline_depth;
    /* Peers at least half as fast as the fastest get a deeper pipeline. */
    int d = f->depth_base;
    if (best > 0 && p->rate >= best / 2)
        d *= 2;
    return d > FETCHER_MAX_DEPTH ? FETCHER_MAX_DEPTH : d;
}

/* Queue requests on p up to its pipeline depth; urgent blocks (a reader
 * waits) may go a little past it rather than wait for a free slot. */
static void peer_refill(struct fetcher *f, struct fetch_peer *p, uint64_t now, double best_rate)
{
    int depth = peer_depth(f, p, best_rate);
    for (;;) {
        int busy = (int)p->conn.inflight_count + p->verifying;
        int min_prio = busy < depth ? FETCH_BACKGROUND : FETCH_URGENT;
        if (busy >= depth + FETCHER_URGENT_EXTRA)
            return;
        uint64_t idx = pick_block(f, p, now, min_prio);
        if (idx == UINT64_MAX && busy < depth)
            idx = pick_endgame(f, p, now);
        if (idx == UINT64_MAX)
            return;
        if (peer_conn_queue_request(&p->conn, idx, f->meta->cascade_hash) < 0) {
            log_warn("fetcher: out of memory queueing a request");
            return;
        }
        if (f->inflight[idx] < UINT8_MAX)
            f->inflight[idx]++;
    }
}

static void peer_connect(struct fetcher *f, struct fetch_peer *p)
{
    char err[CASCADE_ERRLEN];
    if (peer_conn_open(&p->conn, &p->addr, err, sizeof err) < 0) {
        p->conn.fd = -1;
        peer_disconnect(f, p, PEER_BACKOFF, err);
        return;
    }
    p->open = true;
    p->rate_mark_ms = cascade_now_ms();
    p->rate_mark_bytes = 0;
    f->stats.peers_connected++;
}

/* Open connections while there is work and room. True if any peer could
 * still be used (open, or connectable now or later). */
static bool fetcher_connect_more(struct fetcher *f, uint64_t now)
{
    int open = 0;
    bool usable = false;
    for (size_t i = 0; i < f->n_peers; i++)
        if (f->peers[i]->open)
            open++;
    for (size_t i = 0; i < f->n_peers; i++) {
        struct fetch_peer *p = f->peers[i];
        if (p->banned)
            continue;
        if (p->open || p->retry_at_ms <= now)
            usable = true;
        if (!p->open && p->retry_at_ms <= now && open < f->max_connections &&
            f->wanted_missing > 0) {
            peer_connect(f, p);
            open += p->open;
        }
    }
    return usable;
}

/* Let another peer ask for idx too (it stays in flight here). */
static void mark_stale(struct fetcher *f, uint64_t idx)
{
    if (f->inflight[idx] >= 2 || bit_get(f->done, idx) || f->n_stale >= FETCHER_STALE_MAX)
        return;
    for (size_t k = 0; k < f->n_stale; k++)
        if (f->stale[k] == idx)
            return;
    f->stale[f->n_stale++] = idx;
}

/* A connection whose head has waited long: its head may go elsewhere after
 * request_timeout, and the urgent blocks queued on it (a reader waits for
 * them) much sooner. */
static void conn_mark_stale(struct fetcher *f, struct fetch_peer *p, uint64_t now)
{
    const struct peer_conn *pc = &p->conn;
    uint64_t waited = now - pc->head_since_ms;
    if (waited > (uint64_t)f->request_timeout_ms)
        mark_stale(f, peer_conn_head(pc));
    if (waited <= FETCHER_URGENT_STUCK_MS)
        return;
    for (size_t i = 0; i < pc->inflight_count; i++) {
        uint64_t idx = pc->inflight[(pc->inflight_head + i) % pc->inflight_cap];
        if (f->prio[idx] == FETCH_URGENT)
            mark_stale(f, idx);
    }
}

/* Timeouts: stuck connects, silent peers, slow heads. */
static void fetcher_check_timeouts(struct fetcher *f, uint64_t now)
{
    for (size_t i = 0; i < f->n_peers; i++) {
        struct fetch_peer *p = f->peers[i];
        if (!p->open)
            continue;
        if (!p->conn.connected) {
            if (now - p->conn.connect_started_ms > (uint64_t)f->connect_timeout_ms)
                peer_disconnect(f, p, PEER_BACKOFF, "connect timed out");
            continue;
        }
        if (p->conn.inflight_count == 0)
            continue;
        if (now - p->conn.last_progress_ms > (uint64_t)f->request_timeout_ms) {
            peer_disconnect(f, p, PEER_BACKOFF, "no answer in time");
            continue;
        }
        conn_mark_stale(f, p, now);
    }
}

/* ---- answers (loop thread) -------------------------------------------- */

static void peer_update_rate(struct fetch_peer *p, uint64_t now)
{
    uint64_t dt = now - p->rate_mark_ms;
    if (dt < 200)
        return;
    double inst = (double)(p->conn.bytes_received - p->rate_mark_bytes) * 1000.0 / (double)dt;
    p->rate = p->rate > 0 ? 0.7 * p->rate + 0.3 * inst : inst;
    p->rate_mark_ms = now;
    p->rate_mark_bytes = p->conn.bytes_received;
}

static void put_enqueue(struct fetcher *f, struct put_item *it)
{
    it->next = NULL;
    if (f->put_tail)
        f->put_tail->next = it;
    else
        f->put_head = it;
    f->put_tail = it;
    f->put_len++;
    pthread_cond_signal(&f->put_ready);
}

/* One answer from p (under lock). False when p was disconnected. */
static bool handle_answer(struct fetcher *f, size_t pi, struct peer_answer *ans)
{
    struct fetch_peer *p = f->peers[pi];
    char why[200];
    p->failures = 0;
    switch (ans->status) {
    case WIRE_STATUS_OK:
        if (bit_get(f->done, ans->block)) {
            pool_give(f, ans->body, ans->body_cap);
            block_release(f, ans->block);
            return true;
        }
        struct put_item *it = malloc(sizeof *it);
        if (!it) {
            free(ans->body);
            block_release(f, ans->block);
            return true;
        }
        *it = (struct put_item){.block = ans->block, .data = ans->body, .len = ans->body_len,
                                .cap = ans->body_cap, .peer = pi};
        p->verifying++;
        put_enqueue(f, it);
        return true;
    case WIRE_STATUS_NOT_PRESENT:
        peer_mark_lacks(f, p, ans->block);
        block_release(f, ans->block);
        return true;
    case WIRE_STATUS_UNKNOWN_HASH:
        snprintf(why, sizeof why, "does not have this file (%s)", ans->message);
        block_release(f, ans->block);
        p->failures = 6;   /* a long backoff: it may get the file later */
        peer_disconnect(f, p, PEER_BACKOFF, why);
        return false;
    default:   /* 3 or 4: we only send well-formed in-range requests */
        snprintf(why, sizeof why, "status %u for block %llu (%s)", ans->status,
                 (unsigned long long)ans->block, ans->message);
        block_release(f, ans->block);
        peer_disconnect(f, p, PEER_BAN, why);
        return false;
    }
}

static bool put_queue_full(const struct fetcher *f)
{
    return f->put_len >= 2 * FETCHER_PUT_WORKERS + 2;
}

/* Read everything p has sent. */
static void peer_on_readable(struct fetcher *f, size_t pi)
{
    struct fetch_peer *p = f->peers[pi];
    char err[CASCADE_ERRLEN];
    if (!p->conn.spare && f->meta->block_size <= FETCHER_POOL_BLOCK_MAX) {
        pthread_mutex_lock(&f->lock);
        uint8_t *buf = pool_take(f);
        pthread_mutex_unlock(&f->lock);
        if (buf)
            peer_conn_give_buffer(&p->conn, buf, f->meta->block_size);
    }
    for (;;) {
        struct peer_answer ans;
        int r = peer_conn_read_answer(&p->conn, expected_len_cb, (void *)f->meta, &ans, err,
                                      sizeof err);
        if (r == PEER_CONN_EAGAIN)
            return;
        pthread_mutex_lock(&f->lock);
        if (r < 0) {
            enum peer_verdict v = r == PEER_CONN_EPROTO ? PEER_BAN : PEER_IDLE_CLOSE;
            peer_disconnect(f, p, v, err);
            pthread_mutex_unlock(&f->lock);
            return;
        }
        if (ans.status == WIRE_STATUS_OK)
            f->last_useful_ms = cascade_now_ms();
        bool still_open = handle_answer(f, pi, &ans);
        bool full = put_queue_full(f);
        pthread_mutex_unlock(&f->lock);
        if (!still_open || full)
            return;
    }
}

static void peer_on_writable(struct fetcher *f, size_t pi)
{
    struct fetch_peer *p = f->peers[pi];
    char err[CASCADE_ERRLEN];
    if (!p->conn.connected) {
        if (peer_conn_finish_connect(&p->conn, err, sizeof err) < 0) {
            pthread_mutex_lock(&f->lock);
            peer_disconnect(f, p, PEER_BACKOFF, err);
            pthread_mutex_unlock(&f->lock);
            return;
        }
        char a[SOCK_ADDRSTRLEN];
        peer_name(p, a, sizeof a);
        log_debug("peer %s: connected", a);
    }
    if (peer_conn_flush(&p->conn, err, sizeof err) < 0) {
        pthread_mutex_lock(&f->lock);
        peer_disconnect(f, p, PEER_BACKOFF, err);
        pthread_mutex_unlock(&f->lock);
    }
}

/* ---- the loop --------------------------------------------------------- */

/* Bookkeeping between polls: timeouts, bans, new connections, refills.
 * Returns how many peers the table holds (entries below never change). */
static size_t fetcher_schedule(struct fetcher *f)
{
    uint64_t now = cascade_now_ms();
    pthread_mutex_lock(&f->lock);
    fetcher_check_timeouts(f, now);
    double best_rate = 0;
    for (size_t i = 0; i < f->n_peers; i++) {
        struct fetch_peer *p = f->peers[i];
        if (p->open && p->banned)
            peer_disconnect(f, p, PEER_BAN, "banned");
        if (p->open) {
            peer_update_rate(p, now);
            if (p->rate > best_rate)
                best_rate = p->rate;
        }
    }
    for (size_t i = 0; i < f->n_peers; i++)
        if (f->peers[i]->open && f->peers[i]->conn.connected)
            peer_refill(f, f->peers[i], now, best_rate);
    bool usable = fetcher_connect_more(f, now);
    bool want_peers = f->announcer && f->wanted_missing > 0 && !usable;
    size_t npeers = f->n_peers;
    pthread_mutex_unlock(&f->lock);
    if (want_peers)
        announcer_request_peers(f->announcer);
    return npeers;
}

static void fetcher_poll_once(struct fetcher *f, struct pollfd *pfd, size_t *idx, size_t cap)
{
    size_t n = 0;
    pfd[n++] = (struct pollfd){.fd = f->wake_fd, .events = POLLIN};
    pthread_mutex_lock(&f->lock);
    bool full = put_queue_full(f);
    size_t npeers = f->n_peers;
    bool buffered = false;   /* answers already read, waiting to be parsed */
    for (size_t i = 0; i < npeers && n < cap; i++) {
        struct fetch_peer *p = f->peers[i];
        if (!p->open)
            continue;
        short ev = peer_conn_wants_write(&p->conn) ? POLLOUT : 0;
        if (p->conn.connected && !full)
            ev |= POLLIN;
        buffered |= !full && peer_conn_has_buffered(&p->conn);
        idx[n] = i;
        pfd[n++] = (struct pollfd){.fd = p->conn.fd, .events = ev};
    }
    pthread_mutex_unlock(&f->lock);

    /* Idle (no connection): only wants, peers and backoffs can change things. */
    int r = poll(pfd, n, buffered ? 0 : n > 1 ? FETCHER_TICK_MS : FETCHER_IDLE_TICK_MS);
    if (r < 0)
        return;
    if (pfd[0].revents) {
        uint64_t v;
        ssize_t got = read(f->wake_fd, &v, sizeof v);
        (void)got;
    }
    for (size_t k = 1; k < n; k++) {
        struct fetch_peer *p = f->peers[idx[k]];
        short re = pfd[k].revents;
        if (buffered && p->open && p->conn.connected && peer_conn_has_buffered(&p->conn))
            re |= POLLIN;   /* parse what an earlier read left behind */
        if (!re || !p->open)
            continue;
        if (re & (POLLOUT | POLLERR | POLLHUP))
            peer_on_writable(f, idx[k]);
        if (p->open && p->conn.connected && (re & (POLLIN | POLLERR | POLLHUP)))
            peer_on_readable(f, idx[k]);
    }
}

static void *fetcher_loop(void *arg)
{
    struct fetcher *f = arg;
    size_t cap = (size_t)f->max_connections + 1;
    struct pollfd *pfd = calloc(cap, sizeof *pfd);
    size_t *idx = calloc(cap, sizeof *idx);
    if (!pfd || !idx) {
        log_error("fetcher: out of memory");
        pthread_mutex_lock(&f->lock);
        f->store_failed = true;
        pthread_cond_broadcast(&f->landed);
        pthread_mutex_unlock(&f->lock);
    }
    for (;;) {
        pthread_mutex_lock(&f->lock);
        bool stop = f->stopping || !pfd || !idx;
        pthread_mutex_unlock(&f->lock);
        if (stop)
            break;
        size_t npeers = fetcher_schedule(f);
        for (size_t i = 0; i < npeers; i++) {   /* send new requests right away */
            struct fetch_peer *p = f->peers[i];
            if (p->open && p->conn.connected && peer_conn_wants_write(&p->conn))
                peer_on_writable(f, i);
        }
        fetcher_poll_once(f, pfd, idx, cap);
    }
    free(pfd);
    free(idx);
    return NULL;
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
        block_release(f, it->block);
        return;
    }
    block_release(f, it->block);
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
        pool_give(f, it->data, it->cap);
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
