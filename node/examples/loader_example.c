/* SPDX-License-Identifier: MIT */
/*
 * Example loader in C: asks the local shoald for a release through the
 * loader socket and takes each file as it is handed over, mapping the
 * daemon's own pages (no copy). Where a real loader would give the mapping
 * to the accelerator runtime (a PJRT buffer from host memory, cudaMemcpy,
 * ...), this one re-checks the file's sha256 from the mapping and prints
 * one line per file, so it doubles as a check of the hand-off:
 *
 *   FILE <index> <path> <size> <sha256 of the mapped bytes> <ready_ns> <recv_ns>
 *   DONE <files>
 *
 * usage: loader_example SOCKET RELEASE [PATH...]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "hash.h"
#include "shoal_loader.h"

static unsigned long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* Stands in for the accelerator runtime: hashes what it was given. */
static int hand_to_accelerator(const struct shoal_loader_file *f, int fd, char hex[65])
{
    struct shoal_sha256 st;
    uint8_t digest[32];
    void *p = NULL;

    if (f->size > 0) {
        p = mmap(NULL, f->size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            return -errno;
    }
    shoal_sha256_init(&st);
    shoal_sha256_update(&st, p, f->size);
    shoal_sha256_final(&st, digest);
    shoal_hex(hex, digest, 32);
    if (p)
        munmap(p, f->size);
    return memcmp(digest, f->sha256, 32) == 0 ? 0 : SHOAL_EBADHASH;
}

int main(int argc, char **argv)
{
    struct shoal_loader_client *c = NULL;
    struct shoal_loader_file f;
    unsigned files = 0;
    int fd, rv, rc = 1;

    if (argc < 3) {
        fprintf(stderr, "usage: %s SOCKET RELEASE [PATH...]\n", argv[0]);
        return 2;
    }
    if (shoal_hash_init() != 0)
        return 1;
    rv = shoal_loader_connect(&c, argv[1]);
    if (rv == 0)
        rv = shoal_loader_want(c, argv[2], (const char *const *)argv + 3, (size_t)argc - 3);
    if (rv != 0) {
        fprintf(stderr, "loader_example: %s: %s\n", argv[1], shoal_strerror(rv));
        goto out;
    }
    while ((rv = shoal_loader_next_file(c, &f, &fd, 120000)) == 1) {
        char hex[65];
        unsigned long long now = mono_ns();
        int hv = hand_to_accelerator(&f, fd, hex);
        close(fd);
        printf("FILE %u %s %llu %s %llu %llu\n", f.index, f.path, (unsigned long long)f.size,
               hex, (unsigned long long)f.ready_ns, now);
        fflush(stdout);
        if (hv != 0) {
            fprintf(stderr, "loader_example: %s: %s\n", f.path, shoal_strerror(hv));
            goto out;
        }
        files++;
    }
    if (rv != 0) {
        fprintf(stderr, "loader_example: %s (%s)\n", shoal_strerror(rv), shoal_loader_error(c));
        goto out;
    }
    printf("DONE %u\n", files);
    rc = 0;
out:
    shoal_loader_close(c);
    return rc;
}
