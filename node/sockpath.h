/* SPDX-License-Identifier: MIT */
/*
 * Where shoald may put a Unix socket (the control and loader sockets), and
 * how it sets the socket file's mode. Whoever may rename entries in one of
 * the directories on a socket's path can move the socket aside and listen
 * in its place (loaders would take files from them), or swap it for a link
 * between bind and chmod (shoald would open up whatever it points at).
 */
#ifndef SHOAL_SOCKPATH_H
#define SHOAL_SOCKPATH_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Checks every directory on |path|'s way (as written, and again with links
 * resolved): each must be owned by root or by this process's user, and not
 * writable by group or others unless sticky (as /tmp is). Directories that
 * do not exist yet are not checked (the caller makes them). Returns 0, or
 * -EPERM with the directory and what is wrong with it in |why|, or a
 * negated errno (|why| says which directory).
 */
int shoal_sockpath_check(const char *path, char *why, size_t whylen);

/*
 * Sets the mode (and the group, unless |gid| is (gid_t)-1) of the socket
 * file just bound at |path|, without following a link: the path must still
 * be a socket. Returns 0, -EEXIST (something else is at the path now) or a
 * negated errno.
 */
int shoal_sockpath_set_mode(const char *path, mode_t mode, gid_t gid);

#endif
