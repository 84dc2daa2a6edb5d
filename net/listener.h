/* A listening TCP socket with what an event loop around it needs: an
 * epoll set holding it and a wake eventfd (each registered with its own
 * field's address as the tag, so a loop tells them apart), and a spare
 * descriptor kept for the moment the process runs out of them (EMFILE):
 * given up to accept one newcomer, then taken back, so a full process
 * answers (or sheds) instead of leaving the listening socket readable and
 * spinning. Shared by the block server and the tracker server. One thread
 * owns a listener; listener_wake may be called from any thread. */
#ifndef NET_LISTENER_H
#define NET_LISTENER_H

#include <netinet/in.h>
#include <stdint.h>

struct listener {
    int listen_fd;               /* non-blocking; tag &listen_fd in the epoll set */
    int epoll_fd;
    int wake_fd;                 /* eventfd; tag &wake_fd */
    int spare_fd;                /* /dev/null, -1 while given up */
    struct sockaddr_in addr;     /* the address really listened on */
};

/* Every descriptor -1: safe to close before (or after a failed) open. */
void listener_init(struct listener *l);
/* Listen on addr (port 0: any free one) with backlog; who names the
 * server in messages. 0 or -1 with a message (close it then). */
int listener_open(struct listener *l, const struct sockaddr_in *addr, int backlog,
                  const char *who, char *err, size_t errlen);
void listener_close(struct listener *l);

/* Add fd to the epoll set for events, tagged tag. 0 or -1 with a message. */
int listener_add(struct listener *l, int fd, uint32_t events, void *tag, char *err,
                 size_t errlen);
/* Wake the loop's epoll_wait (it sees &l->wake_fd). 0 or -1 (errno). */
int listener_wake(struct listener *l);
/* Read the wake counter back to zero (after epoll reported it). */
void listener_drain_wake(struct listener *l);

/* Out of descriptors: give up the spare and accept one newcomer (its fd,
 * non-blocking, and its address), or -1 with errno (EAGAIN: nobody was
 * waiting; EMFILE: no spare to give up). Call listener_take_spare after,
 * whatever came of it. */
int listener_accept_on_spare(struct listener *l, struct sockaddr_in *peer);
/* Take the spare descriptor back. 0 or -1 (still none: tried again later). */
int listener_take_spare(struct listener *l);

#endif
