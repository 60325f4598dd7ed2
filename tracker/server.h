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
 * this very connection. The zone, listen address and session id are bound
 * to the identity when it is verified: a switch naming other ones is
 * refused (the connection is closed), so a node moves zone only through a
 * new handshake. This lets relays and load generators carry many nodes
 * over a few connections without a signature check per message.
 *
 * Sessions. A daemon sends with TRK_AUTH a session id it drew once at
 * start; the CLI sends none. On an identity's first ANNOUNCE on a
 * connection the tracker compares the id with the one the key last came
 * with (shoal_reg_node_session): the same id is a reconnect of the same
 * process, whose origin leases and fetched credit are kept (logged "node K
 * reconnected in the same session: kept its N origin leases"); no id or
 * another one is a new process, whose leases are voided and whose fetched
 * credit is dropped (shoal_reg_node_restarted; logged "node K announced in
 * a new session: voided N origin leases, M fetched chunks leasable again").
 *
 * Credentials end. Each verified identity keeps its credential's expiry;
 * a request made (or a switch attempted) after it gets ERROR
 * SHOAL_EEXPIRED and the connection is closed.
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
 * SHOAL_MSG_MANIFEST_MAX + 1 KiB after. A connection on which no publisher
 * or admin identity was verified may send only PUT_MANIFEST (a node's
 * re-put) above 64 KiB; any other frame declared larger is refused as soon
 * as its type is in. Memory for unfinished frames is bounded: all
 * connections together hold at most max_partial_total bytes for them (past
 * it the connection whose frame advanced slowest on average since it began
 * is closed), and a frame must be whole within frame_timeout_ms plus its
 * length at frame_min_rate, or its connection is closed. At most
 * max_conns_per_key connections may have verified the same node key: the
 * next TRK_AUTH for it gets ERROR SHOAL_EBUSY and is closed. A silent
 * unauthenticated connection
 * is closed after auth_timeout_ms; at most max_unauth of them at once, the
 * oldest of the source (IPv4 address, IPv6 /64) holding the most evicted
 * to make room for a new one (also when all max_conns are taken); such
 * evictions, and unauthenticated connections' closes and failed
 * handshakes, are logged at most once per 10 s each; an authenticated connection silent for idle_timeout_ms is
 * closed. A connection whose unsent replies exceed max_outq bytes is
 * closed.
 *
 * Fairness and back-pressure. At most 64 frames of one connection are
 * handled per turn; the rest waits (reading paused) while other
 * connections get theirs. A connection with more than 256 KiB of replies
 * unsent, or holding copied replies while all connections together hold
 * more than max_outq_total, is not read until its peer drains them.
 * Manifests (MANIFEST replies) are sent by reference to the registry's
 * copy, never copied per request. ROLLOUT_STATUS_REQ, STATS_REQ,
 * GET_MANIFEST and PUT_MANIFEST share a per-connection budget of 20 per
 * second (bursts of 40); past it they get ERROR SHOAL_EBUSY.
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
#include "keywatch.h"
#include "registry.h"

struct shoal_tracker_config {
    const char *listen;                        /* "host:port"; port 0 = any */
    struct shoal_reg_config reg;
    const struct shoal_keyset *cluster_keys;   /* required; borrowed */
    const struct shoal_keyset *admin_keys;     /* may be NULL; borrowed */
    const struct shoal_keyset *publisher_keys; /* may be NULL (no puts) */
    /* Revoked node keys (--deny-keys), read again when the files change
     * (checked every DENY_CHECK_MS); may be NULL; borrowed. */
    struct shoal_keywatch *deny;
    uint32_t auth_timeout_ms;
    uint32_t max_conns;
    size_t max_outq;                /* unsent reply bytes per connection */
    uint32_t max_identities;        /* verified node keys per connection */
    /* Added by the review fixes: */
    uint32_t max_unauth;            /* connections not yet authenticated */
    size_t max_outq_total;          /* copied reply bytes, all connections */
    uint32_t idle_timeout_ms;       /* authenticated and silent this long */
    /* Added by the hardening against authenticated clients: */
    size_t max_partial_total;       /* body bytes received for unfinished
                                       frames, all connections together (the
                                       buffers may be up to twice that) */
    uint32_t frame_timeout_ms;      /* a frame must be whole this long after
                                       it began ... */
    uint32_t frame_min_rate;        /* ... plus its length at this many
                                       bytes per second */
    uint32_t max_conns_per_key;     /* authenticated connections per node key */
    const char *rollout_file;       /* rollouts saved here on every change
                                       (rollfile.h); NULL = kept in memory */
    const char *manifest_dir;       /* each manifest registered is also kept
                                       here as <id hex>.manifest, and read
                                       back at start
                                       (shoal_tracker_load_manifests); NULL:
                                       in memory only */
    const struct shoal_seckey *id_key; /* the tracker's own key, proven to
                                       nodes that pin it (TRK_PROOF; auth.h);
                                       NULL: none; borrowed */
    uint32_t gone_ms;               /* a node key whose last connection
                                       closed without BYE is forgotten this
                                       long after unless it connects again
                                       (0: only node_ttl_ms forgets it) */
    uint32_t start_grace_ms;        /* for this long after start, no new
                                       origin lease of a release some node
                                       announces part of: the nodes coming
                                       back re-claim theirs first */
};

/* listen 127.0.0.1:7700, registry defaults, auth timeout 3 s, 10,000
 * connections of which 256 unauthenticated, 64 MiB + 64 KiB output queue
 * per connection (one full manifest reply), 256 MiB of copied replies in
 * all, idle timeout 300 s, 100,000 identities per connection, 128 MiB of
 * unfinished frames in all, frames whole within 10 s plus 512 KiB/s of
 * their length, 8 connections per node key, a node forgotten 5 s after
 * its last connection closed. Key sets NULL. */
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

/*
 * Registers every <64 hex>.manifest in cfg.manifest_dir that parses, was
 * signed by a key in publisher_keys and hashes to its name, as a PUT would
 * (at start: what a restart forgot, no node holding it, comes back). A
 * file older than manifest_ttl_ms by its time of change is removed
 * instead (the registry would have forgotten it by now). Counts in
 * *|loaded|, *|expired| and *|refused| (files that do not verify, or that
 * the registry has no room for: left in place, logged). Returns 0, or a
 * negated errno when the directory cannot be read or created.
 */
int shoal_tracker_load_manifests(struct shoal_tracker *t, unsigned *loaded, unsigned *expired,
                                 unsigned *refused);

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
