/* SPDX-License-Identifier: MIT */
/*
 * The daemon's log: one line per event to stderr, with a UTC timestamp and a
 * level, so an operator (or journald) can read what happened and why. Safe to
 * call from worker threads (each line is one write).
 */
#ifndef SHOAL_NODELOG_H
#define SHOAL_NODELOG_H

#include <stddef.h>

enum shoal_log_level { SHOAL_LOG_ERROR = 0, SHOAL_LOG_WARN, SHOAL_LOG_INFO, SHOAL_LOG_DEBUG };

/* Lines above |level| are dropped. Default SHOAL_LOG_INFO. */
void shoal_log_set_level(enum shoal_log_level level);
/* Parses "error", "warn", "info", "debug". Returns 0 or -EINVAL. */
int shoal_log_parse_level(const char *s, enum shoal_log_level *out);
/* Replaces every control byte (below 0x20, and 0x7f) in |s[0..len)| with
 * '?', in place. */
void shoal_log_clean(char *s, size_t len);
/* Formats one line (printf-style) at |level|. The formatted text goes
 * through shoal_log_clean(): strings from peers and trackers (a BYE reason,
 * a zone, an error message) are logged as given, and a newline or escape
 * sequence in them must not forge or hide log lines. */
void shoal_log(enum shoal_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define LOG_E(...) shoal_log(SHOAL_LOG_ERROR, __VA_ARGS__)
#define LOG_W(...) shoal_log(SHOAL_LOG_WARN, __VA_ARGS__)
#define LOG_I(...) shoal_log(SHOAL_LOG_INFO, __VA_ARGS__)
#define LOG_D(...) shoal_log(SHOAL_LOG_DEBUG, __VA_ARGS__)

#endif
