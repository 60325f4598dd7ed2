/* SPDX-License-Identifier: MIT */
/*
 * The scheduler's side of the loader hand-off (node/sched.c, loader tiers):
 * a file a loader waits for is fetched roughly front to back, so the store's
 * running sha256 follows the chunks as they arrive and the file is handed
 * over right after its last chunk, instead of after reading most of it back
 * (which, with chunks in random order, put seconds on a large shard's
 * hand-off). Rarity still counts within the window at the front.
 *
 * And the loader socket's merge of what its loaders wait for
 * (shoal_sched_merge_waits): the same order as the merge the daemon used
 * before (compared on random waits), at a cost of the files still waited
 * for, which it pays after every completed file: a pull of 10,000 files
 * merged after each one is a fraction of a second; the old merge, which
 * rescanned each loader's order from the start for every depth, needed
 * about five minutes of CPU for it.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sched.h"
#include "t.h"

static struct shoal_sched *mk(uint32_t nchunks, uint32_t nfiles, const uint32_t *ff,
                              uint32_t depth)
{
    struct shoal_sched_config cfg;
    struct shoal_sched_release rel = {.nchunks = nchunks, .total_bytes = (uint64_t)nchunks << 20,
                                      .nfiles = nfiles, .file_first = ff};
    struct shoal_sched *s = NULL;

    shoal_sched_config_default(&cfg);
    cfg.max_inflight = 0; /* pipelines fill past the wanted files' chunks */
    cfg.min_depth = cfg.max_depth = depth;
    REQUIRE(shoal_sched_new(&s, &cfg, &rel) == 0);
    return s;
}

static void set_bits(uint8_t *b, uint32_t n, uint32_t except)
{
    memset(b, 0, (n + 7) / 8);
    for (uint32_t i = 0; i < n; i++)
        if (i != except)
            b[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* Peers 1 and 2 join holding all |nchunks| chunks, and a loader waits for
 * file |want|. */
static void two_full_peers(struct shoal_sched *s, uint32_t nchunks, uint32_t want)
{
    uint8_t all[64];

    REQUIRE(nchunks <= 8 * sizeof all);
    set_bits(all, nchunks, UINT32_MAX);
    for (uint64_t p = 1; p <= 2; p++) {
        CHECK_EQ(shoal_sched_peer_add(s, p, true, 1), 0);
        CHECK_EQ(shoal_sched_peer_bitfield(s, p, all, (nchunks + 7) / 8), 0);
    }
    CHECK_EQ(shoal_sched_want_files(s, &want, 1), 0);
}

/* Two peers hold everything; the loader waits for the middle file of
 * three (chunks 100..299 of 400, so the range spans several bitmap words
 * and starts inside one). Every round of requests takes the earliest
 * chunks of that file not yet asked for, and nothing else while any is
 * left. */
static void test_front_to_back(void)
{
    uint32_t ff[3] = {0, 100, 300};
    struct shoal_sched *s = mk(400, 3, ff, 4);
    uint32_t want = 1, next = 100;
    struct shoal_sched_action a[64];

    two_full_peers(s, 400, want);
    for (uint64_t t = 1; next < 300; t++) {
        size_t n = shoal_sched_next(s, t, a, 64);
        uint32_t lo = UINT32_MAX, hi = 0;
        REQUIRE(n == 8);
        for (size_t i = 0; i < n; i++) {
            CHECK_EQ(a[i].type, SHOAL_SCHED_REQUEST);
            lo = a[i].chunk < lo ? a[i].chunk : lo;
            hi = a[i].chunk > hi ? a[i].chunk : hi;
        }
        /* Eight distinct requests within [next, next + 8): exactly those. */
        CHECK_EQ(lo, next);
        CHECK_EQ(hi, next + 7);
        for (size_t i = 0; i < n; i++)
            CHECK_EQ(shoal_sched_req_done(s, t, a[i].peer, a[i].chunk, 1 << 20, 1), 0);
        next += 8;
        if (next > 300 - 8)
            break;
    }
    shoal_sched_free(s);
}

/* Within the window at the front, the rarer chunk goes first: peer 2
 * lacks chunk 13 of the wanted file (chunks 10..29), so peer 1, the only
 * holder, is asked for it before the chunks ahead of it. */
static void test_rarest_in_window(void)
{
    uint32_t ff[2] = {0, 10};
    struct shoal_sched *s = mk(30, 2, ff, 1);
    uint8_t all[4], most[4];
    uint32_t want = 1;
    struct shoal_sched_action a[8];
    bool got13 = false;

    set_bits(all, 30, UINT32_MAX);
    set_bits(most, 30, 13);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 1, all, sizeof all), 0);
    CHECK_EQ(shoal_sched_peer_add(s, 2, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 2, most, sizeof most), 0);
    CHECK_EQ(shoal_sched_want_files(s, &want, 1), 0);
    size_t n = shoal_sched_next(s, 1, a, 8);
    REQUIRE(n == 2);
    for (size_t i = 0; i < n; i++) {
        CHECK(a[i].chunk >= 10 && a[i].chunk < 14);
        if (a[i].chunk == 13) {
            got13 = true;
            CHECK_EQ(a[i].peer, 1);
        } else {
            CHECK_EQ(a[i].peer, 2);
            CHECK_EQ(a[i].chunk, 10); /* the earliest of the equally rare */
        }
    }
    CHECK(got13);
    shoal_sched_free(s);
}

/* Deep pipelines: a wanted file of 12 chunks and two peers that could each
 * take 16 requests. The file is split between them, each peer taking every
 * other chunk from the front, rather than the first peer taking all of it
 * (which halves the file's speed and leaves its hash waiting). */
static void test_spread_over_peers(void)
{
    uint32_t ff[2] = {0, 12};
    struct shoal_sched *s = mk(100, 2, ff, 16);
    uint32_t per[3] = {0};
    struct shoal_sched_action a[64];

    two_full_peers(s, 100, 0);
    size_t n = shoal_sched_next(s, 1, a, 64);
    REQUIRE(n == 32);
    for (size_t i = 0; i < n; i++) {
        REQUIRE(a[i].peer >= 1 && a[i].peer <= 2);
        if (a[i].chunk < 12)
            per[a[i].peer]++;
    }
    CHECK_EQ(per[1], 6);
    CHECK_EQ(per[2], 6);
    /* The first 12 requests are the file's, front to back. */
    for (size_t i = 0; i < 12; i++)
        CHECK_EQ(a[i].chunk, i);
    shoal_sched_free(s);
}

/* A stalled peer: the wanted file's chunks are split between two peers,
 * one answers and the other does not. The answering peer goes on to the
 * next file while the stalled requests are young (more are missing than
 * there are peers, and duplicating is not free), but once they have been
 * out several times as long as requests take, it duplicates them, oldest
 * first, so the loader does not wait for the request timeout. */
static void test_late_requests_duplicated(void)
{
    uint32_t ff[2] = {0, 8};
    struct shoal_sched *s = mk(16, 2, ff, 4);
    uint64_t fast = 0, slow = 0;
    struct shoal_sched_action a[16];

    two_full_peers(s, 16, 0);
    size_t n = shoal_sched_next(s, 0, a, 16);
    REQUIRE(n == 8);
    fast = a[0].peer;
    slow = fast == 1 ? 2 : 1;
    for (size_t i = 0; i < n; i++) {
        REQUIRE(a[i].chunk < 8);
        if (a[i].peer == fast)
            CHECK_EQ(shoal_sched_req_done(s, 5, fast, a[i].chunk, 1 << 20, 5), 0);
    }
    /* Young: the fast peer takes the next file's chunks. */
    n = shoal_sched_next(s, 6, a, 16);
    REQUIRE(n == 4);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(a[i].peer, fast);
        CHECK(a[i].chunk >= 8);
        CHECK_EQ(shoal_sched_req_done(s, 10, fast, a[i].chunk, 1 << 20, 4), 0);
    }
    /* Late (100 ms against requests of ~5 ms): copies of all four. */
    n = shoal_sched_next(s, 100, a, 16);
    REQUIRE(n == 4);
    bool dup[8] = {false};
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(a[i].type, SHOAL_SCHED_REQUEST);
        CHECK_EQ(a[i].peer, fast);
        REQUIRE(a[i].chunk < 8);
        CHECK(!dup[a[i].chunk]);
        dup[a[i].chunk] = true;
    }
    /* The first copy to arrive cancels the stalled one. */
    CHECK_EQ(shoal_sched_req_done(s, 101, fast, a[0].chunk, 1 << 20, 1), 0);
    n = shoal_sched_next(s, 101, a, 16);
    REQUIRE(n >= 1);
    CHECK_EQ(a[0].type, SHOAL_SCHED_CANCEL);
    CHECK_EQ(a[0].peer, slow);
    shoal_sched_free(s);
}

/* ---- merging the loaders' waits ---- */

struct waits {
    uint32_t nl, nfiles;
    uint32_t *n;                /* positions per loader */
    uint32_t **want, **next, **prev, *head;
    bool **sent;
};

static void waits_init(struct waits *w, uint32_t nl, uint32_t nfiles)
{
    memset(w, 0, sizeof *w);
    w->nl = nl;
    w->nfiles = nfiles;
    REQUIRE((w->n = calloc(nl, sizeof *w->n)) && (w->want = calloc(nl, sizeof *w->want)) &&
            (w->next = calloc(nl, sizeof *w->next)) && (w->prev = calloc(nl, sizeof *w->prev)) &&
            (w->head = calloc(nl, sizeof *w->head)) && (w->sent = calloc(nl, sizeof *w->sent)));
}

/* Loader |i| waits for |n| files: |order| (copied), none sent yet. */
static void waits_set(struct waits *w, uint32_t i, const uint32_t *order, uint32_t n)
{
    w->n[i] = n;
    REQUIRE((w->want[i] = malloc(sizeof(uint32_t) * (n + 1))) &&
            (w->next[i] = malloc(sizeof(uint32_t) * (n + 1))) &&
            (w->prev[i] = malloc(sizeof(uint32_t) * (n + 1))) &&
            (w->sent[i] = calloc(n + 1, sizeof(bool))));
    memcpy(w->want[i], order, sizeof(uint32_t) * n);
    for (uint32_t k = 0; k < n; k++) {
        w->next[i][k] = k + 1 < n ? k + 1 : UINT32_MAX;
        w->prev[i][k] = k ? k - 1 : UINT32_MAX;
    }
    w->head[i] = n ? 0 : UINT32_MAX;
}

/* Position |k| of loader |i| was handed over: out of its list. */
static void waits_send(struct waits *w, uint32_t i, uint32_t k)
{
    uint32_t *nx = w->next[i], *pv = w->prev[i];

    REQUIRE(!w->sent[i][k]);
    w->sent[i][k] = true;
    if (pv[k] != UINT32_MAX)
        nx[pv[k]] = nx[k];
    else
        w->head[i] = nx[k];
    if (nx[k] != UINT32_MAX)
        pv[nx[k]] = pv[k];
}

static void waits_free(struct waits *w)
{
    for (uint32_t i = 0; i < w->nl; i++) {
        free(w->want[i]);
        free(w->next[i]);
        free(w->prev[i]);
        free(w->sent[i]);
    }
    free(w->n);
    free(w->want);
    free(w->next);
    free(w->prev);
    free(w->head);
    free(w->sent);
}

static int merge(const struct waits *w, uint32_t **out, uint32_t *n)
{
    struct shoal_sched_wait v[16];
    uint32_t nv = 0;

    REQUIRE(w->nl <= 16);
    for (uint32_t i = 0; i < w->nl; i++) {
        if (w->head[i] == UINT32_MAX)
            continue; /* as the daemon: loaders waiting for nothing are left out */
        v[nv].want = w->want[i];
        v[nv].next = w->next[i];
        v[nv].head = w->head[i];
        nv++;
    }
    return shoal_sched_merge_waits(v, nv, w->nfiles, out, n);
}

/* The daemon's merge before it kept its waiting lists (node/loader.c,
 * session 6), from the sent flags alone: the depth-th unsent position of
 * every loader, found by scanning its order from the start. Quadratic;
 * only for small waits. */
static uint32_t merge_old(const struct waits *w, uint32_t *files)
{
    uint8_t seen[512] = {0};
    uint32_t got = 0, depth = 0, total = 0;
    bool more = true;

    REQUIRE(w->nfiles <= 8 * sizeof seen);
    for (uint32_t i = 0; i < w->nl; i++)
        for (uint32_t k = 0; k < w->n[i]; k++)
            total += !w->sent[i][k];
    if (total > w->nfiles)
        total = w->nfiles;
    while (more && got < total) {
        more = false;
        for (uint32_t i = 0; i < w->nl && got < total; i++) {
            uint32_t seen_unsent = 0;
            for (uint32_t k = 0; k < w->n[i]; k++) {
                uint32_t fi;
                if (w->sent[i][k] || seen_unsent++ < depth)
                    continue;
                more = true;
                fi = w->want[i][k];
                if (!(seen[fi / 8] & (1u << (fi % 8)))) {
                    seen[fi / 8] |= (uint8_t)(1u << (fi % 8));
                    files[got++] = fi;
                }
                break;
            }
        }
        depth++;
    }
    return got;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static void shuffle(uint32_t *a, uint32_t n)
{
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = rnd(i), t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* Random waits: 1-6 loaders, each wanting a random subset of up to 300
 * files in a random order (loaders overlap), some already sent. The merge
 * gives exactly the old merge's list. */
static void test_merge_same_as_before(void)
{
    uint32_t order[300], expect[300];

    for (int round = 0; round < 400; round++) {
        uint32_t nfiles = 1 + rnd(300), nl = 1 + rnd(6), *got = NULL, n = 0, ne;
        struct waits w;
        int rv;

        waits_init(&w, nl, nfiles);
        for (uint32_t i = 0; i < nl; i++) {
            uint32_t m = rnd(nfiles + 1);
            for (uint32_t f = 0; f < nfiles; f++)
                order[f] = f;
            shuffle(order, nfiles);
            waits_set(&w, i, order, m);
            for (uint32_t k = 0; k < m; k++)
                if (rnd(4) == 0 || (round % 5 == 0 && k < m / 2))
                    waits_send(&w, i, k);
        }
        ne = merge_old(&w, expect);
        rv = merge(&w, &got, &n);
        CHECK_EQ(rv, 0);
        CHECK_EQ(n, ne);
        CHECK((n == 0) == (got == NULL));
        for (uint32_t j = 0; j < n && j < ne; j++) {
            if (got[j] != expect[j]) {
                fprintf(stderr, "round %d: merged[%u] = %u, the old merge had %u\n", round, j,
                        got[j], expect[j]);
                CHECK(got[j] == expect[j]);
                break;
            }
        }
        free(got);
        waits_free(&w);
    }
}

/* A file index past the release is refused, and nothing is returned. */
static void test_merge_bad_index(void)
{
    uint32_t order[3] = {0, 7, 1}, *got = (uint32_t *)&order, n = 5;
    struct waits w;

    waits_init(&w, 1, 4);
    waits_set(&w, 0, order, 3);
    CHECK_EQ(merge(&w, &got, &n), SHOAL_EBADMSG);
    CHECK(got == NULL);
    CHECK_EQ(n, 0);
    waits_free(&w);
}

/*
 * A pull of 10,000 files for two loaders (one in manifest order, one in
 * reverse), merged after every completed file as the daemon does; files
 * complete front to back of the first loader's order. After each, the
 * merge is exactly the two remaining lists interleaved: a0 b0 a1 b1 ...
 * with each file once. The old merge would need ~2N^3/3 steps here
 * (every call rescanned the sent positions too, for each depth): about
 * five minutes at the 0.4 ns a step it ran (2.1 s for one call over
 * 100,000 files); the meson timeout catches a return to it.
 */
static void test_merge_whole_pull(void)
{
    enum { N = 10000 };
    uint32_t *order = malloc(sizeof(uint32_t) * N), *expect = malloc(sizeof(uint32_t) * N);
    uint8_t *seen = malloc(N);
    struct waits w;
    int bad = 0;

    REQUIRE(order && expect && seen);
    waits_init(&w, 2, N);
    for (uint32_t f = 0; f < N; f++)
        order[f] = f;
    waits_set(&w, 0, order, N);
    for (uint32_t f = 0; f < N; f++)
        order[f] = N - 1 - f;
    waits_set(&w, 1, order, N);
    for (uint32_t done = 0; done <= N && !bad; done++) {
        uint32_t *got = NULL, n = 0, ne = 0, lo = done, hi = N - 1;

        /* What is left: files done..N-1; loader 0 from the front, loader 1
         * from the back, alternating, each file once. */
        memset(seen, 0, N);
        while (lo < N && hi != UINT32_MAX && hi >= done && ne < N - done) {
            if (!seen[lo]) {
                seen[lo] = 1;
                expect[ne++] = lo;
            }
            if (!seen[hi]) {
                seen[hi] = 1;
                expect[ne++] = hi;
            }
            lo++;
            hi--;
        }
        if (merge(&w, &got, &n) != 0 || n != ne ||
            (n && memcmp(got, expect, sizeof(uint32_t) * n) != 0)) {
            fprintf(stderr, "after %u of %u files: merge of %u files differs (expected %u)\n",
                    done, N, n, ne);
            bad = 1;
        }
        free(got);
        if (done < N) {
            waits_send(&w, 0, done);
            waits_send(&w, 1, N - 1 - done);
        }
    }
    CHECK_EQ(bad, 0);
    waits_free(&w);
    free(order);
    free(expect);
    free(seen);
}

/* 100,000 files, four loaders each wanting all of them in its own shuffled
 * order, every second position of each already sent: one merge lists each
 * unsent file once, loaders' depth-th files in turn (checked against the
 * per-loader lists of what is left, built apart). */
static void test_merge_large(void)
{
    enum { N = 100000, L = 4 };
    uint32_t *order = malloc(sizeof(uint32_t) * N), *left[L], nleft[L] = {0};
    uint32_t *expect = malloc(sizeof(uint32_t) * N), ne = 0, *got = NULL, n = 0;
    uint8_t *seen = calloc(N, 1);
    struct waits w;

    REQUIRE(order && expect && seen);
    waits_init(&w, L, N);
    for (uint32_t i = 0; i < L; i++) {
        REQUIRE((left[i] = malloc(sizeof(uint32_t) * N)));
        for (uint32_t f = 0; f < N; f++)
            order[f] = f;
        shuffle(order, N);
        waits_set(&w, i, order, N);
        for (uint32_t k = 0; k < N; k++) {
            if ((k + i) % 2)
                waits_send(&w, i, k);
            else
                left[i][nleft[i]++] = order[k];
        }
    }
    for (uint32_t d = 0; d < N; d++) {
        for (uint32_t i = 0; i < L; i++) {
            if (d < nleft[i] && !seen[left[i][d]]) {
                seen[left[i][d]] = 1;
                expect[ne++] = left[i][d];
            }
        }
    }
    CHECK_EQ(merge(&w, &got, &n), 0);
    CHECK_EQ(n, ne);
    CHECK(n == ne && memcmp(got, expect, sizeof(uint32_t) * n) == 0);
    free(got);
    for (uint32_t i = 0; i < L; i++)
        free(left[i]);
    waits_free(&w);
    free(order);
    free(expect);
    free(seen);
}

/* Requests in the loader's file made by one shoal_sched_next at |t|. */
static size_t requests(struct shoal_sched *s, uint64_t t)
{
    struct shoal_sched_action a[64];
    size_t n = shoal_sched_next(s, t, a, 64), r = 0;

    for (size_t i = 0; i < n; i++)
        r += a[i].type == SHOAL_SCHED_REQUEST;
    return r;
}

/* A node capped at 4 MiB/s with ~1 MiB chunks keeps 3 requests in flight
 * (0.5 s of the cap, plus one), also while a loader waits (which lifts
 * max_inflight): a peer answers in the order asked, so whatever is in
 * flight when a loader comes is received ahead of its file. Without a cap
 * the two peers' pipelines fill (2 x 16). */
static void test_rate_down_bounds_inflight(void)
{
    uint32_t ff[3] = {0, 100, 300};
    struct shoal_sched *s = mk(400, 3, ff, 16);

    shoal_sched_set_rate_down(s, 4u << 20);
    two_full_peers(s, 400, 1);
    CHECK_EQ(requests(s, 1), 3);
    CHECK_EQ(shoal_sched_inflight(s), 3);
    CHECK_EQ(requests(s, 2), 0);
    /* A cap slower than a chunk per 0.5 s still keeps two in flight. */
    shoal_sched_set_rate_down(s, 1u << 10);
    CHECK_EQ(requests(s, 3), 0);
    shoal_sched_set_rate_down(s, 0);
    CHECK_EQ(requests(s, 4), 32 - 3);
    shoal_sched_free(s);
}

/* Requests made by one shoal_sched_next at |t|, to peer 1 and peer 2 (in
 * |n1|, |n2|); the chunks asked are appended to |c1| (|*nc1|) and |c2|
 * (|*nc2|). */
static void requests_by_peer(struct shoal_sched *s, uint64_t t, size_t *n1, size_t *n2,
                             uint32_t *c1, size_t *nc1, uint32_t *c2, size_t *nc2)
{
    struct shoal_sched_action a[64];
    size_t n = shoal_sched_next(s, t, a, 64);

    *n1 = *n2 = 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i].type != SHOAL_SCHED_REQUEST)
            continue;
        if (a[i].peer == 1) {
            (*n1)++;
            c1[(*nc1)++] = a[i].chunk;
        } else {
            (*n2)++;
            c2[(*nc2)++] = a[i].chunk;
        }
    }
}

/* With the rate bound on (shoal_sched_set_rate_bound), requests follow
 * what each peer delivers: one at a time until a peer has delivered twice,
 * then no more at a slow peer than half a second (and a round trip) of its
 * rate plus one, while a fast one is not held back by the slow one's. */
static void test_rate_bound_inflight(void)
{
    uint32_t ff[3] = {0, 100, 300}, c1[64], c2[256];
    size_t n1 = 0, n2 = 0, nc1 = 0, nc2 = 0;
    struct shoal_sched *s = mk(400, 3, ff, 16);

    CHECK_EQ(shoal_sched_set_rate_bound(s, true), 0);
    two_full_peers(s, 400, 1);
    requests_by_peer(s, 1, &n1, &n2, c1, &nc1, c2, &nc2);
    CHECK_EQ(n1, 1);
    CHECK_EQ(n2, 1);
    /* Peer 1's first chunk (1 MiB in 500 ms) gives no rate yet. */
    CHECK_EQ(shoal_sched_req_done(s, 501, 1, c1[0], 1 << 20, 500), 0);
    nc1 = 0;
    requests_by_peer(s, 501, &n1, &n2, c1, &nc1, c2, &nc2);
    CHECK_EQ(n1, 1);
    CHECK_EQ(n2, 0);
    /* Its second does: 2 MiB/s, so 3 may wait there (ceil(2 x 0.501) +
     * 1), and 3 in all. */
    CHECK_EQ(shoal_sched_req_done(s, 1001, 1, c1[0], 1 << 20, 500), 0);
    nc1 = 0;
    requests_by_peer(s, 1001, &n1, &n2, c1, &nc1, c2, &nc2);
    CHECK_EQ(n1, 2);
    CHECK_EQ(n2, 0);
    CHECK_EQ(shoal_sched_inflight(s), 3);
    /* Peer 2 answers every request in 2 ms: its depth and the bound in
     * all grow past what peer 1 holds, which stays at most 3. */
    size_t at1 = 2;
    for (uint64_t t = 1002; t < 1020; t += 2) {
        size_t k = nc2;
        for (size_t i = 0; i < k; i++)
            CHECK_EQ(shoal_sched_req_done(s, t, 2, c2[i], 1 << 20, 2), 0);
        nc2 = 0;
        requests_by_peer(s, t, &n1, &n2, c1, &nc1, c2, &nc2);
        at1 += n1;
    }
    CHECK(at1 <= 3);
    CHECK(nc2 >= 8);
    CHECK_EQ(shoal_sched_inflight(s), at1 + nc2);
    shoal_sched_free(s);
}

int main(void)
{
    RUN(test_front_to_back);
    RUN(test_rarest_in_window);
    RUN(test_spread_over_peers);
    RUN(test_late_requests_duplicated);
    RUN(test_merge_same_as_before);
    RUN(test_merge_bad_index);
    RUN(test_merge_whole_pull);
    RUN(test_merge_large);
    RUN(test_rate_down_bounds_inflight);
    RUN(test_rate_bound_inflight);
    return t_done();
}
