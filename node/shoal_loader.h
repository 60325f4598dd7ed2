/* SPDX-License-Identifier: MIT */
/*
 * Client library for shoald's loader socket: what an accelerator loader
 * written in C (or bound from another language) links to receive the files
 * of a release as open descriptors, as soon as each one is verified, in the
 * order it asked for where the swarm allows. The wire protocol is in
 * node/LOADER-PROTOCOL.md; this is one blocking implementation of it.
 *
 *   struct shoal_loader_client *c;
 *   struct shoal_loader_file f;
 *   int fd;
 *   shoal_loader_connect(&c, "/run/shoald/loader.sock");
 *   shoal_loader_want(c, "org/model@<commit>", order, norder);
 *   while (shoal_loader_next_file(c, &f, &fd, -1) == 1) {
 *       void *p = mmap(NULL, f.size, PROT_READ, MAP_SHARED, fd, 0);
 *       ... hand p to the accelerator runtime ...
 *       close(fd);
 *   }
 *   shoal_loader_close(c);
 *
 * The descriptor is read-only and refers to the daemon's own stored file
 * (the HF-cache blob, or the memfd with --store memory): mapping it copies
 * nothing. One connection watches one release; use several connections for
 * several releases. Not thread-safe: one thread per client.
 */
#ifndef SHOAL_LOADER_CLIENT_H
#define SHOAL_LOADER_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

struct shoal_loader_client;

/* One handed-over file. */
struct shoal_loader_file {
    char path[SHOAL_MSG_PATH_MAX + 1]; /* path inside the release, NUL-terminated */
    uint64_t size;                     /* bytes */
    uint8_t sha256[32];                /* the Hub's sha256, already verified */
    uint32_t index;                    /* position in the asked order (or manifest order) */
    uint32_t total;                    /* files this connection will receive */
    uint64_t ready_ns;                 /* daemon's CLOCK_MONOTONIC when it was verified,
                                        * 0 when it was complete before the request */
};

/*
 * Connects to the loader socket at |path|. Writes |*out| only on success.
 * Returns 0; -ENAMETOOLONG; -ENOMEM; or the negated errno of connect
 * (-ENOENT: no daemon socket there; -EACCES: not allowed by the socket
 * file's permissions; -ECONNREFUSED: the daemon is gone).
 */
int shoal_loader_connect(struct shoal_loader_client **out, const char *path);

/*
 * Asks for release |release| ("org/name@commit", "datasets/org/name@commit"
 * for a dataset, a branch or tag the daemon resolves, or a 64-hex manifest id,
 * which makes the daemon fetch a release it does not hold yet). |order|
 * lists the |n| paths wanted, most urgent first; with |n| 0 every file of
 * the release is sent. Only once per connection. Returns 0; -EINVAL (second
 * call, or an empty release); SHOAL_ETOOBIG / SHOAL_EBADMSG when the request
 * breaks the message limits (see msg.h); -ENOMEM; or a negated errno from
 * the socket. When the daemon refused the connection before the request
 * (not authorised), this still returns 0 and shoal_loader_next_file reports
 * the refusal.
 */
int shoal_loader_want(struct shoal_loader_client *c, const char *release,
                      const char *const *order, size_t n);

/*
 * Waits at most |timeout_ms| (negative: forever) for the next event.
 * Returns
 *   1   a file: |*info| is filled and |*fd| is a new read-only descriptor
 *       that the caller owns (close it when done);
 *   0   LOADER_DONE: every file was handed over; later calls return 0;
 *   SHOAL_ENOTFOUND  the daemon answered LOADER_ERROR (unknown release,
 *       unknown path, not authorised): see shoal_loader_error();
 *   -ETIMEDOUT  nothing arrived in time (call again to keep waiting);
 *   -ECONNRESET the daemon closed the connection before LOADER_DONE;
 *   SHOAL_EPROTO / SHOAL_ETOOBIG / SHOAL_EBADMSG a malformed frame, a
 *       LOADER_FILE without its descriptor, or a LOADER_DONE before every
 *       file announced (`total`) came (the connection is unusable);
 *   or another negated errno.
 */
int shoal_loader_next_file(struct shoal_loader_client *c, struct shoal_loader_file *info,
                           int *fd, int timeout_ms);

/* The daemon's LOADER_ERROR text, or a description of the last failure;
 * "" when none. Valid until the next call on |c|. */
const char *shoal_loader_error(const struct shoal_loader_client *c);

/* Closes the connection (the daemon forgets this loader) and frees |c|,
 * including descriptors received but not yet returned. NULL is fine. */
void shoal_loader_close(struct shoal_loader_client *c);

#endif
