/* SPDX-License-Identifier: MIT */
/*
 * Allocation failure on demand for tests linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free,
 * --wrap=strdup,--wrap=strndup,--wrap=posix_memalign,--wrap=aligned_alloc,
 * --wrap=realpath,--wrap=getline,--wrap=__getdelim,--wrap=open_memstream,
 * --wrap=asprintf,--wrap=vasprintf
 * (tests/meson.build: failalloc_link_args): the project's own calls go
 * through failalloc.c, which can make the Nth of them fail and counts the
 * blocks they hold, so a test can walk every allocation failure a piece of
 * code can meet and check that each one ends in a clean error, with
 * nothing leaked. Libraries' own allocations (libsodium, msgpack, zstd,
 * libc inside itself) are not seen.
 */
#ifndef SHOAL_FAILALLOC_H
#define SHOAL_FAILALLOC_H

#include <stdbool.h>
#include <stdint.h>

/* The |n|th allocation from now fails (once); 0 disarms. */
void failalloc_arm(uint64_t n);
/* Disarms, keeping whether the armed failure happened: a scenario checks
 * what its failure left with every allocation working again. */
void failalloc_disarm(void);
/* Whether the armed failure happened since the last failalloc_arm. */
bool failalloc_fired(void);
/* Blocks allocated through the wrappers and not yet freed. */
int64_t failalloc_live(void);

/*
 * Runs |fn|(|user|) with its Nth allocation failing, for N = 1, 2, ...
 * until a run meets no failure (at most |max| runs). Each run must hold no
 * more blocks after it than before, and the run without a failure must
 * return 0; a run that met a failure may return anything (|fn| checks
 * whatever a success must mean). Prints each problem and the number of
 * allocations walked to stderr, and returns the number of problems (also
 * counting a walk that met no allocation at all, or reached |max|).
 */
int failalloc_walk(const char *name, int (*fn)(void *user), void *user, uint64_t max);

#endif
