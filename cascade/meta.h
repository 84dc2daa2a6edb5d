/* The .cascade metadata file (PROTOCOL.md section 1): parse, validate,
 * and describe its blocks.
 *
 *   0   8   "CASCADE1"
 *   8   8   reserved (zero, ignored on read)
 *   16  8   target size (bytes of the data file)
 *   24  8   block size
 *   32  32  SHA-256 of the whole data file
 *   64  32n SHA-256 of each block, n = ceil(size / blocksize)
 */
#ifndef CASCADE_META_H
#define CASCADE_META_H

#include <stdint.h>
#include <stddef.h>

#include "cascade/sha256.h"

#define CASCADE_MAGIC "CASCADE1"
#define CASCADE_MAGIC_LEN 8
#define CASCADE_HEADER_LEN 64

/* Why a .cascade file was refused; each has its own message. */
enum cascade_meta_error {
    CASCADE_META_OK = 0,
    CASCADE_META_EIO = -1,          /* could not open/read the file */
    CASCADE_META_ETRUNCATED = -2,   /* shorter than the 64-byte header */
    CASCADE_META_EMAGIC = -3,       /* does not start with CASCADE1 */
    CASCADE_META_EBLOCKSIZE = -4,   /* block size is zero */
    CASCADE_META_EOVERFLOW = -5,    /* size/blocksize arithmetic overflows 64 bits */
    CASCADE_META_EMISSING = -6,     /* fewer whole hashes than blocks */
    CASCADE_META_EPARTIAL = -7,     /* hash list ends in a partial hash */
    CASCADE_META_EEXTRA = -8,       /* more bytes than the blocks need */
    CASCADE_META_ENOMEM = -9,
};

struct cascade_meta {
    uint64_t size;              /* target (data file) size in bytes */
    uint64_t block_size;        /* >= 1 */
    uint64_t block_count;       /* ceil(size / block_size) */
    uint8_t target_hash[CASCADE_HASH_LEN];   /* SHA-256 of the data file */
    uint8_t cascade_hash[CASCADE_HASH_LEN];  /* SHA-256 of the .cascade file */
    uint8_t *block_hashes;      /* block_count * 32 bytes, owned */
    char *name;                 /* data file name: basename minus ".cascade"; owned, may be NULL */
};

/* Parse a whole .cascade image in memory. On failure returns a negative
 * enum cascade_meta_error and writes a message saying what is wrong. */
int cascade_meta_parse(const uint8_t *buf, size_t len, struct cascade_meta *out,
                       char *err, size_t errlen);

/* Read and parse a .cascade file. Only a regular file is read: a FIFO, a
 * device or a folder is refused (CASCADE_META_EIO, "x.cascade is a FIFO,
 * not a regular file") without ever waiting in open(). Checks the header
 * against the file size before allocating the hash list, so a lying header
 * cannot make us allocate more than the file holds. Sets out->name from the
 * path (NAME.cascade -> NAME, else BASENAME.data; may be "." or ".."). */
int cascade_meta_load(const char *path, struct cascade_meta *out,
                      char *err, size_t errlen);

void cascade_meta_free(struct cascade_meta *m);

/* Length of block idx (the last may be short); 0 when idx is out of range. */
uint64_t cascade_meta_block_len(const struct cascade_meta *m, uint64_t idx);
/* Byte offset of block idx in the data file. */
static inline uint64_t cascade_meta_block_offset(const struct cascade_meta *m, uint64_t idx)
{
    return idx * m->block_size;
}
/* Expected hash of block idx (idx < block_count). */
static inline const uint8_t *cascade_meta_block_hash(const struct cascade_meta *m, uint64_t idx)
{
    return m->block_hashes + idx * CASCADE_HASH_LEN;
}

/* Short human-readable name for an error code. */
const char *cascade_meta_strerror(int code);

#endif
