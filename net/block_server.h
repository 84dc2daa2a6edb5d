/* The block server: one per process, answering PROTOCOL.md section 3
 * requests for every file its source knows.
 *
 * One event-loop thread (epoll, non-blocking sockets) holds thousands of
 * connections with bounded memory per connection; requests on a connection
 * are answered in order; a client that stops reading only stalls itself;
 * idle connections time out. Block bytes go out with sendfile from the
 * store's data file (only held, hence verified, blocks are ever sent).
 *
 * No client can lock others out: a request must arrive whole in bounded
 * time (a trickle does not keep a connection alive); one source address
 * (of the TCP connection) holds at most max_per_address connections, a
 * newcomer beyond that taking the slot of that address's own longest
 * waiter; and when every slot is taken (or descriptors run out) a newcomer
 * takes the slot of the connection that has waited longest for its
 * request. A connection being sent to is never shed (a slow downloader
 * keeps its slot); with nobody waiting the newcomer is refused (closed at
 * once). Shed and refused connections are summed in one warning every
 * 10 s at most, never logged one by one.
 * Uploads are shared fairly: connections take turns (at most a MiB of
 * block bytes each), and each may queue only a little unsent data in the
 * kernel (TCP_NOTSENT_LOWAT), so on a capped uplink the turns are real.
 * Starting a server raises the process's soft RLIMIT_NOFILE to the hard
 * limit (process-wide), and max_connections is held to 3/4 of it.
 *
 * What is served comes from a source (the peer node, or a test): the server
 * asks it for a file by cascade hash and holds the file pinned while it
 * answers, so the source may open stores on demand and close idle ones. */
#ifndef NET_BLOCK_SERVER_H
#define NET_BLOCK_SERVER_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "cascade/store.h"

/* Where the server finds what it serves. Both calls run on the server's
 * thread and must not block for long (opening a store is fine). */
struct block_server_source {
    void *ctx;
    /* The file with this cascade hash, pinned until release(); NULL when
     * the hash is unknown here (status 1). *st is its store (pinned open
     * too), or NULL when nothing of it can be served now (status 2);
     * *block_count its number of blocks (for status 3). */
    void *(*acquire)(void *ctx, const uint8_t *hash, struct cascade_store **st,
                     uint64_t *block_count);
    /* Unpin a file; bytes_sent block bytes of it went out under this pin. */
    void (*release)(void *ctx, void *file, uint64_t bytes_sent);
    /* Optional: a peer at from asked for block of file, which we do not
     * hold (it got status 2): that peer is fetching it elsewhere now. Called
     * with the file pinned, before release. */
    void (*asked_missing)(void *ctx, void *file, uint64_t block, const struct sockaddr_in *from);
    /* Optional: block of file is held (st, pinned); true: answer "not
     * present" this time all the same (a seeder's first copies, see
     * first_copy.h). others_waiting: other connections are being sent
     * to right now. Called with the file pinned, before release. */
    bool (*hold_back)(void *ctx, void *file, struct cascade_store *st, uint64_t block,
                      bool others_waiting);
};

/* Optional hooks (NULL: not called) for a live status of who downloads
 * from us: bytes block bytes went out on the connection from peer (its
 * source address), at most once per turn of sending; a connection from
 * peer closed. On the server's thread; they must be quick. */
struct block_server_watch {
    void *ctx;
    void (*sent)(void *ctx, const struct sockaddr_in *peer, uint64_t bytes);
    void (*closed)(void *ctx, const struct sockaddr_in *peer);
};

/* 0 in any number field means its default; negative values are refused. */
struct block_server_config {
    struct sockaddr_in listen;   /* port 0: pick a free port */
    struct block_server_source source;
    struct block_server_watch watch;
    /* A connection may sit between requests (nothing of the next one
     * sent yet) this long; an answer that makes no progress this long is
     * dropped too. Default 60 s. */
    int idle_timeout_ms;
    /* A request must arrive whole within this of its first byte; a new
     * connection's first request within this of the accept. Time spent
     * sending answers never counts. Default 10 s. */
    int request_timeout_ms;
    int max_connections;         /* default 4096; held to 3/4 of RLIMIT_NOFILE */
    int max_per_address;         /* from one IPv4 address (loopback too); default 64 */
    int upload_slots;            /* block answers going out at once, the rest queued in
                                    order (see block_server.c); default 4. On an uplink
                                    much faster than the peers' downlinks, raise it */
};

struct block_server_stats {
    uint64_t bytes_served;       /* block bytes sent */
    uint64_t blocks_served;
    uint64_t connections_open;
    uint64_t connections_total;  /* accepted and given a slot */
    uint64_t connections_shed;   /* closed while waiting for a request, to make room */
    uint64_t connections_refused;/* closed at once: no room and no one to shed */
    uint64_t requests_timed_out; /* closed: a request not whole within request_timeout_ms */
};

struct block_server;

/* Start listening and serving from cfg->source (raising RLIMIT_NOFILE,
 * see above). 0 or -1 with a message. */
int block_server_start(const struct block_server_config *cfg, struct block_server **out,
                       char *err, size_t errlen);
/* The address actually listened on (with the real port). */
void block_server_address(const struct block_server *srv, struct sockaddr_in *out);
/* Whole-server stats (per-file figures are the source's, from release()). */
void block_server_get_stats(struct block_server *srv, struct block_server_stats *out);
/* Closes every socket (releasing every pin) and joins the thread. NULL is fine. */
void block_server_stop(struct block_server *srv);

#endif
