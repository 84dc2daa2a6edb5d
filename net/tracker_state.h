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
 *   - an answer takes one entry per source address before it takes a
 *     second one from any (still shuffled, vouched-for first), so a source
 *     announcing many ports cannot crowd the others out of the 20;
 *   - memory is bounded and no source can push out the others. Every entry
 *     is charged to the source address of the connection that made it
 *     (never the IP in the body). A source holds at most
 *     max_ports_per_source entries in one hash (one more drops its own
 *     oldest there) and is subscribed to at most max_hashes_per_source
 *     hashes (one more drops its own oldest entries until it is in one hash
 *     fewer). A full peer list (max_peers_per_hash) drops the oldest entry
 *     of the source holding the most entries in it. A full table
 *     (max_hashes) drops a hash whose entries all come from one source,
 *     choosing the source subscribed to the most hashes, and only when that
 *     is the subscriber itself or a source with more hashes than the
 *     subscriber would have; otherwise the subscription is refused
 *     ("tracker full"). A hash whose last entry goes is forgotten.
 *
 * Not thread-safe: one caller at a time (tracker_server holds a lock). */
#ifndef NET_TRACKER_STATE_H
#define NET_TRACKER_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "net/wire.h"

#define TRACKER_DEFAULT_MAX_ANSWER 20
#define TRACKER_DEFAULT_EXPIRY_S 1800
#define TRACKER_DEFAULT_MAX_HASHES 10000
#define TRACKER_DEFAULT_MAX_PEERS_PER_HASH 1000
#define TRACKER_DEFAULT_MAX_PORTS_PER_SOURCE 16

struct tracker_config {
    uint32_t max_answer;          /* records per answer; 0: 20 */
    uint32_t expiry_s;            /* 0: 1800 */
    size_t max_hashes;            /* 0: 10000 */
    size_t max_peers_per_hash;    /* 0: 1000 */
    size_t max_hashes_per_source; /* 0: half of max_hashes; never more than it */
    size_t max_ports_per_source;  /* entries per source in one hash; 0: 16;
                                     never more than max_peers_per_hash */
    uint64_t seed;                /* shuffle seed; 0: from the clock */
};

struct tracker_state;

/* NULL when out of memory. */
struct tracker_state *tracker_state_new(const struct tracker_config *cfg);
void tracker_state_free(struct tracker_state *ts);   /* NULL is fine */

/* Restrict tracking to an allow-list (the first call turns it on). 0, or
 * -1 when out of memory. */
int tracker_state_allow(struct tracker_state *ts, const uint8_t hash[CASCADE_HASH_LEN]);
/* Replace the allow-list with n hashes (32 bytes each, duplicates fine) and
 * forget every tracked hash no longer on it. n must be at least 1: an empty
 * list would mean "track anything". Returns the number of distinct hashes
 * now allowed, or -1 with a message (nothing changed). */
long tracker_state_set_allowed(struct tracker_state *ts, const uint8_t *hashes, size_t n,
                               char *err, size_t errlen);
/* Distinct hashes on the allow-list; 0: any hash is tracked. */
size_t tracker_state_allowed_count(const struct tracker_state *ts);
/* Vouch for peers at this address (host order). 0, or -1 out of memory. */
int tracker_state_vouch(struct tracker_state *ts, uint32_t ip);

/* Answer one decoded request that came from source_ip at time now_s.
 * On success fills out (room for max_answer records) and *nout, returns 0.
 * On refusal returns -1 with the message for a status-1 answer. */
int tracker_state_handle(struct tracker_state *ts, const struct wire_tracker_request *req,
                         uint32_t source_ip, uint64_t now_s,
                         struct wire_peer_record *out, size_t *nout,
                         char *err, size_t errlen);

uint32_t tracker_state_max_answer(const struct tracker_state *ts);
/* Hashes with at least one entry (expired ones go at the next request). */
size_t tracker_state_hash_count(const struct tracker_state *ts);
/* Live (unexpired at now_s) peers of one hash. */
size_t tracker_state_peer_count(const struct tracker_state *ts,
                                const uint8_t hash[CASCADE_HASH_LEN], uint64_t now_s);
/* Entries charged to one source address, in all hashes. */
size_t tracker_state_source_entries(const struct tracker_state *ts, uint32_t source_ip);

#endif
