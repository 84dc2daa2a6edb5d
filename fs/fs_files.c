/* The files of a mount: see fs_files.h. */
#include "fs/fs_files.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cascade/folder.h"
#include "cascade/util.h"

/* A growing list of .cascade paths. */
struct path_list {
    char **paths;
    size_t n;
};

static int path_list_add(struct path_list *l, const char *dir, const char *name)
{
    char **grown = realloc(l->paths, (l->n + 1) * sizeof *grown);
    if (!grown)
        return -1;
    l->paths = grown;
    size_t len = (dir ? strlen(dir) + 1 : 0) + strlen(name) + 1;
    char *p = malloc(len);
    if (!p)
        return -1;
    if (dir)
        snprintf(p, len, "%s/%s", dir, name);
    else
        snprintf(p, len, "%s", name);
    l->paths[l->n++] = p;
    return 0;
}

static void path_list_free(struct path_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->paths[i]);
    free(l->paths);
}

/* Every *.cascade directly inside dir, in name order. */
static int add_folder(struct path_list *l, const char *dir, char *err, size_t errlen)
{
    char **paths;
    size_t n;
    if (cascade_folder_list(dir, &paths, &n, err, errlen) != 0)
        return -1;
    if (n == 0) {
        cascade_errf(err, errlen, "folder %s holds no .cascade files", dir);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (path_list_add(l, NULL, paths[i]) != 0) {
            cascade_folder_free(paths, n);
            cascade_errf(err, errlen, "out of memory");
            return -1;
        }
    cascade_folder_free(paths, n);
    return 0;
}

static int collect_paths(char *const *sources, size_t n, struct path_list *l,
                         char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        struct stat sb;
        if (stat(sources[i], &sb) != 0) {
            cascade_errf(err, errlen, "%s: %s", sources[i], strerror(errno));
            return -1;
        }
        if (S_ISDIR(sb.st_mode)) {
            if (add_folder(l, sources[i], err, errlen) != 0)
                return -1;
        } else if (path_list_add(l, NULL, sources[i]) != 0) {
            cascade_errf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

static int load_one(const char *path, struct fs_file *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    if (cascade_meta_load(path, &f->meta, err, errlen) != 0)
        return -1;   /* the message names the file */
    if (!(f->cascade_path = strdup(path))) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    if (!f->meta.name || !f->meta.name[0] || strlen(f->meta.name) > 255) {
        cascade_errf(err, errlen, "%s: cannot make a file name from this path", path);
        return -1;
    }
    cascade_hex(f->meta.cascade_hash, CASCADE_HASH_LEN, f->hash_hex);
    struct stat sb;
    f->mtime = stat(path, &sb) == 0 ? sb.st_mtime : 0;
    return 0;
}

static int compare_files(const void *a, const void *b)
{
    const struct fs_file *fa = a, *fb = b;
    return strcmp(fa->meta.name, fb->meta.name);
}

/* Names must be unique (one entry each) and so must cascade hashes (one
 * store, one server registration each). Files are sorted by name. */
static int check_unique(const struct fs_file *files, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (!strcmp(files[i].meta.name, files[i + 1].meta.name)) {
            cascade_errf(err, errlen, "%s and %s would both show as '%s'",
                         files[i].cascade_path, files[i + 1].cascade_path, files[i].meta.name);
            return -1;
        }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (!memcmp(files[i].meta.cascade_hash, files[j].meta.cascade_hash,
                        CASCADE_HASH_LEN)) {
                cascade_errf(err, errlen, "%s and %s describe the same file (cascade hash %s)",
                             files[i].cascade_path, files[j].cascade_path, files[i].hash_hex);
                return -1;
            }
    return 0;
}

int fs_files_load(char *const *sources, size_t n_sources, struct fs_file **out,
                  size_t *n_out, char *err, size_t errlen)
{
    struct path_list l = {0};
    struct fs_file *files = NULL;
    size_t loaded = 0;
    if (collect_paths(sources, n_sources, &l, err, errlen) != 0)
        goto fail;
    if (!(files = calloc(l.n + 1, sizeof *files))) {
        cascade_errf(err, errlen, "out of memory");
        goto fail;
    }
    for (; loaded < l.n; loaded++)
        if (load_one(l.paths[loaded], &files[loaded], err, errlen) != 0) {
            loaded++;   /* free what load_one got to */
            goto fail;
        }
    qsort(files, loaded, sizeof *files, compare_files);
    if (check_unique(files, loaded, err, errlen) != 0)
        goto fail;
    path_list_free(&l);
    *out = files;
    *n_out = loaded;
    return 0;
fail:
    fs_files_free(files, loaded);
    path_list_free(&l);
    return -1;
}

void fs_files_free(struct fs_file *files, size_t n)
{
    if (!files)
        return;
    for (size_t i = 0; i < n; i++) {
        free(files[i].cascade_path);
        cascade_meta_free(&files[i].meta);
    }
    free(files);
}
