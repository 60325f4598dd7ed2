/* SPDX-License-Identifier: MIT */
/*
 * SHA-256 block function on the SHA extensions, written from Intel's
 * description of the instructions (sha256rnds2, sha256msg1, sha256msg2).
 * See sha256_ni.h. Compiled with per-function target attributes, not
 * -msha, so the rest of the build stays portable and the code only runs
 * after the CPUID check below says it may.
 *
 * The instructions keep the eight working variables in two registers, not
 * in order: one holds A,B,E,F and the other C,D,G,H (A and C in the top
 * lane). sha256rnds2 runs two rounds and returns the new A,B,E,F; the old
 * A,B,E,F are then the new C,D,G,H, so the two registers swap roles every
 * two rounds and nothing needs moving.
 *
 * The block loop prefetches the input a fixed distance ahead. In cache the
 * code runs as fast as OpenSSL's (both ~1.95 GB/s on 16 KiB here), but a
 * file's bytes usually come from memory or another core's cache, and there
 * the hardware prefetcher alone left the rounds waiting: 1.18 GB/s over a
 * 32 MiB buffer, 1.8-1.9 GB/s with the prefetch.
 */
#include "sha256_ni.h"

#include <stdatomic.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define HAVE_SHA_NI 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define HAVE_SHA_NI 0
#endif

#if HAVE_SHA_NI

#define TARGET __attribute__((target("sha,ssse3,sse4.1")))

/* How far ahead of the block being hashed to prefetch, in bytes: 16
 * blocks, about 0.5 us of hashing, which covered the latency of memory on
 * the development VM (256 bytes ahead gained half as much, 512-4096 about
 * the same). A prefetch past the end of the input is harmless: it never
 * faults. */
#define PREFETCH_AHEAD 1024

/* The round constants: first 32 bits of the fractional parts of the cube
 * roots of the first 64 primes (FIPS 180-4, 4.2.2). */
static const uint32_t K[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* Four rounds 4r..4r+3 with message words |w| (already final). */
#define ROUNDS4(w, r)                                                       \
    do {                                                                    \
        __m128i k_ = _mm_add_epi32((w),                                     \
                                   _mm_load_si128((const __m128i *)&K[4 * (r)])); \
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, k_);                       \
        k_ = _mm_shuffle_epi32(k_, 0x0e);                                   \
        abef = _mm_sha256rnds2_epu32(abef, cdgh, k_);                       \
    } while (0)

/* Message schedule for rounds 4r..4r+3: |m0| holds W[t-16..t-13] (t = 4r)
 * and is overwritten with W[t..t+3]; m1, m2, m3 hold the next three older
 * groups in order, W[t-12..], W[t-8..], W[t-4..]. The W[t-7] term is the
 * window that straddles m2 and m3. */
#define SCHEDULE(m0, m1, m2, m3)                                            \
    do {                                                                    \
        __m128i s_ = _mm_sha256msg1_epu32((m0), (m1));                      \
        s_ = _mm_add_epi32(s_, _mm_alignr_epi8((m3), (m2), 4));             \
        (m0) = _mm_sha256msg2_epu32(s_, (m3));                              \
    } while (0)

TARGET
void shoal_sha256_ni_blocks(uint32_t h[8], const uint8_t *data, size_t nblocks)
{
    /* Swaps each 32-bit word to big-endian, as SHA-256 reads its input. */
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i dcba = _mm_loadu_si128((const __m128i *)&h[0]);
    __m128i hgfe = _mm_loadu_si128((const __m128i *)&h[4]);
    __m128i badc = _mm_shuffle_epi32(dcba, 0xb1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1b);
    __m128i abef = _mm_alignr_epi8(badc, efgh, 8);
    __m128i cdgh = _mm_blend_epi16(efgh, badc, 0xf0);

    for (; nblocks > 0; nblocks--, data += 64) {
        __m128i abef0 = abef, cdgh0 = cdgh;

        /* A block is as long as a cache line, so one prefetch per block
         * covers every line, aligned or not. The address is formed as an
         * integer: a pointer past the end of the input would be undefined. */
        _mm_prefetch((const char *)((uintptr_t)data + PREFETCH_AHEAD), _MM_HINT_T0);

        __m128i m0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 0)), bswap);
        __m128i m1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16)), bswap);
        __m128i m2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 32)), bswap);
        __m128i m3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 48)), bswap);

        ROUNDS4(m0, 0);
        ROUNDS4(m1, 1);
        ROUNDS4(m2, 2);
        ROUNDS4(m3, 3);
        /* Rounds 16..63: the four registers rotate through the schedule. */
        for (int r = 4; r < 16; r += 4) {
            SCHEDULE(m0, m1, m2, m3);
            ROUNDS4(m0, r);
            SCHEDULE(m1, m2, m3, m0);
            ROUNDS4(m1, r + 1);
            SCHEDULE(m2, m3, m0, m1);
            ROUNDS4(m2, r + 2);
            SCHEDULE(m3, m0, m1, m2);
            ROUNDS4(m3, r + 3);
        }
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
    }

    /* Back to a..h order: the inverse of the shuffles above. */
    __m128i feba = _mm_shuffle_epi32(abef, 0x1b);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xb1);
    _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(feba, dchg, 0xf0));
    _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(dchg, feba, 8));
}

#undef ROUNDS4
#undef SCHEDULE

/* CPUID: leaf 1 ECX bit 9 SSSE3, bit 19 SSE4.1; leaf 7 EBX bit 29 SHA. */
static bool cpu_has_sha_ni(void)
{
    unsigned a, b, c, d;

    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    if (!(c & (1u << 9)) || !(c & (1u << 19)))
        return false;
    if (__get_cpuid_max(0, NULL) < 7)
        return false;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 29)) != 0;
}

bool shoal_sha256_ni_available(void)
{
    /* 0 unknown, 1 no, 2 yes. Racing first calls compute the same answer,
     * so a plain relaxed atomic is enough. */
    static atomic_int cached;
    int v = atomic_load_explicit(&cached, memory_order_relaxed);

    if (v == 0) {
        v = cpu_has_sha_ni() ? 2 : 1;
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v == 2;
}

#else /* !HAVE_SHA_NI */

bool shoal_sha256_ni_available(void)
{
    return false;
}

void shoal_sha256_ni_blocks(uint32_t h[8], const uint8_t *data, size_t nblocks)
{
    (void)h;
    (void)data;
    (void)nblocks;
}

#endif
