/* SPDX-License-Identifier: MIT */
/*
 * `shoal pull`, `shoal status`, `shoal peers`, `shoal metrics`, `shoal drop`: the CLI side
 * of the daemon's control socket (ctl.h). Each connects to the local
 * shoald's socket, sends one request and prints the reply; `pull` keeps
 * reading progress until the release is complete, drawing a bar on a
 * terminal and plain lines otherwise, so scripts and logs stay readable.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cliutil.h"
#include "ctl.h"
#include "error.h"
#include "frame.h"
#include "hash.h"

/* Replies other than pull progress come at once; this bounds a hung daemon. */
#define REPLY_TIMEOUT_MS 15000

struct conn {
    int fd;
    const char *path;
    uint8_t *body; /* SHOAL_CTL_FRAME_MAX bytes */
};

/* Connecting to |path| was refused for want of permission (the socket is
 * 0660, its owner the daemon's user): a bare "Permission denied" leaves
 * the operator to guess whether shoald runs at all. Says whose socket it
 * is and what would reach it. */
static void explain_denied(const char *path)
{
    struct stat st;
    const struct passwd *pw;
    const struct group *gr;
    char user[64], group[64];

    if (stat(path, &st) != 0) {
        /* Not even its owner can be seen: a directory on the way is shut. */
        fprintf(stderr, "shoal: permission denied on %s: a directory on the way to it is "
                        "not open to you (uid %u); run shoal as shoald's user or root, or "
                        "as a member of the directory's group\n",
                path, (unsigned)geteuid());
        return;
    }
    pw = getpwuid(st.st_uid);
    gr = getgrgid(st.st_gid);
    if (pw)
        snprintf(user, sizeof user, "%s", pw->pw_name);
    else
        snprintf(user, sizeof user, "uid %u", (unsigned)st.st_uid);
    if (gr)
        snprintf(group, sizeof group, "%s", gr->gr_name);
    else
        snprintf(group, sizeof group, "gid %u", (unsigned)st.st_gid);
    fprintf(stderr, "shoal: permission denied on %s (owner %s, group %s, mode %04o): run shoal "
                    "as %s%s",
            path, user, group, (unsigned)(st.st_mode & 07777), user,
            st.st_uid == 0 ? "" : " or root");
    /* Joining the group helps only if the group may write to it; and
     * adding users to group root is not advice to give. */
    if ((st.st_mode & S_IWGRP) && st.st_gid != 0)
        fprintf(stderr, ", or as a member of group %s (e.g. `usermod -aG %s $USER`, then log "
                        "in again)", group, group);
    else if (st.st_mode & S_IWGRP)
        fprintf(stderr, ", or run shoald under a group of its own (a systemd unit's "
                        "Group=), whose members may then use its socket");
    fputc('\n', stderr);
}

static int conn_open(struct conn *c, const char *path, char *pathbuf, size_t cap)
{
    struct sockaddr_un sa;
    int rv = 0;
    bool check_peer = false;

    c->fd = -1;
    c->body = NULL;
    if (!path) {
        /* The default path of a non-root user may sit in a place another
         * user could bind first: only talk to a daemon of our own uid (or
         * root). An explicit --socket is the user's choice and may be a
         * daemon running as a service user. */
        check_peer = geteuid() != 0;
        if (shoal_ctl_default_path(pathbuf, cap) != 0) {
            fprintf(stderr, "shoal: no default control socket path; use --socket\n");
            rv = -EINVAL;
            goto out;
        }
        path = pathbuf;
    }
    c->path = path;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "shoal: socket path %s is too long\n", path);
        rv = -ENAMETOOLONG;
        goto out;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    c->body = malloc(SHOAL_CTL_FRAME_MAX);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!c->body || c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        rv = c->body ? -errno : -ENOMEM;
        if (rv == -EACCES || rv == -EPERM) {
            explain_denied(path);
            goto out;
        }
        /* A non-root user's default is their own daemon's socket; the
         * system service's is elsewhere, and they may not know. */
        fprintf(stderr, "shoal: cannot reach shoald at %s: %s (is it running? --socket PATH%s)\n",
                path, strerror(-rv),
                check_peer ? "; the system service's is /run/shoald/shoald.sock" : "");
        goto out;
    }
    if (check_peer) {
        struct ucred cr;
        socklen_t crlen = sizeof cr;
        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0) {
            rv = -errno;
            fprintf(stderr, "shoal: %s: cannot tell who serves it: %s\n", path, strerror(-rv));
        } else if (cr.uid != geteuid() && cr.uid != 0) {
            rv = -EPERM;
            fprintf(stderr, "shoal: %s is served by uid %u, not by you (uid %u) or root: "
                    "refusing to talk to it (use --socket if this is intended)\n",
                    path, (unsigned)cr.uid, (unsigned)geteuid());
        }
    }
out:
    return rv;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->body);
}

static int conn_send(struct conn *c, const struct shoal_ctl_msg *m)
{
    struct shoal_buf b;
    size_t off = 0;
    int rv;

    shoal_buf_init(&b, SHOAL_CTL_REQUEST_MAX + SHOAL_FRAME_HDR_LEN);
    rv = shoal_ctl_encode(m, &b);
    while (rv == 0 && off < b.len) {
        /* No SIGPIPE: a daemon that refused us closed its end, and its
         * CTL_ERROR saying why is still to be read (conn_exchange). */
        ssize_t n = send(c->fd, b.data + off, b.len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rv = -errno;
        else
            off += (size_t)n;
    }
    shoal_buf_free(&b);
    return rv;
}

/* Reads exactly |n| bytes, waiting at most |timeout_ms| for each read
 * (negative: forever). */
static int read_full(struct conn *c, uint8_t *p, size_t n, int timeout_ms)
{
    while (n > 0) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        ssize_t r;
        int pr = poll(&pfd, 1, timeout_ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            return -ETIMEDOUT;
        if (pr < 0)
            return -errno;
        r = read(c->fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -EPIPE;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* One reply into |m| (views into c->body). */
static int conn_recv(struct conn *c, struct shoal_ctl_msg *m, int timeout_ms)
{
    uint8_t hdr[SHOAL_FRAME_HDR_LEN];
    uint32_t len;
    int rv = read_full(c, hdr, sizeof hdr, timeout_ms);

    if (rv != 0)
        return rv;
    len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (len == 0 || len > SHOAL_CTL_FRAME_MAX)
        return SHOAL_ETOOBIG;
    rv = read_full(c, c->body, len, timeout_ms);
    if (rv == 0)
        rv = shoal_ctl_decode(m, c->body, len);
    return rv;
}

/* Sends |m| and reads the first reply into it. A daemon that refuses the
 * connection (too many clients) writes CTL_ERROR and hangs up, perhaps
 * before our request is written: that reply is read all the same. */
static int conn_exchange(struct conn *c, struct shoal_ctl_msg *m, int timeout_ms)
{
    int rv = conn_send(c, m);

    if (rv == 0)
        return conn_recv(c, m, timeout_ms);
    if (rv == -EPIPE || rv == -ECONNRESET) {
        int r2 = conn_recv(c, m, 1000);
        if (r2 == 0)
            return 0;
    }
    return rv;
}

static const char *recv_error(int rv)
{
    return rv == -EPIPE ? "shoald closed the connection" : shoal_strerror(rv);
}

/* Sends a request and reads the one reply of |want| type; an ERROR reply
 * is printed. Returns 0 or 1 (the exit status). */
static int request(const char *cmd, const char *sock, uint32_t req, uint32_t want,
                   struct shoal_ctl_msg *m, struct conn *c)
{
    char pathbuf[128];
    int rv = conn_open(c, sock, pathbuf, sizeof pathbuf);

    if (rv != 0)
        return 1;
    memset(m, 0, sizeof *m);
    m->type = req;
    rv = conn_exchange(c, m, REPLY_TIMEOUT_MS);
    if (rv != 0) {
        fprintf(stderr, "shoal %s: %s: %s\n", cmd, c->path, recv_error(rv));
        return 1;
    }
    if (m->type == SHOAL_CTL_ERROR) {
        fprintf(stderr, "shoal %s: %s\n", cmd, m->u.error.message);
        return 1;
    }
    if (m->type != want) {
        fprintf(stderr, "shoal %s: unexpected reply type %u\n", cmd, m->type);
        return 1;
    }
    return 0;
}

/* Parses [--socket PATH] plus, for pull, [--timeout S] and [--quiet]; the
 * one positional argument (if |pos|) goes to |*pos|. Returns 0 or 2. */
static int parse_args(int argc, char **argv, const char **sock, const char **pos,
                      double *timeout, int *quiet)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
            *sock = argv[++i];
        } else if (timeout && strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            char *end;
            const char *v = argv[++i];
            *timeout = strtod(v, &end);
            if (!*v || *end || !(*timeout >= 0)) {
                fprintf(stderr, "shoal %s: --timeout takes seconds, 0 or more (0: no limit), "
                                "not '%s'\n", argv[0], v);
                goto usage;
            }
        } else if (quiet && strcmp(argv[i], "--quiet") == 0) {
            *quiet = 1;
        } else if (pos && !*pos && argv[i][0] != '-') {
            *pos = argv[i];
        } else {
            if (!pos && argv[i][0] != '-')
                fprintf(stderr, "shoal %s: takes no release ('%s')\n", argv[0], argv[i]);
            else if (pos && *pos && argv[i][0] != '-')
                fprintf(stderr, "shoal %s: one release at a time ('%s' and '%s')\n", argv[0],
                        *pos, argv[i]);
            else if ((strcmp(argv[i], "--socket") == 0 || strcmp(argv[i], "--timeout") == 0) &&
                     i + 1 == argc)
                fprintf(stderr, "shoal %s: %s needs a value\n", argv[0], argv[i]);
            else
                fprintf(stderr, "shoal %s: unknown option '%s'\n", argv[0], argv[i]);
            goto usage;
        }
    }
    if (pos && !*pos) {
        fprintf(stderr, "shoal %s: which release? give org/name@rev or a manifest id\n", argv[0]);
        goto usage;
    }
    return 0;
usage:
    fprintf(stderr, "usage: shoal %s%s [--socket PATH]%s\n", argv[0],
            pos ? " [datasets/]ORG/NAME@REV|MANIFEST_ID" : "", timeout ? " [--timeout S] [--quiet]" : "");
    return 2;
}

static const char *state_name(uint8_t st)
{
    return st == SHOAL_CTL_COMPLETE  ? "complete"
           : st == SHOAL_CTL_PULLING ? "pulling"
           : st == SHOAL_CTL_FAILED  ? "failed"
                                     : "waiting";
}

static void fmt_eta(char *buf, size_t cap, uint64_t ms)
{
    uint64_t s = (ms + 999) / 1000;
    if (ms == 0)
        snprintf(buf, cap, "--:--");
    else if (s >= 3600)
        snprintf(buf, cap, "%lluh%02llum", (unsigned long long)(s / 3600),
                 (unsigned long long)(s / 60 % 60));
    else
        snprintf(buf, cap, "%llu:%02llu", (unsigned long long)(s / 60),
                 (unsigned long long)(s % 60));
}

static unsigned origin_pct(const struct shoal_ctl_release *r)
{
    uint64_t all = r->peer_bytes + r->origin_bytes;
    return all ? (unsigned)(r->origin_bytes * 100 / all) : 0;
}

static void clean_str(char *str);

static void print_progress(const struct shoal_ctl_release *r, bool tty)
{
    char have[32], total[32], rate[32], eta[48], bar[41];
    double frac = r->total_bytes ? (double)r->have_bytes / (double)r->total_bytes : 0;
    int fill = (int)(frac * 40.0);

    shoal_fmt_bytes(have, sizeof have, r->have_bytes);
    shoal_fmt_bytes(total, sizeof total, r->total_bytes);
    shoal_fmt_bytes(rate, sizeof rate, r->rate_bps);
    fmt_eta(eta, sizeof eta, r->eta_ms);
    if (r->state == SHOAL_CTL_WAITING) {
        /* Why it waits, when the daemon knows (the Hub resolving a branch,
         * no tracker knowing the release): a wait with no end in sight
         * must not look like one about to end. */
        char why[sizeof r->error];
        snprintf(why, sizeof why, "%s", r->error);
        clean_str(why);
        char line[sizeof why + SHOAL_CTL_RELEASE_MAX + 64];
        snprintf(line, sizeof line, "%s: waiting for the manifest%s%s%s", r->name,
                 why[0] ? " (" : "", why, why[0] ? ")" : "");
        /* A redrawn line wider than the terminal wraps, and \r\033[K
         * clears only its last row: cut it to the width. */
        struct winsize ws;
        if (tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 4 &&
            strlen(line) >= ws.ws_col)
            snprintf(line + ws.ws_col - 4, 4, "...");
        fprintf(stdout, "%s%s%s", tty ? "\r\033[K" : "", line, tty ? "" : "\n");
    } else if (tty) {
        memset(bar, '#', (size_t)fill);
        memset(bar + fill, '.', (size_t)(40 - fill));
        bar[40] = '\0';
        fprintf(stdout, "\r\033[K[%s] %5.1f%% %s/%s %s/s %u peer%s origin %u%% ETA %s", bar,
                frac * 100.0, have, total, rate, r->peers, r->peers == 1 ? "" : "s",
                origin_pct(r), eta);
    } else {
        fprintf(stdout, "%s %5.1f%% %s/%s %s/s peers %u origin %u%% eta %s\n", r->name,
                frac * 100.0, have, total, rate, r->peers, origin_pct(r), eta);
    }
    fflush(stdout);
}

/* The daemon sends a PROGRESS every 500 ms to a pull it follows: this
 * long without one, it is stopped or stuck, and waiting on says nothing. */
#define PULL_SILENCE_MS 10000

/* How long to wait for the next reply: until --timeout (0: none) runs out,
 * but no longer than PULL_SILENCE_MS. */
static int pull_wait_ms(double timeout, double start, bool *timed_out)
{
    int ms = PULL_SILENCE_MS;

    *timed_out = false;
    if (timeout > 0) {
        double left = timeout - (shoal_now_s() - start);
        if (left <= 0) {
            *timed_out = true;
            return 0;
        }
        if (left * 1000.0 < ms)
            ms = (int)(left * 1000.0) + 1;
    }
    return ms;
}

/* Whether |a| and |b| differ in their digits at most (counts, seconds). */
static bool same_but_numbers(const char *a, const char *b)
{
    for (;;) {
        bool da = isdigit((unsigned char)*a), db = isdigit((unsigned char)*b);
        if (da != db)
            return false;
        if (da) {
            while (isdigit((unsigned char)*a))
                a++;
            while (isdigit((unsigned char)*b))
                b++;
            continue;
        }
        if (*a != *b)
            return false;
        if (!*a)
            return true;
        a++;
        b++;
    }
}

int shoal_cmd_pull(int argc, char **argv)
{
    const char *sock = NULL, *release = NULL;
    double timeout = 0, start = shoal_now_s(), last_line = -1e9;
    struct shoal_ctl_msg *m = malloc(sizeof *m);
    struct conn c = {.fd = -1};
    char pathbuf[128], size[32], rate[32], got[32];
    bool tty = isatty(STDOUT_FILENO), have, first = true, timed_out, base_waiting = false;
    uint64_t base = 0;
    int quiet = 0, status = 1, rv;
    /* The last reason shown for a release still pulling (as `shoal status`
     * shows it): printed when it changes, and with a time-out. */
    char why[sizeof m->u.progress.error] = "";

    if (!m)
        return 1;
    status = parse_args(argc, argv, &sock, &release, &timeout, &quiet);
    if (status != 0)
        goto out;
    status = 1;
    if (strlen(release) > SHOAL_CTL_RELEASE_MAX) {
        fprintf(stderr, "shoal pull: '%s' is too long for a release name\n", release);
        goto out;
    }
    if (conn_open(&c, sock, pathbuf, sizeof pathbuf) != 0)
        goto out;
    memset(m, 0, sizeof *m);
    m->type = SHOAL_CTL_PULL;
    memcpy(m->u.pull.release, release, strlen(release) + 1);
    m->u.pull.follow = true;
    /* The first reply may be a refusal that came before our request
     * could be written (conn_exchange). */
    rv = conn_exchange(&c, m, pull_wait_ms(timeout, start, &timed_out));
    have = rv == 0;
    for (;;) {
        int wait_ms = pull_wait_ms(timeout, start, &timed_out);
        if (rv == 0 && !have && timed_out)
            rv = -ETIMEDOUT;
        if (rv == 0 && !have)
            rv = conn_recv(&c, m, wait_ms);
        have = false;
        if (rv == -ETIMEDOUT)
            (void)pull_wait_ms(timeout, start, &timed_out); /* ours, or its silence? */
        if (rv != 0)
            break;
        if (m->type == SHOAL_CTL_ERROR) {
            if (tty && !quiet)
                fputc('\n', stdout);
            fprintf(stderr, "shoal pull: %s\n", m->u.error.message);
            /* The daemon checks the name (it knows whether it can resolve
             * a branch): a malformed one is a usage error, as elsewhere. */
            if (m->u.error.code == -EINVAL)
                status = 2;
            goto out;
        }
        if (m->type != SHOAL_CTL_PROGRESS) {
            fprintf(stderr, "shoal pull: unexpected reply type %u\n", m->type);
            goto out;
        }
        /* The release's byte counters count from when it opened on the
         * daemon; what they held when this command began was not its
         * doing. Before that the daemon may be resolving a branch or
         * fetching the manifest (no id yet, counters 0): the baseline is
         * then taken once the release shows, unless it opened after this
         * command began (elapsed_ms; an older daemon sends 0, and then
         * the baseline is as it was: the first reply's). */
        if (first) {
            first = false;
            base = m->u.progress.peer_bytes + m->u.progress.origin_bytes;
            base_waiting = !m->u.progress.has_id;
        } else if (base_waiting && m->u.progress.has_id) {
            base_waiting = false;
            if ((double)m->u.progress.elapsed_ms / 1000.0 >= shoal_now_s() - start + 0.25)
                base = m->u.progress.peer_bytes + m->u.progress.origin_bytes;
        }
        if (m->u.progress.state == SHOAL_CTL_COMPLETE)
            break;
        if (m->u.progress.state == SHOAL_CTL_PULLING) {
            /* A line per new reason, not per second a failure lasts
             * ("failing for N s (M failed requests)"). */
            bool again = same_but_numbers(why, m->u.progress.error);
            snprintf(why, sizeof why, "%s", m->u.progress.error);
            clean_str(why);
            if (!quiet && why[0] && !again)
                fprintf(stdout, "%s  %s\n", tty ? "\r\033[K" : "", why);
        }
        /* A line a second is plenty for a log; a terminal redraws each. */
        if (!quiet && (tty || shoal_now_s() - last_line >= 1.0)) {
            print_progress(&m->u.progress, tty);
            last_line = shoal_now_s();
        }
    }
    if (rv != 0) {
        if (tty && !quiet)
            fputc('\n', stdout);
        if (rv == -ETIMEDOUT && !timed_out)
            fprintf(stderr, "shoal pull %s: shoald is not answering (no progress for %d s; "
                            "it sends some every 0.5 s): is it stopped or stuck?\n",
                    release, PULL_SILENCE_MS / 1000);
        else
            fprintf(stderr, "shoal pull %s: %s%s%s%s\n", release,
                    rv == -ETIMEDOUT ? "timed out" : recv_error(rv),
                    rv == -ETIMEDOUT && why[0] ? " (" : "", rv == -ETIMEDOUT ? why : "",
                    rv == -ETIMEDOUT && why[0] ? ")" : "");
        goto out;
    }
    if (!quiet && tty)
        print_progress(&m->u.progress, tty);
    shoal_fmt_bytes(size, sizeof size, m->u.progress.total_bytes);
    /* The byte counters are the daemon's since the release opened (maybe
     * long before, or resumed from the cache); the rate is this command's
     * own: bytes fetched while it ran, over its time. */
    uint64_t now_bytes = m->u.progress.peer_bytes + m->u.progress.origin_bytes;
    uint64_t gained = now_bytes > base ? now_bytes - base : 0;
    double took = shoal_now_s() - start;
    if (gained) {
        shoal_fmt_bytes(got, sizeof got, gained);
        shoal_fmt_bytes(rate, sizeof rate,
                        (uint64_t)((double)gained / (took > 0.001 ? took : 0.001)));
    }
    fprintf(stdout, "%scomplete: %s %s, %llu bytes from peers, %llu from origin (%u%%), "
                    "%.1f s here, %s%s%s%s\n",
            tty && !quiet ? "\n" : "", m->u.progress.name, size,
            (unsigned long long)m->u.progress.peer_bytes,
            (unsigned long long)m->u.progress.origin_bytes, origin_pct(&m->u.progress),
            shoal_now_s() - start, gained ? got : "nothing fetched (it was here already)",
            gained ? " fetched (" : "", gained ? rate : "", gained ? "/s)" : "");
    status = 0;
out:
    conn_close(&c);
    free(m);
    return status;
}

/* Replaces control bytes (below 0x20, and 0x7f) in |str| with '?' in place:
 * peers and trackers supply zones, addresses and names, and an escape
 * sequence in them must not reach the terminal. (The same rule as
 * shoal_log_clean, which lives in the daemon library shoal does not link.) */
static void clean_str(char *str)
{
    for (; *str; str++)
        if ((unsigned char)*str < 0x20 || *str == 0x7f)
            *str = '?';
}

/* What status, peers and metrics share: [--socket PATH] only, one request of
 * type |req| answered by |want|, the answer given to |print|. Returns the exit
 * status (0, 1 or 2). */
static int query(int argc, char **argv, const char *cmd, uint32_t req, uint32_t want,
                 void (*print)(struct shoal_ctl_msg *m))
{
    const char *sock = NULL;
    struct shoal_ctl_msg *m = malloc(sizeof *m);
    struct conn c = {.fd = -1};
    int status;

    if (!m)
        return 1;
    status = parse_args(argc, argv, &sock, NULL, NULL, NULL);
    if (status == 0)
        status = request(cmd, sock, req, want, m, &c);
    if (status == 0)
        print(m);
    conn_close(&c);
    free(m);
    return status;
}

/* Status order (QA F9): by repo ("[datasets/]org/name", the name up to
 * '@'), then by when it opened on the daemon, oldest first, so the newest
 * release of each repo is its last row; pulls not open yet (elapsed 0)
 * come after the open ones. */
static int status_cmp(const void *pa, const void *pb)
{
    const struct shoal_ctl_release *a = pa, *b = pb;
    const char *aa = strchr(a->name, '@'), *ba = strchr(b->name, '@');
    size_t al = aa ? (size_t)(aa - a->name) : strlen(a->name);
    size_t bl = ba ? (size_t)(ba - b->name) : strlen(b->name);
    int c = memcmp(a->name, b->name, al < bl ? al : bl);

    if (c != 0 || al != bl)
        return c != 0 ? c : al < bl ? -1 : 1;
    if ((a->elapsed_ms == 0) != (b->elapsed_ms == 0))
        return a->elapsed_ms == 0 ? 1 : -1;
    if (a->elapsed_ms != b->elapsed_ms)
        return a->elapsed_ms > b->elapsed_ms ? -1 : 1; /* opened earlier first */
    return strcmp(a->name, b->name);
}

static void print_status(struct shoal_ctl_msg *m)
{
    /* The RELEASE column is as wide as its longest name: org/name@<40 hex>
     * runs past any fixed width that still fits a terminal. */
    int w = (int)strlen("RELEASE");
    bool branches = false;
    for (uint32_t i = 0; i < m->u.status.count; i++) {
        clean_str(m->u.status.v[i].name);
        clean_str(m->u.status.v[i].branch);
        int n = (int)strlen(m->u.status.v[i].name);
        w = n > w ? n : w;
        branches |= m->u.status.v[i].branch[0] != '\0';
    }
    qsort(m->u.status.v, m->u.status.count, sizeof m->u.status.v[0], status_cmp);
    /* BRANCH (what the release was pulled by) goes last, and only when
     * some release has one: the columns before keep their places. */
    printf("%-*s %-9s %6s %22s %12s %5s %6s %8s%s\n", w, "RELEASE", "STATE", "DONE",
           "HAVE / TOTAL", "RATE", "PEERS", "ORIGIN", "ETA", branches ? "  BRANCH" : "");
    for (uint32_t i = 0; i < m->u.status.count; i++) {
        struct shoal_ctl_release *r = &m->u.status.v[i];
        char have[32], total[32], rate[32], both[72], eta[48];
        shoal_fmt_bytes(have, sizeof have, r->have_bytes);
        shoal_fmt_bytes(total, sizeof total, r->total_bytes);
        shoal_fmt_bytes(rate, sizeof rate, r->rate_bps);
        strcat(rate, "/s");
        snprintf(both, sizeof both, "%s / %s", have, total);
        fmt_eta(eta, sizeof eta, r->eta_ms);
        printf("%-*s %-9s %5.1f%% %22s %12s %5u %5u%% %8s%s%s\n", w, r->name,
               state_name(r->state),
               r->total_bytes ? 100.0 * (double)r->have_bytes / (double)r->total_bytes
                              : r->state == SHOAL_CTL_COMPLETE ? 100.0 : 0.0,
               both, rate, r->peers, origin_pct(r), eta, branches ? "  " : "",
               branches ? (r->branch[0] ? r->branch : "-") : "");
        if (r->state == SHOAL_CTL_FAILED) {
            clean_str(r->error);
            printf("  error: %s\n", r->error);
        } else if (r->error[0]) {
            clean_str(r->error);
            printf("  %s\n", r->error);
        }
        if (r->flags & SHOAL_CTL_REL_ROLLOUT)
            printf("  rollout: a tracker rollout names it (kept open and seeding, never closed "
                   "for room; `shoal rollout --list` on the tracker)\n");
    }
    if (m->u.status.count == 0)
        printf("(no releases)\n");
    /* The node's own trouble, after the table (its parsers read rows). */
    for (uint32_t i = 0; i < m->u.status.nwarnings; i++) {
        clean_str(m->u.status.warnings[i]);
        printf("warning: %s\n", m->u.status.warnings[i]);
    }
}

/* A round trip in milliseconds, two decimals below 10 ms (a LAN's or
 * loopback's tens of µs still show), "-" when the daemon has none. */
static void fmt_rtt(char *buf, size_t cap, uint32_t us)
{
    if (us == 0)
        snprintf(buf, cap, "-");
    else if (us < 10000)
        snprintf(buf, cap, "%.2f ms", us / 1000.0);
    else
        snprintf(buf, cap, "%u ms", (us + 500) / 1000);
}

static void print_peers(struct shoal_ctl_msg *m)
{
    printf("%-16s %-22s %-12s %-18s %-3s %11s %11s %12s %12s %10s\n", "NODE", "ADDRESS", "ZONE",
           "CIPHER", "DIR", "RX", "TX", "RX RATE", "TX RATE", "RTT");
    for (uint32_t i = 0; i < m->u.peers.count; i++) {
        struct shoal_ctl_peer *p = &m->u.peers.v[i];
        char key[17], rx[32], tx[32], rxr[32], txr[32], rtt[24];
        clean_str(p->addr);
        clean_str(p->zone);
        clean_str(p->cipher);
        shoal_hex(key, p->node_pk, 8);
        shoal_fmt_bytes(rx, sizeof rx, p->rx_bytes);
        shoal_fmt_bytes(tx, sizeof tx, p->tx_bytes);
        shoal_fmt_bytes(rxr, sizeof rxr, p->rx_bps);
        shoal_fmt_bytes(txr, sizeof txr, p->tx_bps);
        strcat(rxr, "/s");
        strcat(txr, "/s");
        fmt_rtt(rtt, sizeof rtt, p->rtt_us);
        printf("%-16s %-22s %-12s %-18s %-3s %11s %11s %12s %12s %10s\n", key, p->addr, p->zone,
               p->cipher, p->initiator ? "out" : "in", rx, tx, rxr, txr, rtt);
    }
    if (m->u.peers.count == 0)
        printf("(no peers connected)\n");
}

static void print_metrics(struct shoal_ctl_msg *m)
{
    fwrite(m->u.metrics.text, 1, m->u.metrics.len, stdout);
}

int shoal_cmd_status(int argc, char **argv)
{
    return query(argc, argv, "status", SHOAL_CTL_STATUS_REQ, SHOAL_CTL_STATUS, print_status);
}

int shoal_cmd_peers(int argc, char **argv)
{
    return query(argc, argv, "peers", SHOAL_CTL_PEERS_REQ, SHOAL_CTL_PEERS, print_peers);
}

int shoal_cmd_metrics(int argc, char **argv)
{
    return query(argc, argv, "metrics", SHOAL_CTL_METRICS_REQ, SHOAL_CTL_METRICS, print_metrics);
}

int shoal_cmd_drop(int argc, char **argv)
{
    const char *sock = NULL, *release = NULL;
    struct shoal_ctl_msg *m = malloc(sizeof *m);
    struct conn c = {.fd = -1};
    char pathbuf[128];
    int status, rv;

    if (!m)
        return 1;
    status = parse_args(argc, argv, &sock, &release, NULL, NULL);
    if (status != 0)
        goto out;
    status = 1;
    if (strlen(release) > SHOAL_CTL_RELEASE_MAX) {
        fprintf(stderr, "shoal drop: '%s' is too long for a release name\n", release);
        goto out;
    }
    if (conn_open(&c, sock, pathbuf, sizeof pathbuf) != 0)
        goto out;
    memset(m, 0, sizeof *m);
    m->type = SHOAL_CTL_DROP;
    memcpy(m->u.drop.release, release, strlen(release) + 1);
    rv = conn_send(&c, m);
    if (rv == 0)
        rv = conn_recv(&c, m, REPLY_TIMEOUT_MS);
    if (rv != 0) {
        fprintf(stderr, "shoal drop: %s: %s\n", c.path, recv_error(rv));
        goto out;
    }
    if (m->type == SHOAL_CTL_ERROR) {
        fprintf(stderr, "shoal drop: %s\n", m->u.error.message);
        goto out;
    }
    if (m->type != SHOAL_CTL_DROPPED) {
        fprintf(stderr, "shoal drop: unexpected reply type %u\n", m->type);
        goto out;
    }
    clean_str(m->u.dropped.name);
    clean_str(m->u.dropped.repo_dir);
    clean_str(m->u.dropped.note);
    /* Dropped either way (exit 0), but one a rollout names is back within
     * seconds: say that instead of "for good" (QA F1). */
    if (m->u.dropped.note[0])
        printf("dropped %s for now, but %s.\n", m->u.dropped.name, m->u.dropped.note);
    else
        printf("dropped %s: this node no longer fetches or serves it, and does not reopen it "
               "when shoald restarts.\n", m->u.dropped.name);
    if (m->u.dropped.repo_dir[0])
        printf("Its complete files stay in the Hugging Face cache (%s); delete them with "
               "`huggingface-cli delete-cache`. Files it had not finished are removed.\n",
               m->u.dropped.repo_dir);
    else
        printf("Nothing of it was on disk.\n");
    status = 0;
out:
    conn_close(&c);
    free(m);
    return status;
}
