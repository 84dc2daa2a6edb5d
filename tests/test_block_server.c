/* Unit tests for the block server (net/block_server.c) over loopback: every
 * status with its exact bytes, pipelining, 1000 concurrent connections, a
 * client that never reads, idle timeout, a file that goes away while it is
 * being served (its pin keeps the store), and the stats. Then the defences
 * against lock-out: request deadlines, shedding the longest waiter at the
 * caps (never a connection being sent to), running out of descriptors, and
 * 4,200 connections trickling requests (from one address, then from 100)
 * while an honest client from another address must get its block. Upload
 * slots: answers queue in order behind a slot, a holder that stalls gives
 * its slot up, a full queue answers "not now" a bounded number of times;
 * and the source's hold_back hook. The server's source here is a two-file
 * table in this file. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
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
    int64_t hold_small_block;    /* hold_back says "not now" for this block of small (-1: none) */
    atomic_int hold_calls, hold_others_waiting;   /* hold_back's calls about small, the last flag */
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

static bool source_hold_back(void *ctx, void *file, struct cascade_store *st, uint64_t block,
                             bool others_waiting)
{
    struct fixture *f = ctx;
    assert_true(cascade_store_has(st, block));   /* asked only of held blocks */
    if (file != &f->small)
        return false;   /* the big file's requests come from other connections */
    atomic_fetch_add(&f->hold_calls, 1);
    atomic_store(&f->hold_others_waiting, others_waiting);
    return (int64_t)block == f->hold_small_block;
}

/* (Re)start the server with cfg's limits (NULL: all defaults). */
static void serve_with(struct fixture *f, const struct block_server_config *limits)
{
    struct block_server_config cfg = {0};
    if (limits)
        cfg = *limits;
    cfg.source = (struct block_server_source){.ctx = f, .acquire = source_acquire,
                                              .release = source_release,
                                              .hold_back = source_hold_back};
    sock_make_addr(0x7f000001, 0, &cfg.listen);
    block_server_stop(f->srv);
    f->srv = NULL;
    char err[CASCADE_ERRLEN] = "";
    int rc = block_server_start(&cfg, &f->srv, err, sizeof err);
    if (rc != 0)
        print_error("server start: %s\n", err);
    assert_int_equal(rc, 0);
    block_server_address(f->srv, &f->addr);
    assert_int_not_equal(f->addr.sin_port, 0);
}

static int setup_with(void **state, const struct block_server_config *limits)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (test_make_tmpdir(f->dir, sizeof f->dir, "test_block_server") != 0)
        return -1;
    f->hold_small_block = -1;
    build_file(&f->small, f->dir, (SMALL_BLOCKS - 1) * SMALL_BS + SMALL_LAST, SMALL_BS, 1);
    for (uint64_t i = 0; i < SMALL_BLOCKS; i++)
        if (i != SMALL_MISSING_A && i != SMALL_MISSING_B)
            put_block(&f->small, i);
    build_file(&f->big, f->dir, (uint64_t)BIG_BLOCKS * BIG_BS, BIG_BS, 2);
    for (uint64_t i = 0; i < BIG_BLOCKS; i++)
        put_block(&f->big, i);
    serve_with(f, limits);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, NULL);
}

static int setup_short_idle(void **state)
{
    return setup_with(state, &(struct block_server_config){.idle_timeout_ms = 200});
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

#define LOOPBACK(x) (0x7f000000u | (x))   /* 127.0.0.0/8, host order */

/* A client socket bound to src_ip (host order; 0: the kernel's choice).
 * -1 with errno set. */
static int client_socket(uint32_t src_ip)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || !src_ip)
        return fd;
    int one = 1;
    /* The port is picked at connect, so thousands may share one address. */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src;
    sock_make_addr(src_ip, 0, &src);
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* Connect fd (blocking) within IO_TIMEOUT_MS. 0, or -1 with errno set.
 * Allocates no descriptor (the out-of-descriptors tests rely on it). */
static int client_connect(int fd, const struct sockaddr_in *dst)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)dst, sizeof *dst) < 0 && errno != EINPROGRESS)
        return -1;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (poll(&p, 1, IO_TIMEOUT_MS) != 1) {
        errno = ETIMEDOUT;
        return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr != 0) {
        errno = soerr ? soerr : errno;
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fcntl(fd, F_SETFL, flags);
}

/* A connection to the server from src_ip (host order). */
static int connect_from(const struct fixture *f, uint32_t src_ip)
{
    int fd = client_socket(src_ip);
    if (fd >= 0 && client_connect(fd, &f->addr) < 0) {
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        print_error("connect from 127.0.%u.%u: %s\n", (src_ip >> 8) & 0xff, src_ip & 0xff,
                    strerror(errno));
    assert_true(fd >= 0);
    return fd;
}

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

/* Whether the server closed the connection (EOF or a reset) within the bound. */
static bool closed_by_server(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, IO_TIMEOUT_MS) != 1)
        return false;
    char c;
    ssize_t n = recv(fd, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

static void expect_closed(int fd)
{
    assert_true(closed_by_server(fd));
}

/* Fill fd with requests for 1 MiB blocks until the server stops reading
 * them (it is stuck sending to us, since we do not read). */
static void fill_until_stuck(const struct fixture *f, int fd)
{
    enum { N = 100 };
    uint8_t req[WIRE_PEER_REQUEST_LEN];
    int sent = 0;
    for (; sent < N; sent++) {
        encode_request(req, f->big.meta.cascade_hash, (uint64_t)sent % BIG_BLOCKS);
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 1000) != 1)
            break;   /* the server stopped reading us: enough */
        assert_int_equal(send(fd, req, sizeof req, MSG_NOSIGNAL), (ssize_t)sizeof req);
    }
    assert_true(sent > 0);
}

static struct block_server_stats stats_of(const struct fixture *f)
{
    struct block_server_stats st;
    block_server_get_stats(f->srv, &st);
    return st;
}

/* Wait (bounded) until the server has accepted n connections in all
 * (given a slot or refused), so what follows meets them all. */
static void wait_accepted(const struct fixture *f, uint64_t n)
{
    for (int i = 0; i < IO_TIMEOUT_MS / 10; i++) {
        struct block_server_stats st = stats_of(f);
        if (st.connections_total + st.connections_refused >= n)
            return;
        usleep(10000);
    }
    fail_msg("the server did not accept %llu connections in time", (unsigned long long)n);
}

/* One request answered, so the connection is surely accepted and waiting. */
static void ask_small(const struct fixture *f, int fd, uint64_t block)
{
    send_request(fd, f->small.meta.cascade_hash, block);
    expect_block(fd, &f->small, block);
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
    serve_with(f, &(struct block_server_config){.max_per_address = N});   /* all from 127.0.0.1 */
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
    int stuck = connect_to(f);
    fill_until_stuck(f, stuck);

    int other = connect_to(f);
    send_request(other, f->small.meta.cascade_hash, 5);
    expect_block(other, &f->small, 5);
    send_request(other, f->big.meta.cascade_hash, 2);
    expect_block(other, &f->big, 2);

    struct block_server_stats st;
    block_server_get_stats(f->srv, &st);
    assert_true(st.blocks_served < 100);   /* the stuck one really is stuck */

    atomic_store(&f->big.gone, true);
    send_request(other, f->big.meta.cascade_hash, 2);
    expect_message(other, WIRE_STATUS_UNKNOWN_HASH, "unknown cascade hash");
    expect_closed(other);
    close(other);
    /* The stuck connection ends up mid-block, holding that block's pin
     * (it may still be filling the kernel's buffers a moment longer). */
    for (int i = 0; i < IO_TIMEOUT_MS / 10 && atomic_load(&f->big.pins) != 1; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&f->big.pins), 1);

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

/* ---- deadlines ----------------------------------------------------------- */

/* A request trickled a byte at a time is cut off at the request deadline,
 * however steadily the bytes come (each byte used to reset the idle timer). */
static void test_trickled_request_times_out(void **state)
{
    struct fixture *f = *state;
    serve_with(f, &(struct block_server_config){.request_timeout_ms = 300});
    uint8_t req[WIRE_PEER_REQUEST_LEN];
    encode_request(req, f->small.meta.cascade_hash, 0);
    int fd = connect_to(f);
    size_t sent = 0;
    bool closed = false;
    for (; sent < sizeof req && !closed; sent++) {
        closed = send(fd, req + sent, 1, MSG_NOSIGNAL) != 1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        closed = closed || poll(&p, 1, 50) == 1;   /* 64 bytes take 3.2 s at this pace */
    }
    assert_true(closed_by_server(fd));   /* closed, and no answer came */
    close(fd);
    assert_true(sent < sizeof req);
    assert_int_equal(stats_of(f).requests_timed_out, 1);
    assert_int_equal(stats_of(f).blocks_served, 0);
}

/* A new connection must ask within the request deadline... */
static void test_silent_new_connection_times_out(void **state)
{
    struct fixture *f = *state;
    serve_with(f, &(struct block_server_config){.request_timeout_ms = 300});
    int fd = connect_to(f);
    expect_closed(fd);
    close(fd);
    assert_int_equal(stats_of(f).requests_timed_out, 1);
}

/* ...but between requests only the idle timeout counts: a persistent client
 * may pause longer than the request deadline. */
static void test_pause_between_requests_is_idle_time(void **state)
{
    struct fixture *f = *state;
    serve_with(f, &(struct block_server_config){.request_timeout_ms = 200});
    int fd = connect_to(f);
    ask_small(f, fd, 0);
    usleep(800 * 1000);
    ask_small(f, fd, 1);
    close(fd);
    assert_int_equal(stats_of(f).requests_timed_out, 0);
}

/* A pipelining client on a thin link: its answers take far longer than the
 * request deadline to go out, and it is sent to while newcomers arrive at
 * the cap. It is neither timed out nor shed, and gets every byte. */
static void test_slow_pipelined_reader_keeps_its_slot(void **state)
{
    struct fixture *f = *state;
    enum { BLOCKS = 8, CHUNK = 64 * 1024 };
    serve_with(f, &(struct block_server_config){.request_timeout_ms = 200, .max_connections = 2});
    int slow = client_socket(0);
    assert_true(slow >= 0);
    int small = CHUNK;   /* a thin receive window keeps the server sending to it */
    setsockopt(slow, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    assert_int_equal(client_connect(slow, &f->addr), 0);
    uint8_t reqs[BLOCKS * WIRE_PEER_REQUEST_LEN];
    for (int i = 0; i < BLOCKS; i++)
        encode_request(reqs + i * WIRE_PEER_REQUEST_LEN, f->big.meta.cascade_hash, (uint64_t)i);
    char err[CASCADE_ERRLEN] = "";
    assert_int_equal(sock_write_full(slow, reqs, sizeof reqs, IO_TIMEOUT_MS, err, sizeof err), 0);
    usleep(400 * 1000);   /* stalled longer than the request deadline */

    int a = connect_to(f), b = connect_to(f);   /* one of them must go: not `slow` */
    expect_closed(a);
    close(a);

    uint8_t *buf = malloc(BIG_BS);
    assert_non_null(buf);
    for (int i = 0; i < BLOCKS; i++) {
        uint8_t head[WIRE_PEER_ANSWER_HEADER_LEN], status;
        uint64_t len;
        assert_int_equal(sock_read_full(slow, head, sizeof head, IO_TIMEOUT_MS, err, sizeof err), 0);
        wire_decode_peer_answer_header(head, &status, &len);
        assert_int_equal(status, WIRE_STATUS_OK);
        assert_int_equal(len, BIG_BS);
        for (uint64_t got = 0; got < len; got += CHUNK) {
            usleep(5000);
            assert_int_equal(sock_read_full(slow, buf + got, CHUNK, IO_TIMEOUT_MS, err, sizeof err), 0);
        }
        assert_memory_equal(buf, block_data(&f->big, (uint64_t)i), BIG_BS);
    }
    free(buf);
    close(slow);
    close(b);
}

/* ---- caps ------------------------------------------------------------------ */

/* At the cap a newcomer takes the slot of the connection that has waited
 * longest for its next request. */
static void test_cap_sheds_longest_waiting(void **state)
{
    struct fixture *f = *state;
    serve_with(f, &(struct block_server_config){.max_connections = 3});
    int a = connect_to(f), b = connect_to(f);
    ask_small(f, a, 0);
    ask_small(f, b, 1);   /* b's wait began after a's */
    int c = connect_to(f);
    wait_accepted(f, 3);
    int d = connect_to(f);
    expect_closed(a);
    close(a);
    ask_small(f, b, 2);
    ask_small(f, c, 4);
    ask_small(f, d, 5);
    struct block_server_stats st = stats_of(f);
    assert_int_equal(st.connections_shed, 1);
    assert_int_equal(st.connections_refused, 0);
    assert_int_equal(st.connections_open, 3);
    close(b);
    close(c);
    close(d);
}

/* A connection being sent to is never shed: with nobody waiting, the
 * newcomer is refused (closed at once) and the download goes on. */
static void test_cap_refuses_when_all_are_sending(void **state)
{
    struct fixture *f = *state;
    serve_with(f, &(struct block_server_config){.max_connections = 1});
    int stuck = connect_to(f);
    fill_until_stuck(f, stuck);
    int n = connect_to(f);
    expect_closed(n);
    close(n);
    expect_block(stuck, &f->big, 0);
    close(stuck);
    assert_int_equal(stats_of(f).connections_refused, 1);
    assert_int_equal(stats_of(f).connections_shed, 0);
}

/* One address at its cap may only displace its own waiting connections;
 * with all of them being sent to, its newcomer is refused. */
static void test_per_address_cap(void **state)
{
    struct fixture *f = *state;
    serve_with(f, &(struct block_server_config){.max_per_address = 2});
    int x = connect_from(f, LOOPBACK(2));   /* the oldest waiter of all */
    ask_small(f, x, 0);
    int a = connect_from(f, LOOPBACK(1)), b = connect_from(f, LOOPBACK(1));
    ask_small(f, a, 1);
    ask_small(f, b, 2);
    int c = connect_from(f, LOOPBACK(1));
    expect_closed(a);   /* its own oldest, not x */
    close(a);
    ask_small(f, x, 4);
    ask_small(f, b, 5);
    ask_small(f, c, 6);
    assert_int_equal(stats_of(f).connections_shed, 1);

    int s1 = connect_from(f, LOOPBACK(3)), s2 = connect_from(f, LOOPBACK(3));
    fill_until_stuck(f, s1);
    fill_until_stuck(f, s2);
    int s3 = connect_from(f, LOOPBACK(3));
    expect_closed(s3);
    close(s3);
    ask_small(f, x, 8);   /* other addresses are untouched */
    assert_int_equal(stats_of(f).connections_refused, 1);
    assert_int_equal(stats_of(f).connections_shed, 1);
    close(s1);
    close(s2);
    close(x);
    close(b);
    close(c);
}

/* ---- out of descriptors ------------------------------------------------------ */

/* Lower the soft RLIMIT_NOFILE so that no descriptor is free (every number
 * below the limit is taken); *saved gets the old limits. */
static void use_up_descriptors(int open_fd, struct rlimit *saved)
{
    assert_int_equal(getrlimit(RLIMIT_NOFILE, saved), 0);
    int lowest = fcntl(open_fd, F_DUPFD_CLOEXEC, 0);
    assert_true(lowest >= 0);
    close(lowest);
    struct rlimit tight = {.rlim_cur = (rlim_t)lowest, .rlim_max = saved->rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);
}

/* Out of descriptors, a newcomer takes the slot (and the descriptor) of the
 * longest waiter; it used to wait in the backlog until a tick found room. */
static void test_out_of_descriptors_sheds_a_waiter(void **state)
{
    struct fixture *f = *state;
    int w = connect_to(f);
    assert_int_equal(send(w, "C", 1, MSG_NOSIGNAL), 1);
    int stuck = connect_to(f);
    fill_until_stuck(f, stuck);
    int n = client_socket(0);
    assert_true(n >= 0);
    wait_accepted(f, 2);

    struct rlimit saved;
    use_up_descriptors(n, &saved);
    /* Under the lowered limit: no cmocka assertion (its longjmp would keep it). */
    char err[CASCADE_ERRLEN] = "";
    uint8_t req[WIRE_PEER_REQUEST_LEN], head[WIRE_PEER_ANSWER_HEADER_LEN];
    encode_request(req, f->small.meta.cascade_hash, 0);
    int rc = client_connect(n, &f->addr);
    if (rc == 0)
        rc = sock_write_full(n, req, sizeof req, IO_TIMEOUT_MS, err, sizeof err);
    if (rc == 0)
        rc = sock_read_full(n, head, sizeof head, IO_TIMEOUT_MS, err, sizeof err);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    if (rc != 0)
        print_error("newcomer out of descriptors: %s\n", err[0] ? err : strerror(errno));
    assert_int_equal(rc, 0);

    uint8_t status;
    uint64_t len;
    wire_decode_peer_answer_header(head, &status, &len);
    assert_int_equal(status, WIRE_STATUS_OK);
    uint8_t *body = malloc(len);
    assert_non_null(body);
    assert_int_equal(sock_read_full(n, body, len, IO_TIMEOUT_MS, err, sizeof err), 0);
    assert_memory_equal(body, block_data(&f->small, 0), len);
    free(body);
    expect_closed(w);
    expect_block(stuck, &f->big, 0);
    assert_int_equal(stats_of(f).connections_shed, 1);
    close(w);
    close(n);
    close(stuck);
}

/* Out of descriptors with nobody to shed, the spare descriptor lets the
 * server accept and close the newcomer at once: no spin, no hang. */
static void test_out_of_descriptors_refuses_at_once(void **state)
{
    struct fixture *f = *state;
    int stuck = connect_to(f);
    fill_until_stuck(f, stuck);
    int n = client_socket(0);
    assert_true(n >= 0);
    wait_accepted(f, 1);

    struct rlimit saved;
    use_up_descriptors(n, &saved);
    bool refused = client_connect(n, &f->addr) == 0 && closed_by_server(n);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_true(refused);
    expect_block(stuck, &f->big, 0);
    assert_int_equal(stats_of(f).connections_refused, 1);
    close(n);
    close(stuck);
}

/* ---- the attack (issue: one client locks everyone out) -------------------- */

#define ATTACKERS 4200
#define ATTACK_CAP 4096          /* the server's default max_connections */
#define FD_SLACK 256             /* descriptors for everything else in this process */
#define TRICKLE_MS 1000          /* one byte per connection per second */

struct attack {
    int *fds;
    int n;
    uint8_t req[WIRE_PEER_REQUEST_LEN];
    atomic_bool stop;
    pthread_t thread;
};

/* Every TRICKLE_MS, one more byte of the request on every connection. */
static void *attack_trickle(void *arg)
{
    struct attack *a = arg;
    for (size_t next = 1; !atomic_load(&a->stop); next++) {
        for (int t = 0; t < TRICKLE_MS / 10 && !atomic_load(&a->stop); t++)
            usleep(10000);
        for (int i = 0; i < a->n && !atomic_load(&a->stop); i++)
            if (a->fds[i] >= 0)
                send(a->fds[i], a->req + next % WIRE_PEER_REQUEST_LEN, 1,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    return NULL;
}

/* How many attackers and what cap this process's descriptor limit allows:
 * both ends of every connection live here. Scaled down, never skipped. */
static void attack_size(int *n, int *cap)
{
    struct rlimit rl;   /* starting a server raised it to the hard limit */
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    *n = ATTACKERS;
    *cap = ATTACK_CAP;
    rlim_t need = ATTACKERS + ATTACK_CAP + FD_SLACK;
    if (rl.rlim_cur >= need)
        return;
    assert_true(rl.rlim_cur > 2 * FD_SLACK);   /* room for some hundreds of attackers */
    *n = (int)((rl.rlim_cur - FD_SLACK) * ATTACKERS / (ATTACKERS + ATTACK_CAP));
    *cap = *n * ATTACK_CAP / ATTACKERS;
    print_message("RLIMIT_NOFILE is %llu, not the %llu this needs: scaled down to %d attackers "
                  "against a cap of %d connections\n", (unsigned long long)rl.rlim_cur,
                  (unsigned long long)need, *n, *cap);
}

/* n connections from `addresses` addresses from 127.0.1.1 up, each with a
 * byte of a valid request, then trickling the rest; the honest client from
 * 127.0.0.1 must get its block while they do. */
static void run_attack(struct fixture *f, int addresses)
{
    int n, cap;
    attack_size(&n, &cap);
    serve_with(f, &(struct block_server_config){.max_connections = cap});
    struct attack a = {.n = n};
    encode_request(a.req, f->big.meta.cascade_hash, 1);
    atomic_init(&a.stop, false);
    a.fds = malloc((size_t)n * sizeof *a.fds);
    assert_non_null(a.fds);
    for (int i = 0; i < n; i++) {
        a.fds[i] = connect_from(f, LOOPBACK(0x100 + 1 + (uint32_t)(i % addresses)));
        send(a.fds[i], a.req, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    assert_int_equal(pthread_create(&a.thread, NULL, attack_trickle, &a), 0);
    wait_accepted(f, (uint64_t)n);
    struct block_server_stats before = stats_of(f);
    /* The attack holds every slot it can: the global cap, or one address's. */
    uint64_t held = addresses == 1 ? 64 : (uint64_t)cap;
    assert_int_equal(before.connections_open, held);

    int honest = connect_to(f);
    ask_small(f, honest, 0);
    close(honest);

    atomic_store(&a.stop, true);
    pthread_join(a.thread, NULL);
    struct block_server_stats st = stats_of(f);
    print_message("%d trickling connections from %d address(es), cap %d: %llu shed, %llu refused, "
                  "%llu held; the honest client got its block\n", n, addresses, cap,
                  (unsigned long long)st.connections_shed,
                  (unsigned long long)st.connections_refused, (unsigned long long)held);
    assert_true(st.connections_shed + st.connections_refused >= (uint64_t)n - held);
    assert_int_equal(st.blocks_served, 1);   /* only the honest request was whole */
    for (int i = 0; i < n; i++)
        close(a.fds[i]);
    free(a.fds);
}

static void test_attack_from_one_address(void **state)
{
    run_attack(*state, 1);
}

static void test_attack_from_100_addresses(void **state)
{
    run_attack(*state, 100);
}

/* The server's end of the client connection fd (in this very process). */
static int server_side_of(int client_fd)
{
    struct sockaddr_in mine, theirs;
    socklen_t len = sizeof mine;
    assert_int_equal(getsockname(client_fd, (struct sockaddr *)&mine, &len), 0);
    for (int fd = 0; fd < 4096; fd++) {
        len = sizeof theirs;
        if (fd == client_fd || getpeername(fd, (struct sockaddr *)&theirs, &len) != 0 ||
            len != sizeof theirs)
            continue;
        if (theirs.sin_port == mine.sin_port && theirs.sin_addr.s_addr == mine.sin_addr.s_addr)
            return fd;
    }
    return -1;
}

struct greedy {
    int fd;
    const struct file_fixture *ff;
    int blocks;
    atomic_uint_fast64_t got;   /* block bytes read so far */
};

static void *greedy_reader(void *arg)
{
    struct greedy *g = arg;
    for (int i = 0; i < g->blocks; i++) {
        uint8_t *body;
        uint64_t len;
        if (read_answer(g->fd, &body, &len) != WIRE_STATUS_OK)
            break;
        free(body);
        atomic_fetch_add(&g->got, len);
    }
    return NULL;
}

/* Uploads are shared: a client that asks for 32 MiB at once does not make
 * another wait for all of it (connections take turns of at most a MiB),
 * and each connection may queue only a little unsent data in the kernel
 * (TCP_NOTSENT_LOWAT), so that on a capped uplink the turns stay real. */
static void test_uploads_are_shared(void **state)
{
    struct fixture *f = *state;
    enum { ASKED = 32 };
    struct greedy g = {.fd = connect_to(f), .ff = &f->big, .blocks = ASKED};
    atomic_init(&g.got, 0);
    for (int i = 0; i < ASKED; i++)
        send_request(g.fd, f->big.meta.cascade_hash, (uint64_t)i % BIG_BLOCKS);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, greedy_reader, &g), 0);
    int other = connect_to(f);
    send_request(other, f->big.meta.cascade_hash, 3);
    expect_block(other, &f->big, 3);
    uint64_t greedy_got = atomic_load(&g.got);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&g.got), (uint64_t)ASKED * BIG_BS);
    assert_true(greedy_got < (uint64_t)ASKED * BIG_BS / 2);   /* the other had its turn early */

    int srv_fd = server_side_of(other);
    assert_true(srv_fd >= 0);
    int lowat = 0;
    socklen_t len = sizeof lowat;
    assert_int_equal(getsockopt(srv_fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, &len), 0);
    assert_true(lowat > 0 && lowat <= 256 * 1024);
    close(other);
    close(g.fd);
}

/* ---- upload slots ---------------------------------------------------------- */

/* Wait (bounded) until the server is sending a big block (to the client
 * fill_until_stuck filled): its requests may still sit unread a moment. */
static void wait_sending_big(const struct fixture *f)
{
    for (int i = 0; i < IO_TIMEOUT_MS / 10 && atomic_load(&f->big.pins) < 1; i++)
        usleep(10000);
    assert_true(atomic_load(&f->big.pins) >= 1);
}

/* With one slot: a client that stops reading holds it only until others
 * queue and a slice has passed; a newcomer's answer queues meanwhile and
 * then comes whole. */
static void test_stalled_holder_gives_its_slot_up(void **state)
{
    struct fixture *f = *state;
    serve_with(f, &(struct block_server_config){.upload_slots = 1});
    int stuck = connect_to(f);
    fill_until_stuck(f, stuck);
    wait_sending_big(f);
    int other = connect_to(f);
    send_request(other, f->big.meta.cascade_hash, 5);
    expect_block(other, &f->big, 5);   /* within IO_TIMEOUT_MS: the stuck one gave way */
    expect_block(stuck, &f->big, 0);   /* and it still gets its bytes afterwards */
    close(other);
    close(stuck);
}

/* With one slot held and one answer queued, a new block request is told
 * "not now" (status 2, the connection kept) twice in a row, and then
 * queued all the same: nobody is turned away for ever. A status answer
 * never waits for a slot. */
static void test_full_queue_says_not_now_then_queues(void **state)
{
    struct fixture *f = *state;
    serve_with(f, &(struct block_server_config){.upload_slots = 1});
    int stuck = connect_to(f);
    fill_until_stuck(f, stuck);
    wait_sending_big(f);                              /* it holds the slot */
    int queued = connect_to(f);
    send_request(queued, f->big.meta.cascade_hash, 1);   /* waits for it */
    for (int i = 0; i < IO_TIMEOUT_MS / 10 && stats_of(f).connections_open < 2; i++)
        usleep(10000);
    usleep(100 * 1000);   /* the server has read that request (loopback: at once) */
    int late = connect_to(f);
    send_request(late, f->small.meta.cascade_hash, SMALL_MISSING_A);
    expect_message(late, WIRE_STATUS_NOT_PRESENT, "block 3 not present");
    for (int i = 0; i < 2; i++) {
        send_request(late, f->small.meta.cascade_hash, 0);
        expect_message(late, WIRE_STATUS_NOT_PRESENT,
                       "block 0 not sent now: 1 answers queued, ask elsewhere");
    }
    send_request(late, f->small.meta.cascade_hash, 0);
    expect_block(queued, &f->big, 1);
    expect_block(late, &f->small, 0);
    expect_block(stuck, &f->big, 0);
    close(late);
    close(queued);
    close(stuck);
}

/* hold_back is asked about held blocks only, told whether others are being
 * sent to, and a "hold it" becomes status 2 on a connection kept open; a
 * block held back twice in a row from one connection is sent the third
 * time. */
static void test_hold_back_hook(void **state)
{
    struct fixture *f = *state;
    f->hold_small_block = 9;
    int fd = connect_to(f);
    send_request(fd, f->small.meta.cascade_hash, 9);
    expect_message(fd, WIRE_STATUS_NOT_PRESENT, "block 9 not offered now: other peers have it");
    assert_int_equal(atomic_load(&f->hold_calls), 1);
    assert_int_equal(atomic_load(&f->hold_others_waiting), 0);   /* nobody else */
    send_request(fd, f->small.meta.cascade_hash, SMALL_MISSING_B);
    expect_message(fd, WIRE_STATUS_NOT_PRESENT, "block 7 not present");
    assert_int_equal(atomic_load(&f->hold_calls), 1);            /* not asked: not held */
    send_request(fd, f->small.meta.cascade_hash, 8);
    expect_block(fd, &f->small, 8);

    int stuck = connect_to(f);
    fill_until_stuck(f, stuck);
    wait_sending_big(f);          /* being sent to from now on */
    send_request(fd, f->small.meta.cascade_hash, 9);
    expect_message(fd, WIRE_STATUS_NOT_PRESENT, "block 9 not offered now: other peers have it");
    assert_int_equal(atomic_load(&f->hold_others_waiting), 1);
    assert_int_equal(atomic_load(&f->small.pins), 0);            /* released at once */
    /* Held back twice in a row from this connection: the third ask gets it. */
    int calls = atomic_load(&f->hold_calls);
    send_request(fd, f->small.meta.cascade_hash, 9);
    expect_block(fd, &f->small, 9);
    assert_int_equal(atomic_load(&f->hold_calls), calls);   /* not even asked */
    close(stuck);
    close(fd);
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
        cmocka_unit_test_setup_teardown(test_stats_count_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_open_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uploads_are_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trickled_request_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_new_connection_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_between_requests_is_idle_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_pipelined_reader_keeps_its_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_sheds_longest_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_refuses_when_all_are_sending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_address_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_descriptors_sheds_a_waiter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_descriptors_refuses_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attack_from_one_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attack_from_100_addresses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_holder_gives_its_slot_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_queue_says_not_now_then_queues, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_back_hook, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
