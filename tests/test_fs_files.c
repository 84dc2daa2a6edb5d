/* Unit tests for fs/fs_files.c: which .cascade files a mount shows. Named
 * files must be good; files found in a folder that are bad (malformed, a
 * FIFO, a folder), would show as "." or "..", or clash by name or cascade
 * hash are skipped and the rest are shown. The warnings themselves are
 * checked by it_mount_input.sh. */
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
#include "cascade/log.h"
#include "cascade/util.h"
#include "fs/fs_files.h"
#include "support.h"

/* dir/name holding the bytes s. */
static void put(const char *dir, const char *name, const char *s)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(s, 1, strlen(s), f), strlen(s));
    assert_int_equal(fclose(f), 0);
}

/* dir/name: a good .cascade file of `content` (made from a data file in
 * dir/data, so that it is not itself a *.cascade in dir). */
static void put_cascade(const char *dir, const char *name, const char *content)
{
    char data_dir[256], data[512], out[256], err[CASCADE_ERRLEN];
    snprintf(data_dir, sizeof data_dir, "%s/data", dir);
    mkdir(data_dir, 0755);
    snprintf(data, sizeof data, "%s/%s", data_dir, name);
    put(data_dir, name, content);
    snprintf(out, sizeof out, "%s/%s", dir, name);
    assert_int_equal(cascade_create(data, 4, out, NULL, NULL, err, sizeof err), 0);
}

static char *path_in(const char *dir, const char *name)
{
    static char paths[4][256];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, 256, "%s/%s", dir, name);
    return p;
}

/* Load sources; returns the names shown, space-separated ("" on failure,
 * with the message in err). */
static const char *shown(char *const *sources, size_t n, char *err, size_t errlen)
{
    static char names[1024];
    struct fs_file *files;
    size_t count;
    names[0] = '\0';
    alarm(20);   /* a FIFO must not hang the load */
    int rc = fs_files_load(sources, n, &files, &count, err, errlen);
    alarm(0);
    if (rc != 0)
        return names;
    for (size_t i = 0; i < count; i++) {
        strcat(names, i ? " " : "");
        strcat(names, files[i].meta.name);
    }
    fs_files_free(files, count);
    return names;
}

/* A folder with good files and every kind of bad one: the good are shown. */
static void test_folder_skips_bad_files(void **state)
{
    struct test_tmp *t = *state;
    char err[CASCADE_ERRLEN];
    put_cascade(t->dir, "a.cascade", "first file");
    put_cascade(t->dir, "b.cascade", "first file");       /* same hash as a */
    put_cascade(t->dir, "c.cascade", "another file");
    put_cascade(t->dir, "..cascade", "shows as dot");
    put_cascade(t->dir, "...cascade", "shows as dot dot");
    put(t->dir, "junk.cascade", "not a cascade file");
    assert_int_equal(mkfifo(path_in(t->dir, "fifo.cascade"), 0644), 0);
    assert_int_equal(mkdir(path_in(t->dir, "sub.cascade"), 0755), 0);
    char *src[] = { t->dir };
    assert_string_equal(shown(src, 1, err, sizeof err), "a c");
}

/* A file named on the command line wins a clash with a found one; two
 * named files that clash, or a bad named file, refuse the mount. */
static void test_named_files(void **state)
{
    struct test_tmp *t = *state;
    char err[CASCADE_ERRLEN], other[128];
    snprintf(other, sizeof other, "%s/other", t->dir);
    assert_int_equal(mkdir(other, 0755), 0);
    put_cascade(t->dir, "x.cascade", "the folder's x");
    put_cascade(t->dir, "y.cascade", "y");
    put_cascade(other, "x.cascade", "the named x");
    put_cascade(other, "..cascade", "a dot");
    put(other, "junk.cascade", "junk");
    assert_int_equal(mkfifo(path_in(other, "fifo.cascade"), 0644), 0);

    char *folder_then_named[] = { t->dir, path_in(other, "x.cascade") };
    assert_string_equal(shown(folder_then_named, 2, err, sizeof err), "x y");
    struct fs_file *files;
    size_t n;
    assert_int_equal(fs_files_load(folder_then_named, 2, &files, &n, err, sizeof err), 0);
    assert_string_equal(files[0].cascade_path, path_in(other, "x.cascade"));
    fs_files_free(files, n);

    char *twice[] = { path_in(t->dir, "x.cascade"), path_in(other, "x.cascade") };
    assert_string_equal(shown(twice, 2, err, sizeof err), "");
    assert_non_null(strstr(err, "would both show as 'x'"));
    char *same[] = { path_in(t->dir, "y.cascade"), path_in(t->dir, "y.cascade") };
    assert_string_equal(shown(same, 2, err, sizeof err), "");
    assert_non_null(strstr(err, "describe the same file"));
    char *dot[] = { path_in(other, "..cascade") };
    assert_string_equal(shown(dot, 1, err, sizeof err), "");
    assert_non_null(strstr(err, "would show as '.', which cannot be a file name"));
    char *junk[] = { path_in(other, "junk.cascade") };
    assert_string_equal(shown(junk, 1, err, sizeof err), "");
    assert_non_null(strstr(err, "junk.cascade: truncated header"));
    char *fifo[] = { path_in(other, "fifo.cascade") };
    assert_string_equal(shown(fifo, 1, err, sizeof err), "");
    assert_non_null(strstr(err, "is a FIFO, not a regular file"));
}

/* A folder with nothing to show is refused, saying why. */
static void test_folder_without_good_files(void **state)
{
    struct test_tmp *t = *state;
    char err[CASCADE_ERRLEN];
    char *src[] = { t->dir };
    assert_string_equal(shown(src, 1, err, sizeof err), "");
    assert_non_null(strstr(err, "holds no .cascade files"));
    put(t->dir, "junk.cascade", "junk");
    assert_int_equal(mkfifo(path_in(t->dir, "fifo.cascade"), 0644), 0);
    assert_string_equal(shown(src, 1, err, sizeof err), "");
    assert_non_null(strstr(err, "none of the 2 .cascade files"));
}

/* Lines of f holding needle. */
static int count_lines(FILE *f, const char *needle)
{
    char line[1024];
    int n = 0;
    rewind(f);
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    return n;
}

/* Thousands of bad files log 50 warnings and one line for the rest. */
static void test_warnings_are_bounded(void **state)
{
    struct test_tmp *t = *state;
    char err[CASCADE_ERRLEN], name[32];
    put_cascade(t->dir, "good.cascade", "the one good file");
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "bad%04d.cascade", i);
        put(t->dir, name, "junk");
    }
    FILE *log = tmpfile();
    assert_non_null(log);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(log), STDERR_FILENO) >= 0);
    char *src[] = { t->dir };
    const char *names = shown(src, 1, err, sizeof err);
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    assert_string_equal(names, "good");
    assert_int_equal(count_lines(log, "warning: "), 51);
    assert_int_equal(count_lines(log, "bad0049.cascade: truncated header"), 1);
    assert_int_equal(count_lines(log, "bad0050.cascade"), 0);
    assert_int_equal(count_lines(log, "1950 more .cascade files skipped"), 1);
    fclose(log);
}

int main(void)
{
    cascade_log_init("test_fs_files", CASCADE_LOG_WARN, false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_folder_skips_bad_files, test_setup_tmp, test_teardown_tmp),
        cmocka_unit_test_setup_teardown(test_named_files, test_setup_tmp, test_teardown_tmp),
        cmocka_unit_test_setup_teardown(test_folder_without_good_files, test_setup_tmp, test_teardown_tmp),
        cmocka_unit_test_setup_teardown(test_warnings_are_bounded, test_setup_tmp, test_teardown_tmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
