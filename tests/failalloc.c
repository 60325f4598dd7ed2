/* SPDX-License-Identifier: MIT */
/*
 * The allocation wrappers of failalloc.h. One thread: the code under test
 * runs on the test's own thread. A getline() buffer that grows is
 * reallocated inside libc and not failed here; its first allocation is.
 */
#include "failalloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_posix_memalign(void **out, size_t align, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
char *__real_realpath(const char *path, char *resolved);
int __real_vasprintf(char **out, const char *fmt, va_list ap);
ssize_t __real_getline(char **line, size_t *cap, FILE *f);
ssize_t __real___getdelim(char **line, size_t *cap, int delim, FILE *f);
FILE *__real_open_memstream(char **buf, size_t *len);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_posix_memalign(void **out, size_t align, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);
char *__wrap_realpath(const char *path, char *resolved);
int __wrap_vasprintf(char **out, const char *fmt, va_list ap);
int __wrap_asprintf(char **out, const char *fmt, ...);
ssize_t __wrap_getline(char **line, size_t *cap, FILE *f);
ssize_t __wrap___getdelim(char **line, size_t *cap, int delim, FILE *f);
FILE *__wrap_open_memstream(char **buf, size_t *len);

static uint64_t countdown;
static bool fired;
static int64_t live;

void failalloc_arm(uint64_t n)
{
    countdown = n;
    fired = false;
}

void failalloc_disarm(void) { countdown = 0; }

bool failalloc_fired(void) { return fired; }

int64_t failalloc_live(void) { return live; }

/* Whether this allocation is the one to fail. */
static bool fail_now(void)
{
    if (countdown == 0 || --countdown != 0)
        return false;
    fired = true;
    return true;
}

static void *counted(void *p)
{
    if (p)
        live++;
    return p;
}

void *__wrap_malloc(size_t n) { return fail_now() ? NULL : counted(__real_malloc(n)); }

void *__wrap_calloc(size_t k, size_t n) { return fail_now() ? NULL : counted(__real_calloc(k, n)); }

void *__wrap_realloc(void *p, size_t n)
{
    void *q;
    if (fail_now())
        return NULL;
    q = __real_realloc(p, n);
    if (!p)
        return counted(q);
    if (n == 0 && !q)
        live--; /* glibc frees |p| and returns NULL */
    return q;
}

void __wrap_free(void *p)
{
    if (p)
        live--;
    __real_free(p);
}

char *__wrap_strdup(const char *s) { return fail_now() ? NULL : counted(__real_strdup(s)); }

char *__wrap_strndup(const char *s, size_t n)
{
    return fail_now() ? NULL : counted(__real_strndup(s, n));
}

int __wrap_posix_memalign(void **out, size_t align, size_t n)
{
    int rv;
    if (fail_now())
        return 12; /* ENOMEM */
    rv = __real_posix_memalign(out, align, n);
    if (rv == 0)
        live++;
    return rv;
}

void *__wrap_aligned_alloc(size_t align, size_t n)
{
    return fail_now() ? NULL : counted(__real_aligned_alloc(align, n));
}

/* libc allocates these itself: counted here so that the caller's free()
 * balances, and failed as an allocation would. */
char *__wrap_realpath(const char *path, char *resolved)
{
    if (!resolved) {
        if (fail_now()) {
            errno = ENOMEM;
            return NULL;
        }
        return counted(__real_realpath(path, NULL));
    }
    return __real_realpath(path, resolved);
}

int __wrap_vasprintf(char **out, const char *fmt, va_list ap)
{
    int n;

    if (fail_now()) {
        *out = NULL;
        return -1;
    }
    n = __real_vasprintf(out, fmt, ap);
    if (n >= 0)
        live++;
    return n;
}

/* Through the counted vasprintf (glibc's asprintf would not be seen). */
int __wrap_asprintf(char **out, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = __wrap_vasprintf(out, fmt, ap);
    va_end(ap);
    return n;
}

/* Optimised builds see getline() as __getdelim() (glibc's inline). */
ssize_t __wrap___getdelim(char **line, size_t *cap, int delim, FILE *f)
{
    bool fresh = *line == NULL;
    ssize_t n;

    if (fresh && fail_now()) {
        errno = ENOMEM;
        return -1;
    }
    n = __real___getdelim(line, cap, delim, f);
    if (fresh && *line)
        live++;
    return n;
}

ssize_t __wrap_getline(char **line, size_t *cap, FILE *f)
{
    bool fresh = *line == NULL;
    ssize_t n;

    if (fresh && fail_now()) {
        errno = ENOMEM;
        return -1;
    }
    n = __real_getline(line, cap, f);
    if (fresh && *line)
        live++;
    return n;
}

/* Its buffer, handed over at fclose, is the caller's to free. */
FILE *__wrap_open_memstream(char **buf, size_t *len)
{
    FILE *f;

    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    f = __real_open_memstream(buf, len);
    if (f)
        live++;
    return f;
}

int failalloc_walk(const char *name, int (*fn)(void *user), void *user, uint64_t max)
{
    int64_t before = failalloc_live();
    int problems = 0;
    uint64_t n;

    for (n = 1; n <= max; n++) {
        bool hit;
        int rv;

        failalloc_arm(n);
        rv = fn(user);
        hit = fired;
        failalloc_arm(0);
        if (failalloc_live() != before) {
            fprintf(stderr, "%s: with allocation %llu failing, %lld block(s) stay held "
                    "(returned %d)\n", name, (unsigned long long)n,
                    (long long)(failalloc_live() - before), rv);
            problems++;
            before = failalloc_live();
        }
        if (!hit) {
            if (rv != 0) {
                fprintf(stderr, "%s: fails with no allocation failing: %d\n", name, rv);
                problems++;
            }
            break;
        }
    }
    fprintf(stderr, "%s: %llu allocation(s) walked\n", name, (unsigned long long)(n - 1));
    if (n == 1 || n > max) {
        fprintf(stderr, "%s: %s\n", name, n == 1 ? "allocates nothing: the walk tests nothing"
                                                  : "the walk did not end");
        problems++;
    }
    return problems;
}
