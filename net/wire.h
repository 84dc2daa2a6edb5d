/* Encoding and decoding of every tracker and peer message (PROTOCOL.md
 * sections 2 and 3) as pure functions over byte buffers. No I/O here.
 * All integers on the wire are big-endian; in these structs they are host
 * order (ip too: 127.0.0.1 is 0x7f000001). */
#ifndef NET_WIRE_H
#define NET_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "cascade/sha256.h"

#define WIRE_TRACKER_MAGIC "CASC"
#define WIRE_TRACKER_VERSION 1
#define WIRE_TRACKER_HEADER_LEN 16
#define WIRE_TRACKER_BODY_LEN 38
#define WIRE_TRACKER_REQUEST_LEN (WIRE_TRACKER_HEADER_LEN + WIRE_TRACKER_BODY_LEN) /* 54 */
#define WIRE_TRACKER_ANSWER_HEADER_LEN 5
#define WIRE_PEER_RECORD_LEN 12
#define WIRE_PEER_REQUEST_LEN 64
#define WIRE_PEER_ANSWER_HEADER_LEN 9

/* Caps on lengths that arrive from the network, checked before allocating. */
#define WIRE_MAX_TRACKER_PEERS 4096                   /* records in one answer */
#define WIRE_MAX_ERROR_MESSAGE 4096                   /* bytes of an error text */

enum wire_tracker_command { WIRE_CMD_LIST = 1, WIRE_CMD_SUBSCRIBE = 2 };

enum wire_peer_status {
    WIRE_STATUS_OK = 0,
    WIRE_STATUS_UNKNOWN_HASH = 1,
    WIRE_STATUS_NOT_PRESENT = 2,
    WIRE_STATUS_OUT_OF_RANGE = 3,
    WIRE_STATUS_BAD_REQUEST = 4,
};

struct wire_tracker_request {
    uint32_t command;                    /* enum wire_tracker_command */
    uint8_t hash[CASCADE_HASH_LEN];      /* cascade hash */
    uint32_t ip;                         /* where the sender serves blocks */
    uint16_t port;
};

struct wire_peer_record {
    uint32_t ip;
    uint16_t port;
    uint32_t last_seen;                  /* seconds since the epoch */
    uint8_t good;                        /* 1: vouched for by the tracker's operator */
};

struct wire_peer_request {
    uint64_t block;
    uint8_t hash[CASCADE_HASH_LEN];
};

void wire_encode_tracker_request(const struct wire_tracker_request *req,
                                 uint8_t out[WIRE_TRACKER_REQUEST_LEN]);
/* Checks magic, version, command and body length; 0 or -1 with a message
 * fit to send back to the client. */
int wire_decode_tracker_request(const uint8_t in[WIRE_TRACKER_REQUEST_LEN],
                                struct wire_tracker_request *req, char *err, size_t errlen);

void wire_encode_tracker_answer_header(uint8_t status, uint32_t body_len,
                                       uint8_t out[WIRE_TRACKER_ANSWER_HEADER_LEN]);
void wire_decode_tracker_answer_header(const uint8_t in[WIRE_TRACKER_ANSWER_HEADER_LEN],
                                       uint8_t *status, uint32_t *body_len);

void wire_encode_peer_record(const struct wire_peer_record *rec, uint8_t out[WIRE_PEER_RECORD_LEN]);
void wire_decode_peer_record(const uint8_t in[WIRE_PEER_RECORD_LEN], struct wire_peer_record *rec);

void wire_encode_peer_request(const struct wire_peer_request *req, uint8_t out[WIRE_PEER_REQUEST_LEN]);
/* Checks the magic; 0 or -1 with a message. Reserved bytes are ignored. */
int wire_decode_peer_request(const uint8_t in[WIRE_PEER_REQUEST_LEN],
                             struct wire_peer_request *req, char *err, size_t errlen);

void wire_encode_peer_answer_header(uint8_t status, uint64_t body_len,
                                    uint8_t out[WIRE_PEER_ANSWER_HEADER_LEN]);
void wire_decode_peer_answer_header(const uint8_t in[WIRE_PEER_ANSWER_HEADER_LEN],
                                    uint8_t *status, uint64_t *body_len);

#endif
