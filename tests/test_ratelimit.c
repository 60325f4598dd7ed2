/* SPDX-License-Identifier: MIT */
/*
 * Tests of the token buckets behind --rate-up/--rate-down and the per-peer
 * caps (node/ratelimit.h), driven with made-up clocks: the long-run rate
 * holds, a transfer larger than the bucket goes through and is paid for by
 * waiting, idle time is banked only up to the burst, and the node-wide
 * bucket limits connections together.
 */
#include "ratelimit.h"
#include "t.h"

/* Sends |chunk|-byte transfers as fast as the bucket allows until |total|
 * bytes went; returns the simulated milliseconds it took. */
static uint64_t run(struct shoal_rate_pair *r, uint64_t start, uint64_t total, uint64_t chunk)
{
    uint64_t now = start, sent = 0;
    while (sent < total) {
        uint64_t w = shoal_rate_pair_wait(r, now);
        if (w) {
            now += w;
            continue;
        }
        shoal_rate_pair_take(r, now, chunk);
        sent += chunk;
    }
    return now - start;
}

static void test_unlimited(void)
{
    struct shoal_rate_pair r = {.global = NULL};
    shoal_bucket_init(&r.own, 0, 0);
    CHECK_EQ(run(&r, 0, 1ull << 30, 1 << 20), 0);
}

static void test_rate_holds(void)
{
    struct shoal_rate_pair r = {.global = NULL};
    uint64_t ms;

    shoal_bucket_init(&r.own, 4u << 20, 1000);
    /* 16 MiB at 4 MiB/s: the last 1 MiB transfer starts once 14 MiB are
     * paid for (the 1 MiB burst held at start covers the first, the
     * second goes into debt): 3.5 s. */
    ms = run(&r, 1000, 16u << 20, 1u << 20);
    CHECK(ms >= 3450 && ms <= 3550);
    /* A 4 MiB chunk, bigger than the 1 MiB bucket, still goes at once... */
    shoal_bucket_init(&r.own, 4u << 20, 0);
    CHECK_EQ(shoal_rate_pair_wait(&r, 0), 0);
    shoal_rate_pair_take(&r, 0, 4u << 20);
    /* ...and the next waits for the debt: 3 MiB at 4 MiB/s. */
    CHECK_EQ(shoal_rate_pair_wait(&r, 0), 750);
    CHECK_EQ(shoal_rate_pair_wait(&r, 500), 250);
    CHECK_EQ(shoal_rate_pair_wait(&r, 750), 0);
}

static void test_idle_banks_only_burst(void)
{
    struct shoal_bucket b;

    shoal_bucket_init(&b, 1u << 20, 0); /* burst = max(rate/4, 64K) = 256K */
    shoal_bucket_take(&b, 0, 256u << 10);
    CHECK_EQ(shoal_bucket_wait(&b, 0), 0);
    /* An hour idle does not buy an hour of bandwidth. */
    shoal_bucket_take(&b, 3600000, 256u << 10);
    CHECK_EQ(shoal_bucket_wait(&b, 3600000), 0);
    shoal_bucket_take(&b, 3600000, 512u << 10);
    CHECK_EQ(shoal_bucket_wait(&b, 3600000), 500);
    /* A clock going backwards is no time, not a refund. */
    CHECK_EQ(shoal_bucket_wait(&b, 10), 500);
    /* Small rates still hold 64 KiB so one small frame never stalls. */
    shoal_bucket_init(&b, 1000, 0);
    shoal_bucket_take(&b, 0, 65536);
    CHECK_EQ(shoal_bucket_wait(&b, 0), 0);
    shoal_bucket_take(&b, 0, 1000);
    CHECK_EQ(shoal_bucket_wait(&b, 0), 1000);
}

static void test_global_shared(void)
{
    struct shoal_bucket g;
    struct shoal_rate_pair a = {.global = &g}, b = {.global = &g};
    uint64_t now = 0, sent = 0;

    /* Two connections, each allowed 8 MiB/s, share a 4 MiB/s node cap. */
    shoal_bucket_init(&g, 4u << 20, 0);
    shoal_bucket_init(&a.own, 8u << 20, 0);
    shoal_bucket_init(&b.own, 8u << 20, 0);
    while (sent < (16u << 20)) {
        uint64_t wa = shoal_rate_pair_wait(&a, now), wb = shoal_rate_pair_wait(&b, now);
        if (wa == 0) {
            shoal_rate_pair_take(&a, now, 1u << 20);
            sent += 1u << 20;
        } else if (wb == 0) {
            shoal_rate_pair_take(&b, now, 1u << 20);
            sent += 1u << 20;
        } else {
            now += wa < wb ? wa : wb;
        }
    }
    /* As for one connection at 4 MiB/s (3.5 s, see above); the
     * per-connection caps alone would have allowed twice the rate. */
    CHECK(now >= 3450 && now <= 3550);
}

int main(void)
{
    RUN(test_unlimited);
    RUN(test_rate_holds);
    RUN(test_idle_banks_only_burst);
    RUN(test_global_shared);
    return t_done();
}
