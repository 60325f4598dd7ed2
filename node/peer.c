/* SPDX-License-Identifier: MIT */
/*
 * One peer connection on the libuv loop (see peer.h): TCP, frames, the
 * handshake, sealed messages and a bounded write queue.
 */
#include "peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "frame.h"
#include "hash.h"
#include "nodelog.h"

#define READ_BUF 65536u
/* Bodies this large are read straight into the frame decoder. */
#define DIRECT_READ_MIN 65536u
#define CLOSE_GRACE_MS 2000u

enum peer_state { ST_CONNECTING, ST_HELLO, ST_AUTH, ST_READY };

struct shoal_peer {
    uv_tcp_t tcp;
    uv_timer_t timer;  /* handshake deadline, then the close grace period */
    uv_connect_t conn_req;
    uv_shutdown_t shut_req;
    const struct shoal_peer_ctx *ctx;
    const struct shoal_peer_cb *cb;
    void *user;
    void *data;
    struct shoal_session *sess;
    struct shoal_frame_dec dec;
    enum peer_state st;
    bool initiator;
    bool closing;
    bool local;        /* --- dperf --- the remote end is on this host */
    int open_handles;
    size_t queued;
    size_t max_queue;
    bool drain_wanted;
    uint64_t id;
    uint64_t rx, tx;
    /* --- ctl: rate limits --- */
    uv_timer_t pace;               /* next held send or read resume */
    struct shoal_rate_pair up, down;
    struct held *held, *held_tail; /* CHUNK frames waiting, not yet sealed */
    bool read_paused;
    /* --- end ctl --- */
    char name[80];
    char reason[256];
    uint8_t rbuf[READ_BUF];
};

struct wreq {
    uv_write_t req;
    struct shoal_peer *p;
    uint8_t *a;        /* header, or the whole frame */
    uint8_t *payload;  /* plain CHUNK payload, or NULL */
    size_t bytes;
};

/* --- ctl: rate limits --- */
/* A CHUNK over the upload budget: sealed only when it is sent, so the
 * session's nonces stay in send order. */
struct held {
    struct held *next;
    uint8_t *hdr;
    size_t hlen;
    uint8_t *payload;
    size_t plen;
};
/* --- end ctl --- */

static uint64_t next_peer_id = 1;

static const struct shoal_frame_cb frame_cb;

uint64_t shoal_peer_id(const struct shoal_peer *p) { return p->id; }
bool shoal_peer_initiator(const struct shoal_peer *p) { return p->initiator; }
bool shoal_peer_local(const struct shoal_peer *p) { return p->local; } /* --- dperf --- */
const char *shoal_peer_name(const struct shoal_peer *p) { return p->name; }
const struct shoal_session *shoal_peer_session(const struct shoal_peer *p) { return p->sess; }
void shoal_peer_set_data(struct shoal_peer *p, void *data) { p->data = data; }
void *shoal_peer_data(const struct shoal_peer *p) { return p->data; }
size_t shoal_peer_queued(const struct shoal_peer *p) { return p->queued; }
bool shoal_peer_ready(const struct shoal_peer *p) { return p->st == ST_READY && !p->closing; }
uint64_t shoal_peer_rx_bytes(const struct shoal_peer *p) { return p->rx; }
uint64_t shoal_peer_tx_bytes(const struct shoal_peer *p) { return p->tx; }

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

static void handle_closed(uv_handle_t *h)
{
    struct shoal_peer *p = h->data;

    if (--p->open_handles > 0)
        return;
    if (p->cb->on_close)
        p->cb->on_close(p, p->reason, p->user);
    shoal_session_free(p->sess);
    shoal_frame_dec_free(&p->dec);
    while (p->held) { /* --- ctl --- */
        struct held *next = p->held->next;
        free(p->held->hdr);
        free(p->held->payload);
        free(p->held);
        p->held = next;
    }
    free(p);
}

static void close_now(struct shoal_peer *p)
{
    if (!uv_is_closing((uv_handle_t *)&p->tcp))
        uv_close((uv_handle_t *)&p->tcp, handle_closed);
    if (!uv_is_closing((uv_handle_t *)&p->timer))
        uv_close((uv_handle_t *)&p->timer, handle_closed);
    if (!uv_is_closing((uv_handle_t *)&p->pace)) /* --- ctl --- */
        uv_close((uv_handle_t *)&p->pace, handle_closed);
}

static void shutdown_done(uv_shutdown_t *req, int status)
{
    close_now(req->data);
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
    if (flush && p->queued > 0 &&
        uv_shutdown(&p->shut_req, (uv_stream_t *)&p->tcp, shutdown_done) == 0) {
        /* A peer that stops reading must not hold us open forever. */
        uv_timer_start(&p->timer, grace_expired, CLOSE_GRACE_MS, 0);
        return;
    }
    close_now(p);
}

static void write_done(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct shoal_peer *p = w->p;

    p->queued -= w->bytes;
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
    if (p->drain_wanted && p->queued <= p->max_queue / 2 && !p->closing) {
        p->drain_wanted = false;
        if (p->cb->on_drain)
            p->cb->on_drain(p, p->user);
    }
}

/* Queues |a| (and |payload| when not NULL) for writing; takes both. */
static int queue_write(struct shoal_peer *p, uint8_t *a, size_t alen, uint8_t *payload,
                       size_t plen)
{
    struct wreq *w = calloc(1, sizeof *w);
    uv_buf_t bufs[2];
    int rv;

    if (!w) {
        free(a);
        free(payload);
        return -ENOMEM;
    }
    w->p = p;
    w->a = a;
    w->payload = payload;
    w->bytes = alen + plen;
    bufs[0] = uv_buf_init((char *)a, (unsigned)alen);
    bufs[1] = uv_buf_init((char *)payload, (unsigned)plen);
    rv = uv_write(&w->req, (uv_stream_t *)&p->tcp, bufs, payload ? 2 : 1, write_done);
    if (rv < 0) {
        free(a);
        free(payload);
        free(w);
        return rv;
    }
    p->queued += w->bytes;
    if (p->queued > p->max_queue / 2)
        p->drain_wanted = true;
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
    if (p->queued > p->max_queue)
        return SHOAL_EBUSY;
    return send_raw(p, m, peer_max_body(p));
}

/* Seals (when the session is sealed) and queues CHUNK header |hdr| and
 * |payload|; takes both. */
static int emit_chunk(struct shoal_peer *p, uint8_t *hdr, size_t hlen, uint8_t *payload,
                      size_t plen)
{
    uint8_t *frame = NULL;
    size_t flen;
    int rv;

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
    rv = shoal_session_seal(p->sess, frame, hlen - SHOAL_FRAME_HDR_LEN + plen, &flen);
    if (rv != 0)
        goto fail;
    free(hdr);
    free(payload);
    return queue_write(p, frame, flen, NULL, 0);
fail:
    free(frame);
    free(hdr);
    free(payload);
    return rv;
}

/* --- ctl: rate limits --- */
static void on_pace(uv_timer_t *t);

/* Arms the pace timer for the earliest of: the next held CHUNK's upload
 * budget, the end of a read pause. */
static void arm_pace(struct shoal_peer *p)
{
    uint64_t now = uv_now(p->ctx->loop), w = UINT64_MAX;

    if (p->closing)
        return;
    if (p->held)
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

static void on_pace(uv_timer_t *t)
{
    struct shoal_peer *p = t->data;
    uint64_t now = uv_now(p->ctx->loop);

    while (p->held && !p->closing && shoal_rate_pair_wait(&p->up, now) == 0) {
        struct held *h = p->held;
        p->held = h->next;
        if (!p->held)
            p->held_tail = NULL;
        p->queued -= h->hlen + h->plen;
        shoal_rate_pair_take(&p->up, now, h->hlen + h->plen);
        if (emit_chunk(p, h->hdr, h->hlen, h->payload, h->plen) != 0 && !p->closing)
            shoal_peer_close(p, "cannot queue a chunk", false);
        free(h);
    }
    if (p->read_paused && !p->closing && shoal_rate_pair_wait(&p->down, now) == 0) {
        p->read_paused = false;
        if (uv_read_start((uv_stream_t *)&p->tcp, alloc_cb, read_cb) != 0)
            shoal_peer_close(p, "cannot resume reading", false);
    }
    arm_pace(p);
}

/* Holds CHUNK |hdr| + |payload| (taken) until the upload budget allows. */
static int hold_chunk(struct shoal_peer *p, uint8_t *hdr, size_t hlen, uint8_t *payload,
                      size_t plen)
{
    struct held *h = calloc(1, sizeof *h);

    if (!h) {
        free(hdr);
        free(payload);
        return -ENOMEM;
    }
    h->hdr = hdr;
    h->hlen = hlen;
    h->payload = payload;
    h->plen = plen;
    if (p->held_tail)
        p->held_tail->next = h;
    else
        p->held = h;
    p->held_tail = h;
    p->queued += hlen + plen;
    arm_pace(p);
    return 0;
}
/* --- end ctl --- */

int shoal_peer_send_chunk(struct shoal_peer *p, const struct shoal_msg_chunk *c,
                          uint8_t *payload)
{
    struct shoal_buf b;
    size_t plen = c->payload.len, hlen;
    uint64_t now;
    int rv;

    shoal_buf_init(&b, 256);
    if (p->closing || p->st != ST_READY) {
        rv = -EPIPE;
        goto fail;
    }
    if (p->queued > p->max_queue) {
        rv = SHOAL_EBUSY;
        goto fail;
    }
    rv = shoal_msg_encode_chunk_header(c, &b);
    if (rv != 0)
        goto fail;
    hlen = b.len;
    if (hlen - SHOAL_FRAME_HDR_LEN + plen > peer_max_body(p)) {
        rv = SHOAL_ETOOBIG;
        goto fail;
    }
    /* --- ctl: rate limits --- */
    now = uv_now(p->ctx->loop);
    if (p->held || shoal_rate_pair_wait(&p->up, now) > 0)
        return hold_chunk(p, shoal_buf_steal(&b, NULL), hlen, payload, plen);
    shoal_rate_pair_take(&p->up, now, hlen + plen);
    /* --- end ctl --- */
    return emit_chunk(p, shoal_buf_steal(&b, NULL), hlen, payload, plen);
fail:
    free(payload);
    shoal_buf_free(&b);
    return rv;
}

void shoal_peer_bye(struct shoal_peer *p, const char *reason)
{
    struct shoal_msg m;

    if (p->closing)
        return;
    memset(&m, 0, sizeof m);
    m.type = SHOAL_MSG_BYE;
    m.u.bye.text.p = reason;
    m.u.bye.text.len = (uint32_t)strnlen(reason, SHOAL_MSG_REASON_MAX);
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
    rv = shoal_session_on_hello(p->sess, &m.u.hello, body, len, p->ctx->cluster_keys,
                                (uint64_t)time(NULL), why, sizeof why);
    if (rv != 0) {
        fail_handshake(p, "%s", why);
        return;
    }
    veto = p->cb->on_hello ? p->cb->on_hello(p, p->user) : NULL;
    if (veto) {
        fail_handshake(p, "%s", veto);
        return;
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
    uv_timer_stop(&p->timer);
    p->st = ST_READY;
    shoal_hex(hex, shoal_session_peer_pk(p->sess), 8);
    LOG_I("peer %s authenticated: node %s zone '%s' listen %s cipher %s", p->name, hex,
          shoal_session_peer_zone(p->sess), shoal_session_peer_addr(p->sess),
          shoal_session_cipher(p->sess));
    if (p->cb->on_ready)
        p->cb->on_ready(p, p->user);
}

static void on_ready_frame(struct shoal_peer *p, uint8_t *body, size_t len)
{
    struct shoal_msg m;
    size_t plain;
    char why[160];
    int rv;

    rv = shoal_session_open(p->sess, body, len, &plain);
    if (rv != 0) {
        LOG_W("peer %s: frame fails authentication, closing", p->name);
        shoal_peer_close(p, "sealed frame does not verify", false);
        return;
    }
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
        shoal_peer_close(p, why, false);
        break;
    case SHOAL_MSG_HELLO:
    case SHOAL_MSG_HELLO_AUTH:
        shoal_peer_close(p, "handshake message after the handshake", false);
        break;
    default:
        if (p->cb->on_msg)
            p->cb->on_msg(p, &m, p->user);
        break;
    }
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
    if ((uint8_t *)buf->base != p->rbuf)
        rv = shoal_frame_dec_body_commit(&p->dec, (size_t)nread, &frame_cb, p);
    else
        rv = shoal_frame_dec_feed(&p->dec, p->rbuf, (size_t)nread, &consumed, &frame_cb, p);
    if (rv < 0 && !p->closing) {
        snprintf(why, sizeof why, "bad frame: %s", shoal_strerror(rv));
        LOG_W("peer %s: %s, closing", p->name, why);
        shoal_peer_close(p, why, false);
    }
    /* --- ctl: rate limits --- */
    if (!p->closing && p->st == ST_READY) {
        uint64_t now = uv_now(p->ctx->loop);
        shoal_rate_pair_take(&p->down, now, (uint64_t)nread);
        if (shoal_rate_pair_wait(&p->down, now) > 0) {
            uv_read_stop((uv_stream_t *)&p->tcp);
            p->read_paused = true;
            arm_pace(p);
        }
    }
    /* --- end ctl --- */
}

/* --- dperf --- */
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
/* --- end dperf --- */

static int start(struct shoal_peer *p)
{
    struct shoal_buf b;
    int rv;

    note_locality(p); /* --- dperf --- */
    shoal_buf_init(&b, SHOAL_FRAME_MAX_PREAUTH);
    rv = shoal_session_hello(p->sess, &b);
    if (rv == 0)
        rv = queue_buf(p, &b);
    else
        shoal_buf_free(&b);
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
    shoal_frame_dec_init(&p->dec, SHOAL_FRAME_MAX_PREAUTH);
    uv_tcp_init(ctx->loop, &p->tcp);
    uv_timer_init(ctx->loop, &p->timer);
    p->tcp.data = p->timer.data = p->conn_req.data = p;
    p->open_handles = 2;
    /* --- ctl: rate limits --- */
    uv_timer_init(ctx->loop, &p->pace);
    p->pace.data = p;
    p->open_handles++;
    shoal_bucket_init(&p->up.own, ctx->rate ? ctx->rate->peer_up : 0, uv_now(ctx->loop));
    shoal_bucket_init(&p->down.own, ctx->rate ? ctx->rate->peer_down : 0, uv_now(ctx->loop));
    p->up.global = ctx->global_up;
    p->down.global = ctx->global_down;
    /* --- end ctl --- */
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
        } else {
            uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof host);
            snprintf(p->name, sizeof p->name, "[%s]:%u", host,
                     ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
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
