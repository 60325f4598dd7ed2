/* SPDX-License-Identifier: MIT */
/*
 * shoald wiring (see daemon.h): identity, trust, listener, static peers,
 * message routing between peers and releases, bans, graceful shutdown.
 */
#include "daemon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cliutil.h"
#include "cred.h"
#include "error.h"
#include "frame.h"
#include "hash.h"
#include "hfcache.h"
#include "keys.h"
#include "manifest.h"
#include "nodelog.h"
#include "peer.h"
#include "store.h"
#include "swarm.h"

#define MAX_PEERS_HARD 250
#define MAX_SWARMS 64
#define MAX_BANS 256

struct ban {
    uint8_t pk[32];
    uint64_t until_ms;
};

struct pull {
    uint8_t id[32];
    struct shoal_swarm *swarm; /* once the manifest arrived */
};

struct shoal_daemon {
    uv_loop_t loop;
    const struct shoal_config *cfg;
    struct shoal_seckey sk;
    struct shoal_pubkey pk;
    uint8_t cred[SHOAL_MSG_CRED_MAX];
    size_t cred_len;
    struct shoal_keyset *cluster_keys;
    struct shoal_keyset *publishers;
    char cache_dir[SHOAL_HF_PATH_MAX];
    char listen_addr[SHOAL_MSG_ADDR_MAX + 1];

    struct shoal_peer_ctx pctx;
    struct shoal_peer_cb pcb;
    struct shoal_swarm_cfg scfg;
    struct shoal_swarm_hooks hooks;

    uv_tcp_t listener;
    uv_signal_t sigterm, sigint;
    uv_timer_t redial;

    struct shoal_peer *peers[MAX_PEERS_HARD];
    uint32_t npeers;
    struct shoal_peer *static_conn[SHOAL_CONFIG_LIST_MAX];
    struct shoal_swarm *swarms[MAX_SWARMS];
    uint32_t nswarms;
    struct pull pulls[SHOAL_CONFIG_LIST_MAX];
    uint32_t npulls;
    struct ban bans[MAX_BANS];
    uint32_t nbans;
    bool stopping;
    int exit_code;
};

static void hex8(char out[17], const uint8_t *id) { shoal_hex(out, id, 8); }

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

static void add_ban(struct shoal_daemon *d, const uint8_t pk[32])
{
    uint64_t now = uv_now(&d->loop), until = now + d->cfg->ban_seconds * 1000;
    uint32_t slot = d->nbans;

    for (uint32_t i = 0; i < d->nbans; i++) {
        if (memcmp(d->bans[i].pk, pk, 32) == 0 || d->bans[i].until_ms <= now) {
            slot = i;
            break;
        }
    }
    if (slot == MAX_BANS)
        slot = 0; /* full: the oldest entries go first */
    memcpy(d->bans[slot].pk, pk, 32);
    d->bans[slot].until_ms = until;
    if (slot == d->nbans)
        d->nbans++;
}

static void on_ban(void *user, struct shoal_peer *p, const char *why)
{
    struct shoal_daemon *d = user;
    const uint8_t *pk = shoal_peer_session(p) ? shoal_session_peer_pk(shoal_peer_session(p)) : NULL;
    char hex[17] = "?";

    if (pk) {
        hex8(hex, pk);
        add_ban(d, pk);
    }
    LOG_W("banning node %s (peer %s) for %llu s: %s", hex, shoal_peer_name(p),
          (unsigned long long)d->cfg->ban_seconds, why);
    shoal_peer_bye(p, "banned: sent a chunk that fails its hash");
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

static bool all_pulls_complete(struct shoal_daemon *d)
{
    for (uint32_t i = 0; i < d->npulls; i++) {
        if (!d->pulls[i].swarm || !shoal_swarm_complete(d->pulls[i].swarm))
            return false;
    }
    return true;
}

static void on_complete(void *user, struct shoal_swarm *s)
{
    struct shoal_daemon *d = user;
    if (d->cfg->exit_when_complete && d->npulls > 0 && all_pulls_complete(d)) {
        LOG_I("every pulled release is complete; exiting as asked");
        shoal_daemon_stop(d, 0);
    }
}

/* Opens release |m| (taken) and adds it; returns the swarm or NULL. */
static struct shoal_swarm *add_release(struct shoal_daemon *d, struct shoal_manifest *m,
                                       const uint8_t *signed_mf, size_t len)
{
    struct shoal_swarm *s = NULL;
    char hex[17];

    hex8(hex, shoal_manifest_id(m));
    if (d->nswarms >= MAX_SWARMS) {
        LOG_E("release %s: too many releases open (%d)", hex, MAX_SWARMS);
        shoal_manifest_free(m);
        return NULL;
    }
    if (shoal_swarm_new(&s, &d->scfg, &d->hooks, m, signed_mf, len) != 0)
        return NULL;
    d->swarms[d->nswarms++] = s;
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
    for (uint32_t i = 0; i < d->npeers; i++) {
        if (shoal_peer_ready(d->peers[i]))
            shoal_swarm_peer_ready(s, d->peers[i]);
    }
    if (shoal_swarm_complete(s))
        on_complete(d, s);
}

static void on_manifest_data(struct shoal_daemon *d, struct shoal_peer *p,
                             const struct shoal_msg_manifest *md)
{
    struct shoal_manifest *m = NULL;
    struct pull *pl = NULL;
    struct shoal_swarm *s;
    char hex[17];
    int rv;

    for (uint32_t i = 0; i < d->npulls; i++) {
        if (memcmp(d->pulls[i].id, md->manifest_id, 32) == 0 && !d->pulls[i].swarm)
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
        LOG_W("peer %s sent manifest %s that we refuse: %s", shoal_peer_name(p), hex,
              shoal_strerror(rv));
        shoal_manifest_free(m);
        return;
    }
    LOG_I("manifest %s received from peer %s, signature verified", hex, shoal_peer_name(p));
    s = add_release(d, m, md->signed_manifest.p, md->signed_manifest.len);
    if (!s)
        return;
    pl->swarm = s;
    start_release(d, s);
}

static void want_manifests(struct shoal_daemon *d, struct shoal_peer *p)
{
    struct shoal_msg m;
    for (uint32_t i = 0; i < d->npulls; i++) {
        if (d->pulls[i].swarm)
            continue;
        memset(&m, 0, sizeof m);
        m.type = SHOAL_MSG_WANT_MANIFEST;
        memcpy(m.u.want_manifest.manifest_id, d->pulls[i].id, 32);
        (void)shoal_peer_send(p, &m);
    }
}

/* ---- peers ---- */

static const char *peer_on_hello(struct shoal_peer *p, void *user)
{
    struct shoal_daemon *d = user;
    const uint8_t *pk = shoal_session_peer_pk(shoal_peer_session(p));

    if (memcmp(pk, d->pk.pk, 32) == 0)
        return "connected to ourselves";
    if (is_banned(d, pk))
        return "node is banned here";
    return NULL;
}

static void peer_on_ready(struct shoal_peer *p, void *user)
{
    struct shoal_daemon *d = user;
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
            memset(&r, 0, sizeof r);
            r.type = SHOAL_MSG_MANIFEST_DATA;
            memcpy(r.u.manifest.manifest_id, m->u.want_manifest.manifest_id, 32);
            r.u.manifest.signed_manifest.p = shoal_swarm_signed(s, &mlen);
            r.u.manifest.signed_manifest.len = (uint32_t)mlen;
            if (shoal_peer_send(p, &r) != 0)
                LOG_W("peer %s: cannot send manifest", shoal_peer_name(p));
        }
        return;
    case SHOAL_MSG_MANIFEST_DATA:
        on_manifest_data(d, p, &m->u.manifest);
        return;
    case SHOAL_MSG_PONG:
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

    LOG_I("peer %s closed: %s", shoal_peer_name(p), reason);
    for (uint32_t i = 0; i < d->nswarms; i++)
        shoal_swarm_peer_gone(d->swarms[i], p);
    for (uint32_t i = 0; i < d->npeers; i++) {
        if (d->peers[i] == p) {
            d->peers[i] = d->peers[--d->npeers];
            break;
        }
    }
    for (size_t i = 0; i < d->cfg->peers.n; i++) {
        if (d->static_conn[i] == p)
            d->static_conn[i] = NULL;
    }
}

static uint32_t peer_limit(const struct shoal_daemon *d)
{
    uint64_t n = d->cfg->max_peers ? d->cfg->max_peers : 64;
    return n > MAX_PEERS_HARD ? MAX_PEERS_HARD : (uint32_t)n;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct shoal_daemon *d = server->data;
    struct shoal_peer *p = NULL;

    if (status < 0 || d->stopping)
        return;
    if (shoal_peer_accept(&p, &d->pctx, &d->pcb, d, server) != 0)
        return;
    if (d->npeers >= peer_limit(d)) {
        LOG_W("peer %s refused: connection limit (%u) reached", shoal_peer_name(p),
              peer_limit(d));
        /* Still tracked until its close callback runs. */
        shoal_peer_close(p, "connection limit reached", false);
        return;
    }
    d->peers[d->npeers++] = p;
}

static void dial_static(struct shoal_daemon *d)
{
    for (size_t i = 0; i < d->cfg->peers.n && !d->stopping; i++) {
        struct shoal_peer *p = NULL;
        if (d->static_conn[i] || d->npeers >= peer_limit(d))
            continue;
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

/* ---- shutdown ---- */

static void on_signal(uv_signal_t *h, int signum)
{
    struct shoal_daemon *d = h->data;
    LOG_I("signal %d: shutting down", signum);
    shoal_daemon_stop(d, 0);
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
    uv_close((uv_handle_t *)&d->redial, NULL);
    for (uint32_t i = 0; i < d->nswarms; i++)
        shoal_swarm_stop(d->swarms[i]);
    /* Copy: closing may not change the array now, but the close callbacks
     * do later; BYE flushes what each peer has queued. */
    for (uint32_t i = 0; i < d->npeers; i++)
        shoal_peer_bye(d->peers[i], "shutting down");
}

/* ---- setup ---- */

static int load_identity(struct shoal_daemon *d)
{
    const struct shoal_config *c = d->cfg;
    struct shoal_cred cred;
    struct shoal_buf b;
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
    if (c->cred) {
        rv = shoal_cred_load(c->cred, &cred);
        if (rv != 0) {
            LOG_E("credential %s: %s", c->cred, shoal_strerror(rv));
            return rv;
        }
        if (memcmp(cred.node_pk, d->pk.pk, 32) != 0)
            LOG_W("credential %s was issued for another node key: peers will refuse us",
                  c->cred);
        shoal_buf_init(&b, sizeof d->cred);
        rv = shoal_cred_encode(&cred, &b);
        if (rv == 0) {
            memcpy(d->cred, b.data, b.len);
            d->cred_len = b.len;
        }
        shoal_buf_free(&b);
        if (rv != 0)
            return rv;
    } else {
        LOG_W("no credential (cred): peers will refuse this node");
    }
    rv = shoal_keyset_new(&d->cluster_keys);
    if (rv == 0)
        rv = shoal_keyset_new(&d->publishers);
    if (rv != 0)
        return rv;
    for (size_t i = 0; i < c->cluster_keys.n; i++) {
        rv = shoal_keyset_load_file(d->cluster_keys, c->cluster_keys.v[i]);
        if (rv != 0) {
            LOG_E("cluster keys %s: %s", c->cluster_keys.v[i], shoal_strerror(rv));
            return rv;
        }
    }
    if (shoal_keyset_count(d->cluster_keys) == 0)
        LOG_W("no cluster keys (cluster-keys): every peer will be refused");
    if (c->publisher_keys) {
        rv = shoal_keyset_load_file(d->publishers, c->publisher_keys);
        if (rv != 0) {
            LOG_E("publisher keys %s: %s", c->publisher_keys, shoal_strerror(rv));
            return rv;
        }
    } else {
        LOG_W("no publisher keys (publisher-keys): no manifest will be accepted");
    }
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
        s = find_swarm(d, shoal_manifest_id(m)) ? NULL : add_release(d, m, data, len);
        free(data);
        if (!s) {
            rv = -EINVAL;
            break;
        }
        if (c->seed_dir && !shoal_swarm_complete(s)) {
            rv = shoal_swarm_import_dir(s, c->seed_dir, &imported);
            LOG_I("imported %u chunks from %s%s", imported, c->seed_dir,
                  shoal_swarm_complete(s) ? ": release complete" : "");
            if (rv != 0)
                LOG_E("import from %s failed: %s", c->seed_dir, shoal_strerror(rv));
        }
    }
    for (size_t i = 0; i < c->pulls.n && rv == 0; i++) {
        struct pull *pl = &d->pulls[d->npulls];
        if (shoal_unhex(pl->id, 32, c->pulls.v[i], strlen(c->pulls.v[i])) != 0) {
            LOG_E("pull %s: not a 64-hex manifest id", c->pulls.v[i]);
            rv = -EINVAL;
            break;
        }
        pl->swarm = find_swarm(d, pl->id);
        d->npulls++;
    }
    return rv;
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
        uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof host);
        snprintf(d->listen_addr, sizeof d->listen_addr, "%s:%u", host,
                 ntohs(((struct sockaddr_in *)&ss)->sin_port));
    } else {
        uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof host);
        snprintf(d->listen_addr, sizeof d->listen_addr, "[%s]:%u", host,
                 ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    }
    return 0;
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
    rv = uv_loop_init(&d->loop);
    if (rv != 0) {
        free(d);
        return rv;
    }
    rv = shoal_hash_init() == 0 ? load_identity(d) : -EIO;
    if (rv != 0)
        goto fail;
    rv = shoal_hf_cache_dir(d->cache_dir, sizeof d->cache_dir, cfg->cache_dir);
    if (rv != 0) {
        LOG_E("no cache directory: set cache-dir (or HF_HOME / HOME)");
        goto fail;
    }
    rv = start_listening(d);
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sigint);
    uv_timer_init(&d->loop, &d->redial);
    d->sigterm.data = d->sigint.data = d->redial.data = d;
    if (rv != 0)
        goto fail;

    d->scfg.loop = &d->loop;
    d->scfg.cache_dir = d->cache_dir;
    d->scfg.zone = cfg->zone ? cfg->zone : "";
    d->scfg.store_flags = cfg->verify_store ? SHOAL_STORE_VERIFY : 0;
    d->scfg.serve_per_peer = (uint32_t)cfg->serve_per_peer;
    d->scfg.request_timeout_ms = (uint32_t)cfg->request_timeout_ms;
    d->scfg.corrupt_uploads = cfg->test_corrupt_uploads;
    d->scfg.seed = cfg->seed;
    if (!d->scfg.seed)
        for (int i = 0; i < 8; i++)
            d->scfg.seed = d->scfg.seed << 8 | d->pk.pk[i];
    d->hooks.on_ban = on_ban;
    d->hooks.on_complete = on_complete;
    d->hooks.user = d;
    if (cfg->test_corrupt_uploads)
        LOG_W("test-corrupt-uploads is on: this node serves WRONG bytes (testing only)");

    d->pctx.loop = &d->loop;
    d->pctx.local.node_sk = &d->sk;
    d->pctx.local.cred = d->cred;
    d->pctx.local.cred_len = d->cred_len;
    d->pctx.local.zone = d->scfg.zone;
    d->pctx.local.listen_addr = cfg->advertise ? cfg->advertise : d->listen_addr;
    d->pctx.local.encrypt = !cfg->no_encrypt;
    d->pctx.local.allow_aesgcm = !cfg->no_aesgcm;
    d->pctx.local.max_frame = (uint32_t)(cfg->max_frame > SHOAL_FRAME_MAX_ABS
                                             ? SHOAL_FRAME_MAX_ABS
                                             : cfg->max_frame < SHOAL_FRAME_MAX_PREAUTH
                                                   ? SHOAL_FRAME_MAX_PREAUTH
                                                   : cfg->max_frame);
    d->pctx.cluster_keys = d->cluster_keys;
    d->pctx.handshake_timeout_ms = (uint32_t)cfg->handshake_timeout_ms;
    d->pcb.on_hello = peer_on_hello;
    d->pcb.on_ready = peer_on_ready;
    d->pcb.on_msg = peer_on_msg;
    d->pcb.on_close = peer_on_close;

    rv = open_manifests(d);
    if (rv != 0)
        goto fail;
    hex8(pkhex, d->pk.pk);
    LOG_I("shoald node %s zone '%s' listening on %s, cache %s, %s", pkhex, d->scfg.zone,
          d->listen_addr, d->cache_dir, cfg->no_encrypt ? "encryption off unless a peer asks"
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
    for (uint32_t i = 0; i < d->nswarms; i++)
        start_release(d, d->swarms[i]);
    dial_static(d);
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
        uv_walk(&d->loop, close_any, NULL);
    }
    /* Finishes close callbacks and worker jobs still queued. */
    uv_run(&d->loop, UV_RUN_DEFAULT);
    for (uint32_t i = 0; i < d->nswarms; i++)
        shoal_swarm_free(d->swarms[i]);
    if (uv_loop_close(&d->loop) != 0)
        LOG_W("event loop closed with handles still open");
    shoal_keyset_free(d->cluster_keys);
    shoal_keyset_free(d->publishers);
    sodium_memzero(&d->sk, sizeof d->sk);
    free(d);
}
