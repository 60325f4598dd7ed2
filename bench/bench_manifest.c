/* SPDX-License-Identifier: MIT */
/*
 * Manifest cost at release scale: 100 files x 1000 chunks (100,000 chunks,
 * about a 100 GB release at 1 MiB average chunks) with random ids. Times
 * validate+encode+sign and verify+decode+validate, best of 3, and reports
 * the size of the signed form.
 *   BENCH manifest_100k_ms     sign + parse, best of 3 (target < 200)
 *   BENCH manifest_100k_bytes  signed size (target < 6,000,000)
 */
#include "error.h"
#include "keys.h"
#include "manifest.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FILES 100
#define CHUNKS_PER_FILE 1000
#define ROUNDS 3

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static struct shoal_manifest *build(void)
{
    struct shoal_cdc_params p;
    struct shoal_manifest *m = NULL;
    shoal_cdc_params_default(&p);
    if (shoal_manifest_new(&m, SHOAL_REPO_MODEL, "bench-org/bench-model-100b",
                           "0123456789abcdef0123456789abcdef01234567", &p) != 0)
        return NULL;
    uint8_t id[32], sha[32];
    for (int f = 0; f < FILES; f++) {
        uint32_t lens[CHUNKS_PER_FILE];
        uint64_t size = 0;
        for (int c = 0; c < CHUNKS_PER_FILE; c++) {
            uint32_t r;
            randombytes_buf(&r, sizeof r);
            lens[c] = p.min_size + r % (p.max_size - p.min_size + 1);
            size += lens[c];
        }
        char path[64];
        snprintf(path, sizeof path, "model-%05d-of-%05d.safetensors", f + 1, FILES);
        randombytes_buf(sha, sizeof sha);
        if (shoal_manifest_add_file(m, path, size, sha) != 0)
            goto fail;
        for (int c = 0; c < CHUNKS_PER_FILE; c++) {
            randombytes_buf(id, sizeof id);
            if (shoal_manifest_add_chunk(m, id, lens[c]) != 0)
                goto fail;
        }
    }
    return m;
fail:
    shoal_manifest_free(m);
    return NULL;
}

int main(void)
{
    struct shoal_pubkey pk;
    struct shoal_seckey sk;
    struct shoal_keyset *trusted = NULL;
    double best = 1e18, best_sign = 1e18, best_parse = 1e18;
    size_t bytes = 0;
    int rv = 1;

    if (shoal_key_generate(&pk, &sk) != 0 || shoal_keyset_new(&trusted) != 0 ||
        shoal_keyset_add(trusted, &pk) != 0) {
        fprintf(stderr, "bench_manifest: key setup failed\n");
        goto out;
    }
    for (int round = 0; round < ROUNDS; round++) {
        struct shoal_manifest *m = build(), *p = NULL;
        struct shoal_buf sb;
        shoal_buf_init(&sb, SHOAL_MF_MAX_BYTES_DEFAULT);
        if (!m) {
            fprintf(stderr, "bench_manifest: build failed\n");
            goto out;
        }
        double t0 = now_ms();
        int e = shoal_manifest_sign(m, &sk, 1700000000u, &sb);
        double t1 = now_ms();
        if (e == 0)
            e = shoal_manifest_parse(&p, sb.data, sb.len, trusted, NULL);
        double t2 = now_ms();
        if (e != 0 || shoal_manifest_nchunks(p) != FILES * CHUNKS_PER_FILE) {
            fprintf(stderr, "bench_manifest: %s\n", shoal_strerror(e));
            shoal_manifest_free(m);
            shoal_manifest_free(p);
            shoal_buf_free(&sb);
            goto out;
        }
        bytes = sb.len;
        if (t2 - t0 < best)
            best = t2 - t0;
        if (t1 - t0 < best_sign)
            best_sign = t1 - t0;
        if (t2 - t1 < best_parse)
            best_parse = t2 - t1;
        shoal_manifest_free(m);
        shoal_manifest_free(p);
        shoal_buf_free(&sb);
    }
    printf("BENCH manifest_100k_ms %.1f ms\n", best);
    printf("BENCH manifest_100k_sign_ms %.1f ms\n", best_sign);
    printf("BENCH manifest_100k_parse_ms %.1f ms\n", best_parse);
    printf("BENCH manifest_100k_bytes %zu bytes\n", bytes);
    if (best >= 200.0)
        fprintf(stderr, "bench_manifest: above the 200 ms target\n");
    if (bytes >= 6000000)
        fprintf(stderr, "bench_manifest: above the 6,000,000 byte target\n");
    rv = 0;
out:
    shoal_keyset_free(trusted);
    return rv;
}
