/* SPDX-License-Identifier: MIT */
/*
 * What the parts of shoald (daemon.h) share: the daemon's state and the
 * functions one part calls in another. Only node/daemon*.c include it.
 *
 *   daemon.c         releases: opening, checking, completing, manifests
 *                    from peers, the reaper; start, run, stop, free
 *   daemon_peers.c   peer connections: the handshake pool, dials, bans,
 *                    routing messages to releases
 *   daemon_trk.c     trackers: announces, peer discovery, manifests by
 *                    name, origin leases
 *   daemon_pull.c    pulls asked for by name: checks, branch resolution
 *                    on the Hub, retries
 *   daemon_ctl.c     the control socket: status, peers, metrics, drop
 *   daemon_loader.c  loaders asking for files
 *   daemon_start.c   start-up: identity, credential, trust and deny
 *                    lists, the state file, leftovers, the listener
 *
 * Functions shared between the parts are named dmn_*; each part keeps the
 * rest static.
 */
#ifndef SHOAL_DAEMON_INT_H
#define SHOAL_DAEMON_INT_H

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

#include "banlist.h"
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
/* A credential ending within this long is warned about, at start and then
 * once a day (and in `shoal status`): `shoal cred issue` gives 30 days by
 * default, and a fleet whose credentials were issued together would
 * otherwise drop off all at once with nothing said before. */
#define CRED_WARN_S (7u * 86400)
/* The "tracker" of a rollout_ids entry taken from the state file. */
#define ROLLOUT_FROM_STATE UINT32_MAX

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
    struct shoal_banlist *bans;
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

/* How often the deny-keys files are looked at (a stat each). */
#define DENY_CHECK_MS 2000u

static inline void dmn_hex8(char out[17], const uint8_t *id) { shoal_hex(out, id, 8); }

/* A release named by its manifest id (64 hex digits) rather than repo@rev. */
static inline bool dmn_is_manifest_id(const char *release)
{
    return strlen(release) == 64 && strspn(release, "0123456789abcdefABCDEF") == 64;
}

/* ---- daemon.c: releases, the pulls waiting for them, manifests ---- */

struct shoal_swarm *dmn_find_swarm(struct shoal_daemon *d, const uint8_t id[32]);
struct shoal_swarm *dmn_find_swarm_named(struct shoal_daemon *d, const char *release);
uint32_t dmn_swarm_slot(const struct shoal_daemon *d, const struct shoal_swarm *s);
struct pull *dmn_find_pull_serial(struct shoal_daemon *d, uint64_t serial);
struct pull *dmn_new_pull(struct shoal_daemon *d);
void dmn_forget_pull(struct shoal_daemon *d, uint32_t i);
void dmn_save_state(struct shoal_daemon *d);
void dmn_touch_swarm(struct shoal_daemon *d, const struct shoal_swarm *s);
void dmn_note_uploads(struct shoal_daemon *d);
bool dmn_in_rollout(const struct shoal_daemon *d, const uint8_t id[32]);
/* "2026-11-23 19:32 UTC" for |unix_s|, and a short "3 days 4 h" / "5 h 12
 * min" / "40 s" for |secs|, into |buf|; return |buf|. */
const char *dmn_fmt_utc(char *buf, size_t cap, uint64_t unix_s);
const char *dmn_fmt_span(char *buf, size_t cap, uint64_t secs);
bool dmn_pull_room(struct shoal_daemon *d);
struct shoal_swarm *dmn_add_release(struct shoal_daemon *d, struct shoal_manifest *m,
                                    const uint8_t *signed_mf, size_t len, const char *branch,
                                    bool may_close, int *err, char *why, size_t whylen);
void dmn_start_release(struct shoal_daemon *d, struct shoal_swarm *s);
void dmn_arm_retry(struct shoal_daemon *d);
bool dmn_pull_may_ask(const struct shoal_daemon *d, const struct pull *pl);
void dmn_utf8_cut(char *s);
void dmn_pull_failed(struct shoal_daemon *d, struct pull *pl, const char *name, int err,
                     const char *why);
bool dmn_needs_check(const struct shoal_daemon *d, const struct shoal_swarm *s);
void dmn_start_check(struct shoal_daemon *d, struct shoal_swarm *s, const char *branch);
void dmn_bind_open(struct shoal_daemon *d, struct pull *pl, struct shoal_swarm *s);
void dmn_rollout_ref(struct shoal_daemon *d, struct shoal_swarm *s, const char *ref);
void dmn_on_manifest_data(struct shoal_daemon *d, struct shoal_peer *p,
                          const struct shoal_msg_manifest *md);
void dmn_want_manifests(struct shoal_daemon *d, struct shoal_peer *p);
void dmn_pump_manifests(struct shoal_daemon *d);
void dmn_want_manifest(struct shoal_daemon *d, struct shoal_peer *p, const uint8_t id[32],
                       size_t len);
void dmn_remove_pull(struct shoal_daemon *d, struct pull *pl, const char *why);
void dmn_remove_swarm(struct shoal_daemon *d, struct shoal_swarm *s, const char *why);
void dmn_remember_gone(struct shoal_daemon *d, const char *asked, const char *why, int err);

/* ---- daemon_peers.c: connections, dials, bans ---- */
void dmn_on_ban(void *user, struct shoal_swarm *s, struct shoal_peer *p, const uint8_t pk[32],
                uint32_t chunk, const char *why);
void dmn_peer_on_drain(struct shoal_peer *p, void *user);
bool dmn_forget_peer(struct shoal_daemon *d, struct shoal_peer *p);
const char *dmn_peer_before_hello(struct shoal_peer *p, void *user);
const char *dmn_peer_on_hello(struct shoal_peer *p, void *user);
void dmn_peer_on_ready(struct shoal_peer *p, void *user);
void dmn_peer_on_msg(struct shoal_peer *p, const struct shoal_msg *m, void *user);
void dmn_peer_on_close(struct shoal_peer *p, const char *reason, void *user);
void dmn_on_connection(uv_stream_t *server, int status);
void dmn_dial_static(struct shoal_daemon *d);
void dmn_on_redial(uv_timer_t *t);
void dmn_dial_node(struct shoal_daemon *d, const uint8_t pk[32], const char *addr);

/* ---- daemon_loader.c ---- */
void dmn_loader_on_file(void *user, struct shoal_swarm *s, uint32_t file, int status);
int dmn_start_loader(struct shoal_daemon *d);

/* ---- daemon_trk.c: trackers ---- */
void dmn_trk_want_manifests(struct shoal_daemon *d, bool now_anyway);
void dmn_want_manifests_everywhere(struct shoal_daemon *d);
void dmn_discover(struct shoal_daemon *d);
int dmn_setup_trackers(struct shoal_daemon *d);
void dmn_warn_loopback_announce(struct shoal_daemon *d);
void dmn_start_trackers(struct shoal_daemon *d);
void dmn_stop_trackers(struct shoal_daemon *d);

/* ---- daemon_pull.c: pulls by name ---- */
void dmn_ctl_match(struct shoal_daemon *d, const char *release, struct shoal_swarm **sw,
                   struct pull **pl);
void dmn_on_retry(uv_timer_t *t);
int dmn_request_pull(struct shoal_daemon *d, const char *release, const char *by,
                     bool from_loader, char *why, size_t whylen);
int dmn_ctl_pull(void *user, const char *release, char *why, size_t whylen);

/* ---- daemon_ctl.c: the control socket ---- */
int dmn_start_ctl(struct shoal_daemon *d);

/* ---- daemon_start.c: start-up ---- */
void dmn_on_cred_timer(uv_timer_t *t);
int dmn_load_identity(struct shoal_daemon *d);
void dmn_on_deny_timer(uv_timer_t *t);
int dmn_load_deny(struct shoal_daemon *d);
int dmn_open_manifests(struct shoal_daemon *d);
int dmn_reopen_state(struct shoal_daemon *d);
int dmn_start_listening(struct shoal_daemon *d);
int dmn_check_ranges(const struct shoal_config *c);
int dmn_lock_cache(struct shoal_daemon *d);
int dmn_cache_group(struct shoal_daemon *d);
void dmn_raise_nofile(void);

#endif
