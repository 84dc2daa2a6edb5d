/* One tracker request on one connection: see tracker_client.h. */
#include "net/tracker_client.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cascade/util.h"
#include "net/sock.h"

/* Reads an error message body (capped) into err. */
static void read_refusal(int fd, uint32_t len, int timeout_ms, char *err, size_t errlen)
{
    char msg[WIRE_MAX_ERROR_MESSAGE + 1];
    size_t take = len < WIRE_MAX_ERROR_MESSAGE ? len : WIRE_MAX_ERROR_MESSAGE;
    if (sock_read_full(fd, msg, take, timeout_ms, NULL, 0) < 0)
        take = 0;
    msg[take] = '\0';
    for (size_t i = 0; i < take; i++)   /* keep logs one clean line */
        if ((unsigned char)msg[i] < 32)
            msg[i] = ' ';
    cascade_errf(err, errlen, "tracker refused: %s", take ? msg : "(no message)");
}

static int read_peers(int fd, uint32_t body_len, int timeout_ms, struct wire_peer_record **peers,
                      size_t *npeers, char *err, size_t errlen)
{
    if (body_len % WIRE_PEER_RECORD_LEN != 0 ||
        body_len / WIRE_PEER_RECORD_LEN > WIRE_MAX_TRACKER_PEERS) {
        cascade_errf(err, errlen, "garbage answer: peer list of %u bytes", body_len);
        return TRACKER_QUERY_ENET;
    }
    size_t n = body_len / WIRE_PEER_RECORD_LEN;
    if (n == 0)
        return TRACKER_QUERY_OK;
    uint8_t *raw = malloc(body_len);
    struct wire_peer_record *recs = calloc(n, sizeof *recs);
    if (!raw || !recs) {
        free(raw);
        free(recs);
        cascade_errf(err, errlen, "out of memory");
        return TRACKER_QUERY_ENET;
    }
    if (sock_read_full(fd, raw, body_len, timeout_ms, err, errlen) < 0) {
        free(raw);
        free(recs);
        return TRACKER_QUERY_ENET;
    }
    for (size_t i = 0; i < n; i++)
        wire_decode_peer_record(raw + i * WIRE_PEER_RECORD_LEN, &recs[i]);
    free(raw);
    *peers = recs;
    *npeers = n;
    return TRACKER_QUERY_OK;
}

int tracker_query(const struct sockaddr_in *tracker, enum wire_tracker_command command,
                  const uint8_t hash[CASCADE_HASH_LEN], uint32_t my_ip, uint16_t my_port,
                  int timeout_ms, struct wire_peer_record **peers, size_t *npeers,
                  struct sockaddr_in *local_out, char *err, size_t errlen)
{
    *peers = NULL;
    *npeers = 0;
    char name[SOCK_ADDRSTRLEN], why[CASCADE_ERRLEN];
    sock_format_addr(tracker, name, sizeof name);
    int fd = sock_connect(tracker, timeout_ms, err, errlen);
    if (fd < 0)
        return TRACKER_QUERY_ENET;
    if (local_out)
        sock_local_addr(fd, local_out);

    struct wire_tracker_request req = {.command = command, .ip = my_ip, .port = my_port};
    memcpy(req.hash, hash, CASCADE_HASH_LEN);
    uint8_t out[WIRE_TRACKER_REQUEST_LEN], head[WIRE_TRACKER_ANSWER_HEADER_LEN];
    wire_encode_tracker_request(&req, out);
    int rc = TRACKER_QUERY_ENET;
    if (sock_write_full(fd, out, sizeof out, timeout_ms, why, sizeof why) < 0 ||
        sock_read_full(fd, head, sizeof head, timeout_ms, why, sizeof why) < 0) {
        cascade_errf(err, errlen, "tracker %s: %s", name, why);
        goto out;
    }
    uint8_t status;
    uint32_t body_len;
    wire_decode_tracker_answer_header(head, &status, &body_len);
    if (status != 0) {
        read_refusal(fd, body_len, timeout_ms, err, errlen);
        rc = TRACKER_QUERY_EREFUSED;
        goto out;
    }
    rc = read_peers(fd, body_len, timeout_ms, peers, npeers, why, sizeof why);
    if (rc != TRACKER_QUERY_OK)
        cascade_errf(err, errlen, "tracker %s: %s", name, why);
out:
    close(fd);
    return rc;
}
