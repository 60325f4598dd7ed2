/* SPDX-License-Identifier: MIT */
/* Whole-file replacement; see atomicfile.h. */
#include "atomicfile.h"

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
