/* The .cascade files of a folder: see folder.h. */
#include "cascade/folder.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cascade/util.h"

#define CASCADE_SUFFIX ".cascade"

bool cascade_folder_is_cascade_name(const char *name)
{
    size_t len = strlen(name), slen = strlen(CASCADE_SUFFIX);
    return len > slen && !strcmp(name + len - slen, CASCADE_SUFFIX);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cascade_folder_list(const char *dir, char ***paths, size_t *n, char *err, size_t errlen)
{
    *paths = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        cascade_errf(err, errlen, "cannot read folder %s: %s", dir, strerror(errno));
        return -1;
    }
    char **list = NULL;
    size_t count = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (!cascade_folder_is_cascade_name(e->d_name))
            continue;
        if (count == cap) {
            size_t grown_cap = cap ? 2 * cap : 16;
            char **grown = realloc(list, grown_cap * sizeof *grown);
            if (!grown) {
                rc = -1;
                break;
            }
            list = grown;
            cap = grown_cap;
        }
        if (!(list[count] = cascade_path_join(dir, e->d_name))) {
            rc = -1;
            break;
        }
        count++;
    }
    closedir(d);
    if (rc != 0) {
        cascade_folder_free(list, count);
        cascade_errf(err, errlen, "out of memory listing %s", dir);
        return -1;
    }
    if (count > 1)
        qsort(list, count, sizeof *list, compare_strings);
    *paths = list;
    *n = count;
    return 0;
}

void cascade_folder_free(char **paths, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}
