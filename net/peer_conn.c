/* One outgoing, pipelined peer connection: see peer_conn.h. */
#include "net/peer_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cascade/util.h"
#include "net/sock.h"

#define PEER_CONN_IN_BUF (64u * 1024u)
/* A body this far from done is read straight into its buffer, not via `in`. */
#define PEER_CONN_DIRECT_READ (16u * 1024u)

int peer_conn_open(struct peer_conn *pc, const struct sockaddr_in *addr, char *err, size_t errlen)
{
    char a[SOCK_ADDRSTRLEN];
    memset(pc, 0, sizeof *pc);
    pc->addr = *addr;
    sock_format_addr(addr, a, sizeof a);
    pc->in = malloc(PEER_CONN_IN_BUF);
    pc->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (!pc->in || pc->fd < 0) {
        cascade_errf(err, errlen, "connect(%s): %s", a, pc->in ? strerror(errno) : "out of memory");
        peer_conn_close(pc, NULL, NULL);
        return -1;
    }
    int one = 1;
    (void)setsockopt(pc->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pc->connect_started_ms = cascade_now_ms();
    pc->last_progress_ms = pc->head_since_ms = pc->connect_started_ms;
    if (connect(pc->fd, (const struct sockaddr *)addr, sizeof *addr) == 0) {
        pc->connected = true;
        return 0;
    }
    if (errno == EINPROGRESS)
        return 0;
    cascade_errf(err, errlen, "connect(%s): %s", a, strerror(errno));
    peer_conn_close(pc, NULL, NULL);
    return -1;
}

void peer_conn_close(struct peer_conn *pc, uint8_t **leftover, size_t *leftover_cap)
{
    if (pc->fd >= 0)
        close(pc->fd);
    pc->fd = -1;
    if (leftover)
        *leftover = NULL;
    if (pc->body && pc->body_is_callers && leftover) {
        *leftover = pc->body;
        *leftover_cap = pc->body_cap;
    } else {
        free(pc->body);
    }
    free(pc->out);
    free(pc->inflight);
    free(pc->in);
    pc->out = NULL;
    pc->inflight = NULL;
    pc->body = NULL;
    pc->in = NULL;
    pc->out_len = pc->out_off = pc->out_cap = 0;
    pc->inflight_count = pc->inflight_cap = pc->inflight_head = 0;
}

int peer_conn_finish_connect(struct peer_conn *pc, char *err, size_t errlen)
{
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(pc->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr != 0) {
        char a[SOCK_ADDRSTRLEN];
        sock_format_addr(&pc->addr, a, sizeof a);
        cascade_errf(err, errlen, "connect(%s): %s", a, strerror(soerr));
        return -1;
    }
    pc->connected = true;
    pc->last_progress_ms = cascade_now_ms();
    return 0;
}

static int inflight_push(struct peer_conn *pc, struct peer_request req)
{
    if (pc->inflight_count == pc->inflight_cap) {
        size_t cap = pc->inflight_cap ? 2 * pc->inflight_cap : 8;
        struct peer_request *n = malloc(cap * sizeof *n);
        if (!n)
            return -1;
        for (size_t i = 0; i < pc->inflight_count; i++)
            n[i] = pc->inflight[(pc->inflight_head + i) % pc->inflight_cap];
        free(pc->inflight);
        pc->inflight = n;
        pc->inflight_cap = cap;
        pc->inflight_head = 0;
    }
    pc->inflight[(pc->inflight_head + pc->inflight_count) % pc->inflight_cap] = req;
    pc->inflight_count++;
    return 0;
}

static void inflight_pop(struct peer_conn *pc)
{
    pc->inflight_head = (pc->inflight_head + 1) % pc->inflight_cap;
    pc->inflight_count--;
}

bool peer_conn_has_request(const struct peer_conn *pc, uint32_t file, uint64_t block)
{
    for (size_t i = 0; i < pc->inflight_count; i++) {
        struct peer_request r = peer_conn_inflight_at(pc, i);
        if (r.block == block && r.file == file)
            return true;
    }
    return false;
}

size_t peer_conn_drain_inflight(struct peer_conn *pc, struct peer_request *out)
{
    size_t n = pc->inflight_count;
    for (size_t i = 0; i < n; i++)
        out[i] = peer_conn_inflight_at(pc, i);
    pc->inflight_count = 0;
    pc->inflight_head = 0;
    return n;
}

int peer_conn_queue_request(struct peer_conn *pc, uint32_t file, uint64_t block,
                            const uint8_t hash[CASCADE_HASH_LEN])
{
    if (pc->out_off == pc->out_len)
        pc->out_off = pc->out_len = 0;
    if (pc->out_len + WIRE_PEER_REQUEST_LEN > pc->out_cap) {
        size_t cap = pc->out_cap ? 2 * pc->out_cap : 16 * WIRE_PEER_REQUEST_LEN;
        while (cap < pc->out_len + WIRE_PEER_REQUEST_LEN)
            cap *= 2;
        uint8_t *n = realloc(pc->out, cap);
        if (!n)
            return -1;
        pc->out = n;
        pc->out_cap = cap;
    }
    if (inflight_push(pc, (struct peer_request){.file = file, .block = block}) < 0)
        return -1;
    struct wire_peer_request req = {.block = block};
    memcpy(req.hash, hash, CASCADE_HASH_LEN);
    wire_encode_peer_request(&req, pc->out + pc->out_len);
    pc->out_len += WIRE_PEER_REQUEST_LEN;
    if (pc->inflight_count == 1)   /* the head's clocks start now */
        pc->last_progress_ms = pc->head_since_ms = cascade_now_ms();
    return 0;
}

int peer_conn_flush(struct peer_conn *pc, char *err, size_t errlen)
{
    while (pc->out_off < pc->out_len) {
        ssize_t n = send(pc->fd, pc->out + pc->out_off, pc->out_len - pc->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            cascade_errf(err, errlen, "send: %s", strerror(errno));
            return PEER_CONN_ENET;
        }
        pc->out_off += (size_t)n;
    }
    return 0;
}

/* A complete header: check it against the head request, set up the body.
 * PEER_CONN_ENOBUF leaves the header in place for the next call. */
static int start_body(struct peer_conn *pc, const struct peer_conn_hooks *hooks,
                      char *err, size_t errlen)
{
    wire_decode_peer_answer_header(pc->header, &pc->status, &pc->body_len);
    if (pc->inflight_count == 0) {
        cascade_errf(err, errlen, "answer (status %u) to a request never sent", pc->status);
        return PEER_CONN_EPROTO;
    }
    struct peer_request head = peer_conn_head(pc);
    uint64_t block = head.block;
    size_t alloc;
    if (pc->status == WIRE_STATUS_OK) {
        uint64_t want = hooks->block_len(hooks->ctx, head.file, block);
        if (pc->body_len != want) {
            cascade_errf(err, errlen, "block %llu: answer of %llu bytes, the block has %llu",
                         (unsigned long long)block, (unsigned long long)pc->body_len,
                         (unsigned long long)want);
            return PEER_CONN_EPROTO;
        }
        alloc = (size_t)want;
    } else if (pc->status <= WIRE_STATUS_BAD_REQUEST) {
        if (pc->body_len > WIRE_MAX_ERROR_MESSAGE) {
            cascade_errf(err, errlen, "block %llu: error message of %llu bytes (cap %d)",
                         (unsigned long long)block, (unsigned long long)pc->body_len,
                         WIRE_MAX_ERROR_MESSAGE);
            return PEER_CONN_EPROTO;
        }
        alloc = (size_t)pc->body_len + 1;
    } else {
        cascade_errf(err, errlen, "block %llu: unknown status %u", (unsigned long long)block,
                     pc->status);
        return PEER_CONN_EPROTO;
    }
    pc->body_is_callers = pc->status == WIRE_STATUS_OK;
    if (pc->body_is_callers) {
        pc->body = hooks->take_buffer(hooks->ctx, alloc, &pc->body_cap);
        if (!pc->body)
            return PEER_CONN_ENOBUF;
    } else {
        pc->body = malloc(alloc);
        pc->body_cap = alloc;
    }
    if (!pc->body) {
        cascade_errf(err, errlen, "out of memory for a %zu-byte answer", alloc);
        return PEER_CONN_ENET;
    }
    pc->in_body = true;
    pc->body_have = 0;
    return 0;
}

/* The body is complete: hand it over and reset the parser. */
static void finish_answer(struct peer_conn *pc, struct peer_answer *ans)
{
    memset(ans, 0, sizeof *ans);
    struct peer_request head = peer_conn_head(pc);
    ans->file = head.file;
    ans->block = head.block;
    ans->status = pc->status;
    if (pc->status == WIRE_STATUS_OK) {
        ans->body = pc->body;
        ans->body_len = (size_t)pc->body_len;
        ans->body_cap = pc->body_cap;
    } else {
        size_t n = (size_t)pc->body_len;
        size_t keep = n < sizeof ans->message - 1 ? n : sizeof ans->message - 1;
        for (size_t i = 0; i < keep; i++)   /* printable only: it goes into logs */
            ans->message[i] = (pc->body[i] >= 0x20 && pc->body[i] < 0x7f) ? (char)pc->body[i] : '?';
        ans->message[keep] = '\0';
        free(pc->body);
    }
    pc->body = NULL;
    pc->in_body = false;
    pc->header_have = 0;
    inflight_pop(pc);
    pc->last_progress_ms = pc->head_since_ms = cascade_now_ms();
}

/* Parse from the `in` buffer. 1: answer complete; 0: buffer used up. */
static int parse_buffered(struct peer_conn *pc, const struct peer_conn_hooks *hooks,
                          struct peer_answer *ans, char *err, size_t errlen)
{
    for (;;) {
        if (!pc->in_body && pc->header_have == WIRE_PEER_ANSWER_HEADER_LEN) {
            int r = start_body(pc, hooks, err, errlen);   /* may wait for a buffer */
            if (r < 0)
                return r;
            continue;
        }
        if (!(pc->in_off < pc->in_len || (pc->in_body && pc->body_have == pc->body_len)))
            return 0;
        size_t avail = pc->in_len - pc->in_off;
        if (!pc->in_body) {
            size_t need = WIRE_PEER_ANSWER_HEADER_LEN - pc->header_have;
            size_t n = avail < need ? avail : need;
            memcpy(pc->header + pc->header_have, pc->in + pc->in_off, n);
            pc->header_have += n;
            pc->in_off += n;
            if (pc->header_have < WIRE_PEER_ANSWER_HEADER_LEN)
                return 0;
            continue;
        }
        uint64_t need = pc->body_len - pc->body_have;
        size_t n = avail < need ? avail : (size_t)need;
        memcpy(pc->body + pc->body_have, pc->in + pc->in_off, n);
        pc->body_have += n;
        pc->in_off += n;
        if (pc->body_have == pc->body_len) {
            finish_answer(pc, ans);
            return 1;
        }
    }
}

int peer_conn_read_answer(struct peer_conn *pc, const struct peer_conn_hooks *hooks,
                          struct peer_answer *ans, char *err, size_t errlen)
{
    for (;;) {
        int r = parse_buffered(pc, hooks, ans, err, errlen);
        if (r != 0)
            return r;
        uint8_t *dst = pc->in;
        size_t room = PEER_CONN_IN_BUF;
        bool direct = pc->in_body && pc->body_len - pc->body_have >= PEER_CONN_DIRECT_READ;
        if (direct) {
            dst = pc->body + pc->body_have;
            room = (size_t)(pc->body_len - pc->body_have);
        }
        ssize_t n = recv(pc->fd, dst, room, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return PEER_CONN_EAGAIN;
            cascade_errf(err, errlen, "recv: %s", strerror(errno));
            return PEER_CONN_ENET;
        }
        if (n == 0) {
            cascade_errf(err, errlen, "connection closed by the peer");
            return PEER_CONN_ENET;
        }
        pc->bytes_received += (uint64_t)n;
        pc->last_progress_ms = cascade_now_ms();
        if (direct) {
            pc->body_have += (uint64_t)n;
            pc->in_off = pc->in_len = 0;
        } else {
            pc->in_off = 0;
            pc->in_len = (size_t)n;
        }
    }
}
