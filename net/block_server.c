/* The block server (see block_server.h): one epoll event-loop thread,
 * level-triggered, non-blocking sockets.
 *
 * A connection is either READING (collecting one 64-byte request, EPOLLIN)
 * or SENDING (an answer header, then maybe block bytes through sendfile,
 * EPOLLOUT when the socket is full). It never reads while sending, so a
 * pipelining client can make us hold at most one request and one answer:
 * memory per connection is fixed (struct conn), and a client that stops
 * reading only stalls its own connection.
 *
 * A request is resolved through the source (block_server.h): acquire pins
 * the file and its store; a connection keeps the pin while the block's
 * bytes go out, then releases it, so the store cannot close under sendfile.
 * Status answers release at once.
 */
#include "net/block_server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "net/sock.h"
#include "net/wire.h"

#define BS_DEFAULT_IDLE_MS 60000
#define BS_DEFAULT_MAX_CONNECTIONS 4096
#define BS_LISTEN_BACKLOG 4096          /* the kernel clamps it to somaxconn */
#define BS_MAX_EVENTS 256
#define BS_ANSWERS_PER_TURN 16          /* then let other connections run */
#define BS_ACCEPTS_PER_TURN 64
#define BS_SEND_BUDGET (4u << 20)       /* block bytes per connection per turn */
#define BS_MESSAGE_MAX 128              /* status message text, bytes */
#define BS_TICK_MAX_MS 1000             /* idle sweep at least this often */

/* One client connection; only the loop thread touches it. */
struct conn {
    int fd;
    struct sockaddr_in peer;
    uint64_t last_active_ms;            /* last read or write progress */
    uint32_t events;                    /* epoll mask currently registered */
    struct conn *prev, *next;

    uint8_t req[WIRE_PEER_REQUEST_LEN];
    size_t req_len;

    bool sending;
    bool close_after;                   /* status 1, 3, 4 */
    uint8_t head[WIRE_PEER_ANSWER_HEADER_LEN + BS_MESSAGE_MAX];
    size_t head_len, head_sent;
    void *file;                         /* pinned (acquired) while block bytes remain */
    struct cascade_store *store;        /* its store, pinned with it */
    uint64_t block, block_len, file_off, file_left, file_sent;
};

struct block_server {
    int listen_fd, epoll_fd, wake_fd;
    struct sockaddr_in addr;
    int idle_timeout_ms, max_connections, tick_ms;
    struct block_server_source source;
    pthread_t thread;

    /* Loop thread only. */
    struct conn *conns;
    size_t nconns;
    bool accept_paused;                 /* out of descriptors: retry on the next tick */

    atomic_uint_fast64_t bytes_served, blocks_served;
    atomic_uint_fast64_t connections_open, connections_total;
};

/* ---- pins ---- */

/* Give back the pin of the block being sent (or abandoned). */
static void conn_unpin(struct block_server *srv, struct conn *c)
{
    if (!c->file)
        return;
    srv->source.release(srv->source.ctx, c->file, c->file_sent);
    c->file = NULL;
    c->store = NULL;
}

/* ---- connections ---- */

static void conn_close(struct block_server *srv, struct conn *c)
{
    close(c->fd);   /* also drops it from the epoll set */
    conn_unpin(srv, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    atomic_fetch_sub_explicit(&srv->connections_open, 1, memory_order_relaxed);
    free(c);
}

static void conn_debug(const struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void conn_debug(const struct conn *c, const char *fmt, ...)
{
    if (!cascade_log_enabled(CASCADE_LOG_DEBUG))
        return;
    char addr[SOCK_ADDRSTRLEN], msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sock_format_addr(&c->peer, addr, sizeof addr);
    log_debug("block server: %s: %s", addr, msg);
}

/* Register the events this connection waits for, if they changed. */
static int conn_want(struct block_server *srv, struct conn *c, uint32_t events)
{
    if (c->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        conn_debug(c, "epoll_ctl: %s", strerror(errno));
        return -1;
    }
    c->events = events;
    return 0;
}

static void conn_open(struct block_server *srv, int fd, const struct sockaddr_in *peer)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        log_warn("block server: out of memory for a connection");
        close(fd);
        return;
    }
    int one = 1;
    /* Small status answers must not wait for delayed ACKs (Nagle). */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->peer = *peer;
    c->last_active_ms = cascade_now_ms();
    c->events = EPOLLIN;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        log_warn("block server: epoll_ctl: %s", strerror(errno));
        close(fd);
        free(c);
        return;
    }
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    atomic_fetch_add_explicit(&srv->connections_open, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&srv->connections_total, 1, memory_order_relaxed);
    conn_debug(c, "connected");
}

/* Prepare a non-0 answer whose body is a message. */
static void conn_set_message(struct conn *c, uint8_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_set_message(struct conn *c, uint8_t status, const char *fmt, ...)
{
    char *msg = (char *)c->head + WIRE_PEER_ANSWER_HEADER_LEN;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, BS_MESSAGE_MAX, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < BS_MESSAGE_MAX ? (size_t)n : BS_MESSAGE_MAX - 1;
    wire_encode_peer_answer_header(status, len, c->head);
    c->head_len = WIRE_PEER_ANSWER_HEADER_LEN + len;
    c->head_sent = 0;
    c->close_after = status != WIRE_STATUS_NOT_PRESENT;
    c->sending = true;
    conn_debug(c, "status %u: %.*s", status, (int)len, msg);
}

/* Turn the full request in c->req into an answer to send. */
static void conn_answer(struct block_server *srv, struct conn *c)
{
    struct wire_peer_request req;
    char why[96];
    c->req_len = 0;
    if (wire_decode_peer_request(c->req, &req, why, sizeof why) < 0) {
        conn_set_message(c, WIRE_STATUS_BAD_REQUEST, "%s", why);   /* "bad request: ..." */
        return;
    }
    struct cascade_store *st = NULL;
    uint64_t count = 0;
    void *file = srv->source.acquire(srv->source.ctx, req.hash, &st, &count);
    if (!file) {
        conn_set_message(c, WIRE_STATUS_UNKNOWN_HASH, "unknown cascade hash");
        return;
    }
    if (req.block >= count) {
        srv->source.release(srv->source.ctx, file, 0);
        conn_set_message(c, WIRE_STATUS_OUT_OF_RANGE,
                         "block %" PRIu64 " out of range (%" PRIu64 " blocks)", req.block, count);
        return;
    }
    if (!st || !cascade_store_has(st, req.block)) {
        srv->source.release(srv->source.ctx, file, 0);
        conn_set_message(c, WIRE_STATUS_NOT_PRESENT, "block %" PRIu64 " not present", req.block);
        return;
    }
    const struct cascade_meta *m = cascade_store_meta(st);
    uint64_t len = cascade_meta_block_len(m, req.block);
    wire_encode_peer_answer_header(WIRE_STATUS_OK, len, c->head);
    c->head_len = WIRE_PEER_ANSWER_HEADER_LEN;
    c->head_sent = 0;
    c->close_after = false;
    c->file = file;
    c->store = st;
    c->block = req.block;
    c->block_len = len;
    c->file_off = cascade_meta_block_offset(m, req.block);
    c->file_left = len;
    c->file_sent = 0;
    c->sending = true;
}

/* sendfile raises SIGPIPE (it has no MSG_NOSIGNAL); the loop thread blocks
 * it, so take the pending one off the thread again. */
static void drain_sigpipe(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&set, NULL, &zero) == SIGPIPE)
        ;
}

static void conn_finish_block(struct block_server *srv, struct conn *c)
{
    atomic_fetch_add_explicit(&srv->blocks_served, 1, memory_order_relaxed);
    if (cascade_log_enabled(CASCADE_LOG_DEBUG)) {
        char hex[CASCADE_HEX_LEN];
        cascade_hex(cascade_store_meta(c->store)->cascade_hash, CASCADE_HASH_LEN, hex);
        conn_debug(c, "served block %" PRIu64 " (%" PRIu64 " bytes) of %.16s",
                   c->block, c->block_len, hex);
    }
    conn_unpin(srv, c);
}

/* Send the block bytes: 1 done, 0 would block (or budget used), -1 error. */
static int conn_send_block(struct block_server *srv, struct conn *c)
{
    uint64_t budget = BS_SEND_BUDGET;
    while (c->file_left > 0) {
        if (budget == 0)
            return 0;
        if (c->file_off > (uint64_t)INT64_MAX) {
            conn_debug(c, "block offset %" PRIu64 " too large", c->file_off);
            return -1;
        }
        off_t off = (off_t)c->file_off;
        size_t chunk = c->file_left < budget ? (size_t)c->file_left : (size_t)budget;
        ssize_t n = sendfile(c->fd, cascade_store_data_fd(c->store), &off, chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EPIPE)
                drain_sigpipe();
            conn_debug(c, "sendfile: %s", strerror(errno));
            return -1;
        }
        if (n == 0) {
            conn_debug(c, "data file ends inside block %" PRIu64, c->block);
            return -1;
        }
        c->file_off += (uint64_t)n;
        c->file_left -= (uint64_t)n;
        c->file_sent += (uint64_t)n;
        budget -= (uint64_t)n;
        c->last_active_ms = cascade_now_ms();
        atomic_fetch_add_explicit(&srv->bytes_served, (uint64_t)n, memory_order_relaxed);
    }
    conn_finish_block(srv, c);
    return 1;
}

/* Send the pending answer: 1 done, 0 would block, -1 error. */
static int conn_send(struct block_server *srv, struct conn *c)
{
    while (c->head_sent < c->head_len) {
        int flags = MSG_NOSIGNAL | (c->file ? MSG_MORE : 0);
        ssize_t n = send(c->fd, c->head + c->head_sent, c->head_len - c->head_sent, flags);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            conn_debug(c, "send: %s", strerror(errno));
            return -1;
        }
        c->head_sent += (size_t)n;
        c->last_active_ms = cascade_now_ms();
    }
    if (c->file)
        return conn_send_block(srv, c);
    return 1;
}

/* Read towards a full request: 1 full, 0 would block, -1 closed or error. */
static int conn_read(struct conn *c)
{
    while (c->req_len < WIRE_PEER_REQUEST_LEN) {
        ssize_t n = recv(c->fd, c->req + c->req_len, WIRE_PEER_REQUEST_LEN - c->req_len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            conn_debug(c, "recv: %s", strerror(errno));
            return -1;
        }
        if (n == 0) {
            if (c->req_len > 0)
                conn_debug(c, "closed in the middle of a request");
            else
                conn_debug(c, "closed");
            return -1;
        }
        c->req_len += (size_t)n;
        c->last_active_ms = cascade_now_ms();
    }
    return 1;
}

/* Make progress on one connection: alternately finish the answer being
 * sent and read the next request, a bounded number of times per turn. */
static void conn_run(struct block_server *srv, struct conn *c)
{
    for (int turn = 0; turn < BS_ANSWERS_PER_TURN; turn++) {
        if (c->sending) {
            int r = conn_send(srv, c);
            if (r < 0) {
                conn_close(srv, c);
                return;
            }
            if (r == 0) {
                if (conn_want(srv, c, EPOLLOUT) < 0)
                    conn_close(srv, c);
                return;
            }
            c->sending = false;
            if (c->close_after) {
                conn_close(srv, c);
                return;
            }
        }
        int r = conn_read(c);
        if (r < 0) {
            conn_close(srv, c);
            return;
        }
        if (r == 0) {
            if (conn_want(srv, c, EPOLLIN) < 0)
                conn_close(srv, c);
            return;
        }
        conn_answer(srv, c);
    }
    /* Budget used with an answer pending: level-triggered EPOLLOUT brings us back. */
    if (conn_want(srv, c, EPOLLOUT) < 0)
        conn_close(srv, c);
}

static void conn_on_event(struct block_server *srv, struct conn *c, uint32_t events)
{
    if (events & EPOLLERR) {
        int soerr = 0;
        socklen_t len = sizeof soerr;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        conn_debug(c, "socket error: %s", strerror(soerr));
        conn_close(srv, c);
        return;
    }
    /* EPOLLHUP falls through: the next read or write sees the end. */
    conn_run(srv, c);
}

/* ---- the loop ---- */

static void server_set_accepting(struct block_server *srv, bool on)
{
    struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.ptr = &srv->listen_fd};
    if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_MOD, srv->listen_fd, &ev) < 0)
        log_warn("block server: epoll_ctl(listen): %s", strerror(errno));
    srv->accept_paused = !on;
}

static void server_accept(struct block_server *srv)
{
    for (int i = 0; i < BS_ACCEPTS_PER_TURN; i++) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int fd = accept4(srv->listen_fd, (struct sockaddr *)&peer, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* Out of descriptors or memory: the listening socket would stay
             * readable and spin the loop, so stop accepting until the next tick. */
            log_warn("block server: accept: %s; pausing new connections", strerror(errno));
            server_set_accepting(srv, false);
            return;
        }
        if (srv->nconns >= (size_t)srv->max_connections) {
            log_debug("block server: %d connections open, refusing another",
                      srv->max_connections);
            close(fd);
            continue;
        }
        conn_open(srv, fd, &peer);
    }
}

static void server_sweep_idle(struct block_server *srv, uint64_t now)
{
    struct conn *next;
    for (struct conn *c = srv->conns; c; c = next) {
        next = c->next;
        if (now - c->last_active_ms >= (uint64_t)srv->idle_timeout_ms) {
            conn_debug(c, "idle for %d ms, closing", srv->idle_timeout_ms);
            conn_close(srv, c);
        }
    }
}

static void *server_loop(void *arg)
{
    struct block_server *srv = arg;
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);

    struct epoll_event events[BS_MAX_EVENTS];
    uint64_t next_tick = cascade_now_ms() + (uint64_t)srv->tick_ms;
    bool stopping = false;
    while (!stopping) {
        uint64_t now = cascade_now_ms();
        int timeout = next_tick > now ? (int)(next_tick - now) : 0;
        int n = epoll_wait(srv->epoll_fd, events, BS_MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            log_error("block server: epoll_wait: %s; server stops", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            void *p = events[i].data.ptr;
            if (p == &srv->wake_fd)
                stopping = true;
            else if (p == &srv->listen_fd)
                server_accept(srv);
            else
                conn_on_event(srv, p, events[i].events);
        }
        now = cascade_now_ms();
        if (now >= next_tick) {
            server_sweep_idle(srv, now);
            if (srv->accept_paused)
                server_set_accepting(srv, true);
            next_tick = now + (uint64_t)srv->tick_ms;
        }
    }
    while (srv->conns)
        conn_close(srv, srv->conns);
    return NULL;
}

/* ---- start, stats, stop ---- */

static int epoll_add(int epoll_fd, int fd, void *tag, char *err, size_t errlen)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        cascade_errf(err, errlen, "epoll_ctl: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int server_open_fds(struct block_server *srv, const struct sockaddr_in *listen,
                           char *err, size_t errlen)
{
    srv->listen_fd = sock_listen(listen, BS_LISTEN_BACKLOG, err, errlen);
    if (srv->listen_fd < 0)
        return -1;
    if (sock_set_nonblocking(srv->listen_fd) < 0 || sock_local_addr(srv->listen_fd, &srv->addr) < 0) {
        cascade_errf(err, errlen, "listening socket: %s", strerror(errno));
        return -1;
    }
    srv->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (srv->epoll_fd < 0) {
        cascade_errf(err, errlen, "epoll_create1: %s", strerror(errno));
        return -1;
    }
    srv->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (srv->wake_fd < 0) {
        cascade_errf(err, errlen, "eventfd: %s", strerror(errno));
        return -1;
    }
    if (epoll_add(srv->epoll_fd, srv->listen_fd, &srv->listen_fd, err, errlen) < 0 ||
        epoll_add(srv->epoll_fd, srv->wake_fd, &srv->wake_fd, err, errlen) < 0)
        return -1;
    return 0;
}

/* Everything but the thread and connections (gone by then). */
static void server_free(struct block_server *srv)
{
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    if (srv->epoll_fd >= 0)
        close(srv->epoll_fd);
    if (srv->wake_fd >= 0)
        close(srv->wake_fd);
    free(srv);
}

int block_server_start(const struct block_server_config *cfg, struct block_server **out,
                       char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->idle_timeout_ms < 0 || cfg->max_connections < 0) {
        cascade_errf(err, errlen, "block server: negative idle timeout or connection limit");
        return -1;
    }
    if (!cfg->source.acquire || !cfg->source.release) {
        cascade_errf(err, errlen, "block server: no source of files to serve");
        return -1;
    }
    struct block_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        cascade_errf(err, errlen, "block server: out of memory");
        return -1;
    }
    srv->listen_fd = srv->epoll_fd = srv->wake_fd = -1;
    srv->source = cfg->source;
    srv->idle_timeout_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : BS_DEFAULT_IDLE_MS;
    srv->max_connections = cfg->max_connections ? cfg->max_connections : BS_DEFAULT_MAX_CONNECTIONS;
    srv->tick_ms = srv->idle_timeout_ms / 4;
    if (srv->tick_ms > BS_TICK_MAX_MS)
        srv->tick_ms = BS_TICK_MAX_MS;
    if (srv->tick_ms < 10)
        srv->tick_ms = 10;
    atomic_init(&srv->bytes_served, 0);
    atomic_init(&srv->blocks_served, 0);
    atomic_init(&srv->connections_open, 0);
    atomic_init(&srv->connections_total, 0);

    if (server_open_fds(srv, &cfg->listen, err, errlen) < 0) {
        server_free(srv);
        return -1;
    }
    int rc = pthread_create(&srv->thread, NULL, server_loop, srv);
    if (rc != 0) {
        cascade_errf(err, errlen, "block server: pthread_create: %s", strerror(rc));
        server_free(srv);
        return -1;
    }
    char addr[SOCK_ADDRSTRLEN];
    sock_format_addr(&srv->addr, addr, sizeof addr);
    log_info("block server listening on %s", addr);
    *out = srv;
    return 0;
}

void block_server_address(const struct block_server *srv, struct sockaddr_in *out)
{
    *out = srv->addr;
}

void block_server_get_stats(struct block_server *srv, struct block_server_stats *out)
{
    memset(out, 0, sizeof *out);
    out->bytes_served = atomic_load_explicit(&srv->bytes_served, memory_order_relaxed);
    out->blocks_served = atomic_load_explicit(&srv->blocks_served, memory_order_relaxed);
    out->connections_open = atomic_load_explicit(&srv->connections_open, memory_order_relaxed);
    out->connections_total = atomic_load_explicit(&srv->connections_total, memory_order_relaxed);
}

void block_server_stop(struct block_server *srv)
{
    if (!srv)
        return;
    uint64_t one = 1;
    if (write(srv->wake_fd, &one, sizeof one) != (ssize_t)sizeof one)
        log_warn("block server: cannot wake the loop: %s", strerror(errno));
    pthread_join(srv->thread, NULL);
    server_free(srv);
}
