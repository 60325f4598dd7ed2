/* SPDX-License-Identifier: MIT */
/*
 * What per-chunk zstd (node/codec.h) saves and costs, at the level shoald
 * uses by default (1), on 1 MiB chunks of:
 *   - a generated bf16 shard (values from N(0, 0.02), like trained weights
 *     and like tests/hub/genrepo.py's shards), plain zstd and byte-grouped;
 *   - tokenizer/config JSON (a BPE-looking vocab and merges, a config);
 *   - the real fp32 weights in ../shared/data/real-weights when present
 *     (informational).
 * A chunk that does not save 10% counts as sent raw (saving 0), exactly as
 * the daemon sends it. Throughput is raw MB per second on one core,
 * including the probe that skips incompressible chunks.
 * Usage: bench_codec [REAL_WEIGHTS_DIR]
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "msg.h"

#define CHUNK (1u << 20)

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double next_unit(void)
{
    return ((double)(next_u64() >> 11) + 0.5) / 9007199254740992.0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill_bf16(uint8_t *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i += 2) {
        float f = (float)(0.02 * sqrt(-2.0 * log(next_unit())) *
                          cos(6.283185307179586 * next_unit()));
        uint32_t bits;
        memcpy(&bits, &f, 4);
        bits += 0x7fff + ((bits >> 16) & 1);
        p[i] = (uint8_t)(bits >> 16);
        p[i + 1] = (uint8_t)(bits >> 24);
    }
}

/* A tokenizer.json-like file: vocab of BPE pieces, then merges, then a
 * config. */
static size_t fill_json(uint8_t *p, size_t cap)
{
    static const char letters[] = "etaoinshrdlucmfwypvbgkjqxz";
    char tok[24];
    size_t o = 0;
    unsigned i = 0;

    o += (size_t)snprintf((char *)p + o, cap - o,
                          "{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (; o + 256 < cap * 2 / 3; i++) {
        size_t n = 2 + next_u64() % 9, k = 0;
        if (next_u64() % 3 == 0)
            k += (size_t)snprintf(tok, sizeof tok, "\\u0120");
        for (; n > 0 && k + 1 < sizeof tok; n--)
            tok[k++] = letters[(size_t)(26.0 * pow(next_unit(), 1.8))];
        tok[k] = '\0';
        o += (size_t)snprintf((char *)p + o, cap - o, "\"%s\": %u, ", tok, i);
    }
    o += (size_t)snprintf((char *)p + o, cap - o, "\"<eos>\": %u}, \"merges\": [", i);
    while (o + 256 < cap) {
        o += (size_t)snprintf((char *)p + o, cap - o, "\"%c%c %c%c\", ",
                              letters[next_u64() % 12], letters[next_u64() % 26],
                              letters[next_u64() % 12], letters[next_u64() % 26]);
    }
    o += (size_t)snprintf((char *)p + o, cap - o, "\"e r\"]}}\n");
    return o;
}

struct result {
    double saving, c_mbps, d_mbps;
};

static struct result measure(const uint8_t *data, size_t len, unsigned flags)
{
    struct result r = {0, 0, 0};
    uint8_t *back = malloc(CHUNK), **outs, *codecs;
    size_t nch = (len + CHUNK - 1) / CHUNK, *olen, sent = 0;
    double t0, t1, t2;

    outs = calloc(nch, sizeof *outs);
    olen = calloc(nch, sizeof *olen);
    codecs = calloc(nch, 1);
    if (!back || !outs || !olen || !codecs)
        goto out;
    t0 = now_s();
    for (size_t i = 0; i < nch; i++) {
        size_t n = len - i * CHUNK < CHUNK ? len - i * CHUNK : CHUNK;
        if (shoal_codec_compress(data + i * CHUNK, n, 1, flags, &outs[i], &olen[i],
                                 &codecs[i]) != 0)
            goto out;
        sent += codecs[i] == SHOAL_CODEC_RAW ? n : olen[i];
    }
    t1 = now_s();
    for (size_t i = 0; i < nch; i++) {
        size_t n = len - i * CHUNK < CHUNK ? len - i * CHUNK : CHUNK;
        if (codecs[i] != SHOAL_CODEC_RAW &&
            (shoal_codec_decompress(codecs[i], outs[i], olen[i], back, n) != 0 ||
             memcmp(back, data + i * CHUNK, n) != 0)) {
            fprintf(stderr, "bench_codec: chunk %zu does not round-trip\n", i);
            exit(1);
        }
    }
    t2 = now_s();
    r.saving = 1.0 - (double)sent / (double)len;
    r.c_mbps = (double)len / 1e6 / (t1 - t0);
    /* Decoding cost per raw MB delivered (raw chunks cost nothing). */
    r.d_mbps = (double)len / 1e6 / (t2 - t1 > 1e-9 ? t2 - t1 : 1e-9);
out:
    for (size_t i = 0; outs && i < nch; i++)
        free(outs[i]);
    free(outs);
    free(olen);
    free(codecs);
    free(back);
    return r;
}

static void real_weights(const char *dir)
{
    DIR *dp = opendir(dir);
    struct dirent *e;
    uint8_t *all = NULL;
    size_t len = 0;

    if (!dp) {
        printf("# no real weights at %s: skipped\n", dir);
        return;
    }
    while ((e = readdir(dp))) {
        char path[4096];
        FILE *f;
        long n;
        uint8_t *grown;
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 5, ".onnx") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        f = fopen(path, "rb");
        if (!f)
            continue;
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        fseek(f, 0, SEEK_SET);
        grown = n > 0 ? realloc(all, len + (size_t)n) : NULL;
        if (grown && fread(grown + len, 1, (size_t)n, f) == (size_t)n) {
            all = grown;
            len += (size_t)n;
        } else if (grown) {
            all = grown;
        }
        fclose(f);
    }
    closedir(dp);
    if (len > 0) {
        struct result z = measure(all, len, SHOAL_CODEC_F_ZSTD);
        struct result g = measure(all, len, SHOAL_CODEC_F_ZSTD | SHOAL_CODEC_F_BF16);
        printf("# real fp32 weights (.onnx, %zu bytes), informational\n", len);
        printf("BENCH zstd_saving_real_fp32 %.4f fraction\n", z.saving);
        printf("BENCH zstd_saving_real_fp32_best %.4f fraction\n", g.saving);
        printf("BENCH zstd_real_fp32_compress_mbps %.1f MB/s\n", g.c_mbps);
    }
    free(all);
}

int main(int argc, char **argv)
{
    size_t bf_len = 64u << 20, js_cap = 16u << 20, js_len;
    uint8_t *bf = malloc(bf_len), *js = malloc(js_cap);
    struct result z, g, j;

    if (!bf || !js)
        return 1;
    fill_bf16(bf, bf_len);
    js_len = fill_json(js, js_cap);
    z = measure(bf, bf_len, SHOAL_CODEC_F_ZSTD);
    g = measure(bf, bf_len, SHOAL_CODEC_F_BF16);
    j = measure(js, js_len, SHOAL_CODEC_F_ZSTD | SHOAL_CODEC_F_BF16);
    printf("# 1 MiB chunks, zstd level 1; a chunk saving < 10%% goes raw (0 saved)\n");
    printf("BENCH zstd_saving_bf16 %.4f fraction\n", z.saving);
    printf("BENCH zstd_saving_bf16_grouped %.4f fraction\n", g.saving);
    printf("BENCH zstd_saving_json %.4f fraction\n", j.saving);
    printf("BENCH zstd_bf16_compress_mbps %.1f MB/s\n", z.c_mbps);
    printf("BENCH zstd_bf16_grouped_compress_mbps %.1f MB/s\n", g.c_mbps);
    printf("BENCH zstd_json_compress_mbps %.1f MB/s\n", j.c_mbps);
    printf("BENCH zstd_bf16_decompress_mbps %.1f MB/s\n", z.d_mbps);
    printf("BENCH zstd_bf16_grouped_decompress_mbps %.1f MB/s\n", g.d_mbps);
    printf("BENCH zstd_json_decompress_mbps %.1f MB/s\n", j.d_mbps);
    real_weights(argc > 1 ? argv[1] : "../shared/data/real-weights");
    free(bf);
    free(js);
    return 0;
}
