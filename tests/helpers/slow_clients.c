/* slow_clients: many connections that each trickle a valid request a byte
 * at a time (the attack that used to lock everyone out of a block server),
 * and optionally one honest client that wants a block meanwhile. For
 * contrib/bench/bench_server_attack.sh.
 *
 *   slow_clients --server IP:PORT --hash HEX [--connections N]
 *                [--from FIRST[-LAST]] [--interval MS] [--seconds S]
 *                [--reconnect] [--honest-from IP] [--honest-block N]
 *
 * Opens N connections (default 4200), spread round-robin over the source
 * addresses FIRST..LAST (the last byte counts up, e.g. 127.0.1.1-127.0.1.100;
 * default 127.0.1.1), each bound before connect. Each sends one byte of a
 * request for block 0 of HASH at once and one more every interval (default
 * 1000 ms); answers are read and dropped. A connection the server closes is
 * counted and, with --reconnect, opened again at the next interval.
 *
 * With --honest-from, once every attacker has been opened, a client from
 * that address asks for block B (default 0) and reads the whole answer; if
 * the server closes it first it tries again on a new connection, until it
 * gets status 0 or the run ends. honest_ms runs from its first connect to
 * the last byte of the block.
 *
 * After S seconds (default 30) it prints one line and exits:
 *   attackers=N sources=K opened=.. closed_by_server=.. connect_failed=..
 *   honest=ok|failed|none honest_ms=.. honest_attempts=..
 * Exit 0 when the honest client got its block (or none was asked for), 1
 * when not, 2 on bad usage. Raises its own RLIMIT_NOFILE to the hard limit. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cascade/util.h"
#include "net/sock.h"
#include "net/wire.h"

#define CONNECT_TIMEOUT_MS 5000
#define HONEST_RETRY_MS 100

struct options {
    struct sockaddr_in server;
    uint8_t hash[CASCADE_HASH_LEN];
    int connections, interval_ms, seconds;
    uint32_t first_src, sources;        /* host order */
    bool reconnect;
    uint32_t honest_src;                /* 0: no honest client */
    uint64_t honest_block;
};

struct honest {
    const struct options *o;
    uint64_t end_ms;
    atomic_bool go;                     /* every attacker has been opened */
    bool ok;
    int attempts;
    uint64_t waited_ms;
    char why[CASCADE_ERRLEN];
};

/* ---- connections ---- */

/* A connected non-blocking socket from src (host order), or -1. */
static int connect_from(uint32_t src, const struct sockaddr_in *dst)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    /* The port is picked at connect, so thousands may share one address. */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in from;
    sock_make_addr(src, 0, &from);
    int soerr = 0;
    socklen_t len = sizeof soerr;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (bind(fd, (struct sockaddr *)&from, sizeof from) < 0 ||
        (connect(fd, (const struct sockaddr *)dst, sizeof *dst) < 0 && errno != EINPROGRESS) ||
        poll(&p, 1, CONNECT_TIMEOUT_MS) != 1 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- the honest client ---- */

/* One try: 1 got the block, 0 closed before it (try again), -1 failed. */
static int honest_try(struct honest *h, uint8_t *req)
{
    int fd = connect_from(h->o->honest_src, &h->o->server);
    if (fd < 0) {
        cascade_errf(h->why, sizeof h->why, "connect: %s", strerror(errno));
        return 0;
    }
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    uint64_t now = cascade_now_ms();
    int left = h->end_ms > now ? (int)(h->end_ms - now) : 1;
    uint8_t head[WIRE_PEER_ANSWER_HEADER_LEN], status;
    uint64_t len = 0;
    int rc = sock_write_full(fd, req, WIRE_PEER_REQUEST_LEN, left, h->why, sizeof h->why);
    if (rc == 0)
        rc = sock_read_full(fd, head, sizeof head, left, h->why, sizeof h->why);
    if (rc == 0) {
        wire_decode_peer_answer_header(head, &status, &len);
        uint8_t *body = len <= (64u << 20) ? malloc(len ? len : 1) : NULL;
        if (status != WIRE_STATUS_OK || !body) {
            cascade_errf(h->why, sizeof h->why, "status %u, body of %llu bytes", status,
                         (unsigned long long)len);
            rc = -2;
        } else {
            rc = sock_read_full(fd, body, len, left, h->why, sizeof h->why);
        }
        free(body);
    }
    close(fd);
    return rc == 0 ? 1 : rc == -2 ? -1 : 0;
}

static void *honest_run(void *arg)
{
    struct honest *h = arg;
    while (!atomic_load(&h->go) && cascade_now_ms() < h->end_ms)
        usleep(10000);
    struct wire_peer_request r = {.block = h->o->honest_block};
    memcpy(r.hash, h->o->hash, CASCADE_HASH_LEN);
    uint8_t req[WIRE_PEER_REQUEST_LEN];
    wire_encode_peer_request(&r, req);
    uint64_t start = cascade_now_ms();
    while (cascade_now_ms() < h->end_ms) {
        h->attempts++;
        int r = honest_try(h, req);
        if (r != 0) {
            h->ok = r > 0;
            h->waited_ms = cascade_now_ms() - start;
            return NULL;
        }
        usleep(HONEST_RETRY_MS * 1000);
    }
    return NULL;
}

/* ---- the attackers ---- */

struct attack {
    const struct options *o;
    int *fds;
    uint8_t req[WIRE_PEER_REQUEST_LEN];
    size_t next_byte;
    uint64_t opened, closed, failed;
};

/* (Re)open attacker i and send the first byte of its request. */
static void attack_open(struct attack *a, int i)
{
    uint32_t src = a->o->first_src + (uint32_t)i % a->o->sources;
    a->fds[i] = connect_from(src, &a->o->server);
    if (a->fds[i] < 0) {
        a->failed++;
        return;
    }
    a->opened++;
    send(a->fds[i], a->req, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void attack_lost(struct attack *a, int i)
{
    close(a->fds[i]);
    a->fds[i] = -1;
    a->closed++;
}

/* Drop what the server sent; notice when it closed. */
static void attack_read(struct attack *a, int i)
{
    uint8_t buf[4096];
    ssize_t n = recv(a->fds[i], buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        attack_lost(a, i);
}

/* One interval's worth: the next byte on every connection, and reopen the
 * closed ones when asked to. */
static void attack_tick(struct attack *a)
{
    uint8_t byte = a->req[a->next_byte++ % WIRE_PEER_REQUEST_LEN];
    for (int i = 0; i < a->o->connections; i++) {
        if (a->fds[i] >= 0 && send(a->fds[i], &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
            errno != EAGAIN && errno != EWOULDBLOCK)
            attack_lost(a, i);
        else if (a->fds[i] < 0 && a->o->reconnect)
            attack_open(a, i);
    }
}

/* Wait for answers or closes until the next tick. */
static void attack_wait(struct attack *a, struct pollfd *pfds, uint64_t until)
{
    int n = a->o->connections;
    for (int i = 0; i < n; i++)
        pfds[i] = (struct pollfd){.fd = a->fds[i], .events = POLLIN};
    uint64_t now = cascade_now_ms();
    if (poll(pfds, (nfds_t)n, until > now ? (int)(until - now) : 0) <= 0)
        return;
    for (int i = 0; i < n; i++)
        if (a->fds[i] >= 0 && (pfds[i].revents & (POLLIN | POLLHUP | POLLERR)))
            attack_read(a, i);
}

static void attack_run(struct attack *a, struct honest *h, uint64_t end_ms)
{
    struct pollfd *pfds = calloc((size_t)a->o->connections, sizeof *pfds);
    if (!pfds) {
        fprintf(stderr, "slow_clients: out of memory\n");
        exit(CASCADE_EXIT_FAIL);
    }
    for (int i = 0; i < a->o->connections; i++)
        attack_open(a, i);
    atomic_store(&h->go, true);
    uint64_t next = cascade_now_ms() + (uint64_t)a->o->interval_ms;
    while (cascade_now_ms() < end_ms) {
        attack_wait(a, pfds, next < end_ms ? next : end_ms);
        if (cascade_now_ms() >= next) {
            attack_tick(a);
            next += (uint64_t)a->o->interval_ms;
        }
    }
    free(pfds);
}

/* ---- options ---- */

static void usage(FILE *out)
{
    fprintf(out, "usage: slow_clients --server IP:PORT --hash HEX [--connections N]\n"
                 "                    [--from FIRST[-LAST]] [--interval MS] [--seconds S]\n"
                 "                    [--reconnect] [--honest-from IP] [--honest-block N]\n");
}

static int parse_count(const char *name, const char *s, uint64_t max, uint64_t *out)
{
    if (cascade_parse_size(s, out) == 0 && *out >= 1 && *out <= max)
        return 0;
    fprintf(stderr, "slow_clients: %s: '%s' is not a number from 1 to %llu\n", name, s,
            (unsigned long long)max);
    return -1;
}

static int parse_ip(const char *name, const char *s, uint32_t *out)
{
    struct in_addr a;
    if (inet_pton(AF_INET, s, &a) != 1) {
        fprintf(stderr, "slow_clients: %s: '%s' is not an IPv4 address\n", name, s);
        return -1;
    }
    *out = ntohl(a.s_addr);
    return 0;
}

/* FIRST or FIRST-LAST (LAST's last byte at least FIRST's, same first three). */
static int parse_sources(const char *s, struct options *o)
{
    char first[INET_ADDRSTRLEN];
    const char *dash = strchr(s, '-');
    size_t n = dash ? (size_t)(dash - s) : strlen(s);
    if (n >= sizeof first) {
        fprintf(stderr, "slow_clients: --from: '%s' is not FIRST[-LAST]\n", s);
        return -1;
    }
    memcpy(first, s, n);
    first[n] = 0;
    uint32_t last;
    if (parse_ip("--from", first, &o->first_src) < 0 ||
        parse_ip("--from", dash ? dash + 1 : first, &last) < 0)
        return -1;
    if (last < o->first_src || (last >> 8) != (o->first_src >> 8)) {
        fprintf(stderr, "slow_clients: --from: %s must end at or after %s in the same /24\n",
                dash + 1, first);
        return -1;
    }
    o->sources = last - o->first_src + 1;
    return 0;
}

/* One option with its value at argv[i + 1]; -1 with a message. */
static int parse_option(const char *name, const char *v, struct options *o)
{
    char err[CASCADE_ERRLEN];
    uint64_t n;
    if (strcmp(name, "--server") == 0) {
        if (sock_parse_addr(v, "127.0.0.1", 0, &o->server, err, sizeof err) == 0)
            return 0;
        fprintf(stderr, "slow_clients: --server: %s\n", err);
        return -1;
    }
    if (strcmp(name, "--hash") == 0) {
        if (strlen(v) == 2 * CASCADE_HASH_LEN && cascade_unhex(v, o->hash, CASCADE_HASH_LEN) == 0)
            return 0;
        fprintf(stderr, "slow_clients: --hash: '%s' is not 64 hex digits\n", v);
        return -1;
    }
    if (strcmp(name, "--from") == 0)
        return parse_sources(v, o);
    if (strcmp(name, "--honest-from") == 0)
        return parse_ip(name, v, &o->honest_src);
    int *fields[] = {&o->connections, &o->interval_ms, &o->seconds};
    const char *names[] = {"--connections", "--interval", "--seconds"};
    for (int k = 0; k < 3; k++) {
        if (strcmp(name, names[k]) == 0) {
            if (parse_count(name, v, INT_MAX, &n) < 0)
                return -1;
            *fields[k] = (int)n;
            return 0;
        }
    }
    if (strcmp(name, "--honest-block") == 0) {
        if (cascade_parse_size(v, &o->honest_block) == 0)
            return 0;
        fprintf(stderr, "slow_clients: --honest-block: '%s' is not a block number\n", v);
        return -1;
    }
    fprintf(stderr, "slow_clients: unexpected argument '%s'\n", name);
    return -1;
}

static int parse_args(int argc, char **argv, struct options *o, bool *have_server, bool *have_hash)
{
    *o = (struct options){.connections = 4200, .interval_ms = 1000, .seconds = 30,
                          .first_src = 0x7f000101, .sources = 1};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reconnect") == 0) {
            o->reconnect = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "slow_clients: %s wants a value\n", argv[i]);
            return -1;
        }
        *have_server |= strcmp(argv[i], "--server") == 0;
        *have_hash |= strcmp(argv[i], "--hash") == 0;
        if (parse_option(argv[i], argv[i + 1], o) < 0)
            return -1;
        i++;
    }
    if (!*have_server || !*have_hash) {
        fprintf(stderr, "slow_clients: --server and --hash are required\n");
        return -1;
    }
    return 0;
}

static void raise_fd_limit(int want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)want + 64)
        fprintf(stderr, "slow_clients: the descriptor limit (%llu) is below %d connections; "
                        "some will fail\n", (unsigned long long)rl.rlim_cur, want);
}

int main(int argc, char **argv)
{
    struct options o;
    bool have_server = false, have_hash = false;
    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return CASCADE_EXIT_OK;
    }
    if (parse_args(argc, argv, &o, &have_server, &have_hash) < 0) {
        usage(stderr);
        return CASCADE_EXIT_USAGE;
    }
    raise_fd_limit(o.connections);
    uint64_t end_ms = cascade_now_ms() + (uint64_t)o.seconds * 1000;

    struct attack a = {.o = &o};
    struct wire_peer_request r = {.block = 0};
    memcpy(r.hash, o.hash, CASCADE_HASH_LEN);
    wire_encode_peer_request(&r, a.req);
    a.next_byte = 1;
    a.fds = malloc((size_t)o.connections * sizeof *a.fds);
    struct honest h = {.o = &o, .end_ms = end_ms};
    atomic_init(&h.go, false);
    pthread_t thread;
    if (!a.fds || (o.honest_src && pthread_create(&thread, NULL, honest_run, &h) != 0)) {
        fprintf(stderr, "slow_clients: out of memory or threads\n");
        return CASCADE_EXIT_FAIL;
    }
    attack_run(&a, &h, end_ms);
    if (o.honest_src)
        pthread_join(thread, NULL);

    printf("attackers=%d sources=%u opened=%llu closed_by_server=%llu connect_failed=%llu "
           "honest=%s honest_ms=%llu honest_attempts=%d\n", o.connections, o.sources,
           (unsigned long long)a.opened, (unsigned long long)a.closed,
           (unsigned long long)a.failed, !o.honest_src ? "none" : h.ok ? "ok" : "failed",
           (unsigned long long)h.waited_ms, h.attempts);
    if (o.honest_src && !h.ok)
        fprintf(stderr, "slow_clients: the honest client did not get its block: %s\n",
                h.why[0] ? h.why : "the run ended first");
    for (int i = 0; i < o.connections; i++)
        if (a.fds[i] >= 0)
            close(a.fds[i]);
    free(a.fds);
    return o.honest_src && !h.ok ? CASCADE_EXIT_FAIL : CASCADE_EXIT_OK;
}
