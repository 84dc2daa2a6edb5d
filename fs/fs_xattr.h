/* Status of a mount as extended attributes (read-only), for people
 * (`getfattr -d -m user.cascade FILE`) and for `cascade status`.
 *
 * On each file, values as decimal or hex text without a newline:
 *   user.cascade.cascade_hash     hex SHA-256 of the .cascade file
 *   user.cascade.size             bytes of the data file
 *   user.cascade.block_size       bytes per block
 *   user.cascade.blocks_total     blocks in the file
 *   user.cascade.blocks_held      blocks held and verified locally
 *   user.cascade.peers_known      peers the fetcher knows of
 *   user.cascade.peers_connected  peers it has a connection to
 *   user.cascade.bytes_fetched    verified bytes fetched by this mount
 *   user.cascade.bytes_served     block bytes served to peers by this mount
 *   user.cascade.map              held-block map: one character per block,
 *                                 '#' held, '.' not; above FS_XATTR_MAP_MAX
 *                                 blocks each character stands for a run of
 *                                 blocks: '#' all held, '+' some, '.' none
 * On the root folder:
 *   user.cascade.files            number of files in the mount
 *   user.cascade.server           IP:PORT this mount serves blocks on
 */
#ifndef FS_XATTR_H
#define FS_XATTR_H

#include <stddef.h>

#include "fs/fs_ops.h"

#define FS_XATTR_PREFIX "user.cascade."
#define FS_XATTR_MAP_MAX 4096

/* getxattr for a file (f) or the root (f NULL). Returns the value's length
 * (only measuring when size is 0), -ENODATA for an unknown name, -ERANGE
 * when size is too small. */
int fs_xattr_get(struct fs_mount *m, struct fs_file *f, const char *name,
                 char *value, size_t size);

/* listxattr: the names above, NUL-separated. Same return convention. */
int fs_xattr_list(struct fs_file *f, char *list, size_t size);

#endif
