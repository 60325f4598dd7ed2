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

/* Parses "123", "4K", "1M", "2G", "1.5G" (powers of 1024). Returns 0 or -EINVAL. */
int shoal_parse_size(const char *s, uint64_t *out);

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
