/* SPDX-License-Identifier: MIT */
/* The tracker registry on its own (no sockets): holdings and peer lists,
 * zone bias, expiry, origin leases, manifests, rollouts, limits, and a
 * randomized churn run checked against a naive model. */
#include "t.h"

#include "error.h"
#include "registry.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static void key(uint8_t out[32], uint32_t tag, uint32_t i)
{
    memset(out, 0, 32);
    memcpy(out, &tag, 4);
    memcpy(out + 4, &i, 4);
    out[31] = 0x5a;
}

/* A registry with node TTL |ttl| and the given fetcher_leases (0: lease
 * spans are what the node asks, up to the cap). */
static struct shoal_reg *mkreg_ex(uint32_t ttl, uint32_t fetcher_leases)
{
    struct shoal_reg_config c;
    shoal_reg_config_default(&c);
    c.fetcher_leases = fetcher_leases;
    c.node_ttl_ms = ttl;
    c.lease_ms = 1000;
    c.seed = 42;
    c.importers = 4; /* the role tests count ranks 0-5 */
    /* Ranks and spans per zone as set: test_min_fetchers covers the
     * floor on the fetchers in all. */
    c.min_fetchers = 0;
    struct shoal_reg *r = NULL;
    REQUIRE(shoal_reg_new(&r, &c) == 0 && r);
    return r;
}

static struct shoal_reg *mkreg(uint32_t ttl) { return mkreg_ex(ttl, 2); }

static void announce1(struct shoal_reg *r, uint64_t now, uint32_t node, const char *zone,
                      const uint8_t mid[32], uint32_t have, bool complete)
{
    uint8_t pk[32];
    key(pk, 1, node);
    char addr[32];
    snprintf(addr, sizeof(addr), "10.0.0.%u:7000", node);
    struct shoal_reg_have h = { .have_chunks = have, .total_chunks = 100, .complete = complete };
    memcpy(h.manifest_id, mid, 32);
    REQUIRE(shoal_reg_announce(r, now, pk, addr, zone, &h, 1, NULL) == 0);
}

/* Announces |mid| for |node| in |zone| and returns the role it got. */
static struct shoal_reg_role role1(struct shoal_reg *r, uint64_t now, uint32_t node,
                                   const char *zone, const uint8_t mid[32], bool complete)
{
    uint8_t pk[32];
    key(pk, 1, node);
    struct shoal_reg_have h = { .have_chunks = complete ? 100 : 0, .total_chunks = 100,
                                .complete = complete };
    memcpy(h.manifest_id, mid, 32);
    struct shoal_reg_role ro;
    memset(&ro, 0xee, sizeof ro);
    REQUIRE(shoal_reg_announce(r, now, pk, "10.0.0.1:7000", zone, &h, 1, &ro) == 0);
    return ro;
}

/* "F" fetcher, "I<rem>" importer share (mod 4), "-" none. */
static const char *role_str(struct shoal_reg_role ro)
{
    static char buf[8];
    if (ro.fetcher && ro.import_mod == 0)
        return "F";
    if (!ro.fetcher && ro.import_mod == 4 && ro.import_rem < 4) {
        snprintf(buf, sizeof buf, "I%u", ro.import_rem);
        return buf;
    }
    if (!ro.fetcher && ro.import_mod == 0 && ro.import_rem == 0 &&
        ro.rank == SHOAL_REG_RANK_NONE)
        return "-";
    return "?";
}

#define ROLE(r, now, node, zone, mid, complete, want) \
    CHECK(strcmp(role_str(role1(r, now, node, zone, mid, complete)), want) == 0)

/* Ranks per zone, first come first served; kept while a node stays, handed
 * on (lowest first) when one leaves, expires or moves zone. */
static void test_roles(void)
{
    struct shoal_reg *r = mkreg(1000); /* 2 fetchers, 4 importers */
    uint8_t m[32];
    key(m, 2, 1);
    static const char *want[] = { "F", "F", "I0", "I1", "I2", "I3", "-", "-" };
    for (uint32_t i = 0; i < 8; i++)
        ROLE(r, 10, i, "a", m, false, want[i]);
    /* Another zone counts on its own. */
    ROLE(r, 10, 10, "b", m, false, "F");
    /* A repeated announce keeps the role. */
    ROLE(r, 20, 3, "a", m, false, "I1");
    ROLE(r, 20, 21, "c", m, false, "F");
    struct shoal_reg_role ro = role1(r, 20, 21, "c", m, false);
    CHECK_EQ(ro.rank, 0);

    /* A fetcher leaves: the next announce without a rank takes its rank. */
    uint8_t pk[32];
    key(pk, 1, 1);
    shoal_reg_remove_node(r, pk);
    ROLE(r, 30, 6, "a", m, false, "F");
    ROLE(r, 30, 7, "a", m, false, "-");
    /* Another fetcher leaves and a node without a rank announces first. */
    key(pk, 1, 0);
    shoal_reg_remove_node(r, pk);
    ROLE(r, 40, 7, "a", m, false, "F");
    ROLE(r, 40, 4, "a", m, false, "I2"); /* rank 4: no lower one is free */
    /* A fetcher leaves and an importer announces first: it moves up, so
     * the zone keeps two fetchers, and its share goes to the next node
     * without a rank (node 6 coming back below). */
    key(pk, 1, 6);
    shoal_reg_remove_node(r, pk);
    ROLE(r, 50, 2, "a", m, false, "F");
    ROLE(r, 50, 6, "a", m, false, "I0");

    /* Expiry: everyone but node 5 (I3) announces again; it expires and its
     * share goes to a newcomer. */
    for (uint32_t i = 2; i <= 7; i++)
        if (i != 5)
            (void)role1(r, 900, i, "a", m, false);
    (void)role1(r, 900, 10, "b", m, false);
    (void)role1(r, 900, 21, "c", m, false);
    shoal_reg_expire(r, 1500);
    ROLE(r, 1500, 8, "a", m, false, "I3");
    ROLE(r, 1500, 9, "a", m, false, "-");

    /* Moving zone gives back the old zone's rank and takes one in the new. */
    ROLE(r, 1600, 4, "b", m, false, "F");
    ROLE(r, 1600, 9, "a", m, false, "I2");
    /* Dropping the manifest gives its rank back too. */
    key(pk, 1, 9);
    REQUIRE(shoal_reg_announce(r, 1700, pk, "10.0.0.1:7000", "a", NULL, 0, NULL) == 0);
    ROLE(r, 1700, 11, "a", m, false, "I2");

    /* A complete copy in the zone: nobody there fetches at once (the
     * zone has every chunk; a node leases what its peers lack after its
     * origin delay), ranks and import shares kept; a complete node takes
     * no rank. Before, 20 seeds in a 200-node simulated fleet still left the
     * origin sending 0.61x the release to the fetchers. */
    ROLE(r, 1800, 20, "c", m, true, "-");
    ROLE(r, 1800, 10, "b", m, false, "F"); /* another zone's are kept */
    ro = role1(r, 1800, 21, "c", m, false);
    CHECK(!ro.fetcher && ro.import_mod == 0 && ro.rank == 0);
    ROLE(r, 1800, 11, "a", m, false, "I2");
    /* A node's rank survives its completing. */
    ro = role1(r, 1800, 21, "c", m, true);
    CHECK(!ro.fetcher && ro.rank == 0);
    /* The complete copies go: fetchers again. */
    key(pk, 1, 20);
    shoal_reg_remove_node(r, pk);
    key(pk, 1, 21);
    REQUIRE(shoal_reg_announce(r, 1800, pk, "10.0.0.1:7000", "c", NULL, 0, NULL) == 0);
    ROLE(r, 1800, 21, "c", m, false, "F");
    shoal_reg_free(r);
}


/* At least min_fetchers fetchers in all: a fleet in one zone gets 8, not
 * the 2 per zone that suit four zones. Zones share the 8, but a zone with
 * fewer nodes than its share leaves the rest to the others (a stray node
 * elsewhere must not halve a one-zone fleet's fetchers); the ranks after
 * the fetchers import; lease spans count at least 8 fetchers. */
static void ranks_fill(struct shoal_reg *r, uint64_t now, uint32_t first, uint32_t n,
                       const char *zone, const uint8_t m[32])
{
    for (uint32_t i = first; i < first + n; i++)
        (void)role1(r, now, i, zone, m, false);
}

static void test_min_fetchers(void)
{
    struct shoal_reg_config c;
    shoal_reg_config_default(&c);
    CHECK_EQ(c.min_fetchers, 8);
    c.node_ttl_ms = 5000;
    c.importers = 4;
    struct shoal_reg *r = NULL;
    REQUIRE(shoal_reg_new(&r, &c) == 0);
    uint8_t m[32], pk[32];
    key(m, 2, 1);
    for (uint32_t i = 0; i < 14; i++) {
        static const char *want[] = { "F",  "F",  "F",  "F",  "F", "F", "F",
                                      "F",  "I0", "I1", "I2", "I3", "-", "-" };
        ROLE(r, 10, i, "a", m, false, want[i]);
    }
    /* One zone, 8 fetchers with 2 leases each: ceil(100 / 16) = 7. */
    uint32_t f, n;
    uint64_t e;
    key(pk, 1, 0);
    CHECK_EQ(shoal_reg_lease(r, 10, m, 100, pk, 64, 0, 0, &f, &n, &e), 0);
    CHECK_EQ(n, 7);
    /* One node in a second zone fetches; zone a keeps the other 7. */
    ROLE(r, 20, 100, "b", m, false, "F");
    ROLE(r, 20, 6, "a", m, false, "F");
    ROLE(r, 20, 7, "a", m, false, "I0");
    ROLE(r, 20, 10, "a", m, false, "I3");
    /* ... and rank 11 keeps its place in line, with no role for now. */
    struct shoal_reg_role ro = role1(r, 20, 11, "a", m, false);
    CHECK(!ro.fetcher && ro.import_mod == 0 && ro.rank == 11);
    /* Still 8 fetchers in all: ceil(93 / 16) = 6. */
    CHECK_EQ(shoal_reg_lease(r, 20, m, 100, pk, 64, 0, 0, &f, &n, &e), 0);
    CHECK_EQ(n, 6);
    /* Two more one-node zones: zone a keeps 5. */
    ROLE(r, 30, 200, "c", m, false, "F");
    ROLE(r, 30, 300, "d", m, false, "F");
    ROLE(r, 30, 4, "a", m, false, "F");
    ROLE(r, 30, 5, "a", m, false, "I0");
    /* Four full zones: 2 each, the per-zone setting. */
    ranks_fill(r, 40, 101, 8, "b", m);
    ranks_fill(r, 40, 201, 8, "c", m);
    ranks_fill(r, 40, 301, 8, "d", m);
    ROLE(r, 40, 1, "a", m, false, "F");
    ROLE(r, 40, 2, "a", m, false, "I0");
    ROLE(r, 40, 101, "b", m, false, "F");
    ROLE(r, 40, 102, "b", m, false, "I0");
    /* Zones b-d go: zone a has all 8 again. */
    for (uint32_t i = 100; i < 400; i++) {
        key(pk, 1, i);
        shoal_reg_remove_node(r, pk);
    }
    ROLE(r, 50, 7, "a", m, false, "F");
    ROLE(r, 50, 8, "a", m, false, "I0");
    shoal_reg_free(r);

    /* origin_fetchers above the floor's share wins; 0 still means every
     * node fetches. */
    c.origin_fetchers = 3;
    REQUIRE(shoal_reg_new(&r, &c) == 0);
    for (uint32_t z = 0; z < 4; z++) {
        char zone[2] = { (char)('a' + z), 0 };
        ranks_fill(r, 10, 10 * z, 8, zone, m);
    }
    ROLE(r, 10, 2, "a", m, false, "F");
    ROLE(r, 10, 3, "a", m, false, "I0");
    shoal_reg_free(r);
    c.origin_fetchers = 0;
    REQUIRE(shoal_reg_new(&r, &c) == 0);
    for (uint32_t i = 0; i < 6; i++)
        CHECK(role1(r, 10, i, "a", m, false).fetcher);
    shoal_reg_free(r);
    /* The floor counts in the rank limit. */
    c.origin_fetchers = 2;
    c.min_fetchers = 250;
    c.importers = 8;
    r = NULL;
    CHECK_EQ(shoal_reg_new(&r, &c), -EINVAL);
    shoal_reg_free(r);
}

/* Ranks are per manifest: one announce can make a node the fetcher of one
 * release and nothing for another; roles come back in the entries' order. */
static void test_roles_two_manifests(void)
{
    struct shoal_reg *r = mkreg(1000);
    uint8_t m1[32], m2[32];
    key(m1, 2, 1);
    key(m2, 2, 2);
    for (uint32_t i = 0; i < 6; i++)
        (void)role1(r, 10, i, "a", m1, false);
    uint8_t pk[32];
    key(pk, 1, 6);
    struct shoal_reg_have h[2] = {
        { .have_chunks = 0, .total_chunks = 10 },
        { .have_chunks = 0, .total_chunks = 10 },
    };
    memcpy(h[0].manifest_id, m1, 32);
    memcpy(h[1].manifest_id, m2, 32);
    struct shoal_reg_role ro[2];
    REQUIRE(shoal_reg_announce(r, 10, pk, "10.0.0.6:7000", "a", h, 2, ro) == 0);
    CHECK(strcmp(role_str(ro[0]), "-") == 0);
    CHECK(strcmp(role_str(ro[1]), "F") == 0);
    CHECK_EQ(ro[1].rank, 0);
    /* The other order gives the same roles, in the other order. */
    memcpy(h[0].manifest_id, m2, 32);
    memcpy(h[1].manifest_id, m1, 32);
    REQUIRE(shoal_reg_announce(r, 20, pk, "10.0.0.6:7000", "a", h, 2, ro) == 0);
    CHECK(strcmp(role_str(ro[0]), "F") == 0);
    CHECK(strcmp(role_str(ro[1]), "-") == 0);
    shoal_reg_free(r);
}

/* Announces |mid| holding |have| chunks for |node| in |zone|; the role. */
static struct shoal_reg_role role_have(struct shoal_reg *r, uint64_t now, uint32_t node,
                                       const char *zone, const uint8_t mid[32], uint32_t have)
{
    uint8_t pk[32];
    key(pk, 1, node);
    struct shoal_reg_have h = { .have_chunks = have, .total_chunks = 100 };
    memcpy(h.manifest_id, mid, 32);
    struct shoal_reg_role ro;
    REQUIRE(shoal_reg_announce(r, now, pk, "10.0.0.1:7000", zone, &h, 1, &ro) == 0);
    return ro;
}

/* A zone with fewer nodes than its importer ranks: the import shares are
 * split over the ranks it fills, the fetchers' while it has no importer,
 * so every chunk has an importer. Before, 4 nodes in 2 zones (all four
 * fetchers) had none and took 3.9 x T_min in the simulator. A node that
 * holds nothing yet gets the full zone's share, since a rollout's nodes
 * announce together before any chunk arrives. */
static void test_roles_small_zone(void)
{
    struct shoal_reg *r = mkreg(1000); /* 2 fetchers, 4 importers */
    uint8_t m[32];
    key(m, 2, 1);
    struct shoal_reg_role ro = role_have(r, 10, 0, "a", m, 0);
    CHECK(ro.fetcher && ro.import_mod == 0);
    ro = role_have(r, 10, 0, "a", m, 1); /* alone: imports everything */
    CHECK(ro.fetcher && ro.import_mod == 1 && ro.import_rem == 0);
    ro = role_have(r, 10, 1, "a", m, 1);
    CHECK(ro.fetcher && ro.import_mod == 2 && ro.import_rem == 1);
    ro = role_have(r, 10, 0, "a", m, 1);
    CHECK(ro.fetcher && ro.import_mod == 2 && ro.import_rem == 0);
    /* Importers take over from the fetchers, the shares split over the
     * importer ranks taken. */
    ro = role_have(r, 20, 2, "a", m, 0);
    CHECK(!ro.fetcher && ro.import_mod == 4 && ro.import_rem == 0);
    ro = role_have(r, 20, 2, "a", m, 1);
    CHECK(!ro.fetcher && ro.import_mod == 1 && ro.import_rem == 0);
    ro = role_have(r, 20, 0, "a", m, 1);
    CHECK(ro.fetcher && ro.import_mod == 0);
    ro = role_have(r, 20, 3, "a", m, 1);
    CHECK(!ro.fetcher && ro.import_mod == 2 && ro.import_rem == 1);
    /* Full: the configured shares. */
    for (uint32_t i = 4; i < 8; i++)
        (void)role_have(r, 30, i, "a", m, 1);
    ro = role_have(r, 30, 2, "a", m, 1);
    CHECK(!ro.fetcher && ro.import_mod == 4 && ro.import_rem == 0);
    ro = role_have(r, 30, 5, "a", m, 1);
    CHECK(!ro.fetcher && ro.import_mod == 4 && ro.import_rem == 3);
    /* The top importer leaves and nobody takes its rank: the shares
     * shrink to the ranks still held. */
    uint8_t pk[32];
    key(pk, 1, 5);
    shoal_reg_remove_node(r, pk);
    key(pk, 1, 6);
    shoal_reg_remove_node(r, pk);
    key(pk, 1, 7);
    shoal_reg_remove_node(r, pk);
    ro = role_have(r, 40, 4, "a", m, 1);
    CHECK(!ro.fetcher && ro.import_mod == 3 && ro.import_rem == 2);
    /* A zone holding a complete copy needs no import: its fetchers stand
     * down and import nothing. */
    ro = role_have(r, 50, 10, "b", m, 1);
    CHECK(ro.fetcher && ro.import_mod == 1);
    struct shoal_reg_role c = role1(r, 50, 11, "b", m, true);
    (void)c;
    ro = role_have(r, 50, 10, "b", m, 1);
    CHECK(!ro.fetcher && ro.import_mod == 0);
    shoal_reg_free(r);
}

/* A provisional share (the small-zone split) asks for a sooner announce,
 * so the node learns its smaller share soon after its zone grows: after
 * as long as the zone went without taking a rank, from fill_interval_ms
 * doubling up to announce_interval_ms. A final role, or none, asks for the
 * normal interval. Before, every role asked for announce_interval_ms and
 * a zone's first nodes kept their larger share that long. */
static void test_roles_interval(void)
{
    struct shoal_reg *r = mkreg(1000000); /* 2 fetchers, 4 importers */
    uint8_t m[32];
    key(m, 2, 1);
    /* Holding nothing: the full share, final, the normal interval. */
    struct shoal_reg_role ro = role_have(r, 1000, 0, "a", m, 0);
    CHECK(ro.fetcher && ro.import_mod == 0);
    CHECK_EQ(ro.interval_ms, 30000);
    /* Alone with a chunk: it imports everything, for now. */
    ro = role_have(r, 1000, 0, "a", m, 1);
    CHECK(ro.import_mod == 1);
    CHECK_EQ(ro.interval_ms, 200);
    /* The zone stays as it is: asked less and less often. */
    ro = role_have(r, 1399, 0, "a", m, 5);
    CHECK_EQ(ro.interval_ms, 200);
    ro = role_have(r, 1400, 0, "a", m, 5);
    CHECK_EQ(ro.interval_ms, 400);
    ro = role_have(r, 1000 + 7000, 0, "a", m, 5);
    CHECK_EQ(ro.interval_ms, 6400);
    ro = role_have(r, 1000 + 29999, 0, "a", m, 5);
    CHECK_EQ(ro.interval_ms, 25600);
    ro = role_have(r, 1000 + 30000, 0, "a", m, 5);
    CHECK(ro.import_mod == 1);
    CHECK_EQ(ro.interval_ms, 30000);
    /* The zone grows: soon again, for the newcomer too once it holds a
     * chunk, not while it holds none. */
    ro = role_have(r, 40000, 1, "a", m, 0);
    CHECK(ro.fetcher && ro.import_mod == 0);
    CHECK_EQ(ro.interval_ms, 30000);
    ro = role_have(r, 40100, 0, "a", m, 5);
    CHECK(ro.import_mod == 2 && ro.import_rem == 0);
    CHECK_EQ(ro.interval_ms, 200);
    ro = role_have(r, 40100, 1, "a", m, 1);
    CHECK(ro.import_mod == 2 && ro.import_rem == 1);
    CHECK_EQ(ro.interval_ms, 200);
    /* Another zone's growth is not this one's. */
    (void)role_have(r, 41000, 20, "b", m, 0);
    ro = role_have(r, 41000, 0, "a", m, 5);
    CHECK_EQ(ro.interval_ms, 800);
    /* Importers come: theirs are provisional until the zone fills its
     * ranks (2 fetchers + 4 importers), the fetchers' no longer split. */
    for (uint32_t i = 2; i < 5; i++)
        (void)role_have(r, 42000, i, "a", m, 0);
    ro = role_have(r, 42000, 2, "a", m, 1);
    CHECK(!ro.fetcher && ro.import_mod == 3 && ro.import_rem == 0);
    CHECK_EQ(ro.interval_ms, 200);
    ro = role_have(r, 42000, 0, "a", m, 5);
    CHECK(ro.fetcher && ro.import_mod == 0);
    CHECK_EQ(ro.interval_ms, 30000);
    (void)role_have(r, 43000, 5, "a", m, 0);
    ro = role_have(r, 43000, 2, "a", m, 1);
    CHECK(!ro.fetcher && ro.import_mod == 4 && ro.import_rem == 0);
    CHECK_EQ(ro.interval_ms, 30000);
    /* Past the ranks, complete: the normal interval. */
    ro = role_have(r, 43000, 6, "a", m, 1);
    CHECK_EQ(ro.rank, SHOAL_REG_RANK_NONE);
    CHECK_EQ(ro.interval_ms, 30000);
    ro = role1(r, 43000, 21, "c", m, true);
    CHECK_EQ(ro.interval_ms, 30000);
    shoal_reg_free(r);

    /* fill_interval_ms 0: always the normal interval. */
    struct shoal_reg_config c;
    shoal_reg_config_default(&c);
    c.fill_interval_ms = 0;
    REQUIRE(shoal_reg_new(&r, &c) == 0);
    ro = role_have(r, 1000, 0, "a", m, 1);
    CHECK(ro.fetcher && ro.import_mod == 1);
    CHECK_EQ(ro.interval_ms, 30000);
    shoal_reg_free(r);
}

/* 0 fetchers: every node leases at once; importers still get shares. And
 * the rank budget is checked. */
static void test_roles_zero_fetchers(void)
{
    struct shoal_reg_config c;
    shoal_reg_config_default(&c);
    CHECK_EQ(c.origin_fetchers, 2);
    CHECK_EQ(c.importers, 8);
    c.origin_fetchers = 0;
    c.importers = 2;
    struct shoal_reg *r = NULL;
    REQUIRE(shoal_reg_new(&r, &c) == 0);
    uint8_t m[32];
    key(m, 2, 1);
    for (uint32_t i = 0; i < 4; i++) {
        struct shoal_reg_role ro = role1(r, 10, i, "a", m, false);
        CHECK(ro.fetcher);
        CHECK_EQ(ro.import_mod, i < 2 ? 2 : 0);
        CHECK_EQ(ro.import_rem, i < 2 ? i : 0);
    }
    shoal_reg_free(r);

    c.importers = 0;
    REQUIRE(shoal_reg_new(&r, &c) == 0);
    struct shoal_reg_role ro = role1(r, 10, 0, "a", m, false);
    CHECK(ro.fetcher);
    CHECK_EQ(ro.import_mod, 0);
    CHECK_EQ(ro.rank, SHOAL_REG_RANK_NONE);
    shoal_reg_free(r);

    c.origin_fetchers = 200;
    c.importers = 56;
    r = NULL;
    CHECK_EQ(shoal_reg_new(&r, &c), -EINVAL);
    CHECK(r == NULL);
    c.importers = 55;
    REQUIRE(shoal_reg_new(&r, &c) == 0);
    for (uint32_t i = 0; i < 256; i++) {
        ro = role1(r, 10, i, "a", m, false);
        CHECK_EQ(ro.rank, i < 255 ? i : SHOAL_REG_RANK_NONE);
    }
    shoal_reg_free(r);
}

static void test_peers_basic(void)
{
    struct shoal_reg *r = mkreg(1000);
    uint8_t m1[32], m2[32], asker[32];
    key(m1, 2, 1);
    key(m2, 2, 2);
    key(asker, 1, 0);
    announce1(r, 10, 0, "a", m1, 5, false);  /* the asker itself */
    announce1(r, 10, 1, "a", m1, 100, true);
    announce1(r, 10, 2, "a", m1, 7, false);
    announce1(r, 10, 3, "a", m1, 0, false);  /* holds nothing yet */
    announce1(r, 10, 4, "a", m2, 3, false);

    struct shoal_reg_peer p[16];
    size_t n = shoal_reg_peers(r, 20, m1, asker, "a", p, 16);
    /* The two holders, then node 3 to fill the list: it holds nothing
     * yet but will, and a fleet that starts together connects at once. */
    CHECK_EQ(n, 3);
    uint8_t k3[32];
    key(k3, 1, 3);
    CHECK(memcmp(p[2].node_pk, k3, 32) == 0);
    CHECK_EQ(p[2].have_chunks, 0);
    bool saw1 = false, saw2 = false;
    for (size_t i = 0; i < 2; i++) {
        uint8_t k1[32], k2[32];
        key(k1, 1, 1);
        key(k2, 1, 2);
        if (memcmp(p[i].node_pk, k1, 32) == 0) {
            saw1 = true;
            CHECK(p[i].complete);
            CHECK_EQ(p[i].have_chunks, 100);
            CHECK(strcmp(p[i].addr, "10.0.0.1:7000") == 0);
            CHECK(strcmp(p[i].zone, "a") == 0);
        }
        if (memcmp(p[i].node_pk, k2, 32) == 0) {
            saw2 = true;
            CHECK(!p[i].complete);
            CHECK_EQ(p[i].have_chunks, 7);
        }
    }
    CHECK(saw1 && saw2);

    /* Re-announcing without m1 removes node 1 from m1's holders: node 2
     * is left, and node 3 after it. */
    announce1(r, 30, 1, "a", m2, 1, false);
    n = shoal_reg_peers(r, 30, m1, asker, "a", p, 16);
    CHECK_EQ(n, 2);
    CHECK(memcmp(p[1].node_pk, k3, 32) == 0);
    /* A list that holders alone fill gets no holder of nothing. */
    n = shoal_reg_peers(r, 30, m1, asker, "a", p, 1);
    CHECK_EQ(n, 1);
    CHECK_EQ(p[0].have_chunks, 7);
    n = shoal_reg_peers(r, 30, m2, asker, "a", p, 16);
    CHECK_EQ(n, 2);
    /* Unknown manifest: nobody. */
    uint8_t m3[32];
    key(m3, 2, 3);
    CHECK_EQ(shoal_reg_peers(r, 30, m3, asker, "a", p, 16), 0);

    struct shoal_reg_stats st;
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.nodes, 5);
    CHECK_EQ(st.entries, 5);
    CHECK_EQ(st.announces, 6);
    shoal_reg_free(r);
}

static void test_expiry(void)
{
    struct shoal_reg *r = mkreg(600);
    uint8_t m1[32];
    key(m1, 2, 1);
    announce1(r, 1000, 1, "a", m1, 10, false);
    announce1(r, 1000, 2, "a", m1, 10, false);
    struct shoal_reg_peer p[8];
    CHECK_EQ(shoal_reg_peers(r, 1500, m1, NULL, "a", p, 8), 2);
    announce1(r, 1500, 2, "a", m1, 20, false);
    /* Node 1 is past its TTL at 1601 even before expire runs. */
    size_t n = shoal_reg_peers(r, 1601, m1, NULL, "a", p, 8);
    CHECK_EQ(n, 1);
    CHECK_EQ(p[0].have_chunks, 20);
    shoal_reg_expire(r, 1601);
    struct shoal_reg_stats st;
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.nodes, 1);
    CHECK_EQ(st.nodes_expired, 1);
    CHECK_EQ(st.entries, 1);
    shoal_reg_expire(r, 2200);
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.nodes, 0);
    CHECK_EQ(st.entries, 0);
    /* Nobody holds m1 any more and it was never registered: forgotten. */
    CHECK_EQ(st.manifests, 0);
    shoal_reg_free(r);
}

static void count_zones(const struct shoal_reg_peer *p, size_t n, const char *zone, size_t *same,
                        size_t *seeds)
{
    *same = *seeds = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(p[i].zone, zone) == 0)
            (*same)++;
        if (p[i].complete)
            (*seeds)++;
    }
}

static void test_zone_bias(void)
{
    struct shoal_reg *r = mkreg(10000);
    uint8_t m1[32];
    key(m1, 2, 1);
    for (uint32_t i = 0; i < 40; i++)
        announce1(r, 5, i, "a", m1, 10, false);
    for (uint32_t i = 40; i < 80; i++)
        announce1(r, 5, i, "b", m1, 10, false);
    struct shoal_reg_peer p[20];
    size_t same, seeds;
    size_t n = shoal_reg_peers(r, 6, m1, NULL, "a", p, 20);
    CHECK_EQ(n, 20);
    count_zones(p, n, "a", &same, &seeds);
    CHECK_EQ(same, 15);
    n = shoal_reg_peers(r, 6, m1, NULL, "b", p, 20);
    count_zones(p, n, "b", &same, &seeds);
    CHECK_EQ(same, 15);
    /* A zone with few holders gets all of them, the rest from elsewhere. */
    announce1(r, 7, 100, "c", m1, 10, false);
    announce1(r, 7, 101, "c", m1, 10, false);
    n = shoal_reg_peers(r, 8, m1, NULL, "c", p, 20);
    CHECK_EQ(n, 20);
    count_zones(p, n, "c", &same, &seeds);
    CHECK_EQ(same, 2);
    /* An unknown zone gets everyone else. */
    n = shoal_reg_peers(r, 8, m1, NULL, "zz", p, 20);
    CHECK_EQ(n, 20);
    /* No duplicates in a list. */
    bool dup = false;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            dup = dup || memcmp(p[i].node_pk, p[j].node_pk, 32) == 0;
    CHECK(!dup);
    shoal_reg_free(r);
}

static void test_seed_mix(void)
{
    struct shoal_reg *r = mkreg(10000);
    uint8_t m1[32];
    key(m1, 2, 1);
    for (uint32_t i = 0; i < 40; i++)
        announce1(r, 5, i, "a", m1, 100, true);
    for (uint32_t i = 40; i < 80; i++)
        announce1(r, 5, i, "a", m1, 30, false);
    struct shoal_reg_peer p[20];
    size_t same, seeds;
    size_t n = shoal_reg_peers(r, 6, m1, NULL, "a", p, 20);
    CHECK_EQ(n, 20);
    count_zones(p, n, "a", &same, &seeds);
    /* Half-ish seeds, never all seeds while partial holders exist. */
    CHECK(seeds >= 8 && seeds <= 12);

    /* Lists differ between calls (random), yet cover many holders. */
    uint8_t seen[80] = { 0 };
    for (int k = 0; k < 20; k++) {
        n = shoal_reg_peers(r, 6, m1, NULL, "a", p, 20);
        for (size_t i = 0; i < n; i++) {
            uint32_t idx;
            memcpy(&idx, p[i].node_pk + 4, 4);
            if (idx < 80)
                seen[idx] = 1;
        }
    }
    int covered = 0;
    for (int i = 0; i < 80; i++)
        covered += seen[i];
    CHECK(covered >= 60);
    shoal_reg_free(r);
}

static void test_deterministic(void)
{
    struct shoal_reg *a = mkreg(10000), *b = mkreg(10000);
    uint8_t m1[32];
    key(m1, 2, 1);
    for (uint32_t i = 0; i < 100; i++) {
        announce1(a, 5, i, i % 3 ? "x" : "y", m1, i, i % 4 == 0);
        announce1(b, 5, i, i % 3 ? "x" : "y", m1, i, i % 4 == 0);
    }
    struct shoal_reg_peer pa[30], pb[30];
    for (int k = 0; k < 5; k++) {
        size_t na = shoal_reg_peers(a, 6, m1, NULL, "x", pa, 30);
        size_t nb = shoal_reg_peers(b, 6, m1, NULL, "x", pb, 30);
        CHECK_EQ(na, nb);
        for (size_t i = 0; i < na && i < nb; i++)
            CHECK(memcmp(pa[i].node_pk, pb[i].node_pk, 32) == 0);
    }
    shoal_reg_free(a);
    shoal_reg_free(b);
}

/* A registry with lease_ms 1000 where nodes n1 and n2 (zone "a") announce
 * manifest m1: the set-up of the lease cases. */
static struct shoal_reg *lease_pair(uint8_t m1[32], uint8_t n1[32], uint8_t n2[32])
{
    struct shoal_reg *r = mkreg_ex(5000, 0);
    key(m1, 2, 1);
    key(n1, 1, 1);
    key(n2, 1, 2);
    announce1(r, 0, 1, "a", m1, 0, false);
    announce1(r, 0, 2, "a", m1, 0, false);
    return r;
}

/* A slow fetch that reports what it has so far keeps its lease: each
 * report that marks chunks fetched makes the lease run lease_ms from then,
 * so the rest is not granted to another node (and fetched twice) at the
 * grant's expiry; one that reports nothing still expires. */
static void test_lease_extend(void)
{
    uint8_t m1[32], n1[32], n2[32];
    struct shoal_reg *r = lease_pair(m1, n1, n2); /* lease_ms 1000 */
    uint32_t f, c;
    uint64_t e;
    CHECK_EQ(shoal_reg_lease(r, 100, m1, 20, n1, 20, 0, 0, &f, &c, &e), 0);
    CHECK_EQ(c, 20);
    CHECK_EQ(e, 1100);
    CHECK_EQ(shoal_reg_lease_done(r, 900, m1, n1, 0, 5), 0);
    CHECK_EQ(shoal_reg_lease_done(r, 900, m1, n1, 0, 5), 0); /* again: no progress */
    /* Past the grant's expiry the rest is still n1's. */
    CHECK_EQ(shoal_reg_lease(r, 1500, m1, 20, n2, 20, 0, 0, &f, &c, &e), 0);
    CHECK_EQ(c, 0);
    CHECK_EQ(shoal_reg_lease_done(r, 1800, m1, n1, 5, 5), 0);
    /* Nothing reported for lease_ms: 10..19 go to n2. */
    CHECK_EQ(shoal_reg_lease(r, 2800, m1, 20, n2, 20, 0, 0, &f, &c, &e), 0);
    CHECK_EQ(f, 10);
    CHECK_EQ(c, 10);
    CHECK_EQ(shoal_reg_lease_done(r, 2800, m1, n1, 10, 1), SHOAL_ENOTFOUND);
    shoal_reg_free(r);
}

/* A node reports chunks done that a peer holds; the peer leaves before
 * passing them on. Asking to lease one of them (a node asks only for what
 * it misses and no peer offers), the node gets it back at once, and only
 * that chunk: before, nobody could lease it for fetched_ttl_ms. The same
 * for a chunk of a lease the node ended without it. Another node's word
 * still stands. */
static void test_lease_withdraw(void)
{
    uint8_t m1[32], n1[32], n2[32];
    struct shoal_reg *r = lease_pair(m1, n1, n2); /* lease_ms 1000 */
    uint32_t f, c;
    uint64_t e;
    const uint32_t M = SHOAL_REG_HINT_MISSING;
    CHECK_EQ(shoal_reg_lease(r, 100, m1, 20, n1, 10, 0, M, &f, &c, &e), 0);
    CHECK_EQ(c, 10);
    CHECK_EQ(shoal_reg_lease_done(r, 200, m1, n1, 0, 10), 0);
    /* n2 may not have chunk 5 on n1's word. */
    CHECK_EQ(shoal_reg_lease(r, 300, m1, 20, n2, 1, 5, M, &f, &c, &e), 0);
    CHECK_EQ(f, 10);
    CHECK_EQ(c, 1);
    /* Without the flag (an older node) a hint says nothing. */
    CHECK_EQ(shoal_reg_lease(r, 300, m1, 20, n1, 1, 5, 0, &f, &c, &e), 0);
    CHECK_EQ(f, 11);
    CHECK_EQ(c, 1);
    /* n1 itself asks for it: 5 alone, its neighbours stay fetched. */
    CHECK_EQ(shoal_reg_lease(r, 300, m1, 20, n1, 10, 5, M, &f, &c, &e), 0);
    CHECK_EQ(f, 5);
    CHECK_EQ(c, 1);
    CHECK_EQ(shoal_reg_lease_done(r, 400, m1, n1, 5, 1), 0);
    /* The span's ends, then a lone chunk. */
    CHECK_EQ(shoal_reg_lease(r, 500, m1, 20, n1, 10, 0, M, &f, &c, &e), 0);
    CHECK_EQ(f, 0);
    CHECK_EQ(c, 1);
    CHECK_EQ(shoal_reg_lease(r, 500, m1, 20, n1, 10, 4, M, &f, &c, &e), 0);
    CHECK_EQ(f, 4);
    CHECK_EQ(c, 1);
    /* A chunk of a lease that ended at the node without it (a peer held
     * it at the grant, then left): the lone [11, 12) from above goes... */
    CHECK_EQ(shoal_reg_lease(r, 600, m1, 20, n1, 5, 11, M, &f, &c, &e), 0);
    CHECK_EQ(f, 11);
    CHECK_EQ(c, 5);
    /* ... and from the middle of [11, 16), 12 alone, in a lease of its
     * own over it: [11, 16) stays as granted, so reports against the
     * node's own span still fit it. */
    CHECK_EQ(shoal_reg_lease(r, 700, m1, 20, n1, 5, 12, M, &f, &c, &e), 0);
    CHECK_EQ(f, 12);
    CHECK_EQ(c, 1);
    struct shoal_reg_stats st;
    shoal_reg_stats(r, &st);
    uint64_t active = st.leases_active;
    CHECK_EQ(shoal_reg_lease_done(r, 800, m1, n1, 11, 5), 0);
    /* All three over 11..15 ended ([11, 12) granted without the flag
     * at 300 too): every chunk of each is fetched. */
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.leases_active, active - 3);
    /* Everything up to 16 is fetched or leased now: n2 gets 16. */
    CHECK_EQ(shoal_reg_lease(r, 900, m1, 20, n2, 1, 11, M, &f, &c, &e), 0);
    CHECK_EQ(f, 16);
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.fetched_withdrawn, 5);
    shoal_reg_free(r);
}

/* Another node's word gives way once its fetch is lease_ms old, to a
 * node that still misses the chunk, whose peers offer none and have
 * given it nothing for a while (starved): it is cut off from its holders
 * (two-peer chains, a zone cut off) and waited for ever, the
 * fetched_ttl_ms rule doing nothing while some node is complete. The next
 * node to flag it then need not wait for the refetch to age. A node that
 * is not starved (waiting for its zone's next import) gets nothing. */
static void test_lease_withdraw_cut_off(void)
{
    uint8_t m1[32], n1[32], n2[32], n3[32];
    struct shoal_reg *r = lease_pair(m1, n1, n2); /* lease_ms 1000 */
    uint32_t f, c;
    uint64_t e;
    const uint32_t M = SHOAL_REG_HINT_MISSING | SHOAL_REG_HINT_STARVED;
    key(n3, 1, 3);
    announce1(r, 0, 3, "a", m1, 0, false);
    CHECK_EQ(shoal_reg_lease(r, 100, m1, 20, n1, 20, 0, M, &f, &c, &e), 0);
    CHECK(f == 0 && c == 20);
    CHECK_EQ(shoal_reg_lease_done(r, 200, m1, n1, 0, 20), 0);
    /* n1 is complete: its word stands for every chunk. */
    announce1(r, 300, 1, "a", m1, 20, true);
    /* Fetched lately: on its way to n2's peers, nothing for n2. */
    CHECK_EQ(shoal_reg_lease(r, 1100, m1, 20, n2, 4, 7, M, &f, &c, &e), 0);
    CHECK_EQ(c, 0);
    /* Without the flag, never; nor missing but not starved. */
    CHECK_EQ(shoal_reg_lease(r, 1200, m1, 20, n2, 4, 7, 0, &f, &c, &e), 0);
    CHECK_EQ(c, 0);
    CHECK_EQ(shoal_reg_lease(r, 1200, m1, 20, n2, 4, 7, SHOAL_REG_HINT_MISSING, &f, &c, &e), 0);
    CHECK_EQ(c, 0);
    /* lease_ms after n1's report: chunk 7 alone is n2's. */
    CHECK_EQ(shoal_reg_lease(r, 1200, m1, 20, n2, 4, 7, M, &f, &c, &e), 0);
    CHECK(f == 7 && c == 1);
    CHECK_EQ(shoal_reg_lease_done(r, 1250, m1, n2, 7, 1), 0);
    /* Another cut-off node misses it too: n2's fetch is fresh, but the
     * chunk was old when it was fetched again. */
    CHECK_EQ(shoal_reg_lease(r, 1260, m1, 20, n3, 4, 7, M, &f, &c, &e), 0);
    CHECK(f == 7 && c == 1);
    /* A node the tracker has known for less than lease_ms may not have
     * its peers yet: nothing. */
    uint8_t n4[32];
    key(n4, 1, 4);
    announce1(r, 1100, 4, "a", m1, 0, false);
    CHECK_EQ(shoal_reg_lease(r, 1260, m1, 20, n4, 4, 9, M, &f, &c, &e), 0);
    CHECK_EQ(c, 0);
    CHECK_EQ(shoal_reg_lease(r, 2100, m1, 20, n4, 4, 9, M, &f, &c, &e), 0);
    CHECK(f == 9 && c == 1);
    /* n1's credit is intact around it: 6 and 8 give way only flagged. */
    CHECK_EQ(shoal_reg_lease(r, 1260, m1, 20, n3, 4, 6, 0, &f, &c, &e), 0);
    CHECK_EQ(c, 0);
    struct shoal_reg_stats st;
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.fetched_withdrawn, 3);
    shoal_reg_free(r);
}

/* A chunk withdrawn from a node's fetched credit while its lease still
 * covers it is leased to it again, over the old lease; when the old one
 * expires, the chunk stays the new lease's (the review's repro leased it
 * to a second node while the first still fetched it). A withdrawal never
 * splits a lease, so the node's cap holds. */
static void test_lease_withdraw_overlap(void)
{
    uint8_t m1[32], n1[32], n2[32];
    struct shoal_reg *r = lease_pair(m1, n1, n2); /* lease_ms 1000 */
    uint32_t f, c;
    uint64_t e;
    const uint32_t M = SHOAL_REG_HINT_MISSING;
    CHECK_EQ(shoal_reg_lease(r, 100, m1, 20, n1, 4, 0, M, &f, &c, &e), 0); /* [0, 4) */
    CHECK_EQ(shoal_reg_lease_done(r, 200, m1, n1, 0, 2), 0);             /* to 1200 */
    CHECK_EQ(shoal_reg_lease(r, 300, m1, 20, n1, 1, 0, M, &f, &c, &e), 0);
    CHECK(f == 0 && c == 1);                                              /* to 1300 */
    CHECK_EQ(shoal_reg_lease(r, 1250, m1, 20, n2, 4, 0, M, &f, &c, &e), 0);
    CHECK_EQ(f, 2); /* 2 and 3 came free with [0, 4); 0 is still leased */
    CHECK_EQ(c, 4);
    shoal_reg_free(r);

    /* Seven leases, then a chunk from the middle of the first: one lease
     * more, the eighth, and the next request is refused. */
    r = mkreg_ex(5000, 0);
    announce1(r, 0, 1, "a", m1, 0, false);
    CHECK_EQ(shoal_reg_lease(r, 100, m1, 200, n1, 8, 0, M, &f, &c, &e), 0);
    for (uint32_t i = 1; i < 7; i++)
        CHECK_EQ(shoal_reg_lease(r, 100, m1, 200, n1, 8, 8 * i, M, &f, &c, &e), 0);
    CHECK_EQ(shoal_reg_lease(r, 200, m1, 200, n1, 8, 3, M, &f, &c, &e), 0);
    CHECK(f == 3 && c == 1);
    struct shoal_reg_stats st;
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.leases_active, SHOAL_REG_LEASES_PER_NODE);
    CHECK_EQ(shoal_reg_lease(r, 200, m1, 200, n1, 8, 4, M, &f, &c, &e), SHOAL_EBUSY);
    /* The node's report over its first span still fits it. */
    CHECK_EQ(shoal_reg_lease_done(r, 300, m1, n1, 0, 8), 0);
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.leases_active, SHOAL_REG_LEASES_PER_NODE - 2);
    shoal_reg_free(r);
}

/* Span mechanics (caps, gaps, wrap, expiry), with spans not shortened. */
static void test_leases(void)
{
    uint8_t m1[32], n1[32], n2[32];
    struct shoal_reg *r = lease_pair(m1, n1, n2); /* lease_ms 1000 */
    uint32_t f1, c1, f2, c2;
    uint64_t e1, e2;
    CHECK_EQ(shoal_reg_lease(r, 100, m1, 100, n1, 1000, 0, 0, &f1, &c1, &e1), 0);
    CHECK_EQ(f1, 0);
    CHECK_EQ(c1, SHOAL_REG_LEASE_SPAN_MAX); /* capped */
    CHECK_EQ(e1, 1100);
    /* Same hint: the other node gets the rest, never an overlap. */
    CHECK_EQ(shoal_reg_lease(r, 100, m1, 100, n2, 1000, 0, 0, &f2, &c2, &e2), 0);
    CHECK_EQ(f2, 64);
    CHECK_EQ(c2, 36);
    /* Everything leased: nothing to grant. */
    CHECK_EQ(shoal_reg_lease(r, 100, m1, 100, n2, 10, 0, 0, &f2, &c2, &e2), 0);
    CHECK_EQ(c2, 0);
    /* Only the holder may complete a lease; a partial done keeps the rest. */
    CHECK_EQ(shoal_reg_lease_done(r, 200, m1, n2, 0, 10), SHOAL_ENOTFOUND);
    CHECK_EQ(shoal_reg_lease_done(r, 200, m1, n1, 0, 10), 0);
    CHECK_EQ(shoal_reg_lease_done(r, 200, m1, n1, 60, 10), SHOAL_ENOTFOUND); /* spans two */
    /* n2's lease expires at 1100, n1's at 1200 (its partial report at 200
     * extended it). The unfetched chunks are granted again (a span runs
     * on across what were two leases), the fetched never. */
    CHECK_EQ(shoal_reg_lease(r, 1200, m1, 100, n2, 64, 0, 0, &f2, &c2, &e2), 0);
    CHECK_EQ(f2, 10);
    CHECK_EQ(c2, 64);
    CHECK_EQ(shoal_reg_lease_done(r, 1200, m1, n1, 10, 5), SHOAL_ENOTFOUND);
    CHECK_EQ(shoal_reg_lease_done(r, 1200, m1, n2, 10, 64), 0);
    struct shoal_reg_stats st;
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.leases_granted, 3);
    CHECK_EQ(st.leases_expired, 2);
    CHECK_EQ(st.leases_done, 1);
    CHECK_EQ(st.leases_active, 0);
    /* 74..99 remain; a hint near the end wraps to the start of the gap. */
    CHECK_EQ(shoal_reg_lease(r, 1300, m1, 100, n1, 64, 99, 0, &f1, &c1, &e1), 0);
    CHECK_EQ(f1, 99);
    CHECK_EQ(c1, 1);
    CHECK_EQ(shoal_reg_lease(r, 1300, m1, 100, n1, 64, 99, 0, &f1, &c1, &e1), 0);
    CHECK_EQ(f1, 74);
    CHECK_EQ(c1, 25);
    CHECK_EQ(shoal_reg_lease(r, 1300, m1, 100, n2, 64, 5, 0, &f2, &c2, &e2), 0);
    CHECK_EQ(c2, 0);
    shoal_reg_free(r);
}

/* Spans are a share of what is still free: long at first, a chunk or two
 * at the end, and shorter with more zones (more fetchers) in the swarm. */
static void test_lease_share(void)
{
    struct shoal_reg *r = mkreg_ex(5000, 2);
    uint8_t m1[32], n[4][32];
    key(m1, 2, 1);
    for (uint32_t i = 0; i < 4; i++)
        key(n[i], 1, (uint8_t)(i + 1));
    announce1(r, 0, 1, "a", m1, 0, false);
    announce1(r, 0, 2, "a", m1, 0, false);
    uint8_t got[100] = { 0 };
    uint32_t f, c, total = 0, last = 0, grants = 0;
    uint64_t e;
    /* Two fetchers in one zone, two leases each: 100 free chunks give
     * ceil(100 / 4) = 25, then ceil(75 / 4) = 19. */
    CHECK_EQ(shoal_reg_lease(r, 10, m1, 100, n[0], 64, 0, 0, &f, &c, &e), 0);
    CHECK_EQ(c, 25);
    total += c;
    memset(got + f, 1, c);
    CHECK_EQ(shoal_reg_lease(r, 10, m1, 100, n[1], 64, 0, 0, &f, &c, &e), 0);
    CHECK_EQ(c, 19);
    total += c;
    memset(got + f, 1, c);
    /* Fetch and report the rest span by span: the spans shrink to one
     * chunk, never overlap, and cover the release. */
    for (uint32_t i = 0; i < 100 && total < 100; i++) {
        uint8_t *who = n[i & 1];
        CHECK_EQ(shoal_reg_lease(r, 20 + i, m1, 100, who, 64, 0, 0, &f, &c, &e), 0);
        CHECK(c > 0 && c <= 14);
        for (uint32_t k = f; k < f + c && k < 100; k++) {
            CHECK_EQ(got[k], 0);
            got[k] = 1;
        }
        CHECK_EQ(shoal_reg_lease_done(r, 20 + i, m1, who, f, c), 0);
        total += c;
        last = c;
        grants++;
    }
    CHECK_EQ(total, 100);
    CHECK_EQ(last, 1);
    CHECK(grants > 8);
    CHECK_EQ(shoal_reg_lease(r, 200, m1, 100, n[0], 64, 0, 0, &f, &c, &e), 0);
    CHECK_EQ(c, 0);
    shoal_reg_free(r);

    /* A second zone doubles the fetchers: ceil(100 / 8) = 13. */
    r = mkreg_ex(5000, 2);
    announce1(r, 0, 1, "a", m1, 0, false);
    announce1(r, 0, 3, "b", m1, 0, false);
    CHECK_EQ(shoal_reg_lease(r, 10, m1, 100, n[0], 64, 0, 0, &f, &c, &e), 0);
    CHECK_EQ(c, 13);
    /* A node asking for less gets what it asked. */
    CHECK_EQ(shoal_reg_lease(r, 10, m1, 100, n[2], 5, 0, 0, &f, &c, &e), 0);
    CHECK_EQ(c, 5);
    /* Expired leases give their chunks back to the share: all 100 are
     * free again, ceil(100 / 8) = 13. */
    announce1(r, 2000, 1, "a", m1, 0, false);
    CHECK_EQ(shoal_reg_lease(r, 2000, m1, 100, n[0], 64, 0, 0, &f, &c, &e), 0);
    CHECK_EQ(c, 13);
    shoal_reg_free(r);
}

/* The floor on fetchers (min_fetchers) stands for nodes still to announce
 * until chunks come back from the origin; then only the nodes there that
 * may fetch share what is free. A node alone with the origin gets what
 * it asks to the end (nfree/16 kept its leases below the bandwidth-delay
 * product of a gateway 20 ms away), and newcomers shorten spans again. */
static void test_lease_share_alone(void)
{
    struct shoal_reg_config cfg;
    shoal_reg_config_default(&cfg);
    cfg.node_ttl_ms = 60000;
    cfg.seed = 42;
    struct shoal_reg *r = NULL;
    REQUIRE(shoal_reg_new(&r, &cfg) == 0);
    uint8_t m1[32], n[3][32];
    key(m1, 2, 1);
    for (uint32_t i = 0; i < 3; i++)
        key(n[i], 1, i + 1);
    announce1(r, 0, 1, "a", m1, 0, false);
    uint32_t f, c;
    uint64_t e;
    /* Nothing fetched yet: 8 fetchers to come, 2 leases each. */
    CHECK_EQ(shoal_reg_lease(r, 10, m1, 200, n[0], 64, 0, 0, &f, &c, &e), 0);
    CHECK_EQ(f, 0);
    CHECK_EQ(c, 13); /* ceil(200 / 16) */
    CHECK_EQ(shoal_reg_lease_done(r, 20, m1, n[0], 0, 13), 0);
    /* Back from the origin, and nobody else: it gets what it asks, up
     * to the cap, to the last chunk. */
    CHECK_EQ(shoal_reg_lease(r, 30, m1, 200, n[0], 64, 13, 0, &f, &c, &e), 0);
    CHECK_EQ(f, 13);
    CHECK_EQ(c, 64);
    CHECK_EQ(shoal_reg_lease(r, 30, m1, 200, n[0], 100, 77, 0, &f, &c, &e), 0);
    CHECK_EQ(f, 77);
    CHECK_EQ(c, 64); /* SHOAL_REG_LEASE_SPAN_MAX */
    /* A second node: two fetchers, ceil(59 / 4). A complete one fetches
     * nothing and takes no share: ceil(44 / 4), not ceil(44 / 6). */
    announce1(r, 40, 2, "a", m1, 0, false);
    CHECK_EQ(shoal_reg_lease(r, 40, m1, 200, n[1], 64, 0, 0, &f, &c, &e), 0);
    CHECK_EQ(f, 141);
    CHECK_EQ(c, 15);
    announce1(r, 50, 3, "a", m1, 100, true);
    CHECK_EQ(shoal_reg_lease_done(r, 50, m1, n[0], 13, 64), 0);
    CHECK_EQ(shoal_reg_lease(r, 60, m1, 200, n[0], 64, 0, 0, &f, &c, &e), 0);
    CHECK_EQ(f, 156);
    CHECK_EQ(c, 11);
    /* The other fetcher gone (its span free again), the last one takes
     * all it asks for: not ceil(48 / 2). */
    shoal_reg_remove_node(r, n[1]);
    CHECK_EQ(shoal_reg_lease(r, 70, m1, 200, n[0], 64, 167, 0, &f, &c, &e), 0);
    CHECK_EQ(f, 167);
    CHECK_EQ(c, 33);
    shoal_reg_free(r);
}

static void test_lease_limits_and_loss(void)
{
    struct shoal_reg *r = mkreg(500);
    uint8_t m1[32], n1[32];
    key(m1, 2, 1);
    key(n1, 1, 1);
    uint32_t f, c;
    uint64_t e;
    /* Node unknown to the registry: created on the fly. */
    for (int i = 0; i < SHOAL_REG_LEASES_PER_NODE; i++) {
        CHECK_EQ(shoal_reg_lease(r, 10, m1, 1000, n1, 1, 0, 0, &f, &c, &e), 0);
        CHECK_EQ(f, (uint32_t)i);
        CHECK_EQ(c, 1);
    }
    CHECK_EQ(shoal_reg_lease(r, 10, m1, 1000, n1, 1, 0, 0, &f, &c, &e), SHOAL_EBUSY);
    CHECK_EQ(c, 0);
    CHECK_EQ(shoal_reg_lease_done(r, 20, m1, n1, 0, 1), 0);
    CHECK_EQ(shoal_reg_lease(r, 20, m1, 1000, n1, 1, 0, 0, &f, &c, &e), 0);
    CHECK_EQ(f, 8);
    /* Unknown chunk count is refused. */
    uint8_t m2[32];
    key(m2, 2, 2);
    CHECK_EQ(shoal_reg_lease(r, 20, m2, 0, n1, 1, 0, 0, &f, &c, &e), SHOAL_ETOOBIG);
    CHECK_EQ(shoal_reg_lease(r, 20, m2, SHOAL_REG_CHUNKS_MAX + 1, n1, 1, 0, 0, &f, &c, &e),
             SHOAL_ETOOBIG);

    /* Removing the node frees its leases at once, and the chunk it fetched
     * (nobody announces the whole manifest, so nobody else has it). */
    shoal_reg_remove_node(r, n1);
    uint8_t n2[32], n3[32];
    key(n2, 1, 2);
    key(n3, 1, 3);
    CHECK_EQ(shoal_reg_lease(r, 30, m1, 1000, n2, 64, 0, 0, &f, &c, &e), 0);
    CHECK_EQ(f, 0);
    CHECK_EQ(c, 64);
    CHECK_EQ(shoal_reg_lease_done(r, 30, m1, n2, 0, 64), 0);
    CHECK_EQ(shoal_reg_lease(r, 31, m1, 1000, n3, 64, 0, 0, &f, &c, &e), 0);
    CHECK_EQ(f, 64);
    /* n2 never announced holding m1 and falls silent: once the TTL has
     * passed since the last done, the swarm has lost what it fetched. */
    CHECK_EQ(shoal_reg_lease(r, 30 + 600, m1, 1000, n3, 64, 0, 0, &f, &c, &e), 0);
    CHECK_EQ(f, 0);
    CHECK_EQ(c, 64);
    shoal_reg_free(r);
}

static void test_manifests(void)
{
    struct shoal_reg *r = mkreg(1000);
    uint8_t id1[32], id2[32];
    key(id1, 3, 1);
    key(id2, 3, 2);
    const char *c1 = "0123456789abcdef0123456789abcdef01234567";
    CHECK_EQ(shoal_reg_put_manifest(r, id1, 0, "org/model", c1, 1234, (const uint8_t *)"SIGNED", 6),
             0);
    struct shoal_reg_manifest mf;
    CHECK_EQ(shoal_reg_manifest_by_id(r, id1, &mf), 0);
    CHECK(strcmp(mf.repo, "org/model") == 0);
    CHECK(strcmp(mf.commit, c1) == 0);
    CHECK(strncmp(mf.repo_at_rev, "org/model@0123", 14) == 0);
    CHECK_EQ(mf.nchunks, 1234);
    CHECK(mf.signed_len == 6 && memcmp(mf.signed_bytes, "SIGNED", 6) == 0);
    char name[300];
    snprintf(name, sizeof(name), "org/model@%s", c1);
    CHECK_EQ(shoal_reg_manifest_by_name(r, name, strlen(name), &mf), 0);
    CHECK(memcmp(mf.id, id1, 32) == 0);
    CHECK_EQ(shoal_reg_manifest_by_name(r, name, strlen(name) - 1, &mf), SHOAL_ENOTFOUND);
    CHECK_EQ(shoal_reg_manifest_by_id(r, id2, &mf), SHOAL_ENOTFOUND);
    /* Re-put is a no-op; a new id under the same name takes the name. */
    CHECK_EQ(shoal_reg_put_manifest(r, id1, 0, "org/model", c1, 1234, (const uint8_t *)"X", 1), 0);
    CHECK_EQ(shoal_reg_manifest_by_id(r, id1, &mf), 0);
    CHECK_EQ(mf.signed_len, 6);
    CHECK_EQ(shoal_reg_put_manifest(r, id2, 0, "org/model", c1, 99, (const uint8_t *)"NEW", 3), 0);
    CHECK_EQ(shoal_reg_manifest_by_name(r, name, strlen(name), &mf), 0);
    CHECK(memcmp(mf.id, id2, 32) == 0);
    CHECK_EQ(shoal_reg_manifest_by_id(r, id1, &mf), 0);
    CHECK_EQ(shoal_reg_put_manifest(r, id2, 0, "org@x", c1, 1, (const uint8_t *)"x", 1),
             SHOAL_EBADMSG);
    /* Registered manifests survive expiry with no holders. */
    shoal_reg_expire(r, 100000);
    CHECK_EQ(shoal_reg_manifest_by_id(r, id1, &mf), 0);
    shoal_reg_free(r);
}

/* A model and a dataset with one org/name@commit are two releases: the
 * dataset's name carries "datasets/", and neither name finds the other. */
static void test_manifest_dataset_name(void)
{
    struct shoal_reg *r = mkreg(1000);
    uint8_t idm[32], idd[32];
    key(idm, 4, 1);
    key(idd, 4, 2);
    const char *c1 = "0123456789abcdef0123456789abcdef01234567";
    char model[300], dataset[300];
    snprintf(model, sizeof model, "acme/ds@%s", c1);
    snprintf(dataset, sizeof dataset, "datasets/acme/ds@%s", c1);
    CHECK_EQ(shoal_reg_put_manifest(r, idd, 1, "acme/ds", c1, 7, (const uint8_t *)"D", 1), 0);
    struct shoal_reg_manifest mf;
    CHECK_EQ(shoal_reg_manifest_by_name(r, model, strlen(model), &mf), SHOAL_ENOTFOUND);
    CHECK_EQ(shoal_reg_manifest_by_name(r, dataset, strlen(dataset), &mf), 0);
    CHECK(memcmp(mf.id, idd, 32) == 0);
    CHECK(strcmp(mf.repo, "acme/ds") == 0 && strcmp(mf.repo_at_rev, dataset) == 0);
    CHECK_EQ(mf.repo_type, 1);
    /* The model does not take the dataset's name, nor the other way round. */
    CHECK_EQ(shoal_reg_put_manifest(r, idm, 0, "acme/ds", c1, 9, (const uint8_t *)"M", 1), 0);
    CHECK_EQ(shoal_reg_manifest_by_name(r, model, strlen(model), &mf), 0);
    CHECK(memcmp(mf.id, idm, 32) == 0 && strcmp(mf.repo_at_rev, model) == 0);
    CHECK_EQ(shoal_reg_manifest_by_name(r, dataset, strlen(dataset), &mf), 0);
    CHECK(memcmp(mf.id, idd, 32) == 0);
    /* A rollout of the dataset names it, and status finds its holders'
     * manifest by that name. */
    CHECK_EQ(shoal_reg_rollout_set(r, dataset, NULL, false), 0);
    struct shoal_reg_desired want[4];
    CHECK_EQ(shoal_reg_rollouts_for(r, NULL, true, want, 4), 1);
    CHECK(want[0].known && memcmp(want[0].manifest_id, idd, 32) == 0);
    /* The prefix counts against the name's length. */
    char repo[SHOAL_REG_REPO_MAX];
    size_t rl = SHOAL_REG_REPO_MAX - 41 - 4;
    memset(repo, 'a', rl);
    repo[3] = '/';
    repo[rl] = '\0';
    CHECK_EQ(shoal_reg_put_manifest(r, idm, 0, repo, c1, 1, (const uint8_t *)"x", 1), 0);
    key(idm, 4, 3);
    CHECK_EQ(shoal_reg_put_manifest(r, idm, 1, repo, c1, 1, (const uint8_t *)"x", 1),
             SHOAL_ETOOBIG);
    shoal_reg_free(r);
}

static void test_rollouts(void)
{
    struct shoal_reg *r = mkreg(1000);
    uint8_t id1[32];
    key(id1, 3, 1);
    const char *c1 = "0123456789abcdef0123456789abcdef01234567";
    char name[300];
    snprintf(name, sizeof(name), "org/model@%s", c1);
    CHECK_EQ(shoal_reg_rollout_set(r, "nonsense", NULL, false), SHOAL_EBADMSG);
    /* Only names nodes can act on: org/name at 40 lowercase hex digits. */
    CHECK_EQ(shoal_reg_rollout_set(r, "bad@name", NULL, false), SHOAL_EBADMSG);
    CHECK_EQ(shoal_reg_rollout_set(r, "org/m@abc", NULL, false), SHOAL_EBADMSG);
    CHECK_EQ(shoal_reg_rollout_set(r, "org/m@ABABABABABABABABABABABABABABABABABABABAB", NULL, false), SHOAL_EBADMSG);
    CHECK_EQ(shoal_reg_rollout_set(r, "org//m@abababababababababababababababababababab", NULL, false), SHOAL_EBADMSG);
    CHECK_EQ(shoal_reg_rollout_set(r, "org/@abababababababababababababababababababab", NULL, false), SHOAL_EBADMSG);
    CHECK_EQ(shoal_reg_rollout_set(r, "o rg/m@abababababababababababababababababababab", NULL, false), SHOAL_EBADMSG);
    CHECK_EQ(shoal_reg_rollout_set(r, name, "east", false), 0);
    CHECK_EQ(shoal_reg_rollout_set(r, name, "east", false), 0); /* no duplicate */
    CHECK_EQ(shoal_reg_rollout_set(r, "org/other@abababababababababababababababababababab", NULL, false), 0);
    struct shoal_reg_desired d[8];
    CHECK_EQ(shoal_reg_rollouts_for(r, "east", false, d, 8), 2);
    CHECK_EQ(shoal_reg_rollouts_for(r, "west", false, d, 8), 1);
    CHECK(strcmp(d[0].repo_at_rev, "org/other@abababababababababababababababababababab") == 0);
    CHECK(!d[0].known);
    CHECK_EQ(shoal_reg_rollouts_for(r, "east", true, d, 8), 0); /* none registered */
    CHECK_EQ(shoal_reg_put_manifest(r, id1, 0, "org/model", c1, 10, (const uint8_t *)"S", 1), 0);
    CHECK_EQ(shoal_reg_rollouts_for(r, "east", true, d, 8), 1);
    CHECK(d[0].known && memcmp(d[0].manifest_id, id1, 32) == 0);

    /* Status counts only the rollout's zone. */
    announce1(r, 0, 1, "east", id1, 10, true);
    announce1(r, 0, 2, "east", id1, 3, false);
    uint8_t other[32];
    key(other, 3, 9);
    announce1(r, 0, 3, "east", other, 3, false);
    announce1(r, 0, 4, "west", id1, 10, true);
    uint32_t comp, part, none;
    shoal_reg_rollout_status(r, 10, id1, &comp, &part, &none);
    CHECK_EQ(comp, 1);
    CHECK_EQ(part, 1);
    CHECK_EQ(none, 1);
    CHECK_EQ(shoal_reg_rollout_set(r, name, "east", true), 0);
    CHECK_EQ(shoal_reg_rollout_set(r, name, "east", true), SHOAL_ENOTFOUND);
    shoal_reg_rollout_status(r, 10, id1, &comp, &part, &none);
    CHECK_EQ(comp, 2); /* no rollout: every live node counts */
    CHECK_EQ(part + none, 2);
    shoal_reg_free(r);
}

/* Nodes the registry forgot are counted as gone by rollout status (QA19
 * F4: a node shut out by an expired credential vanished from every count,
 * and 7 of 8 nodes read as done), by why they went, in the rollout's
 * zones, until they come back or gone_keep_ms passes. */
static void test_rollout_gone(void)
{
    struct shoal_reg *r = mkreg(1000);
    uint8_t id1[32], pk[32];
    key(id1, 3, 1);
    const char *c1 = "0123456789abcdef0123456789abcdef01234567";
    char name[300];
    snprintf(name, sizeof(name), "org/model@%s", c1);
    CHECK_EQ(shoal_reg_put_manifest(r, id1, 0, "org/model", c1, 10, (const uint8_t *)"S", 1), 0);
    CHECK_EQ(shoal_reg_rollout_set(r, name, "east", false), 0);
    for (uint32_t n = 1; n <= 4; n++)
        announce1(r, 0, n, "east", id1, 100, true);
    announce1(r, 0, 5, "west", id1, 100, true);
    uint32_t lost, left, refused, comp, part, none;
    shoal_reg_rollout_gone(r, 10, name, &lost, &left, &refused);
    CHECK_EQ(lost + left + refused, 0);
    /* Node 1 says BYE, node 2 is revoked, 3 and 5 go silent; 4 stays. */
    key(pk, 1, 1);
    CHECK_EQ(shoal_reg_remove_node_why(r, pk, SHOAL_REG_GONE_LEFT), 0);
    key(pk, 1, 2);
    CHECK_EQ(shoal_reg_remove_node_why(r, pk, SHOAL_REG_GONE_LOST), 0);
    shoal_reg_node_refused(r, 500, pk);
    announce1(r, 900, 4, "east", id1, 100, true);
    shoal_reg_expire(r, 1500);
    shoal_reg_rollout_status(r, 1500, id1, &comp, &part, &none);
    CHECK_EQ(comp, 1);
    CHECK_EQ(part + none, 0);
    shoal_reg_rollout_gone(r, 1500, name, &lost, &left, &refused);
    CHECK_EQ(left, 1);
    CHECK_EQ(refused, 1);
    CHECK_EQ(lost, 1); /* node 3; node 5 is in a zone the rollout does not name */
    /* A refusal of a key never known adds nothing. */
    key(pk, 1, 77);
    shoal_reg_node_refused(r, 1500, pk);
    shoal_reg_rollout_gone(r, 1500, name, &lost, &left, &refused);
    CHECK_EQ(lost + left + refused, 3);
    /* Node 3 comes back: no longer gone. */
    announce1(r, 1600, 3, "east", id1, 100, true);
    shoal_reg_rollout_gone(r, 1600, name, &lost, &left, &refused);
    CHECK_EQ(lost, 0);
    CHECK_EQ(left + refused, 2);
    /* Remembered for gone_keep_ms (24 h) only. */
    shoal_reg_rollout_gone(r, 1600 + 25ull * 3600 * 1000, name, &lost, &left, &refused);
    CHECK_EQ(lost + left + refused, 0);
    shoal_reg_free(r);
}

/* A rollout's ref moves with the newest rollout of the repository naming
 * it (QA19 F11), is listed with its entry and sent with the desired
 * release; a zone's entry and a global one of one release share it. */
static void test_rollout_ref(void)
{
    struct shoal_reg *r = mkreg(1000);
    const char *a = "org/model@0123456789abcdef0123456789abcdef01234567";
    const char *b = "org/model@abababababababababababababababababababab";
    const char *o = "org/other@abababababababababababababababababababab";
    CHECK_EQ(shoal_reg_rollout_set_ref(r, a, NULL, "main"), 0);
    CHECK_EQ(shoal_reg_rollout_set_ref(r, o, NULL, "main"), 0);
    CHECK_EQ(shoal_reg_rollout_set_ref(r, b, "east", "main"), 0);
    char big[SHOAL_REG_REF_MAX + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_EQ(shoal_reg_rollout_set_ref(r, a, NULL, big), SHOAL_ETOOBIG);
    struct shoal_reg_rollout_entry e[8];
    CHECK_EQ(shoal_reg_rollouts_all(r, e, 8), 3);
    CHECK(strcmp(e[0].ref, "") == 0);     /* a: b took main of org/model */
    CHECK(strcmp(e[1].ref, "main") == 0); /* another repository keeps its own */
    CHECK(strcmp(e[2].ref, "main") == 0 && strcmp(e[2].zone, "east") == 0);
    struct shoal_reg_desired d[8];
    CHECK_EQ(shoal_reg_rollouts_for(r, "east", false, d, 8), 3);
    CHECK(strcmp(d[2].repo_at_rev, b) == 0 && strcmp(d[2].ref, "main") == 0);
    CHECK(strcmp(d[0].ref, "") == 0);
    /* b for every zone too, without a ref: east still gets it with main. */
    CHECK_EQ(shoal_reg_rollout_set(r, b, NULL, false), 0);
    CHECK_EQ(shoal_reg_rollouts_for(r, "east", false, d, 8), 3);
    CHECK(strcmp(d[2].repo_at_rev, b) == 0 && strcmp(d[2].ref, "main") == 0);
    /* A save that failed puts the refs back, by release and zone (an
     * undone removal comes back last). */
    static struct shoal_reg_rollout_refs saved, cur;
    shoal_reg_rollout_refs_get(r, &saved);
    CHECK_EQ(shoal_reg_rollout_set_ref(r, a, NULL, "main"), 0);
    CHECK_EQ(shoal_reg_rollouts_all(r, e, 8), 4);
    CHECK(strcmp(e[0].ref, "main") == 0 && strcmp(e[2].ref, "") == 0);
    shoal_reg_rollout_refs_get(r, &cur);
    CHECK(!shoal_reg_rollout_refs_equal(&saved, &cur));
    shoal_reg_rollout_refs_restore(r, &saved);
    CHECK_EQ(shoal_reg_rollouts_all(r, e, 8), 4);
    CHECK(strcmp(e[0].ref, "") == 0 && strcmp(e[2].ref, "main") == 0);
    shoal_reg_rollout_refs_get(r, &cur);
    CHECK(shoal_reg_rollout_refs_equal(&saved, &cur));
    CHECK_EQ(shoal_reg_rollout_set(r, b, "east", true), 0);
    CHECK_EQ(shoal_reg_rollout_set(r, b, "east", false), 0);
    shoal_reg_rollout_refs_restore(r, &saved);
    CHECK_EQ(shoal_reg_rollouts_all(r, e, 8), 4);
    CHECK(strcmp(e[3].repo_at_rev, b) == 0 && strcmp(e[3].zone, "east") == 0 &&
          strcmp(e[3].ref, "main") == 0);
    shoal_reg_free(r);
}

static void test_limits(void)
{
    struct shoal_reg_config c;
    shoal_reg_config_default(&c);
    c.max_nodes = 3;
    c.max_manifests = 8; /* 4 of them for unregistered ids */
    c.max_entries_per_node = 3;
    struct shoal_reg *r = NULL;
    REQUIRE(shoal_reg_new(&r, &c) == 0);
    uint8_t pk[32];
    struct shoal_reg_have h[5];
    memset(h, 0, sizeof(h));
    for (int i = 0; i < 5; i++)
        key(h[i].manifest_id, 2, (uint32_t)i);
    for (int i = 0; i < 5; i++)
        h[i].have_chunks = 1;
    key(pk, 1, 1);
    CHECK_EQ(shoal_reg_announce(r, 0, pk, "h:1", "z", h, 4, NULL), SHOAL_ELIMIT);
    CHECK_EQ(shoal_reg_announce(r, 0, pk, "h:1", "z", h, 3, NULL), 0);
    /* h2 is known, h3 takes the last unregistered record, h4 is skipped:
     * the announce still applies. */
    key(pk, 1, 2);
    struct shoal_reg_role roles[3];
    CHECK_EQ(shoal_reg_announce(r, 0, pk, "h:2", "z", h + 2, 3, roles), 0);
    CHECK(!roles[0].untracked && !roles[1].untracked && roles[2].untracked);
    CHECK(!roles[2].fetcher && roles[2].import_mod == 0);
    struct shoal_reg_stats st;
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.nodes, 2);
    CHECK_EQ(st.entries, 5);
    CHECK_EQ(st.manifests, 4);
    CHECK_EQ(st.unregistered, 4);
    CHECK_EQ(st.entries_skipped, 1);
    key(pk, 1, 3);
    CHECK_EQ(shoal_reg_announce(r, 0, pk, "h:3", "z", h, 1, NULL), 0);
    key(pk, 1, 4);
    CHECK_EQ(shoal_reg_announce(r, 0, pk, "h:4", "z", h, 1, NULL), SHOAL_ELIMIT);
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.nodes, 3);
    char longaddr[200];
    memset(longaddr, 'x', sizeof(longaddr) - 1);
    longaddr[199] = 0;
    key(pk, 1, 1);
    CHECK_EQ(shoal_reg_announce(r, 0, pk, longaddr, "z", h, 1, NULL), SHOAL_ETOOBIG);
    c.max_unregistered_per_node = 70000;
    struct shoal_reg *r2 = NULL;
    CHECK_EQ(shoal_reg_new(&r2, &c), -EINVAL);
    shoal_reg_free(r);
}

/* Hardening 2: one node announcing junk ids cannot fill the manifest
 * table. Its holdings of unregistered ids are capped per node, records it
 * drops go at once, those ids fill at most half the table, and registered
 * manifests keep the other half. */
static void test_unregistered_quota(void)
{
    struct shoal_reg_config c;
    shoal_reg_config_default(&c);
    c.max_manifests = 32;
    c.max_unregistered_per_node = 4;
    struct shoal_reg *r = NULL;
    REQUIRE(shoal_reg_new(&r, &c) == 0);
    struct shoal_reg_have h[8];
    struct shoal_reg_role roles[8];
    struct shoal_reg_stats st;
    uint8_t pk[32];
    memset(h, 0, sizeof(h));
    key(pk, 1, 1);
    for (uint32_t round = 0; round < 3; round++) {
        for (uint32_t i = 0; i < 8; i++) {
            key(h[i].manifest_id, 3, round * 8 + i);
            h[i].have_chunks = 1;
            h[i].total_chunks = 10;
        }
        CHECK_EQ(shoal_reg_announce(r, 0, pk, "h:1", "z", h, 8, roles), 0);
        for (uint32_t i = 0; i < 8; i++)
            CHECK_EQ(roles[i].untracked, i >= 4);
        /* The previous round's ids are forgotten at once. */
        shoal_reg_stats(r, &st);
        CHECK_EQ(st.manifests, 4);
        CHECK_EQ(st.entries, 4);
    }
    CHECK_EQ(st.entries_skipped, 12);
    /* Three more nodes fill the unregistered half (16). */
    for (uint32_t n = 2; n <= 4; n++) {
        key(pk, 1, n);
        for (uint32_t i = 0; i < 4; i++)
            key(h[i].manifest_id, 4, n * 4 + i);
        CHECK_EQ(shoal_reg_announce(r, 0, pk, "h:2", "z", h, 4, roles), 0);
        CHECK(!roles[3].untracked);
    }
    key(pk, 1, 5);
    key(h[0].manifest_id, 5, 0);
    CHECK_EQ(shoal_reg_announce(r, 0, pk, "h:5", "z", h, 1, roles), 0);
    CHECK(roles[0].untracked);
    /* Registered manifests have the other half. */
    for (uint32_t i = 0; i < 16; i++) {
        uint8_t id[32];
        char commit[41];
        key(id, 6, i);
        snprintf(commit, sizeof commit, "%040u", i);
        CHECK_EQ(shoal_reg_put_manifest(r, id, 0, "org/m", commit, 10, (const uint8_t *)"x", 1),
                 0);
    }
    /* ... and are recorded for anyone, past the unregistered quota. */
    key(h[0].manifest_id, 6, 0);
    CHECK_EQ(shoal_reg_announce(r, 0, pk, "h:5", "z", h, 1, roles), 0);
    CHECK(!roles[0].untracked);
    struct shoal_reg_peer p[4];
    CHECK_EQ(shoal_reg_peers(r, 0, h[0].manifest_id, NULL, "z", p, 4), 1);
    /* A node with 6 releases announces before it re-puts them (a tracker
     * restart): 4 recorded at first, all 6 once they are registered. */
    shoal_reg_free(r);
    REQUIRE(shoal_reg_new(&r, &c) == 0);
    key(pk, 1, 9);
    for (uint32_t i = 0; i < 6; i++) {
        key(h[i].manifest_id, 7, i);
        h[i].have_chunks = 10;
        h[i].complete = true;
    }
    CHECK_EQ(shoal_reg_announce(r, 0, pk, "h:9", "z", h, 6, roles), 0);
    CHECK(roles[4].untracked && roles[5].untracked);
    for (uint32_t i = 0; i < 6; i++) {
        char commit[41];
        snprintf(commit, sizeof commit, "%040u", i);
        CHECK_EQ(shoal_reg_put_manifest(r, h[i].manifest_id, 0, "org/m", commit, 10,
                                        (const uint8_t *)"x", 1), 0);
    }
    CHECK_EQ(shoal_reg_announce(r, 1, pk, "h:9", "z", h, 6, roles), 0);
    for (uint32_t i = 0; i < 6; i++)
        CHECK(!roles[i].untracked);
    CHECK_EQ(shoal_reg_peers(r, 1, h[5].manifest_id, NULL, "z", p, 4), 1);
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.entries, 6);
    CHECK_EQ(st.unregistered, 0);
    /* Junk from this node is still capped: its registered holdings do not
     * count, so 4 more unregistered are recorded and no more. */
    struct shoal_reg_have h2[12];
    memcpy(h2, h, 6 * sizeof(h[0]));
    for (uint32_t i = 6; i < 12; i++) {
        memset(&h2[i], 0, sizeof(h2[i]));
        key(h2[i].manifest_id, 8, i);
        h2[i].have_chunks = 1;
    }
    struct shoal_reg_role roles2[12];
    CHECK_EQ(shoal_reg_announce(r, 2, pk, "h:9", "z", h2, 12, roles2), 0);
    for (uint32_t i = 0; i < 12; i++)
        CHECK_EQ(roles2[i].untracked, i >= 10);
    shoal_reg_free(r);
}


/* Hardening 4: registered manifests are not kept forever. One nobody
 * holds or uses for manifest_ttl_ms is forgotten; when the table is full,
 * the least recently used one nobody holds makes room; bytes held by a
 * sender outlive the manifest. */
static void test_manifest_forget(void)
{
    struct shoal_reg_config c;
    shoal_reg_config_default(&c);
    c.max_manifests = 4;
    c.manifest_ttl_ms = 1000;
    c.node_ttl_ms = 100000;
    struct shoal_reg *r = NULL;
    REQUIRE(shoal_reg_new(&r, &c) == 0);
    uint8_t id[6][32];
    char commit[6][41];
    uint8_t body[6][100];
    for (int i = 0; i < 6; i++) {
        key(id[i], 9, (uint32_t)i);
        snprintf(commit[i], sizeof commit[i], "%040d", i);
        memset(body[i], 'a' + i, sizeof body[i]);
    }
    /* Four registered (table full), used at 0, 10, 20, 30; one held. */
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(shoal_reg_put_manifest(r, id[i], 0, "org/m", commit[i], 10, body[i], 100), 0);
        shoal_reg_manifest_used(r, id[i], (uint64_t)i * 10);
    }
    announce1(r, 0, 1, "z", id[0], 10, true);
    struct shoal_reg_manifest mf;
    REQUIRE(shoal_reg_manifest_by_id(r, id[1], &mf) == 0);
    const uint8_t *held = mf.signed_bytes;
    shoal_reg_bytes_hold(held);
    /* A fifth: the least recently used one nobody holds (id1) goes. */
    CHECK_EQ(shoal_reg_put_manifest(r, id[4], 0, "org/m", commit[4], 10, body[4], 100), 0);
    CHECK_EQ(shoal_reg_manifest_by_id(r, id[1], &mf), SHOAL_ENOTFOUND);
    CHECK_EQ(shoal_reg_manifest_by_id(r, id[0], &mf), 0);
    char name[64];
    snprintf(name, sizeof name, "org/m@%s", commit[1]);
    CHECK_EQ(shoal_reg_manifest_by_name(r, name, strlen(name), &mf), SHOAL_ENOTFOUND);
    /* ... while a sender's reference keeps its bytes. */
    CHECK(memcmp(held, body[1], 100) == 0);
    shoal_reg_bytes_release(held);
    struct shoal_reg_stats st;
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.registered, 4);
    CHECK_EQ(st.manifests_forgotten, 1);
    /* TTL: id2 fetched at 1500 stays at 2000; id3 (30) and id4 (put at the
     * registry's latest time, 30) go; id0 is held and stays; so does one a
     * rollout names, unheld (nodes are told to pull it by that name). */
    snprintf(name, sizeof name, "org/m@%s", commit[4]);
    CHECK_EQ(shoal_reg_rollout_set(r, name, NULL, false), 0);
    shoal_reg_manifest_used(r, id[2], 1500);
    announce1(r, 1500, 1, "z", id[0], 10, true);
    shoal_reg_expire(r, 2000);
    CHECK_EQ(shoal_reg_manifest_by_id(r, id[0], &mf), 0);
    CHECK_EQ(shoal_reg_manifest_by_id(r, id[2], &mf), 0);
    CHECK_EQ(shoal_reg_manifest_by_id(r, id[3], &mf), SHOAL_ENOTFOUND);
    CHECK_EQ(shoal_reg_manifest_by_id(r, id[4], &mf), 0);
    CHECK_EQ(shoal_reg_rollout_set(r, name, NULL, true), 0);
    shoal_reg_expire(r, 2001);
    CHECK_EQ(shoal_reg_manifest_by_id(r, id[4], &mf), SHOAL_ENOTFOUND);
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.registered, 2);
    CHECK_EQ(st.manifests_forgotten, 3);
    /* A forgotten manifest can be put again. */
    CHECK_EQ(shoal_reg_put_manifest(r, id[3], 0, "org/m", commit[3], 10, body[3], 100), 0);
    snprintf(name, sizeof name, "org/m@%s", commit[3]);
    CHECK_EQ(shoal_reg_manifest_by_name(r, name, strlen(name), &mf), 0);
    /* Full of manifests that are held: a new one is refused. */
    for (int i = 2; i <= 3; i++)
        announce1(r, 2000, 10 + (uint32_t)i, "z", id[i], 1, false);
    CHECK_EQ(shoal_reg_put_manifest(r, id[5], 0, "org/m", commit[5], 10, body[5], 100), 0);
    announce1(r, 2000, 20, "z", id[5], 1, false);
    CHECK_EQ(shoal_reg_put_manifest(r, id[1], 0, "org/m", commit[1], 10, body[1], 100),
             SHOAL_ELIMIT);
    shoal_reg_free(r);
}

static void test_prometheus(void)
{
    struct shoal_reg *r = mkreg(1000);
    uint8_t m1[32];
    key(m1, 2, 1);
    for (uint32_t i = 0; i < 30; i++)
        announce1(r, 5000 + i * 100, i, "a", m1, 1, false);
    CHECK(shoal_reg_announce_rate(r, 8000) > 2.9 && shoal_reg_announce_rate(r, 8000) < 3.1);
    CHECK(shoal_reg_announce_rate(r, 30000) == 0);
    struct shoal_buf b;
    shoal_buf_init(&b, 1 << 16);
    CHECK_EQ(shoal_reg_prometheus(r, 8000, &b), 0);
    REQUIRE(shoal_buf_append(&b, "", 1) == 0);
    const char *t = (const char *)b.data;
    CHECK(strstr(t, "\nshoal_tracker_nodes 30\n") != NULL);
    CHECK(strstr(t, "\nshoal_tracker_announces_total 30\n") != NULL);
    CHECK(strstr(t, "# TYPE shoal_tracker_leases_granted_total counter\n") != NULL);
    CHECK(strstr(t, "\nshoal_tracker_announces_per_second 3\n") != NULL);
    shoal_buf_free(&b);
    shoal_reg_free(r);
}

/* Random announces, removals and expiries on a small key space, checked
 * after each step against a plain model of who holds what. Exercises the
 * hash-table deletion and the swap-removal bookkeeping. */
#define CN 40
#define CM 12
static void test_churn(void)
{
    struct shoal_reg *r = mkreg(1u << 30);
    static uint8_t model[CN][CM]; /* 0 none, else have+1 */
    static bool alive[CN];
    static uint32_t rank[CN][CM]; /* role rank last told (SHOAL_REG_RANK_NONE) */
    memset(model, 0, sizeof(model));
    memset(alive, 0, sizeof(alive));
    memset(rank, 0xff, sizeof(rank));
    uint64_t s = 7;
    int bad = 0;
    for (int step = 0; step < 4000; step++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t node = (uint32_t)(s >> 33) % CN;
        uint32_t op = (uint32_t)(s >> 20) % 10;
        uint8_t pk[32];
        key(pk, 1, node);
        if (op == 0) {
            shoal_reg_remove_node(r, pk);
            alive[node] = false;
            memset(model[node], 0, CM);
            memset(rank[node], 0xff, sizeof(rank[node]));
        } else {
            struct shoal_reg_have h[CM];
            struct shoal_reg_role ro[CM];
            uint32_t hm[CM];
            size_t n = 0;
            uint8_t had[CM];
            memcpy(had, model[node], CM);
            memset(model[node], 0, CM);
            for (uint32_t m = 0; m < CM; m++) {
                if ((s >> (m + 3)) & 1 && ((s >> 40) % 3)) {
                    memset(&h[n], 0, sizeof(h[n]));
                    key(h[n].manifest_id, 2, m);
                    h[n].have_chunks = 1 + (uint32_t)((s >> 50) + m) % 200;
                    model[node][m] = (uint8_t)h[n].have_chunks;
                    hm[n] = m;
                    n++;
                }
            }
            REQUIRE(shoal_reg_announce(r, 1, pk, "x:1", node % 2 ? "a" : "b", h, n, ro) == 0);
            alive[node] = true;
            /* Roles: a rank is held by one node per (zone, manifest), a
             * node is left without one only when all 6 are held, a rank
             * only ever falls while the node keeps the manifest, and the
             * role matches the rank (2 fetchers, 4 importers). */
            uint32_t old[CM];
            memcpy(old, rank[node], sizeof(old));
            memset(rank[node], 0xff, sizeof(rank[node]));
            for (size_t k = 0; k < n; k++) {
                uint32_t m = hm[k], rk = ro[k].rank, held = 0, top = rk;
                bool clash = false;
                for (uint32_t j = 0; j < CN; j++) {
                    if (j == node || !alive[j] || j % 2 != node % 2 || !model[j][m] ||
                        rank[j][m] == SHOAL_REG_RANK_NONE)
                        continue;
                    held++;
                    clash |= rank[j][m] == rk;
                    if (rank[j][m] > top)
                        top = rank[j][m];
                }
                bad += clash || (rk == SHOAL_REG_RANK_NONE ? held != 6 : rk >= 6);
                bad += had[m] && old[m] != SHOAL_REG_RANK_NONE && rk > old[m];
                /* Shares split over the ranks up to the zone's highest
                 * (every node here holds chunks): the fetchers' while no
                 * importer rank is taken. */
                uint32_t mod = 0, rem = 0;
                if (rk < 2 && top < 2) {
                    mod = top + 1;
                    rem = rk;
                } else if (rk >= 2 && rk < 6) {
                    mod = top - 1 < 4 ? top - 1 : 4;
                    rem = rk - 2;
                }
                bad += ro[k].fetcher != (rk < 2) || ro[k].import_mod != mod ||
                       ro[k].import_rem != rem;
                rank[node][m] = rk;
            }
        }
        if (step % 97 == 0 || step == 3999) {
            uint64_t entries = 0, nodes = 0;
            for (uint32_t i = 0; i < CN; i++) {
                nodes += alive[i];
                for (uint32_t m = 0; m < CM; m++)
                    entries += model[i][m] != 0;
            }
            struct shoal_reg_stats st;
            shoal_reg_stats(r, &st);
            bad += st.entries != entries || st.nodes != nodes;
            for (uint32_t m = 0; m < CM; m++) {
                uint8_t mid[32];
                key(mid, 2, m);
                struct shoal_reg_peer p[SHOAL_REG_PEERS_MAX];
                size_t got = shoal_reg_peers(r, 1, mid, NULL, "a", p, CN);
                size_t expect = 0;
                for (uint32_t i = 0; i < CN; i++)
                    expect += model[i][m] != 0;
                bad += got != expect;
                for (size_t k = 0; k < got; k++) {
                    uint32_t idx;
                    memcpy(&idx, p[k].node_pk + 4, 4);
                    bad += idx >= CN || model[idx][m] != p[k].have_chunks;
                }
            }
        }
    }
    CHECK_EQ(bad, 0);
    shoal_reg_free(r);
}

/* Review 1: one identity cycling through zone names must not fill the
 * zone table; zones nobody is in are forgotten, rollout zones are kept. */
static void test_zone_churn(void)
{
    struct shoal_reg *r = mkreg(1000);
    uint8_t evil[32], good[32], m1[32];
    key(evil, 1, 666);
    key(good, 1, 1);
    key(m1, 2, 1);
    CHECK_EQ(shoal_reg_rollout_set(r, "org/m@abababababababababababababababababababab", "keep", false), 0);
    char z[32];
    int refused = 0;
    for (int i = 0; i < 3 * SHOAL_REG_ZONES_MAX; i++) {
        snprintf(z, sizeof(z), "junk%d", i);
        refused += shoal_reg_announce(r, 10, evil, "1.2.3.4:1", z, NULL, 0, NULL) != 0;
    }
    CHECK_EQ(refused, 0);
    CHECK_EQ(shoal_reg_announce(r, 10, good, "10.0.0.1:7000", "us-east-1a", NULL, 0, NULL), 0);
    /* The rollout's zone survived the churn: a node there still sees it. */
    struct shoal_reg_desired d[4];
    CHECK_EQ(shoal_reg_rollouts_for(r, "keep", false, d, 4), 1);
    /* Zone moves carry the node's holdings along for peer lists. */
    announce1(r, 20, 5, "a", m1, 3, false);
    announce1(r, 20, 5, "b", m1, 3, false);
    struct shoal_reg_peer p[4];
    CHECK_EQ(shoal_reg_peers(r, 20, m1, NULL, "b", p, 4), 1);
    CHECK(strcmp(p[0].zone, "b") == 0);
    uint32_t comp, part, none;
    CHECK_EQ(shoal_reg_rollout_set(r, "org/m@abababababababababababababababababababab", "b", false), 0);
    shoal_reg_rollout_status(r, 20, m1, &comp, &part, &none);
    CHECK_EQ(comp + part + none, 3); /* no manifest by that name: everyone */
    CHECK_EQ(shoal_reg_rollout_set(r, "org/m@abababababababababababababababababababab", "keep", true), 0);
    CHECK_EQ(shoal_reg_rollout_set(r, "org/m@abababababababababababababababababababab", "keep", true), SHOAL_ENOTFOUND);
    shoal_reg_free(r);
}

/* A registry with lease and fetched TTLs |lease_ms| / |fetched_ttl_ms|, no
 * fetcher ranking, one manifest |mid| of |nchunks| chunks, and nodes |a|
 * and |b| announced holding nothing of it (|c| is a third key); |h| is
 * their HAVE entry, ready to be announced again. */
static struct shoal_reg *two_nodes(uint64_t lease_ms, uint64_t fetched_ttl_ms, uint32_t nchunks,
                                   uint8_t mid[32], uint8_t a[32], uint8_t b[32], uint8_t c[32],
                                   struct shoal_reg_have *h)
{
    struct shoal_reg_config cfg;
    shoal_reg_config_default(&cfg);
    cfg.node_ttl_ms = 90000;
    cfg.lease_ms = lease_ms;
    cfg.fetched_ttl_ms = fetched_ttl_ms;
    cfg.fetcher_leases = 0;
    struct shoal_reg *r = NULL;
    REQUIRE(shoal_reg_new(&r, &cfg) == 0);
    key(mid, 3, 1);
    key(a, 1, 1);
    key(b, 1, 2);
    key(c, 1, 3);
    const char *commit = "0123456789012345678901234567890123456789";
    REQUIRE(shoal_reg_put_manifest(r, mid, 0, "org/m", commit, nchunks, (const uint8_t *)"x",
                                   1) == 0);
    *h = (struct shoal_reg_have){.total_chunks = nchunks};
    memcpy(h->manifest_id, mid, 32);
    REQUIRE(shoal_reg_announce(r, 0, a, "10.0.0.1:1", "z", h, 1, NULL) == 0);
    REQUIRE(shoal_reg_announce(r, 0, b, "10.0.0.2:1", "z", h, 1, NULL) == 0);
    return r;
}

/* Review 2: chunks fetched from the origin by a node that then vanished
 * become leasable again, even while other holders stay alive; a complete
 * holder keeps them fetched; a lie (done without fetching) is undone by
 * the fetched TTL while nobody is complete. */
static void test_fetched_return(void)
{
    uint8_t mid[32], a[32], b[32], c[32];
    struct shoal_reg_have h;
    struct shoal_reg *r = two_nodes(60000, 100000, 16, mid, a, b, c, &h);
    uint32_t f, n;
    uint64_t e;
    CHECK_EQ(shoal_reg_lease(r, 1000, mid, 0, a, 8, 0, 0, &f, &n, &e), 0);
    CHECK(f == 0 && n == 8);
    CHECK_EQ(shoal_reg_lease_done(r, 2000, mid, a, 0, 8), 0);
    CHECK_EQ(shoal_reg_lease(r, 3000, mid, 0, b, 8, 0, 0, &f, &n, &e), 0);
    CHECK(f == 8 && n == 8);
    CHECK_EQ(shoal_reg_lease_done(r, 4000, mid, b, 8, 8), 0);
    /* A crashes; B keeps announcing its 8 chunks. */
    shoal_reg_remove_node(r, a);
    h.have_chunks = 8;
    REQUIRE(shoal_reg_announce(r, 30000, b, "10.0.0.2:1", "z", &h, 1, NULL) == 0);
    CHECK_EQ(shoal_reg_lease(r, 30000, mid, 0, c, 8, 0, 0, &f, &n, &e), 0);
    CHECK_EQ(f, 0);
    CHECK_EQ(n, 8);
    CHECK_EQ(shoal_reg_lease_done(r, 31000, mid, c, 0, 8), 0);
    /* C completes the manifest and announces it; B leaving then costs
     * nothing: C has B's chunks. */
    struct shoal_reg_have hc = h;
    hc.have_chunks = 16;
    hc.complete = true;
    REQUIRE(shoal_reg_announce(r, 32000, c, "10.0.0.3:1", "z", &hc, 1, NULL) == 0);
    shoal_reg_remove_node(r, b);
    CHECK_EQ(shoal_reg_lease(r, 33000, mid, 0, c, 8, 0, 0, &f, &n, &e), 0);
    CHECK_EQ(n, 0);
    /* Long after, still complete somewhere: C vouches for B's span (the
     * TTL does not apply to it), and its own 0..7, which nobody else
     * vouches for, is leasable again but not by C. */
    REQUIRE(shoal_reg_announce(r, 200000, c, "10.0.0.3:1", "z", &hc, 1, NULL) == 0);
    CHECK_EQ(shoal_reg_lease(r, 200000, mid, 0, c, 8, 0, 0, &f, &n, &e), 0);
    CHECK_EQ(n, 0);
    /* C stops claiming completeness: after the fetched TTL (long passed)
     * the spans nobody vouches for become leasable again. */
    hc.complete = false;
    hc.have_chunks = 3;
    REQUIRE(shoal_reg_announce(r, 200000, c, "10.0.0.3:1", "z", &hc, 1, NULL) == 0);
    CHECK_EQ(shoal_reg_lease(r, 200001, mid, 0, c, 8, 0, 0, &f, &n, &e), 0);
    CHECK_EQ(n, 8);
    shoal_reg_free(r);
}

/* A restarted node (new session): the leases its old process held are
 * void at once, and the chunks it reported fetched are leasable again
 * unless it announces the whole manifest or another node does; other
 * nodes' leases and credit stay, and an unknown key changes nothing. */
static void test_node_restarted(void)
{
    uint8_t mid[32], a[32], b[32], c[32];
    struct shoal_reg_have h;
    struct shoal_reg *r = two_nodes(120000, 120000, 32, mid, a, b, c, &h);
    uint32_t f, n, nl = 99, nc = 99;
    uint64_t e;
    /* A fetched 0..7 and holds 8..15 and 16..23 leased; B holds 24..31. */
    CHECK_EQ(shoal_reg_lease(r, 1000, mid, 0, a, 8, 0, 0, &f, &n, &e), 0);
    CHECK(f == 0 && n == 8);
    CHECK_EQ(shoal_reg_lease_done(r, 2000, mid, a, 0, 8), 0);
    CHECK_EQ(shoal_reg_lease(r, 2000, mid, 0, a, 8, 0, 0, &f, &n, &e), 0);
    CHECK(f == 8 && n == 8);
    CHECK_EQ(shoal_reg_lease(r, 2000, mid, 0, a, 8, 0, 0, &f, &n, &e), 0);
    CHECK(f == 16 && n == 8);
    CHECK_EQ(shoal_reg_lease(r, 2000, mid, 0, b, 8, 0, 0, &f, &n, &e), 0);
    CHECK(f == 24 && n == 8);
    /* Before the restart nothing is free, long before any TTL. */
    CHECK_EQ(shoal_reg_lease(r, 3000, mid, 0, c, 8, 0, 0, &f, &n, &e), 0);
    CHECK_EQ(n, 0);

    /* Unknown keys: nothing to void. */
    CHECK_EQ(shoal_reg_node_restarted(r, c, &nl, &nc), 0);
    CHECK(nl == 0 && nc == 0);
    struct shoal_reg_stats st;
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.leases_active, 3);

    /* A comes back with 3 chunks of 32: both its leases and its 8 fetched
     * chunks are free again at once. */
    h.have_chunks = 3;
    REQUIRE(shoal_reg_announce(r, 4000, a, "10.0.0.1:1", "z", &h, 1, NULL) == 0);
    CHECK_EQ(shoal_reg_node_restarted(r, a, &nl, &nc), 1);
    CHECK_EQ(nl, 2);
    CHECK_EQ(nc, 8);
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.leases_active, 1);
    CHECK_EQ(st.leases_expired, 0);
    /* The old lease of 8..15 is gone: its lease_done is refused. */
    CHECK_EQ(shoal_reg_lease_done(r, 4000, mid, a, 8, 8), SHOAL_ENOTFOUND);
    CHECK_EQ(shoal_reg_lease(r, 4000, mid, 0, a, 32, 0, 0, &f, &n, &e), 0);
    CHECK(f == 0 && n == 24);
    /* B's lease is untouched: nothing beyond A's span is free. */
    CHECK_EQ(shoal_reg_lease(r, 4000, mid, 0, c, 32, 0, 0, &f, &n, &e), 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(shoal_reg_lease_done(r, 5000, mid, b, 24, 8), 0);

    /* A second session of A: its new lease is void again; a node
     * announcing complete keeps its credit. */
    CHECK_EQ(shoal_reg_lease_done(r, 5000, mid, a, 0, 24), 0);
    h.have_chunks = 32;
    h.complete = true;
    REQUIRE(shoal_reg_announce(r, 6000, a, "10.0.0.1:1", "z", &h, 1, NULL) == 0);
    CHECK_EQ(shoal_reg_node_restarted(r, a, &nl, &nc), 0);
    CHECK(nl == 0 && nc == 0);
    CHECK_EQ(shoal_reg_lease(r, 6000, mid, 0, c, 32, 0, 0, &f, &n, &e), 0);
    CHECK_EQ(n, 0);
    /* B restarts while A is complete: B's credit stays with the swarm
     * (A has the chunks), nothing is re-leased. */
    struct shoal_reg_have hb = h;
    hb.have_chunks = 0;
    hb.complete = false;
    REQUIRE(shoal_reg_announce(r, 7000, b, "10.0.0.2:1", "z", &hb, 1, NULL) == 0);
    CHECK_EQ(shoal_reg_node_restarted(r, b, &nl, &nc), 0);
    CHECK(nl == 0 && nc == 0);
    CHECK_EQ(shoal_reg_lease(r, 7000, mid, 0, c, 32, 0, 0, &f, &n, &e), 0);
    CHECK_EQ(n, 0);
    /* A, the only complete holder, leaves: nobody vouches for B's credit
     * any more, so all 32 are free at once, B's 24..31 too (K18). */
    CHECK_EQ(shoal_reg_remove_node(r, a), 0);
    CHECK_EQ(shoal_reg_lease(r, 8000, mid, 0, c, 32, 0, 0, &f, &n, &e), 0);
    CHECK(f == 0 && n == 32);
    shoal_reg_free(r);
}

/* Whether a BYE's session is an old one (the server then forgets
 * nothing): only a known key recorded in another session, none counting
 * as a session of its own. */
static void test_node_session_other(void)
{
    uint8_t mid[32], a[32], b[32], c[32];
    struct shoal_reg_have h;
    struct shoal_reg *r = two_nodes(120000, 120000, 32, mid, a, b, c, &h);
    uint8_t s1[SHOAL_REG_SESSION_LEN], s2[SHOAL_REG_SESSION_LEN];
    memset(s1, 1, sizeof s1);
    memset(s2, 1, sizeof s2);
    s2[SHOAL_REG_SESSION_LEN - 1] = 2;
    /* Unknown: nothing to keep. */
    CHECK(!shoal_reg_node_session_other(r, c, s1));
    /* Known without a session yet (no login recorded, an older client). */
    CHECK(!shoal_reg_node_session_other(r, a, NULL));
    CHECK(shoal_reg_node_session_other(r, a, s1));
    CHECK_EQ(shoal_reg_node_session(r, a, s2, NULL), 0);
    CHECK(!shoal_reg_node_session_other(r, a, s2));
    CHECK(shoal_reg_node_session_other(r, a, s1));
    CHECK(shoal_reg_node_session_other(r, a, NULL));
    /* Read-only: asking changed nothing. */
    CHECK_EQ(shoal_reg_node_session(r, a, s2, NULL), 1);
    shoal_reg_free(r);
}

/* Process sessions: the same id again is a reconnect (reported with the
 * leases the node holds, which stay good), anything else is not; the
 * record is per key, replaced by each call, and goes with the node. */
static void test_node_session(void)
{
    uint8_t mid[32], a[32], b[32], c[32];
    struct shoal_reg_have h;
    struct shoal_reg *r = two_nodes(120000, 120000, 32, mid, a, b, c, &h);
    uint8_t s1[SHOAL_REG_SESSION_LEN], s2[SHOAL_REG_SESSION_LEN];
    uint32_t f, n, nl = 99;
    uint64_t e;
    memset(s1, 1, sizeof s1);
    memset(s2, 1, sizeof s2);
    s2[SHOAL_REG_SESSION_LEN - 1] = 2; /* differs in the last byte only */

    /* An unknown key records nothing. */
    CHECK_EQ(shoal_reg_node_session(r, c, s1, &nl), 0);
    CHECK_EQ(shoal_reg_node_session(r, c, s1, &nl), 0);
    CHECK_EQ(nl, 99);
    /* A's first login: nothing to compare with. */
    CHECK_EQ(shoal_reg_node_session(r, a, s1, &nl), 0);
    CHECK_EQ(shoal_reg_lease(r, 1000, mid, 0, a, 8, 0, 0, &f, &n, &e), 0);
    CHECK(f == 0 && n == 8);
    CHECK_EQ(shoal_reg_lease(r, 1000, mid, 0, a, 8, 0, 0, &f, &n, &e), 0);
    CHECK(f == 8 && n == 8);
    CHECK_EQ(shoal_reg_lease_done(r, 1500, mid, a, 8, 8), 0);
    /* Back with the same id: a reconnect, and its open lease is kept. */
    CHECK_EQ(shoal_reg_node_session(r, a, s1, &nl), 1);
    CHECK_EQ(nl, 1);
    CHECK_EQ(shoal_reg_lease_done(r, 2000, mid, a, 0, 8), 0);
    CHECK_EQ(shoal_reg_node_session(r, a, s1, NULL), 1);
    /* Another key's id is its own: B with A's id is no reconnect. */
    CHECK_EQ(shoal_reg_node_session(r, b, s1, &nl), 0);
    /* A different id, then none, then the first one again: none of these
     * is a reconnect, as each replaces the record. */
    CHECK_EQ(shoal_reg_node_session(r, a, s2, &nl), 0);
    CHECK_EQ(shoal_reg_node_session(r, a, s1, &nl), 0);
    CHECK_EQ(shoal_reg_node_session(r, a, NULL, &nl), 0);
    CHECK_EQ(shoal_reg_node_session(r, a, NULL, &nl), 0);
    CHECK_EQ(shoal_reg_node_session(r, a, s1, &nl), 0);
    CHECK_EQ(shoal_reg_node_session(r, a, s1, &nl), 1);
    CHECK_EQ(nl, 0);
    /* A removed and back (as after its node TTL): a new record. */
    shoal_reg_remove_node(r, a);
    REQUIRE(shoal_reg_announce(r, 3000, a, "10.0.0.1:1", "z", &h, 1, NULL) == 0);
    CHECK_EQ(shoal_reg_node_session(r, a, s1, &nl), 0);
    CHECK_EQ(shoal_reg_node_session(r, a, s1, &nl), 1);
    shoal_reg_free(r);
}

/* Review 9: one node claims a release's every chunk with instant
 * LEASE_DONEs. Whether it then announces the release complete or holding
 * nothing, its claim runs out after the fetched TTL (nobody else vouches
 * for it), the honest node is granted the chunks, and the claimant cannot
 * take them back before the honest node had a TTL to ask. A complete node
 * other than the fetcher still keeps the credit. */
static void test_fetched_claim_runs_out(void)
{
    for (int lie = 0; lie < 2; lie++) {
        uint8_t mid[32], a[32], b[32], c[32];
        struct shoal_reg_have h;
        struct shoal_reg *r = two_nodes(60000, 4000, 64, mid, a, b, c, &h);
        uint32_t f, n, got = 0;
        uint64_t e;
        /* A (the claimant) takes every chunk and reports it done at once. */
        for (int i = 0; i < 100; i++) {
            CHECK_EQ(shoal_reg_lease(r, 100, mid, 0, a, 64, 0, 0, &f, &n, &e), 0);
            if (n == 0)
                break;
            CHECK_EQ(shoal_reg_lease_done(r, 100, mid, a, f, n), 0);
            got += n;
        }
        CHECK_EQ(got, 64);
        struct shoal_reg_have ha = h;
        ha.have_chunks = lie ? 64 : 0;
        ha.complete = lie;
        REQUIRE(shoal_reg_announce(r, 200, a, "10.0.0.1:1", "z", &ha, 1, NULL) == 0);
        /* Before the TTL nobody gets anything: the claim stands. */
        CHECK_EQ(shoal_reg_lease(r, 4000, mid, 0, b, 64, 0, 0, &f, &n, &e), 0);
        CHECK_EQ(n, 0);
        /* After it, A asks first and repeatedly (and keeps announcing):
         * it gets nothing back; B does. */
        REQUIRE(shoal_reg_announce(r, 4200, a, "10.0.0.1:1", "z", &ha, 1, NULL) == 0);
        for (int i = 0; i < 3; i++) {
            CHECK_EQ(shoal_reg_lease(r, 4200 + (uint64_t)i, mid, 0, a, 64, 0, 0, &f, &n, &e), 0);
            CHECK_EQ(n, 0);
        }
        CHECK_EQ(shoal_reg_lease(r, 4300, mid, 0, b, 64, 0, 0, &f, &n, &e), 0);
        CHECK(f == 0 && n == 64);
        CHECK_EQ(shoal_reg_lease_done(r, 5000, mid, b, 0, 64), 0);
        struct shoal_reg_stats st;
        shoal_reg_stats(r, &st);
        CHECK_EQ(st.fetched_expired, 64);
        /* C completes from B: a complete node other than B vouches for
         * B's credit past the TTL, also once A's bar ran out. */
        struct shoal_reg_have hc = h;
        hc.have_chunks = 64;
        hc.complete = true;
        REQUIRE(shoal_reg_announce(r, 5100, c, "10.0.0.3:1", "z", &hc, 1, NULL) == 0);
        REQUIRE(shoal_reg_announce(r, 100000, a, "10.0.0.1:1", "z", &ha, 1, NULL) == 0);
        REQUIRE(shoal_reg_announce(r, 100000, c, "10.0.0.3:1", "z", &hc, 1, NULL) == 0);
        CHECK_EQ(shoal_reg_lease(r, 100000, mid, 0, a, 64, 0, 0, &f, &n, &e), 0);
        CHECK_EQ(n, 0);
        shoal_reg_stats(r, &st);
        CHECK_EQ(st.fetched_expired, 64);
        shoal_reg_free(r);
    }
}

/* The bar covers only the claimant's expired spans, ends with the node,
 * and a barred node is still granted chunks outside it. */
static void test_fetched_bar_scope(void)
{
    uint8_t mid[32], a[32], b[32], c[32];
    struct shoal_reg_have h;
    struct shoal_reg *r = two_nodes(60000, 1000, 32, mid, a, b, c, &h);
    uint32_t f, n;
    uint64_t e;
    /* A claims 8..15 and 24..27; B leases 0..7 and keeps the lease. */
    CHECK_EQ(shoal_reg_lease(r, 10, mid, 0, a, 8, 8, 0, &f, &n, &e), 0);
    CHECK(f == 8 && n == 8);
    CHECK_EQ(shoal_reg_lease_done(r, 10, mid, a, 8, 8), 0);
    CHECK_EQ(shoal_reg_lease(r, 10, mid, 0, a, 4, 24, 0, &f, &n, &e), 0);
    CHECK(f == 24 && n == 4);
    CHECK_EQ(shoal_reg_lease_done(r, 10, mid, a, 24, 4), 0);
    CHECK_EQ(shoal_reg_lease(r, 10, mid, 0, b, 8, 0, 0, &f, &n, &e), 0);
    CHECK(f == 0 && n == 8);
    /* After the TTL, A asking from 8 skips its bars: 16..23, then 28..31,
     * then (wrapping) nothing else is free to it. */
    CHECK_EQ(shoal_reg_lease(r, 2000, mid, 0, a, 32, 8, 0, &f, &n, &e), 0);
    CHECK(f == 16 && n == 8);
    CHECK_EQ(shoal_reg_lease(r, 2000, mid, 0, a, 32, 8, 0, &f, &n, &e), 0);
    CHECK(f == 28 && n == 4);
    CHECK_EQ(shoal_reg_lease(r, 2000, mid, 0, a, 32, 0, 0, &f, &n, &e), 0);
    CHECK_EQ(n, 0);
    /* C gets the barred spans. */
    CHECK_EQ(shoal_reg_lease(r, 2000, mid, 0, c, 32, 0, 0, &f, &n, &e), 0);
    CHECK(f == 8 && n == 8);
    /* A leaves: a new node taking its index is not barred. */
    shoal_reg_remove_node(r, a);
    uint8_t d[32];
    memcpy(d, c, 32);
    d[20] = 9;
    REQUIRE(shoal_reg_announce(r, 2100, d, "10.0.0.4:1", "z", &h, 1, NULL) == 0);
    CHECK_EQ(shoal_reg_lease(r, 2100, mid, 0, d, 4, 24, 0, &f, &n, &e), 0);
    CHECK(f == 24 && n == 4);
    shoal_reg_free(r);

    /* A bar ends fetched_ttl_ms after the claim ran out. */
    r = two_nodes(60000, 1000, 32, mid, a, b, c, &h);
    CHECK_EQ(shoal_reg_lease(r, 10, mid, 0, a, 8, 0, 0, &f, &n, &e), 0);
    CHECK_EQ(shoal_reg_lease_done(r, 10, mid, a, 0, 8), 0);
    CHECK_EQ(shoal_reg_lease(r, 1500, mid, 0, a, 8, 0, 0, &f, &n, &e), 0);
    CHECK(f == 8 && n == 8);
    CHECK_EQ(shoal_reg_lease(r, 2499, mid, 0, a, 8, 0, 0, &f, &n, &e), 0);
    CHECK(f == 16 && n == 8);
    CHECK_EQ(shoal_reg_lease(r, 2500, mid, 0, a, 8, 0, 0, &f, &n, &e), 0);
    CHECK(f == 0 && n == 8);
    shoal_reg_free(r);
}

/* Review 9: a LEASE reply lost with the connection. The node comes back in
 * the same session and asks again: it is granted the lease it holds (the
 * one covering its hint first), once; a lease it reported on, or one
 * granted on the new connection, is not handed out twice. */
static void test_lease_regrant(void)
{
    uint8_t mid[32], a[32], b[32], c[32];
    struct shoal_reg_have h;
    struct shoal_reg *r = two_nodes(60000, 600000, 64, mid, a, b, c, &h);
    uint8_t s1[SHOAL_REG_SESSION_LEN];
    memset(s1, 7, sizeof s1);
    uint32_t f, n, nl;
    uint64_t e, e1;
    CHECK_EQ(shoal_reg_node_session(r, a, s1, &nl), 0);
    /* Three leases: 0..7 reported in part, 8..15 and 16..23 not. */
    CHECK_EQ(shoal_reg_lease(r, 1000, mid, 0, a, 8, 0, 0, &f, &n, &e), 0);
    CHECK(f == 0 && n == 8);
    CHECK_EQ(shoal_reg_lease(r, 1000, mid, 0, a, 8, 0, 0, &f, &n, &e1), 0);
    CHECK(f == 8 && n == 8);
    CHECK_EQ(shoal_reg_lease(r, 1000, mid, 0, a, 8, 0, 0, &f, &n, &e), 0);
    CHECK(f == 16 && n == 8);
    /* On the same connection a request is a request for more. */
    CHECK_EQ(shoal_reg_lease(r, 1100, mid, 0, a, 8, 10, 0, &f, &n, &e), 0);
    CHECK(f == 24 && n == 8);
    CHECK_EQ(shoal_reg_lease_done(r, 1200, mid, a, 24, 8), 0);
    /* The connection drops; the same process is back. */
    CHECK_EQ(shoal_reg_node_session(r, a, s1, &nl), 1);
    CHECK_EQ(nl, 3);
    CHECK_EQ(shoal_reg_lease_done(r, 2000, mid, a, 0, 4), 0);
    /* Asking from chunk 10: the lease 8..15 again, with its own expiry. */
    CHECK_EQ(shoal_reg_lease(r, 2000, mid, 0, a, 8, 10, 0, &f, &n, &e), 0);
    CHECK(f == 8 && n == 8);
    CHECK_EQ(e, e1);
    /* Next: 16..23 (0..7 was reported on, so the node knows it). */
    CHECK_EQ(shoal_reg_lease(r, 2000, mid, 0, a, 8, 40, 0, &f, &n, &e), 0);
    CHECK(f == 16 && n == 8);
    /* Then new chunks, from the hint. */
    CHECK_EQ(shoal_reg_lease(r, 2000, mid, 0, a, 8, 40, 0, &f, &n, &e), 0);
    CHECK(f == 40 && n == 8);
    struct shoal_reg_stats st;
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.leases_regranted, 2);
    /* Nobody else was granted any of A's spans meanwhile. */
    CHECK_EQ(shoal_reg_lease(r, 2000, mid, 0, b, 64, 0, 0, &f, &n, &e), 0);
    CHECK(f == 32 && n == 8);
    /* A new session voids instead (shoal_reg_node_restarted), and a node
     * without a session never gets a lease twice. */
    CHECK_EQ(shoal_reg_node_session(r, b, NULL, &nl), 0);
    CHECK_EQ(shoal_reg_node_session(r, b, NULL, &nl), 0);
    CHECK_EQ(shoal_reg_lease(r, 2100, mid, 0, b, 8, 32, 0, &f, &n, &e), 0);
    CHECK(f == 48 && n == 8);
    shoal_reg_free(r);
}

/* QA N2: a restarted tracker knows none of the leases nodes still fetch.
 * A node re-claims each: granted first come, never longer than lease_ms
 * nor over chunks another node leased or fetched meanwhile, nor over its
 * own bars; the kept lease of a node that only reconnected is confirmed
 * as it is. */
static void test_lease_reclaim(void)
{
    uint8_t mid[32], a[32], b[32], c[32];
    struct shoal_reg_have h;
    /* lease_ms 60 s, fetched TTL 1 s. */
    struct shoal_reg *r = two_nodes(60000, 1000, 64, mid, a, b, c, &h);
    uint32_t f, n;
    uint64_t e;
    struct shoal_reg_stats st;
    /* A tracker that has run a while granted every lease a node holds:
     * a claim of a span it does not hold is refused (review F1: any
     * credentialed node could take exact spans past its share). */
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1000, mid, a, 0, 16, 20000, false, &e), SHOAL_EBUSY);
    /* A fresh tracker: A's claim of 0..15 with 20 s left is granted as is. */
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1000, mid, a, 0, 16, 20000, true, &e), 0);
    CHECK_EQ(e, 21000);
    /* Later, the kept lease is still confirmed (a plain reconnect). */
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1000, mid, a, 0, 16, 20000, false, &e), 0);
    CHECK_EQ(e, 21000);
    /* Nobody else gets any of it, and A reports against it. */
    CHECK_EQ(shoal_reg_lease(r, 1000, mid, 0, b, 64, 0, 0, &f, &n, &e), 0);
    CHECK(f == 16 && n == 48);
    CHECK_EQ(shoal_reg_lease_done(r, 1100, mid, a, 0, 4), 0);
    /* C cannot claim chunks of B's lease. */
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1100, mid, c, 20, 4, 20000, true, &e), SHOAL_EBUSY);
    shoal_reg_free(r);

    /* A claim cannot stretch a lease: at most lease_ms from now. */
    r = two_nodes(60000, 1000, 64, mid, a, b, c, &h);
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1000, mid, a, 8, 8, 3600000, true, &e), 0);
    CHECK_EQ(e, 61000);
    /* First come: B leased 16..23 before A came back; A's claim of 16..31
     * is refused, whole; so is one over chunks B fetched. */
    CHECK_EQ(shoal_reg_lease(r, 1000, mid, 0, b, 8, 16, 0, &f, &n, &e), 0);
    CHECK(f == 16 && n == 8);
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1000, mid, a, 16, 16, 5000, true, &e), SHOAL_EBUSY);
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1000, mid, a, 20, 1, 5000, true, &e), SHOAL_EBUSY);
    CHECK_EQ(shoal_reg_lease_done(r, 1000, mid, b, 16, 8), 0);
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1000, mid, a, 23, 2, 5000, true, &e), SHOAL_EBUSY);
    /* ...and 24..31 stay free for anyone. */
    CHECK_EQ(shoal_reg_lease(r, 1000, mid, 0, c, 8, 24, 0, &f, &n, &e), 0);
    CHECK(f == 24 && n == 8);
    /* The claimer's own fetched chunks may be in a claim (it reported
     * them on this connection before re-claiming the lease). */
    CHECK_EQ(shoal_reg_lease(r, 1000, mid, 0, a, 4, 40, 0, &f, &n, &e), 0);
    CHECK(f == 40 && n == 4);
    CHECK_EQ(shoal_reg_lease_done(r, 1000, mid, a, 40, 4), 0);
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1000, mid, a, 40, 8, 5000, true, &e), 0);
    CHECK_EQ(shoal_reg_lease(r, 1000, mid, 0, b, 8, 40, 0, &f, &n, &e), 0);
    CHECK(f == 48 && n == 8);
    /* Malformed claims: empty, too long, past the end, nothing left. */
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1000, mid, a, 60, 0, 5000, true, &e), SHOAL_EBADMSG);
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1000, mid, a, 0, SHOAL_REG_LEASE_SPAN_MAX + 1, 5000, true, &e),
             SHOAL_EBADMSG);
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1000, mid, a, 60, 5, 5000, true, &e), SHOAL_EBADMSG);
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1000, mid, a, 60, 4, 0, true, &e), SHOAL_EBADMSG);
    /* An unpublished manifest has no size to check a span against. */
    uint8_t other[32];
    key(other, 3, 9);
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1000, other, a, 0, 4, 5000, true, &e), SHOAL_ETOOBIG);
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.leases_reclaimed, 2);
    CHECK_EQ(st.leases_reclaim_refused, 3);
    shoal_reg_free(r);

    /* A node barred from a span (its fetched credit ran out unvouched)
     * cannot claim it back; another node can lease it. */
    r = two_nodes(60000, 1000, 64, mid, a, b, c, &h);
    CHECK_EQ(shoal_reg_lease(r, 10, mid, 0, a, 8, 0, 0, &f, &n, &e), 0);
    CHECK_EQ(shoal_reg_lease_done(r, 10, mid, a, 0, 8), 0);
    CHECK_EQ(shoal_reg_lease(r, 1500, mid, 0, c, 1, 32, 0, &f, &n, &e), 0); /* expires it */
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1500, mid, a, 0, 8, 5000, true, &e), SHOAL_EBUSY);
    CHECK_EQ(shoal_reg_lease(r, 1500, mid, 0, b, 8, 0, 0, &f, &n, &e), 0);
    CHECK(f == 0 && n == 8);
    /* Nor a span overlapping another lease of the claimer: claiming
     * shifted spans would hold its chunks past lease_ms. */
    CHECK_EQ(shoal_reg_lease(r, 1500, mid, 0, c, 4, 20, 0, &f, &n, &e), 0);
    CHECK(f == 20 && n == 4);
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1500, mid, c, 22, 4, 5000, true, &e), SHOAL_EBUSY);
    CHECK_EQ(shoal_reg_lease_reclaim(r, 1500, mid, c, 20, 4, 5000, true, &e), 0); /* confirmed */
    /* The per-node cap holds for claims too (C holds two leases already:
     * 32 and 20..23). */
    for (uint32_t held = 2; held <= SHOAL_REG_LEASES_PER_NODE; held++)
        CHECK_EQ(shoal_reg_lease_reclaim(r, 1500, mid, c, 34 + 2 * held, 2, 5000, true, &e),
                 held < SHOAL_REG_LEASES_PER_NODE ? 0 : SHOAL_EBUSY);
    shoal_reg_free(r);

    /* The same tracker process kept A's lease across a reconnect: the
     * claim confirms it (no second grant), expiry unchanged. */
    r = two_nodes(60000, 1000, 64, mid, a, b, c, &h);
    uint8_t s1[SHOAL_REG_SESSION_LEN];
    memset(s1, 7, sizeof s1);
    uint32_t nl;
    uint64_t e1;
    CHECK_EQ(shoal_reg_node_session(r, a, s1, &nl), 0);
    CHECK_EQ(shoal_reg_lease(r, 1000, mid, 0, a, 8, 0, 0, &f, &n, &e1), 0);
    CHECK(f == 0 && n == 8);
    CHECK_EQ(shoal_reg_node_session(r, a, s1, &nl), 1);
    CHECK_EQ(shoal_reg_lease_reclaim(r, 2000, mid, a, 0, 8, 60000, true, &e), 0);
    CHECK_EQ(e, e1);
    /* Confirmed: the next request is for new chunks, not a regrant. */
    CHECK_EQ(shoal_reg_lease(r, 2000, mid, 0, a, 8, 0, 0, &f, &n, &e), 0);
    CHECK(f == 8 && n == 8);
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.leases_regranted, 0);
    CHECK_EQ(st.leases_active, 2);
    shoal_reg_free(r);
}

/* Review 3: holders of nothing must not crowd seeds out of the walk. */
static void test_peers_sparse_seeds(void)
{
    struct shoal_reg *r = mkreg(100000);
    uint8_t mid[32];
    key(mid, 2, 7);
    for (uint32_t i = 0; i < 10000; i++) {
        uint8_t k[32];
        key(k, 1, i);
        struct shoal_reg_have h = { .have_chunks = i < 3 ? 100 : 0, .total_chunks = 100,
                                    .complete = i < 3 };
        memcpy(h.manifest_id, mid, 32);
        REQUIRE(shoal_reg_announce(r, 1000, k, "10.0.0.1:7000", "z1", &h, 1, NULL) == 0);
    }
    static struct shoal_reg_peer out[64];
    /* Every list has all three seeds, ahead of the holders of nothing that
     * fill it up. */
    int bad_lists = 0;
    for (uint32_t t = 0; t < 1000; t++) {
        uint8_t k[32];
        key(k, 1, 5000 + t);
        size_t got = shoal_reg_peers(r, 1000, mid, k, "z1", out, 50);
        bool ok = got == 50;
        for (size_t i = 0; i < got && ok; i++) {
            uint32_t id;
            memcpy(&id, out[i].node_pk + 4, 4);
            ok = (i < 3) == (id < 3) && (i < 3) == (out[i].have_chunks > 0);
        }
        bad_lists += !ok;
    }
    CHECK_EQ(bad_lists, 0);
    /* A holder that gains chunks becomes a candidate; one that loses them
     * (re-announces 0) stops being one and only fills up behind them. */
    uint8_t k5[32], k0[32];
    key(k5, 1, 5);
    key(k0, 1, 0);
    struct shoal_reg_have h = { .have_chunks = 9, .total_chunks = 100 };
    memcpy(h.manifest_id, mid, 32);
    REQUIRE(shoal_reg_announce(r, 1000, k5, "10.0.0.5:7000", "z1", &h, 1, NULL) == 0);
    h.have_chunks = 0;
    REQUIRE(shoal_reg_announce(r, 1000, k0, "10.0.0.0:7000", "z1", &h, 1, NULL) == 0);
    size_t n = shoal_reg_peers(r, 1000, mid, NULL, "z1", out, 50);
    CHECK_EQ(n, 50);
    bool saw5 = false, saw0 = false;
    for (size_t i = 0; i < 3; i++) {
        saw5 = saw5 || memcmp(out[i].node_pk, k5, 32) == 0;
        saw0 = saw0 || memcmp(out[i].node_pk, k0, 32) == 0;
    }
    CHECK(saw5 && !saw0);
    uint32_t comp, part, none;
    shoal_reg_rollout_status(r, 1000, mid, &comp, &part, &none);
    CHECK_EQ(comp, 2);
    CHECK_EQ(part, 1);
    CHECK_EQ(none, 9997);
    shoal_reg_free(r);
}

/* Review 4: announces cannot size lease state, and a node at its lease
 * cap cannot charge the global lease budget. */
static void test_lease_budget(void)
{
    struct shoal_reg_config cfg;
    shoal_reg_config_default(&cfg);
    cfg.max_lease_chunks = 100;
    cfg.min_fetchers = 0; /* spans for 2 fetchers */
    struct shoal_reg *r = NULL;
    REQUIRE(shoal_reg_new(&r, &cfg) == 0);
    uint8_t evil[32], good[32], m[4][32];
    key(evil, 1, 666);
    key(good, 1, 1);
    const char *commits[3] = { "0000000000000000000000000000000000000001",
                               "0000000000000000000000000000000000000002",
                               "0000000000000000000000000000000000000003" };
    for (int i = 0; i < 4; i++)
        key(m[i], 3, (uint32_t)i);
    for (int i = 0; i < 3; i++)
        REQUIRE(shoal_reg_put_manifest(r, m[i], 0, "org/m", commits[i], 50,
                                       (const uint8_t *)"x", 1) == 0);
    /* An invented manifest claiming 16 Mi chunks gets no lease state. */
    struct shoal_reg_have h = { .have_chunks = 1, .total_chunks = SHOAL_REG_CHUNKS_MAX };
    memcpy(h.manifest_id, m[3], 32);
    REQUIRE(shoal_reg_announce(r, 0, evil, "1.2.3.4:1", "z", &h, 1, NULL) == 0);
    uint32_t f, n;
    uint64_t e;
    CHECK_EQ(shoal_reg_lease(r, 0, m[3], 0, evil, 1, 0, 0, &f, &n, &e), SHOAL_ETOOBIG);
    for (int i = 0; i < SHOAL_REG_LEASES_PER_NODE; i++)
        CHECK_EQ(shoal_reg_lease(r, 0, m[0], 0, evil, 1, 0, 0, &f, &n, &e), 0);
    CHECK_EQ(shoal_reg_lease(r, 0, m[1], 0, evil, 1, 0, 0, &f, &n, &e), SHOAL_EBUSY);
    /* m[1] was not charged: m[2] still fits the budget. */
    CHECK_EQ(shoal_reg_lease(r, 0, m[2], 0, good, 8, 0, 0, &f, &n, &e), 0);
    CHECK_EQ(n, 8);
    CHECK_EQ(shoal_reg_lease(r, 0, m[1], 0, good, 8, 0, 0, &f, &n, &e), SHOAL_ELIMIT);
    shoal_reg_free(r);
}

/* Review 10: more than 32768 entries per node (16-bit capacity wrap). */
static void test_many_entries(void)
{
    struct shoal_reg_config cfg;
    shoal_reg_config_default(&cfg);
    cfg.max_entries_per_node = 40000;
    cfg.max_unregistered_per_node = 40000;
    cfg.max_manifests = 100000; /* half for ids nobody registered */
    struct shoal_reg *r = NULL;
    REQUIRE(shoal_reg_new(&r, &cfg) == 0);
    static struct shoal_reg_have h[40000];
    memset(h, 0, sizeof(h));
    for (uint32_t i = 0; i < 40000; i++) {
        key(h[i].manifest_id, 2, i);
        h[i].have_chunks = 1 + i;
    }
    uint8_t pk[32];
    key(pk, 1, 1);
    CHECK_EQ(shoal_reg_announce(r, 0, pk, "h:1", "z", h, 40000, NULL), 0);
    struct shoal_reg_stats st;
    shoal_reg_stats(r, &st);
    CHECK_EQ(st.entries, 40000);
    struct shoal_reg_peer p[2];
    CHECK_EQ(shoal_reg_peers(r, 0, h[39999].manifest_id, NULL, "z", p, 2), 1);
    CHECK_EQ(p[0].have_chunks, 40000);
    struct shoal_reg_config bad = cfg;
    bad.max_entries_per_node = 70000;
    struct shoal_reg *r2 = NULL;
    CHECK_EQ(shoal_reg_new(&r2, &bad), -EINVAL);
    shoal_reg_free(r);
}

/* Review 11: an older manifest re-put for the same repo@commit does not
 * take the name back. */
static void test_name_newest(void)
{
    struct shoal_reg *r = mkreg(1000);
    uint8_t id1[32], id2[32], id3[32];
    key(id1, 3, 1);
    key(id2, 3, 2);
    key(id3, 3, 3);
    const char *c1 = "0123456789abcdef0123456789abcdef01234567";
    char name[128];
    snprintf(name, sizeof(name), "org/model@%s", c1);
    struct shoal_reg_manifest mf;
    CHECK_EQ(shoal_reg_put_manifest_ex(r, id2, 0, "org/model", c1, 5, 200, (const uint8_t *)"B", 1),
             0);
    CHECK_EQ(shoal_reg_put_manifest_ex(r, id1, 0, "org/model", c1, 5, 100, (const uint8_t *)"A", 1),
             0);
    CHECK_EQ(shoal_reg_manifest_by_name(r, name, strlen(name), &mf), 0);
    CHECK(memcmp(mf.id, id2, 32) == 0);
    CHECK_EQ(shoal_reg_manifest_by_id(r, id1, &mf), 0); /* still known by id */
    CHECK_EQ(shoal_reg_put_manifest_ex(r, id3, 0, "org/model", c1, 5, 300, (const uint8_t *)"C", 1),
             0);
    CHECK_EQ(shoal_reg_manifest_by_name(r, name, strlen(name), &mf), 0);
    CHECK(memcmp(mf.id, id3, 32) == 0);
    shoal_reg_free(r);
}

int main(void)
{
    RUN(test_peers_basic);
    RUN(test_expiry);
    RUN(test_zone_bias);
    RUN(test_seed_mix);
    RUN(test_deterministic);
    RUN(test_leases);
    RUN(test_lease_extend);
    RUN(test_lease_withdraw);
    RUN(test_lease_withdraw_cut_off);
    RUN(test_lease_withdraw_overlap);
    RUN(test_lease_share);
    RUN(test_lease_share_alone);
    RUN(test_lease_limits_and_loss);
    RUN(test_manifests);
    RUN(test_manifest_dataset_name);
    RUN(test_rollouts);
    RUN(test_rollout_gone);
    RUN(test_rollout_ref);
    RUN(test_limits);
    RUN(test_unregistered_quota);
    RUN(test_manifest_forget);
    RUN(test_prometheus);
    RUN(test_churn);
    RUN(test_zone_churn);
    RUN(test_fetched_return);
    RUN(test_node_restarted);
    RUN(test_node_session);
    RUN(test_node_session_other);
    RUN(test_fetched_claim_runs_out);
    RUN(test_fetched_bar_scope);
    RUN(test_lease_regrant);
    RUN(test_lease_reclaim);
    RUN(test_peers_sparse_seeds);
    RUN(test_lease_budget);
    RUN(test_many_entries);
    RUN(test_name_newest);
    RUN(test_roles);
    RUN(test_min_fetchers);
    RUN(test_roles_two_manifests);
    RUN(test_roles_zero_fetchers);
    RUN(test_roles_small_zone);
    RUN(test_roles_interval);
    return t_done();
}
