/* SPDX-License-Identifier: MIT */
/*
 * Per-chunk compression for CHUNK payloads (codecs in msg.h).
 *
 * Most weight bytes barely compress, configs and tokenizers compress well,
 * and a sender pays CPU for every attempt, so the encoder first compresses a
 * small sample from the middle of the chunk with each candidate codec and
 * only compresses the whole chunk when the sample shows the chunk is likely
 * to save enough; a result that does not save at least
 * SHOAL_CODEC_MIN_SAVING_PCT percent is dropped and the chunk goes raw.
 *
 * Codec 2 (SHOAL_CODEC_ZSTD_BF16) splits every little-endian 16-bit word
 * into two planes, all high bytes first, then all low bytes (an odd last
 * byte stays at the end), and zstd-compresses that: the high byte of a bf16
 * value (sign and most of the exponent) is highly repetitive in trained
 * weights, the low byte (mantissa) is near random, and interleaved they hide
 * each other from zstd.
 *
 * Decoding trusts nothing in the payload: the zstd frame must declare exactly
 * the raw length the caller expects (which the caller got from its manifest,
 * not from the wire), decompress to exactly that many bytes, and fill the
 * payload with one frame and nothing after it. The chunk id is verified by
 * the caller on the raw bytes afterwards, as for raw chunks.
 *
 * No I/O, no shared state: every function is safe to call from any thread.
 * Each thread keeps its own zstd contexts and scratch buffers between calls
 * (created on first use, freed when the thread exits), so a worker thread
 * compressing chunk after chunk neither re-allocates multi-megabyte zstd
 * state nor faults in fresh pages for every chunk.
 */
#ifndef SHOAL_CODEC_H
#define SHOAL_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A compressed payload must be at least this much smaller than the chunk. */
#define SHOAL_CODEC_MIN_SAVING_PCT 10u
/* Sample compressed first to decide whether the whole chunk is worth it. */
#define SHOAL_CODEC_PROBE_LEN (64u * 1024u)

/* Candidates shoal_codec_compress() may try. */
enum shoal_codec_flags {
    SHOAL_CODEC_F_ZSTD = 0x1,  /* plain zstd (codec 1) */
    SHOAL_CODEC_F_BF16 = 0x2,  /* byte-grouped zstd (codec 2) */
};

/* Byte-grouping costs about 40% more CPU than plain zstd for ~10 points more
 * saving on bf16 weights: it is only worth it for a sender that already
 * chose to spend CPU for bytes (a higher level, i.e. a slow link). */
#define SHOAL_CODEC_GROUP_MIN_LEVEL 3
/* Saving a chunk must show before it is compressed for a peer on the same
 * host (loopback, or our own address): there bytes cost a memcpy, so only
 * text-like content that halves is worth a compressor's time. */
#define SHOAL_CODEC_LOCAL_SAVING_PCT 50u

/* The candidates the daemon tries at |level|: plain zstd, plus the
 * byte-grouped form from SHOAL_CODEC_GROUP_MIN_LEVEL on; 0 for level <= 0. */
unsigned shoal_codec_flags_for_level(int level);

/*
 * Like shoal_codec_compress(), with the bar a result must clear given by
 * |min_saving_pct| (at least SHOAL_CODEC_MIN_SAVING_PCT, at most 90; a
 * lower value is raised to it): the sample must save nearly that much
 * (a few points less, as samples are noisy) before the whole chunk is
 * compressed, and the result must save it. Same returns and ownership.
 */
int shoal_codec_compress_min(const uint8_t *raw, size_t len, int level, unsigned flags,
                             unsigned min_saving_pct, uint8_t **out, size_t *out_len,
                             uint8_t *codec);

/*
 * Compresses chunk |raw|/|len| with zstd at |level| (1..19; 1-3 suit a
 * sender at NIC speed) trying the codecs in |flags|, and keeps the smallest
 * result if it saves at least SHOAL_CODEC_MIN_SAVING_PCT percent.
 * On success sets |*codec| to the codec chosen; for a compressed result
 * |*out| is a malloc'd payload of |*out_len| bytes that the caller frees; for
 * SHOAL_CODEC_RAW (not worth it, or |flags| 0) |*out| is NULL and the caller
 * sends |raw| itself.
 * Returns 0, -EINVAL (|len| 0 or above SHOAL_MSG_RAW_MAX, bad level), or
 * -ENOMEM. On error |*out| is NULL.
 */
int shoal_codec_compress(const uint8_t *raw, size_t len, int level, unsigned flags,
                         uint8_t **out, size_t *out_len, uint8_t *codec);

/*
 * Decodes payload |p|/|plen| of codec |codec| into |out|, which holds exactly
 * |raw_len| bytes (the length the manifest gives for the chunk; at most
 * SHOAL_MSG_RAW_MAX). Returns 0 when exactly |raw_len| bytes were produced,
 * or
 *   SHOAL_EPROTO   unknown codec;
 *   SHOAL_ETOOBIG  |raw_len| above SHOAL_MSG_RAW_MAX, or the frame declares
 *                  more than |raw_len| bytes;
 *   SHOAL_EBADMSG  the frame declares another size (or none), is corrupt,
 *                  decodes to another length, or bytes follow it; for
 *                  SHOAL_CODEC_RAW, |plen| differs from |raw_len|;
 *   -ENOMEM.
 * |out| may hold partial garbage on error.
 */
int shoal_codec_decompress(uint8_t codec, const uint8_t *p, size_t plen, uint8_t *out,
                           size_t raw_len);

/* Byte-grouping of codec 2, exposed for tests and benchmarks: |dst| and
 * |src| are |len| bytes and must not overlap. */
void shoal_codec_group16(uint8_t *dst, const uint8_t *src, size_t len);
void shoal_codec_ungroup16(uint8_t *dst, const uint8_t *src, size_t len);

/* True for a codec this build can decode (raw, zstd, zstd-bf16); a CHUNK
 * with another comes from a newer sender. */
bool shoal_codec_known(uint8_t codec);

/* "raw", "zstd", "zstd-bf16", or "unknown". Static storage. */
const char *shoal_codec_name(uint8_t codec);

#endif
