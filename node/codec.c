/* SPDX-License-Identifier: MIT */
/*
 * Per-chunk zstd with an optional bf16 byte-grouping (see codec.h): a cheap
 * sample decides whether a chunk is worth compressing, and the decoder
 * checks every size before it writes a byte. zstd contexts and scratch
 * buffers are kept per thread (a pthread key frees them at thread exit), as
 * creating a compression context costs about as much as compressing a
 * small chunk.
 */
#include "codec.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "error.h"
#include "msg.h"

/* The sample must look nearly as good as the final bar (percent saved)
 * before the whole chunk is compressed: samples are noisy. */
#define PROBE_SLACK_PCT 3u
/* Scratch larger than this (a grouping buffer for a 4 MiB chunk) is freed
 * after the call instead of being kept by the thread: a node with several
 * workers must not hold megabytes per thread for an occasional big chunk. */
#define SCRATCH_RETAIN (1u << 20)

void shoal_codec_group16(uint8_t *dst, const uint8_t *src, size_t len)
{
    size_t half = len / 2;

    /* Little-endian words: byte 1 is the high (sign/exponent) byte. */
    for (size_t i = 0; i < half; i++) {
        dst[i] = src[2 * i + 1];
        dst[half + i] = src[2 * i];
    }
    if (len & 1)
        dst[len - 1] = src[len - 1];
}

void shoal_codec_ungroup16(uint8_t *dst, const uint8_t *src, size_t len)
{
    size_t half = len / 2;

    for (size_t i = 0; i < half; i++) {
        dst[2 * i + 1] = src[i];
        dst[2 * i] = src[half + i];
    }
    if (len & 1)
        dst[len - 1] = src[len - 1];
}

bool shoal_codec_known(uint8_t codec)
{
    return codec == SHOAL_CODEC_RAW || codec == SHOAL_CODEC_ZSTD ||
           codec == SHOAL_CODEC_ZSTD_BF16;
}

const char *shoal_codec_name(uint8_t codec)
{
    switch (codec) {
    case SHOAL_CODEC_RAW: return "raw";
    case SHOAL_CODEC_ZSTD: return "zstd";
    case SHOAL_CODEC_ZSTD_BF16: return "zstd-bf16";
    default: return "unknown";
    }
}

/* One thread's reusable state. */
struct tls {
    ZSTD_CCtx *cc;
    int cc_level;                  /* parameters set on |cc|; 0: none yet */
    ZSTD_DCtx *dc;
    uint8_t *tmp;                  /* grouping / ungrouping scratch */
    size_t tmp_cap;
    uint8_t probe[2][SHOAL_CODEC_PROBE_LEN]; /* sample outputs */
};

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_key_rv;

static void tls_free(void *v)
{
    struct tls *t = v;

    if (!t)
        return;
    ZSTD_freeCCtx(t->cc);
    ZSTD_freeDCtx(t->dc);
    free(t->tmp);
    free(t);
}

static void tls_init_key(void)
{
    tls_key_rv = pthread_key_create(&tls_key, tls_free);
}

/* This thread's state, created on first use; NULL when out of memory. */
static struct tls *tls_get(void)
{
    struct tls *t;

    if (pthread_once(&tls_once, tls_init_key) != 0 || tls_key_rv != 0)
        return NULL;
    t = pthread_getspecific(tls_key);
    if (t)
        return t;
    t = calloc(1, sizeof *t);
    if (t && pthread_setspecific(tls_key, t) != 0) {
        free(t);
        t = NULL;
    }
    return t;
}

/* |t|'s scratch with room for |len| bytes, or NULL. */
static uint8_t *tls_tmp(struct tls *t, size_t len)
{
    if (t->tmp_cap < len) {
        free(t->tmp);
        t->tmp_cap = 0;
        t->tmp = malloc(len);
        if (!t->tmp)
            return NULL;
        t->tmp_cap = len;
    }
    return t->tmp;
}

/* Drops an oversized scratch buffer at the end of a call. */
static void tls_trim(struct tls *t)
{
    if (t->tmp_cap > SCRATCH_RETAIN) {
        free(t->tmp);
        t->tmp = NULL;
        t->tmp_cap = 0;
    }
}

/* |t|'s compression context set up for |level|; NULL on failure. */
static ZSTD_CCtx *tls_cctx(struct tls *t, int level)
{
    if (!t->cc) {
        t->cc = ZSTD_createCCtx();
        t->cc_level = 0;
        if (!t->cc)
            return NULL;
    }
    if (t->cc_level != level) {
        /* The content size lets a receiver check the length before
         * decoding; the checksum turns a corrupted payload into a decode
         * error rather than wrong bytes that only the chunk hash would
         * catch. */
        ZSTD_CCtx_reset(t->cc, ZSTD_reset_session_and_parameters);
        if (ZSTD_isError(ZSTD_CCtx_setParameter(t->cc, ZSTD_c_compressionLevel, level)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(t->cc, ZSTD_c_checksumFlag, 1)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(t->cc, ZSTD_c_contentSizeFlag, 1)))
            return NULL;
        t->cc_level = level;
    }
    return t->cc;
}

unsigned shoal_codec_flags_for_level(int level)
{
    if (level <= 0)
        return 0;
    return SHOAL_CODEC_F_ZSTD | (level >= SHOAL_CODEC_GROUP_MIN_LEVEL ? SHOAL_CODEC_F_BF16 : 0);
}

/*
 * zstd of |src|/|len| with |cc|'s parameters (grouped first when |grouped|;
 * |tmp| then holds |len| bytes of scratch) into |dst| of |cap| bytes. Returns
 * the compressed size, or 0 when it does not fit in |cap| (not worth it) or
 * zstd failed. A failed call leaves |cc| mid-frame: reset it so the next
 * frame starts clean.
 */
static size_t compress_one(ZSTD_CCtx *cc, bool grouped, uint8_t *tmp,
                           const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
    size_t n;

    if (grouped) {
        shoal_codec_group16(tmp, src, len);
        src = tmp;
    }
    n = ZSTD_compress2(cc, dst, cap, src, len);
    if (ZSTD_isError(n)) {
        ZSTD_CCtx_reset(cc, ZSTD_reset_session_only);
        return 0;
    }
    return n;
}

/* Largest payload that still saves |pct| percent of |len|. */
static size_t saving_cap(size_t len, unsigned pct)
{
    return len - (len * pct + 99) / 100;
}

int shoal_codec_compress_min(const uint8_t *raw, size_t len, int level, unsigned flags,
                             unsigned min_saving_pct, uint8_t **out, size_t *out_len,
                             uint8_t *codec)
{
    struct tls *t = NULL;
    ZSTD_CCtx *cc;
    uint8_t *tmp = NULL, *res[2] = {NULL, NULL};
    bool cand[2] = {(flags & SHOAL_CODEC_F_ZSTD) != 0,
                    (flags & SHOAL_CODEC_F_BF16) != 0 && len >= 2};
    size_t n[2] = {0, 0}, cap;
    int best = -1;
    int rv = 0;

    *out = NULL;
    *out_len = 0;
    *codec = SHOAL_CODEC_RAW;
    if (len == 0 || len > SHOAL_MSG_RAW_MAX || level < 1 || level > ZSTD_maxCLevel())
        return -EINVAL;
    if (!cand[0] && !cand[1])
        goto out;
    if (min_saving_pct < SHOAL_CODEC_MIN_SAVING_PCT)
        min_saving_pct = SHOAL_CODEC_MIN_SAVING_PCT;
    if (min_saving_pct > 90)
        min_saving_pct = 90;
    /* Output room stops at the size that still saves enough: zstd gives up
     * early on a chunk that will not make it. */
    cap = saving_cap(len, min_saving_pct);
    t = tls_get();
    cc = t ? tls_cctx(t, level) : NULL;
    if (cand[1] && t)
        tmp = tls_tmp(t, len);
    if (!cc || (cand[1] && !tmp)) {
        rv = -ENOMEM;
        goto out;
    }
    if (len >= 4 * SHOAL_CODEC_PROBE_LEN) {
        /* The middle of a chunk is its most typical part (a file's header
         * sits at the start of its first chunk); an even offset keeps 16-bit
         * words whole relative to the chunk. */
        const uint8_t *s = raw + ((len / 2 - SHOAL_CODEC_PROBE_LEN / 2) & ~(size_t)1);
        size_t scap = saving_cap(SHOAL_CODEC_PROBE_LEN, min_saving_pct - PROBE_SLACK_PCT);
        for (int c = 0; c < 2; c++) {
            if (cand[c])
                n[c] = compress_one(cc, c == 1, tmp, s, SHOAL_CODEC_PROBE_LEN,
                                    t->probe[c], scap);
        }
        if (!n[0] && !n[1])
            goto out;
        /* Only the sample's winner is tried on the whole chunk. */
        best = !n[0] ? 1 : !n[1] ? 0 : n[1] < n[0];
        cand[!best] = false;
        n[0] = n[1] = 0;
    }
    for (int c = 0; c < 2; c++) {
        if (!cand[c])
            continue;
        res[c] = malloc(cap);
        if (!res[c]) {
            rv = -ENOMEM;
            goto out;
        }
        n[c] = compress_one(cc, c == 1, tmp, raw, len, res[c], cap);
    }
    if (!n[0] && !n[1])
        goto out;
    best = !n[0] ? 1 : !n[1] ? 0 : n[1] < n[0];
    /* Give back the room the payload did not use; a failed shrink keeps
     * the larger block, which is still valid. */
    *out = realloc(res[best], n[best]);
    if (!*out)
        *out = res[best];
    res[best] = NULL;
    *out_len = n[best];
    *codec = best == 1 ? SHOAL_CODEC_ZSTD_BF16 : SHOAL_CODEC_ZSTD;
out:
    if (t)
        tls_trim(t);
    free(res[0]);
    free(res[1]);
    return rv;
}

int shoal_codec_compress(const uint8_t *raw, size_t len, int level, unsigned flags,
                         uint8_t **out, size_t *out_len, uint8_t *codec)
{
    return shoal_codec_compress_min(raw, len, level, flags, SHOAL_CODEC_MIN_SAVING_PCT, out,
                                    out_len, codec);
}

int shoal_codec_decompress(uint8_t codec, const uint8_t *p, size_t plen, uint8_t *out,
                           size_t raw_len)
{
    struct tls *t;
    uint8_t *tmp = NULL;
    unsigned long long fcs;
    size_t csize, n;
    int rv = 0;

    if (raw_len > SHOAL_MSG_RAW_MAX)
        return SHOAL_ETOOBIG;
    if (codec == SHOAL_CODEC_RAW) {
        if (plen != raw_len)
            return SHOAL_EBADMSG;
        memcpy(out, p, plen);
        return 0;
    }
    if (codec != SHOAL_CODEC_ZSTD && codec != SHOAL_CODEC_ZSTD_BF16)
        return SHOAL_EPROTO;
    /* Sizes first, from the frame header, before any work or allocation. */
    fcs = ZSTD_getFrameContentSize(p, plen);
    if (fcs == ZSTD_CONTENTSIZE_ERROR || fcs == ZSTD_CONTENTSIZE_UNKNOWN)
        return SHOAL_EBADMSG;
    if (fcs > raw_len)
        return SHOAL_ETOOBIG;
    if (fcs != raw_len)
        return SHOAL_EBADMSG;
    csize = ZSTD_findFrameCompressedSize(p, plen);
    if (ZSTD_isError(csize) || csize != plen)
        return SHOAL_EBADMSG;
    t = tls_get();
    if (t && !t->dc)
        t->dc = ZSTD_createDCtx();
    if (t && codec == SHOAL_CODEC_ZSTD_BF16 && raw_len > 0)
        tmp = tls_tmp(t, raw_len);
    if (!t || !t->dc || (codec == SHOAL_CODEC_ZSTD_BF16 && raw_len > 0 && !tmp)) {
        rv = -ENOMEM;
        goto out;
    }
    /* ZSTD_decompressDCtx starts a fresh frame whatever an earlier call
     * left behind, so a reused context needs no reset. */
    n = ZSTD_decompressDCtx(t->dc, tmp ? tmp : out, raw_len, p, plen);
    if (ZSTD_isError(n) || n != raw_len) {
        rv = SHOAL_EBADMSG;
        goto out;
    }
    if (tmp)
        shoal_codec_ungroup16(out, tmp, raw_len);
out:
    if (t)
        tls_trim(t);
    return rv;
}
