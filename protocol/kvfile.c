/* SPDX-License-Identifier: MIT */
/*
 * 'key = value' settings files. See kvfile.h.
 */
#include "kvfile.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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

/* A key the file set, and where: for refusing it the second time. */
struct seen {
    char key[64];
    unsigned line;
};

/* Checks |key| against those |*v| holds and adds it. Returns the line it
 * was set at before, or 0 (also for a key too long to be one: the setter
 * refuses it as unknown). */
static unsigned seen_before(struct seen **v, size_t *n, size_t *cap, const char *key,
                            unsigned lineno)
{
    char norm[sizeof((*v)->key)];
    size_t i, len = strlen(key);

    if (len >= sizeof norm)
        return 0;
    for (i = 0; i <= len; i++)
        norm[i] = key[i] == '_' ? '-' : key[i];
    for (i = 0; i < *n; i++)
        if (strcmp((*v)[i].key, norm) == 0)
            return (*v)[i].line;
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 16;
        struct seen *nv = realloc(*v, nc * sizeof *nv);
        if (!nv)
            return 0; /* not checked: the setting itself still works */
        *v = nv;
        *cap = nc;
    }
    memcpy((*v)[*n].key, norm, len + 1);
    (*v)[(*n)++].line = lineno;
    return 0;
}

int shoal_kvfile_load(const char *path, shoal_kvfile_fn fn, void *ctx,
                      shoal_kvfile_list_fn is_list, char *why, size_t whylen)
{
    char line[SHOAL_KVFILE_LINE_MAX + 2], inner[512];
    unsigned lineno = 0;
    struct stat st;
    struct seen *seen = NULL;
    size_t nseen = 0, capseen = 0;
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
        char *key = trim(s);
        rv = fn(ctx, key, v, inner, sizeof inner);
        if (rv != 0) {
            snprintf(why, whylen, "%s:%u: %s", path, lineno, inner[0] ? inner : shoal_strerror(rv));
            goto out;
        }
        if (!is_list || !is_list(key)) {
            unsigned first = seen_before(&seen, &nseen, &capseen, key, lineno);
            if (first) {
                snprintf(why, whylen, "%s:%u: '%s' is set a second time (first at line %u): "
                         "keep one", path, lineno, key, first);
                rv = -EINVAL;
                goto out;
            }
        }
    }
    if (ferror(f)) {
        rv = -EIO;
        snprintf(why, whylen, "%s: read error", path);
    }
out:
    fclose(f);
    free(seen);
    return rv;
}
