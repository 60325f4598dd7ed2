/* SPDX-License-Identifier: MIT */
/*
 * Replacing a small file whole, so a reader or a crash never sees half of
 * it: shoal's CLI outputs, shoald's state file and the tracker's rollout
 * file all go through here.
 */
#ifndef SHOAL_ATOMICFILE_H
#define SHOAL_ATOMICFILE_H

#include <stddef.h>

/* Writes |len| bytes to |path| atomically, mode 0644: a fresh temp file
 * made with mkstemp next to |path| (never an existing name, so a planted
 * symlink is not followed), fsync, rename over |path|, then fsync of the
 * directory. On failure |path| is untouched and the temp file removed.
 * Returns 0 or a negated errno. */
int shoal_write_file_atomic(const char *path, const void *data, size_t len);

#endif
