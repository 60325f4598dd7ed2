/* SPDX-License-Identifier: MIT */
/*
 * Per-source budgets for work a connection can make the node do before it
 * has proven anything: a token bucket for each source (netsrc.h: an IPv4
 * address or an IPv6 /64) that fills at |rate| a second up to |burst|.
 * The daemon spends one token for each inbound HELLO it verifies, so a
 * replayed HELLO (every node sends its own in clear to whatever it dials)
 * costs the node at most |rate| credential checks and answers a second per
 * source, while other sources keep their own budget.
 *
 * The table is bounded (SHOAL_SRCLIMIT_SLOTS): a source not seen recently
 * takes the slot of one whose bucket has refilled, or else of the one
 * nearest to full, so sources beyond the table's size are limited
 * approximately (never refused for lack of room). Slots are found by a
 * keyed hash, so nobody can aim sources at another's slot. No clock and
 * no I/O: the caller passes the time. One thread.
 */
#ifndef SHOAL_SRCLIMIT_H
#define SHOAL_SRCLIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "netsrc.h"

#define SHOAL_SRCLIMIT_SLOTS 1024u

struct shoal_srclimit;

/* A table of buckets of |rate| tokens a second holding at most |burst|
 * (at least 1). |rate| 0 means no limit. Returns 0, -EINVAL (|burst| 0
 * with a rate), -EIO (libsodium could not start) or -ENOMEM; writes |*out|
 * only on success. */
int shoal_srclimit_new(struct shoal_srclimit **out, uint32_t rate, uint32_t burst);
/* Frees; NULL is fine. */
void shoal_srclimit_free(struct shoal_srclimit *l);

/* Takes one token of source |key| at |now_ms| (a monotonic clock): true if
 * it had one (always without a limit), false if its budget is spent. */
bool shoal_srclimit_take(struct shoal_srclimit *l, const uint8_t key[SHOAL_SRC_KEY_LEN],
                         uint64_t now_ms);

#endif
