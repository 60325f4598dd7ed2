/* SPDX-License-Identifier: MIT */
/*
 * shoal-tracker: argument parsing and wiring only. The server lives in
 * server.c, the state in registry.c.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <uv.h>

#include "error.h"
#include "hash.h"
#include "keys.h"
#include "kvfile.h"
#include "rollfile.h"
#include "server.h"

static const char usage[] =
    "NAME\n"
    "    shoal-tracker - meeting point and origin-lease authority of a shoal swarm\n"
    "\n"
    "SYNOPSIS\n"
    "    shoal-tracker --cluster-key FILE [--cluster-key FILE ...] [OPTIONS]\n"
    "\n"
    "DESCRIPTION\n"
    "    Nodes of a region announce to the tracker which releases they hold;\n"
    "    the tracker answers peer lists biased to the asker's zone, serves\n"
    "    signed manifests, grants origin-fetch leases so each chunk is fetched\n"
    "    from the gateway about once per region, and tells nodes which releases\n"
    "    an operator rolled out. Every client proves its node key and presents\n"
    "    a cluster credential signed by a key in --cluster-key.\n"
    "\n"
    "    State is soft: after a restart the tracker knows every node again\n"
    "    within one announce interval, as nodes re-announce and publishers (or\n"
    "    nodes holding them) re-put manifests. Rollouts, which no node can give\n"
    "    back, are kept in --rollout-file when one is given (else run `shoal\n"
    "    rollout` again after a restart). Run several trackers side by side for\n"
    "    availability; nodes announce to each.\n"
    "\n"
    "    On start it prints \"listening on HOST:PORT\" on standard output (the\n"
    "    port actually bound, so --listen 127.0.0.1:0 is usable in scripts).\n"
    "    Events (start, authentication failures, connections closed for bad\n"
    "    input, manifests registered, rollouts) are logged to standard error.\n"
    "    SIGTERM or SIGINT closes every connection and exits with status 0;\n"
    "    SIGHUP is logged and ignored. Key files are read at start, except\n"
    "    --deny-keys (read again on change): restart to change the others.\n"
    "\n";

/* Split in four: C11 compilers need only take 4095-byte string literals. */
static const char usage_options[] =
    "OPTIONS\n"
    "    --config FILE             read settings from FILE: 'key = value' lines,\n"
    "                              the keys are the long options below without\n"
    "                              '--' (cluster-key may repeat); '#' at the start\n"
    "                              of a line or after a space starts a comment;\n"
    "                              options on the command line override the file\n"
    "    --listen HOST:PORT        address to listen on (default 127.0.0.1:7700)\n"
    "    --cluster-key FILE        trusted cluster public key(s): a public key file\n"
    "                              or a list, one key per line; may repeat; required\n"
    "                              (--cluster-keys, shoald's spelling, is the same);\n"
    "                              read at start\n"
    "    --admin-keys FILE         node keys allowed the publisher and admin roles\n"
    "                              (admins may set rollouts); read at start: a key\n"
    "                              added needs a restart\n"
    "    --publisher-keys FILE     keys whose signed manifests are accepted by\n"
    "                              PUT_MANIFEST; without it no manifest is accepted;\n"
    "                              read at start: a key added needs a restart\n"
    "    --deny-keys FILE          node keys refused although their credential is\n"
    "                              valid (a leaked or retired node), one public key\n"
    "                              per line, at most 64; may repeat. Read again within\n"
    "                              2 s of a change: a key then listed loses its\n"
    "                              connections and the tracker forgets it\n"
    "    --key FILE                this tracker's own secret key (shoal keygen);\n"
    "                              proven to nodes that pin it (shoald\n"
    "                              --tracker-keys); its public key is logged\n"
    "                              (shoal-tracker.service passes it as a systemd\n"
    "                              credential: --key %d/tracker.key)\n"
    "    --auth-timeout SECONDS    close connections silent this long before\n"
    "                              authenticating (default 3)\n"
    "    --auth-timeout-ms MS      the same in milliseconds\n"
    "    --max-unauth N            connections waiting to authenticate at once\n"
    "                              (default 256); when full, or when --max-conns\n"
    "                              is reached, the oldest of the source (IPv4\n"
    "                              address, IPv6 /64) holding the most is closed\n"
    "                              to make room for a new connection (logged at\n"
    "                              most every 10 s, with a count)\n"
    "    --idle-timeout-ms MS      close authenticated connections silent this\n"
    "                              long (default 300000)\n"
    "    --max-conns-per-key N     authenticated connections one node key may\n"
    "                              hold (default 8); the next is refused\n"
    "    --max-partial-mb N        MiB all connections together may hold in\n"
    "                              frames not yet whole (default 128); past it\n"
    "                              the one whose frame came slowest is closed\n"
    "    --frame-timeout-ms MS     a frame must be whole this long after it\n"
    "                              began ... (default 10000)\n"
    "    --frame-min-kibps N       ... plus its length at N KiB/s (default 512)\n"
    ;

static const char usage_options2[] =
    "    --announce-interval-ms MS announce interval told to nodes (default 30000)\n"
    "    --node-ttl-ms MS          drop nodes silent this long (default 90000;\n"
    "                              must exceed the announce interval, as must\n"
    "                              --idle-timeout-ms)\n"
    "    --gone-ms MS              forget a node this long after its last\n"
    "                              connection closed, unless it connects again\n"
    "                              (default 5000; 0: only --node-ttl-ms): its\n"
    "                              origin leases end and chunks only it fetched\n"
    "                              become leasable, so a dead fetcher does not\n"
    "                              stall the fleet for --lease-ms. A shoald\n"
    "                              shutting down says so (BYE) and is forgotten\n"
    "                              at once\n"
    "    --start-grace-ms MS       for this long after start, grant no new origin\n"
    "                              lease of a release some node announces part\n"
    "                              of (default 2000; 0: none): nodes coming back\n"
    "                              after a restart re-claim the leases they are\n"
    "                              fetching under first\n"
    "    --lease-ms MS             lifetime of an origin lease (default 60000),\n"
    "                              counted again from each report of chunks\n"
    "                              newly fetched under it (nodes report each\n"
    "                              chunk as it lands);\n"
    "                              a restarted daemon's leases end at its first\n"
    "                              announce (it logs in with a new session id),\n"
    "                              one that only reconnected keeps them (and is\n"
    "                              granted again, once, a lease it never reported\n"
    "                              on: the reply may have been lost)\n"
    "    --fetched-ttl-ms MS       chunks reported fetched from the origin become\n"
    "                              leasable again after this long while no node\n"
    "                              but their fetcher announces the whole release\n"
    "                              (default 600000), though not to that fetcher for\n"
    "                              as long again; they also do when the node that\n"
    "                              fetched them leaves before anyone holds the\n"
    "                              whole release\n"
    ;

/* Split: C11 compilers need not take longer string literals. */
static const char usage_options3[] =
    "    --origin-fetchers N       per release and zone, the first N nodes that\n"
    "                              announce it are told to lease from the origin\n"
    "                              at once; the others wait (default 2; 0: every\n"
    "                              node leases at once)\n"
    "    --min-fetchers N          ... but at least N fetchers per release in all,\n"
    "                              shared by its zones (a zone with fewer nodes\n"
    "                              than its share leaves the rest to the others),\n"
    "                              so a fleet in one zone has enough to keep the\n"
    "                              origin busy (default 8; 0: --origin-fetchers\n"
    "                              per zone)\n"
    "    --importers N             the next N nodes are each told to import a 1/N\n"
    "                              share of the chunks from other zones at once\n"
    "                              (default 8; the larger of --origin-fetchers\n"
    "                              and --min-fetchers, plus N, at most 255)\n"
    "    --fetcher-leases N        size origin leases so that each fetcher can\n"
    "                              hold N of the chunks still unleased: spans\n"
    "                              shrink as the release runs out and its last\n"
    "                              chunks are spread over every fetcher (default\n"
    "                              2, a daemon's --max-leases; 0: grant what is\n"
    "                              asked, up to 64). Once chunks have come back\n"
    "                              from the origin, fetchers count at most the\n"
    "                              nodes announcing the release incomplete, and\n"
    "                              one alone gets what it asks\n"
    "    --fill-interval-ms MS     a node whose import share is provisional (its\n"
    "                              zone fills fewer ranks than there are shares,\n"
    "                              so the share shrinks as the zone grows) is told\n"
    "                              to announce again after as long as the zone went\n"
    "                              without a new node, MS doubled to fit, at least\n"
    "                              MS and at most --announce-interval-ms (default\n"
    "                              200, the least a node takes; 0: the announce\n"
    "                              interval for every node)\n"
    "    --max-peers N             largest peer list returned (default 50)\n"
    "    --max-conns N             simultaneous connections (default 10000)\n"
    "    --max-nodes N             nodes remembered (default 100000)\n"
    "    --max-manifests N         manifests remembered (default 65536); ids\n"
    "                              announced but not registered here fill at\n"
    "                              most half, registered ones have the rest\n"
    "    --manifest-ttl-h H        forget a registered manifest nobody holds,\n"
    "                              leases, puts or fetches for H hours (default\n"
    "                              168; 0: never); when the store is full the\n"
    "                              least recently used of those make room\n"
    "    --max-unregistered-per-node N\n"
    "                              releases not registered here one node's\n"
    "                              announce may record (default 32); the others\n"
    "                              are skipped until their manifest is put\n";

static const char usage_options4[] =
    "    --manifest-dir DIR        keep each registered manifest in DIR\n"
    "                              (<id>.manifest, created if missing) and\n"
    "                              register them again at start, signatures\n"
    "                              checked again, so a restart does not forget\n"
    "                              releases no node holds (rollback targets);\n"
    "                              files older than --manifest-ttl-h are removed\n"
    "                              at start (default: manifests in memory only)\n"
    "    --rollout-file FILE       keep rollouts in FILE: read at start, rewritten\n"
    "                              (atomically) on every change; a change that\n"
    "                              cannot be written is refused; lines that do\n"
    "                              not parse are skipped, logged, and appended\n"
    "                              to FILE.bad (default: rollouts are lost on\n"
    "                              restart)\n"
    "    --seed N                  seed of the peer-sampling PRNG (default: random)\n"
    "    -h, --help                this text\n"
    "\n";

static const char usage_more[] =
    "FILES\n"
    "    Key files use the format of shoal's keys: \"shoal-public-key-v1 <hex>\" or\n"
    "    bare 64-digit hex, one per line, '#' starts a comment.\n"
    "\n"
    "METRICS\n"
    "    STATS_REQ returns Prometheus text: shoal_tracker_nodes, _manifests,\n"
    "    _rollouts (rollouts recorded; shoal rollout --list shows them),\n"
    "    _entries, _announces_total, _announces_per_second, _leases_granted_total,\n"
    "    _leases_expired_total, _leases_done_total, _leases_given_back_total,\n"
    "    _leases_reclaimed_total, _leases_reclaim_refused_total,\n"
    "    _connections,\n"
    "    _auth_failures_total, _bad_input_total, _connections_evicted_total,\n"
    "    _rate_limited_total, _manifest_verifies_total, _partial_bytes,\n"
    "    _partial_evicted_total, _frames_timed_out_total, _frames_refused_total,\n"
    "    _conns_per_key_refused_total, _manifests_unregistered,\n"
    "    _entries_skipped_total, _manifests_forgotten_total,\n"
    "    _fetched_expired_total, _leases_regranted_total,\n"
    "    _fetched_withdrawn_total. `shoal tracker-stats\n"
    "    --tracker ADDR --key KEY --cred CRED` prints them (any node key with a\n"
    "    cluster credential).\n"
    "\n"
    "LIMITS\n"
    "    A connection may carry several node identities (TRK_AUTH again after\n"
    "    the fresh challenge); the zone, address and session id are bound when a\n"
    "    key is verified, and a switch back naming others is refused. A request\n"
    "    after the current credential expired is refused and the connection\n"
    "    closed.\n"
    "    At most 64 frames of one connection are handled per turn; reading\n"
    "    pauses while 256 KiB of its replies are unsent. ROLLOUT_STATUS_REQ,\n"
    "    STATS_REQ, GET_MANIFEST and PUT_MANIFEST are limited to 20 per second\n"
    "    (bursts of 40) per connection and answered ERROR when over.\n"
    "    Frames: 64 KiB before authentication; after it, 64 MiB + 1 KiB for a\n"
    "    PUT_MANIFEST (nodes re-put what they hold) or on a connection with a\n"
    "    publisher or admin identity, 64 KiB for anything else. Frames not yet\n"
    "    whole share --max-partial-mb and must finish within --frame-timeout-ms\n"
    "    plus their length at --frame-min-kibps. One node key may hold\n"
    "    --max-conns-per-key authenticated connections; the next TRK_AUTH for\n"
    "    it gets ERROR (busy) and is closed (logged at most once per 10 s, as\n"
    "    are evictions, closes and failed handshakes of unauthenticated\n"
    "    connections).\n"
    "\n"
    "EXIT STATUS\n"
    "    0 after a signal-initiated shutdown, 1 on a startup error, 2 on usage errors.\n";

enum {
    OPT_LISTEN = 256, OPT_CLUSTER, OPT_ADMIN, OPT_PUBLISHER, OPT_AUTH_S, OPT_AUTH_MS,
    OPT_INTERVAL, OPT_TTL, OPT_LEASE, OPT_PEERS, OPT_CONNS, OPT_NODES, OPT_MANIFESTS, OPT_SEED,
    OPT_UNAUTH, OPT_IDLE, OPT_FETCHED_TTL, OPT_FETCHERS, OPT_MIN_FETCHERS, OPT_IMPORTERS,
    OPT_FETCHER_LEASES, OPT_CONFIG, OPT_PER_KEY, OPT_PARTIAL, OPT_FRAME_TMO, OPT_FRAME_RATE,
    OPT_UNREG, OPT_MANIFEST_TTL, OPT_ROLLOUT_FILE, OPT_MANIFEST_DIR, OPT_KEY, OPT_FILL_INTERVAL,
    OPT_DENY, OPT_GONE, OPT_START_GRACE,
};

static const struct option longopts[] = {
    { "listen", required_argument, NULL, OPT_LISTEN },
    { "cluster-key", required_argument, NULL, OPT_CLUSTER },
    { "admin-keys", required_argument, NULL, OPT_ADMIN },
    { "publisher-keys", required_argument, NULL, OPT_PUBLISHER },
    { "auth-timeout", required_argument, NULL, OPT_AUTH_S },
    { "auth-timeout-ms", required_argument, NULL, OPT_AUTH_MS },
    { "announce-interval-ms", required_argument, NULL, OPT_INTERVAL },
    { "node-ttl-ms", required_argument, NULL, OPT_TTL },
    { "gone-ms", required_argument, NULL, OPT_GONE },
    { "start-grace-ms", required_argument, NULL, OPT_START_GRACE },
    { "lease-ms", required_argument, NULL, OPT_LEASE },
    { "max-peers", required_argument, NULL, OPT_PEERS },
    { "max-conns", required_argument, NULL, OPT_CONNS },
    { "max-nodes", required_argument, NULL, OPT_NODES },
    { "max-manifests", required_argument, NULL, OPT_MANIFESTS },
    { "seed", required_argument, NULL, OPT_SEED },
    { "max-unauth", required_argument, NULL, OPT_UNAUTH },
    { "idle-timeout-ms", required_argument, NULL, OPT_IDLE },
    { "fetched-ttl-ms", required_argument, NULL, OPT_FETCHED_TTL },
    { "origin-fetchers", required_argument, NULL, OPT_FETCHERS },
    { "min-fetchers", required_argument, NULL, OPT_MIN_FETCHERS },
    { "importers", required_argument, NULL, OPT_IMPORTERS },
    { "fetcher-leases", required_argument, NULL, OPT_FETCHER_LEASES },
    { "fill-interval-ms", required_argument, NULL, OPT_FILL_INTERVAL },
    { "deny-keys", required_argument, NULL, OPT_DENY },
    { "config", required_argument, NULL, OPT_CONFIG },
    { "max-conns-per-key", required_argument, NULL, OPT_PER_KEY },
    { "max-partial-mb", required_argument, NULL, OPT_PARTIAL },
    { "frame-timeout-ms", required_argument, NULL, OPT_FRAME_TMO },
    { "frame-min-kibps", required_argument, NULL, OPT_FRAME_RATE },
    { "max-unregistered-per-node", required_argument, NULL, OPT_UNREG },
    { "manifest-ttl-h", required_argument, NULL, OPT_MANIFEST_TTL },
    { "rollout-file", required_argument, NULL, OPT_ROLLOUT_FILE },
    { "manifest-dir", required_argument, NULL, OPT_MANIFEST_DIR },
    { "key", required_argument, NULL, OPT_KEY },
    /* shoald's spelling; after every option indexed by its OPT_ value. */
    { "cluster-keys", required_argument, NULL, OPT_CLUSTER },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static struct shoal_tracker *g_tracker;
static uv_signal_t g_sigterm, g_sigint, g_sighup;

static void on_signal(uv_signal_t *s, int signum)
{
    shoal_tracker_log("signal %d: shutting down", signum);
    shoal_tracker_shutdown(g_tracker);
    uv_close((uv_handle_t *)&g_sigterm, NULL);
    uv_close((uv_handle_t *)&g_sigint, NULL);
    uv_close((uv_handle_t *)&g_sighup, NULL);
}

/* A closed terminal or a log rotation sends SIGHUP: not a reason to drop
 * every node (by default it ended the process on the spot). */
static void on_sighup(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    shoal_tracker_log("SIGHUP ignored: shoal-tracker reloads nothing; SIGTERM stops it");
}

/* What the options build up, from the command line and --config files. */
#define DENY_FILES_MAX 16

struct args {
    struct shoal_tracker_config cfg;
    struct shoal_keyset *cluster, *admin, *publisher;
    const char *deny[DENY_FILES_MAX]; /* --deny-keys files */
    size_t ndeny;
    struct shoal_seckey key; /* --key */
    bool has_key;
    bool seeded;
    char *kept[256];       /* values read from --config files */
    size_t nkept;
};

/* Parses a whole decimal number in [min, max]. */
static int parse_range(const char *s, uint64_t min, uint64_t max, uint64_t *out, char *why,
                       size_t whylen)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max || s[0] == '-') {
        snprintf(why, whylen, "expected a number from %llu to %llu, got '%s'",
                 (unsigned long long)min, (unsigned long long)max, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* ... in [1, max]: counts and durations where 0 means nothing sensible. */
static int parse_num(const char *s, uint64_t max, uint64_t *out, char *why, size_t whylen)
{
    return parse_range(s, 1, max, out, why, whylen);
}

static int load_keys(struct shoal_keyset **ks, const char *path, char *why, size_t whylen)
{
    int rv = 0;
    if (!*ks && (rv = shoal_keyset_new(ks)) != 0)
        goto out;
    rv = shoal_keyset_load_file(*ks, path);
out:
    if (rv)
        shoal_keyfile_strerror(path, rv, why, whylen);
    return rv ? 1 : 0;
}

/*
 * Applies one option (|opt| from longopts) with value |val|. Returns 0, -1
 * for a malformed value (a usage error) or 1 for a key file that cannot be
 * read (a setup error), with the reason in |why|.
 */
static int set_opt(struct args *A, int opt, const char *val, char *why, size_t whylen)
{
    struct shoal_tracker_config *cfg = &A->cfg;
    uint64_t v = 0;
    int bad = 0;

#define NUM(max) (bad = parse_num(val, (max), &v, why, whylen))
#define RANGE(min, max) (bad = parse_range(val, (min), (max), &v, why, whylen))
    switch (opt) {
    case OPT_LISTEN: cfg->listen = val; break;
    case OPT_ROLLOUT_FILE:
        if (!*val) {
            snprintf(why, whylen, "needs a file name");
            return -1;
        }
        cfg->rollout_file = val;
        break;
    case OPT_MANIFEST_DIR:
        if (!*val) {
            snprintf(why, whylen, "needs a directory name");
            return -1;
        }
        cfg->manifest_dir = val;
        break;
    case OPT_KEY: {
        int rv = shoal_seckey_load(val, &A->key);
        if (rv) {
            shoal_keyfile_strerror(val, rv, why, whylen);
            return 1;
        }
        A->has_key = true;
        break;
    }
    case OPT_CLUSTER: return load_keys(&A->cluster, val, why, whylen);
    case OPT_ADMIN: return load_keys(&A->admin, val, why, whylen);
    case OPT_PUBLISHER: return load_keys(&A->publisher, val, why, whylen);
    case OPT_DENY:
        if (A->ndeny == DENY_FILES_MAX) {
            snprintf(why, whylen, "at most %d files (one file may list several keys)",
                     DENY_FILES_MAX);
            return -1;
        }
        A->deny[A->ndeny++] = val;
        break;
    case OPT_AUTH_S: NUM(86400); cfg->auth_timeout_ms = (uint32_t)(v * 1000); break;
    case OPT_AUTH_MS: NUM(86400000); cfg->auth_timeout_ms = (uint32_t)v; break;
    case OPT_INTERVAL: NUM(86400000); cfg->reg.announce_interval_ms = (uint32_t)v; break;
    case OPT_TTL: NUM(86400000); cfg->reg.node_ttl_ms = (uint32_t)v; break;
    case OPT_LEASE: NUM(86400000); cfg->reg.lease_ms = (uint32_t)v; break;
    case OPT_PEERS: NUM(256); cfg->reg.max_peers = (uint32_t)v; break;
    case OPT_CONNS: NUM(1000000); cfg->max_conns = (uint32_t)v; break;
    case OPT_NODES: NUM(100000000); cfg->reg.max_nodes = (uint32_t)v; break;
    case OPT_MANIFESTS: NUM(100000000); cfg->reg.max_manifests = (uint32_t)v; break;
    case OPT_SEED: NUM(UINT64_MAX); cfg->reg.seed = v; A->seeded = true; break;
    case OPT_UNAUTH: NUM(1000000); cfg->max_unauth = (uint32_t)v; break;
    case OPT_IDLE: NUM(86400000); cfg->idle_timeout_ms = (uint32_t)v; break;
    case OPT_MANIFEST_TTL:
        RANGE(0, 1000000);
        cfg->reg.manifest_ttl_ms = v * 3600 * 1000;
        break;
    case OPT_UNREG: RANGE(0, 65535); cfg->reg.max_unregistered_per_node = (uint32_t)v; break;
    case OPT_PER_KEY: NUM(1000000); cfg->max_conns_per_key = (uint32_t)v; break;
    case OPT_GONE: RANGE(0, 86400000); cfg->gone_ms = (uint32_t)v; break;
    case OPT_START_GRACE: RANGE(0, 600000); cfg->start_grace_ms = (uint32_t)v; break;
    case OPT_PARTIAL: NUM(1u << 20); cfg->max_partial_total = (size_t)v << 20; break;
    case OPT_FRAME_TMO: NUM(86400000); cfg->frame_timeout_ms = (uint32_t)v; break;
    case OPT_FRAME_RATE: NUM(UINT32_MAX / 1024); cfg->frame_min_rate = (uint32_t)(v * 1024); break;
    case OPT_FETCHED_TTL: NUM(UINT32_MAX); cfg->reg.fetched_ttl_ms = (uint32_t)v; break;
    case OPT_FETCHERS:
        RANGE(0, SHOAL_REG_RANKS_MAX);
        cfg->reg.origin_fetchers = (uint32_t)v;
        break;
    case OPT_MIN_FETCHERS:
        RANGE(0, SHOAL_REG_RANKS_MAX);
        cfg->reg.min_fetchers = (uint32_t)v;
        break;
    case OPT_IMPORTERS: RANGE(0, SHOAL_REG_RANKS_MAX); cfg->reg.importers = (uint32_t)v; break;
    case OPT_FETCHER_LEASES:
        RANGE(0, SHOAL_REG_LEASES_PER_NODE);
        cfg->reg.fetcher_leases = (uint32_t)v;
        break;
    case OPT_FILL_INTERVAL: RANGE(0, 86400000); cfg->reg.fill_interval_ms = (uint32_t)v; break;
    default:
        snprintf(why, whylen, "unknown option");
        return -1;
    }
#undef NUM
#undef RANGE
    return bad;
}

/* Brings back the rollouts of an earlier run. An unreadable file stops the
 * start (the operator must see it); lines that do not parse are skipped and
 * appended to FILE.bad before the file is rewritten (atomically), so
 * nothing an operator wrote is lost: not by the next start with another
 * bad line, not by a crash in between. */
static int load_rollouts(const char *path, struct shoal_tracker *t)
{
    struct shoal_rollfile_result res;
    struct shoal_reg *reg = shoal_tracker_registry(t);
    int rv = shoal_rollfile_load(path, reg, &res);

    if (rv) {
        fprintf(stderr, "shoal-tracker: cannot read the rollout file %s: %s\n", path,
                rv == -EINVAL ? "not a regular file" : shoal_strerror(rv));
        return -1;
    }
    if (res.bad) {
        char aside[4096];
        snprintf(aside, sizeof aside, "%s.bad", path);
        rv = shoal_rollfile_keep_bad(path, aside, &res);
        shoal_rollfile_result_free(&res);
        if (rv) {
            fprintf(stderr, "shoal-tracker: rollout file %s: %u line(s) do not parse (%s) and "
                    "cannot be copied to %s: %s; the file is left as it is\n", path, res.bad,
                    res.first_bad, aside, strerror(-rv));
            return -1;
        }
        shoal_tracker_log("rollout file %s: %u line(s) skipped (%s); copied to %s", path,
                          res.bad, res.first_bad, aside);
        if ((rv = shoal_rollfile_save(path, reg)) != 0) {
            fprintf(stderr, "shoal-tracker: cannot rewrite the rollout file %s: %s\n", path,
                    shoal_strerror(rv));
            return -1;
        }
    }
    shoal_rollfile_result_free(&res);
    /* Written now, so a file the tracker cannot write stops the start
     * rather than the first rollout. */
    if (!res.bad && (rv = shoal_rollfile_save(path, reg)) != 0) {
        fprintf(stderr, "shoal-tracker: cannot write the rollout file %s: %s\n", path,
                shoal_strerror(rv));
        return -1;
    }
    if (res.loaded)
        shoal_tracker_log("rollout file %s: %u rollout(s) restored", path, res.loaded);
    return 0;
}

/* A --config file's line: the key is a long option's name. */
static int set_from_file(void *ctx, const char *key, const char *val, char *why, size_t whylen)
{
    struct args *A = ctx;
    int rv;
    for (const struct option *o = longopts; o->name; o++) {
        if (o->val < OPT_LISTEN || o->val == OPT_CONFIG || strcmp(o->name, key) != 0)
            continue;
        /* The file's buffer is reused line by line; the config keeps the
         * listen address by pointer. */
        char *keep = strdup(val);
        if (!keep)
            return -ENOMEM;
        if (A->nkept == sizeof A->kept / sizeof A->kept[0]) {
            free(keep);
            snprintf(why, whylen, "too many settings");
            return SHOAL_ELIMIT;
        }
        A->kept[A->nkept++] = keep;
        char inner[400];
        inner[0] = '\0';
        rv = set_opt(A, o->val, keep, inner, sizeof inner);
        if (rv) {
            snprintf(why, whylen, "%s: %s", key, inner);
            /* Both kinds are the file's fault: a setup error. */
            return SHOAL_EBADMSG;
        }
        return 0;
    }
    snprintf(why, whylen, "unknown key '%s' (the keys are the long options, without --)", key);
    return -EINVAL;
}

/* The keys of the file that accumulate. */
static int list_key(const char *key)
{
    return strcmp(key, "cluster-key") == 0 || strcmp(key, "cluster-keys") == 0 ||
           strcmp(key, "deny-keys") == 0;
}

int main(int argc, char **argv)
{
    int status = 1;
    struct args A;
    uv_loop_t loop;
    bool loop_ok = false;
    char why[1024];
    memset(&A, 0, sizeof A);
    shoal_tracker_config_default(&A.cfg);
    struct shoal_tracker_config *cfg = &A.cfg;

    /* --config first, wherever it stands, so flags override the file. */
    for (int i = 1; i < argc; i++) {
        const char *path = NULL;
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc)
                break; /* getopt below reports the missing value */
            path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        }
        if (path && shoal_kvfile_load(path, set_from_file, &A, list_key, why,
                                      sizeof why) != 0) {
            fprintf(stderr, "shoal-tracker: %s\n", why);
            goto out;
        }
    }

    int opt, li = 0;
    while ((opt = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        int bad = 0;
        if (opt == 'h') {
            fputs(usage, stdout);
            fputs(usage_options, stdout);
            fputs(usage_options2, stdout);
            fputs(usage_options3, stdout);
            fputs(usage_options4, stdout);
            fputs(usage_more, stdout);
            status = 0;
            goto out;
        }
        if (opt == OPT_CONFIG)
            continue;
        if (opt < OPT_LISTEN) {
            fputs("Try 'shoal-tracker --help'.\n", stderr);
            status = 2;
            goto out;
        }
        bad = set_opt(&A, opt, optarg, why, sizeof why);
        if (bad) {
            /* The name as given (an alias too), not the enum's order. */
            fprintf(stderr, "shoal-tracker: --%s %s\n", longopts[li].name, why);
            /* A key file that cannot be read is a startup error, a
             * malformed value a usage error. */
            status = bad < 0 ? 2 : 1;
            goto out;
        }
    }
    if (optind < argc || !A.cluster) {
        fprintf(stderr, "shoal-tracker: %s\nTry 'shoal-tracker --help'.\n",
                optind < argc ? "unexpected argument" : "--cluster-key is required");
        status = 2;
        goto out;
    }
    uint32_t franks = shoal_reg_fetcher_ranks(&cfg->reg);
    if (franks + cfg->reg.importers > SHOAL_REG_RANKS_MAX) {
        fprintf(stderr,
                "shoal-tracker: the larger of --origin-fetchers and --min-fetchers plus "
                "--importers is %u, above %u\n",
                franks + cfg->reg.importers, SHOAL_REG_RANKS_MAX);
        status = 2;
        goto out;
    }
    /* A node announces every interval: a TTL or idle timeout no longer
     * than that drops healthy nodes between two announces. */
    if (cfg->reg.node_ttl_ms <= cfg->reg.announce_interval_ms ||
        cfg->idle_timeout_ms <= cfg->reg.announce_interval_ms) {
        fprintf(stderr,
                "shoal-tracker: --%s %u ms is not longer than --announce-interval-ms %u ms: "
                "nodes would be dropped between two announces (default ttl is 3 intervals)\n",
                cfg->reg.node_ttl_ms <= cfg->reg.announce_interval_ms ? "node-ttl-ms"
                                                                      : "idle-timeout-ms",
                cfg->reg.node_ttl_ms <= cfg->reg.announce_interval_ms ? cfg->reg.node_ttl_ms
                                                                      : cfg->idle_timeout_ms,
                cfg->reg.announce_interval_ms);
        status = 2;
        goto out;
    }
    if (!A.seeded)
        cfg->reg.seed = (uint64_t)uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 32);
    cfg->cluster_keys = A.cluster;
    cfg->admin_keys = A.admin;
    cfg->publisher_keys = A.publisher;
    if (A.ndeny) {
        char dwhy[512];
        if (shoal_keywatch_new(&cfg->deny, A.deny, A.ndeny, dwhy, sizeof dwhy) != 0) {
            fprintf(stderr, "shoal-tracker: deny-keys: %s\n", dwhy);
            goto out;
        }
        shoal_tracker_log("deny-keys: %zu revoked node key(s), read again within 2 s of a "
                          "change", shoal_keywatch_count(cfg->deny));
    }
    if (A.has_key) {
        struct shoal_pubkey pk;
        char hex[65];
        cfg->id_key = &A.key;
        shoal_seckey_public(&A.key, &pk);
        shoal_hex(hex, pk.pk, 32);
        shoal_tracker_log("tracker key %s: proven to nodes that pin it", hex);
    }

    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&loop) != 0)
        goto out;
    loop_ok = true;
    int rv = shoal_tracker_new(&g_tracker, &loop, cfg);
    if (rv) {
        fprintf(stderr, "shoal-tracker: cannot listen on %s: %s\n", cfg->listen,
                rv > -1000 ? uv_strerror(rv) : shoal_strerror(rv));
        goto out;
    }
    if (cfg->manifest_dir) {
        unsigned loaded, expired, refused;
        rv = shoal_tracker_load_manifests(g_tracker, &loaded, &expired, &refused);
        if (rv) {
            fprintf(stderr, "shoal-tracker: cannot read the manifest directory %s: %s\n",
                    cfg->manifest_dir, strerror(-rv));
            shoal_tracker_shutdown(g_tracker);
            uv_run(&loop, UV_RUN_DEFAULT);
            goto out;
        }
        shoal_tracker_log("manifest dir %s: %u manifest(s) registered again, %u past "
                          "--manifest-ttl-h removed, %u refused", cfg->manifest_dir, loaded,
                          expired, refused);
    }
    if (cfg->rollout_file && load_rollouts(cfg->rollout_file, g_tracker) != 0) {
        shoal_tracker_shutdown(g_tracker);
        uv_run(&loop, UV_RUN_DEFAULT);
        goto out;
    }
    uv_signal_init(&loop, &g_sigterm);
    uv_signal_init(&loop, &g_sigint);
    uv_signal_start(&g_sigterm, on_signal, SIGTERM);
    uv_signal_start(&g_sigint, on_signal, SIGINT);
    uv_signal_init(&loop, &g_sighup);
    uv_signal_start(&g_sighup, on_sighup, SIGHUP);

    /* Report the bound port; keep the host as given. */
    const char *colon = strrchr(cfg->listen, ':');
    printf("listening on %.*s:%d\n", (int)(colon - cfg->listen), cfg->listen,
           shoal_tracker_port(g_tracker));
    fflush(stdout);
    shoal_tracker_log("started on %.*s:%d, %zu cluster key(s), announce %u ms, ttl %u ms, "
                      "lease %u ms",
                      (int)(colon - cfg->listen), cfg->listen, shoal_tracker_port(g_tracker),
                      shoal_keyset_count(A.cluster), cfg->reg.announce_interval_ms,
                      cfg->reg.node_ttl_ms, cfg->reg.lease_ms);
    uv_run(&loop, UV_RUN_DEFAULT);
    status = 0;
    shoal_tracker_log("stopped");
out:
    if (loop_ok) {
        uv_run(&loop, UV_RUN_NOWAIT);
        if (uv_loop_close(&loop) != 0) {
            shoal_tracker_log("loop did not close cleanly");
            status = status ? status : 1;
        }
    }
    shoal_tracker_free(g_tracker);
    shoal_keyset_free(A.cluster);
    shoal_keyset_free(A.admin);
    shoal_keyset_free(A.publisher);
    shoal_keywatch_free(A.cfg.deny);
    sodium_memzero(&A.key, sizeof A.key);
    for (size_t i = 0; i < A.nkept; i++)
        free(A.kept[i]);
    return status;
}
