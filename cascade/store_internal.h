/* Inside the block store (see store.h): the state its files share.
 *   store.c         open, close, put, read, flush; pins and verify-once
 *   store_evict.c   extents: recency (persisted), eviction, dropping blocks
 *   store_scan.c    the recovery scan at open, the files' health, the
 *                   copy of the .cascade
 * Not for other modules.
 *
 * Locks (take in this order): punch_lock (puts and evictions share it; a
 * recreation of the data file takes it alone); flush_lock (serializes
 * writes of the record, owns `durable`); lock (held, checked, evicting,
 * counts, pins, recency). Nothing slow happens under `lock`. A block being
 * evicted is marked in `evicting` from its clearing until its bytes are
 * punched, and a put of it waits for that (`punched`), so no put writes
 * bytes into a range being punched; punches cover cleared blocks only. */
#ifndef CASCADE_STORE_INTERNAL_H
#define CASCADE_STORE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cascade/store.h"
#include "cascade/store_record.h"

/* Recency and pins are kept per extent of about this many bytes (one block
 * at least), and a store has at most STORE_MAX_EXTENTS of them (larger
 * extents for huge files), so their memory stays bounded. */
#define STORE_EXTENT_BYTES (1u << 20)
#define STORE_MAX_EXTENTS (1u << 18)
/* Blocks whose bytes did not verify are named in the log this many times
 * per store, then only counted. */
#define STORE_BAD_LOGGED 3

struct cascade_store {
    const struct cascade_meta *meta;
    char *dir;
    char *data_path;
    char *record_path;
    int data_fd;
    int record_fd;              /* -1: marks kept in memory only (no writable or
                                   no unshared record) */
    bool read_only;
    bool cache_owned;           /* the data file is the cache's own: blocks may be
                                   evicted and holes punched */
    enum cascade_verify verify;
    size_t bits_len;            /* (block_count + 7) / 8 */
    struct cascade_record_id record_id;

    pthread_rwlock_t punch_lock;

    pthread_mutex_t lock;
    uint8_t *held;              /* what readers trust */
    uint8_t *checked;           /* bytes hashed (or written) in this run: memory only */
    bool checked_owned;         /* ours to free (else the owner's, opts.checked) */
    uint8_t *evicting;          /* cleared, their bytes not yet punched */
    uint64_t evicting_bytes;
    pthread_cond_t punched;     /* evicting bits went */
    uint64_t held_count;
    uint64_t held_bytes;
    uint64_t pending_blocks;    /* held but not yet in the record */
    uint64_t pending_bytes;
    uint64_t pending_since_ms;  /* when the oldest pending mark was set */
    uint64_t extent_blocks;     /* blocks per extent */
    uint64_t n_extents;
    uint32_t *pins;             /* per extent: replies and sends using it now */
    uint64_t *used_ms;          /* per extent: wall-clock ms of its last use */
    bool used_dirty;            /* used_ms changed since last saved */
    uint64_t bad_blocks;        /* blocks dropped because their bytes did not verify */
    uint64_t evicted_bytes;

    pthread_mutex_t flush_lock;
    uint8_t *durable;           /* bits as written in the record */
    uint8_t *snapshot;          /* scratch for a flush */
};

/* ---- store.c ---- */
bool store_block_matches(const struct cascade_meta *m, uint64_t idx, const void *data, size_t len);
/* Bytes of the blocks marked in bits. */
uint64_t store_bits_bytes(const struct cascade_meta *m, const uint8_t *bits, size_t len);
int store_mkdir_p(const char *path, char *err, size_t errlen);
/* Opens st->data_path into st->data_fd and fills the record id's file
 * identity; *old_size is its size before we extend it. */
int store_open_data(struct cascade_store *st, uint64_t *old_size, char *err, size_t errlen);
/* Sets a held block's mark (under lock): counts, pending, used. */
void store_mark_held_locked(struct cascade_store *st, uint64_t idx, uint64_t len, uint64_t now_wall);
uint64_t store_wall_ms(void);

/* ---- store_evict.c ---- */
int store_extents_init(struct cascade_store *st);
void store_extents_free(struct cascade_store *st);
/* Load the persisted recency (any mismatch: every extent unused). */
void store_recency_load(struct cascade_store *st);
/* Save it when it changed (a hint: no fsync). */
void store_recency_save(struct cascade_store *st);
static inline uint64_t store_extent_of(const struct cascade_store *st, uint64_t block)
{
    return block / st->extent_blocks;
}
/* Clear the held marks of blocks [first, end) that are not pinned (all of
 * them with force), durably: in memory, then the record written and
 * fdatasync'd, then their bytes released (a cache-owned data file).
 * Caller holds punch_lock (shared). Returns the bytes cleared, or -1 when
 * the record could not be written (nothing punched then). */
int64_t store_clear_blocks(struct cascade_store *st, uint64_t first, uint64_t end, bool force);
/* Release the bytes of blocks [first, end) of a cache-owned data file. */
void store_punch(struct cascade_store *st, uint64_t first, uint64_t end);
/* Wait until block idx is not being evicted (under lock). */
void store_wait_punched(struct cascade_store *st, uint64_t idx);

/* ---- store_scan.c ---- */
/* Blocks written to the data file but never marked (a crash before the
 * record was written): hash those with bytes on disk, mark the ones that
 * match, release the others. */
void store_recover(struct cascade_store *st);
/* Write <dir>/cascade and <dir>/name once, when the meta can be rebuilt. */
void store_write_copy(struct cascade_store *st);

#endif
