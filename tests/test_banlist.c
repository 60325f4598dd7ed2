/* SPDX-License-Identifier: MIT */
/*
 * Tests of the node-key ban list behind --ban-seconds (node/banlist.h),
 * with made-up clocks: a ban ends on time and is never shortened; a bad
 * chunk's strike is remembered for the window, past the ban itself; a
 * full list gives up the ban that ends first, not the same slot each
 * time, and reuses slots whose ban and strike are both over.
 */
#include <errno.h>
#include <string.h>

#include "banlist.h"
#include "t.h"

static void key_of(uint8_t pk[32], uint32_t n)
{
    memset(pk, 0xa5, 32);
    memcpy(pk, &n, 4);
}

static void test_ban_ends(void)
{
    struct shoal_banlist *bl = NULL;
    uint8_t a[32], b[32];
    uint64_t next = 0;

    CHECK(shoal_banlist_new(&bl, 0) == -EINVAL);
    REQUIRE(shoal_banlist_new(&bl, 4) == 0);
    key_of(a, 1);
    key_of(b, 2);
    shoal_banlist_add(bl, a, 1000, 30000, false, 600000);
    CHECK(shoal_banlist_banned(bl, a, 1000));
    CHECK(shoal_banlist_banned(bl, a, 30999));
    CHECK(!shoal_banlist_banned(bl, a, 31000));
    CHECK(!shoal_banlist_banned(bl, b, 1000));
    /* A shorter ban later does not cut the running one short. */
    shoal_banlist_add(bl, a, 2000, 1000, false, 600000);
    CHECK(shoal_banlist_banned(bl, a, 30999));
    /* A longer one lengthens it. */
    shoal_banlist_add(bl, a, 3000, 600000, false, 600000);
    CHECK(shoal_banlist_banned(bl, a, 602999));
    CHECK(!shoal_banlist_banned(bl, a, 603000));
    shoal_banlist_add(bl, b, 3000, 10000, false, 600000);
    CHECK_EQ(shoal_banlist_active(bl, 4000, &next), 2u);
    CHECK_EQ(next, 9000u);
    CHECK_EQ(shoal_banlist_active(bl, 20000, &next), 1u);
    CHECK_EQ(shoal_banlist_active(bl, 700000, &next), 0u);
    CHECK_EQ(next, UINT64_MAX);
    shoal_banlist_free(bl);
    shoal_banlist_free(NULL);
}

static void test_strike_outlives_ban(void)
{
    struct shoal_banlist *bl = NULL;
    uint8_t a[32], c[32];

    REQUIRE(shoal_banlist_new(&bl, 1) == 0);
    key_of(a, 1);
    key_of(c, 3);
    CHECK(!shoal_banlist_struck_within(bl, a, 1000, 600000));
    shoal_banlist_add(bl, a, 1000, 30000, true, 600000);
    /* The short ban is over; its strike is still remembered. */
    CHECK(!shoal_banlist_banned(bl, a, 40000));
    CHECK(shoal_banlist_struck_within(bl, a, 40000, 600000));
    CHECK(!shoal_banlist_struck_within(bl, a, 601000, 600000));
    /* The only slot is not free while the strike is remembered: the new
     * key takes it only as the ban ending first... */
    shoal_banlist_add(bl, c, 40000, 1000, false, 600000);
    CHECK(shoal_banlist_banned(bl, c, 40500));
    CHECK(!shoal_banlist_struck_within(bl, a, 40500, 600000));
    shoal_banlist_free(bl);
}

static void test_full_list(void)
{
    struct shoal_banlist *bl = NULL;
    uint8_t k[32];

    REQUIRE(shoal_banlist_new(&bl, 3) == 0);
    for (uint32_t n = 0; n < 3; n++) {
        key_of(k, n);
        shoal_banlist_add(bl, k, 1000, 10000 * (n + 1), false, 600000);
    }
    /* Full: key 3 replaces key 0, whose ban ends first. */
    key_of(k, 3);
    shoal_banlist_add(bl, k, 1000, 50000, false, 600000);
    CHECK(shoal_banlist_banned(bl, k, 2000));
    key_of(k, 0);
    CHECK(!shoal_banlist_banned(bl, k, 2000));
    key_of(k, 1);
    CHECK(shoal_banlist_banned(bl, k, 2000));
    /* Key 4 now replaces key 1 (ends at 21000), not key 3 again. */
    key_of(k, 4);
    shoal_banlist_add(bl, k, 1000, 50000, false, 600000);
    key_of(k, 3);
    CHECK(shoal_banlist_banned(bl, k, 2000));
    key_of(k, 1);
    CHECK(!shoal_banlist_banned(bl, k, 2000));
    CHECK_EQ(shoal_banlist_active(bl, 2000, NULL), 3u);
    /* Once key 2's ban is over (31000), its slot is free: key 5 takes it
     * and the live bans stay. */
    key_of(k, 5);
    shoal_banlist_add(bl, k, 40000, 5000, false, 600000);
    CHECK_EQ(shoal_banlist_active(bl, 40001, NULL), 3u);
    shoal_banlist_free(bl);
}

int main(void)
{
    RUN(test_ban_ends);
    RUN(test_strike_outlives_ban);
    RUN(test_full_list);
    return t_done();
}
