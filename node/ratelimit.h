/* SPDX-License-Identifier: MIT */
/*
 * Bandwidth limits: token buckets for the daemon's global and per-peer,
 * upload and download caps (--rate-up, --rate-down, --peer-rate-up,
 * --peer-rate-down; bytes per second).
 *
 * A bucket fills at |rate| bytes per second up to |burst| bytes, and a send
 * (or a read) takes its whole size at once, even when that drives the bucket
 * into debt: a 4 MiB chunk must never wait for a bucket that can only hold
 * 1 MiB. The next transfer then waits until the debt is paid, so over any
 * stretch longer than a few transfers the rate holds. The caller asks how
 * long to wait (shoal_bucket_wait) and arms its own timer: the module reads
 * no clock and does no I/O, so tests drive it with made-up times.
 *
 * Value types on caller storage; one thread (the daemon's loop).
 */
#ifndef SHOAL_RATELIMIT_H
#define SHOAL_RATELIMIT_H

#include <stdint.h>

/* A bucket holds at least this much (or |rate| / 4 if larger), so short
 * idle gaps are not lost and a small chunk never waits on rounding. */
#define SHOAL_RATE_BURST_MIN (64u * 1024u)

struct shoal_bucket {
    uint64_t rate;    /* bytes per second; 0 means unlimited */
    double burst;     /* most tokens held */
    double tokens;    /* may be negative: debt from the last transfer */
    uint64_t last_ms; /* when tokens were last brought up to date */
};

/* A bucket for |rate| bytes/s (0: unlimited), full at |now_ms|. */
void shoal_bucket_init(struct shoal_bucket *b, uint64_t rate, uint64_t now_ms);
/* Milliseconds from |now_ms| until a transfer may start (0: now). Always 0
 * for an unlimited bucket. Times going backwards count as no time. */
uint64_t shoal_bucket_wait(struct shoal_bucket *b, uint64_t now_ms);
/* Takes |n| bytes at |now_ms| (the debt, if any, is paid by waiting). */
void shoal_bucket_take(struct shoal_bucket *b, uint64_t now_ms, uint64_t n);

/* The four caps, bytes/s, 0 for none. */
struct shoal_rate_cfg {
    uint64_t up, down;           /* whole node */
    uint64_t peer_up, peer_down; /* each connection */
};

/* One direction of one connection checked against its own bucket and the
 * node-wide one (which is shared, not owned). */
struct shoal_rate_pair {
    struct shoal_bucket own;
    struct shoal_bucket *global; /* may be NULL */
};

/* Wait until both buckets allow a transfer: the larger of the two. */
uint64_t shoal_rate_pair_wait(struct shoal_rate_pair *r, uint64_t now_ms);
/* Takes |n| bytes from both buckets. */
void shoal_rate_pair_take(struct shoal_rate_pair *r, uint64_t now_ms, uint64_t n);

#endif
