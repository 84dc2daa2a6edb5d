/* The tracker agent: see tracker_agent.h.
 *
 * The thread picks, among every (file, tracker) pair, the query due first,
 * waits for it (and for the gap since the last query), runs it without the
 * lock, hands the list over, and reschedules. Everything below `lock` is
 * guarded by it; the per-query state (the answer) lives on the thread. */
#include "net/tracker_agent.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "net/sock.h"

#define AGENT_DEFAULT_LIST_S 300
#define AGENT_DEFAULT_SUBSCRIBE_S 600
#define AGENT_DEFAULT_TIMEOUT_MS 5000
#define AGENT_EARLY_GAP_MIN_MS 1000      /* first early list after want_peers */
#define AGENT_EARLY_GAP_MAX_MS 30000
#define AGENT_BACKOFF_MIN_MS 1000        /* a failing tracker: first retry */
#define AGENT_BACKOFF_MAX_MS 60000

struct agent_file {
    bool active, subscribe, list;
    bool refused_logged;                 /* a tracker refused it: said once */
    uint8_t hash[CASCADE_HASH_LEN];
    uint64_t next_sub_ms[TRACKER_LIST_MAX];
    uint64_t next_list_ms[TRACKER_LIST_MAX];
    uint64_t early_gap_ms;               /* between lists asked for early */
    uint64_t last_early_ms;
    uint64_t young_gap_ms;               /* while the swarm grows; 0: settled */
};

struct agent_tracker {
    uint32_t learned_ip;                 /* our address as this tracker sees it */
    int failures;                        /* consecutive */
    uint64_t retry_at_ms;
    uint64_t answered_ms;                /* for the status: the last answer */
    char error[CASCADE_ERRLEN];          /* and why the last failure failed */
};

struct tracker_agent {
    struct tracker_agent_config cfg;
    tracker_agent_peers_fn on_peers;
    void *ctx;
    int cancel_fd;                       /* eventfd: readable once stopping */
    pthread_t thread;

    pthread_mutex_t lock;
    pthread_cond_t wake;                 /* CLOCK_MONOTONIC */
    bool stop;
    struct agent_file *files;            /* by the caller's file index */
    size_t files_cap;
    struct agent_tracker trackers[TRACKER_LIST_MAX];
    uint64_t last_query_ms;
    uint64_t rng;
};

/* One query chosen to run. */
struct agent_task {
    uint32_t file;
    size_t tracker;
    enum wire_tracker_command cmd;
    uint8_t hash[CASCADE_HASH_LEN];
    uint32_t ip;                         /* announced (subscribe) */
};

/* ---- time ---- */

static uint64_t agent_jitter(struct tracker_agent *a, uint64_t ms)
{
    a->rng ^= a->rng << 13;
    a->rng ^= a->rng >> 7;
    a->rng ^= a->rng << 17;
    /* 90% to 110% of ms, so files added together drift apart. */
    return ms - ms / 10 + (ms ? a->rng % (ms / 5 + 1) : 0);
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* ---- choosing ---- */

static bool agent_knows_ip(const struct tracker_agent *a, size_t t)
{
    return a->cfg.announce_ip || a->trackers[t].learned_ip;
}

/* When (file, tracker) wants a query next; UINT64_MAX: never. */
static uint64_t agent_due(const struct tracker_agent *a, const struct agent_file *f, size_t t)
{
    uint64_t due = UINT64_MAX;
    if (f->subscribe)
        due = f->next_sub_ms[t];
    if ((f->list || (f->subscribe && !agent_knows_ip(a, t))) && f->next_list_ms[t] < due)
        due = f->next_list_ms[t];
    if (due == UINT64_MAX)
        return due;
    return max_u64(due, a->trackers[t].retry_at_ms);
}

/* The earliest due query; its time, UINT64_MAX when there is none. */
static uint64_t agent_next(struct tracker_agent *a, struct agent_task *task)
{
    uint64_t best = UINT64_MAX;
    for (size_t i = 0; i < a->files_cap; i++) {
        const struct agent_file *f = &a->files[i];
        if (!f->active)
            continue;
        for (size_t t = 0; t < a->cfg.trackers.n; t++) {
            uint64_t due = agent_due(a, f, t);
            if (due >= best)
                continue;
            best = due;
            task->file = (uint32_t)i;
            task->tracker = t;
        }
    }
    if (best == UINT64_MAX)
        return best;
    const struct agent_file *f = &a->files[task->file];
    size_t t = task->tracker;
    bool sub = f->subscribe && f->next_sub_ms[t] <= best && agent_knows_ip(a, t);
    task->cmd = sub ? WIRE_CMD_SUBSCRIBE : WIRE_CMD_LIST;
    task->ip = a->cfg.announce_ip ? a->cfg.announce_ip : a->trackers[t].learned_ip;
    memcpy(task->hash, f->hash, CASCADE_HASH_LEN);
    return max_u64(best, a->last_query_ms + TRACKER_AGENT_GAP_MS);
}

/* ---- running one query ---- */

static void agent_reschedule(struct tracker_agent *a, const struct agent_task *task, int rc,
                             size_t new_peers)
{
    struct agent_file *f = &a->files[task->file];
    size_t t = task->tracker;
    uint64_t now = cascade_now_ms();
    uint64_t list_ms = (uint64_t)(a->cfg.list_interval_s > 0 ? a->cfg.list_interval_s
                                                             : AGENT_DEFAULT_LIST_S) * 1000;
    uint64_t sub_ms = (uint64_t)(a->cfg.subscribe_interval_s > 0 ? a->cfg.subscribe_interval_s
                                                                 : AGENT_DEFAULT_SUBSCRIBE_S) * 1000;
    if (rc == TRACKER_QUERY_ENET)
        return;   /* the tracker's backoff decides when to try again */
    /* Answered (or refused, which asking again soon will not change). While
     * the swarm grows, list again soon; each answer with nothing new waits
     * twice as long, until the usual interval. */
    uint64_t gap = list_ms;
    if (rc == TRACKER_QUERY_OK && f->young_gap_ms) {
        if (new_peers > 0)
            f->young_gap_ms = TRACKER_AGENT_YOUNG_GAP_MS;
        else
            f->young_gap_ms *= 2;
        if (f->young_gap_ms >= list_ms)
            f->young_gap_ms = 0;   /* settled */
        else
            gap = f->young_gap_ms;
    }
    f->next_list_ms[t] = now + agent_jitter(a, gap);
    if (task->cmd == WIRE_CMD_SUBSCRIBE)
        f->next_sub_ms[t] = now + agent_jitter(a, sub_ms);
}

static void agent_note_result(struct tracker_agent *a, const struct agent_task *task, int rc,
                              const char *why)
{
    struct agent_tracker *tr = &a->trackers[task->tracker];
    char addr[SOCK_ADDRSTRLEN];
    sock_format_addr(&a->cfg.trackers.addr[task->tracker], addr, sizeof addr);
    if (rc == TRACKER_QUERY_ENET) {
        snprintf(tr->error, sizeof tr->error, "%s", why);
        if (tr->failures == 0)
            log_warn("tracker %s: %s; retrying with a growing gap", addr, why);
        if (tr->failures < 16)
            tr->failures++;
        uint64_t gap = (uint64_t)AGENT_BACKOFF_MIN_MS << (tr->failures - 1);
        tr->retry_at_ms = cascade_now_ms() + agent_jitter(a, gap < AGENT_BACKOFF_MAX_MS
                                                                 ? gap : AGENT_BACKOFF_MAX_MS);
        return;
    }
    if (tr->failures > 0)
        log_info("tracker %s answers again", addr);
    tr->failures = 0;
    tr->retry_at_ms = 0;
    tr->answered_ms = cascade_now_ms();
    struct agent_file *f = &a->files[task->file];
    if (rc == TRACKER_QUERY_EREFUSED && !f->refused_logged) {
        char hex[CASCADE_HEX_LEN];
        cascade_hex(task->hash, CASCADE_HASH_LEN, hex);
        log_warn("tracker %s: file %.16s: %s", addr, hex, why);
        f->refused_logged = true;
    }
}

/* Runs task without the lock; takes it again before returning. */
static void agent_run(struct tracker_agent *a, struct agent_task *task)
{
    struct sockaddr_in tracker = a->cfg.trackers.addr[task->tracker];
    uint16_t port = a->cfg.announce_port;
    int timeout = a->cfg.timeout_ms > 0 ? a->cfg.timeout_ms : AGENT_DEFAULT_TIMEOUT_MS;
    bool sub = task->cmd == WIRE_CMD_SUBSCRIBE;
    a->last_query_ms = cascade_now_ms();
    pthread_mutex_unlock(&a->lock);

    struct wire_peer_record *peers = NULL;
    size_t n = 0, new_peers = 0;
    struct sockaddr_in local = {0};
    char why[CASCADE_ERRLEN] = "";
    int rc = tracker_query_cancelable(&tracker, task->cmd, task->hash, sub ? task->ip : 0,
                                      sub ? port : 0, timeout, a->cancel_fd, &peers, &n,
                                      &local, why, sizeof why);
    if (rc == TRACKER_QUERY_OK) {
        uint32_t ip = task->ip ? task->ip : ntohl(local.sin_addr.s_addr);
        struct sockaddr_in announced;
        sock_make_addr(ip, port, &announced);
        log_debug("tracker: %s: %zu peers", sub ? "subscribe" : "list", n);
        new_peers = a->on_peers(a->ctx, task->file, peers, n, &announced, task->tracker);
    }
    free(peers);

    pthread_mutex_lock(&a->lock);
    if (a->stop)
        return;
    struct agent_tracker *tr = &a->trackers[task->tracker];
    bool learned = rc == TRACKER_QUERY_OK && !tr->learned_ip;
    if (learned)
        tr->learned_ip = ntohl(local.sin_addr.s_addr);
    agent_note_result(a, task, rc, why);
    agent_reschedule(a, task, rc, new_peers);
    struct agent_file *f = &a->files[task->file];
    if (learned && f->subscribe && !a->cfg.announce_ip)
        f->next_sub_ms[task->tracker] = cascade_now_ms();   /* subscribe right away */
}

static void *agent_main(void *arg)
{
    struct tracker_agent *a = arg;
    pthread_setname_np(pthread_self(), "cascade-track");
    pthread_mutex_lock(&a->lock);
    while (!a->stop) {
        struct agent_task task;
        uint64_t due = agent_next(a, &task);
        uint64_t now = cascade_now_ms();
        if (due <= now) {
            agent_run(a, &task);
            continue;
        }
        struct timespec ts;
        cascade_timespec_at(due == UINT64_MAX ? now + 3600 * 1000 : due, &ts);
        pthread_cond_timedwait(&a->wake, &a->lock, &ts);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

/* ---- API ---- */

int tracker_agent_start(const struct tracker_agent_config *cfg, tracker_agent_peers_fn on_peers,
                        void *ctx, struct tracker_agent **out, char *err, size_t errlen)
{
    *out = NULL;
    struct tracker_agent *a = calloc(1, sizeof *a);
    if (!a) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    a->cfg = *cfg;
    a->on_peers = on_peers;
    a->ctx = ctx;
    a->rng = (cascade_now_ms() ^ (uint64_t)getpid() << 20) | 1;
    a->cancel_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->cancel_fd < 0) {
        cascade_errf(err, errlen, "eventfd: %s", strerror(errno));
        free(a);
        return -1;
    }
    pthread_mutex_init(&a->lock, NULL);
    if (cascade_cond_init_monotonic(&a->wake) != 0) {
        cascade_errf(err, errlen, "pthread_cond_init failed");
        goto fail;
    }
    int rc = pthread_create(&a->thread, NULL, agent_main, a);
    if (rc != 0) {
        cascade_errf(err, errlen, "pthread_create: %s", strerror(rc));
        pthread_cond_destroy(&a->wake);
        goto fail;
    }
    *out = a;
    return 0;
fail:
    pthread_mutex_destroy(&a->lock);
    close(a->cancel_fd);
    free(a);
    return -1;
}

static int agent_grow(struct tracker_agent *a, uint32_t file)
{
    if (file < a->files_cap)
        return 0;
    size_t cap = a->files_cap ? a->files_cap : 16;
    while (cap <= file)
        cap *= 2;
    struct agent_file *grown = realloc(a->files, cap * sizeof *grown);
    if (!grown)
        return -1;
    memset(grown + a->files_cap, 0, (cap - a->files_cap) * sizeof *grown);
    a->files = grown;
    a->files_cap = cap;
    return 0;
}

int tracker_agent_track(struct tracker_agent *a, uint32_t file, const uint8_t *hash,
                        bool subscribe, bool list)
{
    pthread_mutex_lock(&a->lock);
    if (agent_grow(a, file) < 0) {
        pthread_mutex_unlock(&a->lock);
        return -1;
    }
    struct agent_file *f = &a->files[file];
    bool changed = (subscribe && !f->subscribe) || (list && !f->list);
    if (!f->active) {
        f->active = true;
        memcpy(f->hash, hash, CASCADE_HASH_LEN);
    }
    if (changed) {
        uint64_t now = cascade_now_ms();
        for (size_t t = 0; t < a->cfg.trackers.n; t++) {
            if (subscribe && !f->subscribe)
                f->next_sub_ms[t] = now;
            if (list && !f->list)
                f->next_list_ms[t] = now;
        }
        if (list && !f->list)
            f->young_gap_ms = TRACKER_AGENT_YOUNG_GAP_MS;   /* a young swarm until it stops growing */
        f->subscribe |= subscribe;
        f->list |= list;
        pthread_cond_signal(&a->wake);
    }
    pthread_mutex_unlock(&a->lock);
    return 0;
}

void tracker_agent_want_peers(struct tracker_agent *a, uint32_t file)
{
    pthread_mutex_lock(&a->lock);
    if (file < a->files_cap && a->files[file].active) {
        struct agent_file *f = &a->files[file];
        uint64_t now = cascade_now_ms();
        uint64_t earliest = f->last_early_ms + f->early_gap_ms;
        if (now >= earliest) {
            /* Pull every tracker's next list forward to now, then widen the
             * gap, so a node that stays short asks less and less often. */
            for (size_t t = 0; t < a->cfg.trackers.n; t++)
                if (f->next_list_ms[t] > now)
                    f->next_list_ms[t] = now;
            f->list = true;
            f->last_early_ms = now;
            f->early_gap_ms = f->early_gap_ms ? 2 * f->early_gap_ms : AGENT_EARLY_GAP_MIN_MS;
            if (f->early_gap_ms > AGENT_EARLY_GAP_MAX_MS)
                f->early_gap_ms = AGENT_EARLY_GAP_MAX_MS;
            pthread_cond_signal(&a->wake);
        }
    }
    pthread_mutex_unlock(&a->lock);
}

size_t tracker_agent_get_status(struct tracker_agent *a, struct tracker_agent_status *out,
                                size_t max)
{
    pthread_mutex_lock(&a->lock);
    size_t n = a->cfg.trackers.n < max ? a->cfg.trackers.n : max;
    for (size_t t = 0; t < n; t++) {
        out[t].answered_ms = a->trackers[t].answered_ms;
        out[t].failures = a->trackers[t].failures;
        snprintf(out[t].error, sizeof out[t].error, "%s", a->trackers[t].error);
    }
    pthread_mutex_unlock(&a->lock);
    return n;
}

void tracker_agent_stop(struct tracker_agent *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->lock);
    a->stop = true;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->lock);
    uint64_t one = 1;
    if (write(a->cancel_fd, &one, sizeof one) != (ssize_t)sizeof one)
        log_warn("tracker agent: cannot cancel the query under way");
    pthread_join(a->thread, NULL);
    pthread_cond_destroy(&a->wake);
    pthread_mutex_destroy(&a->lock);
    close(a->cancel_fd);
    free(a->files);
    free(a);
}
