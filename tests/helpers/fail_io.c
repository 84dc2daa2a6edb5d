/* LD_PRELOAD shim for tests: make the disk fail on demand, without any
 * test-only call into our code. Only descriptors whose path ends in "/data"
 * (a store's data file) are touched.
 *   CASCADE_FAIL_FDATASYNC=FILE  while FILE exists, the next fdatasync fails
 *                                with EIO (as a disk that lost dirty pages)
 *                                and removes FILE: one failure per arming;
 *   CASCADE_FAIL_WRITE=FILE      while FILE exists, every pwrite fails with
 *                                ENOSPC (a full filesystem); remove FILE and
 *                                space is back. */
/* Plain names: we define both pwrite and pwrite64 ourselves. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_data_file(int fd)
{
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 5)
        return 0;
    path[n] = '\0';
    return strcmp(path + n - 5, "/data") == 0;
}

static int armed(const char *var)
{
    const char *trigger = getenv(var);
    struct stat sb;
    return trigger && stat(trigger, &sb) == 0;
}

int fdatasync(int fd)
{
    static int (*real_fdatasync)(int);
    if (!real_fdatasync)
        real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    const char *trigger = getenv("CASCADE_FAIL_FDATASYNC");
    if (trigger && is_data_file(fd) && unlink(trigger) == 0) {
        errno = EIO;
        return -1;
    }
    return real_fdatasync(fd);
}

static int write_fails(int fd)
{
    if (armed("CASCADE_FAIL_WRITE") && is_data_file(fd)) {
        errno = ENOSPC;
        return 1;
    }
    return 0;
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real)
        real = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    return write_fails(fd) ? -1 : real(fd, buf, count, off);
}

/* Callers built with _FILE_OFFSET_BITS=64 (ours) bind to pwrite64. */
ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off64_t);
    if (!real)
        real = (ssize_t (*)(int, const void *, size_t, off64_t))dlsym(RTLD_NEXT, "pwrite64");
    return write_fails(fd) ? -1 : real(fd, buf, count, off);
}
