/* The live status of a peer node, for `cascade status`: a snapshot of what
 * the node is doing (per file: held and total, bytes and rates, ETA, peers;
 * every connected peer with its bytes and rate; each tracker's last answer
 * or error) and a control socket (net/control.h) that answers it as JSON.
 *
 * Rates are bytes per second over the last NODE_STATUS_WINDOW_S seconds:
 * a sampler records each counter about once a second (on the control
 * thread), and a rate is the counter now minus its oldest sample within
 * the window, over the time between. A transfer that ends shows 0 within
 * the window and a second.
 *
 * Peers: a peer we fetch from is listed by the address it serves on
 * ("download"); a peer that fetches from us by the source address of its
 * connection ("upload"): the protocol's connections carry blocks one way,
 * and a peer's two connections cannot be told to be the same peer. Only
 * connected peers are listed, at most NODE_STATUS_PEERS_MAX (the rest are
 * counted). The node keeps, for uploads, a table of the block server's
 * connections (at most NODE_INBOUND_MAX; one more is not tracked).
 *
 * Memory: per file two rings of NODE_STATUS_WINDOW_S + 1 samples, per
 * listed peer one; nothing grows with time. */
#ifndef NET_NODE_STATUS_H
#define NET_NODE_STATUS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/cli/json.h"
#include "net/node.h"
#include "net/tracker_agent.h"

#define NODE_STATUS_WINDOW_S 10
#define NODE_STATUS_SLOTS (NODE_STATUS_WINDOW_S + 1)
#define NODE_STATUS_PEERS_MAX 256
#define NODE_INBOUND_MAX 1024

/* ---- rates ---- */

/* Samples of one counter at the sampler's sample times. */
struct status_ring {
    uint64_t v[NODE_STATUS_SLOTS];
    uint64_t first;              /* sequence number of its first sample */
};

/* The sample times every ring shares. */
struct status_clock {
    uint64_t t[NODE_STATUS_SLOTS];
    uint64_t seq;                /* samples taken; the next goes to slot seq % SLOTS */
};

/* Record the time of a new sample (then status_ring_put each counter). */
void status_clock_tick(struct status_clock *c, uint64_t now_ms);
/* A new ring whose first sample is the one being taken. */
void status_ring_start(struct status_ring *r, const struct status_clock *c);
/* The counter's value at the sample last ticked. */
void status_ring_put(struct status_ring *r, const struct status_clock *c, uint64_t value);
/* Bytes per second from the oldest sample within the window to value at
 * now_ms; 0 with no earlier sample, or when the counter went down. */
uint64_t status_ring_rate(const struct status_ring *r, const struct status_clock *c,
                          uint64_t value, uint64_t now_ms);

/* ---- the snapshot ---- */

struct node_status_file {
    const struct cascade_meta *meta;   /* valid while the node runs */
    struct node_file_stats stats;      /* as node_file_get_stats (the xattrs) */
    uint64_t fetch_rate, serve_rate;   /* bytes/s over the window */
    int64_t eta_s;                     /* seconds to hold every block at fetch_rate;
                                          -1: complete, or not fetching now */
};

enum node_status_direction { NODE_STATUS_DOWNLOAD, NODE_STATUS_UPLOAD };

struct node_status_peer {
    struct sockaddr_in addr;
    enum node_status_direction direction;
    uint64_t bytes;                    /* received from it (download) or sent to it (upload) */
    uint64_t rate;                     /* bytes/s over the window */
};

struct node_status_tracker {
    struct sockaddr_in addr;
    struct tracker_agent_status st;
};

struct node_status {
    uint64_t taken_ms;                 /* cascade_now_ms clock */
    struct sockaddr_in server;         /* port 0: not serving */
    struct node_status_file *files;
    size_t n_files;
    struct node_status_peer *peers;    /* downloads first, then by address */
    size_t n_peers, peers_omitted;
    struct node_status_tracker trackers[TRACKER_LIST_MAX];
    size_t n_trackers;
    uint64_t cache_bytes, cache_max, bytes_evicted;   /* node_stats' figures */
};

/* What keeps the samples of one node. Its calls are not thread-safe: one
 * thread samples and takes (the control thread). */
struct node_status_sampler;

struct node_status_sampler *node_status_sampler_new(struct peer_node *n);
void node_status_sampler_free(struct node_status_sampler *s);
/* Record every counter (about once a second). Takes the node's locks
 * briefly. 0, or -1 when out of memory (this sample is skipped). */
int node_status_sample(struct node_status_sampler *s, uint64_t now_ms);
/* The status now into *out (free with node_status_release). 0, or -1
 * when out of memory. */
int node_status_take(struct node_status_sampler *s, uint64_t now_ms, struct node_status *out);
void node_status_release(struct node_status *st);

/* The status's members (server, files, peers, peers_omitted, trackers)
 * into the object j has open, with the keys cascade(1) documents. */
void node_status_write_json(const struct node_status *st, struct json_writer *j);

/* ---- answering on the control socket ---- */

struct node_status_info {
    const char *program;               /* "cascadefs", "cascade seed" */
    const char *mountpoint;            /* NULL: not a mount */
    const char *cache_root;            /* NULL: the default (for the socket's folder) */
};

struct node_status_server;

/* Answer {"query":"status"} for node n on a control socket from now on
 * (see control.h for where). info is copied. 0, or -1 with a message (the
 * node runs on without it). */
int node_status_serve(struct peer_node *n, const struct node_status_info *info,
                      struct node_status_server **out, char *err, size_t errlen);
/* The control socket's path. */
const char *node_status_socket(const struct node_status_server *s);
/* Stop answering (before node_stop). NULL is fine. */
void node_status_stop(struct node_status_server *s);

#endif
