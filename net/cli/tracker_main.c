/* cascade-tracker: the tracker daemon (PROTOCOL.md section 2).
 *
 * Options, the --allow list and signals; the rules are in tracker_state.c,
 * the sockets in tracker_server.c (its own thread). This thread waits for
 * signals: SIGHUP reads the --allow paths again (a reload that fails keeps
 * the old list), SIGTERM and SIGINT stop. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cascade/folder.h"
#include "cascade/log.h"
#include "cascade/meta.h"
#include "cascade/util.h"
#include "net/sock.h"
#include "net/tracker_server.h"
#include "net/tracker_state.h"
#include "net/wire.h"

#define MAX_PATHS 64
#define MAX_ALLOW_FILE (1u << 30)       /* no .cascade file or hash list is this big */

struct options {
    const char *listen_spec;
    const char *allow[MAX_PATHS], *good[MAX_PATHS];
    size_t nallow, ngood;
    struct tracker_config state;
    struct tracker_server_config server;
    enum cascade_log_level level;
};

static void usage(FILE *out)
{
    fprintf(out,
"usage: cascade-tracker [OPTIONS]\n"
"Tell Cascade peers about each other (the Cascade protocol, version 1).\n\n"
"  -l, --listen IP:PORT   where to listen (default 0.0.0.0:8888; port 0 picks one)\n"
"  -a, --allow PATH       track only these files: a .cascade file, a folder of\n"
"                         them, or a text file of hex cascade hashes (one per\n"
"                         line, # comments); repeatable; read again on SIGHUP.\n"
"                         Without it any hash is tracked, up to --max-hashes.\n"
"  -g, --good IP          vouch for peers announcing from IP; repeatable\n"
"  -e, --expiry SECONDS   forget peers not seen for this long (default 1800)\n"
"  -m, --max-peers N      peers per answer (default 20)\n"
"Caps (a source is the address a connection comes from):\n"
"      --max-hashes N                hashes tracked at once (default 10000)\n"
"      --max-peers-per-hash N        peers kept per hash (default 1000)\n"
"      --max-hashes-per-source N     hashes one source may subscribe to (default half\n"
"                                    of --max-hashes)\n"
"      --max-ports-per-source N      peers one source may announce per hash (default 16)\n"
"      --max-connections N           connections open at once (default 1024, lowered\n"
"                                    to fit the descriptor limit)\n"
"      --max-connections-per-source N  (default 64)\n"
"      --request-timeout SECONDS     for a whole request and its answer (default 5)\n"
"When full, a source's own oldest entries go first, then those of the source\n"
"holding the most; a connection still silent is shed to admit a new one.\n"
"  -v, --verbose          log every request\n"
"  -q, --quiet            log errors only\n"
"  -h, --help, --version\n\n"
"Prints 'listening on IP:PORT' on stdout once ready. SIGHUP reloads --allow,\n"
"SIGTERM or SIGINT stops it.\n"
"Exit status: 0 after a signal, 1 when it cannot run, 2 for bad usage.\n");
}

/* ---- the allow-list --------------------------------------------------- */

struct hash_set {
    uint8_t *hashes;                    /* CASCADE_HASH_LEN bytes each */
    size_t n, cap;
};

static int set_add(struct hash_set *s, const uint8_t *hash, char *err, size_t errlen)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        uint8_t *grown = realloc(s->hashes, cap * CASCADE_HASH_LEN);
        if (!grown) {
            cascade_errf(err, errlen, "out of memory");
            return -1;
        }
        s->hashes = grown;
        s->cap = cap;
    }
    memcpy(s->hashes + s->n++ * CASCADE_HASH_LEN, hash, CASCADE_HASH_LEN);
    return 0;
}

/* Read a regular file whole, never blocking (cascade_open_regular refuses
 * a FIFO or device instead of waiting on it). 0, or -1 with a message. */
static int read_regular(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
    struct stat st;
    *buf = NULL;
    int fd = cascade_open_regular(path, O_RDONLY | O_NOCTTY, 0, &st, err, errlen);
    if (fd < 0)
        return -1;
    if ((uint64_t)st.st_size > MAX_ALLOW_FILE) {
        cascade_errf(err, errlen, "%s: %lld bytes is too big for a .cascade file or hash list",
                     path, (long long)st.st_size);
    } else if (!(*buf = malloc((size_t)st.st_size + 1))) {
        cascade_errf(err, errlen, "%s: out of memory", path);
    } else if (cascade_pread_full(fd, *buf, (size_t)st.st_size, 0) < 0) {
        cascade_errf(err, errlen, "%s: %s", path,
                     errno == ENODATA ? "file shrank while being read" : strerror(errno));
        free(*buf);
        *buf = NULL;
    } else {
        *len = (size_t)st.st_size;
    }
    close(fd);
    return *buf ? 0 : -1;
}

static int add_cascade_image(struct hash_set *s, const char *path, const uint8_t *buf,
                             size_t len, char *err, size_t errlen)
{
    struct cascade_meta m;
    char why[CASCADE_ERRLEN];
    if (cascade_meta_parse(buf, len, &m, why, sizeof why) < 0) {
        cascade_errf(err, errlen, "%s: %s", path, why);
        return -1;
    }
    int rc = set_add(s, m.cascade_hash, err, errlen);
    cascade_meta_free(&m);
    return rc;
}

static int add_hash_list(struct hash_set *s, const char *path, char *text, size_t len,
                         char *err, size_t errlen)
{
    text[len] = '\0';
    int lineno = 0;
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        char *p = line + strspn(line, " \t");
        p[strcspn(p, "#\r")] = '\0';
        size_t n = strlen(p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            p[--n] = '\0';
        if (!n)
            continue;
        uint8_t hash[CASCADE_HASH_LEN];
        if (n != 2 * CASCADE_HASH_LEN || cascade_unhex(p, hash, CASCADE_HASH_LEN) < 0) {
            cascade_errf(err, errlen, "%s line %d: expected 64 hex digits, got '%.80s'",
                         path, lineno, p);
            return -1;
        }
        if (set_add(s, hash, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* A .cascade file (by its magic) or a text list of hashes. */
static int add_file(struct hash_set *s, const char *path, bool cascade_only,
                    char *err, size_t errlen)
{
    uint8_t *buf;
    size_t len;
    if (read_regular(path, &buf, &len, err, errlen) < 0)
        return -1;
    bool is_cascade = len >= CASCADE_MAGIC_LEN && !memcmp(buf, CASCADE_MAGIC, CASCADE_MAGIC_LEN);
    int rc = is_cascade || cascade_only ? add_cascade_image(s, path, buf, len, err, errlen)
                                        : add_hash_list(s, path, (char *)buf, len, err, errlen);
    free(buf);
    return rc;
}

/* Every NAME.cascade in the folder; entries that are not regular files (a
 * FIFO, a folder) are skipped with a warning. */
static int add_folder(struct hash_set *s, const char *path, char *err, size_t errlen)
{
    char **files;
    size_t n;
    if (cascade_folder_list(path, &files, &n, err, errlen) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct stat st;
        if (stat(files[i], &st) == 0 && !S_ISREG(st.st_mode)) {
            log_warn("--allow %s: not a regular file: skipped", files[i]);
            continue;
        }
        rc = add_file(s, files[i], true, err, errlen);
    }
    cascade_folder_free(files, n);
    if (rc == 0 && n == 0)
        log_warn("--allow %s: no .cascade files in this folder", path);
    return rc;
}

static int add_path(struct hash_set *s, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return add_folder(s, path, err, errlen);
    return add_file(s, path, false, err, errlen);
}

/* All the --allow paths into a new list. 0, or -1 with a message. */
static int load_allowed(const struct options *o, struct hash_set *s, char *err, size_t errlen)
{
    *s = (struct hash_set){0};
    for (size_t i = 0; i < o->nallow; i++) {
        if (add_path(s, o->allow[i], err, errlen) < 0) {
            free(s->hashes);
            return -1;
        }
    }
    if (!s->n) {
        free(s->hashes);
        /* An allow-list that names nothing must not mean "track anything". */
        cascade_errf(err, errlen, "no cascade hashes found: give .cascade files, a folder "
                     "of them or a list of hashes");
        return -1;
    }
    return 0;
}

static int apply_allowed(const struct options *o, struct tracker_state *ts,
                         struct tracker_server *srv)
{
    struct hash_set s;
    char err[CASCADE_ERRLEN];
    if (load_allowed(o, &s, err, sizeof err) < 0) {
        if (srv)
            log_warn("SIGHUP: reading --allow failed: %s; keeping the files allowed before",
                     err);
        else
            fprintf(stderr, "cascade-tracker: --allow: %s\n", err);
        return -1;
    }
    long n = srv ? tracker_server_set_allowed(srv, s.hashes, s.n, err, sizeof err)
                 : tracker_state_set_allowed(ts, s.hashes, s.n, err, sizeof err);
    free(s.hashes);
    if (n < 0) {
        log_error("--allow: %s", err);
        return -1;
    }
    if (srv)
        log_info("SIGHUP: --allow read again: tracking %ld files", n);
    return 0;
}

/* ---- options ------------------------------------------------------------ */

enum { OPT_MAX_HASHES = 256, OPT_PEERS_PER_HASH, OPT_HASHES_PER_SOURCE, OPT_PORTS_PER_SOURCE,
       OPT_CONNECTIONS, OPT_CONNECTIONS_PER_SOURCE, OPT_TIMEOUT };

static int parse_count(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
    if (cascade_parse_size(s, out) < 0 || *out == 0 || *out > max) {
        fprintf(stderr, "cascade-tracker: %s: expected a number from 1 to %llu, got '%s'\n",
                opt, (unsigned long long)max, s);
        return -1;
    }
    return 0;
}

/* A numeric option into *o; -1 after printing why not. */
static int parse_numeric(struct options *o, int opt, const char *arg)
{
    static const struct { int opt; const char *name; uint64_t max; } limits[] = {
        {'e', "--expiry", 86400 * 365}, {'m', "--max-peers", WIRE_MAX_TRACKER_PEERS},
        {OPT_MAX_HASHES, "--max-hashes", 10000000},
        {OPT_PEERS_PER_HASH, "--max-peers-per-hash", 1000000},
        {OPT_HASHES_PER_SOURCE, "--max-hashes-per-source", 10000000},
        {OPT_PORTS_PER_SOURCE, "--max-ports-per-source", 1000000},
        {OPT_CONNECTIONS, "--max-connections", TRACKER_SERVER_MAX_CONNECTIONS},
        {OPT_CONNECTIONS_PER_SOURCE, "--max-connections-per-source",
         TRACKER_SERVER_MAX_CONNECTIONS},
        {OPT_TIMEOUT, "--request-timeout", 3600}};
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
        if (limits[i].opt == opt && parse_count(limits[i].name, arg, limits[i].max, &v) < 0)
            return -1;
    switch (opt) {
    case 'e': o->state.expiry_s = (uint32_t)v; break;
    case 'm': o->state.max_answer = (uint32_t)v; break;
    case OPT_MAX_HASHES: o->state.max_hashes = v; break;
    case OPT_PEERS_PER_HASH: o->state.max_peers_per_hash = v; break;
    case OPT_HASHES_PER_SOURCE: o->state.max_hashes_per_source = v; break;
    case OPT_PORTS_PER_SOURCE: o->state.max_ports_per_source = v; break;
    case OPT_CONNECTIONS: o->server.max_connections = (int)v; break;
    case OPT_CONNECTIONS_PER_SOURCE: o->server.max_connections_per_source = (int)v; break;
    case OPT_TIMEOUT: o->server.request_timeout_ms = (int)v * 1000; break;
    }
    return 0;
}

static int add_repeated(const char **list, size_t *n, const char *opt, const char *arg)
{
    if (*n == MAX_PATHS) {
        fprintf(stderr, "cascade-tracker: %s given more than %d times\n", opt, MAX_PATHS);
        return -1;
    }
    list[(*n)++] = arg;
    return 0;
}

/* CASCADE_EXIT_OK to run, anything else to exit with (help, version, bad usage). */
static int parse_options(int argc, char **argv, struct options *o, bool *done)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'}, {"allow", required_argument, NULL, 'a'},
        {"good", required_argument, NULL, 'g'},   {"expiry", required_argument, NULL, 'e'},
        {"max-peers", required_argument, NULL, 'm'},
        {"max-hashes", required_argument, NULL, OPT_MAX_HASHES},
        {"max-peers-per-hash", required_argument, NULL, OPT_PEERS_PER_HASH},
        {"max-hashes-per-source", required_argument, NULL, OPT_HASHES_PER_SOURCE},
        {"max-ports-per-source", required_argument, NULL, OPT_PORTS_PER_SOURCE},
        {"max-connections", required_argument, NULL, OPT_CONNECTIONS},
        {"max-connections-per-source", required_argument, NULL, OPT_CONNECTIONS_PER_SOURCE},
        {"request-timeout", required_argument, NULL, OPT_TIMEOUT},
        {"verbose", no_argument, NULL, 'v'},      {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},         {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    *o = (struct options){.listen_spec = "0.0.0.0:8888", .level = CASCADE_LOG_INFO};
    *done = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "l:a:g:e:m:vqhV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'l': o->listen_spec = optarg; break;
        case 'a': if (add_repeated(o->allow, &o->nallow, "--allow", optarg) < 0)
                      return CASCADE_EXIT_USAGE;
                  break;
        case 'g': if (add_repeated(o->good, &o->ngood, "--good", optarg) < 0)
                      return CASCADE_EXIT_USAGE;
                  break;
        case 'v': o->level = CASCADE_LOG_DEBUG; break;
        case 'q': o->level = CASCADE_LOG_ERROR; break;
        case 'h': usage(stdout); *done = true; return CASCADE_EXIT_OK;
        case 'V': printf("cascade-tracker %s\n", CASCADEFS_VERSION);
                  *done = true; return CASCADE_EXIT_OK;
        case '?': usage(stderr); return CASCADE_EXIT_USAGE;
        default: if (parse_numeric(o, opt, optarg) < 0) return CASCADE_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cascade-tracker: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return CASCADE_EXIT_USAGE;
    }
    char err[CASCADE_ERRLEN];
    if (sock_parse_addr(o->listen_spec, "0.0.0.0", 8888, &o->server.listen, err, sizeof err) < 0) {
        fprintf(stderr, "cascade-tracker: --listen: %s\n", err);
        return CASCADE_EXIT_USAGE;
    }
    return CASCADE_EXIT_OK;
}

/* ---- running -------------------------------------------------------------- */

static int vouch_all(const struct options *o, struct tracker_state *ts)
{
    for (size_t i = 0; i < o->ngood; i++) {
        struct in_addr ip;
        if (inet_pton(AF_INET, o->good[i], &ip) != 1) {
            fprintf(stderr, "cascade-tracker: --good %s: expected an IPv4 address\n", o->good[i]);
            return CASCADE_EXIT_USAGE;
        }
        if (tracker_state_vouch(ts, ntohl(ip.s_addr)) < 0) {
            fprintf(stderr, "cascade-tracker: out of memory\n");
            return CASCADE_EXIT_FAIL;
        }
    }
    return CASCADE_EXIT_OK;
}

static void log_stats(const struct tracker_server_stats *st)
{
    log_info("stopped: %llu connections, %llu answered, %llu refused, %llu shed, "
             "%llu turned away, %llu timed out, %llu accept errors, %llu loop turns",
             (unsigned long long)st->connections_total, (unsigned long long)st->answered,
             (unsigned long long)st->refused, (unsigned long long)st->shed,
             (unsigned long long)st->turned_away, (unsigned long long)st->timed_out,
             (unsigned long long)st->accept_errors, (unsigned long long)st->loop_turns);
}

/* Wait for signals until told to stop (or the server failed). */
static int serve(const struct options *o, struct tracker_state *ts, struct tracker_server *srv,
                 const sigset_t *mask)
{
    for (;;) {
        struct timespec tick = {1, 0};
        siginfo_t si;
        int sig = sigtimedwait(mask, &si, &tick);
        if (sig == SIGHUP) {
            if (o->nallow)
                apply_allowed(o, ts, srv);
            else
                log_info("SIGHUP: no --allow paths to read again");
        } else if (sig > 0) {
            log_info("signal %d: stopping", sig);
            return CASCADE_EXIT_OK;
        }
        struct tracker_server_stats st;
        tracker_server_get_stats(srv, &st);
        if (st.failed)
            return CASCADE_EXIT_FAIL;
    }
}

static int run(const struct options *o, struct tracker_state *ts)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    /* Blocked before the server's thread exists, so it inherits the mask. */
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    size_t allowed = tracker_state_allowed_count(ts);   /* before the loop owns ts */
    struct tracker_server *srv;
    char err[CASCADE_ERRLEN];
    if (tracker_server_start(&o->server, ts, &srv, err, sizeof err) < 0) {
        fprintf(stderr, "cascade-tracker: %s\n", err);
        return CASCADE_EXIT_FAIL;
    }
    struct sockaddr_in addr;
    char name[SOCK_ADDRSTRLEN];
    tracker_server_address(srv, &addr);
    sock_format_addr(&addr, name, sizeof name);
    if (allowed)
        log_info("listening on %s, tracking %zu files", name, allowed);
    else
        log_info("listening on %s, tracking any file", name);
    printf("listening on %s\n", name);
    fflush(stdout);
    int rc = serve(o, ts, srv, &mask);
    struct tracker_server_stats st;
    tracker_server_get_stats(srv, &st);
    tracker_server_stop(srv);
    log_stats(&st);
    return rc;
}

int main(int argc, char **argv)
{
    struct options o;
    bool done;
    int rc = parse_options(argc, argv, &o, &done);
    if (rc != CASCADE_EXIT_OK || done)
        return rc;
    cascade_log_init("cascade-tracker", o.level, false);

    struct tracker_state *ts = tracker_state_new(&o.state);
    if (!ts) {
        fprintf(stderr, "cascade-tracker: out of memory\n");
        return CASCADE_EXIT_FAIL;
    }
    rc = vouch_all(&o, ts);
    if (rc == CASCADE_EXIT_OK && o.nallow && apply_allowed(&o, ts, NULL) < 0)
        rc = CASCADE_EXIT_USAGE;
    if (rc == CASCADE_EXIT_OK)
        rc = run(&o, ts);
    tracker_state_free(ts);
    return rc;
}
