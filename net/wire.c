/* Tracker and peer messages as bytes: see wire.h and PROTOCOL.md 2-3. */
#include "net/wire.h"

#include <string.h>

#include "cascade/meta.h"
#include "cascade/util.h"

void wire_encode_tracker_request(const struct wire_tracker_request *req,
                                 uint8_t out[WIRE_TRACKER_REQUEST_LEN])
{
    memcpy(out, WIRE_TRACKER_MAGIC, 4);
    cascade_put_be32(out + 4, WIRE_TRACKER_VERSION);
    cascade_put_be32(out + 8, req->command);
    cascade_put_be32(out + 12, WIRE_TRACKER_BODY_LEN);
    memcpy(out + 16, req->hash, CASCADE_HASH_LEN);
    cascade_put_be32(out + 48, req->ip);
    cascade_put_be16(out + 52, req->port);
}

int wire_decode_tracker_request(const uint8_t in[WIRE_TRACKER_REQUEST_LEN],
                                struct wire_tracker_request *req, char *err, size_t errlen)
{
    if (memcmp(in, WIRE_TRACKER_MAGIC, 4) != 0) {
        cascade_errf(err, errlen, "bad magic: expected CASC");
        return -1;
    }
    uint32_t version = cascade_get_be32(in + 4);
    if (version != WIRE_TRACKER_VERSION) {
        cascade_errf(err, errlen, "unsupported protocol version %u (expected 1)", version);
        return -1;
    }
    uint32_t command = cascade_get_be32(in + 8);
    if (command != WIRE_CMD_LIST && command != WIRE_CMD_SUBSCRIBE) {
        cascade_errf(err, errlen, "unknown command %u (expected 1 list or 2 subscribe)", command);
        return -1;
    }
    uint32_t body_len = cascade_get_be32(in + 12);
    if (body_len != WIRE_TRACKER_BODY_LEN) {
        cascade_errf(err, errlen, "body length %u (expected 38)", body_len);
        return -1;
    }
    req->command = command;
    memcpy(req->hash, in + 16, CASCADE_HASH_LEN);
    req->ip = cascade_get_be32(in + 48);
    req->port = cascade_get_be16(in + 52);
    return 0;
}

void wire_encode_tracker_answer_header(uint8_t status, uint32_t body_len,
                                       uint8_t out[WIRE_TRACKER_ANSWER_HEADER_LEN])
{
    out[0] = status;
    cascade_put_be32(out + 1, body_len);
}

void wire_decode_tracker_answer_header(const uint8_t in[WIRE_TRACKER_ANSWER_HEADER_LEN],
                                       uint8_t *status, uint32_t *body_len)
{
    *status = in[0];
    *body_len = cascade_get_be32(in + 1);
}

void wire_encode_peer_record(const struct wire_peer_record *rec, uint8_t out[WIRE_PEER_RECORD_LEN])
{
    cascade_put_be32(out, rec->ip);
    cascade_put_be16(out + 4, rec->port);
    cascade_put_be32(out + 6, rec->last_seen);
    out[10] = rec->good ? 1 : 0;
    out[11] = 0;
}

void wire_decode_peer_record(const uint8_t in[WIRE_PEER_RECORD_LEN], struct wire_peer_record *rec)
{
    rec->ip = cascade_get_be32(in);
    rec->port = cascade_get_be16(in + 4);
    rec->last_seen = cascade_get_be32(in + 6);
    rec->good = in[10];
}

void wire_encode_peer_request(const struct wire_peer_request *req, uint8_t out[WIRE_PEER_REQUEST_LEN])
{
    memcpy(out, CASCADE_MAGIC, CASCADE_MAGIC_LEN);
    memset(out + 8, 0, 16);
    cascade_put_be64(out + 24, req->block);
    memcpy(out + 32, req->hash, CASCADE_HASH_LEN);
}

int wire_decode_peer_request(const uint8_t in[WIRE_PEER_REQUEST_LEN],
                             struct wire_peer_request *req, char *err, size_t errlen)
{
    if (memcmp(in, CASCADE_MAGIC, CASCADE_MAGIC_LEN) != 0) {
        cascade_errf(err, errlen, "bad request: magic is not CASCADE1");
        return -1;
    }
    req->block = cascade_get_be64(in + 24);
    memcpy(req->hash, in + 32, CASCADE_HASH_LEN);
    return 0;
}

void wire_encode_peer_answer_header(uint8_t status, uint64_t body_len,
                                    uint8_t out[WIRE_PEER_ANSWER_HEADER_LEN])
{
    out[0] = status;
    cascade_put_be64(out + 1, body_len);
}

void wire_decode_peer_answer_header(const uint8_t in[WIRE_PEER_ANSWER_HEADER_LEN],
                                    uint8_t *status, uint64_t *body_len)
{
    *status = in[0];
    *body_len = cascade_get_be64(in + 1);
}
