/* SPDX-License-Identifier: MIT */
/* Socket directories and modes (see sockpath.h). */
#include "sockpath.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Checks the directory |dir| (already lstat'ed into |st|). */
static int dir_ok(const char *dir, const struct stat *st, char *why, size_t whylen)
{
    uid_t me = geteuid();

    if (st->st_uid != 0 && st->st_uid != me) {
        snprintf(why, whylen, "directory %s belongs to uid %u, not to root or to this user "
                              "(uid %u): its owner could take the socket's place",
                 dir, (unsigned)st->st_uid, (unsigned)me);
        return -EPERM;
    }
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX)) {
        snprintf(why, whylen, "directory %s is writable by %s (mode %04o, not sticky): they "
                              "could take the socket's place",
                 dir, (st->st_mode & S_IWOTH) ? "every user" : "its group",
                 (unsigned)(st->st_mode & 07777));
        return -EPERM;
    }
    return 0;
}

/* One directory on the way: 0 (fine, or a link of root's or ours: the
 * directory holding it was checked, and what it leads to is checked with
 * the resolved path), 1
 * (missing: it and what is below it are made later), -EPERM or a negated
 * errno with |why| set. */
static int check_one(const char *p, char *why, size_t whylen)
{
    struct stat st;

    if (lstat(p, &st) != 0) {
        if (errno == ENOENT)
            return 1;
        int rv = -errno;
        snprintf(why, whylen, "directory %s: %s", p, strerror(errno));
        return rv;
    }
    /* A link's own owner may point it elsewhere at any time (in a sticky
     * directory only they may replace it): it must be root's or ours. */
    if (S_ISLNK(st.st_mode) && st.st_uid != 0 && st.st_uid != geteuid()) {
        snprintf(why, whylen, "link %s belongs to uid %u, not to root or to this user "
                              "(uid %u): its owner could point it elsewhere",
                 p, (unsigned)st.st_uid, (unsigned)geteuid());
        return -EPERM;
    }
    return S_ISDIR(st.st_mode) ? dir_ok(p, &st, why, whylen) : 0;
}

/* Checks "/" and then each prefix of the absolute path |dir|. */
static int walk(const char *dir, char *why, size_t whylen)
{
    char buf[PATH_MAX];
    size_t n = strlen(dir);
    int rv = check_one("/", why, whylen);

    if (n >= sizeof buf) {
        snprintf(why, whylen, "directory %s: path too long", dir);
        return -ENAMETOOLONG;
    }
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n && rv == 0; i++) {
        if ((i < n && buf[i] != '/') || buf[i - 1] == '/')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        rv = check_one(buf, why, whylen);
        buf[i] = c;
    }
    return rv < 0 ? rv : 0;
}

int shoal_sockpath_check(const char *path, char *why, size_t whylen)
{
    char dir[PATH_MAX], real[PATH_MAX], cwd[PATH_MAX];
    const char *slash = strrchr(path, '/');
    int rv;

    why[0] = '\0';
    if (slash == path) {
        snprintf(dir, sizeof dir, "/");
    } else if (slash) {
        if ((size_t)(slash - path) >= sizeof dir)
            return -ENAMETOOLONG;
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
    } else {
        snprintf(dir, sizeof dir, ".");
    }
    if (dir[0] != '/') {
        if (!getcwd(cwd, sizeof cwd)) {
            rv = -errno;
            snprintf(why, whylen, "the working directory: %s", strerror(errno));
            return rv;
        }
        if (snprintf(real, sizeof real, "%s/%s", strcmp(cwd, "/") ? cwd : "", dir) >=
            (int)sizeof real)
            return -ENAMETOOLONG;
        memcpy(dir, real, sizeof dir);
    }
    if ((rv = walk(dir, why, whylen)) != 0)
        return rv;
    /* Links on the way lead elsewhere: that way must be safe too. A
     * directory still to be made has no resolved path yet; its existing
     * parents were checked above. */
    if (!realpath(dir, real))
        return 0;
    return strcmp(real, dir) ? walk(real, why, whylen) : 0;
}

int shoal_sockpath_set_mode(const char *path, mode_t mode, gid_t gid)
{
    struct stat st;

    /* In a directory no one else may write (shoal_sockpath_check), nothing
     * can come between this lstat and the calls below. */
    if (lstat(path, &st) != 0)
        return -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    if (chmod(path, mode) != 0)
        return -errno;
    if (gid != (gid_t)-1 && lchown(path, (uid_t)-1, gid) != 0)
        return -errno;
    return 0;
}
