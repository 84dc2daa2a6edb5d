/* SHA-256 through OpenSSL's EVP interface (no hand-written hashing). */
#ifndef CASCADE_SHA256_H
#define CASCADE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define CASCADE_HASH_LEN 32
#define CASCADE_HEX_LEN (2 * CASCADE_HASH_LEN + 1)

/* Incremental hashing; wraps an EVP_MD_CTX. */
struct cascade_sha256;
struct cascade_sha256 *cascade_sha256_new(void);           /* NULL on OOM */
int cascade_sha256_update(struct cascade_sha256 *h, const void *data, size_t len);
/* Writes the digest and resets h for reuse. 0 on success, -1 on failure. */
int cascade_sha256_final(struct cascade_sha256 *h, uint8_t out[CASCADE_HASH_LEN]);
void cascade_sha256_free(struct cascade_sha256 *h);

/* One-shot digest of a buffer. 0 on success, -1 on failure. */
int cascade_sha256(const void *data, size_t len, uint8_t out[CASCADE_HASH_LEN]);

/* Digest of a whole file, streamed. 0 on success, -1 with a message. */
int cascade_sha256_file(const char *path, uint8_t out[CASCADE_HASH_LEN],
                        char *err, size_t errlen);

#endif
