/* The files of a mount, from the command line's sources: .cascade files
 * and folders (every *.cascade directly inside). Each is loaded and
 * validated before anything is mounted, so a bad file is a clear error
 * at the prompt, not an EIO later. */
#ifndef FS_FILES_H
#define FS_FILES_H

#include <stddef.h>

#include "fs/fs_ops.h"

/* Load every source into *out (sorted by name, no store or fetcher yet).
 * Refuses malformed .cascade files, a folder without any, two files with
 * one name, and one file given twice. 0 or -1 with a message. */
int fs_files_load(char *const *sources, size_t n_sources, struct fs_file **out,
                  size_t *n_out, char *err, size_t errlen);

/* Frees names and metadata (stores and fetchers must be closed already). */
void fs_files_free(struct fs_file *files, size_t n);

#endif
