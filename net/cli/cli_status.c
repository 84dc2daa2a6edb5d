/* `cascade status [MOUNTPOINT|FILE...]`: what running peers are doing.
 *
 * With no argument it lists every cascadefs mount and `cascade seed` of
 * the user, found by their control sockets (net/control.h): per file held
 * and total, fetch and serve rates over the last 10 s, ETA; every
 * connected peer; the trackers. With a MOUNTPOINT or FILE it reads the
 * user.cascade.* extended attributes the mount publishes (net/
 * status_xattr.h; no connection needed) and adds the live figures when
 * the mount's control socket (named by its root's user.cascade.control)
 * answers. --json prints one JSON object instead, --watch redraws. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "cascade/meta.h"
#include "cascade/progress.h"
#include "cascade/util.h"
#include "net/cli/cli.h"
#include "net/cli/json.h"
#include "net/cli/json_read.h"
#include "net/control.h"
#include "net/status_xattr.h"

#define STATUS_MAP_COLUMNS 64
#define STATUS_MAP_MAX 65536
#define STATUS_QUERY "{\"query\":\"status\"}"
#define STATUS_TIMEOUT_MS 3000
#define WATCH_DEFAULT_S 2
#define WATCH_MAX_S 3600

struct status_opts {
    bool show_map, json;
    unsigned watch_s;             /* 0: once */
    const char *cache;
    char **paths;
    int n_paths;
};

/* What one file's line shows (from xattrs or from a live answer). */
struct file_status {
    char hash[CASCADE_HEX_LEN];
    uint64_t size, block_size;
    uint64_t blocks_total, blocks_held;
    uint64_t peers_known, peers_connected;
    uint64_t bytes_fetched, bytes_served;
    char map[STATUS_MAP_MAX + 1];     /* as published; may be compressed; "" for none */
};

/* A live answer: the socket asked and the parsed object. */
struct live {
    char *socket;
    struct json_value v;
};

static void status_usage(FILE *out)
{
    fprintf(out,
        "usage: cascade status [--json] [--watch [SECONDS]] [--no-map] [--cache DIR]\n"
        "                      [MOUNTPOINT|FILE...]\n"
        "Without an argument: every running cascadefs mount and cascade seed of this\n"
        "user: per file blocks held, fetch and serve rates over the last 10 s and the\n"
        "time left; every connected peer with its bytes and rate; the trackers.\n"
        "With a MOUNTPOINT or FILE: that mount's progress (blocks held, peers, bytes\n"
        "fetched and served, a block map: '#' held, '+' partly, '.' not), with its live\n"
        "figures when the mount answers.\n"
        "  --json          print one JSON object instead (keys in cascade(1)); with a\n"
        "                  MOUNTPOINT or FILE, give only one\n"
        "  --watch [S]     show it again every S seconds (default %d) until Ctrl-C,\n"
        "                  in place on a terminal\n"
        "  --no-map        leave out the block map\n"
        "  --cache DIR     also look for peers running with --cache DIR (their control\n"
        "                  sockets are in DIR/run when XDG_RUNTIME_DIR is not set)\n"
        "  -h, --help      this text\n"
        "Exit status: 0 shown, 1 not a cascadefs mount (or unreadable), or a running\n"
        "peer did not answer, 2 bad usage.\n", WATCH_DEFAULT_S);
}

/* ---- text for people ---- */

/* s with control characters (a name could hold escape sequences) as '?'. */
static void put_clean(FILE *out, const char *s)
{
    for (; s && *s; s++)
        fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, out);
}

static void put_rate(FILE *out, const char *label, uint64_t rate)
{
    char h[32];
    cascade_human_bytes(rate, h, sizeof h);
    fprintf(out, "%s%s/s", label, h);
}

static uint64_t member_u64(const struct json_value *o, const char *key)
{
    uint64_t v = 0;
    json_member_u64(o, key, &v);
    return v;
}

/* Squeeze the published map into at most STATUS_MAP_COLUMNS characters. */
static void compress_map(const char *map, char *out)
{
    size_t len = strlen(map);
    size_t cols = len < STATUS_MAP_COLUMNS ? len : STATUS_MAP_COLUMNS;
    for (size_t c = 0; c < cols; c++) {
        size_t from = c * len / cols, to = (c + 1) * len / cols;
        size_t full = 0, empty = 0;
        for (size_t i = from; i < to; i++) {
            full += map[i] == '#';
            empty += map[i] == '.';
        }
        out[c] = full == to - from ? '#' : empty == to - from ? '.' : '+';
    }
    out[cols] = '\0';
}

static void print_status(FILE *out, const char *name, const struct file_status *st,
                         bool show_map)
{
    char fetched[32], served[32];
    cascade_human_bytes(st->bytes_fetched, fetched, sizeof fetched);
    cascade_human_bytes(st->bytes_served, served, sizeof served);
    double pct = st->blocks_total ? 100.0 * (double)st->blocks_held / (double)st->blocks_total
                                  : 100.0;
    put_clean(out, name);
    fprintf(out, "  %" PRIu64 "/%" PRIu64 " blocks (%.1f%%)  peers %" PRIu64 " known, %" PRIu64
            " connected  fetched %s  served %s\n", st->blocks_held, st->blocks_total,
            pct, st->peers_known, st->peers_connected, fetched, served);
    if (show_map && st->map[0]) {
        char line[STATUS_MAP_COLUMNS + 1];
        compress_map(st->map, line);
        fprintf(out, "  [%s]\n", line);
    }
}

/* "  fetch 1.2 MiB/s  serve 0 B/s  ETA 0:12" for a file of a live answer. */
static void print_rates(FILE *out, const struct json_value *f)
{
    put_rate(out, "  fetch ", member_u64(f, "fetch_rate"));
    put_rate(out, "  serve ", member_u64(f, "serve_rate"));
    uint64_t eta;
    if (json_member_u64(f, "eta_s", &eta)) {
        char t[24];
        cascade_progress_format_duration(eta, t, sizeof t);
        fprintf(out, "  ETA %s", t);
    }
    const char *err = json_member_string(f, "store_error");
    if (err) {
        fputs("  storing fails: ", out);
        put_clean(out, err);
    }
    fputc('\n', out);
}

static void print_peers(FILE *out, const struct json_value *o)
{
    const struct json_value *peers = json_member(o, "peers");
    for (size_t i = 0; peers && peers->type == JSON_ARRAY && i < peers->n; i++) {
        const struct json_value *p = &peers->items[i];
        const char *dir = json_member_string(p, "direction");
        bool down = dir && !strcmp(dir, "download");
        char h[32];
        cascade_human_bytes(member_u64(p, down ? "bytes_received" : "bytes_sent"), h, sizeof h);
        fputs("  peer ", out);
        put_clean(out, json_member_string(p, "address"));
        fprintf(out, "  %s  %s (%s)", down ? "download" : "upload", h,
                down ? "received" : "sent");
        put_rate(out, " at ", member_u64(p, down ? "rate_received" : "rate_sent"));
        fputc('\n', out);
    }
    uint64_t omitted = member_u64(o, "peers_omitted");
    if (omitted)
        fprintf(out, "  (%" PRIu64 " more peers)\n", omitted);
}

static void print_trackers(FILE *out, const struct json_value *o)
{
    const struct json_value *trackers = json_member(o, "trackers");
    for (size_t i = 0; trackers && trackers->type == JSON_ARRAY && i < trackers->n; i++) {
        const struct json_value *t = &trackers->items[i];
        uint64_t ago, failures = member_u64(t, "failures");
        fputs("  tracker ", out);
        put_clean(out, json_member_string(t, "address"));
        if (json_member_u64(t, "last_answer_s", &ago))
            fprintf(out, "  answered %" PRIu64 " s ago", ago);
        else
            fputs("  no answer yet", out);
        if (failures) {
            fprintf(out, "; failing (%" PRIu64 " in a row): ", failures);
            put_clean(out, json_member_string(t, "error"));
        }
        fputc('\n', out);
    }
}

/* "  cache 12.0 MiB of 64.0 MiB, 3.0 MiB evicted" (only under a limit:
 * without one the files' lines say what is held). */
static void print_cache(FILE *out, const struct json_value *o)
{
    const struct json_value *c = json_member(o, "cache");
    uint64_t max;
    if (!c || !json_member_u64(c, "max", &max))
        return;
    char held[32], lim[32], gone[32];
    cascade_human_bytes(member_u64(c, "bytes"), held, sizeof held);
    cascade_human_bytes(max, lim, sizeof lim);
    cascade_human_bytes(member_u64(c, "evicted"), gone, sizeof gone);
    fprintf(out, "  cache %s of %s, %s evicted\n", held, lim, gone);
}

/* "cascadefs (pid 42) on /mnt/x, serving on 0.0.0.0:4000, up 1:02" */
static void print_header(FILE *out, const struct json_value *o)
{
    char up[24];
    cascade_progress_format_duration(member_u64(o, "uptime_s"), up, sizeof up);
    put_clean(out, json_member_string(o, "program"));
    fprintf(out, " (pid %" PRIu64 ")", member_u64(o, "pid"));
    const char *mp = json_member_string(o, "mountpoint"), *server = json_member_string(o, "server");
    if (mp) {
        fputs(" on ", out);
        put_clean(out, mp);
    }
    if (server) {
        fputs(", serving on ", out);
        put_clean(out, server);
    }
    fprintf(out, ", up %s\n", up);
}

static void file_status_from_json(const struct json_value *f, struct file_status *st)
{
    memset(st, 0, sizeof *st);
    snprintf(st->hash, sizeof st->hash, "%s", json_member_string(f, "cascade_hash") ?
             json_member_string(f, "cascade_hash") : "");
    struct { const char *key; uint64_t *out; } nums[] = {
        {"size", &st->size}, {"block_size", &st->block_size},
        {"blocks_total", &st->blocks_total}, {"blocks_held", &st->blocks_held},
        {"peers_known", &st->peers_known}, {"peers_connected", &st->peers_connected},
        {"bytes_fetched", &st->bytes_fetched}, {"bytes_served", &st->bytes_served},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        *nums[i].out = member_u64(f, nums[i].key);
}

/* One running peer, all from its answer. */
static void print_live(FILE *out, const struct json_value *o)
{
    print_header(out, o);
    const struct json_value *files = json_member(o, "files");
    struct file_status *st = malloc(sizeof *st);
    for (size_t i = 0; st && files && files->type == JSON_ARRAY && i < files->n; i++) {
        const char *name = json_member_string(&files->items[i], "name");
        file_status_from_json(&files->items[i], st);
        print_status(out, name ? name : "(unnamed)", st, false);
        print_rates(out, &files->items[i]);
    }
    free(st);
    print_peers(out, o);
    print_trackers(out, o);
    print_cache(out, o);
}

/* ---- asking running peers ---- */

static void live_free(struct live *l)
{
    free(l->socket);
    json_value_free(&l->v);
    l->socket = NULL;
}

/* Ask the peer at socket; 1 answered (into *l), 0 stale (removed), -1
 * failed (said on err). */
static int live_ask(const char *socket, struct live *l, FILE *err)
{
    char *text, why[CASCADE_ERRLEN];
    memset(l, 0, sizeof *l);
    int rc = control_query(socket, STATUS_QUERY, STATUS_TIMEOUT_MS, &text, why, sizeof why);
    if (rc == CONTROL_STALE) {
        if (control_remove_stale(socket) < 0)
            fprintf(err, "cascade status: cannot remove the stale %s: %s\n", socket,
                    strerror(errno));
        return 0;
    }
    if (rc != CONTROL_OK) {
        fprintf(err, "cascade status: %s\n", why);
        return -1;
    }
    rc = json_parse(text, strlen(text), &l->v, why, sizeof why);
    free(text);
    const char *refused = rc == 0 ? json_member_string(&l->v, "error") : NULL;
    if (rc < 0 || refused || l->v.type != JSON_OBJECT) {
        fprintf(err, "cascade status: %s answered %s%s\n", socket, refused ? "" : "no status: ",
                refused ? refused : why);
        json_value_free(&l->v);
        return -1;
    }
    l->socket = strdup(socket);
    return l->socket ? 1 : -1;
}

/* The object of a live answer with "socket" added; files only of hash
 * when it is not NULL. */
static void write_live_json(struct json_writer *j, const struct live *l, const char *hash)
{
    json_object_begin(j, NULL);
    for (size_t i = 0; i < l->v.n; i++) {
        const struct json_value *v = &l->v.items[i];
        if (!hash || strcmp(l->v.keys[i], "files") != 0 || v->type != JSON_ARRAY) {
            json_value_write(j, l->v.keys[i], v);
            continue;
        }
        json_array_begin(j, "files");
        for (size_t k = 0; k < v->n; k++) {
            const char *h = json_member_string(&v->items[k], "cascade_hash");
            if (h && !strcmp(h, hash))
                json_value_write(j, NULL, &v->items[k]);
        }
        json_array_end(j);
    }
    json_string(j, "socket", l->socket);
    json_bool(j, "live", true);
    json_object_end(j);
}

/* Every running peer: 0 all answered, 1 when one did not. */
static int status_running(const struct status_opts *o, FILE *out, FILE *err)
{
    char dirs[CONTROL_DIRS_MAX][PATH_MAX], **sockets;
    size_t n_dirs = control_dirs(o->cache, dirs), n;
    if (control_scan(dirs, n_dirs, &sockets, &n) < 0) {
        fprintf(err, "cascade status: out of memory\n");
        return CASCADE_EXIT_FAIL;
    }
    int code = CASCADE_EXIT_OK;
    size_t shown = 0;
    struct json_writer j;
    if (o->json) {
        json_begin(&j, out);
        json_object_begin(&j, NULL);
        json_array_begin(&j, "running");
    }
    for (size_t i = 0; i < n; i++) {
        struct live l;
        int r = live_ask(sockets[i], &l, err);
        if (r < 0)
            code = CASCADE_EXIT_FAIL;
        if (r <= 0)
            continue;
        if (o->json)
            write_live_json(&j, &l, NULL);
        else {
            if (shown)
                fputc('\n', out);
            print_live(out, &l.v);
        }
        shown++;
        live_free(&l);
    }
    control_scan_free(sockets, n);
    if (o->json) {
        json_array_end(&j);
        json_object_end(&j);
        if (json_end(&j) < 0)
            code = CASCADE_EXIT_FAIL;
    } else if (shown == 0) {
        fprintf(out, "no cascadefs mount or cascade seed of yours is running (looked in");
        for (size_t i = 0; i < n_dirs; i++)
            fprintf(out, " %s", dirs[i]);
        fprintf(out, ")\n");
    }
    return code;
}

/* ---- a mount's extended attributes ---- */

/* Read one attribute as text; -1 (errno set) when it is not there. */
static ssize_t read_attr(const char *path, const char *attr, char *buf, size_t len)
{
    char name[64];
    snprintf(name, sizeof name, STATUS_XATTR_PREFIX "%s", attr);
    ssize_t n = getxattr(path, name, buf, len - 1);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return n;
}

static int read_number(const char *path, const char *attr, uint64_t *out)
{
    char text[32];
    if (read_attr(path, attr, text, sizeof text) < 0)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end) {
        errno = EINVAL;
        return -1;
    }
    *out = v;
    return 0;
}

static int read_status(const char *path, struct file_status *st)
{
    struct { const char *name; uint64_t *out; } nums[] = {
        {STATUS_XATTR_SIZE, &st->size}, {STATUS_XATTR_BLOCK_SIZE, &st->block_size},
        {STATUS_XATTR_BLOCKS_TOTAL, &st->blocks_total}, {STATUS_XATTR_BLOCKS_HELD, &st->blocks_held},
        {STATUS_XATTR_PEERS_KNOWN, &st->peers_known}, {STATUS_XATTR_PEERS_CONNECTED, &st->peers_connected},
        {STATUS_XATTR_BYTES_FETCHED, &st->bytes_fetched}, {STATUS_XATTR_BYTES_SERVED, &st->bytes_served},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        if (read_number(path, nums[i].name, nums[i].out) != 0)
            return -1;
    if (read_attr(path, STATUS_XATTR_CASCADE_HASH, st->hash, sizeof st->hash) < 0)
        return -1;
    if (read_attr(path, STATUS_XATTR_MAP, st->map, sizeof st->map) < 0)
        st->map[0] = '\0';
    return 0;
}

/* The file of a live answer with this cascade hash, or NULL. */
static const struct json_value *live_file(const struct live *l, const char *hash)
{
    const struct json_value *files = l ? json_member(&l->v, "files") : NULL;
    for (size_t i = 0; files && files->type == JSON_ARRAY && i < files->n; i++) {
        const char *h = json_member_string(&files->items[i], "cascade_hash");
        if (h && !strcmp(h, hash))
            return &files->items[i];
    }
    return NULL;
}

/* A file of a mount as JSON, from its xattrs (no live answer). */
static void write_file_json(struct json_writer *j, const char *name, const struct file_status *st)
{
    json_object_begin(j, NULL);
    json_string(j, "name", name);
    json_string(j, "cascade_hash", st->hash);
    json_u64(j, "size", st->size);
    json_u64(j, "block_size", st->block_size);
    json_u64(j, "blocks_total", st->blocks_total);
    json_u64(j, "blocks_held", st->blocks_held);
    json_u64(j, "peers_known", st->peers_known);
    json_u64(j, "peers_connected", st->peers_connected);
    json_u64(j, "bytes_fetched", st->bytes_fetched);
    json_u64(j, "bytes_served", st->bytes_served);
    json_object_end(j);
}

/* The files of one mount (or one file of it) and its live answer. */
struct mount_view {
    const char *root;            /* the mount's root folder */
    char **names;                /* shown files, in name order */
    size_t n_names;
    struct live live;            /* live.socket NULL: no live answer */
};

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of the files in the root, sorted (malloc'd copies). */
static int list_names(const char *dir, struct mount_view *mv, FILE *err)
{
    struct dirent **entries = NULL;
    int n = scandir(dir, &entries, NULL, NULL);
    if (n < 0) {
        fprintf(err, "cascade status: cannot list %s: %s\n", dir, strerror(errno));
        return -1;
    }
    mv->names = calloc((size_t)n + 1, sizeof *mv->names);
    int rc = mv->names ? 0 : -1;
    for (int i = 0; i < n; i++) {
        if (rc == 0 && entries[i]->d_name[0] != '.' &&
            !(mv->names[mv->n_names++] = strdup(entries[i]->d_name)))
            rc = -1;
        free(entries[i]);
    }
    free(entries);
    if (rc < 0)
        fprintf(err, "cascade status: out of memory\n");
    else if (mv->n_names)
        qsort(mv->names, mv->n_names, sizeof *mv->names, compare_names);
    return rc;
}

static void mount_view_free(struct mount_view *mv)
{
    for (size_t i = 0; i < mv->n_names; i++)
        free(mv->names[i]);
    free(mv->names);
    live_free(&mv->live);
}

/* Fill mv for path (a mount's root, or a file in it). 0, or exit code. */
static int mount_view_open(const char *path, struct mount_view *mv, char *rootbuf, FILE *err)
{
    memset(mv, 0, sizeof *mv);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(err, "cascade status: %s: %s\n", path, strerror(errno));
        return CASCADE_EXIT_FAIL;
    }
    bool dir = S_ISDIR(sb.st_mode);
    snprintf(rootbuf, PATH_MAX, "%s", path);
    mv->root = dir ? rootbuf : dirname(rootbuf);
    char probe[32];
    if (read_attr(mv->root, STATUS_XATTR_FILES, probe, sizeof probe) < 0) {
        fprintf(err, "cascade status: %s is not %s (%s)\n", path,
                dir ? "a cascadefs mount" : "a file in a cascadefs mount",
                errno == ENODATA || errno == ENOTSUP ? "no user.cascade attributes"
                                                     : strerror(errno));
        return CASCADE_EXIT_FAIL;
    }
    if (dir ? list_names(mv->root, mv, err) < 0
            : !(mv->names = calloc(1, sizeof *mv->names)) ||
              !(mv->names[mv->n_names++] = strdup(strrchr(path, '/') ? strrchr(path, '/') + 1
                                                                      : path)))
        return CASCADE_EXIT_FAIL;
    char socket[PATH_MAX];
    if (read_attr(mv->root, STATUS_XATTR_CONTROL, socket, sizeof socket) >= 0 &&
        live_ask(socket, &mv->live, err) < 0)
        fprintf(err, "cascade status: %s: showing what its attributes say\n", mv->root);
    return 0;
}

/* Print (or write as JSON) the files of mv. 0, or exit code. */
static int mount_view_show(const struct mount_view *mv, bool whole, const struct status_opts *o,
                           FILE *out, FILE *err, struct json_writer *j)
{
    struct live *l = mv->live.socket ? (struct live *)&mv->live : NULL;
    struct file_status *st = malloc(sizeof *st);
    if (!st) {
        fprintf(err, "cascade status: out of memory\n");
        return CASCADE_EXIT_FAIL;
    }
    if (l && whole && !o->json)
        print_header(out, &l->v);
    int code = CASCADE_EXIT_OK;
    for (size_t i = 0; i < mv->n_names; i++) {
        size_t len = strlen(mv->root) + strlen(mv->names[i]) + 2;
        char *path = malloc(len);
        if (path)
            snprintf(path, len, "%s/%s", mv->root, mv->names[i]);
        if (!path || read_status(path, st) != 0) {
            fprintf(err, "cascade status: %s is not a file in a cascadefs mount (%s)\n",
                    path ? path : mv->names[i], strerror(errno));
            code = CASCADE_EXIT_FAIL;
        } else if (o->json) {
            if (!l)
                write_file_json(j, mv->names[i], st);
            else if (!whole)
                write_live_json(j, l, st->hash);
        } else {
            print_status(out, mv->names[i], st, o->show_map);
            const struct json_value *f = live_file(l, st->hash);
            if (f)
                print_rates(out, f);
        }
        free(path);
    }
    if (l && whole && !o->json) {
        print_peers(out, &l->v);
        print_trackers(out, &l->v);
    }
    free(st);
    return code;
}

/* One MOUNTPOINT or FILE. */
static int status_path(const char *path, const struct status_opts *o, FILE *out, FILE *err)
{
    struct mount_view mv;
    char root[PATH_MAX];
    int code = mount_view_open(path, &mv, root, err);
    if (code != 0) {
        mount_view_free(&mv);
        return code;
    }
    struct stat sb;
    bool whole = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
    struct json_writer j;
    if (o->json) {
        json_begin(&j, out);
        if (mv.live.socket && whole)
            write_live_json(&j, &mv.live, NULL);
        if (!mv.live.socket) {
            json_object_begin(&j, NULL);
            json_bool(&j, "live", false);
            json_string(&j, "mountpoint", mv.root);
            json_array_begin(&j, "files");
        }
    }
    code = mount_view_show(&mv, whole, o, out, err, &j);
    if (o->json) {
        if (!mv.live.socket) {
            json_array_end(&j);
            json_object_end(&j);
        }
        if (json_end(&j) < 0 && code == 0)
            code = CASCADE_EXIT_FAIL;
    }
    mount_view_free(&mv);
    return code;
}

/* ---- one pass, and --watch ---- */

static int status_once(const struct status_opts *o, FILE *out, FILE *err)
{
    if (o->n_paths == 0)
        return status_running(o, out, err);
    int code = CASCADE_EXIT_OK;
    for (int i = 0; i < o->n_paths; i++) {
        if (i > 0 && !o->json)
            fputc('\n', out);
        if (status_path(o->paths[i], o, out, err) != CASCADE_EXIT_OK)
            code = CASCADE_EXIT_FAIL;
    }
    return code;
}

static volatile sig_atomic_t watch_stop;

static void watch_on_signal(int sig)
{
    (void)sig;
    watch_stop = 1;
}

/* Sleep s seconds, or less when a signal asks to stop. */
static void watch_sleep(unsigned s)
{
    for (unsigned i = 0; i < s * 10 && !watch_stop; i++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Show it again every watch_s seconds until SIGINT/SIGTERM (exit 0). On a
 * terminal each pass replaces the last (drawn whole, then written at
 * once); elsewhere passes follow each other (with --json: a line each). */
static int status_watch(const struct status_opts *o)
{
    struct sigaction sa = {.sa_handler = watch_on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    bool tty = isatty(STDOUT_FILENO) && !o->json;
    while (!watch_stop) {
        char *text = NULL;
        size_t len = 0;
        FILE *page = open_memstream(&text, &len);
        if (!page) {
            fprintf(stderr, "cascade status: out of memory\n");
            return CASCADE_EXIT_FAIL;
        }
        if (tty) {
            time_t now = time(NULL);
            char when[32];
            strftime(when, sizeof when, "%H:%M:%S", localtime(&now));
            fprintf(page, "\033[H\033[2Jevery %u s, %s (Ctrl-C to stop)\n\n", o->watch_s, when);
        }
        status_once(o, page, page);
        if (!tty && !o->json)
            fputc('\n', page);
        fclose(page);
        fwrite(text, 1, len, stdout);
        fflush(stdout);
        free(text);
        watch_sleep(o->watch_s);
    }
    return CASCADE_EXIT_OK;
}

/* ---- options ---- */

/* --watch's seconds: from --watch=S, or a number right after --watch. */
static int parse_watch(int argc, char **argv, const char *arg, unsigned *out)
{
    if (!arg && optind < argc && argv[optind][0] >= '0' && argv[optind][0] <= '9')
        arg = argv[optind++];
    uint64_t s = WATCH_DEFAULT_S;
    if (arg && (cascade_parse_size(arg, &s) != 0 || s < 1 || s > WATCH_MAX_S)) {
        fprintf(stderr, "cascade status: bad --watch '%s': give whole seconds from 1 to %d\n",
                arg, WATCH_MAX_S);
        return -1;
    }
    *out = (unsigned)s;
    return 0;
}

static int parse_status(int argc, char **argv, struct status_opts *o)
{
    static const struct option longopts[] = {
        {"no-map", no_argument, NULL, 'n'}, {"json", no_argument, NULL, 'j'},
        {"watch", optional_argument, NULL, 'w'}, {"cache", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    o->show_map = true;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': o->show_map = false; break;
        case 'j': o->json = true; break;
        case 'w':
            if (parse_watch(argc, argv, optarg, &o->watch_s) < 0)
                return CASCADE_EXIT_USAGE;
            break;
        case 'C': o->cache = optarg; break;
        case 'h': status_usage(stdout); return CASCADE_EXIT_OK;
        default: status_usage(stderr); return CASCADE_EXIT_USAGE;
        }
    }
    o->paths = argv + optind;
    o->n_paths = argc - optind;
    if (o->json && o->n_paths > 1) {
        fprintf(stderr, "cascade status: --json shows one MOUNTPOINT or FILE (or, without "
                "one, every running peer); got %d\n", o->n_paths);
        return CASCADE_EXIT_USAGE;
    }
    return -1;
}

int cli_status(int argc, char **argv)
{
    struct status_opts o = {0};
    int rc = parse_status(argc, argv, &o);
    if (rc >= 0)
        return rc;
    signal(SIGPIPE, SIG_IGN);
    return o.watch_s ? status_watch(&o) : status_once(&o, stdout, stderr);
}
