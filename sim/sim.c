/* SPDX-License-Identifier: MIT */
/*
 * The simulation engine (see sim.h for the model). Two heaps ordered by
 * (time, sequence number), so equal times replay in the same order: one of
 * events (requests arriving, wake-ups, joins, failures, announces), and one
 * of active flows by completion time, indexed by connection so that a
 * change of rate moves the flow in place.
 *
 * Each node owns a scheduler instance; the engine turns its actions into
 * queued transfers, and delivers outcomes back as scheduler events. Peer
 * lists and origin leases come from one tracker registry, which nodes
 * "announce" to as the daemon would (at join, at the first chunk, at
 * completion and every announce interval). The work per transfer is kept
 * near constant: a HAVE goes straight to the peer's scheduler slot and is
 * not sent to peers that hold the chunk, a peer's scheduler runs only when
 * the HAVE can become a request, and a flow that starts or stops re-rates
 * only the flows of its two links.
 */
#include "sim.h"

#include <errno.h>
#include <math.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "manifest.h"
#include "msg.h"
#include "registry.h"
#include "sched.h"

#define NIL UINT32_MAX
#define ACT_BATCH 64

enum ev_kind { EV_FLOW, EV_REQ, EV_WAKE, EV_JOIN, EV_FAIL, EV_ANNOUNCE, EV_REFRESH, EV_EXPIRE,
               EV_FORGET };

struct ev {
    double t;
    uint64_t seq;
    uint32_t kind;
    uint32_t a;
    uint32_t b;
};

/* Events a fixed delay after they are scheduled (requests on their way to
 * a peer or the origin): one FIFO per distinct delay, whose times never
 * decrease, so these need no heap. Ordered with the heap's events by the
 * same (time, sequence) key, they replay in exactly the same order. */
#define NDELAY 4

struct evq {
    double d;
    struct ev *v;
    size_t head, n, cap;
};

struct qent {
    uint32_t chunk;
    double t_req;
};

#define QIN 2u /* queue entries held in the conn record itself */

/* One direction of a connection: src uploads to dst. Line-aligned, with
 * what re-rating reads and writes (fill, set_rate, settle, the flow heap)
 * in its first line: a re-rate visits every flow of the links it fills,
 * and with the record over two lines each cost two misses in a large
 * fleet. The queue is on the second line. */
struct conn {
    alignas(64) uint32_t src;
    uint32_t dst;
    uint32_t cur;          /* chunk on the wire, NIL when idle */
    bool active;
    bool dead;
    uint8_t kind;          /* its bytes' source in the rate bins: 0 origin,
                              1 same zone, 2 cross zone (settle reads it) */
    double rate;
    double remaining;      /* bytes of |cur| still to send */
    double last;           /* time |remaining| was last settled */
    double t_end;          /* when |cur| completes at |rate| */
    uint64_t fseq;         /* tie-break among equal t_end, as for events */
    uint32_t up_i, down_i;
    /* second line: the queue of requests, a ring of qcap entries (a power
     * of two) in qin while they fit, else in q. Most queues hold one or
     * two: the next chunk to send is then on the line prefetch_conn asks
     * for, where a queue of its own was one more miss, after this line's,
     * on every chunk a flow starts (conn_advance). */
    struct qent *q;        /* NULL while the ring is qin */
    uint32_t qh, qn, qcap;
    uint32_t zz_i;
    double t_req_cur;
    struct qent qin[QIN];
};

_Static_assert(offsetof(struct conn, down_i) + sizeof(uint32_t) <= 64,
               "re-rating reads a conn's first line");
_Static_assert(sizeof(struct conn) == 128, "a conn is two lines");

struct vec {
    uint32_t *v;
    uint32_t n, cap;
};

/* A node's links (the origin's upload is the last entry): capacity and
 * what its active flows have been given, bytes/s. Dense, apart from the
 * node records: filling a link reads the other end of each of its flows,
 * and in an array of 32-byte entries those reads mostly hit the cache
 * where a node record each was a miss in a large fleet. */
struct link {
    double up, down;
    double used_up, used_down;
};

/* Bytes a node received by source and uploaded (shoal_sim_node's). */
struct acc {
    uint64_t from_origin, from_zone, from_cross, uploaded;
};

/* Bytes on the wire beyond the useful ones (duplicates, partial
 * transfers), received across zones and uploaded: apart from acc, which
 * every transfer touches, as these are rare. */
struct extra {
    uint64_t cross, up;
};

struct node {
    struct shoal_sched *s;
    uint8_t *have;
    uint32_t *peer;        /* peer node indices */
    uint32_t *cin;         /* conn peer -> this node, per peer */
    uint8_t *rslot;        /* our slot in each peer's scheduler */
    /* Per peer, its scheduler: the HAVE fan-out reads it without touching
     * the peer's node record. */
    struct shoal_sched **psched;
    uint32_t npeers;
    uint32_t oconn;        /* conn origin -> this node */
    uint32_t role;         /* shoal_sched_role_key() of the role in effect */
    struct vec up, down;
    uint64_t wake_ms;
    double found_s;        /* when it joined or last found a new peer */
    double announce_s;     /* when its next periodic announce is due */
    uint8_t zone;
    bool alive, joined, done, dirty, seed, gone;
};

struct sim {
    const struct shoal_sim_config *c;
    struct shoal_sched_config sbase; /* a node's knobs before its role */
    uint32_t n;            /* nodes; index n is the origin */
    uint32_t nchunks;
    uint32_t *size;
    uint64_t F;
    uint32_t nfiles;
    uint32_t *file_first;
    struct node *node;
    struct link *lk;       /* per node, and the origin's at index n */
    uint32_t *nhave;       /* per node: chunks held (dense, for upload_busy) */
    uint8_t *zone;         /* per node: its zone (dense: every transfer and
                              request compares two nodes' zones) */
    struct acc *acc;       /* per node: bytes by source, copied to the
                              result at the end (dense, like the others) */
    struct extra *extra;   /* per node: wire bytes beyond acc's */
    struct vec origin_up;
    struct conn *conn;
    uint32_t nconn, conncap;
    struct vec *zz;        /* active cross-zone conns per ordered zone pair */
    double *zzused;        /* per pair: bytes/s allocated to its flows */
    struct ev *heap;
    size_t nheap, heapcap;
    struct evq dq[NDELAY];
    uint32_t ndq;
    size_t ndqev;          /* events in all of dq */
    struct fhent *fh;      /* flow heap: active conns by (t_end, fseq) */
    uint32_t *hpos;        /* per conn: index in fh, NIL when not in it */
    uint32_t *cdst;        /* per conn: its dst (dense: upload_busy reads it
                              for each of an uploader's flows, and a conn
                              record each was a miss in a large fleet) */
    uint32_t nfh;
    struct capent *caps;   /* scratch for fill() */
    uint32_t capn;
    uint64_t seq;
    double now;
    struct shoal_reg *reg;
    uint32_t reg_interval_ms; /* the registry's announce interval */
    uint8_t mid[32];
    uint32_t *dirty;
    uint32_t ndirty;
    uint32_t alive_incomplete;
    uint32_t fails_pending;
    uint8_t *victim;         /* per node: picked to fail at fail_at */
    uint32_t joins_pending;  /* nodes still to join: a run is not over before */
    uint64_t rng;
    struct shoal_sim_result *r;
    uint8_t *bitbuf;
    /* Who holds each chunk: row c (hrow bytes) has bit x set once node x
     * holds chunk c. The transpose of the nodes' have-sets, for the HAVE
     * fan-out: which of a node's peers lack a chunk is one or two lines
     * of one row (1,000 nodes) instead of one line of each peer's set. */
    uint8_t *hold;
    size_t hrow;
    /* Node x's bit in a row: the nodes of a zone are numbered one after
     * the other there (they are dealt out to zones in turn), so a node's
     * peers, mostly of its own zone, sit in a quarter of the row (4 zones):
     * at 10,000 nodes the fan-out reads ~5 of a row's 20 lines, not all. */
    uint32_t *hbit;
    uint32_t zfirst[SHOAL_SIM_ZONES_MAX], zlen[SHOAL_SIM_ZONES_MAX]; /* per zone: first bit, nodes */
    /* Every node's have-set, hstride bytes apart: the next flow event's
     * line of it is found (and asked for) without its node record. */
    uint8_t *haves;
    size_t hstride;
    struct shoal_reg_peer *plist;
    struct shoal_sim_progress prog; /* when c->progress */
    /* The rate bin settle() last added to, [bin_lo, bin_hi) in time: a
     * flow settled within it needs no division (bin_spread). */
    uint32_t bin_cur;
    double bin_lo, bin_hi;
};

/* ---- small utilities ---- */

static uint64_t rnd(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rnd01(uint64_t *x) { return (double)(rnd(x) >> 11) / 9007199254740992.0; }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int vec_push(struct vec *v, uint32_t x)
{
    if (v->n == v->cap) {
        uint32_t ncap = v->cap ? v->cap * 2 : 8;
        uint32_t *p = realloc(v->v, ncap * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        v->v = p;
        v->cap = ncap;
    }
    v->v[v->n++] = x;
    return 0;
}

static void node_pk(uint32_t i, uint8_t pk[32])
{
    memset(pk, 0, 32);
    memcpy(pk, &i, sizeof(i));
    pk[31] = 0x5a;
}

static uint32_t pk_node(const uint8_t pk[32])
{
    uint32_t i;
    memcpy(&i, pk, sizeof(i));
    return i;
}

/* Scheduler time: whole milliseconds. The nudge makes a time computed as
 * w / 1000.0 map back to w despite rounding. */
static uint64_t ms(double t) { return (uint64_t)(t * 1000.0 + 1e-6); }

/* ---- event heap ---- */

static bool ev_less(const struct ev *a, const struct ev *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static int ev_push(struct sim *S, double t, uint32_t kind, uint32_t a, uint32_t b)
{
    if (S->nheap == S->heapcap) {
        size_t ncap = S->heapcap ? S->heapcap * 2 : 1024;
        struct ev *p = realloc(S->heap, ncap * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        S->heap = p;
        S->heapcap = ncap;
    }
    struct ev e = {.t = t, .seq = S->seq++, .kind = kind, .a = a, .b = b};
    size_t i = S->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ev_less(&e, &S->heap[p]))
            break;
        S->heap[i] = S->heap[p];
        i = p;
    }
    S->heap[i] = e;
    return 0;
}

/* Schedules an event |d| seconds from now. */
static int ev_after(struct sim *S, double d, uint32_t kind, uint32_t a, uint32_t b)
{
    struct evq *q = NULL;
    for (uint32_t i = 0; i < S->ndq; i++)
        if (S->dq[i].d == d)
            q = &S->dq[i];
    if (q == NULL) {
        if (S->ndq == NDELAY)
            return ev_push(S, S->now + d, kind, a, b);
        q = &S->dq[S->ndq++];
        q->d = d;
    }
    if (q->n == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 1024;
        struct ev *v = malloc(ncap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        for (size_t i = 0; i < q->n; i++)
            v[i] = q->v[(q->head + i) % q->cap];
        free(q->v);
        q->v = v;
        q->cap = ncap;
        q->head = 0;
    }
    q->v[(q->head + q->n) % q->cap] =
        (struct ev){.t = S->now + d, .seq = S->seq++, .kind = kind, .a = a, .b = b};
    q->n++;
    S->ndqev++;
    return 0;
}

static struct ev ev_pop(struct sim *S)
{
    struct ev top = S->heap[0];
    struct ev last = S->heap[--S->nheap];
    size_t i = 0, n = S->nheap;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        size_t m = (l + 1 < n && ev_less(&S->heap[l + 1], &S->heap[l])) ? l + 1 : l;
        if (!ev_less(&S->heap[m], &last))
            break;
        S->heap[i] = S->heap[m];
        i = m;
    }
    if (n > 0)
        S->heap[i] = last;
    return top;
}

/* ---- flow heap ----
 * Active flows live in a heap of their own, indexed by conn, so that a
 * change of rate moves the flow in place instead of leaving a stale event
 * behind: most rate changes happen to flows that are still running. The
 * heap holds the keys itself and the positions live in an array of their
 * own: a sift compares and moves entries without touching the (large,
 * cold) conn records. It is 4-ary: half the levels of a binary heap, each
 * a dependent step that misses in a large fleet, for siblings that share
 * a line or two. (Keys are a total order, so the order of pops, hence the
 * run, does not depend on the heap's shape.) */
#define FH_D 4u

struct fhent {
    double t;              /* the conn's t_end ... */
    uint64_t seq;          /* ... and fseq when it was last set */
    uint32_t id;
};


static bool fh_less(const struct fhent *a, const struct fhent *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void fh_place(struct sim *S, uint32_t i, struct fhent e)
{
    S->fh[i] = e;
    S->hpos[e.id] = i;
}

static void fh_up(struct sim *S, uint32_t i)
{
    struct fhent e = S->fh[i];
    while (i > 0) {
        uint32_t p = (i - 1) / FH_D;
        if (!fh_less(&e, &S->fh[p]))
            break;
        fh_place(S, i, S->fh[p]);
        i = p;
    }
    fh_place(S, i, e);
}

static void fh_down(struct sim *S, uint32_t i)
{
    struct fhent e = S->fh[i];
    uint32_t n = S->nfh;
    for (;;) {
        uint32_t l = FH_D * i + 1;
        if (l >= n)
            break;
        uint32_t m = l, end = n - l < FH_D ? n : l + FH_D;
        for (uint32_t k = l + 1; k < end; k++)
            if (fh_less(&S->fh[k], &S->fh[m]))
                m = k;
        if (!fh_less(&S->fh[m], &e))
            break;
        fh_place(S, i, S->fh[m]);
        i = m;
    }
    fh_place(S, i, e);
}

/* Inserts |id| or moves it after its t_end changed. The heap has room for
 * every conn (see new_conn). */
static void fh_set(struct sim *S, uint32_t id)
{
    const struct conn *cn = &S->conn[id];
    struct fhent e = {.t = cn->t_end, .seq = cn->fseq, .id = id};
    uint32_t i = S->hpos[id];
    if (i == NIL) {
        i = S->nfh++;
        fh_place(S, i, e);
        fh_up(S, i);
        return;
    }
    S->fh[i] = e;
    if (i > 0 && fh_less(&e, &S->fh[(i - 1) / FH_D]))
        fh_up(S, i);
    else
        fh_down(S, i);
}

static void fh_del(struct sim *S, uint32_t id)
{
    uint32_t i = S->hpos[id];
    if (i == NIL)
        return;
    S->hpos[id] = NIL;
    struct fhent last = S->fh[--S->nfh];
    if (i == S->nfh)
        return;
    fh_place(S, i, last);
    if (i > 0 && fh_less(&last, &S->fh[(i - 1) / FH_D]))
        fh_up(S, i);
    else
        fh_down(S, i);
}

/* ---- flows ---- */

static double link_up(const struct sim *S, uint32_t x) { return S->lk[x].up; }

static struct vec *up_list(struct sim *S, uint32_t x)
{
    return x == S->n ? &S->origin_up : &S->node[x].up;
}

static uint32_t zz_of(const struct sim *S, const struct conn *cn)
{
    if (S->c->zone_cap <= 0 || cn->src == S->n)
        return NIL;
    uint32_t zs = S->zone[cn->src], zd = S->zone[cn->dst];
    return zs == zd ? NIL : zs * S->c->zones + zd;
}

static double *used_up(struct sim *S, uint32_t x) { return &S->lk[x].used_up; }

static double res_up(struct sim *S, uint32_t x)
{
    double r = link_up(S, x) - *used_up(S, x);
    return r > 0 ? r : 0;
}

static double res_down(struct sim *S, uint32_t y)
{
    double r = S->lk[y].down - S->lk[y].used_down;
    return r > 0 ? r : 0;
}

/* What zone pair |z| has left (zone_cap set). */
static double res_zz(const struct sim *S, uint32_t z)
{
    double r = S->c->zone_cap - S->zzused[z];
    return r > 0 ? r : 0;
}

static void bin_spread(struct sim *S, uint32_t kind, double t0, double t1, double bytes);

/* Brings |cn|'s remaining bytes to now, and puts what it sent since it
 * was last settled, at the one rate it had, in the rate bins: in the bin
 * last added to when it ran within that bin (most do), else bin_spread. */
static inline __attribute__((always_inline)) void settle(struct sim *S, struct conn *cn)
{
    if (cn->rate > 0) {
        double sent = cn->rate * (S->now - cn->last);
        if (sent > cn->remaining)
            sent = cn->remaining;
        cn->remaining -= sent;
        if (cn->last >= S->bin_lo && S->now < S->bin_hi)
            S->r->bins[S->bin_cur][cn->kind] += sent;
        else
            bin_spread(S, cn->kind, cn->last, S->now, sent);
    }
    cn->last = S->now;
}

/* Re-times |id|'s completion from its rate and remaining bytes. */
static void fh_retime(struct sim *S, uint32_t id)
{
    struct conn *cn = &S->conn[id];
    cn->t_end = cn->rate > 0 ? S->now + cn->remaining / cn->rate : INFINITY;
    cn->fseq = S->seq++;
    fh_set(S, id);
}

/* Gives |id| rate |r| from now on and re-times its completion. */
static void set_rate(struct sim *S, uint32_t id, double r)
{
    struct conn *cn = &S->conn[id];
    settle(S, cn);
    *used_up(S, cn->src) += r - cn->rate;
    S->lk[cn->dst].used_down += r - cn->rate;
    uint32_t z = zz_of(S, cn);
    if (z != NIL)
        S->zzused[z] += r - cn->rate;
    cn->rate = r;
    fh_retime(S, id);
}

struct capent {
    double cap;
    uint32_t id;
};

static int cmp_cap(const void *a, const void *b)
{
    const struct capent *x = a, *y = b;
    if (x->cap != y->cap)
        return x->cap < y->cap ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Sorts |k| entries of |ce| by cap (ties by id, for determinism). */
static void sort_caps(struct capent *ce, uint32_t k)
{
    if (k <= 16) {
        for (uint32_t i = 1; i < k; i++) {
            struct capent t = ce[i];
            uint32_t j = i;
            while (j > 0 && cmp_cap(&ce[j - 1], &t) > 0) {
                ce[j] = ce[j - 1];
                j--;
            }
            ce[j] = t;
        }
    } else {
        qsort(ce, k, sizeof(*ce), cmp_cap);
    }
}

static int caps_room(struct sim *S, uint32_t k)
{
    if (k > S->capn) {
        struct capent *p = realloc(S->caps, k * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        S->caps = p;
        S->capn = k;
    }
    return 0;
}

/*
 * Progressive filling of one link: |x|'s upload (|up|) or download. Each
 * of its flows may grow up to what its other end has left (plus what it
 * already has there, and what its zone pair has left); the link's capacity
 * is poured over the flows, the smallest caps filled first, so bandwidth
 * one flow cannot use goes to the others instead of idling. Only this
 * link's flows are re-rated: the other ends catch up at their own next
 * change, and no link is ever given more than its capacity.
 */
static int fill(struct sim *S, uint32_t x, bool up)
{
    const struct vec *v = up ? up_list(S, x) : &S->node[x].down;
    double rem = up ? link_up(S, x) : S->lk[x].down;
    uint32_t k = v->n;
    if (k == 0)
        return 0;
    if (caps_room(S, k) != 0)
        return -ENOMEM;
    struct capent *ce = S->caps;
    for (uint32_t i = 0; i < k; i++) {
        const struct conn *cn = &S->conn[v->v[i]];
        double cap = cn->rate + (up ? res_down(S, cn->dst) : res_up(S, cn->src));
        uint32_t z = zz_of(S, cn);
        if (z != NIL && cn->rate + res_zz(S, z) < cap)
            cap = cn->rate + res_zz(S, z);
        ce[i] = (struct capent){.cap = cap, .id = v->v[i]};
    }
    sort_caps(ce, k);
    for (uint32_t i = 0; i < k; i++) {
        double lvl = rem / (double)(k - i);
        double r = ce[i].cap < lvl ? ce[i].cap : lvl;
        const struct conn *cn = &S->conn[ce[i].id];
        uint32_t z = zz_of(S, cn);
        /* Several of this link's flows may cross the same zone pair:
         * what the pair has left is read as it is now, not as it was. */
        if (z != NIL && cn->rate + res_zz(S, z) < r)
            r = cn->rate + res_zz(S, z);
        rem -= r;
        if (rem < 0)
            rem = 0;
        if (r != S->conn[ce[i].id].rate)
            set_rate(S, ce[i].id, r);
    }
    return 0;
}

/*
 * Progressive filling of zone pair |z| (zone_cap set): its capacity is
 * poured over all its flows, each capped by what its upload and download
 * links have left, smallest caps first. The pair is a link like the
 * others, shared by every flow crossing it: when a flow joins or leaves
 * it, every flow's share changes. (Before, each flow was capped by
 * zone_cap / flows when one of its own links changed, so flows that had
 * started when the pair was emptier kept their larger shares: the pair
 * carried up to 1.58 x its cap, and a share freed went unused.)
 */
static int fill_zz(struct sim *S, uint32_t z)
{
    const struct vec *v = &S->zz[z];
    double rem = S->c->zone_cap;
    uint32_t k = v->n;
    if (k == 0)
        return 0;
    if (caps_room(S, k) != 0)
        return -ENOMEM;
    struct capent *ce = S->caps;
    for (uint32_t i = 0; i < k; i++) {
        const struct conn *cn = &S->conn[v->v[i]];
        double ru = res_up(S, cn->src), rd = res_down(S, cn->dst);
        ce[i] = (struct capent){.cap = cn->rate + (ru < rd ? ru : rd), .id = v->v[i]};
    }
    sort_caps(ce, k);
    for (uint32_t i = 0; i < k; i++) {
        double lvl = rem / (double)(k - i);
        double r = ce[i].cap < lvl ? ce[i].cap : lvl;
        const struct conn *cn = &S->conn[ce[i].id];
        /* Two of the pair's flows may share an uploader or a downloader:
         * read what each link has left now. */
        double ru = res_up(S, cn->src), rd = res_down(S, cn->dst);
        double room = cn->rate + (ru < rd ? ru : rd);
        if (room < r)
            r = room;
        rem -= r;
        if (rem < 0)
            rem = 0;
        if (r != cn->rate)
            set_rate(S, ce[i].id, r);
    }
    return 0;
}

/* Re-allocates both links of |cn| after its flow started or stopped, and
 * its zone pair if it crosses a capped one. */
static int refill(struct sim *S, const struct conn *cn)
{
    uint32_t src = cn->src, dst = cn->dst;
    uint32_t z = zz_of(S, cn);
    int rv = fill(S, src, true);
    if (rv == 0)
        rv = fill(S, dst, false);
    if (rv == 0 && z != NIL)
        rv = fill_zz(S, z);
    /* The download may have given the new flow less than the upload
     * offered: offer the rest to the upload's other flows. */
    if (rv == 0)
        rv = fill(S, src, true);
    return rv;
}

static void vec_del(struct sim *S, struct vec *v, uint32_t i, int which)
{
    uint32_t moved = v->v[--v->n];
    if (i < v->n) {
        v->v[i] = moved;
        struct conn *m = &S->conn[moved];
        if (which == 0)
            m->up_i = i;
        else if (which == 1)
            m->down_i = i;
        else
            m->zz_i = i;
    }
}

static int activate(struct sim *S, uint32_t id)
{
    struct conn *cn = &S->conn[id];
    struct vec *u = up_list(S, cn->src), *d = &S->node[cn->dst].down;
    int rv = vec_push(u, id);
    if (rv == 0 && (rv = vec_push(d, id)) != 0)
        u->n--;
    if (rv != 0)
        return rv;
    cn->up_i = u->n - 1;
    cn->down_i = d->n - 1;
    uint32_t z = zz_of(S, cn);
    if (z != NIL) {
        if ((rv = vec_push(&S->zz[z], id)) != 0)
            return rv;
        cn->zz_i = S->zz[z].n - 1;
    }
    cn->active = true;
    cn->rate = 0;
    cn->last = S->now;
    fh_retime(S, id);
    return refill(S, cn);
}

static int deactivate(struct sim *S, uint32_t id)
{
    struct conn *cn = &S->conn[id];
    vec_del(S, up_list(S, cn->src), cn->up_i, 0);
    vec_del(S, &S->node[cn->dst].down, cn->down_i, 1);
    uint32_t z = zz_of(S, cn);
    if (z != NIL) {
        vec_del(S, &S->zz[z], cn->zz_i, 2);
        /* Exactly nothing once empty, so rounding cannot pile up. */
        S->zzused[z] = S->zz[z].n ? S->zzused[z] - cn->rate : 0;
    }
    cn->active = false;
    cn->cur = NIL;
    fh_del(S, id);
    *used_up(S, cn->src) -= cn->rate;
    S->lk[cn->dst].used_down -= cn->rate;
    cn->rate = 0;
    return refill(S, cn);
}

/* |x|'s scheduler runs once this event is handled: its state loads
 * meanwhile. With |warm| the caller has just called into it, so its first
 * lines are cached and the lines behind them can be asked for too. */
static void mark_dirty_as(struct sim *S, uint32_t x, bool warm)
{
    struct node *nd = &S->node[x];
    if (nd->dirty || !nd->alive)
        return;
    nd->dirty = true;
    S->dirty[S->ndirty++] = x;
    if (warm)
        shoal_sched_prefetch_deep(nd->s);
    else
        shoal_sched_prefetch(nd->s);
}

static void mark_dirty(struct sim *S, uint32_t x) { mark_dirty_as(S, x, false); }

static struct qent *qbuf(struct conn *cn) { return cn->q != NULL ? cn->q : cn->qin; }

/* Starts the next queued chunk on |id|, or idles it. */
static int conn_advance(struct sim *S, uint32_t id)
{
    struct conn *cn = &S->conn[id];
    struct node *d = &S->node[cn->dst];
    while (cn->qn > 0) {
        struct qent e = qbuf(cn)[cn->qh];
        cn->qh = (cn->qh + 1) & (cn->qcap - 1);
        cn->qn--;
        if (d->have[e.chunk >> 3] & (1u << (e.chunk & 7))) {
            /* The CANCEL (or the chunk from elsewhere) beat the upload. */
            if (cn->src == S->n) {
                (void)shoal_sched_origin_done(d->s, ms(S->now), e.chunk, true);
                mark_dirty(S, cn->dst);
            }
            continue;
        }
        cn->cur = e.chunk;
        cn->t_req_cur = e.t_req;
        cn->remaining = S->size[e.chunk];
        cn->last = S->now;
        if (!cn->active)
            return activate(S, id);
        /* Same flow, next chunk: the allocation stands. */
        fh_retime(S, id);
        return 0;
    }
    if (cn->active)
        return deactivate(S, id);
    return 0;
}

/* Whether uploader cn->src answers cn->dst busy (shoal_sched_upload_busy,
 * as a daemon's serve path decides it). A daemon knows its peers' counts
 * from their HAVEs; the simulator does not deliver a HAVE to a node that
 * holds the chunk (see deliver), so the counts come from the nodes
 * themselves. Cheap while slots are free. */
static bool upload_busy(struct sim *S, const struct conn *cn)
{
    const struct node *u = &S->node[cn->src];
    uint32_t slots = S->c->upload_slots, least = UINT32_MAX;
    if (!shoal_sched_upload_busy(u->up.n, slots, false))
        return false;
    for (uint32_t i = 0; i < u->up.n; i++) {
        uint32_t h = S->nhave[S->cdst[u->up.v[i]]];
        least = h < least ? h : least;
    }
    return shoal_sched_upload_busy(u->up.n, slots, S->nhave[cn->dst] < least);
}

static int conn_enqueue(struct sim *S, uint32_t id, uint32_t chunk, double t_req)
{
    struct conn *cn = &S->conn[id];
    if (cn->dead)
        return 0;
    if (!cn->active && cn->src != S->n && upload_busy(S, cn)) {
        /* Every upload slot is taken: the uploader answers busy, as a
         * daemon does, and the requester looks elsewhere for a while. A
         * node holding a fresh chunk thus feeds a few peers at full speed,
         * and the others fetch it from them. */
        S->r->busy++;
        (void)shoal_sched_req_failed(S->node[cn->dst].s, ms(S->now), cn->src, chunk, true);
        mark_dirty(S, cn->dst);
        return 0;
    }
    if (cn->qn == cn->qcap) {
        uint32_t ncap = cn->qcap * 2;
        struct qent *q = malloc(ncap * sizeof(*q));
        if (q == NULL)
            return -ENOMEM;
        const struct qent *o = qbuf(cn);
        for (uint32_t i = 0; i < cn->qn; i++)
            q[i] = o[(cn->qh + i) & (cn->qcap - 1)];
        free(cn->q);
        cn->q = q;
        cn->qcap = ncap;
        cn->qh = 0;
    }
    qbuf(cn)[(cn->qh + cn->qn) & (cn->qcap - 1)] = (struct qent){.chunk = chunk, .t_req = t_req};
    cn->qn++;
    if (!cn->active)
        return conn_advance(S, id);
    return 0;
}

static int new_conn(struct sim *S, uint32_t src, uint32_t dst, uint32_t *out)
{
    if (S->nconn == S->conncap) {
        uint32_t ncap = S->conncap ? S->conncap * 2 : 1024;
        struct conn *p = aligned_alloc(alignof(struct conn), ncap * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        if (S->nconn > 0)
            memcpy(p, S->conn, S->nconn * sizeof(*p));
        free(S->conn);
        S->conn = p;
        S->conncap = ncap;
        struct fhent *h = realloc(S->fh, ncap * sizeof(*h));
        if (h == NULL)
            return -ENOMEM;
        S->fh = h;
        uint32_t *hp = realloc(S->hpos, ncap * sizeof(*hp));
        if (hp == NULL)
            return -ENOMEM;
        S->hpos = hp;
        uint32_t *cd = realloc(S->cdst, ncap * sizeof(*cd));
        if (cd == NULL)
            return -ENOMEM;
        S->cdst = cd;
    }
    uint8_t kind = src == S->n ? 0 : S->zone[src] == S->zone[dst] ? 1 : 2;
    S->conn[S->nconn] = (struct conn){.src = src, .dst = dst, .cur = NIL, .kind = kind, .qcap = QIN};
    S->hpos[S->nconn] = NIL;
    S->cdst[S->nconn] = dst;
    *out = S->nconn++;
    return 0;
}

/* ---- bookkeeping ---- */

/* Makes the rate bins reach time |t| and returns its bin. The run may go
 * on for any multiple of the bins' span: they are merged in pairs
 * (doubling their width, so earlier bins keep their edges) until |t|
 * falls in one. Time only moves forward: the bins in use end with |t|'s. */
static uint32_t bins_cover(struct shoal_sim_result *r, double t)
{
    while (t >= r->bin_s * SHOAL_SIM_BINS) {
        for (uint32_t i = 0; i < SHOAL_SIM_BINS / 2; i++)
            for (int k = 0; k < 3; k++)
                r->bins[i][k] = r->bins[2 * i][k] + r->bins[2 * i + 1][k];
        memset(r->bins + SHOAL_SIM_BINS / 2, 0, SHOAL_SIM_BINS / 2 * sizeof(*r->bins));
        r->bin_s *= 2;
        r->nbins = (r->nbins + 1) / 2;
    }
    uint32_t bin = (uint32_t)(t / r->bin_s);
    if (bin >= SHOAL_SIM_BINS)
        bin = SHOAL_SIM_BINS - 1; /* rounding at the very edge */
    if (bin >= r->nbins)
        r->nbins = bin + 1;
    return bin;
}

/*
 * Adds |bytes| sent at one rate over [t0, t1] to the rate bins of source
 * |kind|, spread over the bins that span covers: a chunk's bytes go where
 * they moved, not all where it completed (that put 5 GB/s across two zone
 * pairs capped at 0.25 GB/s, and 2.2 GB/s out of a 1.25 GB/s origin). A
 * flow's rate only changes when it is settled, so the bins are exact.
 */
static __attribute__((noinline)) void bin_spread(struct sim *S, uint32_t kind, double t0,
                                                  double t1, double bytes)
{
    struct shoal_sim_result *r = S->r;
    uint32_t b1 = bins_cover(r, t1), b0 = (uint32_t)(t0 / r->bin_s);
    S->bin_cur = b1;
    S->bin_lo = b1 * r->bin_s;
    S->bin_hi = (b1 + 1) * r->bin_s;
    if (b0 >= b1 || !(t1 > t0)) {
        r->bins[b1][kind] += bytes;
        return;
    }
    double rate = bytes / (t1 - t0), left = bytes;
    for (uint32_t b = b0; b < b1; b++) {
        double part = rate * ((b + 1) * r->bin_s - (b == b0 ? t0 : b * r->bin_s));
        part = part < left ? part : left;
        r->bins[b][kind] += part;
        left -= part;
    }
    r->bins[b1][kind] += left;
}

static void count_bytes(struct sim *S, uint32_t src, uint32_t dst, uint64_t bytes)
{
    struct shoal_sim_result *r = S->r;
    if (src == S->n) {
        S->acc[dst].from_origin += bytes;
    } else if (S->zone[src] == S->zone[dst]) {
        S->acc[dst].from_zone += bytes;
    } else {
        S->acc[dst].from_cross += bytes;
        r->cross_bytes += bytes;
        r->cross_wire += bytes;
    }
    if (src != S->n)
        S->acc[src].uploaded += bytes;
}

/* |bytes| from |src| to |dst| went over the wire without bringing |dst| a
 * chunk it lacked: a duplicate, or part of a chunk. They cost what useful
 * bytes cost (a cross-zone byte is billed all the same). */
static void count_extra(struct sim *S, uint32_t src, uint32_t dst, uint64_t bytes)
{
    if (src == S->n)
        return; /* origin_bytes counts the origin's */
    S->extra[src].up += bytes;
    if (S->zone[src] != S->zone[dst]) {
        S->extra[dst].cross += bytes;
        S->r->cross_wire += bytes;
    }
}

/* The part of |cn|'s chunk sent so far went over the wire and is lost:
 * its transfer was cancelled or its connection died (|wasted|), or the
 * run ended under it. */
static void count_partial(struct sim *S, struct conn *cn, bool wasted)
{
    settle(S, cn);
    uint64_t part = S->size[cn->cur] - (uint64_t)cn->remaining;
    if (wasted)
        S->r->wasted_bytes += part;
    if (cn->src == S->n)
        S->r->origin_bytes += part;
    S->r->recv_wire += part;
    count_extra(S, cn->src, cn->dst, part);
}

/* Gives node |x| the role the tracker named, as the daemon does
 * (shoal_sched_role_fleet from the same knobs, then the same setter). */
static int apply_role(struct sim *S, uint32_t x, bool fetcher, uint32_t import_mod,
                      uint32_t import_rem)
{
    struct node *nd = &S->node[x];
    uint32_t key = shoal_sched_role_key(fetcher, import_mod, import_rem);
    struct shoal_sched_role sr;
    int rv = 0;
    if (key == nd->role)
        goto out;
    shoal_sched_role_fleet(&sr, &S->sbase, fetcher, import_mod, import_rem);
    if ((rv = shoal_sched_set_role(nd->s, &sr)) != 0)
        goto out;
    nd->role = key;
    /* Its next decision may come sooner (a shorter origin delay). */
    if (nd->joined)
        mark_dirty(S, x);
out:
    return rv;
}

static int announce(struct sim *S, uint32_t x)
{
    if (!S->c->tracker || !S->node[x].alive)
        return 0;
    char addr[24], zone[16];
    uint8_t pk[32];
    snprintf(addr, sizeof(addr), "n%u", x);
    snprintf(zone, sizeof(zone), "z%u", S->node[x].zone);
    node_pk(x, pk);
    struct shoal_reg_have h = {.have_chunks = S->nhave[x], .total_chunks = S->nchunks,
                               .complete = S->node[x].done};
    memcpy(h.manifest_id, S->mid, 32);
    struct shoal_reg_role role;
    int rv = shoal_reg_announce(S->reg, ms(S->now), pk, addr, zone, &h, 1, &role);
    if (rv == 0)
        rv = apply_role(S, x, role.fetcher, role.import_mod, role.import_rem);
    if (rv != 0)
        goto out;
    S->r->announces++;
    /* The interval the tracker asks for, as the daemon takes it (trkconn):
     * within the same bounds, and the next announce moves only sooner. A
     * complete node's reply carries no role, so the config's interval. */
    uint32_t iv = h.complete ? S->reg_interval_ms : role.interval_ms;
    if (iv < SHOAL_MSG_INTERVAL_MIN_MS)
        iv = SHOAL_MSG_INTERVAL_MIN_MS;
    if (iv > SHOAL_MSG_INTERVAL_MAX_MS)
        iv = SHOAL_MSG_INTERVAL_MAX_MS;
    double due = S->now + iv / 1000.0;
    if (due < S->node[x].announce_s) {
        S->node[x].announce_s = due;
        rv = ev_push(S, due, EV_ANNOUNCE, x, 0);
    }
out:
    return rv;
}

/* The node now holds |c| (delivered by |src|). */
static int deliver(struct sim *S, uint32_t src, uint32_t dst, uint32_t c, double t_req)
{
    struct node *d = &S->node[dst];
    uint64_t bytes = S->size[c];
    int rv = 0;
    S->r->recv_bytes += bytes;
    S->r->transfers++;
    if (src == S->n)
        S->r->origin_bytes += bytes;
    uint32_t to[SHOAL_SCHED_PEERS_MAX], nto = 0;
    bool fresh = !(d->have[c >> 3] & (1u << (c & 7)));
    if (!fresh) {
        S->r->wasted_bytes += bytes;
        count_extra(S, src, dst, bytes);
    } else {
        d->have[c >> 3] |= (uint8_t)(1u << (c & 7));
        S->nhave[dst]++;
        uint8_t *row = S->hold + (size_t)c * S->hrow;
        uint32_t db = S->hbit[dst];
        row[db >> 3] |= (uint8_t)(1u << (db & 7));
        count_bytes(S, src, dst, bytes);
        /* The HAVE fan-out is most of the work per transfer: it goes
         * straight to our slot in each peer's scheduler, and a peer is
         * only woken when the HAVE can turn into a request now. A peer
         * that holds the chunk already gains nothing from the HAVE for
         * its picks (its scheduler never looks at a held chunk's
         * holders), so it is not delivered, though a daemon sends it; the
         * one thing it would update, that peer's count of our chunks,
         * upload_busy takes from the node itself. The chunk's row says
         * which peers lack it; their schedulers are cold in a large
         * fleet: ask for all their lines first, so the misses overlap. */
        for (uint32_t i = 0; i < d->npeers; i++) {
            uint32_t p = S->hbit[d->peer[i]];
            to[nto] = i;
            nto += !((row[p >> 3] >> (p & 7)) & 1);
        }
        for (uint32_t k = 0; k < nto; k++)
            __builtin_prefetch(d->psched[to[k]]);
    }
    /* Our own scheduler meanwhile: it shares nothing with the peers'. */
    if (src == S->n)
        (void)shoal_sched_origin_done(d->s, ms(S->now), c, true);
    else
        (void)shoal_sched_req_done(d->s, ms(S->now), src, c, bytes,
                                   ms(S->now) - ms(t_req) + 1);
    for (uint32_t k = 0; k < nto; k++)
        shoal_sched_slot_prefetch(d->psched[to[k]], d->rslot[to[k]], c);
    for (uint32_t k = 0; k < nto; k++) {
        uint32_t i = to[k];
        if (shoal_sched_slot_have_borrowed(d->psched[i], d->rslot[i], c))
            mark_dirty_as(S, d->peer[i], true);
    }
    mark_dirty_as(S, dst, true);
    if (S->nhave[dst] == S->nchunks && !d->done) {
        d->done = true;
        S->r->node[dst].done_s = S->now;
        S->alive_incomplete--;
        rv = announce(S, dst);
    } else if (S->nhave[dst] == 1) {
        rv = announce(S, dst);
    }
    return rv;
}

/* ---- peers ---- */

static int peer_index(const struct node *nd, uint32_t p)
{
    for (uint32_t i = 0; i < nd->npeers; i++)
        if (nd->peer[i] == p)
            return (int)i;
    return -1;
}

static double rtt_ms(const struct sim *S, uint32_t a, uint32_t b)
{
    return S->zone[a] == S->zone[b] ? S->c->lat_zone_ms : S->c->lat_cross_ms;
}

static int connect_peers(struct sim *S, uint32_t a, uint32_t b)
{
    struct node *A = &S->node[a], *B = &S->node[b];
    uint32_t ab, ba;
    int rv;
    if (a == b || !B->alive || A->npeers >= S->c->max_peers || B->npeers >= S->c->max_peers ||
        peer_index(A, b) >= 0)
        return 0;
    if ((rv = new_conn(S, a, b, &ab)) != 0 || (rv = new_conn(S, b, a, &ba)) != 0)
        return rv;
    bool same = A->zone == B->zone;
    uint32_t rtt = (uint32_t)ceil(rtt_ms(S, a, b));
    if ((rv = shoal_sched_peer_add(A->s, b, same, rtt)) != 0 ||
        (rv = shoal_sched_peer_add(B->s, a, same, rtt)) != 0)
        return rv;
    A->peer[A->npeers] = b;
    A->rslot[A->npeers] = (uint8_t)shoal_sched_peer_slot(B->s, a);
    A->psched[A->npeers] = B->s;
    A->cin[A->npeers++] = ba;
    B->peer[B->npeers] = a;
    B->rslot[B->npeers] = (uint8_t)shoal_sched_peer_slot(A->s, b);
    B->psched[B->npeers] = A->s;
    B->cin[B->npeers++] = ab;
    /* Each scheduler reads its peer's own have-set, which deliver()
     * keeps current: one set per node, not a copy per peer (a daemon
     * keeps copies; the decisions are the same). */
    size_t nb = (S->nchunks + 7) / 8;
    if ((rv = shoal_sched_peer_bitfield_borrow(A->s, b, B->have, nb)) != 0 ||
        (rv = shoal_sched_peer_bitfield_borrow(B->s, a, A->have, nb)) != 0)
        return rv;
    mark_dirty(S, a);
    mark_dirty(S, b);
    return 0;
}

/*
 * A quarter of a peer set of |max|: the cross-zone peers a node keeps at
 * most, and the slots it leaves for nodes that dial it. At least one from
 * 2 peers up: rounded down to none, a set of 2 or 3 peers could hold no
 * cross-zone peer (every zone then lacked the chunks other zones' fetchers
 * took from the origin, which the tracker does not lease again) and a node
 * dialled its whole set, so one that came to ask after its candidates had
 * filled up found no peer at all (--peers 2: a node with nothing for the
 * whole run).
 */
static uint32_t peers_quarter(uint32_t max)
{
    return max / 4 > 0 || max < 2 ? max / 4 : 1;
}

/* The tracker gives about 3/4 of a list to the asker's zone, rounded up:
 * a list of 3 or fewer has no other zone in it. A node still without a
 * cross-zone peer asks for at least this many, so one may come. */
#define PEERS_ASK_CROSS 4u

static int find_peers(struct sim *S, uint32_t x)
{
    struct node *nd = &S->node[x];
    int rv = 0;
    if (S->c->max_peers == 0 || nd->npeers >= S->c->max_peers)
        return 0;
    uint8_t pk[32];
    char zone[16];
    node_pk(x, pk);
    snprintf(zone, sizeof(zone), "z%u", nd->zone);
    /* A node dials up to 3/4 of its peers and keeps the rest for nodes
     * that dial it, so latecomers still find someone with room. */
    uint32_t quarter = peers_quarter(S->c->max_peers);
    uint32_t dial = S->c->max_peers - quarter;
    if (nd->npeers >= dial)
        return 0;
    size_t want = dial - nd->npeers;
    if (want > S->c->max_peers / 2 + 1)
        want = S->c->max_peers / 2 + 1;
    /* Cross-zone peers are kept to a quarter of the peer set: enough to
     * see what other zones hold, while the chunks themselves come mostly
     * from the zone. Early on the tracker knows few holders, mostly in
     * other zones; without the quota a node would keep them for good. */
    uint32_t ncross = 0;
    for (uint32_t k = 0; k < nd->npeers; k++)
        ncross += S->node[nd->peer[k]].zone != nd->zone;
    /* A short list would hold no other zone (see PEERS_ASK_CROSS): ask
     * for more, take the other zones' first and the zone's while dial
     * room is left. */
    bool widen = ncross == 0 && quarter > 0 && S->c->zones > 1 && want < PEERS_ASK_CROSS;
    size_t ask = widen ? PEERS_ASK_CROSS : want;
    size_t n = shoal_reg_peers(S->reg, ms(S->now), S->mid, pk, zone, S->plist, ask);
    /* The registry's strings die with the next mutating call; keep ids. */
    uint32_t ids[SHOAL_REG_PEERS_MAX];
    for (size_t i = 0; i < n; i++)
        ids[i] = pk_node(S->plist[i].node_pk);
    for (int pass = widen ? 0 : 1; pass < 2 && rv == 0; pass++) {
        for (size_t i = 0; i < n && rv == 0; i++) {
            if (ids[i] >= S->n)
                continue;
            bool cross = S->node[ids[i]].zone != nd->zone;
            if (cross && ncross >= quarter)
                continue;
            if (widen && (pass == 0) != cross)
                continue;
            if (widen && !cross && nd->npeers >= dial)
                break;
            uint32_t before = nd->npeers;
            rv = connect_peers(S, x, ids[i]);
            if (cross && nd->npeers > before)
                ncross++;
        }
    }
    return rv;
}

/* ---- scheduler actions ---- */

static int do_lease(struct sim *S, uint32_t x, uint32_t count, uint32_t hint)
{
    struct node *nd = &S->node[x];
    uint32_t first = 0, cnt = 0;
    uint64_t exp = 0;
    int rv = 0;
    /* Leases ration the origin on the premise that peers pass each chunk
     * on; with no peer exchange a node can only fetch it itself, and a
     * chunk another node fetched would stay out of reach (until the
     * tracker's fetched_ttl frees it again, ten simulated minutes). */
    if (S->c->tracker && S->c->max_peers > 0) {
        uint8_t pk[32];
        node_pk(x, pk);
        uint32_t flags = SHOAL_REG_HINT_MISSING;
        if (shoal_sched_starved(nd->s, ms(S->now), SHOAL_SCHED_STARVED_MS))
            flags |= SHOAL_REG_HINT_STARVED;
        rv = shoal_reg_lease(S->reg, ms(S->now), S->mid, S->nchunks, pk, count, hint, flags,
                             &first, &cnt, &exp);
        if (rv == SHOAL_EBUSY) {
            shoal_sched_lease_failed(nd->s, ms(S->now));
            return 0;
        }
        if (rv != 0)
            return rv;
    } else {
        /* No tracker (or no peers): the node goes straight to the gateway
         * for the span it asked for. */
        first = hint;
        cnt = count;
        if (cnt > S->nchunks - first)
            cnt = S->nchunks - first;
        exp = ms(S->now) + 60000;
    }
    if (cnt > 0 && S->c->tracker && S->c->max_peers > 0) {
        S->r->leases++;
        S->r->leased_chunks += cnt;
    }
    rv = shoal_sched_lease_granted(nd->s, ms(S->now), first, cnt, exp);
    return rv == SHOAL_SCHED_LEASE_HELD ? 0 : rv;
}

static int run_sched(struct sim *S, uint32_t x)
{
    struct node *nd = &S->node[x];
    struct shoal_sched_action a[ACT_BATCH];
    int rv = 0;
    size_t n;
    nd->dirty = false;
    if (!nd->alive)
        return 0;
    bool again;
    do {
        n = shoal_sched_next(nd->s, ms(S->now), a, ACT_BATCH);
        again = n == ACT_BATCH;
        for (size_t i = 0; i < n && rv == 0; i++) {
            switch (a[i].type) {
            case SHOAL_SCHED_REQUEST: {
                uint32_t p = (uint32_t)a[i].peer;
                int k = peer_index(nd, p);
                if (k < 0)
                    break;
                double lat = rtt_ms(S, x, p) / 1000.0;
                if (lat > 0)
                    rv = ev_after(S, lat, EV_REQ, nd->cin[k], a[i].chunk);
                else
                    rv = conn_enqueue(S, nd->cin[k], a[i].chunk, S->now);
                break;
            }
            case SHOAL_SCHED_CANCEL: {
                int k = peer_index(nd, (uint32_t)a[i].peer);
                if (k < 0)
                    break;
                struct conn *cn = &S->conn[nd->cin[k]];
                if (cn->active && cn->cur == a[i].chunk) {
                    count_partial(S, cn, true);
                    rv = conn_advance(S, nd->cin[k]);
                }
                /* Queued copies are dropped when they reach the head. */
                break;
            }
            case SHOAL_SCHED_LEASE_REQUEST:
                rv = do_lease(S, x, a[i].count, a[i].chunk);
                again = true;
                break;
            case SHOAL_SCHED_ORIGIN_FETCH: {
                double lat = S->c->lat_origin_ms / 1000.0;
                for (uint32_t c = a[i].chunk; c < a[i].chunk + a[i].count && rv == 0; c++) {
                    if (lat > 0)
                        rv = ev_after(S, lat, EV_REQ, nd->oconn, c);
                    else
                        rv = conn_enqueue(S, nd->oconn, c, S->now);
                }
                break;
            }
            case SHOAL_SCHED_LEASE_DONE:
                if (S->c->tracker && a[i].peer != SHOAL_SCHED_LEASE_END) {
                    uint8_t pk[32];
                    node_pk(x, pk);
                    (void)shoal_reg_lease_done(S->reg, ms(S->now), S->mid, pk, a[i].chunk,
                                               a[i].count);
                }
                break;
            }
        }
        /* Handling a lease queues the ORIGIN_FETCH for the next call: ask
         * again then, or when the batch was full. Anything else that can
         * make room (a busy answer) marks the node dirty again. */
    } while (rv == 0 && again);
    uint64_t w = shoal_sched_wakeup(nd->s);
    if (rv == 0 && w != UINT64_MAX && w < nd->wake_ms) {
        nd->wake_ms = w;
        double t = (double)w / 1000.0;
        rv = ev_push(S, t > S->now ? t : S->now, EV_WAKE, x, 0);
    }
    return rv;
}

static int flush_dirty(struct sim *S)
{
    int rv = 0;
    while (S->ndirty > 0 && rv == 0)
        rv = run_sched(S, S->dirty[--S->ndirty]);
    return rv;
}

/* ---- lifecycle events ---- */

static int join(struct sim *S, uint32_t x)
{
    struct node *nd = &S->node[x];
    int rv;
    if (nd->gone)
        return 0;
    nd->alive = nd->joined = true;
    nd->found_s = S->now;
    if (nd->seed) {
        memset(nd->have, 0xff, (S->nchunks + 7) / 8);
        for (uint32_t c = 0; c < S->nchunks; c++)
            S->hold[(size_t)c * S->hrow + (S->hbit[x] >> 3)] |= (uint8_t)(1u << (S->hbit[x] & 7));
        for (uint32_t c = 0; c < S->nchunks; c++)
            (void)shoal_sched_chunk_obtained(nd->s, ms(S->now), c);
        S->nhave[x] = S->nchunks;
        nd->done = true;
        S->r->node[x].done_s = S->now;
    } else {
        S->alive_incomplete++;
    }
    nd->announce_s = INFINITY; /* announce() schedules the next */
    if ((rv = announce(S, x)) != 0)
        return rv;
    mark_dirty(S, x);
    if (S->c->tracker) {
        /* The peer list comes back a round trip after the announce, as
         * from a real tracker: nodes that join together all see each
         * other, instead of each seeing only those handled before it. */
        rv = ev_push(S, S->now + S->c->lat_zone_ms / 1000.0, EV_REFRESH, x, 0);
    }
    return rv;
}

static int kill_conn(struct sim *S, uint32_t id)
{
    struct conn *cn = &S->conn[id];
    int rv = 0;
    if (cn->active) {
        count_partial(S, cn, true);
        cn->qn = 0;
        rv = deactivate(S, id);
    }
    cn->qn = 0;
    cn->dead = true;
    return rv;
}

static int forget_node(struct sim *S, uint32_t x)
{
    uint8_t pk[32];
    node_pk(x, pk);
    (void)shoal_reg_remove_node(S->reg, pk);
    return 0;
}

static int fail_node(struct sim *S, uint32_t x)
{
    struct node *nd = &S->node[x];
    int rv = 0;
    if (!nd->joined) {
        /* Dies before it ever joins: it never will. */
        nd->gone = true;
        S->r->node[x].failed = true;
        S->r->node[x].died_s = S->now;
        return 0;
    }
    if (!nd->alive)
        return 0;
    nd->alive = false;
    S->r->node[x].died_s = S->now;
    /* A node that completed before it died did complete: an operator asks
     * how long the nodes took to get the release, and this one had it.
     * It is gone all the same, so it serves nobody from now on. */
    if (!nd->done) {
        S->r->node[x].failed = true;
        S->alive_incomplete--;
    }
    for (uint32_t i = 0; i < nd->npeers && rv == 0; i++) {
        uint32_t p = nd->peer[i];
        struct node *P = &S->node[p];
        int k = peer_index(P, x);
        rv = kill_conn(S, nd->cin[i]);
        if (rv == 0 && k >= 0) {
            rv = kill_conn(S, P->cin[k]);
            (void)shoal_sched_peer_remove(P->s, x);
            P->peer[k] = P->peer[P->npeers - 1];
            P->cin[k] = P->cin[P->npeers - 1];
            P->rslot[k] = P->rslot[P->npeers - 1];
            P->psched[k] = P->psched[P->npeers - 1];
            P->npeers--;
            mark_dirty(S, p);
        }
    }
    nd->npeers = 0;
    if (rv == 0)
        rv = kill_conn(S, nd->oconn);
    /* The tracker learns of it when the connection closes, and forgets it
     * gone_ms later (shoal-tracker --gone-ms): until then its leases and
     * the chunks only it fetched are nobody else's to fetch. */
    if (S->c->tracker && rv == 0)
        rv = S->c->gone_ms ? ev_push(S, S->now + S->c->gone_ms / 1000.0, EV_FORGET, x, 0)
                           : forget_node(S, x);
    return rv;
}

/* ---- setup ---- */

static int load_sizes(struct sim *S)
{
    const struct shoal_sim_config *c = S->c;
    int rv = 0;
    if (c->manifest[0]) {
        FILE *f = fopen(c->manifest, "rb");
        uint8_t *buf = NULL;
        struct shoal_manifest *m = NULL;
        long len;
        if (f == NULL)
            return -errno;
        if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
            (uint64_t)len > SHOAL_MF_MAX_BYTES_DEFAULT) {
            rv = -EIO;
            goto mf_out;
        }
        buf = malloc(len ? (size_t)len : 1);
        if (buf == NULL) {
            rv = -ENOMEM;
            goto mf_out;
        }
        if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
            rv = -EIO;
            goto mf_out;
        }
        /* The simulator only needs sizes: any publisher's signature will do,
         * but the signature itself must verify. */
        if ((rv = shoal_manifest_parse(&m, buf, (size_t)len, NULL, NULL)) != 0)
            goto mf_out;
        S->nchunks = shoal_manifest_nchunks(m);
        if (S->nchunks == 0 || S->nchunks > SHOAL_SIM_CHUNKS_MAX) {
            rv = -EINVAL;
            goto mf_out;
        }
        S->size = malloc(S->nchunks * sizeof(uint32_t));
        S->file_first = malloc(shoal_manifest_nfiles(m) * sizeof(uint32_t));
        if (S->size == NULL || S->file_first == NULL) {
            rv = -ENOMEM;
            goto mf_out;
        }
        for (uint32_t i = 0; i < S->nchunks; i++) {
            S->size[i] = shoal_manifest_chunk(m, i)->len;
            S->F += S->size[i];
        }
        for (uint32_t i = 0; i < shoal_manifest_nfiles(m); i++) {
            const struct shoal_mf_file *fl = shoal_manifest_file(m, i);
            if (fl->nchunks > 0)
                S->file_first[S->nfiles++] = fl->first_chunk;
        }
        memcpy(S->mid, shoal_manifest_id(m), 32);
    mf_out:
        shoal_manifest_free(m);
        free(buf);
        fclose(f);
        return rv;
    }
    /* Synthetic: sizes around chunk_avg (sum of three uniforms, a cheap
     * bell shape), clamped to [chunk_min, chunk_max]; the last chunk takes
     * what is left. */
    uint64_t est = c->release_bytes / c->chunk_min + 2; /* at most this many */
    if (est > SHOAL_SIM_CHUNKS_MAX)
        return -EINVAL;
    S->size = malloc(est * sizeof(uint32_t));
    if (S->size == NULL)
        return -ENOMEM;
    uint64_t x = c->seed ^ 0xc0ffee, left = c->release_bytes;
    double spread = (double)(c->chunk_avg - c->chunk_min);
    if ((double)(c->chunk_max - c->chunk_avg) < spread)
        spread = (double)(c->chunk_max - c->chunk_avg);
    while (left > 0) {
        if (S->nchunks == est)
            return -EINVAL;
        double u = (rnd01(&x) + rnd01(&x) + rnd01(&x)) / 1.5 - 1.0; /* [-1, 1] */
        uint64_t sz = (uint64_t)((double)c->chunk_avg + u * spread);
        if (sz < c->chunk_min)
            sz = c->chunk_min;
        if (sz > c->chunk_max)
            sz = c->chunk_max;
        if (sz > left)
            sz = left;
        S->size[S->nchunks++] = (uint32_t)sz;
        left -= sz;
    }
    S->F = c->release_bytes;
    uint32_t nf = c->files ? c->files : 1;
    if (nf > S->nchunks)
        nf = S->nchunks;
    S->file_first = malloc(nf * sizeof(uint32_t));
    if (S->file_first == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < nf; i++)
        S->file_first[i] = (uint32_t)((uint64_t)S->nchunks * i / nf);
    S->nfiles = nf;
    uint64_t m = c->seed;
    for (int i = 0; i < 4; i++) {
        uint64_t v = rnd(&m);
        memcpy(S->mid + 8 * i, &v, 8);
    }
    return 0;
}

/* ---- the lower bound T_min ----
 *
 * A bound on the time T by which every survivor holds the release, F
 * bytes, over any schedule whatever. Survivors are the nodes that must
 * end with it: not seeds, and not picked to fail (a failing node may
 * complete before it dies, but nothing obliges it to, and after its death
 * it uploads nothing). The bound only drops constraints a real schedule
 * has, so no run can beat it:
 *  - no byte moves before t0: a node's first request goes out when it
 *    joins and reaches its peer or the origin one round trip later (the
 *    engine delays requests by the round trip and sends the data at
 *    once), and without seeds every byte first leaves the origin, so
 *    t0 = min over joining nodes of join + lat_origin; with seeds the
 *    shortest round trip instead;
 *  - survivor i receives nothing before s_i = max(t0, join_i + rtt), rtt
 *    the shortest round trip it has (to the origin alone without peer
 *    exchange), then at most d_i: T >= s_i + F/d_i;
 *  - without seeds the release leaves the origin at least once: T >= t0 +
 *    F/u_origin;
 *  - the survivors that start at s or later receive their k*F bytes after
 *    s from the origin and the nodes' uploads (a failing node's only until
 *    it dies; no uploads at all without peer exchange, seeds included);
 *    for every s_i, the least T whose capacity over [s_i, T] covers them;
 *  - capped zone pairs: zone_cap_bound.
 */
struct bound_in {
    bool exchange;         /* peers pass chunks on (max_peers > 0 and a
                              tracker: without one a node finds no peer) */
    double t0;             /* no byte moves anywhere before this */
    double fa;             /* when the failing nodes die; INFINITY: never */
    double up_live;        /* upload of nodes that do not fail (seeds too) */
    double up_fail;        /* upload of the failing nodes, until fa */
    /* Per zone: survivors, upload of nodes that do not fail and of those
     * that do, whether it holds a seed, whether it has any node. */
    uint32_t zsurv[SHOAL_SIM_ZONES_MAX];
    double zup_live[SHOAL_SIM_ZONES_MAX];
    double zup_fail[SHOAL_SIM_ZONES_MAX];
    bool zseed[SHOAL_SIM_ZONES_MAX];
    bool zany[SHOAL_SIM_ZONES_MAX];
};

/* Bytes that uploads of |live| (for ever) and |fail| (until |fa|) bytes/s
 * can carry over [s, T]. */
static double carried(double s, double T, double live, double fail, double fa)
{
    double x = T > s ? T - s : 0, y = (T < fa ? T : fa) - s;
    return live * x + fail * (y > 0 ? y : 0);
}

/* The least T >= s with carried(s, T, live, fail, fa) >= need (live > 0). */
static double carry_time(double s, double need, double live, double fail, double fa)
{
    if (need <= 0)
        return s;
    if (fa > s) {
        double t = s + need / (live + fail);
        if (t <= fa)
            return t;
        need -= (live + fail) * (fa - s);
        s = fa;
    }
    return s + need / live;
}

/*
 * The part of T_min that capped zone pairs add (zone_cap > 0, peer
 * exchange, 2 or more zones with nodes), with
 *   Z'   zones that have nodes, c = zone_cap (each ordered pair),
 *   o_z  bytes the origin sends into zone z by T,
 *   N_z  survivors of zone z, U_z the upload of zone z's nodes (seeds
 *        included; a failing node's only until it dies):
 *   (1) the origin is shared by all zones:     sum_z o_z <= u_origin (T-t0);
 *   (2) zone z takes in at most (Z'-1) c (T-t0) bytes from the other zones
 *       (its inbound pairs; a zone without nodes sends nothing);
 *   (3) a zone without a seed must bring every byte in from outside at
 *       least once, from the origin or across its pairs:
 *                                      F <= o_z + (Z'-1) c (T-t0);
 *   (4) its N_z survivors receive N_z F bytes, which come from the origin,
 *       across its pairs or from its own nodes' uploads:
 *                              N_z F <= o_z + (Z'-1) c (T-t0) + U_z(T).
 * So o_z >= need_z(T) = max(0, F - (Z'-1) c (T-t0) [no seed in z],
 * N_z F - (Z'-1) c (T-t0) - U_z(T)), and with (1) T must satisfy
 *   g(T) = sum_z need_z(T) - u_origin (T-t0) <= 0.
 * g falls strictly as T grows (u_origin > 0), so the least such T is found
 * by bisection. Every term only drops constraints a real schedule has
 * (the other zones' own upload limits, the nodes' download links, time
 * before a byte can be passed on), so it stays a lower bound. With one
 * zone it says no more than the links' bound.
 * Example: 2 zones, zone 0 holding the only seed: zone 1 needs F through
 * c and the origin, T >= t0 + F / (c + u_origin), however fast the seed is.
 */
static double zone_cap_g(const struct sim *S, const struct bound_in *B, double in, double T)
{
    const struct shoal_sim_config *c = S->c;
    double F = (double)S->F, x = T - B->t0;
    double g = -c->origin_up * x;
    for (uint32_t z = 0; z < c->zones; z++) {
        double need = B->zseed[z] || B->zsurv[z] == 0 ? 0 : F - in * x;
        double nz = (double)B->zsurv[z] * F - in * x -
                    carried(B->t0, T, B->zup_live[z], B->zup_fail[z], B->fa);
        g += fmax(0, fmax(need, nz));
    }
    return g;
}

static double zone_cap_bound(const struct sim *S, const struct bound_in *B)
{
    const struct shoal_sim_config *c = S->c;
    uint32_t zn = 0;
    for (uint32_t z = 0; z < c->zones; z++)
        zn += B->zany[z];
    if (c->zone_cap <= 0 || zn < 2 || !B->exchange)
        return 0;
    double in = (double)(zn - 1) * c->zone_cap;
    double lo = 0, hi = 1; /* T - t0 */
    /* g(t0 + hi) <= 0 for hi large enough: find such an hi first. */
    while (zone_cap_g(S, B, in, B->t0 + hi) > 0) {
        lo = hi;
        hi *= 2;
    }
    for (int it = 0; it < 200 && hi - lo > 1e-12 * hi; it++) {
        double x = (lo + hi) / 2;
        if (zone_cap_g(S, B, in, B->t0 + x) <= 0)
            hi = x;
        else
            lo = x;
    }
    return B->t0 + hi;
}

/* The links' part of T_min (see above). |start| holds each survivor's s_i
 * (|nsurv| of them, reordered here); |t_node| is max_i s_i + F/d_i. */
static double links_bound(const struct sim *S, const struct bound_in *B, double *start,
                          uint32_t nsurv, double t_node)
{
    const struct shoal_sim_config *c = S->c;
    double F = (double)S->F, t = t_node;
    if (nsurv == 0)
        return 0;
    if (!B->exchange || c->seeds == 0)
        t = fmax(t, B->t0 + F / c->origin_up);
    double live = c->origin_up + (B->exchange ? B->up_live : 0);
    double fail = B->exchange ? B->up_fail : 0;
    qsort(start, nsurv, sizeof(double), cmp_double);
    for (uint32_t k = 0; k < nsurv; k++)
        t = fmax(t, carry_time(start[k], (double)(nsurv - k) * F, live, fail, B->fa));
    return t;
}

/* Sets S->r's T_min and its parts from the fleet drawn in setup (links,
 * joins, the failing nodes picked). Returns 0 or -ENOMEM. */
static int lower_bound(struct sim *S)
{
    const struct shoal_sim_config *c = S->c;
    struct shoal_sim_result *r = S->r;
    struct bound_in B;
    double F = (double)S->F;
    double lat_o = c->lat_origin_ms / 1000.0;
    uint32_t ns = 0;
    int rv = 0;
    memset(&B, 0, sizeof(B));
    B.exchange = c->max_peers > 0 && c->tracker;
    B.fa = S->fails_pending > 0 ? c->fail_at_s : INFINITY;
    double rtt = lat_o;
    if (B.exchange)
        rtt = fmin(rtt, fmin(c->lat_zone_ms, c->lat_cross_ms) / 1000.0);
    double *start = malloc((c->nodes + 1) * sizeof(double));
    if (start == NULL)
        return -ENOMEM;
    B.t0 = INFINITY;
    for (uint32_t i = 0; i < c->nodes; i++)
        if (!S->node[i].seed)
            B.t0 = fmin(B.t0, r->node[i].join_s + (B.exchange && c->seeds ? rtt : lat_o));
    if (B.t0 == INFINITY)
        B.t0 = 0;
    double t_node = 0;
    for (uint32_t i = 0; i < c->nodes; i++) {
        uint8_t z = S->zone[i];
        B.zany[z] = true;
        B.zseed[z] |= S->node[i].seed;
        if (S->victim[i]) {
            B.up_fail += S->lk[i].up;
            B.zup_fail[z] += S->lk[i].up;
            continue;
        }
        B.up_live += S->lk[i].up;
        B.zup_live[z] += S->lk[i].up;
        if (S->node[i].seed)
            continue;
        B.zsurv[z]++;
        start[ns] = fmax(B.t0, r->node[i].join_s + rtt);
        t_node = fmax(t_node, start[ns] + F / S->lk[i].down);
        ns++;
    }
    r->t_min_t0 = ns > 0 ? B.t0 : 0;
    r->t_min_links = links_bound(S, &B, start, ns, t_node);
    r->t_min_zone = ns > 0 ? zone_cap_bound(S, &B) : 0;
    r->t_min = fmax(r->t_min_links, r->t_min_zone);
    if (r->t_min_zone > 0 && c->seeds == 0) {
        uint32_t zn = 0;
        for (uint32_t z = 0; z < c->zones; z++)
            zn += B.zany[z];
        r->t_zone_1x = B.t0 + F / ((double)zn * c->zone_cap);
    }
    free(start);
    return rv;
}

static int setup(struct sim *S)
{
    const struct shoal_sim_config *c = S->c;
    int rv;
    if ((rv = load_sizes(S)) != 0)
        return rv;
    S->node = calloc(c->nodes, sizeof(struct node));
    S->dirty = malloc(c->nodes * sizeof(uint32_t));
    S->bitbuf = malloc((S->nchunks + 7) / 8);
    S->plist = malloc(SHOAL_REG_PEERS_MAX * sizeof(struct shoal_reg_peer));
    S->lk = calloc((size_t)c->nodes + 1, sizeof(*S->lk));
    S->nhave = calloc(c->nodes, sizeof(*S->nhave));
    S->zone = calloc(c->nodes, 1);
    S->acc = calloc(c->nodes, sizeof(*S->acc));
    S->extra = calloc(c->nodes, sizeof(*S->extra));
    S->victim = calloc(c->nodes, 1);
    if (S->lk != NULL)
        S->lk[c->nodes].up = c->origin_up;
    S->hrow = (c->nodes + 7) / 8;
    S->hold = calloc(S->nchunks, S->hrow);
    S->hbit = malloc((size_t)c->nodes * sizeof(*S->hbit));
    if (S->hbit != NULL)
        for (uint32_t z = 0, k = 0; z < c->zones; z++) {
            S->zfirst[z] = k;
            for (uint32_t i = z; i < c->nodes; i += c->zones)
                S->hbit[i] = k++;
            S->zlen[z] = k - S->zfirst[z];
        }
    S->hstride = ((size_t)S->nchunks + 63) / 64 * 8;
    S->haves = calloc(c->nodes, S->hstride);
    if (c->zone_cap > 0) {
        S->zz = calloc((size_t)c->zones * c->zones, sizeof(struct vec));
        S->zzused = calloc((size_t)c->zones * c->zones, sizeof(double));
        if (S->zz == NULL || S->zzused == NULL)
            return -ENOMEM;
    }
    struct shoal_sim_result *r = calloc(1, sizeof(*r));
    S->r = r;
    if (!S->node || !S->lk || !S->nhave || !S->zone || !S->acc || !S->extra || !S->victim || !S->dirty ||
        !S->bitbuf || !S->plist || !S->hold || !S->hbit || !S->haves || !r)
        return -ENOMEM;
    r->node = calloc(c->nodes, sizeof(struct shoal_sim_node));
    if (r->node == NULL)
        return -ENOMEM;
    r->nodes = c->nodes;
    r->nchunks = S->nchunks;
    r->release_bytes = S->F;
    uint32_t leases = c->max_leases; /* a fetcher's, at once (config_check: >= 1) */

    if (c->tracker) {
        struct shoal_reg_config rc;
        shoal_reg_config_default(&rc);
        rc.seed = c->seed;
        rc.max_nodes = c->nodes + 16;
        rc.max_peers = SHOAL_REG_PEERS_MAX;
        /* The tracker's lease time, as deployed: it was 10 min here
         * against the tracker's 60 s, and a fleet whose origin is so busy
         * that a chunk takes longer than that had its span granted again
         * and fetched twice on a real tracker, not in the simulation. */
        if (c->lease_ms > 0)
            rc.lease_ms = c->lease_ms;
        rc.node_ttl_ms = 95000;
        /* Roles need peers to pass on what the fetchers and importers
         * bring: without peer exchange everyone leases at once. */
        rc.origin_fetchers = c->max_peers ? c->origin_fetchers : 0;
        rc.min_fetchers = c->min_fetchers;
        rc.importers = c->max_peers ? c->importers : 0;
        rc.fill_interval_ms = c->fill_interval_ms;
        S->reg_interval_ms = rc.announce_interval_ms;
        /* The tracker's --fetcher-leases matches the fleet's --max-leases,
         * as its operator would set it (both default to 2). */
        rc.fetcher_leases = leases;
        if ((rv = shoal_reg_new(&S->reg, &rc)) != 0)
            return rv;
    }

    S->rng = c->seed * 0x2545f4914f6cdd1dull + 7;
    struct shoal_sched_config sc;
    shoal_sched_config_default(&sc);
    sc.max_peers = c->max_peers ? c->max_peers : 1;
    if (c->min_depth)
        sc.min_depth = c->min_depth;
    if (c->max_depth)
        sc.max_depth = c->max_depth;
    if (sc.min_depth > sc.max_depth)
        sc.max_depth = sc.min_depth;
    sc.cross_zone_delay_ms = c->cross_zone_delay_ms;
    /* Nodes ask for the daemon's span (--lease-chunks); the tracker
     * shortens it as the release runs out (shoal_reg_lease), for a
     * simulated fleet as for a real one. */
    if (c->lease_chunks)
        sc.lease_chunks = c->lease_chunks;
    /* Only the tracker grants leases; without one (or without peer
     * exchange) a node fetches what it lacks and there are none to report. */
    r->lease_chunks = c->tracker && c->max_peers > 0 ? sc.lease_chunks : 0;
    sc.endgame_dups = c->endgame_dups;
    sc.busy_backoff_ms = c->busy_backoff_ms;
    /* The knobs roles are made from: a fetcher's leases, everyone else's
     * origin delay, the normal in-flight cap. */
    sc.origin_delay_ms = c->origin_delay_ms;
    sc.max_leases = leases;
    sc.max_inflight = c->max_inflight;
    S->sbase = sc;
    struct shoal_sched_release rel = {.nchunks = S->nchunks, .total_bytes = S->F,
                                      .nfiles = S->nfiles, .file_first = S->file_first};
    for (uint32_t i = 0; i < c->nodes; i++) {
        struct node *nd = &S->node[i];
        sc.seed = c->seed * 1000003u + i;
        if ((rv = shoal_sched_new(&nd->s, &sc, &rel)) != 0)
            return rv;
        /* Its peers' have-sets are the nodes' own (see connect_peers). */
        if ((rv = shoal_sched_borrow_all(nd->s)) != 0)
            return rv;
        /* Fleet roles are the tracker's: a node has none until its first
         * announce is answered (at join). With no tracker at all every
         * node leases for itself at once. */
        nd->role = UINT32_MAX;
        if ((rv = apply_role(S, i, !c->tracker, 0, 0)) != 0)
            return rv;
        /* Whole 64-bit words: the peers' schedulers read it in place
         * (shoal_sched_peer_bitfield_borrow), a word at a time. */
        nd->have = S->haves + (size_t)i * S->hstride;
        nd->peer = malloc((sc.max_peers) * sizeof(uint32_t));
        nd->cin = malloc((sc.max_peers) * sizeof(uint32_t));
        nd->rslot = malloc(sc.max_peers);
        nd->psched = malloc(sc.max_peers * sizeof(*nd->psched));
        if (!nd->have || !nd->peer || !nd->cin || !nd->rslot || !nd->psched)
            return -ENOMEM;
        nd->zone = (uint8_t)(i % c->zones);
        S->zone[i] = nd->zone;
        nd->seed = i < c->seeds;
        double h = c->hetero > 0 ? 1.0 + c->hetero * (2.0 * rnd01(&S->rng) - 1.0) : 1.0;
        S->lk[i].up = c->node_up * h;
        S->lk[i].down = c->node_down * h;
        nd->wake_ms = UINT64_MAX;
        if ((rv = new_conn(S, S->n, i, &nd->oconn)) != 0)
            return rv;
        struct shoal_sim_node *rn = &r->node[i];
        rn->zone = nd->zone;
        rn->seed = nd->seed;
        rn->up = S->lk[i].up;
        rn->down = S->lk[i].down;
        rn->done_s = -1;
        rn->died_s = -1;
        rn->join_s = nd->seed || c->join_spread_s <= 0 ? 0 : c->join_spread_s * rnd01(&S->rng);
        if ((rv = ev_push(S, rn->join_s, EV_JOIN, i, 0)) != 0)
            return rv;
        S->joins_pending++;
    }
    /* Pick the failing nodes up front, deterministically, among those that
     * have joined by fail-at (never seeds): a node not there yet cannot die
     * mid-rollout, and counting it failed made a run look as if it had
     * survived failures it never saw. With every node joined at once the
     * pool is all non-seed nodes, in order, and the picks are as before. */
    uint32_t npool = 0;
    if (c->fail_frac > 0) {
        uint32_t *pool = malloc(sizeof(*pool) * (c->nodes - c->seeds + 1));
        if (pool == NULL)
            return -ENOMEM;
        for (uint32_t i = c->seeds; i < c->nodes; i++)
            if (r->node[i].join_s <= c->fail_at_s)
                pool[npool++] = i;
        uint32_t nfail = (uint32_t)floor(c->fail_frac * npool + 0.5);
        for (uint32_t k = 0; k < nfail && rv == 0; k++) {
            /* Distinct victims by rejection (nfail is a small share). */
            uint32_t v;
            do {
                v = pool[rnd(&S->rng) % npool];
            } while (S->victim[v]);
            S->victim[v] = 1;
            if ((rv = ev_push(S, c->fail_at_s, EV_FAIL, v, 0)) == 0)
                S->fails_pending++;
        }
        free(pool);
        if (rv != 0)
            return rv;
    }
    r->fail_at_s = S->fails_pending > 0 ? c->fail_at_s : -1;
    r->fail_frac = c->fail_frac;
    r->fail_pool = npool;
    r->fail_pool_all = c->nodes - c->seeds;
    if ((rv = lower_bound(S)) != 0)
        return rv;
    /* Bins start a hundredth of T_min wide and widen as the run goes on
     * (bin_spread): a run ten or a thousand times T_min is plotted in
     * full, in at most SHOAL_SIM_BINS bins. */
    r->bin_s = r->t_min > 0 ? r->t_min / 100.0 : 1e-3;
    r->nbins = 0;
    r->bins = calloc(SHOAL_SIM_BINS, sizeof(*r->bins));
    if (r->bins == NULL)
        return -ENOMEM;
    S->bin_lo = S->bin_hi = 0; /* bin_spread sets them */
    if (c->tracker)
        rv = ev_push(S, 10.0, EV_EXPIRE, 0, 0);
    return rv;
}

static void teardown(struct sim *S)
{
    if (S->node)
        for (uint32_t i = 0; i < S->c->nodes; i++) {
            shoal_sched_free(S->node[i].s);
            free(S->node[i].peer);
            free(S->node[i].cin);
            free(S->node[i].rslot);
            free(S->node[i].psched);
            free(S->node[i].up.v);
            free(S->node[i].down.v);
        }
    for (uint32_t i = 0; i < S->nconn; i++)
        free(S->conn[i].q);
    if (S->zz)
        for (uint32_t i = 0; i < S->c->zones * S->c->zones; i++)
            free(S->zz[i].v);
    free(S->zz);
    free(S->zzused);
    free(S->conn);
    free(S->origin_up.v);
    free(S->node);
    free(S->dirty);
    free(S->bitbuf);
    free(S->hold);
    free(S->hbit);
    free(S->haves);
    free(S->lk);
    free(S->nhave);
    free(S->zone);
    free(S->acc);
    free(S->extra);
    free(S->victim);
    free(S->plist);
    free(S->heap);
    for (uint32_t i = 0; i < S->ndq; i++)
        free(S->dq[i].v);
    free(S->fh);
    free(S->hpos);
    free(S->cdst);
    free(S->caps);
    free(S->size);
    free(S->file_first);
    shoal_reg_free(S->reg);
}

/*
 * Why a run left nodes incomplete, when peers cannot help: the live nodes
 * fall into groups linked by peer connections (union-find), and a group
 * whose members together lack a chunk that another group holds waits for
 * it in vain (the tracker leases a chunk from the origin once). A chunk
 * no one holds yet is not counted: a run cut short by max-time lacks
 * those in one connected fleet. Nor is a node that joined in the last 10
 * s (the interval at which a node with peers enough asks for more): it
 * may not have found its peers yet. 2 peers a node split a fleet into
 * chains and rings: this names it.
 */
#define CUT_SETTLE_S 10.0
static int cut_off(struct sim *S)
{
    struct shoal_sim_result *r = S->r;
    uint32_t n = S->c->nodes;
    size_t nb = (S->nchunks + 7) / 8;
    uint32_t *up = malloc(n * sizeof(uint32_t));
    uint32_t *first = malloc(n * sizeof(uint32_t)), *next = malloc(n * sizeof(uint32_t));
    uint8_t *u = malloc(nb), *all = calloc(1, nb), *look = malloc(n);
    int rv = -ENOMEM;
    if (!up || !first || !next || !u || !all || !look)
        goto out;
    /* The nodes looked at: live, and there long enough to have peers. */
    for (uint32_t x = 0; x < n; x++)
        look[x] = S->node[x].alive && r->node[x].join_s <= S->now - CUT_SETTLE_S;
    for (uint32_t x = 0; x < n; x++)
        for (size_t i = 0; look[x] && i < nb; i++)
            all[i] |= S->node[x].have[i];
    for (uint32_t x = 0; x < n; x++)
        up[x] = x;
    for (uint32_t x = 0; x < n; x++) {
        const struct node *nd = &S->node[x];
        for (uint32_t k = 0; look[x] && k < nd->npeers; k++) {
            uint32_t a = x, b = nd->peer[k];
            while (up[a] != a)
                a = up[a] = up[up[a]];
            while (up[b] != b)
                b = up[b] = up[up[b]];
            if (a != b)
                up[a > b ? a : b] = a < b ? a : b;
        }
    }
    /* Each group's members in a list from its root. */
    for (uint32_t x = 0; x < n; x++)
        first[x] = NIL;
    for (uint32_t x = n; x-- > 0;) {
        uint32_t a = x;
        while (up[a] != a)
            a = up[a];
        if (!look[x])
            continue;
        next[x] = first[a];
        first[a] = x;
    }
    for (uint32_t g = 0; g < n; g++) {
        uint32_t incomplete = 0;
        if (first[g] == NIL)
            continue;
        memset(u, 0, nb);
        for (uint32_t x = first[g]; x != NIL; x = next[x]) {
            for (size_t i = 0; i < nb; i++)
                u[i] |= S->node[x].have[i];
            incomplete += !S->node[x].done;
        }
        bool lacks = false;
        for (size_t i = 0; i < nb && !lacks; i++)
            lacks = (all[i] & ~u[i]) != 0;
        if (incomplete == 0 || !lacks)
            continue;
        r->cut_groups++;
        r->cut_nodes += incomplete;
        for (uint32_t x = first[g]; x != NIL; x = next[x])
            r->no_peer += !S->node[x].done && S->node[x].npeers == 0;
    }
    rv = 0;
out:
    free(up);
    free(first);
    free(next);
    free(u);
    free(all);
    free(look);
    return rv;
}

/* Fills in the figures at the end of the run. |all_done|: it ended with
 * every live node complete and nobody left to join; failures still to come
 * then could change nothing (they kill complete nodes that no one needs),
 * so they are recorded at fail_at instead of simulating the wait. Nodes
 * left incomplete (max_time, or nothing left to happen) rank as never
 * completing: a percentile that falls on one is INFINITY, and with no node
 * to rank at all (every one failed or a seed) the percentiles are NAN.
 * Returns 0 or -ENOMEM. */
static int finish(struct sim *S, bool all_done)
{
    struct shoal_sim_result *r = S->r;
    /* Chunks still under way went over the wire in part: count that part
     * (not as waste: the run, not the schedule, cut them off). */
    for (uint32_t id = 0; id < S->nconn; id++)
        if (S->conn[id].active && S->conn[id].cur != NIL)
            count_partial(S, &S->conn[id], false);
    r->recv_wire += r->recv_bytes;
    for (uint32_t i = 0; i < S->c->nodes; i++) {
        r->node[i].from_origin = S->acc[i].from_origin;
        r->node[i].from_zone = S->acc[i].from_zone;
        r->node[i].from_cross = S->acc[i].from_cross;
        r->node[i].uploaded = S->acc[i].uploaded;
        r->node[i].cross_wire = S->acc[i].from_cross + S->extra[i].cross;
        r->node[i].uploaded_wire = S->acc[i].uploaded + S->extra[i].up;
        if (all_done && S->fails_pending > 0 && S->victim[i] && r->node[i].died_s < 0) {
            r->node[i].died_s = S->c->fail_at_s;
            r->died_after_end++;
        }
        r->died += r->node[i].died_s >= 0;
    }
    double *t = malloc((S->c->nodes + 1) * sizeof(double));
    uint32_t n = 0;
    if (t == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < S->c->nodes; i++) {
        const struct shoal_sim_node *nd = &r->node[i];
        if (nd->failed) {
            r->failed++;
        } else if (nd->seed) {
            continue;
        } else if (nd->done_s >= 0) {
            t[n++] = nd->done_s;
            r->completed++;
            r->died_done += nd->died_s >= 0;
        } else {
            t[n++] = INFINITY;
            r->incomplete++;
        }
    }
    if (r->incomplete > 0 && S->c->max_peers > 0) {
        int rv = cut_off(S);
        if (rv != 0) {
            free(t);
            return rv;
        }
    }
    r->end_s = S->now;
    (void)bins_cover(r, r->end_s);
    r->p50 = r->p90 = r->p99 = r->max = NAN;
    if (n > 0) {
        qsort(t, n, sizeof(double), cmp_double);
        r->p50 = t[(size_t)ceil(0.50 * n) - 1];
        r->p90 = t[(size_t)ceil(0.90 * n) - 1];
        r->p99 = t[(size_t)ceil(0.99 * n) - 1];
        r->max = t[n - 1];
    }
    free(t);
    return 0;
}

/*
 * The events to come are known a step or two ahead (the flow heap's top and
 * its successor, min of its two children; a delay FIFO's next entries), and
 * in a large fleet everything they touch is cold: ask for it in a pipeline.
 * The connection of the event after next is asked for now; that of the
 * next one, asked for an event ago, is read, and the records of its two
 * ends, its links and its queue's head are asked for.
 */
static void prefetch_conn(const struct sim *S, uint32_t id)
{
    __builtin_prefetch(&S->conn[id]);
    __builtin_prefetch((const char *)&S->conn[id] + 64);
}

static void prefetch_ends(const struct sim *S, uint32_t id, bool flow)
{
    const struct conn *cn = &S->conn[id];
    if (flow && cn->cur != NIL) {
        /* Its delivery reads the receiver's bit of the chunk and, for the
         * HAVE fan-out, the part of the chunk's holder row where its zone's
         * nodes are (see hbit). */
        size_t c = cn->cur;
        uint32_t z = S->zone[cn->dst];
        const uint8_t *row = S->hold + c * S->hrow;
        __builtin_prefetch(S->haves + (size_t)cn->dst * S->hstride + c / 8, 1);
        for (uint32_t b = S->zfirst[z] / 8; b <= (S->zfirst[z] + S->zlen[z] - 1) / 8; b += 64)
            __builtin_prefetch(row + b);
        __builtin_prefetch(row + (S->zfirst[z] + S->zlen[z] - 1) / 8);
    }
    if (cn->src < S->n)
        __builtin_prefetch(&S->node[cn->src]);
    __builtin_prefetch(&S->node[cn->dst]);
    __builtin_prefetch(&S->lk[cn->src]);
    __builtin_prefetch(&S->lk[cn->dst]);
    if (cn->qn > 0 && cn->q != NULL)
        __builtin_prefetch(&cn->q[cn->qh]);
}

int shoal_sim_run(const struct shoal_sim_config *c, struct shoal_sim_result **out)
{
    struct sim S;
    int rv = -EINVAL;
    memset(&S, 0, sizeof(S));
    S.c = c;
    S.n = c->nodes;
    char why[256];
    if (shoal_sim_config_check(c, why, sizeof(why)) != 0)
        goto out;
    if (c->progress)
        shoal_sim_progress_init(&S.prog, c);
    if ((rv = setup(&S)) != 0)
        goto out;
    if (c->progress) {
        struct shoal_sim_cost k;
        shoal_sim_cost(c, S.nchunks, &k);
        shoal_sim_progress_start(&S.prog, c->nodes, k.transfers, S.r->t_min, stderr);
    }
    bool all_done = false;
    /* The default limit is at most the 30 days max_time may be: a rate
     * given in the wrong unit (--origin 10kbit for 10Gbit, T_min ten days)
     * put it at 27 years of simulated time, which no run reached (an
     * origin of 1e-300 B/s: for ever). */
    double stop_at = c->max_sim_s > 0
                         ? c->max_sim_s
                         : fmin(SHOAL_SIM_TIME_MAX_S,
                                fmax(SHOAL_SIM_AUTO_STOP_MIN_S,
                                     c->join_spread_s + 1000.0 * S.r->t_min));
    while ((S.nheap > 0 || S.nfh > 0 || S.ndqev > 0) && rv == 0) {
        /* The earliest of the heap's top, each delay FIFO's head and the
         * flow heap's top, by (time, sequence). */
        const struct ev *best = S.nheap > 0 ? &S.heap[0] : NULL;
        struct evq *bq = NULL;
        for (uint32_t i = 0; i < S.ndq; i++) {
            struct evq *q = &S.dq[i];
            if (q->n > 0 && (best == NULL || ev_less(&q->v[q->head], best))) {
                best = &q->v[q->head];
                bq = q;
            }
        }
        struct ev e;
        if (S.nfh > 0 && (best == NULL || S.fh[0].t < best->t ||
                          (S.fh[0].t == best->t && S.fh[0].seq < best->seq))) {
            if (S.fh[0].t == INFINITY)
                break; /* only stalled flows left: nothing can happen */
            uint32_t id = S.fh[0].id;
            e = (struct ev){.t = S.fh[0].t, .kind = EV_FLOW, .a = id};
            fh_del(&S, id);
            if (S.nfh > 0)
                prefetch_ends(&S, S.fh[0].id, true);
            if (S.nfh > 1) {
                uint32_t k = 1, end = S.nfh < 1 + FH_D ? S.nfh : 1 + FH_D;
                for (uint32_t i = 2; i < end; i++)
                    if (fh_less(&S.fh[i], &S.fh[k]))
                        k = i;
                prefetch_conn(&S, S.fh[k].id);
            }
        } else if (bq != NULL) {
            e = bq->v[bq->head];
            bq->head = (bq->head + 1) % bq->cap;
            bq->n--;
            S.ndqev--;
            /* Requests mostly follow each other out of the FIFO: the next
             * one's connection, cold in a large fleet, loads meanwhile. */
            if (bq->n > 0)
                prefetch_ends(&S, bq->v[bq->head].a, false);
            if (bq->n > 1)
                prefetch_conn(&S, bq->v[(bq->head + 1) % bq->cap].a);
        } else {
            e = ev_pop(&S);
        }
        if (e.t > stop_at) {
            S.now = stop_at; /* the clock ran to max_time, idle or not */
            S.r->auto_stopped = c->max_sim_s <= 0;
            break;
        }
        S.now = e.t;
        S.r->events++;
        switch (e.kind) {
        case EV_FLOW: {
            struct conn *cn = &S.conn[e.a];
            settle(&S, cn);
            uint32_t chunk = cn->cur;
            rv = deliver(&S, cn->src, cn->dst, chunk, cn->t_req_cur);
            if (rv == 0)
                rv = conn_advance(&S, e.a);
            break;
        }
        case EV_REQ:
            rv = conn_enqueue(&S, e.a, e.b, S.now);
            break;
        case EV_WAKE:
            if (S.node[e.a].wake_ms != UINT64_MAX && ms(S.now) + 1 >= S.node[e.a].wake_ms) {
                S.node[e.a].wake_ms = UINT64_MAX;
                mark_dirty(&S, e.a);
            }
            break;
        case EV_JOIN:
            S.joins_pending--;
            rv = join(&S, e.a);
            break;
        case EV_FAIL:
            S.fails_pending--;
            rv = fail_node(&S, e.a);
            break;
        case EV_ANNOUNCE:
            /* One moved sooner leaves its old event behind: skipped. */
            if (S.node[e.a].alive && e.t == S.node[e.a].announce_s) {
                S.node[e.a].announce_s = INFINITY;
                rv = announce(&S, e.a);
            }
            break;
        case EV_REFRESH: {
            struct node *nd = &S.node[e.a];
            if (!nd->alive || nd->npeers >= c->max_peers)
                break;
            uint32_t before = nd->npeers;
            rv = find_peers(&S, e.a);
            if (nd->npeers > before)
                nd->found_s = S.now;
            /* Keep looking while short of peers, less often once some
             * are there. Early on the tracker knows few nodes (those that
             * announced so far): ask again soon. But a fleet smaller than
             * half the peer set never gets there, and its nodes asked every
             * 20 ms for as long as the run went on (50 events a second
             * each, for nothing): once the tracker has had no one new for
             * a node for 10 s, it asks every 10 s, as a node with peers
             * enough does. (Sooner would change which peers the tracker's
             * random picks give everyone else in fleets that are still
             * joining.) */
            double next = 10.0;
            if (nd->npeers < c->max_peers / 2 && S.now - nd->found_s < 10.0)
                next = nd->npeers ? 0.02 : 0.005;
            if (rv == 0)
                rv = ev_push(&S, S.now + next, EV_REFRESH, e.a, 0);
            break;
        }
        case EV_FORGET:
            rv = forget_node(&S, e.a);
            break;
        case EV_EXPIRE:
            shoal_reg_expire(S.reg, ms(S.now));
            if (S.alive_incomplete > 0 || S.joins_pending > 0)
                rv = ev_push(&S, S.now + 10.0, EV_EXPIRE, 0, 0);
            break;
        }
        if (rv == 0)
            rv = flush_dirty(&S);
        /* Every T_min/10 of simulated time, and every progress_every_s
         * of wall time: a large fleet's first simulated seconds take
         * minutes. The clock is read every 1,024 events (a few ms). */
        if (c->progress &&
            (S.now >= S.prog.next_sim ||
             ((S.r->events & 1023) == 0 && shoal_sim_progress_wall_due(&S.prog))))
            shoal_sim_progress_print(&S.prog, S.now, S.alive_incomplete, S.r->transfers, stderr);
        /* Interrupted (SIGINT): end here, as at max_time. */
        if ((S.r->events & 1023) == 0 && c->stop != NULL && *c->stop) {
            S.r->interrupted = true;
            break;
        }
        /* Everyone live is done and nobody is left to join: stop, even if
         * periodic events or failures remain (those could only kill
         * complete nodes: finish records them). Seeds join complete: with
         * them first, no one is downloading yet while the others still
         * have to join. */
        if (S.alive_incomplete == 0 && S.joins_pending == 0) {
            all_done = true;
            break;
        }
    }
    if (rv == 0)
        rv = finish(&S, all_done);
    if (rv == 0) {
        *out = S.r;
        S.r = NULL;
    }
out:
    if (S.r) {
        free(S.r->node);
        free(S.r->bins);
        free(S.r);
    }
    teardown(&S);
    return rv;
}

int shoal_sim_estimate(const struct shoal_sim_config *c, struct shoal_sim_cost *out)
{
    struct sim S;
    char why[256];
    int rv = -EINVAL;
    memset(&S, 0, sizeof(S));
    S.c = c;
    S.n = c->nodes;
    if (shoal_sim_config_check(c, why, sizeof(why)) != 0)
        return rv;
    /* The chunk sizes as the run draws them (or the manifest's): only the
     * size table is allocated, and teardown frees it. */
    if ((rv = load_sizes(&S)) == 0)
        shoal_sim_cost(c, S.nchunks, out);
    teardown(&S);
    return rv;
}

void shoal_sim_huge_pages(char **argv)
{
    const char *t = getenv("GLIBC_TUNABLES"), *pre = getenv("LD_PRELOAD");
    char buf[1024];
    /* The tunable is read once, at startup: hence the exec. Not under a
     * preloaded allocator or checker (valgrind preloads its own library
     * and does not follow an exec: the run would go on unchecked). */
    if ((t != NULL && strstr(t, "glibc.malloc.hugetlb") != NULL) || (pre != NULL && *pre != '\0'))
        return;
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    bool had = t != NULL && *t != '\0';
    char old[1024];
    if (had && snprintf(old, sizeof(old), "%s", t) >= (int)sizeof(old))
        return;
    int n = snprintf(buf, sizeof(buf), "%s%sglibc.malloc.hugetlb=1", had ? t : "", had ? ":" : "");
    if (len <= 0 || n < 0 || (size_t)n >= sizeof(buf) || setenv("GLIBC_TUNABLES", buf, 1) != 0)
        return;
    /* By its own path, so that the process keeps its name (ps, perf). */
    exe[len] = '\0';
    execv(exe, argv);
    /* Still here: run on with ordinary pages and the caller's setting. */
    if (had)
        (void)setenv("GLIBC_TUNABLES", old, 1);
    else
        (void)unsetenv("GLIBC_TUNABLES");
}

void shoal_sim_result_free(struct shoal_sim_result *r)
{
    if (r == NULL)
        return;
    free(r->node);
    free(r->bins);
    free(r);
}
