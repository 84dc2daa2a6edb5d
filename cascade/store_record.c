/* The held-block record file: see store_record.h. */
#include "cascade/store_record.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cascade/util.h"

static void record_encode_header(const struct cascade_record_id *id,
                                 uint8_t h[CASCADE_RECORD_HEADER_LEN])
{
    memset(h, 0, CASCADE_RECORD_HEADER_LEN);
    memcpy(h, CASCADE_RECORD_MAGIC, 8);
    cascade_put_be32(h + 8, CASCADE_RECORD_VERSION);
    cascade_put_be64(h + 16, id->size);
    cascade_put_be64(h + 24, id->block_size);
    cascade_put_be64(h + 32, id->block_count);
    memcpy(h + 40, id->cascade_hash, CASCADE_HASH_LEN);
    cascade_put_be64(h + 72, id->data_ino);
    cascade_put_be64(h + 80, id->data_birth_ns);
    cascade_put_be64(h + 88, id->data_ctime_ns);
    memcpy(h + 96, id->data_path_hash, CASCADE_HASH_LEN);
}

/* Bits past block_count in the last byte mean nothing; never trust them. */
static void record_clear_padding(uint8_t *bits, size_t bitslen, uint64_t block_count)
{
    if (bitslen > 0 && block_count % 8 != 0)
        bits[bitslen - 1] &= (uint8_t)((1u << (block_count % 8)) - 1);
}

int cascade_record_load(int fd, const struct cascade_record_id *id,
                        uint8_t *bits, size_t bitslen, char *err, size_t errlen)
{
    memset(bits, 0, bitslen);
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        cascade_errf(err, errlen, "stat held record: %s", strerror(errno));
        return -1;
    }
    /* A record of another length describes something else (or was cut short). */
    if ((uint64_t)sb.st_size != CASCADE_RECORD_HEADER_LEN + (uint64_t)bitslen)
        return CASCADE_RECORD_NONE;
    uint8_t want[CASCADE_RECORD_HEADER_LEN], have[CASCADE_RECORD_HEADER_LEN];
    record_encode_header(id, want);
    if (cascade_pread_full(fd, have, sizeof have, 0) < 0) {
        cascade_errf(err, errlen, "read held record: %s", strerror(errno));
        return -1;
    }
    if (memcmp(want, have, CASCADE_RECORD_FILE_ID_OFFSET) != 0)
        return CASCADE_RECORD_NONE;
    if (cascade_pread_full(fd, bits, bitslen, CASCADE_RECORD_HEADER_LEN) < 0) {
        cascade_errf(err, errlen, "read held record: %s", strerror(errno));
        memset(bits, 0, bitslen);
        return -1;
    }
    record_clear_padding(bits, bitslen, id->block_count);
    if (memcmp(want, have, sizeof want) != 0)
        return CASCADE_RECORD_OTHER_FILE;
    return CASCADE_RECORD_MATCH;
}

int cascade_record_rewrite(int fd, const struct cascade_record_id *id,
                           const uint8_t *bits, size_t bitslen, char *err, size_t errlen)
{
    uint8_t h[CASCADE_RECORD_HEADER_LEN];
    record_encode_header(id, h);
    if (ftruncate(fd, 0) < 0 || cascade_pwrite_full(fd, h, sizeof h, 0) < 0 ||
        cascade_pwrite_full(fd, bits, bitslen, CASCADE_RECORD_HEADER_LEN) < 0) {
        cascade_errf(err, errlen, "write held record: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int cascade_record_write_bits(int fd, const uint8_t *bits, size_t from, size_t to)
{
    if (from >= to)
        return 0;
    return cascade_pwrite_full(fd, bits + from, to - from,
                             (off_t)(CASCADE_RECORD_HEADER_LEN + from));
}
