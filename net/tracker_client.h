/* Asking a tracker for peers and subscribing (PROTOCOL.md section 2). */
#ifndef NET_TRACKER_CLIENT_H
#define NET_TRACKER_CLIENT_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "net/wire.h"

/* Where a peer finds its trackers when told nothing: $CASCADE_TRACKER, else this. */
#define TRACKER_DEFAULT_ADDR "127.0.0.1:8888"
#define TRACKER_DEFAULT_PORT 8888
#define TRACKER_LIST_MAX 16

/* The trackers a peer talks to: announce to all, merge their lists. */
struct tracker_list {
    struct sockaddr_in addr[TRACKER_LIST_MAX];
    size_t n;
};

/* Parse "A[,B...]" (each HOST:PORT, HOST or :PORT) into out. spec NULL
 * means $CASCADE_TRACKER if set and not empty, else TRACKER_DEFAULT_ADDR.
 * Duplicates are kept once. 0, or -1 with a message naming the bad entry. */
int tracker_list_parse(const char *spec, struct tracker_list *out, char *err, size_t errlen);
/* "A,B" for messages (outlen >= SOCK_ADDRSTRLEN; cut short if too long). */
void tracker_list_format(const struct tracker_list *l, char *out, size_t outlen);

enum tracker_query_result {
    TRACKER_QUERY_OK = 0,
    TRACKER_QUERY_ENET = -1,     /* could not connect/send/receive, or garbage answer */
    TRACKER_QUERY_EREFUSED = -2, /* tracker answered a non-zero status; err holds its message */
};

/* One request on one connection. On success *peers (malloc'd, may be NULL
 * when *npeers is 0) holds the answer. local_out, if not NULL, receives the
 * local address of the connection to the tracker (to announce ourselves).
 * Lengths from the tracker are checked before anything is allocated. */
int tracker_query(const struct sockaddr_in *tracker, enum wire_tracker_command command,
                  const uint8_t hash[CASCADE_HASH_LEN], uint32_t my_ip, uint16_t my_port,
                  int timeout_ms, struct wire_peer_record **peers, size_t *npeers,
                  struct sockaddr_in *local_out, char *err, size_t errlen);
/* The same, giving up at once when cancel_fd (-1: none) becomes readable. */
int tracker_query_cancelable(const struct sockaddr_in *tracker, enum wire_tracker_command command,
                             const uint8_t hash[CASCADE_HASH_LEN], uint32_t my_ip,
                             uint16_t my_port, int timeout_ms, int cancel_fd,
                             struct wire_peer_record **peers, size_t *npeers,
                             struct sockaddr_in *local_out, char *err, size_t errlen);

#endif
