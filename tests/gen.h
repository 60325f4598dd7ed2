/* SPDX-License-Identifier: MIT */
/*
 * Deterministic test data shared by the codec tests: an xorshift stream,
 * bf16 "weights" drawn from N(0, std) as trained models hold them, and
 * incompressible bytes. Header-only (static), one stream per test program.
 */
#ifndef SHOAL_TESTS_GEN_H
#define SHOAL_TESTS_GEN_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static uint64_t gen_rng = 0x9e3779b97f4a7c15ull;

static inline uint64_t next_u64(void)
{
    gen_rng ^= gen_rng << 13;
    gen_rng ^= gen_rng >> 7;
    gen_rng ^= gen_rng << 17;
    return gen_rng;
}

static inline double next_unit(void)
{
    return ((double)(next_u64() >> 11) + 0.5) / 9007199254740992.0;
}

/* bf16 from N(0, std) (Box-Muller), rounded to nearest even; an odd last
 * byte gets a fixed value. */
static inline void fill_bf16(uint8_t *p, size_t len, double std)
{
    for (size_t i = 0; i + 1 < len; i += 2) {
        double u1 = next_unit(), u2 = next_unit();
        float f = (float)(std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
        uint32_t bits;
        memcpy(&bits, &f, 4);
        bits += 0x7fff + ((bits >> 16) & 1);
        p[i] = (uint8_t)(bits >> 16);
        p[i + 1] = (uint8_t)(bits >> 24);
    }
    if (len & 1)
        p[len - 1] = 0x3c;
}

static inline void fill_random(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)next_u64();
}

#endif
