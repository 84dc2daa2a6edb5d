/* The .cascade metadata file: parse and validate (PROTOCOL.md section 1). */
#include "cascade/meta.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cascade/util.h"

/* Header fields plus what they imply, before any hash is looked at. */
struct header {
    uint64_t size;
    uint64_t block_size;
    uint64_t block_count;
    uint8_t target_hash[CASCADE_HASH_LEN];
};

const char *cascade_meta_strerror(int code)
{
    switch (code) {
    case CASCADE_META_OK: return "ok";
    case CASCADE_META_EIO: return "cannot read file";
    case CASCADE_META_ETRUNCATED: return "truncated header";
    case CASCADE_META_EMAGIC: return "bad magic";
    case CASCADE_META_EBLOCKSIZE: return "block size is zero";
    case CASCADE_META_EOVERFLOW: return "size too large";
    case CASCADE_META_EMISSING: return "missing block hashes";
    case CASCADE_META_EPARTIAL: return "partial block hash";
    case CASCADE_META_EEXTRA: return "trailing bytes";
    case CASCADE_META_ENOMEM: return "out of memory";
    default: return "unknown error";
    }
}

/* n = ceil(size / block_size), computed so it cannot overflow, and the file
 * length 64 + 32n, checked against 64 bits and what a file can hold (off_t). */
static int count_blocks(struct header *h, uint64_t *expected_len, char *err, size_t errlen)
{
    uint64_t hash_bytes;
    h->block_count = h->size / h->block_size + (h->size % h->block_size != 0);
    if (cascade_mul_overflows(h->block_count, CASCADE_HASH_LEN, &hash_bytes) ||
        cascade_add_overflows(hash_bytes, CASCADE_HEADER_LEN, expected_len) ||
        *expected_len > (uint64_t)INT64_MAX) {
        cascade_errf(err, errlen, "size %llu with block size %llu needs %llu hashes: too large",
                     (unsigned long long)h->size, (unsigned long long)h->block_size,
                     (unsigned long long)h->block_count);
        return CASCADE_META_EOVERFLOW;
    }
    return CASCADE_META_OK;
}

/* Compare the real file length with 64 + 32n. */
static int check_length(const struct header *h, uint64_t expected_len, uint64_t len,
                        char *err, size_t errlen)
{
    unsigned long long n = h->block_count;
    if (len > expected_len) {
        cascade_errf(err, errlen, "trailing %llu bytes after the %llu block hashes",
                     (unsigned long long)(len - expected_len), n);
        return CASCADE_META_EEXTRA;
    }
    if (len < expected_len) {
        uint64_t have = len - CASCADE_HEADER_LEN;
        unsigned long long whole = have / CASCADE_HASH_LEN, part = have % CASCADE_HASH_LEN;
        if (part) {
            cascade_errf(err, errlen, "partial hash: %llu bytes after %llu whole block "
                         "hashes, %llu needed", part, whole, n);
            return CASCADE_META_EPARTIAL;
        }
        cascade_errf(err, errlen, "hash list holds %llu of %llu block hashes", whole, n);
        return CASCADE_META_EMISSING;
    }
    return CASCADE_META_OK;
}

/* Validate the 64-byte header against the whole file's length len. */
static int parse_header(const uint8_t *hdr, uint64_t len, struct header *h,
                        char *err, size_t errlen)
{
    if (len < CASCADE_HEADER_LEN) {
        cascade_errf(err, errlen, "truncated header: file is %llu bytes, a .cascade header is %d",
                     (unsigned long long)len, CASCADE_HEADER_LEN);
        return CASCADE_META_ETRUNCATED;
    }
    if (memcmp(hdr, CASCADE_MAGIC, CASCADE_MAGIC_LEN) != 0) {
        char hex[CASCADE_MAGIC_LEN * 2 + 1], text[CASCADE_MAGIC_LEN + 1];
        cascade_hex(hdr, CASCADE_MAGIC_LEN, hex);
        for (int i = 0; i < CASCADE_MAGIC_LEN; i++)   /* keep the message printable */
            text[i] = hdr[i] >= 0x20 && hdr[i] < 0x7f ? (char)hdr[i] : '.';
        text[CASCADE_MAGIC_LEN] = '\0';
        cascade_errf(err, errlen, "bad magic: file starts with \"%s\" (hex %s), not \"%s\"",
                     text, hex, CASCADE_MAGIC);
        return CASCADE_META_EMAGIC;
    }
    h->size = cascade_get_be64(hdr + 16);
    h->block_size = cascade_get_be64(hdr + 24);
    memcpy(h->target_hash, hdr + 32, CASCADE_HASH_LEN);
    if (h->block_size == 0) {
        cascade_errf(err, errlen, "block size is 0");
        return CASCADE_META_EBLOCKSIZE;
    }
    uint64_t expected_len;
    int rc = count_blocks(h, &expected_len, err, errlen);
    if (rc != CASCADE_META_OK)
        return rc;
    return check_length(h, expected_len, len, err, errlen);
}

static void fill_meta(struct cascade_meta *out, const struct header *h)
{
    memset(out, 0, sizeof *out);
    out->size = h->size;
    out->block_size = h->block_size;
    out->block_count = h->block_count;
    memcpy(out->target_hash, h->target_hash, CASCADE_HASH_LEN);
}

/* Room for the hash list; malloc(0) may return NULL, so ask for at least 1. */
static uint8_t *alloc_hashes(uint64_t count, char *err, size_t errlen)
{
    if (count > SIZE_MAX / CASCADE_HASH_LEN) {
        cascade_errf(err, errlen, "%llu block hashes do not fit in memory",
                     (unsigned long long)count);
        return NULL;
    }
    size_t bytes = (size_t)count * CASCADE_HASH_LEN;
    uint8_t *p = malloc(bytes ? bytes : 1);
    if (!p)
        cascade_errf(err, errlen, "out of memory for %llu block hashes",
                     (unsigned long long)count);
    return p;
}

int cascade_meta_parse(const uint8_t *buf, size_t len, struct cascade_meta *out,
                       char *err, size_t errlen)
{
    struct header h;
    memset(out, 0, sizeof *out);
    int rc = parse_header(buf, len, &h, err, errlen);
    if (rc != CASCADE_META_OK)
        return rc;
    fill_meta(out, &h);
    out->block_hashes = alloc_hashes(h.block_count, err, errlen);
    if (!out->block_hashes)
        return CASCADE_META_ENOMEM;
    memcpy(out->block_hashes, buf + CASCADE_HEADER_LEN, len - CASCADE_HEADER_LEN);
    if (cascade_sha256(buf, len, out->cascade_hash) != 0) {
        cascade_errf(err, errlen, "SHA-256 failed");
        cascade_meta_free(out);
        return CASCADE_META_ENOMEM;
    }
    return CASCADE_META_OK;
}

/* Read exactly len bytes; returns bytes read (short only at end of file) or -1. */
static ssize_t read_full(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* "dir/NAME.cascade" -> "NAME"; anything else -> basename + ".data". */
static char *data_name(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base), suffix = strlen(".cascade");
    if (len > suffix && strcmp(base + len - suffix, ".cascade") == 0)
        return strndup(base, len - suffix);
    char *name = malloc(len + sizeof ".data");
    if (name) {
        memcpy(name, base, len);
        memcpy(name + len, ".data", sizeof ".data");
    }
    return name;
}

/* Read the hash list and make sure the file ends right after it. */
static int read_hashes(int fd, const char *path, struct cascade_meta *out,
                       char *err, size_t errlen)
{
    size_t bytes = (size_t)out->block_count * CASCADE_HASH_LEN;
    ssize_t n = read_full(fd, out->block_hashes, bytes);
    uint8_t extra;
    if (n < 0) {
        cascade_errf(err, errlen, "%s: read: %s", path, strerror(errno));
        return CASCADE_META_EIO;
    }
    if ((size_t)n != bytes || read_full(fd, &extra, 1) != 0) {
        cascade_errf(err, errlen, "%s: file changed size while being read", path);
        return CASCADE_META_EIO;
    }
    return CASCADE_META_OK;
}

static int hash_image(const uint8_t *hdr, const struct cascade_meta *m, uint8_t *out,
                      char *err, size_t errlen)
{
    struct cascade_sha256 *h = cascade_sha256_new();
    int ok = h && cascade_sha256_update(h, hdr, CASCADE_HEADER_LEN) == 0 &&
             cascade_sha256_update(h, m->block_hashes,
                                   (size_t)m->block_count * CASCADE_HASH_LEN) == 0 &&
             cascade_sha256_final(h, out) == 0;
    cascade_sha256_free(h);
    if (!ok) {
        cascade_errf(err, errlen, "SHA-256 failed");
        return CASCADE_META_ENOMEM;
    }
    return CASCADE_META_OK;
}

/* st is the (regular) file's status from opening it. */
static int load_fd(int fd, const struct stat *st, const char *path, struct cascade_meta *out,
                   char *err, size_t errlen)
{
    uint8_t hdr[CASCADE_HEADER_LEN];
    char why[CASCADE_ERRLEN];
    struct header h;
    ssize_t n = read_full(fd, hdr, sizeof hdr);
    if (n < 0) {
        cascade_errf(err, errlen, "%s: read: %s", path, strerror(errno));
        return CASCADE_META_EIO;
    }
    /* The real length, not the header's claim, bounds what we allocate. */
    uint64_t len = (size_t)n < sizeof hdr ? (uint64_t)n : (uint64_t)st->st_size;
    int rc = parse_header(hdr, len, &h, why, sizeof why);
    if (rc != CASCADE_META_OK) {
        cascade_errf(err, errlen, "%s: %s", path, why);
        return rc;
    }
    fill_meta(out, &h);
    out->block_hashes = alloc_hashes(h.block_count, err, errlen);
    if (!out->block_hashes)
        return CASCADE_META_ENOMEM;
    rc = read_hashes(fd, path, out, err, errlen);
    if (rc == CASCADE_META_OK)
        rc = hash_image(hdr, out, out->cascade_hash, err, errlen);
    if (rc == CASCADE_META_OK && !(out->name = data_name(path))) {
        cascade_errf(err, errlen, "out of memory");
        rc = CASCADE_META_ENOMEM;
    }
    return rc;
}

int cascade_meta_load(const char *path, struct cascade_meta *out, char *err, size_t errlen)
{
    struct stat st;
    memset(out, 0, sizeof *out);
    int fd = cascade_open_regular(path, O_RDONLY, 0, &st, err, errlen);
    if (fd < 0)
        return CASCADE_META_EIO;
    int rc = load_fd(fd, &st, path, out, err, errlen);
    close(fd);
    if (rc != CASCADE_META_OK)
        cascade_meta_free(out);
    return rc;
}

void cascade_meta_free(struct cascade_meta *m)
{
    if (!m)
        return;
    free(m->block_hashes);
    free(m->name);
    m->block_hashes = NULL;
    m->name = NULL;
}

uint64_t cascade_meta_block_len(const struct cascade_meta *m, uint64_t idx)
{
    if (idx >= m->block_count)
        return 0;
    uint64_t start = idx * m->block_size;
    uint64_t left = m->size - start;
    return left < m->block_size ? left : m->block_size;
}
