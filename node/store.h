/* SPDX-License-Identifier: MIT */
/*
 * The node's chunk store for one release (a parsed manifest). The store IS
 * the Hugging Face cache: there is one copy on disk.
 *
 * Each distinct file (by sha256 and blob name: <etag>, see shoal_hf_etag)
 * is preallocated as <repo>/.shoal/<etag>.incomplete and filled in place
 * with pwrite at its chunk offsets (never as blobs/<etag>.incomplete:
 * huggingface_hub resumes that name as its own download; one left by an
 * older shoald is moved to .shoal/ at open, see hfcache.h). Every chunk is
 * checked against its id before it is written. When the last chunk of a
 * file is in, the whole file is checked against the manifest's sha256,
 * fsync'd, renamed to blobs/<etag> (holding huggingface_hub's lock for it,
 * <cache>/.locks/<repo folder>/<etag>.lock), and linked as
 * snapshots/<commit>/<path> -> ../../blobs/<etag>; when every file is in,
 * refs/<branch> is written. Nothing is ever visible under a final name
 * before its bytes are verified and durable.
 *
 * A file is "ready" as soon as its sha256 has matched, before that
 * durability work: from then on its bytes never change, and a descriptor of
 * the very inode can be handed out (shoal_store_file_open) while it is still
 * being fsync'd and renamed. A loader that maps it needs the verified pages,
 * not their durability; the cache names still appear only once durable.
 *
 * Which chunks are verified is kept in a sidecar,
 * <repo>/.shoal/<manifest id>.state, rewritten atomically (temp file, fsync,
 * rename) after the data it covers has been fdatasync'd, and protected by a
 * BLAKE2b checksum: a torn or stale sidecar is discarded (the chunks are
 * fetched again), it never yields a wrong "verified" bit. The signed manifest
 * can be kept next to it (<manifest id>.manifest) so other releases can find
 * shared chunks locally (shoal_store_fill_from_local).
 *
 * A published blob found at open is trusted unhashed only while it is the
 * file shoald verified: <repo>/.shoal/verified/<etag> records, once its
 * whole sha256 matched and its bytes were durable, its inode, size, mtime
 * and ctime. Any other (huggingface_hub's download, a copy by hand, a blob
 * changed since) is hashed once at open, repaired when wrong, recorded
 * when right (see SHOAL_STORE_VERIFY).
 *
 * Memory mode (SHOAL_STORE_MEMORY) keeps each file in a sealed-on-completion
 * memfd instead: no cache layout, no sidecar, nothing survives the process;
 * completed files are handed out with shoal_store_file_open.
 *
 * Threads: plain blocking I/O meant for worker threads. put_chunk,
 * read_chunk, has, count, bitfield, file_done, file_suspect, take_back,
 * flush and fill_from_local may
 * be called concurrently from any threads on one store (concurrent puts of
 * the same chunk are harmless too). open and free must not overlap anything
 * else on the same store. Two stores for different releases may share a
 * cache dir; two stores for the same release must not be open at once.
 */
#ifndef SHOAL_STORE_H
#define SHOAL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifest.h"

struct shoal_store;

enum shoal_store_flags {
    /* At open, re-hash every chunk of every incomplete file (ignoring the
     * sidecar, so it also recovers a lost sidecar) and the sha256 of every
     * file found complete; a published file that fails is repaired in a
     * copy, as by shoal_store_take_back, its chunks checked one by one
     * (one that cannot be read is fetched again); a published file
     * whose copy cannot be made (no room) is left as it was, bad and
     * withheld (shoal_store_file_withheld), and the rest opens. Without
     * it the sidecar and the published blobs shoald verified are trusted
     * (a published blob only while its file matches the record kept under
     * .shoal/verified/ when its sha256 was checked: same inode, size, mtime
     * and ctime; one with no such record, put there by huggingface_hub or
     * by hand, or changed since, is hashed once, repaired like this flag's
     * finds when wrong, and recorded when right), except a
     * published blob next to a partial file of this release's own (a
     * repair under way): it is hashed first, and if wrong the partial
     * file is checked chunk by chunk; and except a file the sidecar marks
     * as found bad (file_suspect, a failed take_back: a repair that could
     * not happen), which is checked as this flag would. */
    SHOAL_STORE_VERIFY = 1u << 0,
    /* memfd-backed files; |cache_dir| is ignored and may be NULL. */
    SHOAL_STORE_MEMORY = 1u << 1,
    /* A published blob no record vouches for (and one to adopt from a
     * gateway's name, see shoal_store_open) is not hashed at open but left
     * pending (shoal_store_pending) for shoal_store_hash_found, which the
     * caller runs on a worker thread: open stays quick for a cache
     * huggingface_hub filled with multi-GB shards. */
    SHOAL_STORE_DEFER_HASH = 1u << 2,
};

/* Called from the thread whose put_chunk (or fill_from_local) finished a
 * file: |status| is 0 when file |file| is verified and published (or sealed
 * in memory mode), SHOAL_EBADHASH when its sha256 did not match the manifest
 * (its chunks are then unverified again), or a negative error from
 * publishing (SHOAL_ENOSPC, -EACCES, ...: the file stays incomplete and a
 * later open retries). Not called for files found complete at open. Must not
 * call back into the store except the read-only queries (has, count,
 * bitfield, file_done, complete, file_open, file_path, last_error). */
typedef void (*shoal_store_file_cb)(void *user, uint32_t file, int status);

/* opts.on_ready has the same type and rules: called from the thread
 * finishing file |file| the moment it becomes ready (its whole sha256
 * matched; sealed in memory mode), before on_file reports whether it was
 * published; shoal_store_file_open works from then on, even if publishing
 * then fails. Also called, from the thread calling
 * shoal_store_file_suspect, for each file of a ready blob whose suspicion
 * is cleared (it was not ready while suspect). |status| is always 0 there. */

struct shoal_store_opts {
    unsigned flags;              /* enum shoal_store_flags */
    const char *branch;          /* refs/<branch> gets the commit once the
                                  * release is complete; NULL: no ref */
    const uint8_t *manifest;     /* signed manifest bytes to keep in the cache
                                  * for dedup by later releases; NULL: none */
    size_t manifest_len;
    uint32_t flush_every;        /* sidecar rewrite after this many newly
                                  * verified chunks; 0: 256 */
    uint32_t flush_ms;           /* ... or at the first put this long after
                                  * the last rewrite; 0: 2000 ms */
    shoal_store_file_cb on_file; /* may be NULL */
    shoal_store_file_cb on_ready; /* may be NULL */
    void *user;                  /* passed to on_file and on_ready */
    bool has_group;              /* the repo folders get |group| (mode 02750) */
    uint32_t group;              /* gid of --loader-group, when has_group */
    char *err;                   /* when open fails, a message naming the path
                                  * is written here (NUL-terminated); may be NULL */
    size_t errlen;
};

/*
 * Opens (creating as needed) the store of release |m| in |cache_dir|
 * (see shoal_hf_cache_dir; created if missing), preallocates incomplete
 * files, reloads the sidecar, and finishes any file whose chunks are all in
 * (a crash between the last chunk and publishing). Files already published
 * in the cache, by this release or by another one holding the same blob,
 * count as complete at once; so do empty files once their (empty) blob is
 * checked and published.
 *
 * |m| is borrowed and must outlive the store; it must have an id (signed or
 * parsed). |opts| may be NULL (defaults); its strings and bytes are only read
 * during the call. Writes |*out| only on success.
 *
 * Returns 0; SHOAL_EBADMSG when |m| has no id or lists two files with one
 * sha256 but different sizes or chunk lists; SHOAL_EBADPATH for an unusable
 * repo id or branch, or when a path component in the cache is a symlink or
 * not a directory; SHOAL_ENOSPC when the disk cannot hold the preallocated
 * files; -ENOMEM; or another negated errno (-EACCES, -EROFS, -EFBIG, ...).
 * On failure nothing is published; the *.incomplete files this call created
 * are removed, ones that were there before (with their verified chunks)
 * stay for a later attempt.
 */
int shoal_store_open(struct shoal_store **out, const char *cache_dir,
                     const struct shoal_manifest *m,
                     const struct shoal_store_opts *opts);

/*
 * Takes the lock that says one shoald owns cache |cache_dir|: an flock
 * (LOCK_EX | LOCK_NB) on <cache_dir>/.locks/shoald.lock (the folder where
 * huggingface_hub keeps its own locks, which `huggingface-cli scan-cache`
 * skips), creating the cache and the folder when missing; the file then
 * holds this process's pid. Two daemons filling one cache would write the
 * same partial files. On success |*fd| is the open lock (close-on-exec;
 * the lock lasts while it is open, and goes with the process). Returns 0;
 * SHOAL_EBUSY when another process holds it, with its pid in |*holder|
 * (0 when it has not written one yet); or a negated errno / SHOAL_ELIMIT
 * when the lock cannot be taken at all (read-only cache, path too long).
 * |path| (|cap| bytes) gets the lock file's path in every case. Directories
 * it creates get group |gid| and mode 02750 (|gid| < 0: the umask's mode),
 * so that the loader group can reach the cache.
 */
int shoal_store_lock_cache(const char *cache_dir, long gid, int *fd, long *holder, char *path,
                           size_t cap);

/*
 * Whether the partial file or sidecar |name| (in <cache>/|folder|/.shoal/)
 * may belong to a release that can still resume; see
 * shoal_store_sweep_partials.
 */
typedef bool (*shoal_store_claimed_cb)(void *user, const char *folder, const char *name);

/* What a sweep removed, by kind. */
struct shoal_store_swept {
    uint32_t partials;  /* <etag>[.<16 hex>].incomplete */
    uint32_t sidecars;  /* <id>.state */
    uint32_t manifests; /* <id>.manifest */
};

/*
 * Removes the partial files (<etag>.incomplete, <etag>.<16 hex>.incomplete),
 * progress sidecars (<64 hex>.state) and kept manifests (<64 hex>.manifest)
 * of a commit no snapshot is left of, that shoald left in the .shoal/
 * folders of cache |cache_dir| and that |claimed| says no release owns: a
 * release dropped while shoald was down (its manifest deleted, its key no
 * longer trusted) or killed before its drop removed them would otherwise
 * keep them, up to its whole size, where no Hugging Face tool looks. Only
 * regular files with exactly those names; one that another open file
 * description holds locked (a store filling it) stays. The caller holds the
 * cache lock (shoal_store_lock_cache). Sets *|files| and *|bytes| to what
 * was removed, |*kinds| (may be NULL) to the count of each kind, and
 * |first| (|cap| bytes, may be 0) to the first path. A kept manifest that
 * cannot be parsed stays. Returns 0 or a negated errno when the cache
 * cannot be listed.
 */
int shoal_store_sweep_partials(const char *cache_dir, shoal_store_claimed_cb claimed, void *user,
                               uint32_t *files, uint64_t *bytes, struct shoal_store_swept *kinds,
                               char *first, size_t cap);

/*
 * Whether kept manifest |name| (<id>.manifest in <cache_dir>/|folder|/
 * .shoal/) parses and names a commit with no snapshots/<commit> left in
 * that folder: a dropped release's manifest is then removed (QA F2).
 */
bool shoal_store_manifest_orphaned(const char *cache_dir, const char *folder, const char *name);

/* The release was asked for (again) by branch or tag |branch|: refs/<branch>
 * gets the commit now if the release is complete, else once it completes
 * (then only the branch named last). Nothing for a memory store. Any
 * thread (a complete release checks its snapshot, a stat per file: a
 * worker's job then). Returns 0, SHOAL_EBADPATH (not a usable branch name)
 * or the error writing the ref (also in last_error). */
int shoal_store_set_branch(struct shoal_store *s, const char *branch);
/* shoal_store_set_branch for a caller that has just found the release's
 * snapshot whole (shoal_hf_snapshot_check returned 0): the ref is written
 * without walking the snapshot a second time. */
int shoal_store_set_branch_checked(struct shoal_store *s, const char *branch);

/* Flushes the sidecar, closes every file and frees the store. NULL is fine.
 * A release that is not complete stays resumable. */
void shoal_store_free(struct shoal_store *s);

/* A dropped release: shoal_store_free removes the partial files this store
 * fills (its incomplete blobs, under .shoal/), whose bytes nothing else
 * uses, instead of keeping them for a resume; published blobs stay. Sets
 * *|files| and *|bytes| (may be NULL) to what that will remove. Any
 * thread; call before the last put ends is fine (a put into a removed
 * file is lost with it). */
void shoal_store_discard_partials(struct shoal_store *s, uint32_t *files, uint64_t *bytes);

/*
 * Stores chunk |idx| of the release. The bytes are hashed first: when
 * BLAKE2b-256 of |data| is not the manifest's id for |idx| (or |len| is not
 * its length) it returns SHOAL_EBADHASH and writes nothing. Otherwise the
 * bytes are written at every place this chunk id occurs in the release (the
 * same chunk in several files or offsets is stored from one put), all those
 * indices become verified, and each file that this completes is checked and
 * published before the call returns (see shoal_store_file_cb). Storing a
 * chunk already verified returns 0 and writes nothing. |data| is borrowed.
 *
 * Returns 0; SHOAL_EBADHASH; SHOAL_ENOTFOUND for |idx| out of range;
 * SHOAL_ENOSPC or a negated errno when writing failed (the chunk stays
 * unverified; see shoal_store_last_error for the path).
 */
int shoal_store_put_chunk(struct shoal_store *s, uint32_t idx,
                          const uint8_t *data, uint32_t len);
/* The same, and sets *|first| to whether this call verified |idx| (false
 * when it was verified already, also by a put racing this one on another
 * thread): a chunk received twice counts as a duplicate exactly once. */
int shoal_store_put_chunk_first(struct shoal_store *s, uint32_t idx, const uint8_t *data,
                                uint32_t len, bool *first);

/* Reads verified chunk |idx| into |buf| (|cap| bytes) for serving. Returns
 * the chunk length (> 0); SHOAL_ENOTFOUND when |idx| is out of range or not
 * verified; SHOAL_ELIMIT when |cap| is smaller than the chunk; a negated
 * errno; or -EIO when the file is shorter than the manifest says. The bytes
 * are not re-hashed here: receivers verify every chunk. */
int shoal_store_read_chunk(struct shoal_store *s, uint32_t idx, uint8_t *buf,
                           uint32_t cap);

/*
 * Where verified chunk |idx| can be sent from without reading it here: a
 * new read-only descriptor of its file in |*fd| (the caller closes it) and
 * its offset in |*off|, but only when every page of the chunk is in the
 * page cache, so that sending from it (sendfile) does not wait for the
 * disk. Returns 0; SHOAL_ENOTFOUND (out of range or not verified);
 * SHOAL_EAGAIN (not all cached: read it instead); or a negated errno.
 */
int shoal_store_chunk_file(struct shoal_store *s, uint32_t idx, int *fd, uint64_t *off);

/* True when chunk |idx| is verified (false when out of range). */
bool shoal_store_has(struct shoal_store *s, uint32_t idx);

/* Number of verified chunks, and their total bytes. */
uint32_t shoal_store_count(struct shoal_store *s);
uint64_t shoal_store_bytes(struct shoal_store *s);

/* Copies the verified set as a bitfield: chunk i is bit (7 - i % 8) of byte
 * i / 8 (most significant bit first, as in HAVE messages); bits past the last
 * chunk are zero. Needs (nchunks + 7) / 8 bytes. Returns that length, or
 * SHOAL_ELIMIT when |cap| is too small. */
int shoal_store_bitfield(struct shoal_store *s, uint8_t *out, size_t cap);

/* Index of the first chunk of the release whose id is |id| (a put of any
 * index with that id stores and verifies them all), or SHOAL_ENOTFOUND. Use
 * it to map a REQUEST by id to an index for read_chunk. */
int shoal_store_find_chunk(struct shoal_store *s, const uint8_t id[32]);

/* True when file |file| is verified and published (sealed in memory mode). */
bool shoal_store_file_done(struct shoal_store *s, uint32_t file);
/* True when file |file| is ready: its whole sha256 matched (sealed in memory
 * mode), published or not yet; it stays true unless the file is suspected
 * of having changed on disk (shoal_store_file_suspect: until cleared) or
 * its chunks are taken back (shoal_store_take_back: until its sha256
 * matches again). */
bool shoal_store_file_ready(struct shoal_store *s, uint32_t file);
/* True when every file of the release is done. */
bool shoal_store_complete(struct shoal_store *s);

/* Opens a new read-only descriptor (O_CLOEXEC) on ready file |file| (see
 * shoal_store_file_ready), for handing to a loader; the caller owns and
 * closes it. It is a new open file description of the same inode the store
 * filled, so a file not yet renamed into blobs/ reads the same whole bytes
 * and stays the same file after the rename. A published blob whose name
 * was removed from the cache under the daemon (rm, huggingface-cli
 * delete-cache) is opened through the store's own descriptor of the same
 * verified inode, and SHOAL_STORE_UNLINKED (positive: |*fd| is set, as for
 * 0) says so, for the caller's log. Returns 0, SHOAL_STORE_UNLINKED,
 * SHOAL_ENOTFOUND when the file is out of range or not ready (e.g. chunks
 * taken back and being fetched again), SHOAL_EBADHASH when it was found
 * changed on disk (file_suspect), or a negated errno. */
#define SHOAL_STORE_UNLINKED 1
int shoal_store_file_open(struct shoal_store *s, uint32_t file, int *fd);

/* Marks the blob of file |file| (so every file with its sha256) as found
 * changed on disk after it was verified (|bad|), or cleared of that
 * suspicion (its bytes, read through any of its files, hashed right): while
 * bad it is not ready (shoal_store_file_ready is false,
 * shoal_store_file_open fails with SHOAL_EBADHASH), so no loader is handed
 * it. A bad blob is good again once its whole sha256 matches (after
 * take_back and refetch), or when cleared here; clearing a blob that is
 * ready calls on_ready for its files (from this thread, with no store lock
 * held). Clearing does not make a blob whose chunks were taken back ready:
 * only its sha256 matching does. Any thread. */
void shoal_store_file_suspect(struct shoal_store *s, uint32_t file, bool bad);

/*
 * Takes chunks |chunks| (|n| release indices, all in file |file|) back to
 * missing after they were found changed on disk. A published blob is
 * repaired in a copy: blobs/<sha> is copied, chunk by chunk and without the
 * chunks taken back, to this release's own partial file
 * .shoal/<sha>.<release id>.incomplete (which needs room for the whole
 * file), which becomes the file the store reads and fills; a chunk that
 * cannot be read while copying (EIO) is taken back too. blobs/<sha> itself
 * keeps its name and bytes meanwhile (other releases in the cache link to
 * it) until the copy, refilled and matching its sha256, is renamed over it
 * and linked again. Then the chunks lose their verified bits and the
 * sidecar is rewritten, so neither this process nor a restarted one serves
 * them (a restart finds the partial file and hashes blobs/<sha> before
 * trusting it, whatever the sidecar says), and this release's snapshot
 * links to the blob are removed; a later put of each fills the file in
 * place, and its last one checks and publishes the file again. The blob
 * is bad (see file_suspect) and not ready until then. For a worker thread
 * (copies, fsync).
 *
 * Returns 0; SHOAL_ENOTFOUND (a chunk not in |file|); SHOAL_EBUSY (the
 * file is being published right now, or another process holds its partial
 * file); -EROFS in memory mode; or the error creating or copying the
 * partial file, or writing the sidecar after it (also in last_error:
 * SHOAL_ENOSPC, EACCES, ...). On failure the copy is removed, the chunks
 * stay verified, the file keeps its names and links (nothing was changed
 * in the cache) and stays bad, and the sidecar is rewritten to say so: a
 * restart hashes the file before trusting it (last_error adds it when
 * that write fails too). (A file not yet published has no copy: its
 * chunks are taken back in place, and a failed sidecar write there is
 * tried again at the next flush.)
 */
int shoal_store_take_back(struct shoal_store *s, uint32_t file, const uint32_t *chunks,
                          uint32_t n);

/* 0, or, for a file found wrong at open (SHOAL_STORE_VERIFY, a file the
 * sidecar marks bad, or a repair under way) whose repair copy could not be
 * made, the error that kept it (SHOAL_ENOSPC: room for the whole file is
 * needed in the cache, ...). Such a file is done but bad (not ready, see
 * file_suspect), its chunks still verified: the caller must withhold them
 * until a later open repairs it. Also SHOAL_EBADPATH for a file not done
 * whose partial names (.shoal/<sha256>.incomplete, and this release's own
 * .shoal/<sha256>.<release id>.incomplete) both hold something that is not
 * a regular file (a directory, FIFO, socket or symlink: never opened,
 * followed or removed), or only the latter while another process fills
 * the former: it is not filled (a put of its chunks stores nothing and
 * returns 0, the release is never complete), and the caller should not
 * fetch it until a later open, once that is moved away, finds room for
 * it. When it is not 0 and |why| is not NULL,
 * the message for this file (which path, what failed; last_error holds
 * only the last one's) is written to |why| (|cap| bytes, NUL-terminated);
 * otherwise |why| gets "". */
int shoal_store_file_withheld(struct shoal_store *s, uint32_t file, char *why, size_t cap);

/* 1 when opening the store had to step around something of someone
 * else's for file |file| (the primary of its blob: once per blob), and it
 * says so, for the log: a directory, FIFO, socket or symlink at the shared
 * partial name .shoal/<sha256>.incomplete, left alone while the file is
 * filled under this release's own partial name; or a published blob shoald
 * had not verified that did not match its sha256 (being repaired). The message (which path,
 * what is there, what is done instead) goes to |out| (|cap| bytes,
 * NUL-terminated; "" when 0). Otherwise 0. */
int shoal_store_file_note(struct shoal_store *s, uint32_t file, char *out, size_t cap);

/*
 * Hashes the blobs opening with SHOAL_STORE_DEFER_HASH left pending, as
 * opening without it would have: each that matches its sha256 is recorded,
 * linked and done (on_ready is called for its files), each that does not
 * is repaired in a copy (its chunks checked one by one; the rest are
 * fetched) and noted (shoal_store_file_note). refs/<branch> is written if
 * that completes the release. For a worker thread; may run alongside puts,
 * reads and flushes of the store (no put writes into a pending blob), not
 * alongside take_back of a pending blob's file (nothing of it is verified
 * to take back). |*hashed| (may be NULL) gets how many blobs were hashed
 * (shoal_store_open_hashed adds them up). Returns 0, -ENOMEM, or the first
 * error that kept a blob from being opened: such a blob is withheld
 * (shoal_store_file_withheld) until a later open.
 */
int shoal_store_hash_found(struct shoal_store *s, uint32_t *hashed);

/* How many blobs (|*files|, may be NULL) of how many bytes are still
 * pending (see SHOAL_STORE_DEFER_HASH). Any thread. */
void shoal_store_pending(struct shoal_store *s, uint32_t *files, uint64_t *bytes);
/* Whether file |file|'s blob is pending. Any thread. */
bool shoal_store_file_pending(struct shoal_store *s, uint32_t file);

/* What opening the store hashed of the published blobs it found with no
 * record of shoald verifying them (see SHOAL_STORE_VERIFY): how many
 * (|files|), their bytes, and how many of them did not match (|wrong|,
 * repaired). All 0 when every published blob was vouched for, and for
 * what --verify-store, a repair under way or a recheck mark hashed. Any of
 * the out pointers may be NULL. */
void shoal_store_open_hashed(const struct shoal_store *s, uint32_t *files, uint64_t *bytes,
                             uint32_t *wrong);

/* Writes the absolute path of completed file |file| in the cache
 * (<cache>/<repo>/snapshots/<commit>/<path>). Returns 0, SHOAL_ENOTFOUND
 * when it is not complete or the store is in memory mode, or SHOAL_ELIMIT. */
int shoal_store_file_path(struct shoal_store *s, uint32_t file, char *out,
                          size_t cap);

/*
 * Looks through the signed manifests kept in |cache_dir| (every repo's
 * .shoal/<id>.manifest) for published blobs holding chunks this release still
 * needs, and copies them in (pread, verify, pwrite through put_chunk) instead
 * of downloading them. Manifests that fail to parse and blobs that are
 * missing or wrong are skipped: every copied chunk is verified. Writes the
 * number of chunks copied to |*copied| (may be NULL). Returns 0, -ENOMEM, or
 * the first write error (SHOAL_ENOSPC, -errno); does nothing in memory mode.
 */
int shoal_store_fill_from_local(struct shoal_store *s, uint32_t *copied);

/*
 * Tries again to finish the files whose every chunk is verified but that
 * could not be published (a full disk or inode table when linking, an
 * fsync error): each is hashed again from disk, then published. For a worker thread. Writes how many files were
 * tried to |*tried| (may be NULL). Returns 0 or the first error (details
 * in shoal_store_last_error); a file that fails stays as it was, to be
 * tried again.
 */
int shoal_store_retry_publish(struct shoal_store *s, uint32_t *tried);

/* Rewrites the sidecar now if anything changed since the last time (chunks
 * verified or taken back, a file found bad or cleared): data
 * files are fdatasync'd first, so every bit it records is durable. Returns 0
 * or a negated errno / SHOAL_ENOSPC. */
int shoal_store_flush(struct shoal_store *s);

/* Copies the most recent error message (which file or path, what failed) to
 * |out| (NUL-terminated, truncated to |cap|); empty when none. */
void shoal_store_last_error(struct shoal_store *s, char *out, size_t cap);

#endif
