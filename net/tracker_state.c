/* The tracker's memory and rules: see tracker_state.h.
 * Linear tables: with the caps (10,000 hashes, 1,000 peers each) a request
 * costs microseconds, and the code stays obvious. */
#include "net/tracker_state.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cascade/util.h"

struct tracked_peer {
    uint32_t ip;
    uint16_t port;
    uint64_t last_seen;
    bool good;
};

struct tracked_hash {
    uint8_t hash[CASCADE_HASH_LEN];
    uint64_t last_active;        /* for eviction when the table is full */
    struct tracked_peer *peers;
    size_t npeers, cap;
};

struct tracker_state {
    struct tracker_config cfg;
    struct tracked_hash *hashes;
    size_t nhashes;
    uint8_t *allowed;            /* allow-list, 32 bytes each; NULL: any hash */
    size_t nallowed;
    uint32_t *good_ips;
    size_t ngood;
    uint64_t rng;                /* xorshift64 state for shuffling */
};

struct tracker_state *tracker_state_new(const struct tracker_config *cfg)
{
    struct tracker_state *ts = calloc(1, sizeof *ts);
    if (!ts)
        return NULL;
    ts->cfg = *cfg;
    if (!ts->cfg.max_answer) ts->cfg.max_answer = 20;
    if (!ts->cfg.expiry_s) ts->cfg.expiry_s = 1800;
    if (!ts->cfg.max_hashes) ts->cfg.max_hashes = 10000;
    if (!ts->cfg.max_peers_per_hash) ts->cfg.max_peers_per_hash = 1000;
    ts->rng = cfg->seed ? cfg->seed : (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull + 1;
    ts->hashes = calloc(ts->cfg.max_hashes, sizeof *ts->hashes);
    if (!ts->hashes) {
        free(ts);
        return NULL;
    }
    return ts;
}

void tracker_state_free(struct tracker_state *ts)
{
    if (!ts)
        return;
    for (size_t i = 0; i < ts->nhashes; i++)
        free(ts->hashes[i].peers);
    free(ts->hashes);
    free(ts->allowed);
    free(ts->good_ips);
    free(ts);
}

int tracker_state_allow(struct tracker_state *ts, const uint8_t hash[CASCADE_HASH_LEN])
{
    for (size_t i = 0; i < ts->nallowed; i++)
        if (!memcmp(ts->allowed + i * CASCADE_HASH_LEN, hash, CASCADE_HASH_LEN))
            return 0;
    uint8_t *grown = realloc(ts->allowed, (ts->nallowed + 1) * CASCADE_HASH_LEN);
    if (!grown)
        return -1;
    ts->allowed = grown;
    memcpy(ts->allowed + ts->nallowed++ * CASCADE_HASH_LEN, hash, CASCADE_HASH_LEN);
    return 0;
}

size_t tracker_state_allowed_count(const struct tracker_state *ts)
{
    return ts->nallowed;
}

int tracker_state_vouch(struct tracker_state *ts, uint32_t ip)
{
    uint32_t *grown = realloc(ts->good_ips, (ts->ngood + 1) * sizeof *grown);
    if (!grown)
        return -1;
    ts->good_ips = grown;
    ts->good_ips[ts->ngood++] = ip;
    return 0;
}

uint32_t tracker_state_max_answer(const struct tracker_state *ts)
{
    return ts->cfg.max_answer;
}

size_t tracker_state_hash_count(const struct tracker_state *ts)
{
    return ts->nhashes;
}

static bool is_allowed(const struct tracker_state *ts, const uint8_t *hash)
{
    if (!ts->allowed)
        return true;
    for (size_t i = 0; i < ts->nallowed; i++)
        if (!memcmp(ts->allowed + i * CASCADE_HASH_LEN, hash, CASCADE_HASH_LEN))
            return true;
    return false;
}

static bool is_vouched(const struct tracker_state *ts, uint32_t ip)
{
    for (size_t i = 0; i < ts->ngood; i++)
        if (ts->good_ips[i] == ip)
            return true;
    return false;
}

static bool is_loopback(uint32_t ip)
{
    return (ip >> 24) == 127;
}

static struct tracked_hash *find_hash(const struct tracker_state *ts, const uint8_t *hash)
{
    for (size_t i = 0; i < ts->nhashes; i++)
        if (!memcmp(ts->hashes[i].hash, hash, CASCADE_HASH_LEN))
            return &ts->hashes[i];
    return NULL;
}

/* A new entry for hash; when the table is full the least recently active
 * entry gives its place. */
static struct tracked_hash *add_hash(struct tracker_state *ts, const uint8_t *hash, uint64_t now)
{
    struct tracked_hash *h;
    if (ts->nhashes < ts->cfg.max_hashes) {
        h = &ts->hashes[ts->nhashes++];
    } else {
        h = &ts->hashes[0];
        for (size_t i = 1; i < ts->nhashes; i++)
            if (ts->hashes[i].last_active < h->last_active)
                h = &ts->hashes[i];
        free(h->peers);
    }
    memset(h, 0, sizeof *h);
    memcpy(h->hash, hash, CASCADE_HASH_LEN);
    h->last_active = now;
    return h;
}

static void expire_peers(const struct tracker_state *ts, struct tracked_hash *h, uint64_t now)
{
    size_t kept = 0;
    for (size_t i = 0; i < h->npeers; i++)
        if (h->peers[i].last_seen + ts->cfg.expiry_s > now)
            h->peers[kept++] = h->peers[i];
    h->npeers = kept;
}

static int record_peer(struct tracker_state *ts, struct tracked_hash *h, uint32_t ip,
                       uint16_t port, bool good, uint64_t now)
{
    for (size_t i = 0; i < h->npeers; i++) {
        if (h->peers[i].ip == ip && h->peers[i].port == port) {
            h->peers[i].last_seen = now;
            h->peers[i].good = good;
            return 0;
        }
    }
    if (h->npeers == ts->cfg.max_peers_per_hash) {
        size_t oldest = 0;
        for (size_t i = 1; i < h->npeers; i++)
            if (h->peers[i].last_seen < h->peers[oldest].last_seen)
                oldest = i;
        h->peers[oldest] = h->peers[--h->npeers];
    }
    if (h->npeers == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 8;
        if (cap > ts->cfg.max_peers_per_hash)
            cap = ts->cfg.max_peers_per_hash;
        struct tracked_peer *grown = realloc(h->peers, cap * sizeof *grown);
        if (!grown)
            return -1;
        h->peers = grown;
        h->cap = cap;
    }
    h->peers[h->npeers++] = (struct tracked_peer){ip, port, now, good};
    return 0;
}

static uint64_t next_random(struct tracker_state *ts)
{
    ts->rng ^= ts->rng << 13;
    ts->rng ^= ts->rng >> 7;
    ts->rng ^= ts->rng << 17;
    return ts->rng;
}

/* All peers but the requester, shuffled, good ones first, at most max. */
static size_t pick_peers(struct tracker_state *ts, const struct tracked_hash *h,
                         uint32_t req_ip, uint16_t req_port,
                         struct wire_peer_record *out)
{
    size_t n = h->npeers;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order)
        return 0;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = next_random(ts) % i;
        size_t t = order[i - 1]; order[i - 1] = order[j]; order[j] = t;
    }
    size_t count = 0;
    for (int pass = 1; pass >= 0; pass--) {          /* good first, then the rest */
        for (size_t k = 0; k < n && count < ts->cfg.max_answer; k++) {
            const struct tracked_peer *p = &h->peers[order[k]];
            if (p->good != (pass == 1) || (p->ip == req_ip && p->port == req_port))
                continue;
            out[count++] = (struct wire_peer_record){
                .ip = p->ip, .port = p->port,
                .last_seen = (uint32_t)p->last_seen, .good = p->good};
        }
    }
    free(order);
    return count;
}

int tracker_state_handle(struct tracker_state *ts, const struct wire_tracker_request *req,
                         uint32_t source_ip, uint64_t now_s,
                         struct wire_peer_record *out, size_t *nout,
                         char *err, size_t errlen)
{
    *nout = 0;
    if (!is_allowed(ts, req->hash)) {
        cascade_errf(err, errlen, "cascade hash not tracked here");
        return -1;
    }
    uint32_t ip = req->ip ? req->ip : source_ip;
    struct tracked_hash *h = find_hash(ts, req->hash);
    if (req->command == WIRE_CMD_SUBSCRIBE) {
        if (ip != source_ip && !(is_loopback(ip) && is_loopback(source_ip))) {
            cascade_errf(err, errlen, "announced address %u.%u.%u.%u is not the connection's "
                         "source %u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255,
                         ip & 255, source_ip >> 24, (source_ip >> 16) & 255,
                         (source_ip >> 8) & 255, source_ip & 255);
            return -1;
        }
        if (req->port == 0) {
            cascade_errf(err, errlen, "announced port 0");
            return -1;
        }
        if (!h)
            h = add_hash(ts, req->hash, now_s);
        bool good = ip == source_ip && is_vouched(ts, ip);
        expire_peers(ts, h, now_s);
        if (record_peer(ts, h, ip, req->port, good, now_s) < 0) {
            cascade_errf(err, errlen, "tracker out of memory");
            return -1;
        }
    }
    if (!h)
        return 0;   /* nobody has subscribed this hash: an empty list */
    h->last_active = now_s;
    expire_peers(ts, h, now_s);
    *nout = pick_peers(ts, h, ip, req->port, out);
    return 0;
}

size_t tracker_state_peer_count(const struct tracker_state *ts,
                                const uint8_t hash[CASCADE_HASH_LEN], uint64_t now_s)
{
    const struct tracked_hash *h = find_hash(ts, hash);
    size_t n = 0;
    for (size_t i = 0; h && i < h->npeers; i++)
        if (h->peers[i].last_seen + ts->cfg.expiry_s > now_s)
            n++;
    return n;
}
