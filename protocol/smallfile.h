/* SPDX-License-Identifier: MIT */
/*
 * Small whole files: read at once with a size limit, and replaced whole so
 * a reader or a crash never sees half of one (shoal's CLI outputs,
 * shoald's state file, the tracker's rollout file).
 */
#ifndef SHOAL_SMALLFILE_H
#define SHOAL_SMALLFILE_H

#include <stddef.h>
#include <stdint.h>

/* Reads the whole regular file |path| (at most |max| bytes) into a malloc'd
 * buffer the caller frees, with a NUL after the |*len| bytes. Returns 0,
 * SHOAL_ETOOBIG, -EINVAL (not a regular file: a FIFO is not waited on), or
 * a negated errno. */
int shoal_read_file(const char *path, uint64_t max, uint8_t **data, size_t *len);

/* Writes |len| bytes to |path| atomically, mode 0644: a fresh temp file
 * made with mkstemp next to |path| (never an existing name, so a planted
 * symlink is not followed), fsync, rename over |path|, then fsync of the
 * directory. On failure |path| is untouched and the temp file removed.
 * Returns 0 or a negated errno. */
int shoal_write_file_atomic(const char *path, const void *data, size_t len);

#endif
