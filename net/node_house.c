/* The node's housekeeper: one thread for every file of the process, so a
 * thousand files never mean a thousand flusher threads. Every
 * HOUSE_TICK_MS (sooner when a worker says much is pending) it
 *   - makes the held marks of each open store durable when they are due
 *     (cascade_store_flush_due: by count, bytes or age);
 *   - closes the stores nobody has used for store_idle_ms (their
 *     descriptors come back; the block server reopens one on demand; and
 *     beyond max_idle_stores open, the least recently used close at once);
 *   - starts the fills waiting their turn (node_file_fill);
 *   - frees the kept block buffers once nothing has been fetched for a
 *     while, so an idle node gives its memory back.
 *   - every HOUSE_CHECK_FILES_MS, checks that each open store's files are
 *     still there (a cache folder deleted under a running mount is
 *     recreated and said loudly, never written into while deleted);
 *   - keeps the cache within its limit (node_cache.c) when it is over it
 *     for a reason no put saw (a store that reopened holding more).
 * A store being flushed is marked so, and nobody closes it meanwhile (a
 * thread opening a store may close other idle ones: node_trim_stores). */
#include <stdlib.h>
#include <string.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "net/node_internal.h"

#define HOUSE_TICK_MS 250
#define HOUSE_DEFAULT_IDLE_MS 30000
#define HOUSE_BUFFER_IDLE_MS 2000
#define HOUSE_CHECK_FILES_MS 2000

void node_house_kick(struct peer_node *n)
{
    if (!n->house_kick) {
        n->house_kick = true;
        pthread_cond_signal(&n->house_wake);
    }
}

/* A store whose files were deleted under it recreates them. */
static void house_check_files(struct node_file *f, struct cascade_store *st)
{
    char err[CASCADE_ERRLEN];
    int rc = cascade_store_check_files(st, err, sizeof err);
    if (rc < 0)
        log_error("%s: %s", f->name, err);
    if (rc != 0)
        node_cache_note_open(f, st);
}

/* Flush f's store when due; close it when idle. Not under the node's lock. */
static void house_visit(struct peer_node *n, struct node_file *f, uint64_t now,
                        uint64_t idle_before, bool check_files)
{
    pthread_mutex_lock(&f->store_lock);
    struct cascade_store *st = f->closing ? NULL : f->store;
    f->flushing = st != NULL;   /* nobody closes it under our flush */
    pthread_mutex_unlock(&f->store_lock);
    if (st && check_files)
        house_check_files(f, st);
    if (st && cascade_store_flush_due(st, now) && cascade_store_flush(st) != CASCADE_STORE_OK) {
        /* The store forgot what was not durable: readers want it again. */
        log_warn("%s: held marks could not be made durable; unsynced blocks will be "
                 "fetched again", f->name);
    }
    if (st)
        node_cache_note_open(f, st);   /* what the store dropped or recovered */
    pthread_mutex_lock(&f->store_lock);
    f->flushing = false;
    pthread_mutex_unlock(&f->store_lock);
    (void)n;
    node_file_close_if_idle(f, idle_before);
}

static void house_pass(struct peer_node *n)
{
    uint64_t now = cascade_now_ms();
    uint64_t idle_ms = n->cfg.store_idle_ms > 0 ? (uint64_t)n->cfg.store_idle_ms
                                                : HOUSE_DEFAULT_IDLE_MS;
    uint64_t idle_before = now > idle_ms ? now - idle_ms : 0;
    bool check_files = now - n->files_checked_ms >= HOUSE_CHECK_FILES_MS;
    if (check_files)
        n->files_checked_ms = now;
    size_t count = node_file_count(n);
    for (size_t i = 0; i < count; i++) {
        struct node_file *f = node_file_at(n, i);
        house_visit(n, f, now, idle_before, check_files);
    }
    node_cache_house(n);
    node_trim_stores(n);
    node_start_fills(n);
    pthread_mutex_lock(&n->lock);
    if (n->buf_out == 0 && n->buf_pooled > 0 && now - n->buf_idle_since_ms >= HOUSE_BUFFER_IDLE_MS)
        node_buffer_trim(n);
    pthread_mutex_unlock(&n->lock);
}

static void *house_main(void *arg)
{
    struct peer_node *n = arg;
    pthread_setname_np(pthread_self(), "cascade-house");
    pthread_mutex_lock(&n->lock);
    while (!n->house_stop) {
        if (!n->house_kick) {
            struct timespec ts;
            cascade_timespec_at(cascade_now_ms() + HOUSE_TICK_MS, &ts);
            pthread_cond_timedwait(&n->house_wake, &n->lock, &ts);
        }
        n->house_kick = false;
        if (n->house_stop)
            break;
        pthread_mutex_unlock(&n->lock);
        house_pass(n);
        pthread_mutex_lock(&n->lock);
    }
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

int node_house_start(struct peer_node *n, char *err, size_t errlen)
{
    int rc = pthread_create(&n->house_thread, NULL, house_main, n);
    if (rc != 0) {
        cascade_errf(err, errlen, "cannot start the housekeeper: %s", strerror(rc));
        return -1;
    }
    n->house_started = true;
    return 0;
}

void node_house_stop(struct peer_node *n)
{
    if (!n->house_started)
        return;
    pthread_mutex_lock(&n->lock);
    n->house_stop = true;
    pthread_cond_signal(&n->house_wake);
    pthread_mutex_unlock(&n->lock);
    pthread_join(n->house_thread, NULL);
    n->house_started = false;
}
