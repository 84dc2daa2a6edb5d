/* Unit tests for the local block store (cascade/store.c): verification on
 * put, reads of held blocks only, resume after reopen, adopt, read-only
 * stores, many threads, and kill -9 at random moments. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cascade/store.h"
#include "cascade/store_record.h"
#include "cascade/util.h"
#include "support.h"

/* ---- fixtures: random data, a hand-built meta, a temp folder ------------ */

struct fixture {
    char dir[64];          /* mkdtemp folder, removed afterwards */
    char cache[128];       /* <dir>/cache */
    uint8_t *data;         /* the whole target file */
    struct cascade_meta meta;
};

/* (Re)builds f->data and f->meta: random bytes and their hashes. */
static void build_meta(struct fixture *f, uint64_t size, uint64_t bs, unsigned seed)
{
    test_free_meta(&f->meta, &f->data);
    test_build_meta(&f->meta, &f->data, size, bs, seed);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (test_make_tmpdir(f->dir, sizeof f->dir, "test_store") != 0)
        return -1;
    snprintf(f->cache, sizeof f->cache, "%s/cache", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    test_remove_tree(f->dir);
    test_free_meta(&f->meta, &f->data);
    free(f);
    return 0;
}

static struct cascade_store *open_store(struct fixture *f, const char *data_path, bool ro)
{
    struct cascade_store_options o = { .cache_root = f->cache, .data_path = data_path,
                                       .read_only = ro };
    struct cascade_store *st = NULL;
    char err[CASCADE_ERRLEN] = "";
    int rc = cascade_store_open(&f->meta, &o, &st, err, sizeof err);
    if (rc != 0)
        print_error("open failed: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(st);
    return st;
}

static int put_block(struct cascade_store *st, struct fixture *f, uint64_t i)
{
    return cascade_store_put(st, i, f->data + i * f->meta.block_size, cascade_meta_block_len(&f->meta, i));
}

/* Every held block reads back exactly the bytes of the target file. */
static void assert_held_blocks_correct(struct cascade_store *st, struct fixture *f)
{
    uint8_t *buf = malloc(f->meta.block_size);
    assert_non_null(buf);
    uint64_t held = 0;
    for (uint64_t i = 0; i < f->meta.block_count; i++) {
        if (!cascade_store_has(st, i))
            continue;
        held++;
        assert_int_equal(cascade_store_read(st, i, 0, buf, cascade_meta_block_len(&f->meta, i)), CASCADE_STORE_OK);
        assert_memory_equal(buf, f->data + i * f->meta.block_size, cascade_meta_block_len(&f->meta, i));
    }
    assert_int_equal(held, cascade_store_held_count(st));
    free(buf);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static off_t file_size(const char *path)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return sb.st_size;
}

/* ---- basic put / read ----------------------------------------------------- */

static void test_put_read_has(void **state)
{
    struct fixture *f = *state;
    build_meta(f, 10 * 4096 + 1000, 4096, 1);   /* 11 blocks, last is 1000 bytes */
    struct cascade_store *st = open_store(f, NULL, false);
    assert_int_equal(file_size(cascade_store_data_path(st)), (off_t)f->meta.size);
    assert_int_equal(cascade_store_held_count(st), 0);
    assert_false(cascade_store_complete(st));

    assert_int_equal(put_block(st, f, 3), CASCADE_STORE_OK);
    assert_int_equal(put_block(st, f, 10), CASCADE_STORE_OK);
    assert_int_equal(put_block(st, f, 3), CASCADE_STORE_OK);   /* again: still OK */
    assert_true(cascade_store_has(st, 3));
    assert_true(cascade_store_has(st, 10));
    assert_false(cascade_store_has(st, 4));
    assert_false(cascade_store_has(st, 11));
    assert_int_equal(cascade_store_held_count(st), 2);

    uint8_t map[2];
    cascade_store_held_map(st, map);
    assert_int_equal(map[0], 1 << 3);
    assert_int_equal(map[1], 1 << 2);
    assert_held_blocks_correct(st, f);

    for (uint64_t i = 0; i < f->meta.block_count; i++)
        assert_int_equal(put_block(st, f, i), CASCADE_STORE_OK);
    assert_true(cascade_store_complete(st));
    assert_held_blocks_correct(st, f);
    assert_int_equal(cascade_store_flush(st), CASCADE_STORE_OK);
    assert_ptr_equal(cascade_store_meta(st), &f->meta);
    assert_true(cascade_store_data_fd(st) >= 0);
    cascade_store_close(st);
}

static void test_put_refuses_wrong_bytes(void **state)
{
    struct fixture *f = *state;
    build_meta(f, 8 * 1024 + 100, 1024, 2);
    struct cascade_store *st = open_store(f, NULL, false);
    uint8_t bad[1024];
    memcpy(bad, f->data + 2 * 1024, sizeof bad);
    bad[500] ^= 1;
    assert_int_equal(cascade_store_put(st, 2, bad, sizeof bad), CASCADE_STORE_EHASH);
    /* Right bytes of another block are wrong bytes for this one. */
    assert_int_equal(cascade_store_put(st, 2, f->data, 1024), CASCADE_STORE_EHASH);
    assert_int_equal(cascade_store_put(st, 2, f->data + 2048, 1023), CASCADE_STORE_ERANGE);
    assert_int_equal(cascade_store_put(st, 8, f->data + 8 * 1024, 1024), CASCADE_STORE_ERANGE);
    assert_int_equal(cascade_store_put(st, 9, f->data, 100), CASCADE_STORE_ERANGE);
    assert_int_equal(cascade_store_put(st, UINT64_MAX, f->data, 1024), CASCADE_STORE_ERANGE);
    assert_false(cascade_store_has(st, 2));
    assert_false(cascade_store_has(st, 8));
    assert_int_equal(cascade_store_held_count(st), 0);

    /* Nothing was written either: the data file is still all zeros. */
    uint8_t disk[1024], zero[1024] = {0};
    assert_int_equal(pread(cascade_store_data_fd(st), disk, sizeof disk, 2048), 1024);
    assert_memory_equal(disk, zero, sizeof zero);

    /* A missing block reads as MISSING and leaves the buffer untouched. */
    uint8_t buf[64];
    memset(buf, 0xAA, sizeof buf);
    assert_int_equal(cascade_store_read(st, 2, 0, buf, sizeof buf), CASCADE_STORE_MISSING);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0xAA);
    cascade_store_close(st);
}

static void test_read_offsets(void **state)
{
    struct fixture *f = *state;
    build_meta(f, 5 * 4096 + 7, 4096, 3);   /* last block is 7 bytes */
    struct cascade_store *st = open_store(f, NULL, false);
    for (uint64_t i = 0; i < f->meta.block_count; i++)
        assert_int_equal(put_block(st, f, i), CASCADE_STORE_OK);

    uint8_t buf[4096];
    assert_int_equal(cascade_store_read(st, 1, 100, buf, 300), CASCADE_STORE_OK);
    assert_memory_equal(buf, f->data + 4096 + 100, 300);
    assert_int_equal(cascade_store_read(st, 1, 4095, buf, 1), CASCADE_STORE_OK);
    assert_int_equal(buf[0], f->data[2 * 4096 - 1]);
    assert_int_equal(cascade_store_read(st, 5, 0, buf, 7), CASCADE_STORE_OK);
    assert_memory_equal(buf, f->data + 5 * 4096, 7);
    assert_int_equal(cascade_store_read(st, 5, 3, buf, 4), CASCADE_STORE_OK);
    assert_memory_equal(buf, f->data + 5 * 4096 + 3, 4);
    assert_int_equal(cascade_store_read(st, 5, 0, buf, 0), CASCADE_STORE_OK);

    /* Past the block's end, past the last block, and offset overflow. */
    assert_int_equal(cascade_store_read(st, 5, 3, buf, 5), CASCADE_STORE_ERANGE);
    assert_int_equal(cascade_store_read(st, 1, 4000, buf, 97), CASCADE_STORE_ERANGE);
    assert_int_equal(cascade_store_read(st, 6, 0, buf, 1), CASCADE_STORE_ERANGE);
    assert_int_equal(cascade_store_read(st, 1, UINT64_MAX, buf, 2), CASCADE_STORE_ERANGE);
    cascade_store_close(st);
}

/* A span over several blocks reads in one go only when all of them are held. */
static void test_read_range(void **state)
{
    struct fixture *f = *state;
    build_meta(f, 5 * 1024 + 7, 1024, 17);   /* 6 blocks, the last is 7 bytes */
    struct cascade_store *st = open_store(f, NULL, false);
    for (uint64_t i = 0; i < f->meta.block_count; i++)
        if (i != 2)
            assert_int_equal(put_block(st, f, i), CASCADE_STORE_OK);

    uint8_t buf[6 * 1024];
    assert_int_equal(cascade_store_read_range(st, 0, buf, 2048), CASCADE_STORE_OK);
    assert_memory_equal(buf, f->data, 2048);
    assert_int_equal(cascade_store_read_range(st, 3 * 1024 + 5, buf, 2 * 1024 + 2),
                     CASCADE_STORE_OK);   /* to the last byte, through the short block */
    assert_memory_equal(buf, f->data + 3 * 1024 + 5, 2 * 1024 + 2);
    assert_int_equal(cascade_store_read_range(st, f->meta.size, buf, 0), CASCADE_STORE_OK);

    /* One byte of the missing block anywhere in the span: MISSING, buffer untouched. */
    memset(buf, 0xAA, sizeof buf);
    assert_int_equal(cascade_store_read_range(st, 1024, buf, 1025), CASCADE_STORE_MISSING);
    assert_int_equal(cascade_store_read_range(st, 3 * 1024 - 1, buf, 2), CASCADE_STORE_MISSING);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0xAA);
    /* The same answers from the check alone (what a splicing reader uses). */
    assert_int_equal(cascade_store_has_range(st, 3 * 1024 + 5, 2 * 1024 + 2), CASCADE_STORE_OK);
    assert_int_equal(cascade_store_has_range(st, 3 * 1024 - 1, 2), CASCADE_STORE_MISSING);
    assert_int_equal(cascade_store_has_range(st, 4 * 1024, 1024 + 8), CASCADE_STORE_ERANGE);

    /* Past the end of the file, and offset overflow. */
    assert_int_equal(cascade_store_read_range(st, 4 * 1024, buf, 1024 + 8), CASCADE_STORE_ERANGE);
    assert_int_equal(cascade_store_read_range(st, f->meta.size + 1, buf, 0), CASCADE_STORE_ERANGE);
    assert_int_equal(cascade_store_read_range(st, UINT64_MAX, buf, 2), CASCADE_STORE_ERANGE);

    assert_int_equal(put_block(st, f, 2), CASCADE_STORE_OK);
    assert_int_equal(cascade_store_read_range(st, 0, buf, f->meta.size), CASCADE_STORE_OK);
    assert_memory_equal(buf, f->data, f->meta.size);
    cascade_store_close(st);
}

static void test_empty_file(void **state)
{
    struct fixture *f = *state;
    build_meta(f, 0, 4096, 4);
    struct cascade_store *st = open_store(f, NULL, false);
    assert_int_equal(cascade_store_held_count(st), 0);
    assert_true(cascade_store_complete(st));
    assert_false(cascade_store_has(st, 0));
    assert_int_equal(cascade_store_adopt(st, NULL), 0);
    cascade_store_close(st);
    st = open_store(f, NULL, false);
    assert_true(cascade_store_complete(st));
    cascade_store_close(st);
}

/* ---- folders ------------------------------------------------------------------ */

static void test_folders_and_default_root(void **state)
{
    struct fixture *f = *state;
    build_meta(f, 3000, 1024, 5);
    snprintf(f->cache, sizeof f->cache, "%s/a/b/cascadefs", f->dir);
    struct cascade_store *st = open_store(f, NULL, false);
    char hex[CASCADE_HEX_LEN], want[256];
    cascade_hex(f->meta.cascade_hash, CASCADE_HASH_LEN, hex);
    snprintf(want, sizeof want, "%s/%s", f->cache, hex);
    assert_string_equal(cascade_store_dir(st), want);
    snprintf(want, sizeof want, "%s/%s/data", f->cache, hex);
    assert_string_equal(cascade_store_data_path(st), want);
    struct stat sb;
    assert_int_equal(stat(f->cache, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(stat(cascade_store_dir(st), &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    cascade_store_close(st);

    char *old_xdg = getenv("XDG_CACHE_HOME") ? strdup(getenv("XDG_CACHE_HOME")) : NULL;
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    char out[256];
    setenv("XDG_CACHE_HOME", "/x/cache", 1);
    setenv("HOME", "/home/u", 1);
    assert_int_equal(cascade_store_default_root(out, sizeof out), 0);
    assert_string_equal(out, "/x/cache/cascadefs");
    setenv("XDG_CACHE_HOME", "relative", 1);   /* invalid per the XDG spec */
    assert_int_equal(cascade_store_default_root(out, sizeof out), 0);
    assert_string_equal(out, "/home/u/.cache/cascadefs");
    unsetenv("XDG_CACHE_HOME");
    assert_int_equal(cascade_store_default_root(out, sizeof out), 0);
    assert_string_equal(out, "/home/u/.cache/cascadefs");
    assert_int_equal(cascade_store_default_root(out, 5), -1);

    /* With no cache folder given, the store lives under the default root. */
    char xdg[160];
    snprintf(xdg, sizeof xdg, "%s/xdg", f->dir);
    setenv("XDG_CACHE_HOME", xdg, 1);
    struct cascade_store_options o = {0};
    char err[CASCADE_ERRLEN];
    assert_int_equal(cascade_store_open(&f->meta, &o, &st, err, sizeof err), 0);
    snprintf(want, sizeof want, "%s/cascadefs/%s", xdg, hex);
    assert_string_equal(cascade_store_dir(st), want);
    snprintf(want, sizeof want, "%s/cascadefs", xdg);
    assert_int_equal(stat(want, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    cascade_store_close(st);
    unsetenv("XDG_CACHE_HOME");
    unsetenv("HOME");
    assert_int_equal(cascade_store_default_root(out, sizeof out), -1);
    if (old_xdg)
        setenv("XDG_CACHE_HOME", old_xdg, 1);
    if (old_home)
        setenv("HOME", old_home, 1);
    free(old_xdg);
    free(old_home);
}

/* ---- resume and the record ------------------------------------------------- */

static void test_reopen_resumes(void **state)
{
    struct fixture *f = *state;
    build_meta(f, 40 * 1024 + 1, 1024, 6);
    struct cascade_store *st = open_store(f, NULL, false);
    for (uint64_t i = 0; i < f->meta.block_count; i += 3)
        assert_int_equal(put_block(st, f, i), CASCADE_STORE_OK);
    uint64_t held = cascade_store_held_count(st);
    cascade_store_close(st);   /* close flushes */

    st = open_store(f, NULL, false);
    assert_int_equal(cascade_store_held_count(st), held);
    for (uint64_t i = 0; i < f->meta.block_count; i++)
        assert_int_equal(cascade_store_has(st, i), i % 3 == 0);
    assert_held_blocks_correct(st, f);
    /* Fill the rest, flush explicitly, and reopen once more. */
    for (uint64_t i = 0; i < f->meta.block_count; i++)
        assert_int_equal(put_block(st, f, i), CASCADE_STORE_OK);
    assert_int_equal(cascade_store_flush(st), CASCADE_STORE_OK);
    cascade_store_close(st);
    st = open_store(f, NULL, false);
    assert_true(cascade_store_complete(st));
    assert_held_blocks_correct(st, f);
    cascade_store_close(st);
}


static char *record_path_of(struct cascade_store *st)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/held", cascade_store_dir(st)) > 0);
    return p;
}

/* Bit idx of the record file on disk (not the store's memory). */
static bool record_bit_on_disk(const char *rec, uint64_t idx)
{
    int fd = open(rec, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t byte = 0;
    ssize_t n = pread(fd, &byte, 1, (off_t)(CASCADE_RECORD_HEADER_LEN + idx / 8));
    close(fd);
    return n == 1 && ((byte >> (idx % 8)) & 1);
}

/* The store has no thread: cascade_store_flush_due tells its owner when
 * pending marks want a flush (a second old, or many of them), and a flush
 * puts them in the record on disk. */
static void test_flush_due(void **state)
{
    struct fixture *f = *state;
    build_meta(f, 8 * 1024, 1024, 15);
    struct cascade_store *st = open_store(f, NULL, false);
    char *rec = record_path_of(st);
    uint64_t now = cascade_now_ms();
    assert_false(cascade_store_flush_due(st, now + 5000));   /* nothing pending */
    assert_int_equal(put_block(st, f, 5), CASCADE_STORE_OK);
    assert_false(record_bit_on_disk(rec, 5));
    assert_false(cascade_store_flush_due(st, now));          /* young, and only one */
    assert_true(cascade_store_flush_due(st, cascade_now_ms() + 1000));   /* a second old */
    assert_int_equal(cascade_store_flush(st), CASCADE_STORE_OK);
    assert_true(record_bit_on_disk(rec, 5));
    assert_false(record_bit_on_disk(rec, 4));
    assert_false(cascade_store_flush_due(st, cascade_now_ms() + 5000));
    cascade_store_close(st);
    free(rec);

    /* Many pending marks are due at once, whatever their age. */
    build_meta(f, 5000 * 16, 16, 16);
    st = open_store(f, NULL, false);
    for (uint64_t i = 0; i < 4096; i++)
        assert_int_equal(put_block(st, f, i), CASCADE_STORE_OK);
    assert_true(cascade_store_flush_due(st, cascade_now_ms()));
    cascade_store_close(st);
}

static void test_record_of_other_meta_discarded(void **state)
{
    struct fixture *f = *state;
    build_meta(f, 16 * 1024, 1024, 7);
    struct cascade_store *st = open_store(f, NULL, false);
    for (uint64_t i = 0; i < f->meta.block_count; i++)
        assert_int_equal(put_block(st, f, i), CASCADE_STORE_OK);
    cascade_store_close(st);

    /* Same cascade hash (so same folder) but other blocks: the record's
     * header does not match and must not be trusted. */
    uint8_t hash[CASCADE_HASH_LEN];
    memcpy(hash, f->meta.cascade_hash, sizeof hash);
    build_meta(f, 16 * 1024, 2048, 8);
    memcpy(f->meta.cascade_hash, hash, sizeof hash);
    st = open_store(f, NULL, false);
    assert_int_equal(cascade_store_held_count(st), 0);
    assert_int_equal(put_block(st, f, 1), CASCADE_STORE_OK);
    char *rec = record_path_of(st);
    cascade_store_close(st);

    /* A record cut short is discarded too: only the bytes in the data file
     * count, each verified again (the recovery scan keeps block 1). */
    assert_int_equal(truncate(rec, CASCADE_RECORD_HEADER_LEN), 0);
    st = open_store(f, NULL, false);
    assert_int_equal(cascade_store_held_count(st), 1);
    assert_true(cascade_store_has(st, 1));
    assert_int_equal(put_block(st, f, 2), CASCADE_STORE_OK);
    cascade_store_close(st);

    /* A bad magic is discarded (blocks 1 and 2 verified again). */
    int fd = open(rec, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "XASCHELD", 8, 0), 8);
    close(fd);
    st = open_store(f, NULL, false);
    assert_int_equal(cascade_store_held_count(st), 2);
    assert_false(cascade_store_has(st, 0));
    cascade_store_close(st);
    free(rec);
}

static void test_replaced_data_file_drops_marks(void **state)
{
    struct fixture *f = *state;
    build_meta(f, 16 * 1024, 1024, 9);
    struct cascade_store *st = open_store(f, NULL, false);
    for (uint64_t i = 0; i < f->meta.block_count; i++)
        assert_int_equal(put_block(st, f, i), CASCADE_STORE_OK);
    char *data = strdup(cascade_store_data_path(st));
    cascade_store_close(st);

    /* Someone cut the data file short: blocks past its end are not held. */
    assert_int_equal(truncate(data, 5 * 1024 + 10), 0);
    st = open_store(f, NULL, false);
    assert_int_equal(cascade_store_held_count(st), 5);
    assert_held_blocks_correct(st, f);
    cascade_store_close(st);

    /* Someone replaced it with another file of full length (made while the
     * old one existed, so another inode): nothing of it is trusted. */
    char *other = NULL;
    assert_true(asprintf(&other, "%s.new", data) > 0);
    uint8_t *junk = calloc(1, f->meta.size);
    assert_non_null(junk);
    write_file(other, junk, f->meta.size);
    assert_int_equal(rename(other, data), 0);
    st = open_store(f, NULL, false);
    assert_int_equal(cascade_store_held_count(st), 0);
    for (uint64_t i = 0; i < f->meta.block_count; i++)
        assert_int_equal(put_block(st, f, i), CASCADE_STORE_OK);
    cascade_store_close(st);

    /* A copy of it with one block damaged takes its place: the held marks
     * are re-verified against the new file, and only the damaged one goes. */
    memcpy(junk, f->data, f->meta.size);
    junk[9 * 1024 + 3] ^= 0x10;
    write_file(other, junk, f->meta.size);
    assert_int_equal(rename(other, data), 0);
    st = open_store(f, NULL, false);
    assert_int_equal(cascade_store_held_count(st), f->meta.block_count - 1);
    assert_false(cascade_store_has(st, 9));
    assert_held_blocks_correct(st, f);
    cascade_store_close(st);
    free(junk);
    free(other);
    free(data);
}

/* A second store on the same folder at the same time (another process, or
 * as here another open) must not write the record the first one owns. */
static void test_second_opener_keeps_marks_in_memory(void **state)
{
    struct fixture *f = *state;
    build_meta(f, 16 * 1024, 1024, 16);
    struct cascade_store *first = open_store(f, NULL, false);
    assert_int_equal(put_block(first, f, 1), CASCADE_STORE_OK);
    assert_int_equal(cascade_store_flush(first), CASCADE_STORE_OK);

    char other[192];
    snprintf(other, sizeof other, "%s/other.bin", f->dir);
    struct cascade_store *second = open_store(f, other, false);
    assert_int_equal(cascade_store_held_count(second), 0);   /* other file: nothing */
    assert_int_equal(put_block(second, f, 2), CASCADE_STORE_OK);
    assert_int_equal(put_block(second, f, 3), CASCADE_STORE_OK);
    assert_int_equal(cascade_store_flush(second), CASCADE_STORE_OK);
    assert_held_blocks_correct(second, f);

    /* A third on the first one's data file trusts the first one's record. */
    struct cascade_store *third = open_store(f, NULL, false);
    assert_int_equal(cascade_store_held_count(third), 1);
    assert_true(cascade_store_has(third, 1));
    cascade_store_close(third);
    cascade_store_close(second);
    cascade_store_close(first);

    struct cascade_store *st = open_store(f, NULL, false);
    assert_int_equal(cascade_store_held_count(st), 1);
    assert_true(cascade_store_has(st, 1));
    assert_held_blocks_correct(st, f);
    cascade_store_close(st);
}

/* ---- adopt and read-only ---------------------------------------------------- */

static void test_adopt_complete_file(void **state)
{
    struct fixture *f = *state;
    build_meta(f, 20 * 4096 + 123, 4096, 10);
    char path[192];
    snprintf(path, sizeof path, "%s/target.bin", f->dir);
    write_file(path, f->data, f->meta.size);

    struct cascade_store *st = open_store(f, path, false);
    assert_string_equal(cascade_store_data_path(st), path);
    assert_int_equal(cascade_store_held_count(st), 0);
    struct cascade_progress prog;
    cascade_progress_init(&prog, "verifying", f->meta.size, true, true);
    assert_int_equal(cascade_store_adopt(st, &prog), (int64_t)f->meta.block_count);
    assert_int_equal(prog.done, f->meta.size);
    assert_true(cascade_store_complete(st));
    assert_held_blocks_correct(st, f);
    assert_int_equal(cascade_store_adopt(st, NULL), 0);   /* nothing new */
    cascade_store_close(st);

    st = open_store(f, path, false);   /* the record remembers */
    assert_true(cascade_store_complete(st));
    cascade_store_close(st);
}

static void test_adopt_partial_corrupt_file(void **state)
{
    struct fixture *f = *state;
    build_meta(f, 20 * 4096 + 123, 4096, 11);
    char path[192];
    snprintf(path, sizeof path, "%s/partial.bin", f->dir);
    uint8_t *copy = malloc(f->meta.size);
    assert_non_null(copy);
    memcpy(copy, f->data, f->meta.size);
    copy[0] ^= 0xFF;                  /* block 0 corrupt */
    copy[7 * 4096 + 4095] ^= 0x01;    /* block 7 corrupt (last byte) */
    /* Blocks 18.. are missing: the file ends inside block 18. */
    write_file(path, copy, 18 * 4096 + 50);
    free(copy);

    struct cascade_store *st = open_store(f, path, false);
    assert_int_equal(file_size(path), (off_t)f->meta.size);   /* extended */
    assert_int_equal(cascade_store_adopt(st, NULL), 16);
    assert_int_equal(cascade_store_held_count(st), 16);
    assert_false(cascade_store_has(st, 0));
    assert_false(cascade_store_has(st, 7));
    assert_false(cascade_store_has(st, 18));
    assert_false(cascade_store_has(st, 20));
    assert_true(cascade_store_has(st, 1));
    assert_true(cascade_store_has(st, 17));
    assert_held_blocks_correct(st, f);
    /* The missing ones can still be put. */
    assert_int_equal(put_block(st, f, 0), CASCADE_STORE_OK);
    assert_int_equal(put_block(st, f, 20), CASCADE_STORE_OK);
    assert_held_blocks_correct(st, f);
    cascade_store_close(st);
}

static void test_read_only(void **state)
{
    struct fixture *f = *state;
    build_meta(f, 10 * 1024 + 10, 1024, 12);
    char path[192];
    snprintf(path, sizeof path, "%s/ro.bin", f->dir);
    write_file(path, f->data, 6 * 1024);   /* short and must stay so */
    assert_int_equal(chmod(path, 0444), 0);

    struct cascade_store *st = open_store(f, path, true);
    assert_int_equal(file_size(path), 6 * 1024);   /* not extended */
    assert_int_equal(put_block(st, f, 7), CASCADE_STORE_EROFS);
    assert_int_equal(cascade_store_adopt(st, NULL), 6);
    assert_int_equal(put_block(st, f, 1), CASCADE_STORE_EROFS);
    assert_int_equal(cascade_store_held_count(st), 6);
    assert_held_blocks_correct(st, f);
    uint8_t buf[16];
    assert_int_equal(cascade_store_read(st, 8, 0, buf, sizeof buf), CASCADE_STORE_MISSING);
    int flags = fcntl(cascade_store_data_fd(st), F_GETFL);
    assert_int_equal(flags & O_ACCMODE, O_RDONLY);
    cascade_store_close(st);

    st = open_store(f, path, true);   /* resumes from the record */
    assert_int_equal(cascade_store_held_count(st), 6);
    cascade_store_close(st);

    /* The file is changed behind our back between runs: the marks are
     * re-verified, and the damaged block is no longer held. */
    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);
    /* File times tick coarsely (a few ms): let the clock move on first so
     * the change is visible in the ctime, as any real later change is. */
    struct timespec pause = { 0, 50 * 1000000L };
    nanosleep(&pause, NULL);
    assert_int_equal(chmod(path, 0644), 0);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "garbage", 7, 3 * 1024 + 100), 7);
    assert_int_equal(close(fd), 0);
    assert_int_equal(stat(path, &after), 0);
    assert_true(after.st_ctim.tv_sec != before.st_ctim.tv_sec ||
                after.st_ctim.tv_nsec != before.st_ctim.tv_nsec);
    st = open_store(f, path, true);
    assert_int_equal(cascade_store_held_count(st), 5);
    assert_false(cascade_store_has(st, 3));
    assert_held_blocks_correct(st, f);
    cascade_store_close(st);

    /* Read-only over a file that does not exist is an error, not a create. */
    char missing[200];
    snprintf(missing, sizeof missing, "%s/nope.bin", f->dir);
    struct cascade_store_options o = { .cache_root = f->cache, .data_path = missing,
                                       .read_only = true };
    char err[CASCADE_ERRLEN] = "";
    assert_int_not_equal(cascade_store_open(&f->meta, &o, &st, err, sizeof err), 0);
    assert_null(st);
    assert_non_null(strstr(err, "nope.bin"));
}

/* ---- many threads ---------------------------------------------------------- */

#define KILL_SIZE (1024 * 4096 + 5)
#define KILL_BLOCK 4096
#define KILL_SEED 14

#define THREADS 8
#define ITERATIONS 3000

struct worker {
    struct fixture *f;
    struct cascade_store *st;
    unsigned seed;
    int failures;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct cascade_meta *m = &w->f->meta;
    uint8_t *buf = malloc(m->block_size);
    if (!buf) {
        w->failures++;
        return NULL;
    }
    for (int n = 0; n < ITERATIONS; n++) {
        uint64_t i = (uint64_t)rand_r(&w->seed) % m->block_count;
        size_t len = (size_t)cascade_meta_block_len(m, i);
        const uint8_t *want = w->f->data + i * m->block_size;
        int op = rand_r(&w->seed) % 8;
        if (op < 2) {
            if (cascade_store_put(w->st, i, want, len) != CASCADE_STORE_OK)
                w->failures++;
        } else if (op == 2) {
            memcpy(buf, want, len);
            buf[len / 2] ^= 0x40;
            if (cascade_store_put(w->st, i, buf, len) != CASCADE_STORE_EHASH)
                w->failures++;
        } else if (op == 3 && n % 200 == 0) {
            if (cascade_store_flush(w->st) != CASCADE_STORE_OK)
                w->failures++;
        } else {
            bool had = cascade_store_has(w->st, i);
            int rc = cascade_store_read(w->st, i, 0, buf, len);
            if (rc == CASCADE_STORE_OK) {
                if (memcmp(buf, want, len) != 0)
                    w->failures++;
            } else if (rc != CASCADE_STORE_MISSING || had) {
                w->failures++;   /* once held, always held */
            }
            (void)cascade_store_held_count(w->st);
        }
    }
    free(buf);
    return NULL;
}

static void test_many_threads(void **state)
{
    struct fixture *f = *state;
    build_meta(f, 300 * 1024 + 77, 1024, 13);   /* few blocks: many collisions */
    struct cascade_store *st = open_store(f, NULL, false);
    pthread_t tids[THREADS];
    struct worker w[THREADS];
    for (int t = 0; t < THREADS; t++) {
        w[t] = (struct worker){ .f = f, .st = st, .seed = 1234u + (unsigned)t };
        assert_int_equal(pthread_create(&tids[t], NULL, worker_main, &w[t]), 0);
    }
    int failures = 0;
    for (int t = 0; t < THREADS; t++) {   /* join all before asserting */
        pthread_join(tids[t], NULL);
        failures += w[t].failures;
    }
    assert_int_equal(failures, 0);
    assert_true(cascade_store_held_count(st) > 0);
    assert_held_blocks_correct(st, f);
    uint64_t held = cascade_store_held_count(st);
    cascade_store_close(st);
    st = open_store(f, NULL, false);
    assert_int_equal(cascade_store_held_count(st), held);
    assert_held_blocks_correct(st, f);
    cascade_store_close(st);
}

/* ---- kill -9 at random moments ------------------------------------------------ */

struct kill_putter {
    struct fixture *f;
    struct cascade_store *st;
    unsigned seed;
};

/* Puts random blocks (many of them again and again) until the process dies. */
static void *kill_putter_main(void *arg)
{
    struct kill_putter *p = arg;
    for (uint64_t n = 0; n < 10 * 1000 * 1000; n++) {
        uint64_t i = (uint64_t)rand_r(&p->seed) % p->f->meta.block_count;
        if (put_block(p->st, p->f, i) != CASCADE_STORE_OK)
            _exit(3);
    }
    return NULL;
}

/* Child (a fresh exec of this program, so no threads are inherited across
 * fork): several threads put blocks while the main thread flushes now and
 * then, as a download does; the parent hears after the first flush that
 * recorded something. Keeps going until killed. */
static int kill_child_main(const char *cache, unsigned seed, int ready_fd)
{
    struct fixture f = {0};
    build_meta(&f, KILL_SIZE, KILL_BLOCK, seed);
    struct cascade_store_options o = { .cache_root = cache };
    struct cascade_store *st = NULL;
    char err[CASCADE_ERRLEN];
    if (cascade_store_open(&f.meta, &o, &st, err, sizeof err) != 0)
        return 2;
    struct kill_putter putters[3];
    pthread_t tids[3];
    for (int t = 0; t < 3; t++) {
        putters[t] = (struct kill_putter){ .f = &f, .st = st,
                                           .seed = (unsigned)getpid() * 7u + (unsigned)t };
        if (pthread_create(&tids[t], NULL, kill_putter_main, &putters[t]) != 0)
            return 5;
    }
    bool told = false;
    for (int n = 0; n < 100 * 1000; n++) {
        struct timespec pause = { 0, 500 * 1000L };
        nanosleep(&pause, NULL);
        uint64_t held = cascade_store_held_count(st);   /* all in the flush below */
        if (cascade_store_flush(st) != CASCADE_STORE_OK)
            return 4;
        if (!told && held > 0)
            told = write(ready_fd, "x", 1) == 1;
    }
    for (int t = 0; t < 3; t++)
        pthread_join(tids[t], NULL);
    cascade_store_close(st);
    test_free_meta(&f.meta, &f.data);
    return 0;
}

static void test_kill9_never_leaves_wrong_marks(void **state)
{
    struct fixture *f = *state;
    build_meta(f, KILL_SIZE, KILL_BLOCK, KILL_SEED);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    for (int round = 0; round < 5; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            char fd_arg[16], seed_arg[16];
            snprintf(fd_arg, sizeof fd_arg, "%d", fds[1]);
            snprintf(seed_arg, sizeof seed_arg, "%d", KILL_SEED);
            execl("/proc/self/exe", "test_store", "--kill-child", f->cache, seed_arg,
                  fd_arg, (char *)NULL);
            _exit(5);
        }
        close(fds[1]);
        struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
        int ready = poll(&pfd, 1, 30 * 1000);   /* bounded wait for the first flush */
        char c;
        bool flushed = ready == 1 && read(fds[0], &c, 1) == 1;
        struct timespec pause = { 0, (long)(rand() % 50) * 1000000L };
        nanosleep(&pause, NULL);
        kill(pid, SIGKILL);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        close(fds[0]);
        assert_true(flushed);
        assert_true((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ||
                    (WIFEXITED(status) && WEXITSTATUS(status) == 0));

        struct cascade_store *st = open_store(f, NULL, false);
        assert_true(cascade_store_held_count(st) > 0);
        assert_held_blocks_correct(st, f);
        /* Also check against the hashes, as the fetcher's peers would. */
        uint8_t buf[4096], h[CASCADE_HASH_LEN];
        for (uint64_t i = 0; i < f->meta.block_count; i++) {
            if (!cascade_store_has(st, i))
                continue;
            assert_int_equal(cascade_store_read(st, i, 0, buf, cascade_meta_block_len(&f->meta, i)), 0);
            assert_int_equal(cascade_sha256(buf, cascade_meta_block_len(&f->meta, i), h), 0);
            assert_memory_equal(h, f->meta.block_hashes + i * CASCADE_HASH_LEN, sizeof h);
        }
        cascade_store_close(st);
        /* Next round starts from empty, so the child is killed mid-fill again. */
        assert_int_equal(test_remove_tree(f->cache), 0);
    }
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--kill-child") == 0)
        return kill_child_main(argv[2], (unsigned)atoi(argv[3]), atoi(argv[4]));
    if (argc == 2)   /* run only the tests matching a pattern, e.g. "*kill*" */
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_read_has, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_refuses_wrong_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folders_and_default_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_of_other_meta_discarded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replaced_data_file_drops_marks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_opener_keeps_marks_in_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt_complete_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt_partial_corrupt_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_never_leaves_wrong_marks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
