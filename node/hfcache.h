/* SPDX-License-Identifier: MIT */
/*
 * Naming rules of the Hugging Face hub cache, which is where shoal keeps
 * releases so that existing tools (huggingface_hub, transformers) load them
 * offline with no change:
 *
 *   <cache>/models--org--name/blobs/<etag>             file contents
 *   <cache>/models--org--name/snapshots/<commit>/<path> relative symlink
 *                                                       to ../../blobs/<etag>
 *   <cache>/models--org--name/refs/<branch>            the commit, no newline
 *   <cache>/models--org--name/.shoal/<etag>.incomplete being filled
 *
 * where <etag> is what the Hub serves as the file's ETag and huggingface_hub
 * names its blob by: the sha256 of an LFS file, the git blob sha1 of a file
 * kept in git (see shoal_hf_etag).
 *
 * (datasets use "datasets--"). blobs/<etag>.incomplete is huggingface_hub's
 * own resumable download, guarded by its flock on
 * <cache>/.locks/models--org--name/<etag>.lock: it resumes from the file's
 * size and renames it to blobs/<etag> unchecked, so shoal fills its partial
 * files under .shoal/ (same filesystem: publishing stays one rename), where
 * huggingface_hub never looks. These helpers only build names and inspect a
 * cache; node/store.c does the writing.
 */
#ifndef SHOAL_HFCACHE_H
#define SHOAL_HFCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifest.h"

/* Longest path any helper here builds (PATH_MAX on Linux). */
#define SHOAL_HF_PATH_MAX 4096

/*
 * |name| in huggingface_hub's home folder, into |out|: $HF_HOME/NAME, else
 * $XDG_CACHE_HOME/huggingface/NAME, else $HOME/.cache/huggingface/NAME
 * (empty variables count as unset). |how| (|howcap| bytes; may be NULL)
 * gets which, for messages: "$HF_HOME/NAME",
 * "$XDG_CACHE_HOME/huggingface/NAME" or "~/.cache/huggingface/NAME".
 * Returns 0, SHOAL_ENOTFOUND (no HOME) or SHOAL_ELIMIT (it does not fit).
 */
int shoal_hf_home_path(char *out, size_t cap, const char *name, char *how, size_t howcap);

/*
 * Resolves the hub cache directory the way huggingface_hub does: |flag| when
 * not NULL (the --cache-dir option), else $HF_HUB_CACHE, else its older name
 * $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub,
 * else $XDG_CACHE_HOME/huggingface/hub, else $HOME/.cache/huggingface/hub.
 * Empty variables count as unset. Writes a NUL-terminated path to |out|.
 * Returns 0, SHOAL_ENOTFOUND when no variable gives a directory (no HOME),
 * or SHOAL_ELIMIT when the path does not fit in |cap| bytes.
 */
int shoal_hf_cache_dir(char *out, size_t cap, const char *flag);

/*
 * Writes the repo folder name ("models--org--name", "datasets--name") for
 * |repo_id| to |out|. Returns 0, SHOAL_EBADPATH when |repo_id| is empty,
 * starts or ends with '/', holds "--"-ambiguous or unsafe characters (only
 * [A-Za-z0-9._-] and one '/' are allowed) or is "." or "..", or SHOAL_ELIMIT
 * when it does not fit in |cap|.
 */
int shoal_hf_repo_folder(char *out, size_t cap, enum shoal_repo_type type,
                         const char *repo_id);

/* Longest blob name (a sha256 in hex) plus its NUL. */
#define SHOAL_HF_ETAG_MAX (2 * 32 + 1)

/* Writes the name huggingface_hub gives file |f|'s blob, the ETag the Hub
 * serves for it: the git blob sha1 (40 hex) of a file the Hub keeps in git
 * (the manifest carries its blob id), else its sha256 (64 hex: the LFS oid,
 * and the fallback for manifests without blob ids). */
void shoal_hf_etag(char out[SHOAL_HF_ETAG_MAX], const struct shoal_mf_file *f);

/* Writes "blobs/<etag of |f|>" (relative to the repo folder), with
 * ".incomplete" appended when |incomplete| (huggingface_hub's partial
 * download: only looked at to move an older shoald's file away). Returns 0
 * or SHOAL_ELIMIT. */
int shoal_hf_blob_path(char *out, size_t cap, const struct shoal_mf_file *f,
                       bool incomplete);

/* Writes where shoal fills |f|'s blob before publishing it (relative to the
 * repo folder): ".shoal/<etag>.incomplete", or with |tag| (not NULL; its
 * first 16 characters are used) ".shoal/<etag>.<tag>.incomplete". Returns 0
 * or SHOAL_ELIMIT. */
int shoal_hf_partial_path(char *out, size_t cap, const struct shoal_mf_file *f,
                          const char *tag);

/* Writes "snapshots/<commit>/<path>" (relative to the repo folder). Returns 0
 * or SHOAL_ELIMIT. */
int shoal_hf_snapshot_path(char *out, size_t cap, const char *commit,
                           const char *path);

/* Writes the symlink target stored at snapshots/<commit>/<f->path>: one
 * "../" per directory level between the link and the repo folder, then
 * "blobs/<etag>". Returns 0 or SHOAL_ELIMIT. */
int shoal_hf_link_target(char *out, size_t cap, const struct shoal_mf_file *f);

/* True when |branch| is a branch or tag name git (and so the Hub) takes and
 * is safe to use as refs/<branch>: 1 to 255 bytes of valid UTF-8, none of
 * them a control character, space or one of ~^:?*[\, no "..", "@{", empty
 * or dot-led component or ".lock" ending, not "@", not starting with '-' or
 * '/', not ending with '/' or '.'. ("refs/pr/1" style nested refs are
 * allowed; so are "v1.0+cu118", "release@2024", "a,b" and "ÜBER".) */
bool shoal_hf_branch_ok(const char *branch);

/*
 * Reads refs/<branch> of a repo in |cache_dir| into |commit| (40 hex digits
 * plus NUL). Returns 0, SHOAL_ENOTFOUND when the repo or ref is missing,
 * SHOAL_EBADPATH for an unsafe |branch| or repo id, SHOAL_EBADMSG when the
 * file does not hold a 40-hex commit, or a negated errno.
 */
int shoal_hf_read_ref(const char *cache_dir, enum shoal_repo_type type,
                      const char *repo_id, const char *branch, char commit[41]);

/*
 * Checks whether the release |m| is present and complete in |cache_dir|:
 * every file's snapshots/<commit>/<path> must be a symlink whose target is
 * exactly the expected relative blob path, and that blob a regular file of
 * the manifest's size. Contents are not re-hashed (what the store publishes
 * was verified before it got its final name). Returns 0 when complete,
 * SHOAL_ENOTFOUND when something is missing, SHOAL_EBADMSG when an entry
 * exists but is wrong (another target, wrong size), or a negated errno.
 * When |missing| is not NULL it receives the index of the first file that
 * is not in place (undefined on 0).
 */
int shoal_hf_snapshot_check(const char *cache_dir, const struct shoal_manifest *m,
                            uint32_t *missing);

#endif
