/* Inside the fetcher: the state shared by fetcher.c (lifecycle, public
 * API, tracker peers, put workers) and fetcher_loop.c (the event loop:
 * choosing blocks, peer connections, answers). Not for other modules.
 * See fetcher.c for the threads and the one lock. */
#ifndef NET_FETCHER_INTERNAL_H
#define NET_FETCHER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "net/announcer.h"
#include "net/fetcher.h"
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


static inline bool bit_get(const uint8_t *bits, uint64_t i)
{
    return bits[i / 8] & (1u << (i % 8));
}

static inline void bit_set(uint8_t *bits, uint64_t i)
{
    bits[i / 8] |= (uint8_t)(1u << (i % 8));
}

static inline uint64_t block_len(const struct cascade_meta *m, uint64_t idx)
{
    if (idx >= m->block_count)
        return 0;
    uint64_t rest = m->size - idx * m->block_size;
    return rest < m->block_size ? rest : m->block_size;
}

static inline void wake_loop(struct fetcher *f)
{
    uint64_t one = 1;
    ssize_t n = write(f->wake_fd, &one, sizeof one);
    (void)n;   /* EAGAIN: the counter is already non-zero, the loop will wake */
}

static inline void peer_name(const struct fetch_peer *p, char *out, size_t outlen)
{
    sock_format_addr(&p->addr, out, outlen);
}

/* Recycled block buffers (fetcher.c). Under lock. */
uint8_t *fetcher_pool_take(struct fetcher *f);
void fetcher_pool_give(struct fetcher *f, uint8_t *buf, size_t cap);

/* A request for idx ended without the block (fetcher_loop.c). Under lock. */
void fetcher_block_release(struct fetcher *f, uint64_t idx);

/* The loop thread (fetcher_loop.c). */
void *fetcher_loop(void *arg);

#endif
