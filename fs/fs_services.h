/* What runs behind a mount: one peer node (net/node.h) holding every file
 * of the mount. Files join their swarm when first opened; with -o data the
 * file is verified at start (then served), with -o fill every file is
 * queued to be filled. Started after the process has gone to the background
 * (threads do not survive fork) and before the mount appears; stopped after
 * the FUSE loop has ended, so every socket is closed and every held mark is
 * durable when the process exits. */
#ifndef FS_SERVICES_H
#define FS_SERVICES_H

#include <stddef.h>

#include "fs/fs_ops.h"
#include "fs/fs_options.h"

/* Start the node and add every file (verifying opts->data, queueing every
 * file for a fill), then answer `cascade status` on a control socket (see
 * net/control.h; a warning when it cannot). On failure everything started
 * is stopped again. 0 or -1 with a message. */
int fs_services_start(struct fs_mount *m, const struct fs_options *opts,
                      char *err, size_t errlen);

/* Stop the node (which stops in order and makes every mark durable).
 * Safe on a partly started mount. */
void fs_services_stop(struct fs_mount *m);

#endif
