/* `cascade get` (download only) and `cascade seed` (download what is
 * missing, then serve): the two peer commands built on the peer node
 * (net/node.h), which fetches, stores and serves.
 *
 *   cascade get FILE.cascade [-o DATA] [-t TRACKER] [--cache DIR] [--timeout S] [-q] [-v]
 *   cascade seed FILE.cascade... [-t TRACKER] [-l LISTEN] [--data PATH] [--cache DIR]
 *                [--cache-max SIZE] [--upload-slots N] [-v]
 *
 * get downloads into DATA.part and renames it to DATA once the whole file
 * matches the target hash (the held record follows the rename, so seeding
 * DATA later verifies nothing again); an existing DATA is checked and
 * completed in place. It resumes from whatever the file already holds
 * (verified block by block), hashes the whole file as blocks arrive in
 * order (so the final check costs no extra pass), and exits 0 only when
 * every block is there and the whole file matches. SIGINT or SIGTERM stop
 * it promptly with what it holds kept for the next run.
 *
 * seed also answers `cascade status` on a control socket (net/node_status.h).
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/meta.h"
#include "cascade/progress.h"
#include "cascade/sha256.h"
#include "cascade/store.h"
#include "cascade/store_cache.h"
#include "cascade/util.h"
#include "net/cli/cli.h"
#include "net/node.h"
#include "net/node_status.h"
#include "net/sock.h"
#include "net/tracker_client.h"

#define CLI_DEFAULT_LISTEN "0.0.0.0:6881"
#define CLI_SEED_PORT 6881
#define CLI_STALL_S 30           /* get gives up when no block arrives for this long */
#define GET_HASH_CHUNK (1u << 20) /* read-back size for the whole-file hash */
#define GET_PEERS_EVERY_MS 500    /* the progress line's peer count, refreshed */
#define GET_PART_SUFFIX ".part"

/* ---- shared helpers ---- */

static int meta_exit_code(int rc)
{
    return rc == CASCADE_META_ENOMEM ? CASCADE_EXIT_FAIL : CASCADE_EXIT_USAGE;
}

/* The trackers: -t, else $CASCADE_TRACKER, else the default. */
static int parse_tracker(const char *cmd, const char *arg, struct tracker_list *out, char *shown,
                         size_t shownlen)
{
    char err[CASCADE_ERRLEN];
    if (tracker_list_parse(arg, out, err, sizeof err) < 0) {
        fprintf(stderr, "cascade %s: %s\n", cmd, err);
        return -1;
    }
    tracker_list_format(out, shown, shownlen);
    return 0;
}

static bool file_has_bytes(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0;
}

/* Verify what a data file already holds; the number of blocks adopted. */
static int adopt_existing(struct cascade_store *st, const char *cmd, const char *path, bool quiet)
{
    const struct cascade_meta *m = cascade_store_meta(st);
    struct cascade_progress pr;
    cascade_progress_init(&pr, "checking", m->block_count, false, quiet);
    int64_t n = cascade_store_adopt(st, &pr);
    cascade_progress_finish(&pr);
    if (n < 0) {
        fprintf(stderr, "cascade %s: %s: could not read the existing data (%lld)\n", cmd, path,
                (long long)n);
        return -1;
    }
    if (n > 0)
        log_info("%s: %lld of %llu blocks already present and verified", path, (long long)n,
                 (unsigned long long)m->block_count);
    return 0;
}

/* ---- get ---- */

static void get_usage(FILE *out)
{
    fprintf(out,
        "usage: cascade get FILE.cascade [-o DATA] [-t TRACKER] [--cache DIR] [--timeout S] [-q] [-v]\n"
        "Download the data file FILE.cascade describes from peers (download only: it\n"
        "neither serves nor subscribes) into DATA.part, renamed to DATA once the whole\n"
        "file matches its hash; an existing DATA is checked and completed in place.\n"
        "Resumes from whatever DATA.part (or DATA) already holds.\n"
        "  -o, --output DATA   where to write (default: the .cascade's name, in the\n"
        "                      current folder)\n"
        "  -t, --tracker ADDR  tracker IP:PORT (default $CASCADE_TRACKER, else %s)\n"
        "      --cache DIR     folder for the record of held blocks (default\n"
        "                      $XDG_CACHE_HOME/cascadefs or ~/.cache/cascadefs)\n"
        "      --timeout S     give up after S seconds in all (default: no limit; it\n"
        "                      still gives up when no block arrives for %d s)\n"
        "  -q, --quiet         no progress display, errors only\n"
        "  -v, --verbose       debug log (each block fetched)\n"
        "  -h, --help          this text\n"
        "Exit status: 0 complete and the whole file matches its hash, 1 failure,\n"
        "2 bad usage or a bad .cascade file.\n", TRACKER_DEFAULT_ADDR, CLI_STALL_S);
}

struct get_opts {
    const char *cascade, *output, *tracker, *cache;
    uint64_t timeout_s;          /* 0: none */
    bool quiet, verbose;
};

static int parse_get(int argc, char **argv, struct get_opts *o)
{
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'}, {"tracker", required_argument, NULL, 't'},
        {"cache", required_argument, NULL, 'C'}, {"timeout", required_argument, NULL, 'T'},
        {"quiet", no_argument, NULL, 'q'}, {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "o:t:qvh", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': o->output = optarg; break;
        case 't': o->tracker = optarg; break;
        case 'C': o->cache = optarg; break;
        case 'T':
            if (cascade_parse_size(optarg, &o->timeout_s) != 0 || o->timeout_s == 0 ||
                o->timeout_s > 100000000) {
                fprintf(stderr, "cascade get: bad --timeout '%s': give whole seconds >= 1\n",
                        optarg);
                return CASCADE_EXIT_USAGE;
            }
            break;
        case 'q': o->quiet = true; break;
        case 'v': o->verbose = true; break;
        case 'h': get_usage(stdout); return CASCADE_EXIT_OK;
        default: get_usage(stderr); return CASCADE_EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "cascade get: expected one FILE.cascade, got %d arguments\n",
                argc - optind);
        get_usage(stderr);
        return CASCADE_EXIT_USAGE;
    }
    o->cascade = argv[optind];
    return -1;
}

struct get_run {
    const struct get_opts *o;
    struct cascade_meta meta;
    struct peer_node *node;
    struct node_file *nf;
    struct cascade_store *st;      /* open (pinned) while nf is open */
    const char *data_path;         /* where the blocks go: final_path, or final_path.part */
    const char *final_path;
    char *part_path;               /* final_path.part (owned), NULL when in place */
    char tracker_shown[256];
    struct tracker_list trackers;
};

/* SIGINT/SIGTERM: the node's waits end at once (the second signal kills).
 * The handler may run on any thread: atomics, lock-free ones. */
static _Atomic(struct peer_node *) get_signal_node;
static atomic_int get_signalled;

static void get_on_signal(int sig)
{
    atomic_store(&get_signalled, sig);
    struct peer_node *n = atomic_load(&get_signal_node);
    if (n)
        node_interrupt_from_signal(n);
}

static void get_catch_signals(void)
{
    struct sigaction sa = {.sa_handler = get_on_signal, .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void get_report_interrupted(struct get_run *g)
{
    fprintf(stderr, "cascade get: interrupted: %llu of %llu blocks are kept in %s; run the "
            "same command again to resume\n",
            (unsigned long long)node_file_held_count(g->nf),
            (unsigned long long)g->meta.block_count, g->data_path);
}

/* Why no progress: the message for a stall or a timeout. */
static void report_stuck(struct get_run *g, int r, uint64_t waited_s)
{
    if (r == -ECANCELED) {
        get_report_interrupted(g);
        return;
    }
    if (r != -ETIMEDOUT && r != -EHOSTUNREACH) {
        fprintf(stderr, "cascade get: %s: could not write to the data file: %s\n", g->data_path,
                strerror(-r));
        return;
    }
    struct node_file_stats s;
    node_file_get_stats(g->nf, &s);
    fprintf(stderr, "cascade get: no peer could provide block %llu after %llu s "
            "(%llu of %llu blocks held; %llu peers known, %llu dropped for bad data); "
            "is a seeder running and subscribed to the tracker at %s?\n",
            (unsigned long long)node_file_first_missing(g->nf), (unsigned long long)waited_s,
            (unsigned long long)s.blocks_held, (unsigned long long)g->meta.block_count,
            (unsigned long long)s.peers_known, (unsigned long long)s.peers_dropped,
            g->tracker_shown);
}

/* Add held block idx to the whole-file hash, reading it back from the
 * store in chunks (blocks may be huge). 0 or -1. */
static int hash_block(struct cascade_store *st, uint64_t idx, struct cascade_sha256 *h,
                      uint8_t *buf)
{
    uint64_t len = cascade_meta_block_len(cascade_store_meta(st), idx);
    for (uint64_t off = 0; off < len;) {
        size_t n = len - off < GET_HASH_CHUNK ? (size_t)(len - off) : GET_HASH_CHUNK;
        if (cascade_store_read(st, idx, off, buf, n) != CASCADE_STORE_OK ||
            cascade_sha256_update(h, buf, n) != 0)
            return -1;
        off += n;
    }
    return 0;
}

/* Wait (a little) for block i to be held. 0, -ETIMEDOUT, or why it never will be. */
static int get_wait_block(struct get_run *g, uint64_t i, uint64_t deadline, uint64_t stall_ms)
{
    const struct cascade_meta *m = &g->meta;
    uint64_t now = cascade_now_ms();
    uint64_t until = now + 200 < deadline ? now + 200 : deadline;
    int r = node_file_fetch_range(g->nf, cascade_meta_block_offset(m, i),
                                  cascade_meta_block_len(m, i), 0, 0, until);
    if (r != -ETIMEDOUT)
        return r;
    /* Not yet: is anything still arriving? */
    r = node_file_wait_complete(g->nf, cascade_now_ms(), stall_ms);
    return r == 0 ? -ETIMEDOUT : r;
}

/* The progress line: bytes held, and now and then the peers connected. */
static void get_progress(struct get_run *g, struct cascade_progress *pr, uint64_t *peers_ms)
{
    const struct cascade_meta *m = &g->meta;
    uint64_t now = cascade_now_ms();
    if (pr->enabled && now - *peers_ms >= GET_PEERS_EVERY_MS) {
        struct node_file_stats s;
        node_file_get_stats(g->nf, &s);
        char note[32];
        snprintf(note, sizeof note, "%llu peer%s", (unsigned long long)s.peers_connected,
                 s.peers_connected == 1 ? "" : "s");
        cascade_progress_set_note(pr, note);
        *peers_ms = now;
    }
    uint64_t bytes = cascade_store_held_count(g->st) * m->block_size;
    cascade_progress_update(pr, bytes < m->size ? bytes : m->size);
}

/* Hash the file in block order as blocks land; 0 complete, else exit code. */
static int get_follow(struct get_run *g, uint8_t digest[CASCADE_HASH_LEN])
{
    const struct cascade_meta *m = &g->meta;
    uint64_t start = cascade_now_ms();
    uint64_t deadline = g->o->timeout_s ? start + g->o->timeout_s * 1000 : UINT64_MAX;
    uint64_t stall_s = g->o->timeout_s && g->o->timeout_s < CLI_STALL_S ? g->o->timeout_s
                                                                         : CLI_STALL_S;
    struct cascade_sha256 *h = cascade_sha256_new();
    uint8_t *buf = malloc(GET_HASH_CHUNK);
    struct cascade_progress pr;
    cascade_progress_init(&pr, "fetching", m->size, true, g->o->quiet);
    uint64_t peers_ms = 0;
    int rc = CASCADE_EXIT_FAIL;
    if (!h || !buf) {
        fprintf(stderr, "cascade get: out of memory\n");
        goto out;
    }
    for (uint64_t i = 0; i < m->block_count;) {
        int r = atomic_load(&get_signalled) ? -ECANCELED
                                            : get_wait_block(g, i, deadline, stall_s * 1000);
        get_progress(g, &pr, &peers_ms);
        if (r == 0) {
            if (hash_block(g->st, i, h, buf) != 0) {
                fprintf(stderr, "cascade get: %s: could not read back block %llu\n",
                        g->data_path, (unsigned long long)i);
                goto out;
            }
            i++;
            continue;
        }
        if (r == -ETIMEDOUT && cascade_now_ms() < deadline)
            continue;
        cascade_progress_finish(&pr);
        if (r == -ETIMEDOUT) {
            fprintf(stderr, "cascade get: timed out after %llu s; ",
                    (unsigned long long)g->o->timeout_s);
            report_stuck(g, r, g->o->timeout_s);
        } else {
            report_stuck(g, r, r == -EHOSTUNREACH ? stall_s : (cascade_now_ms() - start) / 1000);
        }
        goto out;
    }
    if (cascade_sha256_final(h, digest) != 0) {
        fprintf(stderr, "cascade get: hashing failed\n");
        goto out;
    }
    cascade_progress_update(&pr, m->size);
    rc = 0;
out:
    cascade_progress_finish(&pr);
    cascade_sha256_free(h);
    free(buf);
    return rc;
}

/* Where the blocks go: an existing DATA in place, else DATA.part. */
static int get_choose_path(struct get_run *g)
{
    struct stat sb;
    g->data_path = g->final_path;
    if (lstat(g->final_path, &sb) == 0)
        return 0;
    size_t len = strlen(g->final_path) + sizeof GET_PART_SUFFIX;
    g->part_path = malloc(len);
    if (!g->part_path) {
        fprintf(stderr, "cascade get: out of memory\n");
        return -1;
    }
    snprintf(g->part_path, len, "%s" GET_PART_SUFFIX, g->final_path);
    g->data_path = g->part_path;
    return 0;
}

static int get_start(struct get_run *g)
{
    char err[CASCADE_ERRLEN];
    if (get_choose_path(g) < 0)
        return CASCADE_EXIT_FAIL;
    bool existed = file_has_bytes(g->data_path);
    /* Download only: no server, nothing announced. */
    struct node_config cfg = {.trackers = g->trackers, .cache_root = g->o->cache};
    struct node_file_options fo = {.data_path = g->data_path};
    if (node_start(&cfg, &g->node, err, sizeof err) < 0) {
        fprintf(stderr, "cascade get: %s\n", err);
        return CASCADE_EXIT_FAIL;
    }
    atomic_store(&get_signal_node, g->node);
    if (atomic_load(&get_signalled))   /* before the node could hear it */
        node_interrupt(g->node);
    if (node_add_file(g->node, &g->meta, &fo, &g->nf, err, sizeof err) < 0 ||
        !(g->st = node_file_open(g->nf, err, sizeof err))) {
        fprintf(stderr, "cascade get: %s\n", err);
        return CASCADE_EXIT_FAIL;
    }
    if (existed && !cascade_store_complete(g->st) &&
        adopt_existing(g->st, "get", g->data_path, g->o->quiet) < 0)
        return CASCADE_EXIT_FAIL;
    if (!cascade_store_complete(g->st))
        node_file_want_all(g->nf);   /* nothing missing: no tracker is asked */
    return 0;
}

static int get_run(struct get_run *g)
{
    int rc = get_start(g);
    if (rc != 0)
        return rc;
    uint64_t t0 = cascade_now_ms();
    uint8_t digest[CASCADE_HASH_LEN];
    rc = get_follow(g, digest);
    struct node_file_stats s;
    node_file_get_stats(g->nf, &s);
    if (rc != 0)
        return rc;
    if (cascade_store_flush(g->st) != 0) {
        fprintf(stderr, "cascade get: %s: could not flush to disk\n", g->data_path);
        return CASCADE_EXIT_FAIL;
    }
    if (memcmp(digest, g->meta.target_hash, CASCADE_HASH_LEN) != 0) {
        fprintf(stderr, "cascade get: %s: every block matches but the whole file does not "
                "match the .cascade's target hash; the .cascade file is inconsistent\n",
                g->data_path);
        return CASCADE_EXIT_FAIL;
    }
    char err[CASCADE_ERRLEN];
    if (g->part_path && cascade_store_rename_data(g->st, g->final_path, err, sizeof err) < 0) {
        fprintf(stderr, "cascade get: the file is complete, but: %s\n", err);
        return CASCADE_EXIT_FAIL;
    }
    if (s.bytes_fetched == 0) {
        log_info("%s: complete, %llu bytes (already there, nothing fetched)", g->final_path,
                 (unsigned long long)g->meta.size);
        return CASCADE_EXIT_OK;
    }
    double secs = (double)(cascade_now_ms() - t0) / 1000.0;
    char human[32];
    cascade_human_bytes(s.bytes_fetched, human, sizeof human);
    log_info("%s: complete, %llu bytes; fetched %s in %.2f s (%.1f MiB/s)", g->final_path,
             (unsigned long long)g->meta.size, human, secs,
             secs > 0 ? (double)s.bytes_fetched / (1024.0 * 1024.0) / secs : 0.0);
    return CASCADE_EXIT_OK;
}

int cli_get(int argc, char **argv)
{
    struct get_opts o = {0};
    int rc = parse_get(argc, argv, &o);
    if (rc >= 0)
        return rc;
    cascade_log_init("cascade", o.verbose ? CASCADE_LOG_DEBUG
                                : o.quiet ? CASCADE_LOG_ERROR : CASCADE_LOG_INFO, false);
    struct get_run g = {.o = &o};
    char err[CASCADE_ERRLEN];
    if (parse_tracker("get", o.tracker, &g.trackers, g.tracker_shown, sizeof g.tracker_shown) < 0)
        return CASCADE_EXIT_USAGE;
    rc = cascade_meta_load(o.cascade, &g.meta, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "cascade get: %s\n", err);
        return meta_exit_code(rc);
    }
    g.final_path = o.output ? o.output : g.meta.name;
    if (!g.final_path || !*g.final_path) {
        fprintf(stderr, "cascade get: cannot tell the data file's name from '%s'; give -o DATA\n",
                o.cascade);
        rc = CASCADE_EXIT_USAGE;
    } else {
        get_catch_signals();
        rc = get_run(&g);
    }
    if (g.st)
        node_file_close(g.nf);
    atomic_store(&get_signal_node, NULL);
    node_stop(g.node);
    cascade_meta_free(&g.meta);
    free(g.part_path);
    return rc;
}

/* ---- seed ---- */

static void seed_usage(FILE *out)
{
    fprintf(out,
        "usage: cascade seed FILE.cascade... [-t TRACKER] [-l LISTEN] [--data PATH] [--cache DIR]\n"
        "                    [--cache-max SIZE] [--upload-slots N] [-v]\n"
        "The full peer: for each file, check what is already on disk, subscribe it to\n"
        "the tracker, fetch what is missing and serve every block held, until\n"
        "SIGINT or SIGTERM.\n"
        "  -t, --tracker ADDR  tracker IP:PORT (default $CASCADE_TRACKER, else %s)\n"
        "  -l, --listen ADDR   where to serve: IP:PORT, IP or :PORT (default %s;\n"
        "                      port 0 picks a free one)\n"
        "      --data PATH     the data file (only with one .cascade). Default: the\n"
        "                      .cascade's name in the folder of the .cascade file\n"
        "                      (dir/NAME for dir/NAME.cascade)\n"
        "      --cache DIR     folder for the record of held blocks (default\n"
        "                      $XDG_CACHE_HOME/cascadefs or ~/.cache/cascadefs)\n"
        "      --cache-max SIZE  keep the data in the cache folder instead, within\n"
        "                      SIZE (K, M, G, T, or N%% of its disk) for every file\n"
        "                      together: least recently used blocks are evicted, and\n"
        "                      filling stops at the limit (--data files are not managed)\n"
        "      --upload-slots N  blocks sent to peers at once, the rest queued (default\n"
        "                      4; raise it on an uplink much faster than the peers')\n"
        "  -v, --verbose       debug log (each block fetched)\n"
        "  -h, --help          this text\n"
        "Prints 'serving N files on IP:PORT' once listening; `cascade status` shows\n"
        "its live status.\n",
        TRACKER_DEFAULT_ADDR, CLI_DEFAULT_LISTEN);
}

struct seed_opts {
    char **cascades;
    int n;
    const char *tracker, *listen, *data, *cache;
    uint64_t cache_max;          /* 0: data next to each .cascade, no limit */
    int upload_slots;            /* 0: the node's default */
    bool verbose;
};

static int parse_upload_slots(const char *arg, int *out)
{
    uint64_t v;
    if (cascade_parse_size(arg, &v) != 0 || v < 1 || v > NODE_MAX_UPLOAD_SLOTS) {
        fprintf(stderr, "cascade seed: --upload-slots: '%s' is not a number from 1 to %d\n", arg,
                NODE_MAX_UPLOAD_SLOTS);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_seed(int argc, char **argv, struct seed_opts *o)
{
    static const struct option longopts[] = {
        {"tracker", required_argument, NULL, 't'}, {"listen", required_argument, NULL, 'l'},
        {"data", required_argument, NULL, 'D'}, {"cache", required_argument, NULL, 'C'},
        {"cache-max", required_argument, NULL, 'X'},
        {"upload-slots", required_argument, NULL, 'U'},
        {"verbose", no_argument, NULL, 'v'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *cache_max = NULL;
    char err[CASCADE_ERRLEN];
    int c;
    while ((c = getopt_long(argc, argv, "t:l:vh", longopts, NULL)) != -1) {
        switch (c) {
        case 't': o->tracker = optarg; break;
        case 'l': o->listen = optarg; break;
        case 'D': o->data = optarg; break;
        case 'C': o->cache = optarg; break;
        case 'X': cache_max = optarg; break;
        case 'U':
            if (parse_upload_slots(optarg, &o->upload_slots) != 0)
                return CASCADE_EXIT_USAGE;
            break;
        case 'v': o->verbose = true; break;
        case 'h': seed_usage(stdout); return CASCADE_EXIT_OK;
        default: seed_usage(stderr); return CASCADE_EXIT_USAGE;
        }
    }
    o->cascades = argv + optind;
    o->n = argc - optind;
    if (o->n < 1) {
        fprintf(stderr, "cascade seed: give at least one FILE.cascade\n");
        seed_usage(stderr);
        return CASCADE_EXIT_USAGE;
    }
    if (o->data && o->n != 1) {
        fprintf(stderr, "cascade seed: --data names one data file; it needs exactly one "
                ".cascade (got %d)\n", o->n);
        return CASCADE_EXIT_USAGE;
    }
    if (cache_max &&
        cascade_cache_parse_limit(cache_max, o->cache, &o->cache_max, err, sizeof err) != 0) {
        fprintf(stderr, "cascade seed: --cache-max: %s\n", err);
        return CASCADE_EXIT_USAGE;
    }
    return -1;
}

struct seed_file {
    struct cascade_meta meta;
    struct node_file *nf;
    char *data_path;
    bool read_only;             /* we may not write the data file: serve only */
    bool reported_complete;
};

/* dir-of-cascade/NAME */
static char *seed_default_data(const char *cascade_path, const char *name)
{
    char *copy = strdup(cascade_path);
    if (!copy)
        return NULL;
    const char *dir = dirname(copy);
    size_t len = strlen(dir) + strlen(name) + 2;
    char *out = malloc(len);
    if (out)
        snprintf(out, len, "%s/%s", dir, name);
    free(copy);
    return out;
}

/* Load the .cascade and decide where its data lives. */
static int seed_load_file(const struct seed_opts *o, int i, struct seed_file *sf)
{
    char err[CASCADE_ERRLEN];
    int rc = cascade_meta_load(o->cascades[i], &sf->meta, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "cascade seed: %s\n", err);
        return meta_exit_code(rc);
    }
    if (o->data)
        sf->data_path = strdup(o->data);
    else if (o->cache_max)
        return 0;   /* in the cache folder, under the limit */
    else if (sf->meta.name && *sf->meta.name)
        sf->data_path = seed_default_data(o->cascades[i], sf->meta.name);
    else {
        fprintf(stderr, "cascade seed: cannot tell the data file's name from '%s'; use --data\n",
                o->cascades[i]);
        return CASCADE_EXIT_USAGE;
    }
    if (!sf->data_path) {
        fprintf(stderr, "cascade seed: out of memory\n");
        return CASCADE_EXIT_FAIL;
    }
    return 0;
}

/* Add the file to the node, verify what is already on disk, and queue it
 * to be filled. The node keeps a store open only while it fills or serves
 * it, and fills a few files at a time: a thousand files seeded need no
 * thousand open data files. */
static int seed_add_file(struct peer_node *node, const char *cascade, struct seed_file *sf)
{
    char err[CASCADE_ERRLEN];
    /* The cache's own data file is checked by its store (the recovery scan). */
    bool existed = sf->data_path && file_has_bytes(sf->data_path);
    const char *shown = sf->data_path ? sf->data_path : sf->meta.name;
    /* A file we may read but not write (someone else's, a read-only
     * mount) can still be seeded: verify and serve what it holds. */
    sf->read_only = existed && access(sf->data_path, W_OK) != 0;
    struct node_file_options fo = {.data_path = sf->data_path, .read_only = sf->read_only};
    if (node_add_file(node, &sf->meta, &fo, &sf->nf, err, sizeof err) < 0) {
        fprintf(stderr, "cascade seed: %s: %s\n", cascade, err);
        return CASCADE_EXIT_USAGE;   /* the same file given twice */
    }
    struct cascade_store *st = node_file_open(sf->nf, err, sizeof err);
    if (!st) {
        fprintf(stderr, "cascade seed: %s\n", err);
        return CASCADE_EXIT_FAIL;
    }
    int rc = 0;
    if (existed && !cascade_store_complete(st) &&
        adopt_existing(st, "seed", sf->data_path, false) < 0)
        rc = CASCADE_EXIT_FAIL;
    uint64_t held = cascade_store_held_count(st);
    log_info("%s: %llu of %llu blocks held", shown, (unsigned long long)held,
             (unsigned long long)sf->meta.block_count);
    sf->reported_complete = held == sf->meta.block_count;
    if (sf->read_only && !sf->reported_complete)
        log_warn("%s is read-only: serving the %llu blocks it holds, the other %llu cannot "
                 "be fetched into it (make it writable, or give --data a writable copy)",
                 sf->data_path, (unsigned long long)held,
                 (unsigned long long)(sf->meta.block_count - held));
    node_file_close(sf->nf);
    if (rc == 0 && !sf->read_only)
        node_file_fill(sf->nf);
    return rc;
}

/* Wait for SIGINT/SIGTERM (blocked in every thread), noting completions. */
static void seed_wait_for_signal(struct seed_file *files, int n, const sigset_t *set)
{
    for (;;) {
        struct timespec ts = {.tv_sec = 1};
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            log_info("signal %d: shutting down", sig);
            return;
        }
        for (int i = 0; i < n; i++) {
            if (!files[i].reported_complete &&
                node_file_held_count(files[i].nf) == files[i].meta.block_count) {
                files[i].reported_complete = true;
                log_info("%s: complete (%llu blocks), serving it",
                         files[i].data_path ? files[i].data_path : files[i].meta.name,
                         (unsigned long long)files[i].meta.block_count);
            }
        }
    }
}

/* Answer `cascade status`; without it seeding goes on (a warning). */
static struct node_status_server *seed_status(struct peer_node *node, const struct seed_opts *o)
{
    struct node_status_info info = {.program = "cascade seed", .cache_root = o->cache};
    struct node_status_server *status;
    char err[CASCADE_ERRLEN];
    if (node_status_serve(node, &info, &status, err, sizeof err) < 0) {
        log_warn("no live status for cascade status: %s", err);
        return NULL;
    }
    log_debug("status: %s", node_status_socket(status));
    return status;
}

static int seed_run(const struct seed_opts *o, struct seed_file *files, struct peer_node **node,
                    struct node_status_server **status, const sigset_t *set)
{
    struct node_config cfg = {.serve = true, .cache_root = o->cache, .cache_max = o->cache_max,
                              .upload_slots = o->upload_slots};
    char shown[256], err[CASCADE_ERRLEN];
    if (parse_tracker("seed", o->tracker, &cfg.trackers, shown, sizeof shown) < 0)
        return CASCADE_EXIT_USAGE;
    const char *l = o->listen ? o->listen : CLI_DEFAULT_LISTEN;
    if (sock_parse_addr(l, "0.0.0.0", CLI_SEED_PORT, &cfg.listen, err, sizeof err) < 0) {
        fprintf(stderr, "cascade seed: bad listen address '%s': %s\n", l, err);
        return CASCADE_EXIT_USAGE;
    }
    for (int i = 0; i < o->n; i++) {
        int rc = seed_load_file(o, i, &files[i]);
        if (rc != 0)
            return rc;
    }
    if (node_start(&cfg, node, err, sizeof err) < 0) {
        fprintf(stderr, "cascade seed: %s\n", err);
        return CASCADE_EXIT_FAIL;
    }
    for (int i = 0; i < o->n; i++) {
        int rc = seed_add_file(*node, o->cascades[i], &files[i]);
        if (rc != 0)
            return rc;
    }
    *status = seed_status(*node, o);
    struct sockaddr_in served;
    node_address(*node, &served);
    char addr[SOCK_ADDRSTRLEN];
    sock_format_addr(&served, addr, sizeof addr);
    printf("serving %d file%s on %s\n", o->n, o->n == 1 ? "" : "s", addr);
    fflush(stdout);
    log_info("tracker %s", shown);
    seed_wait_for_signal(files, o->n, set);
    return CASCADE_EXIT_OK;
}

int cli_seed(int argc, char **argv)
{
    struct seed_opts o = {0};
    int rc = parse_seed(argc, argv, &o);
    if (rc >= 0)
        return rc;
    cascade_log_init("cascade", o.verbose ? CASCADE_LOG_DEBUG : CASCADE_LOG_INFO, false);
    /* Block the signals before any thread starts, so only sigtimedwait sees them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct seed_file *files = calloc((size_t)o.n, sizeof *files);
    if (!files) {
        fprintf(stderr, "cascade seed: out of memory\n");
        return CASCADE_EXIT_FAIL;
    }
    struct peer_node *node = NULL;
    struct node_status_server *status = NULL;
    rc = seed_run(&o, files, &node, &status, &set);
    node_status_stop(status);   /* it reads the node: first */
    /* The node makes what is held durable as it stops; say so if it could not. */
    if (node_stop(node) != 0 && rc == CASCADE_EXIT_OK) {
        fprintf(stderr, "cascade seed: could not make every held block durable; "
                "some will be fetched again\n");
        rc = CASCADE_EXIT_FAIL;
    }
    for (int i = 0; i < o.n; i++) {
        cascade_meta_free(&files[i].meta);
        free(files[i].data_path);
    }
    free(files);
    return rc;
}
