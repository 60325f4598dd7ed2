/* SPDX-License-Identifier: MIT */
/*
 * Manifest send queue: bounds the manifest bytes a node has queued for
 * writing at once, across all its peers.
 *
 * A seed answers WANT_MANIFEST with the whole signed manifest (a few MB for
 * a 100 GB release), and every answer is a copy in that peer's write queue
 * until the socket takes it. Many pullers asking together would pile up one
 * copy each; this queue lets requests go out only while the bytes in flight
 * stay within a budget, and holds the rest in arrival order. The first
 * request always goes when nothing is in flight, even if it alone is over
 * the budget, so every request is eventually served.
 *
 * Pure bookkeeping: no I/O, no clock. The owner pushes requests, pops those
 * that may go now and sends them, tells when a peer's bytes are written (a
 * request is done once the peer's sent-byte count reaches the mark given
 * for it) and when a peer is gone (its waiting requests leave, its in-flight
 * ones end). Peers are named by the owner's 64-bit connection ids.
 *
 * A peer that asks and then stops reading would hold its share of the
 * budget for as long as its connection lives, and enough of them would
 * stall every other asker; so the owner expires requests in flight for too
 * long: their bytes stop counting (each peer's own queue cap still bounds
 * what such a peer can hold).
 */
#ifndef SHOAL_MFQ_H
#define SHOAL_MFQ_H

#include <stdbool.h>
#include <stdint.h>

struct shoal_mfq;

/* One request: manifest |id| of |bytes| bytes for connection |peer|.
 * |seq| names it from shoal_mfq_pop() on. */
struct shoal_mfq_req {
    uint64_t seq;
    uint64_t peer;
    uint8_t id[32];
    uint64_t bytes;
};

/*
 * New queue letting |budget| bytes be in flight (over it only for a lone
 * request) and holding at most |max_reqs| requests, waiting and in flight
 * together. Returns 0 (*out set), -EINVAL (a zero argument) or -ENOMEM.
 */
int shoal_mfq_new(struct shoal_mfq **out, uint64_t budget, uint32_t max_reqs);
/* Frees |q| and every request in it (NULL is fine). */
void shoal_mfq_free(struct shoal_mfq *q);

/*
 * Adds a request for |peer| at the back. The same |peer| and |id| already
 * waiting or in flight is not added twice. Returns 0 (added), SHOAL_EEXIST
 * (already there: nothing changed), SHOAL_EBUSY (max_reqs reached: the
 * caller drops the request) or -ENOMEM.
 */
int shoal_mfq_push(struct shoal_mfq *q, uint64_t peer, const uint8_t id[32], uint64_t bytes);

/*
 * The front waiting request, if it may go now (nothing in flight, or it
 * fits the budget with what is): copied to |*out|, and from |now| (any
 * clock the owner keeps, in ms) in flight, its bytes counted, until
 * shoal_mfq_sent()'s mark is written, shoal_mfq_end(), shoal_mfq_expire()
 * or its peer is gone. Returns false when nothing may go. Later requests
 * never overtake the front one.
 */
bool shoal_mfq_pop(struct shoal_mfq *q, uint64_t now, struct shoal_mfq_req *out);

/* In-flight request |seq| was queued on its peer; it is written once the
 * peer's sent-byte count reaches |mark|. Unknown |seq|: nothing. */
void shoal_mfq_sent(struct shoal_mfq *q, uint64_t seq, uint64_t mark);

/* Ends in-flight request |seq| now (it could not be sent). Unknown: nothing. */
void shoal_mfq_end(struct shoal_mfq *q, uint64_t seq);

/* |peer| has written |tx| bytes in all: its in-flight requests whose mark
 * is at most |tx| end. Returns how many ended. */
uint32_t shoal_mfq_written(struct shoal_mfq *q, uint64_t peer, uint64_t tx);

/* Requests that went in flight before |before| end: their bytes stop
 * counting. Returns how many ended. */
uint32_t shoal_mfq_expire(struct shoal_mfq *q, uint64_t before);

/* |peer| is gone: its waiting requests leave the queue and its in-flight
 * ones end (its write queue is freed with it). Returns how many left. */
uint32_t shoal_mfq_peer_gone(struct shoal_mfq *q, uint64_t peer);

/* Bytes in flight now, and the most there ever were. */
uint64_t shoal_mfq_inflight(const struct shoal_mfq *q);
uint64_t shoal_mfq_peak(const struct shoal_mfq *q);
/* Requests waiting. */
uint32_t shoal_mfq_waiting(const struct shoal_mfq *q);

#endif
