/* SPDX-License-Identifier: MIT */
/*
 * The chunk scheduler (see sched.h for the policy). Data layout, chosen so a
 * simulator can hold ten thousand instances at once:
 *
 *   - per chunk: one 12-byte record (two list links, flags, availability
 *     among all peers and among same-zone peers, priority tier), so a HAVE
 *     or a list move touches one cache line of ours per chunk. A chunk we
 *     still need and have not requested is "listed": it sits in the
 *     circular list of bucket (tier, count). Picking the rarest chunk of a
 *     tier walks the buckets from count 1 up; count 0 holds the orphans no
 *     peer has, which drive origin leases.
 *   - counts rise lazily: a HAVE only bumps the count, and the chunk stays
 *     in the bucket it was listed in until a pick walks past it and moves
 *     it up (a bucket holds chunks at least that rare, never rarer). Only
 *     leaving bucket 0 and falling counts (a peer gone) move a chunk at
 *     once, so the orphan set is exact. With sixteen peers a chunk would
 *     otherwise change lists on nearly every HAVE, and the HAVE fan-out is
 *     most of a swarm's scheduling work.
 *     Counts of chunks we hold are not maintained (never read again).
 *   - per peer: its have-bitfield and a few numbers.
 *   - requests in flight: one small array (peers x depth entries at most).
 *   - chunks that only cross-zone peers hold wait in a FIFO for
 *     cross_zone_delay_ms, then move to a vector that cross-zone picks scan.
 */
#include "sched.h"

#include <errno.h>
#include <math.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define NIL UINT32_MAX
/* Loader tiers: tier i holds the file at position i of the loader's order
 * (positions from NTIERS - 2 on share the last wanted tier), unwanted files
 * are in TIER_NORMAL. 64 tiers keep a tier mask in one word. */
#define NTIERS 64
#define TIER_NORMAL (NTIERS - 1)
/* Rarity buckets distinguish holder counts up to this one; chunks held by
 * more peers share the last bucket. Rarest-first only matters among rare
 * chunks, and a HAVE for a common chunk then costs no list move. */
#define CNT_CAP 15u
/* Leases beyond max_leases a node may ask for while the local loader waits
 * for a file with chunks no peer has. Without them the loader's file was
 * leased only once a lease of other chunks ended: a node that leased the
 * release's front at the start fetched its loader's shard from the origin
 * only after those spans (several seconds, a whole lease at its share of
 * the origin), whatever the hint named (QA N3). The simulator has no
 * loaders: it never asks for one. */
#define LOADER_EXTRA_LEASES 1u

enum {
    F_HAVE = 1,       /* verified and stored */
    F_REQ = 2,        /* at least one request in flight to a peer */
    F_ORIGIN = 4,     /* part of an origin fetch not yet arrived */
    F_LISTED = 8,     /* in a bucket list (needed, not requested) */
    F_XQ = 16,        /* waiting in the cross-zone delay FIFO */
    F_XOK = 32,       /* cross-zone peers may be asked for it */
    F_XV = 64,        /* present in the xok vector */
};

/* A peer's throughput and back-off live in arrays of their own (thr,
 * thr_until, busy_until in struct shoal_sched): peer_order and
 * shoal_sched_wakeup read them for every ready peer on every call, and in
 * this record they cost one cold line per peer. What a HAVE updates
 * fits one line, and the records are line-aligned so it touches one. */
struct peer {
    alignas(64) uint64_t id;
    uint8_t *bits;        /* its slot in pbits, or the caller's (borrowed) */
    uint32_t nhave;
    uint32_t inflight;
    uint32_t depth;
    uint32_t rtt_ms;
    uint32_t hint;        /* last chunk it announced that we need */
    uint32_t ring[4];     /* the last few such chunks (NIL: none) */
    uint8_t rhead;        /* next ring entry to write */
    bool used;
    bool same_zone;
    bool stale;           /* last pick found nothing; wait for news */
    bool borrowed;        /* |bits| is the caller's: never written here */
    /* A search of the whole list found nothing this peer holds, and since
     * then it has announced only ring's last |nfresh| chunks (<= 4) and no
     * chunk it holds was listed again: those are all it can give us, and
     * pick_same looks at them alone. */
    bool fresh_only;
    uint8_t nfresh;
    bool quiet;           /* its bit in s->quiet (see peer_mark) */
};

/* A peer's delivery rate: chunk bytes over the time its pipeline was
 * non-empty, both summed with the older part decayed (DRATE_KEEP per
 * arrival). A request's own bytes over its own duration would not do: with
 * d requests in flight each one also waits for the d-1 ahead of it, so
 * that figure is the link's rate over d and the depth sized from it stays
 * short of the bandwidth-delay product. */
struct drate {
    double bytes;
    double ms;
    uint64_t mark;        /* the time up to which |ms| counts: the last
                             arrival, or the send that refilled an empty
                             pipeline */
    uint64_t lone_at;     /* when the last request that found the pipeline
                             empty was sent ... */
    uint32_t lone_chunk;  /* ... and its chunk (NIL: it is answered) */
    uint32_t lone_ms;     /* the least time such a request took (0: none):
                             a round trip and one chunk's transfer, without
                             a wait behind other requests */
};

/* A peer's delivery rate as the rate bound takes it (rate_on): like
 * struct drate, without the first arrival, a lone request's whose time is
 * a round trip and, from an uploader with a full bucket, none of its rate
 * (its first chunks leave at once). */
struct brate {
    double bytes;
    double ms;
    uint32_t n;           /* arrivals, the first included */
};

struct req {
    uint32_t chunk;
    uint32_t slot;
    uint64_t at;          /* when it was sent: the oldest is the slowest */
};

struct xq_ent {
    uint32_t chunk;
    uint64_t at;
};

/* Per-chunk state, packed: the HAVE path reads flags and counts of one
 * chunk, the list code the links of a few. */
struct ck {
    uint32_t nxt, prv;    /* bucket list links (while F_LISTED) */
    uint8_t flags;
    uint8_t cnt;          /* peers holding it (while we do not) */
    uint8_t cnt_same;     /* ... of them in our zone */
    uint8_t tier;         /* priority tier; in the record's padding, so the
                             list code finds it on the line it reads anyway */
};

struct lease {
    uint32_t first;
    uint32_t count;
    bool used;
};

_Static_assert(SHOAL_SCHED_PEERS_MAX <= 256, "ready and open are 4 words of slots");

struct shoal_sched {
    /* What a HAVE reads comes first, then what every shoal_sched_next
     * reads, in as few cache lines as can be: a simulator drives thousands
     * of instances, each cold when an event reaches it, and fans each HAVE
     * out to many of them; every line of this header touched is a miss
     * (shoal_sched_prefetch asks for these lines ahead). The instance is
     * allocated on a line boundary, so the first line holds what a HAVE
     * from a borrowed peer in one of the first 64 slots reads
     * (shoal_sched_slot_have_borrowed, and room while no loader waits)
     * besides the chunk's record, and one prefetch of |s| brings it in. */
    alignas(64) struct ck *ck;
    uint8_t *pbits;       /* every slot's bitfield, pbstride bytes apart: a
                             HAVE finds its bit without loading the peer */
    struct peer *peers;
    uint32_t nreq;
    uint32_t cap;         /* max_inflight in effect */
    uint64_t missmask;    /* tiers with tier_missing > 0 */
    /* Slots 0..63 whose peer borrows its bitfield and has announced
     * something (nhave > 0), and those of them in our zone: a HAVE from
     * one of these leaves the peer's record alone unless the chunk is one
     * to note for it (peer_fresh), so in a simulated fleet most HAVEs
     * load the chunk's record and this line only, not a third line for
     * the peer as well. */
    uint64_t hfast0;
    uint64_t samez0;
    uint64_t ready[4];    /* slots worth asking: used, not stale, hold something */
    /* Slots that answered busy, their back-off maybe over (cleared as
     * peer_order finds it over): shoal_sched_wakeup and peer_order look
     * at these alone, on the line they read for ready and open. */
    uint64_t busym[4];
    uint64_t open[4];     /* slots with fewer requests in flight than their
                             depth: a call skips full peers without loading
                             their records (half the peers it visited) */

    uint32_t pbstride;
    uint32_t nborrowed;   /* peers whose bitfield is the caller's */
    uint32_t nchunks;
    uint32_t ratecap;     /* requests in flight in all at most, loader or
                             not, from the node's download cap or the
                             rate it measures (0: none); in the padding
                             before |thr| */
    double *thr;          /* per slot: bytes per second per request, EWMA,
                             ranks peers; 0 = unknown */
    struct drate *drate;  /* per slot: what the peer delivers (update_depth) */
    uint64_t *thr_until;  /* per slot: when |thr| stops ranking its peer */
    uint64_t thr_fresh;   /* at most every thr_until of a measured slot:
                             before it peer_order reads no thr_until */
    uint64_t *busy_until; /* per slot: left alone until then after a busy */
    uint32_t nsame;
    uint64_t now;
    uint64_t t0;          /* first shoal_sched_next call, + 1 (0: none yet) */
    uint64_t pickmask;    /* tiers with a listed chunk some peer holds */
    uint32_t nhave;
    uint32_t n_listed;
    uint32_t n_orphan;
    uint32_t fe_last;     /* file-endgame tier seen last (NIL: none) */
    uint32_t npeers;
    uint32_t rr;          /* rotating start for fairness among peers */
    uint32_t nb;          /* buckets per tier: min(max_peers, CNT_CAP) + 1 */
    uint32_t nxok, xokcap;
    uint32_t xqhead, xqn, xqcap; /* xqcap: a power of two (a mask, not a division) */
    uint64_t xq_at;       /* when the FIFO's head is due (UINT64_MAX: empty):
                             a call that finds nothing due reads no entry */
    uint32_t npend, pendhead, pendcap;
    bool lease_pending;
    bool lease_extra;     /* the request pending is a loader's extra lease
                             (LOADER_EXTRA_LEASES) */
    uint64_t lease_retry_at;
    uint64_t rng[4];
    uint64_t *listed;     /* bitmap of F_LISTED, for pick_scan */
    uint64_t (*nonempty)[4]; /* per tier: which buckets have chunks */
    uint32_t *heads;      /* NTIERS * nb: first chunk of each bucket list */
    struct req *reqs;
    struct shoal_sched_action *pend;
    struct xq_ent *xq;
    uint32_t *xok;
    struct lease *leases;
    uint32_t lease_slots; /* leases allocated; a role may lower max_leases
                             below the count still held */

    struct shoal_sched_config cfg;
    uint32_t nbytes_bits;
    double avg_chunk;
    uint32_t nfiles;
    uint32_t *file_first;

    uint32_t tier_missing[NTIERS]; /* chunks of each tier we do not hold */
    /* chunks [tier_lo, tier_hi) of the one file a loader
     * tier holds (tier_lo NIL: none, or several files share the tier) */
    uint32_t tier_lo[NTIERS], tier_hi[NTIERS];
    double req_ms;        /* requests' time out (send to arrival), EWMA */
    uint8_t hslot[512];   /* peer id hash -> slot + 1 (0 = empty) */

    uint32_t reqcap;
    uint32_t xjitter_ms;
    uint64_t fb_hold;     /* no fallback crossing before (0: none held) */
    uint64_t rbits;
    uint32_t nrbits;
    /* The slots that are stale or fresh_only: clear_stale and
     * clear_stale_holders look at these alone, the latter through bitsp
     * (each slot's |bits| again), without loading a peer record (a line
     * each) to learn whether it holds a chunk. */
    uint64_t quiet[4];
    const uint8_t **bitsp; /* per slot */
    /* What |ratecap| is made from (ratecap_update): the node's download
     * cap, and with |rate_on| the peers' delivery rates (which also bound
     * each peer's depth: update_depth) */
    uint64_t rate_down;
    bool rate_on;
    struct brate *brate;  /* per slot, while rate_on (else NULL) */
    /* A transfer of at most SMALL_XFER chunks (counted at the first
     * shoal_sched_next) holds its endgame copies until a request is late
     * (endgame_hold_ms), and |eg_wake| is when the oldest held one will
     * be (0: none held). */
    bool small_xfer;
    uint64_t eg_wake;
    uint64_t peer_chunk_ms; /* the last chunk a peer delivered (0: none) */
};

_Static_assert(offsetof(struct shoal_sched, ready) + sizeof(uint64_t) <= 64,
               "a HAVE for slots 0..63 reads the first line of the header only");

/* ---- PRNG: xoshiro256** seeded through splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(struct shoal_sched *s)
{
    uint64_t *r = s->rng;
    uint64_t out = rotl(r[1] * 5, 7) * 9;
    uint64_t t = r[1] << 17;
    r[2] ^= r[0];
    r[3] ^= r[1];
    r[1] ^= r[2];
    r[0] ^= r[3];
    r[2] ^= t;
    r[3] = rotl(r[3], 45);
    return out;
}

static unsigned rng_bit(struct shoal_sched *s)
{
    if (s->nrbits == 0) {
        s->rbits = rng_next(s);
        s->nrbits = 64;
    }
    unsigned b = (unsigned)(s->rbits & 1);
    s->rbits >>= 1;
    s->nrbits--;
    return b;
}

/* ---- small helpers ---- */

static inline bool bit_get(const uint8_t *bits, uint32_t i)
{
    return (bits[i >> 3] >> (i & 7)) & 1;
}

static inline void bit_set(uint8_t *bits, uint32_t i) { bits[i >> 3] |= (uint8_t)(1u << (i & 7)); }

/* Chunks 64w .. 64w+63 of a bitfield, chunk 64w in bit 0 (little-endian). */
static uint64_t word_of(const uint8_t *bits, uint32_t w)
{
    uint64_t x;
    memcpy(&x, bits + (size_t)w * 8, 8);
    return x;
}

/* Whether |c| is listed, from the dense bitmap rather than its record: a
 * pick looks at the chunks a peer announced last, most of them requested
 * by now, and the bitmap (one bit a chunk) lets it pass those over
 * without loading their records, a cache miss each in a large fleet
 * (1,000-node simulated fleet: 6.2 records a transfer read for the ring,
 * 1.3 of them listed). */
static inline bool listed_bit(const struct shoal_sched *s, uint32_t c)
{
    return (s->listed[c >> 6] >> (c & 63)) & 1;
}

static inline uint32_t bcnt(const struct shoal_sched *s, uint32_t c)
{
    return s->ck[c].cnt < CNT_CAP ? s->ck[c].cnt : CNT_CAP;
}

/* Which bucket of its tier listed chunk |c| sits in when it heads that
 * bucket's list, else NIL. With lazy counts the bucket is at most bcnt. */
static inline uint32_t head_of(const struct shoal_sched *s, uint32_t c)
{
    const uint32_t *h = s->heads + (size_t)s->ck[c].tier * s->nb;
    for (uint32_t b = 0, e = bcnt(s, c); b <= e; b++)
        if (h[b] == c)
            return b;
    return NIL;
}

static inline uint32_t bucket_of(const struct shoal_sched *s, uint32_t c)
{
    return (uint32_t)s->ck[c].tier * s->nb + bcnt(s, c);
}

static void list_insert(struct shoal_sched *s, uint32_t c)
{
    uint32_t b = bucket_of(s, c);
    uint32_t h = s->heads[b];
    if (h == NIL) {
        s->ck[c].nxt = s->ck[c].prv = c;
        s->heads[b] = c;
        s->nonempty[s->ck[c].tier][0] |= 1ull << bcnt(s, c);
        if (bcnt(s, c) > 0)
            s->pickmask |= 1ull << s->ck[c].tier;
    } else {
        /* Insert before the head: that is the tail of the circular list;
         * a coin flip makes it the new head instead, so list order (and
         * thus the pick among equally rare chunks) is random. Not for the
         * orphans (bucket 0): nothing picks among them, and their head
         * is the hint of the next origin lease, which the tracker extends
         * upwards. In order, a lone node's hints walk the release and
         * each lease is a whole span; at random, each hint lay just below
         * the last span granted, and the leases of a node alone with a
         * gateway 20 ms away held 2 chunks on average (1 GiB in 6.6 x
         * T_min). */
        uint32_t t = s->ck[h].prv;
        s->ck[t].nxt = c;
        s->ck[c].prv = t;
        s->ck[c].nxt = h;
        s->ck[h].prv = c;
        if (bcnt(s, c) > 0 && rng_bit(s))
            s->heads[b] = c;
    }
    s->ck[c].flags |= F_LISTED;
    s->listed[c >> 6] |= 1ull << (c & 63);
    s->n_listed++;
    if (s->ck[c].cnt == 0)
        s->n_orphan++;
}

static void list_remove(struct shoal_sched *s, uint32_t c)
{
    struct ck *k = &s->ck[c];
    uint32_t t = s->ck[c].tier, b = head_of(s, c);
    if (k->nxt == c) {
        s->heads[(size_t)t * s->nb + b] = NIL;
        s->nonempty[t][0] &= ~(1ull << b);
        if ((s->nonempty[t][0] & ~1ull) == 0)
            s->pickmask &= ~(1ull << t);
    } else {
        s->ck[k->nxt].prv = k->prv;
        s->ck[k->prv].nxt = k->nxt;
        if (b != NIL)
            s->heads[(size_t)t * s->nb + b] = k->nxt;
    }
    k->flags &= (uint8_t)~F_LISTED;
    s->listed[c >> 6] &= ~(1ull << (c & 63));
    s->n_listed--;
    if (k->cnt == 0)
        s->n_orphan--;
}

/* Tier |t| lost or gained |delta| missing chunks. */
static void tier_count(struct shoal_sched *s, uint32_t t, int delta)
{
    s->tier_missing[t] = (uint32_t)((int64_t)s->tier_missing[t] + delta);
    if (s->tier_missing[t] > 0)
        s->missmask |= 1ull << t;
    else
        s->missmask &= ~(1ull << t);
}

static uint32_t file_endgame_tier(const struct shoal_sched *s);
static void ratecap_update(struct shoal_sched *s);

/* Room for another request: below max_inflight, which does not bind while
 * a loader's file still has chunks to pick (they are picked first) or is
 * in its own endgame: then the first shard's latency is what counts, and
 * the cap would hold its chunks behind requests already out. */
static bool room(const struct shoal_sched *s)
{
    if (s->ratecap != 0 && s->nreq >= s->ratecap)
        return false;
    if (s->nreq < s->cap)
        return true;
    if ((s->missmask & ~(1ull << TIER_NORMAL)) == 0 || s->nreq >= s->reqcap)
        return false;
    return (s->pickmask & ~(1ull << TIER_NORMAL)) != 0 || file_endgame_tier(s) != NIL;
}

/* Recomputes |slot|'s bit in the ready mask after its state changed. */
static void peer_mark(struct shoal_sched *s, uint32_t slot)
{
    struct peer *p = &s->peers[slot];
    uint64_t bit = 1ull << (slot & 63);
    if (p->used && !p->stale && p->nhave > 0)
        s->ready[slot >> 6] |= bit;
    else
        s->ready[slot >> 6] &= ~bit;
    /* Written only when it changes, which is seldom: every HAVE marks its
     * peer, and s->quiet is far down the header, a line no HAVE otherwise
     * reads (a miss per HAVE in a large simulated fleet, 8% of its time). */
    bool q = p->used && (p->stale || p->fresh_only);
    if (q == p->quiet)
        return;
    p->quiet = q;
    if (q)
        s->quiet[slot >> 6] |= bit;
    else
        s->quiet[slot >> 6] &= ~bit;
}

/* Recomputes |slot|'s bit in the open mask after its requests in flight
 * or its depth changed. */
static void peer_open(struct shoal_sched *s, uint32_t slot)
{
    const struct peer *p = &s->peers[slot];
    uint64_t bit = 1ull << (slot & 63);
    if (p->used && p->inflight < p->depth)
        s->open[slot >> 6] |= bit;
    else
        s->open[slot >> 6] &= ~bit;
}

static void clear_stale(struct shoal_sched *s, bool cross_only)
{
    /* Only the quiet ones have anything to clear. */
    for (uint32_t w = 0; w < 4; w++)
        for (uint64_t m = s->quiet[w]; m != 0; m &= m - 1) {
            uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(m);
            if (cross_only && s->peers[i].same_zone)
                continue;
            s->peers[i].stale = false;
            s->peers[i].fresh_only = false;
            peer_mark(s, i);
        }
}

/* |c| just became pickable: the peers (cross-zone ones only, with
 * |cross_only|) that hold it may have a pick again. Those that do not
 * stay stale: waking every peer for each relisted chunk (a busy answer
 * relists one) cost a fruitless search per peer. */
static void clear_stale_holders(struct shoal_sched *s, uint32_t c, bool cross_only)
{
    for (uint32_t w = 0; w < 4; w++)
        for (uint64_t m = s->quiet[w]; m != 0; m &= m - 1) {
            uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(m);
            if (!bit_get(s->bitsp[i], c))
                continue;
            struct peer *p = &s->peers[i];
            if (cross_only && p->same_zone)
                continue;
            p->stale = false;
            p->fresh_only = false;
            peer_mark(s, i);
        }
}

static uint32_t hslot_of(uint64_t id)
{
    return (uint32_t)((id * 0x9e3779b97f4a7c15ull) >> 55); /* 0..511 */
}

/* Slot of peer |id|, or -1. Peers are few (<= 250) and the table has 512
 * entries, so linear probing stays short; with no tombstones (hslot_del)
 * an empty entry always ends it. */
static int find_peer(const struct shoal_sched *s, uint64_t id)
{
    uint32_t h = hslot_of(id);
    for (uint32_t n = 0; n < 512; n++, h = (h + 1) & 511) {
        uint8_t v = s->hslot[h];
        if (v == 0)
            return -1;
        if (s->peers[v - 1].id == id)
            return v - 1;
    }
    return -1;
}

static void hslot_put(struct shoal_sched *s, uint64_t id, uint32_t slot)
{
    uint32_t h = hslot_of(id);
    while (s->hslot[h] != 0)
        h = (h + 1) & 511;
    s->hslot[h] = (uint8_t)(slot + 1);
}

/* Backward-shift deletion: the entries after |id|'s in its probe run move
 * up where their probe allows, so no tombstone is left. Tombstones were
 * never reclaimed, and peer ids never repeat (one per session): after
 * ~512 sessions on one release every entry was one, and looking up a new
 * peer probed for ever (a seed hung at 100% CPU). */
static void hslot_del(struct shoal_sched *s, uint64_t id)
{
    uint32_t i = hslot_of(id), n = 0;
    for (;; i = (i + 1) & 511) {
        uint8_t v = s->hslot[i];
        if (v == 0 || ++n > 512)
            return;
        if (s->peers[v - 1].id == id)
            break;
    }
    for (uint32_t j = (i + 1) & 511;; j = (j + 1) & 511) {
        uint8_t v = s->hslot[j];
        if (v == 0)
            break;
        uint32_t h = hslot_of(s->peers[v - 1].id);
        /* it stays when its home lies cyclically in (i, j] */
        bool stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
        if (!stays) {
            s->hslot[i] = v;
            i = j;
        }
    }
    s->hslot[i] = 0;
}

static int push_pending(struct shoal_sched *s, enum shoal_sched_action_type type, uint64_t peer,
                        uint32_t chunk, uint32_t count)
{
    if (s->pendhead > 0 && s->pendhead == s->npend) {
        s->pendhead = s->npend = 0;
    }
    if (s->npend == s->pendcap) {
        uint32_t ncap = s->pendcap ? s->pendcap * 2 : 16;
        struct shoal_sched_action *n = realloc(s->pend, ncap * sizeof(*n));
        if (n == NULL)
            return -ENOMEM;
        s->pend = n;
        s->pendcap = ncap;
    }
    s->pend[s->npend++] = (struct shoal_sched_action){
        .type = type, .peer = peer, .chunk = chunk, .count = count};
    return 0;
}

static void xok_push(struct shoal_sched *s, uint32_t c)
{
    if (s->ck[c].flags & F_XV)
        return;
    if (s->nxok == s->xokcap) {
        uint32_t ncap = s->xokcap ? s->xokcap * 2 : 64;
        uint32_t *n = realloc(s->xok, ncap * sizeof(*n));
        if (n == NULL)
            return; /* the chunk stays fetchable from same-zone peers or the origin */
        s->xok = n;
        s->xokcap = ncap;
    }
    s->xok[s->nxok++] = c;
    s->ck[c].flags |= F_XV;
}

static void mark_xok(struct shoal_sched *s, uint32_t c)
{
    s->ck[c].flags |= F_XOK;
    xok_push(s, c);
    clear_stale_holders(s, c, true);
}

/* Missing no more than this many chunks (and no more than 1/64 of the
 * release, so a small one keeps its delay), a node stops waiting out the
 * cross-zone delay. The last chunks of a release reach a zone through the
 * one importer of their share, and its whole zone waits for them (the
 * zones of a simulated 1,000-node fleet finish up to 40 ms apart, the
 * nodes within one zone 6 ms apart); fetching them across directly costs
 * a few copies of a few chunks per node. Seeds 1-6: last/T_min 1.134 ->
 * 1.122, p50 1.126 -> 1.110, cross-zone bytes 0.0034 -> 0.0076 of all
 * (16: 1.125 and 0.0060; 100: 1.130 and 0.013). */
#define CROSS_ENDGAME 32u

static bool cross_endgame(const struct shoal_sched *s)
{
    uint32_t missing = s->nchunks - s->nhave;
    return missing <= CROSS_ENDGAME && (uint64_t)missing * 64 <= s->nchunks;
}

/*
 * Fallback crossings (a chunk outside this node's import share, fetched
 * across because no same-zone peer got it within cross_zone_delay_ms) in
 * flight at once, outside the cross endgame. The delay is there so that a
 * zone's importers bring each chunk in once; a fallback covers an importer
 * that is late or gone, and one crossing at a time per node covers a dead
 * importer's share with every node of the zone at once. When the links
 * between zones are slow (a capped interconnect shared by many transfers)
 * an import takes far longer than the delay, and every node fell back at
 * its full request depth: the crossings split the interconnect further,
 * each took longer still, and a zone imported each chunk ~5 times (100
 * nodes, 2 zones, 1 Gbit/s between them: 4.5 GiB across for a 1 GiB
 * release, 21.0 s; with one fallback in flight 1.9 GiB, 10.0 s). The 1k
 * fleet without caps is unchanged within noise (last/T_min seed 1 1.0976
 * -> 1.0970, seeds 2-6 mean 1.0984 -> 1.0990; 5% dying half-way, seeds
 * 2, 3: 1.116 -> 1.118, 1.171 -> 1.177: a dead importer's share comes in
 * one crossing per node at a time).
 */
#define XFALLBACK_MAX 1u
/* A fallback crossing that took longer than cross_zone_delay_ms shows that
 * crossings are slow here, so the zone's importers are likely still on
 * their way with the rest: the next fallback waits XHOLD_K times as long
 * as that one took. Without a cap crossings take tens of ms and this never
 * holds anything (the 1k and 300-node runs are bit-identical); with one,
 * 100 nodes, 2 zones, 1 Gbit/s: 1.92 -> 1.72 GiB across, 10.0 -> 9.7 s;
 * 20 nodes, origin 4 Gbit/s: 2.19 -> 1.87 s. */
#define XHOLD_K 3u

static bool xmine(const struct shoal_sched *s, uint32_t c)
{
    return s->cfg.import_mod > 0 && c % s->cfg.import_mod == s->cfg.import_rem;
}

/* Whether another fallback crossing may start. */
static bool fallback_room(const struct shoal_sched *s)
{
    if (cross_endgame(s))
        return true;
    if (s->fb_hold > s->now)
        return false;
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->nreq; i++)
        n += !s->peers[s->reqs[i].slot].same_zone && !xmine(s, s->reqs[i].chunk);
    return n < XFALLBACK_MAX;
}

/* A cross-zone peer just became a holder of |c|, and no same-zone peer
 * holds it: start its cross-zone delay. */
static void cross_arm(struct shoal_sched *s, uint32_t c)
{
    if (s->ck[c].flags & (F_XQ | F_XOK))
        return;
    if (xmine(s, c) || s->cfg.cross_zone_delay_ms == 0 || s->nsame == 0 || cross_endgame(s)) {
        mark_xok(s, c);
        return;
    }
    if (s->xqn == s->xqcap) {
        uint32_t ncap = s->xqcap ? s->xqcap * 2 : 64;
        struct xq_ent *n = malloc(ncap * sizeof(*n));
        if (n == NULL) {
            mark_xok(s, c); /* no room to wait: allow it now */
            return;
        }
        for (uint32_t i = 0; i < s->xqn; i++)
            n[i] = s->xq[(s->xqhead + i) % s->xqcap];
        free(s->xq);
        s->xq = n;
        s->xqcap = ncap;
        s->xqhead = 0;
    }
    s->xq[(s->xqhead + s->xqn) & (s->xqcap - 1)] = (struct xq_ent){
        .chunk = c, .at = s->now + s->cfg.cross_zone_delay_ms + s->xjitter_ms};
    if (s->xqn++ == 0)
        s->xq_at = s->xq[s->xqhead].at;
    s->ck[c].flags |= F_XQ;
}

static void cross_poll(struct shoal_sched *s, uint64_t now)
{
    bool all = cross_endgame(s);
    while (s->xqn > 0 && (all || s->xq_at <= now)) {
        uint32_t c = s->xq[s->xqhead].chunk;
        s->xqhead = (s->xqhead + 1) & (s->xqcap - 1);
        s->xqn--;
        s->xq_at = s->xqn > 0 ? s->xq[s->xqhead].at : UINT64_MAX;
        s->ck[c].flags &= (uint8_t)~F_XQ;
        if (!(s->ck[c].flags & F_HAVE) && s->ck[c].cnt_same == 0)
            mark_xok(s, c);
    }
}

/* Availability of |c| rose or fell by one holder (same-zone or not). */
static void avail_change(struct shoal_sched *s, uint32_t c, bool same, int delta)
{
    struct ck *k = &s->ck[c];
    /* A rise leaves a listed chunk where it is (see the top of the file)
     * unless it stops being an orphan; a fall to a lower bucket moves it
     * now, since a bucket must never hold a chunk rarer than its count. */
    bool move = (k->flags & F_LISTED) &&
                (delta > 0 ? k->cnt == 0 : k->cnt <= CNT_CAP);
    if (move)
        list_remove(s, c);
    k->cnt = (uint8_t)(k->cnt + delta);
    if (same)
        k->cnt_same = (uint8_t)(k->cnt_same + delta);
    if (move)
        list_insert(s, c);
    if (delta > 0 && !same && k->cnt_same == 0)
        cross_arm(s, c);
    /* Its last same-zone holder went, and cross-zone peers hold it: it is
     * theirs to give now. Not yet cleared for crossing, it starts its
     * cross-zone delay as if they had just announced it (else nothing
     * fetched it: no same-zone holder, and not an orphan for the origin);
     * cleared already, they are woken (their own HAVEs of it did not). */
    if (delta < 0 && same && k->cnt_same == 0 && k->cnt > 0) {
        if (!(k->flags & (F_XQ | F_XOK)))
            cross_arm(s, c);
        else if ((k->flags & F_XOK) && (k->flags & F_LISTED))
            clear_stale_holders(s, c, true);
    }
}

/* Requests of |c| in flight, and whether |slot| has one. */
static uint32_t req_copies(const struct shoal_sched *s, uint32_t c, uint32_t slot, bool *at_slot)
{
    uint32_t n = 0;
    *at_slot = false;
    for (uint32_t i = 0; i < s->nreq; i++) {
        if (s->reqs[i].chunk != c)
            continue;
        n++;
        if (s->reqs[i].slot == slot)
            *at_slot = true;
    }
    return n;
}

/* |c| has no request or origin fetch left: list it again if still needed. */
static void relist_if_needed(struct shoal_sched *s, uint32_t c)
{
    uint8_t f = s->ck[c].flags;
    if (f & (F_HAVE | F_REQ | F_ORIGIN | F_LISTED))
        return;
    list_insert(s, c);
    if (f & F_XOK)
        xok_push(s, c);
    clear_stale_holders(s, c, false);
}

static void req_drop(struct shoal_sched *s, uint32_t idx)
{
    struct req r = s->reqs[idx];
    s->reqs[idx] = s->reqs[--s->nreq];
    s->peers[r.slot].inflight--;
    peer_open(s, r.slot);
    bool any = false;
    for (uint32_t i = 0; i < s->nreq; i++)
        if (s->reqs[i].chunk == r.chunk) {
            any = true;
            break;
        }
    if (!any) {
        s->ck[r.chunk].flags &= (uint8_t)~F_REQ;
        relist_if_needed(s, r.chunk);
    }
}

static int req_find(const struct shoal_sched *s, uint32_t slot, uint32_t c)
{
    for (uint32_t i = 0; i < s->nreq; i++)
        if (s->reqs[i].chunk == c && s->reqs[i].slot == slot)
            return (int)i;
    return -1;
}

/* We hold |c| now: take it off the lists, cancel outstanding requests. */
static void got_chunk(struct shoal_sched *s, uint32_t c)
{
    if (s->ck[c].flags & F_HAVE)
        return;
    if (s->ck[c].flags & F_LISTED)
        list_remove(s, c);
    bool was_xend = cross_endgame(s);
    s->ck[c].flags |= F_HAVE;
    s->nhave++;
    /* Fallback crossings are free from now on (fallback_room): cross-zone
     * peers held back by that may pick again. */
    if (!was_xend && cross_endgame(s))
        clear_stale(s, true);
    tier_count(s, s->ck[c].tier, -1);
    if (s->ck[c].flags & F_REQ) {
        bool xfree = false;
        for (uint32_t i = 0; i < s->nreq;) {
            if (s->reqs[i].chunk == c) {
                struct peer *p = &s->peers[s->reqs[i].slot];
                /* A fallback crossing cancelled frees its room, as one
                 * that arrived does (shoal_sched_req_done). */
                if (!p->same_zone && !xmine(s, c))
                    xfree = true;
                (void)push_pending(s, SHOAL_SCHED_CANCEL, p->id, c, 1);
                p->inflight--;
                peer_open(s, s->reqs[i].slot);
                s->reqs[i] = s->reqs[--s->nreq];
            } else {
                i++;
            }
        }
        s->ck[c].flags &= (uint8_t)~F_REQ;
        if (xfree)
            clear_stale(s, true);
    }
}

/* Weight of the older arrivals in a delivery rate, per arrival: about the
 * last 1 / (1 - DRATE_KEEP) chunks count. */
#define DRATE_KEEP 0.9
/* Depth is the bandwidth-delay product times this, plus one. A pipeline
 * shorter than the product delivers less than the link carries, so the
 * rate measured through it sizes the next depth short as well: with a
 * gain of one each sizing adds about one request; with DEPTH_GAIN the
 * depth grows by that factor per round until it covers the product. */
#define DEPTH_GAIN 1.25

/* The peer's delivery rate in bytes per second (0: none measured yet). */
static double drate_of(const struct shoal_sched *s, uint32_t slot)
{
    const struct drate *r = &s->drate[slot];
    return r->ms > 0 ? r->bytes * 1000.0 / r->ms : 0;
}

/* Time a delivery rate that bounds requests in flight (rate_on) is taken
 * over, at least: the chunks in an uploader's bucket come at once, and
 * over their own few milliseconds would pass for a fast link. Not much
 * more: until a fast peer's figures cover this long, its rate reads as its
 * bytes over this window, too low, and it is held to a few requests while
 * slower peers take what a loader does not want first (at 250 ms a
 * loader's first file came after three others in 4 of 16 loaded runs of
 * loader_multi_node; 1 of 16 at 50 ms, as before the bound). */
#define BRATE_MIN_MS 50.0

/* The peer's rate for the rate bound; 0 until it has delivered twice. */
static double brate_of(const struct shoal_sched *s, uint32_t slot)
{
    const struct brate *r = &s->brate[slot];
    if (r->n < 2)
        return 0;
    return r->bytes * 1000.0 / (r->ms > BRATE_MIN_MS ? r->ms : BRATE_MIN_MS);
}

/* What a rate lets us have queued ahead of a newly wanted chunk: about
 * this long of it. */
#define RATECAP_WINDOW_MS 500

static void update_depth(struct shoal_sched *s, struct peer *p, double thr)
{
    /* A caller that measures no round trip (rtt_ms 0) still gets one: a
     * lone request's time less its chunk's transfer at the delivery
     * rate. Taken only then: a measured one has no transfer to take out. */
    double rtt = p->rtt_ms;
    const struct drate *r = &s->drate[p - s->peers];
    if (rtt == 0 && r->lone_ms > 0 && thr > 0) {
        double est = r->lone_ms - s->avg_chunk * 1000.0 / thr;
        if (est > 0)
            rtt = est;
    }
    double bdp = thr * rtt / 1000.0 / s->avg_chunk;
    double d = ceil(DEPTH_GAIN * bdp) + 1.0;
    if (d < s->cfg.min_depth)
        d = s->cfg.min_depth;
    if (d > s->cfg.max_depth)
        d = s->cfg.max_depth;
    if (s->rate_on && s->avg_chunk > 0) {
        /* A peer answers in the order asked: no more queued at it than
         * half a second (and a round trip) of what it delivers, plus one,
         * so a chunk a loader comes to want is not behind seconds of
         * others at a slow peer (one request until it has a rate). */
        double b = ceil(brate_of(s, (uint32_t)(p - s->peers)) *
                        (RATECAP_WINDOW_MS + rtt) / 1000.0 / s->avg_chunk) + 1.0;
        if (b < d)
            d = b;
    }
    p->depth = (uint32_t)d;
    peer_open(s, (uint32_t)(p - s->peers));
}

/* Age at which a peer's throughput figure no longer ranks it (peer_order). */
#define THR_PROBE_MS 2000

/* ---- lifecycle ---- */

void shoal_sched_config_default(struct shoal_sched_config *c)
{
    memset(c, 0, sizeof(*c));
    c->seed = 1;
    c->max_peers = 32;
    c->min_depth = 2;
    c->max_depth = 16;
    c->cross_zone_delay_ms = 300;
    c->endgame_dups = 2;
    c->lease_chunks = 64;
    c->max_leases = 2;
    c->lease_retry_ms = 500;
    c->busy_backoff_ms = 10;
    /* 9 rather than 8: 4 peers get two requests each and a fifth one; in
     * the simulated 1,000-node fleet (seeds 1-6) the last nodes finish
     * sooner (last/T_min 1.112 -> 1.098, p99 1.102 -> 1.096, p50 1.094 ->
     * 1.092); 10: 1.107, 11: 1.113, 12: 1.125. Also sooner or the same in
     * one and two zones, 2,000 nodes, heterogeneous links, staggered joins
     * and 5% failing. */
    c->max_inflight = 9;
}

void shoal_sched_free(struct shoal_sched *s)
{
    if (s == NULL)
        return;
    free(s->pbits);
    free(s->file_first);
    free(s->ck);
    free(s->listed);
    free(s->heads);
    free(s->nonempty);
    free(s->peers);
    free(s->thr);
    free(s->drate);
    free(s->brate);
    free(s->thr_until);
    free(s->busy_until);
    free(s->bitsp);
    free(s->reqs);
    free(s->pend);
    free(s->xq);
    free(s->xok);
    free(s->leases);
    free(s);
}

int shoal_sched_new(struct shoal_sched **out, const struct shoal_sched_config *cfg,
                    const struct shoal_sched_release *rel)
{
    struct shoal_sched *s = NULL;
    struct shoal_sched_config c;
    int rv = -EINVAL;

    if (cfg)
        c = *cfg;
    else
        shoal_sched_config_default(&c);
    if (out == NULL || rel == NULL || rel->nchunks == 0 || rel->nchunks > SHOAL_SCHED_CHUNKS_MAX)
        goto fail;
    if (c.max_peers == 0 || c.max_peers > SHOAL_SCHED_PEERS_MAX || c.min_depth == 0 ||
        c.min_depth > c.max_depth || c.max_depth > SHOAL_SCHED_DEPTH_MAX)
        goto fail;
    if (rel->nfiles > SHOAL_SCHED_FILES_MAX || (rel->nfiles > 0 && rel->file_first == NULL))
        goto fail;
    for (uint32_t i = 0; i < rel->nfiles; i++) {
        if (rel->file_first[i] >= rel->nchunks)
            goto fail;
        if (i == 0 ? rel->file_first[0] != 0 : rel->file_first[i] <= rel->file_first[i - 1])
            goto fail;
    }
    if (c.endgame_dups == 0)
        c.endgame_dups = 1;
    if (c.lease_chunks == 0)
        c.lease_chunks = 1;
    if (c.max_leases == 0)
        c.max_leases = 1;
    if (c.max_leases > SHOAL_SCHED_LEASES_MAX)
        goto fail;
    if (c.import_mod > 0 && c.import_rem >= c.import_mod)
        goto fail;

    rv = -ENOMEM;
    s = aligned_alloc(alignof(struct shoal_sched), sizeof(*s));
    if (s == NULL)
        goto fail;
    memset(s, 0, sizeof(*s));
    s->cfg = c;
    s->nchunks = rel->nchunks;
    s->nbytes_bits = (rel->nchunks + 7) / 8;
    s->avg_chunk = rel->total_bytes ? (double)rel->total_bytes / rel->nchunks : 1048576.0;
    s->nfiles = rel->nfiles;
    s->nb = (c.max_peers < CNT_CAP ? c.max_peers : CNT_CAP) + 1;
    size_t n = rel->nchunks;
    s->file_first = rel->nfiles ? malloc(rel->nfiles * sizeof(uint32_t)) : NULL;
    s->ck = calloc(n, sizeof(*s->ck));
    s->listed = calloc((n + 63) / 64, 8);
    s->heads = malloc((size_t)NTIERS * s->nb * sizeof(uint32_t));
    s->nonempty = calloc(NTIERS, sizeof(*s->nonempty));
    s->peers = aligned_alloc(alignof(struct peer), c.max_peers * sizeof(struct peer));
    if (s->peers != NULL)
        memset(s->peers, 0, c.max_peers * sizeof(struct peer));
    s->thr = calloc(c.max_peers, sizeof(double));
    s->drate = calloc(c.max_peers, sizeof(struct drate));
    s->thr_until = calloc(c.max_peers, sizeof(uint64_t));
    s->busy_until = calloc(c.max_peers, sizeof(uint64_t));
    s->bitsp = calloc(c.max_peers, sizeof(*s->bitsp));
    /* Whole 64-bit words per peer, so pick_scan can read them. */
    s->pbstride = (uint32_t)((n + 63) / 64 * 8);
    s->pbits = calloc(c.max_peers, s->pbstride);
    s->reqcap = c.max_peers * c.max_depth;
    s->cap = c.max_inflight > 0 && c.max_inflight < s->reqcap ? c.max_inflight : s->reqcap;
    s->reqs = malloc(s->reqcap * sizeof(struct req));
    s->leases = calloc(c.max_leases + LOADER_EXTRA_LEASES, sizeof(struct lease));
    s->lease_slots = c.max_leases + LOADER_EXTRA_LEASES;
    if ((rel->nfiles && s->file_first == NULL) || !s->ck || !s->listed ||
        !s->heads || !s->nonempty || !s->peers || !s->thr || !s->drate || !s->thr_until ||
        !s->busy_until || !s->bitsp || !s->pbits ||
        !s->reqs || !s->leases)
        goto fail;
    if (rel->nfiles)
        memcpy(s->file_first, rel->file_first, rel->nfiles * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++)
        s->ck[i].tier = TIER_NORMAL;
    tier_count(s, TIER_NORMAL, (int)rel->nchunks);
    s->fe_last = NIL;
    s->xq_at = UINT64_MAX;
    s->thr_fresh = UINT64_MAX;
    for (size_t i = 0; i < (size_t)NTIERS * s->nb; i++)
        s->heads[i] = NIL;
    for (uint32_t t = 0; t < NTIERS; t++)
        s->tier_lo[t] = NIL;
    uint64_t seed = c.seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&seed);
    s->xjitter_ms = c.cross_zone_delay_ms ? (uint32_t)(rng_next(s) % c.cross_zone_delay_ms) : 0;
    for (uint32_t i = 0; i < rel->nchunks; i++)
        list_insert(s, i);
    *out = s;
    return 0;
fail:
    shoal_sched_free(s);
    return rv;
}

/* ---- fleet roles ---- */

void shoal_sched_role_fleet(struct shoal_sched_role *out, const struct shoal_sched_config *base,
                            bool fetcher, uint32_t import_mod, uint32_t import_rem)
{
    *out = (struct shoal_sched_role){
        .origin_delay_ms = fetcher ? 0 : base->origin_delay_ms,
        .max_leases = fetcher && base->max_leases ? base->max_leases : 1,
        .max_inflight = base->max_inflight,
    };
    if (import_mod > 0 && import_rem < import_mod) {
        out->import_mod = import_mod;
        out->import_rem = import_rem;
        /* Imports cross a longer round trip: a deeper pipeline keeps the
         * importer's download full. */
        out->max_inflight = base->max_inflight ? 3 * base->max_inflight : 0;
    }
}

int shoal_sched_set_role(struct shoal_sched *s, const struct shoal_sched_role *r)
{
    int rv = 0;
    uint32_t leases = r->max_leases ? r->max_leases : 1;
    if (leases > SHOAL_SCHED_LEASES_MAX || (r->import_mod > 0 && r->import_rem >= r->import_mod) ||
        (r->import_mod == 0 && r->import_rem != 0)) {
        rv = -EINVAL;
        goto out;
    }
    if (leases + LOADER_EXTRA_LEASES > s->lease_slots) {
        uint32_t slots = leases + LOADER_EXTRA_LEASES;
        struct lease *nl = realloc(s->leases, slots * sizeof(*nl));
        if (nl == NULL) {
            rv = -ENOMEM;
            goto out;
        }
        memset(nl + s->lease_slots, 0, (slots - s->lease_slots) * sizeof(*nl));
        s->leases = nl;
        s->lease_slots = slots;
    }
    /* Leases beyond a lowered max_leases run out; none is asked for until
     * fewer are held. */
    s->cfg.max_leases = leases;
    if (s->t0 != 0) {
        /* The delay already runs from the first shoal_sched_next call: move
         * the gate it set. A retry time above the old gate came from a
         * refused lease and stays. */
        uint64_t start = s->t0 - 1;
        uint64_t old_gate = start + s->cfg.origin_delay_ms;
        uint64_t new_gate = start + r->origin_delay_ms;
        if (new_gate > old_gate && s->lease_retry_at < new_gate)
            s->lease_retry_at = new_gate;
        else if (new_gate < old_gate && s->lease_retry_at <= old_gate &&
                 s->lease_retry_at > new_gate)
            s->lease_retry_at = new_gate;
    }
    s->cfg.origin_delay_ms = r->origin_delay_ms;
    s->cfg.max_inflight = r->max_inflight;
    s->cap = r->max_inflight > 0 && r->max_inflight < s->reqcap ? r->max_inflight : s->reqcap;
    bool new_share = r->import_mod != s->cfg.import_mod || r->import_rem != s->cfg.import_rem;
    s->cfg.import_mod = r->import_mod;
    s->cfg.import_rem = r->import_rem;
    if (new_share && r->import_mod > 0) {
        /* Our new share's chunks waiting out the cross-zone delay may be
         * imported now; cross_poll drops their queue entries later. Chunks
         * of an old share already cleared stay cleared. */
        for (uint32_t i = 0; i < s->xqn; i++) {
            uint32_t c = s->xq[(s->xqhead + i) % s->xqcap].chunk;
            if (c % r->import_mod == r->import_rem && !(s->ck[c].flags & (F_HAVE | F_XOK)) &&
                s->ck[c].cnt_same == 0)
                mark_xok(s, c);
        }
    }
out:
    return rv;
}

/* ---- peers ---- */

int shoal_sched_peer_add(struct shoal_sched *s, uint64_t peer, bool same_zone, uint32_t rtt_ms)
{
    int rv = 0;
    if (find_peer(s, peer) >= 0) {
        rv = SHOAL_EEXIST;
        goto out;
    }
    if (s->npeers >= s->cfg.max_peers) {
        rv = SHOAL_ELIMIT;
        goto out;
    }
    uint32_t i = 0;
    while (s->peers[i].used)
        i++;
    /* Zeroed at new or remove; none after shoal_sched_borrow_all. */
    uint8_t *bits = s->pbits ? s->pbits + (size_t)i * s->pbstride : NULL;
    s->bitsp[i] = bits;
    s->peers[i] = (struct peer){.id = peer, .bits = bits, .used = true, .same_zone = same_zone,
                                .rtt_ms = rtt_ms, .depth = s->cfg.min_depth,
                                .ring = {NIL, NIL, NIL, NIL}};
    s->npeers++;
    if (s->rate_on) {
        update_depth(s, &s->peers[i], 0);
        ratecap_update(s);
    }
    peer_open(s, i);
    if (same_zone) {
        s->nsame++;
        if (i < 64)
            s->samez0 |= 1ull << i;
    }
    hslot_put(s, peer, i);
out:
    return rv;
}

int shoal_sched_peer_remove(struct shoal_sched *s, uint64_t peer)
{
    int i = find_peer(s, peer);
    if (i < 0)
        return SHOAL_ENOTFOUND;
    struct peer *p = &s->peers[i];
    for (uint32_t k = 0; k < s->nreq;) {
        if (s->reqs[k].slot == (uint32_t)i)
            req_drop(s, k);
        else
            k++;
    }
    if (p->nhave > 0) {
        for (uint32_t c = 0; c < s->nchunks; c++)
            if (bit_get(p->bits, c) && !(s->ck[c].flags & F_HAVE))
                avail_change(s, c, p->same_zone, -1);
    }
    if (p->same_zone)
        s->nsame--;
    if (p->borrowed)
        s->nborrowed--;
    else if (s->pbits)
        memset(s->pbits + (size_t)i * s->pbstride, 0, s->pbstride);
    hslot_del(s, peer);
    memset(p, 0, sizeof(*p));
    s->bitsp[i] = NULL;
    s->thr[i] = 0;
    s->drate[i] = (struct drate){.lone_chunk = NIL};
    if (s->brate)
        s->brate[i] = (struct brate){0};
    s->thr_until[i] = 0;
    s->busy_until[i] = 0;
    s->busym[i >> 6] &= ~(1ull << (i & 63));
    s->quiet[i >> 6] &= ~(1ull << (i & 63)); /* the record that said so is gone */
    if (i < 64) {
        s->hfast0 &= ~(1ull << i);
        s->samez0 &= ~(1ull << i);
    }
    peer_mark(s, (uint32_t)i);
    peer_open(s, (uint32_t)i);
    s->npeers--;
    if (s->rate_on)
        ratecap_update(s);
    clear_stale(s, false);
    return 0;
}

/* Whether a HAVE of |c| (which we lack) from a peer, in our zone when
 * |same|, is news for its picks: a cross-zone peer can be asked only for a
 * chunk on the xok list that no same-zone peer holds (pick_cross); a chunk
 * that becomes one later wakes its holders then (mark_xok, avail_change).
 * Woken for every HAVE, cross-zone peers were most of the searches that
 * found nothing (1,000-node simulated fleet: 3.1 a transfer). */
static inline bool have_news(const struct ck *k, bool same)
{
    return !(k->flags & (F_REQ | F_ORIGIN)) &&
           (same || ((k->flags & F_XOK) && k->cnt_same == 0));
}

/* Notes news |c| for |p|'s picks (have_news). */
static void peer_fresh(struct peer *p, uint32_t c)
{
    p->stale = false;
    p->hint = c;
    p->ring[p->rhead++ & 3] = c;
    if (p->fresh_only && ++p->nfresh > 4)
        p->fresh_only = false;
}

static void peer_have_one(struct shoal_sched *s, struct peer *p, uint32_t c)
{
    if (!p->borrowed)
        bit_set(p->bits, c);
    p->nhave++;
    if (!(s->ck[c].flags & F_HAVE)) {
        avail_change(s, c, p->same_zone, 1);
        if (have_news(&s->ck[c], p->same_zone))
            peer_fresh(p, c);
    }
    uint32_t slot = (uint32_t)(p - s->peers);
    peer_mark(s, slot);
    if (p->borrowed && slot < 64)
        s->hfast0 |= 1ull << slot;
}

/* The checks every bitfield call makes: |peer| is ours (its slot in
 * *|slot|) and |bits| is a whole bitfield. Returns 0, SHOAL_ENOTFOUND or
 * SHOAL_EBADMSG. */
static int bitfield_args(const struct shoal_sched *s, uint64_t peer, const uint8_t *bits,
                         size_t nbytes, int *slot)
{
    *slot = find_peer(s, peer);
    if (*slot < 0)
        return SHOAL_ENOTFOUND;
    return nbytes != s->nbytes_bits || bits == NULL ? SHOAL_EBADMSG : 0;
}

int shoal_sched_peer_bitfield(struct shoal_sched *s, uint64_t peer, const uint8_t *bits,
                              size_t nbytes)
{
    int i, rv = bitfield_args(s, peer, bits, nbytes, &i);
    if (rv != 0)
        return rv;
    struct peer *p = &s->peers[i];
    if (p->borrowed || !p->bits)
        return -EINVAL;
    /* Only the bits that differ matter; whole equal words are skipped (a
     * fresh peer's bitfield is mostly zeros, a seed's mostly ones). */
    for (size_t k = 0; k < nbytes;) {
        if (k + 8 <= nbytes && memcmp(p->bits + k, bits + k, 8) == 0) {
            k += 8;
            continue;
        }
        for (unsigned diff = (unsigned)(p->bits[k] ^ bits[k]); diff != 0; diff &= diff - 1) {
            uint32_t c = (uint32_t)k * 8 + (uint32_t)__builtin_ctz(diff);
            if (c >= s->nchunks)
                break;
            if (bit_get(bits, c)) {
                peer_have_one(s, p, c);
            } else {
                p->bits[c >> 3] &= (uint8_t)~(1u << (c & 7));
                p->nhave--;
                if (!(s->ck[c].flags & F_HAVE))
                    avail_change(s, c, p->same_zone, -1);
            }
        }
        k++;
    }
    peer_mark(s, (uint32_t)i);
    return 0;
}

int shoal_sched_peer_bitfield_add(struct shoal_sched *s, uint64_t peer, const uint8_t *bits,
                                  size_t nbytes)
{
    int i, rv = bitfield_args(s, peer, bits, nbytes, &i);
    if (rv != 0)
        return rv;
    struct peer *p = &s->peers[i];
    int added = 0;
    if (p->borrowed || !p->bits)
        return -EINVAL;
    for (size_t k = 0; k < nbytes; k++) {
        for (unsigned add = (unsigned)(bits[k] & ~p->bits[k]); add != 0; add &= add - 1) {
            uint32_t c = (uint32_t)k * 8 + (uint32_t)__builtin_ctz(add);
            if (c >= s->nchunks)
                break;
            peer_have_one(s, p, c);
            added++;
        }
    }
    if (added)
        peer_mark(s, (uint32_t)i);
    return added;
}

/* The checks of a call about one chunk of a peer's own bitfield: |peer| is
 * ours (its record in *|out|), |chunk| in range, the bitfield ours to
 * change. Returns 0, SHOAL_ENOTFOUND, SHOAL_EBADMSG or -EINVAL. */
static int peer_chunk_args(struct shoal_sched *s, uint64_t peer, uint32_t chunk, struct peer **out)
{
    int i = find_peer(s, peer);
    if (i < 0)
        return SHOAL_ENOTFOUND;
    if (chunk >= s->nchunks)
        return SHOAL_EBADMSG;
    *out = &s->peers[i];
    return (*out)->borrowed || !(*out)->bits ? -EINVAL : 0;
}

int shoal_sched_peer_have(struct shoal_sched *s, uint64_t peer, uint32_t chunk)
{
    struct peer *p;
    int rv = peer_chunk_args(s, peer, chunk, &p);
    if (rv != 0)
        return rv;
    if (!bit_get(p->bits, chunk))
        peer_have_one(s, p, chunk);
    return 0;
}

int shoal_sched_peer_bitfield_borrow(struct shoal_sched *s, uint64_t peer, const uint8_t *bits,
                                     size_t nbytes)
{
    int i, rv = bitfield_args(s, peer, bits, nbytes, &i);
    if (rv != 0)
        return rv;
    struct peer *p = &s->peers[i];
    if (p->borrowed || p->nhave != 0)
        return -EINVAL;
    /* Read in place from now on, and counted as a first bitfield would be.
     * The slot's own bitfield is never touched: in a simulator whose every
     * peer is borrowed those pages are never made resident. */
    p->bits = (uint8_t *)(uintptr_t)bits;
    s->bitsp[i] = bits;
    p->borrowed = true;
    s->nborrowed++;
    for (uint32_t w = 0; (size_t)w * 8 < nbytes; w++)
        for (uint64_t m = word_of(bits, w); m != 0; m &= m - 1) {
            uint32_t c = w * 64 + (uint32_t)__builtin_ctzll(m);
            if (c >= s->nchunks)
                break;
            peer_have_one(s, p, c);
        }
    peer_mark(s, (uint32_t)i);
    return 0;
}

int shoal_sched_borrow_all(struct shoal_sched *s)
{
    if (s->npeers != 0)
        return -EINVAL;
    free(s->pbits);
    s->pbits = NULL;
    return 0;
}

bool shoal_sched_slot_have_borrowed(struct shoal_sched *s, uint32_t slot, uint32_t chunk)
{
    uint64_t bit = 1ull << (slot & 63);
    if (slot < 64 && (s->hfast0 & bit)) {
        /* The peer has announced something before: its ready and quiet
         * bits stand unless the chunk is news for it, and its count of
         * chunks is taken from its bitfield when asked for
         * (shoal_sched_peer_have_count), so its record is loaded only for
         * news (peer_have_one does the same, with the record). */
        struct ck *k = &s->ck[chunk];
        if (!(k->flags & F_HAVE)) {
            bool same = (s->samez0 & bit) != 0;
            avail_change(s, chunk, same, 1);
            if (have_news(k, same)) {
                peer_fresh(&s->peers[slot], chunk);
                peer_mark(s, slot);
            }
        }
    } else {
        peer_have_one(s, &s->peers[slot], chunk);
    }
    return (s->ck[chunk].flags & F_LISTED) && room(s) && ((s->ready[slot >> 6] >> (slot & 63)) & 1);
}

uint32_t shoal_sched_holders(const struct shoal_sched *s, uint32_t chunk)
{
    if (chunk >= s->nchunks || (s->ck[chunk].flags & F_HAVE))
        return 0;
    return s->ck[chunk].cnt;
}

int shoal_sched_peer_slot(const struct shoal_sched *s, uint64_t peer)
{
    int i = find_peer(s, peer);
    return i >= 0 ? i : SHOAL_ENOTFOUND;
}

uint32_t shoal_sched_peer_have_count(const struct shoal_sched *s, uint64_t peer)
{
    int i = find_peer(s, peer);
    if (i < 0)
        return UINT32_MAX;
    const struct peer *p = &s->peers[i];
    if (!p->borrowed)
        return p->nhave;
    /* A borrowed peer's HAVEs do not all reach its record (see
     * shoal_sched_slot_have_borrowed): count its bitfield, all of whose
     * bits it reports. */
    uint32_t n = 0;
    for (uint32_t w = 0; w < (s->nchunks + 63) / 64; w++)
        n += (uint32_t)__builtin_popcountll(word_of(p->bits, w));
    return n;
}

bool shoal_sched_slot_have(struct shoal_sched *s, uint32_t slot, uint32_t chunk)
{
    if (s->peers[slot].borrowed || !s->pbits ||
        bit_get(s->pbits + (size_t)slot * s->pbstride, chunk))
        return false;
    peer_have_one(s, &s->peers[slot], chunk);
    return (s->ck[chunk].flags & F_LISTED) && room(s) && ((s->ready[slot >> 6] >> (slot & 63)) & 1);
}

void shoal_sched_prefetch(const struct shoal_sched *s)
{
    /* The hot fields above, and the configuration after them. */
    for (size_t off = 0; off < offsetof(struct shoal_sched, nbytes_bits); off += 64)
        __builtin_prefetch((const char *)s + off);
}

void shoal_sched_prefetch_deep(const struct shoal_sched *s)
{
    shoal_sched_prefetch(s);
    /* What the next call reads for the peers it may ask: their
     * throughput and back-off entries and their records, the request
     * array and the normal tier's bucket heads. */
    for (uint32_t w = 0; w < 4; w++) {
        uint64_t bm = s->busym[w];
        for (uint64_t m = s->ready[w] & s->open[w]; m != 0; m &= m - 1) {
            uint32_t slot = w * 64 + (uint32_t)__builtin_ctzll(m);
            __builtin_prefetch(&s->thr[slot]);
            if ((bm >> (slot & 63)) & 1) /* else peer_order reads no busy_until */
                __builtin_prefetch(&s->busy_until[slot]);
            __builtin_prefetch(&s->peers[slot]);
        }
    }
    __builtin_prefetch(s->reqs);
    __builtin_prefetch(&s->heads[(size_t)TIER_NORMAL * s->nb]);
    __builtin_prefetch(&s->nonempty[TIER_NORMAL]);
}

void shoal_sched_slot_prefetch(const struct shoal_sched *s, uint32_t slot, uint32_t chunk)
{
    /* The bit itself only for a bitfield of ours: a borrowed one is set
     * by its owner, and finding out which it is would cost the miss. */
    if (s->pbits && s->nborrowed < s->npeers)
        __builtin_prefetch(s->pbits + (size_t)slot * s->pbstride + (chunk >> 3), 1);
    __builtin_prefetch(&s->ck[chunk], 1);
    __builtin_prefetch(&s->peers[slot], 1);
}

int shoal_sched_peer_rtt(struct shoal_sched *s, uint64_t peer, uint32_t rtt_ms)
{
    int i = find_peer(s, peer);
    if (i < 0)
        return SHOAL_ENOTFOUND;
    s->peers[i].rtt_ms = rtt_ms;
    update_depth(s, &s->peers[i], drate_of(s, (uint32_t)i));
    if (s->rate_on)
        ratecap_update(s);
    return 0;
}

/* ---- outcomes ---- */

int shoal_sched_req_done(struct shoal_sched *s, uint64_t now_ms, uint64_t peer, uint32_t chunk,
                         uint64_t bytes, uint64_t duration_ms)
{
    int rv = 0;
    if (chunk >= s->nchunks)
        return SHOAL_EBADMSG;
    s->now = now_ms;
    int i = find_peer(s, peer);
    int k = i >= 0 ? req_find(s, (uint32_t)i, chunk) : -1;
    if (k >= 0) {
        struct peer *p = &s->peers[i];
        s->peer_chunk_ms = now_ms;
        /* Arrivals while the pipeline stays non-empty: the time between
         * them is the peer's, whatever each request waited at its end. */
        struct drate *dr = &s->drate[i];
        double dt = (double)(now_ms > dr->mark ? now_ms - dr->mark : 0);
        dr->bytes = DRATE_KEEP * dr->bytes + (double)bytes;
        dr->ms = DRATE_KEEP * dr->ms + dt;
        dr->mark = now_ms;
        if (s->rate_on) {
            struct brate *br = &s->brate[i];
            if (br->n++ > 0) {
                br->bytes = DRATE_KEEP * br->bytes + (double)bytes;
                br->ms = DRATE_KEEP * br->ms + dt;
            }
        }
        if (chunk == dr->lone_chunk && s->reqs[k].at == dr->lone_at) {
            uint64_t t = now_ms > dr->lone_at ? now_ms - dr->lone_at : 0;
            if (t > 0 && (dr->lone_ms == 0 || t < dr->lone_ms))
                dr->lone_ms = t < UINT32_MAX ? (uint32_t)t : UINT32_MAX;
            dr->lone_chunk = NIL;
        }
        /* Remove this request first so got_chunk cancels only the others. */
        s->reqs[k] = s->reqs[--s->nreq];
        p->inflight--;
        peer_open(s, (uint32_t)i);
        bool more;
        if (req_copies(s, chunk, NIL, &more) == 0)
            s->ck[chunk].flags &= (uint8_t)~F_REQ;
        p->stale = false;
        peer_mark(s, (uint32_t)i);
        if (duration_ms > 0) {
            double sample = (double)bytes * 1000.0 / (double)duration_ms;
            /* This per-request figure ranks peers (peer_order); the
             * delivery rate sizes their pipelines. It is what one request
             * gets there, queueing at the peer included: ranked by the
             * delivery rate, the 1k fleet (seeds 1-3) finished no sooner
             * (last/T_min 1.084, 1.089, 1.086 against 1.084, 1.087, 1.086)
             * and sent more across zones (0.0074-0.0081 of the bytes
             * against 0.0059-0.0068). A slow average: one quick chunk from
             * a crowded uploader must not move it ahead of the peers; 0.25
             * finished the 1k fleet later than 0.05 (p50 1.136 against
             * 1.130). */
            s->thr[i] = s->thr[i] == 0 ? sample : 0.95 * s->thr[i] + 0.05 * sample;
            s->thr_until[i] = now_ms + THR_PROBE_MS;
            if (s->thr_until[i] < s->thr_fresh)
                s->thr_fresh = s->thr_until[i];
        }
        update_depth(s, p, drate_of(s, (uint32_t)i));
        if (s->rate_on)
            ratecap_update(s);
        /* A fallback crossing may be free again: cross-zone peers that
         * found nothing to pick for that reason may now. */
        if (!p->same_zone) {
            clear_stale(s, true);
            if (!xmine(s, chunk) && duration_ms > s->cfg.cross_zone_delay_ms)
                s->fb_hold = now_ms + XHOLD_K * duration_ms;
        }
        /* for late requests (file_endgame_cutoff) */
        s->req_ms = s->req_ms == 0 ? (double)duration_ms
                                   : 0.875 * s->req_ms + 0.125 * (double)duration_ms;
    } else {
        rv = SHOAL_ENOTFOUND;
    }
    got_chunk(s, chunk);
    if (s->n_listed == 0)
        clear_stale(s, false); /* endgame: freed slots may duplicate */
    return rv;
}

/* req_failed and req_busy: |backoff_ms| 0 for a failure that is not busy. */
static int req_fail(struct shoal_sched *s, uint64_t now_ms, uint64_t peer, uint32_t chunk,
                    bool busy, uint32_t backoff_ms)
{
    s->now = now_ms;
    int i = find_peer(s, peer);
    int k = i >= 0 ? req_find(s, (uint32_t)i, chunk) : -1;
    if (k < 0)
        return SHOAL_ENOTFOUND;
    if (busy) {
        /* A later, shorter wish does not cut short a longer one still
         * running: the peer said it would be busy until then. */
        if (!((s->busym[i >> 6] >> (i & 63)) & 1) || s->busy_until[i] < now_ms + backoff_ms)
            s->busy_until[i] = now_ms + backoff_ms;
        s->busym[i >> 6] |= 1ull << (i & 63);
    }
    req_drop(s, (uint32_t)k);
    /* A crossing that failed for good frees the fallback room as one that
     * arrived does (req_done): cross-zone peers that found nothing to
     * pick for want of it may pick again. (A busy one is asked again.) */
    if (!busy && !s->peers[i].same_zone)
        clear_stale(s, true);
    return 0;
}

int shoal_sched_req_failed(struct shoal_sched *s, uint64_t now_ms, uint64_t peer,
                           uint32_t chunk, bool busy)
{
    return req_fail(s, now_ms, peer, chunk, busy, s->cfg.busy_backoff_ms);
}

int shoal_sched_req_busy(struct shoal_sched *s, uint64_t now_ms, uint64_t peer, uint32_t chunk,
                         uint32_t retry_after_ms)
{
    uint32_t ms = retry_after_ms < SHOAL_SCHED_RETRY_AFTER_MAX_MS ? retry_after_ms
                                                                  : SHOAL_SCHED_RETRY_AFTER_MAX_MS;
    if (ms < s->cfg.busy_backoff_ms)
        ms = s->cfg.busy_backoff_ms;
    return req_fail(s, now_ms, peer, chunk, true, ms);
}

int shoal_sched_peer_lacks(struct shoal_sched *s, uint64_t now_ms, uint64_t peer, uint32_t chunk)
{
    s->now = now_ms;
    struct peer *p;
    int rv = peer_chunk_args(s, peer, chunk, &p);
    if (rv != 0)
        return rv;
    uint32_t i = (uint32_t)(p - s->peers);
    /* The claim goes first, so relisting the chunk below wakes only the
     * peers that still hold it, and the count it is listed by is right. */
    if (bit_get(p->bits, chunk)) {
        p->bits[chunk >> 3] &= (uint8_t)~(1u << (chunk & 7));
        p->nhave--;
        if (!(s->ck[chunk].flags & F_HAVE))
            avail_change(s, chunk, p->same_zone, -1);
    }
    int k = req_find(s, i, chunk);
    if (k >= 0) {
        req_drop(s, (uint32_t)k);
        if (!p->same_zone)
            clear_stale(s, true); /* as in shoal_sched_req_failed */
    }
    peer_mark(s, i);
    return 0;
}

int shoal_sched_chunk_obtained(struct shoal_sched *s, uint64_t now_ms, uint32_t chunk)
{
    if (chunk >= s->nchunks)
        return SHOAL_EBADMSG;
    s->now = now_ms;
    got_chunk(s, chunk);
    return 0;
}

/* ---- origin ---- */

int shoal_sched_chunk_lost(struct shoal_sched *s, uint64_t now_ms, uint32_t chunk)
{
    if (chunk >= s->nchunks)
        return SHOAL_EBADMSG;
    s->now = now_ms;
    struct ck *k = &s->ck[chunk];
    if (!(k->flags & F_HAVE))
        return 0;
    k->flags &= (uint8_t)~F_HAVE;
    s->nhave--;
    tier_count(s, k->tier, 1);
    /* Holders are not counted while we hold a chunk (peer_have_one): count
     * them again from the peers' bitfields. */
    uint32_t cnt = 0, same = 0;
    for (uint32_t i = 0; i < s->cfg.max_peers; i++) {
        const struct peer *p = &s->peers[i];
        if (p->used && bit_get(p->bits, chunk)) {
            cnt++;
            same += p->same_zone;
        }
    }
    k->cnt = (uint8_t)cnt;
    k->cnt_same = (uint8_t)same;
    relist_if_needed(s, chunk);
    if (cnt > 0 && same == 0)
        cross_arm(s, chunk);
    return 0;
}

/* Reports chunk |c| of lease |l| fetched, merged into the LEASE_DONE just
 * queued when it ends right before |c| (chunks of a run land in order)
 * within the same lease: a run over two adjacent leases fits neither, and
 * the transport dropped it. */
static void lease_done_run(struct shoal_sched *s, const struct lease *l, uint32_t c)
{
    if (s->npend > s->pendhead) {
        struct shoal_sched_action *a = &s->pend[s->npend - 1];
        if (a->type == SHOAL_SCHED_LEASE_DONE && a->peer == 0 && a->chunk + a->count == c &&
            a->chunk >= l->first) {
            a->count++;
            return;
        }
    }
    (void)push_pending(s, SHOAL_SCHED_LEASE_DONE, 0, c, 1);
}

/* The lease [first, first+count) ended: tells the tracker which of its
 * chunks the swarm now has, one LEASE_DONE per run: chunks we hold, and
 * chunks a peer holds that no origin fetch of ours is bringing. Chunks
 * still coming from the origin, or whose fetch failed with no holder, are
 * left out: they expire with the lease at the tracker, which grants them
 * again (reported done, nobody could lease them until the tracker's
 * fetched-ttl). A last LEASE_DONE marked SHOAL_SCHED_LEASE_END names the
 * whole span, so the transport can forget the lease. */
static void lease_report(struct shoal_sched *s, uint32_t first, uint32_t count)
{
    uint32_t run = NIL, end = first + count;
    for (uint32_t c = first; c <= end; c++) {
        const struct ck *k = c < end ? &s->ck[c] : NULL;
        bool has = k && ((k->flags & F_HAVE) || (k->cnt > 0 && !(k->flags & F_ORIGIN)));
        if (has && run == NIL) {
            run = c;
        } else if (!has && run != NIL) {
            (void)push_pending(s, SHOAL_SCHED_LEASE_DONE, 0, run, c - run);
            run = NIL;
        }
    }
    (void)push_pending(s, SHOAL_SCHED_LEASE_DONE, SHOAL_SCHED_LEASE_END, first, count);
}

/* Whether some chunk of [first, first+count) is still coming from the
 * origin: a lease ends when none is. */
static bool span_fetching(const struct shoal_sched *s, uint32_t first, uint32_t count)
{
    for (uint32_t c = first; c < first + count; c++)
        if (s->ck[c].flags & F_ORIGIN)
            return true;
    return false;
}

int shoal_sched_lease_granted(struct shoal_sched *s, uint64_t now_ms, uint32_t first,
                              uint32_t count, uint64_t expires_ms)
{
    (void)expires_ms; /* a late fetch still helps; the tracker may re-grant meanwhile */
    s->now = now_ms;
    s->lease_pending = false;
    bool extra = s->lease_extra;
    s->lease_extra = false;
    if (count == 0) {
        s->lease_retry_at = now_ms + s->cfg.lease_retry_ms;
        return 0;
    }
    if (first >= s->nchunks || count > s->nchunks - first)
        return SHOAL_EBADMSG;
    struct lease *l = NULL;
    for (uint32_t i = 0; i < s->lease_slots; i++) {
        const struct lease *h = &s->leases[i];
        /* A tracker grants a lease again, same span, when the node comes
         * back on a new connection without having reported it (the first
         * reply may have been lost): we are still fetching it, so this
         * only confirms it. Taken as a new lease, its chunks (all under
         * our origin fetch) were reported done at once, before anything
         * arrived. Ask again only after the usual pause. A slot in use
         * always has a chunk still coming (it ends with the last), so a
         * node granting itself the span again after a failed fetch gets
         * a new lease (ops_origin_bad). */
        if (h->used && h->first == first && h->count == count) {
            s->lease_retry_at = now_ms + s->cfg.lease_retry_ms;
            return SHOAL_SCHED_LEASE_HELD;
        }
    }
    /* The last slots take only a loader's lease we asked for; the others
     * are as before there were any. */
    uint32_t slots = s->lease_slots - (extra ? 0 : LOADER_EXTRA_LEASES);
    for (uint32_t i = 0; i < slots; i++)
        if (!s->leases[i].used) {
            l = &s->leases[i];
            break;
        }
    if (l == NULL) {
        /* More leases than we asked for: fetch nothing. There is no message
         * giving a lease back; report what the swarm already has and let
         * the rest expire, to be granted again. */
        lease_report(s, first, count);
        return 0;
    }
    *l = (struct lease){.first = first, .count = count, .used = true};
    uint32_t run_start = NIL, pending = 0;
    for (uint32_t c = first; c <= first + count; c++) {
        /* Only orphans are fetched: chunks held, requested or held by a
         * peer come from the swarm (it has them, so the tracker may count
         * them as fetched); a peer request that fails lists it again. */
        bool want = c < first + count && !(s->ck[c].flags & (F_HAVE | F_REQ | F_ORIGIN)) &&
                    s->ck[c].cnt == 0;
        if (want) {
            if (s->ck[c].flags & F_LISTED)
                list_remove(s, c);
            s->ck[c].flags |= F_ORIGIN;
            pending++;
            if (run_start == NIL)
                run_start = c;
        } else if (run_start != NIL) {
            (void)push_pending(s, SHOAL_SCHED_ORIGIN_FETCH, 0, run_start, c - run_start);
            run_start = NIL;
        }
    }
    if (pending == 0) {
        lease_report(s, first, count);
        l->used = false;
    }
    return 0;
}

void shoal_sched_lease_failed(struct shoal_sched *s, uint64_t now_ms)
{
    s->now = now_ms;
    s->lease_pending = false;
    s->lease_extra = false;
    s->lease_retry_at = now_ms + s->cfg.lease_retry_ms;
}

/* Whether a lease in use other than |self| holds chunks [c, c+n). */
static bool other_lease_holds(const struct shoal_sched *s, const struct lease *self, uint32_t c,
                              uint32_t n)
{
    for (uint32_t i = 0; i < s->lease_slots; i++) {
        const struct lease *l = &s->leases[i];
        if (l != self && l->used && c >= l->first && c + n <= l->first + l->count)
            return true;
    }
    return false;
}

int shoal_sched_lease_drop(struct shoal_sched *s, uint64_t now_ms, uint32_t first,
                           uint32_t count)
{
    struct lease *l = NULL;

    if (count == 0 || first >= s->nchunks || count > s->nchunks - first)
        return SHOAL_EBADMSG;
    s->now = now_ms;
    for (uint32_t i = 0; i < s->lease_slots && !l; i++)
        if (s->leases[i].used && s->leases[i].first == first && s->leases[i].count == count)
            l = &s->leases[i];
    if (!l)
        return SHOAL_ENOTFOUND;
    /* Its chunks still under an origin fetch of ours go back to the peers
     * holding them or, with none, to the orphans a new lease covers: the
     * fetch may never end well (the origin refused us), and meanwhile no
     * peer was asked for them. One another lease of ours also covers
     * (local leases may overlap) stays that lease's. */
    for (uint32_t c = first; c < first + count; c++) {
        if (!(s->ck[c].flags & F_ORIGIN) || other_lease_holds(s, l, c, 1))
            continue;
        s->ck[c].flags &= (uint8_t)~F_ORIGIN;
        relist_if_needed(s, c);
    }
    /* Its fetches and reports not taken yet go too: the tracker ended the
     * lease, and a LEASE_DONE or LEASE_END of it could be taken for a
     * lease granted since on the same span. */
    uint32_t w = s->pendhead;
    for (uint32_t r = s->pendhead; r < s->npend; r++) {
        const struct shoal_sched_action *a = &s->pend[r];
        bool its = (a->type == SHOAL_SCHED_ORIGIN_FETCH || a->type == SHOAL_SCHED_LEASE_DONE) &&
                   a->chunk >= first && a->chunk + a->count <= first + count &&
                   !other_lease_holds(s, l, a->chunk, a->count);
        if (!its)
            s->pend[w++] = *a;
    }
    s->npend = w;
    l->used = false;
    return 0;
}

int shoal_sched_origin_done(struct shoal_sched *s, uint64_t now_ms, uint32_t chunk, bool ok)
{
    if (chunk >= s->nchunks)
        return SHOAL_EBADMSG;
    s->now = now_ms;
    /* Not under a fetch of ours any more (its lease dropped): one that
     * arrives anyway is ours all the same. */
    if (!(s->ck[chunk].flags & F_ORIGIN)) {
        if (ok)
            got_chunk(s, chunk);
        return 0;
    }
    s->ck[chunk].flags &= (uint8_t)~F_ORIGIN;
    if (ok)
        got_chunk(s, chunk);
    else
        relist_if_needed(s, chunk);
    bool reported = false;
    for (uint32_t i = 0; i < s->lease_slots; i++) {
        struct lease *l = &s->leases[i];
        if (!l->used || chunk < l->first || chunk - l->first >= l->count)
            continue;
        /* Reported as it lands, not only with the whole span: a fetch
         * slower than the tracker's lease time had its unreported chunks
         * granted to another node at expiry and fetched twice (the
         * tracker also extends a lease on each report). */
        if (ok && !reported)
            lease_done_run(s, l, chunk);
        reported = true;
        /* Every lease holding the chunk is looked at: local leases may
         * overlap, and a count per lease, taken down by whichever lease
         * came first, ended one early and left the other's slot in use
         * for good. */
        if (!span_fetching(s, l->first, l->count)) {
            lease_report(s, l->first, l->count);
            l->used = false;
        }
    }
    return 0;
}

/* ---- loader ---- */

/* Requests in flight in all that |bytes_per_s| delivers in |window_ms|,
 * plus one, at least 2; 0 (no limit) for what the pipeline never
 * reaches. */
static uint32_t rate_bound(const struct shoal_sched *s, double bytes_per_s, double window_ms)
{
    double n = ceil(bytes_per_s * window_ms / 1000.0 / s->avg_chunk) + 1.0;
    if (n < 2.0)
        n = 2.0;
    return n >= (double)s->reqcap ? 0 : (uint32_t)n;
}

/* Sets |ratecap| from the cap and, with rate_on, from the sum of the
 * peers' delivery rates: the tighter bound. */
static void ratecap_update(struct shoal_sched *s)
{
    uint32_t cap = 0, seen = 0, rtt = 0;
    double sum = 0;

    if (s->avg_chunk <= 0) {
        s->ratecap = 0;
        return;
    }
    if (s->rate_down != 0)
        cap = rate_bound(s, (double)s->rate_down, RATECAP_WINDOW_MS);
    if (s->rate_on) {
        /* Each peer's rate measured while it had requests: what the node
         * can receive, not what it did receive lately. The latter falls
         * while the last requests wait at a slow peer, and held to it, a
         * fast peer could not take copies of them (endgame): a 24 MiB
         * pull from a seed on loopback and one at 512 KiB/s took 9.7 s
         * instead of 0.13. The round trip is in the window because each
         * rate is measured through this pipeline: one that does not
         * cover it measures less than the link carries and shrinks. */
        for (uint32_t i = 0; i < s->cfg.max_peers; i++) {
            if (!s->peers[i].used)
                continue;
            sum += brate_of(s, i);
            if (s->peers[i].rtt_ms > rtt)
                rtt = s->peers[i].rtt_ms;
        }
        seen = rate_bound(s, sum, RATECAP_WINDOW_MS + (double)rtt);
    }
    s->ratecap = cap == 0 ? seen : seen == 0 || cap < seen ? cap : seen;
}

void shoal_sched_set_rate_down(struct shoal_sched *s, uint64_t bytes_per_s)
{
    s->rate_down = bytes_per_s;
    ratecap_update(s);
}

int shoal_sched_set_rate_bound(struct shoal_sched *s, bool on)
{
    if (on && !s->brate) {
        s->brate = calloc(s->cfg.max_peers, sizeof *s->brate);
        if (!s->brate)
            return -ENOMEM;
    }
    s->rate_on = on;
    for (uint32_t i = 0; i < s->cfg.max_peers; i++)
        if (s->peers[i].used)
            update_depth(s, &s->peers[i], drate_of(s, i));
    ratecap_update(s);
    return 0;
}

/* Moves |c| to tier |t|, keeping its list and the tier counts right. */
static void set_tier(struct shoal_sched *s, uint32_t c, uint8_t t)
{
    bool listed = s->ck[c].flags & F_LISTED;
    if (listed)
        list_remove(s, c);
    if (!(s->ck[c].flags & F_HAVE)) {
        tier_count(s, s->ck[c].tier, -1);
        tier_count(s, t, 1);
    }
    s->ck[c].tier = t;
    if (listed)
        list_insert(s, c);
}

int shoal_sched_want_files(struct shoal_sched *s, const uint32_t *files, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (files[i] >= s->nfiles)
            return SHOAL_EBADMSG;
    for (uint32_t c = 0; c < s->nchunks; c++)
        if (s->ck[c].tier != TIER_NORMAL)
            set_tier(s, c, TIER_NORMAL);
    /* Walk the order backwards so a file listed twice keeps its best rank. */
    for (size_t i = n; i-- > 0;) {
        uint32_t f = files[i];
        uint32_t end = f + 1 < s->nfiles ? s->file_first[f + 1] : s->nchunks;
        uint8_t t = (uint8_t)(i < TIER_NORMAL - 1 ? i : TIER_NORMAL - 1);
        for (uint32_t c = s->file_first[f]; c < end; c++)
            set_tier(s, c, t);
    }
    /* each own tier's file range, for pick_front; a file
     * listed twice belongs to its better rank only. */
    for (uint32_t t = 0; t < NTIERS; t++)
        s->tier_lo[t] = NIL;
    for (size_t i = 0; i < n && i < TIER_NORMAL - 1; i++) {
        uint32_t f = files[i];
        if (s->ck[s->file_first[f]].tier != i)
            continue;
        s->tier_lo[i] = s->file_first[f];
        s->tier_hi[i] = f + 1 < s->nfiles ? s->file_first[f + 1] : s->nchunks;
    }
    clear_stale(s, false);
    return 0;
}

int shoal_sched_merge_waits(const struct shoal_sched_wait *w, size_t nw, uint32_t nfiles,
                            uint32_t **out, uint32_t *n)
{
    uint32_t *files = NULL, *cur = NULL, got = 0;
    uint8_t *seen = NULL;
    size_t live = 0;
    int rv = 0;

    *out = NULL;
    *n = 0;
    if (nw == 0 || nfiles == 0)
        return 0;
    /* Each loader's cursor walks its own list once over all depths: the
     * whole merge visits each waiting position once. */
    cur = malloc(sizeof *cur * nw);
    files = malloc(sizeof *files * nfiles);
    seen = calloc(1, nfiles / 8 + 1);
    if (!cur || !files || !seen) {
        rv = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nw; i++) {
        cur[i] = w[i].head;
        live += cur[i] != UINT32_MAX;
    }
    while (live > 0 && got < nfiles) {
        for (size_t i = 0; i < nw && got < nfiles; i++) {
            uint32_t k = cur[i], fi;
            if (k == UINT32_MAX)
                continue;
            fi = w[i].want[k];
            if (fi >= nfiles) {
                rv = SHOAL_EBADMSG;
                goto out;
            }
            if (!(seen[fi / 8] & (1u << (fi % 8)))) {
                seen[fi / 8] |= (uint8_t)(1u << (fi % 8));
                files[got++] = fi;
            }
            cur[i] = w[i].next[k];
            live -= cur[i] == UINT32_MAX;
        }
    }
    if (got > 0) {
        *out = files;
        *n = got;
        files = NULL;
    }
out:
    free(files);
    free(cur);
    free(seen);
    return rv;
}

/* ---- decisions ---- */

/* Most candidates pick_scan compares. */
#define SCAN_MAX 32

/*
 * A listed chunk that |p| holds, found by ANDing its bitfield with our
 * listed set word by word from a random word on; among the first SCAN_MAX
 * candidates the best tier and rarest wins. NIL when there is none at all.
 * Costs nchunks / 64 word operations at most.
 */
static uint32_t pick_scan(struct shoal_sched *s, const struct peer *p)
{
    uint32_t nw = (s->nchunks + 63) / 64, best = NIL, bestkey = UINT32_MAX, seen = 0;
    uint32_t w0 = (uint32_t)(rng_next(s) % nw);
    for (uint32_t k = 0; k < nw && seen < SCAN_MAX; k++) {
        uint32_t w = w0 + k < nw ? w0 + k : w0 + k - nw;
        uint64_t m = s->listed[w] & word_of(p->bits, w);
        while (m && seen < SCAN_MAX) {
            uint32_t c = w * 64 + (uint32_t)__builtin_ctzll(m);
            m &= m - 1;
            uint32_t key = (uint32_t)s->ck[c].tier * 64 + bcnt(s, c);
            if (key < bestkey) {
                bestkey = key;
                best = c;
            }
            seen++;
        }
    }
    return best;
}

/* Candidates pick_front compares. */
#define FRONT_MAX 8

/*
 * For tier |t| of a file a loader waits for: the rarest of the first
 * FRONT_MAX listed chunks of that file that |p| holds, the earliest among
 * equals; NIL when |p| holds none of them or |t| is not one file's tier.
 * A wanted file is then fetched roughly front to back, so the store's
 * running sha256 follows the chunks as they arrive and the file is
 * published right after its last chunk, instead of after reading most of
 * it back (random order left ~half the file to hash at the end, on the
 * loader's critical path); the window still spreads peers over rare chunks.
 */
static uint32_t pick_front(const struct shoal_sched *s, const struct peer *p, uint32_t t)
{
    uint32_t lo = s->tier_lo[t], hi = s->tier_hi[t], best = NIL, bestc = UINT32_MAX, seen = 0;
    if (lo == NIL)
        return NIL;
    for (uint32_t w = lo >> 6; w <= (hi - 1) >> 6 && seen < FRONT_MAX; w++) {
        uint64_t m = s->listed[w] & word_of(p->bits, w);
        if (w == lo >> 6)
            m &= ~0ull << (lo & 63);
        if (w == (hi - 1) >> 6 && (hi & 63) != 0)
            m &= (1ull << (hi & 63)) - 1;
        while (m && seen < FRONT_MAX) {
            uint32_t c = w * 64 + (uint32_t)__builtin_ctzll(m);
            m &= m - 1;
            if (s->ck[c].tier != t)
                continue;
            if (bcnt(s, c) < bestc) {
                best = c;
                bestc = bcnt(s, c);
                if (bestc <= 1)
                    return best; /* nothing listed that |p| holds is rarer */
            }
            seen++;
        }
    }
    return best;
}

/*
 * pick_same for a peer with fresh_only: the best of the chunks it
 * announced since a search found nothing, most urgent tier first, then
 * rarest; among equals the newest (the first of a file for a loader's
 * tier, as pick_front). NIL clears the list: a chunk that is not listed
 * now comes back only by relist_if_needed, which clears fresh_only.
 */
static uint32_t pick_fresh(struct shoal_sched *s, struct peer *p)
{
    uint32_t best = NIL, bestkey = UINT32_MAX;
    for (uint32_t k = 0; k < p->nfresh; k++) {
        uint32_t c = p->ring[(p->rhead - 1 - k) & 3];
        if (c >= s->nchunks || !listed_bit(s, c) || s->ck[c].cnt == 0 ||
            !bit_get(p->bits, c))
            continue;
        uint32_t key = (uint32_t)s->ck[c].tier * 64 + bcnt(s, c);
        if (key < bestkey || (key == bestkey && s->ck[c].tier != TIER_NORMAL && c < best)) {
            bestkey = key;
            best = c;
        }
    }
    if (best == NIL)
        p->nfresh = 0;
    return best;
}

/* Most chunks one pick examines in one bucket (twice that in all; see
 * pick_same). A bucket holds chunks as rare as each other, mostly held by
 * other peers than the one a pick is for, so a walk rarely finds one: in
 * the simulated 1,000-node fleet 92% of picks spent a budget of 16 steps
 * (one cache miss each) and then took the peer's last announced chunk or
 * the exact scan. With 2 (4 in all) the fleet finishes as soon (seeds 1-6,
 * mean last/T_min 1.0980 -> 1.0983; one seed moves by up to 0.002 either
 * way) in 6% less CPU, 12% less at 3,000 nodes. */
#define WALK_MAX 2

/* Moves listed chunk |c| to the bucket of its current count. */
static void relist(struct shoal_sched *s, uint32_t c)
{
    list_remove(s, c);
    list_insert(s, c);
}

/*
 * Walks bucket |a| of tier |t| for a chunk |p| holds, examining at most
 * WALK_MAX chunks and *|budget|. Chunks whose count rose past the bucket
 * are moved up on the way, not counted. A walk cut short leaves the head
 * at the first chunk not examined (the next pick goes on from there) and
 * clears *|exhausted|. NIL when nothing was found.
 */
static uint32_t walk_bucket(struct shoal_sched *s, const struct peer *p, uint32_t t, uint32_t a,
                            uint32_t *budget, bool *exhausted)
{
    uint32_t *hd = s->heads + (size_t)t * s->nb + a;
    while (*hd != NIL && bcnt(s, *hd) != a)
        relist(s, *hd);
    if (*hd == NIL)
        return NIL;
    uint32_t start = *hd, c = start, k = 0;
    for (;;) {
        if (bit_get(p->bits, c))
            return c;
        uint32_t nx = s->ck[c].nxt;
        while (nx != start && bcnt(s, nx) != a) {
            uint32_t after = s->ck[nx].nxt;
            relist(s, nx);
            nx = after;
        }
        if (nx == start)
            return NIL;
        c = nx;
        if (++k >= WALK_MAX || --*budget == 0) {
            *hd = c;
            *exhausted = false;
            return NIL;
        }
    }
}

/*
 * The rarest listed chunk that same-zone peer |p| holds, best tier first.
 * The peer's last few announced chunks are tried first. A walk that
 * examines WALK_MAX chunks of a bucket without a match gives up on that
 * bucket for this pick and moves its head past them, so the next pick
 * continues where this one stopped; a walk out of budget ends in an exact
 * scan (pick_scan). *|exhausted| is true on return unless the search was
 * cut short; NIL then means nothing is there for |p|.
 */
static uint32_t pick_same(struct shoal_sched *s, struct peer *p, bool *exhausted)
{
    uint32_t budget = 2 * WALK_MAX;
    *exhausted = true;
    if (p->fresh_only)
        return pick_fresh(s, p);
    /* The rarest of the chunks the peer announced last is the answer
     * whenever it is as rare (and as urgent) as anything listed: O(1) for
     * the common case of fresh chunks spreading through the swarm, and the
     * few entries let peers of one holder pick different fresh chunks. */
    if (s->pickmask != 0) {
        uint32_t t0 = (uint32_t)__builtin_ctzll(s->pickmask);
        if (t0 != TIER_NORMAL) {
            uint32_t c = pick_front(s, p, t0);
            if (c != NIL)
                return c;
        }
        uint64_t m0 = s->nonempty[t0][0] & ~1ull;
        uint32_t lo = (uint32_t)__builtin_ctzll(m0), best = NIL, bestc = 64;
        for (uint32_t k = 0; k < 4; k++) {
            uint32_t c = p->ring[(p->rhead - 1 - k) & 3];
            if (c < s->nchunks && listed_bit(s, c) && s->ck[c].tier == t0 &&
                bcnt(s, c) < bestc) {
                best = c;
                bestc = bcnt(s, c);
            }
        }
        if (best != NIL && bestc <= lo && bit_get(p->bits, best))
            return best;
    }
    for (uint64_t tm = s->pickmask; tm != 0 && budget > 0; tm &= tm - 1) {
        uint32_t t = (uint32_t)__builtin_ctzll(tm);
        /* Bucket 0 holds orphans, nobody to ask. The mask is re-read after
         * each bucket: a walk moves chunks whose count rose to later ones. */
        for (uint32_t a = 0; budget > 0;) {
            uint64_t m = s->nonempty[t][0] & ~((2ull << a) - 1);
            if (m == 0)
                break;
            a = (uint32_t)__builtin_ctzll(m);
            uint32_t c = walk_bucket(s, p, t, a, &budget, exhausted);
            if (c != NIL)
                return c;
        }
    }
    /* Out of budget: the chunk this peer announced last, if still needed,
     * is a fine pick (it is usually a fresh, rare one). */
    if (!*exhausted && p->hint < s->nchunks && listed_bit(s, p->hint) &&
        bit_get(p->bits, p->hint))
        return p->hint;
    uint32_t c = NIL;
    if (!*exhausted) {
        /* The walk found nothing within budget: answer exactly, from the
         * peer's bitfield and ours, so a peer holding something we need is
         * never left idle. */
        *exhausted = true;
        c = pick_scan(s, p);
    }
    if (c == NIL) {
        p->fresh_only = true;
        p->nfresh = 0;
    }
    return c;
}

/* A cross-zone-eligible chunk that cross-zone peer |p| holds and no
 * same-zone peer does; one outside our import share only while
 * fallback_room. Drops entries that no longer qualify. */
static uint32_t pick_cross(struct shoal_sched *s, const struct peer *p)
{
    uint32_t best = NIL, best_tier = NTIERS;
    /* Mostly nothing is eligible: spare fallback_room's pass over the
     * requests (a division each). */
    if (s->nxok == 0)
        return NIL;
    bool fallback = fallback_room(s);
    for (uint32_t i = 0; i < s->nxok;) {
        uint32_t c = s->xok[i];
        if (!(s->ck[c].flags & F_LISTED)) {
            s->ck[c].flags &= (uint8_t)~F_XV;
            s->xok[i] = s->xok[--s->nxok];
            continue;
        }
        if (s->ck[c].cnt_same == 0 && bit_get(p->bits, c) && s->ck[c].tier < best_tier &&
            (fallback || xmine(s, c))) {
            best = c;
            best_tier = s->ck[c].tier;
            if (best_tier == 0)
                break;
        }
        i++;
    }
    return best;
}

/* A request of the loader's most urgent file is late once
 * it has been out LATE_FACTOR times as long as requests take (queueing at
 * the peer included), and at least LATE_FLOOR_MS. */
#define LATE_FACTOR 2.0
#define LATE_FLOOR_MS 20u

/* A transfer this small is all endgame: duplicating its requests at once
 * received most one-chunk deltas twice (QA F8: 5 of 7 nodes, 100% of the
 * peer bytes). Its copies wait until the request is late: LATE_FACTOR
 * times what a chunk takes (the peers' measured time per request, else
 * the chunk at the holder's measured rate), else ENDGAME_HOLD_UNKNOWN_MS
 * while nothing is measured yet (a release's first chunk). A transfer
 * larger than this keeps the immediate copies, so the simulator's runs
 * (whole releases) do not change. */
#define SMALL_XFER 2u
#define ENDGAME_HOLD_UNKNOWN_MS 500u

static uint64_t endgame_hold_ms(const struct shoal_sched *s, uint32_t holder)
{
    double per = s->req_ms;
    if (per <= 0 && holder < s->cfg.max_peers && s->thr[holder] > 0)
        per = 1000.0 * s->avg_chunk / s->thr[holder];
    if (per <= 0)
        return ENDGAME_HOLD_UNKNOWN_MS;
    return (uint64_t)(LATE_FACTOR * per) + LATE_FLOOR_MS;
}

/* Endgame: an outstanding chunk (peer request or origin fetch) that |slot|
 * holds, has fewer than endgame_dups copies and is not yet asked of it
 * (for a small transfer, only a late request: endgame_hold_ms). */
static uint32_t pick_endgame(struct shoal_sched *s, uint32_t slot)
{
    const struct peer *p = &s->peers[slot];
    for (uint32_t i = 0; i < s->lease_slots; i++) {
        const struct lease *l = &s->leases[i];
        if (!l->used)
            continue;
        for (uint32_t c = l->first; c < l->first + l->count; c++) {
            bool at;
            if ((s->ck[c].flags & F_ORIGIN) && !(s->ck[c].flags & F_HAVE) && bit_get(p->bits, c) &&
                req_copies(s, c, slot, &at) + 1 < s->cfg.endgame_dups && !at)
                return c;
        }
    }
    for (uint32_t i = 0; i < s->nreq; i++) {
        uint32_t c = s->reqs[i].chunk;
        bool at;
        if (!bit_get(p->bits, c) || req_copies(s, c, slot, &at) >= s->cfg.endgame_dups || at)
            continue;
        if (s->small_xfer) {
            uint64_t late = s->reqs[i].at + endgame_hold_ms(s, s->reqs[i].slot);
            if (late > s->now) {
                if (s->eg_wake == 0 || late < s->eg_wake)
                    s->eg_wake = late;
                continue;
            }
        }
        return c;
    }
    return NIL;
}

/*
 * Requests of file-endgame tier |t| sent before the returned time may be
 * duplicated: all of them (UINT64_MAX) once no more chunks are missing
 * than we have peers, so duplicating them costs little; else only the
 * late ones, so a slow or stalled peer holding many of the file's chunks
 * does not hold the loader up until the request timeout (0: none yet).
 */
static uint64_t file_endgame_cutoff(const struct shoal_sched *s, uint32_t t)
{
    uint64_t late = (uint64_t)(LATE_FACTOR * s->req_ms) + LATE_FLOOR_MS;
    if (s->tier_missing[t] <= s->npeers)
        return UINT64_MAX;
    return s->now > late ? s->now - late : 0;
}

/*
 * The tier of the loader's most urgent incomplete file when it is in its
 * own endgame: none of its missing chunks is left to pick from a peer
 * (all are requested, or orphans waiting for the origin), and either no
 * more are missing than we have peers or one of its requests is late
 * (file_endgame_cutoff). NIL otherwise.
 */
static uint32_t file_endgame_tier(const struct shoal_sched *s)
{
    uint64_t m = s->missmask & ~(1ull << TIER_NORMAL);
    if (m == 0)
        return NIL;
    uint32_t t = (uint32_t)__builtin_ctzll(m);
    if ((s->nonempty[t][0] & ~1ull) != 0)
        return NIL;
    uint64_t cut = file_endgame_cutoff(s, t);
    if (cut == UINT64_MAX)
        return t;
    for (uint32_t i = 0; i < s->nreq; i++)
        if (s->reqs[i].at < cut && s->ck[s->reqs[i].chunk].tier == t)
            return t;
    return NIL;
}

/* File endgame: the oldest (so likely slowest) outstanding request of tier
 * |t| that |slot| holds, has fewer than endgame_dups copies, is not yet
 * asked of it and was sent before file_endgame_cutoff; NIL when there is
 * none. The file the loader waits for then does not hang on one slow peer
 * while others sit idle. */
static uint32_t pick_file_endgame(struct shoal_sched *s, uint32_t slot, uint32_t t)
{
    const struct peer *p = &s->peers[slot];
    uint32_t best = NIL;
    uint64_t best_at = file_endgame_cutoff(s, t);
    for (uint32_t i = 0; i < s->nreq; i++) {
        uint32_t c = s->reqs[i].chunk;
        bool at;
        if (s->ck[c].tier != t || s->reqs[i].at >= best_at || !bit_get(p->bits, c))
            continue;
        if (req_copies(s, c, slot, &at) < s->cfg.endgame_dups && !at) {
            best = c;
            best_at = s->reqs[i].at;
        }
    }
    return best;
}

/* |slot|'s place in a walk of np slots that starts at rr. */
static inline uint32_t rot_pos(uint32_t slot, uint32_t rr, uint32_t np)
{
    return slot >= rr ? slot - rr : slot + np - rr;
}

/*
 * The slots worth asking, in the order they are asked: fastest measured
 * first, peers not measured yet before all (so they get measured); equally
 * fast ones from the rotating slot rr on. The requests in flight are
 * capped, so the order decides who gets them: an uploader that answers
 * quickly has upload to spare, and the requests that go to it instead of
 * queueing behind a crowded one are what keeps this node's download full
 * (1,000-node simulated fleet, seeds 1-6: p50/T_min 1.150 -> 1.130, last
 * 1.174 -> 1.143; the reverse order 1.40). Only the slots ready and open
 * are candidates (a full peer stays full through a call, which only adds
 * requests), and the order is found as far as it is used (order_at): the
 * cap mostly ends a call after a peer or two of a dozen candidates, and
 * sorting them all was a tenth of the simulator's instructions.
 */
struct order {
    uint32_t n, sorted;   /* candidates; [0, sorted) are in order */
    uint32_t slot[SHOAL_SCHED_PEERS_MAX];
    uint32_t pos[SHOAL_SCHED_PEERS_MAX]; /* place in a walk from rr on */
    double key[SHOAL_SCHED_PEERS_MAX];   /* throughput; INFINITY: unmeasured */
};

static void peer_order(struct shoal_sched *s, struct order *o)
{
    uint32_t np = s->cfg.max_peers, rr = s->rr;
    if (s->now >= s->thr_fresh) {
        /* Some figure may have aged out: find the new bound. */
        s->thr_fresh = UINT64_MAX;
        for (uint32_t i = 0; i < np; i++)
            if (s->thr[i] > 0 && s->thr_until[i] < s->thr_fresh)
                s->thr_fresh = s->thr_until[i];
    }
    bool fresh = s->now < s->thr_fresh;
    o->n = o->sorted = 0;
    for (uint32_t w = 0; w < 4; w++) {
        uint64_t bm = s->busym[w];
        for (uint64_t m = s->ready[w] & s->open[w]; m != 0; m &= m - 1) {
            uint32_t slot = w * 64 + (uint32_t)__builtin_ctzll(m);
            /* Only a slot in busym can be backing off (a busy answer sets
             * both, and the bit goes only once the back-off is over): the
             * others' busy_until is not loaded, a line for every few. */
            if ((bm >> (slot & 63)) & 1) {
                if (s->busy_until[slot] > s->now)
                    continue; /* backing off through the whole call */
                bm &= ~(1ull << (slot & 63));
            }
            /* A peer ranked slow gets no requests while faster ones have
             * room, so its figure would never change: once it is
             * THR_PROBE_MS old the peer counts as unmeasured and is asked
             * again, and an uploader that has emptied out is found. */
            double t = s->thr[slot];
            if (!(t > 0 && (fresh || s->now < s->thr_until[slot])))
                t = INFINITY;
            o->slot[o->n] = slot;
            o->pos[o->n] = rot_pos(slot, rr, np);
            o->key[o->n] = t;
            o->n++;
        }
        s->busym[w] = bm;
    }
}

/* The |k|th slot to ask (k < o->n): by key descending, then position from
 * rr on ascending, a total order. */
static uint32_t order_at(struct order *o, uint32_t k)
{
    while (o->sorted <= k) {
        uint32_t a = o->sorted, b = a;
        for (uint32_t i = a + 1; i < o->n; i++)
            if (o->key[i] > o->key[b] || (o->key[i] == o->key[b] && o->pos[i] < o->pos[b]))
                b = i;
        uint32_t ts = o->slot[a], tp = o->pos[a];
        double tk = o->key[a];
        o->slot[a] = o->slot[b];
        o->pos[a] = o->pos[b];
        o->key[a] = o->key[b];
        o->slot[b] = ts;
        o->pos[b] = tp;
        o->key[b] = tk;
        o->sorted++;
    }
    return o->slot[k];
}

/* Fills the pipelines of our peers in peer_order while the global cap
 * allows, each to at most |lim| requests in flight (*|capped| set when that
 * stopped one short of its depth); with |cross_only| only cross-zone peers
 * are asked (an importer's pass). Returns the new count of actions in
 * |out|. */
static size_t fill_pass(struct shoal_sched *s, uint64_t now_ms, struct shoal_sched_action *out,
                        size_t n, size_t max, bool cross_only, uint32_t lim, bool *capped,
                        struct order *o)
{
    for (uint32_t k = 0; k < o->n && n < max && room(s); k++) {
        uint32_t slot = order_at(o, k);
        struct peer *p = &s->peers[slot];
        /* An earlier pass of this call may have found nothing there. */
        if (!((s->ready[slot >> 6] >> (slot & 63)) & 1) ||
            (((s->busym[slot >> 6] >> (slot & 63)) & 1) && s->busy_until[slot] > now_ms) ||
            (cross_only && p->same_zone))
            continue;
        while (n < max && p->inflight < p->depth && p->inflight < lim && room(s)) {
            uint32_t c = NIL;
            bool dup = false, exhausted = true;
            uint32_t fe = file_endgame_tier(s);
            if (fe != NIL) {
                c = pick_file_endgame(s, slot, fe);
                dup = c != NIL;
            }
            if (c == NIL && s->n_listed > s->n_orphan)
                c = p->same_zone ? pick_same(s, p, &exhausted) : pick_cross(s, p);
            if (c == NIL && s->n_listed == 0) {
                c = pick_endgame(s, slot);
                dup = true;
            }
            if (c == NIL) {
                /* Even a partial search gives up until news arrives (a
                 * HAVE, a relisted chunk, a finished request from this
                 * peer): retrying on every call would walk the same lists
                 * again. */
                (void)exhausted;
                p->stale = true;
                peer_mark(s, slot);
                break;
            }
            if (!dup)
                list_remove(s, c);
            s->ck[c].flags |= F_REQ;
            s->reqs[s->nreq++] = (struct req){.chunk = c, .slot = slot, .at = now_ms};
            /* The time the pipeline stood empty is not the peer's. */
            if (p->inflight++ == 0) {
                s->drate[slot].mark = now_ms;
                s->drate[slot].lone_at = now_ms;
                s->drate[slot].lone_chunk = c;
            }
            peer_open(s, slot);
            out[n++] = (struct shoal_sched_action){
                .type = SHOAL_SCHED_REQUEST, .peer = p->id, .chunk = c, .count = 1};
        }
        if (p->inflight >= lim && p->inflight < p->depth)
            *capped = true;
    }
    return n;
}

/* Fills the pipelines of our peers in the order |ord| (see fill_pass). */
static size_t fill_peers(struct shoal_sched *s, uint64_t now_ms, struct shoal_sched_action *out,
                         size_t n, size_t max, bool cross_only, struct order *o)
{
    bool capped = false;
    /* While a loader waits for a file, peers get one more
     * request per pass, so the file's chunks, taken front to back, are
     * spread over every peer that holds them: its bytes come at the speed
     * of all of them, and in order, so its running sha256 keeps up. Filled
     * one peer at a time, the first peer's pipeline would take the whole
     * front of the file (or all of a small one) and the rest would go to
     * later files. */
    if ((s->missmask & ~(1ull << TIER_NORMAL)) != 0) {
        for (uint32_t lim = 1; lim <= s->cfg.max_depth && n < max && room(s); lim++) {
            capped = false;
            n = fill_pass(s, now_ms, out, n, max, cross_only, lim, &capped, o);
            if (!capped)
                break; /* no peer stopped at |lim|: another pass adds nothing */
        }
        return n;
    }
    return fill_pass(s, now_ms, out, n, max, cross_only, UINT32_MAX, &capped, o);
}

size_t shoal_sched_next(struct shoal_sched *s, uint64_t now_ms, struct shoal_sched_action *out,
                        size_t max)
{
    size_t n = 0;
    s->now = now_ms;
    if (s->t0 == 0) {
        /* The origin delay counts from the first call: the caller's clock
         * may start anywhere. */
        s->t0 = now_ms + 1;
        if (s->lease_retry_at < now_ms + s->cfg.origin_delay_ms)
            s->lease_retry_at = now_ms + s->cfg.origin_delay_ms;
        s->small_xfer = s->nchunks - s->nhave <= SMALL_XFER;
    }
    while (n < max && s->pendhead < s->npend)
        out[n++] = s->pend[s->pendhead++];
    if (s->pendhead == s->npend)
        s->pendhead = s->npend = 0;
    cross_poll(s, now_ms);
    if (s->fb_hold != 0 && now_ms >= s->fb_hold) {
        /* Cross-zone peers held back may pick again. */
        s->fb_hold = 0;
        clear_stale(s, true);
    }
    if (s->nhave == s->nchunks || n == max)
        goto out;

    /* A held endgame copy is due: the peers that found nothing then
     * look again. */
    if (s->eg_wake != 0 && now_ms >= s->eg_wake) {
        s->eg_wake = 0;
        clear_stale(s, false);
    }
    /* A file entering its own endgame gives peers that found nothing
     * before something to do: duplicates of its outstanding requests. */
    uint32_t fe = file_endgame_tier(s);
    if (fe != s->fe_last) {
        s->fe_last = fe;
        if (fe != NIL)
            clear_stale(s, false);
    }
    bool endgame = s->n_listed == 0 || fe != NIL;
    bool pickable = s->n_listed > s->n_orphan;
    if ((pickable || endgame) && room(s)) {
        /* Throughputs do not change within a call: one order serves
         * every pass. */
        struct order o;
        peer_order(s, &o);
        /* An importer serves its whole zone: its cross-zone picks go
         * before its own same-zone ones. */
        if (s->cfg.import_mod > 0 && pickable && s->nxok > 0)
            n = fill_peers(s, now_ms, out, n, max, true, &o);
        n = fill_peers(s, now_ms, out, n, max, false, &o);
        s->rr = (s->rr + 1) % s->cfg.max_peers;
    }

    if (n < max && s->n_orphan > 0 && !s->lease_pending && now_ms >= s->lease_retry_at) {
        uint32_t held = 0, hint = 0, tier = TIER_NORMAL;
        for (uint32_t i = 0; i < s->lease_slots; i++)
            held += s->leases[i].used;
        /* A busy fetcher holds max_leases: it looks no further (64 tiers,
         * a line each) unless a loader waits for files (tier 0 is one). */
        bool look = held < s->cfg.max_leases ||
                    (held < s->cfg.max_leases + LOADER_EXTRA_LEASES && s->tier_lo[0] != NIL);
        for (uint32_t t = 0; look && t < NTIERS; t++)
            if (s->heads[(size_t)t * s->nb] != NIL) {
                hint = s->heads[(size_t)t * s->nb];
                tier = t;
                break;
            }
        /* The hint is the first orphan of the loader's most urgent file
         * with one (in chunk order); such a file may ask beyond max_leases. */
        uint32_t cap = s->cfg.max_leases + (tier != TIER_NORMAL ? LOADER_EXTRA_LEASES : 0);
        if (held < cap) {
            s->lease_extra = held >= s->cfg.max_leases;
            s->lease_pending = true;
            out[n++] = (struct shoal_sched_action){
                .type = SHOAL_SCHED_LEASE_REQUEST, .chunk = hint, .count = s->cfg.lease_chunks};
        }
    }
out:
    return n;
}

uint64_t shoal_sched_wakeup(const struct shoal_sched *s)
{
    uint64_t w = UINT64_MAX;
    if (s->nhave == s->nchunks)
        return w;
    if (s->xqn > 0)
        w = s->xq_at;
    if (s->fb_hold != 0 && s->nxok > 0 && s->fb_hold < w)
        w = s->fb_hold;
    if (s->n_orphan > 0 && !s->lease_pending && s->lease_retry_at > s->now &&
        s->lease_retry_at < w)
        w = s->lease_retry_at;
    if (s->eg_wake != 0 && s->eg_wake < w)
        w = s->eg_wake;
    /* Only a peer worth asking makes waking up for its back-off useful. */
    for (uint32_t k = 0; k < (s->cfg.max_peers + 63) / 64; k++)
        for (uint64_t m = s->ready[k] & s->busym[k]; m != 0; m &= m - 1) {
            uint64_t b = s->busy_until[k * 64 + (uint32_t)__builtin_ctzll(m)];
            if (b > s->now && b < w)
                w = b;
        }
    return w;
}

/* ---- state ---- */

bool shoal_sched_have(const struct shoal_sched *s, uint32_t chunk)
{
    return chunk < s->nchunks && (s->ck[chunk].flags & F_HAVE);
}

uint32_t shoal_sched_have_count(const struct shoal_sched *s) { return s->nhave; }

bool shoal_sched_complete(const struct shoal_sched *s) { return s->nhave == s->nchunks; }

bool shoal_sched_wants(const struct shoal_sched *s, uint32_t chunk)
{
    return chunk < s->nchunks && (s->ck[chunk].flags & F_LISTED);
}

void shoal_sched_bitfield(const struct shoal_sched *s, uint8_t *bits)
{
    memset(bits, 0, s->nbytes_bits);
    for (uint32_t c = 0; c < s->nchunks; c++)
        if (s->ck[c].flags & F_HAVE)
            bit_set(bits, c);
}

uint32_t shoal_sched_inflight(const struct shoal_sched *s) { return s->nreq; }

bool shoal_sched_has_room(const struct shoal_sched *s) { return room(s); }

bool shoal_sched_starved(const struct shoal_sched *s, uint64_t now_ms, uint64_t for_ms)
{
    uint64_t since;

    if (s->t0 == 0 || s->nhave == s->nchunks || s->nreq > 0)
        return false;
    since = s->peer_chunk_ms > s->t0 - 1 ? s->peer_chunk_ms : s->t0 - 1;
    return now_ms >= since && now_ms - since >= for_ms;
}
