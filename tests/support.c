/* Fixtures shared by the C unit tests (see support.h). */
#include "support.h"

#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cascade/sha256.h"

void test_fill_random(uint8_t *p, size_t n, unsigned seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

void test_build_meta(struct cascade_meta *meta, uint8_t **data, uint64_t size,
                     uint64_t bs, unsigned seed)
{
    uint8_t *d = malloc(size ? size : 1);
    assert_non_null(d);
    test_fill_random(d, size, seed);
    memset(meta, 0, sizeof *meta);
    meta->size = size;
    meta->block_size = bs;
    meta->block_count = (size + bs - 1) / bs;
    /* +1: malloc(0) may return NULL for the empty file */
    meta->block_hashes = malloc(meta->block_count * CASCADE_HASH_LEN + 1);
    assert_non_null(meta->block_hashes);
    for (uint64_t i = 0; i < meta->block_count; i++)
        assert_int_equal(cascade_sha256(test_block(meta, d, i), cascade_meta_block_len(meta, i),
                                        meta->block_hashes + i * CASCADE_HASH_LEN), 0);
    assert_int_equal(cascade_sha256(d, size, meta->target_hash), 0);
    test_fill_random(meta->cascade_hash, CASCADE_HASH_LEN, seed + 1000);
    *data = d;
}

void test_free_meta(struct cascade_meta *meta, uint8_t **data)
{
    free(meta->block_hashes);
    meta->block_hashes = NULL;
    free(*data);
    *data = NULL;
}

int test_make_tmpdir(char *dir, size_t len, const char *name)
{
    int n = snprintf(dir, len, "/tmp/%s.XXXXXX", name);
    if (n < 0 || (size_t)n >= len)
        return -1;
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

int test_remove_tree(const char *dir)
{
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        return -1;
    return 0;
}

int test_setup_tmp(void **state)
{
    struct test_tmp *t = malloc(sizeof *t);
    if (!t)
        return -1;
    if (test_make_tmpdir(t->dir, sizeof t->dir, program_invocation_short_name) != 0) {
        free(t);
        return -1;
    }
    *state = t;
    return 0;
}

int test_teardown_tmp(void **state)
{
    struct test_tmp *t = *state;
    int rc = test_remove_tree(t->dir);
    free(t);
    return rc;
}
