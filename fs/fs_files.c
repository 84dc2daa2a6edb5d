/* The files of a mount: see fs_files.h. */
#include "fs/fs_files.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cascade/folder.h"
#include "cascade/log.h"
#include "cascade/util.h"

/* A folder of thousands of bad files must not flood the log: past this
 * many, skipped files are only counted. */
#define FS_FILES_MAX_WARNINGS 50

/* The files kept so far (in the order they came) and the skipped count. */
struct loader {
    struct fs_file *files;
    size_t n, cap;
    size_t skipped;
};

static void file_free(struct fs_file *f)
{
    free(f->cascade_path);
    cascade_meta_free(&f->meta);
    f->cascade_path = NULL;
}

/* The name a file shows as must be one entry of a flat folder. */
static int check_name(const char *path, const char *name, char *err, size_t errlen)
{
    if (!name[0] || !strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/')) {
        cascade_errf(err, errlen, "%s would show as '%s', which cannot be a file name",
                     path, name);
        return -1;
    }
    if (strlen(name) > 255) {
        cascade_errf(err, errlen, "%s: a file name of %zu bytes is too long (255 at most)",
                     path, strlen(name));
        return -1;
    }
    return 0;
}

/* Load and check one .cascade file into *f (left empty on failure). */
static int load_one(const char *path, struct fs_file *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    if (cascade_meta_load(path, &f->meta, err, errlen) != 0)
        return -1;   /* the message names the file */
    if (!f->meta.name || !(f->cascade_path = strdup(path))) {
        cascade_errf(err, errlen, "out of memory");
        file_free(f);
        return -1;
    }
    if (check_name(path, f->meta.name, err, errlen) != 0) {
        file_free(f);
        return -1;
    }
    cascade_hex(f->meta.cascade_hash, CASCADE_HASH_LEN, f->hash_hex);
    struct stat sb;
    f->mtime = stat(path, &sb) == 0 ? sb.st_mtime : 0;
    return 0;
}

/* Names must be unique (one entry each) and so must cascade hashes (one
 * store, one server registration each): true, with a message, when f
 * clashes with a file already kept. */
static bool clashes(const struct loader *ld, const struct fs_file *f, char *err, size_t errlen)
{
    for (size_t i = 0; i < ld->n; i++) {
        const struct fs_file *k = &ld->files[i];
        if (!memcmp(k->meta.cascade_hash, f->meta.cascade_hash, CASCADE_HASH_LEN)) {
            cascade_errf(err, errlen, "%s and %s describe the same file (cascade hash %s)",
                         k->cascade_path, f->cascade_path, f->hash_hex);
            return true;
        }
        if (!strcmp(k->meta.name, f->meta.name)) {
            cascade_errf(err, errlen, "%s and %s would both show as '%s'",
                         k->cascade_path, f->cascade_path, f->meta.name);
            return true;
        }
    }
    return false;
}

/* Keep f (moved into the list). */
static int keep(struct loader *ld, struct fs_file *f, char *err, size_t errlen)
{
    if (ld->n == ld->cap) {
        size_t cap = ld->cap ? 2 * ld->cap : 16;
        struct fs_file *grown = realloc(ld->files, cap * sizeof *grown);
        if (!grown) {
            cascade_errf(err, errlen, "out of memory");
            return -1;
        }
        ld->files = grown;
        ld->cap = cap;
    }
    ld->files[ld->n++] = *f;
    return 0;
}

/* A file named on the command line: any problem refuses the mount. */
static int add_named(struct loader *ld, const char *path, char *err, size_t errlen)
{
    struct fs_file f;
    if (load_one(path, &f, err, errlen) != 0)
        return -1;
    if (clashes(ld, &f, err, errlen) || keep(ld, &f, err, errlen) != 0) {
        file_free(&f);
        return -1;
    }
    return 0;
}

/* why names the file, unless it names two: then path says which one. */
static void warn_skipped(struct loader *ld, const char *why, const char *path)
{
    if (ld->skipped++ < FS_FILES_MAX_WARNINGS)
        log_warn("%s; skipped%s%s", why, path ? " " : "", path ? path : "");
}

/* A file found in a folder: a bad or clashing one is skipped with a
 * warning. *usable counts the files that loaded. -1 only when out of memory. */
static int add_found(struct loader *ld, const char *path, size_t *usable,
                     char *err, size_t errlen)
{
    struct fs_file f;
    char why[CASCADE_ERRLEN];
    if (load_one(path, &f, why, sizeof why) != 0) {
        warn_skipped(ld, why, NULL);
        return 0;
    }
    (*usable)++;
    if (clashes(ld, &f, why, sizeof why)) {
        warn_skipped(ld, why, path);
        file_free(&f);
        return 0;
    }
    if (keep(ld, &f, err, errlen) != 0) {
        file_free(&f);
        return -1;
    }
    return 0;
}

/* Every *.cascade directly inside dir, in name order; the folder is
 * refused only when none of them can be mounted. */
static int add_folder(struct loader *ld, const char *dir, char *err, size_t errlen)
{
    char **paths;
    size_t n, usable = 0;
    int rc = 0;
    if (cascade_folder_list(dir, &paths, &n, err, errlen) != 0)
        return -1;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = add_found(ld, paths[i], &usable, err, errlen);
    cascade_folder_free(paths, n);
    if (rc == 0 && n == 0) {
        cascade_errf(err, errlen, "folder %s holds no .cascade files", dir);
        rc = -1;
    } else if (rc == 0 && usable == 0) {
        cascade_errf(err, errlen, "none of the %zu .cascade files in folder %s can be "
                     "mounted (see the warnings above)", n, dir);
        rc = -1;
    }
    return rc;
}

/* Named files first, so that they win every clash with a found one. */
static int load_sources(char *const *sources, size_t n, struct loader *ld,
                        char *err, size_t errlen)
{
    bool *is_dir = calloc(n + 1, sizeof *is_dir);
    int rc = 0;
    if (!is_dir) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct stat sb;
        if (stat(sources[i], &sb) != 0) {
            cascade_errf(err, errlen, "%s: %s", sources[i], strerror(errno));
            rc = -1;
        } else if (!(is_dir[i] = S_ISDIR(sb.st_mode))) {
            rc = add_named(ld, sources[i], err, errlen);
        }
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (is_dir[i])
            rc = add_folder(ld, sources[i], err, errlen);
    free(is_dir);
    if (ld->skipped > FS_FILES_MAX_WARNINGS)
        log_warn("%zu more .cascade files skipped (only the first %d are listed)",
                 ld->skipped - FS_FILES_MAX_WARNINGS, FS_FILES_MAX_WARNINGS);
    return rc;
}

static int compare_files(const void *a, const void *b)
{
    const struct fs_file *fa = a, *fb = b;
    return strcmp(fa->meta.name, fb->meta.name);
}

int fs_files_load(char *const *sources, size_t n_sources, struct fs_file **out,
                  size_t *n_out, char *err, size_t errlen)
{
    struct loader ld = {0};
    if (load_sources(sources, n_sources, &ld, err, errlen) != 0) {
        fs_files_free(ld.files, ld.n);
        return -1;
    }
    if (ld.n == 0) {
        cascade_errf(err, errlen, "no .cascade files given");
        return -1;
    }
    qsort(ld.files, ld.n, sizeof *ld.files, compare_files);
    *out = ld.files;
    *n_out = ld.n;
    return 0;
}

void fs_files_free(struct fs_file *files, size_t n)
{
    if (!files)
        return;
    for (size_t i = 0; i < n; i++)
        file_free(&files[i]);
    free(files);
}
