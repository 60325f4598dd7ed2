/* SPDX-License-Identifier: MIT */
/*
 * The shoal-tracker server: a libuv TCP listener speaking the project's
 * framing (frame.h, msg.h) in front of one registry (registry.h).
 *
 * Handshake. On connect the tracker sends TRK_CHALLENGE. The client answers
 * TRK_AUTH (see auth.h for what is signed); the tracker decodes and verifies
 * the cluster credential against the cluster keys, checks that it names the
 * same node key, checks the nonce signature, and for role publisher or
 * admin requires the node key in the admin keys. On success it replies
 * OK [0] followed by a fresh TRK_CHALLENGE; on failure ERROR [code, reason]
 * and the connection is closed.
 *
 * Several identities per connection. A connection may answer that fresh
 * challenge with another TRK_AUTH, for another node key (each is verified
 * in full), which becomes the connection's current identity: ANNOUNCE,
 * GET_PEERS, LEASE_REQ... act for the current identity. A TRK_AUTH naming
 * an identity (key and role) already verified on this connection just
 * switches back to it (reply OK, no new challenge): the key was proven on
 * this very connection. This lets relays and load generators carry many
 * nodes over a few connections without a signature check per message.
 *
 * Requests after authentication (replies in brackets):
 *   ANNOUNCE [ANNOUNCE_REPLY: interval, desired releases for the zone]
 *   GET_PEERS [PEERS]            LEASE_REQ [LEASE]     LEASE_DONE [OK|ERROR]
 *   PUT_MANIFEST [OK|ERROR]: any identity may put, but the manifest must be
 *     signed by a key in the publisher keys (nodes may re-put what they
 *     hold, which is how manifests come back after a tracker restart)
 *   GET_MANIFEST [MANIFEST|ERROR]  ROLLOUT (admin) [OK|ERROR]
 *   ROLLOUT_STATUS_REQ [ROLLOUT_STATUS]  STATS_REQ [STATS]
 * A request that is well formed but cannot be served gets ERROR and the
 * connection stays. Anything malformed, oversized, unexpected before
 * authentication, or of a type the tracker does not serve closes that
 * connection only, with a logged reason.
 *
 * Limits: frames up to SHOAL_FRAME_MAX_PREAUTH before authentication and
 * SHOAL_MSG_MANIFEST_MAX + 1 KiB after; a silent unauthenticated connection
 * is closed after auth_timeout_ms; at most max_conns connections; a
 * connection whose unsent replies exceed max_outq bytes is closed.
 *
 * State is soft (see registry.h): after a restart it is whole again within
 * one announce interval, once nodes re-announce and publishers or nodes
 * re-put manifests.
 *
 * Logs go to stderr, one line per event, with a UTC timestamp.
 */
#ifndef SHOAL_TRACKER_SERVER_H
#define SHOAL_TRACKER_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "keys.h"
#include "registry.h"

struct shoal_tracker_config {
    const char *listen;                        /* "host:port"; port 0 = any */
    struct shoal_reg_config reg;
    const struct shoal_keyset *cluster_keys;   /* required; borrowed */
    const struct shoal_keyset *admin_keys;     /* may be NULL; borrowed */
    const struct shoal_keyset *publisher_keys; /* may be NULL (no puts) */
    uint32_t auth_timeout_ms;
    uint32_t max_conns;
    size_t max_outq;                /* unsent reply bytes per connection */
    uint32_t max_identities;        /* verified node keys per connection */
};

/* listen 127.0.0.1:7700, registry defaults, auth timeout 10 s, 10,000
 * connections, 64 MiB + 64 KiB output queue (one full manifest reply),
 * 100,000 identities per connection. Key sets NULL. */
void shoal_tracker_config_default(struct shoal_tracker_config *c);

struct shoal_tracker;

/*
 * Creates the server on |loop|, binds and listens. The key sets in |cfg|
 * are borrowed and must outlive the server. Returns 0 with *out set, or
 * -EINVAL (bad listen address, no cluster keys), a negated errno / UV
 * error from bind or listen, or -ENOMEM.
 */
int shoal_tracker_new(struct shoal_tracker **out, uv_loop_t *loop,
                      const struct shoal_tracker_config *cfg);

/* The port actually bound (useful with port 0), or -1. */
int shoal_tracker_port(const struct shoal_tracker *t);

/* The registry, for inspection (borrowed). */
struct shoal_reg *shoal_tracker_registry(struct shoal_tracker *t);

/* Closes the listener, the timers and every connection. The loop then runs
 * dry once the close callbacks ran; call shoal_tracker_free after uv_run. */
void shoal_tracker_shutdown(struct shoal_tracker *t);

/* Frees the server after shutdown and the loop ran; NULL is accepted. */
void shoal_tracker_free(struct shoal_tracker *t);

/* Writes one log line "YYYY-mm-ddTHH:MM:SS.mmmZ shoal-tracker: ..." to stderr. */
void shoal_tracker_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
