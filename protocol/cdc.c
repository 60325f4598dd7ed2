/* SPDX-License-Identifier: MIT */
/*
 * Content-defined chunking: the gear-hash boundary scanner and the streaming
 * chunker that hashes chunks as it finds them. The cut rule and why it lets
 * the scanner skip most of each chunk are described in cdc.h.
 *
 * Speed matters here: every published or verified byte goes through the
 * scanner and then BLAKE2b, and the scanner should cost little next to the
 * hash. So the scanner never touches the first min_size-64 bytes of a chunk,
 * and its hot loop reads eight bytes per load, rolls two bytes per step off
 * one short dependency chain and tests two hashes with one branch, with the
 * phase limits (min, avg, max) hoisted out of it. On the reference machine
 * that made the scan about 1.3x faster than a plain byte loop (bench_hash).
 *
 * That loop is still bound by one table load and a handful of ALU ops per
 * byte on one chain of hashes. Where the CPU has AVX-512, the scan of a long
 * stretch runs eight chains at once instead (lanes_find): the stretch is cut
 * into eight consecutive pieces and each 64-bit vector lane rolls the hash
 * along one piece, the gear values for all eight lanes coming from one
 * gather from the table. Because a hash depends on exactly the last 64
 * bytes, a lane that starts from zero 64 bytes before its piece holds the
 * true hash from its first byte on; so the lanes compute the very same
 * hashes as the byte loop, and taking the match of the lowest lane that has
 * one gives the same first cut. Chosen at run time, so the build stays
 * portable; about 1.7x the scalar scan on the reference machine (Sapphire
 * Rapids, where gathers, not the arithmetic, set the pace).
 */
#include "cdc.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define HAVE_LANES 1
#include <immintrin.h>
#else
#define HAVE_LANES 0
#endif

/* Bytes of history the rolling hash depends on: one bit shifts out per byte. */
#define WINDOW 64u

/* The chunker scans and hashes at most this many bytes per step, so the
 * bytes the scanner just read are still in L1 when BLAKE2b and SHA-256 read
 * them (a whole chunk can be 4 MiB or more). 16 KiB measured best on the
 * reference machine (48 KiB L1d): at 32 and 64 KiB chunk_hash_ratio fell by
 * 0.02 to 0.05. */
#define CHUNKER_STEP (16u * 1024)

/* A match is rare (one byte in avg_size/4 or more): tell the compiler, so
 * the no-match path falls straight through without a taken branch. */
#if defined(__GNUC__)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define UNLIKELY(x) (x)
#endif

/* 64-byte aligned so a gather's loads split no cache line. */
static uint64_t gear[256] __attribute__((aligned(64)));
static pthread_once_t gear_once = PTHREAD_ONCE_INIT;

/* enum shoal_cdc_impl the scan uses; AUTO until resolved in gear_build. */
static atomic_int cdc_choice;

/* splitmix64 (Steele, Lea and Flood, 2014): a 64-bit counter stepped by the
 * golden-ratio constant, then a bijective mix. Simple to restate in any
 * language, so another implementation can reproduce our boundaries. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static bool cpu_has_lanes(void)
{
#if HAVE_LANES
    /* Also checks that the OS saves the AVX-512 registers. */
    return __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

/* The default: the environment can force the byte loop (SHOAL_CDC=scalar),
 * else the fastest this CPU runs. */
static int cdc_default(void)
{
    const char *env = getenv("SHOAL_CDC");

    if (env && strcmp(env, "scalar") == 0)
        return SHOAL_CDC_SCALAR;
    return cpu_has_lanes() ? SHOAL_CDC_AVX512 : SHOAL_CDC_SCALAR;
}

static void gear_build(void)
{
    uint64_t state = SHOAL_CDC_GEAR_SEED;
    int unset = SHOAL_CDC_AUTO;

    for (size_t i = 0; i < 256; i++)
        gear[i] = splitmix64(&state);
    /* Unless shoal_cdc_select already chose. */
    atomic_compare_exchange_strong(&cdc_choice, &unset, cdc_default());
}

int shoal_cdc_select(enum shoal_cdc_impl impl)
{
    int v, rv = 0;

    pthread_once(&gear_once, gear_build);
    switch (impl) {
    case SHOAL_CDC_AUTO:
        v = cdc_default();
        break;
    case SHOAL_CDC_SCALAR:
        v = SHOAL_CDC_SCALAR;
        break;
    case SHOAL_CDC_AVX512:
        v = SHOAL_CDC_AVX512;
        if (!cpu_has_lanes())
            rv = -ENOTSUP;
        break;
    default:
        rv = -EINVAL;
        break;
    }
    if (rv == 0)
        atomic_store_explicit(&cdc_choice, v, memory_order_relaxed);
    return rv;
}

enum shoal_cdc_impl shoal_cdc_impl(void)
{
    pthread_once(&gear_once, gear_build);
    return (enum shoal_cdc_impl)atomic_load_explicit(&cdc_choice, memory_order_relaxed);
}

void shoal_cdc_params_default(struct shoal_cdc_params *p)
{
    p->min_size = SHOAL_CDC_MIN_DEFAULT;
    p->avg_size = SHOAL_CDC_AVG_DEFAULT;
    p->max_size = SHOAL_CDC_MAX_DEFAULT;
}

int shoal_cdc_params_check(const struct shoal_cdc_params *p)
{
    int rv = SHOAL_EBADMSG;

    if (p->min_size < SHOAL_CDC_MIN_LIMIT || p->min_size >= p->avg_size ||
        p->avg_size >= p->max_size || p->max_size > SHOAL_CDC_MAX_LIMIT)
        goto out;
    if ((p->avg_size & (p->avg_size - 1)) != 0)
        goto out;
    rv = 0;
out:
    return rv;
}

/* floor(log2(v)) for v > 0. */
static unsigned log2_floor(uint32_t v)
{
    unsigned b = 0;

    while (v >>= 1)
        b++;
    return b;
}

/* A mask of the top |bits| bits of a 64-bit word; bits is clamped to 1..63
 * so odd parameters still give a usable test. */
static uint64_t top_mask(unsigned bits)
{
    if (bits < 1)
        bits = 1;
    if (bits > 63)
        bits = 63;
    return ~UINT64_C(0) << (64 - bits);
}

void shoal_cdc_init(struct shoal_cdc *c, const struct shoal_cdc_params *p)
{
    uint32_t max = p->max_size ? p->max_size : 1;
    uint32_t min = p->min_size < max ? p->min_size : max;
    uint32_t avg = p->avg_size;
    unsigned bits;

    pthread_once(&gear_once, gear_build);
    /* Keep min <= avg <= max even for unchecked input, so the phases of the
     * scan stay in order and no chunk exceeds max. */
    if (avg < min)
        avg = min;
    if (avg > max)
        avg = max;
    bits = log2_floor(avg ? avg : 1);
    /* Normalization level 2: the stricter test has 4x fewer matches than the
     * average-size one and the looser 4x more, which narrows the size
     * distribution around avg without a big loss in dedup. */
    c->mask_small = top_mask(bits + 2);
    c->mask_large = top_mask(bits >= 2 ? bits - 2 : 1);
    c->min_size = min;
    c->avg_size = avg;
    c->max_size = max;
    c->hash = 0;
    c->len = 0;
}

/* Two bytes of the scan: rolls bytes k and k+1 of the word w (p[i+k] and
 * p[i+k+1]) into h and jumps to |hit| with
 * the hash and index of the first byte that leaves the masked bits zero.
 * h2 is computed from h, not from h1, so the dependency chain is one add
 * per two bytes instead of a shift and an add per byte; one test covers both
 * hashes, since if either has the masked bits zero, so does their AND. The
 * AND also passes by chance (p = 3/4 per bit), rarely for masks of 10+ bits,
 * and then the exact tests decide. */
#define ROLL2(k)                                                            \
    do {                                                                    \
        uint64_t t_ = w >> (8 * (k));                                       \
        uint64_t g1_ = gear[t_ & 0xff], g2_ = gear[(t_ >> 8) & 0xff];       \
        uint64_t x_ = (g1_ << 1) + g2_;                                     \
        uint64_t h1_ = (h << 1) + g1_;                                      \
        uint64_t h2_ = (h << 2) + x_;                                       \
        if (UNLIKELY((h1_ & h2_ & mask) == 0)) {                            \
            if ((h1_ & mask) == 0) {                                        \
                h = h1_;                                                    \
                i += (k) + 1;                                               \
                goto hit;                                                   \
            }                                                               \
            if ((h2_ & mask) == 0) {                                        \
                h = h2_;                                                    \
                i += (k) + 2;                                               \
                goto hit;                                                   \
            }                                                               \
        }                                                                   \
        h = h2_;                                                            \
    } while (0)

/* Eight bytes as a little-endian word: byte k is bits 8k..8k+7 on every
 * platform. One load instead of eight. */
static inline uint64_t load_le64(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t w;

    memcpy(&w, p, sizeof(w));
    return w;
#else
    uint64_t w = 0;

    for (int k = 7; k >= 0; k--)
        w = w << 8 | p[k];
    return w;
#endif
}

/* Rolls bytes p[i..end) into *hp; stops after the first byte that leaves the
 * masked bits all zero. Returns the index past the last byte rolled and sets
 * *found when it stopped on a match. Gives exactly the cuts of rolling one
 * byte at a time; the unrolling only removes loop overhead and latency. */
static inline size_t roll_find(const uint8_t *p, size_t i, size_t end,
                               uint64_t *hp, uint64_t mask, bool *found)
{
    uint64_t h = *hp;

    while (end - i >= 8) {
        uint64_t w = load_le64(p + i);

        ROLL2(0);
        ROLL2(2);
        ROLL2(4);
        ROLL2(6);
        i += 8;
    }
    while (i < end) {
        h = (h << 1) + gear[p[i++]];
        if (UNLIKELY((h & mask) == 0))
            goto hit;
    }
    goto out;
hit:
    *found = true;
out:
    *hp = h;
    return i;
}

#undef ROLL2

#if HAVE_LANES

/* Lane pieces are at most this many bytes: a match ends the search only
 * once the window that holds it is done, so the window (8 pieces) must stay
 * small next to the distance between matches, and its data in L1. */
#define LANE_STEPS_MAX 2048u
/* Below this a window's 64-byte warm-ups cost more than the lanes save. */
#define LANE_STEPS_MIN 128u

/* Finds the first match in p[i..end) like roll_find, but only over whole
 * windows of 8 * L + 64 bytes, with L = |piece| (a multiple of 8); returns
 * where it stopped: past the matching byte (*found set; *hp is then
 * meaningless, the caller starts a new chunk), or at the first byte it did
 * not scan, with *hp the hash there. The caller rolls the rest.
 *
 * In a window starting at i, lane 0 continues the hash from *hp over
 * [i, i + L + 64); lane s (1..7) starts from zero at i + s * L and rolls
 * L + 64 bytes, of which the first 64 only warm it up (lane s - 1 covers
 * them). The lanes' valid ranges tile the window in lane order, so the
 * lowest lane with a match has the first one. */
__attribute__((target("avx512f")))
static size_t lanes_find(const uint8_t *p, size_t i, size_t end, size_t piece,
                         uint64_t *hp, uint64_t mask, bool *found)
{
    const __m512i maskv = _mm512_set1_epi64((long long)mask);
    const __m512i limit = _mm512_set1_epi64((long long)~mask);
    const __m512i low8 = _mm512_set1_epi64(0xff);
    const size_t steps = piece + WINDOW;
    uint64_t h0 = *hp;

    while (end - i >= 8 * piece + WINDOW) {
        const uint8_t *base = p + i;
        __m512i h = _mm512_set_epi64(0, 0, 0, 0, 0, 0, 0, (long long)h0);
        size_t first[8] = {0};
        unsigned hit = 0;
        uint64_t hv[8];

        for (size_t t = 0; t < steps; t += 8) {
            /* Eight bytes of each lane's piece, one lane per 64-bit word.
             * Plain loads, not a gather: gathers are what limits this
             * loop, and the table lookups below need eight of them. */
            const uint8_t *q = base + t;
            __m512i w = _mm512_setr_epi64(
                (long long)load_le64(q), (long long)load_le64(q + piece),
                (long long)load_le64(q + 2 * piece), (long long)load_le64(q + 3 * piece),
                (long long)load_le64(q + 4 * piece), (long long)load_le64(q + 5 * piece),
                (long long)load_le64(q + 6 * piece), (long long)load_le64(q + 7 * piece));
            __m512i hs[8], low = _mm512_set1_epi64(-1);

            for (int k = 0; k < 8; k++) {
                __m512i g = _mm512_i64gather_epi64(_mm512_and_si512(w, low8),
                                                   (const void *)gear, 8);

                w = _mm512_srli_epi64(w, 8);
                h = _mm512_add_epi64(_mm512_add_epi64(h, h), g);
                hs[k] = h;
                low = _mm512_min_epu64(low, h);
            }
            /* The masks cover the top bits, so a hash passes exactly when
             * it is at most ~mask: one compare of the lanes' minima tests
             * all eight steps. */
            if (UNLIKELY(_mm512_cmple_epu64_mask(low, limit))) {
                /* Rare: note each lane's first valid match. */
                for (size_t k = 0; k < 8; k++) {
                    unsigned m = _mm512_testn_epi64_mask(hs[k], maskv);

                    if (t + k < WINDOW)
                        m &= 1u; /* lanes 1..7 are warming up */
                    m &= ~hit;
                    for (unsigned s = 0; s < 8; s++) {
                        if (m & (1u << s))
                            first[s] = t + k;
                    }
                    hit |= m;
                }
                /* Lane 0's match comes before all others. */
                if (hit & 1u)
                    break;
            }
        }
        if (hit) {
            unsigned s = (unsigned)__builtin_ctz(hit);

            *found = true;
            *hp = 0;
            i += s * piece + first[s] + 1;
            goto out;
        }
        /* Lane 7 ended at the window's last byte with the true hash. */
        _mm512_storeu_si512((void *)hv, h);
        h0 = hv[7];
        i += 8 * piece + WINDOW;
    }
    *hp = h0;
out:
    return i;
}

#endif

/* roll_find, through lanes_find where it is enabled and pays off. The piece
 * length grows with the average chunk size: a window should be a few
 * percent of the typical distance between matches (avg / 4 in the loose
 * phase), since the lanes finish a window before they report its match. */
static size_t find_cut(const struct shoal_cdc *c, const uint8_t *p, size_t i, size_t end,
                       uint64_t *hp, uint64_t mask, bool *found)
{
#if HAVE_LANES
    size_t piece = c->avg_size / 256;

    if (piece > LANE_STEPS_MAX)
        piece = LANE_STEPS_MAX;
    if (piece >= LANE_STEPS_MIN && end - i >= 8 * LANE_STEPS_MIN + WINDOW &&
        atomic_load_explicit(&cdc_choice, memory_order_relaxed) == SHOAL_CDC_AVX512) {
        /* Fit the pieces to a short stretch rather than leave it all to
         * the byte loop. */
        size_t fit = (end - i - WINDOW) / 8 & ~(size_t)7;

        if (fit < piece)
            piece = fit;
        i = lanes_find(p, i, end, piece, hp, mask, found);
        if (*found)
            return i;
    }
#else
    (void)c;
#endif
    return roll_find(p, i, end, hp, mask, found);
}

/* How many of |avail| bytes fit before the chunk reaches |limit| bytes. */
static inline size_t room(size_t avail, uint32_t len, uint32_t limit)
{
    size_t r = len < limit ? (size_t)(limit - len) : 0;

    return avail < r ? avail : r;
}

size_t shoal_cdc_scan(struct shoal_cdc *c, const uint8_t *p, size_t n, bool *cut)
{
    uint32_t skip_to = c->min_size > WINDOW ? c->min_size - WINDOW : 0;
    /* The last length at which no cut is allowed; from here the hash must
     * be up to date. */
    uint32_t warm_to = c->min_size ? c->min_size - 1 : 0;
    uint64_t h = c->hash;
    uint32_t len = c->len;
    bool found = false;
    size_t i = 0, k;

    /* Bytes before skip_to cannot influence any hash we will test. */
    k = room(n, len, skip_to);
    if (k) {
        i += k;
        len += (uint32_t)k;
        h = 0;
    }
    k = room(n - i, len, warm_to);
    for (size_t end = i + k; i < end; i++)
        h = (h << 1) + gear[p[i]];
    len += (uint32_t)k;

    k = room(n - i, len, c->avg_size);
    if (k) {
        size_t start = i;

        i = find_cut(c, p, i, i + k, &h, c->mask_small, &found);
        len += (uint32_t)(i - start);
    }
    if (!found) {
        k = room(n - i, len, c->max_size);
        if (k) {
            size_t start = i;

            i = find_cut(c, p, i, i + k, &h, c->mask_large, &found);
            len += (uint32_t)(i - start);
        }
    }
    if (found || len >= c->max_size) {
        *cut = true;
        c->hash = 0;
        c->len = 0;
    } else {
        *cut = false;
        c->hash = h;
        c->len = len;
    }
    return i;
}

struct shoal_chunker {
    /* First: libsodium's states want 64-byte alignment (see chunker_new). */
    struct shoal_blake2b chunk;  /* id of the chunk in progress */
    struct shoal_sha256 file;    /* digest of the whole file so far */
    struct shoal_cdc cdc;
    struct shoal_cdc_params params;
    unsigned flags;
    uint64_t chunk_off;          /* file offset of the chunk in progress */
    uint32_t chunk_len;          /* its bytes so far */
    uint64_t size;               /* file bytes so far */
};

int shoal_chunker_new(struct shoal_chunker **out, const struct shoal_cdc_params *p)
{
    return shoal_chunker_new_flags(out, p, 0);
}

int shoal_chunker_new_flags(struct shoal_chunker **out,
                            const struct shoal_cdc_params *p, unsigned flags)
{
    struct shoal_chunker *ch = NULL;
    size_t align = _Alignof(struct shoal_chunker);
    /* aligned_alloc wants a size that is a multiple of the alignment. */
    size_t sz = (sizeof(*ch) + align - 1) / align * align;
    int rv;

    rv = shoal_cdc_params_check(p);
    if (rv < 0)
        goto out;
    if (flags & ~(unsigned)SHOAL_CHUNKER_NO_SHA256) {
        rv = SHOAL_EBADMSG;
        goto out;
    }
    if (shoal_hash_init() < 0) {
        rv = -1;
        goto out;
    }
    /* malloc only promises 16-byte alignment; the hash states declare 64. */
    ch = aligned_alloc(align, sz);
    if (!ch) {
        rv = -ENOMEM;
        goto out;
    }
    memset(ch, 0, sizeof(*ch));
    ch->params = *p;
    ch->flags = flags;
    shoal_chunker_reset(ch);
    *out = ch;
    rv = 0;
out:
    return rv;
}

void shoal_chunker_reset(struct shoal_chunker *ch)
{
    shoal_cdc_init(&ch->cdc, &ch->params);
    shoal_blake2b_init(&ch->chunk);
    shoal_sha256_init(&ch->file);
    ch->chunk_off = 0;
    ch->chunk_len = 0;
    ch->size = 0;
}

/* Finishes the chunk in progress, reports it and starts the next one. */
static int chunker_emit(struct shoal_chunker *ch, shoal_chunk_cb cb, void *user)
{
    uint8_t id[SHOAL_HASH_LEN];
    uint64_t off = ch->chunk_off;
    uint32_t len = ch->chunk_len;
    int rv = 0;

    shoal_blake2b_final(&ch->chunk, id);
    shoal_blake2b_init(&ch->chunk);
    ch->chunk_off += len;
    ch->chunk_len = 0;
    if (cb)
        rv = cb(user, off, len, id);
    return rv;
}

int shoal_chunker_feed(struct shoal_chunker *ch, const void *data, size_t len,
                       shoal_chunk_cb cb, void *user)
{
    const uint8_t *p = data;
    size_t left = len;
    int rv = 0;

    while (left > 0) {
        size_t step = left < CHUNKER_STEP ? left : CHUNKER_STEP;
        bool cut;
        size_t k = shoal_cdc_scan(&ch->cdc, p, step, &cut);

        shoal_blake2b_update(&ch->chunk, p, k);
        if (!(ch->flags & SHOAL_CHUNKER_NO_SHA256))
            shoal_sha256_update(&ch->file, p, k);
        /* The scanner cuts at max_size <= 64 MiB, so this cannot wrap. */
        ch->chunk_len += (uint32_t)k;
        ch->size += k;
        p += k;
        left -= k;
        if (cut) {
            rv = chunker_emit(ch, cb, user);
            if (rv)
                goto out;
        }
    }
out:
    return rv;
}

int shoal_chunker_finish(struct shoal_chunker *ch, shoal_chunk_cb cb, void *user,
                         uint8_t sha256[SHOAL_HASH_LEN], uint64_t *size)
{
    uint8_t digest[SHOAL_HASH_LEN];
    uint64_t total = ch->size;
    int rv = 0;

    if (ch->chunk_len > 0) {
        rv = chunker_emit(ch, cb, user);
        if (rv)
            goto out;
    }
    if (!(ch->flags & SHOAL_CHUNKER_NO_SHA256)) {
        shoal_sha256_final(&ch->file, digest);
        if (sha256)
            memcpy(sha256, digest, sizeof(digest));
    }
    if (size)
        *size = total;
out:
    shoal_chunker_reset(ch);
    return rv;
}

void shoal_chunker_free(struct shoal_chunker *ch)
{
    free(ch);
}
