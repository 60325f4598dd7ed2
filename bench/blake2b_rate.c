/* SPDX-License-Identifier: MIT */
/*
 * Single-core BLAKE2b-256 rate, the baseline of the swarm benchmarks
 * (bench_swarm.py). Every chunk a daemon receives is hashed once before it
 * is stored, so on loopback, where the wire is nearly free, a transfer can
 * not beat one core of BLAKE2b by much; bench_swarm.py divides the measured
 * transfer rates by this figure, taken on the same machine in the same run.
 *
 * Hashes a 256 MiB pseudo-random buffer with shoal_chunk_id (libsodium's
 * crypto_generichash, the code the daemon uses), best of 3 runs, and prints
 *   BENCH blake2b_mbps <MB/s> MB/s
 * with MB = 1e6 bytes. Exit status 0, or 1 if the buffer cannot be had.
 *
 * The time is this thread's CPU time, not the wall clock: the figure is
 * what one core does, and on a machine where other work competes for the
 * cores (the benchmark's own daemons winding down, other builds) a
 * wall-clock rate would shrink and flatter every ratio divided by it. The
 * wall-clock rate goes to stderr for comparison.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "hash.h"

#define BUF_LEN ((size_t)256 * 1024 * 1024)
#define RUNS 3

static double now(clockid_t clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: incompressible-looking bytes, and every page touched before
 * timing so the first run does not pay for page faults. */
static void fill(uint8_t *b, size_t n)
{
    uint64_t s = 0x5eed;

    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0) {
            uint64_t z = (s += UINT64_C(0x9e3779b97f4a7c15));

            z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
            z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
            s ^= z >> 31;
        }
        b[i] = (uint8_t)(s >> (8 * (i % 8)));
    }
}

int main(void)
{
    uint8_t id[SHOAL_HASH_LEN];
    uint8_t sink = 0;
    uint8_t *buf = NULL;
    double best = 0, best_wall = 0;
    int rc = 1;

    if (shoal_hash_init() != 0) {
        fprintf(stderr, "blake2b_rate: libsodium init failed\n");
        goto out;
    }
    buf = malloc(BUF_LEN);
    if (!buf) {
        fprintf(stderr, "blake2b_rate: cannot allocate %zu bytes\n", BUF_LEN);
        goto out;
    }
    fill(buf, BUF_LEN);
    for (int r = 0; r < RUNS; r++) {
        double w0 = now(CLOCK_MONOTONIC), t0 = now(CLOCK_THREAD_CPUTIME_ID), dt, dw;

        shoal_chunk_id(id, buf, BUF_LEN);
        dt = now(CLOCK_THREAD_CPUTIME_ID) - t0;
        dw = now(CLOCK_MONOTONIC) - w0;
        /* Keep the digest live so the call cannot be optimized away. */
        sink ^= id[r % SHOAL_HASH_LEN];
        if (dt > 0 && (double)BUF_LEN / dt > best)
            best = (double)BUF_LEN / dt;
        if (dw > 0 && (double)BUF_LEN / dw > best_wall)
            best_wall = (double)BUF_LEN / dw;
    }
    fprintf(stderr, "blake2b_rate: %d runs over %zu MiB (digest byte %02x); wall-clock rate "
            "%.1f MB/s\n", RUNS, BUF_LEN >> 20, sink, best_wall / 1e6);
    printf("BENCH blake2b_mbps %.1f MB/s\n", best / 1e6);
    rc = 0;
out:
    free(buf);
    return rc;
}
