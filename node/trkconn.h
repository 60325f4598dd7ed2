/* SPDX-License-Identifier: MIT */
/*
 * The daemon's tracker client: one libuv connection to each tracker named
 * by --tracker, kept up for the daemon's lifetime.
 *
 * Each connection answers the tracker's TRK_CHALLENGE with TRK_AUTH (node
 * key, cluster credential, the signature of tracker/auth.h, zone, listen
 * address (or, with advertise_port, the connection's own local address and
 * that port; logged when first chosen or changed), role node, and the
 * process session id when the config has one: the same on every
 * reconnect, so the tracker keeps the leases of a daemon that only lost
 * its connection), then announces what the node holds every interval the
 * tracker returns (the contents come from the owner's fill_announce
 * hook). A tracker that is down, refuses us, or stops answering a request
 * within request_timeout_ms is dropped and dialled again after an
 * exponential backoff with jitter; the others are unaffected, so the node
 * survives any one of them being down.
 *
 * Requests and replies: the tracker answers each request in order, so each
 * connection keeps a FIFO of what it asked and matches every reply (and
 * every ERROR, which does not say what it answers) to the head of it.
 *   - GET_PEERS goes to every ready tracker; each PEERS reply is handed to
 *     on_peers.
 *   - GET_MANIFEST (by id or by "org/name@commit") goes to the first ready
 *     tracker; an ERROR or a lost connection moves it to the next one, and
 *     on_manifest reports the first MANIFEST, or SHOAL_ENOTFOUND once every
 *     ready tracker said no. The signed bytes are NOT verified here.
 *   - LEASE_REQ goes to the first ready tracker (the same one on every node
 *     while it is up, so one tracker arbitrates a region's origin fetches);
 *     on_lease reports its answer; LEASE_DONE goes back to that tracker.
 *   - PUT_MANIFEST goes to one tracker or all; the replies are only logged.
 *
 * Loop thread only. The hooks may call any function here, including
 * shoal_trkconn_stop(), from inside a hook.
 */
#ifndef SHOAL_TRKCONN_H
#define SHOAL_TRKCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "keys.h"
#include "msg.h"

/* Trackers one client connects to. */
#define SHOAL_TRKCONN_MAX 16u
/* Requests one connection may have unanswered at once. */
#define SHOAL_TRKCONN_PENDING_MAX 256u
/* No tracker index (e.g. a lease granted without a tracker). */
#define SHOAL_TRKCONN_NONE UINT32_MAX

struct shoal_trkconn;

struct shoal_trkconn_hooks {
    /* Tracker |idx| accepted our identity (on every (re)connect), after
     * the login's first announce; the LEASE_DONEs held while it was down
     * follow what the hook sends (manifests, lease re-claims). */
    void (*on_ready)(void *user, uint32_t idx);
    /* Fills |a| (zeroed; count <= SHOAL_MSG_ANNOUNCE_MAX) with what the node
     * holds, for an ANNOUNCE about to be sent. */
    void (*fill_announce)(void *user, struct shoal_msg_announce *a);
    /* Tracker |idx| answered an announce; |r| (views valid during the
     * call) lists the releases this node should hold. May be NULL. */
    void (*on_announce_reply)(void *user, uint32_t idx, const struct shoal_msg_announce_reply *r);
    /* Tracker |idx| answered GET_PEERS (views valid during the call). */
    void (*on_peers)(void *user, uint32_t idx, const struct shoal_msg_peers *p);
    /* Final answer to shoal_trkconn_get_manifest() |tag|: |status| 0 and
     * |m| (views valid during the call, signature NOT checked), or
     * SHOAL_ENOTFOUND (no ready tracker has it) and |m| NULL. */
    void (*on_manifest)(void *user, uint64_t tag, int status, const struct shoal_msg_manifest *m);
    /* Answer to shoal_trkconn_lease() |tag| from tracker |idx|: |status| 0
     * and |l| (count 0: nothing free now), or an error with |l| NULL: the
     * tracker's ERROR code, -ECONNRESET (connection lost) or -ETIMEDOUT. */
    void (*on_lease)(void *user, uint64_t tag, uint32_t idx, int status,
                     const struct shoal_msg_lease *l);
    /* Answer of tracker |idx| to shoal_trkconn_lease_reclaim() of chunks
     * [first, first+count) of |manifest_id|: |status| 0 and |l| (count 0:
     * a tracker that predates re-claims, which says nothing of the lease;
     * else the span granted), or the tracker's ERROR code with |l| NULL
     * (SHOAL_EBUSY: refused, another node has some of its chunks). Not
     * called when the connection drops first. May be NULL. */
    void (*on_reclaim)(void *user, uint32_t idx, const uint8_t manifest_id[32], uint32_t first,
                       uint32_t count, int status, const struct shoal_msg_lease *l);
    void *user;
};

struct shoal_trkconn_cfg {
    uv_loop_t *loop;
    const char *const *addrs;         /* "host:port" (numeric), copied */
    size_t naddrs;                    /* 1..SHOAL_TRKCONN_MAX */
    const struct shoal_seckey *sk;    /* node key; borrowed */
    const uint8_t *cred;              /* encoded credential; borrowed */
    size_t cred_len;
    const char *zone;                 /* borrowed */
    const char *listen_addr;          /* what peers should dial; borrowed */
    /* SHOAL_MSG_SESSION_LEN bytes drawn once per process, sent with every
     * login so a tracker tells a reconnect (leases kept) from a restart
     * (leases voided); borrowed. NULL: none (treated as a new process). */
    const uint8_t *session;
    /* Nonzero: ignore |listen_addr| and announce this port on the local
     * address of each tracker connection (getsockname), for a node that
     * listens on a wildcard address and was given no address to advertise:
     * the address the node reaches a tracker from is the one the fleet
     * (on the tracker's side of the network) can reach it at. */
    uint16_t advertise_port;
    /* With advertise_port: the listener takes IPv4 only (0.0.0.0), so a
     * tracker reached over IPv6 cannot be told an address peers could
     * dial; such a connection fails, saying so. */
    bool advertise_ipv4_only;
    /* Non-NULL: a tracker must prove it holds one of these keys (TRK_PROOF,
     * tracker/auth.h) before anything it says is used; one that does not
     * is refused, logged, and tried again at the longest back-off. */
    const struct shoal_keyset *tracker_keys; /* borrowed */
    uint32_t request_timeout_ms;      /* 0: 5000 */
    uint32_t backoff_min_ms;          /* 0: 250 */
    uint32_t backoff_max_ms;          /* 0: 10000 */
    /* While no tracker is ready, a tracker that is down (not one that
     * refused us) is dialled again at least this often (0: no such cap):
     * a restarted tracker is then found again before the daemon fetches
     * from the origin without leases (lease-fallback-ms). */
    uint32_t backoff_alone_max_ms;
    uint64_t seed;                    /* backoff jitter */
};

/*
 * Creates a client for the trackers in |cfg| (|cfg| and |hooks| are
 * borrowed and must outlive it, except |addrs|, which is copied). Nothing
 * connects before shoal_trkconn_start(). Returns 0 with |*out| set, -EINVAL
 * (no address, too many, or one that is not numeric host:port) or -ENOMEM.
 */
int shoal_trkconn_new(struct shoal_trkconn **out, const struct shoal_trkconn_cfg *cfg,
                      const struct shoal_trkconn_hooks *hooks);

/* Starts connecting to every tracker. Returns 0 or a libuv error. */
int shoal_trkconn_start(struct shoal_trkconn *t);

/* Closes every connection and timer (their handles close on the loop);
 * pending requests are dropped without callbacks. Safe inside a hook;
 * calling it again does nothing. */
void shoal_trkconn_stop(struct shoal_trkconn *t);

/* Frees the client once the loop ran after shoal_trkconn_stop() (or if it
 * never started). NULL is accepted. */
void shoal_trkconn_free(struct shoal_trkconn *t);

/* Trackers configured / currently authenticated. */
uint32_t shoal_trkconn_count(const struct shoal_trkconn *t);
uint32_t shoal_trkconn_ready(const struct shoal_trkconn *t);
/* Whether tracker |idx| is authenticated (false for an index out of range). */
bool shoal_trkconn_ready_idx(const struct shoal_trkconn *t, int idx);
/* The tracker that arbitrates origin fetches of release |manifest_id|
 * (its leases go there): of the ready ones and those still on their first
 * login (not failed yet), the highest rendezvous hash of the id and the
 * tracker's proven key (pinned tracker-keys) or else its address as
 * configured, so every node picks the same one whatever order it lists
 * them in; -1 when there is none. The one returned may not be ready yet
 * (shoal_trkconn_lease then returns -EAGAIN). */
int shoal_trkconn_arbiter(const struct shoal_trkconn *t, const uint8_t manifest_id[32]);
/* "host:port" of tracker |idx|. */
const char *shoal_trkconn_addr(const struct shoal_trkconn *t, uint32_t idx);
/* Why tracker |idx| is not in use when the last login failed on a refusal
 * ("tracker ADDR refused this node's identity: <its ERROR text>", or "this
 * node does not use tracker ADDR: <why>" when it did not prove the key
 * tracker_keys pin), else NULL (logged in, never refused, or unreachable
 * since). Valid until the next call into this client. */
const char *shoal_trkconn_refused(const struct shoal_trkconn *t, uint32_t idx);

/* With advertise_port: the address announced to tracker |idx| (set once
 * it is connected), else NULL. */
const char *shoal_trkconn_advertised(const struct shoal_trkconn *t, uint32_t idx);

/* Announces to every ready tracker soon (at most about once a second per
 * tracker), instead of waiting for the interval: after the first chunk of a
 * release or its completion, so peers find this node early. */
void shoal_trkconn_announce_soon(struct shoal_trkconn *t);

/* Asks every ready tracker for up to |max| holders of |manifest_id|.
 * Returns how many trackers were asked. */
uint32_t shoal_trkconn_get_peers(struct shoal_trkconn *t, const uint8_t manifest_id[32],
                                 uint32_t max);

/*
 * Looks up a manifest by |manifest_id| (when non-NULL) or else by
 * |repo_at_rev| ("[datasets/]org/name@commit"), answering through on_manifest with
 * |tag|. Returns 0 (on_manifest will be called later, from the loop),
 * -ENOTCONN (no tracker is ready; nothing will be called), -EINVAL or
 * -ENOMEM.
 */
int shoal_trkconn_get_manifest(struct shoal_trkconn *t, const uint8_t *manifest_id,
                               const char *repo_at_rev, uint64_t tag);

/*
 * Asks for an origin lease of up to |max_chunks| chunks of |manifest_id|
 * near |hint_chunk| of the release's tracker (shoal_trkconn_arbiter),
 * answered through on_lease with |tag|. Returns 0, -EAGAIN (that tracker
 * is still on its first login: ask again shortly), -ENOTCONN (no tracker
 * is ready: the caller decides whether to fetch without a lease), or
 * -ENOMEM / SHOAL_ELIMIT (queue full). |hint_chunk| is one the node misses
 * and none of its peers offers (the scheduler's LEASE_REQUEST), and the
 * request says so (SHOAL_LEASE_HINT_MISSING); |starved|: no peer has
 * delivered a chunk for a while either (shoal_swarm_starved), which the
 * request says too (SHOAL_LEASE_HINT_STARVED).
 */
int shoal_trkconn_lease(struct shoal_trkconn *t, const uint8_t manifest_id[32],
                        uint32_t max_chunks, uint32_t hint_chunk, bool starved, uint64_t tag);

/* Re-claims from tracker |idx| the lease of chunks [first, first+count)
 * of |manifest_id| this node holds and has not finished, |left_ms| of it
 * left (SHOAL_LEASE_RECLAIM), answered through on_reclaim: after a login,
 * since a tracker that restarted lost its leases and would grant the span
 * to others. Returns 0, -ENOTCONN (that tracker is not ready) or
 * SHOAL_ELIMIT / -ENOMEM. */
int shoal_trkconn_lease_reclaim(struct shoal_trkconn *t, uint32_t idx,
                                const uint8_t manifest_id[32], uint32_t first, uint32_t count,
                                uint32_t left_ms);

/* Gives back to tracker |idx| every lease this node holds on
 * |manifest_id| (SHOAL_LEASE_GIVE_BACK: the origin refuses this node), so
 * other nodes are granted their chunks now, not when they expire. Dropped
 * when that tracker is not ready (the leases then expire as before). */
void shoal_trkconn_lease_give_back(struct shoal_trkconn *t, uint32_t idx,
                                   const uint8_t manifest_id[32]);

/* Tells tracker |idx| (from on_lease) that chunks [first, first+count) of
 * the lease are fetched. Dropped when that tracker is not ready. */
void shoal_trkconn_lease_done(struct shoal_trkconn *t, uint32_t idx,
                              const uint8_t manifest_id[32], uint32_t first, uint32_t count);

/* Registers signed manifest |id| (bytes copied into the frame) with tracker
 * |idx|, or with every ready tracker when |idx| is SHOAL_TRKCONN_NONE;
 * skipped for a tracker that accepted it before in the same tracker
 * process (the boot id of its challenges), so reconnects do not send every
 * manifest again. */
void shoal_trkconn_put_manifest(struct shoal_trkconn *t, uint32_t idx, const uint8_t id[32],
                                const uint8_t *signed_mf, size_t len);

#endif
