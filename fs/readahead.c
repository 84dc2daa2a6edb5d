/* Sequential-read detection and read-ahead window: see readahead.h. */
#include "fs/readahead.h"

#include "cascade/util.h"

void fs_readahead_init(struct fs_readahead *ra, uint64_t start_blocks, uint64_t block_size)
{
    uint64_t start;
    if (cascade_mul_overflows(start_blocks, block_size, &start))
        start = UINT64_MAX / 2;
    ra->start = start;
    ra->cap = start > FS_RA_MAX_WINDOW ? start : FS_RA_MAX_WINDOW;
    ra->run_start = 0;      /* a read from the start counts as sequential */
    ra->next_off = 0;
    ra->wanted_end = 0;
}

static int is_sequential(const struct fs_readahead *ra, uint64_t off)
{
    uint64_t lo = ra->next_off > FS_RA_SLACK ? ra->next_off - FS_RA_SLACK : 0;
    return off >= lo && off <= ra->next_off + FS_RA_SLACK;
}

void fs_readahead_on_read(struct fs_readahead *ra, uint64_t off, uint64_t len,
                          uint64_t file_size, uint64_t *pf_off, uint64_t *pf_len)
{
    uint64_t end = off + len;
    *pf_off = end;
    *pf_len = 0;
    if (!is_sequential(ra, off)) {
        /* A jump: a new run begins here; what is asked, nothing more. */
        ra->run_start = off;
        ra->next_off = end;
        ra->wanted_end = end;
        return;
    }
    if (end > ra->next_off)
        ra->next_off = end;
    if (ra->start == 0)
        return;
    /* As far ahead as the run is long, plus the start. */
    uint64_t run = ra->next_off > ra->run_start ? ra->next_off - ra->run_start : 0;
    uint64_t window = run > ra->cap - ra->start ? ra->cap : run + ra->start;
    uint64_t want_end = file_size;
    if (ra->next_off < file_size && file_size - ra->next_off > window)
        want_end = ra->next_off + window;
    uint64_t from = ra->wanted_end > ra->next_off ? ra->wanted_end : ra->next_off;
    if (want_end > from) {
        *pf_off = from;
        *pf_len = want_end - from;
        ra->wanted_end = want_end;
    }
}
