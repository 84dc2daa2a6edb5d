/* Which block to ask a peer for next (under the node's lock).
 *
 * Among the files a tracker listed the peer for (and that it has not
 * refused), in turns so no file starves the others:
 *   1. a block stuck on a slow peer (a duplicate request elsewhere: the
 *      head of a connection after the request timeout, urgent blocks after
 *      NODE_URGENT_STUCK_MS);
 *   2. the highest priority wanted block that is not in flight (urgent
 *      before read-ahead before background, across files). Urgent and
 *      read-ahead blocks go lowest index first (a reader waits for them in
 *      order; a cursor per file and priority skips what is done or out).
 *      Background blocks (fill, get, seed) are chosen so that peers hold
 *      different blocks early: from a peer that mostly has what it is
 *      asked (a seeder), the rarest we know of (the block most peers lately
 *      said they lack); from the others, the likeliest to be there; ties
 *      broken from a random start, so that fifteen peers starting together
 *      ask a seeder for fifteen different blocks and soon have something
 *      to give each other (a node that serves nothing takes them in order);
 *   3. in the endgame (few blocks missing, all asked for) a second request,
 *      to a peer otherwise idle, for one still on the wire elsewhere that
 *      it would likely bring sooner (from its rate, and the other's rate
 *      and queue), so a slow peer (a busy seeder) cannot hold the last
 *      ones.
 * A peer that said it lacks a block is not asked for it again for a
 * couple of seconds (NODE_LACKS_FORGET_MS). */
#include <stdint.h>

#include "net/node_internal.h"

void fetch_mark_stale(struct node_file *f, uint64_t idx)
{
    struct fetch_file *ff = &f->fetch;
    if (ff->inflight[idx] >= 2 || ff->prio[idx] == NODE_WANT_NONE || ff->n_stale >= NODE_STALE_MAX)
        return;
    for (size_t k = 0; k < ff->n_stale; k++)
        if (ff->stale[k] == idx)
            return;
    ff->stale[ff->n_stale++] = idx;
}

/* A stuck block of f that p may ask for too. */
static bool pick_stale(struct fetch_peer *p, struct peer_file *pf, struct node_file *f,
                       uint64_t now, int min_prio, uint64_t *out)
{
    struct fetch_file *ff = &f->fetch;
    for (size_t i = 0; i < ff->n_stale; i++) {
        uint64_t idx = ff->stale[i];
        if (ff->prio[idx] == NODE_WANT_NONE) {   /* landed meanwhile */
            ff->stale[i--] = ff->stale[--ff->n_stale];
            continue;
        }
        if (ff->prio[idx] < min_prio || peer_conn_has_request(&p->conn, f->index, idx) ||
            peer_file_lacks(f, pf, idx, now))
            continue;
        ff->stale[i] = ff->stale[--ff->n_stale];
        *out = idx;
        return true;
    }
    return false;
}

static bool block_skippable(const struct fetch_file *ff, uint64_t idx, int prio)
{
    return ff->prio[idx] != prio || ff->inflight[idx];
}

/* The lowest wanted block of f at exactly prio that p may be asked for. */
static bool pick_in_order(struct peer_file *pf, struct node_file *f, uint64_t now, int prio,
                          uint64_t *out)
{
    struct fetch_file *ff = &f->fetch;
    uint64_t count = f->meta->block_count;
    while (ff->cursor[prio] < count && block_skippable(ff, ff->cursor[prio], prio))
        ff->cursor[prio]++;
    uint64_t scanned = 0;
    for (uint64_t idx = ff->cursor[prio]; idx < count && scanned < NODE_SCAN_LIMIT;
         idx++, scanned++) {
        if (block_skippable(ff, idx, prio) || peer_file_lacks(f, pf, idx, now))
            continue;
        *out = idx;
        return true;
    }
    return false;
}

static uint64_t node_random(struct peer_node *n)
{
    n->rng ^= n->rng << 13;
    n->rng ^= n->rng >> 7;
    n->rng ^= n->rng << 17;
    return n->rng;
}

/* A background block of f for p: of up to NODE_RARE_SCAN candidates from
 * a random start (not in flight, not said lacking by p), for a peer that
 * mostly has what it is asked (a seeder) the rarest (the one most peers
 * said they lack), for the others the most common (the likeliest to be
 * there: a leecher probed for rare blocks mostly answers "not present").
 * Bounded work whatever the file's size. */
static bool pick_background(struct peer_node *n, struct peer_file *pf, struct node_file *f,
                            uint64_t now, uint64_t *out)
{
    struct fetch_file *ff = &f->fetch;
    uint64_t count = f->meta->block_count;
    uint64_t start = node_random(n) % count, best = UINT64_MAX;
    bool rich = pf->holds >= NODE_RICH_PEER;
    int best_score = -1;
    size_t weighed = 0;
    for (uint64_t k = 0; k < count && k < NODE_SCAN_LIMIT && weighed < NODE_RARE_SCAN; k++) {
        uint64_t idx = start + k < count ? start + k : start + k - count;
        if (block_skippable(ff, idx, NODE_WANT_BACKGROUND))
            continue;
        weighed++;
        if (peer_file_lacks(f, pf, idx, now))
            continue;
        /* A little noise: peers whose knowledge agrees still spread out.
         * A block the peer was fetching a moment ago (it asked us for it)
         * it likely holds by now: that comes first. */
        int rarity = rich ? ff->lacked_by[idx] : UINT8_MAX - ff->lacked_by[idx];
        int score = 4 * rarity + (int)(node_random(n) & 7);
        if (!rich && peer_file_fetching(f, pf, idx, now))
            score += 4 * (UINT8_MAX + 1);
        if (score > best_score) {
            best_score = score;
            best = idx;
        }
    }
    if (best == UINT64_MAX)
        return false;
    *out = best;
    return true;
}

/* A node that serves nothing (`cascade get`) has nothing to give a swarm
 * for holding different blocks: it takes them in order, so that a reader
 * of the output (its whole-file hash) keeps up with the download. */
static bool pick_in_file(struct peer_node *n, struct peer_file *pf, struct node_file *f,
                         uint64_t now, int prio, uint64_t *out)
{
    return prio == NODE_WANT_BACKGROUND && n->cfg.serve ? pick_background(n, pf, f, now, out)
                                                        : pick_in_order(pf, f, now, prio, out);
}

/* Whether (file, idx) arrived and waits for (or is in) a worker. */
static bool being_stored(const struct peer_node *n, uint32_t file, uint64_t idx)
{
    for (const struct put_item *it = n->put_head; it; it = it->next)
        if (it->block == idx && it->file == file)
            return true;
    for (const struct put_item *it = n->put_busy; it; it = it->next)
        if (it->block == idx && it->file == file)
            return true;
    return false;
}

/* Endgame: a wanted block of f already asked of one peer, for p too. */
/* Milliseconds until (file, idx) is likely to arrive from whoever has it
 * on the wire: its place in that connection's queue at that peer's rate.
 * UINT64_MAX when it is not on any wire (being stored, say). */
static uint64_t expected_arrival_ms(const struct peer_node *n, uint32_t file, uint64_t idx,
                                    uint64_t block_size)
{
    for (size_t i = 0; i < n->n_peers; i++) {
        const struct fetch_peer *q = n->peers[i];
        if (!q->open)
            continue;
        for (size_t k = 0; k < q->conn.inflight_count; k++) {
            struct peer_request r = peer_conn_inflight_at(&q->conn, k);
            if (r.block != idx || r.file != file)
                continue;
            double rate = q->rate > NODE_SLOW_RATE ? q->rate : NODE_SLOW_RATE;
            return (uint64_t)((double)(k + 1) * (double)block_size * 1000.0 / rate);
        }
    }
    return UINT64_MAX;
}

static bool pick_endgame(struct peer_node *n, struct fetch_peer *p, struct peer_file *pf,
                         struct node_file *f, uint64_t now, uint64_t *out)
{
    struct fetch_file *ff = &f->fetch;
    uint64_t count = f->meta->block_count;
    /* Only in the last eighth of the file (2 to NODE_ENDGAME_BLOCKS
     * blocks; a small file has every missing block asked for much earlier),
     * once every missing block is asked for somewhere, and only of a peer
     * with nothing else to do for us: in a swarm a doubled block is upload
     * someone else needed. */
    uint64_t endgame = count / NODE_ENDGAME_SHARE;
    endgame = endgame < 2 ? 2 : endgame > NODE_ENDGAME_BLOCKS ? NODE_ENDGAME_BLOCKS : endgame;
    if (ff->wanted_missing == 0 || ff->wanted_missing > endgame ||
        ff->requests < ff->wanted_missing || p->conn.inflight_count + (size_t)p->verifying > 0)
        return false;
    while (ff->low_wanted < count && ff->prio[ff->low_wanted] == NODE_WANT_NONE)
        ff->low_wanted++;
    /* Worth doubling: a block p would likely bring sooner. (Asking only
     * for blocks it would bring twice as soon sent 1.10x what a swarm
     * needs instead of 1.18x, but one peer in 31 then often waited on the
     * last block: ratio 0.59-0.66 against 0.64-0.68.) */
    double rate = p->rate > NODE_SLOW_RATE ? p->rate : NODE_SLOW_RATE;
    uint64_t here_ms = (uint64_t)((double)f->meta->block_size * 1000.0 / rate);
    uint64_t end = ff->low_wanted + NODE_SCAN_LIMIT;
    for (uint64_t idx = ff->low_wanted; idx < count && idx < end; idx++) {
        if (ff->prio[idx] == NODE_WANT_NONE || ff->inflight[idx] != 1)
            continue;
        if (peer_file_lacks(f, pf, idx, now) || peer_conn_has_request(&p->conn, f->index, idx) ||
            being_stored(n, f->index, idx))
            continue;
        uint64_t there_ms = expected_arrival_ms(n, f->index, idx, f->meta->block_size);
        if (there_ms != UINT64_MAX && there_ms > here_ms) {
            *out = idx;
            return true;
        }
    }
    return false;
}

/* The k-th file of p in this round's order, if it may be asked now. */
static struct node_file *peer_file_at(struct peer_node *n, struct fetch_peer *p, size_t k,
                                      uint64_t now, struct peer_file **pf)
{
    *pf = &p->files[(p->rr + k) % p->n_files];
    struct node_file *f = (*pf)->file < n->n_files ? n->files[(*pf)->file] : NULL;
    if (!f || !peer_file_askable(*pf, now) || !fetch_file_active(f, now))
        return NULL;
    return f;
}

bool fetch_pick(struct peer_node *n, struct fetch_peer *p, uint64_t now, int min_prio,
                uint32_t *file, uint64_t *idx)
{
    size_t nf = p->n_files;
    struct peer_file *pf;
    for (size_t k = 0; k < nf; k++) {
        struct node_file *f = peer_file_at(n, p, k, now, &pf);
        if (f && pick_stale(p, pf, f, now, min_prio, idx))
            goto found;
    }
    for (int prio = NODE_WANT_URGENT; prio >= min_prio; prio--)
        for (size_t k = 0; k < nf; k++) {
            struct node_file *f = peer_file_at(n, p, k, now, &pf);
            if (f && pick_in_file(n, pf, f, now, prio, idx))
                goto found;
        }
    if (min_prio > NODE_WANT_BACKGROUND)
        return false;   /* past its depth: only urgent work */
    for (size_t k = 0; k < nf; k++) {
        struct node_file *f = peer_file_at(n, p, k, now, &pf);
        if (f && pick_endgame(n, p, pf, f, now, idx))
            goto found;
    }
    return false;
found:
    *file = pf->file;
    p->rr = (size_t)(pf - p->files) + 1;
    return true;
}
