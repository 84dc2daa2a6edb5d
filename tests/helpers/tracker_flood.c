/* tracker_flood: abuses a tracker on purpose, for the integration tests and
 * contrib/bench/bench_tracker_attack.sh.
 *
 *   tracker_flood --tracker IP:PORT [--src IP] [--concurrency N] [--pause MS]
 *                 [--timeout MS] MODE ARGS...
 *
 *   random N            N subscribes, each for a new random cascade hash
 *   ports HASH N        N subscribes for HASH announcing made-up ports 1..N
 *   silent N SECONDS    hold N connections that never send a byte; one the
 *                       tracker closes is opened again after --pause MS
 *   probe HASH IP:PORT  list HASH, one request at a time, every --pause MS
 *                       until SIGTERM/SIGINT (or --count N probes), and check
 *                       that IP:PORT is in every answer
 *
 * --src binds the attacking connections to that loopback address (Linux
 * routes all of 127/8 to lo). random/ports keep --concurrency requests in
 * flight (default 32). Every connection has --timeout MS (default 10000) to
 * finish; nothing waits longer. Prints one summary line on stdout:
 *   random, ports: requests N answered N refused N failed N
 *   silent:        connections N closed-by-tracker N failed N
 *   probe:         probes N answered N found N failed N median-ms X max-ms Y
 * Exit status 0 when it ran (the numbers say what happened), 1 when it could
 * not, 2 for bad usage. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cascade/util.h"
#include "net/sock.h"
#include "net/tracker_client.h"
#include "net/wire.h"

#define MAX_PROBES 100000

enum slot_state { SLOT_IDLE, SLOT_CONNECTING, SLOT_READING };

struct slot {
    int fd;
    enum slot_state state;
    uint64_t deadline_ms;       /* connection timeout, or when an idle slot reopens */
};

struct flood {
    struct sockaddr_in tracker, src;
    bool have_src;
    int concurrency, pause_ms, timeout_ms;
    uint64_t count;             /* requests to make (random, ports, probe) */
    uint8_t hash[CASCADE_HASH_LEN];
    bool random_hashes;
    uint64_t rng;
    uint64_t sent;              /* subscribes sent (ports mode numbers them) */
    int epoll_fd;
    /* results */
    uint64_t started, answered, refused, failed, closed;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
"usage: tracker_flood --tracker IP:PORT [--src IP] [--concurrency N] [--pause MS]\n"
"                     [--timeout MS] [--count N] MODE ARGS...\n"
"modes: random N | ports HASH N | silent N SECONDS | probe HASH IP:PORT\n");
}

static uint64_t next_random(struct flood *f)
{
    f->rng ^= f->rng << 13;
    f->rng ^= f->rng >> 7;
    f->rng ^= f->rng << 17;
    return f->rng;
}

/* A non-blocking connection to the tracker from --src; -1 on failure. */
static int open_conn(struct flood *f)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if ((f->have_src && bind(fd, (const struct sockaddr *)&f->src, sizeof f->src) < 0) ||
        (connect(fd, (const struct sockaddr *)&f->tracker, sizeof f->tracker) < 0 &&
         errno != EINPROGRESS)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Close with a reset, so neither side keeps the connection in TIME_WAIT. */
static void close_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static void slot_close(struct flood *f, struct slot *s, uint64_t reopen_at)
{
    if (s->fd >= 0)
        close_reset(s->fd);
    s->fd = -1;
    s->state = SLOT_IDLE;
    s->deadline_ms = reopen_at;
    (void)f;
}

static int slot_open(struct flood *f, struct slot *s, uint32_t events)
{
    s->fd = open_conn(f);
    if (s->fd < 0)
        return -1;
    struct epoll_event ev = {.events = events, .data.ptr = s};
    if (epoll_ctl(f->epoll_fd, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
        close(s->fd);
        s->fd = -1;
        return -1;
    }
    s->state = SLOT_CONNECTING;
    s->deadline_ms = cascade_now_ms() + (uint64_t)f->timeout_ms;
    return 0;
}

/* ---- random, ports: many subscribes in flight -------------------------- */

static void send_subscribe(struct flood *f, struct slot *s)
{
    struct wire_tracker_request req = {.command = WIRE_CMD_SUBSCRIBE, .ip = 0};
    if (f->random_hashes) {
        for (size_t k = 0; k < CASCADE_HASH_LEN; k += 8) {
            uint64_t x = next_random(f);
            memcpy(req.hash + k, &x, 8);
        }
        req.port = (uint16_t)(1 + next_random(f) % 65535);
    } else {
        memcpy(req.hash, f->hash, CASCADE_HASH_LEN);
        req.port = (uint16_t)(1 + f->sent++ % 65535);   /* 1, 2, ... in order */
    }
    uint8_t raw[WIRE_TRACKER_REQUEST_LEN];
    wire_encode_tracker_request(&req, raw);
    /* 54 bytes into an empty loopback socket buffer go out in one call. */
    if (send(s->fd, raw, sizeof raw, MSG_NOSIGNAL) != (ssize_t)sizeof raw) {
        f->failed++;
        slot_close(f, s, 0);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
    epoll_ctl(f->epoll_fd, EPOLL_CTL_MOD, s->fd, &ev);
    s->state = SLOT_READING;
}

/* Read the answer to its end; the first byte is the status. */
static void read_answer(struct flood *f, struct slot *s, uint8_t *status, size_t *got)
{
    uint8_t buf[4096];
    for (;;) {
        ssize_t n = recv(s->fd, buf, sizeof buf, 0);
        if (n > 0) {
            if (*got == 0)
                *status = buf[0];
            *got += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n == 0 && *got >= WIRE_TRACKER_ANSWER_HEADER_LEN) {
            if (*status == 0)
                f->answered++;
            else
                f->refused++;
        } else {
            f->failed++;
        }
        slot_close(f, s, 0);
        return;
    }
}

struct answer_progress {
    uint8_t status;
    size_t got;
};

static int run_requests(struct flood *f)
{
    struct slot *slots = calloc((size_t)f->concurrency, sizeof *slots);
    struct answer_progress *prog = calloc((size_t)f->concurrency, sizeof *prog);
    if (!slots || !prog) {
        fprintf(stderr, "tracker_flood: out of memory\n");
        return 1;
    }
    for (int i = 0; i < f->concurrency; i++)
        slots[i].fd = -1;
    struct epoll_event events[256];
    while (!stop_requested) {
        bool busy = false;
        uint64_t now = cascade_now_ms();
        for (int i = 0; i < f->concurrency; i++) {
            struct slot *s = &slots[i];
            if (s->state != SLOT_IDLE && now > s->deadline_ms) {
                f->failed++;
                slot_close(f, s, 0);
            }
            if (s->state == SLOT_IDLE && f->started < f->count) {
                prog[i] = (struct answer_progress){0};
                if (slot_open(f, s, EPOLLOUT) < 0) {
                    f->failed++;
                    f->started++;
                    continue;
                }
                f->started++;
            }
            busy |= s->state != SLOT_IDLE;
        }
        if (!busy)
            break;
        int n = epoll_wait(f->epoll_fd, events, 256, 100);
        for (int k = 0; k < n; k++) {
            struct slot *s = events[k].data.ptr;
            size_t i = (size_t)(s - slots);
            if (s->state == SLOT_CONNECTING) {
                if (events[k].events & (EPOLLERR | EPOLLHUP)) {
                    f->failed++;
                    slot_close(f, s, 0);
                } else {
                    send_subscribe(f, s);
                }
            } else if (s->state == SLOT_READING) {
                read_answer(f, s, &prog[i].status, &prog[i].got);
            }
        }
    }
    for (int i = 0; i < f->concurrency; i++)
        if (slots[i].fd >= 0)
            close_reset(slots[i].fd);
    printf("requests %llu answered %llu refused %llu failed %llu\n",
           (unsigned long long)f->started, (unsigned long long)f->answered,
           (unsigned long long)f->refused, (unsigned long long)f->failed);
    free(slots);
    free(prog);
    return 0;
}

/* ---- silent: hold connections that never send -------------------------- */

static int run_silent(struct flood *f, int n, int seconds)
{
    struct slot *slots = calloc((size_t)n, sizeof *slots);
    if (!slots) {
        fprintf(stderr, "tracker_flood: out of memory\n");
        return 1;
    }
    for (int i = 0; i < n; i++)
        slots[i].fd = -1;
    uint64_t end = cascade_now_ms() + (uint64_t)seconds * 1000;
    struct epoll_event events[256];
    while (!stop_requested && cascade_now_ms() < end) {
        uint64_t now = cascade_now_ms();
        for (int i = 0; i < n; i++) {
            struct slot *s = &slots[i];
            if (s->state != SLOT_IDLE || now < s->deadline_ms)
                continue;
            if (slot_open(f, s, EPOLLIN | EPOLLRDHUP) < 0) {
                f->failed++;
                s->deadline_ms = now + (uint64_t)f->pause_ms;
                continue;
            }
            s->deadline_ms = UINT64_MAX;      /* held until the tracker lets go */
            f->started++;
        }
        int got = epoll_wait(f->epoll_fd, events, 256, 20);
        for (int k = 0; k < got; k++) {
            struct slot *s = events[k].data.ptr;
            f->closed++;
            slot_close(f, s, cascade_now_ms() + (uint64_t)f->pause_ms);
        }
    }
    for (int i = 0; i < n; i++)
        if (slots[i].fd >= 0)
            close_reset(slots[i].fd);
    printf("connections %llu closed-by-tracker %llu failed %llu\n",
           (unsigned long long)f->started, (unsigned long long)f->closed,
           (unsigned long long)f->failed);
    free(slots);
    return 0;
}

/* ---- probe: an honest client listing, one request at a time ------------ */

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int run_probe(struct flood *f, const struct sockaddr_in *expect)
{
    static uint64_t latency[MAX_PROBES];
    uint64_t n = 0, found = 0;
    char err[CASCADE_ERRLEN];
    uint32_t want_ip = ntohl(expect->sin_addr.s_addr);
    uint16_t want_port = ntohs(expect->sin_port);
    while (!stop_requested && n < f->count && n < MAX_PROBES) {
        struct wire_peer_record *peers = NULL;
        size_t np = 0;
        uint64_t t0 = cascade_now_ms();
        int rc = tracker_query(&f->tracker, WIRE_CMD_LIST, f->hash, 0, 0, f->timeout_ms,
                               &peers, &np, NULL, err, sizeof err);
        latency[n++] = cascade_now_ms() - t0;
        if (rc == TRACKER_QUERY_OK) {
            f->answered++;
            bool seen = false;
            for (size_t i = 0; i < np; i++)
                seen |= peers[i].ip == want_ip && peers[i].port == want_port;
            if (seen)
                found++;
            else
                fprintf(stderr, "tracker_flood: probe %llu: %zu peers, expected one missing\n",
                        (unsigned long long)n, np);
        } else {
            f->failed++;
            fprintf(stderr, "tracker_flood: probe %llu: %s\n", (unsigned long long)n, err);
        }
        free(peers);
        if (!stop_requested)
            usleep((useconds_t)f->pause_ms * 1000);
    }
    qsort(latency, n, sizeof *latency, compare_u64);
    printf("probes %llu answered %llu found %llu failed %llu median-ms %llu max-ms %llu\n",
           (unsigned long long)n, (unsigned long long)f->answered, (unsigned long long)found,
           (unsigned long long)f->failed, (unsigned long long)(n ? latency[n / 2] : 0),
           (unsigned long long)(n ? latency[n - 1] : 0));
    return 0;
}

/* ---- setup --------------------------------------------------------------- */

static int parse_int(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
    if (cascade_parse_size(s, out) < 0 || *out > max) {
        fprintf(stderr, "tracker_flood: %s: expected a number up to %llu, got '%s'\n", opt,
                (unsigned long long)max, s);
        return -1;
    }
    return 0;
}

static int parse_hash(const char *s, uint8_t *out)
{
    if (strlen(s) != 2 * CASCADE_HASH_LEN || cascade_unhex(s, out, CASCADE_HASH_LEN) < 0) {
        fprintf(stderr, "tracker_flood: expected 64 hex digits, got '%s'\n", s);
        return -1;
    }
    return 0;
}

/* Many connections need many descriptors: take what the hard limit allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int parse_options(struct flood *f, int *argc, char ***argv)
{
    char err[CASCADE_ERRLEN];
    bool have_tracker = false;
    uint64_t v;
    int i = 1;
    for (; i + 1 < *argc && (*argv)[i][0] == '-'; i += 2) {
        const char *opt = (*argv)[i], *val = (*argv)[i + 1];
        if (!strcmp(opt, "--tracker")) {
            if (sock_parse_addr(val, "127.0.0.1", TRACKER_DEFAULT_PORT, &f->tracker,
                                err, sizeof err) < 0) {
                fprintf(stderr, "tracker_flood: --tracker: %s\n", err);
                return -1;
            }
            have_tracker = true;
        } else if (!strcmp(opt, "--src")) {
            if (sock_parse_addr(val, "127.0.0.1", 0, &f->src, err, sizeof err) < 0) {
                fprintf(stderr, "tracker_flood: --src: %s\n", err);
                return -1;
            }
            f->src.sin_port = 0;
            f->have_src = true;
        } else if (!strcmp(opt, "--concurrency")) {
            if (parse_int(opt, val, 10000, &v) < 0 || v == 0)
                return -1;
            f->concurrency = (int)v;
        } else if (!strcmp(opt, "--pause")) {
            if (parse_int(opt, val, 60000, &v) < 0)
                return -1;
            f->pause_ms = (int)v;
        } else if (!strcmp(opt, "--timeout")) {
            if (parse_int(opt, val, 600000, &v) < 0 || v == 0)
                return -1;
            f->timeout_ms = (int)v;
        } else if (!strcmp(opt, "--count")) {
            if (parse_int(opt, val, MAX_PROBES, &v) < 0)
                return -1;
            f->count = v;
        } else {
            fprintf(stderr, "tracker_flood: unknown option %s\n", opt);
            return -1;
        }
    }
    if (!have_tracker || i >= *argc) {
        usage(stderr);
        return -1;
    }
    *argc -= i;
    *argv += i;
    return 0;
}

int main(int argc, char **argv)
{
    struct flood f = {.concurrency = 32, .pause_ms = 10, .timeout_ms = 10000,
                      .count = UINT64_MAX};
    if (parse_options(&f, &argc, &argv) < 0)
        return CASCADE_EXIT_USAGE;
    f.rng = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid() << 32 ^ 1;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    raise_fd_limit();
    f.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (f.epoll_fd < 0) {
        fprintf(stderr, "tracker_flood: epoll_create1: %s\n", strerror(errno));
        return CASCADE_EXIT_FAIL;
    }
    const char *mode = argv[0];
    uint64_t a, b;
    if (!strcmp(mode, "random") && argc == 2 && parse_int("N", argv[1], UINT32_MAX, &a) == 0) {
        f.random_hashes = true;
        f.count = a;
        return run_requests(&f);
    }
    if (!strcmp(mode, "ports") && argc == 3 && parse_hash(argv[1], f.hash) == 0 &&
        parse_int("N", argv[2], UINT32_MAX, &a) == 0) {
        f.count = a;
        return run_requests(&f);
    }
    if (!strcmp(mode, "silent") && argc == 3 && parse_int("N", argv[1], 1000000, &a) == 0 &&
        parse_int("SECONDS", argv[2], 3600, &b) == 0)
        return run_silent(&f, (int)a, (int)b);
    struct sockaddr_in expect;
    char err[CASCADE_ERRLEN];
    if (!strcmp(mode, "probe") && argc == 3 && parse_hash(argv[1], f.hash) == 0) {
        if (sock_parse_addr(argv[2], "127.0.0.1", 0, &expect, err, sizeof err) < 0) {
            fprintf(stderr, "tracker_flood: probe: %s\n", err);
            return CASCADE_EXIT_USAGE;
        }
        return run_probe(&f, &expect);
    }
    usage(stderr);
    return CASCADE_EXIT_USAGE;
}
