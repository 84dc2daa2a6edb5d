/* The tracker's memory and rules: see tracker_state.h.
 *
 * An entry (struct entry) is one (ip, port) of one hash. Each sits in
 * three places: its hash's array (for answers), its source's list and the
 * list of all entries (both oldest first: a refresh moves it to the end),
 * so expiry and "a source's oldest" cost O(1). Sources live in an
 * open-addressing table keyed by address. Hashes are found by a linear scan:
 * with the caps (10,000 hashes) a request still costs microseconds. */
#include "net/tracker_state.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cascade/util.h"

enum { BY_SOURCE, BY_AGE, NLINKS };

struct entry;

struct entry_list {
    struct entry *first, *last;
};

struct source {
    uint32_t ip;
    size_t nentries, nhashes;
    size_t mark;                    /* scratch while scanning one hash */
    struct entry_list entries;      /* oldest first */
};

struct tracked_hash {
    uint8_t hash[CASCADE_HASH_LEN];
    uint64_t last_active;           /* ties when choosing a hash to drop */
    size_t slot;                    /* index in ts->hashes */
    size_t nsources;                /* distinct sources among the entries */
    struct entry **entries;
    size_t n, cap;
};

struct entry {
    uint32_t ip;
    uint16_t port;
    bool good;
    uint64_t last_seen;
    struct tracked_hash *hash;
    size_t slot;                    /* index in hash->entries */
    struct source *src;
    struct {
        struct entry *prev, *next;
    } link[NLINKS];
};

struct tracker_state {
    struct tracker_config cfg;
    struct tracked_hash **hashes;
    size_t nhashes;
    struct entry_list all;          /* every entry, oldest first */
    struct source **sources;        /* open addressing, power-of-two size */
    size_t nsources, sources_cap;
    uint8_t *allowed;               /* sorted, distinct, 32 bytes each; NULL: any hash */
    size_t nallowed;
    uint32_t *good_ips;
    size_t ngood;
    uint64_t rng;                   /* xorshift64 state for shuffling and the table key */
    uint64_t key;
    /* While one subscription is being made, these are never freed. */
    struct source *pinned_src;
    struct tracked_hash *pinned_hash;
};

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static uint64_t next_random(struct tracker_state *ts)
{
    ts->rng ^= ts->rng << 13;
    ts->rng ^= ts->rng >> 7;
    ts->rng ^= ts->rng << 17;
    return ts->rng;
}

struct tracker_state *tracker_state_new(const struct tracker_config *cfg)
{
    struct tracker_state *ts = calloc(1, sizeof *ts);
    if (!ts)
        return NULL;
    struct tracker_config *c = &ts->cfg;
    *c = *cfg;
    if (!c->max_answer) c->max_answer = TRACKER_DEFAULT_MAX_ANSWER;
    if (!c->expiry_s) c->expiry_s = TRACKER_DEFAULT_EXPIRY_S;
    if (!c->max_hashes) c->max_hashes = TRACKER_DEFAULT_MAX_HASHES;
    if (!c->max_peers_per_hash) c->max_peers_per_hash = TRACKER_DEFAULT_MAX_PEERS_PER_HASH;
    /* Half the table: one source alone never fills it, yet one host may
     * seed thousands of files. */
    if (!c->max_hashes_per_source) c->max_hashes_per_source = c->max_hashes / 2 ? c->max_hashes / 2 : 1;
    if (!c->max_ports_per_source) c->max_ports_per_source = TRACKER_DEFAULT_MAX_PORTS_PER_SOURCE;
    c->max_hashes_per_source = min_size(c->max_hashes_per_source, c->max_hashes);
    c->max_ports_per_source = min_size(c->max_ports_per_source, c->max_peers_per_hash);
    ts->rng = cfg->seed ? cfg->seed : (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull + 1;
    ts->key = next_random(ts);
    ts->sources_cap = 64;
    ts->hashes = calloc(c->max_hashes, sizeof *ts->hashes);
    ts->sources = calloc(ts->sources_cap, sizeof *ts->sources);
    if (!ts->hashes || !ts->sources) {
        tracker_state_free(ts);
        return NULL;
    }
    return ts;
}

void tracker_state_free(struct tracker_state *ts)
{
    if (!ts)
        return;
    for (struct entry *e = ts->all.first, *next; e; e = next) {
        next = e->link[BY_AGE].next;
        free(e);
    }
    for (size_t i = 0; i < ts->nhashes; i++) {
        free(ts->hashes[i]->entries);
        free(ts->hashes[i]);
    }
    for (size_t i = 0; i < ts->sources_cap; i++)
        free(ts->sources[i]);
    free(ts->sources);
    free(ts->hashes);
    free(ts->allowed);
    free(ts->good_ips);
    free(ts);
}

/* ---- entry lists ------------------------------------------------------ */

static void list_append(struct entry_list *l, struct entry *e, int k)
{
    e->link[k].prev = l->last;
    e->link[k].next = NULL;
    if (l->last)
        l->last->link[k].next = e;
    else
        l->first = e;
    l->last = e;
}

static void list_remove(struct entry_list *l, struct entry *e, int k)
{
    if (e->link[k].prev)
        e->link[k].prev->link[k].next = e->link[k].next;
    else
        l->first = e->link[k].next;
    if (e->link[k].next)
        e->link[k].next->link[k].prev = e->link[k].prev;
    else
        l->last = e->link[k].prev;
}

/* ---- sources: open addressing with linear probing --------------------- */

static size_t source_home(const struct tracker_state *ts, uint32_t ip)
{
    return (size_t)(((ip ^ ts->key) * 0x9e3779b97f4a7c15ull) >> 32) & (ts->sources_cap - 1);
}

static size_t source_slot(const struct tracker_state *ts, uint32_t ip)
{
    size_t i = source_home(ts, ip);
    while (ts->sources[i] && ts->sources[i]->ip != ip)
        i = (i + 1) & (ts->sources_cap - 1);
    return i;
}

static struct source *source_find(const struct tracker_state *ts, uint32_t ip)
{
    return ts->sources[source_slot(ts, ip)];
}

static int sources_grow(struct tracker_state *ts)
{
    size_t old_cap = ts->sources_cap;
    struct source **old = ts->sources;
    struct source **grown = calloc(2 * old_cap, sizeof *grown);
    if (!grown)
        return -1;
    ts->sources = grown;
    ts->sources_cap = 2 * old_cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i])
            ts->sources[source_slot(ts, old[i]->ip)] = old[i];
    free(old);
    return 0;
}

static struct source *source_get(struct tracker_state *ts, uint32_t ip)
{
    struct source *s = source_find(ts, ip);
    if (s)
        return s;
    if (2 * (ts->nsources + 1) > ts->sources_cap && sources_grow(ts) < 0)
        return NULL;
    s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->ip = ip;
    ts->sources[source_slot(ts, ip)] = s;
    ts->nsources++;
    return s;
}

/* Forget a source with no entries left (backward-shift deletion). */
static void source_release(struct tracker_state *ts, struct source *s)
{
    if (s->nentries || s == ts->pinned_src)
        return;
    size_t mask = ts->sources_cap - 1, hole = source_slot(ts, s->ip);
    free(s);
    ts->sources[hole] = NULL;
    ts->nsources--;
    for (size_t i = (hole + 1) & mask; ts->sources[i]; i = (i + 1) & mask) {
        size_t home = source_home(ts, ts->sources[i]->ip);
        /* Move it into the hole unless its home lies cyclically in (hole, i]. */
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            ts->sources[hole] = ts->sources[i];
            ts->sources[i] = NULL;
            hole = i;
        }
    }
}

/* ---- hashes and entries ------------------------------------------------- */

static struct tracked_hash *find_hash(const struct tracker_state *ts, const uint8_t *hash)
{
    for (size_t i = 0; i < ts->nhashes; i++)
        if (!memcmp(ts->hashes[i]->hash, hash, CASCADE_HASH_LEN))
            return ts->hashes[i];
    return NULL;
}

static bool source_in_hash(const struct tracked_hash *h, const struct source *s)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->entries[i]->src == s)
            return true;
    return false;
}

/* Forget a hash with no entries left. */
static void hash_release(struct tracker_state *ts, struct tracked_hash *h)
{
    if (h->n || h == ts->pinned_hash)
        return;
    ts->hashes[h->slot] = ts->hashes[--ts->nhashes];
    ts->hashes[h->slot]->slot = h->slot;
    free(h->entries);
    free(h);
}

/* Remove an entry and forget its hash and source if that was their last. */
static void entry_drop(struct tracker_state *ts, struct entry *e)
{
    struct tracked_hash *h = e->hash;
    struct source *s = e->src;
    h->entries[e->slot] = h->entries[--h->n];
    h->entries[e->slot]->slot = e->slot;
    list_remove(&ts->all, e, BY_AGE);
    list_remove(&s->entries, e, BY_SOURCE);
    s->nentries--;
    if (!source_in_hash(h, s)) {
        s->nhashes--;
        h->nsources--;
    }
    free(e);
    hash_release(ts, h);
    source_release(ts, s);
}

/* Every entry of h, and so h itself. */
static void hash_drop(struct tracker_state *ts, struct tracked_hash *h)
{
    while (h->n > 1)
        entry_drop(ts, h->entries[h->n - 1]);
    entry_drop(ts, h->entries[0]);      /* the last one frees h */
}

static void expire(struct tracker_state *ts, uint64_t now)
{
    while (ts->all.first && ts->all.first->last_seen + ts->cfg.expiry_s <= now)
        entry_drop(ts, ts->all.first);
}

static void entry_touch(struct tracker_state *ts, struct entry *e, bool good, uint64_t now)
{
    e->last_seen = now;
    e->good = good;
    list_remove(&ts->all, e, BY_AGE);
    list_append(&ts->all, e, BY_AGE);
    list_remove(&e->src->entries, e, BY_SOURCE);
    list_append(&e->src->entries, e, BY_SOURCE);
}

static int entry_add(struct tracker_state *ts, struct tracked_hash *h, struct source *s,
                     uint32_t ip, uint16_t port, bool good, uint64_t now)
{
    if (h->n == h->cap) {
        size_t cap = min_size(h->cap ? 2 * h->cap : 4, ts->cfg.max_peers_per_hash);
        struct entry **grown = realloc(h->entries, cap * sizeof *grown);
        if (!grown)
            return -1;
        h->entries = grown;
        h->cap = cap;
    }
    struct entry *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    *e = (struct entry){.ip = ip, .port = port, .good = good, .last_seen = now,
                        .hash = h, .slot = h->n, .src = s};
    if (!source_in_hash(h, s)) {
        s->nhashes++;
        h->nsources++;
    }
    h->entries[h->n++] = e;
    list_append(&ts->all, e, BY_AGE);
    list_append(&s->entries, e, BY_SOURCE);
    s->nentries++;
    return 0;
}

/* ---- the caps ------------------------------------------------------------ */

/* s's entries in h, and the oldest of them. */
static size_t source_entries_in(const struct tracked_hash *h, const struct source *s,
                                struct entry **oldest)
{
    size_t n = 0;
    *oldest = NULL;
    for (size_t i = 0; i < h->n; i++) {
        struct entry *e = h->entries[i];
        if (e->src != s)
            continue;
        n++;
        if (!*oldest || e->last_seen < (*oldest)->last_seen)
            *oldest = e;
    }
    return n;
}

/* A full peer list: the oldest entry of the source holding the most. */
static void drop_from_heaviest_in(struct tracker_state *ts, struct tracked_hash *h)
{
    for (size_t i = 0; i < h->n; i++)
        h->entries[i]->src->mark = 0;
    for (size_t i = 0; i < h->n; i++)
        h->entries[i]->src->mark++;
    struct entry *victim = NULL;
    for (size_t i = 0; i < h->n; i++) {
        struct entry *e = h->entries[i];
        if (!victim || e->src->mark > victim->src->mark ||
            (e->src->mark == victim->src->mark && e->last_seen < victim->last_seen))
            victim = e;
    }
    entry_drop(ts, victim);
}

/* s is in too many hashes: drop its oldest entries until it is in one fewer. */
static void drop_oldest_hash_of(struct tracker_state *ts, struct source *s)
{
    size_t before = s->nhashes;
    while (s->entries.first && s->nhashes == before)
        entry_drop(ts, s->entries.first);
}

/* A full table: a hash of one source only, of the heaviest such source
 * (s itself first among equals, then the least recently active), if that
 * is s or a source at least as heavy as s would be with one more hash. */
static struct tracked_hash *pick_hash_to_drop(const struct tracker_state *ts,
                                              const struct source *s)
{
    struct tracked_hash *victim = NULL;
    size_t best = 0;
    for (size_t i = 0; i < ts->nhashes; i++) {
        struct tracked_hash *h = ts->hashes[i];
        if (h->nsources != 1)
            continue;
        const struct source *owner = h->entries[0]->src;
        if (owner != s && owner->nhashes <= s->nhashes)
            continue;
        size_t weight = 2 * owner->nhashes + (owner == s);
        if (!victim || weight > best || (weight == best && h->last_active < victim->last_active)) {
            victim = h;
            best = weight;
        }
    }
    return victim;
}

static struct tracked_hash *hash_new(struct tracker_state *ts, const uint8_t *hash,
                                     struct source *s, uint64_t now, char *err, size_t errlen)
{
    if (ts->nhashes == ts->cfg.max_hashes) {
        struct tracked_hash *victim = pick_hash_to_drop(ts, s);
        if (!victim) {
            cascade_errf(err, errlen, "tracker full: %zu files tracked; try again later",
                         ts->nhashes);
            return NULL;
        }
        hash_drop(ts, victim);
    }
    struct tracked_hash *h = calloc(1, sizeof *h);
    if (!h) {
        cascade_errf(err, errlen, "tracker out of memory");
        return NULL;
    }
    memcpy(h->hash, hash, CASCADE_HASH_LEN);
    h->last_active = now;
    h->slot = ts->nhashes;
    ts->hashes[ts->nhashes++] = h;
    return h;
}

static struct entry *find_entry(const struct tracked_hash *h, uint32_t ip, uint16_t port)
{
    for (size_t i = 0; h && i < h->n; i++)
        if (h->entries[i]->ip == ip && h->entries[i]->port == port)
            return h->entries[i];
    return NULL;
}

/* Record (ip, port) for hash, charged to s; *hp is the hash's entry (NULL
 * when not tracked yet, set on success). */
static int subscribe(struct tracker_state *ts, struct tracked_hash **hp, const uint8_t *hash,
                     struct source *s, uint32_t ip, uint16_t port, bool good, uint64_t now,
                     char *err, size_t errlen)
{
    struct tracked_hash *h = *hp;
    struct entry *e = find_entry(h, ip, port);
    if (e && e->src == s) {
        entry_touch(ts, e, good, now);
        return 0;
    }
    ts->pinned_hash = h;                /* stays while we make room in it */
    if (e)
        entry_drop(ts, e);              /* announced again from another source: moves */
    struct entry *oldest = NULL;
    size_t mine = h ? source_entries_in(h, s, &oldest) : 0;
    if (mine >= ts->cfg.max_ports_per_source) {
        entry_drop(ts, oldest);
        mine--;
    }
    if (mine == 0)
        while (s->nhashes >= ts->cfg.max_hashes_per_source)
            drop_oldest_hash_of(ts, s);
    int rc = -1;
    if (!h && !(h = hash_new(ts, hash, s, now, err, errlen)))
        goto out;
    ts->pinned_hash = h;
    if (h->n >= ts->cfg.max_peers_per_hash)
        drop_from_heaviest_in(ts, h);
    if (entry_add(ts, h, s, ip, port, good, now) < 0) {
        cascade_errf(err, errlen, "tracker out of memory");
        goto out;
    }
    rc = 0;
out:
    ts->pinned_hash = NULL;
    if (rc == 0) {
        *hp = h;
        return 0;
    }
    if (h)
        hash_release(ts, h);            /* if we left it empty */
    return -1;
}

/* ---- allow-list and vouching ----------------------------------------------- */

static int compare_hashes(const void *a, const void *b)
{
    return memcmp(a, b, CASCADE_HASH_LEN);
}

static bool is_allowed(const struct tracker_state *ts, const uint8_t *hash)
{
    return !ts->allowed ||
           bsearch(hash, ts->allowed, ts->nallowed, CASCADE_HASH_LEN, compare_hashes);
}

int tracker_state_allow(struct tracker_state *ts, const uint8_t hash[CASCADE_HASH_LEN])
{
    if (ts->allowed && is_allowed(ts, hash))
        return 0;
    uint8_t *grown = realloc(ts->allowed, (ts->nallowed + 1) * CASCADE_HASH_LEN);
    if (!grown)
        return -1;
    size_t at = 0;
    while (at < ts->nallowed && memcmp(grown + at * CASCADE_HASH_LEN, hash, CASCADE_HASH_LEN) < 0)
        at++;
    memmove(grown + (at + 1) * CASCADE_HASH_LEN, grown + at * CASCADE_HASH_LEN,
            (ts->nallowed - at) * CASCADE_HASH_LEN);
    memcpy(grown + at * CASCADE_HASH_LEN, hash, CASCADE_HASH_LEN);
    ts->allowed = grown;
    ts->nallowed++;
    return 0;
}

long tracker_state_set_allowed(struct tracker_state *ts, const uint8_t *hashes, size_t n,
                               char *err, size_t errlen)
{
    if (n == 0) {
        cascade_errf(err, errlen, "an empty allow-list would track any file");
        return -1;
    }
    uint8_t *copy = malloc(n * CASCADE_HASH_LEN);
    if (!copy) {
        cascade_errf(err, errlen, "out of memory for %zu allowed hashes", n);
        return -1;
    }
    memcpy(copy, hashes, n * CASCADE_HASH_LEN);
    qsort(copy, n, CASCADE_HASH_LEN, compare_hashes);
    size_t distinct = 1;
    for (size_t i = 1; i < n; i++)
        if (memcmp(copy + i * CASCADE_HASH_LEN, copy + (distinct - 1) * CASCADE_HASH_LEN,
                   CASCADE_HASH_LEN))
            memcpy(copy + distinct++ * CASCADE_HASH_LEN, copy + i * CASCADE_HASH_LEN,
                   CASCADE_HASH_LEN);
    free(ts->allowed);
    ts->allowed = copy;
    ts->nallowed = distinct;
    for (size_t i = ts->nhashes; i-- > 0;)   /* a drop moves the last one into i */
        if (!is_allowed(ts, ts->hashes[i]->hash))
            hash_drop(ts, ts->hashes[i]);
    return (long)distinct;
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

/* ---- answers -------------------------------------------------------------- */

/* All peers but the requester, shuffled, good ones first and within each
 * kind one per source before any second one, at most max. */
static size_t pick_peers(struct tracker_state *ts, const struct tracked_hash *h,
                         uint32_t req_ip, uint16_t req_port, struct wire_peer_record *out)
{
    size_t n = h->n;
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    bool *taken = calloc(n ? n : 1, sizeof *taken);
    if (!order || !taken) {
        free(order);
        free(taken);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
        h->entries[i]->src->mark = 0;       /* picked from this source so far */
    }
    for (size_t i = n; i > 1; i--) {
        size_t j = next_random(ts) % i;
        size_t t = order[i - 1]; order[i - 1] = order[j]; order[j] = t;
    }
    size_t count = 0;
    for (int pass = 0; pass < 4; pass++) {
        bool want_good = pass < 2, first_of_source = pass % 2 == 0;
        for (size_t k = 0; k < n && count < ts->cfg.max_answer; k++) {
            struct entry *e = h->entries[order[k]];
            if (taken[k] || e->good != want_good || (e->ip == req_ip && e->port == req_port) ||
                (first_of_source && e->src->mark))
                continue;
            taken[k] = true;
            e->src->mark++;
            out[count++] = (struct wire_peer_record){
                .ip = e->ip, .port = e->port,
                .last_seen = (uint32_t)e->last_seen, .good = e->good};
        }
    }
    free(order);
    free(taken);
    return count;
}

int tracker_state_handle(struct tracker_state *ts, const struct wire_tracker_request *req,
                         uint32_t source_ip, uint64_t now_s,
                         struct wire_peer_record *out, size_t *nout,
                         char *err, size_t errlen)
{
    *nout = 0;
    expire(ts, now_s);
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
        struct source *s = source_get(ts, source_ip);
        if (!s) {
            cascade_errf(err, errlen, "tracker out of memory");
            return -1;
        }
        bool good = ip == source_ip && is_vouched(ts, ip);
        ts->pinned_src = s;
        int rc = subscribe(ts, &h, req->hash, s, ip, req->port, good, now_s, err, errlen);
        ts->pinned_src = NULL;
        source_release(ts, s);
        if (rc < 0)
            return -1;
    }
    if (!h)
        return 0;   /* nobody has subscribed this hash: an empty list */
    h->last_active = now_s;
    *nout = pick_peers(ts, h, ip, req->port, out);
    return 0;
}

/* ---- counts ------------------------------------------------------------------ */

uint32_t tracker_state_max_answer(const struct tracker_state *ts)
{
    return ts->cfg.max_answer;
}

size_t tracker_state_hash_count(const struct tracker_state *ts)
{
    return ts->nhashes;
}

size_t tracker_state_peer_count(const struct tracker_state *ts,
                                const uint8_t hash[CASCADE_HASH_LEN], uint64_t now_s)
{
    const struct tracked_hash *h = find_hash(ts, hash);
    size_t n = 0;
    for (size_t i = 0; h && i < h->n; i++)
        if (h->entries[i]->last_seen + ts->cfg.expiry_s > now_s)
            n++;
    return n;
}

size_t tracker_state_source_entries(const struct tracker_state *ts, uint32_t source_ip)
{
    const struct source *s = source_find(ts, source_ip);
    return s ? s->nentries : 0;
}
