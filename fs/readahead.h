/* Sequential-read detection and the read-ahead window of one open file.
 *
 * A read that starts near where the previous ones ended counts as
 * sequential (near: within FS_RA_SLACK, because the kernel issues its own
 * read-ahead requests on several threads, so they may arrive slightly out of
 * order). The window ahead of a sequential run follows the reader: it is the
 * length of the run so far plus a small start, never more (up to a cap), so
 * a `head -c` or `file` pulls little beyond what it reads, while a film
 * player or `cp` that keeps reading sees the window grow with what it has
 * read, and so with its rate. A jump elsewhere starts a new run and asks
 * for nothing beyond the read itself. Pure logic: no locking, no I/O (the
 * caller holds the handle's lock). */
#ifndef FS_READAHEAD_H
#define FS_READAHEAD_H

#include <stdint.h>

#define FS_RA_SLACK (2u << 20)          /* twice the largest FUSE read */
#define FS_RA_MAX_WINDOW (64u << 20)    /* cap of the window in bytes */

struct fs_readahead {
    uint64_t start;         /* window beyond a run of length zero (0: read-ahead off) */
    uint64_t cap;           /* largest window in bytes */
    uint64_t run_start;     /* where the current sequential run began */
    uint64_t next_off;      /* where the next sequential read would start */
    uint64_t wanted_end;    /* read-ahead already asked for up to here */
};

/* start_blocks * block_size as the start; the cap is max(FS_RA_MAX_WINDOW,
 * start). */
void fs_readahead_init(struct fs_readahead *ra, uint64_t start_blocks, uint64_t block_size);

/* Record a read of [off, off+len) in a file of file_size bytes. Sets
 * [*pf_off, *pf_off + *pf_len) to the bytes newly worth prefetching
 * (*pf_len 0: nothing). */
void fs_readahead_on_read(struct fs_readahead *ra, uint64_t off, uint64_t len,
                          uint64_t file_size, uint64_t *pf_off, uint64_t *pf_len);

#endif
