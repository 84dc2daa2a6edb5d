/* The tracker's network side (see tracker_server.h): one epoll loop
 * thread, level-triggered, non-blocking sockets.
 *
 * Connections live in a pool allocated at start (max_connections slots,
 * so memory is fixed) and in two lists, oldest first: every connection
 * (deadlines, all equal in length, expire from the front) and those still
 * reading their request (the front one is shed when room is needed). A
 * newly accepted connection is read at once: an honest client's request is
 * usually there already, so it is answered before it ever waits. */
#include "net/tracker_server.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "net/listener.h"
#include "net/sock.h"
#include "net/wire.h"

#define TS_LISTEN_BACKLOG 4096          /* the kernel clamps it to somaxconn */
#define TS_MAX_EVENTS 256
#define TS_ACCEPTS_PER_TURN 64
#define TS_FD_MARGIN 32                 /* descriptors kept for everything but connections */
#define TS_MIN_CONNECTIONS 4
#define TS_ACCEPT_PAUSE_MS 100          /* after an accept error nothing else cures */
#define TS_TICK_MAX_MS 1000
#define TS_SHED_TRIES 4                 /* candidates read once more before one is shed */

enum ts_warning { WARN_FULL, WARN_SOURCE, WARN_NO_FDS, WARN_ACCEPT, WARN_MEMORY, NWARNINGS };

/* One kind of warning: logged once, then counted and summed up. */
struct warning {
    uint64_t last_ms;                   /* when it was last logged */
    uint64_t suppressed;                /* times it happened since then */
    bool logged;
    char text[200];
};

enum { ALL, READING, NLISTS };

struct conn {
    int fd;                             /* -1: the slot is free */
    uint32_t source;                    /* host order */
    uint64_t deadline_ms;
    bool reading;
    struct {
        struct conn *prev, *next;
    } link[NLISTS];                     /* every connection / those still reading */
    uint8_t in[WIRE_TRACKER_REQUEST_LEN];
    size_t got;
    uint8_t *out;                       /* the answer, once the request is complete */
    size_t out_len, sent;
};

struct conn_list {
    struct conn *first, *last;
};

struct tracker_server {
    struct listener lis;                /* listening socket, epoll set, wake and spare fds */
    int max_connections, max_per_source, timeout_ms, log_interval_ms;
    pthread_t thread;

    pthread_mutex_t lock;               /* guards state */
    struct tracker_state *state;

    /* Loop thread only. */
    struct conn *pool;
    uint32_t *pool_source;              /* source of each slot, 0 when free (counted fast) */
    int *free_slots;
    int nfree;
    struct conn_list lists[NLISTS];     /* oldest first */
    uint64_t accept_resume_ms;          /* 0: accepting */
    struct warning warnings[NWARNINGS];

    atomic_uint_fast64_t connections_open, connections_total, answered, refused, shed,
        turned_away, timed_out, accept_errors, loop_turns;
    atomic_bool failed;
};

static void count(atomic_uint_fast64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static void format_ip(uint32_t ip, char *out, size_t outlen)
{
    snprintf(out, outlen, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
}

/* ---- rate-limited warnings ------------------------------------------- */

/* Log w: its text, and how often it happened since it was last logged. */
static void warn_emit(struct warning *w, uint64_t now)
{
    if (w->suppressed == 1)
        log_warn("tracker: %s", w->text);
    else
        log_warn("tracker: %s (%llu times in %.1f s)", w->text,
                 (unsigned long long)w->suppressed, (double)(now - w->last_ms) / 1000);
    w->suppressed = 0;
    w->logged = true;
    w->last_ms = now;
}

static void warn_limited(struct tracker_server *srv, enum ts_warning kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void warn_limited(struct tracker_server *srv, enum ts_warning kind, const char *fmt, ...)
{
    struct warning *w = &srv->warnings[kind];
    uint64_t now = cascade_now_ms();
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->text, sizeof w->text, fmt, ap);
    va_end(ap);
    w->suppressed++;
    if (!w->logged || now - w->last_ms >= (uint64_t)srv->log_interval_ms)
        warn_emit(w, now);
}

/* Sum up what was held back; all of it when force (at stop). */
static void warn_flush(struct tracker_server *srv, uint64_t now, bool force)
{
    for (int k = 0; k < NWARNINGS; k++) {
        struct warning *w = &srv->warnings[k];
        if (w->suppressed && (force || now - w->last_ms >= (uint64_t)srv->log_interval_ms))
            warn_emit(w, now);
    }
}

/* When the next summary is due; UINT64_MAX when none is waiting. */
static uint64_t warn_next_due(const struct tracker_server *srv)
{
    uint64_t due = UINT64_MAX;
    for (int k = 0; k < NWARNINGS; k++) {
        const struct warning *w = &srv->warnings[k];
        if (w->suppressed && w->last_ms + (uint64_t)srv->log_interval_ms < due)
            due = w->last_ms + (uint64_t)srv->log_interval_ms;
    }
    return due;
}

/* ---- connection lists and the pool ------------------------------------ */

static void list_append(struct tracker_server *srv, struct conn *c, int k)
{
    struct conn_list *l = &srv->lists[k];
    c->link[k].prev = l->last;
    c->link[k].next = NULL;
    if (l->last)
        l->last->link[k].next = c;
    else
        l->first = c;
    l->last = c;
}

static void list_remove(struct tracker_server *srv, struct conn *c, int k)
{
    struct conn_list *l = &srv->lists[k];
    if (c->link[k].prev)
        c->link[k].prev->link[k].next = c->link[k].next;
    else
        l->first = c->link[k].next;
    if (c->link[k].next)
        c->link[k].next->link[k].prev = c->link[k].prev;
    else
        l->last = c->link[k].prev;
}

/* A scan of a flat array: at the default cap of 1024 about a microsecond. */
static int source_connections(const struct tracker_server *srv, uint32_t source)
{
    int n = 0;
    for (int i = 0; i < srv->max_connections; i++)
        n += srv->pool_source[i] == source;
    return n;
}

static void stop_reading(struct tracker_server *srv, struct conn *c)
{
    if (c->reading)
        list_remove(srv, c, READING);
    c->reading = false;
}

static void conn_close(struct tracker_server *srv, struct conn *c)
{
    close(c->fd);       /* also leaves the epoll set */
    stop_reading(srv, c);
    list_remove(srv, c, ALL);
    free(c->out);
    int slot = (int)(c - srv->pool);
    srv->pool_source[slot] = 0;
    c->fd = -1;
    srv->free_slots[srv->nfree++] = slot;
    atomic_fetch_sub_explicit(&srv->connections_open, 1, memory_order_relaxed);
}

static void conn_run(struct tracker_server *srv, struct conn *c);

/* Make room: close the connection that has been slowest to send its
 * request (of this source, or of anybody for source 0). It is read once
 * more first: a request that came after all is answered (which frees the
 * slot too). false: nobody to shed. */
static bool shed_oldest_reading(struct tracker_server *srv, uint32_t source)
{
    for (int tries = 0; tries < TS_SHED_TRIES; tries++) {
        struct conn *c = srv->lists[READING].first;
        while (c && source && c->source != source)
            c = c->link[READING].next;
        if (!c)
            return false;
        conn_run(srv, c);
        if (c->fd < 0)
            return true;            /* answered, or gone */
        if (!c->reading)
            continue;               /* its answer is on the way: not to be shed */
        if (cascade_log_enabled(CASCADE_LOG_DEBUG)) {
            char ip[16];
            format_ip(c->source, ip, sizeof ip);
            log_debug("tracker: shedding a connection from %s that sent %zu of %d bytes",
                      ip, c->got, WIRE_TRACKER_REQUEST_LEN);
        }
        count(&srv->shed);          /* counted first: the client may look at once */
        conn_close(srv, c);
        return true;
    }
    return false;
}

/* ---- answering ----------------------------------------------------------- */

static int set_refusal(struct conn *c, const char *msg)
{
    size_t len = strlen(msg);
    c->out = malloc(WIRE_TRACKER_ANSWER_HEADER_LEN + len);
    if (!c->out)
        return -1;
    wire_encode_tracker_answer_header(1, (uint32_t)len, c->out);
    memcpy(c->out + WIRE_TRACKER_ANSWER_HEADER_LEN, msg, len);
    c->out_len = WIRE_TRACKER_ANSWER_HEADER_LEN + len;
    return 0;
}

static int set_peer_list(struct conn *c, const struct wire_peer_record *recs, size_t n)
{
    c->out_len = WIRE_TRACKER_ANSWER_HEADER_LEN + n * WIRE_PEER_RECORD_LEN;
    c->out = malloc(c->out_len);
    if (!c->out)
        return -1;
    wire_encode_tracker_answer_header(0, (uint32_t)(n * WIRE_PEER_RECORD_LEN), c->out);
    for (size_t i = 0; i < n; i++)
        wire_encode_peer_record(&recs[i], c->out + WIRE_TRACKER_ANSWER_HEADER_LEN +
                                i * WIRE_PEER_RECORD_LEN);
    return 0;
}

static void describe(const struct conn *c, const struct wire_tracker_request *req,
                     char *out, size_t outlen)
{
    char hex[CASCADE_HEX_LEN], src[16], body[16];
    cascade_hex(req->hash, CASCADE_HASH_LEN, hex);
    format_ip(c->source, src, sizeof src);
    format_ip(req->ip, body, sizeof body);
    snprintf(out, outlen, "%s from %s (body %s:%u) for %.16s",
             req->command == WIRE_CMD_SUBSCRIBE ? "subscribe" : "list", src, body, req->port, hex);
}

/* The request is complete: build the answer into c->out. -1: out of memory. */
static int conn_answer(struct tracker_server *srv, struct conn *c)
{
    struct wire_tracker_request req;
    char err[CASCADE_ERRLEN], what[160] = "";
    if (wire_decode_tracker_request(c->in, &req, err, sizeof err) < 0) {
        format_ip(c->source, what, sizeof what);
        log_debug("tracker: bad request from %s: %s", what, err);
        count(&srv->refused);
        return set_refusal(c, err);
    }
    if (cascade_log_enabled(CASCADE_LOG_DEBUG))
        describe(c, &req, what, sizeof what);
    pthread_mutex_lock(&srv->lock);
    uint32_t max = tracker_state_max_answer(srv->state);
    struct wire_peer_record *recs = calloc(max, sizeof *recs);
    size_t n = 0;
    int rc = recs ? tracker_state_handle(srv->state, &req, c->source, (uint64_t)time(NULL),
                                         recs, &n, err, sizeof err)
                  : -2;
    pthread_mutex_unlock(&srv->lock);
    if (rc == -2)
        return -1;
    if (rc < 0) {
        log_debug("tracker: %s: refused: %s", what, err);
        count(&srv->refused);
        free(recs);
        return set_refusal(c, err);
    }
    log_debug("tracker: %s: %zu peers", what, n);
    count(&srv->answered);
    rc = set_peer_list(c, recs, n);
    free(recs);
    return rc;
}

/* ---- connection I/O --------------------------------------------------------- */

/* Send what is left of the answer: 1 all sent, 0 would block, -1 error. */
static int conn_send(struct conn *c)
{
    while (c->sent < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->sent, c->out_len - c->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        c->sent += (size_t)n;
    }
    return 1;
}

/* Progress on c after an event (or right after accept). May close it. */
static void conn_run(struct tracker_server *srv, struct conn *c)
{
    while (c->reading) {
        ssize_t n = recv(c->fd, c->in + c->got, sizeof c->in - c->got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {                   /* gone before its request was complete */
            conn_close(srv, c);
            return;
        }
        c->got += (size_t)n;
        if (c->got < sizeof c->in)
            continue;
        stop_reading(srv, c);
        if (conn_answer(srv, c) < 0) {
            warn_limited(srv, WARN_MEMORY, "out of memory for an answer: connection closed");
            conn_close(srv, c);
            return;
        }
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (conn_send(c) != 0 || epoll_ctl(srv->lis.epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        conn_close(srv, c);             /* answered, the client went away, or no epoll */
}

/* Room for a newcomer from source: at the source's cap its own oldest
 * still-reading connection goes, at the global cap anybody's. false: no
 * room (every candidate is answering), turn it away. */
static bool make_room(struct tracker_server *srv, uint32_t source)
{
    char ip[16];
    if (source_connections(srv, source) >= srv->max_per_source) {
        format_ip(source, ip, sizeof ip);
        bool shed = shed_oldest_reading(srv, source);
        warn_limited(srv, WARN_SOURCE, "%s has %d connections open: %s", ip,
                     srv->max_per_source, shed ? "shed its oldest incomplete one"
                                               : "turning one more away");
        return shed;
    }
    if (srv->nfree)
        return true;
    bool shed = shed_oldest_reading(srv, 0);
    warn_limited(srv, WARN_FULL, "%d connections open: %s", srv->max_connections,
                 shed ? "shed the oldest incomplete one" : "all answering, turning one away");
    return shed;
}

/* A new connection: make room if needed, then read it at once. */
static void conn_admit(struct tracker_server *srv, int fd, uint32_t source)
{
    if (!make_room(srv, source)) {
        count(&srv->turned_away);
        close(fd);
        return;
    }
    int slot = srv->free_slots[--srv->nfree];
    struct conn *c = &srv->pool[slot];
    *c = (struct conn){.fd = fd, .source = source, .reading = true,
                       .deadline_ms = cascade_now_ms() + (uint64_t)srv->timeout_ms};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(srv->lis.epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        warn_limited(srv, WARN_MEMORY, "epoll_ctl: %s: connection closed", strerror(errno));
        close(fd);
        srv->free_slots[srv->nfree++] = slot;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    srv->pool_source[slot] = source;
    list_append(srv, c, ALL);
    list_append(srv, c, READING);
    count(&srv->connections_total);
    count(&srv->connections_open);
    conn_run(srv, c);
}

/* ---- accepting --------------------------------------------------------------- */

static void set_accepting(struct tracker_server *srv, bool on)
{
    struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.ptr = &srv->lis.listen_fd};
    if (epoll_ctl(srv->lis.epoll_fd, EPOLL_CTL_MOD, srv->lis.listen_fd, &ev) < 0)
        log_warn("tracker: epoll_ctl(listen): %s", strerror(errno));
    srv->accept_resume_ms = on ? 0 : cascade_now_ms() + TS_ACCEPT_PAUSE_MS;
}

/* Out of descriptors with nothing to shed: accept the newcomer on the
 * spare descriptor and close it at once. false: could not. */
static bool turn_away_with_spare(struct tracker_server *srv)
{
    struct sockaddr_in from;
    int fd = listener_accept_on_spare(&srv->lis, &from);
    if (fd >= 0) {
        count(&srv->turned_away);
        close(fd);
    }
    return listener_take_spare(&srv->lis) == 0 && fd >= 0;
}

/* A connection is waiting to be accepted (poll needs no descriptor). */
static bool listen_ready(const struct tracker_server *srv)
{
    struct pollfd p = {.fd = srv->lis.listen_fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

static void server_accept(struct tracker_server *srv)
{
    for (int i = 0; i < TS_ACCEPTS_PER_TURN; i++) {
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        int fd = accept4(srv->lis.listen_fd, (struct sockaddr *)&from, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_admit(srv, fd, ntohl(from.sin_addr.s_addr));
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        int e = errno;
        /* accept4 takes a descriptor before it looks at the queue, so it
         * fails so even with nobody waiting: then there is nothing to do. */
        if ((e == EMFILE || e == ENFILE) && !listen_ready(srv))
            return;
        count(&srv->accept_errors);
        if (e == EMFILE || e == ENFILE) {
            if (shed_oldest_reading(srv, 0)) {
                warn_limited(srv, WARN_NO_FDS, "accept: %s: shed the oldest incomplete "
                             "connection", strerror(e));
                continue;
            }
            if (turn_away_with_spare(srv)) {
                warn_limited(srv, WARN_NO_FDS, "accept: %s: turned a connection away",
                             strerror(e));
                continue;
            }
        }
        /* Nothing cures it now: the listening socket would stay readable and
         * spin the loop, so stop accepting for a moment. */
        warn_limited(srv, WARN_ACCEPT, "accept: %s: pausing new connections for %d ms",
                     strerror(e), TS_ACCEPT_PAUSE_MS);
        set_accepting(srv, false);
        return;
    }
}

/* ---- the loop ------------------------------------------------------------------ */

static void sweep_deadlines(struct tracker_server *srv, uint64_t now)
{
    struct conn *c;
    while ((c = srv->lists[ALL].first) && c->deadline_ms <= now) {
        if (cascade_log_enabled(CASCADE_LOG_DEBUG)) {
            char ip[16];
            format_ip(c->source, ip, sizeof ip);
            log_debug("tracker: connection from %s timed out after %zu of %d bytes", ip,
                      c->got, WIRE_TRACKER_REQUEST_LEN);
        }
        count(&srv->timed_out);
        conn_close(srv, c);
    }
}

static int loop_timeout(const struct tracker_server *srv, uint64_t now)
{
    uint64_t due = now + TS_TICK_MAX_MS, w = warn_next_due(srv);
    const struct conn *oldest = srv->lists[ALL].first;
    if (oldest && oldest->deadline_ms < due)
        due = oldest->deadline_ms;
    if (srv->accept_resume_ms && srv->accept_resume_ms < due)
        due = srv->accept_resume_ms;
    if (w < due)
        due = w;
    return due > now ? (int)(due - now) : 0;
}

static void *server_loop(void *arg)
{
    struct tracker_server *srv = arg;
    struct epoll_event events[TS_MAX_EVENTS];
    bool stopping = false;
    while (!stopping) {
        int n = epoll_wait(srv->lis.epoll_fd, events, TS_MAX_EVENTS,
                           loop_timeout(srv, cascade_now_ms()));
        count(&srv->loop_turns);
        if (n < 0 && errno != EINTR) {
            log_error("tracker: epoll_wait: %s; the server stops", strerror(errno));
            atomic_store(&srv->failed, true);
            break;
        }
        for (int i = 0; i < n; i++) {
            void *p = events[i].data.ptr;
            if (p == &srv->lis.wake_fd)
                stopping = true;
            else if (p == &srv->lis.listen_fd)
                server_accept(srv);
            else if (((struct conn *)p)->fd >= 0)   /* not shed earlier in this turn */
                conn_run(srv, p);
        }
        uint64_t now = cascade_now_ms();
        sweep_deadlines(srv, now);
        if (srv->accept_resume_ms && now >= srv->accept_resume_ms)
            set_accepting(srv, true);
        warn_flush(srv, now, false);
    }
    while (srv->lists[ALL].first)
        conn_close(srv, srv->lists[ALL].first);
    warn_flush(srv, cascade_now_ms(), true);
    return NULL;
}

/* ---- start, stats, stop --------------------------------------------------------- */

/* The connection cap, lowered so connections alone never exhaust
 * RLIMIT_NOFILE (raised to the hard limit first). */
static int fit_descriptor_limit(int wanted)
{
    rlim_t limit = sock_raise_fd_limit();
    if (limit == 0 || limit == RLIM_INFINITY || limit >= (rlim_t)wanted + TS_FD_MARGIN)
        return wanted;
    int room = limit > TS_FD_MARGIN + TS_MIN_CONNECTIONS ? (int)(limit - TS_FD_MARGIN)
                                                          : TS_MIN_CONNECTIONS;
    log_info("tracker: descriptor limit %llu: at most %d connections at once",
             (unsigned long long)limit, room);
    return room;
}

static int server_alloc_pool(struct tracker_server *srv)
{
    int n = srv->max_connections;
    srv->pool = calloc((size_t)n, sizeof *srv->pool);
    srv->pool_source = calloc((size_t)n, sizeof *srv->pool_source);
    srv->free_slots = calloc((size_t)n, sizeof *srv->free_slots);
    if (!srv->pool || !srv->pool_source || !srv->free_slots)
        return -1;
    for (int i = 0; i < n; i++) {
        srv->pool[i].fd = -1;
        srv->free_slots[i] = n - 1 - i;
    }
    srv->nfree = n;
    return 0;
}

/* Everything but the thread and connections (gone by then). */
static void server_free(struct tracker_server *srv)
{
    listener_close(&srv->lis);
    free(srv->pool);
    free(srv->pool_source);
    free(srv->free_slots);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}

static int pick(int value, int fallback)
{
    return value ? value : fallback;
}

int tracker_server_start(const struct tracker_server_config *cfg, struct tracker_state *ts,
                         struct tracker_server **out, char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->max_connections < 0 || cfg->max_connections > TRACKER_SERVER_MAX_CONNECTIONS ||
        cfg->max_connections_per_source < 0 || cfg->request_timeout_ms < 0 ||
        cfg->log_interval_ms < 0) {
        cascade_errf(err, errlen, "tracker server: connection caps must be 0 to %d, times not "
                     "negative", TRACKER_SERVER_MAX_CONNECTIONS);
        return -1;
    }
    struct tracker_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        cascade_errf(err, errlen, "tracker server: out of memory");
        return -1;
    }
    listener_init(&srv->lis);
    srv->state = ts;
    srv->max_connections = fit_descriptor_limit(
        pick(cfg->max_connections, TRACKER_SERVER_DEFAULT_MAX_CONNECTIONS));
    srv->max_per_source = pick(cfg->max_connections_per_source,
                               TRACKER_SERVER_DEFAULT_MAX_PER_SOURCE);
    if (srv->max_per_source > srv->max_connections)
        srv->max_per_source = srv->max_connections;
    srv->timeout_ms = pick(cfg->request_timeout_ms, TRACKER_SERVER_DEFAULT_TIMEOUT_MS);
    srv->log_interval_ms = pick(cfg->log_interval_ms, TRACKER_SERVER_DEFAULT_LOG_INTERVAL_MS);
    pthread_mutex_init(&srv->lock, NULL);
    if (server_alloc_pool(srv) < 0) {
        cascade_errf(err, errlen, "tracker server: out of memory for %d connections",
                     srv->max_connections);
        server_free(srv);
        return -1;
    }
    if (listener_open(&srv->lis, &cfg->listen, TS_LISTEN_BACKLOG, "tracker server", err,
                      errlen) < 0) {
        server_free(srv);
        return -1;
    }
    int rc = pthread_create(&srv->thread, NULL, server_loop, srv);
    if (rc != 0) {
        cascade_errf(err, errlen, "tracker server: pthread_create: %s", strerror(rc));
        server_free(srv);
        return -1;
    }
    *out = srv;
    return 0;
}

void tracker_server_address(const struct tracker_server *srv, struct sockaddr_in *out)
{
    *out = srv->lis.addr;
}

long tracker_server_set_allowed(struct tracker_server *srv, const uint8_t *hashes, size_t n,
                                char *err, size_t errlen)
{
    pthread_mutex_lock(&srv->lock);
    long rc = tracker_state_set_allowed(srv->state, hashes, n, err, errlen);
    pthread_mutex_unlock(&srv->lock);
    return rc;
}

static uint64_t load(atomic_uint_fast64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

void tracker_server_get_stats(struct tracker_server *srv, struct tracker_server_stats *out)
{
    *out = (struct tracker_server_stats){
        .connections_open = load(&srv->connections_open),
        .connections_total = load(&srv->connections_total),
        .answered = load(&srv->answered), .refused = load(&srv->refused),
        .shed = load(&srv->shed), .turned_away = load(&srv->turned_away),
        .timed_out = load(&srv->timed_out), .accept_errors = load(&srv->accept_errors),
        .loop_turns = load(&srv->loop_turns), .max_connections = srv->max_connections,
        .failed = atomic_load(&srv->failed)};
}

void tracker_server_stop(struct tracker_server *srv)
{
    if (!srv)
        return;
    if (listener_wake(&srv->lis) != 0)
        log_warn("tracker: cannot wake the loop: %s", strerror(errno));
    pthread_join(srv->thread, NULL);
    server_free(srv);
}
