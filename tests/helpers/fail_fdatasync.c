/* LD_PRELOAD shim for tests: make fdatasync fail (EIO) on demand, the way a
 * disk that loses dirty pages does, without any test-only call into our
 * code. While the file named by $CASCADE_FAIL_FDATASYNC exists, the next
 * fdatasync of a descriptor whose path ends in "/data" (a store's data
 * file) fails with EIO and removes that file: one failure per arming. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
