/* SPDX-License-Identifier: MIT */
/*
 * A key list read from files and read again when a file changes: how an
 * operator revokes a node key (--deny-keys) on running daemons and
 * trackers without restarting them. Each check costs a stat() per file.
 */
#ifndef SHOAL_KEYWATCH_H
#define SHOAL_KEYWATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"

struct shoal_keywatch;

/*
 * Reads the keys listed in |paths| (|n| files, the trust-file format of
 * keys.h; a file may hold no key yet) into a new *|out|. On error writes
 * the file and the reason to |why|. Returns 0, -ENOMEM or a
 * shoal_keyset_load_file error.
 */
int shoal_keywatch_new(struct shoal_keywatch **out, const char *const *paths, size_t n,
                       char *why, size_t whylen);

/* Frees |w|; NULL is accepted. */
void shoal_keywatch_free(struct shoal_keywatch *w);

/*
 * Reads the files again if any changed since the last read (inode, size,
 * modification time; removed counts as changed, and as empty; one that
 * cannot be looked at (EACCES, EIO, a loop of links) is an error). On success
 * *|changed| says whether the keys were read again. A file that cannot be
 * read keeps the keys read before (all files, all or nothing) and is
 * retried at the next check; |why| says which and why. Returns 0 or the
 * error.
 */
int shoal_keywatch_check(struct shoal_keywatch *w, bool *changed, char *why, size_t whylen);

/* True when |pk| is listed (false for a NULL watch). */
bool shoal_keywatch_contains(const struct shoal_keywatch *w, const uint8_t pk[SHOAL_PUBKEY_LEN]);

/* How many keys are listed. */
size_t shoal_keywatch_count(const struct shoal_keywatch *w);

/* The |i|th key listed (i < shoal_keywatch_count), valid until the next
 * check that reads the files again. */
const uint8_t *shoal_keywatch_key(const struct shoal_keywatch *w, size_t i);

#endif
