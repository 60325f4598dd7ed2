/* SPDX-License-Identifier: MIT */
/*
 * The scheduler's side of the loader hand-off (node/sched.c, loader tiers):
 * a file a loader waits for is fetched roughly front to back, so the store's
 * running sha256 follows the chunks as they arrive and the file is handed
 * over right after its last chunk, instead of after reading most of it back
 * (which, with chunks in random order, put seconds on a large shard's
 * hand-off). Rarity still counts within the window at the front.
 */
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

int main(void)
{
    RUN(test_front_to_back);
    RUN(test_rarest_in_window);
    RUN(test_spread_over_peers);
    RUN(test_late_requests_duplicated);
    return t_done();
}
