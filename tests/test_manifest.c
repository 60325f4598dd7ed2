/* SPDX-License-Identifier: MIT */
/* Signed manifests: build, sign and parse round trips; the documented signed
 * form; every flipped bit and every truncation refused; hand-written bodies
 * that are validly signed but break a rule (sizes, paths, commit, types,
 * counts) refused with the right code; limits; the builder's own checks. */
#include "t.h"

#include "error.h"
#include "hash.h"
#include "keys.h"
#include "manifest.h"
#include "mp.h"

#include <errno.h>
#include <malloc.h>
#include <sodium.h>
#include <string.h>

#define CREATED 1700000123u
static const char COMMIT[] = "0123456789abcdef0123456789abcdef01234567";
static const struct shoal_cdc_params PARAMS = {64, 128, 256};

static struct shoal_pubkey pub, other_pub;
static struct shoal_seckey sec, other_sec;
static struct shoal_keyset *trusted;

static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static void rnd_bytes(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
}

/* A manifest of the given files, each cut into random chunk lengths. */
static struct shoal_manifest *build(const char *const *paths, const uint64_t *sizes, size_t n)
{
    struct shoal_manifest *m = NULL;
    REQUIRE(shoal_manifest_new(&m, SHOAL_REPO_DATASET, "org-x/data_set.v2", COMMIT, &PARAMS) == 0);
    for (size_t i = 0; i < n; i++) {
        uint8_t sha[32], id[32];
        rnd_bytes(sha, 32);
        REQUIRE(shoal_manifest_add_file(m, paths[i], sizes[i], sha) == 0);
        for (uint64_t left = sizes[i]; left > 0;) {
            uint32_t len = 1 + rnd() % PARAMS.max_size;
            if (len > left)
                len = (uint32_t)left;
            rnd_bytes(id, 32);
            REQUIRE(shoal_manifest_add_chunk(m, id, len) == 0);
            left -= len;
        }
    }
    return m;
}

static struct shoal_manifest *build_small(void)
{
    static const char *const paths[] = {"config.json", "weights/model-00001.safetensors",
                                        "empty.txt"};
    static const uint64_t sizes[] = {300, 1000, 0};
    return build(paths, sizes, 3);
}

static void test_roundtrip(void)
{
    static const char *const paths[] = {"README.md", "a/b", "a/b-x", "a/c/d.bin", "zz",
                                        ".gitattributes", "empty"};
    static const uint64_t sizes[] = {10, 5000, 256, 70000, 1, 300, 0};
    struct shoal_manifest *m = build(paths, sizes, 7);
    CHECK(shoal_manifest_id(m) == NULL);
    struct shoal_buf sb;
    shoal_buf_init(&sb, 1 << 20);
    REQUIRE(shoal_manifest_sign(m, &sec, CREATED, &sb) == 0);
    REQUIRE(shoal_manifest_id(m) != NULL);

    uint8_t id[32];
    shoal_chunk_id(id, sb.data, sb.len);
    CHECK(memcmp(id, shoal_manifest_id(m), 32) == 0);
    CHECK(memcmp(shoal_manifest_signer(m), pub.pk, 32) == 0);
    CHECK(shoal_manifest_created(m) == CREATED);

    struct shoal_manifest *p = NULL;
    REQUIRE(shoal_manifest_parse(&p, sb.data, sb.len, trusted, NULL) == 0);
    CHECK_EQ(shoal_manifest_repo_type(p), SHOAL_REPO_DATASET);
    CHECK(strcmp(shoal_manifest_repo_id(p), "org-x/data_set.v2") == 0);
    CHECK(strcmp(shoal_manifest_commit(p), COMMIT) == 0);
    CHECK(memcmp(shoal_manifest_params(p), &PARAMS, sizeof PARAMS) == 0);
    CHECK(memcmp(shoal_manifest_id(p), id, 32) == 0);
    CHECK(memcmp(shoal_manifest_signer(p), pub.pk, 32) == 0);
    CHECK(shoal_manifest_created(p) == CREATED);
    uint64_t total = 0;
    for (size_t i = 0; i < 7; i++)
        total += sizes[i];
    CHECK(shoal_manifest_total_size(p) == total);
    CHECK(shoal_manifest_total_size(m) == total);
    REQUIRE(shoal_manifest_nfiles(p) == 7);
    REQUIRE(shoal_manifest_nchunks(p) == shoal_manifest_nchunks(m));
    for (uint32_t i = 0; i < 7; i++) {
        const struct shoal_mf_file *a = shoal_manifest_file(m, i), *b = shoal_manifest_file(p, i);
        CHECK(strcmp(a->path, b->path) == 0);
        CHECK(strcmp(b->path, paths[i]) == 0);
        CHECK(a->size == b->size);
        CHECK(memcmp(a->sha256, b->sha256, 32) == 0);
        CHECK_EQ(a->first_chunk, b->first_chunk);
        CHECK_EQ(a->nchunks, b->nchunks);
        CHECK_EQ(shoal_manifest_find_file(p, paths[i]), i);
        CHECK_EQ(shoal_manifest_find_file(m, paths[i]), i);
        uint64_t off = 0;
        for (uint32_t c = b->first_chunk; c < b->first_chunk + b->nchunks; c++) {
            const struct shoal_mf_chunk *x = shoal_manifest_chunk(m, c);
            const struct shoal_mf_chunk *y = shoal_manifest_chunk(p, c);
            CHECK(memcmp(x->id, y->id, 32) == 0);
            CHECK_EQ(x->len, y->len);
            CHECK_EQ(y->file, i);
            CHECK(y->offset == off);
            CHECK(x->offset == y->offset);
            off += y->len;
        }
        CHECK(off == b->size);
    }
    CHECK(shoal_manifest_file(p, 7) == NULL);
    CHECK(shoal_manifest_chunk(p, shoal_manifest_nchunks(p)) == NULL);
    CHECK_EQ(shoal_manifest_find_file(p, "a"), SHOAL_ENOTFOUND);
    CHECK_EQ(shoal_manifest_find_file(p, "a\x01" "b"), SHOAL_ENOTFOUND);
    CHECK_EQ(shoal_manifest_find_file(p, "README.mdx"), SHOAL_ENOTFOUND);
    CHECK_EQ(shoal_manifest_find_file(p, ""), SHOAL_ENOTFOUND);

    /* No trust list: the signature is still checked, the signer is not. */
    struct shoal_manifest *q = NULL;
    CHECK_EQ(shoal_manifest_parse(&q, sb.data, sb.len, NULL, NULL), 0);
    shoal_manifest_free(q);
    q = NULL;
    struct shoal_keyset *others = NULL;
    REQUIRE(shoal_keyset_new(&others) == 0);
    REQUIRE(shoal_keyset_add(others, &other_pub) == 0);
    CHECK_EQ(shoal_manifest_parse(&q, sb.data, sb.len, others, NULL), SHOAL_EUNTRUSTED);
    CHECK(q == NULL);
    shoal_keyset_free(others);

    /* Signed once, frozen. */
    uint8_t zero[32] = {0};
    size_t len = sb.len;
    CHECK_EQ(shoal_manifest_add_file(m, "more", 0, zero), -EINVAL);
    CHECK_EQ(shoal_manifest_add_chunk(m, zero, 1), -EINVAL);
    CHECK_EQ(shoal_manifest_sign(m, &sec, CREATED, &sb), -EINVAL);
    CHECK_EQ(sb.len, len);

    shoal_manifest_free(p);
    shoal_manifest_free(m);
    shoal_buf_free(&sb);
}

/* Signing is deterministic: two publishers with the same key and the same
 * release produce the same bytes and the same id. */
static void test_deterministic(void)
{
    uint64_t saved = rng;
    struct shoal_manifest *a = build_small();
    rng = saved;
    struct shoal_manifest *b = build_small();
    struct shoal_buf x, y;
    shoal_buf_init(&x, 1 << 20);
    shoal_buf_init(&y, 1 << 20);
    REQUIRE(shoal_manifest_sign(a, &sec, CREATED, &x) == 0);
    REQUIRE(shoal_manifest_sign(b, &sec, CREATED, &y) == 0);
    CHECK(x.len == y.len && memcmp(x.data, y.data, x.len) == 0);
    CHECK(memcmp(shoal_manifest_id(a), shoal_manifest_id(b), 32) == 0);
    shoal_manifest_free(a);
    shoal_manifest_free(b);
    shoal_buf_free(&x);
    shoal_buf_free(&y);
}

/* Wraps |body| into the signed form exactly as manifest.h documents it. */
static void seal(const uint8_t *body, size_t n, const struct shoal_seckey *sk,
                 const char *domain, unsigned version, struct shoal_buf *out)
{
    size_t dlen = strlen(domain) + 1;
    uint8_t *msg = malloc(dlen + n);
    REQUIRE(msg);
    memcpy(msg, domain, dlen);
    memcpy(msg + dlen, body, n);
    uint8_t sig[64];
    REQUIRE(crypto_sign_detached(sig, NULL, msg, dlen + n, sk->sk) == 0);
    free(msg);
    struct shoal_pubkey pk;
    shoal_seckey_public(sk, &pk);
    struct shoal_mpw w;
    shoal_buf_reset(out);
    shoal_mpw_init(&w, out);
    shoal_mpw_array(&w, 5);
    shoal_mpw_cstr(&w, SHOAL_MANIFEST_MAGIC);
    shoal_mpw_uint(&w, version);
    shoal_mpw_bin(&w, body, n);
    shoal_mpw_bin(&w, pk.pk, 32);
    shoal_mpw_bin(&w, sig, 64);
    REQUIRE(w.err == 0);
}

static void test_documented_form(void)
{
    struct shoal_manifest *m = build_small();
    struct shoal_buf sb, again;
    shoal_buf_init(&sb, 1 << 20);
    shoal_buf_init(&again, 1 << 20);
    REQUIRE(shoal_manifest_sign(m, &sec, CREATED, &sb) == 0);

    struct shoal_mpr r;
    uint32_t n;
    const char *s;
    const uint8_t *body;
    uint64_t v;
    shoal_mpr_init(&r, sb.data, sb.len);
    REQUIRE(shoal_mpr_array(&r, &n, 10) == 0 && n == 5);
    REQUIRE(shoal_mpr_str(&r, &s, &n, 100) == 0);
    CHECK(n == strlen(SHOAL_MANIFEST_MAGIC) && memcmp(s, SHOAL_MANIFEST_MAGIC, n) == 0);
    REQUIRE(shoal_mpr_uint(&r, &v, 100) == 0);
    CHECK(v == 1);
    REQUIRE(shoal_mpr_bin(&r, &body, &n, UINT32_MAX) == 0);
    seal(body, n, &sec, SHOAL_MANIFEST_SIGN_DOMAIN, 1, &again);
    CHECK(again.len == sb.len && memcmp(again.data, sb.data, sb.len) == 0);

    /* The body's chunk records are 36 bytes each. */
    struct shoal_mpr br;
    shoal_mpr_init(&br, body, n);
    REQUIRE(shoal_mpr_array(&br, &n, 10) == 0 && n == 6);
    for (int i = 0; i < 5; i++)
        REQUIRE(shoal_mpr_skip(&br, 4) == 0);
    REQUIRE(shoal_mpr_array(&br, &n, 10) == 0 && n == 3);
    for (uint32_t f = 0; f < 3; f++) {
        const uint8_t *recs;
        uint32_t fields, rlen;
        REQUIRE(shoal_mpr_array(&br, &fields, 10) == 0 && fields == 4);
        for (int i = 0; i < 3; i++)
            REQUIRE(shoal_mpr_skip(&br, 4) == 0);
        REQUIRE(shoal_mpr_bin(&br, &recs, &rlen, UINT32_MAX) == 0);
        const struct shoal_mf_file *file = shoal_manifest_file(m, f);
        CHECK_EQ(rlen, file->nchunks * 36);
        if (file->nchunks > 0) {
            const struct shoal_mf_chunk *c = shoal_manifest_chunk(m, file->first_chunk);
            CHECK(memcmp(recs, c->id, 32) == 0);
            CHECK_EQ((uint32_t)recs[32] << 24 | (uint32_t)recs[33] << 16 |
                         (uint32_t)recs[34] << 8 | recs[35],
                     c->len);
        }
    }
    CHECK_EQ(shoal_mpr_left(&br), 0);

    /* The same body under another domain or version does not pass. */
    struct shoal_manifest *p = NULL;
    shoal_mpr_init(&r, sb.data, sb.len);
    REQUIRE(shoal_mpr_array(&r, &n, 10) == 0);
    REQUIRE(shoal_mpr_skip(&r, 1) == 0 && shoal_mpr_skip(&r, 1) == 0);
    REQUIRE(shoal_mpr_bin(&r, &body, &n, UINT32_MAX) == 0);
    seal(body, n, &sec, "shoal-cred-v1", 1, &again);
    CHECK_EQ(shoal_manifest_parse(&p, again.data, again.len, NULL, NULL), SHOAL_EBADSIG);
    /* A signer not trusted here is refused as such before its signature
     * is checked: forged copies from a stranger cost no verification. */
    struct shoal_keyset *none = NULL;
    REQUIRE(shoal_keyset_new(&none) == 0);
    CHECK_EQ(shoal_manifest_parse(&p, again.data, again.len, none, NULL), SHOAL_EUNTRUSTED);
    shoal_keyset_free(none);
    seal(body, n, &sec, SHOAL_MANIFEST_SIGN_DOMAIN, 3, &again);
    CHECK_EQ(shoal_manifest_parse(&p, again.data, again.len, NULL, NULL), SHOAL_EVERSION);
    CHECK(p == NULL);
    shoal_manifest_free(m);
    shoal_buf_free(&sb);
    shoal_buf_free(&again);
}

/* Blob ids (version 2): a file the Hub keeps in git carries its git blob
 * sha1, the name huggingface_hub gives its blob. A manifest without any is
 * still version 1, as before, for nodes that know only that; one with
 * some is version 2, signed under its own domain, and a version 1 parser's
 * four-field files do not pass as version 2. */
static void test_blob_ids(void)
{
    static const char *const paths[] = {"config.json", "model.safetensors", "tok.json"};
    static const uint64_t sizes[] = {300, 50, 40};
    struct shoal_manifest *m = build(paths, sizes, 1), *p = NULL;
    struct shoal_buf sb, again;
    struct shoal_mpr r;
    const uint8_t *body;
    uint32_t n;
    uint64_t v;
    uint8_t blob[20], blob2[20];

    shoal_buf_init(&sb, 1 << 20);
    shoal_buf_init(&again, 1 << 20);
    /* No blob id: version 1. */
    REQUIRE(shoal_manifest_sign(m, &sec, CREATED, &sb) == 0);
    shoal_mpr_init(&r, sb.data, sb.len);
    REQUIRE(shoal_mpr_array(&r, &n, 10) == 0 && shoal_mpr_skip(&r, 1) == 0);
    REQUIRE(shoal_mpr_uint(&r, &v, 10) == 0);
    CHECK_EQ(v, 1);
    REQUIRE(shoal_manifest_parse(&p, sb.data, sb.len, NULL, NULL) == 0);
    CHECK(!shoal_manifest_file(p, 0)->has_blob_id);
    shoal_manifest_free(p);
    p = NULL;
    shoal_manifest_free(m);
    CHECK_EQ(shoal_manifest_set_blob_id(m = build(paths, sizes, 0), blob), -EINVAL);
    shoal_manifest_free(m);

    /* Two of three files with blob ids: version 2, read back as given. */
    rnd_bytes(blob, 20);
    rnd_bytes(blob2, 20);
    m = build(paths, sizes, 1);
    REQUIRE(shoal_manifest_set_blob_id(m, blob) == 0);
    uint8_t sha[32], id[32];
    rnd_bytes(sha, 32);
    REQUIRE(shoal_manifest_add_file(m, paths[1], sizes[1], sha) == 0);
    rnd_bytes(id, 32);
    REQUIRE(shoal_manifest_add_chunk(m, id, (uint32_t)sizes[1]) == 0);
    REQUIRE(shoal_manifest_add_file(m, paths[2], sizes[2], sha) == 0);
    REQUIRE(shoal_manifest_add_chunk(m, id, (uint32_t)sizes[2]) == 0);
    REQUIRE(shoal_manifest_set_blob_id(m, blob2) == 0);
    sb.len = 0;
    REQUIRE(shoal_manifest_sign(m, &sec, CREATED, &sb) == 0);
    CHECK_EQ(shoal_manifest_set_blob_id(m, blob), -EINVAL); /* sealed */
    shoal_mpr_init(&r, sb.data, sb.len);
    REQUIRE(shoal_mpr_array(&r, &n, 10) == 0 && shoal_mpr_skip(&r, 1) == 0);
    REQUIRE(shoal_mpr_uint(&r, &v, 10) == 0);
    CHECK_EQ(v, 2);
    REQUIRE(shoal_mpr_bin(&r, &body, &n, UINT32_MAX) == 0);
    REQUIRE(shoal_manifest_parse(&p, sb.data, sb.len, NULL, NULL) == 0);
    CHECK(memcmp(shoal_manifest_id(p), shoal_manifest_id(m), 32) == 0);
    for (uint32_t i = 0; i < 3; i++) {
        int k = shoal_manifest_find_file(p, paths[i]);
        const struct shoal_mf_file *f = k >= 0 ? shoal_manifest_file(p, (uint32_t)k) : NULL;
        REQUIRE(f);
        CHECK_EQ(f->has_blob_id, i != 1);
        if (i == 0)
            CHECK(memcmp(f->blob_id, blob, 20) == 0);
        if (i == 2)
            CHECK(memcmp(f->blob_id, blob2, 20) == 0);
    }
    shoal_manifest_free(p);
    p = NULL;
    /* The version 2 body under the version 1 domain, or as version 1. */
    seal(body, n, &sec, SHOAL_MANIFEST_SIGN_DOMAIN, 2, &again);
    CHECK_EQ(shoal_manifest_parse(&p, again.data, again.len, NULL, NULL), SHOAL_EBADSIG);
    again.len = 0;
    seal(body, n, &sec, SHOAL_MANIFEST_SIGN_DOMAIN, 1, &again);
    CHECK(shoal_manifest_parse(&p, again.data, again.len, NULL, NULL) < 0);
    CHECK(p == NULL);
    shoal_manifest_free(m);
    shoal_buf_free(&sb);
    shoal_buf_free(&again);
}

static void test_flips_and_truncation(void)
{
    static const char *const paths[] = {"a.json", "b/c.bin"};
    static const uint64_t sizes[] = {70, 300};
    struct shoal_manifest *m = build(paths, sizes, 2);
    struct shoal_buf sb;
    shoal_buf_init(&sb, 1 << 20);
    REQUIRE(shoal_manifest_sign(m, &sec, CREATED, &sb) == 0);
    struct shoal_manifest *p = NULL;
    REQUIRE(shoal_manifest_parse(&p, sb.data, sb.len, trusted, NULL) == 0);
    shoal_manifest_free(p);

    int accepted = 0;
    for (size_t i = 0; i < sb.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            sb.data[i] ^= (uint8_t)(1u << bit);
            p = NULL;
            int rv = shoal_manifest_parse(&p, sb.data, sb.len, trusted, NULL);
            if (rv == 0) {
                accepted++;
                fprintf(stderr, "flip byte %zu bit %d accepted\n", i, bit);
                shoal_manifest_free(p);
            } else {
                CHECK(p == NULL);
            }
            sb.data[i] ^= (uint8_t)(1u << bit);
        }
    }
    CHECK_EQ(accepted, 0);

    for (size_t cut = 0; cut < sb.len; cut++) {
        p = NULL;
        int rv = shoal_manifest_parse(&p, sb.data, cut, trusted, NULL);
        CHECK(rv != 0);
        if (rv == 0)
            shoal_manifest_free(p);
    }
    REQUIRE(shoal_buf_append(&sb, "\xc0", 1) == 0);
    CHECK_EQ(shoal_manifest_parse(&p, sb.data, sb.len, trusted, NULL), SHOAL_EPROTO);
    shoal_manifest_free(m);
    shoal_buf_free(&sb);
}

/* A body written field by field, so each case can break one thing. */
struct spec_file {
    const char *path;
    uint64_t size;
    uint32_t sha_len;
    uint32_t nchunks;
    uint32_t lens[4];
    uint32_t rec_extra;  /* bytes appended to the chunk records */
};

struct spec {
    uint64_t type;
    const char *repo;
    const char *commit;
    uint32_t params[3];
    uint32_t nfiles;
    struct spec_file files[4];
    uint32_t body_fields, file_fields;
    bool trailing, repo_as_bin, size_as_str, params_as_map;
    uint32_t claim_files;  /* nonzero: array header says this many files */
};

static struct spec good_spec(void)
{
    struct spec s = {
        .type = 0,
        .repo = "gpt2",
        .commit = COMMIT,
        .params = {64, 128, 256},
        .nfiles = 2,
        .files = {{"config.json", 300, 32, 2, {256, 44}, 0},
                  {"model.safetensors", 100, 32, 1, {100}, 0}},
        .body_fields = 6,
        .file_fields = 4,
    };
    return s;
}

static void write_body(const struct spec *s, struct shoal_buf *b)
{
    struct shoal_mpw w;
    shoal_buf_reset(b);
    shoal_mpw_init(&w, b);
    shoal_mpw_array(&w, s->body_fields);
    shoal_mpw_uint(&w, s->type);
    if (s->repo_as_bin)
        shoal_mpw_bin(&w, s->repo, strlen(s->repo));
    else
        shoal_mpw_cstr(&w, s->repo);
    shoal_mpw_cstr(&w, s->commit);
    if (s->params_as_map) {
        shoal_mpw_map(&w, 1);
        shoal_mpw_cstr(&w, "min");
        shoal_mpw_uint(&w, s->params[0]);
    } else {
        shoal_mpw_array(&w, 3);
        for (int i = 0; i < 3; i++)
            shoal_mpw_uint(&w, s->params[i]);
    }
    shoal_mpw_uint(&w, CREATED);
    shoal_mpw_array(&w, s->claim_files ? s->claim_files : s->nfiles);
    for (uint32_t i = 0; i < s->nfiles; i++) {
        const struct spec_file *f = &s->files[i];
        uint8_t sha[33] = {0}, rec[4 * 36 + 8] = {0};
        shoal_mpw_array(&w, s->file_fields);
        shoal_mpw_str(&w, f->path, strlen(f->path));
        if (s->size_as_str)
            shoal_mpw_cstr(&w, "300");
        else
            shoal_mpw_uint(&w, f->size);
        shoal_mpw_bin(&w, sha, f->sha_len);
        for (uint32_t c = 0; c < f->nchunks; c++) {
            rec[36 * c] = (uint8_t)(i * 16 + c + 1);
            rec[36 * c + 32] = (uint8_t)(f->lens[c] >> 24);
            rec[36 * c + 33] = (uint8_t)(f->lens[c] >> 16);
            rec[36 * c + 34] = (uint8_t)(f->lens[c] >> 8);
            rec[36 * c + 35] = (uint8_t)f->lens[c];
        }
        shoal_mpw_bin(&w, rec, 36 * f->nchunks + f->rec_extra);
        for (uint32_t extra = 4; extra < s->file_fields; extra++)
            shoal_mpw_nil(&w);
    }
    if (s->trailing)
        shoal_mpw_nil(&w);
    REQUIRE(w.err == 0);
}

static int parse_spec(const struct spec *s, const struct shoal_mf_limits *lim)
{
    struct shoal_buf body, sb;
    shoal_buf_init(&body, 1 << 20);
    shoal_buf_init(&sb, 1 << 20);
    write_body(s, &body);
    seal(body.data, body.len, &sec, SHOAL_MANIFEST_SIGN_DOMAIN, 1, &sb);
    struct shoal_manifest *m = NULL;
    int rv = shoal_manifest_parse(&m, sb.data, sb.len, trusted, lim);
    if (rv == 0)
        CHECK(m != NULL);
    else
        CHECK(m == NULL);
    shoal_manifest_free(m);
    shoal_buf_free(&body);
    shoal_buf_free(&sb);
    return rv;
}

#define CASE(want, ...)                                                        \
    do {                                                                       \
        struct spec s = good_spec();                                           \
        __VA_ARGS__;                                                           \
        int rv_ = parse_spec(&s, NULL);                                        \
        if (rv_ != (want))                                                     \
            fprintf(stderr, "case '%s': got %d (%s)\n", #__VA_ARGS__, rv_,     \
                    shoal_strerror(rv_));                                      \
        CHECK_EQ(rv_, want);                                                   \
    } while (0)

static void test_validation(void)
{
    CASE(0, (void)0);
    /* sizes and chunks */
    CASE(SHOAL_EBADMSG, s.files[0].size = 301);
    CASE(SHOAL_EBADMSG, s.files[0].size = 299);
    CASE(SHOAL_EBADMSG, s.files[1].lens[0] = 0; s.files[1].size = 0);
    CASE(SHOAL_EBADMSG, s.files[0].lens[0] = 257; s.files[0].size = 301);
    CASE(SHOAL_EBADMSG, s.files[0].rec_extra = 35);
    CASE(SHOAL_EBADMSG, s.files[0].sha_len = 31);
    CASE(SHOAL_EBADMSG, s.files[0].sha_len = 33);
    CASE(0, s.files[1].size = 0; s.files[1].nchunks = 0);
    CASE(SHOAL_EBADMSG, s.nfiles = 0);
    /* paths */
    CASE(SHOAL_EBADPATH, s.files[0].path = "../x");
    CASE(SHOAL_EBADPATH, s.files[0].path = "a/../x");
    CASE(SHOAL_EBADPATH, s.files[0].path = "a/..");
    CASE(SHOAL_EBADPATH, s.files[0].path = "/abs");
    CASE(SHOAL_EBADPATH, s.files[0].path = "./x");
    CASE(SHOAL_EBADPATH, s.files[0].path = "a//b");
    CASE(SHOAL_EBADPATH, s.files[0].path = "a/");
    CASE(SHOAL_EBADPATH, s.files[0].path = "");
    CASE(SHOAL_EBADPATH, s.files[0].path = "a\\b");
    CASE(SHOAL_EBADPATH, s.files[0].path = "a\tb");
    CASE(SHOAL_EBADPATH, s.files[1].path = "config.json");
    CASE(SHOAL_EBADPATH, s.files[0].path = "a/b"; s.files[1].path = "a/b/c");
    CASE(SHOAL_EBADPATH, s.files[0].path = "a/b/c"; s.files[1].path = "a/b");
    CASE(SHOAL_EBADPATH, s.nfiles = 3; s.files[0].path = "a/b"; s.files[1].path = "a/b-x";
         s.files[2] = s.files[1]; s.files[2].path = "a/b/c");
    CASE(0, s.nfiles = 3; s.files[0].path = "a/b"; s.files[1].path = "a/b-x";
         s.files[2] = s.files[1]; s.files[2].path = "a/bc/d");
    CASE(0, s.files[0].path = "..a/.b/c..");
    CASE(SHOAL_EBADPATH, s.files[0].path = "a\x01z");
    CASE(SHOAL_EBADPATH, s.files[0].path = "del\x7f");
    {
        /* A name component over NAME_MAX (255) could never be linked. */
        static char longc[300];
        memset(longc, 'a', 256);
        longc[256] = '\0';
        CASE(SHOAL_EBADPATH, s.files[0].path = longc);
        longc[255] = '\0';
        CASE(0, s.files[0].path = longc);
        memcpy(longc, "a/", 2);
        memset(longc + 2, 'b', 256);
        longc[258] = '\0';
        CASE(SHOAL_EBADPATH, s.files[0].path = longc);
    }
    /* commit, repo, type, params */
    CASE(SHOAL_EBADMSG, s.commit = "0123456789ABCDEF0123456789abcdef01234567");
    CASE(SHOAL_EBADMSG, s.commit = "0123456789abcdef0123456789abcdef0123456");
    CASE(SHOAL_ETOOBIG, s.commit = "0123456789abcdef0123456789abcdef012345678");
    CASE(SHOAL_EBADMSG, s.commit = "0123456789abcdef0123456789abcdef0123456g");
    CASE(SHOAL_EBADMSG, s.commit = "main");
    CASE(0, s.repo = "Org_1/name.v-2");
    CASE(SHOAL_EBADMSG, s.repo = "a/b/c");
    CASE(SHOAL_EBADMSG, s.repo = "");
    CASE(SHOAL_EBADMSG, s.repo = "org/");
    CASE(SHOAL_EBADMSG, s.repo = "/name");
    CASE(SHOAL_EBADMSG, s.repo = "-name");
    CASE(SHOAL_EBADMSG, s.repo = "name.");
    CASE(SHOAL_EBADMSG, s.repo = "a..b");
    CASE(SHOAL_EBADMSG, s.repo = "a--b");
    CASE(SHOAL_EBADMSG, s.repo = "org/na me");
    CASE(SHOAL_EBADMSG, s.repo = "../x");
    CASE(SHOAL_EBADMSG, s.type = 2);
    CASE(SHOAL_EBADMSG, s.params[1] = 100);
    CASE(SHOAL_EBADMSG, s.params[0] = 128);
    /* types, counts, framing */
    CASE(SHOAL_ETYPE, s.repo_as_bin = true);
    CASE(SHOAL_ETYPE, s.size_as_str = true);
    CASE(SHOAL_ETYPE, s.params_as_map = true);
    CASE(SHOAL_ETOOBIG, s.file_fields = 5);
    CASE(SHOAL_ETOOBIG, s.body_fields = 7);
    CASE(SHOAL_EPROTO, s.trailing = true);
    CASE(SHOAL_ETRUNC, s.claim_files = 3);
    CASE(SHOAL_ETOOBIG, s.claim_files = 4000000);
}

/* Paths with bytes the writer cannot be given through a C string. */
static void test_nul_in_path(void)
{
    struct spec s = good_spec();
    s.files[0].path = "abXcd";
    struct shoal_buf body, sb;
    shoal_buf_init(&body, 1 << 20);
    shoal_buf_init(&sb, 1 << 20);
    write_body(&s, &body);
    uint8_t *x = memmem(body.data, body.len, "abXcd", 5);
    REQUIRE(x);
    x[2] = '\0';
    seal(body.data, body.len, &sec, SHOAL_MANIFEST_SIGN_DOMAIN, 1, &sb);
    struct shoal_manifest *m = NULL;
    CHECK_EQ(shoal_manifest_parse(&m, sb.data, sb.len, trusted, NULL), SHOAL_EBADPATH);
    CHECK(m == NULL);
    shoal_buf_free(&body);
    shoal_buf_free(&sb);
}

static void test_limits(void)
{
    struct shoal_mf_limits lim;
    struct spec s = good_spec();
    shoal_mf_limits_default(&lim);
    CHECK_EQ(parse_spec(&s, &lim), 0);

    lim.max_files = 1;
    CHECK_EQ(parse_spec(&s, &lim), SHOAL_ETOOBIG);
    shoal_mf_limits_default(&lim);
    lim.max_chunks = 2;
    CHECK_EQ(parse_spec(&s, &lim), SHOAL_ETOOBIG);
    lim.max_chunks = 3;
    CHECK_EQ(parse_spec(&s, &lim), 0);
    shoal_mf_limits_default(&lim);
    lim.max_path = 10;
    CHECK_EQ(parse_spec(&s, &lim), SHOAL_ETOOBIG);
    lim.max_path = 17; /* strlen("model.safetensors") */
    CHECK_EQ(parse_spec(&s, &lim), 0);
    shoal_mf_limits_default(&lim);
    lim.max_bytes = 200;
    CHECK_EQ(parse_spec(&s, &lim), SHOAL_ETOOBIG);

    /* The default path limit, from the builder too. */
    char longpath[SHOAL_MF_MAX_PATH_DEFAULT + 2];
    memset(longpath, 'p', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = '\0';
    /* Directories of 100 bytes: a component may not pass 255 bytes. */
    for (size_t i = 100; i + 1 < sizeof longpath - 1; i += 101)
        longpath[i] = '/';
    s.files[0].path = longpath;
    CHECK_EQ(parse_spec(&s, NULL), SHOAL_ETOOBIG);
    longpath[SHOAL_MF_MAX_PATH_DEFAULT] = '\0';
    CHECK_EQ(parse_spec(&s, NULL), 0);
    struct shoal_manifest *m = NULL;
    uint8_t sha[32] = {0};
    REQUIRE(shoal_manifest_new(&m, SHOAL_REPO_MODEL, "gpt2", COMMIT, &PARAMS) == 0);
    CHECK_EQ(shoal_manifest_add_file(m, longpath, 0, sha), 0);
    longpath[SHOAL_MF_MAX_PATH_DEFAULT] = 'p';
    CHECK_EQ(shoal_manifest_add_file(m, longpath, 0, sha), SHOAL_ETOOBIG);
    shoal_manifest_free(m);
}

static void test_builder(void)
{
    struct shoal_manifest *m = NULL;
    uint8_t sha[32] = {1}, id[32] = {2};
    struct shoal_buf sb;
    shoal_buf_init(&sb, 1 << 20);
    REQUIRE(shoal_buf_append(&sb, "keep", 4) == 0);

    REQUIRE(shoal_manifest_new(&m, SHOAL_REPO_MODEL, "org/model", COMMIT, &PARAMS) == 0);
    CHECK_EQ(shoal_manifest_add_chunk(m, id, 10), -EINVAL);
    CHECK_EQ(shoal_manifest_add_file(m, "../etc/passwd", 10, sha), SHOAL_EBADPATH);
    CHECK_EQ(shoal_manifest_add_file(m, "/etc/passwd", 10, sha), SHOAL_EBADPATH);
    CHECK_EQ(shoal_manifest_nfiles(m), 0);
    /* no files at all */
    CHECK_EQ(shoal_manifest_sign(m, &sec, CREATED, &sb), SHOAL_EBADMSG);
    CHECK_EQ(shoal_manifest_add_file(m, "x.bin", 300, sha), 0);
    CHECK_EQ(shoal_manifest_add_chunk(m, id, 0), SHOAL_EBADMSG);
    CHECK_EQ(shoal_manifest_add_chunk(m, id, 257), SHOAL_EBADMSG);
    CHECK_EQ(shoal_manifest_add_chunk(m, id, 256), 0);
    CHECK_EQ(shoal_manifest_add_chunk(m, id, 45), SHOAL_EBADMSG); /* past the size */
    /* 256 of 300 bytes covered */
    CHECK_EQ(shoal_manifest_sign(m, &sec, CREATED, &sb), SHOAL_EBADMSG);
    CHECK_EQ(shoal_manifest_add_chunk(m, id, 44), 0);
    CHECK_EQ(shoal_manifest_add_file(m, "x.bin", 0, sha), 0);
    CHECK_EQ(shoal_manifest_sign(m, &sec, CREATED, &sb), SHOAL_EBADPATH);
    CHECK_EQ(sb.len, 4);
    CHECK(shoal_manifest_id(m) == NULL);
    CHECK_EQ(shoal_manifest_created(m), 0);
    shoal_manifest_free(m);

    REQUIRE(shoal_manifest_new(&m, SHOAL_REPO_MODEL, "org/model", "abc", &PARAMS) == 0);
    REQUIRE(shoal_manifest_add_file(m, "f", 0, sha) == 0);
    CHECK_EQ(shoal_manifest_sign(m, &sec, CREATED, &sb), SHOAL_EBADMSG);
    shoal_manifest_free(m);
    REQUIRE(shoal_manifest_new(&m, SHOAL_REPO_MODEL, "bad repo", COMMIT, &PARAMS) == 0);
    REQUIRE(shoal_manifest_add_file(m, "f", 0, sha) == 0);
    CHECK_EQ(shoal_manifest_sign(m, &sec, CREATED, &sb), SHOAL_EBADMSG);
    shoal_manifest_free(m);

    /* Appended after what the buffer held; the id covers only the manifest. */
    REQUIRE(shoal_manifest_new(&m, SHOAL_REPO_MODEL, "org/model", COMMIT, &PARAMS) == 0);
    REQUIRE(shoal_manifest_add_file(m, "f", 0, sha) == 0);
    CHECK_EQ(shoal_manifest_sign(m, &sec, CREATED, &sb), 0);
    CHECK(memcmp(sb.data, "keep", 4) == 0);
    struct shoal_manifest *p = NULL;
    CHECK_EQ(shoal_manifest_parse(&p, sb.data + 4, sb.len - 4, trusted, NULL), 0);
    if (p)
        CHECK(memcmp(shoal_manifest_id(p), shoal_manifest_id(m), 32) == 0);
    shoal_manifest_free(p);
    shoal_manifest_free(m);

    /* An output buffer too small leaves it as it was. */
    struct shoal_buf tiny;
    shoal_buf_init(&tiny, 64);
    m = build_small();
    CHECK_EQ(shoal_manifest_sign(m, &sec, CREATED, &tiny), SHOAL_ELIMIT);
    CHECK_EQ(tiny.len, 0);
    CHECK(shoal_manifest_id(m) == NULL);
    shoal_buf_free(&tiny);
    shoal_manifest_free(m);
    shoal_manifest_free(NULL);
    shoal_buf_free(&sb);
}

static void test_envelope(void)
{
    struct shoal_manifest *m = build_small(), *p = NULL;
    struct shoal_buf sb, alt;
    shoal_buf_init(&sb, 1 << 20);
    shoal_buf_init(&alt, 1 << 20);
    REQUIRE(shoal_manifest_sign(m, &sec, CREATED, &sb) == 0);

    /* Version written as uint8 0xcc 0x01: same value, other bytes, other id. */
    REQUIRE(sb.data[16] == 0x01);
    REQUIRE(shoal_buf_append(&alt, sb.data, 16) == 0);
    REQUIRE(shoal_buf_append(&alt, "\xcc\x01", 2) == 0);
    REQUIRE(shoal_buf_append(&alt, sb.data + 17, sb.len - 17) == 0);
    CHECK_EQ(shoal_manifest_parse(&p, alt.data, alt.len, trusted, NULL), SHOAL_EPROTO);

    /* Signed by someone else but claiming our key. */
    shoal_buf_reset(&alt);
    REQUIRE(shoal_buf_append(&alt, sb.data, sb.len) == 0);
    memcpy(alt.data + alt.len - 64 - 2 - 32, other_pub.pk, 32);
    CHECK_EQ(shoal_manifest_parse(&p, alt.data, alt.len, NULL, NULL), SHOAL_EBADSIG);

    /* Not a manifest at all. */
    const uint8_t junk[] = {0x93, 0x01, 0x02, 0x03};
    CHECK(shoal_manifest_parse(&p, junk, sizeof junk, NULL, NULL) != 0);
    const uint8_t huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    CHECK(shoal_manifest_parse(&p, huge, sizeof huge, NULL, NULL) != 0);
    CHECK(shoal_manifest_parse(&p, NULL, 0, NULL, NULL) != 0);
    CHECK(p == NULL);
    shoal_manifest_free(m);
    shoal_buf_free(&sb);
    shoal_buf_free(&alt);
}

/* What a parsed manifest keeps is bounded by a small multiple of its
 * signed size (the header promises about 3x at the peak). Measured with
 * glibc's counters, so it is skipped under a sanitizer's allocator. */
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd; /* small blocks + mmapped large ones */
}

static void test_memory_bound(void)
{
    size_t before = heap_in_use();
    void *probe = malloc(1 << 20);
    REQUIRE(probe);
    size_t with_probe = heap_in_use();
    free(probe);
    if (with_probe < before + (1 << 20)) {
        fprintf(stderr, "skip test_memory_bound: allocator is not glibc's\n");
        return;
    }
    struct shoal_manifest *m = NULL;
    REQUIRE(shoal_manifest_new(&m, SHOAL_REPO_MODEL, "org/big", COMMIT, &PARAMS) == 0);
    uint8_t id[32] = {0}, sha[32] = {0};
    for (int f = 0; f < 20; f++) {
        char path[32];
        snprintf(path, sizeof path, "shard-%02d", f);
        REQUIRE(shoal_manifest_add_file(m, path, 1000 * 100, sha) == 0);
        for (int c = 0; c < 1000; c++) {
            rnd_bytes(id, 32);
            REQUIRE(shoal_manifest_add_chunk(m, id, 100) == 0);
        }
    }
    struct shoal_buf sb;
    shoal_buf_init(&sb, 1 << 24);
    REQUIRE(shoal_manifest_sign(m, &sec, CREATED, &sb) == 0);
    shoal_manifest_free(m);
    struct shoal_manifest *p = NULL;
    before = heap_in_use();
    REQUIRE(shoal_manifest_parse(&p, sb.data, sb.len, trusted, NULL) == 0);
    size_t after = heap_in_use();
    CHECK_EQ(shoal_manifest_nchunks(p), 20000);
    CHECK(after - before <= 2 * sb.len);
    CHECK(after - before >= sb.len); /* it does own a copy of every chunk */
    shoal_manifest_free(p);
    shoal_buf_free(&sb);
}

static void write_seed(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    REQUIRE(fwrite(p, 1, n, f) == n);
    REQUIRE(fclose(f) == 0);
}

static void seed_body(const char *dir, const char *name, const struct spec *s)
{
    struct shoal_buf body;
    shoal_buf_init(&body, 1 << 20);
    write_body(s, &body);
    write_seed(dir, name, body.data, body.len);
    shoal_buf_free(&body);
}

/* Writes the fuzz seeds for fuzz_manifest: whole signed manifests (valid and
 * slightly broken) and bare bodies, which the target signs itself. */
static void write_corpus(const char *dir)
{
    static const char *const paths[] = {"README.md", "a/b", "a/b-x", "a/c/d.bin", "empty"};
    static const uint64_t sizes[] = {10, 900, 256, 1200, 0};
    struct shoal_buf sb;
    shoal_buf_init(&sb, 1 << 20);
    struct shoal_manifest *m = build_small();
    REQUIRE(shoal_manifest_sign(m, &sec, CREATED, &sb) == 0);
    shoal_manifest_free(m);
    write_seed(dir, "signed_small", sb.data, sb.len);
    write_seed(dir, "signed_truncated", sb.data, sb.len - 10);
    sb.data[sb.len - 5] ^= 0x10;
    write_seed(dir, "signed_badsig", sb.data, sb.len);
    shoal_buf_reset(&sb);
    m = build(paths, sizes, 5);
    REQUIRE(shoal_manifest_sign(m, &sec, CREATED, &sb) == 0);
    shoal_manifest_free(m);
    write_seed(dir, "signed_nested", sb.data, sb.len);
    shoal_buf_free(&sb);

    struct spec s = good_spec();
    seed_body(dir, "body_good", &s);
    s.files[1].size = 0;
    s.files[1].nchunks = 0;
    seed_body(dir, "body_empty_file", &s);
    s = good_spec();
    s.files[0].path = "../x";
    seed_body(dir, "body_dotdot", &s);
    s = good_spec();
    s.files[0].path = "a/b";
    s.files[1].path = "a/b/c";
    seed_body(dir, "body_prefix_dir", &s);
    s = good_spec();
    s.files[0].size = 301;
    seed_body(dir, "body_bad_sum", &s);
    s = good_spec();
    s.commit = "0123456789ABCDEF0123456789abcdef01234567";
    seed_body(dir, "body_bad_commit", &s);
}

/* Release names: a dataset's carries "datasets/", a model's no prefix;
 * the Hub's other prefixes are refused. */
static void test_release_names(void)
{
    struct shoal_manifest *m = NULL;
    char name[SHOAL_RELNAME_MAX + 1], small[12];
    const char *commit = "0123456789abcdef0123456789abcdef01234567", *repo;
    enum shoal_repo_type type;

    CHECK_EQ(shoal_relname_format(name, sizeof name, SHOAL_REPO_DATASET, "acme/ds", "main"), 0);
    CHECK(strcmp(name, "datasets/acme/ds@main") == 0);
    CHECK_EQ(shoal_relname_format(name, sizeof name, SHOAL_REPO_MODEL, "acme/ds", "main"), 0);
    CHECK(strcmp(name, "acme/ds@main") == 0);
    CHECK_EQ(shoal_relname_format(small, sizeof small, SHOAL_REPO_DATASET, "acme/ds", "main"),
             SHOAL_ETOOBIG);
    CHECK(small[0] == '\0');

    CHECK_EQ(shoal_relname_split("datasets/acme/ds@main", &type, &repo), 0);
    CHECK(type == SHOAL_REPO_DATASET && strcmp(repo, "acme/ds@main") == 0);
    CHECK_EQ(shoal_relname_split("acme/ds@main", &type, &repo), 0);
    CHECK(type == SHOAL_REPO_MODEL && strcmp(repo, "acme/ds@main") == 0);
    /* "datasetsx/..." is a model's org, not the prefix. */
    CHECK_EQ(shoal_relname_split("datasetsx/ds@main", &type, &repo), 0);
    CHECK(type == SHOAL_REPO_MODEL);
    CHECK_EQ(shoal_relname_split("spaces/acme/x@main", &type, &repo), SHOAL_EBADMSG);
    CHECK(strcmp(repo, "acme/x@main") == 0);
    CHECK_EQ(shoal_relname_split("models/acme/x@main", &type, &repo), SHOAL_EBADMSG);
    CHECK_EQ(shoal_relname_split("kernels/acme/x@main", &type, &repo), SHOAL_EBADMSG);

    REQUIRE(shoal_manifest_new(&m, SHOAL_REPO_DATASET, "acme/ds", commit, &PARAMS) == 0);
    CHECK_EQ(shoal_manifest_name(m, name, sizeof name), 0);
    CHECK(strcmp(name, "datasets/acme/ds@0123456789abcdef0123456789abcdef01234567") == 0);
    CHECK(shoal_manifest_named(m, name));
    CHECK(!shoal_manifest_named(m, "acme/ds@0123456789abcdef0123456789abcdef01234567"));
    CHECK(!shoal_manifest_named(m, "datasets/acme/ds@0123456789abcdef0123456789abcdef0123456"));
    CHECK(!shoal_manifest_named(m, "datasets/acme/d@0123456789abcdef0123456789abcdef01234567"));
    CHECK(!shoal_manifest_named(m, "datasets/acme/ds"));
    shoal_manifest_free(m);
    REQUIRE(shoal_manifest_new(&m, SHOAL_REPO_MODEL, "acme/ds", commit, &PARAMS) == 0);
    CHECK(shoal_manifest_named(m, "acme/ds@0123456789abcdef0123456789abcdef01234567"));
    CHECK(!shoal_manifest_named(m, "datasets/acme/ds@0123456789abcdef0123456789abcdef01234567"));
    CHECK(!shoal_manifest_named(m, "spaces/acme/ds@0123456789abcdef0123456789abcdef01234567"));
    shoal_manifest_free(m);
}

int main(int argc, char **argv)
{
    REQUIRE(shoal_key_generate(&pub, &sec) == 0);
    REQUIRE(shoal_key_generate(&other_pub, &other_sec) == 0);
    REQUIRE(shoal_keyset_new(&trusted) == 0);
    REQUIRE(shoal_keyset_add(trusted, &pub) == 0);
    /* test_manifest --write-corpus DIR: regenerate the committed fuzz seeds. */
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) {
        write_corpus(argv[2]);
        shoal_keyset_free(trusted);
        return 0;
    }
    RUN(test_roundtrip);
    RUN(test_deterministic);
    RUN(test_documented_form);
    RUN(test_blob_ids);
    RUN(test_flips_and_truncation);
    RUN(test_validation);
    RUN(test_nul_in_path);
    RUN(test_limits);
    RUN(test_builder);
    RUN(test_envelope);
    RUN(test_memory_bound);
    RUN(test_release_names);
    shoal_keyset_free(trusted);
    return t_done();
}
