/* The node's peer table (see node_internal.h): one entry per peer address,
 * whatever files it serves, and per file what the peer told us: that a
 * tracker listed it, that it does not know the file (status 1), which
 * blocks it lacks for now (status 2). Everything here runs under the
 * node's lock. We never add ourselves. */
#include <ifaddrs.h>
#include <stdlib.h>
#include <string.h>

#include "cascade/bitmap.h"
#include "cascade/log.h"
#include "cascade/util.h"
#include "net/node_internal.h"

static bool same_addr(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
    return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

static int load_local_ips(struct peer_node *n)
{
    struct ifaddrs *ifa = NULL;
    if (getifaddrs(&ifa) < 0)
        return 0;   /* only 127/8 and our server address are then known to be ours */
    size_t count = 0;
    for (struct ifaddrs *i = ifa; i; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET)
            count++;
    n->local_ips = calloc(count ? count : 1, sizeof *n->local_ips);
    if (!n->local_ips) {
        freeifaddrs(ifa);
        return -1;
    }
    for (struct ifaddrs *i = ifa; i; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET)
            n->local_ips[n->n_local_ips++] =
                ntohl(((const struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr);
    freeifaddrs(ifa);
    return 0;
}

int fetch_peers_init(struct peer_node *n)
{
    n->peers = calloc(NODE_MAX_PEERS, sizeof *n->peers);
    if (!n->peers)
        return -1;
    return load_local_ips(n);
}

void fetch_peers_free(struct peer_node *n)
{
    for (size_t i = 0; n->peers && i < n->n_peers; i++) {
        struct fetch_peer *p = n->peers[i];
        if (p->open) {
            uint8_t *leftover;
            size_t cap;
            peer_conn_close(&p->conn, &leftover, &cap);
            free(leftover);
        }
        for (size_t k = 0; k < p->n_files; k++) {
            free(p->files[k].lacks);
            free(p->files[k].fetching);
        }
        free(p->files);
        free(p);
    }
    free(n->peers);
    free(n->local_ips);
    n->peers = NULL;
    n->n_peers = 0;
}

/* An address that would reach ourselves: our server, how a tracker sees
 * us, or our port on any of our own addresses. */
static bool node_is_ours(const struct peer_node *n, const struct sockaddr_in *a)
{
    if (n->server_addr.sin_port && same_addr(a, &n->server_addr))
        return true;
    for (size_t t = 0; t < TRACKER_LIST_MAX; t++)
        if (n->announced[t].sin_port && same_addr(a, &n->announced[t]))
            return true;
    if (!n->server_addr.sin_port || a->sin_port != n->server_addr.sin_port)
        return false;
    uint32_t ip = ntohl(a->sin_addr.s_addr);
    if ((ip >> 24) == 127 || ip == 0)
        return true;
    for (size_t i = 0; i < n->n_local_ips; i++)
        if (n->local_ips[i] == ip)
            return true;
    return false;
}

struct fetch_peer *fetch_peer_get(struct peer_node *n, const struct sockaddr_in *addr)
{
    if (addr->sin_port == 0 || addr->sin_addr.s_addr == 0 || node_is_ours(n, addr))
        return NULL;
    for (size_t i = 0; i < n->n_peers; i++)
        if (same_addr(&n->peers[i]->addr, addr))
            return n->peers[i];
    if (n->n_peers >= NODE_MAX_PEERS)
        return NULL;
    struct fetch_peer *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->addr = *addr;
    p->conn.fd = -1;
    n->peers[n->n_peers++] = p;
    char a[SOCK_ADDRSTRLEN];
    peer_name(p, a, sizeof a);
    log_debug("fetch: new peer %s", a);
    return p;
}

struct peer_file *fetch_peer_file(struct fetch_peer *p, uint32_t file)
{
    for (size_t i = 0; i < p->n_files; i++)
        if (p->files[i].file == file)
            return &p->files[i];
    return NULL;
}

bool fetch_peer_listed(struct peer_node *n, struct fetch_peer *p, uint32_t file)
{
    (void)n;
    if (fetch_peer_file(p, file))
        return false;
    if (p->n_files == p->files_cap) {
        size_t cap = p->files_cap ? 2 * p->files_cap : 4;
        struct peer_file *grown = realloc(p->files, cap * sizeof *grown);
        if (!grown)
            return false;
        p->files = grown;
        p->files_cap = cap;
    }
    p->files[p->n_files++] = (struct peer_file){.file = file, .holds = 0.5f};
    return true;
}

void fetch_peers_add_static(struct peer_node *n, struct node_file *f)
{
    for (size_t i = 0; i < n->n_static_peers; i++) {
        struct fetch_peer *p = fetch_peer_get(n, &n->static_peers[i]);
        if (p)
            fetch_peer_listed(n, p, f->index);
    }
}

size_t fetch_peers_from_tracker(struct peer_node *n, uint32_t file,
                                const struct wire_peer_record *recs, size_t count,
                                const struct sockaddr_in *announced, size_t tracker)
{
    if (tracker < TRACKER_LIST_MAX)
        n->announced[tracker] = *announced;
    if (file >= n->n_files)
        return 0;
    size_t added = 0;
    for (size_t i = 0; i < count; i++) {
        struct sockaddr_in a;
        sock_make_addr(recs[i].ip, recs[i].port, &a);
        struct fetch_peer *p = fetch_peer_get(n, &a);
        if (p && fetch_peer_listed(n, p, file))
            added++;
    }
    return added;
}

/* ---- what a peer said of a file ---- */

bool peer_file_askable(const struct peer_file *pf, uint64_t now)
{
    return pf->refused_until_ms <= now;
}

void peer_file_forget_lacks(struct node_file *f, struct peer_file *pf)
{
    if (!pf->lacks)
        return;
    uint8_t *counts = f->fetch.lacked_by;
    for (uint64_t i = 0; counts && i < f->meta->block_count; i++)
        if (bitmap_get(pf->lacks, i) && counts[i] > 0)
            counts[i]--;
    free(pf->lacks);
    pf->lacks = NULL;
}

bool peer_file_lacks(struct node_file *f, struct peer_file *pf, uint64_t idx, uint64_t now)
{
    if (!pf->lacks)
        return false;
    if (now - pf->lacks_since_ms > f->node->lacks_forget_ms) {
        peer_file_forget_lacks(f, pf);
        return false;
    }
    return bitmap_get(pf->lacks, idx);
}

void peer_file_mark_lacks(struct node_file *f, struct peer_file *pf, uint64_t idx)
{
    if (!pf->lacks) {
        pf->lacks = calloc(bitmap_bytes(f->meta->block_count) + 1, 1);
        if (!pf->lacks)
            return;
        pf->lacks_since_ms = cascade_now_ms();
    }
    if (bitmap_get(pf->lacks, idx))
        return;
    bitmap_set(pf->lacks, idx);
    uint8_t *counts = f->fetch.lacked_by;
    if (counts && counts[idx] < UINT8_MAX)
        counts[idx]++;
}

/* ---- what a peer asked us for ---- */

void fetch_peers_asked_missing(struct peer_node *n, struct node_file *f, uint64_t block,
                               uint32_t ip)
{
    struct fetch_peer *found = NULL;
    for (size_t i = 0; i < n->n_peers; i++) {
        if (n->peers[i]->addr.sin_addr.s_addr != ip)
            continue;
        if (found)
            return;   /* two peers on one address: we cannot tell which asked */
        found = n->peers[i];
    }
    struct peer_file *pf = found ? fetch_peer_file(found, f->index) : NULL;
    if (!pf || block >= f->meta->block_count)
        return;
    uint64_t now = cascade_now_ms();
    if (pf->fetching && now - pf->fetching_since_ms > NODE_FETCHING_MS) {
        free(pf->fetching);
        pf->fetching = NULL;
    }
    if (!pf->fetching) {
        pf->fetching = calloc(bitmap_bytes(f->meta->block_count) + 1, 1);
        if (!pf->fetching)
            return;
        pf->fetching_since_ms = now;
    }
    bitmap_set(pf->fetching, block);
}

bool peer_file_fetching(struct node_file *f, struct peer_file *pf, uint64_t idx, uint64_t now)
{
    (void)f;
    return pf->fetching && now - pf->fetching_since_ms <= NODE_FETCHING_MS &&
           bitmap_get(pf->fetching, idx);
}
