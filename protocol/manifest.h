/* SPDX-License-Identifier: MIT */
/*
 * Signed release manifests. A manifest describes one release repo@commit:
 * repo type and id, the commit, the chunking parameters, and for each file
 * its path, size, the Hub's sha256 and its ordered list of chunks (id,
 * length). Publishers build one with shoal_manifest_new/add_file/add_chunk
 * and sign it; nodes and the tracker parse the signed bytes, which checks
 * the signature, the signer and every field before anything uses them.
 *
 * Signed form (msgpack, the bytes that travel and are stored):
 *   [ "shoal-manifest", version, body: bin, signer: bin 32, sig: bin 64 ]
 * sig is Ed25519 (crypto_sign_detached) by |signer| over
 *   "shoal-manifest-v<version>" NUL || body
 * and the manifest id is BLAKE2b-256 (shoal_chunk_id) of the whole signed
 * form. The envelope must use the smallest msgpack forms (what
 * shoal_manifest_sign writes), so one signed body has exactly one id.
 *
 * body (msgpack array of 6):
 *   [ repo_type: uint (0 model, 1 dataset),
 *     repo_id: str ("name" or "org/name"),
 *     commit: str (40 lowercase hex),
 *     params: [min_size, avg_size, max_size] (uints),
 *     created: uint (unix seconds),
 *     files: [ [path: str, size: uint, sha256: bin 32, chunks: bin], ... ] ]
 * in version 1; in version 2 each file has a fifth field, blob_id: bin 20
 * (the git blob sha1 of a file the Hub keeps in git, not LFS: the ETag it
 * serves and the name huggingface_hub gives its blob) or nil (an LFS file,
 * whose ETag is its sha256). A manifest with no blob id is written as
 * version 1, byte for byte as before, so nodes that know only version 1
 * still read it; parse reads both.
 * A file's chunks bin is its chunk list packed as 36-byte records:
 * chunk id (32 bytes) then length (u32 big-endian); offsets follow from the
 * lengths. An empty file has an empty chunks bin.
 *
 * Validation (parse, and sign before signing):
 *   - repo_type 0 or 1; repo_id is one or two '/'-separated names of 1..96
 *     characters from [A-Za-z0-9._-], not starting or ending with '.' or
 *     '-', without "--" or ".." (the Hub's rule, which also keeps the
 *     HF cache directory name models--org--name unambiguous);
 *   - commit is 40 lowercase hex digits; params pass shoal_cdc_params_check;
 *   - 1 <= files <= max_files, chunks <= max_chunks;
 *   - each path is relative, 1..max_path bytes, '/'-separated components
 *     that are neither empty nor "." nor "..", without backslash, NUL or
 *     other control characters; no two files have the same path and no
 *     path is a directory of another (a/b and a/b/c);
 *   - each chunk is 1..params.max_size bytes and each file's chunk lengths
 *     add up to its size.
 * A parse allocates at most about three times the input size.
 */
#ifndef SHOAL_MANIFEST_H
#define SHOAL_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cdc.h"
#include "keys.h"

#define SHOAL_MANIFEST_MAGIC "shoal-manifest"
/* The newest version written (2: blob ids); 1 is written when no file has
 * a blob id, and both are read. */
#define SHOAL_MANIFEST_VERSION 2
/* Signed with its terminating NUL in front of the body. */
#define SHOAL_MANIFEST_SIGN_DOMAIN "shoal-manifest-v1"
#define SHOAL_MANIFEST_SIGN_DOMAIN_V2 "shoal-manifest-v2"
/* Bytes per chunk record in a file's chunks bin. */
#define SHOAL_MF_CHUNK_REC 36
#define SHOAL_MF_COMMIT_LEN 40
#define SHOAL_MF_REPO_NAME_MAX 96
#define SHOAL_MF_REPO_ID_MAX (2 * SHOAL_MF_REPO_NAME_MAX + 1)

#define SHOAL_MF_MAX_FILES_DEFAULT 100000u
#define SHOAL_MF_MAX_CHUNKS_DEFAULT 10000000u
#define SHOAL_MF_MAX_PATH_DEFAULT 1024u
/* Enough for the default counts: 10M chunk records plus 100k long paths. */
#define SHOAL_MF_MAX_BYTES_DEFAULT ((uint64_t)512 * 1024 * 1024)

enum shoal_repo_type { SHOAL_REPO_MODEL = 0, SHOAL_REPO_DATASET = 1 };

/* Caps applied by parse (and, at their defaults, by sign). */
struct shoal_mf_limits {
    uint32_t max_files;   /* files per manifest */
    uint32_t max_chunks;  /* chunks over all files */
    uint32_t max_path;    /* bytes per path */
    uint64_t max_bytes;   /* size of the signed form */
};

/* Fills |lim| with the SHOAL_MF_*_DEFAULT values. */
void shoal_mf_limits_default(struct shoal_mf_limits *lim);

struct shoal_mf_file {
    const char *path;      /* NUL-terminated; owned by the manifest */
    uint64_t size;
    uint8_t sha256[32];    /* the Hub's LFS oid / file sha256 */
    bool has_blob_id;      /* a file the Hub keeps in git (not LFS): */
    uint8_t blob_id[20];   /* its git blob sha1, the Hub's ETag for it */
    uint32_t first_chunk;  /* index into the manifest's chunk list */
    uint32_t nchunks;
};

struct shoal_mf_chunk {
    uint8_t id[32];        /* BLAKE2b-256 of the chunk's bytes */
    uint32_t len;
    uint32_t file;         /* index of the file it belongs to */
    uint64_t offset;       /* in its file */
};

struct shoal_manifest;

/* ---- building (publisher side) ---- */

/*
 * Starts an empty manifest for |repo_id|@|commit| chunked with |p| (all
 * copied). The values are checked by shoal_manifest_sign, not here.
 * Returns 0 or -ENOMEM (-EINVAL for a NULL argument); *out only on success.
 */
int shoal_manifest_new(struct shoal_manifest **out, enum shoal_repo_type t,
                       const char *repo_id, const char *commit,
                       const struct shoal_cdc_params *p);

/* Whether |path| may name a file in a manifest (the syntax add_file and
 * parse check, under the default length limit): 0, SHOAL_EBADPATH or
 * SHOAL_ETOOBIG. Lets a publisher refuse a release before downloading it. */
int shoal_manifest_path_ok(const char *path);

/*
 * Appends a file (|path| copied). Its chunks follow with add_chunk.
 * Returns 0, SHOAL_EBADPATH (path syntax, see above; duplicates are found by
 * sign), SHOAL_ETOOBIG (path or file count over the default limits),
 * -EINVAL (manifest already signed), or -ENOMEM.
 */
int shoal_manifest_add_file(struct shoal_manifest *m, const char *path, uint64_t size,
                            const uint8_t sha256[32]);

/*
 * Records |blob_id| (the git blob sha1 of a file the Hub keeps in git, as
 * the Hub lists it and checked against the bytes) for the file added last:
 * caches name that file's blob by it, as huggingface_hub does. Returns 0,
 * or -EINVAL (no file yet, or already signed).
 */
int shoal_manifest_set_blob_id(struct shoal_manifest *m, const uint8_t blob_id[20]);

/*
 * Appends a chunk of |len| bytes to the file added last, at the offset after
 * its previous chunks (so a streaming chunker callback can feed it).
 * Returns 0, SHOAL_EBADMSG (len 0 or above params.max_size, or the file's
 * chunks would exceed its size), SHOAL_ETOOBIG (chunk count over the default
 * limit), -EINVAL (no file yet, or already signed), or -ENOMEM.
 */
int shoal_manifest_add_chunk(struct shoal_manifest *m, const uint8_t id[32], uint32_t len);

/*
 * Validates |m| with the default limits (the rules above), encodes it with
 * |created_unix|, signs it with |sk| and appends the signed form to
 * |signed_out|. Sets the id, signer and created time; the manifest cannot be
 * changed afterwards. Returns 0, a validation error (SHOAL_EBADMSG,
 * SHOAL_EBADPATH, SHOAL_ETOOBIG), SHOAL_ELIMIT (|signed_out|'s cap), -EINVAL
 * (already signed or parsed), -EIO (libsodium) or -ENOMEM; on error
 * |signed_out| keeps its previous contents.
 */
int shoal_manifest_sign(struct shoal_manifest *m, const struct shoal_seckey *sk,
                        uint64_t created_unix, struct shoal_buf *signed_out);

/* ---- parsing (node and tracker side) ---- */

/*
 * Parses the signed form p[0..n): checks the envelope, that the signer is
 * in |trusted| (NULL skips only this check, never the signature; an
 * untrusted signer is refused before its signature is checked), the
 * signature, then decodes and validates the body under |lim| (NULL: the
 * defaults). Nothing in the body is decoded before the signature verifies.
 * Returns 0 with a new manifest in *out (free with shoal_manifest_free; it
 * does not point into |p|), or:
 *   SHOAL_ETRUNC, SHOAL_ETYPE, SHOAL_EPROTO  malformed msgpack or envelope
 *   SHOAL_EVERSION  a version other than 1 or 2
 *   SHOAL_ETOOBIG   input, a count or a path over |lim|
 *   SHOAL_EBADSIG   signature does not verify
 *   SHOAL_EUNTRUSTED  signer not in |trusted|
 *   SHOAL_EBADPATH  a path breaks the rules above
 *   SHOAL_EBADMSG   any other field breaks the rules above
 *   -ENOMEM, -EIO
 */
int shoal_manifest_parse(struct shoal_manifest **out, const uint8_t *p, size_t n,
                         const struct shoal_keyset *trusted,
                         const struct shoal_mf_limits *lim);

/* Frees |m| and everything it owns; NULL is accepted. */
void shoal_manifest_free(struct shoal_manifest *m);

/* ---- reading ---- */

enum shoal_repo_type shoal_manifest_repo_type(const struct shoal_manifest *m);
const char *shoal_manifest_repo_id(const struct shoal_manifest *m);
/* 40 lowercase hex digits (NUL-terminated). */
const char *shoal_manifest_commit(const struct shoal_manifest *m);
const struct shoal_cdc_params *shoal_manifest_params(const struct shoal_manifest *m);
uint32_t shoal_manifest_nfiles(const struct shoal_manifest *m);
/* File |i| in manifest order, or NULL when i >= nfiles. */
const struct shoal_mf_file *shoal_manifest_file(const struct shoal_manifest *m, uint32_t i);
uint32_t shoal_manifest_nchunks(const struct shoal_manifest *m);
/* Chunk |i| of all files in file order (file f owns
 * [first_chunk, first_chunk + nchunks)), or NULL when i >= nchunks. */
const struct shoal_mf_chunk *shoal_manifest_chunk(const struct shoal_manifest *m, uint32_t i);
/* Sum of all file sizes. */
uint64_t shoal_manifest_total_size(const struct shoal_manifest *m);
/* 32-byte id, signer public key, and creation time; valid once signed or
 * parsed (NULL and 0 before). */
const uint8_t *shoal_manifest_id(const struct shoal_manifest *m);
const uint8_t *shoal_manifest_signer(const struct shoal_manifest *m);
uint64_t shoal_manifest_created(const struct shoal_manifest *m);
/* Index of the file with |path|, or SHOAL_ENOTFOUND. O(log n) once signed
 * or parsed, linear before. */
int shoal_manifest_find_file(const struct shoal_manifest *m, const char *path);

/* ---- release names ----
 * What people, loaders, trackers and rollouts call a release: "org/name@rev"
 * for a model and "datasets/org/name@rev" for a dataset, the repo type
 * spelt as the Hub's URLs and huggingface_hub's REPO_TYPES_URL_PREFIXES
 * spell it (a model has no prefix), so a model and a dataset with one
 * org/name never share a name. */
#define SHOAL_RELNAME_DATASET "datasets/"
/* The longest name of a release pinned to a commit. */
#define SHOAL_RELNAME_MAX (sizeof SHOAL_RELNAME_DATASET - 1 + SHOAL_MF_REPO_ID_MAX + 1 + \
                           SHOAL_MF_COMMIT_LEN)

/* Writes |type|'s name of |repo| at |rev| to |out| (|cap| bytes).
 * Returns 0, or SHOAL_ETOOBIG when it does not fit (|out| then holds "" when
 * |cap| > 0). */
int shoal_relname_format(char *out, size_t cap, enum shoal_repo_type type, const char *repo,
                         const char *rev);

/* |m|'s name (repo@commit with its type's prefix); as shoal_relname_format. */
int shoal_manifest_name(const struct shoal_manifest *m, char *out, size_t cap);

/* Whether |name| (with its prefix, "@" and commit) names |m|'s release. */
bool shoal_manifest_named(const struct shoal_manifest *m, const char *name);

/* Reads the repo type off the front of release name |name|: sets |*type|
 * and |*repo| (into |name|, past the prefix). Returns 0; SHOAL_EBADMSG for
 * a Hub repo type shoal does not carry ("spaces/", "kernels/"), or for
 * "models/", which no model name carries; then |*repo| points past the
 * prefix and |*type| is SHOAL_REPO_MODEL. Only the prefix is looked at:
 * the repo id and the revision are the caller's to check. */
int shoal_relname_split(const char *name, enum shoal_repo_type *type, const char **repo);

#endif
