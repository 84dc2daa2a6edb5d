/* The control socket: see control.h. The server is one thread that polls
 * the listening socket and an eventfd (stop), answers one client at a
 * time with deadlines on every read and write, and calls the tick. */
#include "net/control.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/store.h"
#include "cascade/util.h"
#include "net/sock.h"

#define CONTROL_BACKLOG 16
#define SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

struct control_server {
    struct control_config cfg;
    char path[SUN_PATH_MAX];
    int listen_fd, wake_fd;
    uid_t uid;
    pthread_t thread;
    bool started;
};

/* ---- folders ---- */

size_t control_dirs(const char *cache_root, char dirs[CONTROL_DIRS_MAX][PATH_MAX])
{
    size_t n = 0;
    const char *runtime = getenv("XDG_RUNTIME_DIR");
    if (runtime && runtime[0] == '/' &&
        snprintf(dirs[n], PATH_MAX, "%s/cascade", runtime) < PATH_MAX)
        n++;
    char root[PATH_MAX];
    bool have_root = cache_root ? snprintf(root, sizeof root, "%s", cache_root) < PATH_MAX
                                : cascade_store_default_root(root, sizeof root) == 0;
    if (have_root && snprintf(dirs[n], PATH_MAX, "%s/run", root) < PATH_MAX)
        n++;
    return n;
}

/* The pid in a name "<pid>.sock"; 0 when it is not such a name. */
static pid_t socket_name_pid(const char *name)
{
    char *end;
    errno = 0;
    long pid = strtol(name, &end, 10);
    if (errno || end == name || name[0] < '1' || name[0] > '9' || strcmp(end, ".sock") != 0 ||
        pid <= 0 || pid > 0x7fffffff)
        return 0;
    return (pid_t)pid;
}

/* ---- deadlines ---- */

/* Wait for events on fd until deadline_ms; 1 ready, 0 timed out, -1 when
 * cancel_fd (-1: none) is readable or poll fails. */
static int ctl_wait(int fd, short events, uint64_t deadline_ms, int cancel_fd)
{
    for (;;) {
        uint64_t now = cascade_now_ms();
        int left = now >= deadline_ms ? 0 : (int)(deadline_ms - now);
        struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = cancel_fd, .events = POLLIN}};
        int rc = poll(p, cancel_fd >= 0 ? 2 : 1, left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0 || (cancel_fd >= 0 && p[1].revents))
            return -1;
        return rc;
    }
}

/* Read into a malloc'd, NUL-terminated buffer until the end of the stream
 * or (with to_newline) a newline, at most max bytes, by deadline_ms. The
 * length (without the newline), or -1 with a message. */
static ssize_t ctl_read(int fd, bool to_newline, size_t max, uint64_t deadline_ms, int cancel_fd,
                        char **out, char *err, size_t errlen)
{
    size_t len = 0, cap = 4096, end;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf || len == cap) {
            char *grown = buf && cap <= max ? realloc(buf, 2 * cap + 1) : NULL;
            if (!grown) {
                cascade_errf(err, errlen, buf && cap > max ? "more than %zu bytes"
                                                           : "out of memory", max);
                free(buf);
                return -1;
            }
            buf = grown;
            cap *= 2;
        }
        int w = ctl_wait(fd, POLLIN, deadline_ms, cancel_fd);
        ssize_t n = w <= 0 ? -1 : recv(fd, buf + len, cap - len, MSG_DONTWAIT);
        if (n < 0 && w > 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n < 0) {
            cascade_errf(err, errlen, "%s", w == 0 ? "timed out" : w < 0 ? "stopped"
                                                                         : strerror(errno));
            free(buf);
            return -1;
        }
        char *nl = to_newline ? memchr(buf + len, '\n', (size_t)n) : NULL;
        len += (size_t)n;
        if (n == 0 || nl) {
            end = nl ? (size_t)(nl - buf) : len;
            break;
        }
    }
    if (end > max) {
        cascade_errf(err, errlen, "more than %zu bytes", max);
        free(buf);
        return -1;
    }
    if (!to_newline && end > 0 && buf[end - 1] == '\n')
        end--;
    buf[end] = '\0';
    *out = buf;
    return (ssize_t)end;
}

/* The uid at the other end of a unix socket; -1 when unknown. */
static long peer_uid(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof cred)
        return -1;
    return (long)cred.uid;
}

/* ---- the server ---- */

static void write_error(struct json_writer *j, const char *fmt, const char *detail)
{
    char msg[2 * CASCADE_ERRLEN];
    snprintf(msg, sizeof msg, fmt, detail);
    json_object_begin(j, NULL);
    json_string(j, "error", msg);
    json_object_end(j);
}

/* The answer to one request text, as JSON written into j. */
static void ctl_answer(struct control_server *s, const char *text, size_t len,
                       struct json_writer *j)
{
    struct json_value req;
    char why[CASCADE_ERRLEN];
    if (json_parse(text, len, &req, why, sizeof why) < 0) {
        write_error(j, "bad request: %s", why);
        return;
    }
    const char *query = json_member_string(&req, "query");
    if (!query)
        write_error(j, "%s", "bad request: give a JSON object with a \"query\" string, "
                             "such as {\"query\":\"status\"}");
    else
        s->cfg.answer(s->cfg.ctx, query, &req, j);
    json_value_free(&req);
}

/* Serve one client: check who it is, read its request, answer, close. */
static void ctl_serve(struct control_server *s, int fd)
{
    long uid = peer_uid(fd);
    if (uid != (long)s->uid) {
        log_debug("control: a client with uid %ld refused", uid);
        return;
    }
    uint64_t deadline = cascade_now_ms() + CONTROL_IO_TIMEOUT_MS;
    char *req = NULL, why[CASCADE_ERRLEN];
    ssize_t n = ctl_read(fd, true, CONTROL_REQUEST_MAX, deadline, s->wake_fd, &req, why,
                         sizeof why);
    char *answer = NULL;
    size_t answer_len = 0;
    FILE *f = open_memstream(&answer, &answer_len);
    if (!f) {
        free(req);
        return;
    }
    struct json_writer j;
    json_begin(&j, f);
    if (n < 0)
        write_error(&j, "bad request: %s", why);
    else
        ctl_answer(s, req, (size_t)n, &j);
    bool written = json_end(&j) == 0;
    if (fclose(f) == 0 && written &&
        sock_write_full_cancelable(fd, answer, answer_len, CONTROL_IO_TIMEOUT_MS, s->wake_fd,
                                   why, sizeof why) < 0)
        log_debug("control: answer not sent: %s", why);
    free(answer);
    free(req);
}

static void *ctl_main(void *arg)
{
    struct control_server *s = arg;
    pthread_setname_np(pthread_self(), "cascade-ctl");
    uint64_t now = cascade_now_ms();
    if (s->cfg.tick)
        s->cfg.tick(s->cfg.ctx, now);
    uint64_t next_tick = now + CONTROL_TICK_MS;
    for (;;) {
        if (ctl_wait(s->listen_fd, POLLIN, next_tick, s->wake_fd) < 0)
            break;   /* stopping */
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            ctl_serve(s, fd);
            close(fd);
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                   errno != ECONNABORTED) {
            log_warn("control: accept: %s", strerror(errno));
            ctl_wait(-1, 0, cascade_now_ms() + 100, s->wake_fd);   /* no busy loop */
        }
        now = cascade_now_ms();
        if (now >= next_tick) {
            if (s->cfg.tick)
                s->cfg.tick(s->cfg.ctx, now);
            next_tick = now + CONTROL_TICK_MS;
        }
    }
    return NULL;
}

/* The folder for our socket: made if needed, and ours alone. */
static int ctl_make_dir(const struct control_config *cfg, char *dir, size_t dirlen,
                        char *err, size_t errlen)
{
    char dirs[CONTROL_DIRS_MAX][PATH_MAX];
    if (control_dirs(cfg->cache_root, dirs) == 0) {
        cascade_errf(err, errlen, "no folder for the control socket: set XDG_RUNTIME_DIR "
                     "or HOME");
        return -1;
    }
    snprintf(dir, dirlen, "%s", dirs[0]);
    if (cascade_store_mkdir(dir, err, errlen) < 0)
        return -1;
    struct stat sb;
    if (lstat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode) || sb.st_uid != geteuid()) {
        cascade_errf(err, errlen, "%s is not a folder of ours", dir);
        return -1;
    }
    if ((sb.st_mode & 077) && chmod(dir, 0700) < 0) {
        cascade_errf(err, errlen, "chmod %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int ctl_listen(struct control_server *s, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, s->path, strlen(s->path) + 1);
    s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->listen_fd < 0) {
        cascade_errf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (unlink(s->path) < 0 && errno != ENOENT) {   /* a killed process of our pid's */
        cascade_errf(err, errlen, "remove the old %s: %s", s->path, strerror(errno));
        return -1;
    }
    if (bind(s->listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        chmod(s->path, 0600) < 0 || listen(s->listen_fd, CONTROL_BACKLOG) < 0) {
        cascade_errf(err, errlen, "listen on %s: %s", s->path, strerror(errno));
        return -1;
    }
    return 0;
}

int control_server_start(const struct control_config *cfg, struct control_server **out,
                         char *err, size_t errlen)
{
    *out = NULL;
    struct control_server *s = calloc(1, sizeof *s);
    if (!s) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    s->cfg = *cfg;
    s->cfg.cache_root = NULL;   /* not kept */
    s->uid = geteuid();
    s->listen_fd = -1;
    s->wake_fd = -1;
    char dir[PATH_MAX];
    if (ctl_make_dir(cfg, dir, sizeof dir, err, errlen) < 0)
        goto fail;
    int n = snprintf(s->path, sizeof s->path, "%s/%ld.sock", dir, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof s->path) {
        cascade_errf(err, errlen, "control socket path %s/%ld.sock too long (at most %zu "
                     "bytes): set XDG_RUNTIME_DIR to a short folder", dir, (long)getpid(),
                     SUN_PATH_MAX - 1);
        s->path[0] = '\0';
        goto fail;
    }
    if (ctl_listen(s, err, errlen) < 0)
        goto fail;
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int rc = s->wake_fd < 0 ? errno : pthread_create(&s->thread, NULL, ctl_main, s);
    if (rc != 0) {
        cascade_errf(err, errlen, "cannot start the control thread: %s", strerror(rc));
        goto fail;
    }
    s->started = true;
    *out = s;
    return 0;
fail:
    control_server_stop(s);
    return -1;
}

const char *control_server_path(const struct control_server *s)
{
    return s->path;
}

void control_server_stop(struct control_server *s)
{
    if (!s)
        return;
    if (s->started) {
        uint64_t one = 1;
        if (write(s->wake_fd, &one, sizeof one) != (ssize_t)sizeof one)
            log_warn("control: cannot wake the control thread");
        pthread_join(s->thread, NULL);
    }
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        unlink(s->path);
    }
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    free(s);
}

/* ---- clients ---- */

/* Connect to path within timeout_ms: the fd, or -1 (errno set). */
static int ctl_connect(const char *path, int timeout_ms)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* A full backlog makes connect wait: no longer than the timeout. */
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = timeout_ms % 1000 * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int control_query(const char *path, const char *request, int timeout_ms, char **answer,
                  char *err, size_t errlen)
{
    *answer = NULL;
    uint64_t deadline = cascade_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    int fd = ctl_connect(path, timeout_ms);
    if (fd < 0) {
        if (errno == ECONNREFUSED || errno == ENOENT)
            return CONTROL_STALE;
        cascade_errf(err, errlen, "connect to %s: %s", path,
                     errno == EAGAIN || errno == EINPROGRESS ? "busy, timed out" : strerror(errno));
        return CONTROL_ERROR;
    }
    int rc = CONTROL_ERROR;
    long uid = peer_uid(fd);
    char why[CASCADE_ERRLEN];
    size_t len = strlen(request);
    char *line = malloc(len + 2);
    if (uid != (long)geteuid()) {
        cascade_errf(err, errlen, "%s is run by uid %ld, not by us: not asked", path, uid);
    } else if (!line) {
        cascade_errf(err, errlen, "out of memory");
    } else {
        memcpy(line, request, len);
        memcpy(line + len, "\n", 2);
        uint64_t now = cascade_now_ms();
        int left = now >= deadline ? 1 : (int)(deadline - now);
        if (sock_write_full(fd, line, len + 1, left, why, sizeof why) < 0)
            cascade_errf(err, errlen, "ask %s: %s", path, why);
        else if (ctl_read(fd, false, CONTROL_ANSWER_MAX, deadline, -1, answer, why,
                          sizeof why) < 0)
            cascade_errf(err, errlen, "answer from %s: %s", path, why);
        else
            rc = CONTROL_OK;
    }
    free(line);
    close(fd);
    return rc;
}

int control_remove_stale(const char *path)
{
    const char *slash = strrchr(path, '/');
    struct stat sb;
    if (!socket_name_pid(slash ? slash + 1 : path)) {
        errno = EINVAL;
        return -1;
    }
    if (lstat(path, &sb) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISSOCK(sb.st_mode)) {
        errno = EINVAL;
        return -1;
    }
    return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* ---- finding sockets ---- */

struct found {
    pid_t pid;
    char *path;
};

static int compare_found(const void *a, const void *b)
{
    pid_t x = ((const struct found *)a)->pid, y = ((const struct found *)b)->pid;
    return x < y ? -1 : x > y;
}

/* Append the sockets of one folder to *list. 0 or -1 (out of memory). */
static int scan_dir(const char *dir, struct found **list, size_t *n, size_t *cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;   /* not there: nothing runs that put its socket here */
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        pid_t pid = socket_name_pid(e->d_name);
        if (!pid)
            continue;
        if (*n == *cap) {
            size_t c = *cap ? 2 * *cap : 16;
            struct found *grown = realloc(*list, c * sizeof *grown);
            if (!grown) {
                rc = -1;
                break;
            }
            *list = grown;
            *cap = c;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *path = malloc(len);
        if (!path) {
            rc = -1;
            break;
        }
        snprintf(path, len, "%s/%s", dir, e->d_name);
        (*list)[(*n)++] = (struct found){pid, path};
    }
    closedir(d);
    return rc;
}

int control_scan(char dirs[][PATH_MAX], size_t n_dirs, char ***paths, size_t *n_paths)
{
    *paths = NULL;
    *n_paths = 0;
    struct found *list = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (size_t i = 0; i < n_dirs && rc == 0; i++)
        rc = scan_dir(dirs[i], &list, &n, &cap);
    char **out = rc == 0 ? calloc(n + 1, sizeof *out) : NULL;
    if (!out)
        rc = -1;
    /* A stable sort keeps the first folder's socket first for each pid. */
    for (size_t i = 1; i < n; i++)
        for (size_t k = i; k > 0 && compare_found(&list[k - 1], &list[k]) > 0; k--) {
            struct found t = list[k];
            list[k] = list[k - 1];
            list[k - 1] = t;
        }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (out && (kept == 0 || list[i - 1].pid != list[i].pid)) {
            out[kept++] = list[i].path;
            continue;
        }
        free(list[i].path);
    }
    free(list);
    if (rc < 0) {
        control_scan_free(out, kept);
        return -1;
    }
    *paths = out;
    *n_paths = kept;
    return 0;
}

void control_scan_free(char **paths, size_t n_paths)
{
    for (size_t i = 0; paths && i < n_paths; i++)
        free(paths[i]);
    free(paths);
}
