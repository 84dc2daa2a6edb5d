/* The fetcher's event loop (see fetcher.c for the whole picture): one
 * thread that owns every peer connection. Each round it handles timeouts,
 * opens connections, tops up each peer's pipeline with the blocks to ask
 * for (pick_block), writes requests, polls, and reads answers, handing good
 * blocks to the put workers. Everything here runs on the loop thread;
 * shared state is touched under f->lock. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "net/fetcher_internal.h"

static uint64_t expected_len_cb(void *ctx, uint64_t idx)
{
    return block_len(ctx, idx);
}

/* ---- block bookkeeping (under lock) ----------------------------------- */

/* A request for idx ended without the block: it may be picked again. */
void fetcher_block_release(struct fetcher *f, uint64_t idx)
{
    if (f->inflight[idx] > 0)
        f->inflight[idx]--;
    int p = f->prio[idx];
    if (f->inflight[idx] == 0 && p != FETCH_NONE && !bit_get(f->done, idx) && idx < f->cursor[p])
        f->cursor[p] = idx;
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
            fetcher_block_release(f, peer_conn_head(&p->conn));
            p->conn.inflight_head = (p->conn.inflight_head + 1) % p->conn.inflight_cap;
            p->conn.inflight_count--;
        }
        return;
    }
    n = peer_conn_drain_inflight(&p->conn, blocks);
    for (size_t i = 0; i < n; i++)
        fetcher_block_release(f, blocks[i]);
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
            fetcher_pool_give(f, ans->body, ans->body_cap);
            fetcher_block_release(f, ans->block);
            return true;
        }
        struct put_item *it = malloc(sizeof *it);
        if (!it) {
            free(ans->body);
            fetcher_block_release(f, ans->block);
            return true;
        }
        *it = (struct put_item){.block = ans->block, .data = ans->body, .len = ans->body_len,
                                .cap = ans->body_cap, .peer = pi};
        p->verifying++;
        put_enqueue(f, it);
        return true;
    case WIRE_STATUS_NOT_PRESENT:
        peer_mark_lacks(f, p, ans->block);
        fetcher_block_release(f, ans->block);
        return true;
    case WIRE_STATUS_UNKNOWN_HASH:
        snprintf(why, sizeof why, "does not have this file (%s)", ans->message);
        fetcher_block_release(f, ans->block);
        p->failures = 6;   /* a long backoff: it may get the file later */
        peer_disconnect(f, p, PEER_BACKOFF, why);
        return false;
    default:   /* 3 or 4: we only send well-formed in-range requests */
        snprintf(why, sizeof why, "status %u for block %llu (%s)", ans->status,
                 (unsigned long long)ans->block, ans->message);
        fetcher_block_release(f, ans->block);
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
        uint8_t *buf = fetcher_pool_take(f);
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

void *fetcher_loop(void *arg)
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
