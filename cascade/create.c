/* Making a .cascade file: stream the data once, hashing every block and the
 * whole file, write the block hashes to a temporary file beside the output,
 * then fill in the header, fsync and rename into place. */
#include "cascade/create.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cascade/meta.h"
#include "cascade/sha256.h"
#include "cascade/util.h"

enum { READ_CHUNK = 1 << 20, HASHES_PER_WRITE = 1024 };

struct hasher {
    uint64_t block_size;
    uint64_t in_block;       /* bytes of the current block hashed so far */
    uint64_t total;          /* bytes of data seen */
    struct cascade_sha256 *block;
    struct cascade_sha256 *whole;
    int out_fd;
    const char *out_name;    /* for messages */
    uint8_t pending[HASHES_PER_WRITE * CASCADE_HASH_LEN];
    size_t npending;
};

static int write_full(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int flush_hashes(struct hasher *h, char *err, size_t errlen)
{
    if (write_full(h->out_fd, h->pending, h->npending * CASCADE_HASH_LEN) != 0) {
        cascade_errf(err, errlen, "%s: write: %s", h->out_name, strerror(errno));
        return -1;
    }
    h->npending = 0;
    return 0;
}

/* Close the current block: its digest goes to the pending list. */
static int end_block(struct hasher *h, char *err, size_t errlen)
{
    if (cascade_sha256_final(h->block, h->pending + h->npending * CASCADE_HASH_LEN) != 0) {
        cascade_errf(err, errlen, "SHA-256 failed");
        return -1;
    }
    h->in_block = 0;
    if (++h->npending == HASHES_PER_WRITE)
        return flush_hashes(h, err, errlen);
    return 0;
}

/* Hash one buffer of data; blocks may start and end anywhere in it. */
static int hash_chunk(struct hasher *h, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
    if (cascade_sha256_update(h->whole, buf, len) != 0) {
        cascade_errf(err, errlen, "SHA-256 failed");
        return -1;
    }
    h->total += len;
    while (len > 0) {
        uint64_t room = h->block_size - h->in_block;
        size_t take = room < len ? (size_t)room : len;
        if (cascade_sha256_update(h->block, buf, take) != 0) {
            cascade_errf(err, errlen, "SHA-256 failed");
            return -1;
        }
        h->in_block += take;
        buf += take;
        len -= take;
        if (h->in_block == h->block_size && end_block(h, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* Read the data file to its end, feeding the hasher. */
static int hash_data(int fd, const char *data_path, struct hasher *h,
                     struct cascade_progress *progress, char *err, size_t errlen)
{
    uint8_t *buf = malloc(READ_CHUNK);
    if (!buf) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf, READ_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cascade_errf(err, errlen, "%s: read: %s", data_path, strerror(errno));
            rc = -1;
            break;
        }
        if (n == 0)
            break;
        if (hash_chunk(h, buf, (size_t)n, err, errlen) != 0) {
            rc = -1;
            break;
        }
        if (progress)
            cascade_progress_update(progress, h->total);
    }
    free(buf);
    if (rc == 0 && h->in_block > 0)
        rc = end_block(h, err, errlen);
    if (rc == 0)
        rc = flush_hashes(h, err, errlen);
    return rc;
}

/* Fill in the header at offset 0 of the temporary file and make it durable. */
static int finish_file(struct hasher *h, char *err, size_t errlen)
{
    uint8_t hdr[CASCADE_HEADER_LEN] = {0};
    memcpy(hdr, CASCADE_MAGIC, CASCADE_MAGIC_LEN);
    cascade_put_be64(hdr + 16, h->total);
    cascade_put_be64(hdr + 24, h->block_size);
    if (cascade_sha256_final(h->whole, hdr + 32) != 0) {
        cascade_errf(err, errlen, "SHA-256 failed");
        return -1;
    }
    if (lseek(h->out_fd, 0, SEEK_SET) != 0 ||
        write_full(h->out_fd, hdr, sizeof hdr) != 0 || fsync(h->out_fd) != 0) {
        cascade_errf(err, errlen, "%s: write: %s", h->out_name, strerror(errno));
        return -1;
    }
    return 0;
}

/* Everything between opening the files and the rename. */
static int build_tmp(int data_fd, const char *data_path, struct hasher *h,
                     struct cascade_progress *progress, char *err, size_t errlen)
{
    static const uint8_t placeholder[CASCADE_HEADER_LEN];
    h->block = cascade_sha256_new();
    h->whole = cascade_sha256_new();
    if (!h->block || !h->whole) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    if (write_full(h->out_fd, placeholder, sizeof placeholder) != 0) {
        cascade_errf(err, errlen, "%s: write: %s", h->out_name, strerror(errno));
        return -1;
    }
    if (hash_data(data_fd, data_path, h, progress, err, errlen) != 0)
        return -1;
    return finish_file(h, err, errlen);
}

static char *tmp_name(const char *out_path)
{
    size_t len = strlen(out_path) + 32;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%s.tmp.%ld", out_path, (long)getpid());
    return p;
}

int cascade_create(const char *data_path, uint64_t block_size, const char *out_path,
                   struct cascade_progress *progress, uint8_t *cascade_hash_out,
                   char *err, size_t errlen)
{
    if (block_size == 0) {
        cascade_errf(err, errlen, "block size must be at least 1");
        return -1;
    }
    char *tmp = tmp_name(out_path);
    if (!tmp) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    struct hasher *h = calloc(1, sizeof *h);
    int data_fd = -1, rc = -1;
    bool tmp_created = false;
    if (!h) {
        cascade_errf(err, errlen, "out of memory");
        goto out;
    }
    h->block_size = block_size;
    h->out_name = tmp;
    h->out_fd = -1;
    if ((data_fd = cascade_open_regular(data_path, O_RDONLY, 0, NULL, err, errlen)) < 0)
        goto out;
    h->out_fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (h->out_fd < 0) {
        cascade_errf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    tmp_created = true;
    if (build_tmp(data_fd, data_path, h, progress, err, errlen) != 0)
        goto out;
    if (close(h->out_fd) != 0) {
        h->out_fd = -1;
        cascade_errf(err, errlen, "%s: close: %s", tmp, strerror(errno));
        goto out;
    }
    h->out_fd = -1;
    if (cascade_hash_out && cascade_sha256_file(tmp, cascade_hash_out, err, errlen) != 0)
        goto out;
    if (rename(tmp, out_path) != 0) {
        cascade_errf(err, errlen, "rename %s to %s: %s", tmp, out_path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (h && h->out_fd >= 0)
        close(h->out_fd);
    if (rc != 0 && tmp_created)
        unlink(tmp);    /* never leave a half-written temporary behind */
    if (data_fd >= 0)
        close(data_fd);
    if (h) {
        cascade_sha256_free(h->block);
        cascade_sha256_free(h->whole);
    }
    free(h);
    free(tmp);
    return rc;
}
