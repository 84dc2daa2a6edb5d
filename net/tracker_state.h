/* The tracker's memory and rules, with no sockets and an explicit clock, so
 * they can be tested directly (PROTOCOL.md section 2).
 *
 * Matches the existing tracker by default: both commands answer the peer
 * list, subscribe records (ip, port, now), list does not register, the
 * requester's own (ip, port) is left out, at most 20 records, shuffled,
 * vouched-for peers first, peers forgotten 1800 s after last seen, hashes
 * outside a configured allow-list refused. Better than it:
 *   - a body IP of 0.0.0.0 becomes the connection's source address;
 *   - a subscription for an address other than the connection's own is
 *     refused (loopback may announce any loopback address, for tests), and
 *     the "good" flag is given only to an address on the operator's list
 *     announced from that very address;
 *   - memory is bounded: at most max_hashes hashes and max_peers_per_hash
 *     peers each; when full, the least recently active is evicted. */
#ifndef NET_TRACKER_STATE_H
#define NET_TRACKER_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "net/wire.h"

struct tracker_config {
    uint32_t max_answer;          /* records per answer; 0: 20 */
    uint32_t expiry_s;            /* 0: 1800 */
    size_t max_hashes;            /* 0: 10000 */
    size_t max_peers_per_hash;    /* 0: 1000 */
    uint64_t seed;                /* shuffle seed; 0: from the clock */
};

struct tracker_state;

struct tracker_state *tracker_state_new(const struct tracker_config *cfg);
void tracker_state_free(struct tracker_state *ts);

/* Restrict tracking to an allow-list (the first call turns it on). */
int tracker_state_allow(struct tracker_state *ts, const uint8_t hash[CASCADE_HASH_LEN]);
size_t tracker_state_allowed_count(const struct tracker_state *ts);
/* Vouch for peers at this address (host order). */
int tracker_state_vouch(struct tracker_state *ts, uint32_t ip);

/* Answer one decoded request that came from source_ip at time now_s.
 * On success fills out (room for max_answer records) and *nout, returns 0.
 * On refusal returns -1 with the message for a status-1 answer. */
int tracker_state_handle(struct tracker_state *ts, const struct wire_tracker_request *req,
                         uint32_t source_ip, uint64_t now_s,
                         struct wire_peer_record *out, size_t *nout,
                         char *err, size_t errlen);

uint32_t tracker_state_max_answer(const struct tracker_state *ts);
size_t tracker_state_hash_count(const struct tracker_state *ts);
/* Live (unexpired at now_s) peers of one hash. */
size_t tracker_state_peer_count(const struct tracker_state *ts,
                                const uint8_t hash[CASCADE_HASH_LEN], uint64_t now_s);

#endif
