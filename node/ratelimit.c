/* SPDX-License-Identifier: MIT */
/* Token buckets for bandwidth caps (see ratelimit.h). */
#include "ratelimit.h"

#include <math.h>

static void refill(struct shoal_bucket *b, uint64_t now_ms)
{
    if (now_ms > b->last_ms) {
        b->tokens += (double)b->rate * (double)(now_ms - b->last_ms) / 1000.0;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ms = now_ms;
    }
}

void shoal_bucket_init(struct shoal_bucket *b, uint64_t rate, uint64_t now_ms)
{
    b->rate = rate;
    b->burst = (double)rate / 4.0;
    if (b->burst < SHOAL_RATE_BURST_MIN)
        b->burst = SHOAL_RATE_BURST_MIN;
    b->tokens = b->burst;
    b->last_ms = now_ms;
}

uint64_t shoal_bucket_wait(struct shoal_bucket *b, uint64_t now_ms)
{
    if (b->rate == 0)
        return 0;
    refill(b, now_ms);
    if (b->tokens >= 0)
        return 0;
    /* Round up: waking a millisecond early would only wait again. */
    return (uint64_t)ceil(-b->tokens * 1000.0 / (double)b->rate);
}

void shoal_bucket_take(struct shoal_bucket *b, uint64_t now_ms, uint64_t n)
{
    if (b->rate == 0)
        return;
    refill(b, now_ms);
    b->tokens -= (double)n;
}

uint64_t shoal_rate_pair_wait(struct shoal_rate_pair *r, uint64_t now_ms)
{
    uint64_t a = shoal_bucket_wait(&r->own, now_ms);
    uint64_t g = r->global ? shoal_bucket_wait(r->global, now_ms) : 0;
    return a > g ? a : g;
}

void shoal_rate_pair_take(struct shoal_rate_pair *r, uint64_t now_ms, uint64_t n)
{
    shoal_bucket_take(&r->own, now_ms, n);
    if (r->global)
        shoal_bucket_take(r->global, now_ms, n);
}
