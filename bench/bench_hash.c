/* SPDX-License-Identifier: MIT */
/*
 * Hashing throughput on one core, over a 256 MiB pseudo-random buffer:
 *   blake2b_mbps       BLAKE2b-256 of the whole buffer (the floor for any
 *                      chunk verification)
 *   chunk_hash_mbps    content-defined chunking (default 256 KiB / 1 MiB /
 *                      4 MiB) plus BLAKE2b of every chunk, through the same
 *                      streaming chunker publishers use (without SHA-256)
 *   chunk_hash_ratio   chunk_hash_mbps / blake2b_mbps. Target >= 0.8: the
 *                      boundary scan should cost little next to the hash.
 *   sha256_mbps        SHA-256 of the whole buffer (the Hub's file digest),
 *                      with the implementation shoal picks (SHA-NI if the CPU
 *                      has it)
 *   sha256_sodium_mbps the same through libsodium's SHA-256, the fallback
 * and, for context, cdc_scan_mbps (boundary scan alone),
 * chunker_sha256_mbps (chunker with the whole-file SHA-256, as publishing
 * runs it) and, in builds with libcrypto, sha256_libcrypto_mbps (OpenSSL's
 * EVP SHA-256 over the same buffer; `openssl speed` hashes 16 KiB that stay
 * in cache, which is not what a file's bytes do). MB/s means 1e6 bytes per
 * second of this process's CPU time: the benchmark is single-threaded, and
 * on a shared machine CPU time is what other work disturbs least (wall
 * time counted the time other processes held the core). Each figure is the
 * best of 3 runs; the BLAKE2b and chunker runs alternate, so that a change
 * in the machine's load between them does not skew their ratio.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdc.h"
#include "hash.h"

#ifdef SHOAL_HAVE_LIBCRYPTO
#include <openssl/evp.h>
#endif

#define BUF_LEN (256u * 1024 * 1024)
#define RUNS 3

static uint8_t *buf;
static size_t chunks;
static uint8_t sink[SHOAL_HASH_LEN];

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fill(uint8_t *b, size_t n)
{
    uint64_t s = 12345;

    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t z = (s += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        z ^= z >> 31;
        for (int k = 0; k < 8; k++)
            b[i + (size_t)k] = (uint8_t)(z >> (8 * k));
    }
}

static int count_cb(void *user, uint64_t offset, uint32_t len, const uint8_t id[SHOAL_HASH_LEN])
{
    chunks++;
    sink[0] ^= id[0];
    return 0;
}

static int run_blake2b(void)
{
    struct shoal_blake2b b;

    shoal_blake2b_init(&b);
    shoal_blake2b_update(&b, buf, BUF_LEN);
    shoal_blake2b_final(&b, sink);
    return 0;
}

/* The digest of the buffer from the last run_sha256. */
static uint8_t sha_digest[SHOAL_HASH_LEN];

static int run_sha256(void)
{
    struct shoal_sha256 s;

    shoal_sha256_init(&s);
    shoal_sha256_update(&s, buf, BUF_LEN);
    shoal_sha256_final(&s, sha_digest);
    return 0;
}

static int run_sha256_sodium(void)
{
    int rv = shoal_sha256_select(SHOAL_SHA256_SODIUM);

    if (rv == 0)
        rv = run_sha256();
    if (shoal_sha256_select(SHOAL_SHA256_AUTO) != 0)
        rv = -1;
    return rv;
}

#ifdef SHOAL_HAVE_LIBCRYPTO
/* OpenSSL's SHA-256, fetched once like protocol/gcm.c fetches its cipher.
 * Its digest goes to |lc_digest|, which main compares with ours. */
static uint8_t lc_digest[SHOAL_HASH_LEN];

static int run_sha256_libcrypto(void)
{
    static EVP_MD *md;
    EVP_MD_CTX *c = NULL;
    unsigned int dlen = 0;
    int rv = -1;

    if (!md && !(md = EVP_MD_fetch(NULL, "SHA256", NULL)))
        goto out;
    if (!(c = EVP_MD_CTX_new()))
        goto out;
    if (EVP_DigestInit_ex(c, md, NULL) != 1 || EVP_DigestUpdate(c, buf, BUF_LEN) != 1 ||
        EVP_DigestFinal_ex(c, lc_digest, &dlen) != 1 || dlen != SHOAL_HASH_LEN)
        goto out;
    rv = 0;
out:
    EVP_MD_CTX_free(c);
    return rv;
}
#endif

static int run_chunker(unsigned flags)
{
    struct shoal_cdc_params p;
    struct shoal_chunker *ch = NULL;
    int rv;

    shoal_cdc_params_default(&p);
    rv = shoal_chunker_new_flags(&ch, &p, flags);
    if (rv == 0)
        rv = shoal_chunker_feed(ch, buf, BUF_LEN, count_cb, NULL);
    if (rv == 0)
        rv = shoal_chunker_finish(ch, count_cb, NULL, sink, NULL);
    shoal_chunker_free(ch);
    return rv;
}

static int run_chunk_hash(void)
{
    return run_chunker(SHOAL_CHUNKER_NO_SHA256);
}

static int run_chunker_sha256(void)
{
    return run_chunker(0);
}

static int run_scan(void)
{
    struct shoal_cdc_params p;
    struct shoal_cdc c;
    size_t pos = 0;

    shoal_cdc_params_default(&p);
    shoal_cdc_init(&c, &p);
    while (pos < BUF_LEN) {
        bool cut;

        pos += shoal_cdc_scan(&c, buf + pos, BUF_LEN - pos, &cut);
        chunks += cut;
    }
    return 0;
}

/* Best of RUNS, in MB/s; negative if the run failed. */
static double best_mbps(int (*fn)(void))
{
    double best = 0;

    for (int i = 0; i < RUNS; i++) {
        double t0 = now();

        if (fn() != 0)
            return -1;
        double dt = now() - t0;
        double mbps = (double)BUF_LEN / dt / 1e6;
        if (mbps > best)
            best = mbps;
    }
    return best;
}

/* Best of RUNS for two functions run alternately; false if a run failed. */
static bool best_pair_mbps(int (*fa)(void), int (*fb)(void), double *a, double *b)
{
    *a = *b = 0;
    for (int i = 0; i < RUNS; i++) {
        for (int k = 0; k < 2; k++) {
            double t0 = now();

            if ((k ? fb : fa)() != 0)
                return false;
            double mbps = (double)BUF_LEN / (now() - t0) / 1e6;
            double *best = k ? b : a;
            if (mbps > *best)
                *best = mbps;
        }
    }
    return true;
}

int main(void)
{
    int rv = 1;

    if (shoal_hash_init() < 0) {
        fprintf(stderr, "bench_hash: libsodium init failed\n");
        goto out;
    }
    buf = malloc(BUF_LEN);
    if (!buf) {
        fprintf(stderr, "bench_hash: cannot allocate %u bytes\n", BUF_LEN);
        goto out;
    }
    fill(buf, BUF_LEN);

    double blake = 0, chunk_hash = 0;
    chunks = 0;
    if (!best_pair_mbps(run_blake2b, run_chunk_hash, &blake, &chunk_hash))
        blake = -1;
    size_t per_run = chunks / RUNS;
    double scan = best_mbps(run_scan);
    double sha = best_mbps(run_sha256);
#ifdef SHOAL_HAVE_LIBCRYPTO
    double sha_lc = best_mbps(run_sha256_libcrypto);
    if (sha_lc > 0 && memcmp(lc_digest, sha_digest, SHOAL_HASH_LEN) != 0) {
        fprintf(stderr, "bench_hash: OpenSSL's SHA-256 of the buffer differs from ours\n");
        goto out;
    }
#else
    double sha_lc = 1; /* not measured */
#endif
    double sha_sodium = best_mbps(run_sha256_sodium);
    double chunker_sha = best_mbps(run_chunker_sha256);
    if (blake <= 0 || chunk_hash <= 0 || sha <= 0 || sha_sodium <= 0 || chunker_sha <= 0 ||
        scan <= 0 || sha_lc <= 0) {
        fprintf(stderr, "bench_hash: a run failed\n");
        goto out;
    }
    fprintf(stderr, "bench_hash: %zu chunks per 256 MiB (mean %.0f KiB)\n", per_run,
            per_run ? (double)BUF_LEN / (double)per_run / 1024 : 0.0);
    printf("BENCH blake2b_mbps %.1f MB/s\n", blake);
    printf("BENCH chunk_hash_mbps %.1f MB/s\n", chunk_hash);
    printf("BENCH chunk_hash_ratio %.3f ratio\n", chunk_hash / blake);
    fprintf(stderr, "bench_hash: sha256 implementation: %s\n",
            shoal_sha256_impl() == SHOAL_SHA256_SHANI ? "SHA-NI" : "libsodium");
    printf("BENCH sha256_mbps %.1f MB/s\n", sha);
    printf("BENCH sha256_sodium_mbps %.1f MB/s\n", sha_sodium);
#ifdef SHOAL_HAVE_LIBCRYPTO
    printf("BENCH sha256_libcrypto_mbps %.1f MB/s\n", sha_lc);
#endif
    printf("BENCH cdc_scan_mbps %.1f MB/s\n", scan);
    printf("BENCH chunker_sha256_mbps %.1f MB/s\n", chunker_sha);
    rv = 0;
out:
    free(buf);
    return rv;
}
