/* Unit tests for the tracker's server loop (net/tracker_server.c), in
 * process over loopback: exact answer bytes, garbage, silent connections
 * shed rather than honest newcomers (global and per-source caps), the
 * request deadline, running out of descriptors without spinning, warnings
 * summed up instead of one line each, the allow-list replaced while running,
 * and start/stop edge cases. Several source addresses come from binding
 * client sockets to 127.0.0.x. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "net/sock.h"
#include "net/tracker_server.h"
#include "net/tracker_state.h"
#include "net/wire.h"

#define IO_TIMEOUT_MS 10000     /* liveness bound for every wait, not a timing assertion */
#define LOOPBACK(n) (0x7f000000u | (n))

struct fixture {
    struct tracker_state *ts;
    struct tracker_server *srv;
    struct sockaddr_in addr;
};

static char err[CASCADE_ERRLEN];

static void start(struct fixture *f, const struct tracker_server_config *cfg_in)
{
    struct tracker_config tc = {.seed = 1};
    f->ts = tracker_state_new(&tc);
    assert_non_null(f->ts);
    struct tracker_server_config cfg = *cfg_in;
    sock_make_addr(LOOPBACK(1), 0, &cfg.listen);
    int rc = tracker_server_start(&cfg, f->ts, &f->srv, err, sizeof err);
    if (rc != 0)
        print_error("start: %s\n", err);
    assert_int_equal(rc, 0);
    tracker_server_address(f->srv, &f->addr);
    assert_int_not_equal(f->addr.sin_port, 0);
}

static void stop(struct fixture *f)
{
    tracker_server_stop(f->srv);
    tracker_state_free(f->ts);
}

static struct tracker_server_stats stats(const struct fixture *f)
{
    struct tracker_server_stats st;
    tracker_server_get_stats(f->srv, &st);
    return st;
}

/* Poll the stats until ok() holds; false after IO_TIMEOUT_MS. */
static bool wait_stats(const struct fixture *f, bool (*ok)(const struct tracker_server_stats *,
                                                           uint64_t), uint64_t arg)
{
    uint64_t end = cascade_now_ms() + IO_TIMEOUT_MS;
    while (cascade_now_ms() < end) {
        struct tracker_server_stats st = stats(f);
        if (ok(&st, arg))
            return true;
        usleep(2000);
    }
    return false;
}

static bool open_is(const struct tracker_server_stats *st, uint64_t n)
{
    return st->connections_open == n;
}

static bool total_at_least(const struct tracker_server_stats *st, uint64_t n)
{
    return st->connections_total >= n;
}

/* A blocking connection to the tracker from 127.0.0.<octet>. */
static int connect_from(const struct fixture *f, uint8_t octet)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in src;
    sock_make_addr(LOOPBACK(octet), 0, &src);
    assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof src), 0);
    assert_int_equal(connect(fd, (const struct sockaddr *)&f->addr, sizeof f->addr), 0);
    return fd;
}

static void hash_of(uint8_t n, uint8_t out[CASCADE_HASH_LEN])
{
    memset(out, n, CASCADE_HASH_LEN);
}

static void send_request(int fd, uint32_t cmd, uint8_t h, uint32_t ip, uint16_t port)
{
    struct wire_tracker_request req = {.command = cmd, .ip = ip, .port = port};
    hash_of(h, req.hash);
    uint8_t raw[WIRE_TRACKER_REQUEST_LEN];
    wire_encode_tracker_request(&req, raw);
    assert_int_equal(sock_write_full(fd, raw, sizeof raw, IO_TIMEOUT_MS, err, sizeof err), 0);
}

/* Read a whole answer up to the tracker's close: its length, or -1 when the
 * connection ended without one (closed or reset). */
static ssize_t read_answer(int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&p, 1, IO_TIMEOUT_MS), 1);
        ssize_t n = recv(fd, buf + got, cap - got, 0);
        if (n < 0)
            return -1;
        if (n == 0)
            return got ? (ssize_t)got : -1;
        got += (size_t)n;
        assert_true(got < cap);
    }
}

/* One request on a new connection from 127.0.0.<octet>; the answer's status. */
static int ask(const struct fixture *f, uint8_t octet, uint32_t cmd, uint8_t h, uint32_t ip,
               uint16_t port, struct wire_peer_record *recs, size_t *nrecs)
{
    int fd = connect_from(f, octet);
    send_request(fd, cmd, h, ip, port);
    uint8_t buf[8192];
    ssize_t n = read_answer(fd, buf, sizeof buf);
    close(fd);
    assert_true(n >= WIRE_TRACKER_ANSWER_HEADER_LEN);
    uint8_t status;
    uint32_t len;
    wire_decode_tracker_answer_header(buf, &status, &len);
    assert_int_equal(len, (size_t)n - WIRE_TRACKER_ANSWER_HEADER_LEN);
    if (status == 0 && recs) {
        *nrecs = len / WIRE_PEER_RECORD_LEN;
        for (size_t i = 0; i < *nrecs; i++)
            wire_decode_peer_record(buf + WIRE_TRACKER_ANSWER_HEADER_LEN +
                                    i * WIRE_PEER_RECORD_LEN, &recs[i]);
    }
    if (status != 0) {
        size_t m = len < sizeof err - 1 ? len : sizeof err - 1;
        memcpy(err, buf + WIRE_TRACKER_ANSWER_HEADER_LEN, m);
        err[m] = '\0';
    }
    return status;
}

/* True when the tracker has closed fd (EOF or reset) within the bound. */
static bool closed_by_tracker(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, IO_TIMEOUT_MS) != 1)
        return false;
    uint8_t b;
    return recv(fd, &b, 1, MSG_DONTWAIT) <= 0;
}

/* True when fd is still open on the tracker's side (nothing to read). */
static bool still_open(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

/* ---- the protocol ----------------------------------------------------- */

static void answers_byte_for_byte(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, &(struct tracker_server_config){0});
    struct wire_peer_record recs[32];
    size_t n = 99;
    assert_int_equal(ask(&f, 2, WIRE_CMD_SUBSCRIBE, 1, 0, 7002, recs, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(ask(&f, 3, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(3), 7003, recs, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(recs[0].ip, LOOPBACK(2));     /* 0.0.0.0 became the source */
    assert_int_equal(recs[0].port, 7002);
    assert_int_equal(recs[0].good, 0);

    /* the exact bytes of a one-peer list: 5-byte header, one 12-byte record */
    int fd = connect_from(&f, 9);
    send_request(fd, WIRE_CMD_LIST, 1, 0, 0);
    uint8_t buf[256];
    ssize_t len = read_answer(fd, buf, sizeof buf);
    close(fd);
    assert_int_equal(len, 5 + 2 * 12);
    assert_int_equal(buf[0], 0);
    assert_int_equal(cascade_get_be32(buf + 1), 24);
    for (int i = 0; i < 2; i++) {
        const uint8_t *r = buf + 5 + 12 * i;
        assert_true(cascade_get_be32(r) == LOOPBACK(2) || cascade_get_be32(r) == LOOPBACK(3));
        assert_int_equal(r[11], 0);                 /* reserved */
    }
    struct tracker_server_stats st = stats(&f);
    assert_int_equal(st.answered, 3);
    assert_int_equal(st.refused, 0);
    stop(&f);
}

static void garbage_gets_status_1(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, &(struct tracker_server_config){0});
    int fd = connect_from(&f, 2);
    uint8_t junk[WIRE_TRACKER_REQUEST_LEN];
    memset(junk, 0xff, sizeof junk);
    assert_int_equal(sock_write_full(fd, junk, sizeof junk, IO_TIMEOUT_MS, err, sizeof err), 0);
    uint8_t buf[WIRE_TRACKER_ANSWER_HEADER_LEN + WIRE_MAX_ERROR_MESSAGE + 1];
    ssize_t n = read_answer(fd, buf, sizeof buf);
    close(fd);
    assert_true(n > WIRE_TRACKER_ANSWER_HEADER_LEN);
    assert_int_equal(buf[0], 1);
    assert_int_equal(cascade_get_be32(buf + 1), (uint32_t)n - WIRE_TRACKER_ANSWER_HEADER_LEN);
    /* a refusal from the rules, too: a port of 0 */
    assert_int_equal(ask(&f, 2, WIRE_CMD_SUBSCRIBE, 1, 0, 0, NULL, NULL), 1);
    assert_non_null(strstr(err, "port 0"));
    assert_int_equal(stats(&f).refused, 2);
    /* and it answers the next one */
    assert_int_equal(ask(&f, 2, WIRE_CMD_LIST, 1, 0, 0, NULL, NULL), 0);
    stop(&f);
}

/* ---- silent connections ------------------------------------------------- */

/* At the cap, a newcomer is admitted and the oldest silent one goes. */
static void silent_connections_are_shed_for_newcomers(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, &(struct tracker_server_config){.max_connections = 8,
                                              .request_timeout_ms = 60000});
    assert_int_equal(stats(&f).max_connections, 8);
    int silent[10];
    for (int i = 0; i < 8; i++) {
        silent[i] = connect_from(&f, (uint8_t)(10 + i));
        assert_true(wait_stats(&f, total_at_least, (uint64_t)i + 1));
    }
    assert_true(wait_stats(&f, open_is, 8));
    for (int round = 0; round < 3; round++) {
        assert_int_equal(ask(&f, 2, WIRE_CMD_LIST, 1, 0, 0, NULL, NULL), 0);
        if (round < 2) {                        /* fill the slot it left */
            silent[8 + round] = connect_from(&f, (uint8_t)(18 + round));
            assert_true(wait_stats(&f, open_is, 8));
        }
    }
    /* the three slowest, in order, made room; the rest are still held */
    for (int i = 0; i < 3; i++)
        assert_true(closed_by_tracker(silent[i]));
    for (int i = 3; i < 10; i++)
        assert_true(still_open(silent[i]));
    struct tracker_server_stats st = stats(&f);
    assert_int_equal(st.shed, 3);
    assert_int_equal(st.turned_away, 0);
    assert_int_equal(st.answered, 3);
    for (int i = 0; i < 10; i++)
        close(silent[i]);
    stop(&f);
}

/* A source at its own cap sheds its own oldest, never another's. */
static void per_source_cap_sheds_its_own(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, &(struct tracker_server_config){.max_connections_per_source = 4});
    int other = connect_from(&f, 6);
    assert_true(wait_stats(&f, open_is, 1));
    int mine[6];
    for (int i = 0; i < 6; i++) {
        mine[i] = connect_from(&f, 5);
        assert_true(wait_stats(&f, total_at_least, (uint64_t)i + 2));
    }
    assert_true(closed_by_tracker(mine[0]) && closed_by_tracker(mine[1]));
    for (int i = 2; i < 6; i++)
        assert_true(still_open(mine[i]));
    assert_true(still_open(other));
    /* an honest request from the crowded source is answered all the same */
    assert_int_equal(ask(&f, 5, WIRE_CMD_LIST, 1, 0, 0, NULL, NULL), 0);
    assert_true(closed_by_tracker(mine[2]));
    assert_true(still_open(other));
    assert_int_equal(stats(&f).shed, 3);
    for (int i = 0; i < 6; i++)
        close(mine[i]);
    close(other);
    stop(&f);
}

static void silent_connection_times_out(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, &(struct tracker_server_config){.request_timeout_ms = 200});
    int fd = connect_from(&f, 2);
    uint8_t half[20] = {'C', 'A', 'S', 'C'};
    assert_int_equal(sock_write_full(fd, half, sizeof half, IO_TIMEOUT_MS, err, sizeof err), 0);
    assert_true(closed_by_tracker(fd));
    close(fd);
    assert_true(wait_stats(&f, open_is, 0));
    assert_int_equal(stats(&f).timed_out, 1);
    stop(&f);
}

/* ---- out of descriptors -------------------------------------------------- */

/* The lowest free descriptor number: with RLIMIT_NOFILE one above it, the
 * next descriptor this process opens is the last one it gets. */
static int lowest_free_fd(void)
{
    int fd = dup(0);
    assert_true(fd >= 0);
    close(fd);
    return fd;
}

static struct rlimit saved_fd_limit;

/* A failed assertion leaves the limit lowered: put it back for the next test. */
static int restore_fd_limit(void **state)
{
    (void)state;
    return setrlimit(RLIMIT_NOFILE, &saved_fd_limit);
}

static void set_fd_limit(rlim_t soft)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = soft;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

static void out_of_descriptors_sheds_then_turns_away(void **state)
{
    (void)state;
    const struct rlimit saved = saved_fd_limit;
    struct fixture f;
    start(&f, &(struct tracker_server_config){0});
    int silent[4];
    for (int i = 0; i < 4; i++)
        silent[i] = connect_from(&f, (uint8_t)(10 + i));
    assert_true(wait_stats(&f, open_is, 4));

    /* No descriptor left for accept: the oldest silent connection makes room. */
    set_fd_limit((rlim_t)lowest_free_fd() + 1);
    int honest = connect_from(&f, 2);          /* takes the last descriptor */
    assert_true(wait_stats(&f, total_at_least, 5));
    /* one made room; none more for nobody (accept says EMFILE with an empty queue too) */
    assert_true(closed_by_tracker(silent[0]));
    for (int i = 1; i < 4; i++)
        assert_true(still_open(silent[i]));
    send_request(honest, WIRE_CMD_LIST, 1, 0, 0);
    uint8_t buf[64];
    assert_int_equal(read_answer(honest, buf, sizeof buf), WIRE_TRACKER_ANSWER_HEADER_LEN);
    assert_int_equal(buf[0], 0);
    close(honest);
    set_fd_limit(saved.rlim_cur);
    struct tracker_server_stats st = stats(&f);
    assert_true(st.accept_errors >= 1);
    assert_int_equal(st.shed, 1);
    for (int i = 0; i < 4; i++)
        close(silent[i]);
    assert_true(wait_stats(&f, open_is, 0));

    /* Nothing to shed: the reserve descriptor lets it turn the newcomer away. */
    set_fd_limit((rlim_t)lowest_free_fd() + 1);
    int late = connect_from(&f, 2);
    assert_true(closed_by_tracker(late));
    close(late);
    set_fd_limit(saved.rlim_cur);
    st = stats(&f);
    assert_int_equal(st.turned_away, 1);
    /* and the loop sleeps: a spinning one turns tens of thousands of times here */
    uint64_t turns = st.loop_turns;
    usleep(300 * 1000);
    assert_true(stats(&f).loop_turns - turns < 100);
    /* it serves as before once descriptors are back */
    assert_int_equal(ask(&f, 2, WIRE_CMD_LIST, 1, 0, 0, NULL, NULL), 0);
    stop(&f);
}

/* ---- warnings --------------------------------------------------------------- */

/* 300 sheds with the same cause log a line or two, not 300. */
static void warnings_are_summed_up(void **state)
{
    (void)state;
    char path[] = "/tmp/test_tracker_server.XXXXXX";
    int logfd = mkstemp(path);
    assert_true(logfd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(logfd, 2);

    struct fixture f;
    start(&f, &(struct tracker_server_config){.max_connections = 4, .log_interval_ms = 60000});
    int fds[300];
    for (int i = 0; i < 300; i++) {
        fds[i] = connect_from(&f, (uint8_t)(10 + i % 200));
        assert_true(wait_stats(&f, total_at_least, (uint64_t)i + 1));
        if (i >= 4)
            close(fds[i - 4]);
    }
    assert_true(wait_stats(&f, total_at_least, 300));
    for (int i = 296; i < 300; i++)
        close(fds[i]);
    struct tracker_server_stats st = stats(&f);
    stop(&f);                                   /* sums up what is left */

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    assert_int_equal(st.shed, 296);
    char text[8192] = "";
    ssize_t n = pread(logfd, text, sizeof text - 1, 0);
    close(logfd);
    assert_true(n > 0);
    int lines = 0;
    for (char *p = text; (p = strstr(p, "shed the oldest")); p++)
        lines++;
    assert_int_equal(lines, 2);                 /* the first, then the sum at stop */
    assert_non_null(strstr(text, "295 times"));
}

/* ---- the allow-list and start/stop ------------------------------------------ */

struct hammer {
    const struct fixture *f;
    int answered;
};

static void *hammer_requests(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < 200; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (const struct sockaddr *)&h->f->addr, sizeof h->f->addr) < 0) {
            close(fd);
            continue;
        }
        struct wire_tracker_request req = {.command = WIRE_CMD_SUBSCRIBE, .port = 7000};
        hash_of((uint8_t)(1 + i % 2), req.hash);
        uint8_t raw[WIRE_TRACKER_REQUEST_LEN], buf[512];
        wire_encode_tracker_request(&req, raw);
        char e[CASCADE_ERRLEN];
        if (sock_write_full(fd, raw, sizeof raw, IO_TIMEOUT_MS, e, sizeof e) == 0 &&
            sock_read_full(fd, buf, WIRE_TRACKER_ANSWER_HEADER_LEN, IO_TIMEOUT_MS, e, sizeof e) == 0)
            h->answered++;
        close(fd);
    }
    return NULL;
}

static void allow_list_replaced_while_running(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, &(struct tracker_server_config){0});
    uint8_t list[2 * CASCADE_HASH_LEN];
    hash_of(1, list);
    assert_int_equal(tracker_server_set_allowed(f.srv, list, 1, err, sizeof err), 1);
    assert_int_equal(ask(&f, 2, WIRE_CMD_SUBSCRIBE, 2, 0, 7002, NULL, NULL), 1);
    assert_non_null(strstr(err, "not tracked"));

    /* swap lists while another thread keeps asking (TSan watches the lock) */
    struct hammer h = {.f = &f};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, hammer_requests, &h), 0);
    hash_of(2, list + CASCADE_HASH_LEN);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(tracker_server_set_allowed(f.srv, list, 2 - (size_t)(i % 2), err,
                                                    sizeof err), 2 - i % 2);
        usleep(1000);
    }
    pthread_join(th, NULL);
    assert_int_equal(h.answered, 200);
    assert_int_equal(tracker_server_set_allowed(f.srv, list, 2, err, sizeof err), 2);
    assert_int_equal(ask(&f, 2, WIRE_CMD_SUBSCRIBE, 2, 0, 7002, NULL, NULL), 0);
    /* an empty list is refused, the old one stays */
    assert_int_equal(tracker_server_set_allowed(f.srv, list, 0, err, sizeof err), -1);
    assert_int_equal(ask(&f, 2, WIRE_CMD_SUBSCRIBE, 2, 0, 7002, NULL, NULL), 0);
    stop(&f);
}

static void start_errors_and_stop_null(void **state)
{
    (void)state;
    tracker_server_stop(NULL);
    struct fixture f;
    start(&f, &(struct tracker_server_config){0});
    /* the same address again: in use */
    struct tracker_server_config cfg = {.listen = f.addr};
    struct tracker_server *second = (struct tracker_server *)&f;
    assert_int_equal(tracker_server_start(&cfg, f.ts, &second, err, sizeof err), -1);
    assert_null(second);
    assert_non_null(strstr(err, "127.0.0.1:"));
    cfg.max_connections = -1;
    assert_int_equal(tracker_server_start(&cfg, f.ts, &second, err, sizeof err), -1);
    assert_non_null(strstr(err, "caps"));
    stop(&f);
}

int main(void)
{
    cascade_log_init("test_tracker_server", CASCADE_LOG_WARN, false);
    if (getrlimit(RLIMIT_NOFILE, &saved_fd_limit) < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(answers_byte_for_byte),
        cmocka_unit_test(garbage_gets_status_1),
        cmocka_unit_test(silent_connections_are_shed_for_newcomers),
        cmocka_unit_test(per_source_cap_sheds_its_own),
        cmocka_unit_test(silent_connection_times_out),
        cmocka_unit_test_teardown(out_of_descriptors_sheds_then_turns_away, restore_fd_limit),
        cmocka_unit_test(warnings_are_summed_up),
        cmocka_unit_test(allow_list_replaced_while_running),
        cmocka_unit_test(start_errors_and_stop_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
