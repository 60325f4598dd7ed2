/* SPDX-License-Identifier: MIT */
/*
 * Tests of the manifest send queue (node/mfq.h) behind a seed's answers to
 * WANT_MANIFEST: with a crowd asking at once the bytes in flight never pass
 * the budget, every asker is served once and in arrival order, a request
 * over the budget on its own still goes, a peer that leaves takes its
 * requests with it and frees its share, one that stops reading is expired,
 * and duplicates or a full queue are refused without harm.
 */
#include <errno.h>
#include <string.h>

#include "error.h"
#include "mfq.h"
#include "t.h"

#define MIB (1024u * 1024u)

static void mid(uint8_t id[32], int n)
{
    memset(id, 0, 32);
    id[0] = (uint8_t)n;
}

/* 32 pullers ask for a 3.9 MB manifest together; writes finish in a
 * scrambled order. In flight stays within 8 MiB, all 32 are served, each
 * once, in the order they asked. */
static void test_crowd(void)
{
    enum { N = 32 };
    const uint64_t len = 3900000, budget = 8 * MIB;
    struct shoal_mfq *q = NULL;
    struct shoal_mfq_req r, flying[N];
    uint64_t tx[N] = {0};
    int served[N] = {0}, order[N], nserved = 0, nfly = 0;
    uint8_t id[32];
    uint32_t rng = 12345;

    REQUIRE(shoal_mfq_new(&q, budget, 1024) == 0);
    mid(id, 7);
    for (int i = 0; i < N; i++)
        CHECK_EQ(shoal_mfq_push(q, 100 + (uint64_t)i, id, len), 0);
    CHECK_EQ(shoal_mfq_waiting(q), N);
    while (nserved < N) {
        while (shoal_mfq_pop(q, 0, &r)) {
            int i = (int)(r.peer - 100);
            REQUIRE(i >= 0 && i < N);
            order[nserved++] = i;
            served[i]++;
            /* Queued behind whatever the peer had: a mark past its tx. */
            shoal_mfq_sent(q, r.seq, tx[i] + len + 17);
            flying[nfly++] = r;
            CHECK(shoal_mfq_inflight(q) <= budget);
        }
        REQUIRE(nfly > 0); /* something in flight, or the queue would stall */
        /* Some random in-flight request finishes writing, in two steps. */
        rng = rng * 1103515245u + 12345u;
        {
            int k = (int)((rng >> 8) % (uint32_t)nfly);
            int i = (int)(flying[k].peer - 100);
            tx[i] += len / 2;
            CHECK_EQ(shoal_mfq_written(q, flying[k].peer, tx[i]), 0);
            tx[i] += len / 2 + 17 + 1;
            CHECK_EQ(shoal_mfq_written(q, flying[k].peer, tx[i]), 1);
            flying[k] = flying[--nfly];
        }
    }
    while (nfly > 0) {
        int i = (int)(flying[nfly - 1].peer - 100);
        CHECK_EQ(shoal_mfq_written(q, flying[--nfly].peer, tx[i] + len + 17), 1);
    }
    for (int i = 0; i < N; i++) {
        CHECK_EQ(served[i], 1);
        CHECK_EQ(order[i], i);
    }
    CHECK(shoal_mfq_peak(q) <= budget);
    CHECK_EQ(shoal_mfq_peak(q), 2 * len); /* two at once did go */
    CHECK_EQ(shoal_mfq_inflight(q), 0);
    CHECK_EQ(shoal_mfq_waiting(q), 0);
    CHECK(!shoal_mfq_pop(q, 0, &r));
    shoal_mfq_free(q);
}

/* A manifest bigger than the budget goes alone, and nothing passes it. */
static void test_over_budget_and_fifo(void)
{
    struct shoal_mfq *q = NULL;
    struct shoal_mfq_req r, big;
    uint8_t a[32], b[32];

    REQUIRE(shoal_mfq_new(&q, 1 * MIB, 16) == 0);
    mid(a, 1);
    mid(b, 2);
    CHECK_EQ(shoal_mfq_push(q, 1, a, 100), 0);
    CHECK_EQ(shoal_mfq_push(q, 2, b, 5 * MIB), 0);
    CHECK_EQ(shoal_mfq_push(q, 3, a, 100), 0);
    REQUIRE(shoal_mfq_pop(q, 0, &r));
    CHECK_EQ(r.peer, 1);
    shoal_mfq_sent(q, r.seq, 150);
    /* The big one waits for the small one; the small one behind it waits
     * too, though it would fit. */
    CHECK(!shoal_mfq_pop(q, 0, &r));
    CHECK_EQ(shoal_mfq_waiting(q), 2);
    CHECK_EQ(shoal_mfq_written(q, 1, 149), 0);
    CHECK_EQ(shoal_mfq_written(q, 1, 150), 1);
    REQUIRE(shoal_mfq_pop(q, 0, &big));
    CHECK_EQ(big.peer, 2);
    CHECK_EQ(big.bytes, 5 * MIB);
    CHECK_EQ(shoal_mfq_inflight(q), 5 * MIB);
    CHECK(!shoal_mfq_pop(q, 0, &r));
    /* Not yet marked: a tx report cannot end it. */
    CHECK_EQ(shoal_mfq_written(q, 2, UINT64_MAX - 1), 0);
    /* Sending failed: ended at once, the next one goes. */
    shoal_mfq_end(q, big.seq);
    CHECK_EQ(shoal_mfq_inflight(q), 0);
    REQUIRE(shoal_mfq_pop(q, 0, &r));
    CHECK_EQ(r.peer, 3);
    shoal_mfq_free(q);
}

/* Peers that leave: a waiting one leaves the queue, an in-flight one frees
 * its share, and the ones behind move up. */
static void test_peer_gone(void)
{
    struct shoal_mfq *q = NULL;
    struct shoal_mfq_req r;
    uint8_t a[32], b[32];

    REQUIRE(shoal_mfq_new(&q, 4 * MIB, 16) == 0);
    mid(a, 1);
    mid(b, 2);
    CHECK_EQ(shoal_mfq_push(q, 1, a, 3 * MIB), 0);
    CHECK_EQ(shoal_mfq_push(q, 2, a, 3 * MIB), 0);
    CHECK_EQ(shoal_mfq_push(q, 2, b, 3 * MIB), 0);
    CHECK_EQ(shoal_mfq_push(q, 3, a, 3 * MIB), 0);
    REQUIRE(shoal_mfq_pop(q, 0, &r));
    CHECK_EQ(r.peer, 1);
    shoal_mfq_sent(q, r.seq, 3 * MIB);
    CHECK(!shoal_mfq_pop(q, 0, &r));
    /* Peer 2 disconnects while waiting with two requests. */
    CHECK_EQ(shoal_mfq_peer_gone(q, 2), 2);
    CHECK_EQ(shoal_mfq_waiting(q), 1);
    CHECK(!shoal_mfq_pop(q, 0, &r));
    /* Peer 1 disconnects mid-write: its bytes are freed with it. */
    CHECK_EQ(shoal_mfq_peer_gone(q, 1), 1);
    CHECK_EQ(shoal_mfq_inflight(q), 0);
    REQUIRE(shoal_mfq_pop(q, 0, &r));
    CHECK_EQ(r.peer, 3);
    CHECK_EQ(shoal_mfq_peer_gone(q, 99), 0);
    shoal_mfq_free(q);
}

/* A peer that asks and never reads cannot hold the budget forever: once
 * its request is expired the next asker goes. Requests that went later
 * are not expired with it. */
static void test_stuck_peer(void)
{
    struct shoal_mfq *q = NULL;
    struct shoal_mfq_req r, stuck;
    uint8_t a[32];

    REQUIRE(shoal_mfq_new(&q, 4 * MIB, 16) == 0);
    mid(a, 1);
    CHECK_EQ(shoal_mfq_push(q, 1, a, 3 * MIB), 0);
    CHECK_EQ(shoal_mfq_push(q, 2, a, 1 * MIB), 0);
    CHECK_EQ(shoal_mfq_push(q, 3, a, 3 * MIB), 0);
    REQUIRE(shoal_mfq_pop(q, 1000, &stuck));
    CHECK_EQ(stuck.peer, 1);
    shoal_mfq_sent(q, stuck.seq, 3 * MIB);
    REQUIRE(shoal_mfq_pop(q, 2000, &r));
    CHECK_EQ(r.peer, 2);
    shoal_mfq_sent(q, r.seq, 1 * MIB);
    CHECK(!shoal_mfq_pop(q, 3000, &r));
    CHECK_EQ(shoal_mfq_expire(q, 1000), 0); /* went at 1000: not before */
    CHECK_EQ(shoal_mfq_expire(q, 1500), 1);
    CHECK_EQ(shoal_mfq_inflight(q), 1 * MIB);
    REQUIRE(shoal_mfq_pop(q, 3000, &r));
    CHECK_EQ(r.peer, 3);
    /* Writing it later is harmless: it is no longer there to end. */
    CHECK_EQ(shoal_mfq_written(q, 1, 3 * MIB), 0);
    CHECK_EQ(shoal_mfq_inflight(q), 4 * MIB);
    shoal_mfq_free(q);
}

/* The same ask twice is one request; a full queue refuses; sizes near the
 * top of the range do not wrap the budget check. */
static void test_limits(void)
{
    struct shoal_mfq *q = NULL;
    struct shoal_mfq_req r;
    uint8_t a[32];

    CHECK_EQ(shoal_mfq_new(&q, 0, 4), -EINVAL);
    CHECK_EQ(shoal_mfq_new(&q, 1, 0), -EINVAL);
    CHECK(q == NULL);
    REQUIRE(shoal_mfq_new(&q, 1 * MIB, 3) == 0);
    mid(a, 1);
    CHECK_EQ(shoal_mfq_push(q, 1, a, 10), 0);
    CHECK_EQ(shoal_mfq_push(q, 1, a, 10), SHOAL_EEXIST);
    CHECK_EQ(shoal_mfq_push(q, 2, a, UINT64_MAX), 0);
    CHECK_EQ(shoal_mfq_push(q, 3, a, 10), 0);
    CHECK_EQ(shoal_mfq_push(q, 4, a, 10), SHOAL_EBUSY);
    CHECK_EQ(shoal_mfq_waiting(q), 3);
    REQUIRE(shoal_mfq_pop(q, 0, &r));
    CHECK_EQ(r.peer, 1);
    /* In flight, it still counts as asked. */
    CHECK_EQ(shoal_mfq_push(q, 1, a, 10), SHOAL_EEXIST);
    CHECK(!shoal_mfq_pop(q, 0, &r)); /* UINT64_MAX does not fit next to 10 */
    shoal_mfq_sent(q, r.seq, 10);
    CHECK_EQ(shoal_mfq_written(q, 1, 10), 1);
    REQUIRE(shoal_mfq_pop(q, 0, &r));
    CHECK_EQ(r.peer, 2);
    CHECK(!shoal_mfq_pop(q, 0, &r));
    shoal_mfq_free(q);
    shoal_mfq_free(NULL);
}

int main(void)
{
    test_crowd();
    test_over_budget_and_fifo();
    test_peer_gone();
    test_stuck_peer();
    test_limits();
    return t_done();
}
