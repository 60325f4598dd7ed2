/* SPDX-License-Identifier: MIT */
/*
 * Tests of the per-source budgets behind --hello-rate (node/srclimit.h),
 * with made-up clocks: a source gets its burst at once, then the rate;
 * another source keeps its own budget meanwhile; more sources than the
 * table holds are never refused for lack of room; no limit with rate 0.
 */
#include <errno.h>
#include <string.h>

#include "srclimit.h"
#include "t.h"

static void key_of(uint8_t key[SHOAL_SRC_KEY_LEN], uint32_t n)
{
    memset(key, 0, SHOAL_SRC_KEY_LEN);
    key[10] = key[11] = 0xff;
    memcpy(key + 12, &n, 4);
}

static void test_burst_then_rate(void)
{
    struct shoal_srclimit *l = NULL;
    uint8_t a[SHOAL_SRC_KEY_LEN], b[SHOAL_SRC_KEY_LEN];
    unsigned got = 0;

    REQUIRE(shoal_srclimit_new(&l, 20, 40) == 0);
    key_of(a, 1);
    key_of(b, 2);
    for (int i = 0; i < 100; i++)
        got += shoal_srclimit_take(l, a, 1000);
    CHECK_EQ(got, 40u);
    /* Another source is untouched by the first one's flood. */
    CHECK(shoal_srclimit_take(l, b, 1000));
    /* Ten seconds of one attempt per millisecond: 20 a second get through. */
    got = 0;
    for (uint64_t t = 1001; t <= 11000; t++)
        got += shoal_srclimit_take(l, a, t);
    CHECK(got >= 199 && got <= 201);
    /* Time going backwards gives nothing. */
    CHECK(!shoal_srclimit_take(l, a, 5000));
    shoal_srclimit_free(l);
}

static void test_many_sources(void)
{
    struct shoal_srclimit *l = NULL;
    uint8_t k[SHOAL_SRC_KEY_LEN];
    unsigned got = 0;

    REQUIRE(shoal_srclimit_new(&l, 1, 2) == 0);
    for (uint32_t n = 0; n < 4 * SHOAL_SRCLIMIT_SLOTS; n++) {
        key_of(k, n);
        got += shoal_srclimit_take(l, k, 1000);
    }
    CHECK_EQ(got, 4 * SHOAL_SRCLIMIT_SLOTS);
    shoal_srclimit_free(l);
}

static void test_unlimited(void)
{
    struct shoal_srclimit *l = NULL;
    uint8_t k[SHOAL_SRC_KEY_LEN];
    unsigned got = 0;

    CHECK(shoal_srclimit_new(&l, 5, 0) == -EINVAL);
    REQUIRE(shoal_srclimit_new(&l, 0, 0) == 0);
    key_of(k, 7);
    for (int i = 0; i < 1000; i++)
        got += shoal_srclimit_take(l, k, 1);
    CHECK_EQ(got, 1000u);
    shoal_srclimit_free(l);
    shoal_srclimit_free(NULL);
}

int main(void)
{
    RUN(test_burst_then_rate);
    RUN(test_many_sources);
    RUN(test_unlimited);
    return t_done();
}
