/* SPDX-License-Identifier: MIT */
/* The rollout file; see rollfile.h. */
#include "rollfile.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Parses one line (already split off, without its newline) into |repo| and
 * |zone|. Returns NULL, or why it does not parse. */
static const char *parse_line(char *line, char *repo, size_t rcap, char *zone, size_t zcap)
{
    char *tok[5];
    int n = 0;
    char *save = NULL;

    for (char *t = strtok_r(line, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
        if (n == 5)
            return "too many words";
        tok[n++] = t;
    }
    if (n == 0 || strcmp(tok[0], "rollout") != 0)
        return "expected 'rollout ORG/NAME@COMMIT [zone ZONE]'";
    if (n != 2 && !(n == 4 && strcmp(tok[2], "zone") == 0))
        return "expected 'rollout ORG/NAME@COMMIT [zone ZONE]'";
    if (!decode(tok[1], repo, rcap))
        return "release name badly escaped or too long";
    zone[0] = '\0';
    if (n == 4 && (!decode(tok[3], zone, zcap) || !zone[0]))
        return "zone name badly escaped, empty or too long";
    return NULL;
}

int shoal_rollfile_load(const char *path, struct shoal_reg *reg,
                        struct shoal_rollfile_result *res)
{
    char *text = NULL, *end, *next;
    size_t len = 0;
    unsigned lineno = 0;
    int rv;

    memset(res, 0, sizeof *res);
    rv = shoal_read_file(path, SHOAL_ROLLFILE_MAX, (uint8_t **)&text, &len);
    if (rv == -ENOENT)
        return 0;
    if (rv)
        return rv;
    end = text + len;
    for (char *p = text; p < end; p = next) {
        char repo[SHOAL_REG_REPO_MAX + 2], zone[SHOAL_REG_ZONE_MAX + 2];
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
            why = parse_line(line, repo, sizeof repo, zone, sizeof zone);
        }
        if (!why) {
            int r = shoal_reg_rollout_set(reg, repo, zone, false);
            why = r == 0                ? NULL
                  : r == SHOAL_EBADMSG ? "expected ORG/NAME@COMMIT"
                  : r == SHOAL_ELIMIT  ? "too many rollouts"
                  : r == SHOAL_ETOOBIG ? "name too long"
                                       : shoal_strerror(r);
        }
        if (why) {
            if (res->bad++ == 0)
                snprintf(res->first_bad, sizeof res->first_bad, "line %u: %s", lineno, why);
            continue;
        }
    }
    res->loaded = shoal_reg_rollout_count(reg);
    free(text);
    return 0;
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
          "rollout ORG/NAME@COMMIT [zone ZONE]\n", f);
    for (size_t i = 0; i < n; i++) {
        fputs("rollout ", f);
        encode(f, all[i].repo_at_rev);
        if (all[i].zone[0]) {
            fputs(" zone ", f);
            encode(f, all[i].zone);
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
