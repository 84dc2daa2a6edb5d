/* Talking to the tracker on a schedule, for one file: its own thread, so a
 * slow or dead tracker never stalls block transfers.
 *
 *   - list (WIRE_CMD_LIST) at start, every list_interval_s, and soon after
 *     announcer_request_peers() (the fetcher is short of peers), with an
 *     exponential backoff between failed or short-triggered queries so a
 *     down tracker is not hammered;
 *   - subscribe (WIRE_CMD_SUBSCRIBE) at start and every subscribe_interval_s
 *     when cfg.subscribe (the tracker forgets a peer after 1800 s).
 * With announce_ip 0 the address announced is the local address of the
 * connection to the tracker (learned by a list query first).
 * Every peer list received is handed to the callback, from the announcer's
 * thread, together with the address we announce (so it can be skipped).
 */
#ifndef NET_ANNOUNCER_H
#define NET_ANNOUNCER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/wire.h"

struct announcer_config {
    struct sockaddr_in tracker;
    uint8_t hash[CASCADE_HASH_LEN];      /* cascade hash of the file */
    bool subscribe;
    uint32_t announce_ip;                /* host order; 0: learn it */
    uint16_t announce_port;
    int list_interval_s;                 /* 0: 300 */
    int subscribe_interval_s;            /* 0: 600 */
    int timeout_ms;                      /* per query; 0: 5000 */
};

typedef void (*announcer_peers_fn)(void *ctx, const struct wire_peer_record *peers, size_t n,
                                   const struct sockaddr_in *announced);

struct announcer;

int announcer_start(const struct announcer_config *cfg, announcer_peers_fn on_peers, void *ctx,
                    struct announcer **out, char *err, size_t errlen);
/* Ask for a fresh list soon (subject to the backoff). Thread-safe. */
void announcer_request_peers(struct announcer *a);
/* Joins the thread (bounded by one query's timeout). NULL is fine. */
void announcer_stop(struct announcer *a);

#endif
