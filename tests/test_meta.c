/* Unit tests for cascade/meta.c: every vector in tests/vectors/MANIFEST and
 * tests/vectors/course/MANIFEST (read at run time), each bad-* vector refused
 * with its own error, and synthetic headers built in memory: overflow near
 * 2^64, lying headers on tiny files, block lengths, names, fuzzing. */
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
#include <unistd.h>

#include <cmocka.h>

#include "cascade/meta.h"
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
    assert_non_null(f);
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

/* A 64-byte header with the given fields (target hash all 0xab). */
static void make_header(uint8_t *hdr, uint64_t size, uint64_t block_size)
{
    memset(hdr, 0, CASCADE_HEADER_LEN);
    memcpy(hdr, CASCADE_MAGIC, CASCADE_MAGIC_LEN);
    cascade_put_be64(hdr + 16, size);
    cascade_put_be64(hdr + 24, block_size);
    memset(hdr + 32, 0xab, CASCADE_HASH_LEN);
}

/* Which error each bad vector must get; a new bad-* vector must be added here. */
static const struct { const char *name; int code; } bad_vectors[] = {
    {"bad-magic.cascade", CASCADE_META_EMAGIC},
    {"bad-truncated-header.cascade", CASCADE_META_ETRUNCATED},
    {"bad-missing-hash.cascade", CASCADE_META_EMISSING},
    {"bad-extra-bytes.cascade", CASCADE_META_EEXTRA},
    {"bad-partial-hash.cascade", CASCADE_META_EPARTIAL},
    {"bad-zero-blocksize.cascade", CASCADE_META_EBLOCKSIZE},
    {"bad-huge-size.cascade", CASCADE_META_EOVERFLOW},
    {"bad-empty-file.cascade", CASCADE_META_ETRUNCATED},
};

static int expected_bad_code(const char *name)
{
    for (size_t i = 0; i < sizeof bad_vectors / sizeof bad_vectors[0]; i++)
        if (!strcmp(name, bad_vectors[i].name))
            return bad_vectors[i].code;
    fail_msg("bad vector %s has no expected error in test_meta.c", name);
    return 0;
}

/* ---- MANIFEST vectors --------------------------------------------------- */

struct manifest_entry {
    char name[128];
    bool bad;
    unsigned long long size, block_size, blocks;
    char cascade_hash[CASCADE_HEX_LEN], target_hash[CASCADE_HEX_LEN];
};

/* "NAME size=.. blocksize=.. blocks=.. cascadehash=.. targethash=.." or
 * "NAME must-be-rejected". */
static bool parse_manifest_line(const char *line, struct manifest_entry *e)
{
    memset(e, 0, sizeof *e);
    if (sscanf(line, "%127s size=%llu blocksize=%llu blocks=%llu cascadehash=%64s targethash=%64s",
               e->name, &e->size, &e->block_size, &e->blocks, e->cascade_hash,
               e->target_hash) == 6)
        return true;
    char word[64];
    if (sscanf(line, "%127s %63s", e->name, word) == 2 && !strcmp(word, "must-be-rejected")) {
        e->bad = true;
        return true;
    }
    return false;
}

static void check_good(const char *path, const struct manifest_entry *e)
{
    struct cascade_meta m;
    char err[CASCADE_ERRLEN] = "";
    int rc = cascade_meta_load(path, &m, err, sizeof err);
    if (rc != CASCADE_META_OK)
        fail_msg("%s: %s", path, err);
    assert_true(m.size == e->size);
    assert_true(m.block_size == e->block_size);
    assert_true(m.block_count == e->blocks);
    char hex[CASCADE_HEX_LEN];
    cascade_hex(m.cascade_hash, CASCADE_HASH_LEN, hex);
    assert_string_equal(hex, e->cascade_hash);
    cascade_hex(m.target_hash, CASCADE_HASH_LEN, hex);
    assert_string_equal(hex, e->target_hash);
    /* name: the vector's file name minus ".cascade" */
    assert_non_null(m.name);
    assert_int_equal(strlen(m.name) + strlen(".cascade"), strlen(e->name));
    assert_memory_equal(m.name, e->name, strlen(m.name));

    /* The in-memory parser agrees with the loader. */
    size_t len;
    uint8_t *buf = read_whole(path, &len);
    struct cascade_meta p;
    assert_int_equal(cascade_meta_parse(buf, len, &p, err, sizeof err), CASCADE_META_OK);
    assert_true(p.size == m.size && p.block_size == m.block_size &&
                p.block_count == m.block_count);
    assert_memory_equal(p.cascade_hash, m.cascade_hash, CASCADE_HASH_LEN);
    if (m.block_count)
        assert_memory_equal(p.block_hashes, m.block_hashes, m.block_count * CASCADE_HASH_LEN);
    assert_memory_equal(p.block_hashes, buf + CASCADE_HEADER_LEN, len - CASCADE_HEADER_LEN);
    free(buf);
    cascade_meta_free(&p);
    cascade_meta_free(&m);
}

static void check_bad(const char *path, const char *name)
{
    int want = expected_bad_code(name);
    struct cascade_meta m;
    char err[CASCADE_ERRLEN] = "";
    int rc = cascade_meta_load(path, &m, err, sizeof err);
    if (rc != want)
        fail_msg("%s: got %d (%s), want %d", name, rc, err, want);
    assert_true(strlen(err) > strlen(path) + 2);   /* a message beyond the path */
    assert_null(m.block_hashes);
    assert_null(m.name);

    size_t len;
    uint8_t *buf = read_whole(path, &len);
    err[0] = '\0';
    assert_int_equal(cascade_meta_parse(buf, len, &m, err, sizeof err), want);
    assert_true(strlen(err) > 0);
    free(buf);
}

/* Returns how many vectors it checked. */
static int check_manifest(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("%s: %s", path, strerror(errno));
    char line[1024];
    int count = 0;
    while (fgets(line, sizeof line, f)) {
        struct manifest_entry e;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (!parse_manifest_line(line, &e))
            fail_msg("%s: cannot parse line: %s", path, line);
        snprintf(path, sizeof path, "%s/%s", dir, e.name);
        if (e.bad)
            check_bad(path, e.name);
        else
            check_good(path, &e);
        count++;
    }
    fclose(f);
    return count;
}

static void test_manifest_vectors(void **state)
{
    (void)state;
    assert_int_equal(check_manifest(vectors_dir()), 12);
}

static void test_course_vectors(void **state)
{
    (void)state;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/course", vectors_dir());
    assert_int_equal(check_manifest(dir), 5);
}

/* The messages say what is wrong, with numbers. */
static void test_bad_vector_messages(void **state)
{
    (void)state;
    static const struct { const char *name, *says; } cases[] = {
        {"bad-truncated-header.cascade", "file is 40 bytes, a .cascade header is 64"},
        {"bad-empty-file.cascade", "file is 0 bytes"},
        {"bad-zero-blocksize.cascade", "block size is 0"},
        {"bad-missing-hash.cascade", "holds 15 of 16 block hashes"},
        {"bad-extra-bytes.cascade", "trailing 32 bytes after the 16 block hashes"},
        {"bad-partial-hash.cascade", "partial hash: 25 bytes"},
        {"bad-huge-size.cascade", "18446744073709551615"},
        {"bad-magic.cascade", "CASCADE2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[4096], err[CASCADE_ERRLEN] = "";
        struct cascade_meta m;
        snprintf(path, sizeof path, "%s/%s", vectors_dir(), cases[i].name);
        assert_true(cascade_meta_load(path, &m, err, sizeof err) < 0);
        if (!strstr(err, cases[i].says))
            fail_msg("%s: message '%s' lacks '%s'", cases[i].name, err, cases[i].says);
    }
}

/* ---- synthetic headers -------------------------------------------------- */

static int parse_header_only(uint64_t size, uint64_t block_size, char *err, size_t errlen)
{
    uint8_t hdr[CASCADE_HEADER_LEN];
    struct cascade_meta m;
    make_header(hdr, size, block_size);
    int rc = cascade_meta_parse(hdr, sizeof hdr, &m, err, errlen);
    if (rc == CASCADE_META_OK)
        cascade_meta_free(&m);
    return rc;
}

static void test_overflow_near_2_64(void **state)
{
    (void)state;
    char err[CASCADE_ERRLEN];
    /* n = 2^64 - 1 hashes: n * 32 overflows */
    assert_int_equal(parse_header_only(UINT64_MAX, 1, err, sizeof err), CASCADE_META_EOVERFLOW);
    assert_non_null(strstr(err, "18446744073709551615"));
    assert_non_null(strstr(err, "too large"));
    /* n = 2^58: 64 + 32n is beyond what a file can hold (off_t) */
    assert_int_equal(parse_header_only(UINT64_MAX, 64, err, sizeof err), CASCADE_META_EOVERFLOW);
    assert_non_null(strstr(err, "needs 288230376151711744 hashes"));
    assert_int_equal(parse_header_only(UINT64_MAX - 62, 64, err, sizeof err),
                     CASCADE_META_EOVERFLOW);
    /* n = 2^62: n * 32 overflows */
    assert_int_equal(parse_header_only(1ull << 63, 2, err, sizeof err), CASCADE_META_EOVERFLOW);
    /* n = 2^59 - 2: 32n + 64 = 2^64, the addition overflows */
    assert_int_equal(parse_header_only((1ull << 59) - 2, 1, err, sizeof err),
                     CASCADE_META_EOVERFLOW);
    /* 64 + 32n just above what a file can hold (off_t), then just below */
    assert_int_equal(parse_header_only((1ull << 58) - 1, 1, err, sizeof err),
                     CASCADE_META_EOVERFLOW);
    assert_int_equal(parse_header_only((1ull << 58) - 3, 1, err, sizeof err),
                     CASCADE_META_EMISSING);
    /* huge but representable: the header is fine, the hashes are missing */
    assert_int_equal(parse_header_only(UINT64_MAX / 2, 64, err, sizeof err),
                     CASCADE_META_EMISSING);
    /* size + block size - 1 would overflow, yet n = 1: no overflow for us */
    assert_int_equal(parse_header_only(2, UINT64_MAX, err, sizeof err), CASCADE_META_EMISSING);
    assert_int_equal(parse_header_only(1, UINT64_MAX, err, sizeof err), CASCADE_META_EMISSING);
    assert_non_null(strstr(err, "0 of 1 block hashes"));
}

static void test_each_error_in_memory(void **state)
{
    (void)state;
    char err[CASCADE_ERRLEN];
    struct cascade_meta m;
    uint8_t buf[CASCADE_HEADER_LEN + 3 * CASCADE_HASH_LEN + 1];
    make_header(buf, 100, 40);   /* 3 blocks: 40, 40, 20 */
    memset(buf + CASCADE_HEADER_LEN, 0x11, sizeof buf - CASCADE_HEADER_LEN);
    size_t full = CASCADE_HEADER_LEN + 3 * CASCADE_HASH_LEN;

    assert_int_equal(cascade_meta_parse(buf, full, &m, err, sizeof err), CASCADE_META_OK);
    assert_true(m.block_count == 3);
    assert_true(cascade_meta_block_len(&m, 0) == 40);
    assert_true(cascade_meta_block_len(&m, 2) == 20);
    assert_true(cascade_meta_block_len(&m, 3) == 0);
    assert_true(cascade_meta_block_offset(&m, 2) == 80);
    assert_ptr_equal(cascade_meta_block_hash(&m, 1), m.block_hashes + 32);
    assert_null(m.name);
    cascade_meta_free(&m);

    assert_int_equal(cascade_meta_parse(buf, full + 1, &m, err, sizeof err), CASCADE_META_EEXTRA);
    assert_string_equal(err, "trailing 1 bytes after the 3 block hashes");
    assert_int_equal(cascade_meta_parse(buf, full - 1, &m, err, sizeof err),
                     CASCADE_META_EPARTIAL);
    assert_int_equal(cascade_meta_parse(buf, full - 32, &m, err, sizeof err),
                     CASCADE_META_EMISSING);
    assert_string_equal(err, "hash list holds 2 of 3 block hashes");
    assert_int_equal(cascade_meta_parse(buf, 64, &m, err, sizeof err), CASCADE_META_EMISSING);
    assert_int_equal(cascade_meta_parse(buf, 63, &m, err, sizeof err), CASCADE_META_ETRUNCATED);
    assert_int_equal(cascade_meta_parse(NULL, 0, &m, err, sizeof err), CASCADE_META_ETRUNCATED);
    buf[7] = '2';
    assert_int_equal(cascade_meta_parse(buf, full, &m, err, sizeof err), CASCADE_META_EMAGIC);
    buf[7] = '1';
    cascade_put_be64(buf + 24, 0);
    assert_int_equal(cascade_meta_parse(buf, full, &m, err, sizeof err), CASCADE_META_EBLOCKSIZE);
    /* reserved bytes are ignored */
    cascade_put_be64(buf + 24, 40);
    memset(buf + 8, 0xff, 8);
    assert_int_equal(cascade_meta_parse(buf, full, &m, err, sizeof err), CASCADE_META_OK);
    cascade_meta_free(&m);
    assert_true(strlen(cascade_meta_strerror(CASCADE_META_EPARTIAL)) > 0);
}

static void test_block_len_edges(void **state)
{
    (void)state;
    char err[CASCADE_ERRLEN];
    struct cascade_meta m;
    uint8_t buf[CASCADE_HEADER_LEN + 4 * CASCADE_HASH_LEN] = {0};
    make_header(buf, 4096, 1024);   /* block size divides size: last block full */
    assert_int_equal(cascade_meta_parse(buf, sizeof buf, &m, err, sizeof err), CASCADE_META_OK);
    assert_true(cascade_meta_block_len(&m, 3) == 1024);
    assert_true(cascade_meta_block_len(&m, 4) == 0);
    assert_true(cascade_meta_block_len(&m, UINT64_MAX) == 0);
    cascade_meta_free(&m);
    make_header(buf, 0, 1024);      /* empty data: no blocks, 64-byte file */
    assert_int_equal(cascade_meta_parse(buf, CASCADE_HEADER_LEN, &m, err, sizeof err),
                     CASCADE_META_OK);
    assert_true(m.block_count == 0);
    assert_true(cascade_meta_block_len(&m, 0) == 0);
    cascade_meta_free(&m);
    make_header(buf, 1, UINT64_MAX);   /* a huge block size is one short block */
    assert_int_equal(cascade_meta_parse(buf, CASCADE_HEADER_LEN + 32, &m, err, sizeof err),
                     CASCADE_META_OK);
    assert_true(cascade_meta_block_len(&m, 0) == 1);
    cascade_meta_free(&m);
}

/* ---- loading from disk -------------------------------------------------- */

/* A header claiming 2^40 blocks on a 100-byte file is refused from the
 * header and the real size alone: nothing close to 32 TiB is allocated
 * (under ASan a huge malloc would abort the test). */
static void test_lying_header_small_file(void **state)
{
    struct test_tmp *t = *state;
    char path[128], err[CASCADE_ERRLEN];
    uint8_t buf[100];
    make_header(buf, 1ull << 40, 1);
    memset(buf + CASCADE_HEADER_LEN, 0x5a, sizeof buf - CASCADE_HEADER_LEN);
    snprintf(path, sizeof path, "%s/liar.cascade", t->dir);
    write_whole(path, buf, sizeof buf);
    struct cascade_meta m;
    assert_int_equal(cascade_meta_load(path, &m, err, sizeof err), CASCADE_META_EPARTIAL);
    assert_non_null(strstr(err, "1099511627776"));
    write_whole(path, buf, CASCADE_HEADER_LEN + 32);
    assert_int_equal(cascade_meta_load(path, &m, err, sizeof err), CASCADE_META_EMISSING);
    assert_non_null(strstr(err, "holds 1 of 1099511627776"));
}

static void test_load_names_and_io_errors(void **state)
{
    struct test_tmp *t = *state;
    char src[4096], path[256], err[CASCADE_ERRLEN];
    struct cascade_meta m;
    size_t len;
    snprintf(src, sizeof src, "%s/spec1000.bin.cascade", vectors_dir());
    uint8_t *buf = read_whole(src, &len);

    snprintf(path, sizeof path, "%s/movie.mkv.cascade", t->dir);
    write_whole(path, buf, len);
    assert_int_equal(cascade_meta_load(path, &m, err, sizeof err), CASCADE_META_OK);
    assert_string_equal(m.name, "movie.mkv");
    cascade_meta_free(&m);
    assert_null(m.block_hashes);

    snprintf(path, sizeof path, "%s/metadata", t->dir);   /* no .cascade suffix */
    write_whole(path, buf, len);
    assert_int_equal(cascade_meta_load(path, &m, err, sizeof err), CASCADE_META_OK);
    assert_string_equal(m.name, "metadata.data");
    cascade_meta_free(&m);

    snprintf(path, sizeof path, "%s/.cascade", t->dir);   /* nothing before the suffix */
    write_whole(path, buf, len);
    assert_int_equal(cascade_meta_load(path, &m, err, sizeof err), CASCADE_META_OK);
    assert_string_equal(m.name, ".cascade.data");
    cascade_meta_free(&m);
    free(buf);

    snprintf(path, sizeof path, "%s/absent.cascade", t->dir);
    assert_int_equal(cascade_meta_load(path, &m, err, sizeof err), CASCADE_META_EIO);
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(cascade_meta_load(t->dir, &m, err, sizeof err), CASCADE_META_EIO);
    assert_non_null(strstr(err, "directory"));
}

/* Only regular files are read: a FIFO (no writer: open() would wait
 * forever), a folder and a character device are refused at once with a
 * message naming what they are. alarm() turns a hang into a failure. */
static void expect_refused(const char *path, const char *kind)
{
    char err[CASCADE_ERRLEN], want[CASCADE_ERRLEN + 64];
    struct cascade_meta m;
    alarm(20);
    assert_int_equal(cascade_meta_load(path, &m, err, sizeof err), CASCADE_META_EIO);
    alarm(0);
    snprintf(want, sizeof want, "%s is %s, not a regular file", path, kind);
    assert_string_equal(err, want);
    assert_null(m.block_hashes);
    assert_null(m.name);
}

static void test_load_refuses_special_files(void **state)
{
    struct test_tmp *t = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/x.cascade", t->dir);
    assert_int_equal(mkfifo(path, 0644), 0);
    expect_refused(path, "a FIFO");
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0755), 0);
    expect_refused(path, "a directory");
    if (access("/dev/null", R_OK) == 0)
        expect_refused("/dev/null", "a character device");
}

/* Random damage to a good image: always a clean answer, never a crash. */
static void test_fuzz_parse(void **state)
{
    (void)state;
    char src[4096], err[CASCADE_ERRLEN];
    size_t len;
    snprintf(src, sizeof src, "%s/spec1000.bin.cascade", vectors_dir());
    uint8_t *orig = read_whole(src, &len);
    uint8_t *buf = malloc(len + 64);
    assert_non_null(buf);
    uint64_t x = 88172645463325252ull;
    for (int round = 0; round < 20000; round++) {
        memcpy(buf, orig, len);
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t cut = (size_t)(x % (len + 64));
        for (int k = 0; k < 4; k++) {   /* clobber header bytes 16..31 mostly */
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            buf[(x >> 8) % 40] = (uint8_t)x;
        }
        struct cascade_meta m;
        int rc = cascade_meta_parse(buf, cut, &m, err, sizeof err);
        assert_true(rc <= 0 && rc >= CASCADE_META_ENOMEM);
        if (rc == CASCADE_META_OK) {
            assert_true(CASCADE_HEADER_LEN + m.block_count * CASCADE_HASH_LEN == cut);
            cascade_meta_free(&m);
        }
    }
    free(buf);
    free(orig);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest_vectors),
        cmocka_unit_test(test_course_vectors),
        cmocka_unit_test(test_bad_vector_messages),
        cmocka_unit_test(test_overflow_near_2_64),
        cmocka_unit_test(test_each_error_in_memory),
        cmocka_unit_test(test_block_len_edges),
        cmocka_unit_test_setup_teardown(test_lying_header_small_file, test_setup_tmp, test_teardown_tmp),
        cmocka_unit_test_setup_teardown(test_load_names_and_io_errors, test_setup_tmp, test_teardown_tmp),
        cmocka_unit_test_setup_teardown(test_load_refuses_special_files, test_setup_tmp, test_teardown_tmp),
        cmocka_unit_test(test_fuzz_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
