/* SPDX-License-Identifier: MIT */
/*
 * `shoal publish` as a library call: resolve a release on the Hub, stream
 * every file once through the content-defined chunker (nothing is written
 * to disk but the manifest), check each file against what the Hub says it
 * is, then build, sign and write the release manifest.
 *
 * File checks: an LFS file's SHA-256 must equal the Hub's LFS oid. A small
 * file kept in git (no LFS oid in the API) is checked against its git blob
 * id, SHA-1 of "blob <size>\0" + content, which the API gives as blobId;
 * its SHA-256 is then computed from the same bytes and recorded in the
 * manifest. Every file's size must equal the listed size.
 */
#ifndef SHOAL_PUBLISH_H
#define SHOAL_PUBLISH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdc.h"
#include "hub.h"
#include "manifest.h"

enum shoal_publish_progress_mode {
    SHOAL_PUBLISH_PROGRESS_AUTO = 0, /* a bar if stderr is a terminal, else lines */
    SHOAL_PUBLISH_PROGRESS_BAR,
    SHOAL_PUBLISH_PROGRESS_LINES,    /* one line per file on stderr */
    SHOAL_PUBLISH_PROGRESS_NONE,
};

struct shoal_publish_progress {
    const char *path;      /* file being streamed */
    size_t file_index;
    size_t nfiles;
    uint64_t file_done, file_size;
    uint64_t total_done, total_size;
};

/* Hook to register the signed manifest somewhere (e.g. a tracker client).
 * |signed_bytes| is valid during the call only. Return 0 or an error code,
 * which fails the publish (the --out file, if any, is already written). */
typedef int (*shoal_publish_register_fn)(void *user, const uint8_t *signed_bytes, size_t len,
                                         const struct shoal_manifest *m);

/* Hook to find a manifest already published for |repo_at_commit| (e.g. on a
 * tracker), asked once the commit is known and before anything is
 * streamed. Appends the signed bytes to |out| and returns 0, returns
 * SHOAL_ENOTFOUND when there is none, or another error (which fails the
 * publish). */
typedef int (*shoal_publish_lookup_fn)(void *user, const char *repo_at_commit,
                                       struct shoal_buf *out);

struct shoal_publish_opts {
    const char *repo;          /* "name", "org/name" or "org/name@rev" */
    const char *rev;           /* NULL: the "@rev" part of |repo|, else "main" */
    bool dataset;
    const char *key_path;      /* publisher secret key file (shoal_seckey_load) */
    const char *out_path;      /* manifest file to write; NULL: none */
    /* Hub endpoint, token and retry settings; NULL fields mean defaults and
     * HF_ENDPOINT / HF_TOKEN (then the login token file, see
     * shoal_hub_config.token). */
    struct shoal_hub_config hub;
    const struct shoal_cdc_params *params; /* NULL: shoal_cdc_params_default */
    enum shoal_publish_progress_mode progress;
    /* Called about every 100 ms and at each file's end, in any mode. */
    void (*on_progress)(void *user, const struct shoal_publish_progress *p);
    void *progress_user;
    shoal_publish_register_fn registrar; /* NULL: no registration */
    void *registrar_user;
    /* NULL, or |force|: always stream and sign anew. Otherwise a manifest
     * the lookup finds is reused when this key signed it for the same
     * commit, type and chunking and it lists the Hub's files (paths, sizes,
     * LFS oids): a commit's bytes never change, so streaming them again
     * would only make a second manifest of the same release, which nodes
     * then hold as two. A reused manifest is written to |out_path| and not
     * registered again. */
    shoal_publish_lookup_fn lookup;
    void *lookup_user;
    bool force;
    /* Manifests of earlier releases (files, e.g. the last publish's --out)
     * whose chunk lists are reused for the LFS files whose SHA-256 and size
     * the Hub lists the same: such a file is not streamed again (a new
     * release that changed one shard reads one shard). Only manifests this
     * key signed with the same chunking count; the chunk ids are hashes of
     * the very bytes the SHA-256 names. A file that cannot be read or used
     * fails the publish. |out_path|, when it already holds such a
     * manifest, counts too (unless |force|). */
    const char *const *previous;
    size_t nprevious;
    char *errbuf;              /* on failure, a message naming repo/rev/file */
    size_t errlen;
};

struct shoal_publish_result {
    bool reused;               /* an existing manifest was reused (see lookup) */
    uint64_t created;          /* its signing time, unix seconds */
    char commit[41];
    uint8_t manifest_id[32];
    uint32_t nfiles;
    uint32_t nchunks;
    uint64_t total_bytes;
    uint32_t reused_files;     /* taken from |previous| manifests, not streamed */
    uint64_t reused_bytes;
};

/*
 * Runs the whole publish on a private libuv loop; blocks until done.
 * |res| (may be NULL) is filled on success.
 * Returns 0, or: -EINVAL (bad options or repo syntax), the key-loading
 * errors of shoal_seckey_load, the Hub errors of shoal_hub_resolve /
 * shoal_hub_fetch (SHOAL_ENOTFOUND, SHOAL_EPERM, SHOAL_EHTTP, ...),
 * SHOAL_EBADHASH (a file's content does not match the Hub's sha256 / blob
 * id, or its size differs), manifest errors of shoal_manifest_sign, a
 * negated errno writing |out_path|, or the registrar's error. On failure
 * |o->errbuf| (if given) says what and where.
 */
int shoal_publish_run(const struct shoal_publish_opts *o, struct shoal_publish_result *res);

#endif
