/* One outgoing connection to a peer, used by the fetch loop: non-blocking
 * connect, pipelined block requests (PROTOCOL.md section 3) and an
 * incremental parser for the answers, which a server sends in the order of
 * the requests. A request names its cascade hash, so one connection carries
 * requests for every file the peer serves.
 *
 * The connection owns a FIFO of what it has asked for: (file, block) pairs,
 * where file is the caller's tag for the cascade hash. Each answer is
 * matched to the head of that FIFO; a status-0 body must be exactly that
 * block's length, read straight into a buffer the caller hands out (so the
 * caller bounds the memory of bodies in flight); an error body is capped at
 * WIRE_MAX_ERROR_MESSAGE. No locking: a peer_conn belongs to one thread.
 */
#ifndef NET_PEER_CONN_H
#define NET_PEER_CONN_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cascade/sha256.h"
#include "net/wire.h"

/* What went wrong, which decides how the fetcher treats the peer. */
enum peer_conn_error {
    PEER_CONN_EAGAIN = 0,     /* nothing complete yet: wait for the socket */
    PEER_CONN_ENET = -1,      /* connect failed, reset, closed, I/O error: back off */
    PEER_CONN_EPROTO = -2,    /* misbehaving: wrong length, unknown status, unasked answer: ban */
    PEER_CONN_ENOBUF = -3,    /* a block body is next but take_buffer had none: call
                                 again once buffers are free (nothing is lost) */
};

/* One request: the caller's tag for the file, and the block. */
struct peer_request {
    uint32_t file;
    uint64_t block;
};

/* What the parser asks its caller. */
struct peer_conn_hooks {
    void *ctx;
    /* Length of a status-0 answer for this block (the block's length). */
    uint64_t (*block_len)(void *ctx, uint32_t file, uint64_t block);
    /* A buffer of at least len bytes for a block body (*cap: its size),
     * owned by the caller again once handed back in peer_answer.body;
     * NULL when none may be taken now. */
    uint8_t *(*take_buffer)(void *ctx, size_t len, size_t *cap);
};

/* One complete answer, handed to the caller by peer_conn_read_answer. */
struct peer_answer {
    uint32_t file;
    uint64_t block;
    uint8_t status;              /* enum wire_peer_status */
    uint8_t *body;               /* status 0: the block, in a buffer from take_buffer; else NULL */
    size_t body_len;
    size_t body_cap;             /* bytes allocated at body (a given buffer may be larger) */
    char message[128];           /* status != 0: the error text, truncated */
};

struct peer_conn {
    int fd;
    struct sockaddr_in addr;
    bool connected;              /* the non-blocking connect has completed */
    uint64_t connect_started_ms;

    /* Requests encoded but not yet written. */
    uint8_t *out;
    size_t out_len, out_off, out_cap;

    /* Requests asked for, oldest first (a ring). */
    struct peer_request *inflight;
    size_t inflight_head, inflight_count, inflight_cap;

    /* Answer parser. */
    uint8_t header[WIRE_PEER_ANSWER_HEADER_LEN];
    size_t header_have;
    bool in_body;
    uint8_t status;
    uint64_t body_len;
    uint64_t body_have;
    uint8_t *body;               /* status 0: block buffer (the caller's); else error text */
    size_t body_cap;
    bool body_is_callers;        /* body came from take_buffer */

    /* Bytes read but not yet parsed (small answers arrive many per read). */
    uint8_t *in;
    size_t in_len, in_off;

    uint64_t last_progress_ms;   /* last time bytes arrived (or the first request went out) */
    uint64_t head_since_ms;      /* when the head request became the head */
    uint64_t bytes_received;
};

/* Start a non-blocking connect. 0 or -1 with a message. */
int peer_conn_open(struct peer_conn *pc, const struct sockaddr_in *addr, char *err, size_t errlen);
/* Close the socket and free what the connection owns. A half-read block
 * body is the caller's buffer: it comes back in *leftover (NULL: none),
 * with its size in *leftover_cap; both may be NULL only when the caller
 * never hands out buffers it must account for (it is then freed). */
void peer_conn_close(struct peer_conn *pc, uint8_t **leftover, size_t *leftover_cap);

/* After POLLOUT on a connecting socket: 0 connected, -1 failed (message). */
int peer_conn_finish_connect(struct peer_conn *pc, char *err, size_t errlen);

/* Queue a request for (file, block) under the file's cascade hash
 * (encoded now, written by peer_conn_flush). 0 or -1 (out of memory). */
int peer_conn_queue_request(struct peer_conn *pc, uint32_t file, uint64_t block,
                            const uint8_t hash[CASCADE_HASH_LEN]);
/* Write queued requests until done or the socket would block.
 * 0 or PEER_CONN_ENET with a message. */
int peer_conn_flush(struct peer_conn *pc, char *err, size_t errlen);
static inline bool peer_conn_wants_write(const struct peer_conn *pc)
{
    return !pc->connected || pc->out_off < pc->out_len;
}

/* Read and parse. Returns 1 with *ans filled when an answer is complete
 * (call again: more may be buffered), PEER_CONN_EAGAIN when the socket has
 * nothing more, PEER_CONN_ENOBUF when a body waits for a buffer,
 * PEER_CONN_ENET or PEER_CONN_EPROTO with a message. */
int peer_conn_read_answer(struct peer_conn *pc, const struct peer_conn_hooks *hooks,
                          struct peer_answer *ans, char *err, size_t errlen);

/* Bytes already read from the socket but not parsed yet: the caller must
 * call peer_conn_read_answer again even if the socket is not readable. */
static inline bool peer_conn_has_buffered(const struct peer_conn *pc)
{
    return pc->in_off < pc->in_len;
}

/* The request at the head of the FIFO (the next one to be answered). */
static inline struct peer_request peer_conn_head(const struct peer_conn *pc)
{
    return pc->inflight[pc->inflight_head];
}
/* The i-th request in flight, oldest first (i < inflight_count). */
static inline struct peer_request peer_conn_inflight_at(const struct peer_conn *pc, size_t i)
{
    return pc->inflight[(pc->inflight_head + i) % pc->inflight_cap];
}
/* Whether (file, block) is among the requests in flight. */
bool peer_conn_has_request(const struct peer_conn *pc, uint32_t file, uint64_t block);
/* Take every unanswered request out (for re-assignment); returns how many
 * were written into out (which holds inflight_count entries). */
size_t peer_conn_drain_inflight(struct peer_conn *pc, struct peer_request *out);

#endif
