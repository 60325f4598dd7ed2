/* SPDX-License-Identifier: MIT */
/*
 * shoald wiring (see daemon.h): identity, trust, listener, static peers,
 * message routing between peers and releases, bans, graceful shutdown.
 */
#include "daemon.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "cdc.h"
#include "cliutil.h"
#include "cred.h"
#include "ctl.h"
#include "error.h"
#include "frame.h"
#include "hash.h"
#include "hfcache.h"
#include "hub.h"
#include "keys.h"
#include "keywatch.h"
#include "loader.h"
#include "manifest.h"
#include "mfq.h"
#include "netsrc.h"
#include "nodelog.h"
#include "peer.h"
#include "sockpath.h"
#include "srclimit.h"
#include "state.h"
#include "store.h"
#include "swarm.h"
#include "trkconn.h"

#define MAX_PEERS_HARD 250
#define MAX_UNAUTH_HARD 256
/* Evictions from the handshake pool are logged at most this often: a
 * flood of connections that never authenticate must not flood the log. */
#define EVICT_LOG_MS 10000
/* The "tracker" of a rollout_ids entry taken from the state file. */
#define ROLLOUT_FROM_STATE UINT32_MAX

/* The close reason of an evicted connection; its close is not logged again. */
static const char EVICTED[] = "evicted: oldest connection still in its handshake";
/* ... and of a HELLO refused unchecked (hello-rate): the BYE's text too. */
static const char HELLO_BUSY[] = "busy: too many handshakes from your address, retry later";
#define HELLO_RATE_MAX 100000u
#define MAX_SWARMS 64
#define MAX_BANS 256
/* A manifest still not written after this long is taken off the budget: a
 * peer that asks and stops reading must not stall everyone else. Far more
 * than a few MB takes on any link a fleet shares. */
#define MANIFEST_STALL_MS 10000

/* A first bad chunk bans for at most this long (on_ban): an honest seed
 * whose disk rotted learns of it from the BYE and withholds the chunk
 * within a few ms (the file's other chunks while it hashes them again),
 * so it is back to serve the rest soon, not after --ban-seconds. */
#define FIRST_BAN_S 30u

struct ban {
    uint8_t pk[32];
    uint64_t until_ms;
    /* Its last ban for a bad chunk (0: none): another bad chunk within
     * --ban-seconds of it bans for the full --ban-seconds. */
    uint64_t strike_ms;
};

struct pull {
    uint64_t serial;           /* unique: tags trackers' and the Hub's answers,
                                * which may come after the pull was dropped */
    uint8_t id[32];
    struct shoal_swarm *swarm; /* once the manifest arrived */
    bool by_name;              /* |id| unknown until the tracker resolves |name| */
    char name[SHOAL_MSG_REPO_MAX + 1];
    uint64_t asked_ms;         /* last GET_MANIFEST to the trackers */
    /* A release that could not be opened (full or read-only
     * cache): the CLI and status get |why|; the manifest is asked for again
     * from |retry_ms| on, each failure doubling the wait. */
    bool failed;
    int err;
    char why[SHOAL_CTL_REASON_MAX + 1];
    uint64_t retry_ms;
    uint32_t backoff_ms;
    /* Asked for by branch or tag (|asked| "org/name@main", |ref| "main"):
     * the Hub resolves it to a commit, which goes into |name|. */
    struct shoal_daemon *owner;
    char asked[SHOAL_MSG_REPO_MAX + 1];
    char ref[SHOAL_MSG_REPO_MAX + 1];
    bool unresolved;           /* |name| is not repo@commit yet */
    bool unknown;              /* the trackers said they have no such
                                  manifest (yet): status says so */
    bool resolving;            /* a Hub request is under way */
    /* The last manifest that came for this pull and was refused (0: none):
     * status says why instead of "waiting for the manifest". */
    int refused;
    /* Asked for by loaders only (no `shoal pull`, configuration or
     * rollout): withdrawn when no loader waits for it any more before its
     * release opened (withdraw_orphans), so loaders that leave, or ask for
     * ids nobody has, cannot keep the node's pull slots. */
    bool loader_only;
};

/* Pulls only loaders asked for, at most: the rest of the table stays for
 * `shoal pull`, the configuration and rollouts. */
#define LOADER_PULLS_MAX (SHOAL_CONFIG_LIST_MAX / 2)

#define MAX_DIALS 256
/* Dials to tracker-listed nodes still in their handshake: a tracker (or
 * someone posing as one: nothing proves a tracker's identity to a node)
 * listing many keys at addresses that accept and never answer would
 * otherwise hold every peer slot. */
#define MAX_DIALING 16
/* A node we dialled because a tracker listed it. */
struct dial {
    uint8_t pk[32];
    char addr[SHOAL_MSG_ADDR_MAX + 1];
    struct shoal_peer *p;      /* while that connection lives */
    uint64_t last_ms;
};

struct shoal_daemon {
    uv_loop_t loop;
    const struct shoal_config *cfg;
    struct shoal_seckey sk;
    struct shoal_pubkey pk;
    uint8_t cred[SHOAL_MSG_CRED_MAX];
    size_t cred_len;
    uint64_t cred_expires;  /* unix time; 0: no credential */
    uv_timer_t cred_timer;  /* warns while the credential nears its end */
    /* --deny-keys: revoked node keys, and the timer that reads the files
     * again when they change */
    struct shoal_keywatch *deny;
    uv_timer_t deny_timer;
    uint64_t deny_logged_ms; /* last "refused: revoked" line */
    uint32_t deny_quiet;     /* refusals since, not logged */
    struct shoal_keyset *cluster_keys;
    struct shoal_keyset *publishers;
    struct shoal_keyset *tracker_keys; /* NULL: trackers not authenticated */
    char cache_dir[SHOAL_HF_PATH_MAX];
    char listen_addr[SHOAL_MSG_ADDR_MAX + 1];
    bool listen_wildcard;   /* bound to 0.0.0.0 or :: */
    bool listen_ipv4;       /* ... an IPv4 address (:: takes both) */
    char hello_addr[SHOAL_MSG_ADDR_MAX + 1]; /* the listen address HELLO names */
    uint16_t listen_port;

    struct shoal_peer_ctx pctx;
    struct shoal_peer_cb pcb;
    struct shoal_swarm_cfg scfg;
    struct shoal_swarm_hooks hooks;

    uv_tcp_t listener;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t redial;

    /* Every connection we have not forgotten: authenticated peers, our own
     * dials in progress (both count against max-peers) and the inbound
     * connections still in their handshake, which are also in unauth[],
     * oldest first, and count against max-unauth only. */
    struct shoal_peer *peers[MAX_PEERS_HARD + MAX_UNAUTH_HARD];
    uint32_t npeers;
    struct shoal_peer *unauth[MAX_UNAUTH_HARD];
    uint32_t nunauth;
    uint64_t evicted_total;   /* connections evicted from unauth[] */
    uint64_t evict_logged_ms; /* last eviction logged (0: none yet) */
    /* Inbound HELLOs each source may have checked (--hello-rate). */
    struct shoal_srclimit *hello_budget;
    uint64_t hello_refused_total;
    uint64_t hello_refused_logged;   /* ... of them when last logged */
    uint64_t hello_logged_ms;        /* last refusal logged (0: none yet) */
    struct shoal_peer *static_conn[SHOAL_CONFIG_LIST_MAX];
    /* The node key last seen at each --peer address: a banned one is not
     * redialled (each redial would cost a handshake only to be refused). */
    uint8_t static_pk[SHOAL_CONFIG_LIST_MAX][32];
    bool static_pk_known[SHOAL_CONFIG_LIST_MAX];
    bool static_ban_said[SHOAL_CONFIG_LIST_MAX];
    struct shoal_swarm *swarms[MAX_SWARMS];
    uint32_t nswarms;
    /* Per swarms[] slot, moved with it. */
    struct slot {
        /* A unique tag for the tracker's lease answers (an index would
         * name another release after a drop). */
        uint64_t tag;
        /* The branch or tag it was pulled by ("" if none), for the state. */
        char branch[SHOAL_STATE_BRANCH_MAX + 1];
        /* When it was last used (opened, asked for, or seen uploading) and
         * its upload count then: with max-releases open, the complete one
         * used least recently is closed to make room. */
        uint64_t used_ms;
        uint64_t tx;
        /* When it was opened here (CTL elapsed_ms: a pull that finds it
         * open counts only what arrives from then on). */
        uint64_t opened_ms;
        /* When a tracker last said it lacks this release's manifest and
         * was sent ours: at most one such put per RE_PUT_MS, in case it
         * keeps refusing it (a manifest may be megabytes). */
        uint64_t reput_ms;
        /* The tracker its leases were last asked of (logged on change);
         * UINT32_MAX before the first. */
        uint32_t lease_trk;
        /* A pull found it complete: its files are being checked in the
         * cache on a worker (start_check); until that ends it counts as
         * pulling, not complete. |check_more|: one more check follows,
         * to write refs/|check_next|. |check_asked|: a `shoal pull` that
         * found it open with no pull of its own, followed under this
         * name if its files are gone (|check_loader|: asked by a loader). */
        bool checking, check_more, check_loader;
        char check_next[SHOAL_STATE_BRANCH_MAX + 1];
        char check_asked[SHOAL_MSG_REPO_MAX + 1];
    } slot[MAX_SWARMS];
    /* The releases each tracker's rollouts named last (a rollout is kept
     * by one tracker, so the union counts): never closed for room (the
     * next announce would open them again). After a restart, those the
     * state file marks (trk ROLLOUT_FROM_STATE) until every tracker has
     * answered an announce (trk_answered: a bit per tracker). */
    struct {
        uint32_t trk;
        uint8_t id[32];
    } rollout_ids[4 * SHOAL_MSG_DESIRED_MAX];
    uint32_t nrollout_ids;
    uint64_t trk_answered;
    uint64_t next_serial;
    /* Dropped releases wait here until their worker jobs and origin
     * fetches end; the reaper frees them. */
    struct shoal_swarm *dropped[MAX_SWARMS];
    uint32_t ndropped;
    /* Complete releases whose files were deleted from the cache while
     * open, closed to be opened again (reopen_gone): each opens once its
     * old swarm is freed (on_reap); the pulls of it wait meanwhile. */
    struct reopen {
        uint8_t id[32];
        uint8_t *mf; /* its signed manifest, ours */
        size_t len;
        char branch[SHOAL_STATE_BRANCH_MAX + 1];
    } reopens[MAX_SWARMS];
    uint32_t nreopens;
    uv_timer_t reaper;
    /* The Hub's answers to branch resolves carry one of these: the pull is
     * found again by serial, as it may have moved or been dropped. */
    struct resolve_ctx {
        struct shoal_daemon *d;
        uint64_t serial;
        bool used;
    } resolves[2 * SHOAL_CONFIG_LIST_MAX];
    /* Pulls the Hub refused for good (404, 401/403) are dropped at once;
     * the last few are remembered so that the `shoal pull` following one
     * is told why rather than "neither here nor being pulled". A new pull
     * of the same name forgets its entry. */
    struct gone_pull {
        char asked[SHOAL_MSG_REPO_MAX + 1];
        char why[SHOAL_CTL_ERROR_MAX + 1];
        int err;
    } gone[8];
    uint32_t gone_next;
    /* The state file (state.h): open releases, reopened at start. */
    bool state_on;      /* a path was found and the store is on disk */
    bool state_ready;   /* start-up reopening done: changes are written */
    uint8_t state_hash[32]; /* of the entries last written: an unchanged */
    bool state_written;     /* list is not written again (and fsync'd) */
    char state_path[SHOAL_STATE_PATH_MAX];
    char state_dir[SHOAL_STATE_PATH_MAX];
    char abs_cache[SHOAL_STATE_PATH_MAX];
    int cache_lock;     /* the cache's lock (shoal_store_lock_cache), */
    bool cache_locked;  /* ... held while this is set */
    struct pull pulls[SHOAL_CONFIG_LIST_MAX];
    uint32_t npulls;
    /* Our credential expired: when --peers may be dialled next, and the
     * gap after that (dial_static). */
    uint64_t expired_dial_at, expired_dial_gap;
    /* The --manifest releases: --exit-when-complete waits for them as for
     * the pulls (the node was told to hold them, so they are fetched). */
    uint8_t held[SHOAL_CONFIG_LIST_MAX][32];
    uint32_t nheld;
    struct ban bans[MAX_BANS];
    uint32_t nbans;
    char last_ban_why[200]; /* for status: why the last ban was made */
    bool stopping;
    int exit_code;
    struct shoal_mfq *mfq; /* WANT_MANIFEST answers waiting */
    uv_timer_t mfq_timer;  /* expires stuck ones while some wait */
    uv_timer_t retry;      /* failed pulls whose back-off ends */
    struct shoal_loader_srv *loader;
    struct shoal_loader_srv_hooks lhooks;
    struct shoal_hub *hub;
    struct shoal_hub_config hubcfg;
    struct shoal_trkconn *trk;
    struct shoal_trkconn_cfg tcfg;
    uint8_t session[SHOAL_MSG_SESSION_LEN]; /* this process, for trackers */
    struct shoal_trkconn_hooks thooks;
    uv_timer_t trk_timer;            /* discovery, manifest lookups */
    uint64_t trk_seen_ms;            /* last time some tracker was ready */
    bool fallback_logged;
    struct dial dials[MAX_DIALS];
    uint32_t ndials;
    struct shoal_ctl *ctl;
    struct shoal_ctl_ops ctl_ops;
    struct shoal_rate_cfg rate;
    uint32_t rate_shares;      /* releases --rate-down was last divided
                                  among (share_rate_down) */
    struct shoal_peer_budget qbudget; /* --max-queue-total */
    struct shoal_bucket up_bucket, down_bucket; /* node-wide caps */
    uint64_t bans_total;
};

static void hex8(char out[17], const uint8_t *id) { shoal_hex(out, id, 8); }

/* A release named by its manifest id (64 hex digits) rather than repo@rev. */
static bool is_manifest_id(const char *release)
{
    return strlen(release) == 64 && strspn(release, "0123456789abcdefABCDEF") == 64;
}

static bool duplicate_refused(struct shoal_daemon *d, struct shoal_peer *p, const uint8_t pk[32]);
static bool connected_to_addr(struct shoal_daemon *d, const char *addr);
static int setup_trackers(struct shoal_daemon *d);
static void start_trackers(struct shoal_daemon *d);
static void stop_trackers(struct shoal_daemon *d);

/* ---- bans ---- */

static bool is_banned(struct shoal_daemon *d, const uint8_t pk[32])
{
    uint64_t now = uv_now(&d->loop);
    for (uint32_t i = 0; i < d->nbans; i++) {
        if (memcmp(d->bans[i].pk, pk, 32) == 0 && d->bans[i].until_ms > now)
            return true;
    }
    return false;
}

static struct ban *find_ban(struct shoal_daemon *d, const uint8_t pk[32])
{
    for (uint32_t i = 0; i < d->nbans; i++) {
        if (memcmp(d->bans[i].pk, pk, 32) == 0)
            return &d->bans[i];
    }
    return NULL;
}

/* A bad chunk from |pk| now: was there one within --ban-seconds before? */
static bool struck_before(struct shoal_daemon *d, const uint8_t pk[32])
{
    const struct ban *b = find_ban(d, pk);
    uint64_t now = uv_now(&d->loop);
    return b && b->strike_ms && now - b->strike_ms < d->cfg->ban_seconds * 1000;
}

/* Bans |pk| for |secs|; |strike|: for a bad chunk (remembered for
 * struck_before). */
static void add_ban(struct shoal_daemon *d, const uint8_t pk[32], uint64_t secs, bool strike)
{
    uint64_t now = uv_now(&d->loop), until = now + secs * 1000;
    uint64_t window = d->cfg->ban_seconds * 1000;
    struct ban *b = find_ban(d, pk);
    uint32_t slot = b ? (uint32_t)(b - d->bans) : d->nbans;

    /* A slot is free once its ban is over and its strike forgotten. */
    for (uint32_t i = 0; !b && i < d->nbans; i++) {
        if (d->bans[i].until_ms <= now &&
            (!d->bans[i].strike_ms || now - d->bans[i].strike_ms >= window)) {
            slot = i;
            break;
        }
    }
    if (slot == MAX_BANS) {
        /* Full of live bans: the one ending first goes (slot 0 every time
         * would let each new ban undo the last). */
        slot = 0;
        for (uint32_t i = 1; i < d->nbans; i++) {
            if (d->bans[i].until_ms < d->bans[slot].until_ms)
                slot = i;
        }
    }
    if (!b) /* a new slot, or another node's */
        memset(&d->bans[slot], 0, sizeof d->bans[slot]);
    memcpy(d->bans[slot].pk, pk, 32);
    if (until > d->bans[slot].until_ms) /* never shortens a ban */
        d->bans[slot].until_ms = until;
    if (strike)
        d->bans[slot].strike_ms = now;
    if (slot == d->nbans)
        d->nbans++;
}

static void on_ban(void *user, struct shoal_swarm *s, struct shoal_peer *p, const uint8_t pk[32],
                   uint32_t chunk, const char *why)
{
    struct shoal_daemon *d = user;
    char hex[17] = "?";
    uint64_t secs = d->cfg->ban_seconds;
    const char *note = "";

    /* More bad chunks from a sender that has gone: it is banned already. */
    if (!p && pk && is_banned(d, pk))
        return;
    /* A bad chunk may be an honest seed's disk gone bad, which it cannot
     * know until told (our BYE names the chunk): its first one bans it
     * briefly, while it checks and withholds what changed. A second
     * within --ban-seconds, from a later session (the first's are
     * refused above as banned already), bans for --ban-seconds: a liar
     * gets one short ban per --ban-seconds, a seed that withdrew its bad
     * chunks never a second. Lies that are no bad hash ban in full. */
    if (pk && chunk != SHOAL_SWARM_NO_CHUNK) {
        if (struck_before(d, pk)) {
            note = " (its second bad chunk within --ban-seconds)";
        } else if (secs > FIRST_BAN_S) {
            secs = FIRST_BAN_S;
            note = " (its first: its disk may have changed; another within --ban-seconds "
                   "bans it for --ban-seconds)";
        }
    }
    if (pk) {
        hex8(hex, pk);
        add_ban(d, pk, secs, chunk != SHOAL_SWARM_NO_CHUNK);
    }
    d->bans_total++;
    snprintf(d->last_ban_why, sizeof d->last_ban_why, "%s", why);
    LOG_W("banning node %s (peer %s) for %llu s: %s%s", hex,
          p ? shoal_peer_name(p) : "already disconnected", (unsigned long long)secs, why, note);
    /* Naming the chunk lets an honest node whose cached copy changed on
     * disk find out (shoal_swarm_chunk_disputed); it learns nothing else. */
    if (p) {
        char bye[200];
        snprintf(bye, sizeof bye, "banned: %s", why);
        if (chunk != SHOAL_SWARM_NO_CHUNK)
            shoal_peer_bye_chunk(p, bye, shoal_swarm_id(s), chunk);
        else
            shoal_peer_bye(p, bye);
    }
}

/* ---- releases ---- */

static struct shoal_swarm *find_swarm(struct shoal_daemon *d, const uint8_t id[32])
{
    for (uint32_t i = 0; i < d->nswarms; i++) {
        if (memcmp(shoal_swarm_id(d->swarms[i]), id, 32) == 0)
            return d->swarms[i];
    }
    return NULL;
}

/* The open release "[datasets/]repo@commit" names, or NULL. */
static struct shoal_swarm *find_swarm_named(struct shoal_daemon *d, const char *release)
{
    for (uint32_t i = 0; i < d->nswarms; i++) {
        if (shoal_manifest_named(shoal_swarm_manifest(d->swarms[i]), release))
            return d->swarms[i];
    }
    return NULL;
}

/* The swarms[] slot of |s|, or UINT32_MAX. */
static uint32_t swarm_slot(const struct shoal_daemon *d, const struct shoal_swarm *s)
{
    for (uint32_t i = 0; i < d->nswarms; i++) {
        if (d->swarms[i] == s)
            return i;
    }
    return UINT32_MAX;
}

static struct pull *find_pull_serial(struct shoal_daemon *d, uint64_t serial)
{
    for (uint32_t i = 0; i < d->npulls; i++) {
        if (d->pulls[i].serial == serial)
            return &d->pulls[i];
    }
    return NULL;
}

/* The next free pull slot, cleared and numbered; the caller counts it in
 * (d->npulls++) once it is filled. */
static struct pull *new_pull(struct shoal_daemon *d)
{
    struct pull *pl = &d->pulls[d->npulls];

    memset(pl, 0, sizeof *pl);
    pl->owner = d;
    pl->serial = ++d->next_serial;
    return pl;
}

/* Takes pulls[i] out of the table, moving the pulls after it: pointers
 * into d->pulls go stale (callers keep serials). */
static void forget_pull(struct shoal_daemon *d, uint32_t i)
{
    memmove(&d->pulls[i], &d->pulls[i + 1], (d->npulls - i - 1) * sizeof d->pulls[0]);
    d->npulls--;
}

/* Frees dropped[i], whose jobs have ended, moving the last one there. */
static void free_dropped(struct shoal_daemon *d, uint32_t i)
{
    shoal_swarm_free(d->dropped[i]);
    d->dropped[i] = d->dropped[--d->ndropped];
}

/* ---- the state file ---- */

/* Where the store keeps the signed manifest of |m| (store.c's
 * keep_manifest): <cache>/<repo folder>/.shoal/<id>.manifest. */
static int manifest_path(const struct shoal_daemon *d, const struct shoal_manifest *m, char *out,
                         size_t cap)
{
    char folder[SHOAL_HF_PATH_MAX], hex[65];
    int rv = shoal_hf_repo_folder(folder, sizeof folder, shoal_manifest_repo_type(m),
                                  shoal_manifest_repo_id(m));
    int n;

    if (rv != 0)
        return rv;
    shoal_hex(hex, shoal_manifest_id(m), 32);
    n = snprintf(out, cap, "%s/%s/.shoal/%s.manifest", d->abs_cache, folder, hex);
    return n < 0 || (size_t)n >= cap ? SHOAL_ELIMIT : 0;
}

static bool in_rollout(const struct shoal_daemon *d, const uint8_t id[32]);

/* Writes the open releases to the state file. Called whenever the set (or
 * what the file says of a release: complete, its branch) changes; a
 * failure is logged and tried again at the next change. */
static void save_state(struct shoal_daemon *d)
{
    struct shoal_state_entry *v;
    uint32_t n = 0;
    int rv = 0;

    if (!d->state_on || !d->state_ready)
        return;
    v = calloc(d->nswarms ? d->nswarms : 1, sizeof *v);
    if (!v) {
        LOG_E("state file %s not updated: out of memory", d->state_path);
        return;
    }
    for (uint32_t i = 0; i < d->nswarms && rv == 0; i++) {
        const struct shoal_manifest *m = shoal_swarm_manifest(d->swarms[i]);
        struct shoal_state_entry *e = &v[n++];

        memcpy(e->id, shoal_manifest_id(m), 32);
        e->type = shoal_manifest_repo_type(m);
        snprintf(e->repo, sizeof e->repo, "%s", shoal_manifest_repo_id(m));
        snprintf(e->commit, sizeof e->commit, "%s", shoal_manifest_commit(m));
        snprintf(e->branch, sizeof e->branch, "%s", d->slot[i].branch);
        e->complete = shoal_swarm_complete(d->swarms[i]);
        e->rollout = in_rollout(d, e->id);
        rv = manifest_path(d, m, e->manifest, sizeof e->manifest);
    }
    if (rv == 0) {
        uint8_t h[32];
        /* calloc and snprintf leave every byte of an entry defined. */
        crypto_generichash(h, sizeof h, (const uint8_t *)v, n * sizeof *v, NULL, 0);
        if (d->state_written && memcmp(h, d->state_hash, 32) == 0) {
            free(v);
            return;
        }
        rv = shoal_state_save(d->state_path, d->abs_cache, v, n);
        if (rv == 0) {
            memcpy(d->state_hash, h, 32);
            d->state_written = true;
        }
    }
    if (rv != 0)
        LOG_E("state file %s not updated: %s (a restart may not reopen every release)",
              d->state_path, shoal_strerror(rv));
    else
        LOG_D("state file %s: %u releases", d->state_path, n);
    free(v);
}

/* Whether every pulled and every --manifest release is complete. A
 * --manifest release that is no longer open (dropped) waits for nothing. */
static bool all_pulls_complete(struct shoal_daemon *d)
{
    for (uint32_t i = 0; i < d->npulls; i++) {
        if (!d->pulls[i].swarm || !shoal_swarm_complete(d->pulls[i].swarm) ||
            d->slot[swarm_slot(d, d->pulls[i].swarm)].checking)
            return false;
    }
    for (uint32_t i = 0; i < d->nheld; i++) {
        struct shoal_swarm *s = find_swarm(d, d->held[i]);
        if (s && !shoal_swarm_complete(s))
            return false;
    }
    return true;
}

/* Gives each release being pulled its share of --rate-down: one node-wide
 * cap feeds them all, so each scheduler sizing its requests in flight from
 * the whole cap (shoal_sched_set_rate_down) kept, with two releases
 * pulling, twice what the cap delivers in half a second queued at the
 * peers. Called as releases open, complete and go. */
static void share_rate_down(struct shoal_daemon *d)
{
    uint32_t n = 0;

    if (d->cfg->rate_down == 0)
        return;
    for (uint32_t i = 0; i < d->nswarms; i++)
        n += !shoal_swarm_complete(d->swarms[i]);
    for (uint32_t i = 0; i < d->nswarms; i++)
        if (!shoal_swarm_complete(d->swarms[i]))
            shoal_swarm_set_rate_down(d->swarms[i], d->cfg->rate_down / n);
    if (n != d->rate_shares && n > 1) {
        char all[64], each[64];
        LOG_I("rate-down %s shared by %u releases pulling: %s each bounds its requests in "
              "flight", shoal_fmt_rate(all, sizeof all, d->cfg->rate_down), n,
              shoal_fmt_rate(each, sizeof each, d->cfg->rate_down / n));
    }
    d->rate_shares = n;
}

static void on_complete(void *user, struct shoal_swarm *s)
{
    struct shoal_daemon *d = user;

    share_rate_down(d);
    save_state(d);
    /* Trackers hear it now, not at the next interval: a complete copy
     * means nobody needs to fetch from the origin at once (the tracker
     * names no fetcher while one is announced), and `shoal rollout
     * --status` counts this node done. */
    if (d->trk)
        shoal_trkconn_announce_soon(d->trk);
    if (d->cfg->exit_when_complete && d->npulls + d->nheld > 0 && all_pulls_complete(d)) {
        LOG_I("every pulled release is complete; exiting as asked");
        shoal_daemon_stop(d, 0);
    }
}

static void discover(struct shoal_daemon *d);
static void remove_swarm(struct shoal_daemon *d, struct shoal_swarm *s, const char *why);

/* Marks open release |s| as used now (see struct slot). */
static void touch_swarm(struct shoal_daemon *d, const struct shoal_swarm *s)
{
    uint32_t k = swarm_slot(d, s);
    if (k != UINT32_MAX)
        d->slot[k].used_ms = uv_now(&d->loop);
}

/* A release uploading since the last look counts as used: peers still
 * want it. Called every discovery tick. */
static void note_uploads(struct shoal_daemon *d)
{
    for (uint32_t i = 0; i < d->nswarms; i++) {
        struct shoal_swarm_stats st;
        shoal_swarm_stats(d->swarms[i], &st);
        if (st.tx_chunk_bytes != d->slot[i].tx) {
            d->slot[i].tx = st.tx_chunk_bytes;
            d->slot[i].used_ms = uv_now(&d->loop);
        }
    }
}

static bool in_rollout(const struct shoal_daemon *d, const uint8_t id[32])
{
    for (uint32_t i = 0; i < d->nrollout_ids; i++) {
        if (memcmp(d->rollout_ids[i].id, id, 32) == 0)
            return true;
    }
    return false;
}

/* With max-releases open, closes the complete release used least recently
 * (not one a rollout names, nor |m| itself) so |m| can open: its files
 * stay in the cache, and asking for it again reopens it from there.
 * Pulls that led to it are done and go with it. Returns whether there is
 * room now. */
static bool make_room(struct shoal_daemon *d, const struct shoal_manifest *m)
{
    uint32_t victim = UINT32_MAX;
    char why[160], hex[17], name[SHOAL_MSG_REPO_MAX + 48], mname[SHOAL_MSG_REPO_MAX + 48];

    if (d->ndropped >= MAX_SWARMS)
        return false; /* too many still closing */
    note_uploads(d);
    for (uint32_t i = 0; i < d->nswarms; i++) {
        const struct shoal_swarm *s = d->swarms[i];
        /* Not one a loader is still receiving: its used_ms says when it
         * asked, not that it is done (a slow loader was cut off). */
        if (!shoal_swarm_complete(s) || in_rollout(d, shoal_swarm_id(s)) ||
            memcmp(shoal_swarm_id(s), shoal_manifest_id(m), 32) == 0 ||
            shoal_loader_srv_watching(d->loader, s))
            continue;
        if (victim == UINT32_MAX || d->slot[i].used_ms < d->slot[victim].used_ms)
            victim = i;
    }
    if (victim == UINT32_MAX)
        return false;
    struct shoal_swarm *v = d->swarms[victim];
    const struct shoal_manifest *vm = shoal_swarm_manifest(v);
    hex8(hex, shoal_swarm_id(v));
    (void)shoal_manifest_name(vm, name, sizeof name);
    (void)shoal_manifest_name(m, mname, sizeof mname);
    LOG_I("release %s (%s) closed to make room for %s: max-releases (%llu) are open and it "
          "was used least recently, %.0f s ago; its files stay in the cache, and asking for "
          "it again reopens it", hex, name, mname,
          (unsigned long long)d->cfg->max_releases,
          (double)(uv_now(&d->loop) - d->slot[victim].used_ms) / 1000.0);
    snprintf(why, sizeof why, "closed on this node to make room for another release");
    for (uint32_t i = 0; i < d->npulls;) {
        if (d->pulls[i].swarm == v) {
            forget_pull(d, i);
            continue;
        }
        i++;
    }
    remove_swarm(d, v, why);
    return true;
}

/* Why no release can be closed for another: what holds each slot. The
 * remedy differs (a rollout's release comes back after a drop until the
 * rollout is removed). */
static void slots_why(const struct shoal_daemon *d, char *why, size_t whylen)
{
    uint32_t nroll = 0, nload = 0, npull = 0, ndone = 0;
    char done[32] = "";

    for (uint32_t i = 0; i < d->nswarms; i++) {
        const struct shoal_swarm *o = d->swarms[i];
        if (in_rollout(d, shoal_swarm_id(o)))
            nroll++;
        else if (shoal_loader_srv_watching(d->loader, o))
            nload++;
        else if (!shoal_swarm_complete(o))
            npull++;
        else
            ndone++;
    }
    if (ndone)
        snprintf(done, sizeof done, ", %u complete", ndone);
    snprintf(why, whylen,
             "max-releases reached (%u open): %u named by a tracker rollout, %u sending files "
             "to a loader, %u still pulling%s; %s, or raise max-releases",
             d->nswarms, nroll, nload, npull, done,
             nroll && !npull && !nload && !ndone
                 ? "a rollout's release comes back after shoal drop: remove its rollout "
                   "(shoal rollout --remove)"
                 : "drop one that is not a rollout's (shoal drop) or ask again once the "
                   "loaders are done");
}

/* Pulls whose release is complete have done their job: when the table is
 * full their slots go back (asking again finds the release open, and a
 * branch is resolved anew). Not with --exit-when-complete, which counts
 * them. Returns whether a slot is free. */
static bool pull_room(struct shoal_daemon *d)
{
    for (uint32_t i = 0; d->npulls >= SHOAL_CONFIG_LIST_MAX && !d->cfg->exit_when_complete &&
                         i < d->npulls;) {
        const struct pull *p = &d->pulls[i];
        if (p->swarm && shoal_swarm_complete(p->swarm)) {
            forget_pull(d, i);
            continue;
        }
        i++;
    }
    return d->npulls < SHOAL_CONFIG_LIST_MAX;
}

/* Opens release |m| (taken) and adds it, writing refs/<branch> once it is
 * complete when |branch| is not NULL; returns the swarm, or NULL with the
 * error in |*err| and the reason for people in |why|. With max-releases
 * open and |may_close|, it first closes one (make_room), which removes
 * pulls from d->pulls: a caller holding a pull finds it again by its
 * serial. Without |may_close| it is refused then (SHOAL_ELIMIT), and
 * logging it is the caller's. */
static struct shoal_swarm *add_release(struct shoal_daemon *d, struct shoal_manifest *m,
                                       const uint8_t *signed_mf, size_t len, const char *branch,
                                       bool may_close, int *err, char *why, size_t whylen)
{
    struct shoal_swarm *s = NULL;
    char hex[17];

    hex8(hex, shoal_manifest_id(m));
    if (d->nswarms >= d->cfg->max_releases && (!may_close || !make_room(d, m))) {
        slots_why(d, why, whylen);
        if (may_close)
            LOG_E("release %s: %s", hex, why);
        *err = SHOAL_ELIMIT;
        shoal_manifest_free(m);
        return NULL;
    }
    /* Dropped a moment ago: its store must be closed before another opens
     * the same files, or its last sidecar flush could undo the new one's. */
    for (uint32_t i = 0; i < d->ndropped; i++) {
        if (memcmp(shoal_swarm_id(d->dropped[i]), shoal_manifest_id(m), 32) != 0)
            continue;
        if (!shoal_swarm_idle(d->dropped[i])) {
            snprintf(why, whylen, "the release was just dropped and is still closing; ask "
                                  "again in a moment");
            *err = SHOAL_EBUSY;
            shoal_manifest_free(m);
            return NULL;
        }
        free_dropped(d, i);
        break;
    }
    *err = shoal_swarm_new(&s, &d->scfg, &d->hooks, m, signed_mf, len, branch, why, whylen);
    if (*err != 0)
        return NULL;
    d->slot[d->nswarms].tag = ++d->next_serial;
    snprintf(d->slot[d->nswarms].branch, sizeof d->slot[0].branch, "%s",
             branch ? branch : "");
    d->slot[d->nswarms].used_ms = d->slot[d->nswarms].opened_ms = uv_now(&d->loop);
    d->slot[d->nswarms].tx = 0;
    d->slot[d->nswarms].reput_ms = 0;
    d->slot[d->nswarms].lease_trk = UINT32_MAX;
    d->slot[d->nswarms].checking = d->slot[d->nswarms].check_more = false;
    d->slot[d->nswarms].check_asked[0] = '\0';
    d->swarms[d->nswarms++] = s;
    save_state(d);
    /* Every tracker must be able to lease it, not just the one it was
     * resolved from: with that one down, the others would refuse every
     * lease ("not published to this tracker") and the fleet stall. Those
     * not ready get it when they log in (trk_on_ready); one that has it
     * from us already is skipped. */
    if (d->trk)
        shoal_trkconn_put_manifest(d->trk, SHOAL_TRKCONN_NONE, shoal_swarm_id(s), signed_mf, len);
    /* The tracker's answer carries this release's fleet role: ask soon
     * rather than at the next interval; and ask for peers now, not at the
     * next discovery tick (a rollout's first second is otherwise idle). */
    if (d->trk) {
        shoal_trkconn_announce_soon(d->trk);
        discover(d);
    }
    LOG_I("release %s: %s@%s, %u files, %u chunks, %llu bytes", hex,
          shoal_manifest_repo_id(shoal_swarm_manifest(s)),
          shoal_manifest_commit(shoal_swarm_manifest(s)),
          shoal_manifest_nfiles(shoal_swarm_manifest(s)),
          shoal_manifest_nchunks(shoal_swarm_manifest(s)),
          (unsigned long long)shoal_manifest_total_size(shoal_swarm_manifest(s)));
    return s;
}

static void start_release(struct shoal_daemon *d, struct shoal_swarm *s)
{
    if (shoal_swarm_start(s) != 0)
        return;
    share_rate_down(d);
    shoal_loader_srv_release_opened(d->loader, s);
    for (uint32_t i = 0; i < d->npeers; i++) {
        if (shoal_peer_ready(d->peers[i]))
            shoal_swarm_peer_ready(s, d->peers[i]);
    }
    if (shoal_swarm_complete(s))
        on_complete(d, s);
}

#define PULL_RETRY_FIRST_MS 30000u
#define PULL_RETRY_MAX_MS 600000u

static void on_retry(uv_timer_t *t);

/* Wakes when the first failed pull's back-off ends: asking again must not
 * wait for a peer to connect or for someone to run `shoal pull`. */
static void arm_retry(struct shoal_daemon *d)
{
    uint64_t now = uv_now(&d->loop), next = UINT64_MAX;

    for (uint32_t i = 0; i < d->npulls; i++) {
        const struct pull *pl = &d->pulls[i];
        if (pl->failed && pl->retry_ms > now && pl->retry_ms < next)
            next = pl->retry_ms;
    }
    if (next != UINT64_MAX && !d->stopping)
        uv_timer_start(&d->retry, on_retry, next - now, 0);
}

/* Whether release |id| was closed to be opened again (reopen_gone). */
static bool reopen_pending(const struct shoal_daemon *d, const uint8_t id[32])
{
    for (uint32_t i = 0; i < d->nreopens; i++) {
        if (memcmp(d->reopens[i].id, id, 32) == 0)
            return true;
    }
    return false;
}

/* Whether pull |pl| may ask for its manifest now: not while a failed one
 * waits out its back-off (each answer would only fail again). */
static bool pull_may_ask(const struct shoal_daemon *d, const struct pull *pl)
{
    /* A release being opened again (reopen_gone) comes from its own
     * manifest: one from a tracker or peer meanwhile would find the old
     * one still closing and fail the pull. */
    if (!pl->by_name && reopen_pending(d, pl->id))
        return false;
    return !pl->failed || uv_now((uv_loop_t *)&d->loop) >= pl->retry_ms;
}

/* Drops a UTF-8 sequence cut short at the end of |s| (by a truncating
 * snprintf): status messages must be valid UTF-8 or the whole answer is
 * refused, and reasons carry the Hub's text ("—" is three bytes). */
static void utf8_cut(char *s)
{
    size_t n = strlen(s), i = n, need;

    while (i > 0 && n - i < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0 || ((unsigned char)s[i - 1] & 0x80) == 0)
        return; /* ends in ASCII (or holds nothing but continuation bytes) */
    need = ((unsigned char)s[i - 1] & 0xE0) == 0xC0   ? 2
           : ((unsigned char)s[i - 1] & 0xF0) == 0xE0 ? 3
           : ((unsigned char)s[i - 1] & 0xF8) == 0xF0 ? 4
                                                       : 0;
    if (need != n - i + 1)
        s[i - 1] = '\0';
}

/* Release |m| of pull |pl| did not open (|err|, |why|): the pull is marked
 * failed for the CLI, status and loaders, and asks again after a back-off.
 * Fills the pull's name from |m| so status names the release. */
static void pull_failed(struct shoal_daemon *d, struct pull *pl, const char *name, int err,
                        const char *why)
{
    if (!pl->name[0])
        snprintf(pl->name, sizeof pl->name, "%s", name);
    pl->failed = true;
    pl->err = err ? err : -EIO;
    snprintf(pl->why, sizeof pl->why, "%s", why[0] ? why : shoal_strerror(pl->err));
    utf8_cut(pl->why);
    pl->backoff_ms = pl->backoff_ms ? pl->backoff_ms * 2 : PULL_RETRY_FIRST_MS;
    if (pl->backoff_ms > PULL_RETRY_MAX_MS)
        pl->backoff_ms = PULL_RETRY_MAX_MS;
    pl->retry_ms = uv_now(&d->loop) + pl->backoff_ms;
    LOG_E("pull %s failed: %s; trying again in %u s (or at the next `shoal pull`)", pl->name,
          pl->why, pl->backoff_ms / 1000);
    shoal_loader_srv_release_failed(d->loader, pl->name, pl->why);
    if (pl->asked[0] && strcmp(pl->asked, pl->name) != 0)
        shoal_loader_srv_release_failed(d->loader, pl->asked, pl->why);
    /* Loaders may wait for the same release by manifest id: once the id
     * is known (always, for a release that failed to open), they are told
     * too, instead of waiting for a release that will not come. */
    if (!pl->by_name) {
        char hex[65];
        shoal_hex(hex, pl->id, 32);
        shoal_loader_srv_release_failed(d->loader, hex, pl->why);
    }
    arm_retry(d);
}

static void remove_swarm(struct shoal_daemon *d, struct shoal_swarm *s, const char *why);

/* Whether release |s| is complete in the cache, so that a pull finding it
 * so checks its files first (start_check): deleted while it was open
 * (huggingface-cli delete-cache removes the snapshot, its blobs and its
 * refs), the store still holds the deleted files open, and the release
 * would go on saying complete (and serving them) with nothing left in the
 * cache. */
static bool needs_check(const struct shoal_daemon *d, const struct shoal_swarm *s)
{
    return !(d->scfg.store_flags & SHOAL_STORE_MEMORY) && shoal_swarm_complete(s);
}

static void check_done(void *user, struct shoal_swarm *s, int rv, const char *missing,
                       const char *branch, int ref_rv);

/* Checks complete release |s|'s files in the cache (needs_check) on a
 * worker: a link and a blob per file, which for thousands of files on a
 * slow disk stalled every peer and client when done here. refs/|branch|
 * (NULL: none) is written once they are found in place. One check at a
 * time; a branch asked meanwhile gets one more. check_done ends it. */
static void start_check(struct shoal_daemon *d, struct shoal_swarm *s, const char *branch)
{
    uint32_t k = swarm_slot(d, s);
    int rv;

    if (k == UINT32_MAX)
        return;
    if (d->slot[k].checking) {
        if (branch && branch[0] && !d->slot[k].check_more) {
            d->slot[k].check_more = true;
            snprintf(d->slot[k].check_next, sizeof d->slot[k].check_next, "%s", branch);
        }
        return;
    }
    if ((rv = shoal_swarm_check_cache(s, branch && branch[0] ? branch : NULL, check_done, d)) != 0) {
        /* No worker job (out of memory): here, as before. */
        char path[SHOAL_HF_PATH_MAX] = "?";
        const struct shoal_manifest *m = shoal_swarm_manifest(s);
        uint32_t miss = 0;
        int brv = 0;

        rv = shoal_hf_snapshot_check(d->cache_dir, m, &miss);
        if (rv != 0 && miss < shoal_manifest_nfiles(m))
            snprintf(path, sizeof path, "%s", shoal_manifest_file(m, miss)->path);
        if (rv == 0 && branch && branch[0])
            brv = shoal_swarm_set_branch(s, branch);
        d->slot[k].checking = true;
        check_done(d, s, rv, path, branch && branch[0] ? branch : NULL, brv);
        return;
    }
    d->slot[k].checking = true;
    LOG_D("release %s: checking that its files are still in the cache",
          shoal_manifest_commit(shoal_swarm_manifest(s)));
}

/* A pull finds release |s| complete but its files gone (files_gone, |missing|
 * the first): it is closed, and opened again once closed (on_reap), which
 * fetches what is missing; pulls bound to it wait for that (the ref is
 * written by the new one, once its files are back). |branch| (NULL: the
 * one it had) goes to the new one. Returns 0, or SHOAL_ELIMIT / -ENOMEM
 * when it cannot (then |s| is left as it is). */
static int reopen_gone(struct shoal_daemon *d, struct shoal_swarm *s, const char *branch,
                       const char *missing)
{
    uint32_t k = swarm_slot(d, s);
    const uint8_t *mf;
    struct reopen *r;
    size_t len = 0;
    char hex[17], name[SHOAL_MSG_REPO_MAX + 48];

    if (k == UINT32_MAX || d->nreopens >= MAX_SWARMS || d->ndropped >= MAX_SWARMS)
        return SHOAL_ELIMIT;
    mf = shoal_swarm_signed(s, &len);
    r = &d->reopens[d->nreopens];
    if (!mf || !(r->mf = malloc(len ? len : 1)))
        return -ENOMEM;
    memcpy(r->mf, mf, len);
    r->len = len;
    memcpy(r->id, shoal_swarm_id(s), 32);
    snprintf(r->branch, sizeof r->branch, "%s", branch && branch[0] ? branch : d->slot[k].branch);
    d->nreopens++;
    hex8(hex, shoal_swarm_id(s));
    (void)shoal_manifest_name(shoal_swarm_manifest(s), name, sizeof name);
    LOG_W("release %s (%s): its files are gone from the cache (%s is not in snapshots/%s: "
          "deleted with huggingface-cli delete-cache?); closing it and opening it again to "
          "fetch them", hex, name, missing, shoal_manifest_commit(shoal_swarm_manifest(s)));
    for (uint32_t i = 0; i < d->npulls; i++) {
        struct pull *pl = &d->pulls[i];
        if (pl->swarm != s)
            continue;
        pl->swarm = NULL;
        pl->by_name = false;
        memcpy(pl->id, r->id, 32);
    }
    remove_swarm(d, s, "its files were deleted from the cache: it is opened again to fetch "
                       "them; ask again");
    return 0;
}

/* start_check's answer: release |s|'s files are in the cache (|rv| 0), or
 * gone (reopen_gone), or could not be checked (taken as there, as a
 * restart would find out). Pulls bound to it then see it complete. */
static void check_done(void *user, struct shoal_swarm *s, int rv, const char *missing,
                       const char *branch, int ref_rv)
{
    struct shoal_daemon *d = user;
    uint32_t k = swarm_slot(d, s);
    char asked[SHOAL_MSG_REPO_MAX + 1], next[SHOAL_STATE_BRANCH_MAX + 1];
    bool loader, more;

    if (k == UINT32_MAX)
        return; /* closed or dropped meanwhile: its pulls were told */
    more = d->slot[k].check_more;
    loader = d->slot[k].check_loader;
    snprintf(asked, sizeof asked, "%s", d->slot[k].check_asked);
    snprintf(next, sizeof next, "%s", d->slot[k].check_next);
    d->slot[k].checking = d->slot[k].check_more = false;
    d->slot[k].check_asked[0] = '\0';
    if (d->stopping)
        return;
    if ((rv == SHOAL_ENOTFOUND || rv == SHOAL_EBADMSG) && shoal_swarm_complete(s)) {
        uint8_t id[32];
        int grv;

        memcpy(id, shoal_swarm_id(s), 32);
        if ((grv = reopen_gone(d, s, branch, missing)) != 0) {
            char why[SHOAL_CTL_REASON_MAX + 1];

            snprintf(why, sizeof why, "its files are gone from the cache, and it cannot be "
                     "opened again now to fetch them (%s)", shoal_strerror(grv));
            for (uint32_t i = 0; i < d->npulls; i++) {
                if (d->pulls[i].swarm == s) {
                    d->pulls[i].swarm = NULL;
                    pull_failed(d, &d->pulls[i], d->pulls[i].name, grv, why);
                }
            }
            if (!asked[0] || !pull_room(d))
                return;
        }
        /* The pulls bound to it wait for it (reopen_gone); with none, the
         * `shoal pull` that asked is a new pull of its id, followed under
         * the name it asked. */
        struct pull *pl = NULL;
        for (uint32_t i = 0; i < d->npulls && !pl; i++) {
            if (!d->pulls[i].swarm && !d->pulls[i].by_name &&
                memcmp(d->pulls[i].id, id, 32) == 0)
                pl = &d->pulls[i];
        }
        if (!pl && asked[0] && pull_room(d)) {
            pl = new_pull(d);
            memcpy(pl->id, id, 32);
            snprintf(pl->name, sizeof pl->name, "%s", asked);
            snprintf(pl->asked, sizeof pl->asked, "%s", asked);
            pl->loader_only = loader;
            d->npulls++;
            if (grv != 0) {
                char why[SHOAL_CTL_REASON_MAX + 1];
                snprintf(why, sizeof why, "%s: its files are gone from the cache, and it "
                         "cannot be opened again now to fetch them (%s)", asked,
                         shoal_strerror(grv));
                pull_failed(d, pl, asked, grv, why);
            }
        }
        return;
    }
    if (rv != 0 && rv != SHOAL_ENOTFOUND && rv != SHOAL_EBADMSG)
        LOG_W("release %s: could not check that its files are still in the cache: %s",
              shoal_manifest_commit(shoal_swarm_manifest(s)), shoal_strerror(rv));
    if (branch && ref_rv != 0) {
        char why[SHOAL_CTL_REASON_MAX + 1], err[256];

        /* Complete, but not by the name it was asked for: huggingface_hub
         * finds nothing by it, so the pull does not say complete. */
        shoal_swarm_last_error(s, err, sizeof err);
        LOG_E("release %s: complete here, but refs/%s could not be written: %s",
              shoal_manifest_commit(shoal_swarm_manifest(s)), branch,
              err[0] ? err : shoal_strerror(ref_rv));
        snprintf(why, sizeof why, "complete here, but refs/%.60s could not be written in the "
                 "cache (%.150s): tools reading the cache by that name find nothing; pull it "
                 "again once that is fixed", branch, err[0] ? err : shoal_strerror(ref_rv));
        for (uint32_t i = 0; i < d->npulls; i++) {
            if (d->pulls[i].swarm == s && d->pulls[i].ref[0] &&
                strcmp(d->pulls[i].ref, branch) == 0) {
                d->pulls[i].swarm = NULL;
                pull_failed(d, &d->pulls[i], d->pulls[i].name, ref_rv, why);
            }
        }
    }
    /* Loaders waiting for a branch name get it now, its ref written. */
    for (uint32_t i = 0; i < d->npulls; i++) {
        if (d->pulls[i].swarm == s && d->pulls[i].ref[0])
            shoal_loader_srv_release_named(d->loader, s, d->pulls[i].asked);
    }
    if (more)
        start_check(d, s, next);
    else if (shoal_swarm_complete(s))
        on_complete(d, s);
}

/* Opens release |r| again (reopen_gone), its old swarm freed: the pulls
 * waiting for it are bound to the new one, or fail with why it did not
 * open. */
static void start_release(struct shoal_daemon *d, struct shoal_swarm *s);

static void reopen_now(struct shoal_daemon *d, const struct reopen *r)
{
    struct shoal_manifest *m = NULL;
    struct shoal_swarm *s = find_swarm(d, r->id);
    char why[SHOAL_CTL_REASON_MAX + 1] = "", hex[65];
    bool fresh = false;
    int rv = 0;

    if (!s) {
        rv = shoal_manifest_parse(&m, r->mf, r->len, d->publishers, NULL);
        /* Asked for by a pull, as a fresh one would be: it may close a
         * complete release nobody needs, for room. */
        if (rv == 0)
            s = add_release(d, m, r->mf, r->len, r->branch[0] ? r->branch : NULL, true, &rv,
                            why, sizeof why); /* takes m */
        else
            snprintf(why, sizeof why, "its manifest: %s", shoal_strerror(rv));
        fresh = s != NULL;
    }
    shoal_hex(hex, r->id, 32);
    for (uint32_t i = 0; i < d->npulls; i++) {
        struct pull *pl = &d->pulls[i];
        if (pl->swarm || pl->by_name || memcmp(pl->id, r->id, 32) != 0)
            continue;
        if (s) {
            pl->swarm = s;
            pl->failed = false;
        } else {
            pull_failed(d, pl, hex, rv, why);
        }
    }
    if (fresh)
        start_release(d, s);
}

/* Pull |pl| names a branch or tag (|ref|) and has just been bound to
 * |s|, a release open already: refs/<ref> is still written, and loaders
 * waiting for the name get its files (both happen at open otherwise). */
static void follow_branch(struct shoal_daemon *d, const struct pull *pl, struct shoal_swarm *s)
{
    int rv;

    if (!pl->ref[0])
        return;
    uint32_t k = swarm_slot(d, s);

    if (k != UINT32_MAX && strcmp(d->slot[k].branch, pl->ref) != 0) {
        snprintf(d->slot[k].branch, sizeof d->slot[0].branch, "%.*s",
                 (int)SHOAL_STATE_BRANCH_MAX, pl->ref);
        save_state(d);
    }
    /* Complete: the ref (and the loaders) wait for the check of its files
     * (start_check), which writes it. */
    if (needs_check(d, s)) {
        start_check(d, s, pl->ref);
        return;
    }
    if ((rv = shoal_swarm_set_branch(s, pl->ref)) != 0)
        LOG_W("pull %s: writing refs/%s: %s", pl->asked, pl->ref, shoal_strerror(rv));
    shoal_loader_srv_release_named(d->loader, s, pl->asked);
}

/* Pull |pl| found release |s| open here: bound to it. A complete one has
 * its files checked first (start_check; follow_branch starts it for a
 * branch), and counts as complete once they are found in place. */
static void bind_open(struct shoal_daemon *d, struct pull *pl, struct shoal_swarm *s)
{
    pl->swarm = s;
    pl->failed = false;
    if (needs_check(d, s)) {
        if (pl->ref[0])
            follow_branch(d, pl, s);
        else
            start_check(d, s, NULL);
        return;
    }
    follow_branch(d, pl, s);
    if (shoal_swarm_complete(s))
        on_complete(d, s);
}

static void on_manifest_data(struct shoal_daemon *d, struct shoal_peer *p,
                             const struct shoal_msg_manifest *md)
{
    struct shoal_manifest *m = NULL;
    struct pull *pl = NULL;
    struct shoal_swarm *s;
    char hex[17], why[sizeof pl->why], name[SHOAL_MSG_REPO_MAX + 48];
    int rv;

    for (uint32_t i = 0; i < d->npulls; i++) {
        if (memcmp(d->pulls[i].id, md->manifest_id, 32) == 0 && !d->pulls[i].swarm &&
            pull_may_ask(d, &d->pulls[i]))
            pl = &d->pulls[i];
    }
    if (!pl)
        return; /* not asked for, or already have it */
    hex8(hex, md->manifest_id);
    rv = shoal_manifest_parse(&m, md->signed_manifest.p, md->signed_manifest.len,
                              d->publishers, NULL);
    if (rv == 0 && memcmp(shoal_manifest_id(m), md->manifest_id, 32) != 0)
        rv = SHOAL_EBADHASH;
    if (rv != 0) {
        pl->refused = rv;
        shoal_manifest_free(m);
        /* Bytes that do not hash to the id asked for, or whose signature
         * fails, are a lie (an honest peer sends what it verified itself):
         * the peer goes, so each connection costs this node one such check
         * at most. A signer we do not trust, a format version we do not
         * know or our own failure say nothing against the peer. */
        if (rv == SHOAL_EUNTRUSTED || rv == SHOAL_EVERSION || rv == -ENOMEM || rv == -EIO) {
            LOG_W("peer %s sent manifest %s that we refuse: %s", shoal_peer_name(p), hex,
                  shoal_strerror(rv));
            return;
        }
        snprintf(why, sizeof why, "manifest %s refused: %s", hex, shoal_strerror(rv));
        LOG_W("peer %s sent manifest %s that we refuse: %s; closing the connection",
              shoal_peer_name(p), hex, shoal_strerror(rv));
        shoal_peer_bye(p, why);
        return;
    }
    LOG_I("manifest %s received from peer %s, signature verified", hex, shoal_peer_name(p));
    (void)shoal_manifest_name(m, name, sizeof name);
    uint64_t serial = pl->serial;
    s = add_release(d, m, md->signed_manifest.p, md->signed_manifest.len,
                    pl->ref[0] ? pl->ref : NULL, true, &rv, why, sizeof why);
    /* Opening may have closed another release, and the pulls that led to
     * it: ours is still there (it had no release), maybe moved. */
    pl = find_pull_serial(d, serial);
    if (!pl)
        return; /* cannot happen: it had no release, so make_room kept it */
    if (!s) {
        pull_failed(d, pl, name, rv, why);
        return;
    }
    pl->swarm = s;
    pl->failed = false;
    start_release(d, s);
}

static void want_manifests(struct shoal_daemon *d, struct shoal_peer *p)
{
    struct shoal_msg m;
    for (uint32_t i = 0; i < d->npulls; i++) {
        if (d->pulls[i].swarm || d->pulls[i].by_name || /* by_name: the tracker resolves it */
            !pull_may_ask(d, &d->pulls[i]))
            continue;
        memset(&m, 0, sizeof m);
        m.type = SHOAL_MSG_WANT_MANIFEST;
        memcpy(m.u.want_manifest.manifest_id, d->pulls[i].id, 32);
        (void)shoal_peer_send(p, &m);
    }
}

/* manifests out under a budget */

static struct shoal_peer *peer_by_id(struct shoal_daemon *d, uint64_t id)
{
    for (uint32_t i = 0; i < d->npeers; i++) {
        if (shoal_peer_id(d->peers[i]) == id)
            return d->peers[i];
    }
    return NULL;
}

static void on_mfq_timer(uv_timer_t *t);

/* Sends the manifests waiting in d->mfq that the budget lets go now. */
static void pump_manifests(struct shoal_daemon *d)
{
    struct shoal_mfq_req q;

    while (!d->stopping && shoal_mfq_pop(d->mfq, uv_now(&d->loop), &q)) {
        struct shoal_peer *p = peer_by_id(d, q.peer);
        struct shoal_swarm *s = find_swarm(d, q.id);
        struct shoal_msg r;
        size_t mlen;
        int rv;

        if (!p || !s || !shoal_peer_ready(p)) {
            shoal_mfq_end(d->mfq, q.seq); /* asked, then left */
            continue;
        }
        memset(&r, 0, sizeof r);
        r.type = SHOAL_MSG_MANIFEST_DATA;
        memcpy(r.u.manifest.manifest_id, q.id, 32);
        r.u.manifest.signed_manifest.p = shoal_swarm_signed(s, &mlen);
        r.u.manifest.signed_manifest.len = (uint32_t)mlen;
        rv = shoal_peer_send(p, &r);
        if (rv != 0) {
            LOG_W("peer %s: cannot send manifest: %s", shoal_peer_name(p), shoal_strerror(rv));
            shoal_mfq_end(d->mfq, q.seq);
            continue;
        }
        /* The copy in the peer's queue is freed once written; on_drain says
         * when (or on_close, if the peer goes first). */
        shoal_mfq_sent(d->mfq, q.seq, shoal_peer_notify_written(p));
        (void)shoal_mfq_written(d->mfq, q.peer, shoal_peer_tx_bytes(p));
    }
    if (d->stopping || shoal_mfq_waiting(d->mfq) == 0)
        uv_timer_stop(&d->mfq_timer);
    else if (!uv_is_active((uv_handle_t *)&d->mfq_timer))
        uv_timer_start(&d->mfq_timer, on_mfq_timer, MANIFEST_STALL_MS / 4,
                       MANIFEST_STALL_MS / 4);
}

static void on_mfq_timer(uv_timer_t *t)
{
    struct shoal_daemon *d = t->data;
    uint64_t now = uv_now(&d->loop);
    uint32_t n;

    if (now <= MANIFEST_STALL_MS)
        return;
    n = shoal_mfq_expire(d->mfq, now - MANIFEST_STALL_MS);
    if (n > 0)
        LOG_W("%u manifest answers not written after %d s: serving the next ones anyway",
              n, MANIFEST_STALL_MS / 1000);
    pump_manifests(d);
}

static void want_manifest(struct shoal_daemon *d, struct shoal_peer *p, const uint8_t id[32],
                          size_t len)
{
    int rv = shoal_mfq_push(d->mfq, shoal_peer_id(p), id, len);

    if (rv != 0 && rv != SHOAL_EEXIST) {
        LOG_W("peer %s: cannot queue manifest: %s", shoal_peer_name(p), shoal_strerror(rv));
        return;
    }
    pump_manifests(d);
    if (shoal_mfq_waiting(d->mfq) > 0)
        LOG_D("peer %s: manifest answer waits its turn (%u waiting, budget %llu bytes)",
              shoal_peer_name(p), shoal_mfq_waiting(d->mfq),
              (unsigned long long)d->cfg->manifest_budget);
}

static void peer_on_drain(struct shoal_peer *p, void *user)
{
    struct shoal_daemon *d = user;
    if (shoal_mfq_written(d->mfq, shoal_peer_id(p), shoal_peer_tx_bytes(p)) > 0)
        pump_manifests(d);
}

/* ---- peers ---- */

static uint32_t peer_limit(const struct shoal_daemon *d)
{
    return (uint32_t)d->cfg->max_peers; /* 1-MAX_PEERS_HARD (check_ranges) */
}

static uint32_t unauth_limit(const struct shoal_daemon *d)
{
    return (uint32_t)d->cfg->max_unauth; /* 1-MAX_UNAUTH_HARD (check_ranges) */
}

/* Connections that count against max-peers. */
static uint32_t counted_peers(const struct shoal_daemon *d)
{
    return d->npeers - d->nunauth;
}

/* Takes |p| out of the handshake pool; false if it was not there. */
static bool unauth_remove(struct shoal_daemon *d, struct shoal_peer *p)
{
    for (uint32_t i = 0; i < d->nunauth; i++) {
        if (d->unauth[i] == p) {
            memmove(&d->unauth[i], &d->unauth[i + 1], (d->nunauth - i - 1) * sizeof p);
            d->nunauth--;
            return true;
        }
    }
    return false;
}

/* Takes |p| out of peers[] (and the pool): a connection being closed that
 * must no longer hold a slot. Returns true if it was there. */
static bool forget_peer(struct shoal_daemon *d, struct shoal_peer *p)
{
    unauth_remove(d, p);
    for (uint32_t i = 0; i < d->npeers; i++) {
        if (d->peers[i] == p) {
            d->peers[i] = d->peers[--d->npeers];
            return true;
        }
    }
    return false;
}

/* Slots of victim_of_most()'s count table: a power of two over twice the
 * pool's largest size, so probes stay short. */
#define SRC_COUNT_SLOTS 512u

static uint32_t src_slot(const uint8_t key[SHOAL_SRC_KEY_LEN])
{
    uint32_t h = 2166136261u; /* FNV-1a; collisions only cost probes */
    for (unsigned i = 0; i < SHOAL_SRC_KEY_LEN; i++)
        h = (h ^ key[i]) * 16777619u;
    return h & (SRC_COUNT_SLOTS - 1);
}

/* The pool's connection to evict: the oldest of the source (netsrc.h)
 * holding the most of them (*|held| of them). O(pool): a count per source
 * in a table on the stack, then one walk from the oldest. */
static uint32_t victim_of_most(const struct shoal_daemon *d, uint32_t *held)
{
    const uint8_t *keys[SRC_COUNT_SLOTS] = { NULL };
    uint16_t count[SRC_COUNT_SLOTS] = { 0 };
    uint32_t at[MAX_UNAUTH_HARD], most = 0, victim = 0;

    for (uint32_t i = 0; i < d->nunauth; i++) {
        const uint8_t *k = shoal_peer_source(d->unauth[i]);
        uint32_t j = src_slot(k);
        while (keys[j] && memcmp(keys[j], k, SHOAL_SRC_KEY_LEN) != 0)
            j = (j + 1) & (SRC_COUNT_SLOTS - 1);
        keys[j] = k;
        at[i] = j;
        if (++count[j] > most)
            most = count[j];
    }
    for (uint32_t i = 0; i < d->nunauth; i++) {
        if (count[at[i]] == most) {
            victim = i;
            break;
        }
    }
    *held = most;
    return victim;
}

/* Closes the oldest inbound connection still in its handshake of the
 * address holding the most of them, to admit a new one when the pool is
 * full. An idle connection costs its opener nothing, so whoever opens
 * them fastest holds the pool: evicting the oldest gives every newcomer at
 * least the time until max-unauth more arrive, which a real node's
 * handshake (one round trip) needs, and taking it from the address holding
 * the most makes one address opening connections as fast as it can evict
 * its own, not another address's handshake in progress. */
static void evict_oldest(struct shoal_daemon *d)
{
    uint32_t held;
    uint32_t v = victim_of_most(d, &held);
    struct shoal_peer *old = d->unauth[v];
    uint64_t now = uv_now(&d->loop);

    forget_peer(d, old);
    d->evicted_total++;
    if (!d->evict_logged_ms || now - d->evict_logged_ms >= EVICT_LOG_MS) {
        LOG_W("peer %s closed: evicted, the oldest handshake of the address holding the "
              "most (%u of %u; max-unauth); %llu evicted since start, logged at most every %u s",
              shoal_peer_name(old), held, unauth_limit(d), (unsigned long long)d->evicted_total,
              EVICT_LOG_MS / 1000);
        d->evict_logged_ms = now ? now : 1;
    }
    shoal_peer_close(old, EVICTED, false);
}

/* An inbound HELLO is about to be checked: a captured HELLO passes, so
 * each source may have --hello-rate checked a second (each costs a
 * signature check, our answer and its signature); past that it is refused
 * unchecked, logged at most every EVICT_LOG_MS. */
static const char *peer_before_hello(struct shoal_peer *p, void *user)
{
    struct shoal_daemon *d = user;
    uint64_t now = uv_now(&d->loop);

    if (shoal_srclimit_take(d->hello_budget, shoal_peer_source(p), now))
        return NULL;
    d->hello_refused_total++;
    if (!d->hello_logged_ms || now - d->hello_logged_ms >= EVICT_LOG_MS) {
        LOG_W("peer %s refused: more than %llu HELLOs a second from its address (hello-rate); "
              "%llu refused since start, %llu since the last such line, logged at most every "
              "%u s",
              shoal_peer_name(p), (unsigned long long)d->cfg->hello_rate,
              (unsigned long long)d->hello_refused_total,
              (unsigned long long)(d->hello_refused_total - d->hello_refused_logged),
              EVICT_LOG_MS / 1000);
        d->hello_logged_ms = now ? now : 1;
        d->hello_refused_logged = d->hello_refused_total;
    }
    return HELLO_BUSY;
}

static const char *peer_on_hello(struct shoal_peer *p, void *user)
{
    struct shoal_daemon *d = user;
    const uint8_t *pk = shoal_session_peer_pk(shoal_peer_session(p));

    if (memcmp(pk, d->pk.pk, 32) == 0)
        return "connected to ourselves";
    /* A node dialled at a tracker's word must be the one it
     * named: else a tracker could point us at any service under any key. */
    for (uint32_t i = 0; i < d->ndials; i++) {
        if (d->dials[i].p == p && memcmp(d->dials[i].pk, pk, 32) != 0)
            return "not the node the tracker listed at this address";
    }
    for (size_t i = 0; i < d->cfg->peers.n; i++) {
        if (d->static_conn[i] == p) {
            memcpy(d->static_pk[i], pk, 32);
            d->static_pk_known[i] = true;
        }
    }
    if (is_banned(d, pk))
        return "node is banned here";
    /* Our own dials hold their slot from the start. */
    if (!shoal_peer_initiator(p) && counted_peers(d) >= peer_limit(d))
        return "connection limit reached";
    return NULL;
}

static void peer_on_ready(struct shoal_peer *p, void *user)
{
    struct shoal_daemon *d = user;

    /* It leaves the handshake pool for a peer slot; others may have taken
     * the last one since its HELLO was let through. */
    if (unauth_remove(d, p) && counted_peers(d) > peer_limit(d)) {
        forget_peer(d, p);
        LOG_W("peer %s refused: connection limit (%u) reached", shoal_peer_name(p),
              peer_limit(d));
        shoal_peer_bye(p, "connection limit reached");
        return;
    }
    /* Only now, with its key proven. */
    if (shoal_keywatch_contains(d->deny, shoal_session_peer_pk(shoal_peer_session(p)))) {
        uint64_t now = uv_now(&d->loop);
        /* A revoked node may keep dialling: a line per 30 s, not per try. */
        if (!d->deny_logged_ms || now - d->deny_logged_ms >= 30000) {
            char more[48] = "";
            if (d->deny_quiet)
                snprintf(more, sizeof more, " (and %u more since the last such line)",
                         d->deny_quiet);
            LOG_W("peer %s refused: its node key is revoked here (deny-keys)%s",
                  shoal_peer_name(p), more);
            d->deny_logged_ms = now ? now : 1;
            d->deny_quiet = 0;
        } else {
            d->deny_quiet++;
        }
        forget_peer(d, p);
        shoal_peer_bye(p, "node key revoked");
        return;
    }
    /* Only now: until its HELLO_AUTH verified, the HELLO
     * may have been a replay (see known_pk). */
    if (duplicate_refused(d, p, shoal_session_peer_pk(shoal_peer_session(p)))) {
        forget_peer(d, p);
        LOG_I("peer %s refused: duplicate connection", shoal_peer_name(p));
        shoal_peer_bye(p, "duplicate connection");
        return;
    }
    for (uint32_t i = 0; i < d->nswarms; i++)
        shoal_swarm_peer_ready(d->swarms[i], p);
    want_manifests(d, p);
}

static void peer_on_msg(struct shoal_peer *p, const struct shoal_msg *m, void *user)
{
    struct shoal_daemon *d = user;
    struct shoal_swarm *s;
    struct shoal_msg r;
    size_t mlen;

    switch (m->type) {
    case SHOAL_MSG_WANT_MANIFEST:
        s = find_swarm(d, m->u.want_manifest.manifest_id);
        if (s) {
            (void)shoal_swarm_signed(s, &mlen);
            want_manifest(d, p, m->u.want_manifest.manifest_id, mlen);
        }
        return;
    case SHOAL_MSG_MANIFEST_DATA:
        on_manifest_data(d, p, &m->u.manifest);
        return;
    case SHOAL_MSG_PONG:
        return;
    case SHOAL_MSG_BYE:
        /* The peer banned us for a chunk of ours that failed its hash
         * (shoal_peer passes on only such BYEs); it is closing. */
        s = find_swarm(d, m->u.bye.manifest_id);
        if (s && m->u.bye.has_chunk)
            shoal_swarm_chunk_disputed(s, p, m->u.bye.chunk_index);
        return;
    default:
        break;
    }
    for (uint32_t i = 0; i < d->nswarms; i++) {
        if (shoal_swarm_on_msg(d->swarms[i], p, m))
            return;
    }
    if (m->type == SHOAL_MSG_REQUEST) {
        memset(&r, 0, sizeof r);
        r.type = SHOAL_MSG_REJECT;
        r.u.reject.req_id = m->u.request.req_id;
        r.u.reject.reason = d->stopping ? SHOAL_REJECT_SHUTDOWN : SHOAL_REJECT_UNKNOWN;
        (void)shoal_peer_send(p, &r);
    }
}

static void peer_on_close(struct shoal_peer *p, const char *reason, void *user)
{
    struct shoal_daemon *d = user;

    if (strcmp(reason, EVICTED) == 0 || strcmp(reason, HELLO_BUSY) == 0)
        LOG_D("peer %s closed: %s", shoal_peer_name(p), reason);
    else
        LOG_I("peer %s closed: %s", shoal_peer_name(p), reason);
    for (uint32_t i = 0; i < d->nswarms; i++)
        shoal_swarm_peer_gone(d->swarms[i], p);
    /* its manifest requests leave; others may go in its place */
    if (d->mfq && shoal_mfq_peer_gone(d->mfq, shoal_peer_id(p)) > 0)
        pump_manifests(d);
    forget_peer(d, p);
    for (size_t i = 0; i < d->cfg->peers.n; i++) {
        if (d->static_conn[i] == p)
            d->static_conn[i] = NULL;
    }
    for (uint32_t i = 0; i < d->ndials; i++) {
        if (d->dials[i].p == p)
            d->dials[i].p = NULL;
    }
}

/* A new inbound connection joins the handshake pool, not the peers: until
 * it authenticates it may be anyone, and must not hold a peer slot (the
 * limit is checked when its HELLO verifies). */
static void on_connection(uv_stream_t *server, int status)
{
    struct shoal_daemon *d = server->data;
    struct shoal_peer *p = NULL;

    if (status < 0 || d->stopping)
        return;
    if (shoal_peer_accept(&p, &d->pctx, &d->pcb, d, server) != 0)
        return;
    if (d->nunauth >= unauth_limit(d))
        evict_oldest(d);
    d->unauth[d->nunauth++] = p;
    d->peers[d->npeers++] = p;
}

static void dial_static(struct shoal_daemon *d)
{
    /* Peers refuse an expired credential: redialling them every
     * --reconnect-ms only filled both sides' logs (on_cred_timer says what
     * to do). Still tried now and then, doubling to 5 min, since a peer's
     * clock may be behind ours. */
    if (d->cred_expires && (uint64_t)time(NULL) >= d->cred_expires) {
        uint64_t now = uv_now(&d->loop);
        if (now < d->expired_dial_at)
            return;
        d->expired_dial_gap = d->expired_dial_gap ? d->expired_dial_gap * 2 : 10000;
        if (d->expired_dial_gap > 300000)
            d->expired_dial_gap = 300000;
        d->expired_dial_at = now + d->expired_dial_gap;
    }
    for (size_t i = 0; i < d->cfg->peers.n && !d->stopping; i++) {
        struct shoal_peer *p = NULL;
        if (d->static_conn[i] || counted_peers(d) >= peer_limit(d))
            continue;
        if (connected_to_addr(d, d->cfg->peers.v[i]))
            continue;
        if (d->static_pk_known[i] && is_banned(d, d->static_pk[i])) {
            if (!d->static_ban_said[i]) {
                char hex[17];
                hex8(hex, d->static_pk[i]);
                LOG_I("not redialling %s while node %s is banned", d->cfg->peers.v[i], hex);
                d->static_ban_said[i] = true;
            }
            continue;
        }
        d->static_ban_said[i] = false;
        if (shoal_peer_connect(&p, &d->pctx, &d->pcb, d, d->cfg->peers.v[i]) != 0)
            continue;
        d->static_conn[i] = p;
        d->peers[d->npeers++] = p;
    }
}

static void on_redial(uv_timer_t *t)
{
    dial_static(t->data);
}

static void loader_on_file(void *user, struct shoal_swarm *s, uint32_t file, int status)
{
    struct shoal_daemon *d = user;
    shoal_loader_srv_file_done(d->loader, s, file, status); /* any thread */
}

/* "repo@rev" (the manifest's commit) or a 64-hex manifest id. */
static struct shoal_swarm *loader_find(void *user, const char *release)
{
    struct shoal_daemon *d = user;
    uint8_t id[32];

    struct shoal_swarm *s;

    if (strlen(release) == 64 && shoal_unhex(id, 32, release, 64) == 0)
        s = find_swarm(d, id);
    else
        s = find_swarm_named(d, release);
    if (s)
        touch_swarm(d, s);
    return s;
}

/* The path `shoal pull` takes: a manifest id is asked of the peers and the
 * trackers, a name is resolved through the trackers (trk_on_manifest
 * reports a name no tracker knows with shoal_loader_srv_release_failed);
 * the release opens on arrival. */
static int request_pull(struct shoal_daemon *d, const char *release, const char *by,
                        bool from_loader, char *why, size_t whylen);

/* A loader asked for a release this node does not hold. */
static int loader_pull(void *user, const char *release, char *why, size_t whylen)
{
    struct shoal_daemon *d = user;

    if (!is_manifest_id(release) &&
        strchr(release, '@') && !d->trk) {
        snprintf(why, whylen, "this node does not hold it and has no tracker to resolve the "
                              "name (ask by manifest id to have it fetched from its peers)");
        return SHOAL_ENOTFOUND;
    }
    return request_pull(d, release, "a loader", true, why, whylen);
}

/* Whether a loader still waits for pull |pl| under any name it has. */
static bool loader_waits(struct shoal_daemon *d, const struct pull *pl)
{
    char hex[65];

    if (pl->asked[0] && shoal_loader_srv_waiting(d->loader, pl->asked))
        return true;
    if (pl->name[0] && shoal_loader_srv_waiting(d->loader, pl->name))
        return true;
    if (pl->by_name)
        return false;
    shoal_hex(hex, pl->id, 32);
    return shoal_loader_srv_waiting(d->loader, hex);
}

/* Withdraws the pulls only loaders asked for whose release has not opened
 * and for which no loader waits any more: the loaders left, or were told
 * it cannot be had (a name no tracker knows). Their slots go back at once,
 * instead of asking peers and trackers for a manifest nobody wants, maybe
 * forever (an id nobody has). A release that opened stays: it is
 * fetched as any other. Not from inside a loader hook other than |left|. */
static void withdraw_orphans(struct shoal_daemon *d)
{
    for (uint32_t i = 0; i < d->npulls;) {
        struct pull *pl = &d->pulls[i];
        char name[sizeof pl->asked > 65 ? sizeof pl->asked : 65];

        if (!pl->loader_only || pl->swarm || (!pl->by_name && in_rollout(d, pl->id)) ||
            loader_waits(d, pl)) {
            i++;
            continue;
        }
        if (pl->by_name)
            snprintf(name, sizeof name, "%s", pl->asked[0] ? pl->asked : pl->name);
        else
            shoal_hex(name, pl->id, 32);
        LOG_I("pull %s withdrawn: only loaders asked for it, and none waits for it any more "
              "(it had not opened)", name);
        forget_pull(d, i);
    }
}

static void loader_left(void *user)
{
    withdraw_orphans(user);
}

static int start_loader(struct shoal_daemon *d)
{
    struct shoal_loader_srv_cfg lc;

    if (!d->cfg->loader_socket)
        return 0;
    /* Else the control socket found the loader's bound there and blamed
     * "another shoald". */
    if (d->cfg->control_socket && strcmp(d->cfg->control_socket, d->cfg->loader_socket) == 0) {
        LOG_E("control-socket and loader-socket are the same path (%s): give each its own",
              d->cfg->loader_socket);
        return -EINVAL;
    }
    memset(&lc, 0, sizeof lc);
    lc.loop = &d->loop;
    lc.path = d->cfg->loader_socket;
    lc.group = d->cfg->loader_group;
    lc.user = d->cfg->loader_user;
    d->lhooks.find = loader_find;
    d->lhooks.pull = loader_pull;
    d->lhooks.left = loader_left;
    d->lhooks.user = d;
    return shoal_loader_srv_new(&d->loader, &lc, &d->lhooks);
}

/* ---- trackers, peer discovery and the origin ----
 *
 * With --tracker the daemon announces what it holds, resolves --pull names
 * and manifest ids it cannot get from peers, dials the holders the tracker
 * lists for each incomplete release (same zone first), starts pulling what
 * a rollout asks for, and routes the scheduler's origin leases to the
 * tracker. Without one, or when none has answered for lease-fallback-ms,
 * leases are taken locally: the node fetches from the origin on its own.
 */

#define DISCOVER_MS 1000u
#define MANIFEST_RETRY_MS 2000u
#define DIAL_RETRY_MS 5000u
/* Ask for more peers while a release has fewer than this many. */
#define WANT_PEERS 16u

/* The remote node key once the peer proved it holds it (its HELLO_AUTH
 * verified), else NULL. A HELLO alone proves nothing: it travels in the
 * clear and anyone who saw one can replay it, so a connection still in its
 * handshake must not stand for its node (a replayed HELLO left waiting
 * would otherwise refuse or replace the node's real connections). */
static const uint8_t *known_pk(const struct shoal_peer *p)
{
    static const uint8_t zero[32];
    const struct shoal_session *ss = shoal_peer_session(p);
    const uint8_t *pk = ss && shoal_peer_ready(p) ? shoal_session_peer_pk(ss) : NULL;

    return pk && memcmp(pk, zero, 32) != 0 ? pk : NULL;
}

/*
 * Two nodes that dial each other at the same moment end up with two
 * connections. Both sides keep the same one without talking about it: the
 * one dialled by the node with the smaller key; between two connections
 * dialled by the same side the older stays. Returns true when |p| (whose
 * handshake as |pk| just completed) is the one to refuse; may close the
 * other.
 */
static bool duplicate_refused(struct shoal_daemon *d, struct shoal_peer *p, const uint8_t pk[32])
{
    for (uint32_t i = 0; i < d->npeers; i++) {
        struct shoal_peer *q = d->peers[i];
        const uint8_t *qpk = q == p ? NULL : known_pk(q);
        const uint8_t *pd, *qd;

        if (!qpk || memcmp(qpk, pk, 32) != 0)
            continue;
        if (shoal_peer_initiator(p) == shoal_peer_initiator(q))
            return true;
        pd = shoal_peer_initiator(p) ? d->pk.pk : pk;
        qd = shoal_peer_initiator(q) ? d->pk.pk : pk;
        if (memcmp(pd, qd, 32) > 0)
            return true;
        shoal_peer_close(q, "duplicate connection", true);
        return false;
    }
    return false;
}

static bool connected_to_addr(struct shoal_daemon *d, const char *addr)
{
    for (uint32_t i = 0; i < d->npeers; i++) {
        const struct shoal_session *ss = shoal_peer_session(d->peers[i]);
        if (known_pk(d->peers[i]) && strcmp(shoal_session_peer_addr(ss), addr) == 0)
            return true;
    }
    return false;
}

/* Dials node |pk| at |addr| unless we are connected or tried lately. */
static void dial_node(struct shoal_daemon *d, const uint8_t pk[32], const char *addr)
{
    uint64_t now = uv_now(&d->loop);
    struct shoal_peer *p = NULL;
    struct dial *dl = NULL;
    uint32_t dialing = 0;

    if (d->stopping || memcmp(pk, d->pk.pk, 32) == 0 || is_banned(d, pk) ||
        counted_peers(d) >= peer_limit(d))
        return;
    /* Our own address, under another key: only a lying tracker lists it. */
    if (strcmp(addr, d->hello_addr) == 0 || strcmp(addr, d->listen_addr) == 0 ||
        strcmp(addr, d->pctx.local.listen_addr) == 0)
        return;
    for (uint32_t i = 0; i < d->npeers; i++) {
        const uint8_t *qpk = known_pk(d->peers[i]);
        if (qpk && memcmp(qpk, pk, 32) == 0)
            return;
    }
    /* One dial per address at a time, and each address at most every
     * DIAL_RETRY_MS whatever key it is listed under. */
    for (uint32_t i = 0; i < d->ndials; i++) {
        const struct dial *o = &d->dials[i];
        if (strcmp(o->addr, addr) == 0 && (o->p || now - o->last_ms < DIAL_RETRY_MS))
            return;
        dialing += o->p && !shoal_peer_ready(o->p);
    }
    if (dialing >= MAX_DIALING)
        return;
    for (uint32_t i = 0; i < d->ndials && !dl; i++) {
        if (memcmp(d->dials[i].pk, pk, 32) == 0)
            dl = &d->dials[i];
    }
    if (dl && (dl->p || now - dl->last_ms < DIAL_RETRY_MS))
        return;
    if (!dl) {
        /* Full: reuse the entry tried longest ago that is not connected. */
        if (d->ndials < MAX_DIALS) {
            dl = &d->dials[d->ndials++];
        } else {
            for (uint32_t i = 0; i < d->ndials; i++) {
                if (!d->dials[i].p && (!dl || d->dials[i].last_ms < dl->last_ms))
                    dl = &d->dials[i];
            }
            if (!dl)
                return;
        }
        memcpy(dl->pk, pk, 32);
    }
    snprintf(dl->addr, sizeof dl->addr, "%s", addr);
    dl->last_ms = now;
    if (shoal_peer_connect(&p, &d->pctx, &d->pcb, d, addr) != 0)
        return;
    dl->p = p;
    d->peers[d->npeers++] = p;
}

/* Asks the trackers for the manifests of pulls that have none yet. */
static void trk_want_manifests(struct shoal_daemon *d, bool now_anyway)
{
    uint64_t now = uv_now(&d->loop);

    for (uint32_t i = 0; i < d->npulls && d->trk; i++) {
        struct pull *pl = &d->pulls[i];
        if (pl->swarm || (!now_anyway && pl->asked_ms && now - pl->asked_ms < MANIFEST_RETRY_MS) ||
            !pull_may_ask(d, pl) || pl->unresolved)
            continue;
        if (shoal_trkconn_get_manifest(d->trk, pl->by_name ? NULL : pl->id, pl->name,
                                       pl->serial) == 0)
            pl->asked_ms = now;
    }
}

/* A pull was added or asked again: every ready peer and the trackers are
 * asked for the manifests still missing, now. */
static void want_manifests_everywhere(struct shoal_daemon *d)
{
    for (uint32_t i = 0; i < d->npeers; i++) {
        if (shoal_peer_ready(d->peers[i]))
            want_manifests(d, d->peers[i]);
    }
    if (d->trk)
        trk_want_manifests(d, true);
}

static void discover(struct shoal_daemon *d)
{
    for (uint32_t i = 0; i < d->nswarms; i++) {
        struct shoal_swarm_stats st;
        if (shoal_swarm_complete(d->swarms[i]))
            continue;
        shoal_swarm_stats(d->swarms[i], &st);
        if (st.peers < WANT_PEERS)
            shoal_trkconn_get_peers(d->trk, shoal_swarm_id(d->swarms[i]), 2 * WANT_PEERS);
    }
}

static void on_trk_timer(uv_timer_t *h)
{
    struct shoal_daemon *d = h->data;

    if (d->stopping || !d->trk)
        return;
    if (shoal_trkconn_ready(d->trk) > 0)
        d->trk_seen_ms = uv_now(&d->loop);
    trk_want_manifests(d, false);
    discover(d);
    note_uploads(d);
}

static void trk_on_ready(void *user, uint32_t idx)
{
    struct shoal_daemon *d = user;

    d->trk_seen_ms = uv_now(&d->loop);
    d->fallback_logged = false;
    /* Peers show the address a HELLO names; with a wildcard listener, name
     * the one the trackers hand out (sessions copy it when they start). */
    const char *adv = shoal_trkconn_advertised(d->trk, idx);
    if (adv)
        snprintf(d->hello_addr, sizeof d->hello_addr, "%s", adv);
    /* A tracker keeps no state across restarts: give it back the manifests
     * we hold so others can resolve them (a known id is a no-op there). */
    for (uint32_t i = 0; i < d->nswarms; i++) {
        size_t len;
        const uint8_t *mf = shoal_swarm_signed(d->swarms[i], &len);
        shoal_trkconn_put_manifest(d->trk, idx, shoal_swarm_id(d->swarms[i]), mf, len);
    }
    /* Nor the origin leases we are fetching under: claim them back before
     * it grants them to others (the origin would serve them twice). */
    for (uint32_t i = 0; i < d->nswarms; i++)
        shoal_swarm_reclaim_leases(d->swarms[i], idx,
                                   shoal_trkconn_arbiter(d->trk, shoal_swarm_id(d->swarms[i])) ==
                                       (int)idx);
    trk_want_manifests(d, true);
    discover(d);
}

static void trk_fill_announce(void *user, struct shoal_msg_announce *a)
{
    struct shoal_daemon *d = user;

    for (uint32_t i = 0; i < d->nswarms && a->count < SHOAL_MSG_ANNOUNCE_MAX; i++) {
        struct shoal_msg_announce_entry *e = &a->entries[a->count++];
        struct shoal_swarm_stats st;
        shoal_swarm_stats(d->swarms[i], &st);
        memcpy(e->manifest_id, shoal_swarm_id(d->swarms[i]), 32);
        e->have_chunks = st.have_chunks;
        e->total_chunks = st.nchunks;
        e->complete = shoal_swarm_complete(d->swarms[i]);
    }
}

/* Desired releases: anything not held or pulled yet becomes a pull. Fleet
 * roles: each release the tracker names gets the role it was given, taken
 * only from the tracker that arbitrates that release's leases
 * (shoal_trkconn_arbiter): trackers rank nodes each on their own, and
 * roles from two of them would flip a node's role on every answer. A
 * release none names keeps its configured behaviour. */
static void trk_on_announce_reply(void *user, uint32_t idx,
                                  const struct shoal_msg_announce_reply *r)
{
    struct shoal_daemon *d = user;
    bool added = false;

    /* This tracker's list replaces what it said before; the others' stay.
     * What the state file said stays until every tracker has spoken: the
     * one whose rollout it was may answer last (or be down a while). */
    uint32_t kept = 0;
    if (idx < 64)
        d->trk_answered |= 1ull << idx;
    uint32_t ntrk = shoal_trkconn_count(d->trk);
    bool all = ntrk > 64 || d->trk_answered == (ntrk == 64 ? UINT64_MAX : (1ull << ntrk) - 1);
    for (uint32_t i = 0; i < d->nrollout_ids; i++) {
        uint32_t t = d->rollout_ids[i].trk;
        if (t != idx && !(t == ROLLOUT_FROM_STATE && all))
            d->rollout_ids[kept++] = d->rollout_ids[i];
    }
    d->nrollout_ids = kept;
    for (uint32_t i = 0; i < r->count; i++) {
        if (d->nrollout_ids == sizeof d->rollout_ids / sizeof d->rollout_ids[0])
            break; /* more than that many rollouts: the rest may be closed for room */
        d->rollout_ids[d->nrollout_ids].trk = idx;
        memcpy(d->rollout_ids[d->nrollout_ids++].id, r->desired[i].manifest_id, 32);
    }

    for (uint32_t i = 0; i < r->nroles && !d->stopping; i++) {
        const struct shoal_msg_role *ro = &r->roles[i];
        struct shoal_swarm *s = find_swarm(d, ro->manifest_id);
        int rv;
        if (!s || shoal_swarm_complete(s))
            continue;
        if (shoal_trkconn_arbiter(d->trk, ro->manifest_id) != (int)idx) {
            LOG_D("role from tracker %s ignored: that release's leases go to another tracker",
                  shoal_trkconn_addr(d->trk, idx));
            continue;
        }
        rv = shoal_swarm_set_role(s, ro->fetcher, ro->import_mod, ro->import_rem);
        if (rv != 0) {
            char hex[17];
            hex8(hex, ro->manifest_id);
            LOG_W("release %s: role from tracker %s not applied: %s", hex,
                  shoal_trkconn_addr(d->trk, idx), shoal_strerror(rv));
        }
    }

    for (uint32_t i = 0; i < r->count && !d->stopping; i++) {
        const struct shoal_msg_desired *w = &r->desired[i];
        bool known = find_swarm(d, w->manifest_id) != NULL;
        char hex[17];

        for (uint32_t k = 0; k < d->npulls && !known; k++)
            known = !d->pulls[k].by_name && memcmp(d->pulls[k].id, w->manifest_id, 32) == 0;
        if (known)
            continue;
        hex8(hex, w->manifest_id);
        if (!pull_room(d)) {
            LOG_W("rollout of %.*s (%s) ignored: %d pulls under way already", (int)w->repo.len,
                  w->repo.p, hex, SHOAL_CONFIG_LIST_MAX);
            continue;
        }
        memcpy(new_pull(d)->id, w->manifest_id, 32);
        d->npulls++;
        added = true;
        LOG_I("rollout: tracker %s asks for %.*s (manifest %s); pulling it",
              shoal_trkconn_addr(d->trk, idx), (int)w->repo.len, w->repo.p, hex);
    }
    if (added)
        want_manifests_everywhere(d);
    /* Which open releases a rollout names may have changed: the file says
     * so for the next start (unchanged, nothing is written). */
    save_state(d);
}

static void trk_on_peers(void *user, uint32_t idx, const struct shoal_msg_peers *m)
{
    struct shoal_daemon *d = user;
    struct shoal_swarm *s = find_swarm(d, m->manifest_id);
    const char *zone = d->scfg.zone;
    char addr[SHOAL_MSG_ADDR_MAX + 1];

    if (!s || shoal_swarm_complete(s))
        return;
    /* Same-zone holders first, then the rest, while connections are left. */
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < m->count; i++) {
            const struct shoal_msg_peer *pr = &m->peers[i];
            bool same = pr->zone.len == strlen(zone) && memcmp(pr->zone.p, zone, pr->zone.len) == 0;
            if (same != (pass == 0))
                continue;
            memcpy(addr, pr->addr.p, pr->addr.len);
            addr[pr->addr.len] = '\0';
            dial_node(d, pr->node_pk, addr);
        }
    }
}

static void trk_on_manifest(void *user, uint64_t tag, int status,
                            const struct shoal_msg_manifest *mm)
{
    struct shoal_daemon *d = user;
    struct pull *pl = find_pull_serial(d, tag);
    struct shoal_manifest *m = NULL;
    struct shoal_swarm *s;
    char hex[17], name[SHOAL_MSG_REPO_MAX + 48], why[sizeof pl->why];
    int rv;

    if (!pl || pl->swarm || d->stopping || !pull_may_ask(d, pl))
        return;
    if (pl->by_name)
        snprintf(name, sizeof name, "%s", pl->name);
    else
        shoal_hex(name, pl->id, 32);
    if (status != 0) {
        LOG_D("no tracker has the manifest of %s yet", name);
        pl->unknown = true;
        /* a loader asking by name learns it now; the pull
         * itself keeps asking, as for `shoal pull` */
        if (pl->by_name)
            shoal_loader_srv_release_failed(d->loader, pl->name, "no tracker knows this release");
        return;
    }
    hex8(hex, mm->manifest_id);
    rv = shoal_manifest_parse(&m, mm->signed_manifest.p, mm->signed_manifest.len,
                              d->publishers, NULL);
    if (rv == 0 && memcmp(shoal_manifest_id(m), mm->manifest_id, 32) != 0)
        rv = SHOAL_EBADHASH;
    if (rv == 0 && !pl->by_name && memcmp(pl->id, mm->manifest_id, 32) != 0)
        rv = SHOAL_EBADMSG;
    if (rv == 0 && pl->by_name) {
        /* The tracker must answer with the release we named, not another
         * one signed by the same publisher. */
        if (!shoal_manifest_named(m, pl->name))
            rv = SHOAL_EBADMSG;
    }
    if (rv != 0) {
        LOG_W("tracker answered %s with manifest %s that we refuse: %s", name, hex,
              shoal_strerror(rv));
        pl->refused = rv;
        pl->unknown = false; /* a tracker has one: it is the refusal that holds us */
        shoal_manifest_free(m);
        return;
    }
    LOG_I("manifest %s for %s received from a tracker, signature verified", hex, name);
    memcpy(pl->id, mm->manifest_id, 32);
    pl->by_name = false;
    s = find_swarm(d, pl->id);
    if (s) {
        shoal_manifest_free(m);
        bind_open(d, pl, s);
        return;
    }
    (void)shoal_manifest_name(m, name, sizeof name);
    uint64_t serial = pl->serial;
    s = add_release(d, m, mm->signed_manifest.p, mm->signed_manifest.len,
                    pl->ref[0] ? pl->ref : NULL, true, &rv, why, sizeof why);
    pl = find_pull_serial(d, serial); /* see on_manifest_data */
    if (!pl)
        return;
    if (!s) {
        pull_failed(d, pl, name, rv, why);
        return;
    }
    pl->swarm = s;
    pl->failed = false;
    /* Another pull may name the same release by id. */
    for (uint32_t i = 0; i < d->npulls; i++) {
        if (!d->pulls[i].swarm && !d->pulls[i].by_name &&
            memcmp(d->pulls[i].id, pl->id, 32) == 0)
            d->pulls[i].swarm = s;
    }
    start_release(d, s);
    if (pl->ref[0])
        shoal_loader_srv_release_named(d->loader, s, pl->asked);
    if (!d->stopping)
        discover(d);
}

#define RE_PUT_MS 10000u

static void trk_on_lease(void *user, uint64_t tag, uint32_t idx, int status,
                         const struct shoal_msg_lease *l)
{
    struct shoal_daemon *d = user;
    struct shoal_swarm *s = NULL;

    for (uint32_t i = 0; i < d->nswarms && !s; i++) {
        if (d->slot[i].tag == tag)
            s = d->swarms[i];
    }

    if (!s || (l && memcmp(l->manifest_id, shoal_swarm_id(s), 32) != 0))
        return;
    if (status == SHOAL_ENOTFOUND) {
        /* It does not hold the manifest (it restarted and nobody put it
         * back, or forgot it): give it ours; the scheduler asks again
         * after its lease retry pause. */
        struct slot *sl = &d->slot[swarm_slot(d, s)];
        uint64_t now = uv_now(&d->loop);
        if (sl->reput_ms == 0 || now - sl->reput_ms >= RE_PUT_MS) {
            size_t len;
            const uint8_t *mf = shoal_swarm_signed(s, &len);
            char hex[17];
            hex8(hex, shoal_swarm_id(s));
            sl->reput_ms = now;
            LOG_I("release %s: tracker %s does not hold its manifest (not published to it), "
                  "so it leases none of it: sending it ours", hex,
                  shoal_trkconn_addr(d->trk, idx));
            shoal_trkconn_put_manifest(d->trk, idx, shoal_swarm_id(s), mf, len);
        }
    } else if (status != 0) {
        LOG_D("tracker %s: lease request failed: %s", shoal_trkconn_addr(d->trk, idx),
              shoal_strerror(status));
    }
    shoal_swarm_lease_result(s, idx, status, l);
}

static int swarm_on_lease_req(void *user, struct shoal_swarm *s, uint32_t hint, uint32_t count)
{
    struct shoal_daemon *d = user;
    uint64_t now = uv_now(&d->loop);
    char hex[17];

    if (!d->trk)
        return SHOAL_SWARM_LEASE_LOCAL;
    struct slot *sl = &d->slot[swarm_slot(d, s)];
    int arb = shoal_trkconn_arbiter(d->trk, shoal_swarm_id(s));
    if (arb >= 0 && (uint32_t)arb != sl->lease_trk && shoal_trkconn_ready_idx(d->trk, arb)) {
        /* Which tracker leases a release is a hash, not configuration
         * order: say which, and when it moves (a tracker went or came). */
        hex8(hex, shoal_swarm_id(s));
        LOG_I("release %s: origin leases from tracker %s (%u of %u ready; chosen by release)",
              hex, shoal_trkconn_addr(d->trk, (uint32_t)arb), shoal_trkconn_ready(d->trk),
              shoal_trkconn_count(d->trk));
        sl->lease_trk = (uint32_t)arb;
    }
    int rv = shoal_trkconn_lease(d->trk, shoal_swarm_id(s), count, hint, sl->tag);
    if (rv == 0)
        return SHOAL_SWARM_LEASE_ASKED;
    if (rv == -EAGAIN)
        return SHOAL_SWARM_LEASE_LATER; /* its tracker is still logging in */
    if (shoal_trkconn_ready(d->trk) > 0 || now - d->trk_seen_ms < d->cfg->lease_fallback_ms)
        return SHOAL_SWARM_LEASE_LATER;
    if (!d->fallback_logged) {
        hex8(hex, shoal_swarm_id(s));
        LOG_W("release %s: no tracker has answered for %llu ms; fetching from the origin "
              "without a lease", hex, (unsigned long long)(now - d->trk_seen_ms));
        d->fallback_logged = true;
    }
    return SHOAL_SWARM_LEASE_LOCAL;
}

static void swarm_on_lease_done(void *user, struct shoal_swarm *s, uint32_t trk, uint32_t first,
                                uint32_t count)
{
    struct shoal_daemon *d = user;
    if (d->trk)
        shoal_trkconn_lease_done(d->trk, trk, shoal_swarm_id(s), first, count);
}

static void swarm_on_lease_give_back(void *user, struct shoal_swarm *s, uint32_t trk)
{
    struct shoal_daemon *d = user;
    if (d->trk)
        shoal_trkconn_lease_give_back(d->trk, trk, shoal_swarm_id(s));
}

static void swarm_on_lease_reclaim(void *user, struct shoal_swarm *s, uint32_t trk,
                                   uint32_t first, uint32_t count, uint32_t left_ms)
{
    struct shoal_daemon *d = user;
    if (d->trk)
        (void)shoal_trkconn_lease_reclaim(d->trk, trk, shoal_swarm_id(s), first, count, left_ms);
}

static void trk_on_reclaim(void *user, uint32_t idx, const uint8_t manifest_id[32],
                           uint32_t first, uint32_t count, int status,
                           const struct shoal_msg_lease *l)
{
    struct shoal_daemon *d = user;
    for (uint32_t i = 0; i < d->nswarms; i++) {
        if (memcmp(shoal_swarm_id(d->swarms[i]), manifest_id, 32) == 0) {
            shoal_swarm_reclaim_result(d->swarms[i], idx, first, count, status, l);
            return;
        }
    }
}

static void swarm_on_first_chunk(void *user, struct shoal_swarm *s)
{
    struct shoal_daemon *d = user;
    if (d->trk)
        shoal_trkconn_announce_soon(d->trk);
}

/* chunks withheld or fetched again: trackers hear it now,
 * not at the next interval. */
static void swarm_on_withheld(void *user, struct shoal_swarm *s)
{
    struct shoal_daemon *d = user;
    (void)s;
    if (d->trk)
        shoal_trkconn_announce_soon(d->trk);
}

/* a blob found bad by one release is every open release's
 * that lists its sha256: they hash their copies (the same inode) too. */
static void swarm_on_blob_rot(void *user, struct shoal_swarm *s, const uint8_t sha256[32])
{
    struct shoal_daemon *d = user;

    for (uint32_t i = 0; i < d->nswarms; i++)
        if (d->swarms[i] != s)
            shoal_swarm_blob_suspect(d->swarms[i], sha256);
}

/* The origin's health, for the operator: the first failure at once, then a
 * count every 30 s while it lasts, and the recovery (the hub rate-limits). */
static void on_origin_health(void *user, const struct shoal_hub_health *ev)
{
    (void)user;
    switch (ev->event) {
    case SHOAL_HUB_FAILING:
        if (ev->failures > 1)
            LOG_W("origin %s failing: %s (%llu failed requests since the last report; "
                  "retrying)", ev->host, ev->error, (unsigned long long)ev->failures);
        else
            LOG_W("origin %s failing: %s (retrying; while it lasts, a count every 30 s)",
                  ev->host, ev->error);
        break;
    case SHOAL_HUB_STILL_FAILING:
        LOG_W("origin %s still failing after %llu s: %llu more failed requests, the last: %s",
              ev->host, (unsigned long long)(ev->run_ms / 1000),
              (unsigned long long)ev->failures, ev->error);
        break;
    case SHOAL_HUB_REACHABLE:
        LOG_I("origin %s reachable again, after %llu failed requests over %.1f s", ev->host,
              (unsigned long long)ev->failures, (double)ev->run_ms / 1000.0);
        break;
    }
}

/* Creates the origin client and the tracker client (not started yet). */
static int setup_trackers(struct shoal_daemon *d)
{
    const struct shoal_config *c = d->cfg;
    int rv = 0;

    uv_timer_init(&d->loop, &d->trk_timer);
    d->trk_timer.data = d;
    d->scfg.origin_delay_ms = (uint32_t)c->origin_delay_ms;
    d->scfg.lease_chunks = (uint32_t)c->lease_chunks; /* 1-64: check_ranges */
    d->scfg.max_leases = (uint32_t)c->max_leases; /* 1-16 (check_ranges) */
    d->hooks.on_lease_req = swarm_on_lease_req;
    d->hooks.on_lease_done = swarm_on_lease_done;
    d->hooks.on_lease_give_back = swarm_on_lease_give_back;
    d->hooks.on_lease_reclaim = swarm_on_lease_reclaim;
    d->hooks.on_first_chunk = swarm_on_first_chunk;
    d->hooks.on_withheld = swarm_on_withheld;
    d->hooks.on_blob_rot = swarm_on_blob_rot;
    if (!c->no_origin) {
        shoal_hub_config_default(&d->hubcfg);
        d->hubcfg.endpoint = c->hub_endpoint;
        d->hubcfg.token_file = c->hub_token_file;
        d->hubcfg.ca_file = c->hub_ca;
        d->hubcfg.seed = d->scfg.seed;
        /* Ranges checked by check_ranges; a rate of 0 never aborts. */
        d->hubcfg.slow_floor_bps = c->origin_min_rate;
        d->hubcfg.slow_window_ms = (unsigned)c->origin_slow_window_ms;
        d->hubcfg.slow_never = c->origin_min_rate == 0;
        d->hubcfg.on_health = on_origin_health;
        d->hubcfg.health_user = d;
        char camsg[640];
        if ((rv = shoal_hub_ca_verify(&d->hubcfg, camsg, sizeof camsg)) != 0) {
            LOG_E("hub-ca: %s", camsg);
            return rv;
        }
        if ((rv = shoal_hub_token_verify(&d->hubcfg, camsg, sizeof camsg)) != 0) {
            LOG_E("%s", camsg);
            return rv;
        }
        rv = shoal_hub_new(&d->hub, &d->loop, &d->hubcfg);
        if (rv != 0 && c->hub_token_file && rv != -EINVAL && rv != -ENOMEM) {
            /* the token file, not the endpoint, is what failed */
            LOG_E("hub token file %s: %s", c->hub_token_file,
                  rv == SHOAL_EPROTO     ? "the token holds characters not allowed in an HTTP "
                                           "header"
                  : rv == SHOAL_EBADPATH ? "not a regular file"
                                         : shoal_strerror(rv));
            return rv;
        }
        if (rv != 0) {
            char shown[512];
            shoal_url_redact(c->hub_endpoint ? c->hub_endpoint : "(from HF_ENDPOINT)", shown,
                             sizeof shown);
            LOG_E("origin %s: %s", shown, shoal_strerror(rv));
            return rv;
        }
        d->scfg.hub = d->hub;
        /* The slow-origin floor in force (--origin-min-rate), for whoever
         * wonders why a transfer was resumed, or was not. */
        char slow[128], rate[64];
        if (c->origin_min_rate)
            snprintf(slow, sizeof slow, "a range under %s over %.1f s is resumed",
                     shoal_fmt_rate(rate, sizeof rate, c->origin_min_rate),
                     (double)c->origin_slow_window_ms / 1000.0);
        else
            snprintf(slow, sizeof slow, "no range is ended for being slow");
        if (shoal_hub_has_token(d->hub))
            LOG_I("origin %s (with a token from %s; %s)", shoal_hub_endpoint(d->hub),
                  shoal_hub_token_source(d->hub), slow);
        else
            LOG_I("origin %s (without a token; %s)", shoal_hub_endpoint(d->hub), slow);
        if (*shoal_hub_token_ignored(d->hub))
            LOG_W("hub login token file %s: ignored, the origin is asked without a token",
                  shoal_hub_token_ignored(d->hub));
        const char *caenv, *ca = shoal_hub_ca_path(&d->hubcfg, &caenv);
        if (ca)
            LOG_I("origin TLS: trusting only the CAs in %s%s%s%s", ca,
                  caenv ? " (from $" : "", caenv ? caenv : "", caenv ? ")" : "");
        if (shoal_hub_token_exposed(d->hub))
            LOG_W("hub token from %s can be read by other users: chmod 600 it",
                  shoal_hub_token_source(d->hub));
    }
    if (c->trackers.n == 0)
        return 0;
    d->tcfg.loop = &d->loop;
    d->tcfg.addrs = (const char *const *)c->trackers.v;
    d->tcfg.naddrs = c->trackers.n;
    d->tcfg.sk = &d->sk;
    d->tcfg.cred = d->cred;
    d->tcfg.cred_len = d->cred_len;
    d->tcfg.zone = d->scfg.zone;
    d->tcfg.listen_addr = d->pctx.local.listen_addr;
    /* Drawn once: every reconnect presents the same id, a restart a new
     * one, which is how the tracker knows whether our leases are alive. */
    randombytes_buf(d->session, sizeof d->session);
    d->tcfg.session = d->session;
    /* A wildcard is no address a peer can dial: tell each tracker the
     * address this node reaches it from. */
    if (!c->advertise && d->listen_wildcard) {
        d->tcfg.advertise_port = d->listen_port;
        d->tcfg.advertise_ipv4_only = d->listen_ipv4;
    }
    d->tcfg.seed = d->scfg.seed;
    /* Dialled at least four times within the fallback's wait (jitter
     * included), so a tracker back within it is found again in time. */
    d->tcfg.backoff_alone_max_ms = c->lease_fallback_ms / 4 > UINT32_MAX
                                       ? UINT32_MAX : (uint32_t)(c->lease_fallback_ms / 4);
    d->tcfg.tracker_keys = d->tracker_keys;
    d->thooks.on_ready = trk_on_ready;
    d->thooks.fill_announce = trk_fill_announce;
    d->thooks.on_announce_reply = trk_on_announce_reply;
    d->thooks.on_peers = trk_on_peers;
    d->thooks.on_manifest = trk_on_manifest;
    d->thooks.on_lease = trk_on_lease;
    d->thooks.on_reclaim = trk_on_reclaim;
    d->thooks.user = d;
    return shoal_trkconn_new(&d->trk, &d->tcfg, &d->thooks);
}

/* True when |addr| ("host:port") names this host only: 127.0.0.0/8,
 * ::1 (also as ::ffff:127.x.y.z) or "localhost". */
static bool loopback_addr(const char *addr)
{
    struct sockaddr_storage ss;

    if (strncmp(addr, "localhost:", 10) == 0)
        return true;
    if (shoal_parse_addr(addr, &ss) != 0)
        return false;
    if (ss.ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
}

/* The default --listen is 127.0.0.1:7600: a node started with only a
 * tracker added announces an address no other host can dial, and nothing
 * else says so (its peers simply never connect). A warning, not an error:
 * a fleet on one host (the tests, a demo) is loopback on purpose. */
static void warn_loopback_announce(struct shoal_daemon *d)
{
    const struct shoal_config *c = d->cfg;
    const char *adv = c->advertise ? c->advertise : d->listen_wildcard ? NULL : d->listen_addr;

    if (!c->trackers.n || !adv || !loopback_addr(adv))
        return;
    LOG_W("announcing a loopback address (%s) to tracker %s%s: peers on other hosts cannot "
          "reach this node; set --listen 0.0.0.0:%u or --advertise HOST:PORT", adv,
          c->trackers.v[0], c->trackers.n > 1 ? " and the others" : "",
          (unsigned)(d->listen_port ? d->listen_port : 7600));
}

static void start_trackers(struct shoal_daemon *d)
{
    d->trk_seen_ms = uv_now(&d->loop);
    if (!d->trk)
        return;
    if (shoal_trkconn_start(d->trk) != 0)
        LOG_E("cannot start the tracker client");
    uv_timer_start(&d->trk_timer, on_trk_timer, DISCOVER_MS, DISCOVER_MS);
}

/* Closes the tracker connections and the origin client; their handles
 * finish closing on the loop. */
static void stop_trackers(struct shoal_daemon *d)
{
    shoal_trkconn_stop(d->trk);
    /* The timer exists only once setup got that far (d is zeroed). */
    if (d->trk_timer.loop && !uv_is_closing((uv_handle_t *)&d->trk_timer))
        uv_close((uv_handle_t *)&d->trk_timer, NULL);
    d->scfg.hub = NULL;
    shoal_hub_free(d->hub);
    d->hub = NULL;
}

/* ---- control socket: what `shoal pull/status/peers/metrics` see ---- */

/* The open release and/or the pending pull that |release| (a 64-hex
 * manifest id or "org/name@commit") names; either may come back NULL. */
static void ctl_match(struct shoal_daemon *d, const char *release, struct shoal_swarm **sw,
                      struct pull **pl)
{
    size_t n = strlen(release);
    uint8_t id[32];
    bool by_id = n == 64 && shoal_unhex(id, 32, release, 64) == 0;

    *sw = NULL;
    *pl = NULL;
    for (uint32_t i = 0; i < d->npulls; i++) {
        struct pull *p = &d->pulls[i];
        if (by_id ? !p->by_name && memcmp(p->id, id, 32) == 0
                  : strcmp(p->name, release) == 0 || strcmp(p->asked, release) == 0)
            *pl = p;
    }
    if (by_id) {
        *sw = find_swarm(d, id);
    } else if (*pl && (*pl)->swarm) {
        *sw = (*pl)->swarm;
    } else {
        *sw = find_swarm_named(d, release);
    }
}

/* Checks the "[datasets/]org/name@rev" form of |release| before anything
 * waits on it: the repo type's prefix (none for a model), a repo id the
 * Hub could hold (org/name, parts of [A-Za-z0-9._-] with no "..", "--" or
 * leading/trailing '.'/'-') and a revision. Sets |*type|, and |*commit|
 * when the revision is a commit (40 lowercase hex digits), which is what
 * manifests are published under; a branch or tag must be resolved first.
 * Returns 0, or -EINVAL with the reason in |why|. */
static int check_release_name(const char *release, enum shoal_repo_type *type, bool *commit,
                              char *why, size_t whylen)
{
    const char *at = strchr(release, '@'), *id;
    char repo[SHOAL_MSG_REPO_MAX + 1], folder[SHOAL_MSG_REPO_MAX + 32];
    size_t n;
    size_t hex = 0, upper = 0;

    if (!at || strlen(release) > SHOAL_MSG_REPO_MAX) {
        snprintf(why, whylen, "'%s' is not org/name@commit (datasets/org/name@commit for a "
                              "dataset) nor a 64-hex manifest id", release);
        return -EINVAL;
    }
    if (shoal_relname_split(release, type, &id) != 0) {
        snprintf(why, whylen, "'%.*s' is not a prefix shoal takes: a model is named "
                              "org/name@rev, a dataset datasets/org/name@rev (spaces and "
                              "kernels are not carried)",
                 (int)(strchr(release, '/') - release + 1), release);
        return -EINVAL;
    }
    n = (size_t)(at - id);
    memcpy(repo, id, n);
    repo[n] = '\0';
    if (!memchr(repo, '/', n) || shoal_hf_repo_folder(folder, sizeof folder, *type, repo) != 0) {
        snprintf(why, whylen,
                 "'%s' is not a repo id: expected %sorg/name, each made of letters, digits, "
                 "'.', '_' and '-' (no '..' or '--', not starting or ending with '.' or '-')",
                 repo, *type == SHOAL_REPO_DATASET ? SHOAL_RELNAME_DATASET : "");
        return -EINVAL;
    }
    for (const char *c = at + 1; *c; c++) {
        hex += (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') || (*c >= 'A' && *c <= 'F');
        upper += *c >= 'A' && *c <= 'F';
    }
    *commit = hex == 40 && strlen(at + 1) == 40;
    if (*commit && upper) {
        snprintf(why, whylen, "commit '%s' has uppercase hex digits: commits are 40 lowercase "
                              "hex digits", at + 1);
        return -EINVAL;
    }
    if (!at[1] || !shoal_hf_branch_ok(at + 1)) {
        snprintf(why, whylen, "'%s' is not a revision: give a 40-hex commit (or, with a Hub "
                              "endpoint, a branch or tag)", at + 1);
        return -EINVAL;
    }
    return 0;
}

static void remove_pull(struct shoal_daemon *d, struct pull *pl, const char *why);

/* The Hub answered pull |pl|'s name with 404 (no such repo or revision) or
 * 401/403 (private or gated, no token or the wrong one): asking again
 * gets the same answer until someone changes the name, the Hub or the
 * token, so the pull is dropped (loaders waiting for it are told) instead
 * of being retried until `shoal drop`. |msg| is the Hub client's text
 * ("org/name@rev: HTTP 404 RevisionNotFound: ..."). A later `shoal pull`
 * asks the Hub afresh. */
static void pull_refused_by_hub(struct shoal_daemon *d, struct pull *pl, int status,
                                const char *msg)
{
    struct gone_pull *g = &d->gone[d->gone_next++ % (sizeof d->gone / sizeof d->gone[0])];
    const char *detail = msg ? msg : shoal_strerror(status);
    char asked[sizeof pl->asked];
    const char *bare = asked;
    size_t n;

    memcpy(asked, pl->asked, sizeof asked);
    /* The client's text starts with the name ("dataset org/name@rev" for a
     * dataset): said once is enough. */
    if (strncmp(bare, SHOAL_RELNAME_DATASET, sizeof SHOAL_RELNAME_DATASET - 1) == 0 &&
        strncmp(detail, "dataset ", 8) == 0) {
        detail += 8;
        bare += sizeof SHOAL_RELNAME_DATASET - 1;
    }
    n = strlen(bare);
    if (strncmp(detail, bare, n) == 0 && detail[n] == ':' && detail[n + 1] == ' ')
        detail += n + 2;
    snprintf(g->why, sizeof g->why, "%s %s the Hub %s (%s); not tried again: %s", asked,
             status == SHOAL_ENOTFOUND ? "not found on" : "refused by", shoal_hub_endpoint(d->hub),
             detail,
             status == SHOAL_ENOTFOUND ? "check the name, then shoal pull again"
                                       : "give shoald a token that may read it, then shoal "
                                         "pull again");
    utf8_cut(g->why);
    snprintf(g->asked, sizeof g->asked, "%s", asked);
    g->err = status;
    LOG_E("pull dropped: %s", g->why);
    remove_pull(d, pl, g->why);
}

/* The Hub's answer for pull |user|'s branch or tag. */
static void on_resolved(void *user, int status, struct shoal_hub_release *rel, const char *msg)
{
    struct resolve_ctx *rc = user;
    struct shoal_daemon *d = rc->d;
    struct pull *pl = find_pull_serial(d, rc->serial);

    rc->used = false;
    if (!pl) {
        /* Dropped while the Hub was asked. */
        shoal_hub_release_free(rel);
        return;
    }
    pl->resolving = false;
    if (status == SHOAL_ENOTFOUND || status == SHOAL_EPERM) {
        pull_refused_by_hub(d, pl, status, msg);
        return;
    }
    /* Anything else (5xx or timeouts past the client's own retries, a
     * malformed answer) may pass: tried again after a back-off. */
    if (status != 0) {
        pull_failed(d, pl, pl->asked, status, msg ? msg : shoal_strerror(status));
        return;
    }
    (void)shoal_relname_format(pl->name, sizeof pl->name, rel->type, rel->repo, rel->commit);
    pl->unresolved = false;
    pl->unknown = false; /* a new commit, not yet asked for */
    pl->failed = false;
    LOG_I("pull %s: the Hub resolves %s to commit %s", pl->asked, pl->ref, rel->commit);
    shoal_hub_release_free(rel);
    if (d->stopping)
        return;
    /* Open here already (pulled by commit, or before the branch moved
     * back): no tracker is needed to follow the name to it. */
    struct shoal_swarm *s = find_swarm_named(d, pl->name);
    if (s) {
        /* A complete one is checked first: no ref is written until its
         * files are found in place (or fetched again). */
        memcpy(pl->id, shoal_swarm_id(s), 32);
        pl->by_name = false;
        bind_open(d, pl, s);
        return;
    }
    if (d->trk)
        trk_want_manifests(d, true);
}

/* Asks the Hub which commit pull |pl|'s branch or tag is at. */
static int resolve_pull(struct shoal_daemon *d, struct pull *pl, char *why, size_t whylen)
{
    char repo[SHOAL_MSG_REPO_MAX + 1];
    const char *at = strchr(pl->asked, '@'), *id;
    enum shoal_repo_type type;
    struct resolve_ctx *rc = NULL;
    int rv;

    for (size_t i = 0; i < sizeof d->resolves / sizeof d->resolves[0] && !rc; i++) {
        if (!d->resolves[i].used)
            rc = &d->resolves[i];
    }
    if (!rc) {
        snprintf(why, whylen, "cannot ask the Hub for %s: too many questions under way",
                 pl->asked);
        return SHOAL_EBUSY;
    }
    rc->d = d;
    rc->serial = pl->serial;
    /* check_release_name passed |asked|: its prefix is a known one. */
    (void)shoal_relname_split(pl->asked, &type, &id);
    snprintf(repo, sizeof repo, "%.*s", (int)(at - id), id);
    rv = shoal_hub_resolve_commit(d->hub, type, repo, pl->ref, on_resolved, rc);
    rc->used = rv == 0;
    if (rv != 0)
        snprintf(why, whylen, "cannot ask the Hub for %s: %s", pl->asked, shoal_strerror(rv));
    else
        pl->resolving = true;
    return rv;
}

/* Failed pulls whose back-off has ended ask again: a branch or tag the Hub
 * could not resolve is resolved again, a release that would not open asks
 * peers and trackers for its manifest (pull_may_ask lets it now). */
static void on_retry(uv_timer_t *t)
{
    struct shoal_daemon *d = t->data;
    uint64_t now = uv_now(&d->loop);
    bool ask = false;
    char why[SHOAL_CTL_REASON_MAX + 1];
    int rv;

    for (uint32_t i = 0; i < d->npulls && !d->stopping; i++) {
        struct pull *pl = &d->pulls[i];
        if (!pl->failed || pl->swarm || pl->retry_ms > now)
            continue;
        if (!pl->unresolved) {
            ask = true;
        } else if (!pl->resolving) {
            LOG_I("pull %s: asking the Hub again where %s is", pl->asked, pl->ref);
            if ((rv = resolve_pull(d, pl, why, sizeof why)) != 0)
                pull_failed(d, pl, pl->asked, rv, why);
        }
    }
    if (ask && !d->stopping)
        want_manifests_everywhere(d);
    arm_retry(d);
}

/* Starts pulling |release| (repo@rev or a manifest id) for |by| (named in
 * the log); |from_loader|: a loader asks (see struct pull, loader_only). */
static int request_pull(struct shoal_daemon *d, const char *release, const char *by,
                        bool from_loader, char *why, size_t whylen)
{
    struct shoal_swarm *sw;
    struct pull *pl;
    size_t n = strlen(release);
    bool by_id, commit = true;
    enum shoal_repo_type type;
    int rv = 0;

    ctl_match(d, release, &sw, &pl);
    if (pl && !from_loader)
        pl->loader_only = false; /* someone other than a loader wants it now */
    if (!sw && pl && pl->failed && !d->stopping) {
        /* asked again: try now, and let this caller see how it
         * goes rather than the last failure */
        LOG_I("pull %s asked again by %s after it failed (%s); trying now", release, by, pl->why);
        if (pl->unresolved) {
            if (pl->resolving)
                return 0;
            /* Still failed if the Hub cannot even be asked. */
            if ((rv = resolve_pull(d, pl, why, whylen)) != 0)
                return rv;
        }
        pl->failed = false;
        pl->retry_ms = 0;
        if (!pl->unresolved)
            want_manifests_everywhere(d);
        return 0;
    }
    if (pl && pl->ref[0] && strcmp(pl->asked, release) == 0 && !d->stopping) {
        /* A branch or tag asked for again may have moved since: the Hub is
         * asked where it is now, and the pull follows it (to the release
         * already here, or to a new one; the old one stays open). */
        if (pl->unresolved)
            return 0; /* being resolved */
        LOG_I("pull %s asked again by %s: asking the Hub where %s is now", release, by, pl->ref);
        pl->unresolved = true;
        pl->unknown = false;
        pl->by_name = true;
        pl->swarm = NULL;
        return resolve_pull(d, pl, why, whylen);
    }
    if (sw && !d->stopping && needs_check(d, sw)) {
        /* Its files may have been deleted from the cache while it was
         * open: checked on a worker (the pull sees it pulling meanwhile);
         * with no pull bound to it, this one follows it under the name
         * asked if it has to be fetched again (check_done). */
        uint32_t k = swarm_slot(d, sw);
        bool bound = false;

        for (uint32_t i = 0; i < d->npulls && !bound; i++)
            bound = d->pulls[i].swarm == sw;
        if (k != UINT32_MAX && !bound && !d->slot[k].check_asked[0]) {
            snprintf(d->slot[k].check_asked, sizeof d->slot[k].check_asked, "%s", release);
            d->slot[k].check_loader = from_loader;
        }
        start_check(d, sw, NULL);
    }
    if (sw)
        touch_swarm(d, sw);
    if (sw || pl)
        return 0; /* here already, or under way */
    by_id = is_manifest_id(release);
    if (d->stopping) {
        snprintf(why, whylen, "shoald is shutting down");
        return SHOAL_EBUSY;
    }
    if (!pull_room(d)) {
        snprintf(why, whylen, "too many releases being pulled (%d under way)",
                 SHOAL_CONFIG_LIST_MAX);
        return SHOAL_ELIMIT;
    }
    if (from_loader) {
        uint32_t nl = 0;
        for (uint32_t i = 0; i < d->npulls; i++)
            nl += d->pulls[i].loader_only && !d->pulls[i].swarm;
        if (nl >= LOADER_PULLS_MAX) {
            snprintf(why, whylen, "busy: loaders wait for %u releases being fetched already "
                     "(at most %u); ask again once one has opened", nl, (unsigned)LOADER_PULLS_MAX);
            return SHOAL_EBUSY;
        }
    }
    if (!by_id && (rv = check_release_name(release, &type, &commit, why, whylen)) != 0)
        return rv;
    if (!by_id && !d->trk) {
        /* Without --peer, a pull by id waits for a peer that dials us: the
         * signed manifest is what a standalone node needs. */
        snprintf(why, whylen,
                 "release %s is not here and no tracker is configured to resolve its name: %s",
                 release,
                 d->cfg->peers.n ? "pull it by manifest id (a --peer can send its manifest), "
                                   "or give its signed manifest with shoald --manifest FILE"
                                 : "give its signed manifest (shoal publish --out FILE) with "
                                   "shoald --manifest FILE, or pull it by manifest id once a "
                                   "peer that holds it can reach this node");
        return SHOAL_ENOTFOUND;
    }
    if (!commit && !d->hub) {
        /* --no-origin leaves d->hub unset although an endpoint may be
         * configured: name the real reason. */
        snprintf(why, whylen, "revision must be a 40-hex commit; got '%s' (%s)",
                 strchr(release, '@') + 1,
                 d->cfg->no_origin ? "this node runs with --no-origin, so it does not ask the "
                                     "Hub to resolve branches and tags"
                                   : "this node has no Hub endpoint to resolve branches and tags");
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof d->gone / sizeof d->gone[0]; i++) {
        if (strcmp(d->gone[i].asked, release) == 0)
            d->gone[i].asked[0] = '\0'; /* asked again: this pull's fate, not that one's */
    }
    pl = new_pull(d);
    if (by_id) {
        rv = shoal_unhex(pl->id, 32, release, 64);
    } else {
        pl->by_name = true;
        memcpy(pl->name, release, n + 1);
        memcpy(pl->asked, release, n + 1);
        if (!commit) {
            pl->unresolved = true;
            snprintf(pl->ref, sizeof pl->ref, "%s", strchr(release, '@') + 1);
            rv = resolve_pull(d, pl, why, whylen);
        }
    }
    if (rv != 0)
        return rv;
    pl->loader_only = from_loader;
    d->npulls++;
    LOG_I("pull %s asked by %s", release, by);
    want_manifests_everywhere(d);
    return 0;
}

static int ctl_pull(void *user, const char *release, char *why, size_t whylen)
{
    return request_pull(user, release, "the control socket", false, why, whylen);
}

/* For a pull with no peer: how many nodes are banned here, when the
 * first of those bans ends and why the last was made ("" with none). */
static void banned_reason(struct shoal_daemon *d, char *out, size_t cap)
{
    uint64_t now = uv_now(&d->loop), next = UINT64_MAX;
    uint32_t n = 0;

    for (uint32_t i = 0; i < d->nbans; i++) {
        if (d->bans[i].until_ms > now) {
            n++;
            if (d->bans[i].until_ms - now < next)
                next = d->bans[i].until_ms - now;
        }
    }
    if (n == 0)
        return;
    snprintf(out, cap, "no peer: %u node%s banned here (the next ban ends in %llu s; the "
             "last: %s)", n, n == 1 ? "" : "s", (unsigned long long)((next + 999) / 1000),
             d->last_ban_why);
    utf8_cut(out);
}

#define TRACKER_QUIET_SHOW_MS 2000u

/* For a release pulling with --tracker: no tracker reachable (QA N7), and
 * whether its origin fetches wait for one or go without leases (the step
 * that costs origin egress when several nodes take it), or spans it still
 * fetches under leases it took itself while none answered. Returns whether
 * it wrote a line. */
static bool tracker_reason(struct shoal_daemon *d, struct shoal_swarm *sw, char *out,
                           size_t cap)
{
    if (!d->trk)
        return false; /* without one, lease-less fetches are the design */
    uint64_t now = uv_now(&d->loop);
    uint32_t local = shoal_swarm_local_leases(sw);
    if (shoal_trkconn_ready(d->trk) > 0) {
        if (local == 0)
            return false;
        snprintf(out, cap, "fetching %u span%s from the origin without a tracker's lease "
                 "(taken while no tracker answered)", local, local == 1 ? "" : "s");
        return true;
    }
    uint64_t away = now - d->trk_seen_ms;
    /* The first login, or a reconnect, usually takes well under this. */
    if (local == 0 && away < TRACKER_QUIET_SHOW_MS)
        return false;
    if (local > 0)
        snprintf(out, cap, "no tracker reachable for %llu s; fetching %u span%s from the origin "
                 "without a lease", (unsigned long long)(away / 1000), local,
                 local == 1 ? "" : "s");
    else if (away >= d->cfg->lease_fallback_ms)
        snprintf(out, cap, "no tracker reachable for %llu s; new origin fetches go without "
                 "a lease", (unsigned long long)(away / 1000));
    else
        snprintf(out, cap, "no tracker reachable for %llu s; new origin fetches wait for "
                 "one (without a lease after %llu s)", (unsigned long long)(away / 1000),
                 (unsigned long long)((d->cfg->lease_fallback_ms + 999) / 1000));
    return true;
}

static void ctl_fill(struct shoal_daemon *d, struct shoal_swarm *sw, struct shoal_ctl_release *r)
{
    const struct shoal_manifest *m = shoal_swarm_manifest(sw);
    struct shoal_swarm_stats st;

    shoal_swarm_stats(sw, &st);
    memset(r, 0, sizeof *r);
    r->has_id = true;
    memcpy(r->id, shoal_swarm_id(sw), 32);
    (void)shoal_manifest_name(m, r->name, sizeof r->name);
    bool checking = d->slot[swarm_slot(d, sw)].checking;

    r->state = shoal_swarm_complete(sw) && !checking ? SHOAL_CTL_COMPLETE : SHOAL_CTL_PULLING;
    r->have_bytes = st.have_bytes;
    r->total_bytes = st.total_bytes;
    r->have_chunks = st.have_chunks;
    r->nchunks = st.nchunks;
    r->peers = st.peers;
    /* Each chunk once, as the release splits between the two: endgame
     * duplicates are received bytes (metrics count them) but not the
     * release's. */
    r->peer_bytes = st.rx_chunk_bytes - st.rx_dup_bytes;
    r->origin_bytes = st.origin_bytes;
    r->elapsed_ms = uv_now(&d->loop) - d->slot[swarm_slot(d, sw)].opened_ms;
    if (r->elapsed_ms == 0)
        r->elapsed_ms = 1; /* 0 says "unknown" */
    /* Cheap, and the one thing a stuck "pulling 0%" does not say. */
    uint32_t nfound;
    uint64_t found_bytes;

    if (checking) {
        snprintf(r->error, sizeof r->error, "complete: checking that its files are still in "
                 "the cache");
    } else if (shoal_swarm_hashing_found(sw, &nfound, &found_bytes)) {
        snprintf(r->error, sizeof r->error, "hashing %u file(s) (%llu bytes) found in the "
                 "cache that shoald had not verified", nfound, (unsigned long long)found_bytes);
    } else if (*shoal_swarm_disk_error(sw)) { /* a file changed on disk */
        snprintf(r->error, sizeof r->error, "%s", shoal_swarm_disk_error(sw));
        utf8_cut(r->error);
    } else if (r->state == SHOAL_CTL_PULLING && *shoal_swarm_publish_error(sw)) {
        snprintf(r->error, sizeof r->error, "verified, but not yet in the cache: %s (trying "
                 "again)", shoal_swarm_publish_error(sw));
        utf8_cut(r->error); /* file names may be cut mid-character */
    } else if (r->state == SHOAL_CTL_PULLING && *shoal_swarm_origin_error(sw)) {
        snprintf(r->error, sizeof r->error, "%s", shoal_swarm_origin_error(sw));
        utf8_cut(r->error); /* it may name a file */
    } else if (r->state == SHOAL_CTL_PULLING &&
             shoal_hub_failing(d->hub, r->error, sizeof r->error)) {
        utf8_cut(r->error); /* the host may be an internationalised name */
    } else if (r->state == SHOAL_CTL_PULLING && r->peers == 0) {
        banned_reason(d, r->error, sizeof r->error);
    }
    if (r->state == SHOAL_CTL_PULLING && !r->error[0] &&
        !tracker_reason(d, sw, r->error, sizeof r->error))
        (void)shoal_swarm_lease_wait(sw, r->error, sizeof r->error);
}

/* Why a pull with a known commit or id still has no manifest: who could
 * give it one, as far as this node can tell. */
static void waiting_reason(struct shoal_daemon *d, char *out, size_t cap)
{
    uint32_t ready = 0;
    const char *refused = NULL;
    for (uint32_t i = 0; i < d->npeers; i++)
        ready += shoal_peer_ready(d->peers[i]) ? 1 : 0;
    /* A tracker that refused us will not change its mind by itself: say
     * so, not that it is unreachable. */
    for (uint32_t i = 0; d->trk && !refused && i < shoal_trkconn_count(d->trk); i++)
        refused = shoal_trkconn_refused(d->trk, i);
    if (d->trk && shoal_trkconn_ready(d->trk) == 0 && refused)
        snprintf(out, cap, "%s; %u peer%s asked for its manifest", refused, ready,
                 ready == 1 ? "" : "s");
    else if (d->trk && shoal_trkconn_ready(d->trk) == 0)
        snprintf(out, cap, "no tracker reachable yet; %u peer%s asked for its manifest", ready,
                 ready == 1 ? "" : "s");
    else if (!d->trk && ready == 0)
        snprintf(out, cap, "no tracker configured and no peer connected: nobody can offer its "
                 "manifest");
    else if (!d->trk)
        snprintf(out, cap, "no tracker configured; none of %u peer%s has offered its manifest",
                 ready, ready == 1 ? "" : "s");
}

static void ctl_fill_waiting(struct shoal_daemon *d, const struct pull *pl,
                             struct shoal_ctl_release *r)
{
    memset(r, 0, sizeof *r);
    r->state = pl->failed ? SHOAL_CTL_FAILED : SHOAL_CTL_WAITING;
    if (pl->failed)
        snprintf(r->error, sizeof r->error, "%s", pl->why);
    else if (pl->unresolved) {
        /* The lookup is this pull's origin request: its failures are
         * why it waits (QA K10). */
        int n = snprintf(r->error, sizeof r->error, "asking the Hub where %s is", pl->ref);
        if (n > 0 && (size_t)n + 3 < sizeof r->error && d->hub &&
            shoal_hub_failing(d->hub, r->error + n + 2, sizeof r->error - (size_t)n - 2))
            memcpy(r->error + n, "; ", 2);
        utf8_cut(r->error);
    } else if (pl->refused == SHOAL_EUNTRUSTED)
        snprintf(r->error, sizeof r->error,
                 "manifest refused: signed by an untrusted key (check --publisher-keys)");
    else if (pl->refused)
        snprintf(r->error, sizeof r->error, "manifest refused: %s", shoal_strerror(pl->refused));
    else if (pl->unknown)
        snprintf(r->error, sizeof r->error,
                 "no tracker has answered with its manifest yet (not published?)");
    else
        waiting_reason(d, r->error, sizeof r->error);
    if (!pl->by_name) {
        r->has_id = true;
        memcpy(r->id, pl->id, 32);
    }
    /* The name once known (asked by name, or read from a manifest that
     * then failed to open), else the manifest id. */
    if (pl->name[0])
        snprintf(r->name, sizeof r->name, "%s", pl->name);
    else
        shoal_hex(r->name, pl->id, 32);
}

static int ctl_release(void *user, const char *release, struct shoal_ctl_release *r, char *why,
                       size_t whylen)
{
    struct shoal_daemon *d = user;
    struct shoal_swarm *sw;
    struct pull *pl;

    ctl_match(d, release, &sw, &pl);
    if (sw) {
        ctl_fill(d, sw, r);
        return 0;
    }
    if (pl && pl->failed) {
        snprintf(why, whylen, "pull %s failed: %s", pl->name[0] ? pl->name : release, pl->why);
        return pl->err;
    }
    if (pl) {
        ctl_fill_waiting(d, pl, r);
        return 0;
    }
    for (size_t i = 0; i < sizeof d->gone / sizeof d->gone[0]; i++) {
        if (d->gone[i].asked[0] && strcmp(d->gone[i].asked, release) == 0) {
            snprintf(why, whylen, "%s", d->gone[i].why);
            return d->gone[i].err;
        }
    }
    snprintf(why, whylen, "release %s is neither here nor being pulled", release);
    return SHOAL_ENOTFOUND;
}

static uint32_t ctl_releases(void *user, struct shoal_ctl_release *v, uint32_t max)
{
    struct shoal_daemon *d = user;
    uint32_t n = 0;

    for (uint32_t i = 0; i < d->nswarms && n < max; i++)
        ctl_fill(d, d->swarms[i], &v[n++]);
    for (uint32_t i = 0; i < d->npulls && n < max; i++) {
        if (!d->pulls[i].swarm)
            ctl_fill_waiting(d, &d->pulls[i], &v[n++]);
    }
    return n;
}

static uint32_t ctl_peers(void *user, struct shoal_ctl_peer *v, uint32_t max)
{
    struct shoal_daemon *d = user;
    uint32_t n = 0;

    for (uint32_t i = 0; i < d->npeers && n < max; i++) {
        struct shoal_peer *p = d->peers[i];
        const struct shoal_session *ss = shoal_peer_session(p);
        struct shoal_ctl_peer *o = &v[n];
        if (!shoal_peer_ready(p) || !ss)
            continue;
        memset(o, 0, sizeof *o);
        memcpy(o->node_pk, shoal_session_peer_pk(ss), 32);
        snprintf(o->addr, sizeof o->addr, "%s", shoal_session_peer_addr(ss));
        snprintf(o->zone, sizeof o->zone, "%s", shoal_session_peer_zone(ss));
        snprintf(o->cipher, sizeof o->cipher, "%s", shoal_session_cipher(ss));
        o->initiator = shoal_peer_initiator(p);
        o->rx_bytes = shoal_peer_rx_bytes(p);
        o->tx_bytes = shoal_peer_tx_bytes(p);
        o->conn_id = shoal_peer_id(p);
        o->rtt_us = shoal_peer_rtt_us(p);
        n++;
    }
    return n;
}

static void ctl_metrics(void *user, struct shoal_ctl_metrics *m)
{
    struct shoal_daemon *d = user;
    uint64_t now = uv_now(&d->loop);

    for (uint32_t i = 0; i < d->nswarms; i++) {
        struct shoal_swarm_stats st;
        shoal_swarm_stats(d->swarms[i], &st);
        m->bytes_from_peers += st.rx_chunk_bytes;
        m->bytes_from_origin += st.origin_bytes;
        m->bytes_served += st.tx_chunk_bytes;
        m->bytes_served_payload += st.tx_payload_bytes;
        m->chunks_verified += st.rx_chunks;
        m->chunks_failed += st.bad_chunks;
        m->busy_slots += st.busy_slots;
        m->releases++;
        m->releases_complete += shoal_swarm_complete(d->swarms[i]);
    }
    for (uint32_t i = 0; i < d->npulls; i++)
        m->releases += !d->pulls[i].swarm;
    for (uint32_t i = 0; i < d->npeers; i++) {
        m->peers += shoal_peer_ready(d->peers[i]);
        m->wire_rx_bytes += shoal_peer_rx_bytes(d->peers[i]);
        m->wire_tx_bytes += shoal_peer_tx_bytes(d->peers[i]);
    }
    m->bans_total = d->bans_total;
    m->hello_refused = d->hello_refused_total;
    m->handshake_evictions = d->evicted_total;
    for (uint32_t i = 0; i < d->nbans; i++)
        m->bans_active += d->bans[i].until_ms > now;
    m->cred_expires_unix = d->cred_expires;
    m->now_unix = (uint64_t)time(NULL);
    m->trackers = d->trk ? shoal_trkconn_count(d->trk) : 0;
    m->trackers_connected = d->trk ? shoal_trkconn_ready(d->trk) : 0;
}

/* ---- dropping a release (`shoal drop`) ---- */

#define REAP_MS 200u

/* Frees dropped swarms whose worker jobs and origin fetches have ended;
 * runs while some wait. */
static void on_reap(uv_timer_t *t)
{
    struct shoal_daemon *d = t->data;

    for (uint32_t i = 0; i < d->ndropped;) {
        if (!shoal_swarm_idle(d->dropped[i])) {
            i++;
            continue;
        }
        free_dropped(d, i);
    }
    /* Releases closed to be opened again, whose old swarm is gone now. */
    for (uint32_t i = 0; i < d->nreopens;) {
        bool closing = false;
        for (uint32_t k = 0; k < d->ndropped; k++)
            closing |= memcmp(shoal_swarm_id(d->dropped[k]), d->reopens[i].id, 32) == 0;
        if (closing) {
            i++;
            continue;
        }
        struct reopen r = d->reopens[i];
        d->reopens[i] = d->reopens[--d->nreopens];
        if (!d->stopping)
            reopen_now(d, &r);
        free(r.mf);
    }
    if (d->ndropped == 0 && d->nreopens == 0)
        uv_timer_stop(&d->reaper);
}

/* Forgets pull |pl|: loaders still waiting for it by the names it was
 * asked under get |why|. Moves the pulls after it. */
static void remove_pull(struct shoal_daemon *d, struct pull *pl, const char *why)
{
    char hex[65];
    uint32_t i = (uint32_t)(pl - d->pulls);

    if (pl->asked[0])
        shoal_loader_srv_release_failed(d->loader, pl->asked, why);
    if (pl->name[0] && strcmp(pl->name, pl->asked) != 0)
        shoal_loader_srv_release_failed(d->loader, pl->name, why);
    if (!pl->by_name) {
        shoal_hex(hex, pl->id, 32);
        shoal_loader_srv_release_failed(d->loader, hex, why);
    }
    forget_pull(d, i);
}

/* Takes open release |s| out of service: loaders watching it get |why|,
 * peers get CANCELs for what we asked of them (and REJECT unknown for
 * what they ask next), the trackers stop hearing of it at the next
 * announce; the swarm is freed by the reaper once nothing of it runs. */
static void remove_swarm(struct shoal_daemon *d, struct shoal_swarm *s, const char *why)
{
    uint32_t k = swarm_slot(d, s);

    shoal_loader_srv_release_dropped(d->loader, s, why);
    shoal_swarm_withdraw(s);
    memmove(&d->swarms[k], &d->swarms[k + 1], (d->nswarms - k - 1) * sizeof d->swarms[0]);
    memmove(&d->slot[k], &d->slot[k + 1], (d->nswarms - k - 1) * sizeof d->slot[0]);
    d->nswarms--;
    d->dropped[d->ndropped++] = s;
    share_rate_down(d);
    if (!uv_is_active((uv_handle_t *)&d->reaper))
        uv_timer_start(&d->reaper, on_reap, REAP_MS, REAP_MS);
    if (d->trk)
        shoal_trkconn_announce_soon(d->trk);
}

/* A `shoal pull` following |asked| is told |why| once the release is gone
 * (ctl_release reads d->gone), not "neither here nor being pulled". */
static void remember_gone(struct shoal_daemon *d, const char *asked, const char *why, int err)
{
    struct gone_pull *g;

    if (!asked[0] || strlen(asked) >= sizeof g->asked)
        return;
    g = &d->gone[d->gone_next++ % (sizeof d->gone / sizeof d->gone[0])];
    snprintf(g->asked, sizeof g->asked, "%s", asked);
    snprintf(g->why, sizeof g->why, "%s", why);
    g->err = err;
}

static int ctl_drop(void *user, const char *release, char *name, size_t namelen, char *dir,
                    size_t dirlen, char *why, size_t whylen)
{
    struct shoal_daemon *d = user;
    struct shoal_swarm *sw;
    struct pull *pl;
    char reason[160], folder[SHOAL_HF_PATH_MAX], hex[17];

    uint64_t pl_serial;

    ctl_match(d, release, &sw, &pl);
    pl_serial = pl ? pl->serial : 0; /* serials start at 1 */
    if (!sw && !pl) {
        snprintf(why, whylen, "release %s is neither open here nor being pulled (`shoal "
                              "status` lists what is)", release);
        return SHOAL_ENOTFOUND;
    }
    if (d->stopping) {
        snprintf(why, whylen, "shoald is shutting down");
        return SHOAL_EBUSY;
    }
    /* Dropped releases wait in d->dropped until their jobs end. */
    if (sw && d->ndropped >= MAX_SWARMS) {
        snprintf(why, whylen, "%d dropped releases are still closing (their origin fetches "
                 "end first); drop this one again in a moment", MAX_SWARMS);
        return SHOAL_EBUSY;
    }
    dir[0] = '\0';
    if (sw) {
        const struct shoal_manifest *m = shoal_swarm_manifest(sw);
        (void)shoal_manifest_name(m, name, namelen);
        if (!(d->scfg.store_flags & SHOAL_STORE_MEMORY) &&
            shoal_hf_repo_folder(folder, sizeof folder, shoal_manifest_repo_type(m),
                                 shoal_manifest_repo_id(m)) == 0)
            snprintf(dir, dirlen, "%s/%s", d->abs_cache[0] ? d->abs_cache : d->cache_dir,
                     folder);
        hex8(hex, shoal_swarm_id(sw));
    } else {
        snprintf(name, namelen, "%s", pl->name[0] ? pl->name : release);
        snprintf(hex, sizeof hex, "-");
    }
    snprintf(reason, sizeof reason, "dropped on this node (shoal drop %s)", name);
    /* Every pull that leads to it goes: by id, by name, by branch. */
    for (uint32_t i = 0; i < d->npulls;) {
        struct pull *p = &d->pulls[i];
        if (p->serial == pl_serial || (sw && p->swarm == sw) ||
            (sw && !p->by_name && memcmp(p->id, shoal_swarm_id(sw), 32) == 0)) {
            remember_gone(d, p->asked, reason, SHOAL_ENOTFOUND);
            remove_pull(d, p, reason);
            continue;
        }
        i++;
    }
    /* Its unfinished files are nobody's now: kept, they held their full
     * preallocated size where huggingface-cli delete-cache never looks. */
    uint32_t nparts = 0;
    uint64_t pbytes = 0;
    if (sw) {
        char full[65];
        shoal_hex(full, shoal_swarm_id(sw), 32);
        remember_gone(d, name, reason, SHOAL_ENOTFOUND);
        remember_gone(d, full, reason, SHOAL_ENOTFOUND);
        shoal_swarm_discard_partials(sw, &nparts, &pbytes);
        remove_swarm(d, sw, reason);
    }
    char psize[32];
    shoal_fmt_bytes(psize, sizeof psize, pbytes);
    LOG_I("release %s (%s) dropped by the control socket: no longer fetched or served, "
          "not reopened at start; its complete files stay in the cache, %u unfinished "
          "(%s) are removed", name, hex, nparts, psize);
    save_state(d);
    return 0;
}

/* Rate caps into the peer context, and the control socket. A socket at
 * the default path that another daemon holds is not fatal (the CLI then
 * talks to that one); one the operator named is. */
static int start_ctl(struct shoal_daemon *d)
{
    const struct shoal_config *c = d->cfg;
    const char *path = c->control_socket;
    int rv;

    d->rate.up = c->rate_up;
    d->rate.down = c->rate_down;
    d->rate.peer_up = c->peer_rate_up;
    d->rate.peer_down = c->peer_rate_down;
    shoal_bucket_init(&d->up_bucket, c->rate_up, uv_now(&d->loop));
    shoal_bucket_init(&d->down_bucket, c->rate_down, uv_now(&d->loop));
    d->pctx.rate = &d->rate;
    d->pctx.global_up = c->rate_up ? &d->up_bucket : NULL;
    d->pctx.global_down = c->rate_down ? &d->down_bucket : NULL;
    if (c->rate_up || c->rate_down || c->peer_rate_up || c->peer_rate_down) {
        char up[64], down[64], pup[64], pdown[64];
        LOG_I("rate limits: up %s, down %s, per peer up %s, down %s",
              shoal_fmt_rate(up, sizeof up, c->rate_up),
              shoal_fmt_rate(down, sizeof down, c->rate_down),
              shoal_fmt_rate(pup, sizeof pup, c->peer_rate_up),
              shoal_fmt_rate(pdown, sizeof pdown, c->peer_rate_down));
    }

    if (path && strcmp(path, "none") == 0)
        return 0;
    if (path && strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        LOG_E("control socket %s: the path is too long for a Unix socket (%zu bytes, at most "
              "%zu)", path, strlen(path), sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        return SHOAL_ELIMIT;
    }
    if (path) {
        char why[PATH_MAX + 160], dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
        const char *slash = strrchr(path, '/');
        /* The directory is made here, before it is checked (shoal_ctl_new
         * would make it after): one someone else makes in between is then
         * theirs, and refused, not used. */
        if (slash && slash != path) {
            snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
            if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
                int e = errno;
                LOG_E("control socket %s: cannot make its directory: %s", path, strerror(e));
                return -e;
            }
        }
        if ((rv = shoal_sockpath_check(path, why, sizeof why)) != 0) {
            LOG_E("control socket %s: %s; put it in a directory only root or shoald's user "
                  "may write", path, why);
            return rv;
        }
    }
    d->ctl_ops.pull = ctl_pull;
    d->ctl_ops.release = ctl_release;
    d->ctl_ops.releases = ctl_releases;
    d->ctl_ops.peers = ctl_peers;
    d->ctl_ops.metrics = ctl_metrics;
    d->ctl_ops.drop = ctl_drop;
    d->ctl_ops.user = d;
    rv = shoal_ctl_new(&d->ctl, &d->loop, path, &d->ctl_ops);
    if (rv == 0) {
        LOG_I("control socket %s", shoal_ctl_path(d->ctl));
    } else if (!path) {
        LOG_W("no control socket at the default path: %s (set control-socket)",
              rv == SHOAL_EBUSY ? "another shoald is answering there" : shoal_strerror(rv));
        rv = 0;
    } else {
        LOG_E("control socket %s: %s", path,
              rv == SHOAL_EBUSY ? "another shoald is answering there" : shoal_strerror(rv));
    }
    return rv;
}

/* ---- shutdown ---- */

static void on_signal(uv_signal_t *h, int signum)
{
    struct shoal_daemon *d = h->data;
    LOG_I("signal %d: shutting down", signum);
    shoal_daemon_stop(d, 0);
}

/* SIGHUP comes from a closed terminal or a log rotation: neither means
 * stop (by default it killed the daemon on the spot: no BYE, no sidecar
 * flush, sockets left behind), and there is no configuration to reload. */
static void on_sighup(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    LOG_I("SIGHUP ignored: shoald reloads nothing; SIGTERM stops it");
}

void shoal_daemon_stop(struct shoal_daemon *d, int exit_code)
{
    if (d->stopping)
        return;
    d->stopping = true;
    d->exit_code = exit_code;
    uv_close((uv_handle_t *)&d->listener, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sighup, NULL);
    uv_close((uv_handle_t *)&d->redial, NULL);
    uv_close((uv_handle_t *)&d->mfq_timer, NULL);
    uv_close((uv_handle_t *)&d->retry, NULL);
    uv_close((uv_handle_t *)&d->reaper, NULL);
    uv_close((uv_handle_t *)&d->cred_timer, NULL);
    uv_close((uv_handle_t *)&d->deny_timer, NULL);
    shoal_loader_srv_close(d->loader);
    stop_trackers(d);
    shoal_ctl_close(d->ctl);
    for (uint32_t i = 0; i < d->nswarms; i++)
        shoal_swarm_stop(d->swarms[i]);
    /* Copy: closing may not change the array now, but the close callbacks
     * do later; BYE flushes what each peer has queued. */
    for (uint32_t i = 0; i < d->npeers; i++)
        shoal_peer_bye(d->peers[i], "shutting down");
}

/* ---- setup ---- */

/* "2026-11-23 19:32 UTC" for |unix| into |buf|. */
static const char *fmt_utc(char *buf, size_t cap, uint64_t unix_s)
{
    time_t t = (time_t)unix_s;
    struct tm tm;

    if (!gmtime_r(&t, &tm) || strftime(buf, cap, "%Y-%m-%d %H:%M UTC", &tm) == 0)
        snprintf(buf, cap, "%llu (unix time)", (unsigned long long)unix_s);
    return buf;
}

/* A short "3 days 4 h" / "5 h 12 min" / "40 s" for |secs|. */
static const char *fmt_span(char *buf, size_t cap, uint64_t secs)
{
    if (secs >= 86400)
        snprintf(buf, cap, "%llu days %llu h", (unsigned long long)(secs / 86400),
                 (unsigned long long)(secs % 86400 / 3600));
    else if (secs >= 3600)
        snprintf(buf, cap, "%llu h %llu min", (unsigned long long)(secs / 3600),
                 (unsigned long long)(secs % 3600 / 60));
    else
        snprintf(buf, cap, "%llu s", (unsigned long long)secs);
    return buf;
}

/* Loads every trust file of |files| into |ks|; |what| names them in the
 * error. Returns 0 or the first error (logged). */
static int load_keysets(struct shoal_keyset *ks, const struct shoal_config_list *files,
                        const char *what)
{
    for (size_t i = 0; i < files->n; i++) {
        int rv = shoal_keyset_load_file(ks, files->v[i]);
        if (rv != 0) {
            LOG_E("%s %s: %s", what, files->v[i], shoal_strerror(rv));
            return rv;
        }
    }
    return 0;
}

/* The credential of |c| checked as a peer will check it (node key,
 * signature, cluster key trusted, expiry): a node whose credential fails
 * here is refused by every peer and tracker of its fleet, so it is better
 * not started, saying why, than running and logging "listening". */
static int load_cred(struct shoal_daemon *d)
{
    const struct shoal_config *c = d->cfg;
    struct shoal_cred cred;
    struct shoal_buf b;
    char hex_a[17], hex_b[17], when[64];
    uint64_t now = (uint64_t)time(NULL);
    int rv;

    if (!c->cred) {
        /* Only a node that talks to nobody may run without one. */
        if (c->trackers.n || c->peers.n) {
            LOG_E("no credential (cred): every %s would refuse this node; issue one with "
                  "'shoal cred issue --cluster-key CLUSTER.key --node %s.pub --out FILE' and "
                  "set cred (only a standalone node, with no tracker and no peer, runs "
                  "without one)", c->trackers.n ? "tracker and peer" : "peer", c->node_key);
            return -EINVAL;
        }
        LOG_I("no credential (cred): a standalone node, fetching from the origin only; "
              "peers will refuse it");
        return 0;
    }
    rv = shoal_cred_load(c->cred, &cred);
    if (rv != 0) {
        LOG_E("credential %s: %s", c->cred, shoal_strerror(rv));
        return rv;
    }
    if (memcmp(cred.node_pk, d->pk.pk, 32) != 0) {
        hex8(hex_a, cred.node_pk);
        hex8(hex_b, d->pk.pk);
        LOG_E("credential %s was issued for node key %s, not this node's %s (node-key %s): "
              "peers would refuse it; issue one for %s.pub with 'shoal cred issue'",
              c->cred, hex_a, hex_b, c->node_key, c->node_key);
        return SHOAL_EPERM;
    }
    if (shoal_keyset_count(d->cluster_keys) == 0) {
        LOG_E("no cluster keys (cluster-keys): the credential %s cannot be checked and every "
              "peer would be refused; set cluster-keys to the cluster's public key file",
              c->cred);
        return -EINVAL;
    }
    rv = shoal_cred_verify(&cred, d->cluster_keys, now);
    if (rv == SHOAL_EBADSIG) {
        LOG_E("credential %s: its signature does not verify (damaged or forged): issue a new "
              "one with 'shoal cred issue'", c->cred);
        return rv;
    }
    if (rv == SHOAL_EUNTRUSTED) {
        hex8(hex_a, cred.cluster_pk);
        LOG_E("credential %s was issued by cluster key %s, which is not in cluster-keys (%s%s): "
              "peers trusting those keys would refuse this node; set cluster-keys to that "
              "cluster's public key, or issue a credential with the key of the cluster in "
              "cluster-keys", c->cred, hex_a, c->cluster_keys.v[0],
              c->cluster_keys.n > 1 ? ", ..." : "");
        return rv;
    }
    if (rv == SHOAL_EEXPIRED) {
        LOG_E("credential %s expired at %s: every peer and tracker would refuse this node; "
              "issue a new one ('shoal cred issue --cluster-key CLUSTER.key --node %s.pub --out "
              "%s [--days N]') and start shoald again", c->cred,
              fmt_utc(when, sizeof when, cred.expires_unix), c->node_key, c->cred);
        return rv;
    }
    if (rv != 0) {
        LOG_E("credential %s: %s", c->cred, shoal_strerror(rv));
        return rv;
    }
    d->cred_expires = cred.expires_unix;
    shoal_buf_init(&b, sizeof d->cred);
    rv = shoal_cred_encode(&cred, &b);
    if (rv == 0) {
        memcpy(d->cred, b.data, b.len);
        d->cred_len = b.len;
    }
    shoal_buf_free(&b);
    return rv;
}

/* A credential ending within this long is warned about, at start and then
 * once a day: `shoal cred issue` gives 30 days by default, and a fleet
 * whose credentials were issued together would otherwise drop off all at
 * once with nothing said before. */
#define CRED_WARN_S (7u * 86400)
#define CRED_CHECK_S 86400u

/* Logs how long the credential has left when that is under CRED_WARN_S
 * (an error once it has ended), and runs again in a day, or at its end if
 * that comes first. */
static void on_cred_timer(uv_timer_t *t)
{
    struct shoal_daemon *d = t->data;
    const struct shoal_config *c = d->cfg;
    uint64_t now = (uint64_t)time(NULL), next = CRED_CHECK_S;
    char when[64], left[48];

    if (!d->cred_expires || d->stopping)
        return;
    if (now >= d->cred_expires) {
        LOG_E("credential %s expired at %s: peers and trackers refuse this node (it redials "
              "its --peers only every few minutes now); issue a new one ('shoal cred issue "
              "--cluster-key CLUSTER.key --node %s.pub --out %s') and restart shoald", c->cred, fmt_utc(when, sizeof when, d->cred_expires),
              c->node_key, c->cred);
    } else {
        uint64_t rem = d->cred_expires - now;
        if (rem <= CRED_WARN_S)
            LOG_W("credential %s expires at %s, in %s: then peers and trackers refuse this "
                  "node; issue a new one ('shoal cred issue --cluster-key CLUSTER.key --node "
                  "%s.pub --out %s [--days N]') and restart shoald before then", c->cred,
                  fmt_utc(when, sizeof when, d->cred_expires),
                  fmt_span(left, sizeof left, rem), c->node_key, c->cred);
        if (rem < next)
            next = rem + 1; /* once more, just past its end */
    }
    uv_timer_start(&d->cred_timer, on_cred_timer, next * 1000, 0);
}

static int load_identity(struct shoal_daemon *d)
{
    const struct shoal_config *c = d->cfg;
    int rv;

    if (!c->node_key) {
        LOG_E("no node key: set node-key (make one with 'shoal keygen')");
        return -EINVAL;
    }
    rv = shoal_seckey_load(c->node_key, &d->sk);
    if (rv != 0) {
        LOG_E("node key %s: %s", c->node_key, shoal_strerror(rv));
        return rv;
    }
    shoal_seckey_public(&d->sk, &d->pk);
    rv = shoal_keyset_new(&d->cluster_keys);
    if (rv == 0)
        rv = shoal_keyset_new(&d->publishers);
    if (rv != 0)
        return rv;
    rv = load_keysets(d->cluster_keys, &c->cluster_keys, "cluster keys");
    if (rv != 0)
        return rv;
    rv = load_cred(d);
    if (rv != 0)
        return rv;
    if (shoal_keyset_count(d->cluster_keys) == 0)
        LOG_W("no cluster keys (cluster-keys): every peer will be refused");
    /* Every release, --manifest ones included, is a manifest checked
     * against these: without one no release can ever open. */
    rv = load_keysets(d->publishers, &c->publisher_keys, "publisher keys");
    if (rv != 0)
        return rv;
    if (shoal_keyset_count(d->publishers) == 0) {
        LOG_E("no publisher keys (publisher-keys): no manifest could be accepted, so no "
              "release could open; set publisher-keys to the publishers' public key file");
        return -EINVAL;
    }
    if (c->tracker_keys.n) {
        rv = shoal_keyset_new(&d->tracker_keys);
        for (size_t i = 0; rv == 0 && i < c->tracker_keys.n; i++) {
            /* Each file on its own first: one with no key is a mistake.
             * Read once and merged, so the keys checked are the keys used. */
            struct shoal_keyset *one = NULL;
            rv = shoal_keyset_new(&one);
            if (rv == 0)
                rv = shoal_keyset_load_file(one, c->tracker_keys.v[i]);
            if (rv == 0 && shoal_keyset_count(one) == 0)
                rv = SHOAL_EBADMSG;
            if (rv == 0)
                rv = shoal_keyset_merge(d->tracker_keys, one);
            shoal_keyset_free(one);
            if (rv != 0)
                LOG_E("tracker keys %s: %s", c->tracker_keys.v[i],
                      rv == SHOAL_EBADMSG ? "no key in the file" : shoal_strerror(rv));
        }
        if (rv != 0)
            return rv;
    }
    return 0;
}

/* How often the deny-keys files are looked at (a stat each). */
#define DENY_CHECK_MS 2000u

/* Reads deny-keys again if a file changed, and closes the sessions of
 * peers whose key it now lists. */
static void on_deny_timer(uv_timer_t *t)
{
    struct shoal_daemon *d = t->data;
    char why[512];
    bool changed;
    uint32_t closed = 0;

    if (shoal_keywatch_check(d->deny, &changed, why, sizeof why) != 0) {
        LOG_E("deny-keys: %s; the keys read before still count", why);
        return;
    }
    if (!changed)
        return;
    for (uint32_t i = 0; i < d->npeers;) {
        struct shoal_peer *p = d->peers[i];
        if (!shoal_peer_ready(p) ||
            !shoal_keywatch_contains(d->deny, shoal_session_peer_pk(shoal_peer_session(p)))) {
            i++;
            continue;
        }
        LOG_W("peer %s closed: its node key is now revoked here (deny-keys)",
              shoal_peer_name(p));
        forget_peer(d, p);
        shoal_peer_bye(p, "node key revoked");
        closed++;
    }
    LOG_I("deny-keys read again: %zu revoked node key(s); %u session(s) closed",
          shoal_keywatch_count(d->deny), closed);
}

static int load_deny(struct shoal_daemon *d)
{
    const struct shoal_config *c = d->cfg;
    char why[512];
    int rv;

    if (c->deny_keys.n == 0)
        return 0;
    rv = shoal_keywatch_new(&d->deny, (const char *const *)c->deny_keys.v, c->deny_keys.n, why,
                            sizeof why);
    if (rv != 0) {
        LOG_E("deny-keys: %s", why);
        return rv;
    }
    LOG_I("deny-keys: %zu revoked node key(s), read again within %u s of a change",
          shoal_keywatch_count(d->deny), DENY_CHECK_MS / 1000);
    return 0;
}

static int open_manifests(struct shoal_daemon *d)
{
    const struct shoal_config *c = d->cfg;
    int rv = 0;

    for (size_t i = 0; i < c->manifests.n && rv == 0; i++) {
        struct shoal_manifest *m = NULL;
        struct shoal_swarm *s;
        uint8_t *data = NULL;
        size_t len = 0;
        uint32_t imported = 0;

        rv = shoal_read_file(c->manifests.v[i], SHOAL_MSG_MANIFEST_MAX, &data, &len);
        if (rv == 0)
            rv = shoal_manifest_parse(&m, data, len, d->publishers, NULL);
        if (rv != 0) {
            LOG_E("manifest %s: %s", c->manifests.v[i], shoal_strerror(rv));
            free(data);
            break;
        }
        if (find_swarm(d, shoal_manifest_id(m))) {
            shoal_manifest_free(m);
            s = NULL;
            rv = -EINVAL;
        } else {
            char why[256];
            s = add_release(d, m, data, len, NULL, true, &rv, why, sizeof why);
        }
        free(data);
        if (!s)
            break;
        memcpy(d->held[d->nheld++], shoal_manifest_id(shoal_swarm_manifest(s)), 32);
        if (c->seed_dir && !shoal_swarm_complete(s)) {
            rv = shoal_swarm_import_dir(s, c->seed_dir, &imported);
            LOG_I("imported %u chunks from %s%s", imported, c->seed_dir,
                  shoal_swarm_complete(s) ? ": release complete" : "");
            if (rv != 0)
                LOG_E("import from %s failed: %s", c->seed_dir, shoal_strerror(rv));
        }
    }
    for (size_t i = 0; i < c->pulls.n && rv == 0; i++) {
        struct pull *pl;
        if (strchr(c->pulls.v[i], '@')) {
            char why[SHOAL_CTL_ERROR_MAX];
            rv = request_pull(d, c->pulls.v[i], "the configuration", false, why, sizeof why);
            if (rv != 0)
                LOG_E("pull %s: %s", c->pulls.v[i], why);
            continue;
        }
        pl = new_pull(d);
        if (shoal_unhex(pl->id, 32, c->pulls.v[i], strlen(c->pulls.v[i])) != 0) {
            LOG_E("pull %s: not a 64-hex manifest id or org/name@commit", c->pulls.v[i]);
            rv = -EINVAL;
            break;
        }
        pl->swarm = find_swarm(d, pl->id);
        d->npulls++;
    }
    return rv;
}

static void sweep_partials(struct shoal_daemon *d, const struct shoal_state_entry *v,
                           const bool *closed, size_t n);

/* 1 when directory |path| (which need not exist yet) is directory
 * |dir|, 2 when it is under it, else 0; symlinks resolved. */
static int in_cache(const char *path, const char *dir)
{
    char rp[PATH_MAX], rd[PATH_MAX], tail[PATH_MAX] = "", *cut;
    char probe[PATH_MAX];
    size_t n;

    if (!realpath(dir, rd) || snprintf(probe, sizeof probe, "%s", path) >= (int)sizeof probe)
        return 0;
    /* The deepest part that exists, resolved, then what is not made yet. */
    while (!realpath(probe, rp)) {
        char t[PATH_MAX];

        if (errno != ENOENT || !(cut = strrchr(probe, '/')) || cut == probe)
            return 0;
        snprintf(t, sizeof t, "%s%s", cut, tail);
        snprintf(tail, sizeof tail, "%s", t);
        *cut = '\0';
    }
    n = strlen(rd);
    if (strcmp(rp, rd) == 0)
        return tail[0] && strcmp(tail, "/") != 0 ? 2 : 1;
    return strncmp(rp, rd, n) == 0 && (rp[n] == '/' || n == 1) ? 2 : 0;
}

/* Finds the state file and reopens every release it lists that is not
 * open yet (after --manifest and --pull): complete ones seed, incomplete
 * ones resume, as a --manifest release does. A release whose manifest or
 * files are gone is logged and left out of the file from now on; a file
 * that cannot be read is logged and kept aside, and never stops the start.
 * Returns 0, or SHOAL_EBADPATH for a state dir in the cache (logged). */
static int reopen_state(struct shoal_daemon *d)
{
    const struct shoal_config *c = d->cfg;
    struct shoal_state_entry *v = NULL;
    size_t n = 0, skipped = 0;
    uint32_t opened = 0, dropped = 0;
    char why[1024], aside[SHOAL_STATE_PATH_MAX + 16];
    bool *closed = NULL; /* per entry: manifest fine, but left closed */
    int rv, rv_load;

    if (c->state_dir && strcmp(c->state_dir, "none") == 0) {
        LOG_I("no state file (state-dir none): releases opened by `shoal pull` or a loader "
              "are not reopened after a restart");
        return 0;
    }
    if (d->scfg.store_flags & SHOAL_STORE_MEMORY) {
        LOG_I("no state file with store memory: nothing survives a restart");
        return 0;
    }
    rv = shoal_state_path(d->state_path, sizeof d->state_path, d->state_dir,
                          sizeof d->state_dir, d->abs_cache, sizeof d->abs_cache, c->state_dir,
                          d->cache_dir);
    if (rv != 0) {
        LOG_E("no state file: %s (set state-dir); releases opened by `shoal pull` or a "
              "loader will not be reopened after a restart",
              rv == SHOAL_ENOTFOUND ? "no STATE_DIRECTORY, XDG_STATE_HOME or HOME"
                                    : shoal_strerror(rv));
        return 0;
    }
    /* The top of the cache holds repo folders only: huggingface-cli
     * scan-cache reports anything else there as a corrupt entry, and a
     * repo folder holds what huggingface_hub puts there. Refused rather
     * than run without a state file: a restart would then forget every
     * release, and one start-up line is easily missed. */
    int in = in_cache(d->state_dir, d->abs_cache);
    if (in != 0) {
        LOG_E("state-dir %s is %sthe cache dir %s, which holds repo folders only "
              "(huggingface-cli scan-cache would report it as a corrupt entry); set state-dir "
              "outside the cache, or leave it unset", d->state_dir, in == 1 ? "" : "inside ",
              d->abs_cache);
        return SHOAL_EBADPATH;
    }
    d->state_on = true;
    rv_load = rv = shoal_state_load(d->state_path, d->abs_cache, &v, &n, &skipped, why,
                                    sizeof why);
    closed = n ? calloc(n, sizeof *closed) : NULL;
    if (rv != 0) {
        /* Kept aside, not overwritten by the next save: an operator may
         * want to see what was in it. */
        snprintf(aside, sizeof aside, "%s.bad", d->state_path);
        LOG_E("state file %s ignored: %s; moved to %s (releases it listed are not reopened: "
              "pull them again)", d->state_path, why,
              rename(d->state_path, aside) == 0 ? aside : "nowhere, it stays");
    } else if (skipped > 0) {
        LOG_E("state file %s: %zu bad lines skipped, the first: %s", d->state_path, skipped,
              why);
    }
    /* A release a rollout named before the restart is one again until the
     * trackers answer (trk_on_announce_reply): not closed for room while
     * the others reopen, or by a pull before then. Without a tracker no
     * rollout will confirm or end it, so the mark is not kept. */
    for (size_t i = 0; i < n && d->trk && shoal_trkconn_count(d->trk) > 0; i++) {
        if (!v[i].rollout ||
            d->nrollout_ids == sizeof d->rollout_ids / sizeof d->rollout_ids[0])
            continue;
        d->rollout_ids[d->nrollout_ids].trk = ROLLOUT_FROM_STATE;
        memcpy(d->rollout_ids[d->nrollout_ids++].id, v[i].id, 32);
    }
    /* Those first: with too few slots, the others are the ones left out. */
    for (size_t k = 0; k < 2 * n; k++) {
        const struct shoal_state_entry *e = &v[k % n];
        struct shoal_manifest *m = NULL;
        uint8_t *data = NULL;
        size_t len = 0;
        char hex[17], snap[SHOAL_HF_PATH_MAX + 64], folder[SHOAL_HF_PATH_MAX];
        struct stat st;

        if (e->rollout != (k < n))
            continue;
        hex8(hex, e->id);
        if (find_swarm(d, e->id))
            continue; /* named by --manifest or --pull too */
        rv = shoal_read_file(e->manifest, SHOAL_MSG_MANIFEST_MAX, &data, &len);
        if (rv == 0)
            rv = shoal_manifest_parse(&m, data, len, d->publishers, NULL);
        if (rv == 0 && (memcmp(shoal_manifest_id(m), e->id, 32) != 0 ||
                        strcmp(shoal_manifest_repo_id(m), e->repo) != 0 ||
                        strcmp(shoal_manifest_commit(m), e->commit) != 0))
            rv = SHOAL_EBADMSG;
        if (rv != 0) {
            LOG_W("state: release %s@%s (%s) not reopened, dropped from the state: its "
                  "manifest %s: %s", e->repo, e->commit, hex, e->manifest,
                  rv == -ENOENT ? "gone (deleted from the cache?)" : shoal_strerror(rv));
            shoal_manifest_free(m);
            free(data);
            dropped++;
            continue;
        }
        /* A complete release whose snapshot is gone was deleted from the
         * cache on purpose (huggingface-cli delete-cache): fetching it
         * again would undo that. */
        if (e->complete &&
            (shoal_hf_repo_folder(folder, sizeof folder, e->type, e->repo) != 0 ||
             snprintf(snap, sizeof snap, "%s/%s/snapshots/%s", d->cache_dir, folder,
                      e->commit) >= (int)sizeof snap ||
             stat(snap, &st) != 0)) {
            LOG_W("state: release %s@%s (%s) not reopened, dropped from the state: its files "
                  "are gone from the cache", e->repo, e->commit, hex);
            shoal_manifest_free(m);
            free(data);
            dropped++;
            continue;
        }
        /* refs/<branch> is restored, never moved: one that names another
         * commit now was moved since (huggingface_hub fetched the branch
         * again, or a later pull of ours did), and offline readers go by it
         * (K11). The release reopens without it. */
        const char *branch = e->branch[0] ? e->branch : NULL;
        char now_at[41];
        if (branch && shoal_hf_read_ref(d->cache_dir, e->type, e->repo, branch, now_at) == 0 &&
            strcmp(now_at, e->commit) != 0) {
            LOG_I("state: release %s@%s: refs/%s names %s now (moved since): left as it is",
                  e->repo, e->commit, branch, now_at);
            branch = NULL;
        }
        /* Reopening never closes another release (may_close false): the
         * ones given by --manifest/--pull and those opened before it here
         * came first (a tie on "least recently used" closed the
         * configured release). */
        if (add_release(d, m, data, len, branch, false, &rv, why, sizeof why)) {
            opened++;
        } else {
            LOG_W("state: release %s@%s (%s) not reopened, dropped from the state: %s",
                  e->repo, e->commit, hex, why[0] ? why : shoal_strerror(rv));
            dropped++;
            /* Left closed (no room, a full disk): a rollout may open it
             * again in this run, resuming from its partial files. */
            if (closed)
                closed[k % n] = true;
        }
        free(data);
    }
    LOG_I("state file %s: %u release%s reopened, %u dropped", d->state_path, opened,
          opened == 1 ? "" : "s", dropped);
    d->state_ready = true;
    save_state(d);
    /* Only when the file said which releases may resume: one that could
     * not be read in full may have listed more. */
    if (rv_load == 0 && skipped == 0 && (closed || n == 0))
        sweep_partials(d, v, closed, n);
    free(closed);
    free(v);
    return 0;
}

/* Whether open release |m| could use partial file or sidecar |name| of
 * repo folder |folder|: its sidecar or own partial name carries its id,
 * and a shared partial name is the etag of one of its files. */
static bool release_claims(const struct shoal_manifest *m, const char *folder, const char *name)
{
    char f[SHOAL_HF_PATH_MAX], hex[65], etag[SHOAL_HF_ETAG_MAX];
    const char *dot = strchr(name, '.');

    if (shoal_hf_repo_folder(f, sizeof f, shoal_manifest_repo_type(m),
                             shoal_manifest_repo_id(m)) != 0)
        return true; /* cannot tell: kept */
    if (strcmp(f, folder) != 0)
        return false;
    shoal_hex(hex, shoal_manifest_id(m), 32);
    if (!dot || strncmp(name, hex, 64) == 0 || strncmp(dot + 1, hex, 16) == 0)
        return true;
    for (uint32_t i = 0; i < shoal_manifest_nfiles(m); i++) {
        shoal_hf_etag(etag, shoal_manifest_file(m, i));
        if (strlen(etag) == (size_t)(dot - name) && memcmp(etag, name, strlen(etag)) == 0)
            return true;
    }
    return false;
}

struct sweep_ctx {
    struct shoal_daemon *d;
    const struct shoal_state_entry *v; /* the state file's entries */
    const bool *closed;                /* those left closed at start */
    size_t n;
};

/* shoal_store_claimed_cb of the start-up sweep: kept when an open release
 * could use it, when a listed release of that repo was left closed, or
 * when a pull not open yet may be of that repo (each resumes from them
 * once it opens). */
static bool partial_claimed(void *user, const char *folder, const char *name)
{
    const struct sweep_ctx *c = user;
    struct shoal_daemon *d = c->d;
    char f[SHOAL_HF_PATH_MAX];

    for (size_t i = 0; i < c->n; i++)
        if (c->closed[i] && (shoal_hf_repo_folder(f, sizeof f, c->v[i].type, c->v[i].repo) != 0 ||
                             strcmp(f, folder) == 0))
            return true;
    for (uint32_t i = 0; i < d->nswarms; i++)
        if (release_claims(shoal_swarm_manifest(d->swarms[i]), folder, name))
            return true;
    for (uint32_t i = 0; i < d->ndropped; i++)
        if (release_claims(shoal_swarm_manifest(d->dropped[i]), folder, name))
            return true;
    for (uint32_t i = 0; i < d->npulls; i++) {
        const struct pull *pl = &d->pulls[i];
        const char *n = pl->asked[0] ? pl->asked : pl->name;
        enum shoal_repo_type type = SHOAL_REPO_MODEL;
        char repo[SHOAL_MSG_REPO_MAX + 1], *at;

        if (pl->swarm)
            continue;
        if (strncmp(n, SHOAL_RELNAME_DATASET, sizeof SHOAL_RELNAME_DATASET - 1) == 0) {
            type = SHOAL_REPO_DATASET;
            n += sizeof SHOAL_RELNAME_DATASET - 1;
        }
        snprintf(repo, sizeof repo, "%s", n);
        if ((at = strchr(repo, '@')))
            *at = '\0';
        /* A pull by manifest id may be of any repo. */
        if (!at || shoal_hf_repo_folder(f, sizeof f, type, repo) != 0 || strcmp(f, folder) == 0)
            return true;
    }
    return false;
}

/* Once the listed releases are open: removes the partial files and
 * sidecars of releases no longer listed, which nothing would ever resume
 * or remove (dropped here because their manifest is gone or no longer
 * trusted, or a drop cut short by a crash before it removed them). */
static void sweep_partials(struct shoal_daemon *d, const struct shoal_state_entry *v,
                           const bool *closed, size_t n)
{
    char first[SHOAL_HF_PATH_MAX + SHOAL_STATE_PATH_MAX], size[32];
    struct sweep_ctx c = {d, v, closed, n};
    uint32_t files = 0;
    uint64_t bytes = 0;
    int rv = shoal_store_sweep_partials(d->cache_dir, partial_claimed, &c, &files, &bytes, first,
                                        sizeof first);

    if (rv != 0)
        LOG_W("looking for partial files of dropped releases in %s: %s", d->cache_dir,
              shoal_strerror(rv));
    else if (files > 0)
        LOG_I("removed %u partial file%s (%s) of releases no longer open or listed in the "
              "state file, e.g. %s", files, files == 1 ? "" : "s",
              shoal_fmt_bytes(size, sizeof size, bytes), first);
}

static int start_listening(struct shoal_daemon *d)
{
    struct sockaddr_storage ss;
    int sslen = sizeof ss;
    char host[64];
    int rv;

    rv = shoal_parse_addr(d->cfg->listen, &ss);
    if (rv != 0) {
        LOG_E("listen address '%s' is not host:port", d->cfg->listen);
        return rv;
    }
    uv_tcp_init(&d->loop, &d->listener);
    d->listener.data = d;
    rv = uv_tcp_bind(&d->listener, (struct sockaddr *)&ss, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&d->listener, 128, on_connection);
    if (rv == 0)
        rv = uv_tcp_getsockname(&d->listener, (struct sockaddr *)&ss, &sslen);
    if (rv != 0) {
        LOG_E("cannot listen on %s: %s", d->cfg->listen, uv_strerror(rv));
        return rv;
    }
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        uv_ip4_name(sin, host, sizeof host);
        d->listen_port = ntohs(sin->sin_port);
        d->listen_wildcard = sin->sin_addr.s_addr == htonl(INADDR_ANY);
        d->listen_ipv4 = true;
        snprintf(d->listen_addr, sizeof d->listen_addr, "%s:%u", host, d->listen_port);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(sin6, host, sizeof host);
        d->listen_port = ntohs(sin6->sin6_port);
        d->listen_wildcard = IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
        snprintf(d->listen_addr, sizeof d->listen_addr, "[%s]:%u", host, d->listen_port);
    }
    return 0;
}

/* The smallest --max-frame that carries a CHUNK of the largest chunk the
 * chunker makes by default (4 MiB), with room for its fields and a seal.
 * Below it pulls of such releases would stall with nothing said. */
#define MAX_FRAME_MIN (SHOAL_CDC_MAX_DEFAULT + SHOAL_FRAME_MAX_PREAUTH)

/* Refuses values the daemon used to clamp or replace without a word. */
#define RECONNECT_MS_MIN 10u
#define TIMEOUT_MS_MIN 100u
#define TIMEOUT_MS_MAX 3600000u /* an hour */
#define LEASE_CHUNKS_MAX 64u
/* The hub measures an origin transfer's rate about once a second. */
#define SLOW_WINDOW_MS_MIN 1000u
#define BAN_SECONDS_MAX 31536000u /* a year */
/* Each upload in flight holds a chunk (up to 4 MiB) in memory. */
#define SERVE_PER_PEER_MAX 64u

static int check_ranges(const struct shoal_config *c)
{
    if (c->max_frame < MAX_FRAME_MIN || c->max_frame > SHOAL_FRAME_MAX_ABS) {
        LOG_E("max-frame %llu: use %u (a %u-byte chunk and its framing) to %u bytes",
              (unsigned long long)c->max_frame, MAX_FRAME_MIN, SHOAL_CDC_MAX_DEFAULT,
              SHOAL_FRAME_MAX_ABS);
        return -EINVAL;
    }
    if (c->compress_level > 3) {
        LOG_E("compress-level %llu: use 1-3, or 0 for no compression",
              (unsigned long long)c->compress_level);
        return -EINVAL;
    }
    if (c->max_peers < 1 || c->max_peers > MAX_PEERS_HARD) {
        LOG_E("max-peers %llu: use 1-%d", (unsigned long long)c->max_peers, MAX_PEERS_HARD);
        return -EINVAL;
    }
    if (c->max_queue_total != 0 && c->max_queue_total < (1u << 20)) {
        LOG_E("max-queue-total %llu: use 0 (no limit) or at least 1M",
              (unsigned long long)c->max_queue_total);
        return -EINVAL;
    }
    if (c->max_unauth < 1 || c->max_unauth > MAX_UNAUTH_HARD) {
        LOG_E("max-unauth %llu: use 1-%d", (unsigned long long)c->max_unauth, MAX_UNAUTH_HARD);
        return -EINVAL;
    }
    if (c->hello_rate > HELLO_RATE_MAX) {
        LOG_E("hello-rate %llu: use 0 (no limit) to %u", (unsigned long long)c->hello_rate,
              HELLO_RATE_MAX);
        return -EINVAL;
    }
    if (c->max_leases < 1 || c->max_leases > 16) {
        LOG_E("max-leases %llu: use 1-16", (unsigned long long)c->max_leases);
        return -EINVAL;
    }
    /* A tracker grants at most 64 chunks a lease: more was cut to 64 in
     * silence, and 0 meant the default. */
    if (c->lease_chunks < 1 || c->lease_chunks > LEASE_CHUNKS_MAX) {
        LOG_E("lease-chunks %llu: use 1-%u (chunks asked for per origin lease; a tracker grants "
              "at most %u)", (unsigned long long)c->lease_chunks, LEASE_CHUNKS_MAX,
              LEASE_CHUNKS_MAX);
        return -EINVAL;
    }
    if (c->origin_slow_window_ms < SLOW_WINDOW_MS_MIN ||
        c->origin_slow_window_ms > TIMEOUT_MS_MAX) {
        LOG_E("origin-slow-window-ms %llu: use %u-%u (the window --origin-min-rate is "
              "measured over)", (unsigned long long)c->origin_slow_window_ms, SLOW_WINDOW_MS_MIN,
              TIMEOUT_MS_MAX);
        return -EINVAL;
    }
    /* Past 2^64 / 1000 the ban's end in ms wrapped, to a ban already over. */
    if (c->ban_seconds < 1 || c->ban_seconds > BAN_SECONDS_MAX) {
        LOG_E("ban-seconds %llu: use 1-%u (a year)", (unsigned long long)c->ban_seconds,
              BAN_SECONDS_MAX);
        return -EINVAL;
    }
    /* 0 became 16 in silence. */
    if (c->serve_per_peer < 1 || c->serve_per_peer > SERVE_PER_PEER_MAX) {
        LOG_E("serve-per-peer %llu: use 1-%u (uploads in flight to one peer)",
              (unsigned long long)c->serve_per_peer, SERVE_PER_PEER_MAX);
        return -EINVAL;
    }
    if (c->max_releases < 1 || c->max_releases > MAX_SWARMS) {
        LOG_E("max-releases %llu: use 1-%d", (unsigned long long)c->max_releases, MAX_SWARMS);
        return -EINVAL;
    }
    /* 0 would stop redialling lost --peer addresses for good (a one-shot
     * timer); past 32 bits the peer and swarm timeouts wrapped, to 0,
     * which means their default. */
    if (c->reconnect_ms < RECONNECT_MS_MIN || c->reconnect_ms > TIMEOUT_MS_MAX) {
        LOG_E("reconnect-ms %llu: use %u-%u (how long to wait before redialling a lost --peer)",
              (unsigned long long)c->reconnect_ms, RECONNECT_MS_MIN, TIMEOUT_MS_MAX);
        return -EINVAL;
    }
    if (c->request_timeout_ms < TIMEOUT_MS_MIN || c->request_timeout_ms > TIMEOUT_MS_MAX) {
        LOG_E("request-timeout-ms %llu: use %u-%u", (unsigned long long)c->request_timeout_ms,
              TIMEOUT_MS_MIN, TIMEOUT_MS_MAX);
        return -EINVAL;
    }
    if (c->handshake_timeout_ms < TIMEOUT_MS_MIN || c->handshake_timeout_ms > TIMEOUT_MS_MAX) {
        LOG_E("handshake-timeout-ms %llu: use %u-%u",
              (unsigned long long)c->handshake_timeout_ms, TIMEOUT_MS_MIN, TIMEOUT_MS_MAX);
        return -EINVAL;
    }
    if (c->peer_idle_ms < 1000 || c->peer_idle_ms > TIMEOUT_MS_MAX) {
        LOG_E("peer-idle-ms %llu: use 1000-%u", (unsigned long long)c->peer_idle_ms,
              TIMEOUT_MS_MAX);
        return -EINVAL;
    }
    return 0;
}

/* One daemon per cache: a second one would fill the same partial files
 * (and leave them half-written for good when the two disagree). A memory
 * store writes nothing there. A cache where the lock file cannot be made
 * (a directory that cannot be created, or is not writable by this user)
 * stops the start: every pull would fail on it later, while the daemon
 * looked healthy. Only a filesystem without flock(2) is let through, with
 * a warning. Returns 0, SHOAL_EBUSY or the error. */
static int lock_cache(struct shoal_daemon *d)
{
    char path[SHOAL_HF_PATH_MAX + 32];
    long holder = 0;
    int rv;

    if (d->cfg->store && strcmp(d->cfg->store, "memory") == 0)
        return 0;
    rv = shoal_store_lock_cache(d->cache_dir, d->scfg.has_group ? (long)d->scfg.group : -1,
                                &d->cache_lock, &holder, path, sizeof path);
    if (rv == SHOAL_EBUSY) {
        char pid[32] = "";
        if (holder > 0)
            snprintf(pid, sizeof pid, " (pid %ld)", holder);
        LOG_E("cache %s is used by another shoald%s: it holds %s; stop that one or give this "
              "one another cache-dir", d->cache_dir, pid, path);
        return rv;
    }
    if (rv == -ENOLCK || rv == -EOPNOTSUPP || rv == -ENOSYS) {
        LOG_W("cache %s: cannot take the lock %s: %s (another shoald on this cache would not "
              "be noticed)", d->cache_dir, path, shoal_strerror(rv));
        return 0;
    }
    if (rv != 0) {
        LOG_E("cache %s cannot be written by this user (uid %ld): creating %s: %s; make the "
              "directory writable (or creatable) by the user shoald runs as, or set cache-dir "
              "to one that is", d->cache_dir, (long)geteuid(), path, shoal_strerror(rv));
        return rv;
    }
    d->cache_locked = true;
    return 0;
}

/* The cache's folders belong to --loader-group (mode 02750), so that its
 * members read the models with ordinary tools and nobody else does. */
static int cache_group(struct shoal_daemon *d)
{
    char buf[16384];
    struct group gr, *grp = NULL;

    if (!d->cfg->loader_group)
        return 0;
    if (getgrnam_r(d->cfg->loader_group, &gr, buf, sizeof buf, &grp) != 0 || !grp) {
        LOG_E("loader-group: no group named '%s'", d->cfg->loader_group);
        return SHOAL_ENOTFOUND;
    }
    d->scfg.has_group = true;
    d->scfg.group = (uint32_t)grp->gr_gid;
    return 0;
}

/*
 * Raises the soft open-files limit to the hard one. Beside the daemon's own
 * descriptors (peers, stored files), descriptors handed to loaders that
 * have not read them yet count against it (the kernel charges SCM_RIGHTS
 * in flight to the sender), and the usual soft default of 1,024 is soon
 * reached; the hard limit is what the operator allowed (LimitNOFILE).
 */
static void raise_nofile(void)
{
    struct rlimit rl;
    rlim_t was;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        LOG_W("open-files limit: getrlimit: %s", strerror(errno));
        return;
    }
    was = rl.rlim_cur;
    if (rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            LOG_W("open-files limit stays %llu: raising it to the hard limit %llu failed: %s",
                  (unsigned long long)was, (unsigned long long)rl.rlim_max, strerror(errno));
            return;
        }
    }
    if (rl.rlim_cur == RLIM_INFINITY)
        LOG_I("open-files limit: unlimited");
    else if (was != rl.rlim_cur)
        LOG_I("open-files limit %llu (raised from %llu to the hard limit)",
              (unsigned long long)rl.rlim_cur, (unsigned long long)was);
    else
        LOG_I("open-files limit %llu (the hard limit)", (unsigned long long)rl.rlim_cur);
}

int shoal_daemon_new(struct shoal_daemon **out, const struct shoal_config *cfg)
{
    struct shoal_daemon *d = calloc(1, sizeof *d);
    enum shoal_log_level lvl;
    char pkhex[17];
    int rv;

    if (!d)
        return -ENOMEM;
    d->cfg = cfg;
    if (cfg->log_level) {
        if (shoal_log_parse_level(cfg->log_level, &lvl) != 0) {
            LOG_E("log-level '%s': use error, warn, info or debug", cfg->log_level);
            free(d);
            return -EINVAL;
        }
        shoal_log_set_level(lvl);
    }
    if (check_ranges(cfg) != 0) {
        free(d);
        return -EINVAL;
    }
    raise_nofile();
    rv = uv_loop_init(&d->loop);
    if (rv != 0) {
        free(d);
        return rv;
    }
    uv_timer_init(&d->loop, &d->cred_timer);
    d->cred_timer.data = d;
    uv_timer_init(&d->loop, &d->deny_timer);
    d->deny_timer.data = d;
    rv = shoal_hash_init() == 0 ? load_identity(d) : -EIO;
    if (rv == 0)
        rv = load_deny(d);
    if (rv != 0)
        goto fail;
    rv = shoal_hf_cache_dir(d->cache_dir, sizeof d->cache_dir, cfg->cache_dir);
    if (rv != 0) {
        LOG_E("no cache directory: set cache-dir (or HF_HOME / HOME)");
        goto fail;
    }
    rv = cache_group(d);
    if (rv != 0)
        goto fail;
    rv = lock_cache(d);
    if (rv != 0)
        goto fail;
    rv = start_listening(d);
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sigint);
    uv_signal_init(&d->loop, &d->sighup);
    uv_timer_init(&d->loop, &d->redial);
    d->sigterm.data = d->sigint.data = d->sighup.data = d->redial.data = d;
    uv_timer_init(&d->loop, &d->mfq_timer);
    d->mfq_timer.data = d;
    uv_timer_init(&d->loop, &d->retry);
    d->retry.data = d;
    uv_timer_init(&d->loop, &d->reaper);
    d->reaper.data = d;
    if (rv != 0)
        goto fail;

    d->scfg.loop = &d->loop;
    d->scfg.cache_dir = d->cache_dir;
    d->scfg.zone = cfg->zone ? cfg->zone : "";
    d->scfg.rate_down = cfg->rate_down;
    d->scfg.store_flags = cfg->verify_store ? SHOAL_STORE_VERIFY : 0;
    if (cfg->store && strcmp(cfg->store, "memory") == 0) {
        d->scfg.store_flags |= SHOAL_STORE_MEMORY;
    } else if (cfg->store && strcmp(cfg->store, "disk") != 0) {
        LOG_E("store '%s': use disk or memory", cfg->store);
        rv = -EINVAL;
        goto fail;
    }
    d->hooks.on_file = loader_on_file;
    d->scfg.serve_per_peer = (uint32_t)cfg->serve_per_peer;
    d->scfg.upload_slots = (uint32_t)(cfg->upload_slots > UINT32_MAX ? UINT32_MAX
                                                                     : cfg->upload_slots);
    d->scfg.request_timeout_ms = (uint32_t)cfg->request_timeout_ms;
    d->scfg.corrupt_uploads = cfg->test_corrupt_uploads || cfg->test_corrupt_hangup;
    d->scfg.corrupt_hangup = cfg->test_corrupt_hangup;
    d->scfg.sendfile_local = cfg->test_sendfile_local;
    d->scfg.compress_level = cfg->compress_level > 19 ? 19 : (int)cfg->compress_level; /* ctl */
    d->scfg.seed = cfg->seed;
    if (!d->scfg.seed)
        for (int i = 0; i < 8; i++)
            d->scfg.seed = d->scfg.seed << 8 | d->pk.pk[i];
    d->hooks.on_ban = on_ban;
    d->hooks.on_complete = on_complete;
    d->hooks.user = d;
    if (cfg->test_corrupt_uploads || cfg->test_corrupt_hangup)
        LOG_W("test-corrupt-uploads is on: this node serves WRONG bytes (testing only)");

    d->pctx.loop = &d->loop;
    d->pctx.local.node_sk = &d->sk;
    d->pctx.local.cred = d->cred;
    d->pctx.local.cred_len = d->cred_len;
    d->pctx.local.zone = d->scfg.zone;
    snprintf(d->hello_addr, sizeof d->hello_addr, "%s", d->listen_addr);
    d->pctx.local.listen_addr = cfg->advertise ? cfg->advertise : d->hello_addr;
    d->pctx.local.encrypt = !cfg->no_encrypt;
    d->pctx.local.allow_aesgcm = !cfg->no_aesgcm;
    d->pctx.local.max_frame = (uint32_t)(cfg->max_frame > SHOAL_FRAME_MAX_ABS
                                             ? SHOAL_FRAME_MAX_ABS
                                             : cfg->max_frame < SHOAL_FRAME_MAX_PREAUTH
                                                   ? SHOAL_FRAME_MAX_PREAUTH
                                                   : cfg->max_frame);
    d->pctx.cluster_keys = d->cluster_keys;
    d->pctx.handshake_timeout_ms = (uint32_t)cfg->handshake_timeout_ms;
    d->pctx.idle_ms = (uint32_t)cfg->peer_idle_ms;
    if (cfg->max_queue_total) {
        d->qbudget.max = (size_t)cfg->max_queue_total;
        d->qbudget.shares = (size_t)cfg->max_peers;
        d->pctx.budget = &d->qbudget;
    }
    d->pcb.before_hello = peer_before_hello;
    d->pcb.on_hello = peer_on_hello;
    d->pcb.on_ready = peer_on_ready;
    d->pcb.on_msg = peer_on_msg;
    d->pcb.on_close = peer_on_close;
    d->pcb.on_drain = peer_on_drain;
    /* one request per peer and release at most */
    rv = shoal_mfq_new(&d->mfq, d->cfg->manifest_budget, MAX_PEERS_HARD * MAX_SWARMS);
    if (rv == 0)
        rv = shoal_srclimit_new(&d->hello_budget, (uint32_t)cfg->hello_rate,
                                (uint32_t)cfg->hello_rate * 2);
    if (rv != 0)
        goto fail;

    rv = setup_trackers(d);
    if (rv == 0)
        warn_loopback_announce(d);
    if (rv == 0)
        rv = open_manifests(d);
    if (rv == 0)
        rv = reopen_state(d);
    if (rv == 0)
        rv = start_loader(d);
    if (rv == 0)
        rv = start_ctl(d);
    if (rv != 0)
        goto fail;
    hex8(pkhex, d->pk.pk);
    LOG_I("shoald node %s zone '%s' listening on %s, %s%s, %s", pkhex, d->scfg.zone,
          d->listen_addr, (d->scfg.store_flags & SHOAL_STORE_MEMORY) ? "store " : "cache ",
          (d->scfg.store_flags & SHOAL_STORE_MEMORY) ? "in memory" : d->cache_dir, cfg->no_encrypt ? "encryption off unless a peer asks"
                                                        : "encrypted sessions");
    *out = d;
    return 0;
fail:
    shoal_daemon_free(d);
    return rv;
}

int shoal_daemon_run(struct shoal_daemon *d)
{
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_signal_start(&d->sighup, on_sighup, SIGHUP);
    on_cred_timer(&d->cred_timer); /* warns now if the end is near */
    if (d->deny)
        uv_timer_start(&d->deny_timer, on_deny_timer, DENY_CHECK_MS, DENY_CHECK_MS);
    for (uint32_t i = 0; i < d->nswarms; i++)
        start_release(d, d->swarms[i]);
    dial_static(d);
    start_trackers(d);
    if (d->cfg->peers.n)
        uv_timer_start(&d->redial, on_redial, d->cfg->reconnect_ms, d->cfg->reconnect_ms);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    LOG_I("shut down cleanly");
    return d->exit_code;
}

static void close_any(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void shoal_daemon_free(struct shoal_daemon *d)
{
    if (!d)
        return;
    if (!d->stopping) {
        /* Never ran or failed during setup: close what exists. */
        d->stopping = true;
        for (uint32_t i = 0; i < d->nswarms; i++)
            shoal_swarm_stop(d->swarms[i]);
        for (uint32_t i = 0; i < d->npeers; i++)
            shoal_peer_close(d->peers[i], "daemon exiting", false);
        shoal_loader_srv_close(d->loader);
        stop_trackers(d);
        shoal_ctl_close(d->ctl);
        uv_walk(&d->loop, close_any, NULL);
    }
    /* Finishes close callbacks and worker jobs still queued. */
    uv_run(&d->loop, UV_RUN_DEFAULT);
    for (uint32_t i = 0; i < d->nswarms; i++)
        shoal_swarm_free(d->swarms[i]);
    for (uint32_t i = 0; i < d->ndropped; i++)
        shoal_swarm_free(d->dropped[i]);
    for (uint32_t i = 0; i < d->nreopens; i++)
        free(d->reopens[i].mf);
    shoal_loader_srv_free(d->loader);
    shoal_ctl_free(d->ctl);
    shoal_trkconn_free(d->trk);
    if (uv_loop_close(&d->loop) != 0)
        LOG_W("event loop closed with handles still open");
    shoal_keyset_free(d->cluster_keys);
    shoal_keyset_free(d->publishers);
    shoal_keyset_free(d->tracker_keys);
    shoal_keywatch_free(d->deny);
    shoal_mfq_free(d->mfq);
    shoal_srclimit_free(d->hello_budget);
    if (d->cache_locked)
        close(d->cache_lock); /* the next daemon on this cache may start */
    sodium_memzero(&d->sk, sizeof d->sk);
    free(d);
}
