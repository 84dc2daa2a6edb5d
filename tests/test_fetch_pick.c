/* Unit tests for block choice (net/fetch_pick.c) on a real node, driven
 * under its lock with peers made up here (never connected: the choice is
 * pure bookkeeping): background blocks differ across peers that know
 * nothing yet; the rarest block we know of (the one most peers said they
 * lack) goes first to a peer that has what it is asked; a peer is not
 * asked for what it said it lacks; urgent blocks keep their order; a node
 * that serves nothing takes background blocks in order; a peer's pipeline
 * follows its rate, one request at a time on a thin link (two to a seeder).
 * Results are collected under the lock and checked after it, so a failed
 * check never leaves the lock held. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "support.h"
#include "net/node_internal.h"

#define BLOCKS 200

struct fixture {
    char dir[64];
    uint8_t *data;
    struct cascade_meta meta;
    struct peer_node *node;
    struct node_file *nf;
};

/* A node that serves (on a loopback port of its own) or not. */
static int setup_serving(void **state, bool serve)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(test_make_tmpdir(f->dir, sizeof f->dir, "test_fetch_pick"), 0);
    test_build_meta(&f->meta, &f->data, BLOCKS * 1024, 1024, 3);
    /* What peers said they lack holds for the whole test, however slow. */
    struct node_config cfg = {.cache_root = f->dir, .lacks_forget_ms = 600000, .serve = serve};
    sock_make_addr(0x7f000001, 0, &cfg.listen);
    char err[CASCADE_ERRLEN];
    assert_int_equal(node_start(&cfg, &f->node, err, sizeof err), 0);
    assert_int_equal(node_add_file(f->node, &f->meta, NULL, &f->nf, err, sizeof err), 0);
    assert_non_null(node_file_open(f->nf, err, sizeof err));
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_serving(state, true);
}

static int setup_not_serving(void **state)
{
    return setup_serving(state, false);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    node_file_close(f->nf);
    node_stop(f->node);
    test_remove_tree(f->dir);
    test_free_meta(&f->meta, &f->data);
    free(f);
    return 0;
}

/* A made-up peer listed for the file (under lock): 127.0.0.1 on a port of
 * its own, which nobody serves. */
static struct fetch_peer *made_up_peer(struct fixture *f, int i)
{
    struct sockaddr_in a;
    sock_make_addr(0x7f000001, (uint16_t)(1 + i), &a);
    struct fetch_peer *p = fetch_peer_get(f->node, &a);
    assert_non_null(p);
    fetch_peer_listed(f->node, p, f->nf->index);
    return p;
}

/* The block p would be asked for, or UINT64_MAX (no block, or another
 * file: neither should happen here). Under lock; asserts nothing. */
static uint64_t pick(struct fixture *f, struct fetch_peer *p, int min_prio)
{
    uint32_t file;
    uint64_t idx;
    if (!fetch_pick(f->node, p, cascade_now_ms(), min_prio, &file, &idx) ||
        file != f->nf->index)
        return UINT64_MAX;
    return idx;
}

/* Peers that know nothing yet ask for different background blocks (a
 * random start each), not all for block 0. */
static void test_background_blocks_differ(void **state)
{
    struct fixture *f = *state;
    node_file_want_all(f->nf);
    uint64_t picked[20];
    pthread_mutex_lock(&f->node->lock);
    for (int i = 0; i < 20; i++)
        picked[i] = pick(f, made_up_peer(f, i), NODE_WANT_BACKGROUND);
    pthread_mutex_unlock(&f->node->lock);
    uint8_t seen[BLOCKS] = {0};
    int distinct = 0;
    for (int i = 0; i < 20; i++) {
        assert_true(picked[i] < BLOCKS);
        distinct += !seen[picked[i]];
        seen[picked[i]] = 1;
    }
    /* 20 uniform picks of 200 blocks: fewer than 15 distinct is a one in
     * billions event; lowest-index-first would give 1. */
    assert_true(distinct >= 15);
}

/* What three peers said they lack makes those blocks the rarest: a fourth
 * peer is asked for one of them first; a peer is never asked for a block it
 * said it lacks. */
static void test_rarest_first_from_answers(void **state)
{
    struct fixture *f = *state;
    node_file_want_all(f->nf);
    uint64_t rare[10], after, to_lacker[50];
    pthread_mutex_lock(&f->node->lock);
    for (int i = 0; i < 3; i++) {
        struct fetch_peer *p = made_up_peer(f, i);
        struct peer_file *pf = fetch_peer_file(p, f->nf->index);
        for (uint64_t b = 50; b < 60; b++)
            peer_file_mark_lacks(f->nf, pf, b);
    }
    struct fetch_peer *q = made_up_peer(f, 3);
    fetch_peer_file(q, f->nf->index)->holds = 1.0f;   /* it has what it is asked: a seeder */
    for (int round = 0; round < 10; round++) {
        rare[round] = pick(f, q, NODE_WANT_BACKGROUND);
        if (rare[round] < BLOCKS) {
            f->nf->fetch.inflight[rare[round]]++;   /* asked: the next pick takes another */
            f->nf->fetch.requests++;
        }
    }
    after = pick(f, q, NODE_WANT_BACKGROUND);   /* all rare ones out now */
    for (int round = 0; round < 10; round++)
        if (rare[round] < BLOCKS) {
            f->nf->fetch.inflight[rare[round]]--;
            f->nf->fetch.requests--;
        }
    struct fetch_peer *p0 = made_up_peer(f, 0);   /* said it lacks 50..59 */
    for (int round = 0; round < 50; round++)
        to_lacker[round] = pick(f, p0, NODE_WANT_BACKGROUND);
    pthread_mutex_unlock(&f->node->lock);
    for (int round = 0; round < 10; round++)
        assert_true(rare[round] >= 50 && rare[round] < 60);
    assert_true(after < BLOCKS && (after < 50 || after >= 60));
    for (int round = 0; round < 50; round++)   /* never asked for what it lacks */
        assert_true(to_lacker[round] < BLOCKS && (to_lacker[round] < 50 || to_lacker[round] >= 60));
}

/* Urgent blocks (a reader waits) go in order, before everything else. */
static void test_urgent_stays_in_order(void **state)
{
    struct fixture *f = *state;
    node_file_want_all(f->nf);
    node_file_want(f->nf, 120, 5, NODE_WANT_URGENT);
    uint64_t got[6];
    pthread_mutex_lock(&f->node->lock);
    struct fetch_peer *p = made_up_peer(f, 7);
    for (int i = 0; i < 6; i++) {
        got[i] = pick(f, p, NODE_WANT_URGENT);
        if (got[i] < BLOCKS) {
            f->nf->fetch.inflight[got[i]]++;
            f->nf->fetch.requests++;
        }
    }
    pthread_mutex_unlock(&f->node->lock);
    for (int i = 0; i < 5; i++)
        assert_int_equal(got[i], 120 + i);
    assert_int_equal(got[5], UINT64_MAX);   /* no more urgent work */
}

/* A node that serves nothing (`cascade get`) takes background blocks in
 * order: it gives no peer anything, and its whole-file hash keeps up. */
static void test_non_serving_node_goes_in_order(void **state)
{
    struct fixture *f = *state;
    node_file_want_all(f->nf);
    uint64_t got[6];
    pthread_mutex_lock(&f->node->lock);
    for (int i = 0; i < 6; i++) {
        got[i] = pick(f, made_up_peer(f, i), NODE_WANT_BACKGROUND);
        if (got[i] < BLOCKS) {
            f->nf->fetch.inflight[got[i]]++;
            f->nf->fetch.requests++;
        }
    }
    pthread_mutex_unlock(&f->node->lock);
    for (int i = 0; i < 6; i++)
        assert_int_equal(got[i], (uint64_t)i);
}

/* A peer's pipeline follows its rate: a thin link (a swarm peer's share
 * of an uplink) gets one request at a time, so a block it lacks is never
 * stuck behind one it sends us, and two if the peer has what it is asked
 * (a seeder: no round trip idle between blocks); a faster one enough for
 * NODE_PIPELINE_MS; an unmeasured one NODE_BYTES_IN_FLIGHT worth; never
 * more than NODE_MAX_DEPTH. (Blocks of 1 KiB here.) */
static void test_depth_follows_rate(void **state)
{
    struct fixture *f = *state;
    int depth[5], rich_thin;
    pthread_mutex_lock(&f->node->lock);
    struct fetch_peer *p = made_up_peer(f, 0);
    const double rates[5] = {0, 1500, 20 * 1024, 40 * 1024, 1e9};
    for (int i = 0; i < 5; i++) {
        p->rate = rates[i];
        depth[i] = fetch_peer_depth(f->node, p);
    }
    p->rate = 1500;
    p->files[0].holds = 1.0f;   /* every answer so far a block */
    rich_thin = fetch_peer_depth(f->node, p);
    pthread_mutex_unlock(&f->node->lock);
    assert_int_equal(rich_thin, 2);
    assert_int_equal(depth[0], NODE_MAX_DEPTH);   /* 2 MiB of 1 KiB blocks, capped */
    assert_int_equal(depth[1], 1);                /* 750 bytes in 500 ms: under a block */
    assert_int_equal(depth[2], 11);               /* 10 blocks in 500 ms, one more */
    assert_int_equal(depth[3], 21);
    assert_int_equal(depth[4], NODE_MAX_DEPTH);
}

int main(void)
{
    cascade_log_init("test_fetch_pick", CASCADE_LOG_ERROR, false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_background_blocks_differ, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rarest_first_from_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_urgent_stays_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_serving_node_goes_in_order, setup_not_serving,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_depth_follows_rate, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
