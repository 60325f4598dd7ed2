/* SPDX-License-Identifier: MIT */
/*
 * shoald's state file (state.h): where it lives, and reading and writing
 * its one line per open release.
 */
#include "state.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cliutil.h"
#include "error.h"
#include "hfcache.h"

#define MAGIC "shoald-releases-v1"
/* Longest line read back: a path of PATH_MAX and the fixed fields. */
#define LINE_MAX_BYTES (SHOAL_STATE_PATH_MAX + 1024)

static int fmt(char *out, size_t cap, const char *f, const char *a, const char *b)
{
    int n = snprintf(out, cap, f, a, b);
    return n < 0 || (size_t)n >= cap ? SHOAL_ELIMIT : 0;
}

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

/* The state directory, as state.h lists the choices. */
static int state_dir_of(char *dir, size_t cap, const char *flag)
{
    const char *v;

    if (flag && flag[0])
        return fmt(dir, cap, "%s%s", flag, "");
    if ((v = env_nonempty("STATE_DIRECTORY"))) {
        /* Several StateDirectory= entries come ':'-separated: ours is the
         * first (the unit lists only shoald). */
        size_t n = strcspn(v, ":");
        if (n >= cap)
            return SHOAL_ELIMIT;
        memcpy(dir, v, n);
        dir[n] = '\0';
        return 0;
    }
    if (geteuid() == 0)
        return fmt(dir, cap, "%s%s", "/var/lib/shoald", "");
    if ((v = env_nonempty("XDG_STATE_HOME")))
        return fmt(dir, cap, "%s%s", v, "/shoald");
    if ((v = env_nonempty("HOME")))
        return fmt(dir, cap, "%s%s", v, "/.local/state/shoald");
    return SHOAL_ENOTFOUND;
}

int shoal_state_absolute(char *out, size_t cap, const char *path)
{
    char buf[SHOAL_STATE_PATH_MAX], cwd[SHOAL_STATE_PATH_MAX];
    const char *rest = "";
    char *real = NULL;
    int rv;

    if (path[0] == '/')
        rv = fmt(buf, sizeof buf, "%s%s", path, "");
    else if (!getcwd(cwd, sizeof cwd))
        return -errno;
    else
        rv = fmt(buf, sizeof buf, "%s/%s", cwd, path);
    if (rv != 0)
        return rv;
    /* The longest leading part that exists is resolved; the rest (from a
     * '/' on) is appended as written. */
    char prefix[SHOAL_STATE_PATH_MAX];
    size_t cut = strlen(buf);
    memcpy(prefix, buf, cut + 1);
    for (;;) {
        prefix[cut] = '\0';
        if ((real = realpath(cut ? prefix : "/", NULL)) != NULL)
            break;
        if ((errno != ENOENT && errno != ENOTDIR) || cut == 0)
            return fmt(out, cap, "%s%s", buf, ""); /* as written */
        char *slash = strrchr(prefix, '/');
        cut = slash ? (size_t)(slash - prefix) : 0;
    }
    rest = buf + cut;
    rv = fmt(out, cap, "%s%s", strcmp(real, "/") == 0 && rest[0] ? "" : real, rest);
    free(real);
    return rv;
}

int shoal_state_path(char *out, size_t cap, char *dir, size_t dircap, char *abs_cache,
                     size_t abscap, const char *state_dir, const char *cache_dir)
{
    uint8_t h[8];
    char hex[17];
    int rv;

    rv = state_dir_of(dir, dircap, state_dir);
    if (rv == 0)
        rv = shoal_state_absolute(abs_cache, abscap, cache_dir);
    if (rv != 0)
        return rv;
    if (strchr(dir, '\n') || strchr(abs_cache, '\n'))
        return -EINVAL;
    crypto_generichash(h, sizeof h, (const uint8_t *)abs_cache, strlen(abs_cache), NULL, 0);
    shoal_hex(hex, h, sizeof h);
    return fmt(out, cap, "%s/releases-%s.list", dir, hex);
}

/* ---- reading ---- */

static bool is_lower_hex(const char *s, size_t n)
{
    return strlen(s) == n && strspn(s, "0123456789abcdef") == n;
}

/* Splits off the next space-terminated field of |*p|; NULL if none. */
static char *field(char **p)
{
    char *s = *p, *sp;

    if (!s || !*s)
        return NULL;
    sp = strchr(s, ' ');
    if (sp) {
        *sp = '\0';
        *p = sp + 1;
    } else {
        *p = NULL;
    }
    return s;
}

/* Parses line |s| (no newline) into |e|; says what is wrong in |why|. */
static int parse_line(char *s, struct shoal_state_entry *e, char *why, size_t whylen)
{
    char *p = s, *id = field(&p), *type = field(&p), *rel = field(&p), *branch = field(&p),
         *state = field(&p), *at, folder[SHOAL_STATE_REPO_MAX + 32];

    memset(e, 0, sizeof *e);
    if (!id || !type || !rel || !branch || !state || !p || !*p) {
        snprintf(why, whylen, "expected 6 fields (id, kind, repo@commit, branch, state, "
                              "manifest path)");
        return SHOAL_EBADMSG;
    }
    if (!is_lower_hex(id, 64) || shoal_unhex(e->id, 32, id, 64) != 0) {
        snprintf(why, whylen, "'%.80s' is not a 64-hex manifest id", id);
        return SHOAL_EBADMSG;
    }
    if (strcmp(type, "model") == 0) {
        e->type = SHOAL_REPO_MODEL;
    } else if (strcmp(type, "dataset") == 0) {
        e->type = SHOAL_REPO_DATASET;
    } else {
        snprintf(why, whylen, "kind '%.40s' is neither model nor dataset", type);
        return SHOAL_EBADMSG;
    }
    at = strrchr(rel, '@');
    if (!at || (size_t)(at - rel) > SHOAL_STATE_REPO_MAX || !is_lower_hex(at + 1, 40)) {
        snprintf(why, whylen, "'%.300s' is not org/name@commit", rel);
        return SHOAL_EBADMSG;
    }
    memcpy(e->repo, rel, (size_t)(at - rel));
    e->repo[at - rel] = '\0';
    memcpy(e->commit, at + 1, 41);
    if (shoal_hf_repo_folder(folder, sizeof folder, e->type, e->repo) != 0) {
        snprintf(why, whylen, "'%.300s' is not a repo id", e->repo);
        return SHOAL_EBADMSG;
    }
    if (strcmp(branch, "-") != 0) {
        if (!shoal_hf_branch_ok(branch) || strlen(branch) > SHOAL_STATE_BRANCH_MAX) {
            snprintf(why, whylen, "'%.300s' is not a branch or tag name", branch);
            return SHOAL_EBADMSG;
        }
        memcpy(e->branch, branch, strlen(branch) + 1);
    }
    /* "+rollout": a tracker's rollout named it when the file was written. */
    size_t sl = strlen(state);
    if (sl > 8 && strcmp(state + sl - 8, "+rollout") == 0) {
        e->rollout = true;
        state[sl - 8] = '\0';
    }
    if (strcmp(state, "complete") == 0) {
        e->complete = true;
    } else if (strcmp(state, "pulling") != 0) {
        snprintf(why, whylen, "state '%.40s' is neither complete nor pulling", state);
        return SHOAL_EBADMSG;
    }
    if (p[0] != '/' || strlen(p) >= sizeof e->manifest) {
        snprintf(why, whylen, "manifest path '%.300s' is not absolute", p);
        return SHOAL_EBADMSG;
    }
    memcpy(e->manifest, p, strlen(p) + 1);
    return 0;
}

int shoal_state_load(const char *path, const char *abs_cache, struct shoal_state_entry **v,
                     size_t *n, size_t *skipped, char *why, size_t whylen)
{
    struct shoal_state_entry *out = NULL;
    size_t cnt = 0, lineno = 0, cap = 0, m = strlen(MAGIC);
    char *line = NULL, inner[400];
    ssize_t got;
    struct stat st;
    FILE *f;
    int rv = 0;

    *v = NULL;
    *n = 0;
    *skipped = 0;
    why[0] = '\0';
    f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        rv = -errno;
        snprintf(why, whylen, "cannot read it: %s", strerror(-rv));
        return rv;
    }
    /* getline grows its buffer to the longest line: bound the whole file
     * first, so a huge file without newlines cannot take the memory. */
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        rv = -EINVAL;
        snprintf(why, whylen, "not a regular file");
        goto out;
    }
    if ((uint64_t)st.st_size > (uint64_t)SHOAL_STATE_ENTRIES_MAX * LINE_MAX_BYTES) {
        rv = SHOAL_ELIMIT;
        snprintf(why, whylen, "%lld bytes, far more than shoald writes", (long long)st.st_size);
        goto out;
    }
    while ((got = getline(&line, &cap, f)) >= 0) {
        size_t len = (size_t)got;
        bool nul = memchr(line, '\0', len) != NULL;
        struct shoal_state_entry e;

        lineno++;
        if (lineno == 1) {
            if (nul || len < m + 3 || strncmp(line, MAGIC " ", m + 1) != 0 ||
                line[len - 1] != '\n') {
                snprintf(why, whylen, "not a shoald state file (the first line is not "
                                      "'" MAGIC " CACHE_DIR')");
                rv = SHOAL_EBADMSG;
                goto out;
            }
            line[len - 1] = '\0';
            if (strcmp(line + m + 1, abs_cache) != 0) {
                snprintf(why, whylen, "written for the cache %.1000s, not %.1000s",
                         line + m + 1, abs_cache);
                rv = SHOAL_EBADMSG;
                goto out;
            }
            continue;
        }
        /* The file is renamed into place whole, so an unterminated last
         * line or a NUL byte was not written by shoald: skip that line. */
        if (nul || len > LINE_MAX_BYTES || line[len - 1] != '\n') {
            snprintf(inner, sizeof inner, "%s", nul ? "holds a NUL byte"
                                              : len > LINE_MAX_BYTES ? "too long"
                                                                     : "not terminated");
        } else {
            line[len - 1] = '\0';
            if (line[0] == '#' || line[0] == '\0')
                continue;
            if (cnt >= SHOAL_STATE_ENTRIES_MAX) {
                snprintf(why, whylen, "more than %u releases listed", SHOAL_STATE_ENTRIES_MAX);
                rv = SHOAL_ELIMIT;
                goto out;
            }
            if (parse_line(line, &e, inner, sizeof inner) == 0) {
                if (cnt % 16 == 0) {
                    struct shoal_state_entry *nv = realloc(out, (cnt + 16) * sizeof *nv);
                    if (!nv) {
                        rv = -ENOMEM;
                        goto out;
                    }
                    out = nv;
                }
                out[cnt++] = e;
                continue;
            }
        }
        if (*skipped == 0)
            snprintf(why, whylen, "line %zu: %s", lineno, inner);
        (*skipped)++;
    }
    if (ferror(f)) {
        rv = -EIO;
        snprintf(why, whylen, "cannot read it: %s", strerror(EIO));
    } else if (lineno == 0) {
        /* Not even the header: written by no shoald. */
        snprintf(why, whylen, "the file is empty");
        rv = SHOAL_EBADMSG;
    }
out:
    fclose(f);
    free(line);
    if (rv != 0) {
        free(out);
        return rv;
    }
    *v = out;
    *n = cnt;
    return 0;
}

/* ---- writing ---- */

/* Creates |dir| and its missing parents, new ones mode 0700. */
static int mkdir_p(const char *dir)
{
    char tmp[SHOAL_STATE_PATH_MAX];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof tmp)
        return -EINVAL;
    memcpy(tmp, dir, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static bool entry_ok(const struct shoal_state_entry *e)
{
    char folder[SHOAL_STATE_REPO_MAX + 32];

    return strnlen(e->repo, sizeof e->repo) < sizeof e->repo &&
           shoal_hf_repo_folder(folder, sizeof folder, e->type, e->repo) == 0 &&
           is_lower_hex(e->commit, 40) &&
           (!e->branch[0] || shoal_hf_branch_ok(e->branch)) &&
           strnlen(e->manifest, sizeof e->manifest) < sizeof e->manifest &&
           e->manifest[0] == '/' && !strchr(e->manifest, '\n');
}

int shoal_state_save(const char *path, const char *abs_cache, const struct shoal_state_entry *v,
                     size_t n)
{
    char dir[SHOAL_STATE_PATH_MAX], hex[65], *slash, *text = NULL;
    size_t len = 0;
    FILE *mem;
    int rv;

    if (strchr(abs_cache, '\n'))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!entry_ok(&v[i]))
            return -EINVAL;
    }
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return -ENAMETOOLONG;
    slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if ((rv = mkdir_p(dir)) != 0)
            return rv;
    }
    mem = open_memstream(&text, &len);
    if (!mem)
        return -errno;
    fprintf(mem, MAGIC " %s\n", abs_cache);
    fprintf(mem, "# Releases this shoald has open, reopened when it starts (`shoal drop` "
                 "removes one).\n"
                 "# id kind repo@commit branch state[+rollout] manifest\n");
    for (size_t i = 0; i < n; i++) {
        shoal_hex(hex, v[i].id, 32);
        fprintf(mem, "%s %s %s@%s %s %s%s %s\n", hex,
                v[i].type == SHOAL_REPO_DATASET ? "dataset" : "model", v[i].repo, v[i].commit,
                v[i].branch[0] ? v[i].branch : "-", v[i].complete ? "complete" : "pulling",
                v[i].rollout ? "+rollout" : "", v[i].manifest);
    }
    if (fclose(mem) != 0) {
        free(text);
        return -ENOMEM;
    }
    rv = shoal_write_file_atomic(path, text, len);
    free(text);
    return rv;
}
