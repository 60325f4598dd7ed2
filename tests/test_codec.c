/* SPDX-License-Identifier: MIT */
/*
 * Tests of the per-chunk codec (node/codec.h): what compresses and what goes
 * raw, exact round trips for every codec, and a decoder that refuses lying
 * lengths, corrupt, truncated and padded payloads.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "codec.h"
#include "error.h"
#include "msg.h"
#include "gen.h"
#include "t.h"

/* tokenizer.json-like text. */
static size_t fill_json(uint8_t *p, size_t cap)
{
    size_t o = 0;
    o += (size_t)snprintf((char *)p, cap, "{\"model\": {\"vocab\": {");
    for (unsigned i = 0; o + 64 < cap; i++)
        o += (size_t)snprintf((char *)p + o, cap - o, "\"tok_%x%s\": %u, ", i * 2654435761u,
                              i % 3 ? "ing" : "er", i);
    p[o++] = '}';
    return o;
}

static void roundtrip(const uint8_t *raw, size_t len, unsigned flags, uint8_t *want_codec)
{
    uint8_t *out = NULL, *back = malloc(len), codec = 0xff;
    size_t out_len = 0;

    REQUIRE(back);
    CHECK_EQ(shoal_codec_compress(raw, len, 1, flags, &out, &out_len, &codec), 0);
    *want_codec = codec;
    if (codec == SHOAL_CODEC_RAW) {
        CHECK(out == NULL);
        CHECK_EQ(shoal_codec_decompress(codec, raw, len, back, len), 0);
    } else {
        CHECK(out != NULL);
        /* Kept only when it saves at least 10%. */
        CHECK(out_len <= len - len / 10);
        CHECK_EQ(shoal_codec_decompress(codec, out, out_len, back, len), 0);
    }
    CHECK(memcmp(back, raw, len) == 0);
    free(out);
    free(back);
}

static void test_json_compresses(void)
{
    size_t cap = 1 << 20;
    uint8_t *p = malloc(cap), codec;
    size_t len;

    REQUIRE(p);
    len = fill_json(p, cap);
    roundtrip(p, len, SHOAL_CODEC_F_ZSTD | SHOAL_CODEC_F_BF16, &codec);
    CHECK(codec != SHOAL_CODEC_RAW);
    /* A small config, below the probe size, is tried whole. */
    roundtrip(p, 3000, SHOAL_CODEC_F_ZSTD, &codec);
    CHECK_EQ(codec, SHOAL_CODEC_ZSTD);
    free(p);
}

static void test_random_stays_raw(void)
{
    size_t len = 1 << 20;
    uint8_t *p = malloc(len), codec;

    REQUIRE(p);
    fill_random(p, len);
    roundtrip(p, len, SHOAL_CODEC_F_ZSTD | SHOAL_CODEC_F_BF16, &codec);
    CHECK_EQ(codec, SHOAL_CODEC_RAW);
    /* No candidate asked for: raw, whatever the data. */
    fill_json(p, len);
    roundtrip(p, 1 << 16, 0, &codec);
    CHECK_EQ(codec, SHOAL_CODEC_RAW);
    free(p);
}

static void test_bf16_grouping(void)
{
    size_t len = (1 << 20) + 7; /* odd: the last byte rides along */
    uint8_t *p = malloc(len), *g = malloc(len), *u = malloc(len);
    uint8_t *oz = NULL, *og = NULL, cz, cg;
    size_t nz = 0, ng = 0;

    REQUIRE(p && g && u);
    fill_bf16(p, len, 0.02);
    shoal_codec_group16(g, p, len);
    shoal_codec_ungroup16(u, g, len);
    CHECK(memcmp(u, p, len) == 0);
    CHECK_EQ(g[0], p[1]);
    CHECK_EQ(g[len / 2], p[0]);
    CHECK_EQ(g[len - 1], p[len - 1]);

    roundtrip(p, len, SHOAL_CODEC_F_BF16, &cg);
    CHECK_EQ(cg, SHOAL_CODEC_ZSTD_BF16);
    /* Given both, the grouped form wins on weights: it saves more. */
    CHECK_EQ(shoal_codec_compress(p, len, 1, SHOAL_CODEC_F_ZSTD, &oz, &nz, &cz), 0);
    CHECK_EQ(shoal_codec_compress(p, len, 1, SHOAL_CODEC_F_BF16, &og, &ng, &cg), 0);
    CHECK(cg == SHOAL_CODEC_ZSTD_BF16 && ng > 0);
    CHECK(cz == SHOAL_CODEC_RAW || ng < nz);
    roundtrip(p, len, SHOAL_CODEC_F_ZSTD | SHOAL_CODEC_F_BF16, &cg);
    CHECK_EQ(cg, SHOAL_CODEC_ZSTD_BF16);
    free(oz);
    free(og);
    free(p);
    free(g);
    free(u);
}

static void test_bad_arguments(void)
{
    uint8_t b[4] = {1, 2, 3, 4}, *out = (uint8_t *)1, codec = 9;
    size_t n = 5;

    CHECK_EQ(shoal_codec_compress(b, 0, 1, SHOAL_CODEC_F_ZSTD, &out, &n, &codec), -EINVAL);
    CHECK(out == NULL && n == 0 && codec == SHOAL_CODEC_RAW);
    CHECK_EQ(shoal_codec_compress(b, 4, 0, SHOAL_CODEC_F_ZSTD, &out, &n, &codec), -EINVAL);
    CHECK_EQ(shoal_codec_compress(b, (size_t)SHOAL_MSG_RAW_MAX + 1, 1, SHOAL_CODEC_F_ZSTD, &out,
                                  &n, &codec),
             -EINVAL);
}

static void test_decoder_refuses(void)
{
    size_t cap = 256 * 1024, len;
    uint8_t *p = malloc(cap), *out = NULL, *back = malloc(cap + 16), *bad = NULL, codec;
    size_t n = 0;
    ZSTD_CCtx *cc;

    REQUIRE(p && back);
    len = fill_json(p, cap);
    REQUIRE(shoal_codec_compress(p, len, 3, SHOAL_CODEC_F_ZSTD, &out, &n, &codec) == 0);
    REQUIRE(codec == SHOAL_CODEC_ZSTD);
    CHECK_EQ(shoal_codec_decompress(codec, out, n, back, len), 0);

    /* raw_len lies: the frame declares more than the caller expects
     * (refused before decoding), or less. */
    CHECK_EQ(shoal_codec_decompress(codec, out, n, back, len - 1), SHOAL_ETOOBIG);
    CHECK_EQ(shoal_codec_decompress(codec, out, n, back, len + 1), SHOAL_EBADMSG);
    CHECK_EQ(shoal_codec_decompress(codec, out, n, back, (size_t)SHOAL_MSG_RAW_MAX + 1),
             SHOAL_ETOOBIG);
    /* Codec 2 over a codec 1 payload: same frame, wrong bytes out, caught
     * by the chunk hash later; here only the length rules apply. */
    CHECK_EQ(shoal_codec_decompress(SHOAL_CODEC_ZSTD_BF16, out, n, back, len), 0);
    CHECK(memcmp(back, p, len) != 0);
    CHECK_EQ(shoal_codec_decompress(7, out, n, back, len), SHOAL_EPROTO);
    CHECK_EQ(shoal_codec_decompress(SHOAL_CODEC_RAW, p, len, back, len - 1), SHOAL_EBADMSG);

    bad = malloc(n + 8);
    REQUIRE(bad);
    /* Corrupt: one flipped byte in the compressed body. */
    memcpy(bad, out, n);
    bad[n / 2] ^= 0x41;
    CHECK_EQ(shoal_codec_decompress(codec, bad, n, back, len), SHOAL_EBADMSG);
    /* Truncated, and with bytes after the frame. */
    CHECK_EQ(shoal_codec_decompress(codec, out, n - 3, back, len), SHOAL_EBADMSG);
    memcpy(bad, out, n);
    memset(bad + n, 0, 8);
    CHECK_EQ(shoal_codec_decompress(codec, bad, n + 8, back, len), SHOAL_EBADMSG);
    /* Garbage that is not a zstd frame at all, and an empty payload. */
    CHECK_EQ(shoal_codec_decompress(codec, p, 64, back, len), SHOAL_EBADMSG);
    CHECK_EQ(shoal_codec_decompress(codec, p, 0, back, len), SHOAL_EBADMSG);

    /* A frame that does not declare its size is refused: the receiver
     * could not check it before decoding. */
    cc = ZSTD_createCCtx();
    REQUIRE(cc);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
    {
        ZSTD_outBuffer ob = {bad, n + 8, 0};
        ZSTD_inBuffer ib = {p, 1000, 0};
        size_t r = ZSTD_compressStream2(cc, &ob, &ib, ZSTD_e_end);
        REQUIRE(r == 0);
        CHECK(ZSTD_getFrameContentSize(bad, ob.pos) == ZSTD_CONTENTSIZE_UNKNOWN);
        CHECK_EQ(shoal_codec_decompress(SHOAL_CODEC_ZSTD, bad, ob.pos, back, 1000),
                 SHOAL_EBADMSG);
    }
    ZSTD_freeCCtx(cc);
    free(bad);
    free(out);
    free(p);
    free(back);
}

int main(void)
{
    RUN(test_json_compresses);
    RUN(test_random_stays_raw);
    RUN(test_bf16_grouping);
    RUN(test_bad_arguments);
    RUN(test_decoder_refuses);
    return t_done();
}
