/* libFuzzer: a stream of tracker requests, each decoded and, when valid,
 * handled by the tracker's rules with a source address and clock taken from
 * the input. Checks the answer's invariants and that memory stays capped. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cascade/util.h"
#include "net/tracker_state.h"
#include "net/wire.h"

#define STEP (WIRE_TRACKER_REQUEST_LEN + 5)   /* request + source byte + clock */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tracker_config cfg = {.seed = 1, .max_hashes = 4, .max_peers_per_hash = 3,
                                 .max_answer = 2};
    struct tracker_state *ts = tracker_state_new(&cfg);
    if (!ts)
        return 0;
    tracker_state_vouch(ts, 0x7f000001);
    struct wire_peer_record out[2];
    char err[CASCADE_ERRLEN];
    for (size_t off = 0; off + STEP <= size; off += STEP) {
        struct wire_tracker_request req;
        if (wire_decode_tracker_request(data + off, &req, err, sizeof err) < 0)
            continue;
        uint32_t source = 0x7f000000u | data[off + WIRE_TRACKER_REQUEST_LEN];
        uint64_t now = cascade_get_be32(data + off + WIRE_TRACKER_REQUEST_LEN + 1);
        size_t n = 99;
        if (tracker_state_handle(ts, &req, source, now, out, &n, err, sizeof err) == 0) {
            if (n > 2)
                abort();
            for (size_t i = 0; i < n; i++)
                if (out[i].good && out[i].ip != 0x7f000001)
                    abort();
        }
        if (tracker_state_hash_count(ts) > 4)
            abort();
    }
    tracker_state_free(ts);
    return 0;
}
