/* Unit tests for block choice (net/fetch_pick.c) on a real node, driven
 * under its lock with peers made up here (never connected: the choice is
 * pure bookkeeping): background blocks differ across peers that know
 * nothing yet; the rarest block we know of (the one most peers said they
 * lack) goes first; a peer is not asked for what it said it lacks; urgent
 * blocks keep their order. */
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

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(test_make_tmpdir(f->dir, sizeof f->dir, "test_fetch_pick"), 0);
    test_build_meta(&f->meta, &f->data, BLOCKS * 1024, 1024, 3);
    struct node_config cfg = {.cache_root = f->dir};
    char err[CASCADE_ERRLEN];
    assert_int_equal(node_start(&cfg, &f->node, err, sizeof err), 0);
    assert_int_equal(node_add_file(f->node, &f->meta, NULL, &f->nf, err, sizeof err), 0);
    assert_non_null(node_file_open(f->nf, err, sizeof err));
    *state = f;
    return 0;
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

static uint64_t pick(struct fixture *f, struct fetch_peer *p, int min_prio)
{
    uint32_t file;
    uint64_t idx;
    assert_true(fetch_pick(f->node, p, cascade_now_ms(), min_prio, &file, &idx));
    assert_int_equal(file, f->nf->index);
    return idx;
}

/* Peers that know nothing yet ask for different background blocks (a
 * random start each), not all for block 0. */
static void test_background_blocks_differ(void **state)
{
    struct fixture *f = *state;
    node_file_want_all(f->nf);
    pthread_mutex_lock(&f->node->lock);
    uint8_t seen[BLOCKS] = {0};
    int distinct = 0;
    for (int i = 0; i < 20; i++) {
        uint64_t idx = pick(f, made_up_peer(f, i), NODE_WANT_BACKGROUND);
        distinct += !seen[idx];
        seen[idx] = 1;
    }
    pthread_mutex_unlock(&f->node->lock);
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
    pthread_mutex_lock(&f->node->lock);
    for (int i = 0; i < 3; i++) {
        struct fetch_peer *p = made_up_peer(f, i);
        struct peer_file *pf = fetch_peer_file(p, f->nf->index);
        for (uint64_t b = 50; b < 60; b++)
            peer_file_mark_lacks(f->nf, pf, b);
    }
    struct fetch_peer *q = made_up_peer(f, 3);
    for (int round = 0; round < 10; round++) {
        uint64_t idx = pick(f, q, NODE_WANT_BACKGROUND);
        assert_true(idx >= 50 && idx < 60);
        f->nf->fetch.inflight[idx]++;   /* asked: the next pick takes another */
        f->nf->fetch.requests++;
    }
    uint64_t idx = pick(f, q, NODE_WANT_BACKGROUND);   /* all rare ones out now */
    assert_true(idx < 50 || idx >= 60);
    /* The peers that lack 50..59 are never asked for them. */
    for (uint64_t b = 50; b < 60; b++) {
        f->nf->fetch.inflight[b]--;
        f->nf->fetch.requests--;
    }
    struct fetch_peer *p0 = made_up_peer(f, 0);
    for (int round = 0; round < 50; round++) {
        idx = pick(f, p0, NODE_WANT_BACKGROUND);
        assert_true(idx < 50 || idx >= 60);
    }
    pthread_mutex_unlock(&f->node->lock);
}

/* Urgent blocks (a reader waits) go in order, before everything else. */
static void test_urgent_stays_in_order(void **state)
{
    struct fixture *f = *state;
    node_file_want_all(f->nf);
    node_file_want(f->nf, 120, 5, NODE_WANT_URGENT);
    pthread_mutex_lock(&f->node->lock);
    struct fetch_peer *p = made_up_peer(f, 7);
    for (uint64_t want = 120; want < 125; want++) {
        uint64_t idx = pick(f, p, NODE_WANT_URGENT);
        assert_int_equal(idx, want);
        f->nf->fetch.inflight[idx]++;
        f->nf->fetch.requests++;
    }
    uint32_t file;
    uint64_t idx;
    assert_false(fetch_pick(f->node, p, cascade_now_ms(), NODE_WANT_URGENT, &file, &idx));
    pthread_mutex_unlock(&f->node->lock);
}

int main(void)
{
    cascade_log_init("test_fetch_pick", CASCADE_LOG_ERROR, false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_background_blocks_differ, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rarest_first_from_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_urgent_stays_in_order, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
