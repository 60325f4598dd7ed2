/* SPDX-License-Identifier: MIT */
/* The chunk store and the HF cache layout: chunks put in any order end up as
 * published files with the right bytes (relative symlinks that resolve, refs
 * written, nothing half-written under a final name); a wrong chunk is
 * refused and not written; a store resumes after a clean close and after a
 * crash, and a damaged sidecar is discarded rather than trusted; a second
 * release fills shared chunks from the first locally; a file whose sha256
 * disagrees with the manifest is not published; concurrent puts; a file is
 * handed out (same inode, whole bytes) as soon as its sha256 matches, before
 * it is published, and stays so when publishing fails; memory mode.
 *
 * Usage: test_store            all tests that need no privileges
 *        test_store diskfull   disk full (private tmpfs when root, else
 *                              RLIMIT_FSIZE); exit 77 when neither works
 *        test_store_failalloc failalloc   every allocation failure of a
 *                              pull (the build with failalloc.c)
 *        test_store rotfull    no room to repair a file found changed on
 *                              disk, also across restarts (private
 *                              tmpfs: root, else exit 77)
 */
#include "t.h"
#include "t_fs.h"

#include "cdc.h"
#include "error.h"
#include "hash.h"
#include "hfcache.h"
#include "keys.h"
#include "manifest.h"
#include "store.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXF 8

static const struct shoal_cdc_params params = {512, 2048, 8192};
static struct shoal_seckey sk;
static char root[64];
static int dir_seq;

static const char C1[] = "0123456789abcdef0123456789abcdef01234567";
static const char C2[] = "89abcdef0123456789abcdef0123456789abcdef";
static const char C3[] = "fedcba9876543210fedcba9876543210fedcba98";

struct tfile {
    const char *path;
    uint8_t *data;
    size_t size;
    bool git;  /* kept in git by the Hub: the manifest gives a blob id */
};

/* A stand-in for the git blob sha1 of |data| (the store only names blobs
 * by it; shoal publish checks the real one against the bytes). */
static void fake_blob_id(uint8_t out[20], const uint8_t sha[32])
{
    for (int i = 0; i < 20; i++)
        out[i] = sha[i] ^ 0xa5;
}

struct rel {
    struct shoal_manifest *m;
    struct shoal_buf signed_bytes;
    struct tfile f[MAXF];
    int nf;
};

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint8_t *gen(size_t n, uint64_t seed)
{
    uint8_t *p = malloc(n);

    REQUIRE(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(rng(&seed) >> 56);
    return p;
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);

    REQUIRE(q);
    if (n)
        memcpy(q, p, n);
    return q;
}

static int add_chunk_cb(void *user, uint64_t off, uint32_t len, const uint8_t id[32])
{
    (void)off;
    return shoal_manifest_add_chunk(user, id, len);
}

/* Builds and signs a manifest for the files already in |r|, then parses the
 * signed bytes back (what a node holds). |bad_sha| names a file whose
 * manifest sha256 is made wrong, or -1. */
static void rel_finish(struct rel *r, enum shoal_repo_type t, const char *repo,
                       const char *commit, int bad_sha)
{
    struct shoal_manifest *m = NULL;
    struct shoal_chunker *ch = NULL;

    REQUIRE(shoal_manifest_new(&m, t, repo, commit, &params) == 0);
    REQUIRE(shoal_chunker_new(&ch, &params) == 0);
    for (int i = 0; i < r->nf; i++) {
        struct shoal_sha256 sh;
        uint8_t sha[32];

        shoal_sha256_init(&sh);
        shoal_sha256_update(&sh, r->f[i].data, r->f[i].size);
        shoal_sha256_final(&sh, sha);
        if (i == bad_sha)
            sha[5] ^= 0x40;
        REQUIRE(shoal_manifest_add_file(m, r->f[i].path, r->f[i].size, sha) == 0);
        if (r->f[i].git) {
            uint8_t blob[20];

            fake_blob_id(blob, sha);
            REQUIRE(shoal_manifest_set_blob_id(m, blob) == 0);
        }
        REQUIRE(shoal_chunker_feed(ch, r->f[i].data, r->f[i].size, add_chunk_cb, m) == 0);
        REQUIRE(shoal_chunker_finish(ch, add_chunk_cb, m, NULL, NULL) == 0);
    }
    shoal_buf_init(&r->signed_bytes, 64u << 20);
    REQUIRE(shoal_manifest_sign(m, &sk, 1700000000, &r->signed_bytes) == 0);
    shoal_manifest_free(m);
    shoal_chunker_free(ch);
    REQUIRE(shoal_manifest_parse(&r->m, r->signed_bytes.data, r->signed_bytes.len, NULL,
                                 NULL) == 0);
}

static void rel_add(struct rel *r, const char *path, uint8_t *data, size_t size)
{
    REQUIRE(r->nf < MAXF);
    r->f[r->nf].path = path;
    r->f[r->nf].data = data;
    r->f[r->nf].size = size;
    r->f[r->nf].git = false;
    r->nf++;
}

static void rel_free(struct rel *r)
{
    shoal_manifest_free(r->m);
    shoal_buf_free(&r->signed_bytes);
    for (int i = 0; i < r->nf; i++)
        free(r->f[i].data);
    memset(r, 0, sizeof *r);
}

/* The standard release: a small config, a random "shard", a nested file with
 * a long zero run (the same chunk id at many offsets), an exact copy of the
 * shard under another path (one blob, two links) and an empty file. */
static void rel_std(struct rel *r, const char *repo, const char *commit, int bad_sha,
                    uint64_t seed)
{
    static const char cfg[] = "{\"architectures\": [\"Tiny\"], \"hidden_size\": 64}\n";
    uint8_t *shard = gen(200000, seed);
    uint8_t *nested = gen(120000, seed + 1);

    memset(nested + 30000, 0, 60000);
    memset(r, 0, sizeof *r);
    rel_add(r, "config.json", dup_bytes((const uint8_t *)cfg, sizeof cfg - 1), sizeof cfg - 1);
    rel_add(r, "model.safetensors", shard, 200000);
    rel_add(r, "sub/dir/weights.bin", nested, 120000);
    rel_add(r, "copy/model.safetensors", dup_bytes(shard, 200000), 200000);
    rel_add(r, "empty.txt", dup_bytes(NULL, 0), 0);
    rel_finish(r, SHOAL_REPO_MODEL, repo, commit, bad_sha);
}

static const uint8_t *chunk_bytes(const struct rel *r, uint32_t i)
{
    const struct shoal_mf_chunk *c = shoal_manifest_chunk(r->m, i);

    return r->f[c->file].data + c->offset;
}

static int put(struct shoal_store *s, const struct rel *r, uint32_t i)
{
    return shoal_store_put_chunk(s, i, chunk_bytes(r, i), shoal_manifest_chunk(r->m, i)->len);
}

/* Puts every chunk of |r| that |s| does not have yet (each must be taken);
 * returns how many were put. */
static uint32_t put_missing(struct shoal_store *s, const struct rel *r)
{
    uint32_t puts = 0;

    for (uint32_t i = 0; i < shoal_manifest_nchunks(r->m); i++) {
        if (shoal_store_has(s, i))
            continue;
        CHECK_EQ(put(s, r, i), 0);
        puts++;
    }
    return puts;
}

static void shuffle(uint32_t *v, uint32_t n, uint64_t seed)
{
    for (uint32_t i = 0; i < n; i++)
        v[i] = i;
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = (uint32_t)(rng(&seed) % i), t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

static char *new_cache(void)
{
    static char path[128];

    snprintf(path, sizeof path, "%s/cache%d", root, dir_seq++);
    return path;
}

static bool exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* True when |path| (symlinks followed) holds exactly |n| bytes |p|. */
static bool file_is(const char *path, const uint8_t *p, size_t n)
{
    FILE *fp = fopen(path, "rb");
    uint8_t *q = malloc(n + 1);
    bool ok = false;

    if (fp && q)
        ok = fread(q, 1, n + 1, fp) == n && memcmp(p, q, n) == 0;
    if (fp)
        fclose(fp);
    free(q);
    return ok;
}

static void repo_path(char *out, size_t cap, const char *cache, const struct rel *r,
                      const char *rest)
{
    char folder[256];

    REQUIRE(shoal_hf_repo_folder(folder, sizeof folder, shoal_manifest_repo_type(r->m),
                                 shoal_manifest_repo_id(r->m)) == 0);
    snprintf(out, cap, "%s/%s/%s", cache, folder, rest);
}

static void snap_path(char *out, size_t cap, const char *cache, const struct rel *r, int f)
{
    char rest[512];

    snprintf(rest, sizeof rest, "snapshots/%s/%s", shoal_manifest_commit(r->m), r->f[f].path);
    repo_path(out, cap, cache, r, rest);
}

static void blob_path(char *out, size_t cap, const char *cache, const struct rel *r, int f,
                      bool incomplete)
{
    char rest[256];

    const struct shoal_mf_file *mf = shoal_manifest_file(r->m, (uint32_t)f);

    /* A partial file is shoal's own (.shoal/), never huggingface_hub's
     * blobs/<etag>.incomplete. */
    if (incomplete)
        REQUIRE(shoal_hf_partial_path(rest, sizeof rest, mf, NULL) == 0);
    else
        REQUIRE(shoal_hf_blob_path(rest, sizeof rest, mf, false) == 0);
    repo_path(out, cap, cache, r, rest);
}

/* Every file of |r| is published in |cache| with its exact bytes. */
static void check_published(const char *cache, const struct rel *r)
{
    char p[1024], target[1024];
    ssize_t n;

    CHECK_EQ(shoal_hf_snapshot_check(cache, r->m, NULL), 0);
    for (int f = 0; f < r->nf; f++) {
        snap_path(p, sizeof p, cache, r, f);
        CHECK(file_is(p, r->f[f].data, r->f[f].size));
        n = readlink(p, target, sizeof target - 1);
        CHECK(n > 0);
        if (n > 0) {
            target[n] = '\0';
            CHECK(target[0] != '/');
            CHECK(strncmp(target, "../../", 6) == 0);
        }
        blob_path(p, sizeof p, cache, r, f, true);
        CHECK(!exists(p));
    }
}

struct events {
    int done[MAXF];
    int bad[MAXF];
    pthread_mutex_t mu;
};

static void on_file(void *user, uint32_t file, int status)
{
    struct events *ev = user;

    pthread_mutex_lock(&ev->mu);
    if (file < MAXF) {
        if (status == 0)
            ev->done[file]++;
        else if (status == SHOAL_EBADHASH)
            ev->bad[file]++;
    }
    pthread_mutex_unlock(&ev->mu);
}

/* ---- tests ---- */

static void test_hfcache_names(void)
{
    char out[256];
    uint8_t sha[32];

    memset(sha, 0xab, sizeof sha);
    CHECK_EQ(shoal_hf_repo_folder(out, sizeof out, SHOAL_REPO_MODEL, "org/name"), 0);
    CHECK(strcmp(out, "models--org--name") == 0);
    CHECK_EQ(shoal_hf_repo_folder(out, sizeof out, SHOAL_REPO_DATASET, "squad"), 0);
    CHECK(strcmp(out, "datasets--squad") == 0);
    CHECK_EQ(shoal_hf_repo_folder(out, sizeof out, SHOAL_REPO_MODEL, "a/b/c"), SHOAL_EBADPATH);
    CHECK_EQ(shoal_hf_repo_folder(out, sizeof out, SHOAL_REPO_MODEL, "../x"), SHOAL_EBADPATH);
    CHECK_EQ(shoal_hf_repo_folder(out, sizeof out, SHOAL_REPO_MODEL, "a--b/c"), SHOAL_EBADPATH);
    CHECK_EQ(shoal_hf_repo_folder(out, 8, SHOAL_REPO_MODEL, "org/name"), SHOAL_ELIMIT);

    struct shoal_mf_file mf = {.path = "a.json"};

    memcpy(mf.sha256, sha, 32);
    CHECK_EQ(shoal_hf_link_target(out, sizeof out, &mf), 0);
    CHECK(strncmp(out, "../../blobs/abab", 16) == 0);
    mf.path = "x/y/z.bin";
    CHECK_EQ(shoal_hf_link_target(out, sizeof out, &mf), 0);
    CHECK(strncmp(out, "../../../../blobs/abab", 22) == 0);
    CHECK_EQ(strlen(out), 18 + 64);
    CHECK_EQ(shoal_hf_blob_path(out, sizeof out, &mf, true), 0);
    CHECK(strlen(out) == 6 + 64 + 11 && strcmp(out + 70, ".incomplete") == 0);
    CHECK_EQ(shoal_hf_partial_path(out, sizeof out, &mf, NULL), 0);
    CHECK(strncmp(out, ".shoal/abab", 11) == 0 && strlen(out) == 7 + 64 + 11 &&
          strcmp(out + 71, ".incomplete") == 0);
    CHECK_EQ(shoal_hf_partial_path(out, sizeof out, &mf, "0123456789abcdef0123"), 0);
    CHECK(strcmp(out + 71, ".0123456789abcdef.incomplete") == 0);
    CHECK_EQ(shoal_hf_partial_path(out, 20, &mf, NULL), SHOAL_ELIMIT);
    /* A file kept in git is named by its git blob sha1, as huggingface_hub
     * names it (the Hub's ETag for it). */
    mf.has_blob_id = true;
    memset(mf.blob_id, 0xcd, 20);
    CHECK_EQ(shoal_hf_blob_path(out, sizeof out, &mf, false), 0);
    CHECK(strlen(out) == 6 + 40 && strncmp(out, "blobs/cdcd", 10) == 0);
    CHECK_EQ(shoal_hf_link_target(out, sizeof out, &mf), 0);
    CHECK(strlen(out) == 4 * 3 + 6 + 40 && strcmp(out + 18, "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd") == 0);
    CHECK_EQ(shoal_hf_partial_path(out, sizeof out, &mf, NULL), 0);
    CHECK(strcmp(out + 7 + 40, ".incomplete") == 0);

    CHECK(shoal_hf_branch_ok("main"));
    CHECK(shoal_hf_branch_ok("refs/pr/1") && shoal_hf_branch_ok("v1.0"));
    CHECK(!shoal_hf_branch_ok("../x") && !shoal_hf_branch_ok("a//b") &&
          !shoal_hf_branch_ok("/a") && !shoal_hf_branch_ok("") && !shoal_hf_branch_ok("a b"));
    /* What git and the Hub take (QA K3), and what git refuses. */
    CHECK(shoal_hf_branch_ok("v1.0+cu118") && shoal_hf_branch_ok("release@2024") &&
          shoal_hf_branch_ok("a,b") && shoal_hf_branch_ok("\xc3\x9c" "BER") &&
          shoal_hf_branch_ok("feat/x_y-z"));
    CHECK(!shoal_hf_branch_ok("a..b") && !shoal_hf_branch_ok("a@{1}") &&
          !shoal_hf_branch_ok("@") && !shoal_hf_branch_ok("-x") && !shoal_hf_branch_ok("x.") &&
          !shoal_hf_branch_ok("x.lock") && !shoal_hf_branch_ok("a/.hidden") &&
          !shoal_hf_branch_ok("a~1") && !shoal_hf_branch_ok("a^") && !shoal_hf_branch_ok("a:b") &&
          !shoal_hf_branch_ok("a?") && !shoal_hf_branch_ok("a*") && !shoal_hf_branch_ok("a[") &&
          !shoal_hf_branch_ok("a\\b") && !shoal_hf_branch_ok("a\tb") &&
          !shoal_hf_branch_ok("a\x7f") && !shoal_hf_branch_ok("\xc3") &&
          !shoal_hf_branch_ok("\xc0\xaf") && !shoal_hf_branch_ok("\xed\xa0\x80") &&
          !shoal_hf_branch_ok("."));

    setenv("HF_HUB_CACHE", "", 1);
    setenv("HF_HOME", "/srv/hf", 1);
    CHECK_EQ(shoal_hf_cache_dir(out, sizeof out, NULL), 0);
    CHECK(strcmp(out, "/srv/hf/hub") == 0);
    /* huggingface_hub's older name, after HF_HUB_CACHE, before HF_HOME (K8). */
    setenv("HUGGINGFACE_HUB_CACHE", "/data/hf", 1);
    CHECK_EQ(shoal_hf_cache_dir(out, sizeof out, NULL), 0);
    CHECK(strcmp(out, "/data/hf") == 0);
    setenv("HF_HUB_CACHE", "/new/hf", 1);
    CHECK_EQ(shoal_hf_cache_dir(out, sizeof out, NULL), 0);
    CHECK(strcmp(out, "/new/hf") == 0);
    setenv("HF_HUB_CACHE", "", 1);
    unsetenv("HUGGINGFACE_HUB_CACHE");
    CHECK_EQ(shoal_hf_cache_dir(out, sizeof out, "/flag/dir"), 0);
    CHECK(strcmp(out, "/flag/dir") == 0);
    unsetenv("HF_HOME");
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/u", 1);
    CHECK_EQ(shoal_hf_cache_dir(out, sizeof out, NULL), 0);
    CHECK(strcmp(out, "/home/u/.cache/huggingface/hub") == 0);
    unsetenv("HOME");
    CHECK_EQ(shoal_hf_cache_dir(out, sizeof out, NULL), SHOAL_ENOTFOUND);
    unsetenv("HF_HUB_CACHE");
}

static void test_publish_random_order(void)
{
    const char *cache = new_cache();
    struct events ev = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct shoal_store_opts o = {.branch = "main", .on_file = on_file, .user = &ev};
    struct shoal_store *s = NULL;
    struct rel r;
    uint32_t *order, n, puts = 0, ndistinct = 0;
    char p[1024], commit[41];
    uint8_t *buf, *bits;
    struct stat a, b;
    int fd = -1;

    rel_std(&r, "org/tiny", C1, -1, 1);
    n = shoal_manifest_nchunks(r.m);
    REQUIRE(shoal_store_open(&s, cache, r.m, &o) == 0);
    /* The empty file is published at open, without a callback. */
    CHECK(shoal_store_file_done(s, 4));
    CHECK(!shoal_store_file_done(s, 1));
    CHECK_EQ(ev.done[4], 0);
    blob_path(p, sizeof p, cache, &r, 1, true);
    CHECK(exists(p)); /* preallocated */

    for (uint32_t i = 0; i < n; i++)
        ndistinct += shoal_store_find_chunk(s, shoal_manifest_chunk(r.m, i)->id) == (int)i;
    CHECK(ndistinct < n); /* zero runs and the copied file repeat chunk ids */

    order = malloc(n * sizeof *order);
    REQUIRE(order);
    shuffle(order, n, 42);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = order[k];
        const struct shoal_mf_chunk *c = shoal_manifest_chunk(r.m, i);

        if (shoal_store_has(s, i))
            continue;
        /* Before its file is complete nothing is under a final name. */
        if (!shoal_store_file_done(s, c->file)) {
            snap_path(p, sizeof p, cache, &r, (int)c->file);
            CHECK(!exists(p));
            blob_path(p, sizeof p, cache, &r, (int)c->file, false);
            CHECK(!exists(p));
            repo_path(p, sizeof p, cache, &r, "refs/main");
            CHECK(!exists(p));
        }
        CHECK_EQ(put(s, &r, i), 0);
        CHECK(shoal_store_has(s, i));
        puts++;
    }
    /* One put per distinct chunk id: repeats were written from one put. */
    CHECK_EQ(puts, ndistinct);
    CHECK_EQ(shoal_store_count(s), n);
    CHECK(shoal_store_complete(s));
    for (int f = 0; f < 4; f++)
        CHECK_EQ(ev.done[f], 1);
    check_published(cache, &r);
    CHECK_EQ(shoal_hf_read_ref(cache, SHOAL_REPO_MODEL, "org/tiny", "main", commit), 0);
    CHECK(strcmp(commit, C1) == 0);

    /* Serving reads back the stored bytes. */
    buf = malloc(params.max_size);
    bits = malloc((n + 7) / 8);
    REQUIRE(buf && bits);
    for (uint32_t i = 0; i < n; i += 7) {
        int len = shoal_store_read_chunk(s, i, buf, params.max_size);
        CHECK_EQ(len, shoal_manifest_chunk(r.m, i)->len);
        CHECK(len > 0 && memcmp(buf, chunk_bytes(&r, i), (size_t)len) == 0);
    }
    CHECK_EQ(shoal_store_read_chunk(s, 0, buf, 1), SHOAL_ELIMIT);
    CHECK_EQ(shoal_store_bitfield(s, bits, (n + 7) / 8), (int)((n + 7) / 8));
    CHECK_EQ(bits[0], 0xff);
    if (n % 8)
        CHECK_EQ(bits[n / 8], (uint8_t)(0xff00u >> (n % 8)));

    /* The loader's descriptor is the published blob itself. */
    CHECK_EQ(shoal_store_file_open(s, 1, &fd), 0);
    snap_path(p, sizeof p, cache, &r, 1);
    CHECK(fd >= 0 && fstat(fd, &a) == 0 && stat(p, &b) == 0 && a.st_ino == b.st_ino);
    CHECK(fd >= 0 && write(fd, "x", 1) < 0);
    if (fd >= 0)
        close(fd);
    CHECK_EQ(shoal_store_file_path(s, 2, p, sizeof p), 0);
    CHECK(file_is(p, r.f[2].data, r.f[2].size));

    shoal_store_free(s);
    /* Reopening a complete release finds everything in place. */
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK(shoal_store_complete(s));
    CHECK_EQ(shoal_store_count(s), n);
    shoal_store_free(s);
    free(order);
    free(buf);
    free(bits);
    rel_free(&r);
}

static void test_bad_chunk(void)
{
    const char *cache = new_cache();
    struct shoal_store *s = NULL;
    struct rel r;
    const struct shoal_mf_chunk *c;
    uint8_t *bad, *back;
    char p[1024];
    int fd;

    rel_std(&r, "org/tiny", C1, -1, 2);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    c = shoal_manifest_chunk(r.m, 3);
    bad = dup_bytes(chunk_bytes(&r, 3), c->len);
    bad[c->len / 2] ^= 1;
    CHECK_EQ(shoal_store_put_chunk(s, 3, bad, c->len), SHOAL_EBADHASH);
    CHECK_EQ(shoal_store_put_chunk(s, 3, chunk_bytes(&r, 3), c->len - 1), SHOAL_EBADHASH);
    CHECK_EQ(shoal_store_put_chunk(s, shoal_manifest_nchunks(r.m), bad, c->len),
             SHOAL_ENOTFOUND);
    CHECK(!shoal_store_has(s, 3));
    CHECK_EQ(shoal_store_count(s), 0);
    CHECK_EQ(shoal_store_read_chunk(s, 3, bad, c->len), SHOAL_ENOTFOUND);

    /* Nothing was written: the preallocated region still reads as zeros. */
    blob_path(p, sizeof p, cache, &r, (int)c->file, true);
    back = malloc(c->len);
    fd = open(p, O_RDONLY);
    REQUIRE(back && fd >= 0);
    CHECK(pread(fd, back, c->len, (off_t)c->offset) == (ssize_t)c->len);
    for (uint32_t i = 0; i < c->len; i++)
        if (back[i] != 0) {
            CHECK(!"bad chunk bytes reached the file");
            break;
        }
    close(fd);
    CHECK_EQ(put(s, &r, 3), 0);
    CHECK(shoal_store_has(s, 3));
    shoal_store_free(s);
    free(bad);
    free(back);
    rel_free(&r);
}

static void test_resume(void)
{
    const char *cache = new_cache();
    struct shoal_store *s = NULL;
    struct rel r;
    uint32_t n, half, had, puts = 0;
    uint8_t *before, *after;

    rel_std(&r, "org/tiny", C1, -1, 3);
    n = shoal_manifest_nchunks(r.m);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    half = n / 2;
    for (uint32_t i = 0; i < half; i++)
        CHECK_EQ(put(s, &r, i), 0);
    had = shoal_store_count(s);
    before = malloc((n + 7) / 8);
    after = malloc((n + 7) / 8);
    REQUIRE(before && after);
    shoal_store_bitfield(s, before, (n + 7) / 8);
    shoal_store_free(s);

    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK_EQ(shoal_store_count(s), had);
    shoal_store_bitfield(s, after, (n + 7) / 8);
    CHECK(memcmp(before, after, (n + 7) / 8) == 0);
    /* Only what is missing is needed: every chunk read back is right. */
    for (uint32_t i = 0; i < n; i++) {
        if (shoal_store_has(s, i))
            continue;
        CHECK(i >= half);
        CHECK_EQ(put(s, &r, i), 0);
        puts++;
    }
    CHECK(puts > 0 && puts <= n - half);
    CHECK(shoal_store_complete(s));
    check_published(cache, &r);
    shoal_store_free(s);
    free(before);
    free(after);
    rel_free(&r);
}

static uint32_t check_bits_true(struct shoal_store *s, const struct rel *r);

/* huggingface_hub's own names for blob |f| of |r|: its resumable download
 * blobs/<sha>.incomplete (|what| "inc") or its lock
 * <cache>/.locks/<repo folder>/<sha>.lock ("lock"). */
static void hf_name(char *out, size_t cap, const char *cache, const struct rel *r, int f,
                    const char *what)
{
    const uint8_t *sha = shoal_manifest_file(r->m, (uint32_t)f)->sha256;
    char folder[256], hex[65];

    if (strcmp(what, "inc") == 0) {
        char rest[256];

        snprintf(rest, sizeof rest, "blobs/");
        shoal_hex(rest + 6, sha, 32);
        strcat(rest, ".incomplete");
        repo_path(out, cap, cache, r, rest);
        return;
    }
    REQUIRE(shoal_hf_repo_folder(folder, sizeof folder, shoal_manifest_repo_type(r->m),
                                 shoal_manifest_repo_id(r->m)) == 0);
    shoal_hex(hex, sha, 32);
    snprintf(out, cap, "%s/.locks/%s/%s.lock", cache, folder, hex);
}

/* Names in the blobs/ folder of |r| that end in ".incomplete". */
static int blobs_incomplete(const char *cache, const struct rel *r)
{
    char p[1024];
    struct dirent *e;
    DIR *d;
    int n = 0;

    repo_path(p, sizeof p, cache, r, "blobs");
    d = opendir(p);
    REQUIRE(d);
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        n += len > 11 && strcmp(e->d_name + len - 11, ".incomplete") == 0;
    }
    closedir(d);
    return n;
}

/*
 * huggingface_hub resumes blobs/<etag>.incomplete from its size and, when
 * that is the file's size, renames it to blobs/<etag> unchecked (under its
 * flock on .locks/<repo folder>/<etag>.lock). A preallocated partial file of
 * shoal's under that name would so be published with its holes (QA F4).
 * Shoal's partial files live under .shoal/; one an older shoald left in
 * blobs/ is moved there at open with its verified chunks; a shorter one
 * (huggingface_hub's own download) is left alone; and a blob is renamed
 * into blobs/ only while shoal holds huggingface_hub's lock for it.
 */
static void test_hf_partial_names(void)
{
    const char *cache = new_cache();
    const struct shoal_mf_file *f1;
    struct shoal_store *s = NULL;
    struct rel r;
    char p[1024], q[1024], msg[512];
    uint32_t half, had, tried = 0;
    struct stat st;
    int fd, lock;

    rel_std(&r, "org/tiny", C1, -1, 11);
    f1 = shoal_manifest_file(r.m, 1);
    REQUIRE(f1->nchunks >= 2);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    half = f1->nchunks / 2;
    for (uint32_t i = 0; i < half; i++)
        CHECK_EQ(put(s, &r, f1->first_chunk + i), 0);
    had = shoal_store_count(s);
    CHECK(had >= half);
    /* Filling: nothing under huggingface_hub's partial name. */
    hf_name(p, sizeof p, cache, &r, 1, "inc");
    CHECK(!exists(p));
    CHECK_EQ(blobs_incomplete(cache, &r), 0);
    blob_path(q, sizeof q, cache, &r, 1, true);
    CHECK(stat(q, &st) == 0 && (uint64_t)st.st_size == f1->size);
    shoal_store_free(s);

    /* What an older shoald left: its partial file in blobs/, full size,
     * with the sidecar's verified chunks in it. And huggingface_hub's own
     * partial download of another file, shorter than the file. */
    REQUIRE(rename(q, p) == 0);
    hf_name(q, sizeof q, cache, &r, 2, "inc");
    fd = open(q, O_WRONLY | O_CREAT | O_EXCL, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, r.f[2].data, 1000) == 1000);
    close(fd);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK_EQ(shoal_store_count(s), had); /* moved, not fetched again */
    CHECK(!exists(p));
    blob_path(p, sizeof p, cache, &r, 1, true);
    CHECK(exists(p));
    CHECK(stat(q, &st) == 0 && st.st_size == 1000 && file_is(q, r.f[2].data, 1000));
    CHECK(check_bits_true(s, &r) == had);

    /* huggingface_hub downloading the same file (its lock held): the
     * verified blob waits, and is published once the lock is let go. */
    hf_name(p, sizeof p, cache, &r, 1, "lock");
    lock = open(p, O_RDWR);
    CHECK(lock >= 0); /* made by the open above, for the move */
    if (lock < 0)
        lock = open(p, O_RDWR | O_CREAT, 0644);
    REQUIRE(lock >= 0 && flock(lock, LOCK_EX | LOCK_NB) == 0);
    for (uint32_t i = half; i < f1->nchunks; i++)
        CHECK_EQ(put(s, &r, f1->first_chunk + i), 0);
    CHECK(!shoal_store_file_done(s, 1));
    blob_path(q, sizeof q, cache, &r, 1, false);
    CHECK(!exists(q));
    shoal_store_last_error(s, msg, sizeof msg);
    CHECK(strstr(msg, ".lock") != NULL && strstr(msg, "huggingface_hub") != NULL);
    CHECK_EQ(shoal_store_retry_publish(s, &tried), SHOAL_EBUSY);
    CHECK(!shoal_store_file_done(s, 1) && !exists(q));
    close(lock);
    CHECK_EQ(shoal_store_retry_publish(s, &tried), 0);
    CHECK(tried >= 1);
    CHECK(shoal_store_file_done(s, 1) && shoal_store_file_done(s, 3));
    CHECK(file_is(q, r.f[1].data, r.f[1].size));
    CHECK(exists(p)); /* never removed: an older filelock would lock a dead name */
    for (uint32_t i = 0; i < shoal_manifest_nchunks(r.m); i++)
        if (!shoal_store_has(s, i))
            CHECK_EQ(put(s, &r, i), 0);
    CHECK(shoal_store_complete(s));
    check_published(cache, &r);
    CHECK_EQ(blobs_incomplete(cache, &r), 1); /* huggingface_hub's, untouched */
    shoal_store_free(s);
    rel_free(&r);
}

/*
 * huggingface_hub names a blob by the ETag the Hub serves: the sha256 of an
 * LFS file, the git blob sha1 of a file kept in git (config.json,
 * tokenizer.json, *.index.json). With blob ids in the manifest the store
 * names blobs the same way (QA F1): two files with the same bytes and blob
 * id share a blob, the same bytes kept in LFS elsewhere get a blob of their
 * own (as huggingface_hub keeps them), and serving, reopening and the
 * snapshot check work for all of them.
 */
static void test_blob_names(void)
{
    static const char cfg[] = "{\"architectures\": [\"Tiny\"], \"vocab_size\": 32000}\n";
    const char *cache = new_cache();
    struct shoal_store *s = NULL;
    struct rel r;
    char p[1024], want[1024], hex[65];
    uint8_t blob[20], *buf;
    uint32_t n;
    ssize_t len;
    struct stat a, b;

    memset(&r, 0, sizeof r);
    rel_add(&r, "config.json", dup_bytes((const uint8_t *)cfg, sizeof cfg - 1), sizeof cfg - 1);
    r.f[0].git = true;
    rel_add(&r, "model.safetensors", gen(150000, 21), 150000);
    rel_add(&r, "sub/config.json", dup_bytes((const uint8_t *)cfg, sizeof cfg - 1),
            sizeof cfg - 1);
    r.f[2].git = true;
    rel_add(&r, "lfs/config.json", dup_bytes((const uint8_t *)cfg, sizeof cfg - 1),
            sizeof cfg - 1);
    rel_finish(&r, SHOAL_REPO_MODEL, "org/names", C1, -1);
    CHECK(shoal_manifest_file(r.m, 0)->has_blob_id && !shoal_manifest_file(r.m, 1)->has_blob_id);
    n = shoal_manifest_nchunks(r.m);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    /* Filling: the git file's partial is named by its blob id too. */
    fake_blob_id(blob, shoal_manifest_file(r.m, 0)->sha256);
    shoal_hex(hex, blob, 20);
    snprintf(want, sizeof want, ".shoal/%s.incomplete", hex);
    repo_path(p, sizeof p, cache, &r, want);
    CHECK(exists(p));
    for (uint32_t i = 0; i < n; i++)
        if (!shoal_store_has(s, i))
            CHECK_EQ(put(s, &r, i), 0);
    CHECK(shoal_store_complete(s));
    check_published(cache, &r);

    /* config.json and sub/config.json: blobs/<blob id>, one inode. */
    snap_path(p, sizeof p, cache, &r, 0);
    len = readlink(p, want, sizeof want - 1);
    REQUIRE(len > 0);
    want[len] = '\0';
    CHECK(strncmp(want, "../../blobs/", 12) == 0 &&
          strcmp(want + 12, hex) == 0);
    CHECK(stat(p, &a) == 0);
    snap_path(p, sizeof p, cache, &r, 2);
    len = readlink(p, want, sizeof want - 1);
    REQUIRE(len > 0);
    want[len] = '\0';
    CHECK(strncmp(want, "../../../blobs/", 15) == 0 && strcmp(want + 15, hex) == 0);
    CHECK(stat(p, &b) == 0 && a.st_ino == b.st_ino);
    /* lfs/config.json, the same bytes in LFS: blobs/<sha256>, its own. */
    shoal_hex(hex, shoal_manifest_file(r.m, 3)->sha256, 32);
    snap_path(p, sizeof p, cache, &r, 3);
    len = readlink(p, want, sizeof want - 1);
    REQUIRE(len > 0);
    want[len] = '\0';
    CHECK(strncmp(want, "../../../blobs/", 15) == 0 && strcmp(want + 15, hex) == 0);
    CHECK(stat(p, &b) == 0 && a.st_ino != b.st_ino && file_is(p, r.f[3].data, r.f[3].size));
    /* The LFS shard keeps its sha256 name. */
    blob_path(p, sizeof p, cache, &r, 1, false);
    shoal_hex(hex, shoal_manifest_file(r.m, 1)->sha256, 32);
    CHECK(strstr(p, hex) != NULL && file_is(p, r.f[1].data, r.f[1].size));

    /* Serving reads every chunk back. */
    buf = malloc(params.max_size);
    REQUIRE(buf);
    for (uint32_t i = 0; i < n; i++) {
        int got = shoal_store_read_chunk(s, i, buf, params.max_size);
        CHECK_EQ(got, shoal_manifest_chunk(r.m, i)->len);
        CHECK(got > 0 && memcmp(buf, chunk_bytes(&r, i), (size_t)got) == 0);
    }
    free(buf);
    shoal_store_free(s);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK(shoal_store_complete(s));
    CHECK_EQ(shoal_store_count(s), n);
    shoal_store_free(s);
    rel_free(&r);
}

/* Every verified bit must be backed by the right bytes on disk. */
static uint32_t check_bits_true(struct shoal_store *s, const struct rel *r)
{
    uint32_t n = shoal_manifest_nchunks(r->m), have = 0;
    uint8_t *buf = malloc(params.max_size);
    uint8_t id[32];

    REQUIRE(buf);
    for (uint32_t i = 0; i < n; i++) {
        int len;
        if (!shoal_store_has(s, i))
            continue;
        have++;
        len = shoal_store_read_chunk(s, i, buf, params.max_size);
        CHECK(len > 0);
        if (len <= 0)
            continue;
        shoal_chunk_id(id, buf, (size_t)len);
        CHECK(memcmp(id, shoal_manifest_chunk(r->m, i)->id, 32) == 0);
    }
    free(buf);
    return have;
}

/* Chunks of files published already (those need no sidecar). */
static uint32_t chunks_in_done_files(struct shoal_store *s, const struct rel *r)
{
    uint32_t n = 0;

    for (int f = 0; f < r->nf; f++)
        if (shoal_store_file_done(s, (uint32_t)f))
            n += shoal_manifest_file(r->m, (uint32_t)f)->nchunks;
    return n;
}

/* .shoal/<sha>.<release id>.incomplete: a release's own partial file. */
static void own_partial(char *out, size_t cap, const char *cache, const struct rel *r, int f)
{
    char hex[17];

    blob_path(out, cap, cache, r, f, true);
    out[strlen(out) - strlen(".incomplete")] = '\0';
    shoal_hex(hex, shoal_manifest_id(r->m), 8);
    snprintf(out + strlen(out), cap - strlen(out), ".%s.incomplete", hex);
}

static void sidecar_path(char *out, size_t cap, const char *cache, const struct rel *r)
{
    char rest[128], hex[65];

    shoal_hex(hex, shoal_manifest_id(r->m), 32);
    snprintf(rest, sizeof rest, ".shoal/%s.state", hex);
    repo_path(out, cap, cache, r, rest);
}

/* A crash at a slow rate loses at most the last flush_ms of chunks: the
 * count (flush_every) alone left a release under it with nothing saved. */
static void test_crash_time_flush(void)
{
    const char *cache = new_cache();
    struct shoal_store_opts o = {.flush_every = 1000, .flush_ms = 50};
    struct shoal_store *s = NULL;
    struct rel r;
    pid_t pid;
    int status;

    rel_std(&r, "org/slow", C1, -1, 4);
    REQUIRE(shoal_manifest_nchunks(r.m) >= 3);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (shoal_store_open(&s, cache, r.m, &o) != 0)
            _exit(2);
        if (put(s, &r, 0) != 0)
            _exit(3);
        usleep(120 * 1000);
        /* This put finds the last rewrite older than flush_ms. */
        if (put(s, &r, 1) != 0)
            _exit(3);
        _exit(0); /* dies without closing the store: no final flush */
    }
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK(shoal_store_has(s, 0));
    CHECK(shoal_store_has(s, 1));
    shoal_store_free(s);
    rel_free(&r);
}

/* A node killed soon after each start (an OOM kill, a preempted VM) keeps
 * the first chunk it verified in each run, at the default flush_ms: the
 * first rewrite after open comes at once, the next ones sooner than
 * flush_ms at first, and not at every chunk (flush_ms long here, so that
 * the second put, right after the first, finds the ramp's first gap,
 * flush_ms / 16, not over). */
static void test_crash_soon_after_open(void)
{
    const char *cache = new_cache();
    struct shoal_store_opts o = {.flush_ms = 600000};
    struct shoal_store *s = NULL;
    struct rel r;
    uint32_t c = UINT32_MAX; /* chunks c, c+1, c+2: one file, not all of it */
    pid_t pid;
    int status;

    rel_std(&r, "org/crashloop", C1, -1, 4);
    for (uint32_t f = 0; f < shoal_manifest_nfiles(r.m) && c == UINT32_MAX; f++)
        if (shoal_manifest_file(r.m, f)->nchunks >= 4)
            c = shoal_manifest_file(r.m, f)->first_chunk;
    REQUIRE(c != UINT32_MAX);
    for (int run = 0; run < 2; run++) {
        pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            if (shoal_store_open(&s, cache, r.m, run ? &o : NULL) != 0)
                _exit(2);
            if (put(s, &r, c + (uint32_t)run) != 0 || (run && put(s, &r, c + 2) != 0))
                _exit(3);
            _exit(0); /* killed: no final flush */
        }
        REQUIRE(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK(shoal_store_has(s, c));      /* the first run's only chunk */
    CHECK(shoal_store_has(s, c + 1));  /* the second run's first */
    CHECK(!shoal_store_has(s, c + 2)); /* not rewritten at every chunk */
    shoal_store_free(s);
    rel_free(&r);
}

static void test_crash_and_bad_sidecar(void)
{
    const char *cache = new_cache();
    struct shoal_store_opts o = {.flush_every = 4};
    struct shoal_store *s = NULL;
    struct shoal_store_opts vo = {.flags = SHOAL_STORE_VERIFY};
    struct rel r;
    uint32_t n, put_n, have, have2;
    char sc[1024];
    struct stat st;
    pid_t pid;
    int status, fd;
    uint8_t byte;

    rel_std(&r, "org/tiny", C1, -1, 4);
    n = shoal_manifest_nchunks(r.m);
    put_n = n / 3;
    /* The child dies without closing the store: no final flush. */
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (shoal_store_open(&s, cache, r.m, &o) != 0)
            _exit(2);
        for (uint32_t i = 0; i < put_n; i++)
            if (put(s, &r, i) != 0)
                _exit(3);
        _exit(0);
    }
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    have = check_bits_true(s, &r);
    /* Batches of 4 were flushed, so something survived; and nothing is
     * marked that the child did not store (a put marks every index with
     * the same id). */
    CHECK(have > 0);
    for (uint32_t j = 0; j < n; j++) {
        bool sent = false;
        if (!shoal_store_has(s, j))
            continue;
        for (uint32_t i = 0; i < put_n && !sent; i++)
            sent = memcmp(shoal_manifest_chunk(r.m, i)->id, shoal_manifest_chunk(r.m, j)->id,
                          32) == 0;
        CHECK(sent || shoal_store_file_done(s, shoal_manifest_chunk(r.m, j)->file));
    }
    shoal_store_free(s);

    /* A flipped byte in the bitfield: detected by the checksum, discarded. */
    sidecar_path(sc, sizeof sc, cache, &r);
    fd = open(sc, O_RDWR);
    REQUIRE(fd >= 0 && fstat(fd, &st) == 0);
    REQUIRE(pread(fd, &byte, 1, 48) == 1);
    byte ^= 0x01;
    REQUIRE(pwrite(fd, &byte, 1, 48) == 1);
    close(fd);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK_EQ(check_bits_true(s, &r), chunks_in_done_files(s, &r));
    shoal_store_free(s);

    /* A truncated sidecar (torn write): discarded too. */
    REQUIRE(truncate(sc, st.st_size - 5) == 0);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK_EQ(check_bits_true(s, &r), chunks_in_done_files(s, &r));
    shoal_store_free(s);
    REQUIRE(truncate(sc, 10) == 0);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK_EQ(check_bits_true(s, &r), chunks_in_done_files(s, &r));
    shoal_store_free(s);

    /* Verify mode re-hashes the files and finds what is really there. */
    REQUIRE(shoal_store_open(&s, cache, r.m, &vo) == 0);
    have2 = check_bits_true(s, &r);
    CHECK(have2 >= have);
    shoal_store_free(s);
    rel_free(&r);
}

/* The start-up sweep's claim when no release is open. */
static bool claims_none(void *user, const char *folder, const char *name)
{
    (void)user;
    (void)folder;
    (void)name;
    return false;
}

static void test_dedup_releases(void)
{
    const char *cache = new_cache();
    struct shoal_store_opts oa = {.branch = "main"};
    struct shoal_store_opts ob = {.branch = "main"};
    struct shoal_store *s = NULL;
    struct rel a, b, c;
    uint32_t n, copied = 0, puts = 0;
    uint8_t *grown;

    rel_std(&a, "org/tiny", C1, -1, 5);
    oa.manifest = a.signed_bytes.data;
    oa.manifest_len = a.signed_bytes.len;
    REQUIRE(shoal_store_open(&s, cache, a.m, &oa) == 0);
    for (uint32_t i = 0; i < shoal_manifest_nchunks(a.m); i++)
        CHECK_EQ(put(s, &a, i), 0);
    CHECK(shoal_store_complete(s));
    shoal_store_free(s);

    /* Same repo, next commit: config unchanged (same blob, done at open),
     * shard with a grown header (most chunks shared), plus a new file. */
    memset(&b, 0, sizeof b);
    rel_add(&b, "config.json", dup_bytes(a.f[0].data, a.f[0].size), a.f[0].size);
    grown = malloc(200000 + 300);
    REQUIRE(grown);
    memset(grown, 'h', 300);
    memcpy(grown + 300, a.f[1].data, 200000);
    rel_add(&b, "model.safetensors", grown, 200300);
    rel_add(&b, "extra.bin", gen(50000, 99), 50000);
    rel_finish(&b, SHOAL_REPO_MODEL, "org/tiny", C2, -1);
    n = shoal_manifest_nchunks(b.m);
    ob.manifest = b.signed_bytes.data;
    ob.manifest_len = b.signed_bytes.len;
    REQUIRE(shoal_store_open(&s, cache, b.m, &ob) == 0);
    CHECK(shoal_store_file_done(s, 0));
    CHECK(!shoal_store_file_done(s, 1));
    CHECK_EQ(shoal_store_fill_from_local(s, &copied), 0);
    CHECK(copied > 0);
    puts += put_missing(s, &b);
    fprintf(stderr, "  dedup: %u chunks copied locally, %u fetched, of %u\n", copied, puts, n);
    /* The shard's chunks after its first few are all shared. */
    CHECK(copied > shoal_manifest_file(b.m, 1)->nchunks / 2);
    CHECK(shoal_store_complete(s));
    check_published(cache, &b);
    /* The first release is untouched. */
    check_published(cache, &a);
    shoal_store_free(s);

    /* Another repo: chunks are found across repo folders too. */
    memset(&c, 0, sizeof c);
    rel_add(&c, "w.bin", dup_bytes(a.f[2].data, a.f[2].size), a.f[2].size);
    rel_finish(&c, SHOAL_REPO_DATASET, "other", C1, -1);
    REQUIRE(shoal_store_open(&s, cache, c.m, NULL) == 0);
    CHECK_EQ(shoal_store_fill_from_local(s, &copied), 0);
    CHECK(copied > 0);
    CHECK(shoal_store_complete(s));
    check_published(cache, &c);
    shoal_store_free(s);

    /* Neither release open now (dropped): the start-up sweep keeps each
     * kept manifest while its commit has a snapshot, and removes a's once
     * its snapshot is deleted (delete-cache); b's stays (QA F2). */
    char p[4096], ha[65], hb[65], first[1024];
    struct shoal_store_swept k;
    uint32_t files;
    uint64_t bytes;
    shoal_hex(ha, shoal_manifest_id(a.m), 32);
    shoal_hex(hb, shoal_manifest_id(b.m), 32);
    REQUIRE(shoal_store_sweep_partials(cache, claims_none, NULL, &files, &bytes, &k, first,
                                       sizeof first) == 0);
    CHECK_EQ(k.manifests, 0);
    snprintf(p, sizeof p, "%s/models--org--tiny/.shoal/%s.manifest", cache, ha);
    CHECK(exists(p));
    CHECK(!shoal_store_manifest_orphaned(cache, "models--org--tiny", strrchr(p, '/') + 1));
    snprintf(p, sizeof p, "%s/models--org--tiny/snapshots/%s", cache, C1);
    t_rmtree(p);
    snprintf(p, sizeof p, "%s/models--org--tiny/.shoal/%s.manifest", cache, ha);
    CHECK(shoal_store_manifest_orphaned(cache, "models--org--tiny", strrchr(p, '/') + 1));
    REQUIRE(shoal_store_sweep_partials(cache, claims_none, NULL, &files, &bytes, &k, first,
                                       sizeof first) == 0);
    CHECK_EQ(k.manifests, 1);
    CHECK_EQ(k.partials, 0);
    CHECK(!exists(p));
    snprintf(p, sizeof p, "%s/models--org--tiny/.shoal/%s.manifest", cache, hb);
    CHECK(exists(p));
    rel_free(&a);
    rel_free(&b);
    rel_free(&c);
}

/* Two releases naming the same sha256 (one of them lying: other bytes,
 * its own chunk ids, signed by a trusted key) filled at once in one cache.
 * They used to share blobs/<sha>.incomplete: the liar's verified chunks
 * overwrote bytes the honest release had already hashed, and the honest
 * one published the mix under its snapshot. Now the second filler writes a
 * partial file of its own; the honest release publishes its own bytes, the
 * liar fails its sha256. Two honest releases sharing a file still both
 * publish it. */
static void test_shared_partial(void)
{
    const char *cache = new_cache();
    struct shoal_store *sa = NULL, *se = NULL, *sb = NULL;
    struct rel a, e, b;
    const size_t n = 200000;
    char p[1024], hex[65];
    uint32_t na, ne;
    struct stat st;

    memset(&a, 0, sizeof a);
    memset(&e, 0, sizeof e);
    memset(&b, 0, sizeof b);
    rel_add(&a, "model.bin", gen(n, 41), n);
    rel_finish(&a, SHOAL_REPO_MODEL, "org/m", C1, -1);
    /* e: other bytes under a's sha256, built by hand (rel_finish takes the
     * real one). */
    {
        struct shoal_manifest *m = NULL;
        struct shoal_chunker *ch = NULL;
        uint8_t *bytes = gen(n, 42);
        REQUIRE(shoal_manifest_new(&m, SHOAL_REPO_MODEL, "org/m", C2, &params) == 0);
        REQUIRE(shoal_chunker_new(&ch, &params) == 0);
        REQUIRE(shoal_manifest_add_file(m, "model.bin", n,
                                        shoal_manifest_file(a.m, 0)->sha256) == 0);
        REQUIRE(shoal_chunker_feed(ch, bytes, n, add_chunk_cb, m) == 0);
        REQUIRE(shoal_chunker_finish(ch, add_chunk_cb, m, NULL, NULL) == 0);
        rel_add(&e, "model.bin", bytes, n);
        shoal_buf_init(&e.signed_bytes, 64u << 20);
        REQUIRE(shoal_manifest_sign(m, &sk, 1700000000, &e.signed_bytes) == 0);
        shoal_manifest_free(m);
        shoal_chunker_free(ch);
        REQUIRE(shoal_manifest_parse(&e.m, e.signed_bytes.data, e.signed_bytes.len, NULL,
                                     NULL) == 0);
    }
    na = shoal_manifest_nchunks(a.m);
    ne = shoal_manifest_nchunks(e.m);
    REQUIRE(shoal_store_open(&sa, cache, a.m, NULL) == 0);
    for (uint32_t i = 0; i + 1 < na; i++)
        CHECK_EQ(put(sa, &a, i), 0);
    REQUIRE(shoal_store_open(&se, cache, e.m, NULL) == 0);
    /* The liar writes under a name of its own. */
    shoal_hex(hex, shoal_manifest_file(a.m, 0)->sha256, 32);
    snprintf(p, sizeof p, "%s/models--org--m/.shoal/%s.", cache, hex);
    shoal_hex(p + strlen(p), shoal_manifest_id(e.m), 8);
    strcat(p, ".incomplete");
    CHECK(stat(p, &st) == 0);
    for (uint32_t i = 0; i < ne; i++)
        CHECK_EQ(put(se, &e, i), 0);
    CHECK(!shoal_store_complete(se));
    CHECK_EQ(put(sa, &a, na - 1), 0);
    CHECK(shoal_store_complete(sa));
    check_published(cache, &a);
    shoal_store_free(se);
    shoal_store_free(sa);

    /* Honest sharing: b is a's file under another commit, opened while a
     * second copy of a fills; each completes and the blob holds a's bytes. */
    rel_add(&b, "model.bin", dup_bytes(a.f[0].data, n), n);
    rel_finish(&b, SHOAL_REPO_MODEL, "org/m", C3, -1);
    snprintf(p, sizeof p, "%s/models--org--m/blobs/%s", cache, hex);
    CHECK_EQ(unlink(p), 0); /* a's blob gone: both must fill it again */
    REQUIRE(shoal_store_open(&sa, cache, a.m, NULL) == 0);
    REQUIRE(shoal_store_open(&sb, cache, b.m, NULL) == 0);
    for (uint32_t i = 0; i < na; i++)
        CHECK_EQ(put(sa, &a, i), 0);
    for (uint32_t i = 0; i < shoal_manifest_nchunks(b.m); i++)
        CHECK_EQ(put(sb, &b, i), 0);
    CHECK(shoal_store_complete(sa));
    CHECK(shoal_store_complete(sb));
    check_published(cache, &a);
    check_published(cache, &b);
    shoal_store_free(sb);
    shoal_store_free(sa);
    rel_free(&a);
    rel_free(&e);
    rel_free(&b);
}

/* --verify-store takes back a published blob whose bytes are wrong, and
 * unlinks its snapshot links. In a shared cache another user can plant a
 * symlink where a snapshot directory goes: the unlink must not follow it
 * (it used to delete <victim>/dir/weights.bin, outside the cache). */
static void test_verify_no_follow(void)
{
    const char *cache = new_cache();
    struct shoal_store_opts o = {.flags = SHOAL_STORE_VERIFY};
    struct shoal_store *s = NULL;
    char victim[256], p[1024], hex[65];
    struct rel r;
    FILE *fp;

    rel_std(&r, "org/poc", C1, -1, 5);
    REQUIRE(strcmp(r.f[2].path, "sub/dir/weights.bin") == 0);
    snprintf(victim, sizeof victim, "%s/victim-%d", root, dir_seq++);
    REQUIRE(mkdir(victim, 0755) == 0);
    snprintf(p, sizeof p, "%s/dir", victim);
    REQUIRE(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/dir/weights.bin", victim);
    REQUIRE((fp = fopen(p, "w")) != NULL);
    fputs("precious\n", fp);
    fclose(fp);
    REQUIRE(mkdir(cache, 0755) == 0);
    snprintf(p, sizeof p, "%s/models--org--poc", cache);
    REQUIRE(mkdir(p, 0777) == 0);
    snprintf(p, sizeof p, "%s/models--org--poc/blobs", cache);
    REQUIRE(mkdir(p, 0777) == 0);
    snprintf(p, sizeof p, "%s/models--org--poc/snapshots", cache);
    REQUIRE(mkdir(p, 0777) == 0);
    snprintf(p, sizeof p, "%s/models--org--poc/snapshots/%s", cache, C1);
    REQUIRE(mkdir(p, 0777) == 0);
    snprintf(p, sizeof p, "%s/models--org--poc/snapshots/%s/sub", cache, C1);
    REQUIRE(symlink(victim, p) == 0);
    shoal_hex(hex, shoal_manifest_file(r.m, 2)->sha256, 32);
    snprintf(p, sizeof p, "%s/models--org--poc/blobs/%s", cache, hex);
    REQUIRE((fp = fopen(p, "w")) != NULL);
    for (size_t i = 0; i < r.f[2].size; i++) /* right size, wrong bytes */
        fputc('x', fp);
    fclose(fp);
    (void)shoal_store_open(&s, cache, r.m, &o);
    snprintf(p, sizeof p, "%s/dir/weights.bin", victim);
    CHECK(exists(p));
    shoal_store_free(s);
    rel_free(&r);
}

/* Another user swaps the repo's blobs folder for a symlink after the store
 * opened it: every blob operation stays in the folder that was opened
 * (blobs_fd), nothing is written or renamed through the link. */
static void test_blobs_swapped(void)
{
    const char *cache = new_cache();
    struct shoal_store *s = NULL;
    char blobs[1024], moved[1024], elsewhere[256];
    struct rel r;
    DIR *d;
    struct dirent *e;
    int n = 0;

    rel_std(&r, "org/swap", C1, -1, 12);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    snprintf(elsewhere, sizeof elsewhere, "%s/elsewhere-%d", root, dir_seq++);
    REQUIRE(mkdir(elsewhere, 0755) == 0);
    repo_path(blobs, sizeof blobs, cache, &r, "blobs");
    repo_path(moved, sizeof moved, cache, &r, "blobs.real");
    REQUIRE(rename(blobs, moved) == 0);
    REQUIRE(symlink(elsewhere, blobs) == 0);
    for (uint32_t i = 0; i < shoal_manifest_nchunks(r.m); i++)
        CHECK_EQ(put(s, &r, i), 0);
    CHECK(shoal_store_complete(s));
    REQUIRE((d = opendir(elsewhere)) != NULL);
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    CHECK_EQ(n, 0);
    shoal_store_free(s);
    rel_free(&r);
}

/* A crash between a temp link and its rename leaves ".shoal-tmp-..." in
 * the snapshot (Hugging Face tools would list it as a file) or in .shoal:
 * the next open removes those older than 10 minutes and leaves fresh ones
 * (another process may be between the two steps right now). */
static void test_sweeps_leftovers(void)
{
    const char *cache = new_cache();
    struct shoal_store *s = NULL;
    char snap[1024], stale[1200], fresh[1200], meta[1200], nested[1200];
    struct timespec old[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    struct rel r;

    rel_std(&r, "org/sweep", C1, -1, 13);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    for (uint32_t i = 0; i < shoal_manifest_nchunks(r.m); i++)
        CHECK_EQ(put(s, &r, i), 0);
    shoal_store_free(s);
    repo_path(snap, sizeof snap, cache, &r, "snapshots/" );
    snprintf(snap + strlen(snap), sizeof snap - strlen(snap), "%s", C1);
    snprintf(stale, sizeof stale, "%s/.shoal-tmp-4242-1", snap);
    snprintf(fresh, sizeof fresh, "%s/.shoal-tmp-4242-2", snap);
    snprintf(nested, sizeof nested, "%s/sub/dir/.shoal-tmp-4242-3", snap);
    repo_path(meta, sizeof meta, cache, &r, ".shoal/.shoal-tmp-4242-4");
    REQUIRE(symlink("../../blobs/nothing", stale) == 0);
    REQUIRE(symlink("../../blobs/nothing", fresh) == 0);
    REQUIRE(symlink("../../../../blobs/nothing", nested) == 0);
    FILE *fp = fopen(meta, "w");
    REQUIRE(fp);
    fclose(fp);
    REQUIRE(utimensat(AT_FDCWD, stale, old, AT_SYMLINK_NOFOLLOW) == 0);
    REQUIRE(utimensat(AT_FDCWD, nested, old, AT_SYMLINK_NOFOLLOW) == 0);
    REQUIRE(utimensat(AT_FDCWD, meta, old, 0) == 0);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK(shoal_store_complete(s));
    struct stat st;
    CHECK(lstat(stale, &st) < 0);
    CHECK(lstat(nested, &st) < 0);
    CHECK(lstat(meta, &st) < 0);
    CHECK(lstat(fresh, &st) == 0);
    shoal_store_free(s);
    rel_free(&r);
}

static void test_sha_mismatch(void)
{
    const char *cache = new_cache();
    struct events ev = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct shoal_store_opts o = {.branch = "main", .on_file = on_file, .user = &ev};
    struct shoal_store *s = NULL;
    struct rel r;
    char p[1024], msg[512];
    const struct shoal_mf_file *f;

    rel_std(&r, "org/tiny", C1, 2, 6); /* sub/dir/weights.bin has a wrong sha256 */
    REQUIRE(shoal_store_open(&s, cache, r.m, &o) == 0);
    for (uint32_t i = 0; i < shoal_manifest_nchunks(r.m); i++)
        CHECK_EQ(put(s, &r, i), 0);
    CHECK_EQ(ev.bad[2], 1);
    CHECK_EQ(ev.done[2], 0);
    CHECK_EQ(ev.done[1], 1);
    CHECK(!shoal_store_file_done(s, 2));
    CHECK(shoal_store_file_done(s, 1));
    CHECK(!shoal_store_complete(s));
    f = shoal_manifest_file(r.m, 2);
    for (uint32_t k = 0; k < f->nchunks; k++)
        CHECK(!shoal_store_has(s, f->first_chunk + k));
    shoal_store_last_error(s, msg, sizeof msg);
    CHECK(strstr(msg, "sub/dir/weights.bin") != NULL);
    snap_path(p, sizeof p, cache, &r, 2);
    CHECK(!exists(p));
    blob_path(p, sizeof p, cache, &r, 2, false);
    CHECK(!exists(p));
    repo_path(p, sizeof p, cache, &r, "refs/main");
    CHECK(!exists(p));
    CHECK_EQ(shoal_hf_snapshot_check(cache, r.m, NULL), SHOAL_ENOTFOUND);
    shoal_store_free(s);
    rel_free(&r);
}

static void rot_blob(const char *cache, const struct rel *r, int f, uint64_t off);
static uint32_t chunk_at(const struct rel *r, int f, uint64_t off);
static struct shoal_store *filled(const char *cache, struct rel *r,
                                  const struct shoal_store_opts *o);

static void test_verify_repairs_published(void)
{
    const char *cache = new_cache();
    struct shoal_store_opts vo = {.flags = SHOAL_STORE_VERIFY, .branch = "main"};
    struct shoal_store *s = NULL;
    struct rel r;
    uint32_t n, puts = 0;
    char p[1024];

    rel_std(&r, "org/tiny", C1, -1, 10);
    n = shoal_manifest_nchunks(r.m);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    for (uint32_t i = 0; i < n; i++)
        CHECK_EQ(put(s, &r, i), 0);
    CHECK(shoal_store_complete(s));
    shoal_store_free(s);

    /* Published blobs are read-only (a write through the snapshot link by
     * a user other than root fails)... */
    struct stat st;
    blob_path(p, sizeof p, cache, &r, 2, false);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0440);

    /* Bit rot in a published blob (nothing a stat shows changes): the
     * cheap mode trusts it... */
    rot_blob(cache, &r, 2, 70000);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK(shoal_store_complete(s));
    shoal_store_free(s);

    /* ...verify mode takes it back and keeps only the good chunks. */
    REQUIRE(shoal_store_open(&s, cache, r.m, &vo) == 0);
    CHECK(!shoal_store_file_done(s, 2));
    CHECK(shoal_store_file_done(s, 1));
    snap_path(p, sizeof p, cache, &r, 2);
    CHECK(!exists(p));
    /* ...the blob keeps its name (other releases may link to it) while a
     * writable copy of this release's own is repaired... */
    blob_path(p, sizeof p, cache, &r, 2, false);
    CHECK(exists(p));
    own_partial(p, sizeof p, cache, &r, 2);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0640);
    check_bits_true(s, &r);
    puts += put_missing(s, &r);
    CHECK_EQ(puts, 1);
    CHECK(shoal_store_complete(s));
    check_published(cache, &r);
    /* ...and read-only once published again. */
    blob_path(p, sizeof p, cache, &r, 2, false);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0440);
    own_partial(p, sizeof p, cache, &r, 2);
    CHECK(!exists(p));
    shoal_store_free(s);
    rel_free(&r);
}

/* Writes |n| bytes |p| to |path| as a new file (a new inode). */
static void write_new(const char *path, const uint8_t *p, size_t n)
{
    char tmp[1100];
    FILE *fp;

    snprintf(tmp, sizeof tmp, "%s.new", path);
    REQUIRE((fp = fopen(tmp, "wb")) != NULL);
    REQUIRE(n == 0 || fwrite(p, 1, n, fp) == n);
    fclose(fp);
    REQUIRE(rename(tmp, path) == 0);
}

/* What another tool leaves (huggingface_hub): repo folder and blobs/ with
 * every file of |r| under its name, right bytes, no record of shoald's. */
static void fill_blobs_unverified(const char *cache, const struct rel *r)
{
    char p[1024];

    REQUIRE(mkdir(cache, 0755) == 0 || errno == EEXIST);
    repo_path(p, sizeof p, cache, r, "");
    REQUIRE(mkdir(p, 0755) == 0);
    repo_path(p, sizeof p, cache, r, "blobs");
    REQUIRE(mkdir(p, 0755) == 0);
    for (int f = 0; f < r->nf; f++) {
        blob_path(p, sizeof p, cache, r, f, false);
        write_new(p, r->f[f].data, r->f[f].size);
    }
}

/* A cache huggingface_hub filled first: blobs/<name> of the right size
 * that shoald never hashed, one of them with a byte wrong (a gateway that
 * served bad bytes, huggingface_hub does not hash). Each is hashed once at
 * open: the wrong one is repaired (only its bad chunk fetched again), the
 * right ones count as complete (before: all were trusted unhashed, the
 * wrong bytes called complete and handed out). A restart hashes nothing
 * (each blob now has shoald's record); a blob replaced since (a new file,
 * right or wrong bytes) is hashed again. */
static void test_unverified_blob_hashed(void)
{
    const char *cache = new_cache();
    struct shoal_store *s = NULL;
    struct rel r;
    uint32_t files, wrong, c, puts = 0;
    uint64_t bytes;
    uint8_t *bad;
    char p[1024];

    rel_std(&r, "org/tiny", C1, -1, 12);
    fill_blobs_unverified(cache, &r);
    bad = dup_bytes(r.f[1].data, r.f[1].size);
    bad[100000] ^= 1;
    blob_path(p, sizeof p, cache, &r, 1, false);
    write_new(p, bad, r.f[1].size);
    c = chunk_at(&r, 1, 100000);

    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    shoal_store_open_hashed(s, &files, &bytes, &wrong);
    fprintf(stderr, "  hf-filled: hashed %u files, %llu bytes, %u wrong\n", files,
            (unsigned long long)bytes, wrong);
    CHECK(files >= 3); /* config, the shard (and its copy), the nested file */
    CHECK_EQ(wrong, 1);
    CHECK(!shoal_store_file_done(s, 1) && !shoal_store_file_ready(s, 1));
    CHECK(!shoal_store_has(s, c));
    CHECK(shoal_store_file_done(s, 0) && shoal_store_file_done(s, 2));
    puts += put_missing(s, &r);
    CHECK_EQ(puts, 1);
    CHECK(shoal_store_complete(s));
    check_published(cache, &r);
    shoal_store_free(s);

    /* A restart: everything was verified by shoald, nothing is hashed. */
    s = NULL;
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    shoal_store_open_hashed(s, &files, &bytes, &wrong);
    CHECK_EQ(files, 0);
    CHECK(shoal_store_complete(s));
    shoal_store_free(s);

    /* The nested file's blob replaced by a copy (right bytes, new inode):
     * hashed once more, and trusted after. */
    blob_path(p, sizeof p, cache, &r, 2, false);
    write_new(p, r.f[2].data, r.f[2].size);
    s = NULL;
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    shoal_store_open_hashed(s, &files, &bytes, &wrong);
    CHECK_EQ(files, 1);
    CHECK_EQ(bytes, r.f[2].size);
    CHECK_EQ(wrong, 0);
    CHECK(shoal_store_complete(s));
    shoal_store_free(s);
    s = NULL;
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    shoal_store_open_hashed(s, &files, &bytes, &wrong);
    CHECK_EQ(files, 0);
    shoal_store_free(s);

    /* Written in place (same inode, mtime put back as it was): ctime
     * moved, so it is hashed and found wrong. */
    {
        struct stat st;
        struct timespec ts[2];
        int fd;

        blob_path(p, sizeof p, cache, &r, 2, false);
        REQUIRE(stat(p, &st) == 0);
        REQUIRE(chmod(p, 0644) == 0);
        REQUIRE((fd = open(p, O_WRONLY)) >= 0);
        REQUIRE(pwrite(fd, "Z", 1, 5) == 1);
        ts[0] = st.st_atim;
        ts[1] = st.st_mtim;
        REQUIRE(futimens(fd, ts) == 0);
        close(fd);
        REQUIRE(chmod(p, 0440) == 0);
    }
    s = NULL;
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    shoal_store_open_hashed(s, &files, &bytes, &wrong);
    CHECK_EQ(files, 1);
    CHECK_EQ(wrong, 1);
    CHECK(!shoal_store_file_done(s, 2));
    CHECK(shoal_store_file_note(s, 2, p, sizeof p) == 1 &&
          strstr(p, "was not verified by shoald") != NULL);
    shoal_store_free(s);
    free(bad);
    rel_free(&r);
}

static uint32_t deferred_ready;

static void count_deferred_ready(void *user, uint32_t fi, int status)
{
    (void)user;
    (void)fi;
    if (status == 0)
        deferred_ready++;
}

/* The same cache with SHOAL_STORE_DEFER_HASH (what shoald opens with):
 * open hashes nothing (it runs on the daemon's loop), the blobs are
 * pending, nothing of them verified or written by a put; then
 * shoal_store_hash_found (a worker's job) does what open did without the
 * flag: the right ones done and ready (on_ready for their files), the
 * wrong one repaired, only its bad chunk put again. */
static void test_unverified_deferred(void)
{
    const char *cache = new_cache();
    struct shoal_store_opts o = {0};
    struct shoal_store *s = NULL;
    struct rel r;
    uint32_t files, wrong, hashed, npend, c, puts = 0;
    uint64_t bytes, pbytes;
    uint8_t *bad;
    char p[1024];

    rel_std(&r, "org/tiny", C1, -1, 14);
    fill_blobs_unverified(cache, &r);
    bad = dup_bytes(r.f[1].data, r.f[1].size);
    bad[100000] ^= 1;
    blob_path(p, sizeof p, cache, &r, 1, false);
    write_new(p, bad, r.f[1].size);
    c = chunk_at(&r, 1, 100000);

    o.flags = SHOAL_STORE_DEFER_HASH;
    o.on_ready = count_deferred_ready;
    deferred_ready = 0;
    REQUIRE(shoal_store_open(&s, cache, r.m, &o) == 0);
    shoal_store_open_hashed(s, &files, &bytes, &wrong);
    shoal_store_pending(s, &npend, &pbytes);
    fprintf(stderr, "  deferred: %u pending (%llu bytes), %u hashed at open\n", npend,
            (unsigned long long)pbytes, files);
    CHECK_EQ(files, 0);
    CHECK(npend >= 3);
    CHECK(shoal_store_file_pending(s, 0) && shoal_store_file_pending(s, 1));
    CHECK(!shoal_store_file_done(s, 0) && !shoal_store_file_ready(s, 0));
    CHECK(!shoal_store_has(s, c));
    /* A put into a pending blob writes nothing (the blob may be right). */
    CHECK_EQ(put(s, &r, c), 0);
    CHECK(!shoal_store_has(s, c));
    CHECK(file_is(p, bad, r.f[1].size));

    CHECK_EQ(shoal_store_hash_found(s, &hashed), 0);
    CHECK_EQ(hashed, npend);
    shoal_store_pending(s, &npend, &pbytes);
    CHECK_EQ(npend, 0);
    CHECK_EQ(pbytes, 0);
    shoal_store_open_hashed(s, &files, &bytes, &wrong);
    CHECK_EQ(files, hashed);
    CHECK_EQ(wrong, 1);
    CHECK(deferred_ready >= 2);
    CHECK(shoal_store_file_done(s, 0) && shoal_store_file_ready(s, 0));
    CHECK(shoal_store_file_done(s, 2));
    CHECK(!shoal_store_file_done(s, 1) && !shoal_store_has(s, c));
    CHECK(shoal_store_file_note(s, 1, p, sizeof p) == 1 &&
          strstr(p, "was not verified by shoald") != NULL);
    puts += put_missing(s, &r);
    CHECK_EQ(puts, 1);
    CHECK(shoal_store_complete(s));
    check_published(cache, &r);
    shoal_store_free(s);

    /* Recorded: a reopen leaves nothing pending. */
    s = NULL;
    REQUIRE(shoal_store_open(&s, cache, r.m, &o) == 0);
    shoal_store_pending(s, &npend, NULL);
    CHECK_EQ(npend, 0);
    CHECK(shoal_store_complete(s));
    shoal_store_free(s);
    free(bad);
    rel_free(&r);
}

/* Makes |rest| (under the repo folder of |r| in |cache|) a symlink to
 * |target|, creating the folders on the way. */
static void put_link(const char *cache, const struct rel *r, const char *rest, const char *target)
{
    char p[1024];

    repo_path(p, sizeof p, cache, r, rest);
    for (char *q = p + 1; (q = strchr(q, '/')); q++) {
        *q = '\0';
        REQUIRE(mkdir(p, 0755) == 0 || errno == EEXIST);
        *q = '/';
    }
    REQUIRE(symlink(target, p) == 0);
}

/* huggingface_hub fetched some files through a gateway whose ETags are its
 * own: snapshots/<commit>/<path> links to blobs/<gateway etag>. The
 * shard's bytes there are right: kept under its own name, nothing put,
 * and blobs/ffff... removed once nothing links to it (before: fetched
 * again, and left where scan-cache and delete-cache never see it). The
 * nested file's are wrong: filled as usual, and its junk removed once its
 * link is replaced. A blob another snapshot still links to stays. */
static void test_snapshot_other_blob_name(void)
{
    static const char ff[] = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
    static const char ee[] = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
    const char *cache = new_cache();
    struct shoal_store *s = NULL;
    struct rel r;
    const struct shoal_mf_file *f1;
    uint32_t files, wrong;
    uint64_t bytes;
    uint8_t *bad;
    char p[1024], rest[256];

    rel_std(&r, "org/tiny", C1, -1, 13);
    snprintf(rest, sizeof rest, "snapshots/%s/model.safetensors", C1);
    put_link(cache, &r, rest, "../../blobs/ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff");
    snprintf(rest, sizeof rest, "snapshots/%s/sub/dir/weights.bin", C1);
    put_link(cache, &r, rest, "../../../../blobs/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee");
    repo_path(p, sizeof p, cache, &r, "blobs");
    REQUIRE(mkdir(p, 0755) == 0);
    snprintf(rest, sizeof rest, "blobs/%s", ff);
    repo_path(p, sizeof p, cache, &r, rest);
    write_new(p, r.f[1].data, r.f[1].size);
    bad = dup_bytes(r.f[2].data, r.f[2].size);
    bad[7] ^= 1;
    snprintf(rest, sizeof rest, "blobs/%s", ee);
    repo_path(p, sizeof p, cache, &r, rest);
    write_new(p, bad, r.f[2].size);

    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    shoal_store_open_hashed(s, &files, &bytes, &wrong);
    fprintf(stderr, "  other names: hashed %u files, %u wrong\n", files, wrong);
    f1 = shoal_manifest_file(r.m, 1);
    CHECK(shoal_store_file_done(s, 1) && shoal_store_file_done(s, 3));
    for (uint32_t k = 0; k < f1->nchunks; k++)
        CHECK(shoal_store_has(s, f1->first_chunk + k));
    CHECK(shoal_store_file_note(s, 1, p, sizeof p) == 1 && strstr(p, "nothing fetched") != NULL);
    CHECK(!shoal_store_file_done(s, 2));
    snprintf(rest, sizeof rest, "blobs/%s", ff);
    repo_path(p, sizeof p, cache, &r, rest);
    CHECK(!exists(p));
    for (uint32_t i = 0; i < shoal_manifest_nchunks(r.m); i++) {
        if (!shoal_store_has(s, i))
            CHECK_EQ(put(s, &r, i), 0);
    }
    CHECK(shoal_store_complete(s));
    check_published(cache, &r);
    snprintf(rest, sizeof rest, "blobs/%s", ee);
    repo_path(p, sizeof p, cache, &r, rest);
    CHECK(!exists(p));
    shoal_store_free(s);

    /* A restart hashes nothing: the adopted shard's record follows the
     * name that is left once blobs/ffff... is gone (removing a hard link
     * moves the file's ctime; before, the record still described it as it
     * was with two names, and the shard was hashed again at every open). */
    s = NULL;
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    shoal_store_open_hashed(s, &files, &bytes, &wrong);
    CHECK_EQ(files, 0);
    CHECK(shoal_store_complete(s));
    shoal_store_free(s);

    /* Another snapshot links to the gateway's name too: it stays. */
    cache = new_cache();
    snprintf(rest, sizeof rest, "snapshots/%s/model.safetensors", C1);
    put_link(cache, &r, rest, "../../blobs/ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff");
    snprintf(rest, sizeof rest, "snapshots/%s/a/model.safetensors", C2);
    put_link(cache, &r, rest, "../../../blobs/ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff");
    repo_path(p, sizeof p, cache, &r, "blobs");
    REQUIRE(mkdir(p, 0755) == 0);
    snprintf(rest, sizeof rest, "blobs/%s", ff);
    repo_path(p, sizeof p, cache, &r, rest);
    write_new(p, r.f[1].data, r.f[1].size);
    s = NULL;
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK(shoal_store_file_done(s, 1));
    CHECK(exists(p) && file_is(p, r.f[1].data, r.f[1].size));
    snap_path(p, sizeof p, cache, &r, 1);
    CHECK(file_is(p, r.f[1].data, r.f[1].size));
    shoal_store_free(s);
    /* Both names stay, nothing moved its ctime since the record. */
    s = NULL;
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    shoal_store_open_hashed(s, &files, &bytes, &wrong);
    CHECK_EQ(files, 0);
    shoal_store_free(s);
    free(bad);
    rel_free(&r);
}

/* Writes |n| bytes |p| as a regular file at snapshot entry |f| of |r| in
 * |cache|, creating the folders on the way (huggingface_hub's copy where
 * it cannot make links). */
static void put_copy(const char *cache, const struct rel *r, int f, const uint8_t *p, size_t n)
{
    char path[1024];

    snap_path(path, sizeof path, cache, r, f);
    for (char *q = path + 1; (q = strchr(q, '/')); q++) {
        *q = '\0';
        REQUIRE(mkdir(path, 0755) == 0 || errno == EEXIST);
        *q = '/';
    }
    write_new(path, p, n);
}

/* huggingface_hub where it cannot make links leaves each snapshot entry
 * a regular file (the blob moved there, or a copy), blobs/ empty. The
 * shard's copy holds the right bytes: kept as blobs/<etag> (hashed, a
 * hard link), the entry replaced by a link, nothing put (before: the
 * shard was fetched again). The nested file's copy is wrong: filled as
 * usual. A restart hashes nothing (the record followed the blob when its
 * copy's name went); with SHOAL_STORE_DEFER_HASH the same is done by
 * shoal_store_hash_found. */
static void test_snapshot_copies(void)
{
    struct shoal_store_opts o = {0};
    struct rel r;
    uint32_t files, wrong, npend;
    uint64_t bytes;
    uint8_t *bad;
    char p[1024];
    struct stat st;

    rel_std(&r, "org/tiny", C1, -1, 15);
    bad = dup_bytes(r.f[2].data, r.f[2].size);
    bad[9] ^= 1;
    for (int pass = 0; pass < 2; pass++) {
        const char *cache = new_cache();
        const struct shoal_mf_file *f1 = shoal_manifest_file(r.m, 1);
        struct shoal_store *s = NULL;

        put_copy(cache, &r, 1, r.f[1].data, r.f[1].size);
        put_copy(cache, &r, 2, bad, r.f[2].size);
        o.flags = pass ? SHOAL_STORE_DEFER_HASH : 0;
        REQUIRE(shoal_store_open(&s, cache, r.m, &o) == 0);
        if (pass) {
            shoal_store_pending(s, &npend, NULL);
            CHECK(npend >= 2);
            CHECK(!shoal_store_file_done(s, 1));
            CHECK_EQ(shoal_store_hash_found(s, NULL), 0);
        }
        shoal_store_open_hashed(s, &files, &bytes, &wrong);
        fprintf(stderr, "  copies (%s): hashed %u files, %u wrong\n",
                pass ? "deferred" : "at open", files, wrong);
        CHECK_EQ(wrong, 1);
        CHECK(shoal_store_file_done(s, 1) && shoal_store_file_done(s, 3));
        for (uint32_t k = 0; k < f1->nchunks; k++)
            CHECK(shoal_store_has(s, f1->first_chunk + k));
        CHECK(shoal_store_file_note(s, 1, p, sizeof p) == 1 && strstr(p, "was a copy") &&
              strstr(p, "nothing fetched"));
        snap_path(p, sizeof p, cache, &r, 1);
        CHECK(lstat(p, &st) == 0 && S_ISLNK(st.st_mode));
        blob_path(p, sizeof p, cache, &r, 1, false);
        CHECK(file_is(p, r.f[1].data, r.f[1].size));
        CHECK(!shoal_store_file_done(s, 2));
        for (uint32_t i = 0; i < shoal_manifest_nchunks(r.m); i++) {
            if (!shoal_store_has(s, i))
                CHECK_EQ(put(s, &r, i), 0);
        }
        CHECK(shoal_store_complete(s));
        check_published(cache, &r);
        shoal_store_free(s);

        s = NULL;
        REQUIRE(shoal_store_open(&s, cache, r.m, &o) == 0);
        shoal_store_open_hashed(s, &files, &bytes, &wrong);
        shoal_store_pending(s, &npend, NULL);
        CHECK_EQ(files, 0);
        CHECK_EQ(npend, 0);
        CHECK(shoal_store_complete(s));
        shoal_store_free(s);
    }
    free(bad);
    rel_free(&r);
}

/* A complete release whose snapshot was deleted while it was open
 * (huggingface-cli delete-cache): the store still holds its files and
 * says complete, but writes no refs/<branch> to the missing snapshot
 * (before: it did, and scan-cache called the repo corrupted). */
static void test_ref_needs_snapshot(void)
{
    const char *cache = new_cache();
    struct shoal_store *s = NULL;
    struct rel r;
    char p[1024], msg[512];

    s = filled(cache, &r, NULL);
    CHECK(shoal_store_complete(s));
    snprintf(msg, sizeof msg, "snapshots/%s", C1);
    repo_path(p, sizeof p, cache, &r, msg);
    t_rmtree(p);
    CHECK(!exists(p));
    CHECK_EQ(shoal_store_set_branch(s, "main"), SHOAL_ENOTFOUND);
    shoal_store_last_error(s, msg, sizeof msg);
    CHECK(strstr(msg, "not writing") != NULL && strstr(msg, "refs/main") != NULL);
    repo_path(p, sizeof p, cache, &r, "refs/main");
    CHECK(!exists(p));
    shoal_store_free(s);

    /* Its blobs deleted too: the records of verifying them go at the next
     * open (they would pile up otherwise). */
    {
        char rec[1024], name[SHOAL_HF_ETAG_MAX];

        shoal_hf_etag(name, shoal_manifest_file(r.m, 1));
        snprintf(msg, sizeof msg, ".shoal/verified/%s", name);
        repo_path(rec, sizeof rec, cache, &r, msg);
        CHECK(exists(rec));
        blob_path(p, sizeof p, cache, &r, 1, false);
        REQUIRE(unlink(p) == 0);
        s = NULL;
        REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
        CHECK(!exists(rec));
        CHECK(!shoal_store_file_done(s, 1));
        shoal_store_free(s);
    }
    rel_free(&r);
}

/* The ref of a release asked for by branch cannot be written when its last
 * file is published (a full disk; here a file where refs/ should be): the
 * release is not complete until it is, the error names it, and the retry
 * that publishing failures get writes it once it can (before: complete,
 * no ref, no error, until a restart or another pull). */
static void test_ref_owed(void)
{
    const char *cache = new_cache();
    struct shoal_store *s = NULL;
    struct rel r;
    char p[1024], msg[512];
    uint32_t tried = 0;
    int fd;

    rel_std(&r, "org/tiny", C1, -1, 10);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK_EQ(shoal_store_set_branch(s, "main"), 0);
    repo_path(p, sizeof p, cache, &r, "refs");
    REQUIRE((fd = open(p, O_CREAT | O_WRONLY, 0644)) >= 0);
    close(fd);
    for (uint32_t i = 0; i < shoal_manifest_nchunks(r.m); i++)
        CHECK_EQ(put(s, &r, i), 0);
    CHECK(!shoal_store_complete(s));
    shoal_store_last_error(s, msg, sizeof msg);
    CHECK(strstr(msg, "refs/main") != NULL);
    CHECK(shoal_store_retry_publish(s, &tried) != 0);
    CHECK(!shoal_store_complete(s));
    REQUIRE(unlink(p) == 0);
    CHECK_EQ(shoal_store_retry_publish(s, &tried), 0);
    CHECK_EQ(tried, 1);
    CHECK(shoal_store_complete(s));
    repo_path(p, sizeof p, cache, &r, "refs/main");
    CHECK(exists(p));
    shoal_store_free(s);
    rel_free(&r);
}

/* A blob found in the cache whose first hash (deferred to a worker) matches
 * but whose snapshot entry cannot be written (here a directory holding a
 * file is where it goes): withheld as blocked, not counted done, not
 * ready, the release not complete, and a chunk of it put stores nothing
 * (before: counted done with 201 of 202 chunks, ready yet withheld, and
 * withheld as a repair, so its chunks were fetched and thrown away). */
static void test_found_link_fails(void)
{
    const char *cache = new_cache();
    struct shoal_store_opts o = {0};
    struct shoal_store *s = NULL;
    struct rel r;
    uint32_t hashed;
    char p[1024], cmd[2100], why[512];

    rel_std(&r, "org/tiny", C1, -1, 14);
    fill_blobs_unverified(cache, &r);
    snap_path(p, sizeof p, cache, &r, 0);
    snprintf(cmd, sizeof cmd, "mkdir -p '%.1000s' && touch '%.1000s/x'", p, p);
    REQUIRE(system(cmd) == 0);
    o.flags = SHOAL_STORE_DEFER_HASH;
    REQUIRE(shoal_store_open(&s, cache, r.m, &o) == 0);
    CHECK(shoal_store_hash_found(s, &hashed) != 0);
    CHECK_EQ(shoal_store_file_withheld(s, 0, why, sizeof why), SHOAL_EBADPATH);
    CHECK(!shoal_store_file_ready(s, 0));
    CHECK(!shoal_store_file_done(s, 0));
    CHECK(!shoal_store_complete(s));
    CHECK_EQ(put(s, &r, 0), 0);
    CHECK(!shoal_store_has(s, 0));
    CHECK(shoal_store_file_done(s, 1)); /* the others are right and in place */
    shoal_store_free(s);
    rel_free(&r);
}

/* ---- chunks found changed on disk (take_back, file_suspect) ---- */

/* Release "org/tiny" (rel_std, 10 chunks' worth) in a new store on
 * |cache|, every chunk put. */
static struct shoal_store *filled(const char *cache, struct rel *r,
                                  const struct shoal_store_opts *o)
{
    struct shoal_store *s = NULL;

    rel_std(r, "org/tiny", C1, -1, 10);
    REQUIRE(shoal_store_open(&s, cache, r->m, o) == 0);
    for (uint32_t i = 0; i < shoal_manifest_nchunks(r->m); i++)
        CHECK_EQ(put(s, r, i), 0);
    return s;
}

/* The record shoald keeps of verifying file |f|'s published blob
 * (.shoal/verified/<name>, see store.c), rewritten to vouch for the blob as
 * it is now: what bit rot on the medium looks like, the file's inode, size,
 * mtime and ctime unchanged. A test cannot flip a byte without moving
 * ctime. Nothing when there is no record. */
static void forge_record(const char *cache, const struct rel *r, int f)
{
    const struct shoal_mf_file *mf = shoal_manifest_file(r->m, (uint32_t)f);
    char p[1024], rest[256], name[SHOAL_HF_ETAG_MAX];
    uint64_t v[4];
    uint8_t img[8 + 32 + SHOAL_HASH_LEN];
    struct stat st;
    FILE *fp;

    shoal_hf_etag(name, mf);
    snprintf(rest, sizeof rest, ".shoal/verified/%s", name);
    repo_path(p, sizeof p, cache, r, rest);
    if (!exists(p))
        return;
    blob_path(rest, sizeof rest, cache, r, f, false);
    REQUIRE(stat(rest, &st) == 0);
    v[0] = (uint64_t)st.st_ino;
    v[1] = (uint64_t)st.st_size;
    v[2] = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
    v[3] = (uint64_t)st.st_ctim.tv_sec * 1000000000u + (uint64_t)st.st_ctim.tv_nsec;
    memcpy(img, "SHOALVB\1", 8);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 8; k++)
            img[8 + 8 * i + k] = (uint8_t)(v[i] >> (8 * k));
    memcpy(img + 40, mf->sha256, SHOAL_HASH_LEN);
    REQUIRE((fp = fopen(p, "wb")) != NULL);
    REQUIRE(fwrite(img, 1, sizeof img, fp) == sizeof img);
    fclose(fp);
}

/* Flips one byte of file |f|'s published blob at |off| as bit rot would:
 * the mode is put back and shoald's record of verifying it still vouches
 * for it (forge_record). */
static void rot_blob(const char *cache, const struct rel *r, int f, uint64_t off)
{
    char p[1024];
    uint8_t b;
    int fd;

    blob_path(p, sizeof p, cache, r, f, false);
    REQUIRE(chmod(p, 0644) == 0);
    fd = open(p, O_RDWR);
    REQUIRE(fd >= 0 && pread(fd, &b, 1, (off_t)off) == 1);
    b ^= 1;
    REQUIRE(pwrite(fd, &b, 1, (off_t)off) == 1);
    close(fd);
    REQUIRE(chmod(p, 0444) == 0);
    forge_record(cache, r, f);
}

/* The chunk of file |f| holding byte |off|. */
static uint32_t chunk_at(const struct rel *r, int f, uint64_t off)
{
    const struct shoal_mf_file *mf = shoal_manifest_file(r->m, (uint32_t)f);

    for (uint32_t k = 0; k < mf->nchunks; k++) {
        const struct shoal_mf_chunk *c = shoal_manifest_chunk(r->m, mf->first_chunk + k);
        if (off >= c->offset && off < c->offset + c->len)
            return mf->first_chunk + k;
    }
    REQUIRE(!"offset outside the file");
    return UINT32_MAX;
}

/* True when |s| hands out file |f| with exactly its bytes. */
static bool opens_right(struct shoal_store *s, const struct rel *r, int f)
{
    uint8_t *back = malloc(r->f[f].size + 1);
    bool ok = false;
    int fd = -1;

    REQUIRE(back);
    if (shoal_store_file_open(s, (uint32_t)f, &fd) == 0) {
        ok = pread(fd, back, r->f[f].size + 1, 0) == (ssize_t)r->f[f].size &&
             memcmp(back, r->f[f].data, r->f[f].size) == 0;
        close(fd);
    }
    free(back);
    return ok;
}

/* Two releases in one cache share a blob (the same shard under two
 * commits). Release a finds it changed on disk and takes the bad chunk
 * back: b's snapshot link must keep resolving all along, b stays complete
 * and its loaders can still open the file; b finding the same rot takes it
 * back too (it used to fail with ENOENT, a's take-back having renamed the
 * blob away, and lose b's links); both refill and end published with the
 * right bytes. */
static void test_take_back_shared(void)
{
    const char *cache = new_cache();
    struct shoal_store *a = NULL, *b = NULL;
    struct rel ra, rb;
    char p[1024];
    struct stat st;
    uint32_t ca, cb;
    int fd = -1;

    rel_std(&ra, "org/tiny", C1, -1, 10);
    rel_std(&rb, "org/tiny", C2, -1, 10);
    REQUIRE(shoal_store_open(&a, cache, ra.m, NULL) == 0);
    for (uint32_t i = 0; i < shoal_manifest_nchunks(ra.m); i++)
        CHECK_EQ(put(a, &ra, i), 0);
    REQUIRE(shoal_store_open(&b, cache, rb.m, NULL) == 0);
    CHECK(shoal_store_complete(b));
    rot_blob(cache, &ra, 1, 100000);
    ca = chunk_at(&ra, 1, 100000);
    cb = chunk_at(&rb, 1, 100000);
    shoal_store_file_suspect(a, 1, true);
    CHECK_EQ(shoal_store_take_back(a, 1, &ca, 1), 0);
    CHECK(!shoal_store_has(a, ca));
    CHECK(!shoal_store_complete(a));
    snap_path(p, sizeof p, cache, &ra, 1);
    CHECK(!exists(p)); /* a's own link goes: a says it lacks the file */
    snap_path(p, sizeof p, cache, &rb, 1);
    CHECK(stat(p, &st) == 0 && S_ISREG(st.st_mode));
    CHECK(shoal_store_complete(b));
    CHECK_EQ(shoal_store_file_open(b, 1, &fd), 0);
    if (fd >= 0)
        close(fd);
    fd = -1;

    /* b finds the same rot. */
    shoal_store_file_suspect(b, 1, true);
    CHECK_EQ(shoal_store_take_back(b, 1, &cb, 1), 0);
    CHECK(!shoal_store_has(b, cb));
    CHECK(!shoal_store_complete(b));

    /* a refills first: the blob is replaced by a's verified copy, and b's
     * link (b still repairing) resolves to the right bytes. */
    CHECK_EQ(put(a, &ra, ca), 0);
    CHECK(shoal_store_complete(a));
    check_published(cache, &ra);
    CHECK(opens_right(a, &ra, 1));
    snap_path(p, sizeof p, cache, &rb, 3);
    CHECK(!exists(p)); /* b's own links went with its take-back */
    blob_path(p, sizeof p, cache, &rb, 1, false);
    CHECK(file_is(p, rb.f[1].data, rb.f[1].size));
    CHECK_EQ(put(b, &rb, cb), 0);
    CHECK(shoal_store_complete(b));
    check_published(cache, &rb);
    check_published(cache, &ra);
    CHECK(opens_right(b, &rb, 3));
    shoal_store_free(a);
    shoal_store_free(b);

    /* A restart trusts the repaired blob. */
    REQUIRE(shoal_store_open(&a, cache, ra.m, NULL) == 0);
    CHECK(shoal_store_complete(a));
    shoal_store_free(a);
    rel_free(&ra);
    rel_free(&rb);
}

/* A take-back that fails changes nothing in the cache: the snapshot links
 * stay (they used to be removed before the rename that then failed), the
 * chunks stay verified, the file stays done and suspect. */
static void test_take_back_fails(void)
{
    const char *cache = new_cache();
    struct shoal_store *s = NULL;
    struct rel r;
    char p[1024], msg[512];
    uint32_t c;

    s = filled(cache, &r, NULL);
    rot_blob(cache, &r, 1, 100000);
    c = chunk_at(&r, 1, 100000);
    /* Something in the way of the partial file (works as root too). */
    own_partial(p, sizeof p, cache, &r, 1);
    REQUIRE(mkdir(p, 0755) == 0);
    shoal_store_file_suspect(s, 1, true);
    CHECK(shoal_store_take_back(s, 1, &c, 1) < 0);
    shoal_store_last_error(s, msg, sizeof msg);
    CHECK(strstr(msg, "model.safetensors") != NULL);
    CHECK(shoal_store_has(s, c));
    CHECK(shoal_store_file_done(s, 1));
    CHECK(shoal_store_complete(s));
    CHECK(!shoal_store_file_ready(s, 1));
    for (int f = 0; f < r.nf; f++) {
        struct stat st;
        snap_path(p, sizeof p, cache, &r, f);
        CHECK(stat(p, &st) == 0 && S_ISREG(st.st_mode));
    }
    own_partial(p, sizeof p, cache, &r, 1);
    REQUIRE(rmdir(p) == 0);
    /* Tried again once the way is clear, it works. */
    CHECK_EQ(shoal_store_take_back(s, 1, &c, 1), 0);
    CHECK_EQ(put(s, &r, c), 0);
    CHECK(shoal_store_complete(s));
    check_published(cache, &r);
    shoal_store_free(s);
    rel_free(&r);
}

struct ready_count {
    int ready[MAXF];
};

static void count_ready(void *user, uint32_t fi, int status)
{
    struct ready_count *rc = user;

    if (fi < MAXF && status == 0)
        rc->ready[fi]++;
}

/* While its chunks are fetched again a blob is not ready, whatever is said
 * of it: clearing a suspicion through another file with the same sha256
 * (the copy in copy/model.safetensors) used to make the half-refetched
 * file ready, and a loader got its bad bytes. It is ready (and announced)
 * again once its sha256 matches; a restart in between resumes the repair
 * instead of trusting the published blob. */
static void test_take_back_not_ready(void)
{
    const char *cache = new_cache();
    struct ready_count rc = {0};
    struct shoal_store_opts o = {.on_ready = count_ready, .user = &rc};
    struct shoal_store *s = NULL;
    struct rel r;
    char p[1024];
    struct stat st;
    uint32_t c;
    int fd = -1;

    rel_std(&r, "org/tiny", C1, -1, 10);
    REQUIRE(strcmp(r.f[3].path, "copy/model.safetensors") == 0);
    REQUIRE(shoal_store_open(&s, cache, r.m, &o) == 0);
    for (uint32_t i = 0; i < shoal_manifest_nchunks(r.m); i++)
        CHECK_EQ(put(s, &r, i), 0);
    CHECK_EQ(rc.ready[1], 1);
    rot_blob(cache, &r, 1, 100000);
    c = chunk_at(&r, 1, 100000);
    shoal_store_file_suspect(s, 1, true);
    CHECK_EQ(shoal_store_take_back(s, 1, &c, 1), 0);
    shoal_store_file_suspect(s, 3, false);
    CHECK(!shoal_store_file_ready(s, 1));
    CHECK(!shoal_store_file_ready(s, 3));
    CHECK(shoal_store_file_open(s, 1, &fd) != 0);
    CHECK_EQ(rc.ready[1], 1);

    /* A restart meanwhile: the published blob is still the bad one. */
    shoal_store_free(s);
    REQUIRE(shoal_store_open(&s, cache, r.m, &o) == 0);
    CHECK(!shoal_store_has(s, c));
    CHECK(!shoal_store_file_ready(s, 1));
    CHECK(!shoal_store_complete(s));
    snap_path(p, sizeof p, cache, &r, 1);
    CHECK(!exists(p));
    CHECK_EQ(put(s, &r, c), 0);
    CHECK(shoal_store_complete(s));
    CHECK(shoal_store_file_ready(s, 1));
    CHECK(opens_right(s, &r, 1));
    CHECK_EQ(rc.ready[1], 2);
    CHECK_EQ(rc.ready[3], 2);
    check_published(cache, &r);
    blob_path(p, sizeof p, cache, &r, 1, false);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0440);
    own_partial(p, sizeof p, cache, &r, 1);
    CHECK(!exists(p));
    shoal_store_free(s);
    rel_free(&r);
}

/* A suspicion cleared (the file hashed right after all) makes the file
 * ready again, and says so: a loader that asked for it meanwhile waits on
 * on_ready, which used to fire only when a file is first completed. */
static void test_suspect_cleared(void)
{
    const char *cache = new_cache();
    struct ready_count rc = {0};
    struct shoal_store_opts o = {.on_ready = count_ready, .user = &rc};
    struct shoal_store *s = NULL;
    struct rel r;
    int fd = -1;

    s = filled(cache, &r, &o);
    CHECK_EQ(rc.ready[1], 1);
    shoal_store_file_suspect(s, 1, true);
    CHECK(!shoal_store_file_ready(s, 3));
    CHECK_EQ(shoal_store_file_open(s, 3, &fd), SHOAL_EBADHASH);
    shoal_store_file_suspect(s, 1, false);
    CHECK(shoal_store_file_ready(s, 1));
    CHECK_EQ(rc.ready[1], 2);
    CHECK_EQ(rc.ready[3], 2); /* the same blob */
    CHECK_EQ(rc.ready[2], 1); /* another one: untouched */
    shoal_store_file_suspect(s, 1, false); /* nothing to clear: no event */
    CHECK_EQ(rc.ready[1], 2);
    CHECK(opens_right(s, &r, 1));
    shoal_store_free(s);
    rel_free(&r);
}

struct worker {
    struct shoal_store *s;
    const struct rel *r;
    uint32_t first, step;
    int errors;
    uint32_t firsts; /* puts that verified their chunk (dup_worker) */
};

static void *put_worker(void *arg)
{
    struct worker *w = arg;
    uint32_t n = shoal_manifest_nchunks(w->r->m);

    for (uint32_t i = w->first; i < n; i += w->step)
        if (put(w->s, w->r, i) != 0)
            w->errors++;
    return NULL;
}

static void test_concurrent_puts(void)
{
    const char *cache = new_cache();
    struct shoal_store_opts o = {.branch = "main", .flush_every = 8};
    struct shoal_store *s = NULL;
    struct worker w[4];
    pthread_t th[4];
    struct rel r;

    rel_std(&r, "org/tiny", C1, -1, 7);
    REQUIRE(shoal_store_open(&s, cache, r.m, &o) == 0);
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){s, &r, (uint32_t)i, 4, 0, 0};
        REQUIRE(pthread_create(&th[i], NULL, put_worker, &w[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(w[i].errors, 0);
    }
    CHECK(shoal_store_complete(s));
    CHECK_EQ(shoal_store_count(s), shoal_manifest_nchunks(r.m));
    check_published(cache, &r);
    shoal_store_free(s);
    rel_free(&r);
}

/* Every worker stores every chunk, as peers answering one endgame request
 * twice do: each chunk counts as verified first by exactly one put (a chunk
 * id that occurs at several places is verified at all of them by one put). */
static void *dup_worker(void *arg)
{
    struct worker *w = arg;
    uint32_t n = shoal_manifest_nchunks(w->r->m);

    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = (k + w->first * 7) % n;
        bool first = true;
        if (shoal_store_put_chunk_first(w->s, i, chunk_bytes(w->r, i),
                                        shoal_manifest_chunk(w->r->m, i)->len, &first) != 0)
            w->errors++;
        w->firsts += first ? 1 : 0;
    }
    return NULL;
}

static void test_duplicates_counted_once(void)
{
    const char *cache = new_cache();
    struct shoal_store *s = NULL;
    struct worker w[4];
    pthread_t th[4];
    struct rel r;
    uint32_t firsts = 0;
    bool first = true;

    rel_std(&r, "org/tiny", C1, -1, 7);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){s, &r, (uint32_t)i, 1, 0, 0};
        REQUIRE(pthread_create(&th[i], NULL, dup_worker, &w[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(w[i].errors, 0);
        firsts += w[i].firsts;
    }
    uint32_t n = shoal_manifest_nchunks(r.m), distinct = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = 0;
        while (k < i && memcmp(shoal_manifest_chunk(r.m, k)->id, shoal_manifest_chunk(r.m, i)->id,
                               32) != 0)
            k++;
        distinct += k == i ? 1 : 0;
    }
    CHECK(distinct < n); /* the release repeats chunks, as real ones do */
    CHECK_EQ(firsts, distinct);
    CHECK(shoal_store_complete(s));
    CHECK_EQ(shoal_store_put_chunk_first(s, 0, chunk_bytes(&r, 0),
                                         shoal_manifest_chunk(r.m, 0)->len, &first), 0);
    CHECK(!first);
    check_published(cache, &r);
    shoal_store_free(s);
    rel_free(&r);
}

/* What test_ready_early sees at each file's on_ready and on_file. */
struct ready_ev {
    struct shoal_store *s;
    const char *cache;
    const struct rel *r;
    int ready[MAXF], done[MAXF], failed[MAXF];
    dev_t dev[MAXF];
    ino_t ino[MAXF];
};

/* At on_ready, before the fsync and the renames: the file is not under any
 * cache name yet, but a descriptor of it reads its whole, exact bytes. */
static void on_ready_early(void *user, uint32_t fi, int status)
{
    struct ready_ev *ev = user;
    const struct rel *r = ev->r;
    char p[1024];
    struct stat st;
    uint8_t *back;
    int fd = -1;

    REQUIRE(fi < MAXF);
    CHECK_EQ(status, 0);
    CHECK_EQ(ev->done[fi], 0);
    ev->ready[fi]++;
    CHECK(shoal_store_file_ready(ev->s, fi));
    CHECK(!shoal_store_file_done(ev->s, fi));
    snap_path(p, sizeof p, ev->cache, r, (int)fi);
    CHECK(!exists(p));
    blob_path(p, sizeof p, ev->cache, r, (int)fi, false);
    CHECK(stat(p, &st) < 0 || !S_ISREG(st.st_mode)); /* the test's blocking dir */
    CHECK_EQ(shoal_store_file_open(ev->s, fi, &fd), 0);
    back = malloc(r->f[fi].size + 1);
    REQUIRE(back && fd >= 0);
    CHECK(fstat(fd, &st) == 0 && (size_t)st.st_size == r->f[fi].size);
    CHECK(pread(fd, back, r->f[fi].size + 1, 0) == (ssize_t)r->f[fi].size &&
          memcmp(back, r->f[fi].data, r->f[fi].size) == 0);
    CHECK(write(fd, "x", 1) < 0);
    ev->dev[fi] = st.st_dev;
    ev->ino[fi] = st.st_ino;
    close(fd);
    free(back);
}

static void on_file_early(void *user, uint32_t fi, int status)
{
    struct ready_ev *ev = user;

    REQUIRE(fi < MAXF);
    /* Ready is always reported first, and stays true whatever follows. */
    CHECK_EQ(ev->ready[fi], 1);
    CHECK(shoal_store_file_ready(ev->s, fi));
    if (status == 0)
        ev->done[fi]++;
    else
        ev->failed[fi]++;
}

/* A file is handed out once its sha256 matches, before it is durable and
 * published; it is the same inode that the cache then publishes. When
 * publishing fails after that, the file stays readable and ready but appears
 * under no cache name, and a later open publishes it. */
static void test_ready_early(void)
{
    const char *cache = new_cache();
    struct ready_ev ev = {0};
    struct shoal_store_opts o = {.branch = "main", .on_file = on_file_early,
                                 .on_ready = on_ready_early, .user = &ev};
    struct shoal_store *s = NULL;
    const struct shoal_mf_file *f2;
    struct rel r;
    char p[1024], sub[1100], msg[512];
    struct stat st;
    int fd = -1;

    rel_std(&r, "org/tiny", C1, -1, 10);
    ev.cache = cache;
    ev.r = &r;
    REQUIRE(shoal_store_open(&s, cache, r.m, &o) == 0);
    ev.s = s;
    CHECK(!shoal_store_file_ready(s, 1));
    CHECK_EQ(shoal_store_file_open(s, 1, &fd), SHOAL_ENOTFOUND);
    /* sub/dir/weights.bin cannot take its final name: a directory is there. */
    blob_path(p, sizeof p, cache, &r, 2, false);
    snprintf(sub, sizeof sub, "%s/x", p);
    REQUIRE(mkdir(p, 0755) == 0 && mkdir(sub, 0755) == 0);
    for (uint32_t i = 0; i < shoal_manifest_nchunks(r.m); i++)
        CHECK_EQ(put(s, &r, i), 0);
    for (int fi = 0; fi < 4; fi++)
        CHECK_EQ(ev.ready[fi], 1);
    CHECK_EQ(ev.done[1], 1);
    CHECK_EQ(ev.failed[1], 0);
    /* The published blob is the inode the loader was given. */
    blob_path(p, sizeof p, cache, &r, 1, false);
    CHECK(stat(p, &st) == 0 && st.st_dev == ev.dev[1] && st.st_ino == ev.ino[1]);

    CHECK_EQ(ev.failed[2], 1);
    CHECK_EQ(ev.done[2], 0);
    CHECK(shoal_store_file_ready(s, 2));
    CHECK(!shoal_store_file_done(s, 2));
    CHECK(!shoal_store_complete(s));
    shoal_store_last_error(s, msg, sizeof msg);
    CHECK(strstr(msg, "renaming") != NULL);
    f2 = shoal_manifest_file(r.m, 2);
    for (uint32_t k = 0; k < f2->nchunks; k++)
        CHECK(shoal_store_has(s, f2->first_chunk + k));
    snap_path(p, sizeof p, cache, &r, 2);
    CHECK(!exists(p));
    repo_path(p, sizeof p, cache, &r, "refs/main");
    CHECK(!exists(p));
    /* Still handed out after the failure, with the right bytes. */
    CHECK_EQ(shoal_store_file_open(s, 2, &fd), 0);
    if (fd >= 0) {
        uint8_t *back = malloc(r.f[2].size);
        REQUIRE(back);
        CHECK(pread(fd, back, r.f[2].size, 0) == (ssize_t)r.f[2].size &&
              memcmp(back, r.f[2].data, r.f[2].size) == 0);
        CHECK(fstat(fd, &st) == 0 && st.st_ino == ev.ino[2]);
        free(back);
        close(fd);
    }
    shoal_store_free(s);

    /* With the way clear, the next open publishes it from what is on disk. */
    blob_path(p, sizeof p, cache, &r, 2, false);
    REQUIRE(rmdir(sub) == 0 && rmdir(p) == 0);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK(shoal_store_complete(s));
    check_published(cache, &r);
    CHECK(stat(p, &st) == 0 && st.st_ino == ev.ino[2]);
    shoal_store_free(s);
    rel_free(&r);
}

/* Memory mode: a memfd is ready only once sealed, so no loader ever holds
 * pages that could still change. */
static void on_ready_sealed(void *user, uint32_t fi, int status)
{
    struct ready_ev *ev = user;
    int fd = -1;

    REQUIRE(fi < MAXF);
    CHECK_EQ(status, 0);
    ev->ready[fi]++;
    CHECK_EQ(shoal_store_file_open(ev->s, fi, &fd), 0);
    CHECK(fd >= 0 && (fcntl(fd, F_GET_SEALS) & F_SEAL_WRITE) != 0);
    if (fd >= 0)
        close(fd);
}

static void test_memory_mode(void)
{
    struct ready_ev rev = {0};
    struct shoal_store_opts o = {.flags = SHOAL_STORE_MEMORY, .on_file = on_file_early,
                                 .on_ready = on_ready_sealed, .user = &rev};
    struct shoal_store *s = NULL;
    struct rel r;
    char p[256];
    uint8_t *back;
    int fd = -1;

    rel_std(&r, "org/tiny", C1, -1, 8);
    REQUIRE(shoal_store_open(&s, NULL, r.m, &o) == 0);
    rev.s = s;
    CHECK_EQ(shoal_store_file_open(s, 1, &fd), SHOAL_ENOTFOUND);
    for (uint32_t i = 0; i < shoal_manifest_nchunks(r.m); i++)
        CHECK_EQ(put(s, &r, i), 0);
    CHECK(shoal_store_complete(s));
    CHECK_EQ(rev.ready[1], 1);
    CHECK_EQ(rev.done[1], 1);
    CHECK_EQ(shoal_store_file_path(s, 1, p, sizeof p), SHOAL_ENOTFOUND);
    CHECK_EQ(shoal_store_file_open(s, 1, &fd), 0);
    back = malloc(200000);
    REQUIRE(back && fd >= 0);
    CHECK(pread(fd, back, 200000, 0) == 200000 && memcmp(back, r.f[1].data, 200000) == 0);
    /* Sealed: nobody can change the pages a loader maps. */
    CHECK((fcntl(fd, F_GET_SEALS) & F_SEAL_WRITE) != 0);
    close(fd);
    shoal_store_free(s);
    free(back);
    rel_free(&r);
}

/* ---- disk full ---- */

static bool private_tmpfs(const char *dir, const char *size)
{
    char opt[32];

    snprintf(opt, sizeof opt, "size=%s", size);
    if (unshare(CLONE_NEWNS) < 0)
        return false;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return false;
    return mount("tmpfs", dir, "tmpfs", 0, opt) == 0;
}

/* Inodes run out after the blobs are filled (a cache full of small files):
 * every chunk is verified but a file cannot be linked into the snapshot.
 * shoal_store_retry_publish fails while the table is full and publishes
 * once there is room; before it existed nothing tried again, and the
 * release never completed. Needs the private mount namespace. */
static void publish_retry_inodes(void)
{
    bool seen = false;

    for (int inodes = 6; inodes <= 40 && !seen; inodes++) {
        char cache[128], opt[64], msg[512] = "";
        struct shoal_store_opts o = {.branch = "main", .err = msg, .errlen = sizeof msg};
        struct shoal_store *s = NULL;
        struct rel r;
        uint32_t tried = 0;

        snprintf(cache, sizeof cache, "%s/inodes%d", root, inodes);
        REQUIRE(mkdir(cache, 0755) == 0);
        snprintf(opt, sizeof opt, "size=8m,nr_inodes=%d", inodes);
        REQUIRE(mount("tmpfs", cache, "tmpfs", 0, opt) == 0);
        rel_std(&r, "org/tiny", C1, -1, 9);
        if (shoal_store_open(&s, cache, r.m, &o) == 0) {
            for (uint32_t i = 0; i < shoal_manifest_nchunks(r.m); i++)
                (void)put(s, &r, i);
            if (shoal_store_count(s) == shoal_manifest_nchunks(r.m) && !shoal_store_complete(s)) {
                seen = true;
                shoal_store_last_error(s, msg, sizeof msg);
                fprintf(stderr, "  %d inodes: every chunk verified, not published: %s\n",
                        inodes, msg);
                CHECK(shoal_store_retry_publish(s, &tried) != 0);
                CHECK(tried > 0);
                CHECK(!shoal_store_complete(s));
                REQUIRE(mount(NULL, cache, NULL, MS_REMOUNT, "size=8m,nr_inodes=1000") == 0);
                CHECK_EQ(shoal_store_retry_publish(s, &tried), 0);
                CHECK(tried > 0);
                CHECK(shoal_store_complete(s));
                check_published(cache, &r);
                CHECK_EQ(shoal_store_retry_publish(s, &tried), 0);
                CHECK_EQ(tried, 0);
            }
            shoal_store_free(s);
        }
        rel_free(&r);
        umount(cache);
    }
    CHECK(seen);
}

static int test_diskfull(void)
{
    char cache[128], p[1024], msg[512];
    struct shoal_store_opts o = {.branch = "main"};
    struct shoal_store *s = NULL;
    struct rlimit old, lim;
    bool tmpfs;
    struct rel r;
    int rv;

    o.err = msg;
    o.errlen = sizeof msg;
    snprintf(cache, sizeof cache, "%s/small", root);
    REQUIRE(mkdir(cache, 0755) == 0);
    rel_std(&r, "org/tiny", C1, -1, 9); /* about 520 KB of blobs */

    tmpfs = private_tmpfs(cache, "256k");
    if (!tmpfs) {
        /* Unprivileged: a file size limit gives EFBIG the same way. */
        signal(SIGXFSZ, SIG_IGN);
        REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
        lim = old;
        lim.rlim_cur = 100000;
        if (setrlimit(RLIMIT_FSIZE, &lim) < 0) {
            rel_free(&r);
            return 77;
        }
    }
    fprintf(stderr, "  disk full via %s\n", tmpfs ? "a 256k tmpfs" : "RLIMIT_FSIZE");
    rv = shoal_store_open(&s, cache, r.m, &o);
    CHECK(rv == SHOAL_ENOSPC || rv == -EFBIG);
    CHECK(s == NULL);
    fprintf(stderr, "  open: %s: %s\n", shoal_strerror(rv), msg);
    CHECK(strstr(msg, ".shoal/") != NULL && strstr(msg, cache) != NULL);
    repo_path(p, sizeof p, cache, &r, "snapshots");
    CHECK(!exists(p));
    for (int f = 0; f < r.nf; f++) {
        blob_path(p, sizeof p, cache, &r, f, false);
        CHECK(!exists(p));
        /* The preallocated files the failed open made are gone too: left
         * behind they would keep the disk full. */
        blob_path(p, sizeof p, cache, &r, f, true);
        CHECK(!exists(p));
    }

    if (tmpfs) {
        /* A read-only cache: the error says so and names the file. */
        REQUIRE(mount(NULL, cache, NULL, MS_REMOUNT | MS_RDONLY, "size=256k") == 0);
        rv = shoal_store_open(&s, cache, r.m, &o);
        CHECK_EQ(rv, -EROFS);
        CHECK(strstr(msg, cache) != NULL);
        fprintf(stderr, "  read-only: %s\n", msg);
    }

    /* With room again the same release opens, resumes and completes. */
    if (tmpfs)
        REQUIRE(mount(NULL, cache, NULL, MS_REMOUNT, "size=8m") == 0);
    else
        REQUIRE(setrlimit(RLIMIT_FSIZE, &old) == 0);
    REQUIRE(shoal_store_open(&s, cache, r.m, &o) == 0);

    /* A write that fails after open (file size limit past a chunk's offset):
     * the chunk stays unverified, the error names the file, a retry works. */
    signal(SIGXFSZ, SIG_IGN);
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = 1000;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    {
        uint32_t i = shoal_manifest_file(r.m, 1)->first_chunk + 3;
        char em[512];

        rv = put(s, &r, i);
        CHECK_EQ(rv, -EFBIG);
        CHECK(!shoal_store_has(s, i));
        shoal_store_last_error(s, em, sizeof em);
        CHECK(strstr(em, "model.safetensors") != NULL);
        fprintf(stderr, "  write: %s\n", em);
        REQUIRE(setrlimit(RLIMIT_FSIZE, &old) == 0);
        CHECK_EQ(put(s, &r, i), 0);
    }
    for (uint32_t i = 0; i < shoal_manifest_nchunks(r.m); i++)
        CHECK_EQ(put(s, &r, i), 0);
    CHECK(shoal_store_complete(s));
    check_published(cache, &r);
    shoal_store_free(s);
    if (tmpfs) {
        umount(cache);
        publish_retry_inodes();
    }
    rel_free(&r);
    return t_done();
}

/* ---- repairs interrupted, unreadable chunks, no room ---- */

static uint8_t *slurp(const char *p, size_t *n)
{
    FILE *fp = fopen(p, "rb");
    uint8_t *b = malloc(1 << 20);

    REQUIRE(fp && b);
    *n = fread(b, 1, 1 << 20, fp);
    fclose(fp);
    return b;
}

static void spit(const char *p, const uint8_t *b, size_t n)
{
    FILE *fp = fopen(p, "wb");

    REQUIRE(fp && fwrite(b, 1, n, fp) == n);
    fclose(fp);
}

/* Puts chunk |c| again and checks file |f| ends whole and handed out. */
static void refill_ok(struct shoal_store *s, const struct rel *r, int f, uint32_t c)
{
    CHECK_EQ(put(s, r, c), 0);
    CHECK(shoal_store_file_done(s, (uint32_t)f));
    CHECK(opens_right(s, r, f));
}

/* A sidecar written before files could be marked suspect (version 1: no
 * per-file bits) is still read: an upgraded daemon resumes a partial
 * release where it was instead of fetching it all again. */
static void test_sidecar_v1_read(void)
{
    const char *cache = new_cache();
    struct shoal_store *s = NULL;
    struct rel r;
    char sc[1024];
    size_t n, nbits, v1;
    uint8_t *img;
    uint32_t put_n;
    int fd;

    rel_std(&r, "org/tiny", C1, -1, 10);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    for (uint32_t i = 0; i < shoal_manifest_nchunks(r.m); i += 2)
        CHECK_EQ(put(s, &r, i), 0);
    put_n = shoal_store_count(s);
    CHECK(put_n > 0 && !shoal_store_complete(s));
    shoal_store_free(s);
    sidecar_path(sc, sizeof sc, cache, &r);
    img = slurp(sc, &n);
    REQUIRE(img);
    nbits = (shoal_manifest_nchunks(r.m) + 7) / 8;
    v1 = 48 + nbits + 32;
    REQUIRE(n == v1 + (shoal_manifest_nfiles(r.m) + 7) / 8);
    img[8] = 1; /* version, little-endian */
    shoal_chunk_id(img + 48 + nbits, img, 48 + nbits);
    fd = open(sc, O_WRONLY | O_TRUNC);
    REQUIRE(fd >= 0 && write(fd, img, v1) == (ssize_t)v1);
    close(fd);
    free(img);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK_EQ(shoal_store_count(s), put_n);
    shoal_store_free(s);
    rel_free(&r);
}

/* A stand-in for another filler: armed with a partial file's path, each
 * close of a descriptor of that file is followed at once by an attempt to
 * lock it from a description of its own, as a second process would; the
 * lock it gets is kept until disarmed. */
static char thief_path[1024];
static int thief_fd = -1;

int close(int fd)
{
    static int (*real)(int);
    char link[64], at[1024];
    ssize_t n = -1;
    int rv, t;

    if (!real) {
        void *v = dlsym(RTLD_NEXT, "close");
        memcpy(&real, &v, sizeof real);
    }
    if (thief_path[0] && thief_fd < 0) {
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        n = readlink(link, at, sizeof at - 1);
    }
    rv = real(fd);
    if (n > 0 && (at[n] = '\0', strcmp(at, thief_path) == 0) &&
        (t = open(thief_path, O_RDONLY | O_CLOEXEC)) >= 0) {
        if (flock(t, LOCK_EX | LOCK_NB) == 0)
            thief_fd = t;
        else
            real(t);
    }
    return rv;
}

static void thief_disarm(void)
{
    thief_path[0] = '\0';
    if (thief_fd >= 0)
        close(thief_fd);
    thief_fd = -1;
}

/* --verify-store repairing a published blob keeps the lock on its copy
 * from the moment it is made: it used to close the copy and open it again,
 * unlocked in between, so another filler could take it there (and this
 * open then failed, "another process is filling it"). */
static void test_verify_copy_stays_locked(void)
{
    const char *cache = new_cache();
    struct shoal_store_opts vo = {.flags = SHOAL_STORE_VERIFY};
    struct shoal_store *s = NULL;
    struct rel r;
    char p[1024];
    int rv;

    s = filled(cache, &r, NULL);
    shoal_store_free(s);
    s = NULL;
    rot_blob(cache, &r, 1, 100000);
    REQUIRE(realpath(cache, p) != NULL); /* /proc shows the path resolved */
    own_partial(thief_path, sizeof thief_path, p, &r, 1);
    rv = shoal_store_open(&s, cache, r.m, &vo);
    CHECK_EQ(rv, 0);
    CHECK(thief_fd < 0); /* nobody else could lock the copy meanwhile */
    thief_disarm();
    if (s) {
        CHECK(!shoal_store_has(s, chunk_at(&r, 1, 100000)));
        refill_ok(s, &r, 1, chunk_at(&r, 1, 100000));
        shoal_store_free(s);
    }
    rel_free(&r);
}

/* A repair whose partial file is removed (say by an operator freeing
 * room) before it completes: the rotten blobs/<sha> is not linked in its
 * place (it used to be, its size being right), and the error says what to
 * do. */
static void test_repair_partial_removed(void)
{
    const char *cache = new_cache();
    struct shoal_store *s = NULL;
    struct rel r;
    char p[1024], err[512];
    uint32_t c;

    s = filled(cache, &r, NULL);
    rot_blob(cache, &r, 1, 100000);
    c = chunk_at(&r, 1, 100000);
    shoal_store_file_suspect(s, 1, true);
    CHECK_EQ(shoal_store_take_back(s, 1, &c, 1), 0);
    own_partial(p, sizeof p, cache, &r, 1);
    REQUIRE(unlink(p) == 0);
    (void)put(s, &r, c);
    CHECK(!shoal_store_file_done(s, 1));
    snap_path(p, sizeof p, cache, &r, 1);
    CHECK(access(p, F_OK) != 0 || file_is(p, r.f[1].data, r.f[1].size));
    shoal_store_last_error(s, err, sizeof err);
    CHECK(strstr(err, "--verify-store") != NULL);
    shoal_store_free(s);
    rel_free(&r);
}

/* A take-back made its copy, and then the process died before the sidecar
 * said the chunk was gone (or that write failed): the sidecar still has
 * every bit. The restart must not trust the rotten published blob because
 * of it (it hashes it, our partial file being there): it used to come
 * back complete and hand out the wrong bytes. */
static void test_take_back_crash(void)
{
    const char *cache = new_cache();
    struct shoal_store *s = NULL;
    struct rel r;
    char sc[1024], p[1024];
    uint8_t *old;
    size_t n;
    uint32_t c;

    s = filled(cache, &r, NULL);
    shoal_store_flush(s);
    sidecar_path(sc, sizeof sc, cache, &r);
    old = slurp(sc, &n);
    rot_blob(cache, &r, 1, 100000);
    c = chunk_at(&r, 1, 100000);
    shoal_store_file_suspect(s, 1, true);
    CHECK_EQ(shoal_store_take_back(s, 1, &c, 1), 0);
    own_partial(p, sizeof p, cache, &r, 1);
    CHECK(exists(p));
    shoal_store_free(s);
    spit(sc, old, n); /* as if the process died before the sidecar write */
    free(old);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK(!shoal_store_complete(s));
    CHECK(!shoal_store_file_ready(s, 1));
    CHECK(!shoal_store_has(s, c));
    CHECK(exists(p));
    CHECK(shoal_store_file_done(s, 0) && shoal_store_file_done(s, 2));
    refill_ok(s, &r, 1, c);
    shoal_store_free(s);
    rel_free(&r);
}

/* --verify-store repaired a rotten blob in a copy, and the process died
 * before its end-of-open flush: the old sidecar and our copy are there.
 * The next plain open hashes the blob and checks the copy chunk by chunk
 * (it used to trust the blob). */
static void test_verify_crash(void)
{
    const char *cache = new_cache();
    struct shoal_store_opts vo = {.flags = SHOAL_STORE_VERIFY};
    struct shoal_store *s = NULL;
    struct rel r;
    char sc[1024];
    uint8_t *old;
    size_t n;

    s = filled(cache, &r, NULL);
    shoal_store_free(s);
    sidecar_path(sc, sizeof sc, cache, &r);
    old = slurp(sc, &n);
    rot_blob(cache, &r, 1, 100000);
    REQUIRE(shoal_store_open(&s, cache, r.m, &vo) == 0);
    CHECK(!shoal_store_file_done(s, 1));
    shoal_store_free(s);
    spit(sc, old, n);
    free(old);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK(!shoal_store_complete(s));
    CHECK(!shoal_store_has(s, chunk_at(&r, 1, 100000)));
    refill_ok(s, &r, 1, chunk_at(&r, 1, 100000));
    shoal_store_free(s);
    rel_free(&r);
}

/* Our partial file next to a whole published blob is a leftover, removed
 * at open, but not while another process holds its lock (it used to be
 * removed under that one's feet). */
static void test_leftover_locked(void)
{
    const char *cache = new_cache();
    struct shoal_store *s = NULL;
    struct rel r;
    char p[1024];
    int fd;

    s = filled(cache, &r, NULL);
    shoal_store_free(s);
    own_partial(p, sizeof p, cache, &r, 1);
    fd = open(p, O_RDWR | O_CREAT, 0644);
    REQUIRE(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0);
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK(shoal_store_complete(s));
    CHECK(exists(p));
    shoal_store_free(s);
    close(fd); /* its lock goes with it */
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK(!exists(p));
    shoal_store_free(s);
    rel_free(&r);
}

/* Something not ours of kind |kind| ('d' directory, 'p' FIFO, 's' socket,
 * 'l' symlink to the directory |target|) at |path|. */
static void plant(const char *path, char kind, const char *target)
{
    switch (kind) {
    case 'd':
        REQUIRE(mkdir(path, 0755) == 0);
        break;
    case 'p':
        REQUIRE(mkfifo(path, 0644) == 0);
        break;
    case 'l':
        REQUIRE(symlink(target, path) == 0);
        break;
    default: {
        /* A socket path is short: bound by its name in its own folder. */
        char dir[1024];
        const char *slash = strrchr(path, '/');
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int here = open(".", O_RDONLY | O_DIRECTORY), sfd = socket(AF_UNIX, SOCK_STREAM, 0);

        REQUIRE(here >= 0 && sfd >= 0 && slash && strlen(slash + 1) < sizeof sa.sun_path);
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", slash + 1);
        REQUIRE(chdir(dir) == 0);
        REQUIRE(bind(sfd, (struct sockaddr *)&sa, sizeof sa) == 0);
        REQUIRE(fchdir(here) == 0);
        close(sfd); /* the name stays */
        close(here);
        break;
    }
    }
}

/* It is still there, the same kind of thing: never removed or replaced. */
static bool planted(const char *path, char kind)
{
    struct stat st;

    if (lstat(path, &st) != 0)
        return false;
    return kind == 'd'   ? S_ISDIR(st.st_mode)
           : kind == 'p' ? S_ISFIFO(st.st_mode)
           : kind == 'l' ? S_ISLNK(st.st_mode)
                         : S_ISSOCK(st.st_mode);
}

/* The start-up sweep's claim: only names starting with "c" are used. */
static bool claims_c(void *user, const char *folder, const char *name)
{
    CHECK(strcmp(folder, "models--acme--sweep") == 0);
    ++*(int *)user;
    return name[0] == 'c';
}

/* |len| bytes at <cache>/|dir|/|name| (|dir| created). */
static void sweep_file(const char *cache, const char *dir, const char *name, size_t len)
{
    char p[1024];
    FILE *fp;

    /* Each component of |dir| in turn (two at most here). */
    REQUIRE(mkdir(cache, 0755) == 0 || errno == EEXIST);
    snprintf(p, sizeof p, "%s/%.*s", cache, (int)strcspn(dir, "/"), dir);
    REQUIRE(mkdir(p, 0755) == 0 || errno == EEXIST);
    snprintf(p, sizeof p, "%s/%s", cache, dir);
    REQUIRE(mkdir(p, 0755) == 0 || errno == EEXIST);
    snprintf(p, sizeof p, "%s/%s/%s", cache, dir, name);
    REQUIRE((fp = fopen(p, "wb")));
    for (size_t i = 0; i < len; i++)
        fputc('x', fp);
    fclose(fp);
}

/* Leftover partial files and sidecars nothing claims are removed; anything
 * claimed, locked by a filler, not a regular file or not named as shoald
 * names them stays. */
static void test_sweep_partials(void)
{
    const char *cache = new_cache();
    const char *meta = "models--acme--sweep/.shoal";
    char a64[65], c64[65], d64[65], p[4096], first[1024];
    char gone[4][128], kept[8][128];
    uint64_t bytes = 0;
    uint32_t files = 0;
    int asked = 0, fd;

    memset(a64, 'a', 64);
    a64[64] = '\0';
    memcpy(c64, a64, sizeof c64);
    c64[0] = 'c';
    memcpy(d64, a64, sizeof d64);
    d64[0] = 'd';
    snprintf(gone[0], sizeof gone[0], "%s.incomplete", a64);
    snprintf(gone[1], sizeof gone[1], "%.40s.incomplete", a64);
    snprintf(gone[2], sizeof gone[2], "%s.0123456789abcdef.incomplete", a64);
    snprintf(gone[3], sizeof gone[3], "%s.state", a64);
    snprintf(kept[0], sizeof kept[0], "%s.incomplete", c64);       /* claimed */
    snprintf(kept[1], sizeof kept[1], "%s.incomplete", d64);       /* locked */
    snprintf(kept[2], sizeof kept[2], "notes.incomplete");
    snprintf(kept[3], sizeof kept[3], "%s.manifest", a64);
    snprintf(kept[4], sizeof kept[4], "%.63s.incomplete", a64);    /* 63 hex */
    snprintf(kept[5], sizeof kept[5], "%.63sA.incomplete", a64);   /* not lowercase */
    snprintf(kept[6], sizeof kept[6], "%s.0123456789abcdeg.incomplete", a64);
    snprintf(kept[7], sizeof kept[7], "%s.state.tmp", a64);
    for (int i = 0; i < 4; i++)
        sweep_file(cache, meta, gone[i], 1000 + (size_t)i);
    for (int i = 0; i < 8; i++)
        sweep_file(cache, meta, kept[i], 10);
    /* huggingface_hub's own partial download, and a folder that is no repo */
    sweep_file(cache, "models--acme--sweep/blobs", gone[0], 10);
    sweep_file(cache, "notarepo/.shoal", gone[0], 10);
    snprintf(p, sizeof p, "%s/%s/%.40s.0123456789abcdef.incomplete", cache, meta, d64);
    plant(p, 'd', NULL);
    snprintf(p, sizeof p, "%s/%s/%.40s.incomplete", cache, meta, d64);
    plant(p, 'l', cache);
    snprintf(p, sizeof p, "%s/%s/%s", cache, meta, kept[1]);
    fd = open(p, O_RDWR);
    REQUIRE(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0);

    REQUIRE(shoal_store_sweep_partials(cache, claims_c, &asked, &files, &bytes, NULL, first,
                                       sizeof first) == 0);
    CHECK(files == 4);
    CHECK(bytes == 1000 + 1001 + 1002 + 1003);
    CHECK(strstr(first, "/models--acme--sweep/.shoal/") != NULL);
    CHECK(asked >= 4);
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s/%s", cache, meta, gone[i]);
        CHECK(!exists(p));
    }
    for (int i = 0; i < 8; i++) {
        snprintf(p, sizeof p, "%s/%s/%s", cache, meta, kept[i]);
        CHECK(exists(p));
    }
    snprintf(p, sizeof p, "%s/models--acme--sweep/blobs/%s", cache, gone[0]);
    CHECK(exists(p));
    snprintf(p, sizeof p, "%s/notarepo/.shoal/%s", cache, gone[0]);
    CHECK(exists(p));
    snprintf(p, sizeof p, "%s/%s/%.40s.0123456789abcdef.incomplete", cache, meta, d64);
    CHECK(planted(p, 'd'));
    snprintf(p, sizeof p, "%s/%s/%.40s.incomplete", cache, meta, d64);
    CHECK(planted(p, 'l'));
    close(fd);
    /* Its filler gone, a locked one unclaimed goes at the next sweep. */
    REQUIRE(shoal_store_sweep_partials(cache, claims_c, &asked, &files, &bytes, NULL, first,
                                       sizeof first) == 0);
    CHECK(files == 1 && bytes == 10);
    /* No cache yet: nothing to do. */
    snprintf(p, sizeof p, "%s/none", cache);
    CHECK(shoal_store_sweep_partials(p, claims_c, &asked, &files, &bytes, NULL, first, 0) == 0 &&
          files == 0);
}


/* Nothing in directory |dir| (a symlink's target outside the store). */
static bool dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (!d)
        return false;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n == 0;
}

/* A directory, FIFO, socket or symlink where a partial file goes
 * (blobs/<sha>.incomplete, or this release's own
 * blobs/<sha>.<release id>.incomplete) is someone else's: never opened (a
 * FIFO would block), followed or removed. Only at the shared name: the
 * file is filled under our own name and the store says so. At both: that
 * file (and its copy, one blob) is withheld with a message naming the path
 * and what to do, and the rest of the release completes. Only at our own
 * name: the shared one is used, also next to a published blob (a FIFO
 * there used to hang the open). Before, any of them failed the whole
 * release's open. */
static void test_partial_not_regular(void)
{
    static const char kinds[] = "dpsl";
    char outside[256];

    alarm(60); /* a blocking open of a FIFO fails the test, not the suite */
    snprintf(outside, sizeof outside, "%s/outside-%d", root, dir_seq++);
    REQUIRE(mkdir(outside, 0755) == 0);
    for (const char *k = kinds; *k; k++) {
        for (int where = 0; where < 4; where++) {
            /* 0: shared name; 1: both; 2: own name; 3: own name next to
             * the published blob. */
            const char *cache = new_cache();
            struct shoal_store *s = NULL;
            char shared[1024], own[1024], msg[1024], err[512];
            struct shoal_store_opts o = {.err = err, .errlen = sizeof err};
            struct rel r;
            uint32_t n;
            int rv;

            rel_std(&r, "org/m", C1, -1, 70 + (uint64_t)where);
            blob_path(shared, sizeof shared, cache, &r, 1, true);
            own_partial(own, sizeof own, cache, &r, 1);
            n = shoal_manifest_nchunks(r.m);
            /* The folders, and (3) the published blob. */
            REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
            if (where == 3)
                for (uint32_t i = 0; i < n; i++)
                    REQUIRE(put(s, &r, i) == 0);
            shoal_store_free(s);
            s = NULL;
            (void)unlink(shared);
            if (where <= 1)
                plant(shared, *k, outside);
            if (where >= 1)
                plant(own, *k, outside);
            err[0] = '\0';
            rv = shoal_store_open(&s, cache, r.m, &o);
            CHECK_EQ(rv, 0);
            if (rv != 0) {
                fprintf(stderr, "  kind %c at %d: %s\n", *k, where, err);
                rel_free(&r);
                continue;
            }
            for (uint32_t i = 0; i < n; i++)
                CHECK_EQ(put(s, &r, i), 0);
            if (where == 1) {
                /* Withheld, both files of the blob; the rest is in. */
                CHECK_EQ(shoal_store_file_withheld(s, 1, msg, sizeof msg), SHOAL_EBADPATH);
                CHECK(strstr(msg, own) != NULL);
                CHECK(strstr(msg, "move ") != NULL);
                CHECK(strstr(msg, *k == 'd' ? "a directory" : *k == 'p' ? "a FIFO"
                                  : *k == 's' ? "a socket" : "a symbolic link") != NULL);
                CHECK_EQ(shoal_store_file_withheld(s, 3, NULL, 0), SHOAL_EBADPATH);
                CHECK(!shoal_store_file_done(s, 1));
                CHECK(!shoal_store_file_done(s, 3));
                CHECK(!shoal_store_complete(s));
                CHECK(shoal_store_file_done(s, 0));
                CHECK(shoal_store_file_done(s, 2));
                CHECK(shoal_store_file_done(s, 4));
                for (uint32_t f = 1; f <= 3; f += 2) {
                    const struct shoal_mf_file *mf = shoal_manifest_file(r.m, f);
                    for (uint32_t c = 0; c < mf->nchunks; c++)
                        CHECK(!shoal_store_has(s, mf->first_chunk + c));
                }
                fprintf(stderr, "  %s\n", msg);
            } else {
                CHECK(shoal_store_complete(s));
                CHECK_EQ(shoal_store_file_withheld(s, 1, NULL, 0), 0);
                CHECK_EQ(shoal_store_file_note(s, 1, msg, sizeof msg), where == 0);
                if (where == 0) {
                    CHECK(strstr(msg, shared) != NULL);
                    fprintf(stderr, "  %s\n", msg);
                }
            }
            if (where <= 1)
                CHECK(planted(shared, *k));
            if (where >= 1)
                CHECK(planted(own, *k));
            CHECK(dir_empty(outside));
            shoal_store_free(s);
            if (where >= 2) {
                check_published(cache, &r);
            } else if (where == 0) {
                CHECK_EQ(shoal_hf_snapshot_check(cache, r.m, NULL), 0);
                snap_path(msg, sizeof msg, cache, &r, 1);
                CHECK(file_is(msg, r.f[1].data, r.f[1].size));
                CHECK(!exists(own)); /* renamed into place */
            }
            rel_free(&r);
        }
    }
    alarm(0);
}

/* Reads of one inode at one offset fail with EIO (a bad sector), through
 * both ways the store reads a blob. */
static ino_t eio_ino;
static off_t eio_off = -1;

static bool eio_hit(int fd, off_t off, size_t n)
{
    struct stat st;

    return eio_off >= 0 && fstat(fd, &st) == 0 && st.st_ino == eio_ino && off <= eio_off &&
           eio_off < off + (off_t)n;
}

ssize_t pread64(int fd, void *b, size_t n, off_t off);
ssize_t pread64(int fd, void *b, size_t n, off_t off)
{
    static ssize_t (*real)(int, void *, size_t, off_t);

    if (!real) {
        void *v = dlsym(RTLD_NEXT, "pread64");
        memcpy(&real, &v, sizeof real);
    }
    if (eio_hit(fd, off, n)) {
        if (off < eio_off)
            return real(fd, b, (size_t)(eio_off - off), off);
        errno = EIO;
        return -1;
    }
    return real(fd, b, n, off);
}

ssize_t copy_file_range(int in, loff_t *ioff, int out, loff_t *ooff, size_t n, unsigned fl)
{
    static ssize_t (*real)(int, loff_t *, int, loff_t *, size_t, unsigned);

    if (!real) {
        void *v = dlsym(RTLD_NEXT, "copy_file_range");
        memcpy(&real, &v, sizeof real);
    }
    if (eio_hit(in, *ioff, n)) {
        if (*ioff < eio_off)
            return real(in, ioff, out, ooff, (size_t)(eio_off - *ioff), fl);
        errno = EIO;
        return -1;
    }
    return real(in, ioff, out, ooff, n, fl);
}

static void eio_at(const char *cache, const struct rel *r, int f, off_t off)
{
    char p[1024];
    struct stat st;

    blob_path(p, sizeof p, cache, r, f, false);
    REQUIRE(stat(p, &st) == 0);
    eio_ino = st.st_ino;
    eio_off = off;
}

/* A chunk that cannot be read (EIO) is taken back and fetched again: the
 * copy skips it, and a read error in another chunk takes that one back
 * too. Both used to fail the take-back (the copy read every byte), and
 * the advised restart with --verify-store failed to open the release. */
static void test_take_back_eio(void)
{
    const char *cache = new_cache();
    struct shoal_store_opts vo = {.flags = SHOAL_STORE_VERIFY};
    struct shoal_store *s = NULL;
    struct rel r;
    uint8_t buf[16384];
    uint32_t c, c2;

    s = filled(cache, &r, NULL);
    c = chunk_at(&r, 1, 100000);
    c2 = chunk_at(&r, 1, 150000);
    REQUIRE(c != c2);
    eio_at(cache, &r, 1, 100000);
    CHECK(shoal_store_read_chunk(s, c, buf, sizeof buf) < 0);
    shoal_store_file_suspect(s, 1, true);
    CHECK_EQ(shoal_store_take_back(s, 1, &c, 1), 0);
    CHECK(!shoal_store_has(s, c));
    refill_ok(s, &r, 1, c);
    /* Now a bad sector in a chunk other than the one taken back. */
    eio_at(cache, &r, 1, 150000);
    shoal_store_file_suspect(s, 1, true);
    CHECK_EQ(shoal_store_take_back(s, 1, &c, 1), 0);
    CHECK(!shoal_store_has(s, c) && !shoal_store_has(s, c2));
    CHECK_EQ(put(s, &r, c), 0);
    CHECK(!shoal_store_file_done(s, 1));
    eio_off = -1;
    refill_ok(s, &r, 1, c2);
    shoal_store_free(s);
    /* The restart with --verify-store, the sector still unreadable. */
    eio_at(cache, &r, 1, 100000);
    REQUIRE(shoal_store_open(&s, cache, r.m, &vo) == 0);
    CHECK(!shoal_store_has(s, c));
    CHECK(shoal_store_file_done(s, 0) && shoal_store_file_done(s, 2));
    eio_off = -1;
    refill_ok(s, &r, 1, c);
    shoal_store_free(s);
    rel_free(&r);
}

/* Fills |cache| (a small tmpfs) so that |room| bytes stay free. */
static void fill_to(const char *cache, uint64_t room)
{
    struct statvfs sv;
    char p[1024];
    uint64_t freeb;
    int fd;

    REQUIRE(statvfs(cache, &sv) == 0);
    freeb = (uint64_t)sv.f_bavail * sv.f_frsize;
    REQUIRE(freeb > room);
    snprintf(p, sizeof p, "%s/filler", cache);
    fd = open(p, O_CREAT | O_WRONLY, 0644);
    REQUIRE(fd >= 0 && posix_fallocate(fd, 0, (off_t)(freeb - room)) == 0);
    close(fd);
}

/* No room for the repair copy: the take-back fails leaving things as they
 * were, and the restart with --verify-store opens the release (it used to
 * fail whole) with that file withheld and the rest done; last_error names
 * the copy in its repo. Once there is room, the next one repairs it. */
static int test_repair_no_room(void)
{
    char cache[128], p[1024], msg[512] = "", want[1024];
    struct shoal_store_opts vo = {.flags = SHOAL_STORE_VERIFY, .err = msg, .errlen = sizeof msg};
    struct shoal_store *s = NULL;
    struct rel r;
    uint32_t c;

    snprintf(cache, sizeof cache, "%s/noroom", root);
    REQUIRE(mkdir(cache, 0755) == 0);
    if (!private_tmpfs(cache, "2m"))
        return 77;
    s = filled(cache, &r, NULL);
    CHECK(shoal_store_complete(s));
    fill_to(cache, 100000); /* less than the 200000-byte shard */
    rot_blob(cache, &r, 1, 100000);
    c = chunk_at(&r, 1, 100000);
    shoal_store_file_suspect(s, 1, true);
    CHECK_EQ(shoal_store_take_back(s, 1, &c, 1), SHOAL_ENOSPC);
    own_partial(p, sizeof p, cache, &r, 1);
    CHECK(!exists(p));
    CHECK(shoal_store_has(s, c));
    shoal_store_free(s);
    s = NULL;
    REQUIRE(shoal_store_open(&s, cache, r.m, &vo) == 0);
    CHECK(shoal_store_file_done(s, 0) && shoal_store_file_done(s, 2));
    CHECK(!shoal_store_file_ready(s, 1));
    CHECK_EQ(shoal_store_file_withheld(s, 1, msg, sizeof msg), SHOAL_ENOSPC);
    CHECK(strstr(msg, "to repair model.safetensors: ") != NULL); /* its own reason */
    CHECK_EQ(shoal_store_file_withheld(s, 0, msg, sizeof msg), 0);
    CHECK(msg[0] == '\0');
    shoal_store_last_error(s, msg, sizeof msg);
    repo_path(want, sizeof want, cache, &r, "blobs/");
    fprintf(stderr, "  %s\n", msg);
    CHECK(strstr(msg, want) != NULL && strstr(msg, ".incomplete") != NULL);
    CHECK(strstr(msg, shoal_strerror(SHOAL_ENOSPC)) != NULL);
    CHECK(!exists(p));
    shoal_store_free(s);
    snprintf(p, sizeof p, "%s/filler", cache);
    REQUIRE(unlink(p) == 0);
    s = NULL;
    REQUIRE(shoal_store_open(&s, cache, r.m, &vo) == 0);
    CHECK_EQ(shoal_store_file_withheld(s, 1, NULL, 0), 0);
    CHECK(!shoal_store_has(s, c));
    refill_ok(s, &r, 1, c);
    shoal_store_free(s);
    umount(cache);
    rel_free(&r);
    return t_done();
}

/* No room for the repair copy, then a restart WITHOUT --verify-store: the
 * file found bad stays withheld (it used to be trusted again, whatever its
 * bytes, and served: peers banned the node again), a second plain restart
 * still withholds it, and once there is room a plain restart repairs it;
 * after that it is trusted as any other. */
static int test_kept_survives_restart(void)
{
    char cache[128], p[1024];
    struct shoal_store *s = NULL;
    struct rel r;
    uint32_t c;
    int fd = -1;

    snprintf(cache, sizeof cache, "%s/keptrestart", root);
    REQUIRE(mkdir(cache, 0755) == 0);
    if (!private_tmpfs(cache, "2m"))
        return 77;
    s = filled(cache, &r, NULL);
    fill_to(cache, 100000); /* less than the 200000-byte shard */
    rot_blob(cache, &r, 1, 100000);
    c = chunk_at(&r, 1, 100000);
    shoal_store_file_suspect(s, 1, true);
    CHECK_EQ(shoal_store_take_back(s, 1, &c, 1), SHOAL_ENOSPC);
    shoal_store_free(s);
    for (int round = 0; round < 2; round++) {
        s = NULL;
        REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
        CHECK(!shoal_store_file_ready(s, 1));
        CHECK_EQ(shoal_store_file_withheld(s, 1, NULL, 0), SHOAL_ENOSPC);
        CHECK_EQ(shoal_store_file_open(s, 1, &fd), SHOAL_EBADHASH);
        CHECK(shoal_store_file_ready(s, 0) && shoal_store_file_ready(s, 2));
        CHECK_EQ(shoal_store_file_withheld(s, 0, NULL, 0), 0);
        shoal_store_free(s);
    }
    snprintf(p, sizeof p, "%s/filler", cache);
    REQUIRE(unlink(p) == 0);
    s = NULL;
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK_EQ(shoal_store_file_withheld(s, 1, NULL, 0), 0);
    CHECK(!shoal_store_has(s, c));
    refill_ok(s, &r, 1, c);
    shoal_store_free(s);
    s = NULL;
    REQUIRE(shoal_store_open(&s, cache, r.m, NULL) == 0);
    CHECK(shoal_store_complete(s) && shoal_store_file_ready(s, 1));
    shoal_store_free(s);
    umount(cache);
    rel_free(&r);
    return t_done();
}

/* The copy takes the last free space, so the sidecar write after it fails:
 * the take-back fails and undoes itself (it used to return 0 with the
 * sidecar still vouching for the chunk, so a restart served the rot), and
 * once there is room a restart with --verify-store repairs the file. */
static int test_take_back_sidecar_full(void)
{
    char cache[128], p[1024], msg[512] = "";
    struct shoal_store_opts vo = {.flags = SHOAL_STORE_VERIFY};
    struct shoal_store *s = NULL;
    struct rel r;
    uint32_t c;
    int rv;

    snprintf(cache, sizeof cache, "%s/nosidecar", root);
    REQUIRE(mkdir(cache, 0755) == 0);
    if (!private_tmpfs(cache, "2m"))
        return 77;
    s = filled(cache, &r, NULL);
    CHECK(shoal_store_complete(s));
    fill_to(cache, (200000 + 4095) / 4096 * 4096);
    rot_blob(cache, &r, 1, 100000);
    c = chunk_at(&r, 1, 100000);
    shoal_store_file_suspect(s, 1, true);
    rv = shoal_store_take_back(s, 1, &c, 1);
    shoal_store_last_error(s, msg, sizeof msg);
    fprintf(stderr, "  take_back: %s: %s\n", shoal_strerror(rv), msg);
    CHECK_EQ(rv, SHOAL_ENOSPC);
    CHECK(strstr(msg, "sidecar") != NULL);
    own_partial(p, sizeof p, cache, &r, 1);
    CHECK(!exists(p));
    CHECK(shoal_store_has(s, c) && shoal_store_file_done(s, 1) && !shoal_store_file_ready(s, 1));
    shoal_store_free(s);
    snprintf(p, sizeof p, "%s/filler", cache);
    REQUIRE(unlink(p) == 0); /* the operator makes room and restarts */
    s = NULL;
    REQUIRE(shoal_store_open(&s, cache, r.m, &vo) == 0);
    CHECK(!shoal_store_has(s, c));
    refill_ok(s, &r, 1, c);
    shoal_store_free(s);
    umount(cache);
    rel_free(&r);
    return t_done();
}

#ifdef SHOAL_TEST_FAILALLOC
#include "failalloc.h"

/* One pull of the standard release into a fresh cache with an allocation
 * failing somewhere (failalloc_walk): open, every chunk put (a failed put
 * noted and the rest still put), close. Then, with every allocation
 * working again: nothing under a final name in the cache holds wrong
 * bytes, and a second pull into the same cache completes and publishes
 * every file: a failure costs a retry, never a poisoned or wedged cache. */
static int fa_pull(void *user)
{
    const struct rel *r = user;
    const char *cache = new_cache();
    uint32_t n = shoal_manifest_nchunks(r->m);
    struct shoal_store_opts o = {.branch = "main"};
    struct shoal_store *s = NULL;
    char p[1024];
    int rv;

    rv = shoal_store_open(&s, cache, r->m, &o);
    for (uint32_t i = 0; rv == 0 && s && i < n; i++) {
        if (!shoal_store_has(s, i)) {
            int prv = put(s, r, i);
            if (prv != 0 && rv == 0)
                rv = prv;
        }
    }
    if (rv == 0 && !shoal_store_complete(s))
        rv = -EAGAIN;
    shoal_store_free(s);
    s = NULL;
    failalloc_disarm();

    for (int f = 0; f < r->nf; f++) {
        snap_path(p, sizeof p, cache, r, f);
        if (exists(p) && !file_is(p, r->f[f].data, r->f[f].size)) {
            fprintf(stderr, "%s holds wrong bytes after a pull that returned %d\n", p, rv);
            CHECK(false);
        }
    }
    REQUIRE(shoal_store_open(&s, cache, r->m, &o) == 0);
    (void)put_missing(s, r);
    CHECK(shoal_store_complete(s));
    shoal_store_free(s);
    check_published(cache, r);
    t_rmtree(cache);
    return rv;
}

static void test_failalloc_pull(void)
{
    struct rel r;

    rel_std(&r, "org/tiny", C1, -1, 1);
    CHECK_EQ(failalloc_walk("store pull", fa_pull, &r, 100000), 0);
    rel_free(&r);
}
#endif

int main(int argc, char **argv)
{
    struct shoal_pubkey pk;
    int rv;

    REQUIRE(shoal_hash_init() == 0);
    REQUIRE(shoal_key_generate(&pk, &sk) == 0);
    snprintf(root, sizeof root, "/tmp/shoal-store-XXXXXX");
    REQUIRE(mkdtemp(root));

    if (argc > 1 && strcmp(argv[1], "diskfull") == 0) {
        rv = test_diskfull();
#ifdef SHOAL_TEST_FAILALLOC
    } else if (argc > 1 && strcmp(argv[1], "failalloc") == 0) {
        RUN(test_failalloc_pull);
        rv = t_done();
#endif
    } else if (argc > 1 && strcmp(argv[1], "rotfull") == 0) {
        rv = test_repair_no_room();
        if (rv == 0)
            rv = test_take_back_sidecar_full();
        if (rv == 0)
            rv = test_kept_survives_restart();
    } else {
        RUN(test_hfcache_names);
        RUN(test_publish_random_order);
        RUN(test_bad_chunk);
        RUN(test_resume);
        RUN(test_hf_partial_names);
        RUN(test_blob_names);
        RUN(test_crash_and_bad_sidecar);
        RUN(test_crash_time_flush);
        RUN(test_crash_soon_after_open);
        RUN(test_dedup_releases);
        RUN(test_shared_partial);
        RUN(test_verify_no_follow);
        RUN(test_blobs_swapped);
        RUN(test_sweeps_leftovers);
        RUN(test_sha_mismatch);
        RUN(test_verify_repairs_published);
        RUN(test_unverified_blob_hashed);
        RUN(test_unverified_deferred);
        RUN(test_snapshot_other_blob_name);
        RUN(test_snapshot_copies);
        RUN(test_ref_needs_snapshot);
    RUN(test_ref_owed);
        RUN(test_found_link_fails);
        RUN(test_take_back_shared);
        RUN(test_take_back_fails);
        RUN(test_take_back_not_ready);
        RUN(test_suspect_cleared);
        RUN(test_take_back_crash);
        RUN(test_repair_partial_removed);
        RUN(test_verify_crash);
        RUN(test_leftover_locked);
        RUN(test_partial_not_regular);
        RUN(test_sweep_partials);
        RUN(test_take_back_eio);
        RUN(test_verify_copy_stays_locked);
        RUN(test_sidecar_v1_read);
        RUN(test_concurrent_puts);
        RUN(test_duplicates_counted_once);
        RUN(test_ready_early);
        RUN(test_memory_mode);
        rv = t_done();
    }
    t_rmtree(root);
    return rv;
}
