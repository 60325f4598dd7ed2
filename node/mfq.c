/* SPDX-License-Identifier: MIT */
/*
 * Manifest send queue (see mfq.h). One array holds every request in arrival
 * order, waiting and in flight alike; a few hundred peers ask at most once
 * per release each, so removal by moving the tail down is cheap enough.
 */
#include "mfq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* Not yet given a mark: not written until shoal_mfq_sent() says so. */
#define NO_MARK UINT64_MAX

struct entry {
    struct shoal_mfq_req r;
    bool flying;
    uint64_t mark;
    uint64_t since; /* when it went in flight */
};

struct shoal_mfq {
    struct entry *v;
    uint32_t n, cap, max;
    uint32_t nwait;
    uint64_t budget, inflight, peak, next_seq;
};

int shoal_mfq_new(struct shoal_mfq **out, uint64_t budget, uint32_t max_reqs)
{
    struct shoal_mfq *q;

    if (!out || budget == 0 || max_reqs == 0)
        return -EINVAL;
    q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    q->budget = budget;
    q->max = max_reqs;
    q->next_seq = 1;
    *out = q;
    return 0;
}

void shoal_mfq_free(struct shoal_mfq *q)
{
    if (!q)
        return;
    free(q->v);
    free(q);
}

static void remove_at(struct shoal_mfq *q, uint32_t i)
{
    if (q->v[i].flying)
        q->inflight -= q->v[i].r.bytes;
    else
        q->nwait--;
    memmove(&q->v[i], &q->v[i + 1], (size_t)(q->n - i - 1) * sizeof q->v[0]);
    q->n--;
}

int shoal_mfq_push(struct shoal_mfq *q, uint64_t peer, const uint8_t id[32], uint64_t bytes)
{
    struct entry *e;

    for (uint32_t i = 0; i < q->n; i++) {
        if (q->v[i].r.peer == peer && memcmp(q->v[i].r.id, id, 32) == 0)
            return SHOAL_EEXIST;
    }
    if (q->n >= q->max)
        return SHOAL_EBUSY;
    if (q->n == q->cap) {
        uint32_t cap = q->cap ? q->cap * 2 : 16;
        struct entry *v;
        if (cap > q->max)
            cap = q->max;
        v = realloc(q->v, (size_t)cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        q->v = v;
        q->cap = cap;
    }
    e = &q->v[q->n++];
    memset(e, 0, sizeof *e);
    e->r.seq = q->next_seq++;
    e->r.peer = peer;
    memcpy(e->r.id, id, 32);
    e->r.bytes = bytes;
    e->mark = NO_MARK;
    q->nwait++;
    return 0;
}

bool shoal_mfq_pop(struct shoal_mfq *q, uint64_t now, struct shoal_mfq_req *out)
{
    struct entry *e = NULL;

    for (uint32_t i = 0; i < q->n && !e; i++) {
        if (!q->v[i].flying)
            e = &q->v[i];
    }
    if (!e)
        return false;
    /* Written as a subtraction: |bytes| comes from the owner and may be
     * anything, the sum could wrap. */
    if (q->inflight > 0 && (e->r.bytes > q->budget || q->inflight > q->budget - e->r.bytes))
        return false;
    e->flying = true;
    e->since = now;
    q->nwait--;
    q->inflight += e->r.bytes;
    if (q->inflight > q->peak)
        q->peak = q->inflight;
    *out = e->r;
    return true;
}

static struct entry *find_flying(struct shoal_mfq *q, uint64_t seq, uint32_t *at)
{
    for (uint32_t i = 0; i < q->n; i++) {
        if (q->v[i].r.seq == seq && q->v[i].flying) {
            *at = i;
            return &q->v[i];
        }
    }
    return NULL;
}

void shoal_mfq_sent(struct shoal_mfq *q, uint64_t seq, uint64_t mark)
{
    uint32_t i;
    struct entry *e = find_flying(q, seq, &i);
    if (e)
        e->mark = mark;
}

void shoal_mfq_end(struct shoal_mfq *q, uint64_t seq)
{
    uint32_t i;
    if (find_flying(q, seq, &i))
        remove_at(q, i);
}

/* One test per sweep below; |a| and |b| are the values that sweep compares
 * against (a peer, a mark, a time). */
typedef bool (*entry_match)(const struct entry *e, uint64_t a, uint64_t b);

/* Removes every entry |match| accepts, keeping the others in arrival order.
 * Returns how many went. */
static uint32_t remove_matching(struct shoal_mfq *q, entry_match match, uint64_t a, uint64_t b)
{
    uint32_t removed = 0, i = 0;

    while (i < q->n) {
        if (match(&q->v[i], a, b)) {
            remove_at(q, i);
            removed++;
        } else {
            i++;
        }
    }
    return removed;
}

static bool written_to(const struct entry *e, uint64_t peer, uint64_t tx)
{
    return e->flying && e->r.peer == peer && e->mark != NO_MARK && e->mark <= tx;
}

static bool flying_since_before(const struct entry *e, uint64_t before, uint64_t unused)
{
    (void)unused;
    return e->flying && e->since < before;
}

static bool asked_by(const struct entry *e, uint64_t peer, uint64_t unused)
{
    (void)unused;
    return e->r.peer == peer;
}

uint32_t shoal_mfq_written(struct shoal_mfq *q, uint64_t peer, uint64_t tx)
{
    return remove_matching(q, written_to, peer, tx);
}

uint32_t shoal_mfq_expire(struct shoal_mfq *q, uint64_t before)
{
    return remove_matching(q, flying_since_before, before, 0);
}

uint32_t shoal_mfq_peer_gone(struct shoal_mfq *q, uint64_t peer)
{
    return remove_matching(q, asked_by, peer, 0);
}

uint64_t shoal_mfq_inflight(const struct shoal_mfq *q) { return q->inflight; }
uint64_t shoal_mfq_peak(const struct shoal_mfq *q) { return q->peak; }
uint32_t shoal_mfq_waiting(const struct shoal_mfq *q) { return q->nwait; }
