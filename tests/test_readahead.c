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

static void test_sequential_window_doubles_to_cap(void **state)
{
    (void)state;
    struct fs_readahead ra;
    uint64_t off, len, file = 1024 * MiB;
    fs_readahead_init(&ra, 4, 64 * KiB);          /* 256 KiB first window */
    fs_readahead_on_read(&ra, 0, 128 * KiB, file, &off, &len);
    assert_int_equal(off, 128 * KiB);
    assert_int_equal(len, 256 * KiB);
    fs_readahead_on_read(&ra, 128 * KiB, 128 * KiB, file, &off, &len);
    /* window now 512 KiB past 256 KiB; 384 KiB of it was asked already */
    assert_int_equal(off, 384 * KiB);
    assert_int_equal(len, 384 * KiB);
    for (uint64_t pos = 256 * KiB; pos < 512 * MiB; pos += MiB)
        fs_readahead_on_read(&ra, pos, MiB, file, &off, &len);
    assert_int_equal(ra.window, FS_RA_MAX_WINDOW);
    assert_true(ra.wanted_end <= ra.next_off + FS_RA_MAX_WINDOW);
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
    assert_int_equal(ra.window, 256 * KiB);
    /* ...but reading on from there is sequential again */
    fs_readahead_on_read(&ra, 10 * MiB + 4 * KiB, 4 * KiB, 1024 * MiB, &off, &len);
    assert_int_equal(off, 10 * MiB + 8 * KiB);
    assert_int_equal(len, 256 * KiB);
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
    assert_true(ra.window > MiB);
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
    assert_true(ra.initial > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequential_window_doubles_to_cap),
        cmocka_unit_test(test_random_read_asks_nothing_more),
        cmocka_unit_test(test_out_of_order_kernel_reads_stay_sequential),
        cmocka_unit_test(test_window_stops_at_end_of_file),
        cmocka_unit_test(test_zero_turns_readahead_off),
        cmocka_unit_test(test_huge_blocks_cap_at_first_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
