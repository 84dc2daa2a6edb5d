/* Unit tests for the block server (net/block_server.c) over loopback: every
 * status with its exact bytes, pipelining, 1000 concurrent connections, a
 * client that never reads, idle timeout, the connection cap, a file that
 * goes away while it is being served (its pin keeps the store), and the
 * stats. The server's source here is a two-file table in this file. */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cascade/log.h"
#include "cascade/store.h"
#include "cascade/util.h"
#include "support.h"
#include "net/block_server.h"
#include "net/sock.h"
#include "net/wire.h"

#define IO_TIMEOUT_MS 10000     /* liveness bound for every wait, not a timing assertion */
#define SMALL_BS 4096
#define SMALL_BLOCKS 16
#define SMALL_LAST 1000         /* the short last block */
#define SMALL_MISSING_A 3
#define SMALL_MISSING_B 7
#define BIG_BS (1u << 20)
#define BIG_BLOCKS 8

/* ---- fixtures: data, a hand-built meta, a store, a server -------------- */

struct file_fixture {
    uint8_t *data;
    struct cascade_meta meta;
    struct cascade_store *store;
    atomic_bool gone;            /* the source no longer knows it (status 1) */
    atomic_int pins;             /* acquired and not yet released */
    atomic_uint_fast64_t served; /* bytes reported by release() */
};

struct fixture {
    char dir[64];
    struct file_fixture small, big;
    struct block_server *srv;
    struct sockaddr_in addr;
};

static uint64_t block_len(const struct file_fixture *ff, uint64_t i)
{
    return cascade_meta_block_len(&ff->meta, i);
}

static const uint8_t *block_data(const struct file_fixture *ff, uint64_t i)
{
    return ff->data + i * ff->meta.block_size;
}

static void build_file(struct file_fixture *ff, const char *cache, uint64_t size,
                       uint64_t bs, unsigned seed)
{
    test_build_meta(&ff->meta, &ff->data, size, bs, seed);

    struct cascade_store_options o = {.cache_root = cache};
    char err[CASCADE_ERRLEN] = "";
    int rc = cascade_store_open(&ff->meta, &o, &ff->store, err, sizeof err);
    if (rc != 0)
        print_error("store open: %s\n", err);
    assert_int_equal(rc, 0);
}

static void put_block(struct file_fixture *ff, uint64_t i)
{
    assert_int_equal(cascade_store_put(ff->store, i, block_data(ff, i), block_len(ff, i)),
                     CASCADE_STORE_OK);
}

/* ---- the server's source: the two files of the fixture ---------------- */

static void *source_acquire(void *ctx, const uint8_t *hash, struct cascade_store **st,
                            uint64_t *block_count)
{
    struct fixture *f = ctx;
    struct file_fixture *files[] = {&f->small, &f->big};
    for (size_t i = 0; i < 2; i++) {
        struct file_fixture *ff = files[i];
        if (atomic_load(&ff->gone) || memcmp(ff->meta.cascade_hash, hash, CASCADE_HASH_LEN))
            continue;
        atomic_fetch_add(&ff->pins, 1);
        *st = ff->store;
        *block_count = ff->meta.block_count;
        return ff;
    }
    return NULL;
}

static void source_release(void *ctx, void *file, uint64_t bytes_sent)
{
    (void)ctx;
    struct file_fixture *ff = file;
    atomic_fetch_add(&ff->served, bytes_sent);
    atomic_fetch_sub(&ff->pins, 1);
}

static void start_server(struct fixture *f, int idle_ms, int max_conns)
{
    struct block_server_config cfg = {.idle_timeout_ms = idle_ms, .max_connections = max_conns,
                                      .source = {f, source_acquire, source_release}};
    sock_make_addr(0x7f000001, 0, &cfg.listen);
    char err[CASCADE_ERRLEN] = "";
    int rc = block_server_start(&cfg, &f->srv, err, sizeof err);
    if (rc != 0)
        print_error("server start: %s\n", err);
    assert_int_equal(rc, 0);
    block_server_address(f->srv, &f->addr);
    assert_int_not_equal(f->addr.sin_port, 0);
}

static int setup_with(void **state, int idle_ms, int max_conns)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (test_make_tmpdir(f->dir, sizeof f->dir, "test_block_server") != 0)
        return -1;
    build_file(&f->small, f->dir, (SMALL_BLOCKS - 1) * SMALL_BS + SMALL_LAST, SMALL_BS, 1);
    for (uint64_t i = 0; i < SMALL_BLOCKS; i++)
        if (i != SMALL_MISSING_A && i != SMALL_MISSING_B)
            put_block(&f->small, i);
    build_file(&f->big, f->dir, (uint64_t)BIG_BLOCKS * BIG_BS, BIG_BS, 2);
    for (uint64_t i = 0; i < BIG_BLOCKS; i++)
        put_block(&f->big, i);
    start_server(f, idle_ms, max_conns);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, 0, 0);
}

static int setup_short_idle(void **state)
{
    return setup_with(state, 200, 0);
}

static int setup_two_conns(void **state)
{
    return setup_with(state, 0, 2);
}

static void free_file(struct file_fixture *ff)
{
    cascade_store_close(ff->store);
    test_free_meta(&ff->meta, &ff->data);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    block_server_stop(f->srv);
    free_file(&f->small);
    free_file(&f->big);
    test_remove_tree(f->dir);
    free(f);
    return 0;
}

/* ---- client side ------------------------------------------------------- */

static int connect_to(const struct fixture *f)
{
    char err[CASCADE_ERRLEN] = "";
    int fd = sock_connect(&f->addr, IO_TIMEOUT_MS, err, sizeof err);
    if (fd < 0)
        print_error("connect: %s\n", err);
    assert_true(fd >= 0);
    return fd;
}

static void encode_request(uint8_t out[WIRE_PEER_REQUEST_LEN], const uint8_t *hash, uint64_t block)
{
    struct wire_peer_request req = {.block = block};
    memcpy(req.hash, hash, CASCADE_HASH_LEN);
    wire_encode_peer_request(&req, out);
}

static void send_request(int fd, const uint8_t *hash, uint64_t block)
{
    uint8_t buf[WIRE_PEER_REQUEST_LEN];
    encode_request(buf, hash, block);
    char err[CASCADE_ERRLEN] = "";
    assert_int_equal(sock_write_full(fd, buf, sizeof buf, IO_TIMEOUT_MS, err, sizeof err), 0);
}

/* Read one answer; the body (malloc'd, NUL-terminated) into *body. */
static uint8_t read_answer(int fd, uint8_t **body, uint64_t *len)
{
    uint8_t head[WIRE_PEER_ANSWER_HEADER_LEN];
    uint8_t status;
    char err[CASCADE_ERRLEN] = "";
    int rc = sock_read_full(fd, head, sizeof head, IO_TIMEOUT_MS, err, sizeof err);
    if (rc != 0)
        print_error("answer header: %s\n", err);
    assert_int_equal(rc, 0);
    wire_decode_peer_answer_header(head, &status, len);
    assert_true(*len <= 2 * BIG_BS);
    *body = malloc(*len + 1);
    assert_non_null(*body);
    rc = sock_read_full(fd, *body, *len, IO_TIMEOUT_MS, err, sizeof err);
    if (rc != 0)
        print_error("answer body: %s\n", err);
    assert_int_equal(rc, 0);
    (*body)[*len] = 0;
    return status;
}

static void expect_block(int fd, const struct file_fixture *ff, uint64_t i)
{
    uint8_t *body;
    uint64_t len;
    assert_int_equal(read_answer(fd, &body, &len), WIRE_STATUS_OK);
    assert_int_equal(len, block_len(ff, i));
    assert_memory_equal(body, block_data(ff, i), len);
    free(body);
}

static void expect_message(int fd, uint8_t status, const char *text)
{
    uint8_t *body;
    uint64_t len;
    assert_int_equal(read_answer(fd, &body, &len), status);
    assert_string_equal((char *)body, text);
    free(body);
}

/* The server closed the connection: EOF (or a reset) within the bound. */
static void expect_closed(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, IO_TIMEOUT_MS), 1);
    char c;
    ssize_t n = recv(fd, &c, 1, 0);
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
}

/* ---- tests -------------------------------------------------------------- */

static void test_held_blocks_exact_bytes(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f);
    for (uint64_t i = 0; i < SMALL_BLOCKS; i++) {
        if (i == SMALL_MISSING_A || i == SMALL_MISSING_B)
            continue;
        send_request(fd, f->small.meta.cascade_hash, i);
        expect_block(fd, &f->small, i);
    }
    assert_int_equal(block_len(&f->small, SMALL_BLOCKS - 1), SMALL_LAST);
    send_request(fd, f->big.meta.cascade_hash, BIG_BLOCKS - 1);
    expect_block(fd, &f->big, BIG_BLOCKS - 1);
    close(fd);
}

static void test_missing_block_keeps_connection(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f);
    send_request(fd, f->small.meta.cascade_hash, SMALL_MISSING_B);
    expect_message(fd, WIRE_STATUS_NOT_PRESENT, "block 7 not present");
    send_request(fd, f->small.meta.cascade_hash, 0);
    expect_block(fd, &f->small, 0);
    /* Once put, the block is served on the same connection. */
    put_block(&f->small, SMALL_MISSING_B);
    send_request(fd, f->small.meta.cascade_hash, SMALL_MISSING_B);
    expect_block(fd, &f->small, SMALL_MISSING_B);
    close(fd);
}

static void test_unknown_hash_closes(void **state)
{
    struct fixture *f = *state;
    uint8_t hash[CASCADE_HASH_LEN];
    memset(hash, 0xab, sizeof hash);
    int fd = connect_to(f);
    send_request(fd, hash, 0);
    expect_message(fd, WIRE_STATUS_UNKNOWN_HASH, "unknown cascade hash");
    expect_closed(fd);
    close(fd);
}

static void test_out_of_range_closes(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f);
    send_request(fd, f->small.meta.cascade_hash, 99);
    expect_message(fd, WIRE_STATUS_OUT_OF_RANGE, "block 99 out of range (16 blocks)");
    expect_closed(fd);
    close(fd);

    fd = connect_to(f);
    send_request(fd, f->small.meta.cascade_hash, SMALL_BLOCKS);
    expect_message(fd, WIRE_STATUS_OUT_OF_RANGE, "block 16 out of range (16 blocks)");
    expect_closed(fd);
    close(fd);
}

static void test_bad_magic_closes(void **state)
{
    struct fixture *f = *state;
    uint8_t req[WIRE_PEER_REQUEST_LEN];
    encode_request(req, f->small.meta.cascade_hash, 0);
    req[0] = 'X';
    char err[CASCADE_ERRLEN] = "";
    int fd = connect_to(f);
    assert_int_equal(sock_write_full(fd, req, sizeof req, IO_TIMEOUT_MS, err, sizeof err), 0);
    uint8_t *body;
    uint64_t len;
    assert_int_equal(read_answer(fd, &body, &len), WIRE_STATUS_BAD_REQUEST);
    assert_memory_equal(body, "bad request: ", strlen("bad request: "));
    assert_non_null(strstr((char *)body, "magic"));
    free(body);
    expect_closed(fd);
    close(fd);
}

/* 50 requests written at once come back in order. */
static void test_pipelined_in_order(void **state)
{
    struct fixture *f = *state;
    enum { N = 50 };
    uint8_t reqs[N * WIRE_PEER_REQUEST_LEN];
    for (int i = 0; i < N; i++)
        encode_request(reqs + i * WIRE_PEER_REQUEST_LEN, f->small.meta.cascade_hash,
                       (uint64_t)(i * 7) % SMALL_BLOCKS);
    int fd = connect_to(f);
    char err[CASCADE_ERRLEN] = "";
    assert_int_equal(sock_write_full(fd, reqs, sizeof reqs, IO_TIMEOUT_MS, err, sizeof err), 0);
    for (int i = 0; i < N; i++) {
        uint64_t b = (uint64_t)(i * 7) % SMALL_BLOCKS;
        if (b == SMALL_MISSING_A)
            expect_message(fd, WIRE_STATUS_NOT_PRESENT, "block 3 not present");
        else if (b == SMALL_MISSING_B)
            expect_message(fd, WIRE_STATUS_NOT_PRESENT, "block 7 not present");
        else
            expect_block(fd, &f->small, b);
    }
    close(fd);
}

/* A request that arrives a byte at a time is assembled, then answered. */
static void test_request_in_pieces(void **state)
{
    struct fixture *f = *state;
    uint8_t req[2 * WIRE_PEER_REQUEST_LEN];
    encode_request(req, f->small.meta.cascade_hash, SMALL_BLOCKS - 1);
    encode_request(req + WIRE_PEER_REQUEST_LEN, f->small.meta.cascade_hash, 2);
    int fd = connect_to(f);
    char err[CASCADE_ERRLEN] = "";
    for (size_t i = 0; i < sizeof req; i++)
        assert_int_equal(sock_write_full(fd, req + i, 1, IO_TIMEOUT_MS, err, sizeof err), 0);
    expect_block(fd, &f->small, SMALL_BLOCKS - 1);
    expect_block(fd, &f->small, 2);
    close(fd);
}

static bool raise_fd_limit(rlim_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return false;
    if (rl.rlim_cur >= want)
        return true;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
        return false;
    rl.rlim_cur = want;
    return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

/* 1000 connections open at once, each with a request, all answered. */
static void test_thousand_connections(void **state)
{
    struct fixture *f = *state;
    enum { N = 1000 };
    if (!raise_fd_limit(4096)) {
        print_message("cannot raise RLIMIT_NOFILE to 4096: skipping\n");
        skip();
    }
    int *fds = malloc(N * sizeof *fds);
    assert_non_null(fds);
    for (int i = 0; i < N; i++)
        fds[i] = connect_to(f);
    for (int i = 0; i < N; i++)
        send_request(fds[i], f->small.meta.cascade_hash, (uint64_t)i % SMALL_BLOCKS);
    for (int i = 0; i < N; i++) {
        uint64_t b = (uint64_t)i % SMALL_BLOCKS;
        if (b == SMALL_MISSING_A || b == SMALL_MISSING_B) {
            uint8_t *body;
            uint64_t len;
            assert_int_equal(read_answer(fds[i], &body, &len), WIRE_STATUS_NOT_PRESENT);
            free(body);
        } else {
            expect_block(fds[i], &f->small, b);
        }
    }
    struct block_server_stats st;
    block_server_get_stats(f->srv, &st);
    assert_true(st.connections_open >= N);
    assert_true(st.connections_total >= N);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    free(fds);
}

/* Fill a connection with requests for 1 MiB blocks and never read: the
 * server must still answer a second client; when the source forgets the
 * file, new requests get status 1 while the stuck connection keeps its pin
 * (the store stays open under it) until its block is out. */
static void test_non_reader_does_not_block_others(void **state)
{
    struct fixture *f = *state;
    enum { N = 100 };
    int stuck = connect_to(f);
    uint8_t req[WIRE_PEER_REQUEST_LEN];
    int sent = 0;
    for (; sent < N; sent++) {
        encode_request(req, f->big.meta.cascade_hash, (uint64_t)sent % BIG_BLOCKS);
        struct pollfd p = {.fd = stuck, .events = POLLOUT};
        if (poll(&p, 1, 1000) != 1)
            break;   /* the server stopped reading us: enough */
        assert_int_equal(send(stuck, req, sizeof req, MSG_NOSIGNAL), (ssize_t)sizeof req);
    }
    assert_true(sent > 0);

    int other = connect_to(f);
    send_request(other, f->small.meta.cascade_hash, 5);
    expect_block(other, &f->small, 5);
    send_request(other, f->big.meta.cascade_hash, 2);
    expect_block(other, &f->big, 2);

    struct block_server_stats st;
    block_server_get_stats(f->srv, &st);
    assert_true(st.blocks_served < (uint64_t)N);   /* the stuck one really is stuck */

    atomic_store(&f->big.gone, true);
    send_request(other, f->big.meta.cascade_hash, 2);
    expect_message(other, WIRE_STATUS_UNKNOWN_HASH, "unknown cascade hash");
    expect_closed(other);
    close(other);
    assert_int_equal(atomic_load(&f->big.pins), 1);   /* the stuck block's pin */

    /* The stuck connection still drains correct bytes from the forgotten file. */
    expect_block(stuck, &f->big, 0);
    close(stuck);
    for (int i = 0; i < IO_TIMEOUT_MS / 10 && atomic_load(&f->big.pins) != 0; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&f->big.pins), 0);   /* closing released it */
}

static void test_idle_timeout_closes(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f);
    send_request(fd, f->small.meta.cascade_hash, SMALL_MISSING_A);
    expect_message(fd, WIRE_STATUS_NOT_PRESENT, "block 3 not present");
    expect_closed(fd);   /* idle_timeout_ms is 200 here */
    close(fd);
}

static void test_connection_cap(void **state)
{
    struct fixture *f = *state;
    int a = connect_to(f), b = connect_to(f);
    /* Make sure both are accepted before the third arrives. */
    send_request(a, f->small.meta.cascade_hash, 0);
    expect_block(a, &f->small, 0);
    send_request(b, f->small.meta.cascade_hash, 1);
    expect_block(b, &f->small, 1);
    int c = connect_to(f);
    expect_closed(c);
    close(c);
    send_request(a, f->small.meta.cascade_hash, 2);
    expect_block(a, &f->small, 2);
    close(a);
    close(b);
}

static void test_stats_count_bytes(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f);
    uint64_t bytes = 0, blocks = 0;
    for (uint64_t i = 10; i < SMALL_BLOCKS; i++) {
        send_request(fd, f->small.meta.cascade_hash, i);
        expect_block(fd, &f->small, i);
        bytes += block_len(&f->small, i);
        blocks++;
    }
    send_request(fd, f->big.meta.cascade_hash, 1);
    expect_block(fd, &f->big, 1);
    /* Answered after the blocks above, so their counts are in. */
    send_request(fd, f->small.meta.cascade_hash, SMALL_MISSING_A);
    expect_message(fd, WIRE_STATUS_NOT_PRESENT, "block 3 not present");

    /* Per file, the source hears of every byte, and every pin came back. */
    assert_int_equal(atomic_load(&f->small.served), bytes);
    assert_int_equal(atomic_load(&f->big.served), BIG_BS);
    assert_int_equal(atomic_load(&f->small.pins), 0);
    assert_int_equal(atomic_load(&f->big.pins), 0);
    struct block_server_stats st;
    block_server_get_stats(f->srv, &st);
    assert_int_equal(st.bytes_served, bytes + BIG_BS);
    assert_int_equal(st.blocks_served, blocks + 1);
    assert_int_equal(st.connections_open, 1);
    assert_int_equal(st.connections_total, 1);
    close(fd);
}

/* Stop with connections open and an answer half sent returns and frees all. */
static void test_stop_with_open_connections(void **state)
{
    struct fixture *f = *state;
    int idle = connect_to(f);
    int busy = connect_to(f);
    for (int i = 0; i < 20; i++)
        send_request(busy, f->big.meta.cascade_hash, (uint64_t)i % BIG_BLOCKS);
    expect_block(busy, &f->big, 0);
    block_server_stop(f->srv);
    f->srv = NULL;
    expect_closed(idle);
    close(idle);
    close(busy);
    assert_int_equal(atomic_load(&f->big.pins), 0);   /* stop released the half-sent pin */
}

int main(void)
{
    /* CASCADE_TEST_DEBUG=1 shows the server's debug log (every serve). */
    if (getenv("CASCADE_TEST_DEBUG"))
        cascade_log_init("test_block_server", CASCADE_LOG_DEBUG, false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_held_blocks_exact_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_block_keeps_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_hash_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_range_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_magic_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_in_pieces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thousand_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_reader_does_not_block_others, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout_closes, setup_short_idle, teardown),
        cmocka_unit_test_setup_teardown(test_connection_cap, setup_two_conns, teardown),
        cmocka_unit_test_setup_teardown(test_stats_count_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_open_connections, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
