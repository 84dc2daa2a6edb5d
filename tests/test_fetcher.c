/* Unit tests for the fetcher (net/fetcher.c, peer_conn.c): a real block
 * server serving a complete store, and fake peers written here (threads on
 * 127.0.0.1) that answer wrong hashes, status 2, or stall. Checks that the
 * fetcher completes from good peers, that bad bytes never land, that an
 * urgent block jumps the queue, and that with no usable peer the waits
 * give up with the documented errors. No timed assertions: only bounds. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "cascade/log.h"
#include "cascade/sha256.h"
#include "cascade/store.h"
#include "cascade/util.h"
#include "support.h"
#include "net/block_server.h"
#include "net/fetcher.h"
#include "net/sock.h"
#include "net/wire.h"

/* ---- fixture: random data, a hand-built meta, a complete source store ---- */

struct fixture {
    char dir[64];
    uint8_t *data;
    struct cascade_meta meta;
    struct cascade_store *dst;     /* the store the fetcher fills */
};

static void build(struct fixture *f, uint64_t size, uint64_t bs, unsigned seed)
{
    assert_int_equal(test_make_tmpdir(f->dir, sizeof f->dir, "test_fetcher"), 0);
    test_build_meta(&f->meta, &f->data, size, bs, seed);

    char cache[128], err[CASCADE_ERRLEN];
    snprintf(cache, sizeof cache, "%s/dst", f->dir);
    struct cascade_store_options o = {.cache_root = cache};
    assert_int_equal(cascade_store_open(&f->meta, &o, &f->dst, err, sizeof err), 0);
}

/* A complete store over a data file written from f->data. */
static struct cascade_store *source_store(struct fixture *f)
{
    char path[128], cache[128], err[CASCADE_ERRLEN];
    snprintf(path, sizeof path, "%s/source.bin", f->dir);
    snprintf(cache, sizeof cache, "%s/src", f->dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(f->data, 1, f->meta.size, fp), f->meta.size);
    assert_int_equal(fclose(fp), 0);
    struct cascade_store_options o = {.cache_root = cache, .data_path = path};
    struct cascade_store *st;
    assert_int_equal(cascade_store_open(&f->meta, &o, &st, err, sizeof err), 0);
    assert_int_equal(cascade_store_adopt(st, NULL), (int64_t)f->meta.block_count);
    return st;
}

static void teardown(struct fixture *f)
{
    cascade_store_close(f->dst);
    test_remove_tree(f->dir);
    test_free_meta(&f->meta, &f->data);
}

/* Every block in dst equals the original bytes. */
static void assert_dst_matches(struct fixture *f)
{
    uint8_t *buf = malloc(f->meta.block_size);
    assert_non_null(buf);
    for (uint64_t i = 0; i < f->meta.block_count; i++) {
        uint64_t len = cascade_meta_block_len(&f->meta, i);
        assert_int_equal(cascade_store_read(f->dst, i, 0, buf, len), CASCADE_STORE_OK);
        assert_memory_equal(buf, f->data + i * f->meta.block_size, len);
    }
    free(buf);
}

/* ---- fake peers --------------------------------------------------------- */

enum fake_mode {
    FAKE_GOOD, FAKE_WRONG_HASH, FAKE_NOT_PRESENT, FAKE_STALL,
    FAKE_LONG,          /* status 0 with one byte more than the block */
    FAKE_BAD_STATUS,    /* status 9 */
    FAKE_CLOSE,         /* hangs up on every request */
    FAKE_DRIBBLE,       /* good answers, written dribble_step bytes at a time */
};

struct fake_peer {
    enum fake_mode mode;
    struct fixture *fx;
    int listen_fd;
    struct sockaddr_in addr;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    bool gated;                 /* answer nothing until the gate opens */
    size_t dribble_step;
    bool gate_open;
    uint64_t log[4096];         /* blocks requested, in order (the first 4096) */
    size_t n_log;
    size_t n_requests;          /* all requests */
    uint64_t watch;             /* block whose first request position is noted */
    size_t watch_pos;           /* SIZE_MAX: never asked */
};

static bool fake_stopping(struct fake_peer *fp)
{
    pthread_mutex_lock(&fp->lock);
    bool s = fp->stop;
    pthread_mutex_unlock(&fp->lock);
    return s;
}

/* Read exactly n bytes, polling so that stop is noticed. */
static int fake_read(struct fake_peer *fp, int fd, uint8_t *buf, size_t n)
{
    size_t have = 0;
    while (have < n) {
        if (fake_stopping(fp))
            return -1;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        ssize_t r = recv(fd, buf + have, n - have, 0);
        if (r <= 0)
            return -1;
        have += (size_t)r;
    }
    return 0;
}

static int fake_answer(struct fake_peer *fp, int fd, uint64_t block)
{
    struct fixture *fx = fp->fx;
    char err[CASCADE_ERRLEN];
    if (fp->mode == FAKE_NOT_PRESENT) {
        uint8_t ans[WIRE_PEER_ANSWER_HEADER_LEN + 11];
        wire_encode_peer_answer_header(WIRE_STATUS_NOT_PRESENT, 11, ans);
        memcpy(ans + WIRE_PEER_ANSWER_HEADER_LEN, "not present", 11);
        return sock_write_full(fd, ans, sizeof ans, 5000, err, sizeof err);
    }
    if (fp->mode == FAKE_BAD_STATUS) {
        uint8_t ans[WIRE_PEER_ANSWER_HEADER_LEN + 3];
        wire_encode_peer_answer_header(9, 3, ans);
        memcpy(ans + WIRE_PEER_ANSWER_HEADER_LEN, "???", 3);
        return sock_write_full(fd, ans, sizeof ans, 5000, err, sizeof err);
    }
    uint64_t len = cascade_meta_block_len(&fx->meta, block) + (fp->mode == FAKE_LONG);
    uint8_t *body = calloc(1, WIRE_PEER_ANSWER_HEADER_LEN + len);
    if (!body)
        return -1;
    memcpy(body + WIRE_PEER_ANSWER_HEADER_LEN, fx->data + block * fx->meta.block_size,
           cascade_meta_block_len(&fx->meta, block));
    if (fp->mode == FAKE_WRONG_HASH)
        body[WIRE_PEER_ANSWER_HEADER_LEN + len / 2] ^= 0x5a;
    /* Header and body in one write: no Nagle/delayed-ACK pause between them. */
    wire_encode_peer_answer_header(WIRE_STATUS_OK, len, body);
    size_t total = WIRE_PEER_ANSWER_HEADER_LEN + len, step = fp->mode == FAKE_DRIBBLE ? fp->dribble_step : total;
    int r = 0;
    for (size_t off = 0; off < total && r == 0; off += step) {
        size_t n = total - off < step ? total - off : step;
        r = sock_write_full(fd, body + off, n, 5000, err, sizeof err);
        if (fp->mode == FAKE_DRIBBLE && (off / step) % 64 == 0)
            usleep(200);   /* let the reader see partial headers and bodies */
    }
    free(body);
    return r;
}

static void fake_serve(struct fake_peer *fp, int fd)
{
    uint8_t req[WIRE_PEER_REQUEST_LEN];
    while (fake_read(fp, fd, req, sizeof req) == 0) {
        struct wire_peer_request r;
        char err[CASCADE_ERRLEN];
        if (wire_decode_peer_request(req, &r, err, sizeof err) < 0 ||
            r.block >= fp->fx->meta.block_count ||
            memcmp(r.hash, fp->fx->meta.cascade_hash, CASCADE_HASH_LEN) != 0)
            return;   /* the fetcher asked for something it should not: it sees a reset */
        pthread_mutex_lock(&fp->lock);
        if (fp->n_log < sizeof fp->log / sizeof fp->log[0])
            fp->log[fp->n_log++] = r.block;
        if (r.block == fp->watch && fp->watch_pos == SIZE_MAX)
            fp->watch_pos = fp->n_requests;
        fp->n_requests++;
        while (fp->gated && !fp->gate_open && !fp->stop)
            pthread_cond_wait(&fp->cond, &fp->lock);
        pthread_mutex_unlock(&fp->lock);
        if (fp->mode == FAKE_STALL)
            continue;   /* read on, answer never */
        if (fp->mode == FAKE_CLOSE)
            return;
        if (fake_answer(fp, fd, r.block) < 0)
            return;
    }
}

static void *fake_main(void *arg)
{
    struct fake_peer *fp = arg;
    while (!fake_stopping(fp)) {
        struct pollfd pfd = {.fd = fp->listen_fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        int fd = accept(fp->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        fake_serve(fp, fd);
        close(fd);
    }
    return NULL;
}

static void fake_start_step(struct fake_peer *fp, struct fixture *fx, enum fake_mode mode,
                            bool gated, size_t dribble_step)
{
    memset(fp, 0, sizeof *fp);
    fp->fx = fx;
    fp->mode = mode;
    fp->gated = gated;
    fp->dribble_step = dribble_step;
    fp->watch = 5;
    fp->watch_pos = SIZE_MAX;
    char err[CASCADE_ERRLEN];
    struct sockaddr_in a;
    sock_make_addr(0x7f000001, 0, &a);
    fp->listen_fd = sock_listen(&a, 16, err, sizeof err);
    assert_true(fp->listen_fd >= 0);
    assert_int_equal(sock_local_addr(fp->listen_fd, &fp->addr), 0);
    pthread_mutex_init(&fp->lock, NULL);
    pthread_cond_init(&fp->cond, NULL);
    assert_int_equal(pthread_create(&fp->thread, NULL, fake_main, fp), 0);
}

static void fake_start(struct fake_peer *fp, struct fixture *fx, enum fake_mode mode, bool gated)
{
    fake_start_step(fp, fx, mode, gated, 0);
}

static void fake_open_gate(struct fake_peer *fp)
{
    pthread_mutex_lock(&fp->lock);
    fp->gate_open = true;
    pthread_cond_broadcast(&fp->cond);
    pthread_mutex_unlock(&fp->lock);
}

static void fake_stop(struct fake_peer *fp)
{
    pthread_mutex_lock(&fp->lock);
    fp->stop = true;
    pthread_cond_broadcast(&fp->cond);
    pthread_mutex_unlock(&fp->lock);
    pthread_join(fp->thread, NULL);
    close(fp->listen_fd);
    pthread_cond_destroy(&fp->cond);
    pthread_mutex_destroy(&fp->lock);
}

/* ---- a fake tracker: answers every query with a fixed peer list ---------- */

struct fake_tracker {
    int listen_fd;
    struct sockaddr_in addr;
    struct sockaddr_in peers[4];
    size_t n_peers;
    size_t first_n;              /* peers in the first answer (later ones: all) */
    pthread_t thread;
    pthread_mutex_t lock;
    bool stop;
    int lists, subscribes;
    uint32_t sub_ip;             /* what the last subscribe announced */
    uint16_t sub_port;
    uint8_t sub_hash[CASCADE_HASH_LEN];
};

static void tracker_answer(struct fake_tracker *t, int fd)
{
    uint8_t req[WIRE_TRACKER_REQUEST_LEN];
    char err[CASCADE_ERRLEN];
    struct wire_tracker_request r;
    if (sock_read_full(fd, req, sizeof req, 2000, err, sizeof err) < 0 ||
        wire_decode_tracker_request(req, &r, err, sizeof err) < 0)
        return;
    pthread_mutex_lock(&t->lock);
    size_t n = t->lists + t->subscribes == 0 ? t->first_n : t->n_peers;
    if (r.command == WIRE_CMD_SUBSCRIBE) {
        t->subscribes++;
        t->sub_ip = r.ip;
        t->sub_port = r.port;
        memcpy(t->sub_hash, r.hash, CASCADE_HASH_LEN);
    } else {
        t->lists++;
    }
    pthread_mutex_unlock(&t->lock);
    uint8_t ans[WIRE_TRACKER_ANSWER_HEADER_LEN + 4 * WIRE_PEER_RECORD_LEN];
    wire_encode_tracker_answer_header(0, (uint32_t)(n * WIRE_PEER_RECORD_LEN), ans);
    for (size_t i = 0; i < n; i++) {
        struct wire_peer_record rec = {.ip = ntohl(t->peers[i].sin_addr.s_addr),
                                       .port = ntohs(t->peers[i].sin_port), .last_seen = 1};
        wire_encode_peer_record(&rec, ans + WIRE_TRACKER_ANSWER_HEADER_LEN + i * WIRE_PEER_RECORD_LEN);
    }
    (void)sock_write_full(fd, ans, WIRE_TRACKER_ANSWER_HEADER_LEN + n * WIRE_PEER_RECORD_LEN,
                          2000, err, sizeof err);
}

static void *tracker_main(void *arg)
{
    struct fake_tracker *t = arg;
    for (;;) {
        pthread_mutex_lock(&t->lock);
        bool stop = t->stop;
        pthread_mutex_unlock(&t->lock);
        if (stop)
            return NULL;
        struct pollfd pfd = {.fd = t->listen_fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        int fd = accept(t->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        tracker_answer(t, fd);
        close(fd);
    }
}

static void tracker_start(struct fake_tracker *t, const struct sockaddr_in *peers, size_t n,
                          size_t first_n)
{
    memset(t, 0, sizeof *t);
    memcpy(t->peers, peers, n * sizeof *peers);
    t->n_peers = n;
    t->first_n = first_n;
    char err[CASCADE_ERRLEN];
    struct sockaddr_in a;
    sock_make_addr(0x7f000001, 0, &a);
    t->listen_fd = sock_listen(&a, 16, err, sizeof err);
    assert_true(t->listen_fd >= 0);
    assert_int_equal(sock_local_addr(t->listen_fd, &t->addr), 0);
    pthread_mutex_init(&t->lock, NULL);
    assert_int_equal(pthread_create(&t->thread, NULL, tracker_main, t), 0);
}

static void tracker_stop(struct fake_tracker *t)
{
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    close(t->listen_fd);
    pthread_mutex_destroy(&t->lock);
}

static struct fetcher *start_fetcher(struct fixture *fx, const struct sockaddr_in *peers,
                                     size_t n, int depth, int request_timeout_ms)
{
    struct fetcher_config cfg = {
        .static_peers = peers,
        .n_static_peers = n,
        .pipeline_depth = depth,
        .request_timeout_ms = request_timeout_ms,
        .connect_timeout_ms = 2000,
    };
    struct fetcher *f = NULL;
    char err[CASCADE_ERRLEN];
    int r = fetcher_start(fx->dst, &cfg, &f, err, sizeof err);
    if (r != 0)
        fprintf(stderr, "fetcher_start: %s\n", err);
    assert_int_equal(r, 0);
    return f;
}

/* ---- tests ------------------------------------------------------------- */

/* A real block server with the whole file: everything arrives, intact.
 * Small blocks: many answers arrive in one read, more than the put queue
 * takes at once, so answers left in the read buffer must still be parsed
 * when the socket has nothing more to say. */
static void run_fetch_all_from_block_server(uint64_t size, uint64_t bs)
{
    struct fixture fx;
    build(&fx, size, bs, 1);
    struct cascade_store *src = source_store(&fx);
    struct block_server_config bc = {0};
    sock_make_addr(0x7f000001, 0, &bc.listen);
    struct block_server *srv;
    char err[CASCADE_ERRLEN];
    assert_int_equal(block_server_start(&bc, &srv, err, sizeof err), 0);
    assert_int_equal(block_server_add_store(srv, src), 0);
    struct sockaddr_in a;
    block_server_address(srv, &a);

    struct fetcher *f = start_fetcher(&fx, &a, 1, 0, 0);
    fetcher_want_all(f);
    assert_int_equal(fetcher_wait_complete(f, 60000, 30000), 0);
    assert_int_equal(fetcher_wait(f, fx.meta.block_count - 1, 0), 0);
    struct fetcher_stats s;
    fetcher_get_stats(f, &s);
    assert_int_equal(s.blocks_fetched, fx.meta.block_count);
    assert_int_equal(s.bytes_fetched, fx.meta.size);
    assert_int_equal(s.bad_blocks, 0);
    fetcher_stop(f);
    assert_true(cascade_store_complete(fx.dst));
    assert_dst_matches(&fx);

    block_server_stop(srv);
    cascade_store_close(src);
    teardown(&fx);
}

static void test_fetch_all_from_block_server(void **state)
{
    (void)state;
    run_fetch_all_from_block_server(3 * 65536 + 1234, 4096);
    run_fetch_all_from_block_server(700 * 1024 + 5, 1024);
}

/* Peers from a tracker: the fetcher subscribes the file announcing the
 * address it reaches the tracker from and its own port, skips itself in the
 * list it gets back, and completes from the other peer. */
static void test_peers_from_tracker(void **state)
{
    (void)state;
    struct fixture fx;
    build(&fx, 40 * 1024 + 3, 1024, 10);
    struct fake_peer self, good;
    fake_start(&self, &fx, FAKE_GOOD, false);   /* stands in for our own server */
    fake_start(&good, &fx, FAKE_GOOD, false);
    struct sockaddr_in listed[2] = {self.addr, good.addr};
    struct fake_tracker trk;
    tracker_start(&trk, listed, 2, 2);

    struct fetcher_config cfg = {
        .tracker = trk.addr,
        .subscribe = true,
        .announce_port = ntohs(self.addr.sin_port),
        .self = self.addr,
    };
    struct fetcher *f = NULL;
    char err[CASCADE_ERRLEN];
    assert_int_equal(fetcher_start(fx.dst, &cfg, &f, err, sizeof err), 0);
    fetcher_want_all(f);
    assert_int_equal(fetcher_wait_complete(f, 60000, 30000), 0);
    struct fetcher_stats s;
    fetcher_get_stats(f, &s);
    fetcher_stop(f);
    tracker_stop(&trk);
    fake_stop(&self);
    fake_stop(&good);

    assert_int_equal(s.peers_known, 1);          /* ourselves left out */
    assert_int_equal(self.n_log, 0);             /* never asked ourselves */
    assert_true(good.n_log >= 1);
    assert_true(trk.subscribes >= 1);
    assert_int_equal(trk.sub_ip, 0x7f000001);    /* learned from the tracker connection */
    assert_int_equal(trk.sub_port, ntohs(self.addr.sin_port));
    assert_memory_equal(trk.sub_hash, fx.meta.cascade_hash, CASCADE_HASH_LEN);
    assert_dst_matches(&fx);
    teardown(&fx);
}

/* An urgent block (a reader waits) stuck on a peer that never answers is
 * asked of another peer long before the request timeout, while plenty of
 * other blocks are still missing (so not by the endgame). The tracker
 * lists only the staller at first, so the block surely goes there; the
 * good peer appears in the next (1 s) list. */
static void test_stuck_urgent_block_moves(void **state)
{
    (void)state;
    struct fixture fx;
    build(&fx, 65536 * 1024, 1024, 11);
    struct fake_peer stall, good;
    fake_start(&stall, &fx, FAKE_STALL, false);
    fake_start(&good, &fx, FAKE_GOOD, false);
    struct sockaddr_in listed[2] = {stall.addr, good.addr};
    struct fake_tracker trk;
    tracker_start(&trk, listed, 2, 1);
    struct fetcher_config cfg = {
        .tracker = trk.addr,
        .pipeline_depth = 1,
        .request_timeout_ms = 120000,   /* far longer than the wait below */
        .tracker_interval_s = 1,
    };
    struct fetcher *f = NULL;
    char err[CASCADE_ERRLEN];
    assert_int_equal(fetcher_start(fx.dst, &cfg, &f, err, sizeof err), 0);
    fetcher_want_all(f);
    fetcher_want(f, 5, 1, FETCH_URGENT);
    assert_int_equal(fetcher_wait(f, 5, 60000), 0);
    fetcher_stop(f);
    tracker_stop(&trk);
    fake_stop(&stall);
    fake_stop(&good);

    bool staller_had_it = false;
    for (size_t i = 0; i < stall.n_log; i++)
        staller_had_it |= stall.log[i] == 5;
    assert_true(staller_had_it);
    /* The good peer was asked for it well before the endgame (the last
     * 1024 missing blocks), which is what a 1.5 s limit means here. */
    assert_true(good.watch_pos < 65536 - 1024);
    assert_true(cascade_store_has(fx.dst, 5));
    teardown(&fx);
}

/* With a pipeline of one, an urgent block wanted after the whole file at
 * background priority is the next request sent (the peer holds its answers
 * until both wants are in, so at most one request went out before). */
static void test_urgent_jumps_the_queue(void **state)
{
    (void)state;
    struct fixture fx;
    build(&fx, 200 * 1024, 1024, 2);
    struct fake_peer fp;
    fake_start(&fp, &fx, FAKE_GOOD, true);
    struct fetcher *f = start_fetcher(&fx, &fp.addr, 1, 1, 0);
    uint64_t last = fx.meta.block_count - 1;
    fetcher_want_all(f);
    fetcher_want(f, last, 1, FETCH_URGENT);
    fetcher_want(f, 100, 3, FETCH_PREFETCH);
    fake_open_gate(&fp);
    assert_int_equal(fetcher_wait_complete(f, 60000, 30000), 0);
    fetcher_stop(f);
    fake_stop(&fp);

    size_t pos_urgent = SIZE_MAX, pos_prefetch = SIZE_MAX;
    for (size_t i = 0; i < fp.n_log; i++) {
        if (fp.log[i] == last && pos_urgent == SIZE_MAX)
            pos_urgent = i;
        if (fp.log[i] == 100 && pos_prefetch == SIZE_MAX)
            pos_prefetch = i;
    }
    assert_true(pos_urgent <= 1);
    assert_true(pos_prefetch <= 2);
    assert_true(pos_urgent < pos_prefetch);
    /* Apart from those, background blocks go lowest index first. */
    uint64_t prev = 0;
    for (size_t i = 0; i < fp.n_log; i++) {
        if (fp.log[i] == last || (fp.log[i] >= 100 && fp.log[i] < 103))
            continue;
        assert_true(fp.log[i] >= prev);
        prev = fp.log[i];
    }
    assert_dst_matches(&fx);
    teardown(&fx);
}

/* Only a peer that lies: nothing lands, the peer is dropped, and waiting
 * for completion reports that no peer is usable. */
static void test_wrong_hash_peer_is_dropped(void **state)
{
    (void)state;
    struct fixture fx;
    build(&fx, 64 * 1024, 4096, 3);
    struct fake_peer fp;
    fake_start(&fp, &fx, FAKE_WRONG_HASH, false);
    struct fetcher *f = start_fetcher(&fx, &fp.addr, 1, 0, 0);
    fetcher_want_all(f);
    assert_int_equal(fetcher_wait_complete(f, 60000, 1500), -EHOSTUNREACH);
    struct fetcher_stats s;
    fetcher_get_stats(f, &s);
    assert_true(s.bad_blocks >= 1);
    assert_int_equal(s.peers_dropped, 1);
    assert_int_equal(s.blocks_fetched, 0);
    fetcher_stop(f);
    fake_stop(&fp);
    assert_int_equal(cascade_store_held_count(fx.dst), 0);
    teardown(&fx);
}

/* A peer without the blocks (status 2) and one that never answers give
 * no block; with them alone the fetcher reports it cannot progress. */
static void test_not_present_and_stall_alone(void **state)
{
    (void)state;
    struct fixture fx;
    build(&fx, 16 * 1024, 1024, 4);
    struct fake_peer np, stall;
    fake_start(&np, &fx, FAKE_NOT_PRESENT, false);
    fake_start(&stall, &fx, FAKE_STALL, false);
    struct sockaddr_in peers[2] = {np.addr, stall.addr};
    struct fetcher *f = start_fetcher(&fx, peers, 2, 0, 300);
    fetcher_want_all(f);
    assert_int_equal(fetcher_wait_complete(f, 60000, 1500), -EHOSTUNREACH);
    assert_int_equal(fetcher_first_missing(f), 0);
    fetcher_stop(f);
    fake_stop(&np);
    fake_stop(&stall);
    assert_true(np.n_log >= 1);     /* both were asked */
    assert_true(stall.n_log >= 1);
    assert_int_equal(cascade_store_held_count(fx.dst), 0);
    teardown(&fx);
}

/* Bad peers of every kind beside one good one: the file completes, intact,
 * and the liar is dropped if it got any work. */
static void test_completes_despite_bad_peers(void **state)
{
    (void)state;
    struct fixture fx;
    build(&fx, 512 * 1024 + 17, 4096, 5);
    struct fake_peer bad, np, stall, good;
    fake_start(&bad, &fx, FAKE_WRONG_HASH, false);
    fake_start(&np, &fx, FAKE_NOT_PRESENT, false);
    fake_start(&stall, &fx, FAKE_STALL, false);
    fake_start(&good, &fx, FAKE_GOOD, false);
    struct sockaddr_in peers[4] = {bad.addr, np.addr, stall.addr, good.addr};
    struct fetcher *f = start_fetcher(&fx, peers, 4, 4, 500);
    fetcher_want_all(f);
    assert_int_equal(fetcher_wait_complete(f, 120000, 30000), 0);
    struct fetcher_stats s;
    fetcher_get_stats(f, &s);
    fetcher_stop(f);
    fake_stop(&bad);
    fake_stop(&np);
    fake_stop(&stall);
    fake_stop(&good);
    if (bad.n_log > 0) {
        assert_true(s.bad_blocks >= 1);
        assert_true(s.peers_dropped >= 1);
    }
    assert_int_equal(s.blocks_fetched, fx.meta.block_count);
    assert_dst_matches(&fx);
    teardown(&fx);
}

/* A peer that breaks the protocol (wrong length, unknown status) is
 * dropped; one that only hangs up is backed off, not dropped. Nothing
 * lands either way. */
static void run_lone_bad_peer(enum fake_mode mode, uint64_t want_dropped)
{
    struct fixture fx;
    build(&fx, 32 * 1024, 4096, 8);
    struct fake_peer fp;
    fake_start(&fp, &fx, mode, false);
    struct fetcher *f = start_fetcher(&fx, &fp.addr, 1, 0, 0);
    fetcher_want_all(f);
    assert_int_equal(fetcher_wait_complete(f, 60000, 1500), -EHOSTUNREACH);
    struct fetcher_stats s;
    fetcher_get_stats(f, &s);
    fetcher_stop(f);
    fake_stop(&fp);
    assert_true(fp.n_log >= 1);
    assert_int_equal(s.peers_dropped, want_dropped);
    assert_int_equal(s.blocks_fetched, 0);
    assert_int_equal(cascade_store_held_count(fx.dst), 0);
    teardown(&fx);
}

static void test_wrong_length_peer_is_dropped(void **state)
{
    (void)state;
    run_lone_bad_peer(FAKE_LONG, 1);
}

static void test_unknown_status_peer_is_dropped(void **state)
{
    (void)state;
    run_lone_bad_peer(FAKE_BAD_STATUS, 1);
}

static void test_hanging_up_peer_is_backed_off(void **state)
{
    (void)state;
    run_lone_bad_peer(FAKE_CLOSE, 0);
}

/* Answers that arrive a few bytes at a time are put together correctly. */
static void run_dribble(uint64_t size, uint64_t bs, size_t step)
{
    struct fixture fx;
    build(&fx, size, bs, 9);
    struct fake_peer fp;
    fake_start_step(&fp, &fx, FAKE_DRIBBLE, false, step);
    struct fetcher *f = start_fetcher(&fx, &fp.addr, 1, 3, 0);
    fetcher_want_all(f);
    assert_int_equal(fetcher_wait_complete(f, 60000, 30000), 0);
    fetcher_stop(f);
    fake_stop(&fp);
    assert_dst_matches(&fx);
    teardown(&fx);
}

static void test_answers_in_pieces(void **state)
{
    (void)state;
    run_dribble(5 * 4096 + 100, 4096, 7);           /* split headers, small bodies */
    run_dribble(3 * 40000 + 100, 40000, 1009);      /* bodies read straight into buffers */
}

/* No peers at all: a wait times out, completion reports no usable peer. */
static void test_no_peers(void **state)
{
    (void)state;
    struct fixture fx;
    build(&fx, 8192, 1024, 6);
    struct fetcher *f = start_fetcher(&fx, NULL, 0, 0, 0);
    fetcher_want(f, 3, 1, FETCH_URGENT);
    assert_int_equal(fetcher_wait(f, 3, 200), -ETIMEDOUT);
    uint64_t t0 = cascade_now_ms();
    assert_int_equal(fetcher_wait_complete(f, 60000, 500), -EHOSTUNREACH);
    assert_true(cascade_now_ms() - t0 < 30000);   /* bounded, not a hang */
    assert_int_equal(fetcher_wait_complete(f, 0, -1), -ETIMEDOUT);
    /* a zero timeout still reports the stall (cascade get polls this way) */
    assert_int_equal(fetcher_wait_complete(f, 0, 500), -EHOSTUNREACH);
    assert_int_equal(fetcher_wait(f, 99, 10), -ERANGE);
    fetcher_stop(f);
    fetcher_stop(NULL);
    teardown(&fx);
}

/* An empty file is complete from the start. */
static void test_empty_file(void **state)
{
    (void)state;
    struct fixture fx;
    build(&fx, 0, 1024, 7);
    struct fetcher *f = start_fetcher(&fx, NULL, 0, 0, 0);
    fetcher_want_all(f);
    assert_int_equal(fetcher_wait_complete(f, 1000, 1000), 0);
    fetcher_stop(f);
    teardown(&fx);
}

int main(void)
{
    cascade_log_init("test_fetcher", getenv("CASCADE_TEST_DEBUG") ? CASCADE_LOG_DEBUG
                                                                   : CASCADE_LOG_ERROR, false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetch_all_from_block_server),
        cmocka_unit_test(test_urgent_jumps_the_queue),
        cmocka_unit_test(test_peers_from_tracker),
        cmocka_unit_test(test_stuck_urgent_block_moves),
        cmocka_unit_test(test_wrong_hash_peer_is_dropped),
        cmocka_unit_test(test_not_present_and_stall_alone),
        cmocka_unit_test(test_wrong_length_peer_is_dropped),
        cmocka_unit_test(test_unknown_status_peer_is_dropped),
        cmocka_unit_test(test_hanging_up_peer_is_backed_off),
        cmocka_unit_test(test_completes_despite_bad_peers),
        cmocka_unit_test(test_answers_in_pieces),
        cmocka_unit_test(test_no_peers),
        cmocka_unit_test(test_empty_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
