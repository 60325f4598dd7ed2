/* SPDX-License-Identifier: MIT */
/*
 * SHA-256 compression with the x86 SHA extensions (SHA-NI). Internal to
 * hash.c, which owns the streaming state (buffering, padding) and decides at
 * run time whether this code may run; libsodium's SHA-256, the fallback,
 * does not use these instructions and is several times slower on CPUs that
 * have them.
 */
#ifndef SHOAL_SHA256_NI_H
#define SHOAL_SHA256_NI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when this build has the SHA-NI code and the CPU it runs on has the
 * SHA, SSSE3 and SSE4.1 instructions it uses. Cheap after the first call. */
bool shoal_sha256_ni_available(void);

/* Runs the compression function over |nblocks| 64-byte blocks at |data|,
 * updating the eight state words |h| (a..h, native integers). Only call it
 * when shoal_sha256_ni_available() is true. */
void shoal_sha256_ni_blocks(uint32_t h[8], const uint8_t *data, size_t nblocks);

#endif
