/* SPDX-License-Identifier: MIT */
/* Per-source token buckets (see srclimit.h). */
#include "srclimit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* Slots are in sets of WAYS: a source lives in one set, chosen by hash. */
#define WAYS 8u
#define SETS (SHOAL_SRCLIMIT_SLOTS / WAYS)

struct slot {
    uint8_t key[SHOAL_SRC_KEY_LEN];
    uint64_t milli;   /* tokens x 1000 at last_ms */
    uint64_t last_ms;
    bool used;
};

struct shoal_srclimit {
    uint64_t rate;      /* tokens a second = milli-tokens a millisecond */
    uint64_t cap;       /* burst x 1000 */
    uint8_t hkey[crypto_shorthash_KEYBYTES];
    struct slot slots[SHOAL_SRCLIMIT_SLOTS];
};

int shoal_srclimit_new(struct shoal_srclimit **out, uint32_t rate, uint32_t burst)
{
    struct shoal_srclimit *l;

    if (rate && !burst)
        return -EINVAL;
    if (sodium_init() < 0)
        return -EIO;
    l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->rate = rate;
    l->cap = (uint64_t)burst * 1000;
    randombytes_buf(l->hkey, sizeof l->hkey);
    *out = l;
    return 0;
}

void shoal_srclimit_free(struct shoal_srclimit *l)
{
    free(l);
}

/* Brings |s|'s tokens up to |now_ms|. Time going backwards adds nothing. */
static void refill(const struct shoal_srclimit *l, struct slot *s, uint64_t now_ms)
{
    if (now_ms > s->last_ms) {
        uint64_t dt = now_ms - s->last_ms;
        /* dt * rate overflows only after ages; then the bucket is full. */
        if (dt > l->cap / (l->rate ? l->rate : 1))
            s->milli = l->cap;
        else
            s->milli = s->milli + dt * l->rate > l->cap ? l->cap : s->milli + dt * l->rate;
        s->last_ms = now_ms;
    }
}

bool shoal_srclimit_take(struct shoal_srclimit *l, const uint8_t key[SHOAL_SRC_KEY_LEN],
                         uint64_t now_ms)
{
    uint8_t h[crypto_shorthash_BYTES];
    uint32_t v;
    struct slot *set, *s = NULL;

    if (!l->rate)
        return true;
    crypto_shorthash(h, key, SHOAL_SRC_KEY_LEN, l->hkey);
    memcpy(&v, h, sizeof v);
    set = &l->slots[(v % SETS) * WAYS];
    for (uint32_t i = 0; i < WAYS && !s; i++) {
        if (set[i].used && memcmp(set[i].key, key, SHOAL_SRC_KEY_LEN) == 0)
            s = &set[i];
    }
    if (!s) {
        /* A new source takes a free slot, else the one nearest to full: a
         * full bucket is no different from a source never seen. */
        for (uint32_t i = 0; i < WAYS; i++) {
            if (!set[i].used) {
                s = &set[i];
                break;
            }
            refill(l, &set[i], now_ms);
            if (!s || set[i].milli > s->milli)
                s = &set[i];
        }
        memcpy(s->key, key, SHOAL_SRC_KEY_LEN);
        s->used = true;
        s->milli = l->cap;
        s->last_ms = now_ms;
    }
    refill(l, s, now_ms);
    if (s->milli < 1000)
        return false;
    s->milli -= 1000;
    return true;
}
