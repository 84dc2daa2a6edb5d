/* SHA-256 through OpenSSL EVP: see sha256.h. */
#include "cascade/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cascade/util.h"

struct cascade_sha256 {
    EVP_MD_CTX *ctx;
};

struct cascade_sha256 *cascade_sha256_new(void)
{
    struct cascade_sha256 *h = malloc(sizeof *h);
    if (!h)
        return NULL;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        cascade_sha256_free(h);
        return NULL;
    }
    return h;
}

int cascade_sha256_update(struct cascade_sha256 *h, const void *data, size_t len)
{
    return EVP_DigestUpdate(h->ctx, data, len) == 1 ? 0 : -1;
}

int cascade_sha256_final(struct cascade_sha256 *h, uint8_t out[CASCADE_HASH_LEN])
{
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(h->ctx, out, &n) != 1 || n != CASCADE_HASH_LEN)
        return -1;
    return EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) == 1 ? 0 : -1;
}

void cascade_sha256_free(struct cascade_sha256 *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

int cascade_sha256(const void *data, size_t len, uint8_t out[CASCADE_HASH_LEN])
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != CASCADE_HASH_LEN)
        return -1;
    return 0;
}

int cascade_sha256_file(const char *path, uint8_t out[CASCADE_HASH_LEN],
                        char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cascade_errf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct cascade_sha256 *h = cascade_sha256_new();
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = malloc(CHUNK);
    int rc = -1;
    if (!h || !buf) {
        cascade_errf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cascade_errf(err, errlen, "%s: read: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        if (cascade_sha256_update(h, buf, (size_t)n) < 0)
            goto hash_failed;
    }
    if (cascade_sha256_final(h, out) < 0)
        goto hash_failed;
    rc = 0;
    goto out;
hash_failed:
    cascade_errf(err, errlen, "%s: SHA-256 failed", path);
out:
    free(buf);
    cascade_sha256_free(h);
    close(fd);
    return rc;
}
