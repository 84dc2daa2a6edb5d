/* Socket helpers on 127.0.0.1: address parsing, connect errors, full
 * reads/writes across short transfers, deadlines, peer close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "cascade/util.h"
#include "net/sock.h"

static char err[CASCADE_ERRLEN];

static void parse_addresses(void **state)
{
    (void)state;
    struct sockaddr_in a;
    char s[SOCK_ADDRSTRLEN];
    assert_int_equal(sock_parse_addr("127.0.0.1:8888", NULL, 0, &a, err, sizeof err), 0);
    sock_format_addr(&a, s, sizeof s);
    assert_string_equal(s, "127.0.0.1:8888");
    assert_int_equal(sock_parse_addr("127.0.0.2", NULL, 6881, &a, err, sizeof err), 0);
    sock_format_addr(&a, s, sizeof s);
    assert_string_equal(s, "127.0.0.2:6881");
    assert_int_equal(sock_parse_addr(":0", "0.0.0.0", 1, &a, err, sizeof err), 0);
    sock_format_addr(&a, s, sizeof s);
    assert_string_equal(s, "0.0.0.0:0");
    assert_int_equal(sock_parse_addr("localhost:65535", NULL, 0, &a, err, sizeof err), 0);
    assert_int_equal(ntohl(a.sin_addr.s_addr) >> 24, 127);

    const char *bad[] = {"127.0.0.1:65536", "127.0.0.1:", "127.0.0.1:12x", "127.0.0.1:-1",
                         "no-such-host.invalid:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(sock_parse_addr(bad[i], NULL, 1, &a, err, sizeof err), -1);
        assert_true(strlen(err) > 0);
    }
    assert_int_equal(sock_parse_addr(":80", NULL, 1, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "no host"));
}

/* A listening socket on 127.0.0.1 with a free port. */
static int listen_any(struct sockaddr_in *addr)
{
    sock_make_addr(0x7f000001, 0, addr);
    int fd = sock_listen(addr, 16, err, sizeof err);
    assert_true(fd >= 0);
    assert_int_equal(sock_local_addr(fd, addr), 0);
    return fd;
}

static void connect_refused_says_where(void **state)
{
    (void)state;
    struct sockaddr_in addr;
    int l = listen_any(&addr);
    close(l);   /* now nothing listens on that port */
    assert_int_equal(sock_connect(&addr, 2000, err, sizeof err), -1);
    char where[SOCK_ADDRSTRLEN];
    sock_format_addr(&addr, where, sizeof where);
    assert_non_null(strstr(err, where));
    assert_non_null(strstr(err, "refused"));
}

struct writer {
    int fd;
    size_t len;
};

/* Writes len bytes of a pattern in small pieces, to force short reads. */
static void *write_in_pieces(void *arg)
{
    struct writer *w = arg;
    uint8_t buf[7];
    for (size_t off = 0; off < w->len; off += sizeof buf) {
        size_t n = w->len - off < sizeof buf ? w->len - off : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)((off + i) * 31);
        if (send(w->fd, buf, n, MSG_NOSIGNAL) != (ssize_t)n)
            break;
        if (off % 7000 == 0)
            usleep(1000);
    }
    return NULL;
}

static void read_full_across_short_reads(void **state)
{
    (void)state;
    struct sockaddr_in addr;
    int l = listen_any(&addr);
    int c = sock_connect(&addr, 2000, err, sizeof err);
    assert_true(c >= 0);
    int s = accept(l, NULL, NULL);
    struct writer w = {.fd = s, .len = 100000};
    pthread_t t;
    pthread_create(&t, NULL, write_in_pieces, &w);
    uint8_t *buf = malloc(w.len);
    assert_int_equal(sock_read_full(c, buf, w.len, 10000, err, sizeof err), 0);
    for (size_t i = 0; i < w.len; i++)
        assert_int_equal(buf[i], (uint8_t)(i * 31));
    pthread_join(t, NULL);
    free(buf);
    close(s);
    close(c);
    close(l);
}

struct reader {
    int fd;
    uint8_t *buf;
    size_t len;
    int rc;
};

static void *read_all(void *arg)
{
    struct reader *r = arg;
    char e[CASCADE_ERRLEN];
    r->rc = sock_read_full(r->fd, r->buf, r->len, 20000, e, sizeof e);
    return NULL;
}

static void write_full_large_buffer(void **state)
{
    (void)state;
    struct sockaddr_in addr;
    int l = listen_any(&addr);
    int c = sock_connect(&addr, 2000, err, sizeof err);
    int s = accept(l, NULL, NULL);
    size_t len = 8 << 20;   /* far more than the socket buffers: many short writes */
    uint8_t *out = malloc(len), *in = malloc(len);
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)(i ^ (i >> 9));
    struct reader r = {.fd = s, .buf = in, .len = len, .rc = -1};
    pthread_t t;
    pthread_create(&t, NULL, read_all, &r);
    assert_int_equal(sock_write_full(c, out, len, 20000, err, sizeof err), 0);
    pthread_join(t, NULL);
    assert_int_equal(r.rc, 0);
    assert_memory_equal(in, out, len);
    free(out);
    free(in);
    close(s);
    close(c);
    close(l);
}

static void read_times_out_on_silence(void **state)
{
    (void)state;
    struct sockaddr_in addr;
    int l = listen_any(&addr);
    int c = sock_connect(&addr, 2000, err, sizeof err);
    int s = accept(l, NULL, NULL);
    uint8_t b[4];
    assert_int_equal(send(s, b, 2, 0), 2);   /* half of what the reader wants */
    assert_int_equal(sock_read_full(c, b, sizeof b, 200, err, sizeof err), -1);
    assert_non_null(strstr(err, "timed out"));
    close(s);
    close(c);
    close(l);
}

static void peer_close_is_reported(void **state)
{
    (void)state;
    struct sockaddr_in addr;
    int l = listen_any(&addr);
    int c = sock_connect(&addr, 2000, err, sizeof err);
    int s = accept(l, NULL, NULL);
    close(s);
    uint8_t b[4];
    assert_int_equal(sock_read_full(c, b, sizeof b, 2000, err, sizeof err), -1);
    assert_non_null(strstr(err, "closed"));
    /* writing to a closed peer is an error, not a SIGPIPE that kills us */
    static uint8_t big[1 << 20];
    int rc = 0;
    for (int i = 0; i < 8 && rc == 0; i++)
        rc = sock_write_full(c, big, sizeof big, 2000, err, sizeof err);
    assert_int_equal(rc, -1);
    close(c);
    close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_addresses),
        cmocka_unit_test(connect_refused_says_where),
        cmocka_unit_test(read_full_across_short_reads),
        cmocka_unit_test(write_full_large_buffer),
        cmocka_unit_test(read_times_out_on_silence),
        cmocka_unit_test(peer_close_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
