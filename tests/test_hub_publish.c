/* SPDX-License-Identifier: MIT */
/*
 * `shoal publish` (node/publish.c) against the Hub stand-in: a release is
 * resolved, streamed once, chunked, checked and signed; the manifest
 * verifies and matches the generated files byte for byte; faults on the
 * way are survived; a tampered byte is caught and the file named; a wrong
 * revision or a missing token fails with a message naming the repo.
 * Usage: test_hub_publish PYTHON HUBDIR
 */
#include "t.h"

#include "buf.h"
#include "cdc.h"
#include "error.h"
#include "hash.h"
#include "keys.h"
#include "manifest.h"
#include "publish.h"

#include "hub/stub.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *py, *hubdir;
static char root[256], keyp[300], outp[300];
static char commit_m[41];
static struct hubstub stub;
static struct shoal_pubkey pub;
static struct shoal_cdc_params small = {4096, 16384, 65536};

static uint8_t *slurp(const char *fn, size_t *len)
{
    struct stat st;
    FILE *fp;
    uint8_t *b;

    if (stat(fn, &st) != 0)
        return NULL;
    b = malloc((size_t)st.st_size + 1);
    fp = fopen(fn, "rb");
    REQUIRE(b && fp);
    REQUIRE(fread(b, 1, (size_t)st.st_size, fp) == (size_t)st.st_size);
    fclose(fp);
    *len = (size_t)st.st_size;
    return b;
}

struct prog {
    int calls;
    uint64_t last_total, total_size;
};

static void on_progress(void *user, const struct shoal_publish_progress *p)
{
    struct prog *g = user;
    g->calls++;
    g->last_total = p->total_done;
    g->total_size = p->total_size;
}

static bool as_dataset;

static int publish(const char *repo, const char *token, char *err, size_t errlen,
                   struct shoal_publish_result *res, struct prog *prog)
{
    struct shoal_publish_opts o;

    memset(&o, 0, sizeof(o));
    o.repo = repo;
    o.dataset = as_dataset;
    o.key_path = keyp;
    o.out_path = outp;
    o.hub.endpoint = stub.url;
    o.hub.token = token ? token : "";
    o.hub.backoff_base_ms = 20;
    o.hub.seed = 7;
    o.params = &small;
    o.progress = SHOAL_PUBLISH_PROGRESS_NONE;
    o.on_progress = prog ? on_progress : NULL;
    o.progress_user = prog;
    o.errbuf = err;
    o.errlen = errlen;
    err[0] = '\0';
    return shoal_publish_run(&o, res);
}

static void check_manifest_matches_disk(const char *repo, const char *commit, uint32_t nfiles)
{
    size_t n;
    uint8_t *bytes = slurp(outp, &n);
    struct shoal_keyset *ks = NULL;
    struct shoal_manifest *m = NULL;

    REQUIRE(bytes);
    REQUIRE(shoal_keyset_new(&ks) == 0);
    REQUIRE(shoal_keyset_add(ks, &pub) == 0);
    CHECK_EQ(shoal_manifest_parse(&m, bytes, n, ks, NULL), 0);
    REQUIRE(m);
    CHECK(strcmp(shoal_manifest_repo_id(m), repo) == 0);
    CHECK(strcmp(shoal_manifest_commit(m), commit) == 0);
    CHECK_EQ(shoal_manifest_nfiles(m), nfiles);
    CHECK_EQ(shoal_manifest_params(m)->avg_size, small.avg_size);
    for (uint32_t i = 0; i < shoal_manifest_nfiles(m); i++) {
        const struct shoal_mf_file *f = shoal_manifest_file(m, i);
        char fn[1024];
        size_t len;
        snprintf(fn, sizeof(fn), "%s/models/%s/commits/%s/%s", root, repo, commit, f->path);
        uint8_t *b = slurp(fn, &len);
        REQUIRE(b);
        CHECK_EQ(f->size, len);
        struct shoal_sha256 s;
        uint8_t d[32];
        shoal_sha256_init(&s);
        shoal_sha256_update(&s, b, len);
        shoal_sha256_final(&s, d);
        CHECK(memcmp(d, f->sha256, 32) == 0);
        /* Every chunk id is the hash of those bytes of the real file. */
        uint64_t off = 0;
        int bad = 0;
        for (uint32_t c = 0; c < f->nchunks; c++) {
            const struct shoal_mf_chunk *ch = shoal_manifest_chunk(m, f->first_chunk + c);
            uint8_t id[32];
            if (off + ch->len > len) {
                bad++;
                break;
            }
            shoal_chunk_id(id, b + off, ch->len);
            bad += memcmp(id, ch->id, 32) != 0;
            off += ch->len;
        }
        CHECK_EQ(bad, 0);
        CHECK_EQ(off, len);
        free(b);
    }
    shoal_manifest_free(m);
    shoal_keyset_free(ks);
    free(bytes);
}

static void test_publish_ok(void)
{
    char err[1024];
    struct shoal_publish_result res;
    struct prog prog = {0};

    hubstub_post(&stub, "/_stub/reset", "{}");
    unlink(outp);
    CHECK_EQ(publish("org/m@v1", NULL, err, sizeof(err), &res, &prog), 0);
    if (err[0])
        fprintf(stderr, "  %s\n", err);
    CHECK(strcmp(res.commit, commit_m) == 0);
    CHECK_EQ(res.nfiles, 5);
    CHECK(res.nchunks > 5);
    check_manifest_matches_disk("org/m", commit_m, 5);
    /* Streamed once: the origin sent exactly the release's bytes. */
    CHECK_EQ(hubstub_stat(&stub, NULL, "total_bytes"), (long long)res.total_bytes);
    CHECK(prog.calls >= 5);
    CHECK_EQ(prog.last_total, res.total_bytes);
    CHECK_EQ(prog.total_size, res.total_bytes);
}

static void test_publish_through_faults(void)
{
    char err[1024];
    struct shoal_publish_result res;

    hubstub_post(&stub, "/_stub/reset", "{}");
    unlink(outp);
    hubstub_post(&stub, "/_stub/faults",
                 "[{\"kind\":\"status\",\"code\":429,\"retry_after\":1,\"match\":\"/api/\"},"
                 "{\"kind\":\"status\",\"code\":503,\"times\":2,\"match\":\"/resolve/\"},"
                 "{\"kind\":\"cut\",\"after\":70000,\"times\":2,\"match\":\"/cdn/\"}]");
    CHECK_EQ(publish("org/m", NULL, err, sizeof(err), &res, NULL), 0);
    if (err[0])
        fprintf(stderr, "  %s\n", err);
    check_manifest_matches_disk("org/m", commit_m, 5);
}

static void test_tampered_byte(void)
{
    char err[1024];
    struct shoal_publish_result res;

    hubstub_post(&stub, "/_stub/reset", "{}");
    unlink(outp);
    hubstub_post(&stub, "/_stub/faults",
                 "[{\"kind\":\"flip\",\"file\":\"model-00002-of-00002.safetensors\",\"offset\":12345}]");
    CHECK_EQ(publish("org/m", NULL, err, sizeof(err), &res, NULL), SHOAL_EBADHASH);
    CHECK(strstr(err, "model-00002-of-00002.safetensors") && strstr(err, "sha256"));
    fprintf(stderr, "  e.g.: %s\n", err);
    CHECK(access(outp, F_OK) != 0);

    /* A git-stored file is checked against its blob id. */
    hubstub_post(&stub, "/_stub/reset", "{}");
    hubstub_post(&stub, "/_stub/faults",
                 "[{\"kind\":\"flip\",\"file\":\"config.json\",\"offset\":5}]");
    CHECK_EQ(publish("org/m", NULL, err, sizeof(err), &res, NULL), SHOAL_EBADHASH);
    CHECK(strstr(err, "config.json") && strstr(err, "blob id"));
    CHECK(access(outp, F_OK) != 0);
}

static void test_errors_named(void)
{
    char err[1024];
    struct shoal_publish_result res;

    hubstub_post(&stub, "/_stub/reset", "{}");
    CHECK_EQ(publish("org/m@nope", NULL, err, sizeof(err), &res, NULL), SHOAL_ENOTFOUND);
    CHECK(strstr(err, "org/m@nope"));
    CHECK_EQ(publish("org/p", NULL, err, sizeof(err), &res, NULL), SHOAL_EPERM);
    CHECK(strstr(err, "org/p") && strstr(err, "token"));
    CHECK_EQ(publish("org/p", "tok", err, sizeof(err), &res, NULL), 0);
    CHECK_EQ(res.nfiles, 3);
}

static void test_dataset(void)
{
    char err[1024];
    struct shoal_publish_result res;
    struct shoal_manifest *m = NULL;
    size_t n;
    uint8_t *bytes;

    hubstub_post(&stub, "/_stub/reset", "{}");
    as_dataset = true;
    CHECK_EQ(publish("org/d", NULL, err, sizeof(err), &res, NULL), 0);
    /* The same name as a model does not exist. */
    as_dataset = false;
    CHECK_EQ(publish("org/d", NULL, err, sizeof(err), NULL, NULL), SHOAL_ENOTFOUND);
    bytes = slurp(outp, &n);
    REQUIRE(bytes);
    CHECK_EQ(shoal_manifest_parse(&m, bytes, n, NULL, NULL), 0);
    CHECK(m && shoal_manifest_repo_type(m) == SHOAL_REPO_DATASET);
    CHECK(m && strcmp(shoal_manifest_commit(m), res.commit) == 0);
    shoal_manifest_free(m);
    free(bytes);
}

/* `--out` writes a temp file next to the manifest and renames it. A
 * symlink planted at the old guessable temp name (<out>.tmp.<pid>) was
 * followed: the manifest overwrote the link's target and the link itself
 * was renamed into place. */
static void test_out_ignores_planted_link(void)
{
    char err[1024], link[400], victim[400];
    struct shoal_publish_result res;
    struct stat st;
    size_t n;
    uint8_t *v;

    hubstub_post(&stub, "/_stub/reset", "{}");
    unlink(outp);
    snprintf(victim, sizeof(victim), "%s/victim.txt", root);
    snprintf(link, sizeof(link), "%s.tmp.%ld", outp, (long)getpid());
    FILE *f = fopen(victim, "w");
    REQUIRE(f);
    fputs("precious\n", f);
    fclose(f);
    unlink(link);
    REQUIRE(symlink(victim, link) == 0);
    CHECK_EQ(publish("org/m@v1", NULL, err, sizeof(err), &res, NULL), 0);
    v = slurp(victim, &n);
    REQUIRE(v);
    CHECK(n == 9 && memcmp(v, "precious\n", 9) == 0);
    free(v);
    CHECK(lstat(outp, &st) == 0 && S_ISREG(st.st_mode));
    CHECK((st.st_mode & 0777) == 0644);
    CHECK(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
    check_manifest_matches_disk("org/m", commit_m, 5);
    unlink(link);
    unlink(victim);
}

/* Fault injection for the next test: this definition takes the place of
 * libc's, and fails for one chosen string only. */
static const char *strdup_fails_for;

char *strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d;

    if (strdup_fails_for && strcmp(s, strdup_fails_for) == 0) {
        errno = ENOMEM;
        return NULL;
    }
    d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* Out of memory copying the repo name once reported success with no
 * manifest written. */
static void test_oom_is_an_error(void)
{
    char err[1024];
    struct shoal_publish_result res;

    unlink(outp);
    strdup_fails_for = "org/m@v1";
    CHECK_EQ(publish("org/m@v1", NULL, err, sizeof(err), &res, NULL), -ENOMEM);
    strdup_fails_for = NULL;
    CHECK(err[0] != '\0');
    CHECK(access(outp, F_OK) != 0);
}

/* publish() of |repo| through the stand-in answering as the control
 * rules |faults| say, after a reset and with no manifest left from before;
 * an error (or a note) is printed after |what|. */
static int publish_faulted(const char *repo, const char *faults, const char *what, char *err,
                           size_t errlen, struct shoal_publish_result *res)
{
    int rv;

    hubstub_post(&stub, "/_stub/reset", "{}");
    unlink(outp);
    hubstub_post(&stub, "/_stub/faults", faults);
    memset(res, 0, sizeof *res);
    rv = publish(repo, NULL, err, errlen, res, NULL);
    if (err[0])
        fprintf(stderr, "  %s: %s\n", what, err);
    return rv;
}

/* QA K14: a gateway that ignores ?blobs=true (siblings without size or
 * ids) is published from the /tree listing, or, without /tree either, from
 * a HEAD of each file; one where that fails too gets a message naming the
 * gateway and what it lacks. */
static void test_gateway_without_blobs(void)
{
    char err[1024];
    struct shoal_publish_result res;

    /* With /tree; then (QA K14 left-over) a gateway without /tree either:
     * each file's size and id come from a HEAD of it (X-Linked-Etag and
     * X-Linked-Size on an LFS file's redirect, ETag and Content-Length on
     * the others), as huggingface_hub reads a file's metadata. */
    static const char *const gateways[] = {
        "[{\"kind\":\"listing\",\"noblobs\":true}]",
        "[{\"kind\":\"listing\",\"noblobs\":true,\"notree\":true}]",
    };
    for (int g = 0; g < 2; g++) {
        CHECK_EQ(publish_faulted("org/m@v1", gateways[g], g ? "without /tree" : "with /tree", err,
                                 sizeof err, &res), 0);
        CHECK_EQ(res.nfiles, 5);
        if (res.nfiles == 5)
            check_manifest_matches_disk("org/m", commit_m, 5);
        CHECK_EQ(hubstub_stat(&stub, NULL, "heads"), g ? 5 : 0);
    }

    /* ... and when the HEADs fail too, the message says what was tried. */
    hubstub_post(&stub, "/_stub/faults",
                 "[{\"kind\":\"status\",\"code\":404,\"times\":-1,\"match\":\"/resolve/\"}]");
    CHECK(publish("org/m@v1", NULL, err, sizeof(err), &res, NULL) != 0);
    fprintf(stderr, "  without /tree or HEAD: %s\n", err);
    CHECK(strstr(err, stub.url) && strstr(err, "ignores ?blobs=true") && strstr(err, "/tree/") &&
          strstr(err, "HTTP 404") && strstr(err, "HEAD"));

    /* Siblings cut short name only some files: no HEAD can list the rest. */
    CHECK(publish_faulted("org/m@v1", "[{\"kind\":\"listing\",\"siblings_max\":0,\"notree\":true}]",
                          "no siblings, no /tree", err, sizeof err, &res) != 0);
    CHECK(strstr(err, "lists no files") && strstr(err, "HTTP 404"));
    CHECK_EQ(hubstub_stat(&stub, NULL, "heads"), 0);
}

static char commit_big[41];
static char commit_q1[41], commit_q2[41];

/* Publishes |repo| to outp with |previous| earlier manifests, the stub's
 * counters reset first. */
static int publish_prev(const char *repo, const char *const *previous, size_t nprevious,
                        bool force, char *err, size_t errlen, struct shoal_publish_result *res)
{
    struct shoal_publish_opts o;

    hubstub_post(&stub, "/_stub/reset", "{}");
    memset(&o, 0, sizeof(o));
    o.repo = repo;
    o.key_path = keyp;
    o.out_path = outp;
    o.hub.endpoint = stub.url;
    o.hub.token = "";
    o.hub.seed = 7;
    o.params = &small;
    o.progress = SHOAL_PUBLISH_PROGRESS_NONE;
    o.previous = previous;
    o.nprevious = nprevious;
    o.force = force;
    o.errbuf = err;
    o.errlen = errlen;
    err[0] = '\0';
    return shoal_publish_run(&o, res);
}

/* QA F7: a new commit whose LFS files the last one had too (same sha256
 * and size) streams only what changed: the chunk lists of the others come
 * from the earlier manifest of this key (--previous, or the --out file of
 * the last run). Before, every publish read the whole release from the
 * Hub. A --previous signed by another key, or chunked otherwise, is
 * refused. */
static void test_previous_manifest(void)
{
    char err[1024], prevp[320], otherp[320], otherk[320];
    struct shoal_publish_result res;
    const char *prev[1] = {prevp};

    snprintf(prevp, sizeof prevp, "%s/q1.manifest", root);
    unlink(outp);
    REQUIRE(publish_prev("org/q@q1", NULL, 0, false, err, sizeof err, &res) == 0);
    CHECK_EQ(res.reused_files, 0);
    REQUIRE(rename(outp, prevp) == 0);
    /* q2 adds a file; its two shards are q1's. */
    CHECK_EQ(publish_prev("org/q@q2", prev, 1, false, err, sizeof err, &res), 0);
    if (err[0])
        fprintf(stderr, "  %s\n", err);
    CHECK(strcmp(res.commit, commit_q2) == 0);
    CHECK_EQ(res.reused_files, 2);
    CHECK(res.reused_bytes > 0 && res.reused_bytes < res.total_bytes);
    CHECK_EQ(hubstub_stat(&stub, NULL, "total_bytes"),
             (long long)(res.total_bytes - res.reused_bytes));
    check_manifest_matches_disk("org/q", commit_q2, 6);
    /* The --out file of the last run counts too: q2 again, nothing given. */
    CHECK_EQ(publish_prev("org/q@q2", NULL, 0, false, err, sizeof err, &res), 0);
    CHECK_EQ(res.reused_files, 2);
    /* ... but not with --force, which streams everything. */
    CHECK_EQ(publish_prev("org/q@q2", NULL, 0, true, err, sizeof err, &res), 0);
    CHECK_EQ(res.reused_files, 0);
    CHECK_EQ(hubstub_stat(&stub, NULL, "total_bytes"), (long long)res.total_bytes);
    /* Another publisher's manifest is not taken as ours. */
    struct shoal_pubkey opk;
    struct shoal_seckey osk;
    snprintf(otherk, sizeof otherk, "%s/other.key", root);
    snprintf(otherp, sizeof otherp, "%s/other.manifest", root);
    REQUIRE(shoal_key_generate(&opk, &osk) == 0);
    REQUIRE(shoal_seckey_save(otherk, &osk) == 0);
    {
        struct shoal_publish_opts o;
        memset(&o, 0, sizeof o);
        o.repo = "org/q@q1";
        o.key_path = otherk;
        o.out_path = otherp;
        o.hub.endpoint = stub.url;
        o.hub.token = "";
        o.params = &small;
        o.progress = SHOAL_PUBLISH_PROGRESS_NONE;
        o.errbuf = err;
        o.errlen = sizeof err;
        REQUIRE(shoal_publish_run(&o, NULL) == 0);
    }
    prev[0] = otherp;
    CHECK(publish_prev("org/q@q2", prev, 1, true, err, sizeof err, &res) != 0);
    fprintf(stderr, "  another key's manifest: %s\n", err);
    CHECK(strstr(err, otherp) && strstr(err, "another publisher key"));
}

/* QA K13: the Hub truncates the siblings of a large repo; a publish lists
 * /tree (every page) instead and misses no file. */
static void test_truncated_siblings(void)
{
    char err[1024];
    struct shoal_publish_result res;

    CHECK_EQ(publish_faulted("org/big",
                             "[{\"kind\":\"listing\",\"siblings_max\":1000,\"tree_page\":300}]",
                             "publish", err, sizeof err, &res), 0);
    /* 1100 parts, config.json, tokenizer.json, model.safetensors. */
    CHECK_EQ(res.nfiles, 1103);
    CHECK(strcmp(res.commit, commit_big) == 0);
    /* The revision, then four pages of /tree, each asked once. */
    CHECK_EQ(hubstub_stat(&stub, "requests", "api"), 5);

    /* No siblings at all: listed too; next pages given as paths. */
    CHECK_EQ(publish_faulted("org/m@v1",
                             "[{\"kind\":\"listing\",\"siblings_max\":0,\"tree_page\":2,"
                             "\"tree_link\":\"relative\"}]",
                             "publish", err, sizeof err, &res), 0);
    CHECK_EQ(res.nfiles, 5);
    if (res.nfiles == 5)
        check_manifest_matches_disk("org/m", commit_m, 5);
    CHECK_EQ(hubstub_stat(&stub, "requests", "api"), 4);

    /* A next page on another host (a gateway passing the Hub's own Link
     * on): its API path is asked of the endpoint, the token stays home. */
    CHECK_EQ(publish_faulted("org/m@v1",
                             "[{\"kind\":\"listing\",\"siblings_max\":0,\"tree_page\":2,"
                             "\"tree_link\":\"http://other.invalid:1\"}]",
                             "next page elsewhere", err, sizeof err, &res), 0);
    CHECK_EQ(res.nfiles, 5);
    CHECK_EQ(hubstub_stat(&stub, "requests", "api"), 4);
}

/* QA K12: a file shoal cannot carry is named, with the rule it breaks. */
static void test_unsafe_names_named(void)
{
    char err[1024];
    struct shoal_publish_result res;

    hubstub_post(&stub, "/_stub/reset", "{}");
    CHECK(publish("org/long", NULL, err, sizeof(err), &res, NULL) != 0);
    fprintf(stderr, "  long path: %s\n", err);
    CHECK(strstr(err, "'d0aaaaaaaa") && strstr(err, "1096 bytes") && strstr(err, "limit of 1024"));
    CHECK(publish("org/bslash", NULL, err, sizeof(err), &res, NULL) != 0);
    fprintf(stderr, "  backslash: %s\n", err);
    CHECK(strstr(err, "'dir\\name.json'") && strstr(err, "backslash"));
}

/* QA K15: a token with whitespace around it (a template's, an editor's)
 * is trimmed, from a file and from $HF_TOKEN; one with a bad byte left is
 * refused naming where it came from. */
static int publish_tok(const char *token_file, const char *env, char *err, size_t errlen)
{
    struct shoal_publish_opts o;
    struct shoal_publish_result res;
    int rv;

    memset(&o, 0, sizeof(o));
    o.repo = "org/p";
    o.key_path = keyp;
    o.out_path = outp;
    o.hub.endpoint = stub.url;
    o.hub.token_file = token_file;
    o.hub.backoff_base_ms = 20;
    o.params = &small;
    o.progress = SHOAL_PUBLISH_PROGRESS_NONE;
    o.errbuf = err;
    o.errlen = errlen;
    err[0] = '\0';
    if (env)
        setenv("HF_TOKEN", env, 1);
    rv = shoal_publish_run(&o, &res);
    unsetenv("HF_TOKEN");
    if (rv == 0 && err[0]) /* a note; a failure is the caller's to show */
        fprintf(stderr, "  %s: %s\n", token_file ? token_file : env ? "$HF_TOKEN" : "env", err);
    return rv;
}

/* Writes |text| as the whole of file |path| (a token file). */
static void put_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    REQUIRE(f);
    fputs(text, f);
    REQUIRE(fclose(f) == 0);
}

static void test_token_trimmed(void)
{
    char err[1024], tf[300];

    hubstub_post(&stub, "/_stub/reset", "{}");
    snprintf(tf, sizeof tf, "%s/token", root);
    put_text(tf, "  tok  \n");
    CHECK_EQ(publish_tok(tf, NULL, err, sizeof err), 0);
    CHECK_EQ(publish_tok(NULL, " tok\t", err, sizeof err), 0);
    CHECK(publish_tok(NULL, "to k", err, sizeof err) != 0);
    fprintf(stderr, "  e.g.: %s\n", err);
    CHECK(strstr(err, "$HF_TOKEN") && strstr(err, "HTTP header"));
    put_text(tf, "tok\x01\n");
    CHECK(publish_tok(tf, NULL, err, sizeof err) != 0);
    fprintf(stderr, "  e.g.: %s\n", err);
    CHECK(strstr(err, tf) && strstr(err, "HTTP header"));
}

/* huggingface_hub's login token, after $HF_TOKEN: $HF_TOKEN_PATH, else
 * $HF_HOME/token, trimmed and checked like the others, a missing one no
 * token; a bad one named by $HF_TOKEN_PATH is refused naming the file and
 * the variable, one found by default is ignored. */
static void test_token_login_files(void)
{
    struct shoal_hub_config c;
    char msg[512], home[300], tf[320], tp[320];

    shoal_hub_config_default(&c);
    snprintf(home, sizeof home, "%s/hfhome", root);
    REQUIRE(mkdir(home, 0700) == 0 || errno == EEXIST);
    snprintf(tf, sizeof tf, "%s/token", home);
    snprintf(tp, sizeof tp, "%s/token-path", root);
    unsetenv("HF_TOKEN_PATH");
    setenv("HF_HOME", home, 1);
    CHECK_EQ(shoal_hub_token_verify(&c, msg, sizeof msg), 0); /* none there */
    put_text(tf, "\n to k \n");
    /* A bad login file nobody named is ignored (shoald logs it): a node
     * must not fail to start, even for public models, over a file it was
     * not told to use. */
    CHECK_EQ(shoal_hub_token_verify(&c, msg, sizeof msg), 0);
    /* $HF_TOKEN_PATH first: its good token, the bad one never read. */
    put_text(tp, "  tok\n");
    setenv("HF_TOKEN_PATH", tp, 1);
    CHECK_EQ(shoal_hub_token_verify(&c, msg, sizeof msg), 0);
    /* ... and $HF_TOKEN before both. */
    setenv("HF_TOKEN_PATH", tf, 1);
    setenv("HF_TOKEN", "tok", 1);
    CHECK_EQ(shoal_hub_token_verify(&c, msg, sizeof msg), 0);
    unsetenv("HF_TOKEN");
    CHECK(shoal_hub_token_verify(&c, msg, sizeof msg) == SHOAL_EPROTO);
    CHECK(strstr(msg, "$HF_TOKEN_PATH") != NULL);
    unsetenv("HF_HOME");
    setenv("HF_TOKEN_PATH", "/nonexistent/shoal-tests/token", 1);
}

/* $HUGGING_FACE_HUB_TOKEN, the older name huggingface_hub still reads
 * (deprecated): after $HF_TOKEN (an empty one counts as unset), before the
 * login file; a bad one is refused naming it. */
static void test_token_old_name(void)
{
    char err[1024], tp[320];

    hubstub_post(&stub, "/_stub/reset", "{}");
    snprintf(tp, sizeof tp, "%s/old-name-login", root);
    put_text(tp, "tok-old\n");
    setenv("HF_TOKEN_PATH", tp, 1);
    /* The private repo with only the old name set: its token is sent. */
    setenv("HUGGING_FACE_HUB_TOKEN", " tok\n", 1);
    CHECK_EQ(publish_tok(NULL, NULL, err, sizeof err), 0);
    CHECK_EQ(publish_tok(NULL, "", err, sizeof err), 0);
    /* $HF_TOKEN before it. */
    setenv("HUGGING_FACE_HUB_TOKEN", "tok-wrong", 1);
    CHECK_EQ(publish_tok(NULL, "tok", err, sizeof err), 0);
    setenv("HUGGING_FACE_HUB_TOKEN", "to k", 1);
    CHECK(publish_tok(NULL, NULL, err, sizeof err) != 0);
    fprintf(stderr, "  e.g.: %s\n", err);
    CHECK(strstr(err, "$HUGGING_FACE_HUB_TOKEN") && strstr(err, "HTTP header"));
    unsetenv("HUGGING_FACE_HUB_TOKEN");
    setenv("HF_TOKEN_PATH", "/nonexistent/shoal-tests/token", 1);
}

int main(int argc, char **argv)
{
    struct shoal_seckey sk;

    if (argc < 3) {
        fprintf(stderr, "usage: test_hub_publish PYTHON HUBDIR\n");
        return 2;
    }
    py = argv[1];
    hubdir = argv[2];
    /* Not the token a login left on this machine. */
    setenv("HF_TOKEN_PATH", "/nonexistent/shoal-tests/token", 1);
    unsetenv("HUGGING_FACE_HUB_TOKEN");
    shoal_hash_init();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(root, sizeof(root), "/tmp/shoal-test-pub-XXXXXX");
    REQUIRE(mkdtemp(root));
    snprintf(keyp, sizeof(keyp), "%s/publisher.key", root);
    snprintf(outp, sizeof(outp), "%s/release.manifest", root);
    REQUIRE(shoal_key_generate(&pub, &sk) == 0);
    REQUIRE(shoal_seckey_save(keyp, &sk) == 0);
    REQUIRE(hubstub_genrepo(py, hubdir, root, "org/m", commit_m, "--size", "1500K", "--shards",
                             "2", "--tag", "v1", NULL) == 0);
    REQUIRE(hubstub_genrepo(py, hubdir, root, "org/p", NULL, "--size", "100K", "--shards", "1",
                             "--private", NULL) == 0);
    REQUIRE(hubstub_genrepo(py, hubdir, root, "org/d", NULL, "--size", "100K", "--shards", "1",
                             "--dataset", NULL) == 0);
    REQUIRE(hubstub_genrepo(py, hubdir, root, "org/big", commit_big, "--size", "100K",
                             "--shards", "1", "--extra-files", "1100", NULL) == 0);
    {
        /* 11 folders of 99 bytes and a file: a path of 1096 bytes. */
        char lp[1200];
        size_t n = 0;
        for (int d = 0; d < 11; d++)
            n += (size_t)snprintf(lp + n, sizeof lp - n, "d%d%s/", d, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" + 2);
        snprintf(lp + n, sizeof lp - n, "f.json");
        REQUIRE(hubstub_genrepo(py, hubdir, root, "org/long", NULL, "--size", "100K",
                                "--shards", "1", "--extra-path", lp, NULL) == 0);
    }
    REQUIRE(hubstub_genrepo(py, hubdir, root, "org/q", commit_q1, "--size", "300K", "--shards",
                             "2", "--tag", "q1", NULL) == 0);
    REQUIRE(hubstub_genrepo(py, hubdir, root, "org/q", commit_q2, "--size", "300K", "--shards",
                             "2", "--tag", "q2", "--extra-path", "notes/extra.json", NULL) == 0);
    REQUIRE(hubstub_genrepo(py, hubdir, root, "org/bslash", NULL, "--size", "100K",
                             "--shards", "1", "--extra-path", "dir\\name.json", NULL) == 0);
    REQUIRE(hubstub_start(&stub, py, hubdir, root, "--token", "tok", NULL) == 0);

    RUN(test_publish_ok);
    RUN(test_publish_through_faults);
    RUN(test_tampered_byte);
    RUN(test_errors_named);
    RUN(test_dataset);
    RUN(test_out_ignores_planted_link);
    RUN(test_oom_is_an_error);
    RUN(test_gateway_without_blobs);
    RUN(test_truncated_siblings);
    RUN(test_unsafe_names_named);
    RUN(test_token_trimmed);
    RUN(test_token_login_files);
    RUN(test_token_old_name);
    RUN(test_previous_manifest);

    hubstub_stop(&stub);
    t_rmtree(root);
    curl_global_cleanup();
    return t_done();
}
