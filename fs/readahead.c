/* Sequential-read detection and read-ahead window: see readahead.h. */
#include "fs/readahead.h"

#include "cascade/util.h"

void fs_readahead_init(struct fs_readahead *ra, uint64_t initial_blocks, uint64_t block_size)
{
    uint64_t initial;
    if (cascade_mul_overflows(initial_blocks, block_size, &initial))
        initial = UINT64_MAX / 2;
    ra->initial = initial;
    ra->cap = initial > FS_RA_MAX_WINDOW ? initial : FS_RA_MAX_WINDOW;
    ra->window = initial;
    ra->next_off = 0;       /* a read from the start counts as sequential */
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
        /* Random access: what is asked, nothing more; start small again. */
        ra->window = ra->initial;
        ra->next_off = end;
        ra->wanted_end = end;
        return;
    }
    if (end > ra->next_off)
        ra->next_off = end;
    if (ra->window == 0)
        return;
    uint64_t want_end = file_size;
    if (ra->next_off < file_size && file_size - ra->next_off > ra->window)
        want_end = ra->next_off + ra->window;
    uint64_t from = ra->wanted_end > ra->next_off ? ra->wanted_end : ra->next_off;
    if (want_end > from) {
        *pf_off = from;
        *pf_len = want_end - from;
        ra->wanted_end = want_end;
    }
    /* Reads keep up with the window: let it grow. */
    ra->window = ra->window > ra->cap / 2 ? ra->cap : ra->window * 2;
}
