/* SPDX-License-Identifier: MIT */
/*
 * Minimal test harness: CHECK/CHECK_EQ report file:line and the values, count
 * failures, and the test's main returns t_done() as its exit status. Each
 * test binary is its own process (meson runs them separately).
 */
#ifndef SHOAL_T_H
#define SHOAL_T_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_failures;
static int t_checks;

#define CHECK(cond)                                                         \
    do {                                                                    \
        t_checks++;                                                         \
        if (!(cond)) {                                                      \
            t_failures++;                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                 \
        }                                                                   \
    } while (0)

#define CHECK_EQ(a, b)                                                      \
    do {                                                                    \
        long long t_a_ = (long long)(a), t_b_ = (long long)(b);             \
        t_checks++;                                                         \
        if (t_a_ != t_b_) {                                                 \
            t_failures++;                                                   \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld vs %lld)\n", \
                    __FILE__, __LINE__, #a, #b, t_a_, t_b_);                 \
        }                                                                   \
    } while (0)

/* Two NUL-terminated strings are equal; both are printed when not. */
#define CHECK_STR(a, b)                                                     \
    do {                                                                    \
        const char *t_sa_ = (a), *t_sb_ = (b);                              \
        t_checks++;                                                         \
        if (strcmp(t_sa_, t_sb_) != 0) {                                    \
            t_failures++;                                                   \
            fprintf(stderr, "%s:%d: CHECK_STR failed: %s == %s\n  got:  %s\n  want: %s\n", \
                    __FILE__, __LINE__, #a, #b, t_sa_, t_sb_);              \
        }                                                                   \
    } while (0)

/* Aborts the test at once (for setup that later checks depend on). */
#define REQUIRE(cond)                                                       \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                 \
            exit(1);                                                        \
        }                                                                   \
    } while (0)

#define RUN(fn)                                                             \
    do {                                                                    \
        int t_before_ = t_failures;                                         \
        fn();                                                               \
        fprintf(stderr, "%s %s\n", t_failures == t_before_ ? "ok  " : "FAIL", #fn); \
    } while (0)

static inline int t_done(void)
{
    fprintf(stderr, "%d checks, %d failed\n", t_checks, t_failures);
    return t_failures ? 1 : 0;
}

#endif
