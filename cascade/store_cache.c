/* A cache folder as a whole: see store_cache.h. */
#include "cascade/store_cache.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cascade/bitmap.h"
#include "cascade/store.h"
#include "cascade/store_record.h"
#include "cascade/util.h"

/* ---- the limit ---- */

/* The filesystem size under path, or of the nearest existing folder above. */
static int fs_size_of(const char *path, uint64_t *out)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    for (;;) {
        struct statvfs sv;
        if (statvfs(p, &sv) == 0) {
            *out = (uint64_t)sv.f_blocks * sv.f_frsize;
            return 0;
        }
        char *slash = strrchr(p, '/');
        if (!slash)
            return -1;
        if (slash == p) {
            if (p[1] == '\0')
                return -1;
            p[1] = '\0';
        } else {
            *slash = '\0';
        }
    }
}

static int parse_percent(const char *arg, const char *root, uint64_t *out, char *err,
                         size_t errlen)
{
    char *end;
    errno = 0;
    double pct = strtod(arg, &end);
    if (errno || end == arg || strcmp(end, "%") != 0 || !(pct > 0) || pct > 100) {
        cascade_errf(err, errlen, "bad cache size '%s': give a percentage above 0 and at "
                     "most 100, like 10%%", arg);
        return -1;
    }
    char dir[PATH_MAX];
    uint64_t fs;
    if (cascade_cache_root(root, dir, sizeof dir, err, errlen) != 0)
        return -1;
    if (fs_size_of(dir, &fs) != 0) {
        cascade_errf(err, errlen, "cache size %s: cannot tell the size of the filesystem of %s",
                     arg, dir);
        return -1;
    }
    *out = (uint64_t)((double)fs * pct / 100.0);
    return 0;
}

/* cascade_parse_size, and T or TiB. */
static int parse_bytes(const char *arg, uint64_t *out)
{
    char num[64];
    size_t len = strlen(arg), cut = 0;
    if (len > 1 && strchr("tT", arg[len - 1]))
        cut = 1;
    else if (len > 3 && !strcasecmp(arg + len - 3, "tib"))
        cut = 3;
    if (!cut)
        return cascade_parse_size(arg, out);
    uint64_t v;
    if (len - cut >= sizeof num)
        return -1;
    snprintf(num, sizeof num, "%.*s", (int)(len - cut), arg);
    if (cascade_parse_size(num, &v) != 0 || v > (UINT64_MAX >> 40))
        return -1;
    *out = v << 40;
    return 0;
}

int cascade_cache_parse_limit(const char *arg, const char *root, uint64_t *out,
                              char *err, size_t errlen)
{
    if (!arg || !*arg) {
        cascade_errf(err, errlen, "empty cache size");
        return -1;
    }
    int rc;
    size_t len = strlen(arg);
    if (arg[len - 1] == '%') {
        rc = parse_percent(arg, root, out, err, errlen);
    } else {
        rc = parse_bytes(arg, out);
        if (rc != 0)
            cascade_errf(err, errlen, "bad cache size '%s': give bytes with K, M, G or T, "
                         "or a percentage of the disk, like 20G or 10%%", arg);
    }
    if (rc == 0 && *out == 0) {
        cascade_errf(err, errlen, "cache size '%s' is zero: give at least a few blocks", arg);
        return -1;
    }
    return rc;
}

/* ---- entries ---- */

int cascade_cache_root(const char *root, char *out, size_t outlen, char *err, size_t errlen)
{
    if (root) {
        if (snprintf(out, outlen, "%s", root) >= (int)outlen) {
            cascade_errf(err, errlen, "cache folder path too long");
            return -1;
        }
        return 0;
    }
    if (cascade_store_default_root(out, outlen) != 0) {
        cascade_errf(err, errlen, "no cache folder: set XDG_CACHE_HOME or HOME, or give one");
        return -1;
    }
    return 0;
}

static bool is_hash_name(const char *s)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return false;
    return i == CASCADE_HASH_LEN * 2;
}

/* A small text file's contents (NULL when absent). */
static char *read_small(const char *dir, const char *name)
{
    char *path = cascade_path_join(dir, name);
    FILE *fp = path ? fopen(path, "re") : NULL;
    free(path);
    if (!fp)
        return NULL;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return n ? strdup(buf) : NULL;
}

/* Held blocks and bytes from the record's own header. */
static void entry_read_record(struct cascade_cache_entry *e)
{
    char *path = cascade_path_join(e->dir, "held");
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) : -1;
    free(path);
    if (fd < 0)
        return;
    uint8_t h[CASCADE_RECORD_HEADER_LEN];
    struct stat sb;
    if (fstat(fd, &sb) == 0 && cascade_pread_full(fd, h, sizeof h, 0) == 0 &&
        !memcmp(h, CASCADE_RECORD_MAGIC, 8)) {
        uint64_t size = cascade_get_be64(h + 16), bs = cascade_get_be64(h + 24);
        uint64_t count = cascade_get_be64(h + 32);
        size_t len = bitmap_bytes(count);
        uint8_t *bits = bs && (uint64_t)sb.st_size == sizeof h + len ? malloc(len + 1) : NULL;
        if (bits && cascade_pread_full(fd, bits, len, sizeof h) == 0) {
            if (count % 8)
                bits[len - 1] &= (uint8_t)((1u << (count % 8)) - 1);
            e->size = size;
            e->block_size = bs;
            e->held_blocks = bitmap_count(bits, len);
            e->held_bytes = e->held_blocks * bs;
            if (count && bitmap_get(bits, count - 1))
                e->held_bytes -= count * bs - size;
        }
        free(bits);
    }
    close(fd);
}

/* The latest use in the recency file, else the record's mtime. */
static void entry_read_use(struct cascade_cache_entry *e)
{
    char *path = cascade_path_join(e->dir, "recency");
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) : -1;
    free(path);
    uint8_t buf[8 * 512];
    uint64_t off = 32;
    ssize_t got;
    while (fd >= 0 && (got = pread(fd, buf, sizeof buf, (off_t)off)) > 0) {
        for (ssize_t i = 0; i + 8 <= got; i += 8) {
            uint64_t ms = cascade_get_be64(buf + i);
            if (ms > e->last_use_ms)
                e->last_use_ms = ms;
        }
        off += (uint64_t)got - (uint64_t)got % 8;
        if (got < 8)
            break;
    }
    if (fd >= 0)
        close(fd);
    struct stat sb;
    char *held = cascade_path_join(e->dir, "held");
    if (e->last_use_ms == 0 && held && stat(held, &sb) == 0)
        e->last_use_ms = (uint64_t)sb.st_mtim.tv_sec * 1000 + (uint64_t)sb.st_mtim.tv_nsec / 1000000;
    free(held);
}

static void entry_read_disk(struct cascade_cache_entry *e)
{
    DIR *d = opendir(e->dir);
    struct dirent *de;
    e->user_data = true;
    while (d && (de = readdir(d)) != NULL) {
        struct stat sb;
        if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        e->disk_bytes += (uint64_t)sb.st_blocks * 512;
        if (!strcmp(de->d_name, "data"))
            e->user_data = false;
    }
    if (d)
        closedir(d);
}

int cascade_cache_lock(const char *dir)
{
    char *path = cascade_path_join(dir, "held");
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) : -1;
    free(path);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int saved = errno == EWOULDBLOCK ? EBUSY : errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

void cascade_cache_unlock(int fd)
{
    if (fd >= 0)
        close(fd);
}

static int entry_load(const char *root, const char *hex, struct cascade_cache_entry *e)
{
    memset(e, 0, sizeof *e);
    memcpy(e->hex, hex, sizeof e->hex - 1);   /* is_hash_name: exactly that long */
    if (!(e->dir = cascade_path_join(root, hex)))
        return -1;
    e->name = read_small(e->dir, "name");
    if (e->name)
        e->name[strcspn(e->name, "\n")] = '\0';
    char *copy = cascade_path_join(e->dir, "cascade");
    char chex[CASCADE_HASH_LEN * 2 + 1];
    if (copy && cascade_meta_load(copy, &e->meta, NULL, 0) == 0) {
        cascade_hex(e->meta.cascade_hash, CASCADE_HASH_LEN, chex);
        e->have_meta = !strcmp(chex, hex);
        if (!e->have_meta)
            cascade_meta_free(&e->meta);
    }
    free(copy);
    entry_read_record(e);
    entry_read_use(e);
    entry_read_disk(e);
    int fd = cascade_cache_lock(e->dir);
    e->in_use = fd < 0 && errno == EBUSY;
    cascade_cache_unlock(fd);
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    const struct cascade_cache_entry *x = a, *y = b;
    int c = strcmp(x->name ? x->name : "", y->name ? y->name : "");
    return c ? c : strcmp(x->hex, y->hex);
}

int cascade_cache_list(const char *root, struct cascade_cache_entry **out, size_t *n,
                       char *err, size_t errlen)
{
    char dir[PATH_MAX];
    *out = NULL;
    *n = 0;
    if (cascade_cache_root(root, dir, sizeof dir, err, errlen) != 0)
        return -1;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        cascade_errf(err, errlen, "cannot read the cache folder %s: %s", dir, strerror(errno));
        return -1;
    }
    struct cascade_cache_entry *v = NULL;
    size_t cap = 0;
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!is_hash_name(de->d_name))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            struct cascade_cache_entry *g = realloc(v, cap * sizeof *v);
            if (!g) {
                rc = -1;
                break;
            }
            v = g;
        }
        rc = entry_load(dir, de->d_name, &v[*n]);
        if (rc == 0)
            (*n)++;
    }
    closedir(d);
    if (rc != 0) {
        cascade_cache_list_free(v, *n);
        *n = 0;
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    if (*n)
        qsort(v, *n, sizeof *v, entry_cmp);
    *out = v;
    return 0;
}

void cascade_cache_list_free(struct cascade_cache_entry *entries, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(entries[i].dir);
        free(entries[i].name);
        if (entries[i].have_meta)
            cascade_meta_free(&entries[i].meta);
    }
    free(entries);
}

int cascade_cache_remove(const char *dir, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        cascade_errf(err, errlen, "cannot read %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) != 0 && rc == 0) {
            cascade_errf(err, errlen, "cannot remove %s/%s: %s", dir, de->d_name,
                         strerror(errno));
            rc = -1;
        }
    }
    closedir(d);
    if (rc == 0 && rmdir(dir) != 0) {
        cascade_errf(err, errlen, "cannot remove %s: %s", dir, strerror(errno));
        rc = -1;
    }
    return rc;
}
