/* bad_peer: a peer that misbehaves on purpose, for the integration tests.
 *
 *   bad_peer --listen 127.0.0.1:0 --cascade F.cascade --data F --mode MODE
 *            [--tracker IP:PORT]
 *
 * Prints "listening on IP:PORT" on stdout once it accepts connections (after
 * the first subscription when --tracker is given). Requests with a wrong
 * magic, an unknown hash or an out-of-range block get the honest status
 * (4, 1, 3) in every mode; MODE only changes how an in-range block is
 * answered:
 *   good            the block, as a correct peer would
 *   wrong-hash      the block with its first byte flipped
 *   short           declares and sends one byte less than the block
 *   long            declares and sends one byte more
 *   unknown-status  status 9 with a message
 *   stall           header and half the block, then silence (socket kept open)
 *   reset           header and half the block, then a TCP reset (SO_LINGER 0)
 *   not-present     status 2 for every block
 *   slow            the block as good, but at about 256 KiB/s per connection
 *                   (a transfer that lasts: status and interruption tests)
 * Reads the data file directly (no store), one thread per connection, and
 * exits with status 0 on SIGTERM or SIGINT. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/meta.h"
#include "cascade/util.h"
#include "net/sock.h"
#include "net/tracker_client.h"
#include "net/wire.h"

#define IO_TIMEOUT_MS 60000
#define TRACKER_TIMEOUT_MS 5000
#define SUBSCRIBE_EVERY_S 30
#define STALL_MAX_S 3600            /* a stalled connection is released after this */
#define SLOW_CHUNK 4096             /* slow mode: this much, then a pause */
#define SLOW_PAUSE_NS (16 * 1000 * 1000)

enum mode { MODE_GOOD, MODE_WRONG_HASH, MODE_SHORT, MODE_LONG, MODE_UNKNOWN_STATUS,
            MODE_STALL, MODE_RESET, MODE_NOT_PRESENT, MODE_SLOW };

static const char *const mode_names[] = {"good", "wrong-hash", "short", "long",
                                         "unknown-status", "stall", "reset", "not-present",
                                         "slow"};

struct peer {
    struct cascade_meta meta;
    int data_fd;
    enum mode mode;
    int listen_fd;
    struct sockaddr_in addr;        /* where we listen (real port) */
    bool have_tracker;
    struct sockaddr_in tracker;
};

struct client {
    const struct peer *peer;
    int fd;
};

static void usage(FILE *out)
{
    fprintf(out, "usage: bad_peer --listen IP:PORT --cascade FILE.cascade --data FILE "
                 "--mode MODE [--tracker IP:PORT]\nmodes:");
    for (size_t i = 0; i < sizeof mode_names / sizeof mode_names[0]; i++)
        fprintf(out, " %s", mode_names[i]);
    fprintf(out, "\n");
}

static int parse_mode(const char *s, enum mode *out)
{
    for (size_t i = 0; i < sizeof mode_names / sizeof mode_names[0]; i++) {
        if (strcmp(s, mode_names[i]) == 0) {
            *out = (enum mode)i;
            return 0;
        }
    }
    return -1;
}

/* ---- answering ---- */

static int send_all(int fd, const void *buf, size_t len)
{
    char err[CASCADE_ERRLEN];
    if (sock_write_full(fd, buf, len, IO_TIMEOUT_MS, err, sizeof err) < 0) {
        fprintf(stderr, "bad_peer: write: %s\n", err);
        return -1;
    }
    return 0;
}

static int send_header(int fd, uint8_t status, uint64_t len)
{
    uint8_t head[WIRE_PEER_ANSWER_HEADER_LEN];
    wire_encode_peer_answer_header(status, len, head);
    return send_all(fd, head, sizeof head);
}

static int send_message(int fd, uint8_t status, const char *msg)
{
    if (send_header(fd, status, strlen(msg)) < 0)
        return -1;
    return send_all(fd, msg, strlen(msg));
}

/* The block's bytes plus one spare byte (zero) for the "long" mode. */
static uint8_t *read_block(const struct peer *p, uint64_t idx, uint64_t len)
{
    uint8_t *buf = calloc(1, len + 1);
    if (!buf) {
        fprintf(stderr, "bad_peer: out of memory for a %" PRIu64 "-byte block\n", len);
        return NULL;
    }
    uint64_t off = cascade_meta_block_offset(&p->meta, idx), done = 0;
    while (done < len) {
        ssize_t n = pread(p->data_fd, buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "bad_peer: reading block %" PRIu64 ": %s\n", idx,
                    n < 0 ? strerror(errno) : "data file too short");
            free(buf);
            return NULL;
        }
        done += (uint64_t)n;
    }
    return buf;
}

/* The bytes in small pieces with pauses between (about 256 KiB/s). */
static int send_slowly(int fd, const uint8_t *buf, uint64_t len)
{
    for (uint64_t off = 0; off < len; off += SLOW_CHUNK) {
        uint64_t n = len - off < SLOW_CHUNK ? len - off : SLOW_CHUNK;
        if (send_all(fd, buf + off, (size_t)n) < 0)
            return -1;
        struct timespec ts = {0, SLOW_PAUSE_NS};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static void stall_forever(void)
{
    for (int i = 0; i < STALL_MAX_S; i++)
        sleep(1);
}

static void reset_connection(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) < 0)
        fprintf(stderr, "bad_peer: SO_LINGER: %s\n", strerror(errno));
}

/* Answer an in-range block the way the mode says. 0: keep the connection. */
static int answer_block(const struct peer *p, int fd, uint64_t idx)
{
    if (p->mode == MODE_NOT_PRESENT) {
        char msg[64];
        snprintf(msg, sizeof msg, "block %" PRIu64 " not present", idx);
        return send_message(fd, WIRE_STATUS_NOT_PRESENT, msg);
    }
    if (p->mode == MODE_UNKNOWN_STATUS)
        return send_message(fd, 9, "a status this protocol does not have");

    uint64_t len = cascade_meta_block_len(&p->meta, idx);
    uint8_t *block = read_block(p, idx, len);
    if (!block)
        return -1;
    uint64_t declared = len, sent = len;
    switch (p->mode) {
    case MODE_WRONG_HASH: block[0] ^= 0xff; break;
    case MODE_SHORT: declared = sent = len - 1; break;
    case MODE_LONG: declared = sent = len + 1; break;
    case MODE_STALL: case MODE_RESET: sent = len / 2; break;
    default: break;
    }
    int rc = send_header(fd, WIRE_STATUS_OK, declared);
    if (rc == 0)
        rc = p->mode == MODE_SLOW ? send_slowly(fd, block, sent) : send_all(fd, block, sent);
    free(block);
    if (rc < 0)
        return -1;
    if (p->mode == MODE_STALL) {
        stall_forever();
        return -1;
    }
    if (p->mode == MODE_RESET) {
        reset_connection(fd);
        return -1;
    }
    return 0;
}

/* Answer one request; 0 to keep serving the connection. */
static int answer_request(const struct peer *p, int fd, const uint8_t raw[WIRE_PEER_REQUEST_LEN])
{
    struct wire_peer_request req;
    char msg[CASCADE_ERRLEN];
    if (wire_decode_peer_request(raw, &req, msg, sizeof msg) < 0) {
        send_message(fd, WIRE_STATUS_BAD_REQUEST, msg);   /* "bad request: ..." */
        return -1;
    }
    if (memcmp(req.hash, p->meta.cascade_hash, CASCADE_HASH_LEN) != 0) {
        send_message(fd, WIRE_STATUS_UNKNOWN_HASH, "unknown cascade hash");
        return -1;
    }
    if (req.block >= p->meta.block_count) {
        snprintf(msg, sizeof msg, "block %" PRIu64 " out of range (%" PRIu64 " blocks)",
                 req.block, p->meta.block_count);
        send_message(fd, WIRE_STATUS_OUT_OF_RANGE, msg);
        return -1;
    }
    return answer_block(p, fd, req.block);
}

static void *client_thread(void *arg)
{
    struct client *c = arg;
    uint8_t raw[WIRE_PEER_REQUEST_LEN];
    char err[CASCADE_ERRLEN];
    while (sock_read_full(c->fd, raw, sizeof raw, IO_TIMEOUT_MS, err, sizeof err) == 0)
        if (answer_request(c->peer, c->fd, raw) < 0)
            break;
    close(c->fd);
    free(c);
    return NULL;
}

static void *accept_thread(void *arg)
{
    const struct peer *p = arg;
    for (;;) {
        int fd = accept(p->listen_fd, NULL, NULL);
        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED)
                fprintf(stderr, "bad_peer: accept: %s\n", strerror(errno));
            if (errno == EMFILE || errno == ENFILE)
                sleep(1);
            continue;
        }
        struct client *c = malloc(sizeof *c);
        pthread_t t;
        if (!c) {
            close(fd);
            continue;
        }
        c->peer = p;
        c->fd = fd;
        if (pthread_create(&t, NULL, client_thread, c) != 0) {
            fprintf(stderr, "bad_peer: cannot start a connection thread\n");
            close(fd);
            free(c);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

/* ---- tracker ---- */

static void subscribe_once(const struct peer *p)
{
    struct wire_peer_record *peers = NULL;
    size_t npeers = 0;
    char err[CASCADE_ERRLEN];
    int rc = tracker_query(&p->tracker, WIRE_CMD_SUBSCRIBE, p->meta.cascade_hash,
                           ntohl(p->addr.sin_addr.s_addr), ntohs(p->addr.sin_port),
                           TRACKER_TIMEOUT_MS, &peers, &npeers, NULL, err, sizeof err);
    if (rc != TRACKER_QUERY_OK)
        fprintf(stderr, "bad_peer: subscribe: %s\n", err);
    free(peers);
}

static void *subscribe_thread(void *arg)
{
    const struct peer *p = arg;
    for (;;) {
        sleep(SUBSCRIBE_EVERY_S);
        subscribe_once(p);
    }
    return NULL;
}

/* ---- setup ---- */

struct options {
    const char *listen, *cascade, *data, *mode, *tracker;
};

static int parse_args(int argc, char **argv, struct options *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char **slot = NULL;
        if (strcmp(argv[i], "--listen") == 0) slot = &o->listen;
        else if (strcmp(argv[i], "--cascade") == 0) slot = &o->cascade;
        else if (strcmp(argv[i], "--data") == 0) slot = &o->data;
        else if (strcmp(argv[i], "--mode") == 0) slot = &o->mode;
        else if (strcmp(argv[i], "--tracker") == 0) slot = &o->tracker;
        if (!slot || i + 1 >= argc) {
            fprintf(stderr, "bad_peer: unexpected argument '%s'\n", argv[i]);
            return -1;
        }
        *slot = argv[++i];
    }
    if (!o->listen || !o->cascade || !o->data || !o->mode) {
        fprintf(stderr, "bad_peer: --listen, --cascade, --data and --mode are required\n");
        return -1;
    }
    return 0;
}

static int peer_setup(struct peer *p, const struct options *o)
{
    char err[CASCADE_ERRLEN];
    if (parse_mode(o->mode, &p->mode) < 0) {
        fprintf(stderr, "bad_peer: unknown mode '%s'\n", o->mode);
        return -1;
    }
    if (cascade_meta_load(o->cascade, &p->meta, err, sizeof err) < 0) {
        fprintf(stderr, "bad_peer: %s: %s\n", o->cascade, err);
        return -1;
    }
    p->data_fd = open(o->data, O_RDONLY | O_CLOEXEC);
    if (p->data_fd < 0) {
        fprintf(stderr, "bad_peer: %s: %s\n", o->data, strerror(errno));
        return -1;
    }
    if (o->tracker) {
        if (sock_parse_addr(o->tracker, "127.0.0.1", 0, &p->tracker, err, sizeof err) < 0) {
            fprintf(stderr, "bad_peer: --tracker: %s\n", err);
            return -1;
        }
        p->have_tracker = true;
    }
    struct sockaddr_in want;
    if (sock_parse_addr(o->listen, "127.0.0.1", 0, &want, err, sizeof err) < 0) {
        fprintf(stderr, "bad_peer: --listen: %s\n", err);
        return -1;
    }
    p->listen_fd = sock_listen(&want, 128, err, sizeof err);
    if (p->listen_fd < 0 || sock_local_addr(p->listen_fd, &p->addr) < 0) {
        fprintf(stderr, "bad_peer: %s\n", p->listen_fd < 0 ? err : "getsockname failed");
        return -1;
    }
    return 0;
}

static int start_thread(void *(*fn)(void *), struct peer *p)
{
    pthread_t t;
    if (pthread_create(&t, NULL, fn, p) != 0) {
        fprintf(stderr, "bad_peer: cannot start a thread\n");
        return -1;
    }
    pthread_detach(t);
    return 0;
}

int main(int argc, char **argv)
{
    struct options o;
    struct peer p = {.data_fd = -1, .listen_fd = -1};
    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (parse_args(argc, argv, &o) < 0) {
        usage(stderr);
        return 2;
    }
    cascade_log_init("bad_peer", CASCADE_LOG_WARN, false);
    /* Signals are taken by sigwait below; threads inherit the mask. */
    sigset_t stop, pipe_set;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);

    if (peer_setup(&p, &o) < 0)
        return 1;
    if (p.have_tracker) {
        subscribe_once(&p);
        if (start_thread(subscribe_thread, &p) < 0)
            return 1;
    }
    if (start_thread(accept_thread, &p) < 0)
        return 1;
    char addr[SOCK_ADDRSTRLEN];
    sock_format_addr(&p.addr, addr, sizeof addr);
    printf("listening on %s\n", addr);
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    /* Threads may still use p; leave it to the process exit. */
    _exit(0);
}
