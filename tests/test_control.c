/* Unit tests for the control socket (net/control.c) and the JSON reader
 * under it (net/cli/json_read.c): strict parsing and errors, writing a
 * tree back byte for byte, where sockets go and with which modes, one
 * request and one answer per connection, refused requests, the tick, a
 * client of another uid refused (as root), stale sockets, the scan. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cascade/util.h"
#include "net/cli/json.h"
#include "net/cli/json_read.h"
#include "net/control.h"
#include "support.h"

/* ---- the JSON reader ---- */

static void assert_parses(const char *text)
{
    struct json_value v;
    char err[CASCADE_ERRLEN] = "";
    int rc = json_parse(text, strlen(text), &v, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "'%s': %s\n", text, err);
    assert_int_equal(rc, 0);
    json_value_free(&v);
}

static void assert_refused(const char *text, const char *why)
{
    struct json_value v;
    char err[CASCADE_ERRLEN] = "";
    assert_int_equal(json_parse(text, strlen(text), &v, err, sizeof err), -1);
    if (!strstr(err, why))
        fprintf(stderr, "'%s': message '%s', want '%s'\n", text, err, why);
    assert_non_null(strstr(err, why));
    assert_int_equal(v.type, JSON_NULL);
    json_value_free(&v);
}

/* text parsed and written back gives want (the writer's canonical form). */
static void assert_rewrites(const char *text, const char *want)
{
    struct json_value v;
    char err[CASCADE_ERRLEN];
    assert_int_equal(json_parse(text, strlen(text), &v, err, sizeof err), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct json_writer j;
    json_begin(&j, f);
    json_value_write(&j, NULL, &v);
    assert_int_equal(json_end(&j), 0);
    fclose(f);
    size_t want_len = strlen(want);
    assert_int_equal(len, want_len + 1);
    assert_memory_equal(buf, want, want_len);
    free(buf);
    json_value_free(&v);
}

static void test_json_values(void **state)
{
    (void)state;
    struct json_value v;
    char err[CASCADE_ERRLEN];
    const char *text = " {\"a\": [1, -2.5e3, true, false, null, \"x\"], \"n\": 18446744073709551615,"
                       " \"big\": 18446744073709551616, \"e\": {}, \"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\","
                       " \"u\": \"\\u00e9\\u20ac\\ud83d\\ude00\", \"a\": 7 } ";
    assert_int_equal(json_parse(text, strlen(text), &v, err, sizeof err), 0);
    assert_int_equal(v.type, JSON_OBJECT);
    const struct json_value *a = json_member(&v, "a");   /* the first of two */
    assert_non_null(a);
    assert_int_equal(a->type, JSON_ARRAY);
    assert_int_equal(a->n, 6);
    assert_true(a->items[0].is_u64);
    assert_int_equal(a->items[0].u64, 1);
    assert_false(a->items[1].is_u64);
    assert_true(a->items[1].number == -2500.0);
    assert_true(a->items[2].type == JSON_BOOL && a->items[2].boolean);
    assert_true(a->items[3].type == JSON_BOOL && !a->items[3].boolean);
    assert_int_equal(a->items[4].type, JSON_NULL);
    assert_string_equal(a->items[5].text, "x");
    uint64_t n;
    assert_true(json_member_u64(&v, "n", &n));
    assert_true(n == UINT64_MAX);
    assert_false(json_member_u64(&v, "big", &n));        /* does not fit */
    assert_false(json_member_u64(&v, "missing", &n));
    assert_int_equal(json_member(&v, "e")->n, 0);
    assert_string_equal(json_member_string(&v, "s"), "q\"\\/\b\f\n\r\t");
    assert_string_equal(json_member_string(&v, "u"), "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    assert_null(json_member_string(&v, "n"));              /* not a string */
    assert_null(json_member(&a->items[0], "x"));           /* not an object */
    json_value_free(&v);
    assert_parses("0");
    assert_parses("\"\"");
    assert_parses("[[],{}]");
    assert_parses("-0.0e+1");
}

static void test_json_refused(void **state)
{
    (void)state;
    assert_refused("", "expected a value");
    assert_refused("   ", "expected a value");
    assert_refused("[1,]", "expected a value");
    assert_refused("{\"a\":1,}", "expected a key");
    assert_refused("{a:1}", "expected a key");
    assert_refused("{\"a\" 1}", "expected ':'");
    assert_refused("[1 2]", "expected ',' or ']'");
    assert_refused("01", "bad number");
    assert_refused("1.", "bad number");
    assert_refused("-", "bad number");
    assert_refused("1e", "bad number");
    assert_refused("tru", "expected a value");
    assert_refused("\"abc", "closing quote");
    assert_refused("\"a\nb\"", "control character");
    assert_refused("\"\\x\"", "bad escape");
    assert_refused("\"\\u12\"", "four hex digits");
    assert_refused("\"\\u0000\"", "\\u0000");
    assert_refused("\"\\udc00\"", "lone low surrogate");
    assert_refused("\"\\ud800x\"", "high surrogate");
    assert_refused("{} {}", "more after the value");
    assert_refused("[1] x", "more after the value");
    /* Nesting: deep enough is fine, deeper is refused (never a crash). */
    char deep[2 * JSON_READ_MAX_DEPTH + 3];
    memset(deep, '[', JSON_READ_MAX_DEPTH);
    memset(deep + JSON_READ_MAX_DEPTH, ']', JSON_READ_MAX_DEPTH);
    deep[2 * JSON_READ_MAX_DEPTH] = '\0';
    assert_parses(deep);
    char *deeper = malloc(200001);
    memset(deeper, '[', 100000);
    memset(deeper + 100000, ']', 100000);
    deeper[200000] = '\0';
    assert_refused(deeper, "nested too deeply");
    free(deeper);
    /* Bytes after a NUL inside the length are data, and refused here. */
    struct json_value v;
    assert_int_equal(json_parse("{}\0x", 4, &v, NULL, 0), -1);
}

static void test_json_rewrite(void **state)
{
    (void)state;
    assert_rewrites(" { \"a\" : [ 1 , 2.50 , -3e2 ] , \"b\" : { } , \"c\" : null , \"d\" : true } ",
                    "{\"a\":[1,2.50,-3e2],\"b\":{},\"c\":null,\"d\":true}");
    assert_rewrites("\"\\u0041\\n\"", "\"A\\n\"");
    assert_rewrites("18446744073709551616", "18446744073709551616");   /* exact, as read */
}

/* ---- the control socket ---- */

struct ctl_fixture {
    char dir[64];
    char *saved_runtime;
    int ticks;
    int answers;
};

static void answer_fn(void *ctx, const char *query, const struct json_value *req,
                      struct json_writer *j)
{
    struct ctl_fixture *f = ctx;
    __atomic_add_fetch(&f->answers, 1, __ATOMIC_RELAXED);
    json_object_begin(j, NULL);
    if (!strcmp(query, "echo")) {
        json_string(j, "query", query);
        const struct json_value *x = json_member(req, "x");
        if (x)
            json_value_write(j, "x", x);
    } else {
        json_string(j, "error", "unknown query");
    }
    json_object_end(j);
}

static void tick_fn(void *ctx, uint64_t now_ms)
{
    (void)now_ms;
    __atomic_add_fetch(&((struct ctl_fixture *)ctx)->ticks, 1, __ATOMIC_RELAXED);
}

static int ctl_setup(void **state)
{
    struct ctl_fixture *f = calloc(1, sizeof *f);
    if (!f || test_make_tmpdir(f->dir, sizeof f->dir, "test_control") != 0)
        return -1;
    const char *old = getenv("XDG_RUNTIME_DIR");
    f->saved_runtime = old ? strdup(old) : NULL;
    setenv("XDG_RUNTIME_DIR", f->dir, 1);
    *state = f;
    return 0;
}

static int ctl_teardown(void **state)
{
    struct ctl_fixture *f = *state;
    if (f->saved_runtime)
        setenv("XDG_RUNTIME_DIR", f->saved_runtime, 1);
    else
        unsetenv("XDG_RUNTIME_DIR");
    free(f->saved_runtime);
    test_remove_tree(f->dir);
    free(f);
    return 0;
}

static struct control_server *start_server(struct ctl_fixture *f)
{
    struct control_config cfg = {.answer = answer_fn, .tick = tick_fn, .ctx = f};
    struct control_server *s;
    char err[CASCADE_ERRLEN];
    int rc = control_server_start(&cfg, &s, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "control_server_start: %s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

/* The answer to request, asserted to come. */
static char *ask(const char *path, const char *request)
{
    char *answer, err[CASCADE_ERRLEN];
    int rc = control_query(path, request, 5000, &answer, err, sizeof err);
    if (rc != CONTROL_OK)
        fprintf(stderr, "control_query: %s\n", err);
    assert_int_equal(rc, CONTROL_OK);
    return answer;
}

static void assert_answer(const char *path, const char *request, const char *want)
{
    char *got = ask(path, request);
    assert_string_equal(got, want);
    free(got);
}

static void test_where_and_modes(void **state)
{
    struct ctl_fixture *f = *state;
    struct control_server *s = start_server(f);
    char want[256];
    snprintf(want, sizeof want, "%s/cascade/%ld.sock", f->dir, (long)getpid());
    assert_string_equal(control_server_path(s), want);
    struct stat sb;
    assert_int_equal(lstat(want, &sb), 0);
    assert_true(S_ISSOCK(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0600);
    snprintf(want, sizeof want, "%s/cascade", f->dir);
    assert_int_equal(lstat(want, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    char path[256];
    snprintf(path, sizeof path, "%s", control_server_path(s));
    control_server_stop(s);
    assert_int_equal(lstat(path, &sb), -1);   /* removed at stop */
    assert_int_equal(errno, ENOENT);

    /* Without XDG_RUNTIME_DIR: the cache root's run folder. */
    unsetenv("XDG_RUNTIME_DIR");
    char cache[96], dirs[CONTROL_DIRS_MAX][PATH_MAX];
    snprintf(cache, sizeof cache, "%s/cache", f->dir);
    assert_int_equal(control_dirs(cache, dirs), 1);
    snprintf(want, sizeof want, "%s/run", cache);
    assert_string_equal(dirs[0], want);
    struct control_config cfg = {.cache_root = cache, .answer = answer_fn, .ctx = f};
    char err[CASCADE_ERRLEN];
    assert_int_equal(control_server_start(&cfg, &s, err, sizeof err), 0);
    snprintf(want, sizeof want, "%s/run/%ld.sock", cache, (long)getpid());
    assert_string_equal(control_server_path(s), want);
    assert_answer(want, "{\"query\":\"echo\"}", "{\"query\":\"echo\"}");
    control_server_stop(s);

    /* A folder path too long for a unix socket: a clear error. */
    char longdir[PATH_MAX];
    snprintf(longdir, sizeof longdir, "%s/%0120d", f->dir, 0);
    setenv("XDG_RUNTIME_DIR", longdir, 1);
    assert_int_equal(mkdir(longdir, 0700), 0);
    assert_int_equal(control_server_start(&cfg, &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "too long"));
    assert_null(s);
    setenv("XDG_RUNTIME_DIR", f->dir, 1);
}

static void test_requests(void **state)
{
    struct ctl_fixture *f = *state;
    struct control_server *s = start_server(f);
    const char *path = control_server_path(s);
    assert_answer(path, "{\"query\":\"echo\",\"x\":[1,\"\\u00e9\"]}",
                  "{\"query\":\"echo\",\"x\":[1,\"\xc3\xa9\"]}");
    assert_answer(path, "{\"query\":\"nope\"}", "{\"error\":\"unknown query\"}");
    int answered = __atomic_load_n(&f->answers, __ATOMIC_RELAXED);
    /* Refused before the answer function sees them. */
    char *got = ask(path, "{\"query\":");
    assert_non_null(strstr(got, "{\"error\":\"bad request: bad JSON at byte 9"));
    free(got);
    got = ask(path, "[\"status\"]");
    assert_non_null(strstr(got, "\"query\\\" string"));
    free(got);
    got = ask(path, "{\"query\":1}");
    assert_non_null(strstr(got, "{\"error\":\"bad request"));
    free(got);
    char *huge = malloc(CONTROL_REQUEST_MAX + 100);
    memset(huge, ' ', CONTROL_REQUEST_MAX + 99);
    huge[CONTROL_REQUEST_MAX + 99] = '\0';
    got = ask(path, huge);
    assert_non_null(strstr(got, "more than"));
    free(got);
    free(huge);
    assert_int_equal(__atomic_load_n(&f->answers, __ATOMIC_RELAXED), answered);
    /* Many in a row, each on its own connection. */
    for (int i = 0; i < 50; i++)
        assert_answer(path, "{\"query\":\"echo\"}", "{\"query\":\"echo\"}");
    control_server_stop(s);
    assert_true(__atomic_load_n(&f->ticks, __ATOMIC_RELAXED) >= 1);   /* one at start */
}

/* A client that sends nothing holds the server no longer than its
 * timeout; others are answered after it. */
static void test_silent_client(void **state)
{
    struct ctl_fixture *f = *state;
    struct control_server *s = start_server(f);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", control_server_path(s));
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    uint64_t t0 = cascade_now_ms();
    assert_answer(sa.sun_path, "{\"query\":\"echo\"}", "{\"query\":\"echo\"}");
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);   /* the silent one: an error answer, then EOF */
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "timed out"));
    assert_true(cascade_now_ms() - t0 < 60000);   /* (a guard, not a measure) */
    close(fd);
    control_server_stop(s);
}

/* A client of another uid is closed on without an answer (as root only:
 * it takes setuid; the folder and socket are opened up for the test). */
static void test_other_uid_refused(void **state)
{
    struct ctl_fixture *f = *state;
    if (geteuid() != 0) {
        fprintf(stderr, "(not root: other-uid check skipped)\n");
        return;
    }
    struct control_server *s = start_server(f);
    char dir[128];
    snprintf(dir, sizeof dir, "%s/cascade", f->dir);
    assert_int_equal(chmod(f->dir, 0755), 0);
    assert_int_equal(chmod(dir, 0755), 0);
    assert_int_equal(chmod(control_server_path(s), 0666), 0);
    int answers = __atomic_load_n(&f->answers, __ATOMIC_RELAXED);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(3);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", control_server_path(s));
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
            _exit(4);
        const char req[] = "{\"query\":\"echo\"}\n";
        if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) < 0) {}   /* it may be closed already */
        char buf[64];
        ssize_t n = read(fd, buf, sizeof buf);   /* closed on: EOF (or a reset) */
        _exit(n <= 0 ? 0 : 5);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(__atomic_load_n(&f->answers, __ATOMIC_RELAXED), answers);
    control_server_stop(s);
}

/* A socket nobody listens on (a killed process's): CONTROL_STALE, then
 * removed; the scan lists sockets by pid, each pid once. */
static void test_stale_and_scan(void **state)
{
    struct ctl_fixture *f = *state;
    char a[96], b[96], junk[256];
    snprintf(a, sizeof a, "%s/a", f->dir);
    snprintf(b, sizeof b, "%s/b", f->dir);
    assert_int_equal(mkdir(a, 0700), 0);
    assert_int_equal(mkdir(b, 0700), 0);
    const char *names[][2] = {{a, "300.sock"}, {a, "7.sock"}, {b, "7.sock"}, {b, "42.sock"}};
    char stale[256];
    for (size_t i = 0; i < 4; i++) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s/%s", names[i][0], names[i][1]);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        close(fd);   /* bound, never listened: as after a kill -9 */
        snprintf(stale, sizeof stale, "%s", sa.sun_path);
    }
    snprintf(junk, sizeof junk, "%s/x.sock", a);
    fclose(fopen(junk, "w"));
    snprintf(junk, sizeof junk, "%s/012.sock", a);
    fclose(fopen(junk, "w"));
    char dirs[3][PATH_MAX];
    snprintf(dirs[0], PATH_MAX, "%s", a);
    snprintf(dirs[1], PATH_MAX, "%s", b);
    snprintf(dirs[2], PATH_MAX, "%s/missing", f->dir);
    char **paths;
    size_t n;
    assert_int_equal(control_scan(dirs, 3, &paths, &n), 0);
    assert_int_equal(n, 3);
    char want[256];
    snprintf(want, sizeof want, "%s/7.sock", a);   /* the first folder's */
    assert_string_equal(paths[0], want);
    snprintf(want, sizeof want, "%s/42.sock", b);
    assert_string_equal(paths[1], want);
    snprintf(want, sizeof want, "%s/300.sock", a);
    assert_string_equal(paths[2], want);
    control_scan_free(paths, n);

    char *answer = NULL, err[CASCADE_ERRLEN];
    assert_int_equal(control_query(stale, "{\"query\":\"echo\"}", 2000, &answer, err,
                                   sizeof err), CONTROL_STALE);
    assert_null(answer);
    assert_int_equal(control_remove_stale(stale), 0);
    struct stat sb;
    assert_int_equal(lstat(stale, &sb), -1);
    assert_int_equal(control_query(stale, "{}", 2000, &answer, err, sizeof err), CONTROL_STALE);
    /* Only sockets named like ours are ever removed. */
    snprintf(junk, sizeof junk, "%s/x.sock", a);
    assert_int_equal(control_remove_stale(junk), -1);
    assert_int_equal(lstat(junk, &sb), 0);
    snprintf(junk, sizeof junk, "%s/9.sock", a);
    fclose(fopen(junk, "w"));
    assert_int_equal(control_remove_stale(junk), -1);   /* a file, not a socket */
    assert_int_equal(lstat(junk, &sb), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_values),
        cmocka_unit_test(test_json_refused),
        cmocka_unit_test(test_json_rewrite),
        cmocka_unit_test_setup_teardown(test_where_and_modes, ctl_setup, ctl_teardown),
        cmocka_unit_test_setup_teardown(test_requests, ctl_setup, ctl_teardown),
        cmocka_unit_test_setup_teardown(test_silent_client, ctl_setup, ctl_teardown),
        cmocka_unit_test_setup_teardown(test_other_uid_refused, ctl_setup, ctl_teardown),
        cmocka_unit_test_setup_teardown(test_stale_and_scan, ctl_setup, ctl_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
