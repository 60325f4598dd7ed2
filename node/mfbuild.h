/* SPDX-License-Identifier: MIT */
/*
 * Builds an (unsigned) manifest from a repository folder on disk: every file
 * is read once, cut into content-defined chunks and hashed (BLAKE2b-256 per
 * chunk, sha256 per file).
 */
#ifndef SHOAL_MFBUILD_H
#define SHOAL_MFBUILD_H

#include <stdio.h>

#include "cdc.h"
#include "manifest.h"

/*
 * Chunks every file under |dir| (see repodir.h) with |params| into a new
 * manifest for |repo_id|@|commit|. Progress goes to |progress| (NULL: none).
 * Returns 0 with *out set (caller frees with shoal_manifest_free), or an
 * error; on error a message naming the file is printed to stderr.
 */
int shoal_mfbuild_dir(const char *dir, enum shoal_repo_type type, const char *repo_id,
                      const char *commit, const struct shoal_cdc_params *params,
                      FILE *progress, struct shoal_manifest **out);

#endif
