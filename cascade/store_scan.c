/* The store's files on disk (see store.h, store_internal.h): the recovery
 * scan at open, their health while open (a deleted folder or data file is
 * recreated, never written into), and the copy of the .cascade that lets
 * `cascade cache` name what the cache holds. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cascade/bitmap.h"
#include "cascade/log.h"
#include "cascade/store_internal.h"
#include "cascade/util.h"

/* ---- the recovery scan ---- */

/* Block b has bytes on disk but no mark: keep it when it verifies, else
 * release its bytes. True when kept. */
static bool recover_block(struct cascade_store *st, uint64_t b, uint8_t *buf, uint64_t now)
{
    const struct cascade_meta *m = st->meta;
    size_t len = (size_t)cascade_meta_block_len(m, b);
    if (cascade_pread_full(st->data_fd, buf, len, b * m->block_size) == 0 &&
        store_block_matches(m, b, buf, len)) {
        pthread_mutex_lock(&st->lock);
        store_mark_held_locked(st, b, len, now);
        pthread_mutex_unlock(&st->lock);
        return true;
    }
    store_punch(st, b, b + 1);
    return false;
}

void store_recover(struct cascade_store *st)
{
    const struct cascade_meta *m = st->meta;
    if (m->block_count == 0)
        return;
    uint8_t *buf = malloc((size_t)cascade_meta_block_len(m, 0));
    if (!buf)
        return;
    uint64_t kept = 0, bad = 0, now = store_wall_ms();
    off_t off = 0;
    for (;;) {
        off_t data = lseek(st->data_fd, off, SEEK_DATA);
        if (data < 0)
            break;   /* ENXIO: no more data (or the filesystem cannot tell: nothing to do) */
        off_t hole = lseek(st->data_fd, data, SEEK_HOLE);
        if (hole <= data)
            break;
        uint64_t first = (uint64_t)data / m->block_size;
        uint64_t end = ((uint64_t)hole - 1) / m->block_size + 1;
        for (uint64_t b = first; b < end && b < m->block_count; b++) {
            if (bitmap_get(st->held, b))
                continue;
            if (recover_block(st, b, buf, now))
                kept++;
            else
                bad++;
        }
        off = (off_t)(end * m->block_size);
        if ((uint64_t)off >= m->size)
            break;
    }
    free(buf);
    if (kept || bad)
        log_info("store: %llu blocks of %s were written but not yet recorded (an interrupted "
                 "run): %llu verified and kept, %llu released", (unsigned long long)(kept + bad),
                 st->data_path, (unsigned long long)kept, (unsigned long long)bad);
}

/* ---- the copy of the .cascade ---- */

static bool file_missing(const char *dir, const char *name)
{
    char path[4096];
    return snprintf(path, sizeof path, "%s/%s", dir, name) < (int)sizeof path &&
           access(path, F_OK) != 0;
}

/* Write dir/name atomically (a temporary file, then rename) if missing. */
static void write_file_once(const char *dir, const char *name, const void *data, size_t len)
{
    char path[4096], tmp[4096 + 16];
    if (!file_missing(dir, name))
        return;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    bool ok = cascade_pwrite_full(fd, data, len, 0) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0)
        unlink(tmp);
}

void store_write_copy(struct cascade_store *st)
{
    const struct cascade_meta *m = st->meta;
    if (m->name && m->name[0])
        write_file_once(st->dir, "name", m->name, strlen(m->name));
    /* The .cascade image rebuilt from the meta; written only when it hashes
     * to the cascade hash (a file with a non-zero reserved field does not). */
    if (!file_missing(st->dir, "cascade"))
        return;
    uint64_t hashes = m->block_count * CASCADE_HASH_LEN;
    size_t len = CASCADE_HEADER_LEN + (size_t)hashes;
    uint8_t *img = malloc(len);
    if (!img)
        return;
    memset(img, 0, CASCADE_HEADER_LEN);
    memcpy(img, CASCADE_MAGIC, CASCADE_MAGIC_LEN);
    cascade_put_be64(img + 16, m->size);
    cascade_put_be64(img + 24, m->block_size);
    memcpy(img + 32, m->target_hash, CASCADE_HASH_LEN);
    memcpy(img + CASCADE_HEADER_LEN, m->block_hashes, (size_t)hashes);
    uint8_t got[CASCADE_HASH_LEN];
    if (cascade_sha256(img, len, got) == 0 && memcmp(got, m->cascade_hash, CASCADE_HASH_LEN) == 0)
        write_file_once(st->dir, "cascade", img, len);
    free(img);
}

/* ---- health of the files while open ---- */

static bool fd_unlinked(int fd)
{
    struct stat sb;
    return fd >= 0 && fstat(fd, &sb) == 0 && sb.st_nlink == 0;
}

/* Point fd (a descriptor number others may be using) at the file newfd
 * opened; in-flight calls on the old file finish on it. 0 or -1. */
static int replace_fd(int fd, int newfd)
{
    int rc = dup3(newfd, fd, O_CLOEXEC) < 0 ? -1 : 0;
    close(newfd);
    return rc;
}

/* A new record at record_path, locked, into st->record_fd: the current
 * durable marks (or none). Under flush_lock. 0 or -1. */
static int recreate_record(struct cascade_store *st, char *err, size_t errlen)
{
    int fd = open(st->record_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
        cascade_errf(err, errlen, "recreate %s: %s", st->record_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (replace_fd(st->record_fd, fd) != 0 ||
        cascade_record_rewrite(st->record_fd, &st->record_id, st->durable, st->bits_len,
                               err, errlen) != 0 ||
        fdatasync(st->record_fd) != 0) {
        cascade_errf(err, errlen, "recreate %s: %s", st->record_path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The data file is gone: a new empty one at its path, every mark cleared.
 * Caller holds punch_lock alone and flush_lock. */
static int recreate_data(struct cascade_store *st, char *err, size_t errlen)
{
    if (store_mkdir_p(st->dir, err, errlen) != 0)
        return -1;
    unlink(st->data_path);   /* whatever took its place is not ours to trust */
    int old = st->data_fd;
    uint64_t size;
    if (store_open_data(st, &size, err, errlen) != 0) {
        st->data_fd = old;
        return -1;
    }
    int fresh = st->data_fd;
    st->data_fd = old;
    if (ftruncate(fresh, (off_t)st->meta->size) != 0 || replace_fd(old, fresh) != 0) {
        cascade_errf(err, errlen, "recreate %s: %s", st->data_path, strerror(errno));
        return -1;
    }
    pthread_mutex_lock(&st->lock);
    memset(st->held, 0, st->bits_len);
    memset(st->checked, 0, st->bits_len);
    st->held_count = 0;
    st->held_bytes = 0;
    st->pending_blocks = 0;
    st->pending_bytes = 0;
    pthread_mutex_unlock(&st->lock);
    memset(st->durable, 0, st->bits_len);
    return 0;
}

int cascade_store_check_files(struct cascade_store *st, char *err, size_t errlen)
{
    bool data_gone = fd_unlinked(st->data_fd) && !st->read_only;
    bool record_gone = fd_unlinked(st->record_fd);
    if (!data_gone && !record_gone)
        return 0;
    if (data_gone)
        log_error("store: the data file %s was deleted while in use: recreating it empty; "
                  "its %llu blocks will be fetched again", st->data_path,
                  (unsigned long long)cascade_store_held_count(st));
    else
        log_error("store: the record %s was deleted while in use: writing it again",
                  st->record_path);
    pthread_rwlock_wrlock(&st->punch_lock);
    pthread_mutex_lock(&st->flush_lock);
    int rc = data_gone ? recreate_data(st, err, errlen) : store_mkdir_p(st->dir, err, errlen);
    if (rc == 0 && st->record_fd >= 0)
        rc = recreate_record(st, err, errlen);
    pthread_mutex_unlock(&st->flush_lock);
    pthread_rwlock_unlock(&st->punch_lock);
    if (rc == 0) {
        store_write_copy(st);
        pthread_mutex_lock(&st->lock);
        st->used_dirty = true;
        pthread_mutex_unlock(&st->lock);
    }
    return rc == 0 ? 1 : -1;
}
