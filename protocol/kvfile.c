/* SPDX-License-Identifier: MIT */
/*
 * 'key = value' settings files. See kvfile.h.
 */
#include "kvfile.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"

static char *trim(char *s)
{
    char *e;
    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static void strip_comment(char *s)
{
    for (char *p = s; *p; p++) {
        if (*p == '#' && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            return;
        }
    }
}

int shoal_kvfile_load(const char *path, shoal_kvfile_fn fn, void *ctx, char *why, size_t whylen)
{
    char line[SHOAL_KVFILE_LINE_MAX + 2], inner[512];
    unsigned lineno = 0;
    struct stat st;
    int rv = 0;
    FILE *f = fopen(path, "re");

    if (!f) {
        rv = -errno;
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        return rv;
    }
    /* fopen takes a directory, and reading it then fails with EISDIR: say
     * so instead of reading an empty file. */
    if (fstat(fileno(f), &st) != 0)
        rv = -errno;
    else if (S_ISDIR(st.st_mode))
        rv = -EISDIR;
    if (rv) {
        snprintf(why, whylen, "%s: %s", path, strerror(-rv));
        goto out;
    }
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        lineno++;
        /* fgets splits a longer line in two: refuse it rather than read its
         * tail as a line of its own. */
        size_t body = n > 0 && line[n - 1] == '\n' ? n - 1 : n;
        if (body > SHOAL_KVFILE_LINE_MAX || (n > 0 && line[n - 1] != '\n' && !feof(f))) {
            snprintf(why, whylen, "%s:%u: line longer than %d bytes", path, lineno,
                     SHOAL_KVFILE_LINE_MAX);
            rv = SHOAL_ELIMIT;
            goto out;
        }
        strip_comment(line);
        char *s = trim(line);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(why, whylen, "%s:%u: expected 'key = value'", path, lineno);
            rv = -EINVAL;
            goto out;
        }
        *eq = '\0';
        inner[0] = '\0';
        /* zone = "z1" means z1, as in most such files (the quotes were
         * kept, and the zone became '"z1"' without a word). */
        char *v = trim(eq + 1);
        size_t vl = strlen(v);
        if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0]) {
            v[vl - 1] = '\0';
            v++;
        }
        rv = fn(ctx, trim(s), v, inner, sizeof inner);
        if (rv != 0) {
            snprintf(why, whylen, "%s:%u: %s", path, lineno, inner[0] ? inner : shoal_strerror(rv));
            goto out;
        }
    }
    if (ferror(f)) {
        rv = -EIO;
        snprintf(why, whylen, "%s: read error", path);
    }
out:
    fclose(f);
    return rv;
}
