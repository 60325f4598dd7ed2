/* SPDX-License-Identifier: MIT */
/*
 * The 'key = value' settings file that shoald, shoal-tracker and shoal-sim
 * all read with --config: one reader, so the three agree on comments,
 * blank lines, line length and how an error is reported.
 *
 *   - one setting per line, 'key = value', blanks around both trimmed;
 *   - '#' at the start of a line or after a space or tab starts a comment
 *     (a value may still hold a '#' of its own: a URL fragment, a file
 *     name);
 *   - a value in a pair of double or single quotes loses them ("z1" is
 *     z1); they do not protect a comment's '#';
 *   - lines of at most SHOAL_KVFILE_LINE_MAX bytes, newline excluded: a
 *     longer one is refused rather than read as two.
 */
#ifndef SHOAL_KVFILE_H
#define SHOAL_KVFILE_H

#include <stddef.h>

#define SHOAL_KVFILE_LINE_MAX 4095

/* Called for each setting in file order. Returns 0, or an error with a
 * message in |why| (without the file and line: the reader adds them). */
typedef int (*shoal_kvfile_fn)(void *ctx, const char *key, const char *value, char *why,
                               size_t whylen);

/* Says whether |key| (as written in the file) may be given more than once:
 * a list that accumulates. */
typedef int (*shoal_kvfile_list_fn)(const char *key);

/* Reads |path| and hands each setting to |fn|. Stops at the first error and
 * returns it, with "PATH:LINE: message" (or "PATH: reason" when the file
 * cannot be read, or is a directory) in |why|. A key set a second time
 * ('-' and '_' alike) is refused, naming both lines, unless |is_list| (may
 * be NULL: no key repeats) says it accumulates: a second value that
 * silently wins is almost always an editing mistake. */
int shoal_kvfile_load(const char *path, shoal_kvfile_fn fn, void *ctx,
                      shoal_kvfile_list_fn is_list, char *why, size_t whylen);

#endif
