/* SPDX-License-Identifier: MIT */
/*
 * Chunk ids (BLAKE2b-256), file digests (SHA-256) and hex. See hash.h. The
 * libsodium calls below cannot fail for the fixed, valid output and key
 * lengths we pass, so the wrappers return nothing.
 *
 * SHA-256 has two implementations behind one streaming state: libsodium's,
 * and our SHA-NI block function (sha256_ni.c) with the buffering and
 * padding of FIPS 180-4 done here. Whole files go through SHA-256 when they
 * are published and again when the store finishes them, and libsodium's
 * portable code ran at a third of the speed of BLAKE2b, so where the CPU has
 * the SHA extensions we use them.
 */
#include "hash.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sha256_ni.h"

/* enum shoal_sha256_impl new states use; AUTO until first resolved. */
static atomic_int sha256_choice;

/* The default choice: the environment can force libsodium, else the fastest
 * the CPU runs. */
static int sha256_default(void)
{
    const char *env = getenv("SHOAL_SHA256");

    if (env && strcmp(env, "sodium") == 0)
        return SHOAL_SHA256_SODIUM;
    return shoal_sha256_ni_available() ? SHOAL_SHA256_SHANI : SHOAL_SHA256_SODIUM;
}

static int sha256_current(void)
{
    int v = atomic_load_explicit(&sha256_choice, memory_order_relaxed);

    if (v == SHOAL_SHA256_AUTO) {
        /* Racing first calls compute the same value. */
        v = sha256_default();
        atomic_store_explicit(&sha256_choice, v, memory_order_relaxed);
    }
    return v;
}

int shoal_hash_init(void)
{
    int rv = -1;

    /* sodium_init returns 1 when already initialized: that is success. */
    if (sodium_init() < 0)
        goto out;
    /* Resolve the choice now, so getenv runs at startup and not from
     * whichever thread hashes first. */
    (void)sha256_current();
    rv = 0;
out:
    return rv;
}

int shoal_sha256_select(enum shoal_sha256_impl impl)
{
    int v, rv = 0;

    switch (impl) {
    case SHOAL_SHA256_AUTO:
        v = sha256_default();
        break;
    case SHOAL_SHA256_SODIUM:
        v = SHOAL_SHA256_SODIUM;
        break;
    case SHOAL_SHA256_SHANI:
        v = SHOAL_SHA256_SHANI;
        if (!shoal_sha256_ni_available())
            rv = -ENOTSUP;
        break;
    default:
        rv = -EINVAL;
        break;
    }
    if (rv == 0)
        atomic_store_explicit(&sha256_choice, v, memory_order_relaxed);
    return rv;
}

enum shoal_sha256_impl shoal_sha256_impl(void)
{
    return (enum shoal_sha256_impl)sha256_current();
}

void shoal_chunk_id(uint8_t out[SHOAL_HASH_LEN], const void *data, size_t len)
{
    crypto_generichash(out, SHOAL_HASH_LEN, data, len, NULL, 0);
}

/* SHA-256 initial hash value (FIPS 180-4, 5.3.3). */
static const uint32_t sha256_iv[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

void shoal_sha256_init(struct shoal_sha256 *s)
{
    s->impl = sha256_current();
    if (s->impl == SHOAL_SHA256_SHANI) {
        memcpy(s->u.ni.h, sha256_iv, sizeof(sha256_iv));
        s->u.ni.bytes = 0;
    } else {
        crypto_hash_sha256_init(&s->u.sodium);
    }
}

/* Buffered update over the SHA-NI block function: top up a partial block,
 * then run whole blocks straight from |p| without copying them. */
static void ni_update(struct shoal_sha256 *s, const uint8_t *p, size_t len)
{
    size_t used = (size_t)(s->u.ni.bytes % 64);

    s->u.ni.bytes += len;
    if (used > 0) {
        size_t take = 64 - used < len ? 64 - used : len;

        memcpy(s->u.ni.buf + used, p, take);
        p += take;
        len -= take;
        if (used + take < 64)
            return;
        shoal_sha256_ni_blocks(s->u.ni.h, s->u.ni.buf, 1);
    }
    if (len >= 64) {
        shoal_sha256_ni_blocks(s->u.ni.h, p, len / 64);
        p += len / 64 * 64;
        len %= 64;
    }
    if (len > 0)
        memcpy(s->u.ni.buf, p, len);
}

void shoal_sha256_update(struct shoal_sha256 *s, const void *data, size_t len)
{
    /* memcpy from a NULL pointer is undefined even for 0 bytes. */
    if (len == 0)
        return;
    if (s->impl == SHOAL_SHA256_SHANI)
        ni_update(s, data, len);
    else
        crypto_hash_sha256_update(&s->u.sodium, data, len);
}

static void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Padding: a 1 bit, zeros up to 56 mod 64, then the length in bits as a
 * big-endian 64-bit number. */
static void ni_final(struct shoal_sha256 *s, uint8_t out[SHOAL_HASH_LEN])
{
    uint64_t bits = s->u.ni.bytes * 8;
    size_t used = (size_t)(s->u.ni.bytes % 64);
    uint8_t *b = s->u.ni.buf;

    b[used++] = 0x80;
    if (used > 56) {
        memset(b + used, 0, 64 - used);
        shoal_sha256_ni_blocks(s->u.ni.h, b, 1);
        used = 0;
    }
    memset(b + used, 0, 56 - used);
    store_be32(b + 56, (uint32_t)(bits >> 32));
    store_be32(b + 60, (uint32_t)bits);
    shoal_sha256_ni_blocks(s->u.ni.h, b, 1);
    for (size_t i = 0; i < 8; i++)
        store_be32(out + 4 * i, s->u.ni.h[i]);
}

void shoal_sha256_final(struct shoal_sha256 *s, uint8_t out[SHOAL_HASH_LEN])
{
    if (s->impl == SHOAL_SHA256_SHANI)
        ni_final(s, out);
    else
        crypto_hash_sha256_final(&s->u.sodium, out);
    /* Wipe: the state can hold the tail of a secret input. */
    sodium_memzero(s, sizeof(*s));
}

void shoal_blake2b_init(struct shoal_blake2b *b)
{
    crypto_generichash_init(&b->st, NULL, 0, SHOAL_HASH_LEN);
}

void shoal_blake2b_update(struct shoal_blake2b *b, const void *data, size_t len)
{
    crypto_generichash_update(&b->st, data, len);
}

void shoal_blake2b_final(struct shoal_blake2b *b, uint8_t out[SHOAL_HASH_LEN])
{
    crypto_generichash_final(&b->st, out, SHOAL_HASH_LEN);
}

void shoal_hex(char *out, const uint8_t *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * n] = '\0';
}

/* Value of one hex digit, or -1. */
static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int shoal_unhex(uint8_t *out, size_t n, const char *hex, size_t hexlen)
{
    int rv = SHOAL_EPROTO;

    /* n > SIZE_MAX / 2 would make 2n wrap around to a small hexlen. */
    if (n > SIZE_MAX / 2 || hexlen != 2 * n)
        goto out;
    /* Validate everything first so |out| is untouched on error. */
    for (size_t i = 0; i < hexlen; i++) {
        if (hex_digit(hex[i]) < 0)
            goto out;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(hex_digit(hex[2 * i]) << 4 | hex_digit(hex[2 * i + 1]));
    rv = 0;
out:
    return rv;
}
