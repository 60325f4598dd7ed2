/* SPDX-License-Identifier: MIT */
/* Recursive listing of a repository folder; see repodir.h. */
#include "repodir.h"
#include "error.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REPODIR_MAX_PATH 1024
#define REPODIR_MAX_DEPTH 32

static int add(struct shoal_repodir *d, size_t *cap, const char *rel, uint64_t size, size_t max)
{
    if (d->n >= max)
        return SHOAL_ETOOBIG;
    if (d->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        struct shoal_repodir_entry *v = realloc(d->v, nc * sizeof *v);
        if (!v)
            return -ENOMEM;
        d->v = v;
        *cap = nc;
    }
    char *p = strdup(rel);
    if (!p)
        return -ENOMEM;
    d->v[d->n].path = p;
    d->v[d->n].size = size;
    d->n++;
    return 0;
}

/* What a walk needs besides its position. */
struct walk_ctx {
    const char *root;
    char allow[2][PATH_MAX]; /* real paths symlinks may resolve under */
    int nallow;
    char *why;
    size_t whylen;
};

/* Whether |real| is |dir| or below it. */
static bool under(const char *real, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(real, dir, n) == 0 && (real[n] == '\0' || real[n] == '/' ||
                                          (n == 1 && dir[0] == '/'));
}

/* A symlink in the tree may point within the folder, or, when the folder is
 * a Hugging Face snapshot (<repo>/snapshots/<commit>), into that repo
 * folder's blobs: anything else would put bytes from elsewhere on the
 * machine (a secret, someone's home) into a signed manifest. */
static void set_allowed(struct walk_ctx *c)
{
    char *slash;

    if (!realpath(c->root, c->allow[0]))
        return;
    c->nallow = 1;
    snprintf(c->allow[1], sizeof c->allow[1], "%s", c->allow[0]);
    if ((slash = strrchr(c->allow[1], '/')) && slash != c->allow[1]) {
        *slash = '\0';
        slash = strrchr(c->allow[1], '/');
        if (slash && strcmp(slash + 1, "snapshots") == 0 && slash != c->allow[1]) {
            *slash = '\0';
            c->nallow = 2;
        }
    }
}

static int walk(struct walk_ctx *c, const char *rel, unsigned depth, struct shoal_repodir *d,
                size_t *cap, size_t max)
{
    char dirpath[REPODIR_MAX_PATH * 2 + 2];
    if (depth > REPODIR_MAX_DEPTH) {
        snprintf(c->why, c->whylen, "%s: more than %d directories deep (a symlink loop?)", rel,
                 REPODIR_MAX_DEPTH);
        return SHOAL_ETOOBIG;
    }
    snprintf(dirpath, sizeof dirpath, "%s%s%s", c->root, *rel ? "/" : "", rel);
    DIR *dir = opendir(dirpath);
    if (!dir) {
        snprintf(c->why, c->whylen, "%s: %s", rel, strerror(errno));
        return -errno;
    }
    int rv = 0;
    struct dirent *e;
    while (rv == 0 && (e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (depth == 0 && strcmp(e->d_name, ".git") == 0)
            continue;
        char child[REPODIR_MAX_PATH + 1];
        int n = snprintf(child, sizeof child, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        if (n < 0 || n > REPODIR_MAX_PATH) {
            snprintf(c->why, c->whylen, "%s...: path longer than %d bytes", rel,
                     REPODIR_MAX_PATH);
            rv = SHOAL_ETOOBIG;
            break;
        }
        char full[REPODIR_MAX_PATH * 2 + 2], real[PATH_MAX];
        snprintf(full, sizeof full, "%s/%s", c->root, child);
        struct stat st;
        if (lstat(full, &st) != 0) {
            rv = -errno;
            snprintf(c->why, c->whylen, "%s: %s", child, strerror(errno));
            break;
        }
        if (S_ISLNK(st.st_mode)) {
            bool ok = false;
            if (!realpath(full, real)) {
                rv = -errno;
                snprintf(c->why, c->whylen, "%s: a symlink whose target cannot be read: %s",
                         child, strerror(errno));
                break;
            }
            for (int i = 0; i < c->nallow && !ok; i++)
                ok = under(real, c->allow[i]);
            if (!ok) {
                rv = SHOAL_EBADPATH;
                snprintf(c->why, c->whylen, "%s: a symlink to %s, outside the folder (and "
                         "outside its Hugging Face repo folder): copy the file in or remove "
                         "the link", child, real);
                break;
            }
            if (stat(full, &st) != 0) {
                rv = -errno;
                snprintf(c->why, c->whylen, "%s: %s", child, strerror(errno));
                break;
            }
        }
        if (S_ISDIR(st.st_mode))
            rv = walk(c, child, depth + 1, d, cap, max);
        else if (S_ISREG(st.st_mode) &&
                 (rv = add(d, cap, child, (uint64_t)st.st_size, max)) == SHOAL_ETOOBIG)
            snprintf(c->why, c->whylen, "%s: more than %zu files", child, max);
    }
    closedir(dir);
    return rv;
}

static int cmp_entry(const void *a, const void *b)
{
    const struct shoal_repodir_entry *x = a, *y = b;
    return strcmp(x->path, y->path);
}

int shoal_repodir_list(const char *root, size_t max_files, struct shoal_repodir *out,
                       char *why, size_t whylen)
{
    struct shoal_repodir d = {0};
    struct walk_ctx c = {.root = root, .why = why, .whylen = whylen};
    size_t cap = 0;
    int rv;

    if (whylen)
        why[0] = '\0';
    set_allowed(&c);
    rv = walk(&c, "", 0, &d, &cap, max_files);
    if (rv) {
        shoal_repodir_free(&d);
        return rv;
    }
    qsort(d.v, d.n, sizeof *d.v, cmp_entry);
    *out = d;
    return 0;
}

void shoal_repodir_free(struct shoal_repodir *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->v[i].path);
    free(d->v);
    d->v = NULL;
    d->n = 0;
}
