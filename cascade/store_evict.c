/* Extents of a store: recency (persisted as a hint), pins, and eviction
 * (see store.h, store_internal.h).
 *
 * Recency is the wall-clock time of an extent's last use (a read, a send,
 * or a block landing), kept in memory per extent and saved to
 * <dir>/recency at each flush and at close, without fsync: losing it only
 * makes the order of eviction less exact. Eviction clears the marks of
 * whole unpinned extents: in memory, then in the record (written and
 * fdatasync'd), and only then punches their bytes, so neither a crash nor
 * a reader ever sees a block marked held whose bytes are gone.
 *
 * <dir>/recency: "CASCRECY", version (4, big-endian), reserved (4),
 * blocks per extent (8), extent count (8), then each extent's last use in
 * ms since the epoch (8, big-endian). */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cascade/bitmap.h"
#include "cascade/log.h"
#include "cascade/store_internal.h"
#include "cascade/util.h"

#define RECENCY_MAGIC "CASCRECY"
#define RECENCY_VERSION 1
#define RECENCY_HEADER_LEN 32

int store_extents_init(struct cascade_store *st)
{
    const struct cascade_meta *m = st->meta;
    uint64_t per = m->block_size >= STORE_EXTENT_BYTES ? 1 : STORE_EXTENT_BYTES / m->block_size;
    while (m->block_count / per >= STORE_MAX_EXTENTS)
        per *= 2;
    st->extent_blocks = per;
    st->n_extents = m->block_count ? (m->block_count + per - 1) / per : 1;
    st->pins = calloc(st->n_extents, sizeof *st->pins);
    st->used_ms = calloc(st->n_extents, sizeof *st->used_ms);
    return st->pins && st->used_ms ? 0 : -1;
}

void store_extents_free(struct cascade_store *st)
{
    free(st->pins);
    free(st->used_ms);
    st->pins = NULL;
    st->used_ms = NULL;
}

static char *recency_path(const struct cascade_store *st)
{
    size_t len = strlen(st->dir) + sizeof "/recency";
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%s/recency", st->dir);
    return p;
}

static void recency_header(const struct cascade_store *st, uint8_t h[RECENCY_HEADER_LEN])
{
    memset(h, 0, RECENCY_HEADER_LEN);
    memcpy(h, RECENCY_MAGIC, 8);
    cascade_put_be32(h + 8, RECENCY_VERSION);
    cascade_put_be64(h + 16, st->extent_blocks);
    cascade_put_be64(h + 24, st->n_extents);
}

void store_recency_load(struct cascade_store *st)
{
    char *path = recency_path(st);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) : -1;
    free(path);
    if (fd < 0)
        return;
    uint8_t want[RECENCY_HEADER_LEN], have[RECENCY_HEADER_LEN];
    recency_header(st, want);
    size_t len = (size_t)st->n_extents * 8;
    uint8_t *raw = malloc(len);
    if (raw && cascade_pread_full(fd, have, sizeof have, 0) == 0 &&
        memcmp(want, have, sizeof want) == 0 &&
        cascade_pread_full(fd, raw, len, RECENCY_HEADER_LEN) == 0) {
        for (uint64_t e = 0; e < st->n_extents; e++)
            st->used_ms[e] = cascade_get_be64(raw + 8 * e);
    }
    free(raw);
    close(fd);
}

void store_recency_save(struct cascade_store *st)
{
    if (!st->cache_owned && st->record_fd < 0)
        return;
    size_t len = (size_t)st->n_extents * 8;
    uint8_t *raw = malloc(RECENCY_HEADER_LEN + len);
    if (!raw)
        return;
    pthread_mutex_lock(&st->lock);
    bool dirty = st->used_dirty;
    st->used_dirty = false;
    for (uint64_t e = 0; dirty && e < st->n_extents; e++)
        cascade_put_be64(raw + RECENCY_HEADER_LEN + 8 * e, st->used_ms[e]);
    pthread_mutex_unlock(&st->lock);
    char *path = dirty ? recency_path(st) : NULL;
    int fd = path ? open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600) : -1;
    if (fd >= 0) {
        recency_header(st, raw);
        if (cascade_pwrite_full(fd, raw, RECENCY_HEADER_LEN + len, 0) != 0)
            log_debug("store: write %s: %s", path, strerror(errno));
        close(fd);
    }
    free(path);
    free(raw);
}

/* ---- the cache's size ---- */

bool cascade_store_evictable(const struct cascade_store *st)
{
    return st->cache_owned && st->record_fd >= 0 && !st->read_only;
}

/* Blocks [first, end) of extent e. */
static void extent_blocks(const struct cascade_store *st, uint64_t e, uint64_t *first,
                          uint64_t *end)
{
    *first = e * st->extent_blocks;
    *end = *first + st->extent_blocks;
    if (*end > st->meta->block_count)
        *end = st->meta->block_count;
}

/* Whether extent e holds a block (under lock). */
static bool extent_holds(const struct cascade_store *st, uint64_t e)
{
    uint64_t first, end;
    extent_blocks(st, e, &first, &end);
    return first < end && bitmap_count_range(st->held, first, end) > 0;
}

uint64_t cascade_store_oldest_use(struct cascade_store *st)
{
    uint64_t oldest = UINT64_MAX;
    pthread_mutex_lock(&st->lock);
    for (uint64_t e = 0; st->held_count > 0 && e < st->n_extents; e++)
        if (st->used_ms[e] < oldest && st->pins[e] == 0 && extent_holds(st, e))
            oldest = st->used_ms[e];
    pthread_mutex_unlock(&st->lock);
    return oldest;
}

uint64_t cascade_store_last_use(struct cascade_store *st)
{
    uint64_t last = 0;
    pthread_mutex_lock(&st->lock);
    for (uint64_t e = 0; e < st->n_extents; e++)
        if (st->used_ms[e] > last)
            last = st->used_ms[e];
    pthread_mutex_unlock(&st->lock);
    return last;
}

void store_punch(struct cascade_store *st, uint64_t first, uint64_t end)
{
    if (!st->cache_owned || first >= end)
        return;
    uint64_t off = cascade_meta_block_offset(st->meta, first);
    uint64_t stop = cascade_meta_block_offset(st->meta, end - 1) +
                    cascade_meta_block_len(st->meta, end - 1);
    if (fallocate(st->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                  (off_t)(stop - off)) != 0) {
        static atomic_flag said = ATOMIC_FLAG_INIT;
        if (!atomic_flag_test_and_set(&said))
            log_warn("store: cannot release evicted bytes of %s: %s (the cache stays as "
                     "large on disk)", st->data_path, strerror(errno));
    }
}

void store_wait_punched(struct cascade_store *st, uint64_t idx)
{
    while (bitmap_get(st->evicting, idx))
        pthread_cond_wait(&st->punched, &st->lock);
}

/* Clear the marks of blocks [first, end) not pinned (all with force), under
 * lock, marking them evicting; the bytes cleared. */
static uint64_t clear_locked(struct cascade_store *st, uint64_t first, uint64_t end, bool force)
{
    uint64_t freed = 0;
    for (uint64_t b = first; b < end; b++) {
        if (!bitmap_get(st->held, b) || (!force && st->pins[store_extent_of(st, b)] > 0))
            continue;
        uint64_t len = cascade_meta_block_len(st->meta, b);
        bitmap_clear(st->held, b);
        bitmap_clear(st->checked, b);
        bitmap_set(st->evicting, b);
        st->evicting_bytes += len;
        st->held_count--;
        st->held_bytes -= len;
        freed += len;
    }
    return freed;
}

/* Make the record say no more than "durable and still held" for bitmap
 * bytes [from, to): written and fdatasync'd. Under flush_lock. 0 or -1. */
static int record_sync_cleared(struct cascade_store *st, size_t from, size_t to)
{
    pthread_mutex_lock(&st->lock);
    for (size_t j = from; j < to; j++)
        st->snapshot[j] = st->durable[j] & st->held[j];
    pthread_mutex_unlock(&st->lock);
    if (from >= to || memcmp(st->snapshot + from, st->durable + from, to - from) == 0)
        return 0;
    if (st->record_fd >= 0 &&
        (cascade_record_write_bits(st->record_fd, st->snapshot, from, to) != 0 ||
         fdatasync(st->record_fd) != 0)) {
        log_error("store: write %s: %s; evicted blocks keep their bytes", st->record_path,
                  strerror(errno));
        return -1;
    }
    memcpy(st->durable + from, st->snapshot + from, to - from);
    return 0;
}

/* Punch the runs of evicting blocks in [first, end) (unless keep: the
 * record could not say they went, so their bytes stay), then let waiting
 * puts go on. */
static void punch_evicting(struct cascade_store *st, uint64_t first, uint64_t end, bool keep)
{
    uint64_t b = first;
    while (!keep && b < end) {
        pthread_mutex_lock(&st->lock);
        while (b < end && !bitmap_get(st->evicting, b))
            b++;
        uint64_t run = b;
        while (run < end && bitmap_get(st->evicting, run))
            run++;
        pthread_mutex_unlock(&st->lock);
        store_punch(st, b, run);
        b = run;
    }
    pthread_mutex_lock(&st->lock);
    for (b = first; b < end; b++) {
        if (bitmap_get(st->evicting, b))
            st->evicting_bytes -= cascade_meta_block_len(st->meta, b);
        bitmap_clear(st->evicting, b);
    }
    pthread_cond_broadcast(&st->punched);
    pthread_mutex_unlock(&st->lock);
}

int64_t store_clear_blocks(struct cascade_store *st, uint64_t first, uint64_t end, bool force)
{
    pthread_mutex_lock(&st->flush_lock);
    pthread_mutex_lock(&st->lock);
    uint64_t freed = clear_locked(st, first, end, force);
    pthread_mutex_unlock(&st->lock);
    int rc = record_sync_cleared(st, (size_t)(first / 8), (size_t)((end + 7) / 8));
    /* Still under flush_lock: evictions run one at a time per store, so
     * each clears only its own evicting marks. */
    punch_evicting(st, first, end, rc != 0);
    pthread_mutex_unlock(&st->flush_lock);
    return rc != 0 ? -1 : (int64_t)freed;
}

struct victim {
    uint64_t used_ms;
    uint64_t extent;
};

static int victim_cmp(const void *a, const void *b)
{
    const struct victim *x = a, *y = b;
    if (x->used_ms != y->used_ms)
        return x->used_ms < y->used_ms ? -1 : 1;
    return x->extent < y->extent ? -1 : x->extent > y->extent;
}

/* Held, unpinned extents last used at or before max_used_ms, oldest first. */
static struct victim *evict_candidates(struct cascade_store *st, uint64_t max_used_ms,
                                       size_t *n)
{
    *n = 0;
    struct victim *v = malloc(st->n_extents * sizeof *v);
    if (!v)
        return NULL;
    pthread_mutex_lock(&st->lock);
    for (uint64_t e = 0; e < st->n_extents; e++)
        if (st->used_ms[e] <= max_used_ms && st->pins[e] == 0 && extent_holds(st, e))
            v[(*n)++] = (struct victim){st->used_ms[e], e};
    pthread_mutex_unlock(&st->lock);
    qsort(v, *n, sizeof *v, victim_cmp);
    return v;
}

/* Clear the victims' marks until want bytes are freed, with one record
 * write and one fdatasync, then punch them. Caller holds punch_lock
 * (shared). The bytes freed, or CASCADE_STORE_EIO. */
static int64_t evict_victims(struct cascade_store *st, struct victim *v, size_t n,
                             uint64_t want)
{
    uint64_t freed = 0, lo = UINT64_MAX, hi = 0;
    size_t used = 0;
    pthread_mutex_lock(&st->flush_lock);
    pthread_mutex_lock(&st->lock);
    for (; used < n && freed < want; used++) {
        uint64_t first, end;
        extent_blocks(st, v[used].extent, &first, &end);
        freed += clear_locked(st, first, end, false);
        lo = first < lo ? first : lo;
        hi = end > hi ? end : hi;
    }
    pthread_mutex_unlock(&st->lock);
    int rc = used ? record_sync_cleared(st, (size_t)(lo / 8), (size_t)((hi + 7) / 8)) : 0;
    if (used)
        punch_evicting(st, lo, hi, rc != 0);
    pthread_mutex_unlock(&st->flush_lock);
    return rc != 0 ? CASCADE_STORE_EIO : (int64_t)freed;
}

int64_t cascade_store_evict(struct cascade_store *st, uint64_t want_bytes, uint64_t max_used_ms)
{
    if (!cascade_store_evictable(st) || want_bytes == 0)
        return 0;
    size_t n;
    struct victim *v = evict_candidates(st, max_used_ms, &n);
    if (!v)
        return CASCADE_STORE_EIO;
    pthread_rwlock_rdlock(&st->punch_lock);
    int64_t freed = evict_victims(st, v, n, want_bytes);
    pthread_rwlock_unlock(&st->punch_lock);
    free(v);
    if (freed > 0) {
        pthread_mutex_lock(&st->lock);
        st->evicted_bytes += (uint64_t)freed;
        pthread_mutex_unlock(&st->lock);
        log_debug("store: evicted %lld bytes of %s", (long long)freed, st->data_path);
    }
    return freed;
}
