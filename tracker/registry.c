/* SPDX-License-Identifier: MIT */
/*
 * Tracker registry: nodes, their holdings, manifests, origin leases and
 * rollouts, in flat arrays with open-addressing indexes (see registry.h).
 *
 * Layout. Nodes and manifests live in arrays whose slots are recycled
 * through free lists, so an index stays valid for an object's lifetime.
 * A holding is stored twice, compactly: the manifest keeps a dense array of
 * holders {node, have, complete} that peer sampling walks, and the node
 * keeps a small array of {manifest, slot in that holder array} so a
 * re-announce or an expiry finds and swap-removes its holders in O(1).
 *
 * Hash tables map a 32-byte key (or a name) to an array index with linear
 * probing and backward-shift deletion (no tombstones, so a table under
 * churn never degrades). Each slot caches the key's hash so probing rarely
 * touches the arrays. Hashes are keyed by the seed: manifest ids in
 * announces are chosen by nodes, and an unkeyed hash would let one node
 * pile them into one probe chain.
 */
#include "registry.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "manifest.h" /* release names */

#define NONE UINT32_MAX

enum { CH_FREE = 0, CH_LEASED = 1, CH_FETCHED = 2 };

/* ---- PRNG and hashing ---- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdULL;
    z = (z ^ (z >> 33)) * 0xc4ceb9fe1a85ec53ULL;
    return z ^ (z >> 33);
}

static uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint32_t hash_key32(uint64_t k, const uint8_t key[32])
{
    uint64_t h = k;
    for (int i = 0; i < 4; i++)
        h = mix64(h ^ load64(key + 8 * i)) + 0x9e3779b97f4a7c15ULL;
    return (uint32_t)(h ^ (h >> 32));
}

static uint32_t hash_str(uint64_t k, const char *s, size_t n)
{
    uint64_t h = k ^ n;
    while (n >= 8) {
        h = mix64(h ^ load64((const uint8_t *)s)) + 0x9e3779b97f4a7c15ULL;
        s += 8;
        n -= 8;
    }
    uint64_t tail = 0;
    memcpy(&tail, s, n);
    h = mix64(h ^ tail ^ 0xa5);
    return (uint32_t)(h ^ (h >> 32));
}

/* ---- open-addressing index: key -> array index ---- */

struct slot {
    uint32_t hash;
    uint32_t idx1;  /* array index + 1; 0 = empty */
};

struct tab {
    struct slot *s;
    uint32_t mask;  /* capacity - 1; capacity is a power of two */
    uint32_t n;
};

/* Decides whether array element |idx| has the key |key|. */
typedef bool (*tab_eq_fn)(const void *ctx, uint32_t idx, const void *key, size_t klen);

static int tab_init(struct tab *t, uint32_t cap)
{
    t->s = calloc(cap, sizeof(*t->s));
    t->mask = cap - 1;
    t->n = 0;
    return t->s ? 0 : -ENOMEM;
}

static uint32_t tab_find(const struct tab *t, uint32_t h, tab_eq_fn eq, const void *ctx,
                         const void *key, size_t klen)
{
    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        const struct slot *sl = &t->s[i];
        if (!sl->idx1)
            return NONE;
        if (sl->hash == h && eq(ctx, sl->idx1 - 1, key, klen))
            return sl->idx1 - 1;
    }
}

static void tab_put_slot(struct slot *s, uint32_t mask, uint32_t h, uint32_t idx1)
{
    uint32_t i = h & mask;
    while (s[i].idx1)
        i = (i + 1) & mask;
    s[i].hash = h;
    s[i].idx1 = idx1;
}

/* Inserts |idx| (the key must be absent). Keeps the load at most 1/2. */
static int tab_insert(struct tab *t, uint32_t h, uint32_t idx)
{
    int rv = 0;
    if ((t->n + 1) * 2 > t->mask + 1) {
        uint32_t ncap = (t->mask + 1) * 2;
        struct slot *ns = calloc(ncap, sizeof(*ns));
        if (!ns) {
            rv = -ENOMEM;
            goto out;
        }
        for (uint32_t i = 0; i <= t->mask; i++)
            if (t->s[i].idx1)
                tab_put_slot(ns, ncap - 1, t->s[i].hash, t->s[i].idx1);
        free(t->s);
        t->s = ns;
        t->mask = ncap - 1;
    }
    tab_put_slot(t->s, t->mask, h, idx + 1);
    t->n++;
out:
    return rv;
}

/* Removes |idx| (stored under hash |h|); backward shift keeps every other
 * key reachable from its home slot without tombstones. */
static void tab_remove(struct tab *t, uint32_t h, uint32_t idx)
{
    uint32_t i = h & t->mask;
    while (t->s[i].idx1 && t->s[i].idx1 != idx + 1)
        i = (i + 1) & t->mask;
    if (!t->s[i].idx1)
        return;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        if (!t->s[j].idx1)
            break;
        uint32_t home = t->s[j].hash & t->mask;
        /* Leave s[j] where it is when its home lies cyclically in (i, j]. */
        bool stay = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stay)
            continue;
        t->s[i] = t->s[j];
        i = j;
    }
    t->s[i].idx1 = 0;
    t->s[i].hash = 0;
    t->n--;
}

/* ---- records ---- */

/* The zone is a copy of the node's, so peer sampling and rollout status
 * filter on the compact holder array without touching node records. */
struct holder {
    uint32_t node;
    uint32_t have;
    uint16_t zone;
    uint8_t complete;
    uint8_t rank;       /* role rank in (manifest, zone); RANK_NONE: none */
};

#define RANK_NONE 0xffu

/* How many holders in one zone announce a manifest complete. */
struct zcomp {
    uint16_t zone;
    uint32_t n;
};

/* Which role ranks of one manifest are taken in one zone. */
struct zrank {
    uint64_t bits[4];
    uint64_t grown_ms;  /* when a rank was last taken here */
    uint16_t zone;
};

/* A span of chunks a node reported fetched from the origin. While that
 * node lives the swarm has the chunks; when it goes (or the span outlives
 * fetched_ttl_ms with no complete holder), they become leasable again. */
struct fspan {
    uint32_t node;  /* NONE once the fetcher left while a seed was live */
    uint32_t first, count;
    uint64_t done_ms;
};

/* A span whose fetched credit ran out with nobody vouching for it (see
 * mani_expire_fetched): its chunks are leasable again, but not by the node
 * that claimed them until |until_ms|. */
struct bar {
    uint32_t node;
    uint32_t first, count;
    uint64_t until_ms;
};

struct nent {
    uint32_t mani;
    uint32_t slot : 31;  /* index in the manifest's holder array */
    uint32_t mark : 1;   /* seen in the announce being applied */
};

struct node {
    uint8_t pk[32];
    uint64_t last_ms;
    uint64_t born_ms;      /* when the registry first knew it */
    struct nent *ents;
    uint16_t nents, cap;
    uint16_t zone;
    uint16_t nunreg;       /* entries for manifests not registered here */
    uint8_t nleases;
    uint32_t nfspans;      /* fetched spans recorded under this node */
    uint32_t nbars;        /* bars on this node, over all manifests */
    uint8_t used;
    uint8_t has_session;
    uint8_t session[SHOAL_REG_SESSION_LEN]; /* see shoal_reg_node_session */
    char addr[SHOAL_REG_ADDR_MAX + 1];
};

struct lease {
    uint32_t node;
    uint32_t first, count;
    uint64_t expires_ms;
    /* Granted before the node's current connection and not reported on
     * since: the reply may have been lost with that connection (see
     * shoal_reg_node_session). */
    bool unconfirmed;
};

struct mani {
    uint8_t id[32];
    struct holder *h;      /* eligible holders (complete or some chunks)
                              first: [0, ne), then the others */
    uint32_t nh, caph, ne;
    uint32_t ncomplete;    /* holders announcing complete */
    struct zcomp *zc;      /* the same per zone, zones with any only */
    uint32_t nzc, capzc;
    uint32_t nchunks;      /* 0 = unknown */
    uint8_t *chunks;       /* CH_* per chunk, allocated on first lease */
    uint32_t nfree;        /* chunks CH_FREE (with |chunks|) */
    struct lease *leases;
    uint32_t nl, capl;
    struct fspan *fs;
    uint32_t nfs, capfs;
    struct bar *bars;
    uint32_t nbars, capbars;
    bool overlaps;         /* leases may overlap (withdraw_hint); none
                              with no lease left */
    uint8_t *stale;        /* bit per chunk: another node's word on it was
                              withdrawn once (withdraw_hint); NULL until
                              then */
    struct zrank *zr;      /* zones with a rank taken, in no order */
    uint32_t nzr, capzr;
    uint32_t zfetch;       /* fetchers per zone (fetch_level) */
    uint32_t nfetch;       /* ranked nodes that are fetchers, in all */
    uint64_t last_done_ms;
    uint64_t created;      /* signing time, unix seconds (0 = unknown) */
    uint64_t used_ms;      /* last put, fetch or announce by a holder */
    uint64_t used_seq;     /* order of that use among all (LRU) */
    /* registered: */
    uint8_t *signed_bytes;
    size_t signed_len;
    char *names;           /* "repo\0commit\0repo@commit\0" */
    size_t repo_len, commit_len;
    uint32_t name_hash;
    uint8_t repo_type;
    uint8_t used;
};

/* Zones are refcounted (one reference per node in the zone and per rollout
 * naming it) and freed when unused, so churn through zone names cannot fill
 * the table; |nodes| feeds rollout status without a scan of every node. */
struct zone {
    char *name;       /* NULL = free slot */
    uint32_t refs;
    uint32_t nodes;
};

struct rollout {
    char repo_at_rev[SHOAL_REG_REPO_MAX + 1];
    uint32_t zone;  /* zone index, NONE = every zone */
    char ref[SHOAL_REG_REF_MAX + 1]; /* branch it moves, "" = none */
};

/* A node the registry forgot, remembered for rollout status: without it a
 * node that stops announcing (credential expired, host lost) simply drops
 * out of every count and the fleet looks done. A zone is kept by name:
 * zone indexes are reused once their last node goes. */
struct gone {
    uint8_t pk[32];
    uint64_t at_ms;
    char zone[SHOAL_REG_ZONE_MAX + 1];
    uint8_t why;    /* enum shoal_reg_gone */
    uint8_t used;
};

struct rate_bucket {
    uint64_t sec;
    uint32_t count;
};

#define RATE_BUCKETS 16
#define RATE_WINDOW 10

struct shoal_reg {
    struct shoal_reg_config cfg;
    uint64_t rng;
    uint64_t hkey;

    struct node *nodes;
    uint32_t nnodes_cap, nnodes_used;  /* array size, live count */
    uint32_t *node_free;
    uint32_t nnode_free;
    struct tab node_tab;

    struct mani *manis;
    uint32_t nmanis_cap, nmanis_used;
    uint32_t nunreg;       /* records without signed bytes (see mani_create) */
    uint32_t *mani_free;
    uint32_t nmani_free;
    struct tab mani_tab;
    struct tab name_tab;

    struct zone zones[SHOAL_REG_ZONES_MAX];
    uint32_t nzones;      /* slots ever used (high-water mark) */
    uint32_t zone_free[SHOAL_REG_ZONES_MAX];
    uint32_t nzone_free;
    struct tab zone_tab;

    struct rollout rollouts[SHOAL_REG_ROLLOUTS_MAX];
    uint32_t nrollouts;

    struct gone gone[SHOAL_REG_GONE_MAX]; /* a ring: gone_next is the oldest */
    uint32_t gone_next;
    uint32_t ngone;       /* used records */

    uint64_t now_ms;         /* latest time a call was given */
    uint64_t use_seq;        /* uses of manifests so far (mani_touch) */
    uint64_t lease_chunks;   /* sum of nchunks with lease state */
    uint64_t manifest_bytes; /* sum of registered signed bytes */

    struct shoal_reg_stats st;
    struct rate_bucket rate[RATE_BUCKETS];
};

void shoal_reg_config_default(struct shoal_reg_config *c)
{
    memset(c, 0, sizeof(*c));
    c->announce_interval_ms = 30000;
    c->node_ttl_ms = 90000;
    c->lease_ms = 60000;
    c->max_peers = 50;
    c->seed = 1;
    c->max_nodes = 100000;
    c->max_manifests = 65536;
    c->max_entries_per_node = 256;
    c->max_unregistered_per_node = 32;
    c->max_lease_chunks = 64ULL << 20;
    c->max_manifest_bytes = 1ULL << 30;
    c->fetched_ttl_ms = 600000;
    c->manifest_ttl_ms = 168ull * 3600 * 1000;
    c->origin_fetchers = 2;
    /* 8 rather than 4: each brings in half as many chunks, so they reach
     * the zone sooner (simulated 1,000-node fleet, seeds 1-6: last/T_min
     * 1.143 -> 1.134, cross-zone bytes 0.0043 -> 0.0034 of all; 6: 1.141,
     * 12: 1.139, 16: 1.150; 3,000 nodes, seed 1: 1.157 -> 1.142). */
    c->importers = 8;
    c->min_fetchers = 8;
    c->fetcher_leases = 2;
    c->fill_interval_ms = 200;
    c->gone_keep_ms = 24ull * 3600 * 1000;
}

static uint32_t zone_acquire(struct shoal_reg *r, const char *z);

uint32_t shoal_reg_fetcher_ranks(const struct shoal_reg_config *c)
{
    if (c->origin_fetchers == 0)
        return 0;
    return c->origin_fetchers > c->min_fetchers ? c->origin_fetchers : c->min_fetchers;
}

static bool node_eq(const void *ctx, uint32_t idx, const void *key, size_t klen)
{
    const struct shoal_reg *r = ctx;
    return memcmp(r->nodes[idx].pk, key, 32) == 0;
}

static bool mani_eq(const void *ctx, uint32_t idx, const void *key, size_t klen)
{
    const struct shoal_reg *r = ctx;
    return memcmp(r->manis[idx].id, key, 32) == 0;
}

static bool name_eq(const void *ctx, uint32_t idx, const void *key, size_t klen)
{
    const struct shoal_reg *r = ctx;
    const struct mani *m = &r->manis[idx];
    const char *full = m->names + m->repo_len + 1 + m->commit_len + 1;
    return strlen(full) == klen && memcmp(full, key, klen) == 0;
}

static bool zone_eq(const void *ctx, uint32_t idx, const void *key, size_t klen)
{
    const struct shoal_reg *r = ctx;
    const char *z = r->zones[idx].name;
    return strlen(z) == klen && memcmp(z, key, klen) == 0;
}

int shoal_reg_new(struct shoal_reg **out, const struct shoal_reg_config *cfg)
{
    int rv = 0;
    struct shoal_reg *r = NULL;
    if (!out || !cfg || !cfg->announce_interval_ms || !cfg->node_ttl_ms || !cfg->lease_ms ||
        !cfg->max_nodes || !cfg->max_manifests || !cfg->max_entries_per_node ||
        cfg->max_entries_per_node > UINT16_MAX || cfg->max_unregistered_per_node > UINT16_MAX ||
        cfg->max_nodes >= (1u << 31) ||
        cfg->max_manifests >= (1u << 31) || cfg->origin_fetchers > SHOAL_REG_RANKS_MAX ||
        cfg->min_fetchers > SHOAL_REG_RANKS_MAX ||
        cfg->importers > SHOAL_REG_RANKS_MAX - shoal_reg_fetcher_ranks(cfg)) {
        rv = -EINVAL;
        goto fail;
    }
    r = calloc(1, sizeof(*r));
    if (!r) {
        rv = -ENOMEM;
        goto fail;
    }
    r->cfg = *cfg;
    r->rng = cfg->seed;
    r->hkey = splitmix64(&r->rng);
    if (tab_init(&r->node_tab, 64) || tab_init(&r->mani_tab, 64) || tab_init(&r->name_tab, 16) ||
        tab_init(&r->zone_tab, 16)) {
        rv = -ENOMEM;
        goto fail;
    }
    /* Zone 0 is "", so every node has a valid zone index; this first
     * reference is never dropped. */
    if (zone_acquire(r, "") != 0) {
        rv = -ENOMEM;
        goto fail;
    }
    *out = r;
    return 0;
fail:
    shoal_reg_free(r);
    return rv;
}

/* Signed manifest bytes live in a block with a reference count in front:
 * the registry holds one reference, and a server sending them by
 * reference holds another until its write is done, so forgetting a
 * manifest never frees bytes a write still points at. */
struct blob {
    size_t refs;
    size_t pad;      /* keeps data 16-byte aligned */
    uint8_t data[];
};

static struct blob *blob_of(const uint8_t *data)
{
    return (struct blob *)(uintptr_t)(data - offsetof(struct blob, data));
}

static uint8_t *blob_new(const uint8_t *p, size_t len)
{
    struct blob *b = malloc(sizeof(*b) + (len ? len : 1));
    if (!b)
        return NULL;
    b->refs = 1;
    if (len)
        memcpy(b->data, p, len);
    return b->data;
}

void shoal_reg_bytes_hold(const uint8_t *signed_bytes)
{
    blob_of(signed_bytes)->refs++;
}

void shoal_reg_bytes_release(const uint8_t *signed_bytes)
{
    if (!signed_bytes)
        return;
    struct blob *b = blob_of(signed_bytes);
    if (--b->refs == 0)
        free(b);
}

/* Records a use of |m| at |now_ms|: kept manifest_ttl_ms from now, and
 * last in line to make room. */
static void mani_touch(struct shoal_reg *r, struct mani *m, uint64_t now_ms)
{
    m->used_ms = now_ms;
    m->used_seq = ++r->use_seq;
}

static void mani_clear(struct mani *m)
{
    free(m->h);
    free(m->chunks);
    free(m->stale);
    free(m->leases);
    free(m->fs);
    free(m->bars);
    free(m->zr);
    free(m->zc);
    shoal_reg_bytes_release(m->signed_bytes);
    free(m->names);
    memset(m, 0, sizeof(*m));
}

void shoal_reg_free(struct shoal_reg *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; i < r->nnodes_cap; i++)
        free(r->nodes[i].ents);
    for (uint32_t i = 0; i < r->nmanis_cap; i++)
        mani_clear(&r->manis[i]);
    for (uint32_t i = 0; i < r->nzones; i++)
        free(r->zones[i].name);
    free(r->nodes);
    free(r->node_free);
    free(r->manis);
    free(r->mani_free);
    free(r->node_tab.s);
    free(r->mani_tab.s);
    free(r->name_tab.s);
    free(r->zone_tab.s);
    free(r);
}

/* ---- lookups and creation ---- */

static uint32_t node_find(const struct shoal_reg *r, const uint8_t pk[32])
{
    return tab_find(&r->node_tab, hash_key32(r->hkey, pk), node_eq, r, pk, 32);
}

static uint32_t mani_find(const struct shoal_reg *r, const uint8_t id[32])
{
    return tab_find(&r->mani_tab, hash_key32(r->hkey, id), mani_eq, r, id, 32);
}

static uint32_t zone_find(const struct shoal_reg *r, const char *z, size_t n)
{
    return tab_find(&r->zone_tab, hash_str(r->hkey, z, n), zone_eq, r, z, n);
}

/* Index of zone |z| with one more reference, interning it. Returns NONE
 * when the table is full or memory runs out. */
static uint32_t zone_acquire(struct shoal_reg *r, const char *z)
{
    size_t n = strlen(z);
    uint32_t idx = zone_find(r, z, n);
    if (idx != NONE)
        goto out;
    if (!r->nzone_free && r->nzones >= SHOAL_REG_ZONES_MAX)
        goto out;
    char *copy = strdup(z);
    if (!copy)
        goto out;
    uint32_t slot = r->nzone_free ? r->zone_free[r->nzone_free - 1] : r->nzones;
    if (tab_insert(&r->zone_tab, hash_str(r->hkey, z, n), slot)) {
        free(copy);
        goto out;
    }
    if (r->nzone_free)
        r->nzone_free--;
    else
        r->nzones++;
    r->zones[slot] = (struct zone){ .name = copy };
    idx = slot;
out:
    if (idx != NONE)
        r->zones[idx].refs++;
    return idx;
}

/* Drops one reference to zone |idx|, freeing the name when unused. */
static void zone_release(struct shoal_reg *r, uint32_t idx)
{
    struct zone *z = &r->zones[idx];
    if (--z->refs || idx == 0)
        return;
    tab_remove(&r->zone_tab, hash_str(r->hkey, z->name, strlen(z->name)), idx);
    free(z->name);
    *z = (struct zone){ 0 };
    r->zone_free[r->nzone_free++] = idx;
}

/* Takes a slot from a recycled-index array, growing it as needed. */
static int slot_alloc(void **arr, size_t elem, uint32_t *cap, uint32_t **freel, uint32_t *nfree,
                      uint32_t *out)
{
    int rv = 0;
    if (*nfree) {
        *out = (*freel)[--*nfree];
        goto out;
    }
    uint32_t ncap = *cap ? *cap * 2 : 64;
    void *na = realloc(*arr, (size_t)ncap * elem);
    if (!na) {
        rv = -ENOMEM;
        goto out;
    }
    *arr = na;
    uint32_t *nf = realloc(*freel, (size_t)ncap * sizeof(uint32_t));
    if (!nf) {
        rv = -ENOMEM;
        goto out;
    }
    *freel = nf;
    memset((uint8_t *)na + (size_t)*cap * elem, 0, (size_t)(ncap - *cap) * elem);
    /* Hand out low indices first so arrays stay dense. */
    for (uint32_t i = ncap; i-- > *cap + 1;)
        (*freel)[(*nfree)++] = i;
    *out = *cap;
    *cap = ncap;
out:
    return rv;
}

/* Index of |pk|'s gone record, or NONE. A scan of the used records (at
 * most SHOAL_REG_GONE_MAX, only while some node is gone): nodes are
 * created and forgotten far less often than they announce. */
static uint32_t gone_find(const struct shoal_reg *r, const uint8_t pk[32])
{
    for (uint32_t i = 0, seen = 0; seen < r->ngone && i < SHOAL_REG_GONE_MAX; i++) {
        if (!r->gone[i].used)
            continue;
        seen++;
        if (memcmp(r->gone[i].pk, pk, 32) == 0)
            return i;
    }
    return NONE;
}

/* A node known again is no longer gone. */
static void gone_forget(struct shoal_reg *r, const uint8_t pk[32])
{
    uint32_t i = gone_find(r, pk);
    if (i != NONE) {
        r->gone[i].used = 0;
        r->ngone--;
    }
}

/* Remembers node |nd|, about to be forgotten, as gone for |why|. */
static void gone_note(struct shoal_reg *r, const struct node *nd, uint8_t why)
{
    if (!r->cfg.gone_keep_ms)
        return;
    uint32_t i = gone_find(r, nd->pk);
    if (i == NONE) {
        i = r->gone_next;
        r->gone_next = (r->gone_next + 1) % SHOAL_REG_GONE_MAX;
        if (!r->gone[i].used)
            r->ngone++;
    }
    struct gone *g = &r->gone[i];
    memcpy(g->pk, nd->pk, 32);
    g->at_ms = r->now_ms;
    snprintf(g->zone, sizeof g->zone, "%s", r->zones[nd->zone].name ? r->zones[nd->zone].name : "");
    g->why = why;
    g->used = 1;
}

static int node_create(struct shoal_reg *r, const uint8_t pk[32], uint64_t now_ms,
                       uint32_t *out)
{
    int rv;
    uint32_t idx;
    if (r->nnodes_used >= r->cfg.max_nodes) {
        rv = SHOAL_ELIMIT;
        goto out;
    }
    void *arr = r->nodes;
    rv = slot_alloc(&arr, sizeof(struct node), &r->nnodes_cap, &r->node_free, &r->nnode_free,
                    &idx);
    r->nodes = arr;
    if (rv)
        goto out;
    rv = tab_insert(&r->node_tab, hash_key32(r->hkey, pk), idx);
    if (rv) {
        r->node_free[r->nnode_free++] = idx;
        goto out;
    }
    struct node *nd = &r->nodes[idx];
    memset(nd, 0, sizeof(*nd));
    memcpy(nd->pk, pk, 32);
    nd->born_ms = now_ms;
    gone_forget(r, pk);
    nd->used = 1;
    /* Zone 0 ("") until an announce says otherwise. */
    r->zones[0].refs++;
    r->zones[0].nodes++;
    r->nnodes_used++;
    r->st.nodes = r->nnodes_used;
    *out = idx;
out:
    return rv;
}

/* The node of |pk| into *|out|, made (seen at |now_ms|) when the registry
 * does not know it: a lease may come before its node's first announce
 * (a reconnect's re-claim, a request racing the announce). */
static int node_get(struct shoal_reg *r, const uint8_t pk[32], uint64_t now_ms, uint32_t *out)
{
    int rv;
    uint32_t ni = node_find(r, pk);

    if (ni == NONE) {
        if ((rv = node_create(r, pk, now_ms, &ni)) != 0)
            return rv;
        r->nodes[ni].last_ms = now_ms;
    }
    *out = ni;
    return 0;
}

/* Records for ids nobody registered may fill at most this much of the
 * table, so registered manifests always have the rest. */
static uint32_t unreg_cap(const struct shoal_reg *r)
{
    return r->cfg.max_manifests - r->cfg.max_manifests / 2;
}

/* Creates the record of |id|; |registering| when a signed manifest comes
 * with it, else it counts as unregistered (limited by unreg_cap). */
static int mani_create(struct shoal_reg *r, const uint8_t id[32], bool registering,
                       uint32_t *out)
{
    int rv;
    uint32_t idx;
    if (r->nmanis_used >= r->cfg.max_manifests ||
        (!registering && r->nunreg >= unreg_cap(r))) {
        rv = SHOAL_ELIMIT;
        goto out;
    }
    void *arr = r->manis;
    rv = slot_alloc(&arr, sizeof(struct mani), &r->nmanis_cap, &r->mani_free, &r->nmani_free,
                    &idx);
    r->manis = arr;
    if (rv)
        goto out;
    rv = tab_insert(&r->mani_tab, hash_key32(r->hkey, id), idx);
    if (rv) {
        r->mani_free[r->nmani_free++] = idx;
        goto out;
    }
    struct mani *m = &r->manis[idx];
    memset(m, 0, sizeof(*m));
    memcpy(m->id, id, 32);
    m->used = 1;
    r->nmanis_used++;
    /* Unregistered until shoal_reg_put_manifest_ex gives it signed bytes
     * (a put that fails half way leaves it so, for expiry to drop). */
    r->nunreg++;
    r->st.manifests = r->nmanis_used;
    r->st.unregistered = r->nunreg;
    *out = idx;
out:
    return rv;
}

static uint32_t mani_get(struct shoal_reg *r, const uint8_t id[32], int *rv)
{
    uint32_t idx = mani_find(r, id);
    *rv = 0;
    if (idx == NONE && (*rv = mani_create(r, id, false, &idx)) != 0)
        idx = NONE;
    return idx;
}

/* ---- holdings ---- */

/* Counts holder |ho| (complete or not) in its zone's complete count, with
 * |sign| +1 or -1. Without memory for a new zone's record the count stays
 * short: that zone keeps its fetchers, as before counts existed. */
static void zcomp_count(struct mani *m, const struct holder *ho, int sign)
{
    if (!ho->complete)
        return;
    for (uint32_t i = 0; i < m->nzc; i++) {
        if (m->zc[i].zone != ho->zone)
            continue;
        if (sign > 0)
            m->zc[i].n++;
        else if (--m->zc[i].n == 0)
            m->zc[i] = m->zc[--m->nzc];
        return;
    }
    if (sign < 0)
        return;
    if (m->nzc == m->capzc) {
        uint32_t ncap = m->capzc ? m->capzc * 2 : 2;
        struct zcomp *nz = realloc(m->zc, (size_t)ncap * sizeof(*nz));
        if (!nz)
            return;
        m->zc = nz;
        m->capzc = ncap;
    }
    m->zc[m->nzc++] = (struct zcomp){ .zone = ho->zone, .n = 1 };
}

static bool zone_has_complete(const struct mani *m, uint16_t zone)
{
    for (uint32_t i = 0; i < m->nzc; i++)
        if (m->zc[i].zone == zone)
            return true;
    return false;
}

static bool holder_eligible(const struct holder *h)
{
    return h->complete || h->have;
}

/* Moves holder |from| of manifest |mi| to slot |to| (overwriting it) and
 * tells the holder's node where its record went. */
static void holder_move(struct shoal_reg *r, uint32_t mi, uint32_t from, uint32_t to)
{
    struct mani *m = &r->manis[mi];
    if (from == to)
        return;
    m->h[to] = m->h[from];
    struct node *nd = &r->nodes[m->h[to].node];
    for (uint16_t k = 0; k < nd->nents; k++) {
        if (nd->ents[k].mani == mi) {
            nd->ents[k].slot = to;
            break;
        }
    }
}

/* Swaps holders |a| and |b| of manifest |mi|, keeping both nodes' slots. */
static void holder_swap(struct shoal_reg *r, uint32_t mi, uint32_t a, uint32_t b)
{
    struct mani *m = &r->manis[mi];
    if (a == b)
        return;
    struct holder tmp = m->h[a];
    holder_move(r, mi, b, a);
    /* |b| still holds its old record; park |a|'s there by hand. */
    m->h[b] = tmp;
    struct node *nd = &r->nodes[tmp.node];
    for (uint16_t k = 0; k < nd->nents; k++) {
        if (nd->ents[k].mani == mi) {
            nd->ents[k].slot = b;
            break;
        }
    }
}

static void orphans_free(struct shoal_reg *r, struct mani *m);

/* Sets holder |slot| of manifest |mi| to |have|/|complete|, moving it across
 * the eligible/ineligible boundary when that changes. */
static void holder_update(struct shoal_reg *r, uint32_t mi, uint32_t slot, uint32_t have,
                          bool complete)
{
    struct mani *m = &r->manis[mi];
    struct holder *ho = &m->h[slot];
    bool was = holder_eligible(ho), had = m->ncomplete > 0;
    m->ncomplete -= ho->complete;
    zcomp_count(m, ho, -1);
    ho->have = have;
    ho->complete = complete;
    m->ncomplete += ho->complete;
    zcomp_count(m, ho, +1);
    if (had && !m->ncomplete) /* every announce comes here: only then */
        orphans_free(r, m);
    bool now = holder_eligible(ho);
    if (was && !now) {
        holder_swap(r, mi, slot, m->ne - 1);
        m->ne--;
    } else if (!was && now) {
        holder_swap(r, mi, slot, m->ne);
        m->ne++;
    }
}

/* ---- roles ---- */

static struct zrank *zrank_find(struct mani *m, uint16_t zone)
{
    for (uint32_t i = 0; i < m->nzr; i++)
        if (m->zr[i].zone == zone)
            return &m->zr[i];
    return NULL;
}

/* Ranks held in |z| below |lim|. */
static uint32_t ranks_below(const struct zrank *z, uint32_t lim)
{
    uint32_t n = 0;
    for (uint32_t w = 0; w < 4 && w * 64 < lim; w++) {
        uint64_t b = z->bits[w];
        if (lim < (w + 1) * 64)
            b &= (1ull << (lim - w * 64)) - 1;
        n += (uint32_t)__builtin_popcountll(b);
    }
    return n;
}

/*
 * Recomputes m->zfetch and m->nfetch after |m|'s ranks changed: each zone
 * has origin_fetchers fetchers, or more while min_fetchers shared over the
 * zones would not be reached. The share is a water level: a zone with
 * fewer ranked nodes than its share makes all of them fetchers and the
 * rest of the floor goes to the others, so a stray node in a second zone
 * does not halve a one-zone fleet's fetchers. O(zones + ranks).
 */
static void fetch_level(const struct shoal_reg *r, struct mani *m)
{
    uint32_t fr = shoal_reg_fetcher_ranks(&r->cfg);
    uint32_t cnt[SHOAL_REG_RANKS_MAX + 1] = { 0 }; /* zones by ranked nodes */
    for (uint32_t i = 0; i < m->nzr; i++)
        cnt[ranks_below(&m->zr[i], fr)]++;
    /* Zones in ascending order of ranked nodes: one too small for the
     * level takes all its nodes and leaves the rest to the others (k
     * zones are left, so a count not used up leaves k > 0). */
    uint32_t left = r->cfg.min_fetchers, k = m->nzr, level = fr;
    for (uint32_t v = 0; v <= fr && k > 0; v++) {
        uint32_t used = 0;
        for (; used < cnt[v] && v < (left + k - 1) / k; used++) {
            left -= v;
            k--;
        }
        if (used < cnt[v]) {
            level = (left + k - 1) / k;
            break;
        }
    }
    uint32_t f = r->cfg.origin_fetchers;
    m->zfetch = f == 0 ? 0 : f > level ? f : level;
    m->nfetch = 0;
    for (uint32_t v = 0; v <= fr; v++)
        m->nfetch += cnt[v] * (v < m->zfetch ? v : m->zfetch);
}

/* Gives back holder |ho|'s rank (if any) in its zone. */
static void rank_release(const struct shoal_reg *r, struct mani *m, struct holder *ho)
{
    if (ho->rank == RANK_NONE)
        return;
    struct zrank *z = zrank_find(m, ho->zone);
    if (z) {
        z->bits[ho->rank >> 6] &= ~(1ull << (ho->rank & 63));
        /* A zone with no rank taken is dropped, so zone churn cannot grow
         * the array. */
        if (!(z->bits[0] | z->bits[1] | z->bits[2] | z->bits[3]))
            *z = m->zr[--m->nzr];
        fetch_level(r, m);
    }
    ho->rank = RANK_NONE;
}

/* Moves holder |ho| to the lowest free rank of its zone when that is
 * below its own (none counts as the highest). Without memory for a new
 * zone record it simply stays without a rank. */
static void rank_take(struct shoal_reg *r, struct mani *m, struct holder *ho)
{
    uint32_t nranks = shoal_reg_fetcher_ranks(&r->cfg) + r->cfg.importers;
    if (nranks == 0 || ho->rank == 0)
        return;
    struct zrank *z = zrank_find(m, ho->zone);
    uint32_t lim = ho->rank < nranks ? ho->rank : nranks;
    uint32_t free_rank = 0;
    if (z) {
        while (free_rank < lim && (z->bits[free_rank >> 6] >> (free_rank & 63) & 1))
            free_rank++;
    }
    if (free_rank >= lim)
        return;
    if (!z) {
        if (m->nzr == m->capzr) {
            uint32_t ncap = m->capzr ? m->capzr * 2 : 2;
            struct zrank *nz = realloc(m->zr, (size_t)ncap * sizeof(*nz));
            if (!nz)
                return;
            m->zr = nz;
            m->capzr = ncap;
        }
        z = &m->zr[m->nzr++];
        *z = (struct zrank){ .zone = ho->zone };
    } else if (ho->rank != RANK_NONE) {
        z->bits[ho->rank >> 6] &= ~(1ull << (ho->rank & 63));
    }
    z->bits[free_rank >> 6] |= 1ull << (free_rank & 63);
    z->grown_ms = r->now_ms;
    ho->rank = (uint8_t)free_rank;
    fetch_level(r, m);
}

/* The highest rank taken in |zone|, or RANK_NONE when none is. */
static uint32_t rank_top(const struct mani *m, uint16_t zone)
{
    for (uint32_t i = 0; i < m->nzr; i++) {
        if (m->zr[i].zone != zone)
            continue;
        for (uint32_t w = 4; w-- > 0;)
            if (m->zr[i].bits[w])
                return w * 64 + 63 - (uint32_t)__builtin_clzll(m->zr[i].bits[w]);
    }
    return RANK_NONE;
}

/*
 * The announce interval asked of a node whose import share in |zone| is
 * provisional: the share shrinks when the zone takes a rank, and the node
 * learns that only from its own announce. How long the zone went without
 * taking one is the guess at how long until the next (a zone that fills
 * fast keeps its nodes announcing every fill_interval_ms; one that
 * stopped growing backs off to the normal interval), rounded down to
 * fill_interval_ms times a power of two so a node's interval (and its
 * log) takes few values.
 */
static uint32_t fill_interval(const struct shoal_reg *r, const struct mani *m, uint16_t zone)
{
    uint64_t lo = r->cfg.fill_interval_ms, hi = r->cfg.announce_interval_ms, quiet = 0;
    if (lo == 0 || lo >= hi)
        return (uint32_t)hi;
    for (uint32_t i = 0; i < m->nzr; i++)
        if (m->zr[i].zone == zone && r->now_ms > m->zr[i].grown_ms)
            quiet = r->now_ms - m->zr[i].grown_ms;
    if (quiet >= hi)
        return (uint32_t)hi;
    uint64_t iv = lo;
    while (iv * 2 <= quiet)
        iv *= 2;
    return (uint32_t)iv;
}

static void role_describe(const struct shoal_reg *r, const struct mani *m,
                          const struct holder *ho, struct shoal_reg_role *out)
{
    /* A rank was taken, so fetch_level has run. */
    uint32_t f = r->cfg.origin_fetchers == 0 ? 0 : m->zfetch, rank = ho->rank;
    /* A complete copy in the zone: every chunk is there, nobody fetches
     * at once (a node leases what its peers lack after its origin delay).
     * Before, 20 seeds in a 200-node simulated fleet still left the origin
     * sending 0.61x the release, the fetchers leasing before their peers'
     * HAVEs came. Per zone: with one seed elsewhere behind a capped
     * interconnect, a fleet-wide rule cost zones their fetchers (last node
     * 4.6 -> 6.3 s), and a credentialed node claiming complete can slow
     * only its own zone, not stall it. */
    bool seeded = zone_has_complete(m, ho->zone);
    *out = (struct shoal_reg_role){ .rank = SHOAL_REG_RANK_NONE,
                                    .interval_ms = r->cfg.announce_interval_ms };
    out->fetcher = r->cfg.origin_fetchers == 0 && !seeded;
    if (rank == RANK_NONE)
        return;
    out->rank = rank;
    /* The import shares are split over the ranks the zone fills, so that
     * every chunk has an importer however few nodes the zone has: up to
     * its highest rank taken (a rank's share stays put while ranks below
     * it come and go), and over its fetchers when no importer rank is
     * taken. A share without an importer waits out the cross-zone delay
     * and then crosses one chunk at a time per node: 4 nodes in 2 zones,
     * all four fetchers, took 3.9 x T_min. Not for a node that holds
     * nothing yet: a rollout's nodes announce together before any chunk
     * arrives, and the ranks taken when the first of them do are not yet
     * the zone's (simulated 1,000-node fleet, seeds 1-6: 7% more bytes
     * across, each zone's first nodes importing what the importers after
     * them did until their next announce). A split share is provisional:
     * the node is asked to announce again soon (fill_interval), else a
     * zone's first nodes kept their larger share for up to an announce
     * interval while the zone grew (simulated 100 nodes in 4 zones
     * joining over 0.5 s: 5.30 GiB across, 3.53 without the split, 4.01
     * with these announces, 3.35 each per node against 3.00). */
    uint32_t top = rank_top(m, ho->zone);
    bool split = ho->have > 0, provisional = false;
    if (rank < f && !seeded) {
        out->fetcher = true;
        if (split && top < f && r->cfg.importers > 0) {
            out->import_mod = top + 1;
            out->import_rem = rank;
            provisional = true;
        }
    } else if (rank - f < r->cfg.importers) {
        out->import_mod = r->cfg.importers;
        if (split && top + 1 - f < out->import_mod) {
            out->import_mod = top + 1 - f;
            provisional = true;
        }
        out->import_rem = rank - f;
    }
    if (provisional)
        out->interval_ms = fill_interval(r, m, ho->zone);
}

static void mani_remove_idx(struct shoal_reg *r, uint32_t mi);

/* Removes node entry |e| of node |ni| and its holder record. A record of
 * an unregistered id left with no holder and no lease state goes at once:
 * ids announced and dropped again cannot pile up between expiries. */
static void entry_remove(struct shoal_reg *r, uint32_t ni, uint32_t e)
{
    struct node *nd = &r->nodes[ni];
    uint32_t mi = nd->ents[e].mani;
    struct mani *m = &r->manis[mi];
    uint32_t slot = nd->ents[e].slot;
    bool had = m->ncomplete > 0;
    m->ncomplete -= m->h[slot].complete;
    zcomp_count(m, &m->h[slot], -1);
    rank_release(r, m, &m->h[slot]);
    if (had && !m->ncomplete)
        orphans_free(r, m);
    /* The entry goes first so the moves below never find it. */
    nd->ents[e] = nd->ents[--nd->nents];
    if (slot < m->ne) {
        /* Fill the hole with the last eligible holder, and that one's old
         * place with the last holder, keeping the partition. */
        holder_move(r, mi, m->ne - 1, slot);
        holder_move(r, mi, m->nh - 1, m->ne - 1);
        m->ne--;
    } else {
        holder_move(r, mi, m->nh - 1, slot);
    }
    m->nh--;
    r->st.entries--;
    if (!m->signed_bytes) {
        nd->nunreg--;
        if (!m->nh && !m->nl && !m->nfs && !m->chunks)
            mani_remove_idx(r, mi);
    }
}

static int entry_add(struct shoal_reg *r, uint32_t ni, uint32_t mi, const struct shoal_reg_have *h)
{
    int rv = 0;
    struct node *nd = &r->nodes[ni];
    struct mani *m = &r->manis[mi];
    if (nd->nents == nd->cap) {
        /* 32-bit arithmetic: doubling a 16-bit capacity would wrap. */
        uint32_t ncap = nd->cap ? (uint32_t)nd->cap * 2 : 4;
        if (ncap > r->cfg.max_entries_per_node)
            ncap = r->cfg.max_entries_per_node;
        struct nent *ne = realloc(nd->ents, ncap * sizeof(*ne));
        if (!ne) {
            rv = -ENOMEM;
            goto out;
        }
        nd->ents = ne;
        nd->cap = (uint16_t)ncap;
    }
    if (m->nh == m->caph) {
        uint32_t ncap = m->caph ? m->caph * 2 : 4;
        struct holder *nh = realloc(m->h, (size_t)ncap * sizeof(*nh));
        if (!nh) {
            rv = -ENOMEM;
            goto out;
        }
        m->h = nh;
        m->caph = ncap;
    }
    m->h[m->nh] = (struct holder){ .node = ni, .have = h->have_chunks, .zone = nd->zone,
                                   .complete = h->complete, .rank = RANK_NONE };
    nd->ents[nd->nents++] = (struct nent){ .mani = mi, .slot = m->nh, .mark = 1 };
    m->nh++;
    if (!m->signed_bytes)
        nd->nunreg++;
    m->ncomplete += h->complete;
    zcomp_count(m, &m->h[m->nh - 1], +1);
    if (holder_eligible(&m->h[m->nh - 1])) {
        holder_swap(r, mi, m->nh - 1, m->ne);
        m->ne++;
    }
    r->st.entries++;
out:
    return rv;
}

/* ---- leases ---- */

/* Whether a lease of |m| other than |li| covers chunk |c|. */
static bool lease_covered(const struct mani *m, uint32_t li, uint32_t c)
{
    for (uint32_t j = 0; j < m->nl; j++)
        if (j != li && c >= m->leases[j].first && c - m->leases[j].first < m->leases[j].count)
            return true;
    return false;
}

static void lease_drop(struct shoal_reg *r, struct mani *m, uint32_t li, bool expired)
{
    struct lease *l = &m->leases[li];
    for (uint32_t c = l->first; c < l->first + l->count; c++)
        if (m->chunks[c] == CH_LEASED && !(m->overlaps && lease_covered(m, li, c))) {
            m->chunks[c] = CH_FREE;
            m->nfree++;
        }
    if (l->node < r->nnodes_cap && r->nodes[l->node].used && r->nodes[l->node].nleases)
        r->nodes[l->node].nleases--;
    if (expired)
        r->st.leases_expired++;
    m->leases[li] = m->leases[--m->nl];
    if (m->nl == 0)
        m->overlaps = false;
    r->st.leases_active--;
}

/* Returns fetched span |fi| to the free pool (its chunks will be leased
 * again) and forgets it. */
static void fspan_drop(struct shoal_reg *r, struct mani *m, uint32_t fi, bool refree)
{
    struct fspan *f = &m->fs[fi];
    if (refree)
        for (uint32_t c = f->first; c < f->first + f->count; c++)
            if (m->chunks[c] == CH_FETCHED) {
                m->chunks[c] = CH_FREE;
                m->nfree++;
            }
    if (f->node != NONE && r->nodes[f->node].used && r->nodes[f->node].nfspans)
        r->nodes[f->node].nfspans--;
    m->fs[fi] = m->fs[--m->nfs];
}

/* Bars node |ni| from leasing [first, first+count) of |m| until
 * |until_ms|, continuing the node's last bar when this one follows it.
 * Returns 0 or -ENOMEM (then nothing is barred). */
static int bar_add(struct shoal_reg *r, struct mani *m, uint32_t ni, uint32_t first,
                   uint32_t count, uint64_t until_ms)
{
    int rv = 0;
    if (m->nbars) {
        struct bar *last = &m->bars[m->nbars - 1];
        if (last->node == ni && last->first + last->count == first) {
            last->count += count;
            last->until_ms = until_ms;
            goto out;
        }
    }
    if (m->nbars == m->capbars) {
        uint32_t ncap = m->capbars ? m->capbars * 2 : 4;
        struct bar *nb = realloc(m->bars, (size_t)ncap * sizeof(*nb));
        if (!nb) {
            rv = -ENOMEM;
            goto out;
        }
        m->bars = nb;
        m->capbars = ncap;
    }
    m->bars[m->nbars++] = (struct bar){ .node = ni, .first = first, .count = count,
                                        .until_ms = until_ms };
    r->nodes[ni].nbars++;
out:
    return rv;
}

static void bar_drop(struct shoal_reg *r, struct mani *m, uint32_t bi)
{
    struct node *nd = &r->nodes[m->bars[bi].node];
    if (nd->used && nd->nbars)
        nd->nbars--;
    m->bars[bi] = m->bars[--m->nbars];
}

/* Drops the bars of |m| that ran out by |now_ms| and, with |ni| not
 * NONE, every bar on node |ni|. */
static void mani_drop_bars(struct shoal_reg *r, struct mani *m, uint64_t now_ms, uint32_t ni)
{
    for (uint32_t i = 0; i < m->nbars;) {
        if (m->bars[i].until_ms <= now_ms || m->bars[i].node == ni)
            bar_drop(r, m, i);
        else
            i++;
    }
}

/*
 * Fetched credit says the swarm has the chunks, so nobody is granted them
 * again. A node other than the fetcher announcing the whole manifest
 * vouches for that: its copy has them. Otherwise the credit runs out
 * fetched_ttl_ms after the span was reported, also while the fetcher
 * itself announces complete, which proves nothing: a node could claim a
 * release's every chunk with instant LEASE_DONEs, announce it complete and
 * keep the origin from everyone else for good. In an honest fleet the
 * fetcher's copy has spread long before, and other nodes complete.
 * Chunks whose credit ran out are leasable again, but not by the node that
 * claimed them for another fetched_ttl_ms (a bar): it would take them back
 * at once, with the same claim, before anyone else asked. An honest
 * fetcher loses nothing by it: it holds those chunks.
 */
static void mani_expire_fetched(struct shoal_reg *r, struct mani *m, uint64_t now_ms)
{
    uint32_t ttl = r->cfg.fetched_ttl_ms;
    if (!ttl || !m->nfs || m->ncomplete > 1)
        return;
    /* With one complete holder, it vouches for every span but its own. */
    uint32_t sole = NONE;
    for (uint32_t i = 0; i < m->ne && m->ncomplete; i++) {
        if (m->h[i].complete) {
            sole = m->h[i].node;
            break;
        }
    }
    for (uint32_t i = 0; i < m->nfs;) {
        const struct fspan *f = &m->fs[i];
        bool vouched = m->ncomplete && f->node != sole;
        if (vouched || now_ms < f->done_ms || now_ms - f->done_ms < ttl) {
            i++;
            continue;
        }
        /* Without memory for the bar the chunks still come free. */
        if (f->node != NONE)
            (void)bar_add(r, m, f->node, f->first, f->count, now_ms + ttl);
        r->st.fetched_expired += f->count;
        fspan_drop(r, m, i, true);
    }
}

static void mani_expire_leases(struct shoal_reg *r, struct mani *m, uint64_t now_ms)
{
    for (uint32_t i = 0; i < m->nl;) {
        if (m->leases[i].expires_ms <= now_ms)
            lease_drop(r, m, i, true);
        else
            i++;
    }
}

static bool node_live(const struct shoal_reg *r, const struct node *nd, uint64_t now_ms)
{
    return nd->used && (now_ms < nd->last_ms || now_ms - nd->last_ms <= r->cfg.node_ttl_ms);
}

/* Index of node |nd|'s entry for manifest |mi|, or nd->nents. */
static uint16_t node_entry(const struct node *nd, uint32_t mi)
{
    uint16_t e = 0;
    while (e < nd->nents && nd->ents[e].mani != mi)
        e++;
    return e;
}

/* ---- node removal ---- */

/* Ends every lease node |ni| holds on |m|; returns how many. */
static uint32_t drop_node_leases(struct shoal_reg *r, struct mani *m, uint32_t ni)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->nl;) {
        if (m->leases[i].node == ni) {
            lease_drop(r, m, i, false);
            n++;
        } else {
            i++;
        }
    }
    return n;
}

/* Fetched spans whose fetcher left (or restarted without them) while a
 * complete holder vouched for them (drop_node_fetched) are vouched for by
 * nobody once the last complete holder goes: leasable again at once, not
 * after fetched_ttl_ms (K18: a restarted fetcher that lost its files, the
 * only seed gone, waited minutes for chunks no node held). Such spans
 * exist only while some holder is complete: callers call this when the
 * count of complete holders falls to 0. */
static void orphans_free(struct shoal_reg *r, struct mani *m)
{
    for (uint32_t i = 0; i < m->nfs;) {
        if (m->fs[i].node == NONE) {
            r->st.fetched_expired += m->fs[i].count;
            fspan_drop(r, m, i, true);
        } else {
            i++;
        }
    }
}

/* What node |ni| fetched from the origin for |m| is no longer its credit:
 * with a complete copy still announced the chunks stay fetched (only the
 * TTL applies), else they are leasable again. Returns the chunks freed. */
static uint32_t drop_node_fetched(struct shoal_reg *r, struct mani *m, uint32_t ni)
{
    struct node *nd = &r->nodes[ni];
    uint32_t before = m->nfree;
    for (uint32_t i = 0; i < m->nfs;) {
        if (m->fs[i].node != ni) {
            i++;
        } else if (m->ncomplete) {
            m->fs[i].node = NONE;
            nd->nfspans--;
            i++;
        } else {
            fspan_drop(r, m, i, true);
        }
    }
    return m->nfree - before;
}

static void node_remove_idx(struct shoal_reg *r, uint32_t ni)
{
    struct node *nd = &r->nodes[ni];
    while (nd->nents)
        entry_remove(r, ni, nd->nents - 1);
    for (uint32_t mi = 0; mi < r->nmanis_cap && (nd->nleases || nd->nfspans || nd->nbars);
         mi++) {
        struct mani *m = &r->manis[mi];
        if (!m->used)
            continue;
        drop_node_leases(r, m, ni);
        /* What this node fetched from the origin left with it. */
        drop_node_fetched(r, m, ni);
        /* Its index will be another node's. */
        mani_drop_bars(r, m, 0, ni);
    }
    r->zones[nd->zone].nodes--;
    zone_release(r, nd->zone);
    tab_remove(&r->node_tab, hash_key32(r->hkey, nd->pk), ni);
    free(nd->ents);
    memset(nd, 0, sizeof(*nd));
    r->node_free[r->nnode_free++] = ni;
    r->nnodes_used--;
    r->st.nodes = r->nnodes_used;
}

int shoal_reg_remove_node_why(struct shoal_reg *r, const uint8_t node_pk[32],
                              enum shoal_reg_gone why)
{
    uint32_t ni = node_find(r, node_pk);
    if (ni == NONE)
        return SHOAL_ENOTFOUND;
    gone_note(r, &r->nodes[ni], (uint8_t)why);
    node_remove_idx(r, ni);
    return 0;
}

int shoal_reg_remove_node(struct shoal_reg *r, const uint8_t node_pk[32])
{
    return shoal_reg_remove_node_why(r, node_pk, SHOAL_REG_GONE_LOST);
}

void shoal_reg_node_refused(struct shoal_reg *r, uint64_t now_ms, const uint8_t node_pk[32])
{
    uint32_t i = gone_find(r, node_pk);
    if (i == NONE)
        return;
    r->gone[i].why = SHOAL_REG_GONE_REFUSED;
    if (now_ms > r->gone[i].at_ms)
        r->gone[i].at_ms = now_ms;
}

int shoal_reg_node_restarted(struct shoal_reg *r, const uint8_t node_pk[32], uint32_t *leases,
                             uint32_t *chunks)
{
    uint32_t nl = 0, nc = 0;
    uint32_t ni = node_find(r, node_pk);
    if (ni == NONE)
        goto out;
    struct node *nd = &r->nodes[ni];
    for (uint32_t mi = 0; mi < r->nmanis_cap && (nd->nleases || nd->nfspans); mi++) {
        struct mani *m = &r->manis[mi];
        if (!m->used)
            continue;
        nl += drop_node_leases(r, m, ni);
        if (!m->nfs)
            continue;
        /* A node that announces the whole manifest still has what it
         * fetched; any other count says nothing about which chunks it kept,
         * so the credit goes as if it had left and come back: a complete
         * copy elsewhere keeps the chunks in the swarm (the TTL applies),
         * otherwise they are leasable again at once. */
        uint16_t e = node_entry(nd, mi);
        if (e < nd->nents && m->h[nd->ents[e].slot].complete)
            continue;
        nc += drop_node_fetched(r, m, ni);
    }
out:
    if (leases)
        *leases = nl;
    if (chunks)
        *chunks = nc;
    return nl || nc;
}

int shoal_reg_node_session(struct shoal_reg *r, const uint8_t node_pk[32],
                           const uint8_t *session, uint32_t *leases)
{
    int same = 0;
    uint32_t ni = node_find(r, node_pk);
    if (ni == NONE)
        goto out;
    struct node *nd = &r->nodes[ni];
    same = session && nd->has_session &&
           memcmp(nd->session, session, SHOAL_REG_SESSION_LEN) == 0;
    nd->has_session = session != NULL;
    if (session)
        memcpy(nd->session, session, SHOAL_REG_SESSION_LEN);
    if (!same)
        goto out;
    if (leases)
        *leases = nd->nleases;
    /* Any lease may have been granted in a reply the old connection lost
     * (see shoal_reg_lease). */
    uint32_t left = nd->nleases;
    for (uint32_t mi = 0; mi < r->nmanis_cap && left; mi++) {
        struct mani *m = &r->manis[mi];
        for (uint32_t i = 0; m->used && i < m->nl; i++) {
            if (m->leases[i].node == ni) {
                m->leases[i].unconfirmed = true;
                left--;
            }
        }
    }
out:
    return same;
}

bool shoal_reg_node_session_other(const struct shoal_reg *r, const uint8_t node_pk[32],
                                  const uint8_t *session)
{
    uint32_t ni = node_find(r, node_pk);
    if (ni == NONE)
        return false;
    const struct node *nd = &r->nodes[ni];
    if (!session || !nd->has_session)
        return (session != NULL) != nd->has_session;
    return memcmp(nd->session, session, SHOAL_REG_SESSION_LEN) != 0;
}

/* ---- announce ---- */

static void rate_count(struct shoal_reg *r, uint64_t now_ms)
{
    uint64_t sec = now_ms / 1000;
    struct rate_bucket *b = &r->rate[sec % RATE_BUCKETS];
    if (b->sec != sec) {
        b->sec = sec;
        b->count = 0;
    }
    b->count++;
}

int shoal_reg_announce(struct shoal_reg *r, uint64_t now_ms, const uint8_t node_pk[32],
                       const char *addr, const char *zone, const struct shoal_reg_have *haves,
                       size_t n, struct shoal_reg_role *roles)
{
    int rv = 0;
    if (!addr)
        addr = "";
    if (!zone)
        zone = "";
    if (strlen(addr) > SHOAL_REG_ADDR_MAX || strlen(zone) > SHOAL_REG_ZONE_MAX) {
        rv = SHOAL_ETOOBIG;
        goto out;
    }
    if (n > r->cfg.max_entries_per_node) {
        rv = SHOAL_ELIMIT;
        goto out;
    }
    if (now_ms > r->now_ms)
        r->now_ms = now_ms;
    /* Check every limit before changing anything, so a refused announce
     * leaves the node as it was. (A full manifest table refuses no
     * announce: see the skipped entries below.) */
    uint32_t zi = zone_acquire(r, zone);
    if (zi == NONE) {
        rv = SHOAL_ELIMIT;
        goto out;
    }
    uint32_t ni = node_find(r, node_pk);
    if (ni == NONE && (rv = node_create(r, node_pk, now_ms, &ni)) != 0) {
        zone_release(r, zi);
        goto out;
    }

    struct node *nd = &r->nodes[ni];
    nd->last_ms = now_ms;
    if (nd->zone != zi) {
        /* Moved zones: the holder copies follow; ranks are per zone, so
         * the old ones go back and new ones are taken below. */
        r->zones[nd->zone].nodes--;
        zone_release(r, nd->zone);
        nd->zone = (uint16_t)zi;
        r->zones[zi].nodes++;
        for (uint16_t e = 0; e < nd->nents; e++) {
            struct mani *m = &r->manis[nd->ents[e].mani];
            rank_release(r, m, &m->h[nd->ents[e].slot]);
            zcomp_count(m, &m->h[nd->ents[e].slot], -1);
            m->h[nd->ents[e].slot].zone = (uint16_t)zi;
            zcomp_count(m, &m->h[nd->ents[e].slot], +1);
        }
    } else {
        zone_release(r, zi); /* the node already holds a reference */
    }
    if (strcmp(nd->addr, addr) != 0)
        strcpy(nd->addr, addr);
    /* Update holdings that stay and drop the others first, so the node's
     * entry array never holds more than |n| entries. */
    for (uint16_t e = 0; e < nd->nents; e++)
        nd->ents[e].mark = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t mi = mani_find(r, haves[i].manifest_id);
        uint16_t e = mi == NONE ? nd->nents : node_entry(nd, mi);
        if (e < nd->nents) {
            holder_update(r, mi, nd->ents[e].slot, haves[i].have_chunks, haves[i].complete);
            nd->ents[e].mark = 1;
        }
    }
    for (uint16_t e = 0; e < nd->nents;) {
        if (!nd->ents[e].mark)
            entry_remove(r, ni, e);
        else
            e++;
    }
    for (size_t i = 0; i < n; i++) {
        const struct shoal_reg_have *h = &haves[i];
        uint32_t mi = mani_find(r, h->manifest_id);
        nd = &r->nodes[ni];
        uint16_t e = mi == NONE ? nd->nents : node_entry(nd, mi);
        /* Ids nobody registered here (a release published elsewhere, or
         * one whose manifest comes back with the node's re-put after a
         * tracker restart, or junk) are recorded only within the node's
         * quota and the table's share for them: one node cannot fill the
         * table. Past them the entry is skipped, not the announce. */
        if (e == nd->nents && (mi == NONE || !r->manis[mi].signed_bytes) &&
            (nd->nunreg >= r->cfg.max_unregistered_per_node ||
             (mi == NONE && (r->nunreg >= unreg_cap(r) ||
                             r->nmanis_used >= r->cfg.max_manifests)))) {
            r->st.entries_skipped++;
            if (roles)
                roles[i] = (struct shoal_reg_role){
                    .rank = SHOAL_REG_RANK_NONE, .untracked = true,
                    .interval_ms = r->cfg.announce_interval_ms };
            continue;
        }
        if (mi == NONE && (rv = mani_create(r, h->manifest_id, false, &mi)) != 0)
            goto out;
        /* A holder's total_chunks never sizes lease state: only a signed
         * manifest (or the trusted caller of shoal_reg_lease) may. */
        if (e < nd->nents) {
            holder_update(r, mi, nd->ents[e].slot, h->have_chunks, h->complete);
        } else if ((rv = entry_add(r, ni, mi, h)) != 0) {
            goto out;
        }
        /* entry_add appended entry |e|. Only this manifest's holders move
         * its holder records, so the slot stays put for this announce. A
         * complete node needs no role to take one. */
        struct mani *m = &r->manis[mi];
        struct holder *ho = &m->h[nd->ents[e].slot];
        mani_touch(r, m, now_ms); /* held: not to be forgotten */
        if (!ho->complete)
            rank_take(r, m, ho);
        if (roles)
            role_describe(r, m, ho, &roles[i]);
    }
    r->st.announces++;
    rate_count(r, now_ms);
out:
    return rv;
}

/* ---- peers ---- */

static uint64_t gcd64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Eligible holders visited per request at most: a bound on the work one
 * request can cause. The walk touches only the compact holder array (the
 * node record only for a candidate that is kept), and once it has seen
 * PEER_WALK_ENOUGH times the list size it stops as soon as it has enough
 * candidates to fill the list. */
#define PEER_WALK_MAX 4096
#define PEER_WALK_ENOUGH 8

enum { B_ZONE_SEED, B_ZONE_PART, B_OTHER_SEED, B_OTHER_PART, B_N };

static size_t take(const uint32_t *bucket, uint32_t nb, uint32_t *used, uint32_t *out,
                   size_t n, size_t want)
{
    while (n < want && *used < nb)
        out[n++] = bucket[(*used)++];
    return n;
}

/* Fills |out| up to |quota| from a zone's seed and partial buckets, at most
 * half (rounded up) seeds while partial holders remain. */
static size_t take_zone(uint32_t *const *b, const uint32_t *nb, uint32_t *used, int seed_b,
                        uint32_t *out, size_t n, size_t quota)
{
    size_t end = n + quota;
    n = take(b[seed_b], nb[seed_b], &used[seed_b], out, n, n + (quota + 1) / 2);
    n = take(b[seed_b + 1], nb[seed_b + 1], &used[seed_b + 1], out, n, end);
    n = take(b[seed_b], nb[seed_b], &used[seed_b], out, n, end);
    return n;
}

/*
 * Sorts live entries [lo, hi) of |m|'s holder array (never |asker_pk|)
 * into buckets |b| by zone (|azone| or not) and completeness, at most
 * |want| per bucket. The walk goes in a random cyclic order (random start,
 * random stride coprime with the count, so each entry is seen at most once)
 * and is bounded by PEER_WALK_MAX.
 */
static void sample(struct shoal_reg *r, const struct mani *m, uint32_t lo, uint32_t hi,
                   uint64_t now_ms, const uint8_t *asker_pk, uint32_t azone, size_t want,
                   uint32_t *const *b, uint32_t *nb)
{
    uint64_t nh = hi - lo;
    if (nh == 0)
        return;
    uint64_t pos = splitmix64(&r->rng) % nh;
    uint64_t stride = 1;
    if (nh > 1) {
        do
            stride = 1 + splitmix64(&r->rng) % (nh - 1);
        while (gcd64(stride, nh) != 1);
    }
    uint64_t walk = nh < PEER_WALK_MAX ? nh : PEER_WALK_MAX;
    uint64_t enough = (uint64_t)want * PEER_WALK_ENOUGH;
    for (uint64_t k = 0; k < walk; k++, pos = (pos + stride) % nh) {
        const struct holder *ho = &m->h[lo + pos];
        int which = (ho->zone == azone ? B_ZONE_SEED : B_OTHER_SEED) + (ho->complete ? 0 : 1);
        if (nb[which] >= want)
            continue;
        const struct node *nd = &r->nodes[ho->node];
        if (!node_live(r, nd, now_ms))
            continue;
        if (asker_pk && memcmp(nd->pk, asker_pk, 32) == 0)
            continue;
        b[which][nb[which]++] = (uint32_t)(lo + pos);
        if (nb[0] >= want && nb[1] >= want && nb[2] >= want && nb[3] >= want)
            break;
        if (k >= enough && nb[0] + nb[1] + nb[2] + nb[3] >= want)
            break;
    }
}

size_t shoal_reg_peers(struct shoal_reg *r, uint64_t now_ms, const uint8_t manifest_id[32],
                       const uint8_t asker_pk[32], const char *asker_zone,
                       struct shoal_reg_peer *out, size_t max)
{
    size_t n = 0;
    size_t want = max;
    if (want > r->cfg.max_peers)
        want = r->cfg.max_peers;
    if (want > SHOAL_REG_PEERS_MAX)
        want = SHOAL_REG_PEERS_MAX;
    uint32_t mi = mani_find(r, manifest_id);
    if (mi == NONE || want == 0)
        goto out;
    const struct mani *m = &r->manis[mi];
    if (m->nh == 0)
        goto out;
    uint32_t azone = asker_zone ? zone_find(r, asker_zone, strlen(asker_zone)) : 0;

    uint32_t bstore[B_N][SHOAL_REG_PEERS_MAX];
    uint32_t *b[B_N] = { bstore[0], bstore[1], bstore[2], bstore[3] };
    uint32_t nb[B_N] = { 0 }, used[B_N] = { 0 };

    /* Eligible holders (complete or some chunks) first. */
    sample(r, m, 0, m->ne, now_ms, asker_pk, azone, want, b, nb);

    uint32_t pick[SHOAL_REG_PEERS_MAX];
    size_t zone_quota = (want * 3 + 3) / 4;
    n = take_zone(b, nb, used, B_ZONE_SEED, pick, 0, zone_quota);
    n = take_zone(b, nb, used, B_OTHER_SEED, pick, n, want - n);
    /* Too few foreign holders: give the rest of the slots to the zone. */
    n = take_zone(b, nb, used, B_ZONE_SEED, pick, n, want - n);
    if (n < want && m->nh > m->ne) {
        /* Too few holders: fill up with nodes that hold nothing yet, mostly
         * from the zone. A fleet that starts at once then connects at
         * once, and the first chunks spread over HAVEs as soon as they
         * land, instead of each node finding peers only after it got
         * something itself (a round trip to the origin and then to the
         * tracker). Holders always come first. */
        for (int k = 0; k < B_N; k++)
            nb[k] = used[k] = 0;
        sample(r, m, m->ne, m->nh, now_ms, asker_pk, azone, want - n, b, nb);
        size_t left = want - n;
        n = take_zone(b, nb, used, B_ZONE_SEED, pick, n, left - left / 4);
        n = take_zone(b, nb, used, B_OTHER_SEED, pick, n, want - n);
        n = take_zone(b, nb, used, B_ZONE_SEED, pick, n, want - n);
    }

    for (size_t i = 0; i < n; i++) {
        const struct holder *ho = &m->h[pick[i]];
        const struct node *nd = &r->nodes[ho->node];
        struct shoal_reg_peer *p = &out[i];
        memcpy(p->node_pk, nd->pk, 32);
        p->addr = nd->addr;
        p->zone = r->zones[nd->zone].name;
        p->complete = ho->complete;
        p->have_chunks = ho->have;
    }
out:
    return n;
}

/* ---- leases ---- */

static struct lease *lease_slot(struct mani *m)
{
    if (m->nl == m->capl) {
        uint32_t ncap = m->capl ? m->capl * 2 : 4;
        struct lease *nl = realloc(m->leases, (size_t)ncap * sizeof(*nl));
        if (!nl)
            return NULL;
        m->leases = nl;
        m->capl = ncap;
    }
    return &m->leases[m->nl];
}

/* True when some live node announced chunks of |m|. */
static bool mani_has_holder(const struct shoal_reg *r, const struct mani *m, uint64_t now_ms)
{
    for (uint32_t i = 0; i < m->ne; i++)
        if (node_live(r, &r->nodes[m->h[i].node], now_ms))
            return true;
    return false;
}

/*
 * The most chunks one lease of |m| may take now: a 1/(fetchers x
 * fetcher_leases) share of the chunks nobody has leased or fetched,
 * rounded up (guided self-scheduling); no limit when fetcher_leases is 0.
 * Early spans are long, so a large release costs few lease round trips;
 * the last ones are a chunk or two, so the origin's tail is spread over
 * every fetcher instead of queueing behind the one that leased it, and a
 * small release is split over the whole region's fetchers at once, not
 * handed to the first few.
 * Fetchers: the ranked nodes that are fetchers (fetch_level), at least
 * origin_fetchers per zone with a rank and min_fetchers, or every
 * announcer not yet dropped when any node may fetch; but once a chunk of
 * |m| has come back from the origin, no more than the announcers that
 * are not complete. One fetcher alone gets what it asks.
 * O(1): it runs on every lease request.
 */
static uint32_t lease_share(const struct shoal_reg *r, const struct mani *m)
{
    if (r->cfg.fetcher_leases == 0)
        return UINT32_MAX;
    /* Fetchers that exist, but never fewer than the settings ask for:
     * early in a rollout few have announced yet, and the first must not
     * take a small release's whole share. */
    uint64_t fetchers = m->nh;
    if (r->cfg.origin_fetchers > 0) {
        fetchers = (uint64_t)r->cfg.origin_fetchers * (m->nzr > 0 ? m->nzr : 1);
        if (fetchers < r->cfg.min_fetchers)
            fetchers = r->cfg.min_fetchers;
        /* Once chunks have come back from the origin, a fleet that
         * started together has announced: count only the nodes there
         * that may fetch. A lone node (or a fleet of two) pulling from a
         * gateway 20 ms away was otherwise granted nfree/16 for 1 or 2
         * fetchers, its two leases held less than the bandwidth-delay
         * product as the release ran out, and it took 1.49 x T_min
         * (1 GiB, 10 Gbit/s; 1.04 with this, 1.00 with the rule for
         * one fetcher below). Before that, the floor
         * stands for the fetchers still to announce (a 64-node fleet's
         * first announcer otherwise leased 98 of a 128 MiB release's
         * 131 chunks: 1.79 against 1.25 x T_min). */
        uint64_t may_fetch = m->nh - m->ncomplete;
        if (m->nfs > 0 && fetchers > may_fetch)
            fetchers = may_fetch;
        if (fetchers < m->nfetch)
            fetchers = m->nfetch;
    }
    /* Alone, a node shares the origin's tail with nobody. Its leases
     * were granted half of what was free, its next half of the rest:
     * spans halved every round trip, and with the gateway 50 ms away its
     * last hundred chunks took six of them (1.14 x T_min, 1.00 when it
     * gets what it asks). */
    if (fetchers <= 1)
        return UINT32_MAX;
    uint64_t d = fetchers * r->cfg.fetcher_leases;
    uint64_t share = ((uint64_t)m->nfree + d - 1) / d;
    return share > UINT32_MAX ? UINT32_MAX : (uint32_t)share;
}

/* A run of chunks [first, end). */
struct run {
    uint32_t first, end;
};

static int run_cmp(const void *a, const void *b)
{
    const struct run *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first;
}

/* First chunk of |m| in [from, to) that is free and outside |runs| (|n|,
 * sorted by first), or NONE. */
static uint32_t free_outside(const struct mani *m, const struct run *runs, uint32_t n,
                             uint32_t from, uint32_t to)
{
    uint32_t j = 0;
    for (uint32_t c = from; c < to;) {
        const uint8_t *p = memchr(m->chunks + c, CH_FREE, to - c);
        if (!p)
            break;
        c = (uint32_t)(p - m->chunks);
        while (j < n && runs[j].end <= c)
            j++;
        if (j == n || runs[j].first > c)
            return c;
        c = runs[j].end;
    }
    return NONE;
}

/*
 * Picks the span to lease to node |ni|: the first free chunk of |m| at or
 * after |start| (wrapping) that the node is not barred from, extended
 * while free and not barred, up to |max| chunks. Writes *first and *count
 * (0 when nothing is free). Returns 0 or -ENOMEM. O(bars of |m| log) on
 * top of the scan, and only for a node with bars.
 */
static int span_pick(struct shoal_reg *r, struct mani *m, uint32_t ni, uint32_t start,
                     uint32_t max, uint32_t *first, uint32_t *count)
{
    int rv = 0;
    struct run *runs = NULL;
    uint32_t n = 0;
    *count = 0;
    if (r->nodes[ni].nbars) {
        runs = malloc((size_t)m->nbars * sizeof(*runs) + 1);
        if (!runs) {
            rv = -ENOMEM;
            goto out;
        }
        for (uint32_t i = 0; i < m->nbars; i++)
            if (m->bars[i].node == ni)
                runs[n++] = (struct run){ m->bars[i].first,
                                          m->bars[i].first + m->bars[i].count };
        qsort(runs, n, sizeof(*runs), run_cmp);
    }
    uint32_t f = free_outside(m, runs, n, start, m->nchunks);
    if (f == NONE && start)
        f = free_outside(m, runs, n, 0, start);
    if (f == NONE)
        goto out;
    /* The span stops at the next bar. */
    uint32_t end = m->nchunks;
    for (uint32_t j = 0; j < n; j++)
        if (runs[j].first > f && runs[j].first < end)
            end = runs[j].first;
    uint32_t c = 0;
    while (c < max && f + c < end && m->chunks[f + c] == CH_FREE)
        c++;
    *first = f;
    *count = c;
out:
    free(runs);
    return rv;
}

/* An unconfirmed lease node |ni| holds on |m| that covers |hint|, else
 * its first unconfirmed one, of at most |max| chunks; or NULL. */
static struct lease *lease_unconfirmed(struct mani *m, uint32_t ni, uint32_t hint, uint32_t max)
{
    struct lease *any = NULL;
    for (uint32_t i = 0; i < m->nl; i++) {
        struct lease *l = &m->leases[i];
        if (l->node != ni || !l->unconfirmed || l->count > max)
            continue;
        if (hint >= l->first && hint - l->first < l->count)
            return l;
        if (!any)
            any = l;
    }
    return any;
}

static int fspan_add(struct shoal_reg *r, struct mani *m, uint32_t ni, uint32_t first,
                     uint32_t count, uint64_t now_ms);

/* Whether every chunk of lease |l| is fetched. */
static bool lease_fetched(const struct mani *m, const struct lease *l)
{
    for (uint32_t c = l->first; c < l->first + l->count; c++)
        if (m->chunks[c] != CH_FETCHED)
            return false;
    return true;
}

/* Node |ni| asks for a lease from |c|, a chunk it misses that none of its
 * peers offers (SHOAL_REG_HINT_MISSING: the daemon leases only such
 * chunks; an older one sends no flags and this never applies). If the tracker holds |c|
 * as fetched on |ni|'s own word, or leased to |ni|, that word no longer
 * stands: |ni| reported it while a peer held it and the peer has since
 * gone, or its lease ended without it. Kept, nobody could lease the chunk
 * until fetched_ttl_ms (ten minutes) or lease_ms ran out, while the swarm
 * had lost it (a simulated fleet with failures stalled for ten minutes):
 * it is leasable again, and span_pick gives it to |ni| first.
 * Another node's word on |c| gives way too once that fetch is lease_ms
 * old (the span's last report, so no chunk of it is younger; or a word
 * withdrawn so before, fetched again since) and the tracker has known |ni|
 * that long (a node that just came may not have its peers yet: late
 * joiners with --origin-delay 0 took 7% of a release from the origin
 * again, in a simulated 100-node fleet joining over 5 minutes): in a swarm
 * whose peers connect it, a chunk fetched that long ago is at a peer of
 * every node by then, so a node whose peers still offer none is cut off
 * from its holders (a peer group of two-peer nodes, a zone cut off), and
 * only the origin can bring it. Kept, such a node waited for ever while
 * some node was complete (fetched_ttl_ms frees nothing then): --peers 2
 * left 200 simulated nodes incomplete (test_sim's test_cut_off_groups).
 * Without the memory to split a span nothing changes. */
static void withdraw_hint(struct shoal_reg *r, struct mani *m, uint32_t ni, uint32_t c,
                          uint64_t now_ms, bool starved)
{
    if (m->chunks[c] == CH_LEASED) {
        for (uint32_t i = 0; i < m->nl; i++) {
            const struct lease *l = &m->leases[i];
            /* An unconfirmed one the node may not know of: it is granted
             * again as it is (lease_unconfirmed). */
            if (l->node != ni || l->unconfirmed || c < l->first || c - l->first >= l->count)
                continue;
            /* The lease stays as granted (the node reports against its
             * span) and the next one overlaps it: lease_drop frees no chunk
             * another lease still covers. */
            m->chunks[c] = CH_FREE;
            m->nfree++;
            m->overlaps = true;
            r->st.fetched_withdrawn++;
            return;
        }
        return;
    }
    if (m->chunks[c] != CH_FETCHED)
        return;
    for (uint32_t i = 0; i < m->nfs; i++) {
        struct fspan *f = &m->fs[i];
        if (c < f->first || c - f->first >= f->count)
            continue;
        if (f->node != ni) {
            /* Only for a node no peer has given anything for a while: one
             * that waits for its zone's next import (a cross-zone cap)
             * must not fetch again what the zone is bringing in. */
            if (!starved)
                return;
            /* A node that came lately may not have its peers yet. */
            const struct node *nd = &r->nodes[ni];
            if (now_ms < nd->born_ms || now_ms - nd->born_ms < r->cfg.lease_ms)
                return;
            bool old = now_ms >= f->done_ms && now_ms - f->done_ms >= r->cfg.lease_ms;
            if (!old && !(m->stale && (m->stale[c >> 3] >> (c & 7) & 1)))
                return;
            /* The next cut-off node to miss it need not wait lease_ms
             * again: its age is that of the first fetch. */
            if (!m->stale && !(m->stale = calloc((m->nchunks + 7) / 8, 1)))
                return;
            m->stale[c >> 3] |= (uint8_t)(1u << (c & 7));
        }
        uint32_t first = f->first, end = f->first + f->count;
        if (c > first && c + 1 < end) {
            /* The part after |c| becomes a span of its own (not merged
             * into |f|: that ends before |c| by then). */
            f->count = c - first;
            if (fspan_add(r, m, f->node, c + 1, end - c - 1, m->fs[i].done_ms) != 0) {
                m->fs[i].count = end - first;
                return;
            }
        } else if (f->count == 1) {
            fspan_drop(r, m, i, false);
        } else if (c == f->first) {
            f->first++;
            f->count--;
        } else {
            f->count--;
        }
        m->chunks[c] = CH_FREE;
        m->nfree++;
        /* A lease of the node may still cover it (it reported the chunk
         * while a peer held it, and the rest is still coming). */
        m->overlaps = true;
        r->st.fetched_withdrawn++;
        return;
    }
}

/* Gives |m| its per-chunk lease state on first use, charged to the
 * registry's lease-chunk budget. Returns 0, SHOAL_ELIMIT or -ENOMEM. */
static int chunks_alloc(struct shoal_reg *r, struct mani *m)
{
    if (m->chunks)
        return 0;
    if (r->lease_chunks + m->nchunks > r->cfg.max_lease_chunks)
        return SHOAL_ELIMIT;
    m->chunks = calloc(m->nchunks, 1);
    if (!m->chunks)
        return -ENOMEM;
    m->nfree = m->nchunks;
    r->lease_chunks += m->nchunks;
    return 0;
}

int shoal_reg_lease(struct shoal_reg *r, uint64_t now_ms, const uint8_t manifest_id[32],
                    uint32_t nchunks, const uint8_t node_pk[32], uint32_t max_chunks,
                    uint32_t hint_chunk, uint32_t flags, uint32_t *first, uint32_t *count,
                    uint64_t *expires_ms)
{
    int rv = 0;
    *first = 0;
    *count = 0;
    *expires_ms = 0;
    /* The size comes from the registered manifest, else the caller; an
     * unknown size creates nothing. */
    uint32_t mi = mani_find(r, manifest_id);
    uint32_t size = mi != NONE && r->manis[mi].nchunks ? r->manis[mi].nchunks : nchunks;
    if (!size || size > SHOAL_REG_CHUNKS_MAX) {
        rv = SHOAL_ETOOBIG;
        goto out;
    }
    uint32_t ni;
    if ((rv = node_get(r, node_pk, now_ms, &ni)) != 0)
        goto out;
    mi = mani_get(r, manifest_id, &rv);
    if (mi == NONE)
        goto out;
    struct mani *m = &r->manis[mi];
    if (!m->nchunks)
        m->nchunks = size;
    mani_expire_leases(r, m, now_ms);
    /* A lease granted before the node's last reconnect that it never
     * reported on may have been granted in a reply lost with the old
     * connection: the node would not fetch it and everyone would wait
     * lease_ms for it. Its next request gets the same lease again, once
     * (the node then knows it). A node that did know it treats the span as
     * already leased: nothing in it is fetched twice. */
    if (r->nodes[ni].nleases) {
        uint32_t mx = max_chunks < SHOAL_REG_LEASE_SPAN_MAX ? max_chunks
                                                             : SHOAL_REG_LEASE_SPAN_MAX;
        struct lease *old = lease_unconfirmed(m, ni, hint_chunk, mx);
        if (old) {
            old->unconfirmed = false;
            r->st.leases_regranted++;
            *first = old->first;
            *count = old->count;
            *expires_ms = old->expires_ms;
            goto out;
        }
    }
    /* The per-node cap comes before any lease state is charged to the
     * global budget. */
    if (r->nodes[ni].nleases >= SHOAL_REG_LEASES_PER_NODE) {
        rv = SHOAL_EBUSY;
        goto out;
    }
    if ((rv = chunks_alloc(r, m)) != 0)
        goto out;
    mani_expire_fetched(r, m, now_ms);
    mani_drop_bars(r, m, now_ms, NONE);
    if (m->nfs && !mani_has_holder(r, m, now_ms) &&
        now_ms - m->last_done_ms > r->cfg.node_ttl_ms) {
        /* Nobody announces any of it and nothing was fetched lately: the
         * swarm lost every fetched chunk. */
        while (m->nfs)
            fspan_drop(r, m, m->nfs - 1, true);
    }
    if ((flags & SHOAL_REG_HINT_MISSING) && hint_chunk < m->nchunks)
        withdraw_hint(r, m, ni, hint_chunk, now_ms, flags & SHOAL_REG_HINT_STARVED);
    if (max_chunks > SHOAL_REG_LEASE_SPAN_MAX)
        max_chunks = SHOAL_REG_LEASE_SPAN_MAX;
    uint32_t share = lease_share(r, m);
    if (max_chunks > share)
        max_chunks = share;
    if (max_chunks == 0)
        goto out;
    uint32_t start = hint_chunk < m->nchunks ? hint_chunk : 0;
    uint32_t f = 0, c = 0;
    if ((rv = span_pick(r, m, ni, start, max_chunks, &f, &c)) != 0 || c == 0)
        goto out;
    struct lease *l = lease_slot(m);
    if (!l) {
        rv = -ENOMEM;
        goto out;
    }
    *l = (struct lease){ .node = ni, .first = f, .count = c, .expires_ms = now_ms + r->cfg.lease_ms };
    m->nl++;
    memset(m->chunks + f, CH_LEASED, c);
    m->nfree -= c;
    r->nodes[ni].nleases++;
    r->st.leases_granted++;
    r->st.leases_active++;
    *first = f;
    *count = c;
    *expires_ms = l->expires_ms;
out:
    return rv;
}

/* Records that node |ni| fetched [first, first+count) of |m|, extending the
 * node's previous span when this one continues it. */
static int fspan_add(struct shoal_reg *r, struct mani *m, uint32_t ni, uint32_t first,
                     uint32_t count, uint64_t now_ms)
{
    int rv = 0;
    if (m->nfs) {
        struct fspan *last = &m->fs[m->nfs - 1];
        if (last->node == ni && last->first + last->count == first) {
            last->count += count;
            last->done_ms = now_ms;
            goto out;
        }
    }
    if (m->nfs == m->capfs) {
        uint32_t ncap = m->capfs ? m->capfs * 2 : 4;
        struct fspan *nf = realloc(m->fs, (size_t)ncap * sizeof(*nf));
        if (!nf) {
            rv = -ENOMEM;
            goto out;
        }
        m->fs = nf;
        m->capfs = ncap;
    }
    m->fs[m->nfs++] = (struct fspan){ .node = ni, .first = first, .count = count,
                                      .done_ms = now_ms };
    if (ni != NONE) /* a span kept after its fetcher left (withdraw_hint) */
        r->nodes[ni].nfspans++;
out:
    return rv;
}

bool shoal_reg_partly_held(const struct shoal_reg *r, uint64_t now_ms,
                           const uint8_t manifest_id[32])
{
    uint32_t mi = mani_find(r, manifest_id);
    if (mi == NONE)
        return false;
    const struct mani *m = &r->manis[mi];
    for (uint32_t i = 0; i < m->ne; i++)
        if (!m->h[i].complete && m->h[i].have > 0 &&
            node_live(r, &r->nodes[m->h[i].node], now_ms))
            return true;
    return false;
}

int shoal_reg_lease_give_back(struct shoal_reg *r, uint64_t now_ms, const uint8_t manifest_id[32],
                              const uint8_t node_pk[32], uint32_t *ended)
{
    uint32_t ni = node_find(r, node_pk);
    uint32_t mi = mani_find(r, manifest_id);

    *ended = 0;
    if (ni == NONE || mi == NONE)
        return 0;
    mani_expire_leases(r, &r->manis[mi], now_ms);
    *ended = drop_node_leases(r, &r->manis[mi], ni);
    r->st.leases_given_back += *ended;
    return 0;
}

/* Whether chunk |c| of |m|, CH_FETCHED, is on node |ni|'s own word. */
static bool fetched_by(const struct mani *m, uint32_t ni, uint32_t c)
{
    for (uint32_t i = 0; i < m->nfs; i++) {
        const struct fspan *f = &m->fs[i];
        if (c >= f->first && c - f->first < f->count)
            return f->node == ni;
    }
    return false;
}

/* Whether a bar keeps node |ni| from any chunk of [first, end) of |m|. */
static bool barred(const struct mani *m, uint32_t ni, uint32_t first, uint32_t end)
{
    for (uint32_t i = 0; i < m->nbars; i++) {
        const struct bar *b = &m->bars[i];
        if (b->node == ni && b->first < end && first < b->first + b->count)
            return true;
    }
    return false;
}

int shoal_reg_lease_reclaim(struct shoal_reg *r, uint64_t now_ms, const uint8_t manifest_id[32],
                            const uint8_t node_pk[32], uint32_t first, uint32_t count,
                            uint32_t left_ms, bool fresh, uint64_t *expires_ms)
{
    int rv = 0;
    *expires_ms = 0;
    uint32_t mi = mani_find(r, manifest_id);
    if (mi == NONE || !r->manis[mi].nchunks) {
        rv = SHOAL_ETOOBIG; /* not published here: no size to check against */
        goto out;
    }
    struct mani *m = &r->manis[mi];
    if (count == 0 || count > SHOAL_REG_LEASE_SPAN_MAX || first >= m->nchunks ||
        count > m->nchunks - first || left_ms == 0) {
        rv = SHOAL_EBADMSG;
        goto out;
    }
    uint32_t ni;
    if ((rv = node_get(r, node_pk, now_ms, &ni)) != 0)
        goto out;
    if ((rv = chunks_alloc(r, m)) != 0)
        goto out;
    mani_expire_leases(r, m, now_ms);
    mani_expire_fetched(r, m, now_ms);
    mani_drop_bars(r, m, now_ms, NONE);
    /* The same tracker process kept it (the node only reconnected): the
     * claim confirms it, and its expiry stays the tracker's own. */
    for (uint32_t i = 0; i < m->nl; i++) {
        struct lease *l = &m->leases[i];
        if (l->node == ni && l->first == first && l->count == count) {
            l->unconfirmed = false;
            *expires_ms = l->expires_ms;
            r->st.leases_reclaimed++;
            goto out;
        }
    }
    /* First come: every chunk must be free, or fetched on the claimer's
     * own word (it reported them on this connection before re-claiming). A
     * chunk leased to or fetched by another node is theirs, and a span the
     * node is barred from (its fetched credit ran out unvouched) stays
     * closed to it. So is one overlapping a lease of its own other than
     * the one claimed: claiming shifted spans over it would hold its
     * chunks past lease_ms without progress. */
    uint32_t nfree = 0;
    if (!fresh) {
        /* This process granted every lease the node could hold, and this
         * is none of them. */
        rv = SHOAL_EBUSY;
        r->st.leases_reclaim_refused++;
        goto out;
    }
    for (uint32_t c = first; c < first + count; c++) {
        if (m->chunks[c] == CH_FREE) {
            nfree++;
        } else if (!(m->chunks[c] == CH_FETCHED && fetched_by(m, ni, c))) {
            rv = SHOAL_EBUSY;
            break;
        }
    }
    if (rv == 0 && barred(m, ni, first, first + count))
        rv = SHOAL_EBUSY;
    if (rv == 0 && nfree > 0 && r->nodes[ni].nleases >= SHOAL_REG_LEASES_PER_NODE)
        rv = SHOAL_EBUSY;
    if (rv != 0) {
        r->st.leases_reclaim_refused++;
        goto out;
    }
    /* Never longer than a lease granted here now: the claim says how
     * long it had left, and a node cannot stretch that. */
    uint64_t exp = now_ms + (left_ms < r->cfg.lease_ms ? left_ms : r->cfg.lease_ms);
    *expires_ms = exp;
    r->st.leases_reclaimed++;
    if (nfree == 0)
        goto out; /* all its own already: nothing left to hold */
    struct lease *l = lease_slot(m);
    if (!l) {
        rv = -ENOMEM;
        *expires_ms = 0;
        r->st.leases_reclaimed--;
        goto out;
    }
    *l = (struct lease){ .node = ni, .first = first, .count = count, .expires_ms = exp };
    m->nl++;
    for (uint32_t c = first; c < first + count; c++) {
        if (m->chunks[c] == CH_FREE) {
            m->chunks[c] = CH_LEASED;
            m->nfree--;
        }
    }
    r->nodes[ni].nleases++;
    r->st.leases_active++;
out:
    return rv;
}

int shoal_reg_lease_done(struct shoal_reg *r, uint64_t now_ms, const uint8_t manifest_id[32],
                         const uint8_t node_pk[32], uint32_t first, uint32_t count)
{
    int rv = SHOAL_ENOTFOUND;
    if (count == 0) {
        rv = SHOAL_EBADMSG;
        goto out;
    }
    uint32_t ni = node_find(r, node_pk);
    uint32_t mi = mani_find(r, manifest_id);
    if (ni == NONE || mi == NONE)
        goto out;
    struct mani *m = &r->manis[mi];
    mani_expire_leases(r, m, now_ms);
    for (uint32_t i = 0; i < m->nl; i++) {
        struct lease *l = &m->leases[i];
        if (l->node != ni || first < l->first ||
            (uint64_t)first + count > (uint64_t)l->first + l->count)
            continue;
        l->unconfirmed = false; /* the node knows it */
        bool changed = false;
        for (uint32_t c = first; c < first + count; c++) {
            changed = changed || m->chunks[c] == CH_LEASED;
            /* A chunk a returned fetched span freed while this lease ran
             * (lease_ms above fetched_ttl_ms) is taken again. */
            if (m->chunks[c] == CH_FREE)
                m->nfree--;
            m->chunks[c] = CH_FETCHED;
        }
        if (changed && (rv = fspan_add(r, m, ni, first, count, now_ms)) != 0) {
            /* Without a record the chunks could never come back: leave
             * them leased, to revert when the lease expires. */
            memset(m->chunks + first, CH_LEASED, count);
            break;
        }
        m->last_done_ms = now_ms;
        if (lease_fetched(m, l)) {
            lease_drop(r, m, i, false);
            r->st.leases_done++;
        } else if (changed) {
            /* Progress: the rest is still coming. Expiring on the grant's
             * clock regranted it to another node, which fetched it again
             * while this one was still at it. */
            l->expires_ms = now_ms + r->cfg.lease_ms;
        }
        rv = 0;
        break;
    }
    /* Overlapping leases of the node (withdraw_hint): one the report
     * completed ends too, not at its expiry (it counts against the node's
     * cap until then). */
    for (uint32_t i = 0; rv == 0 && m->overlaps && i < m->nl;) {
        if (m->leases[i].node == ni && lease_fetched(m, &m->leases[i])) {
            lease_drop(r, m, i, false);
            r->st.leases_done++;
        } else {
            i++;
        }
    }
out:
    return rv;
}

/* ---- expiry ---- */

static void mani_remove_idx(struct shoal_reg *r, uint32_t mi)
{
    struct mani *m = &r->manis[mi];
    while (m->nfs)
        fspan_drop(r, m, m->nfs - 1, false);
    while (m->nbars)
        bar_drop(r, m, m->nbars - 1);
    tab_remove(&r->mani_tab, hash_key32(r->hkey, m->id), mi);
    if (m->chunks)
        r->lease_chunks -= m->nchunks;
    if (!m->signed_bytes)
        r->nunreg--;
    r->st.unregistered = r->nunreg;
    mani_clear(m);
    r->mani_free[r->nmani_free++] = mi;
    r->nmanis_used--;
    r->st.manifests = r->nmanis_used;
}

/* Forgets registered manifest |mi|: its name, its bytes (once no write
 * holds them) and its record. The caller checked nobody holds or leases
 * it. */
static void mani_forget(struct shoal_reg *r, uint32_t mi)
{
    struct mani *m = &r->manis[mi];
    tab_remove(&r->name_tab, m->name_hash, mi);
    r->manifest_bytes -= m->signed_len;
    r->st.registered--;
    r->st.manifests_forgotten++;
    mani_remove_idx(r, mi);
}

/* Whether a rollout names |m|'s release: nodes are told to pull it by
 * name, and the tracker must still be able to hand them its manifest. */
static bool mani_rolled_out(const struct shoal_reg *r, const struct mani *m)
{
    const char *full = m->names ? m->names + m->repo_len + 1 + m->commit_len + 1 : NULL;
    for (uint32_t i = 0; full && i < r->nrollouts; i++) {
        if (strcmp(r->rollouts[i].repo_at_rev, full) == 0)
            return true;
    }
    return false;
}

/* Makes room for one more registered manifest of |len| bytes, and a
 * record when |need_slot|, by forgetting the least recently used ones
 * nobody holds or leases. Returns 0 or SHOAL_ELIMIT. */
static int mani_make_room(struct shoal_reg *r, size_t len, bool need_slot)
{
    while ((need_slot && r->nmanis_used >= r->cfg.max_manifests) ||
           r->manifest_bytes + len > r->cfg.max_manifest_bytes) {
        uint32_t lru = NONE;
        for (uint32_t mi = 0; mi < r->nmanis_cap; mi++) {
            const struct mani *m = &r->manis[mi];
            if (m->used && m->signed_bytes && !m->nh && !m->nl && !mani_rolled_out(r, m) &&
                (lru == NONE || m->used_seq < r->manis[lru].used_seq))
                lru = mi;
        }
        if (lru == NONE)
            return SHOAL_ELIMIT;
        mani_forget(r, lru);
    }
    return 0;
}

void shoal_reg_manifest_used(struct shoal_reg *r, const uint8_t manifest_id[32], uint64_t now_ms)
{
    uint32_t mi = mani_find(r, manifest_id);
    if (now_ms > r->now_ms)
        r->now_ms = now_ms;
    if (mi != NONE)
        mani_touch(r, &r->manis[mi], now_ms);
}

void shoal_reg_expire(struct shoal_reg *r, uint64_t now_ms)
{
    if (now_ms > r->now_ms)
        r->now_ms = now_ms;
    for (uint32_t ni = 0; ni < r->nnodes_cap; ni++) {
        struct node *nd = &r->nodes[ni];
        if (nd->used && !node_live(r, nd, now_ms)) {
            gone_note(r, nd, SHOAL_REG_GONE_LOST);
            node_remove_idx(r, ni);
            r->st.nodes_expired++;
        }
    }
    for (uint32_t mi = 0; mi < r->nmanis_cap; mi++) {
        struct mani *m = &r->manis[mi];
        if (!m->used)
            continue;
        mani_expire_leases(r, m, now_ms);
        mani_expire_fetched(r, m, now_ms);
        mani_drop_bars(r, m, now_ms, NONE);
        if (m->signed_bytes && r->cfg.manifest_ttl_ms && !m->nh && !m->nl &&
            now_ms > m->used_ms && now_ms - m->used_ms >= r->cfg.manifest_ttl_ms &&
            !mani_rolled_out(r, m)) {
            mani_forget(r, mi);
            continue;
        }
        /* Lease state without holders is worth keeping only while fetched
         * chunks may still be in the swarm. */
        if (!m->nh && !m->nl && !m->signed_bytes &&
            (!m->chunks || now_ms - m->last_done_ms > r->cfg.node_ttl_ms))
            mani_remove_idx(r, mi);
    }
}

/* ---- manifests ---- */

static void mani_describe(const struct mani *m, struct shoal_reg_manifest *out)
{
    memcpy(out->id, m->id, 32);
    out->repo_type = m->repo_type;
    out->repo = m->names;
    out->commit = m->names + m->repo_len + 1;
    out->repo_at_rev = m->names + m->repo_len + 1 + m->commit_len + 1;
    out->nchunks = m->nchunks;
    out->signed_bytes = m->signed_bytes;
    out->signed_len = m->signed_len;
}

int shoal_reg_put_manifest(struct shoal_reg *r, const uint8_t manifest_id[32], uint8_t repo_type,
                           const char *repo, const char *commit, uint32_t nchunks,
                           const uint8_t *signed_bytes, size_t len)
{
    return shoal_reg_put_manifest_ex(r, manifest_id, repo_type, repo, commit, nchunks, 0,
                                     signed_bytes, len);
}

int shoal_reg_put_manifest_ex(struct shoal_reg *r, const uint8_t manifest_id[32],
                              uint8_t repo_type, const char *repo, const char *commit,
                              uint32_t nchunks, uint64_t created, const uint8_t *signed_bytes,
                              size_t len)
{
    int rv = 0;
    char *names = NULL;
    uint8_t *bytes = NULL;
    size_t rl = strlen(repo), cl = strlen(commit);
    /* A dataset's name carries the prefix that keeps it apart from a model
     * of the same org/name (manifest.h, release names): nodes and rollouts
     * ask for "datasets/org/name@commit". */
    const char *pfx = repo_type == SHOAL_REPO_DATASET ? SHOAL_RELNAME_DATASET : "";
    size_t pl = strlen(pfx);
    if (pl + rl + 1 + cl > SHOAL_REG_REPO_MAX || nchunks > SHOAL_REG_CHUNKS_MAX) {
        rv = SHOAL_ETOOBIG;
        goto fail;
    }
    if (!rl || !cl || strchr(repo, '@') || strchr(commit, '@')) {
        rv = SHOAL_EBADMSG;
        goto fail;
    }
    uint32_t mi = mani_find(r, manifest_id);
    if (mi != NONE && r->manis[mi].signed_bytes) {
        mani_touch(r, &r->manis[mi], r->now_ms);
        goto fail; /* already registered: rv is 0 */
    }
    if (len > r->cfg.max_manifest_bytes) {
        rv = SHOAL_ELIMIT;
        goto fail;
    }
    names = malloc(rl + 1 + cl + 1 + pl + rl + 1 + cl + 1);
    bytes = blob_new(signed_bytes, len);
    if (!names || !bytes) {
        rv = -ENOMEM;
        goto fail;
    }
    /* "repo\0commit\0[datasets/]repo@commit\0": one allocation serves all
     * three. */
    char *w = names;
    memcpy(w, repo, rl + 1);
    w += rl + 1;
    memcpy(w, commit, cl + 1);
    w += cl + 1;
    memcpy(w, pfx, pl);
    memcpy(w + pl, repo, rl);
    w[pl + rl] = '@';
    memcpy(w + pl + rl + 1, commit, cl + 1);
    const char *full = names + rl + 1 + cl + 1;
    uint32_t nh = hash_str(r->hkey, full, pl + rl + 1 + cl);
    /* Full: the least recently used manifests nobody holds make room. */
    if ((rv = mani_make_room(r, len, mi == NONE)) != 0)
        goto fail;
    if (mi == NONE && (rv = mani_create(r, manifest_id, true, &mi)) != 0)
        goto fail;
    uint32_t old = tab_find(&r->name_tab, nh, name_eq, r, full, pl + rl + 1 + cl);
    /* The newest signing wins the name: an old manifest re-put (say by a
     * node after a tracker restart) must not take it back. */
    if (old == NONE || r->manis[old].created <= created) {
        if ((rv = tab_insert(&r->name_tab, nh, mi)) != 0)
            goto fail;
        if (old != NONE)
            tab_remove(&r->name_tab, nh, old);
    }
    struct mani *m = &r->manis[mi];
    m->created = created;
    if (m->chunks && m->nchunks != nchunks) {
        /* Lease state sized by a node's guess: the signed count wins. */
        while (m->nl)
            lease_drop(r, m, m->nl - 1, false);
        while (m->nfs)
            fspan_drop(r, m, m->nfs - 1, false);
        free(m->chunks);
        m->chunks = NULL;
        r->lease_chunks -= m->nchunks;
    }
    m->nchunks = nchunks;
    m->repo_type = repo_type;
    m->names = names;
    m->repo_len = rl;
    m->commit_len = cl;
    m->name_hash = nh;
    if (!m->signed_bytes) {
        /* Its holders' entries no longer count against their quota. */
        r->nunreg--;
        r->st.unregistered = r->nunreg;
        for (uint32_t i = 0; i < m->nh; i++)
            r->nodes[m->h[i].node].nunreg--;
    }
    m->signed_bytes = bytes;
    m->signed_len = len;
    mani_touch(r, m, r->now_ms);
    r->manifest_bytes += len;
    r->st.registered++;
    return 0;
fail:
    free(names);
    shoal_reg_bytes_release(bytes);
    return rv;
}

int shoal_reg_manifest_by_id(const struct shoal_reg *r, const uint8_t manifest_id[32],
                             struct shoal_reg_manifest *out)
{
    uint32_t mi = mani_find(r, manifest_id);
    if (mi == NONE || !r->manis[mi].signed_bytes)
        return SHOAL_ENOTFOUND;
    mani_describe(&r->manis[mi], out);
    return 0;
}

int shoal_reg_manifest_by_name(const struct shoal_reg *r, const char *repo_at_rev, size_t len,
                               struct shoal_reg_manifest *out)
{
    uint32_t mi = tab_find(&r->name_tab, hash_str(r->hkey, repo_at_rev, len), name_eq, r,
                           repo_at_rev, len);
    if (mi == NONE)
        return SHOAL_ENOTFOUND;
    mani_describe(&r->manis[mi], out);
    return 0;
}

/* ---- rollouts ---- */

int shoal_reg_rollout_set(struct shoal_reg *r, const char *repo_at_rev, const char *zone,
                          bool remove)
{
    int rv = 0;
    if (!zone)
        zone = "";
    size_t n = strlen(repo_at_rev);
    if (n > SHOAL_REG_REPO_MAX || strlen(zone) > SHOAL_REG_ZONE_MAX) {
        rv = SHOAL_ETOOBIG;
        goto out;
    }
    const char *at = strchr(repo_at_rev, '@');
    if (!at || at == repo_at_rev || !at[1]) {
        rv = SHOAL_EBADMSG;
        goto out;
    }
    /* Only what nodes can act on: org/name (non-empty parts) at a
     * 40-hex commit, as `shoal rollout` sends; a rollout file edited by
     * hand could hold anything (bad@name was counted as restored). */
    bool ok = strlen(at + 1) == 40 && at[-1] != '/' && repo_at_rev[0] != '/' &&
              memchr(repo_at_rev, '/', (size_t)(at - repo_at_rev)) != NULL;
    for (const char *p = at + 1; ok && *p; p++)
        ok = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f');
    for (const char *p = repo_at_rev; ok && p < at; p++)
        ok = *p > ' ' && *p != 0x7f && !(p[0] == '/' && p[1] == '/');
    if (!ok) {
        rv = SHOAL_EBADMSG;
        goto out;
    }
    uint32_t zi = NONE;
    if (*zone) {
        zi = zone_find(r, zone, strlen(zone));
        if (zi == NONE && remove) {
            rv = SHOAL_ENOTFOUND;
            goto out;
        }
    }
    /* A zone not interned yet has no entries (NONE would match global). */
    uint32_t i = r->nrollouts;
    if (!*zone || zi != NONE)
        for (i = 0; i < r->nrollouts; i++)
            if (r->rollouts[i].zone == zi &&
                strcmp(r->rollouts[i].repo_at_rev, repo_at_rev) == 0)
                break;
    if (remove) {
        if (i == r->nrollouts) {
            rv = SHOAL_ENOTFOUND;
            goto out;
        }
        memmove(&r->rollouts[i], &r->rollouts[i + 1],
                (r->nrollouts-- - i - 1) * sizeof(r->rollouts[0]));
        if (zi != NONE)
            zone_release(r, zi);
        goto out;
    }
    if (i < r->nrollouts)
        goto out;
    if (r->nrollouts == SHOAL_REG_ROLLOUTS_MAX) {
        rv = SHOAL_ELIMIT;
        goto out;
    }
    /* Each zoned rollout holds a reference on its zone. */
    if (*zone && (zi = zone_acquire(r, zone)) == NONE) {
        rv = SHOAL_ELIMIT;
        goto out;
    }
    i = r->nrollouts;
    memcpy(r->rollouts[i].repo_at_rev, repo_at_rev, n + 1);
    r->rollouts[i].zone = zi;
    r->rollouts[i].ref[0] = '\0';
    r->nrollouts++;
out:
    return rv;
}

int shoal_reg_rollout_set_ref(struct shoal_reg *r, const char *repo_at_rev, const char *zone,
                              const char *ref)
{
    if (!ref)
        ref = "";
    if (!zone)
        zone = "";
    if (strlen(ref) > SHOAL_REG_REF_MAX)
        return SHOAL_ETOOBIG;
    int rv = shoal_reg_rollout_set(r, repo_at_rev, zone, false);
    if (rv)
        return rv;
    uint32_t zi = *zone ? zone_find(r, zone, strlen(zone)) : NONE;
    size_t rlen = (size_t)(strrchr(repo_at_rev, '@') - repo_at_rev);
    for (uint32_t i = 0; i < r->nrollouts; i++) {
        struct rollout *ro = &r->rollouts[i];
        if (ro->zone == zi && strcmp(ro->repo_at_rev, repo_at_rev) == 0) {
            memcpy(ro->ref, ref, strlen(ref) + 1);
            continue;
        }
        /* The newest rollout naming the branch moves it: an older one of
         * the same repository would move it back on nodes that complete
         * it later. */
        if (*ref && strcmp(ro->ref, ref) == 0 && strncmp(ro->repo_at_rev, repo_at_rev, rlen) == 0 &&
            ro->repo_at_rev[rlen] == '@')
            ro->ref[0] = '\0';
    }
    return 0;
}

static const char *rollout_zone(const struct shoal_reg *r, const struct rollout *ro)
{
    return ro->zone == NONE ? "" : r->zones[ro->zone].name;
}

void shoal_reg_rollout_refs_get(const struct shoal_reg *r, struct shoal_reg_rollout_refs *out)
{
    out->n = r->nrollouts;
    for (uint32_t i = 0; i < r->nrollouts; i++) {
        snprintf(out->e[i].repo_at_rev, sizeof out->e[i].repo_at_rev, "%s",
                 r->rollouts[i].repo_at_rev);
        snprintf(out->e[i].zone, sizeof out->e[i].zone, "%s", rollout_zone(r, &r->rollouts[i]));
        snprintf(out->e[i].ref, sizeof out->e[i].ref, "%s", r->rollouts[i].ref);
    }
}

bool shoal_reg_rollout_refs_equal(const struct shoal_reg_rollout_refs *a,
                                  const struct shoal_reg_rollout_refs *b)
{
    bool eq = a->n == b->n;
    for (uint32_t i = 0; eq && i < a->n; i++)
        eq = strcmp(a->e[i].repo_at_rev, b->e[i].repo_at_rev) == 0 &&
             strcmp(a->e[i].zone, b->e[i].zone) == 0 && strcmp(a->e[i].ref, b->e[i].ref) == 0;
    return eq;
}

void shoal_reg_rollout_refs_restore(struct shoal_reg *r, const struct shoal_reg_rollout_refs *in)
{
    for (uint32_t i = 0; i < r->nrollouts; i++) {
        struct rollout *ro = &r->rollouts[i];
        ro->ref[0] = '\0';
        for (uint32_t k = 0; k < in->n; k++) {
            if (strcmp(in->e[k].repo_at_rev, ro->repo_at_rev) == 0 &&
                strcmp(in->e[k].zone, rollout_zone(r, ro)) == 0) {
                snprintf(ro->ref, sizeof ro->ref, "%s", in->e[k].ref);
                break;
            }
        }
    }
}

uint32_t shoal_reg_rollout_count(const struct shoal_reg *r)
{
    return r->nrollouts;
}

size_t shoal_reg_rollouts_all(const struct shoal_reg *r, struct shoal_reg_rollout_entry *out,
                              size_t max)
{
    size_t n = 0;
    for (uint32_t i = 0; i < r->nrollouts && n < max; i++, n++) {
        out[n].repo_at_rev = r->rollouts[i].repo_at_rev;
        out[n].zone = r->rollouts[i].zone == NONE ? "" : r->zones[r->rollouts[i].zone].name;
        out[n].ref = r->rollouts[i].ref;
    }
    return n;
}

size_t shoal_reg_rollouts_for(const struct shoal_reg *r, const char *zone, bool known_only,
                              struct shoal_reg_desired *out, size_t max)
{
    size_t n = 0;
    if (!zone)
        zone = "";
    uint32_t zi = *zone ? zone_find(r, zone, strlen(zone)) : NONE;
    for (uint32_t i = 0; i < r->nrollouts && n < max; i++) {
        const struct rollout *ro = &r->rollouts[i];
        if (ro->zone != NONE && ro->zone != zi)
            continue;
        /* A release wished for both globally and for this zone is sent once. */
        bool dup = false;
        for (size_t k = 0; k < n && !dup; k++) {
            dup = strcmp(out[k].repo_at_rev, ro->repo_at_rev) == 0;
            if (dup && !out[k].ref[0])
                out[k].ref = ro->ref;
        }
        if (dup)
            continue;
        struct shoal_reg_manifest mf;
        bool known = shoal_reg_manifest_by_name(r, ro->repo_at_rev, strlen(ro->repo_at_rev),
                                                &mf) == 0;
        if (known_only && !known)
            continue;
        out[n].repo_at_rev = ro->repo_at_rev;
        out[n].ref = ro->ref;
        out[n].known = known;
        if (known)
            memcpy(out[n].manifest_id, mf.id, 32);
        else
            memset(out[n].manifest_id, 0, 32);
        n++;
    }
    return n;
}

void shoal_reg_rollout_status(const struct shoal_reg *r, uint64_t now_ms,
                              const uint8_t manifest_id[32], uint32_t *complete,
                              uint32_t *partial, uint32_t *none)
{
    *complete = *partial = *none = 0;
    uint32_t mi = mani_find(r, manifest_id);
    /* Zones named by rollouts of this release; any global entry means all.
     * A per-zone flag keeps the holder walk below O(1) per holder. */
    uint8_t want[SHOAL_REG_ZONES_MAX];
    bool all = true;
    if (mi != NONE && r->manis[mi].names) {
        struct shoal_reg_manifest mf;
        mani_describe(&r->manis[mi], &mf);
        bool global = false, zoned = false;
        memset(want, 0, sizeof(want));
        for (uint32_t i = 0; i < r->nrollouts; i++) {
            if (strcmp(r->rollouts[i].repo_at_rev, mf.repo_at_rev) != 0)
                continue;
            if (r->rollouts[i].zone == NONE) {
                global = true;
            } else {
                want[r->rollouts[i].zone] = 1;
                zoned = true;
            }
        }
        all = global || !zoned;
    }
    /* Nodes in scope come from the per-zone counts; holders of the
     * manifest split them into complete, partial and (the rest) none, so
     * the cost is the manifest's holders, never every node. Nodes past
     * their TTL that expiry has not dropped yet count as none. */
    uint64_t scope = 0;
    if (all) {
        scope = r->nnodes_used;
    } else {
        for (uint32_t z = 0; z < r->nzones; z++)
            if (want[z] && r->zones[z].name)
                scope += r->zones[z].nodes;
    }
    if (mi != NONE) {
        const struct mani *m = &r->manis[mi];
        for (uint32_t i = 0; i < m->ne; i++) {
            const struct holder *h = &m->h[i];
            if (!all && !want[h->zone])
                continue;
            if (!node_live(r, &r->nodes[h->node], now_ms))
                continue;
            if (h->complete)
                (*complete)++;
            else
                (*partial)++;
        }
    }
    uint64_t held = (uint64_t)*complete + *partial;
    *none = (uint32_t)(scope > held ? scope - held : 0);
}

void shoal_reg_rollout_gone(const struct shoal_reg *r, uint64_t now_ms, const char *repo_at_rev,
                            uint32_t *lost, uint32_t *left, uint32_t *refused)
{
    *lost = *left = *refused = 0;
    if (!r->ngone)
        return;
    /* The zones the release's rollouts name; any entry for every zone,
     * or none at all, means every node. */
    const char *zones[SHOAL_REG_ROLLOUTS_MAX];
    uint32_t nz = 0;
    bool all = false;
    for (uint32_t i = 0; i < r->nrollouts && !all; i++) {
        if (strcmp(r->rollouts[i].repo_at_rev, repo_at_rev) != 0)
            continue;
        if (r->rollouts[i].zone == NONE)
            all = true;
        else
            zones[nz++] = r->zones[r->rollouts[i].zone].name;
    }
    all = all || nz == 0;
    for (uint32_t i = 0; i < SHOAL_REG_GONE_MAX; i++) {
        const struct gone *g = &r->gone[i];
        if (!g->used || (now_ms > g->at_ms && now_ms - g->at_ms > r->cfg.gone_keep_ms))
            continue;
        bool in = all;
        for (uint32_t k = 0; k < nz && !in; k++)
            in = zones[k] && strcmp(zones[k], g->zone) == 0;
        if (!in)
            continue;
        if (g->why == SHOAL_REG_GONE_LEFT)
            (*left)++;
        else if (g->why == SHOAL_REG_GONE_REFUSED)
            (*refused)++;
        else
            (*lost)++;
    }
}

/* ---- stats ---- */

void shoal_reg_stats(const struct shoal_reg *r, struct shoal_reg_stats *st)
{
    *st = r->st;
}

double shoal_reg_announce_rate(const struct shoal_reg *r, uint64_t now_ms)
{
    uint64_t sec = now_ms / 1000;
    uint64_t sum = 0;
    for (int i = 0; i < RATE_BUCKETS; i++)
        if (r->rate[i].sec + RATE_WINDOW > sec && r->rate[i].sec <= sec)
            sum += r->rate[i].count;
    return (double)sum / RATE_WINDOW;
}

static int prom(struct shoal_buf *out, const char *name, const char *type, const char *help,
                double v)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help,
                     name, type, name, v);
    if (n < 0 || (size_t)n >= sizeof(line))
        return SHOAL_ELIMIT;
    return shoal_buf_append(out, line, (size_t)n);
}

int shoal_reg_prometheus(const struct shoal_reg *r, uint64_t now_ms, struct shoal_buf *out)
{
    int rv = 0;
    const struct shoal_reg_stats *s = &r->st;
    if ((rv = prom(out, "shoal_tracker_nodes", "gauge", "Nodes currently known.", (double)s->nodes)) ||
        (rv = prom(out, "shoal_tracker_manifests", "gauge", "Manifests known by id.",
                   (double)s->manifests)) ||
        (rv = prom(out, "shoal_tracker_rollouts", "gauge",
                   "Rollout entries recorded (shoal rollout --list; at most 64).",
                   (double)r->nrollouts)) ||
        (rv = prom(out, "shoal_tracker_manifests_registered", "gauge",
                   "Signed manifests held.", (double)s->registered)) ||
        (rv = prom(out, "shoal_tracker_manifests_unregistered", "gauge",
                   "Manifests known by id from announces only (no signed bytes).",
                   (double)s->unregistered)) ||
        (rv = prom(out, "shoal_tracker_manifests_forgotten_total", "counter",
                   "Registered manifests forgotten: unused for --manifest-ttl-h, or least "
                   "recently used when the store was full.", (double)s->manifests_forgotten)) ||
        (rv = prom(out, "shoal_tracker_entries", "gauge", "Node-manifest holdings.",
                   (double)s->entries)) ||
        (rv = prom(out, "shoal_tracker_entries_skipped_total", "counter",
                   "Announced holdings of unregistered manifests not recorded (over a "
                   "node's quota or the table's share).", (double)s->entries_skipped)) ||
        (rv = prom(out, "shoal_tracker_announces_total", "counter", "Announces accepted.",
                   (double)s->announces)) ||
        (rv = prom(out, "shoal_tracker_announces_per_second", "gauge",
                   "Announces per second over the last 10 s.",
                   shoal_reg_announce_rate(r, now_ms))) ||
        (rv = prom(out, "shoal_tracker_leases_granted_total", "counter",
                   "Origin leases granted.", (double)s->leases_granted)) ||
        (rv = prom(out, "shoal_tracker_leases_expired_total", "counter",
                   "Origin leases that expired unfulfilled.", (double)s->leases_expired)) ||
        (rv = prom(out, "shoal_tracker_leases_done_total", "counter",
                   "Origin leases fulfilled.", (double)s->leases_done)) ||
        (rv = prom(out, "shoal_tracker_leases_given_back_total", "counter",
                   "Origin leases their node ended early: the origin refuses it.",
                   (double)s->leases_given_back)) ||
        (rv = prom(out, "shoal_tracker_leases_reclaimed_total", "counter",
                   "Origin leases a node re-claimed after reconnecting (granted or "
                   "confirmed).", (double)s->leases_reclaimed)) ||
        (rv = prom(out, "shoal_tracker_leases_reclaim_refused_total", "counter",
                   "Re-claimed origin leases refused: another node leased or fetched a chunk.",
                   (double)s->leases_reclaim_refused)) ||
        (rv = prom(out, "shoal_tracker_leases_active", "gauge", "Origin leases outstanding.",
                   (double)s->leases_active)) ||
        (rv = prom(out, "shoal_tracker_nodes_expired_total", "counter",
                   "Nodes dropped for not announcing.", (double)s->nodes_expired)) ||
        (rv = prom(out, "shoal_tracker_fetched_expired_total", "counter",
                   "Chunks reported fetched from the origin made leasable again: no other "
                   "node announced the whole release within --fetched-ttl-ms.",
                   (double)s->fetched_expired)) ||
        (rv = prom(out, "shoal_tracker_leases_regranted_total", "counter",
                   "Leases granted again to a node back on a new connection that had not "
                   "reported on them (the reply may have been lost).",
                   (double)s->leases_regranted)) ||
        (rv = prom(out, "shoal_tracker_fetched_withdrawn_total", "counter",
                   "Chunks a node had reported fetched, or held leased, and then asked to "
                   "lease as missing with no peer offering them (the peer it counted on "
                   "left): made leasable again at once.",
                   (double)s->fetched_withdrawn)))
        goto out;
out:
    return rv;
}
