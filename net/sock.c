/* Socket helpers: see sock.h. Blocking sockets with poll() deadlines, so a
 * silent or slow peer costs a bounded time and never a hang. */
#include "net/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/util.h"

void sock_make_addr(uint32_t ip, uint16_t port, struct sockaddr_in *out)
{
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_addr.s_addr = htonl(ip);
    out->sin_port = htons(port);
}

void sock_format_addr(const struct sockaddr_in *addr, char *out, size_t outlen)
{
    char ip[INET_ADDRSTRLEN];
    if (!inet_ntop(AF_INET, &addr->sin_addr, ip, sizeof ip))
        snprintf(ip, sizeof ip, "?");
    snprintf(out, outlen, "%s:%u", ip, ntohs(addr->sin_port));
}

static int parse_port(const char *s, uint16_t *out)
{
    if (!*s)
        return -1;
    unsigned long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535)
            return -1;
    }
    *out = (uint16_t)v;
    return 0;
}

static int resolve_ipv4(const char *host, struct in_addr *out, char *err, size_t errlen)
{
    if (inet_pton(AF_INET, host, out) == 1)
        return 0;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res) {
        cascade_errf(err, errlen, "cannot resolve '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    *out = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
    freeaddrinfo(res);
    return 0;
}

int sock_parse_addr(const char *s, const char *default_ip, uint16_t default_port,
                    struct sockaddr_in *out, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(s, ':');
    uint16_t port = default_port;
    size_t host_len = colon ? (size_t)(colon - s) : strlen(s);
    if (host_len >= sizeof host) {
        cascade_errf(err, errlen, "address '%s' is too long", s);
        return -1;
    }
    memcpy(host, s, host_len);
    host[host_len] = '\0';
    if (colon && parse_port(colon + 1, &port) < 0) {
        cascade_errf(err, errlen, "bad port in '%s': expected a number 0-65535", s);
        return -1;
    }
    if (!host[0]) {
        if (!default_ip) {
            cascade_errf(err, errlen, "address '%s' has no host: expected IP:PORT", s);
            return -1;
        }
        snprintf(host, sizeof host, "%s", default_ip);
    }
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons(port);
    return resolve_ipv4(host, &out->sin_addr, err, errlen);
}

int sock_set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -1;
    return 0;
}

static int set_blocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
        return -1;
    return 0;
}

/* Milliseconds left until deadline (ms, monotonic), at least 0. */
static int ms_left(uint64_t deadline)
{
    uint64_t now = cascade_now_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

/* poll one fd for events until deadline, or until cancel_fd (-1: none)
 * is readable; 1 ready, 0 timeout, -1 error (errno ECANCELED: cancelled). */
static int wait_fd(int fd, short events, uint64_t deadline, int cancel_fd)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = events},
                              {.fd = cancel_fd, .events = POLLIN}};
        int rc = poll(p, cancel_fd >= 0 ? 2 : 1, ms_left(deadline));
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc > 0 && cancel_fd >= 0 && p[1].revents) {
            errno = ECANCELED;
            return -1;
        }
        return rc < 0 ? -1 : rc;
    }
}

int sock_connect(const struct sockaddr_in *addr, int timeout_ms, char *err, size_t errlen)
{
    return sock_connect_cancelable(addr, timeout_ms, -1, err, errlen);
}

int sock_read_full(int fd, void *buf, size_t len, int timeout_ms, char *err, size_t errlen)
{
    return sock_read_full_cancelable(fd, buf, len, timeout_ms, -1, err, errlen);
}

int sock_write_full(int fd, const void *buf, size_t len, int timeout_ms, char *err, size_t errlen)
{
    return sock_write_full_cancelable(fd, buf, len, timeout_ms, -1, err, errlen);
}

int sock_connect_cancelable(const struct sockaddr_in *addr, int timeout_ms, int cancel_fd,
                            char *err, size_t errlen)
{
    char name[SOCK_ADDRSTRLEN];
    sock_format_addr(addr, name, sizeof name);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        cascade_errf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    uint64_t deadline = cascade_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0) {
        if (errno != EINPROGRESS) {
            cascade_errf(err, errlen, "connect(%s): %s", name, strerror(errno));
            goto fail;
        }
        int rc = wait_fd(fd, POLLOUT, deadline, cancel_fd);
        if (rc <= 0) {
            cascade_errf(err, errlen, "connect(%s): %s", name,
                         rc == 0 ? "timed out" : strerror(errno));
            goto fail;
        }
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr != 0) {
            cascade_errf(err, errlen, "connect(%s): %s", name, strerror(soerr ? soerr : errno));
            goto fail;
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (set_blocking(fd) < 0) {
        cascade_errf(err, errlen, "fcntl: %s", strerror(errno));
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return -1;
}

int sock_read_full_cancelable(int fd, void *buf, size_t len, int timeout_ms, int cancel_fd,
                              char *err, size_t errlen)
{
    uint8_t *p = buf;
    uint64_t deadline = cascade_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    while (len > 0) {
        int rc = wait_fd(fd, POLLIN, deadline, cancel_fd);
        if (rc == 0) {
            cascade_errf(err, errlen, "read timed out after %d ms", timeout_ms);
            return -1;
        }
        if (rc < 0) {
            cascade_errf(err, errlen, "poll: %s", strerror(errno));
            return -1;
        }
        ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n < 0) {
            cascade_errf(err, errlen, "read: %s", strerror(errno));
            return -1;
        }
        if (n == 0) {
            cascade_errf(err, errlen, "connection closed");
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int sock_write_full_cancelable(int fd, const void *buf, size_t len, int timeout_ms,
                               int cancel_fd, char *err, size_t errlen)
{
    const uint8_t *p = buf;
    uint64_t deadline = cascade_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    while (len > 0) {
        int rc = wait_fd(fd, POLLOUT, deadline, cancel_fd);
        if (rc == 0) {
            cascade_errf(err, errlen, "write timed out after %d ms", timeout_ms);
            return -1;
        }
        if (rc < 0) {
            cascade_errf(err, errlen, "poll: %s", strerror(errno));
            return -1;
        }
        /* MSG_NOSIGNAL: a peer that went away is an error, not SIGPIPE. */
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n < 0) {
            cascade_errf(err, errlen, "write: %s", strerror(errno));
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int sock_listen(const struct sockaddr_in *addr, int backlog, char *err, size_t errlen)
{
    char name[SOCK_ADDRSTRLEN];
    sock_format_addr(addr, name, sizeof name);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        cascade_errf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)addr, sizeof *addr) < 0) {
        cascade_errf(err, errlen, "bind(%s): %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, backlog) < 0) {
        cascade_errf(err, errlen, "listen(%s): %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int sock_local_addr(int fd, struct sockaddr_in *out)
{
    socklen_t len = sizeof *out;
    return getsockname(fd, (struct sockaddr *)out, &len);
}

rlim_t sock_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl.rlim_cur = rl.rlim_max;
        else
            log_warn("cannot raise the descriptor limit from %llu to %llu: %s",
                     (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                     strerror(errno));
    }
    return rl.rlim_cur;
}
