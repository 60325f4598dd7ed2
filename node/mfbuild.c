/* SPDX-License-Identifier: MIT */
/* Manifest from a folder; see mfbuild.h. */
#include "mfbuild.h"
#include "cliutil.h"
#include "repodir.h"

#include "error.h"
#include "hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MFB_BLOCK (1u << 20)

/* The file's sha256 is known only after its last byte, but the manifest
 * takes it with the file, so chunks wait here until then. */
struct pending {
    struct { uint8_t id[SHOAL_HASH_LEN]; uint32_t len; } *v;
    size_t n, cap;
    struct shoal_progress *prog;
    uint64_t done;
};

static int on_chunk(void *user, uint64_t off, uint32_t len, const uint8_t id[SHOAL_HASH_LEN])
{
    struct pending *p = user;
    (void)off;
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 256;
        void *v = realloc(p->v, nc * sizeof *p->v);
        if (!v)
            return -ENOMEM;
        p->v = v;
        p->cap = nc;
    }
    memcpy(p->v[p->n].id, id, SHOAL_HASH_LEN);
    p->v[p->n].len = len;
    p->n++;
    return 0;
}

int shoal_mfbuild_dir(const char *dir, enum shoal_repo_type type, const char *repo_id,
                      const char *commit, const struct shoal_cdc_params *params,
                      FILE *progress, struct shoal_manifest **out)
{
    struct shoal_repodir list = {0};
    struct shoal_manifest *m = NULL;
    struct shoal_chunker *ch = NULL;
    struct pending pend = {0};
    struct shoal_progress prog;
    uint8_t *blk = malloc(MFB_BLOCK);
    int fd = -1;
    const char *failed_path = dir;
    char why[1024 + 256];
    int rv = blk ? 0 : -ENOMEM;
    if (rv)
        goto out;
    rv = shoal_repodir_list(dir, SHOAL_MF_MAX_FILES_DEFAULT, &list, why, sizeof why);
    if (rv) {
        fprintf(stderr, "manifest: %s/%s\n", dir, why[0] ? why : shoal_strerror(rv));
        failed_path = NULL; /* said */
        goto out;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < list.n; i++)
        total += list.v[i].size;
    rv = shoal_manifest_new(&m, type, repo_id, commit, params);
    if (rv)
        goto out;
    rv = shoal_chunker_new(&ch, params);
    if (rv)
        goto out;
    if (progress)
        shoal_progress_start(&prog, progress, "chunking", total);
    uint64_t done = 0;
    for (size_t i = 0; i < list.n; i++) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", dir, list.v[i].path);
        failed_path = list.v[i].path;
        pend.n = 0;
        fd = open(full, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rv = -errno;
            goto out;
        }
        for (;;) {
            ssize_t n = read(fd, blk, MFB_BLOCK);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                rv = -errno;
                goto out;
            }
            if (n == 0)
                break;
            rv = shoal_chunker_feed(ch, blk, (size_t)n, on_chunk, &pend);
            if (rv)
                goto out;
            done += (uint64_t)n;
            if (progress)
                shoal_progress_update(&prog, done, NULL);
        }
        close(fd);
        fd = -1;
        uint8_t sha[SHOAL_HASH_LEN];
        uint64_t size;
        rv = shoal_chunker_finish(ch, on_chunk, &pend, sha, &size);
        if (rv)
            goto out;
        if (size != list.v[i].size) {
            rv = -EAGAIN; /* the file changed while we read it */
            goto out;
        }
        rv = shoal_manifest_add_file(m, list.v[i].path, size, sha);
        for (size_t c = 0; rv == 0 && c < pend.n; c++)
            rv = shoal_manifest_add_chunk(m, pend.v[c].id, pend.v[c].len);
        if (rv)
            goto out;
    }
    if (progress)
        shoal_progress_end(&prog, done);
    *out = m;
    m = NULL;
out:
    if (rv && failed_path)
        fprintf(stderr, "manifest: %s/%s: %s\n", dir, failed_path == dir ? "" : failed_path,
                rv == -EAGAIN ? "file changed while reading" : shoal_strerror(rv));
    if (fd >= 0)
        close(fd);
    free(pend.v);
    free(blk);
    shoal_chunker_free(ch);
    shoal_manifest_free(m);
    shoal_repodir_free(&list);
    return rv;
}
