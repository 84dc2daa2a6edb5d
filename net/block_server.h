/* The block server: one per process, answering PROTOCOL.md section 3
 * requests for every file its source knows.
 *
 * One event-loop thread (epoll, non-blocking sockets) holds thousands of
 * connections with bounded memory per connection; requests on a connection
 * are answered in order; a client that stops reading only stalls itself;
 * idle connections time out. Block bytes go out with sendfile from the
 * store's data file (only held, hence verified, blocks are ever sent).
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
};

struct block_server_config {
    struct sockaddr_in listen;   /* port 0: pick a free port */
    struct block_server_source source;
    int idle_timeout_ms;         /* 0: default (60 s) */
    int max_connections;         /* 0: default (4096) */
};

struct block_server_stats {
    uint64_t bytes_served;       /* block bytes sent */
    uint64_t blocks_served;
    uint64_t connections_open;
    uint64_t connections_total;
};

struct block_server;

/* Start listening and serving from cfg->source. 0 or -1 with a message. */
int block_server_start(const struct block_server_config *cfg, struct block_server **out,
                       char *err, size_t errlen);
/* The address actually listened on (with the real port). */
void block_server_address(const struct block_server *srv, struct sockaddr_in *out);
/* Whole-server stats (per-file figures are the source's, from release()). */
void block_server_get_stats(struct block_server *srv, struct block_server_stats *out);
/* Closes every socket (releasing every pin) and joins the thread. NULL is fine. */
void block_server_stop(struct block_server *srv);

#endif
