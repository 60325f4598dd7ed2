/* SPDX-License-Identifier: MIT */
/* shoald's settings table, config file parser and option help (config.h). */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cliutil.h"
#include "error.h"
#include "kvfile.h"
#include "sched.h"

enum kind { K_STR, K_LIST, K_BOOL, K_U64, K_SIZE, K_RATE };

struct key {
    const char *name;
    enum kind kind;
    size_t off;
    const char *arg;
    const char *help;
};

#define F(m) offsetof(struct shoal_config, m)

static const struct key keys[] = {
    {"listen", K_STR, F(listen), "HOST:PORT", "accept peers here (default 127.0.0.1:7600)"},
    {"advertise", K_STR, F(advertise), "HOST:PORT",
     "address peers should dial (default: listen; if that is\n"
     "                               0.0.0.0 or ::, this node's address towards each tracker)"},
    {"zone", K_STR, F(zone), "NAME", "our zone; same-zone peers are preferred (default)"},
    {"node-key", K_STR, F(node_key), "FILE", "node secret key (shoal keygen); read at start"},
    {"cred", K_STR, F(cred), "FILE",
     "cluster credential for the node key (shoal cred issue); checked at start against\n"
     "                               node-key, cluster-keys and the clock. Required with a\n"
     "                               tracker or a peer; a standalone node (neither) may run\n"
     "                               without one and fetch from the origin only; read at\n"
     "                               start (a renewed one needs a restart)"},
    {"cluster-keys", K_LIST, F(cluster_keys), "FILE",
     "trusted cluster public keys; peers must hold a credential by one (repeatable;\n"
     "                               read at start)"},
    {"publisher-keys", K_LIST, F(publisher_keys), "FILE",
     "trusted manifest publisher keys (repeatable; required: without one no manifest\n"
     "                               is accepted); read at start: a key added needs a restart"},
    {"cache-dir", K_STR, F(cache_dir), "DIR",
     "store = HF hub cache (default $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE,\n"
     "                               $HF_HOME/hub, ~/.cache/huggingface/hub)"},
    {"state-dir", K_STR, F(state_dir), "DIR",
     "list the open releases here; all reopen at start (default\n"
     "                               $STATE_DIRECTORY, root: /var/lib/shoald, else\n"
     "                               $XDG_STATE_HOME/shoald or ~/.local/state/shoald);\n"
     "                               one file per cache dir; 'none': keep no list"},
    {"peer", K_LIST, F(peers), "HOST:PORT", "a peer to keep connected to (repeatable)"},
    {"manifest", K_LIST, F(manifests), "FILE", "hold this signed release (repeatable)"},
    {"pull", K_LIST, F(pulls), "ID|[datasets/]ORG/NAME@REV",
     "fetch this release: a manifest id (hex), or a name the tracker resolves (a dataset's "
     "with datasets/; repeatable)"},
    {"seed-dir", K_STR, F(seed_dir), "DIR",
     "import the --manifest releases from a local copy at DIR first"},
    {"no-encrypt", K_BOOL, F(no_encrypt), NULL,
     "do not ask for sealed frames (plain only if the peer agrees)"},
    {"no-aesgcm", K_BOOL, F(no_aesgcm), NULL, "use XChaCha20-Poly1305 even with AES-NI"},
    {"verify-store", K_BOOL, F(verify_store), NULL, "re-hash the store at start"},
    {"exit-when-complete", K_BOOL, F(exit_when_complete), NULL,
     "exit 0 once every pulled and --manifest release is complete"},
    {"max-frame", K_SIZE, F(max_frame), "SIZE",
     "largest frame accepted from peers, bytes (16778240 = 16M+1K; 4259840 to 67174400)"},
    {"manifest-budget", K_SIZE, F(manifest_budget), "SIZE",
     "manifest bytes being sent to peers at once; later asks wait their turn (8M)"},
    {"max-queue-total", K_SIZE, F(max_queue_total), "SIZE",
     "what all peers' write queues may hold together; past it, reading stops from\n"
     "                               peers holding more than SIZE / max-peers (512M; 0: no\n"
     "                               limit beyond 64M per peer)"},
    {"max-peers", K_U64, F(max_peers), "N",
     "authenticated peers (and our dials in progress) at once (64; 1-250)"},
    {"max-releases", K_U64, F(max_releases), "N",
     "releases kept open at once (64; 1-64); to open one more, the complete release "
     "used least recently (not one a tracker rollout names) is closed, its files staying "
     "in the cache"},
    {"max-unauth", K_U64, F(max_unauth), "N",
     "inbound connections still in their handshake at once; a new one closes the oldest "
     "of the address holding the most (64; 1-256)"},
    {"hello-rate", K_U64, F(hello_rate), "N",
     "inbound HELLOs checked per second from one address (IPv6: /64), bursts of 2N; "
     "more are refused unchecked (20; 0: no limit; at most 100000)"},
    {"serve-per-peer", K_U64, F(serve_per_peer), "N", "uploads in flight per peer (16; 1-64)"},
    {"upload-slots", K_U64, F(upload_slots), "N",
     "peers one release is uploaded to at once; others are told busy (6; 0: no limit)"},
    {"request-timeout-ms", K_U64, F(request_timeout_ms), "MS", "give up on a request (30000; 100-3600000)"},
    {"handshake-timeout-ms", K_U64, F(handshake_timeout_ms), "MS", "handshake deadline (10000; 100-3600000)"},
    {"peer-idle-ms", K_U64, F(peer_idle_ms), "MS",
     "a peer that sends nothing this long is closed; PINGed after a third of it\n"
     "                               (90000; 1000-3600000)"},
    {"ban-seconds", K_U64, F(ban_seconds), "S",
     "ban a node that sent a bad chunk, or announced chunks and sent none for a "
     "request time-out (600; 1-31536000, a year)"},
    {"reconnect-ms", K_U64, F(reconnect_ms), "MS", "redial lost --peer addresses (2000; 10-3600000)"},
    {"seed", K_U64, F(seed), "N", "scheduler random seed (default: from the node key)"},
    {"log-level", K_STR, F(log_level), "LEVEL", "error, warn, info (default) or debug"},
    {"test-corrupt-uploads", K_BOOL, F(test_corrupt_uploads), NULL,
     "TESTING ONLY: serve corrupted chunks (to test banning)"},
    {"test-corrupt-hangup", K_BOOL, F(test_corrupt_hangup), NULL,
     "TESTING ONLY: serve one corrupted chunk per connection, then hang up"},
    {"test-sendfile-local", K_BOOL, F(test_sendfile_local), NULL,
     "TESTING ONLY: send chunks to peers on this host with sendfile too, as to others"},
    {"control-socket", K_STR, F(control_socket), "PATH",
     "CLI control socket (default $XDG_RUNTIME_DIR/shoald.sock, root: /run/shoald/; "
     "'none': off)"},
    {"rate-up", K_RATE, F(rate_up), "RATE",
     "cap on chunk uploads, whole node (0: none). RATE is bytes/s with K/M/G/T\n"
     "                               in powers of 1024 (100M = 100MB = 100 MiB/s), or bits/s\n"
     "                               with bit or a lowercase b, in powers of 1000 (100Mbit =\n"
     "                               100Mb = 100 Mbit/s = 12.5 MB/s); at most 1T"},
    {"rate-down", K_RATE, F(rate_down), "RATE", "cap on downloads from peers, whole node (0: none)"},
    {"peer-rate-up", K_RATE, F(peer_rate_up), "RATE", "cap on chunk uploads to each peer (0: none)"},
    {"peer-rate-down", K_RATE, F(peer_rate_down), "RATE", "cap on downloads from each peer (0: none)"},
    {"compress-level", K_U64, F(compress_level), "N",
     "zstd level (1-3) for chunks served where it saves >=10%; 0: never (1)"},
    {"loader-socket", K_STR, F(loader_socket), "PATH",
     "hand completed files to local loaders on this Unix socket (mode 0660)"},
    {"loader-group", K_STR, F(loader_group), "GROUP",
     "members of GROUP may use the loader socket (it is chown'd to GROUP) and read the "
     "cache (its folders are GROUP's, mode 02750)"},
    {"loader-user", K_STR, F(loader_user), "USER",
     "USER may use the loader socket (besides root and shoald's own user; the socket is "
     "then mode 0666, every connection checked with SO_PEERCRED)"},
    {"store", K_STR, F(store), "disk|memory",
     "disk: the HF cache (default); memory: memfd-backed files, nothing on disk"},
    {"tracker", K_LIST, F(trackers), "HOST:PORT",
     "announce to this tracker, find peers and origin leases there (repeatable)"},
    {"tracker-keys", K_LIST, F(tracker_keys), "FILE",
     "public keys of this fleet's trackers (one per line; repeatable): a tracker must\n"
     "                               prove it holds one (shoal-tracker --key) before the node\n"
     "                               uses it (default: trackers are not authenticated); read\n"
     "                               at start"},
    {"deny-keys", K_LIST, F(deny_keys), "FILE",
     "node keys this node refuses although their credential is valid (a leaked or\n"
     "                               retired node: one public key per line; repeatable; at\n"
     "                               most 64 in all); read again within 2 s of a change,\n"
     "                               and a live session of a key then listed is closed"},
    {"hub-endpoint", K_STR, F(hub_endpoint), "URL",
     "origin for chunks no peer has (default $HF_ENDPOINT, else https://huggingface.co)"},
    {"hub-token-file", K_STR, F(hub_token_file), "FILE",
     "Bearer token for the origin (default $HF_TOKEN, else the deprecated\n"
     "                               $HUGGING_FACE_HUB_TOKEN, else the login token at\n"
     "                               $HF_TOKEN_PATH or $HF_HOME/token); never sent to peers\n"
     "                               or trackers; read at start"},
    {"hub-ca", K_STR, F(hub_ca), "FILE",
     "PEM bundle of the CAs an https origin's certificate must chain to (a gateway\n"
     "                               with an internal CA), instead of the system's; also\n"
     "                               for hosts it redirects to (default $CURL_CA_BUNDLE,\n"
     "                               else $SSL_CERT_FILE, else the system's CAs); checked at\n"
     "                               start"},
    {"no-origin", K_BOOL, F(no_origin), NULL, "never fetch from the origin, only from peers"},
    {"origin-delay-ms", K_U64, F(origin_delay_ms), "MS",
     "wait this long after a release opens before using the origin (1000); a node the "
     "tracker makes an origin fetcher for the release does not wait"},
    {"lease-fallback-ms", K_U64, F(lease_fallback_ms), "MS",
     "with no tracker reachable this long, fetch from the origin without a lease (5000)"},
    {"starved-ms", K_U64, F(starved_ms), "MS",
     "a release that has had no chunk from any peer this long, with none asked of one,\n"
     "                               says so in its lease requests: the tracker then leases\n"
     "                               it chunks other nodes fetched from the origin over\n"
     "                               --lease-ms ago, which its peers would give it if they\n"
     "                               could (30000, at least 1000; a node cut off from the\n"
     "                               holders)"},
    {"lease-chunks", K_U64, F(lease_chunks), "N",
     "chunks asked for per origin lease (64; 1-64, the most a tracker grants)"},
    {"max-leases", K_U64, F(max_leases), "N", "origin leases an origin fetcher holds at once (2; 1-16)"},
    {"origin-min-rate", K_RATE, F(origin_min_rate), "RATE",
     "end an origin range request under RATE over a whole window\n"
     "                               (--origin-slow-window-ms) and resume it from its last\n"
     "                               byte on a new connection, a failed try (64K; 0: never)"},
    {"origin-slow-window-ms", K_U64, F(origin_slow_window_ms), "MS",
     "the window --origin-min-rate is measured over (60000; 1000-3600000)"},
};

static const struct key *find_key(const char *name)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    }
    return NULL;
}

bool shoal_config_is_known(const char *key)
{
    return find_key(key) != NULL;
}

bool shoal_config_is_flag(const char *key)
{
    const struct key *k = find_key(key);
    return k && k->kind == K_BOOL;
}

int shoal_config_init(struct shoal_config *c)
{
    memset(c, 0, sizeof *c);
    c->listen = strdup("127.0.0.1:7600");
    c->zone = strdup("default");
    c->log_level = strdup("info");
    if (!c->listen || !c->zone || !c->log_level) {
        shoal_config_free(c);
        return -ENOMEM;
    }
    c->max_frame = 16u * 1024 * 1024 + 1024;
    c->manifest_budget = 8u << 20;
    c->max_queue_total = 512u << 20;
    c->max_peers = 64;
    c->max_unauth = 64;
    c->hello_rate = 20;
    c->max_leases = 2; /* the scheduler's default */
    c->max_releases = 64;
    c->serve_per_peer = 16;
    c->upload_slots = SHOAL_UPLOAD_SLOTS_DEFAULT;
    c->request_timeout_ms = 30000;
    c->handshake_timeout_ms = 10000;
    c->peer_idle_ms = 90000;
    c->ban_seconds = 600;
    c->reconnect_ms = 2000;
    c->compress_level = 1;
    c->origin_delay_ms = 1000;
    c->lease_fallback_ms = 5000;
    c->starved_ms = SHOAL_SCHED_STARVED_MS;
    c->lease_chunks = 64; /* the scheduler's default and a tracker's most */
    c->origin_min_rate = 64u * 1024;    /* the hub's defaults */
    c->origin_slow_window_ms = 60000;
    return 0;
}

void shoal_config_free(struct shoal_config *c)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        void *f = (char *)c + keys[i].off;
        if (keys[i].kind == K_STR) {
            free(*(char **)f);
        } else if (keys[i].kind == K_LIST) {
            struct shoal_config_list *l = f;
            for (size_t j = 0; j < l->n; j++)
                free(l->v[j]);
        }
    }
    memset(c, 0, sizeof *c);
}

int shoal_config_set(struct shoal_config *c, const char *key, const char *value, char *why,
                     size_t whylen)
{
    const struct key *k = find_key(key);
    void *f;
    char *end, *dup, rwhy[256];
    uint64_t v;

    if (!k) {
        snprintf(why, whylen, "unknown setting '%s'", key);
        return -ENOENT;
    }
    f = (char *)c + k->off;
    switch (k->kind) {
    case K_STR:
    case K_LIST:
        if (!value || !*value) {
            snprintf(why, whylen, "'%s' needs a value", key);
            return -EINVAL;
        }
        dup = strdup(value);
        if (!dup)
            return -ENOMEM;
        if (k->kind == K_STR) {
            free(*(char **)f);
            *(char **)f = dup;
        } else {
            struct shoal_config_list *l = f;
            if (l->n >= SHOAL_CONFIG_LIST_MAX) {
                free(dup);
                snprintf(why, whylen, "too many '%s' entries (max %d)", key,
                         SHOAL_CONFIG_LIST_MAX);
                return SHOAL_ELIMIT;
            }
            l->v[l->n++] = dup;
        }
        return 0;
    case K_BOOL:
        if (!value || strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 ||
            strcmp(value, "1") == 0) {
            *(bool *)f = true;
        } else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 ||
                   strcmp(value, "0") == 0) {
            *(bool *)f = false;
        } else {
            snprintf(why, whylen, "'%s' is true or false, not '%s'", key, value);
            return -EINVAL;
        }
        return 0;
    case K_RATE:
        if (!value)
            goto bad_num;
        if (shoal_parse_rate(value, &v, rwhy, sizeof rwhy) != 0) {
            snprintf(why, whylen, "'%s': %s", key, rwhy);
            return -EINVAL;
        }
        *(uint64_t *)f = v;
        return 0;
    case K_U64:
    case K_SIZE:
        if (!value)
            goto bad_num;
        if (k->kind == K_SIZE) {
            if (shoal_parse_size(value, &v) != 0) {
                snprintf(why, whylen, "'%s' needs a size in bytes (a number, K/M/G/T as powers "
                         "of 1024: 16M, 1.5G), not '%s'", key, value);
                return -EINVAL;
            }
        } else {
            errno = 0;
            v = strtoull(value, &end, 10);
            if (errno || end == value || *end || value[0] == '-')
                goto bad_num;
        }
        *(uint64_t *)f = v;
        return 0;
    }
bad_num:
    snprintf(why, whylen, "'%s' needs a number, not '%s'", key, value ? value : "");
    return -EINVAL;
}

static int set_one(void *ctx, const char *key, const char *value, char *why, size_t whylen)
{
    return shoal_config_set(ctx, key, value, why, whylen);
}

static int is_list(const char *key)
{
    const struct key *k = find_key(key);
    return k && k->kind == K_LIST;
}

int shoal_config_load(struct shoal_config *c, const char *path, char *why, size_t whylen)
{
    return shoal_kvfile_load(path, set_one, c, is_list, why, whylen);
}

void shoal_config_usage(FILE *out)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", keys[i].name, keys[i].arg ? " " : "",
                 keys[i].arg ? keys[i].arg : "");
        fprintf(out, "  %-28s %s\n", left, keys[i].help);
    }
}
