/* SPDX-License-Identifier: MIT */
/*
 * Blocking client of the loader socket (shoal_loader.h). Frames are decoded
 * with protocol/'s frame decoder and strict message decoder. Descriptors
 * arrive as SCM_RIGHTS beside the bytes: the daemon attaches each file's
 * descriptor to the first byte of its LOADER_FILE frame, so by the time a
 * frame is complete its descriptor has been received; descriptors are kept
 * in arrival order and matched to LOADER_FILE frames in order.
 */
#include "shoal_loader.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "frame.h"
#include "mp.h"

#define RBUF_LEN 65536
/* Descriptors received ahead of their frames; the daemon sends one per
 * LOADER_FILE, so more than a few here means a broken peer. */
#define FDQ_MAX 64
/* Room for the descriptors of one recvmsg (the kernel delivers the
 * descriptors of at most one sendmsg per read of a stream socket). */
#define CMSG_FDS 8
/* Largest frame the daemon sends (LOADER_FILE with a 1 KiB path). */
#define CLIENT_FRAME_MAX (64u * 1024u)

struct shoal_loader_client {
    int fd;
    bool wanted, done;
    struct shoal_frame_dec dec;
    uint8_t rbuf[RBUF_LEN];
    size_t rpos, rlen;           /* unconsumed bytes rbuf[rpos..rlen) */
    int fdq[FDQ_MAX];
    unsigned fdq_head, fdq_n;
    /* Set by the frame callback for the caller. */
    int got;                     /* 0 none, 1 file, 2 done, 3 error */
    int err;
    struct shoal_loader_file *info;
    uint32_t nrecv, total;       /* LOADER_FILEs received; their total */
    char errmsg[SHOAL_MSG_ERROR_MAX + 64];
};

static void set_err(struct shoal_loader_client *c, const char *fmt, const char *arg)
{
    snprintf(c->errmsg, sizeof c->errmsg, fmt, arg);
}

int shoal_loader_connect(struct shoal_loader_client **out, const char *path)
{
    struct shoal_loader_client *c;
    struct sockaddr_un sa;
    int rv;

    if (!out || !path)
        return -EINVAL;
    memset(&sa, 0, sizeof sa);
    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    shoal_frame_dec_init(&c->dec, CLIENT_FRAME_MAX);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        rv = -errno;
        goto fail;
    }
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        rv = -errno;
        goto fail;
    }
    *out = c;
    return 0;
fail:
    shoal_loader_close(c);
    return rv;
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int shoal_loader_want(struct shoal_loader_client *c, const char *release,
                      const char *const *order, size_t n)
{
    struct shoal_str *paths = NULL;
    struct shoal_msg m;
    struct shoal_buf b;
    int rv;

    if (!c || !release || !*release || c->wanted || (n && !order))
        return -EINVAL;
    if (n > SHOAL_MSG_ORDER_MAX)
        return SHOAL_ETOOBIG;
    shoal_buf_init(&b, SHOAL_FRAME_MAX_AUTH);
    if (n) {
        paths = calloc(n, sizeof *paths);
        if (!paths) {
            rv = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            size_t len = strlen(order[i]);
            if (len > SHOAL_MSG_PATH_MAX) {
                rv = SHOAL_ETOOBIG;
                goto out;
            }
            paths[i].p = order[i];
            paths[i].len = (uint32_t)len;
        }
    }
    memset(&m, 0, sizeof m);
    m.type = SHOAL_MSG_LOADER_WANT;
    m.u.loader_want.release.p = release;
    m.u.loader_want.release.len = (uint32_t)strlen(release);
    m.u.loader_want.order.count = (uint32_t)n;
    m.u.loader_want.order.v = paths;
    rv = shoal_msg_encode(&m, &b);
    if (rv == 0)
        rv = send_all(c->fd, b.data, b.len);
    /* A daemon that refused us at connect time (not authorised, too many
     * loaders) has closed already: its LOADER_ERROR waits in our receive
     * queue, so let next_file report it. */
    if (rv == -EPIPE || rv == -ECONNRESET)
        rv = 0;
    if (rv == 0)
        c->wanted = true;
out:
    free(paths);
    shoal_buf_free(&b);
    return rv;
}

/* The optional 7th element of LOADER_FILE (ready_ns); 0 when absent. */
static uint64_t trailing_ready_ns(const uint8_t *body, size_t len)
{
    struct shoal_mpr r;
    uint32_t n;
    uint64_t v = 0;

    shoal_mpr_init(&r, body, len);
    if (shoal_mpr_array(&r, &n, 64) != 0 || n < 7)
        return 0;
    for (int i = 0; i < 6; i++) {
        if (shoal_mpr_skip(&r, 4) != 0)
            return 0;
    }
    return shoal_mpr_uint(&r, &v, UINT64_MAX) == 0 ? v : 0;
}

static int on_frame(void *user, const uint8_t *body, size_t len)
{
    struct shoal_loader_client *c = user;
    struct shoal_msg m;
    int rv = shoal_msg_decode(&m, body, len);

    if (rv != 0) {
        c->got = 3;
        c->err = rv;
        set_err(c, "malformed frame from the daemon: %s", shoal_strerror(rv));
        return 1;
    }
    switch (m.type) {
    case SHOAL_MSG_LOADER_FILE: {
        const struct shoal_msg_loader_file *f = &m.u.loader_file;
        memcpy(c->info->path, f->path.p, f->path.len);
        c->info->path[f->path.len] = '\0';
        c->info->size = f->size;
        memcpy(c->info->sha256, f->sha256, 32);
        c->info->index = f->index;
        c->info->total = f->total;
        c->info->ready_ns = trailing_ready_ns(body, len);
        c->total = (uint32_t)f->total;
        c->nrecv++;
        c->got = 1;
        break;
    }
    case SHOAL_MSG_LOADER_DONE:
        /* Every file announced must have come: a LOADER_DONE short of them
         * is a daemon bug or a dropped release, not success. */
        if ((c->nrecv && c->nrecv != c->total) || m.u.loader_done.files != c->nrecv) {
            snprintf(c->errmsg, sizeof c->errmsg, "LOADER_DONE after %u files of %u", c->nrecv,
                     c->nrecv ? c->total : m.u.loader_done.files);
            c->got = 3;
            c->err = SHOAL_EPROTO;
            break;
        }
        c->got = 2;
        break;
    case SHOAL_MSG_LOADER_ERROR:
        snprintf(c->errmsg, sizeof c->errmsg, "%.*s", (int)m.u.loader_error.text.len,
                 m.u.loader_error.text.p);
        c->got = 3;
        c->err = SHOAL_ENOTFOUND;
        break;
    default:
        set_err(c, "unexpected %s frame from the daemon", shoal_msg_type_name(m.type));
        c->got = 3;
        c->err = SHOAL_EPROTO;
        break;
    }
    return 1;
}

static int fdq_push(struct shoal_loader_client *c, int fd)
{
    if (c->fdq_n == FDQ_MAX) {
        close(fd);
        return SHOAL_ELIMIT;
    }
    c->fdq[(c->fdq_head + c->fdq_n++) % FDQ_MAX] = fd;
    return 0;
}

/* Reads more bytes (and descriptors) into rbuf. Returns 0, -ETIMEDOUT,
 * -ECONNRESET at end of stream, or a negated errno / SHOAL_E*. */
static int fill(struct shoal_loader_client *c, int timeout_ms)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * CMSG_FDS)];
    } cm;
    struct pollfd pfd = {c->fd, POLLIN, 0};
    struct iovec iov;
    struct msghdr mh;
    ssize_t n;
    int rv = 0;

    for (;;) {
        int pr = poll(&pfd, 1, timeout_ms);
        if (pr > 0)
            break;
        if (pr == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
    if (c->rpos == c->rlen)
        c->rpos = c->rlen = 0;
    iov.iov_base = c->rbuf + c->rlen;
    iov.iov_len = sizeof c->rbuf - c->rlen;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cm.buf;
    mh.msg_controllen = sizeof cm.buf;
    do
        n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
            if (fdq_push(c, fd) != 0)
                rv = SHOAL_ELIMIT;
        }
    }
    if (mh.msg_flags & MSG_CTRUNC)
        rv = SHOAL_ELIMIT; /* the kernel dropped descriptors we had no room for */
    if (rv != 0) {
        set_err(c, "%s", "too many descriptors from the daemon");
        return rv;
    }
    if (n == 0)
        return -ECONNRESET;
    c->rlen += (size_t)n;
    return 0;
}

int shoal_loader_next_file(struct shoal_loader_client *c, struct shoal_loader_file *info,
                           int *fd, int timeout_ms)
{
    struct shoal_frame_cb cb = {on_frame};
    struct timespec t0, t1;
    int rv;

    if (!c || !info || !fd)
        return -EINVAL;
    c->errmsg[0] = '\0';
    if (c->done)
        return 0;
    c->info = info;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        size_t used = 0;
        int left = timeout_ms;

        c->got = 0;
        if (c->rpos < c->rlen) {
            rv = shoal_frame_dec_feed(&c->dec, c->rbuf + c->rpos, c->rlen - c->rpos, &used,
                                      &cb, c);
            c->rpos += used;
            if (rv < 0) {
                set_err(c, "bad frame from the daemon: %s", shoal_strerror(rv));
                return rv;
            }
        }
        if (c->got == 1) {
            if (c->fdq_n == 0) {
                set_err(c, "%s", "LOADER_FILE arrived without its descriptor");
                return SHOAL_EPROTO;
            }
            *fd = c->fdq[c->fdq_head];
            c->fdq_head = (c->fdq_head + 1) % FDQ_MAX;
            c->fdq_n--;
            return 1;
        }
        if (c->got == 2) {
            c->done = true;
            return 0;
        }
        if (c->got == 3)
            return c->err;
        if (timeout_ms >= 0) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            long el = (long)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
            left = el >= timeout_ms ? 0 : timeout_ms - (int)el;
        }
        rv = fill(c, left);
        if (rv == -ECONNRESET)
            set_err(c, "%s", "the daemon closed the connection before LOADER_DONE");
        if (rv != 0)
            return rv;
    }
}

const char *shoal_loader_error(const struct shoal_loader_client *c)
{
    return c ? c->errmsg : "";
}

void shoal_loader_close(struct shoal_loader_client *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    while (c->fdq_n) {
        close(c->fdq[c->fdq_head]);
        c->fdq_head = (c->fdq_head + 1) % FDQ_MAX;
        c->fdq_n--;
    }
    shoal_frame_dec_free(&c->dec);
    free(c);
}
