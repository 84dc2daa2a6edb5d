/* One tracker request on one connection: see tracker_client.h. */
#include "net/tracker_client.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cascade/util.h"
#include "net/sock.h"

/* Reads an error message body (capped) into err. */
static void read_refusal(int fd, uint32_t len, int timeout_ms, int cancel_fd,
                         char *err, size_t errlen)
{
    char msg[WIRE_MAX_ERROR_MESSAGE + 1];
    size_t take = len < WIRE_MAX_ERROR_MESSAGE ? len : WIRE_MAX_ERROR_MESSAGE;
    if (sock_read_full_cancelable(fd, msg, take, timeout_ms, cancel_fd, NULL, 0) < 0)
        take = 0;
    msg[take] = '\0';
    for (size_t i = 0; i < take; i++)   /* keep logs one clean line */
        if ((unsigned char)msg[i] < 32)
            msg[i] = ' ';
    cascade_errf(err, errlen, "tracker refused: %s", take ? msg : "(no message)");
}

static int read_peers(int fd, uint32_t body_len, int timeout_ms, int cancel_fd,
                      struct wire_peer_record **peers, size_t *npeers, char *err, size_t errlen)
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
    if (sock_read_full_cancelable(fd, raw, body_len, timeout_ms, cancel_fd, err, errlen) < 0) {
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
    return tracker_query_cancelable(tracker, command, hash, my_ip, my_port, timeout_ms, -1,
                                    peers, npeers, local_out, err, errlen);
}

int tracker_query_cancelable(const struct sockaddr_in *tracker, enum wire_tracker_command command,
                             const uint8_t hash[CASCADE_HASH_LEN], uint32_t my_ip,
                             uint16_t my_port, int timeout_ms, int cancel_fd,
                             struct wire_peer_record **peers, size_t *npeers,
                             struct sockaddr_in *local_out, char *err, size_t errlen)
{
    *peers = NULL;
    *npeers = 0;
    char name[SOCK_ADDRSTRLEN], why[CASCADE_ERRLEN];
    sock_format_addr(tracker, name, sizeof name);
    int fd = sock_connect_cancelable(tracker, timeout_ms, cancel_fd, err, errlen);
    if (fd < 0)
        return TRACKER_QUERY_ENET;
    if (local_out)
        sock_local_addr(fd, local_out);

    struct wire_tracker_request req = {.command = command, .ip = my_ip, .port = my_port};
    memcpy(req.hash, hash, CASCADE_HASH_LEN);
    uint8_t out[WIRE_TRACKER_REQUEST_LEN], head[WIRE_TRACKER_ANSWER_HEADER_LEN];
    wire_encode_tracker_request(&req, out);
    int rc = TRACKER_QUERY_ENET;
    if (sock_write_full_cancelable(fd, out, sizeof out, timeout_ms, cancel_fd, why,
                                   sizeof why) < 0 ||
        sock_read_full_cancelable(fd, head, sizeof head, timeout_ms, cancel_fd, why,
                                  sizeof why) < 0) {
        cascade_errf(err, errlen, "tracker %s: %s", name, why);
        goto out;
    }
    uint8_t status;
    uint32_t body_len;
    wire_decode_tracker_answer_header(head, &status, &body_len);
    if (status != 0) {
        read_refusal(fd, body_len, timeout_ms, cancel_fd, err, errlen);
        rc = TRACKER_QUERY_EREFUSED;
        goto out;
    }
    rc = read_peers(fd, body_len, timeout_ms, cancel_fd, peers, npeers, why, sizeof why);
    if (rc != TRACKER_QUERY_OK)
        cascade_errf(err, errlen, "tracker %s: %s", name, why);
out:
    close(fd);
    return rc;
}

/* ---- the list of trackers ---- */

static bool tracker_list_has(const struct tracker_list *l, const struct sockaddr_in *a)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->addr[i].sin_addr.s_addr == a->sin_addr.s_addr && l->addr[i].sin_port == a->sin_port)
            return true;
    return false;
}

int tracker_list_parse(const char *spec, struct tracker_list *out, char *err, size_t errlen)
{
    if (!spec)
        spec = getenv("CASCADE_TRACKER");
    if (!spec || !*spec)
        spec = TRACKER_DEFAULT_ADDR;
    memset(out, 0, sizeof *out);
    char *copy = strdup(spec), *save = NULL;
    if (!copy) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        struct sockaddr_in a;
        char why[CASCADE_ERRLEN];
        if (sock_parse_addr(item, "127.0.0.1", TRACKER_DEFAULT_PORT, &a, why, sizeof why) < 0) {
            cascade_errf(err, errlen, "bad tracker address '%s': %s", item, why);
            rc = -1;
            break;
        }
        if (tracker_list_has(out, &a))
            continue;
        if (out->n == TRACKER_LIST_MAX) {
            cascade_errf(err, errlen, "more than %d trackers in '%s'", TRACKER_LIST_MAX, spec);
            rc = -1;
            break;
        }
        out->addr[out->n++] = a;
    }
    if (rc == 0 && out->n == 0) {
        cascade_errf(err, errlen, "no tracker address in '%s'", spec);
        rc = -1;
    }
    free(copy);
    return rc;
}

void tracker_list_format(const struct tracker_list *l, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < l->n && used + 1 < outlen; i++) {
        char a[SOCK_ADDRSTRLEN];
        sock_format_addr(&l->addr[i], a, sizeof a);
        int n = snprintf(out + used, outlen - used, "%s%s", i ? "," : "", a);
        if (n < 0 || (size_t)n >= outlen - used)
            break;
        used += (size_t)n;
    }
}
