/* SPDX-License-Identifier: MIT */
/*
 * The daemon's compression policy in node/codec.h: the saving bar a chunk
 * must clear (10% for remote peers, 50% for peers on the same host), which
 * candidates each level tries, and that the per-thread zstd contexts reused
 * from call to call (also across levels, after a chunk that did not make
 * the bar, and on threads that then exit) still give payloads that decode
 * to the same bytes.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "msg.h"
#include "gen.h"
#include "t.h"

/* JSON-ish text: a vocabulary of short pieces, far better than 2:1. */
static void fill_text(uint8_t *p, size_t len)
{
    static const char letters[] = "etaoinshrdlu";
    size_t o = 0;
    for (unsigned i = 0; o < len; i++) {
        char tok[48];
        int n = snprintf(tok, sizeof tok, "\"%c%c%c\": %u, ", letters[next_u64() % 12],
                         letters[next_u64() % 12], letters[next_u64() % 12], i % 5000);
        for (int k = 0; k < n && o < len; k++)
            p[o++] = (uint8_t)tok[k];
    }
}

/* Compresses |raw| with |bar| and checks the result decodes to |raw|;
 * returns the codec chosen, and the payload size in |*n|. */
static uint8_t roundtrip(const uint8_t *raw, size_t len, int level, unsigned bar, size_t *n)
{
    uint8_t *out = NULL, *back = malloc(len), codec = 0xff;
    size_t olen = 0;

    REQUIRE(back != NULL);
    CHECK_EQ(shoal_codec_compress_min(raw, len, level, shoal_codec_flags_for_level(level), bar,
                                      &out, &olen, &codec),
             0);
    if (codec == SHOAL_CODEC_RAW) {
        CHECK(out == NULL);
        olen = len;
    } else {
        CHECK(out != NULL);
        CHECK(olen * 100 <= len * (100 - bar));
        CHECK_EQ(shoal_codec_decompress(codec, out, olen, back, len), 0);
        CHECK(memcmp(back, raw, len) == 0);
    }
    *n = olen;
    free(out);
    free(back);
    return codec;
}

static void test_levels_choose_candidates(void)
{
    CHECK_EQ(shoal_codec_flags_for_level(0), 0u);
    CHECK_EQ(shoal_codec_flags_for_level(-1), 0u);
    CHECK_EQ(shoal_codec_flags_for_level(1), (unsigned)SHOAL_CODEC_F_ZSTD);
    CHECK_EQ(shoal_codec_flags_for_level(SHOAL_CODEC_GROUP_MIN_LEVEL - 1),
             (unsigned)SHOAL_CODEC_F_ZSTD);
    CHECK_EQ(shoal_codec_flags_for_level(SHOAL_CODEC_GROUP_MIN_LEVEL),
             (unsigned)(SHOAL_CODEC_F_ZSTD | SHOAL_CODEC_F_BF16));
}

/* Weights clear the remote bar but not the same-host one; text clears both. */
static void test_local_bar_skips_weights(void)
{
    size_t len = 1u << 20, n;
    uint8_t *w = malloc(len), *t = malloc(len);

    REQUIRE(w && t);
    fill_bf16(w, len, 0.02);
    fill_text(t, len);
    CHECK_EQ(roundtrip(w, len, 1, SHOAL_CODEC_MIN_SAVING_PCT, &n), SHOAL_CODEC_ZSTD);
    CHECK(n < len);
    CHECK_EQ(roundtrip(w, len, 1, SHOAL_CODEC_LOCAL_SAVING_PCT, &n), SHOAL_CODEC_RAW);
    CHECK_EQ(roundtrip(t, len, 1, SHOAL_CODEC_LOCAL_SAVING_PCT, &n), SHOAL_CODEC_ZSTD);
    CHECK(n * 2 <= len);
    /* At the grouping level the bf16 form wins on weights. */
    CHECK_EQ(roundtrip(w, len, SHOAL_CODEC_GROUP_MIN_LEVEL, SHOAL_CODEC_MIN_SAVING_PCT, &n),
             SHOAL_CODEC_ZSTD_BF16);
    /* A bar below the floor is raised to it: random bytes stay raw. */
    fill_random(w, len);
    CHECK_EQ(roundtrip(w, len, 1, 0, &n), SHOAL_CODEC_RAW);
    free(w);
    free(t);
}

/* One thread's contexts across levels, sizes and failed attempts. */
static void test_context_reuse(void)
{
    size_t len = 3u << 20, n;
    uint8_t *r = malloc(len), *t = malloc(len), *w = malloc(len);

    REQUIRE(r && t && w);
    fill_random(r, len);
    fill_text(t, len);
    fill_bf16(w, len, 0.02);
    for (int round = 0; round < 2; round++) {
        /* Small, then large (the scratch is dropped after a big chunk). */
        CHECK_EQ(roundtrip(t, 5000, 1, 10, &n), SHOAL_CODEC_ZSTD);
        CHECK_EQ(roundtrip(r, len, 1, 10, &n), SHOAL_CODEC_RAW);
        /* Small random chunks are not sampled: zstd runs out of room
         * mid-frame, and the next frame must still be whole. */
        CHECK_EQ(roundtrip(r, 100000, 3, 10, &n), SHOAL_CODEC_RAW);
        CHECK_EQ(roundtrip(t, len, 3, 10, &n), SHOAL_CODEC_ZSTD);
        CHECK_EQ(roundtrip(w, len, 5, 10, &n), SHOAL_CODEC_ZSTD_BF16);
        CHECK_EQ(roundtrip(t, 200000, 1, 50, &n), SHOAL_CODEC_ZSTD);
    }
    free(r);
    free(t);
    free(w);
}

struct worker {
    const uint8_t *data;
    size_t len;
    int level;
    uint8_t codec;
    int ok;
};

static void *work(void *arg)
{
    struct worker *wk = arg;
    uint8_t *out = NULL, *back = malloc(wk->len);
    size_t olen;

    wk->ok = back && shoal_codec_compress_min(wk->data, wk->len, wk->level,
                                              shoal_codec_flags_for_level(wk->level), 10,
                                              &out, &olen, &wk->codec) == 0 &&
             wk->codec != SHOAL_CODEC_RAW &&
             shoal_codec_decompress(wk->codec, out, olen, back, wk->len) == 0 &&
             memcmp(back, wk->data, wk->len) == 0;
    free(out);
    free(back);
    return NULL;
}

/* Threads compressing at once at different levels each get their own
 * contexts (and free them when they exit: ASan's leak check). */
static void test_threads(void)
{
    size_t len = 1u << 20;
    uint8_t *t = malloc(len), *w = malloc(len);
    pthread_t th[4];
    struct worker wk[4];

    REQUIRE(t && w);
    fill_text(t, len);
    fill_bf16(w, len, 0.02);
    for (int i = 0; i < 4; i++) {
        wk[i] = (struct worker){.data = i % 2 ? w : t, .len = len, .level = 1 + 2 * (i / 2)};
        REQUIRE(pthread_create(&th[i], NULL, work, &wk[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(wk[i].ok);
    }
    CHECK_EQ(wk[3].codec, SHOAL_CODEC_ZSTD_BF16);
    free(t);
    free(w);
}

int main(void)
{
    RUN(test_levels_choose_candidates);
    RUN(test_local_bar_skips_weights);
    RUN(test_context_reuse);
    RUN(test_threads);
    return t_done();
}
