/* The FUSE operations of cascadefs: see fs_ops.h.
 *
 * Threads: the loop is multithreaded, so every operation may run on many
 * threads at once. The mount's file table never changes while mounted;
 * the node and the stores are thread-safe; the only mutable state here is
 * the read-ahead state of each open handle, under that handle's lock. */
#include "fs/fs_ops.h"

#include <fuse_lowlevel.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "fs/fs_xattr.h"
#include "fs/readahead.h"

/* Attributes and names never change while mounted: let the kernel keep them
 * (st_blocks excepted: see the attribute notifier below). */
#define FS_CACHE_TIMEOUT_S 86400.0
/* The notifier looks this often, and tells the kernel of this many files
 * at most per look. */
#define FS_NOTIFY_PERIOD_MS 1000
#define FS_NOTIFY_MAX_PER_PASS 64
/* A read whose blocks were evicted (or found bad) between the wait and the
 * reply fetches them again at most this many times. */
#define FS_READ_TRIES 8
/* What the kernel may ask per request when replies are copied. */
#define FS_MAX_IO (1u << 20)
/* ... and when they are spliced: libfuse splices a reply only when its pipe
 * can grow to hold all of it, and the default pipe-max-size is 1 MiB, so
 * 512 KiB requests fit where 1 MiB ones never do. */
#define FS_MAX_SPLICED_IO (1u << 19)
/* libfuse's pipe also carries the reply header: a few pages. */
#define FS_SPLICE_PIPE_BYTES (FS_MAX_SPLICED_IO + (1u << 16))

/* After a read timed out, the kernel at once asks again for the pages it
 * could not fill; for this long, a read that starts inside the range that
 * failed fails at once instead of making the reader wait a second full
 * timeout. */
#define FS_RETRY_GRACE_MS 1000
/* A waiting read looks this often whether the mount is going away. */
#define FS_WAIT_SLICE_MS 250

/* One open file. */
struct fs_handle {
    struct fs_file *file;
    struct cascade_store *store; /* kept open by the node until release */
    pthread_mutex_t lock;        /* guards ra and the failed range */
    struct fs_readahead ra;
    uint64_t failed_off, failed_end;  /* bytes of the last read that gave up */
    uint64_t failed_until_ms;    /* 0: none */
};

static bool recently_failed(struct fs_handle *h, uint64_t off)
{
    pthread_mutex_lock(&h->lock);
    bool failed = h->failed_until_ms && off >= h->failed_off && off < h->failed_end &&
                  cascade_now_ms() < h->failed_until_ms;
    pthread_mutex_unlock(&h->lock);
    return failed;
}

static void note_failure(struct fs_handle *h, uint64_t off, uint64_t len)
{
    pthread_mutex_lock(&h->lock);
    h->failed_off = off;
    h->failed_end = off + len;
    h->failed_until_ms = cascade_now_ms() + FS_RETRY_GRACE_MS;
    pthread_mutex_unlock(&h->lock);
}

static struct fs_mount *current_mount(void)
{
    return fuse_get_context()->private_data;
}

static int compare_name(const void *key, const void *elem)
{
    const struct fs_file *f = elem;
    return strcmp(key, f->meta.name);
}

struct fs_file *fs_mount_find(struct fs_mount *m, const char *path)
{
    if (path[0] != '/' || strchr(path + 1, '/'))
        return NULL;
    return bsearch(path + 1, m->files, m->n_files, sizeof m->files[0], compare_name);
}

static bool is_root(const char *path)
{
    return path[0] == '/' && path[1] == '\0';
}

/* ---- telling the kernel of new held bytes ---------------------------------- */

/* One thread per mount. It asks the kernel to forget a file's entry (not
 * its pages: an entry, unlike fuse_invalidate_path's inode notice, keeps
 * the page cache) so the next stat looks it up and sees its st_blocks. */
struct fs_attr_notifier {
    struct fs_mount *m;
    struct fuse_session *se;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    uint64_t *shown;             /* held blocks the kernel last heard of, per file */
    size_t next;                 /* where the next pass starts */
};

static void notify_pass(struct fs_attr_notifier *nt)
{
    struct fs_mount *m = nt->m;
    size_t told = 0;
    for (size_t k = 0; k < m->n_files && told < FS_NOTIFY_MAX_PER_PASS; k++) {
        /* Once the loop ended the session's descriptor goes: stop asking. */
        if (fuse_session_exited(nt->se))
            return;
        size_t i = (nt->next + k) % m->n_files;
        struct fs_file *f = &m->files[i];
        uint64_t held = f->nf ? node_file_held_count(f->nf) : 0;
        if (held == nt->shown[i])
            continue;
        nt->shown[i] = held;
        told++;
        int rc = fuse_lowlevel_notify_inval_entry(nt->se, FUSE_ROOT_ID, f->meta.name,
                                                  strlen(f->meta.name));
        if (rc != 0 && rc != -ENOENT)
            log_debug("%s: telling the kernel of new attributes: %s", f->meta.name,
                      strerror(-rc));
    }
    nt->next = (nt->next + 1) % (m->n_files ? m->n_files : 1);
}

static void *notify_main(void *arg)
{
    struct fs_attr_notifier *nt = arg;
    pthread_setname_np(pthread_self(), "cascade-attr");
    pthread_mutex_lock(&nt->lock);
    while (!nt->stop) {
        struct timespec ts;
        cascade_timespec_at(cascade_now_ms() + FS_NOTIFY_PERIOD_MS, &ts);
        pthread_cond_timedwait(&nt->wake, &nt->lock, &ts);
        if (nt->stop)
            break;
        pthread_mutex_unlock(&nt->lock);
        notify_pass(nt);
        pthread_mutex_lock(&nt->lock);
    }
    pthread_mutex_unlock(&nt->lock);
    return NULL;
}

static void fs_notifier_start(struct fs_mount *m, struct fuse_session *se)
{
    struct fs_attr_notifier *nt = calloc(1, sizeof *nt);
    if (!nt || !se || !(nt->shown = calloc(m->n_files + 1, sizeof *nt->shown)) ||
        pthread_mutex_init(&nt->lock, NULL) != 0 || cascade_cond_init_monotonic(&nt->wake) != 0) {
        log_warn("cannot follow held bytes for du: out of memory");
        if (nt)
            free(nt->shown);
        free(nt);
        return;
    }
    nt->m = m;
    nt->se = se;
    for (size_t i = 0; i < m->n_files; i++)
        nt->shown[i] = m->files[i].nf ? node_file_held_count(m->files[i].nf) : 0;
    if (pthread_create(&nt->thread, NULL, notify_main, nt) != 0) {
        log_warn("cannot start the thread that follows held bytes for du");
        free(nt->shown);
        free(nt);
        return;
    }
    m->notifier = nt;
}

void fs_notifier_stop(struct fs_mount *m)
{
    struct fs_attr_notifier *nt = m ? m->notifier : NULL;
    if (!nt)
        return;
    pthread_mutex_lock(&nt->lock);
    nt->stop = true;
    pthread_cond_signal(&nt->wake);
    pthread_mutex_unlock(&nt->lock);
    pthread_join(nt->thread, NULL);
    pthread_mutex_destroy(&nt->lock);
    pthread_cond_destroy(&nt->wake);
    free(nt->shown);
    free(nt);
    m->notifier = NULL;
}

/* ---- setup ---------------------------------------------------------------- */

/* Whether a pipe of this process can grow to FS_SPLICE_PIPE_BYTES. When it
 * cannot (a lower pipe-max-size, or the user's pipe pages used up), libfuse
 * would copy each reply through a fresh buffer, slower than our own read. */
static bool pipe_can_hold_reply(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return false;
    int got = fcntl(p[0], F_SETPIPE_SZ, (int)FS_SPLICE_PIPE_BYTES);
    close(p[0]);
    close(p[1]);
    return got >= (int)FS_SPLICE_PIPE_BYTES;
}

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    struct fs_mount *m = current_mount();
    /* Content never changes: keep pages across opens, attributes for long. */
    cfg->kernel_cache = 1;
    cfg->entry_timeout = FS_CACHE_TIMEOUT_S;
    cfg->attr_timeout = FS_CACHE_TIMEOUT_S;
    cfg->negative_timeout = FS_CACHE_TIMEOUT_S;
    cfg->use_ino = 0;
    /* Held data goes from the data file to the kernel without passing
     * through our memory: one copy fewer per read. */
    bool splice = m->splice_allowed && m->cache_max == 0 &&
                  (conn->capable & FUSE_CAP_SPLICE_WRITE) && pipe_can_hold_reply();
    if (splice)
        conn->want |= FUSE_CAP_SPLICE_WRITE;
    /* Large requests: fewer round trips per byte on a cold sequential read.
     * (max_write also sets the kernel's limit on a read request.) */
    unsigned max_io = splice ? FS_MAX_SPLICED_IO : FS_MAX_IO;
    conn->max_readahead = max_io;
    if (conn->max_write > max_io)
        conn->max_write = max_io;
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
    atomic_store(&m->reply_by_splice, splice);
    log_info("read replies %s", splice ? "spliced from the data file" : "copied through memory");
    fs_notifier_start(m, fuse_get_session(fuse_get_context()->fuse));
    return m;
}

static void fs_destroy(void *private_data)
{
    fs_notifier_stop(private_data);
}

/* ---- metadata ------------------------------------------------------------- */

static void fill_file_stat(const struct fs_mount *m, const struct fs_file *f, struct stat *st)
{
    st->st_mode = S_IFREG | 0444;
    st->st_nlink = 1;
    st->st_size = (off_t)f->meta.size;
    /* Blocks held locally, so `du` shows how much is here. */
    uint64_t held = f->nf ? node_file_held_count(f->nf) : 0;
    uint64_t bytes = held >= f->meta.block_count ? f->meta.size : held * f->meta.block_size;
    st->st_blocks = (blkcnt_t)((bytes + 511) / 512);
    st->st_blksize = (blksize_t)(f->meta.block_size < FS_MAX_IO ? f->meta.block_size : FS_MAX_IO);
    st->st_uid = m->uid;
    st->st_gid = m->gid;
    st->st_mtime = st->st_ctime = st->st_atime = f->mtime;
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    (void)fi;
    struct fs_mount *m = current_mount();
    memset(st, 0, sizeof *st);
    if (is_root(path)) {
        st->st_mode = S_IFDIR | 0555;
        st->st_nlink = 2;
        st->st_uid = m->uid;
        st->st_gid = m->gid;
        st->st_mtime = st->st_ctime = st->st_atime = m->mount_time;
        return 0;
    }
    struct fs_file *f = fs_mount_find(m, path);
    if (!f)
        return -ENOENT;
    fill_file_stat(m, f, st);
    return 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)off; (void)fi; (void)flags;
    struct fs_mount *m = current_mount();
    if (!is_root(path))
        return fs_mount_find(m, path) ? -ENOTDIR : -ENOENT;
    filler(buf, ".", NULL, 0, 0);
    filler(buf, "..", NULL, 0, 0);
    for (size_t i = 0; i < m->n_files; i++) {
        struct stat st;
        memset(&st, 0, sizeof st);
        fill_file_stat(m, &m->files[i], &st);
        if (filler(buf, m->files[i].meta.name, &st, 0, 0))
            break;
    }
    return 0;
}

static int fs_statfs(const char *path, struct statvfs *sv)
{
    (void)path;
    struct fs_mount *m = current_mount();
    uint64_t total = 0, held = 0;
    for (size_t i = 0; i < m->n_files; i++) {
        struct fs_file *f = &m->files[i];
        uint64_t blocks = f->nf ? node_file_held_count(f->nf) : 0;
        total += f->meta.size;
        held += blocks >= f->meta.block_count ? f->meta.size : blocks * f->meta.block_size;
    }
    memset(sv, 0, sizeof *sv);
    sv->f_bsize = 4096;
    sv->f_frsize = 4096;
    sv->f_blocks = (fsblkcnt_t)((total + 4095) / 4096);
    /* df shows as "used" what is held here; nothing is available for writing. */
    uint64_t used = (held + 4095) / 4096;
    if (sv->f_blocks < used)
        sv->f_blocks = used;
    sv->f_bfree = sv->f_blocks - used;
    sv->f_bavail = 0;
    sv->f_files = m->n_files + 1;
    sv->f_ffree = sv->f_favail = 0;
    sv->f_namemax = 255;
    sv->f_flag = ST_RDONLY;
    return 0;
}

/* ---- open and read -------------------------------------------------------- */

static int fs_open(const char *path, struct fuse_file_info *fi)
{
    struct fs_mount *m = current_mount();
    struct fs_file *f = fs_mount_find(m, path);
    if (!f)
        return is_root(path) ? -EISDIR : -ENOENT;
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
        return -EROFS;
    struct fs_handle *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    if (pthread_mutex_init(&h->lock, NULL) != 0) {
        free(h);
        return -ENOMEM;
    }
    char err[CASCADE_ERRLEN];
    h->store = node_file_open(f->nf, err, sizeof err);
    if (!h->store) {
        log_error("%s", err);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return -EIO;
    }
    h->file = f;
    fs_readahead_init(&h->ra, m->readahead_blocks, f->meta.block_size);
    /* Under a cache limit the window ahead of the reader is at most a
     * quarter of it: what is fetched ahead must still be there when read. */
    if (m->cache_max && h->ra.cap > m->cache_max / 4)
        h->ra.cap = m->cache_max / 4;
    fi->fh = (uint64_t)(uintptr_t)h;
    fi->keep_cache = 1;
    return 0;
}

static int fs_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
    if (h) {
        node_file_close(h->file->nf);
        pthread_mutex_destroy(&h->lock);
        free(h);
    }
    return 0;
}

/* Let the handle's read-ahead see this read: the bytes worth prefetching. */
static void read_ahead(struct fs_handle *h, uint64_t off, uint64_t len, uint64_t *pf_off,
                       uint64_t *pf_len)
{
    const struct cascade_meta *m = &h->file->meta;
    pthread_mutex_lock(&h->lock);
    fs_readahead_on_read(&h->ra, off, len, m->size, pf_off, pf_len);
    pthread_mutex_unlock(&h->lock);
    if (*pf_len)
        log_debug("%s: read-ahead of %llu bytes at %llu", m->name,
                  (unsigned long long)*pf_len, (unsigned long long)*pf_off);
}

/* Whether the mount is going away (unmounted: libfuse's session ended). */
static bool unmounting(void)
{
    return fuse_session_exited(fuse_get_session(fuse_get_context()->fuse));
}

/* Bring bytes [off, off+len) into the store (asking the node once, with
 * the read-ahead), at most until the mount's timeout. The wait is cut into
 * slices so that an unmount ends it at once. 0 or -errno. */
static int fetch_for_read(struct fs_mount *m, struct fs_handle *h, uint64_t off, uint64_t len)
{
    struct fs_file *f = h->file;
    uint64_t pf_off, pf_len;
    read_ahead(h, off, len, &pf_off, &pf_len);
    bool held = cascade_store_has_range(h->store, off, len) == CASCADE_STORE_OK;
    if (!held && recently_failed(h, off))
        return -EIO;
    uint64_t deadline = cascade_now_ms() + (uint64_t)m->timeout_ms;
    int rc;
    for (;;) {
        uint64_t slice = cascade_now_ms() + FS_WAIT_SLICE_MS;
        uint64_t until = slice < deadline ? slice : deadline;
        rc = node_file_fetch_range(f->nf, held ? 0 : off, held ? 0 : len, pf_off, pf_len, until);
        if (rc != -ETIMEDOUT || until == deadline)
            break;
        if (unmounting()) {
            rc = -ECANCELED;
            break;
        }
        pf_len = 0;   /* the read-ahead was asked for once */
    }
    if (rc == 0)
        return 0;
    const char *why = rc == -ETIMEDOUT ? "no peer delivered it in time"
                      : rc == -ECANCELED ? "the mount is going away"
                      : strerror(-rc);
    log_warn("%s: read of %llu bytes at %llu failed: %s", f->meta.name,
             (unsigned long long)len, (unsigned long long)off, why);
    note_failure(h, off, len);
    /* The true cause when storing fails (a full cache filesystem); else EIO. */
    return rc == -ENOSPC || rc == -EDQUOT ? rc : -EIO;
}

/* A reply of len bytes at off from the data file: by reference when libfuse
 * can splice it, else read into memory now, under a pin of its blocks
 * (which also hashes bytes this run did not write, per -o verify).
 * -EAGAIN when a block is no longer held (evicted, or its bytes were bad):
 * fetch it again. */
static int reply_from_store(struct fs_mount *m, struct fs_handle *h, uint64_t off, uint64_t len,
                            struct fuse_bufvec *bv)
{
    struct fs_file *f = h->file;
    int rc;
    if (atomic_load(&m->reply_by_splice)) {
        /* Splicing happens after we return, so it is used only without a
         * cache limit, where nothing verified is ever evicted: the pin
         * checks the bytes once and can go at once. */
        rc = cascade_store_pin_range(h->store, off, len);
        if (rc == CASCADE_STORE_OK) {
            cascade_store_unpin_range(h->store, off, len);
            bv->buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
            bv->buf[0].fd = cascade_store_data_fd(h->store);
            bv->buf[0].pos = (off_t)off;
            bv->buf[0].size = len;
            return 0;
        }
    } else {
        void *mem = malloc(len);   /* freed by libfuse after the reply */
        if (!mem)
            return -ENOMEM;
        rc = cascade_store_read_range(h->store, off, mem, len);   /* pins while it reads */
        if (rc == CASCADE_STORE_OK) {
            bv->buf[0].mem = mem;
            bv->buf[0].size = len;
            return 0;
        }
        free(mem);
    }
    if (rc == CASCADE_STORE_MISSING)
        return -EAGAIN;
    log_error("%s: reading %llu bytes at %llu from the store failed (%d)", f->meta.name,
              (unsigned long long)len, (unsigned long long)off, rc);
    return -EIO;
}

static int fs_read_buf(const char *path, struct fuse_bufvec **bufp, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    (void)path;
    struct fs_mount *m = current_mount();
    struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
    struct fs_file *f = h->file;
    if (off < 0)
        return -EINVAL;
    struct fuse_bufvec *bv = malloc(sizeof *bv);   /* freed by libfuse */
    if (!bv)
        return -ENOMEM;
    *bv = (struct fuse_bufvec)FUSE_BUFVEC_INIT(0);
    *bufp = bv;
    if ((uint64_t)off >= f->meta.size || size == 0)
        return 0;
    uint64_t len = f->meta.size - (uint64_t)off;
    if (len > size)
        len = size;
    for (int tries = 0; tries < FS_READ_TRIES; tries++) {
        int rc = fetch_for_read(m, h, (uint64_t)off, len);
        if (rc < 0)
            return rc;
        rc = reply_from_store(m, h, (uint64_t)off, len, bv);
        if (rc != -EAGAIN)
            return rc;
    }
    log_warn("%s: read of %zu bytes at %lld: its blocks went again each time they came "
             "(a cache limit too small for this read?)", f->meta.name, (size_t)len,
             (long long)off);
    return -EIO;
}

/* ---- status --------------------------------------------------------------- */

static int fs_getxattr(const char *path, const char *name, char *value, size_t size)
{
    struct fs_mount *m = current_mount();
    if (is_root(path))
        return fs_xattr_get(m, NULL, name, value, size);
    struct fs_file *f = fs_mount_find(m, path);
    return f ? fs_xattr_get(m, f, name, value, size) : -ENOENT;
}

static int fs_listxattr(const char *path, char *list, size_t size)
{
    struct fs_mount *m = current_mount();
    if (is_root(path))
        return fs_xattr_list(NULL, list, size);
    struct fs_file *f = fs_mount_find(m, path);
    return f ? fs_xattr_list(f, list, size) : -ENOENT;
}

static int fs_access(const char *path, int mask)
{
    struct fs_mount *m = current_mount();
    if (!is_root(path) && !fs_mount_find(m, path))
        return -ENOENT;
    if (mask & W_OK)
        return -EROFS;
    if ((mask & X_OK) && !is_root(path))
        return -EACCES;
    return 0;
}

/* ---- everything that would write: read-only file system ------------------- */

static int rofs_path(const char *path) { (void)path; return -EROFS; }
static int rofs_path_mode(const char *path, mode_t mode) { (void)path; (void)mode; return -EROFS; }
static int rofs_two_paths(const char *a, const char *b) { (void)a; (void)b; return -EROFS; }

static int fs_mknod(const char *path, mode_t mode, dev_t dev)
{
    (void)dev;
    return rofs_path_mode(path, mode);
}

static int fs_rename(const char *from, const char *to, unsigned int flags)
{
    (void)flags;
    return rofs_two_paths(from, to);
}

static int fs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    (void)fi;
    return rofs_path_mode(path, mode);
}

static int fs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
    (void)uid; (void)gid; (void)fi;
    return rofs_path(path);
}

static int fs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    (void)size; (void)fi;
    return rofs_path(path);
}

static int fs_write(const char *path, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    (void)buf; (void)size; (void)off; (void)fi;
    return rofs_path(path);
}

static int fs_setxattr(const char *path, const char *name, const char *value, size_t size,
                       int flags)
{
    (void)name; (void)value; (void)size; (void)flags;
    return rofs_path(path);
}

static int fs_removexattr(const char *path, const char *name)
{
    (void)name;
    return rofs_path(path);
}

static int fs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    (void)fi;
    return rofs_path_mode(path, mode);
}

static int fs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    (void)tv; (void)fi;
    return rofs_path(path);
}

static int fs_fallocate(const char *path, int mode, off_t off, off_t len,
                        struct fuse_file_info *fi)
{
    (void)mode; (void)off; (void)len; (void)fi;
    return rofs_path(path);
}

const struct fuse_operations fs_operations = {
    .init = fs_init,
    .destroy = fs_destroy,
    .getattr = fs_getattr,
    .readdir = fs_readdir,
    .statfs = fs_statfs,
    .open = fs_open,
    .read_buf = fs_read_buf,
    .release = fs_release,
    .getxattr = fs_getxattr,
    .listxattr = fs_listxattr,
    .access = fs_access,
    .mknod = fs_mknod,
    .mkdir = rofs_path_mode,
    .unlink = rofs_path,
    .rmdir = rofs_path,
    .symlink = rofs_two_paths,
    .rename = fs_rename,
    .link = rofs_two_paths,
    .chmod = fs_chmod,
    .chown = fs_chown,
    .truncate = fs_truncate,
    .write = fs_write,
    .setxattr = fs_setxattr,
    .removexattr = fs_removexattr,
    .create = fs_create,
    .utimens = fs_utimens,
    .fallocate = fs_fallocate,
};
