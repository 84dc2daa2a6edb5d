/* Unit tests for what the block store does for a bounded cache
 * (cascade/store_evict.c, store_scan.c, the pins and verify-once of
 * store.c): eviction order and durability, pins, the recovery scan after
 * a crash, verify-once, a deleted data file, the copy of the .cascade. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cascade/store.h"
#include "cascade/util.h"
#include "support.h"

#define BS 4096u
#define BLOCKS 1024u          /* 4 MiB: four extents of 256 blocks */
#define EXTENT_BLOCKS 256u

struct env {
    struct test_tmp tmp;
    char cache[128];
    uint8_t *data;
    struct cascade_meta meta;
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof *e);
    if (!e || test_make_tmpdir(e->tmp.dir, sizeof e->tmp.dir, "test_store_cache") != 0)
        return -1;
    snprintf(e->cache, sizeof e->cache, "%s/cache", e->tmp.dir);
    test_build_meta(&e->meta, &e->data, (uint64_t)BS * BLOCKS, BS, 11);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    test_remove_tree(e->tmp.dir);
    test_free_meta(&e->meta, &e->data);
    free(e);
    return 0;
}

static struct cascade_store *open_with(struct env *e, enum cascade_verify verify)
{
    struct cascade_store_options o = {.cache_root = e->cache, .verify = verify};
    struct cascade_store *st = NULL;
    char err[CASCADE_ERRLEN] = "";
    if (cascade_store_open(&e->meta, &o, &st, err, sizeof err) != 0)
        print_error("open: %s\n", err);
    assert_non_null(st);
    return st;
}

static void put_range(struct cascade_store *st, struct env *e, uint64_t first, uint64_t end)
{
    for (uint64_t i = first; i < end; i++)
        assert_int_equal(cascade_store_put(st, i, test_block(&e->meta, e->data, i),
                                           cascade_meta_block_len(&e->meta, i)),
                         CASCADE_STORE_OK);
}

/* Bytes the data file takes on disk. */
static uint64_t disk_bytes(struct cascade_store *st)
{
    struct stat sb;
    assert_int_equal(fstat(cascade_store_data_fd(st), &sb), 0);
    return (uint64_t)sb.st_blocks * 512;
}

/* Read extent x (a pin counts as a use); a later clock tick makes it newer. */
static void use_extent(struct cascade_store *st, uint64_t x)
{
    usleep(3000);
    uint64_t off = x * EXTENT_BLOCKS * BS;
    assert_int_equal(cascade_store_pin_range(st, off, BS), CASCADE_STORE_OK);
    cascade_store_unpin_range(st, off, BS);
}

/* ---- eviction ---- */

static void test_evict_least_recently_used_first(void **state)
{
    struct env *e = *state;
    struct cascade_store *st = open_with(e, CASCADE_VERIFY_FIRST);
    assert_true(cascade_store_evictable(st));
    put_range(st, e, 0, BLOCKS);
    assert_int_equal(cascade_store_flush(st), CASCADE_STORE_OK);
    /* Use order: 2, 0, 3, 1: extent 2 is the least recently used. */
    use_extent(st, 2);
    use_extent(st, 0);
    use_extent(st, 3);
    use_extent(st, 1);
    uint64_t before = disk_bytes(st);
    int64_t freed = cascade_store_evict(st, 1, UINT64_MAX);
    assert_int_equal(freed, EXTENT_BLOCKS * BS);
    assert_false(cascade_store_has(st, 2 * EXTENT_BLOCKS));
    assert_false(cascade_store_has(st, 3 * EXTENT_BLOCKS - 1));
    assert_true(cascade_store_has(st, 0));
    assert_true(disk_bytes(st) + EXTENT_BLOCKS * BS <= before);   /* the hole is punched */
    /* Next: extent 0, then 3. */
    assert_int_equal(cascade_store_evict(st, 2 * EXTENT_BLOCKS * BS, UINT64_MAX),
                     2 * EXTENT_BLOCKS * BS);
    assert_false(cascade_store_has(st, 0));
    assert_false(cascade_store_has(st, 3 * EXTENT_BLOCKS));
    assert_true(cascade_store_has(st, EXTENT_BLOCKS));
    assert_int_equal(cascade_store_held_bytes(st), EXTENT_BLOCKS * BS);
    uint64_t evicted, bad;
    cascade_store_counters(st, &evicted, &bad);
    assert_int_equal(evicted, 3 * EXTENT_BLOCKS * BS);
    cascade_store_close(st);

    /* Durable: the record says the same after a reopen, and the recency
     * came back (extent 1 is all that is left, and it was used last). */
    st = open_with(e, CASCADE_VERIFY_FIRST);
    assert_int_equal(cascade_store_held_count(st), EXTENT_BLOCKS);
    assert_true(cascade_store_has(st, EXTENT_BLOCKS));
    assert_true(cascade_store_oldest_use(st) > 0);
    cascade_store_close(st);
}

static void test_evict_respects_bound_and_pins(void **state)
{
    struct env *e = *state;
    struct cascade_store *st = open_with(e, CASCADE_VERIFY_FIRST);
    put_range(st, e, 0, BLOCKS);
    use_extent(st, 0);
    uint64_t after_first = cascade_store_oldest_use(st);
    use_extent(st, 1);
    use_extent(st, 2);
    use_extent(st, 3);
    /* Nothing used at or before a time older than every extent. */
    assert_int_equal(cascade_store_evict(st, UINT64_MAX, after_first - 1), 0);
    /* A pinned extent is skipped, even when it is the oldest. */
    assert_int_equal(cascade_store_pin_block(st, 5), CASCADE_STORE_OK);
    assert_int_equal(cascade_store_evict(st, 1, UINT64_MAX), EXTENT_BLOCKS * BS);
    assert_true(cascade_store_has(st, 5));
    assert_false(cascade_store_has(st, EXTENT_BLOCKS));   /* extent 1 went instead */
    /* Everything but the pin. */
    assert_true(cascade_store_evict(st, UINT64_MAX, UINT64_MAX) > 0);
    assert_int_equal(cascade_store_held_count(st), EXTENT_BLOCKS);
    cascade_store_unpin_block(st, 5);
    assert_int_equal(cascade_store_evict(st, UINT64_MAX, UINT64_MAX), EXTENT_BLOCKS * BS);
    assert_int_equal(cascade_store_held_count(st), 0);
    /* An evicted block is simply missing: it can be stored again. */
    uint8_t buf[16];
    assert_int_equal(cascade_store_read(st, 7, 0, buf, sizeof buf), CASCADE_STORE_MISSING);
    put_range(st, e, 7, 8);
    assert_int_equal(cascade_store_read(st, 7, 0, buf, sizeof buf), CASCADE_STORE_OK);
    assert_memory_equal(buf, test_block(&e->meta, e->data, 7), sizeof buf);
    cascade_store_close(st);
}

static void test_user_data_file_never_evicted(void **state)
{
    struct env *e = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/mine", e->tmp.dir);
    struct cascade_store_options o = {.cache_root = e->cache, .data_path = path};
    struct cascade_store *st = NULL;
    assert_int_equal(cascade_store_open(&e->meta, &o, &st, NULL, 0), 0);
    put_range(st, e, 0, 4);
    assert_false(cascade_store_evictable(st));
    assert_int_equal(cascade_store_evict(st, UINT64_MAX, UINT64_MAX), 0);
    assert_int_equal(cascade_store_held_count(st), 4);
    cascade_store_close(st);
}

/* ---- recovery after a crash ---- */

static void test_recovery_scan_keeps_written_blocks(void **state)
{
    struct env *e = *state;
    /* A child stores blocks and dies without a flush: the record never
     * says they are held, but their bytes are in the data file. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct cascade_store *st = open_with(e, CASCADE_VERIFY_FIRST);
        put_range(st, e, 10, 60);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(cascade_store_peek(&e->meta, e->cache, NULL), 0);

    /* One of them was damaged since (a torn write). */
    char path[512], rec[512];
    struct cascade_store *st = open_with(e, CASCADE_VERIFY_NEVER);
    snprintf(path, sizeof path, "%s", cascade_store_data_path(st));
    snprintf(rec, sizeof rec, "%s/held", cascade_store_dir(st));
    cascade_store_close(st);
    /* (That open already recovered them; start again without the record.) */
    assert_int_equal(cascade_store_peek(&e->meta, e->cache, NULL), 50);
    assert_int_equal(unlink(rec), 0);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "X", 1, 20 * BS + 7), 1);
    close(fd);

    st = open_with(e, CASCADE_VERIFY_FIRST);
    assert_int_equal(cascade_store_held_count(st), 49);
    assert_false(cascade_store_has(st, 20));
    assert_true(cascade_store_has(st, 10) && cascade_store_has(st, 59));
    assert_false(cascade_store_has(st, 60));
    /* The damaged block's bytes were released, and it can be stored again. */
    put_range(st, e, 20, 21);
    cascade_store_close(st);
    assert_int_equal(cascade_store_peek(&e->meta, e->cache, NULL), 50);
}

/* ---- verify once ---- */

static void flip_byte(const char *path, uint64_t off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

static void test_verify_first_drops_changed_block(void **state)
{
    struct env *e = *state;
    struct cascade_store *st = open_with(e, CASCADE_VERIFY_FIRST);
    put_range(st, e, 0, 8);
    char path[512];
    snprintf(path, sizeof path, "%s", cascade_store_data_path(st));
    /* Written by this run: trusted, even when changed under it. */
    flip_byte(path, 3 * BS + 1);
    assert_int_equal(cascade_store_pin_block(st, 3), CASCADE_STORE_OK);
    cascade_store_unpin_block(st, 3);
    cascade_store_close(st);

    /* A new run checks it the first time it is read: dropped, durably. */
    st = open_with(e, CASCADE_VERIFY_FIRST);
    assert_int_equal(cascade_store_held_count(st), 8);
    uint8_t buf[BS];
    assert_int_equal(cascade_store_read(st, 3, 0, buf, BS), CASCADE_STORE_MISSING);
    assert_false(cascade_store_has(st, 3));
    assert_int_equal(cascade_store_read(st, 4, 0, buf, BS), CASCADE_STORE_OK);
    uint64_t evicted, bad;
    cascade_store_counters(st, &evicted, &bad);
    assert_int_equal(bad, 1);
    put_range(st, e, 3, 4);   /* fetched again */
    assert_int_equal(cascade_store_read(st, 3, 0, buf, BS), CASCADE_STORE_OK);
    assert_memory_equal(buf, test_block(&e->meta, e->data, 3), BS);
    cascade_store_close(st);
    assert_int_equal(cascade_store_peek(&e->meta, e->cache, NULL), 8);

    /* Once checked, a block is not hashed again in the run (a change after
     * the check is not seen); with "always" it is. */
    st = open_with(e, CASCADE_VERIFY_FIRST);
    assert_int_equal(cascade_store_pin_block(st, 5), CASCADE_STORE_OK);
    cascade_store_unpin_block(st, 5);
    flip_byte(path, 5 * BS);
    assert_int_equal(cascade_store_pin_block(st, 5), CASCADE_STORE_OK);
    cascade_store_unpin_block(st, 5);
    cascade_store_close(st);
    st = open_with(e, CASCADE_VERIFY_ALWAYS);
    assert_int_equal(cascade_store_pin_block(st, 5), CASCADE_STORE_MISSING);
    cascade_store_close(st);

    /* never: the record is trusted. */
    flip_byte(path, 6 * BS);
    st = open_with(e, CASCADE_VERIFY_NEVER);
    assert_int_equal(cascade_store_pin_block(st, 6), CASCADE_STORE_OK);
    cascade_store_unpin_block(st, 6);
    cascade_store_close(st);
}

/* The owner keeps what was checked across opens: once per run, not per
 * open (a store closed when idle and reopened to serve hashes nothing
 * again). */
static void test_checked_kept_across_opens(void **state)
{
    struct env *e = *state;
    uint8_t *checked = calloc(BLOCKS / 8 + 1, 1);
    assert_non_null(checked);
    struct cascade_store_options o = {.cache_root = e->cache, .checked = checked};
    struct cascade_store *st = NULL;
    assert_int_equal(cascade_store_open(&e->meta, &o, &st, NULL, 0), 0);
    put_range(st, e, 0, 4);
    char path[512];
    snprintf(path, sizeof path, "%s", cascade_store_data_path(st));
    cascade_store_close(st);
    flip_byte(path, 2 * BS);
    assert_int_equal(cascade_store_open(&e->meta, &o, &st, NULL, 0), 0);
    assert_int_equal(cascade_store_pin_block(st, 2), CASCADE_STORE_OK);   /* checked this run */
    cascade_store_unpin_block(st, 2);
    cascade_store_close(st);
    /* A new run (a fresh bitmap) checks it. */
    st = open_with(e, CASCADE_VERIFY_FIRST);
    assert_int_equal(cascade_store_pin_block(st, 2), CASCADE_STORE_MISSING);
    cascade_store_close(st);
    free(checked);
}

/* ---- files deleted under an open store; the copy of the .cascade ---- */

static void test_deleted_data_file_recreated(void **state)
{
    struct env *e = *state;
    struct cascade_store *st = open_with(e, CASCADE_VERIFY_FIRST);
    put_range(st, e, 0, 16);
    assert_int_equal(cascade_store_flush(st), CASCADE_STORE_OK);
    char err[CASCADE_ERRLEN];
    assert_int_equal(cascade_store_check_files(st, err, sizeof err), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->cache);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(cascade_store_check_files(st, err, sizeof err), 1);
    assert_int_equal(cascade_store_held_count(st), 0);
    struct stat sb;
    assert_int_equal(stat(cascade_store_data_path(st), &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, e->meta.size);
    /* Blocks stored now go into the new file and are recorded. */
    put_range(st, e, 2, 3);
    assert_int_equal(cascade_store_check_files(st, err, sizeof err), 0);
    cascade_store_close(st);
    assert_int_equal(cascade_store_peek(&e->meta, e->cache, NULL), 1);
}

static void test_copy_of_cascade_written(void **state)
{
    struct env *e = *state;
    /* A real .cascade: the copy must hash to its cascade hash. */
    char data[256], casc[300], cmd[1200];
    snprintf(data, sizeof data, "%s/film", e->tmp.dir);
    FILE *fp = fopen(data, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(e->data, 1, 100000, fp), 100000);
    fclose(fp);
    snprintf(casc, sizeof casc, "%s.cascade", data);
    snprintf(cmd, sizeof cmd, "'%s/net/cli/cascade' create '%s' -b 16K -q >/dev/null",
             getenv("CASCADE_BUILD"), data);
    if (!getenv("CASCADE_BUILD") || system(cmd) != 0)
        skip();
    struct cascade_meta m;
    assert_int_equal(cascade_meta_load(casc, &m, NULL, 0), 0);
    struct cascade_store_options o = {.cache_root = e->cache};
    struct cascade_store *st = NULL;
    assert_int_equal(cascade_store_open(&m, &o, &st, NULL, 0), 0);
    char copy[600];
    snprintf(copy, sizeof copy, "%s/cascade", cascade_store_dir(st));
    cascade_store_close(st);
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", copy, casc);
    assert_int_equal(system(cmd), 0);
    cascade_meta_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_evict_least_recently_used_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evict_respects_bound_and_pins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_data_file_never_evicted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_scan_keeps_written_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_first_drops_changed_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checked_kept_across_opens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_data_file_recreated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_of_cascade_written, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
