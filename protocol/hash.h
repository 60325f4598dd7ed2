/* SPDX-License-Identifier: MIT */
/*
 * Hashing for content addressing. A chunk's id is BLAKE2b-256 of its bytes
 * (libsodium crypto_generichash, unkeyed); a whole file is also checked
 * against SHA-256, because that is the Hub's LFS oid. Thin value-type
 * wrappers over libsodium's streaming states, plus hex conversion for ids and
 * digests in logs, paths and the HF cache layout. No I/O, no allocation.
 */
#ifndef SHOAL_HASH_H
#define SHOAL_HASH_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#define SHOAL_HASH_LEN 32

/* Initializes libsodium (sodium_init), which also picks the fastest BLAKE2b
 * and SHA-256 code for this CPU. Idempotent and thread-safe; call it once at
 * startup, before hashing: without it the hash functions still give correct
 * results but may run the portable (slower) code. Returns 0, or -1 if
 * libsodium could not be initialized. */
int shoal_hash_init(void);

/* Writes the chunk id of |len| bytes at |data| to |out|: unkeyed
 * BLAKE2b-256. |data| may be NULL when |len| is 0. */
void shoal_chunk_id(uint8_t out[SHOAL_HASH_LEN], const void *data, size_t len);

/* Streaming SHA-256 on caller storage; nothing to free. After final the state
 * must be initialized again before reuse. A state keeps the implementation
 * it was initialized with (see shoal_sha256_select); fields are private. */
struct shoal_sha256 {
    union {
        crypto_hash_sha256_state sodium;
        struct {
            uint32_t h[8];     /* chaining value a..h */
            uint64_t bytes;    /* message length so far */
            uint8_t buf[64];   /* partial block; bytes % 64 of it used */
        } ni;
    } u;
    int impl;                  /* enum shoal_sha256_impl, never AUTO */
};
void shoal_sha256_init(struct shoal_sha256 *s);
void shoal_sha256_update(struct shoal_sha256 *s, const void *data, size_t len);
void shoal_sha256_final(struct shoal_sha256 *s, uint8_t out[SHOAL_HASH_LEN]);

/* SHA-256 implementations. SHANI is our own code on the x86 SHA extensions
 * (several times faster than libsodium, which does not use them); SODIUM is
 * libsodium's portable code, the fallback. */
enum shoal_sha256_impl {
    SHOAL_SHA256_AUTO = 0,    /* SHANI when the CPU has it, else SODIUM */
    SHOAL_SHA256_SODIUM = 1,
    SHOAL_SHA256_SHANI = 2,
};

/* Chooses the implementation that later shoal_sha256_init calls use (states
 * already initialized keep theirs). Without a call it is AUTO, except that
 * the environment variable SHOAL_SHA256=sodium forces SODIUM (for comparing
 * the two, or to rule ours out). Meant for startup and tests: not
 * synchronized with concurrent shoal_sha256_init calls beyond each seeing
 * either the old or the new choice. Returns 0, or -ENOTSUP if |impl| is
 * SHANI and this CPU or build cannot run it, or -EINVAL for an unknown
 * value. */
int shoal_sha256_select(enum shoal_sha256_impl impl);

/* The implementation shoal_sha256_init currently picks: SODIUM or SHANI. */
enum shoal_sha256_impl shoal_sha256_impl(void);

/* Streaming unkeyed BLAKE2b with a 32-byte output, equal to shoal_chunk_id
 * of the concatenated input. Same lifecycle as shoal_sha256. */
struct shoal_blake2b {
    crypto_generichash_state st;
};
void shoal_blake2b_init(struct shoal_blake2b *b);
void shoal_blake2b_update(struct shoal_blake2b *b, const void *data, size_t len);
void shoal_blake2b_final(struct shoal_blake2b *b, uint8_t out[SHOAL_HASH_LEN]);

/* Writes |n| bytes of |in| as 2n lowercase hex digits plus a NUL to |out|,
 * which must hold 2n+1 chars. */
void shoal_hex(char *out, const uint8_t *in, size_t n);

/* Parses exactly |n| bytes from |hexlen| hex digits at |hex| (upper or lower
 * case; |hex| need not be NUL-terminated). Returns 0, or SHOAL_EPROTO if
 * |hexlen| is not 2n or a character is not a hex digit; |out| is written only
 * on success. */
int shoal_unhex(uint8_t *out, size_t n, const char *hex, size_t hexlen);

#endif
