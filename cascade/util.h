/* Small helpers every layer uses: error messages into a caller's buffer,
 * hex encoding, checked number parsing and checked 64-bit arithmetic.
 *
 * Convention for the whole project: library functions return 0 (or a count)
 * on success and a negative value on failure, and write a one-line message
 * into a caller-supplied `char *err, size_t errlen` buffer. Programs decide
 * what to print. */
#ifndef CASCADE_UTIL_H
#define CASCADE_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct stat;

#define CASCADE_ERRLEN 256

/* Exit status of every program: 0 success, 1 the work could not be done,
 * 2 bad usage or bad input. */
enum cascade_exit { CASCADE_EXIT_OK = 0, CASCADE_EXIT_FAIL = 1, CASCADE_EXIT_USAGE = 2 };

/* printf into err (may be NULL); always NUL-terminated. */
void cascade_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Lowercase hex of len bytes into out, which holds 2*len+1 chars. */
void cascade_hex(const uint8_t *bin, size_t len, char *out);
/* Parse exactly 2*len hex digits (either case). 0 on success, -1 otherwise. */
int cascade_unhex(const char *hex, uint8_t *out, size_t len);

/* Parse a decimal unsigned integer with an optional binary suffix
 * (K, KiB, M, MiB, G, GiB; case-insensitive). Rejects signs, overflow and
 * trailing junk. 0 on success, -1 otherwise. */
int cascade_parse_size(const char *s, uint64_t *out);

/* Checked arithmetic: true when the result overflowed. */
static inline bool cascade_add_overflows(uint64_t a, uint64_t b, uint64_t *r)
{
    return __builtin_add_overflow(a, b, r);
}
static inline bool cascade_mul_overflows(uint64_t a, uint64_t b, uint64_t *r)
{
    return __builtin_mul_overflow(a, b, r);
}

/* Big-endian load/store. */
static inline void cascade_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v;
}
static inline void cascade_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);  p[3] = (uint8_t)v;
}
static inline void cascade_put_be64(uint8_t *p, uint64_t v)
{
    cascade_put_be32(p, (uint32_t)(v >> 32)); cascade_put_be32(p + 4, (uint32_t)v);
}
static inline uint16_t cascade_get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t cascade_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t cascade_get_be64(const uint8_t *p)
{
    return ((uint64_t)cascade_get_be32(p) << 32) | cascade_get_be32(p + 4);
}

/* pread/pwrite exactly len bytes at off, retrying short transfers and
 * EINTR. 0, or -1 with errno set; a read past the end of the file fails
 * with ENODATA (the file is shorter than asked). */
int cascade_pread_full(int fd, void *buf, size_t len, uint64_t off);
int cascade_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* Open a file the user named without ever waiting in open() (a FIFO with
 * no writer would block forever) and refuse anything but a regular file,
 * naming what it is: "x.cascade is a FIFO, not a regular file". flags as
 * for open(2) (O_NONBLOCK and O_CLOEXEC are added; the descriptor is back
 * in blocking mode when returned), mode for O_CREAT. *st (may be NULL)
 * receives the file's status. The descriptor, or -1 with a message. */
int cascade_open_regular(const char *path, int flags, mode_t mode, struct stat *st,
                         char *err, size_t errlen);

/* "dir/name", malloc'd; NULL when out of memory. */
char *cascade_path_join(const char *dir, const char *name);

/* Monotonic clock in milliseconds (CLOCK_MONOTONIC). */
uint64_t cascade_now_ms(void);

/* A condition variable whose timed waits run on CLOCK_MONOTONIC, so that
 * a change of the wall clock never stretches or cuts a wait. 0 or -1. */
int cascade_cond_init_monotonic(pthread_cond_t *cond);
/* The moment at_ms (on the cascade_now_ms clock) as a deadline for
 * pthread_cond_timedwait on such a condition variable. */
void cascade_timespec_at(uint64_t at_ms, struct timespec *ts);

/* Format a byte count as "12.3 MiB" into out (at least 16 chars). */
void cascade_human_bytes(uint64_t n, char *out, size_t outlen);

#endif
