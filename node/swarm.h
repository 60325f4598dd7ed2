/* SPDX-License-Identifier: MIT */
/*
 * One release in the daemon: its manifest, its store (the HF cache), the
 * pure scheduler (sched.h) and the per-peer state of the exchange.
 *
 * The swarm feeds the scheduler every event (peer bitfields and HAVEs,
 * requests done, failed or refused, chunks obtained) and carries out its
 * actions (REQUEST, CANCEL). Received chunks are hashed and written on libuv
 * worker threads (shoal_store_put_chunk checks the id before writing); a peer
 * whose chunk does not match the manifest is reported through on_ban and the
 * chunk is requested elsewhere. Requests from peers are served from the
 * store, also read on worker threads, at most serve_per_peer at a time per
 * peer (REJECT busy beyond that).
 *
 * Loop thread only, except the store calls made from worker threads.
 */
#ifndef SHOAL_SWARM_H
#define SHOAL_SWARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "manifest.h"
#include "msg.h"
#include "peer.h"

struct shoal_swarm;

struct shoal_swarm_hooks {
    /* Peer |p| sent a chunk that fails its id: the owner bans its key and
     * closes it. */
    void (*on_ban)(void *user, struct shoal_peer *p, const char *why);
    /* Every file of the release is verified and published. */
    void (*on_complete)(void *user, struct shoal_swarm *s);
    void *user;
};

struct shoal_swarm_cfg {
    uv_loop_t *loop;
    const char *cache_dir;           /* store root (HF hub cache) */
    const char *zone;                /* our zone: peers elsewhere are cross-zone */
    unsigned store_flags;            /* SHOAL_STORE_* */
    uint32_t serve_per_peer;         /* uploads in flight per peer; 0: 16 */
    uint32_t request_timeout_ms;     /* 0: 30 s */
    uint64_t seed;                   /* scheduler seed */
    bool corrupt_uploads;            /* TESTING ONLY: flip a byte of every
                                      * chunk we serve (a malicious node) */
};

/*
 * Opens release |m| (taken over: freed with the swarm, also on error) whose
 * signed form is |signed_mf|/|len| (copied: served to peers that ask for the
 * manifest). Opens the store, and marks what it already holds.
 * |cfg| and |hooks| are borrowed and must outlive the swarm.
 * Returns 0 or a store error (with a log line naming the path).
 */
int shoal_swarm_new(struct shoal_swarm **out, const struct shoal_swarm_cfg *cfg,
                    const struct shoal_swarm_hooks *hooks, struct shoal_manifest *m,
                    const uint8_t *signed_mf, size_t len);

/* Frees the swarm (flushes the store). Only once no worker job of it is
 * pending (shoal_swarm_busy() false), i.e. after the loop has run dry. */
void shoal_swarm_free(struct shoal_swarm *s);

/* True while worker jobs of this swarm are queued or running. */
bool shoal_swarm_busy(const struct shoal_swarm *s);

/*
 * Fills the store from a local copy of the release at |dir| (the files at
 * their manifest paths): every chunk is read and verified through the store.
 * Blocking; for seeding before the loop runs. |*imported| (may be NULL) gets
 * the chunks stored. Returns 0 or the first store error; missing or short
 * files are skipped with a log line.
 */
int shoal_swarm_import_dir(struct shoal_swarm *s, const char *dir, uint32_t *imported);

/* Starts the exchange with the swarm: ticks, scheduling. Call once the loop
 * is about to run. Returns 0 or a negated errno. */
int shoal_swarm_start(struct shoal_swarm *s);
/* Stops timers (their handles close on the loop) and stops requesting. */
void shoal_swarm_stop(struct shoal_swarm *s);

const uint8_t *shoal_swarm_id(const struct shoal_swarm *s);
const struct shoal_manifest *shoal_swarm_manifest(const struct shoal_swarm *s);
bool shoal_swarm_complete(const struct shoal_swarm *s);
/* Signed manifest bytes (owned by the swarm). */
const uint8_t *shoal_swarm_signed(const struct shoal_swarm *s, size_t *len);

/* An authenticated peer appeared: send it our bitfield. */
void shoal_swarm_peer_ready(struct shoal_swarm *s, struct shoal_peer *p);
/* A peer is going away: drop its state and its requests (rescheduled). */
void shoal_swarm_peer_gone(struct shoal_swarm *s, struct shoal_peer *p);

/*
 * Offers message |m| from |p| to the swarm. Returns true when it belonged to
 * this release (manifest id, or a request id of ours / being served here),
 * false to let the caller try another swarm.
 */
bool shoal_swarm_on_msg(struct shoal_swarm *s, struct shoal_peer *p, const struct shoal_msg *m);

/* Counters for status and metrics. */
struct shoal_swarm_stats {
    uint32_t nchunks, have_chunks;
    uint64_t total_bytes, have_bytes;
    uint64_t rx_chunk_bytes, tx_chunk_bytes;
    uint32_t peers, inflight;
    uint32_t bad_chunks;
};
void shoal_swarm_stats(const struct shoal_swarm *s, struct shoal_swarm_stats *st);

#endif
