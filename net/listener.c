/* A listening socket for an event loop: see listener.h. */
#include "net/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cascade/util.h"
#include "net/sock.h"

void listener_init(struct listener *l)
{
    memset(l, 0, sizeof *l);
    l->listen_fd = l->epoll_fd = l->wake_fd = l->spare_fd = -1;
}

int listener_add(struct listener *l, int fd, uint32_t events, void *tag, char *err,
                 size_t errlen)
{
    struct epoll_event ev = {.events = events, .data.ptr = tag};
    if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        cascade_errf(err, errlen, "epoll_ctl: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int listener_open(struct listener *l, const struct sockaddr_in *addr, int backlog,
                  const char *who, char *err, size_t errlen)
{
    l->listen_fd = sock_listen(addr, backlog, err, errlen);
    if (l->listen_fd < 0)
        return -1;
    if (sock_set_nonblocking(l->listen_fd) < 0 || sock_local_addr(l->listen_fd, &l->addr) < 0) {
        cascade_errf(err, errlen, "%s: listening socket: %s", who, strerror(errno));
        return -1;
    }
    l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epoll_fd < 0 || l->wake_fd < 0 || listener_take_spare(l) < 0) {
        cascade_errf(err, errlen, "%s: %s", who, strerror(errno));
        return -1;
    }
    return listener_add(l, l->listen_fd, EPOLLIN, &l->listen_fd, err, errlen) < 0 ||
           listener_add(l, l->wake_fd, EPOLLIN, &l->wake_fd, err, errlen) < 0 ? -1 : 0;
}

void listener_close(struct listener *l)
{
    int *fds[] = {&l->listen_fd, &l->epoll_fd, &l->wake_fd, &l->spare_fd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
}

int listener_wake(struct listener *l)
{
    uint64_t one = 1;
    return write(l->wake_fd, &one, sizeof one) == (ssize_t)sizeof one ? 0 : -1;
}

void listener_drain_wake(struct listener *l)
{
    uint64_t v;
    ssize_t got = read(l->wake_fd, &v, sizeof v);
    (void)got;   /* EAGAIN: already zero */
}

int listener_accept_on_spare(struct listener *l, struct sockaddr_in *peer)
{
    if (l->spare_fd < 0) {
        errno = EMFILE;
        return -1;
    }
    close(l->spare_fd);
    l->spare_fd = -1;
    socklen_t len = sizeof *peer;
    return accept4(l->listen_fd, (struct sockaddr *)peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int listener_take_spare(struct listener *l)
{
    if (l->spare_fd < 0)
        l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return l->spare_fd >= 0 ? 0 : -1;
}
