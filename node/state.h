/* SPDX-License-Identifier: MIT */
/*
 * shoald's state file: the releases the daemon has open, so that a restart
 * (an upgrade, a crash, a reboot) reopens every one of them, not only the
 * releases named by --pull/--manifest or a tracker's rollout. Completed
 * releases seed again and incomplete ones resume without anyone asking.
 *
 * The file lives in a state directory (--state-dir; systemd's
 * $STATE_DIRECTORY; /var/lib/shoald for root; else $XDG_STATE_HOME/shoald
 * or ~/.local/state/shoald), never in the Hugging Face cache, whose top
 * level belongs to huggingface_hub (`huggingface-cli scan-cache` warns about
 * entries it does not know). One state directory may serve several daemons
 * with different caches: the file is named after a hash of the absolute
 * cache path (releases-<16 hex>.list) and its first line names the cache,
 * so two daemons never share a file by accident.
 *
 * Text, one release per line, fields separated by one space:
 *
 *   shoald-releases-v1 <absolute cache dir>
 *   <manifest id, 64 hex> <model|dataset> <org/name>@<commit> <branch|-> \
 *       <complete|pulling>[+rollout] <manifest file, to the end of the line>
 *
 * "+rollout" marks a release a tracker's rollout named when the file was
 * written: at the next start it is not closed for room before the trackers
 * have answered again. (A shoald that predates it skips such a line, and
 * the rollout opens the release again at its first announce.)
 *
 * Lines starting with '#' are comments. The manifest itself is not copied:
 * the store keeps the signed bytes in the cache's per-repo .shoal/ folder,
 * and the line says where.
 *
 * No libuv: plain blocking file I/O, called from the loop when the set of
 * open releases changes (rarely, and the file is a few KB).
 */
#ifndef SHOAL_STATE_H
#define SHOAL_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifest.h"

#define SHOAL_STATE_PATH_MAX 4096
#define SHOAL_STATE_REPO_MAX 256u    /* "org/name" */
#define SHOAL_STATE_BRANCH_MAX 255u
/* More lines than this make the file corrupt: the daemon opens at most 64
 * releases, so anything far beyond that was not written by it. */
#define SHOAL_STATE_ENTRIES_MAX 1024u

struct shoal_state_entry {
    uint8_t id[32];
    enum shoal_repo_type type;
    char repo[SHOAL_STATE_REPO_MAX + 1];        /* "org/name" */
    char commit[41];
    char branch[SHOAL_STATE_BRANCH_MAX + 1];    /* "" when pulled by commit or id */
    bool complete;
    bool rollout;                               /* a tracker's rollout named it */
    char manifest[SHOAL_STATE_PATH_MAX];        /* path of the signed manifest */
};

/*
 * |path| made absolute into |out| (|cap| bytes): its longest existing
 * leading part resolved (symlinks followed), the rest appended as written,
 * so a cache or state dir not made yet names the place it will be once
 * made, also through a symlinked home or HF_HOME. A path whose existing
 * part cannot be resolved (other than ENOENT/ENOTDIR) is given as written.
 * Returns 0, SHOAL_ELIMIT (it does not fit) or -errno (no working dir).
 */
int shoal_state_absolute(char *out, size_t cap, const char *path);

/*
 * Writes the state file's path for the cache |cache_dir| into |out|
 * (|cap| bytes) and its directory into |dir| (|dircap| bytes): the
 * directory is |state_dir| when not NULL (the option), else the first
 * entry of $STATE_DIRECTORY (systemd passes a ':'-separated list), else
 * /var/lib/shoald when the effective uid is root, else
 * $XDG_STATE_HOME/shoald, else $HOME/.local/state/shoald. |cache_dir| is
 * made absolute (and symlinks resolved when it exists) before it is hashed,
 * so "./hf" and its absolute path name one file; |abs_cache| (|abscap|
 * bytes) receives that form. Returns 0, SHOAL_ENOTFOUND (no HOME to derive
 * a directory from), SHOAL_ELIMIT (a path does not fit) or -EINVAL (a path
 * holding a newline, which the one-line-per-release format cannot carry).
 */
int shoal_state_path(char *out, size_t cap, char *dir, size_t dircap, char *abs_cache,
                     size_t abscap, const char *state_dir, const char *cache_dir);

/*
 * Reads the state file |path| written for the cache |abs_cache|. On success
 * |*v| (malloc'd, the caller frees it; NULL when empty) holds |*n| entries.
 * A missing file is an empty set (0). A file that cannot be read, or whose
 * first line is not a shoald-releases-v1 header for |abs_cache|, is an
 * error with the reason for people in |why|: SHOAL_EBADMSG (not ours, or
 * for another cache), SHOAL_ELIMIT (too many lines), or a negated errno.
 * A bad line after a good header is skipped: |*skipped| counts them and
 * |why| names the first (line number and what is wrong); the rest loads.
 */
int shoal_state_load(const char *path, const char *abs_cache, struct shoal_state_entry **v,
                     size_t *n, size_t *skipped, char *why, size_t whylen);

/*
 * Writes |n| entries of |v| for |abs_cache| to |path| atomically (a temp
 * file in the same directory, fsync, rename, fsync of the directory),
 * creating its directory (mode 0700) when missing. Returns 0, -EINVAL (an
 * entry that cannot be written: bad repo, commit, branch or a path with a
 * newline) or a negated errno; |path| is untouched on error.
 */
int shoal_state_save(const char *path, const char *abs_cache, const struct shoal_state_entry *v,
                     size_t n);

#endif
