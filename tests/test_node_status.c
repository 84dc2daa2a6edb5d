/* Unit tests for a node's live status (net/node_status.c): rates from the
 * sample rings (times given, so exact), and a real transfer between two
 * nodes on loopback: what each one's snapshot says of the file, of the
 * peer on the other end (its address, bytes and rate, both ways), rates
 * back at 0 once the window has passed, and the JSON it writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cascade/store.h"
#include "cascade/util.h"
#include "net/cli/json_read.h"
#include "net/node.h"
#include "net/node_status.h"
#include "net/sock.h"
#include "support.h"

/* ---- rings ---- */

static void test_ring_rates(void **state)
{
    (void)state;
    struct status_clock c = {0};
    struct status_ring r = {0};
    assert_int_equal(status_ring_rate(&r, &c, 100, 0), 0);   /* no sample at all */
    status_clock_tick(&c, 1000);
    status_ring_start(&r, &c);
    status_ring_put(&r, &c, 0);
    assert_int_equal(status_ring_rate(&r, &c, 5000, 1500), 0);       /* too soon to say */
    assert_int_equal(status_ring_rate(&r, &c, 5000, 2000), 5000);    /* 5000 bytes in 1 s */
    assert_int_equal(status_ring_rate(&r, &c, 5000, 3500), 2000);
    /* 1000 bytes a second for 20 s, sampled each second. */
    for (uint64_t s = 1; s <= 20; s++) {
        status_clock_tick(&c, 1000 + s * 1000);
        status_ring_put(&r, &c, s * 1000);
    }
    assert_int_equal(status_ring_rate(&r, &c, 20000, 21000), 1000);
    /* At 21.5 s the sample of 11 s is out of the window: from 12 s (11000). */
    assert_int_equal(status_ring_rate(&r, &c, 20500, 21500), 1000);
    /* Then nothing: 0 once the last change is the window's oldest sample. */
    uint64_t last = 21000;
    for (uint64_t s = 1; s <= 12; s++) {
        status_clock_tick(&c, last + s * 1000);
        status_ring_put(&r, &c, 20000);
        uint64_t rate = status_ring_rate(&r, &c, 20000, last + s * 1000);
        if (s >= NODE_STATUS_WINDOW_S)
            assert_int_equal(rate, 0);
        else
            assert_true(rate > 0);
    }
    /* Samples 2 s apart (a busy sampler): the ring reaches back 22 s, the
     * rate still only 10 s. */
    struct status_clock c2 = {0};
    struct status_ring r2 = {0};
    status_clock_tick(&c2, 0);
    status_ring_start(&r2, &c2);
    status_ring_put(&r2, &c2, 0);
    for (uint64_t t = 2000; t <= 20000; t += 2000) {   /* 500 bytes/s, then nothing */
        status_clock_tick(&c2, t);
        status_ring_put(&r2, &c2, t <= 10000 ? t / 2 : 5000);
    }
    assert_int_equal(status_ring_rate(&r2, &c2, 5000, 20000), 0);   /* 10000..20000: flat */
    assert_int_equal(status_ring_rate(&r2, &c2, 5000, 19000), 0);
    assert_int_equal(status_ring_rate(&r2, &c2, 5000, 18000), 100);  /* from 8000: 4000 */
    /* A counter that went down (a peer forgotten, then back) is no rate. */
    assert_int_equal(status_ring_rate(&r, &c, 10, last + 13000), 0);
    /* A ring started late only uses its own samples. */
    struct status_ring late;
    status_clock_tick(&c, last + 13000);
    status_ring_start(&late, &c);
    status_ring_put(&late, &c, 7000000);
    status_ring_put(&r, &c, 20000);
    assert_int_equal(status_ring_rate(&late, &c, 7001000, last + 14000), 1000);
}

/* ---- two nodes ---- */

struct pair {
    char dir[64];
    uint8_t *data;
    struct cascade_meta meta;
    struct peer_node *seeder, *getter;
    struct node_file *seeded, *got;
    struct sockaddr_in seeder_addr;
};

static void start_pair(struct pair *p)
{
    memset(p, 0, sizeof *p);
    assert_int_equal(test_make_tmpdir(p->dir, sizeof p->dir, "test_node_status"), 0);
    test_build_meta(&p->meta, &p->data, 3 * 65536 + 777, 16384, 7);
    char path[128], cache[128], err[CASCADE_ERRLEN];
    snprintf(path, sizeof path, "%s/data.bin", p->dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p->data, 1, p->meta.size, fp), p->meta.size);
    assert_int_equal(fclose(fp), 0);

    snprintf(cache, sizeof cache, "%s/seeder", p->dir);
    struct node_config sc = {.serve = true, .cache_root = cache};
    sock_make_addr(0x7f000001, 0, &sc.listen);
    assert_int_equal(node_start(&sc, &p->seeder, err, sizeof err), 0);
    struct node_file_options o = {.data_path = path, .adopt = true};
    assert_int_equal(node_add_file(p->seeder, &p->meta, &o, &p->seeded, err, sizeof err), 0);
    assert_non_null(node_file_open(p->seeded, err, sizeof err));
    node_file_close(p->seeded);
    node_address(p->seeder, &p->seeder_addr);

    snprintf(cache, sizeof cache, "%s/getter", p->dir);
    struct node_config gc = {.cache_root = cache, .static_peers = &p->seeder_addr,
                             .n_static_peers = 1};
    assert_int_equal(node_start(&gc, &p->getter, err, sizeof err), 0);
    assert_int_equal(node_add_file(p->getter, &p->meta, NULL, &p->got, err, sizeof err), 0);
}

static void stop_pair(struct pair *p)
{
    node_stop(p->getter);
    node_stop(p->seeder);
    test_remove_tree(p->dir);
    test_free_meta(&p->meta, &p->data);
}

/* Take a status at now_ms (asserted to work). */
static void take(struct node_status_sampler *s, uint64_t now_ms, struct node_status *st)
{
    assert_int_equal(node_status_take(s, now_ms, st), 0);
}

/* The seeder's thread may count what it sent a moment after the getter
 * has it: wait (bounded) until its status says so. */
static void wait_seeder_sent(struct node_status_sampler *ss, uint64_t bytes)
{
    uint64_t deadline = cascade_now_ms() + 30000;
    for (;;) {
        struct node_status st;
        take(ss, 0, &st);
        bool done = st.n_peers == 1 && st.peers[0].bytes == bytes &&
                    st.files[0].stats.bytes_served == bytes;
        node_status_release(&st);
        if (done)
            return;
        assert_true(cascade_now_ms() < deadline);
        usleep(10000);
    }
}

static void test_transfer_seen_from_both_ends(void **state)
{
    (void)state;
    struct pair p;
    start_pair(&p);
    struct node_status_sampler *gs = node_status_sampler_new(p.getter);
    struct node_status_sampler *ss = node_status_sampler_new(p.seeder);
    assert_non_null(gs);
    assert_non_null(ss);
    /* The first block (the connection opens), then the rest: sampled in
     * between, at times of ours to give, and taken 2 s later. */
    char err[CASCADE_ERRLEN];
    assert_non_null(node_file_open(p.got, err, sizeof err));
    uint64_t first = p.meta.block_size;
    assert_int_equal(node_file_fetch_range(p.got, 0, first, 0, 0, cascade_now_ms() + 60000), 0);
    wait_seeder_sent(ss, first);
    assert_int_equal(node_status_sample(gs, 1000), 0);
    assert_int_equal(node_status_sample(ss, 1000), 0);
    struct node_status st;
    take(gs, 1000, &st);
    assert_int_equal(st.n_peers, 1);
    uint64_t received_first = st.peers[0].bytes;
    assert_true(received_first >= first);
    node_status_release(&st);

    node_file_want_all(p.got);
    assert_int_equal(node_file_wait_complete(p.got, cascade_now_ms() + 60000, 30000), 0);
    take(gs, 3000, &st);
    assert_int_equal(st.n_files, 1);
    assert_int_equal(st.files[0].stats.blocks_held, p.meta.block_count);
    assert_int_equal(st.files[0].stats.bytes_fetched, p.meta.size);
    assert_int_equal(st.files[0].fetch_rate, (p.meta.size - first) / 2);
    assert_int_equal(st.files[0].eta_s, -1);   /* complete */
    assert_int_equal(st.server.sin_port, 0);   /* not serving */
    assert_int_equal(st.n_peers, 1);
    assert_int_equal(st.peers[0].direction, NODE_STATUS_DOWNLOAD);
    assert_int_equal(st.peers[0].addr.sin_port, p.seeder_addr.sin_port);
    assert_true(st.peers[0].bytes >= p.meta.size);   /* with the answers' headers */
    assert_int_equal(st.peers[0].rate, (st.peers[0].bytes - received_first) / 2);
    assert_int_equal(st.n_trackers, 0);
    uint64_t received = st.peers[0].bytes;
    node_status_release(&st);

    wait_seeder_sent(ss, p.meta.size);
    take(ss, 3000, &st);
    assert_int_equal(st.files[0].stats.bytes_served, p.meta.size);
    assert_int_equal(st.files[0].serve_rate, (p.meta.size - first) / 2);
    assert_int_equal(st.server.sin_port, p.seeder_addr.sin_port);
    assert_int_equal(st.n_peers, 1);
    assert_int_equal(st.peers[0].direction, NODE_STATUS_UPLOAD);
    assert_int_equal(st.peers[0].bytes, p.meta.size);   /* block bytes */
    assert_int_equal(st.peers[0].rate, (p.meta.size - first) / 2);
    node_status_release(&st);

    /* Nothing moves for a while: every rate is back at 0. */
    for (uint64_t t = 4000; t <= 4000 + 1000 * NODE_STATUS_WINDOW_S; t += 1000) {
        assert_int_equal(node_status_sample(gs, t), 0);
        assert_int_equal(node_status_sample(ss, t), 0);
    }
    take(gs, 15000, &st);
    assert_int_equal(st.files[0].fetch_rate, 0);
    assert_int_equal(st.n_peers, 1);   /* still connected */
    assert_int_equal(st.peers[0].bytes, received);
    assert_int_equal(st.peers[0].rate, 0);

    /* The JSON of it parses, with the documented keys and values. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    struct json_writer j;
    json_begin(&j, f);
    json_object_begin(&j, NULL);
    node_status_write_json(&st, &j);
    json_object_end(&j);
    assert_int_equal(json_end(&j), 0);
    fclose(f);
    struct json_value v;
    assert_int_equal(json_parse(text, len, &v, err, sizeof err), 0);
    assert_true(json_member(&v, "server")->type == JSON_NULL);
    const struct json_value *file = &json_member(&v, "files")->items[0];
    uint64_t n;
    assert_true(json_member_u64(file, "blocks_held", &n) && n == p.meta.block_count);
    assert_true(json_member_u64(file, "bytes_fetched", &n) && n == p.meta.size);
    assert_true(json_member_u64(file, "fetch_rate", &n) && n == 0);
    assert_true(json_member(file, "eta_s")->type == JSON_NULL);
    assert_true(json_member(file, "store_error")->type == JSON_NULL);
    char hex[CASCADE_HEX_LEN];
    cascade_hex(p.meta.cascade_hash, CASCADE_HASH_LEN, hex);
    assert_string_equal(json_member_string(file, "cascade_hash"), hex);
    const struct json_value *peer = &json_member(&v, "peers")->items[0];
    char addr[SOCK_ADDRSTRLEN];
    sock_format_addr(&p.seeder_addr, addr, sizeof addr);
    assert_string_equal(json_member_string(peer, "address"), addr);
    assert_string_equal(json_member_string(peer, "direction"), "download");
    assert_true(json_member_u64(peer, "bytes_received", &n) && n == received);
    assert_true(json_member_u64(peer, "bytes_sent", &n) && n == 0);
    assert_true(json_member_u64(&v, "peers_omitted", &n) && n == 0);
    assert_int_equal(json_member(&v, "trackers")->n, 0);
    const struct json_value *cache = json_member(&v, "cache");
    assert_non_null(cache);
    assert_true(json_member_u64(cache, "bytes", &n) && n == p.meta.size);   /* all in its cache */
    assert_true(json_member(cache, "max")->type == JSON_NULL);               /* no limit */
    assert_true(json_member_u64(cache, "evicted", &n) && n == 0);
    json_value_free(&v);
    free(text);
    node_status_release(&st);

    node_file_close(p.got);
    node_status_sampler_free(gs);
    node_status_sampler_free(ss);
    stop_pair(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_rates),
        cmocka_unit_test(test_transfer_seen_from_both_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
