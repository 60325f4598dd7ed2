/* SPDX-License-Identifier: MIT */
/*
 * Bans of node keys (see banlist.h): a small array searched linearly. It
 * holds at most a few hundred keys and is read once per handshake or dial,
 * far less often than anything a hash table would speed up.
 */
#include "banlist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ban {
    uint8_t pk[32];
    uint64_t until_ms;
    uint64_t strike_ms; /* its last bad chunk (0: none) */
};

struct shoal_banlist {
    uint32_t cap, n;
    struct ban b[];
};

int shoal_banlist_new(struct shoal_banlist **out, uint32_t cap)
{
    struct shoal_banlist *bl;

    if (!out || cap == 0 || cap > (1u << 20))
        return -EINVAL;
    bl = calloc(1, sizeof *bl + (size_t)cap * sizeof bl->b[0]);
    if (!bl)
        return -ENOMEM;
    bl->cap = cap;
    *out = bl;
    return 0;
}

void shoal_banlist_free(struct shoal_banlist *bl)
{
    free(bl);
}

static const struct ban *find(const struct shoal_banlist *bl, const uint8_t pk[32])
{
    for (uint32_t i = 0; i < bl->n; i++) {
        if (memcmp(bl->b[i].pk, pk, 32) == 0)
            return &bl->b[i];
    }
    return NULL;
}

bool shoal_banlist_banned(const struct shoal_banlist *bl, const uint8_t pk[32], uint64_t now_ms)
{
    const struct ban *b = find(bl, pk);
    return b && b->until_ms > now_ms;
}

bool shoal_banlist_struck_within(const struct shoal_banlist *bl, const uint8_t pk[32],
                                 uint64_t now_ms, uint64_t window_ms)
{
    const struct ban *b = find(bl, pk);
    return b && b->strike_ms && now_ms - b->strike_ms < window_ms;
}

void shoal_banlist_add(struct shoal_banlist *bl, const uint8_t pk[32], uint64_t now_ms,
                       uint64_t ban_ms, bool strike, uint64_t window_ms)
{
    const struct ban *found = find(bl, pk);
    uint64_t until = now_ms + ban_ms;
    uint32_t slot = found ? (uint32_t)(found - bl->b) : bl->n;
    struct ban *b;

    /* A slot is free once its ban is over and its strike forgotten. */
    for (uint32_t i = 0; !found && i < bl->n; i++) {
        if (bl->b[i].until_ms <= now_ms &&
            (!bl->b[i].strike_ms || now_ms - bl->b[i].strike_ms >= window_ms)) {
            slot = i;
            break;
        }
    }
    if (slot == bl->cap) {
        /* Full of live bans: the one ending first goes (slot 0 every time
         * would let each new ban undo the last). */
        slot = 0;
        for (uint32_t i = 1; i < bl->n; i++) {
            if (bl->b[i].until_ms < bl->b[slot].until_ms)
                slot = i;
        }
    }
    b = &bl->b[slot];
    if (!found) /* a new slot, or another key's */
        memset(b, 0, sizeof *b);
    memcpy(b->pk, pk, 32);
    if (until > b->until_ms)
        b->until_ms = until;
    if (strike)
        b->strike_ms = now_ms;
    if (slot == bl->n)
        bl->n++;
}

uint32_t shoal_banlist_active(const struct shoal_banlist *bl, uint64_t now_ms,
                              uint64_t *next_end_ms)
{
    uint64_t next = UINT64_MAX;
    uint32_t n = 0;

    for (uint32_t i = 0; i < bl->n; i++) {
        if (bl->b[i].until_ms > now_ms) {
            n++;
            if (bl->b[i].until_ms - now_ms < next)
                next = bl->b[i].until_ms - now_ms;
        }
    }
    if (next_end_ms)
        *next_end_ms = next;
    return n;
}
