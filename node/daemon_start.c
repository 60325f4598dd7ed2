/* SPDX-License-Identifier: MIT */
/*
 * shoald's start-up (daemon_int.h): the node key, credential, trust and
 * deny lists, --manifest releases, the state file and leftover partial
 * files, the listener, option ranges and the cache lock.
 */
#include "daemon_int.h"

/* ---- setup ---- */

/* "2026-11-23 19:32 UTC" for |unix| into |buf|. */
const char *dmn_fmt_utc(char *buf, size_t cap, uint64_t unix_s)
{
    time_t t = (time_t)unix_s;
    struct tm tm;

    if (!gmtime_r(&t, &tm) || strftime(buf, cap, "%Y-%m-%d %H:%M UTC", &tm) == 0)
        snprintf(buf, cap, "%llu (unix time)", (unsigned long long)unix_s);
    return buf;
}

/* A short "3 days 4 h" / "5 h 12 min" / "40 s" for |secs|. */
const char *dmn_fmt_span(char *buf, size_t cap, uint64_t secs)
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
        dmn_hex8(hex_a, cred.node_pk);
        dmn_hex8(hex_b, d->pk.pk);
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
        dmn_hex8(hex_a, cred.cluster_pk);
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
              dmn_fmt_utc(when, sizeof when, cred.expires_unix), c->node_key, c->cred);
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

#define CRED_CHECK_S 86400u

/* Logs how long the credential has left when that is under CRED_WARN_S
 * (an error once it has ended), and runs again in a day, or at its end if
 * that comes first. */
void dmn_on_cred_timer(uv_timer_t *t)
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
              "--cluster-key CLUSTER.key --node %s.pub --out %s') and restart shoald", c->cred,
              dmn_fmt_utc(when, sizeof when, d->cred_expires), c->node_key, c->cred);
    } else {
        uint64_t rem = d->cred_expires - now;
        if (rem <= CRED_WARN_S)
            LOG_W("credential %s expires at %s, in %s: then peers and trackers refuse this "
                  "node; issue a new one ('shoal cred issue --cluster-key CLUSTER.key --node "
                  "%s.pub --out %s [--days N]') and restart shoald before then", c->cred,
                  dmn_fmt_utc(when, sizeof when, d->cred_expires),
                  dmn_fmt_span(left, sizeof left, rem), c->node_key, c->cred);
        if (rem < next)
            next = rem + 1; /* once more, just past its end */
    }
    uv_timer_start(&d->cred_timer, dmn_on_cred_timer, next * 1000, 0);
}

int dmn_load_identity(struct shoal_daemon *d)
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


/* Reads deny-keys again if a file changed, and closes the sessions of
 * peers whose key it now lists. */
void dmn_on_deny_timer(uv_timer_t *t)
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
        dmn_forget_peer(d, p);
        shoal_peer_bye(p, "node key revoked");
        closed++;
    }
    LOG_I("deny-keys read again: %zu revoked node key(s); %u session(s) closed",
          shoal_keywatch_count(d->deny), closed);
}

int dmn_load_deny(struct shoal_daemon *d)
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

int dmn_open_manifests(struct shoal_daemon *d)
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
        if (dmn_find_swarm(d, shoal_manifest_id(m))) {
            shoal_manifest_free(m);
            s = NULL;
            rv = -EINVAL;
        } else {
            char why[256];
            s = dmn_add_release(d, m, data, len, NULL, true, &rv, why, sizeof why);
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
            rv = dmn_request_pull(d, c->pulls.v[i], "the configuration", false, why, sizeof why);
            if (rv != 0)
                LOG_E("pull %s: %s", c->pulls.v[i], why);
            continue;
        }
        pl = dmn_new_pull(d);
        if (shoal_unhex(pl->id, 32, c->pulls.v[i], strlen(c->pulls.v[i])) != 0) {
            LOG_E("pull %s: not a 64-hex manifest id or org/name@commit", c->pulls.v[i]);
            rv = -EINVAL;
            break;
        }
        pl->swarm = dmn_find_swarm(d, pl->id);
        d->npulls++;
    }
    return rv;
}

static void sweep_partials(struct shoal_daemon *d, const struct shoal_state_entry *v,
                           const bool *closed, size_t n);

/* 1 when directory |path| (which need not exist yet) is directory
 * |dir|, 2 when it is under it, else 0; both made absolute as the state
 * file's cache path is (shoal_state_absolute: symlinks resolved). */
static int in_cache(const char *path, const char *dir)
{
    char rp[SHOAL_STATE_PATH_MAX], rd[SHOAL_STATE_PATH_MAX];
    size_t n;

    if (shoal_state_absolute(rd, sizeof rd, dir) != 0 ||
        shoal_state_absolute(rp, sizeof rp, path) != 0)
        return 0;
    n = strlen(rd);
    if (strcmp(rp, rd) == 0)
        return 1;
    return strncmp(rp, rd, n) == 0 && (rp[n] == '/' || n == 1) ? 2 : 0;
}

/* Finds the state file and reopens every release it lists that is not
 * open yet (after --manifest and --pull): complete ones seed, incomplete
 * ones resume, as a --manifest release does. A release whose manifest or
 * files are gone is logged and left out of the file from now on; a file
 * that cannot be read is logged and kept aside, and never stops the start.
 * Returns 0, or SHOAL_EBADPATH for a state dir in the cache (logged). */
int dmn_reopen_state(struct shoal_daemon *d)
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
        dmn_hex8(hex, e->id);
        if (dmn_find_swarm(d, e->id))
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
        if (dmn_add_release(d, m, data, len, branch, false, &rv, why, sizeof why)) {
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
    dmn_save_state(d);
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
    struct shoal_store_swept k;
    uint32_t files = 0;
    uint64_t bytes = 0;
    int rv = shoal_store_sweep_partials(d->cache_dir, partial_claimed, &c, &files, &bytes, &k,
                                        first, sizeof first);

    if (rv != 0)
        LOG_W("looking for partial files of dropped releases in %s: %s", d->cache_dir,
              shoal_strerror(rv));
    else if (files > 0)
        /* Each kind by its name: a .state is the progress sidecar of a
         * release, complete or not, not a partial file (QA F2). */
        LOG_I("removed %u partial file%s, %u progress sidecar%s and %u kept manifest%s (%s) "
              "of releases no longer open or listed in the state file (manifests only of "
              "commits with no snapshot left), e.g. %s", k.partials,
              k.partials == 1 ? "" : "s", k.sidecars, k.sidecars == 1 ? "" : "s", k.manifests,
              k.manifests == 1 ? "" : "s", shoal_fmt_bytes(size, sizeof size, bytes), first);
}

int dmn_start_listening(struct shoal_daemon *d)
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
        rv = uv_listen((uv_stream_t *)&d->listener, 128, dmn_on_connection);
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

int dmn_check_ranges(const struct shoal_config *c)
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
    /* Much shorter, a node waiting for its zone's next import behind a
     * cross-zone cap would count as cut off and fetch from the origin what
     * the fleet already has. */
    if (c->starved_ms < 1000 || c->starved_ms > 86400000) {
        LOG_E("starved-ms %llu: use 1000-86400000 (a day)", (unsigned long long)c->starved_ms);
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
int dmn_lock_cache(struct shoal_daemon *d)
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
int dmn_cache_group(struct shoal_daemon *d)
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
void dmn_raise_nofile(void)
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
