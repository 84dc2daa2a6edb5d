/* The durable record of held blocks (the "held" file of a store).
 *
 *   0    8   "CASCHELD"
 *   8    4   version (1), big-endian
 *   12   4   reserved (zero)
 *   16   8   target size          \
 *   24   8   block size            |  must match the meta,
 *   32   8   block count           |  else the record is
 *   40   32  cascade hash          |  discarded (start empty)
 *   72   8   inode of the data file|  and of the data file
 *   80   8   birth time of the data file, ns (0: unknown)
 *   88   32  SHA-256 of the data file's absolute path
 *   120  ceil(block_count/8)  bitmap: bit i of byte i/8, LSB first
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
#define CASCADE_RECORD_HEADER_LEN 120

/* What a record must describe to be trusted. */
struct cascade_record_id {
    uint64_t size;
    uint64_t block_size;
    uint64_t block_count;
    uint8_t cascade_hash[CASCADE_HASH_LEN];
    uint64_t data_ino;
    uint64_t data_birth_ns;
    uint8_t data_path_hash[CASCADE_HASH_LEN];
};

/* Read the record in fd into bits (bitslen bytes, padding bits cleared).
 * Returns 1 when a matching record was loaded, 0 when there is none or it
 * does not match id (bits zeroed), -1 on an I/O error (message in err). */
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
