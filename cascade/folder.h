/* The .cascade files of a folder: every entry named NAME.cascade directly
 * inside it (NAME not empty), in name order. Used by a folder mount and by
 * the tracker's --allow FOLDER. Which entries are regular files is left to
 * the caller (it opens each one anyway). */
#ifndef CASCADE_FOLDER_H
#define CASCADE_FOLDER_H

#include <stdbool.h>
#include <stddef.h>

/* NAME.cascade with a non-empty NAME. */
bool cascade_folder_is_cascade_name(const char *name);

/* The paths "dir/NAME.cascade", sorted; *paths is malloc'd (free with
 * cascade_folder_free). An empty folder gives 0 paths, not an error.
 * 0, or -1 with a message (cannot read the folder, out of memory). */
int cascade_folder_list(const char *dir, char ***paths, size_t *n, char *err, size_t errlen);
void cascade_folder_free(char **paths, size_t n);

#endif
