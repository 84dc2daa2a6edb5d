/* The status a cascadefs mount publishes as read-only extended attributes,
 * for people (`getfattr -d -m user.cascade FILE`) and for `cascade status`.
 * The names live here once: the mount (fs/fs_xattr.c) answers them and
 * `cascade status` (net/cli/cli_status.c) reads them.
 *
 * On each file, values as decimal or hex text without a newline:
 *   user.cascade.cascade_hash     hex SHA-256 of the .cascade file
 *   user.cascade.size             bytes of the data file
 *   user.cascade.block_size       bytes per block
 *   user.cascade.blocks_total     blocks in the file
 *   user.cascade.blocks_held      blocks held and verified locally
 *   user.cascade.peers_known      peers known for this file (one not connected
 *                                 that failed three times in a row is gone)
 *   user.cascade.peers_connected  of those, peers with an open connection
 *   user.cascade.bytes_fetched    verified bytes fetched by this mount
 *   user.cascade.bytes_served     block bytes served to peers by this mount
 *   user.cascade.map              held-block map: one character per block,
 *                                 '#' held, '.' not; above STATUS_XATTR_MAP_MAX
 *                                 blocks each character stands for a run of
 *                                 blocks: '#' all held, '+' some, '.' none
 * On the root folder:
 *   user.cascade.files            number of files in the mount
 *   user.cascade.server           IP:PORT this mount serves blocks on
 *   user.cascade.buffers          bytes of block buffers held now
 *   user.cascade.buffers_peak     most bytes of block buffers held at once
 *   user.cascade.buffers_limit    the bound on those bytes
 *   user.cascade.tables           bytes of the node's per-file, per-block
 *                                 and per-peer tables
 *   user.cascade.stores_open      stores (data files) open now
 *   user.cascade.control          path of the mount's control socket, where
 *                                 `cascade status` asks for its live status
 *                                 (rates, peers, trackers: net/control.h);
 *                                 absent when it could not start
 */
#ifndef NET_STATUS_XATTR_H
#define NET_STATUS_XATTR_H

#define STATUS_XATTR_PREFIX "user.cascade."
#define STATUS_XATTR_MAP_MAX 4096

#define STATUS_XATTR_CASCADE_HASH "cascade_hash"
#define STATUS_XATTR_SIZE "size"
#define STATUS_XATTR_BLOCK_SIZE "block_size"
#define STATUS_XATTR_BLOCKS_TOTAL "blocks_total"
#define STATUS_XATTR_BLOCKS_HELD "blocks_held"
#define STATUS_XATTR_PEERS_KNOWN "peers_known"
#define STATUS_XATTR_PEERS_CONNECTED "peers_connected"
#define STATUS_XATTR_BYTES_FETCHED "bytes_fetched"
#define STATUS_XATTR_BYTES_SERVED "bytes_served"
#define STATUS_XATTR_MAP "map"

#define STATUS_XATTR_FILES "files"
#define STATUS_XATTR_SERVER "server"
#define STATUS_XATTR_BUFFERS "buffers"
#define STATUS_XATTR_BUFFERS_PEAK "buffers_peak"
#define STATUS_XATTR_BUFFERS_LIMIT "buffers_limit"
#define STATUS_XATTR_TABLES "tables"
#define STATUS_XATTR_STORES_OPEN "stores_open"
#define STATUS_XATTR_CONTROL "control"

#endif
