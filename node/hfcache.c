/* SPDX-License-Identifier: MIT */
/*
 * Hugging Face hub cache naming: where a repo's blobs, snapshots and refs
 * live, and a read-only check that a release is fully present. Kept apart
 * from the store so the CLI and the loader can ask "is repo@commit here?"
 * without opening a store.
 */
#include "hfcache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "hash.h"

/* snprintf into |out|, mapping truncation to SHOAL_ELIMIT. */
static int fmt(char *out, size_t cap, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
static int fmt(char *out, size_t cap, const char *f, ...)
{
    va_list ap;
    int n;

    if (cap == 0)
        return SHOAL_ELIMIT;
    va_start(ap, f);
    n = vsnprintf(out, cap, f, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        out[0] = '\0';
        return SHOAL_ELIMIT;
    }
    return 0;
}

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);

    return v && v[0] ? v : NULL;
}

int shoal_hf_home_path(char *out, size_t cap, const char *name, char *how, size_t howcap)
{
    /* huggingface_hub's order; what is under the variable; how it is named. */
    static const struct {
        const char *var, *sub, *shown;
    } homes[] = {
        {"HF_HOME", "", "$HF_HOME"},
        {"XDG_CACHE_HOME", "/huggingface", "$XDG_CACHE_HOME/huggingface"},
        {"HOME", "/.cache/huggingface", "~/.cache/huggingface"},
    };
    const char *v;

    for (size_t i = 0; i < sizeof homes / sizeof homes[0]; i++) {
        if (!(v = env_nonempty(homes[i].var)))
            continue;
        if (how && howcap)
            snprintf(how, howcap, "%s/%s", homes[i].shown, name);
        return fmt(out, cap, "%s%s/%s", v, homes[i].sub, name);
    }
    return SHOAL_ENOTFOUND;
}

int shoal_hf_cache_dir(char *out, size_t cap, const char *flag)
{
    const char *v;

    if (flag && flag[0])
        return fmt(out, cap, "%s", flag);
    if ((v = env_nonempty("HF_HUB_CACHE")))
        return fmt(out, cap, "%s", v);
    /* Its older name, which huggingface_hub still reads after HF_HUB_CACHE. */
    if ((v = env_nonempty("HUGGINGFACE_HUB_CACHE")))
        return fmt(out, cap, "%s", v);
    return shoal_hf_home_path(out, cap, "hub", NULL, 0);
}

static bool repo_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* One "org" or "name" part: HF forbids "--" and ".." inside names, and a
 * leading or trailing '-' or '.', because "--" is the folder separator. */
static bool repo_part_ok(const char *p, size_t n)
{
    size_t i;

    if (n == 0 || n > 96)
        return false;
    if (p[0] == '-' || p[0] == '.' || p[n - 1] == '-' || p[n - 1] == '.')
        return false;
    for (i = 0; i < n; i++) {
        if (!repo_char_ok(p[i]))
            return false;
        if (i > 0 && (p[i] == '-' || p[i] == '.') && p[i - 1] == p[i])
            return false;
    }
    return true;
}

int shoal_hf_repo_folder(char *out, size_t cap, enum shoal_repo_type type,
                         const char *repo_id)
{
    const char *slash;
    const char *kind;

    if (!repo_id)
        return SHOAL_EBADPATH;
    kind = type == SHOAL_REPO_DATASET ? "datasets" : "models";
    slash = strchr(repo_id, '/');
    if (!slash) {
        if (!repo_part_ok(repo_id, strlen(repo_id)))
            return SHOAL_EBADPATH;
        return fmt(out, cap, "%s--%s", kind, repo_id);
    }
    if (strchr(slash + 1, '/') ||
        !repo_part_ok(repo_id, (size_t)(slash - repo_id)) ||
        !repo_part_ok(slash + 1, strlen(slash + 1)))
        return SHOAL_EBADPATH;
    return fmt(out, cap, "%s--%.*s--%s", kind, (int)(slash - repo_id), repo_id,
               slash + 1);
}

void shoal_hf_etag(char out[SHOAL_HF_ETAG_MAX], const struct shoal_mf_file *f)
{
    if (f->has_blob_id)
        shoal_hex(out, f->blob_id, sizeof f->blob_id);
    else
        shoal_hex(out, f->sha256, SHOAL_HASH_LEN);
}

int shoal_hf_blob_path(char *out, size_t cap, const struct shoal_mf_file *f,
                       bool incomplete)
{
    char etag[SHOAL_HF_ETAG_MAX];

    shoal_hf_etag(etag, f);
    return fmt(out, cap, "blobs/%s%s", etag, incomplete ? ".incomplete" : "");
}

int shoal_hf_partial_path(char *out, size_t cap, const struct shoal_mf_file *f,
                          const char *tag)
{
    char etag[SHOAL_HF_ETAG_MAX];

    shoal_hf_etag(etag, f);
    if (tag)
        return fmt(out, cap, ".shoal/%s.%.16s.incomplete", etag, tag);
    return fmt(out, cap, ".shoal/%s.incomplete", etag);
}

int shoal_hf_snapshot_path(char *out, size_t cap, const char *commit,
                           const char *path)
{
    return fmt(out, cap, "snapshots/%s/%s", commit, path);
}

int shoal_hf_link_target(char *out, size_t cap, const struct shoal_mf_file *f)
{
    char etag[SHOAL_HF_ETAG_MAX];
    size_t depth = 2; /* snapshots/<commit>/ */
    size_t used = 0;
    size_t i;

    for (i = 0; f->path[i]; i++)
        depth += f->path[i] == '/';
    if (cap < depth * 3 + 1)
        return SHOAL_ELIMIT;
    for (i = 0; i < depth; i++) {
        memcpy(out + used, "../", 3);
        used += 3;
    }
    shoal_hf_etag(etag, f);
    return fmt(out + used, cap - used, "blobs/%s", etag);
}

/* Length of the UTF-8 sequence at |p| (at most |n| bytes), or 0 when it
 * is not one (overlong, surrogate, above U+10FFFF, or cut short). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    size_t len = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
    uint32_t cp;

    if (len == 0 || len > n || p[0] > 0xf4)
        return 0;
    cp = p[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

bool shoal_hf_branch_ok(const char *branch)
{
    const unsigned char *b = (const unsigned char *)branch;
    size_t n, i, comp = 0;

    if (!branch)
        return false;
    n = strlen(branch);
    /* git's rules for ref names (git-check-ref-format), which the Hub's
     * branches and tags follow, and a leading '-' (git refuses such a
     * branch; here it would read as an option or the state file's "none"). */
    if (n == 0 || n > 255 || b[0] == '/' || b[0] == '-' || b[n - 1] == '/' ||
        b[n - 1] == '.' || strcmp(branch, "@") == 0 || strstr(branch, "..") ||
        strstr(branch, "@{"))
        return false;
    for (i = 0; i <= n; i++) {
        if (i == n || b[i] == '/') {
            size_t len = i - comp;
            /* Empty, hidden ("." first: also "." and ".."), or ".lock". */
            if (len == 0 || b[comp] == '.' ||
                (len >= 5 && memcmp(b + i - 5, ".lock", 5) == 0))
                return false;
            comp = i + 1;
        } else if (b[i] >= 0x80) {
            size_t k = utf8_seq(b + i, n - i);
            if (k == 0)
                return false;
            i += k - 1;
        } else if (b[i] < 0x20 || b[i] == 0x7f || strchr(" ~^:?*[\\", b[i])) {
            return false;
        }
    }
    return true;
}

int shoal_hf_read_ref(const char *cache_dir, enum shoal_repo_type type,
                      const char *repo_id, const char *branch, char commit[41])
{
    char folder[512];
    char path[SHOAL_HF_PATH_MAX];
    char text[64];
    ssize_t n;
    size_t i;
    int fd = -1;
    int rv;

    if (!shoal_hf_branch_ok(branch)) {
        rv = SHOAL_EBADPATH;
        goto out;
    }
    if ((rv = shoal_hf_repo_folder(folder, sizeof folder, type, repo_id)) < 0)
        goto out;
    if ((rv = fmt(path, sizeof path, "%s/%s/refs/%s", cache_dir, folder, branch)) < 0)
        goto out;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        rv = errno == ENOENT || errno == ENOTDIR ? SHOAL_ENOTFOUND : -errno;
        goto out;
    }
    n = read(fd, text, sizeof text);
    if (n < 0) {
        rv = -errno;
        goto out;
    }
    /* huggingface_hub writes the bare commit; tolerate a trailing newline. */
    if (n == 41 && text[40] == '\n')
        n = 40;
    if (n != 40) {
        rv = SHOAL_EBADMSG;
        goto out;
    }
    for (i = 0; i < 40; i++) {
        char c = text[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            rv = SHOAL_EBADMSG;
            goto out;
        }
    }
    memcpy(commit, text, 40);
    commit[40] = '\0';
    rv = 0;
out:
    if (fd >= 0)
        close(fd);
    return rv;
}

int shoal_hf_snapshot_check(const char *cache_dir, const struct shoal_manifest *m,
                            uint32_t *missing)
{
    char folder[512];
    char rel[SHOAL_HF_PATH_MAX];
    char want[SHOAL_HF_PATH_MAX];
    char got[SHOAL_HF_PATH_MAX];
    struct stat st;
    int repo_fd = -1;
    uint32_t i, n;
    ssize_t len;
    int rv;

    rv = shoal_hf_repo_folder(folder, sizeof folder, shoal_manifest_repo_type(m),
                              shoal_manifest_repo_id(m));
    if (rv < 0)
        goto out;
    if ((rv = fmt(rel, sizeof rel, "%s/%s", cache_dir, folder)) < 0)
        goto out;
    repo_fd = open(rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (repo_fd < 0) {
        rv = errno == ENOENT ? SHOAL_ENOTFOUND : -errno;
        if (missing)
            *missing = 0;
        goto out;
    }
    n = (uint32_t)shoal_manifest_nfiles(m);
    for (i = 0; i < n; i++) {
        const struct shoal_mf_file *f = shoal_manifest_file(m, i);

        if (missing)
            *missing = i;
        if ((rv = shoal_hf_snapshot_path(rel, sizeof rel, shoal_manifest_commit(m),
                                         f->path)) < 0 ||
            (rv = shoal_hf_link_target(want, sizeof want, f)) < 0)
            goto out;
        len = readlinkat(repo_fd, rel, got, sizeof got - 1);
        if (len < 0) {
            rv = errno == ENOENT || errno == ENOTDIR ? SHOAL_ENOTFOUND
                 : errno == EINVAL                  ? SHOAL_EBADMSG
                                                    : -errno;
            goto out;
        }
        got[len] = '\0';
        if (strcmp(got, want) != 0) {
            rv = SHOAL_EBADMSG;
            goto out;
        }
        if ((rv = shoal_hf_blob_path(rel, sizeof rel, f, false)) < 0)
            goto out;
        if (fstatat(repo_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            rv = errno == ENOENT ? SHOAL_ENOTFOUND : -errno;
            goto out;
        }
        if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != f->size) {
            rv = SHOAL_EBADMSG;
            goto out;
        }
    }
    rv = 0;
out:
    if (repo_fd >= 0)
        close(repo_fd);
    return rv;
}
