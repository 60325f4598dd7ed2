/* SPDX-License-Identifier: MIT */
/*
 * Signed release manifests: building, validation, encoding and signing on
 * the publisher side; verification and strict decoding on the node and
 * tracker side. The format and the rules are in manifest.h. One validator
 * serves both sides, so a publisher can never sign what a node would refuse.
 */
#include "manifest.h"
#include "error.h"
#include "hash.h"
#include "mp.h"

#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENVELOPE_FIELDS 5
#define BODY_FIELDS 6
#define FILE_FIELDS 4    /* version 1 */
#define FILE_FIELDS_V2 5 /* version 2: and the blob id */
#define DOMAIN_LEN (sizeof SHOAL_MANIFEST_SIGN_DOMAIN) /* with its NUL */
_Static_assert(sizeof SHOAL_MANIFEST_SIGN_DOMAIN == sizeof SHOAL_MANIFEST_SIGN_DOMAIN_V2,
               "both domains prefix the body with the same length");

struct shoal_manifest {
    enum shoal_repo_type type;
    char *repo_id;
    char commit[SHOAL_MF_COMMIT_LEN + 1];
    bool commit_ok;               /* the given commit fit in |commit| */
    struct shoal_cdc_params params;

    struct shoal_mf_file *files;
    uint32_t nfiles, files_cap;
    struct shoal_mf_chunk *chunks;
    uint32_t nchunks, chunks_cap;
    uint64_t cur_sum;             /* chunk bytes of the last file so far */
    /* Parsed manifests keep all paths in one block; built ones malloc each. */
    char *path_block;
    uint32_t *by_path;            /* file indices in path order, once sealed */
    uint64_t total_size;

    unsigned version;             /* signed or parsed form's, once sealed */
    bool sealed;                  /* signed or parsed: no more changes */
    uint64_t created;
    uint8_t signer[SHOAL_PUBKEY_LEN];
    uint8_t id[SHOAL_HASH_LEN];
};

void shoal_mf_limits_default(struct shoal_mf_limits *lim)
{
    lim->max_files = SHOAL_MF_MAX_FILES_DEFAULT;
    lim->max_chunks = SHOAL_MF_MAX_CHUNKS_DEFAULT;
    lim->max_path = SHOAL_MF_MAX_PATH_DEFAULT;
    lim->max_bytes = SHOAL_MF_MAX_BYTES_DEFAULT;
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- validation ---- */

static bool repo_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

static bool repo_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > SHOAL_MF_REPO_NAME_MAX)
        return false;
    if (s[0] == '.' || s[0] == '-' || s[n - 1] == '.' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!repo_char(s[i]))
            return false;
        if (i > 0 && (s[i] == '.' || s[i] == '-') && s[i - 1] == s[i])
            return false;
    }
    return true;
}

static bool repo_id_ok(const char *s, size_t n)
{
    const char *slash = memchr(s, '/', n);
    if (!slash)
        return repo_name_ok(s, n);
    size_t org = (size_t)(slash - s);
    return repo_name_ok(s, org) && repo_name_ok(slash + 1, n - org - 1);
}

static bool commit_ok(const char *s, size_t n)
{
    if (n != SHOAL_MF_COMMIT_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

/* Checks one path's syntax (not NUL-terminated: it may point into input). */
static int path_check(const char *s, size_t n, uint32_t max)
{
    if (n > max)
        return SHOAL_ETOOBIG;
    if (n == 0 || s[0] == '/')
        return SHOAL_EBADPATH;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x20 || c == 0x7f || c == '\\')
                return SHOAL_EBADPATH;
            if (c != '/')
                continue;
        }
        size_t len = i - start;
        /* 255: NAME_MAX of Linux file systems. A longer name verifies, is
         * fetched whole, then can never be linked into the snapshot. */
        if (len == 0 || len > 255 || (len == 1 && s[start] == '.') ||
            (len == 2 && s[start] == '.' && s[start + 1] == '.'))
            return SHOAL_EBADPATH;
        start = i + 1;
    }
    return 0;
}

/* Path order with '/' below every other byte (control bytes are never in a
 * valid path), so "a/b" is directly followed by the files under "a/b/" if
 * any: "a/b-x" sorts after them instead of between. */
static int path_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char ca = (unsigned char)*a, cb = (unsigned char)*b;
        if (ca == '/')
            ca = 1;
        if (cb == '/')
            cb = 1;
        if (ca != cb || ca == 0)
            return (int)ca - (int)cb;
    }
}

static int by_path_cmp(const void *x, const void *y, void *ctx)
{
    const struct shoal_mf_file *files = ctx;
    return path_cmp(files[*(const uint32_t *)x].path, files[*(const uint32_t *)y].path);
}

/* Sorts the files by path into m->by_path and refuses duplicates and
 * paths that are directories of other paths. */
static int index_paths(struct shoal_manifest *m)
{
    int rv = 0;
    uint32_t *idx = malloc((size_t)m->nfiles * sizeof *idx);
    if (!idx)
        return -ENOMEM;
    for (uint32_t i = 0; i < m->nfiles; i++)
        idx[i] = i;
    qsort_r(idx, m->nfiles, sizeof *idx, by_path_cmp, m->files);
    for (uint32_t i = 1; i < m->nfiles; i++) {
        const char *prev = m->files[idx[i - 1]].path;
        const char *cur = m->files[idx[i]].path;
        size_t plen = strlen(prev);
        if (strcmp(prev, cur) == 0 || (strncmp(prev, cur, plen) == 0 && cur[plen] == '/')) {
            rv = SHOAL_EBADPATH;
            goto out;
        }
    }
    free(m->by_path);
    m->by_path = idx;
    idx = NULL;
out:
    free(idx);
    return rv;
}

/* The rules of manifest.h over the decoded fields; sets total_size and the
 * path index on success. */
static int validate(struct shoal_manifest *m, const struct shoal_mf_limits *lim)
{
    if (m->type != SHOAL_REPO_MODEL && m->type != SHOAL_REPO_DATASET)
        return SHOAL_EBADMSG;
    if (!repo_id_ok(m->repo_id, strlen(m->repo_id)))
        return SHOAL_EBADMSG;
    if (!m->commit_ok || !commit_ok(m->commit, strlen(m->commit)))
        return SHOAL_EBADMSG;
    if (shoal_cdc_params_check(&m->params) != 0)
        return SHOAL_EBADMSG;
    if (m->nfiles == 0)
        return SHOAL_EBADMSG;
    if (m->nfiles > lim->max_files || m->nchunks > lim->max_chunks)
        return SHOAL_ETOOBIG;

    uint64_t total = 0;
    uint32_t next = 0;
    for (uint32_t f = 0; f < m->nfiles; f++) {
        const struct shoal_mf_file *file = &m->files[f];
        int rv = path_check(file->path, strlen(file->path), lim->max_path);
        if (rv)
            return rv;
        if (file->first_chunk != next || file->nchunks > m->nchunks - next)
            return SHOAL_EBADMSG;
        uint64_t sum = 0;
        for (uint32_t c = next; c < next + file->nchunks; c++) {
            const struct shoal_mf_chunk *ch = &m->chunks[c];
            if (ch->len == 0 || ch->len > m->params.max_size || ch->file != f || ch->offset != sum)
                return SHOAL_EBADMSG;
            sum += ch->len;
        }
        if (sum != file->size)
            return SHOAL_EBADMSG;
        next += file->nchunks;
        /* At most 2^32 chunks of under 2^32 bytes each: cannot wrap. */
        total += sum;
    }
    if (next != m->nchunks)
        return SHOAL_EBADMSG;
    int rv = index_paths(m);
    if (rv)
        return rv;
    m->total_size = total;
    return 0;
}

/* ---- building ---- */

static struct shoal_manifest *manifest_alloc(void)
{
    return calloc(1, sizeof(struct shoal_manifest));
}

int shoal_manifest_new(struct shoal_manifest **out, enum shoal_repo_type t,
                       const char *repo_id, const char *commit,
                       const struct shoal_cdc_params *p)
{
    if (!out || !repo_id || !commit || !p)
        return -EINVAL;
    struct shoal_manifest *m = manifest_alloc();
    if (!m)
        goto fail;
    m->repo_id = strdup(repo_id);
    if (!m->repo_id)
        goto fail;
    m->type = t;
    /* A commit of the wrong length is kept as "bad" for sign to refuse. */
    size_t clen = strlen(commit);
    m->commit_ok = clen == SHOAL_MF_COMMIT_LEN;
    if (m->commit_ok)
        memcpy(m->commit, commit, clen + 1);
    m->params = *p;
    *out = m;
    return 0;
fail:
    shoal_manifest_free(m);
    return -ENOMEM;
}

/* Grows an array of |size|-byte elements to hold one more than |n|. */
static int grow(void **arr, uint32_t *cap, uint32_t n, size_t size)
{
    if (n < *cap)
        return 0;
    uint32_t ncap = *cap ? *cap * 2 : 16;
    if (ncap < *cap)
        return -ENOMEM;
    void *p = realloc(*arr, (size_t)ncap * size);
    if (!p)
        return -ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

int shoal_manifest_path_ok(const char *path)
{
    return path_check(path, strlen(path), SHOAL_MF_MAX_PATH_DEFAULT);
}

int shoal_manifest_add_file(struct shoal_manifest *m, const char *path, uint64_t size,
                            const uint8_t sha256[32])
{
    if (m->sealed)
        return -EINVAL;
    int rv = path_check(path, strlen(path), SHOAL_MF_MAX_PATH_DEFAULT);
    if (rv)
        return rv;
    if (m->nfiles >= SHOAL_MF_MAX_FILES_DEFAULT)
        return SHOAL_ETOOBIG;
    rv = grow((void **)&m->files, &m->files_cap, m->nfiles, sizeof *m->files);
    if (rv)
        return rv;
    char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    struct shoal_mf_file *f = &m->files[m->nfiles++];
    f->path = copy;
    f->size = size;
    memcpy(f->sha256, sha256, sizeof f->sha256);
    f->has_blob_id = false;
    memset(f->blob_id, 0, sizeof f->blob_id);
    f->first_chunk = m->nchunks;
    f->nchunks = 0;
    m->cur_sum = 0;
    return 0;
}

int shoal_manifest_set_blob_id(struct shoal_manifest *m, const uint8_t blob_id[20])
{
    if (m->sealed || m->nfiles == 0)
        return -EINVAL;
    memcpy(m->files[m->nfiles - 1].blob_id, blob_id, 20);
    m->files[m->nfiles - 1].has_blob_id = true;
    return 0;
}

/* Version 2 only when some file needs it: a manifest without blob ids stays
 * readable by nodes that know only version 1. */
static unsigned version_of(const struct shoal_manifest *m)
{
    for (uint32_t i = 0; i < m->nfiles; i++)
        if (m->files[i].has_blob_id)
            return 2;
    return 1;
}

int shoal_manifest_add_chunk(struct shoal_manifest *m, const uint8_t id[32], uint32_t len)
{
    if (m->sealed || m->nfiles == 0)
        return -EINVAL;
    struct shoal_mf_file *f = &m->files[m->nfiles - 1];
    if (len == 0 || len > m->params.max_size || len > f->size - m->cur_sum)
        return SHOAL_EBADMSG;
    if (m->nchunks >= SHOAL_MF_MAX_CHUNKS_DEFAULT)
        return SHOAL_ETOOBIG;
    int rv = grow((void **)&m->chunks, &m->chunks_cap, m->nchunks, sizeof *m->chunks);
    if (rv)
        return rv;
    struct shoal_mf_chunk *c = &m->chunks[m->nchunks++];
    memcpy(c->id, id, sizeof c->id);
    c->len = len;
    c->file = m->nfiles - 1;
    c->offset = m->cur_sum;
    m->cur_sum += len;
    f->nchunks++;
    return 0;
}

/* Appends the body encoding of |m| to |b|. */
static int encode_body(const struct shoal_manifest *m, unsigned version, struct shoal_buf *b)
{
    struct shoal_mpw w;
    shoal_mpw_init(&w, b);
    shoal_mpw_array(&w, BODY_FIELDS);
    shoal_mpw_uint(&w, (uint64_t)m->type);
    shoal_mpw_cstr(&w, m->repo_id);
    shoal_mpw_cstr(&w, m->commit);
    shoal_mpw_array(&w, 3);
    shoal_mpw_uint(&w, m->params.min_size);
    shoal_mpw_uint(&w, m->params.avg_size);
    shoal_mpw_uint(&w, m->params.max_size);
    shoal_mpw_uint(&w, m->created);
    shoal_mpw_array(&w, m->nfiles);
    for (uint32_t i = 0; i < m->nfiles && !w.err; i++) {
        const struct shoal_mf_file *f = &m->files[i];
        shoal_mpw_array(&w, version >= 2 ? FILE_FIELDS_V2 : FILE_FIELDS);
        shoal_mpw_cstr(&w, f->path);
        shoal_mpw_uint(&w, f->size);
        shoal_mpw_bin(&w, f->sha256, sizeof f->sha256);
        size_t reclen = (size_t)f->nchunks * SHOAL_MF_CHUNK_REC;
        shoal_mpw_bin_header(&w, reclen);
        if (w.err || (w.err = shoal_buf_reserve(b, reclen)) != 0)
            break;
        /* Packed straight into the buffer: one record per chunk. */
        uint8_t *rec = b->data + b->len;
        for (uint32_t c = f->first_chunk; c < f->first_chunk + f->nchunks; c++) {
            memcpy(rec, m->chunks[c].id, 32);
            wr32(rec + 32, m->chunks[c].len);
            rec += SHOAL_MF_CHUNK_REC;
        }
        b->len += reclen;
        if (version >= 2) {
            if (f->has_blob_id)
                shoal_mpw_bin(&w, f->blob_id, sizeof f->blob_id);
            else
                shoal_mpw_nil(&w);
        }
    }
    return w.err;
}

int shoal_manifest_sign(struct shoal_manifest *m, const struct shoal_seckey *sk,
                        uint64_t created_unix, struct shoal_buf *signed_out)
{
    struct shoal_mf_limits lim;
    struct shoal_buf msg;
    struct shoal_pubkey pk;
    struct shoal_mpw w;
    uint8_t sig[SHOAL_SIG_LEN];
    size_t start = signed_out->len;
    unsigned version;
    int rv;

    shoal_buf_init(&msg, SHOAL_MF_MAX_BYTES_DEFAULT);
    if (m->sealed) {
        rv = -EINVAL;
        goto out;
    }
    rv = shoal_crypto_init();
    if (rv)
        goto out;
    shoal_mf_limits_default(&lim);
    rv = validate(m, &lim);
    if (rv)
        goto out;
    m->created = created_unix;
    version = version_of(m);
    /* The body is encoded right after the domain, so the signed message is
     * contiguous without another copy. */
    rv = shoal_buf_append(&msg, version >= 2 ? SHOAL_MANIFEST_SIGN_DOMAIN_V2
                                             : SHOAL_MANIFEST_SIGN_DOMAIN, DOMAIN_LEN);
    if (rv == 0)
        rv = encode_body(m, version, &msg);
    if (rv)
        goto out;
    if (crypto_sign_detached(sig, NULL, msg.data, msg.len, sk->sk) != 0) {
        rv = -EIO;
        goto out;
    }
    shoal_seckey_public(sk, &pk);
    shoal_mpw_init(&w, signed_out);
    shoal_mpw_array(&w, ENVELOPE_FIELDS);
    shoal_mpw_cstr(&w, SHOAL_MANIFEST_MAGIC);
    shoal_mpw_uint(&w, version);
    shoal_mpw_bin(&w, msg.data + DOMAIN_LEN, msg.len - DOMAIN_LEN);
    shoal_mpw_bin(&w, pk.pk, sizeof pk.pk);
    shoal_mpw_bin(&w, sig, sizeof sig);
    rv = w.err;
    if (rv)
        goto out;
    shoal_chunk_id(m->id, signed_out->data + start, signed_out->len - start);
    memcpy(m->signer, pk.pk, sizeof pk.pk);
    m->version = version;
    m->sealed = true;
out:
    if (rv) {
        signed_out->len = start;
        if (!m->sealed)
            m->created = 0;
    }
    shoal_buf_free(&msg);
    return rv;
}

/* ---- parsing ---- */

/* One file entry of the body, pointing into the input. */
struct raw_file {
    const char *path;
    uint32_t path_len;
    uint64_t size;
    const uint8_t *sha256;
    const uint8_t *recs;
    uint32_t nrecs;
    const uint8_t *blob_id; /* 20 bytes, or NULL */
};

static int read_raw_file(struct shoal_mpr *r, const struct shoal_mf_limits *lim,
                         unsigned version, struct raw_file *f)
{
    const uint32_t want = version >= 2 ? FILE_FIELDS_V2 : FILE_FIELDS;
    uint32_t n, len;
    int rv = shoal_mpr_array(r, &n, want);
    if (rv)
        return rv;
    if (n != want)
        return SHOAL_EPROTO;
    rv = shoal_mpr_str(r, &f->path, &f->path_len, lim->max_path);
    if (rv)
        return rv;
    /* Checked here, before the path is copied anywhere. */
    rv = path_check(f->path, f->path_len, lim->max_path);
    if (rv)
        return rv;
    rv = shoal_mpr_uint(r, &f->size, UINT64_MAX);
    if (rv)
        return rv;
    rv = shoal_mpr_bin(r, &f->sha256, &len, UINT32_MAX);
    if (rv)
        return rv;
    if (len != 32)
        return SHOAL_EBADMSG;
    rv = shoal_mpr_bin(r, &f->recs, &len, UINT32_MAX);
    if (rv)
        return rv;
    if (len % SHOAL_MF_CHUNK_REC != 0)
        return SHOAL_EBADMSG;
    f->nrecs = len / SHOAL_MF_CHUNK_REC;
    f->blob_id = NULL;
    if (version >= 2) {
        if (shoal_mpr_peek_nil(r))
            return shoal_mpr_nil(r);
        rv = shoal_mpr_bin(r, &f->blob_id, &len, 20);
        if (rv)
            return rv;
        if (len != 20)
            return SHOAL_EBADMSG;
    }
    return 0;
}

/* Reads the part of the body before the file list into |m|. */
static int read_header(struct shoal_mpr *r, struct shoal_manifest *m)
{
    uint32_t n, slen;
    uint64_t v;
    const char *s;
    int rv = shoal_mpr_array(r, &n, BODY_FIELDS);
    if (rv)
        return rv;
    if (n != BODY_FIELDS)
        return SHOAL_EPROTO;
    rv = shoal_mpr_uint(r, &v, UINT64_MAX);
    if (rv)
        return rv;
    if (v != SHOAL_REPO_MODEL && v != SHOAL_REPO_DATASET)
        return SHOAL_EBADMSG;
    m->type = (enum shoal_repo_type)v;
    rv = shoal_mpr_str(r, &s, &slen, SHOAL_MF_REPO_ID_MAX);
    if (rv)
        return rv;
    if (!repo_id_ok(s, slen))
        return SHOAL_EBADMSG;
    m->repo_id = malloc((size_t)slen + 1);
    if (!m->repo_id)
        return -ENOMEM;
    memcpy(m->repo_id, s, slen);
    m->repo_id[slen] = '\0';
    rv = shoal_mpr_str(r, &s, &slen, SHOAL_MF_COMMIT_LEN);
    if (rv)
        return rv;
    if (!commit_ok(s, slen))
        return SHOAL_EBADMSG;
    memcpy(m->commit, s, slen);
    m->commit[slen] = '\0';
    m->commit_ok = true;
    rv = shoal_mpr_array(r, &n, 3);
    if (rv)
        return rv;
    if (n != 3)
        return SHOAL_EPROTO;
    if ((rv = shoal_mpr_u32(r, &m->params.min_size)) != 0 ||
        (rv = shoal_mpr_u32(r, &m->params.avg_size)) != 0 ||
        (rv = shoal_mpr_u32(r, &m->params.max_size)) != 0)
        return rv;
    if (shoal_cdc_params_check(&m->params) != 0)
        return SHOAL_EBADMSG;
    return shoal_mpr_uint(r, &m->created, UINT64_MAX);
}

/* Decodes and validates the body into |m|. Two passes over the file list:
 * the first checks the form and counts, so that the second allocates
 * exactly what the input holds and never what it merely claims. */
static int decode_body(struct shoal_manifest *m, unsigned version, const uint8_t *body,
                       size_t n, const struct shoal_mf_limits *lim)
{
    struct shoal_mpr r;
    struct raw_file f;
    uint32_t nfiles;
    uint64_t nchunks = 0, path_bytes = 0;
    int rv;

    shoal_mpr_init(&r, body, n);
    rv = read_header(&r, m);
    if (rv)
        return rv;
    rv = shoal_mpr_array(&r, &nfiles, lim->max_files);
    if (rv)
        return rv;
    if (nfiles == 0)
        return SHOAL_EBADMSG;
    const struct shoal_mpr files_start = r;
    for (uint32_t i = 0; i < nfiles; i++) {
        rv = read_raw_file(&r, lim, version, &f);
        if (rv)
            return rv;
        nchunks += f.nrecs;
        if (nchunks > lim->max_chunks)
            return SHOAL_ETOOBIG;
        path_bytes += (uint64_t)f.path_len + 1;
    }
    if (shoal_mpr_left(&r) != 0)
        return SHOAL_EPROTO;

    m->files = calloc(nfiles, sizeof *m->files);
    m->chunks = malloc((size_t)(nchunks ? nchunks : 1) * sizeof *m->chunks);
    m->path_block = malloc((size_t)path_bytes);
    if (!m->files || !m->chunks || !m->path_block)
        return -ENOMEM;
    m->files_cap = nfiles;
    m->chunks_cap = (uint32_t)nchunks;

    r = files_start;
    char *pb = m->path_block;
    for (uint32_t i = 0; i < nfiles; i++) {
        rv = read_raw_file(&r, lim, version, &f);
        if (rv)
            return rv;
        struct shoal_mf_file *file = &m->files[i];
        memcpy(pb, f.path, f.path_len);
        pb[f.path_len] = '\0';
        file->path = pb;
        pb += f.path_len + 1;
        file->size = f.size;
        memcpy(file->sha256, f.sha256, 32);
        file->has_blob_id = f.blob_id != NULL;
        if (f.blob_id)
            memcpy(file->blob_id, f.blob_id, 20);
        file->first_chunk = m->nchunks;
        file->nchunks = f.nrecs;
        m->nfiles = i + 1;
        uint64_t off = 0;
        for (uint32_t c = 0; c < f.nrecs; c++) {
            const uint8_t *rec = f.recs + (size_t)c * SHOAL_MF_CHUNK_REC;
            struct shoal_mf_chunk *ch = &m->chunks[m->nchunks++];
            memcpy(ch->id, rec, 32);
            ch->len = rd32(rec + 32);
            ch->file = i;
            ch->offset = off;
            off += ch->len;
        }
    }
    return validate(m, lim);
}

int shoal_manifest_parse(struct shoal_manifest **out, const uint8_t *p, size_t n,
                         const struct shoal_keyset *trusted,
                         const struct shoal_mf_limits *lim)
{
    struct shoal_mf_limits deflim;
    struct shoal_manifest *m = NULL;
    struct shoal_mpr r;
    uint8_t *msg = NULL;
    const char *magic;
    const uint8_t *body;
    uint32_t count, slen, body_len;
    uint64_t version;
    uint8_t signer[SHOAL_PUBKEY_LEN], sig[SHOAL_SIG_LEN];
    int rv;

    if (!lim) {
        shoal_mf_limits_default(&deflim);
        lim = &deflim;
    }
    if (n > lim->max_bytes) {
        rv = SHOAL_ETOOBIG;
        goto fail;
    }
    shoal_mpr_init(&r, p, n);
    rv = shoal_mpr_array(&r, &count, ENVELOPE_FIELDS);
    if (rv)
        goto fail;
    if (count != ENVELOPE_FIELDS) {
        rv = SHOAL_EPROTO;
        goto fail;
    }
    rv = shoal_mpr_str(&r, &magic, &slen, 64);
    if (rv)
        goto fail;
    if (slen != sizeof SHOAL_MANIFEST_MAGIC - 1 || memcmp(magic, SHOAL_MANIFEST_MAGIC, slen) != 0) {
        rv = SHOAL_EPROTO;
        goto fail;
    }
    rv = shoal_mpr_uint(&r, &version, UINT64_MAX);
    if (rv)
        goto fail;
    if (version != 1 && version != 2) {
        rv = SHOAL_EVERSION;
        goto fail;
    }
    if ((rv = shoal_mpr_bin(&r, &body, &body_len, UINT32_MAX)) != 0 ||
        (rv = shoal_mpr_bin_exact(&r, signer, sizeof signer)) != 0 ||
        (rv = shoal_mpr_bin_exact(&r, sig, sizeof sig)) != 0)
        goto fail;
    if (shoal_mpr_left(&r) != 0) {
        rv = SHOAL_EPROTO;
        goto fail;
    }
    /* Every field above has one smallest form, and any other form is
     * longer: so the canonical length proves canonical bytes, and the id
     * (a hash of these bytes) cannot be varied without the key. */
    size_t bin_hdr = body_len < 256 ? 2 : body_len < 65536 ? 3 : 5;
    size_t canon = 1 + 1 + (sizeof SHOAL_MANIFEST_MAGIC - 1) + 1 + bin_hdr + body_len +
                   2 + sizeof signer + 2 + sizeof sig;
    if (n != canon) {
        rv = SHOAL_EPROTO;
        goto fail;
    }

    /* A signer we would refuse anyway costs no signature check: a peer
     * sending manifests nobody here trusts gets the cheap answer. */
    if (trusted && !shoal_keyset_contains(trusted, signer)) {
        rv = SHOAL_EUNTRUSTED;
        goto fail;
    }
    rv = shoal_crypto_init();
    if (rv)
        goto fail;
    msg = malloc(DOMAIN_LEN + (size_t)body_len);
    if (!msg) {
        rv = -ENOMEM;
        goto fail;
    }
    memcpy(msg, version == 2 ? SHOAL_MANIFEST_SIGN_DOMAIN_V2 : SHOAL_MANIFEST_SIGN_DOMAIN,
           DOMAIN_LEN);
    memcpy(msg + DOMAIN_LEN, body, body_len);
    if (crypto_sign_verify_detached(sig, msg, DOMAIN_LEN + (size_t)body_len, signer) != 0) {
        rv = SHOAL_EBADSIG;
        goto fail;
    }
    free(msg);
    msg = NULL;

    m = manifest_alloc();
    if (!m) {
        rv = -ENOMEM;
        goto fail;
    }
    rv = decode_body(m, (unsigned)version, body, body_len, lim);
    if (rv)
        goto fail;
    m->version = (unsigned)version;
    memcpy(m->signer, signer, sizeof signer);
    shoal_chunk_id(m->id, p, n);
    m->sealed = true;
    *out = m;
    return 0;
fail:
    free(msg);
    shoal_manifest_free(m);
    return rv;
}

void shoal_manifest_free(struct shoal_manifest *m)
{
    if (!m)
        return;
    if (!m->path_block) {
        for (uint32_t i = 0; i < m->nfiles; i++)
            free((char *)m->files[i].path);
    }
    free(m->path_block);
    free(m->files);
    free(m->chunks);
    free(m->by_path);
    free(m->repo_id);
    free(m);
}

/* ---- reading ---- */

enum shoal_repo_type shoal_manifest_repo_type(const struct shoal_manifest *m)
{
    return m->type;
}

const char *shoal_manifest_repo_id(const struct shoal_manifest *m)
{
    return m->repo_id;
}

const char *shoal_manifest_commit(const struct shoal_manifest *m)
{
    return m->commit;
}

const struct shoal_cdc_params *shoal_manifest_params(const struct shoal_manifest *m)
{
    return &m->params;
}

uint32_t shoal_manifest_nfiles(const struct shoal_manifest *m)
{
    return m->nfiles;
}

const struct shoal_mf_file *shoal_manifest_file(const struct shoal_manifest *m, uint32_t i)
{
    return i < m->nfiles ? &m->files[i] : NULL;
}

uint32_t shoal_manifest_nchunks(const struct shoal_manifest *m)
{
    return m->nchunks;
}

const struct shoal_mf_chunk *shoal_manifest_chunk(const struct shoal_manifest *m, uint32_t i)
{
    return i < m->nchunks ? &m->chunks[i] : NULL;
}

uint64_t shoal_manifest_total_size(const struct shoal_manifest *m)
{
    if (m->sealed)
        return m->total_size;
    uint64_t total = 0;
    for (uint32_t i = 0; i < m->nfiles; i++)
        total += m->files[i].size;
    return total;
}

const uint8_t *shoal_manifest_id(const struct shoal_manifest *m)
{
    return m->sealed ? m->id : NULL;
}

const uint8_t *shoal_manifest_signer(const struct shoal_manifest *m)
{
    return m->sealed ? m->signer : NULL;
}

uint64_t shoal_manifest_created(const struct shoal_manifest *m)
{
    return m->sealed ? m->created : 0;
}

int shoal_manifest_find_file(const struct shoal_manifest *m, const char *path)
{
    if (!m->sealed || !m->by_path) {
        for (uint32_t i = 0; i < m->nfiles; i++) {
            if (strcmp(m->files[i].path, path) == 0)
                return (int)i;
        }
        return SHOAL_ENOTFOUND;
    }
    uint32_t lo = 0, hi = m->nfiles;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const char *cand = m->files[m->by_path[mid]].path;
        int c = path_cmp(path, cand);
        /* path_cmp equates '/' with \x01, which a query may contain. */
        if (c == 0)
            return strcmp(path, cand) == 0 ? (int)m->by_path[mid] : SHOAL_ENOTFOUND;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return SHOAL_ENOTFOUND;
}

/* ---- release names ---- */

int shoal_relname_format(char *out, size_t cap, enum shoal_repo_type type, const char *repo,
                         const char *rev)
{
    int n = snprintf(out, cap, "%s%s@%s", type == SHOAL_REPO_DATASET ? SHOAL_RELNAME_DATASET : "",
                     repo, rev);

    if (n < 0 || (size_t)n >= cap) {
        if (cap)
            out[0] = '\0';
        return SHOAL_ETOOBIG;
    }
    return 0;
}

int shoal_manifest_name(const struct shoal_manifest *m, char *out, size_t cap)
{
    return shoal_relname_format(out, cap, m->type, m->repo_id, m->commit);
}

bool shoal_manifest_named(const struct shoal_manifest *m, const char *name)
{
    enum shoal_repo_type type;
    const char *repo, *at = strrchr(name, '@');
    size_t rl = strlen(m->repo_id);

    if (!at || shoal_relname_split(name, &type, &repo) != 0 || type != m->type)
        return false;
    return (size_t)(at - repo) == rl && memcmp(repo, m->repo_id, rl) == 0 &&
           strcmp(at + 1, m->commit) == 0;
}

int shoal_relname_split(const char *name, enum shoal_repo_type *type, const char **repo)
{
    /* The Hub's other prefixes (huggingface_hub's REPO_TYPES_MAPPING):
     * reserved there, so no org has such a name; shoal carries no spaces
     * nor kernels, and a model is named without "models/". */
    static const char *const other[] = {"spaces/", "kernels/", "models/"};
    size_t dn = sizeof SHOAL_RELNAME_DATASET - 1;

    *type = SHOAL_REPO_MODEL;
    *repo = name;
    if (strncmp(name, SHOAL_RELNAME_DATASET, dn) == 0) {
        *type = SHOAL_REPO_DATASET;
        *repo = name + dn;
        return 0;
    }
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        if (strncmp(name, other[i], strlen(other[i])) == 0) {
            *repo = name + strlen(other[i]);
            return SHOAL_EBADMSG;
        }
    }
    return 0;
}
