/* Unit tests for the peer node (net/node*.c, fetch_*.c, peer_conn.c): a
 * second node serving a complete file, and fake peers and a fake tracker
 * written here (threads on 127.0.0.1) that answer wrong hashes, status 1
 * or 2, or stall. Checks that the node completes from good peers, that bad
 * bytes never land, that an urgent block jumps the queue, that with no
 * usable peer the waits give up with the documented errors, and what the
 * node promises of many files: one connection per peer for all of them,
 * files that cost no thread or descriptor until used, "unknown hash"
 * costing only a retry, bounded buffers given back when idle, idle stores
 * closed and reopened to serve, an interrupt that wakes every reader.
 * No timed assertions: only bounds. */
#include <dirent.h>
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
#include "net/node.h"
#include "net/sock.h"
#include "net/wire.h"

#define WAIT_MS 60000               /* liveness bound for a whole download */

/* ---- fixture: random data, a hand-built meta, a node to fill ----------- */

struct fixture {
    char dir[64];
    uint8_t *data;
    struct cascade_meta meta;
    struct peer_node *node;         /* the node under test */
    struct node_file *nf;
    struct cascade_store *dst;      /* its store, open while the test runs */
};

static void build(struct fixture *f, uint64_t size, uint64_t bs, unsigned seed)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(test_make_tmpdir(f->dir, sizeof f->dir, "test_node"), 0);
    test_build_meta(&f->meta, &f->data, size, bs, seed);
}

/* Start the node under test with cfg (its cache in the fixture's folder)
 * and open the fixture's file in it. */
static void start_node_cfg(struct fixture *f, struct node_config *cfg)
{
    char cache[128], err[CASCADE_ERRLEN];
    snprintf(cache, sizeof cache, "%s/dst", f->dir);
    cfg->cache_root = cache;
    if (!cfg->connect_timeout_ms)
        cfg->connect_timeout_ms = 2000;
    int r = node_start(cfg, &f->node, err, sizeof err);
    if (r != 0)
        fprintf(stderr, "node_start: %s\n", err);
    assert_int_equal(r, 0);
    assert_int_equal(node_add_file(f->node, &f->meta, NULL, &f->nf, err, sizeof err), 0);
    f->dst = node_file_open(f->nf, err, sizeof err);
    assert_non_null(f->dst);
}

static void start_node(struct fixture *f, const struct sockaddr_in *peers, size_t n, int depth,
                       int request_timeout_ms)
{
    struct node_config cfg = {
        .static_peers = peers,
        .n_static_peers = n,
        .pipeline_depth = depth,
        .request_timeout_ms = request_timeout_ms,
    };
    start_node_cfg(f, &cfg);
}

static void stop_node(struct fixture *f)
{
    if (f->dst)
        node_file_close(f->nf);
    f->dst = NULL;
    node_stop(f->node);
    f->node = NULL;
}

/* A seeder: a serving node whose data file (dir/NAME.bin) holds the whole
 * of each of the n fixtures' files. */
static struct peer_node *start_seeder_of(struct fixture **fs, size_t n, const char *dir,
                                         const char *name, int idle_ms, struct sockaddr_in *addr)
{
    char cache[128], err[CASCADE_ERRLEN];
    snprintf(cache, sizeof cache, "%s/%s-cache", dir, name);
    struct node_config cfg = {.serve = true, .cache_root = cache, .store_idle_ms = idle_ms};
    sock_make_addr(0x7f000001, 0, &cfg.listen);
    struct peer_node *node;
    assert_int_equal(node_start(&cfg, &node, err, sizeof err), 0);
    for (size_t i = 0; i < n; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%s-%zu.bin", dir, name, i);
        FILE *fp = fopen(path, "wb");
        assert_non_null(fp);
        assert_int_equal(fwrite(fs[i]->data, 1, fs[i]->meta.size, fp), fs[i]->meta.size);
        assert_int_equal(fclose(fp), 0);
        struct node_file_options o = {.data_path = path, .adopt = true};
        struct node_file *nf;
        assert_int_equal(node_add_file(node, &fs[i]->meta, &o, &nf, err, sizeof err), 0);
        struct cascade_store *st = node_file_open(nf, err, sizeof err);
        assert_non_null(st);
        assert_true(cascade_store_complete(st));
        node_file_close(nf);
    }
    node_address(node, addr);
    return node;
}

static struct peer_node *start_seeder(struct fixture *f, struct sockaddr_in *addr)
{
    return start_seeder_of(&f, 1, f->dir, "seeder", 0, addr);
}

static void teardown(struct fixture *f)
{
    stop_node(f);
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

/* Wait up to ms for block idx (wanting it urgently, as a reader does). */
static int wait_block(struct fixture *f, uint64_t idx, uint64_t ms)
{
    uint64_t len = idx < f->meta.block_count ? cascade_meta_block_len(&f->meta, idx) : 1;
    return node_file_fetch_range(f->nf, cascade_meta_block_offset(&f->meta, idx), len, 0, 0,
                                 cascade_now_ms() + ms);
}

static int wait_complete(struct fixture *f, uint64_t ms, uint64_t stall_ms)
{
    return node_file_wait_complete(f->nf, cascade_now_ms() + ms, stall_ms);
}

static struct node_file_stats file_stats(struct fixture *f)
{
    struct node_file_stats s;
    node_file_get_stats(f->nf, &s);
    return s;
}

/* Entries in a /proc/self folder (threads: task, descriptors: fd). */
static int count_entries(const char *path)
{
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
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
    size_t n_unknown;           /* requests for another file: answered status 1 */
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

/* Status 1 for a file it does not serve, then hang up (as the teaching
 * Python peer and our block server do). */
static void fake_unknown(struct fake_peer *fp, int fd)
{
    char err[CASCADE_ERRLEN];
    uint8_t ans[WIRE_PEER_ANSWER_HEADER_LEN + 12];
    wire_encode_peer_answer_header(WIRE_STATUS_UNKNOWN_HASH, 12, ans);
    memcpy(ans + WIRE_PEER_ANSWER_HEADER_LEN, "unknown file", 12);
    pthread_mutex_lock(&fp->lock);
    fp->n_unknown++;
    pthread_mutex_unlock(&fp->lock);
    (void)sock_write_full(fd, ans, sizeof ans, 5000, err, sizeof err);
}

static void fake_serve(struct fake_peer *fp, int fd)
{
    uint8_t req[WIRE_PEER_REQUEST_LEN];
    while (fake_read(fp, fd, req, sizeof req) == 0) {
        struct wire_peer_request r;
        char err[CASCADE_ERRLEN];
        if (wire_decode_peer_request(req, &r, err, sizeof err) < 0)
            return;
        if (memcmp(r.hash, fp->fx->meta.cascade_hash, CASCADE_HASH_LEN) != 0) {
            fake_unknown(fp, fd);
            return;
        }
        if (r.block >= fp->fx->meta.block_count)
            return;   /* the node asked for something it should not: it sees a reset */
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
    struct sockaddr_in peers[4];      /* under lock (tracker_set_peers) */
    size_t n_peers;
    size_t first_n;              /* peers in the first answer (later ones: all) */
    pthread_t thread;
    pthread_mutex_t lock;
    bool stop;
    int lists, subscribes;
    uint32_t sub_ip;             /* what the last subscribe announced */
    uint16_t sub_port;
    uint8_t sub_hash[CASCADE_HASH_LEN];
    uint8_t last_hash[CASCADE_HASH_LEN]; /* of the last query of any kind */
    bool grow;                   /* each answer lists one peer more than the last */
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
    size_t queries = (size_t)(t->lists + t->subscribes);
    size_t n = t->grow ? (queries + 1 < t->n_peers ? queries + 1 : t->n_peers)
                       : queries == 0 ? t->first_n : t->n_peers;
    struct sockaddr_in peers[4];
    memcpy(peers, t->peers, sizeof peers);
    memcpy(t->last_hash, r.hash, CASCADE_HASH_LEN);
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
        struct wire_peer_record rec = {.ip = ntohl(peers[i].sin_addr.s_addr),
                                       .port = ntohs(peers[i].sin_port), .last_seen = 1};
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
    if (n > 0)
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

/* Change the list (e.g. once the node's own address is known). */
static void tracker_set_peers(struct fake_tracker *t, const struct sockaddr_in *peers, size_t n)
{
    pthread_mutex_lock(&t->lock);
    memcpy(t->peers, peers, n * sizeof *peers);
    t->n_peers = n;
    t->first_n = n;
    pthread_mutex_unlock(&t->lock);
}

static int tracker_queries(struct fake_tracker *t)
{
    pthread_mutex_lock(&t->lock);
    int q = t->lists + t->subscribes;
    pthread_mutex_unlock(&t->lock);
    return q;
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

/* ---- tests: one file ----------------------------------------------------- */

/* A seeder node with the whole file: everything arrives, intact. Small
 * blocks: many answers arrive in one read, more than the put queue takes
 * at once, so answers left in the read buffer must still be parsed when the
 * socket has nothing more to say. */
static void run_fetch_all_from_seeder(uint64_t size, uint64_t bs)
{
    struct fixture fx;
    build(&fx, size, bs, 1);
    struct sockaddr_in a;
    struct peer_node *seeder = start_seeder(&fx, &a);
    start_node(&fx, &a, 1, 0, 0);
    node_file_want_all(fx.nf);
    assert_int_equal(wait_complete(&fx, WAIT_MS, 30000), 0);
    assert_int_equal(wait_block(&fx, fx.meta.block_count - 1, 0), 0);
    struct node_file_stats s = file_stats(&fx);
    assert_int_equal(s.blocks_fetched, fx.meta.block_count);
    assert_int_equal(s.bytes_fetched, fx.meta.size);
    assert_int_equal(s.bad_blocks, 0);
    assert_true(cascade_store_complete(fx.dst));
    assert_dst_matches(&fx);
    struct node_stats ss;
    node_get_stats(seeder, &ss);
    assert_int_equal(ss.bytes_served, fx.meta.size);
    node_stop(seeder);
    teardown(&fx);
}

static void test_fetch_all_from_seeder(void **state)
{
    (void)state;
    run_fetch_all_from_seeder(3 * 65536 + 1234, 4096);
    run_fetch_all_from_seeder(700 * 1024 + 5, 1024);
}

/* Peers from a tracker: the node subscribes the file announcing its own
 * server, skips itself in the list it gets back, and completes from the
 * other peer. */
static void test_peers_from_tracker(void **state)
{
    (void)state;
    struct fixture fx;
    build(&fx, 40 * 1024 + 3, 1024, 10);
    struct fake_peer good;
    fake_start(&good, &fx, FAKE_GOOD, false);
    struct fake_tracker trk;
    tracker_start(&trk, &good.addr, 1, 1);

    struct node_config cfg = {.serve = true, .trackers = {.n = 1}};
    cfg.trackers.addr[0] = trk.addr;
    sock_make_addr(0x7f000001, 0, &cfg.listen);
    start_node_cfg(&fx, &cfg);
    struct sockaddr_in self;
    node_address(fx.node, &self);
    struct sockaddr_in listed[2] = {self, good.addr};
    tracker_set_peers(&trk, listed, 2);   /* before anything is wanted */
    node_file_want_all(fx.nf);
    assert_int_equal(wait_complete(&fx, WAIT_MS, 30000), 0);
    struct node_file_stats s = file_stats(&fx);
    struct node_stats ns;
    node_get_stats(fx.node, &ns);
    stop_node(&fx);
    tracker_stop(&trk);
    fake_stop(&good);

    assert_int_equal(s.peers_known, 1);          /* ourselves left out */
    assert_int_equal(ns.connections_served, 0);  /* never asked ourselves */
    assert_true(good.n_log >= 1);
    assert_true(trk.subscribes >= 1);
    assert_int_equal(trk.sub_ip, 0x7f000001);
    assert_int_equal(trk.sub_port, ntohs(self.sin_port));
    assert_memory_equal(trk.sub_hash, fx.meta.cascade_hash, CASCADE_HASH_LEN);
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
    struct node_config cfg = {
        .trackers = {.n = 1},
        .pipeline_depth = 1,
        .request_timeout_ms = 120000,   /* far longer than the wait below */
        .list_interval_s = 1,
    };
    cfg.trackers.addr[0] = trk.addr;
    start_node_cfg(&fx, &cfg);
    node_file_want_all(fx.nf);
    assert_int_equal(wait_block(&fx, 5, WAIT_MS), 0);
    stop_node(&fx);
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
    start_node(&fx, &fp.addr, 1, 1, 0);
    uint64_t last = fx.meta.block_count - 1;
    node_file_want_all(fx.nf);
    node_file_want(fx.nf, last, 1, NODE_WANT_URGENT);
    node_file_want(fx.nf, 100, 3, NODE_WANT_PREFETCH);
    fake_open_gate(&fp);
    assert_int_equal(wait_complete(&fx, WAIT_MS, 30000), 0);
    stop_node(&fx);
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
    /* The read-ahead blocks go in order, and so do the background ones of
     * a node that serves nothing (test_fetch_pick: a serving node spreads
     * them). */
    size_t pos101 = SIZE_MAX, pos102 = SIZE_MAX, descents = 0;
    uint64_t prev = 0;
    for (size_t i = 0; i < fp.n_log; i++) {
        if (fp.log[i] == 101 && pos101 == SIZE_MAX)
            pos101 = i;
        if (fp.log[i] == 102 && pos102 == SIZE_MAX)
            pos102 = i;
        if (fp.log[i] == last || (fp.log[i] >= 100 && fp.log[i] < 103))
            continue;
        descents += fp.log[i] < prev;
        prev = fp.log[i];
    }
    assert_true(pos_prefetch < pos101 && pos101 < pos102);
    assert_int_equal(descents, 0);
    start_node(&fx, NULL, 0, 0, 0);   /* reopen the cache to read it back */
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
    start_node(&fx, &fp.addr, 1, 0, 0);
    node_file_want_all(fx.nf);
    assert_int_equal(wait_complete(&fx, WAIT_MS, 1500), -EHOSTUNREACH);
    struct node_file_stats s = file_stats(&fx);
    assert_true(s.bad_blocks >= 1);
    assert_int_equal(s.peers_dropped, 1);
    assert_int_equal(s.blocks_fetched, 0);
    assert_int_equal(cascade_store_held_count(fx.dst), 0);
    stop_node(&fx);
    fake_stop(&fp);
    teardown(&fx);
}

/* A peer without the blocks (status 2) and one that never answers give
 * no block; with them alone the node reports it cannot progress. */
static void test_not_present_and_stall_alone(void **state)
{
    (void)state;
    struct fixture fx;
    build(&fx, 16 * 1024, 1024, 4);
    struct fake_peer np, stall;
    fake_start(&np, &fx, FAKE_NOT_PRESENT, false);
    fake_start(&stall, &fx, FAKE_STALL, false);
    struct sockaddr_in peers[2] = {np.addr, stall.addr};
    start_node(&fx, peers, 2, 0, 300);
    node_file_want_all(fx.nf);
    assert_int_equal(wait_complete(&fx, WAIT_MS, 1500), -EHOSTUNREACH);
    assert_int_equal(node_file_first_missing(fx.nf), 0);
    assert_int_equal(cascade_store_held_count(fx.dst), 0);
    stop_node(&fx);
    fake_stop(&np);
    fake_stop(&stall);
    assert_true(np.n_log >= 1);     /* both were asked */
    assert_true(stall.n_log >= 1);
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
    start_node(&fx, peers, 4, 4, 500);
    node_file_want_all(fx.nf);
    assert_int_equal(wait_complete(&fx, 2 * WAIT_MS, 30000), 0);
    struct node_file_stats s = file_stats(&fx);
    assert_dst_matches(&fx);
    stop_node(&fx);
    fake_stop(&bad);
    fake_stop(&np);
    fake_stop(&stall);
    fake_stop(&good);
    if (bad.n_log > 0) {
        assert_true(s.bad_blocks >= 1);
        assert_true(s.peers_dropped >= 1);
    }
    assert_int_equal(s.blocks_fetched, fx.meta.block_count);
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
    start_node(&fx, &fp.addr, 1, 0, 0);
    node_file_want_all(fx.nf);
    assert_int_equal(wait_complete(&fx, WAIT_MS, 1500), -EHOSTUNREACH);
    struct node_file_stats s = file_stats(&fx);
    assert_int_equal(cascade_store_held_count(fx.dst), 0);
    stop_node(&fx);
    fake_stop(&fp);
    assert_true(fp.n_log >= 1);
    assert_int_equal(s.peers_dropped, want_dropped);
    assert_int_equal(s.blocks_fetched, 0);
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
    start_node(&fx, &fp.addr, 1, 3, 0);
    node_file_want_all(fx.nf);
    assert_int_equal(wait_complete(&fx, WAIT_MS, 30000), 0);
    assert_dst_matches(&fx);
    stop_node(&fx);
    fake_stop(&fp);
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
    start_node(&fx, NULL, 0, 0, 0);
    assert_int_equal(wait_block(&fx, 3, 200), -ETIMEDOUT);
    node_file_want_all(fx.nf);
    uint64_t t0 = cascade_now_ms();
    assert_int_equal(wait_complete(&fx, WAIT_MS, 500), -EHOSTUNREACH);
    assert_true(cascade_now_ms() - t0 < 30000);   /* bounded, not a hang */
    assert_int_equal(node_file_wait_complete(fx.nf, 0, UINT64_MAX), -ETIMEDOUT);
    /* a zero timeout still reports the stall (cascade get polls this way) */
    assert_int_equal(node_file_wait_complete(fx.nf, 0, 500), -EHOSTUNREACH);
    assert_int_equal(wait_block(&fx, 99, 10), -ERANGE);
    node_stop(NULL);
    teardown(&fx);
}

/* An empty file is complete from the start. */
static void test_empty_file(void **state)
{
    (void)state;
    struct fixture fx;
    build(&fx, 0, 1024, 7);
    start_node(&fx, NULL, 0, 0, 0);
    node_file_want_all(fx.nf);
    assert_int_equal(wait_complete(&fx, 1000, 1000), 0);
    teardown(&fx);
}

/* ---- tests: many files, one node ------------------------------------- */

/* Two files served by one seeder and wanted together travel over one TCP
 * connection (a request names its file), and both arrive intact. */
static void test_two_files_one_connection(void **state)
{
    (void)state;
    struct fixture a, b;
    build(&a, 300 * 1024 + 1, 4096, 21);
    build(&b, 200 * 1024 + 7, 1024, 22);
    struct fixture *both[2] = {&a, &b};
    struct sockaddr_in sa;
    struct peer_node *seeder = start_seeder_of(both, 2, a.dir, "seeder", 0, &sa);
    start_node(&a, &sa, 1, 0, 0);
    char err[CASCADE_ERRLEN];
    assert_int_equal(node_add_file(a.node, &b.meta, NULL, &b.nf, err, sizeof err), 0);
    b.dst = node_file_open(b.nf, err, sizeof err);
    assert_non_null(b.dst);
    node_file_want_all(a.nf);
    node_file_want_all(b.nf);
    assert_int_equal(wait_complete(&a, WAIT_MS, 30000), 0);
    assert_int_equal(wait_complete(&b, WAIT_MS, 30000), 0);
    assert_dst_matches(&a);
    assert_dst_matches(&b);
    struct node_stats ss;
    node_get_stats(seeder, &ss);
    assert_int_equal(ss.connections_served, 1);
    assert_int_equal(ss.bytes_served, a.meta.size + b.meta.size);
    node_file_close(b.nf);
    b.dst = NULL;
    node_stop(seeder);
    teardown(&a);
    test_remove_tree(b.dir);
    test_free_meta(&b.meta, &b.data);
}

/* A peer that does not serve a file answers "unknown hash" (status 1) and
 * hangs up, as the teaching Python peer does. That costs only a retry of
 * what was queued on the connection: both files complete, nobody is
 * dropped, and the peer is not asked for that file again. */
static void test_unknown_hash_costs_a_retry(void **state)
{
    (void)state;
    struct fixture x, y;
    build(&x, 400 * 1024, 4096, 31);
    build(&y, 300 * 1024 + 9, 4096, 32);
    struct fake_peer px, py;          /* px serves only x, py only y */
    fake_start(&px, &x, FAKE_GOOD, false);
    fake_start(&py, &y, FAKE_GOOD, false);
    struct sockaddr_in peers[2] = {px.addr, py.addr};   /* each listed for both */
    start_node(&x, peers, 2, 4, 0);
    char err[CASCADE_ERRLEN];
    assert_int_equal(node_add_file(x.node, &y.meta, NULL, &y.nf, err, sizeof err), 0);
    y.dst = node_file_open(y.nf, err, sizeof err);
    assert_non_null(y.dst);
    node_file_want_all(x.nf);
    node_file_want_all(y.nf);
    assert_int_equal(wait_complete(&x, WAIT_MS, 30000), 0);
    assert_int_equal(wait_complete(&y, WAIT_MS, 30000), 0);
    assert_dst_matches(&x);
    assert_dst_matches(&y);
    struct node_file_stats s = file_stats(&x);
    assert_int_equal(s.peers_dropped, 0);
    node_file_close(y.nf);
    y.dst = NULL;
    stop_node(&x);
    fake_stop(&px);
    fake_stop(&py);
    /* Each was told "unknown" once, then never asked for that file again. */
    assert_int_equal(px.n_unknown, 1);
    assert_int_equal(py.n_unknown, 1);
    teardown(&x);
    test_remove_tree(y.dir);
    test_free_meta(&y.meta, &y.data);
}

/* A thousand files cost no thread, no descriptor and no tracker query
 * until one is used; then only that one is listed. */
static void test_files_join_lazily(void **state)
{
    (void)state;
    enum { FILES = 1000 };
    struct fixture fx;
    build(&fx, 4096, 1024, 40);
    struct fake_tracker trk;
    tracker_start(&trk, NULL, 0, 0);
    struct node_config cfg = {.serve = true, .trackers = {.n = 1}};
    cfg.trackers.addr[0] = trk.addr;
    sock_make_addr(0x7f000001, 0, &cfg.listen);
    start_node_cfg(&fx, &cfg);   /* opening a file of a serving node announces it */
    for (int i = 0; i < 500 && tracker_queries(&trk) < 1; i++)
        usleep(10 * 1000);
    usleep(100 * 1000);          /* the tracker's connection is closed by now */
    int queries = tracker_queries(&trk);
    assert_true(queries >= 1);
    int threads = count_entries("/proc/self/task");
    int fds = count_entries("/proc/self/fd");

    struct cascade_meta *metas = calloc(FILES, sizeof *metas);
    uint8_t **datas = calloc(FILES, sizeof *datas);
    assert_non_null(metas);
    assert_non_null(datas);
    char err[CASCADE_ERRLEN];
    for (int i = 0; i < FILES; i++) {
        test_build_meta(&metas[i], &datas[i], 2048, 1024, 1000u + (unsigned)i);
        struct node_file *nf;
        assert_int_equal(node_add_file(fx.node, &metas[i], NULL, &nf, err, sizeof err), 0);
    }
    struct node_file *again;
    assert_int_equal(node_add_file(fx.node, &metas[7], NULL, &again, err, sizeof err), -1);
    usleep(300 * 1000);   /* a tracker query would be due at once */
    assert_int_equal(count_entries("/proc/self/task"), threads);
    assert_int_equal(count_entries("/proc/self/fd"), fds);
    assert_int_equal(tracker_queries(&trk), queries);

    /* Wanted: listed too, and nothing else is. */
    node_file_want_all(fx.nf);
    for (int i = 0; i < 500 && tracker_queries(&trk) <= queries; i++)
        usleep(10 * 1000);
    assert_true(tracker_queries(&trk) > queries);
    pthread_mutex_lock(&trk.lock);
    assert_memory_equal(trk.last_hash, fx.meta.cascade_hash, CASCADE_HASH_LEN);
    pthread_mutex_unlock(&trk.lock);
    stop_node(&fx);
    tracker_stop(&trk);
    for (int i = 0; i < FILES; i++)
        test_free_meta(&metas[i], &datas[i]);
    free(metas);
    free(datas);
    teardown(&fx);
}

/* Block bodies in memory stay within the node's limit (never below three
 * of the largest block), and are given back once the node is idle. */
static void test_buffers_bounded_and_given_back(void **state)
{
    (void)state;
    struct fixture fx;
    build(&fx, 8 * 1024 * 1024, 256 * 1024, 50);
    struct sockaddr_in a[3];
    struct peer_node *seeders[3];
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "seeder%d", i);
        struct fixture *one = &fx;
        seeders[i] = start_seeder_of(&one, 1, fx.dir, name, 0, &a[i]);
    }
    struct node_config cfg = {.static_peers = a, .n_static_peers = 3,
                              .buffer_bytes = 1024 * 1024};
    start_node_cfg(&fx, &cfg);
    node_file_want_all(fx.nf);
    assert_int_equal(wait_complete(&fx, WAIT_MS, 30000), 0);
    assert_dst_matches(&fx);
    struct node_stats ns;
    node_get_stats(fx.node, &ns);
    assert_int_equal(ns.buffer_limit, 1024 * 1024);
    assert_true(ns.buffer_bytes_peak > 0);
    assert_true(ns.buffer_bytes_peak <= ns.buffer_limit);
    for (int i = 0; i < 100 && ns.buffer_bytes > 0; i++) {   /* up to 10 s */
        usleep(100 * 1000);
        node_get_stats(fx.node, &ns);
    }
    assert_int_equal(ns.buffer_bytes, 0);
    for (int i = 0; i < 3; i++)
        node_stop(seeders[i]);
    teardown(&fx);
}

/* A store nobody uses closes once idle (its descriptors come back), and
 * reopens on demand when a peer asks for a block. */
static void test_idle_store_closes_and_serves(void **state)
{
    (void)state;
    struct fixture fx;
    build(&fx, 64 * 1024, 4096, 60);
    struct fixture *one = &fx;
    struct sockaddr_in a;
    struct peer_node *seeder = start_seeder_of(&one, 1, fx.dir, "seeder", 100, &a);
    struct node_stats ns;
    node_get_stats(seeder, &ns);
    for (int i = 0; i < 100 && ns.stores_open > 0; i++) {   /* up to 10 s */
        usleep(100 * 1000);
        node_get_stats(seeder, &ns);
    }
    assert_int_equal(ns.stores_open, 0);
    start_node(&fx, &a, 1, 0, 0);
    node_file_want_all(fx.nf);
    assert_int_equal(wait_complete(&fx, WAIT_MS, 30000), 0);
    assert_dst_matches(&fx);
    node_stop(seeder);
    teardown(&fx);
}

struct waiter {
    struct fixture *fx;
    int rc;
    bool done;
    pthread_mutex_t lock;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    int rc = wait_block(w->fx, 2, 10 * WAIT_MS);
    pthread_mutex_lock(&w->lock);
    w->rc = rc;
    w->done = true;
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* While a swarm grows (each tracker answer brings a new peer), the node
 * lists again within seconds, not after the usual five minutes; once the
 * answers stop bringing anyone new, it lists less and less often. */
static void test_young_swarm_lists_often(void **state)
{
    (void)state;
    struct fixture fx;
    build(&fx, 64 * 1024, 1024, 95);
    struct sockaddr_in seeder_addr;
    struct peer_node *seeder = start_seeder(&fx, &seeder_addr);
    struct sockaddr_in listed[4] = {seeder_addr};
    for (int i = 1; i < 4; i++)   /* made up: nobody serves there */
        sock_make_addr(0x7f000001, (uint16_t)(1 + i), &listed[i]);
    struct fake_tracker trk;
    tracker_start(&trk, listed, 4, 4);
    pthread_mutex_lock(&trk.lock);
    trk.grow = true;
    pthread_mutex_unlock(&trk.lock);
    struct node_config cfg = {.trackers = {.n = 1}};
    cfg.trackers.addr[0] = trk.addr;
    start_node_cfg(&fx, &cfg);
    node_file_want_all(fx.nf);
    assert_int_equal(wait_complete(&fx, WAIT_MS, 30000), 0);
    usleep(12 * 1000 * 1000);   /* an observation window, not a timing assertion */
    int lists = tracker_queries(&trk);
    stop_node(&fx);
    tracker_stop(&trk);
    node_stop(seeder);
    /* Four growing answers about 2 s apart, then 4 s, 8 s...: a handful in
     * 12 s; one list every five minutes would be 1, hammering dozens. */
    assert_true(lists >= 4);
    assert_true(lists <= 12);
    teardown(&fx);
}

/* node_interrupt wakes a reader waiting for a block no one has, at once
 * (a prompt stop on SIGTERM), long before its own deadline. */
static void test_interrupt_wakes_readers(void **state)
{
    (void)state;
    struct fixture fx;
    build(&fx, 8192, 1024, 70);
    start_node(&fx, NULL, 0, 0, 0);
    struct waiter w = {.fx = &fx, .rc = 1};
    pthread_mutex_init(&w.lock, NULL);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, waiter_main, &w), 0);
    usleep(100 * 1000);
    node_interrupt(fx.node);
    pthread_join(t, NULL);   /* bounded: the waiter's deadline is 10 min, the test's 3 */
    assert_true(w.done);
    assert_int_equal(w.rc, -ECANCELED);
    assert_int_equal(wait_block(&fx, 3, 10 * WAIT_MS), -ECANCELED);   /* and new ones */
    pthread_mutex_destroy(&w.lock);
    teardown(&fx);
}

/* A stop in the middle of a download loses nothing fetched: every block
 * counted as fetched before the stop is held when the cache is opened
 * again (the workers store what was received, the stores flush). */
static void test_stop_keeps_what_was_fetched(void **state)
{
    (void)state;
    struct fixture fx;
    build(&fx, 4 * 1024 * 1024, 4096, 80);
    struct sockaddr_in a;
    struct peer_node *seeder = start_seeder(&fx, &a);
    start_node(&fx, &a, 1, 0, 0);
    node_file_want_all(fx.nf);
    struct node_file_stats s = file_stats(&fx);
    for (int i = 0; i < 3000 && s.blocks_fetched < 200; i++) {   /* up to 30 s */
        usleep(10 * 1000);
        s = file_stats(&fx);
    }
    assert_true(s.blocks_fetched >= 200);
    stop_node(&fx);                    /* in the middle of it */
    node_stop(seeder);
    start_node(&fx, NULL, 0, 0, 0);    /* the same cache, opened again */
    assert_true(cascade_store_held_count(fx.dst) >= s.blocks_fetched);
    assert_true(cascade_store_held_count(fx.dst) > 0);
    uint8_t *buf = malloc(fx.meta.block_size);
    assert_non_null(buf);
    for (uint64_t i = 0; i < fx.meta.block_count; i++)   /* and every one is right */
        if (cascade_store_read(fx.dst, i, 0, buf, fx.meta.block_size) == CASCADE_STORE_OK)
            assert_memory_equal(buf, fx.data + i * fx.meta.block_size, fx.meta.block_size);
    free(buf);
    teardown(&fx);
}

/* Many files queued to fill (seed, -o fill) fill a few at a time, each
 * keeping its store open only while it fills, and all complete. */
static void test_fills_take_turns(void **state)
{
    (void)state;
    enum { FILES = 20 };
    struct fixture fs[FILES], *all[FILES];
    for (int i = 0; i < FILES; i++) {
        build(&fs[i], 64 * 1024 + (uint64_t)i, 1024, 90u + (unsigned)i);
        all[i] = &fs[i];
    }
    struct sockaddr_in a;
    struct peer_node *seeder = start_seeder_of(all, FILES, fs[0].dir, "seeder", 0, &a);
    char cache[128], err[CASCADE_ERRLEN];
    snprintf(cache, sizeof cache, "%s/dst", fs[0].dir);
    struct node_config cfg = {.static_peers = &a, .n_static_peers = 1, .cache_root = cache,
                              .max_idle_stores = 1};
    struct peer_node *node;
    assert_int_equal(node_start(&cfg, &node, err, sizeof err), 0);
    for (int i = 0; i < FILES; i++) {
        assert_int_equal(node_add_file(node, &fs[i].meta, NULL, &fs[i].nf, err, sizeof err), 0);
        node_file_fill(fs[i].nf);
    }
    size_t most_open = 0;
    for (int round = 0; round < 6000; round++) {   /* up to 60 s */
        struct node_stats ns;
        node_get_stats(node, &ns);
        if (ns.stores_open > most_open)
            most_open = ns.stores_open;
        int done = 0;
        for (int i = 0; i < FILES; i++)
            done += node_file_held_count(fs[i].nf) == fs[i].meta.block_count;
        if (done == FILES)
            break;
        usleep(10 * 1000);
    }
    for (int i = 0; i < FILES; i++)
        assert_int_equal(node_file_held_count(fs[i].nf), fs[i].meta.block_count);
    /* The fills at once, plus the one idle store allowed (and one closing). */
    assert_true(most_open <= NODE_FILLS_AT_ONCE + 2);
    assert_true(most_open >= 1);
    node_stop(node);
    node_stop(seeder);
    for (int i = 0; i < FILES; i++) {
        fs[i].nf = NULL;
        teardown(&fs[i]);
    }
}

/* ---- the cache limit (node_cache.c) ---- */

#define MIB (1024 * 1024)

/* A node under a cache limit over two files (fs[0], fs[1]) served by one
 * seeder; the files are added (not opened). */
static struct peer_node *start_limited(struct fixture *fs, struct peer_node **seeder,
                                       uint64_t limit)
{
    struct fixture *all[2] = {&fs[0], &fs[1]};
    struct sockaddr_in a;
    *seeder = start_seeder_of(all, 2, fs[0].dir, "seeder", 0, &a);
    char cache[128], err[CASCADE_ERRLEN];
    snprintf(cache, sizeof cache, "%s/dst", fs[0].dir);
    struct node_config cfg = {.static_peers = &a, .n_static_peers = 1, .cache_root = cache,
                              .cache_max = limit};
    struct peer_node *node;
    assert_int_equal(node_start(&cfg, &node, err, sizeof err), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(node_add_file(node, &fs[i].meta, NULL, &fs[i].nf, err, sizeof err), 0);
    return node;
}

static uint64_t cache_bytes(struct peer_node *node)
{
    struct node_stats ns;
    node_get_stats(node, &ns);
    return ns.cache_bytes;
}

/* Read all of f through the read path, a MiB at a time, checking after
 * each that the node's cache stayed within limit. */
static void read_all_within(struct fixture *f, struct peer_node *node, uint64_t limit)
{
    char err[CASCADE_ERRLEN];
    struct cascade_store *st = node_file_open(f->nf, err, sizeof err);
    assert_non_null(st);
    uint8_t *buf = malloc(MIB);
    assert_non_null(buf);
    for (uint64_t off = 0; off < f->meta.size; off += MIB) {
        uint64_t len = f->meta.size - off < MIB ? f->meta.size - off : MIB;
        assert_int_equal(node_file_fetch_range(f->nf, off, len, 0, 0,
                                               cascade_now_ms() + WAIT_MS), 0);
        assert_int_equal(cascade_store_read_range(st, off, buf, len), CASCADE_STORE_OK);
        assert_memory_equal(buf, f->data + off, len);
        assert_true(cache_bytes(node) <= limit);
        usleep(2000);   /* a later read is a later use */
    }
    free(buf);
    node_file_close(f->nf);
}

/* The limit holds across files: reading a second file evicts the least
 * recently used extents, which are the first file's, and the second file
 * stays whole; evicted blocks are simply missing. */
static void test_cache_limit_across_files(void **state)
{
    (void)state;
    struct fixture fs[2];
    build(&fs[0], 4 * MIB, 64 * 1024, 201);
    build(&fs[1], 4 * MIB, 64 * 1024, 202);
    struct peer_node *seeder;
    const uint64_t limit = 5 * MIB;
    struct peer_node *node = start_limited(fs, &seeder, limit);
    read_all_within(&fs[0], node, limit);
    assert_int_equal(node_file_held_count(fs[0].nf), fs[0].meta.block_count);
    read_all_within(&fs[1], node, limit);
    assert_int_equal(node_file_held_count(fs[1].nf), fs[1].meta.block_count);
    uint64_t a_held = node_file_held_count(fs[0].nf) * fs[0].meta.block_size;
    assert_true(a_held + 4 * MIB <= limit);
    struct node_stats ns;
    node_get_stats(node, &ns);
    assert_true(ns.bytes_evicted >= 3 * MIB);
    assert_int_equal(ns.cache_max, limit);
    /* The first of fs[0]'s blocks went first: it was used longest ago. */
    uint8_t *map = calloc(1, fs[0].meta.block_count / 8 + 1);
    assert_non_null(map);
    node_file_held_map(fs[0].nf, map);
    assert_int_equal(map[0] & 1, 0);
    free(map);
    /* Reading it again brings it back (and evicts in turn). */
    read_all_within(&fs[0], node, limit);
    node_stop(node);
    node_stop(seeder);
    for (int i = 0; i < 2; i++) {
        fs[i].nf = NULL;
        teardown(&fs[i]);
    }
}

/* A fill under a limit below the file's size fills up to the limit and
 * stops (wait_complete says why); the cache stays within it. */
static void test_fill_stops_at_limit(void **state)
{
    (void)state;
    struct fixture fs[2];
    build(&fs[0], 6 * MIB, 64 * 1024, 203);
    build(&fs[1], 64 * 1024, 64 * 1024, 204);
    struct peer_node *seeder;
    const uint64_t limit = 2 * MIB;
    struct peer_node *node = start_limited(fs, &seeder, limit);
    char err[CASCADE_ERRLEN];
    assert_non_null(node_file_open(fs[0].nf, err, sizeof err));
    node_file_want_all(fs[0].nf);
    int rc = node_file_wait_complete(fs[0].nf, cascade_now_ms() + WAIT_MS, WAIT_MS);
    assert_int_equal(rc, -EFBIG);
    uint64_t held = node_file_held_count(fs[0].nf) * fs[0].meta.block_size;
    assert_true(held <= limit);
    assert_true(held >= limit / 2);
    assert_true(cache_bytes(node) <= limit);
    node_file_close(fs[0].nf);
    node_stop(node);
    node_stop(seeder);
    for (int i = 0; i < 2; i++) {
        fs[i].nf = NULL;
        teardown(&fs[i]);
    }
}

int main(void)
{
    cascade_log_init("test_node", getenv("CASCADE_TEST_DEBUG") ? CASCADE_LOG_DEBUG
                                                                : CASCADE_LOG_ERROR, false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetch_all_from_seeder),
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
        cmocka_unit_test(test_two_files_one_connection),
        cmocka_unit_test(test_unknown_hash_costs_a_retry),
        cmocka_unit_test(test_files_join_lazily),
        cmocka_unit_test(test_buffers_bounded_and_given_back),
        cmocka_unit_test(test_idle_store_closes_and_serves),
        cmocka_unit_test(test_interrupt_wakes_readers),
        cmocka_unit_test(test_young_swarm_lists_often),
        cmocka_unit_test(test_stop_keeps_what_was_fetched),
        cmocka_unit_test(test_fills_take_turns),
        cmocka_unit_test(test_cache_limit_across_files),
        cmocka_unit_test(test_fill_stops_at_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
