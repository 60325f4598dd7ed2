/* SPDX-License-Identifier: MIT */
/* Small whole files, read and replaced; see smallfile.h. */
#include "smallfile.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* fsyncs the directory holding |path|, so a rename into it survives a
 * crash. */
static int fsync_parent(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    int fd, rv = 0;

    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else if ((size_t)(slash - path) >= sizeof dir)
        return -ENAMETOOLONG;
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fsync(fd) != 0)
        rv = -errno;
    close(fd);
    return rv;
}

int shoal_write_file_atomic(const char *path, const void *data, size_t len)
{
    char tmp[4096];
    const uint8_t *p = data;
    size_t left = len;
    int fd = -1, rv = 0;
    bool made = false;

    if (snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    /* mkstemp creates a new name with O_EXCL: a file or symlink planted at
     * a guessable temp name (say, in a shared output directory) is never
     * opened, so it cannot redirect the write. */
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rv = -errno;
        goto out;
    }
    made = true;
    if (fchmod(fd, 0644) != 0) {
        rv = -errno;
        goto out;
    }
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rv = -errno;
            goto out;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        rv = -errno;
        goto out;
    }
    rv = close(fd) == 0 ? 0 : -errno;
    fd = -1;
    if (rv)
        goto out;
    if (rename(tmp, path) != 0) {
        rv = -errno;
        goto out;
    }
    made = false;
    rv = fsync_parent(path);
out:
    if (fd >= 0)
        close(fd);
    if (made)
        unlink(tmp);
    return rv;
}

int shoal_read_file(const char *path, uint64_t max, uint8_t **data, size_t *len)
{
    int rv = 0;
    uint8_t *buf = NULL;
    /* O_NONBLOCK: a FIFO put at the path must not hang the caller. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rv = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rv = -EINVAL;
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        rv = SHOAL_ETOOBIG;
        goto out;
    }
    size_t n = (size_t)st.st_size, got = 0;
    buf = malloc(n + 1);
    if (!buf) {
        rv = -ENOMEM;
        goto out;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rv = r < 0 ? -errno : -EIO;
            goto out;
        }
        got += (size_t)r;
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rv;
}
