/* The durable record of held blocks (the "held" file of a store).
 *
 *   0    8   "CASCHELD"
 *   8    4   version (1), big-endian
 *   12   4   reserved (zero)
 *   16   8   target size         \  must match the meta, else
 *   24   8   block size           |  the record describes another
 *   32   8   block count          |  file and is discarded
 *   40   32  cascade hash        /   (start empty)
 *   72   8   inode of the data file               \  which data file the
 *   80   8   its birth time, ns (0: unknown)       |  bits describe; if it
 *   88   8   its ctime, ns (read-only stores; 0)   |  differs, the store
 *   96   32  SHA-256 of its absolute path         /   re-verifies the bits
 *   128  ceil(block_count/8)  bitmap: bit i of byte i/8, LSB first
 *
 * Only bits are ever set after open; a bit is written only after the data it
 * covers was fdatasync'd (the store guarantees that ordering). */
#ifndef CASCADE_STORE_RECORD_H
#define CASCADE_STORE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "cascade/sha256.h"

#define CASCADE_RECORD_MAGIC "CASCHELD"
#define CASCADE_RECORD_VERSION 1
#define CASCADE_RECORD_HEADER_LEN 128
/* Where the data file's identity starts in the header. */
#define CASCADE_RECORD_FILE_ID_OFFSET 72

/* What a record must describe to be trusted. */
struct cascade_record_id {
    uint64_t size;
    uint64_t block_size;
    uint64_t block_count;
    uint8_t cascade_hash[CASCADE_HASH_LEN];
    uint64_t data_ino;
    uint64_t data_birth_ns;
    uint64_t data_ctime_ns;
    uint8_t data_path_hash[CASCADE_HASH_LEN];
};

enum cascade_record_state {
    CASCADE_RECORD_NONE = 0,        /* no record, or one of another meta: bits zeroed */
    CASCADE_RECORD_MATCH = 1,       /* bits describe this very data file */
    CASCADE_RECORD_OTHER_FILE = 2,  /* same meta, but the data file changed:
                                       bits loaded, each must be re-verified */
};

/* Read the record in fd into bits (bitslen bytes, padding bits cleared).
 * Returns an enum cascade_record_state, or -1 on an I/O error (message in err). */
int cascade_record_load(int fd, const struct cascade_record_id *id,
                        uint8_t *bits, size_t bitslen, char *err, size_t errlen);

/* Replace the file's contents with id's header and the given bitmap.
 * 0 or -1 with a message. */
int cascade_record_rewrite(int fd, const struct cascade_record_id *id,
                           const uint8_t *bits, size_t bitslen, char *err, size_t errlen);

/* Write bitmap bytes [from, to) of bits at their place in the record.
 * 0 or -1 (errno set). */
int cascade_record_write_bits(int fd, const uint8_t *bits, size_t from, size_t to);

#endif
