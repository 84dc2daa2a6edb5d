/* Making a .cascade file from a data file, streamed in constant memory. */
#ifndef CASCADE_CREATE_H
#define CASCADE_CREATE_H

#include <stdint.h>
#include <stddef.h>

#include "cascade/progress.h"

#define CASCADE_DEFAULT_BLOCK_SIZE (1024u * 1024u)

/* Hash data_path (a regular file: a FIFO or a device is refused without
 * waiting on it) in blocks of block_size (>= 1) and write out_path
 * atomically (temporary file + rename). progress may be NULL.
 * If cascade_hash_out is not NULL it receives the new file's cascade hash.
 * 0 on success, -1 with a message. */
int cascade_create(const char *data_path, uint64_t block_size, const char *out_path,
                   struct cascade_progress *progress, uint8_t *cascade_hash_out,
                   char *err, size_t errlen);

#endif
