/* SPDX-License-Identifier: MIT */
/*
 * The node keys shoald refuses for a while: a node that sent a bad chunk
 * or broke the protocol is banned for some seconds, and a bad chunk is
 * remembered as a strike, so that a second one soon after can be punished
 * harder than the first (an honest seed whose disk rotted gets one short
 * ban; a liar the full one).
 *
 * The list is bounded: a new key takes the slot of a ban that is over and
 * whose strike is forgotten, or, with every slot live, the ban that ends
 * first. No clock and no I/O: callers pass the time (a monotonic ms
 * clock). One thread.
 */
#ifndef SHOAL_BANLIST_H
#define SHOAL_BANLIST_H

#include <stdbool.h>
#include <stdint.h>

struct shoal_banlist;

/* A list holding at most |cap| keys (at least 1). Returns 0, -EINVAL or
 * -ENOMEM; writes |*out| only on success. */
int shoal_banlist_new(struct shoal_banlist **out, uint32_t cap);
/* Frees; NULL is fine. */
void shoal_banlist_free(struct shoal_banlist *bl);

/* Whether |pk| is banned at |now_ms|. */
bool shoal_banlist_banned(const struct shoal_banlist *bl, const uint8_t pk[32], uint64_t now_ms);

/* Whether |pk| had a strike less than |window_ms| before |now_ms|. */
bool shoal_banlist_struck_within(const struct shoal_banlist *bl, const uint8_t pk[32],
                                 uint64_t now_ms, uint64_t window_ms);

/* Bans |pk| from |now_ms| for |ban_ms|; a ban already running longer is
 * kept (a ban is never shortened). |strike|: the ban is for a bad chunk,
 * remembered at |now_ms| for shoal_banlist_struck_within. |window_ms| is
 * how long strikes are remembered: a slot whose ban is over and whose
 * strike is older than that may go to another key. */
void shoal_banlist_add(struct shoal_banlist *bl, const uint8_t pk[32], uint64_t now_ms,
                       uint64_t ban_ms, bool strike, uint64_t window_ms);

/* How many keys are banned at |now_ms|; |*next_end_ms| (if not NULL)
 * gets the time left until the first of those bans ends (UINT64_MAX with
 * none). */
uint32_t shoal_banlist_active(const struct shoal_banlist *bl, uint64_t now_ms,
                              uint64_t *next_end_ms);

#endif
