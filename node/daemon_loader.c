/* SPDX-License-Identifier: MIT */
/*
 * shoald and its loaders (daemon_int.h): a loader's wish for a file opens or
 * pulls its release, and pulls only loaders asked for go when they leave.
 */
#include "daemon_int.h"

void dmn_loader_on_file(void *user, struct shoal_swarm *s, uint32_t file, int status)
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
        s = dmn_find_swarm(d, id);
    else
        s = dmn_find_swarm_named(d, release);
    if (s)
        dmn_touch_swarm(d, s);
    return s;
}

/* The path `shoal pull` takes: a manifest id is asked of the peers and the
 * trackers, a name is resolved through the trackers (trk_on_manifest
 * reports a name no tracker knows with shoal_loader_srv_release_failed);
 * the release opens on arrival. */

/* A loader asked for a release this node does not hold. */
static int loader_pull(void *user, const char *release, char *why, size_t whylen)
{
    struct shoal_daemon *d = user;

    if (!dmn_is_manifest_id(release) &&
        strchr(release, '@') && !d->trk) {
        snprintf(why, whylen, "this node does not hold it and has no tracker to resolve the "
                              "name (ask by manifest id to have it fetched from its peers)");
        return SHOAL_ENOTFOUND;
    }
    return dmn_request_pull(d, release, "a loader", true, why, whylen);
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

        if (!pl->loader_only || pl->swarm || (!pl->by_name && dmn_in_rollout(d, pl->id)) ||
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
        dmn_forget_pull(d, i);
    }
}

static void loader_left(void *user)
{
    withdraw_orphans(user);
}

int dmn_start_loader(struct shoal_daemon *d)
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
