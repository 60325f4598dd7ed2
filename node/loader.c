/* SPDX-License-Identifier: MIT */
/*
 * The loader socket (see loader.h): accepts local loaders on a Unix socket,
 * checks who they are, and hands them each completed file of the release
 * they watch as a LOADER_FILE frame with the file's descriptor attached.
 *
 * Sockets are driven with uv_poll on raw descriptors rather than uv_pipe,
 * because libuv can only pass its own handles, not an arbitrary fd, with a
 * write. Each connection keeps the positions of its order that are ready
 * (complete, owed to the loader), in the order they go out, and builds a
 * file's frame only when the socket can take it: the queue of built frames
 * holds at most the one being sent (and LOADER_DONE or LOADER_ERROR behind
 * it), and a file's descriptor is opened only when its frame is that one.
 * So a loader that stops reading pins no descriptors and 12 bytes per file,
 * not a frame per file (16 such loaders of a 20,000-file release held 111
 * MiB of queued frames before).
 *
 * Threads. The hand-off of a file that completes during a pull must not wait
 * behind the loop, which is busy with chunk traffic exactly then: the store's
 * worker thread that verified the file calls shoal_loader_srv_file_done (as
 * soon as its sha256 matched, before the store makes it durable and names it),
 * which queues the frame and sends it right there with a non-blocking
 * sendmsg. Only what the worker cannot do goes to the loop through the
 * uv_async: arming the poll for a socket that would block, closing a
 * connection (finished or broken), and refreshing the scheduler priorities.
 * So |mu| guards the client list and every client field a worker touches
 * (state, swarm, want, sent, nwant, nsent, unsent, ready, the queue, kick,
 * broken), the
 * sending side of each socket, and the dirty-swarm list. The loop takes it
 * in each of its entry points (accept, socket events, the async, release
 * opened, close) and drops it before calling into the swarm to set
 * priorities (which may do anything); the hooks run with it held (loader.h).
 * Loop-only fields (poll, dec, order, pend_id, pend_by_id, closed) need no
 * lock. A client is freed only after it has been unlinked under |mu|, so a
 * worker never sees a freed client. Lock order: |mu|, then the store's own
 * lock (file_open, file_done); the store calls us with none of its locks
 * held.
 *
 * Ordering: every file of a connection joins its one ready list under |mu|,
 * whichever thread finds it ready, and every frame is built from that list
 * and sent under |mu|, so frames (and their descriptors) leave in the order
 * files became ready; sent[] makes each file go out once even when a
 * worker's event and the loop's scan of completed files (at bind) race;
 * LOADER_DONE is queued under the same lock once the last file's frame is
 * out of the list.
 */
#include "loader.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "frame.h"
#include "hash.h"
#include "manifest.h"
#include "mp.h"
#include "msg.h"
#include "nodelog.h"
#include "sched.h"
#include "sockpath.h"
#include "store.h"

#define ACCEPT_BURST 16
#define READ_CHUNK 65536
/* Room for one LOADER_FILE frame (path, sha256, five integers). */
#define OUT_FRAME_MAX (SHOAL_MSG_PATH_MAX + 256u)
/*
 * Send buffer of a loader's socket. A descriptor sent to a loader that has
 * not read it yet is charged by the kernel to shoald's user, against
 * shoald's RLIMIT_NOFILE (SCM_RIGHTS "in flight"); past the limit every
 * loader's sendmsg fails with ETOOMANYREFS. The default buffer (~400 KiB
 * of queue) held ~550 small frames, each with its descriptor, so three
 * loaders that stopped reading took a 1,024-descriptor budget from one that
 * did. The kernel charges each sendmsg ~760 bytes of this buffer at least,
 * and doubles the value set: 24 KiB lets about 64 frames wait per loader
 * (fewer with long paths), plenty to keep a reading loader busy.
 */
#define LOADER_SNDBUF (24 * 1024)
#define LOADER_INFLIGHT_MAX 64u
/*
 * A send stalled by ETOOMANYREFS waits for descriptors in flight to be
 * received, which the socket does not signal (it is writable all along:
 * polling it would spin). What frees them and can be seen retries at once:
 * a loader whose full socket drains (it read frames), a loader leaving.
 * A loader reading the descriptors of a socket that was not full shows
 * nothing, so a timer tries too, after FD_RETRY_MIN_MS and then twice as
 * long each time, up to FD_RETRY_MAX_MS: a stall that lasts costs a few
 * wake-ups a second, not fifty (the fixed 20 ms period before).
 */
#define FD_RETRY_MIN_MS 20u
#define FD_RETRY_MAX_MS 1000u

enum cstate {
    C_NEW,      /* authorised, waiting for LOADER_WANT */
    C_PENDING,  /* release not open yet (a pull is under way) */
    C_WATCH,    /* receiving files */
    C_CLOSING,  /* last frames going out, then close */
};

/* One queued frame; |file| set means "open this file and attach its fd". */
struct outq {
    struct outq *next;
    uint8_t *data;
    size_t len, off;
    struct shoal_swarm *swarm;
    uint32_t file;
    bool has_file;
    bool done;       /* LOADER_DONE */
    int fd;          /* opened at the head of the queue, -1 before/after */
    uint64_t ready_ns; /* when the file was verified; 0 if it already was */
};

struct client {
    struct shoal_loader_srv *srv;
    struct client *prev, *next;  /* mu */
    int fd;
    uv_poll_t poll;
    int poll_events;
    bool closed;                 /* uv_close issued */
    enum cstate state;           /* mu */
    struct shoal_frame_dec dec;
    pid_t pid;
    uid_t uid;
    char name[48];               /* "pid N uid U" for logs */
    char release[SHOAL_MSG_RELEASE_MAX + 1]; /* set before C_WATCH, then fixed */
    uint8_t pend_id[32];         /* C_PENDING: manifest id awaited, */
    bool pend_by_id;             /* ... when asked by id, else by name */
    uint8_t *order_mp;           /* copy of the LOADER_WANT path list */
    size_t order_charged;        /* mu; of its bytes, counted in
                                  * srv->rx_charged while C_PENDING */
    size_t order_len;
    uint32_t order_count;
    struct shoal_swarm *swarm;   /* mu; C_WATCH and after */
    uint32_t *want;              /* mu; manifest file index per position */
    bool *sent;                  /* mu */
    /* mu; positions not sent yet, a list in position order (priorities
     * walk only these: UINT32_MAX ends it), and each manifest file's
     * position + 1 (0: not wanted), so a file event finds its place at
     * once however long the order. */
    uint32_t *wnext, *wprev, whead;
    uint64_t whead_seq;          /* mu; when whead became its head (srv->seq) */
    uint32_t *pos;
    uint32_t nwant, nsent;       /* mu; nsent: ready (sent[]), built or not */
    uint32_t nhanded;            /* mu; descriptors actually sent */
    uint32_t unsent;             /* mu; every position before it is sent */
    /* mu; the positions ready, in the order their frames go out, and when
     * each file was verified (0: before the request): ready[rnext..nready)
     * have no frame built yet. Each position enters once (sent[]), so
     * nwant entries always suffice. */
    uint32_t *ready;
    uint64_t *ready_ns;
    uint32_t nready, rnext;
    struct outq *qhead, *qtail;  /* mu */
    bool kick;                   /* mu; a worker left work for the loop */
    int broken;                  /* mu; a worker's send failed: this error */
    bool errored;                /* mu; LOADER_ERROR queued */
    bool rd_eof;                 /* mu; it shut down its sending side */
    bool fd_stalled;             /* mu; the head frame's descriptor met
                                  * ETOOMANYREFS: srv->retry sends it again */
    bool stall_logged;           /* mu; that stall was logged */
    uint64_t since_ms;           /* accepted at (loop time): the request's deadline */
    size_t rx;                   /* bytes of the request received so far */
    size_t rx_charged;           /* of them, counted in srv->rx_charged */
};

struct shoal_loader_srv {
    uv_loop_t *loop;
    const struct shoal_loader_srv_hooks *hooks;
    char *path;
    dev_t sock_dev;
    ino_t sock_ino;
    int lfd;
    uv_poll_t lpoll;
    uv_async_t async;
    bool lpoll_init, async_init, closed;
    bool has_gid, has_uid;
    gid_t gid;
    uid_t uid;
    uint32_t max_clients, nclients, max_per_uid, want_timeout_ms;
    uv_timer_t timer;            /* deadlines of requests still arriving */
    bool timer_init, timer_on;
    uv_timer_t retry;            /* sends stalled by ETOOMANYREFS */
    bool retry_init, retry_on;   /* mu (loop thread only) */
    unsigned retry_ms;           /* the timer's current delay */
    size_t rx_charged;           /* mu; see SHOAL_LOADER_RX_BUDGET (requests
                                  * arriving and orders kept while pending) */
    bool pend_left;              /* mu; a C_PENDING loader stopped waiting:
                                  * hooks->left at the next async */

    pthread_mutex_t mu;          /* see the top of this file */
    struct client *clients;      /* mu */
    bool ev_closed;              /* mu; no more async wake-ups */
    struct shoal_swarm **dirty;  /* mu; swarms whose priorities to refresh */
    size_t ndirty, dirtycap;
    uint64_t seq;                /* mu; numbers the loaders' head changes */
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Notes that the loaders of |s| changed what they wait for; the loop hands
 * the new priorities to the scheduler after dropping |mu|. Under |mu|. */
static void mark_dirty(struct shoal_loader_srv *l, struct shoal_swarm *s)
{
    for (size_t i = 0; i < l->ndirty; i++) {
        if (l->dirty[i] == s)
            return;
    }
    if (l->ndirty == l->dirtycap) {
        size_t cap = l->dirtycap ? l->dirtycap * 2 : 8;
        struct shoal_swarm **nv = realloc(l->dirty, cap * sizeof *nv);
        if (!nv)
            return; /* priorities are a hint: keep the previous ones */
        l->dirty = nv;
        l->dirtycap = cap;
    }
    l->dirty[l->ndirty++] = s;
}

/* ---- connection teardown ---- */

static void retry_stalled_now(struct shoal_loader_srv *l);

/* Frees |c|'s copy of its order and gives its bytes back to the budget.
 * Under |mu|. */
static void order_free(struct client *c)
{
    c->srv->rx_charged -= c->order_charged;
    c->order_charged = 0;
    free(c->order_mp);
    c->order_mp = NULL;
}

/* |c| stops waiting for a release that has not opened: the owner hears of
 * it (hooks->left) from the loop, without |mu|, so it can withdraw a pull
 * nobody waits for any more. Under |mu|, before |c| leaves C_PENDING. */
static void note_left(struct client *c)
{
    struct shoal_loader_srv *l = c->srv;

    if (c->state != C_PENDING || !l->hooks->left || l->ev_closed)
        return;
    l->pend_left = true;
    uv_async_send(&l->async);
}

static void free_queue(struct client *c)
{
    struct outq *q = c->qhead, *n;
    for (; q; q = n) {
        n = q->next;
        if (q->fd >= 0)
            close(q->fd);
        free(q->data);
        free(q);
    }
    c->qhead = c->qtail = NULL;
}

static void on_client_closed(uv_handle_t *h)
{
    struct client *c = h->data;
    close(c->fd);
    free_queue(c);
    shoal_frame_dec_free(&c->dec);
    free(c->order_mp);
    free(c->want);
    free(c->sent);
    free(c->ready);
    free(c->ready_ns);
    free(c->wnext);
    free(c->wprev);
    free(c->pos);
    free(c);
}

/* Drops |c| now: unlinks it, withdraws its priorities, closes the handle.
 * Loop thread, under |mu|. */
static void client_close(struct client *c, const char *why)
{
    struct shoal_loader_srv *l = c->srv;
    struct shoal_swarm *s = c->state == C_WATCH ? c->swarm : NULL;

    if (c->closed)
        return;
    note_left(c);
    c->closed = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        l->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    l->nclients--;
    l->rx_charged -= c->rx_charged;
    c->rx_charged = 0;
    order_free(c);
    LOG_I("loader %s: closed: %s (%u of %u files handed)", c->name, why, c->nhanded, c->nwant);
    c->swarm = NULL;
    if (s)
        mark_dirty(l, s);
    uv_poll_stop(&c->poll);
    uv_close((uv_handle_t *)&c->poll, on_client_closed);
    /* A loader that hung up took the descriptors it had not read with it. */
    retry_stalled_now(l);
}

/* ---- output ---- */

static void on_client_io(uv_poll_t *h, int status, int events);

static void on_retry(uv_timer_t *t);

/* Something happened that may have freed descriptors in flight: sends
 * stalled by ETOOMANYREFS are tried again on the next loop turn (not from
 * here: the caller may be in the middle of one client's sending), and the
 * timer's delay starts over. Loop thread, under |mu|. */
static void retry_stalled_now(struct shoal_loader_srv *l)
{
    if (!l->retry_on || l->closed)
        return;
    l->retry_ms = FD_RETRY_MIN_MS;
    l->retry_on = uv_timer_start(&l->retry, on_retry, 0, 0) == 0;
}

/* Loop thread, under |mu|. */
static void set_events(struct client *c)
{
    struct shoal_loader_srv *l = c->srv;
    int ev = c->state == C_CLOSING || c->rd_eof ? 0 : UV_READABLE;

    /* A descriptor stalled by the in-flight limit: the socket itself is
     * writable (polling for it would spin): see FD_RETRY_MIN_MS. */
    if (c->qhead && c->fd_stalled && !l->retry_on && l->retry_init && !l->closed) {
        l->retry_ms = FD_RETRY_MIN_MS;
        l->retry_on = uv_timer_start(&l->retry, on_retry, l->retry_ms, 0) == 0;
    }
    if (c->qhead && !c->fd_stalled)
        ev |= UV_WRITABLE;
    if (ev == c->poll_events)
        return;
    c->poll_events = ev;
    if (ev)
        uv_poll_start(&c->poll, ev, on_client_io);
    else
        uv_poll_stop(&c->poll);
}

/* Hand-off latencies measured by a worker's sends, logged only once its
 * sends to every loader are done and |mu| is dropped: a log line is a write
 * to a pipe whose reader it may wake, which belongs neither between one
 * loader's descriptor and the next nor under the lock. */
#define SENT_LOG_MAX 8u
struct sent_log {
    unsigned n;
    struct {
        char name[48];
        uint32_t file;
        uint64_t ns;
    } e[SENT_LOG_MAX];
};

static void sent_log_add(struct sent_log *lg, const struct client *c, uint32_t file,
                         uint64_t ns)
{
    if (!lg || lg->n == SENT_LOG_MAX) {
        LOG_I("loader %s: descriptor of file %u sent %.0f us after it was verified",
              c->name, file, (double)ns / 1000.0);
        return;
    }
    memcpy(lg->e[lg->n].name, c->name, sizeof c->name);
    lg->e[lg->n].file = file;
    lg->e[lg->n].ns = ns;
    lg->n++;
}

static void sent_log_flush(const struct sent_log *lg)
{
    for (unsigned i = 0; i < lg->n; i++)
        LOG_I("loader %s: descriptor of file %u sent %.0f us after it was verified",
              lg->e[i].name, lg->e[i].file, (double)lg->e[i].ns / 1000.0);
}

static void send_error(struct client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Drops every frame queued for |c| (closing their descriptors) and the
 * ready files not built yet: the LOADER_ERROR queued next replaces them.
 * Under |mu|. */
static void drop_queue(struct client *c)
{
    c->nsent -= c->nready - c->rnext;
    c->rnext = c->nready;
    while (c->qhead) {
        struct outq *nx = c->qhead->next;
        if (c->qhead->fd >= 0)
            close(c->qhead->fd);
        free(c->qhead->data);
        free(c->qhead);
        c->qhead = nx;
    }
    c->qtail = NULL;
}

/* File |q| of |c| cannot be handed (|rv| from opening or sending it):
 * what is queued goes (nothing of |q| was sent) and a LOADER_ERROR names
 * the file and the cause, instead of a silent close. Under |mu|. */
static void cannot_hand(struct client *c, const struct outq *q, int rv)
{
    char what[SHOAL_MSG_PATH_MAX + 1];

    snprintf(what, sizeof what, "%s",
             shoal_manifest_file(shoal_swarm_manifest(q->swarm), q->file)->path);
    drop_queue(c);
    if (rv == SHOAL_EBADHASH) /* found changed on disk since it was queued */
        send_error(c, "release '%s': file '%s' changed on disk on this node after it "
                   "was verified and is not handed out; the node fetches its bad "
                   "chunks again: ask again once it is whole", c->release, what);
    else if (rv == SHOAL_ENOTFOUND) /* its chunks were taken back since it was queued */
        send_error(c, "release '%s': file '%s' is not whole on this node any more (its "
                   "bad chunks are being fetched again) and is not handed out: ask "
                   "again once it is whole", c->release, what);
    else
        send_error(c, "release '%s': file '%s' cannot be handed: %s (was the cache "
                   "changed under the daemon?)", c->release, what, shoal_strerror(rv));
}

static int next_frame(struct client *c);

/* Sends queued frames, building the next ready file's when the queue is
 * empty, until the socket is full or nothing is left. Any thread, under
 * |mu|; |lg| (may be NULL: log at once) collects the hand-off latencies.
 * Returns 0 or a negated errno (the connection is broken). */
static int flush(struct client *c, struct sent_log *lg)
{
    for (;;) {
        struct outq *q;
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(int))];
        } cm;
        struct iovec iov;
        struct msghdr mh = {0};
        ssize_t n;

        if (!c->qhead && next_frame(c) != 0) {
            send_error(c, "out of memory");
            continue;
        }
        q = c->qhead;
        if (!q)
            break;
        iov.iov_base = q->data + q->off;
        iov.iov_len = q->len - q->off;
        if (q->has_file && q->off == 0 && q->fd < 0) {
            int rv = shoal_swarm_file_open(q->swarm, q->file, &q->fd);
            if (rv == SHOAL_STORE_UNLINKED) {
                LOG_W("loader %s: the cache entry of %s was removed under the daemon "
                      "(not by shoal drop); handing the node's own open copy", c->name,
                      shoal_manifest_file(shoal_swarm_manifest(q->swarm), q->file)->path);
                rv = 0;
            }
            if (rv != 0) {
                cannot_hand(c, q, rv);
                continue;
            }
        }
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        if (q->fd >= 0 && q->off == 0) {
            /* The descriptor rides with the frame's first byte. */
            memset(&cm, 0, sizeof cm);
            mh.msg_control = cm.buf;
            mh.msg_controllen = sizeof cm.buf;
            cm.h.cmsg_level = SOL_SOCKET;
            cm.h.cmsg_type = SCM_RIGHTS;
            cm.h.cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(&cm.h), &q->fd, sizeof(int));
        }
        n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK)
                break;
            if (e == ETOOMANYREFS && q->fd >= 0 && q->off == 0) {
                /* Descriptors in flight to loaders that have not read
                 * them yet fill shoald's open-files limit: not this
                 * loader's fault, and temporary once they read. Keep the
                 * frame and try again (on_retry). */
                c->fd_stalled = true;
                if (!c->stall_logged)
                    LOG_W("loader %s: descriptors in flight to loaders that have not read "
                          "them yet reach this process's open-files limit (sendmsg: "
                          "ETOOMANYREFS); %s waits until some are read", c->name,
                          shoal_manifest_file(shoal_swarm_manifest(q->swarm), q->file)->path);
                c->stall_logged = true;
                break;
            }
            /* The connection is fine but this descriptor could not go:
             * say so on it, rather than closing without a word. */
            if (q->has_file && q->off == 0 && e != EPIPE && e != ECONNRESET && !c->errored) {
                cannot_hand(c, q, -e);
                continue;
            }
            return -e;
        }
        if (q->fd >= 0) {
            /* Sent: the loader holds its own copy now. */
            if (c->stall_logged)
                LOG_I("loader %s: descriptors go out again", c->name);
            c->fd_stalled = c->stall_logged = false;
            close(q->fd);
            q->fd = -1;
            c->nhanded++;
            /* Once per live hand-off: the daemon's share of its latency. */
            if (q->ready_ns)
                sent_log_add(lg, c, q->file, mono_ns() - q->ready_ns);
        }
        q->off += (size_t)n;
        if (q->off < q->len)
            continue;
        c->qhead = q->next;
        if (!c->qhead)
            c->qtail = NULL;
        free(q->data);
        free(q);
    }
    return 0;
}

/* Flushes and re-arms the poll; closes |c| when broken or finished. Loop
 * thread, under |mu|. */
static void pump_out(struct client *c)
{
    int rv = c->broken ? c->broken : flush(c, NULL);

    if (rv != 0) {
        client_close(c, rv == -EPIPE || rv == -ECONNRESET ? "loader went away"
                                                          : shoal_strerror(rv));
        return;
    }
    if (c->state == C_CLOSING && !c->qhead) {
        client_close(c, c->errored ? "LOADER_ERROR sent" : "every file handed");
        return;
    }
    set_events(c);
}

/* Queues |buf|'s frame (taken over). Any thread, under |mu| (as are
 * send_error, queue_done and next_frame). Returns 0 or -ENOMEM. */
static int enqueue(struct client *c, struct shoal_buf *b, struct shoal_swarm *s, uint32_t file,
                   bool has_file)
{
    struct outq *q = calloc(1, sizeof *q);

    if (!q) {
        shoal_buf_free(b);
        return -ENOMEM;
    }
    q->data = shoal_buf_steal(b, &q->len);
    q->swarm = s;
    q->file = file;
    q->has_file = has_file;
    q->fd = -1;
    if (c->qtail)
        c->qtail->next = q;
    else
        c->qhead = q;
    c->qtail = q;
    return 0;
}

/* Queues LOADER_ERROR |text| and closes once it is out. */
static void send_error(struct client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void send_error(struct client *c, const char *fmt, ...)
{
    char text[SHOAL_MSG_ERROR_MAX + 1];
    struct shoal_msg m;
    struct shoal_buf b;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    LOG_W("loader %s: %s", c->name, text);
    memset(&m, 0, sizeof m);
    m.type = SHOAL_MSG_LOADER_ERROR;
    m.u.loader_error.text.p = text;
    m.u.loader_error.text.len = (uint32_t)strlen(text);
    shoal_buf_init(&b, SHOAL_MSG_ERROR_MAX + 64);
    if (shoal_msg_encode(&m, &b) == 0)
        (void)enqueue(c, &b, NULL, 0, false);
    shoal_buf_free(&b);
    note_left(c);
    c->errored = true;
    c->state = C_CLOSING;
}

/*
 * LOADER_FILE is [65, path, size, sha256, index, total, ready_ns]: msg.h's
 * five fields plus a trailing one that decoders skip (forward compatible).
 * ready_ns is the daemon's CLOCK_MONOTONIC time when the file was verified,
 * 0 when it was complete before the loader asked; a loader on the same host
 * measures the hand-off latency with it.
 */
static int encode_file(struct shoal_buf *b, const struct shoal_mf_file *f, uint32_t index,
                       uint32_t total, uint64_t ready_ns)
{
    struct shoal_mpw w;
    uint8_t hdr[SHOAL_FRAME_HDR_LEN] = {0};
    int rv;

    rv = shoal_buf_append(b, hdr, sizeof hdr);
    if (rv != 0)
        return rv;
    shoal_mpw_init(&w, b);
    shoal_mpw_array(&w, 7);
    shoal_mpw_uint(&w, SHOAL_MSG_LOADER_FILE);
    shoal_mpw_cstr(&w, f->path);
    shoal_mpw_uint(&w, f->size);
    shoal_mpw_bin(&w, f->sha256, 32);
    shoal_mpw_uint(&w, index);
    shoal_mpw_uint(&w, total);
    shoal_mpw_uint(&w, ready_ns);
    if (w.err)
        return w.err;
    return shoal_frame_header(b->data, b->len - SHOAL_FRAME_HDR_LEN);
}

static void queue_done(struct client *c)
{
    struct shoal_msg m;
    struct shoal_buf b;

    memset(&m, 0, sizeof m);
    m.type = SHOAL_MSG_LOADER_DONE;
    m.u.loader_done.files = c->nwant;
    shoal_buf_init(&b, 64);
    if (shoal_msg_encode(&m, &b) == 0 && enqueue(c, &b, NULL, 0, false) == 0)
        c->qtail->done = true;
    shoal_buf_free(&b);
    c->state = C_CLOSING;
}

/* Position |k| of |c|'s order is ready (its file is complete, verified at
 * |ready_ns|): it leaves the positions the scheduler is asked for and joins
 * the ready list, whose frames flush builds as the socket takes them. */
static void hand_file(struct client *c, uint32_t k, uint64_t ready_ns)
{
    c->sent[k] = true;
    c->nsent++;
    if (c->wprev[k] != UINT32_MAX) {
        c->wnext[c->wprev[k]] = c->wnext[k];
    } else {
        c->whead = c->wnext[k];
        c->whead_seq = ++c->srv->seq;
    }
    if (c->wnext[k] != UINT32_MAX)
        c->wprev[c->wnext[k]] = c->wprev[k];
    while (c->unsent < c->nwant && c->sent[c->unsent])
        c->unsent++;
    c->ready[c->nready] = k;
    c->ready_ns[c->nready] = ready_ns;
    c->nready++;
    if (c->nsent == c->nwant)
        LOG_I("loader %s: every one of %u files of %s queued for it, LOADER_DONE last",
              c->name, c->nwant, c->release);
}

/* Queues |c|'s next frame when nothing is queued: the first ready file's,
 * or LOADER_DONE once every file's frame was built. Under |mu|. Returns 0
 * or -ENOMEM (nothing was taken off the ready list then). */
static int next_frame(struct client *c)
{
    const struct shoal_mf_file *f;
    struct shoal_buf b;
    uint32_t k;
    int rv;

    if (c->qhead || c->state != C_WATCH)
        return 0;
    if (c->rnext == c->nready) {
        if (c->nsent == c->nwant)
            queue_done(c);
        return 0;
    }
    k = c->ready[c->rnext];
    f = shoal_manifest_file(shoal_swarm_manifest(c->swarm), c->want[k]);
    shoal_buf_init(&b, OUT_FRAME_MAX);
    rv = encode_file(&b, f, k, c->nwant, c->ready_ns[c->rnext]);
    if (rv == 0)
        rv = enqueue(c, &b, c->swarm, c->want[k], true);
    shoal_buf_free(&b);
    if (rv != 0)
        return rv;
    c->qtail->ready_ns = c->ready_ns[c->rnext];
    c->rnext++;
    LOG_D("loader %s: handing %s (%u/%u)", c->name, f->path, c->rnext, c->nwant);
    return 0;
}

/* ---- priorities ---- */

/*
 * The files loaders of |s| still wait for, in the order the scheduler should
 * fetch them: the first unsent file of every loader, then the second of
 * every loader, and so on, so each loader's first shard is among the first
 * fetched (shoal_sched_merge_waits; it walks only the positions not sent
 * yet, so this runs after every completed file at a cost of the files still
 * waited for). At each depth the loaders go in the order their first
 * unsent file became their first: the file waited for longest leads. In
 * any fixed order of loaders, one wanting every file front to back got a
 * new first file each time one completed and, placed before another, put
 * it ahead of that loader's first file again and again: a loader asking
 * for the last shard first got it fourth, after three it did not ask for
 * first (loader_multi_node). Under |mu|. Writes a malloc'd list (NULL when
 * empty) to |*out| and its length to |*n|; returns false when out of
 * memory.
 */
static bool collect_priorities(struct shoal_loader_srv *l, struct shoal_swarm *s, uint32_t **out,
                               uint32_t *n)
{
    struct shoal_sched_wait *w = NULL;
    uint64_t *seqs;
    size_t nw = 0, i = 0;
    int rv;

    *out = NULL;
    *n = 0;
    for (struct client *c = l->clients; c; c = c->next)
        nw += c->state == C_WATCH && c->swarm == s && c->whead != UINT32_MAX;
    if (nw == 0)
        return true;
    w = malloc(sizeof *w * nw);
    if (!w)
        return false;
    seqs = malloc(sizeof *seqs * nw);
    if (!seqs) {
        free(w);
        return false;
    }
    for (struct client *c = l->clients; c; c = c->next) {
        size_t j;
        if (c->state != C_WATCH || c->swarm != s || c->whead == UINT32_MAX)
            continue;
        /* insertion by whead_seq: a handful of loaders per release */
        for (j = i; j > 0 && seqs[j - 1] > c->whead_seq; j--) {
            seqs[j] = seqs[j - 1];
            w[j] = w[j - 1];
        }
        seqs[j] = c->whead_seq;
        w[j].want = c->want;
        w[j].next = c->wnext;
        w[j].head = c->whead;
        i++;
    }
    rv = shoal_sched_merge_waits(w, nw, shoal_manifest_nfiles(shoal_swarm_manifest(s)), out, n);
    free(w);
    free(seqs);
    return rv == 0;
}

/*
 * Hands the scheduler the priorities of every swarm marked dirty. Loop
 * thread, WITHOUT |mu|: the swarm pumps its peers from want_files, and
 * nothing it may do should run under our lock.
 */
static void refresh_priorities(struct shoal_loader_srv *l)
{
    for (;;) {
        struct shoal_swarm *s;
        uint32_t *files, n;
        bool ok;

        pthread_mutex_lock(&l->mu);
        if (l->ndirty == 0) {
            pthread_mutex_unlock(&l->mu);
            break;
        }
        s = l->dirty[0];
        memmove(l->dirty, l->dirty + 1, --l->ndirty * sizeof *l->dirty);
        ok = collect_priorities(l, s, &files, &n);
        pthread_mutex_unlock(&l->mu);
        /* Out of memory: priorities are a hint, keep the previous ones. */
        if (ok)
            (void)shoal_swarm_want_files(s, files, n);
        free(files);
    }
}

/* ---- requests ---- */

/* Starts watching |s|: resolves the order, hands what is complete. Loop
 * thread, under |mu|. A file finishing meanwhile is handed here when the
 * store already counts it done, else by its worker's file_done, which needs
 * |mu| and so sees C_WATCH; the store marks a file done before it reports
 * it, and sent[] stops the second of the two. */
static void client_bind(struct client *c, struct shoal_swarm *s)
{
    const struct shoal_manifest *m = shoal_swarm_manifest(s);
    uint32_t nfiles = shoal_manifest_nfiles(m), n = c->order_count ? c->order_count : nfiles;
    struct shoal_msg_paths paths, it;
    struct shoal_str p;
    uint8_t *seen = NULL;
    char path[SHOAL_MSG_PATH_MAX + 1];

    c->want = malloc(sizeof *c->want * (n ? n : 1));
    c->sent = calloc(n ? n : 1, sizeof *c->sent);
    /* Address space only until files are ready: pages are touched as
     * entries are written. */
    c->ready = malloc(sizeof *c->ready * (n ? n : 1));
    c->ready_ns = malloc(sizeof *c->ready_ns * (n ? n : 1));
    c->wnext = malloc(sizeof *c->wnext * (n ? n : 1));
    c->wprev = malloc(sizeof *c->wprev * (n ? n : 1));
    c->pos = calloc(nfiles ? nfiles : 1, sizeof *c->pos);
    seen = calloc(1, nfiles / 8 + 1);
    if (!c->want || !c->sent || !c->ready || !c->ready_ns || !c->wnext || !c->wprev || !c->pos || !seen) {
        send_error(c, "out of memory");
        goto out;
    }
    if (c->order_count == 0) {
        for (uint32_t i = 0; i < nfiles; i++)
            c->want[i] = i;
    } else {
        memset(&paths, 0, sizeof paths);
        paths.count = c->order_count;
        paths.mp = c->order_mp;
        paths.mp_len = c->order_len;
        shoal_msg_paths_begin(&it, &paths);
        for (uint32_t k = 0; k < n && shoal_msg_paths_next(&it, &p); k++) {
            int fi;
            memcpy(path, p.p, p.len);
            path[p.len] = '\0';
            fi = shoal_manifest_find_file(m, path);
            if (fi < 0) {
                send_error(c, "release %s has no file '%s'", c->release, path);
                goto out;
            }
            if (seen[fi / 8] & (1u << (fi % 8))) {
                send_error(c, "file '%s' is listed twice in the order", path);
                goto out;
            }
            seen[fi / 8] |= (uint8_t)(1u << (fi % 8));
            c->want[k] = (uint32_t)fi;
        }
    }
    for (uint32_t k = 0; k < n; k++) {
        c->pos[c->want[k]] = k + 1;
        c->wnext[k] = k + 1 < n ? k + 1 : UINT32_MAX;
        c->wprev[k] = k ? k - 1 : UINT32_MAX;
    }
    c->whead = n ? 0 : UINT32_MAX;
    c->whead_seq = ++c->srv->seq;
    c->nwant = n;
    c->swarm = s;
    c->state = C_WATCH;
    order_free(c);
    char name[SHOAL_RELNAME_MAX + 1];
    (void)shoal_manifest_name(m, name, sizeof name);
    LOG_I("loader %s: watching %s (%u files%s)", c->name, name, n,
          c->order_count ? " in its order" : "");
    for (uint32_t k = 0; k < n; k++) {
        if (shoal_swarm_file_done(s, c->want[k]))
            hand_file(c, k, 0);
    }
    mark_dirty(c->srv, s);
out:
    free(seen);
}

static bool parse_hex_id(const char *s, uint8_t id[32])
{
    return strlen(s) == 64 && shoal_unhex(id, 32, s, 64) == 0;
}

/* Whether C_PENDING |c| waits for release |s|: its manifest id, or its
 * "[datasets/]repo@commit". */
static bool pending_for(const struct client *c, struct shoal_swarm *s)
{
    if (c->pend_by_id)
        return memcmp(c->pend_id, shoal_swarm_id(s), 32) == 0;
    return shoal_manifest_named(shoal_swarm_manifest(s), c->release);
}

/* How many releases other than |c|'s the C_PENDING loaders of |c|'s uid
 * wait for (0 when one of them waits for |c|'s already: |c| joins that
 * wait and starts nothing). Under |mu|. */
static uint32_t pending_of_uid(const struct client *c)
{
    const struct shoal_loader_srv *l = c->srv;
    uint32_t n = 0;

    for (const struct client *a = l->clients; a; a = a->next) {
        bool seen = false;
        if (a == c || a->uid != c->uid || a->state != C_PENDING)
            continue;
        if (strcmp(a->release, c->release) == 0)
            return 0;
        /* Counted already under an earlier loader of the list? */
        for (const struct client *b = l->clients; b != a && !seen; b = b->next)
            seen = b != c && b->uid == c->uid && b->state == C_PENDING &&
                   strcmp(b->release, a->release) == 0;
        n += !seen;
    }
    return n;
}

/* Loop thread, under |mu|: the hooks run with it held (loader.h). */
static void on_want(struct client *c, const struct shoal_msg_loader_want *w)
{
    struct shoal_loader_srv *l = c->srv;
    struct shoal_swarm *s;
    char why[256];
    int rv;

    memcpy(c->release, w->release.p, w->release.len);
    c->release[w->release.len] = '\0';
    if (w->order.count) {
        c->order_mp = malloc(w->order.mp_len);
        if (!c->order_mp) {
            send_error(c, "out of memory");
            return;
        }
        /* The frame body goes away after this call; the order may be
         * needed only once the release is open. */
        memcpy(c->order_mp, w->order.mp, w->order.mp_len);
        c->order_len = w->order.mp_len;
        c->order_count = w->order.count;
    }
    s = l->hooks->find(l->hooks->user, c->release);
    if (s) {
        client_bind(c, s);
        return;
    }
    c->pend_by_id = parse_hex_id(c->release, c->pend_id);
    if (!l->hooks->pull) {
        send_error(c, "unknown release '%s': this node does not hold it", c->release);
        return;
    }
    /* The order is kept until the release opens, which may be never: past
     * SHOAL_LOADER_RX_FREE it counts in the budget of requests still
     * arriving (its own request's share goes once it is read, so it takes
     * that share over), so waiting loaders cannot pin more than that. */
    if (c->order_len > SHOAL_LOADER_RX_FREE) {
        size_t need = c->order_len - SHOAL_LOADER_RX_FREE;
        l->rx_charged -= c->rx_charged;
        c->rx_charged = 0;
        if (need > SHOAL_LOADER_RX_BUDGET - l->rx_charged) {
            order_free(c);
            send_error(c, "busy: loaders waiting for releases not open yet, and requests "
                       "still arriving, hold %u MiB of file orders already; retry, or send "
                       "a shorter order", SHOAL_LOADER_RX_BUDGET >> 20);
            return;
        }
        l->rx_charged += need;
        c->order_charged = need;
    }
    /* Each wait may hold one of the node's pull slots until its loader
     * leaves: one user's loaders may hold only a few. */
    if (pending_of_uid(c) >= SHOAL_LOADER_PENDING_PER_UID) {
        send_error(c, "busy: loaders of uid %u already wait for %u releases being fetched "
                   "(at most %u per user); ask again once one has opened",
                   (unsigned)c->uid, SHOAL_LOADER_PENDING_PER_UID,
                   SHOAL_LOADER_PENDING_PER_UID);
        return;
    }
    why[0] = '\0';
    rv = l->hooks->pull(l->hooks->user, c->release, why, sizeof why);
    if (rv != 0) {
        send_error(c, "unknown release '%s': cannot start fetching it: %s", c->release,
                   why[0] ? why : shoal_strerror(rv));
        return;
    }
    c->state = C_PENDING;
    LOG_I("loader %s: waiting for release %s, now being fetched", c->name, c->release);
}

static int on_frame(void *user, const uint8_t *body, size_t len)
{
    struct client *c = user;
    struct shoal_msg m;
    int rv = shoal_msg_decode(&m, body, len);

    if (rv != 0) {
        send_error(c, "malformed frame: %s", shoal_strerror(rv));
        return 1;
    }
    if (m.type != SHOAL_MSG_LOADER_WANT) {
        send_error(c, "expected LOADER_WANT, got %s", shoal_msg_type_name(m.type));
        return 1;
    }
    if (c->state != C_NEW) {
        send_error(c, "one LOADER_WANT per connection");
        return 1;
    }
    on_want(c, &m.u.loader_want);
    /* Stop after each request: the state decides what the rest means. */
    return 1;
}

/* Counts |n| more bytes of |c|'s request; false when they would overdraw
 * SHOAL_LOADER_RX_BUDGET (bytes past SHOAL_LOADER_RX_FREE of a request
 * draw on it). Under |mu|. */
static bool rx_charge(struct client *c, size_t n)
{
    struct shoal_loader_srv *l = c->srv;
    size_t now = c->rx + n > SHOAL_LOADER_RX_FREE ? c->rx + n - SHOAL_LOADER_RX_FREE : 0;

    if (now - c->rx_charged > SHOAL_LOADER_RX_BUDGET - l->rx_charged)
        return false;
    l->rx_charged += now - c->rx_charged;
    c->rx_charged = now;
    c->rx += n;
    return true;
}

/* The request is in (or refused): its buffer and its share of the budget
 * go; a loader only listens from now on. Under |mu|. */
static void rx_done(struct client *c)
{
    c->srv->rx_charged -= c->rx_charged;
    c->rx_charged = 0;
    shoal_frame_dec_free(&c->dec);
}

static void start_timer(struct shoal_loader_srv *l);

/* Whether the loader at the other end of |fd| has closed its socket
 * altogether (both ways shut: POLLHUP), not just its sending side. */
static bool loader_gone(int fd)
{
    struct pollfd pf = {.fd = fd, .events = POLLOUT};

    return poll(&pf, 1, 0) == 1 && (pf.revents & (POLLHUP | POLLERR)) != 0;
}

static void read_client(struct client *c)
{
    uint8_t buf[READ_CHUNK];
    struct shoal_frame_cb cb = {on_frame};

    for (int rounds = 0; rounds < 16 && c->state != C_CLOSING && !c->closed; rounds++) {
        ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        size_t off = 0, used;
        int rv = 0;

        if (n == 0 && c->state == C_NEW) {
            client_close(c, "loader disconnected");
            return;
        }
        if (n == 0 && loader_gone(c->fd)) {
            client_close(c, "loader disconnected");
            return;
        }
        if (n == 0) {
            /* After its request a loader may shut down its sending side
             * (shutdown(SHUT_WR)): it still reads. Stop polling for reads
             * (EOF would wake us forever) and keep sending; whether it
             * has gone altogether since is checked on the timer (a pull
             * only it asked for is withdrawn then), or the next send says
             * so (EPIPE). */
            LOG_D("loader %s: shut down its sending side; still sending to it", c->name);
            c->rd_eof = true;
            start_timer(c->srv);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                client_close(c, strerror(errno));
            return;
        }
        if (c->state == C_NEW && !rx_charge(c, (size_t)n)) {
            send_error(c, "busy: unfinished loader requests hold %u MiB already; retry",
                       SHOAL_LOADER_RX_BUDGET >> 20);
            rx_done(c);
            break;
        }
        while (off < (size_t)n && c->state != C_CLOSING) {
            if (c->state != C_NEW) {
                /* After the request a loader only listens. */
                send_error(c, "unexpected bytes after LOADER_WANT");
                break;
            }
            rv = shoal_frame_dec_feed(&c->dec, buf + off, (size_t)n - off, &used, &cb, c);
            off += used;
            if (rv < 0) {
                send_error(c, "bad frame: %s", shoal_strerror(rv));
                break;
            }
            if (rv == 0)
                break;
        }
        if (c->state != C_NEW && c->rx)
            rx_done(c);
    }
}

static void on_client_io(uv_poll_t *h, int status, int events)
{
    struct client *c = h->data;
    struct shoal_loader_srv *l = c->srv;

    if (c->closed)
        return;
    pthread_mutex_lock(&l->mu);
    if (status == UV_EBADF) {
        /* libuv reports POLLERR so: the socket's own error says what
         * happened (a loader that closed with frames unread: ECONNRESET). */
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0)
            err = EPIPE;
        client_close(c, err == EPIPE || err == ECONNRESET ? "loader went away" : strerror(err));
    } else if (status < 0) {
        client_close(c, uv_strerror(status));
    } else {
        /* Its full socket drained: it received what was in flight to it. */
        if (events & UV_WRITABLE)
            retry_stalled_now(l);
        if (events & UV_READABLE)
            read_client(c);
        if (!c->closed)
            pump_out(c);
    }
    pthread_mutex_unlock(&l->mu);
    refresh_priorities(l);
}

/* ---- accepting ---- */

/* Whether process |pid| holds group |gid| among its supplementary groups
 * (read from /proc: no NSS lookups on the loop; but the process may have
 * exited and its pid gone to another by now, so only for kernels without
 * SO_PEERGROUPS). */
static bool proc_has_group(pid_t pid, gid_t gid)
{
    char path[64], line[4096];
    bool found = false;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return false;
    while (!found && fgets(line, sizeof line, f)) {
        char *p, *end;
        if (strncmp(line, "Groups:", 7) != 0)
            continue;
        for (p = line + 7;; p = end) {
            unsigned long g = strtoul(p, &end, 10);
            if (end == p)
                break;
            if ((gid_t)g == gid)
                found = true;
        }
        break;
    }
    fclose(f);
    return found;
}

/* Whether the peer of |fd| held group |gid| among its supplementary groups
 * when it connected: SO_PEERGROUPS (Linux 4.13) records them with the
 * connection, as SO_PEERCRED does the ids, so they cannot be another
 * process's; older kernels fall back to /proc/<pid>. */
static bool peer_has_group(int fd, pid_t pid, gid_t gid)
{
#ifdef SO_PEERGROUPS
    gid_t small[64], *g = small;
    socklen_t len = sizeof small;
    bool found = false;
    int rv = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len);

    if (rv != 0 && errno == ERANGE && len > sizeof small) {
        /* |len| now says how much room the list needs. */
        g = malloc(len);
        if (!g)
            return false;
        rv = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len);
    }
    if (rv == 0) {
        for (size_t i = 0; i < len / sizeof *g && !found; i++)
            found = g[i] == gid;
    }
    if (g != small)
        free(g);
    if (rv == 0 || errno != ENOPROTOOPT)
        return found;
#endif
    return proc_has_group(pid, gid);
}

static bool authorised(const struct shoal_loader_srv *l, int fd, const struct ucred *cr)
{
    if (cr->uid == 0 || cr->uid == geteuid())
        return true;
    if (l->has_uid && cr->uid == l->uid)
        return true;
    if (l->has_gid && (cr->gid == l->gid || peer_has_group(fd, cr->pid, l->gid)))
        return true;
    return false;
}

static uint32_t clients_of_uid(const struct shoal_loader_srv *l, uid_t uid)
{
    uint32_t n = 0;
    for (const struct client *c = l->clients; c; c = c->next)
        n += c->uid == uid;
    return n;
}

static void on_timer(uv_timer_t *t);

/* Loop thread, under |mu|. */
static void start_timer(struct shoal_loader_srv *l)
{
    uint64_t period = l->want_timeout_ms / 10 + 1;

    if (l->timer_on || !l->timer_init || l->closed)
        return;
    l->timer_on = uv_timer_start(&l->timer, on_timer, period, period) == 0;
}

/* Closes connections whose request did not arrive in time, and those of
 * loaders that shut their sending side and have gone since; stops when
 * there are none of either. */
static void on_timer(uv_timer_t *t)
{
    struct shoal_loader_srv *l = t->data;
    uint64_t now = uv_now(l->loop);
    struct client *c, *next;
    bool waiting = false;

    pthread_mutex_lock(&l->mu);
    for (c = l->clients; c; c = next) {
        next = c->next; /* pump_out may close c */
        if (c->rd_eof && c->state != C_CLOSING && !c->closed) {
            if (loader_gone(c->fd))
                client_close(c, "loader disconnected");
            else
                waiting = true;
            continue;
        }
        if (c->state != C_NEW)
            continue;
        if (now - c->since_ms < l->want_timeout_ms) {
            waiting = true;
            continue;
        }
        send_error(c, "no LOADER_WANT within %.1f s of connecting (%zu bytes of it came)",
                   (double)l->want_timeout_ms / 1000.0, c->rx);
        rx_done(c);
        pump_out(c);
    }
    if (!waiting) {
        uv_timer_stop(&l->timer);
        l->timer_on = false;
    }
    pthread_mutex_unlock(&l->mu);
}

/* Loop thread, under |mu|. */
static void client_new(struct shoal_loader_srv *l, int fd)
{
    struct client *c = calloc(1, sizeof *c);
    struct ucred cr;
    socklen_t crlen = sizeof cr;

    if (!c) {
        close(fd);
        return;
    }
    c->srv = l;
    c->fd = fd;
    c->state = C_NEW;
    shoal_frame_dec_init(&c->dec, SHOAL_LOADER_FRAME_MAX);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0) {
        LOG_W("loader socket: cannot identify a connecting process: %s", strerror(errno));
        free(c);
        close(fd);
        return;
    }
    /* Bounds the descriptors in flight to this loader (LOADER_SNDBUF); on
     * failure the default buffer only lets more wait. */
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &(int){LOADER_SNDBUF}, sizeof(int));
    c->pid = cr.pid;
    c->uid = cr.uid;
    c->since_ms = uv_now(l->loop);
    snprintf(c->name, sizeof c->name, "pid %d uid %u", (int)cr.pid, (unsigned)cr.uid);
    if (uv_poll_init(l->loop, &c->poll, fd) != 0) {
        free(c);
        close(fd);
        return;
    }
    c->poll.data = c;
    c->next = l->clients;
    if (l->clients)
        l->clients->prev = c;
    l->clients = c;
    l->nclients++;
    if (!authorised(l, fd, &cr)) {
        send_error(c, "not authorised: uid %u gid %u may not use this loader socket",
                   (unsigned)cr.uid, (unsigned)cr.gid);
    } else if (l->nclients > l->max_clients) {
        send_error(c, "too many loaders connected (%u)", l->max_clients);
    } else if (clients_of_uid(l, cr.uid) > l->max_per_uid) {
        send_error(c, "too many loaders of uid %u connected (at most %u of one user)",
                   (unsigned)cr.uid, l->max_per_uid);
    } else {
        LOG_I("loader %s connected", c->name);
        start_timer(l);
    }
    c->poll_events = UV_READABLE;
    uv_poll_start(&c->poll, UV_READABLE, on_client_io);
    pump_out(c);
}

static void on_accept(uv_poll_t *h, int status, int events)
{
    struct shoal_loader_srv *l = h->data;

    if (status < 0 || l->closed)
        return;
    for (int i = 0; i < ACCEPT_BURST; i++) {
        int fd = accept4(l->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                LOG_W("loader socket %s: accept: %s", l->path, strerror(errno));
            return;
        }
        pthread_mutex_lock(&l->mu);
        client_new(l, fd);
        pthread_mutex_unlock(&l->mu);
    }
}

/* Sends again what ETOOMANYREFS held up; while anything is still held,
 * tries again later, twice as late as this time (FD_RETRY_MAX_MS at most). */
static void on_retry(uv_timer_t *t)
{
    struct shoal_loader_srv *l = t->data;
    struct client *c, *next;
    bool held = false;

    pthread_mutex_lock(&l->mu);
    /* retry_on stays set meanwhile, so a send stalling again below leaves
     * the timer to this function (set_events would restart the backoff). */
    for (c = l->clients; c; c = next) {
        next = c->next; /* pump_out may close c */
        if (!c->fd_stalled)
            continue;
        c->fd_stalled = false;
        pump_out(c);
        held |= !c->closed && c->fd_stalled;
    }
    if (held && !l->closed) {
        l->retry_ms = l->retry_ms * 2 < FD_RETRY_MAX_MS ? l->retry_ms * 2 : FD_RETRY_MAX_MS;
        l->retry_on = uv_timer_start(&l->retry, on_retry, l->retry_ms, 0) == 0;
    } else {
        uv_timer_stop(&l->retry);
        l->retry_on = false;
    }
    pthread_mutex_unlock(&l->mu);
}

/* ---- file events ---- */

/* Does on the loop what workers could not: closes connections that broke or
 * finished, arms the poll of those whose socket was full, and refreshes the
 * priorities of the swarms whose loaders received files. */
static void on_async(uv_async_t *h)
{
    struct shoal_loader_srv *l = h->data;
    struct client *c, *next;
    bool left;

    pthread_mutex_lock(&l->mu);
    for (c = l->clients; c; c = next) {
        next = c->next; /* pump_out may close c */
        if (!c->kick)
            continue;
        c->kick = false;
        pump_out(c);
    }
    left = l->pend_left && !l->ev_closed;
    l->pend_left = false;
    pthread_mutex_unlock(&l->mu);
    refresh_priorities(l);
    if (left)
        l->hooks->left(l->hooks->user);
}

/* Earlier positions of the loader's order looked at for files that are
 * done but not yet reported (see offer_file). */
#define ORDER_WINDOW 64u

/* Makes file |file| ready for |c| if it waits for it (flush then sends it,
 * and LOADER_DONE after the last). Any thread, under |mu|. Returns whether
 * |c| waited for it.
 *
 * Files that the store finished at the same moment are reported by their
 * worker threads in no particular order; so files earlier in the loader's
 * order that are already done go out first, and their own reports find
 * them sent. */
static bool offer_file(struct client *c, uint32_t file, uint64_t ready_ns)
{
    bool waited = false;
    uint32_t k = c->pos[file];

    if (k-- > 0) {
        uint32_t end = k - c->unsent > ORDER_WINDOW ? c->unsent + ORDER_WINDOW : k;
        waited = !c->sent[k];
        for (uint32_t j = c->unsent; waited && j < end; j++) {
            if (!c->sent[j] && shoal_swarm_file_done(c->swarm, c->want[j]))
                hand_file(c, j, ready_ns);
        }
        if (waited)
            hand_file(c, k, ready_ns);
    }
    return waited;
}

void shoal_loader_srv_file_done(struct shoal_loader_srv *l, struct shoal_swarm *s, uint32_t file,
                                int status)
{
    uint64_t t = mono_ns();
    struct sent_log lg;
    bool wake = false;

    if (!l || status != 0)
        return;
    lg.n = 0;
    pthread_mutex_lock(&l->mu);
    if (l->ev_closed)
        goto out;
    for (struct client *c = l->clients; c; c = c->next) {
        bool backlog = c->qhead != NULL;

        if (c->state != C_WATCH || c->swarm != s || !offer_file(c, file, t))
            continue;
        /* Straight from this thread: the loop may be deep in chunk traffic.
         * A full socket, an error or a finished connection is the loop's. */
        if (!c->broken)
            c->broken = flush(c, &lg);
        if (!backlog && c->qhead && !c->broken)
            LOG_I("loader %s is not keeping up: its socket is full, frames wait in its queue",
                  c->name);
        if (c->broken || c->qhead || c->state == C_CLOSING)
            c->kick = true;
        mark_dirty(l, s);
        wake = true;
    }
    if (wake)
        uv_async_send(&l->async);
out:
    pthread_mutex_unlock(&l->mu);
    sent_log_flush(&lg);
}

void shoal_loader_srv_release_opened(struct shoal_loader_srv *l, struct shoal_swarm *s)
{
    struct client *c, *next;

    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    for (c = l->clients; c; c = next) {
        next = c->next;
        if (c->state == C_PENDING && pending_for(c, s)) {
            client_bind(c, s);
            pump_out(c);
        }
    }
    pthread_mutex_unlock(&l->mu);
    refresh_priorities(l);
}

void shoal_loader_srv_release_named(struct shoal_loader_srv *l, struct shoal_swarm *s,
                                    const char *name)
{
    struct client *c, *next;

    if (!l || !name)
        return;
    pthread_mutex_lock(&l->mu);
    for (c = l->clients; c; c = next) {
        next = c->next;
        if (c->state == C_PENDING && !c->pend_by_id && strcmp(c->release, name) == 0) {
            client_bind(c, s);
            pump_out(c);
        }
    }
    pthread_mutex_unlock(&l->mu);
    refresh_priorities(l);
}

void shoal_loader_srv_release_failed(struct shoal_loader_srv *l, const char *release,
                                     const char *why)
{
    struct client *c, *next;
    uint8_t id[32];
    bool by_id;

    if (!l || !release)
        return;
    by_id = parse_hex_id(release, id);
    pthread_mutex_lock(&l->mu);
    for (c = l->clients; c; c = next) {
        next = c->next; /* pump_out may close c */
        if (c->state != C_PENDING || c->pend_by_id != by_id ||
            (by_id ? memcmp(c->pend_id, id, 32) != 0 : strcmp(c->release, release) != 0))
            continue;
        send_error(c, "release '%s' cannot be fetched: %s", c->release, why ? why : "no reason given");
        pump_out(c);
    }
    pthread_mutex_unlock(&l->mu);
}

/* Takes the frames of |s| that have not started out of |c|'s queue (a
 * frame whose first byte is out already carried its descriptor), the
 * ready files not built yet, and the LOADER_DONE behind them if any went:
 * the loader did not get every file. Returns how many files went (they no
 * longer count as sent). Under |mu|. */
static uint32_t unqueue_swarm(struct client *c, struct shoal_swarm *s)
{
    struct outq **pp = &c->qhead, *q;
    /* Ready files not built yet are all of |c|'s own release. */
    uint32_t removed = c->swarm == s ? c->nready - c->rnext : 0;

    c->rnext += removed;
    c->qtail = NULL;
    while ((q = *pp)) {
        if ((q->swarm == s || (q->done && removed)) && q->off == 0) {
            removed += q->has_file;
            *pp = q->next;
            if (q->fd >= 0)
                close(q->fd);
            free(q->data);
            free(q);
            continue;
        }
        q->swarm = q->swarm == s ? NULL : q->swarm;
        c->qtail = q;
        pp = &q->next;
    }
    c->nsent -= removed;
    return removed;
}

void shoal_loader_srv_release_dropped(struct shoal_loader_srv *l, struct shoal_swarm *s,
                                      const char *why)
{
    struct client *c, *next;
    uint32_t removed;

    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < l->ndirty; i++) {
        if (l->dirty[i] == s) {
            l->dirty[i] = l->dirty[--l->ndirty];
            break;
        }
    }
    for (c = l->clients; c; c = next) {
        next = c->next; /* pump_out may close c */
        if (c->state == C_PENDING && pending_for(c, s)) {
            send_error(c, "release '%s': %s", c->release, why);
            pump_out(c);
            continue;
        }
        if (c->swarm != s)
            continue;
        /* A loader whose LOADER_DONE was queued but not sent (it reads
         * slowly) must not get it now: files ahead of it are gone. */
        removed = unqueue_swarm(c, s);
        c->swarm = NULL;
        if (c->state == C_WATCH || removed)
            send_error(c, "release '%s': %s (%u of its %u files were handed over)",
                       c->release, why, c->nsent, c->nwant);
        pump_out(c);
    }
    pthread_mutex_unlock(&l->mu);
}

bool shoal_loader_srv_waiting(struct shoal_loader_srv *l, const char *release)
{
    uint8_t id[32];
    bool by_id, found = false;

    if (!l || !release)
        return false;
    by_id = parse_hex_id(release, id);
    pthread_mutex_lock(&l->mu);
    for (const struct client *c = l->clients; c && !found; c = c->next)
        found = c->state == C_PENDING && c->pend_by_id == by_id &&
                (by_id ? memcmp(c->pend_id, id, 32) == 0 : strcmp(c->release, release) == 0);
    pthread_mutex_unlock(&l->mu);
    return found;
}

bool shoal_loader_srv_watching(struct shoal_loader_srv *l, const struct shoal_swarm *s)
{
    bool found = false;

    if (!l || !s)
        return false;
    pthread_mutex_lock(&l->mu);
    /* C_CLOSING too: its last files (or LOADER_DONE) may still be queued. */
    for (const struct client *c = l->clients; c && !found; c = c->next)
        found = !c->closed && c->swarm == s;
    pthread_mutex_unlock(&l->mu);
    return found;
}

uint32_t shoal_loader_srv_clients(const struct shoal_loader_srv *l)
{
    return l ? l->nclients : 0;
}

/* ---- setup ---- */

/* Removes a socket file left by a daemon that died; refuses to touch a
 * live socket or anything that is not a socket. */
static int clear_stale(const char *path, const struct sockaddr_un *sa)
{
    struct stat st;
    int fd, rv;

    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    rv = connect(fd, (const struct sockaddr *)sa, sizeof *sa);
    close(fd);
    if (rv == 0)
        return -EADDRINUSE;
    return unlink(path) == 0 || errno == ENOENT ? 0 : -errno;
}

static int lookup_ids(struct shoal_loader_srv *l, const struct shoal_loader_srv_cfg *cfg)
{
    char buf[16384];
    struct group gr, *grp = NULL;
    struct passwd pw, *pwp = NULL;

    if (cfg->group) {
        if (getgrnam_r(cfg->group, &gr, buf, sizeof buf, &grp) != 0 || !grp) {
            LOG_E("loader socket: no group named '%s'", cfg->group);
            return SHOAL_ENOTFOUND;
        }
        l->gid = grp->gr_gid;
        l->has_gid = true;
    }
    if (cfg->user) {
        if (getpwnam_r(cfg->user, &pw, buf, sizeof buf, &pwp) != 0 || !pwp) {
            LOG_E("loader socket: no user named '%s'", cfg->user);
            return SHOAL_ENOTFOUND;
        }
        l->uid = pwp->pw_uid;
        l->has_uid = true;
    }
    return 0;
}

/* Loaders that stop reading hold up to LOADER_INFLIGHT_MAX descriptors
 * each in flight, charged to shoald's open-files limit: says so when the
 * limit leaves little room beside them (hand-offs then wait, see flush). */
static void warn_nofile(const struct shoal_loader_srv *l)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)l->max_clients * LOADER_INFLIGHT_MAX;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur >= 2 * need)
        return;
    LOG_W("loader socket: the open-files limit (%llu) is low: %u loaders that stop reading "
          "may hold %llu descriptors in flight, which count against it; other loaders' "
          "hand-offs then wait (raise LimitNOFILE)", (unsigned long long)rl.rlim_cur,
          l->max_clients, (unsigned long long)need);
}

static void on_srv_handle_closed(uv_handle_t *h)
{
    (void)h;
}

int shoal_loader_srv_new(struct shoal_loader_srv **out, const struct shoal_loader_srv_cfg *cfg,
                         const struct shoal_loader_srv_hooks *hooks)
{
    struct shoal_loader_srv *l = NULL;
    struct sockaddr_un sa;
    struct stat st;
    int rv;

    if (!out || !cfg || !cfg->loop || !cfg->path || !hooks || !hooks->find)
        return -EINVAL;
    if (strlen(cfg->path) >= sizeof sa.sun_path) {
        LOG_E("loader socket path '%s' is too long (at most %zu bytes)", cfg->path,
              sizeof sa.sun_path - 1);
        return -ENAMETOOLONG;
    }
    l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->lfd = -1;
    l->loop = cfg->loop;
    l->hooks = hooks;
    l->max_clients = cfg->max_clients ? cfg->max_clients : 64;
    if (l->max_clients > SHOAL_LOADER_CLIENTS_MAX)
        l->max_clients = SHOAL_LOADER_CLIENTS_MAX;
    l->max_per_uid = cfg->max_per_uid ? cfg->max_per_uid : l->max_clients / 4;
    if (l->max_per_uid == 0)
        l->max_per_uid = 1;
    l->want_timeout_ms = cfg->want_timeout_ms ? cfg->want_timeout_ms
                                              : SHOAL_LOADER_WANT_TIMEOUT_MS;
    pthread_mutex_init(&l->mu, NULL);
    l->path = strdup(cfg->path);
    if (!l->path) {
        rv = -ENOMEM;
        goto fail;
    }
    rv = lookup_ids(l, cfg);
    if (rv != 0)
        goto fail;

    char why[PATH_MAX + 160];
    if ((rv = shoal_sockpath_check(cfg->path, why, sizeof why)) != 0) {
        LOG_E("loader socket %s: %s; put it in a directory only root or shoald's user may "
              "write", cfg->path, why);
        goto fail;
    }
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, cfg->path, strlen(cfg->path));
    rv = clear_stale(cfg->path, &sa);
    if (rv != 0) {
        LOG_E("loader socket %s: %s", cfg->path,
              rv == -EADDRINUSE ? "another daemon is listening there"
              : rv == -EEXIST   ? "exists and is not a socket"
                                : strerror(-rv));
        goto fail;
    }
    l->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->lfd < 0) {
        rv = -errno;
        goto fail;
    }
    /* Between bind and chmod the file may briefly carry the umask's mode;
     * SO_PEERCRED checks every connection, so that window grants nothing.
     * For the same reason --loader-user opens the mode to everyone: with
     * 0660 that user (neither shoald's nor in the group) could not even
     * connect, and the check below still refuses every other uid. */
    if (bind(l->lfd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        rv = -errno;
        LOG_E("loader socket %s: %s", cfg->path, strerror(errno));
        goto fail;
    }
    rv = shoal_sockpath_set_mode(cfg->path, l->has_uid ? 0666 : 0660,
                                 l->has_gid ? l->gid : (gid_t)-1);
    if (rv != 0) {
        LOG_E("loader socket %s: %s", cfg->path,
              rv == -EEXIST ? "replaced by something else right after it was made"
                            : strerror(-rv));
        goto fail;
    }
    if (lstat(cfg->path, &st) != 0 || listen(l->lfd, 64) != 0) {
        rv = -errno;
        LOG_E("loader socket %s: %s", cfg->path, strerror(errno));
        goto fail;
    }
    l->sock_dev = st.st_dev;
    l->sock_ino = st.st_ino;
    rv = uv_async_init(l->loop, &l->async, on_async);
    if (rv != 0)
        goto fail;
    l->async_init = true;
    l->async.data = l;
    rv = uv_timer_init(l->loop, &l->timer);
    if (rv != 0)
        goto fail;
    l->timer_init = true;
    l->timer.data = l;
    rv = uv_timer_init(l->loop, &l->retry);
    if (rv != 0)
        goto fail;
    l->retry_init = true;
    l->retry.data = l;
    rv = uv_poll_init(l->loop, &l->lpoll, l->lfd);
    if (rv != 0)
        goto fail;
    l->lpoll_init = true;
    l->lpoll.data = l;
    rv = uv_poll_start(&l->lpoll, UV_READABLE, on_accept);
    if (rv != 0)
        goto fail;
    warn_nofile(l);
    LOG_I("loader socket on %s (mode %s%s%s%s%s)", cfg->path, l->has_uid ? "0666, each "
          "connection checked with SO_PEERCRED" : "0660", l->has_gid ? ", group " : "",
          l->has_gid ? cfg->group : "", l->has_uid ? ", user " : "", l->has_uid ? cfg->user : "");
    *out = l;
    return 0;
fail:
    /* Handles already initialised must be closed on the loop before the
     * memory goes: close now, the caller's loop run finishes them. */
    shoal_loader_srv_close(l);
    if (!l->async_init && !l->lpoll_init && !l->timer_init && !l->retry_init) {
        shoal_loader_srv_free(l);
    } else {
        /* Freed by shoal_loader_srv_free after the close callbacks; we
         * cannot hand the pointer out, so run the loop just enough. */
        uv_run(l->loop, UV_RUN_NOWAIT);
        shoal_loader_srv_free(l);
    }
    return rv;
}

void shoal_loader_srv_close(struct shoal_loader_srv *l)
{
    struct stat st;

    if (!l || l->closed)
        return;
    l->closed = true;
    pthread_mutex_lock(&l->mu);
    l->ev_closed = true;
    while (l->clients)
        client_close(l->clients, "daemon shutting down");
    pthread_mutex_unlock(&l->mu);
    refresh_priorities(l);
    if (l->lpoll_init && !uv_is_closing((uv_handle_t *)&l->lpoll))
        uv_close((uv_handle_t *)&l->lpoll, on_srv_handle_closed);
    if (l->async_init && !uv_is_closing((uv_handle_t *)&l->async))
        uv_close((uv_handle_t *)&l->async, on_srv_handle_closed);
    if (l->timer_init && !uv_is_closing((uv_handle_t *)&l->timer))
        uv_close((uv_handle_t *)&l->timer, on_srv_handle_closed);
    if (l->retry_init && !uv_is_closing((uv_handle_t *)&l->retry))
        uv_close((uv_handle_t *)&l->retry, on_srv_handle_closed);
    /* Only our own socket file: another daemon may have replaced it. */
    if (l->sock_ino && lstat(l->path, &st) == 0 && st.st_ino == l->sock_ino &&
        st.st_dev == l->sock_dev)
        unlink(l->path);
}

void shoal_loader_srv_free(struct shoal_loader_srv *l)
{
    if (!l)
        return;
    if (l->lfd >= 0)
        close(l->lfd);
    free(l->dirty);
    pthread_mutex_destroy(&l->mu);
    free(l->path);
    free(l);
}
