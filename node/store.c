/* SPDX-License-Identifier: MIT */
/*
 * The chunk store of one release, laid out as the Hugging Face hub cache
 * (see store.h for the on-disk picture and the guarantees).
 *
 * Files with the same sha256 and blob name (shoal_hf_etag) share one blob,
 * so the unit of filling and publishing is the blob: each has a "primary"
 * file whose chunk list is authoritative, and other files with that sha256
 * (checked at open to have the same chunk list) become complete with it. A chunk id that occurs at
 * several places is one group in |order| (chunk indices sorted by id); one
 * put writes every place and marks the whole group.
 *
 * Locking: |mu| guards the bits, counters, blob states and dirty flags and
 * the error text; it is never held across I/O. A blob's last chunk moves it
 * to COMPLETING under |mu|, so exactly one thread hashes and publishes it
 * (with no lock held) while puts for it are skipped. |flush_mu| serializes
 * sidecar rewrites; |link_mu| serializes creating snapshot directories;
 * a blob's |write_mu| serializes the pwrites into it (and nothing else).
 *
 * The whole-file sha256 is computed as the file fills, not by reading the
 * file back at the end: each blob keeps a running sha256 over its longest
 * verified prefix of chunks. A put advances it over every contiguous
 * verified chunk after that prefix, taking the chunk in hand from memory
 * and reading back (from the page cache, as they were just written) only
 * chunks that arrived out of order. One thread at a time advances a blob
 * (|hashing|, under |mu|); the thread that finishes the blob waits on
 * |hash_cv| for it, then hashes whatever is left. The running hash lives in
 * memory only: after a restart it starts again from the file, so crash
 * consistency and "nothing published before the whole sha256 matches" are
 * unchanged.
 */
#include "store.h"

#include <dirent.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "hash.h"
#include "hfcache.h"

#define SIDECAR_MAGIC "SHOALSC\0"
/* Version 2 adds, after the chunk bits, a bit per file: "found changed on
 * disk, not repaired yet" (see struct blob's |recheck|). Version 1 is still
 * read (no file is suspect then). */
#define SIDECAR_VERSION 2u
#define SIDECAR_HDR 48 /* magic 8, version 4, nchunks 4, manifest id 32 */
#define FLUSH_EVERY_DEFAULT 256u
/* ... or after this long with chunks not in the sidecar: at a slow rate
 * (a rate limit, a busy fleet) 256 chunks take minutes, and a crash then
 * lost all of them (a release under 256 chunks, all its progress). At full
 * speed the count comes first; this only bounds the loss in time. */
#define FLUSH_MS_DEFAULT 2000u
/* After an open the first rewrite comes at the first verified chunk, and
 * the time trigger then grows from flush_ms / FLUSH_RAMP, doubling at each
 * rewrite, to flush_ms: a node crashing soon after every start (an OOM
 * kill, a preempted VM coming back) kept nothing verified in its first
 * flush_ms, and fetched the same chunks again at every start. At most
 * log2(FLUSH_RAMP) + 1 more rewrites per start (each an fdatasync of the
 * blobs written since), never one per chunk. */
#define FLUSH_RAMP 16u
#define HASH_BUF (1u << 20)
/* Read-back buffers kept for the running sha256: one per thread that may
 * hash at once (the libuv pool's default size). */
#define SPARE_BUFS 4u
/* A kept manifest larger than this is not read back for dedup. */
#define KEPT_MANIFEST_MAX ((size_t)SHOAL_MF_MAX_BYTES_DEFAULT)

enum blob_state { BLOB_INCOMPLETE, BLOB_COMPLETING, BLOB_DONE };

struct blob {
    uint32_t primary;   /* file whose chunk list fills this blob */
    uint32_t fpos, fcount; /* its files: blob_files[fpos .. fpos+fcount) */
    uint32_t remaining; /* unverified chunks of the primary file */
    int fd;             /* read-write while filling; -1 when not open */
    int state;          /* enum blob_state */
    bool dirty;         /* written since its last fdatasync */
    bool created;       /* its .incomplete file was made by this open */
    bool own_inc;       /* filled under this release's own partial name
                         * (blob_inc_path): the shared one was locked */
    bool ready;         /* sha256 matched: bytes final (under mu; cleared
                         * only when chunks are taken back, see
                         * shoal_store_take_back) */
    bool bad;           /* found changed on disk after it was verified
                         * (under mu): not ready, never handed out */
    bool hashing;       /* a thread owns |sha| (under mu) */
    int repair_rv;      /* why its repair could not start at open, or 0
                         * (shoal_store_file_withheld) */
    char *repair_msg;   /* and the message saying so, its own: last_error
                         * is overwritten by the next blob's (NULL: none) */
    bool blocked;       /* incomplete, and neither of its partial names
                         * holds a regular file (a directory, FIFO, socket
                         * or symlink of someone else's is in the way): no
                         * fd, nothing verified, puts skip it; withheld
                         * (repair_rv, repair_msg) until a later open */
    char *note;         /* a partial name left alone for another, or NULL
                         * (shoal_store_file_note) */
    bool pending;       /* found published (or under a gateway's name, see
                         * adopt_linked) with no record vouching for it, and
                         * SHOAL_STORE_DEFER_HASH: its first hash is left to
                         * shoal_store_hash_found; until then nothing of it
                         * is verified, no fd, and puts skip it (under mu) */
    bool recheck;       /* the sidecar said it was bad when last written:
                         * hashed at open before it is trusted, as with
                         * SHOAL_STORE_VERIFY (a repair that could not
                         * happen must not be forgotten by a restart) */
    uint32_t hashed;    /* primary chunks [0, hashed) are in |sha| */
    struct shoal_sha256 sha; /* running; touched only by its owner */
    /* Held around each chunk's pwrite into |fd|. Buffered writes to one
     * file take its inode lock, and a writer that finds it taken spins
     * while the holder runs: with the pool's threads on two cores, that
     * was ~4% of a puller's CPU. Waiting here sleeps instead. */
    pthread_mutex_t write_mu;
};

struct shoal_store {
    const struct shoal_manifest *m;
    unsigned flags;
    uint32_t nfiles, nchunks, nblobs;
    uint32_t max_len;   /* longest chunk of the release */
    char *cache_dir;
    char *repo_path;    /* <cache>/<models--org--name> */
    char *branch;       /* NULL: no ref */
    char idhex[2 * SHOAL_HASH_LEN + 1];
    int cache_fd, repo_fd, blobs_fd, meta_fd, snap_fd;
    int vrec_fd;        /* .shoal/verified/ (see vrec_*), or -1: none kept */
    /* Published blobs found at open that no record vouched for, hashed
     * (shoal_store_open_hashed): how many, their bytes, how many wrong. */
    uint32_t open_hashed, open_wrong;
    uint64_t open_hashed_bytes;
    uint32_t npending;   /* blobs still |pending| (under mu) */
    uint64_t pending_bytes;
    long gid;           /* the loader group for the folders, or -1 */

    uint32_t *file_blob; /* file -> blob */
    uint32_t *blob_files; /* files grouped by blob (sorted by cmp_blob_key) */
    uint32_t ndone;      /* blobs in BLOB_DONE */
    struct blob *blobs;
    uint32_t *order;     /* chunk indices sorted by (id, index) */
    uint32_t *group;     /* chunk -> first position of its id in order */
    size_t nbytes_bits;
    uint8_t *bits;       /* verified chunks, MSB first */
    uint8_t *flush_bits; /* snapshot written by flush (under flush_mu) */
    size_t nbytes_files;
    uint8_t *flush_bad;  /* per file: its blob bad, as flush writes it, and */
    uint8_t *disk_bad;   /* as the sidecar on disk says (both under flush_mu) */
    int *flush_fds;      /* scratch for flush (under flush_mu) */

    uint32_t count;
    uint64_t bytes;
    uint32_t since_flush, flush_every;
    uint32_t flush_ms;
    uint32_t flush_gap;  /* the time trigger now: 0 after open, then up to
                          * flush_ms (FLUSH_RAMP; under mu) */
    uint64_t flushed_ms; /* CLOCK_MONOTONIC of the last flush (under mu) */
    bool sidecar_dirty;
    bool opening;        /* no callbacks until open returns */
    bool ref_owed;       /* mu; every file published, but refs/<branch>
                          * could not be written: not complete yet */
    bool discard;        /* free removes the partial files (a dropped release) */

    shoal_store_file_cb on_file, on_ready;
    void *user;

    pthread_mutex_t mu, flush_mu, link_mu;
    pthread_cond_t hash_cv; /* a blob's |hashing| went false */
    /* Read-back buffers of max_len bytes kept between hash runs (under
     * mu): a fresh multi-MiB allocation per run costs page faults on every
     * chunk that arrived out of order. */
    uint8_t *spare[SPARE_BUFS];
    unsigned nspare;
    char err[512];
};

static atomic_uint tmp_counter;

/* ---- small helpers ---- */

static int errno_rv(int e)
{
    return e == ENOSPC || e == EDQUOT ? SHOAL_ENOSPC : -e;
}

static void set_err(struct shoal_store *s, const char *f, ...)
    __attribute__((format(printf, 2, 3)));
static void set_err(struct shoal_store *s, const char *f, ...)
{
    va_list ap;

    pthread_mutex_lock(&s->mu);
    va_start(ap, f);
    vsnprintf(s->err, sizeof s->err, f, ap);
    va_end(ap);
    pthread_mutex_unlock(&s->mu);
}

static inline bool bit_get(const uint8_t *b, uint32_t i)
{
    return (b[i >> 3] >> (7 - (i & 7))) & 1;
}

static inline void bit_set(uint8_t *b, uint32_t i)
{
    b[i >> 3] |= (uint8_t)(0x80u >> (i & 7));
}

static inline void bit_clear(uint8_t *b, uint32_t i)
{
    b[i >> 3] &= (uint8_t)~(0x80u >> (i & 7));
}

static const struct shoal_mf_chunk *chunk(const struct shoal_store *s, uint32_t i)
{
    return shoal_manifest_chunk(s->m, i);
}

static const struct shoal_mf_file *file(const struct shoal_store *s, uint32_t i)
{
    return shoal_manifest_file(s->m, i);
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno_rv(errno);
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Reads exactly |n| bytes; -EIO when the file ends first. */
static int pread_all(int fd, uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno_rv(errno);
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* mkdir (if missing) and open a directory under |dirfd| without following
 * a symlink, so nothing in the manifest or the cache can redirect writes. */
static int mkdir_open(int dirfd, const char *name, int *out)
{
    int fd;

    /* 0750: the repo folder above it is the gate (see guard_dir); in it
     * new directories inherit its group and its setgid bit. */
    if (mkdirat(dirfd, name, 0750) < 0 && errno != EEXIST)
        return errno_rv(errno);
    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ELOOP || errno == ENOTDIR ? SHOAL_EBADPATH : -errno;
    *out = fd;
    return 0;
}

/* Gives directory |fd| (|what| for messages) to the cache's group: mode
 * 0750 with no group, 02750 and group |gid| with one (|gid| < 0: none), so
 * only shoald's user and the loader group can enter it, and what is created
 * in it inherits that group. A directory of another owner is left as it is
 * (we could not change it; its owner chose its mode). Returns 0 or a negated
 * errno (chown to a group shoald's user is not in: -EPERM). */
static int guard_dir(int fd, long gid)
{
    struct stat st;
    mode_t want;

    if (fstat(fd, &st) != 0)
        return -errno;
    if (st.st_uid != geteuid())
        return 0;
    if (gid >= 0 && st.st_gid != (gid_t)gid && fchown(fd, (uid_t)-1, (gid_t)gid) != 0)
        return -errno;
    /* Keep a setgid bit someone set; a chown may have cleared ours. */
    want = (gid >= 0 ? S_ISGID : (st.st_mode & S_ISGID)) | 0750;
    if ((st.st_mode & 07777) != want && fchmod(fd, want) != 0)
        return -errno;
    return 0;
}

/* Creates |path| and its parents (the user-given cache dir: symlinks in it
 * are the user's business and are followed). Directories it creates get
 * group |gid| (see guard_dir) when |gid| >= 0: the loader group must be
 * able to reach the repo folders; otherwise the umask decides. */
static int mkdir_p(const char *path, long gid)
{
    char buf[SHOAL_HF_PATH_MAX];
    size_t n = strlen(path), i;
    int fd, rv;

    if (n == 0 || n >= sizeof buf)
        return SHOAL_ELIMIT;
    memcpy(buf, path, n + 1);
    for (i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0755) < 0) {
            if (errno != EEXIST)
                return errno_rv(errno);
        } else if (gid >= 0) {
            fd = open(buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (fd < 0)
                return -errno;
            rv = guard_dir(fd, gid);
            close(fd);
            if (rv < 0)
                return rv;
        }
        buf[i] = i == n ? '\0' : '/';
    }
    return 0;
}

int shoal_store_lock_cache(const char *cache_dir, long gid, int *fd, long *holder, char *path,
                           size_t cap)
{
    char dir[SHOAL_HF_PATH_MAX], buf[32];
    int lfd = -1, n, rv;
    ssize_t got;

    *fd = -1;
    *holder = 0;
    n = snprintf(dir, sizeof dir, "%s/.locks", cache_dir);
    if (n < 0 || (size_t)n >= sizeof dir || snprintf(path, cap, "%s/shoald.lock", dir) >= (int)cap)
        return SHOAL_ELIMIT;
    if ((rv = mkdir_p(dir, gid)) < 0)
        return rv;
    lfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (lfd < 0)
        return errno_rv(errno);
    if (flock(lfd, LOCK_EX | LOCK_NB) != 0) {
        rv = errno == EWOULDBLOCK ? SHOAL_EBUSY : errno_rv(errno);
        if (rv == SHOAL_EBUSY && (got = pread(lfd, buf, sizeof buf - 1, 0)) > 0) {
            buf[got] = '\0';
            *holder = strtol(buf, NULL, 10);
        }
        goto out;
    }
    /* For the message another daemon prints; the lock, not the pid, says
     * who owns the cache (a pid left by a dead daemon means nothing). */
    n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(lfd, 0) != 0 || pwrite(lfd, buf, (size_t)n, 0) != n) {
        rv = errno_rv(errno);
        goto out;
    }
    *fd = lfd;
    lfd = -1;
    rv = 0;
out:
    if (lfd >= 0)
        close(lfd);
    return rv;
}

/* Whether |p| starts with exactly |n| lowercase hex digits. */
static bool hex_run(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return false;
    return true;
}

/* What a name only shoald gives in .shoal/ is: <etag>.incomplete and
 * <etag>.<16 hex>.incomplete (shoal_hf_partial_path; an etag is 40 or 64
 * hex), <64 hex>.state (sidecar_name) or <64 hex>.manifest
 * (keep_manifest); 0 for any other name. */
enum meta_kind { META_NONE, META_PARTIAL, META_SIDECAR, META_MANIFEST };

static enum meta_kind own_meta_name(const char *name)
{
    size_t n = strlen(name), e;

    if (n == 64 + 6 && hex_run(name, 64) && strcmp(name + 64, ".state") == 0)
        return META_SIDECAR;
    if (n == 64 + 9 && hex_run(name, 64) && strcmp(name + 64, ".manifest") == 0)
        return META_MANIFEST;
    for (e = 40; e <= 64; e += 24) {
        if (n == e + 11 && hex_run(name, e) && strcmp(name + e, ".incomplete") == 0)
            return META_PARTIAL;
        if (n == e + 28 && hex_run(name, e) && name[e] == '.' && hex_run(name + e + 1, 16) &&
            strcmp(name + e + 17, ".incomplete") == 0)
            return META_PARTIAL;
    }
    return META_NONE;
}

static int read_small(int dfd, const char *name, size_t max, uint8_t **out, size_t *n);

/* Whether kept manifest |name| (in |meta_fd|, the .shoal/ of repo folder
 * |repo_fd|) is of a commit with no snapshot left: nothing of that release
 * remains for another one to take chunks from (fill_from_local), so
 * parsing it at every release open is all it would still cost. One that
 * cannot be read or parsed is left alone (not ours to judge). */
static bool manifest_orphaned(int repo_fd, int meta_fd, const char *name)
{
    struct shoal_manifest *m = NULL;
    uint8_t *bytes = NULL;
    size_t len = 0;
    bool orphan = false;

    if (read_small(meta_fd, name, KEPT_MANIFEST_MAX, &bytes, &len) == 0 &&
        shoal_manifest_parse(&m, bytes, len, NULL, NULL) == 0) {
        char snap[128];
        struct stat st;
        int k = snprintf(snap, sizeof snap, "snapshots/%s", shoal_manifest_commit(m));
        orphan = k > 0 && (size_t)k < sizeof snap &&
                 fstatat(repo_fd, snap, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT;
    }
    shoal_manifest_free(m);
    free(bytes);
    return orphan;
}

bool shoal_store_manifest_orphaned(const char *cache_dir, const char *folder, const char *name)
{
    char path[PATH_MAX];
    int repo_fd, meta_fd, k = snprintf(path, sizeof path, "%s/%s", cache_dir, folder);
    bool orphan = false;

    if (k < 0 || (size_t)k >= sizeof path ||
        (repo_fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return false;
    meta_fd = openat(repo_fd, ".shoal", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (meta_fd >= 0) {
        orphan = manifest_orphaned(repo_fd, meta_fd, name);
        close(meta_fd);
    }
    close(repo_fd);
    return orphan;
}

/* Removes |name| from |dfd| if it is a regular file nobody holds locked;
 * adds its size to |*bytes|. */
static bool sweep_one(int dfd, const char *name, uint64_t *bytes)
{
    struct stat st;
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    bool gone = false;

    if (fd < 0)
        return false;
    /* A store filling it holds the lock (open_blob_disk): never ours to
     * take, whatever the caller said. */
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0 &&
        unlinkat(dfd, name, 0) == 0) {
        *bytes += (uint64_t)st.st_size;
        gone = true;
    }
    close(fd);
    return gone;
}

int shoal_store_sweep_partials(const char *cache_dir, shoal_store_claimed_cb claimed, void *user,
                               uint32_t *files, uint64_t *bytes, struct shoal_store_swept *kinds,
                               char *first, size_t cap)
{
    DIR *top = opendir(cache_dir), *meta;
    struct dirent *de, *me;
    struct shoal_store_swept none;

    if (!kinds)
        kinds = &none;
    memset(kinds, 0, sizeof *kinds);
    *files = 0;
    *bytes = 0;
    if (cap)
        first[0] = '\0';
    if (!top)
        return errno == ENOENT ? 0 : -errno;
    while ((de = readdir(top))) {
        int repo_fd, meta_fd;
        bool any = false;

        if (strncmp(de->d_name, "models--", 8) != 0 &&
            strncmp(de->d_name, "datasets--", 10) != 0 && strncmp(de->d_name, "spaces--", 8) != 0)
            continue;
        repo_fd = openat(dirfd(top), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (repo_fd < 0)
            continue;
        meta_fd = openat(repo_fd, ".shoal", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (meta_fd < 0) {
            close(repo_fd);
            continue;
        }
        if (!(meta = fdopendir(meta_fd))) {
            close(meta_fd);
            close(repo_fd);
            continue;
        }
        while ((me = readdir(meta))) {
            enum meta_kind kind = own_meta_name(me->d_name);
            /* A kept manifest goes only with the last snapshot of its
             * commit (QA F2): while one is left, other releases take
             * chunks from its blobs through it. */
            if (kind == META_NONE || claimed(user, de->d_name, me->d_name) ||
                (kind == META_MANIFEST && !manifest_orphaned(repo_fd, meta_fd, me->d_name)) ||
                !sweep_one(meta_fd, me->d_name, bytes))
                continue;
            any = true;
            kinds->partials += kind == META_PARTIAL;
            kinds->sidecars += kind == META_SIDECAR;
            kinds->manifests += kind == META_MANIFEST;
            if (++*files == 1 && cap)
                snprintf(first, cap, "%s/%s/.shoal/%s", cache_dir, de->d_name, me->d_name);
        }
        /* The names gone for good before the caller logs them. */
        if (any)
            (void)fsync(meta_fd);
        closedir(meta);
        close(repo_fd);
    }
    closedir(top);
    return 0;
}

/* Walks the directories of relative |path| under |dirfd| (creating them),
 * leaving the directory fd in |*dfd| and the last component in |*leaf|. */
static int walk_dirs(int dirfd, const char *path, int *dfd, const char **leaf)
{
    char comp[NAME_MAX + 1];
    const char *p = path, *slash;
    int cur = -1, next;
    int rv = 0;

    cur = dup(dirfd);
    if (cur < 0)
        return -errno;
    while ((slash = strchr(p, '/'))) {
        size_t len = (size_t)(slash - p);
        if (len == 0 || len > NAME_MAX) {
            rv = SHOAL_EBADPATH;
            goto out;
        }
        memcpy(comp, p, len);
        comp[len] = '\0';
        if ((rv = mkdir_open(cur, comp, &next)) < 0)
            goto out;
        close(cur);
        cur = next;
        p = slash + 1;
    }
    *leaf = p;
    *dfd = cur;
    cur = -1;
out:
    if (cur >= 0)
        close(cur);
    return rv;
}

/* Replaces |name| in |dfd| atomically with |len| bytes, durably. */
/* write_atomic with the temporary file made in |tmpfd| (on the same file
 * system as |dfd|): refs/ must never hold a name of ours, not even after
 * a crash (huggingface_hub reads every file there as a ref, K9), while
 * .shoal/ is swept at open. */
static int write_atomic_via(int tmpfd, int dfd, const char *name, const uint8_t *data,
                            size_t len)
{
    char tmp[NAME_MAX + 1];
    int fd = -1;
    int rv;

    snprintf(tmp, sizeof tmp, ".shoal-tmp-%d-%u", (int)getpid(),
             atomic_fetch_add(&tmp_counter, 1));
    fd = openat(tmpfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd < 0) {
        rv = errno_rv(errno);
        goto out;
    }
    if ((rv = write_all(fd, data, len)) < 0)
        goto out;
    if (fsync(fd) < 0) {
        rv = errno_rv(errno);
        goto out;
    }
    if (renameat(tmpfd, tmp, dfd, name) < 0) {
        rv = errno_rv(errno);
        goto out;
    }
    fsync(dfd);
    rv = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rv < 0)
        unlinkat(tmpfd, tmp, 0);
    return rv;
}

static int write_atomic(int dfd, const char *name, const uint8_t *data, size_t len)
{
    return write_atomic_via(dfd, dfd, name, data, len);
}

/* sha256 of the first |size| bytes of |fd|. */
static int hash_fd(int fd, uint64_t size, uint8_t out[SHOAL_HASH_LEN])
{
    struct shoal_sha256 sh;
    uint8_t *buf;
    uint64_t off = 0;
    int rv = 0;

    buf = malloc(HASH_BUF);
    if (!buf)
        return -ENOMEM;
    shoal_sha256_init(&sh);
    while (off < size) {
        size_t n = size - off < HASH_BUF ? (size_t)(size - off) : HASH_BUF;
        if ((rv = pread_all(fd, buf, n, off)) < 0)
            goto out;
        shoal_sha256_update(&sh, buf, n);
        off += n;
    }
    shoal_sha256_final(&sh, out);
out:
    free(buf);
    return rv;
}

/* ---- records of the blobs shoald verified ---- */

/*
 * A published blob, blobs/<name>, may be one shoald never hashed:
 * huggingface_hub (which does not hash what it downloads), a copy by hand,
 * a gateway that served wrong bytes of the right length. Hashing every
 * blob at every open would make each restart (and each release that
 * shares a blob with another) read the whole cache. So shoald keeps, for
 * each blob whose whole sha256 it has checked, a record in
 * .shoal/verified/<name>: the sha256 it matched and what identifies that
 * file's state (inode, size, mtime and ctime in ns). A blob is trusted
 * unhashed only while its file still matches its record; ctime moves on
 * any write, truncate, chmod or rename, and cannot be set back by a user,
 * so a file changed or replaced in any way is hashed once more. A record is
 * written only after the bytes were hashed right and made durable (fsync
 * before the rename that published them), and replaces its name atomically
 * (write_atomic): a crash leaves either no record (the blob is hashed at the
 * next open) or one for the very inode that was verified. Disk rot does not
 * move ctime; it is what --verify-store, the sidecar's recheck mark and the
 * check of the chunks served to peers are for, and a blob found bad loses
 * its record (vrec_forget).
 */
#define VREC_MAGIC "SHOALVB\1"
#define VREC_LEN (8 + 4 * 8 + SHOAL_HASH_LEN)

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t ts_ns(const struct timespec *t)
{
    return (uint64_t)t->tv_sec * 1000000000u + (uint64_t)t->tv_nsec;
}

/* The record of |pf|'s blob, as it would be for a file in state |st|. */
static void vrec_image(uint8_t out[VREC_LEN], const struct shoal_mf_file *pf,
                       const struct stat *st)
{
    memcpy(out, VREC_MAGIC, 8);
    put_le64(out + 8, (uint64_t)st->st_ino);
    put_le64(out + 16, (uint64_t)st->st_size);
    put_le64(out + 24, ts_ns(&st->st_mtim));
    put_le64(out + 32, ts_ns(&st->st_ctim));
    memcpy(out + 40, pf->sha256, SHOAL_HASH_LEN);
}

/* Whether |pf|'s record vouches for a blob file in state |st| (it matches
 * it exactly). */
static bool vrec_matches(const struct shoal_store *s, const struct shoal_mf_file *pf,
                         const struct stat *st)
{
    uint8_t want[VREC_LEN], got[VREC_LEN + 1];
    char name[SHOAL_HF_ETAG_MAX];
    ssize_t n;
    int rfd;

    if (s->vrec_fd < 0)
        return false;
    shoal_hf_etag(name, pf);
    rfd = openat(s->vrec_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (rfd < 0)
        return false;
    do
        n = pread(rfd, got, sizeof got, 0);
    while (n < 0 && errno == EINTR);
    close(rfd);
    vrec_image(want, pf, st);
    return n == VREC_LEN && memcmp(got, want, VREC_LEN) == 0;
}

/* Whether the published blob of |pf|, open as |fd|, is one shoald verified
 * and nothing changed since (its record matches it exactly). */
static bool vrec_vouches(const struct shoal_store *s, const struct shoal_mf_file *pf, int fd)
{
    struct stat st;

    return fstat(fd, &st) == 0 && vrec_matches(s, pf, &st);
}

/* Records that the published blob of |pf|, open as |fd|, was just verified
 * (its whole sha256 matched, its bytes durable). Best effort: without a
 * record the blob is only hashed again at the next open. */
static void vrec_write(struct shoal_store *s, const struct shoal_mf_file *pf, int fd)
{
    uint8_t img[VREC_LEN];
    char name[SHOAL_HF_ETAG_MAX];
    struct stat st;

    if (s->vrec_fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return;
    shoal_hf_etag(name, pf);
    vrec_image(img, pf, &st);
    (void)write_atomic(s->vrec_fd, name, img, sizeof img);
}

/* Whether |now| is the file |before| was, its bytes unchanged since: the
 * same inode, size and mtime (its ctime and link count may have moved). */
static bool same_file_state(const struct stat *now, const struct stat *before)
{
    return now->st_ino == before->st_ino && now->st_dev == before->st_dev &&
           now->st_size == before->st_size && now->st_mtim.tv_sec == before->st_mtim.tv_sec &&
           now->st_mtim.tv_nsec == before->st_mtim.tv_nsec;
}

/* vrec_write for a file found in the cache and hashed since |before| was
 * taken: only when it did not change meanwhile (same_file_state), so a
 * write into it while it was hashed leaves no record that vouches for
 * bytes nobody hashed; then it is hashed again next time. */
static void vrec_write_hashed(struct shoal_store *s, const struct shoal_mf_file *pf, int fd,
                              const struct stat *before)
{
    struct stat now;

    if (fstat(fd, &now) != 0 || !same_file_state(&now, before))
        return;
    vrec_write(s, pf, fd);
}

/* A second name of the blob of |f| (same inode: an adopted gateway blob,
 * a snapshot entry that was a copy) is about to go, which moves the
 * inode's ctime: whether its record vouches for blobs/<etag> as it is
 * now, with its state in |before|. Then vrec_after. */
static bool vrec_before(struct shoal_store *s, const struct shoal_mf_file *f,
                        const struct stat *other, struct stat *before)
{
    char etag[SHOAL_HF_ETAG_MAX];

    shoal_hf_etag(etag, f);
    return s->vrec_fd >= 0 && fstatat(s->blobs_fd, etag, before, AT_SYMLINK_NOFOLLOW) == 0 &&
           before->st_ino == other->st_ino && before->st_dev == other->st_dev &&
           vrec_matches(s, f, before);
}

/* The other name went: the record follows the name that stays, but only
 * for the inode it vouched for, unchanged but for its link count (same
 * size and mtime: after a write meanwhile the old record, which no longer
 * matches, stays, and the blob is hashed at the next open). */
static void vrec_after(struct shoal_store *s, const struct shoal_mf_file *f,
                       const struct stat *before)
{
    uint8_t img[VREC_LEN];
    char etag[SHOAL_HF_ETAG_MAX];
    struct stat now;

    shoal_hf_etag(etag, f);
    if (fstatat(s->blobs_fd, etag, &now, AT_SYMLINK_NOFOLLOW) != 0 ||
        !same_file_state(&now, before))
        return;
    vrec_image(img, f, &now);
    (void)write_atomic(s->vrec_fd, etag, img, sizeof img);
}

/* The blob of |pf| was found wrong: its record (if any) vouches for it no
 * more, for this release or any other sharing it. Durable at once: a
 * restart must not trust it again. */
static void vrec_forget(struct shoal_store *s, const struct shoal_mf_file *pf)
{
    char name[SHOAL_HF_ETAG_MAX];

    if (s->vrec_fd < 0)
        return;
    shoal_hf_etag(name, pf);
    if (unlinkat(s->vrec_fd, name, 0) == 0)
        fsync(s->vrec_fd);
}

/* Reserves |size| bytes for a blob, so a full disk shows up now and not
 * halfway through a download. */
static int preallocate(int fd, uint64_t size)
{
    int e;

    if (size == 0)
        return 0;
    e = posix_fallocate(fd, 0, (off_t)size);
    if (e == EOPNOTSUPP || e == EINVAL) {
        /* Filesystems without fallocate: a sparse file still works. */
        if (ftruncate(fd, (off_t)size) < 0)
            return errno_rv(errno);
        return 0;
    }
    return e ? errno_rv(e) : 0;
}

/* ---- grouping chunks by id, files by sha256 ---- */

static int cmp_chunk_id(const void *a, const void *b, void *arg)
{
    const struct shoal_store *s = arg;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    int c = memcmp(chunk(s, x)->id, chunk(s, y)->id, SHOAL_HASH_LEN);

    return c ? c : (x > y) - (x < y);
}

/* Files with one blob: the same sha256 and the same blob name. Bytes kept
 * both in LFS and in git have two names (huggingface_hub keeps two blobs
 * then), so they are two blobs here too, filled by the same puts. */
static int cmp_blob_key(const struct shoal_mf_file *x, const struct shoal_mf_file *y)
{
    int c = memcmp(x->sha256, y->sha256, SHOAL_HASH_LEN);

    if (c == 0)
        c = (int)x->has_blob_id - (int)y->has_blob_id;
    if (c == 0 && x->has_blob_id)
        c = memcmp(x->blob_id, y->blob_id, sizeof x->blob_id);
    return c;
}

static int cmp_file_sha(const void *a, const void *b, void *arg)
{
    const struct shoal_store *s = arg;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    int c = cmp_blob_key(file(s, x), file(s, y));

    return c ? c : (x > y) - (x < y);
}

/* Number of chunk indices sharing the id of the group starting at |g|. */
static uint32_t group_len(const struct shoal_store *s, uint32_t g)
{
    const uint8_t *id = chunk(s, s->order[g])->id;
    uint32_t k = g + 1;

    while (k < s->nchunks && memcmp(chunk(s, s->order[k])->id, id, SHOAL_HASH_LEN) == 0)
        k++;
    return k - g;
}

static bool same_chunks(const struct shoal_store *s, uint32_t fa, uint32_t fb)
{
    const struct shoal_mf_file *a = file(s, fa), *b = file(s, fb);
    uint32_t i;

    if (a->size != b->size || a->nchunks != b->nchunks)
        return false;
    for (i = 0; i < a->nchunks; i++) {
        const struct shoal_mf_chunk *x = chunk(s, a->first_chunk + i);
        const struct shoal_mf_chunk *y = chunk(s, b->first_chunk + i);
        if (x->len != y->len || memcmp(x->id, y->id, SHOAL_HASH_LEN) != 0)
            return false;
    }
    return true;
}

static int build_index(struct shoal_store *s)
{
    uint32_t *byfile;
    uint32_t i, k;
    int rv = -ENOMEM;

    s->file_blob = calloc(s->nfiles ? s->nfiles : 1, sizeof *s->file_blob);
    s->blobs = calloc(s->nfiles ? s->nfiles : 1, sizeof *s->blobs);
    s->order = calloc(s->nchunks ? s->nchunks : 1, sizeof *s->order);
    s->group = calloc(s->nchunks ? s->nchunks : 1, sizeof *s->group);
    byfile = s->blob_files = calloc(s->nfiles ? s->nfiles : 1, sizeof *byfile);
    if (!s->file_blob || !s->blobs || !s->order || !s->group || !byfile)
        goto out;

    for (i = 0; i < s->nfiles; i++)
        byfile[i] = i;
    qsort_r(byfile, s->nfiles, sizeof *byfile, cmp_file_sha, s);
    s->nblobs = 0;
    for (i = 0; i < s->nfiles; i++) {
        uint32_t f = byfile[i];
        if (i > 0 && cmp_blob_key(file(s, f), file(s, byfile[i - 1])) == 0) {
            uint32_t b = s->nblobs - 1;
            if (!same_chunks(s, s->blobs[b].primary, f)) {
                rv = SHOAL_EBADMSG;
                set_err(s, "manifest lists %s and %s with one sha256 but different chunks",
                        file(s, s->blobs[b].primary)->path, file(s, f)->path);
                goto out;
            }
            s->file_blob[f] = b;
            s->blobs[b].fcount++;
            continue;
        }
        s->blobs[s->nblobs].primary = f;
        s->blobs[s->nblobs].fpos = i;
        s->blobs[s->nblobs].fcount = 1;
        s->blobs[s->nblobs].fd = -1;
        pthread_mutex_init(&s->blobs[s->nblobs].write_mu, NULL);
        s->file_blob[f] = s->nblobs++;
    }

    s->max_len = 0;
    for (i = 0; i < s->nchunks; i++) {
        s->order[i] = i;
        if (chunk(s, i)->len > s->max_len)
            s->max_len = chunk(s, i)->len;
    }
    qsort_r(s->order, s->nchunks, sizeof *s->order, cmp_chunk_id, s);
    for (i = 0; i < s->nchunks; i = k) {
        k = i + group_len(s, i);
        for (uint32_t j = i; j < k; j++)
            s->group[s->order[j]] = i;
    }
    rv = 0;
out:
    return rv;
}

/* Position in |order| of the group holding |id|, or -1. */
static int64_t find_group(const struct shoal_store *s, const uint8_t *id)
{
    uint32_t lo = 0, hi = s->nchunks;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (memcmp(chunk(s, s->order[mid])->id, id, SHOAL_HASH_LEN) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < s->nchunks && memcmp(chunk(s, s->order[lo])->id, id, SHOAL_HASH_LEN) == 0)
        return lo;
    return -1;
}

/* |path| ("blobs/<name>", from shoal_hf_blob_path) relative to blobs_fd:
 * a "blobs" replaced by a symlink after open is not followed (openat's
 * O_NOFOLLOW covers only the last component). */
static const char *in_blobs(const char *path)
{
    return path + sizeof "blobs/" - 1;
}

/* The same for a partial name (".shoal/<name>", from shoal_hf_partial_path)
 * relative to meta_fd. */
static const char *in_part(const char *path)
{
    return path + sizeof ".shoal/" - 1;
}

/* The partial file blob |b| fills: .shoal/<sha>.incomplete, shared with any
 * other release listing the same sha256, or .shoal/<sha>.<release id>.incomplete
 * when another store held the shared one's lock at open (see
 * open_blob_disk). Never blobs/<sha>.incomplete: that is huggingface_hub's
 * resumable download, which it would take over and publish unverified. */
static void blob_inc_path(const struct shoal_store *s, uint32_t b, char *out, size_t cap)
{
    shoal_hf_partial_path(out, cap, file(s, s->blobs[b].primary),
                          s->blobs[b].own_inc ? s->idhex : NULL);
}

/* This release's own partial name for blob |b|, whatever it fills now. */
static void own_inc_path(const struct shoal_store *s, uint32_t b, char *out, size_t cap)
{
    shoal_hf_partial_path(out, cap, file(s, s->blobs[b].primary), s->idhex);
}

/* ---- verified bits (callers hold mu) ---- */

static void mark(struct shoal_store *s, uint32_t i)
{
    if (bit_get(s->bits, i))
        return;
    bit_set(s->bits, i);
    s->count++;
    s->bytes += chunk(s, i)->len;
    s->sidecar_dirty = true;
}

static void unmark(struct shoal_store *s, uint32_t i)
{
    if (!bit_get(s->bits, i))
        return;
    bit_clear(s->bits, i);
    s->count--;
    s->bytes -= chunk(s, i)->len;
    s->sidecar_dirty = true;
}

/* Sets every file of blob |b| to the bits of its primary file and recounts
 * what the primary still needs. */
static void sync_blob_bits(struct shoal_store *s, uint32_t b)
{
    const struct shoal_mf_file *pf = file(s, s->blobs[b].primary);
    const struct blob *bl = &s->blobs[b];
    uint32_t k, i, rem = 0;

    for (i = 0; i < pf->nchunks; i++)
        rem += !bit_get(s->bits, pf->first_chunk + i);
    s->blobs[b].remaining = rem;
    for (k = 0; k < bl->fcount; k++) {
        uint32_t f = s->blob_files[bl->fpos + k];
        const struct shoal_mf_file *ff = file(s, f);
        if (f == bl->primary)
            continue;
        for (i = 0; i < ff->nchunks; i++) {
            if (bit_get(s->bits, pf->first_chunk + i))
                mark(s, ff->first_chunk + i);
            else
                unmark(s, ff->first_chunk + i);
        }
    }
}

static void blob_set_all(struct shoal_store *s, uint32_t b, bool on)
{
    const struct blob *bl = &s->blobs[b];
    uint32_t k, i;

    for (k = 0; k < bl->fcount; k++) {
        const struct shoal_mf_file *ff = file(s, s->blob_files[bl->fpos + k]);
        for (i = 0; i < ff->nchunks; i++) {
            if (on)
                mark(s, ff->first_chunk + i);
            else
                unmark(s, ff->first_chunk + i);
        }
    }
    s->blobs[b].remaining = on ? 0 : file(s, s->blobs[b].primary)->nchunks;
}

/* Withholds blob |b| as blocked (SHOAL_EBADPATH: the caller does not fetch
 * a blocked file) for the reason in s->err: none of its chunks counts as
 * had. Caller holds s->mu. */
static void blob_block(struct shoal_store *s, uint32_t b)
{
    blob_set_all(s, b, false);
    s->blobs[b].state = BLOB_INCOMPLETE;
    s->blobs[b].blocked = true;
    s->blobs[b].repair_rv = SHOAL_EBADPATH;
    free(s->blobs[b].repair_msg);
    s->blobs[b].repair_msg = strdup(s->err);
}

/* ---- sidecar ---- */

static size_t sidecar_size(const struct shoal_store *s)
{
    return SIDECAR_HDR + s->nbytes_bits + s->nbytes_files + SHOAL_HASH_LEN;
}

static void sidecar_name(const struct shoal_store *s, char *out, size_t cap)
{
    snprintf(out, cap, "%s.state", s->idhex);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Loads the sidecar into s->bits, and its suspect files into the blobs'
 * |recheck|, when it is intact and for this manifest; anything else leaves
 * the bits clear (the chunks are fetched again). */
static void sidecar_load(struct shoal_store *s)
{
    char name[NAME_MAX + 1];
    size_t want = sidecar_size(s), v1 = want - s->nbytes_files;
    uint8_t sum[SHOAL_HASH_LEN];
    uint8_t *buf = NULL;
    uint32_t version;
    ssize_t n;
    int fd;

    sidecar_name(s, name, sizeof name);
    fd = openat(s->meta_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        goto out;
    buf = malloc(want + 1);
    if (!buf)
        goto out;
    /* One byte more than expected, to notice a file that is too long. */
    n = pread(fd, buf, want + 1, 0);
    version = n >= 12 ? get_le32(buf + 8) : 0;
    if (version == 1)
        want = v1; /* written before files could be marked suspect */
    if (n != (ssize_t)want) {
        set_err(s, "sidecar %s/.shoal/%s: wrong size, discarded", s->repo_path, name);
        goto out;
    }
    shoal_chunk_id(sum, buf, want - SHOAL_HASH_LEN);
    if (memcmp(buf, SIDECAR_MAGIC, 8) != 0 || (version != 1 && version != SIDECAR_VERSION) ||
        get_le32(buf + 12) != s->nchunks ||
        memcmp(buf + 16, shoal_manifest_id(s->m), SHOAL_HASH_LEN) != 0 ||
        sodium_memcmp(sum, buf + want - SHOAL_HASH_LEN, SHOAL_HASH_LEN) != 0) {
        set_err(s, "sidecar %s/.shoal/%s: bad header or checksum, discarded",
                s->repo_path, name);
        goto out;
    }
    for (uint32_t i = 0; i < s->nchunks; i++)
        if (bit_get(buf + SIDECAR_HDR, i))
            mark(s, i);
    if (version == 1)
        goto out;
    memcpy(s->disk_bad, buf + SIDECAR_HDR + s->nbytes_bits, s->nbytes_files);
    for (uint32_t f = 0; f < s->nfiles; f++)
        if (bit_get(s->disk_bad, f))
            s->blobs[s->file_blob[f]].recheck = true;
out:
    free(buf);
    if (fd >= 0)
        close(fd);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int shoal_store_flush(struct shoal_store *s)
{
    char name[NAME_MAX + 1];
    uint8_t *img = NULL;
    size_t nfds = 0, i, size;
    int rv = 0;

    if (!s || (s->flags & SHOAL_STORE_MEMORY))
        return 0;
    pthread_mutex_lock(&s->flush_mu);
    pthread_mutex_lock(&s->mu);
    /* A blob found bad (or cleared) changes the sidecar too: a restart
     * must hash a file whose repair has not happened yet. */
    memset(s->flush_bad, 0, s->nbytes_files);
    for (uint32_t f = 0; f < s->nfiles; f++)
        if (s->blobs[s->file_blob[f]].bad)
            bit_set(s->flush_bad, f);
    if (!s->sidecar_dirty && memcmp(s->flush_bad, s->disk_bad, s->nbytes_files) == 0) {
        pthread_mutex_unlock(&s->mu);
        goto out;
    }
    memcpy(s->flush_bits, s->bits, s->nbytes_bits);
    for (i = 0; i < s->nblobs; i++) {
        if (s->blobs[i].dirty && s->blobs[i].fd >= 0) {
            s->flush_fds[nfds++] = s->blobs[i].fd;
            s->blobs[i].dirty = false;
        }
    }
    s->sidecar_dirty = false;
    s->since_flush = 0;
    s->flushed_ms = mono_ms();
    s->flush_gap = s->flush_gap ? s->flush_gap * 2 : s->flush_ms / FLUSH_RAMP;
    if (s->flush_gap > s->flush_ms || s->flush_gap == 0)
        s->flush_gap = s->flush_ms;
    pthread_mutex_unlock(&s->mu);

    /* Data first: a bit on disk must never cover bytes that are not. */
    for (i = 0; i < nfds; i++) {
        if (fdatasync(s->flush_fds[i]) < 0) {
            rv = errno_rv(errno);
            set_err(s, "fdatasync of a blob in %s/blobs: %s", s->repo_path,
                    shoal_strerror(rv));
            goto requeue;
        }
    }
    size = sidecar_size(s);
    img = malloc(size);
    if (!img) {
        rv = -ENOMEM;
        goto requeue;
    }
    memcpy(img, SIDECAR_MAGIC, 8);
    put_le32(img + 8, SIDECAR_VERSION);
    put_le32(img + 12, s->nchunks);
    memcpy(img + 16, shoal_manifest_id(s->m), SHOAL_HASH_LEN);
    memcpy(img + SIDECAR_HDR, s->flush_bits, s->nbytes_bits);
    memcpy(img + SIDECAR_HDR + s->nbytes_bits, s->flush_bad, s->nbytes_files);
    shoal_chunk_id(img + size - SHOAL_HASH_LEN, img, size - SHOAL_HASH_LEN);
    sidecar_name(s, name, sizeof name);
    if ((rv = write_atomic(s->meta_fd, name, img, size)) < 0) {
        set_err(s, "writing sidecar %s/.shoal/%s: %s", s->repo_path, name,
                shoal_strerror(rv));
        goto requeue;
    }
    memcpy(s->disk_bad, s->flush_bad, s->nbytes_files);
    goto out;
requeue:
    /* Try again next time; blobs are all re-synced then. */
    pthread_mutex_lock(&s->mu);
    s->sidecar_dirty = true;
    for (i = 0; i < s->nblobs; i++)
        if (s->blobs[i].fd >= 0 && s->blobs[i].state == BLOB_INCOMPLETE)
            s->blobs[i].dirty = true;
    pthread_mutex_unlock(&s->mu);
out:
    pthread_mutex_unlock(&s->flush_mu);
    free(img);
    return rv;
}

/* ---- publishing ---- */

static int open_snap_dir(struct shoal_store *s, int *fd)
{
    int snaps = -1;
    int rv = 0;

    pthread_mutex_lock(&s->link_mu);
    if (s->snap_fd < 0) {
        if ((rv = mkdir_open(s->repo_fd, "snapshots", &snaps)) < 0 ||
            (rv = mkdir_open(snaps, shoal_manifest_commit(s->m), &s->snap_fd)) < 0)
            goto out;
    }
    *fd = s->snap_fd;
out:
    pthread_mutex_unlock(&s->link_mu);
    if (snaps >= 0)
        close(snaps);
    return rv;
}

/* Whether a snapshot entry under directory |dfd| (|depth| levels down at
 * most) links to a blob named |name|. True when a directory cannot be
 * read: then nobody can say it is unused. */
static bool snaps_link_to(int dfd, const char *name, int depth)
{
    char got[SHOAL_HF_PATH_MAX];
    int fd = dup(dfd);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;
    bool found = false;

    if (!dir) {
        if (fd >= 0)
            close(fd);
        return true;
    }
    while (!found && (e = readdir(dir))) {
        const char *base;
        ssize_t n;
        int sub;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        n = readlinkat(dfd, e->d_name, got, sizeof got - 1);
        if (n > 0) {
            got[n] = '\0';
            base = strrchr(got, '/');
            found = strcmp(base ? base + 1 : got, name) == 0;
            continue;
        }
        if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN)
            continue;
        sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0) {
            found = depth <= 0 || snaps_link_to(sub, name, depth - 1);
            close(sub);
        }
    }
    closedir(dir);
    return found;
}

static int hf_lock(struct shoal_store *s, const char *etag, bool wait, int *out);

/* The name in blobs/ that the snapshot link target |got| names when it is
 * not ours (|want|, from shoal_hf_link_target) but the same way up
 * ("../../blobs/") and then a plain name: not hidden, no '/'. NULL
 * otherwise. */
static const char *link_other_blob(const char *got, const char *want)
{
    size_t pre = (size_t)(strrchr(want, '/') - want) + 1;
    const char *name;

    if (strlen(got) <= pre || strncmp(got, want, pre) != 0)
        return NULL;
    name = got + pre;
    if (strchr(name, '/') || name[0] == '.' || strcmp(name, want + pre) == 0)
        return NULL;
    return name;
}

/* link_file replaced snapshot entry |f| that linked to |old|. When that
 * was a blob of this repo under another name (huggingface_hub's download
 * through a gateway with ETags of its own), the blob is removed if no
 * snapshot links to it any more: huggingface-cli scan-cache and
 * delete-cache see only the blobs snapshots link to, and would never free
 * it. Not while huggingface_hub holds its lock on that name (between its
 * rename into blobs/ and its link). Best effort. */
static void drop_orphan(struct shoal_store *s, const struct shoal_mf_file *f, const char *old)
{
    char want[SHOAL_HF_PATH_MAX];
    const char *name;
    struct stat st, ours;
    bool mine;
    int snaps, lock = -1;

    if (shoal_hf_link_target(want, sizeof want, f) < 0 || !(name = link_other_blob(old, want)) ||
        strlen(name) >= SHOAL_HF_ETAG_MAX ||
        fstatat(s->blobs_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
        return;
    if (hf_lock(s, name, false, &lock) == SHOAL_EBUSY)
        return;
    /* The old name may be another link to our own blob's inode (adopted
     * by adopt_linked): removing it moves that inode's ctime, so a record
     * vouching for the blob as it is now must follow, or the next open
     * would hash the whole file again. */
    mine = vrec_before(s, f, &st, &ours);
    snaps = openat(s->repo_fd, "snapshots", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    /* A commit, then a path of up to 64 folders. */
    if (snaps >= 0 && !snaps_link_to(snaps, name, 65) && unlinkat(s->blobs_fd, name, 0) == 0) {
        fsync(s->blobs_fd);
        if (s->vrec_fd >= 0)
            (void)unlinkat(s->vrec_fd, name, 0);
        if (mine)
            vrec_after(s, f, &ours);
    }
    if (snaps >= 0)
        close(snaps);
    if (lock >= 0)
        close(lock);
}

/* Makes snapshots/<commit>/<path> a symlink to the blob: created under a
 * temporary name and renamed over, so the entry never points anywhere
 * else halfway. An existing correct link is left alone; a link to another
 * blob name is replaced, and that blob removed when nothing links to it
 * (drop_orphan). */
static int link_file(struct shoal_store *s, uint32_t fi)
{
    const struct shoal_mf_file *f = file(s, fi);
    char target[SHOAL_HF_PATH_MAX], got[SHOAL_HF_PATH_MAX];
    char tmp[NAME_MAX + 1];
    const char *leaf;
    struct stat st, before;
    bool mine;
    int snap, dfd = -1;
    ssize_t n;
    int rv;

    if ((rv = open_snap_dir(s, &snap)) < 0 ||
        (rv = shoal_hf_link_target(target, sizeof target, f)) < 0 ||
        (rv = walk_dirs(snap, f->path, &dfd, &leaf)) < 0)
        goto out;
    n = readlinkat(dfd, leaf, got, sizeof got - 1);
    if (n >= 0) {
        got[n] = '\0';
        if (strcmp(got, target) == 0)
            goto out;
    }
    /* A regular file there may be the blob itself (adopt_linked took a
     * copy huggingface_hub left there as blobs/<etag>): replacing it moves
     * the inode's ctime, and the record follows. */
    mine = n < 0 && fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
           vrec_before(s, f, &st, &before);
    snprintf(tmp, sizeof tmp, ".shoal-tmp-%d-%u", (int)getpid(),
             atomic_fetch_add(&tmp_counter, 1));
    if (symlinkat(target, dfd, tmp) < 0) {
        rv = errno_rv(errno);
        goto out;
    }
    if (renameat(dfd, tmp, dfd, leaf) < 0) {
        rv = errno == EISDIR || errno == ENOTEMPTY ? SHOAL_EBADPATH : errno_rv(errno);
        unlinkat(dfd, tmp, 0);
        goto out;
    }
    fsync(dfd);
    if (mine)
        vrec_after(s, f, &before);
    if (n > 0)
        drop_orphan(s, f, got);
out:
    if (rv < 0)
        set_err(s, "linking %s/snapshots/%s/%s: %s", s->repo_path,
                shoal_manifest_commit(s->m), f->path, shoal_strerror(rv));
    if (dfd >= 0)
        close(dfd);
    return rv;
}

/* Longest branch or tag name a store keeps. */
#define BRANCH_MAX 255

/* Writes refs/<|branch|> (NULL: nothing to do) with our commit; the
 * snapshot is checked whole first unless |checked| (the caller just did). */
static int write_ref(struct shoal_store *s, const char *branch, bool checked)
{
    const char *commit = shoal_manifest_commit(s->m);
    const char *leaf;
    int refs = -1, dfd = -1;
    int rv;

    if (!branch || (s->flags & SHOAL_STORE_MEMORY))
        return 0;
    /* Never a ref to a snapshot that is not there: huggingface_hub's
     * scan-cache calls such a repo corrupted, and readers find nothing.
     * (Its files deleted while the release was open: the store still
     * holds them, and says complete.) */
    if (!checked && (rv = shoal_hf_snapshot_check(s->cache_dir, s->m, NULL)) != 0) {
        set_err(s, "not writing %s/refs/%s: snapshots/%s is not whole in the cache (%s)",
                s->repo_path, branch, commit, shoal_strerror(rv));
        return rv;
    }
    if ((rv = mkdir_open(s->repo_fd, "refs", &refs)) >= 0 &&
        (rv = walk_dirs(refs, branch, &dfd, &leaf)) >= 0) {
        rv = write_atomic_via(s->meta_fd, dfd, leaf, (const uint8_t *)commit, strlen(commit));
        if (rv == -EXDEV) /* .shoal/ on another file system */
            rv = write_atomic(dfd, leaf, (const uint8_t *)commit, strlen(commit));
    }
    if (rv < 0)
        set_err(s, "writing %s/refs/%s: %s", s->repo_path, branch, shoal_strerror(rv));
    if (dfd >= 0)
        close(dfd);
    if (refs >= 0)
        close(refs);
    return rv;
}

/* write_ref for a release whose last file was just published: until the
 * ref is there the release is not complete (shoal_store_complete), so the
 * pull does not say complete while huggingface_hub cannot find it by
 * branch, and shoal_store_retry_publish tries again. A full disk at that
 * moment left no ref and said nothing (the pull exited 0). */
static int write_ref_owed(struct shoal_store *s, const char *branch)
{
    int rv = write_ref(s, branch, false);

    pthread_mutex_lock(&s->mu);
    s->ref_owed = rv != 0;
    pthread_mutex_unlock(&s->mu);
    return rv;
}

/* write_ref_owed of the branch named last, when every file is done (and,
 * with |only_owed|, only when a ref is owed). Returns 1 when nothing was
 * due, else write_ref_owed's result. */
static bool all_done_locked(const struct shoal_store *s);

static int write_ref_if_done(struct shoal_store *s, bool only_owed)
{
    char branch[BRANCH_MAX + 1] = "";
    bool due;

    pthread_mutex_lock(&s->mu);
    due = all_done_locked(s) && (!only_owed || s->ref_owed);
    if (due && s->branch)
        snprintf(branch, sizeof branch, "%s", s->branch);
    pthread_mutex_unlock(&s->mu);
    return due ? write_ref_owed(s, branch[0] ? branch : NULL) : 1;
}

/* 0 when blobs/<sha> (|fin|) holds |pf|'s bytes; SHOAL_EBADHASH (with
 * the error text set) or the read error otherwise. */
static int blob_name_matches(struct shoal_store *s, const char *fin,
                             const struct shoal_mf_file *pf)
{
    uint8_t sha[SHOAL_HASH_LEN];
    int fd = openat(s->blobs_fd, in_blobs(fin), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    int rv;

    if (fd < 0) {
        rv = errno_rv(errno);
        set_err(s, "opening %s/%s: %s", s->repo_path, fin, shoal_strerror(rv));
        return rv;
    }
    rv = hash_fd(fd, pf->size, sha);
    close(fd);
    if (rv < 0) {
        set_err(s, "reading %s/%s: %s", s->repo_path, fin, shoal_strerror(rv));
        return rv;
    }
    if (memcmp(sha, pf->sha256, SHOAL_HASH_LEN) != 0) {
        set_err(s, "%s: its partial file was removed before it could replace %s/%s, which "
                "does not match its sha256: restart shoald with --verify-store to fetch it "
                "again", pf->path, s->repo_path, fin);
        return SHOAL_EBADHASH;
    }
    return 0;
}

static int publish_blob(struct shoal_store *s, uint32_t b)
{
    const struct shoal_mf_file *pf = file(s, s->blobs[b].primary);
    char inc[128], fin[128], etag[SHOAL_HF_ETAG_MAX];
    struct stat st;
    uint32_t f;
    int rv = 0, e, lock = -1;

    if (s->flags & SHOAL_STORE_MEMORY) {
        /* The loader maps these pages: make them immutable. */
        if (fcntl(s->blobs[b].fd, F_ADD_SEALS,
                  F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
            rv = -errno;
            set_err(s, "sealing the memfd of %s: %s", pf->path, shoal_strerror(rv));
        }
        goto out;
    }
    blob_inc_path(s, b, inc, sizeof inc);
    shoal_hf_blob_path(fin, sizeof fin, pf, false);
    /* Durable before it gets its final name: after a crash a blob under
     * blobs/<sha> must hold the verified bytes, not zeros. */
    if (fsync(s->blobs[b].fd) < 0) {
        rv = errno_rv(errno);
        set_err(s, "fsync of %s/%s (%s): %s", s->repo_path, inc, pf->path,
                shoal_strerror(rv));
        goto out;
    }
    /* huggingface_hub checks for blobs/<etag> and renames its own download
     * there under its lock: taken around ours, the two never cross. While
     * it downloads this very file the publish waits (tried again later,
     * shoal_store_retry_publish); a cache where the lock cannot be made
     * (read-only .locks) is published without it. */
    shoal_hf_etag(etag, pf);
    if (hf_lock(s, etag, true, &lock) == SHOAL_EBUSY) {
        rv = SHOAL_EBUSY;
        set_err(s, "%s: another process (huggingface_hub) holds %s/.locks/%s/%s.lock, "
                "downloading the same file: published once it lets go", pf->path, s->cache_dir,
                strrchr(s->repo_path, '/') + 1, etag);
        goto out;
    }
    if (renameat(s->meta_fd, in_part(inc), s->blobs_fd, in_blobs(fin)) < 0) {
        e = errno;
        /* Another release with this blob may have published it first. */
        if (!(e == ENOENT && fstatat(s->blobs_fd, in_blobs(fin), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
              S_ISREG(st.st_mode) && (uint64_t)st.st_size == pf->size)) {
            rv = errno_rv(e);
            set_err(s, "renaming %s/%s: %s", s->repo_path, inc, shoal_strerror(rv));
            goto out;
        }
        /* Or our partial file was removed (by hand, say) while the name
         * holds the very bytes a repair replaces: link only a blob that
         * hashes right. Rare (two releases finishing one blob at once),
         * so the whole-file hash is affordable. */
        if ((rv = blob_name_matches(s, fin, pf)) < 0)
            goto out;
    } else {
        /* Ours from now on never change (chunks are served from it
         * unhashed): read-only, so that a tool writing through the snapshot
         * link as a user other than root fails instead of corrupting it.
         * Only the mode: the store writes no published blob (a repair
         * fills a copy and renames it over, see repair_copy), and removing it from the
         * cache needs write permission on the directory, not on the file.
         * Best effort: a cache on a filesystem without modes still works.
         * Others get nothing (the folder shuts them out too): only
         * shoald's user and the loader group may read the models. */
        (void)fchmod(s->blobs[b].fd, 0440);
        /* Its sha256 matched (finish_blob) and its bytes are durable (the
         * fsync above): after the rename and the chmod, which move ctime,
         * so the record is of the file as it stays. */
        vrec_write(s, pf, s->blobs[b].fd);
    }
    fsync(s->blobs_fd);
    for (f = 0; f < s->blobs[b].fcount && rv == 0; f++)
        rv = link_file(s, s->blob_files[s->blobs[b].fpos + f]);
out:
    if (lock >= 0)
        close(lock);
    return rv;
}

static void notify(struct shoal_store *s, uint32_t b, int status)
{
    const struct blob *bl = &s->blobs[b];
    uint32_t k;

    if (s->opening || !s->on_file)
        return;
    for (k = 0; k < bl->fcount; k++)
        s->on_file(s->user, s->blob_files[bl->fpos + k], status);
}

/* Marks blob |b| ready and says so: its bytes are verified and final. */
static void set_ready(struct shoal_store *s, uint32_t b)
{
    const struct blob *bl = &s->blobs[b];
    uint32_t k;

    bool was;

    pthread_mutex_lock(&s->mu);
    was = s->blobs[b].ready && !s->blobs[b].bad;
    s->blobs[b].ready = true;
    /* Its whole sha256 matched just now: whatever was found wrong with it
     * before has been fetched again. */
    s->blobs[b].bad = false;
    pthread_mutex_unlock(&s->mu);
    /* Once: a publish tried again (shoal_store_retry_publish) passes here
     * a second time, and loaders already have the file. */
    if (was || s->opening || !s->on_ready)
        return;
    for (k = 0; k < bl->fcount; k++)
        s->on_ready(s->user, s->blob_files[bl->fpos + k], 0);
}

static bool all_done_locked(const struct shoal_store *s)
{
    return s->ndone == s->nblobs;
}

/* The only way into BLOB_DONE. It is left only by shoal_store_take_back,
 * for chunks found changed on disk, and then reached again through
 * finish_blob once the file matches its sha256. */
static void set_done_locked(struct shoal_store *s, uint32_t b)
{
    if (s->blobs[b].state != BLOB_DONE)
        s->ndone++;
    s->blobs[b].state = BLOB_DONE;
    s->blobs[b].ready = true;
}

/* ---- running sha256 ---- */

/* A read-back buffer of max_len bytes: a kept one, else a new one. Called
 * without mu. NULL when out of memory. */
static uint8_t *spare_get(struct shoal_store *s)
{
    uint8_t *b = NULL;

    pthread_mutex_lock(&s->mu);
    if (s->nspare > 0)
        b = s->spare[--s->nspare];
    pthread_mutex_unlock(&s->mu);
    return b ? b : malloc(s->max_len ? s->max_len : 1);
}

/* Keeps |b| (from spare_get, may be NULL) for the next run, or frees it. */
static void spare_put(struct shoal_store *s, uint8_t *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&s->mu);
    if (s->nspare < SPARE_BUFS) {
        s->spare[s->nspare++] = b;
        b = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    free(b);
}

/*
 * Owner of blob |b|'s running hash (|bl->hashing| set by the caller under
 * mu): feeds primary chunks from |bl->hashed| on: to the file's end when
 * |to_end|, else while the blob is filling and the next chunk is verified. The chunk whose group is that of |idx| comes from
 * |data| (NULL: none in hand); others are read back from the blob into
 * |*buf| (spare_get on first need; the caller hands it to spare_put). Called and
 * returns with mu held; drops it around the hashing. Returns 0 or the read
 * error (the prefix hashed so far stays valid).
 */
static int hash_run(struct shoal_store *s, uint32_t b, uint32_t idx, const uint8_t *data,
                    uint8_t **buf, bool to_end)
{
    struct blob *bl = &s->blobs[b];
    const struct shoal_mf_file *pf = file(s, bl->primary);
    int rv = 0;

    while (bl->hashed < pf->nchunks) {
        uint32_t next = pf->first_chunk + bl->hashed;
        const struct shoal_mf_chunk *c = chunk(s, next);
        const uint8_t *p = data;

        if (!to_end && (bl->state != BLOB_INCOMPLETE || !bit_get(s->bits, next)))
            break;
        pthread_mutex_unlock(&s->mu);
        if (bl->hashed == 0)
            shoal_sha256_init(&bl->sha);
        if (!data || s->group[next] != s->group[idx]) {
            if (!*buf && !(*buf = spare_get(s)))
                rv = -ENOMEM;
            else
                rv = pread_all(bl->fd, *buf, c->len, c->offset);
            p = *buf;
        }
        if (rv == 0)
            shoal_sha256_update(&bl->sha, p, c->len);
        pthread_mutex_lock(&s->mu);
        if (rv < 0)
            break;
        bl->hashed++;
    }
    return rv;
}

/* Advances blob |b|'s running sha256 over its verified prefix, unless
 * another thread is at it or the blob is no longer filling. |idx|/|data|:
 * the chunk just put. Best effort: a failed read back leaves the work to
 * finish_blob. */
static void hash_advance(struct shoal_store *s, uint32_t b, uint32_t idx, const uint8_t *data)
{
    struct blob *bl = &s->blobs[b];
    uint8_t *buf = NULL;

    pthread_mutex_lock(&s->mu);
    if (!bl->hashing && bl->state == BLOB_INCOMPLETE) {
        bl->hashing = true;
        (void)hash_run(s, b, idx, data, &buf, false);
        bl->hashing = false;
        pthread_cond_broadcast(&s->hash_cv);
    }
    pthread_mutex_unlock(&s->mu);
    spare_put(s, buf);
}

/* The whole-file sha256 of blob |b| (all chunks verified, state
 * COMPLETING): completes the running hash, reading back what it lacks. */
static int hash_finish(struct shoal_store *s, uint32_t b, uint32_t idx, const uint8_t *data,
                       uint8_t out[SHOAL_HASH_LEN])
{
    struct blob *bl = &s->blobs[b];
    uint8_t *buf = NULL;
    int rv;

    pthread_mutex_lock(&s->mu);
    while (bl->hashing)
        pthread_cond_wait(&s->hash_cv, &s->mu);
    bl->hashing = true;
    rv = hash_run(s, b, idx, data, &buf, true);
    if (rv == 0 && bl->hashed == 0) /* a file with no chunks */
        shoal_sha256_init(&bl->sha);
    if (rv == 0)
        shoal_sha256_final(&bl->sha, out);
    /* Whatever happens next (publish, or back to filling after a mismatch
     * or an error), the next hash starts from the first chunk. */
    bl->hashed = 0;
    bl->hashing = false;
    pthread_cond_broadcast(&s->hash_cv);
    pthread_mutex_unlock(&s->mu);
    spare_put(s, buf);
    return rv;
}

/* Called by the one thread that moved blob |b| to COMPLETING; |idx|/|data|
 * is the chunk that thread has in hand (NULL: none). */
static int finish_blob(struct shoal_store *s, uint32_t b, uint32_t idx, const uint8_t *data)
{
    const struct shoal_mf_file *pf = file(s, s->blobs[b].primary);
    uint8_t sha[SHOAL_HASH_LEN];
    char want[65], got[65], branch[BRANCH_MAX + 1] = "";
    bool all = false;
    int rv;

    if ((rv = hash_finish(s, b, idx, data, sha)) < 0) {
        set_err(s, "reading back %s for its sha256: %s", pf->path, shoal_strerror(rv));
        goto fail;
    }
    if (memcmp(sha, pf->sha256, SHOAL_HASH_LEN) != 0) {
        shoal_hex(want, pf->sha256, SHOAL_HASH_LEN);
        shoal_hex(got, sha, SHOAL_HASH_LEN);
        set_err(s, "%s of %s@%s: sha256 is %s, manifest says %s", pf->path,
                shoal_manifest_repo_id(s->m), shoal_manifest_commit(s->m), got, want);
        pthread_mutex_lock(&s->mu);
        blob_set_all(s, b, false);
        s->blobs[b].state = BLOB_INCOMPLETE;
        pthread_mutex_unlock(&s->mu);
        rv = SHOAL_EBADHASH;
        notify(s, b, rv);
        goto out;
    }
    /* On disk the loader need not wait for the fsync and the renames: it
     * gets the very inode, whose bytes are verified and no longer written.
     * A memfd is sealed first (that is its publishing, and cheap), so a
     * loader never holds one that could still change. */
    if (!(s->flags & SHOAL_STORE_MEMORY))
        set_ready(s, b);
    if ((rv = publish_blob(s, b)) < 0)
        goto fail;
    if (s->flags & SHOAL_STORE_MEMORY)
        set_ready(s, b);
    pthread_mutex_lock(&s->mu);
    set_done_locked(s, b);
    all = all_done_locked(s);
    /* The loop thread may name another branch meanwhile (set_branch). */
    if (all && s->branch)
        snprintf(branch, sizeof branch, "%s", s->branch);
    pthread_mutex_unlock(&s->mu);
    notify(s, b, 0);
    if (all) {
        write_ref_owed(s, branch[0] ? branch : NULL);
        shoal_store_flush(s);
    }
    goto out;
fail:
    /* The bytes are verified but not published; a later open retries. A
     * ready blob stays ready: loaders may already hold it, and may still
     * be given it, since its bytes are right whatever the cache names. */
    pthread_mutex_lock(&s->mu);
    s->blobs[b].state = BLOB_INCOMPLETE;
    pthread_mutex_unlock(&s->mu);
    notify(s, b, rv);
out:
    return rv;
}

/* ---- open ---- */

/* Re-hashes every chunk of blob |b|'s primary file and sets bits to match.
 * A chunk that cannot be read (EIO) is not verified: it is fetched again
 * and written over (s->err says so). */
static void rescan_blob(struct shoal_store *s, uint32_t b, uint8_t *buf)
{
    const struct shoal_mf_file *pf = file(s, s->blobs[b].primary);
    uint8_t id[SHOAL_HASH_LEN];
    uint32_t i;
    int rv;

    for (i = 0; i < pf->nchunks; i++) {
        const struct shoal_mf_chunk *c = chunk(s, pf->first_chunk + i);
        if ((rv = pread_all(s->blobs[b].fd, buf, c->len, c->offset)) < 0) {
            set_err(s, "re-verifying %s: chunk at offset %llu: %s (fetched again)", pf->path,
                    (unsigned long long)c->offset, shoal_strerror(rv));
            memset(id, 0, sizeof id);
        } else {
            shoal_chunk_id(id, buf, c->len);
        }
        pthread_mutex_lock(&s->mu);
        if (rv == 0 && memcmp(id, c->id, SHOAL_HASH_LEN) == 0)
            mark(s, pf->first_chunk + i);
        else
            unmark(s, pf->first_chunk + i);
        pthread_mutex_unlock(&s->mu);
    }
}

/* Removes the snapshot links of blob |b|'s files in this release, so that
 * none of ours points at bytes found wrong. Best effort: a link left behind
 * points at the published blob, as it did before. Other releases' links to
 * the same blob are theirs and stay. */
static void unlink_links(struct shoal_store *s, uint32_t b)
{
    uint32_t k;
    int snap;

    /* Through directory fds opened without following links, as link_file
     * does: in a shared cache another user may have put a symlink where a
     * snapshot directory goes, and a path walk would unlink past it. */
    for (k = 0; k < s->blobs[b].fcount && open_snap_dir(s, &snap) == 0; k++) {
        uint32_t f = s->blob_files[s->blobs[b].fpos + k];
        const char *leaf;
        int dfd;

        if (walk_dirs(snap, file(s, f)->path, &dfd, &leaf) == 0) {
            unlinkat(dfd, leaf, 0);
            close(dfd);
        }
    }
}

/*
 * Copies blob |b|'s chunks from |from| to |to| (sized and reserved by the
 * caller) one by one, in the kernel where it can (a reflink on filesystems
 * that share extents). Not copied, so left as zeros, which no chunk id
 * matches unless the chunk is zeros: chunks whose position in the primary
 * file is set in |skip| (taken back: fetched again anyway), what |from|
 * lacks (a blob cut short), and a chunk that cannot be read (EIO: a bad
 * sector), whose position is then set in |unreadable| (may be NULL) for the
 * caller to take back too. Fails only on a write error.
 */
static int copy_chunks(struct shoal_store *s, uint32_t b, int from, int to, const uint8_t *skip,
                       uint8_t *unreadable)
{
    const struct shoal_mf_file *pf = file(s, s->blobs[b].primary);
    bool kernel = true;
    uint8_t *buf = NULL;
    int rv = 0;

    for (uint32_t i = 0; i < pf->nchunks; i++) {
        const struct shoal_mf_chunk *c = chunk(s, pf->first_chunk + i);
        uint64_t off = c->offset, end = c->offset + c->len;

        if (skip && bit_get(skip, i))
            continue;
        while (kernel && off < end) {
            loff_t in = (loff_t)off, out = (loff_t)off;
            ssize_t n = copy_file_range(from, &in, to, &out, (size_t)(end - off), 0);
            if (n > 0) {
                off += (uint64_t)n;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
                          errno == EOPNOTSUPP))
                kernel = false; /* not here: through a buffer from now on */
            /* End of |from|, or an error: the buffer tells a read error
             * (this chunk is bad) from a write one (the copy fails). */
            break;
        }
        if (off < end && !buf && !(buf = malloc(s->max_len ? s->max_len : 1))) {
            rv = -ENOMEM;
            goto out;
        }
        while (off < end) {
            ssize_t n = pread(from, buf, (size_t)(end - off), (off_t)off);
            if (n < 0 && errno == EINTR)
                continue;
            /* A read error, or the file ends inside the chunk (cut
             * short): either way the chunk is not in the copy. */
            if (n <= 0 && unreadable)
                bit_set(unreadable, i);
            if (n <= 0)
                break;
            if ((rv = pwrite_all(to, buf, (size_t)n, off)) < 0)
                goto out;
            off += (uint64_t)n;
        }
    }
out:
    free(buf);
    return rv;
}

/*
 * A repair of blob |b| (published as blobs/<sha>, its bytes found wrong):
 * copies it from |src| into this release's own partial file,
 * .shoal/<sha>.<release id>.incomplete (created, or a leftover reused),
 * locked, writable and of the right size (all of it reserved), and returns
 * that in |*out|. Chunks set in |skip| (positions in the primary file, may
 * be NULL) are not copied, and those that cannot be read are set in
 * |unreadable| (see copy_chunks). The good chunks are then where the
 * sidecar says; the bad ones are filled again in the copy, which is renamed
 * over blobs/<sha> once its sha256 matches (publish_blob). blobs/<sha>
 * itself is never renamed away or written: other releases in the cache
 * (open here, or only on disk) link to it, and must keep a valid name
 * throughout. The copy's name is made durable before returning: a restart
 * after a crash from here on finds it, and then hashes blobs/<sha> before
 * trusting it (open_blob_disk). On failure nothing of ours is left under
 * the partial name and s->err says why.
 */
static int repair_copy(struct shoal_store *s, uint32_t b, int src, const uint8_t *skip,
                       uint8_t *unreadable, int *out)
{
    const struct shoal_mf_file *pf = file(s, s->blobs[b].primary);
    char own[128], fin[128];
    int fd = -1, rv = 0;

    shoal_hf_blob_path(fin, sizeof fin, pf, false);
    own_inc_path(s, b, own, sizeof own);
    fd = openat(s->meta_fd, in_part(own), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd < 0) {
        rv = errno == ELOOP ? SHOAL_EBADPATH : errno_rv(errno);
        set_err(s, "creating %s/%s to fetch chunks of %s again: %s", s->repo_path, own,
                pf->path, shoal_strerror(rv));
        return rv;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        rv = errno == EWOULDBLOCK ? SHOAL_EBUSY : errno_rv(errno);
        set_err(s, "locking %s/%s for %s: %s", s->repo_path, own, pf->path,
                rv == SHOAL_EBUSY ? "another process is filling it" : shoal_strerror(rv));
        close(fd);
        return rv; /* not ours to remove */
    }
    if (ftruncate(fd, 0) != 0) {
        rv = errno_rv(errno);
        goto fail;
    }
    if ((rv = preallocate(fd, pf->size)) < 0 ||
        (rv = copy_chunks(s, b, src, fd, skip, unreadable)) < 0)
        goto fail;
    if (fsync(s->meta_fd) != 0) {
        rv = errno_rv(errno);
        goto fail;
    }
    *out = fd;
    return 0;
fail:
    set_err(s, "copying %s/%s to %s/%s (%llu bytes) to repair %s: %s", s->repo_path, fin,
            s->repo_path, own, (unsigned long long)pf->size, pf->path, shoal_strerror(rv));
    (void)unlinkat(s->meta_fd, in_part(own), 0);
    close(fd);
    return rv;
}

/* How many 10 ms waits hf_lock makes for a lock held by another. */
#define HF_LOCK_WAIT_TRIES 100

/*
 * Takes huggingface_hub's lock for the blob named |etag| (shoal_hf_etag)
 * of this repo, <cache>/.locks/<repo folder>/<etag>.lock: it holds that
 * (an flock, through the filelock package) while it resumes
 * blobs/<etag>.incomplete and renames it to blobs/<etag>, and it checks
 * under it whether blobs/<etag> exists before downloading. On 0 |*out| is
 * the locked descriptor (closing it lets go); SHOAL_EBUSY when another
 * holds it (with |wait|, still after about a second of waiting); else the
 * error that kept it from being made (a read-only .locks), and the caller
 * goes on without it. The file is never removed: an older filelock,
 * polling with its own descriptor, would then lock a name nobody else uses.
 */
static int hf_lock(struct shoal_store *s, const char *etag, bool wait, int *out)
{
    const char *folder = strrchr(s->repo_path, '/') + 1;
    char name[SHOAL_HF_ETAG_MAX + 8];
    struct stat held, named;
    int locks = -1, dir = -1, fd = -1, rv, tries;

    *out = -1;
    snprintf(name, sizeof name, "%s.lock", etag);
    if ((rv = mkdir_open(s->cache_fd, ".locks", &locks)) < 0 ||
        (rv = mkdir_open(locks, folder, &dir)) < 0)
        goto out;
    for (tries = 0; tries < 4 + HF_LOCK_WAIT_TRIES; tries++) {
        fd = openat(dir, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0664);
        if (fd < 0) {
            rv = errno_rv(errno);
            goto out;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            rv = errno == EWOULDBLOCK ? SHOAL_EBUSY : errno_rv(errno);
            if (rv != SHOAL_EBUSY || !wait || tries >= HF_LOCK_WAIT_TRIES)
                goto out;
            /* Another release of this daemon publishing the same blob
             * holds it for a rename and a few links: worth a short wait
             * (this is a worker thread). huggingface_hub downloading it
             * holds it far longer: then the publish is tried again. */
            close(fd);
            fd = -1;
            nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
            continue;
        }
        /* Newer filelock releases remove the file as they let go: a lock
         * on a name removed (or replaced) meanwhile guards nothing. */
        if (fstat(fd, &held) == 0 && held.st_nlink > 0 &&
            fstatat(dir, name, &named, AT_SYMLINK_NOFOLLOW) == 0 &&
            held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
            *out = fd;
            fd = -1;
            rv = 0;
            goto out;
        }
        close(fd);
        fd = -1;
    }
    rv = SHOAL_EBUSY;
out:
    if (fd >= 0)
        close(fd);
    if (dir >= 0)
        close(dir);
    if (locks >= 0)
        close(locks);
    return rv;
}

/*
 * An older shoald filled blob |b| in blobs/ (blobs/<sha>.incomplete, or
 * blobs/<sha>.<release id>.incomplete), preallocated to the full size.
 * The first of those is huggingface_hub's own resumable download name: it
 * would take such a file for finished (its size is the file's) and rename
 * it to blobs/<sha> unchecked, zeros and all. Each one found is moved to
 * its partial name under .shoal/ (|dst|, which must not exist yet), so
 * that the sidecar's verified chunks are kept and the trap is gone. Moved
 * only when it is a regular file of the full size (huggingface_hub's own
 * partial downloads are shorter until they are renamed), nobody holds its
 * flock (a filler), and, for the shared name, huggingface_hub's lock for
 * the blob can be taken (it is not resuming it right now). Anything else is
 * left as it is: a file that was not moved is not the one the sidecar talks
 * about, and is not trusted (open_blob_disk fills a new one).
 */
static void migrate_old_partial(struct shoal_store *s, uint32_t b, const char *dst, bool shared)
{
    const struct shoal_mf_file *pf = file(s, s->blobs[b].primary);
    char old[128], hex[2 * SHOAL_HASH_LEN + 1];
    struct stat st;
    int fd = -1, lock = -1;

    /* An older shoald named every blob by its sha256, whatever its ETag;
     * huggingface_hub uses the sha256 for LFS files, so that is also the
     * lock it would hold for the shared name. */
    shoal_hex(hex, pf->sha256, SHOAL_HASH_LEN);
    if (shared)
        snprintf(old, sizeof old, "blobs/%s.incomplete", hex);
    else
        snprintf(old, sizeof old, "blobs/%s.%.16s.incomplete", hex, s->idhex);
    if (fstatat(s->blobs_fd, in_blobs(old), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(st.st_mode) || (uint64_t)st.st_size != pf->size ||
        fstatat(s->meta_fd, in_part(dst), &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
        return;
    if (shared && hf_lock(s, hex, false, &lock) == SHOAL_EBUSY)
        return;
    fd = openat(s->blobs_fd, in_blobs(old), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size != pf->size || flock(fd, LOCK_EX | LOCK_NB) != 0)
        goto out;
    if (renameat2(s->blobs_fd, in_blobs(old), s->meta_fd, in_part(dst), RENAME_NOREPLACE) == 0) {
        fsync(s->meta_fd);
        fsync(s->blobs_fd);
    }
out:
    if (fd >= 0)
        close(fd);
    if (lock >= 0)
        close(lock);
}

/* Removes |own| (a partial file of ours left next to a whole published
 * blob), unless another process holds its lock: then it is that one's. */
static void drop_leftover(struct shoal_store *s, const char *own)
{
    int fd = openat(s->meta_fd, in_part(own), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0)
        return;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        (void)unlinkat(s->meta_fd, in_part(own), 0);
    close(fd);
}

/* What is at |path| (a "blobs/..." name), the last component not
 * followed: 0 nothing (or not known: opening it says why), 1 a regular
 * file, -1 anything else, which is not ours (never opened, never
 * removed), its kind then in |*kind|. */
static int blob_name_kind(const struct shoal_store *s, const char *path, const char **kind)
{
    struct stat st;

    *kind = "";
    if (fstatat(s->meta_fd, in_part(path), &st, AT_SYMLINK_NOFOLLOW) < 0)
        return 0;
    if (S_ISREG(st.st_mode))
        return 1;
    *kind = S_ISDIR(st.st_mode)    ? "a directory"
            : S_ISLNK(st.st_mode)  ? "a symbolic link"
            : S_ISFIFO(st.st_mode) ? "a FIFO"
            : S_ISSOCK(st.st_mode) ? "a socket"
                                   : "a device node";
    return -1;
}

/* ---- a snapshot entry linked to another blob name ---- */

static int open_existing(int dirfd, const char *path);

/* Opens the folder of snapshots/<commit>/<|f|'s path>, nothing followed
 * or created, and points |*leaf| at the entry's name in it; -1 when it is
 * not there. */
static int snap_entry_dir(struct shoal_store *s, const struct shoal_mf_file *f, const char **leaf)
{
    char dirpath[SHOAL_HF_PATH_MAX];
    const char *slash = strrchr(f->path, '/');

    *leaf = slash ? slash + 1 : f->path;
    if (snprintf(dirpath, sizeof dirpath, "snapshots/%s%s%.*s", shoal_manifest_commit(s->m),
                 slash ? "/" : "", slash ? (int)(slash - f->path) : 0,
                 f->path) >= (int)sizeof dirpath)
        return -1;
    return open_existing(s->repo_fd, dirpath);
}

/* When snapshots/<commit>/<|f|'s path> is a regular file of |f|'s size
 * (huggingface_hub copies a blob there, or moves a new one there, where
 * it cannot make links), returns its folder open (the caller closes it)
 * with its name in |*leaf|; else -1. */
static int snap_copy(struct shoal_store *s, const struct shoal_mf_file *f, const char **leaf)
{
    struct stat st;
    int dfd = snap_entry_dir(s, f, leaf);

    if (dfd >= 0 && (fstatat(dfd, *leaf, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                     !S_ISREG(st.st_mode) || (uint64_t)st.st_size != f->size)) {
        close(dfd);
        dfd = -1;
    }
    return dfd;
}

/* When snapshots/<commit>/<|f|'s path> is a link into this repo's blobs/
 * under a name other than |f|'s own (huggingface_hub names a blob by the
 * ETag it was served, and a caching gateway may serve ETags of its own),
 * writes that name to |out| (|cap| bytes) and returns true. */
static bool snap_links_other(struct shoal_store *s, const struct shoal_mf_file *f, char *out,
                             size_t cap)
{
    char got[SHOAL_HF_PATH_MAX], want[SHOAL_HF_PATH_MAX];
    const char *leaf, *name;
    size_t len;
    ssize_t n;
    int dfd;

    if (shoal_hf_link_target(want, sizeof want, f) < 0 ||
        (dfd = snap_entry_dir(s, f, &leaf)) < 0)
        return false;
    n = readlinkat(dfd, leaf, got, sizeof got - 1);
    close(dfd);
    if (n <= 0)
        return false;
    got[n] = '\0';
    /* Ours would be "../../blobs/<etag>": the same way up, then a plain
     * name in blobs/ that is neither ours nor a partial download. */
    name = link_other_blob(got, want);
    len = name ? strlen(name) : 0;
    if (!name || len >= cap || (len > 11 && strcmp(name + len - 11, ".incomplete") == 0))
        return false;
    memcpy(out, name, len + 1);
    return true;
}

/*
 * Blob |b| is not in blobs/ under its own name, but the snapshot entry of
 * one of its files links to blobs/<other> (snap_links_other), as
 * huggingface_hub leaves a download through a gateway with ETags of its
 * own, or is a regular file (snap_copy), as it leaves one where it cannot
 * make links. If that file holds the right bytes (its sha256 is hashed),
 * it is linked under the blob's own name too (a hard link: nothing copied
 * or fetched) and recorded as verified; link_file then points the snapshot
 * entry at the new name (replacing a copy) and removes <other> if nothing
 * else links to it (drop_orphan), the record following the name that
 * stays. Otherwise (another size or other bytes, not a regular file,
 * huggingface_hub holding its lock on the name, a snapshot on another
 * file system) returns false and the blob is filled as usual (its entry
 * replaced the same way once it is published).
 */
static bool adopt_linked(struct shoal_store *s, uint32_t b)
{
    const struct shoal_mf_file *pf = file(s, s->blobs[b].primary);
    char other[SHOAL_HF_PATH_MAX], etag[SHOAL_HF_ETAG_MAX], note[SHOAL_HF_PATH_MAX + 256];
    uint8_t sha[SHOAL_HASH_LEN];
    struct stat st, now;
    bool ok = false;

    for (uint32_t k = 0; k < s->blobs[b].fcount && !ok; k++) {
        const struct shoal_mf_file *f = file(s, s->blob_files[s->blobs[b].fpos + k]);
        const char *name = other;
        int fd, lock = -1, dfd = -1, src = s->blobs_fd;

        if (!snap_links_other(s, f, other, sizeof other)) {
            if ((dfd = snap_copy(s, f, &name)) < 0)
                continue;
            src = dfd;
        }
        fd = openat(src, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            goto next;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != pf->size ||
            hash_fd(fd, pf->size, sha) != 0) {
            close(fd);
            goto next;
        }
        pthread_mutex_lock(&s->mu);
        s->open_hashed++;
        s->open_hashed_bytes += pf->size;
        s->open_wrong += memcmp(sha, pf->sha256, SHOAL_HASH_LEN) != 0;
        pthread_mutex_unlock(&s->mu);
        shoal_hf_etag(etag, pf);
        /* The bytes hashed are those linked: |name| still names the inode
         * hashed (a rename meanwhile would link something else). */
        if (memcmp(sha, pf->sha256, SHOAL_HASH_LEN) == 0 &&
            hf_lock(s, etag, false, &lock) != SHOAL_EBUSY && fsync(fd) == 0 &&
            fstatat(src, name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
            now.st_ino == st.st_ino && now.st_dev == st.st_dev &&
            linkat(src, name, s->blobs_fd, etag, 0) == 0) {
            fsync(s->blobs_fd);
            vrec_write_hashed(s, pf, fd, &st); /* after the link, which moved its ctime */
            if (dfd < 0)
                snprintf(note, sizeof note,
                         "%s/snapshots/%s/%s linked to blobs/%s (not the name the Hub gives "
                         "it: a gateway's ETag?), whose bytes match its sha256: kept as "
                         "blobs/%s, nothing fetched", s->repo_path, shoal_manifest_commit(s->m),
                         f->path, other, etag);
            else
                snprintf(note, sizeof note,
                         "%s/snapshots/%s/%s was a copy, not a link (huggingface_hub's where "
                         "it cannot make links), whose bytes match its sha256: kept as "
                         "blobs/%s and linked, nothing fetched", s->repo_path,
                         shoal_manifest_commit(s->m), f->path, etag);
            free(s->blobs[b].note);
            s->blobs[b].note = strdup(note);
            ok = true;
        }
        if (lock >= 0)
            close(lock);
        close(fd);
    next:
        if (dfd >= 0)
            close(dfd);
    }
    return ok;
}

/* Whether opening blob |b| would hash a file of the cache shoald has no
 * record of verifying: blobs/<etag> there of the right size and not
 * vouched for (vrec_vouches), or missing while a snapshot entry of its
 * files links to another name in blobs/ of the right size, or is a
 * regular file of that size (adopt_linked). Only stats and a record read:
 * the hash is what is deferred. */
static bool first_hash_due(struct shoal_store *s, uint32_t b)
{
    const struct shoal_mf_file *pf = file(s, s->blobs[b].primary);
    char fin[128], other[SHOAL_HF_PATH_MAX];
    struct stat st;
    bool due;
    int fd;

    shoal_hf_blob_path(fin, sizeof fin, pf, false);
    if (fstatat(s->blobs_fd, in_blobs(fin), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != pf->size)
            return false;
        fd = openat(s->blobs_fd, in_blobs(fin), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            return false; /* open_blob_disk says why */
        due = !vrec_vouches(s, pf, fd);
        close(fd);
        return due;
    }
    if (errno != ENOENT)
        return false;
    for (uint32_t k = 0; k < s->blobs[b].fcount; k++) {
        const struct shoal_mf_file *f = file(s, s->blob_files[s->blobs[b].fpos + k]);

        const char *leaf;

        if (snap_links_other(s, f, other, sizeof other) &&
            fstatat(s->blobs_fd, other, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            (uint64_t)st.st_size == pf->size)
            return true;
        if ((fd = snap_copy(s, f, &leaf)) >= 0) {
            close(fd);
            return true;
        }
    }
    return false;
}

static int open_blob_disk(struct shoal_store *s, uint32_t b, uint8_t *buf, bool defer)
{
    const struct shoal_mf_file *pf = file(s, s->blobs[b].primary);
    char inc[128], fin[128], own[128];
    uint8_t sha[SHOAL_HASH_LEN];
    struct stat st;
    bool rescan = (s->flags & SHOAL_STORE_VERIFY) || s->blobs[b].recheck, own_there,
         copied = false, unvouched = false, wrong;
    const char *kind, *own_kind, *shared_was = NULL;
    char shared[128];
    uint32_t k;
    int fd = -1, cfd = -1, own_is;
    int rv = 0;

    shoal_hf_partial_path(inc, sizeof inc, pf, NULL);
    shoal_hf_blob_path(fin, sizeof fin, pf, false);
    shoal_hf_partial_path(shared, sizeof shared, pf, NULL);
    own_inc_path(s, b, own, sizeof own);
    migrate_old_partial(s, b, own, false);
    migrate_old_partial(s, b, shared, true);
    /* Only a regular file under our own partial name can be ours: anything
     * else there (a directory, a FIFO that would block an open, a symlink
     * out of the store) is someone else's, and is neither opened nor
     * removed. */
    own_is = blob_name_kind(s, own, &own_kind);
    own_there = own_is > 0;
    /* Hashing a multi-GB file here would hold the caller (the daemon's
     * event loop) for seconds: left to shoal_store_hash_found on a worker,
     * which runs this again for the blob. */
    if (defer && !rescan && !own_there && first_hash_due(s, b)) {
        pthread_mutex_lock(&s->mu);
        blob_set_all(s, b, false);
        s->blobs[b].state = BLOB_INCOMPLETE;
        s->blobs[b].pending = true;
        s->npending++;
        s->pending_bytes += pf->size;
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    if (!own_there && fstatat(s->blobs_fd, in_blobs(fin), &st, AT_SYMLINK_NOFOLLOW) != 0 &&
        errno == ENOENT)
        (void)adopt_linked(s, b);

    if (fstatat(s->blobs_fd, in_blobs(fin), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size == pf->size) {
        fd = openat(s->blobs_fd, in_blobs(fin), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            rv = -errno;
            set_err(s, "opening %s/%s: %s", s->repo_path, fin, shoal_strerror(rv));
            goto out;
        }
        /* Our own partial file next to the published blob: a repair may
         * have been under way (chunks taken back, or --verify-store), and
         * then the published blob is the one found wrong, unless another
         * release has replaced it since; whatever the sidecar says, since a
         * crash or a failed write may have left it as it was before the
         * copy. So it is hashed before it is trusted. (Also after losing the
         * race to fill a shared blob: then it hashes right.) One that cannot
         * be read (EIO) is repaired like one that hashes wrong. So is one
         * the sidecar marks as found bad (recheck): its repair could not
         * start last time (no room), and it is hashed as --verify-store
         * would. And so is one that shoald has no record of verifying as
         * it is now (vrec_vouches): put there by huggingface_hub or by
         * hand, or changed since. */
        unvouched = !rescan && !own_there && !vrec_vouches(s, pf, fd);
        if (rescan || own_there || unvouched) {
            rv = hash_fd(fd, pf->size, sha);
            if (rv == -ENOMEM)
                goto out;
            if (rv < 0)
                set_err(s, "reading %s/%s for its sha256: %s (repairing it)", s->repo_path, fin,
                        shoal_strerror(rv));
            wrong = rv < 0 || memcmp(sha, pf->sha256, SHOAL_HASH_LEN) != 0;
            if (unvouched) {
                pthread_mutex_lock(&s->mu);
                s->open_hashed++;
                s->open_hashed_bytes += pf->size;
                s->open_wrong += wrong;
                pthread_mutex_unlock(&s->mu);
            }
            if (wrong && unvouched && rv == 0) {
                char note[SHOAL_HF_PATH_MAX + 256];

                snprintf(note, sizeof note,
                         "%s/%s (%s) was not verified by shoald and does not match its "
                         "sha256: the chunks that differ are fetched again", s->repo_path, fin,
                         pf->path);
                free(s->blobs[b].note);
                s->blobs[b].note = strdup(note);
            }
            if (wrong) {
                vrec_forget(s, pf);
                /* Repaired in a copy of our own: blobs/<sha> keeps its
                 * name for the releases that link to it. A copy there
                 * already is the repair under way, but what of it the
                 * sidecar vouches for is not known (see above): it is
                 * checked chunk by chunk (rescan), as a new one is. */
                if (!own_there) {
                    if ((rv = repair_copy(s, b, fd, NULL, NULL, &cfd)) < 0)
                        goto withhold;
                    copied = true;
                }
                rescan = true;
                close(fd);
                fd = -1;
                unlink_links(s, b);
                goto incomplete;
            }
        }
        /* The published blob is whole: a partial file of ours is a leftover
         * (a repair or a fill that another release finished first), unless
         * another process holds it (two stores of this release). */
        if (own_there)
            drop_leftover(s, own);
        /* Hashed right just now. Made durable first: huggingface_hub does
         * not fsync what it downloads, and after a crash the record must
         * not vouch for blocks that never reached the disk. */
        if ((rescan || own_there || unvouched) && fsync(fd) == 0)
            vrec_write_hashed(s, pf, fd, &st);
        s->blobs[b].fd = fd;
        fd = -1;
        pthread_mutex_lock(&s->mu);
        blob_set_all(s, b, true);
        set_done_locked(s, b);
        pthread_mutex_unlock(&s->mu);
        /* Found by hash from another release, or a crash before the links. */
        rv = 0;
        for (k = 0; k < s->blobs[b].fcount && rv == 0; k++)
            rv = link_file(s, s->blob_files[s->blobs[b].fpos + k]);
        goto out;
    }

incomplete:
    /* A partial file of our own from an earlier run comes first: the
     * sidecar's bits talk about it. */
    s->blobs[b].own_inc = true;
    blob_inc_path(s, b, inc, sizeof inc);
    if (cfd >= 0) {
        /* The copy just made is that file, and it is locked: closed and
         * opened again here, it would be unlocked in between, for another
         * filler to take. */
        fd = cfd;
        cfd = -1;
        if (fstat(fd, &st) < 0) {
            rv = errno_rv(errno);
            set_err(s, "opening %s/%s for %s: %s", s->repo_path, inc, pf->path,
                    shoal_strerror(rv));
            goto out;
        }
        goto opened;
    }
    if (!own_there) {
        s->blobs[b].own_inc = false;
        blob_inc_path(s, b, inc, sizeof inc);
    }
    for (;;) {
        /* Something not ours under the name: never opened (a FIFO would
         * block, a device would be written), never followed, never
         * removed. The shared name gives way to our own; when that is
         * taken too, the file is withheld. */
        if (blob_name_kind(s, inc, &kind) < 0) {
            if (!s->blobs[b].own_inc)
                shared_was = kind;
            if (!s->blobs[b].own_inc && own_is >= 0) {
                free(s->blobs[b].note);
                s->blobs[b].note = NULL;
                if (asprintf(&s->blobs[b].note,
                             "%s/%s is %s, not a partial file of shoal's: left as it is; "
                             "%s is filled in %s/%s instead",
                             s->repo_path, inc, kind, pf->path, s->repo_path, own) < 0)
                    s->blobs[b].note = NULL;
                s->blobs[b].own_inc = true;
                blob_inc_path(s, b, inc, sizeof inc);
                continue;
            }
            if (!s->blobs[b].own_inc) { /* and our own name is taken too */
                s->blobs[b].own_inc = true;
                blob_inc_path(s, b, inc, sizeof inc);
                kind = own_kind;
            }
            goto blocked;
        }
        /* Known before O_CREAT, so a failed open can take back what it made. */
        s->blobs[b].created = fstatat(s->meta_fd, in_part(inc), &st, AT_SYMLINK_NOFOLLOW) < 0 &&
                              errno == ENOENT;
        fd = openat(s->meta_fd, in_part(inc),
                    O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0640);
        if (fd < 0 || fstat(fd, &st) < 0) {
            /* Put there since the check above: as if it had been seen. */
            if (errno == ELOOP || errno == EISDIR || errno == ENXIO) {
                kind = errno == ELOOP ? "a symbolic link" : errno == EISDIR ? "a directory"
                                                                            : "a socket or device";
                goto blocked;
            }
            rv = errno_rv(errno);
            set_err(s, "opening %s/%s for %s: %s", s->repo_path, inc, pf->path,
                    shoal_strerror(rv));
            goto out;
        }
        if (!S_ISREG(st.st_mode)) {
            kind = S_ISFIFO(st.st_mode) ? "a FIFO" : "not a regular file";
            close(fd);
            fd = -1;
            goto blocked;
        }
        /* O_NONBLOCK was only for opening (a FIFO would not have waited
         * for a writer); a regular file ignores it, but the flag goes. */
        (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        /* One writer per partial file. Two releases may list the same
         * sha256 but chunk it differently, and each verifies only its own
         * chunks: bytes the other wrote after ours were hashed would reach
         * blobs/<sha> unchecked, and a release signed by any trusted key
         * could so poison another's file. The second filler takes a name of
         * its own instead (the shared file stays the first one's). */
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            break;
        rv = errno == EWOULDBLOCK ? SHOAL_EBUSY : errno_rv(errno);
        if (rv != SHOAL_EBUSY || s->blobs[b].own_inc) {
            set_err(s, "locking %s/%s for %s: %s", s->repo_path, inc, pf->path,
                    rv == SHOAL_EBUSY ? "another process is filling it" : shoal_strerror(rv));
            goto out;
        }
        close(fd);
        fd = -1;
        shared_was = "being filled by another process";
        s->blobs[b].own_inc = true;
        blob_inc_path(s, b, inc, sizeof inc);
    }
opened:
    if ((uint64_t)st.st_size != pf->size) {
        /* New, or not the file the sidecar talks about: trust none of it. */
        pthread_mutex_lock(&s->mu);
        blob_set_all(s, b, false);
        pthread_mutex_unlock(&s->mu);
        if ((uint64_t)st.st_size > pf->size && ftruncate(fd, (off_t)pf->size) < 0) {
            rv = errno_rv(errno);
            goto prealloc_fail;
        }
        if ((rv = preallocate(fd, pf->size)) < 0)
            goto prealloc_fail;
    }
    s->blobs[b].fd = fd;
    fd = -1;
    if (rescan)
        rescan_blob(s, b, buf);
    pthread_mutex_lock(&s->mu);
    /* A fresh copy: nothing has synced its bytes yet, and the sidecar is
     * about to vouch for them. */
    if (copied)
        s->blobs[b].dirty = true;
    sync_blob_bits(s, b);
    s->blobs[b].state = s->blobs[b].remaining == 0 ? BLOB_COMPLETING : BLOB_INCOMPLETE;
    pthread_mutex_unlock(&s->mu);
    rv = 0;
    goto out;
withhold:
    /* No room (or no permission) for the copy: the blob stays as it was,
     * published and linked, its chunks verified, but bad (not ready, not
     * handed out) and withheld by the caller (shoal_store_file_withheld)
     * until a later open repairs it. The rest of the release opens. */
    s->blobs[b].fd = fd;
    fd = -1;
    pthread_mutex_lock(&s->mu);
    blob_set_all(s, b, true);
    set_done_locked(s, b);
    s->blobs[b].ready = false;
    s->blobs[b].bad = true;
    s->blobs[b].repair_rv = rv;
    s->blobs[b].repair_msg = strdup(s->err); /* NULL: the caller says rv alone */
    pthread_mutex_unlock(&s->mu);
    rv = 0;
    goto out;
blocked:
    /* Neither partial name can be ours. The rest of the release opens;
     * this file is withheld (shoal_store_file_withheld) until the thing in
     * the way is moved and the release opened again. What the sidecar said
     * of a partial file that is no longer there is forgotten. */
    set_err(s, "%s/%s is %s, not a partial file of shoal's%s%s%s: %s is not fetched; move "
            "%s out of the way (shoal never removes what is not its own), then restart "
            "shoald or pull the release again",
            s->repo_path, inc, kind, shared_was ? " (and " : "", shared_was ? shared : "",
            shared_was ? (strcmp(shared_was, "being filled by another process") == 0
                              ? " is being filled by another process)"
                              : " is not one either)")
                       : "",
            pf->path,
            shared_was && strcmp(shared_was, "being filled by another process") != 0 ? "them"
                                                                                       : "it");
    s->blobs[b].created = false;
    s->blobs[b].fd = -1;
    pthread_mutex_lock(&s->mu);
    blob_block(s, b);
    pthread_mutex_unlock(&s->mu);
    rv = 0;
    goto out;
prealloc_fail:
    set_err(s, "preallocating %llu bytes for %s at %s/%s: %s",
            (unsigned long long)pf->size, pf->path, s->repo_path, inc, shoal_strerror(rv));
out:
    if (fd >= 0)
        close(fd);
    return rv;
}

static int open_blob_memory(struct shoal_store *s, uint32_t b)
{
    const struct shoal_mf_file *pf = file(s, s->blobs[b].primary);
    char name[40];
    int fd, rv;

    snprintf(name, sizeof name, "shoal-%02x%02x%02x%02x", pf->sha256[0], pf->sha256[1],
             pf->sha256[2], pf->sha256[3]);
    fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        rv = -errno;
        set_err(s, "memfd for %s: %s", pf->path, shoal_strerror(rv));
        goto out;
    }
    if ((rv = preallocate(fd, pf->size)) < 0) {
        set_err(s, "reserving %llu bytes of memory for %s: %s",
                (unsigned long long)pf->size, pf->path, shoal_strerror(rv));
        goto out;
    }
    s->blobs[b].fd = fd;
    fd = -1;
    pthread_mutex_lock(&s->mu);
    s->blobs[b].remaining = pf->nchunks;
    s->blobs[b].state = pf->nchunks == 0 ? BLOB_COMPLETING : BLOB_INCOMPLETE;
    pthread_mutex_unlock(&s->mu);
out:
    if (fd >= 0)
        close(fd);
    return rv;
}

static int keep_manifest(struct shoal_store *s, const uint8_t *p, size_t n)
{
    char name[NAME_MAX + 1];
    uint8_t id[SHOAL_HASH_LEN];
    struct stat st;
    int rv;

    /* Only the bytes this manifest was parsed from may be kept. */
    shoal_chunk_id(id, p, n);
    if (memcmp(id, shoal_manifest_id(s->m), SHOAL_HASH_LEN) != 0) {
        set_err(s, "manifest bytes given to the store do not hash to its id");
        return SHOAL_EBADHASH;
    }
    snprintf(name, sizeof name, "%s.manifest", s->idhex);
    if (fstatat(s->meta_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        (size_t)st.st_size == n)
        return 0;
    if ((rv = write_atomic(s->meta_fd, name, p, n)) < 0)
        set_err(s, "keeping manifest at %s/.shoal/%s: %s", s->repo_path, name,
                shoal_strerror(rv));
    return rv;
}

static int open_dirs(struct shoal_store *s, const char *cache_dir)
{
    char folder[512];
    size_t len;
    int rv;

    rv = shoal_hf_repo_folder(folder, sizeof folder, shoal_manifest_repo_type(s->m),
                              shoal_manifest_repo_id(s->m));
    if (rv < 0) {
        set_err(s, "unusable repo id %s", shoal_manifest_repo_id(s->m));
        return rv;
    }
    len = strlen(cache_dir) + 1 + strlen(folder) + 1;
    s->cache_dir = strdup(cache_dir);
    s->repo_path = malloc(len);
    if (!s->cache_dir || !s->repo_path)
        return -ENOMEM;
    snprintf(s->repo_path, len, "%s/%s", cache_dir, folder);
    if ((rv = mkdir_p(cache_dir, s->gid)) < 0) {
        set_err(s, "creating cache dir %s: %s", cache_dir, shoal_strerror(rv));
        return rv;
    }
    s->cache_fd = open(cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->cache_fd < 0) {
        rv = errno_rv(errno);
        set_err(s, "opening cache dir %s: %s", cache_dir, shoal_strerror(rv));
        return rv;
    }
    if ((rv = mkdir_open(s->cache_fd, folder, &s->repo_fd)) < 0 ||
        (rv = mkdir_open(s->repo_fd, "blobs", &s->blobs_fd)) < 0 ||
        (rv = mkdir_open(s->repo_fd, ".shoal", &s->meta_fd)) < 0) {
        set_err(s, "creating %s/{blobs,.shoal}: %s", s->repo_path, shoal_strerror(rv));
        return rv;
    }
    /* Not fatal: with no records every published blob is hashed at open.
     * One anybody but us could write in would let them vouch for bytes. */
    if (mkdir_open(s->meta_fd, "verified", &s->vrec_fd) == 0) {
        struct stat st;

        if (fstat(s->vrec_fd, &st) != 0 || st.st_uid != geteuid() || (st.st_mode & 022)) {
            close(s->vrec_fd);
            s->vrec_fd = -1;
        }
    }
    /* The repo folder is the gate: any local user could read every model
     * of a 0755 folder. blobs/ too, for a cache made before: blobs created
     * in it must get the loader group. */
    if ((rv = guard_dir(s->repo_fd, s->gid)) < 0 || (rv = guard_dir(s->blobs_fd, s->gid)) < 0) {
        if (s->gid >= 0)
            set_err(s, "giving %s to group %ld (mode 02750): %s (is shoald's user in "
                    "loader-group?)", s->repo_path, s->gid, shoal_strerror(rv));
        else
            set_err(s, "making %s mode 0750: %s", s->repo_path, shoal_strerror(rv));
        return rv;
    }
    return 0;
}

/* After a failed open: removes the .incomplete files this open created.
 * They hold nothing verified (a new file is never trusted), and left behind
 * they would keep a full disk full until the next attempt. Files that were
 * there before, with a sidecar's verified chunks, stay for a resume. */
static void drop_created(struct shoal_store *s)
{
    char inc[128];

    if (!s->blobs || s->repo_fd < 0)
        return;
    for (uint32_t b = 0; b < s->nblobs; b++) {
        if (!s->blobs[b].created)
            continue;
        if (s->blobs[b].fd >= 0) {
            close(s->blobs[b].fd);
            s->blobs[b].fd = -1;
        }
        blob_inc_path(s, b, inc, sizeof inc);
        (void)unlinkat(s->meta_fd, in_part(inc), 0);
    }
}

/* ---- leftovers of a crash ---- */

/* A temp name (write_atomic, link_file) is renamed away within a call; one
 * this old was left by a process that died in between. Age, not the pid in
 * the name: a live process in another pid namespace may share the cache. */
#define TMP_STALE_S 600

static void sweep_tmp(int dirfd)
{
    int fd = dup(dirfd);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;
    struct stat st;
    time_t now = time(NULL);

    if (!dir) {
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((e = readdir(dir))) {
        if (strncmp(e->d_name, ".shoal-tmp-", 11) == 0 &&
            fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            now - st.st_mtime > TMP_STALE_S)
            (void)unlinkat(dirfd, e->d_name, 0);
    }
    closedir(dir);
}

/* Opens directory |path| under |dirfd| without creating or following
 * anything; -1 when any part is missing. */
static int open_existing(int dirfd, const char *path)
{
    char comp[NAME_MAX + 1];
    int cur = dup(dirfd), next;

    while (cur >= 0 && *path) {
        size_t len = strcspn(path, "/");
        if (len == 0 || len > NAME_MAX)
            break;
        memcpy(comp, path, len);
        comp[len] = '\0';
        next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(cur);
        cur = next;
        path += len + (path[len] == '/');
    }
    return cur;
}

/* Removes the records (vrec_*) of blobs no longer in blobs/ (deleted with
 * huggingface-cli delete-cache, or by hand), which would otherwise pile
 * up. A record is written only once its blob is in blobs/, so one found
 * without its blob is stale; should a blob be published between the look
 * and the removal, it is only hashed once more at its next open. */
static void sweep_records(struct shoal_store *s)
{
    int fd = dup(s->vrec_fd);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;
    struct stat st;

    if (!dir) {
        if (fd >= 0)
            close(fd);
        return;
    }
    /* A dup shares the offset sweep_tmp's listing left at the end. */
    rewinddir(dir);
    while ((e = readdir(dir))) {
        if (e->d_name[0] != '.' &&
            fstatat(s->blobs_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT)
            (void)unlinkat(s->vrec_fd, e->d_name, 0);
    }
    closedir(dir);
}

/* Removes stale temp files from where this release writes: its .shoal
 * state, its snapshot folder and the folders of its files. Hugging Face
 * tools would otherwise list a dead ".shoal-tmp-..." link as a file of the
 * snapshot. */
static void sweep_leftovers(struct shoal_store *s)
{
    char dirpath[SHOAL_HF_PATH_MAX];
    int snap, d;

    sweep_tmp(s->meta_fd);
    /* An older shoald made a ref's temporary file in refs/ itself. */
    if ((d = open_existing(s->repo_fd, "refs")) >= 0) {
        sweep_tmp(d);
        close(d);
    }
    if (s->vrec_fd >= 0) {
        sweep_tmp(s->vrec_fd);
        sweep_records(s);
    }
    snprintf(dirpath, sizeof dirpath, "snapshots/%s", shoal_manifest_commit(s->m));
    if ((snap = open_existing(s->repo_fd, dirpath)) < 0)
        return;
    sweep_tmp(snap);
    for (uint32_t f = 0; f < s->nfiles; f++) {
        const char *path = file(s, f)->path, *slash = strrchr(path, '/');
        if (!slash || (f > 0 && strncmp(path, file(s, f - 1)->path, (size_t)(slash - path + 1)) == 0))
            continue; /* top level, or the same folder as the file before */
        snprintf(dirpath, sizeof dirpath, "%.*s", (int)(slash - path), path);
        if ((d = open_existing(snap, dirpath)) >= 0) {
            sweep_tmp(d);
            close(d);
        }
    }
    close(snap);
}

int shoal_store_open(struct shoal_store **out, const char *cache_dir,
                     const struct shoal_manifest *m,
                     const struct shoal_store_opts *opts)
{
    struct shoal_store_opts none = {0};
    struct shoal_store *s = NULL;
    uint8_t *buf = NULL;
    bool all = false;
    uint32_t b;
    int rv;

    if (!opts)
        opts = &none;
    if (!out || !m || (!cache_dir && !(opts->flags & SHOAL_STORE_MEMORY)))
        return -EINVAL;
    s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->cache_fd = s->repo_fd = s->blobs_fd = s->meta_fd = s->snap_fd = s->vrec_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->flush_mu, NULL);
    pthread_mutex_init(&s->link_mu, NULL);
    pthread_cond_init(&s->hash_cv, NULL);
    s->m = m;
    s->flags = opts->flags;
    s->on_file = opts->on_file;
    s->on_ready = opts->on_ready;
    s->user = opts->user;
    s->flush_every = opts->flush_every ? opts->flush_every : FLUSH_EVERY_DEFAULT;
    s->flush_ms = opts->flush_ms ? opts->flush_ms : FLUSH_MS_DEFAULT;
    s->flushed_ms = mono_ms();
    s->gid = opts->has_group ? (long)opts->group : -1;
    s->opening = true;
    s->nfiles = shoal_manifest_nfiles(m);
    s->nchunks = shoal_manifest_nchunks(m);

    if (!shoal_manifest_id(m)) {
        rv = SHOAL_EBADMSG;
        set_err(s, "manifest of %s has no id (not signed or parsed)",
                shoal_manifest_repo_id(m));
        goto fail;
    }
    shoal_hex(s->idhex, shoal_manifest_id(m), SHOAL_HASH_LEN);
    if (opts->branch && !(opts->flags & SHOAL_STORE_MEMORY)) {
        if (!shoal_hf_branch_ok(opts->branch) || strlen(opts->branch) > BRANCH_MAX) {
            rv = SHOAL_EBADPATH;
            set_err(s, "unusable branch name %s", opts->branch);
            goto fail;
        }
        if (!(s->branch = strdup(opts->branch))) {
            rv = -ENOMEM;
            goto fail;
        }
    }
    s->nbytes_bits = ((size_t)s->nchunks + 7) / 8;
    s->bits = calloc(s->nbytes_bits + 1, 1);
    s->flush_bits = calloc(s->nbytes_bits + 1, 1);
    s->nbytes_files = ((size_t)s->nfiles + 7) / 8;
    s->flush_bad = calloc(s->nbytes_files + 1, 1);
    s->disk_bad = calloc(s->nbytes_files + 1, 1);
    s->flush_fds = calloc(s->nfiles + 1, sizeof *s->flush_fds);
    if (!s->bits || !s->flush_bits || !s->flush_bad || !s->disk_bad || !s->flush_fds) {
        rv = -ENOMEM;
        goto fail;
    }
    if ((rv = build_index(s)) < 0)
        goto fail;
    buf = malloc(s->max_len ? s->max_len : 1);
    if (!buf) {
        rv = -ENOMEM;
        goto fail;
    }

    if (opts->flags & SHOAL_STORE_MEMORY) {
        for (b = 0; b < s->nblobs; b++)
            if ((rv = open_blob_memory(s, b)) < 0)
                goto fail;
    } else {
        if ((rv = open_dirs(s, cache_dir)) < 0)
            goto fail;
        sweep_leftovers(s);
        if (opts->manifest && (rv = keep_manifest(s, opts->manifest, opts->manifest_len)) < 0)
            goto fail;
        sidecar_load(s);
        for (b = 0; b < s->nblobs; b++)
            if ((rv = open_blob_disk(s, b, buf, opts->flags & SHOAL_STORE_DEFER_HASH)) < 0)
                goto fail;
    }
    /* A crash after a blob's last chunk but before it was published. A
     * failure here (bad sha256, I/O) leaves the blob incomplete, not the
     * open failed: the caller sees it in file_done and last_error. */
    for (b = 0; b < s->nblobs; b++)
        if (s->blobs[b].state == BLOB_COMPLETING)
            finish_blob(s, b, 0, NULL);
    pthread_mutex_lock(&s->mu);
    all = all_done_locked(s);
    pthread_mutex_unlock(&s->mu);
    if (all)
        write_ref_owed(s, s->branch);
    /* Replace a stale or discarded sidecar now rather than at the first
     * batch; a failure here shows again at the next flush. */
    shoal_store_flush(s);
    s->flush_gap = 0; /* the first chunk verified from here on is kept at once */
    s->opening = false;
    *out = s;
    s = NULL;
    rv = 0;
    goto out;
fail:
    if (opts->err && opts->errlen)
        snprintf(opts->err, opts->errlen, "%s", s->err[0] ? s->err : shoal_strerror(rv));
    drop_created(s);
    shoal_store_free(s);
out:
    free(buf);
    return rv;
}

int shoal_store_hash_found(struct shoal_store *s, uint32_t *hashed)
{
    uint8_t *buf = NULL;
    uint32_t n = 0;
    int rv = 0, brv;

    if (hashed)
        *hashed = 0;
    if (!s || (s->flags & SHOAL_STORE_MEMORY))
        return 0;
    buf = malloc(s->max_len ? s->max_len : 1);
    if (!buf)
        return -ENOMEM;
    for (uint32_t b = 0; b < s->nblobs; b++) {
        const struct blob *bl = &s->blobs[b];
        bool pending, ready, completing;

        pthread_mutex_lock(&s->mu);
        pending = bl->pending;
        pthread_mutex_unlock(&s->mu);
        if (!pending)
            continue;
        /* As at open, without deferring: hashed, then recorded and linked
         * when right, or repaired in a copy of its own when wrong. The
         * blob is still pending meanwhile, so no put writes into it. */
        brv = open_blob_disk(s, b, buf, false);
        n++;
        pthread_mutex_lock(&s->mu);
        s->blobs[b].pending = false;
        s->npending--;
        s->pending_bytes -= file(s, bl->primary)->size;
        if (brv < 0) {
            /* Withheld until a later open, like a blob whose partial names
             * are taken (file_withheld): its bytes may be right, but it
             * could not be put in place (a snapshot entry it cannot
             * write), so none of it is fetched either (SHOAL_EBADPATH:
             * the caller does not fetch a blocked file). Opening may have
             * counted it done and kept its descriptor before the link
             * failed: undone, or the release would count as complete
             * without it and say the file is ready. */
            if (s->blobs[b].state == BLOB_DONE)
                s->ndone--;
            s->blobs[b].ready = false;
            if (s->blobs[b].fd >= 0) {
                close(s->blobs[b].fd);
                s->blobs[b].fd = -1;
            }
            blob_block(s, b);
            if (rv == 0)
                rv = brv;
        }
        ready = bl->state == BLOB_DONE && bl->ready && !bl->bad;
        completing = bl->state == BLOB_COMPLETING;
        pthread_mutex_unlock(&s->mu);
        /* A repair copy whose every chunk checked right. */
        if (completing)
            finish_blob(s, b, 0, NULL);
        else if (ready && s->on_ready)
            for (uint32_t k = 0; k < bl->fcount; k++)
                s->on_ready(s->user, s->blob_files[bl->fpos + k], 0);
    }
    free(buf);
    if (n > 0) {
        (void)write_ref_if_done(s, false);
        shoal_store_flush(s);
    }
    if (hashed)
        *hashed = n;
    return rv;
}

void shoal_store_pending(struct shoal_store *s, uint32_t *files, uint64_t *bytes)
{
    uint32_t n = 0;
    uint64_t sz = 0;

    if (s) {
        pthread_mutex_lock(&s->mu);
        n = s->npending;
        sz = s->pending_bytes;
        pthread_mutex_unlock(&s->mu);
    }
    if (files)
        *files = n;
    if (bytes)
        *bytes = sz;
}

bool shoal_store_file_pending(struct shoal_store *s, uint32_t fi)
{
    bool p;

    if (!s || fi >= s->nfiles)
        return false;
    pthread_mutex_lock(&s->mu);
    p = s->blobs[s->file_blob[fi]].pending;
    pthread_mutex_unlock(&s->mu);
    return p;
}

void shoal_store_discard_partials(struct shoal_store *s, uint32_t *files, uint64_t *bytes)
{
    uint32_t n = 0;
    uint64_t sz = 0;

    if (s && !(s->flags & SHOAL_STORE_MEMORY)) {
        pthread_mutex_lock(&s->mu);
        s->discard = true;
        for (uint32_t b = 0; b < s->nblobs; b++)
            if (s->blobs[b].fd >= 0 && s->blobs[b].state == BLOB_INCOMPLETE) {
                n++;
                sz += file(s, s->blobs[b].primary)->size;
            }
        pthread_mutex_unlock(&s->mu);
    }
    if (files)
        *files = n;
    if (bytes)
        *bytes = sz;
}

void shoal_store_free(struct shoal_store *s)
{
    uint32_t b;
    char inc[128];

    if (!s)
        return;
    /* Only a partial file this store holds open (so it is ours: the
     * shared name's lock, or our own name), still filling. Removed before
     * the flush, so the flush does not sync data about to go; one that
     * stays (unlink failed) is synced as usual. */
    if (s->discard && s->blobs && s->meta_fd >= 0)
        for (b = 0; b < s->nblobs; b++)
            if (s->blobs[b].fd >= 0 && s->blobs[b].state == BLOB_INCOMPLETE) {
                blob_inc_path(s, b, inc, sizeof inc);
                if (unlinkat(s->meta_fd, in_part(inc), 0) == 0)
                    s->blobs[b].dirty = false;
            }
    if (!s->opening)
        shoal_store_flush(s);
    if (s->blobs)
        for (b = 0; b < s->nblobs; b++) {
            if (s->blobs[b].fd >= 0)
                close(s->blobs[b].fd);
            free(s->blobs[b].repair_msg);
            free(s->blobs[b].note);
            pthread_mutex_destroy(&s->blobs[b].write_mu);
        }
    if (s->snap_fd >= 0)
        close(s->snap_fd);
    if (s->meta_fd >= 0)
        close(s->meta_fd);
    if (s->vrec_fd >= 0)
        close(s->vrec_fd);
    if (s->blobs_fd >= 0)
        close(s->blobs_fd);
    if (s->repo_fd >= 0)
        close(s->repo_fd);
    if (s->cache_fd >= 0)
        close(s->cache_fd);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->flush_mu);
    pthread_mutex_destroy(&s->link_mu);
    pthread_cond_destroy(&s->hash_cv);
    while (s->nspare > 0)
        free(s->spare[--s->nspare]);
    free(s->file_blob);
    free(s->blob_files);
    free(s->blobs);
    free(s->order);
    free(s->group);
    free(s->bits);
    free(s->flush_bits);
    free(s->flush_bad);
    free(s->disk_bad);
    free(s->flush_fds);
    free(s->cache_dir);
    free(s->repo_path);
    free(s->branch);
    free(s);
}

/* ---- chunks ---- */

int shoal_store_put_chunk(struct shoal_store *s, uint32_t idx, const uint8_t *data,
                          uint32_t len)
{
    return shoal_store_put_chunk_first(s, idx, data, len, NULL);
}

int shoal_store_put_chunk_first(struct shoal_store *s, uint32_t idx, const uint8_t *data,
                                uint32_t len, bool *first)
{
    uint8_t id[SHOAL_HASH_LEN];
    const struct shoal_mf_chunk *c;
    uint32_t *claimed = NULL, *touched;
    uint32_t nclaimed = 0, ntouched = 0, g, glen, k;
    bool flush = false;
    int rv = 0;

    if (first)
        *first = false;
    if (!s || idx >= s->nchunks)
        return SHOAL_ENOTFOUND;
    c = chunk(s, idx);
    if (len != c->len || !data)
        return SHOAL_EBADHASH;
    shoal_chunk_id(id, data, len);
    if (sodium_memcmp(id, c->id, SHOAL_HASH_LEN) != 0)
        return SHOAL_EBADHASH;

    g = s->group[idx];
    glen = group_len(s, g);
    claimed = malloc(2 * (size_t)glen * sizeof *claimed);
    if (!claimed)
        return -ENOMEM;
    touched = claimed + glen;

    for (k = g; k < g + glen; k++) {
        uint32_t j = s->order[k];
        const struct shoal_mf_chunk *cj = chunk(s, j);
        uint32_t b = s->file_blob[cj->file];
        bool skip;
        int fd;

        /* Other files with this blob's sha256 get the bytes with it. */
        if (s->blobs[b].primary != cj->file)
            continue;
        pthread_mutex_lock(&s->mu);
        skip = s->blobs[b].state != BLOB_INCOMPLETE || s->blobs[b].blocked ||
               s->blobs[b].pending || bit_get(s->bits, j);
        fd = s->blobs[b].fd;
        pthread_mutex_unlock(&s->mu);
        if (skip)
            continue;
        pthread_mutex_lock(&s->blobs[b].write_mu);
        rv = pwrite_all(fd, data, len, cj->offset);
        pthread_mutex_unlock(&s->blobs[b].write_mu);
        if (rv < 0) {
            char inc[128];

            blob_inc_path(s, b, inc, sizeof inc);
            set_err(s, "writing %u bytes at offset %llu of %s (%s/%s): %s", len,
                    (unsigned long long)cj->offset, file(s, cj->file)->path,
                    s->repo_path ? s->repo_path : "memory", inc, shoal_strerror(rv));
            goto out;
        }
        /* Start writing it out now, so the fsync before publishing finds
         * little left to do. Only a hint: errors surface at that fsync. */
        if (!(s->flags & SHOAL_STORE_MEMORY))
            (void)sync_file_range(fd, (off_t)cj->offset, len, SYNC_FILE_RANGE_WRITE);
    }

    pthread_mutex_lock(&s->mu);
    for (k = g; k < g + glen; k++) {
        uint32_t j = s->order[k];
        const struct shoal_mf_chunk *cj = chunk(s, j);
        uint32_t b = s->file_blob[cj->file];
        struct blob *bl = &s->blobs[b];

        /* A withheld file with nowhere to write holds nothing; one not
         * hashed yet (pending) is not written either. */
        if (bit_get(s->bits, j) || bl->blocked || bl->pending)
            continue;
        mark(s, j);
        if (j == idx && first)
            *first = true;
        if (bl->primary != cj->file || bl->state != BLOB_INCOMPLETE)
            continue;
        bl->dirty = true;
        if (--bl->remaining == 0) {
            bl->state = BLOB_COMPLETING;
            claimed[nclaimed++] = b;
        } else {
            touched[ntouched++] = b;
        }
    }
    if (++s->since_flush >= s->flush_every || mono_ms() - s->flushed_ms >= s->flush_gap)
        flush = true;
    pthread_mutex_unlock(&s->mu);

    /* A blob may be touched twice (the chunk occurs twice in its file):
     * the second advance finds nothing left to do. */
    for (k = 0; k < ntouched; k++)
        hash_advance(s, touched[k], idx, data);
    /* A blob's secondary files were marked above; the primary's chunks in
     * another blob (different file, same chunk) were marked too. */
    for (k = 0; k < nclaimed; k++) {
        pthread_mutex_lock(&s->mu);
        sync_blob_bits(s, claimed[k]);
        pthread_mutex_unlock(&s->mu);
        finish_blob(s, claimed[k], idx, data);
    }
    if (flush)
        shoal_store_flush(s);
out:
    free(claimed);
    return rv;
}

int shoal_store_read_chunk(struct shoal_store *s, uint32_t idx, uint8_t *buf, uint32_t cap)
{
    const struct shoal_mf_chunk *c;
    bool have;
    int fd, rv;

    if (!s || idx >= s->nchunks)
        return SHOAL_ENOTFOUND;
    c = chunk(s, idx);
    if (cap < c->len) {
        rv = SHOAL_ELIMIT;
        goto out;
    }
    pthread_mutex_lock(&s->mu);
    have = bit_get(s->bits, idx);
    fd = s->blobs[s->file_blob[c->file]].fd;
    pthread_mutex_unlock(&s->mu);
    if (!have) {
        rv = SHOAL_ENOTFOUND;
        goto out;
    }
    /* Secondary files share the primary's offsets (checked at open). */
    if ((rv = pread_all(fd, buf, c->len, c->offset)) == 0)
        rv = (int)c->len;
out:
    return rv;
}

/* True when bytes [off, off+len) of |fd| are all in the page cache. Maps
 * the range without touching it (no fault, no read) just to ask mincore. */
static bool all_cached(int fd, uint64_t off, uint32_t len)
{
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t start, span;
    unsigned char vec[1024], *v = vec;
    size_t npages;
    bool all = false;
    void *map;

    if (pg <= 0 || len == 0)
        return false;
    start = off & ~((uint64_t)pg - 1);
    span = off + len - start;
    npages = (size_t)((span + (uint64_t)pg - 1) / (uint64_t)pg);
    if (npages > sizeof vec && !(v = malloc(npages)))
        return false;
    map = mmap(NULL, (size_t)span, PROT_READ, MAP_SHARED, fd, (off_t)start);
    if (map != MAP_FAILED) {
        if (mincore(map, (size_t)span, v) == 0) {
            all = true;
            for (size_t i = 0; i < npages && all; i++)
                all = v[i] & 1;
        }
        munmap(map, (size_t)span);
    }
    if (v != vec)
        free(v);
    return all;
}

int shoal_store_chunk_file(struct shoal_store *s, uint32_t idx, int *fd, uint64_t *off)
{
    const struct shoal_mf_chunk *c;
    bool have;
    int bfd = -1, e = 0, rv = 0;

    if (!s || idx >= s->nchunks)
        return SHOAL_ENOTFOUND;
    c = chunk(s, idx);
    /* The blob's descriptor may be closed and reopened when it completes:
     * dup it under mu, so the caller's stays valid whatever happens here. */
    pthread_mutex_lock(&s->mu);
    have = bit_get(s->bits, idx);
    if (have && (bfd = fcntl(s->blobs[s->file_blob[c->file]].fd, F_DUPFD_CLOEXEC, 0)) < 0)
        e = errno;
    pthread_mutex_unlock(&s->mu);
    if (!have)
        return SHOAL_ENOTFOUND;
    if (bfd < 0)
        return errno_rv(e);
    /* Secondary files share the primary's offsets (checked at open). */
    if (!all_cached(bfd, c->offset, c->len)) {
        rv = SHOAL_EAGAIN;
        goto out;
    }
    *fd = bfd;
    *off = c->offset;
    bfd = -1;
out:
    if (bfd >= 0)
        close(bfd);
    return rv;
}

bool shoal_store_has(struct shoal_store *s, uint32_t idx)
{
    bool v;

    if (!s || idx >= s->nchunks)
        return false;
    pthread_mutex_lock(&s->mu);
    v = bit_get(s->bits, idx);
    pthread_mutex_unlock(&s->mu);
    return v;
}

uint32_t shoal_store_count(struct shoal_store *s)
{
    uint32_t v;

    pthread_mutex_lock(&s->mu);
    v = s->count;
    pthread_mutex_unlock(&s->mu);
    return v;
}

uint64_t shoal_store_bytes(struct shoal_store *s)
{
    uint64_t v;

    pthread_mutex_lock(&s->mu);
    v = s->bytes;
    pthread_mutex_unlock(&s->mu);
    return v;
}

int shoal_store_bitfield(struct shoal_store *s, uint8_t *out, size_t cap)
{
    if (cap < s->nbytes_bits)
        return SHOAL_ELIMIT;
    pthread_mutex_lock(&s->mu);
    memcpy(out, s->bits, s->nbytes_bits);
    pthread_mutex_unlock(&s->mu);
    return (int)s->nbytes_bits;
}

int shoal_store_find_chunk(struct shoal_store *s, const uint8_t id[32])
{
    int64_t g = find_group(s, id);

    return g < 0 ? SHOAL_ENOTFOUND : (int)s->order[g];
}

bool shoal_store_file_done(struct shoal_store *s, uint32_t fi)
{
    bool v;

    if (!s || fi >= s->nfiles)
        return false;
    pthread_mutex_lock(&s->mu);
    v = s->blobs[s->file_blob[fi]].state == BLOB_DONE;
    pthread_mutex_unlock(&s->mu);
    return v;
}

bool shoal_store_file_ready(struct shoal_store *s, uint32_t fi)
{
    bool v;

    if (!s || fi >= s->nfiles)
        return false;
    pthread_mutex_lock(&s->mu);
    v = s->blobs[s->file_blob[fi]].ready && !s->blobs[s->file_blob[fi]].bad;
    pthread_mutex_unlock(&s->mu);
    return v;
}

bool shoal_store_complete(struct shoal_store *s)
{
    bool v;

    pthread_mutex_lock(&s->mu);
    v = all_done_locked(s) && !s->ref_owed;
    pthread_mutex_unlock(&s->mu);
    return v;
}

int shoal_store_file_open(struct shoal_store *s, uint32_t fi, int *fd)
{
    char path[128];
    bool ready, done, bad;
    int bfd, nfd;

    if (!s || fi >= s->nfiles)
        return SHOAL_ENOTFOUND;
    pthread_mutex_lock(&s->mu);
    ready = s->blobs[s->file_blob[fi]].ready;
    bad = s->blobs[s->file_blob[fi]].bad;
    done = s->blobs[s->file_blob[fi]].state == BLOB_DONE;
    bfd = s->blobs[s->file_blob[fi]].fd;
    pthread_mutex_unlock(&s->mu);
    if (bad)
        return SHOAL_EBADHASH;
    if (!ready)
        return SHOAL_ENOTFOUND;
    if ((s->flags & SHOAL_STORE_MEMORY) || (!done && bfd >= 0)) {
        /* A fresh read-only description of the inode the store filled (the
         * memfd's pages; on disk, a blob whose rename may be under way, so
         * no name of it is stable). |bfd| stays open until the store is
         * freed. */
        snprintf(path, sizeof path, "/proc/self/fd/%d", bfd);
        nfd = open(path, O_RDONLY | O_CLOEXEC);
    } else {
        shoal_hf_blob_path(path, sizeof path, file(s, fi), false);
        nfd = openat(s->repo_fd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0 && errno == ENOENT && bfd >= 0) {
            /* The cache entry was removed under us (rm, huggingface-cli
             * delete-cache): the verified inode is still the one we hold
             * open, read-only, so the loader gets it rather than nothing. */
            snprintf(path, sizeof path, "/proc/self/fd/%d", bfd);
            nfd = open(path, O_RDONLY | O_CLOEXEC);
            if (nfd >= 0)
                return *fd = nfd, SHOAL_STORE_UNLINKED;
            errno = ENOENT;
        }
    }
    if (nfd < 0)
        return -errno;
    *fd = nfd;
    return 0;
}

void shoal_store_file_suspect(struct shoal_store *s, uint32_t fi, bool bad)
{
    const struct blob *bl;
    bool was, now;

    if (!s || fi >= s->nfiles)
        return;
    bl = &s->blobs[s->file_blob[fi]];
    pthread_mutex_lock(&s->mu);
    was = bl->ready && !bl->bad;
    s->blobs[s->file_blob[fi]].bad = bad;
    now = bl->ready && !bl->bad;
    pthread_mutex_unlock(&s->mu);
    /* Found right after all: whoever waited for it while it was suspect
     * (a loader that asked meanwhile) hears it now, as at set_ready. A
     * blob whose chunks were taken back is not ready here: it becomes so
     * only when its whole sha256 matches again. */
    if (was || !now || s->opening || !s->on_ready)
        return;
    for (uint32_t k = 0; k < bl->fcount; k++)
        s->on_ready(s->user, s->blob_files[bl->fpos + k], 0);
}

/* Under mu: chunks |chunks| of file |fi| (blob |b|, not completing) lose
 * their verified bits, and the blob is filling again. */
static void forget_locked(struct shoal_store *s, uint32_t b, uint32_t fi, const uint32_t *chunks,
                          uint32_t n)
{
    struct blob *bl = &s->blobs[b];
    const struct shoal_mf_file *f = file(s, fi), *pf = file(s, bl->primary);

    /* The running sha256 may cover a chunk that is going: start it over. */
    while (bl->hashing)
        pthread_cond_wait(&s->hash_cv, &s->mu);
    for (uint32_t i = 0; i < n; i++)
        unmark(s, pf->first_chunk + (chunks[i] - f->first_chunk));
    sync_blob_bits(s, b);
    bl->hashed = 0;
    bl->dirty = true;
    bl->state = BLOB_INCOMPLETE;
    /* No longer whole: ready again only through set_ready, once its sha256
     * matches, whatever is said of it meanwhile (file_suspect). */
    bl->ready = false;
}

/* After a failed take-back: writes the sidecar so that it marks the blob
 * bad (see flush), keeping last_error's message (why the take-back failed)
 * and adding to it when the mark could not be written either. */
static void keep_bad_mark(struct shoal_store *s, const char *path)
{
    char why[sizeof s->err], err[sizeof s->err];
    int rv;

    shoal_store_last_error(s, why, sizeof why);
    if ((rv = shoal_store_flush(s)) == 0) {
        set_err(s, "%s", why);
        return;
    }
    shoal_store_last_error(s, err, sizeof err);
    set_err(s, "%s; and %s cannot be marked for repair (%s): a restart without "
            "--verify-store would trust it", why, path, err);
}

int shoal_store_take_back(struct shoal_store *s, uint32_t fi, const uint32_t *chunks, uint32_t n)
{
    const struct shoal_mf_file *f, *pf;
    struct blob *bl;
    uint8_t *skip = NULL, *unread;
    uint32_t *list = NULL, nlist = 0, b;
    size_t nb;
    char own[128];
    int fd = -1, orig = -1, rv = 0;
    bool was_ready;

    if (!s || fi >= s->nfiles)
        return SHOAL_ENOTFOUND;
    if (s->flags & SHOAL_STORE_MEMORY)
        return -EROFS; /* a sealed memfd is never written again */
    b = s->file_blob[fi];
    bl = &s->blobs[b];
    f = file(s, fi);
    pf = file(s, bl->primary);
    for (uint32_t i = 0; i < n; i++)
        if (chunks[i] < f->first_chunk || chunks[i] - f->first_chunk >= f->nchunks)
            return SHOAL_ENOTFOUND;
    pthread_mutex_lock(&s->mu);
    if (bl->state == BLOB_COMPLETING) {
        /* Being hashed and published right now: whatever it finds decides. */
        pthread_mutex_unlock(&s->mu);
        return SHOAL_EBUSY;
    }
    bl->bad = true;
    if (bl->state == BLOB_INCOMPLETE) {
        /* Still filling (or not published): nothing to copy, and its
         * descriptor is open for writing. A failed sidecar write is tried
         * again at the next flush: until then a restart may trust these
         * chunks, but the file is not published and is hashed whole before
         * it is. */
        forget_locked(s, b, fi, chunks, n);
        pthread_mutex_unlock(&s->mu);
        (void)shoal_store_flush(s);
        return 0;
    }
    pthread_mutex_unlock(&s->mu);

    /* Positions in the file: those taken back, and those found unreadable
     * while copying, which go too. */
    nb = ((size_t)pf->nchunks + 7) / 8 + 1;
    skip = calloc(2, nb);
    list = malloc(((size_t)pf->nchunks + 1) * sizeof *list);
    if (!skip || !list) {
        rv = -ENOMEM;
        goto out;
    }
    unread = skip + nb;
    for (uint32_t i = 0; i < n; i++)
        bit_set(skip, chunks[i] - f->first_chunk);

    pthread_mutex_lock(&s->mu);
    if (bl->state != BLOB_DONE) {
        pthread_mutex_unlock(&s->mu);
        rv = SHOAL_EBUSY;
        goto out;
    }
    /* Done, so every bit is set: puts skip it while COMPLETING, and nothing
     * publishes it while it is copied. The published descriptor is kept
     * to go back to if the sidecar cannot say what was taken back. */
    bl->state = BLOB_COMPLETING;
    orig = fcntl(bl->fd, F_DUPFD_CLOEXEC, 0);
    pthread_mutex_unlock(&s->mu);
    own_inc_path(s, b, own, sizeof own);
    if (orig < 0) {
        rv = errno_rv(errno);
        set_err(s, "duplicating the descriptor of %s: %s", pf->path, shoal_strerror(rv));
        goto fail;
    }

    /* The blob keeps its name (other releases link to it); the repair is
     * a copy under a partial name of this release's own (the shared one
     * may be another release's to fill). */
    if ((rv = repair_copy(s, b, orig, skip, unread, &fd)) < 0)
        goto fail;
    /* In place of the old descriptor, atomically: readers on other threads
     * took its number under mu and may be reading from it now (the copy
     * holds the same bytes, but for the chunks going). */
    if (dup3(fd, bl->fd, O_CLOEXEC) < 0) {
        rv = -errno;
        set_err(s, "reopening %s/%s: %s", s->repo_path, own, shoal_strerror(rv));
        (void)unlinkat(s->meta_fd, in_part(own), 0);
        goto fail;
    }
    close(fd);
    fd = -1;
    for (uint32_t i = 0; i < pf->nchunks; i++)
        if (bit_get(skip, i) || bit_get(unread, i))
            list[nlist++] = pf->first_chunk + i;
    pthread_mutex_lock(&s->mu);
    bl->own_inc = true;
    was_ready = bl->ready;
    forget_locked(s, b, bl->primary, list, nlist);
    /* Still no puts until the sidecar says these chunks are missing. */
    bl->state = BLOB_COMPLETING;
    pthread_mutex_unlock(&s->mu);
    /* Else a restart would trust them (and the published blob) again: the
     * sidecar would say they are there. The partial file alone would not
     * save that (open_blob_disk hashes blobs/<sha> when it finds one), but
     * a failed write means no room, which the repair needs anyway. */
    if ((rv = shoal_store_flush(s)) < 0) {
        char err[512];

        shoal_store_last_error(s, err, sizeof err);
        /* Removed while its lock is still held (the dup3 below closes the
         * copy's last descriptor). */
        (void)unlinkat(s->meta_fd, in_part(own), 0);
        pthread_mutex_lock(&s->mu);
        (void)dup3(orig, bl->fd, O_CLOEXEC);
        bl->own_inc = false;
        blob_set_all(s, b, true);
        bl->dirty = false;
        bl->ready = was_ready; /* a file withheld at open stays so */
        bl->state = BLOB_DONE;
        pthread_mutex_unlock(&s->mu);
        set_err(s, "%s; %s/%s removed, %s left as it was", err, s->repo_path, own, pf->path);
        goto out;
    }
    /* Our snapshot links go last, so a failure above leaves them as they
     * were. */
    unlink_links(s, b);
    pthread_mutex_lock(&s->mu);
    bl->state = BLOB_INCOMPLETE;
    s->ndone--;
    pthread_mutex_unlock(&s->mu);
    rv = 0;
    goto out;
fail:
    if (fd >= 0)
        close(fd);
    pthread_mutex_lock(&s->mu);
    bl->state = BLOB_DONE;
    pthread_mutex_unlock(&s->mu);
    /* The file stays bad: the sidecar says so, or a restart (without
     * --verify-store) would trust and serve it again. */
    keep_bad_mark(s, pf->path);
out:
    /* Published and found wrong: no record may vouch for it any more
     * (another release sharing it, a restart), whether its repair started
     * or not; the repair is published under a new inode, with a record of
     * its own. Last: the partial file or the sidecar's mark above already
     * has a restart hash it, and they need the room more. */
    vrec_forget(s, pf);
    if (orig >= 0)
        close(orig);
    free(skip);
    free(list);
    return rv;
}

int shoal_store_file_withheld(struct shoal_store *s, uint32_t fi, char *why, size_t cap)
{
    const struct blob *bl;
    int v;

    if (why && cap)
        why[0] = '\0';
    if (!s || fi >= s->nfiles)
        return 0;
    bl = &s->blobs[s->file_blob[fi]];
    pthread_mutex_lock(&s->mu);
    v = bl->bad || bl->blocked ? bl->repair_rv : 0;
    if (v != 0 && why && cap)
        snprintf(why, cap, "%s", bl->repair_msg ? bl->repair_msg : shoal_strerror(v));
    pthread_mutex_unlock(&s->mu);
    return v;
}

void shoal_store_open_hashed(const struct shoal_store *s, uint32_t *files, uint64_t *bytes,
                             uint32_t *wrong)
{
    /* Set while opening only: no lock needed once open has returned. */
    if (files)
        *files = s ? s->open_hashed : 0;
    if (bytes)
        *bytes = s ? s->open_hashed_bytes : 0;
    if (wrong)
        *wrong = s ? s->open_wrong : 0;
}

int shoal_store_file_note(struct shoal_store *s, uint32_t fi, char *out, size_t cap)
{
    const struct blob *bl;
    int v = 0;

    if (out && cap)
        out[0] = '\0';
    if (!s || fi >= s->nfiles)
        return 0;
    bl = &s->blobs[s->file_blob[fi]];
    pthread_mutex_lock(&s->mu);
    if (bl->note && bl->primary == fi) {
        v = 1;
        if (out && cap)
            snprintf(out, cap, "%s", bl->note);
    }
    pthread_mutex_unlock(&s->mu);
    return v;
}

int shoal_store_file_path(struct shoal_store *s, uint32_t fi, char *out, size_t cap)
{
    int n;

    if ((s->flags & SHOAL_STORE_MEMORY) || !shoal_store_file_done(s, fi))
        return SHOAL_ENOTFOUND;
    n = snprintf(out, cap, "%s/snapshots/%s/%s", s->repo_path,
                 shoal_manifest_commit(s->m), file(s, fi)->path);
    return n < 0 || (size_t)n >= cap ? SHOAL_ELIMIT : 0;
}

static int set_branch(struct shoal_store *s, const char *branch, bool checked)
{
    char *dup;
    bool all;

    if (s->flags & SHOAL_STORE_MEMORY)
        return 0;
    if (!shoal_hf_branch_ok(branch) || strlen(branch) > BRANCH_MAX) {
        set_err(s, "unusable branch name %s", branch);
        return SHOAL_EBADPATH;
    }
    if (!(dup = strdup(branch)))
        return -ENOMEM;
    pthread_mutex_lock(&s->mu);
    free(s->branch);
    s->branch = dup;
    all = all_done_locked(s);
    pthread_mutex_unlock(&s->mu);
    /* Complete already: no completion will come to write it. */
    return all ? write_ref(s, branch, checked) : 0;
}

int shoal_store_set_branch(struct shoal_store *s, const char *branch)
{
    return set_branch(s, branch, false);
}

int shoal_store_set_branch_checked(struct shoal_store *s, const char *branch)
{
    return set_branch(s, branch, true);
}

void shoal_store_last_error(struct shoal_store *s, char *out, size_t cap)
{
    if (!cap)
        return;
    pthread_mutex_lock(&s->mu);
    snprintf(out, cap, "%s", s->err);
    pthread_mutex_unlock(&s->mu);
}

/* ---- dedup from other releases in the cache ---- */

/* Reads a whole small file under |dfd| (at most |max| bytes). */
static int read_small(int dfd, const char *name, size_t max, uint8_t **out, size_t *n)
{
    struct stat st;
    uint8_t *p = NULL;
    int fd, rv;

    fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        rv = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t)st.st_size > max) {
        rv = SHOAL_ETOOBIG;
        goto out;
    }
    p = malloc((size_t)st.st_size);
    if (!p) {
        rv = -ENOMEM;
        goto out;
    }
    if ((rv = pread_all(fd, p, (size_t)st.st_size, 0)) < 0)
        goto out;
    *out = p;
    *n = (size_t)st.st_size;
    p = NULL;
out:
    free(p);
    close(fd);
    return rv;
}

/* Copies what this store needs from the published blobs of manifest |om|
 * (whose repo folder is |repo_fd|). */
static int fill_from_manifest(struct shoal_store *s, const struct shoal_manifest *om,
                              int blobs_fd, uint8_t *buf, uint32_t *copied)
{
    char fin[128];
    uint32_t nf = shoal_manifest_nfiles(om), i, k;
    struct stat st;
    int rv = 0;

    for (i = 0; i < nf; i++) {
        const struct shoal_mf_file *of = shoal_manifest_file(om, i);
        int fd = -1;

        for (k = 0; k < of->nchunks; k++) {
            const struct shoal_mf_chunk *oc = shoal_manifest_chunk(om, of->first_chunk + k);
            int64_t g = find_group(s, oc->id);
            uint32_t idx;

            if (g < 0)
                continue;
            idx = s->order[g];
            if (shoal_store_has(s, idx) || oc->len != chunk(s, idx)->len)
                continue;
            if (fd < 0) {
                shoal_hf_blob_path(fin, sizeof fin, of, false);
                fd = openat(blobs_fd, in_blobs(fin), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                    break;
                if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
                    (uint64_t)st.st_size != of->size)
                    break;
            }
            if (pread_all(fd, buf, oc->len, oc->offset) < 0)
                break;
            rv = shoal_store_put_chunk(s, idx, buf, oc->len);
            if (rv == SHOAL_EBADHASH) {
                rv = 0;
                continue;
            }
            if (rv < 0)
                break;
            (*copied)++;
        }
        if (fd >= 0)
            close(fd);
        if (rv < 0)
            break;
    }
    return rv;
}

int shoal_store_retry_publish(struct shoal_store *s, uint32_t *tried)
{
    uint32_t n = 0;
    int rv = 0;

    for (uint32_t b = 0; s && b < s->nblobs; b++) {
        bool take;

        pthread_mutex_lock(&s->mu);
        /* Every chunk in, yet not filling and not done: a publish failed.
         * Taking it to COMPLETING keeps a racing put from finishing it
         * twice. */
        take = s->blobs[b].state == BLOB_INCOMPLETE && s->blobs[b].remaining == 0;
        if (take)
            s->blobs[b].state = BLOB_COMPLETING;
        pthread_mutex_unlock(&s->mu);
        if (!take)
            continue;
        n++;
        int r = finish_blob(s, b, UINT32_MAX, NULL);
        if (r != 0 && rv == 0)
            rv = r;
    }
    /* A ref that could not be written when the last file was published. */
    if (s) {
        int r = write_ref_if_done(s, true);
        if (r != 1)
            n++;
        if (r != 1 && r != 0 && rv == 0)
            rv = r;
    }
    if (tried)
        *tried = n;
    return rv;
}

static bool has_suffix(const char *name, const char *suf)
{
    size_t n = strlen(name), k = strlen(suf);

    return n > k && strcmp(name + n - k, suf) == 0;
}

int shoal_store_fill_from_local(struct shoal_store *s, uint32_t *copied)
{
    DIR *top = NULL, *meta = NULL;
    struct dirent *de, *me;
    uint8_t *buf = NULL;
    uint32_t n = 0;
    int rv = 0, fd;

    if (copied)
        *copied = 0;
    if (!s || (s->flags & SHOAL_STORE_MEMORY) || s->nchunks == 0)
        return 0;
    buf = malloc(s->max_len);
    fd = dup(s->cache_fd);
    if (!buf || fd < 0 || !(top = fdopendir(fd))) {
        if (fd >= 0 && !top)
            close(fd);
        rv = buf ? -errno : -ENOMEM;
        goto out;
    }
    while (rv == 0 && (de = readdir(top))) {
        int repo_fd, meta_fd;

        if (strncmp(de->d_name, "models--", 8) != 0 && strncmp(de->d_name, "datasets--", 10) != 0)
            continue;
        repo_fd = openat(s->cache_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (repo_fd < 0)
            continue;
        meta_fd = openat(repo_fd, ".shoal", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (meta_fd < 0 || !(meta = fdopendir(meta_fd))) {
            if (meta_fd >= 0)
                close(meta_fd);
            close(repo_fd);
            continue;
        }
        while (rv == 0 && (me = readdir(meta))) {
            struct shoal_manifest *om = NULL;
            uint8_t *bytes = NULL;
            size_t len = 0;

            if (!has_suffix(me->d_name, ".manifest") ||
                strncmp(me->d_name, s->idhex, sizeof s->idhex - 1) == 0)
                continue;
            if (read_small(dirfd(meta), me->d_name, KEPT_MANIFEST_MAX, &bytes, &len) == 0 &&
                shoal_manifest_parse(&om, bytes, len, NULL, NULL) == 0) {
                int bfd = openat(repo_fd, "blobs",
                                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (bfd >= 0) {
                    rv = fill_from_manifest(s, om, bfd, buf, &n);
                    close(bfd);
                }
            }
            shoal_manifest_free(om);
            free(bytes);
        }
        closedir(meta);
        meta = NULL;
        close(repo_fd);
    }
out:
    if (top)
        closedir(top);
    free(buf);
    if (copied)
        *copied = n;
    return rv;
}
