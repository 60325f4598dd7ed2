/* SPDX-License-Identifier: MIT */
/*
 * Tests of the chunk scheduler (node/sched.c): the decisions a node makes
 * (what to request from whom, when to go to the origin) are visible to users
 * as speed, origin egress and cross-zone traffic, so each test drives the
 * scheduler with events and checks the actions it returns.
 */
#include <errno.h>
#include <string.h>

#include "error.h"
#include "sched.h"
#include "t.h"

#define MAXA 512

static struct shoal_sched *mk(uint32_t nchunks, uint32_t nfiles, const uint32_t *ff,
                              const struct shoal_sched_config *cfg)
{
    struct shoal_sched_release rel = {.nchunks = nchunks, .total_bytes = (uint64_t)nchunks << 20,
                                      .nfiles = nfiles, .file_first = ff};
    struct shoal_sched *s = NULL;
    REQUIRE(shoal_sched_new(&s, cfg, &rel) == 0);
    return s;
}

static void all_bits(uint8_t *b, uint32_t n)
{
    memset(b, 0, (n + 7) / 8);
    for (uint32_t i = 0; i < n; i++)
        b[i / 8] |= (uint8_t)(1u << (i % 8));
}

static size_t count_type(const struct shoal_sched_action *a, size_t n, int type)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += a[i].type == (enum shoal_sched_action_type)type;
    return k;
}

/* Same seed and events: identical actions; another seed: another order. */
static void run_script(uint64_t seed, struct shoal_sched_action *log, size_t *nlog)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.seed = seed;
    struct shoal_sched *s = mk(2000, 0, NULL, &cfg);
    uint8_t bits[250];
    all_bits(bits, 2000);
    for (uint64_t p = 1; p <= 4; p++) {
        CHECK_EQ(shoal_sched_peer_add(s, p, true, 1), 0);
        CHECK_EQ(shoal_sched_peer_bitfield(s, p, bits, sizeof(bits)), 0);
    }
    *nlog = 0;
    for (uint64_t t = 0; t < 50; t++) {
        struct shoal_sched_action a[64];
        size_t n = shoal_sched_next(s, t, a, 64);
        for (size_t i = 0; i < n; i++) {
            REQUIRE(*nlog < MAXA);
            log[(*nlog)++] = a[i];
            if (a[i].type == SHOAL_SCHED_REQUEST)
                CHECK_EQ(shoal_sched_req_done(s, t, a[i].peer, a[i].chunk, 1 << 20, 2), 0);
        }
    }
    CHECK(*nlog > 100);
    shoal_sched_free(s);
}

static void test_determinism(void)
{
    static struct shoal_sched_action a[MAXA], b[MAXA], c[MAXA];
    size_t na, nb, nc;
    run_script(42, a, &na);
    run_script(42, b, &nb);
    run_script(43, c, &nc);
    CHECK_EQ(na, nb);
    CHECK(memcmp(a, b, na * sizeof(a[0])) == 0);
    size_t same = 0;
    for (size_t i = 0; i < na && i < nc; i++)
        same += a[i].chunk == c[i].chunk;
    CHECK(same < na / 2);
}

/* Only peer 1 holds chunks 5 and 6: they are the rarest and go first. */
static void test_rarest_first(void)
{
    struct shoal_sched *s = mk(64, 0, NULL, NULL);
    uint8_t all[8], most[8];
    all_bits(all, 64);
    all_bits(most, 64);
    most[0] &= (uint8_t)~((1u << 5) | (1u << 6));
    for (uint64_t p = 1; p <= 3; p++)
        CHECK_EQ(shoal_sched_peer_add(s, p, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 1, all, 8), 0);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 2, most, 8), 0);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 3, most, 8), 0);
    struct shoal_sched_action a[64];
    size_t n = shoal_sched_next(s, 0, a, 64);
    CHECK_EQ(n, 6); /* depth 2 x 3 peers */
    int got5 = 0, got6 = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(a[i].type, SHOAL_SCHED_REQUEST);
        if (a[i].peer == 1)
            CHECK(a[i].chunk == 5 || a[i].chunk == 6);
        got5 += a[i].chunk == 5;
        got6 += a[i].chunk == 6;
    }
    CHECK_EQ(got5, 1);
    CHECK_EQ(got6, 1);
    shoal_sched_free(s);

    /* Rarity counts HAVEs too: chunk 9 is held by one peer only. */
    s = mk(16, 0, NULL, NULL);
    CHECK_EQ(shoal_sched_peer_add(s, 7, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_add(s, 8, true, 1), 0);
    for (uint32_t c = 0; c < 16; c++) {
        if (c != 9)
            CHECK_EQ(shoal_sched_peer_have(s, 8, c), 0);
        CHECK_EQ(shoal_sched_peer_have(s, 7, c), 0);
    }
    n = shoal_sched_next(s, 0, a, 1);
    CHECK_EQ(n, 1);
    CHECK_EQ(a[0].peer, 7);
    CHECK_EQ(a[0].chunk, 9);
    shoal_sched_free(s);
}

/* Later bitfields only add: an empty one removes nothing (a peer that
 * alternates full and empty ones cannot make the scheduler redo the
 * release), and one with new bits adds just those. */
static void test_bitfield_add(void)
{
    struct shoal_sched *s = mk(64, 0, NULL, NULL);
    uint8_t none[8] = {0}, some[8] = {0}, all[8];

    all_bits(all, 64);
    some[0] = 0x0f;
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 1, some, 8), 0);
    CHECK_EQ(shoal_sched_peer_have_count(s, 1), 4);
    CHECK_EQ(shoal_sched_peer_bitfield_add(s, 1, none, 8), 0);
    CHECK_EQ(shoal_sched_peer_have_count(s, 1), 4);
    CHECK_EQ(shoal_sched_peer_bitfield_add(s, 1, some, 8), 0);
    CHECK_EQ(shoal_sched_peer_bitfield_add(s, 1, all, 8), 60);
    CHECK_EQ(shoal_sched_peer_have_count(s, 1), 64);
    CHECK_EQ(shoal_sched_peer_bitfield_add(s, 1, none, 8), 0);
    CHECK_EQ(shoal_sched_peer_have_count(s, 1), 64);
    CHECK_EQ(shoal_sched_peer_bitfield_add(s, 1, all, 7), SHOAL_EBADMSG);
    CHECK_EQ(shoal_sched_peer_bitfield_add(s, 9, all, 8), SHOAL_ENOTFOUND);
    /* The whole release is requestable from it now. */
    struct shoal_sched_action a[4];
    CHECK(shoal_sched_next(s, 0, a, 4) > 0);
    shoal_sched_free(s);
}

/* A borrowed bitfield is read in place: what its owner sets and reports
 * becomes requestable, the holders it had are counted at the borrow and
 * uncounted at the remove, and no other bitfield call may touch it. */
static void test_bitfield_borrow(void)
{
    struct shoal_sched *s = mk(64, 0, NULL, NULL);
    uint8_t theirs[8] = {0}, mine[8] = {0};
    struct shoal_sched_action a[8];

    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_add(s, 2, true, 1), 0);
    theirs[0] = 0x01; /* chunk 0 */
    CHECK_EQ(shoal_sched_peer_bitfield_borrow(s, 1, theirs, 7), SHOAL_EBADMSG);
    CHECK_EQ(shoal_sched_peer_bitfield_borrow(s, 9, theirs, 8), SHOAL_ENOTFOUND);
    CHECK_EQ(shoal_sched_peer_bitfield_borrow(s, 1, theirs, 8), 0);
    CHECK_EQ(shoal_sched_peer_bitfield_borrow(s, 1, theirs, 8), -EINVAL);
    CHECK_EQ(shoal_sched_peer_have_count(s, 1), 1);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 1, mine, 8), -EINVAL);
    CHECK_EQ(shoal_sched_peer_bitfield_add(s, 1, mine, 8), -EINVAL);
    CHECK_EQ(shoal_sched_peer_have(s, 1, 3), -EINVAL);
    int slot = shoal_sched_peer_slot(s, 1);
    CHECK(!shoal_sched_slot_have(s, (uint32_t)slot, 3)); /* not for a borrowed one */
    /* The owner sets chunk 5 and reports it. */
    theirs[0] |= 0x20;
    CHECK(shoal_sched_slot_have_borrowed(s, (uint32_t)slot, 5));
    CHECK_EQ(shoal_sched_peer_have_count(s, 1), 2);
    /* (The other 62 chunks nobody holds: a lease request goes out too.) */
    size_t n = shoal_sched_next(s, 0, a, 8);
    bool got0 = false, got5 = false;
    for (size_t i = 0; i < n; i++) {
        if (a[i].type != SHOAL_SCHED_REQUEST)
            continue;
        CHECK(a[i].peer == 1);
        got0 |= a[i].chunk == 0;
        got5 |= a[i].chunk == 5;
    }
    CHECK(got0 && got5);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_REQUEST), 2);
    /* Gone: its holdings no longer count, and the requests become the
     * other peer's to take once it holds them. */
    CHECK_EQ(shoal_sched_peer_remove(s, 1), 0);
    mine[0] = 0x21;
    CHECK_EQ(shoal_sched_peer_bitfield(s, 2, mine, 8), 0);
    n = shoal_sched_next(s, 1, a, 8);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_REQUEST), 2);
    for (size_t i = 0; i < n; i++)
        CHECK(a[i].type != SHOAL_SCHED_REQUEST ||
              (a[i].peer == 2 && (a[i].chunk == 0 || a[i].chunk == 5)));
    /* A new peer in the freed slot starts from nothing of its own. */
    CHECK_EQ(shoal_sched_peer_add(s, 3, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_have_count(s, 3), 0);
    shoal_sched_free(s);
}

/* A peer that claims every chunk and answers "unknown" (or nothing): each
 * chunk it fails is no longer asked of it, and one nobody else holds goes
 * to the origin, instead of straight back to the same peer. */
static void test_peer_lacks(void)
{
    struct shoal_sched *s = mk(8, 0, NULL, NULL);
    uint8_t all[1] = {0xff};
    struct shoal_sched_action a[16];

    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 1, all, 1), 0);
    size_t n = shoal_sched_next(s, 0, a, 16);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_REQUEST), 0); /* no orphans */
    uint32_t c = UINT32_MAX;
    for (size_t i = 0; i < n; i++)
        if (a[i].type == SHOAL_SCHED_REQUEST)
            c = a[i].chunk;
    REQUIRE(c != UINT32_MAX);
    CHECK_EQ(shoal_sched_peer_lacks(s, 1, 9, c), SHOAL_ENOTFOUND);
    CHECK_EQ(shoal_sched_peer_lacks(s, 1, 1, 8), SHOAL_EBADMSG);
    CHECK_EQ(shoal_sched_holders(s, c), 1);
    CHECK_EQ(shoal_sched_peer_lacks(s, 1, 1, c), 0);
    CHECK_EQ(shoal_sched_peer_have_count(s, 1), 7);
    CHECK_EQ(shoal_sched_holders(s, c), 0);
    n = shoal_sched_next(s, 2, a, 16);
    bool lease = false;
    size_t reqs = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(a[i].type != SHOAL_SCHED_REQUEST || a[i].chunk != c);
        lease |= a[i].type == SHOAL_SCHED_LEASE_REQUEST;
        reqs += a[i].type == SHOAL_SCHED_REQUEST;
    }
    CHECK(lease); /* c is an orphan now: the origin is asked */
    CHECK_EQ(reqs, 1); /* and the peer for another chunk, in c's place */
    /* Lacking a chunk twice, or one never claimed, changes nothing more. */
    CHECK_EQ(shoal_sched_peer_lacks(s, 3, 1, c), 0);
    CHECK_EQ(shoal_sched_peer_have_count(s, 1), 7);
    /* A later HAVE restores the claim. */
    CHECK_EQ(shoal_sched_peer_have(s, 1, c), 0);
    CHECK_EQ(shoal_sched_peer_have_count(s, 1), 8);
    shoal_sched_free(s);
}

/* With shoal_sched_borrow_all the scheduler keeps no bitfield copies: only
 * borrowed peers work, chosen before the first peer, and a borrowed peer
 * that leaves is uncounted as with copies. */
static void test_borrow_all(void)
{
    struct shoal_sched *s = mk(64, 0, NULL, NULL);
    uint8_t theirs[8] = {0}, mine[8] = {0};
    struct shoal_sched_action a[8];

    CHECK_EQ(shoal_sched_borrow_all(s), 0);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_add(s, 2, true, 1), 0);
    CHECK_EQ(shoal_sched_borrow_all(s), -EINVAL); /* peers there already */
    CHECK_EQ(shoal_sched_peer_bitfield(s, 2, mine, 8), -EINVAL);
    CHECK_EQ(shoal_sched_peer_bitfield_add(s, 2, mine, 8), -EINVAL);
    CHECK_EQ(shoal_sched_peer_have(s, 2, 3), -EINVAL);
    CHECK(!shoal_sched_slot_have(s, (uint32_t)shoal_sched_peer_slot(s, 2), 3));
    theirs[0] = 0x03; /* chunks 0 and 1 */
    CHECK_EQ(shoal_sched_peer_bitfield_borrow(s, 1, theirs, 8), 0);
    CHECK_EQ(shoal_sched_peer_have_count(s, 1), 2);
    theirs[0] |= 0x08;
    CHECK(shoal_sched_slot_have_borrowed(s, (uint32_t)shoal_sched_peer_slot(s, 1), 3));
    size_t n = shoal_sched_next(s, 0, a, 8);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_REQUEST), 2); /* its depth: 2 in flight */
    CHECK_EQ(shoal_sched_peer_remove(s, 1), 0);
    CHECK_EQ(shoal_sched_peer_remove(s, 2), 0);
    CHECK_EQ(shoal_sched_peer_add(s, 3, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_have_count(s, 3), 0);
    n = shoal_sched_next(s, 1, a, 8);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_REQUEST), 0);
    shoal_sched_free(s);
}

/* The loader waits for file 2, then file 0: their chunks come first. */
static void test_loader_priority(void)
{
    uint32_t ff[4] = {0, 10, 20, 30};
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.min_depth = cfg.max_depth = 4;
    struct shoal_sched *s = mk(40, 4, ff, &cfg);
    uint8_t all[5];
    all_bits(all, 40);
    for (uint64_t p = 1; p <= 4; p++) {
        CHECK_EQ(shoal_sched_peer_add(s, p, true, 1), 0);
        CHECK_EQ(shoal_sched_peer_bitfield(s, p, all, 5), 0);
    }
    uint32_t want[2] = {2, 0};
    CHECK_EQ(shoal_sched_want_files(s, want, 2), 0);
    uint32_t bad = 9;
    CHECK_EQ(shoal_sched_want_files(s, &bad, 1), SHOAL_EBADMSG);
    struct shoal_sched_action a[64];
    size_t n = shoal_sched_next(s, 0, a, 64);
    CHECK_EQ(n, 16);
    int in2 = 0, in0 = 0;
    for (size_t i = 0; i < n; i++) {
        in2 += a[i].chunk >= 20 && a[i].chunk < 30;
        in0 += a[i].chunk < 10;
    }
    CHECK_EQ(in2, 10); /* all of file 2 before anything else */
    CHECK_EQ(in0, 6);  /* then file 0, never files 1 or 3 */
    shoal_sched_free(s);
}

/* The loader's whole order counts, not just its first two files: with 6
 * files of 4 chunks and the order 5, 3, 1, 0, 2, the first 12 requests are
 * files 5, 3 and 1, and later requests never go back to a better rank. */
static void test_loader_order(void)
{
    uint32_t ff[6] = {0, 4, 8, 12, 16, 20};
    static const int rank[6] = {3, 2, 4, 1, 5, 0}; /* file -> position; 5: unwanted */
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.max_inflight = 0; /* pipelines fill past the wanted files' chunks */
    cfg.min_depth = cfg.max_depth = 6;
    struct shoal_sched *s = mk(24, 6, ff, &cfg);
    uint8_t all[3];
    all_bits(all, 24);
    for (uint64_t p = 1; p <= 2; p++) {
        CHECK_EQ(shoal_sched_peer_add(s, p, true, 1), 0);
        CHECK_EQ(shoal_sched_peer_bitfield(s, p, all, 3), 0);
    }
    uint32_t want[5] = {5, 3, 1, 0, 2};
    CHECK_EQ(shoal_sched_want_files(s, want, 5), 0);
    struct shoal_sched_action a[64];
    size_t n = shoal_sched_next(s, 0, a, 64);
    CHECK_EQ(n, 12);
    int top3 = 0;
    for (size_t i = 0; i < n; i++)
        top3 += rank[a[i].chunk / 4] < 3;
    CHECK_EQ(top3, 12); /* the 3rd wanted file is served before the 4th and 5th */
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(shoal_sched_req_done(s, 1, a[i].peer, a[i].chunk, 1 << 20, 1), 0);
    n = shoal_sched_next(s, 1, a, 64);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_REQUEST), 12);
    int last = 0, in4 = 0;
    for (size_t i = 0; i < n; i++) {
        int r = rank[a[i].chunk / 4];
        CHECK(r >= last); /* 4th wanted, then 5th, then the unwanted file */
        last = r;
        in4 += r == 3;
    }
    CHECK_EQ(in4, 4);
    shoal_sched_free(s);
}

/* Per-file endgame: once the last chunks of the file the loader waits for
 * are all in flight, peers with free slots duplicate them (oldest request
 * first) before fetching later files; the first copy cancels the other. */
static void test_file_endgame(void)
{
    uint32_t ff[2] = {0, 4};
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.min_depth = cfg.max_depth = 1;
    struct shoal_sched *s = mk(12, 2, ff, &cfg);
    uint8_t all[2];
    all_bits(all, 12);
    for (uint64_t p = 1; p <= 4; p++) {
        CHECK_EQ(shoal_sched_peer_add(s, p, true, 1), 0);
        CHECK_EQ(shoal_sched_peer_bitfield(s, p, all, 2), 0);
    }
    uint32_t want = 0;
    CHECK_EQ(shoal_sched_want_files(s, &want, 1), 0);
    struct shoal_sched_action a[32];
    size_t n = shoal_sched_next(s, 0, a, 32);
    REQUIRE(n == 4);
    uint64_t holder[4] = {0};
    for (size_t i = 0; i < n; i++) {
        REQUIRE(a[i].chunk < 4); /* file 0 first */
        holder[a[i].chunk] = a[i].peer;
    }
    /* Chunks 0 and 1 arrive; 2 and 3 are still in flight at their peers. */
    CHECK_EQ(shoal_sched_req_done(s, 10, holder[0], 0, 1 << 20, 10), 0);
    CHECK_EQ(shoal_sched_req_done(s, 10, holder[1], 1, 1 << 20, 10), 0);
    n = shoal_sched_next(s, 10, a, 32);
    REQUIRE(n == 2);
    bool dup2 = false, dup3 = false;
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(a[i].type, SHOAL_SCHED_REQUEST);
        CHECK(a[i].peer == holder[0] || a[i].peer == holder[1]);
        dup2 |= a[i].chunk == 2;
        dup3 |= a[i].chunk == 3;
    }
    CHECK(dup2 && dup3); /* not file 1: the loader's file finishes first */
    CHECK_EQ(shoal_sched_inflight(s), 4);
    uint64_t dup_peer = a[0].chunk == 2 ? a[0].peer : a[1].peer;
    CHECK_EQ(shoal_sched_req_done(s, 12, dup_peer, 2, 1 << 20, 2), 0);
    n = shoal_sched_next(s, 12, a, 32);
    REQUIRE(n >= 1);
    CHECK_EQ(a[0].type, SHOAL_SCHED_CANCEL);
    CHECK_EQ(a[0].peer, holder[2]);
    CHECK_EQ(a[0].chunk, 2);
    shoal_sched_free(s);
}

/* Same-zone peers are asked first; a chunk only a cross-zone peer holds
 * waits for the cross-zone delay, unless a same-zone peer gets it. */
static void test_same_zone(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.cross_zone_delay_ms = 100;
    struct shoal_sched *s = mk(8, 0, NULL, &cfg);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);   /* same zone */
    CHECK_EQ(shoal_sched_peer_add(s, 2, false, 20), 0); /* other zone */
    for (uint32_t c = 0; c < 8; c++)
        CHECK_EQ(shoal_sched_peer_have(s, 2, c), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 1, 3), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 1, 4), 0);
    struct shoal_sched_action a[32];
    size_t n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(n, 2);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(a[i].peer, 1);
        CHECK(a[i].chunk == 3 || a[i].chunk == 4);
    }
    /* Before the delay nothing more; the wakeup says when to look again
     * (delay plus up to one delay of jitter). */
    n = shoal_sched_next(s, 50, a, 32);
    CHECK_EQ(n, 0);
    uint64_t w = shoal_sched_wakeup(s);
    CHECK(w >= 100 && w < 200);
    /* A same-zone peer got chunk 0 in the meantime: it is asked, not the
     * cross-zone one. */
    CHECK_EQ(shoal_sched_req_done(s, 60, 1, 3, 1 << 20, 10), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 1, 0), 0);
    n = shoal_sched_next(s, 60, a, 32);
    CHECK_EQ(n, 1);
    CHECK_EQ(a[0].peer, 1);
    CHECK_EQ(a[0].chunk, 0);
    /* After the delay the cross-zone peer is asked, one fallback crossing
     * at a time (its pipeline has room for 2): the zone's importers may
     * still be bringing the rest in over a slow link. */
    n = shoal_sched_next(s, w, a, 32);
    CHECK_EQ(n, 1);
    CHECK_EQ(a[0].peer, 2);
    uint32_t first = a[0].chunk;
    CHECK(first != 0 && first != 3 && first != 4);
    n = shoal_sched_next(s, w + 1, a, 32);
    CHECK_EQ(n, 0);
    /* It arrives: the next one goes out. */
    CHECK_EQ(shoal_sched_req_done(s, w + 5, 2, first, 1 << 20, 5), 0);
    n = shoal_sched_next(s, w + 5, a, 32);
    CHECK_EQ(n, 1);
    CHECK_EQ(a[0].peer, 2);
    CHECK(a[0].chunk != first && a[0].chunk != 0 && a[0].chunk != 3 && a[0].chunk != 4);
    shoal_sched_free(s);
}

/* Requests of |a| (|n| actions) to |peer|. */
static size_t requests_to(const struct shoal_sched_action *a, size_t n, uint64_t peer)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += a[i].type == SHOAL_SCHED_REQUEST && a[i].peer == peer;
    return k;
}

/* A fallback crossing that took longer than the cross-zone delay says the
 * links between zones are slow: the zone's importers are likely still
 * bringing the rest in, so the next fallback waits 3 times as long. */
static void test_fallback_hold(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.cross_zone_delay_ms = 100;
    cfg.origin_delay_ms = 1000000; /* no leases in the way */
    struct shoal_sched *s = mk(8, 0, NULL, &cfg);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);   /* same zone */
    CHECK_EQ(shoal_sched_peer_add(s, 2, false, 20), 0); /* other zone */
    CHECK_EQ(shoal_sched_peer_have(s, 1, 7), 0);
    for (uint32_t c = 0; c < 7; c++)
        CHECK_EQ(shoal_sched_peer_have(s, 2, c), 0);
    struct shoal_sched_action a[32];
    size_t n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(n, 1);
    CHECK_EQ(a[0].peer, 1);
    n = shoal_sched_next(s, 200, a, 32); /* past delay + jitter */
    CHECK_EQ(n, 1);
    CHECK_EQ(a[0].peer, 2);
    uint32_t c1 = a[0].chunk;
    /* 150 ms for one chunk across: held until 350 + 3 x 150. */
    CHECK_EQ(shoal_sched_req_done(s, 350, 2, c1, 1 << 20, 150), 0);
    n = shoal_sched_next(s, 350, a, 32);
    CHECK_EQ(requests_to(a, n, 2), 0);
    CHECK_EQ(shoal_sched_wakeup(s), 800);
    n = shoal_sched_next(s, 799, a, 32);
    CHECK_EQ(requests_to(a, n, 2), 0);
    n = shoal_sched_next(s, 800, a, 32);
    CHECK_EQ(requests_to(a, n, 2), 1);
    CHECK(a[0].chunk != c1 && a[0].chunk < 7);
    /* A quick crossing holds nothing back. */
    CHECK_EQ(shoal_sched_req_done(s, 820, 2, a[0].chunk, 1 << 20, 20), 0);
    n = shoal_sched_next(s, 820, a, 32);
    CHECK_EQ(requests_to(a, n, 2), 1);
    shoal_sched_free(s);
}

/* Peers are filled fastest measured first, one not measured yet before
 * them: with room for two requests, a peer that took 100 ms per chunk gets
 * none while one that took 2 ms can take both, wherever the rotation
 * stands. */
static void test_fastest_first(void)
{
    uint8_t bits[8];
    all_bits(bits, 64);
    for (uint32_t start = 0; start < 2; start++) {
        struct shoal_sched_config cfg;
        shoal_sched_config_default(&cfg);
        cfg.max_inflight = 2;
        struct shoal_sched *s = mk(64, 0, NULL, &cfg);
        struct shoal_sched_action a[32];
        CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
        CHECK_EQ(shoal_sched_peer_add(s, 2, true, 1), 0);
        CHECK_EQ(shoal_sched_peer_bitfield(s, 1, bits, 8), 0);
        CHECK_EQ(shoal_sched_peer_bitfield(s, 2, bits, 8), 0);
        /* Both unmeasured: the rotation picks; measure each once. The
         * peer it picks is the slow one when start is 0, else the fast
         * one, so one of the two runs ends with the rotation at the slow
         * peer. */
        uint64_t t = 0;
        size_t n = shoal_sched_next(s, t, a, 32);
        CHECK_EQ(n, 2);
        CHECK_EQ(a[0].peer, a[1].peer);
        uint64_t first = a[0].peer, other = first == 1 ? 2 : 1;
        uint32_t c0 = a[0].chunk, c1 = a[1].chunk;
        uint64_t d_first = start == 0 ? 100 : 2, d_other = start == 0 ? 2 : 100;
        t += d_first;
        CHECK_EQ(shoal_sched_req_done(s, t, first, c0, 1 << 20, d_first), 0);
        n = shoal_sched_next(s, t, a, 32);
        CHECK_EQ(n, 1);
        CHECK_EQ(a[0].peer, other); /* unmeasured goes first */
        t += d_other;
        CHECK_EQ(shoal_sched_req_done(s, t, other, a[0].chunk, 1 << 20, d_other), 0);
        CHECK_EQ(shoal_sched_req_done(s, t, first, c1, 1 << 20, d_first), 0);
        uint64_t fast = start == 0 ? other : first;
        for (uint32_t round = 0; round < 2; round++) {
            n = shoal_sched_next(s, t, a, 32);
            CHECK_EQ(n, 2);
            for (size_t i = 0; i < n; i++) {
                CHECK_EQ(a[i].peer, fast);
                CHECK_EQ(shoal_sched_req_done(s, t + 2, fast, a[i].chunk, 1 << 20, 2), 0);
            }
            t += 2;
        }
        /* The slow peer's figure ages while only the fast one is asked
         * (here: one pair of requests that takes two seconds); then it is
         * asked first again, as it may have emptied out since. */
        uint64_t slow = fast == 1 ? 2 : 1;
        n = shoal_sched_next(s, t, a, 32);
        CHECK_EQ(n, 2);
        t += 2001;
        for (size_t i = 0; i < n; i++) {
            CHECK_EQ(a[i].peer, fast);
            CHECK_EQ(shoal_sched_req_done(s, t, fast, a[i].chunk, 1 << 20, 2), 0);
        }
        n = shoal_sched_next(s, t, a, 32);
        CHECK(n > 0);
        CHECK_EQ(a[0].peer, slow);
        shoal_sched_free(s);
    }
}

/* The last chunks skip the cross-zone delay: with 33 of 2,048 chunks
 * missing, one that only a cross-zone peer holds waits; with 32 missing it
 * is asked for at once, and so is the next one announced. A release of 64
 * chunks keeps the delay to its last chunk (1/64 of the release). */
static void test_cross_endgame(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.cross_zone_delay_ms = 100;
    struct shoal_sched *s = mk(2048, 0, NULL, &cfg);
    struct shoal_sched_action a[32];
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_add(s, 2, false, 20), 0);
    int bad = 0;
    for (uint32_t c = 0; c < 2048 - 33; c++)
        bad += shoal_sched_chunk_obtained(s, 0, c) != 0;
    CHECK_EQ(shoal_sched_peer_have(s, 2, 2047), 0);
    CHECK_EQ(requests_to(a, shoal_sched_next(s, 1, a, 32), 2), 0);
    CHECK_EQ(shoal_sched_chunk_obtained(s, 2, 2048 - 33), 0);
    size_t n = shoal_sched_next(s, 2, a, 32);
    CHECK_EQ(requests_to(a, n, 2), 1);
    CHECK_EQ(shoal_sched_peer_have(s, 2, 2046), 0);
    n = shoal_sched_next(s, 3, a, 32);
    CHECK_EQ(requests_to(a, n, 2), 1);
    CHECK_EQ(a[0].chunk, 2046);
    shoal_sched_free(s);

    s = mk(64, 0, NULL, &cfg);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_add(s, 2, false, 20), 0);
    for (uint32_t c = 0; c < 62; c++)
        bad += shoal_sched_chunk_obtained(s, 0, c) != 0;
    CHECK_EQ(bad, 0);
    CHECK_EQ(shoal_sched_peer_have(s, 2, 63), 0);
    CHECK_EQ(requests_to(a, shoal_sched_next(s, 1, a, 32), 2), 0);
    CHECK_EQ(shoal_sched_chunk_obtained(s, 2, 62), 0);
    CHECK_EQ(requests_to(a, shoal_sched_next(s, 2, a, 32), 2), 1);
    shoal_sched_free(s);
}

/* No origin lease while peers hold everything; a lease for a chunk nobody
 * holds; the leased span fetched merged; LEASE_DONE at the end. */
static void test_origin_last_resort(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.lease_chunks = 4;
    struct shoal_sched *s = mk(16, 0, NULL, &cfg);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    for (uint32_t c = 0; c < 16; c++)
        if (c < 7 || c > 10)
            CHECK_EQ(shoal_sched_peer_have(s, 1, c), 0);
    struct shoal_sched_action a[32];
    size_t n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_REQUEST), 2);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_REQUEST), 1);
    for (size_t i = 0; i < n; i++)
        if (a[i].type == SHOAL_SCHED_LEASE_REQUEST) {
            CHECK(a[i].chunk >= 7 && a[i].chunk <= 10);
            CHECK_EQ(a[i].count, 4);
        }
    /* Only one lease at a time. */
    n = shoal_sched_next(s, 1, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_REQUEST), 0);
    /* The tracker grants 6..11; 6 and 11 are at a peer: fetch 7..10 only,
     * as one range. */
    CHECK_EQ(shoal_sched_lease_granted(s, 2, 6, 6, 60000), 0);
    n = shoal_sched_next(s, 2, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_ORIGIN_FETCH), 1);
    for (size_t i = 0; i < n; i++)
        if (a[i].type == SHOAL_SCHED_ORIGIN_FETCH) {
            CHECK_EQ(a[i].chunk, 7);
            CHECK_EQ(a[i].count, 4);
        }
    /* Nothing orphaned now: no further lease even after the retry time. */
    n = shoal_sched_next(s, 5000, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_REQUEST), 0);
    /* Each chunk is reported as it lands (the tracker then neither
     * regrants it nor expires a slow lease); the last one is followed by
     * a report of the whole span (6 and 11 are at a peer) and its end. */
    for (uint32_t c = 7; c <= 9; c++) {
        CHECK_EQ(shoal_sched_origin_done(s, 6000, c, true), 0);
        n = shoal_sched_next(s, 6000, a, 32);
        CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_DONE), 1);
        for (size_t i = 0; i < n; i++)
            if (a[i].type == SHOAL_SCHED_LEASE_DONE) {
                CHECK_EQ(a[i].chunk, c);
                CHECK_EQ(a[i].count, 1);
                CHECK_EQ(a[i].peer, 0);
            }
    }
    CHECK_EQ(shoal_sched_origin_done(s, 6000, 10, true), 0);
    n = shoal_sched_next(s, 6001, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_DONE), 3);
    CHECK_EQ(a[0].chunk, 10);
    CHECK_EQ(a[0].count, 1);
    for (size_t i = 1; i < n; i++)
        if (a[i].type == SHOAL_SCHED_LEASE_DONE) {
            CHECK_EQ(a[i].chunk, 6);
            CHECK_EQ(a[i].count, 6);
        }
    CHECK_EQ(shoal_sched_have_count(s), 4);
    shoal_sched_free(s);

    /* An empty grant backs off for lease_retry_ms. */
    s = mk(4, 0, NULL, &cfg);
    n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_REQUEST), 1);
    CHECK_EQ(shoal_sched_lease_granted(s, 10, 0, 0, 0), 0);
    n = shoal_sched_next(s, 11, a, 32);
    CHECK_EQ(n, 0);
    CHECK_EQ(shoal_sched_wakeup(s), 10 + cfg.lease_retry_ms);
    n = shoal_sched_next(s, 10 + cfg.lease_retry_ms, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_REQUEST), 1);
    shoal_sched_free(s);
}

/* The hint of the LEASE_REQUEST in a[0..n), or UINT32_MAX without one. */
static uint32_t lease_hint(const struct shoal_sched_action *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].type == SHOAL_SCHED_LEASE_REQUEST)
            return a[i].chunk;
    return UINT32_MAX;
}

/* A node alone with the origin hints its leases in chunk order, the most
 * urgent file first: the tracker extends a span upwards from the hint, so
 * each lease is a whole span (hints at random each lay just below the
 * last span granted, and the spans were 2 chunks long). */
/* A node alone with the origin, 256 chunks in two files at 0 and 128,
 * leases of 64 chunks, two at most: it asks for a lease at 0, then at 64,
 * and holds both. */
static const uint32_t two_files[2] = {0, 128};

static struct shoal_sched *both_leases_held(struct shoal_sched_config *cfg)
{
    struct shoal_sched_action a[32];
    shoal_sched_config_default(cfg);
    cfg->lease_chunks = 64;
    cfg->max_leases = 2;
    struct shoal_sched *s = mk(256, 2, two_files, cfg);
    size_t n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(lease_hint(a, n), 0);
    CHECK_EQ(shoal_sched_lease_granted(s, 0, 0, 64, 60000), 0);
    n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(lease_hint(a, n), 64);
    CHECK_EQ(shoal_sched_lease_granted(s, 0, 64, 64, 60000), 0);
    return s;
}

static void test_lease_hints_in_order(void)
{
    struct shoal_sched_config cfg;
    struct shoal_sched *s = both_leases_held(&cfg);
    struct shoal_sched_action a[32];
    const uint32_t *ff = two_files;
    size_t n;
    /* Both slots taken; a lease that ends frees one for the next span. */
    n = shoal_sched_next(s, 1, a, 32);
    CHECK_EQ(lease_hint(a, n), UINT32_MAX);
    for (uint32_t c = 0; c < 64; c++)
        CHECK_EQ(shoal_sched_origin_done(s, 2, c, true), 0);
    n = shoal_sched_next(s, 2, a, 32);
    CHECK_EQ(lease_hint(a, n), 128);
    shoal_sched_free(s);

    /* The loader's file goes first, from its first chunk. */
    s = mk(256, 2, ff, &cfg);
    const uint32_t want[1] = {1};
    CHECK_EQ(shoal_sched_want_files(s, want, 1), 0);
    n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(lease_hint(a, n), 128);
    CHECK_EQ(shoal_sched_lease_granted(s, 0, 128, 64, 60000), 0);
    n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(lease_hint(a, n), 192);
    shoal_sched_free(s);
}

/* A loader that comes while both leases hold other chunks (a node leased
 * the release's front at the start) gets a lease for its file at once, one
 * beyond max_leases, hinted at the file's first chunk no peer has; not a
 * second one, and none without a loader (QA N3: its shard left the origin
 * only after those leases, with the fleet's walk). */
static void test_loader_extra_lease(void)
{
    struct shoal_sched_config cfg;
    struct shoal_sched *s = both_leases_held(&cfg);
    struct shoal_sched_action a[32];
    size_t n = shoal_sched_next(s, 1000, a, 32);
    CHECK_EQ(lease_hint(a, n), UINT32_MAX);
    /* A chunk of file 1 arrived from a peer: the hint is the next. */
    CHECK_EQ(shoal_sched_peer_add(s, 7, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 7, 128), 0);
    const uint32_t want[1] = {1};
    CHECK_EQ(shoal_sched_want_files(s, want, 1), 0);
    n = shoal_sched_next(s, 1000, a, 32);
    CHECK_EQ(lease_hint(a, n), 129);
    CHECK_EQ(shoal_sched_lease_granted(s, 1000, 129, 8, 60000), 0);
    n = shoal_sched_next(s, 1000, a, 32);
    size_t fetched = 0;
    for (size_t i = 0; i < n; i++)
        if (a[i].type == SHOAL_SCHED_ORIGIN_FETCH && a[i].chunk == 129)
            fetched = a[i].count;
    CHECK_EQ(fetched, 8);
    /* Three held: no fourth, even for the loader. */
    n = shoal_sched_next(s, 5000, a, 32);
    CHECK_EQ(lease_hint(a, n), UINT32_MAX);
    shoal_sched_free(s);

    /* Without a loader a grant beyond max_leases still fetches nothing. */
    s = mk(256, 2, two_files, &cfg);
    n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(shoal_sched_lease_granted(s, 0, 0, 64, 60000), 0);
    n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(shoal_sched_lease_granted(s, 0, 64, 64, 60000), 0);
    n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(shoal_sched_lease_granted(s, 0, 128, 8, 60000), 0);
    n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_ORIGIN_FETCH), 0);
    shoal_sched_free(s);
}

/* Chunks the LEASE_DONEs in a[0..n) report, as a bit per chunk (< 32);
 * *ends counts the actions that end a lease. */
static uint32_t done_bits(const struct shoal_sched_action *a, size_t n, size_t *ends)
{
    uint32_t bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i].type != SHOAL_SCHED_LEASE_DONE)
            continue;
        if (a[i].peer == SHOAL_SCHED_LEASE_END) {
            ++*ends;
            continue;
        }
        for (uint32_t c = a[i].chunk; c < a[i].chunk + a[i].count; c++)
            bits |= 1u << c;
    }
    return bits;
}

/* A tracker grants a lease again after a reconnect while we still fetch
 * it: that confirms it, nothing is reported before the origin delivers,
 * and a chunk whose origin fetch failed is never reported (the tracker
 * would count it fetched and nobody could lease it for its fetched-ttl).
 * A grant with every slot taken fetches nothing and reports only what the
 * swarm has. */
static void test_lease_regrant(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.lease_chunks = 4;
    cfg.max_leases = 1;
    cfg.origin_delay_ms = 0;
    struct shoal_sched *s = mk(8, 0, NULL, &cfg);
    struct shoal_sched_action a[32];
    size_t n = shoal_sched_next(s, 0, a, 32), ends = 0;
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_REQUEST), 1);
    CHECK_EQ(shoal_sched_lease_granted(s, 1, 0, 4, 60000), 0);
    n = shoal_sched_next(s, 1, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_ORIGIN_FETCH), 1);
    /* The same span again (a reconnect): a confirmation, no LEASE_DONE. */
    CHECK_EQ(shoal_sched_lease_granted(s, 2, 0, 4, 60000), SHOAL_SCHED_LEASE_HELD);
    n = shoal_sched_next(s, 2, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_DONE), 0);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_ORIGIN_FETCH), 0);
    /* Chunks 0 and 3 arrive, 1 and 2 fail: only 0 and 3 are reported
     * (each as it lands, then with the lease's end). */
    CHECK_EQ(shoal_sched_origin_done(s, 3, 0, true), 0);
    CHECK_EQ(shoal_sched_origin_done(s, 3, 1, false), 0);
    CHECK_EQ(shoal_sched_origin_done(s, 3, 2, false), 0);
    n = shoal_sched_next(s, 3, a, 32);
    CHECK_EQ(done_bits(a, n, &ends), 0x1u);
    CHECK_EQ(ends, 0);
    CHECK_EQ(shoal_sched_origin_done(s, 4, 3, true), 0);
    n = shoal_sched_next(s, 4, a, 32);
    CHECK_EQ(done_bits(a, n, &ends), 0x9u);
    CHECK_EQ(ends, 1);
    shoal_sched_free(s);

    /* Every slot taken: a second lease is not fetched; of its chunks only
     * the one a peer holds is reported, not the one we fetch under the
     * first lease nor the orphans. */
    s = mk(8, 0, NULL, &cfg);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 1, 5), 0);
    n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(shoal_sched_lease_granted(s, 1, 0, 4, 60000), 0);
    n = shoal_sched_next(s, 1, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_ORIGIN_FETCH), 1);
    CHECK_EQ(shoal_sched_lease_granted(s, 2, 4, 4, 60000), 0);
    n = shoal_sched_next(s, 2, a, 32);
    ends = 0;
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_ORIGIN_FETCH), 0);
    CHECK_EQ(done_bits(a, n, &ends), 1u << 5);
    CHECK_EQ(ends, 1);
    shoal_sched_free(s);
}

/* A lease the node gave back (the origin refuses it: swarm.c's
 * origin_refused) leaves the scheduler too. Its chunks under our fetches,
 * which a node the origin serves fetched meanwhile, are asked of the peer
 * at once (before, only after each fetch of ours had failed in turn); its
 * slot is free for another lease; nothing of it is reported; a fetch of it
 * that lands anyway still counts; and the same span granted again is a
 * new lease, fetched, not taken for the old one confirmed. */
static void test_lease_drop(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.lease_chunks = 4;
    cfg.max_leases = 1;
    cfg.origin_delay_ms = 0;
    struct shoal_sched *s = mk(8, 0, NULL, &cfg);
    struct shoal_sched_action a[32];
    size_t n, ends = 0;
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_REQUEST), 1);
    CHECK_EQ(shoal_sched_lease_granted(s, 1, 0, 4, 60000), 0);
    n = shoal_sched_next(s, 1, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_ORIGIN_FETCH), 1);
    CHECK_EQ(shoal_sched_lease_drop(s, 2, 4, 4), SHOAL_ENOTFOUND);
    CHECK_EQ(shoal_sched_lease_drop(s, 2, 6, 4), SHOAL_EBADMSG);
    /* Refused: given back, and another node fetched 0..3 since. */
    CHECK_EQ(shoal_sched_lease_drop(s, 2, 0, 4), 0);
    for (uint32_t c = 0; c < 4; c++)
        CHECK_EQ(shoal_sched_peer_have(s, 1, c), 0);
    n = shoal_sched_next(s, 3, a, 32);
    CHECK(count_type(a, n, SHOAL_SCHED_REQUEST) >= 1);
    for (size_t i = 0; i < n; i++)
        if (a[i].type == SHOAL_SCHED_REQUEST)
            CHECK(a[i].chunk < 4);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_DONE), 0);
    /* 4..7 are orphans, and the slot is free to lease them. */
    CHECK_EQ(lease_hint(a, n), 4);
    /* Our fetches end: the failed ones change nothing, one that landed
     * after all is held; none is reported. */
    CHECK_EQ(shoal_sched_origin_done(s, 4, 0, false), 0);
    CHECK_EQ(shoal_sched_origin_done(s, 4, 1, false), 0);
    CHECK_EQ(shoal_sched_origin_done(s, 4, 2, false), 0);
    CHECK_EQ(shoal_sched_origin_done(s, 4, 3, true), 0);
    CHECK_EQ(shoal_sched_have_count(s), 1);
    n = shoal_sched_next(s, 4, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_DONE), 0);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_ORIGIN_FETCH), 0);
    shoal_sched_free(s);

    /* Dropped before its fetch was taken: the fetch is withdrawn, and the
     * span granted again is a new lease, fetched. */
    s = mk(8, 0, NULL, &cfg);
    n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(shoal_sched_lease_granted(s, 1, 0, 4, 60000), 0);
    CHECK_EQ(shoal_sched_lease_drop(s, 1, 0, 4), 0);
    n = shoal_sched_next(s, 1, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_ORIGIN_FETCH), 0);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_DONE), 0);
    CHECK(lease_hint(a, n) != UINT32_MAX);
    CHECK_EQ(shoal_sched_lease_granted(s, 2, 0, 4, 60000), 0);
    n = shoal_sched_next(s, 2, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_ORIGIN_FETCH), 1);
    for (uint32_t c = 0; c < 4; c++)
        CHECK_EQ(shoal_sched_origin_done(s, 3, c, true), 0);
    n = shoal_sched_next(s, 3, a, 32);
    CHECK_EQ(done_bits(a, n, &ends), 0xfu);
    CHECK_EQ(ends, 1);
    shoal_sched_free(s);
}

/* Local leases (a node without a tracker leases to itself) may overlap: a
 * chunk both spans hold came from the first. Each lease ends when the last
 * chunk of its own span lands, not before, and its slot is then free: the
 * span granted again is a new lease, not a confirmation of a lease that
 * never ended. */
static void test_lease_overlap(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.lease_chunks = 4;
    cfg.max_leases = 2;
    cfg.origin_delay_ms = 0;
    struct shoal_sched *s = mk(12, 0, NULL, &cfg);
    struct shoal_sched_action a[32];
    size_t ends = 0;
    (void)shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(shoal_sched_lease_granted(s, 1, 8, 4, 60000), 0);
    CHECK_EQ(shoal_sched_lease_granted(s, 1, 0, 4, 60000), 0);
    for (uint32_t c = 8; c < 12; c++)
        CHECK_EQ(shoal_sched_origin_done(s, 2, c, true), 0);
    (void)shoal_sched_next(s, 2, a, 32);
    /* The freed first slot takes [2, 6): chunks 2 and 3 are [0, 4)'s. */
    CHECK_EQ(shoal_sched_lease_granted(s, 3, 2, 4, 60000), 0);
    size_t n = shoal_sched_next(s, 3, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_ORIGIN_FETCH), 1);
    CHECK_EQ(shoal_sched_origin_done(s, 4, 2, true), 0);
    CHECK_EQ(shoal_sched_origin_done(s, 4, 3, true), 0);
    n = shoal_sched_next(s, 4, a, 32);
    CHECK_EQ(done_bits(a, n, &ends), 0xcu);
    CHECK_EQ(ends, 0); /* 4 and 5 are still coming */
    CHECK_EQ(shoal_sched_origin_done(s, 5, 0, true), 0);
    CHECK_EQ(shoal_sched_origin_done(s, 5, 1, false), 0);
    n = shoal_sched_next(s, 5, a, 32);
    CHECK_EQ(done_bits(a, n, &ends), 0xdu);
    CHECK_EQ(ends, 1); /* [0, 4) */
    CHECK_EQ(shoal_sched_origin_done(s, 6, 4, true), 0);
    CHECK_EQ(shoal_sched_origin_done(s, 6, 5, true), 0);
    ends = 0;
    n = shoal_sched_next(s, 6, a, 32);
    CHECK_EQ(done_bits(a, n, &ends), 0x3cu);
    CHECK_EQ(ends, 1); /* [2, 6) */
    /* Chunk 1 failed: [0, 4) granted again fetches it. */
    CHECK_EQ(shoal_sched_lease_granted(s, 7, 0, 4, 60000), 0);
    n = shoal_sched_next(s, 7, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_ORIGIN_FETCH), 1);
    shoal_sched_free(s);
}

/* Chunks of two adjacent leases landing together are reported one run
 * per lease: a run over both fit neither at the transport, which dropped
 * it (found in review). */
static void test_lease_done_runs(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.lease_chunks = 4;
    cfg.max_leases = 2;
    cfg.origin_delay_ms = 0;
    struct shoal_sched *s = mk(8, 0, NULL, &cfg);
    struct shoal_sched_action a[32];
    (void)shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(shoal_sched_lease_granted(s, 1, 0, 4, 60000), 0);
    CHECK_EQ(shoal_sched_lease_granted(s, 1, 4, 4, 60000), 0);
    (void)shoal_sched_next(s, 1, a, 32);
    CHECK_EQ(shoal_sched_origin_done(s, 2, 2, true), 0);
    CHECK_EQ(shoal_sched_origin_done(s, 2, 3, true), 0);
    CHECK_EQ(shoal_sched_origin_done(s, 2, 4, true), 0);
    CHECK_EQ(shoal_sched_origin_done(s, 2, 5, true), 0);
    size_t n = shoal_sched_next(s, 2, a, 32);
    size_t runs = 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i].type != SHOAL_SCHED_LEASE_DONE || a[i].peer == SHOAL_SCHED_LEASE_END)
            continue;
        runs++;
        CHECK(a[i].chunk + a[i].count <= 4 || a[i].chunk >= 4);
    }
    CHECK_EQ(runs, 2);
    shoal_sched_free(s);
}

/* With every chunk requested, an idle peer duplicates an outstanding
 * request; the first arrival cancels the other copy. */
static void test_endgame(void)
{
    struct shoal_sched *s = mk(3, 0, NULL, NULL);
    uint8_t all[1];
    all_bits(all, 3);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 1, all, 1), 0);
    struct shoal_sched_action a[32];
    size_t n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(n, 2);
    CHECK_EQ(shoal_sched_peer_add(s, 2, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 2, all, 1), 0);
    n = shoal_sched_next(s, 1, a, 32);
    /* Chunk left over goes to peer 2, and its second slot duplicates one of
     * peer 1's requests. */
    CHECK_EQ(n, 2);
    CHECK_EQ(a[0].peer, 2);
    CHECK_EQ(a[1].peer, 2);
    uint32_t dup = a[1].chunk;
    CHECK(dup != a[0].chunk);
    CHECK_EQ(shoal_sched_inflight(s), 4);
    CHECK_EQ(shoal_sched_req_done(s, 5, 2, dup, 1 << 20, 5), 0);
    n = shoal_sched_next(s, 5, a, 32);
    CHECK(n >= 1);
    CHECK_EQ(a[0].type, SHOAL_SCHED_CANCEL);
    CHECK_EQ(a[0].peer, 1);
    CHECK_EQ(a[0].chunk, dup);
    shoal_sched_free(s);
}

/* A one-chunk transfer (a small delta: the rest came from the cache) is
 * all endgame: a second peer is not asked for the chunk as soon as the first
 * one is (QA F8: most nodes received it twice), only once that request is
 * late; shoal_sched_wakeup says when. Once a request time is measured, the
 * wait follows it. */
static void test_endgame_small(void)
{
    struct shoal_sched *s = mk(8, 0, NULL, NULL);
    uint8_t all[1];
    all_bits(all, 8);
    for (uint32_t c = 0; c < 7; c++)
        CHECK_EQ(shoal_sched_chunk_obtained(s, 0, c), 0);
    for (uint64_t p = 1; p <= 2; p++) {
        CHECK_EQ(shoal_sched_peer_add(s, p, true, 1), 0);
        CHECK_EQ(shoal_sched_peer_bitfield(s, p, all, 1), 0);
    }
    struct shoal_sched_action a[32];
    size_t n = shoal_sched_next(s, 100, a, 32);
    REQUIRE(n == 1 && a[0].type == SHOAL_SCHED_REQUEST && a[0].chunk == 7);
    uint64_t first = a[0].peer;
    /* Before: the other peer got a copy right away. */
    CHECK_EQ(count_type(a, shoal_sched_next(s, 101, a, 32), SHOAL_SCHED_REQUEST), 0u);
    CHECK_EQ(count_type(a, shoal_sched_next(s, 300, a, 32), SHOAL_SCHED_REQUEST), 0u);
    uint64_t w = shoal_sched_wakeup(s);
    CHECK(w > 300 && w <= 100 + 1000);
    n = shoal_sched_next(s, w, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_REQUEST), 1u);
    CHECK(n >= 1 && a[0].peer != first && a[0].chunk == 7);
    shoal_sched_free(s);

    /* Three chunks missing: copies at once, as before (test_endgame). */
    s = mk(8, 0, NULL, NULL);
    for (uint32_t c = 0; c < 5; c++)
        CHECK_EQ(shoal_sched_chunk_obtained(s, 0, c), 0);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 1, all, 1), 0);
    n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_REQUEST), 2u);
    CHECK_EQ(shoal_sched_peer_add(s, 2, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 2, all, 1), 0);
    n = shoal_sched_next(s, 1, a, 32);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_REQUEST), 2u);
    shoal_sched_free(s);
}

/* A busy peer that names when to ask again (a REJECT's retry_after_ms) is
 * asked nothing before then while the other holder is kept busy; a wish
 * beyond SHOAL_SCHED_RETRY_AFTER_MAX_MS is cut to it, and none (0) is
 * busy_backoff_ms, as shoal_sched_req_failed. */
static void test_retry_after(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.min_depth = cfg.max_depth = 1;
    cfg.busy_backoff_ms = 10;
    struct shoal_sched *s = mk(200, 0, NULL, &cfg);
    uint8_t all[25];
    all_bits(all, 200);
    for (uint64_t p = 1; p <= 2; p++) {
        CHECK_EQ(shoal_sched_peer_add(s, p, true, 1), 0);
        CHECK_EQ(shoal_sched_peer_bitfield(s, p, all, sizeof all), 0);
    }
    struct shoal_sched_action a[8];
    size_t n = shoal_sched_next(s, 10, a, 8);
    REQUIRE(count_type(a, n, SHOAL_SCHED_REQUEST) == 2u);
    uint32_t c1 = a[0].peer == 1 ? a[0].chunk : a[1].chunk;
    uint32_t c2 = a[0].peer == 2 ? a[0].chunk : a[1].chunk;
    /* Peer 1: busy, ask again in 2 s. Peer 2 serves everything meanwhile. */
    CHECK_EQ(shoal_sched_req_busy(s, 12, 1, c1, 2000), 0);
    CHECK_EQ(shoal_sched_req_busy(s, 12, 1, c1, 2000), SHOAL_ENOTFOUND);
    uint64_t t = 13;
    size_t to2 = 0;
    for (; t < 2012; t += 97) {
        CHECK_EQ(shoal_sched_req_done(s, t, 2, c2, 1 << 20, 1), 0);
        n = shoal_sched_next(s, t, a, 8);
        for (size_t i = 0; i < n; i++) {
            if (a[i].type != SHOAL_SCHED_REQUEST)
                continue;
            CHECK_EQ(a[i].peer, 2); /* never peer 1 before 2012 */
            c2 = a[i].chunk;
            to2++;
        }
    }
    CHECK(to2 >= 20);
    n = shoal_sched_next(s, 2012, a, 8);
    REQUIRE(n == 1 && a[0].type == SHOAL_SCHED_REQUEST && a[0].peer == 1);
    /* A wish of 49 days: 5 s at most. */
    c1 = a[0].chunk;
    CHECK_EQ(shoal_sched_req_busy(s, 2013, 1, c1, UINT32_MAX), 0);
    CHECK_EQ(count_type(a, shoal_sched_next(s, 2013 + SHOAL_SCHED_RETRY_AFTER_MAX_MS - 1, a, 8),
                        SHOAL_SCHED_REQUEST), 0u);
    n = shoal_sched_next(s, 2013 + SHOAL_SCHED_RETRY_AFTER_MAX_MS, a, 8);
    REQUIRE(n == 1 && a[0].type == SHOAL_SCHED_REQUEST && a[0].peer == 1);
    /* No wish: the configured back-off. */
    t = 2013 + SHOAL_SCHED_RETRY_AFTER_MAX_MS;
    CHECK_EQ(shoal_sched_req_busy(s, t, 1, a[0].chunk, 0), 0);
    CHECK_EQ(count_type(a, shoal_sched_next(s, t + 9, a, 8), SHOAL_SCHED_REQUEST), 0u);
    n = shoal_sched_next(s, t + 10, a, 8);
    CHECK(n == 1 && a[0].type == SHOAL_SCHED_REQUEST && a[0].peer == 1);
    shoal_sched_free(s);
}

/* A failed request or a lost peer makes its chunks requestable elsewhere;
 * a busy peer is left alone for a while. */
static void test_failures(void)
{
    struct shoal_sched *s = mk(2, 0, NULL, NULL);
    uint8_t all[1];
    all_bits(all, 2);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 1, all, 1), 0);
    struct shoal_sched_action a[8];
    size_t n = shoal_sched_next(s, 0, a, 8);
    CHECK_EQ(n, 2);
    CHECK_EQ(shoal_sched_req_failed(s, 1, 1, 0, true), 0);
    CHECK_EQ(shoal_sched_req_failed(s, 1, 1, 0, true), SHOAL_ENOTFOUND);
    n = shoal_sched_next(s, 2, a, 8);
    CHECK_EQ(n, 0); /* busy back-off */
    n = shoal_sched_next(s, shoal_sched_wakeup(s), a, 8);
    CHECK_EQ(n, 1);
    CHECK_EQ(a[0].chunk, 0);
    CHECK_EQ(shoal_sched_peer_add(s, 2, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 2, all, 1), 0);
    CHECK_EQ(shoal_sched_peer_remove(s, 1), 0);
    CHECK_EQ(shoal_sched_peer_remove(s, 1), SHOAL_ENOTFOUND);
    n = shoal_sched_next(s, 300, a, 8);
    CHECK_EQ(n, 2);
    CHECK_EQ(a[0].peer, 2);
    CHECK_EQ(a[1].peer, 2);
    CHECK_EQ(shoal_sched_req_done(s, 301, 2, 0, 100, 1), 0);
    CHECK_EQ(shoal_sched_req_done(s, 301, 2, 1, 100, 1), 0);
    CHECK(shoal_sched_complete(s));
    n = shoal_sched_next(s, 302, a, 8);
    CHECK_EQ(n, 0);
    shoal_sched_free(s);
}

/* Equally fast peers (none measured yet) take turns at the first request,
 * and still do after one of them leaves and another takes its place. */
static void test_turns(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.max_peers = 4;
    cfg.max_inflight = 1;
    struct shoal_sched *s = mk(64, 0, NULL, &cfg);
    uint8_t bits[8];
    all_bits(bits, 64);
    for (uint64_t p = 10; p < 14; p++) {
        CHECK_EQ(shoal_sched_peer_add(s, p, true, 1), 0);
        CHECK_EQ(shoal_sched_peer_bitfield(s, p, bits, sizeof(bits)), 0);
    }
    const uint64_t want[16] = {10, 11, 12, 13, 10, 11, 12, 13, 10, 21, 12, 13, 10, 21, 12, 13};
    for (uint64_t t = 0; t < 16; t++) {
        if (t == 8) {
            CHECK_EQ(shoal_sched_peer_remove(s, 11), 0);
            CHECK_EQ(shoal_sched_peer_add(s, 21, true, 1), 0);
            CHECK_EQ(shoal_sched_peer_bitfield(s, 21, bits, sizeof(bits)), 0);
        }
        struct shoal_sched_action a[8];
        size_t n = shoal_sched_next(s, t, a, 8);
        REQUIRE(n == 1 && a[0].type == SHOAL_SCHED_REQUEST);
        CHECK_EQ(a[0].peer, want[t]);
        /* A refusal that is not busy measures nothing: all stay equal. */
        CHECK_EQ(shoal_sched_req_failed(s, t, a[0].peer, a[0].chunk, false), 0);
    }
    shoal_sched_free(s);
}

/* The pipeline to a peer deepens with its bandwidth-delay product. */
static void test_pipeline_depth(void)
{
    uint32_t nch = 1000;
    struct shoal_sched *s = mk(nch, 0, NULL, NULL);
    uint8_t all[125];
    all_bits(all, nch);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 50), 0);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 1, all, sizeof(all)), 0);
    struct shoal_sched_action a[64];
    size_t n = shoal_sched_next(s, 0, a, 64);
    CHECK_EQ(n, 2);
    /* 1 MiB in 10 ms = 100 MiB/s; x 50 ms RTT = 5 chunks, x 1.25 and
     * rounded up 7, + 1 in flight. */
    CHECK_EQ(shoal_sched_req_done(s, 10, 1, a[0].chunk, 1 << 20, 10), 0);
    n = shoal_sched_next(s, 10, a, 64);
    CHECK_EQ(n + 1, 8);
    shoal_sched_free(s);
}

/* A peer that sends one chunk every 10 ms (100 MiB/s) across a 50 ms round
 * trip, taking requests in order: each waits there for those ahead of it,
 * so a request's own bytes over its own duration is the rate over the
 * depth, and a depth sized from that stayed at 2: the peer sent two chunks
 * per 60 ms round and waited the rest. Sized from what the peer delivers,
 * the pipeline grows until it covers the round trip and the peer sends
 * without a gap, and it stops there: the wait in the queue does not deepen
 * it further. With |rtt_arg| 0 the caller measures no round trip: the
 * scheduler finds it from a request that went alone. */
enum { NCH = 1000, RTT = 50, SEND = 10, LEN = 1 << 20 };

static void depth_delivery_rate(uint32_t rtt_arg)
{
    struct shoal_sched *s = mk(NCH, 0, NULL, NULL);
    uint8_t all[NCH / 8];
    all_bits(all, NCH);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, rtt_arg), 0);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 1, all, sizeof(all)), 0);
    /* Requests in flight, oldest first, with when each was sent and when
     * its chunk arrives. */
    struct flight {
        uint32_t chunk;
        uint64_t sent, done;
    } q[64];
    size_t qh = 0, qn = 0;
    uint64_t now = 0, peer_free = 0, last = 0, gap = 0;
    uint32_t most = 0;
    struct shoal_sched_action a[64];
    for (int round = 0; round < 300; round++) {
        size_t n = shoal_sched_next(s, now, a, 64);
        for (size_t i = 0; i < n; i++) {
            if (a[i].type != SHOAL_SCHED_REQUEST)
                continue;
            REQUIRE(qn < 64);
            uint64_t start = now + RTT / 2 > peer_free ? now + RTT / 2 : peer_free;
            peer_free = start + SEND;
            q[(qh + qn++) % 64] = (struct flight){a[i].chunk, now, peer_free + RTT / 2};
        }
        if (round >= 200 && shoal_sched_inflight(s) > most)
            most = shoal_sched_inflight(s);
        REQUIRE(qn > 0);
        struct flight r = q[qh];
        qh = (qh + 1) % 64;
        qn--;
        now = r.done;
        if (round >= 200 && now - last > gap)
            gap = now - last;
        last = now;
        CHECK_EQ(shoal_sched_req_done(s, now, 1, r.chunk, LEN, now - r.sent), 0);
    }
    /* Arrivals SEND apart: the peer never waited for a request. It needs
     * (RTT + SEND) / SEND = 6 in flight; DEPTH_GAIN makes it 8. */
    CHECK_EQ(gap, SEND);
    CHECK(most >= 6);
    CHECK(most <= 8);
    shoal_sched_free(s);
}

static void test_depth_delivery_rate(void)
{
    depth_delivery_rate(RTT);
    depth_delivery_rate(0);
}

/* With max_inflight, no more requests than that are out at once, however
 * many peers have room; a finished one frees a slot. */
static void test_inflight_cap(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.max_inflight = 3;
    struct shoal_sched *s = mk(64, 0, NULL, &cfg);
    uint8_t all[8];
    all_bits(all, 64);
    for (uint64_t p = 1; p <= 4; p++) {
        CHECK_EQ(shoal_sched_peer_add(s, p, true, 1), 0);
        CHECK_EQ(shoal_sched_peer_bitfield(s, p, all, 8), 0);
    }
    struct shoal_sched_action a[64];
    size_t n = shoal_sched_next(s, 0, a, 64);
    CHECK_EQ(n, 3);
    CHECK(!shoal_sched_has_room(s));
    CHECK_EQ(shoal_sched_next(s, 1, a, 64), 0);
    CHECK_EQ(shoal_sched_req_done(s, 2, a[0].peer, a[0].chunk, 1 << 20, 2), 0);
    CHECK(shoal_sched_has_room(s));
    n = shoal_sched_next(s, 2, a, 64);
    CHECK_EQ(n, 1);
    CHECK_EQ(shoal_sched_inflight(s), 3);
    shoal_sched_free(s);
}

/* While a loader waits for a file, the cap gives way to that file's chunks:
 * they go out at once instead of behind the requests already in flight;
 * the rest of the release stays capped. */
static void test_inflight_cap_loader(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.max_inflight = 3;
    cfg.min_depth = cfg.max_depth = 4; /* room for 16 in the peers' pipelines */
    uint32_t ff[2] = {0, 56};
    struct shoal_sched *s = mk(64, 2, ff, &cfg);
    uint8_t all[8];
    all_bits(all, 64);
    for (uint64_t p = 1; p <= 4; p++) {
        CHECK_EQ(shoal_sched_peer_add(s, p, true, 1), 0);
        CHECK_EQ(shoal_sched_peer_bitfield(s, p, all, 8), 0);
    }
    struct shoal_sched_action a[64];
    CHECK_EQ(shoal_sched_next(s, 0, a, 64), 3);
    uint32_t out = 0; /* file 1's chunks in flight, one bit each */
    for (size_t i = 0; i < 3; i++)
        if (a[i].chunk >= 56)
            out |= 1u << (a[i].chunk - 56);
    uint32_t want = 1;
    CHECK_EQ(shoal_sched_want_files(s, &want, 1), 0);
    size_t n = shoal_sched_next(s, 1, a, 64);
    CHECK(n > 0);
    CHECK(shoal_sched_inflight(s) > 3);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(a[i].type, SHOAL_SCHED_REQUEST);
        CHECK(a[i].chunk >= 56);
        if (a[i].chunk >= 56)
            out |= 1u << (a[i].chunk - 56);
    }
    /* The whole file is out, and nothing else past the cap: nothing more
     * until the requests in flight fall below it again. */
    CHECK_EQ(out, 0xffu);
    CHECK_EQ(shoal_sched_next(s, 2, a, 64), 0);
    shoal_sched_free(s);
}

/* A node with an origin delay leaves the origin alone that long after it
 * starts, then leases like any other. */
static void test_origin_delay(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.origin_delay_ms = 1000;
    struct shoal_sched *s = mk(8, 0, NULL, &cfg);
    struct shoal_sched_action a[8];
    CHECK_EQ(shoal_sched_next(s, 5000, a, 8), 0);
    CHECK_EQ(shoal_sched_wakeup(s), 6000);
    CHECK_EQ(shoal_sched_next(s, 5999, a, 8), 0);
    size_t n = shoal_sched_next(s, 6000, a, 8);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_REQUEST), 1);
    shoal_sched_free(s);
}

/* 16 chunks, origin leases held off; a same-zone peer (1) holding chunk
 * 15 and a cross-zone one (2, 10 ms away) holding chunks 0-7. */
static struct shoal_sched *import_fleet(struct shoal_sched_config *cfg)
{
    cfg->cross_zone_delay_ms = 100;
    cfg->min_depth = cfg->max_depth = 8;
    cfg->origin_delay_ms = 1000000; /* no leases in the way */
    struct shoal_sched *s = mk(16, 0, NULL, cfg);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_add(s, 2, false, 10), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 1, 15), 0);
    for (uint32_t c = 0; c < 8; c++)
        CHECK_EQ(shoal_sched_peer_have(s, 2, c), 0);
    return s;
}

/* An importer fetches its share of the chunks that only cross-zone peers
 * hold at once, ahead of the cross-zone delay; the rest still wait. */
static void test_import_share(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.max_inflight = 0; /* no global cap: every peer's pipeline fills */
    cfg.import_mod = 2;
    cfg.import_rem = 1;
    struct shoal_sched *s = import_fleet(&cfg);
    struct shoal_sched_action a[32];
    size_t n = shoal_sched_next(s, 0, a, 32);
    int cross = 0, same = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(a[i].type, SHOAL_SCHED_REQUEST);
        if (a[i].peer == 2) {
            CHECK_EQ(a[i].chunk % 2, 1);
            cross++;
        } else {
            CHECK_EQ(a[i].chunk, 15);
            same++;
        }
    }
    CHECK_EQ(cross, 4); /* 1, 3, 5, 7 */
    CHECK_EQ(same, 1);
    /* Cross-zone picks came first: they are the zone's only source. */
    CHECK_EQ(a[0].peer, 2);
    /* The even ones after the delay (plus jitter), as fallbacks: one in
     * flight at a time, beside the importer's own share. */
    n = shoal_sched_next(s, 50, a, 32);
    CHECK_EQ(n, 0);
    n = shoal_sched_next(s, 200, a, 32);
    CHECK_EQ(n, 1);
    CHECK_EQ(a[0].peer, 2);
    CHECK_EQ(a[0].chunk % 2, 0);
    uint32_t even = a[0].chunk;
    CHECK_EQ(shoal_sched_req_done(s, 210, 2, even, 1 << 20, 10), 0);
    n = shoal_sched_next(s, 210, a, 32);
    CHECK_EQ(n, 1);
    CHECK_EQ(a[0].chunk % 2, 0);
    CHECK(a[0].chunk != even);
    shoal_sched_free(s);

    cfg.import_rem = 2; /* must be below import_mod */
    struct shoal_sched_release rel = {.nchunks = 4};
    CHECK_EQ(shoal_sched_new(&s, &cfg, &rel), -EINVAL);
}

/* The one mapping from a tracker's role to scheduler knobs. */
static void test_role_fleet(void)
{
    struct shoal_sched_config base;
    shoal_sched_config_default(&base);
    base.origin_delay_ms = 1000;
    base.max_leases = 2;
    base.max_inflight = 8;
    struct shoal_sched_role r;
    shoal_sched_role_fleet(&r, &base, true, 0, 0);
    CHECK(r.origin_delay_ms == 0 && r.max_leases == 2 && r.max_inflight == 8 &&
          r.import_mod == 0 && r.import_rem == 0);
    shoal_sched_role_fleet(&r, &base, false, 0, 0);
    CHECK(r.origin_delay_ms == 1000 && r.max_leases == 1 && r.max_inflight == 8 &&
          r.import_mod == 0);
    shoal_sched_role_fleet(&r, &base, false, 4, 1);
    CHECK(r.origin_delay_ms == 1000 && r.max_leases == 1 && r.max_inflight == 24 &&
          r.import_mod == 4 && r.import_rem == 1);
    shoal_sched_role_fleet(&r, &base, true, 4, 3);
    CHECK(r.origin_delay_ms == 0 && r.max_leases == 2 && r.max_inflight == 24 &&
          r.import_mod == 4 && r.import_rem == 3);
    base.max_inflight = 0; /* uncapped stays uncapped */
    shoal_sched_role_fleet(&r, &base, false, 4, 1);
    CHECK_EQ(r.max_inflight, 0);
}

/* The origin delay moves with the role, also after it started counting:
 * told it is a fetcher during the wait, a node leases at once; told to
 * wait before its first lease, it waits from its start. */
static void test_role_origin_delay(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.origin_delay_ms = 1000;
    struct shoal_sched *s = mk(8, 0, NULL, &cfg);
    struct shoal_sched_action a[8];
    CHECK_EQ(shoal_sched_next(s, 5000, a, 8), 0);
    CHECK_EQ(shoal_sched_wakeup(s), 6000);
    struct shoal_sched_role r = {.origin_delay_ms = 0, .max_leases = 1};
    CHECK_EQ(shoal_sched_set_role(s, &r), 0);
    size_t n = shoal_sched_next(s, 5100, a, 8);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_REQUEST), 1);
    shoal_sched_free(s);

    cfg.origin_delay_ms = 0;
    s = mk(8, 0, NULL, &cfg);
    CHECK_EQ(shoal_sched_next(s, 0, a, 0), 0); /* started, nothing asked yet */
    r.origin_delay_ms = 1000;
    CHECK_EQ(shoal_sched_set_role(s, &r), 0);
    CHECK_EQ(shoal_sched_next(s, 500, a, 8), 0);
    CHECK_EQ(shoal_sched_wakeup(s), 1000);
    n = shoal_sched_next(s, 1000, a, 8);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_REQUEST), 1);
    shoal_sched_free(s);
}

/* Grants |first|..+|count| and returns how many chunks the scheduler then
 * fetches from the origin; adds the leases it asks for next to |*asked|. */
static uint32_t grant(struct shoal_sched *s, uint64_t now, uint32_t first, uint32_t count,
                      size_t *asked)
{
    struct shoal_sched_action a[8];
    CHECK_EQ(shoal_sched_lease_granted(s, now, first, count, now + 60000), 0);
    size_t n = shoal_sched_next(s, now, a, 8);
    uint32_t fetch = 0;
    for (size_t i = 0; i < n; i++)
        if (a[i].type == SHOAL_SCHED_ORIGIN_FETCH)
            fetch += a[i].count;
    *asked += count_type(a, n, SHOAL_SCHED_LEASE_REQUEST);
    return fetch;
}

/* More leases at once after a raise; after a cut, the leases held run to
 * their end (each ends with LEASE_DONE) and no new one is asked for until
 * fewer are held than the new limit. */
static void test_role_leases(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.lease_chunks = 2;
    cfg.max_leases = 1; /* one lease held to begin with; the role raises it */
    struct shoal_sched *s = mk(8, 0, NULL, &cfg);
    struct shoal_sched_action a[8];
    size_t n = shoal_sched_next(s, 0, a, 8);
    size_t asked = 0;
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_REQUEST), 1);
    CHECK_EQ(grant(s, 0, 0, 2, &asked), 2);
    CHECK_EQ(asked, 0);
    n = shoal_sched_next(s, 1000, a, 8);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_REQUEST), 0);

    struct shoal_sched_role r = {.max_leases = 3};
    CHECK_EQ(shoal_sched_set_role(s, &r), 0);
    n = shoal_sched_next(s, 1000, a, 8);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_REQUEST), 1);
    CHECK_EQ(grant(s, 1000, 2, 2, &asked), 2);
    CHECK_EQ(asked, 1); /* the third, right away */
    CHECK_EQ(grant(s, 1000, 4, 2, &asked), 2);
    CHECK_EQ(asked, 1);
    n = shoal_sched_next(s, 2000, a, 8);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_LEASE_REQUEST), 0);

    r.max_leases = 1;
    CHECK_EQ(shoal_sched_set_role(s, &r), 0);
    /* Every chunk of the three leases arrives: three leases end, and only
     * then (none held) a lease for the rest. */
    size_t done = 0;
    asked = 0;
    for (uint32_t c = 0; c < 6; c++) {
        CHECK_EQ(shoal_sched_origin_done(s, 3000, c, true), 0);
        n = shoal_sched_next(s, 3000, a, 8);
        for (size_t i = 0; i < n; i++)
            done += a[i].type == SHOAL_SCHED_LEASE_DONE && a[i].peer == SHOAL_SCHED_LEASE_END;
        asked += count_type(a, n, SHOAL_SCHED_LEASE_REQUEST);
        if (c < 5)
            CHECK_EQ(asked, 0);
    }
    CHECK_EQ(done, 3);
    CHECK_EQ(asked, 1);
    CHECK_EQ(grant(s, 3000, 6, 2, &asked), 2);
    shoal_sched_free(s);
}

/* Given an import share mid-download, a node fetches its share of the
 * cross-zone-only chunks at once instead of after the delay; a lower
 * in-flight cap holds new requests until enough have finished. */
static void test_role_import_and_inflight(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    struct shoal_sched *s = import_fleet(&cfg);
    struct shoal_sched_action a[32];
    size_t n = shoal_sched_next(s, 0, a, 32);
    CHECK_EQ(n, 1);
    CHECK(a[0].peer == 1 && a[0].chunk == 15);
    CHECK_EQ(shoal_sched_next(s, 10, a, 32), 0);

    struct shoal_sched_role r = {.origin_delay_ms = 1000000, .import_mod = 2, .import_rem = 1};
    CHECK_EQ(shoal_sched_set_role(s, &r), 0);
    n = shoal_sched_next(s, 10, a, 32);
    CHECK_EQ(n, 4);
    for (size_t i = 0; i < n; i++)
        CHECK(a[i].type == SHOAL_SCHED_REQUEST && a[i].peer == 2 && a[i].chunk % 2 == 1);
    CHECK_EQ(shoal_sched_inflight(s), 5);

    /* Cap 3 with 5 out: the even chunks wait even once the delay is over,
     * until three requests finished (then 2 out, one slot free). */
    r.max_inflight = 3;
    CHECK_EQ(shoal_sched_set_role(s, &r), 0);
    CHECK(!shoal_sched_has_room(s));
    CHECK_EQ(shoal_sched_next(s, 300, a, 32), 0);
    CHECK_EQ(shoal_sched_req_done(s, 300, 2, 1, 1 << 20, 10), 0);
    CHECK_EQ(shoal_sched_req_done(s, 300, 2, 3, 1 << 20, 10), 0);
    CHECK_EQ(shoal_sched_next(s, 300, a, 32), 0);
    CHECK_EQ(shoal_sched_req_done(s, 300, 2, 5, 1 << 20, 10), 0);
    n = shoal_sched_next(s, 300, a, 32);
    CHECK_EQ(n, 1);
    CHECK(a[0].peer == 2 && a[0].chunk % 2 == 0);

    /* Bad roles change nothing. */
    struct shoal_sched_role bad = {.import_mod = 2, .import_rem = 2};
    CHECK_EQ(shoal_sched_set_role(s, &bad), -EINVAL);
    bad = (struct shoal_sched_role){.import_rem = 1};
    CHECK_EQ(shoal_sched_set_role(s, &bad), -EINVAL);
    bad = (struct shoal_sched_role){.max_leases = SHOAL_SCHED_LEASES_MAX + 1};
    CHECK_EQ(shoal_sched_set_role(s, &bad), -EINVAL);
    CHECK(!shoal_sched_has_room(s));
    shoal_sched_free(s);
}

/* A peer whose only chunks we need hide among many equally rare ones held
 * by another peer still gets asked for them: the bounded walk falls back
 * to an exact scan instead of writing the peer off. The slot API reports
 * whether a HAVE can lead to a request. */
static void test_scan_and_slot_have(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.min_depth = cfg.max_depth = 2;
    struct shoal_sched *s = mk(2000, 0, NULL, &cfg);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_add(s, 2, true, 1), 0);
    int s1 = shoal_sched_peer_slot(s, 1), s2 = shoal_sched_peer_slot(s, 2);
    CHECK(s1 >= 0 && s2 >= 0 && s1 != s2);
    CHECK_EQ(shoal_sched_peer_slot(s, 9), SHOAL_ENOTFOUND);
    for (uint32_t c = 0; c < 1000; c++)
        CHECK(shoal_sched_slot_have(s, (uint32_t)s2, c));
    CHECK(shoal_sched_slot_have(s, (uint32_t)s1, 1500));
    CHECK(shoal_sched_slot_have(s, (uint32_t)s1, 1600));
    CHECK(!shoal_sched_slot_have(s, (uint32_t)s1, 1600)); /* repeat: no news */
    struct shoal_sched_action a[16];
    size_t n = shoal_sched_next(s, 0, a, 16);
    int to1 = 0;
    for (size_t i = 0; i < n; i++)
        if (a[i].peer == 1) {
            CHECK(a[i].chunk == 1500 || a[i].chunk == 1600);
            to1++;
        }
    CHECK_EQ(to1, 2);
    /* Chunk 1500 is requested now: another HAVE for it cannot lead to a
     * request. */
    CHECK(!shoal_sched_slot_have(s, (uint32_t)s2, 1500));
    shoal_sched_free(s);
}

/* Rarity follows the counts as they change after a chunk was listed: a
 * chunk whose holders grew in number yields to one that stayed rarer, and
 * one whose holders fell (a peer gone) becomes the rarest. */
static void test_rarity_changes(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.min_depth = cfg.max_depth = 1;
    cfg.max_inflight = 1; /* one request: to the first peer, slot 0 */
    struct shoal_sched *s = mk(64, 0, NULL, &cfg);
    for (uint64_t p = 1; p <= 4; p++)
        CHECK_EQ(shoal_sched_peer_add(s, p, true, 1), 0);
    /* Both start with one holder, then chunk 10 gains three more and
     * chunk 20 one more. */
    CHECK_EQ(shoal_sched_peer_have(s, 1, 10), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 1, 20), 0);
    for (uint64_t p = 2; p <= 4; p++)
        CHECK_EQ(shoal_sched_peer_have(s, p, 10), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 2, 20), 0);
    struct shoal_sched_action a[8];
    size_t n = shoal_sched_next(s, 0, a, 8);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_REQUEST), 1);
    CHECK_EQ(a[0].type, SHOAL_SCHED_REQUEST);
    CHECK_EQ(a[0].peer, 1);
    CHECK_EQ(a[0].chunk, 20);
    shoal_sched_free(s);

    /* Chunks 30 and 40 have three holders each; peer 3, a holder of 30
     * only, leaves. */
    s = mk(64, 0, NULL, &cfg);
    for (uint64_t p = 1; p <= 4; p++)
        CHECK_EQ(shoal_sched_peer_add(s, p, true, 1), 0);
    for (uint64_t p = 1; p <= 3; p++)
        CHECK_EQ(shoal_sched_peer_have(s, p, 30), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 1, 40), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 2, 40), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 4, 40), 0);
    CHECK_EQ(shoal_sched_peer_remove(s, 3), 0);
    n = shoal_sched_next(s, 0, a, 8);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_REQUEST), 1);
    CHECK_EQ(a[0].peer, 1);
    CHECK_EQ(a[0].chunk, 30);
    /* Its request fails: 30 is listed again and picked again (still the
     * rarer), now that its count is back in an exact bucket. */
    CHECK_EQ(shoal_sched_req_failed(s, 1, 1, 30, false), 0);
    n = shoal_sched_next(s, 1, a, 8);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_REQUEST), 1);
    CHECK_EQ(a[0].chunk, 30);
    shoal_sched_free(s);
}

/* The serve decision: busy once the slots are taken, one slot more for a
 * requester behind every peer being served, no limit with 0 slots; and the
 * have counts it is fed. */
static void test_upload_busy(void)
{
    CHECK(!shoal_sched_upload_busy(5, 6, false));
    CHECK(shoal_sched_upload_busy(6, 6, false));
    CHECK(!shoal_sched_upload_busy(6, 6, true));
    CHECK(shoal_sched_upload_busy(7, 6, true));
    CHECK(!shoal_sched_upload_busy(100, 0, false));

    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    struct shoal_sched *s = mk(64, 0, NULL, &cfg);
    uint8_t bits[8] = {0x0f}; /* chunks 0-3 */
    CHECK_EQ(shoal_sched_peer_have_count(s, 7), UINT32_MAX);
    CHECK_EQ(shoal_sched_peer_add(s, 7, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_bitfield(s, 7, bits, 8), 0);
    CHECK_EQ(shoal_sched_peer_have_count(s, 7), 4);
    CHECK_EQ(shoal_sched_peer_have(s, 7, 40), 0);
    CHECK_EQ(shoal_sched_peer_have_count(s, 7), 5);
    shoal_sched_free(s);
}

static void test_bad_args(void)
{
    struct shoal_sched *s = NULL;
    struct shoal_sched_release rel = {.nchunks = 0};
    CHECK_EQ(shoal_sched_new(&s, NULL, &rel), -EINVAL);
    uint32_t ff[2] = {0, 0};
    rel = (struct shoal_sched_release){.nchunks = 4, .nfiles = 2, .file_first = ff};
    CHECK_EQ(shoal_sched_new(&s, NULL, &rel), -EINVAL);
    CHECK(s == NULL);
    s = mk(4, 0, NULL, NULL);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), SHOAL_EEXIST);
    CHECK_EQ(shoal_sched_peer_have(s, 1, 4), SHOAL_EBADMSG);
    CHECK_EQ(shoal_sched_peer_have(s, 9, 0), SHOAL_ENOTFOUND);
    uint8_t b[2] = {0};
    CHECK_EQ(shoal_sched_peer_bitfield(s, 1, b, 2), SHOAL_EBADMSG);
    CHECK_EQ(shoal_sched_lease_granted(s, 0, 2, 3, 0), SHOAL_EBADMSG);
    shoal_sched_free(s);
    shoal_sched_free(NULL);
}

/* A peer that had nothing for us is asked again as soon as it does: for
 * a chunk it held all along that comes back to the list when its request
 * elsewhere failed (a peer that found nothing is then searched by what it
 * announces only, so a relisted chunk must reach it too), and for a chunk
 * it announces. A cross-zone peer announcing a chunk a same-zone peer
 * holds leads to no request, and the slot API says so. */
static void test_nothing_then_news(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.min_depth = cfg.max_depth = 1;
    cfg.busy_backoff_ms = 1000;
    struct shoal_sched *s = mk(100, 0, NULL, &cfg);
    for (uint64_t p = 1; p <= 4; p++)
        CHECK_EQ(shoal_sched_peer_add(s, p, p != 3, 1), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 1, 5), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 2, 5), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 3, 30), 0); /* only across: not yet */
    CHECK_EQ(shoal_sched_peer_have(s, 4, 50), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 4, 51), 0);
    struct shoal_sched_action a[16];
    size_t n = shoal_sched_next(s, 10, a, 16);
    uint64_t first = 0;
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_REQUEST), 2u); /* 5, and 50 or 51 */
    for (size_t i = 0; i < n; i++)
        if (a[i].type == SHOAL_SCHED_REQUEST && a[i].chunk == 5)
            first = a[i].peer;
    REQUIRE(first == 1 || first == 2);
    uint64_t other = first == 1 ? 2 : 1;
    CHECK_EQ(count_type(a, shoal_sched_next(s, 11, a, 16), SHOAL_SCHED_REQUEST), 0u);
    /* The first answers busy: chunk 5 goes to the other holder at once. */
    CHECK_EQ(shoal_sched_req_failed(s, 12, first, 5, true), 0);
    n = shoal_sched_next(s, 12, a, 16);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_REQUEST), 1u);
    CHECK(n >= 1 && a[0].chunk == 5 && a[0].peer == other);
    /* News from a peer that had nothing: asked for it. */
    CHECK_EQ(shoal_sched_req_done(s, 13, other, 5, 1 << 20, 1), 0);
    int so = shoal_sched_peer_slot(s, other), s3 = shoal_sched_peer_slot(s, 3);
    REQUIRE(so >= 0 && s3 >= 0);
    CHECK(shoal_sched_slot_have(s, (uint32_t)so, 9));
    n = shoal_sched_next(s, 14, a, 16);
    CHECK_EQ(count_type(a, n, SHOAL_SCHED_REQUEST), 1u);
    CHECK(n >= 1 && a[0].chunk == 9 && a[0].peer == other);
    /* Peer 4 holds the listed one of 50 and 51 in our zone: the
     * cross-zone peer announcing it can lead to nothing. */
    uint32_t left = shoal_sched_wants(s, 50) && shoal_sched_holders(s, 50) == 1 ? 50 : 51;
    CHECK(!shoal_sched_slot_have(s, (uint32_t)s3, left));
    CHECK_EQ(count_type(a, shoal_sched_next(s, 15, a, 16), SHOAL_SCHED_REQUEST), 0u);
    shoal_sched_free(s);
}

/* A chunk whose only same-zone holder goes (it says it lacks the chunk,
 * or disconnects) while a cross-zone peer holds it is fetched from that
 * peer after the cross-zone delay: no same-zone holder is left to ask,
 * and with a holder it is no orphan for the origin. */
static void holder_gone(bool remove)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.endgame_dups = 1;
    cfg.cross_zone_delay_ms = 100;
    struct shoal_sched *s = mk(64, 0, NULL, &cfg);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_add(s, 2, false, 1), 0);
    for (uint32_t c = 0; c < 64; c++)
        if (c != 7)
            CHECK_EQ(shoal_sched_chunk_obtained(s, 1, c), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 1, 7), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 2, 7), 0);
    struct shoal_sched_action a[16];
    size_t n = shoal_sched_next(s, 2, a, 16);
    REQUIRE(n == 1 && a[0].type == SHOAL_SCHED_REQUEST && a[0].peer == 1 && a[0].chunk == 7);
    if (remove)
        CHECK_EQ(shoal_sched_peer_remove(s, 1), 0);
    else
        CHECK_EQ(shoal_sched_peer_lacks(s, 4, 1, 7), 0);
    size_t asked = 0;
    for (uint64_t t = 5; t < 10000 && asked == 0; t += 50) {
        n = shoal_sched_next(s, t, a, 16);
        for (size_t i = 0; i < n; i++)
            asked += a[i].type == SHOAL_SCHED_REQUEST && a[i].peer == 2 && a[i].chunk == 7;
    }
    CHECK_EQ(asked, 1u);
    shoal_sched_free(s);
}

static void test_holder_gone(void)
{
    holder_gone(false);
    holder_gone(true);
}

/* One fallback crossing at a time: when the chunk crossing arrives from
 * elsewhere first, the crossing is cancelled and the next one starts. */
static void test_fallback_cancelled(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    cfg.cross_zone_delay_ms = 0;
    struct shoal_sched *s = mk(100, 0, NULL, &cfg);
    CHECK_EQ(shoal_sched_peer_add(s, 1, true, 1), 0);
    CHECK_EQ(shoal_sched_peer_add(s, 2, false, 1), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 2, 10), 0);
    CHECK_EQ(shoal_sched_peer_have(s, 2, 11), 0);
    struct shoal_sched_action a[16];
    size_t n = shoal_sched_next(s, 1, a, 16);
    uint32_t first = UINT32_MAX;
    for (size_t i = 0; i < n; i++)
        if (a[i].type == SHOAL_SCHED_REQUEST) {
            CHECK(first == UINT32_MAX); /* one crossing at a time */
            first = a[i].chunk;
        }
    REQUIRE(first == 10 || first == 11);
    CHECK_EQ(shoal_sched_chunk_obtained(s, 2, first), 0);
    n = shoal_sched_next(s, 3, a, 16);
    size_t asked = 0;
    for (size_t i = 0; i < n; i++)
        asked += a[i].type == SHOAL_SCHED_REQUEST && a[i].peer == 2 && a[i].chunk == 21 - first;
    CHECK_EQ(asked, 1u);
    shoal_sched_free(s);
}

/* Peer ids never repeat (one per session): thousands of sessions come and
 * go while others stay, and every peer is still found, every one gone is
 * not, and a new one can join (a seed hung at 100% CPU looking up its 611th
 * peer: the id table was all tombstones). */
/* Starved: incomplete, nothing asked of a peer, and no chunk from one for
 * the given time since the first call or the last arrival. */
static void test_starved(void)
{
    struct shoal_sched_config cfg;
    struct shoal_sched_action a[8];
    uint8_t bits[1];
    shoal_sched_config_default(&cfg);
    struct shoal_sched *s = mk(8, 0, NULL, &cfg);
    CHECK(!shoal_sched_starved(s, 100000, 1000)); /* not started */
    REQUIRE(shoal_sched_peer_add(s, 1, true, 1) == 0);
    (void)shoal_sched_next(s, 1000, a, 8); /* nothing to ask: peer 1 holds nothing */
    CHECK(!shoal_sched_starved(s, 1999, 1000));
    CHECK(shoal_sched_starved(s, 2000, 1000));
    /* A peer that holds chunk 3 is asked: not starved while it is. */
    bits[0] = 1u << 3;
    REQUIRE(shoal_sched_peer_bitfield(s, 1, bits, 1) == 0);
    size_t n = shoal_sched_next(s, 3000, a, 8);
    REQUIRE(n == 1 && a[0].type == SHOAL_SCHED_REQUEST && a[0].chunk == 3);
    CHECK(!shoal_sched_starved(s, 9000, 1000));
    /* It arrives at 9000: starved again 1000 ms later, not before. */
    REQUIRE(shoal_sched_req_done(s, 9000, 1, 3, 1 << 20, 6000) == 0);
    (void)shoal_sched_next(s, 9000, a, 8);
    CHECK(!shoal_sched_starved(s, 9999, 1000));
    CHECK(shoal_sched_starved(s, 10000, 1000));
    /* Complete: never. */
    for (uint32_t c = 0; c < 8; c++)
        if (c != 3)
            REQUIRE(shoal_sched_chunk_obtained(s, 10000, c) == 0);
    CHECK(!shoal_sched_starved(s, 100000, 1000));
    shoal_sched_free(s);
}

static void test_peer_churn(void)
{
    struct shoal_sched_config cfg;
    shoal_sched_config_default(&cfg);
    struct shoal_sched *s = mk(64, 0, NULL, &cfg);
    uint64_t live[40];
    uint32_t nlive = 0, bad = 0;
    for (uint64_t id = 1; id <= 10; id++) /* long-lived peers */
        REQUIRE(shoal_sched_peer_add(s, id, true, 1) == 0);
    for (uint64_t id = 100; id < 6100; id++) {
        if (nlive == 20) { /* a rolling window of 20 short sessions */
            uint32_t k = (uint32_t)(id * 7919u % 20u);
            REQUIRE(shoal_sched_peer_remove(s, live[k]) == 0);
            bad += shoal_sched_peer_slot(s, live[k]) >= 0;
            live[k] = live[--nlive];
        }
        REQUIRE(shoal_sched_peer_add(s, id, id % 3 != 0, 1) == 0);
        live[nlive++] = id;
        for (uint32_t i = 0; i < nlive; i++)
            bad += shoal_sched_peer_slot(s, live[i]) < 0;
        for (uint64_t old = 1; old <= 10; old++)
            bad += shoal_sched_peer_slot(s, old) < 0;
        bad += shoal_sched_peer_slot(s, id + 1000000) >= 0;
    }
    CHECK_EQ(bad, 0);
    shoal_sched_free(s);
}

int main(void)
{
    RUN(test_determinism);
    RUN(test_rarest_first);
    RUN(test_bitfield_add);
    RUN(test_bitfield_borrow);
    RUN(test_borrow_all);
    RUN(test_peer_lacks);
    RUN(test_loader_priority);
    RUN(test_loader_order);
    RUN(test_file_endgame);
    RUN(test_same_zone);
    RUN(test_fallback_hold);
    RUN(test_cross_endgame);
    RUN(test_fastest_first);
    RUN(test_origin_last_resort);
    RUN(test_lease_hints_in_order);
    RUN(test_loader_extra_lease);
    RUN(test_lease_regrant);
    RUN(test_lease_drop);
    RUN(test_peer_churn);
    RUN(test_starved);
    RUN(test_lease_overlap);
    RUN(test_lease_done_runs);
    RUN(test_endgame);
    RUN(test_endgame_small);
    RUN(test_failures);
    RUN(test_turns);
    RUN(test_pipeline_depth);
    RUN(test_depth_delivery_rate);
    RUN(test_inflight_cap);
    RUN(test_inflight_cap_loader);
    RUN(test_origin_delay);
    RUN(test_import_share);
    RUN(test_role_fleet);
    RUN(test_role_origin_delay);
    RUN(test_role_leases);
    RUN(test_role_import_and_inflight);
    RUN(test_scan_and_slot_have);
    RUN(test_rarity_changes);
    RUN(test_nothing_then_news);
    RUN(test_holder_gone);
    RUN(test_fallback_cancelled);
    RUN(test_upload_busy);
    RUN(test_retry_after);
    RUN(test_bad_args);
    return t_done();
}
