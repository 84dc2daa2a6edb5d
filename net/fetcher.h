/* The fetcher: gets the blocks of one cascade file from peers into its
 * store. Shared by `cascade get`, `cascade seed` and cascadefs.
 *
 * Callers say which blocks they want and how urgently; a reader waits for
 * a block with a timeout. Inside, one thread per fetcher runs the work:
 *   - peers come from the tracker (list), refreshed when short and
 *     periodically; the fetcher subscribes the file (announce) and renews
 *     well inside the tracker's 1800 s expiry; never connects to itself;
 *   - persistent connections to several peers, several requests in flight
 *     on each (pipelining);
 *   - faster peers get more work, a block stuck on a slow peer is asked
 *     again elsewhere, status 2 moves a block to another peer, timeouts /
 *     resets / protocol errors back a peer off, a peer that sends a wrong
 *     hash, wrong length or unknown status is dropped;
 *   - every block goes through cascade_store_put (which verifies it)
 *     before any waiter is woken.
 */
#ifndef NET_FETCHER_H
#define NET_FETCHER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cascade/store.h"

enum fetch_priority {
    FETCH_NONE = 0,        /* not wanted */
    FETCH_BACKGROUND = 1,  /* fill: lowest */
    FETCH_PREFETCH = 2,    /* read-ahead */
    FETCH_URGENT = 3,      /* a reader is waiting */
};

struct fetcher_config {
    struct sockaddr_in tracker;   /* sin_port 0: no tracker (use static_peers only) */
    bool subscribe;               /* announce this file to the tracker */
    uint32_t announce_ip;         /* 0: local address of the tracker connection */
    uint16_t announce_port;       /* port our block server listens on */
    struct sockaddr_in self;      /* our own server address, never connected to (port 0: none) */
    const struct sockaddr_in *static_peers; /* extra peers, e.g. for tests; may be NULL */
    size_t n_static_peers;
    int max_connections;          /* 0: default (8) */
    int pipeline_depth;           /* 0: default, requests in flight per connection */
    int request_timeout_ms;       /* 0: default; a block not answered by then goes elsewhere */
    int connect_timeout_ms;       /* 0: default (3000) */
    int tracker_interval_s;       /* 0: default (300 s list refresh; subscribe every 600 s) */
};

struct fetcher_stats {
    uint64_t peers_known;
    uint64_t peers_connected;
    uint64_t bytes_fetched;       /* verified block bytes stored */
    uint64_t blocks_fetched;
    uint64_t bad_blocks;          /* refused: wrong hash or length */
    uint64_t peers_dropped;
};

struct fetcher;

int fetcher_start(struct cascade_store *st, const struct fetcher_config *cfg,
                  struct fetcher **out, char *err, size_t errlen);

/* Want blocks [first, first+count) at prio (raises, never lowers, the
 * priority of blocks not held yet). Held blocks are ignored. */
void fetcher_want(struct fetcher *f, uint64_t first, uint64_t count, enum fetch_priority prio);
/* Want every missing block at FETCH_BACKGROUND. */
void fetcher_want_all(struct fetcher *f);

/* Wait until block idx is held. 0 when held; -ETIMEDOUT after timeout_ms;
 * -ECANCELED when the fetcher is stopping; -EIO when the store failed to
 * write a block; -ERANGE for an index past the end. Does not itself want
 * the block. */
int fetcher_wait(struct fetcher *f, uint64_t idx, int timeout_ms);

/* Wait until every block is held, or timeout_ms (negative: no limit), or
 * no progress is possible: -EHOSTUNREACH when no peer has been usable for
 * stall_ms. Used by `cascade get`. */
int fetcher_wait_complete(struct fetcher *f, int timeout_ms, int stall_ms);

void fetcher_get_stats(struct fetcher *f, struct fetcher_stats *out);

/* Lowest block index not held yet (block_count when complete); for
 * messages such as "no peer could provide block 7". */
uint64_t fetcher_first_missing(struct fetcher *f);

/* Stop the thread, close every connection. NULL is fine. */
void fetcher_stop(struct fetcher *f);

#endif
