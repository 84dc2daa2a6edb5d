/* Unit tests for fs/readahead.c: sequential detection and the growing
 * read-ahead window (pure logic, no FUSE calls). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fs/readahead.h"

#define KiB 1024ull
#define MiB (1024 * KiB)

/* The window is the run so far plus the start: it grows with what the
 * reader has read, up to the cap. */
static void test_window_follows_the_run(void **state)
{
    (void)state;
    struct fs_readahead ra;
    uint64_t off, len, file = 1024 * MiB;
    fs_readahead_init(&ra, 4, 64 * KiB);          /* 256 KiB start */
    fs_readahead_on_read(&ra, 0, 128 * KiB, file, &off, &len);
    assert_int_equal(off, 128 * KiB);
    assert_int_equal(len, 128 * KiB + 256 * KiB);  /* run 128 KiB + start */
    fs_readahead_on_read(&ra, 128 * KiB, 128 * KiB, file, &off, &len);
    /* run 256 KiB: up to 256 + 512 KiB; 512 KiB of it was asked already */
    assert_int_equal(off, 512 * KiB);
    assert_int_equal(len, 256 * KiB);
    for (uint64_t pos = 256 * KiB; pos < 512 * MiB; pos += MiB)
        fs_readahead_on_read(&ra, pos, MiB, file, &off, &len);
    assert_true(ra.wanted_end <= ra.next_off + FS_RA_MAX_WINDOW);
    assert_true(ra.wanted_end >= ra.next_off + FS_RA_MAX_WINDOW - 2 * MiB);   /* at the cap */
}

/* A short read asks for little: `head -c 2M` of a file of 1 MiB blocks
 * wants at most its run plus the start ahead. */
static void test_short_run_asks_little(void **state)
{
    (void)state;
    struct fs_readahead ra;
    uint64_t off, len, asked_to = 0, file = 100 * MiB;
    fs_readahead_init(&ra, 2, MiB);               /* 2 MiB start */
    for (uint64_t pos = 0; pos < 2 * MiB; pos += 128 * KiB) {
        fs_readahead_on_read(&ra, pos, 128 * KiB, file, &off, &len);
        if (len)
            asked_to = off + len;
    }
    assert_true(asked_to <= 2 * MiB + 2 * MiB + 2 * MiB);   /* read + run + start */
    assert_true(asked_to > 2 * MiB);
}

static void test_random_read_asks_nothing_more(void **state)
{
    (void)state;
    struct fs_readahead ra;
    uint64_t off, len;
    fs_readahead_init(&ra, 4, 64 * KiB);
    fs_readahead_on_read(&ra, 100 * MiB, 4 * KiB, 1024 * MiB, &off, &len);
    assert_int_equal(len, 0);
    fs_readahead_on_read(&ra, 10 * MiB, 4 * KiB, 1024 * MiB, &off, &len);
    assert_int_equal(len, 0);
    /* ...reading on from there is a new run: its length plus the start */
    fs_readahead_on_read(&ra, 10 * MiB + 4 * KiB, 4 * KiB, 1024 * MiB, &off, &len);
    assert_int_equal(off, 10 * MiB + 8 * KiB);
    assert_int_equal(len, 8 * KiB + 256 * KiB);
}

static void test_out_of_order_kernel_reads_stay_sequential(void **state)
{
    (void)state;
    struct fs_readahead ra;
    uint64_t off, len;
    fs_readahead_init(&ra, 1, MiB);
    fs_readahead_on_read(&ra, 0, MiB, 100 * MiB, &off, &len);
    fs_readahead_on_read(&ra, 2 * MiB, MiB, 100 * MiB, &off, &len);
    fs_readahead_on_read(&ra, MiB, MiB, 100 * MiB, &off, &len);   /* late, still sequential */
    assert_int_equal(ra.next_off, 3 * MiB);
    assert_int_equal(ra.run_start, 0);
    assert_true(ra.wanted_end >= 3 * MiB + 3 * MiB);   /* the run (3 MiB) ahead */
}

static void test_window_stops_at_end_of_file(void **state)
{
    (void)state;
    struct fs_readahead ra;
    uint64_t off, len;
    fs_readahead_init(&ra, 16, MiB);
    fs_readahead_on_read(&ra, 0, MiB, 3 * MiB + 5, &off, &len);
    assert_int_equal(off, MiB);
    assert_int_equal(len, 2 * MiB + 5);
    fs_readahead_on_read(&ra, MiB, MiB, 3 * MiB + 5, &off, &len);
    assert_int_equal(len, 0);
}

static void test_zero_turns_readahead_off(void **state)
{
    (void)state;
    struct fs_readahead ra;
    uint64_t off, len;
    fs_readahead_init(&ra, 0, MiB);
    for (uint64_t pos = 0; pos < 10 * MiB; pos += MiB) {
        fs_readahead_on_read(&ra, pos, MiB, 100 * MiB, &off, &len);
        assert_int_equal(len, 0);
    }
}

static void test_huge_blocks_cap_at_first_window(void **state)
{
    (void)state;
    struct fs_readahead ra;
    fs_readahead_init(&ra, 8, 64 * MiB);
    assert_int_equal(ra.cap, 512 * MiB);
    fs_readahead_init(&ra, UINT64_MAX, UINT64_MAX);   /* no overflow */
    assert_true(ra.start > 0);
    uint64_t off, len;
    fs_readahead_on_read(&ra, 0, MiB, UINT64_MAX / 4, &off, &len);
    assert_true(off + len >= off);                     /* nor when reading */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_follows_the_run),
        cmocka_unit_test(test_short_run_asks_little),
        cmocka_unit_test(test_random_read_asks_nothing_more),
        cmocka_unit_test(test_out_of_order_kernel_reads_stay_sequential),
        cmocka_unit_test(test_window_stops_at_end_of_file),
        cmocka_unit_test(test_zero_turns_readahead_off),
        cmocka_unit_test(test_huge_blocks_cap_at_first_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
