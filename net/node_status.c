/* The live status of a peer node: see node_status.h. This file: the table
 * of connections the block server sends to, the rate rings and their
 * sampler, the snapshot, its JSON, and the control socket's answer. */
#include "net/node_status.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cascade/util.h"
#include "net/control.h"
#include "net/node_internal.h"
#include "net/sock.h"

#define STATUS_WINDOW_MS (NODE_STATUS_WINDOW_S * 1000u)
#define STATUS_MIN_SPAN_MS 1000   /* a rate needs samples at least this far apart */
#define STATUS_VERSION 1

/* ---- who downloads from us ---- */

struct inbound_entry {
    struct sockaddr_in addr;
    uint64_t bytes;
};

struct node_inbound {
    pthread_mutex_t lock;
    struct inbound_entry e[NODE_INBOUND_MAX];
    size_t n;
};

static bool same_addr(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
    return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

struct node_inbound *node_inbound_new(void)
{
    struct node_inbound *in = calloc(1, sizeof *in);
    if (in && pthread_mutex_init(&in->lock, NULL) != 0) {
        free(in);
        return NULL;
    }
    return in;
}

void node_inbound_free(struct node_inbound *in)
{
    if (!in)
        return;
    pthread_mutex_destroy(&in->lock);
    free(in);
}

void node_inbound_sent(void *ctx, const struct sockaddr_in *peer, uint64_t bytes)
{
    struct node_inbound *in = ((struct peer_node *)ctx)->inbound;
    pthread_mutex_lock(&in->lock);
    size_t i = 0;
    while (i < in->n && !same_addr(&in->e[i].addr, peer))
        i++;
    if (i == in->n && in->n < NODE_INBOUND_MAX)
        in->e[in->n++] = (struct inbound_entry){.addr = *peer};
    if (i < in->n)
        in->e[i].bytes += bytes;
    pthread_mutex_unlock(&in->lock);
}

void node_inbound_closed(void *ctx, const struct sockaddr_in *peer)
{
    struct node_inbound *in = ((struct peer_node *)ctx)->inbound;
    pthread_mutex_lock(&in->lock);
    for (size_t i = 0; i < in->n; i++) {
        if (same_addr(&in->e[i].addr, peer)) {
            in->e[i] = in->e[--in->n];
            break;
        }
    }
    pthread_mutex_unlock(&in->lock);
}

/* ---- rates ---- */

void status_clock_tick(struct status_clock *c, uint64_t now_ms)
{
    c->t[c->seq % NODE_STATUS_SLOTS] = now_ms;
    c->seq++;
}

void status_ring_start(struct status_ring *r, const struct status_clock *c)
{
    r->first = c->seq ? c->seq - 1 : 0;
}

void status_ring_put(struct status_ring *r, const struct status_clock *c, uint64_t value)
{
    if (c->seq)
        r->v[(c->seq - 1) % NODE_STATUS_SLOTS] = value;
}

uint64_t status_ring_rate(const struct status_ring *r, const struct status_clock *c,
                          uint64_t value, uint64_t now_ms)
{
    if (c->seq == 0 || r->first >= c->seq)
        return 0;
    uint64_t k = c->seq > NODE_STATUS_SLOTS ? c->seq - NODE_STATUS_SLOTS : 0;
    if (k < r->first)
        k = r->first;
    /* The oldest sample still inside the window. */
    while (k + 1 < c->seq && now_ms - c->t[k % NODE_STATUS_SLOTS] > STATUS_WINDOW_MS)
        k++;
    uint64_t t0 = c->t[k % NODE_STATUS_SLOTS], v0 = r->v[k % NODE_STATUS_SLOTS];
    if (now_ms < t0 + STATUS_MIN_SPAN_MS || value <= v0)
        return 0;
    return (uint64_t)((double)(value - v0) * 1000.0 / (double)(now_ms - t0));
}

/* ---- the sampler ---- */

struct raw_peer {
    struct sockaddr_in addr;
    enum node_status_direction direction;
    uint64_t bytes;
};

struct sampled_peer {
    struct raw_peer key;         /* bytes unused */
    struct status_ring ring;
};

struct node_status_sampler {
    struct peer_node *n;
    struct status_clock clock;
    struct status_ring *fetched, *served;   /* by file index */
    size_t n_files;
    struct sampled_peer *peers;             /* sorted like raw peers */
    size_t n_peers;
};

static int compare_peer(const void *a, const void *b)
{
    const struct raw_peer *x = a, *y = b;
    if (x->direction != y->direction)
        return x->direction < y->direction ? -1 : 1;
    uint32_t ix = ntohl(x->addr.sin_addr.s_addr), iy = ntohl(y->addr.sin_addr.s_addr);
    if (ix != iy)
        return ix < iy ? -1 : 1;
    uint16_t px = ntohs(x->addr.sin_port), py = ntohs(y->addr.sin_port);
    return px < py ? -1 : px > py;
}

/* Every connected peer with its byte counter, sorted; malloc'd. */
static int gather_peers(struct peer_node *n, struct raw_peer **out, size_t *count)
{
    struct raw_peer *list = malloc((NODE_MAX_PEERS + NODE_INBOUND_MAX) * sizeof *list);
    if (!list)
        return -1;
    size_t k = 0;
    pthread_mutex_lock(&n->lock);
    for (size_t i = 0; i < n->n_peers; i++) {
        const struct fetch_peer *p = n->peers[i];
        if (p->open)
            list[k++] = (struct raw_peer){p->addr, NODE_STATUS_DOWNLOAD, p->bytes_in};
    }
    pthread_mutex_unlock(&n->lock);
    struct node_inbound *in = n->inbound;
    pthread_mutex_lock(&in->lock);
    for (size_t i = 0; i < in->n; i++)
        list[k++] = (struct raw_peer){in->e[i].addr, NODE_STATUS_UPLOAD, in->e[i].bytes};
    pthread_mutex_unlock(&in->lock);
    qsort(list, k, sizeof *list, compare_peer);
    *out = list;
    *count = k;
    return 0;
}

struct node_status_sampler *node_status_sampler_new(struct peer_node *n)
{
    struct node_status_sampler *s = calloc(1, sizeof *s);
    if (s)
        s->n = n;
    return s;
}

void node_status_sampler_free(struct node_status_sampler *s)
{
    if (!s)
        return;
    free(s->fetched);
    free(s->served);
    free(s->peers);
    free(s);
}

/* Rings for files added since the last sample. */
static int sample_grow_files(struct node_status_sampler *s, size_t count)
{
    if (count <= s->n_files)
        return 0;
    struct status_ring *f = realloc(s->fetched, count * sizeof *f);
    if (f)
        s->fetched = f;
    struct status_ring *v = f ? realloc(s->served, count * sizeof *v) : NULL;
    if (!v)
        return -1;
    s->served = v;
    for (size_t i = s->n_files; i < count; i++) {
        status_ring_start(&s->fetched[i], &s->clock);
        status_ring_start(&s->served[i], &s->clock);
    }
    s->n_files = count;
    return 0;
}

static void sample_files(struct node_status_sampler *s)
{
    struct peer_node *n = s->n;
    pthread_mutex_lock(&n->lock);
    size_t count = n->n_files < s->n_files ? n->n_files : s->n_files;
    for (size_t i = 0; i < count; i++) {
        const struct node_file *f = n->files[i];
        status_ring_put(&s->fetched[i], &s->clock,
                        atomic_load_explicit(&f->bytes_fetched, memory_order_relaxed));
        status_ring_put(&s->served[i], &s->clock,
                        atomic_load_explicit(&f->bytes_served, memory_order_relaxed));
    }
    pthread_mutex_unlock(&n->lock);
}

/* Keep the rings of peers still there (both lists sorted), start new ones. */
static int sample_peers(struct node_status_sampler *s, const struct raw_peer *raw, size_t count)
{
    struct sampled_peer *next = malloc((count ? count : 1) * sizeof *next);
    if (!next)
        return -1;
    size_t old = 0;
    for (size_t i = 0; i < count; i++) {
        while (old < s->n_peers && compare_peer(&s->peers[old].key, &raw[i]) < 0)
            old++;
        if (old < s->n_peers && compare_peer(&s->peers[old].key, &raw[i]) == 0) {
            next[i] = s->peers[old];
        } else {
            next[i].key = raw[i];
            status_ring_start(&next[i].ring, &s->clock);
        }
        status_ring_put(&next[i].ring, &s->clock, raw[i].bytes);
    }
    free(s->peers);
    s->peers = next;
    s->n_peers = count;
    return 0;
}

int node_status_sample(struct node_status_sampler *s, uint64_t now_ms)
{
    pthread_mutex_lock(&s->n->lock);
    size_t files = s->n->n_files;
    pthread_mutex_unlock(&s->n->lock);
    struct raw_peer *raw;
    size_t count;
    if (gather_peers(s->n, &raw, &count) < 0)
        return -1;
    status_clock_tick(&s->clock, now_ms);
    int rc = sample_grow_files(s, files);
    sample_files(s);
    if (sample_peers(s, raw, count) < 0)
        rc = -1;
    free(raw);
    return rc;
}

/* ---- the snapshot ---- */

static const struct sampled_peer *sampled(const struct node_status_sampler *s,
                                          const struct raw_peer *p)
{
    if (s->n_peers == 0)   /* s->peers may be NULL then, which bsearch may not get */
        return NULL;
    return bsearch(p, s->peers, s->n_peers, sizeof *s->peers, compare_peer);
}

static void take_file(const struct node_status_sampler *s, struct node_file *f, size_t i,
                      uint64_t now_ms, struct node_status_file *out)
{
    out->meta = node_file_meta(f);
    node_file_get_stats(f, &out->stats);
    if (i < s->n_files) {
        out->fetch_rate = status_ring_rate(&s->fetched[i], &s->clock, out->stats.bytes_fetched,
                                           now_ms);
        out->serve_rate = status_ring_rate(&s->served[i], &s->clock, out->stats.bytes_served,
                                           now_ms);
    }
    const struct cascade_meta *m = out->meta;
    uint64_t held_bytes = out->stats.blocks_held * m->block_size;
    uint64_t left = m->size > held_bytes ? m->size - held_bytes : 0;
    out->eta_s = left > 0 && out->fetch_rate > 0 ? (int64_t)((left + out->fetch_rate - 1) /
                                                             out->fetch_rate) : -1;
}

static int take_files(struct node_status_sampler *s, uint64_t now_ms, struct node_status *out)
{
    struct peer_node *n = s->n;
    pthread_mutex_lock(&n->lock);
    size_t count = n->n_files;
    struct node_file **files = malloc((count ? count : 1) * sizeof *files);
    if (files && count)
        memcpy(files, n->files, count * sizeof *files);   /* entries live until node_stop */
    pthread_mutex_unlock(&n->lock);
    out->files = calloc(count ? count : 1, sizeof *out->files);
    if (!files || !out->files) {
        free(files);
        return -1;
    }
    for (size_t i = 0; i < count; i++)
        take_file(s, files[i], i, now_ms, &out->files[i]);
    out->n_files = count;
    free(files);
    return 0;
}

static int take_peers(struct node_status_sampler *s, uint64_t now_ms, struct node_status *out)
{
    struct raw_peer *raw;
    size_t count;
    if (gather_peers(s->n, &raw, &count) < 0)
        return -1;
    size_t shown = count < NODE_STATUS_PEERS_MAX ? count : NODE_STATUS_PEERS_MAX;
    out->peers = calloc(shown ? shown : 1, sizeof *out->peers);
    if (!out->peers) {
        free(raw);
        return -1;
    }
    for (size_t i = 0; i < shown; i++) {
        const struct sampled_peer *sp = sampled(s, &raw[i]);
        out->peers[i] = (struct node_status_peer){
            .addr = raw[i].addr, .direction = raw[i].direction, .bytes = raw[i].bytes,
            .rate = sp ? status_ring_rate(&sp->ring, &s->clock, raw[i].bytes, now_ms) : 0,
        };
    }
    out->n_peers = shown;
    out->peers_omitted = count - shown;
    free(raw);
    return 0;
}

int node_status_take(struct node_status_sampler *s, uint64_t now_ms, struct node_status *out)
{
    struct peer_node *n = s->n;
    memset(out, 0, sizeof *out);
    out->taken_ms = now_ms;
    node_address(n, &out->server);
    if (take_files(s, now_ms, out) < 0 || take_peers(s, now_ms, out) < 0) {
        node_status_release(out);
        return -1;
    }
    struct node_stats ns;
    node_get_stats(n, &ns);
    out->cache_bytes = ns.cache_bytes;
    out->cache_max = ns.cache_max;
    out->bytes_evicted = ns.bytes_evicted;
    if (n->agent) {   /* set before the control thread started, cleared after it stopped */
        struct tracker_agent_status st[TRACKER_LIST_MAX];
        out->n_trackers = tracker_agent_get_status(n->agent, st, TRACKER_LIST_MAX);
        for (size_t t = 0; t < out->n_trackers; t++)
            out->trackers[t] = (struct node_status_tracker){n->cfg.trackers.addr[t], st[t]};
    }
    return 0;
}

void node_status_release(struct node_status *st)
{
    free(st->files);
    free(st->peers);
    st->files = NULL;
    st->peers = NULL;
    st->n_files = st->n_peers = 0;
}

/* ---- JSON ---- */

static void write_file(const struct node_status_file *f, struct json_writer *j)
{
    const struct cascade_meta *m = f->meta;
    char hex[CASCADE_HEX_LEN];
    cascade_hex(m->cascade_hash, CASCADE_HASH_LEN, hex);
    json_object_begin(j, NULL);
    json_string(j, "name", m->name);
    json_string(j, "cascade_hash", hex);
    json_u64(j, "size", m->size);
    json_u64(j, "block_size", m->block_size);
    json_u64(j, "blocks_total", m->block_count);
    json_u64(j, "blocks_held", f->stats.blocks_held);
    json_u64(j, "peers_known", f->stats.peers_known);
    json_u64(j, "peers_connected", f->stats.peers_connected);
    json_u64(j, "bytes_fetched", f->stats.bytes_fetched);
    json_u64(j, "bytes_served", f->stats.bytes_served);
    json_u64(j, "fetch_rate", f->fetch_rate);
    json_u64(j, "serve_rate", f->serve_rate);
    if (f->eta_s >= 0)
        json_u64(j, "eta_s", (uint64_t)f->eta_s);
    else
        json_null(j, "eta_s");
    json_string(j, "store_error", f->stats.store_errno ? strerror(f->stats.store_errno) : NULL);
    json_object_end(j);
}

static void write_peer(const struct node_status_peer *p, struct json_writer *j)
{
    char addr[SOCK_ADDRSTRLEN];
    sock_format_addr(&p->addr, addr, sizeof addr);
    bool down = p->direction == NODE_STATUS_DOWNLOAD;
    json_object_begin(j, NULL);
    json_string(j, "address", addr);
    json_string(j, "direction", down ? "download" : "upload");
    json_u64(j, "bytes_received", down ? p->bytes : 0);
    json_u64(j, "bytes_sent", down ? 0 : p->bytes);
    json_u64(j, "rate_received", down ? p->rate : 0);
    json_u64(j, "rate_sent", down ? 0 : p->rate);
    json_object_end(j);
}

static void write_tracker(const struct node_status_tracker *t, uint64_t now_ms,
                          struct json_writer *j)
{
    char addr[SOCK_ADDRSTRLEN];
    sock_format_addr(&t->addr, addr, sizeof addr);
    json_object_begin(j, NULL);
    json_string(j, "address", addr);
    if (t->st.answered_ms)
        json_u64(j, "last_answer_s",
                 now_ms > t->st.answered_ms ? (now_ms - t->st.answered_ms) / 1000 : 0);
    else
        json_null(j, "last_answer_s");
    json_u64(j, "failures", (uint64_t)t->st.failures);
    json_string(j, "error", t->st.failures > 0 ? t->st.error : NULL);
    json_object_end(j);
}

void node_status_write_json(const struct node_status *st, struct json_writer *j)
{
    char addr[SOCK_ADDRSTRLEN];
    sock_format_addr(&st->server, addr, sizeof addr);
    json_string(j, "server", st->server.sin_port ? addr : NULL);
    json_array_begin(j, "files");
    for (size_t i = 0; i < st->n_files; i++)
        write_file(&st->files[i], j);
    json_array_end(j);
    json_array_begin(j, "peers");
    for (size_t i = 0; i < st->n_peers; i++)
        write_peer(&st->peers[i], j);
    json_array_end(j);
    json_u64(j, "peers_omitted", st->peers_omitted);
    json_array_begin(j, "trackers");
    for (size_t i = 0; i < st->n_trackers; i++)
        write_tracker(&st->trackers[i], st->taken_ms, j);
    json_array_end(j);
    json_object_begin(j, "cache");
    json_u64(j, "bytes", st->cache_bytes);
    if (st->cache_max)
        json_u64(j, "max", st->cache_max);
    else
        json_null(j, "max");
    json_u64(j, "evicted", st->bytes_evicted);
    json_object_end(j);
}

/* ---- the control socket's answer ---- */

struct node_status_server {
    struct peer_node *n;
    struct node_status_sampler *sampler;
    struct control_server *ctl;
    char *program, *mountpoint;
    uint64_t started_ms;
};

static void serve_tick(void *ctx, uint64_t now_ms)
{
    struct node_status_server *s = ctx;
    node_status_sample(s->sampler, now_ms);
}

static void serve_answer(void *ctx, const char *query, const struct json_value *request,
                         struct json_writer *j)
{
    (void)request;
    struct node_status_server *s = ctx;
    uint64_t now = cascade_now_ms();
    struct node_status st;
    const char *error = strcmp(query, "status") != 0 ? "unknown query (known: status)"
                      : node_status_take(s->sampler, now, &st) < 0 ? "out of memory" : NULL;
    json_object_begin(j, NULL);
    if (error) {
        json_string(j, "error", error);
        json_object_end(j);
        return;
    }
    json_u64(j, "version", STATUS_VERSION);
    json_u64(j, "pid", (uint64_t)getpid());
    json_string(j, "program", s->program);
    json_string(j, "mountpoint", s->mountpoint);
    json_u64(j, "uptime_s", (now - s->started_ms) / 1000);
    node_status_write_json(&st, j);
    json_object_end(j);
    node_status_release(&st);
}

int node_status_serve(struct peer_node *n, const struct node_status_info *info,
                      struct node_status_server **out, char *err, size_t errlen)
{
    *out = NULL;
    struct node_status_server *s = calloc(1, sizeof *s);
    if (!s || !(s->sampler = node_status_sampler_new(n)) ||
        !(s->program = strdup(info->program ? info->program : "cascade")) ||
        (info->mountpoint && !(s->mountpoint = strdup(info->mountpoint)))) {
        cascade_errf(err, errlen, "out of memory");
        node_status_stop(s);
        return -1;
    }
    s->n = n;
    s->started_ms = cascade_now_ms();
    struct control_config cc = {
        .cache_root = info->cache_root, .answer = serve_answer, .tick = serve_tick, .ctx = s,
    };
    if (control_server_start(&cc, &s->ctl, err, errlen) < 0) {
        node_status_stop(s);
        return -1;
    }
    *out = s;
    return 0;
}

const char *node_status_socket(const struct node_status_server *s)
{
    return control_server_path(s->ctl);
}

void node_status_stop(struct node_status_server *s)
{
    if (!s)
        return;
    control_server_stop(s->ctl);
    node_status_sampler_free(s->sampler);
    free(s->program);
    free(s->mountpoint);
    free(s);
}
