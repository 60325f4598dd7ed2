/* SPDX-License-Identifier: MIT */
/*
 * Per-release exchange (see swarm.h): feeds the pure scheduler, carries out
 * its REQUEST/CANCEL decisions over peer connections, verifies and stores
 * received chunks on worker threads, and serves chunks from the store.
 */
#include "swarm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "error.h"
#include "hash.h"
#include "hfcache.h"
#include "hub.h"
#include "nodelog.h"
#include "sched.h"
#include "store.h"
#include "tcpinfo.h"

#define TICK_MS 100u
/* How often the peers' round trips are read again from TCP. */
#define RTT_CHECK_MS 1000u
#define MAX_INFLIGHT SHOAL_SCHED_DEPTH_MAX
/* Chunks queued for a peer that a CANCEL can still find (struct speer): a
 * peer's requests being served are at most serve_per_peer (16 unless
 * set), and beyond 32 queued the first are long on the wire. */
#define QUEUED_RING 32u
/* requests in flight per peer, at least (see swarm_new) */
#define SWARM_MIN_DEPTH 6u
#define MAX_SWARM_PEERS SHOAL_SCHED_PEERS_MAX
/* after this many chunks of a file in a row went raw, its other
 * chunks are sent without trying the codec (a file's chunks are alike:
 * weights do not compress, text does), which also lets a plain session to
 * another host send them straight from the page cache. */
#define RAW_RUN_SKIP 2u
/* smaller chunks are read and written as usual: for them the
 * calls that set up a sendfile cost more than the copies they save. */
#define SENDFILE_MIN (64u * 1024u)

/* disputed chunks (shoal_swarm_chunk_disputed): at most
 * ROT_BUDGET checks per ROT_WINDOW_MS per release, ROT_QUEUE waiting; a
 * node whose dispute proved false is not heard for ROT_LIAR_MS (the last
 * ROT_LIARS such nodes are kept); a file scan hashes at most ROT_SLICE
 * bytes per worker job. */
#define ROT_BUDGET 16u
#define ROT_WINDOW_MS 60000u
#define ROT_QUEUE 8u
#define ROT_LIARS 8u
#define ROT_LIAR_MS 600000u
#define ROT_SLICE (64u << 20)
/* Per file: OK; SCANNING (all of it withheld while every chunk is hashed
 * again); SCANNED (the chunks that failed are withheld, in rot_bad, and are
 * being taken back, or a scan is queued); REFETCH (they were taken back
 * from the store and are missing again, fetched like any other); KEPT (the
 * chunks in rot_bad stay withheld and nothing under way repairs them: the
 * take-back failed or could not start, or the scan was cut short). */
enum { ROT_FILE_OK = 0, ROT_FILE_SCANNING = 1, ROT_FILE_SCANNED = 2, ROT_FILE_REFETCH = 3,
       ROT_FILE_KEPT = 4 };
/* Per file, what was found: changed bytes, bytes that cannot be read, or
 * something not ours where its partial file goes (it cannot be filled). */
enum { ROT_WHY_CHANGED = 0, ROT_WHY_UNREADABLE = 1, ROT_WHY_BLOCKED = 2 };

struct req {
    uint32_t req_id;
    uint32_t chunk;
    uint64_t sent_ms;
};

/* Our state with one peer for this release. */
struct speer {
    struct shoal_peer *p;
    uint64_t id;
    bool joined;       /* in the scheduler (its bitfield arrived) */
    bool sent_bf;      /* we sent our bitfield on this connection */
    uint64_t rejoin_ms; /* its last JOIN bitfield we acted on (0: none) */
    uint32_t nreq;
    struct req req[MAX_INFLIGHT];
    uint32_t serving;  /* its requests being read from the store */
    uint64_t serving_bytes; /* ... their chunks' bytes */
    uint32_t rtt_ms;   /* the round trip the scheduler has for it (0: its own) */
    uint64_t sent_until; /* tx byte count at which its last chunk is out */
    /* The last QUEUED_RING chunks queued for it (request id, chunk; NIL
     * chunk: taken back): a CANCEL for one of them may still take it back
     * from the peer's queue (shoal_peer_withdraw_chunk). Request ids are
     * the requester's, so a match here is ours, not another release's. */
    struct {
        uint32_t req_id;
        uint32_t chunk;
    } queued[QUEUED_RING];
    uint32_t queued_head;
    bool said_bye;     /* testing (corrupt_hangup): BYE already sent */
    /* When it joined or last sent a chunk that verified: a peer that lets
     * requests time out with nothing from it for as long is banned. */
    uint64_t served_ms;
    bool busy_noted;   /* logged as busy for a whole time-out since then */
};

/* A received chunk on its way through the store (worker thread). */
struct verify_job {
    uv_work_t w;
    struct shoal_swarm *s;
    uint64_t peer_id;
    /* The sender's node key: a peer that sends a bad chunk and hangs up
     * before the verdict is still banned by key. */
    uint8_t peer_pk[32];
    bool have_pk;
    /* Received over a plain (--no-encrypt) session: nothing proves the
     * bytes are the sender's, so a bad chunk closes it but bans nobody. */
    bool plain;
    uint32_t chunk;
    uint8_t *data;
    uint8_t *base;          /* allocation holding |data| (freed) */
    uint32_t len;
    uint64_t sent_ms;
    int rv;
    bool dup; /* the chunk was already held */
    /* codec */
    uint8_t codec;          /* of |data|, which holds |plen| payload bytes */
    uint32_t plen;
};

/* A chunk being read for a peer (worker thread). */
struct serve_job {
    uv_work_t w;
    struct shoal_swarm *s;
    struct serve_job *next;  /* in s->serving */
    uint64_t peer_id;
    uint32_t req_id;
    uint32_t chunk;
    bool cancelled;
    uint8_t *buf;
    int rv;
    /* codec */
    uint8_t codec;           /* SHOAL_CODEC_RAW: send |buf| */
    uint8_t *payload;        /* compressed form, |plen| bytes */
    size_t plen;
    bool remote;             /* the peer is on another host (codec policy) */
    bool compress;           /* try the codec (else send raw) */
};

struct shoal_swarm {
    const struct shoal_swarm_cfg *cfg;
    const struct shoal_swarm_hooks *hooks;
    struct shoal_manifest *m;
    uint8_t *signed_mf;
    size_t signed_len;
    struct shoal_store *store;
    struct shoal_sched *sched;
    uint32_t nchunks;
    uv_timer_t tick;
    bool started, stopped, complete;
    bool tick_closed;          /* the tick's close callback has run */
    unsigned pending;          /* worker jobs outstanding */
    bool dedup_running;        /* copying shared chunks from the cache */
    /* Files found in the cache that shoald had not verified are being
     * hashed on a worker (shoal_store_hash_found): nothing is asked of
     * peers or the origin meanwhile (it may all be here already).
     * |found_files| marks the files that job decides (byte per file). */
    bool found_running;
    uint8_t *found_files;
    /* Every chunk verified but a file not published (disk or inode table
     * full when linking, ...): tried again on a worker with a back-off. */
    bool publish_running;
    uint64_t publish_at_ms;        /* next try; 0: nothing waits */
    uint32_t publish_wait_ms;      /* back-off after the last failure */
    char publish_err[256];         /* the last failure; "" when none */
    struct speer *peers[MAX_SWARM_PEERS];
    uint32_t npeers;
    struct serve_job *serving;
    uint64_t start_ms;
    uint64_t rx_bytes, tx_bytes;
    uint32_t bad_chunks;
    uint64_t rx_chunks, tx_wire_payload;
    uint64_t busy_slots;
    uint64_t rtt_checked_ms;       /* peers' round trips last read (check_rtts) */
    char idhex[17];
    uint32_t role;                 /* shoal_sched_role_key() of the fleet role
                                    * in effect; UINT32_MAX: none */
    struct shoal_sched_config sbase; /* the scheduler's settings at open: a
                                      * role is applied on top of them */
    struct slease {
        bool used;
        uint32_t first, count;
        uint32_t trk;              /* SHOAL_TRKCONN_NONE-like: UINT32_MAX, local */
        /* When the tracker lets it expire: granted for dur_ms, and each
         * report of a chunk fetched makes it run dur_ms again there (what
         * a re-claim says is left of it). */
        uint64_t expires_at;
        uint32_t dur_ms;
    } leases[16 + 1];              /* --max-leases (16 at most) and a
                                    * loader's extra (sched.c) */
    uint8_t *origin_failed;        /* bit per chunk: an origin fetch failed */
    /* Origin failures (bad bytes, a write error, a fetch the hub gave up
     * on or refused at once) since the last chunk that arrived, and until
     * when new leases wait because of them: without it a span the origin
     * refuses (an untrusted certificate, a 403) was asked for again at
     * once, hundreds of times a second. */
    uint32_t origin_fails;
    uint64_t origin_hold_until;
    /* The origin refused this node (HTTP 401/403: its token, or none, may
     * not read the repo): until then (the hold that followed) it fetches
     * nothing from the origin, having given back the leases it held; how
     * many so far, and when that was last logged. */
    uint64_t origin_refused_until;
    uint64_t given_back, given_back_logged_ms;
    /* Failed origin fetches not logged since the last one that was: one
     * warning per ORIGIN_FAIL_LOG_MS while they repeat. */
    uint32_t ofail_quiet;
    uint64_t ofail_logged_ms;
    struct ofetch *ofetches;       /* origin fetches alive */
    uint64_t origin_bytes, dup_bytes, resumed_bytes;
    /* Chunk puts queued on workers whose results the loop has not counted:
     * the store can be complete before the last of them is. */
    uint32_t storing;
    uint64_t rx_dup_bytes; /* the part of dup_bytes that came from peers */
    uint64_t withdrawn_bytes; /* chunks queued for peers, taken back on a
                               * CANCEL before they went out */
    bool got_first;                /* a chunk arrived since open */
    bool repump;                   /* a local lease queued new actions */
    /* Lease requests answered with nothing (refused or empty) in a row,
     * since when, and when that was last logged: a stall shows in the log
     * at most every LEASE_EMPTY_LOG_MS. */
    uint32_t lease_empty;
    uint64_t lease_empty_since_ms, lease_empty_logged_ms, lease_empty_last_ms;
    /* For status (shoal_swarm_lease_wait): the chunks had at the last empty
     * answer, when that count last changed within the run, and the last
     * answer's status. */
    uint32_t lease_empty_have;
    uint64_t lease_empty_grew_ms;
    int lease_empty_status;
    /* per file, chunks in a row whose probe chose raw, for
     * peers on this host [2 * file] and elsewhere [2 * file + 1] */
    uint8_t *raw_run;
    /* chunks a peer banned us for (its BYE named them), hashed
     * again from the store: see shoal_swarm_chunk_disputed. */
    uint8_t *rot_bad;          /* bit per chunk: changed on disk after it was
                                * verified; neither served nor advertised */
    uint8_t *rot_ok;           /* bit per chunk: a dispute found it right;
                                * later disputes of it are not checked */
    uint8_t *rot_file;         /* per file: ROT_FILE_* */
    uint8_t *rot_why;          /* per file: ROT_WHY_* */
    struct rot_claim {
        uint32_t chunk;
        bool scan;             /* not a dispute: scan the chunk's file */
        bool told;             /* scan: another release found its blob bad
                                * (shoal_swarm_blob_suspect): what it finds
                                * is not passed on again */
        uint8_t why;           /* scan: ROT_WHY_* */
        uint8_t pk[32];
        char peer[64];
    } rot_queue[ROT_QUEUE];    /* disputes waiting for the worker */
    uint32_t rot_nqueue;
    bool rot_running;          /* a check or file scan on a worker */
    uint64_t rot_window_ms;    /* start of the current budget window */
    uint32_t rot_window_n;     /* checks started in it */
    uint64_t rot_refused_log_ms; /* last "dispute not checked" line */
    struct rot_liar {
        uint8_t pk[32];
        uint64_t until_ms;
    } rot_liars[ROT_LIARS];    /* keys whose dispute was false: ignored */
    char rot_err[320];         /* for status (rot_status): a file withheld or
                                * being fetched again; "" while none is */
    int *rot_kept_rv;          /* per file: why its repair failed (KEPT), or 0 */
    /* The last chunk whose origin bytes failed their hash, and how often in
     * a row (for status, shoal_swarm_origin_error); none: bad_origin_n 0. */
    uint32_t bad_origin_chunk, bad_origin_n;
    char bad_origin_err[200];
    /* The last origin fetch the origin answered but refused (a 404: the
     * file is not there; a broken answer), which the hub's health does not
     * count as failing, and its first chunk: shown in status until that
     * chunk is had. "" while none is. */
    uint32_t origin_refused_chunk;
    char origin_refused_err[400];
};

static uint32_t next_req_id = 1;

/* Empty lease answers in a row, and for how long, before a stall is
 * logged (a fleet's nodes often wait a few seconds for others' leases),
 * and the least time between two such lines. */
#define LEASE_EMPTY_LOG_MIN 5
#define LEASE_EMPTY_LOG_AFTER_MS 10000
#define LEASE_EMPTY_LOG_MS 30000
/* Status names such a wait once requests have been answered with nothing,
 * and nothing arrived, for this long (the control socket then stops
 * showing a rate: see STALL_MS in ctl.c), while the last such answer is at
 * most LEASE_WAIT_FRESH_MS old (requests go every 0.5 s while they are
 * refused: an older one means the node stopped asking). */
#define LEASE_WAIT_SHOW_MS 5000
#define LEASE_WAIT_FRESH_MS 3000
/* At most one "origin fetch ... failed" warning per this long (the hub's
 * "origin HOST failing" line says how many requests failed meanwhile). */
#define ORIGIN_FAIL_LOG_MS 30000

struct ofetch;
static void origin_free_all(struct shoal_swarm *s);
static void note_first_chunk(struct shoal_swarm *s);
static void do_lease_req(struct shoal_swarm *s, const struct shoal_sched_action *a);
static void do_origin_fetch(struct shoal_swarm *s, const struct shoal_sched_action *a);
static void do_lease_done(struct shoal_swarm *s, const struct shoal_sched_action *a);

static bool rot_withheld(const struct shoal_swarm *s, uint32_t chunk);
static void rot_open_withheld(struct shoal_swarm *s);

static uint64_t now_ms(const struct shoal_swarm *s)
{
    return uv_now(s->cfg->loop);
}

const uint8_t *shoal_swarm_id(const struct shoal_swarm *s) { return shoal_manifest_id(s->m); }
const struct shoal_manifest *shoal_swarm_manifest(const struct shoal_swarm *s) { return s->m; }

int shoal_swarm_set_branch(struct shoal_swarm *s, const char *branch)
{
    return shoal_store_set_branch(s->store, branch);
}

/* shoal_swarm_check_cache's job: a stat and a readlink per file, which on
 * a slow disk and a release of thousands of files would stall the loop. */
struct cache_check {
    uv_work_t w;
    struct shoal_swarm *s;
    char *branch;
    shoal_swarm_checked_cb done;
    void *user;
    int rv, ref_rv;
    uint32_t missing;
};

/* The check itself, on the worker or (no job) the loop: |*missing| is the
 * first file not in place. The snapshot walked once: the ref is written
 * on what this walk found. */
static int cache_check_run(struct shoal_swarm *s, const char *branch, uint32_t *missing,
                           int *ref_rv)
{
    int rv;

    *missing = 0;
    *ref_rv = 0;
    rv = shoal_hf_snapshot_check(s->cfg->cache_dir, s->m, missing);
    if (rv == 0 && branch)
        *ref_rv = shoal_store_set_branch_checked(s->store, branch);
    return rv;
}

/* The manifest path of file |missing| when the check failed, else "?". */
static const char *cache_check_path(const struct shoal_swarm *s, int rv, uint32_t missing)
{
    return rv != 0 && missing < shoal_manifest_nfiles(s->m)
               ? shoal_manifest_file(s->m, missing)->path
               : "?";
}

static void cache_check_work(uv_work_t *w)
{
    struct cache_check *j = w->data;

    j->rv = cache_check_run(j->s, j->branch, &j->missing, &j->ref_rv);
}

static void cache_check_done(uv_work_t *w, int status)
{
    struct cache_check *j = w->data;
    int rv = status < 0 ? status : j->rv;

    j->s->pending--;
    j->done(j->user, j->s, rv, cache_check_path(j->s, rv, j->missing), j->branch, j->ref_rv);
    free(j->branch);
    free(j);
}

int shoal_swarm_check_cache(struct shoal_swarm *s, const char *branch,
                            shoal_swarm_checked_cb done, void *user)
{
    struct cache_check *j = calloc(1, sizeof *j);
    uint32_t missing;
    int rv, ref_rv;

    if (j && (!branch || (j->branch = strdup(branch)))) {
        j->s = s;
        j->w.data = j;
        j->done = done;
        j->user = user;
        if (uv_queue_work(s->cfg->loop, &j->w, cache_check_work, cache_check_done) == 0) {
            s->pending++;
            return 0;
        }
    }
    if (j)
        free(j->branch);
    free(j);
    /* No worker job (out of memory): checked here, and answered now. */
    rv = cache_check_run(s, branch, &missing, &ref_rv);
    done(user, s, rv, cache_check_path(s, rv, missing), branch, ref_rv);
    return 1;
}
bool shoal_swarm_complete(const struct shoal_swarm *s) { return s->complete; }

void shoal_swarm_discard_partials(struct shoal_swarm *s, uint32_t *files, uint64_t *bytes)
{
    shoal_store_discard_partials(s->store, files, bytes);
}
bool shoal_swarm_busy(const struct shoal_swarm *s) { return s->pending > 0; }

bool shoal_swarm_starved(const struct shoal_swarm *s, uint64_t for_ms)
{
    return s->sched && shoal_sched_starved(s->sched, now_ms(s), for_ms);
}

const uint8_t *shoal_swarm_signed(const struct shoal_swarm *s, size_t *len)
{
    *len = s->signed_len;
    return s->signed_mf;
}

static void on_file(void *user, uint32_t file, int status)
{
    struct shoal_swarm *s = user;
    const struct shoal_mf_file *f = shoal_manifest_file(s->m, file);
    char err[256];

    /* Worker thread: only log. */
    if (status == 0) {
        LOG_I("release %s: %s complete and verified (%llu bytes)", s->idhex, f->path,
              (unsigned long long)f->size);
    } else if (shoal_store_file_ready(s->store, file)) {
        /* Loaders were handed it at on_ready: they hold verified bytes. */
        shoal_store_last_error(s->store, err, sizeof err);
        LOG_E("release %s: %s is verified (and may already be with loaders) but could "
              "not be published in the cache: %s (%s); a restart retries",
              s->idhex, f->path, shoal_strerror(status), err);
    } else {
        LOG_E("release %s: %s failed its sha256 or could not be published: %s", s->idhex,
              f->path, shoal_strerror(status));
    }
    /* Success went to the loaders at on_ready; a failure is theirs too. */
    if (status != 0 && s->hooks->on_file)
        s->hooks->on_file(s->hooks->user, s, file, status);
}

/* Worker thread: the file's sha256 matched, before its fsync and renames:
 * loaders get it now (shoal_store_file_ready). Also the loop thread, when
 * a file suspected of having changed on disk hashed right after all (see
 * rot_scan_done): loaders that asked meanwhile get it then. */
static void on_ready(void *user, uint32_t file, int status)
{
    struct shoal_swarm *s = user;

    if (s->hooks->on_file)
        s->hooks->on_file(s->hooks->user, s, file, status);
}

static bool store_job_start(struct shoal_swarm *s, int (*call)(struct shoal_store *, uint32_t *),
                            void (*then)(struct shoal_swarm *, int, int, uint32_t));
static void rot_open_file(struct shoal_swarm *s, uint32_t i);
static void rot_status(struct shoal_swarm *s);
static void send_have(struct shoal_swarm *s, uint32_t chunk);
static void check_complete(struct shoal_swarm *s);
static void start_dedup(struct shoal_swarm *s);
static void pump(struct shoal_swarm *s);

/* A worker put chunks in the store without the scheduler (found in the
 * cache, copied from another release): the scheduler learns of each, peers
 * hear of it unless the release is stopped. Returns their bytes. */
static uint64_t obtain_stored(struct shoal_swarm *s, uint64_t now)
{
    uint64_t bytes = 0;

    for (uint32_t i = 0; i < s->nchunks && s->sched; i++) {
        if (!shoal_store_has(s->store, i) || shoal_sched_have(s->sched, i))
            continue;
        shoal_sched_chunk_obtained(s->sched, now, i);
        bytes += shoal_manifest_chunk(s->m, i)->len;
        if (!s->stopped)
            send_have(s, i);
    }
    return bytes;
}

/* shoal_store_hash_found is done: what it found right is had (peers hear
 * of it), what it found wrong is being repaired (the log says so, as at
 * open), and the release may be complete; then fetching starts. */
static void found_done(struct shoal_swarm *s, int status, int rv, uint32_t n)
{
    uint64_t now = now_ms(s);
    uint32_t nh, nw;
    uint64_t bh;

    s->found_running = false;
    if (status != 0 || rv != 0)
        LOG_W("release %s: hashing the files found in the cache failed: %s", s->idhex,
              shoal_strerror(status != 0 ? status : rv));
    s->resumed_bytes += obtain_stored(s, now);
    for (uint32_t i = 0; i < shoal_manifest_nfiles(s->m); i++)
        if (s->found_files[i])
            rot_open_file(s, i);
    rot_status(s);
    shoal_store_open_hashed(s->store, &nh, &bh, &nw);
    LOG_I("release %s: hashed %u cached file(s) (%llu bytes) shoald had not verified: "
          "%u matched, %u did not", s->idhex, nh, (unsigned long long)bh, nh - nw, nw);
    (void)n;
    if (!s->stopped) /* dropped meanwhile: nobody is told it completed */
        check_complete(s);
    if (s->started && !s->stopped) { /* nor does it start copying (review R4) */
        start_dedup(s);
        pump(s);
    }
}

/* Hashes on a worker the files the store left pending at open
 * (SHOAL_STORE_DEFER_HASH). Returns 0 or -ENOMEM. */
static int start_found(struct shoal_swarm *s)
{
    uint32_t n, nf = shoal_manifest_nfiles(s->m);
    uint64_t bytes;

    shoal_store_pending(s->store, &n, &bytes);
    if (n == 0)
        return 0;
    if (!(s->found_files = calloc(nf + 1, 1)))
        return -ENOMEM;
    for (uint32_t i = 0; i < nf; i++)
        s->found_files[i] = shoal_store_file_pending(s->store, i);
    if (!store_job_start(s, shoal_store_hash_found, found_done))
        return -ENOMEM;
    s->found_running = true;
    s->complete = false;
    LOG_I("release %s: hashing %u file(s) (%llu bytes) found in the cache with no record of "
          "being verified, before fetching anything", s->idhex, n, (unsigned long long)bytes);
    return 0;
}

bool shoal_swarm_hashing_found(const struct shoal_swarm *s, uint32_t *files, uint64_t *bytes)
{
    if (!s->found_running)
        return false;
    shoal_store_pending(s->store, files, bytes);
    return true;
}

int shoal_swarm_new(struct shoal_swarm **out, const struct shoal_swarm_cfg *cfg,
                    const struct shoal_swarm_hooks *hooks, struct shoal_manifest *m,
                    const uint8_t *signed_mf, size_t len, const char *branch, char *errout,
                    size_t errlen)
{
    struct shoal_swarm *s = calloc(1, sizeof *s);
    struct shoal_sched_config sc;
    struct shoal_sched_release rel;
    struct shoal_store_opts so;
    uint32_t *file_first = NULL, nf = 0;
    char err[512] = "";
    int rv;

    if (errout && errlen)
        errout[0] = '\0';
    if (!s) {
        shoal_manifest_free(m);
        return -ENOMEM;
    }
    s->cfg = cfg;
    s->hooks = hooks;
    s->m = m;
    s->nchunks = shoal_manifest_nchunks(m);
    shoal_hex(s->idhex, shoal_manifest_id(m), 8);
    s->signed_mf = malloc(len);
    if (!s->signed_mf) {
        rv = -ENOMEM;
        goto fail;
    }
    memcpy(s->signed_mf, signed_mf, len);
    s->signed_len = len;

    memset(&so, 0, sizeof so);
    /* The first hash of what another tool put in the cache runs on a
     * worker (start_found): here it would hold the event loop. */
    so.flags = cfg->store_flags | SHOAL_STORE_DEFER_HASH;
    so.has_group = cfg->has_group;
    so.group = cfg->group;
    so.branch = branch;
    so.manifest = signed_mf;
    so.manifest_len = len;
    so.on_file = on_file;
    so.on_ready = on_ready;
    so.user = s;
    so.err = err;
    so.errlen = sizeof err;
    rv = shoal_store_open(&s->store, cfg->cache_dir, m, &so);
    if (rv != 0) {
        LOG_E("release %s (%s@%s): cannot open store: %s", s->idhex, shoal_manifest_repo_id(m),
              shoal_manifest_commit(m), err[0] ? err : shoal_strerror(rv));
        if (errout && errlen)
            snprintf(errout, errlen, "cannot open store: %s", err[0] ? err : shoal_strerror(rv));
        goto fail;
    }

    file_first = malloc(sizeof *file_first * (shoal_manifest_nfiles(m) + 1));
    if (!file_first) {
        rv = -ENOMEM;
        goto fail;
    }
    for (uint32_t i = 0; i < shoal_manifest_nfiles(m); i++) {
        const struct shoal_mf_file *f = shoal_manifest_file(m, i);
        if (f->nchunks)
            file_first[nf++] = f->first_chunk;
    }
    shoal_sched_config_default(&sc);
    sc.seed = cfg->seed;
    /* the depth from the bandwidth-delay product counts only
     * the network's round trip; each request also waits for the seed's read
     * and our verify on worker threads (a few ms per MiB), which a fast link
     * never hides with two requests in flight. */
    sc.min_depth = SWARM_MIN_DEPTH;
    if (cfg->lease_chunks)
        sc.lease_chunks = cfg->lease_chunks;
    if (cfg->max_leases)
        sc.max_leases = cfg->max_leases > 16 ? 16 : cfg->max_leases;
    /* The scheduler holds leases back for the delay, so a fleet role from
     * the tracker can change it (shoal_swarm_set_role). */
    sc.origin_delay_ms = cfg->origin_delay_ms;
    s->sbase = sc;
    s->role = UINT32_MAX;
    memset(&rel, 0, sizeof rel);
    rel.nchunks = s->nchunks;
    rel.total_bytes = shoal_manifest_total_size(m);
    rel.nfiles = nf;
    rel.file_first = file_first;
    if (s->nchunks > 0) {
        rv = shoal_sched_new(&s->sched, &sc, &rel);
        if (rv != 0) {
            LOG_E("release %s: scheduler refused the release: %s", s->idhex, shoal_strerror(rv));
            goto fail;
        }
        /* What we asked a peer for is sent in the order asked, and at a
         * capped rate it is received ahead of what a loader comes to want
         * (H1): keep only about half a second of it in flight. */
        shoal_sched_set_rate_down(s->sched, cfg->rate_down);
        /* ... and so a slow link or slow peers with no cap configured:
         * as much as what they deliver (measured as they do) allows. */
        if ((rv = shoal_sched_set_rate_bound(s->sched, true)) != 0) {
            LOG_E("release %s: scheduler: %s", s->idhex, shoal_strerror(rv));
            goto fail;
        }
        for (uint32_t i = 0; i < s->nchunks; i++) {
            if (shoal_store_has(s->store, i))
                shoal_sched_chunk_obtained(s->sched, 0, i);
        }
    }
    free(file_first);
    s->complete = shoal_store_complete(s->store);
    s->origin_failed = calloc(1, s->nchunks / 8 + 1);
    s->raw_run = calloc(2, (size_t)shoal_manifest_nfiles(m) + 1);
    s->rot_bad = calloc(1, s->nchunks / 8 + 1);
    s->rot_ok = calloc(1, s->nchunks / 8 + 1);
    s->rot_file = calloc(1, (size_t)shoal_manifest_nfiles(m) + 1);
    s->rot_why = calloc(1, (size_t)shoal_manifest_nfiles(m) + 1);
    s->rot_kept_rv = calloc((size_t)shoal_manifest_nfiles(m) + 1, sizeof *s->rot_kept_rv);
    if (!s->origin_failed || !s->raw_run || !s->rot_bad || !s->rot_ok || !s->rot_file ||
        !s->rot_why || !s->rot_kept_rv) {
        rv = -ENOMEM;
        goto fail;
    }
    rot_open_withheld(s);
    {
        uint32_t nh, nw;
        uint64_t bh;

        shoal_store_open_hashed(s->store, &nh, &bh, &nw);
        if (nh > 0)
            LOG_I("release %s: hashed %u cached file(s) (%llu bytes) shoald had not verified: "
                  "%u matched, %u did not", s->idhex, nh, (unsigned long long)bh, nh - nw, nw);
    }
    if ((rv = start_found(s)) != 0)
        goto fail;
    s->resumed_bytes = shoal_store_bytes(s->store);
    if (!s->complete && shoal_store_count(s->store) > 0)
        LOG_I("release %s: resuming with %u of %u chunks (%llu bytes) already verified",
              s->idhex, shoal_store_count(s->store), s->nchunks,
              (unsigned long long)s->resumed_bytes);
    *out = s;
    return 0;
fail:
    if (errout && errlen && !errout[0])
        snprintf(errout, errlen, "cannot open the release: %s", shoal_strerror(rv));
    free(file_first);
    shoal_swarm_free(s); /* no peer or origin fetch yet: the rest is what it frees */
    return rv;
}

void shoal_swarm_free(struct shoal_swarm *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->npeers; i++)
        free(s->peers[i]);
    origin_free_all(s);
    free(s->raw_run);
    free(s->rot_bad);
    free(s->rot_ok);
    free(s->rot_file);
    free(s->rot_why);
    free(s->rot_kept_rv);
    free(s->found_files);
    shoal_sched_free(s->sched);
    shoal_store_free(s->store);
    free(s->signed_mf);
    shoal_manifest_free(s->m);
    free(s);
}

int shoal_swarm_import_dir(struct shoal_swarm *s, const char *dir, uint32_t *imported)
{
    uint32_t done = 0, maxlen = shoal_manifest_params(s->m)->max_size;
    uint8_t *buf = malloc(maxlen ? maxlen : 1);
    int rv = 0;

    if (!buf)
        return -ENOMEM;
    for (uint32_t fi = 0; fi < shoal_manifest_nfiles(s->m) && rv == 0; fi++) {
        const struct shoal_mf_file *f = shoal_manifest_file(s->m, fi);
        char path[4096];
        int fd;

        snprintf(path, sizeof path, "%s/%s", dir, f->path);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            LOG_W("import %s: %s", path, strerror(errno));
            continue;
        }
        for (uint32_t k = 0; k < f->nchunks; k++) {
            uint32_t ci = f->first_chunk + k;
            const struct shoal_mf_chunk *c = shoal_manifest_chunk(s->m, ci);
            ssize_t n;
            if (shoal_store_has(s->store, ci))
                continue;
            n = pread(fd, buf, c->len, (off_t)c->offset);
            if (n != (ssize_t)c->len) {
                LOG_W("import %s: short read at offset %llu", path,
                      (unsigned long long)c->offset);
                break;
            }
            rv = shoal_store_put_chunk(s->store, ci, buf, c->len);
            if (rv == SHOAL_EBADHASH) {
                LOG_W("import %s: chunk %u at offset %llu does not match the manifest", path,
                      ci, (unsigned long long)c->offset);
                rv = 0;
                continue;
            }
            if (rv != 0)
                break;
            if (s->sched)
                shoal_sched_chunk_obtained(s->sched, 0, ci);
            done++;
        }
        close(fd);
    }
    free(buf);
    /* a file withheld at open stays withheld: the store counts
     * it done, so the import neither fills it nor makes the release
     * complete (check_complete says when it is). */
    s->complete = shoal_store_complete(s->store) && !s->rot_err[0];
    if (imported)
        *imported = done;
    if (rv == 0)
        rv = shoal_store_flush(s->store);
    return rv;
}

static struct speer *find_peer(struct shoal_swarm *s, uint64_t id)
{
    for (uint32_t i = 0; i < s->npeers; i++) {
        if (s->peers[i]->id == id)
            return s->peers[i];
    }
    return NULL;
}

static struct speer *get_peer(struct shoal_swarm *s, struct shoal_peer *p)
{
    struct speer *sp = find_peer(s, shoal_peer_id(p));

    if (sp || s->npeers >= MAX_SWARM_PEERS)
        return sp;
    sp = calloc(1, sizeof *sp);
    if (!sp)
        return NULL;
    sp->p = p;
    sp->id = shoal_peer_id(p);
    for (uint32_t i = 0; i < QUEUED_RING; i++)
        sp->queued[i].chunk = UINT32_MAX;
    s->peers[s->npeers++] = sp;
    return sp;
}

static void send_bitfield(struct shoal_swarm *s, struct speer *sp)
{
    size_t nb = (s->nchunks + 7) / 8;
    uint8_t *bits = calloc(1, nb ? nb : 1);
    struct shoal_msg m;

    if (!bits)
        return;
    if (shoal_store_bitfield(s->store, bits, nb) >= 0) {
        /* what changed on disk is not offered: a peer would
         * only be refused it. */
        for (uint32_t i = 0; s->rot_err[0] && i < s->nchunks; i++) {
            if (rot_withheld(s, i))
                bits[i / 8] &= (uint8_t)~(0x80u >> (i % 8));
        }
        memset(&m, 0, sizeof m);
        m.type = SHOAL_MSG_HAVE_BITFIELD;
        memcpy(m.u.have_bitfield.manifest_id, shoal_manifest_id(s->m), 32);
        m.u.have_bitfield.nchunks = s->nchunks;
        m.u.have_bitfield.bits.p = bits;
        m.u.have_bitfield.bits.len = (uint32_t)nb;
        /* Our first on this connection for this open of the release: a
         * peer that knew us from an earlier open (we dropped the release
         * and opened it again) answers with its own, which it would not
         * for a later bitfield. */
        if (!sp->sent_bf)
            m.u.have_bitfield.flags = SHOAL_BITFIELD_F_JOIN;
        if (shoal_peer_send(sp->p, &m) == 0)
            sp->sent_bf = true;
    }
    free(bits);
}

void shoal_swarm_peer_ready(struct shoal_swarm *s, struct shoal_peer *p)
{
    struct speer *sp = get_peer(s, p);
    if (sp && !sp->sent_bf)
        send_bitfield(s, sp);
}

static void drop_peer(struct shoal_swarm *s, struct speer *sp)
{
    for (uint32_t i = 0; i < s->npeers; i++) {
        if (s->peers[i] == sp) {
            s->peers[i] = s->peers[--s->npeers];
            break;
        }
    }
    if (sp->joined && s->sched)
        shoal_sched_peer_remove(s->sched, sp->id);
    for (struct serve_job *j = s->serving; j; j = j->next) {
        if (j->peer_id == sp->id)
            j->cancelled = true;
    }
    free(sp);
}

void shoal_swarm_peer_gone(struct shoal_swarm *s, struct shoal_peer *p)
{
    struct speer *sp = find_peer(s, shoal_peer_id(p));
    if (sp)
        drop_peer(s, sp);
}

static void pump(struct shoal_swarm *s);

static void send_have(struct shoal_swarm *s, uint32_t chunk)
{
    struct shoal_msg m;

    memset(&m, 0, sizeof m);
    m.type = SHOAL_MSG_HAVE;
    memcpy(m.u.have.manifest_id, shoal_manifest_id(s->m), 32);
    m.u.have.chunk_index = chunk;
    for (uint32_t i = 0; i < s->npeers; i++) {
        if (s->peers[i]->sent_bf)
            (void)shoal_peer_send(s->peers[i]->p, &m);
    }
}

static void rot_repaired(struct shoal_swarm *s);

static void check_complete(struct shoal_swarm *s)
{
    rot_repaired(s);
    /* not while chunks are withheld or fetched again: trackers
     * and peers would count on chunks we do not serve. */
    if (s->complete || s->storing > 0 || s->rot_err[0] || !shoal_store_complete(s->store))
        return;
    s->complete = true;
    (void)shoal_store_flush(s->store);
    /* One line scripts parse (benchmarks, tests): keep its shape. */
    LOG_I("release %s (%s@%s) complete: %llu bytes, %llu received from peers, %llu from "
          "origin, %llu duplicate, %llu held at start, in %.2f s",
          s->idhex, shoal_manifest_repo_id(s->m), shoal_manifest_commit(s->m),
          (unsigned long long)shoal_manifest_total_size(s->m),
          (unsigned long long)s->rx_bytes, (unsigned long long)s->origin_bytes,
          (unsigned long long)s->dup_bytes, (unsigned long long)s->resumed_bytes,
          (double)(now_ms(s) - s->start_ms) / 1000.0);
    if (s->hooks->on_complete)
        s->hooks->on_complete(s->hooks->user, s);
}

/* The node key |sp| authenticated with; NULL before its handshake. */
static const uint8_t *speer_pk(const struct speer *sp)
{
    const struct shoal_session *ss = shoal_peer_session(sp->p);
    return ss ? shoal_session_peer_pk(ss) : NULL;
}

/* Bans key |pk| of a sender that has already gone, so it cannot come back.
 * |chunk| as for ban_peer: the owner bans a first bad chunk more briefly. */
static void ban_key(struct shoal_swarm *s, const uint8_t *pk, uint32_t chunk, const char *why)
{
    if (s->hooks->on_ban && pk)
        s->hooks->on_ban(s->hooks->user, s, NULL, pk, chunk, why);
}

/* Takes |sp| out of scheduling before the owner bans and closes it, so
 * nothing more is requested from it while it closes. |chunk| is the chunk
 * whose bytes failed their hash (SHOAL_SWARM_NO_CHUNK: another reason): the
 * owner's BYE names it, so an honest sender whose copy changed on disk
 * learns which. */
static void ban_peer(struct shoal_swarm *s, struct speer *sp, uint32_t chunk, const char *why)
{
    if (sp->joined && s->sched)
        shoal_sched_peer_remove(s->sched, sp->id);
    sp->joined = false;
    sp->nreq = 0;
    /* Several bad chunks may be in flight: ban and close only once. A peer
     * already closing is still banned by key. */
    if (!shoal_peer_ready(sp->p))
        ban_key(s, speer_pk(sp), chunk, why);
    else if (s->hooks->on_ban)
        s->hooks->on_ban(s->hooks->user, s, sp->p, speer_pk(sp), chunk, why);
}

/* ---- receiving chunks ---- */

static void verify_work(uv_work_t *w)
{
    struct verify_job *j = w->data;
    /* codec */
    if (j->codec != SHOAL_CODEC_RAW) {
        /* |len| is the manifest's, never the wire's: at most the chunk max. */
        uint8_t *raw = malloc(j->len ? j->len : 1);
        int rv = raw ? shoal_codec_decompress(j->codec, j->data, j->plen, raw, j->len) : -ENOMEM;
        free(j->base);
        j->base = j->data = raw;
        if (rv != 0) {
            LOG_W("release %s: %s payload of chunk %u does not decode: %s", j->s->idhex,
                  shoal_codec_name(j->codec), j->chunk, shoal_strerror(rv));
            /* Like a wrong hash: the peer sent bytes that are not the chunk. */
            j->rv = rv == -ENOMEM ? rv : SHOAL_EBADHASH;
            return;
        }
    }
    bool first = false;
    j->rv = shoal_store_put_chunk_first(j->s->store, j->chunk, j->data, j->len, &first);
    j->dup = !first;
}

static void verify_done(uv_work_t *w, int status)
{
    struct verify_job *j = w->data;
    struct shoal_swarm *s = j->s;
    struct speer *sp = find_peer(s, j->peer_id);
    uint64_t now = now_ms(s);

    s->pending--;
    s->storing--;
    if (status == 0 && j->rv == 0) {
        s->rx_bytes += j->len;
        s->rx_chunks++;
        if (j->dup) {
            s->dup_bytes += j->len;
            s->rx_dup_bytes += j->len;
        } else {
            note_first_chunk(s);
        }
        if (sp) {
            sp->served_ms = now;
            sp->busy_noted = false;
        }
        if (sp && sp->joined)
            shoal_sched_req_done(s->sched, now, j->peer_id, j->chunk, j->len,
                                 now > j->sent_ms ? now - j->sent_ms : 1);
        else
            shoal_sched_chunk_obtained(s->sched, now, j->chunk);
        if (!s->stopped)
            send_have(s, j->chunk);
        check_complete(s);
    } else {
        int rv = status ? status : j->rv;
        if (sp && sp->joined)
            shoal_sched_req_failed(s->sched, now, j->peer_id, j->chunk, false);
        if (rv == SHOAL_EBADHASH && j->plain) {
            /* Anyone on the path can change plain frames: banning the key
             * would let them shut an honest node out. */
            s->bad_chunks++;
            LOG_W("release %s: chunk %u from %s fails its hash; the session is plain "
                  "(--no-encrypt), so the bytes may have been changed on the way: "
                  "connection closed, node not banned", s->idhex, j->chunk,
                  sp ? shoal_peer_name(sp->p) : "a peer already gone");
            /* The BYE names the chunk: if the sender's own copy is bad,
             * it finds out (shoal_swarm_chunk_disputed). */
            if (sp)
                shoal_peer_bye_chunk(sp->p, "sent a chunk that fails its hash (plain session)",
                                     shoal_manifest_id(s->m), j->chunk);
        } else if (rv == SHOAL_EBADHASH) {
            char why[160];
            snprintf(why, sizeof why, "sent chunk %u of release %s that fails its hash",
                     j->chunk, s->idhex);
            if (sp) {
                s->bad_chunks++;
                ban_peer(s, sp, j->chunk, why);
            } else {
                /* The sender hung up before the verdict: ban its key. */
                s->bad_chunks++;
                ban_key(s, j->have_pk ? j->peer_pk : NULL, j->chunk, why);
            }
        } else if (rv != SHOAL_EBUSY) {
            char err[512];
            shoal_store_last_error(s->store, err, sizeof err);
            LOG_E("release %s: storing chunk %u failed: %s (%s)", s->idhex, j->chunk,
                  shoal_strerror(rv), err);
        }
    }
    shoal_peer_buf_free(j->base);
    free(j);
    check_complete(s); /* this may have been the last put outstanding */
    if (!s->stopped)
        pump(s);
}

static struct req *take_req(struct speer *sp, uint32_t req_id, struct req *out)
{
    for (uint32_t i = 0; i < sp->nreq; i++) {
        if (sp->req[i].req_id == req_id) {
            *out = sp->req[i];
            sp->req[i] = sp->req[--sp->nreq];
            return out;
        }
    }
    return NULL;
}

static bool handle_chunk(struct shoal_swarm *s, struct speer *sp, const struct shoal_msg_chunk *c)
{
    const struct shoal_mf_chunk *mc;
    const uint8_t *pk;
    struct verify_job *j;
    struct req r;

    if (!take_req(sp, c->req_id, &r))
        return false;
    /* It answered: while the chunk waits to be hashed, its other requests
     * timing out must not make it look silent (a bad hash bans it anyway). */
    sp->served_ms = now_ms(s);
    /* A codec we cannot decode says nothing about the
     * bytes: the sender is a newer shoal, not a liar. Refused as version
     * skew (its claims go with it; nobody is banned). */
    if (!shoal_codec_known(c->codec)) {
        char why[160];
        shoal_sched_req_failed(s->sched, now_ms(s), sp->id, r.chunk, false);
        snprintf(why, sizeof why, "CHUNK with codec %u, which this node does not know "
                 "(a newer shoal version?): closing, not banning", (unsigned)c->codec);
        LOG_W("release %s: peer %s answered the request for chunk %u with a %s", s->idhex,
              shoal_peer_name(sp->p), r.chunk, why);
        shoal_peer_bye(sp->p, why);
        return true;
    }
    mc = shoal_manifest_chunk(s->m, r.chunk);
    /* A compressed payload must declare the manifest's
     * length and be no bigger than the raw chunk. */
    if ((c->codec == SHOAL_CODEC_RAW ? c->payload.len != mc->len
                                     : c->raw_len != mc->len || c->payload.len > mc->len) ||
        memcmp(c->chunk_id, mc->id, 32) != 0) {
        char why[160];
        shoal_sched_req_failed(s->sched, now_ms(s), sp->id, r.chunk, false);
        snprintf(why, sizeof why, "answered request for chunk %u of %s with another chunk",
                 r.chunk, s->idhex);
        s->bad_chunks++;
        ban_peer(s, sp, SHOAL_SWARM_NO_CHUNK, why);
        return true;
    }
    j = calloc(1, sizeof *j);
    /* keep the frame's own buffer when the peer gives it */
    if (j && (j->base = shoal_peer_take_body(sp->p)) != NULL) {
        j->data = (uint8_t *)c->payload.p;
    } else if (j && (j->base = j->data = malloc(c->payload.len ? c->payload.len : 1))) {
        /* The payload lives in the frame buffer only during this callback. */
        memcpy(j->data, c->payload.p, c->payload.len);
    }
    if (!j || !j->data) {
        free(j);
        shoal_sched_req_failed(s->sched, now_ms(s), sp->id, r.chunk, true);
        return true;
    }
    j->codec = c->codec; /* decoded on the worker */
    j->plen = c->payload.len;
    j->w.data = j;
    j->s = s;
    j->peer_id = sp->id;
    j->plain = shoal_session_send_overhead(shoal_peer_session(sp->p)) == 0;
    pk = speer_pk(sp);
    if (pk) {
        memcpy(j->peer_pk, pk, 32);
        j->have_pk = true;
    }
    j->chunk = r.chunk;
    j->len = mc->len;
    j->sent_ms = r.sent_ms;
    if (uv_queue_work(s->cfg->loop, &j->w, verify_work, verify_done) != 0) {
        free(j->base);
        free(j);
        shoal_sched_req_failed(s->sched, now_ms(s), sp->id, r.chunk, true);
        return true;
    }
    s->pending++;
    s->storing++;
    return true;
}

/* ---- chunks a peer disputes (--- rot ---) ----
 *
 * Served chunks are not hashed again (the receiver does; hashing each here
 * would cost the seed about a second of CPU per GB). So a verified file
 * that changed on disk afterwards (a tool writing through the snapshot
 * symlink, bit rot) would go on being served, and every peer would ban us
 * for it, without our knowing. A peer that bans us names the chunk in its
 * BYE; we hash that one chunk again on a worker. If it fails, the file
 * changed: it is withheld (neither served nor advertised, nor handed to a
 * loader: shoal_store_file_suspect) while every chunk of it is hashed
 * again, then only the chunks that fail stay withheld, and they are taken
 * back from the store (shoal_store_take_back: out of our snapshot,
 * repaired in a copy, their verified bits cleared in the sidecar), so they
 * are missing again and fetched like
 * any other, and a restart does not serve them either. A chunk the store
 * cannot read starts the same scan. Until the file hashes right again the
 * release is not complete: trackers hear what we actually serve. A false
 * dispute is logged and nothing else. Disputes are budgeted (ROT_*) so
 * that a hostile peer cannot have us hash the store over and over.
 */

static bool bit_get(const uint8_t *b, uint32_t i) { return (b[i / 8] >> (i % 8)) & 1u; }
static void bit_put(uint8_t *b, uint32_t i, bool v)
{
    if (v)
        b[i / 8] |= (uint8_t)(1u << (i % 8));
    else
        b[i / 8] &= (uint8_t)~(1u << (i % 8));
}

/* True when chunk |chunk| must not be served: it, or the file it is in
 * while that is being scanned, changed on disk after it was verified. */
static bool rot_withheld(const struct shoal_swarm *s, uint32_t chunk)
{
    const struct shoal_mf_chunk *c;

    if (chunk >= s->nchunks)
        return false;
    if (bit_get(s->rot_bad, chunk))
        return true;
    c = shoal_manifest_chunk(s->m, chunk);
    return s->rot_file[c->file] == ROT_FILE_SCANNING;
}

/* Chunks (and their bytes) that the store holds and we serve: withheld
 * ones are not counted in what we announce. From one copy of the store's
 * bits, so that puts landing meanwhile (worker threads) cannot make the
 * withheld outnumber the held. */
static void rot_served(const struct shoal_swarm *s, uint32_t *n, uint64_t *bytes)
{
    size_t nb = ((size_t)s->nchunks + 7) / 8;
    uint8_t *held;

    if (!s->rot_err[0] || !(held = malloc(nb ? nb : 1))) {
        /* Nothing withheld (or no memory to count: the held ones). */
        *n = shoal_store_count(s->store);
        *bytes = shoal_store_bytes(s->store);
        return;
    }
    *n = 0;
    *bytes = 0;
    if (shoal_store_bitfield(s->store, held, nb) >= 0) {
        for (uint32_t i = 0; i < s->nchunks; i++) {
            /* The store's bitfield is most significant bit first. */
            if (!((held[i / 8] >> (7 - i % 8)) & 1u) || rot_withheld(s, i))
                continue;
            (*n)++;
            *bytes += shoal_manifest_chunk(s->m, i)->len;
        }
    }
    free(held);
}

/* What a tracker or a peer counts on changed outside of chunks arriving. */
static void rot_announce(struct shoal_swarm *s)
{
    if (s->hooks->on_withheld && !s->stopped)
        s->hooks->on_withheld(s->hooks->user, s);
}

/* Rewrites rot_err, the line `shoal status` shows, from the files' states:
 * the first file withheld or fetched again, and how many more there are;
 * "" when none. */
static void rot_status(struct shoal_swarm *s)
{
    uint32_t nf = shoal_manifest_nfiles(s->m), first = UINT32_MAX, more = 0;
    char tail[64] = "";

    for (uint32_t i = 0; i < nf; i++) {
        if (s->rot_file[i] == ROT_FILE_OK)
            continue;
        if (first == UINT32_MAX)
            first = i;
        else
            more++;
    }
    s->rot_err[0] = '\0';
    if (first == UINT32_MAX)
        return;
    const struct shoal_mf_file *f = shoal_manifest_file(s->m, first);
    const char *what = s->rot_why[first] == ROT_WHY_UNREADABLE ? "UNREADABLE ON DISK"
                                                              : "CORRUPT ON DISK";
    const char *how = s->rot_why[first] == ROT_WHY_UNREADABLE ? "could not be read"
                                                             : "changed after they were verified";
    uint32_t n = 0;
    if (more)
        snprintf(tail, sizeof tail, "; %u more file%s", more, more == 1 ? "" : "s");
    if (s->rot_why[first] == ROT_WHY_BLOCKED) {
        snprintf(s->rot_err, sizeof s->rot_err,
                 "BLOCKED ON DISK: %s: shoald cannot put it in place in %s (something that is "
                 "not shoal's where its partial file goes, or a snapshot entry it cannot "
                 "write; not fetched; see the log for the path and why, fix that, then "
                 "restart shoald or pull the release again%s)", f->path, s->cfg->cache_dir,
                 tail);
        return;
    }
    switch (s->rot_file[first]) {
    case ROT_FILE_SCANNING:
        snprintf(s->rot_err, sizeof s->rot_err,
                 "%s: %s (not served while its chunks are hashed again%s)", what, f->path, tail);
        break;
    case ROT_FILE_SCANNED:
    case ROT_FILE_KEPT:
        for (uint32_t k = 0; k < f->nchunks; k++)
            n += bit_get(s->rot_bad, f->first_chunk + k);
        if (s->rot_file[first] == ROT_FILE_KEPT && s->rot_kept_rv[first] == SHOAL_ENOSPC &&
            !(s->cfg->store_flags & SHOAL_STORE_MEMORY)) {
            snprintf(s->rot_err, sizeof s->rot_err,
                     "%s: %s: %u of %u chunks %s (not served; no room to repair it: free %llu "
                     "bytes in %s, then restart shoald with --verify-store%s)",
                     what, f->path, n, f->nchunks, how, (unsigned long long)f->size,
                     s->cfg->cache_dir, tail);
            break;
        }
        snprintf(s->rot_err, sizeof s->rot_err, "%s: %s: %u of %u chunks %s (not served; %s%s)",
                 what, f->path, n, f->nchunks, how,
                 s->rot_file[first] == ROT_FILE_SCANNED ? "to be fetched again"
                 : (s->cfg->store_flags & SHOAL_STORE_MEMORY)
                     ? "a memory store cannot fetch them again: drop the release and pull it "
                       "again"
                     : "restart shoald with --verify-store to repair",
                 tail);
        break;
    default:
        for (uint32_t k = 0; k < f->nchunks; k++)
            n += !shoal_store_has(s->store, f->first_chunk + k);
        snprintf(s->rot_err, sizeof s->rot_err,
                 "%s: %s: %u of %u chunks %s (fetching them again%s)", what, f->path, n,
                 f->nchunks, how, tail);
        break;
    }
}

/* Files found wrong at open whose repair could not start (no room for the
 * copy): withheld, as after a failed take-back, until a restart repairs
 * them; the release is not complete meanwhile. */
static void rot_open_withheld(struct shoal_swarm *s)
{
    for (uint32_t i = 0; i < shoal_manifest_nfiles(s->m); i++)
        if (!shoal_store_file_pending(s->store, i))
            rot_open_file(s, i);
    rot_status(s);
}

/* What opening the store (or hashing a file it found, found_done) said of
 * file |i|: a note for the log, or a file withheld. */
static void rot_open_file(struct shoal_swarm *s, uint32_t i)
{
    const struct shoal_mf_file *f = shoal_manifest_file(s->m, i);
    char err[512];
    int wrv;

    if (shoal_store_file_note(s->store, i, err, sizeof err))
        LOG_W("release %s: %s", s->idhex, err);
    wrv = shoal_store_file_withheld(s->store, i, err, sizeof err);
    if (wrv == 0)
        return;
    for (uint32_t k = 0; k < f->nchunks; k++)
        bit_put(s->rot_bad, f->first_chunk + k, true);
    s->rot_file[i] = ROT_FILE_KEPT;
    s->rot_kept_rv[i] = wrv;
    s->complete = false;
    if (wrv == SHOAL_EBADPATH && !shoal_store_file_done(s->store, i)) {
        /* Nowhere to put it: not fetched at all (the store would keep
         * none of it), the rest of the release is. */
        s->rot_why[i] = ROT_WHY_BLOCKED;
        for (uint32_t k = 0; s->sched && k < f->nchunks; k++)
            shoal_sched_chunk_obtained(s->sched, 0, f->first_chunk + k);
        LOG_E("release %s: %s is withheld: %s", s->idhex, f->path, err);
        return;
    }
    if (wrv == SHOAL_ENOSPC)
        LOG_E("release %s: %s does not match its sha256 and there is no room for the copy "
              "that repairs it (%s): not served; free %llu bytes in %s, then restart "
              "shoald with --verify-store", s->idhex, f->path, err,
              (unsigned long long)f->size, s->cfg->cache_dir);
    else
        LOG_E("release %s: %s does not match its sha256 and cannot be repaired (%s): not "
              "served; restart shoald with --verify-store once that is fixed", s->idhex,
              f->path, err);
}

/* One dispute being checked, one slice of a file scan, or taking bad
 * chunks back from the store. */
struct rot_job {
    uv_work_t w;
    struct shoal_swarm *s;
    struct rot_claim claim;    /* the dispute (scan: the one that began it) */
    bool scan;                 /* hashing every chunk of |file| */
    bool take;                 /* shoal_store_take_back of |list| */
    uint32_t file;
    bool refetch;              /* scan: of a file whose bad chunks were being
                                * fetched again (some are missing) */
    uint32_t next, end;        /* scan: chunks [next, end) of the release left */
    uint32_t nbad;             /* scan: chunks found changed so far */
    uint8_t *bad;              /* scan: bit per chunk of the file */
    uint32_t *list;            /* take: the |nbad| chunks */
    int rv;                    /* check: 0 right, SHOAL_EBADHASH, or a read error;
                                * take: shoal_store_take_back's */
};

static void rot_work(uv_work_t *w)
{
    struct rot_job *j = w->data;
    struct shoal_swarm *s = j->s;
    uint32_t maxlen = shoal_manifest_params(s->m)->max_size;
    uint8_t *buf, id[32];
    uint64_t done = 0;

    if (j->take) {
        j->rv = shoal_store_take_back(s->store, j->file, j->list, j->nbad);
        return;
    }
    buf = malloc(maxlen ? maxlen : 1);
    if (!buf) {
        j->rv = -ENOMEM;
        return;
    }
    if (!j->scan) {
        const struct shoal_mf_chunk *c = shoal_manifest_chunk(s->m, j->claim.chunk);
        int n = shoal_store_read_chunk(s->store, j->claim.chunk, buf, maxlen);
        if (n == (int)c->len) {
            shoal_chunk_id(id, buf, c->len);
            j->rv = memcmp(id, c->id, 32) == 0 ? 0 : SHOAL_EBADHASH;
        } else {
            j->rv = n < 0 ? n : -EIO;
        }
        goto out;
    }
    const struct shoal_mf_file *f = shoal_manifest_file(s->m, j->file);
    /* The file is bad now (shoal_store_file_suspect): the sidecar says so
     * from the scan's start, so that a restart meanwhile, even after a
     * crash, hashes it before trusting it. */
    if (j->next == f->first_chunk)
        (void)shoal_store_flush(s->store);
    while (j->next < j->end && done < ROT_SLICE) {
        const struct shoal_mf_chunk *c = shoal_manifest_chunk(s->m, j->next);
        int n = shoal_store_read_chunk(s->store, j->next, buf, maxlen);
        bool bad = true;
        if (n == (int)c->len) {
            shoal_chunk_id(id, buf, c->len);
            bad = memcmp(id, c->id, 32) != 0;
        } else if (n == SHOAL_ENOTFOUND) {
            bad = false; /* not held (the file is still filling): nothing to withhold */
        }
        if (bad) {
            bit_put(j->bad, j->next - f->first_chunk, true);
            j->nbad++;
        }
        done += c->len;
        j->next++;
    }
out:
    free(buf);
}

static void rot_next(struct shoal_swarm *s);
static void rot_done(uv_work_t *w, int status);

/* Where file |file| is, for the log: its snapshot path, else its path in
 * the release. */
static void rot_file_name(struct shoal_swarm *s, uint32_t file, char *out, size_t cap)
{
    if (shoal_store_file_path(s->store, file, out, cap) != 0)
        snprintf(out, cap, "%s", shoal_manifest_file(s->m, file)->path);
}

/* File |file| is suspect: withheld whole, from peers and loaders alike,
 * and the release no longer complete. */
static void rot_suspect(struct shoal_swarm *s, uint32_t file, int why)
{
    s->rot_file[file] = ROT_FILE_SCANNING;
    s->rot_why[file] = (uint8_t)why;
    s->rot_kept_rv[file] = 0; /* a new scan: what failed before is not known */
    shoal_store_file_suspect(s->store, file, true);
    s->complete = false;
    rot_status(s);
    rot_announce(s);
}

/* A scan ended before its last chunk (the node is stopping, no memory, no
 * worker): what it did not hash stays withheld with what it found bad. */
static void rot_scan_cut(struct shoal_swarm *s, struct rot_job *j)
{
    const struct shoal_mf_file *f = shoal_manifest_file(s->m, j->file);

    for (uint32_t k = 0; k < f->nchunks; k++) {
        uint32_t c = f->first_chunk + k;
        if ((j->bad && bit_get(j->bad, k)) || c >= j->next)
            bit_put(s->rot_bad, c, true);
    }
    s->rot_file[j->file] = ROT_FILE_KEPT;
    rot_status(s);
}

/* The bad chunks of a scanned file go back to missing (on a worker); |j|
 * is reused. False when that could not even start (they stay withheld). */
static bool rot_take_back(struct shoal_swarm *s, struct rot_job *j)
{
    const struct shoal_mf_file *f = shoal_manifest_file(s->m, j->file);
    uint32_t n = 0;

    j->list = malloc(sizeof *j->list * (j->nbad ? j->nbad : 1));
    if (!j->list)
        return false;
    for (uint32_t k = 0; k < f->nchunks && n < j->nbad; k++)
        if (bit_get(j->bad, k))
            j->list[n++] = f->first_chunk + k;
    j->nbad = n;
    j->scan = false;
    j->take = true;
    if (uv_queue_work(s->cfg->loop, &j->w, rot_work, rot_done) != 0)
        return false;
    s->pending++;
    s->rot_running = true;
    return true;
}

/* A take-back finished: its chunks are missing now (fetched again), or it
 * failed and they stay withheld. */
static void rot_taken(struct shoal_swarm *s, struct rot_job *j)
{
    const struct shoal_mf_file *f = shoal_manifest_file(s->m, j->file);
    char where[4096], err[512];
    uint32_t held = 0;

    rot_file_name(s, j->file, where, sizeof where);
    if (j->rv != 0) {
        s->rot_file[j->file] = ROT_FILE_KEPT;
        rot_status(s);
        if (j->rv == UV_ECANCELED || s->stopped) {
            /* Their bits are still set in the sidecar: the next start
             * trusts them unless it hashes the file (--verify-store), and
             * then a peer that gets one reports it again. */
            LOG_W("release %s: %s: shutting down before its %u bad chunks were taken back; "
                  "start shoald with --verify-store to have them fetched again", s->idhex,
                  where, j->nbad);
        } else if (s->cfg->store_flags & SHOAL_STORE_MEMORY) {
            LOG_E("release %s: %s: its %u bad chunks stay unserved: a memory store (--store "
                  "memory) cannot fetch chunks of a finished file again; drop the release and "
                  "pull it again to repair it", s->idhex, where, j->nbad);
        } else {
            shoal_store_last_error(s->store, err, sizeof err);
            s->rot_kept_rv[j->file] = j->rv;
            rot_status(s);
            if (j->rv == SHOAL_ENOSPC)
                LOG_E("release %s: %s: its %u bad chunks cannot be fetched again: no room for "
                      "the copy that repairs it (%s); they stay unserved; free %llu bytes in %s, "
                      "then restart shoald with --verify-store to repair it", s->idhex, where,
                      j->nbad, err[0] ? err : shoal_strerror(j->rv),
                      (unsigned long long)f->size, s->cfg->cache_dir);
            else
                LOG_E("release %s: %s: its %u bad chunks cannot be fetched again while it is "
                      "open (%s%s%s); they stay unserved; restart shoald with --verify-store to "
                      "repair it", s->idhex, where, j->nbad, shoal_strerror(j->rv),
                      err[0] ? ": " : "", err);
        }
        return;
    }
    for (uint32_t i = 0; i < j->nbad; i++) {
        bit_put(s->rot_bad, j->list[i], false);
        held += shoal_store_has(s->store, j->list[i]);
    }
    /* Taken back: those asked for, and any other chunk of the file that
     * could not be read while it was copied. */
    for (uint32_t k = 0; s->sched && k < f->nchunks; k++)
        if (!shoal_store_has(s->store, f->first_chunk + k))
            shoal_sched_chunk_lost(s->sched, now_ms(s), f->first_chunk + k);
    s->rot_file[j->file] = ROT_FILE_REFETCH;
    LOG_W("release %s: %s: fetching its %u bad chunks again (the file is out of the cache "
          "until they are in and it hashes right)", s->idhex, f->path, j->nbad - held);
    rot_status(s);
    rot_announce(s);
    if (!s->stopped)
        pump(s);
}

/* Files being fetched again that hash right now: served and handed to
 * loaders again (the store did that), and no longer reported. Also a file
 * whose chunks stayed withheld (KEPT) once it matches its sha256 (it was
 * being fetched again when a scan of it was cut short): a file is ready
 * again only when its whole sha256 matched, whatever was withheld of it. */
static void rot_repaired(struct shoal_swarm *s)
{
    bool any = false;

    for (uint32_t i = 0; s->rot_err[0] && i < shoal_manifest_nfiles(s->m); i++) {
        const struct shoal_mf_file *f = shoal_manifest_file(s->m, i);

        if ((s->rot_file[i] != ROT_FILE_REFETCH && s->rot_file[i] != ROT_FILE_KEPT) ||
            !shoal_store_file_ready(s->store, i))
            continue;
        s->rot_file[i] = ROT_FILE_OK;
        /* A chunk found unreadable meanwhile was read back whole by that
         * hash: served again. */
        for (uint32_t k = 0; k < f->nchunks; k++)
            bit_put(s->rot_bad, f->first_chunk + k, false);
        LOG_I("release %s: %s is whole again: its bad chunks were fetched again and it "
              "matches its sha256", s->idhex, shoal_manifest_file(s->m, i)->path);
        any = true;
    }
    if (any) {
        rot_status(s);
        rot_announce(s);
    }
}

static void rot_scan_done(struct shoal_swarm *s, struct rot_job *j)
{
    const struct shoal_mf_file *f = shoal_manifest_file(s->m, j->file);
    char where[4096];

    for (uint32_t k = 0; k < f->nchunks; k++)
        bit_put(s->rot_bad, f->first_chunk + k, bit_get(j->bad, k));
    s->rot_file[j->file] = ROT_FILE_SCANNED;
    /* While the file was withheld its chunks were refused "unknown", and
     * peers dropped our claims on them: announce the good ones again. */
    for (uint32_t k = 0; k < f->nchunks && !s->stopped; k++)
        if (!bit_get(j->bad, k) && shoal_store_has(s->store, f->first_chunk + k))
            send_have(s, f->first_chunk + k);
    rot_file_name(s, j->file, where, sizeof where);
    if (j->nbad == 0) {
        /* Cleared: a whole file is ready again, so loaders that asked for
         * it meanwhile get it now (the store calls on_ready); one whose bad
         * chunks are still being fetched again (refetch) stays out of the
         * cache and from loaders until its sha256 matches (the store). */
        if (j->refetch)
            LOG_W("release %s: %s hashes right in all the chunks it holds: serving them "
                  "again; the rest are still being fetched again", s->idhex, where);
        else
            LOG_W("release %s: %s hashes right again in all its %u chunks: serving it again",
                  s->idhex, where, f->nchunks);
        s->rot_file[j->file] = j->refetch ? ROT_FILE_REFETCH : ROT_FILE_OK;
        shoal_store_file_suspect(s->store, j->file, false);
        rot_status(s);
        rot_announce(s);
        check_complete(s);
        return;
    }
    LOG_E("release %s (%s@%s): %s: %u of its %u chunks %s; they are no longer served, the "
          "rest are", s->idhex, shoal_manifest_repo_id(s->m), shoal_manifest_commit(s->m),
          where, j->nbad, f->nchunks,
          s->rot_why[j->file] == ROT_WHY_UNREADABLE ? "cannot be read"
                                                     : "changed on disk after they were verified");
    rot_status(s);
    /* The blob may be another open release's too (the store dedups by
     * sha256): it reads the same bad bytes and must hear it, once, from
     * the release that found them. */
    if (!j->claim.told && s->hooks->on_blob_rot && !s->stopped &&
        !(s->cfg->store_flags & SHOAL_STORE_MEMORY))
        s->hooks->on_blob_rot(s->hooks->user, s, f->sha256);
}

/* Withholds all of file |file| and hashes every chunk of it, with |j|. */
static void rot_begin_scan(struct shoal_swarm *s, struct rot_job *j, uint32_t file, int why)
{
    const struct shoal_mf_file *f = shoal_manifest_file(s->m, file);

    j->bad = calloc(1, f->nchunks / 8 + 1);
    if (!j->bad)
        return; /* what is in rot_bad alone stays withheld */
    j->refetch = s->rot_file[file] == ROT_FILE_REFETCH;
    rot_suspect(s, file, why);
    j->scan = true;
    j->file = file;
    j->next = f->first_chunk;
    j->end = f->first_chunk + f->nchunks;
    j->nbad = 0;
}

/* The disputed chunk failed: the file changed on disk. Withhold all of it
 * and hash every chunk. */
static void rot_found(struct shoal_swarm *s, struct rot_job *j)
{
    const struct shoal_mf_chunk *c = shoal_manifest_chunk(s->m, j->claim.chunk);
    char where[4096];

    bit_put(s->rot_bad, j->claim.chunk, true);
    rot_file_name(s, c->file, where, sizeof where);
    LOG_E("release %s (%s@%s): cached file %s changed on disk after it was verified: chunk %u "
          "(offset %llu, %u bytes) no longer matches the manifest (peer %s banned this node "
          "for it); the file is not served until its chunks are hashed again, and the ones "
          "that fail are fetched again", s->idhex, shoal_manifest_repo_id(s->m),
          shoal_manifest_commit(s->m), where, j->claim.chunk, (unsigned long long)c->offset,
          c->len, j->claim.peer);
    if (s->rot_file[c->file] == ROT_FILE_SCANNING)
        return;
    rot_begin_scan(s, j, c->file, ROT_WHY_CHANGED);
    if (!j->scan) {
        /* No memory to scan: the chunk alone stays withheld, and the file
         * goes to no loader. */
        s->rot_file[c->file] = ROT_FILE_KEPT;
        s->rot_why[c->file] = ROT_WHY_CHANGED;
        shoal_store_file_suspect(s->store, c->file, true);
        s->complete = false;
        rot_status(s);
        rot_announce(s);
    }
}

static void rot_done(uv_work_t *w, int status)
{
    struct rot_job *j = w->data;
    struct shoal_swarm *s = j->s;
    bool again = false;

    s->pending--;
    s->rot_running = false;
    if (j->take) {
        if (status != 0)
            j->rv = status;
        rot_taken(s, j);
    } else if (j->scan && (s->stopped || status != 0 || j->rv == -ENOMEM)) {
        rot_scan_cut(s, j);
    } else if (s->stopped || status != 0) {
        /* a dispute not checked: nothing learnt */
    } else if (j->scan) {
        if (j->next < j->end) {
            again = true;
        } else {
            rot_scan_done(s, j);
            /* The chunks that failed go back to missing, to be fetched. */
            if (j->nbad > 0 && !s->stopped && rot_take_back(s, j))
                return;
            if (j->nbad > 0) { /* could not start: they stay withheld */
                s->rot_file[j->file] = ROT_FILE_KEPT;
                rot_status(s);
            }
        }
    } else if (j->rv == 0) {
        char hex[17];
        bit_put(s->rot_ok, j->claim.chunk, true);
        /* Not heard again for a while: the budget is not its to spend. */
        uint32_t slot = 0;
        for (uint32_t i = 1; i < ROT_LIARS; i++) {
            if (s->rot_liars[i].until_ms < s->rot_liars[slot].until_ms)
                slot = i;
        }
        memcpy(s->rot_liars[slot].pk, j->claim.pk, 32);
        s->rot_liars[slot].until_ms = now_ms(s) + ROT_LIAR_MS;
        shoal_hex(hex, j->claim.pk, 8);
        LOG_W("release %s: peer %s (node %s) banned this node for chunk %u, which it says "
              "failed its hash; our copy hashes right, so its claim is false", s->idhex,
              j->claim.peer, hex, j->claim.chunk);
    } else if (j->rv == SHOAL_EBADHASH) {
        rot_found(s, j);
        again = j->scan;
    } else {
        LOG_W("release %s: cannot read chunk %u again to check what peer %s said of it: %s",
              s->idhex, j->claim.chunk, j->claim.peer, shoal_strerror(j->rv));
    }
    if (again && uv_queue_work(s->cfg->loop, &j->w, rot_work, rot_done) == 0) {
        s->pending++;
        s->rot_running = true;
        return;
    }
    if (again) /* could not queue the rest */
        rot_scan_cut(s, j);
    free(j->bad);
    free(j->list);
    free(j);
    rot_next(s);
}

/* Starts the next queued dispute or scan if none is being worked on. */
static void rot_next(struct shoal_swarm *s)
{
    struct rot_job *j;

    if (s->rot_running || s->rot_nqueue == 0 || s->stopped)
        return;
    j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->w.data = j;
    j->s = s;
    j->claim = s->rot_queue[0];
    memmove(&s->rot_queue[0], &s->rot_queue[1], sizeof s->rot_queue[0] * --s->rot_nqueue);
    if (j->claim.scan) {
        /* A chunk that cannot be read: scan its file, unless that is under
         * way or done already. */
        uint32_t file = shoal_manifest_chunk(s->m, j->claim.chunk)->file;
        if (s->rot_file[file] != ROT_FILE_SCANNING)
            rot_begin_scan(s, j, file, j->claim.why);
        if (!j->scan) {
            if (s->rot_file[file] == ROT_FILE_SCANNED) {
                s->rot_file[file] = ROT_FILE_KEPT; /* no memory to scan it */
                rot_status(s);
            }
            free(j);
            rot_next(s);
            return;
        }
    } else if (rot_withheld(s, j->claim.chunk) || bit_get(s->rot_ok, j->claim.chunk)) {
        /* A dispute queued behind one that led to a scan of its file may
         * be settled already: not hashed (and logged, and scanned) twice. */
        free(j);
        rot_next(s);
        return;
    }
    if (uv_queue_work(s->cfg->loop, &j->w, rot_work, rot_done) != 0) {
        if (j->scan)
            rot_scan_cut(s, j);
        free(j->bad);
        free(j);
        return;
    }
    s->pending++;
    s->rot_running = true;
}

/* Chunk |chunk| could not be read for serving: it is withheld at once, and
 * its file scanned (then what fails is fetched again). */
static void rot_unreadable(struct shoal_swarm *s, uint32_t chunk)
{
    const struct shoal_mf_chunk *c = shoal_manifest_chunk(s->m, chunk);

    bit_put(s->rot_bad, chunk, true);
    if (s->rot_file[c->file] == ROT_FILE_OK) {
        s->rot_why[c->file] = ROT_WHY_UNREADABLE;
        s->rot_file[c->file] = ROT_FILE_SCANNED; /* the chunk alone, until the scan */
        shoal_store_file_suspect(s->store, c->file, true);
        s->complete = false;
        rot_status(s);
        rot_announce(s);
    }
    for (uint32_t i = 0; i < s->rot_nqueue; i++)
        if (s->rot_queue[i].scan &&
            shoal_manifest_chunk(s->m, s->rot_queue[i].chunk)->file == c->file)
            return;
    /* Also in a file being fetched again, or one whose bad chunks stayed:
     * the scan withholds what fails to read and has it fetched again
     * (rot_bad alone would withhold it for good). */
    if (s->rot_file[c->file] != ROT_FILE_SCANNING && s->rot_nqueue < ROT_QUEUE) {
        struct rot_claim *q = &s->rot_queue[s->rot_nqueue++];
        memset(q, 0, sizeof *q);
        q->chunk = chunk;
        q->scan = true;
        q->why = ROT_WHY_UNREADABLE;
        snprintf(q->peer, sizeof q->peer, "this node");
        rot_next(s);
    } else if (s->rot_file[c->file] == ROT_FILE_SCANNED) {
        s->rot_file[c->file] = ROT_FILE_KEPT; /* no room to queue its scan */
        rot_status(s);
    }
}

void shoal_swarm_blob_suspect(struct shoal_swarm *s, const uint8_t sha256[32])
{
    uint32_t nf = shoal_manifest_nfiles(s->m);

    if (s->stopped || (s->cfg->store_flags & SHOAL_STORE_MEMORY))
        return;
    for (uint32_t i = 0; i < nf; i++) {
        const struct shoal_mf_file *f = shoal_manifest_file(s->m, i);
        struct rot_claim *q;

        /* Only a file read from the published blob shares its bytes (one
         * still filling has a partial file of its own); one already being
         * scanned or repaired needs no second scan. */
        if (memcmp(f->sha256, sha256, 32) != 0 || f->nchunks == 0 ||
            s->rot_file[i] != ROT_FILE_OK || !shoal_store_file_done(s->store, i))
            continue;
        LOG_E("release %s (%s@%s): %s: another release sharing its blob (sha256 %02x%02x%02x"
              "%02x...) found it changed on disk: not served until its chunks are hashed "
              "again; the ones that fail are fetched again", s->idhex,
              shoal_manifest_repo_id(s->m), shoal_manifest_commit(s->m), f->path, sha256[0],
              sha256[1], sha256[2], sha256[3]);
        /* Withheld whole at once, as it is what the other release read. */
        for (uint32_t k = 0; k < f->nchunks; k++)
            bit_put(s->rot_bad, f->first_chunk + k, true);
        s->rot_why[i] = ROT_WHY_CHANGED;
        s->rot_file[i] = ROT_FILE_SCANNED;
        shoal_store_file_suspect(s->store, i, true);
        s->complete = false;
        if (s->rot_nqueue < ROT_QUEUE) {
            q = &s->rot_queue[s->rot_nqueue++];
            memset(q, 0, sizeof *q);
            q->chunk = f->first_chunk;
            q->scan = true;
            q->told = true;
            q->why = ROT_WHY_CHANGED;
            snprintf(q->peer, sizeof q->peer, "another release");
        } else {
            s->rot_file[i] = ROT_FILE_KEPT; /* no room to queue its scan */
        }
        rot_status(s);
        rot_announce(s);
    }
    rot_next(s);
}

void shoal_swarm_chunk_disputed(struct shoal_swarm *s, struct shoal_peer *p, uint32_t chunk)
{
    const struct shoal_session *ss = shoal_peer_session(p);
    const uint8_t *pk = ss ? shoal_session_peer_pk(ss) : NULL;
    uint64_t now = now_ms(s);
    const char *why = NULL;

    if (!pk || s->stopped)
        return;
    if (chunk >= s->nchunks || !shoal_store_has(s->store, chunk)) {
        LOG_W("release %s: peer %s banned this node for chunk %u, which this node does not "
              "hold: not acted on", s->idhex, shoal_peer_name(p), chunk);
        return;
    }
    /* Known already, or checked already: nothing to learn. */
    if (rot_withheld(s, chunk) || bit_get(s->rot_ok, chunk))
        return;
    for (uint32_t i = 0; i < s->rot_nqueue; i++) {
        if (s->rot_queue[i].chunk == chunk)
            return;
    }
    for (uint32_t i = 0; i < ROT_LIARS && !why; i++) {
        if (s->rot_liars[i].until_ms > now && memcmp(s->rot_liars[i].pk, pk, 32) == 0)
            why = "its last such claim was false";
    }
    if (now - s->rot_window_ms >= ROT_WINDOW_MS || s->rot_window_ms == 0) {
        s->rot_window_ms = now;
        s->rot_window_n = 0;
    }
    if (!why && s->rot_window_n >= ROT_BUDGET)
        why = "too many such claims this minute";
    if (!why && s->rot_nqueue >= ROT_QUEUE)
        why = "too many such claims waiting";
    if (why) {
        if (now - s->rot_refused_log_ms >= 10000 || s->rot_refused_log_ms == 0) {
            s->rot_refused_log_ms = now;
            LOG_W("release %s: peer %s banned this node for chunk %u, which it says failed "
                  "its hash; not checked: %s", s->idhex, shoal_peer_name(p), chunk, why);
        }
        return;
    }
    s->rot_window_n++;
    struct rot_claim *c = &s->rot_queue[s->rot_nqueue++];
    c->chunk = chunk;
    memcpy(c->pk, pk, 32);
    snprintf(c->peer, sizeof c->peer, "%s", shoal_peer_name(p));
    LOG_W("release %s: peer %s banned this node for chunk %u, which it says failed its hash: "
          "hashing our copy again", s->idhex, shoal_peer_name(p), chunk);
    rot_next(s);
}

const char *shoal_swarm_disk_error(const struct shoal_swarm *s)
{
    return s->rot_err;
}

/* ---- serving chunks ---- */

static void serve_work(uv_work_t *w)
{
    struct serve_job *j = w->data;
    const struct shoal_mf_chunk *c = shoal_manifest_chunk(j->s->m, j->chunk);

    /* room for the frame header and the AEAD tag around the
     * bytes, so the peer seals in place (shoal_peer_send_chunk_buf). */
    j->buf = malloc(SHOAL_PEER_CHUNK_HEADROOM + (size_t)c->len + SHOAL_PEER_CHUNK_TAILROOM);
    if (!j->buf) {
        j->rv = -ENOMEM;
        return;
    }
    j->rv = shoal_store_read_chunk(j->s->store, j->chunk, j->buf + SHOAL_PEER_CHUNK_HEADROOM,
                                   c->len);
    /* Compress here, off the loop; the probe inside
     * makes weights that do not compress cheap to skip. Not when corrupting
     * uploads (testing): the bad bytes must reach the peer's hash check. */
    if (j->rv >= 0 && j->compress &&
        shoal_codec_compress_min(j->buf + SHOAL_PEER_CHUNK_HEADROOM, c->len,
                                 j->s->cfg->compress_level,
                                 shoal_codec_flags_for_level(j->s->cfg->compress_level),
                                 j->remote ? SHOAL_CODEC_MIN_SAVING_PCT
                                            : SHOAL_CODEC_LOCAL_SAVING_PCT,
                                 &j->payload, &j->plen, &j->codec) != 0)
        j->codec = SHOAL_CODEC_RAW; /* no memory to compress: send it raw */
}

static void send_reject(struct speer *sp, uint32_t req_id, uint8_t reason, uint32_t retry_ms);

/* Upload slots (SHOAL_UPLOAD_SLOTS_DEFAULT): a peer takes one while any of
 * its chunks is being read for it or is still in its write queue. */
static void chunk_queued(struct speer *sp, uint32_t req_id, uint32_t chunk)
{
    sp->sent_until = shoal_peer_tx_bytes(sp->p) + shoal_peer_queued(sp->p);
    sp->queued[sp->queued_head].req_id = req_id;
    sp->queued[sp->queued_head].chunk = chunk;
    sp->queued_head = (sp->queued_head + 1) % QUEUED_RING;
}

/* |sp| cancelled request |req_id|: if we queued its chunk and none of it
 * is on its way yet, it is taken back, and no longer counted as sent.
 * True when the request was ours. */
static bool chunk_cancelled(struct shoal_swarm *s, struct speer *sp, uint32_t req_id)
{
    for (uint32_t i = 0; i < QUEUED_RING; i++) {
        if (sp->queued[i].req_id != req_id || sp->queued[i].chunk == UINT32_MAX)
            continue;
        const struct shoal_mf_chunk *c = shoal_manifest_chunk(s->m, sp->queued[i].chunk);
        size_t n = shoal_peer_withdraw_chunk(sp->p, req_id);
        sp->queued[i].chunk = UINT32_MAX;
        if (n > 0) {
            /* Taken back: no CHUNK answers it now, so a REJECT does (the
             * requester counts answers: shoal_swarm_on_msg's CANCEL). */
            send_reject(sp, req_id, SHOAL_REJECT_UNKNOWN, 0);
            s->tx_bytes -= c->len;
            s->tx_wire_payload -= n;
            s->withdrawn_bytes += c->len;
            /* Its upload slot is free once what is left is out. */
            uint64_t out = shoal_peer_tx_bytes(sp->p) + shoal_peer_queued(sp->p);
            if (sp->sent_until > out)
                sp->sent_until = out;
        }
        return true;
    }
    return false;
}

static bool uploading_to(const struct speer *sp)
{
    return sp->serving > 0 || shoal_peer_tx_bytes(sp->p) < sp->sent_until;
}

/* True when a request from |sp| must be told busy: every slot is taken by
 * other peers (shoal_sched_upload_busy). Counted on demand: a release has
 * at most max-peers peers, and this runs once per request. */
static bool slots_full(const struct shoal_swarm *s, const struct speer *sp)
{
    uint32_t n = 0, least = UINT32_MAX;
    if (s->cfg->upload_slots == 0 || uploading_to(sp) || !s->sched)
        return false;
    for (uint32_t i = 0; i < s->npeers; i++) {
        if (!uploading_to(s->peers[i]))
            continue;
        uint32_t h = shoal_sched_peer_have_count(s->sched, s->peers[i]->id);
        n++;
        least = h < least ? h : least;
    }
    return shoal_sched_upload_busy(n, s->cfg->upload_slots,
                                   shoal_sched_peer_have_count(s->sched, sp->id) < least);
}

/* Every REQUEST gets a CHUNK or this: a requester left without an answer
 * waits a whole request time-out. It goes out even when the peer's queue
 * is full (shoal_peer_send_reject), which is when busy is the answer. */
static void send_reject(struct speer *sp, uint32_t req_id, uint8_t reason, uint32_t retry_ms)
{
    (void)shoal_peer_send_reject(sp->p, req_id, reason, retry_ms);
}

/* The CHUNK answering |req_id| could not be queued (|rv|): the requester
 * is told so. Busy when the queue is full: while the node-wide queue
 * budget is spent (peers that never read hold it) this peer's share may
 * hold only a chunk or two, and the race with other peers' queues is not
 * settled when the request is taken. A closing peer needs no answer. */
static void chunk_unsent(struct speer *sp, uint32_t req_id, int rv)
{
    if (rv == SHOAL_EBUSY || rv == -ENOMEM)
        send_reject(sp, req_id, SHOAL_REJECT_BUSY, 50);
    else if (rv != -EPIPE)
        send_reject(sp, req_id, SHOAL_REJECT_UNKNOWN, 0);
}

/* Counts a probe of a chunk of |file| for a peer |remote| or on this host
 * that chose |raw|. Missing the lower remote bar misses the local one too. */
static void note_probe(struct shoal_swarm *s, uint32_t file, bool remote, bool raw)
{
    uint8_t *run = s->raw_run + 2 * (size_t)file;

    if (!raw) {
        run[remote] = 0;
        return;
    }
    if (run[remote] < RAW_RUN_SKIP)
        run[remote]++;
    if (remote && run[0] < RAW_RUN_SKIP)
        run[0]++;
}

/* The CHUNK answering request |req_id| with |c|'s bytes as stored. */
static void raw_chunk_msg(struct shoal_msg_chunk *cm, uint32_t req_id,
                          const struct shoal_mf_chunk *c)
{
    memset(cm, 0, sizeof *cm);
    cm->req_id = req_id;
    memcpy(cm->chunk_id, c->id, 32);
    cm->codec = SHOAL_CODEC_RAW;
    cm->raw_len = c->len;
    cm->payload.len = c->len;
}

/*
 * Sends chunk |c| to |sp| straight from the store's page cache when the
 * session allows it and the bytes are all cached: no read into a buffer,
 * no copy into the socket. Not to a peer on this host: there the receiver
 * then copies the bytes out of our page cache, from memory, where the
 * usual read and send leave them in the cache the two processes share;
 * measured on loopback, the receiver (also the one that hashes) spends
 * about as much more as we save. True when it is answered (sent, or
 * rejected when it could not be queued).
 */
static bool serve_from_file(struct shoal_swarm *s, struct speer *sp,
                            const struct shoal_msg_request *r,
                            const struct shoal_mf_chunk *c)
{
    struct shoal_msg_chunk cm;
    uint64_t off;
    int fd;

    if (c->len < SENDFILE_MIN || (shoal_peer_local(sp->p) && !s->cfg->sendfile_local) ||
        !shoal_peer_can_sendfile(sp->p) ||
        shoal_store_chunk_file(s->store, r->chunk_index, &fd, &off) != 0)
        return false;
    raw_chunk_msg(&cm, r->req_id, c);
    int rv = shoal_peer_send_chunk_file(sp->p, &cm, fd, off);
    if (rv == 0) {
        s->tx_bytes += c->len;
        s->tx_wire_payload += c->len;
        chunk_queued(sp, r->req_id, r->chunk_index);
    } else {
        chunk_unsent(sp, r->req_id, rv);
    }
    return true;
}

static void serve_done(uv_work_t *w, int status)
{
    struct serve_job *j = w->data, **pp;
    struct shoal_swarm *s = j->s;
    struct speer *sp = find_peer(s, j->peer_id);
    const struct shoal_mf_chunk *c = shoal_manifest_chunk(s->m, j->chunk);
    struct shoal_msg_chunk cm;

    s->pending--;
    for (pp = &s->serving; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    }
    if (sp) {
        sp->serving--;
        sp->serving_bytes -= c->len;
    }
    if (!sp || j->cancelled || s->stopped) {
        /* Cancelled: answered then (or the peer is gone). Stopped (the
         * daemon is shutting down): answered all the same. */
        if (sp && !j->cancelled)
            send_reject(sp, j->req_id, SHOAL_REJECT_SHUTDOWN, 0);
        free(j->buf);
        free(j->payload);
    } else if (status != 0 || j->rv < 0) {
        free(j->buf);
        free(j->payload);
        /* a chunk the store cannot read (the cached file cut
         * short or gone) is withheld like one that changed on disk: not
         * served again, so a peer asking for it gets "unknown" at once,
         * not another failed read, nor offered; said once per file. No
         * memory is not the disk's fault: that peer is told busy. */
        int err = status ? status : j->rv;
        if (err == -ENOMEM) {
            send_reject(sp, j->req_id, SHOAL_REJECT_BUSY, 100);
            free(j);
            return;
        }
        /* No longer held: taken back (found changed on disk) between the
         * request and the read. Nothing wrong with the disk. */
        if (err == SHOAL_ENOTFOUND) {
            send_reject(sp, j->req_id, SHOAL_REJECT_UNKNOWN, 0);
            free(j);
            return;
        }
        if (!bit_get(s->rot_bad, j->chunk)) {
            const struct shoal_mf_file *f = shoal_manifest_file(s->m, c->file);
            bool first = s->rot_file[c->file] == ROT_FILE_OK;
            if (first) {
                char where[4096];
                rot_file_name(s, c->file, where, sizeof where);
                LOG_E("release %s: cannot read chunk %u of %s from the store: %s; no longer "
                      "serving the chunks of this file that fail to read (was the cached file "
                      "cut short or removed?); hashing all of %s again and fetching again "
                      "what fails", s->idhex, j->chunk, where, shoal_strerror(err), f->path);
            } else {
                LOG_D("release %s: chunk %u unreadable too", s->idhex, j->chunk);
            }
            rot_unreadable(s, j->chunk);
        }
        send_reject(sp, j->req_id, SHOAL_REJECT_UNKNOWN, 0);
    } else {
        if (s->cfg->corrupt_uploads)
            j->buf[SHOAL_PEER_CHUNK_HEADROOM + c->len / 2] ^= 0x5a;
        raw_chunk_msg(&cm, j->req_id, c);
        if (j->compress)
            note_probe(s, c->file, j->remote,
                       j->codec == SHOAL_CODEC_RAW);
        /* codec */
        if (j->codec != SHOAL_CODEC_RAW) {
            cm.codec = j->codec;
            cm.payload.len = (uint32_t)j->plen;
            free(j->buf);
            j->buf = NULL;
        }
        /* raw bytes go out of the read buffer itself */
        int rv = j->buf ? shoal_peer_send_chunk_buf(sp->p, &cm, j->buf)
                        : shoal_peer_send_chunk(sp->p, &cm, j->payload);
        if (rv == 0) {
            s->tx_bytes += c->len;
            s->tx_wire_payload += cm.payload.len;
            chunk_queued(sp, j->req_id, j->chunk);
        } else {
            chunk_unsent(sp, j->req_id, rv);
        }
        /* Testing: a malicious node that leaves before the verdict. It
         * says BYE and lets the other side close: closing here with its
         * requests unread would reset the connection, and the bad chunk
         * would never be read. */
        if (s->cfg->corrupt_hangup && !sp->said_bye) {
            struct shoal_msg bye;
            memset(&bye, 0, sizeof bye);
            bye.type = SHOAL_MSG_BYE;
            bye.u.bye.text.p = "testing: hanging up after a corrupt chunk";
            bye.u.bye.text.len = (uint32_t)strlen(bye.u.bye.text.p);
            (void)shoal_peer_send(sp->p, &bye);
            sp->said_bye = true;
        }
    }
    free(j);
}

static void handle_request(struct shoal_swarm *s, struct speer *sp,
                           const struct shoal_msg_request *r)
{
    const struct shoal_mf_chunk *c = shoal_manifest_chunk(s->m, r->chunk_index);
    uint32_t cap = s->cfg->serve_per_peer ? s->cfg->serve_per_peer : 16;
    struct serve_job *j;
    bool remote, compress;

    /* nor what changed on disk or could not be read: not even
     * read again */
    if (!c || memcmp(c->id, r->chunk_id, 32) != 0 || !shoal_store_has(s->store, r->chunk_index) ||
        rot_withheld(s, r->chunk_index)) {
        send_reject(sp, r->req_id, SHOAL_REJECT_UNKNOWN, 0);
        return;
    }
    if (s->stopped) {
        send_reject(sp, r->req_id, SHOAL_REJECT_SHUTDOWN, 0);
        return;
    }
    /* The chunks being read for it enter its queue first: past what its
     * queue may hold then (its share of the node-wide budget while that is
     * spent can be a chunk or two), this one would be read for nothing
     * and told busy after all. With none ahead, a chunk always goes. */
    if (sp->serving >= cap || shoal_peer_queued(sp->p) > (32u << 20) ||
        !shoal_peer_room(sp->p, sp->serving_bytes, sp->serving)) {
        send_reject(sp, r->req_id, SHOAL_REJECT_BUSY, 50);
        return;
    }
    if (slots_full(s, sp)) {
        s->busy_slots++;
        send_reject(sp, r->req_id, SHOAL_REJECT_BUSY, 10);
        return;
    }
    /* what a probe would send raw goes out without one, and on a
     * plain session without a read either. Not when corrupting uploads
     * (testing): the bad bytes must reach the peer's hash check. */
    remote = !shoal_peer_local(sp->p);
    compress = s->cfg->compress_level > 0 && !s->cfg->corrupt_uploads &&
               s->raw_run[2 * (size_t)c->file + remote] < RAW_RUN_SKIP;
    if (!compress && !s->cfg->corrupt_uploads && serve_from_file(s, sp, r, c))
        return;
    j = calloc(1, sizeof *j);
    if (!j) {
        send_reject(sp, r->req_id, SHOAL_REJECT_BUSY, 100);
        return;
    }
    j->w.data = j;
    j->s = s;
    j->peer_id = sp->id;
    j->req_id = r->req_id;
    j->chunk = r->chunk_index;
    j->compress = compress;
    /* on this host a byte costs a memcpy: compress only what
     * halves (text), never weights. */
    j->remote = remote;
    if (uv_queue_work(s->cfg->loop, &j->w, serve_work, serve_done) != 0) {
        free(j);
        send_reject(sp, r->req_id, SHOAL_REJECT_BUSY, 100);
        return;
    }
    j->next = s->serving;
    s->serving = j;
    sp->serving++;
    sp->serving_bytes += c->len;
    s->pending++;
}

/* ---- origin: leases and fetches ----
 *
 * The scheduler asks for a lease when some missing chunk has no holder
 * among our peers; the owner routes it to a tracker (or says to go without
 * one). A granted span's orphans come back as ORIGIN_FETCH runs: each run
 * is cut at file boundaries and fetched as one ranged request per file;
 * every chunk is handed to a worker to be verified and stored as soon as
 * its last byte is in, and a run that fails marks its missing chunks so
 * that LEASE_DONE does not claim them (the tracker then re-grants them).
 */

#define LEASE_LOCAL UINT32_MAX

/* One ranged origin request: chunks [first, first+count) of one file. */
struct ofetch {
    struct shoal_swarm *s;
    struct ofetch *next;      /* in s->ofetches */
    uint32_t first, count;
    uint32_t queued;          /* chunks from |first| handed to workers */
    uint64_t base, len;       /* file span */
    uint64_t got;             /* bytes in, from |base| (delivered in order) */
    uint8_t *buf;
    unsigned refs;            /* the fetch itself + verify jobs */
    bool fetching;
};

struct ojob {
    uv_work_t w;
    struct ofetch *of;
    uint32_t chunk;
    const uint8_t *data;      /* in of->buf */
    uint32_t len;
    bool dup;
    int rv;
};

/* Kept for a chunk of a lease we hold, until that lease's LEASE_DONE runs
 * or its end; a chunk of no lease (given back) has no report to stay out
 * of, and a mark would stay for a later lease of it. */
static void origin_mark_failed(struct shoal_swarm *s, uint32_t c)
{
    for (size_t i = 0; i < sizeof s->leases / sizeof s->leases[0]; i++) {
        const struct slease *l = &s->leases[i];
        if (l->used && c >= l->first && c - l->first < l->count) {
            s->origin_failed[c / 8] |= (uint8_t)(1u << (c % 8));
            return;
        }
    }
}

static bool origin_take_failed(struct shoal_swarm *s, uint32_t c)
{
    bool f = s->origin_failed[c / 8] & (1u << (c % 8));
    s->origin_failed[c / 8] &= (uint8_t)~(1u << (c % 8));
    return f;
}

static void note_first_chunk(struct shoal_swarm *s)
{
    if (s->got_first)
        return;
    s->got_first = true;
    if (s->hooks->on_first_chunk && !s->stopped)
        s->hooks->on_first_chunk(s->hooks->user, s);
}

static void ofetch_unref(struct ofetch *of)
{
    struct ofetch **pp;

    if (--of->refs > 0)
        return;
    for (pp = &of->s->ofetches; *pp; pp = &(*pp)->next) {
        if (*pp == of) {
            *pp = of->next;
            break;
        }
    }
    free(of->buf);
    free(of);
}

/* The hub is freed before the swarm (its callbacks never come after), but
 * fetches it had under way are still listed here. */
static void origin_free_all(struct shoal_swarm *s)
{
    while (s->ofetches) {
        struct ofetch *of = s->ofetches;
        s->ofetches = of->next;
        free(of->buf);
        free(of);
    }
    free(s->origin_failed);
}

/* The origin failed us (wrong bytes, bytes that could not be stored, a
 * fetch the hub gave up on or refused at once): hold new leases back. The
 * hub's retries pace one fetch; this paces fetching the span again, which
 * otherwise followed each failure at once. A failure while a hold runs
 * came from a fetch started before it and does not double it: the hold
 * doubles with each try made after one. */
static void origin_hold(struct shoal_swarm *s)
{
    uint64_t now = now_ms(s);
    if (now < s->origin_hold_until)
        return;
    uint32_t n = s->origin_fails < 8 ? s->origin_fails : 7;
    uint64_t hold = 500ull << n; /* 0.5 s, doubling to 60 s */

    s->origin_fails++;
    s->origin_hold_until = now + (hold < 60000 ? hold : 60000);
}

static void origin_chunk_failed(struct shoal_swarm *s, uint32_t c);

/* The origin refused this node (401/403, or a certificate this node does
 * not trust; |msg| says why; origin_hold has
 * just set the hold): it would refuse every span of the release, and the
 * tracker leases this node holds would keep their chunks from nodes it
 * does serve until they expired. Gives them back; while the hold lasts,
 * fetches of what is left of leases granted before are not tried. */
static void origin_refused(struct shoal_swarm *s, const char *msg)
{
    uint64_t now = now_ms(s);
    uint32_t n = 0, ntrk = 0, trks[sizeof s->leases / sizeof s->leases[0]];

    s->origin_refused_until = s->origin_hold_until;
    for (size_t i = 0; i < sizeof s->leases / sizeof s->leases[0]; i++) {
        struct slease *l = &s->leases[i];
        uint32_t k = 0;
        if (!l->used || l->trk == LEASE_LOCAL)
            continue;
        l->used = false;
        /* The scheduler lets it go too: else its chunks under our fetches
         * were asked of no peer until each fetch failed in turn, its slot
         * stayed taken, and a grant of the same span since was taken for
         * this one confirmed (SHOAL_SCHED_LEASE_HELD) and never fetched. */
        (void)shoal_sched_lease_drop(s->sched, now, l->first, l->count);
        for (uint32_t c = l->first; c < l->first + l->count; c++)
            (void)origin_take_failed(s, c);
        n++;
        while (k < ntrk && trks[k] != l->trk)
            k++;
        if (k == ntrk)
            trks[ntrk++] = l->trk;
    }
    if (n == 0)
        return;
    for (uint32_t k = 0; k < ntrk && s->hooks->on_lease_give_back; k++)
        s->hooks->on_lease_give_back(s->hooks->user, s, trks[k]);
    s->given_back += n;
    if (s->given_back_logged_ms && now - s->given_back_logged_ms < ORIGIN_FAIL_LOG_MS)
        return;
    LOG_W("release %s: the origin refuses this node (%s): gave back %u origin lease(s) so "
          "that nodes the origin serves fetch them (%llu since the release opened); peers "
          "still serve it", s->idhex, msg ? msg : "HTTP 401/403", n,
          (unsigned long long)s->given_back);
    s->given_back_logged_ms = now ? now : 1;
}

static void origin_chunk_failed(struct shoal_swarm *s, uint32_t c)
{
    origin_mark_failed(s, c);
    shoal_sched_origin_done(s->sched, now_ms(s), c, false);
}

static void ojob_work(uv_work_t *w)
{
    struct ojob *j = w->data;
    struct shoal_store *st = j->of->s->store;

    bool first = false;
    j->rv = shoal_store_put_chunk_first(st, j->chunk, j->data, j->len, &first);
    j->dup = !first;
}

static void ojob_done(uv_work_t *w, int status)
{
    struct ojob *j = w->data;
    struct ofetch *of = j->of;
    struct shoal_swarm *s = of->s;
    int rv = status ? status : j->rv;

    s->pending--;
    s->storing--;
    if (rv == 0) {
        if (j->dup) {
            s->dup_bytes += j->len;
        } else {
            s->origin_bytes += j->len;
            s->origin_fails = 0;
            note_first_chunk(s);
        }
        shoal_sched_origin_done(s->sched, now_ms(s), j->chunk, true);
        if (!s->stopped)
            send_have(s, j->chunk);
        check_complete(s);
    } else {
        char err[512] = "";
        if (rv == SHOAL_EBADHASH)
            snprintf(err, sizeof err, "the origin's bytes do not match the manifest");
        else
            shoal_store_last_error(s->store, err, sizeof err);
        LOG_E("release %s: chunk %u from the origin not stored: %s (%s)", s->idhex, j->chunk,
              shoal_strerror(rv), err);
        if (rv == SHOAL_EBADHASH) { /* for status */
            s->bad_origin_n = s->bad_origin_chunk == j->chunk ? s->bad_origin_n + 1 : 1;
            s->bad_origin_chunk = j->chunk;
        }
        origin_hold(s);
        origin_chunk_failed(s, j->chunk);
    }
    free(j);
    ofetch_unref(of);
    check_complete(s);
    if (!s->stopped)
        pump(s);
}

/* Hands every chunk of |of| whose bytes are all in to a worker. */
static void ofetch_dispatch(struct ofetch *of)
{
    struct shoal_swarm *s = of->s;

    while (of->queued < of->count) {
        uint32_t c = of->first + of->queued;
        const struct shoal_mf_chunk *mc = shoal_manifest_chunk(s->m, c);
        uint64_t rel = mc->offset - of->base;
        struct ojob *j;

        if (rel + mc->len > of->got)
            break;
        of->queued++;
        j = calloc(1, sizeof *j);
        if (!j) {
            origin_chunk_failed(s, c);
            continue;
        }
        j->w.data = j;
        j->of = of;
        j->chunk = c;
        j->data = of->buf + rel;
        j->len = mc->len;
        if (uv_queue_work(s->cfg->loop, &j->w, ojob_work, ojob_done) != 0) {
            free(j);
            origin_chunk_failed(s, c);
            continue;
        }
        of->refs++;
        s->pending++;
        s->storing++;
    }
}

static int ofetch_data(void *user, uint64_t off, const uint8_t *p, size_t n)
{
    struct ofetch *of = user;

    /* Withdrawn: nobody wants these bytes, and the swarm waits for its
     * fetches to end before it is freed. */
    if (of->s->stopped)
        return -ECANCELED;

    if (off < of->base || off - of->base > of->len || n > of->len - (off - of->base))
        return SHOAL_EPROTO;
    memcpy(of->buf + (off - of->base), p, n);
    if (off - of->base + n > of->got)
        of->got = off - of->base + n;
    ofetch_dispatch(of);
    return 0;
}

static void ofetch_done(void *user, int status, const char *msg)
{
    struct ofetch *of = user;
    struct shoal_swarm *s = of->s;

    of->fetching = false;
    if (status == -ECANCELED && s->stopped) {
        while (of->queued < of->count)
            origin_chunk_failed(s, of->first + of->queued++);
    } else if (status != 0 || of->queued < of->count) {
        uint64_t now = now_ms(s);
        if (!s->ofail_logged_ms || now - s->ofail_logged_ms >= ORIGIN_FAIL_LOG_MS) {
            char more[64] = "";
            if (s->ofail_quiet)
                snprintf(more, sizeof more, " (and %u more failed since the last such line)",
                         s->ofail_quiet);
            LOG_W("release %s: origin fetch of chunks %u..%u failed%s: %s", s->idhex, of->first,
                  of->first + of->count - 1, more, status ? msg : "short answer");
            s->ofail_logged_ms = now ? now : 1;
            s->ofail_quiet = 0;
        } else {
            s->ofail_quiet++;
            LOG_D("release %s: origin fetch of chunks %u..%u failed: %s", s->idhex, of->first,
                  of->first + of->count - 1, status ? msg : "short answer");
        }
        /* Asked again at once, an origin answers the same: one that
         * refuses (an untrusted certificate, 401/403/404), breaks the
         * protocol (ignores Range, a bad redirect) or kept failing through
         * the hub's retries. */
        origin_hold(s);
        if (status == SHOAL_EPERM || status == SHOAL_EUNTRUSTED)
            origin_refused(s, msg);
        if ((status == SHOAL_ENOTFOUND || status == SHOAL_EPROTO) && msg) {
            /* An answer, so the origin is not "failing": without this the
             * pull would sit at its percentage with no reason shown. */
            s->origin_refused_chunk = of->first;
            snprintf(s->origin_refused_err, sizeof s->origin_refused_err,
                     "origin %s: %s%s", shoal_hub_endpoint(s->cfg->hub), msg,
                     status == SHOAL_ENOTFOUND ? " (not on the gateway? asked again later)"
                                               : " (asked again later)");
        }
        while (of->queued < of->count)
            origin_chunk_failed(s, of->first + of->queued++);
    }
    ofetch_unref(of);
    if (!s->stopped)
        pump(s);
}

static void origin_fetch_run(struct shoal_swarm *s, uint32_t first, uint32_t count)
{
    const struct shoal_mf_chunk *c0 = shoal_manifest_chunk(s->m, first);
    const struct shoal_mf_chunk *cl = shoal_manifest_chunk(s->m, first + count - 1);
    const struct shoal_mf_file *f = shoal_manifest_file(s->m, c0->file);
    struct shoal_hub_fetch_req req;
    struct shoal_hub_span span;
    struct ofetch *of = calloc(1, sizeof *of);
    int rv = -ENOMEM;

    if (!of)
        goto fail;
    of->s = s;
    of->first = first;
    of->count = count;
    of->base = c0->offset;
    of->len = cl->offset + cl->len - c0->offset;
    of->buf = malloc(of->len ? of->len : 1);
    if (!of->buf)
        goto fail;
    span.off = of->base;
    span.len = of->len;
    memset(&req, 0, sizeof req);
    req.type = shoal_manifest_repo_type(s->m);
    req.repo = shoal_manifest_repo_id(s->m);
    req.rev = shoal_manifest_commit(s->m);
    req.path = f->path;
    req.spans = &span;
    req.nspans = 1;
    req.on_data = ofetch_data;
    req.on_done = ofetch_done;
    req.user = of;
    rv = shoal_hub_fetch(s->cfg->hub, &req);
    if (rv != 0)
        goto fail;
    of->refs = 1;
    of->fetching = true;
    of->next = s->ofetches;
    s->ofetches = of;
    LOG_D("release %s: fetching chunks %u..%u (%llu bytes of %s) from the origin", s->idhex,
          first, first + count - 1, (unsigned long long)of->len, f->path);
    return;
fail:
    LOG_W("release %s: cannot start an origin fetch of %s: %s", s->idhex, f->path,
          shoal_strerror(rv));
    if (of)
        free(of->buf);
    free(of);
    for (uint32_t c = first; c < first + count; c++)
        origin_chunk_failed(s, c);
}

static void do_origin_fetch(struct shoal_swarm *s, const struct shoal_sched_action *a)
{
    uint32_t end = a->chunk + a->count, run = a->chunk;

    /* Refused: the rest of a lease granted before would be refused too. */
    if (!s->cfg->hub || now_ms(s) < s->origin_refused_until) {
        for (uint32_t c = a->chunk; c < end; c++)
            origin_chunk_failed(s, c);
        return;
    }
    /* A run of chunk indices may cross files: one request per file. */
    for (uint32_t c = a->chunk + 1; c <= end; c++) {
        if (c == end || shoal_manifest_chunk(s->m, c)->file !=
                            shoal_manifest_chunk(s->m, run)->file) {
            origin_fetch_run(s, run, c - run);
            run = c;
        }
    }
}

static struct slease *lease_slot(struct shoal_swarm *s)
{
    for (size_t i = 0; i < sizeof s->leases / sizeof s->leases[0]; i++) {
        if (!s->leases[i].used)
            return &s->leases[i];
    }
    return NULL;
}

static void grant(struct shoal_swarm *s, uint32_t trk, uint32_t first, uint32_t count,
                  uint32_t expires_ms)
{
    struct slease *l = lease_slot(s);
    uint64_t now = now_ms(s);
    int rv;

    if (count > 0 && l) {
        l->used = true;
        l->first = first;
        l->count = count;
        l->trk = trk;
        l->expires_at = now + expires_ms;
        l->dur_ms = expires_ms;
    }
    rv = shoal_sched_lease_granted(s->sched, now, first, count, now + expires_ms);
    if (rv == SHOAL_SCHED_LEASE_HELD) {
        /* Granted again after a reconnect: the record we have goes on. */
        LOG_D("release %s: tracker %u confirmed the lease of chunks %u..%u we are fetching",
              s->idhex, trk, first, first + count - 1);
        if (l && count > 0)
            l->used = false;
    } else if (rv != 0) {
        if (l && count > 0)
            l->used = false;
        shoal_sched_lease_failed(s->sched, now);
    }
}

static void do_lease_req(struct shoal_swarm *s, const struct shoal_sched_action *a)
{
    uint64_t now = now_ms(s);
    int route;

    if (!s->cfg->hub) {
        shoal_sched_lease_failed(s->sched, now);
        return;
    }
    /* The origin just failed us: wait before fetching again. A tracker's
     * lease on the failed span expires to be granted again, but asking it
     * for another span now would have that fail the same way and keep it
     * from nodes the origin may serve. */
    if (now < s->origin_hold_until) {
        shoal_sched_lease_failed(s->sched, now);
        return;
    }
    route = s->hooks->on_lease_req ? s->hooks->on_lease_req(s->hooks->user, s, a->chunk, a->count)
                                   : SHOAL_SWARM_LEASE_LOCAL;
    if (route == SHOAL_SWARM_LEASE_ASKED)
        return;
    if (route != SHOAL_SWARM_LEASE_LOCAL) {
        shoal_sched_lease_failed(s->sched, now);
        return;
    }
    /* No tracker to arbitrate: lease the span to ourselves. */
    grant(s, LEASE_LOCAL, a->chunk,
          a->count < s->nchunks - a->chunk ? a->count : s->nchunks - a->chunk, 60000);
    s->repump = true;
}

/* Why a tracker answered a lease request with nothing. */
static const char *lease_empty_why(int status)
{
    return status == SHOAL_ENOTFOUND
               ? "it does not hold the release's manifest: not published to it"
           : status ? shoal_strerror(status)
                    : "everything missing is leased to or fetched by other nodes";
}

/* Counts a lease request answered with nothing and logs, at most every
 * LEASE_EMPTY_LOG_MS, that the tracker keeps granting none while chunks
 * are missing: the daemon then waits for peers or for leases (perhaps its
 * own, from before a restart) to end, and without a word it looks hung. */
static void lease_empty_note(struct shoal_swarm *s, uint32_t trk, int status)
{
    uint64_t now = now_ms(s);
    /* A pause in asking (peers had what we needed) ends the run: the
     * line must not count the pause as time spent refused. */
    if (s->lease_empty > 0 && now - s->lease_empty_last_ms > LEASE_EMPTY_LOG_AFTER_MS)
        s->lease_empty = 0;
    s->lease_empty_last_ms = now;
    s->lease_empty_status = status;
    uint32_t had = shoal_sched_have_count(s->sched);
    if (s->lease_empty == 0 || had != s->lease_empty_have) {
        s->lease_empty_have = had;
        s->lease_empty_grew_ms = now;
    }
    if (s->lease_empty++ == 0)
        s->lease_empty_since_ms = now;
    if (s->complete || s->lease_empty < LEASE_EMPTY_LOG_MIN ||
        now - s->lease_empty_since_ms < LEASE_EMPTY_LOG_AFTER_MS ||
        (s->lease_empty_logged_ms && now - s->lease_empty_logged_ms < LEASE_EMPTY_LOG_MS))
        return;
    s->lease_empty_logged_ms = now;
    uint32_t have = shoal_sched_have_count(s->sched);
    LOG_I("release %s: tracker %u granted no origin lease for %u requests over %.0f s (%s) "
          "with %u of %u chunks missing; waiting for peers or for other leases to end",
          s->idhex, trk, s->lease_empty, (double)(now - s->lease_empty_since_ms) / 1000.0,
          lease_empty_why(status),
          s->nchunks - have, s->nchunks);
}

void shoal_swarm_lease_result(struct shoal_swarm *s, uint32_t trk, int status,
                              const struct shoal_msg_lease *l)
{
    if (!s->sched || s->stopped)
        return; /* an unused lease simply expires at the tracker */
    if (status != 0 || !l || l->count == 0)
        lease_empty_note(s, trk, status);
    else
        s->lease_empty = 0;
    if (status != 0 || !l) {
        shoal_sched_lease_failed(s->sched, now_ms(s));
    } else {
        if (l->count > 0)
            LOG_D("release %s: lease of chunks %u..%u from tracker %u", s->idhex, l->first,
                  l->first + l->count - 1, trk);
        grant(s, trk, l->first, l->count, l->expires_ms);
    }
    pump(s);
}

static void do_lease_done(struct shoal_swarm *s, const struct shoal_sched_action *a)
{
    struct slease *l = NULL;
    uint32_t run = a->chunk, end = a->chunk + a->count;
    bool ended = a->peer == SHOAL_SCHED_LEASE_END;

    /* A run lies in one lease (local leases, from hints, may overlap: then
     * either serves); the end names the lease's span exactly. */
    for (size_t i = 0; i < sizeof s->leases / sizeof s->leases[0]; i++) {
        const struct slease *x = &s->leases[i];
        if (x->used && (ended ? x->first == a->chunk && x->count == a->count
                              : a->chunk >= x->first && end <= x->first + x->count))
            l = &s->leases[i];
    }
    if (!l)
        return;
    if (ended) {
        for (uint32_t c = l->first; c < l->first + l->count; c++)
            (void)origin_take_failed(s, c);
        l->used = false;
        return;
    }
    /* The scheduler reports only chunks the swarm has; a chunk whose fetch
     * failed here is still left out, to expire with the lease so the
     * tracker can grant it again. */
    for (uint32_t c = a->chunk; c <= end; c++) {
        bool failed = c < end && origin_take_failed(s, c);
        if (c == end || failed) {
            if (c > run && l->trk != LEASE_LOCAL && s->hooks->on_lease_done && !s->stopped) {
                s->hooks->on_lease_done(s->hooks->user, s, l->trk, run, c - run);
                l->expires_at = now_ms(s) + l->dur_ms;
            }
            run = c + 1;
        }
    }
}

void shoal_swarm_reclaim_leases(struct shoal_swarm *s, uint32_t trk, bool arbiter)
{
    uint64_t now = now_ms(s);

    if (!s->sched || s->stopped || !s->hooks->on_lease_reclaim)
        return;
    for (size_t i = 0; i < sizeof s->leases / sizeof s->leases[0]; i++) {
        const struct slease *l = &s->leases[i];
        /* One that ran out there was granted again to someone else (or
         * free): nothing to claim. One taken without a tracker (none
         * answered for the fallback) is claimed from the release's own, so
         * nobody is granted what we are fetching. */
        bool ours = l->trk == trk || (arbiter && l->trk == LEASE_LOCAL);
        if (!l->used || l->expires_at <= now || !ours)
            continue;
        uint64_t left = l->expires_at - now;
        s->hooks->on_lease_reclaim(s->hooks->user, s, trk, l->first, l->count,
                                   left > UINT32_MAX ? UINT32_MAX : (uint32_t)left);
    }
}

void shoal_swarm_reclaim_result(struct shoal_swarm *s, uint32_t trk, uint32_t first,
                                uint32_t count, int status, const struct shoal_msg_lease *m)
{
    struct slease *l = NULL;
    uint64_t now = now_ms(s);

    if (!s->sched || s->stopped)
        return;
    for (size_t i = 0; i < sizeof s->leases / sizeof s->leases[0] && !l; i++) {
        struct slease *x = &s->leases[i];
        if (x->used && x->first == first && x->count == count &&
            (x->trk == trk || x->trk == LEASE_LOCAL))
            l = x;
    }
    if (!l)
        return; /* it ended meanwhile */
    if (status == 0 && m && m->first == first && m->count == count) {
        LOG_I("release %s: tracker %u holds our origin lease of chunks %u..%u again "
              "(re-claimed after logging in; %u ms left)", s->idhex, trk, first,
              first + count - 1, m->expires_ms);
        bool was_local = l->trk == LEASE_LOCAL;
        l->trk = trk; /* a lease-less one reports to it from now on */
        l->expires_at = now + m->expires_ms;
        /* ... and what it fetched before the claim, which it could tell no
         * tracker then: unreported, those chunks would go back to the pool
         * when the lease ends (review F7). */
        for (uint32_t c = first, run = first; was_local && c <= first + count; c++) {
            if (c < first + count && shoal_store_has(s->store, c))
                continue;
            if (c > run && s->hooks->on_lease_done && !s->stopped)
                s->hooks->on_lease_done(s->hooks->user, s, trk, run, c - run);
            run = c + 1;
        }
    } else if (status == SHOAL_EBUSY) {
        /* Another node leased or fetched some of it first (the tracker
         * restarted, or our lease ran out there): it fetches them. What
         * we already asked the origin for still lands and is kept. */
        LOG_W("release %s: tracker %u refused our re-claim of the origin lease of chunks "
              "%u..%u: another node leased or fetched some of them first; dropped it",
              s->idhex, trk, first, first + count - 1);
        for (uint32_t c = first; c < first + count; c++)
            (void)origin_take_failed(s, c);
        l->used = false;
        (void)shoal_sched_lease_drop(s->sched, now, first, count);
        pump(s);
    } else if (status != 0) {
        LOG_D("release %s: tracker %u did not take our re-claim of chunks %u..%u: %s",
              s->idhex, trk, first, first + count - 1, shoal_strerror(status));
    }
}

/* ---- scheduling ---- */

static void do_request(struct shoal_swarm *s, const struct shoal_sched_action *a)
{
    struct speer *sp = find_peer(s, a->peer);
    const struct shoal_mf_chunk *c = shoal_manifest_chunk(s->m, a->chunk);
    struct shoal_msg m;
    int rv = -EPIPE;

    if (sp && sp->nreq < MAX_INFLIGHT) {
        memset(&m, 0, sizeof m);
        m.type = SHOAL_MSG_REQUEST;
        m.u.request.req_id = next_req_id++;
        memcpy(m.u.request.manifest_id, shoal_manifest_id(s->m), 32);
        m.u.request.chunk_index = a->chunk;
        memcpy(m.u.request.chunk_id, c->id, 32);
        rv = shoal_peer_send(sp->p, &m);
        if (rv == 0) {
            sp->req[sp->nreq].req_id = m.u.request.req_id;
            sp->req[sp->nreq].chunk = a->chunk;
            sp->req[sp->nreq].sent_ms = now_ms(s);
            sp->nreq++;
        }
    }
    if (rv != 0)
        shoal_sched_req_failed(s->sched, now_ms(s), a->peer, a->chunk, true);
}

static void do_cancel(struct shoal_swarm *s, const struct shoal_sched_action *a)
{
    struct speer *sp = find_peer(s, a->peer);
    struct shoal_msg m;

    if (!sp)
        return;
    for (uint32_t i = 0; i < sp->nreq; i++) {
        if (sp->req[i].chunk == a->chunk) {
            memset(&m, 0, sizeof m);
            m.type = SHOAL_MSG_CANCEL;
            m.u.cancel.req_id = sp->req[i].req_id;
            (void)shoal_peer_send(sp->p, &m);
            sp->req[i] = sp->req[--sp->nreq];
            return;
        }
    }
}

static void pump(struct shoal_swarm *s)
{
    struct shoal_sched_action a[64];
    size_t n;

    /* While shared chunks are being copied from the cache, asking peers
     * for them would only download what is about to be local. A complete
     * release still drains what the scheduler has queued (it asks for
     * nothing more then): the LEASE_DONE of the chunks that completed it,
     * lost before, left their lease outstanding at the tracker until
     * --lease-ms and the chunks uncredited. */
    if (!s->sched || s->stopped || !s->started || s->dedup_running || s->found_running)
        return;
    do {
        n = shoal_sched_next(s->sched, now_ms(s), a, 64);
        for (size_t i = 0; i < n; i++) {
            switch (a[i].type) {
            case SHOAL_SCHED_REQUEST: do_request(s, &a[i]); break;
            case SHOAL_SCHED_CANCEL: do_cancel(s, &a[i]); break;
            case SHOAL_SCHED_LEASE_REQUEST: do_lease_req(s, &a[i]); break;
            case SHOAL_SCHED_ORIGIN_FETCH: do_origin_fetch(s, &a[i]); break;
            case SHOAL_SCHED_LEASE_DONE: do_lease_done(s, &a[i]); break;
            default: break;
            }
        }
        if (n < 64 && s->repump) {
            s->repump = false;
            n = 64;
        }
    } while (n == 64 && !s->stopped);
}

/* How long a request may go unanswered (--request-timeout-ms). */
static uint32_t request_limit(const struct shoal_swarm *s)
{
    return s->cfg->request_timeout_ms ? s->cfg->request_timeout_ms : 30000;
}

static void expire_requests(struct shoal_swarm *s)
{
    uint64_t now = now_ms(s);
    uint32_t limit = request_limit(s);

    for (uint32_t i = 0; i < s->npeers; i++) {
        struct speer *sp = s->peers[i];
        bool late = false;
        for (uint32_t k = 0; k < sp->nreq;) {
            if (now - sp->req[k].sent_ms > limit) {
                LOG_W("release %s: peer %s did not answer request for chunk %u in %u ms",
                      s->idhex, shoal_peer_name(sp->p), sp->req[k].chunk, limit);
                /* Its claim goes with it: asked again, it would hold the
                 * chunk back for another time-out. */
                shoal_sched_peer_lacks(s->sched, now, sp->id, sp->req[k].chunk);
                sp->req[k] = sp->req[--sp->nreq];
                late = true;
            } else {
                k++;
            }
        }
        /* Nothing from it for a whole time-out while it had requests: a
         * peer that claims chunks and serves none (or is wedged) would
         * otherwise be asked again after every time-out, and while its
         * claims stand nothing goes to the origin. */
        if (late && sp->joined && now - sp->served_ms > limit) {
            char why[160];
            snprintf(why, sizeof why, "announced chunks of release %s but sent none of them "
                     "in %u ms", s->idhex, limit);
            ban_peer(s, sp, SHOAL_SWARM_NO_CHUNK, why);
        }
    }
}

/* A store call that reads or writes whole files (copies from other
 * releases, a publish tried again) runs on a worker; |then| gets its result
 * on the loop. */
struct store_job {
    uv_work_t w;
    struct shoal_swarm *s;
    int (*call)(struct shoal_store *st, uint32_t *n);
    void (*then)(struct shoal_swarm *s, int status, int rv, uint32_t n);
    int rv;
    uint32_t n;
};

static void store_job_work(uv_work_t *w)
{
    struct store_job *j = w->data;
    j->rv = j->call(j->s->store, &j->n);
}

static void store_job_done(uv_work_t *w, int status)
{
    struct store_job *j = w->data;

    j->s->pending--;
    j->then(j->s, status, j->rv, j->n);
    free(j);
}

static bool store_job_start(struct shoal_swarm *s, int (*call)(struct shoal_store *, uint32_t *),
                            void (*then)(struct shoal_swarm *, int, int, uint32_t))
{
    struct store_job *j = calloc(1, sizeof *j);

    if (!j)
        return false;
    j->s = s;
    j->w.data = j;
    j->call = call;
    j->then = then;
    if (uv_queue_work(s->cfg->loop, &j->w, store_job_work, store_job_done) != 0) {
        free(j);
        return false;
    }
    s->pending++;
    return true;
}

/* ---- publish retry ---- */
#define PUBLISH_FIRST_MS 5000u
#define PUBLISH_MAX_MS 60000u

static void publish_done(struct shoal_swarm *s, int status, int rv, uint32_t tried)
{
    s->publish_running = false;
    if (status == 0 && rv != 0) {
        shoal_store_last_error(s->store, s->publish_err, sizeof s->publish_err);
        s->publish_wait_ms = s->publish_wait_ms ? s->publish_wait_ms * 2 : PUBLISH_FIRST_MS;
        if (s->publish_wait_ms > PUBLISH_MAX_MS)
            s->publish_wait_ms = PUBLISH_MAX_MS;
        LOG_E("release %s: every chunk is verified but publishing into the cache failed "
              "again: %s (%s); trying again in %u s", s->idhex, shoal_strerror(rv),
              s->publish_err, s->publish_wait_ms / 1000);
    } else if (status == 0 && tried > 0) {
        LOG_I("release %s: %u file(s) published into the cache on a new try", s->idhex, tried);
        s->publish_err[0] = '\0';
        s->publish_wait_ms = 0;
    }
    s->publish_at_ms = now_ms(s) + (s->publish_wait_ms ? s->publish_wait_ms : PUBLISH_FIRST_MS);
    check_complete(s);
}

/* Once every chunk is verified, a release that is still not complete has a
 * file its store could not publish: nothing else would try again (a
 * restart did), so `shoal pull` and loaders waited forever. */
static void publish_check(struct shoal_swarm *s)
{
    uint64_t now = now_ms(s);

    if (s->complete || s->stopped || s->publish_running || s->storing > 0 ||
        shoal_store_count(s->store) < s->nchunks) {
        s->publish_at_ms = 0;
        return;
    }
    if (s->publish_at_ms == 0) /* let a publish under way finish first */
        s->publish_at_ms = now + PUBLISH_FIRST_MS;
    if (now >= s->publish_at_ms &&
        store_job_start(s, shoal_store_retry_publish, publish_done))
        s->publish_running = true;
}

void shoal_swarm_last_error(struct shoal_swarm *s, char *out, size_t cap)
{
    shoal_store_last_error(s->store, out, cap);
}

const char *shoal_swarm_publish_error(const struct shoal_swarm *s)
{
    return s->complete ? "" : s->publish_err;
}

bool shoal_swarm_lease_wait(struct shoal_swarm *s, char *out, size_t cap)
{
    uint64_t now = now_ms(s);

    if (!s->sched || s->complete || s->stopped || s->lease_empty == 0 ||
        now - s->lease_empty_last_ms > LEASE_WAIT_FRESH_MS)
        return false;
    uint32_t have = shoal_sched_have_count(s->sched);
    /* A chunk since the last empty answer (from a peer) is progress. */
    if (have != s->lease_empty_have || now - s->lease_empty_grew_ms < LEASE_WAIT_SHOW_MS)
        return false;
    snprintf(out, cap, "waiting for other nodes: no origin lease granted for %.0f s (%s) and "
             "nothing arrived for %.0f s; %u of %u chunks missing",
             (double)(now - s->lease_empty_since_ms) / 1000.0,
             lease_empty_why(s->lease_empty_status),
             (double)(now - s->lease_empty_grew_ms) / 1000.0, s->nchunks - have, s->nchunks);
    return true;
}

uint32_t shoal_swarm_local_leases(const struct shoal_swarm *s)
{
    uint32_t n = 0;
    for (size_t i = 0; i < sizeof s->leases / sizeof s->leases[0]; i++)
        n += s->leases[i].used && s->leases[i].trk == LEASE_LOCAL ? 1 : 0;
    return n;
}

const char *shoal_swarm_origin_error(struct shoal_swarm *s)
{
    /* Until the chunk is had, from the origin or a peer: the origin's
     * other chunks arriving does not make this one right. */
    if (s->origin_refused_err[0] &&
        (s->complete || shoal_store_has(s->store, s->origin_refused_chunk)))
        s->origin_refused_err[0] = '\0';
    if (s->bad_origin_n == 0 || s->complete || shoal_store_has(s->store, s->bad_origin_chunk)) {
        s->bad_origin_n = 0;
        return s->origin_refused_err;
    }
    snprintf(s->bad_origin_err, sizeof s->bad_origin_err,
             "origin's bytes for chunk %u do not match the manifest (%u time%s; not stored, "
             "asked again later)", s->bad_origin_chunk, s->bad_origin_n,
             s->bad_origin_n == 1 ? "" : "s");
    return s->bad_origin_err;
}

/* The round trip a peer's pipeline covers (sched.h: depth): TCP's least
 * on the connection, which neither waits in a queue (ours holds up to 32
 * MiB of chunks for a peer, so a PING would time those) nor includes the
 * peer's disk, and needs no traffic of ours. 0 (the scheduler estimates
 * it from its requests) when TCP gives none. */
static uint32_t peer_rtt_ms(const struct speer *sp)
{
    return shoal_rtt_ms_of_us(shoal_peer_rtt_us(sp->p));
}

/* TCP keeps its least round trip over a window of minutes
 * (net.ipv4.tcp_min_rtt_wlen, 300 s), so a route that lengthens shows as
 * well as more samples: every RTT_CHECK_MS, a changed one goes to the
 * scheduler. */
static void check_rtts(struct shoal_swarm *s)
{
    uint64_t now = now_ms(s);

    if (now - s->rtt_checked_ms < RTT_CHECK_MS)
        return;
    s->rtt_checked_ms = now;
    for (uint32_t i = 0; i < s->npeers; i++) {
        struct speer *sp = s->peers[i];
        uint32_t rtt = sp->joined ? peer_rtt_ms(sp) : sp->rtt_ms;
        if (rtt != sp->rtt_ms && shoal_sched_peer_rtt(s->sched, sp->id, rtt) == 0)
            sp->rtt_ms = rtt;
    }
}

static void tick(uv_timer_t *t)
{
    struct shoal_swarm *s = t->data;
    if (s->sched && !s->complete) {
        expire_requests(s);
        check_rtts(s);
    }
    publish_check(s);
    pump(s);
}

/* Chunks this release shares with releases already in the cache (another
 * revision, a related model) are copied locally on a worker instead of being
 * downloaded; the scheduler learns about them when the copy is done. */
static void dedup_done(struct shoal_swarm *s, int status, int rv, uint32_t copied)
{
    uint64_t now = now_ms(s);
    uint64_t bytes = 0;

    s->dedup_running = false;
    if (status == 0 && rv != 0)
        LOG_W("release %s: copying shared chunks from the cache failed: %s", s->idhex,
              shoal_strerror(rv));
    if (status == 0 && copied > 0 && s->sched) {
        bytes = obtain_stored(s, now);
        s->resumed_bytes += bytes;
        LOG_I("release %s: %u chunks (%llu bytes) copied from other releases in the cache",
              s->idhex, copied, (unsigned long long)bytes);
        check_complete(s);
    }
    pump(s);
}

static void start_dedup(struct shoal_swarm *s)
{
    /* After the files found in the cache are hashed (found_done). */
    if (s->complete || (s->cfg->store_flags & SHOAL_STORE_MEMORY) || s->found_running)
        return;
    if (store_job_start(s, shoal_store_fill_from_local, dedup_done))
        s->dedup_running = true;
}

int shoal_swarm_start(struct shoal_swarm *s)
{
    int rv;
    if (s->started)
        return 0;
    rv = uv_timer_init(s->cfg->loop, &s->tick);
    if (rv != 0)
        return rv;
    s->tick.data = s;
    s->started = true;
    s->start_ms = now_ms(s);
    uv_timer_start(&s->tick, tick, TICK_MS, TICK_MS);
    start_dedup(s);
    if (s->complete)
        LOG_I("release %s (%s@%s) is complete here: seeding", s->idhex,
              shoal_manifest_repo_id(s->m), shoal_manifest_commit(s->m));
    return 0;
}

bool shoal_swarm_idle(const struct shoal_swarm *s)
{
    return s->pending == 0 && !s->ofetches && (!s->started || s->tick_closed);
}

static void on_tick_closed(uv_handle_t *h)
{
    struct shoal_swarm *s = h->data;
    s->tick_closed = true;
}

void shoal_swarm_withdraw(struct shoal_swarm *s)
{
    struct shoal_msg m;

    /* Peers stay connected for the other releases: tell each what we no
     * longer want, so they do not read and send chunks for nothing. */
    while (s->npeers > 0) {
        struct speer *sp = s->peers[s->npeers - 1];
        for (uint32_t i = 0; i < sp->nreq; i++) {
            memset(&m, 0, sizeof m);
            m.type = SHOAL_MSG_CANCEL;
            m.u.cancel.req_id = sp->req[i].req_id;
            (void)shoal_peer_send(sp->p, &m);
        }
        sp->nreq = 0;
        /* Its requests being read here are answered as those asked next
         * will be (the daemon: unknown release), not left to time out. */
        for (struct serve_job *j = s->serving; j; j = j->next) {
            if (j->peer_id == sp->id && !j->cancelled)
                send_reject(sp, j->req_id, SHOAL_REJECT_UNKNOWN, 0);
        }
        drop_peer(s, sp);
    }
    shoal_swarm_stop(s);
    /* The swarm is freed once its fetches end; a stalled gateway would hold
     * them (and a pull of the same release again) until its time-out. */
    for (struct ofetch *of = s->ofetches; of; of = of->next) {
        if (of->fetching)
            (void)shoal_hub_cancel(s->cfg->hub, of);
    }
}

void shoal_swarm_stop(struct shoal_swarm *s)
{
    if (s->stopped)
        return;
    s->stopped = true;
    if (s->started && !uv_is_closing((uv_handle_t *)&s->tick))
        uv_close((uv_handle_t *)&s->tick, on_tick_closed);
    (void)shoal_store_flush(s->store);
}

/* ---- messages ---- */

static uint8_t bitrev(uint8_t b)
{
    b = (uint8_t)((b & 0xf0) >> 4 | (b & 0x0f) << 4);
    b = (uint8_t)((b & 0xcc) >> 2 | (b & 0x33) << 2);
    return (uint8_t)((b & 0xaa) >> 1 | (b & 0x55) << 1);
}

static void handle_bitfield(struct shoal_swarm *s, struct speer *sp,
                            const struct shoal_msg_have_bitfield *bf)
{
    uint8_t *bits;
    bool first = !sp->joined, rejoin = false;

    if (bf->nchunks != s->nchunks) {
        LOG_W("peer %s: bitfield for %s has %u chunks, manifest has %u; ignored",
              shoal_peer_name(sp->p), s->idhex, bf->nchunks, s->nchunks);
        return;
    }
    if (!s->sched || s->stopped)
        return;
    if (sp->joined && (bf->flags & SHOAL_BITFIELD_F_JOIN)) {
        /* The peer opened the release again (after dropping it): what it
         * holds may differ from what we knew, and it waits for our
         * bitfield. Acted on at most once a second, so a peer sending
         * nothing but JOINs costs us one bitfield a second, not one per
         * message (it is then only added, as a later bitfield is). */
        uint64_t now = now_ms(s);
        if (!sp->rejoin_ms || now - sp->rejoin_ms >= 1000) {
            sp->rejoin_ms = now ? now : 1;
            rejoin = true;
        }
    }
    if (!sp->joined) {
        const char *pz = shoal_session_peer_zone(shoal_peer_session(sp->p));
        uint32_t rtt = peer_rtt_ms(sp);
        int rv = shoal_sched_peer_add(s->sched, sp->id, strcmp(pz, s->cfg->zone) == 0, rtt);
        if (rv != 0)
            return;
        sp->rtt_ms = rtt;
        sp->joined = true;
        sp->served_ms = now_ms(s);
    }
    /* The wire is most-significant-bit first, the scheduler least. */
    bits = malloc(bf->bits.len ? bf->bits.len : 1);
    if (!bits)
        return;
    for (uint32_t i = 0; i < bf->bits.len; i++)
        bits[i] = bitrev(bf->bits.p[i]);
    /* Later bitfields only add: a peer alternating full and empty ones made
     * the scheduler redo the release's availability on every message. */
    int added = first || rejoin
                    ? shoal_sched_peer_bitfield(s->sched, sp->id, bits, bf->bits.len)
                    : shoal_sched_peer_bitfield_add(s->sched, sp->id, bits, bf->bits.len);
    free(bits);
    /* The first bitfield from a peer is answered with ours, once, so a
     * release opened after the connection still gets both sides talking;
     * so is a JOIN from a peer that opened the release again. */
    if (first || rejoin)
        send_bitfield(s, sp);
    if (first || rejoin || added > 0)
        pump(s);
}

bool shoal_swarm_on_msg(struct shoal_swarm *s, struct shoal_peer *p, const struct shoal_msg *m)
{
    const uint8_t *id = shoal_manifest_id(s->m);
    struct speer *sp;

    switch (m->type) {
    case SHOAL_MSG_HAVE_BITFIELD:
        if (memcmp(m->u.have_bitfield.manifest_id, id, 32) != 0)
            return false;
        sp = get_peer(s, p);
        if (sp)
            handle_bitfield(s, sp, &m->u.have_bitfield);
        return true;
    case SHOAL_MSG_HAVE:
        if (memcmp(m->u.have.manifest_id, id, 32) != 0)
            return false;
        sp = find_peer(s, shoal_peer_id(p));
        if (sp && sp->joined && m->u.have.chunk_index < s->nchunks) {
            shoal_sched_peer_have(s->sched, sp->id, m->u.have.chunk_index);
            pump(s);
        }
        return true;
    case SHOAL_MSG_REQUEST:
        if (memcmp(m->u.request.manifest_id, id, 32) != 0)
            return false;
        sp = get_peer(s, p);
        if (sp)
            handle_request(s, sp, &m->u.request);
        else /* no room or memory for it here: every REQUEST is answered */
            (void)shoal_peer_send_reject(p, m->u.request.req_id, SHOAL_REJECT_BUSY, 100);
        return true;
    case SHOAL_MSG_CHUNK:
        sp = find_peer(s, shoal_peer_id(p));
        return sp && handle_chunk(s, sp, &m->u.chunk);
    case SHOAL_MSG_REJECT: {
        struct req r;
        sp = find_peer(s, shoal_peer_id(p));
        if (!sp || !take_req(sp, m->u.reject.req_id, &r))
            return false;
        /* Busy: asked again after a back-off. Anything else (unknown: it
         * cannot serve the chunk after all; shutting down; not authorised)
         * withdraws its claim, or the scheduler would ask it again at once,
         * in a loop as fast as the peer answers. So does busy from a peer
         * that has sent nothing for a whole request time-out, for a chunk
         * only it claims: that chunk would wait for it forever, never going
         * to the origin (one that answers busy to everything and serves
         * nothing would hold a pull for as long as it stays). Chunks that
         * others hold too keep its claim: a seed that is only busy serving
         * them is asked again later: not before the time it named
         * (retry_after_ms, a few seconds at most: shoal_sched_req_busy),
         * while the chunk goes to other holders meanwhile. */
        uint64_t now = now_ms(s);
        bool busy = m->u.reject.reason == SHOAL_REJECT_BUSY ||
                    m->u.reject.reason == SHOAL_REJECT_RATE_LIMITED;
        if (busy && now - sp->served_ms > request_limit(s) &&
            shoal_sched_holders(s->sched, r.chunk) <= 1) {
            if (!sp->busy_noted)
                LOG_W("release %s: peer %s has answered busy, with no chunk, for %u ms: its "
                      "claims no longer hold chunks back from other sources", s->idhex,
                      shoal_peer_name(p), request_limit(s));
            sp->busy_noted = true;
            busy = false;
        }
        if (busy)
            shoal_sched_req_busy(s->sched, now, sp->id, r.chunk, m->u.reject.retry_after_ms);
        else
            shoal_sched_peer_lacks(s->sched, now, sp->id, r.chunk);
        pump(s);
        return true;
    }
    case SHOAL_MSG_CANCEL:
        /* Each REQUEST earns exactly one answer, cancelled or not: the
         * requester counts them (shoal_peer: more answers than requests
         * close the connection), and cannot tell a request we took back
         * from one whose CHUNK is still on its way. So one we withdraw,
         * still being read or queued and not started, is answered REJECT
         * (unknown: older nodes close on a reason they do not know, and a
         * requester has forgotten the request anyway); one already on the
         * wire is answered by its CHUNK. */
        for (struct serve_job *j = s->serving; j; j = j->next) {
            if (j->peer_id == shoal_peer_id(p) && j->req_id == m->u.cancel.req_id) {
                if (!j->cancelled)
                    (void)shoal_peer_send_reject(p, j->req_id, SHOAL_REJECT_UNKNOWN, 0);
                j->cancelled = true;
                return true;
            }
        }
        /* Read and queued already: taken back if still waiting there. */
        sp = find_peer(s, shoal_peer_id(p));
        return sp && chunk_cancelled(s, sp, m->u.cancel.req_id);
    default:
        return false;
    }
}

bool shoal_swarm_file_done(struct shoal_swarm *s, uint32_t file)
{
    return shoal_store_file_ready(s->store, file);
}

int shoal_swarm_file_open(struct shoal_swarm *s, uint32_t file, int *fd)
{
    return shoal_store_file_open(s->store, file, fd);
}

void shoal_swarm_set_rate_down(struct shoal_swarm *s, uint64_t bytes_per_s)
{
    if (s->sched)
        shoal_sched_set_rate_down(s->sched, bytes_per_s);
}

int shoal_swarm_want_files(struct shoal_swarm *s, const uint32_t *files, size_t n)
{
    uint32_t nfiles = shoal_manifest_nfiles(s->m), *sched_idx = NULL, *want = NULL;
    size_t nwant = 0;
    int rv = 0;

    if (!s->sched)
        return 0; /* an empty release: nothing to schedule */
    /* The scheduler numbers only the files that have chunks. */
    sched_idx = malloc(sizeof *sched_idx * (nfiles + 1));
    want = malloc(sizeof *want * (n + 1));
    if (!sched_idx || !want) {
        rv = -ENOMEM;
        goto out;
    }
    for (uint32_t i = 0, k = 0; i < nfiles; i++) {
        sched_idx[i] = k;
        k += shoal_manifest_file(s->m, i)->nchunks > 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (files[i] >= nfiles) {
            rv = SHOAL_EBADMSG;
            goto out;
        }
        if (shoal_manifest_file(s->m, files[i])->nchunks == 0 ||
            shoal_store_file_done(s->store, files[i]))
            continue;
        want[nwant++] = sched_idx[files[i]];
    }
    rv = shoal_sched_want_files(s->sched, want, nwant);
    if (rv == 0)
        pump(s);
out:
    free(sched_idx);
    free(want);
    return rv;
}

void shoal_swarm_stats(const struct shoal_swarm *s, struct shoal_swarm_stats *st)
{
    memset(st, 0, sizeof *st);
    st->nchunks = s->nchunks;
    /* what we serve: withheld chunks are not counted */
    rot_served(s, &st->have_chunks, &st->have_bytes);
    st->total_bytes = shoal_manifest_total_size(s->m);
    st->rx_chunk_bytes = s->rx_bytes;
    st->tx_chunk_bytes = s->tx_bytes;
    st->bad_chunks = s->bad_chunks;
    st->busy_slots = s->busy_slots;
    st->rx_chunks = s->rx_chunks;
    st->tx_payload_bytes = s->tx_wire_payload;
    st->origin_bytes = s->origin_bytes;
    st->dup_bytes = s->dup_bytes;
    st->rx_dup_bytes = s->rx_dup_bytes;
    st->resumed_bytes = s->resumed_bytes;
    for (uint32_t i = 0; i < s->npeers; i++) {
        st->peers += s->peers[i]->joined;
        st->inflight += s->peers[i]->nreq;
    }
}

int shoal_swarm_set_role(struct shoal_swarm *s, bool fetcher, uint32_t import_mod,
                         uint32_t import_rem)
{
    struct shoal_sched_role r;
    uint32_t key = shoal_sched_role_key(fetcher, import_mod, import_rem);
    const char *zone = s->cfg->zone && *s->cfg->zone ? s->cfg->zone : "(none)";
    int rv = 0;

    if (import_mod > 255 || import_rem > 255) {
        rv = -EINVAL;
        goto out;
    }
    if (!s->sched || key == s->role)
        goto out;
    /* The knobs the swarm opened with are the role-less defaults, and a
     * role only moves them (shoal_sched_role_fleet). */
    shoal_sched_role_fleet(&r, &s->sbase, fetcher, import_mod, import_rem);
    if ((rv = shoal_sched_set_role(s->sched, &r)) != 0)
        goto out;
    s->role = key;
    if (fetcher && import_mod)
        LOG_I("release %s: tracker role: origin fetcher and importer of share %u/%u for zone %s",
              s->idhex, import_rem, import_mod, zone);
    else if (fetcher)
        LOG_I("release %s: tracker role: origin fetcher for zone %s", s->idhex, zone);
    else if (import_mod)
        LOG_I("release %s: tracker role: importer of share %u/%u for zone %s (origin after "
              "%u ms)", s->idhex, import_rem, import_mod, zone, r.origin_delay_ms);
    else
        /* The tracker gives no reason: say both it can have, so an
         * operator wondering why nobody here fetches knows where to look. */
        LOG_I("release %s: tracker role: none in zone %s (peers first, origin after %u ms: "
              "other nodes of the zone are its fetchers, or one holds the whole release)",
              s->idhex, zone, r.origin_delay_ms);
    pump(s);
out:
    return rv;
}
