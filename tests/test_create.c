/* Unit tests for cascade/create.c: byte-identical output for every good
 * vector, odd block sizes (1, larger than the file, not dividing the 1 MiB
 * read chunk) cross-checked by re-hashing every block independently, and
 * failures that leave nothing behind. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cascade/create.h"
#include "cascade/meta.h"
#include "cascade/sha256.h"
#include "cascade/util.h"
#include "support.h"

/* ---- helpers ------------------------------------------------------------ */

static const char *vectors_dir(void)
{
    const char *d = getenv("CASCADE_VECTORS");
    return d ? d : "tests/vectors";
}

static uint8_t *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("%s: %s", path, strerror(errno));
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_whole(const char *path, const uint8_t *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *random_bytes(size_t n, uint64_t seed)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
    return p;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* Create with block_size, then check the result independently of create.c:
 * parse it and hash every block and the whole data with one-shot SHA-256. */
static void create_and_cross_check(const char *dir, const uint8_t *data, size_t len,
                                   uint64_t block_size)
{
    char data_path[256], out_path[256], err[CASCADE_ERRLEN] = "";
    snprintf(data_path, sizeof data_path, "%s/data.bin", dir);
    snprintf(out_path, sizeof out_path, "%s/data.bin.cascade", dir);
    write_whole(data_path, data, len);
    uint8_t hash_out[CASCADE_HASH_LEN];
    if (cascade_create(data_path, block_size, out_path, NULL, hash_out, err, sizeof err) != 0)
        fail_msg("create: %s", err);

    struct cascade_meta m;
    if (cascade_meta_load(out_path, &m, err, sizeof err) != CASCADE_META_OK)
        fail_msg("load: %s", err);
    assert_true(m.size == len);
    assert_true(m.block_size == block_size);
    assert_true(m.block_count == len / block_size + (len % block_size != 0));
    assert_memory_equal(m.cascade_hash, hash_out, CASCADE_HASH_LEN);
    uint8_t want[CASCADE_HASH_LEN];
    assert_int_equal(cascade_sha256(data, len, want), 0);
    assert_memory_equal(m.target_hash, want, CASCADE_HASH_LEN);
    for (uint64_t i = 0; i < m.block_count; i++) {
        uint64_t off = i * block_size;
        uint64_t blen = len - off < block_size ? len - off : block_size;
        assert_true(cascade_meta_block_len(&m, i) == blen);
        assert_int_equal(cascade_sha256(data + off, (size_t)blen, want), 0);
        if (memcmp(want, cascade_meta_block_hash(&m, i), CASCADE_HASH_LEN) != 0)
            fail_msg("block %llu of %llu (block size %llu) has the wrong hash",
                     (unsigned long long)i, (unsigned long long)m.block_count,
                     (unsigned long long)block_size);
    }
    cascade_meta_free(&m);
    assert_int_equal(count_entries(dir), 2);   /* no temporary left behind */
    unlink(out_path);
    unlink(data_path);
}

/* ---- tests -------------------------------------------------------------- */

static void test_reproduces_vectors(void **state)
{
    struct test_tmp *t = *state;
    char manifest[4096], line[1024];
    snprintf(manifest, sizeof manifest, "%s/MANIFEST", vectors_dir());
    FILE *f = fopen(manifest, "r");
    assert_non_null(f);
    int made = 0;
    while (fgets(line, sizeof line, f)) {
        char name[128], chash[CASCADE_HEX_LEN];
        unsigned long long size, bs, blocks;
        if (sscanf(line, "%127s size=%llu blocksize=%llu blocks=%llu cascadehash=%64s",
                   name, &size, &bs, &blocks, chash) != 5)
            continue;   /* a must-be-rejected line */
        char data[4096], want_path[4096], out[256], err[CASCADE_ERRLEN] = "";
        size_t nlen = strlen(name) - strlen(".cascade");
        snprintf(want_path, sizeof want_path, "%s/%s", vectors_dir(), name);
        snprintf(data, sizeof data, "%s/%.*s", vectors_dir(), (int)nlen, name);
        snprintf(out, sizeof out, "%s/out.cascade", t->dir);
        uint8_t hash[CASCADE_HASH_LEN];
        if (cascade_create(data, bs, out, NULL, hash, err, sizeof err) != 0)
            fail_msg("%s: %s", data, err);
        size_t got_len, want_len;
        uint8_t *got = read_whole(out, &got_len), *want = read_whole(want_path, &want_len);
        assert_int_equal(got_len, want_len);
        if (memcmp(got, want, got_len) != 0)
            fail_msg("%s: output differs from %s", data, want_path);
        char hex[CASCADE_HEX_LEN];
        cascade_hex(hash, CASCADE_HASH_LEN, hex);
        assert_string_equal(hex, chash);
        free(got);
        free(want);
        assert_int_equal(unlink(out), 0);
        made++;
    }
    fclose(f);
    assert_int_equal(made, 4);
    assert_int_equal(count_entries(t->dir), 0);
}

static void test_block_size_one(void **state)
{
    struct test_tmp *t = *state;
    uint8_t *data = random_bytes(300, 1);
    create_and_cross_check(t->dir, data, 300, 1);
    free(data);
}

static void test_block_larger_than_file(void **state)
{
    struct test_tmp *t = *state;
    uint8_t *data = random_bytes(1000, 2);
    create_and_cross_check(t->dir, data, 1000, 1001);
    create_and_cross_check(t->dir, data, 1000, UINT64_MAX);
    create_and_cross_check(t->dir, data, 1000, 1000);   /* exactly one full block */
    create_and_cross_check(t->dir, data, 1000, 999);    /* one full, one of 1 byte */
    free(data);
}

static void test_empty_file(void **state)
{
    struct test_tmp *t = *state;
    create_and_cross_check(t->dir, (const uint8_t *)"", 0, 1);
    create_and_cross_check(t->dir, (const uint8_t *)"", 0, CASCADE_DEFAULT_BLOCK_SIZE);
}

/* Blocks straddle the 1 MiB read chunks at different places. */
static void test_blocks_straddle_read_chunks(void **state)
{
    struct test_tmp *t = *state;
    size_t len = 3u * 1024 * 1024 + 17;
    uint8_t *data = random_bytes(len, 3);
    create_and_cross_check(t->dir, data, len, 1000003);
    create_and_cross_check(t->dir, data, len, 4093);
    create_and_cross_check(t->dir, data, len, 1024 * 1024);
    create_and_cross_check(t->dir, data, len, 1024 * 1024 + 1);
    create_and_cross_check(t->dir, data, 2 * 1024 * 1024 + 5, 7);
    free(data);
}

static void test_replaces_existing_output(void **state)
{
    struct test_tmp *t = *state;
    char data[256], out[256], err[CASCADE_ERRLEN];
    snprintf(data, sizeof data, "%s/d", t->dir);
    snprintf(out, sizeof out, "%s/d.cascade", t->dir);
    write_whole(data, (const uint8_t *)"hello", 5);
    write_whole(out, (const uint8_t *)"old junk that is longer than the new file will be "
                "old junk that is longer than the new file will be", 100);
    assert_int_equal(cascade_create(data, 2, out, NULL, NULL, err, sizeof err), 0);
    struct cascade_meta m;
    assert_int_equal(cascade_meta_load(out, &m, err, sizeof err), CASCADE_META_OK);
    assert_true(m.size == 5 && m.block_count == 3);
    cascade_meta_free(&m);
}

static void test_failures_leave_nothing(void **state)
{
    struct test_tmp *t = *state;
    char data[256], out[256], err[CASCADE_ERRLEN] = "";
    snprintf(data, sizeof data, "%s/absent.bin", t->dir);
    snprintf(out, sizeof out, "%s/absent.bin.cascade", t->dir);
    assert_int_equal(cascade_create(data, 64, out, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(count_entries(t->dir), 0);

    snprintf(data, sizeof data, "%s/d", t->dir);
    write_whole(data, (const uint8_t *)"abc", 3);
    err[0] = '\0';
    assert_int_equal(cascade_create(data, 0, out, NULL, NULL, err, sizeof err), -1);
    assert_true(strlen(err) > 0);
    snprintf(out, sizeof out, "%s/no/such/dir/x.cascade", t->dir);
    err[0] = '\0';
    assert_int_equal(cascade_create(data, 1, out, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(cascade_create(t->dir, 1, data, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "directory"));
    assert_int_equal(count_entries(t->dir), 1);   /* only the data file */

    /* A FIFO with no writer is refused at once (alarm: a hang fails). */
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/fifo", t->dir);
    snprintf(out, sizeof out, "%s/fifo.cascade", t->dir);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    alarm(20);
    assert_int_equal(cascade_create(fifo, 1, out, NULL, NULL, err, sizeof err), -1);
    alarm(0);
    assert_non_null(strstr(err, "is a FIFO, not a regular file"));
    assert_int_equal(count_entries(t->dir), 2);   /* the data file and the FIFO */
}

static void test_progress_is_fed(void **state)
{
    struct test_tmp *t = *state;
    char data[256], out[256], err[CASCADE_ERRLEN];
    snprintf(data, sizeof data, "%s/d", t->dir);
    snprintf(out, sizeof out, "%s/d.cascade", t->dir);
    size_t len = 1500000;
    uint8_t *bytes = random_bytes(len, 4);
    write_whole(data, bytes, len);
    free(bytes);
    struct cascade_progress p;
    cascade_progress_init(&p, "hashing", len, true, true);   /* forced off: draws nothing */
    assert_false(p.enabled);
    assert_int_equal(cascade_create(data, 4096, out, &p, NULL, err, sizeof err), 0);
    assert_true(p.done == len);
    cascade_progress_finish(&p);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, test_setup_tmp, test_teardown_tmp)
    const struct CMUnitTest tests[] = {
        T(test_reproduces_vectors),
        T(test_block_size_one),
        T(test_block_larger_than_file),
        T(test_empty_file),
        T(test_blocks_straddle_read_chunks),
        T(test_replaces_existing_output),
        T(test_failures_leave_nothing),
        T(test_progress_is_fed),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
