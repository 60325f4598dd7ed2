/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by the command-line programs: size parsing with
 * K/M/G suffixes, reading whole small files, a progress line that redraws on
 * a terminal and prints sparse plain lines otherwise.
 */
#ifndef SHOAL_CLIUTIL_H
#define SHOAL_CLIUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "smallfile.h" /* shoal_read_file, shoal_write_file_atomic */

/* Parses a size in bytes: "123", "4K", "1M", "2G", "1.5G", also "4KiB",
 * "1MB" (K/M/G/T are powers of 1024; a lowercase "b", bits in a rate, is
 * refused, as are signs, exponents, "nan" and "inf"). Returns 0 or
 * -EINVAL. */
int shoal_parse_size(const char *s, uint64_t *out);

/* Most a rate may be: 1 TiB/s. */
#define SHOAL_RATE_MAX (1ull << 40)

/*
 * Parses a rate into bytes per second: a number with K/M/G/T for bytes/s
 * in powers of 1024 ("100M", "100MB", "100MiB", "100MB/s" are all 100 MiB/s;
 * "B" alone is bytes), or with "bit", "bps" or a lowercase "b" for bits/s
 * in powers of 1000, as link speeds and shoal-sim count them ("100Mbit",
 * "100Mb", "100Mbit/s" are 12,500,000 bytes/s). 0 is 0 (no cap). Refused
 * with a reason in |why|: anything else, "nan", "inf", a sign, more than
 * SHOAL_RATE_MAX, a non-zero rate under 1 byte/s, "Mibit". Returns 0 or
 * -EINVAL.
 */
int shoal_parse_rate(const char *s, uint64_t *out, char *why, size_t whylen);

/* Formats a rate in bytes/s as "11.92 MiB/s (100 Mbit/s)", or "none" for
 * 0, into |buf|. Returns buf. */
const char *shoal_fmt_rate(char *buf, size_t cap, uint64_t bytes_per_s);

/* Formats |bytes| as "1.50 GiB" into |buf|. Returns buf. */
const char *shoal_fmt_bytes(char *buf, size_t cap, uint64_t bytes);



/* Progress reporting for long work: on a terminal a single redrawn line,
 * otherwise at most one line every few seconds. */
struct shoal_progress {
    FILE *out;
    bool tty;
    const char *what;
    uint64_t total;
    double start_s;
    double last_s;
};
void shoal_progress_start(struct shoal_progress *p, FILE *out, const char *what, uint64_t total);
void shoal_progress_update(struct shoal_progress *p, uint64_t done, const char *detail);
void shoal_progress_end(struct shoal_progress *p, uint64_t done);

/* Seconds on the monotonic clock. */
double shoal_now_s(void);

#endif
