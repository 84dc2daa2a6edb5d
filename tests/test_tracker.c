/* The tracker's rules (tracker_state) with a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <pthread.h>
#include <unistd.h>

#include "cascade/util.h"
#include "net/sock.h"
#include "net/tracker_client.h"
#include "net/tracker_state.h"

#define LOOPBACK(n) (0x7f000000u | (n))
#define T0 1700000000u

static struct wire_peer_record answer[WIRE_MAX_TRACKER_PEERS];
static size_t nanswer;
static char err[CASCADE_ERRLEN];

static void hash_of(uint8_t n, uint8_t out[CASCADE_HASH_LEN])
{
    memset(out, n, CASCADE_HASH_LEN);
}

static int ask(struct tracker_state *ts, uint32_t cmd, uint8_t h, uint32_t ip, uint16_t port,
               uint32_t source, uint64_t now)
{
    struct wire_tracker_request req = {.command = cmd, .ip = ip, .port = port};
    hash_of(h, req.hash);
    err[0] = '\0';
    return tracker_state_handle(ts, &req, source, now, answer, &nanswer, err, sizeof err);
}

static bool answer_has(uint32_t ip, uint16_t port)
{
    for (size_t i = 0; i < nanswer; i++)
        if (answer[i].ip == ip && answer[i].port == port)
            return true;
    return false;
}

static void subscribe_then_list(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 1};
    struct tracker_state *ts = tracker_state_new(&cfg);
    uint8_t h[CASCADE_HASH_LEN];
    hash_of(1, h);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(3), 7003, LOOPBACK(3), T0), 0);
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, LOOPBACK(9), 9, LOOPBACK(9), T0), 0);
    assert_int_equal(nanswer, 1);
    /* list does not register the sender */
    assert_int_equal(tracker_state_peer_count(ts, h, T0), 1);

    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(1), 7001, LOOPBACK(1), T0), 0);
    assert_int_equal(nanswer, 1);            /* the requester is left out */
    assert_false(answer_has(LOOPBACK(1), 7001));
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(2), 7002, LOOPBACK(2), T0 + 1), 0);
    assert_int_equal(nanswer, 2);
    assert_true(answer_has(LOOPBACK(1), 7001) && !answer_has(LOOPBACK(2), 7002));

    assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, LOOPBACK(9), 9, LOOPBACK(9), T0 + 2), 0);
    assert_int_equal(nanswer, 3);
    assert_true(answer_has(LOOPBACK(1), 7001) && answer_has(LOOPBACK(2), 7002));
    /* another hash is a separate swarm */
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 2, LOOPBACK(9), 9, LOOPBACK(9), T0 + 2), 0);
    assert_int_equal(nanswer, 0);
    tracker_state_free(ts);
}

static void peers_expire(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 1};   /* default expiry 1800 s */
    struct tracker_state *ts = tracker_state_new(&cfg);
    ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(1), 7001, LOOPBACK(1), T0);
    ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(2), 7002, LOOPBACK(2), T0 + 1000);
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, LOOPBACK(9), T0 + 1799), 0);
    assert_int_equal(nanswer, 2);
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, LOOPBACK(9), T0 + 1800), 0);
    assert_int_equal(nanswer, 1);
    assert_true(answer_has(LOOPBACK(2), 7002));
    /* re-subscribing renews */
    ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(2), 7002, LOOPBACK(2), T0 + 2700);
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, LOOPBACK(9), T0 + 4000), 0);
    assert_int_equal(nanswer, 1);
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, LOOPBACK(9), T0 + 4500), 0);
    assert_int_equal(nanswer, 0);
    tracker_state_free(ts);
}

static void answer_capped_shuffled_good_first(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 7};
    struct tracker_state *ts = tracker_state_new(&cfg);
    tracker_state_vouch(ts, LOOPBACK(200));
    tracker_state_vouch(ts, LOOPBACK(201));
    for (uint32_t i = 1; i <= 50; i++)
        assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(i), 7000, LOOPBACK(i), T0), 0);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(200), 7000, LOOPBACK(200), T0), 0);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(201), 7000, LOOPBACK(201), T0), 0);

    uint32_t first_order[20];
    bool differs = false;
    for (int round = 0; round < 10; round++) {
        assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, LOOPBACK(250), T0 + 1), 0);
        assert_int_equal(nanswer, 20);
        assert_int_equal(answer[0].good + answer[1].good, 2);   /* vouched-for first */
        for (size_t i = 2; i < nanswer; i++)
            assert_int_equal(answer[i].good, 0);
        if (round == 0)
            for (size_t i = 0; i < 20; i++)
                first_order[i] = answer[i].ip;
        else
            for (size_t i = 2; i < 20; i++)
                differs |= answer[i].ip != first_order[i];
    }
    assert_true(differs);   /* shuffled: ten identical picks of 18 from 50 do not happen */
    tracker_state_free(ts);
}

static void max_answer_configurable(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 1, .max_answer = 3};
    struct tracker_state *ts = tracker_state_new(&cfg);
    for (uint32_t i = 1; i <= 10; i++)
        ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(i), 7000, LOOPBACK(i), T0);
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, LOOPBACK(99), T0), 0);
    assert_int_equal(nanswer, 3);
    tracker_state_free(ts);
}

static void allow_list(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 1};
    struct tracker_state *ts = tracker_state_new(&cfg);
    uint8_t h[CASCADE_HASH_LEN];
    hash_of(5, h);
    assert_int_equal(tracker_state_allow(ts, h), 0);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 5, LOOPBACK(1), 7001, LOOPBACK(1), T0), 0);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 6, LOOPBACK(1), 7001, LOOPBACK(1), T0), -1);
    assert_non_null(strstr(err, "not tracked"));
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 6, 0, 0, LOOPBACK(1), T0), -1);
    assert_int_equal(tracker_state_hash_count(ts), 1);
    tracker_state_free(ts);
}

static void zero_ip_becomes_source(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 1};
    struct tracker_state *ts = tracker_state_new(&cfg);
    uint32_t source = 0xc0a80105;   /* an address value only, no traffic */
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, 0, 7001, source, T0), 0);
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, LOOPBACK(9), T0), 0);
    assert_int_equal(nanswer, 1);
    assert_int_equal(answer[0].ip, source);
    assert_int_equal(answer[0].port, 7001);
    /* and the requester (after substitution) is left out of its own answer */
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 7001, source, T0), 0);
    assert_int_equal(nanswer, 0);
    tracker_state_free(ts);
}

static void vouching_cannot_be_borrowed(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 1};
    struct tracker_state *ts = tracker_state_new(&cfg);
    uint32_t good = 0x0a000001, other = 0x0a000002;   /* address values only */
    tracker_state_vouch(ts, good);
    /* someone else announcing the vouched-for address is refused */
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, good, 7001, other, T0), -1);
    assert_non_null(strstr(err, "not the connection's source"));
    uint8_t h[CASCADE_HASH_LEN];
    hash_of(1, h);
    assert_int_equal(tracker_state_peer_count(ts, h, T0), 0);
    /* the vouched-for host itself gets the flag */
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, good, 7001, good, T0), 0);
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, other, T0), 0);
    assert_int_equal(nanswer, 1);
    assert_int_equal(answer[0].good, 1);
    /* loopback may announce another loopback address (tests), but is not
     * vouched for unless it announces its own */
    tracker_state_vouch(ts, LOOPBACK(5));
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(5), 7005, LOOPBACK(1), T0), 0);
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, other, T0), 0);
    for (size_t i = 0; i < nanswer; i++)
        if (answer[i].ip == LOOPBACK(5))
            assert_int_equal(answer[i].good, 0);
    tracker_state_free(ts);
}

static void random_hash(uint64_t *x, uint8_t out[CASCADE_HASH_LEN])
{
    for (size_t k = 0; k < CASCADE_HASH_LEN; k += 8) {
        *x ^= *x << 13; *x ^= *x >> 7; *x ^= *x << 17;
        memcpy(out + k, x, 8);
    }
}

/* The attack, without an allow-list: 100,000 subscribes for random
 * hashes and 5,000 for the real hash with made-up ports, all from one
 * source. The real seeder (another source) is in every answer and memory
 * stays within the caps. */
static void flood_from_one_source_keeps_the_seeder(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 1, .max_hashes = 1000, .max_hashes_per_source = 100};
    struct tracker_state *ts = tracker_state_new(&cfg);
    const uint32_t seeder = LOOPBACK(2), attacker = LOOPBACK(3);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, seeder, 7002, seeder, T0), 0);
    struct wire_tracker_request req = {.command = WIRE_CMD_SUBSCRIBE, .ip = 0, .port = 1};
    uint64_t x = 88172645463325252ull;
    for (uint32_t i = 0; i < 100000; i++) {
        random_hash(&x, req.hash);
        req.port = (uint16_t)(1 + i % 65535);
        assert_int_equal(tracker_state_handle(ts, &req, attacker, T0 + i / 100, answer, &nanswer,
                                              err, sizeof err), 0);
        assert_true(tracker_state_hash_count(ts) <= 1000);
        if (i % 1000 == 999) {
            assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, LOOPBACK(9), T0 + i / 100), 0);
            assert_true(answer_has(seeder, 7002));
        }
    }
    assert_int_equal(tracker_state_source_entries(ts, attacker), 100);
    assert_int_equal(tracker_state_hash_count(ts), 101);
    for (uint32_t i = 0; i < 5000; i++) {
        uint64_t now = T0 + 1000 + i / 100;
        assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, 0, (uint16_t)(1 + i), attacker, now), 0);
        assert_true(answer_has(seeder, 7002));
        assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, LOOPBACK(9), now), 0);
        assert_true(answer_has(seeder, 7002));
    }
    uint8_t h[CASCADE_HASH_LEN];
    hash_of(1, h);
    assert_int_equal(tracker_state_peer_count(ts, h, T0 + 1100),
                     1 + TRACKER_DEFAULT_MAX_PORTS_PER_SOURCE);
    /* 99 random hashes and its newest ports in the real one */
    assert_int_equal(tracker_state_source_entries(ts, attacker),
                     99 + TRACKER_DEFAULT_MAX_PORTS_PER_SOURCE);
    tracker_state_free(ts);
}

/* With an allow-list only the ports attack is left; it pushes nobody out. */
static void fake_ports_on_allowed_hash(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 1};
    struct tracker_state *ts = tracker_state_new(&cfg);
    uint8_t h[CASCADE_HASH_LEN];
    hash_of(1, h);
    assert_int_equal(tracker_state_set_allowed(ts, h, 1, err, sizeof err), 1);
    const uint32_t seeder = LOOPBACK(2), attacker = LOOPBACK(3);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, seeder, 7002, seeder, T0), 0);
    for (uint32_t i = 0; i < 5000; i++) {
        assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, attacker, (uint16_t)(1 + i), attacker,
                             T0 + i / 10), 0);
        assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, LOOPBACK(9), T0 + i / 10), 0);
        assert_true(answer_has(seeder, 7002));
    }
    assert_int_equal(tracker_state_source_entries(ts, attacker), TRACKER_DEFAULT_MAX_PORTS_PER_SOURCE);
    /* the attacker keeps its newest ports */
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, LOOPBACK(9), T0 + 500), 0);
    assert_true(answer_has(attacker, 5000));
    assert_false(answer_has(attacker, 1));
    tracker_state_free(ts);
}

/* By default one source fills at most half the table. */
static void source_gets_half_the_table(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 1, .max_hashes = 10};
    struct tracker_state *ts = tracker_state_new(&cfg);
    for (uint8_t h = 1; h <= 8; h++)
        assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, h, LOOPBACK(3), 7003, LOOPBACK(3), T0 + h), 0);
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(3)), 5);
    assert_int_equal(tracker_state_hash_count(ts), 5);
    tracker_state_free(ts);
}

/* A source over its hash cap loses its own oldest hash, nobody else's. */
static void source_hash_cap_takes_its_own_oldest(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 1, .max_hashes_per_source = 3};
    struct tracker_state *ts = tracker_state_new(&cfg);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(2), 7002, LOOPBACK(2), T0), 0);
    for (uint8_t h = 1; h <= 4; h++)
        assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, h, LOOPBACK(3), 7003, LOOPBACK(3),
                             T0 + h), 0);
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(3)), 3);
    uint8_t hash[CASCADE_HASH_LEN];
    hash_of(1, hash);
    assert_int_equal(tracker_state_peer_count(ts, hash, T0 + 5), 1);   /* the other source's */
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, LOOPBACK(9), T0 + 5), 0);
    assert_true(answer_has(LOOPBACK(2), 7002) && !answer_has(LOOPBACK(3), 7003));
    /* refreshing a hash makes it the newest: hash 2 goes next, not 3 */
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 2, LOOPBACK(3), 7003, LOOPBACK(3), T0 + 6), 0);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 5, LOOPBACK(3), 7003, LOOPBACK(3), T0 + 7), 0);
    hash_of(3, hash);
    assert_int_equal(tracker_state_peer_count(ts, hash, T0 + 7), 0);
    hash_of(2, hash);
    assert_int_equal(tracker_state_peer_count(ts, hash, T0 + 7), 1);
    tracker_state_free(ts);
}

/* A full table gives up a hash of the heaviest single source, and refuses
 * a newcomer rather than drop a hash several sources share. */
static void full_table_takes_from_the_heaviest(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 1, .max_hashes = 10, .max_hashes_per_source = 10};
    struct tracker_state *ts = tracker_state_new(&cfg);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(2), 7002, LOOPBACK(2), T0), 0);
    for (uint8_t h = 2; h <= 10; h++)
        assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, h, LOOPBACK(3), 7003, LOOPBACK(3),
                             T0 + h), 0);
    assert_int_equal(tracker_state_hash_count(ts), 10);
    /* a light newcomer takes the heavy source's least recently active hash */
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 11, LOOPBACK(4), 7004, LOOPBACK(4), T0 + 20), 0);
    assert_int_equal(tracker_state_hash_count(ts), 10);
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(3)), 8);
    uint8_t hash[CASCADE_HASH_LEN];
    hash_of(1, hash);
    assert_int_equal(tracker_state_peer_count(ts, hash, T0 + 20), 1);
    hash_of(2, hash);
    assert_int_equal(tracker_state_peer_count(ts, hash, T0 + 20), 0);
    /* the heavy source itself only displaces its own hashes */
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 12, LOOPBACK(3), 7003, LOOPBACK(3), T0 + 21), 0);
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(3)), 8);
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(2)), 1);
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(4)), 1);

    /* a heavy source whose hashes are all shared cannot take a light one's */
    tracker_state_free(ts);
    ts = tracker_state_new(&cfg);
    for (uint8_t h = 1; h <= 8; h++) {
        assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, h, LOOPBACK(3), 7003, LOOPBACK(3), T0), 0);
        assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, h, LOOPBACK(5), 7005, LOOPBACK(5), T0), 0);
    }
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 9, LOOPBACK(2), 7002, LOOPBACK(2), T0), 0);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 10, LOOPBACK(4), 7004, LOOPBACK(4), T0), 0);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 11, LOOPBACK(3), 7003, LOOPBACK(3), T0 + 1), -1);
    assert_non_null(strstr(err, "tracker full"));
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(2)), 1);
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(4)), 1);
    /* while a light newcomer may take one of theirs (equal after the swap) */
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 11, LOOPBACK(6), 7006, LOOPBACK(6), T0 + 1), 0);
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(2)) +
                     tracker_state_source_entries(ts, LOOPBACK(4)), 1);

    /* every hash shared by two sources: a newcomer is refused */
    tracker_state_free(ts);
    ts = tracker_state_new(&cfg);
    for (uint8_t h = 1; h <= 10; h++) {
        assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, h, LOOPBACK(2), 7002, LOOPBACK(2), T0), 0);
        assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, h, LOOPBACK(3), 7003, LOOPBACK(3), T0), 0);
    }
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 11, LOOPBACK(4), 7004, LOOPBACK(4), T0 + 1), -1);
    assert_non_null(strstr(err, "tracker full"));
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(4)), 0);
    assert_int_equal(tracker_state_hash_count(ts), 10);
    /* and a list of an untracked hash is still an empty answer */
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 11, 0, 0, LOOPBACK(4), T0 + 1), 0);
    assert_int_equal(nanswer, 0);
    tracker_state_free(ts);
}

/* A full peer list drops the oldest entry of the source holding the most. */
static void full_peer_list_takes_from_the_heaviest(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 1, .max_peers_per_hash = 10, .max_ports_per_source = 5};
    struct tracker_state *ts = tracker_state_new(&cfg);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(2), 7002, LOOPBACK(2), T0), 0);
    for (uint16_t p = 1; p <= 5; p++)
        assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(3), p, LOOPBACK(3), T0 + p), 0);
    for (uint16_t p = 1; p <= 4; p++)
        assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(4), p, LOOPBACK(4), T0 + p), 0);
    uint8_t hash[CASCADE_HASH_LEN];
    hash_of(1, hash);
    assert_int_equal(tracker_state_peer_count(ts, hash, T0 + 10), 10);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(5), 7005, LOOPBACK(5), T0 + 10), 0);
    assert_int_equal(tracker_state_peer_count(ts, hash, T0 + 10), 10);
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(3)), 4);
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(2)), 1);
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, LOOPBACK(9), T0 + 10), 0);
    assert_false(answer_has(LOOPBACK(3), 1));    /* its oldest went */
    assert_true(answer_has(LOOPBACK(3), 2));
    tracker_state_free(ts);
}

/* An answer takes one entry per source before a second from any. */
static void answer_spreads_over_sources(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 3, .max_ports_per_source = 100};
    struct tracker_state *ts = tracker_state_new(&cfg);
    for (uint16_t p = 1; p <= 60; p++)
        assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(3), p, LOOPBACK(3), T0), 0);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(2), 7002, LOOPBACK(2), T0), 0);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(4), 7004, LOOPBACK(4), T0), 0);
    for (int round = 0; round < 20; round++) {
        assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, LOOPBACK(9), T0), 0);
        assert_int_equal(nanswer, 20);
        assert_true(answer_has(LOOPBACK(2), 7002) && answer_has(LOOPBACK(4), 7004));
    }
    tracker_state_free(ts);
}

/* Expiry forgets entries, their hashes and their sources. */
static void expiry_frees_everything(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 1, .expiry_s = 10};
    struct tracker_state *ts = tracker_state_new(&cfg);
    for (uint8_t h = 1; h <= 50; h++)
        assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, h, LOOPBACK(h), 7000, LOOPBACK(h), T0 + h / 10), 0);
    assert_int_equal(tracker_state_hash_count(ts), 50);
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, LOOPBACK(99), T0 + 12), 0);
    assert_int_equal(tracker_state_hash_count(ts), 21);        /* h < 30 gone */
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(5)), 0);
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(45)), 1);
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 1, 0, 0, LOOPBACK(99), T0 + 100), 0);
    assert_int_equal(tracker_state_hash_count(ts), 0);
    tracker_state_free(ts);
}

/* A loopback address announced from elsewhere is charged to the source
 * that announced it; announced from itself later, it moves there. */
static void entry_moves_to_its_new_source(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 1};
    struct tracker_state *ts = tracker_state_new(&cfg);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(5), 7005, LOOPBACK(1), T0), 0);
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(1)), 1);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(5), 7005, LOOPBACK(5), T0 + 1), 0);
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(1)), 0);
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(5)), 1);
    uint8_t hash[CASCADE_HASH_LEN];
    hash_of(1, hash);
    assert_int_equal(tracker_state_peer_count(ts, hash, T0 + 1), 1);
    tracker_state_free(ts);
}

/* Replacing the allow-list forgets hashes no longer on it. */
static void set_allowed_replaces(void **state)
{
    (void)state;
    struct tracker_config cfg = {.seed = 1};
    struct tracker_state *ts = tracker_state_new(&cfg);
    uint8_t list[3 * CASCADE_HASH_LEN];
    hash_of(1, list);
    hash_of(2, list + CASCADE_HASH_LEN);
    hash_of(1, list + 2 * CASCADE_HASH_LEN);                     /* a duplicate */
    assert_int_equal(tracker_state_set_allowed(ts, list, 3, err, sizeof err), 2);
    assert_int_equal(tracker_state_allowed_count(ts), 2);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 1, LOOPBACK(1), 7001, LOOPBACK(1), T0), 0);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 2, LOOPBACK(1), 7001, LOOPBACK(1), T0), 0);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 3, LOOPBACK(1), 7001, LOOPBACK(1), T0), -1);
    hash_of(3, list + CASCADE_HASH_LEN);
    assert_int_equal(tracker_state_set_allowed(ts, list, 2, err, sizeof err), 2);
    assert_int_equal(tracker_state_hash_count(ts), 1);
    assert_int_equal(tracker_state_source_entries(ts, LOOPBACK(1)), 1);
    assert_int_equal(ask(ts, WIRE_CMD_LIST, 2, 0, 0, LOOPBACK(1), T0), -1);
    assert_int_equal(ask(ts, WIRE_CMD_SUBSCRIBE, 3, LOOPBACK(1), 7001, LOOPBACK(1), T0), 0);
    /* an empty list is refused and changes nothing */
    assert_int_equal(tracker_state_set_allowed(ts, list, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "any file"));
    assert_int_equal(tracker_state_allowed_count(ts), 2);
    tracker_state_free(ts);
}

/* ---- tracker_client against a canned tracker on 127.0.0.1 ----------- */

struct canned {
    int listen_fd;
    const uint8_t *reply;
    size_t reply_len;
    uint8_t request[WIRE_TRACKER_REQUEST_LEN];
};

/* Accepts one connection, reads the request, sends the reply, hangs up. */
static void *canned_tracker(void *arg)
{
    struct canned *c = arg;
    char e[CASCADE_ERRLEN];
    int fd = accept(c->listen_fd, NULL, NULL);
    if (fd >= 0) {
        if (sock_read_full(fd, c->request, sizeof c->request, 5000, e, sizeof e) == 0)
            sock_write_full(fd, c->reply, c->reply_len, 5000, e, sizeof e);
        close(fd);
    }
    return NULL;
}

/* One tracker_query (subscribe 127.0.0.1:7001) answered with reply. */
static int query_canned(struct canned *c, const uint8_t *reply, size_t reply_len,
                        struct wire_peer_record **peers, size_t *npeers,
                        struct sockaddr_in *local)
{
    struct sockaddr_in addr;
    sock_make_addr(0x7f000001, 0, &addr);
    c->listen_fd = sock_listen(&addr, 4, err, sizeof err);
    assert_true(c->listen_fd >= 0);
    assert_int_equal(sock_local_addr(c->listen_fd, &addr), 0);
    c->reply = reply;
    c->reply_len = reply_len;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, canned_tracker, c), 0);
    uint8_t h[CASCADE_HASH_LEN];
    hash_of(7, h);
    err[0] = '\0';
    int rc = tracker_query(&addr, WIRE_CMD_SUBSCRIBE, h, 0x7f000001, 7001, 5000,
                           peers, npeers, local, err, sizeof err);
    pthread_join(th, NULL);
    close(c->listen_fd);
    return rc;
}

static void client_reads_peer_list(void **state)
{
    (void)state;
    uint8_t reply[5 + 2 * WIRE_PEER_RECORD_LEN];
    wire_encode_tracker_answer_header(0, 2 * WIRE_PEER_RECORD_LEN, reply);
    struct wire_peer_record r0 = {LOOPBACK(2), 7002, T0, 1}, r1 = {LOOPBACK(3), 7003, T0 + 1, 0};
    wire_encode_peer_record(&r0, reply + 5);
    wire_encode_peer_record(&r1, reply + 5 + WIRE_PEER_RECORD_LEN);
    struct canned c;
    struct wire_peer_record *peers;
    size_t n;
    struct sockaddr_in local = {0};
    assert_int_equal(query_canned(&c, reply, sizeof reply, &peers, &n, &local), TRACKER_QUERY_OK);
    assert_int_equal(n, 2);
    assert_int_equal(peers[0].ip, LOOPBACK(2));
    assert_int_equal(peers[0].port, 7002);
    assert_int_equal(peers[0].good, 1);
    assert_int_equal(peers[1].last_seen, T0 + 1);
    free(peers);
    assert_int_not_equal(local.sin_port, 0);

    struct wire_tracker_request req;
    assert_int_equal(wire_decode_tracker_request(c.request, &req, err, sizeof err), 0);
    assert_int_equal(req.command, WIRE_CMD_SUBSCRIBE);
    assert_int_equal(req.ip, 0x7f000001);
    assert_int_equal(req.port, 7001);

    /* An empty list is fine and allocates nothing. */
    wire_encode_tracker_answer_header(0, 0, reply);
    assert_int_equal(query_canned(&c, reply, 5, &peers, &n, NULL), TRACKER_QUERY_OK);
    assert_int_equal(n, 0);
    assert_null(peers);
}

static void client_reports_refusal(void **state)
{
    (void)state;
    struct canned c;
    struct wire_peer_record *peers;
    size_t n;
    uint8_t reply[5 + 9];
    wire_encode_tracker_answer_header(1, 9, reply);
    memcpy(reply + 5, "no\nthanks", 9);
    assert_int_equal(query_canned(&c, reply, sizeof reply, &peers, &n, NULL),
                     TRACKER_QUERY_EREFUSED);
    assert_non_null(strstr(err, "no thanks"));   /* control bytes flattened */
    assert_null(peers);

    /* A message claimed to be 1 GB: the client reads only its cap. */
    static uint8_t big[5 + WIRE_MAX_ERROR_MESSAGE];
    wire_encode_tracker_answer_header(2, 1u << 30, big);
    memset(big + 5, 'x', WIRE_MAX_ERROR_MESSAGE);
    assert_int_equal(query_canned(&c, big, sizeof big, &peers, &n, NULL),
                     TRACKER_QUERY_EREFUSED);
    assert_non_null(strstr(err, "refused"));
}

static void client_rejects_garbage_lengths(void **state)
{
    (void)state;
    struct canned c;
    struct wire_peer_record *peers;
    size_t n;
    uint8_t reply[5];
    const uint32_t lens[] = {13, (WIRE_MAX_TRACKER_PEERS + 1) * WIRE_PEER_RECORD_LEN,
                             0xfffffff0u};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        wire_encode_tracker_answer_header(0, lens[i], reply);
        assert_int_equal(query_canned(&c, reply, sizeof reply, &peers, &n, NULL),
                         TRACKER_QUERY_ENET);
        assert_non_null(strstr(err, "garbage"));
        assert_null(peers);
    }
    /* A list cut short by the tracker hanging up. */
    wire_encode_tracker_answer_header(0, 2 * WIRE_PEER_RECORD_LEN, reply);
    assert_int_equal(query_canned(&c, reply, sizeof reply, &peers, &n, NULL),
                     TRACKER_QUERY_ENET);
    assert_non_null(strstr(err, "connection closed"));
    assert_null(peers);
}

static void client_connect_refused(void **state)
{
    (void)state;
    struct sockaddr_in addr;
    sock_make_addr(0x7f000001, 0, &addr);
    int fd = sock_listen(&addr, 1, err, sizeof err);   /* a port nobody listens on */
    assert_true(fd >= 0);
    assert_int_equal(sock_local_addr(fd, &addr), 0);
    close(fd);
    uint8_t h[CASCADE_HASH_LEN];
    hash_of(1, h);
    struct wire_peer_record *peers;
    size_t n;
    assert_int_equal(tracker_query(&addr, WIRE_CMD_LIST, h, 0, 0, 2000, &peers, &n, NULL,
                                   err, sizeof err), TRACKER_QUERY_ENET);
    assert_non_null(strstr(err, "connect(127.0.0.1:"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(subscribe_then_list),
        cmocka_unit_test(peers_expire),
        cmocka_unit_test(answer_capped_shuffled_good_first),
        cmocka_unit_test(max_answer_configurable),
        cmocka_unit_test(allow_list),
        cmocka_unit_test(zero_ip_becomes_source),
        cmocka_unit_test(vouching_cannot_be_borrowed),
        cmocka_unit_test(flood_from_one_source_keeps_the_seeder),
        cmocka_unit_test(fake_ports_on_allowed_hash),
        cmocka_unit_test(source_gets_half_the_table),
        cmocka_unit_test(source_hash_cap_takes_its_own_oldest),
        cmocka_unit_test(full_table_takes_from_the_heaviest),
        cmocka_unit_test(full_peer_list_takes_from_the_heaviest),
        cmocka_unit_test(answer_spreads_over_sources),
        cmocka_unit_test(expiry_frees_everything),
        cmocka_unit_test(entry_moves_to_its_new_source),
        cmocka_unit_test(set_allowed_replaces),
        cmocka_unit_test(client_reads_peer_list),
        cmocka_unit_test(client_reports_refusal),
        cmocka_unit_test(client_rejects_garbage_lengths),
        cmocka_unit_test(client_connect_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
