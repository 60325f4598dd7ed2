/* SPDX-License-Identifier: MIT */
/* Recursive listing of a repository folder; see repodir.h. */
#include "repodir.h"
#include "error.h"

#include <dirent.h>
#include <errno.h>
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

static int walk(const char *root, const char *rel, unsigned depth, struct shoal_repodir *d,
                size_t *cap, size_t max)
{
    char dirpath[REPODIR_MAX_PATH * 2 + 2];
    if (depth > REPODIR_MAX_DEPTH)
        return SHOAL_ETOOBIG;
    snprintf(dirpath, sizeof dirpath, "%s%s%s", root, *rel ? "/" : "", rel);
    DIR *dir = opendir(dirpath);
    if (!dir)
        return -errno;
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
            rv = SHOAL_ETOOBIG;
            break;
        }
        char full[REPODIR_MAX_PATH * 2 + 2];
        snprintf(full, sizeof full, "%s/%s", root, child);
        struct stat st;
        if (stat(full, &st) != 0) {
            rv = -errno;
            break;
        }
        if (S_ISDIR(st.st_mode))
            rv = walk(root, child, depth + 1, d, cap, max);
        else if (S_ISREG(st.st_mode))
            rv = add(d, cap, child, (uint64_t)st.st_size, max);
    }
    closedir(dir);
    return rv;
}

static int cmp_entry(const void *a, const void *b)
{
    const struct shoal_repodir_entry *x = a, *y = b;
    return strcmp(x->path, y->path);
}

int shoal_repodir_list(const char *root, size_t max_files, struct shoal_repodir *out)
{
    struct shoal_repodir d = {0};
    size_t cap = 0;
    int rv = walk(root, "", 0, &d, &cap, max_files);
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
