/* The node's fetch loop (see node.h): one thread that owns every peer
 * connection, for every file. Each round it handles timeouts, opens
 * connections to peers with work, tops up each connection's pipeline
 * (fetch_pick), writes requests, polls, and reads answers, handing good
 * blocks to the workers. Shared state is touched under the node's lock;
 * each connection's bytes only here.
 *
 * What a peer's answer means for it:
 *   - status 0 (a block) and 2 (not present, per block) keep it in good
 *     standing; status 1 (it does not know a file) takes only that file off
 *     what we ask it, and the requests for other files queued on the
 *     connection (which the peer closes) are simply asked again;
 *   - status 3 or 4, a wrong length, an unknown status or a block whose
 *     hash does not match ban it for good;
 *   - a connection that fails, times out or closes with work pending backs
 *     it off (doubling, up to a minute); closing an idle one is normal. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "net/node_internal.h"

/* ---- the parser's hooks (called without the lock) ---- */

static uint64_t hook_block_len(void *ctx, uint32_t file, uint64_t block)
{
    struct peer_node *n = ctx;
    pthread_mutex_lock(&n->lock);
    uint64_t len = file < n->n_files ? cascade_meta_block_len(n->files[file]->meta, block) : 0;
    pthread_mutex_unlock(&n->lock);
    return len;
}

static uint8_t *hook_take_buffer(void *ctx, size_t len, size_t *cap)
{
    struct peer_node *n = ctx;
    pthread_mutex_lock(&n->lock);
    uint8_t *buf = node_buffer_take(n, len, cap);
    pthread_mutex_unlock(&n->lock);
    return buf;
}

/* ---- connections (under lock) ---- */

/* Everything p had asked for goes back to be picked again. */
static void peer_return_inflight(struct peer_node *n, struct fetch_peer *p)
{
    size_t count = p->conn.inflight_count;
    if (count == 0)
        return;
    struct peer_request *reqs = malloc(count * sizeof *reqs);
    if (!reqs) {   /* cannot list them: walk the ring instead */
        for (size_t i = 0; i < count; i++) {
            struct peer_request r = peer_conn_inflight_at(&p->conn, i);
            fetch_block_release(n->files[r.file], r.block);
            fetch_file_settle(n->files[r.file]);
        }
        p->conn.inflight_count = 0;
        return;
    }
    count = peer_conn_drain_inflight(&p->conn, reqs);
    for (size_t i = 0; i < count; i++)
        fetch_block_release(n->files[reqs[i].file], reqs[i].block);
    for (size_t i = 0; i < count; i++)
        fetch_file_settle(n->files[reqs[i].file]);
    free(reqs);
}

enum peer_verdict {
    PEER_IDLE_CLOSE,   /* a normal end of a connection */
    PEER_REFUSED,      /* it said it does not know a file: ask again, no penalty */
    PEER_BACKOFF,      /* it failed: wait before the next try */
    PEER_BAN,          /* it misbehaved: never again */
};

/* Close p's connection; its requests go back to be picked again. */
static void peer_disconnect(struct peer_node *n, struct fetch_peer *p, enum peer_verdict verdict,
                            const char *why)
{
    char a[SOCK_ADDRSTRLEN];
    peer_name(p, a, sizeof a);
    bool busy = p->conn.inflight_count > 0;
    uint64_t received = p->conn.bytes_received;
    peer_return_inflight(n, p);
    if (p->open) {
        uint8_t *leftover;
        size_t cap;
        peer_conn_close(&p->conn, &leftover, &cap);
        node_buffer_give(n, leftover, cap);
        p->open = false;
        p->needs_buffer = false;
    }
    if (verdict == PEER_BAN) {
        if (!p->banned) {
            p->banned = true;
            n->peers_dropped++;
            log_warn("peer %s dropped: %s", a, why);
        }
        for (size_t i = 0; i < p->n_files; i++)   /* its word counts no more */
            peer_file_forget_lacks(n->files[p->files[i].file], &p->files[i]);
        return;
    }
    /* Closing a connection that has served us and has nothing pending is
     * normal (servers time idle ones out), and so is the close that follows
     * "unknown hash"; anything else earns a backoff, so a peer that hangs
     * up at once is not redialled in a tight loop. */
    if (verdict == PEER_REFUSED || (verdict == PEER_IDLE_CLOSE && !busy && received > 0)) {
        log_debug("peer %s: connection closed (%s)", a, why);
        p->retry_at_ms = 0;
        return;
    }
    if (p->failures < 16)
        p->failures++;
    uint64_t delay = (uint64_t)NODE_BACKOFF_MIN_MS << (p->failures - 1);
    if (delay > NODE_BACKOFF_MAX_MS)
        delay = NODE_BACKOFF_MAX_MS;
    p->retry_at_ms = cascade_now_ms() + delay;
    log_debug("peer %s: %s; retry in %llu ms", a, why, (unsigned long long)delay);
    if (p->failures == NODE_FORGET_FAILURES && !p->for_all_files) {
        /* Gone for half a minute: no longer known for any file, until a
         * tracker lists it again (its backoff stays). */
        log_debug("peer %s: forgotten after %d failures", a, p->failures);
        for (size_t i = 0; i < p->n_files; i++)
            peer_file_forget_lacks(n->files[p->files[i].file], &p->files[i]);
        p->n_files = 0;
    }
}

/* Requests in flight for p: enough bytes to keep its link busy for
 * NODE_PIPELINE_MS at its measured rate, one block more (so the rate can
 * grow): a slow link is not flooded with requests that then time out, a
 * fast one is never idle. On a thin link (a swarm peer's share of an
 * uplink) that is one request at a time, so a block it lacks is not stuck
 * behind one it sends; two for a peer that has what it is asked (a
 * seeder), so its link does not idle for a round trip between blocks.
 * Before any rate is known, NODE_BYTES_IN_FLIGHT. In blocks of its
 * largest block size. */
int fetch_peer_depth(const struct peer_node *n, const struct fetch_peer *p)
{
    if (n->cfg.pipeline_depth > 0)
        return n->cfg.pipeline_depth;
    uint64_t biggest = 1;
    int least = NODE_MIN_DEPTH;
    for (size_t i = 0; i < p->n_files; i++) {
        uint64_t bs = n->files[p->files[i].file]->meta->block_size;
        if (bs > biggest)
            biggest = bs;
        if (p->files[i].holds >= NODE_RICH_PEER)
            least = NODE_MIN_DEPTH_RICH;
    }
    double bytes = p->rate > 0 ? p->rate * NODE_PIPELINE_MS / 1000.0
                               : (double)NODE_BYTES_IN_FLIGHT;
    double d = bytes / (double)biggest + 1;
    return d < least ? least : d > NODE_MAX_DEPTH ? NODE_MAX_DEPTH : (int)d;
}

/* Queue requests on p up to its pipeline depth; urgent blocks (a reader
 * waits) may go a little past it rather than wait for a free slot. */
static void peer_refill(struct peer_node *n, struct fetch_peer *p, uint64_t now)
{
    int depth = fetch_peer_depth(n, p);
    for (;;) {
        int busy = (int)p->conn.inflight_count + p->verifying;
        if (busy >= depth + NODE_URGENT_EXTRA)
            return;
        int min_prio = busy < depth ? NODE_WANT_BACKGROUND : NODE_WANT_URGENT;
        uint32_t file;
        uint64_t idx;
        if (!fetch_pick(n, p, now, min_prio, &file, &idx))
            return;
        struct node_file *f = n->files[file];
        if (peer_conn_queue_request(&p->conn, file, idx, f->meta->cascade_hash) < 0) {
            log_warn("fetch: out of memory queueing a request");
            return;
        }
        if (f->fetch.inflight[idx] < UINT8_MAX) {
            f->fetch.inflight[idx]++;
            f->fetch.requests++;
        }
    }
}

static void peer_connect(struct peer_node *n, struct fetch_peer *p)
{
    char err[CASCADE_ERRLEN];
    if (peer_conn_open(&p->conn, &p->addr, err, sizeof err) < 0) {
        p->conn.fd = -1;
        peer_disconnect(n, p, PEER_BACKOFF, err);
        return;
    }
    p->open = true;
    p->rate_mark_ms = cascade_now_ms();
    p->rate_mark_bytes = 0;
}

/* Whether p could be asked for anything now. */
static bool peer_has_work(struct peer_node *n, struct fetch_peer *p, uint64_t now)
{
    for (size_t i = 0; i < p->n_files; i++) {
        const struct peer_file *pf = &p->files[i];
        if (peer_file_askable(pf, now) && fetch_file_active(n->files[pf->file], now))
            return true;
    }
    return false;
}

/* Open connections while there is work and room, and ask the tracker
 * agent for peers for each file that is wanted but has no usable peer. */
static void fetch_connect_more(struct peer_node *n, uint64_t now)
{
    int open = 0;
    for (size_t i = 0; i < n->n_peers; i++)
        open += n->peers[i]->open;
    for (size_t i = 0; i < n->n_peers && open < n->max_connections; i++) {
        struct fetch_peer *p = n->peers[i];
        if (p->banned || p->open || p->retry_at_ms > now || !peer_has_work(n, p, now))
            continue;
        peer_connect(n, p);
        open += p->open;
    }
    if (!n->agent)
        return;
    for (size_t i = 0; i < n->n_files; i++) {
        struct node_file *f = n->files[i];
        if (f->fetch.wanted_missing == 0)
            continue;
        bool usable = false;
        for (size_t k = 0; k < n->n_peers && !usable; k++) {
            struct fetch_peer *p = n->peers[k];
            struct peer_file *pf = p->banned ? NULL : fetch_peer_file(p, f->index);
            usable = pf && peer_file_askable(pf, now) && (p->open || p->retry_at_ms <= now);
        }
        if (!usable)
            tracker_agent_want_peers(n->agent, f->index);
    }
}

/* A connection whose head has waited long: its head may go elsewhere after
 * the request timeout, and the urgent blocks queued on it (a reader waits
 * for them) much sooner. */
static void conn_mark_stale(struct peer_node *n, struct fetch_peer *p, uint64_t now,
                            uint64_t timeout_ms)
{
    const struct peer_conn *pc = &p->conn;
    uint64_t waited = now - pc->head_since_ms;
    if (waited > timeout_ms) {
        struct peer_request head = peer_conn_head(pc);
        fetch_mark_stale(n->files[head.file], head.block);
    }
    if (waited <= NODE_URGENT_STUCK_MS)
        return;
    for (size_t i = 0; i < pc->inflight_count; i++) {
        struct peer_request r = peer_conn_inflight_at(pc, i);
        struct node_file *f = n->files[r.file];
        if (f->fetch.prio[r.block] == NODE_WANT_URGENT)
            fetch_mark_stale(f, r.block);
    }
}

/* Give a big block time at a modest 256 KiB/s before asking elsewhere. */
static uint64_t request_timeout_ms(const struct peer_node *n, const struct fetch_peer *p)
{
    if (n->cfg.request_timeout_ms > 0)
        return (uint64_t)n->cfg.request_timeout_ms;
    uint64_t bs = 0;
    if (p->conn.inflight_count > 0) {
        struct peer_request head = peer_conn_head(&p->conn);
        bs = n->files[head.file]->meta->block_size;
    }
    uint64_t t = 10000 + bs / 256;
    return t > 600000 ? 600000 : t;
}

/* Timeouts: stuck connects, silent peers, slow heads. */
static void fetch_check_timeouts(struct peer_node *n, uint64_t now)
{
    for (size_t i = 0; i < n->n_peers; i++) {
        struct fetch_peer *p = n->peers[i];
        if (!p->open)
            continue;
        if (!p->conn.connected) {
            if (now - p->conn.connect_started_ms > (uint64_t)n->connect_timeout_ms)
                peer_disconnect(n, p, PEER_BACKOFF, "connect timed out");
            continue;
        }
        if (p->conn.inflight_count == 0)
            continue;
        uint64_t timeout = request_timeout_ms(n, p);
        if (now - p->conn.last_progress_ms > timeout) {
            peer_disconnect(n, p, PEER_BACKOFF, "no answer in time");
            continue;
        }
        conn_mark_stale(n, p, now, timeout);
    }
}

/* ---- answers ---- */

/* The peer's rate while it has work (idle time does not lower it). */
static void peer_update_rate(struct fetch_peer *p, uint64_t now)
{
    uint64_t dt = now - p->rate_mark_ms;
    if (dt < 200)
        return;
    if (p->conn.inflight_count == 0) {
        p->rate_mark_ms = now;
        p->rate_mark_bytes = p->conn.bytes_received;
        return;
    }
    double inst = (double)(p->conn.bytes_received - p->rate_mark_bytes) * 1000.0 / (double)dt;
    p->rate = p->rate > 0 ? 0.7 * p->rate + 0.3 * inst : inst;
    p->rate_mark_ms = now;
    p->rate_mark_bytes = p->conn.bytes_received;
}

/* One answer from peer pi (under lock). False when p was disconnected. */
static bool handle_answer(struct peer_node *n, size_t pi, struct peer_answer *ans)
{
    struct fetch_peer *p = n->peers[pi];
    struct node_file *f = n->files[ans->file];
    struct peer_file *pf = fetch_peer_file(p, ans->file);
    char why[200];
    p->failures = 0;
    if (pf && (ans->status == WIRE_STATUS_OK || ans->status == WIRE_STATUS_NOT_PRESENT))
        pf->holds = 0.8f * pf->holds + (ans->status == WIRE_STATUS_OK ? 0.2f : 0.0f);
    switch (ans->status) {
    case WIRE_STATUS_OK: {
        f->fetch.last_progress_ms = cascade_now_ms();
        struct put_item *it = f->fetch.prio[ans->block] != NODE_WANT_NONE
                              ? malloc(sizeof *it) : NULL;
        if (!it) {   /* landed meanwhile (a doubled request), or no memory */
            atomic_fetch_add_explicit(&f->bytes_wasted, ans->body_len, memory_order_relaxed);
            node_buffer_give(n, ans->body, ans->body_cap);
            fetch_block_release(f, ans->block);
            fetch_file_settle(f);
            return true;
        }
        *it = (struct put_item){.file = ans->file, .block = ans->block, .data = ans->body,
                                .len = ans->body_len, .cap = ans->body_cap, .peer = pi};
        p->verifying++;
        node_put_enqueue(n, it);
        return true;
    }
    case WIRE_STATUS_NOT_PRESENT:
        if (pf)
            peer_file_mark_lacks(f, pf, ans->block);
        fetch_block_release(f, ans->block);
        fetch_file_settle(f);
        return true;
    case WIRE_STATUS_UNKNOWN_HASH:
        if (pf)
            pf->refused_until_ms = cascade_now_ms() + NODE_REFUSED_MS;
        snprintf(why, sizeof why, "does not have %s (%s)", f->name, ans->message);
        fetch_block_release(f, ans->block);
        fetch_file_settle(f);
        peer_disconnect(n, p, PEER_REFUSED, why);   /* it closes after status 1 */
        return false;
    default:   /* 3 or 4: we only send well-formed in-range requests */
        snprintf(why, sizeof why, "status %u for block %llu of %s (%s)", ans->status,
                 (unsigned long long)ans->block, f->name, ans->message);
        fetch_block_release(f, ans->block);
        fetch_file_settle(f);
        peer_disconnect(n, p, PEER_BAN, why);
        return false;
    }
}

/* Read everything p has sent. */
static void peer_on_readable(struct peer_node *n, size_t pi)
{
    struct fetch_peer *p = n->peers[pi];
    const struct peer_conn_hooks hooks = {n, hook_block_len, hook_take_buffer};
    char err[CASCADE_ERRLEN];
    for (;;) {
        struct peer_answer ans;
        uint64_t before = p->conn.bytes_received;
        int r = peer_conn_read_answer(&p->conn, &hooks, &ans, err, sizeof err);
        pthread_mutex_lock(&n->lock);
        p->bytes_in += p->conn.bytes_received - before;
        if (p->conn.bytes_received != before && p->conn.in_body &&
            p->conn.status == WIRE_STATUS_OK) {
            /* A block is coming for its head file: that file is not stalled
             * (answers of "not present" are no progress). */
            struct peer_request head = peer_conn_head(&p->conn);
            n->files[head.file]->fetch.last_progress_ms = cascade_now_ms();
        }
        p->needs_buffer = r == PEER_CONN_ENOBUF;
        if (r == PEER_CONN_EAGAIN || r == PEER_CONN_ENOBUF) {
            pthread_mutex_unlock(&n->lock);
            return;
        }
        if (r < 0) {
            peer_disconnect(n, p, r == PEER_CONN_EPROTO ? PEER_BAN : PEER_IDLE_CLOSE, err);
            pthread_mutex_unlock(&n->lock);
            return;
        }
        bool still_open = handle_answer(n, pi, &ans);
        bool full = node_put_queue_full(n);
        pthread_mutex_unlock(&n->lock);
        if (!still_open || full)
            return;
    }
}

static void peer_on_writable(struct peer_node *n, size_t pi)
{
    struct fetch_peer *p = n->peers[pi];
    char err[CASCADE_ERRLEN];
    if (!p->conn.connected) {
        if (peer_conn_finish_connect(&p->conn, err, sizeof err) < 0) {
            pthread_mutex_lock(&n->lock);
            peer_disconnect(n, p, PEER_BACKOFF, err);
            pthread_mutex_unlock(&n->lock);
            return;
        }
        char a[SOCK_ADDRSTRLEN];
        peer_name(p, a, sizeof a);
        log_debug("peer %s: connected", a);
    }
    if (peer_conn_flush(&p->conn, err, sizeof err) < 0) {
        pthread_mutex_lock(&n->lock);
        peer_disconnect(n, p, PEER_BACKOFF, err);
        pthread_mutex_unlock(&n->lock);
    }
}

/* ---- the loop ---- */

/* Bookkeeping between polls: timeouts, bans, new connections, refills.
 * Returns how many peers the table holds (entries below never change). */
static size_t fetch_schedule(struct peer_node *n)
{
    uint64_t now = cascade_now_ms();
    pthread_mutex_lock(&n->lock);
    fetch_check_timeouts(n, now);
    for (size_t i = 0; i < n->n_peers; i++) {
        struct fetch_peer *p = n->peers[i];
        if (p->open && p->banned)
            peer_disconnect(n, p, PEER_BAN, "banned");
        if (p->open)
            peer_update_rate(p, now);
    }
    for (size_t i = 0; i < n->n_peers; i++)
        if (n->peers[i]->open && n->peers[i]->conn.connected)
            peer_refill(n, n->peers[i], now);
    fetch_connect_more(n, now);
    size_t npeers = n->n_peers;
    pthread_mutex_unlock(&n->lock);
    return npeers;
}

static void fetch_poll_once(struct peer_node *n, struct pollfd *pfd, size_t *idx, size_t cap)
{
    size_t count = 0;
    pfd[count++] = (struct pollfd){.fd = n->wake_fd, .events = POLLIN};
    pthread_mutex_lock(&n->lock);
    bool full = node_put_queue_full(n);
    bool retry = false;   /* answers already read, or a body that waited for a buffer */
    for (size_t i = 0; i < n->n_peers && count < cap; i++) {
        struct fetch_peer *p = n->peers[i];
        if (!p->open)
            continue;
        short ev = peer_conn_wants_write(&p->conn) ? POLLOUT : 0;
        if (p->conn.connected && !full && !p->needs_buffer)
            ev |= POLLIN;
        retry |= !full && !p->needs_buffer && peer_conn_has_buffered(&p->conn);
        idx[count] = i;
        pfd[count++] = (struct pollfd){.fd = p->conn.fd, .events = ev};
    }
    pthread_mutex_unlock(&n->lock);

    /* Idle (no connection): only wants, peers and backoffs can change things. */
    int r = poll(pfd, count, retry ? 0 : count > 1 ? NODE_TICK_MS : NODE_IDLE_TICK_MS);
    if (r < 0)
        return;
    if (pfd[0].revents) {
        uint64_t v;
        ssize_t got = read(n->wake_fd, &v, sizeof v);
        (void)got;
        if (atomic_exchange(&n->interrupt_pending, false))
            node_interrupt(n);   /* asked from a signal handler */
    }
    for (size_t k = 1; k < count; k++) {
        struct fetch_peer *p = n->peers[idx[k]];
        short re = pfd[k].revents;
        if (!p->open)
            continue;
        /* Parse what an earlier read left behind, and try again a body
         * that waited for a buffer (workers wake us when they free one). */
        if (p->conn.connected && !full &&
            (peer_conn_has_buffered(&p->conn) || p->needs_buffer))
            re |= POLLIN;
        if (!re)
            continue;
        if (re & (POLLOUT | POLLERR | POLLHUP))
            peer_on_writable(n, idx[k]);
        if (p->open && p->conn.connected && (re & (POLLIN | POLLERR | POLLHUP)))
            peer_on_readable(n, idx[k]);
    }
}

void *fetch_loop_main(void *arg)
{
    struct peer_node *n = arg;
    pthread_setname_np(pthread_self(), "cascade-fetch");
    size_t cap = (size_t)n->max_connections + 1;
    struct pollfd *pfd = calloc(cap, sizeof *pfd);
    size_t *idx = calloc(cap, sizeof *idx);
    if (!pfd || !idx)
        log_error("fetch: out of memory: nothing will be fetched");
    for (;;) {
        pthread_mutex_lock(&n->lock);
        bool stop = n->stopping || !pfd || !idx;
        pthread_mutex_unlock(&n->lock);
        if (stop)
            break;
        size_t npeers = fetch_schedule(n);
        for (size_t i = 0; i < npeers; i++) {   /* send new requests right away */
            struct fetch_peer *p = n->peers[i];
            if (p->open && p->conn.connected && peer_conn_wants_write(&p->conn))
                peer_on_writable(n, i);
        }
        fetch_poll_once(n, pfd, idx, cap);
    }
    /* Close every connection; what was asked goes back (nothing is lost:
     * blocks already received are in the put queue). */
    pthread_mutex_lock(&n->lock);
    for (size_t i = 0; i < n->n_peers; i++)
        if (n->peers[i]->open)
            peer_disconnect(n, n->peers[i], PEER_IDLE_CLOSE, "stopping");
    pthread_mutex_unlock(&n->lock);
    free(pfd);
    free(idx);
    return NULL;
}
