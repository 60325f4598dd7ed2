/* SPDX-License-Identifier: MIT */
/*
 * shoald wiring (see daemon.h, daemon_int.h): releases, opening,
 * checking and completing them, manifests from peers; start, run, stop.
 */
#include "daemon_int.h"

/* ---- releases ---- */

struct shoal_swarm *dmn_find_swarm(struct shoal_daemon *d, const uint8_t id[32])
{
    for (uint32_t i = 0; i < d->nswarms; i++) {
        if (memcmp(shoal_swarm_id(d->swarms[i]), id, 32) == 0)
            return d->swarms[i];
    }
    return NULL;
}

/* The open release "[datasets/]repo@commit" names, or NULL. */
struct shoal_swarm *dmn_find_swarm_named(struct shoal_daemon *d, const char *release)
{
    for (uint32_t i = 0; i < d->nswarms; i++) {
        if (shoal_manifest_named(shoal_swarm_manifest(d->swarms[i]), release))
            return d->swarms[i];
    }
    return NULL;
}

/* The swarms[] slot of |s|, or UINT32_MAX. */
uint32_t dmn_swarm_slot(const struct shoal_daemon *d, const struct shoal_swarm *s)
{
    for (uint32_t i = 0; i < d->nswarms; i++) {
        if (d->swarms[i] == s)
            return i;
    }
    return UINT32_MAX;
}

struct pull *dmn_find_pull_serial(struct shoal_daemon *d, uint64_t serial)
{
    for (uint32_t i = 0; i < d->npulls; i++) {
        if (d->pulls[i].serial == serial)
            return &d->pulls[i];
    }
    return NULL;
}

/* The next free pull slot, cleared and numbered; the caller counts it in
 * (d->npulls++) once it is filled. */
struct pull *dmn_new_pull(struct shoal_daemon *d)
{
    struct pull *pl = &d->pulls[d->npulls];

    memset(pl, 0, sizeof *pl);
    pl->owner = d;
    pl->serial = ++d->next_serial;
    return pl;
}

/* Takes pulls[i] out of the table, moving the pulls after it: pointers
 * into d->pulls go stale (callers keep serials). */
void dmn_forget_pull(struct shoal_daemon *d, uint32_t i)
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


/* Writes the open releases to the state file. Called whenever the set (or
 * what the file says of a release: complete, its branch) changes; a
 * failure is logged and tried again at the next change. */
void dmn_save_state(struct shoal_daemon *d)
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
        e->rollout = dmn_in_rollout(d, e->id);
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
            d->slot[dmn_swarm_slot(d, d->pulls[i].swarm)].checking)
            return false;
    }
    for (uint32_t i = 0; i < d->nheld; i++) {
        struct shoal_swarm *s = dmn_find_swarm(d, d->held[i]);
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
    dmn_save_state(d);
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


/* Marks open release |s| as used now (see struct slot). */
void dmn_touch_swarm(struct shoal_daemon *d, const struct shoal_swarm *s)
{
    uint32_t k = dmn_swarm_slot(d, s);
    if (k != UINT32_MAX)
        d->slot[k].used_ms = uv_now(&d->loop);
}

/* A release uploading since the last look counts as used: peers still
 * want it. Called every discovery tick. */
void dmn_note_uploads(struct shoal_daemon *d)
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

bool dmn_in_rollout(const struct shoal_daemon *d, const uint8_t id[32])
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
    dmn_note_uploads(d);
    for (uint32_t i = 0; i < d->nswarms; i++) {
        const struct shoal_swarm *s = d->swarms[i];
        /* Not one a loader is still receiving: its used_ms says when it
         * asked, not that it is done (a slow loader was cut off). */
        if (!shoal_swarm_complete(s) || dmn_in_rollout(d, shoal_swarm_id(s)) ||
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
    dmn_hex8(hex, shoal_swarm_id(v));
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
            dmn_forget_pull(d, i);
            continue;
        }
        i++;
    }
    dmn_remove_swarm(d, v, why);
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
        if (dmn_in_rollout(d, shoal_swarm_id(o)))
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
bool dmn_pull_room(struct shoal_daemon *d)
{
    for (uint32_t i = 0; d->npulls >= SHOAL_CONFIG_LIST_MAX && !d->cfg->exit_when_complete &&
                         i < d->npulls;) {
        const struct pull *p = &d->pulls[i];
        if (p->swarm && shoal_swarm_complete(p->swarm)) {
            dmn_forget_pull(d, i);
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
struct shoal_swarm *dmn_add_release(struct shoal_daemon *d, struct shoal_manifest *m,
                                    const uint8_t *signed_mf, size_t len, const char *branch,
                                    bool may_close, int *err, char *why, size_t whylen)
{
    struct shoal_swarm *s = NULL;
    char hex[17];

    dmn_hex8(hex, shoal_manifest_id(m));
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
    dmn_save_state(d);
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
        dmn_discover(d);
    }
    LOG_I("release %s: %s@%s, %u files, %u chunks, %llu bytes", hex,
          shoal_manifest_repo_id(shoal_swarm_manifest(s)),
          shoal_manifest_commit(shoal_swarm_manifest(s)),
          shoal_manifest_nfiles(shoal_swarm_manifest(s)),
          shoal_manifest_nchunks(shoal_swarm_manifest(s)),
          (unsigned long long)shoal_manifest_total_size(shoal_swarm_manifest(s)));
    return s;
}

void dmn_start_release(struct shoal_daemon *d, struct shoal_swarm *s)
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


/* Wakes when the first failed pull's back-off ends: asking again must not
 * wait for a peer to connect or for someone to run `shoal pull`. */
void dmn_arm_retry(struct shoal_daemon *d)
{
    uint64_t now = uv_now(&d->loop), next = UINT64_MAX;

    for (uint32_t i = 0; i < d->npulls; i++) {
        const struct pull *pl = &d->pulls[i];
        if (pl->failed && pl->retry_ms > now && pl->retry_ms < next)
            next = pl->retry_ms;
    }
    if (next != UINT64_MAX && !d->stopping)
        uv_timer_start(&d->retry, dmn_on_retry, next - now, 0);
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
bool dmn_pull_may_ask(const struct shoal_daemon *d, const struct pull *pl)
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
void dmn_utf8_cut(char *s)
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
void dmn_pull_failed(struct shoal_daemon *d, struct pull *pl, const char *name, int err,
                     const char *why)
{
    if (!pl->name[0])
        snprintf(pl->name, sizeof pl->name, "%s", name);
    pl->failed = true;
    pl->err = err ? err : -EIO;
    snprintf(pl->why, sizeof pl->why, "%s", why[0] ? why : shoal_strerror(pl->err));
    dmn_utf8_cut(pl->why);
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
    dmn_arm_retry(d);
}


/* Whether release |s| is complete in the cache, so that a pull finding it
 * so checks its files first (start_check): deleted while it was open
 * (huggingface-cli delete-cache removes the snapshot, its blobs and its
 * refs), the store still holds the deleted files open, and the release
 * would go on saying complete (and serving them) with nothing left in the
 * cache. */
bool dmn_needs_check(const struct shoal_daemon *d, const struct shoal_swarm *s)
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
void dmn_start_check(struct shoal_daemon *d, struct shoal_swarm *s, const char *branch)
{
    uint32_t k = dmn_swarm_slot(d, s);

    if (k == UINT32_MAX)
        return;
    if (d->slot[k].checking) {
        if (branch && branch[0] && !d->slot[k].check_more) {
            d->slot[k].check_more = true;
            snprintf(d->slot[k].check_next, sizeof d->slot[k].check_next, "%s", branch);
        }
        return;
    }
    /* Before: without a worker job check_done runs within the call. */
    d->slot[k].checking = true;
    if (shoal_swarm_check_cache(s, branch && branch[0] ? branch : NULL, check_done, d) != 0)
        return; /* checked already, answered (|s| may be gone) */
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
    uint32_t k = dmn_swarm_slot(d, s);
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
    dmn_hex8(hex, shoal_swarm_id(s));
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
    dmn_remove_swarm(d, s, "its files were deleted from the cache: it is opened again to fetch "
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
    uint32_t k = dmn_swarm_slot(d, s);
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
                    dmn_pull_failed(d, &d->pulls[i], d->pulls[i].name, grv, why);
                }
            }
            if (!asked[0] || !dmn_pull_room(d))
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
        if (!pl && asked[0] && dmn_pull_room(d)) {
            pl = dmn_new_pull(d);
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
                dmn_pull_failed(d, pl, asked, grv, why);
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
                dmn_pull_failed(d, &d->pulls[i], d->pulls[i].name, ref_rv, why);
            }
        }
    }
    /* Loaders waiting for a branch name get it now, its ref written. */
    for (uint32_t i = 0; i < d->npulls; i++) {
        if (d->pulls[i].swarm == s && d->pulls[i].ref[0])
            shoal_loader_srv_release_named(d->loader, s, d->pulls[i].asked);
    }
    if (more)
        dmn_start_check(d, s, next);
    else if (shoal_swarm_complete(s))
        on_complete(d, s);
}

/* Opens release |r| again (reopen_gone), its old swarm freed: the pulls
 * waiting for it are bound to the new one, or fail with why it did not
 * open. */

static void reopen_now(struct shoal_daemon *d, const struct reopen *r)
{
    struct shoal_manifest *m = NULL;
    struct shoal_swarm *s = dmn_find_swarm(d, r->id);
    char why[SHOAL_CTL_REASON_MAX + 1] = "", hex[65];
    bool fresh = false;
    int rv = 0;

    if (!s) {
        rv = shoal_manifest_parse(&m, r->mf, r->len, d->publishers, NULL);
        /* Asked for by a pull, as a fresh one would be: it may close a
         * complete release nobody needs, for room. */
        if (rv == 0)
            s = dmn_add_release(d, m, r->mf, r->len, r->branch[0] ? r->branch : NULL, true, &rv,
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
            dmn_pull_failed(d, pl, hex, rv, why);
        }
    }
    if (fresh)
        dmn_start_release(d, s);
}

/* Pull |pl| names a branch or tag (|ref|) and has just been bound to
 * |s|, a release open already: refs/<ref> is still written, and loaders
 * waiting for the name get its files (both happen at open otherwise). */
static void follow_branch(struct shoal_daemon *d, const struct pull *pl, struct shoal_swarm *s)
{
    int rv;

    if (!pl->ref[0])
        return;
    uint32_t k = dmn_swarm_slot(d, s);

    if (k != UINT32_MAX && strcmp(d->slot[k].branch, pl->ref) != 0) {
        snprintf(d->slot[k].branch, sizeof d->slot[0].branch, "%.*s",
                 (int)SHOAL_STATE_BRANCH_MAX, pl->ref);
        dmn_save_state(d);
    }
    /* Complete: the ref (and the loaders) wait for the check of its files
     * (start_check), which writes it. */
    if (dmn_needs_check(d, s)) {
        dmn_start_check(d, s, pl->ref);
        return;
    }
    if ((rv = shoal_swarm_set_branch(s, pl->ref)) != 0)
        LOG_W("pull %s: writing refs/%s: %s", pl->asked, pl->ref, shoal_strerror(rv));
    shoal_loader_srv_release_named(d->loader, s, pl->asked);
}

/* A tracker rollout of |s| (open here) names branch |ref| (shoal rollout
 * --ref): refs/<ref> gets its commit once it is complete, as for `shoal
 * pull ORG/NAME@<ref>`, so offline loaders asking for the branch load what
 * the fleet rolled out. Acts only when the release's branch changes: the
 * tracker repeats the rollout at every announce. */
void dmn_rollout_ref(struct shoal_daemon *d, struct shoal_swarm *s, const char *ref)
{
    int rv;
    uint32_t k = dmn_swarm_slot(d, s);

    if (k == UINT32_MAX || strcmp(d->slot[k].branch, ref) == 0)
        return;
    if (!shoal_hf_branch_ok(ref) || strlen(ref) > SHOAL_STATE_BRANCH_MAX) {
        LOG_W("rollout names branch '%s', which this node cannot write as refs/<branch>: "
              "ignored", ref);
        return;
    }
    snprintf(d->slot[k].branch, sizeof d->slot[0].branch, "%s", ref);
    dmn_save_state(d);
    LOG_I("release %s: a rollout moves refs/%s to it (written once it is complete)",
          shoal_manifest_commit(shoal_swarm_manifest(s)), ref);
    if (dmn_needs_check(d, s)) {
        dmn_start_check(d, s, ref);
        return;
    }
    if ((rv = shoal_swarm_set_branch(s, ref)) != 0)
        LOG_W("rollout: writing refs/%s: %s", ref, shoal_strerror(rv));
}

/* Pull |pl| found release |s| open here: bound to it. A complete one has
 * its files checked first (start_check; follow_branch starts it for a
 * branch), and counts as complete once they are found in place. */
void dmn_bind_open(struct shoal_daemon *d, struct pull *pl, struct shoal_swarm *s)
{
    pl->swarm = s;
    pl->failed = false;
    if (dmn_needs_check(d, s)) {
        if (pl->ref[0])
            follow_branch(d, pl, s);
        else
            dmn_start_check(d, s, NULL);
        return;
    }
    follow_branch(d, pl, s);
    if (shoal_swarm_complete(s))
        on_complete(d, s);
}

void dmn_on_manifest_data(struct shoal_daemon *d, struct shoal_peer *p,
                          const struct shoal_msg_manifest *md)
{
    struct shoal_manifest *m = NULL;
    struct pull *pl = NULL;
    struct shoal_swarm *s;
    char hex[17], why[sizeof pl->why], name[SHOAL_MSG_REPO_MAX + 48];
    int rv;

    for (uint32_t i = 0; i < d->npulls; i++) {
        if (memcmp(d->pulls[i].id, md->manifest_id, 32) == 0 && !d->pulls[i].swarm &&
            dmn_pull_may_ask(d, &d->pulls[i]))
            pl = &d->pulls[i];
    }
    if (!pl)
        return; /* not asked for, or already have it */
    dmn_hex8(hex, md->manifest_id);
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
    s = dmn_add_release(d, m, md->signed_manifest.p, md->signed_manifest.len,
                        pl->ref[0] ? pl->ref : NULL, true, &rv, why, sizeof why);
    /* Opening may have closed another release, and the pulls that led to
     * it: ours is still there (it had no release), maybe moved. */
    pl = dmn_find_pull_serial(d, serial);
    if (!pl)
        return; /* cannot happen: it had no release, so make_room kept it */
    if (!s) {
        dmn_pull_failed(d, pl, name, rv, why);
        return;
    }
    pl->swarm = s;
    pl->failed = false;
    dmn_start_release(d, s);
}

void dmn_want_manifests(struct shoal_daemon *d, struct shoal_peer *p)
{
    struct shoal_msg m;
    for (uint32_t i = 0; i < d->npulls; i++) {
        if (d->pulls[i].swarm || d->pulls[i].by_name || /* by_name: the tracker resolves it */
            !dmn_pull_may_ask(d, &d->pulls[i]))
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
void dmn_pump_manifests(struct shoal_daemon *d)
{
    struct shoal_mfq_req q;

    while (!d->stopping && shoal_mfq_pop(d->mfq, uv_now(&d->loop), &q)) {
        struct shoal_peer *p = peer_by_id(d, q.peer);
        struct shoal_swarm *s = dmn_find_swarm(d, q.id);
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
    dmn_pump_manifests(d);
}

void dmn_want_manifest(struct shoal_daemon *d, struct shoal_peer *p, const uint8_t id[32],
                       size_t len)
{
    int rv = shoal_mfq_push(d->mfq, shoal_peer_id(p), id, len);

    if (rv != 0 && rv != SHOAL_EEXIST) {
        LOG_W("peer %s: cannot queue manifest: %s", shoal_peer_name(p), shoal_strerror(rv));
        return;
    }
    dmn_pump_manifests(d);
    if (shoal_mfq_waiting(d->mfq) > 0)
        LOG_D("peer %s: manifest answer waits its turn (%u waiting, budget %llu bytes)",
              shoal_peer_name(p), shoal_mfq_waiting(d->mfq),
              (unsigned long long)d->cfg->manifest_budget);
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
void dmn_remove_pull(struct shoal_daemon *d, struct pull *pl, const char *why)
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
    dmn_forget_pull(d, i);
}

/* Takes open release |s| out of service: loaders watching it get |why|,
 * peers get CANCELs for what we asked of them (and REJECT unknown for
 * what they ask next), the trackers stop hearing of it at the next
 * announce; the swarm is freed by the reaper once nothing of it runs. */
void dmn_remove_swarm(struct shoal_daemon *d, struct shoal_swarm *s, const char *why)
{
    uint32_t k = dmn_swarm_slot(d, s);

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
void dmn_remember_gone(struct shoal_daemon *d, const char *asked, const char *why, int err)
{
    struct gone_pull *g;

    if (!asked[0] || strlen(asked) >= sizeof g->asked)
        return;
    g = &d->gone[d->gone_next++ % (sizeof d->gone / sizeof d->gone[0])];
    snprintf(g->asked, sizeof g->asked, "%s", asked);
    snprintf(g->why, sizeof g->why, "%s", why);
    g->err = err;
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
    dmn_stop_trackers(d);
    shoal_ctl_close(d->ctl);
    for (uint32_t i = 0; i < d->nswarms; i++)
        shoal_swarm_stop(d->swarms[i]);
    /* Copy: closing may not change the array now, but the close callbacks
     * do later; BYE flushes what each peer has queued. */
    for (uint32_t i = 0; i < d->npeers; i++)
        shoal_peer_bye(d->peers[i], "shutting down");
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
    if (dmn_check_ranges(cfg) != 0) {
        free(d);
        return -EINVAL;
    }
    dmn_raise_nofile();
    rv = uv_loop_init(&d->loop);
    if (rv != 0) {
        free(d);
        return rv;
    }
    uv_timer_init(&d->loop, &d->cred_timer);
    d->cred_timer.data = d;
    uv_timer_init(&d->loop, &d->deny_timer);
    d->deny_timer.data = d;
    rv = shoal_hash_init() == 0 ? dmn_load_identity(d) : -EIO;
    if (rv == 0)
        rv = dmn_load_deny(d);
    if (rv != 0)
        goto fail;
    rv = shoal_hf_cache_dir(d->cache_dir, sizeof d->cache_dir, cfg->cache_dir);
    if (rv != 0) {
        LOG_E("no cache directory: set cache-dir (or HF_HOME / HOME)");
        goto fail;
    }
    rv = dmn_cache_group(d);
    if (rv != 0)
        goto fail;
    rv = dmn_lock_cache(d);
    if (rv != 0)
        goto fail;
    rv = dmn_start_listening(d);
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
    d->hooks.on_file = dmn_loader_on_file;
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
    d->hooks.on_ban = dmn_on_ban;
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
    d->pcb.before_hello = dmn_peer_before_hello;
    d->pcb.on_hello = dmn_peer_on_hello;
    d->pcb.on_ready = dmn_peer_on_ready;
    d->pcb.on_msg = dmn_peer_on_msg;
    d->pcb.on_close = dmn_peer_on_close;
    d->pcb.on_drain = dmn_peer_on_drain;
    /* one request per peer and release at most */
    rv = shoal_mfq_new(&d->mfq, d->cfg->manifest_budget, MAX_PEERS_HARD * MAX_SWARMS);
    if (rv == 0)
        rv = shoal_srclimit_new(&d->hello_budget, (uint32_t)cfg->hello_rate,
                                (uint32_t)cfg->hello_rate * 2);
    if (rv == 0)
        rv = shoal_banlist_new(&d->bans, MAX_BANS);
    if (rv != 0)
        goto fail;

    rv = dmn_setup_trackers(d);
    if (rv == 0)
        dmn_warn_loopback_announce(d);
    if (rv == 0)
        rv = dmn_open_manifests(d);
    if (rv == 0)
        rv = dmn_reopen_state(d);
    if (rv == 0)
        rv = dmn_start_loader(d);
    if (rv == 0)
        rv = dmn_start_ctl(d);
    if (rv != 0)
        goto fail;
    dmn_hex8(pkhex, d->pk.pk);
    LOG_I("shoald node %s zone '%s' listening on %s, %s%s, %s", pkhex, d->scfg.zone,
          d->listen_addr, (d->scfg.store_flags & SHOAL_STORE_MEMORY) ? "store " : "cache ",
          (d->scfg.store_flags & SHOAL_STORE_MEMORY) ? "in memory" : d->cache_dir,
          cfg->no_encrypt ? "encryption off unless a peer asks" : "encrypted sessions");
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
    dmn_on_cred_timer(&d->cred_timer); /* warns now if the end is near */
    if (d->deny)
        uv_timer_start(&d->deny_timer, dmn_on_deny_timer, DENY_CHECK_MS, DENY_CHECK_MS);
    for (uint32_t i = 0; i < d->nswarms; i++)
        dmn_start_release(d, d->swarms[i]);
    dmn_dial_static(d);
    dmn_start_trackers(d);
    if (d->cfg->peers.n)
        uv_timer_start(&d->redial, dmn_on_redial, d->cfg->reconnect_ms, d->cfg->reconnect_ms);
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
        dmn_stop_trackers(d);
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
    shoal_banlist_free(d->bans);
    if (d->cache_locked)
        close(d->cache_lock); /* the next daemon on this cache may start */
    sodium_memzero(&d->sk, sizeof d->sk);
    free(d);
}
