/* The cache limit of a peer node (node.h: cfg.cache_max), over every file
 * whose data file is the cache's own (a user's data file is served, never
 * managed).
 *
 * The node keeps the held bytes of each such file (from its store while
 * open, the figure it closed with otherwise) and their sum. A worker
 * reserves a block's bytes before it writes them; when the sum would pass
 * the limit it evicts first, so the cache on disk never holds more than
 * the limit. Eviction takes the least recently used extents of any file
 * (opening a closed store when its extents are the oldest), down to an
 * eighth below the limit, so its record writes and fdatasyncs come in
 * batches; the housekeeper does it ahead of need (a worker kicks it once
 * half of that margin is used), so a worker seldom waits for one. A block of a fill
 * (background) never evicts: the fill stops at the limit, said once.
 *
 * Recency across files: each file's oldest extent, as last learned (0
 * when not known yet, so that file is looked at first). The evictor
 * evicts from the file with the oldest extent only what is older than the
 * next file's oldest, then looks again. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "net/node_internal.h"

/* Evict down to this far below the limit (a share of it, at least a MiB);
 * the housekeeper starts once half of that margin is used up, so a worker
 * seldom waits for an eviction (and its fdatasync). */
#define CACHE_SLACK_SHARE 8
#define CACHE_SLACK_MIN (1u << 20)

int node_cache_init(struct peer_node *n)
{
    atomic_init(&n->bytes_evicted, 0);
    if (pthread_mutex_init(&n->evict_lock, NULL) != 0)
        return -1;
    if (pthread_mutex_init(&n->cache_lock, NULL) != 0) {
        pthread_mutex_destroy(&n->evict_lock);
        return -1;
    }
    return 0;
}

void node_cache_destroy(struct peer_node *n)
{
    pthread_mutex_destroy(&n->evict_lock);
    pthread_mutex_destroy(&n->cache_lock);
}

static bool limited(const struct peer_node *n)
{
    return n->cfg.cache_max > 0;
}

/* Set f's figures (under cache_lock). */
static void set_bytes_locked(struct node_file *f, uint64_t bytes)
{
    struct peer_node *n = f->node;
    n->cache_used = n->cache_used - f->cache_bytes + bytes;
    f->cache_bytes = bytes;
}

void node_cache_add_file(struct node_file *f)
{
    if (!f->cache_owned)
        return;
    const struct cascade_meta *m = f->meta;
    uint64_t bytes = f->held_hint >= m->block_count ? m->size : f->held_hint * m->block_size;
    pthread_mutex_lock(&f->node->cache_lock);
    set_bytes_locked(f, bytes);
    pthread_mutex_unlock(&f->node->cache_lock);
}

void node_cache_note_open(struct node_file *f, struct cascade_store *st)
{
    if (!f->cache_owned)
        return;
    uint64_t bytes = cascade_store_used_bytes(st);
    pthread_mutex_lock(&f->node->cache_lock);
    set_bytes_locked(f, bytes);
    pthread_mutex_unlock(&f->node->cache_lock);
}

void node_cache_note_closed(struct node_file *f, uint64_t held_bytes, uint64_t oldest_ms)
{
    if (!f->cache_owned)
        return;
    pthread_mutex_lock(&f->node->cache_lock);
    set_bytes_locked(f, held_bytes);
    f->oldest_use_ms = oldest_ms;
    pthread_mutex_unlock(&f->node->cache_lock);
}

/* ---- eviction (under evict_lock) ---- */

/* The file whose oldest extent is the oldest (skipping the ones with
 * nothing to evict in this round), and the oldest use among the others. */
static struct node_file *pick_victim(struct peer_node *n, const uint8_t *skip, uint64_t *next_ms)
{
    struct node_file *best = NULL;
    uint64_t best_ms = UINT64_MAX;
    *next_ms = UINT64_MAX;
    size_t count = node_file_count(n);
    for (size_t i = 0; i < count; i++) {
        struct node_file *f = node_file_at(n, i);
        if (!f->cache_owned || (skip && skip[i]))
            continue;
        pthread_mutex_lock(&n->cache_lock);
        bool has = f->cache_bytes > 0;
        uint64_t ms = f->oldest_use_ms;
        pthread_mutex_unlock(&n->cache_lock);
        if (!has)
            continue;
        if (!best || ms < best_ms) {
            if (best)
                *next_ms = best_ms < *next_ms ? best_ms : *next_ms;
            best = f;
            best_ms = ms;
        } else if (ms < *next_ms) {
            *next_ms = ms;
        }
    }
    return best;
}

/* Bytes to free now to fit need more under the limit (0: it fits). */
static uint64_t over_by(struct peer_node *n, uint64_t need)
{
    pthread_mutex_lock(&n->cache_lock);
    uint64_t total = n->cache_used + n->cache_reserved + need;
    pthread_mutex_unlock(&n->cache_lock);
    return total > n->cfg.cache_max ? total - n->cfg.cache_max : 0;
}

/* One step: evict from the file with the oldest extent. 1 freed
 * something, 0 learned something (look again), -1 that file had nothing
 * to give (skip it this round). */
static int evict_step(struct node_file *f, uint64_t want, uint64_t next_ms)
{
    char err[CASCADE_ERRLEN];
    struct cascade_store *st = node_file_pin(f, err, sizeof err);
    if (!st) {
        log_warn("%s: cannot open its store to evict from it: %s", f->name, err);
        return -1;
    }
    struct peer_node *n = f->node;
    uint64_t oldest = cascade_store_oldest_use(st);
    int rc;
    if (oldest == UINT64_MAX) {
        rc = -1;   /* empty, or all of it pinned */
    } else if (oldest > next_ms) {
        rc = 0;    /* another file's extents are older after all */
    } else {
        int64_t freed = cascade_store_evict(st, want, next_ms);
        if (freed > 0)
            atomic_fetch_add(&n->bytes_evicted, (uint64_t)freed);
        oldest = cascade_store_oldest_use(st);
        rc = freed > 0 ? 1 : -1;
    }
    uint64_t bytes = cascade_store_used_bytes(st);
    pthread_mutex_lock(&n->cache_lock);
    set_bytes_locked(f, bytes);
    f->oldest_use_ms = oldest;
    pthread_mutex_unlock(&n->cache_lock);
    node_file_unpin(f);
    return rc;
}

static uint64_t slack_of(const struct peer_node *n)
{
    uint64_t slack = n->cfg.cache_max / CACHE_SLACK_SHARE;
    return slack < CACHE_SLACK_MIN ? CACHE_SLACK_MIN : slack;
}

/* Evict until need more bytes fit under the limit with the slack to
 * spare, or nothing more can go. True when need fits under the limit. */
static bool make_room(struct peer_node *n, uint64_t need)
{
    uint64_t slack = slack_of(n);
    pthread_mutex_lock(&n->evict_lock);
    size_t files = node_file_count(n);
    uint8_t *skip = calloc(files + 1, 1);
    /* Each step frees something, learns a file's true oldest, or skips a
     * file: bounded. */
    size_t steps = 4 * files + 16;
    uint64_t over;
    while ((over = over_by(n, need + slack)) > 0 && steps-- > 0) {
        uint64_t next_ms;
        struct node_file *f = pick_victim(n, skip, &next_ms);
        if (!f)
            break;
        int rc = evict_step(f, over, next_ms);
        if (rc < 0 && skip && f->index < files)
            skip[f->index] = 1;
        else if (rc < 0)
            break;
    }
    free(skip);
    pthread_mutex_unlock(&n->evict_lock);
    return over_by(n, need) == 0;
}

static bool reserve(struct peer_node *n, uint64_t len)
{
    pthread_mutex_lock(&n->cache_lock);
    n->cache_reserved += len;
    pthread_mutex_unlock(&n->cache_lock);
    return true;
}

bool node_cache_reserve(struct node_file *f, uint64_t len, int prio)
{
    struct peer_node *n = f->node;
    if (!f->cache_owned || !limited(n))
        return true;
    /* A fill takes only room nobody made for it: it stops short of the
     * margin where the housekeeper starts evicting, so it never evicts. */
    if (prio == NODE_WANT_BACKGROUND)
        return over_by(n, len + slack_of(n) / 2) == 0 ? reserve(n, len) : false;
    bool fits = over_by(n, len) == 0;
    if (!fits && !make_room(n, len))
        log_debug("%s: the cache cannot shrink below its limit now (blocks in use); "
                  "storing a block past it", f->name);
    return reserve(n, len);
}

bool node_cache_stored(struct node_file *f, struct cascade_store *st, uint64_t len)
{
    struct peer_node *n = f->node;
    if (!f->cache_owned)
        return false;
    uint64_t bytes = cascade_store_used_bytes(st);
    pthread_mutex_lock(&n->cache_lock);
    if (limited(n))
        n->cache_reserved -= len;
    set_bytes_locked(f, bytes);
    pthread_mutex_unlock(&n->cache_lock);
    return limited(n) && over_by(n, slack_of(n) / 2) > 0;
}

void node_cache_stop_fill(struct node_file *f)
{
    struct fetch_file *ff = &f->fetch;
    uint64_t dropped = 0;
    for (uint64_t i = 0; ff->prio && i < f->meta->block_count; i++) {
        if (ff->prio[i] != NODE_WANT_BACKGROUND)
            continue;
        ff->prio[i] = NODE_WANT_NONE;
        ff->wanted_missing--;
        dropped++;
    }
    if (!f->fill_capped && dropped > 0) {
        char limit[32];
        cascade_human_bytes(f->node->cfg.cache_max, limit, sizeof limit);
        log_info("%s: the cache reached its limit (%s): the fill stops here, %llu blocks "
                 "not fetched (reading them still works)", f->name, limit,
                 (unsigned long long)dropped);
        f->fill_capped = true;
    }
    fetch_file_settle(f);
}

void node_cache_house(struct peer_node *n)
{
    if (limited(n) && over_by(n, slack_of(n) / 2) > 0)
        make_room(n, 0);
}
