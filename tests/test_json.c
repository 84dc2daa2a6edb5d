/* Unit tests for net/cli/json.c: escaping (quotes, backslashes, control
 * characters, invalid UTF-8), commas and nesting. Output goes to a memory
 * stream and is compared byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/cli/json.h"

struct mem {
    char *buf;
    size_t len;
    FILE *f;
};

static void mem_open(struct mem *m)
{
    m->buf = NULL;
    m->f = open_memstream(&m->buf, &m->len);
    assert_non_null(m->f);
}

/* A writer on a fresh memory stream, with its top object opened. */
static void mem_object(struct mem *m, struct json_writer *j)
{
    mem_open(m);
    json_begin(j, m->f);
    json_object_begin(j, NULL);
}

/* Closes the stream; the text written, to free. */
static char *mem_close(struct mem *m)
{
    assert_int_equal(fclose(m->f), 0);
    return m->buf;
}

static void assert_quoted(const char *in, const char *want)
{
    struct mem m;
    mem_open(&m);
    json_write_quoted(m.f, in);
    char *got = mem_close(&m);
    assert_string_equal(got, want);
    free(got);
}

static void test_plain_and_escaped(void **state)
{
    (void)state;
    assert_quoted("", "\"\"");
    assert_quoted("movie.mkv", "\"movie.mkv\"");
    assert_quoted("a\"b\\c/d", "\"a\\\"b\\\\c/d\"");
    assert_quoted("\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\"");
    assert_quoted("\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\"");
}

static void test_utf8(void **state)
{
    (void)state;
    assert_quoted("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    assert_quoted("a\xff" "b", "\"a\\ufffdb\"");                 /* never valid */
    assert_quoted("\xc3", "\"\\ufffd\"");                        /* cut short by the end */
    assert_quoted("\xc3(", "\"\\ufffd(\"");                      /* bad continuation */
    assert_quoted("\xc0\xaf", "\"\\ufffd\\ufffd\"");             /* overlong '/' */
    assert_quoted("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"");  /* overlong, 3 bytes */
    assert_quoted("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");  /* a surrogate */
    assert_quoted("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* > U+10FFFF */
    assert_quoted("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"");   /* U+10FFFF itself */
}

static void test_object_with_array(void **state)
{
    (void)state;
    struct mem m;
    struct json_writer j;
    mem_object(&m, &j);
    json_string(&j, "name", "x\"y");
    json_u64(&j, "size", UINT64_MAX);
    json_string(&j, "none", NULL);
    json_array_begin(&j, "blocks");
    json_string(&j, NULL, "aa");
    json_string(&j, NULL, "bb");
    json_array_end(&j);
    json_array_begin(&j, "empty");
    json_array_end(&j);
    json_object_begin(&j, "inner");
    json_u64(&j, "n", 0);
    json_object_end(&j);
    json_object_end(&j);
    assert_int_equal(json_end(&j), 0);
    char *got = mem_close(&m);
    assert_string_equal(got, "{\"name\":\"x\\\"y\",\"size\":18446744073709551615,\"none\":null,"
                             "\"blocks\":[\"aa\",\"bb\"],\"empty\":[],\"inner\":{\"n\":0}}\n");
    free(got);
}

static void test_misused_nesting_fails(void **state)
{
    (void)state;
    struct mem m;
    struct json_writer j;
    mem_object(&m, &j);
    assert_int_equal(json_end(&j), -1);           /* left open */
    json_begin(&j, m.f);
    json_object_end(&j);
    assert_int_equal(json_end(&j), -1);           /* closed too often */
    json_begin(&j, m.f);
    for (int i = 0; i <= JSON_MAX_DEPTH; i++)
        json_array_begin(&j, NULL);
    assert_int_equal(json_end(&j), -1);           /* too deep */
    free(mem_close(&m));
}

static void test_write_error_fails(void **state)
{
    (void)state;
    FILE *full = fopen("/dev/full", "w");
    if (!full)
        skip();
    struct json_writer j;
    json_begin(&j, full);
    json_object_begin(&j, NULL);
    json_u64(&j, "n", 1);
    json_object_end(&j);
    assert_int_equal(json_end(&j), -1);
    fclose(full);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_and_escaped),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_object_with_array),
        cmocka_unit_test(test_misused_nesting_fails),
        cmocka_unit_test(test_write_error_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
