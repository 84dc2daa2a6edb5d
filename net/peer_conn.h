/* One outgoing connection to a peer, used by the fetcher's event loop:
 * non-blocking connect, pipelined block requests (PROTOCOL.md section 3)
 * and an incremental parser for the answers, which a server sends in the
 * order of the requests.
 *
 * The connection owns a FIFO of the block numbers it has asked for. Each
 * answer is matched to the head of that FIFO; a status-0 body must be
 * exactly that block's length (read straight into a buffer of that size),
 * an error body is capped at WIRE_MAX_ERROR_MESSAGE. No locking: a
 * peer_conn belongs to one thread.
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
};

/* One complete answer, handed to the caller by peer_conn_read_answer. */
struct peer_answer {
    uint64_t block;
    uint8_t status;              /* enum wire_peer_status */
    uint8_t *body;               /* status 0: the block (malloc'd, caller frees); else NULL */
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

    /* Blocks asked for, oldest first (a ring). */
    uint64_t *inflight;
    size_t inflight_head, inflight_count, inflight_cap;

    /* Answer parser. */
    uint8_t header[WIRE_PEER_ANSWER_HEADER_LEN];
    size_t header_have;
    bool in_body;
    uint8_t status;
    uint64_t body_len;
    uint64_t body_have;
    uint8_t *body;               /* status 0: block buffer; else error text buffer */
    size_t body_cap;
    uint8_t *spare;              /* a caller-given buffer for the next block body, or NULL */
    size_t spare_cap;

    /* Bytes read but not yet parsed (small answers arrive many per read). */
    uint8_t *in;
    size_t in_len, in_off;

    uint64_t last_progress_ms;   /* last time bytes arrived (or the first request went out) */
    uint64_t head_since_ms;      /* when the head request became the head */
    uint64_t bytes_received;
};

/* Start a non-blocking connect. 0 or -1 with a message. */
int peer_conn_open(struct peer_conn *pc, const struct sockaddr_in *addr, char *err, size_t errlen);
/* Close the socket and free buffers (including a half-read body). */
void peer_conn_close(struct peer_conn *pc);

/* After POLLOUT on a connecting socket: 0 connected, -1 failed (message). */
int peer_conn_finish_connect(struct peer_conn *pc, char *err, size_t errlen);

/* Give the connection a buffer (malloc'd, cap bytes) to read the next block
 * into, instead of allocating one: recycled buffers avoid page faults. The
 * connection owns it from now on. Only when pc->spare is NULL. */
static inline void peer_conn_give_buffer(struct peer_conn *pc, uint8_t *buf, size_t cap)
{
    pc->spare = buf;
    pc->spare_cap = cap;
}

/* Queue a request for block (encoded now, written by peer_conn_flush). */
int peer_conn_queue_request(struct peer_conn *pc, uint64_t block,
                            const uint8_t hash[CASCADE_HASH_LEN]);
/* Write queued requests until done or the socket would block.
 * 0 or PEER_CONN_ENET with a message. */
int peer_conn_flush(struct peer_conn *pc, char *err, size_t errlen);
static inline bool peer_conn_wants_write(const struct peer_conn *pc)
{
    return !pc->connected || pc->out_off < pc->out_len;
}

/* Read and parse. expected_len(block) gives each block's length.
 * Returns 1 with *ans filled when an answer is complete (call again: more
 * may be buffered), PEER_CONN_EAGAIN when the socket has nothing more,
 * PEER_CONN_ENET or PEER_CONN_EPROTO with a message. */
int peer_conn_read_answer(struct peer_conn *pc, uint64_t (*expected_len)(void *, uint64_t),
                          void *ctx, struct peer_answer *ans, char *err, size_t errlen);

/* Bytes already read from the socket but not parsed yet: the caller must
 * call peer_conn_read_answer again even if the socket is not readable. */
static inline bool peer_conn_has_buffered(const struct peer_conn *pc)
{
    return pc->in_off < pc->in_len;
}

/* The block at the head of the FIFO (the next one to be answered). */
static inline uint64_t peer_conn_head(const struct peer_conn *pc)
{
    return pc->inflight[pc->inflight_head];
}
/* Take every unanswered block number out (for re-assignment); returns how
 * many were written into out (which holds inflight_count entries). */
size_t peer_conn_drain_inflight(struct peer_conn *pc, uint64_t *out);

#endif
