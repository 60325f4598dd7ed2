/* SPDX-License-Identifier: MIT */
/*
 * The daemon's loader socket: the zero-copy hand-off from shoald to the
 * accelerator loader on the same machine (protocol: node/LOADER-PROTOCOL.md).
 *
 * A loader connects to a local Unix socket, sends LOADER_WANT (a release as
 * repo@rev or a hex manifest id, and optionally the files it will load, in
 * its loading order), and gets one LOADER_FILE per file as soon as that file
 * is verified (its whole sha256 matched; the store's fsync and renames into
 * the HF cache follow, see store.h), with an open read-only descriptor of
 * the stored file attached (SCM_RIGHTS): the loader maps the very pages the
 * store wrote, in the HF cache or in a memfd. Files already complete go out at once;
 * LOADER_DONE follows the last file, then the daemon closes the connection.
 * A release that is not held yet, by hex id or by name, starts the pull
 * (hooks->pull: a name is resolved through the tracker, as `shoal pull`
 * does); one that cannot be had gets LOADER_ERROR, at once or when the
 * owner reports it (shoal_loader_srv_release_failed). The files loaders
 * wait for are handed to the scheduler as priorities
 * (shoal_swarm_want_files), merged across loaders first file first, and
 * refreshed as files complete.
 *
 * Access: the socket file is mode 0660, chown'd to the configured group, and
 * every connection is checked again with SO_PEERCRED (root, shoald's own
 * user, the configured user, or a process whose primary or supplementary
 * groups hold the configured group: SO_PEERGROUPS, the groups it had when
 * it connected); others get LOADER_ERROR and are closed. Slots are bounded:
 * at most max_per_uid connections of one uid, a LOADER_WANT complete within
 * want_timeout_ms of connecting, and SHOAL_LOADER_RX_BUDGET bytes of
 * unfinished requests in all.
 *
 * Threads: everything runs on the loop thread except
 * shoal_loader_srv_file_done, which may be called from any thread (the store
 * reports files on its worker threads) and sends the file's frame and
 * descriptor from that very thread, so the hand-off never waits behind the
 * loop's chunk traffic; only a full socket, a finished or broken connection
 * and the scheduler priorities are left to the loop. The server's state is
 * guarded by one mutex (see loader.c); each loader still receives each file
 * exactly once, frames in the order they were queued, LOADER_DONE last.
 */
#ifndef SHOAL_LOADER_H
#define SHOAL_LOADER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "swarm.h"

/* Frames from a loader are at most this big: a LOADER_WANT with a long file
 * order (100,000 paths of ~100 bytes) fits. */
#define SHOAL_LOADER_FRAME_MAX (16u * 1024u * 1024u)
/* A request may take this many bytes on its own; beyond that (a long
 * order), its bytes count against SHOAL_LOADER_RX_BUDGET, shared by every
 * connection whose request is still arriving, and by the orders kept for
 * loaders waiting for a release that is not open yet. A request that would
 * overdraw it is refused (LOADER_ERROR, "busy"), so connections that
 * start large requests and never finish them hold at most the budget, and
 * ordinary requests are never refused for it. */
#define SHOAL_LOADER_RX_FREE (64u * 1024u)
#define SHOAL_LOADER_RX_BUDGET (32u * 1024u * 1024u)
/* A connection's LOADER_WANT must be complete this long after it was
 * accepted, else it gets LOADER_ERROR and is closed (its slot is freed). */
#define SHOAL_LOADER_WANT_TIMEOUT_MS 5000u
/* Loaders connected at once (others are refused with LOADER_ERROR). */
#define SHOAL_LOADER_CLIENTS_MAX 256u
/* Releases not open yet that the loaders of one uid may wait for at once
 * (each may start a pull, hooks->pull): a loader asking for one more is
 * refused ("busy"). Loaders joining a wait already under way are not
 * counted again. */
#define SHOAL_LOADER_PENDING_PER_UID 4u

struct shoal_loader_srv;

struct shoal_loader_srv_cfg {
    uv_loop_t *loop;
    const char *path;     /* socket path (< 108 bytes); its directory must exist */
    const char *group;    /* group name allowed to connect; NULL: none */
    const char *user;     /* user name allowed to connect; NULL: none */
    uint32_t max_clients; /* 0: 64; at most SHOAL_LOADER_CLIENTS_MAX */
    uint32_t max_per_uid; /* connections of one uid at once; 0: max_clients / 4 */
    uint32_t want_timeout_ms; /* 0: SHOAL_LOADER_WANT_TIMEOUT_MS */
};

/* Called on the loop thread with the server's lock held (except |left|): a
 * hook must not call back into the server (announce with release_opened
 * later, from the loop, not from inside |pull|). */
struct shoal_loader_srv_hooks {
    /* The open release named by |release| (NUL-terminated "repo@rev" or 64
     * hex digits), or NULL when this node does not hold it (yet). */
    struct shoal_swarm *(*find)(void *user, const char *release);
    /* Release |release| (as for |find|) is not open here: start fetching
     * it, by manifest id, or by name through the tracker (as `shoal pull`
     * does). Return 0 when the pull is under way (then announce the release
     * with shoal_loader_srv_release_opened once it is open, or
     * shoal_loader_srv_release_failed when it cannot be had), or a negative
     * code with the reason, for people, in |why| (|whylen| bytes,
     * NUL-terminated): the loader gets LOADER_ERROR with it. May be NULL:
     * no pulls on demand. */
    int (*pull)(void *user, const char *release, char *why, size_t whylen);
    /* Some loader stopped waiting for a release that had not opened (it
     * left, or was refused): a pull that only loaders asked for may have
     * nobody waiting any more (shoal_loader_srv_waiting says). Called from
     * the loop WITHOUT the server's lock, soon after; may be NULL. */
    void (*left)(void *user);
    void *user;
};

/*
 * Creates the socket at |cfg->path| (a stale socket left by a dead daemon is
 * replaced; a live one, or a non-socket file, is an error), sets its mode and
 * group, and starts accepting on |cfg->loop|. |cfg| strings are copied;
 * |hooks| is borrowed and must outlive the server. Writes |*out| only on
 * success. Returns 0; -ENAMETOOLONG; -EADDRINUSE (another daemon is
 * listening there); -EEXIST (the path is not a socket); SHOAL_ENOTFOUND (no
 * such group or user); -ENOMEM; or a negated errno from socket/bind/chown.
 */
int shoal_loader_srv_new(struct shoal_loader_srv **out, const struct shoal_loader_srv_cfg *cfg,
                         const struct shoal_loader_srv_hooks *hooks);

/* Release |s| is now open (after a pull, or at start): loaders waiting for
 * it, by manifest id or by "repo@commit", start receiving files. Loop
 * thread. */
void shoal_loader_srv_release_opened(struct shoal_loader_srv *l, struct shoal_swarm *s);

/* Release |s| is what |name| ("repo@branch" or "repo@tag", as a loader
 * sent it) resolved to: loaders waiting for that name start receiving its
 * files (release_opened matches only ids and commits). Loop thread; |l|
 * may be NULL. */
void shoal_loader_srv_release_named(struct shoal_loader_srv *l, struct shoal_swarm *s,
                                    const char *name);

/* The pull of |release| (a 64-hex manifest id or "repo@rev", as a loader
 * sent it) cannot succeed: |why| (for people, e.g. "no tracker knows it").
 * Loaders waiting for it get LOADER_ERROR naming the release and |why|,
 * and are closed. Loop thread; |l| may be NULL. */
void shoal_loader_srv_release_failed(struct shoal_loader_srv *l, const char *release,
                                     const char *why);

/*
 * File |file| of |s| is ready (|status| 0: verified, shoal_store_file_ready)
 * or failed (nonzero, then nothing is sent). Any thread, but with none of the store's locks held (it
 * opens the file through the store). The event is time-stamped
 * (CLOCK_MONOTONIC, the LOADER_FILE's ready_ns) and the frame with the
 * file's descriptor is sent to every loader waiting for it from the calling
 * thread with a non-blocking sendmsg; what would block is finished by the
 * loop. |s| must stay open while loaders watch it. |l| may be NULL.
 */
void shoal_loader_srv_file_done(struct shoal_loader_srv *l, struct shoal_swarm *s, uint32_t file,
                                int status);

/* Release |s| is being dropped (`shoal drop`): every loader receiving its
 * files, or still waiting for it by manifest id or "repo@commit", gets
 * LOADER_ERROR naming |why| and is closed; frames of |s| not yet started
 * are discarded, so nothing opens a file of |s| afterwards and |s| may be
 * freed once its worker jobs end. Loop thread; |l| may be NULL. */
void shoal_loader_srv_release_dropped(struct shoal_loader_srv *l, struct shoal_swarm *s,
                                      const char *why);

/* Whether a loader still waits for |release| (a 64-hex manifest id or
 * "repo@rev", matched as shoal_loader_srv_release_failed does) to open.
 * Loop thread, not from inside a hook other than |left|; |l| may be NULL
 * (then false). */
bool shoal_loader_srv_waiting(struct shoal_loader_srv *l, const char *release);

/* Whether a loader is still being handed files of open release |s| (it
 * asked for them and has not received its LOADER_DONE or error yet): such a
 * release must not be closed to make room. Loop thread, not from inside a
 * hook; |l| may be NULL (then false). */
bool shoal_loader_srv_watching(struct shoal_loader_srv *l, const struct shoal_swarm *s);

/* Loaders connected now (for status and tests). */
uint32_t shoal_loader_srv_clients(const struct shoal_loader_srv *l);

/* Stops accepting, closes every loader connection and removes the socket
 * file; the handles close on the loop. Idempotent; NULL is fine. */
void shoal_loader_srv_close(struct shoal_loader_srv *l);

/* Frees the server. Call shoal_loader_srv_close first and let the loop run
 * its close callbacks. NULL is fine. */
void shoal_loader_srv_free(struct shoal_loader_srv *l);

#endif
