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
 */
#include "cdc.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* Bytes of history the rolling hash depends on: one bit shifts out per byte. */
#define WINDOW 64u

/* The chunker scans and hashes at most this many bytes per step, so the
 * bytes the scanner just read are still in cache when BLAKE2b and SHA-256
 * read them (a whole chunk can be 4 MiB or more). */
#define CHUNKER_STEP (64u * 1024)

/* A match is rare (one byte in avg_size/4 or more): tell the compiler, so
 * the no-match path falls straight through without a taken branch. */
#if defined(__GNUC__)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define UNLIKELY(x) (x)
#endif

static uint64_t gear[256];
static pthread_once_t gear_once = PTHREAD_ONCE_INIT;

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

static void gear_build(void)
{
    uint64_t state = SHOAL_CDC_GEAR_SEED;

    for (size_t i = 0; i < 256; i++)
        gear[i] = splitmix64(&state);
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

        i = roll_find(p, i, i + k, &h, c->mask_small, &found);
        len += (uint32_t)(i - start);
    }
    if (!found) {
        k = room(n - i, len, c->max_size);
        if (k) {
            size_t start = i;

            i = roll_find(p, i, i + k, &h, c->mask_large, &found);
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
