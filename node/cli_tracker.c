/* SPDX-License-Identifier: MIT */
/*
 * `shoal publish` and `shoal rollout`: the commands that talk to the Hub and
 * to a tracker directly (no daemon needed). Tracker connections authenticate
 * with a node key and its cluster credential, like a daemon does.
 */
#include "cli.h"
#include "cliutil.h"
#include "publish.h"
#include "hfcache.h"

#include "cred.h"
#include "error.h"
#include "hash.h"
#include "keys.h"
#include "msg.h"
#include "trkclient.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TRK_TIMEOUT_MS 10000

#define TRK_PIN_FILES 8

struct trk_ident {
    const char *tracker;
    const char *key;
    const char *cred;
    /* --tracker-keys: the tracker must prove one of the keys listed in
     * these files, and the session is sealed (tracker/trkclient.h) */
    const char *pins[TRK_PIN_FILES];
    unsigned npins;
    /* publish: the manifest signing key's public half, asked about at
     * login (the tracker refuses a key outside its --publisher-keys) */
    bool has_publisher;
    struct shoal_pubkey publisher;
    const char *publisher_path;
    /* what to list in --publisher-keys, for the refusal message: the
     * key file's .pub, or a manifest's signer key (hex) */
    char publisher_pub[160];
};

/* One --tracker-keys FILE for |id|; prints why not (the exit status is 2,
 * a usage error, when there are too many). */
static int trk_pin_arg(const char *cmd, struct trk_ident *id, const char *path)
{
    if (id->npins == TRK_PIN_FILES) {
        fprintf(stderr, "shoal %s: at most %d --tracker-keys files (one file may list several "
                        "keys)\n", cmd, TRK_PIN_FILES);
        return 2;
    }
    id->pins[id->npins++] = path;
    return 0;
}

/* The keys of |id|'s --tracker-keys files into a new *|out| (NULL when
 * there are none). Prints why not. */
static int trk_pins_load(const char *cmd, const struct trk_ident *id, struct shoal_keyset **out)
{
    struct shoal_keyset *ks = NULL;
    int rv = 0;

    *out = NULL;
    if (id->npins == 0)
        return 0;
    if ((rv = shoal_keyset_new(&ks)) != 0) {
        fprintf(stderr, "shoal %s: out of memory\n", cmd);
        return rv;
    }
    for (unsigned i = 0; i < id->npins; i++) {
        size_t before = shoal_keyset_count(ks);
        rv = shoal_keyset_load_file(ks, id->pins[i]);
        if (rv) {
            char why[512];
            fprintf(stderr, "shoal %s: tracker keys %s\n", cmd,
                    shoal_keyfile_strerror(id->pins[i], rv, why, sizeof why));
            break;
        }
        if (shoal_keyset_count(ks) == before) {
            fprintf(stderr, "shoal %s: tracker keys %s: no key in the file\n", cmd,
                    id->pins[i]);
            rv = SHOAL_ENOTFOUND;
            break;
        }
    }
    if (rv)
        shoal_keyset_free(ks);
    else
        *out = ks;
    return rv;
}

/* Connects to |id->tracker| and authenticates as |role|. Prints why not. */
static int trk_open(const char *cmd, const struct trk_ident *id, uint8_t role,
                    struct shoal_trkc **out)
{
    struct shoal_seckey sk;
    struct shoal_cred cred;
    struct shoal_buf cb;
    struct shoal_trkc *c = NULL;
    struct shoal_keyset *pins = NULL;
    shoal_buf_init(&cb, SHOAL_CRED_MAX_ENCODED);
    int rv = trk_pins_load(cmd, id, &pins);
    if (rv)
        goto out;
    rv = shoal_seckey_load(id->key, &sk);
    if (rv) {
        char why[512];
        fprintf(stderr, "shoal %s: key %s\n", cmd,
                shoal_keyfile_strerror(id->key, rv, why, sizeof why));
        goto out;
    }
    rv = shoal_cred_load(id->cred, &cred);
    if (rv == 0)
        rv = shoal_cred_encode(&cred, &cb);
    if (rv) {
        char why[512];
        fprintf(stderr, "shoal %s: credential %s\n", cmd,
                shoal_keyfile_strerror(id->cred, rv, why, sizeof why));
        goto out;
    }
    /* The tracker would refuse it as "for another node key", and the
     * refusal's --admin-keys hint would point at the wrong thing. */
    struct shoal_pubkey mine;
    shoal_seckey_public(&sk, &mine);
    if (memcmp(cred.node_pk, mine.pk, SHOAL_PUBKEY_LEN) != 0) {
        char a[17], b[17];
        shoal_hex(a, cred.node_pk, 8);
        shoal_hex(b, mine.pk, 8);
        fprintf(stderr, "shoal %s: credential %s was issued for key %s, not for %s (key %s); "
                        "give the credential issued for %s.pub, or issue one with 'shoal cred "
                        "issue'\n", cmd, id->cred, a, id->key, b, id->key);
        rv = SHOAL_EPERM;
        goto out;
    }
    rv = shoal_trkc_connect(&c, id->tracker, TRK_TIMEOUT_MS);
    if (rv) {
        fprintf(stderr, "shoal %s: tracker %s: %s\n", cmd, id->tracker, shoal_strerror(rv));
        goto out;
    }
    if (id->has_publisher && role == SHOAL_ROLE_PUBLISHER)
        shoal_trkc_set_publisher(c, id->publisher.pk);
    if (pins && (rv = shoal_trkc_pin(c, pins)) != 0) {
        fprintf(stderr, "shoal %s: out of memory\n", cmd);
        goto out;
    }
    rv = shoal_trkc_auth(c, &sk, cb.data, cb.len, "cli", "127.0.0.1:1", role, TRK_TIMEOUT_MS);
    if (rv && shoal_trkc_unproven(c)) {
        fprintf(stderr, "shoal %s: tracker %s not used: %s; nothing was sent to it but the "
                        "login (--tracker-keys)\n", cmd, id->tracker, shoal_trkc_error(c));
        goto out;
    }
    if (rv == SHOAL_EUNTRUSTED && id->has_publisher) {
        fprintf(stderr, "shoal %s: tracker %s will not take manifests signed by %s: %s (add "
                        "%s to its --publisher-keys and restart it: the tracker reads that "
                        "file at start only, so a key added since is not in its list yet; "
                        "nodes need it in theirs too, and read theirs at start as well)\n",
                cmd, id->tracker, id->publisher_path,
                shoal_trkc_error(c)[0] ? shoal_trkc_error(c) : shoal_strerror(rv),
                id->publisher_pub);
        goto out;
    }
    if (rv) {
        /* The tracker grants the publisher and admin roles only to keys in
         * its --admin-keys; say so, since "permission denied" alone points
         * at file modes. */
        bool role_denied = rv == SHOAL_EPERM && role != SHOAL_ROLE_NODE;
        const char *said = c ? shoal_trkc_error(c) : "";
        fprintf(stderr, "shoal %s: tracker %s refused us: %s%s%s%s\n", cmd, id->tracker,
                said[0] ? said : shoal_strerror(rv), role_denied ? " (the public key of " : "",
                role_denied ? id->key : "",
                role_denied ? " must be listed in the tracker's --admin-keys)" : "");
        goto out;
    }
    *out = c;
    c = NULL;
out:
    sodium_memzero(&sk, sizeof sk);
    shoal_buf_free(&cb);
    shoal_trkc_free(c);
    shoal_keyset_free(pins);
    return rv;
}

/* Sends |req| and expects OK (or |want| when nonzero). */
static int trk_call(const char *cmd, struct shoal_trkc *c, const struct shoal_msg *req,
                    struct shoal_msg *resp, uint32_t want)
{
    int rv = shoal_trkc_call(c, req, resp, TRK_TIMEOUT_MS);
    if (rv) {
        /* A sealed session's tracker drops the connection at a frame that
         * does not open: say what that may mean. */
        bool sealed = shoal_trkc_proven_key(c) != NULL;
        fprintf(stderr, "shoal %s: tracker: %s%s\n", cmd, shoal_strerror(rv),
                sealed && (rv == -ECONNRESET || rv == SHOAL_EBADMSG)
                    ? " (a sealed session: the tracker closes it at a frame changed on the "
                      "way; its log says whether that happened)"
                    : "");
        return rv;
    }
    if (resp->type == SHOAL_MSG_ERROR) {
        fprintf(stderr, "shoal %s: tracker says: %.*s\n", cmd, (int)resp->u.error.message.len,
                resp->u.error.message.p);
        return resp->u.error.code < 0 ? resp->u.error.code : SHOAL_EBADMSG;
    }
    if (resp->type != (want ? want : (uint32_t)SHOAL_MSG_OK)) {
        fprintf(stderr, "shoal %s: tracker answered %s\n", cmd, shoal_msg_type_name(resp->type));
        return SHOAL_EPROTO;
    }
    return 0;
}

struct put_ctx {
    const struct trk_ident *id;
    const char *out_path; /* --out, already written when we are called */
};

/* Keeps a signed manifest the tracker did not take, so the hashing it cost
 * is not lost: ORG-NAME@COMMIT.manifest in the working directory, else in
 * $TMPDIR or /tmp. Prints where, or that it could not. */
static void save_unregistered(const uint8_t *bytes, size_t len, const struct shoal_manifest *m,
                              int why)
{
    const char *tmpdir = getenv("TMPDIR");
    const char *dirs[] = {".", tmpdir && tmpdir[0] ? tmpdir : "/tmp", "/tmp"};
    char name[256], path[4096];
    int n = snprintf(name, sizeof name, "%s@%s.manifest", shoal_manifest_repo_id(m),
                     shoal_manifest_commit(m));
    if (n < 0 || (size_t)n >= sizeof name)
        goto fail;
    for (char *q = name; *q; q++) {
        if (*q == '/')
            *q = '-';
    }
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        n = snprintf(path, sizeof path, "%s/%s", dirs[i], name);
        if (n < 0 || (size_t)n >= sizeof path)
            continue;
        if (shoal_write_file_atomic(path, bytes, len) == 0) {
            /* Nodes check the signer against their own --publisher-keys:
             * a manifest the tracker found untrusted is useless to them
             * too until the key is listed. */
            if (why == SHOAL_EUNTRUSTED)
                fprintf(stderr, "shoal publish: the signed manifest is saved in %s (its signer "
                                "is not trusted: nodes refuse it as the tracker did; list the "
                                "key's .pub in the tracker's and the nodes' --publisher-keys, "
                                "then publish again)\n", path);
            else
                fprintf(stderr, "shoal publish: the signed manifest is saved in %s (publish "
                                "again once the tracker accepts it; shoald --manifest also "
                                "takes it, on nodes whose --publisher-keys list its signer)\n",
                        path);
            return;
        }
    }
fail:
    fprintf(stderr, "shoal publish: could not save the signed manifest anywhere\n");
}

static int register_with_tracker(void *user, const uint8_t *bytes, size_t len,
                                 const struct shoal_manifest *m)
{
    struct put_ctx *pc = user;
    struct shoal_trkc *c = NULL;
    struct shoal_msg *req = calloc(2, sizeof *req);
    int rv = req ? trk_open("publish", pc->id, SHOAL_ROLE_PUBLISHER, &c) : -ENOMEM;
    if (rv == 0) {
        req[0].type = SHOAL_MSG_PUT_MANIFEST;
        req[0].u.put_manifest.signed_manifest.p = bytes;
        req[0].u.put_manifest.signed_manifest.len = (uint32_t)len;
        rv = trk_call("publish", c, &req[0], &req[1], 0);
    }
    if (rv == 0)
        fprintf(stderr, "registered with tracker %s\n", pc->id->tracker);
    else if (pc->out_path)
        fprintf(stderr, "shoal publish: the signed manifest is in %s\n", pc->out_path);
    else
        save_unregistered(bytes, len, m, rv);
    shoal_trkc_free(c);
    free(req);
    return rv;
}

/* shoal_publish_lookup_fn: the manifest the tracker holds under the name,
 * if any. */
static int lookup_on_tracker(void *user, const char *repo_at_commit, struct shoal_buf *out)
{
    struct put_ctx *pc = user;
    struct shoal_trkc *c = NULL;
    struct shoal_msg *req = calloc(2, sizeof *req);
    int rv = req ? trk_open("publish", pc->id, SHOAL_ROLE_PUBLISHER, &c) : -ENOMEM;
    if (rv == 0) {
        req[0].type = SHOAL_MSG_GET_MANIFEST;
        req[0].u.get_manifest.has_repo = true;
        req[0].u.get_manifest.repo_at_rev.p = repo_at_commit;
        req[0].u.get_manifest.repo_at_rev.len = (uint32_t)strlen(repo_at_commit);
        rv = shoal_trkc_call(c, &req[0], &req[1], TRK_TIMEOUT_MS);
    }
    if (rv == 0 && req[1].type == SHOAL_MSG_ERROR)
        rv = req[1].u.error.code == SHOAL_ENOTFOUND ? SHOAL_ENOTFOUND : SHOAL_EBADMSG;
    else if (rv == 0 && req[1].type != SHOAL_MSG_MANIFEST)
        rv = SHOAL_EPROTO;
    if (rv == 0)
        rv = shoal_buf_append(out, req[1].u.manifest.signed_manifest.p,
                              req[1].u.manifest.signed_manifest.len);
    shoal_trkc_free(c);
    free(req);
    return rv;
}

/* Before a release is streamed and hashed (minutes for a large one, and a
 * full read from the Hub), checks that the tracker answers, lets this
 * identity publish and trusts the signing key: the login itself asks all
 * three (TRK_AUTH publisher_pk). A tracker that predates the signing-key
 * question skips it; its PUT_MANIFEST still refuses an untrusted signer. */
static int precheck_tracker(struct trk_ident *id, const char *key_path)
{
    struct shoal_seckey sk;
    struct shoal_trkc *c = NULL;
    char why[512];
    int rv = shoal_seckey_load(key_path, &sk);
    if (rv) {
        fprintf(stderr, "shoal publish: publisher key %s\n",
                shoal_keyfile_strerror(key_path, rv, why, sizeof why));
        return rv;
    }
    shoal_seckey_public(&sk, &id->publisher);
    sodium_memzero(&sk, sizeof sk);
    id->has_publisher = true;
    id->publisher_path = key_path;
    snprintf(id->publisher_pub, sizeof id->publisher_pub, "%s.pub", key_path);
    rv = trk_open("publish", id, SHOAL_ROLE_PUBLISHER, &c);
    shoal_trkc_free(c);
    return rv;
}

/* `shoal publish --manifest FILE --tracker ADDR ...`: registers a manifest
 * signed earlier (by `shoal publish --out` or `shoal manifest build`) with
 * a tracker as it is, byte for byte, so its id is the same everywhere: a
 * second tracker, or one that lost its state. Its signature is checked
 * here and its signer asked about at login (the tracker checks the signer
 * against its --publisher-keys). Prints what was registered and the id on
 * stdout. Returns the exit status: 0, or 1 (a message said why). */
static int register_file(const char *path, struct trk_ident *id)
{
    uint8_t *data = NULL;
    size_t len = 0;
    struct shoal_manifest *m = NULL;
    struct shoal_trkc *t = NULL;
    struct shoal_msg *msg = NULL;
    char hex[2 * SHOAL_HASH_LEN + 1], sz[32], signer[300];
    int rv = shoal_read_file(path, SHOAL_MF_MAX_BYTES_DEFAULT, &data, &len);

    if (rv) {
        fprintf(stderr, "shoal publish: manifest %s: %s\n", path,
                rv == SHOAL_ETOOBIG ? "larger than a manifest may be" : shoal_strerror(rv));
        goto out;
    }
    /* The signature, not the signer: which publishers count is the
     * tracker's (and the nodes') --publisher-keys. */
    rv = shoal_manifest_parse(&m, data, len, NULL, NULL);
    if (rv) {
        fprintf(stderr, "shoal publish: manifest %s: not a valid signed manifest: %s\n", path,
                shoal_strerror(rv));
        goto out;
    }
    shoal_hex(hex, shoal_manifest_signer(m), SHOAL_HASH_LEN);
    memcpy(id->publisher.pk, shoal_manifest_signer(m), sizeof id->publisher.pk);
    id->has_publisher = true;
    snprintf(signer, sizeof signer, "the signer of %s", path);
    id->publisher_path = signer;
    snprintf(id->publisher_pub, sizeof id->publisher_pub, "the signer's public key %s", hex);
    msg = calloc(2, sizeof *msg);
    rv = msg ? trk_open("publish", id, SHOAL_ROLE_PUBLISHER, &t) : -ENOMEM;
    if (rv)
        goto out;
    msg[0].type = SHOAL_MSG_PUT_MANIFEST;
    msg[0].u.put_manifest.signed_manifest.p = data;
    msg[0].u.put_manifest.signed_manifest.len = (uint32_t)len;
    rv = trk_call("publish", t, &msg[0], &msg[1], 0);
    if (rv)
        goto out;
    shoal_hex(hex, shoal_manifest_id(m), SHOAL_HASH_LEN);
    printf("registered %s@%s: %u files, %u chunks, %s\nmanifest id %s\nwith tracker %s\n",
           shoal_manifest_repo_id(m), shoal_manifest_commit(m), shoal_manifest_nfiles(m),
           shoal_manifest_nchunks(m), shoal_fmt_bytes(sz, sizeof sz, shoal_manifest_total_size(m)),
           hex, id->tracker);
out:
    if (rv == -ENOMEM)
        fprintf(stderr, "shoal publish: out of memory\n");
    shoal_trkc_free(t);
    free(msg);
    shoal_manifest_free(m);
    free(data);
    return rv ? 1 : 0;
}

int shoal_cmd_publish(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dataset", no_argument, NULL, 'd'},
        {"key", required_argument, NULL, 'k'},
        {"out", required_argument, NULL, 'o'},
        {"tracker", required_argument, NULL, 't'},
        {"identity", required_argument, NULL, 'i'},
        {"cred", required_argument, NULL, 'c'},
        {"tracker-keys", required_argument, NULL, 'P'},
        {"hub-endpoint", required_argument, NULL, 'e'},
        {"hub-token-file", required_argument, NULL, 'T'},
        {"hub-ca", required_argument, NULL, 'C'},
        {"quiet", no_argument, NULL, 'q'},
        {"force", no_argument, NULL, 'f'},
        {"manifest", required_argument, NULL, 'm'},
        {"previous", required_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    const char *manifest = NULL;
    const char *previous[16];
    size_t nprevious = 0;
    struct shoal_publish_opts o;
    memset(&o, 0, sizeof o);
    shoal_hub_config_default(&o.hub);
    struct trk_ident id = {0};
    char err[512] = "";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': o.dataset = true; break;
        case 'k': o.key_path = optarg; break;
        case 'o': o.out_path = optarg; break;
        case 't': id.tracker = optarg; break;
        case 'i': id.key = optarg; break;
        case 'c': id.cred = optarg; break;
        case 'e': o.hub.endpoint = optarg; break;
        case 'T': o.hub.token_file = optarg; break;
        case 'C': o.hub.ca_file = optarg; break;
        case 'q': o.progress = SHOAL_PUBLISH_PROGRESS_NONE; break;
        case 'f': o.force = true; break;
        case 'm': manifest = optarg; break;
        case 'p':
            if (nprevious == sizeof previous / sizeof previous[0]) {
                fprintf(stderr, "shoal publish: at most %zu --previous manifests\n",
                        sizeof previous / sizeof previous[0]);
                return 2;
            }
            previous[nprevious++] = optarg;
            break;
        case 'P':
            if (trk_pin_arg("publish", &id, optarg) != 0)
                return 2;
            break;
        default:
            fprintf(stderr, "shoal publish: unknown option (try 'shoal help')\n");
            return 2;
        }
    }
    if (manifest) {
        /* Nothing is signed or fetched: the file goes as it is. */
        if (optind != argc || !id.tracker || !id.key || !id.cred || o.key_path || o.out_path ||
            o.dataset || o.force || nprevious || o.hub.endpoint || o.hub.token_file ||
            o.hub.ca_file) {
            fprintf(stderr, "shoal publish: usage: shoal publish --manifest FILE --tracker ADDR "
                            "--identity NODE_KEY --cred CRED [--tracker-keys FILE] (registers a signed manifest as it "
                            "is: no release name, --key, --out, --dataset, --force, --previous "
                            "or Hub options)\n");
            return 2;
        }
        return register_file(manifest, &id);
    }
    if (optind != argc - 1 || !o.key_path || (!o.out_path && !id.tracker) ||
        (id.tracker && (!id.key || !id.cred))) {
        fprintf(stderr, "shoal publish: usage: shoal publish [datasets/]ORG/NAME[@REV] [--dataset] --key "
                        "PUBLISHER_KEY (--out FILE | --tracker ADDR --identity NODE_KEY --cred "
                        "CRED [--tracker-keys FILE]) [--previous FILE]... [--hub-endpoint URL] "
                        "[--hub-token-file FILE] [--hub-ca FILE] [--quiet] [--force]\n"
                        "       shoal publish --manifest FILE --tracker ADDR --identity NODE_KEY "
                        "--cred CRED [--tracker-keys FILE]\n");
        return 2;
    }
    /* Before the tracker is asked anything: a wrong CA path is the
     * operator's typo, worth saying at once. */
    if (shoal_hub_ca_verify(&o.hub, err, sizeof err) != 0) {
        fprintf(stderr, "shoal publish: %s\n", err);
        return 1;
    }
    /* The name `shoal pull` takes: a dataset may be named by its prefix
     * instead of --dataset. */
    enum shoal_repo_type type;
    if (shoal_relname_split(argv[optind], &type, &o.repo) != 0) {
        fprintf(stderr, "shoal publish: '%.*s' is not a prefix shoal takes: a model is named "
                        "ORG/NAME[@REV], a dataset datasets/ORG/NAME[@REV] or ORG/NAME[@REV] "
                        "--dataset (spaces and kernels are not carried)\n",
                (int)(o.repo - argv[optind]), argv[optind]);
        return 2;
    }
    o.dataset = o.dataset || type == SHOAL_REPO_DATASET;
    o.previous = previous;
    o.nprevious = nprevious;
    o.errbuf = err;
    o.errlen = sizeof err;
    struct put_ctx pc = {&id, o.out_path};
    if (id.tracker) {
        if (precheck_tracker(&id, o.key_path) != 0)
            return 1;
        o.registrar = register_with_tracker;
        o.registrar_user = &pc;
        o.lookup = lookup_on_tracker;
        o.lookup_user = &pc;
    }
    struct shoal_publish_result res;
    int rv = shoal_publish_run(&o, &res);
    if (rv) {
        fprintf(stderr, "shoal publish: %s\n", err[0] ? err : shoal_strerror(rv));
        return 1;
    }
    char hex[2 * SHOAL_HASH_LEN + 1], sz[32];
    shoal_hex(hex, res.manifest_id, sizeof res.manifest_id);
    int namelen = (int)strcspn(o.repo, "@");
    /* As `shoal pull` and rollouts will name it. */
    const char *pfx = o.dataset ? SHOAL_RELNAME_DATASET : "";
    if (res.reused) {
        char when[32];
        time_t t = (time_t)res.created;
        struct tm tm;
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&t, &tm));
        printf("already published %s%.*s@%s: %u files, %u chunks, %s, signed by this key %s\n"
               "manifest id %s (nothing streamed; --force publishes anew)%s%s\n",
               pfx, namelen, o.repo, res.commit, res.nfiles, res.nchunks,
               shoal_fmt_bytes(sz, sizeof sz, res.total_bytes), when, hex,
               o.out_path ? "\nwritten to " : "", o.out_path ? o.out_path : "");
        return 0;
    }
    printf("published %s%.*s@%s: %u files, %u chunks, %s\nmanifest id %s%s%s\n", pfx, namelen,
           o.repo, res.commit,
           res.nfiles, res.nchunks, shoal_fmt_bytes(sz, sizeof sz, res.total_bytes), hex,
           o.out_path ? "\nwritten to " : "", o.out_path ? o.out_path : "");
    if (res.reused_files)
        printf("%u file%s (%s) not streamed: an earlier manifest of this key lists the same "
               "sha256\n", res.reused_files, res.reused_files == 1 ? "" : "s",
               shoal_fmt_bytes(sz, sizeof sz, res.reused_bytes));
    return 0;
}

/* The line about nodes the tracker knew and no longer hears from: without
 * it a fleet with a node shut out reads "done" (F4). */
static void print_gone(const char *indent, uint32_t lost, uint32_t left, uint32_t refused)
{
    uint32_t n = lost + left + refused;
    if (!n)
        return;
    printf("%s%u node%s gone since %s last announced (not counted above):", indent, n,
           n == 1 ? "" : "s", n == 1 ? "it" : "they");
    const char *sep = " ";
    if (refused) {
        printf("%s%u refused at login (credential expired or key revoked)", sep, refused);
        sep = ", ";
    }
    if (lost) {
        printf("%s%u lost (no announce within the tracker's node TTL)", sep, lost);
        sep = ", ";
    }
    if (left)
        printf("%s%u shut down (said goodbye)", sep, left);
    printf("\n");
}

/* shoal rollout --list: every rollout the tracker records, with its
 * counts. Any identity the cluster vouches for may read it, as --status. */
static int rollout_list(struct trk_ident *id)
{
    struct shoal_trkc *t = NULL;
    struct shoal_msg *m = calloc(2, sizeof *m);
    int rv = m ? trk_open("rollout", id, SHOAL_ROLE_NODE, &t) : -ENOMEM;
    if (rv)
        goto out;
    m[0].type = SHOAL_MSG_ROLLOUT_LIST_REQ;
    rv = trk_call("rollout", t, &m[0], &m[1], SHOAL_MSG_ROLLOUT_LIST);
    if (rv)
        goto out;
    const struct shoal_msg_rollout_list *l = &m[1].u.rollout_list;
    printf("%u rollout%s recorded (at most %u)%s\n", l->count, l->count == 1 ? "" : "s",
           SHOAL_MSG_ROLLOUTS_MAX, l->count ? ":" : "");
    for (uint32_t i = 0; i < l->count; i++) {
        const struct shoal_msg_rollout_entry *e = &l->e[i];
        printf("%.*s %s%.*s%s%.*s: %u complete, %u partial, %u without it%s\n",
               (int)e->repo_at_rev.len, e->repo_at_rev.p, e->has_zone ? "zone " : "(all zones)",
               e->has_zone ? (int)e->zone.len : 0, e->has_zone ? e->zone.p : "",
               e->has_ref ? " ref " : "", e->has_ref ? (int)e->ref.len : 0,
               e->has_ref ? e->ref.p : "", e->complete, e->partial, e->none,
               e->has_manifest_id ? "" : " (no manifest registered: no node acts on it)");
        print_gone("  ", e->gone_lost, e->gone_left, e->gone_refused);
    }
out:
    shoal_trkc_free(t);
    free(m);
    return rv ? 1 : 0;
}

int shoal_cmd_rollout(int argc, char **argv)
{
    static const struct option opts[] = {
        {"zone", required_argument, NULL, 'z'},
        {"remove", no_argument, NULL, 'r'},
        {"status", no_argument, NULL, 's'},
        {"list", no_argument, NULL, 'l'},
        {"ref", required_argument, NULL, 'R'},
        {"tracker", required_argument, NULL, 't'},
        {"key", required_argument, NULL, 'k'},
        /* publish's name for the login identity */
        {"identity", required_argument, NULL, 'k'},
        {"cred", required_argument, NULL, 'c'},
        {"tracker-keys", required_argument, NULL, 'P'},
        {NULL, 0, NULL, 0},
    };
    struct trk_ident id = {0};
    const char *zone = NULL, *ref = NULL;
    bool remove = false, status = false, list = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'z': zone = optarg; break;
        case 'r': remove = true; break;
        case 's': status = true; break;
        case 'l': list = true; break;
        case 'R': ref = optarg; break;
        case 't': id.tracker = optarg; break;
        case 'k': id.key = optarg; break;
        case 'c': id.cred = optarg; break;
        case 'P':
            if (trk_pin_arg("rollout", &id, optarg) != 0)
                return 2;
            break;
        default:
            fprintf(stderr, "shoal rollout: unknown option (try 'shoal help')\n");
            return 2;
        }
    }
    if (list) {
        if (optind != argc || remove || status || zone || ref || !id.tracker || !id.key ||
            !id.cred) {
            fprintf(stderr, "shoal rollout: usage: shoal rollout --list --tracker ADDR --key KEY "
                            "--cred CRED [--tracker-keys FILE] (no release name, --zone, --ref, "
                            "--remove or --status)\n");
            return 2;
        }
        return rollout_list(&id);
    }
    if (optind != argc - 1 || !id.tracker || !id.key || !id.cred || !strchr(argv[optind], '@')) {
        fprintf(stderr, "shoal rollout: usage: shoal rollout [datasets/]ORG/NAME@COMMIT [--zone Z] "
                        "[--ref BRANCH] [--remove | --status] --tracker ADDR --key ADMIN_KEY "
                        "--cred CRED [--tracker-keys FILE]\n"
                        "       shoal rollout --list --tracker ADDR --key KEY --cred CRED "
                        "[--tracker-keys FILE]\n");
        return 2;
    }
    if (ref && (remove || status)) {
        fprintf(stderr, "shoal rollout: --ref goes with setting a rollout: --remove withdraws "
                        "the whole entry, --status reads it\n");
        return 2;
    }
    if (ref && (!shoal_hf_branch_ok(ref) || strlen(ref) > SHOAL_MSG_REF_MAX)) {
        fprintf(stderr, "shoal rollout: '%s' is not a branch name nodes can write as "
                        "refs/<branch> in their cache\n", ref);
        return 2;
    }
    /* Nodes hold what a rollout names by its manifest, which names one
     * commit: a branch would be pinned to whatever it was when published,
     * and a typo names nothing. --remove and --status still take any name,
     * so a rollout recorded before this check can be read and withdrawn. */
    const char *rev = strrchr(argv[optind], '@') + 1, *repo;
    enum shoal_repo_type type;
    if (!remove && !status && shoal_relname_split(argv[optind], &type, &repo) != 0) {
        fprintf(stderr, "shoal rollout: '%.*s' is not a prefix shoal takes: a model is named "
                        "ORG/NAME@COMMIT, a dataset datasets/ORG/NAME@COMMIT (spaces and "
                        "kernels are not carried)\n",
                (int)(repo - argv[optind]), argv[optind]);
        return 2;
    }
    if (!remove && !status && (strlen(rev) != 40 || strspn(rev, "0123456789abcdef") != 40)) {
        fprintf(stderr, "shoal rollout: '%s' is not a commit: a rollout pins a release to the "
                        "full 40-hex commit (lowercase) its manifest was published for, not a "
                        "branch, tag or short sha (`shoal publish` prints it)\n", rev);
        return 2;
    }
    if (status && zone) {
        /* The status request names no zone: the tracker counts the nodes
         * of every zone the release's rollouts name. */
        fprintf(stderr, "shoal rollout: --status counts the nodes of every zone the rollout "
                        "names; it takes no --zone\n");
        return 2;
    }
    if (remove && status) {
        fprintf(stderr, "shoal rollout: --remove and --status do not go together: --status "
                        "only reads, --remove withdraws the rollout\n");
        return 2;
    }
    const char *rel = argv[optind];
    struct shoal_trkc *t = NULL;
    struct shoal_msg *m = calloc(2, sizeof *m);
    int rv = m ? trk_open("rollout", &id, status ? SHOAL_ROLE_NODE : SHOAL_ROLE_ADMIN, &t)
               : -ENOMEM;
    if (rv)
        goto out;
    if (status) {
        m[0].type = SHOAL_MSG_ROLLOUT_STATUS_REQ;
        m[0].u.rollout_status_req.text.p = rel;
        m[0].u.rollout_status_req.text.len = (uint32_t)strlen(rel);
        rv = trk_call("rollout", t, &m[0], &m[1], SHOAL_MSG_ROLLOUT_STATUS);
        if (rv == 0) {
            const struct shoal_msg_rollout_status *s = &m[1].u.rollout_status;
            printf("%s: %u node%s complete, %u partial, %u without it%s\n", rel, s->complete,
                   s->complete == 1 ? "" : "s", s->partial, s->none,
                   s->has_manifest_id ? " (nodes in the zones its rollouts name; every node "
                                        "if it has none)"
                                      : " (no manifest registered: no node will act on it)");
            print_gone("  ", s->gone_lost, s->gone_left, s->gone_refused);
        }
    } else {
        m[0].type = SHOAL_MSG_ROLLOUT;
        m[0].u.rollout.repo_at_rev.p = rel;
        m[0].u.rollout.repo_at_rev.len = (uint32_t)strlen(rel);
        m[0].u.rollout.has_zone = zone != NULL;
        if (zone) {
            m[0].u.rollout.zone.p = zone;
            m[0].u.rollout.zone.len = (uint32_t)strlen(zone);
        }
        m[0].u.rollout.remove = remove;
        m[0].u.rollout.has_ref = ref != NULL;
        if (ref) {
            m[0].u.rollout.ref.p = ref;
            m[0].u.rollout.ref.len = (uint32_t)strlen(ref);
        }
        rv = trk_call("rollout", t, &m[0], &m[1], 0);
        if (rv == 0)
            printf("%s %s%s%s%s%s\n", remove ? "rollout removed:" : "rollout recorded:", rel,
                   zone ? " in zone " : " (all zones)", zone ? zone : "",
                   ref ? "; nodes write refs/" : "", ref ? ref : "");
    }
out:
    shoal_trkc_free(t);
    free(m);
    return rv ? 1 : 0;
}

int shoal_cmd_tracker_stats(int argc, char **argv)
{
    static const struct option opts[] = {
        {"tracker", required_argument, NULL, 't'},
        {"key", required_argument, NULL, 'k'},
        /* publish's name for the login identity */
        {"identity", required_argument, NULL, 'k'},
        {"cred", required_argument, NULL, 'c'},
        {"tracker-keys", required_argument, NULL, 'P'},
        {NULL, 0, NULL, 0},
    };
    struct trk_ident id = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't': id.tracker = optarg; break;
        case 'k': id.key = optarg; break;
        case 'c': id.cred = optarg; break;
        case 'P':
            if (trk_pin_arg("tracker-stats", &id, optarg) != 0)
                return 2;
            break;
        default:
            fprintf(stderr, "shoal tracker-stats: unknown option (try 'shoal help')\n");
            return 2;
        }
    }
    if (optind != argc || !id.tracker || !id.key || !id.cred) {
        fprintf(stderr, "shoal tracker-stats: usage: shoal tracker-stats --tracker ADDR --key "
                        "NODE_KEY --cred CRED [--tracker-keys FILE]\n");
        return 2;
    }
    struct shoal_trkc *t = NULL;
    struct shoal_msg *m = calloc(2, sizeof *m);
    /* Any identity the cluster credential vouches for may read the
     * metrics: they say how the fleet fares, nothing it could misuse. */
    int rv = m ? trk_open("tracker-stats", &id, SHOAL_ROLE_NODE, &t) : -ENOMEM;
    if (rv)
        goto out;
    m[0].type = SHOAL_MSG_STATS_REQ;
    rv = trk_call("tracker-stats", t, &m[0], &m[1], SHOAL_MSG_STATS);
    if (rv == 0 &&
        fwrite(m[1].u.stats.text.p, 1, m[1].u.stats.text.len, stdout) != m[1].u.stats.text.len)
        rv = -EIO;
out:
    shoal_trkc_free(t);
    free(m);
    return rv ? 1 : 0;
}
