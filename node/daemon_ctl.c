/* SPDX-License-Identifier: MIT */
/*
 * shoald's control socket (daemon_int.h): what `shoal status`, `peers`,
 * `metrics` and `drop` see and do.
 */
#include "daemon_int.h"

/* For a pull with no peer: how many nodes are banned here, when the
 * first of those bans ends and why the last was made ("" with none). */
static void banned_reason(struct shoal_daemon *d, char *out, size_t cap)
{
    uint64_t next;
    uint32_t n = shoal_banlist_active(d->bans, uv_now(&d->loop), &next);

    if (n == 0)
        return;
    snprintf(out, cap, "no peer: %u node%s banned here (the next ban ends in %llu s; the "
             "last: %s)", n, n == 1 ? "" : "s", (unsigned long long)((next + 999) / 1000),
             d->last_ban_why);
    dmn_utf8_cut(out);
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

/* What is wrong with the node itself, for `shoal status` (QA F4): its
 * releases look healthy while its credential has ended (every peer and
 * tracker refuses it) or no tracker answers; the log and metrics said so,
 * status did not. */
static uint32_t ctl_warnings(void *user, char (*v)[SHOAL_CTL_REASON_MAX + 1], uint32_t max)
{
    struct shoal_daemon *d = user;
    const struct shoal_config *c = d->cfg;
    uint64_t now = (uint64_t)time(NULL);
    char when[64], left[48];
    uint32_t n = 0;

    if (n < max && d->cred_expires && now >= d->cred_expires) {
        snprintf(v[n], sizeof v[n], "credential %s expired at %s (%s ago): peers and trackers "
                 "refuse this node; issue a new one (shoal cred issue --cluster-key "
                 "CLUSTER.key --node %s.pub --out %s) and restart shoald", c->cred,
                 dmn_fmt_utc(when, sizeof when, d->cred_expires),
                 dmn_fmt_span(left, sizeof left, now - d->cred_expires), c->node_key, c->cred);
        dmn_utf8_cut(v[n++]);
    } else if (n < max && d->cred_expires && d->cred_expires - now <= CRED_WARN_S) {
        snprintf(v[n], sizeof v[n], "credential %s expires at %s, in %s: then peers and "
                 "trackers refuse this node; issue a new one (shoal cred issue) and restart "
                 "shoald before then", c->cred, dmn_fmt_utc(when, sizeof when, d->cred_expires),
                 dmn_fmt_span(left, sizeof left, d->cred_expires - now));
        dmn_utf8_cut(v[n++]);
    }
    if (n < max && d->trk && shoal_trkconn_ready(d->trk) == 0) {
        uint64_t away = uv_now(&d->loop) - d->trk_seen_ms;
        uint32_t ntrk = shoal_trkconn_count(d->trk);
        const char *refused = NULL;
        /* A login or reconnect usually takes well under this. */
        for (uint32_t i = 0; !refused && i < ntrk; i++)
            refused = shoal_trkconn_refused(d->trk, i);
        if (refused || away >= TRACKER_QUIET_SHOW_MS) {
            int k = snprintf(v[n], sizeof v[n], "no tracker connected (%u configured) for %s: "
                             "no rollouts reach this node and origin leases are not shared",
                             ntrk, dmn_fmt_span(left, sizeof left, away / 1000));
            if (refused && k > 0 && (size_t)k < sizeof v[n])
                snprintf(v[n] + k, sizeof v[n] - (size_t)k, "; %s", refused);
            dmn_utf8_cut(v[n++]);
        }
    }
    return n;
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
    bool checking = d->slot[dmn_swarm_slot(d, sw)].checking;
    snprintf(r->branch, sizeof r->branch, "%s", d->slot[dmn_swarm_slot(d, sw)].branch);

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
    r->elapsed_ms = uv_now(&d->loop) - d->slot[dmn_swarm_slot(d, sw)].opened_ms;
    if (r->elapsed_ms == 0)
        r->elapsed_ms = 1; /* 0 says "unknown" */
    if (dmn_in_rollout(d, r->id))
        r->flags |= SHOAL_CTL_REL_ROLLOUT;
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
        dmn_utf8_cut(r->error);
    } else if (r->state == SHOAL_CTL_PULLING && *shoal_swarm_publish_error(sw)) {
        snprintf(r->error, sizeof r->error, "verified, but not yet in the cache: %s (trying "
                 "again)", shoal_swarm_publish_error(sw));
        dmn_utf8_cut(r->error); /* file names may be cut mid-character */
    } else if (r->state == SHOAL_CTL_PULLING && *shoal_swarm_origin_error(sw)) {
        snprintf(r->error, sizeof r->error, "%s", shoal_swarm_origin_error(sw));
        dmn_utf8_cut(r->error); /* it may name a file */
    } else if (r->state == SHOAL_CTL_PULLING &&
             shoal_hub_failing(d->hub, r->error, sizeof r->error)) {
        dmn_utf8_cut(r->error); /* the host may be an internationalised name */
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
        dmn_utf8_cut(r->error);
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
    /* A ref fits: it came after "org/name@" in at most 256 bytes. */
    snprintf(r->branch, sizeof r->branch, "%.*s", (int)(sizeof r->branch - 1), pl->ref);
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

    dmn_ctl_match(d, release, &sw, &pl);
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
    m->bans_active = shoal_banlist_active(d->bans, now, NULL);
    m->cred_expires_unix = d->cred_expires;
    m->now_unix = (uint64_t)time(NULL);
    m->trackers = d->trk ? shoal_trkconn_count(d->trk) : 0;
    m->trackers_connected = d->trk ? shoal_trkconn_ready(d->trk) : 0;
}

/* A drop of a release a tracker rollout names lasts until that tracker's
 * next answer (about a second): the reply says so, and what ends it, so
 * the operator does not read the drop as final (QA F1). */
static void rollout_note(struct shoal_daemon *d, const uint8_t id[32], const char *name,
                         char *out, size_t cap)
{
    const char *trk = NULL;
    for (uint32_t i = 0; i < d->nrollout_ids && !trk; i++) {
        if (memcmp(d->rollout_ids[i].id, id, 32) != 0)
            continue;
        uint32_t t = d->rollout_ids[i].trk;
        trk = t != ROLLOUT_FROM_STATE && d->trk && t < shoal_trkconn_count(d->trk)
                  ? shoal_trkconn_addr(d->trk, t)
                  : "";
    }
    if (!trk)
        return;
    if (trk[0])
        snprintf(out, cap, "a rollout on tracker %s names it: it comes back at that tracker's "
                 "next answer (within seconds); remove the rollout first (shoal rollout %s "
                 "--remove --tracker %s ...), then drop it again", trk, name, trk);
    else
        snprintf(out, cap, "a tracker rollout named it before shoald last started: it comes "
                 "back if a tracker still names it; remove the rollout first (shoal rollout "
                 "%s --remove), then drop it again", name);
    dmn_utf8_cut(out);
}

static int ctl_drop(void *user, const char *release, char *name, size_t namelen, char *dir,
                    size_t dirlen, char *note, size_t notelen, char *why, size_t whylen)
{
    struct shoal_daemon *d = user;
    struct shoal_swarm *sw;
    struct pull *pl;
    char reason[160], folder[SHOAL_HF_PATH_MAX], hex[17];

    uint64_t pl_serial;

    dmn_ctl_match(d, release, &sw, &pl);
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
    note[0] = '\0';
    if (sw) {
        const struct shoal_manifest *m = shoal_swarm_manifest(sw);
        (void)shoal_manifest_name(m, name, namelen);
        if (!(d->scfg.store_flags & SHOAL_STORE_MEMORY) &&
            shoal_hf_repo_folder(folder, sizeof folder, shoal_manifest_repo_type(m),
                                 shoal_manifest_repo_id(m)) == 0)
            snprintf(dir, dirlen, "%s/%s", d->abs_cache[0] ? d->abs_cache : d->cache_dir,
                     folder);
        dmn_hex8(hex, shoal_swarm_id(sw));
    } else {
        snprintf(name, namelen, "%s", pl->name[0] ? pl->name : release);
        snprintf(hex, sizeof hex, "-");
    }
    if (sw || !pl->by_name)
        rollout_note(d, sw ? shoal_swarm_id(sw) : pl->id, name, note, notelen);
    snprintf(reason, sizeof reason, "dropped on this node (shoal drop %s)", name);
    /* Every pull that leads to it goes: by id, by name, by branch. */
    for (uint32_t i = 0; i < d->npulls;) {
        struct pull *p = &d->pulls[i];
        if (p->serial == pl_serial || (sw && p->swarm == sw) ||
            (sw && !p->by_name && memcmp(p->id, shoal_swarm_id(sw), 32) == 0)) {
            dmn_remember_gone(d, p->asked, reason, SHOAL_ENOTFOUND);
            dmn_remove_pull(d, p, reason);
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
        dmn_remember_gone(d, name, reason, SHOAL_ENOTFOUND);
        dmn_remember_gone(d, full, reason, SHOAL_ENOTFOUND);
        shoal_swarm_discard_partials(sw, &nparts, &pbytes);
        dmn_remove_swarm(d, sw, reason);
        /* Its kept manifest serves other releases' dedup only while a
         * snapshot of its commit is left (with none, e.g. dropped before
         * any file was published, it would only be parsed at every
         * release open, for ever: QA F2). The start-up sweep catches
         * snapshots deleted later. */
        char mfname[64 + sizeof ".manifest"];
        snprintf(mfname, sizeof mfname, "%s.manifest", full);
        if (dir[0] && shoal_store_manifest_orphaned(d->abs_cache[0] ? d->abs_cache : d->cache_dir,
                                                    folder, mfname)) {
            char mpath[SHOAL_HF_PATH_MAX + PATH_MAX];
            snprintf(mpath, sizeof mpath, "%s/.shoal/%s", dir, mfname);
            if (unlink(mpath) == 0)
                LOG_I("release %s: its kept manifest %s removed (no snapshot of its commit is "
                      "left)", name, mpath);
        }
    }
    char psize[32];
    shoal_fmt_bytes(psize, sizeof psize, pbytes);
    LOG_I("release %s (%s) dropped by the control socket: no longer fetched or served, "
          "not reopened at start; its complete files stay in the cache, %u unfinished "
          "(%s) are removed%s%s", name, hex, nparts, psize, note[0] ? "; but " : "", note);
    dmn_save_state(d);
    return 0;
}

/* Rate caps into the peer context, and the control socket. A socket at
 * the default path that another daemon holds is not fatal (the CLI then
 * talks to that one); one the operator named is. */
int dmn_start_ctl(struct shoal_daemon *d)
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
    d->ctl_ops.pull = dmn_ctl_pull;
    d->ctl_ops.release = ctl_release;
    d->ctl_ops.releases = ctl_releases;
    d->ctl_ops.warnings = ctl_warnings;
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
