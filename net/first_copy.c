/* First copies (see first_copy.h). */
#include <stdlib.h>

#include "net/first_copy.h"

#define TICK_MS 100

void first_copy_init(struct first_copy *fc, uint64_t block_count)
{
    *fc = (struct first_copy){.block_count = block_count};
}

void first_copy_free(struct first_copy *fc)
{
    free(fc->given_at);
    fc->given_at = NULL;
}

bool first_copy_hold_back(struct first_copy *fc, uint64_t block, bool others_waiting,
                          uint64_t now_ms, bool *round_done_now)
{
    if (block >= fc->block_count)
        return false;
    uint64_t tick = fc->given_at ? (now_ms - fc->base_ms) / TICK_MS + 1 : 0;
    if (tick > UINT16_MAX)   /* the clock ran out: every hold is long over, start afresh */
        first_copy_free(fc);
    if (!fc->given_at) {
        fc->given_at = calloc(fc->block_count, sizeof *fc->given_at);
        if (!fc->given_at)
            return false;   /* tried again on the next request */
        fc->base_ms = now_ms;
        tick = 1;
    }
    uint16_t at = fc->given_at[block];
    if (at && others_waiting && (tick - at) * TICK_MS < FIRST_COPY_HOLD_MS)
        return true;
    if (!at && !fc->round_done && ++fc->given_count == fc->block_count) {
        fc->round_done = true;
        *round_done_now = true;
    }
    fc->given_at[block] = (uint16_t)tick;
    return false;
}
