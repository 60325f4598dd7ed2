/* SPDX-License-Identifier: MIT */
/*
 * Test helpers for the Hub stand-in: generate repos with genrepo.py, start
 * and stop hubstub.py on an ephemeral loopback port, talk to its control
 * endpoints (faults, stats, reset); t_rmtree (t_fs.h, included here)
 * removes the trees a test made. Header-only, blocking, every wait bounded; for tests
 * only. Include after <stdio.h>; link libcurl.
 *
 *   struct hubstub s;
 *   hubstub_genrepo(py, hubdir, root, "org/m", commit, "--size", "4M", NULL);
 *   hubstub_start(&s, py, hubdir, root, "--token", "t", NULL);
 *   hubstub_post(&s, "/_stub/faults", "[{\"kind\":\"status\",\"code\":503}]");
 *   ... s.url is "http://127.0.0.1:<port>" ...
 *   hubstub_stop(&s);
 */
#ifndef SHOAL_TEST_HUBSTUB_H
#define SHOAL_TEST_HUBSTUB_H

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "../t_fs.h"

#define HUBSTUB_MAX_ARGS 32

struct hubstub {
    pid_t pid;
    int port;
    char url[64];
};

/* Starts argv (NULL-terminated) with its stdout on a pipe whose read end
 * goes to |*fd|. Returns the child's pid, or -1 (no pipe left open). */
static inline pid_t hubstub_spawn(char *const argv[], int *fd)
{
    int fds[2];
    pid_t pid;

    if (pipe(fds) != 0)
        return -1;
    pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    *fd = fds[0];
    return pid;
}

/* Runs argv (NULL-terminated) and captures up to cap-1 bytes of stdout into
 * |out| (may be NULL). Returns the exit status, or -1. Waits at most
 * |timeout_s| seconds, then kills the child. */
static inline int hubstub_run(char *const argv[], char *out, size_t cap, int timeout_s)
{
    int fd, status = -1;
    size_t len = 0;
    time_t deadline = time(NULL) + timeout_s;
    pid_t pid = hubstub_spawn(argv, &fd);

    if (pid < 0)
        return -1;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = (int)(deadline - time(NULL));
        if (left <= 0 || poll(&p, 1, left * 1000) <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        char tmp[4096];
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n <= 0)
            break;
        if (out && len + 1 < cap) {
            size_t k = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;
            memcpy(out + len, tmp, k);
            len += k;
        }
    }
    if (out && cap)
        out[len] = '\0';
    close(fd);
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* genrepo.py ROOT REPO [args..., NULL]; the new commit (41 bytes) goes to
 * |commit| if not NULL. Returns 0 on success. */
static inline int hubstub_genrepo(const char *py, const char *hubdir, const char *root,
                                  const char *repo, char *commit, ...)
{
    char script[1024], out[256];
    char *argv[HUBSTUB_MAX_ARGS];
    int argc = 0, rv;
    va_list ap;
    const char *a;

    snprintf(script, sizeof(script), "%s/genrepo.py", hubdir);
    argv[argc++] = (char *)py;
    argv[argc++] = script;
    argv[argc++] = (char *)root;
    argv[argc++] = (char *)repo;
    va_start(ap, commit);
    while ((a = va_arg(ap, const char *)) && argc < HUBSTUB_MAX_ARGS - 1)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    rv = hubstub_run(argv, out, sizeof(out), 300);
    if (rv == 0 && commit) {
        if (strlen(out) < 40)
            return -1;
        memcpy(commit, out, 40);
        commit[40] = '\0';
    }
    return rv;
}

/* Starts hubstub.py ROOT [args..., NULL] and reads its port (10 s max).
 * Returns 0 on success. */
static inline int hubstub_start(struct hubstub *s, const char *py, const char *hubdir,
                                const char *root, ...)
{
    char script[1024], line[32];
    char *argv[HUBSTUB_MAX_ARGS];
    int argc = 0, fd;
    size_t len = 0;
    va_list ap;
    const char *a;

    memset(s, 0, sizeof(*s));
    snprintf(script, sizeof(script), "%s/hubstub.py", hubdir);
    argv[argc++] = (char *)py;
    argv[argc++] = script;
    argv[argc++] = (char *)root;
    va_start(ap, root);
    while ((a = va_arg(ap, const char *)) && argc < HUBSTUB_MAX_ARGS - 1)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    s->pid = hubstub_spawn(argv, &fd);
    if (s->pid < 0)
        return -1;
    while (len < sizeof(line) - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) <= 0 || read(fd, line + len, 1) != 1)
            break;
        if (line[len] == '\n')
            break;
        len++;
    }
    line[len] = '\0';
    close(fd);
    s->port = atoi(line);
    if (s->port <= 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
        return -1;
    }
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
    return 0;
}

static inline void hubstub_stop(struct hubstub *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

struct hubstub_body {
    char *p;
    size_t n, cap;
};

static inline size_t hubstub_body_cb(char *d, size_t sz, size_t nm, void *ud)
{
    struct hubstub_body *b = ud;
    size_t n = sz * nm;
    if (b->n + n + 1 > b->cap)
        n = b->cap > b->n + 1 ? b->cap - b->n - 1 : 0;
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = '\0';
    return sz * nm;
}

/* GET (|json| NULL) or POST |json| to the stub's |path|; the response body
 * goes to |out| (cap bytes, NUL-terminated) when not NULL. Returns the HTTP
 * status or -1. */
static inline long hubstub_http(const struct hubstub *s, const char *path, const char *json,
                                char *out, size_t cap)
{
    char url[512], dummy[64];
    struct hubstub_body b = {out ? out : dummy, 0, out ? cap : sizeof(dummy)};
    struct curl_slist *h = NULL;
    long code = -1;
    CURL *c = curl_easy_init();

    if (!c)
        return -1;
    snprintf(url, sizeof(url), "%s%s", s->url, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, hubstub_body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (json) {
        h = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    }
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return code;
}

static inline long hubstub_post(const struct hubstub *s, const char *path, const char *json)
{
    return hubstub_http(s, path, json, NULL, 0);
}

/* Reads an integer field of the stats JSON: "key": N, first occurrence
 * after |after| (NULL = start). Crude, but the stats are ours. Returns -1
 * when absent. */
static inline long long hubstub_stat(const struct hubstub *s, const char *after, const char *key)
{
    static char buf[1 << 20];
    char pat[512];
    const char *p = buf;

    if (hubstub_http(s, "/_stub/stats", NULL, buf, sizeof(buf)) != 200)
        return -1;
    if (after && !(p = strstr(buf, after)))
        return -1;
    snprintf(pat, sizeof(pat), "\"%s\": ", key);
    p = strstr(p, pat);
    return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

#endif
