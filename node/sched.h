/* SPDX-License-Identifier: MIT */
/*
 * The chunk scheduler: the part of a node that decides what to fetch from
 * whom. It is pure and deterministic: no sockets, no clock reads, no I/O.
 * The caller hands it the time and events (peers coming and going, HAVE
 * updates, requests finishing, origin leases) and asks it for actions
 * (REQUEST a chunk from a peer, CANCEL one, ask the tracker for an origin
 * LEASE, FETCH a leased span from the origin). The daemon's sockets and the
 * simulator's fake links are two transports for the same decisions.
 *
 * Policy, in order of precedence:
 *   - chunks of files the local loader waits for come first, in its order
 *     (each of its first 62 files gets a tier of its own, later ones share
 *     a 63rd, unwanted files come last);
 *   - within a tier, rarest first among our peers, ties broken at random
 *     (each availability bucket is a list into which chunks are inserted at
 *     the head or the tail by a coin flip). A pick first tries the last few
 *     chunks the peer announced (fresh chunks are the rare ones, and peers
 *     of one holder then pick different ones), then walks the buckets a
 *     bounded number of steps, then scans the peer's bitfield against our
 *     missing set, so a peer holding something we need is never skipped;
 *   - same-zone peers first: a chunk that only cross-zone peers hold becomes
 *     fetchable from them after cross_zone_delay_ms (with jitter), unless a
 *     same-zone peer got it in the meantime, so a zone usually imports
 *     each chunk once (no delay once at most 32 chunks and 1/64 of the
 *     release are missing: the last chunks must not wait for an
 *     importer); a node given an import share (import_mod, import_rem)
 *     fetches its share at once, before its same-zone picks, so a few
 *     importers per zone bring each chunk in and the delay is a fallback;
 *     a node keeps at most one such fallback crossing (outside its share,
 *     before the last 32 chunks) in flight, and after one that took
 *     longer than cross_zone_delay_ms starts the next no sooner than 3
 *     times that duration later, so that slow links between zones are
 *     not flooded with copies of what the importers are still bringing
 *     in;
 *   - each peer gets as many requests in flight as fill its
 *     bandwidth-delay product with some slack (its delivery rate, the
 *     chunk bytes it sent over the time requests to it were outstanding,
 *     x RTT x 1.25 / average chunk size, plus one, within min_depth and
 *     max_depth), all peers together at most
 *     max_inflight when set (and, when the caller asks, no more than what
 *     a download cap or the peers' measured rates deliver in about half a
 *     second: shoal_sched_set_rate_down, shoal_sched_set_rate_bound); the
 *     fastest measured peers are filled first
 *     (peers not yet measured before them), so requests go to uploaders
 *     with upload to spare;
 *   - endgame: once every missing chunk is requested, idle peers duplicate
 *     outstanding requests (at most endgame_dups copies); the first copy
 *     that arrives cancels the others;
 *   - per-file endgame: once no chunk of the loader's most urgent
 *     incomplete file is left to pick from a peer and it misses no more
 *     chunks than we have peers, peers with a free slot duplicate its
 *     outstanding requests, oldest first, before anything else (the file
 *     the loader waits for must not hang on one slow peer);
 *   - the origin is the last resort: while some missing chunk has no
 *     holder among our peers, ask the tracker for a lease of up to
 *     lease_chunks chunks starting near that chunk, and fetch the leased
 *     span (adjacent missing chunks merged into one range) from the origin;
 *     with origin_delay_ms, not before that long after the first
 *     shoal_sched_next call (a fleet leaves the origin to a few fetchers).
 *
 * Memory per instance is about 13 bytes per chunk plus one bitfield per
 * peer (nchunks / 8 bytes): no per-chunk per-peer structures. A HAVE is
 * O(1) and touches one record of ours: rarity buckets stop distinguishing
 * counts above a small cap, and a rising count moves its chunk to its new
 * bucket only when a pick walks past it (or when it stops being an orphan),
 * so a HAVE rarely moves a chunk between lists.
 *
 * Thread safety: none; one instance is driven by one thread.
 */
#ifndef SHOAL_SCHED_H
#define SHOAL_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest release the scheduler accepts, in chunks. */
#define SHOAL_SCHED_CHUNKS_MAX 16777216u
/* Most peers one instance tracks (availability counts are 8-bit). */
#define SHOAL_SCHED_PEERS_MAX 250u
/* Deepest pipeline to one peer. */
#define SHOAL_SCHED_DEPTH_MAX 64u
/* Most origin leases held at once. */
#define SHOAL_SCHED_LEASES_MAX 64u
/* Most files a release may have (for loader priorities). */
#define SHOAL_SCHED_FILES_MAX 1048576u

struct shoal_sched_config {
    uint64_t seed;                 /* PRNG seed for tie-breaks and jitter */
    uint32_t max_peers;            /* peers tracked at once (<= PEERS_MAX) */
    uint32_t min_depth;            /* requests in flight per peer, at least */
    uint32_t max_depth;            /* ... and at most */
    uint32_t cross_zone_delay_ms;  /* wait before fetching cross-zone only chunks */
    uint32_t endgame_dups;         /* copies of one request in endgame (>= 1) */
    uint32_t lease_chunks;         /* chunks asked for per origin lease */
    uint32_t max_leases;           /* origin leases held at once */
    uint32_t lease_retry_ms;       /* wait after an empty or refused lease */
    uint32_t busy_backoff_ms;      /* leave a peer alone after it said busy */
    /* Added for fleet roles (0 keeps the behaviour above): */
    uint32_t max_inflight;         /* requests in flight to all peers together
                                      (0: max_peers x max_depth); a few keep
                                      chunk latency low, so fresh chunks
                                      spread in fewer round trips. Not
                                      binding while a loader waits for a
                                      file (shoal_sched_want_files) */
    uint32_t origin_delay_ms;      /* no origin lease before this long after
                                      the first shoal_sched_next call: most
                                      nodes of a fleet leave the origin to a
                                      few fetchers and only step in when a
                                      chunk stays missing */
    uint32_t import_mod;           /* > 0: this node imports for its zone the
                                      chunks c with c % import_mod ==
                                      import_rem, fetching them cross-zone
                                      at once (ahead of same-zone picks);
                                      other cross-zone chunks still wait
                                      cross_zone_delay_ms */
    uint32_t import_rem;
};

/* Defaults: seed 1, 32 peers, depth 2..16, cross-zone delay 300 ms, 2
 * endgame copies, 64-chunk leases, 2 leases at a time, lease retry 500 ms,
 * busy backoff 10 ms, 9 requests in flight in all, no origin delay, no
 * import share. The daemon and the simulator both start from these, so a
 * simulated fleet is the fleet the daemon runs (the in-flight cap, the
 * busy backoff and the cross-zone delay are the values that simulated
 * fleets complete soonest with). */
void shoal_sched_config_default(struct shoal_sched_config *c);

/* Serve policy, shared by the daemon and the simulator: a node uploads to
 * at most this many peers at once and answers a request from any other
 * peer busy. A node holding a fresh chunk then feeds a few peers at full
 * speed and they pass it on, instead of trickling it to every asker at
 * once (in a simulated 1,000-node fleet, no limit finishes 18-25% later). */
#define SHOAL_UPLOAD_SLOTS_DEFAULT 6u

/* The serve decision itself, for a request from a peer we are not
 * uploading to already: busy when |uploading| other peers take all |slots|
 * (0: no limit), except that a requester |behind_all| of them (holding
 * fewer chunks than the least advanced one) gets one slot more. The nodes
 * furthest behind decide when a rollout ends, and without that slot their
 * requests queue behind uploaders that are already full: in the simulated
 * 1,000-node fleet (seeds 1-6) last/T_min 1.231 -> 1.174, p99 1.178 ->
 * 1.159, p50 unchanged. */
static inline bool shoal_sched_upload_busy(uint32_t uploading, uint32_t slots, bool behind_all)
{
    return slots > 0 && uploading >= slots + (behind_all ? 1u : 0u);
}

/* What the scheduler is asked to fetch. |file_first| lists, for each of the
 * |nfiles| files in manifest order, the index of its first chunk (strictly
 * increasing from 0, each below nchunks; empty files are not listed). */
struct shoal_sched_release {
    uint32_t nchunks;
    uint64_t total_bytes;          /* for the average chunk size */
    uint32_t nfiles;
    const uint32_t *file_first;    /* borrowed: copied by shoal_sched_new */
};

enum shoal_sched_action_type {
    SHOAL_SCHED_REQUEST = 1,       /* ask |peer| for |chunk| */
    SHOAL_SCHED_CANCEL,            /* withdraw the request for |chunk| at |peer| */
    SHOAL_SCHED_LEASE_REQUEST,     /* ask the tracker for up to |count| chunks near |chunk|,
                                    * one we miss that no peer offers */
    SHOAL_SCHED_ORIGIN_FETCH,      /* fetch [chunk, chunk+count) from the origin */
    SHOAL_SCHED_LEASE_DONE,        /* tell the tracker chunks [chunk, chunk+count) of a
                                    * lease are done (see shoal_sched_lease_granted) */
};

/* |peer| of the LEASE_DONE that follows a lease's reports: the lease
 * [chunk, chunk+count) ended; report nothing for it. */
#define SHOAL_SCHED_LEASE_END 1u

struct shoal_sched_action {
    enum shoal_sched_action_type type;
    uint64_t peer;                 /* REQUEST, CANCEL; LEASE_DONE: 0 or SHOAL_SCHED_LEASE_END */
    uint32_t chunk;                /* chunk, first chunk, or lease hint */
    uint32_t count;                /* LEASE_REQUEST, ORIGIN_FETCH; else 1 */
};

struct shoal_sched;

/*
 * Creates a scheduler for |rel| with a copy of |cfg| (NULL: defaults) into
 * |*out| (written only on success). We hold no chunk yet.
 * Returns 0; -EINVAL (nchunks 0 or above SHOAL_SCHED_CHUNKS_MAX, bad file
 * table, max_peers 0 or above SHOAL_SCHED_PEERS_MAX, min_depth 0 or above
 * max_depth, max_depth above SHOAL_SCHED_DEPTH_MAX, max_leases above
 * SHOAL_SCHED_LEASES_MAX, import_rem not below a non-zero import_mod);
 * -ENOMEM.
 */
int shoal_sched_new(struct shoal_sched **out, const struct shoal_sched_config *cfg,
                    const struct shoal_sched_release *rel);
/* Frees the instance; NULL is accepted. */
void shoal_sched_free(struct shoal_sched *s);

/* ---- fleet roles ---- */

/* The knobs a node's role in its fleet sets (see shoal_sched_config for
 * each). A role comes from the tracker (tracker/registry.h) and may change
 * while a release downloads. */
struct shoal_sched_role {
    uint32_t origin_delay_ms;
    uint32_t max_leases;           /* 0 means 1 */
    uint32_t max_inflight;
    uint32_t import_mod;           /* 0: no import share (import_rem 0) */
    uint32_t import_rem;
};

/* One number per distinct tracker role (fetcher, import share), so the
 * daemon and the simulator skip an answer that repeats the role in effect. */
static inline uint32_t shoal_sched_role_key(bool fetcher, uint32_t import_mod, uint32_t import_rem)
{
    return (uint32_t)fetcher | import_mod << 1 | import_rem << 16;
}

/*
 * The role the daemon and the simulator both give a node the tracker
 * called a |fetcher| (or not) with import share |import_mod|,
 * |import_rem| (import_mod 0: none), from the node's configured knobs in
 * |base|: a fetcher leases at once, up to base->max_leases at a time;
 * anyone else waits base->origin_delay_ms and holds one lease; an importer
 * keeps three times base->max_inflight requests in flight (0 stays
 * uncapped), since its imports cross a longer round trip. Writes |*out|.
 */
void shoal_sched_role_fleet(struct shoal_sched_role *out, const struct shoal_sched_config *base,
                            bool fetcher, uint32_t import_mod, uint32_t import_rem);

/*
 * Applies |r| from now on, also in the middle of a download: the origin
 * delay still counts from the first shoal_sched_next call (a shorter one
 * may let a lease go out at once, a longer one holds back leases not yet
 * asked for); leases held beyond a lowered max_leases run to their end;
 * requests in flight beyond a lowered max_inflight finish; a new import
 * share makes its chunks that wait out the cross-zone delay fetchable at
 * once (chunks already cleared under an old share stay so). The caller
 * calls shoal_sched_next again afterwards: something may be due now.
 * Returns 0; -EINVAL (max_leases above SHOAL_SCHED_LEASES_MAX, import_rem
 * not below a non-zero import_mod, or non-zero without one; nothing
 * changes); -ENOMEM (growing the lease table; nothing changes).
 */
int shoal_sched_set_role(struct shoal_sched *s, const struct shoal_sched_role *r);

/* ---- peers ---- */

/*
 * Starts tracking peer |peer| (any caller-chosen id, unique among our
 * peers), in our zone when |same_zone|, with round-trip time |rtt_ms| (0:
 * not measured; the scheduler then takes the least time a request that
 * found the peer's pipeline empty took, less its chunk's transfer at the
 * peer's delivery rate). The peer holds nothing until its bitfield or
 * HAVEs arrive.
 * Returns 0, SHOAL_EEXIST (id known) or SHOAL_ELIMIT (max_peers reached).
 */
int shoal_sched_peer_add(struct shoal_sched *s, uint64_t peer, bool same_zone, uint32_t rtt_ms);

/* Forgets |peer|: its holdings no longer count and its outstanding requests
 * are dropped (their chunks become requestable from others). No CANCEL is
 * emitted; the transport already lost the connection. Returns 0 or
 * SHOAL_ENOTFOUND. */
int shoal_sched_peer_remove(struct shoal_sched *s, uint64_t peer);

/* Replaces |peer|'s holdings with the bitfield |bits| (|nbytes| bytes,
 * chunk i is bit (i & 7) of byte i / 8; bits past nchunks are ignored).
 * Returns 0, SHOAL_ENOTFOUND or SHOAL_EBADMSG (nbytes != ceil(nchunks/8)). */
int shoal_sched_peer_bitfield(struct shoal_sched *s, uint64_t peer, const uint8_t *bits,
                              size_t nbytes);
/* Adds the chunks set in |bits| to |peer|'s holdings and removes none: what
 * a peer's later bitfields may say (a peer does not lose chunks within a
 * session), at a cost of the bits it adds, so alternating full and empty
 * bitfields cannot make the scheduler redo a release's availability on
 * every message. Returns how many chunks it added, SHOAL_ENOTFOUND or
 * SHOAL_EBADMSG. */
int shoal_sched_peer_bitfield_add(struct shoal_sched *s, uint64_t peer, const uint8_t *bits,
                                  size_t nbytes);

/*
 * Like a first shoal_sched_peer_bitfield for |peer| (which must hold
 * nothing yet), but the scheduler then reads |peer|'s holdings from |bits|
 * itself instead of a copy: the caller keeps |bits| allocated and current
 * until the peer is removed, only ever sets bits, and reports each bit it
 * sets with shoal_sched_slot_have_borrowed (a HAVE for a chunk this
 * scheduler holds may be left out: its holders are never looked at). For a
 * transport that keeps every node's have-set anyway (the simulator): one
 * set read by all of a node's peers instead of a copy in each. |bits| must
 * be readable in whole 64-bit words (ceil(nchunks / 64) * 8 bytes, the
 * bits past nchunks zero): the scheduler scans it a word at a time. Such a peer
 * takes no other bitfield or HAVE calls (-EINVAL; shoal_sched_slot_have
 * returns false). Returns 0, SHOAL_ENOTFOUND, SHOAL_EBADMSG (nbytes !=
 * ceil(nchunks/8)) or -EINVAL (the peer holds something already, or
 * borrows already).
 */
int shoal_sched_peer_bitfield_borrow(struct shoal_sched *s, uint64_t peer, const uint8_t *bits,
                                     size_t nbytes);

/* Every peer of |s| will borrow its bitfield: the scheduler frees the
 * copies it would keep (max_peers x ceil(nchunks/64) x 8 bytes; 400 MB in
 * a 10,000-node simulated fleet), and its peers then take no bitfield or
 * HAVE call but shoal_sched_peer_bitfield_borrow and
 * shoal_sched_slot_have_borrowed (-EINVAL; shoal_sched_slot_have returns
 * false). Only before the first shoal_sched_peer_add: returns 0 or
 * -EINVAL. */
int shoal_sched_borrow_all(struct shoal_sched *s);

/* shoal_sched_slot_have for a peer whose bitfield is borrowed, after the
 * caller set |chunk| there (each chunk once). Same return. */
bool shoal_sched_slot_have_borrowed(struct shoal_sched *s, uint32_t slot, uint32_t chunk);

/* |peer| announces that it now holds |chunk|. Repeats are harmless.
 * Returns 0, SHOAL_ENOTFOUND or SHOAL_EBADMSG (chunk out of range). */
int shoal_sched_peer_have(struct shoal_sched *s, uint64_t peer, uint32_t chunk);

/* How many peers claim |chunk| (0 once we hold it, or out of range;
 * counted up to 255). */
uint32_t shoal_sched_holders(const struct shoal_sched *s, uint32_t chunk);

/* The slot |peer| occupies (0 <= slot < max_peers, stable until the peer
 * is removed), or SHOAL_ENOTFOUND. Lets a transport that relays many HAVEs
 * skip the id lookup (see shoal_sched_slot_have). */
int shoal_sched_peer_slot(const struct shoal_sched *s, uint64_t peer);

/* How many chunks |peer| holds as far as we know (its bitfield and HAVEs
 * since), or UINT32_MAX when it is not one of our peers. */
uint32_t shoal_sched_peer_have_count(const struct shoal_sched *s, uint64_t peer);

/* shoal_sched_peer_have for the peer in |slot| (from shoal_sched_peer_slot).
 * Returns true when the HAVE can lead to a new request right now: we need
 * |chunk|, nobody has it requested, we have room for another request, and
 * the peer may be asked (not one that found nothing to give us since, as a
 * cross-zone peer announcing a chunk a same-zone one holds) (a transport
 * may skip calling shoal_sched_next otherwise). The caller
 * guarantees slot and chunk are valid. */
bool shoal_sched_slot_have(struct shoal_sched *s, uint32_t slot, uint32_t chunk);

/* Asks the CPU to load the state any call on |s| reads first, without
 * changing anything: a transport driving many instances calls it when it
 * knows it will soon call shoal_sched_next on |s|, so that the cache
 * misses overlap with other work. */
void shoal_sched_prefetch(const struct shoal_sched *s);

/* As shoal_sched_prefetch, and also what a call reads for the peers it may
 * ask (their records, throughputs and back-offs), the requests in flight
 * and the bucket heads. It reads |s|'s first lines to find these: for a
 * caller that has just called into |s| (after shoal_sched_slot_have, say),
 * when those lines are in the cache. */
void shoal_sched_prefetch_deep(const struct shoal_sched *s);

/* Asks the CPU to load what shoal_sched_slot_have(|s|, |slot|, |chunk|)
 * will touch, without changing anything: a transport relaying one HAVE to
 * many instances prefetches for all of them first, so that the cache
 * misses overlap. Same preconditions as shoal_sched_slot_have. */
void shoal_sched_slot_prefetch(const struct shoal_sched *s, uint32_t slot, uint32_t chunk);

/* Updates |peer|'s round-trip time (0: estimate it, as at
 * shoal_sched_peer_add). Returns 0 or SHOAL_ENOTFOUND. */
int shoal_sched_peer_rtt(struct shoal_sched *s, uint64_t peer, uint32_t rtt_ms);

/* ---- request outcomes ---- */

/*
 * The request for |chunk| at |peer| delivered |bytes| (verified) after
 * |duration_ms| since it was sent; we now hold the chunk. Duplicates
 * still outstanding at other peers are queued for CANCEL. Also feeds the
 * peer's delivery rate (from |now_ms| and the time the request was made:
 * |duration_ms| need not be exact) and the per-request throughput that
 * ranks peers. Returns 0, SHOAL_ENOTFOUND (no such
 * request, e.g. already cancelled: the chunk is still taken) or
 * SHOAL_EBADMSG.
 */
int shoal_sched_req_done(struct shoal_sched *s, uint64_t now_ms, uint64_t peer, uint32_t chunk,
                         uint64_t bytes, uint64_t duration_ms);

/* |peer| does not hold |chunk| after all: it answered a request for it
 * "unknown", or did not answer at all. Its claim is withdrawn (a later
 * HAVE for the chunk restores it) and a request to it for the chunk is
 * dropped, so the chunk goes to another holder, or, with no holder left,
 * to the origin, instead of back to the same peer at once. A peer that
 * claims everything and serves nothing can then hold a chunk back for one
 * answer at most, not for as long as it stays connected. Returns 0,
 * SHOAL_ENOTFOUND, SHOAL_EBADMSG (chunk out of range) or -EINVAL (a
 * borrowed bitfield: its owner's to change). */
int shoal_sched_peer_lacks(struct shoal_sched *s, uint64_t now_ms, uint64_t peer, uint32_t chunk);

/* The request for |chunk| at |peer| failed (bad data, timeout); the chunk
 * becomes requestable again. With |busy| the peer refused it for load and is
 * left alone for busy_backoff_ms. Returns 0 or SHOAL_ENOTFOUND. */
int shoal_sched_req_failed(struct shoal_sched *s, uint64_t now_ms, uint64_t peer,
                           uint32_t chunk, bool busy);

/* The longest back-off a peer's own word buys (shoal_sched_req_busy): a
 * few seconds, so a peer that names a huge one holds its unique chunks
 * back no longer than that before it is asked again. */
#define SHOAL_SCHED_RETRY_AFTER_MAX_MS 5000u

/* As shoal_sched_req_failed with |busy|, for a peer that said when to ask
 * again (a REJECT's |retry_after_ms|): it is left alone until |now_ms| +
 * |retry_after_ms|, capped at SHOAL_SCHED_RETRY_AFTER_MAX_MS, and for
 * busy_backoff_ms at least (0 or a shorter wish: busy_backoff_ms, as
 * shoal_sched_req_failed). Meanwhile the chunk goes to other holders or,
 * with none, waits for it as any chunk a busy peer holds alone. Returns
 * 0 or SHOAL_ENOTFOUND. */
int shoal_sched_req_busy(struct shoal_sched *s, uint64_t now_ms, uint64_t peer, uint32_t chunk,
                         uint32_t retry_after_ms);

/* We obtained |chunk| some other way (local dedup copy, origin, a request
 * made outside the scheduler). Outstanding peer requests for it are queued
 * for CANCEL. Returns 0 or SHOAL_EBADMSG. */
int shoal_sched_chunk_obtained(struct shoal_sched *s, uint64_t now_ms, uint32_t chunk);

/* We no longer hold |chunk| (our stored copy changed on disk and was
 * dropped): it is needed again, from the peers holding it or, with none,
 * the origin. Nothing happens when it was not held. Returns 0 or
 * SHOAL_EBADMSG. */
int shoal_sched_chunk_lost(struct shoal_sched *s, uint64_t now_ms, uint32_t chunk);

/* ---- origin ---- */

/*
 * The tracker answered our LEASE_REQUEST: chunks [first, first+count) are
 * ours to fetch from the origin until |expires_ms|. count 0 means nothing
 * was free; the scheduler waits lease_retry_ms before asking again. The
 * missing chunks of the span are turned into ORIGIN_FETCH actions, adjacent
 * ones merged. The transport reports each arrival with
 * shoal_sched_origin_done; each chunk that arrives is reported at once
 * (a LEASE_DONE of it, merged with the one queued before it when they are
 * adjacent), so the tracker neither grants it again nor lets a slow but
 * progressing lease expire. Once no chunk of the span is pending,
 * LEASE_DONE actions follow (immediately when nothing needed fetching),
 * one per run of the span's chunks the swarm has (held here, or by a peer
 * while no origin fetch of ours brings it), which the transport forwards
 * to the tracker; chunks whose origin fetch failed are never reported, so
 * the tracker grants them again once the lease expires. Then one more
 * with peer = SHOAL_SCHED_LEASE_END names the whole span: the lease
 * ended (nothing to report). A span granted while every lease slot is
 * taken is not fetched: it is reported the same way at once.
 * Returns 0; SHOAL_SCHED_LEASE_HELD when the span is a lease held: a
 * tracker granting it again (the node came back on a new connection
 * before reporting it) only confirms it, and nothing changes but the
 * pause before the next LEASE_REQUEST (lease_retry_ms); or
 * SHOAL_EBADMSG (span out of range).
 */
#define SHOAL_SCHED_LEASE_HELD 1
int shoal_sched_lease_granted(struct shoal_sched *s, uint64_t now_ms, uint32_t first,
                              uint32_t count, uint64_t expires_ms);

/* The LEASE_REQUEST failed (tracker unreachable, refused). Retried after
 * lease_retry_ms. */
void shoal_sched_lease_failed(struct shoal_sched *s, uint64_t now_ms);

/* The lease [first, first+count) granted before is no longer ours (the
 * node gave it back: the origin refuses it). Its slot is free at once, with
 * no LEASE_DONE (the tracker ended the lease), and the ORIGIN_FETCH and
 * LEASE_DONE actions of it not yet taken are withdrawn; its chunks still
 * under an origin fetch become requestable from peers again, or orphans
 * for a later lease. A fetch of one that lands anyway is reported with
 * shoal_sched_origin_done as usual (counted as held); one that fails
 * changes nothing. Returns 0, SHOAL_ENOTFOUND (no lease in use has that
 * span) or SHOAL_EBADMSG (span out of range). */
int shoal_sched_lease_drop(struct shoal_sched *s, uint64_t now_ms, uint32_t first,
                           uint32_t count);

/* Chunk |chunk| of an ORIGIN_FETCH arrived (|ok|) or failed (!|ok|: it
 * becomes requestable again). A chunk under no fetch of ours (its lease
 * dropped) that arrives counts as held. Returns 0 or SHOAL_EBADMSG. */
int shoal_sched_origin_done(struct shoal_sched *s, uint64_t now_ms, uint32_t chunk, bool ok);

/* ---- loader ---- */

/* The local loader wants files |files| (indices into the release's file
 * table) in this order, replacing any earlier order; n 0 clears it.
 * Returns 0 or SHOAL_EBADMSG (an index out of range). */
int shoal_sched_want_files(struct shoal_sched *s, const uint32_t *files, size_t n);

/*
 * The node receives at most |bytes_per_s| (its download cap; 0: none).
 * Requests in flight to all peers together are then held to what that
 * rate delivers in about half a second, plus one (at least 2), also while
 * a loader waits for a file: a peer answers our requests in the order
 * they came, so everything asked for before a loader came (or changed
 * its order) is received ahead of its first file, and at a capped rate
 * max_inflight chunks of ~1 MiB are seconds of it. A cap the pipeline
 * could never reach sets no limit.
 */
void shoal_sched_set_rate_down(struct shoal_sched *s, uint64_t bytes_per_s);

/*
 * With |on|, requests in flight follow the peers' delivery rates (chunk
 * bytes over the time each had requests, measured here from its second
 * arrival on, over at least 50 ms), as they do a cap
 * (shoal_sched_set_rate_down; the tighter of the two applies): to each
 * peer, min_depth aside, no more than its rate delivers in half a second
 * plus its round trip, plus one (one at a time until it has delivered
 * twice); to all together, no more than the sum of the rates delivers in
 * half a second plus the longest round trip, plus one (at least 2). A
 * peer answers in the order asked, so on a slow link, or from slow peers,
 * with no cap configured, the requests already out would otherwise be
 * seconds ahead of a file a loader comes to want. The round trip is in it
 * because the rates are measured through this pipeline: one that did not
 * cover it would measure less than the link carries and shrink; this one
 * grows until the link is full. A peer's own rate, not what the node
 * received lately, so that requests waiting at a slow peer do not hold a
 * fast one back. Off (the default; the simulator): no such bound.
 * Returns 0, or -ENOMEM (nothing changed).
 */
int shoal_sched_set_rate_bound(struct shoal_sched *s, bool on);

/* One loader's files still to come, for shoal_sched_merge_waits: its order
 * as a list threaded through |next| (positions not yet handed over, in
 * order of position), so a merge visits only what is waited for. */
struct shoal_sched_wait {
    const uint32_t *want; /* manifest file index at each position of its order */
    const uint32_t *next; /* the waiting position after each waiting one; UINT32_MAX ends */
    uint32_t head;        /* first waiting position; UINT32_MAX: none */
};

/*
 * Merges the waits of |nw| loaders into the order to hand to
 * shoal_sched_want_files: every loader's first waiting file, then every
 * loader's second, and so on (loaders in array order at each depth), each
 * file once, at its first place. Costs O(files waited for + nfiles / 8)
 * whatever was handed over before, so it may run after every completed
 * file. Every file index must be < |nfiles|. On success writes a malloc'd
 * list (the caller frees it; NULL when nothing is waited for) to |*out|,
 * its length to |*n|, and returns 0; SHOAL_EBADMSG (a file index out of
 * range) or -ENOMEM, then |*out| is NULL and |*n| 0.
 */
int shoal_sched_merge_waits(const struct shoal_sched_wait *w, size_t nw, uint32_t nfiles,
                            uint32_t **out, uint32_t *n);

/* ---- decisions ---- */

/*
 * Writes up to |max| actions due at |now_ms| to |out| and returns how many.
 * Each REQUEST is recorded as in flight; call again (after the transport
 * acted) until it returns fewer than |max|. Deterministic: the same events
 * and times with the same seed give the same actions.
 */
size_t shoal_sched_next(struct shoal_sched *s, uint64_t now_ms, struct shoal_sched_action *out,
                        size_t max);

/*
 * Whether we look cut off from the chunks we miss at |now_ms|: incomplete,
 * no request at a peer, and no peer delivered a chunk for |for_ms| (since
 * the first shoal_sched_next call when none has yet). A node whose peers
 * hold nothing it misses (a peer group of nodes with few peers, a zone
 * cut off) stays so; one waiting for a zone's next import does not for
 * long. The tracker gives such a node chunks others fetched from the
 * origin long ago (SHOAL_LEASE_HINT_STARVED).
 */
bool shoal_sched_starved(const struct shoal_sched *s, uint64_t now_ms, uint64_t for_ms);
/* The |for_ms| shoal-sim passes and shoald's default (--starved-ms): far
 * longer than a zone waits for its next import under any cross-zone cap
 * worth running a rollout through, short beside a rollout that would
 * otherwise never end. */
#define SHOAL_SCHED_STARVED_MS 30000u

/* The earliest time at which shoal_sched_next may have something new to
 * say without any new event (cross-zone delays, busy back-offs, lease
 * retries), or UINT64_MAX. */
uint64_t shoal_sched_wakeup(const struct shoal_sched *s);

/* ---- state ---- */

bool shoal_sched_have(const struct shoal_sched *s, uint32_t chunk);
uint32_t shoal_sched_have_count(const struct shoal_sched *s);
bool shoal_sched_complete(const struct shoal_sched *s);
/* True when |chunk| is missing and not yet requested from anyone: a HAVE
 * for it can lead to a new request (lets a transport skip waking us). */
bool shoal_sched_wants(const struct shoal_sched *s, uint32_t chunk);
/* Copies our have-set as a bitfield (ceil(nchunks/8) bytes) to |bits|. */
void shoal_sched_bitfield(const struct shoal_sched *s, uint8_t *bits);
/* Requests in flight to peers (duplicates counted). */
uint32_t shoal_sched_inflight(const struct shoal_sched *s);
/* True when a request slot is free (in-flight below max_inflight). */
bool shoal_sched_has_room(const struct shoal_sched *s);

#endif
