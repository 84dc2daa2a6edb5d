/* Hash-and-write workers and the block buffer pool of a peer node.
 *
 * The fetch loop hands every block body it received to the put queue; a
 * small pool of workers (sized by CPU count) verifies and stores them
 * (cascade_store_put hashes), so hashing overlaps reading. When the node
 * stops, the workers finish what is queued: a block received is never
 * thrown away.
 *
 * Block bodies are read into buffers from a pool bounded in bytes (in use
 * plus kept): a connection whose next body finds no room waits until a
 * worker gives one back. Recycled buffers spare the page faults of fresh
 * memory; the housekeeper frees the kept ones when the node is idle. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "net/node_internal.h"

/* ---- buffers (under lock) ---- */

static void buffer_note_peak(struct peer_node *n)
{
    size_t total = n->buf_out + n->buf_pooled;
    if (total > n->buf_peak)
        n->buf_peak = total;
}

/* Free the largest kept buffer; false when none is kept. */
static bool buffer_drop_one(struct peer_node *n)
{
    if (n->n_pool == 0)
        return false;
    size_t big = 0;
    for (size_t i = 1; i < n->n_pool; i++)
        if (n->pool[i].cap > n->pool[big].cap)
            big = i;
    n->buf_pooled -= n->pool[big].cap;
    free(n->pool[big].data);
    n->pool[big] = n->pool[--n->n_pool];
    return true;
}

uint8_t *node_buffer_take(struct peer_node *n, size_t len, size_t *cap)
{
    size_t best = n->n_pool;
    for (size_t i = 0; i < n->n_pool; i++)
        if (n->pool[i].cap >= len && (best == n->n_pool || n->pool[i].cap < n->pool[best].cap))
            best = i;
    if (best < n->n_pool) {
        uint8_t *buf = n->pool[best].data;
        *cap = n->pool[best].cap;
        n->pool[best] = n->pool[--n->n_pool];
        n->buf_pooled -= *cap;
        n->buf_out += *cap;
        return buf;
    }
    /* Make room from the kept buffers before refusing. One buffer is always
     * allowed, so a block larger than the whole limit still comes in. */
    while (n->buf_out + n->buf_pooled + len > n->buf_limit && buffer_drop_one(n))
        ;
    if (n->buf_out > 0 && n->buf_out + len > n->buf_limit)
        return NULL;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return NULL;
    *cap = len;
    n->buf_out += len;
    buffer_note_peak(n);
    return buf;
}

void node_buffer_give(struct peer_node *n, uint8_t *buf, size_t cap)
{
    if (!buf)
        return;
    n->buf_out -= cap;
    if (n->buf_out == 0)
        n->buf_idle_since_ms = cascade_now_ms();
    if (n->n_pool < NODE_POOL_MAX && n->buf_out + n->buf_pooled + cap <= n->buf_limit) {
        n->pool[n->n_pool++] = (struct pooled_buffer){.data = buf, .cap = cap};
        n->buf_pooled += cap;
    } else {
        free(buf);
    }
}

void node_buffer_trim(struct peer_node *n)
{
    while (buffer_drop_one(n))
        ;
}

/* ---- the put queue ---- */

bool node_put_queue_full(const struct peer_node *n)
{
    return n->put_len >= 2 * (size_t)n->n_workers + 2 && n->put_bytes >= NODE_PUT_QUEUE_BYTES;
}

void node_put_enqueue(struct peer_node *n, struct put_item *it)
{
    it->next = NULL;
    if (n->put_tail)
        n->put_tail->next = it;
    else
        n->put_head = it;
    n->put_tail = it;
    n->put_len++;
    n->put_bytes += it->len;
    pthread_cond_signal(&n->put_ready);
}

/* A worker is done with it (under lock). r is CASCADE_STORE_MISSING when
 * the cache limit refused it (a fill's block). */
static void put_finish(struct peer_node *n, struct put_item *it, int r, int err)
{
    struct node_file *f = n->files[it->file];
    struct fetch_peer *p = n->peers[it->peer];
    p->verifying--;
    if (r == CASCADE_STORE_MISSING) {
        atomic_fetch_add_explicit(&f->bytes_wasted, it->len, memory_order_relaxed);
        fetch_block_release(f, it->block);
        node_cache_stop_fill(f);
        return;
    }
    if (r == CASCADE_STORE_OK) {
        if (cascade_log_enabled(CASCADE_LOG_DEBUG)) {
            char a[SOCK_ADDRSTRLEN];
            peer_name(p, a, sizeof a);
            log_debug("%s: fetched block %llu (%zu bytes) from %s", f->name,
                      (unsigned long long)it->block, it->len, a);
        }
        if (f->fetch.prio[it->block] == NODE_WANT_NONE)   /* a doubled request landed first */
            atomic_fetch_add_explicit(&f->bytes_wasted, it->len, memory_order_relaxed);
        else
            fetch_block_landed(f, it->block, it->len);
    } else if (r == CASCADE_STORE_EHASH) {
        atomic_fetch_add_explicit(&f->bad_blocks, 1, memory_order_relaxed);
        if (!p->banned) {
            char a[SOCK_ADDRSTRLEN];
            peer_name(p, a, sizeof a);
            p->banned = true;   /* the loop closes the connection */
            n->peers_dropped++;
            log_warn("peer %s dropped: block %llu of %s does not match its hash", a,
                     (unsigned long long)it->block, f->name);
        }
    } else {
        fetch_store_failed(f, r == CASCADE_STORE_EIO ? err : EIO);
    }
    fetch_block_release(f, it->block);
    struct cascade_store *st = f->fetch.store;
    if (st && cascade_store_flush_due(st, cascade_now_ms()))
        node_house_kick(n);
    fetch_file_settle(f);
}

static void *put_worker_main(void *arg)
{
    struct peer_node *n = arg;
    pthread_setname_np(pthread_self(), "cascade-work");
    pthread_mutex_lock(&n->lock);
    for (;;) {
        while (!n->put_head && !n->workers_stop)
            pthread_cond_wait(&n->put_ready, &n->lock);
        if (!n->put_head)
            break;   /* stopping, and everything queued is stored */
        struct put_item *it = n->put_head;
        n->put_head = it->next;
        if (!n->put_head)
            n->put_tail = NULL;
        n->put_len--;
        n->put_bytes -= it->len;
        it->next = n->put_busy;
        n->put_busy = it;
        struct node_file *f = n->files[it->file];
        struct cascade_store *st = f->fetch.store;
        int prio = f->fetch.prio[it->block];
        pthread_mutex_unlock(&n->lock);
        int r = CASCADE_STORE_MISSING, err = 0;
        bool trim = false;
        /* Room under the cache limit first (a fill's block never evicts). */
        if (node_cache_reserve(f, it->len, prio == NODE_WANT_NONE ? NODE_WANT_BACKGROUND : prio)) {
            r = cascade_store_put(st, it->block, it->data, it->len);
            err = errno;
            trim = node_cache_stored(f, st, it->len);
        }
        pthread_mutex_lock(&n->lock);
        if (trim)
            node_house_kick(n);
        struct put_item **link = &n->put_busy;
        while (*link != it)
            link = &(*link)->next;
        *link = it->next;
        node_buffer_give(n, it->data, it->cap);
        put_finish(n, it, r, err);
        free(it);
        node_wake_loop(n);   /* room in the queue, a buffer back, a block landed */
    }
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

static int worker_count(const struct peer_node *n)
{
    if (n->cfg.workers > 0)
        return n->cfg.workers < NODE_WORKERS_MAX ? n->cfg.workers : NODE_WORKERS_MAX;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    /* At least two, so one hashes while the other writes. */
    return cpus < 2 ? 2 : cpus > NODE_WORKERS_MAX ? NODE_WORKERS_MAX : (int)cpus;
}

int node_workers_start(struct peer_node *n, char *err, size_t errlen)
{
    int want = worker_count(n);
    for (int i = 0; i < want; i++) {
        int rc = pthread_create(&n->workers[i], NULL, put_worker_main, n);
        if (rc != 0) {
            cascade_errf(err, errlen, "cannot start a worker: %s", strerror(rc));
            return -1;
        }
        pthread_mutex_lock(&n->lock);
        n->n_workers++;
        pthread_mutex_unlock(&n->lock);
    }
    return 0;
}

void node_workers_stop(struct peer_node *n)
{
    pthread_mutex_lock(&n->lock);
    n->workers_stop = true;
    pthread_cond_broadcast(&n->put_ready);
    int count = n->n_workers;
    pthread_mutex_unlock(&n->lock);
    for (int i = 0; i < count; i++)
        pthread_join(n->workers[i], NULL);
    pthread_mutex_lock(&n->lock);
    n->n_workers = 0;
    while (n->put_head) {   /* only when no worker ever ran */
        struct put_item *it = n->put_head;
        n->put_head = it->next;
        node_buffer_give(n, it->data, it->cap);
        free(it);
    }
    n->put_tail = NULL;
    n->put_len = 0;
    n->put_bytes = 0;
    pthread_mutex_unlock(&n->lock);
}
