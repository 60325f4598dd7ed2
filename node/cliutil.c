/* SPDX-License-Identifier: MIT */
/* Command-line helpers; see cliutil.h. */
#include "cliutil.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int shoal_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -EINVAL;
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'I')
        end++;
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end != '\0')
        return -EINVAL;
    double r = v * mul;
    if (r > 1.8e19)
        return -EINVAL;
    *out = (uint64_t)r;
    return 0;
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
