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
 *
 * Who keeps a slot. A connection waiting for a request (READING) sits on
 * two lists ordered by when that wait began (the accept, or its previous
 * answer fully sent): all waiters, and the waiters from its address. The
 * head of a list has been slowest to ask. A newcomer over the address cap
 * takes the slot of its own address's head, over the global cap the slot
 * of the global head; a head is read once more first and, if its request
 * was there after all, answered and skipped. SENDING connections are on
 * neither list, so a slow reader is never shed, only one that makes no
 * progress for the idle timeout. With nobody to shed, the newcomer is
 * closed at once. Out of descriptors (EMFILE), a spare one (/dev/null) is
 * given up to accept the newcomer, which then takes the global head's slot
 * and descriptor, or is closed at once: the listening socket never stays
 * readable with nothing done (no spin), and the client hears "no" at once.
 *
 * Deadlines (a sweep every tick): a request must be whole within
 * request_timeout of its first byte (the first request: of the accept), so
 * a trickle of bytes keeps nothing alive; a waiter with nothing of its next
 * request gets the idle timeout. The next request is read only once the
 * answer is out, so a pipelining client's requests are never timed while
 * we send to it.
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
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "net/listener.h"
#include "net/sock.h"
#include "net/wire.h"

#define BS_DEFAULT_IDLE_MS 60000
#define BS_DEFAULT_REQUEST_MS 10000
#define BS_DEFAULT_MAX_CONNECTIONS 4096
#define BS_DEFAULT_MAX_PER_ADDRESS 64
#define BS_LISTEN_BACKLOG 4096          /* the kernel clamps it to somaxconn */
#define BS_MAX_EVENTS 256
#define BS_ANSWERS_PER_TURN 16          /* then let other connections run */
#define BS_ACCEPTS_PER_TURN 64
#define BS_SEND_BUDGET (1u << 20)       /* block bytes per connection per turn */
#define BS_NOTSENT_LOWAT (128 * 1024)   /* unsent bytes a connection may queue in the kernel */
#define BS_DEFAULT_UPLOAD_SLOTS 4       /* block answers going out at once */
#define BS_SLOT_SLICE_MS 1000           /* a slot is given up after this when others queue */
#define BS_BUSY_TELLS 2                 /* "not now" answers in a row, then it queues anyway */
#define BS_HOLD_TELLS 2                 /* a block held back this often in a row, then sent */
#define BS_MESSAGE_MAX 128              /* status message text, bytes */
#define BS_TICK_MAX_MS 1000             /* deadline sweep at least this often */
#define BS_SHED_TRIES 8                 /* heads read (and skipped if they asked) per newcomer */
#define BS_REPORT_MS 10000              /* at most one warning about shedding per this */
#define BS_DISCARD_READS 16             /* 4 KiB reads of pipelined requests before an error close */

/* A node of a circular doubly-linked list; a list is a node of its own. */
struct bs_link {
    struct bs_link *prev, *next;
};

/* One source address (IPv4): how many slots it holds, and its waiters. */
struct bs_addr {
    in_addr_t ip;                       /* network order */
    uint32_t count;                     /* its connections, and a newcomer being admitted */
    struct bs_addr *next;               /* hash chain */
    struct bs_link waiting;             /* its connections waiting for a request, oldest first */
};

/* One client connection; only the loop thread touches it. */
struct conn {
    int fd;
    struct sockaddr_in peer;
    struct bs_addr *addr;               /* its source address (holds a count) */
    uint32_t events;                    /* epoll mask currently registered */
    bool dead;                          /* closed; freed once this batch of events is done */
    struct bs_link all;                 /* srv->conns, then srv->dead */
    struct bs_link wait, addr_wait;     /* srv->waiting, addr->waiting: while READING */
    uint64_t wait_ms;                   /* the current wait for a request began */
    uint64_t req_ms;                    /* the current request's clock started; 0: not yet */
    uint64_t send_ms;                   /* last send progress */
    uint64_t requests;                  /* read whole so far */

    uint8_t req[WIRE_PEER_REQUEST_LEN];
    size_t req_len;

    bool sending;
    bool close_after;                   /* status 1, 3, 4 */
    bool in_slot;                       /* its block answer may go out now */
    void *held_file;                    /* the block last held back from it (first_copy.h; */
    uint64_t held_block;                /*   the pointer only compared, never followed) */
    int held_times;                     /*   and how often in a row */
    int told_busy;                      /* block requests in a row that met a full queue */
    struct bs_link slot_wait;           /* srv->slot_queue: a block answer waits for a slot */
    uint64_t slot_ms;                   /* it got its slot, or joined the queue */
    uint8_t head[WIRE_PEER_ANSWER_HEADER_LEN + BS_MESSAGE_MAX];
    size_t head_len, head_sent;
    void *file;                         /* pinned (acquired) while block bytes remain */
    struct cascade_store *store;        /* its store, pinned with it; the block too (never
                                           evicted while its bytes go out) */
    uint64_t block, block_len, file_off, file_left, file_sent;
};

struct block_server {
    struct listener lis;                /* listening socket, epoll set, wake and spare fds */
    int idle_timeout_ms, request_timeout_ms, max_connections, max_per_address, tick_ms;
    int upload_slots;
    struct block_server_source source;
    struct block_server_watch watch;
    pthread_t thread;

    /* Loop thread only. */
    struct bs_link conns;               /* every open connection */
    struct bs_link waiting;             /* READING ones, longest waiting first */
    struct bs_link dead;                /* closed in this batch of events */
    size_t nconns;
    size_t slot_holders, slot_queued;   /* block answers in a slot, and waiting for one */
    struct bs_link slot_queue;          /* block answers waiting for a slot, oldest first */
    struct bs_addr **addrs;             /* hash table of source addresses */
    uint32_t addr_mask, addr_seed;
    bool accept_paused;                 /* out of descriptors: retry on the next tick */
    struct {                            /* since the last warning */
        uint64_t shed, refused, timed_out, paused;
    } recent;
    uint64_t report_ms;

    atomic_uint_fast64_t bytes_served, blocks_served;
    atomic_uint_fast64_t connections_open, connections_total;
    atomic_uint_fast64_t connections_shed, connections_refused, requests_timed_out;
};

#define CONN_OF(link, member) ((struct conn *)((char *)(link) - offsetof(struct conn, member)))

/* ---- lists ---- */

static void link_init(struct bs_link *l)
{
    l->prev = l->next = l;
}

static bool link_linked(const struct bs_link *l)
{
    return l->next != l;
}

static void link_append(struct bs_link *list, struct bs_link *l)
{
    l->prev = list->prev;
    l->next = list;
    list->prev->next = l;
    list->prev = l;
}

static void link_remove(struct bs_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    link_init(l);
}

/* ---- source addresses ---- */

static uint32_t addr_bucket(const struct block_server *srv, in_addr_t ip)
{
    uint32_t h = (uint32_t)ip ^ srv->addr_seed;   /* MurmurHash3's finaliser */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h & srv->addr_mask;
}

/* ip's entry with its count raised by one (created at need); NULL when
 * out of memory. */
static struct bs_addr *addr_ref(struct block_server *srv, in_addr_t ip)
{
    struct bs_addr **slot = &srv->addrs[addr_bucket(srv, ip)];
    for (struct bs_addr *a = *slot; a; a = a->next) {
        if (a->ip == ip) {
            a->count++;
            return a;
        }
    }
    struct bs_addr *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->ip = ip;
    a->count = 1;
    link_init(&a->waiting);
    a->next = *slot;
    *slot = a;
    return a;
}

static void addr_unref(struct block_server *srv, struct bs_addr *a)
{
    if (--a->count > 0)
        return;
    struct bs_addr **p = &srv->addrs[addr_bucket(srv, a->ip)];
    while (*p != a)
        p = &(*p)->next;
    *p = a->next;
    free(a);
}

/* A table with at least one bucket per possible address entry. */
static int addr_table_init(struct block_server *srv)
{
    uint32_t n = 64;
    while (n < (uint32_t)srv->max_connections + 1 && n < (1u << 20))
        n *= 2;
    srv->addrs = calloc(n, sizeof *srv->addrs);
    if (!srv->addrs)
        return -1;
    srv->addr_mask = n - 1;
    if (getrandom(&srv->addr_seed, sizeof srv->addr_seed, GRND_NONBLOCK) != sizeof srv->addr_seed)
        srv->addr_seed = (uint32_t)cascade_now_ms() ^ (uint32_t)getpid();
    return 0;
}

/* ---- pins ---- */

static int conn_want(struct block_server *srv, struct conn *c, uint32_t events);

/* ---- upload slots ----
 * Block answers go out a few at a time (upload_slots), the rest queue in
 * order. Fifteen blocks sent side by side all arrive after fifteen block
 * times; sent a few at a time, the first arrive after a few, and their
 * receivers can pass them on at once (in a swarm, the first seconds are
 * spent waiting for anything to pass on). A slot is kept until the block
 * is out, or for BS_SLOT_SLICE_MS while others queue, so a downloader on
 * a thin link keeps its share but cannot hold a slot for long. Status
 * answers (a "not present" to a peer probing us) never wait for a slot. */

static void slot_grant(struct block_server *srv, struct conn *c, uint64_t now)
{
    c->send_ms += now - c->slot_ms;   /* the stall clock counts time in a slot only */
    c->in_slot = true;
    c->slot_ms = now;
    srv->slot_holders++;
}

static void slot_enqueue(struct block_server *srv, struct conn *c, uint64_t now)
{
    c->slot_ms = now;
    link_append(&srv->slot_queue, &c->slot_wait);
    srv->slot_queued++;
}

static void slot_dequeue(struct block_server *srv, struct conn *c)
{
    link_remove(&c->slot_wait);
    srv->slot_queued--;
}

/* As many answers wait as go out: a new request is told "not now". */
static bool slots_full(const struct block_server *srv)
{
    return srv->slot_holders >= (size_t)srv->upload_slots &&
           srv->slot_queued >= (size_t)srv->upload_slots;
}

/* Free slots to the longest queued; they run when their socket takes bytes. */
static void slots_fill(struct block_server *srv, uint64_t now)
{
    while (srv->slot_holders < (size_t)srv->upload_slots && link_linked(&srv->slot_queue)) {
        struct conn *c = CONN_OF(srv->slot_queue.next, slot_wait);
        slot_dequeue(srv, c);
        slot_grant(srv, c, now);
        conn_want(srv, c, EPOLLOUT);   /* on failure the stall timeout closes it */
    }
}

/* c has a block answer: a slot now, or a place in the queue. */
static void slot_take(struct block_server *srv, struct conn *c, uint64_t now)
{
    c->slot_ms = now;
    if (srv->slot_holders < (size_t)srv->upload_slots && !link_linked(&srv->slot_queue))
        slot_grant(srv, c, now);
    else
        slot_enqueue(srv, c, now);
}

/* c's block answer is done or abandoned: its slot (or place) goes. */
static void slot_leave(struct block_server *srv, struct conn *c)
{
    if (c->in_slot) {
        c->in_slot = false;
        srv->slot_holders--;
        slots_fill(srv, cascade_now_ms());
    } else if (link_linked(&c->slot_wait)) {
        slot_dequeue(srv, c);
    }
}

/* c held its slot for a slice while others queue: to the back. */
static bool slot_maybe_yield(struct block_server *srv, struct conn *c, uint64_t now)
{
    if (!c->in_slot || !link_linked(&srv->slot_queue) || now - c->slot_ms < BS_SLOT_SLICE_MS)
        return false;
    c->in_slot = false;
    srv->slot_holders--;
    slot_enqueue(srv, c, now);
    conn_want(srv, c, 0);
    slots_fill(srv, now);
    return true;
}

/* Give back the pin of the block being sent (or abandoned). */
static void conn_unpin(struct block_server *srv, struct conn *c)
{
    if (!c->file)
        return;
    slot_leave(srv, c);
    cascade_store_unpin_block(c->store, c->block);
    srv->source.release(srv->source.ctx, c->file, c->file_sent);
    c->file = NULL;
    c->store = NULL;
}

/* ---- connections ---- */

/* c starts waiting for a request: it becomes the newest waiter. */
static void conn_wait(struct block_server *srv, struct conn *c, uint64_t now)
{
    c->wait_ms = now;
    link_append(&srv->waiting, &c->wait);
    link_append(&c->addr->waiting, &c->addr_wait);
}

static void conn_unwait(struct conn *c)
{
    if (!link_linked(&c->wait))
        return;
    link_remove(&c->wait);
    link_remove(&c->addr_wait);
}

/* Close c now; its memory waits in srv->dead until the events of this
 * batch (which may still name it) are done. */
static void conn_close(struct block_server *srv, struct conn *c)
{
    close(c->fd);   /* also drops it from the epoll set */
    c->fd = -1;
    c->dead = true;
    conn_unpin(srv, c);
    conn_unwait(c);
    addr_unref(srv, c->addr);
    c->addr = NULL;
    link_remove(&c->all);
    link_append(&srv->dead, &c->all);
    if (srv->watch.closed)
        srv->watch.closed(srv->watch.ctx, &c->peer);
    srv->nconns--;
    atomic_fetch_sub_explicit(&srv->connections_open, 1, memory_order_relaxed);
}

/* Before closing after an error answer: read away (a bounded amount of)
 * requests the peer already pipelined. Closing with unread bytes sends a
 * reset, and a reset makes the peer's kernel drop the answer it has not
 * read yet, the error message included. */
static void conn_discard_unread(struct conn *c)
{
    uint8_t sink[4096];
    for (int i = 0; i < BS_DISCARD_READS; i++) {
        ssize_t n = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n <= 0 && !(n < 0 && errno == EINTR))
            return;
    }
}

static void server_free_dead(struct block_server *srv)
{
    while (link_linked(&srv->dead)) {
        struct conn *c = CONN_OF(srv->dead.next, all);
        link_remove(&c->all);
        free(c);
    }
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
    if (epoll_ctl(srv->lis.epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        conn_debug(c, "epoll_ctl: %s", strerror(errno));
        return -1;
    }
    c->events = events;
    return 0;
}

/* Give fd a slot; it holds a (the newcomer's count) from now on. */
static void conn_open(struct block_server *srv, int fd, const struct sockaddr_in *peer,
                      struct bs_addr *a)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        log_warn("block server: out of memory for a connection");
        close(fd);
        addr_unref(srv, a);
        return;
    }
    int one = 1;
    /* Small status answers must not wait for delayed ACKs (Nagle). */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Keep little unsent in the kernel, so on a capped uplink it is our
     * turns across connections that share it out, not the size of each
     * socket's buffer (one greedy peer cannot starve the rest). */
    int lowat = BS_NOTSENT_LOWAT;
    setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
    c->fd = fd;
    c->peer = *peer;
    c->addr = a;
    c->events = EPOLLIN;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(srv->lis.epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        log_warn("block server: epoll_ctl: %s", strerror(errno));
        close(fd);
        addr_unref(srv, a);
        free(c);
        return;
    }
    link_init(&c->wait);
    link_init(&c->addr_wait);
    link_init(&c->slot_wait);
    link_append(&srv->conns, &c->all);
    c->req_ms = cascade_now_ms();   /* the first request is timed from the accept */
    conn_wait(srv, c, c->req_ms);
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

/* A held block we pinned but will not send this time: unpin it, release its file. */
static void give_back(struct block_server *srv, void *file, struct cascade_store *st,
                      uint64_t block)
{
    cascade_store_unpin_block(st, block);
    srv->source.release(srv->source.ctx, file, 0);
}

/* Turn the full request in c->req into an answer to send. */
static void conn_answer(struct block_server *srv, struct conn *c)
{
    struct wire_peer_request req;
    char why[96];
    c->req_len = 0;
    c->req_ms = 0;
    c->send_ms = cascade_now_ms();
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
    /* Held (and its bytes checked once, see store.h): pinned until sent. */
    if (!st || cascade_store_pin_block(st, req.block) != CASCADE_STORE_OK) {
        if (srv->source.asked_missing)
            srv->source.asked_missing(srv->source.ctx, file, req.block, &c->peer);
        srv->source.release(srv->source.ctx, file, 0);
        conn_set_message(c, WIRE_STATUS_NOT_PRESENT, "block %" PRIu64 " not present", req.block);
        return;
    }
    if (slots_full(srv) && c->told_busy < BS_BUSY_TELLS) {
        c->told_busy++;   /* told often enough in a row, it queues whatever the queue */
        give_back(srv, file, st, req.block);
        conn_set_message(c, WIRE_STATUS_NOT_PRESENT,
                         "block %" PRIu64 " not sent now: %zu answers queued, ask elsewhere",
                         req.block, srv->slot_queued);
        return;
    }
    c->told_busy = 0;
    bool others_waiting = srv->slot_holders + srv->slot_queued > 0;
    /* Held back from this connection twice in a row, a block is sent the
     * third time it asks: a reader that found it nowhere else waits two
     * retries, not the whole hold. (The source is not told of that copy:
     * its hold only ends sooner for it.) */
    bool asked_again = c->held_file == file && c->held_block == req.block;
    if (srv->source.hold_back && !(asked_again && c->held_times >= BS_HOLD_TELLS) &&
        srv->source.hold_back(srv->source.ctx, file, st, req.block, others_waiting)) {
        c->held_times = asked_again ? c->held_times + 1 : 1;
        c->held_file = file;
        c->held_block = req.block;
        give_back(srv, file, st, req.block);
        conn_set_message(c, WIRE_STATUS_NOT_PRESENT,
                         "block %" PRIu64 " not offered now: other peers have it", req.block);
        return;
    }
    const struct cascade_meta *m = cascade_store_meta(st);
    uint64_t len = cascade_meta_block_len(m, req.block);
    wire_encode_peer_answer_header(WIRE_STATUS_OK, len, c->head);
    c->head_len = WIRE_PEER_ANSWER_HEADER_LEN;
    c->head_sent = 0;
    c->close_after = false;
    c->file = file;
    slot_take(srv, c, c->send_ms);
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
static int conn_send_block_turn(struct block_server *srv, struct conn *c)
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
        c->send_ms = cascade_now_ms();
        atomic_fetch_add_explicit(&srv->bytes_served, (uint64_t)n, memory_order_relaxed);
    }
    conn_finish_block(srv, c);
    return 1;
}

/* The same, telling the sent hook what this turn sent. */
static int conn_send_block(struct block_server *srv, struct conn *c)
{
    uint64_t before = c->file_sent;
    int rc = conn_send_block_turn(srv, c);
    if (srv->watch.sent && c->file_sent > before)
        srv->watch.sent(srv->watch.ctx, &c->peer, c->file_sent - before);
    return rc;
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
        c->send_ms = cascade_now_ms();
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
        if (c->req_ms == 0)
            c->req_ms = cascade_now_ms();   /* later requests: timed from their first byte */
        c->req_len += (size_t)n;
    }
    return 1;
}

/* Make progress on one connection: alternately finish the answer being
 * sent and read the next request, a bounded number of times per turn. */
static void conn_run(struct block_server *srv, struct conn *c)
{
    for (int turn = 0; turn < BS_ANSWERS_PER_TURN; turn++) {
        if (c->sending) {
            if (c->file && !c->in_slot) {   /* queued for a slot: slots_fill wakes it */
                if (conn_want(srv, c, 0) < 0)
                    conn_close(srv, c);
                return;
            }
            int r = conn_send(srv, c);
            if (r < 0) {
                conn_close(srv, c);
                return;
            }
            if (r == 0) {
                if (!slot_maybe_yield(srv, c, cascade_now_ms()) && conn_want(srv, c, EPOLLOUT) < 0)
                    conn_close(srv, c);
                return;
            }
            c->sending = false;
            if (c->close_after) {
                conn_discard_unread(c);
                conn_close(srv, c);
                return;
            }
            conn_wait(srv, c, cascade_now_ms());
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
        conn_unwait(c);
        c->requests++;
        conn_answer(srv, c);
    }
    /* Budget used with an answer pending: level-triggered EPOLLOUT brings us back. */
    if (conn_want(srv, c, EPOLLOUT) < 0)
        conn_close(srv, c);
}

static void conn_on_event(struct block_server *srv, struct conn *c, uint32_t events)
{
    if (c->dead)
        return;   /* shed earlier in this batch */
    if (events & EPOLLERR) {
        int soerr = 0;
        socklen_t len = sizeof soerr;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        conn_debug(c, "socket error: %s", strerror(soerr));
        conn_close(srv, c);
        return;
    }
    if ((events & EPOLLHUP) && link_linked(&c->slot_wait)) {
        conn_debug(c, "hung up while its answer waited for a slot");
        conn_close(srv, c);   /* level-triggered: it would come back at once */
        return;
    }
    /* EPOLLHUP falls through: the next read or write sees the end. */
    conn_run(srv, c);
}

/* ---- the loop ---- */

static void server_set_accepting(struct block_server *srv, bool on)
{
    struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.ptr = &srv->lis.listen_fd};
    if (epoll_ctl(srv->lis.epoll_fd, EPOLL_CTL_MOD, srv->lis.listen_fd, &ev) < 0)
        log_warn("block server: epoll_ctl(listen): %s", strerror(errno));
    srv->accept_paused = !on;
}

/* Count an event in the stats and in the next warning. */
static void server_count(atomic_uint_fast64_t *total, uint64_t *recent)
{
    atomic_fetch_add_explicit(total, 1, memory_order_relaxed);
    (*recent)++;
}

/* Make room by closing the head of a waiting list (link_off: which link of
 * struct conn the list holds). The head is read once more first: if its
 * request was there after all it is answered and the next head is tried.
 * True when a connection went away. */
static bool server_shed(struct block_server *srv, struct bs_link *list, size_t link_off)
{
    for (int i = 0; i < BS_SHED_TRIES && link_linked(list); i++) {
        struct conn *c = (struct conn *)((char *)list->next - link_off);
        size_t open = srv->nconns;
        uint64_t requests = c->requests;
        conn_run(srv, c);
        if (srv->nconns < open)
            return true;        /* it closed, or was answered with a closing status */
        if (c->requests != requests)
            continue;           /* it asked after all */
        conn_debug(c, "waited longest for a request (%" PRIu64 " ms); shed to make room",
                   cascade_now_ms() - c->wait_ms);
        server_count(&srv->connections_shed, &srv->recent.shed);   /* before the peer can see it */
        conn_close(srv, c);
        return true;
    }
    return false;
}

static bool server_shed_any(struct block_server *srv)
{
    return server_shed(srv, &srv->waiting, offsetof(struct conn, wait));
}

/* A newcomer from an address at its cap may take only its own address's slots. */
static bool server_shed_own(struct block_server *srv, struct bs_addr *a)
{
    return server_shed(srv, &a->waiting, offsetof(struct conn, addr_wait));
}

/* Give the accepted fd a slot if there is one, or one can be made. */
static void server_admit(struct block_server *srv, int fd, const struct sockaddr_in *peer)
{
    struct bs_addr *a = addr_ref(srv, peer->sin_addr.s_addr);
    bool room = a && (a->count <= (uint32_t)srv->max_per_address || server_shed_own(srv, a)) &&
                (srv->nconns < (size_t)srv->max_connections || server_shed_any(srv));
    if (room) {
        conn_open(srv, fd, peer, a);
        return;
    }
    if (cascade_log_enabled(CASCADE_LOG_DEBUG)) {
        char name[SOCK_ADDRSTRLEN];
        sock_format_addr(peer, name, sizeof name);
        log_debug("block server: %s: no room (%zu open, %u from its address), refused",
                  name, srv->nconns, a ? a->count - 1 : 0);
    }
    server_count(&srv->connections_refused, &srv->recent.refused);
    close(fd);
    if (a)
        addr_unref(srv, a);
}

/* Out of descriptors (accept4 says so even with nobody pending): give up
 * the spare descriptor to accept the newcomer, then make room by shedding
 * the longest waiter, or else close the newcomer so it hears "no" at once
 * and the listening socket does not stay readable. 1 took one, 0 nobody
 * was pending, -1 no spare (or it was lost). */
static int server_accept_on_spare(struct block_server *srv)
{
    struct sockaddr_in peer;
    int fd = listener_accept_on_spare(&srv->lis, &peer);
    int saved = errno;
    bool room = fd >= 0 && server_shed_any(srv);
    if (fd >= 0 && !room) {
        server_count(&srv->connections_refused, &srv->recent.refused);
        close(fd);
    }
    int spare = listener_take_spare(&srv->lis);
    if (room)
        server_admit(srv, fd, &peer);
    if (fd >= 0)
        return spare == 0 ? 1 : -1;
    return saved == EAGAIN || saved == EWOULDBLOCK ? 0 : -1;
}

static void server_accept(struct block_server *srv)
{
    for (int i = 0; i < BS_ACCEPTS_PER_TURN; i++) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int fd = accept4(srv->lis.listen_fd, (struct sockaddr *)&peer, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            server_admit(srv, fd, &peer);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        if (errno == EMFILE || errno == ENFILE) {
            int r = server_accept_on_spare(srv);
            if (r > 0)
                continue;
            if (r == 0)
                return;
        }
        /* Out of descriptors with no spare, or out of memory: the listening
         * socket would stay readable and spin the loop, so stop accepting
         * until the next tick. */
        log_debug("block server: accept: %s; pausing new connections", strerror(errno));
        srv->recent.paused++;
        server_set_accepting(srv, false);
        return;
    }
}

/* When c's time is up; *request: it is the request deadline. */
static uint64_t conn_deadline(const struct block_server *srv, const struct conn *c, bool *request)
{
    *request = false;
    if (c->sending && link_linked(&c->slot_wait))
        return UINT64_MAX;   /* its turn comes: slots are given up after a slice */
    if (c->sending)
        return c->send_ms + (uint64_t)srv->idle_timeout_ms;
    uint64_t at = UINT64_MAX;
    if (c->req_len == 0)
        at = c->wait_ms + (uint64_t)srv->idle_timeout_ms;
    if (c->req_ms != 0 && c->req_ms + (uint64_t)srv->request_timeout_ms < at) {
        at = c->req_ms + (uint64_t)srv->request_timeout_ms;
        *request = true;
    }
    return at;
}

static void server_sweep(struct block_server *srv, uint64_t now)
{
    struct bs_link *next;
    for (struct bs_link *l = srv->conns.next; l != &srv->conns; l = next) {
        next = l->next;
        struct conn *c = CONN_OF(l, all);
        bool request;
        slot_maybe_yield(srv, c, now);   /* a holder whose peer stopped reading */
        if (now < conn_deadline(srv, c, &request))
            continue;
        if (request) {
            conn_debug(c, "request not whole (%zu of %d bytes) within %d ms, closing", c->req_len,
                       WIRE_PEER_REQUEST_LEN, srv->request_timeout_ms);
            server_count(&srv->requests_timed_out, &srv->recent.timed_out);
        } else {
            conn_debug(c, "%s for %d ms, closing", c->sending ? "answer stalled" : "idle",
                       srv->idle_timeout_ms);
        }
        conn_close(srv, c);
    }
}

/* Append ", <n> <what>" to a report line when n is not 0. */
static void report_part(char *line, size_t len, uint64_t n, const char *what)
{
    size_t used = strlen(line);
    if (n && used < len)
        snprintf(line + used, len - used, "%s%" PRIu64 " %s", used ? ", " : "", n, what);
}

/* One warning every BS_REPORT_MS at most for what a flood makes us do. */
static void server_report(struct block_server *srv, uint64_t now)
{
    if (now - srv->report_ms < BS_REPORT_MS)
        return;
    char line[256] = "";
    report_part(line, sizeof line, srv->recent.shed, "waiting connection(s) shed to make room");
    report_part(line, sizeof line, srv->recent.refused, "refused");
    report_part(line, sizeof line, srv->recent.timed_out, "closed for a request not whole in time");
    report_part(line, sizeof line, srv->recent.paused, "pause(s) out of descriptors");
    if (!line[0])
        return;
    log_warn("block server: %s (%zu open; caps: %d in all, %d per address, requests within %d ms)",
             line, srv->nconns, srv->max_connections, srv->max_per_address,
             srv->request_timeout_ms);
    memset(&srv->recent, 0, sizeof srv->recent);
    srv->report_ms = now;
}

static void server_tick(struct block_server *srv, uint64_t now)
{
    server_sweep(srv, now);
    server_report(srv, now);
    listener_take_spare(&srv->lis);
    if (srv->accept_paused)
        server_set_accepting(srv, true);
}

static void *server_loop(void *arg)
{
    struct block_server *srv = arg;
    pthread_setname_np(pthread_self(), "cascade-serve");
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
        int n = epoll_wait(srv->lis.epoll_fd, events, BS_MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            log_error("block server: epoll_wait: %s; server stops", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            void *p = events[i].data.ptr;
            if (p == &srv->lis.wake_fd)
                stopping = true;
            else if (p == &srv->lis.listen_fd)
                server_accept(srv);
            else
                conn_on_event(srv, p, events[i].events);
        }
        server_free_dead(srv);
        now = cascade_now_ms();
        if (now >= next_tick) {
            server_tick(srv, now);
            server_free_dead(srv);
            next_tick = now + (uint64_t)srv->tick_ms;
        }
    }
    while (link_linked(&srv->conns))
        conn_close(srv, CONN_OF(srv->conns.next, all));
    server_free_dead(srv);
    return NULL;
}

/* ---- start, stats, stop ---- */

/* Everything but the thread and connections (gone by then). */
static void server_free(struct block_server *srv)
{
    listener_close(&srv->lis);
    free(srv->addrs);
    free(srv);
}

/* Connections beyond what descriptors allow would only meet EMFILE, and
 * starve the rest of the process (stores, fetches, FUSE): keep a quarter. */
static void server_fit_fd_limit(struct block_server *srv)
{
    rlim_t limit = sock_raise_fd_limit();
    if (limit == 0 || limit == RLIM_INFINITY)
        return;
    rlim_t room = limit - limit / 4;
    if (room < 1)
        room = 1;
    if ((rlim_t)srv->max_connections <= room)
        return;
    log_warn("block server: the descriptor limit (%llu) allows %llu connections, not %d",
             (unsigned long long)limit, (unsigned long long)room, srv->max_connections);
    srv->max_connections = (int)room;
}

static int or_default(int v, int def)
{
    return v ? v : def;
}

static int server_configure(struct block_server *srv, const struct block_server_config *cfg,
                            char *err, size_t errlen)
{
    if (cfg->idle_timeout_ms < 0 || cfg->request_timeout_ms < 0 || cfg->max_connections < 0 ||
        cfg->max_per_address < 0 || cfg->upload_slots < 0) {
        cascade_errf(err, errlen, "block server: negative timeout or connection limit");
        return -1;
    }
    if (!cfg->source.acquire || !cfg->source.release) {
        cascade_errf(err, errlen, "block server: no source of files to serve");
        return -1;
    }
    srv->source = cfg->source;
    srv->watch = cfg->watch;
    srv->idle_timeout_ms = or_default(cfg->idle_timeout_ms, BS_DEFAULT_IDLE_MS);
    srv->request_timeout_ms = or_default(cfg->request_timeout_ms, BS_DEFAULT_REQUEST_MS);
    srv->max_connections = or_default(cfg->max_connections, BS_DEFAULT_MAX_CONNECTIONS);
    srv->max_per_address = or_default(cfg->max_per_address, BS_DEFAULT_MAX_PER_ADDRESS);
    srv->upload_slots = or_default(cfg->upload_slots, BS_DEFAULT_UPLOAD_SLOTS);
    server_fit_fd_limit(srv);
    int shortest = srv->idle_timeout_ms < srv->request_timeout_ms ? srv->idle_timeout_ms
                                                                   : srv->request_timeout_ms;
    srv->tick_ms = shortest / 4;
    if (srv->tick_ms > BS_TICK_MAX_MS)
        srv->tick_ms = BS_TICK_MAX_MS;
    if (srv->tick_ms < 10)
        srv->tick_ms = 10;
    if (addr_table_init(srv) < 0) {
        cascade_errf(err, errlen, "block server: out of memory");
        return -1;
    }
    return 0;
}

int block_server_start(const struct block_server_config *cfg, struct block_server **out,
                       char *err, size_t errlen)
{
    *out = NULL;
    struct block_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        cascade_errf(err, errlen, "block server: out of memory");
        return -1;
    }
    listener_init(&srv->lis);
    link_init(&srv->conns);
    link_init(&srv->waiting);
    link_init(&srv->slot_queue);
    link_init(&srv->dead);
    atomic_init(&srv->bytes_served, 0);
    atomic_init(&srv->blocks_served, 0);
    atomic_init(&srv->connections_open, 0);
    atomic_init(&srv->connections_total, 0);
    atomic_init(&srv->connections_shed, 0);
    atomic_init(&srv->connections_refused, 0);
    atomic_init(&srv->requests_timed_out, 0);

    if (server_configure(srv, cfg, err, errlen) < 0 ||
        listener_open(&srv->lis, &cfg->listen, BS_LISTEN_BACKLOG, "block server", err,
                      errlen) < 0) {
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
    sock_format_addr(&srv->lis.addr, addr, sizeof addr);
    log_info("block server listening on %s (at most %d connections, %d per address)", addr,
             srv->max_connections, srv->max_per_address);
    *out = srv;
    return 0;
}

void block_server_address(const struct block_server *srv, struct sockaddr_in *out)
{
    *out = srv->lis.addr;
}

void block_server_get_stats(struct block_server *srv, struct block_server_stats *out)
{
    memset(out, 0, sizeof *out);
    out->bytes_served = atomic_load_explicit(&srv->bytes_served, memory_order_relaxed);
    out->blocks_served = atomic_load_explicit(&srv->blocks_served, memory_order_relaxed);
    out->connections_open = atomic_load_explicit(&srv->connections_open, memory_order_relaxed);
    out->connections_total = atomic_load_explicit(&srv->connections_total, memory_order_relaxed);
    out->connections_shed = atomic_load_explicit(&srv->connections_shed, memory_order_relaxed);
    out->connections_refused = atomic_load_explicit(&srv->connections_refused, memory_order_relaxed);
    out->requests_timed_out = atomic_load_explicit(&srv->requests_timed_out, memory_order_relaxed);
}

void block_server_stop(struct block_server *srv)
{
    if (!srv)
        return;
    if (listener_wake(&srv->lis) < 0)
        log_warn("block server: cannot wake the loop: %s", strerror(errno));
    pthread_join(srv->thread, NULL);
    server_free(srv);
}
