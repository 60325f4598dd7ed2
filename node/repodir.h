/* SPDX-License-Identifier: MIT */
/*
 * Lists the files of a model repository laid out on disk (a git checkout or
 * a snapshot folder): every regular file below the root, as relative paths
 * with '/' separators, sorted bytewise, skipping the .git directory.
 * Symlinks are followed only when they resolve inside the folder or, for a
 * Hugging Face snapshot folder (<repo>/snapshots/<commit>), inside its repo
 * folder (the snapshot's links point to ../../blobs); one pointing anywhere
 * else, or nowhere, is an error naming it.
 */
#ifndef SHOAL_REPODIR_H
#define SHOAL_REPODIR_H

#include <stddef.h>
#include <stdint.h>

struct shoal_repodir_entry {
    char *path;     /* relative, owned by the list */
    uint64_t size;
};

struct shoal_repodir {
    struct shoal_repodir_entry *v;
    size_t n;
};

/* Fills |out| with the files under |root|, at most |max_files|.
 * Returns 0, SHOAL_ETOOBIG (too many files, a path over 1024 bytes, nested
 * too deep), SHOAL_EBADPATH (a symlink out of the folder) or a negated
 * errno, with "PATH: what is wrong" (PATH relative to |root|) in |why|. */
int shoal_repodir_list(const char *root, size_t max_files, struct shoal_repodir *out,
                       char *why, size_t whylen);
/* Frees the entries; |d| is left empty. */
void shoal_repodir_free(struct shoal_repodir *d);

#endif
