/* The block server: one per process, answering PROTOCOL.md section 3
 * requests for every store registered with it.
 *
 * One event-loop thread (epoll, non-blocking sockets) holds thousands of
 * connections with bounded memory per connection; requests on a connection
 * are answered in order; a client that stops reading only stalls itself;
 * idle connections time out. Block bytes go out with sendfile from the
 * store's data file (only held, hence verified, blocks are ever sent). */
#ifndef NET_BLOCK_SERVER_H
#define NET_BLOCK_SERVER_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "cascade/store.h"

struct block_server_config {
    struct sockaddr_in listen;   /* port 0: pick a free port */
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

int block_server_start(const struct block_server_config *cfg, struct block_server **out,
                       char *err, size_t errlen);
/* Serve st under its cascade hash. Safe while running. -1 if already there
 * (or out of memory/descriptors). The server keeps its own duplicate of the
 * store's data descriptor. */
int block_server_add_store(struct block_server *srv, struct cascade_store *st);
/* Stop serving st. Safe while running; answers already under way finish
 * from the server's own descriptor (reference counted), and the server never
 * touches st again once this returns, so the caller may close st at once.
 * Later requests for its hash get status 1. */
void block_server_remove_store(struct block_server *srv, struct cascade_store *st);
/* The address actually listened on (with the real port). */
void block_server_address(const struct block_server *srv, struct sockaddr_in *out);
/* Whole-server stats (hash NULL) or one file's (connections_* then 0). */
void block_server_get_stats(struct block_server *srv, const uint8_t *hash,
                            struct block_server_stats *out);
/* Closes every socket and joins the thread. NULL is fine. */
void block_server_stop(struct block_server *srv);

#endif
