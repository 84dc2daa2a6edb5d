/* libFuzzer: cascade_meta_parse over arbitrary bytes. When it accepts a
 * file, the file must be self-consistent. */
#include <stdint.h>
#include <stdlib.h>

#include "cascade/meta.h"
#include "cascade/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cascade_meta m;
    char err[CASCADE_ERRLEN];
    if (cascade_meta_parse(data, size, &m, err, sizeof err) != 0)
        return 0;
    if (size != CASCADE_HEADER_LEN + m.block_count * CASCADE_HASH_LEN)
        abort();
    uint64_t total = 0;
    for (uint64_t i = 0; i < m.block_count; i++) {
        uint64_t len = cascade_meta_block_len(&m, i);
        if (len == 0 || len > m.block_size)
            abort();
        total += len;
    }
    if (total != m.size || cascade_meta_block_len(&m, m.block_count) != 0)
        abort();
    cascade_meta_free(&m);
    return 0;
}
