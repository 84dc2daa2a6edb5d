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
 * Layout: <cache_root>/<cascade-hash-hex>/data  (sparse, full size)
 *         <cache_root>/<cascade-hash-hex>/held  (record of held blocks)
 * With opts.data_path the data lives in that file instead (the record stays
 * in the cache folder).
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

struct cascade_store_options {
    const char *cache_root;  /* NULL: $XDG_CACHE_HOME/cascadefs, else ~/.cache/cascadefs */
    const char *data_path;   /* NULL: <cache_root>/<hex>/data */
    bool read_only;          /* never write the data file (e.g. seeding a file we must not touch) */
};

struct cascade_store;

/* Open (creating folders and files as needed) the store for meta. meta must
 * outlive the store. Resumes from the held record if one is there. */
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

/* OK when every block under bytes [off, off+len) is held (a reader may then
 * take them straight from cascade_store_data_fd), else MISSING or ERANGE. */
int cascade_store_has_range(struct cascade_store *st, uint64_t off, uint64_t len);
bool cascade_store_has(struct cascade_store *st, uint64_t idx);
uint64_t cascade_store_held_count(struct cascade_store *st);
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

/* Without opening the store or creating anything: how many blocks the held
 * record in cache_root (NULL: the default) marks for meta, and their bitmap
 * into bits when not NULL (bitmap_bytes(block_count) bytes). 0 when there
 * is no record, or one of another file. A hint for what a cache holds (the
 * data file's bytes are checked when the store opens). */
uint64_t cascade_store_peek(const struct cascade_meta *meta, const char *cache_root,
                            uint8_t *bits);

/* Verify each not-yet-held block already present in the data file and mark
 * those that match (for an existing complete or partial data file).
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
