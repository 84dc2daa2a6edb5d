/* The tracker's network side (PROTOCOL.md section 2): one thread, one epoll
 * loop over non-blocking sockets, answering with the rules of a
 * tracker_state.
 *
 * Every connection has request_timeout_ms to deliver its 54-byte request
 * and take its answer, then it is closed. Silent clients cannot starve the
 * others: when the connection cap is reached a newcomer is still accepted
 * and the connection that has been slowest to send its request (the oldest
 * one still reading) is shed to make room; a source address at its own cap
 * sheds its own oldest such connection. The cap is lowered at start to fit
 * the process's descriptor limit (starting a server first raises the soft
 * RLIMIT_NOFILE to the hard limit, process-wide, as the block server does),
 * and if accept runs out of descriptors
 * anyway (EMFILE) the server sheds the same way, or, with nothing to shed,
 * accepts and closes the newcomer with a descriptor kept in reserve for
 * that, so the listening socket never spins the loop. Repeated warnings
 * are logged once, then summed up at most once per log_interval_ms.
 *
 * Locks: one mutex guards the tracker_state; the loop holds it while it
 * answers a request, tracker_server_set_allowed while it swaps the list.
 * Stats are atomic counters, readable from any thread. */
#ifndef NET_TRACKER_SERVER_H
#define NET_TRACKER_SERVER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/tracker_state.h"

#define TRACKER_SERVER_DEFAULT_MAX_CONNECTIONS 1024
#define TRACKER_SERVER_DEFAULT_MAX_PER_SOURCE 64
#define TRACKER_SERVER_DEFAULT_TIMEOUT_MS 5000
#define TRACKER_SERVER_DEFAULT_LOG_INTERVAL_MS 5000
#define TRACKER_SERVER_MAX_CONNECTIONS 65536

struct tracker_server_config {
    struct sockaddr_in listen;        /* port 0: pick a free port */
    int max_connections;              /* 0: 1024; held to RLIMIT_NOFILE - 32 */
    int max_connections_per_source;   /* 0: 64; never more than max_connections */
    int request_timeout_ms;           /* accept to answer sent; 0: 5000 */
    int log_interval_ms;              /* 0: 5000 */
};

struct tracker_server_stats {
    uint64_t connections_open;
    uint64_t connections_total;       /* accepted */
    uint64_t answered;                /* requests answered with a peer list (status 0) */
    uint64_t refused;                 /* requests answered with status 1 and a message */
    uint64_t shed;                    /* still-reading connections closed to make room */
    uint64_t turned_away;             /* newcomers closed at once: no room, nothing to shed */
    uint64_t timed_out;
    uint64_t accept_errors;           /* accept failures other than "try again" (EMFILE...) */
    uint64_t loop_turns;              /* wake-ups of the loop: they follow work, never spin */
    int max_connections;              /* the cap in force */
    bool failed;                      /* the loop stopped on a fatal error (logged) */
};

struct tracker_server;

/* Listen and start the loop thread. ts stays the caller's (freed after
 * tracker_server_stop) and must not be touched while the server runs but
 * through tracker_server_set_allowed. 0, or -1 with a message. */
int tracker_server_start(const struct tracker_server_config *cfg, struct tracker_state *ts,
                         struct tracker_server **out, char *err, size_t errlen);
/* The address actually listened on (with the real port). */
void tracker_server_address(const struct tracker_server *srv, struct sockaddr_in *out);
/* tracker_state_set_allowed under the server's lock (any thread): the
 * number of distinct hashes now allowed, or -1 with a message. */
long tracker_server_set_allowed(struct tracker_server *srv, const uint8_t *hashes, size_t n,
                               char *err, size_t errlen);
void tracker_server_get_stats(struct tracker_server *srv, struct tracker_server_stats *out);
/* Closes every connection and joins the thread. NULL is fine. */
void tracker_server_stop(struct tracker_server *srv);

#endif
