/* One file of a peer node (see node.h): its store, opened on demand and
 * kept open by pins; what is wanted of it; the waits of its readers.
 *
 * A pin is taken by each user: an open FUSE handle, get or seed for their
 * run, the block server while it answers from the file, and the fetch side
 * while anything of the file is wanted or asked for (the "fetch pin").
 * Without pins the store closes once idle (node_house.c), its held count
 * kept as a hint for stat and for deciding to announce.
 *
 * What is held is asked of the store every time: the fetch side keeps only
 * what is wanted (a priority per block, cleared when the block lands), so
 * a block the store forgets (a failed fdatasync) is simply wanted again by
 * the next reader. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cascade/bitmap.h"
#include "cascade/log.h"
#include "cascade/util.h"
#include "net/node_internal.h"

/* Wants of more blocks than this read the store's held map once. */
#define WANT_MAP_THRESHOLD 64

/* ---- the entry ---- */

struct node_file *node_file_new(struct peer_node *n, const struct cascade_meta *meta,
                                const struct node_file_options *opts, char *err, size_t errlen)
{
    struct node_file *f = calloc(1, sizeof *f);
    if (!f || (opts->data_path && !(f->data_path = strdup(opts->data_path)))) {
        free(f);
        cascade_errf(err, errlen, "out of memory");
        return NULL;
    }
    f->node = n;
    f->meta = meta;
    char hex[CASCADE_HEX_LEN];
    cascade_hex(meta->cascade_hash, CASCADE_HASH_LEN, hex);
    snprintf(f->hash_label, sizeof f->hash_label, "%.16s", hex);
    f->name = meta->name && meta->name[0] ? meta->name : f->hash_label;
    f->read_only = opts->read_only;
    f->adopt = opts->adopt;
    f->cache_owned = !opts->data_path && !opts->read_only;
    if (pthread_mutex_init(&f->store_lock, NULL) != 0 ||
        pthread_cond_init(&f->store_changed, NULL) != 0 ||
        cascade_cond_init_monotonic(&f->landed) != 0) {
        cascade_errf(err, errlen, "cannot set up the locks of a file");
        free(f->data_path);
        free(f);
        return NULL;
    }
    atomic_init(&f->bytes_served, 0);
    atomic_init(&f->bytes_fetched, 0);
    atomic_init(&f->blocks_fetched, 0);
    atomic_init(&f->bad_blocks, 0);
    atomic_init(&f->bytes_wasted, 0);
    first_copy_init(&f->first_copy, meta->block_count);
    /* The cache's own record tells what it holds; a user's data file is
     * checked when it opens. */
    if (!f->data_path)
        f->held_hint = cascade_store_peek(meta, n->cfg.cache_root, NULL);
    return f;
}

void node_file_free(struct node_file *f)
{
    if (!f)
        return;
    free(f->fetch.prio);
    free(f->fetch.inflight);
    free(f->fetch.lacked_by);
    free(f->checked);
    first_copy_free(&f->first_copy);
    pthread_mutex_destroy(&f->store_lock);
    pthread_cond_destroy(&f->store_changed);
    pthread_cond_destroy(&f->landed);
    free(f->data_path);
    free(f);
}

const struct cascade_meta *node_file_meta(const struct node_file *f)
{
    return f->meta;
}

/* ---- the store: open on demand, pinned, closed when idle ---- */

/* Under store_lock. */
static int file_open_store(struct node_file *f, char *err, size_t errlen)
{
    if (!f->checked && !(f->checked = calloc(bitmap_bytes(f->meta->block_count) + 1, 1))) {
        cascade_errf(err, errlen, "%s: out of memory", f->name);
        return -1;
    }
    struct cascade_store_options so = {
        .checked = f->checked,
        .cache_root = f->node->cfg.cache_root,
        .data_path = f->data_path,
        .read_only = f->read_only,
        .verify = f->node->cfg.verify,
    };
    char why[CASCADE_ERRLEN];
    struct cascade_store *st;
    if (cascade_store_open(f->meta, &so, &st, why, sizeof why) != 0) {
        cascade_errf(err, errlen, "%s: cannot open its block cache: %s", f->name, why);
        return -1;
    }
    if (f->adopt && !f->adopted && !cascade_store_complete(st)) {
        /* Verified once: only blocks that match their hash count. */
        int64_t marked = cascade_store_adopt(st, NULL);
        if (marked < 0) {
            cascade_errf(err, errlen, "%s: cannot read %s", f->name,
                         cascade_store_data_path(st));
            cascade_store_close(st);
            return -1;
        }
        log_info("%s: %lld blocks of %s verified and adopted", f->name,
                 (long long)marked, cascade_store_data_path(st));
    }
    f->adopted = true;
    f->store = st;
    atomic_fetch_add(&f->node->stores_open, 1);
    node_cache_note_open(f, st);
    log_debug("%s: store open, %llu of %llu blocks held (%s)", f->name,
              (unsigned long long)cascade_store_held_count(st),
              (unsigned long long)f->meta->block_count, cascade_store_dir(st));
    return 0;
}

/* Take f's store lock once no close is under way (a store being closed
 * must not be read: its locks are being destroyed). */
static void lock_settled(struct node_file *f)
{
    pthread_mutex_lock(&f->store_lock);
    while (f->closing)
        pthread_cond_wait(&f->store_changed, &f->store_lock);
}

/* Pin f, opening its store first when it is closed and either
 * open_if_empty or it holds blocks. 0 with *st (NULL only for a closed,
 * empty store when !open_if_empty), or -1 with a message and no pin. */
static int file_pin(struct node_file *f, bool open_if_empty, struct cascade_store **st,
                    char *err, size_t errlen)
{
    /* Make room first (before taking this file's lock: trimming takes others'). */
    if (atomic_load(&f->node->stores_open) >= f->node->max_idle_stores)
        node_trim_stores(f->node);
    lock_settled(f);
    if (!f->store && (open_if_empty || f->held_hint > 0) &&
        file_open_store(f, err, errlen) != 0) {
        pthread_mutex_unlock(&f->store_lock);
        return -1;
    }
    f->pins++;
    *st = f->store;
    pthread_mutex_unlock(&f->store_lock);
    return 0;
}

struct cascade_store *node_file_pin(struct node_file *f, char *err, size_t errlen)
{
    struct cascade_store *st;
    return file_pin(f, true, &st, err, errlen) == 0 ? st : NULL;
}

/* Another pin on a store its caller already keeps open: no I/O, no trim,
 * so it may be taken under the node's lock. NULL when it is not open. */
static struct cascade_store *file_pin_open(struct node_file *f)
{
    pthread_mutex_lock(&f->store_lock);
    struct cascade_store *st = f->closing ? NULL : f->store;
    if (st)
        f->pins++;
    pthread_mutex_unlock(&f->store_lock);
    return st;
}

struct cascade_store *node_file_pin_to_serve(struct node_file *f)
{
    struct cascade_store *st = NULL;
    char err[CASCADE_ERRLEN];
    if (file_pin(f, false, &st, err, sizeof err) == 0)
        return st;
    /* Pinned all the same (release unpins); said once, not per request. */
    pthread_mutex_lock(&f->store_lock);
    f->pins++;
    bool say = !f->serve_error_logged;
    f->serve_error_logged = true;
    pthread_mutex_unlock(&f->store_lock);
    if (say)
        log_warn("%s: cannot serve it: %s", f->name, err);
    return NULL;
}

void node_file_unpin(struct node_file *f)
{
    pthread_mutex_lock(&f->store_lock);
    if (f->pins > 0 && --f->pins == 0)
        f->unused_since_ms = cascade_now_ms();
    pthread_mutex_unlock(&f->store_lock);
}

bool node_file_close_if_idle(struct node_file *f, uint64_t idle_before_ms)
{
    pthread_mutex_lock(&f->store_lock);
    if (!f->store || f->pins > 0 || f->closing || f->flushing ||
        f->unused_since_ms >= idle_before_ms) {
        pthread_mutex_unlock(&f->store_lock);
        return false;
    }
    struct cascade_store *st = f->store;
    f->closing = true;
    pthread_mutex_unlock(&f->store_lock);

    uint64_t held = cascade_store_held_count(st);
    uint64_t held_bytes = cascade_store_used_bytes(st), oldest = cascade_store_oldest_use(st);
    bool flushed = cascade_store_flush(st) == CASCADE_STORE_OK;
    cascade_store_close(st);   /* the marks are durable (unless flushed is false) */
    node_cache_note_closed(f, held_bytes, oldest);

    pthread_mutex_lock(&f->store_lock);
    f->store = NULL;
    atomic_fetch_sub(&f->node->stores_open, 1);
    f->held_hint = held;
    f->close_failed = !flushed;
    f->closing = false;
    pthread_cond_broadcast(&f->store_changed);
    pthread_mutex_unlock(&f->store_lock);
    log_debug("%s: store closed (idle)", f->name);
    return true;
}

void node_trim_stores(struct peer_node *n)
{
    while (atomic_load(&n->stores_open) >= n->max_idle_stores) {
        /* The idle store unused the longest. */
        struct node_file *oldest = NULL;
        uint64_t oldest_ms = UINT64_MAX;
        size_t count = node_file_count(n);
        for (size_t i = 0; i < count; i++) {
            struct node_file *f = node_file_at(n, i);
            pthread_mutex_lock(&f->store_lock);
            if (f->store && f->pins == 0 && !f->closing && !f->flushing &&
                f->unused_since_ms < oldest_ms) {
                oldest = f;
                oldest_ms = f->unused_since_ms;
            }
            pthread_mutex_unlock(&f->store_lock);
        }
        if (!oldest || !node_file_close_if_idle(oldest, oldest_ms + 1))
            return;   /* every open store is in use (or just got used): leave them */
    }
}

/* The store of a file its caller has pinned. */
static struct cascade_store *file_store(struct node_file *f)
{
    pthread_mutex_lock(&f->store_lock);
    struct cascade_store *st = f->store;
    pthread_mutex_unlock(&f->store_lock);
    return st;
}

uint64_t node_file_held_count(struct node_file *f)
{
    lock_settled(f);
    uint64_t held = f->store ? cascade_store_held_count(f->store) : f->held_hint;
    pthread_mutex_unlock(&f->store_lock);
    return held;
}

void node_file_held_map(struct node_file *f, uint8_t *bits)
{
    lock_settled(f);
    if (f->store)
        cascade_store_held_map(f->store, bits);
    else if (f->held_hint > 0 && !f->data_path)
        cascade_store_peek(f->meta, f->node->cfg.cache_root, bits);
    else
        memset(bits, 0, bitmap_bytes(f->meta->block_count));
    pthread_mutex_unlock(&f->store_lock);
}

uint64_t node_file_first_missing(struct node_file *f)
{
    const struct cascade_meta *m = f->meta;
    struct cascade_store *st = file_store(f);
    uint64_t i = 0;
    while (st && i < m->block_count && cascade_store_has(st, i))
        i++;
    return st ? i : 0;
}

/* ---- what is wanted (under the node's lock) ---- */

static int fetch_file_alloc(struct node_file *f)
{
    struct fetch_file *ff = &f->fetch;
    if (ff->prio)
        return 0;
    uint64_t count = f->meta->block_count;
    ff->prio = calloc(count ? count : 1, 1);
    ff->inflight = calloc(count ? count : 1, 1);
    ff->lacked_by = calloc(count ? count : 1, 1);
    if (!ff->prio || !ff->inflight || !ff->lacked_by) {
        free(ff->prio);
        free(ff->inflight);
        free(ff->lacked_by);
        ff->prio = ff->inflight = ff->lacked_by = NULL;
        return -1;
    }
    return 0;
}

void fetch_file_settle(struct node_file *f)
{
    struct fetch_file *ff = &f->fetch;
    if (!ff->store || ff->wanted_missing > 0 || ff->requests > 0)
        return;
    ff->store = NULL;
    node_file_unpin(f);
    if (f->filling) {   /* done (or nothing was missing): let the next fill start */
        f->filling = false;
        f->node->filling--;
        node_house_kick(f->node);
    }
}

void fetch_block_release(struct node_file *f, uint64_t idx)
{
    struct fetch_file *ff = &f->fetch;
    if (ff->inflight[idx] > 0) {
        ff->inflight[idx]--;
        ff->requests--;
    }
    int p = ff->prio[idx];
    if (ff->inflight[idx] == 0 && p != NODE_WANT_NONE && idx < ff->cursor[p])
        ff->cursor[p] = idx;
}

void fetch_block_landed(struct node_file *f, uint64_t idx, size_t len)
{
    struct fetch_file *ff = &f->fetch;
    if (ff->prio[idx] != NODE_WANT_NONE) {
        ff->wanted_urgent -= ff->prio[idx] == NODE_WANT_URGENT;
        ff->prio[idx] = NODE_WANT_NONE;
        ff->wanted_missing--;
    }
    atomic_fetch_add_explicit(&f->bytes_fetched, len, memory_order_relaxed);
    atomic_fetch_add_explicit(&f->blocks_fetched, 1, memory_order_relaxed);
    ff->last_progress_ms = cascade_now_ms();
    if (ff->store_errno) {
        log_info("%s: storing fetched blocks works again", f->name);
        ff->store_errno = 0;
        ff->store_failures = 0;
    }
    pthread_cond_broadcast(&f->landed);
}

void fetch_store_failed(struct node_file *f, int err)
{
    struct fetch_file *ff = &f->fetch;
    if (err == 0)
        err = EIO;
    if (!ff->store_errno)
        log_error("%s: cannot store fetched blocks: %s%s; fetching pauses and retries with "
                  "a growing gap", f->name, strerror(err),
                  err == ENOSPC ? " (the cache filesystem is full: free some space)" : "");
    uint64_t now = cascade_now_ms();
    ff->store_errno = err;
    ff->store_fail_count++;
    /* Blocks that were on their way when the episode began fail too: only
     * the first failure, and then each failed probe, widens the gap. */
    if (ff->store_failures == 0 || now >= ff->store_retry_ms) {
        if (ff->store_failures < 16)
            ff->store_failures++;
        uint64_t gap = (uint64_t)NODE_STORE_RETRY_MIN_MS << (ff->store_failures - 1);
        ff->store_retry_ms = now + (gap < NODE_STORE_RETRY_MAX_MS ? gap : NODE_STORE_RETRY_MAX_MS);
    }
    pthread_cond_broadcast(&f->landed);   /* waiting readers learn the cause now */
}

bool fetch_file_active(const struct node_file *f, uint64_t now)
{
    const struct fetch_file *ff = &f->fetch;
    if (ff->wanted_missing == 0 || !ff->store)
        return false;
    if (ff->store_errno == 0)
        return true;
    /* While storing fails, one block at a time probes whether it works
     * again: for a waiting reader at once, else after a growing gap. */
    return ff->requests == 0 && (ff->wanted_urgent > 0 || now >= ff->store_retry_ms);
}

/* Join the swarm for fetching: list the file, and announce it when serving. */
static void fetch_file_join(struct peer_node *n, struct node_file *f)
{
    struct fetch_file *ff = &f->fetch;
    if (ff->listed)
        return;
    ff->listed = true;
    fetch_peers_add_static(n, f);
    if (n->agent) {
        bool subscribe = n->cfg.serve;
        f->announced |= subscribe;
        tracker_agent_track(n->agent, f->index, f->meta->cascade_hash, subscribe, true);
    }
}

/* Raise blocks [first, end) to prio, skipping held ones. Under lock, with
 * the fetch pin held. True when anything changed. */
static bool fetch_raise(struct node_file *f, uint64_t first, uint64_t end, int prio)
{
    struct fetch_file *ff = &f->fetch;
    uint8_t *held = NULL;
    if (end - first > WANT_MAP_THRESHOLD) {
        held = malloc(bitmap_bytes(f->meta->block_count) + 1);
        if (held)
            cascade_store_held_map(ff->store, held);
    }
    bool changed = false;
    for (uint64_t i = first; i < end; i++) {
        if (ff->prio[i] >= prio)
            continue;
        if (held ? bitmap_get(held, i) : cascade_store_has(ff->store, i))
            continue;
        if (ff->prio[i] == NODE_WANT_NONE)
            ff->wanted_missing++;
        ff->wanted_urgent += prio == NODE_WANT_URGENT;
        ff->prio[i] = (uint8_t)prio;
        if (i < ff->cursor[prio])
            ff->cursor[prio] = i;
        if (i < ff->low_wanted)
            ff->low_wanted = i;
        changed = true;
    }
    free(held);
    return changed;
}

void node_file_want(struct node_file *f, uint64_t first, uint64_t count, enum node_priority prio)
{
    struct peer_node *n = f->node;
    uint64_t blocks = f->meta->block_count;
    if (prio <= NODE_WANT_NONE || prio > NODE_WANT_URGENT || first >= blocks || count == 0)
        return;
    uint64_t end = count > blocks - first ? blocks : first + count;
    bool changed = false;
    pthread_mutex_lock(&n->lock);
    if (n->stopping || fetch_file_alloc(f) != 0) {
        if (!n->stopping)
            log_error("%s: out of memory for the wants of %llu blocks", f->name,
                      (unsigned long long)blocks);
        pthread_mutex_unlock(&n->lock);
        return;
    }
    struct fetch_file *ff = &f->fetch;
    if (!ff->store) {
        /* The caller has the file open: this pin opens nothing. */
        ff->store = file_pin_open(f);
        if (!ff->store) {
            log_error("%s: wanted while not open", f->name);
            pthread_mutex_unlock(&n->lock);
            return;
        }
        if (ff->wanted_missing == 0)
            ff->low_wanted = first;
        ff->last_progress_ms = cascade_now_ms();   /* the stall clock starts now */
    }
    fetch_file_join(n, f);
    changed = fetch_raise(f, first, end, prio);
    fetch_file_settle(f);
    pthread_mutex_unlock(&n->lock);
    if (changed)
        node_wake_loop(n);
}

void node_file_want_all(struct node_file *f)
{
    node_file_want(f, 0, f->meta->block_count, NODE_WANT_BACKGROUND);
}

void node_file_fill(struct node_file *f)
{
    struct peer_node *n = f->node;
    pthread_mutex_lock(&n->lock);
    if (!f->fill_queued && !f->filling && !n->stopping) {
        f->fill_queued = true;
        f->fill_next = NULL;
        if (n->fill_tail)
            n->fill_tail->fill_next = f;
        else
            n->fill_head = f;
        n->fill_tail = f;
        node_house_kick(n);
    }
    pthread_mutex_unlock(&n->lock);
}

/* The next file to fill, counted as filling; NULL when none may start. */
static struct node_file *fill_next(struct peer_node *n)
{
    pthread_mutex_lock(&n->lock);
    struct node_file *f = NULL;
    if (n->filling < NODE_FILLS_AT_ONCE && n->fill_head && !n->stopping) {
        f = n->fill_head;
        n->fill_head = f->fill_next;
        if (!n->fill_head)
            n->fill_tail = NULL;
        f->fill_queued = false;
        f->filling = true;
        n->filling++;
    }
    pthread_mutex_unlock(&n->lock);
    return f;
}

void node_start_fills(struct peer_node *n)
{
    struct node_file *f;
    while ((f = fill_next(n)) != NULL) {
        char err[CASCADE_ERRLEN];
        struct cascade_store *st = node_file_pin(f, err, sizeof err);
        if (st)
            node_file_want_all(f);   /* takes the fetch pin if anything is missing */
        else
            log_error("%s: cannot fill it: %s", f->name, err);
        pthread_mutex_lock(&n->lock);
        if (!f->fetch.store && f->filling) {   /* nothing to fetch: its turn ends */
            f->filling = false;
            n->filling--;
        }
        pthread_mutex_unlock(&n->lock);
        if (st)
            node_file_unpin(f);
    }
}

/* ---- waiting ---- */

static void byte_range_blocks(const struct cascade_meta *m, uint64_t off, uint64_t len,
                              uint64_t *first, uint64_t *count)
{
    *first = off / m->block_size;
    *count = (off + len - 1) / m->block_size - *first + 1;
}

/* Whether a block of [first, first + count) is neither held nor wanted
 * (under the node's lock). */
static bool range_lost(struct node_file *f, struct cascade_store *st, uint64_t first,
                       uint64_t count)
{
    const uint8_t *prio = f->fetch.prio;
    for (uint64_t i = first; prio && i < first + count && i < f->meta->block_count; i++)
        if (prio[i] == NODE_WANT_NONE && !cascade_store_has(st, i))
            return true;
    return false;
}

int node_file_fetch_range(struct node_file *f, uint64_t off, uint64_t len,
                          uint64_t ra_off, uint64_t ra_len, uint64_t deadline_ms)
{
    struct peer_node *n = f->node;
    const struct cascade_meta *m = f->meta;
    struct cascade_store *st = file_store(f);
    if (!st)
        return -EIO;
    bool held = len == 0 || cascade_store_has_range(st, off, len) == CASCADE_STORE_OK;
    pthread_mutex_lock(&n->lock);
    uint64_t fails = f->fetch.store_fail_count;   /* failures from now on are news */
    pthread_mutex_unlock(&n->lock);
    uint64_t first, count, read_first = 0, read_count = 0;
    if (!held) {
        byte_range_blocks(m, off, len, &read_first, &read_count);
        node_file_want(f, read_first, read_count, NODE_WANT_URGENT);
    }
    /* Read-ahead never crowds out what is being read under a cache limit. */
    if (f->cache_owned && n->cfg.cache_max > 0 && ra_len > n->cfg.cache_max / 4)
        ra_len = n->cfg.cache_max / 4;
    if (ra_len > 0 && ra_off < m->size) {
        if (ra_len > m->size - ra_off)
            ra_len = m->size - ra_off;
        byte_range_blocks(m, ra_off, ra_len, &first, &count);
        node_file_want(f, first, count, NODE_WANT_PREFETCH);
    }
    if (held)
        return 0;
    int rc;
    pthread_mutex_lock(&n->lock);
    for (;;) {
        int has = cascade_store_has_range(st, off, len);
        if (has != CASCADE_STORE_MISSING) {
            rc = has == CASCADE_STORE_OK ? 0 : -ERANGE;
            break;
        }
        if (n->stopping || n->interrupted) {
            rc = -ECANCELED;
            break;
        }
        /* Storing failed again while we waited (our block's probe, most
         * likely): the reader hears the true cause now. */
        if (f->fetch.store_errno && f->fetch.store_fail_count != fails) {
            rc = -f->fetch.store_errno;
            break;
        }
        if (cascade_now_ms() >= deadline_ms) {
            rc = -ETIMEDOUT;
            break;
        }
        /* A block that landed and was evicted before we read it (the
         * cache limit made room) is wanted no more: want it again, or we
         * would wait for nothing. */
        if (range_lost(f, st, read_first, read_count)) {
            pthread_mutex_unlock(&n->lock);
            node_file_want(f, read_first, read_count, NODE_WANT_URGENT);
            pthread_mutex_lock(&n->lock);
            continue;
        }
        struct timespec ts;
        cascade_timespec_at(deadline_ms, &ts);
        pthread_cond_timedwait(&f->landed, &n->lock, &ts);
    }
    pthread_mutex_unlock(&n->lock);
    return rc;
}

int node_file_wait_complete(struct node_file *f, uint64_t deadline_ms, uint64_t stall_ms)
{
    struct peer_node *n = f->node;
    struct cascade_store *st = file_store(f);
    if (!st)
        return -EIO;
    uint64_t start = cascade_now_ms();
    int rc;
    pthread_mutex_lock(&n->lock);
    for (;;) {
        uint64_t now = cascade_now_ms();
        struct fetch_file *ff = &f->fetch;
        /* Complete, and every block's worker is done (its counts are in). */
        if (cascade_store_complete(st) && ff->requests == 0) {
            rc = 0;
            break;
        }
        if (n->stopping || n->interrupted) {
            rc = -ECANCELED;
            break;
        }
        if (ff->store_errno) {
            rc = -ff->store_errno;
            break;
        }
        if (f->fill_capped && ff->wanted_missing == 0 && ff->requests == 0) {
            rc = -EFBIG;   /* the cache limit stopped the fill */
            break;
        }
        /* Since the last block (or bytes) arrived, or wanting began. */
        uint64_t useful = ff->last_progress_ms ? ff->last_progress_ms : start;
        if (ff->wanted_missing > 0 && now - useful >= stall_ms) {
            rc = -EHOSTUNREACH;
            break;
        }
        if (now >= deadline_ms) {
            rc = -ETIMEDOUT;
            break;
        }
        uint64_t wake = now + 250;   /* re-check the stall clock */
        struct timespec ts;
        cascade_timespec_at(wake < deadline_ms ? wake : deadline_ms, &ts);
        pthread_cond_timedwait(&f->landed, &n->lock, &ts);
    }
    pthread_mutex_unlock(&n->lock);
    return rc;
}

/* ---- opening and closing for a user ---- */

struct cascade_store *node_file_open(struct node_file *f, char *err, size_t errlen)
{
    struct peer_node *n = f->node;
    struct cascade_store *st = node_file_pin(f, err, errlen);
    if (!st)
        return NULL;
    pthread_mutex_lock(&n->lock);
    if (n->agent && n->cfg.serve && !f->announced) {
        f->announced = true;
        tracker_agent_track(n->agent, f->index, f->meta->cascade_hash, true, false);
    }
    pthread_mutex_unlock(&n->lock);
    return st;
}

void node_file_close(struct node_file *f)
{
    node_file_unpin(f);
}

void node_file_get_stats(struct node_file *f, struct node_file_stats *out)
{
    struct peer_node *n = f->node;
    memset(out, 0, sizeof *out);
    out->blocks_held = node_file_held_count(f);
    out->bytes_fetched = atomic_load_explicit(&f->bytes_fetched, memory_order_relaxed);
    out->blocks_fetched = atomic_load_explicit(&f->blocks_fetched, memory_order_relaxed);
    out->bytes_served = atomic_load_explicit(&f->bytes_served, memory_order_relaxed);
    out->bad_blocks = atomic_load_explicit(&f->bad_blocks, memory_order_relaxed);
    out->bytes_wasted = atomic_load_explicit(&f->bytes_wasted, memory_order_relaxed);
    pthread_mutex_lock(&n->lock);
    for (size_t i = 0; i < n->n_peers; i++) {
        struct fetch_peer *p = n->peers[i];
        if (!fetch_peer_counts(p) || !fetch_peer_file(p, f->index))
            continue;
        out->peers_known++;
        out->peers_connected += p->open;
    }
    out->peers_dropped = n->peers_dropped;
    out->store_errno = f->fetch.store_errno;
    pthread_mutex_unlock(&n->lock);
}
