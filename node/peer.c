/* SPDX-License-Identifier: MIT */
/*
 * One peer connection on the libuv loop (see peer.h): TCP, frames, the
 * handshake, sealed messages and a bounded write queue.
 */
#include "peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "frame.h"
#include "hash.h"
#include "netsrc.h"
#include "nodelog.h"
#include "tcpinfo.h"

#define READ_BUF 65536u
/* Bodies this large are read straight into the frame decoder. */
#define DIRECT_READ_MIN 65536u
#define CLOSE_GRACE_MS 2000u
/* A live session's credential end is rechecked at least this often, so an
 * idle session also ends within this time of a wall clock set forward; the
 * same timer looks at whether the peer is alive (check_alive). */
#define CRED_CHECK_MAX_MS 10000u
/* Nothing received for ctx->idle_ms (default) it is gone, or holds a peer
 * slot doing nothing (S4); a PING at a third of it (the peer's PONG shows
 * it alive). Checks come at least 9 times per idle_ms. */
#define IDLE_MS_DEFAULT 90000u
/* A frame under way that comes slower than this (bytes a second, over
 * TRICKLE_CHECKS checks in a row while we read) holds a peer slot for ever:
 * closed. */
#define TRICKLE_BPS 1024u
#define TRICKLE_CHECKS 3u

enum peer_state { ST_CONNECTING, ST_HELLO, ST_AUTH, ST_READY };

/* REJECTs a peer may have queued past its queue's limits: a chunk that
 * crossed the limit can overshoot it by a whole chunk, so no room measured
 * from the limit is sure to hold them. A requester that reads has at most
 * SHOAL_SCHED_DEPTH_MAX (64) requests out per release; one that never
 * reads gets no more than this many small frames past the limit (~38 KiB
 * at ITEM_COST each), and is not read from meanwhile. */
#define REJECTS_OVER 64u

struct shoal_peer {
    uv_tcp_t tcp;
    uv_timer_t timer;  /* handshake deadline, the peer's credential end, then
                        * the close grace period */
    uv_connect_t conn_req;
    uv_shutdown_t shut_req;
    const struct shoal_peer_ctx *ctx;
    const struct shoal_peer_cb *cb;
    void *user;
    void *data;
    struct shoal_session *sess;
    struct shoal_frame_dec dec;
    enum peer_state st;
    /* WANT_MANIFESTs sent and not yet answered: a MANIFEST_DATA beyond them
     * was not asked for, and is refused before its owner spends a hash and
     * a signature check of up to a frame's bytes on it. */
    uint32_t manifests_asked;
    /* REQUESTs sent and not answered yet (CHUNK or REJECT): each earns one
     * answer, so a peer cannot make us open and drop unasked chunks at
     * wire speed. */
    uint32_t requests_open;
    bool initiator;
    /* Accepted side: our HELLO (node key, credential, zone, address) waits
     * until the initiator's HELLO has verified, so a connection without a
     * cluster member's HELLO learns nothing of this node. One replaying a
     * HELLO it captured does learn those (public to any cluster member),
     * never a session: it cannot sign the HELLO_AUTH. */
    uint8_t *hello_held;
    size_t hello_held_len;
    uint8_t src[SHOAL_SRC_KEY_LEN]; /* accepted side: where it came from */
    bool closing;
    bool flush_close;  /* closing once txq and sfq are out (shut_if_flushed) */
    bool local;        /* the remote end is on this host */
    int open_handles;
    size_t queued;     /* wire bytes queued (see q_add) */
    size_t qitems;     /* ... in this many items */
    size_t max_queue;
    bool drain_wanted;
    bool q_paused;     /* not reading while our replies to it pile up */
    unsigned sfq_fds;  /* file descriptors held by queued sendfile
                          items (at most SFQ_FDS_MAX) */
    uint64_t tx_mark;  /* on_drain once tx reaches it (0: none) */
    /* The tx counts at which the REJECTs queued last are written, oldest
     * first: past the queue's limits, one more goes only while fewer than
     * REJECTS_OVER are unwritten (shoal_peer_send_reject). */
    uint64_t rej_mark[REJECTS_OVER];
    unsigned rej_head, rej_n;
    uint64_t id;
    uint64_t rx, tx;
    /* Liveness (check_alive): bytes read off the socket, when the last
     * came, and what a check saw last. */
    uint64_t raw_rx, last_rx_ms, check_raw_rx, check_ms;
    uint32_t trickles;
    bool paused_since_check; /* we stopped reading at some point since */
    /* rate limits */
    uv_timer_t pace;               /* next held send or read resume */
    struct shoal_rate_pair up, down;
    struct held *held, *held_tail; /* CHUNK frames waiting, not yet sealed */
    size_t held_bytes;             /* ... their wire bytes (part of queued) */
    bool read_paused;
    /* sealing on workers */
    struct txf *txq, *txq_tail; /* sealed sends in counter order */
    unsigned works;             /* worker jobs holding this peer */
    struct rxf *rxq, *rxq_tail; /* received sealed frames, in counter order */
    size_t rxq_bytes;
    bool rxq_paused;            /* reading stopped: rxq is full */
    uint8_t *rx_body;           /* body being dispatched, maybe the decoder's */
    uint8_t *rx_owned;          /* ... or one of ours (from rxq) */
    /* payloads from files */
    struct sfi *sfq, *sfq_tail; /* frames behind a file payload, in order */
    uv_poll_t sf_poll;          /* writability of the socket, on sf_fd */
    int sf_fd;                  /* dup of the socket for sf_poll; -1: none */
    bool sf_polling;
    bool sf_busy;               /* in sfq_pump */
    bool held_busy;             /* in held_pump */
    char name[80];
    char reason[256];
    uint8_t rbuf[READ_BUF];
};

struct wreq {
    uv_write_t req;
    struct shoal_peer *p;
    uint8_t *a;        /* header, or the whole frame (freed, may start before) */
    uint8_t *payload;  /* plain CHUNK payload, or NULL */
    size_t bytes;
};

/* sealing on workers
 * A frame of a sealed session between taking its counter and being written.
 * Frames must reach the wire in counter order, so they wait in p->txq until
 * every frame before them is sealed too; big ones are sealed on a worker. */
struct txf {
    uv_work_t w;
    struct shoal_peer *p;
    struct txf *next;
    uint8_t *base;     /* allocation holding the frame (freed) */
    uint8_t *frame;    /* header slot, body, SHOAL_SESSION_TAG_LEN spare */
    size_t body_len;   /* plaintext body bytes */
    size_t flen;       /* bytes to write once sealed */
    uint64_t ctr;
    bool sealed;
    int rv;
};
/* Bodies at least this big are sealed on a worker: below it, the hop costs
 * more than the AEAD. */
#define SEAL_ASYNC_MIN 65536u

/* A received frame of a sealed session between taking its counter and
 * being dispatched: big ones are opened on a worker, and every frame after
 * one of those waits in p->rxq so messages reach the owner in wire order. */
struct rxf {
    uv_work_t w;
    struct shoal_peer *p;
    struct rxf *next;
    uint8_t *buf;      /* the body (owned) */
    size_t len, plain;
    uint64_t ctr;
    bool opened;
    int rv;
};
/* Reading pauses while rxq holds more than this. */
#define RXQ_MAX_BYTES (64u << 20)

/* payloads from files
 * A plain session can send a served chunk with sendfile(2) from the store's
 * file: the kernel hands page-cache pages to the socket, with no read into
 * a buffer and no copy into the socket on this side. libuv does not know
 * about those bytes, so once a file item is queued every later frame waits
 * behind it in p->sfq, in order. A file item goes out only when libuv's
 * own write queue is empty; when the socket is full, a uv_poll on a dup of
 * its descriptor says when to go on (libuv keys its watchers by descriptor
 * number, so the dup does not disturb the stream's own). */
struct sfi {
    struct sfi *next;
    uint8_t *base;     /* allocation holding |a| (freed) */
    uint8_t *a;        /* a memory item's bytes, or a file item's header */
    size_t alen, adone;
    uint8_t *payload;  /* a memory item's second buffer (freed), or NULL */
    size_t plen;
    int fd;            /* a file item's payload source (closed); -1: memory item */
    uint64_t off;      /* next payload byte in |fd| */
    size_t left;       /* payload bytes not yet sent */
    size_t bytes;      /* counted in p->queued */
    uint32_t req_id;   /* a file item's CHUNK answers this request */
};

/* rate limits */
/* A CHUNK over the upload budget, or behind WIRE_AHEAD bytes: sealed only
 * when it is sent, so the session's nonces stay in send order, and until
 * then a CANCEL takes it back (shoal_peer_withdraw_chunk). A file CHUNK
 * (sendfile, plain sessions) waits here only behind memory ones held
 * before it, so CHUNKs leave in the order they were queued. */
struct held {
    struct held *next;
    uint8_t *hdr;
    size_t hlen;
    uint8_t *payload;  /* NULL for a file CHUNK */
    size_t plen;
    int fd;            /* a file CHUNK's payload source (counted in
                        * sfq_fds, closed); -1: memory */
    uint64_t off;      /* ... its first payload byte in |fd| */
    uint32_t req_id;
};

/* CHUNK frames go on to be sealed and written while less than this is
 * queued there (txq, libuv's write queue, sfq), the kernel's socket buffer
 * still behind it; the others wait in |held|. A frame handed to libuv
 * cannot be taken back, and a sealed one holds a nonce the frames after it
 * count on, so on a slow link a requester's CANCEL would otherwise find
 * every chunk it asked for already there, sent in full to be thrown
 * away. */
#define WIRE_AHEAD (2u << 20)

static uint64_t next_peer_id = 1;

/* chunk-sized receive buffers kept for reuse
 * Every received chunk frame needs a buffer of about a MiB, freed on a
 * worker thread once the chunk is verified and stored. Left to malloc, such
 * sizes come and go as fresh mappings, and every page of every chunk faults
 * in anew. Frame bodies come from shoal_peer_buf_alloc(), sized up to whole
 * MiBs so that one fits most chunks, and the owner hands them back with
 * shoal_peer_buf_free() when done, up to a bound: a node that only serves
 * keeps nothing here. */
#define POOL_MIN (64u * 1024u)         /* smaller ones are left to malloc */
#define POOL_ROUND (1u << 20)
#define POOL_BUFS 16u
#define POOL_BYTES ((size_t)32 << 20)

static struct {
    pthread_mutex_t mu;
    uint8_t *buf[POOL_BUFS];
    size_t cap[POOL_BUFS];
    unsigned n;
    size_t bytes;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER};

uint8_t *shoal_peer_buf_alloc(size_t n, size_t *cap)
{
    uint8_t *b = NULL;
    unsigned best = POOL_BUFS;
    size_t c;

    if (n >= POOL_MIN) {
        pthread_mutex_lock(&pool.mu);
        for (unsigned i = 0; i < pool.n; i++) {
            if (pool.cap[i] >= n && (best == POOL_BUFS || pool.cap[i] < pool.cap[best]))
                best = i;
        }
        if (best < POOL_BUFS) {
            b = pool.buf[best];
            c = pool.cap[best];
            pool.bytes -= c;
            pool.n--;
            pool.buf[best] = pool.buf[pool.n];
            pool.cap[best] = pool.cap[pool.n];
        }
        pthread_mutex_unlock(&pool.mu);
        if (b) {
            if (cap)
                *cap = c;
            return b;
        }
        if (n <= SIZE_MAX - POOL_ROUND)
            n = (n + POOL_ROUND - 1) / POOL_ROUND * POOL_ROUND;
    }
    b = malloc(n ? n : 1);
    if (b && cap)
        *cap = n;
    return b;
}

void shoal_peer_buf_free(uint8_t *b)
{
    size_t c;

    if (!b)
        return;
    c = malloc_usable_size(b);
    if (c >= POOL_MIN) {
        pthread_mutex_lock(&pool.mu);
        if (pool.n < POOL_BUFS && pool.bytes + c <= POOL_BYTES) {
            pool.buf[pool.n] = b;
            pool.cap[pool.n++] = c;
            pool.bytes += c;
            b = NULL;
        }
        pthread_mutex_unlock(&pool.mu);
    }
    free(b);
}

static const struct shoal_frame_cb frame_cb;

uint64_t shoal_peer_id(const struct shoal_peer *p) { return p->id; }
bool shoal_peer_initiator(const struct shoal_peer *p) { return p->initiator; }
bool shoal_peer_local(const struct shoal_peer *p) { return p->local; }
const char *shoal_peer_name(const struct shoal_peer *p) { return p->name; }
const uint8_t *shoal_peer_source(const struct shoal_peer *p) { return p->src; }
const struct shoal_session *shoal_peer_session(const struct shoal_peer *p) { return p->sess; }
void shoal_peer_set_data(struct shoal_peer *p, void *data) { p->data = data; }
void *shoal_peer_data(const struct shoal_peer *p) { return p->data; }
size_t shoal_peer_queued(const struct shoal_peer *p) { return p->queued; }
bool shoal_peer_ready(const struct shoal_peer *p) { return p->st == ST_READY && !p->closing; }
uint64_t shoal_peer_rx_bytes(const struct shoal_peer *p) { return p->rx; }
uint64_t shoal_peer_tx_bytes(const struct shoal_peer *p) { return p->tx; }

uint32_t shoal_peer_rtt_us(const struct shoal_peer *p)
{
    uv_os_fd_t fd;
    uint32_t us;

    if (p->st == ST_CONNECTING || uv_fileno((const uv_handle_t *)&p->tcp, &fd) != 0 ||
        shoal_tcp_rtt_us(fd, &us) != 0)
        return 0;
    return us;
}

int shoal_parse_addr(const char *addr, struct sockaddr_storage *ss)
{
    char host[SHOAL_MSG_ADDR_MAX + 1];
    const char *colon = strrchr(addr, ':');
    char *end;
    long port;
    size_t hl;

    if (!colon || colon == addr)
        return -EINVAL;
    hl = (size_t)(colon - addr);
    if (hl >= sizeof host)
        return -EINVAL;
    memcpy(host, addr, hl);
    host[hl] = '\0';
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port < 0 || port > 65535)
        return -EINVAL;
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return -EINVAL;
}

static void sfi_free(struct shoal_peer *p, struct sfi *f)
{
    if (f->fd >= 0) {
        close(f->fd);
        p->sfq_fds--;
    }
    free(f->base);
    free(f->payload);
    free(f);
}

static size_t queue_load(const struct shoal_peer *p);

static void held_free(struct shoal_peer *p, struct held *h)
{
    if (h->fd >= 0) {
        close(h->fd);
        p->sfq_fds--;
    }
    free(h->hdr);
    free(h->payload);
    free(h);
}

/* Last step of a close: once the handles are closed and no worker job holds
 * the peer (--- dperf ---). */
static void peer_free(struct shoal_peer *p)
{
    if (p->cb->on_close)
        p->cb->on_close(p, p->reason, p->user);
    shoal_session_free(p->sess);
    shoal_frame_dec_free(&p->dec);
    free(p->hello_held);
    while (p->held) {
        struct held *next = p->held->next;
        held_free(p, p->held);
        p->held = next;
    }
    while (p->txq) {
        struct txf *next = p->txq->next;
        free(p->txq->base);
        free(p->txq);
        p->txq = next;
    }
    while (p->rxq) {
        struct rxf *next = p->rxq->next;
        free(p->rxq->buf);
        free(p->rxq);
        p->rxq = next;
    }
    while (p->sfq) {
        struct sfi *next = p->sfq->next;
        sfi_free(p, p->sfq);
        p->sfq = next;
    }
    if (p->sf_fd >= 0)
        close(p->sf_fd);
    /* What was still queued goes back to the node-wide budget. */
    if (p->ctx->budget)
        p->ctx->budget->used -= queue_load(p);
    free(p);
}

static void handle_closed(uv_handle_t *h)
{
    struct shoal_peer *p = h->data;

    if (--p->open_handles > 0 || p->works > 0)
        return;
    peer_free(p);
}

static void close_now(struct shoal_peer *p)
{
    if (!uv_is_closing((uv_handle_t *)&p->tcp))
        uv_close((uv_handle_t *)&p->tcp, handle_closed);
    if (!uv_is_closing((uv_handle_t *)&p->timer))
        uv_close((uv_handle_t *)&p->timer, handle_closed);
    if (!uv_is_closing((uv_handle_t *)&p->pace))
        uv_close((uv_handle_t *)&p->pace, handle_closed);
    if (p->sf_fd >= 0 && !uv_is_closing((uv_handle_t *)&p->sf_poll))
        uv_close((uv_handle_t *)&p->sf_poll, handle_closed);
}

static void linger_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct shoal_peer *p = h->data;

    (void)suggested;
    *buf = uv_buf_init((char *)p->rbuf, sizeof p->rbuf);
}

static void linger_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread < 0)
        close_now(s->data);
}

/* Our last frames (a BYE saying why) are out and our side is shut: closing
 * the socket now, with the peer's frames still arriving unread, would send
 * a reset, and a peer busy writing to us would see "broken pipe" and never
 * read the BYE before it (a seed banned for a rotten chunk would not learn
 * it). So what arrives is read and dropped until the peer closes too, or
 * the grace timer already running ends it. */
static void shutdown_done(uv_shutdown_t *req, int status)
{
    struct shoal_peer *p = req->data;

    if (status < 0 || uv_is_closing((uv_handle_t *)&p->tcp) ||
        uv_read_start((uv_stream_t *)&p->tcp, linger_alloc, linger_read) != 0)
        close_now(p);
}

static void grace_expired(uv_timer_t *t)
{
    close_now(t->data);
}

void shoal_peer_close(struct shoal_peer *p, const char *reason, bool flush)
{
    if (p->closing)
        return;
    p->closing = true;
    snprintf(p->reason, sizeof p->reason, "%s", reason ? reason : "closed");
    uv_timer_stop(&p->timer);
    if (p->st == ST_CONNECTING) {
        /* uv_close cancels the pending connect; its callback sees
         * UV_ECANCELED before the close callback frees us. */
        close_now(p);
        return;
    }
    uv_read_stop((uv_stream_t *)&p->tcp);
    p->shut_req.data = p;
    if (flush && (p->txq || p->sfq)) {
        /* Frames still being sealed, and frames behind a file payload, go
         * out first; whichever of txq_flush and sfq_pump empties the last
         * of the two shuts down. */
        p->flush_close = true;
        uv_timer_start(&p->timer, grace_expired, CLOSE_GRACE_MS, 0);
        return;
    }
    if (flush && p->queued > 0 &&
        uv_shutdown(&p->shut_req, (uv_stream_t *)&p->tcp, shutdown_done) == 0) {
        /* A peer that stops reading must not hold us open forever. */
        uv_timer_start(&p->timer, grace_expired, CLOSE_GRACE_MS, 0);
        return;
    }
    close_now(p);
}

static void sfq_pump(struct shoal_peer *p);

/* Ends a flushing close once neither txq nor sfq holds a frame: shuts the
 * socket down (close_now if it cannot). Returns true if it did. */
static bool shut_if_flushed(struct shoal_peer *p)
{
    if (!p->flush_close || p->txq || p->sfq)
        return false;
    p->flush_close = false;
    if (uv_is_closing((uv_handle_t *)&p->tcp) ||
        uv_shutdown(&p->shut_req, (uv_stream_t *)&p->tcp, shutdown_done) != 0)
        close_now(p);
    return true;
}

/* Memory a queued item holds beyond its wire bytes (its request struct,
 * buffer slack): counted so that a flood of tiny frames a peer provokes
 * (PONGs, REJECTs: ~31 wire bytes, ~570 in memory) meets max_queue near its
 * real size rather than at twenty times it. */
#define ITEM_COST 512

/* Sendfile items a peer may have queued, each holding a file descriptor:
 * its 32 MiB of queued chunks could otherwise hold 512 (64 KiB chunks),
 * and a few slow readers would exhaust the process's descriptors. Past it
 * chunks go through memory. */
#define SFQ_FDS_MAX 32u

static size_t queue_load(const struct shoal_peer *p)
{
    return p->queued + p->qitems * ITEM_COST;
}

/* This peer's share of the node-wide budget while the budget is spent, or
 * SIZE_MAX when there is no budget or it is not spent. */
static size_t budget_share(const struct shoal_peer *p)
{
    const struct shoal_peer_budget *b = p->ctx->budget;
    if (!b || b->max == 0 || b->used <= b->max)
        return SIZE_MAX;
    return b->max / (b->shares ? b->shares : 1);
}

/* Past what this peer may have queued: no more sends, no more reading. */
static bool q_over(const struct shoal_peer *p)
{
    size_t l = queue_load(p);
    return l > p->max_queue || l > budget_share(p);
}

/* Drained enough to read again and to take sends: half of each limit, so
 * a peer at the edge does not flip on every write. */
static bool q_low(const struct shoal_peer *p)
{
    size_t l = queue_load(p), share = budget_share(p);
    return l <= p->max_queue / 2 && (share == SIZE_MAX || l <= share / 2);
}

/* What this peer may have queued now: max_queue, or its share of the
 * node-wide budget while that is spent if less. */
static size_t q_limit(const struct shoal_peer *p)
{
    size_t share = budget_share(p);
    return p->max_queue < share ? p->max_queue : share;
}

bool shoal_peer_room(const struct shoal_peer *p, size_t bytes, size_t items)
{
    size_t l = queue_load(p), limit = q_limit(p), left;

    if (l > limit)
        return false;
    left = limit - l;
    return bytes <= left && items <= (left - bytes) / ITEM_COST;
}

static void q_pause_check(struct shoal_peer *p);

static void q_add(struct shoal_peer *p, size_t bytes)
{
    p->queued += bytes;
    p->qitems++;
    if (p->ctx->budget)
        p->ctx->budget->used += bytes + ITEM_COST;
    if (queue_load(p) > p->max_queue / 2)
        p->drain_wanted = true;
    q_pause_check(p);
}

static void q_sub(struct shoal_peer *p, size_t bytes)
{
    p->queued -= bytes;
    p->qitems--;
    if (p->ctx->budget)
        p->ctx->budget->used -= bytes + ITEM_COST;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* Reading stops while a peer's replies are past max_queue: what it sends
 * makes us queue more (PONG for PING, REJECT for a bad REQUEST, manifests),
 * so a peer that never reads would otherwise grow our memory without
 * bound. Chunk uploads are held far below max_queue by the swarm, so a
 * peer that reads is never paused. */
static void q_pause_check(struct shoal_peer *p)
{
    if (!p->q_paused && !p->closing && q_over(p)) {
        p->q_paused = true;
        p->paused_since_check = true;
        uv_read_stop((uv_stream_t *)&p->tcp);
    }
}

static void q_resume_check(struct shoal_peer *p)
{
    if (p->q_paused && !p->closing && q_low(p)) {
        p->q_paused = false;
        if (!p->read_paused && !p->rxq_paused &&
            uv_read_start((uv_stream_t *)&p->tcp, alloc_cb, read_cb) != 0)
            shoal_peer_close(p, "cannot resume reading", false);
    }
}

static void maybe_drain(struct shoal_peer *p)
{
    bool call = false;

    q_resume_check(p);
    if (p->drain_wanted && q_low(p) && !p->closing) {
        p->drain_wanted = false;
        call = true;
    }
    if (p->tx_mark && p->tx >= p->tx_mark && !p->closing) {
        p->tx_mark = 0;
        call = true;
    }
    if (call && p->cb->on_drain)
        p->cb->on_drain(p, p->user);
}

uint64_t shoal_peer_notify_written(struct shoal_peer *p)
{
    /* Everything queued now leaves before anything queued later, and each
     * byte queued is counted in tx once written: tx + queued is the count
     * at which all of it is out. */
    uint64_t mark = p->tx + p->queued;
    if (mark > p->tx && !p->closing)
        p->tx_mark = mark > p->tx_mark ? mark : p->tx_mark;
    return mark;
}

static void held_pump(struct shoal_peer *p, bool all);

static void write_done(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct shoal_peer *p = w->p;

    q_sub(p, w->bytes);
    p->tx += w->bytes;
    free(w->a);
    free(w->payload);
    free(w);
    if (status < 0 && !p->closing) {
        char why[128];
        snprintf(why, sizeof why, "write failed: %s", uv_strerror(status));
        shoal_peer_close(p, why, false);
        return;
    }
    /* a file payload may be waiting for libuv's queue to empty */
    if (p->sfq) {
        sfq_pump(p);
        return;
    }
    held_pump(p, false);
    if (!p->closing)
        maybe_drain(p);
}

/* Hands |alen| bytes at |a| (and |payload| when not NULL) to libuv; takes
 * |base|, the allocation holding |a|, and |payload|. */
static int uv_queue_bufs(struct shoal_peer *p, uint8_t *base, uint8_t *a, size_t alen,
                         uint8_t *payload, size_t plen)
{
    struct wreq *w = calloc(1, sizeof *w);
    uv_buf_t bufs[2];
    int rv;

    if (!w) {
        free(base);
        free(payload);
        return -ENOMEM;
    }
    w->p = p;
    w->a = base;
    w->payload = payload;
    w->bytes = alen + plen;
    bufs[0] = uv_buf_init((char *)a, (unsigned)alen);
    bufs[1] = uv_buf_init((char *)payload, (unsigned)plen);
    rv = uv_write(&w->req, (uv_stream_t *)&p->tcp, bufs, payload ? 2 : 1, write_done);
    if (rv < 0) {
        free(base);
        free(payload);
        free(w);
        return rv;
    }
    q_add(p, w->bytes);
    return 0;
}

/* payloads from files */
static void sfq_add(struct shoal_peer *p, struct sfi *f)
{
    if (p->sfq_tail)
        p->sfq_tail->next = f;
    else
        p->sfq = f;
    p->sfq_tail = f;
    q_add(p, f->bytes);
}

/* Queues a file CHUNK at the end of sfq: header |hdr| (taken), then |plen|
 * bytes of |fd| (taken, counted in sfq_fds) from |off|. */
static int sfq_add_file(struct shoal_peer *p, uint8_t *hdr, size_t hlen, int fd, uint64_t off,
                        size_t plen, uint32_t req_id)
{
    struct sfi *f = calloc(1, sizeof *f);

    if (!f) {
        free(hdr);
        close(fd);
        p->sfq_fds--;
        return -ENOMEM;
    }
    f->base = f->a = hdr;
    f->alen = hlen;
    f->fd = fd;
    f->off = off;
    f->left = plen;
    f->bytes = hlen + plen;
    f->req_id = req_id;
    sfq_add(p, f);
    return 0;
}

/* Writes what it can of file item |f| to socket |sock|: the header, then
 * the payload with sendfile. Returns 0 when all is sent, -EAGAIN when the
 * socket is full, or a negated errno (-EIO: the file ended early). */
static int sfi_send(struct sfi *f, int sock)
{
    while (f->adone < f->alen) {
        /* MSG_MORE: the header leaves with the payload's first bytes. */
        ssize_t n = send(sock, f->a + f->adone, f->alen - f->adone,
                         (f->left > 0 ? MSG_MORE : 0) | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        f->adone += (size_t)n;
    }
    while (f->left > 0) {
        off_t off = (off_t)f->off;
        ssize_t n = sendfile(sock, f->fd, &off, f->left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        if (n == 0)
            return -EIO;
        f->off += (uint64_t)n;
        f->left -= (size_t)n;
    }
    return 0;
}

static void sf_writable(uv_poll_t *h, int status, int events)
{
    struct shoal_peer *p = h->data;

    (void)events;
    if (status < 0 && !p->closing) {
        char why[128];
        snprintf(why, sizeof why, "write failed: %s", uv_strerror(status));
        shoal_peer_close(p, why, false);
        return;
    }
    sfq_pump(p);
}

/* Waits for the socket to take more (|on|), or stops waiting. */
static int sf_poll(struct shoal_peer *p, int sock, bool on)
{
    int rv;

    if (on == p->sf_polling)
        return 0;
    if (!on) {
        p->sf_polling = false;
        return uv_poll_stop(&p->sf_poll);
    }
    if (p->sf_fd < 0) {
        int fd = fcntl(sock, F_DUPFD_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        rv = uv_poll_init_socket(p->ctx->loop, &p->sf_poll, fd);
        if (rv != 0) {
            close(fd);
            return rv;
        }
        p->sf_fd = fd;
        p->sf_poll.data = p;
        p->open_handles++;
    }
    rv = uv_poll_start(&p->sf_poll, UV_WRITABLE, sf_writable);
    if (rv == 0)
        p->sf_polling = true;
    return rv;
}

/* Sends the items of p->sfq in order: memory items go to libuv, a file item
 * goes out itself once libuv has written everything before it. */
static void sfq_pump(struct shoal_peer *p)
{
    uv_os_fd_t sock = -1;
    bool wait = false;
    int rv = 0;

    if (p->sf_busy)
        return;
    p->sf_busy = true;
    if (uv_fileno((uv_handle_t *)&p->tcp, &sock) != 0)
        rv = -EBADF;
    while (rv == 0 && p->sfq && (!p->closing || p->flush_close) &&
           !uv_is_closing((uv_handle_t *)&p->tcp)) {
        struct sfi *f = p->sfq;

        if (f->fd >= 0) {
            if (uv_stream_get_write_queue_size((uv_stream_t *)&p->tcp) > 0)
                break; /* write_done pumps again */
            rv = sfi_send(f, sock);
            if (rv == -EAGAIN) {
                rv = 0;
                wait = true;
                break;
            }
            if (rv == 0)
                p->tx += f->bytes;
        }
        p->sfq = f->next;
        if (!p->sfq)
            p->sfq_tail = NULL;
        q_sub(p, f->bytes);
        if (f->fd < 0 && rv == 0) {
            rv = uv_queue_bufs(p, f->base, f->a, f->alen, f->payload, f->plen);
            f->base = f->payload = NULL; /* taken, also on error */
        }
        sfi_free(p, f);
    }
    if (rv == 0 && !uv_is_closing((uv_handle_t *)&p->tcp))
        rv = sf_poll(p, sock, wait);
    p->sf_busy = false;
    if (rv != 0 && !p->closing) {
        char why[128];
        snprintf(why, sizeof why, "cannot send a chunk: %s", shoal_strerror(rv));
        shoal_peer_close(p, why, false);
        return;
    }
    if (shut_if_flushed(p))
        return;
    held_pump(p, false);
    if (!p->closing)
        maybe_drain(p);
}

/* Queues |alen| bytes at |a| (and |payload| when not NULL) for writing,
 * behind any file payload still queued; takes |base|, the allocation
 * holding |a|, and |payload|. */
static int queue_bufs(struct shoal_peer *p, uint8_t *base, uint8_t *a, size_t alen,
                      uint8_t *payload, size_t plen)
{
    struct sfi *f;

    if (!p->sfq)
        return uv_queue_bufs(p, base, a, alen, payload, plen);
    f = calloc(1, sizeof *f);
    if (!f) {
        free(base);
        free(payload);
        return -ENOMEM;
    }
    f->base = base;
    f->a = a;
    f->alen = alen;
    f->payload = payload;
    f->plen = plen;
    f->fd = -1;
    f->bytes = alen + plen;
    sfq_add(p, f);
    return 0;
}

/* Queues |a| (and |payload| when not NULL) for writing; takes both. */
static int queue_write(struct shoal_peer *p, uint8_t *a, size_t alen, uint8_t *payload,
                       size_t plen)
{
    return queue_bufs(p, a, a, alen, payload, plen);
}

/* sealing on workers */
static void close_now(struct shoal_peer *p);

/* Writes the sealed frames at the head of txq, in counter order. A frame
 * that could not be sealed or written breaks the counter sequence, so the
 * connection closes. */
static void txq_flush(struct shoal_peer *p)
{
    while (p->txq && p->txq->sealed) {
        struct txf *t = p->txq;
        int rv = t->rv;

        p->txq = t->next;
        if (!p->txq)
            p->txq_tail = NULL;
        q_sub(p, t->body_len + SHOAL_FRAME_HDR_LEN + SHOAL_SESSION_TAG_LEN);
        if (rv == 0 && (!p->closing || p->flush_close) &&
            !uv_is_closing((uv_handle_t *)&p->tcp))
            rv = queue_bufs(p, t->base, t->frame, t->flen, NULL, 0);
        else
            free(t->base);
        free(t);
        if (rv != 0 && !p->closing)
            shoal_peer_close(p, "cannot seal or queue a frame", false);
    }
    shut_if_flushed(p);
}

static void seal_work(uv_work_t *w)
{
    struct txf *t = w->data;
    t->rv = shoal_session_seal_at(t->p->sess, t->ctr, t->frame, t->body_len, &t->flen);
}

static void seal_done(uv_work_t *w, int status)
{
    struct txf *t = w->data;
    struct shoal_peer *p = t->p;

    if (status != 0)
        t->rv = status;
    t->sealed = true;
    if (--p->works == 0 && p->open_handles == 0) {
        peer_free(p);
        return;
    }
    txq_flush(p);
}

/*
 * Seals and queues the frame at |frame| (header slot, |body_len| body bytes,
 * SHOAL_SESSION_TAG_LEN spare) inside |base| (taken) with the session's next
 * counter; big bodies are sealed on a worker. Only while sealing.
 */
static int txq_push(struct shoal_peer *p, uint8_t *base, uint8_t *frame, size_t body_len)
{
    struct txf *t;

    /* Nothing sealing ahead of a small frame (HAVE, REQUEST, ...): seal it
     * here, in order, without a queue entry. A failure breaks the counter
     * sequence, so the connection closes as in txq_flush. */
    if (!p->txq && body_len < SEAL_ASYNC_MIN) {
        size_t flen;
        int rv = shoal_session_seal(p->sess, frame, body_len, &flen);
        if (rv == 0 && (!p->closing || p->flush_close) &&
            !uv_is_closing((uv_handle_t *)&p->tcp))
            rv = queue_bufs(p, base, frame, flen, NULL, 0);
        else
            free(base);
        if (rv != 0 && !p->closing)
            shoal_peer_close(p, "cannot seal or queue a frame", false);
        return 0;
    }
    t = calloc(1, sizeof *t);
    if (!t) {
        free(base);
        return -ENOMEM;
    }
    t->p = p;
    t->w.data = t;
    t->base = base;
    t->frame = frame;
    t->body_len = body_len;
    t->ctr = shoal_session_seal_reserve(p->sess);
    if (p->txq_tail)
        p->txq_tail->next = t;
    else
        p->txq = t;
    p->txq_tail = t;
    q_add(p, body_len + SHOAL_FRAME_HDR_LEN + SHOAL_SESSION_TAG_LEN);
    if (body_len >= SEAL_ASYNC_MIN &&
        uv_queue_work(p->ctx->loop, &t->w, seal_work, seal_done) == 0) {
        p->works++;
        return 0;
    }
    seal_work(&t->w);
    t->sealed = true;
    txq_flush(p);
    return 0;
}

/* Queues the whole contents of |b| (taken over; |b| is left empty). */
static int queue_buf(struct shoal_peer *p, struct shoal_buf *b)
{
    size_t len = b->len;
    uint8_t *data = shoal_buf_steal(b, NULL);
    return queue_write(p, data, len, NULL, 0);
}

/* Encodes, seals and queues |m| without the ready/queue checks (handshake). */
static int send_raw(struct shoal_peer *p, const struct shoal_msg *m, size_t max_body)
{
    struct shoal_buf b;
    size_t flen;
    int rv;

    shoal_buf_init(&b, max_body + SHOAL_FRAME_HDR_LEN + SHOAL_SESSION_TAG_LEN);
    rv = shoal_msg_encode(m, &b);
    if (rv == SHOAL_ELIMIT)
        rv = SHOAL_ETOOBIG;
    if (rv == 0)
        rv = shoal_buf_reserve(&b, SHOAL_SESSION_TAG_LEN);
    /* sealed frames go through txq, behind those sealing */
    if (rv == 0 && shoal_session_send_overhead(p->sess) > 0) {
        size_t body = b.len - SHOAL_FRAME_HDR_LEN;
        uint8_t *data = shoal_buf_steal(&b, NULL);
        return txq_push(p, data, data, body);
    }
    if (rv == 0)
        rv = shoal_session_seal(p->sess, b.data, b.len - SHOAL_FRAME_HDR_LEN, &flen);
    if (rv != 0) {
        shoal_buf_free(&b);
        return rv;
    }
    return queue_write(p, shoal_buf_steal(&b, NULL), flen, NULL, 0);
}

static size_t peer_max_body(const struct shoal_peer *p)
{
    size_t m = shoal_session_peer_max_frame(p->sess);
    if (m > SHOAL_FRAME_MAX_ABS)
        m = SHOAL_FRAME_MAX_ABS;
    return m > SHOAL_SESSION_TAG_LEN ? m - SHOAL_SESSION_TAG_LEN : 0;
}

int shoal_peer_send(struct shoal_peer *p, const struct shoal_msg *m)
{
    if (p->closing || p->st != ST_READY)
        return -EPIPE;
    if (q_over(p)) {
        p->drain_wanted = true;
        return SHOAL_EBUSY;
    }
    int rv = send_raw(p, m, peer_max_body(p));
    if (rv == 0 && m->type == SHOAL_MSG_WANT_MANIFEST && p->manifests_asked < UINT32_MAX)
        p->manifests_asked++;
    if (rv == 0 && m->type == SHOAL_MSG_REQUEST && p->requests_open < UINT32_MAX)
        p->requests_open++;
    return rv;
}

int shoal_peer_send_reject(struct shoal_peer *p, uint32_t req_id, uint8_t reason,
                           uint32_t retry_ms)
{
    struct shoal_msg m;
    int rv;

    if (p->closing || p->st != ST_READY)
        return -EPIPE;
    /* Those written no longer count; each is out once tx passes its mark
     * (the queue leaves in order). */
    while (p->rej_n > 0 && p->rej_mark[p->rej_head] <= p->tx) {
        p->rej_head = (p->rej_head + 1) % REJECTS_OVER;
        p->rej_n--;
    }
    if (q_over(p) && p->rej_n >= REJECTS_OVER) {
        p->drain_wanted = true;
        return SHOAL_EBUSY;
    }
    memset(&m, 0, sizeof m);
    m.type = SHOAL_MSG_REJECT;
    m.u.reject.req_id = req_id;
    m.u.reject.reason = reason;
    m.u.reject.retry_after_ms = retry_ms;
    rv = send_raw(p, &m, peer_max_body(p));
    /* One sent within the limits while the ring is full goes unrecorded:
     * only those past the limits need counting, and each of them is. */
    if (rv == 0 && p->rej_n < REJECTS_OVER) {
        p->rej_mark[(p->rej_head + p->rej_n) % REJECTS_OVER] = p->tx + p->queued;
        p->rej_n++;
    }
    return rv;
}

/* Seals (when the session is sealed) and queues CHUNK header |hdr| and
 * |payload|; takes both. --- dperf --- |hdr| NULL: |payload| is a buffer of
 * shoal_peer_send_chunk_buf() whose headroom already holds the |hlen|
 * header bytes. */
static int emit_chunk(struct shoal_peer *p, uint8_t *hdr, size_t hlen, uint8_t *payload,
                      size_t plen)
{
    uint8_t *frame = NULL;
    int rv;

    if (!hdr) {
        frame = payload + SHOAL_PEER_CHUNK_HEADROOM - hlen;
        if (shoal_session_send_overhead(p->sess) == 0)
            return queue_bufs(p, payload, frame, hlen + plen, NULL, 0);
        return txq_push(p, payload, frame, hlen - SHOAL_FRAME_HDR_LEN + plen);
    }
    if (shoal_session_send_overhead(p->sess) == 0) {
        /* Plain: header and payload go out as two buffers, no copy. */
        return queue_write(p, hdr, hlen, payload, plen);
    }
    /* Sealed: the AEAD needs the body in one piece. */
    frame = malloc(hlen + plen + SHOAL_SESSION_TAG_LEN);
    if (!frame) {
        rv = -ENOMEM;
        goto fail;
    }
    memcpy(frame, hdr, hlen);
    memcpy(frame + hlen, payload, plen);
    free(hdr);
    free(payload);
    return txq_push(p, frame, frame, hlen - SHOAL_FRAME_HDR_LEN + plen);
fail:
    free(frame);
    free(hdr);
    free(payload);
    return rv;
}

/* rate limits */
static void on_pace(uv_timer_t *t);

/* Bytes on their way to the socket: queued, less the held CHUNKs. */
static size_t wire_queued(const struct shoal_peer *p)
{
    return p->queued - p->held_bytes;
}

/* Arms the pace timer for the earliest of: the next held CHUNK's upload
 * budget (while the wire takes more: else a write's completion sends it),
 * the end of a read pause. */
static void arm_pace(struct shoal_peer *p)
{
    uint64_t now = uv_now(p->ctx->loop), w = UINT64_MAX;

    if (p->closing)
        return;
    if (p->held && wire_queued(p) < WIRE_AHEAD)
        w = shoal_rate_pair_wait(&p->up, now);
    if (p->read_paused) {
        uint64_t d = shoal_rate_pair_wait(&p->down, now);
        w = d < w ? d : w;
    }
    if (w != UINT64_MAX)
        uv_timer_start(&p->pace, on_pace, w ? w : 1, 0);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Takes |h| off the held list (|prev|: the entry before it, NULL for the
 * head) and out of the queue counts. */
static void held_unlink(struct shoal_peer *p, struct held *prev, struct held *h)
{
    if (prev)
        prev->next = h->next;
    else
        p->held = h->next;
    if (p->held_tail == h)
        p->held_tail = prev;
    p->held_bytes -= h->hlen + h->plen;
    q_sub(p, h->hlen + h->plen);
}

static int sfq_add_file(struct shoal_peer *p, uint8_t *hdr, size_t hlen, int fd, uint64_t off,
                        size_t plen, uint32_t req_id);

/* Sends held CHUNKs on while the upload budget allows and the wire has
 * room (all of them with |all|, the budget and room aside), then arms the
 * pace timer for the rest. A file CHUNK goes on to sfq, and sfq_pump sends
 * it; that pump ends by calling here again, and the call inside it leaves
 * the rest to this loop (no recursion per chunk). */
static void held_pump(struct shoal_peer *p, bool all)
{
    uint64_t now = uv_now(p->ctx->loop);
    bool files;

    if (p->held_busy)
        return;
    p->held_busy = true;
    do {
        files = false;
        while (p->held && !p->closing &&
               (all || (wire_queued(p) < WIRE_AHEAD && shoal_rate_pair_wait(&p->up, now) == 0))) {
            struct held *h = p->held;
            int rv;
            held_unlink(p, NULL, h);
            shoal_rate_pair_take(&p->up, now, h->hlen + h->plen);
            if (h->fd >= 0) {
                rv = sfq_add_file(p, h->hdr, h->hlen, h->fd, h->off, h->plen, h->req_id);
                files = true;
            } else {
                rv = emit_chunk(p, h->hdr, h->hlen, h->payload, h->plen);
            }
            if (rv != 0 && !p->closing)
                shoal_peer_close(p, "cannot queue a chunk", false);
            free(h);
        }
        if (files && !p->closing)
            sfq_pump(p);
    } while (files && !p->closing);
    p->held_busy = false;
    arm_pace(p);
}

static void on_pace(uv_timer_t *t)
{
    struct shoal_peer *p = t->data;
    uint64_t now = uv_now(p->ctx->loop);

    if (p->read_paused && !p->closing && shoal_rate_pair_wait(&p->down, now) == 0) {
        p->read_paused = false;
        if (!p->rxq_paused && !p->q_paused &&
            uv_read_start((uv_stream_t *)&p->tcp, alloc_cb, read_cb) != 0)
            shoal_peer_close(p, "cannot resume reading", false);
    }
    held_pump(p, false);
}

/* Holds CHUNK |hdr| + |payload| (taken), answering |req_id|, until the
 * upload budget allows and the wire has room; |payload| NULL: a file
 * CHUNK, |plen| bytes of |fd| (taken, counted in sfq_fds) from |off|. */
static int hold_chunk_at(struct shoal_peer *p, uint8_t *hdr, size_t hlen, uint8_t *payload,
                         int fd, uint64_t off, size_t plen, uint32_t req_id)
{
    struct held *h = calloc(1, sizeof *h);

    if (!h) {
        free(hdr);
        free(payload);
        if (fd >= 0) {
            close(fd);
            p->sfq_fds--;
        }
        return -ENOMEM;
    }
    h->hdr = hdr;
    h->hlen = hlen;
    h->payload = payload;
    h->plen = plen;
    h->fd = fd;
    h->off = off;
    h->req_id = req_id;
    if (p->held_tail)
        p->held_tail->next = h;
    else
        p->held = h;
    p->held_tail = h;
    p->held_bytes += hlen + plen;
    q_add(p, hlen + plen);
    arm_pace(p);
    return 0;
}

static int hold_chunk(struct shoal_peer *p, uint8_t *hdr, size_t hlen, uint8_t *payload,
                      size_t plen, uint32_t req_id)
{
    return hold_chunk_at(p, hdr, hlen, payload, -1, 0, plen, req_id);
}

/* Whether a CHUNK sent now must wait in |held|: others wait there (they go
 * first), the upload budget is spent, or the wire holds WIRE_AHEAD. */
static bool must_hold(struct shoal_peer *p, uint64_t now)
{
    return p->held || wire_queued(p) >= WIRE_AHEAD || shoal_rate_pair_wait(&p->up, now) > 0;
}

size_t shoal_peer_withdraw_chunk(struct shoal_peer *p, uint32_t req_id)
{
    struct held *prev = NULL;
    struct sfi *fprev = NULL;
    size_t n;

    for (struct held *h = p->held; h; prev = h, h = h->next) {
        if (h->req_id != req_id)
            continue;
        held_unlink(p, prev, h);
        n = h->plen;
        held_free(p, h);
        arm_pace(p);
        return n;
    }
    /* A file item not started (sfq_pump is not running: we are not in
     * it). What waited behind it goes when the write or the socket
     * readiness it waited for comes, as before. */
    for (struct sfi *f = p->sfq; f; fprev = f, f = f->next) {
        if (f->fd < 0 || f->req_id != req_id)
            continue;
        if (f->adone > 0 || p->sf_busy)
            return 0;
        if (fprev)
            fprev->next = f->next;
        else
            p->sfq = f->next;
        if (p->sfq_tail == f)
            p->sfq_tail = fprev;
        q_sub(p, f->bytes);
        n = f->left;
        sfi_free(p, f);
        return n;
    }
    return 0;
}

/* What every chunk send checks and builds first: a ready peer with room in
 * its queue, and the CHUNK frame's header (into |b|, its length in *hlen)
 * for a payload that fits the peer's largest frame. Returns 0, -EPIPE,
 * SHOAL_EBUSY, -EINVAL, SHOAL_ETOOBIG or -ENOMEM. */
static int chunk_header(struct shoal_peer *p, const struct shoal_msg_chunk *c, struct shoal_buf *b,
                        size_t *hlen)
{
    int rv;

    if (p->closing || p->st != ST_READY)
        return -EPIPE;
    if (q_over(p)) {
        p->drain_wanted = true;
        return SHOAL_EBUSY;
    }
    rv = shoal_msg_encode_chunk_header(c, b);
    if (rv == SHOAL_ELIMIT) /* cannot happen with a valid |c| */
        return -EINVAL;
    if (rv != 0)
        return rv;
    *hlen = b->len;
    if (*hlen - SHOAL_FRAME_HDR_LEN + c->payload.len > peer_max_body(p))
        return SHOAL_ETOOBIG;
    return 0;
}

int shoal_peer_send_chunk(struct shoal_peer *p, const struct shoal_msg_chunk *c,
                          uint8_t *payload)
{
    struct shoal_buf b;
    size_t plen = c->payload.len, hlen;
    uint64_t now;
    int rv;

    shoal_buf_init(&b, 256);
    rv = chunk_header(p, c, &b, &hlen);
    if (rv != 0)
        goto fail;
    /* rate limits */
    now = uv_now(p->ctx->loop);
    if (must_hold(p, now))
        return hold_chunk(p, shoal_buf_steal(&b, NULL), hlen, payload, plen, c->req_id);
    shoal_rate_pair_take(&p->up, now, hlen + plen);
    return emit_chunk(p, shoal_buf_steal(&b, NULL), hlen, payload, plen);
fail:
    free(payload);
    shoal_buf_free(&b);
    return rv;
}

int shoal_peer_send_chunk_buf(struct shoal_peer *p, const struct shoal_msg_chunk *c,
                              uint8_t *buf)
{
    struct shoal_buf b;
    size_t plen = c->payload.len, hlen;
    uint64_t now;
    int rv;

    shoal_buf_init(&b, SHOAL_PEER_CHUNK_HEADROOM);
    rv = chunk_header(p, c, &b, &hlen);
    if (rv != 0)
        goto fail;
    /* The header goes right before the payload: one buffer, no copy. */
    memcpy(buf + SHOAL_PEER_CHUNK_HEADROOM - hlen, b.data, hlen);
    shoal_buf_free(&b);
    now = uv_now(p->ctx->loop);
    if (must_hold(p, now))
        return hold_chunk(p, NULL, hlen, buf, plen, c->req_id);
    shoal_rate_pair_take(&p->up, now, hlen + plen);
    return emit_chunk(p, NULL, hlen, buf, plen);
fail:
    free(buf);
    shoal_buf_free(&b);
    return rv;
}

bool shoal_peer_can_sendfile(const struct shoal_peer *p)
{
    return p->st == ST_READY && !p->closing && shoal_session_send_overhead(p->sess) == 0 &&
           p->up.own.rate == 0 && (!p->up.global || p->up.global->rate == 0) &&
           p->sfq_fds < SFQ_FDS_MAX;
}

int shoal_peer_send_chunk_file(struct shoal_peer *p, const struct shoal_msg_chunk *c, int fd,
                               uint64_t off)
{
    struct shoal_buf b;
    size_t plen = c->payload.len, hlen;
    int rv;

    shoal_buf_init(&b, SHOAL_PEER_CHUNK_HEADROOM);
    if (p->closing || p->st != ST_READY) {
        rv = -EPIPE;
        goto fail;
    }
    if (!shoal_peer_can_sendfile(p)) {
        rv = -ENOTSUP;
        goto fail;
    }
    rv = chunk_header(p, c, &b, &hlen);
    if (rv != 0)
        goto fail;
    p->sfq_fds++;
    /* Behind CHUNKs held in memory (waiting for room on the wire): it would
     * otherwise leave before them, and with file CHUNKs keeping the wire
     * full a chunk read into memory (one that compresses, or was not all
     * in the page cache) could wait, its buffer held, until the
     * requester's time-out. A requester matches answers by request id, but
     * asks in the order it wants them (its loader's file first). */
    if (p->held)
        return hold_chunk_at(p, shoal_buf_steal(&b, NULL), hlen, NULL, fd, off, plen, c->req_id);
    rv = sfq_add_file(p, shoal_buf_steal(&b, NULL), hlen, fd, off, plen, c->req_id);
    if (rv == 0)
        sfq_pump(p);
    return rv;
fail:
    close(fd);
    shoal_buf_free(&b);
    return rv;
}

void shoal_peer_bye(struct shoal_peer *p, const char *reason)
{
    shoal_peer_bye_chunk(p, reason, NULL, 0);
}

void shoal_peer_bye_chunk(struct shoal_peer *p, const char *reason, const uint8_t *manifest_id,
                          uint32_t chunk)
{
    struct shoal_msg m;

    if (p->closing)
        return;
    memset(&m, 0, sizeof m);
    m.type = SHOAL_MSG_BYE;
    m.u.bye.text.p = reason;
    m.u.bye.text.len = (uint32_t)strnlen(reason, SHOAL_MSG_REASON_MAX);
    if (manifest_id) {
        m.u.bye.has_chunk = true;
        memcpy(m.u.bye.manifest_id, manifest_id, SHOAL_MSG_KEY_LEN);
        m.u.bye.chunk_index = chunk;
    }
    /* CHUNKs held back only for room on the wire (no upload cap) would have
     * been queued ahead of the BYE before WIRE_AHEAD: they still are. Those
     * over the upload budget are dropped with the connection, as ever. */
    if (p->held && p->up.own.rate == 0 && (!p->up.global || p->up.global->rate == 0))
        held_pump(p, true);
    /* Before the handshake the BYE goes out plain: it is the one thing a
     * refused peer is told. */
    if (p->st != ST_CONNECTING)
        (void)send_raw(p, &m, SHOAL_FRAME_MAX_PREAUTH);
    shoal_peer_close(p, reason, true);
}

static void handshake_expired(uv_timer_t *t)
{
    struct shoal_peer *p = t->data;
    shoal_peer_close(p, "handshake timed out", false);
}

static void fail_handshake(struct shoal_peer *p, const char *fmt, const char *detail)
{
    char why[320];
    snprintf(why, sizeof why, fmt, detail);
    LOG_W("peer %s refused: %s", p->name, why);
    shoal_peer_bye(p, why);
}

/* A BYE during the handshake carries the peer's reason for refusing us. */
static void peer_said_bye(struct shoal_peer *p, const struct shoal_msg *m)
{
    char why[SHOAL_MSG_REASON_MAX + 32];
    snprintf(why, sizeof why, "peer said bye: %.*s", (int)m->u.bye.text.len, m->u.bye.text.p);
    LOG_W("peer %s refused us: %.*s", p->name, (int)m->u.bye.text.len, m->u.bye.text.p);
    shoal_peer_close(p, why, false);
}

/* Seconds of the wall clock credentials count in. The handshake's check,
 * the live session's check and its timer all read CLOCK_REALTIME: time()
 * may lag it by a tick, and then a redial in the expiry's first
 * milliseconds was let in after its session had been closed for it (and
 * the timer re-armed at 0 ms until time() caught up). */
static uint64_t wall_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec;
}

static void on_hello_frame(struct shoal_peer *p, const uint8_t *body, size_t len)
{
    struct shoal_msg m;
    struct shoal_buf b;
    char why[256] = "";
    const char *veto;
    int rv;

    rv = shoal_msg_decode(&m, body, len);
    if (rv != 0) {
        fail_handshake(p, "malformed HELLO: %s", shoal_strerror(rv));
        return;
    }
    if (m.type == SHOAL_MSG_BYE) {
        peer_said_bye(p, &m);
        return;
    }
    if (m.type != SHOAL_MSG_HELLO) {
        fail_handshake(p, "expected HELLO, got %s", shoal_msg_type_name(m.type));
        return;
    }
    /* Checking the credential and answering is the costly part, and a
     * captured HELLO passes it: the owner may refuse before (budgets). */
    veto = !p->initiator && p->cb->before_hello ? p->cb->before_hello(p, p->user) : NULL;
    if (veto) {
        shoal_peer_bye(p, veto);
        return;
    }
    rv = shoal_session_on_hello(p->sess, &m.u.hello, body, len, p->ctx->cluster_keys, wall_s(),
                                why, sizeof why);
    if (rv != 0) {
        fail_handshake(p, "%s", why);
        return;
    }
    veto = p->cb->on_hello ? p->cb->on_hello(p, p->user) : NULL;
    if (veto) {
        fail_handshake(p, "%s", veto);
        return;
    }
    if (p->hello_held) {
        rv = queue_write(p, p->hello_held, p->hello_held_len, NULL, 0);
        p->hello_held = NULL;
        if (rv != 0) {
            fail_handshake(p, "cannot answer HELLO: %s", shoal_strerror(rv));
            return;
        }
    }
    shoal_buf_init(&b, 256);
    rv = shoal_session_auth(p->sess, &b);
    if (rv == 0)
        rv = queue_buf(p, &b);
    else
        shoal_buf_free(&b);
    if (rv != 0) {
        fail_handshake(p, "cannot answer HELLO: %s", shoal_strerror(rv));
        return;
    }
    p->st = ST_AUTH;
}

/*
 * The handshake checks the peer's credential once; a session kept open past
 * the credential's end would go on serving a node the cluster no longer
 * vouches for. Returns true, the session closing, once the credential has
 * expired (from its expiry second on, as shoal_cred_verify counts).
 */
static bool cred_ended(struct shoal_peer *p)
{
    char hex[17];

    if (wall_s() < shoal_session_peer_expires(p->sess))
        return false;
    shoal_hex(hex, shoal_session_peer_pk(p->sess), 8);
    LOG_W("peer %s: credential of node %s expired, closing", p->name, hex);
    /* A BYE would go out behind the frames already queued, chunks the
     * session must no longer send: with any queued, drop them unsent. */
    if (p->queued == 0)
        shoal_peer_bye(p, "credential expired");
    else
        shoal_peer_close(p, "credential expired", false);
    return true;
}

static void arm_cred_timer(struct shoal_peer *p);

/* An authenticated peer that sends nothing, or a frame a byte at a time,
 * holds one of --max-peers for as long as it likes: PINGed when quiet,
 * closed when it stays silent or trickles. Returns false once closing. */
static bool check_alive(struct shoal_peer *p)
{
    uint64_t now = uv_now(p->ctx->loop), since = now - p->check_ms;
    uint64_t got = p->raw_rx - p->check_raw_rx;
    uint64_t idle = p->ctx->idle_ms ? p->ctx->idle_ms : IDLE_MS_DEFAULT;
    const uint8_t *head;
    size_t held;
    char why[128];

    if (now - p->last_rx_ms >= idle) {
        /* Not read because it reads none of what we send (our queue to it
         * full) is no better than silent: it would hold its slot for ever. */
        snprintf(why, sizeof why, "nothing received for %llu s (%s)",
                 (unsigned long long)((now - p->last_rx_ms) / 1000),
                 p->q_paused ? "it reads nothing of what this node sends"
                             : "a PING unanswered");
        LOG_W("peer %s: %s, closing", p->name, why);
        shoal_peer_bye(p, why);
        return false;
    }
    if (now - p->last_rx_ms >= idle / 3) {
        struct shoal_msg m;
        memset(&m, 0, sizeof m);
        m.type = SHOAL_MSG_PING;
        (void)shoal_peer_send(p, &m);
    }
    /* Only while we read, the whole time since the last check: a pause of
     * ours (rate limit, full queues) is not the peer trickling. */
    if (shoal_frame_dec_partial(&p->dec, &head, &held, NULL) > 0 && !p->read_paused &&
        !p->q_paused && !p->rxq_paused && !p->paused_since_check && since > 0 &&
        got * 1000 < TRICKLE_BPS * since)
        p->trickles++;
    else
        p->trickles = 0;
    p->paused_since_check = false;
    p->check_ms = now;
    p->check_raw_rx = p->raw_rx;
    if (p->trickles >= TRICKLE_CHECKS) {
        snprintf(why, sizeof why, "a frame trickles in (%llu bytes in the last %llu s)",
                 (unsigned long long)got, (unsigned long long)(since / 1000));
        LOG_W("peer %s: %s, closing", p->name, why);
        shoal_peer_close(p, why, false);
        return false;
    }
    return true;
}

static void cred_timer_cb(uv_timer_t *t)
{
    struct shoal_peer *p = t->data;

    if (!p->closing && !cred_ended(p) && check_alive(p))
        arm_cred_timer(p);
}

/* Wakes at the peer's credential end (by the wall clock, as the credential
 * counts), or in CRED_CHECK_MAX_MS if that is later. */
static void arm_cred_timer(struct shoal_peer *p)
{
    uint64_t idle = p->ctx->idle_ms ? p->ctx->idle_ms : IDLE_MS_DEFAULT;
    uint64_t check = idle / 9 < CRED_CHECK_MAX_MS ? idle / 9 : CRED_CHECK_MAX_MS;
    uint64_t end = shoal_session_peer_expires(p->sess), now_ms, delay = check;
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    /* The first test keeps end * 1000 from overflowing. */
    if (end <= (uint64_t)ts.tv_sec + check / 1000)
        delay = end * 1000 > now_ms ? end * 1000 - now_ms : 0;
    uv_timer_start(&p->timer, cred_timer_cb, delay, 0);
}

static void on_auth_frame(struct shoal_peer *p, const uint8_t *body, size_t len)
{
    struct shoal_msg m;
    char hex[17];
    int rv;

    rv = shoal_msg_decode(&m, body, len);
    if (rv != 0) {
        fail_handshake(p, "malformed HELLO_AUTH: %s", shoal_strerror(rv));
        return;
    }
    if (m.type == SHOAL_MSG_BYE) {
        peer_said_bye(p, &m);
        return;
    }
    if (m.type != SHOAL_MSG_HELLO_AUTH) {
        fail_handshake(p, "expected HELLO_AUTH, got %s", shoal_msg_type_name(m.type));
        return;
    }
    rv = shoal_session_on_auth(p->sess, &m.u.hello_auth);
    if (rv != 0) {
        fail_handshake(p, "handshake signature: %s", shoal_strerror(rv));
        return;
    }
    shoal_frame_dec_set_max(&p->dec, p->ctx->local.max_frame ? p->ctx->local.max_frame
                                                             : SHOAL_FRAME_MAX_AUTH);
    /* an authenticated peer's chunk frames get their whole
     * buffer at once: one allocation, which the owner may then take. */
    shoal_frame_dec_set_prealloc(&p->dec, SHOAL_FRAME_MAX_AUTH);
    shoal_frame_dec_set_alloc(&p->dec, shoal_peer_buf_alloc);
    p->st = ST_READY;
    p->last_rx_ms = p->check_ms = uv_now(p->ctx->loop);
    p->check_raw_rx = p->raw_rx;
    arm_cred_timer(p); /* replaces the handshake deadline */
    shoal_hex(hex, shoal_session_peer_pk(p->sess), 8);
    LOG_I("peer %s authenticated: node %s zone '%s' listen %s cipher %s", p->name, hex,
          shoal_session_peer_zone(p->sess), shoal_session_peer_addr(p->sess),
          shoal_session_cipher(p->sess));
    if (p->cb->on_ready)
        p->cb->on_ready(p, p->user);
}

/* Decodes an opened body and hands the message on. */
static void dispatch(struct shoal_peer *p, uint8_t *body, size_t plain)
{
    struct shoal_msg m;
    char why[160];
    int rv;

    /* The timer ends an idle session; this ends a busy one on time even if
     * the wall clock moved ahead of the timer. */
    if (cred_ended(p))
        return;
    rv = shoal_msg_decode(&m, body, plain);
    if (rv != 0) {
        snprintf(why, sizeof why, "malformed message: %s", shoal_strerror(rv));
        LOG_W("peer %s: %s, closing", p->name, why);
        shoal_peer_close(p, why, false);
        return;
    }
    switch (m.type) {
    case SHOAL_MSG_PING:
        m.type = SHOAL_MSG_PONG;
        (void)shoal_peer_send(p, &m);
        break;
    case SHOAL_MSG_BYE:
        snprintf(why, sizeof why, "peer said bye: %.*s", (int)m.u.bye.text.len,
                 m.u.bye.text.p);
        LOG_I("peer %s: %s", p->name, why);
        /* A BYE naming a chunk (the peer banned us for its bytes) goes to
         * the owner too, before the close, so it can check its copy. */
        if (m.u.bye.has_chunk && p->cb->on_msg)
            p->cb->on_msg(p, &m, p->user);
        shoal_peer_close(p, why, false);
        break;
    case SHOAL_MSG_HELLO:
    case SHOAL_MSG_HELLO_AUTH:
        shoal_peer_close(p, "handshake message after the handshake", false);
        break;
    case SHOAL_MSG_MANIFEST_DATA:
        /* Each WANT_MANIFEST earns one answer: more is a peer making us
         * hash whatever it sends, as fast as it can send it. */
        if (p->manifests_asked == 0) {
            LOG_W("peer %s sent a manifest this node did not ask it for, closing", p->name);
            shoal_peer_bye(p, "MANIFEST_DATA not asked for");
            break;
        }
        p->manifests_asked--;
        if (p->cb->on_msg)
            p->cb->on_msg(p, &m, p->user);
        break;
    case SHOAL_MSG_CHUNK:
    case SHOAL_MSG_REJECT:
        /* An answer to a request cancelled or timed out is still one of
         * ours; more answers than requests are chunks nobody asked for. */
        if (p->requests_open == 0) {
            LOG_W("peer %s sent a %s this node did not ask for (more answers than requests "
                  "on this connection), closing", p->name, shoal_msg_type_name(m.type));
            shoal_peer_bye(p, m.type == SHOAL_MSG_CHUNK ? "CHUNK not asked for"
                                                        : "REJECT of no request");
            break;
        }
        p->requests_open--;
        if (p->cb->on_msg)
            p->cb->on_msg(p, &m, p->user);
        break;
    default:
        if (p->cb->on_msg)
            p->cb->on_msg(p, &m, p->user);
        break;
    }
}

/* opening on workers */
static void frame_unverified(struct shoal_peer *p)
{
    LOG_W("peer %s: frame fails authentication, closing", p->name);
    shoal_peer_close(p, "sealed frame does not verify", false);
}

/* Dispatches the opened frames at the head of rxq, in wire order. */
static void rxq_flush(struct shoal_peer *p)
{
    while (p->rxq && p->rxq->opened && !p->closing) {
        struct rxf *r = p->rxq;

        p->rxq = r->next;
        if (!p->rxq)
            p->rxq_tail = NULL;
        p->rxq_bytes -= r->len;
        if (r->rv != 0) {
            frame_unverified(p);
        } else {
            p->rx_owned = r->buf;
            dispatch(p, r->buf, r->plain);
            r->buf = p->rx_owned; /* NULL when the owner took it */
            p->rx_owned = NULL;
        }
        free(r->buf);
        free(r);
    }
    if (p->rxq_paused && p->rxq_bytes <= RXQ_MAX_BYTES / 2 && !p->closing) {
        p->rxq_paused = false;
        if (!p->read_paused && !p->q_paused &&
            uv_read_start((uv_stream_t *)&p->tcp, alloc_cb, read_cb) != 0)
            shoal_peer_close(p, "cannot resume reading", false);
    }
}

static void open_work(uv_work_t *w)
{
    struct rxf *r = w->data;
    r->rv = shoal_session_open_at(r->p->sess, r->ctr, r->buf, r->len, &r->plain);
}

static void open_done(uv_work_t *w, int status)
{
    struct rxf *r = w->data;
    struct shoal_peer *p = r->p;

    if (status != 0)
        r->rv = status;
    r->opened = true;
    if (--p->works == 0 && p->open_handles == 0) {
        peer_free(p);
        return;
    }
    rxq_flush(p);
}

/* Queues sealed body |body|/|len| (the decoder's buffer is taken, else it is
 * copied) with the next receive counter. */
static void rxq_push(struct shoal_peer *p, uint8_t *body, size_t len)
{
    struct rxf *r = calloc(1, sizeof *r);
    uint8_t *buf = r ? shoal_frame_dec_body_take(&p->dec, body) : NULL;

    if (r && !buf && (buf = malloc(len)) != NULL)
        memcpy(buf, body, len);
    if (!r || !buf) {
        free(r);
        shoal_peer_close(p, "out of memory", false);
        return;
    }
    r->p = p;
    r->w.data = r;
    r->buf = buf;
    r->len = len;
    r->ctr = shoal_session_open_reserve(p->sess);
    if (p->rxq_tail)
        p->rxq_tail->next = r;
    else
        p->rxq = r;
    p->rxq_tail = r;
    p->rxq_bytes += len;
    if (len >= SEAL_ASYNC_MIN &&
        uv_queue_work(p->ctx->loop, &r->w, open_work, open_done) == 0) {
        p->works++;
    } else {
        open_work(&r->w);
        r->opened = true;
        rxq_flush(p);
    }
    if (p->rxq_bytes > RXQ_MAX_BYTES && !p->rxq_paused && !p->closing) {
        uv_read_stop((uv_stream_t *)&p->tcp);
        p->rxq_paused = true;
        p->paused_since_check = true;
    }
}

static void on_ready_frame(struct shoal_peer *p, uint8_t *body, size_t len)
{
    size_t plain;

    if (shoal_session_encrypted(p->sess) && (p->rxq || len >= SEAL_ASYNC_MIN)) {
        rxq_push(p, body, len);
        return;
    }
    if (shoal_session_open(p->sess, body, len, &plain) != 0) {
        frame_unverified(p);
        return;
    }
    p->rx_body = body;
    dispatch(p, body, plain);
    p->rx_body = NULL;
}

uint8_t *shoal_peer_take_body(struct shoal_peer *p)
{
    uint8_t *b = p->rx_owned;

    if (b)
        p->rx_owned = NULL;
    else if (p->rx_body)
        b = shoal_frame_dec_body_take(&p->dec, p->rx_body);
    p->rx_body = NULL;
    return b;
}

static int on_frame(void *user, const uint8_t *cbody, size_t len)
{
    struct shoal_peer *p = user;
    /* The body lies in our read buffer or the decoder's, both ours and
     * writable: opening a sealed body in place saves a copy per chunk. */
    uint8_t *body = (uint8_t *)cbody;

    if (p->closing)
        return 1;
    p->rx += len + SHOAL_FRAME_HDR_LEN;
    switch (p->st) {
    case ST_HELLO: on_hello_frame(p, body, len); break;
    case ST_AUTH: on_auth_frame(p, body, len); break;
    case ST_READY: on_ready_frame(p, body, len); break;
    default: shoal_peer_close(p, "frame before connect", false); break;
    }
    return p->closing ? 1 : 0;
}

static const struct shoal_frame_cb frame_cb = {.on_frame = on_frame};

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct shoal_peer *p = h->data;
    uint8_t *room;
    size_t n;

    if (shoal_frame_dec_body_left(&p->dec) >= DIRECT_READ_MIN &&
        shoal_frame_dec_body_buf(&p->dec, &room, &n) == 0 && n > 0) {
        *buf = uv_buf_init((char *)room, (unsigned)n);
        return;
    }
    *buf = uv_buf_init((char *)p->rbuf, sizeof p->rbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct shoal_peer *p = s->data;
    size_t consumed;
    char why[160];
    int rv;

    if (p->closing)
        return;
    if (nread < 0) {
        snprintf(why, sizeof why, "%s", nread == UV_EOF ? "connection closed by peer"
                                                        : uv_strerror((int)nread));
        shoal_peer_close(p, why, false);
        return;
    }
    if (nread == 0)
        return;
    p->raw_rx += (uint64_t)nread;
    p->last_rx_ms = uv_now(p->ctx->loop);
    if ((uint8_t *)buf->base != p->rbuf)
        rv = shoal_frame_dec_body_commit(&p->dec, (size_t)nread, &frame_cb, p);
    else
        rv = shoal_frame_dec_feed(&p->dec, p->rbuf, (size_t)nread, &consumed, &frame_cb, p);
    if (rv < 0 && !p->closing) {
        snprintf(why, sizeof why, "bad frame: %s", shoal_strerror(rv));
        LOG_W("peer %s: %s, closing", p->name, why);
        shoal_peer_close(p, why, false);
    }
    /* rate limits */
    if (!p->closing && p->st == ST_READY) {
        uint64_t now = uv_now(p->ctx->loop);
        shoal_rate_pair_take(&p->down, now, (uint64_t)nread);
        if (shoal_rate_pair_wait(&p->down, now) > 0) {
            uv_read_stop((uv_stream_t *)&p->tcp);
            p->read_paused = true;
            p->paused_since_check = true;
            arm_pace(p);
        }
    }
}

/* True for 127.0.0.0/8, ::1 and IPv4-mapped loopback. */
static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

/* Decides p->local from both ends of the connected socket. */
static void note_locality(struct shoal_peer *p)
{
    struct sockaddr_storage me, them;
    int ml = sizeof me, tl = sizeof them;

    p->local = false;
    if (uv_tcp_getsockname(&p->tcp, (struct sockaddr *)&me, &ml) != 0 ||
        uv_tcp_getpeername(&p->tcp, (struct sockaddr *)&them, &tl) != 0 ||
        me.ss_family != them.ss_family)
        return;
    if (is_loopback(&them))
        p->local = true;
    else if (them.ss_family == AF_INET)
        p->local = ((struct sockaddr_in *)&me)->sin_addr.s_addr ==
                   ((struct sockaddr_in *)&them)->sin_addr.s_addr;
    else if (them.ss_family == AF_INET6)
        p->local = memcmp(&((struct sockaddr_in6 *)&me)->sin6_addr,
                          &((struct sockaddr_in6 *)&them)->sin6_addr,
                          sizeof(struct in6_addr)) == 0;
}

static int start(struct shoal_peer *p)
{
    struct shoal_buf b;
    int rv;

    note_locality(p);
    shoal_buf_init(&b, SHOAL_FRAME_MAX_PREAUTH);
    rv = shoal_session_hello(p->sess, &b);
    if (rv == 0 && !p->initiator) {
        p->hello_held_len = b.len;
        p->hello_held = shoal_buf_steal(&b, NULL);
    } else if (rv == 0) {
        rv = queue_buf(p, &b);
    } else {
        shoal_buf_free(&b);
    }
    if (rv == 0)
        rv = uv_read_start((uv_stream_t *)&p->tcp, alloc_cb, read_cb);
    if (rv == 0)
        p->st = ST_HELLO;
    return rv;
}

static void connected(uv_connect_t *req, int status)
{
    struct shoal_peer *p = req->data;
    char why[160];
    int rv;

    if (p->closing)
        return;
    if (status < 0) {
        snprintf(why, sizeof why, "connect failed: %s", uv_strerror(status));
        shoal_peer_close(p, why, false);
        return;
    }
    rv = start(p);
    if (rv != 0) {
        snprintf(why, sizeof why, "cannot start handshake: %s", shoal_strerror(rv));
        shoal_peer_close(p, why, false);
    }
}

static int peer_alloc(struct shoal_peer **out, const struct shoal_peer_ctx *ctx,
                      const struct shoal_peer_cb *cb, void *user, bool initiator)
{
    struct shoal_peer *p = calloc(1, sizeof *p);
    int rv;

    if (!p)
        return -ENOMEM;
    rv = shoal_session_new(&p->sess, initiator, &ctx->local);
    if (rv != 0) {
        free(p);
        return rv;
    }
    p->ctx = ctx;
    p->cb = cb;
    p->user = user;
    p->initiator = initiator;
    p->id = next_peer_id++;
    p->max_queue = ctx->max_queue ? ctx->max_queue : (64u << 20);
    p->st = ST_CONNECTING;
    p->sf_fd = -1;
    shoal_frame_dec_init(&p->dec, SHOAL_FRAME_MAX_PREAUTH);
    uv_tcp_init(ctx->loop, &p->tcp);
    uv_timer_init(ctx->loop, &p->timer);
    p->tcp.data = p->timer.data = p->conn_req.data = p;
    p->open_handles = 2;
    /* rate limits */
    uv_timer_init(ctx->loop, &p->pace);
    p->pace.data = p;
    p->open_handles++;
    shoal_bucket_init(&p->up.own, ctx->rate ? ctx->rate->peer_up : 0, uv_now(ctx->loop));
    shoal_bucket_init(&p->down.own, ctx->rate ? ctx->rate->peer_down : 0, uv_now(ctx->loop));
    p->up.global = ctx->global_up;
    p->down.global = ctx->global_down;
    uv_tcp_nodelay(&p->tcp, 1);
    uv_timer_start(&p->timer, handshake_expired,
                   ctx->handshake_timeout_ms ? ctx->handshake_timeout_ms : 10000, 0);
    *out = p;
    return 0;
}

int shoal_peer_connect(struct shoal_peer **out, const struct shoal_peer_ctx *ctx,
                       const struct shoal_peer_cb *cb, void *user, const char *addr)
{
    struct sockaddr_storage ss;
    struct shoal_peer *p = NULL;
    int rv;

    rv = shoal_parse_addr(addr, &ss);
    if (rv != 0)
        goto out;
    rv = peer_alloc(&p, ctx, cb, user, true);
    if (rv != 0)
        goto out;
    snprintf(p->name, sizeof p->name, "%s", addr);
    rv = uv_tcp_connect(&p->conn_req, &p->tcp, (struct sockaddr *)&ss, connected);
    if (rv != 0) {
        /* Closing still runs on_close; the caller learns of it from rv and
         * must not keep |p|. */
        shoal_peer_close(p, "connect failed", false);
        goto out;
    }
    *out = p;
out:
    return rv;
}

int shoal_peer_accept(struct shoal_peer **out, const struct shoal_peer_ctx *ctx,
                      const struct shoal_peer_cb *cb, void *user, uv_stream_t *server)
{
    struct sockaddr_storage ss;
    int sslen = sizeof ss;
    char host[64] = "?";
    struct shoal_peer *p = NULL;
    int rv;

    rv = peer_alloc(&p, ctx, cb, user, false);
    if (rv != 0)
        goto out;
    rv = uv_accept(server, (uv_stream_t *)&p->tcp);
    if (rv == 0 && uv_tcp_getpeername(&p->tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof host);
            snprintf(p->name, sizeof p->name, "%s:%u", host,
                     ntohs(((struct sockaddr_in *)&ss)->sin_port));
            shoal_src_key(&ss, p->src);
        } else {
            uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof host);
            snprintf(p->name, sizeof p->name, "[%s]:%u", host,
                     ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
            shoal_src_key(&ss, p->src);
        }
    }
    if (rv == 0)
        rv = start(p);
    if (rv != 0) {
        shoal_peer_close(p, "accept failed", false);
        goto out;
    }
    *out = p;
out:
    return rv;
}
