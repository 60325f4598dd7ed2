/* SPDX-License-Identifier: MIT */
/*
 * Every allocation failure the decoders and the pure modules can meet
 * (tests/failalloc.h): each scenario below runs once with its Nth
 * allocation failing, for N = 1, 2, ... until a run meets no failure.
 * Each run must end in a clean error or success (the sanitizer build
 * catches any bad access), hold no block afterwards, and the run without
 * a failure must succeed. A registry or scheduler that met -ENOMEM must
 * stay usable: the scenarios go on calling it after a failed step.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "cdc.h"
#include "error.h"
#include "failalloc.h"
#include "frame.h"
#include "json.h"
#include "keys.h"
#include "manifest.h"
#include "registry.h"
#include "sched.h"
#include "state.h"
#include "t.h"

#define NFILES 3
#define CHUNKS_PER_FILE 5

static struct shoal_seckey sk;
static struct shoal_pubkey pk;
static struct shoal_buf signed_mf;

/* Builds and signs a small manifest into |out|. Returns 0 or the first
 * error. */
static int build_manifest(struct shoal_buf *out)
{
    struct shoal_manifest *m = NULL;
    struct shoal_cdc_params p;
    int rv;

    shoal_cdc_params_default(&p);
    rv = shoal_manifest_new(&m, SHOAL_REPO_MODEL, "org/name",
                            "0123456789abcdef0123456789abcdef01234567", &p);
    for (int f = 0; rv == 0 && f < NFILES; f++) {
        char path[64];
        uint8_t sha[32];
        memset(sha, 0x30 + f, sizeof sha);
        snprintf(path, sizeof path, "dir%d/model-%05d.safetensors", f, f);
        rv = shoal_manifest_add_file(m, path, (uint64_t)CHUNKS_PER_FILE * 4096, sha);
        for (int c = 0; rv == 0 && c < CHUNKS_PER_FILE; c++) {
            uint8_t id[32];
            memset(id, f * 16 + c, sizeof id);
            rv = shoal_manifest_add_chunk(m, id, 4096);
        }
    }
    if (rv == 0)
        rv = shoal_manifest_sign(m, &sk, 1700000000, out);
    shoal_manifest_free(m);
    return rv;
}

static int sc_manifest_build(void)
{
    struct shoal_buf b;
    int rv;

    shoal_buf_init(&b, SHOAL_MF_MAX_BYTES_DEFAULT);
    rv = build_manifest(&b);
    if (rv == 0 && (b.len != signed_mf.len || memcmp(b.data, signed_mf.data, b.len) != 0))
        rv = -EBADMSG; /* a run that succeeds builds the same bytes */
    shoal_buf_free(&b);
    return rv;
}

static int sc_manifest_parse(void)
{
    struct shoal_manifest *m = NULL;
    struct shoal_keyset *ks = NULL;
    int rv = shoal_keyset_new(&ks);

    if (rv == 0)
        rv = shoal_keyset_add(ks, &pk);
    if (rv == 0)
        rv = shoal_manifest_parse(&m, signed_mf.data, signed_mf.len, ks, NULL);
    if (rv == 0 && shoal_manifest_nfiles(m) != NFILES)
        rv = -EBADMSG;
    if (rv == 0 && shoal_manifest_find_file(m, "dir2/model-00002.safetensors") != 2)
        rv = -EBADMSG;
    shoal_manifest_free(m);
    shoal_keyset_free(ks);
    return rv;
}

static void node_key(uint8_t out[32], uint32_t i)
{
    memset(out, 0x11, 32);
    memcpy(out, &i, 4);
}

/* A tracker's day in miniature: manifests put, nodes announcing in two
 * zones, peer lists, leases and their reports, a node leaving, expiry and
 * the metrics page. Every step runs whatever the one before returned:
 * after -ENOMEM the registry must still answer. Returns the first error. */
static int sc_registry(void)
{
    struct shoal_reg_config c;
    struct shoal_reg *r = NULL;
    struct shoal_reg_peer peers[8];
    struct shoal_buf prom;
    uint8_t mid[32], pkn[32];
    uint32_t nchunks = NFILES * CHUNKS_PER_FILE;
    int rv, first_err = 0;

#define STEP(expr)                                                  \
    do {                                                            \
        int step_rv_ = (expr);                                      \
        if (step_rv_ != 0 && step_rv_ != SHOAL_EBUSY && !first_err) \
            first_err = step_rv_;                                   \
    } while (0)

    shoal_reg_config_default(&c);
    c.seed = 7;
    rv = shoal_reg_new(&r, &c);
    if (rv != 0)
        return rv;
    memset(mid, 0x42, sizeof mid);
    STEP(shoal_reg_put_manifest_ex(r, mid, SHOAL_REPO_MODEL, "org/name",
                                   "0123456789abcdef0123456789abcdef01234567", nchunks,
                                   1700000000, signed_mf.data, signed_mf.len));
    for (uint32_t i = 0; i < 6; i++) {
        struct shoal_reg_have h = { .have_chunks = i == 0 ? nchunks : 0,
                                    .total_chunks = nchunks, .complete = i == 0 };
        struct shoal_reg_role role;
        char addr[32];
        memcpy(h.manifest_id, mid, 32);
        node_key(pkn, i);
        snprintf(addr, sizeof addr, "127.0.0.%u:7000", i + 1);
        STEP(shoal_reg_announce(r, 1000 + i, pkn, addr, i % 2 ? "zone-b" : "zone-a", &h, 1,
                                &role));
    }
    for (uint32_t i = 1; i < 6; i++) {
        uint32_t first = 0, count = 0;
        uint64_t exp = 0;
        node_key(pkn, i);
        (void)shoal_reg_peers(r, 2000, mid, pkn, i % 2 ? "zone-b" : "zone-a", peers, 8);
        STEP(shoal_reg_lease(r, 2000, mid, nchunks, pkn, 4, i * 3, 0, &first, &count, &exp));
        if (count)
            STEP(shoal_reg_lease_done(r, 2100, mid, pkn, first, 1));
    }
    /* A re-claim after a restart, and a cut-off node's flagged lease. */
    {
        uint32_t first = 0, count = 0;
        uint64_t exp = 0;
        uint8_t pk7[32];
        node_key(pk7, 7);
        STEP(shoal_reg_lease_reclaim(r, 2150, mid, pk7, 10, 3, 5000, true, &exp));
        node_key(pkn, 2);
        STEP(shoal_reg_lease(r, 200000, mid, nchunks, pkn, 4, 1,
                             SHOAL_REG_HINT_MISSING | SHOAL_REG_HINT_STARVED, &first, &count,
                             &exp));
    }
    node_key(pkn, 3);
    (void)shoal_reg_remove_node(r, pkn);
    node_key(pkn, 4);
    {
        uint32_t ended = 0;
        STEP(shoal_reg_lease_give_back(r, 2200, mid, pkn, &ended));
    }
    STEP(shoal_reg_rollout_set(r, "org/name@0123456789abcdef0123456789abcdef01234567", "zone-a",
                               false));
    shoal_reg_expire(r, 1000000);
    shoal_buf_init(&prom, 1 << 20);
    STEP(shoal_reg_prometheus(r, 1000000, &prom));
    shoal_buf_free(&prom);
    shoal_reg_free(r);
    return first_err;
#undef STEP
}

/* A node's scheduler through peers arriving, their holdings, requests and
 * answers, a lease and a peer leaving. Returns the first error. */
static int sc_sched(void)
{
    uint32_t file_first[NFILES];
    struct shoal_sched_release rel = { .nchunks = NFILES * CHUNKS_PER_FILE,
                                       .total_bytes = (uint64_t)NFILES * CHUNKS_PER_FILE * 4096,
                                       .nfiles = NFILES, .file_first = file_first };
    struct shoal_sched *s = NULL;
    struct shoal_sched_action act[16];
    uint8_t bits[(NFILES * CHUNKS_PER_FILE + 7) / 8];
    int rv, first_err = 0;

    for (uint32_t f = 0; f < NFILES; f++)
        file_first[f] = f * CHUNKS_PER_FILE;
    rv = shoal_sched_new(&s, NULL, &rel);
    if (rv != 0)
        return rv;
    memset(bits, 0xff, sizeof bits);
    for (uint64_t p = 1; p <= 4; p++) {
        int r1 = shoal_sched_peer_add(s, p, p % 2, 1);
        int r2 = r1 == 0 ? shoal_sched_peer_bitfield(s, p, bits, sizeof bits) : 0;
        if (!first_err)
            first_err = r1 ? r1 : r2;
    }
    for (uint64_t now = 10; now < 200; now += 10) {
        size_t n = shoal_sched_next(s, now, act, 16);
        for (size_t i = 0; i < n; i++) {
            if (act[i].type == SHOAL_SCHED_REQUEST)
                (void)shoal_sched_req_done(s, now, act[i].peer, act[i].chunk, 4096, 1);
        }
    }
    (void)shoal_sched_peer_remove(s, 2);
    (void)shoal_sched_lease_granted(s, 300, 0, 2, 10000);
    (void)shoal_sched_next(s, 310, act, 16);
    shoal_sched_free(s);
    return first_err;
}

static int sc_json(void)
{
    static const char doc[] =
        "{\"sha\": \"0123456789abcdef0123456789abcdef01234567\", \"siblings\": ["
        "{\"rfilename\": \"config.json\", \"size\": 1234},"
        "{\"rfilename\": \"model.safetensors\", \"lfs\": {\"sha256\": \"ab\", \"size\": 99}}],"
        "\"tags\": [\"a\", \"b\", 1.5e3, true, false, null], \"esc\": \"\\u00e9\\n\"}";
    struct shoal_json_doc *d = NULL;
    int rv = shoal_json_parse(&d, doc, sizeof doc - 1, NULL);

    if (rv == 0 && shoal_json_len(shoal_json_get(shoal_json_root(d), "siblings")) != 2)
        rv = -EBADMSG;
    shoal_json_doc_free(d);
    return rv;
}

static int on_frame(void *user, const uint8_t *body, size_t len)
{
    size_t *seen = user;
    (void)body;
    *seen += len;
    return 0;
}

/* Three frames (one above the decoder's whole-buffer size), fed 7 bytes
 * at a time so each body is gathered in the decoder's own buffer. */
static int sc_frame(void)
{
    static uint8_t wire[3 * SHOAL_FRAME_HDR_LEN + 100 + 5000 + 70000];
    static const size_t lens[3] = { 100, 5000, 70000 };
    const struct shoal_frame_cb cb = { .on_frame = on_frame };
    struct shoal_frame_dec d;
    size_t w = 0, seen = 0;
    int rv = 0;

    for (int i = 0; i < 3; i++) {
        REQUIRE(shoal_frame_header(wire + w, lens[i]) == 0);
        w += SHOAL_FRAME_HDR_LEN;
        memset(wire + w, 0x61 + i, lens[i]);
        w += lens[i];
    }
    shoal_frame_dec_init(&d, 1 << 20);
    shoal_frame_dec_set_prealloc(&d, 4096);
    for (size_t off = 0; rv == 0 && off < w; off += 7) {
        size_t used = 0, n = w - off < 7 ? w - off : 7;
        rv = shoal_frame_dec_feed(&d, wire + off, n, &used, &cb, &seen);
        if (rv == 0 && used != n)
            rv = -EBADMSG;
    }
    if (rv == 0 && seen != 100 + 5000 + 70000)
        rv = -EBADMSG;
    shoal_frame_dec_free(&d);
    return rv;
}

static int on_chunk(void *user, uint64_t offset, uint32_t len, const uint8_t id[32])
{
    uint64_t *total = user;
    (void)offset;
    (void)id;
    *total += len;
    return 0;
}

/* 3 MiB of noise through the content-defined chunker. */
static int sc_chunker(void)
{
    static uint8_t data[3 << 20];
    struct shoal_chunker *ch = NULL;
    struct shoal_cdc_params p;
    uint64_t total = 0;
    int rv;

    if (data[0] == 0) {
        uint32_t x = 12345;
        for (size_t i = 0; i < sizeof data; i++) {
            x = x * 1103515245u + 12345u;
            data[i] = (uint8_t)(x >> 16) | 1;
        }
    }
    shoal_cdc_params_default(&p);
    rv = shoal_chunker_new(&ch, &p);
    for (size_t off = 0; rv == 0 && off < sizeof data; off += 1 << 20)
        rv = shoal_chunker_feed(ch, data + off, 1 << 20, on_chunk, &total);
    if (rv == 0)
        rv = shoal_chunker_finish(ch, on_chunk, &total, NULL, NULL);
    if (rv == 0 && total != sizeof data)
        rv = -EBADMSG;
    shoal_chunker_free(ch);
    return rv;
}

static char state_dir[64];

/* The state file of open releases written and read back. */
static int sc_state(void)
{
    struct shoal_state_entry e[2], *v = NULL;
    char path[128], why[256];
    size_t n = 0, skipped = 0;
    int rv;

    memset(e, 0, sizeof e);
    for (int i = 0; i < 2; i++) {
        memset(e[i].id, 0x70 + i, 32);
        snprintf(e[i].repo, sizeof e[i].repo, "org/name%d", i);
        snprintf(e[i].commit, sizeof e[i].commit, "%040d", i);
        snprintf(e[i].branch, sizeof e[i].branch, "%s", i ? "main" : "");
        e[i].complete = i;
        snprintf(e[i].manifest, sizeof e[i].manifest, "%s/m%d", state_dir, i);
    }
    snprintf(path, sizeof path, "%s/releases", state_dir);
    rv = shoal_state_save(path, "/var/cache/hf", e, 2);
    if (rv == 0)
        rv = shoal_state_load(path, "/var/cache/hf", &v, &n, &skipped, why, sizeof why);
    if (rv == 0 && (n != 2 || skipped != 0 || strcmp(v[1].branch, "main") != 0))
        rv = -EBADMSG;
    free(v);
    return rv;
}

static char key_path[128];

static int sc_keyset(void)
{
    struct shoal_keyset *ks = NULL;
    int rv = shoal_keyset_new(&ks);

    if (rv == 0)
        rv = shoal_keyset_load_file(ks, key_path);
    if (rv == 0 && shoal_keyset_count(ks) != 1)
        rv = -EBADMSG;
    shoal_keyset_free(ks);
    return rv;
}

struct scenario {
    int (*fn)(void);
};

static int run_scenario(void *user)
{
    const struct scenario *sc = user;
    return sc->fn();
}

static void walk(const char *name, int (*fn)(void))
{
    struct scenario sc = { fn };
    CHECK_EQ(failalloc_walk(name, run_scenario, &sc, 100000), 0);
}

int main(void)
{
    REQUIRE(shoal_crypto_init() == 0);
    REQUIRE(shoal_key_generate(&pk, &sk) == 0);
    shoal_buf_init(&signed_mf, SHOAL_MF_MAX_BYTES_DEFAULT);
    REQUIRE(build_manifest(&signed_mf) == 0);

    walk("manifest build", sc_manifest_build);
    walk("manifest parse", sc_manifest_parse);
    walk("registry", sc_registry);
    walk("scheduler", sc_sched);
    walk("json", sc_json);
    walk("frame decoder", sc_frame);
    walk("chunker", sc_chunker);
    snprintf(state_dir, sizeof state_dir, "/tmp/shoal-failalloc-XXXXXX");
    REQUIRE(mkdtemp(state_dir));
    snprintf(key_path, sizeof key_path, "%s/publisher.pub", state_dir);
    REQUIRE(shoal_pubkey_save(key_path, &pk) == 0);
    walk("state file", sc_state);
    walk("key file", sc_keyset);
    {
        char path[160];
        snprintf(path, sizeof path, "%s/releases", state_dir);
        unlink(path);
        unlink(key_path);
        rmdir(state_dir);
    }
    shoal_buf_free(&signed_mf);
    return t_done();
}
