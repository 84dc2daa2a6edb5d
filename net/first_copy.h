/* First copies: the swarm's source hands out every block once before it
 * doubles any, and after that at most one copy of a block per hold.
 *
 * In a young swarm every peer asks the one seeder at once, and whatever
 * each asks for, the seeder's uplink is the swarm's only source of blocks
 * nobody else has. A second copy of a block the seeder sent a moment ago
 * is upload the swarm could have got from the first recipient; a block
 * never sent is upload only the seeder can give. So while other
 * connections are waiting for the uplink, a request for a block that went
 * out less than FIRST_COPY_HOLD_MS ago (long enough for its recipient to
 * pass it on) is answered "not present" (status 2, which a peer may say
 * at any time): the asker takes another block from us and that one from
 * the peers. (BitTorrent calls the idea super-seeding; this needs no new
 * message.)
 *
 * Never held back: a request when no other connection waits for the
 * uplink (one downloader, or an idle seeder, is served at once), and a
 * block whose last copy went out a hold ago or more. The node applies it
 * only to files it holds in full and fetched nothing of (the source).
 *
 * Memory: two bytes per block of a file being seeded, from its first
 * request on. Not thread-safe: one caller (the block server's thread). */
#ifndef NET_FIRST_COPY_H
#define NET_FIRST_COPY_H

#include <stdbool.h>
#include <stdint.h>

#define FIRST_COPY_HOLD_MS 8000   /* a block sent is not sent again for this long */

struct first_copy {
    uint64_t block_count;
    uint64_t given_count;        /* blocks sent at least once */
    bool round_done;             /* every block has gone out once */
    uint64_t base_ms;            /* the table's clock starts here */
    uint16_t *given_at;          /* last copy of each, in 100 ms ticks from base_ms,
                                    plus 1 (0: never); NULL until the first request */
};

/* An empty table for a file of block_count blocks (allocates nothing). */
void first_copy_init(struct first_copy *fc, uint64_t block_count);
void first_copy_free(struct first_copy *fc);

/* A peer asks for block of a file we seed; others_waiting: other
 * connections are being sent to right now. True: answer "not present" this
 * time. False: send it (recorded as sent now); *round_done_now is set true
 * on the request whose block is the last to go out for the first time
 * (otherwise left alone). Out of memory: false. */
bool first_copy_hold_back(struct first_copy *fc, uint64_t block, bool others_waiting,
                          uint64_t now_ms, bool *round_done_now);

#endif
