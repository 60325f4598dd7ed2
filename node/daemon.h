/* SPDX-License-Identifier: MIT */
/*
 * shoald's wiring: loads the node identity and trust lists named by the
 * config, opens the releases it holds, listens for peers and dials the
 * configured ones, routes every authenticated message to the release it
 * belongs to (swarm.h), fetches manifests of releases to pull from peers
 * (WANT_MANIFEST, verified against the trusted publisher keys), bans nodes
 * that send bad chunks, and shuts down gracefully on SIGTERM/SIGINT (BYE to
 * every peer, queued writes flushed, in-flight worker jobs finished, store
 * sidecars flushed).
 *
 * With trackers (trkconn.h) it also announces what it holds, resolves
 * --pull names and ids, dials the holders a tracker lists (same zone
 * first), pulls what a rollout asks for, and takes origin leases there;
 * without any tracker answering for lease-fallback-ms it fetches from the
 * origin on its own.
 */
#ifndef SHOAL_DAEMON_H
#define SHOAL_DAEMON_H

#include "config.h"

struct shoal_daemon;

/* Sets up everything that can fail early (keys, trust files, store,
 * listening socket) from |cfg| (borrowed; must outlive the daemon).
 * Errors are logged with what failed. Returns 0 or a negative code;
 * |*out| only on success. */
int shoal_daemon_new(struct shoal_daemon **out, const struct shoal_config *cfg);

/* Runs the loop until shutdown. Returns the process exit status. */
int shoal_daemon_run(struct shoal_daemon *d);

/* Asks a running daemon to shut down (loop thread or signal handler path). */
void shoal_daemon_stop(struct shoal_daemon *d, int exit_code);

/* Frees everything; NULL is fine. After run returned, or instead of it. */
void shoal_daemon_free(struct shoal_daemon *d);

#endif
