/* SPDX-License-Identifier: MIT */
/*
 * A slow disk for the daemon tests (LD_PRELOAD into shoald): while the file
 * named by $SHOAL_SLOWFS_FLAG exists, each readlinkat of a path with
 * "snapshots/" in it (a check that a snapshot is whole) and each read of a
 * file under a "/blobs/" folder (hashing a blob) first sleeps
 * $SHOAL_SLOWFS_MS ms (default 200). So a test can make work that a slow
 * disk or a large file would stretch last long enough to see what the
 * daemon does meanwhile, with small files. Without the flag file nothing
 * changes.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The code under test is built with _FILE_OFFSET_BITS=64, so its pread
 * calls are to pread64. */
ssize_t pread64(int fd, void *buf, size_t n, off_t off);

typedef ssize_t (*readlinkat_fn)(int, const char *, char *, size_t);
typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);

static readlinkat_fn real_readlinkat(void)
{
    static readlinkat_fn real;
    void *v;

    if (!real) {
        v = dlsym(RTLD_NEXT, "readlinkat");
        memcpy(&real, &v, sizeof real);
    }
    return real;
}

static bool slow_now(void)
{
    const char *flag = getenv("SHOAL_SLOWFS_FLAG");
    struct stat st;
    int e = errno;
    bool on = flag && *flag && stat(flag, &st) == 0;

    errno = e;
    return on;
}

static void nap(void)
{
    const char *ms = getenv("SHOAL_SLOWFS_MS");
    long v = ms ? atol(ms) : 200;
    struct timespec ts = {v / 1000, (v % 1000) * 1000000L};
    int e = errno;

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    errno = e;
}

/* Whether |fd| is a file in a "blobs" folder. */
static bool is_blob(int fd)
{
    char link[64], path[4096];
    ssize_t n;
    int e = errno;

    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = real_readlinkat()(AT_FDCWD, link, path, sizeof path - 1);
    errno = e;
    if (n <= 0)
        return false;
    path[n] = '\0';
    return strstr(path, "/blobs/") != NULL;
}

ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t len)
{
    if (strstr(path, "snapshots/") && slow_now())
        nap();
    return real_readlinkat()(dirfd, path, buf, len);
}

ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
    static pread_fn real;
    void *v;

    if (!real) {
        v = dlsym(RTLD_NEXT, "pread64");
        memcpy(&real, &v, sizeof real);
    }
    if (slow_now() && is_blob(fd))
        nap();
    return real(fd, buf, n, off);
}
