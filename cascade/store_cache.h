/* A cache folder as a whole (the many stores under one cache root): its
 * size limit as users write it, what it holds, and whether a running
 * process uses an entry. Used by `cascade cache` and the programs'
 * --cache-max / -o cache_max.
 *
 * An entry is <root>/<64 hex digits>/ with the files store.h lists. An
 * entry is in use while a process has its store open: that process holds
 * the flock of its record (see store.c), which is how a running mount is
 * told apart from a stale folder. */
#ifndef CASCADE_STORE_CACHE_H
#define CASCADE_STORE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cascade/meta.h"
#include "cascade/sha256.h"

/* Parse a cache limit: bytes with an optional K, M, G or T suffix (powers
 * of 1024; KiB.. too), or a percentage of the size of the filesystem that
 * holds root ("10%"; root, or the nearest existing folder above it).
 * 0 with *out, or -1 with a message. 0 bytes is refused. */
int cascade_cache_parse_limit(const char *arg, const char *root, uint64_t *out,
                              char *err, size_t errlen);

struct cascade_cache_entry {
    char hex[CASCADE_HASH_LEN * 2 + 1];   /* the cascade hash: the folder's name */
    char *dir;                  /* <root>/<hex> */
    char *name;                 /* the name it was used by (NULL: not known) */
    bool have_meta;             /* a copy of its .cascade is there (meta valid) */
    struct cascade_meta meta;
    uint64_t size;              /* the data file's size per the record (0: no record) */
    uint64_t block_size;
    uint64_t held_blocks;
    uint64_t held_bytes;
    uint64_t disk_bytes;        /* what its files take on disk */
    uint64_t last_use_ms;       /* wall clock (0: never recorded) */
    bool in_use;                /* a running process has it open */
    bool user_data;             /* no data file of its own: it records a user's file */
};

/* Every entry of the cache at root (NULL: the default root), sorted by
 * name then hash. A missing root is an empty cache. 0, or -1 with a
 * message. */
int cascade_cache_list(const char *root, struct cascade_cache_entry **out, size_t *n,
                       char *err, size_t errlen);
void cascade_cache_list_free(struct cascade_cache_entry *entries, size_t n);

/* The root the store uses for root (NULL: the default) into out. 0 or -1. */
int cascade_cache_root(const char *root, char *out, size_t outlen, char *err, size_t errlen);

/* Lock entry dir's record against every store (the lock a running store
 * holds): a descriptor to pass to cascade_cache_unlock, or -1 with errno
 * EBUSY when a process uses it (another error: errno). */
int cascade_cache_lock(const char *dir);
void cascade_cache_unlock(int fd);

/* Remove entry dir (which must be locked by the caller). 0 or -1 with a
 * message. */
int cascade_cache_remove(const char *dir, char *err, size_t errlen);

#endif
