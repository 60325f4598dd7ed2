/* SPDX-License-Identifier: MIT */
/*
 * Pulls by name (daemon_int.h): `shoal pull`, the configuration and
 * rollouts ask for a release; its name is checked, a branch resolved on the
 * Hub, and a failed pull retried.
 */
#include "daemon_int.h"

/* The open release and/or the pending pull that |release| (a 64-hex
 * manifest id or "org/name@commit") names; either may come back NULL. */
void dmn_ctl_match(struct shoal_daemon *d, const char *release, struct shoal_swarm **sw,
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
        *sw = dmn_find_swarm(d, id);
    } else if (*pl && (*pl)->swarm) {
        *sw = (*pl)->swarm;
    } else {
        *sw = dmn_find_swarm_named(d, release);
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
    dmn_utf8_cut(g->why);
    snprintf(g->asked, sizeof g->asked, "%s", asked);
    g->err = status;
    LOG_E("pull dropped: %s", g->why);
    dmn_remove_pull(d, pl, g->why);
}

/* The Hub's answer for pull |user|'s branch or tag. */
static void on_resolved(void *user, int status, struct shoal_hub_release *rel, const char *msg)
{
    struct resolve_ctx *rc = user;
    struct shoal_daemon *d = rc->d;
    struct pull *pl = dmn_find_pull_serial(d, rc->serial);

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
        dmn_pull_failed(d, pl, pl->asked, status, msg ? msg : shoal_strerror(status));
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
    struct shoal_swarm *s = dmn_find_swarm_named(d, pl->name);
    if (s) {
        /* A complete one is checked first: no ref is written until its
         * files are found in place (or fetched again). */
        memcpy(pl->id, shoal_swarm_id(s), 32);
        pl->by_name = false;
        dmn_bind_open(d, pl, s);
        return;
    }
    if (d->trk)
        dmn_trk_want_manifests(d, true);
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
void dmn_on_retry(uv_timer_t *t)
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
                dmn_pull_failed(d, pl, pl->asked, rv, why);
        }
    }
    if (ask && !d->stopping)
        dmn_want_manifests_everywhere(d);
    dmn_arm_retry(d);
}

/* Starts pulling |release| (repo@rev or a manifest id) for |by| (named in
 * the log); |from_loader|: a loader asks (see struct pull, loader_only). */
int dmn_request_pull(struct shoal_daemon *d, const char *release, const char *by,
                     bool from_loader, char *why, size_t whylen)
{
    struct shoal_swarm *sw;
    struct pull *pl;
    size_t n = strlen(release);
    bool by_id, commit = true;
    enum shoal_repo_type type;
    int rv = 0;

    dmn_ctl_match(d, release, &sw, &pl);
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
            dmn_want_manifests_everywhere(d);
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
    if (sw && !d->stopping && dmn_needs_check(d, sw)) {
        /* Its files may have been deleted from the cache while it was
         * open: checked on a worker (the pull sees it pulling meanwhile);
         * with no pull bound to it, this one follows it under the name
         * asked if it has to be fetched again (check_done). */
        uint32_t k = dmn_swarm_slot(d, sw);
        bool bound = false;

        for (uint32_t i = 0; i < d->npulls && !bound; i++)
            bound = d->pulls[i].swarm == sw;
        if (k != UINT32_MAX && !bound && !d->slot[k].check_asked[0]) {
            snprintf(d->slot[k].check_asked, sizeof d->slot[k].check_asked, "%s", release);
            d->slot[k].check_loader = from_loader;
        }
        dmn_start_check(d, sw, NULL);
    }
    if (sw)
        dmn_touch_swarm(d, sw);
    if (sw || pl)
        return 0; /* here already, or under way */
    by_id = dmn_is_manifest_id(release);
    if (d->stopping) {
        snprintf(why, whylen, "shoald is shutting down");
        return SHOAL_EBUSY;
    }
    if (!dmn_pull_room(d)) {
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
    pl = dmn_new_pull(d);
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
    dmn_want_manifests_everywhere(d);
    return 0;
}

int dmn_ctl_pull(void *user, const char *release, char *why, size_t whylen)
{
    return dmn_request_pull(user, release, "the control socket", false, why, whylen);
}
