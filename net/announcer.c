/* Tracker scheduling for one file: see announcer.h. */
#include "net/announcer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "net/sock.h"
#include "net/tracker_client.h"

#define ANNOUNCER_MIN_GAP_MS 1000      /* first retry after a failure / short request */
#define ANNOUNCER_MAX_GAP_MS 60000     /* backoff cap */

struct announcer {
    struct announcer_config cfg;
    announcer_peers_fn on_peers;
    void *ctx;

    pthread_mutex_t lock;              /* guards the fields below */
    pthread_cond_t wake;               /* CLOCK_MONOTONIC */
    bool stop;
    bool peers_requested;

    /* Owned by the thread. */
    uint64_t next_list_ms, next_subscribe_ms;
    uint64_t gap_ms;                   /* current backoff between queries */
    uint32_t learned_ip;               /* local address seen by the tracker connection */
    pthread_t thread;
};

static void deadline_at(struct timespec *ts, uint64_t when_ms)
{
    uint64_t now = cascade_now_ms();
    uint64_t wait = when_ms > now ? when_ms - now : 0;
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(wait / 1000);
    ts->tv_nsec += (long)(wait % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* One query; hands the list over. 0 or -1 (already logged). */
static int announcer_query(struct announcer *a, enum wire_tracker_command cmd)
{
    char err[CASCADE_ERRLEN], addr[SOCK_ADDRSTRLEN];
    struct wire_peer_record *peers = NULL;
    size_t n = 0;
    struct sockaddr_in local;
    uint32_t ip = a->cfg.announce_ip ? a->cfg.announce_ip : a->learned_ip;
    int timeout = a->cfg.timeout_ms > 0 ? a->cfg.timeout_ms : 5000;
    sock_format_addr(&a->cfg.tracker, addr, sizeof addr);
    int r = tracker_query(&a->cfg.tracker, cmd, a->cfg.hash, cmd == WIRE_CMD_SUBSCRIBE ? ip : 0,
                          cmd == WIRE_CMD_SUBSCRIBE ? a->cfg.announce_port : 0, timeout,
                          &peers, &n, &local, err, sizeof err);
    if (r != TRACKER_QUERY_OK) {
        log_warn("tracker %s: %s: %s", addr, cmd == WIRE_CMD_LIST ? "list" : "subscribe", err);
        return -1;
    }
    if (!a->learned_ip)
        a->learned_ip = ntohl(local.sin_addr.s_addr);
    struct sockaddr_in announced;
    sock_make_addr(a->cfg.announce_ip ? a->cfg.announce_ip : a->learned_ip,
                   a->cfg.announce_port, &announced);
    log_debug("tracker %s: %s: %zu peers", addr, cmd == WIRE_CMD_LIST ? "list" : "subscribe", n);
    a->on_peers(a->ctx, peers, n, &announced);
    free(peers);
    return 0;
}

/* Do whatever is due; returns when the next thing is due. */
static uint64_t announcer_step(struct announcer *a, bool requested)
{
    uint64_t now = cascade_now_ms();
    int list_s = a->cfg.list_interval_s > 0 ? a->cfg.list_interval_s : 300;
    int sub_s = a->cfg.subscribe_interval_s > 0 ? a->cfg.subscribe_interval_s : 600;
    bool need_ip = a->cfg.subscribe && !a->cfg.announce_ip && !a->learned_ip;
    bool sub_due = a->cfg.subscribe && !need_ip && now >= a->next_subscribe_ms;
    bool list_due = now >= a->next_list_ms;
    if (!sub_due && !list_due) {
        bool sub_next = a->cfg.subscribe && !need_ip && a->next_subscribe_ms < a->next_list_ms;
        return sub_next ? a->next_subscribe_ms : a->next_list_ms;
    }
    /* A subscribe answers with the list too, so it stands in for a list. */
    int r = announcer_query(a, sub_due ? WIRE_CMD_SUBSCRIBE : WIRE_CMD_LIST);
    now = cascade_now_ms();
    if (r < 0) {
        a->gap_ms = a->gap_ms ? a->gap_ms * 2 : ANNOUNCER_MIN_GAP_MS;
        if (a->gap_ms > ANNOUNCER_MAX_GAP_MS)
            a->gap_ms = ANNOUNCER_MAX_GAP_MS;
        a->next_list_ms = now + a->gap_ms;
        if (sub_due)
            a->next_subscribe_ms = now + a->gap_ms;
        return a->next_list_ms;
    }
    if (sub_due)
        a->next_subscribe_ms = now + (uint64_t)sub_s * 1000;
    if (need_ip && a->cfg.subscribe)
        return now;                   /* address learned: subscribe right away */
    /* Asked because we were short: the next short request waits longer. */
    a->gap_ms = requested ? (a->gap_ms ? a->gap_ms * 2 : ANNOUNCER_MIN_GAP_MS) : 0;
    if (a->gap_ms > ANNOUNCER_MAX_GAP_MS / 2)
        a->gap_ms = ANNOUNCER_MAX_GAP_MS / 2;
    a->next_list_ms = now + (uint64_t)list_s * 1000;
    return a->next_list_ms;
}

/* Earliest time a "short of peers" request may trigger the next list. */
static uint64_t announcer_short_earliest(const struct announcer *a, uint64_t last_query_ms)
{
    return last_query_ms + (a->gap_ms ? a->gap_ms : ANNOUNCER_MIN_GAP_MS / 2);
}

static void *announcer_main(void *arg)
{
    struct announcer *a = arg;
    uint64_t last_query_ms = 0;
    bool short_pending = false;          /* a request waits out the backoff */
    pthread_mutex_lock(&a->lock);
    while (!a->stop) {
        short_pending |= a->peers_requested;
        a->peers_requested = false;
        pthread_mutex_unlock(&a->lock);

        uint64_t now = cascade_now_ms();
        bool requested = false;
        if (short_pending && now >= announcer_short_earliest(a, last_query_ms)) {
            requested = true;
            short_pending = false;
            if (a->next_list_ms > now)
                a->next_list_ms = now;
        }
        uint64_t list_before = a->next_list_ms, sub_before = a->next_subscribe_ms;
        uint64_t next = announcer_step(a, requested);
        if (a->next_list_ms != list_before || a->next_subscribe_ms != sub_before)
            last_query_ms = cascade_now_ms();
        if (short_pending && announcer_short_earliest(a, last_query_ms) < next)
            next = announcer_short_earliest(a, last_query_ms);

        pthread_mutex_lock(&a->lock);
        struct timespec ts;
        deadline_at(&ts, next);
        int rc = 0;
        while (!a->stop && !a->peers_requested && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&a->wake, &a->lock, &ts);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

int announcer_start(const struct announcer_config *cfg, announcer_peers_fn on_peers, void *ctx,
                    struct announcer **out, char *err, size_t errlen)
{
    struct announcer *a = calloc(1, sizeof *a);
    if (!a) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    a->cfg = *cfg;
    a->on_peers = on_peers;
    a->ctx = ctx;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->wake, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&a->thread, NULL, announcer_main, a);
    if (rc != 0) {
        cascade_errf(err, errlen, "pthread_create: %s", strerror(rc));
        pthread_cond_destroy(&a->wake);
        pthread_mutex_destroy(&a->lock);
        free(a);
        return -1;
    }
    *out = a;
    return 0;
}

void announcer_request_peers(struct announcer *a)
{
    pthread_mutex_lock(&a->lock);
    if (!a->peers_requested) {
        a->peers_requested = true;
        pthread_cond_signal(&a->wake);
    }
    pthread_mutex_unlock(&a->lock);
}

void announcer_stop(struct announcer *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->lock);
    a->stop = true;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->thread, NULL);
    pthread_cond_destroy(&a->wake);
    pthread_mutex_destroy(&a->lock);
    free(a);
}
