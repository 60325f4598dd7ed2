/* SPDX-License-Identifier: MIT */
/* Key lists read again when their files change (see keywatch.h). */
#include "keywatch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct file_state {
    bool exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

struct shoal_keywatch {
    char **paths;
    struct file_state *seen; /* what each file was at the last read */
    size_t n;
    struct shoal_keyset *keys;
};

/* 0 (a missing file too: exists false) or a negated errno: a file that
 * cannot be looked at (EACCES, EIO) is not a removed one, whose keys would
 * no longer count. */
static int file_state(const char *path, struct file_state *st)
{
    struct stat sb;

    memset(st, 0, sizeof *st);
    if (stat(path, &sb) != 0)
        return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
    st->exists = true;
    st->dev = sb.st_dev;
    st->ino = sb.st_ino;
    st->size = sb.st_size;
    st->mtime = sb.st_mtim;
    return 0;
}

static bool same_state(const struct file_state *a, const struct file_state *b)
{
    return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
           a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
           a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Reads every file into a new set; a missing file (|missing_ok|) is empty.
 * |now| receives each file's state as read. */
static int read_all(struct shoal_keywatch *w, bool missing_ok, struct shoal_keyset **out,
                    struct file_state *now, char *why, size_t whylen)
{
    struct shoal_keyset *ks = NULL;
    int rv = shoal_keyset_new(&ks);

    for (size_t i = 0; rv == 0 && i < w->n; i++) {
        /* The state before the read: a change during it is seen next time. */
        if ((rv = file_state(w->paths[i], &now[i])) != 0) {
            snprintf(why, whylen, "%s: %s", w->paths[i], strerror(-rv));
            break;
        }
        if (!now[i].exists && missing_ok)
            continue;
        rv = shoal_keyset_load_file(ks, w->paths[i]);
        if (rv != 0) {
            char buf[256];
            snprintf(why, whylen, "%s",
                     shoal_keyfile_strerror(w->paths[i], rv, buf, sizeof buf));
        }
    }
    if (rv != 0) {
        shoal_keyset_free(ks);
        return rv;
    }
    *out = ks;
    return 0;
}

int shoal_keywatch_new(struct shoal_keywatch **out, const char *const *paths, size_t n,
                       char *why, size_t whylen)
{
    struct shoal_keywatch *w = calloc(1, sizeof *w);
    int rv = -ENOMEM;

    why[0] = '\0';
    if (!w)
        return -ENOMEM;
    w->paths = calloc(n + 1, sizeof *w->paths);
    w->seen = calloc(n + 1, sizeof *w->seen);
    if (!w->paths || !w->seen)
        goto fail;
    for (w->n = 0; w->n < n; w->n++) {
        if (!(w->paths[w->n] = strdup(paths[w->n])))
            goto fail;
    }
    if ((rv = read_all(w, false, &w->keys, w->seen, why, whylen)) != 0)
        goto fail;
    *out = w;
    return 0;
fail:
    if (rv == -ENOMEM && !why[0])
        snprintf(why, whylen, "out of memory");
    shoal_keywatch_free(w);
    return rv;
}

void shoal_keywatch_free(struct shoal_keywatch *w)
{
    if (!w)
        return;
    for (size_t i = 0; w->paths && i < w->n; i++)
        free(w->paths[i]);
    free(w->paths);
    free(w->seen);
    shoal_keyset_free(w->keys);
    free(w);
}

int shoal_keywatch_check(struct shoal_keywatch *w, bool *changed, char *why, size_t whylen)
{
    struct file_state *now = NULL;
    struct shoal_keyset *ks = NULL;
    bool differ = false;
    int rv;

    *changed = false;
    why[0] = '\0';
    for (size_t i = 0; i < w->n && !differ; i++) {
        struct file_state st;
        if ((rv = file_state(w->paths[i], &st)) != 0) {
            snprintf(why, whylen, "%s: %s", w->paths[i], strerror(-rv));
            return rv;
        }
        differ = !same_state(&st, &w->seen[i]);
    }
    if (!differ)
        return 0;
    if (!(now = calloc(w->n + 1, sizeof *now)))
        return -ENOMEM;
    /* Removed: nothing listed any more (an operator who deletes the file
     * lifts the bans). */
    rv = read_all(w, true, &ks, now, why, whylen);
    if (rv == 0) {
        shoal_keyset_free(w->keys);
        w->keys = ks;
        memcpy(w->seen, now, w->n * sizeof *now);
        *changed = true;
    }
    free(now);
    return rv;
}

bool shoal_keywatch_contains(const struct shoal_keywatch *w, const uint8_t pk[SHOAL_PUBKEY_LEN])
{
    return w && shoal_keyset_contains(w->keys, pk);
}

size_t shoal_keywatch_count(const struct shoal_keywatch *w)
{
    return w ? shoal_keyset_count(w->keys) : 0;
}

const uint8_t *shoal_keywatch_key(const struct shoal_keywatch *w, size_t i)
{
    return shoal_keyset_key(w->keys, i);
}
