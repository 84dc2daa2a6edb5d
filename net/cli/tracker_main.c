/* cascade-tracker: the tracker daemon (PROTOCOL.md section 2).
 *
 * One thread, one poll() loop over non-blocking sockets: every connection
 * has 5 s to deliver its 54-byte request and take its answer, so a slow or
 * silent client never holds up the others, and at most MAX_CONNS are open
 * (memory bounded). The rules live in tracker_state.c. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cascade/folder.h"
#include "cascade/log.h"
#include "cascade/meta.h"
#include "cascade/util.h"
#include "net/sock.h"
#include "net/tracker_state.h"
#include "net/wire.h"

#define MAX_CONNS 1024
#define CONN_DEADLINE_MS 5000
#define MAX_ANSWER_BYTES (WIRE_TRACKER_ANSWER_HEADER_LEN + WIRE_MAX_ERROR_MESSAGE)

struct conn {
    int fd;
    uint32_t source_ip;
    uint64_t deadline_ms;
    uint8_t in[WIRE_TRACKER_REQUEST_LEN];
    size_t got;
    uint8_t *out;                /* answer, once the request is complete */
    size_t out_len, sent;
};

struct tracker {
    struct tracker_state *state;
    int listen_fd, signal_fd;
    struct conn conns[MAX_CONNS];
    size_t nconns;
};

static void usage(FILE *out)
{
    fprintf(out,
"usage: cascade-tracker [OPTIONS]\n"
"Tell Cascade peers about each other (the Cascade protocol, version 1).\n\n"
"  -l, --listen IP:PORT   where to listen (default 0.0.0.0:8888; port 0 picks one)\n"
"  -a, --allow PATH       track only these files: a .cascade file, a folder of\n"
"                         them, or a text file of hex cascade hashes (one per\n"
"                         line, # comments); repeatable. Without it any hash\n"
"                         is tracked, up to --max-hashes.\n"
"  -g, --good IP          vouch for peers announcing from IP; repeatable\n"
"  -e, --expiry SECONDS   forget peers not seen for this long (default 1800)\n"
"  -m, --max-peers N      peers per answer (default 20)\n"
"      --max-hashes N     hashes tracked at once, oldest evicted (default 10000)\n"
"  -v, --verbose          log every request\n"
"  -q, --quiet            log errors only\n"
"  -h, --help, --version\n\n"
"Prints 'listening on IP:PORT' on stdout once ready; SIGTERM or SIGINT stops it.\n"
"Exit status: 0 after a signal, 1 when it cannot run, 2 for bad usage.\n");
}

/* ---- the allow-list -------------------------------------------------- */

static int allow_cascade_file(struct tracker_state *ts, const char *path)
{
    struct cascade_meta m;
    char err[CASCADE_ERRLEN];
    if (cascade_meta_load(path, &m, err, sizeof err) < 0) {
        fprintf(stderr, "cascade-tracker: --allow %s: %s\n", path, err);
        return -1;
    }
    int rc = tracker_state_allow(ts, m.cascade_hash);
    cascade_meta_free(&m);
    if (rc < 0)
        fprintf(stderr, "cascade-tracker: --allow %s: out of memory\n", path);
    return rc;
}

static int allow_folder(struct tracker_state *ts, const char *path)
{
    char err[CASCADE_ERRLEN], **files;
    size_t n;
    if (cascade_folder_list(path, &files, &n, err, sizeof err) < 0) {
        fprintf(stderr, "cascade-tracker: --allow %s: %s\n", path, err);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = allow_cascade_file(ts, files[i]);
    cascade_folder_free(files, n);
    if (rc == 0 && n == 0)
        log_warn("--allow %s: no .cascade files in this folder", path);
    return rc;
}

static int allow_hash_list(struct tracker_state *ts, const char *path, FILE *f)
{
    char line[512];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = line + strspn(line, " \t");
        s[strcspn(s, "#\r\n")] = '\0';
        size_t len = strlen(s);
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            s[--len] = '\0';
        if (!len)
            continue;
        uint8_t hash[CASCADE_HASH_LEN];
        if (len != 2 * CASCADE_HASH_LEN || cascade_unhex(s, hash, CASCADE_HASH_LEN) < 0) {
            fprintf(stderr, "cascade-tracker: --allow %s line %d: expected 64 hex digits, "
                    "got '%.80s'\n", path, lineno, s);
            return -1;
        }
        if (tracker_state_allow(ts, hash) < 0) {
            fprintf(stderr, "cascade-tracker: --allow %s: out of memory\n", path);
            return -1;
        }
    }
    return 0;
}

/* A .cascade file (by its magic), a folder, or a text list of hashes. */
static int allow_path(struct tracker_state *ts, const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        closedir(d);
        return allow_folder(ts, path);
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cascade-tracker: --allow %s: %s\n", path, strerror(errno));
        return -1;
    }
    char magic[CASCADE_MAGIC_LEN];
    bool is_cascade = fread(magic, 1, sizeof magic, f) == sizeof magic &&
                      !memcmp(magic, CASCADE_MAGIC, CASCADE_MAGIC_LEN);
    rewind(f);
    int rc = is_cascade ? allow_cascade_file(ts, path) : allow_hash_list(ts, path, f);
    fclose(f);
    return rc;
}

/* ---- connections ----------------------------------------------------- */

static void conn_close(struct tracker *t, size_t i)
{
    close(t->conns[i].fd);
    free(t->conns[i].out);
    t->conns[i] = t->conns[--t->nconns];
}

static void accept_all(struct tracker *t)
{
    for (;;) {
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        int fd = accept4(t->listen_fd, (struct sockaddr *)&from, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                log_warn("accept: %s", strerror(errno));
            return;
        }
        if (t->nconns == MAX_CONNS) {
            log_warn("%d connections open: refusing one more", MAX_CONNS);
            close(fd);
            continue;
        }
        t->conns[t->nconns++] = (struct conn){
            .fd = fd, .source_ip = ntohl(from.sin_addr.s_addr),
            .deadline_ms = cascade_now_ms() + CONN_DEADLINE_MS};
    }
}

static int make_refusal(struct conn *c, const char *msg)
{
    size_t len = strlen(msg);
    c->out = malloc(WIRE_TRACKER_ANSWER_HEADER_LEN + len);
    if (!c->out)
        return -1;
    wire_encode_tracker_answer_header(1, (uint32_t)len, c->out);
    memcpy(c->out + WIRE_TRACKER_ANSWER_HEADER_LEN, msg, len);
    c->out_len = WIRE_TRACKER_ANSWER_HEADER_LEN + len;
    return 0;
}

static void describe(const struct conn *c, const struct wire_tracker_request *req,
                     char *out, size_t outlen)
{
    char hex[CASCADE_HEX_LEN];
    cascade_hex(req->hash, CASCADE_HASH_LEN, hex);
    snprintf(out, outlen, "%s from %u.%u.%u.%u (body %u.%u.%u.%u:%u) for %.16s",
             req->command == WIRE_CMD_SUBSCRIBE ? "subscribe" : "list",
             c->source_ip >> 24, (c->source_ip >> 16) & 255, (c->source_ip >> 8) & 255,
             c->source_ip & 255, req->ip >> 24, (req->ip >> 16) & 255, (req->ip >> 8) & 255,
             req->ip & 255, req->port, hex);
}

/* The request is complete: build the answer into c->out. */
static int answer(struct tracker *t, struct conn *c)
{
    struct wire_tracker_request req;
    char err[CASCADE_ERRLEN], what[160];
    if (wire_decode_tracker_request(c->in, &req, err, sizeof err) < 0) {
        log_debug("bad request from %u.%u.%u.%u: %s", c->source_ip >> 24,
                  (c->source_ip >> 16) & 255, (c->source_ip >> 8) & 255, c->source_ip & 255, err);
        return make_refusal(c, err);
    }
    describe(c, &req, what, sizeof what);
    uint32_t max = tracker_state_max_answer(t->state);
    struct wire_peer_record *recs = calloc(max, sizeof *recs);
    if (!recs)
        return -1;
    size_t n = 0;
    if (tracker_state_handle(t->state, &req, c->source_ip, (uint64_t)time(NULL), recs, &n,
                             err, sizeof err) < 0) {
        free(recs);
        log_debug("%s: refused: %s", what, err);
        return make_refusal(c, err);
    }
    log_debug("%s: %zu peers", what, n);
    c->out_len = WIRE_TRACKER_ANSWER_HEADER_LEN + n * WIRE_PEER_RECORD_LEN;
    c->out = malloc(c->out_len);
    if (!c->out) {
        free(recs);
        return -1;
    }
    wire_encode_tracker_answer_header(0, (uint32_t)(n * WIRE_PEER_RECORD_LEN), c->out);
    for (size_t i = 0; i < n; i++)
        wire_encode_peer_record(&recs[i], c->out + WIRE_TRACKER_ANSWER_HEADER_LEN +
                                i * WIRE_PEER_RECORD_LEN);
    free(recs);
    return 0;
}

/* Progress on connection i; false when it is finished (to be closed). */
static bool conn_step(struct tracker *t, struct conn *c, short revents)
{
    if (revents & (POLLERR | POLLNVAL))
        return false;
    if (!c->out && (revents & (POLLIN | POLLHUP))) {
        ssize_t n = recv(c->fd, c->in + c->got, sizeof c->in - c->got, 0);
        if (n <= 0)
            return n < 0 && (errno == EAGAIN || errno == EINTR);
        c->got += (size_t)n;
        if (c->got < sizeof c->in)
            return true;
        if (answer(t, c) < 0)
            return false;
    }
    if (c->out) {
        ssize_t n = send(c->fd, c->out + c->sent, c->out_len - c->sent, MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR;
        c->sent += (size_t)n;
        return c->sent < c->out_len;
    }
    return true;
}

/* Returns 0 after SIGTERM/SIGINT, 1 on a fatal error. */
static int run(struct tracker *t)
{
    static struct pollfd fds[MAX_CONNS + 2];
    for (;;) {
        fds[0] = (struct pollfd){.fd = t->signal_fd, .events = POLLIN};
        fds[1] = (struct pollfd){.fd = t->listen_fd, .events = POLLIN};
        for (size_t i = 0; i < t->nconns; i++)
            fds[i + 2] = (struct pollfd){.fd = t->conns[i].fd,
                                         .events = t->conns[i].out ? POLLOUT : POLLIN};
        size_t polled = t->nconns;
        int rc = poll(fds, polled + 2, 1000);
        if (rc < 0 && errno != EINTR) {
            log_error("poll: %s", strerror(errno));
            return 1;
        }
        if (rc > 0 && (fds[0].revents & POLLIN)) {
            struct signalfd_siginfo si;
            if (read(t->signal_fd, &si, sizeof si) > 0)
                log_info("signal %u: stopping", si.ssi_signo);
            return 0;
        }
        uint64_t now = cascade_now_ms();
        /* Walk backwards: conn_close moves the last connection into slot i. */
        for (size_t i = polled; i-- > 0;) {
            struct conn *c = &t->conns[i];
            bool alive = rc > 0 && fds[i + 2].revents ? conn_step(t, c, fds[i + 2].revents)
                                                      : true;
            if (alive && now > c->deadline_ms) {
                log_debug("connection timed out");
                alive = false;
            }
            if (!alive)
                conn_close(t, i);
        }
        if (rc > 0 && (fds[1].revents & POLLIN))
            accept_all(t);
    }
}

/* ---- setup ----------------------------------------------------------- */

static int parse_count(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
    if (cascade_parse_size(s, out) < 0 || *out == 0 || *out > max) {
        fprintf(stderr, "cascade-tracker: %s: expected a number from 1 to %llu, got '%s'\n",
                opt, (unsigned long long)max, s);
        return -1;
    }
    return 0;
}

static int too_many(const char *opt)
{
    fprintf(stderr, "cascade-tracker: %s given more than 64 times\n", opt);
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'}, {"allow", required_argument, NULL, 'a'},
        {"good", required_argument, NULL, 'g'},   {"expiry", required_argument, NULL, 'e'},
        {"max-peers", required_argument, NULL, 'm'}, {"max-hashes", required_argument, NULL, 'H'},
        {"verbose", no_argument, NULL, 'v'},      {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},         {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    const char *listen_spec = "0.0.0.0:8888";
    const char *allow[64], *good[64];
    size_t nallow = 0, ngood = 0;
    struct tracker_config cfg = {0};
    enum cascade_log_level level = CASCADE_LOG_INFO;
    uint64_t v;
    int opt;
    while ((opt = getopt_long(argc, argv, "l:a:g:e:m:vqhV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'l': listen_spec = optarg; break;
        case 'a': if (nallow == 64) return too_many("--allow");
                  allow[nallow++] = optarg; break;
        case 'g': if (ngood == 64) return too_many("--good");
                  good[ngood++] = optarg; break;
        case 'e': if (parse_count("--expiry", optarg, 86400 * 365, &v) < 0) return 2;
                  cfg.expiry_s = (uint32_t)v; break;
        case 'm': if (parse_count("--max-peers", optarg, WIRE_MAX_TRACKER_PEERS, &v) < 0) return 2;
                  cfg.max_answer = (uint32_t)v; break;
        case 'H': if (parse_count("--max-hashes", optarg, 10000000, &v) < 0) return 2;
                  cfg.max_hashes = v; break;
        case 'v': level = CASCADE_LOG_DEBUG; break;
        case 'q': level = CASCADE_LOG_ERROR; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("cascade-tracker %s\n", CASCADEFS_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cascade-tracker: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    cascade_log_init("cascade-tracker", level, false);

    char err[CASCADE_ERRLEN];
    struct sockaddr_in addr;
    if (sock_parse_addr(listen_spec, "0.0.0.0", 8888, &addr, err, sizeof err) < 0) {
        fprintf(stderr, "cascade-tracker: --listen: %s\n", err);
        return 2;
    }
    static struct tracker t;
    t.state = tracker_state_new(&cfg);
    if (!t.state) {
        fprintf(stderr, "cascade-tracker: out of memory\n");
        return 1;
    }
    int rc = 2;
    for (size_t i = 0; i < nallow; i++)
        if (allow_path(t.state, allow[i]) < 0)
            goto out_state;
    /* An allow-list that names nothing must not mean "track anything". */
    if (nallow && !tracker_state_allowed_count(t.state)) {
        fprintf(stderr, "cascade-tracker: --allow: no cascade hashes found\n");
        goto out_state;
    }
    for (size_t i = 0; i < ngood; i++) {
        struct in_addr ip;
        if (inet_pton(AF_INET, good[i], &ip) != 1) {
            fprintf(stderr, "cascade-tracker: --good %s: expected an IPv4 address\n", good[i]);
            goto out_state;
        }
        if (tracker_state_vouch(t.state, ntohl(ip.s_addr)) < 0) {
            fprintf(stderr, "cascade-tracker: out of memory\n");
            rc = 1;
            goto out_state;
        }
    }

    rc = 1;
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    t.signal_fd = signalfd(-1, &mask, SFD_CLOEXEC);
    t.listen_fd = sock_listen(&addr, 512, err, sizeof err);
    if (t.signal_fd < 0 || t.listen_fd < 0 || sock_set_nonblocking(t.listen_fd) < 0) {
        fprintf(stderr, "cascade-tracker: %s\n", t.listen_fd < 0 ? err : strerror(errno));
        goto out_fds;
    }
    sock_local_addr(t.listen_fd, &addr);
    char name[SOCK_ADDRSTRLEN];
    sock_format_addr(&addr, name, sizeof name);
    size_t allowed = tracker_state_allowed_count(t.state);
    if (allowed)
        log_info("listening on %s, tracking %zu files", name, allowed);
    else
        log_info("listening on %s, tracking any file", name);
    printf("listening on %s\n", name);
    fflush(stdout);
    rc = run(&t);
    while (t.nconns)
        conn_close(&t, t.nconns - 1);
out_fds:
    if (t.listen_fd >= 0)
        close(t.listen_fd);
    if (t.signal_fd >= 0)
        close(t.signal_fd);
out_state:
    tracker_state_free(t.state);
    return rc;
}
