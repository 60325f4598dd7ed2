/* SPDX-License-Identifier: MIT */
/* The rollout file; see rollfile.h. */
#include "rollfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "hash.h"
#include "smallfile.h"

/* Decodes the percent-encoded token |s| into |out| (|cap| bytes with the
 * NUL). False on a bad escape, an encoded NUL or a name too long. */
static bool decode(const char *s, char *out, size_t cap)
{
    size_t n = 0;

    for (; *s; s++) {
        int c = (unsigned char)*s;
        if (c == '%') {
            uint8_t v;
            if (strnlen(s + 1, 2) < 2 || shoal_unhex(&v, 1, s + 1, 2) != 0 || v == 0)
                return false;
            c = v;
            s += 2;
        }
        if (n + 1 >= cap)
            return false;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return true;
}

static void encode(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= ' ' || c >= 0x7f || c == '%')
            fprintf(f, "%%%02X", c);
        else
            fputc(c, f);
    }
}

/* Parses one line (already split off, without its newline) into |repo|,
 * |zone| and |ref|. Returns NULL, or why it does not parse. */
static const char *parse_line(char *line, char *repo, size_t rcap, char *zone, size_t zcap,
                              char *ref, size_t fcap)
{
    static const char usage[] = "expected 'rollout ORG/NAME@COMMIT [zone ZONE] [ref BRANCH]'";
    char *tok[7];
    int n = 0;
    char *save = NULL;

    for (char *t = strtok_r(line, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
        if (n == 7)
            return "too many words";
        tok[n++] = t;
    }
    if (n < 2 || n % 2 || strcmp(tok[0], "rollout") != 0)
        return usage;
    if (!decode(tok[1], repo, rcap))
        return "release name badly escaped or too long";
    zone[0] = ref[0] = '\0';
    for (int k = 2; k < n; k += 2) {
        if (strcmp(tok[k], "zone") == 0 && !zone[0]) {
            if (!decode(tok[k + 1], zone, zcap) || !zone[0])
                return "zone name badly escaped, empty or too long";
        } else if (strcmp(tok[k], "ref") == 0 && !ref[0]) {
            if (!decode(tok[k + 1], ref, fcap) || !ref[0])
                return "ref name badly escaped, empty or too long";
        } else {
            return usage;
        }
    }
    return NULL;
}

int shoal_rollfile_load(const char *path, struct shoal_reg *reg,
                        struct shoal_rollfile_result *res)
{
    char *text = NULL, *end, *next;
    size_t len = 0;
    unsigned lineno = 0;
    int rv;
    FILE *bad = NULL;

    memset(res, 0, sizeof *res);
    rv = shoal_read_file(path, SHOAL_ROLLFILE_MAX, (uint8_t **)&text, &len);
    if (rv == -ENOENT)
        return 0;
    if (rv)
        return rv;
    bad = open_memstream(&res->bad_text, &res->bad_len);
    if (!bad) {
        rv = -ENOMEM;
        goto out;
    }
    end = text + len;
    for (char *p = text; p < end; p = next) {
        char repo[SHOAL_REG_REPO_MAX + 2], zone[SHOAL_REG_ZONE_MAX + 2],
            ref[SHOAL_REG_REF_MAX + 2];
        char *nl = memchr(p, '\n', (size_t)(end - p)), *line;
        size_t span = (size_t)((nl ? nl : end) - p);
        const char *why;

        next = nl ? nl + 1 : end;
        if (nl)
            *nl = '\0';
        lineno++;
        if (strlen(p) != span) {
            why = "a NUL byte in the line";
        } else {
            line = p + strspn(p, " \t\r");
            if (!*line || *line == '#')
                continue;
            /* Parsed on a copy: the line itself may have to be kept. */
            char *copy = strdup(line);
            if (!copy) {
                rv = -ENOMEM;
                goto out;
            }
            why = parse_line(copy, repo, sizeof repo, zone, sizeof zone, ref, sizeof ref);
            free(copy);
        }
        if (!why) {
            int r = ref[0] ? shoal_reg_rollout_set_ref(reg, repo, zone, ref)
                           : shoal_reg_rollout_set(reg, repo, zone, false);
            why = r == 0                ? NULL
                  : r == SHOAL_EBADMSG ? "expected ORG/NAME@COMMIT"
                  : r == SHOAL_ELIMIT  ? "too many rollouts"
                  : r == SHOAL_ETOOBIG ? "name too long"
                                       : shoal_strerror(r);
        }
        if (why) {
            if (res->bad++ == 0)
                snprintf(res->first_bad, sizeof res->first_bad, "line %u: %s", lineno, why);
            fprintf(bad, "# line %u: %s\n", lineno, why);
            fwrite(p, 1, span, bad);
            fputc('\n', bad);
            continue;
        }
    }
    res->loaded = shoal_reg_rollout_count(reg);
out:
    if (bad && fclose(bad) != 0 && rv == 0)
        rv = -ENOMEM;
    if (rv)
        shoal_rollfile_result_free(res);
    free(text);
    return rv;
}

void shoal_rollfile_result_free(struct shoal_rollfile_result *res)
{
    free(res->bad_text);
    res->bad_text = NULL;
    res->bad_len = 0;
}

/* Writes all |len| bytes of |p| to |fd|. Returns 0 or a negated errno. */
static int write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int shoal_rollfile_keep_bad(const char *path, const char *bad_path,
                            const struct shoal_rollfile_result *res)
{
    int rv = 0, fd = -1, dfd = -1;
    char head[512], stamp[32], *dir = NULL;
    time_t now = time(NULL);
    struct tm tm;

    if (!res->bad || !res->bad_len)
        goto out;
    bool existed = access(bad_path, F_OK) == 0;
    fd = open(bad_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rv = -errno;
        goto out;
    }
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(head, sizeof head, "# %s: %u line(s) of %s skipped at start\n", stamp, res->bad,
             path);
    if ((rv = write_all(fd, head, strlen(head))) != 0 ||
        (rv = write_all(fd, res->bad_text, res->bad_len)) != 0)
        goto out;
    if (fsync(fd) != 0) {
        rv = -errno;
        goto out;
    }
    if (!existed) {
        /* The new name must survive a crash as well as its bytes. */
        if (!(dir = strdup(bad_path))) {
            rv = -ENOMEM;
            goto out;
        }
        dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) != 0) {
            rv = -errno;
            goto out;
        }
    }
out:
    if (fd >= 0 && close(fd) != 0 && rv == 0)
        rv = -errno;
    if (dfd >= 0)
        close(dfd);
    free(dir);
    return rv;
}

int shoal_rollfile_save(const char *path, const struct shoal_reg *reg)
{
    struct shoal_reg_rollout_entry all[SHOAL_REG_ROLLOUTS_MAX];
    size_t n = shoal_reg_rollouts_all(reg, all, SHOAL_REG_ROLLOUTS_MAX);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    int rv;

    if (!f)
        return -ENOMEM;
    fputs("# shoal-tracker rollouts, rewritten on every change: "
          "rollout ORG/NAME@COMMIT [zone ZONE] [ref BRANCH]\n", f);
    for (size_t i = 0; i < n; i++) {
        fputs("rollout ", f);
        encode(f, all[i].repo_at_rev);
        if (all[i].zone[0]) {
            fputs(" zone ", f);
            encode(f, all[i].zone);
        }
        if (all[i].ref[0]) {
            fputs(" ref ", f);
            encode(f, all[i].ref);
        }
        fputc('\n', f);
    }
    if (fclose(f) != 0) {
        free(text);
        return -ENOMEM;
    }
    rv = shoal_write_file_atomic(path, text, len);
    free(text);
    return rv;
}
