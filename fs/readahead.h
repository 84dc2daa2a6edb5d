/* Sequential-read detection and the read-ahead window of one open file.
 *
 * A read that starts near where the previous ones ended counts as
 * sequential (near: within FS_RA_SLACK, because the kernel issues its own
 * read-ahead requests on several threads, so they may arrive slightly out of
 * order). While reads stay sequential, the window ahead of the read grows by
 * doubling from its initial size up to a cap; a jump elsewhere resets it and
 * asks for nothing beyond the read itself. Pure logic: no locking, no I/O
 * (the caller holds the handle's lock). */
#ifndef FS_READAHEAD_H
#define FS_READAHEAD_H

#include <stdint.h>

#define FS_RA_SLACK (2u << 20)          /* twice the largest FUSE read */
#define FS_RA_MAX_WINDOW (64u << 20)    /* cap of the window in bytes */

struct fs_readahead {
    uint64_t initial;       /* first window in bytes (0: read-ahead off) */
    uint64_t cap;           /* largest window in bytes */
    uint64_t window;        /* current window in bytes */
    uint64_t next_off;      /* where the next sequential read would start */
    uint64_t wanted_end;    /* read-ahead already asked for up to here */
};

/* initial_blocks * block_size, capped at max(FS_RA_MAX_WINDOW, initial). */
void fs_readahead_init(struct fs_readahead *ra, uint64_t initial_blocks, uint64_t block_size);

/* Record a read of [off, off+len) in a file of file_size bytes. Sets
 * [*pf_off, *pf_off + *pf_len) to the bytes newly worth prefetching
 * (*pf_len 0: nothing). */
void fs_readahead_on_read(struct fs_readahead *ra, uint64_t off, uint64_t len,
                          uint64_t file_size, uint64_t *pf_off, uint64_t *pf_len);

#endif
