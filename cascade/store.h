/* The local block store: the data of one cascade file on local disk plus a
 * durable record of which blocks are held and verified.
 *
 * It is the only way data reaches a reader or a peer, so the rule "nothing
 * unverified is ever kept or shown" lives here:
 *   - put() checks the block's SHA-256 before writing and refuses a mismatch;
 *   - a block is recorded as held on disk only after its bytes are durable
 *     (data fdatasync'd before the record is written), so a crash or kill -9
 *     never leaves a block recorded as held with wrong bytes;
 *   - read() returns bytes of held blocks only; a missing block is the
 *     distinct result CASCADE_STORE_MISSING.
 *
 * Layout: <cache_root>/<cascade-hash-hex>/data     (sparse, full size)
 *         <cache_root>/<cascade-hash-hex>/held     (record of held blocks)
 *         <cache_root>/<cascade-hash-hex>/recency  (last use per extent: a hint)
 *         <cache_root>/<cascade-hash-hex>/cascade  (a copy of the .cascade)
 *         <cache_root>/<cascade-hash-hex>/name     (the name it was used by)
 * With opts.data_path the data lives in that file instead (the record stays
 * in the cache folder); such a file is the user's: served, never evicted.
 *
 * A cache-owned data file may shrink: cascade_store_evict clears held marks
 * durably (record written and fdatasync'd) and only then punches holes, and
 * never touches a block pinned by a reply or a send
 * (cascade_store_pin_range). At open, blocks whose bytes reached the data
 * file but whose marks did not reach the record (a crash) are found with
 * SEEK_DATA, hashed, and kept when they match. Bytes this process did not
 * write are hashed the first time they are read or served (opts.verify).
 *
 * Thread safety: every function may be called from many threads at once
 * (readers and writers of different blocks, two writers of one block).
 * The store starts no thread: held marks become durable when the owner
 * calls cascade_store_flush (cascade_store_flush_due says when), and at
 * close.
 */
#ifndef CASCADE_STORE_H
#define CASCADE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cascade/meta.h"
#include "cascade/progress.h"

enum cascade_store_result {
    CASCADE_STORE_OK = 0,
    CASCADE_STORE_MISSING = 1,   /* block not held (yet) */
    CASCADE_STORE_EIO = -1,      /* disk error */
    CASCADE_STORE_EHASH = -2,    /* bytes do not match the block's hash; nothing stored */
    CASCADE_STORE_ERANGE = -3,   /* block index, offset or length out of range */
    CASCADE_STORE_EROFS = -4,    /* store opened read-only */
};

/* When bytes read from the data file are hashed again before they are
 * shown or served. */
enum cascade_verify {
    CASCADE_VERIFY_FIRST = 0,   /* once per run, for bytes this run did not write */
    CASCADE_VERIFY_ALWAYS = 1,  /* on every read and serve */
    CASCADE_VERIFY_NEVER = 2,   /* trust the record */
};

struct cascade_store_options {
    const char *cache_root;  /* NULL: $XDG_CACHE_HOME/cascadefs, else ~/.cache/cascadefs */
    const char *data_path;   /* NULL: <cache_root>/<hex>/data */
    bool read_only;          /* never write the data file (e.g. seeding a file we must not touch) */
    enum cascade_verify verify;
    bool exclusive;          /* fail (EBUSY, "in use") when another process has the record */
    /* Which blocks' bytes this run has hashed or written, kept by the owner
     * across opens of the same file (bitmap_bytes(block_count) bytes, zero
     * at first): "first" then means once per run, not once per open. The
     * store reads and writes it while open. NULL: the store keeps its own. */
    uint8_t *checked;
};

struct cascade_store;

/* Open (creating folders and files as needed) the store for meta. meta must
 * outlive the store. Resumes from the held record if one is there, after
 * the recovery scan (see above). With opts->exclusive, a record locked by
 * another process fails the open with errno EBUSY. */
int cascade_store_open(const struct cascade_meta *meta,
                       const struct cascade_store_options *opts,
                       struct cascade_store **out, char *err, size_t errlen);
/* Flushes (see cascade_store_flush) and frees. NULL is fine. */
void cascade_store_close(struct cascade_store *st);

/* Verify and store block idx; len must equal the block's length.
 * Returns CASCADE_STORE_OK (also when already held), EHASH, ERANGE, EROFS
 * or EIO; after EIO, errno holds the cause (ENOSPC: the filesystem is full). */
int cascade_store_put(struct cascade_store *st, uint64_t idx, const void *data, size_t len);

/* Copy len bytes at offset off inside held block idx into buf.
 * Returns OK, MISSING (buf untouched), ERANGE or EIO. */
int cascade_store_read(struct cascade_store *st, uint64_t idx, uint64_t off,
                       void *buf, size_t len);
/* Copy len bytes at byte offset off of the data file into buf with one
 * read, when every block under them is held (a reader's request spanning
 * many small blocks). Returns OK, MISSING (buf untouched), ERANGE or EIO. */
int cascade_store_read_range(struct cascade_store *st, uint64_t off, void *buf, size_t len);

/* Pin the blocks under bytes [off, off+len) for a reply or a send: OK when
 * every one is held and (per opts.verify) its bytes hashed right, and then
 * none of them is evicted until cascade_store_unpin_range(st, off, len);
 * counts as a use (recency). A block whose bytes no longer match is
 * dropped (logged; it may be fetched again) and the result is MISSING.
 * Returns OK, MISSING, ERANGE or EIO; only OK leaves a pin. */
int cascade_store_pin_range(struct cascade_store *st, uint64_t off, uint64_t len);
void cascade_store_unpin_range(struct cascade_store *st, uint64_t off, uint64_t len);
/* The same for one whole block. */
int cascade_store_pin_block(struct cascade_store *st, uint64_t idx);
void cascade_store_unpin_block(struct cascade_store *st, uint64_t idx);

/* OK when every block under bytes [off, off+len) is held, else MISSING or
 * ERANGE. (A reader takes bytes straight from cascade_store_data_fd only
 * under a pin.) */
int cascade_store_has_range(struct cascade_store *st, uint64_t off, uint64_t len);
bool cascade_store_has(struct cascade_store *st, uint64_t idx);
uint64_t cascade_store_held_count(struct cascade_store *st);
/* Bytes of the held blocks. */
uint64_t cascade_store_held_bytes(struct cascade_store *st);
/* What the data file takes for the cache's accounting: the held blocks and
 * the blocks being evicted whose bytes are not released yet. */
uint64_t cascade_store_used_bytes(struct cascade_store *st);
bool cascade_store_complete(struct cascade_store *st);
/* Copy the held bitmap (bit i of byte i/8, LSB first; (block_count+7)/8 bytes). */
void cascade_store_held_map(struct cascade_store *st, uint8_t *bits);

/* Make every held mark durable: fdatasync the data, then write and
 * fdatasync the record. */
int cascade_store_flush(struct cascade_store *st);
/* Whether enough marks are pending (by count, bytes or age) that the
 * owner should flush now; now_ms on the cascade_now_ms clock. The store
 * has no thread: whoever owns it flushes when this says so. */
bool cascade_store_flush_due(struct cascade_store *st, uint64_t now_ms);

/* ---- the cache's size ---- */

/* Whether blocks of this store may be evicted (its data file is the
 * cache's own, writable, and its record is ours). */
bool cascade_store_evictable(const struct cascade_store *st);
/* The last use (wall-clock ms) of the least recently used extent that
 * holds blocks and is not pinned; UINT64_MAX when there is none. */
uint64_t cascade_store_oldest_use(struct cascade_store *st);
/* The last use (wall-clock ms) of the most recently used extent. */
uint64_t cascade_store_last_use(struct cascade_store *st);
/* Evict held, unpinned extents, least recently used first, among those
 * last used at or before max_used_ms, until at least want_bytes are freed
 * (or none is left): their marks cleared in memory, the record written and
 * fdatasync'd, and only then their bytes released (FALLOC_FL_PUNCH_HOLE).
 * Returns the bytes freed (0 for a store that is not evictable), or
 * CASCADE_STORE_EIO when the record could not be written (nothing is
 * punched then). Safe against concurrent puts, reads and pins. */
int64_t cascade_store_evict(struct cascade_store *st, uint64_t want_bytes, uint64_t max_used_ms);
/* Bytes evicted and blocks dropped as bad since open. */
void cascade_store_counters(struct cascade_store *st, uint64_t *evicted_bytes,
                            uint64_t *bad_blocks);

/* Whether the store's files are still there. When its data file (or
 * folder) was deleted under it, it is recreated empty at its path (every
 * mark cleared: the blocks are fetched again); a deleted record is written
 * anew. Logged loudly. 0: all there; 1: something was recreated; -1 with
 * a message when recreating failed. */
int cascade_store_check_files(struct cascade_store *st, char *err, size_t errlen);

/* Without opening the store or creating anything: how many blocks the held
 * record in cache_root (NULL: the default) marks for meta, and their bitmap
 * into bits when not NULL (bitmap_bytes(block_count) bytes). 0 when there
 * is no record, or one of another file. A hint for what a cache holds (the
 * data file's bytes are checked when the store opens). */
uint64_t cascade_store_peek(const struct cascade_meta *meta, const char *cache_root,
                            uint8_t *bits);

/* Verify each not-yet-held block already present in the data file and mark
 * those that match (for an existing complete or partial data file; the
 * cache's own data file is scanned at open already).
 * Returns the number of blocks newly marked, or a negative result. */
int64_t cascade_store_adopt(struct cascade_store *st, struct cascade_progress *progress);

const struct cascade_meta *cascade_store_meta(const struct cascade_store *st);
/* Read-only descriptor of the data file (e.g. for sendfile of held blocks). */
int cascade_store_data_fd(const struct cascade_store *st);
const char *cascade_store_data_path(const struct cascade_store *st);
const char *cascade_store_dir(const struct cascade_store *st);

/* The default cache root into out. 0 on success, -1 when neither
 * XDG_CACHE_HOME nor HOME is set. */
int cascade_store_default_root(char *out, size_t outlen);

/* mkdir -p path, each folder made private to the user (0700), as the
 * store makes its own. 0, or -1 with a message. */
int cascade_store_mkdir(const char *path, char *err, size_t errlen);

/* Rename the data file to new_path (rename(2): the same filesystem) and
 * make the held record describe it there, so a store opened at new_path
 * later trusts the marks without verifying a block again (`cascade get`
 * downloads into NAME.part, then renames). Only when no other thread uses
 * st, and the caller must not open the store at the old path again.
 * 0, or -1 with a message: the rename failed (nothing changed), or the
 * record could not follow (then a later open re-verifies the held blocks). */
int cascade_store_rename_data(struct cascade_store *st, const char *new_path,
                              char *err, size_t errlen);

#endif
