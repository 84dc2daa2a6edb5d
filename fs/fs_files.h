/* The files of a mount, from the command line's sources: .cascade files
 * and folders (every *.cascade directly inside). Each is loaded and
 * validated before anything is mounted, so a bad file is a clear error
 * at the prompt (or a warning), not an EIO later.
 *
 * A file named on the command line must be good: a bad one, one that
 * would show as "." or "..", and two named files with one name or one
 * cascade hash refuse the mount. A file found in a folder is skipped with
 * a warning (log_warn, one line each, the first 50) when it is bad (not a
 * regular file, unreadable, malformed), would show as "." or "..", or
 * clashes with a file already kept: named files first, then each folder's
 * files in name order, so the first one wins. A folder is refused when it
 * holds no .cascade file that loads. */
#ifndef FS_FILES_H
#define FS_FILES_H

#include <stddef.h>

#include "fs/fs_ops.h"

/* Load every source into *out (sorted by name, no store or fetcher yet),
 * by the rules above. 0, or -1 with a message (usage or input error). */
int fs_files_load(char *const *sources, size_t n_sources, struct fs_file **out,
                  size_t *n_out, char *err, size_t errlen);

/* Frees names and metadata (stores and fetchers must be closed already). */
void fs_files_free(struct fs_file *files, size_t n);

#endif
