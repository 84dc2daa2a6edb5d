/* The peer node: the one object a process runs to take part in swarms,
 * used alike by cascadefs, `cascade seed` and `cascade get`.
 *
 * It owns, for every file of the process together:
 *   - the stores (one per file), opened on demand and closed when idle;
 *     what is held lives in the store alone, everything else asks it;
 *   - one block server (when serving), answering from those stores;
 *   - one fetch loop thread with one connection per peer address: a
 *     request names its cascade hash, so one connection carries requests
 *     for every file that peer serves. A peer is asked for a file only
 *     when a tracker listed it for that file; a peer that answers "unknown
 *     hash" (status 1) is not asked for that file again for a while, and
 *     the other requests queued on that connection are simply asked again;
 *   - one tracker agent thread announcing and listing every active file
 *     to every tracker, spread over time;
 *   - a small pool of hash-and-write workers (sized by CPU count), a
 *     buffer pool for block bodies bounded in bytes, and one housekeeping
 *     thread that makes held marks durable and closes idle stores;
 *   - the cache limit (cfg.cache_max) over every file whose data is the
 *     cache's own: a worker makes room before it stores a block, evicting
 *     the least recently used extents of any file (net/node_cache.c).
 * The number of threads is a constant of the process, never of the number
 * of files.
 *
 * Files join their swarm lazily. node_add_file costs a table entry and a
 * peek at the file's held record; a file that already holds blocks is
 * announced (so it can be served). Fetching starts when something wants
 * blocks of it (a reader, a fill, get or seed), which also keeps its store
 * open; a file with nothing wanted, read or served for a while has its
 * store (and descriptors) closed again.
 *
 * Stop order, the one place it lives (node_stop): wake every waiter, stop
 * the tracker agent, the fetch loop, the workers (which finish the blocks
 * already received), the block server, the housekeeper, then close every
 * store (marks made durable).
 *
 * Locks (in this order): the node's fetch lock (all fetch state: wants,
 * requests, peers, the put queue); a file's store lock (its store pointer
 * and pins); the store's own locks. The block server's thread takes only
 * store locks; waiting readers sleep on their file's condition variable
 * under the fetch lock.
 */
#ifndef NET_NODE_H
#define NET_NODE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cascade/meta.h"
#include "cascade/store.h"
#include "net/tracker_client.h"

#define NODE_MAX_UPLOAD_SLOTS 1024   /* what --upload-slots and -o upload_slots accept */

#define NODE_FILLS_AT_ONCE 8

enum node_priority {
    NODE_WANT_NONE = 0,
    NODE_WANT_BACKGROUND = 1,  /* fill, get, seed: lowest */
    NODE_WANT_PREFETCH = 2,    /* read-ahead */
    NODE_WANT_URGENT = 3,      /* a reader is waiting */
};

struct node_config {
    struct tracker_list trackers;   /* n 0: no tracker (static peers only) */
    bool serve;                     /* run a block server and announce */
    struct sockaddr_in listen;      /* where to serve (port 0: any free port) */
    uint32_t announce_ip;           /* host order; 0: the listen IP, or the
                                       local address seen by each tracker */
    const char *cache_root;         /* NULL: the store's default */
    const struct sockaddr_in *static_peers; /* extra peers for every file (tests) */
    size_t n_static_peers;
    int max_connections;            /* peer connections at once; 0: 32 */
    int upload_slots;               /* blocks we send at once, the rest queued (the
                                       block server's upload_slots); 0: 4; at most
                                       NODE_MAX_UPLOAD_SLOTS (the programs' bound) */
    int pipeline_depth;             /* requests in flight per connection; 0: by rate */
    int request_timeout_ms;         /* 0: by block size */
    int connect_timeout_ms;         /* 0: 3000 */
    int list_interval_s;            /* tracker list refresh; 0: 300 */
    int subscribe_interval_s;       /* 0: 600 (the tracker forgets after 1800) */
    size_t buffer_bytes;            /* block bodies in memory at most; 0: 32 MiB
                                       (never below three of the largest block) */
    int workers;                    /* hash-and-write threads; 0: by CPU count */
    int store_idle_ms;              /* close a store unused this long; 0: 30 s */
    int max_idle_stores;            /* open stores beyond which the least recently
                                       used idle one closes at once; 0: 16 */
    uint64_t cache_max;             /* bytes the cache's own data files of this node
                                       may hold together (0: no limit); net/node_cache.c */
    enum cascade_verify verify;     /* when stored bytes are hashed again (store.h) */
    int lacks_forget_ms;            /* how long a peer's "not present" holds; 0: 700 ms */
};

/* How a file's data is kept. */
struct node_file_options {
    const char *data_path;          /* NULL: <cache>/<hash>/data */
    bool read_only;                 /* never write the data file (serve what it holds) */
    bool adopt;                     /* verify an existing data file's blocks at open */
};

struct node_file_stats {
    uint64_t blocks_held;
    uint64_t peers_known;           /* peers listed for this file, not dropped, and
                                       connected or not failing (fetch_peer_counts) */
    uint64_t peers_connected;       /* of those, with an open connection */
    uint64_t bytes_fetched;         /* verified block bytes stored */
    uint64_t blocks_fetched;
    uint64_t bytes_served;          /* block bytes sent to peers */
    uint64_t bad_blocks;            /* refused: wrong hash */
    uint64_t bytes_wasted;          /* received but not needed (doubled requests) */
    uint64_t peers_dropped;         /* banned for misbehaving (whole node) */
    int store_errno;                /* storing fails now (0: fine) */
};

struct node_stats {
    uint64_t peers_known, peers_connected;
    uint64_t bytes_fetched, bytes_served;
    size_t buffer_bytes;            /* block buffers allocated now (in use + pooled) */
    size_t buffer_bytes_peak;
    size_t buffer_limit;
    size_t table_bytes;             /* per-file, per-block and per-peer tables */
    size_t stores_open;
    uint64_t connections_served;    /* connections the block server accepted, in all */
    uint64_t cache_bytes;           /* held bytes of the cache's own data files */
    uint64_t cache_max;             /* the limit (0: none) */
    uint64_t bytes_evicted;         /* evicted to keep within it, in all */
};

struct peer_node;
struct node_file;

/* Start the threads and (with cfg->serve) the block server; raise the
 * process's descriptor limit to its hard limit (a node may serve many
 * files to many peers). cfg is copied, with what it points to. 0 or -1
 * with a message. */
int node_start(const struct node_config *cfg, struct peer_node **out, char *err, size_t errlen);

/* Wake every waiting reader at once (they get -ECANCELED) and refuse new
 * waits; the node keeps serving until node_stop. For a prompt exit on a
 * signal. Thread-safe. */
void node_interrupt(struct peer_node *n);
/* The same from a signal handler (async-signal-safe: sets a flag and wakes
 * the fetch loop, which interrupts at once). */
void node_interrupt_from_signal(struct peer_node *n);

/* Stop everything in order (see above) and free. 0, or -1 when some held
 * marks could not be made durable (logged; those blocks are fetched again
 * next time). NULL is fine. */
int node_stop(struct peer_node *n);

/* Where the block server listens (port 0 when not serving). */
void node_address(const struct peer_node *n, struct sockaddr_in *out);
void node_get_stats(struct peer_node *n, struct node_stats *out);

/* Add a file. meta must outlive the node; opts is copied. No store is
 * opened and no thread started: a peek at the held record tells whether
 * it holds blocks to serve (then it is announced). -1 with a message when
 * its cascade hash is already there. */
int node_add_file(struct peer_node *n, const struct cascade_meta *meta,
                  const struct node_file_options *opts, struct node_file **out,
                  char *err, size_t errlen);

/* Open the file for a user (a FUSE handle, get, seed): opens its store if
 * needed (adopting the data file when asked) and keeps it open until
 * node_file_close; joins the swarm (announced, listed). Returns the store,
 * valid until the matching close, or NULL with a message. */
struct cascade_store *node_file_open(struct node_file *f, char *err, size_t errlen);
void node_file_close(struct node_file *f);

/* Want blocks [first, first+count) at prio (raises, never lowers, the
 * priority of blocks not held). Only between open and close. */
void node_file_want(struct node_file *f, uint64_t first, uint64_t count,
                    enum node_priority prio);
/* Want every missing block in the background (get). Only between open
 * and close. */
void node_file_want_all(struct node_file *f);
/* Fill f in the background when the node gets to it (seed, -o fill): at
 * most NODE_FILLS_AT_ONCE files fill at a time, each keeping its store
 * open until complete, the others wait their turn. Needs no open. */
void node_file_fill(struct node_file *f);

/* The read path in one call: want the missing blocks under bytes
 * [off, off+len) urgently and [ra_off, ra_off+ra_len) as read-ahead (at
 * most a quarter of the cache limit, when there is one), then
 * wait until every block under [off, off+len) is held or deadline_ms (on
 * the cascade_now_ms clock) passes. Only between open and close.
 * 0: held (read it from the store); -ETIMEDOUT; -ECANCELED (stopping);
 * -ENOSPC, -EIO, ...: storing fetched blocks fails now (the true cause). */
int node_file_fetch_range(struct node_file *f, uint64_t off, uint64_t len,
                          uint64_t ra_off, uint64_t ra_len, uint64_t deadline_ms);

/* Wait until every block is held, or deadline_ms, or no block arrived for
 * stall_ms while blocks are wanted. 0, -ETIMEDOUT, -EHOSTUNREACH (stalled),
 * -EFBIG (the cache limit stopped the fill), -ECANCELED, or the store's
 * failure. Only between open and close. */
int node_file_wait_complete(struct node_file *f, uint64_t deadline_ms, uint64_t stall_ms);

/* Held blocks now (from the store, or the count it had when it closed). */
uint64_t node_file_held_count(struct node_file *f);
/* Lowest block not held (block_count when complete); only while open. */
uint64_t node_file_first_missing(struct node_file *f);
/* Copy the held bitmap into bits (bitmap_bytes(block_count) bytes); all
 * clear for a file whose store was never opened. */
void node_file_held_map(struct node_file *f, uint8_t *bits);
void node_file_get_stats(struct node_file *f, struct node_file_stats *out);
const struct cascade_meta *node_file_meta(const struct node_file *f);

#endif
