/* The tracker agent: one thread that talks to every tracker for every
 * file of a peer node, so a slow or dead tracker never stalls transfers
 * and a thousand files never become a thousand threads.
 *
 * For each tracked file and each tracker:
 *   - subscribe (announce ourselves as a server of the file) at once and
 *     every subscribe_interval_s when asked to (the tracker forgets a peer
 *     after 1800 s); a subscribe answers with the peer list too;
 *   - list at once, then again soon while the list keeps growing (a young
 *     swarm: peers that start together see each other only after they all
 *     subscribed, and an answer holds at most 20 peers): after TRACKER_AGENT_
 *     YOUNG_GAP_MS, doubling each time an answer brings no new peer, until
 *     the gap reaches list_interval_s, which it keeps from then on; and soon
 *     after tracker_agent_want_peers (the node is short of peers for it),
 *     with a growing gap between such early lists.
 * Queries are spread out: at most one every TRACKER_AGENT_GAP_MS, so many
 * files never make a burst, with jitter on every interval. A tracker that
 * fails is backed off (doubling, up to a minute) and logged once per
 * failure episode, not once per query; the others carry on.
 * With announce_ip 0 the address announced to a tracker is the local
 * address of our connection to it (learned by a list first).
 * Peer lists go to the callback, on the agent's thread, with no lock of
 * the agent held (so the callback may call back into the agent).
 */
#ifndef NET_TRACKER_AGENT_H
#define NET_TRACKER_AGENT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cascade/util.h"
#include "net/tracker_client.h"
#include "net/wire.h"

#define TRACKER_AGENT_GAP_MS 20          /* between any two queries */
#define TRACKER_AGENT_YOUNG_GAP_MS 2000  /* first relist of a growing swarm */

struct tracker_agent_config {
    struct tracker_list trackers;
    uint32_t announce_ip;                /* host order; 0: learn it per tracker */
    uint16_t announce_port;
    int list_interval_s;                 /* 0: 300 */
    int subscribe_interval_s;            /* 0: 600 */
    int timeout_ms;                      /* per query; 0: 5000 */
};

/* Peers a tracker (index into cfg.trackers) listed for file; announced is
 * how that tracker sees us (to skip ourselves). Returns how many of them
 * were new (the swarm still grows while answers bring new peers). */
typedef size_t (*tracker_agent_peers_fn)(void *ctx, uint32_t file,
                                         const struct wire_peer_record *peers, size_t n,
                                         const struct sockaddr_in *announced, size_t tracker);

struct tracker_agent;

int tracker_agent_start(const struct tracker_agent_config *cfg, tracker_agent_peers_fn on_peers,
                        void *ctx, struct tracker_agent **out, char *err, size_t errlen);

/* Track file (the caller's index) under its cascade hash: subscribe and/or
 * list it from now on. Repeated calls only add (subscribe stays on once
 * asked). Thread-safe. 0, or -1 when out of memory. */
int tracker_agent_track(struct tracker_agent *a, uint32_t file, const uint8_t *hash,
                        bool subscribe, bool list);
/* Ask for a fresh list of file's peers soon (subject to the backoff).
 * Thread-safe; cheap when nothing is due. */
void tracker_agent_want_peers(struct tracker_agent *a, uint32_t file);

/* How one tracker has been answering, for a live status. */
struct tracker_agent_status {
    uint64_t answered_ms;                /* last answer (cascade_now_ms clock); 0: none yet */
    int failures;                        /* queries failed in a row (0: the last one answered) */
    char error[CASCADE_ERRLEN];          /* why the last failed query failed ("" if none) */
};

/* Copy the status of each tracker (cfg.trackers order) into out, at most
 * max of them; returns how many were copied. Thread-safe. */
size_t tracker_agent_get_status(struct tracker_agent *a, struct tracker_agent_status *out,
                                size_t max);

/* Stops at once (a query under way is cancelled) and joins. NULL is fine. */
void tracker_agent_stop(struct tracker_agent *a);

#endif
