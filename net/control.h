/* The control socket: how `cascade status` finds and asks every running
 * cascadefs mount and `cascade seed` of the user, without a mount path.
 *
 * Where: each process listens on a unix stream socket named <pid>.sock in
 * $XDG_RUNTIME_DIR/cascade/ when XDG_RUNTIME_DIR is set (an absolute
 * path), else in <cache root>/run/ (the folder its block store uses). The
 * folder is made 0700, the socket 0600; it is removed when the server
 * stops. A socket left behind by a killed process answers nothing: a
 * client that finds nobody listening (ECONNREFUSED: control_query says
 * CONTROL_STALE) removes it (control_remove_stale).
 *
 * Protocol (one exchange per connection): the client sends one JSON
 * object on one line, such as {"query":"status"}; the server answers one
 * JSON object on one line and closes. An answer with an "error" key (a
 * string) means the request was refused: bad JSON, no "query", an unknown
 * query. Every query is read-only. Only a client with the server's own uid
 * (SO_PEERCRED) is answered; anyone else is closed on at once. A request
 * must arrive whole within CONTROL_IO_TIMEOUT_MS, and the answer go out
 * within it again, so a stuck client holds the server at most that long;
 * the server answers one client at a time.
 *
 * The server is one thread (cascade-ctl) that also calls a tick function
 * about every CONTROL_TICK_MS (the status samples its counters there), so
 * the process needs no other timer for it. */
#ifndef NET_CONTROL_H
#define NET_CONTROL_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "net/cli/json.h"
#include "net/cli/json_read.h"

#define CONTROL_REQUEST_MAX 4096          /* bytes of a request */
#define CONTROL_ANSWER_MAX (64u << 20)    /* bytes of an answer a client accepts */
#define CONTROL_IO_TIMEOUT_MS 2000
#define CONTROL_TICK_MS 1000
#define CONTROL_DIRS_MAX 2

/* Write the answer to request (an object with a string "query") as one
 * JSON object: json_object_begin(j, NULL) ... json_object_end(j). For a
 * query it does not know, write {"error": "..."}. */
typedef void (*control_answer_fn)(void *ctx, const char *query, const struct json_value *request,
                                  struct json_writer *j);
/* Called on the server's thread about every CONTROL_TICK_MS. */
typedef void (*control_tick_fn)(void *ctx, uint64_t now_ms);

struct control_config {
    const char *cache_root;      /* NULL: the store's default (for the fallback folder) */
    control_answer_fn answer;
    control_tick_fn tick;        /* NULL: none */
    void *ctx;
};

struct control_server;

/* Make the folder, listen on <pid>.sock there (an old socket of that name
 * is removed first: no other live process has our pid), start the thread.
 * 0, or -1 with a message (no folder to put it in, path too long, ...). */
int control_server_start(const struct control_config *cfg, struct control_server **out,
                         char *err, size_t errlen);
/* The socket's path. */
const char *control_server_path(const struct control_server *s);
/* Stop the thread, close and remove the socket. NULL is fine. */
void control_server_stop(struct control_server *s);

/* The folders sockets may be in, in the order searched: the runtime one
 * (when XDG_RUNTIME_DIR is set), then <cache_root>/run (cache_root NULL:
 * the default). Returns how many (0..CONTROL_DIRS_MAX). */
size_t control_dirs(const char *cache_root, char dirs[CONTROL_DIRS_MAX][PATH_MAX]);

enum control_query_result {
    CONTROL_OK = 0,
    CONTROL_ERROR = -1,          /* the message says why */
    CONTROL_STALE = -2,          /* nobody listens there (a killed process's socket) */
};

/* Send request (one JSON text, no newline) to the socket at path and read
 * the answer (malloc'd, NUL-terminated, the newline stripped) into *answer,
 * all within timeout_ms. The server must run with our uid. CONTROL_OK,
 * CONTROL_STALE (also when the socket vanished meanwhile), or
 * CONTROL_ERROR with a message. */
int control_query(const char *path, const char *request, int timeout_ms, char **answer,
                  char *err, size_t errlen);

/* Remove a stale socket (after CONTROL_STALE): only a socket file named
 * like ours is removed. 0, or -1 (errno set). */
int control_remove_stale(const char *path);

/* The sockets named <pid>.sock in dirs: paths (malloc'd, each and the
 * array), in order of pid, each pid once (the first folder wins). A
 * missing folder is no error. 0, or -1 when out of memory. */
int control_scan(char dirs[][PATH_MAX], size_t n_dirs, char ***paths, size_t *n_paths);
void control_scan_free(char **paths, size_t n_paths);

#endif
