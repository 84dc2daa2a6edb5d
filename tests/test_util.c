/* Unit tests for cascade/util.c: hex, size parsing, big-endian helpers,
 * checked arithmetic, human-readable sizes and the error buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cascade/util.h"
#include "support.h"

static void test_hex_round_trip(void **state)
{
    (void)state;
    uint8_t bin[256], back[256];
    char hex[2 * sizeof bin + 1];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (uint8_t)i;
    cascade_hex(bin, sizeof bin, hex);
    assert_int_equal(strlen(hex), 2 * sizeof bin);
    assert_memory_equal(hex, "000102", 6);
    assert_string_equal(hex + 2 * 250, "fafbfcfdfeff");
    assert_int_equal(cascade_unhex(hex, back, sizeof back), 0);
    assert_memory_equal(bin, back, sizeof bin);
}

static void test_unhex_rejects(void **state)
{
    (void)state;
    uint8_t out[2];
    assert_int_equal(cascade_unhex("ABcd", out, 2), 0);
    assert_int_equal(out[0], 0xab);
    assert_int_equal(out[1], 0xcd);
    assert_int_equal(cascade_unhex("abc", out, 2), -1);    /* too short */
    assert_int_equal(cascade_unhex("abcde", out, 2), -1);  /* too long */
    assert_int_equal(cascade_unhex("abgd", out, 2), -1);   /* not hex */
    assert_int_equal(cascade_unhex("ab d", out, 2), -1);
    assert_int_equal(cascade_unhex("", out, 0), 0);
}

static void test_parse_size(void **state)
{
    (void)state;
    static const struct { const char *s; uint64_t v; } good[] = {
        {"0", 0}, {"1", 1}, {"1000", 1000}, {"1k", 1024}, {"1K", 1024},
        {"4KiB", 4096}, {"4kib", 4096}, {"1M", 1048576}, {"3MiB", 3u << 20},
        {"2G", 2ull << 30}, {"1gib", 1ull << 30},
        {"18446744073709551615", UINT64_MAX},
        {"17179869183G", 17179869183ull << 30},   /* largest that fits */
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t v = 12345;
        assert_int_equal(cascade_parse_size(good[i].s, &v), 0);
        assert_true(v == good[i].v);
    }
    static const char *bad[] = {
        "", "-1", "+1", " 1", "1 ", "k", "1x", "1KB", "1.5M", "0x10",
        "18446744073709551616",      /* 2^64 */
        "99999999999999999999999",
        "17179869184G",              /* 2^64 after the shift */
        "18014398509481984K",        /* 2^54 KiB = 2^64 */
        "1T",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 777;
        assert_int_equal(cascade_parse_size(bad[i], &v), -1);
        assert_true(v == 777);   /* untouched on failure */
    }
    uint64_t v;
    assert_int_equal(cascade_parse_size(NULL, &v), -1);
}

static void test_be_helpers(void **state)
{
    (void)state;
    uint8_t b[8];
    cascade_put_be16(b, 0x1234);
    assert_memory_equal(b, "\x12\x34", 2);
    assert_int_equal(cascade_get_be16(b), 0x1234);
    cascade_put_be32(b, 0xdeadbeef);
    assert_memory_equal(b, "\xde\xad\xbe\xef", 4);
    assert_true(cascade_get_be32(b) == 0xdeadbeefu);
    cascade_put_be64(b, 0x0102030405060708ull);
    assert_memory_equal(b, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    assert_true(cascade_get_be64(b) == 0x0102030405060708ull);
    cascade_put_be64(b, UINT64_MAX);
    assert_true(cascade_get_be64(b) == UINT64_MAX);
    cascade_put_be16(b, 0xff00);
    assert_int_equal(cascade_get_be16(b), 0xff00);
}

static void test_checked_arithmetic(void **state)
{
    (void)state;
    uint64_t r;
    assert_false(cascade_add_overflows(UINT64_MAX - 1, 1, &r));
    assert_true(r == UINT64_MAX);
    assert_true(cascade_add_overflows(UINT64_MAX, 1, &r));
    assert_false(cascade_mul_overflows(1ull << 58, 32, &r));
    assert_true(r == 1ull << 63);
    assert_true(cascade_mul_overflows(1ull << 59, 32, &r));
    assert_true(cascade_mul_overflows(UINT64_MAX, 32, &r));
}

static void test_human_bytes(void **state)
{
    (void)state;
    char out[32];
    cascade_human_bytes(0, out, sizeof out);
    assert_string_equal(out, "0 B");
    cascade_human_bytes(1023, out, sizeof out);
    assert_string_equal(out, "1023 B");
    cascade_human_bytes(1024, out, sizeof out);
    assert_string_equal(out, "1.0 KiB");
    cascade_human_bytes(1536, out, sizeof out);
    assert_string_equal(out, "1.5 KiB");
    cascade_human_bytes(5458199, out, sizeof out);
    assert_string_equal(out, "5.2 MiB");
    cascade_human_bytes(3ull << 30, out, sizeof out);
    assert_string_equal(out, "3.0 GiB");
    cascade_human_bytes(UINT64_MAX, out, sizeof out);   /* biggest unit, no crash */
    assert_non_null(strstr(out, "TiB"));
    char tiny[4];
    cascade_human_bytes(123456, tiny, sizeof tiny);     /* truncates, stays terminated */
    assert_true(strlen(tiny) < sizeof tiny);
}

static void test_errf(void **state)
{
    (void)state;
    char err[8];
    cascade_errf(err, sizeof err, "value %d too long", 42);
    assert_string_equal(err, "value 4");
    cascade_errf(NULL, 0, "ignored %d", 1);     /* no buffer: no crash */
}

/* Full positional reads and writes on a real file; a read past the end is
 * ENODATA, not silently short. */
static void test_pread_pwrite_full(void **state)
{
    (void)state;
    char path[] = "/tmp/cascade-test-util-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    uint8_t out[100000], in[100000];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (uint8_t)(i * 7);
    assert_int_equal(cascade_pwrite_full(fd, out, sizeof out, 5000), 0);
    assert_int_equal(cascade_pread_full(fd, in, sizeof in, 5000), 0);
    assert_memory_equal(in, out, sizeof out);
    memset(in, 0xee, sizeof in);
    errno = 0;
    assert_int_equal(cascade_pread_full(fd, in, 10, 5000 + sizeof out - 5), -1);
    assert_int_equal(errno, ENODATA);
    close(fd);
    errno = 0;
    assert_int_equal(cascade_pwrite_full(fd, out, 1, 0), -1);
    assert_int_equal(errno, EBADF);
}

/* A regular file opens in blocking mode with its status; a FIFO with no
 * writer and a folder are refused at once, saying what they are. */
static void test_open_regular(void **state)
{
    struct test_tmp *t = *state;
    char path[128], err[CASCADE_ERRLEN], want[CASCADE_ERRLEN + 128];
    struct stat st;
    snprintf(path, sizeof path, "%s/file", t->dir);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abc", 3), 3);
    close(fd);
    fd = cascade_open_regular(path, O_RDONLY, 0, &st, err, sizeof err);
    assert_true(fd >= 0);
    assert_int_equal(st.st_size, 3);
    int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
    assert_int_equal(fl & O_NONBLOCK, 0);
    assert_true(fdfl & FD_CLOEXEC);
    close(fd);

    snprintf(path, sizeof path, "%s/fifo", t->dir);
    assert_int_equal(mkfifo(path, 0644), 0);
    alarm(20);   /* a hang in open() fails the test */
    assert_int_equal(cascade_open_regular(path, O_RDONLY, 0, NULL, err, sizeof err), -1);
    alarm(0);
    snprintf(want, sizeof want, "%s is a FIFO, not a regular file", path);
    assert_string_equal(err, want);
    assert_int_equal(cascade_open_regular(t->dir, O_RDONLY, 0, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "is a directory, not a regular file"));
    snprintf(path, sizeof path, "%s/absent", t->dir);
    assert_int_equal(cascade_open_regular(path, O_RDONLY, 0, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_round_trip),
        cmocka_unit_test(test_unhex_rejects),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_be_helpers),
        cmocka_unit_test(test_checked_arithmetic),
        cmocka_unit_test(test_human_bytes),
        cmocka_unit_test(test_errf),
        cmocka_unit_test(test_pread_pwrite_full),
        cmocka_unit_test_setup_teardown(test_open_regular, test_setup_tmp, test_teardown_tmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
