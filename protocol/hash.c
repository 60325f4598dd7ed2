/* SPDX-License-Identifier: MIT */
/*
 * Chunk ids (BLAKE2b-256), file digests (SHA-256) and hex. See hash.h. The
 * libsodium calls below cannot fail for the fixed, valid output and key
 * lengths we pass, so the wrappers return nothing.
 */
#include "hash.h"

#include "error.h"

int shoal_hash_init(void)
{
    /* sodium_init returns 1 when already initialized: that is success. */
    return sodium_init() < 0 ? -1 : 0;
}

void shoal_chunk_id(uint8_t out[SHOAL_HASH_LEN], const void *data, size_t len)
{
    crypto_generichash(out, SHOAL_HASH_LEN, data, len, NULL, 0);
}

void shoal_sha256_init(struct shoal_sha256 *s)
{
    crypto_hash_sha256_init(&s->st);
}

void shoal_sha256_update(struct shoal_sha256 *s, const void *data, size_t len)
{
    crypto_hash_sha256_update(&s->st, data, len);
}

void shoal_sha256_final(struct shoal_sha256 *s, uint8_t out[SHOAL_HASH_LEN])
{
    crypto_hash_sha256_final(&s->st, out);
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
