/* SPDX-License-Identifier: MIT */
/* Command-line helpers; see cliutil.h. */
#include "cliutil.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The number at the start of |s|: digits with at most one '.', nothing
 * else (strtod would also take "nan", "inf", "-1", "0x10" and "1e9",
 * none of which an operator means as a size or rate). Returns 0 and the
 * value and where it ended, or -EINVAL. */
static int parse_number(const char *s, double *v, const char **end)
{
    size_t i = 0, digits = 0;
    bool dot = false;
    char *e;

    for (;; i++) {
        if (s[i] >= '0' && s[i] <= '9')
            digits++;
        else if (s[i] == '.' && !dot)
            dot = true;
        else
            break;
    }
    if (digits == 0)
        return -EINVAL;
    errno = 0;
    *v = strtod(s, &e);
    if (errno || e != s + i || !isfinite(*v))
        return -EINVAL;
    *end = e;
    return 0;
}

/* K/M/G/T (either case) into |*mul| as a power of |base|; 1 if none. */
static const char *multiplier(const char *p, double base, double *mul)
{
    *mul = 1;
    switch (*p) {
    case 'k': case 'K': *mul = base; break;
    case 'm': case 'M': *mul = base * base; break;
    case 'g': case 'G': *mul = base * base * base; break;
    case 't': case 'T': *mul = base * base * base * base; break;
    default: return p;
    }
    return p + 1;
}

int shoal_parse_size(const char *s, uint64_t *out)
{
    const char *end;
    double v, mul;

    if (parse_number(s, &v, &end) != 0)
        return -EINVAL;
    end = multiplier(end, 1024.0, &mul);
    if (*end == 'i' || *end == 'I')
        end++;
    /* A lowercase b means bits elsewhere (rates); a size is bytes. */
    if (*end == 'B')
        end++;
    if (*end != '\0')
        return -EINVAL;
    double r = v * mul;
    if (r > 1.8e19)
        return -EINVAL;
    *out = (uint64_t)r;
    return 0;
}

int shoal_parse_rate(const char *s, uint64_t *out, char *why, size_t whylen)
{
    const char *end;
    double v, mul, r;
    bool bits = false;

    if (parse_number(s, &v, &end) != 0)
        goto bad;
    /* Bits: K/M/G/T are powers of 1000 (as link speeds and shoal-sim
     * count them); bytes: powers of 1024, as shoald always took them. */
    const char *u = multiplier(end, 1000.0, &mul);
    bool bin = *u == 'i' || *u == 'I';
    if (bin)
        u++;
    if (strncmp(u, "bit", 3) == 0 || strncmp(u, "bps", 3) == 0) {
        bits = true;
        u += 3;
    } else if (*u == 'b') {
        bits = true;
        u++;
    } else if (*u == 'B') {
        u++;
    }
    if (!bits && strncmp(u, "ps", 2) == 0)
        goto bad; /* "MBps": say MB/s */
    if (strcmp(u, "/s") == 0)
        u += 2;
    if (*u != '\0')
        goto bad;
    if (bits && bin) {
        snprintf(why, whylen, "'%s': a bit rate takes K/M/G/T as powers of 1000 (Mbit, "
                 "not Mibit); for powers of 1024 give bytes (MiB)", s);
        return -EINVAL;
    }
    if (bits) {
        r = v * mul / 8;
    } else {
        multiplier(end, 1024.0, &mul);
        r = v * mul;
    }
    if (r > (double)SHOAL_RATE_MAX) {
        snprintf(why, whylen, "'%s' is more than the most a rate may be (1T, 1 TiB/s)", s);
        return -EINVAL;
    }
    if (r > 0 && r < 1) {
        snprintf(why, whylen, "'%s' is less than 1 byte/s (0 means no cap)", s);
        return -EINVAL;
    }
    *out = (uint64_t)r;
    return 0;
bad:
    snprintf(why, whylen, "'%s' is not a rate: give bytes/s as a number with K, M, G or T "
             "(powers of 1024: 100M is 100 MiB/s), or bits/s with bit or b (powers of "
             "1000: 100Mbit or 100Mb is 100 Mbit/s)", s);
    return -EINVAL;
}

const char *shoal_fmt_bytes(char *buf, size_t cap, uint64_t bytes)
{
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, cap, "%.2f %s", v, unit[u]);
    return buf;
}

const char *shoal_fmt_rate(char *buf, size_t cap, uint64_t bytes_per_s)
{
    static const char *si[] = {"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"};
    char b[32];
    double bits = (double)bytes_per_s * 8;
    unsigned u = 0;

    if (bytes_per_s == 0) {
        snprintf(buf, cap, "none");
        return buf;
    }
    while (bits >= 1000 && u < 4) {
        bits /= 1000;
        u++;
    }
    shoal_fmt_bytes(b, sizeof b, bytes_per_s);
    snprintf(buf, cap, "%s/s (%.4g %s)", b, bits, si[u]);
    return buf;
}

double shoal_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void shoal_progress_start(struct shoal_progress *p, FILE *out, const char *what, uint64_t total)
{
    p->out = out;
    p->tty = isatty(fileno(out));
    p->what = what;
    p->total = total;
    p->start_s = shoal_now_s();
    p->last_s = 0;
}

static void progress_line(struct shoal_progress *p, uint64_t done, const char *detail, bool final)
{
    double now = shoal_now_s();
    double el = now - p->start_s;
    double rate = el > 0 ? (double)done / el : 0;
    char a[32], b[32], r[32];
    shoal_fmt_bytes(a, sizeof a, done);
    shoal_fmt_bytes(b, sizeof b, p->total);
    shoal_fmt_bytes(r, sizeof r, (uint64_t)rate);
    double pct = p->total ? 100.0 * (double)done / (double)p->total : 100.0;
    if (p->tty) {
        int width = 30, fill = (int)(pct / 100.0 * width);
        char bar[31];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(p->out, "\r%s [%s] %5.1f%% %s/%s %s/s %s%s", p->what, bar, pct, a, b, r,
                detail ? detail : "", final ? "\n" : "\033[K");
    } else {
        fprintf(p->out, "%s: %.1f%% %s of %s, %s/s%s%s\n", p->what, pct, a, b, r,
                detail ? " " : "", detail ? detail : "");
    }
    fflush(p->out);
    p->last_s = now;
}

void shoal_progress_update(struct shoal_progress *p, uint64_t done, const char *detail)
{
    double now = shoal_now_s();
    double every = p->tty ? 0.1 : 5.0;
    if (now - p->last_s < every)
        return;
    progress_line(p, done, detail, false);
}

void shoal_progress_end(struct shoal_progress *p, uint64_t done)
{
    progress_line(p, done, NULL, true);
}
