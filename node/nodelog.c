/* SPDX-License-Identifier: MIT */
/* Timestamped, levelled log lines on stderr for shoald (see nodelog.h). */
#include "nodelog.h"

#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum shoal_log_level log_level = SHOAL_LOG_INFO;
static const char *const names[] = {"error", "warn", "info", "debug"};

void shoal_log_set_level(enum shoal_log_level level) { log_level = level; }

int shoal_log_parse_level(const char *s, enum shoal_log_level *out)
{
    for (int i = 0; i <= SHOAL_LOG_DEBUG; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum shoal_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void shoal_log_clean(char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            s[i] = '?';
    }
}

void shoal_log(enum shoal_log_level level, const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n, m;

    if (level > log_level)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                 tm.tm_sec, ts.tv_nsec / 1000000, names[level]);
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    if ((size_t)(n + m) > sizeof line - 2)
        m = (int)sizeof line - 2 - n;
    shoal_log_clean(line + n, (size_t)m);
    n += m;
    line[n++] = '\n';
    /* One write per line so lines from worker threads never interleave. */
    if (write(STDERR_FILENO, line, (size_t)n) < 0)
        return;
}
