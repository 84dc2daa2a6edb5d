/* The status attributes of a mount (names and meanings in
 * net/status_xattr.h), answered from the mount's node. */
#ifndef FS_XATTR_H
#define FS_XATTR_H

#include <stddef.h>

#include "fs/fs_ops.h"
#include "net/status_xattr.h"


/* getxattr for a file (f) or the root (f NULL). Returns the value's length
 * (only measuring when size is 0), -ENODATA for an unknown name, -ERANGE
 * when size is too small. */
int fs_xattr_get(struct fs_mount *m, struct fs_file *f, const char *name,
                 char *value, size_t size);

/* listxattr: the names above, NUL-separated. Same return convention. */
int fs_xattr_list(struct fs_file *f, char *list, size_t size);

#endif
