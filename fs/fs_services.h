/* What runs behind a mount: a store per file, one block server serving
 * them all, and a fetcher per file that subscribes to the tracker with the
 * server's real port. Started after the process has gone to the background
 * (threads do not survive fork) and before the mount appears; stopped after
 * the FUSE loop has ended, so every socket is closed and every held mark is
 * durable when the process exits. */
#ifndef FS_SERVICES_H
#define FS_SERVICES_H

#include <stddef.h>

#include "fs/fs_ops.h"
#include "fs/fs_options.h"

/* Open stores (adopting opts->data when given), start the server and the
 * fetchers (and the fill when asked). On failure everything started is
 * stopped again. 0 or -1 with a message. */
int fs_services_start(struct fs_mount *m, const struct fs_options *opts,
                      char *err, size_t errlen);

/* Fetchers first (no more writes), then the server, then the stores
 * (flushing their records). Safe on a partly started mount. */
void fs_services_stop(struct fs_mount *m);

#endif
