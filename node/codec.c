/* SPDX-License-Identifier: MIT */
/*
 * Per-chunk zstd with an optional bf16 byte-grouping (see codec.h): a cheap
 * sample decides whether a chunk is worth compressing, and the decoder
 * checks every size before it writes a byte.
 */
#include "codec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "error.h"
#include "msg.h"

/* The sample must look at least this good (percent saved) before the whole
 * chunk is compressed: a bit below the final bar, as samples are noisy. */
#define PROBE_MIN_SAVING_PCT 7u

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

const char *shoal_codec_name(uint8_t codec)
{
    switch (codec) {
    case SHOAL_CODEC_RAW: return "raw";
    case SHOAL_CODEC_ZSTD: return "zstd";
    case SHOAL_CODEC_ZSTD_BF16: return "zstd-bf16";
    default: return "unknown";
    }
}

/*
 * zstd of |src|/|len| with |cc|'s parameters (grouped first when |grouped|;
 * |tmp| then holds |len| bytes of scratch) into |dst| of |cap| bytes. Returns the compressed size,
 * or 0 when it does not fit in |cap| (not worth it) or zstd failed.
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
    return ZSTD_isError(n) ? 0 : n;
}

/* Largest payload that still saves |pct| percent of |len|. */
static size_t saving_cap(size_t len, unsigned pct)
{
    return len - (len * pct + 99) / 100;
}

int shoal_codec_compress(const uint8_t *raw, size_t len, int level, unsigned flags,
                         uint8_t **out, size_t *out_len, uint8_t *codec)
{
    ZSTD_CCtx *cc = NULL;
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
    /* Output room stops at the size that still saves enough: zstd gives up
     * early on a chunk that will not make it. */
    cap = saving_cap(len, SHOAL_CODEC_MIN_SAVING_PCT);
    cc = ZSTD_createCCtx();
    if (cand[1])
        tmp = malloc(len);
    for (int c = 0; c < 2; c++)
        if (cand[c])
            res[c] = malloc(cap);
    if (!cc || (cand[1] && !tmp) || (cand[0] && !res[0]) || (cand[1] && !res[1])) {
        rv = -ENOMEM;
        goto out;
    }
    /* The content size lets a receiver check the length before decoding;
     * the checksum turns a corrupted payload into a decode error rather
     * than wrong bytes that only the chunk hash would catch. */
    if (ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 1))) {
        rv = -EINVAL;
        goto out;
    }
    if (len >= 4 * SHOAL_CODEC_PROBE_LEN) {
        /* The middle of a chunk is its most typical part (a file's header
         * sits at the start of its first chunk); an even offset keeps 16-bit
         * words whole relative to the chunk. */
        const uint8_t *s = raw + ((len / 2 - SHOAL_CODEC_PROBE_LEN / 2) & ~(size_t)1);
        size_t scap = saving_cap(SHOAL_CODEC_PROBE_LEN, PROBE_MIN_SAVING_PCT);
        for (int c = 0; c < 2; c++) {
            if (cand[c])
                n[c] = compress_one(cc, c == 1, tmp, s, SHOAL_CODEC_PROBE_LEN,
                                    res[c], scap);
        }
        if (!n[0] && !n[1])
            goto out;
        /* Only the sample's winner is tried on the whole chunk. */
        best = !n[0] ? 1 : !n[1] ? 0 : n[1] < n[0];
        cand[!best] = false;
        n[0] = n[1] = 0;
    }
    for (int c = 0; c < 2; c++) {
        if (cand[c])
            n[c] = compress_one(cc, c == 1, tmp, raw, len, res[c], cap);
    }
    if (!n[0] && !n[1])
        goto out;
    best = !n[0] ? 1 : !n[1] ? 0 : n[1] < n[0];
    *out = res[best];
    res[best] = NULL;
    *out_len = n[best];
    *codec = best == 1 ? SHOAL_CODEC_ZSTD_BF16 : SHOAL_CODEC_ZSTD;
out:
    ZSTD_freeCCtx(cc);
    free(tmp);
    free(res[0]);
    free(res[1]);
    return rv;
}

int shoal_codec_decompress(uint8_t codec, const uint8_t *p, size_t plen, uint8_t *out,
                           size_t raw_len)
{
    ZSTD_DCtx *dc = NULL;
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
    dc = ZSTD_createDCtx();
    if (codec == SHOAL_CODEC_ZSTD_BF16 && raw_len > 0)
        tmp = malloc(raw_len);
    if (!dc || (codec == SHOAL_CODEC_ZSTD_BF16 && raw_len > 0 && !tmp)) {
        rv = -ENOMEM;
        goto out;
    }
    n = ZSTD_decompressDCtx(dc, tmp ? tmp : out, raw_len, p, plen);
    if (ZSTD_isError(n) || n != raw_len) {
        rv = SHOAL_EBADMSG;
        goto out;
    }
    if (tmp)
        shoal_codec_ungroup16(out, tmp, raw_len);
out:
    ZSTD_freeDCtx(dc);
    free(tmp);
    return rv;
}
