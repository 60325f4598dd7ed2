/* SPDX-License-Identifier: MIT */
/*
 * shoald and its trackers (daemon_int.h).
 */
#include "daemon_int.h"

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
/* Ask for more peers while a release has fewer than this many. */
#define WANT_PEERS 16u

/* Asks the trackers for the manifests of pulls that have none yet. */
void dmn_trk_want_manifests(struct shoal_daemon *d, bool now_anyway)
{
    uint64_t now = uv_now(&d->loop);

    for (uint32_t i = 0; i < d->npulls && d->trk; i++) {
        struct pull *pl = &d->pulls[i];
        if (pl->swarm || (!now_anyway && pl->asked_ms && now - pl->asked_ms < MANIFEST_RETRY_MS) ||
            !dmn_pull_may_ask(d, pl) || pl->unresolved)
            continue;
        if (shoal_trkconn_get_manifest(d->trk, pl->by_name ? NULL : pl->id, pl->name,
                                       pl->serial) == 0)
            pl->asked_ms = now;
    }
}

/* A pull was added or asked again: every ready peer and the trackers are
 * asked for the manifests still missing, now. */
void dmn_want_manifests_everywhere(struct shoal_daemon *d)
{
    for (uint32_t i = 0; i < d->npeers; i++) {
        if (shoal_peer_ready(d->peers[i]))
            dmn_want_manifests(d, d->peers[i]);
    }
    if (d->trk)
        dmn_trk_want_manifests(d, true);
}

void dmn_discover(struct shoal_daemon *d)
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
    dmn_trk_want_manifests(d, false);
    dmn_discover(d);
    dmn_note_uploads(d);
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
    dmn_trk_want_manifests(d, true);
    dmn_discover(d);
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
        struct shoal_swarm *s = dmn_find_swarm(d, ro->manifest_id);
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
            dmn_hex8(hex, ro->manifest_id);
            LOG_W("release %s: role from tracker %s not applied: %s", hex,
                  shoal_trkconn_addr(d->trk, idx), shoal_strerror(rv));
        }
    }

    for (uint32_t i = 0; i < r->count && !d->stopping; i++) {
        const struct shoal_msg_desired *w = &r->desired[i];
        struct shoal_swarm *open = dmn_find_swarm(d, w->manifest_id);
        bool known = open != NULL;
        char hex[17];

        /* The branch the rollout moves: set once the release is open
         * here (a later announce, for one pulled now). */
        if (open && w->has_ref) {
            char ref[SHOAL_MSG_REF_MAX + 1];
            memcpy(ref, w->ref.p, w->ref.len);
            ref[w->ref.len] = '\0';
            dmn_rollout_ref(d, open, ref);
        }

        for (uint32_t k = 0; k < d->npulls && !known; k++)
            known = !d->pulls[k].by_name && memcmp(d->pulls[k].id, w->manifest_id, 32) == 0;
        if (known)
            continue;
        dmn_hex8(hex, w->manifest_id);
        if (!dmn_pull_room(d)) {
            LOG_W("rollout of %.*s (%s) ignored: %d pulls under way already", (int)w->repo.len,
                  w->repo.p, hex, SHOAL_CONFIG_LIST_MAX);
            continue;
        }
        memcpy(dmn_new_pull(d)->id, w->manifest_id, 32);
        d->npulls++;
        added = true;
        LOG_I("rollout: tracker %s asks for %.*s (manifest %s); pulling it",
              shoal_trkconn_addr(d->trk, idx), (int)w->repo.len, w->repo.p, hex);
    }
    if (added)
        dmn_want_manifests_everywhere(d);
    /* Which open releases a rollout names may have changed: the file says
     * so for the next start (unchanged, nothing is written). */
    dmn_save_state(d);
}

static void trk_on_peers(void *user, uint32_t idx, const struct shoal_msg_peers *m)
{
    struct shoal_daemon *d = user;
    struct shoal_swarm *s = dmn_find_swarm(d, m->manifest_id);
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
            dmn_dial_node(d, pr->node_pk, addr);
        }
    }
}

static void trk_on_manifest(void *user, uint64_t tag, int status,
                            const struct shoal_msg_manifest *mm)
{
    struct shoal_daemon *d = user;
    struct pull *pl = dmn_find_pull_serial(d, tag);
    struct shoal_manifest *m = NULL;
    struct shoal_swarm *s;
    char hex[17], name[SHOAL_MSG_REPO_MAX + 48], why[sizeof pl->why];
    int rv;

    if (!pl || pl->swarm || d->stopping || !dmn_pull_may_ask(d, pl))
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
    dmn_hex8(hex, mm->manifest_id);
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
    s = dmn_find_swarm(d, pl->id);
    if (s) {
        shoal_manifest_free(m);
        dmn_bind_open(d, pl, s);
        return;
    }
    (void)shoal_manifest_name(m, name, sizeof name);
    uint64_t serial = pl->serial;
    s = dmn_add_release(d, m, mm->signed_manifest.p, mm->signed_manifest.len,
                        pl->ref[0] ? pl->ref : NULL, true, &rv, why, sizeof why);
    pl = dmn_find_pull_serial(d, serial); /* see on_manifest_data */
    if (!pl)
        return;
    if (!s) {
        dmn_pull_failed(d, pl, name, rv, why);
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
    dmn_start_release(d, s);
    if (pl->ref[0])
        shoal_loader_srv_release_named(d->loader, s, pl->asked);
    if (!d->stopping)
        dmn_discover(d);
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
        struct slot *sl = &d->slot[dmn_swarm_slot(d, s)];
        uint64_t now = uv_now(&d->loop);
        if (sl->reput_ms == 0 || now - sl->reput_ms >= RE_PUT_MS) {
            size_t len;
            const uint8_t *mf = shoal_swarm_signed(s, &len);
            char hex[17];
            dmn_hex8(hex, shoal_swarm_id(s));
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
    struct slot *sl = &d->slot[dmn_swarm_slot(d, s)];
    int arb = shoal_trkconn_arbiter(d->trk, shoal_swarm_id(s));
    if (arb >= 0 && (uint32_t)arb != sl->lease_trk && shoal_trkconn_ready_idx(d->trk, arb)) {
        /* Which tracker leases a release is a hash, not configuration
         * order: say which, and when it moves (a tracker went or came). */
        dmn_hex8(hex, shoal_swarm_id(s));
        LOG_I("release %s: origin leases from tracker %s (%u of %u ready; chosen by release)",
              hex, shoal_trkconn_addr(d->trk, (uint32_t)arb), shoal_trkconn_ready(d->trk),
              shoal_trkconn_count(d->trk));
        sl->lease_trk = (uint32_t)arb;
    }
    int rv = shoal_trkconn_lease(d->trk, shoal_swarm_id(s), count, hint, shoal_swarm_starved(s, d->cfg->starved_ms),
                                 sl->tag);
    if (rv == 0)
        return SHOAL_SWARM_LEASE_ASKED;
    if (rv == -EAGAIN)
        return SHOAL_SWARM_LEASE_LATER; /* its tracker is still logging in */
    if (shoal_trkconn_ready(d->trk) > 0 || now - d->trk_seen_ms < d->cfg->lease_fallback_ms)
        return SHOAL_SWARM_LEASE_LATER;
    if (!d->fallback_logged) {
        dmn_hex8(hex, shoal_swarm_id(s));
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
    int rv;
    char hex[17];

    if (!d->trk)
        return;
    rv = shoal_trkconn_lease_reclaim(d->trk, trk, shoal_swarm_id(s), first, count, left_ms);
    /* Not sent (the tracker's request queue is full): it may grant the
     * span to another node, and the origin then serves it twice. Rare
     * enough (hundreds of requests pending at a login) to say each time. */
    if (rv != 0 && rv != -ENOTCONN) {
        dmn_hex8(hex, shoal_swarm_id(s));
        LOG_W("release %s: could not re-claim our origin lease of chunks %u..%u from tracker "
              "%s (%s): it may be granted to another node too", hex, first, first + count - 1,
              shoal_trkconn_addr(d->trk, trk), shoal_strerror(rv));
    }
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
    case SHOAL_HUB_TOKEN_REREAD:
        if (ev->error[0])
            LOG_W("origin token file %s changed but cannot be read (%s): the token read "
                  "before is still sent", ev->host, ev->error);
        else
            LOG_I("origin token read again from %s: it changed on disk", ev->host);
        break;
    }
}

/* Creates the origin client and the tracker client (not started yet). */
int dmn_setup_trackers(struct shoal_daemon *d)
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
void dmn_warn_loopback_announce(struct shoal_daemon *d)
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

void dmn_start_trackers(struct shoal_daemon *d)
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
void dmn_stop_trackers(struct shoal_daemon *d)
{
    shoal_trkconn_stop(d->trk);
    /* The timer exists only once setup got that far (d is zeroed). */
    if (d->trk_timer.loop && !uv_is_closing((uv_handle_t *)&d->trk_timer))
        uv_close((uv_handle_t *)&d->trk_timer, NULL);
    d->scfg.hub = NULL;
    shoal_hub_free(d->hub);
    d->hub = NULL;
}
