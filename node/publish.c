/* SPDX-License-Identifier: MIT */
/*
 * `shoal publish` (see publish.h). One private libuv loop drives the Hub
 * client; files are fetched one after another, each as a single ranged GET
 * streamed straight into the chunker, so memory stays at one receive buffer
 * plus the chunk list of the current file. A file's chunks are added to the
 * manifest only after its hash checked out, because the manifest wants the
 * SHA-256 with the file and a git-stored file's SHA-256 is known only at the
 * end.
 */
#include "publish.h"
#include "cliutil.h"

#include "buf.h"
#include "error.h"
#include "hash.h"
#include "keys.h"
#include "smallfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#define PUB_MANIFEST_MAX ((size_t)512 << 20)
#define PUB_PROGRESS_NS (100 * 1000 * 1000ull)
#define PUB_PREVIOUS_MAX 16

struct pub_chunk {
    uint8_t id[SHOAL_HASH_LEN];
    uint32_t len;
};

struct pub {
    const struct shoal_publish_opts *o;
    uv_loop_t loop;
    struct shoal_hub *hub;
    struct shoal_hub_release *rel;
    struct shoal_chunker *chunker;
    struct shoal_manifest *m;
    struct shoal_cdc_params params;
    size_t cur;                 /* file being streamed */
    struct shoal_gitsha1 git;
    struct pub_chunk *chunks;   /* current file's chunks */
    size_t nchunks, capchunks;
    uint32_t total_chunks;
    uint64_t file_done, total_done, total_size;
    uint64_t last_progress_ns;
    enum shoal_publish_progress_mode mode;
    struct shoal_seckey sk;
    struct shoal_buf reuse;     /* signed bytes of a manifest reused as is */
    bool reused;
    /* Earlier manifests whose files' chunk lists may be reused
     * (shoal_publish_opts.previous) and what they saved. */
    struct shoal_manifest *prev[PUB_PREVIOUS_MAX];
    const char *prev_path[PUB_PREVIOUS_MAX];
    size_t nprev;
    uint32_t reused_files;
    uint64_t reused_bytes;
    bool finished;
    int err;
    char msg[1024];
};

static void pub_fail(struct pub *p, int rv, const char *fmt, ...)
{
    va_list ap;

    if (p->err)
        return;
    p->err = rv;
    va_start(ap, fmt);
    vsnprintf(p->msg, sizeof(p->msg), fmt, ap);
    va_end(ap);
    p->finished = true;
    uv_stop(&p->loop);
}

/* ---- progress ---- */

static void show_progress(struct pub *p, bool force)
{
    const struct shoal_publish_opts *o = p->o;
    uint64_t now = uv_hrtime();
    struct shoal_publish_progress pr;

    if (!force && now - p->last_progress_ns < PUB_PROGRESS_NS)
        return;
    p->last_progress_ns = now;
    pr.path = p->rel->files[p->cur].path;
    pr.file_index = p->cur;
    pr.nfiles = p->rel->nfiles;
    pr.file_done = p->file_done;
    pr.file_size = p->rel->files[p->cur].size;
    pr.total_done = p->total_done;
    pr.total_size = p->total_size;
    if (o->on_progress)
        o->on_progress(o->progress_user, &pr);
    if (p->mode == SHOAL_PUBLISH_PROGRESS_BAR) {
        char bar[31];
        double f = pr.total_size ? (double)pr.total_done / (double)pr.total_size : 1.0;
        int fill = (int)(f * 30);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r[%s] %3d%% %8.1f/%.1f MB  %zu/%zu %-40.40s", bar, (int)(f * 100),
                (double)pr.total_done / 1e6, (double)pr.total_size / 1e6, pr.file_index + 1,
                pr.nfiles, pr.path);
        fflush(stderr);
    }
}

/* ---- streaming one file ---- */

static int on_chunk(void *user, uint64_t offset, uint32_t len, const uint8_t id[SHOAL_HASH_LEN])
{
    struct pub *p = user;

    (void)offset;
    if (p->nchunks == p->capchunks) {
        size_t nc = p->capchunks ? p->capchunks * 2 : 64;
        struct pub_chunk *v = realloc(p->chunks, nc * sizeof(*v));
        if (!v)
            return -ENOMEM;
        p->chunks = v;
        p->capchunks = nc;
    }
    memcpy(p->chunks[p->nchunks].id, id, SHOAL_HASH_LEN);
    p->chunks[p->nchunks].len = len;
    p->nchunks++;
    return 0;
}

static int on_data(void *user, uint64_t off, const uint8_t *d, size_t n)
{
    struct pub *p = user;
    const struct shoal_hub_file *f = &p->rel->files[p->cur];
    int rv;

    /* One span per file, so bytes arrive in order; anything else is a bug. */
    if (off != p->file_done)
        return SHOAL_EPROTO;
    rv = shoal_chunker_feed(p->chunker, d, n, on_chunk, p);
    if (rv)
        return rv;
    if (!f->lfs)
        shoal_gitsha1_update(&p->git, d, n);
    p->file_done += n;
    p->total_done += n;
    show_progress(p, false);
    return 0;
}

static void start_file(struct pub *p);

static void hex_of(char *out, const uint8_t *b, size_t n)
{
    shoal_hex(out, b, n);
}

static void on_file_done(void *user, int status, const char *msg)
{
    struct pub *p = user;
    const struct shoal_hub_file *f = &p->rel->files[p->cur];
    uint8_t sha[SHOAL_HASH_LEN];
    uint64_t size = 0;
    char want[65], got[65];
    int rv;

    if (status) {
        shoal_chunker_reset(p->chunker);
        pub_fail(p, status, "%s", msg ? msg : shoal_strerror(status));
        return;
    }
    rv = shoal_chunker_finish(p->chunker, on_chunk, p, sha, &size);
    if (rv) {
        pub_fail(p, rv, "%s: chunking failed: %s", f->path, shoal_strerror(rv));
        return;
    }
    if (size != f->size) {
        pub_fail(p, SHOAL_EBADHASH, "%s@%s file %s: received %" PRIu64 " bytes, the Hub lists %" PRIu64,
                 p->rel->repo, p->rel->commit, f->path, size, f->size);
        return;
    }
    if (f->lfs) {
        if (sodium_memcmp(sha, f->sha256, SHOAL_HASH_LEN) != 0) {
            hex_of(want, f->sha256, 32);
            hex_of(got, sha, 32);
            pub_fail(p, SHOAL_EBADHASH,
                     "%s@%s file %s: sha256 mismatch: the Hub's LFS oid is %s, the bytes received hash to %s",
                     p->rel->repo, p->rel->commit, f->path, want, got);
            return;
        }
    } else {
        uint8_t g[20];
        shoal_gitsha1_final(&p->git, g);
        if (memcmp(g, f->blob_id, 20) != 0) {
            hex_of(want, f->blob_id, 20);
            hex_of(got, g, 20);
            pub_fail(p, SHOAL_EBADHASH,
                     "%s@%s file %s: git blob id mismatch: the Hub says %s, the bytes received give %s",
                     p->rel->repo, p->rel->commit, f->path, want, got);
            return;
        }
    }
    rv = shoal_manifest_add_file(p->m, f->path, f->size, sha);
    /* Its blob is named by its git blob id in a cache (huggingface_hub
     * names a blob by the ETag the Hub serves, the blob id for a file in
     * git), just checked against the bytes. */
    if (rv == 0 && !f->lfs)
        rv = shoal_manifest_set_blob_id(p->m, f->blob_id);
    for (size_t i = 0; rv == 0 && i < p->nchunks; i++)
        rv = shoal_manifest_add_chunk(p->m, p->chunks[i].id, p->chunks[i].len);
    if (rv) {
        pub_fail(p, rv, "%s: cannot add to the manifest: %s", f->path, shoal_strerror(rv));
        return;
    }
    p->total_chunks += (uint32_t)p->nchunks;
    show_progress(p, true);
    if (p->mode == SHOAL_PUBLISH_PROGRESS_LINES) {
        hex_of(got, sha, 32);
        fprintf(stderr, "publish: %s %" PRIu64 " bytes, %zu chunks, sha256 %s ok\n", f->path,
                f->size, p->nchunks, got);
    }
    p->cur++;
    start_file(p);
}

/* Adds LFS file |f| to the manifest from an earlier manifest that lists a
 * file of the same SHA-256 and size (its chunk ids hash the very bytes the
 * SHA-256 names). True when it did (or failed the publish). */
static bool add_from_previous(struct pub *p, const struct shoal_hub_file *f)
{
    if (!f->lfs || f->size == 0)
        return false;
    for (size_t k = 0; k < p->nprev; k++) {
        const struct shoal_manifest *m = p->prev[k];
        for (uint32_t i = 0; i < shoal_manifest_nfiles(m); i++) {
            const struct shoal_mf_file *mf = shoal_manifest_file(m, i);
            if (mf->size != f->size || memcmp(mf->sha256, f->sha256, SHOAL_HASH_LEN) != 0)
                continue;
            int rv = shoal_manifest_add_file(p->m, f->path, f->size, f->sha256);
            for (uint32_t c = mf->first_chunk; rv == 0 && c < mf->first_chunk + mf->nchunks;
                 c++) {
                const struct shoal_mf_chunk *ch = shoal_manifest_chunk(m, c);
                rv = shoal_manifest_add_chunk(p->m, ch->id, ch->len);
            }
            if (rv) {
                pub_fail(p, rv, "%s: cannot add to the manifest: %s", f->path,
                         shoal_strerror(rv));
                return true;
            }
            p->total_chunks += mf->nchunks;
            p->total_done += f->size;
            p->reused_files++;
            p->reused_bytes += f->size;
            show_progress(p, true);
            if (p->mode == SHOAL_PUBLISH_PROGRESS_LINES)
                fprintf(stderr, "publish: %s %" PRIu64 " bytes, %u chunks, the same sha256 as "
                                "%s in %s: not streamed\n",
                        f->path, f->size, mf->nchunks, mf->path, p->prev_path[k]);
            return true;
        }
    }
    return false;
}

static void start_file(struct pub *p)
{
    struct shoal_hub_fetch_req req;
    struct shoal_hub_span span;
    const struct shoal_hub_file *f;
    int rv;

    while (p->cur < p->rel->nfiles && !p->err && add_from_previous(p, &p->rel->files[p->cur]))
        p->cur++;
    if (p->err)
        return;
    if (p->cur == p->rel->nfiles) {
        p->finished = true;
        uv_stop(&p->loop);
        return;
    }
    f = &p->rel->files[p->cur];
    p->nchunks = 0;
    p->file_done = 0;
    if (!f->lfs)
        shoal_gitsha1_init(&p->git, f->size);
    span.off = 0;
    span.len = f->size;
    memset(&req, 0, sizeof(req));
    req.type = p->rel->type;
    req.repo = p->rel->repo;
    req.rev = p->rel->commit;
    req.path = f->path;
    req.spans = &span;
    req.nspans = f->size ? 1 : 0;
    req.on_data = on_data;
    req.on_done = on_file_done;
    req.user = p;
    rv = shoal_hub_fetch(p->hub, &req);
    if (rv)
        pub_fail(p, rv, "%s: cannot start the download: %s", f->path, shoal_strerror(rv));
}

/* Why |m| does not describe the release just resolved, or NULL when it
 * does: same signer, type, commit, chunking, and the Hub's files. */
static const char *reuse_mismatch(const struct pub *p, const struct shoal_manifest *m)
{
    const struct shoal_hub_release *rel = p->rel;
    const struct shoal_cdc_params *mp = shoal_manifest_params(m);
    struct shoal_pubkey pk;

    shoal_seckey_public(&p->sk, &pk);
    if (memcmp(shoal_manifest_signer(m), pk.pk, sizeof pk.pk) != 0)
        return "it was signed by another publisher key";
    if (shoal_manifest_repo_type(m) != rel->type || strcmp(shoal_manifest_repo_id(m), rel->repo) ||
        strcmp(shoal_manifest_commit(m), rel->commit))
        return "it names another release";
    if (mp->min_size != p->params.min_size || mp->avg_size != p->params.avg_size ||
        mp->max_size != p->params.max_size)
        return "it was chunked with other sizes";
    if (shoal_manifest_nfiles(m) != rel->nfiles)
        return "its file list differs from the Hub's";
    for (size_t i = 0; i < rel->nfiles; i++) {
        const struct shoal_hub_file *f = &rel->files[i];
        int k = shoal_manifest_find_file(m, f->path);
        const struct shoal_mf_file *mf = k >= 0 ? shoal_manifest_file(m, (uint32_t)k) : NULL;
        if (!mf || mf->size != f->size || (f->lfs && memcmp(mf->sha256, f->sha256, 32) != 0))
            return "its file list differs from the Hub's";
        if (!f->lfs && (!mf->has_blob_id || memcmp(mf->blob_id, f->blob_id, 20) != 0))
            return "it has no git blob ids (made by an older shoal publish)";
    }
    return NULL;
}

/* Asks the lookup hook for a manifest of this commit and takes it when it
 * describes the release (see shoal_publish_opts.lookup). True when the
 * publish is done (reused, or failed). */
static bool try_reuse(struct pub *p)
{
    const struct shoal_publish_opts *o = p->o;
    const struct shoal_hub_release *rel = p->rel;
    struct shoal_manifest *m = NULL;
    char name[512];
    const char *why = NULL;
    int rv;

    if (!o->lookup || o->force)
        return false;
    /* The tracker knows a dataset as datasets/org/name@commit. */
    (void)shoal_relname_format(name, sizeof name, rel->type, rel->repo, rel->commit);
    rv = o->lookup(o->lookup_user, name, &p->reuse);
    if (rv == SHOAL_ENOTFOUND)
        return false;
    if (rv) {
        pub_fail(p, rv, "%s: asking for a manifest already published: %s", name,
                 shoal_strerror(rv));
        return true;
    }
    /* Any trusted signer may hold the name; only our own signature is
     * reused (reuse_mismatch checks the signer; parse checks the
     * signature). */
    rv = shoal_manifest_parse(&m, p->reuse.data, p->reuse.len, NULL, NULL);
    if (rv == 0)
        why = reuse_mismatch(p, m);
    else
        why = "it does not parse";
    if (why) {
        fprintf(stderr, "publish: %s has a manifest already, but %s: publishing a new one\n", name,
                why);
        shoal_manifest_free(m);
        shoal_buf_reset(&p->reuse);
        return false;
    }
    p->m = m;
    p->reused = true;
    p->total_chunks = shoal_manifest_nchunks(m);
    p->finished = true;
    uv_stop(&p->loop);
    return true;
}

static void on_resolved(void *user, int status, struct shoal_hub_release *rel, const char *msg)
{
    struct pub *p = user;
    int rv;

    if (status) {
        pub_fail(p, status, "%s", msg ? msg : shoal_strerror(status));
        return;
    }
    p->rel = rel;
    if (rel->nfiles == 0) {
        pub_fail(p, SHOAL_ENOTFOUND, "%s@%s: the release has no files", rel->repo, rel->rev);
        return;
    }
    for (size_t i = 0; i < rel->nfiles; i++) {
        /* Refused now, not after downloading every file before it. */
        rv = shoal_manifest_path_ok(rel->files[i].path);
        if (rv) {
            char shown[512];
            size_t n = 0;
            /* Control bytes shown escaped: they are why it is refused. */
            for (const char *c = rel->files[i].path; *c && n + 5 < sizeof shown; c++) {
                unsigned char b = (unsigned char)*c;
                n += (size_t)snprintf(shown + n, sizeof shown - n, b < 0x20 || b == 0x7f
                                                                       ? "\\x%02x" : "%c", b);
            }
            pub_fail(p, rv, "%s@%s: the file '%s' cannot be named in a manifest: %s",
                     rel->repo, rel->rev, shown, shoal_strerror(rv));
            return;
        }
        p->total_size += rel->files[i].size;
    }
    if (try_reuse(p))
        return;
    rv = shoal_manifest_new(&p->m, rel->type, rel->repo, rel->commit, &p->params);
    if (rv) {
        pub_fail(p, rv, "cannot start a manifest: %s", shoal_strerror(rv));
        return;
    }
    if (p->mode == SHOAL_PUBLISH_PROGRESS_LINES)
        fprintf(stderr, "publish: %s@%s is commit %s, %zu files, %" PRIu64 " bytes\n", rel->repo,
                rel->rev, rel->commit, rel->nfiles, p->total_size);
    start_file(p);
}

/* Reads the earlier manifest |path| for add_from_previous. |given|: named
 * by the caller, so one that cannot be used fails the publish; else it is
 * the --out file of an earlier run, skipped when missing and skipped with
 * a note when it cannot be used. Returns 0 or the error (p->msg set). */
static int load_previous(struct pub *p, const char *path, bool given)
{
    struct shoal_keyset *ks = NULL;
    struct shoal_manifest *m = NULL;
    struct shoal_pubkey pk;
    uint8_t *data = NULL;
    size_t len = 0;
    const char *why = NULL;
    int rv;

    rv = shoal_read_file(path, PUB_MANIFEST_MAX, &data, &len);
    if (rv == -ENOENT && !given)
        return 0;
    if (rv == 0 && p->nprev == PUB_PREVIOUS_MAX) {
        free(data);
        if (!given)
            return 0; /* the --out file after 16 --previous: those are enough */
        snprintf(p->msg, sizeof p->msg, "more than %d earlier manifests (--previous)",
                 PUB_PREVIOUS_MAX);
        return -E2BIG;
    }
    if (rv == 0)
        rv = shoal_keyset_new(&ks);
    if (rv == 0) {
        shoal_seckey_public(&p->sk, &pk);
        rv = shoal_keyset_add(ks, &pk);
    }
    if (rv == 0) {
        rv = shoal_manifest_parse(&m, data, len, ks, NULL);
        if (rv == SHOAL_EUNTRUSTED)
            why = "it was signed by another publisher key";
    }
    if (rv == 0) {
        const struct shoal_cdc_params *mp = shoal_manifest_params(m);
        if (mp->min_size != p->params.min_size || mp->avg_size != p->params.avg_size ||
            mp->max_size != p->params.max_size) {
            why = "it was chunked with other sizes";
            rv = -EINVAL;
        }
    }
    free(data);
    shoal_keyset_free(ks);
    if (rv) {
        shoal_manifest_free(m);
        if (!why)
            why = shoal_strerror(rv);
        if (given) {
            snprintf(p->msg, sizeof p->msg, "earlier manifest %s: %s", path, why);
            return rv;
        }
        if (p->mode != SHOAL_PUBLISH_PROGRESS_NONE)
            fprintf(stderr, "publish: %s (the --out file) is not reused: %s\n", path, why);
        return 0;
    }
    p->prev[p->nprev] = m;
    p->prev_path[p->nprev++] = path;
    return 0;
}

/* ---- output ---- */

int shoal_publish_run(const struct shoal_publish_opts *o, struct shoal_publish_result *res)
{
    struct pub *p = NULL;
    struct shoal_buf out;
    char *repo = NULL, *at;
    const char *rev;
    bool loop_ready = false;
    int rv;

    shoal_buf_init(&out, PUB_MANIFEST_MAX);
    struct shoal_buf *signed_bytes = &out;
    if (!o || !o->repo || !o->key_path) {
        rv = -EINVAL;
        if (o && o->errbuf && o->errlen)
            snprintf(o->errbuf, o->errlen, "publish needs a repo and a key");
        return rv;
    }
    p = calloc(1, sizeof(*p));
    repo = strdup(o->repo);
    if (!p || !repo) {
        rv = -ENOMEM;
        if (p) /* the exit reports p->err: a zero there would be success */
            p->err = rv;
        goto out;
    }
    p->o = o;
    shoal_buf_init(&p->reuse, PUB_MANIFEST_MAX);
    rev = o->rev;
    if ((at = strchr(repo, '@'))) {
        *at = '\0';
        if (!rev)
            rev = at + 1;
    }
    if (!rev || !*rev)
        rev = "main";
    p->mode = o->progress;
    if (p->mode == SHOAL_PUBLISH_PROGRESS_AUTO)
        p->mode = isatty(2) ? SHOAL_PUBLISH_PROGRESS_BAR : SHOAL_PUBLISH_PROGRESS_LINES;
    if (o->params)
        p->params = *o->params;
    else
        shoal_cdc_params_default(&p->params);

    /* Load the key first: no point downloading gigabytes to fail at the end. */
    rv = shoal_seckey_load(o->key_path, &p->sk);
    if (rv) {
        char why[512];
        snprintf(p->msg, sizeof(p->msg), "publisher key %s",
                 shoal_keyfile_strerror(o->key_path, rv, why, sizeof why));
        p->err = rv;
        goto out;
    }
    for (size_t i = 0; i < o->nprevious && rv == 0; i++)
        rv = load_previous(p, o->previous[i], true);
    if (rv == 0 && o->out_path && !o->force)
        rv = load_previous(p, o->out_path, false);
    if (rv) {
        p->err = rv;
        goto out;
    }
    rv = shoal_chunker_new(&p->chunker, &p->params);
    if (rv) {
        snprintf(p->msg, sizeof(p->msg), "chunking parameters: %s", shoal_strerror(rv));
        p->err = rv;
        goto out;
    }
    rv = uv_loop_init(&p->loop);
    if (rv) {
        p->err = rv;
        snprintf(p->msg, sizeof(p->msg), "event loop: %s", uv_strerror(rv));
        goto out;
    }
    loop_ready = true;
    rv = shoal_hub_ca_verify(&o->hub, p->msg, sizeof p->msg);
    if (rv) {
        p->err = rv;
        goto out;
    }
    rv = shoal_hub_token_verify(&o->hub, p->msg, sizeof p->msg);
    if (rv) {
        p->err = rv;
        goto out;
    }
    rv = shoal_hub_new(&p->hub, &p->loop, &o->hub);
    if (rv) {
        p->err = rv;
        snprintf(p->msg, sizeof(p->msg), "Hub client: %s", shoal_strerror(rv));
        goto out;
    }
    rv = shoal_hub_resolve(p->hub, o->dataset ? SHOAL_REPO_DATASET : SHOAL_REPO_MODEL, repo, rev,
                           on_resolved, p);
    if (rv) {
        p->err = rv;
        snprintf(p->msg, sizeof(p->msg), "%s@%s: not a valid repo id or revision", repo, rev);
        goto out;
    }
    while (!p->finished && uv_run(&p->loop, UV_RUN_DEFAULT) != 0)
        ;
    if (p->mode == SHOAL_PUBLISH_PROGRESS_BAR && p->rel)
        fputc('\n', stderr);
    if (!p->err && !p->finished)
        pub_fail(p, -EIO, "the event loop stopped before the publish finished");
    if (p->err)
        goto out;
    if (p->reused) {
        signed_bytes = &p->reuse;
        rv = 0;
    } else {
        rv = shoal_manifest_sign(p->m, &p->sk, (uint64_t)time(NULL), &out);
    }
    if (rv) {
        pub_fail(p, rv, "%s@%s: cannot sign the manifest: %s", p->rel->repo, p->rel->commit,
                 shoal_strerror(rv));
        goto out;
    }
    if (o->out_path) {
        rv = shoal_write_file_atomic(o->out_path, signed_bytes->data, signed_bytes->len);
        if (rv) {
            pub_fail(p, rv, "writing %s: %s", o->out_path, shoal_strerror(rv));
            goto out;
        }
    }
    if (o->registrar && !p->reused) {
        rv = o->registrar(o->registrar_user, out.data, out.len, p->m);
        if (rv) {
            pub_fail(p, rv, "registering the manifest: %s", shoal_strerror(rv));
            goto out;
        }
    }
    if (res) {
        res->reused = p->reused;
        res->created = shoal_manifest_created(p->m);
        memcpy(res->commit, p->rel->commit, sizeof(res->commit));
        memcpy(res->manifest_id, shoal_manifest_id(p->m), 32);
        res->nfiles = (uint32_t)p->rel->nfiles;
        res->nchunks = p->total_chunks;
        res->total_bytes = p->total_size;
        res->reused_files = p->reused_files;
        res->reused_bytes = p->reused_bytes;
    }
out:
    if (p) {
        sodium_memzero(&p->sk, sizeof(p->sk));
        shoal_buf_free(&p->reuse);
    }
    rv = p ? p->err : rv;
    if (p && rv && o->errbuf && o->errlen)
        snprintf(o->errbuf, o->errlen, "%s", p->msg[0] ? p->msg : shoal_strerror(rv));
    if (p) {
        shoal_hub_free(p->hub);
        if (loop_ready) {
            /* Let the hub's handles finish closing, then the loop. */
            uv_run(&p->loop, UV_RUN_DEFAULT);
            uv_loop_close(&p->loop);
        }
        shoal_hub_release_free(p->rel);
        shoal_chunker_free(p->chunker);
        shoal_manifest_free(p->m);
        for (size_t i = 0; i < p->nprev; i++)
            shoal_manifest_free(p->prev[i]);
        free(p->chunks);
    }
    shoal_buf_free(&out);
    free(p);
    free(repo);
    return rv;
}
