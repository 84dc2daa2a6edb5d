/* Socket helpers: address parsing, connect with a timeout, full reads and
 * writes with a deadline (short reads/writes and EINTR handled), listening.
 * Errors come back as -1 with a message such as
 * "connect(127.0.0.1:8888): Connection refused" in the caller's buffer.
 * Nothing here raises SIGPIPE (MSG_NOSIGNAL / SO_NOSIGPIPE). */
#ifndef NET_SOCK_H
#define NET_SOCK_H

#include <netinet/in.h>
#include <sys/resource.h>
#include <stddef.h>
#include <stdint.h>

#define SOCK_ADDRSTRLEN 32   /* "255.255.255.255:65535" fits */

/* Parse "IP:PORT", "HOST:PORT" (resolved, IPv4), "IP" or ":PORT" (the
 * missing half from default_ip/default_port). 0 or -1 with a message. */
int sock_parse_addr(const char *s, const char *default_ip, uint16_t default_port,
                    struct sockaddr_in *out, char *err, size_t errlen);
void sock_format_addr(const struct sockaddr_in *addr, char *out, size_t outlen);
/* Build an address from host-order ip and port. */
void sock_make_addr(uint32_t ip, uint16_t port, struct sockaddr_in *out);

/* Blocking TCP connect that gives up after timeout_ms. Returns the fd
 * (blocking mode, TCP_NODELAY set) or -1. */
int sock_connect(const struct sockaddr_in *addr, int timeout_ms, char *err, size_t errlen);

/* Read/write exactly len bytes, or fail when the peer closes, errors, or
 * timeout_ms passes without progress... of the whole call (a deadline).
 * 0 on success, -1 with a message ("connection closed" for EOF). */
int sock_read_full(int fd, void *buf, size_t len, int timeout_ms, char *err, size_t errlen);
int sock_write_full(int fd, const void *buf, size_t len, int timeout_ms, char *err, size_t errlen);

/* The same three, also giving up (errno ECANCELED, "Operation canceled")
 * as soon as cancel_fd (an eventfd or pipe; -1: none) is readable, so a
 * thread blocked on a slow peer can be stopped at once. */
int sock_connect_cancelable(const struct sockaddr_in *addr, int timeout_ms, int cancel_fd,
                            char *err, size_t errlen);
int sock_read_full_cancelable(int fd, void *buf, size_t len, int timeout_ms, int cancel_fd,
                              char *err, size_t errlen);
int sock_write_full_cancelable(int fd, const void *buf, size_t len, int timeout_ms,
                               int cancel_fd, char *err, size_t errlen);

/* socket+SO_REUSEADDR+bind+listen; returns the fd (blocking) or -1.
 * Port 0 picks a free port: read it back with sock_local_addr. */
int sock_listen(const struct sockaddr_in *addr, int backlog, char *err, size_t errlen);
int sock_local_addr(int fd, struct sockaddr_in *out);

int sock_set_nonblocking(int fd);

/* Raise the process's soft descriptor limit to its hard limit (the soft
 * one is often 1024: a few idle clients' worth). Returns the limit in
 * force, 0 if unknown. */
rlim_t sock_raise_fd_limit(void);

#endif
