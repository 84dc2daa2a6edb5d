/* The local block store: see store.h for the rules it keeps.
 *
 * put(): verify the hash, pwrite the block (no lock: different blocks never
 * overlap, and two writers of one block write identical bytes), then set the
 * in-memory held bit. From then on readers see the block (its verified bytes
 * are in the page cache) and the block is "pending": not yet in the record.
 *
 * Durability is batched, never one fdatasync per block. A flush snapshots
 * the held bits, fdatasyncs the data file, and only then writes the bits
 * that changed into the record. Every bit in the snapshot was set after its
 * pwrite returned, so its bytes are covered by that fdatasync: the record on
 * disk never claims a block whose bytes are not durable. The store has no
 * thread of its own: its owner (the peer node's housekeeper) flushes when
 * cascade_store_flush_due says so; close() flushes too.
 *
 * Eviction (store_evict.c) clears marks durably before it punches, and a
 * put of a block being evicted waits until its bytes are punched, so no
 * put writes into a range being punched. Readers and the block server pin
 * extents (cascade_store_pin_range) while they use the bytes; eviction
 * skips pinned extents. Locks: store_internal.h.
 */
#include "cascade/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cascade/bitmap.h"
#include "cascade/log.h"
#include "cascade/store_internal.h"
#include "cascade/util.h"

/* Flush the record when this much is pending, or after FLUSH_AGE_MS. */
#define FLUSH_PENDING_BLOCKS 4096
#define FLUSH_PENDING_BYTES (64u << 20)
#define FLUSH_AGE_MS 1000

/* ---- small helpers ---------------------------------------------------- */

bool store_block_matches(const struct cascade_meta *m, uint64_t idx, const void *data,
                         size_t len)
{
    uint8_t got[CASCADE_HASH_LEN];
    if (cascade_sha256(data, len, got) < 0)
        return false;
    return memcmp(got, cascade_meta_block_hash(m, idx), CASCADE_HASH_LEN) == 0;
}

uint64_t store_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t store_bits_bytes(const struct cascade_meta *m, const uint8_t *bits, size_t len)
{
    uint64_t count = bitmap_count(bits, len);
    uint64_t bytes = count * m->block_size;
    /* The last block may be short. */
    if (m->block_count > 0 && bitmap_get(bits, m->block_count - 1))
        bytes -= m->block_size - cascade_meta_block_len(m, m->block_count - 1);
    return bytes;
}

/* ---- folders and paths ------------------------------------------------ */

int cascade_store_default_root(char *out, size_t outlen)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int n;
    /* The XDG spec says a relative XDG_CACHE_HOME is invalid: ignore it. */
    if (xdg && xdg[0] == '/')
        n = snprintf(out, outlen, "%s/cascadefs", xdg);
    else if (home && home[0])
        n = snprintf(out, outlen, "%s/.cache/cascadefs", home);
    else
        return -1;
    return (n < 0 || (size_t)n >= outlen) ? -1 : 0;
}

/* mkdir -p; every folder we create is private to the user (0700). */
int store_mkdir_p(const char *path, char *err, size_t errlen)
{
    char *tmp = strdup(path);
    if (!tmp) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    for (char *p = tmp + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST) {
            cascade_errf(err, errlen, "mkdir %s: %s", tmp, strerror(errno));
            free(tmp);
            return -1;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    free(tmp);
    struct stat sb;
    if (stat(path, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
        cascade_errf(err, errlen, "%s is not a folder", path);
        return -1;
    }
    return 0;
}

/* <cache_root>/<cascade-hash-hex> into out. 0 or -1 with a message. */
static int store_dir_of(const struct cascade_meta *meta, const char *cache_root, char *out,
                        size_t outlen, char *err, size_t errlen)
{
    char root[PATH_MAX];
    if (cache_root) {
        if (snprintf(root, sizeof root, "%s", cache_root) >= (int)sizeof root) {
            cascade_errf(err, errlen, "cache folder path too long");
            return -1;
        }
    } else if (cascade_store_default_root(root, sizeof root) < 0) {
        cascade_errf(err, errlen, "no cache folder: set XDG_CACHE_HOME or HOME, or give one");
        return -1;
    }
    char hex[CASCADE_HEX_LEN];
    cascade_hex(meta->cascade_hash, CASCADE_HASH_LEN, hex);
    if (snprintf(out, outlen, "%s/%s", root, hex) >= (int)outlen) {
        cascade_errf(err, errlen, "cache folder path too long");
        return -1;
    }
    return 0;
}

static int store_make_paths(struct cascade_store *st, const struct cascade_store_options *opts,
                            char *err, size_t errlen)
{
    char dir[PATH_MAX];
    if (store_dir_of(st->meta, opts->cache_root, dir, sizeof dir, err, errlen) < 0)
        return -1;
    st->dir = strdup(dir);
    st->record_path = st->dir ? cascade_path_join(st->dir, "held") : NULL;
    st->data_path = opts->data_path ? strdup(opts->data_path)
                    : st->dir ? cascade_path_join(st->dir, "data") : NULL;
    if (!st->dir || !st->record_path || !st->data_path) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- opening the data file and the record ----------------------------- */

/* The record names the data file by the hash of its absolute path. */
static int store_hash_data_path(struct cascade_store *st, char *err, size_t errlen)
{
    char *abs = realpath(st->data_path, NULL);
    const char *name = abs ? abs : st->data_path;
    int rc = cascade_sha256(name, strlen(name), st->record_id.data_path_hash);
    free(abs);
    if (rc < 0)
        cascade_errf(err, errlen, "sha256 failed");
    return rc < 0 ? -1 : 0;
}

/* Opens the data file; *old_size is its size before we extend it. */
int store_open_data(struct cascade_store *st, uint64_t *old_size, char *err, size_t errlen)
{
    int flags = st->read_only ? O_RDONLY : O_RDWR | O_CREAT;
    struct stat sb;
    st->data_fd = cascade_open_regular(st->data_path, flags, 0644, &sb, err, errlen);
    if (st->data_fd < 0)
        return -1;
    *old_size = (uint64_t)sb.st_size;
    st->record_id.data_ino = (uint64_t)sb.st_ino;
    /* Inode numbers are reused at once; the birth time tells a file that
     * replaced ours apart from it (0 where the filesystem has none). */
    struct statx sx;
    if (statx(st->data_fd, "", AT_EMPTY_PATH, STATX_BTIME, &sx) == 0 &&
        (sx.stx_mask & STATX_BTIME))
        st->record_id.data_birth_ns = (uint64_t)sx.stx_btime.tv_sec * 1000000000u +
                                      sx.stx_btime.tv_nsec;
    /* A file we never write must be unchanged since it was verified: any
     * change moves its ctime (which no one can set back). */
    if (st->read_only)
        st->record_id.data_ctime_ns = (uint64_t)sb.st_ctim.tv_sec * 1000000000u +
                                      (uint64_t)sb.st_ctim.tv_nsec;
    return store_hash_data_path(st, err, errlen);
}

/* Sparse, full size: a reader of the mounted file sees the right length at
 * once. A user's longer file is left alone. */
static int store_extend_data(struct cascade_store *st, uint64_t old_size,
                             char *err, size_t errlen)
{
    if (st->read_only || old_size >= st->meta->size)
        return 0;
    if (ftruncate(st->data_fd, (off_t)st->meta->size) < 0) {
        cascade_errf(err, errlen, "extend %s: %s", st->data_path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Marks of blocks that end past the data file's current end are stale
 * (the file was replaced or cut short); drop them. Returns how many. */
static uint64_t store_drop_blocks_past(struct cascade_store *st, uint64_t file_size)
{
    uint64_t dropped = 0;
    const struct cascade_meta *m = st->meta;
    for (uint64_t i = 0; i < m->block_count; i++) {
        uint64_t end = i * m->block_size + cascade_meta_block_len(m, i);
        if (bitmap_get(st->held, i) && end > file_size) {
            bitmap_clear(st->held, i);
            dropped++;
        }
    }
    return dropped;
}

/* The data file is not the one the record was written for (moved, copied,
 * replaced, or changed under a read-only store): keep only the marked
 * blocks whose bytes still verify. Returns how many were dropped, or -1. */
static int64_t store_recheck_held(struct cascade_store *st)
{
    const struct cascade_meta *m = st->meta;
    uint8_t *buf = malloc(m->block_count ? (size_t)cascade_meta_block_len(m, 0) : 1);
    if (!buf)
        return -1;
    int64_t dropped = 0;
    for (uint64_t i = 0; i < m->block_count; i++) {
        if (!bitmap_get(st->held, i))
            continue;
        size_t len = (size_t)cascade_meta_block_len(m, i);
        if (cascade_pread_full(st->data_fd, buf, len, i * m->block_size) < 0 ||
            !store_block_matches(m, i, buf, len)) {
            bitmap_clear(st->held, i);
            dropped++;
        }
    }
    free(buf);
    return dropped;
}

/* Opens the record file and takes its lock. Returns 1 when we own it, 0
 * when we go on without one (marks kept in memory only), -1 on error. */
static int store_open_record_fd(struct cascade_store *st, bool exclusive, char *err,
                                size_t errlen)
{
    st->record_fd = open(st->record_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (st->record_fd < 0) {
        if (!st->read_only) {
            cascade_errf(err, errlen, "open %s: %s", st->record_path, strerror(errno));
            return -1;
        }
        log_warn("store: cannot write %s (%s); held marks kept in memory only",
                 st->record_path, strerror(errno));
        return 0;
    }
    /* Two processes writing one record for two different data files would
     * mix their marks; the second one keeps its marks to itself. */
    if (flock(st->record_fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK) {
            cascade_errf(err, errlen, "lock %s: %s", st->record_path, strerror(errno));
            return -1;
        }
        if (exclusive) {
            cascade_errf(err, errlen, "%s is in use by another process", st->dir);
            errno = EBUSY;
            return -1;
        }
        log_warn("store: %s is in use by another process; held marks of this one "
                 "are kept in memory only", st->dir);
        return 0;
    }
    return 1;
}

/* Writes the corrected record (synced when marks were dropped, before the
 * data file is extended, so a stale mark cannot come back after a crash). */
static int store_rewrite_record(struct cascade_store *st, bool sync, char *err, size_t errlen)
{
    if (cascade_record_rewrite(st->record_fd, &st->record_id, st->held,
                               st->bits_len, err, errlen) < 0)
        return -1;
    if (sync && fdatasync(st->record_fd) < 0) {
        cascade_errf(err, errlen, "sync %s: %s", st->record_path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Loads (or starts) the record of held blocks. */
static int store_open_record(struct cascade_store *st, uint64_t data_size, bool exclusive,
                             char *err, size_t errlen)
{
    int owned = store_open_record_fd(st, exclusive, err, errlen);
    if (owned < 0 || st->record_fd < 0)
        return owned < 0 ? -1 : 0;
    int state = cascade_record_load(st->record_fd, &st->record_id, st->held,
                                    st->bits_len, err, errlen);
    if (state < 0)
        return -1;
    uint64_t dropped = state != CASCADE_RECORD_NONE ? store_drop_blocks_past(st, data_size) : 0;
    if (dropped > 0)
        log_warn("store: %s is shorter than recorded; %llu marks dropped",
                 st->data_path, (unsigned long long)dropped);
    if (state == CASCADE_RECORD_OTHER_FILE) {
        log_info("store: %s is not the file the held record was written for; "
                 "re-verifying its held blocks", st->data_path);
        int64_t bad = store_recheck_held(st);
        if (bad < 0) {
            cascade_errf(err, errlen, "out of memory");
            return -1;
        }
        if (bad > 0)
            log_warn("store: %lld held blocks of %s no longer verify; dropped",
                     (long long)bad, st->data_path);
        /* The marks we keep now rest on this file's bytes: make them durable. */
        if (owned && fdatasync(st->data_fd) < 0) {
            cascade_errf(err, errlen, "sync %s: %s", st->data_path, strerror(errno));
            return -1;
        }
    }
    if (state == CASCADE_RECORD_NONE)
        log_debug("store: no matching held record in %s; starting empty", st->dir);
    /* Re-verified bytes count as checked in this run; a check made before
     * (an earlier open in this run) counts only for a block still held. */
    if (state == CASCADE_RECORD_OTHER_FILE)
        memcpy(st->checked, st->held, st->bits_len);
    for (size_t j = 0; j < st->bits_len; j++)
        st->checked[j] &= st->held[j];
    st->held_count = bitmap_count(st->held, st->bits_len);
    st->held_bytes = store_bits_bytes(st->meta, st->held, st->bits_len);
    if (!owned) {
        close(st->record_fd);
        st->record_fd = -1;
        return 0;
    }
    if ((state != CASCADE_RECORD_MATCH || dropped > 0) &&
        store_rewrite_record(st, state != CASCADE_RECORD_NONE, err, errlen) < 0)
        return -1;
    memcpy(st->durable, st->held, st->bits_len);
    return 0;
}

/* ---- flushing ----------------------------------------------------------- */

/* After a failed fdatasync the kernel may have dropped dirty pages: the
 * bytes of any block not yet durable can no longer be trusted, so those
 * blocks stop being held (a later put writes them again). */
static void store_forget_unsynced(struct cascade_store *st)
{
    pthread_mutex_lock(&st->lock);
    for (size_t j = 0; j < st->bits_len; j++) {
        uint8_t lost = st->held[j] & (uint8_t)~st->durable[j];
        st->held[j] &= (uint8_t)~lost;
        st->held_count -= (uint64_t)__builtin_popcount(lost);
        st->checked[j] &= (uint8_t)~lost;
    }
    st->held_bytes = store_bits_bytes(st->meta, st->held, st->bits_len);
    st->pending_blocks = 0;
    st->pending_bytes = 0;
    pthread_mutex_unlock(&st->lock);
}

/* Makes the current held marks durable: snapshot, fdatasync data, write the
 * changed record bytes; with sync_record also fdatasync the record. */
static int store_flush_locked(struct cascade_store *st, bool sync_record)
{
    pthread_mutex_lock(&st->lock);
    memcpy(st->snapshot, st->held, st->bits_len);
    uint64_t blocks = st->pending_blocks, bytes = st->pending_bytes;
    st->pending_blocks = 0;
    st->pending_bytes = 0;
    pthread_mutex_unlock(&st->lock);

    size_t from = 0, to = st->bits_len;
    while (from < to && st->snapshot[from] == st->durable[from])
        from++;
    while (to > from && st->snapshot[to - 1] == st->durable[to - 1])
        to--;
    if (from == to && !sync_record)
        return CASCADE_STORE_OK;

    /* Data first: every bit in the snapshot had its pwrite done already. */
    if (from < to && fdatasync(st->data_fd) < 0) {
        log_error("store: sync %s: %s; unsynced blocks will be fetched again",
                  st->data_path, strerror(errno));
        store_forget_unsynced(st);
        return CASCADE_STORE_EIO;
    }
    if (cascade_record_write_bits(st->record_fd, st->snapshot, from, to) < 0 ||
        (sync_record && fdatasync(st->record_fd) < 0)) {
        log_error("store: write %s: %s", st->record_path, strerror(errno));
        pthread_mutex_lock(&st->lock);   /* keep them pending for a retry */
        if (st->pending_blocks == 0)
            st->pending_since_ms = cascade_now_ms();
        st->pending_blocks += blocks;
        st->pending_bytes += bytes;
        pthread_mutex_unlock(&st->lock);
        return CASCADE_STORE_EIO;
    }
    memcpy(st->durable + from, st->snapshot + from, to - from);
    return CASCADE_STORE_OK;
}

int cascade_store_flush(struct cascade_store *st)
{
    if (st->record_fd < 0)
        return CASCADE_STORE_OK;
    pthread_mutex_lock(&st->flush_lock);
    int rc = store_flush_locked(st, true);
    pthread_mutex_unlock(&st->flush_lock);
    store_recency_save(st);
    return rc;
}

bool cascade_store_flush_due(struct cascade_store *st, uint64_t now_ms)
{
    if (st->record_fd < 0)
        return false;
    pthread_mutex_lock(&st->lock);
    bool due = st->pending_blocks > 0 &&
               (st->pending_blocks >= FLUSH_PENDING_BLOCKS ||
                st->pending_bytes >= FLUSH_PENDING_BYTES ||
                now_ms - st->pending_since_ms >= FLUSH_AGE_MS);
    pthread_mutex_unlock(&st->lock);
    return due;
}

/* ---- open / close ------------------------------------------------------ */

static int store_init_sync(struct cascade_store *st, char *err, size_t errlen)
{
    if (pthread_mutex_init(&st->lock, NULL) != 0 ||
        pthread_mutex_init(&st->flush_lock, NULL) != 0 ||
        pthread_rwlock_init(&st->punch_lock, NULL) != 0 ||
        pthread_cond_init(&st->punched, NULL) != 0) {
        cascade_errf(err, errlen, "pthread_mutex_init failed");
        return -1;
    }
    return 0;
}

static int store_check_meta(const struct cascade_meta *m, char *err, size_t errlen)
{
    uint64_t need;
    if (m->block_size == 0 || m->size > (uint64_t)INT64_MAX ||
        cascade_mul_overflows(m->block_count, m->block_size, &need) ||
        need < m->size || (m->block_count > 0 && need - m->size >= m->block_size) ||
        m->block_count / 8 >= SIZE_MAX - CASCADE_RECORD_HEADER_LEN) {
        cascade_errf(err, errlen, "store: inconsistent metadata sizes");
        return -1;
    }
    return 0;
}

int cascade_store_open(const struct cascade_meta *meta,
                       const struct cascade_store_options *opts,
                       struct cascade_store **out, char *err, size_t errlen)
{
    static const struct cascade_store_options defaults = {0};
    if (!opts)
        opts = &defaults;
    *out = NULL;
    if (store_check_meta(meta, err, errlen) < 0)
        return -1;
    struct cascade_store *st = calloc(1, sizeof *st);
    if (!st) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    st->meta = meta;
    st->read_only = opts->read_only;
    st->cache_owned = !opts->data_path && !opts->read_only;
    st->verify = opts->verify;
    st->data_fd = -1;
    st->record_fd = -1;
    st->bits_len = bitmap_bytes(meta->block_count);
    st->record_id.size = meta->size;
    st->record_id.block_size = meta->block_size;
    st->record_id.block_count = meta->block_count;
    memcpy(st->record_id.cascade_hash, meta->cascade_hash, CASCADE_HASH_LEN);
    /* +1: never a zero-sized allocation for an empty file. */
    st->held = calloc(st->bits_len + 1, 1);
    st->durable = calloc(st->bits_len + 1, 1);
    st->snapshot = calloc(st->bits_len + 1, 1);
    st->checked_owned = !opts->checked;
    st->checked = opts->checked ? opts->checked : calloc(st->bits_len + 1, 1);
    st->evicting = calloc(st->bits_len + 1, 1);
    if (!st->held || !st->durable || !st->snapshot || !st->checked || !st->evicting ||
        store_extents_init(st) != 0) {
        cascade_errf(err, errlen, "out of memory");
        goto fail_mem;
    }
    if (store_init_sync(st, err, errlen) < 0)
        goto fail_mem;

    uint64_t old_size = 0;
    if (store_make_paths(st, opts, err, errlen) < 0)
        goto fail;
    bool dir_ok = store_mkdir_p(st->dir, err, errlen) == 0;
    if (!dir_ok && !st->read_only)
        goto fail;
    if (store_open_data(st, &old_size, err, errlen) < 0 ||
        store_open_record(st, old_size, opts->exclusive, err, errlen) < 0 ||
        store_extend_data(st, old_size, err, errlen) < 0)
        goto fail;
    if (st->record_fd < 0)
        st->cache_owned = false;   /* another process's marks: never punch under them */
    store_recency_load(st);
    if (st->cache_owned)
        store_recover(st);
    if (dir_ok)
        store_write_copy(st);
    *out = st;
    return 0;

fail: {
        int saved = errno;
        cascade_store_close(st);
        errno = saved;
        return -1;
    }
fail_mem:
    free(st->held);
    free(st->durable);
    free(st->snapshot);
    if (st->checked_owned)
        free(st->checked);
    free(st->evicting);
    store_extents_free(st);
    free(st);
    return -1;
}

void cascade_store_close(struct cascade_store *st)
{
    if (!st)
        return;
    if (st->data_fd >= 0 && st->record_fd >= 0 && cascade_store_flush(st) < 0)
        log_error("store: final flush of %s failed; some blocks may be fetched again",
                  st->dir);
    if (st->data_fd >= 0)
        close(st->data_fd);
    if (st->record_fd >= 0)
        close(st->record_fd);
    pthread_mutex_destroy(&st->lock);
    pthread_mutex_destroy(&st->flush_lock);
    pthread_rwlock_destroy(&st->punch_lock);
    pthread_cond_destroy(&st->punched);
    if (st->checked_owned)
        free(st->checked);
    free(st->evicting);
    store_extents_free(st);
    free(st->dir);
    free(st->data_path);
    free(st->record_path);
    free(st->held);
    free(st->durable);
    free(st->snapshot);
    free(st);
}

/* ---- blocks ------------------------------------------------------------- */

void store_mark_held_locked(struct cascade_store *st, uint64_t idx, uint64_t len,
                            uint64_t now_wall)
{
    /* Its bytes were hashed (or written) by this run. */
    bitmap_set(st->checked, idx);
    if (bitmap_get(st->held, idx))
        return;
    bitmap_set(st->held, idx);
    st->held_count++;
    st->held_bytes += len;
    if (st->pending_blocks == 0)
        st->pending_since_ms = cascade_now_ms();
    st->pending_blocks++;
    st->pending_bytes += len;
    /* A block that just arrived is the last to go. */
    st->used_ms[store_extent_of(st, idx)] = now_wall;
    st->used_dirty = true;
}

/* Sets the held bit of a block whose verified bytes are written. */
static void store_mark_held(struct cascade_store *st, uint64_t idx, uint64_t len)
{
    uint64_t now = store_wall_ms();
    pthread_mutex_lock(&st->lock);
    store_mark_held_locked(st, idx, len, now);
    pthread_mutex_unlock(&st->lock);
}

bool cascade_store_has(struct cascade_store *st, uint64_t idx)
{
    if (idx >= st->meta->block_count)
        return false;
    pthread_mutex_lock(&st->lock);
    bool held = bitmap_get(st->held, idx);
    pthread_mutex_unlock(&st->lock);
    return held;
}

int cascade_store_put(struct cascade_store *st, uint64_t idx, const void *data, size_t len)
{
    uint64_t want = cascade_meta_block_len(st->meta, idx);
    if (idx >= st->meta->block_count || (uint64_t)len != want)
        return CASCADE_STORE_ERANGE;
    if (st->read_only)
        return CASCADE_STORE_EROFS;
    if (!store_block_matches(st->meta, idx, data, len))
        return CASCADE_STORE_EHASH;
    /* Shared: the data file is not replaced under our write. A block being
     * evicted is written only once its old bytes are punched; a block not
     * held is never punched, so our bytes stay. */
    pthread_rwlock_rdlock(&st->punch_lock);
    pthread_mutex_lock(&st->lock);
    store_wait_punched(st, idx);
    bool held = bitmap_get(st->held, idx);
    pthread_mutex_unlock(&st->lock);
    if (held) {
        pthread_rwlock_unlock(&st->punch_lock);
        return CASCADE_STORE_OK;
    }
    if (cascade_pwrite_full(st->data_fd, data, len, idx * st->meta->block_size) < 0) {
        /* The caller hears the cause (errno) and says it once per episode:
         * a full disk must not become a line per block. */
        int err = errno;
        pthread_rwlock_unlock(&st->punch_lock);
        log_debug("store: write block %llu to %s: %s", (unsigned long long)idx,
                  st->data_path, strerror(err));
        errno = err;
        return CASCADE_STORE_EIO;
    }
    store_mark_held(st, idx, len);
    pthread_rwlock_unlock(&st->punch_lock);
    return CASCADE_STORE_OK;
}

int cascade_store_read(struct cascade_store *st, uint64_t idx, uint64_t off,
                       void *buf, size_t len)
{
    uint64_t blen = cascade_meta_block_len(st->meta, idx), end;
    if (idx >= st->meta->block_count || cascade_add_overflows(off, len, &end) || end > blen)
        return CASCADE_STORE_ERANGE;
    return cascade_store_read_range(st, idx * st->meta->block_size + off, buf, len);
}

int cascade_store_has_range(struct cascade_store *st, uint64_t off, uint64_t len)
{
    uint64_t end;
    if (cascade_add_overflows(off, len, &end) || end > st->meta->size)
        return CASCADE_STORE_ERANGE;
    if (len == 0)
        return CASCADE_STORE_OK;
    uint64_t first = off / st->meta->block_size, last = (end - 1) / st->meta->block_size;
    bool held = true;
    pthread_mutex_lock(&st->lock);
    for (uint64_t b = first; held && b <= last; b++)
        held = bitmap_get(st->held, b);
    pthread_mutex_unlock(&st->lock);
    return held ? CASCADE_STORE_OK : CASCADE_STORE_MISSING;
}

/* ---- pins and verify-once --------------------------------------------------- */

/* Blocks [*first, *end) under bytes [off, off+len); false when out of range. */
static bool store_range_blocks(const struct cascade_store *st, uint64_t off, uint64_t len,
                               uint64_t *first, uint64_t *end)
{
    uint64_t stop;
    if (cascade_add_overflows(off, len, &stop) || stop > st->meta->size)
        return false;
    *first = off / st->meta->block_size;
    *end = len == 0 ? *first : (stop - 1) / st->meta->block_size + 1;
    return true;
}

static void store_pins_add(struct cascade_store *st, uint64_t first, uint64_t end, int delta)
{
    uint64_t last = store_extent_of(st, end - 1);
    for (uint64_t e = store_extent_of(st, first); e <= last; e++)
        st->pins[e] = (uint32_t)((int64_t)st->pins[e] + delta);
}

/* Read and hash block idx; true when its bytes match. */
static bool store_block_verifies(struct cascade_store *st, uint64_t idx)
{
    size_t len = (size_t)cascade_meta_block_len(st->meta, idx);
    uint8_t *buf = malloc(len ? len : 1);
    bool ok = buf && cascade_pread_full(st->data_fd, buf, len, idx * st->meta->block_size) == 0 &&
              store_block_matches(st->meta, idx, buf, len);
    if (!buf)
        log_error("store: no memory to verify block %llu of %s", (unsigned long long)idx,
                  st->data_path);
    free(buf);
    return ok;
}

/* A held block whose bytes do not match: it stops being held (durably,
 * and its bytes are released when they are the cache's). Said a few times
 * per store, then counted. Caller holds no store lock. */
static void store_drop_bad(struct cascade_store *st, uint64_t idx)
{
    pthread_rwlock_rdlock(&st->punch_lock);
    int64_t dropped = store_clear_blocks(st, idx, idx + 1, true);
    pthread_rwlock_unlock(&st->punch_lock);
    if (dropped == 0)
        return;   /* another reader found it first, and said so */
    pthread_mutex_lock(&st->lock);
    uint64_t n = ++st->bad_blocks;
    pthread_mutex_unlock(&st->lock);
    if (n <= STORE_BAD_LOGGED)
        log_warn("store: block %llu of %s does not match its hash (changed on disk?); "
                 "dropped, it will be fetched again%s", (unsigned long long)idx, st->data_path,
                 n == STORE_BAD_LOGGED ? " (further bad blocks of this file are only counted)"
                                       : "");
}

/* Hash the blocks of [first, end) that need it (per st->verify); false when
 * one of them does not match (it was dropped). The range is pinned. */
static bool store_verify_range(struct cascade_store *st, uint64_t first, uint64_t end)
{
    bool all_good = true;
    for (uint64_t b = first; b < end; b++) {
        if (st->verify == CASCADE_VERIFY_NEVER)
            break;
        if (st->verify == CASCADE_VERIFY_FIRST) {
            pthread_mutex_lock(&st->lock);
            bool done = bitmap_get(st->checked, b);
            pthread_mutex_unlock(&st->lock);
            if (done)
                continue;
        }
        if (store_block_verifies(st, b)) {
            pthread_mutex_lock(&st->lock);
            bitmap_set(st->checked, b);
            pthread_mutex_unlock(&st->lock);
        } else {
            store_drop_bad(st, b);
            all_good = false;
        }
    }
    return all_good;
}

int cascade_store_pin_range(struct cascade_store *st, uint64_t off, uint64_t len)
{
    uint64_t first, end;
    if (!store_range_blocks(st, off, len, &first, &end))
        return CASCADE_STORE_ERANGE;
    if (first == end)
        return CASCADE_STORE_OK;
    uint64_t now = store_wall_ms();
    pthread_mutex_lock(&st->lock);
    bool held = true;
    for (uint64_t b = first; held && b < end; b++)
        held = bitmap_get(st->held, b);
    if (held) {
        store_pins_add(st, first, end, 1);
        uint64_t last = store_extent_of(st, end - 1);
        for (uint64_t e = store_extent_of(st, first); e <= last; e++)
            st->used_ms[e] = now;
        st->used_dirty = true;
    }
    pthread_mutex_unlock(&st->lock);
    if (!held)
        return CASCADE_STORE_MISSING;
    if (!store_verify_range(st, first, end)) {
        cascade_store_unpin_range(st, off, len);
        return CASCADE_STORE_MISSING;
    }
    return CASCADE_STORE_OK;
}

void cascade_store_unpin_range(struct cascade_store *st, uint64_t off, uint64_t len)
{
    uint64_t first, end;
    if (!store_range_blocks(st, off, len, &first, &end) || first == end)
        return;
    pthread_mutex_lock(&st->lock);
    store_pins_add(st, first, end, -1);
    pthread_mutex_unlock(&st->lock);
}

int cascade_store_pin_block(struct cascade_store *st, uint64_t idx)
{
    if (idx >= st->meta->block_count)
        return CASCADE_STORE_ERANGE;
    return cascade_store_pin_range(st, cascade_meta_block_offset(st->meta, idx),
                                   cascade_meta_block_len(st->meta, idx));
}

void cascade_store_unpin_block(struct cascade_store *st, uint64_t idx)
{
    if (idx < st->meta->block_count)
        cascade_store_unpin_range(st, cascade_meta_block_offset(st->meta, idx),
                                  cascade_meta_block_len(st->meta, idx));
}

int cascade_store_read_range(struct cascade_store *st, uint64_t off, void *buf, size_t len)
{
    int rc = cascade_store_pin_range(st, off, len);
    if (rc != CASCADE_STORE_OK || len == 0)
        return rc;
    if (cascade_pread_full(st->data_fd, buf, len, off) < 0) {
        if (errno == ENODATA)
            errno = EIO;
        log_error("store: read of %zu bytes at %llu from %s: %s", len, (unsigned long long)off,
                  st->data_path, strerror(errno));
        rc = CASCADE_STORE_EIO;
    }
    cascade_store_unpin_range(st, off, len);
    return rc;
}

uint64_t cascade_store_held_bytes(struct cascade_store *st)
{
    pthread_mutex_lock(&st->lock);
    uint64_t n = st->held_bytes;
    pthread_mutex_unlock(&st->lock);
    return n;
}

uint64_t cascade_store_used_bytes(struct cascade_store *st)
{
    pthread_mutex_lock(&st->lock);
    uint64_t n = st->held_bytes + st->evicting_bytes;
    pthread_mutex_unlock(&st->lock);
    return n;
}

void cascade_store_counters(struct cascade_store *st, uint64_t *evicted_bytes,
                            uint64_t *bad_blocks)
{
    pthread_mutex_lock(&st->lock);
    *evicted_bytes = st->evicted_bytes;
    *bad_blocks = st->bad_blocks;
    pthread_mutex_unlock(&st->lock);
}

uint64_t cascade_store_held_count(struct cascade_store *st)
{
    pthread_mutex_lock(&st->lock);
    uint64_t n = st->held_count;
    pthread_mutex_unlock(&st->lock);
    return n;
}

bool cascade_store_complete(struct cascade_store *st)
{
    return cascade_store_held_count(st) == st->meta->block_count;
}

void cascade_store_held_map(struct cascade_store *st, uint8_t *bits)
{
    pthread_mutex_lock(&st->lock);
    memcpy(bits, st->held, st->bits_len);
    pthread_mutex_unlock(&st->lock);
}

/* ---- adopting an existing data file --------------------------------------- */

/* Progress counts bytes or blocks, as the caller set it up. */
static void adopt_report(struct cascade_progress *progress, const struct cascade_meta *m,
                         uint64_t blocks_done)
{
    if (!progress)
        return;
    uint64_t bytes = blocks_done >= m->block_count ? m->size : blocks_done * m->block_size;
    cascade_progress_update(progress, progress->bytes ? bytes : blocks_done);
}

int64_t cascade_store_adopt(struct cascade_store *st, struct cascade_progress *progress)
{
    const struct cascade_meta *m = st->meta;
    /* Block 0 is the longest block; store_check_meta keeps sizes sane. */
    size_t cap = m->block_count ? (size_t)cascade_meta_block_len(m, 0) : 1;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        log_error("store: adopt: cannot allocate a %zu-byte block buffer", cap);
        return CASCADE_STORE_EIO;
    }
    int64_t marked = 0;
    for (uint64_t i = 0; i < m->block_count; i++) {
        adopt_report(progress, m, i);
        if (cascade_store_has(st, i))
            continue;
        size_t len = (size_t)cascade_meta_block_len(m, i);
        if (cascade_pread_full(st->data_fd, buf, len, i * m->block_size) < 0) {
            if (errno != ENODATA)   /* past the end is simply not held */
                log_warn("store: adopt: read block %llu of %s: %s",
                         (unsigned long long)i, st->data_path, strerror(errno));
            continue;
        }
        if (store_block_matches(m, i, buf, len)) {
            store_mark_held(st, i, len);
            marked++;
        }
    }
    free(buf);
    adopt_report(progress, m, m->block_count);
    if (cascade_store_flush(st) < 0)
        return CASCADE_STORE_EIO;
    return marked;
}

/* ---- peeking at a cache without opening it --------------------------------- */

uint64_t cascade_store_peek(const struct cascade_meta *meta, const char *cache_root,
                            uint8_t *bits)
{
    size_t len = bitmap_bytes(meta->block_count);
    if (bits)
        memset(bits, 0, len);
    char dir[PATH_MAX], path[PATH_MAX + 8];
    if (store_check_meta(meta, NULL, 0) < 0 ||
        store_dir_of(meta, cache_root, dir, sizeof dir, NULL, 0) < 0)
        return 0;
    snprintf(path, sizeof path, "%s/held", dir);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat sb;
    uint8_t *mine = bits ? bits : malloc(len + 1);
    uint64_t count = 0;
    if (mine && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
        struct cascade_record_id id = {.size = meta->size, .block_size = meta->block_size,
                                       .block_count = meta->block_count};
        memcpy(id.cascade_hash, meta->cascade_hash, CASCADE_HASH_LEN);
        if (cascade_record_load(fd, &id, mine, len, NULL, 0) > CASCADE_RECORD_NONE)
            count = bitmap_count(mine, len);
        else
            memset(mine, 0, len);
    }
    close(fd);
    if (!bits)
        free(mine);
    return count;
}

/* ---- accessors ------------------------------------------------------------ */

const struct cascade_meta *cascade_store_meta(const struct cascade_store *st)
{
    return st->meta;
}

int cascade_store_data_fd(const struct cascade_store *st)
{
    return st->data_fd;
}

const char *cascade_store_data_path(const struct cascade_store *st)
{
    return st->data_path;
}

const char *cascade_store_dir(const struct cascade_store *st)
{
    return st->dir;
}

/* ---- for other modules: private folders, renaming the data file ----------- */

int cascade_store_mkdir(const char *path, char *err, size_t errlen)
{
    return store_mkdir_p(path, err, errlen);
}

int cascade_store_rename_data(struct cascade_store *st, const char *new_path,
                              char *err, size_t errlen)
{
    char *copy = strdup(new_path);
    if (!copy) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_lock(&st->flush_lock);   /* no flush writes the record meanwhile */
    int rc = -1;
    if (rename(st->data_path, new_path) < 0) {
        cascade_errf(err, errlen, "rename %s to %s: %s", st->data_path, new_path,
                     strerror(errno));
        goto out;
    }
    free(st->data_path);
    st->data_path = copy;
    copy = NULL;
    if (store_hash_data_path(st, err, errlen) < 0)
        goto out;
    char why[CASCADE_ERRLEN] = "";
    if (st->record_fd >= 0 &&
        cascade_record_rewrite(st->record_fd, &st->record_id, st->durable, st->bits_len,
                               why, sizeof why) == 0 &&
        fdatasync(st->record_fd) < 0)
        snprintf(why, sizeof why, "sync %s: %s", st->record_path, strerror(errno));
    if (why[0]) {
        cascade_errf(err, errlen, "%s renamed, but its held record could not follow (%s)",
                     new_path, why);
        goto out;
    }
    rc = 0;
out:
    pthread_mutex_unlock(&st->flush_lock);
    free(copy);
    return rc;
}
