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
 * The origin is the last resort (--- tracker ---): the scheduler's lease
 * requests go to the owner (on_lease_req), which asks a tracker or lets the
 * swarm lease to itself; leased spans are fetched with the hub client (one
 * Range request per file run), each chunk verified and stored on a worker
 * as soon as its bytes are in, and LEASE_DONE reports only what arrived.
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

/* No chunk (on_ban for a reason other than a chunk's hash). */
#define SHOAL_SWARM_NO_CHUNK UINT32_MAX

struct shoal_swarm_hooks {
    /* The peer with node key |pk| is to be banned for |why|: it sent a
     * chunk of |s| that fails its id, or not even the chunk asked for, or
     * it announced chunks and sent none of them for a whole request
     * time-out. The owner bans the key and closes |p| with a BYE giving
     * |why| and naming |chunk|, the chunk that failed its hash, unless it
     * is SHOAL_SWARM_NO_CHUNK (the other reasons). |p| is NULL when that
     * peer has already gone (it hung up before the verdict, or is
     * closing); |chunk| is still the chunk that failed, if one did. */
    void (*on_ban)(void *user, struct shoal_swarm *s, struct shoal_peer *p, const uint8_t pk[32],
                   uint32_t chunk, const char *why);
    /* Every file of the release is verified and published. */
    void (*on_complete)(void *user, struct shoal_swarm *s);
    /* File |file| (manifest index) of |s| just became ready for loaders
     * (|status| 0: its sha256 matched, shoal_store_file_ready; publishing
     * in the cache follows) or failed (see shoal_store_file_cb). Called on
     * whichever thread stored
     * its last chunk, usually a WORKER thread, at the moment the store
     * reports it: the hook must be thread-safe. May be NULL. */
    void (*on_file)(void *user, struct shoal_swarm *s, uint32_t file, int status);
    /* The scheduler wants an origin lease of up to |count| chunks of |s|
     * near chunk |hint|. Return SHOAL_SWARM_LEASE_ASKED when a tracker was
     * asked (answer with shoal_swarm_lease_result()), SHOAL_SWARM_LEASE_LATER
     * to have the scheduler ask again after its back-off, or
     * SHOAL_SWARM_LEASE_LOCAL to fetch from the origin without a lease (no
     * tracker configured, or none answering). NULL: always LOCAL. */
    int (*on_lease_req)(void *user, struct shoal_swarm *s, uint32_t hint, uint32_t count);
    /* Chunks [first, first+count) of a lease granted by tracker |trk| are
     * fetched (the owner sends LEASE_DONE). May be NULL. */
    void (*on_lease_done)(void *user, struct shoal_swarm *s, uint32_t trk, uint32_t first,
                          uint32_t count);
    /* The origin refuses this node: give back every lease of |s| that
     * tracker |trk| granted (the owner sends SHOAL_LEASE_GIVE_BACK). May be
     * NULL. */
    void (*on_lease_give_back)(void *user, struct shoal_swarm *s, uint32_t trk);
    /* Re-claim from tracker |trk| our lease of chunks [first, first+count)
     * of |s|, |left_ms| of it left (the owner sends SHOAL_LEASE_RECLAIM and
     * hands the answer to shoal_swarm_reclaim_result). May be NULL. */
    void (*on_lease_reclaim)(void *user, struct shoal_swarm *s, uint32_t trk, uint32_t first,
                             uint32_t count, uint32_t left_ms);
    /* The release got its first new chunk since it was opened (the owner
     * announces early so that peers find it). May be NULL. */
    void (*on_first_chunk)(void *user, struct shoal_swarm *s);
    /* What |s| serves changed other than by a chunk arriving:
     * chunks found bad on disk are withheld (the release is then not
     * complete), taken back to be fetched again, or served again. The
     * owner announces soon, so trackers count what it actually serves.
     * May be NULL. */
    void (*on_withheld)(void *user, struct shoal_swarm *s);
    /* A file of |s| whose sha256 is |sha256| was hashed again and found
     * changed on disk (or unreadable) after it was verified. The store
     * keeps one blob per sha256 for every release in the cache, so the
     * owner tells each other open release (shoal_swarm_blob_suspect).
     * Not called for what such a notice itself found, nor in memory mode
     * (nothing is shared). May be NULL. */
    void (*on_blob_rot)(void *user, struct shoal_swarm *s, const uint8_t sha256[32]);
    void *user;
};

enum shoal_swarm_lease_route {
    SHOAL_SWARM_LEASE_ASKED = 0,
    SHOAL_SWARM_LEASE_LATER = 1,
    SHOAL_SWARM_LEASE_LOCAL = 2,
};
/* The origin (hub.h); declared here so that this header needs no curl. */
struct shoal_hub;

struct shoal_swarm_cfg {
    uv_loop_t *loop;
    const char *cache_dir;           /* store root (HF hub cache) */
    const char *zone;                /* our zone: peers elsewhere are cross-zone */
    unsigned store_flags;            /* SHOAL_STORE_* */
    bool has_group;                  /* the cache's folders go to |group| */
    uint32_t group;                  /* gid of --loader-group */
    uint32_t serve_per_peer;         /* uploads in flight per peer; 0: 16 */
    uint32_t upload_slots;           /* peers uploaded to at once, others are
                                      * told busy; 0: no limit (see
                                      * SHOAL_UPLOAD_SLOTS_DEFAULT) */
    uint32_t request_timeout_ms;     /* 0: 30 s */
    uint64_t seed;                   /* scheduler seed */
    bool corrupt_uploads;            /* TESTING ONLY: flip a byte of every
                                      * chunk we serve (a malicious node) */
    bool corrupt_hangup;             /* TESTING ONLY: and close the
                                      * connection right after the first */
    bool sendfile_local;             /* TESTING ONLY: serve_from_file to
                                      * peers on this host too (the tests'
                                      * peers all are) */
    int compress_level;              /* zstd level for chunks we
                                      * serve (codec.h); 0: send raw */
    struct shoal_hub *hub;           /* the origin (Hub or gateway); NULL: none */
    uint32_t origin_delay_ms;        /* no origin lease this soon after start,
                                      * so peers' bitfields can arrive first */
    uint32_t lease_chunks;           /* chunks per lease; 0: scheduler default */
    uint32_t max_leases;             /* leases held at once; 0: scheduler default */
    uint64_t rate_down;              /* the node's download cap, bytes/s (0:
                                      * none): bounds requests in flight
                                      * (shoal_sched_set_rate_down) until
                                      * shoal_swarm_set_rate_down says
                                      * otherwise */
};

/*
 * Opens release |m| (taken over: freed with the swarm, also on error) whose
 * signed form is |signed_mf|/|len| (copied: served to peers that ask for the
 * manifest). Opens the store, and marks what it already holds.
 * |cfg| and |hooks| are borrowed and must outlive the swarm. |branch|, when
 * not NULL, is the branch or tag the release was asked for by: refs/<branch>
 * gets its commit once it is complete (as huggingface_hub writes a ref only
 * for a revision given by name; a pull by commit writes none).
 * Returns 0 or a store error (with a log line naming the path); then, when
 * |err| is not NULL, the reason for people goes there (|errlen| bytes,
 * NUL-terminated).
 */
int shoal_swarm_new(struct shoal_swarm **out, const struct shoal_swarm_cfg *cfg,
                    const struct shoal_swarm_hooks *hooks, struct shoal_manifest *m,
                    const uint8_t *signed_mf, size_t len, const char *branch, char *err,
                    size_t errlen);

/* Frees the swarm (flushes the store). Only once no worker job of it is
 * pending (shoal_swarm_busy() false), i.e. after the loop has run dry. */
void shoal_swarm_free(struct shoal_swarm *s);

/* True while worker jobs of this swarm are queued or running. */
bool shoal_swarm_busy(const struct shoal_swarm *s);

/* Whether the release looks cut off from its peers: incomplete, nothing
 * asked of a peer, and no chunk from one for |for_ms|
 * (shoal_sched_starved). Its lease requests say so. */
bool shoal_swarm_starved(const struct shoal_swarm *s, uint64_t for_ms);

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

/* The release is dropped: its partial files go when its store is freed
 * (shoal_store_discard_partials; how many and their size in the out
 * parameters, which may be NULL). */
void shoal_swarm_discard_partials(struct shoal_swarm *s, uint32_t *files, uint64_t *bytes);
/* Withdraws the release while the daemon runs on (`shoal drop`): CANCELs
 * every request in flight to a peer, forgets every peer (chunks being read
 * for them are dropped when the read finishes, not sent), cancels origin
 * fetches at their next bytes and stops (shoal_swarm_stop). Free it once
 * shoal_swarm_idle() says so. */
void shoal_swarm_withdraw(struct shoal_swarm *s);
/* True when no worker job and no origin fetch of the swarm is under way
 * and its timer has closed: it may be freed. */
bool shoal_swarm_idle(const struct shoal_swarm *s);

const uint8_t *shoal_swarm_id(const struct shoal_swarm *s);

/*
 * Applies the fleet role the tracker gave this node for the release: an
 * origin |fetcher| leases at once, up to max_leases at a time; anyone else
 * waits origin_delay_ms and holds one lease; an import share
 * (|import_mod| > 0, |import_rem| below it, at most 255) fetches its chunks
 * from other zones at once (shoal_sched_role_fleet). Takes effect mid-
 * download; logs the role once each time it changes. Without a call the
 * release keeps its configured behaviour. Returns 0, -EINVAL (a share
 * out of range) or -ENOMEM; the old role stays on error.
 */
int shoal_swarm_set_role(struct shoal_swarm *s, bool fetcher, uint32_t import_mod,
                         uint32_t import_rem);
const struct shoal_manifest *shoal_swarm_manifest(const struct shoal_swarm *s);
/* The open release was asked for by branch or tag |branch| (see
 * shoal_store_set_branch). Returns 0 or the store's error. */
int shoal_swarm_set_branch(struct shoal_swarm *s, const char *branch);
/* What shoal_swarm_check_cache found: |rv| 0 when every file is in place,
 * SHOAL_ENOTFOUND or SHOAL_EBADMSG when one is missing or wrong (|missing|
 * is then its manifest path), another error when the check could not be
 * made; |branch| as asked (NULL: none) and |ref_rv| the result of writing
 * its ref (0 when not tried). Loop thread. */
typedef void (*shoal_swarm_checked_cb)(void *user, struct shoal_swarm *s, int rv,
                                       const char *missing, const char *branch, int ref_rv);
/* Checks on a worker thread that every file of |s| is still in the cache
 * (shoal_hf_snapshot_check: a link and a blob per file, long on a slow disk
 * for a release of thousands of files) and, when they are and |branch| is
 * not NULL, writes refs/<branch> (shoal_swarm_set_branch). |done| is called
 * on the loop, also when the swarm was withdrawn meanwhile (it is not
 * freed before). Not for memory mode. Returns 0 (queued), or 1 when no
 * worker job could be queued (out of memory): the check was made here and
 * |done| has already been called (it may have freed |s|). */
int shoal_swarm_check_cache(struct shoal_swarm *s, const char *branch,
                            shoal_swarm_checked_cb done, void *user);
/* True when every file is verified and published and nothing of it is
 * withheld as changed on disk (see shoal_swarm_chunk_disputed). */
bool shoal_swarm_complete(const struct shoal_swarm *s);
/* True while files found in the cache that shoald had not verified (put
 * there by huggingface_hub, or before an upgrade) are being hashed on a
 * worker, before anything is fetched; |*files| and |*bytes| (may be NULL)
 * get what is left of them. */
bool shoal_swarm_hashing_found(const struct shoal_swarm *s, uint32_t *files, uint64_t *bytes);
/* Why a release whose every chunk is verified is not complete yet (a file
 * its store could not publish into the cache; tried again with a back-off),
 * or "". */
const char *shoal_swarm_publish_error(const struct shoal_swarm *s);

/* The store's last error message (which path, what failed); "" when none. */
void shoal_swarm_last_error(struct shoal_swarm *s, char *out, size_t cap);
/* What is wrong with the origin's bytes, until the chunk they failed for
 * is had: "origin's bytes for chunk N do not match the manifest ...", or
 * the last refusal the origin answered with (HTTP 404 for a file, a broken
 * answer), which its health does not count as failing: "origin URL: MSG
 * (not on the gateway? asked again later)"; or "". */
const char *shoal_swarm_origin_error(struct shoal_swarm *s);
/* Whether the release waits on other nodes: its origin lease requests keep
 * being answered with nothing (everything missing is leased to or fetched
 * by others, or the tracker refuses) and no chunk arrived for a few
 * seconds; then a line for status saying so in |out|. */
bool shoal_swarm_lease_wait(struct shoal_swarm *s, char *out, size_t cap);
/* Origin leases the swarm took itself (no tracker to arbitrate) in use. */
uint32_t shoal_swarm_local_leases(const struct shoal_swarm *s);
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

/*
 * Peer |p| banned us because chunk |chunk| we sent it failed its hash (its
 * BYE named the chunk). Our copy is hashed again on a worker thread: if it
 * fails, the cached file changed on disk after it was verified; that is
 * logged as an error naming the file, the file stops being served and
 * advertised (and handed to no loader) while all its chunks are hashed
 * again; then the chunks that fail are taken back from the store (out of
 * the cache and out of the sidecar, so a restart does not serve them
 * either) and fetched again like missing ones, and the file is served and
 * handed to loaders again once it matches its sha256. Meanwhile the release
 * is not complete (shoal_swarm_complete), and shoal_swarm_disk_error says
 * so. A chunk the store cannot read starts the same scan (also while the
 * file is fetched again). When taking back fails (no room or permission for
 * the copy in blobs/), the chunks that fail stay unserved until a restart
 * with --verify-store (a memory store: until the release is dropped and
 * pulled again). If it hashes right, the false claim
 * is logged and that node's claims are ignored for a while. Checks are
 * budgeted per release (a chunk found right is not checked again; a few
 * per minute); claims beyond that are dropped with a log line.
 */
void shoal_swarm_chunk_disputed(struct shoal_swarm *s, struct shoal_peer *p, uint32_t chunk);
/* Another open release found the blob with |sha256| changed on disk (see
 * the on_blob_rot hook): each done file of |s| with that sha256 is
 * withheld at once, from peers and loaders, and hashed again like a
 * disputed one; the chunks that fail are taken back and fetched again,
 * the others served again. A file already being scanned or repaired is
 * left to that. Nothing in memory mode. Loop thread. */
void shoal_swarm_blob_suspect(struct shoal_swarm *s, const uint8_t sha256[32]);
/* "" or, while a cached file of the release found changed on disk (or
 * unreadable) is withheld or fetched again, a line for `shoal status`
 * naming it (owned by the swarm). */
const char *shoal_swarm_disk_error(const struct shoal_swarm *s);

/* True when file |file| (manifest index) is ready for loaders: verified
 * (shoal_store_file_ready), whether or not its publishing in the cache is
 * done. */
bool shoal_swarm_file_done(struct shoal_swarm *s, uint32_t file);
/* Opens a new read-only descriptor on ready file |file| (the inode of the
 * HF-cache blob, or the same memfd in memory mode); the caller owns it.
 * Returns 0, SHOAL_STORE_UNLINKED (opened, but its cache entry was removed
 * under the daemon: see shoal_store_file_open), SHOAL_ENOTFOUND (not ready /
 * out of range), SHOAL_EBADHASH (found changed on disk) or a negated errno. */
int shoal_swarm_file_open(struct shoal_swarm *s, uint32_t file, int *fd);
/* This release's share of the node's download cap, bytes/s (0: none):
 * what bounds its requests in flight from now on
 * (shoal_sched_set_rate_down), in place of the whole cap of the config. */
void shoal_swarm_set_rate_down(struct shoal_swarm *s, uint64_t bytes_per_s);
/* Local loaders wait for files |files| (manifest indices, most urgent
 * first; |n| 0 clears): their chunks are scheduled first. Complete and
 * empty files in the list are skipped. Returns 0, SHOAL_EBADMSG (an index
 * out of range) or -ENOMEM. */
int shoal_swarm_want_files(struct shoal_swarm *s, const uint32_t *files, size_t n);

/* The answer to an on_lease_req that returned SHOAL_SWARM_LEASE_ASKED:
 * from tracker |trk|, |status| 0 with lease |l| (count 0: none free now), or
 * an error (|l| NULL): the scheduler asks again after its back-off. */
void shoal_swarm_lease_result(struct shoal_swarm *s, uint32_t trk, int status,
                              const struct shoal_msg_lease *l);

/* Tracker |trk| logged in (again; it may have restarted and lost its
 * leases): re-claims through on_lease_reclaim every origin lease of |s|
 * it granted that is not finished and has not run out there, and, when
 * |arbiter| (|trk| leases this release), those taken without a tracker
 * while none answered. */
void shoal_swarm_reclaim_leases(struct shoal_swarm *s, uint32_t trk, bool arbiter);

/* The answer to a re-claim (see trkconn's on_reclaim): granted (|status|
 * 0, |l| that span) goes on, under |trk| now; refused (SHOAL_EBUSY:
 * another node has some of its chunks) is dropped (shoal_sched_lease_drop:
 * what the origin is already sending still lands); anything else (an
 * older tracker: |l| of count 0) changes nothing. */
void shoal_swarm_reclaim_result(struct shoal_swarm *s, uint32_t trk, uint32_t first,
                                uint32_t count, int status, const struct shoal_msg_lease *l);

/* Counters for status and metrics. */
struct shoal_swarm_stats {
    uint32_t nchunks, have_chunks;
    uint64_t total_bytes, have_bytes;
    uint64_t rx_chunk_bytes, tx_chunk_bytes;
    uint32_t peers, inflight;
    uint32_t bad_chunks;
    uint64_t busy_slots;             /* requests told busy: all upload slots taken */
    uint64_t rx_chunks;              /* chunks from peers, verified */
    uint64_t tx_payload_bytes;       /* CHUNK payload bytes sent (after codec) */
    uint64_t origin_bytes;           /* verified chunk bytes from the origin */
    uint64_t dup_bytes;              /* received for chunks already held */
    uint64_t rx_dup_bytes;           /* ... of them from peers (in rx_chunk_bytes) */
    uint64_t resumed_bytes;          /* held when the release was opened */
};
void shoal_swarm_stats(const struct shoal_swarm *s, struct shoal_swarm_stats *st);

#endif
