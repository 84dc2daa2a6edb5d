/* Inside the peer node (see node.h): the state shared by its modules.
 *   node.c          start, stop, stats, the table of files, the block
 *                   server's source
 *   node_file.c     a file's store (open on demand, pins), wants, waits
 *   node_workers.c  hash-and-write workers and the block buffer pool
 *   node_house.c    the housekeeper: durable marks, idle stores, pool trim
 *   node_cache.c    the cache limit across files: room before a put, eviction
 *   fetch_peers.c   the peer table and what each peer said of each file
 *   fetch_pick.c    which block to ask a peer for next
 *   fetch_loop.c    the fetch loop: connections, requests, answers
 * Not for other modules. */
#ifndef NET_NODE_INTERNAL_H
#define NET_NODE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "net/block_server.h"
#include "net/first_copy.h"
#include "net/node.h"
#include "net/peer_conn.h"
#include "net/sock.h"
#include "net/tracker_agent.h"

#define NODE_MAX_PEERS 1024                /* known peers kept; more are ignored */
#define NODE_MAX_DEPTH 64
#define NODE_MIN_DEPTH 1                   /* requests in flight per peer at least: a
                                              request queued behind a block that peer is
                                              still sending us is asked of nobody else
                                              meanwhile, and in a swarm most such requests
                                              get "not present" (31 peers: ratio 0.60 with
                                              2, 0.65 with 1) */
#define NODE_MIN_DEPTH_RICH 2              /* at least, of a peer that has what it is asked */
#define NODE_BYTES_IN_FLIGHT (2u << 20)    /* per peer, before its rate is known */
#define NODE_PIPELINE_MS 500               /* a peer's pipeline: this long at its rate */
#define NODE_FORGET_FAILURES 6             /* failures in a row (about 30 s): forget it */
#define NODE_GONE_FAILURES 3               /* not connected, failed this often in a row:
                                              no longer counted as known (status) */
#define NODE_LACKS_FORGET_MS 700           /* re-ask a peer that said "not present": a
                                              young swarm's holdings grow by the second */
#define NODE_RARE_SCAN 256                 /* background candidates weighed per pick */
#define NODE_RICH_PEER 0.75f               /* holds this often: ask it for the rarest */
#define NODE_SLOW_RATE (256.0 * 1024)      /* bytes/s assumed of a peer not measured yet */
#define NODE_FETCHING_MS 5000              /* a peer's "fetching it" holds this long */
#define NODE_REFUSED_MS (5 * 60 * 1000)    /* a peer that said "unknown hash" */
#define NODE_STALE_MAX 64
#define NODE_SCAN_LIMIT 8192               /* blocks looked at per pick and file */
#define NODE_BACKOFF_MIN_MS 500
#define NODE_BACKOFF_MAX_MS 60000
#define NODE_TICK_MS 100
#define NODE_IDLE_TICK_MS 500
#define NODE_URGENT_EXTRA 2                /* urgent requests allowed past the depth */
#define NODE_ENDGAME_BLOCKS 256            /* endgame: at most this many missing, all asked */
#define NODE_ENDGAME_SHARE 8               /*   and at most this share of the file (1/N):
                                              31 peers 0.59-0.68 with 16, 0.63-0.66 with 8
                                              (both when doubling only what would come twice
                                              as soon; fetch_pick.c) */
#define NODE_URGENT_STUCK_MS 1500          /* urgent blocks behind a head this old go elsewhere too */
#define NODE_STORE_RETRY_MIN_MS 1000       /* store failures: first retry, doubling */
#define NODE_STORE_RETRY_MAX_MS 30000
#define NODE_PUT_QUEUE_BYTES (4u << 20)  /* the put queue is full past this (and a few blocks) */
#define NODE_POOL_MAX 32                   /* free block buffers kept */
#define NODE_WORKERS_MAX 8

/* ---- files ---- */

/* What the fetch side knows of one file; under the node's lock. The
 * arrays exist from the first want on. */
struct fetch_file {
    uint8_t *prio;               /* enum node_priority per block, NONE once held */
    uint8_t *inflight;           /* requests out + blocks being stored, per block */
    uint8_t *lacked_by;          /* peers that said lately they lack it, per block:
                                    the rarer a block, the sooner we ask for it */
    uint64_t wanted_missing;     /* blocks with a priority */
    uint64_t requests;           /* sum of inflight */
    uint64_t cursor[NODE_WANT_URGENT + 1];
    uint64_t low_wanted;         /* no wanted block below this (a hint) */
    uint64_t stale[NODE_STALE_MAX];
    size_t n_stale;
    struct cascade_store *store; /* held open by the fetch pin while anything is wanted */
    bool listed;                 /* the tracker agent lists it */
    /* A storing failure episode: logged once, retried with a growing gap
     * (at once for a waiting reader). */
    int store_errno;
    int store_failures;          /* in this episode */
    uint64_t store_fail_count;   /* in all: a waiting reader sees a new one */
    uint64_t store_retry_ms;
    uint64_t wanted_urgent;      /* blocks a reader waits for */
    uint64_t last_progress_ms;
};

struct node_file {
    struct peer_node *node;
    const struct cascade_meta *meta;
    const char *name;            /* for messages: meta->name, or the hash's first digits */
    char hash_label[20];
    uint32_t index;              /* in node->files, for ever */
    char *data_path;             /* owned copy of opts.data_path, or NULL */
    bool read_only, adopt;

    /* The store: under store_lock. Open while pinned, or until idle. */
    pthread_mutex_t store_lock;
    pthread_cond_t store_changed; /* a close finished */
    struct cascade_store *store;
    int pins;
    bool closing;
    bool flushing;               /* the housekeeper flushes it: do not close */
    bool adopted;                /* the data file was verified once */
    bool serve_error_logged;     /* "cannot serve it" said once */
    bool close_failed;           /* the last close could not make its marks durable */
    uint64_t unused_since_ms;
    uint64_t held_hint;          /* held blocks when the store last closed (or peeked) */
    bool cache_owned;            /* its data is the cache's own: counts toward the limit */
    uint8_t *checked;            /* blocks hashed or written in this run (for its stores,
                                    across opens: verify-once is per run); from first open */

    /* The cache's size (node_cache.c): under the node's cache_lock. */
    uint64_t cache_bytes;        /* its held bytes, as last learned */
    uint64_t oldest_use_ms;      /* last use of its least recently used extent, as
                                    last learned (0: not known yet: looked at first) */

    /* Swarm: under the node's lock. */
    bool announced;              /* subscribed with the tracker agent */
    bool fill_queued;            /* waits in the fill queue */
    bool filling;                /* a fill holds its fetch pin */
    bool fill_capped;            /* the cache limit stopped its fill (said once) */
    struct node_file *fill_next;
    struct fetch_file fetch;
    pthread_cond_t landed;       /* a block landed, storing failed, or stopping */

    atomic_uint_fast64_t bytes_served, bytes_fetched, blocks_fetched, bad_blocks;
    atomic_uint_fast64_t bytes_wasted;   /* received but not needed (a doubled request) */

    /* The block server's thread only. */
    struct first_copy first_copy; /* the source's spreading (first_copy.h) */
};

/* ---- peers ---- */

/* What one peer said about one file. */
struct peer_file {
    uint32_t file;
    float holds;                 /* how often it had what we asked (status 0 vs 2),
                                    a moving average: 1 for a seeder */
    uint64_t refused_until_ms;   /* status 1: do not ask for this file before */
    uint8_t *lacks;              /* blocks it said it does not have (bitmap) or NULL */
    uint64_t lacks_since_ms;
    uint8_t *fetching;           /* blocks it asked us for and we lacked too: it is
                                    fetching them elsewhere, so soon has them */
    uint64_t fetching_since_ms;
};

struct fetch_peer {
    struct sockaddr_in addr;
    bool banned;                 /* misbehaved: never again */
    bool open;                   /* conn is in use */
    bool for_all_files;          /* a static peer: serves every file */
    bool needs_buffer;           /* an answer body waits for a free buffer */
    int failures;                /* consecutive, for the backoff */
    uint64_t retry_at_ms;
    int verifying;               /* its blocks waiting for or in a worker */
    double rate;                 /* EWMA of bytes/s while busy */
    uint64_t rate_mark_ms, rate_mark_bytes;
    uint64_t bytes_in;           /* answer bytes received from it, every connection
                                    (the status: node_status.c) */
    struct peer_file *files;     /* files a tracker listed it for */
    size_t n_files, files_cap;
    size_t rr;                   /* where the next pick starts among files */
    struct peer_conn conn;       /* loop thread only */
};

/* ---- the put queue and buffers ---- */

struct put_item {
    struct put_item *next;
    uint32_t file;
    uint64_t block;
    uint8_t *data;
    size_t len, cap;
    size_t peer;
};

struct pooled_buffer {
    uint8_t *data;
    size_t cap;
};

/* ---- the node ---- */

struct peer_node {
    struct node_config cfg;      /* its pointers point at the copies below */
    char *cache_root;
    struct sockaddr_in *static_peers;
    size_t n_static_peers;
    int max_connections;
    int connect_timeout_ms;
    uint64_t lacks_forget_ms;

    pthread_mutex_t lock;        /* the fetch lock: everything below unless noted */
    bool stopping;
    bool interrupted;            /* node_interrupt: waits end at once */
    atomic_bool interrupt_pending; /* node_interrupt_from_signal: the loop interrupts */

    struct node_file **files;    /* by index */
    size_t n_files, files_cap;
    struct node_file **by_hash;  /* sorted by cascade hash */

    struct fetch_peer **peers;
    size_t n_peers;
    uint32_t *local_ips;         /* our interface addresses (host order) */
    size_t n_local_ips;
    struct sockaddr_in announced[TRACKER_LIST_MAX]; /* how each tracker sees us */
    uint64_t peers_dropped;

    struct put_item *put_head, *put_tail;
    size_t put_len;
    uint64_t put_bytes;          /* block bytes in the queue */
    struct put_item *put_busy;   /* taken by a worker, not finished */
    pthread_cond_t put_ready;    /* the put queue got an item, or workers_stop */
    bool workers_stop;           /* finish the queue, then exit */

    size_t buf_limit;            /* bytes of block buffers at most */
    size_t buf_out;              /* in connections and the put queue */
    size_t buf_pooled;
    size_t buf_peak;
    struct pooled_buffer pool[NODE_POOL_MAX];
    size_t n_pool;
    uint64_t buf_idle_since_ms;  /* nothing out since */
    uint64_t rng;                /* xorshift state: random first blocks */

    int wake_fd;                 /* eventfd: wakes the fetch loop */
    pthread_t loop_thread;
    bool loop_started;
    pthread_t workers[NODE_WORKERS_MAX];
    int n_workers;

    pthread_t house_thread;
    bool house_started;
    pthread_cond_t house_wake;
    bool house_kick;             /* a flush is due early */
    bool house_stop;

    struct tracker_agent *agent;
    struct block_server *server;
    struct sockaddr_in server_addr;

    struct node_file *fill_head, *fill_tail;   /* files waiting to fill */
    int filling;                 /* files filling now (at most NODE_FILLS_AT_ONCE) */

    atomic_int stores_open;      /* stores with descriptors open now */
    int max_idle_stores;         /* beyond this many open, idle ones close at once */
    uint64_t files_checked_ms;   /* when the stores' files were last checked (house) */

    /* The cache limit (node_cache.c). evict_lock serializes evictions and is
     * taken before any other lock; cache_lock guards the sums and each
     * file's cache fields, and is a leaf (nothing is taken under it). */
    pthread_mutex_t evict_lock;
    pthread_mutex_t cache_lock;
    uint64_t cache_used;         /* sum of the files' cache_bytes */
    uint64_t cache_reserved;     /* blocks being stored now */
    atomic_uint_fast64_t bytes_evicted;

    struct node_inbound *inbound;/* who downloads from us (node_status.c; own lock) */
};

static inline void node_wake_loop(struct peer_node *n)
{
    uint64_t one = 1;
    ssize_t w = write(n->wake_fd, &one, sizeof one);
    (void)w;   /* EAGAIN: the counter is already non-zero, the loop will wake */
}

/* The number of files, and file i, for a walk that holds no lock between
 * files (the array may grow meanwhile; files are never removed). */
static inline size_t node_file_count(struct peer_node *n)
{
    pthread_mutex_lock(&n->lock);
    size_t count = n->n_files;
    pthread_mutex_unlock(&n->lock);
    return count;
}

static inline struct node_file *node_file_at(struct peer_node *n, size_t i)
{
    pthread_mutex_lock(&n->lock);
    struct node_file *f = n->files[i];
    pthread_mutex_unlock(&n->lock);
    return f;
}

static inline void peer_name(const struct fetch_peer *p, char *out, size_t outlen)
{
    sock_format_addr(&p->addr, out, outlen);
}

/* Whether p counts as a known peer in figures: not banned, and connected
 * or not failing for long (a peer that is gone stops counting before the
 * node forgets it). Under lock. */
static inline bool fetch_peer_counts(const struct fetch_peer *p)
{
    return !p->banned && (p->open || p->failures < NODE_GONE_FAILURES);
}

/* ---- node_file.c ---- */

/* Pin f's store open (opening it if needed). The store, or NULL with a
 * message. Not under the node's lock. */
struct cascade_store *node_file_pin(struct node_file *f, char *err, size_t errlen);
/* For the block server: always pinned; the store, or NULL when there is
 * nothing to serve (closed and empty, or it cannot open). */
struct cascade_store *node_file_pin_to_serve(struct node_file *f);
void node_file_unpin(struct node_file *f);
/* Close f's store if nobody pins or flushes it and it has been unused since
 * before idle_before_ms (UINT64_MAX: unused at all). True when it closed.
 * Takes f's store lock: never call it holding another file's. */
bool node_file_close_if_idle(struct node_file *f, uint64_t idle_before_ms);
/* Close the least recently used idle stores until fewer than
 * max_idle_stores are open (or none is idle). Holds no store lock. */
void node_trim_stores(struct peer_node *n);
/* Free a file (its store already closed). */
void node_file_free(struct node_file *f);
/* A new file entry (not yet in the node's tables). */
struct node_file *node_file_new(struct peer_node *n, const struct cascade_meta *meta,
                                const struct node_file_options *opts, char *err, size_t errlen);

/* ---- fetch state (node_file.c), under the node's lock ---- */

/* The file's fetch state changed to "nothing wanted, nothing out": drop
 * the fetch pin. Call after any change that may have made it so. */
void fetch_file_settle(struct node_file *f);
/* A request for (f, idx) ended without the block: it may be picked again. */
void fetch_block_release(struct node_file *f, uint64_t idx);
/* A verified block is in the store: stop wanting it, wake its readers. */
void fetch_block_landed(struct node_file *f, uint64_t idx, size_t len);
/* Storing a block of f failed with err (errno): start or extend the episode. */
void fetch_store_failed(struct node_file *f, int err);
/* Whether f may be asked for now (wanted, and not between storing retries). */
bool fetch_file_active(const struct node_file *f, uint64_t now);

/* ---- node_workers.c ---- */

int node_workers_start(struct peer_node *n, char *err, size_t errlen);
/* Finish the queued blocks, then join. */
void node_workers_stop(struct peer_node *n);
/* Hand a received block to the workers. Under lock. */
void node_put_enqueue(struct peer_node *n, struct put_item *it);
bool node_put_queue_full(const struct peer_node *n);
/* Block buffers, bounded by buf_limit. Under lock. */
uint8_t *node_buffer_take(struct peer_node *n, size_t len, size_t *cap);
void node_buffer_give(struct peer_node *n, uint8_t *buf, size_t cap);
/* Free the pooled buffers (when idle, and at stop). Under lock. */
void node_buffer_trim(struct peer_node *n);

/* Start the fills waiting their turn while fewer than NODE_FILLS_AT_ONCE
 * run. Not under any lock (it opens stores). */
void node_start_fills(struct peer_node *n);

/* ---- node_house.c ---- */

int node_house_start(struct peer_node *n, char *err, size_t errlen);
void node_house_stop(struct peer_node *n);
/* Ask for a flush pass soon (much is pending). Under lock. */
void node_house_kick(struct peer_node *n);

/* ---- node_cache.c ---- */

int node_cache_init(struct peer_node *n);
void node_cache_destroy(struct peer_node *n);
/* f joined the node (its held hint counts from now on). */
void node_cache_add_file(struct node_file *f);
/* Learn f's held bytes (and oldest use) from its store st, open now. No
 * lock of f's held. */
void node_cache_note_open(struct node_file *f, struct cascade_store *st);
/* f's store closed holding these bytes, least recently used at oldest_ms. */
void node_cache_note_closed(struct node_file *f, uint64_t held_bytes, uint64_t oldest_ms);
/* Before a worker stores a block of f (len bytes, wanted at prio): make
 * room under the limit, evicting when needed (not for a background block:
 * a fill stops at the limit). True: go ahead, len reserved (give it back
 * with node_cache_stored); false: not stored. No lock held. */
bool node_cache_reserve(struct node_file *f, uint64_t len, int prio);
/* The block is stored (or not): give the reservation back. True when the
 * housekeeper should evict ahead of need now. */
bool node_cache_stored(struct node_file *f, struct cascade_store *st, uint64_t len);
/* The fill of f stopped at the limit: forget its background wants, say so
 * once. Under the node's lock. */
void node_cache_stop_fill(struct node_file *f);
/* Housekeeping: evict ahead of need once the cache is near its limit
 * (and when over it: a store that reopened holding more). No lock held. */
void node_cache_house(struct peer_node *n);

/* ---- fetch_peers.c (under lock) ---- */
/* (peer_file_lacks and peer_file_mark_lacks keep f's lacked_by counts.) */

int fetch_peers_init(struct peer_node *n);
void fetch_peers_free(struct peer_node *n);
/* The peer record for addr, added if new (NULL: ours, full, or no memory). */
struct fetch_peer *fetch_peer_get(struct peer_node *n, const struct sockaddr_in *addr);
/* Peer p was listed for file (or serves every file): ask it from now on.
 * True when that is news. */
bool fetch_peer_listed(struct peer_node *n, struct fetch_peer *p, uint32_t file);
/* Every static peer serves file f too. */
void fetch_peers_add_static(struct peer_node *n, struct node_file *f);
struct peer_file *fetch_peer_file(struct fetch_peer *p, uint32_t file);
bool peer_file_lacks(struct node_file *f, struct peer_file *pf, uint64_t idx, uint64_t now);
void peer_file_mark_lacks(struct node_file *f, struct peer_file *pf, uint64_t idx);
/* Forget what p said it lacks (it is dropped, or its word is old). */
void peer_file_forget_lacks(struct node_file *f, struct peer_file *pf);
/* The peer that serves from ip asked us for block of f, which we lack too.
 * Only when exactly one known peer has that address (several on one
 * address, as on loopback, cannot be told apart). */
void fetch_peers_asked_missing(struct peer_node *n, struct node_file *f, uint64_t block,
                               uint32_t ip);
/* Whether p is likely to have idx soon (it was fetching it a while ago). */
bool peer_file_fetching(struct node_file *f, struct peer_file *pf, uint64_t idx, uint64_t now);
/* Whether p may be asked for file now. */
bool peer_file_askable(const struct peer_file *pf, uint64_t now);
/* Tracker answers for file: add the peers (never ourselves). Returns how
 * many were not known for that file before. */
size_t fetch_peers_from_tracker(struct peer_node *n, uint32_t file,
                                const struct wire_peer_record *recs, size_t count,
                                const struct sockaddr_in *announced, size_t tracker);

/* ---- fetch_pick.c (under lock) ---- */

/* The next request for peer p at min_prio or above: true with *file and
 * *idx set, false when it has nothing to do. */
bool fetch_pick(struct peer_node *n, struct fetch_peer *p, uint64_t now, int min_prio,
                uint32_t *file, uint64_t *idx);
/* Let another peer ask for (f, idx) too (it stays in flight here). */
void fetch_mark_stale(struct node_file *f, uint64_t idx);

/* ---- fetch_loop.c ---- */

void *fetch_loop_main(void *arg);

/* Requests p may have in flight (under lock): cfg.pipeline_depth if set;
 * else NODE_PIPELINE_MS of p's measured rate in blocks of its files'
 * largest block size, plus one (NODE_BYTES_IN_FLIGHT worth before any rate
 * is known), at least NODE_MIN_DEPTH (NODE_MIN_DEPTH_RICH for a peer that
 * mostly has what it is asked, NODE_RICH_PEER), at most NODE_MAX_DEPTH. */
int fetch_peer_depth(const struct peer_node *n, const struct fetch_peer *p);

/* ---- node_status.c: who downloads from us, for the status ---- */

/* The table of connections the block server sends to (bounded). NULL
 * when out of memory. */
struct node_inbound *node_inbound_new(void);
void node_inbound_free(struct node_inbound *in);
/* The block server's sent and closed hooks (ctx: the node). */
void node_inbound_sent(void *ctx, const struct sockaddr_in *peer, uint64_t bytes);
void node_inbound_closed(void *ctx, const struct sockaddr_in *peer);

#endif
