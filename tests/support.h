/* Fixtures shared by the C unit tests: reproducible random bytes, a
 * cascade_meta built in memory over them, and temporary folders. Failures
 * inside these helpers fail the calling cmocka test. */
#ifndef CASCADE_TESTS_SUPPORT_H
#define CASCADE_TESTS_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "cascade/meta.h"

/* n bytes of xorshift noise; the same seed gives the same bytes. */
void test_fill_random(uint8_t *p, size_t n, unsigned seed);

/* *data = `size` random bytes (from seed), and *meta describes them with
 * block size bs: block hashes, target hash, and a random cascade hash (no
 * .cascade file stands behind it). Free with test_free_meta. */
void test_build_meta(struct cascade_meta *meta, uint8_t **data, uint64_t size,
                     uint64_t bs, unsigned seed);
void test_free_meta(struct cascade_meta *meta, uint8_t **data);

/* Block i of the data test_build_meta made. */
static inline const uint8_t *test_block(const struct cascade_meta *meta, const uint8_t *data,
                                        uint64_t i)
{
    return data + i * meta->block_size;
}

/* A new folder /tmp/<name>.XXXXXX in dir (at least 64 bytes); 0 or -1. */
int test_make_tmpdir(char *dir, size_t len, const char *name);
/* Removes a folder and everything below it; 0 or -1. */
int test_remove_tree(const char *dir);

/* cmocka setup/teardown pair giving each test its own temporary folder. */
struct test_tmp {
    char dir[64];
};
int test_setup_tmp(void **state);
int test_teardown_tmp(void **state);

#endif
