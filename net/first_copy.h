/* First copies: a seeder hands out every block once before it doubles any.
 *
 * In a young swarm every peer asks the one seeder at once, and whatever
 * each asks for, the seeder's uplink is the swarm's only source of blocks
 * nobody else has. A second copy of a block the seeder sent a moment ago
 * is upload the swarm could have got from the first recipient; a block
 * never sent is upload only the seeder can give. So while some block of a
 * complete file has never gone out, and other connections are waiting for
 * the uplink too, a request for a block that went out less than a short
 * while ago (long enough for its recipient to pass it on) is answered
 * "not present" (status 2, which a peer may say at any time): the asker
 * tries another block here and fetches that one from the peers. Once every
 * block has gone out the table is dropped and everything is served.
 * (BitTorrent calls the idea super-seeding; this needs no new message.)
 *
 * Never held back: a request when no other connection waits for the
 * uplink (one downloader, or an idle seeder, is served at once), and a
 * block that went out long enough ago. So a reader behind a lone seeder
 * never waits for it, and nobody waits longer than FIRST_COPY_HOLD_MS.
 *
 * Memory: two bytes per block, only while the first round of a
 * complete file is going out. Not thread-safe: one caller (the block
 * server's thread). */
#ifndef NET_FIRST_COPY_H
#define NET_FIRST_COPY_H

#include <stdbool.h>
#include <stdint.h>

#define FIRST_COPY_HOLD_MS 8000   /* a sent block is held back this long */

struct first_copy {
    uint64_t block_count;
    uint64_t given_count;        /* blocks sent at least once */
    uint64_t base_ms;            /* the table's clock starts here */
    uint16_t *given_at;          /* when each went out, in 100 ms ticks from base_ms,
                                    plus 1 (0: never); NULL until the first request */
    bool done;                   /* every block went out (or the clock ran out) */
};

/* An empty table for a file of block_count blocks (allocates nothing). */
void first_copy_init(struct first_copy *fc, uint64_t block_count);
void first_copy_free(struct first_copy *fc);

/* A peer asks for block of a file we hold in full; others_waiting: other
 * connections are being sent to right now. True: answer "not present" this
 * time. False: send it (recorded as sent now). Out of memory: false. */
bool first_copy_hold_back(struct first_copy *fc, uint64_t block, bool others_waiting,
                          uint64_t now_ms);

#endif
