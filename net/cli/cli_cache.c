/* `cascade cache`: what a cache folder holds, and cleaning it.
 *
 *   cascade cache ls     [--cache DIR] [--json]
 *   cascade cache du     [--cache DIR] [--json]
 *   cascade cache rm     NAME|HASH... [--cache DIR]
 *   cascade cache gc     --max SIZE [--cache DIR] [--json]
 *   cascade cache verify [--cache DIR] [--json]
 *
 * An entry in use by a running process (a mount, a seeder: it holds the
 * lock of the entry's record) is shown as such; rm refuses it, gc and
 * verify leave it alone (that process keeps its own limit and checks its
 * own bytes). Built on cascade/store_cache.h and the store itself. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cascade/log.h"
#include "cascade/store.h"
#include "cascade/store_cache.h"
#include "cascade/util.h"
#include "net/cli/cli.h"
#include "net/cli/json.h"
#include "net/sock.h"

struct cache_opts {
    const char *cache;
    const char *max;
    bool json;
    char **args;
    int n_args;
};

static void cache_usage(FILE *out)
{
    fprintf(out,
        "usage: cascade cache ls|du|rm|gc|verify [ARGS] [--cache DIR] [--json]\n"
        "What the block cache holds, and cleaning it.\n"
        "  ls                each cascade in the cache: name, size, bytes held, last use\n"
        "  du                the disk space the cache and each cascade take\n"
        "  rm NAME|HASH...   remove cascades from the cache (by name, or by cascade\n"
        "                    hash or a unique prefix of it); refused while in use\n"
        "  gc --max SIZE     evict least recently used blocks of the whole cache until\n"
        "                    it holds at most SIZE (K, M, G, T or N%% of its disk)\n"
        "  verify            hash every held block again; blocks that do not match are\n"
        "                    dropped (fetched again when next needed)\n"
        "      --cache DIR   the cache folder (default $XDG_CACHE_HOME/cascadefs or\n"
        "                    ~/.cache/cascadefs)\n"
        "      --max SIZE    (gc) the size to trim the cache to\n"
        "      --json        machine-readable output (ls, du, gc, verify)\n"
        "  -h, --help        this text\n"
        "A cascade in use by a running mount or seeder is shown as in use; rm refuses\n"
        "it and gc and verify leave it alone (the running process keeps its own limit).\n"
        "Exit status: 0 success, 1 failure (verify: bad blocks found; rm: in use),\n"
        "2 bad usage.\n");
}

static int parse_cache(int argc, char **argv, struct cache_opts *o)
{
    static const struct option longopts[] = {
        {"cache", required_argument, NULL, 'C'}, {"max", required_argument, NULL, 'M'},
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'C': o->cache = optarg; break;
        case 'M': o->max = optarg; break;
        case 'j': o->json = true; break;
        case 'h': cache_usage(stdout); return CASCADE_EXIT_OK;
        default: cache_usage(stderr); return CASCADE_EXIT_USAGE;
        }
    }
    o->args = argv + optind;
    o->n_args = argc - optind;
    return -1;
}

static const char *entry_name(const struct cascade_cache_entry *e)
{
    return e->name ? e->name : "?";
}

/* "2026-01-31 12:34" (local time), or "-" for never. */
static void format_time(uint64_t ms, char *out, size_t outlen)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!ms || !localtime_r(&t, &tm) || !strftime(out, outlen, "%Y-%m-%d %H:%M", &tm))
        snprintf(out, outlen, "-");
}

static void json_entry_id(struct json_writer *j, const struct cascade_cache_entry *e)
{
    json_string(j, "name", e->name);
    json_string(j, "hash", e->hex);
}

/* ---- ls and du ---- */

static int cache_ls(const struct cache_opts *o, struct cascade_cache_entry *v, size_t n)
{
    if (o->json) {
        struct json_writer j;
        json_begin(&j, stdout);
        json_object_begin(&j, NULL);
        json_array_begin(&j, "cascades");
        for (size_t i = 0; i < n; i++) {
            json_object_begin(&j, NULL);
            json_entry_id(&j, &v[i]);
            json_u64(&j, "size", v[i].size);
            json_u64(&j, "block_size", v[i].block_size);
            json_u64(&j, "held_blocks", v[i].held_blocks);
            json_u64(&j, "held_bytes", v[i].held_bytes);
            json_u64(&j, "disk_bytes", v[i].disk_bytes);
            json_u64(&j, "last_use_ms", v[i].last_use_ms);
            json_u64(&j, "in_use", v[i].in_use);
            json_u64(&j, "user_data", v[i].user_data);
            json_object_end(&j);
        }
        json_array_end(&j);
        json_object_end(&j);
        return json_end(&j) == 0 ? CASCADE_EXIT_OK : CASCADE_EXIT_FAIL;
    }
    if (n == 0) {
        printf("the cache is empty\n");
        return CASCADE_EXIT_OK;
    }
    printf("%-24s %10s %10s %5s  %-16s  %-16s\n", "NAME", "SIZE", "HELD", "", "LAST USE", "HASH");
    for (size_t i = 0; i < n; i++) {
        char size[32], held[32], when[32];
        cascade_human_bytes(v[i].size, size, sizeof size);
        cascade_human_bytes(v[i].held_bytes, held, sizeof held);
        format_time(v[i].last_use_ms, when, sizeof when);
        unsigned pct = v[i].size ? (unsigned)(100.0 * (double)v[i].held_bytes / (double)v[i].size) : 0;
        printf("%-24s %10s %10s %4u%%  %-16s  %.16s%s%s\n", entry_name(&v[i]), size, held, pct,
               when, v[i].hex, v[i].in_use ? "  in use" : "",
               v[i].user_data ? "  (a user's data file)" : "");
    }
    return CASCADE_EXIT_OK;
}

static int cache_du(const struct cache_opts *o, struct cascade_cache_entry *v, size_t n)
{
    uint64_t total = 0, held = 0;
    for (size_t i = 0; i < n; i++) {
        total += v[i].disk_bytes;
        held += v[i].held_bytes;
    }
    if (o->json) {
        struct json_writer j;
        json_begin(&j, stdout);
        json_object_begin(&j, NULL);
        json_u64(&j, "disk_bytes", total);
        json_u64(&j, "held_bytes", held);
        json_array_begin(&j, "cascades");
        for (size_t i = 0; i < n; i++) {
            json_object_begin(&j, NULL);
            json_entry_id(&j, &v[i]);
            json_u64(&j, "disk_bytes", v[i].disk_bytes);
            json_object_end(&j);
        }
        json_array_end(&j);
        json_object_end(&j);
        return json_end(&j) == 0 ? CASCADE_EXIT_OK : CASCADE_EXIT_FAIL;
    }
    for (size_t i = 0; i < n; i++) {
        char b[32];
        cascade_human_bytes(v[i].disk_bytes, b, sizeof b);
        printf("%10s  %s (%.16s)\n", b, entry_name(&v[i]), v[i].hex);
    }
    char b[32];
    cascade_human_bytes(total, b, sizeof b);
    printf("%10s  total\n", b);
    return CASCADE_EXIT_OK;
}

/* ---- rm ---- */

/* The entries arg names: its name, its hash, or a prefix of 8+ digits of
 * it. -1 none, -2 several (a message says which), else the index. */
static long find_entry(struct cascade_cache_entry *v, size_t n, const char *arg)
{
    long found = -1;
    size_t len = strlen(arg);
    for (size_t i = 0; i < n; i++) {
        bool match = (v[i].name && !strcmp(v[i].name, arg)) ||
                     (len >= 8 && !strncmp(v[i].hex, arg, len));
        if (!match)
            continue;
        if (found >= 0) {
            fprintf(stderr, "cascade cache rm: '%s' names several cascades (%.16s, %.16s): "
                    "give the hash\n", arg, v[found].hex, v[i].hex);
            return -2;
        }
        found = (long)i;
    }
    return found;
}

static int cache_rm(const struct cache_opts *o, struct cascade_cache_entry *v, size_t n)
{
    if (o->n_args < 1) {
        fprintf(stderr, "cascade cache rm: name the cascades to remove (NAME or HASH)\n");
        return CASCADE_EXIT_USAGE;
    }
    int rc = CASCADE_EXIT_OK;
    for (int a = 0; a < o->n_args; a++) {
        long i = find_entry(v, n, o->args[a]);
        if (i == -1) {
            fprintf(stderr, "cascade cache rm: no cascade '%s' in the cache (see "
                    "'cascade cache ls')\n", o->args[a]);
            rc = CASCADE_EXIT_USAGE;
            continue;
        }
        if (i < 0) {
            rc = CASCADE_EXIT_USAGE;
            continue;
        }
        /* Held while removing: no process can open it meanwhile. */
        int lock = cascade_cache_lock(v[i].dir);
        if (lock < 0 && errno == EBUSY) {
            fprintf(stderr, "cascade cache rm: %s is in use by a running mount or seeder: "
                    "unmount or stop it first\n", entry_name(&v[i]));
            rc = CASCADE_EXIT_FAIL;
            continue;
        }
        char err[CASCADE_ERRLEN];
        if (cascade_cache_remove(v[i].dir, err, sizeof err) != 0) {
            fprintf(stderr, "cascade cache rm: %s\n", err);
            rc = CASCADE_EXIT_FAIL;
        } else {
            char b[32];
            cascade_human_bytes(v[i].disk_bytes, b, sizeof b);
            printf("removed %s (%.16s), %s\n", entry_name(&v[i]), v[i].hex, b);
        }
        cascade_cache_unlock(lock);
    }
    return rc;
}

/* ---- gc and verify: entries opened as stores ---- */

/* Open entry e's store alone (NULL, with why, when in use or without a
 * copy of its .cascade). */
static struct cascade_store *open_entry(const struct cache_opts *o,
                                        const struct cascade_cache_entry *e,
                                        enum cascade_verify verify, const char **why)
{
    *why = NULL;
    if (e->in_use) {
        *why = "in use";
        return NULL;
    }
    if (!e->have_meta || e->user_data) {
        *why = e->user_data ? "a user's data file" : "no copy of its .cascade";
        return NULL;
    }
    struct cascade_store_options so = {.cache_root = o->cache, .verify = verify,
                                       .exclusive = true};
    struct cascade_store *st = NULL;
    char err[CASCADE_ERRLEN];
    if (cascade_store_open(&e->meta, &so, &st, err, sizeof err) != 0) {
        *why = errno == EBUSY ? "in use" : "cannot be opened";
        return NULL;
    }
    return st;
}

/* Evict least recently used extents across the stores until total is at
 * most max. Returns the bytes freed. */
static uint64_t gc_evict(struct cascade_store **st, size_t n, uint64_t *total, uint64_t max)
{
    uint64_t freed = 0;
    while (*total > max) {
        size_t best = n;
        uint64_t best_ms = UINT64_MAX, next_ms = UINT64_MAX;
        for (size_t i = 0; i < n; i++) {
            uint64_t ms = st[i] ? cascade_store_oldest_use(st[i]) : UINT64_MAX;
            if (ms == UINT64_MAX)
                continue;
            if (best == n || ms < best_ms) {
                next_ms = best_ms < next_ms ? best_ms : next_ms;
                best = i;
                best_ms = ms;
            } else if (ms < next_ms) {
                next_ms = ms;
            }
        }
        if (best == n)
            break;
        int64_t got = cascade_store_evict(st[best], *total - max, next_ms);
        if (got <= 0) {
            cascade_store_close(st[best]);   /* nothing more from it */
            st[best] = NULL;
            continue;
        }
        freed += (uint64_t)got;
        *total -= (uint64_t)got < *total ? (uint64_t)got : *total;
    }
    return freed;
}

static int cache_gc(const struct cache_opts *o, struct cascade_cache_entry *v, size_t n)
{
    uint64_t max, total = 0, busy = 0;
    char err[CASCADE_ERRLEN];
    if (!o->max) {
        fprintf(stderr, "cascade cache gc: give --max SIZE (the size to trim the cache to)\n");
        return CASCADE_EXIT_USAGE;
    }
    if (cascade_cache_parse_limit(o->max, o->cache, &max, err, sizeof err) != 0) {
        fprintf(stderr, "cascade cache gc: --max: %s\n", err);
        return CASCADE_EXIT_USAGE;
    }
    sock_raise_fd_limit();   /* every entry's store open at once */
    struct cascade_store **st = calloc(n + 1, sizeof *st);
    if (!st) {
        fprintf(stderr, "cascade cache gc: out of memory\n");
        return CASCADE_EXIT_FAIL;
    }
    for (size_t i = 0; i < n; i++)
        total += v[i].held_bytes;
    for (size_t i = 0; i < n && total > max; i++) {
        const char *why;
        if (!(st[i] = open_entry(o, &v[i], CASCADE_VERIFY_NEVER, &why)))
            busy += v[i].held_bytes;
    }
    uint64_t before = total;
    uint64_t freed = gc_evict(st, n, &total, max);
    for (size_t i = 0; i < n; i++)
        cascade_store_close(st[i]);
    free(st);
    bool reached = total <= max;
    if (o->json) {
        struct json_writer j;
        json_begin(&j, stdout);
        json_object_begin(&j, NULL);
        json_u64(&j, "max_bytes", max);
        json_u64(&j, "held_bytes_before", before);
        json_u64(&j, "held_bytes", total);
        json_u64(&j, "freed_bytes", freed);
        json_u64(&j, "in_use_bytes", busy);
        json_object_end(&j);
        if (json_end(&j) != 0)
            return CASCADE_EXIT_FAIL;
    } else {
        char a[32], b[32], c[32];
        cascade_human_bytes(freed, a, sizeof a);
        cascade_human_bytes(total, b, sizeof b);
        cascade_human_bytes(max, c, sizeof c);
        printf("evicted %s; the cache holds %s (limit %s)\n", a, b, c);
    }
    if (!reached) {
        char b[32];
        cascade_human_bytes(busy, b, sizeof b);
        fprintf(stderr, "cascade cache gc: could not get below the limit: %s are held by "
                "cascades in use (or without a copy of their .cascade)\n", b);
        return CASCADE_EXIT_FAIL;
    }
    return CASCADE_EXIT_OK;
}

/* Hash every held block of st; the number that did not match. */
static uint64_t verify_store(struct cascade_store *st, uint64_t *checked)
{
    const struct cascade_meta *m = cascade_store_meta(st);
    uint64_t bad = 0;
    for (uint64_t b = 0; b < m->block_count; b++) {
        if (!cascade_store_has(st, b))
            continue;
        (*checked)++;
        if (cascade_store_pin_block(st, b) == CASCADE_STORE_OK)
            cascade_store_unpin_block(st, b);
        else
            bad++;
    }
    return bad;
}

static int cache_verify(const struct cache_opts *o, struct cascade_cache_entry *v, size_t n)
{
    struct json_writer j;
    if (o->json) {
        json_begin(&j, stdout);
        json_object_begin(&j, NULL);
        json_array_begin(&j, "cascades");
    }
    uint64_t all_bad = 0;
    for (size_t i = 0; i < n; i++) {
        const char *why;
        struct cascade_store *st = open_entry(o, &v[i], CASCADE_VERIFY_ALWAYS, &why);
        uint64_t checked = 0, bad = st ? verify_store(st, &checked) : 0;
        cascade_store_close(st);
        all_bad += bad;
        if (o->json) {
            json_object_begin(&j, NULL);
            json_entry_id(&j, &v[i]);
            json_u64(&j, "blocks_checked", checked);
            json_u64(&j, "blocks_bad", bad);
            json_string(&j, "skipped", why);
            json_object_end(&j);
        } else if (why) {
            printf("%s (%.16s): skipped, %s\n", entry_name(&v[i]), v[i].hex, why);
        } else {
            printf("%s (%.16s): %llu blocks checked, %llu bad%s\n", entry_name(&v[i]), v[i].hex,
                   (unsigned long long)checked, (unsigned long long)bad,
                   bad ? " (dropped: fetched again when next needed)" : "");
        }
    }
    if (o->json) {
        json_array_end(&j);
        json_u64(&j, "blocks_bad", all_bad);
        json_object_end(&j);
        if (json_end(&j) != 0)
            return CASCADE_EXIT_FAIL;
    }
    return all_bad ? CASCADE_EXIT_FAIL : CASCADE_EXIT_OK;
}

int cli_cache(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(const struct cache_opts *, struct cascade_cache_entry *, size_t);
    } subs[] = {
        {"ls", cache_ls}, {"du", cache_du}, {"rm", cache_rm}, {"gc", cache_gc},
        {"verify", cache_verify},
    };
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        cache_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CASCADE_EXIT_USAGE : CASCADE_EXIT_OK;
    }
    size_t k = 0;
    while (k < sizeof subs / sizeof subs[0] && strcmp(argv[1], subs[k].name))
        k++;
    if (k == sizeof subs / sizeof subs[0]) {
        fprintf(stderr, "cascade cache: unknown command '%s' (ls, du, rm, gc, verify)\n",
                argv[1]);
        return CASCADE_EXIT_USAGE;
    }
    struct cache_opts o = {0};
    int rc = parse_cache(argc - 1, argv + 1, &o);
    if (rc >= 0)
        return rc;
    if (k != 2 && o.n_args > 0) {
        fprintf(stderr, "cascade cache %s: unexpected argument '%s'\n", argv[1], o.args[0]);
        return CASCADE_EXIT_USAGE;
    }
    cascade_log_init("cascade", CASCADE_LOG_WARN, false);
    struct cascade_cache_entry *v;
    size_t n;
    char err[CASCADE_ERRLEN];
    if (cascade_cache_list(o.cache, &v, &n, err, sizeof err) != 0) {
        fprintf(stderr, "cascade cache %s: %s\n", argv[1], err);
        return CASCADE_EXIT_FAIL;
    }
    rc = subs[k].run(&o, v, n);
    cascade_cache_list_free(v, n);
    return rc;
}
