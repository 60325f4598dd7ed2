/* SPDX-License-Identifier: MIT */
/*
 * shoal-tracker's network side (see server.h): accepts connections, runs
 * the challenge/credential handshake, decodes frames and messages, calls
 * the registry and queues replies.
 *
 * One loop thread owns everything. Reads land in one shared buffer (the
 * frame decoder copies what it must keep), replies produced while handling
 * one read are gathered in the connection's output buffer and written with
 * one uv_try_write / uv_write, so a pipelining client costs one write per
 * read, not per message. A connection is never freed inside its own
 * callbacks: it is marked closing, its handles are closed, and it is freed
 * by the last close callback.
 */
#include "server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

#include <sodium.h>

#include "auth.h"
#include "cred.h"
#include "error.h"
#include "frame.h"
#include "hash.h"
#include "manifest.h"
#include "mp.h"
#include "msg.h"
#include "netsrc.h"
#include "rollfile.h"
#include "smallfile.h"

#define READ_BUF (64 * 1024)
#define FRAME_MAX_AUTHED (SHOAL_MSG_MANIFEST_MAX + 1024)
/* Largest frame other than PUT_MANIFEST from a connection without a
 * publisher or admin identity. The largest such request is an ANNOUNCE of
 * SHOAL_MSG_ANNOUNCE_MAX (256) entries of at most 46 bytes each (a 34-byte
 * id, two 5-byte counts, a bool, the entry's array header): 11,785 bytes
 * with the frame header, encoded with every count at its maximum;
 * a TRK_AUTH (credential, zone, address, key, signature) stays under 1 KiB
 * and the others under 512 bytes. 64 KiB, the pre-authentication limit,
 * leaves room for the trailing fields later versions may add. */
#define FRAME_MAX_NODE SHOAL_FRAME_MAX_PREAUTH
/* How often frames in progress are checked against their deadline. */
#define FRAME_SWEEP_MS 1000
/* Events anyone can cause many times a second (a refused connection over
 * --max-conns-per-key, an unauthenticated connection evicted, closed or
 * failing its handshake) are logged at most once per this long per kind;
 * the count of the others goes with the next line. */
#define EVENT_LOG_MS 10000
/* Frames handled per connection before others get a turn: bytes left over
 * wait in the connection (reading paused) until the idle handle comes
 * back to it. */
#define FRAMES_PER_TURN 64
/* Reading pauses while a connection has more reply bytes queued or in
 * flight than this, and resumes once the peer drained them. */
#define OUT_HIGH (256 * 1024)
/* Expensive requests (rollout status, stats, manifests) per connection:
 * a token bucket of COSTLY_BURST refilled at COSTLY_PER_S. */
#define COSTLY_BURST 40
#define COSTLY_PER_S 20
/* How long a node should wait before asking for a lease again when none
 * was granted. */
#define LEASE_RETRY_MS 1000

/* The registry keeps the wire's session id as it is. */
_Static_assert(SHOAL_REG_SESSION_LEN == SHOAL_MSG_SESSION_LEN, "session id sizes differ");

/* A node key verified on a connection. Zone, address and process session
 * are bound at verification (by keyed hash): a switch back cannot move the
 * node or pass for another process. */
struct ident {
    uint8_t pk[32];
    uint8_t role;
    uint8_t used;
    bool has_session;       /* the client sent a process session id */
    uint8_t session[SHOAL_MSG_SESSION_LEN];
    uint64_t bind;          /* keyed hash of zone, listen address, session */
    uint64_t deadline_ms;   /* loop time at which the credential expires */
    bool announced;         /* announced on this connection (see
                               handle_announce) */
    bool counted;           /* holds the connection's count for this key
                               (see key_acquire) */
};

/* Authenticated connections per node key (--max-conns-per-key). An entry
 * whose last connection closed stays, with n 0, until gone_due: the key is
 * forgotten then unless it connected again (cfg.gone_ms). */
struct keyconns {
    uint8_t pk[32];
    uint32_t n;
    uint64_t gone_due;        /* n 0: loop time to forget the node at */
    bool queued;              /* in the gone FIFO (n 0) */
    struct keyconns *next;    /* hash chain */
    struct keyconns *gnext, *gprev; /* gone FIFO */
};

/* A source of unauthenticated connections (netsrc.h: an IPv4 address or
 * an IPv6 /64), with how many of the pool's connections came from it. */
struct usrc {
    uint8_t key[16];
    uint32_t n;
    struct usrc *next;      /* hash chain */
};

/* Rate limit of one kind of log line (see EVENT_LOG_MS). */
struct loglimit {
    uint64_t last_ms;       /* 0: never logged */
    uint64_t skipped;
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;       /* authentication deadline, then idle check */
    struct shoal_tracker *t;
    struct conn *prev, *next;
    struct conn *uprev, *unext;   /* unauthenticated, oldest first */
    struct usrc *src;             /* its source while in that list, or NULL */
    uint8_t src_key[16];
    struct conn *rnext;           /* ready list: pending input, not reading */
    bool on_ready;
    bool reading;
    uint8_t *pend;          /* input received but not handled yet */
    size_t pend_len, pend_off;
    int frames_left;        /* of this turn */
    uint64_t last_rx_ms;
    uint64_t cred_deadline_ms;    /* current identity's credential end */
    double tokens;          /* costly-request bucket */
    uint64_t tokens_ms;
    struct shoal_frame_dec dec;
    struct shoal_buf out;   /* replies not yet handed to libuv */
    size_t inflight;        /* bytes in uv_write requests */
    size_t inflight_copy;   /* of which copies (the rest: registry refs) */
    uint8_t nonce[32];      /* the challenge to answer next */
    /* Sealed after the OK of a login that asked for it (TRK_AUTH with
     * client_eph, answered with our key's proof: auth.h). */
    struct shoal_trk_seal seal;
    bool seal_next;         /* keys derived: seal from the next OK on */
    bool authed;
    bool closing;
    bool close_after_flush;
    int open_handles;
    /* current identity */
    uint8_t pk[32];
    uint8_t role;
    char zone[SHOAL_MSG_ZONE_MAX + 1];
    char addr[SHOAL_MSG_ADDR_MAX + 1];
    bool addr_refused_logged; /* its unusable address was logged once */
    bool big_ok;            /* a publisher or admin identity was verified:
                               frames above FRAME_MAX_NODE of any type */
    /* The frame being gathered, while one is (see conn_track_frame). */
    struct conn *pprev, *pnext;
    bool on_partial;
    size_t partial;         /* body bytes received for it */
    size_t frame_len;       /* declared body length */
    uint64_t frame_start_ms, frame_deadline_ms;
    uint64_t frames_in;     /* frames delivered so far */
    uint64_t frame_seq;     /* frames_in when the current frame was seen */
    /* identities verified on this connection */
    struct ident *ids;
    uint32_t ids_cap, nids;
    char peer[64];          /* remote address for logs */
};

struct wreq {
    uv_write_t req;
    struct conn *c;
    uint8_t *base;  /* malloc'd block to free */
    const uint8_t *ref; /* registry bytes held for this write, or NULL */
    size_t len;     /* bytes in flight, copies and references */
    size_t copy;    /* of which copied into |base| */
};

struct shoal_tracker {
    uv_loop_t *loop;
    struct shoal_tracker_config cfg;
    struct shoal_reg *reg;
    uint8_t boot[SHOAL_MSG_SESSION_LEN]; /* this process: sent in challenges */
    uv_tcp_t listener;
    uv_timer_t expire_timer;
    uint32_t expire_every;  /* ms between registry expiry passes */
    uint64_t expired_ms;    /* loop time of the last one */
    uint64_t started_ms;    /* loop time at start (cfg.start_grace_ms) */
    int port;
    bool listening, timer_on, shut;
    struct conn *conns;
    uint32_t nconns;
    struct conn *unauth_head, *unauth_tail;
    uint32_t nunauth;
    /* sources of the unauthenticated connections */
    struct usrc **src_tab;
    uint32_t src_mask;
    uint32_t *src_at;         /* [k]: sources holding k connections */
    uint32_t src_max;         /* most connections one source holds */
    uint8_t src_hkey[crypto_shorthash_KEYBYTES];
    struct loglimit log_evict, log_unauth, log_authfail;
    struct conn *ready;       /* connections with pending input to handle */
    uv_idle_t idle;
    bool idle_on, idle_init;
    size_t outq_copy;         /* copied reply bytes queued, all connections */
    uint8_t bind_key[crypto_shorthash_KEYBYTES];
    uint8_t rbuf[READ_BUF];
    bool rbuf_busy;
    struct shoal_msg msg;     /* decoded request (large: kept off the stack) */
    uint8_t *opened;          /* a sealed frame's body, opened */
    size_t opened_cap;
    struct shoal_msg reply;
    struct shoal_reg_have haves[SHOAL_MSG_ANNOUNCE_MAX];
    struct shoal_reg_role roles[SHOAL_MSG_ANNOUNCE_MAX];
    struct shoal_reg_peer peers[SHOAL_MSG_PEERS_MAX];
    struct shoal_reg_desired desired[SHOAL_MSG_DESIRED_MAX];
    uint64_t auth_failures, bad_input, conns_total, conns_refused, conns_evicted;
    uint64_t rate_limited, manifest_verifies;
    /* unfinished frames */
    struct conn *partial_head;
    size_t partial_total;     /* sum of conn.partial */
    uv_timer_t frame_timer;
    bool frame_timer_init, frame_timer_on;
    uint64_t partial_evicted, frames_timed_out, frames_refused;
    /* connections per node key */
    struct keyconns **keyconns;
    uint32_t keyconns_mask;
    uint64_t conns_key_refused;
    struct loglimit log_key;
    struct loglimit log_reclaim; /* refused re-claims: a node may send many */
    /* keys whose last connection closed, oldest first (gone_ms) */
    struct keyconns *gone_head, *gone_tail;
    uv_timer_t gone_timer;
    bool gone_timer_init;
    uint64_t nodes_left, nodes_gone;
};

void shoal_tracker_log(const char *fmt, ...)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03dZ shoal-tracker: %s\n", ts, (int)(tv.tv_usec / 1000), line);
}

void shoal_tracker_config_default(struct shoal_tracker_config *c)
{
    memset(c, 0, sizeof(*c));
    c->listen = "127.0.0.1:7700";
    shoal_reg_config_default(&c->reg);
    c->auth_timeout_ms = 3000;
    c->max_conns = 10000;
    c->max_unauth = 256;
    c->max_outq = SHOAL_FRAME_MAX_ABS;
    c->max_outq_total = 256u << 20;
    c->idle_timeout_ms = 300000;
    c->max_identities = 100000;
    /* Two full-size manifest uploads at once. */
    c->max_partial_total = 128u << 20;
    c->frame_timeout_ms = 10000;
    c->frame_min_rate = 512u * 1024u;
    /* A daemon holds one connection per tracker and each CLI command one;
     * 8 leaves room for reconnects while the old connection times out. */
    c->max_conns_per_key = 8;
    c->gone_ms = 5000;
    c->start_grace_ms = 2000;
}

/* True when a line limited by |l| may be logged now; writes to |more|
 * (|n| bytes) how many such events went unlogged since the last line, or
 * "". */
static bool log_due(struct shoal_tracker *t, struct loglimit *l, char *more, size_t n)
{
    uint64_t now = uv_now(t->loop);
    more[0] = 0;
    if (l->last_ms && now - l->last_ms < EVENT_LOG_MS) {
        l->skipped++;
        return false;
    }
    if (l->skipped)
        snprintf(more, n, " (and %" PRIu64 " more since the last such line)", l->skipped);
    l->last_ms = now ? now : 1;
    l->skipped = 0;
    return true;
}

/* ---- lists ---- */

static struct usrc **src_bucket(struct shoal_tracker *t, const uint8_t key[16])
{
    uint8_t h[crypto_shorthash_BYTES];
    uint32_t v;
    crypto_shorthash(h, key, 16, t->src_hkey);
    memcpy(&v, h, sizeof(v));
    return &t->src_tab[v & t->src_mask];
}

/* Counts one more connection of source |key| and returns its record, or
 * NULL without memory (the connection then counts for no source). */
static struct usrc *src_acquire(struct shoal_tracker *t, const uint8_t key[16])
{
    struct usrc **b = src_bucket(t, key), *s = *b;
    while (s && memcmp(s->key, key, 16) != 0)
        s = s->next;
    if (!s) {
        if (!(s = calloc(1, sizeof(*s))))
            return NULL;
        memcpy(s->key, key, 16);
        s->next = *b;
        *b = s;
    }
    if (s->n)
        t->src_at[s->n]--;
    s->n++;
    t->src_at[s->n]++;
    if (s->n > t->src_max)
        t->src_max = s->n;
    return s;
}

/* Counts one connection of |s| less, forgetting a source with none. */
static void src_release(struct shoal_tracker *t, struct usrc *s)
{
    t->src_at[s->n]--;
    s->n--;
    if (s->n) {
        t->src_at[s->n]++;
    } else {
        struct usrc **p = src_bucket(t, s->key);
        while (*p != s)
            p = &(*p)->next;
        *p = s->next;
        free(s);
    }
    while (t->src_max && !t->src_at[t->src_max])
        t->src_max--;
}

/* The connection to evict when the unauthenticated pool is full: the
 * oldest of those whose source holds the most of them. One source opening
 * connections as fast as it can then only evicts its own, and other
 * sources' handshakes finish. O(pool) at worst, but the walk stops at the
 * first such connection, which for a flood is at the head. */
static struct conn *unauth_victim(struct shoal_tracker *t)
{
    for (struct conn *c = t->unauth_head; c; c = c->unext)
        if (c->src && c->src->n == t->src_max)
            return c;
    return t->unauth_head;
}

static void unauth_unlink(struct conn *c)
{
    struct shoal_tracker *t = c->t;
    if (!c->uprev && t->unauth_head != c)
        return; /* not listed */
    if (c->src) {
        src_release(t, c->src);
        c->src = NULL;
    }
    if (c->uprev)
        c->uprev->unext = c->unext;
    else
        t->unauth_head = c->unext;
    if (c->unext)
        c->unext->uprev = c->uprev;
    else
        t->unauth_tail = c->uprev;
    c->uprev = c->unext = NULL;
    t->nunauth--;
}

static void unauth_append(struct conn *c)
{
    struct shoal_tracker *t = c->t;
    c->src = src_acquire(t, c->src_key);
    c->uprev = t->unauth_tail;
    c->unext = NULL;
    if (t->unauth_tail)
        t->unauth_tail->unext = c;
    else
        t->unauth_head = c;
    t->unauth_tail = c;
    t->nunauth++;
}

static void ready_unlink(struct conn *c)
{
    if (!c->on_ready)
        return;
    for (struct conn **pp = &c->t->ready; *pp; pp = &(*pp)->rnext) {
        if (*pp == c) {
            *pp = c->rnext;
            break;
        }
    }
    c->rnext = NULL;
    c->on_ready = false;
}

/* ---- unfinished frames ---- */

static void on_frame_timer(uv_timer_t *tm);

static void partial_unlink(struct conn *c)
{
    struct shoal_tracker *t = c->t;
    if (!c->on_partial)
        return;
    if (c->pprev)
        c->pprev->pnext = c->pnext;
    else
        t->partial_head = c->pnext;
    if (c->pnext)
        c->pnext->pprev = c->pprev;
    c->pprev = c->pnext = NULL;
    c->on_partial = false;
    t->partial_total -= c->partial;
    c->partial = 0;
    if (!t->partial_head && t->frame_timer_on) {
        uv_timer_stop(&t->frame_timer);
        t->frame_timer_on = false;
    }
}

static void partial_link(struct conn *c)
{
    struct shoal_tracker *t = c->t;
    if (c->on_partial)
        return;
    c->pprev = NULL;
    c->pnext = t->partial_head;
    if (t->partial_head)
        t->partial_head->pprev = c;
    t->partial_head = c;
    c->on_partial = true;
    if (!t->frame_timer_on) {
        uint64_t every = t->cfg.frame_timeout_ms / 4 + 1;
        if (every > FRAME_SWEEP_MS)
            every = FRAME_SWEEP_MS;
        uv_timer_start(&t->frame_timer, on_frame_timer, every, every);
        t->frame_timer_on = true;
    }
}

/* ---- connections per node key ---- */

static struct keyconns **key_slot(struct shoal_tracker *t, const uint8_t pk[32])
{
    uint32_t h;
    memcpy(&h, pk, 4); /* verified keys are cluster-signed: random bytes */
    struct keyconns **pp = &t->keyconns[h & t->keyconns_mask];
    while (*pp && memcmp((*pp)->pk, pk, 32) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void gone_unlink(struct shoal_tracker *t, struct keyconns *k)
{
    if (!k->queued)
        return;
    if (k->gprev)
        k->gprev->gnext = k->gnext;
    else
        t->gone_head = k->gnext;
    if (k->gnext)
        k->gnext->gprev = k->gprev;
    else
        t->gone_tail = k->gprev;
    k->gnext = k->gprev = NULL;
    k->queued = false;
}

/* Counts one more connection for |pk|. Returns 0, SHOAL_EBUSY when it has
 * max_conns_per_key already, or -ENOMEM. */
static int key_acquire(struct shoal_tracker *t, const uint8_t pk[32])
{
    struct keyconns **pp = key_slot(t, pk);
    if (*pp && (*pp)->n >= t->cfg.max_conns_per_key)
        return SHOAL_EBUSY;
    if (!*pp) {
        struct keyconns *k = calloc(1, sizeof(*k));
        if (!k)
            return -ENOMEM;
        memcpy(k->pk, pk, 32);
        *pp = k;
    }
    /* Back: out of the FIFO until its last connection closes again. */
    gone_unlink(t, *pp);
    (*pp)->n++;
    return 0;
}

/* Appends |k| (not queued) to the gone FIFO. */
static void gone_queue(struct shoal_tracker *t, struct keyconns *k)
{
    k->queued = true;
    k->gnext = NULL;
    k->gprev = t->gone_tail;
    if (t->gone_tail)
        t->gone_tail->gnext = k;
    else
        t->gone_head = k;
    t->gone_tail = k;
}

static void key_release(struct shoal_tracker *t, const uint8_t pk[32])
{
    struct keyconns **pp = key_slot(t, pk);
    struct keyconns *k = *pp;
    if (!k || --k->n != 0)
        return;
    /* A node that only lost its connection dials again within a second or
     * two; one that died would hold its origin leases until lease_ms and
     * its fetched credit until node_ttl_ms, and the whole fleet waits for
     * the chunks only it was to bring. Kept for gone_ms to tell the two
     * apart. A key leaves the FIFO when it connects again and joins it at
     * the tail when its last connection closes, so due times grow along
     * it and the head is always the next due. (A key that came back kept
     * its old place, and when that came due went to the tail behind keys
     * due up to gone_ms later: a flapping node was forgotten up to twice
     * gone_ms after its last connection closed.) */
    if (t->cfg.gone_ms && !t->shut) {
        k->gone_due = uv_now(t->loop) + t->cfg.gone_ms;
        gone_queue(t, k);
        return;
    }
    if (!k->queued) {
        *pp = k->next;
        free(k);
    }
}

/* Forgets the nodes whose last connection closed gone_ms ago and that did
 * not connect again: as if their node_ttl_ms had passed, their leases end
 * and the chunks they alone fetched are leasable again. */
static void on_gone_timer(uv_timer_t *tm)
{
    struct shoal_tracker *t = tm->data;
    uint64_t now = uv_now(t->loop);
    uint32_t logged = 0, quiet = 0;
    while (t->gone_head && t->gone_head->gone_due <= now) {
        struct keyconns *k = t->gone_head;
        gone_unlink(t, k);
        if (shoal_reg_remove_node(t->reg, k->pk) == 0) {
            char hex[65];
            shoal_hex(hex, k->pk, 32);
            t->nodes_gone++;
            /* A connection carrying many identities, or a network cut,
             * ends many at once: a few lines, then a count. */
            if (logged++ < 8)
                shoal_tracker_log("node %.16s gone: no connection for %u ms and it did not "
                                  "come back; forgotten (its origin leases end, chunks only it "
                                  "fetched are leasable again)", hex, t->cfg.gone_ms);
            else
                quiet++;
        }
        struct keyconns **pp = key_slot(t, k->pk);
        if (*pp == k) {
            *pp = k->next;
            free(k);
        }
    }
    if (quiet)
        shoal_tracker_log("%u more nodes gone the same way", quiet);
}

/* ---- connection teardown ---- */

static void conn_free(struct conn *c)
{
    struct shoal_tracker *t = c->t;
    if (c->prev)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    t->nconns--;
    for (uint32_t i = 0; i < c->ids_cap; i++)
        if (c->ids[i].used && c->ids[i].counted)
            key_release(t, c->ids[i].pk);
    shoal_frame_dec_free(&c->dec);
    shoal_buf_free(&c->out);
    free(c->pend);
    free(c->ids);
    free(c);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->open_handles == 0)
        conn_free(c);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    unauth_unlink(c);
    ready_unlink(c);
    partial_unlink(c);
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}

/* Logs why |c| is dropped for bad input and closes it. */
static void conn_drop(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_drop(struct conn *c, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    c->t->bad_input++;
    /* Before authentication anyone can cause this at will: rate-limited. */
    char more[80] = "";
    if (c->authed || log_due(c->t, &c->t->log_unauth, more, sizeof more))
        shoal_tracker_log("closing %s: %s%s", c->peer, why, more);
    conn_close(c);
}

/* ---- output ---- */

static void conn_schedule(struct conn *c);

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = w->c;
    c->inflight -= w->len;
    c->inflight_copy -= w->copy;
    c->t->outq_copy -= w->copy;
    shoal_reg_bytes_release(w->ref);
    free(w->base);
    free(w);
    if (status < 0 && status != UV_ECANCELED && !c->closing) {
        shoal_tracker_log("closing %s: write failed: %s", c->peer, uv_strerror(status));
        conn_close(c);
    } else if (c->close_after_flush && c->inflight == 0) {
        conn_close(c);
    } else if (!c->closing) {
        conn_schedule(c); /* maybe below the watermark again */
    }
}

/* Queues |w| (base/len/copy set) with |nbufs| buffers. Returns 0, or
 * nonzero after closing |c|. */
static int conn_write(struct conn *c, struct wreq *w, uv_buf_t *bufs, unsigned nbufs)
{
    w->c = c;
    int rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, nbufs, on_write);
    if (rv < 0) {
        shoal_reg_bytes_release(w->ref);
        free(w->base);
        free(w);
        shoal_tracker_log("closing %s: write: %s", c->peer, uv_strerror(rv));
        conn_close(c);
        return 1;
    }
    c->inflight += w->len;
    c->inflight_copy += w->copy;
    c->t->outq_copy += w->copy;
    return 0;
}

/* Hands the gathered replies to the socket. */
static void conn_flush(struct conn *c)
{
    if (c->closing)
        return;
    if (c->out.len) {
        size_t off = 0;
        if (c->inflight == 0) {
            /* Nothing queued ahead: try to send right away, no allocation. */
            uv_buf_t b = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
            int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
            if (n > 0)
                off = (size_t)n;
        }
        if (off == c->out.len) {
            shoal_buf_reset(&c->out);
        } else {
            struct wreq *w = malloc(sizeof(*w));
            if (!w) {
                shoal_tracker_log("closing %s: out of memory", c->peer);
                conn_close(c);
                return;
            }
            size_t len;
            w->ref = NULL;
            w->base = shoal_buf_steal(&c->out, &len);
            w->len = w->copy = len - off;
            uv_buf_t b = uv_buf_init((char *)w->base + off, (unsigned)w->len);
            if (conn_write(c, w, &b, 1) != 0)
                return;
        }
    }
    if (c->close_after_flush && c->inflight == 0)
        conn_close(c);
}

/* True when |c| should stop taking requests until its peer reads: too
 * much of its own output pending, or the tracker's copy budget spent
 * while it has some of that output. */
static bool conn_backlogged(const struct conn *c)
{
    size_t mine = c->out.len + c->inflight;
    return mine > OUT_HIGH ||
           (c->t->outq_copy > c->t->cfg.max_outq_total && c->inflight_copy + c->out.len > 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_idle(uv_idle_t *h);

/* Decides whether |c| reads from its socket: not while it has unhandled
 * input (it waits on the ready list for its next turn) or is backlogged
 * (on_write calls back here as the peer drains). */
static void conn_schedule(struct conn *c)
{
    struct shoal_tracker *t = c->t;
    if (c->closing || c->close_after_flush)
        return;
    bool pending = c->pend_off < c->pend_len;
    bool backlog = conn_backlogged(c);
    if (pending || backlog) {
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = false;
        }
        if (pending && !backlog && !c->on_ready) {
            c->rnext = t->ready;
            t->ready = c;
            c->on_ready = true;
            if (!t->idle_on) {
                uv_idle_start(&t->idle, on_idle);
                t->idle_on = true;
            }
        }
    } else if (!c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = true;
    }
}

/* Queues |m|. Returns 0, or nonzero after closing |c| (queue overflow). */
static int conn_send(struct conn *c, const struct shoal_msg *m)
{
    /* The cap on out covers what is in flight too. */
    size_t room = c->t->cfg.max_outq > c->inflight ? c->t->cfg.max_outq - c->inflight : 0;
    c->out.max = room;
    size_t start = c->out.len;
    int rv = shoal_msg_encode(m, &c->out);
    if (rv == 0 && c->seal.on)
        rv = shoal_trk_seal_frame(&c->seal, &c->out, start);
    if (rv == SHOAL_ELIMIT) {
        conn_drop(c, "reader too slow: more than %zu reply bytes queued", c->t->cfg.max_outq);
    } else if (rv) {
        shoal_tracker_log("closing %s: cannot encode %s: %s", c->peer,
                          shoal_msg_type_name(m->type), shoal_strerror(rv));
        conn_close(c);
    }
    return rv;
}

static int send_error(struct conn *c, int code, const char *text)
{
    struct shoal_msg *m = &c->t->reply;
    m->type = SHOAL_MSG_ERROR;
    m->u.error.code = code;
    m->u.error.message.p = text;
    m->u.error.message.len = (uint32_t)strlen(text);
    return conn_send(c, m);
}

static int send_ok(struct conn *c, uint32_t req)
{
    struct shoal_msg *m = &c->t->reply;
    m->type = SHOAL_MSG_OK;
    m->u.ok.req_id = req;
    return conn_send(c, m);
}

static int auth_fail(struct conn *c, int code, const char *why);

/* Proves our key to a client that asked (TRK_AUTH with a client nonce),
 * over the challenge it just answered. */
static int send_proof(struct conn *c, const struct shoal_msg_trk_auth *a)
{
    struct shoal_msg *m = &c->t->reply;
    struct shoal_pubkey pk;
    struct shoal_trk_id id;
    uint8_t sig[SHOAL_SIG_LEN], esk[32];
    /* Keys for a sealed session once, on the connection's first login
     * that asks: a later identity switch rides in the sealed stream. */
    bool seal = a->has_client_eph && !c->seal.on && !c->seal_next;
    int rv = 0;

    memset(&id, 0, sizeof id);
    memcpy(id.chal, c->nonce, 32);
    memcpy(id.cnonce, a->client_nonce, 32);
    memcpy(id.node_pk, a->node_pk, 32);
    if (seal) {
        memcpy(id.client_eph, a->client_eph, 32);
        crypto_kx_keypair(id.tracker_eph, esk);
        rv = shoal_trk_seal_keys(&c->seal, false, id.tracker_eph, esk, a->client_eph);
        sodium_memzero(esk, sizeof esk);
        if (rv != 0)
            return auth_fail(c, rv, "unusable ephemeral key");
        c->seal_next = true;
    }
    rv = shoal_trk_id_sign(sig, &id, c->t->cfg.id_key);
    if (rv != 0)
        return rv;
    shoal_seckey_public(c->t->cfg.id_key, &pk);
    m->type = SHOAL_MSG_TRK_PROOF;
    memcpy(m->u.trk_proof.tracker_pk, pk.pk, 32);
    memcpy(m->u.trk_proof.sig, sig, SHOAL_SIG_LEN);
    m->u.trk_proof.has_tracker_eph = seal;
    memcpy(m->u.trk_proof.tracker_eph, id.tracker_eph, 32);
    return conn_send(c, m);
}

static int send_challenge(struct conn *c)
{
    struct shoal_msg *m = &c->t->reply;
    randombytes_buf(c->nonce, sizeof(c->nonce));
    m->type = SHOAL_MSG_TRK_CHALLENGE;
    memcpy(m->u.trk_challenge.nonce, c->nonce, 32);
    m->u.trk_challenge.server_time = (uint64_t)time(NULL);
    m->u.trk_challenge.has_boot = true;
    memcpy(m->u.trk_challenge.boot, c->t->boot, sizeof c->t->boot);
    return conn_send(c, m);
}

/* ---- identities ---- */

static uint32_t ident_home(const uint8_t pk[32], uint32_t mask)
{
    uint32_t h;
    memcpy(&h, pk, 4); /* keys are cluster-signed; their bytes are random */
    return h & mask;
}

static struct ident *ident_find(struct conn *c, const uint8_t pk[32], uint8_t role)
{
    if (!c->ids_cap)
        return NULL;
    uint32_t mask = c->ids_cap - 1;
    for (uint32_t i = ident_home(pk, mask);; i = (i + 1) & mask) {
        struct ident *id = &c->ids[i];
        if (!id->used)
            return NULL;
        if (id->role == role && memcmp(id->pk, pk, 32) == 0)
            return id;
    }
}

static struct ident *ident_add(struct conn *c, const uint8_t pk[32], uint8_t role, int *rvp)
{
    struct ident *added = NULL;
    int rv = 0;
    if (c->nids >= c->t->cfg.max_identities) {
        rv = SHOAL_ELIMIT;
        goto out;
    }
    if ((c->nids + 1) * 2 > c->ids_cap) {
        uint32_t ncap = c->ids_cap ? c->ids_cap * 2 : 4;
        struct ident *n = calloc(ncap, sizeof(*n));
        if (!n) {
            rv = -ENOMEM;
            goto out;
        }
        for (uint32_t i = 0; i < c->ids_cap; i++) {
            if (!c->ids[i].used)
                continue;
            uint32_t j = ident_home(c->ids[i].pk, ncap - 1);
            while (n[j].used)
                j = (j + 1) & (ncap - 1);
            n[j] = c->ids[i];
        }
        free(c->ids);
        c->ids = n;
        c->ids_cap = ncap;
    }
    uint32_t mask = c->ids_cap - 1;
    uint32_t i = ident_home(pk, mask);
    while (c->ids[i].used)
        i = (i + 1) & mask;
    memcpy(c->ids[i].pk, pk, 32);
    c->ids[i].role = role;
    c->ids[i].used = 1;
    c->nids++;
    added = &c->ids[i];
out:
    *rvp = rv;
    return added;
}

/* Keyed hash binding the zone, listen address and session id of |a| to a
 * verified identity. */
static uint64_t bind_hash(const struct shoal_tracker *t, const struct shoal_msg_trk_auth *a)
{
    uint8_t buf[1 + SHOAL_MSG_SESSION_LEN + SHOAL_MSG_ZONE_MAX + 1 + SHOAL_MSG_ADDR_MAX];
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t v;
    size_t n = 0;
    /* Fixed-size parts first: the zone's NUL then splits zone from address. */
    buf[n++] = a->has_session;
    if (a->has_session)
        memcpy(buf + n, a->session, SHOAL_MSG_SESSION_LEN);
    else
        memset(buf + n, 0, SHOAL_MSG_SESSION_LEN);
    n += SHOAL_MSG_SESSION_LEN;
    memcpy(buf + n, a->zone.p, a->zone.len);
    n += a->zone.len;
    buf[n++] = 0;
    memcpy(buf + n, a->listen_addr.p, a->listen_addr.len);
    n += a->listen_addr.len;
    crypto_shorthash(h, buf, n, t->bind_key);
    memcpy(&v, h, sizeof(v));
    return v;
}

/* Loop time (ms) at which a credential valid until |expires_unix| ends. */
static uint64_t cred_deadline(const struct shoal_tracker *t, uint64_t expires_unix)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    uint64_t left = expires_unix * 1000 > now_ms ? expires_unix * 1000 - now_ms : 0;
    return uv_now(t->loop) + left;
}

static const char *role_name(uint8_t role)
{
    return role == SHOAL_ROLE_NODE ? "node" : role == SHOAL_ROLE_PUBLISHER ? "publisher"
                                                                          : "admin";
}

/* Fails authentication: tells the client why, logs, closes after the
 * reply is out. Returns nonzero (stop reading). */
static int auth_fail(struct conn *c, int code, const char *why)
{
    char hex[65];
    shoal_hex(hex, c->t->msg.u.trk_auth.node_pk, 32);
    c->t->auth_failures++;
    /* Anyone can fail a handshake at will: one line per EVENT_LOG_MS. */
    char more[80];
    if (log_due(c->t, &c->t->log_authfail, more, sizeof more))
        shoal_tracker_log("auth failure from %s (key %.16s): %s%s", c->peer, hex, why, more);
    if (send_error(c, code, why) == 0)
        c->close_after_flush = true;
    return 1;
}

static void copy_str(char *dst, const struct shoal_str *s)
{
    memcpy(dst, s->p, s->len);
    dst[s->len] = 0;
}

static void on_idle_check(uv_timer_t *tm)
{
    struct conn *c = tm->data;
    uint64_t quiet = uv_now(c->t->loop) - c->last_rx_ms;
    if (quiet >= c->t->cfg.idle_timeout_ms)
        conn_drop(c, "idle for %" PRIu64 " ms", quiet);
}

/* Refuses a key past max_conns_per_key: tells the client, closes after
 * the reply, logs at most one line per EVENT_LOG_MS. Returns nonzero. */
static int key_refuse(struct conn *c, const uint8_t pk[32])
{
    struct shoal_tracker *t = c->t;
    char why[128], more[80];
    t->conns_key_refused++;
    if (log_due(t, &t->log_key, more, sizeof more)) {
        char hex[65];
        shoal_hex(hex, pk, 32);
        shoal_tracker_log("refusing %s: node key %.16s already has %u authenticated "
                          "connections (--max-conns-per-key)%s", c->peer, hex,
                          t->cfg.max_conns_per_key, more);
    }
    snprintf(why, sizeof why, "too many connections for this node key (at most %u)",
             t->cfg.max_conns_per_key);
    if (send_error(c, SHOAL_EBUSY, why) == 0)
        c->close_after_flush = true;
    return 1;
}

/* True when a key was verified on |c| in any role. */
static bool conn_has_key(struct conn *c, const uint8_t pk[32])
{
    for (uint8_t role = SHOAL_ROLE_NODE; role <= SHOAL_ROLE_ADMIN; role++)
        if (ident_find(c, pk, role))
            return true;
    return false;
}

/* A publisher's login named a signing key (publisher_pk) this tracker
 * would refuse manifests from: say so now, before `shoal publish` reads a
 * release from the Hub only to have its manifest refused. A failed login
 * like any other (counted, logged at most once per EVENT_LOG_MS: an admin
 * key retrying in a loop must not flood the log). Returns nonzero. Only a
 * verified admin-key identity gets here. */
static int publisher_refuse(struct conn *c, const uint8_t pk[32])
{
    char hex[65], why[256];
    shoal_hex(hex, pk, 32);
    snprintf(why, sizeof why, "signing key %.16s is not a trusted publisher here (not in the "
             "tracker's --publisher-keys): a manifest it signs would be refused", hex);
    return auth_fail(c, SHOAL_EUNTRUSTED, why);
}

static int handle_auth(struct conn *c)
{
    struct shoal_tracker *t = c->t;
    const struct shoal_msg_trk_auth *a = &t->msg.u.trk_auth;
    int rv;
    if (a->role > SHOAL_ROLE_ADMIN)
        return auth_fail(c, SHOAL_EBADMSG, "unknown role");
    if (shoal_keywatch_contains(t->cfg.deny, a->node_pk)) {
        shoal_reg_node_refused(t->reg, uv_now(t->loop), a->node_pk);
        return auth_fail(c, SHOAL_EPERM, "node key revoked (deny-keys)");
    }
    struct ident *id = c->authed ? ident_find(c, a->node_pk, a->role) : NULL;
    bool known = id != NULL;
    uint64_t bind = bind_hash(t, a);
    if (known && id->bind != bind)
        return auth_fail(c, SHOAL_EPERM, "identity switch changes zone, address or session");
    if (known && uv_now(t->loop) >= id->deadline_ms)
        return auth_fail(c, SHOAL_EEXPIRED, "credential expired");
    if (known && a->role == SHOAL_ROLE_PUBLISHER && a->has_publisher &&
        !shoal_keyset_contains(t->cfg.publisher_keys, a->publisher_pk))
        return publisher_refuse(c, a->publisher_pk);
    if (!known) {
        struct shoal_cred cred;
        if ((rv = shoal_cred_decode(&cred, a->cred.p, a->cred.len)) != 0)
            return auth_fail(c, rv, "no valid credential");
        if (memcmp(cred.node_pk, a->node_pk, 32) != 0)
            return auth_fail(c, SHOAL_EPERM, "credential is for another node key");
        rv = shoal_cred_verify(&cred, t->cfg.cluster_keys, (uint64_t)time(NULL));
        if (rv == SHOAL_EEXPIRED) {
            /* A node the fleet knew, now shut out: rollout status says so. */
            if (a->role == SHOAL_ROLE_NODE)
                shoal_reg_node_refused(t->reg, uv_now(t->loop), a->node_pk);
            return auth_fail(c, rv, "credential expired");
        }
        if (rv == SHOAL_EUNTRUSTED)
            return auth_fail(c, rv, "credential not signed by a trusted cluster key");
        if (rv)
            return auth_fail(c, rv, "credential signature does not verify");
        /* A login that asks for a sealed session signed what it asked for
         * (auth.h): one relayed with anything changed or left out fails. */
        if (a->has_client_eph ? shoal_trk_auth_verify_bound(c->nonce, a) != 0
                              : shoal_trk_auth_verify(a->sig, c->nonce, a->node_pk) != 0)
            return auth_fail(c, SHOAL_EBADSIG, "challenge signature does not verify");
        if (a->role != SHOAL_ROLE_NODE && !shoal_keyset_contains(t->cfg.admin_keys, a->node_pk))
            return auth_fail(c, SHOAL_EPERM, "key not allowed the requested role");
        if (a->role == SHOAL_ROLE_PUBLISHER && a->has_publisher &&
            !shoal_keyset_contains(t->cfg.publisher_keys, a->publisher_pk))
            return publisher_refuse(c, a->publisher_pk);
        /* One key cannot take every connection slot: count connections
         * per key, once per connection whatever the roles. */
        bool counted = !conn_has_key(c, a->node_pk);
        if (counted && (rv = key_acquire(t, a->node_pk)) != 0) {
            if (rv == SHOAL_EBUSY)
                return key_refuse(c, a->node_pk);
            return auth_fail(c, rv, "out of memory");
        }
        if ((id = ident_add(c, a->node_pk, a->role, &rv)) == NULL) {
            if (counted)
                key_release(t, a->node_pk);
            return auth_fail(c, rv, "too many identities on one connection");
        }
        id->counted = counted;
        id->bind = bind;
        id->has_session = a->has_session;
        memcpy(id->session, a->session, SHOAL_MSG_SESSION_LEN);
        id->deadline_ms = cred_deadline(t, cred.expires_unix);
    }
    c->cred_deadline_ms = id->deadline_ms;
    if (a->role != SHOAL_ROLE_NODE)
        c->big_ok = true;
    memcpy(c->pk, a->node_pk, 32);
    c->role = a->role;
    copy_str(c->zone, &a->zone);
    copy_str(c->addr, &a->listen_addr);
    if (!c->authed) {
        c->authed = true;
        unauth_unlink(c);
        /* The timer now watches for silence instead. */
        uv_timer_start(&c->timer, on_idle_check, t->cfg.idle_timeout_ms / 2 + 1,
                       t->cfg.idle_timeout_ms / 2 + 1);
        shoal_frame_dec_set_max(&c->dec, FRAME_MAX_AUTHED + SHOAL_TRK_SEAL_TAG);
        if (a->role != SHOAL_ROLE_NODE) {
            char hex[65];
            shoal_hex(hex, a->node_pk, 32);
            shoal_tracker_log("%s authenticated as %s %.16s", c->peer, role_name(a->role), hex);
        }
    }
    if (a->has_client_nonce && t->cfg.id_key && (rv = send_proof(c, a)) != 0)
        return rv;
    if ((rv = send_ok(c, 0)) != 0)
        return rv;
    if (c->seal_next) {
        c->seal_next = false;
        c->seal.on = true;
    }
    /* A fresh nonce lets the client prove another identity next. */
    return known ? 0 : send_challenge(c);
}

/* ---- requests ---- */

/* Why peers could not dial |addr| ("host:port" or "[v6]:port"), or NULL
 * when they might: a wildcard host (a node listening on 0.0.0.0 or :: that
 * announced its listen address as is) would make every node that gets it
 * dial itself, and port 0 is nobody. A host that is not a numeric address
 * is left to the nodes. */
static const char *addr_unusable(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    char host[SHOAL_MSG_ADDR_MAX + 1];
    unsigned char raw[16];
    char *end;
    size_t hl;

    if (!colon || colon == addr)
        return "it is not host:port";
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port > 65535)
        return "its port is not a number from 1 to 65535";
    if (port == 0)
        return "its port is 0";
    hl = (size_t)(colon - addr);
    if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') {
        addr++;
        hl -= 2;
    }
    memcpy(host, addr, hl);
    host[hl] = 0;
    if (uv_inet_pton(AF_INET, host, raw) == 0)
        return memcmp(raw, "\0\0\0\0", 4) == 0 ? "its host is the wildcard 0.0.0.0" : NULL;
    if (uv_inet_pton(AF_INET6, host, raw) == 0) {
        static const unsigned char zero[16];
        return memcmp(raw, zero, 16) == 0 ? "its host is the wildcard ::" : NULL;
    }
    return NULL;
}

static int handle_announce(struct conn *c, uint64_t now)
{
    struct shoal_tracker *t = c->t;
    const struct shoal_msg_announce *a = &t->msg.u.announce;
    const char *bad = addr_unusable(c->addr);
    if (bad) {
        char why[SHOAL_MSG_ADDR_MAX + 160];
        snprintf(why, sizeof why, "address %s cannot be dialled by peers: %s (set --advertise "
                 "HOST:PORT)", c->addr, bad);
        if (!c->addr_refused_logged) {
            c->addr_refused_logged = true;
            shoal_tracker_log("%s: announce refused: %s", c->peer, why);
        }
        return send_error(c, SHOAL_EBADMSG, why);
    }
    for (uint32_t i = 0; i < a->count; i++) {
        memcpy(t->haves[i].manifest_id, a->entries[i].manifest_id, 32);
        t->haves[i].have_chunks = a->entries[i].have_chunks;
        t->haves[i].total_chunks = a->entries[i].total_chunks;
        t->haves[i].complete = a->entries[i].complete;
    }
    int rv = shoal_reg_announce(t->reg, now, c->pk, c->addr, c->zone, t->haves, a->count,
                                t->roles);
    if (rv)
        return send_error(c, rv, rv == SHOAL_ELIMIT ? "tracker is full" : shoal_strerror(rv));
    /* A key's first announce on a connection may start a new process
     * session: a daemon that restarted may have lost what it leased or
     * fetched from the origin, and nobody else could lease those chunks
     * until its old leases and fetched credit timed out. A daemon that
     * merely lost its connection logs in with the session id it drew at
     * start and still runs its origin fetches: voiding its leases would
     * refuse their LEASE_DONE and grant the same chunks to another node,
     * so the origin would serve them twice. A daemon announces before
     * anything else on a connection, so voiding never hits a lease it took
     * on this one.
     * What a client can do with the session id: nothing beyond its own
     * key's state, since only the holder of the node key and a cluster
     * credential gets here as that key, and the id is a label, not a
     * secret; like zone and address it is not signed, as whoever can alter
     * this connection can announce and report leases for the key anyway.
     * Repeating an old id after a real restart keeps its leases until
     * --lease-ms and its fetched credit under the fetched TTL, as for any
     * node that goes quiet (at most SHOAL_REG_LEASES_PER_NODE spans); a
     * fresh id on every connection voids only its own leases and credit,
     * costing at most repeated origin fetches that a credentialed node
     * could make anyway. */
    struct ident *id = ident_find(c, c->pk, c->role);
    if (id && !id->announced) {
        uint32_t nl, nc;
        id->announced = true;
        if (shoal_reg_node_session(t->reg, c->pk, id->has_session ? id->session : NULL, &nl)) {
            char hex[65];
            shoal_hex(hex, c->pk, 32);
            shoal_tracker_log("%s: node %.16s reconnected in the same session: kept its %u "
                              "origin lease%s and fetched credit", c->peer, hex, nl,
                              nl == 1 ? "" : "s");
        } else if (shoal_reg_node_restarted(t->reg, c->pk, &nl, &nc)) {
            char hex[65];
            shoal_hex(hex, c->pk, 32);
            shoal_tracker_log("%s: node %.16s announced in a new session: voided %u origin "
                              "lease%s, %u fetched chunk%s leasable again",
                              c->peer, hex, nl, nl == 1 ? "" : "s", nc, nc == 1 ? "" : "s");
        }
    }
    size_t n = shoal_reg_rollouts_for(t->reg, c->zone, true, t->desired, SHOAL_MSG_DESIRED_MAX);
    struct shoal_msg *m = &t->reply;
    m->type = SHOAL_MSG_ANNOUNCE_REPLY;
    m->u.announce_reply.interval_ms = t->cfg.reg.announce_interval_ms;
    m->u.announce_reply.count = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        memcpy(m->u.announce_reply.desired[i].manifest_id, t->desired[i].manifest_id, 32);
        m->u.announce_reply.desired[i].repo.p = t->desired[i].repo_at_rev;
        m->u.announce_reply.desired[i].repo.len = (uint32_t)strlen(t->desired[i].repo_at_rev);
        m->u.announce_reply.desired[i].has_ref = t->desired[i].ref[0] != '\0';
        m->u.announce_reply.desired[i].ref.p = t->desired[i].ref;
        m->u.announce_reply.desired[i].ref.len = (uint32_t)strlen(t->desired[i].ref);
    }
    /* Roles only for what the node still fetches: a complete release
     * needs none, and the reply stays small for a node full of seeds. The
     * interval is the least its roles ask: a provisional import share
     * asks for a sooner announce, so the node learns its smaller share
     * soon after its zone grows (old daemons honour it too: they always
     * took the reply's interval, within 200 ms .. 10 min). */
    uint32_t nr = 0;
    for (uint32_t i = 0; i < a->count; i++) {
        if (a->entries[i].complete || t->roles[i].untracked)
            continue;
        if (t->roles[i].interval_ms < m->u.announce_reply.interval_ms)
            m->u.announce_reply.interval_ms = t->roles[i].interval_ms;
        struct shoal_msg_role *ro = &m->u.announce_reply.roles[nr++];
        memcpy(ro->manifest_id, a->entries[i].manifest_id, 32);
        ro->fetcher = t->roles[i].fetcher;
        ro->import_mod = t->roles[i].import_mod;
        ro->import_rem = t->roles[i].import_rem;
    }
    m->u.announce_reply.nroles = nr;
    return conn_send(c, m);
}

static int handle_get_peers(struct conn *c, uint64_t now)
{
    struct shoal_tracker *t = c->t;
    const struct shoal_msg_get_peers *g = &t->msg.u.get_peers;
    size_t n = shoal_reg_peers(t->reg, now, g->manifest_id, c->pk, c->zone, t->peers, g->max);
    struct shoal_msg *m = &t->reply;
    m->type = SHOAL_MSG_PEERS;
    memcpy(m->u.peers.manifest_id, g->manifest_id, 32);
    m->u.peers.count = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        struct shoal_msg_peer *p = &m->u.peers.peers[i];
        memcpy(p->node_pk, t->peers[i].node_pk, 32);
        p->addr.p = t->peers[i].addr;
        p->addr.len = (uint32_t)strlen(t->peers[i].addr);
        p->zone.p = t->peers[i].zone;
        p->zone.len = (uint32_t)strlen(t->peers[i].zone);
        p->complete = t->peers[i].complete;
        p->have_chunks = t->peers[i].have_chunks;
    }
    return conn_send(c, m);
}

/* <dir>/<id hex>.manifest into |out| (|cap| bytes); false if too long. */
static bool manifest_path(const char *dir, const uint8_t id[32], char *out, size_t cap)
{
    char hex[65];
    shoal_hex(hex, id, 32);
    int n = snprintf(out, cap, "%s/%s.manifest", dir, hex);
    return n > 0 && (size_t)n < cap;
}

/* Keeps a newly registered manifest's signed bytes in --manifest-dir, so
 * a restart does not forget one no node holds (a rollback target). On the
 * loop: registrations are rare (publishes, and re-puts after a restart of
 * manifests not kept yet). A failure only costs that: logged. */
static void keep_manifest(struct shoal_tracker *t, const uint8_t id[32], const uint8_t *p,
                          size_t len)
{
    char path[4096];
    struct stat st;
    if (!t->cfg.manifest_dir || !manifest_path(t->cfg.manifest_dir, id, path, sizeof path) ||
        stat(path, &st) == 0)
        return;
    int rv = shoal_write_file_atomic(path, p, len);
    if (rv)
        shoal_tracker_log("manifest not kept in %s: %s (a restart forgets it unless a node "
                          "holds it)", path, strerror(-rv));
}

int shoal_tracker_load_manifests(struct shoal_tracker *t, unsigned *loaded, unsigned *expired,
                                 unsigned *refused)
{
    const char *dir = t->cfg.manifest_dir;
    uint64_t now = uv_now(t->loop);
    time_t wall = time(NULL);
    DIR *d;
    struct dirent *e;
    *loaded = *expired = *refused = 0;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -errno;
    if (!(d = opendir(dir)))
        return -errno;
    while ((e = readdir(d)) != NULL) {
        uint8_t want[32], *data = NULL;
        size_t len = 0;
        char path[4096];
        struct stat st;
        struct shoal_manifest *mf = NULL;
        const char *why = NULL;
        if (strlen(e->d_name) != 64 + strlen(".manifest") ||
            strcmp(e->d_name + 64, ".manifest") != 0 || shoal_unhex(want, 32, e->d_name, 64) != 0 ||
            !manifest_path(dir, want, path, sizeof path))
            continue;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (t->cfg.reg.manifest_ttl_ms && st.st_mtime < wall &&
            (uint64_t)(wall - st.st_mtime) * 1000 > t->cfg.reg.manifest_ttl_ms) {
            *expired += unlink(path) == 0;
            continue;
        }
        int rv = shoal_read_file(path, SHOAL_MSG_MANIFEST_MAX, &data, &len);
        if (rv == 0)
            rv = shoal_manifest_parse(&mf, data, len, t->cfg.publisher_keys, NULL);
        if (rv)
            why = shoal_strerror(rv);
        else if (memcmp(shoal_manifest_id(mf), want, 32) != 0)
            why = "its bytes do not hash to its name";
        else if ((rv = shoal_reg_put_manifest_ex(t->reg, want,
                                                 (uint8_t)shoal_manifest_repo_type(mf),
                                                 shoal_manifest_repo_id(mf),
                                                 shoal_manifest_commit(mf),
                                                 shoal_manifest_nchunks(mf),
                                                 shoal_manifest_created(mf), data, len)) != 0)
            why = rv == SHOAL_ELIMIT ? "the manifest store is full" : shoal_strerror(rv);
        if (why) {
            if ((*refused)++ < 8)
                shoal_tracker_log("manifest file %s not registered: %s", path, why);
        } else {
            shoal_reg_manifest_used(t->reg, want, now);
            (*loaded)++;
        }
        shoal_manifest_free(mf);
        free(data);
    }
    closedir(d);
    return 0;
}

static int handle_put_manifest(struct conn *c)
{
    struct shoal_tracker *t = c->t;
    const struct shoal_bytes *b = &t->msg.u.put_manifest.signed_manifest;
    struct shoal_manifest *mf = NULL;
    int rv;
    if (!t->cfg.publisher_keys || shoal_keyset_count(t->cfg.publisher_keys) == 0) {
        rv = send_error(c, SHOAL_EUNTRUSTED, "this tracker trusts no publisher keys");
        goto out;
    }
    /* The id is the hash of the signed bytes: a manifest already held (the
     * common re-put after a restart, or a replay) costs a hash, not a
     * full parse and signature check. */
    uint8_t early_id[32];
    struct shoal_reg_manifest held;
    shoal_chunk_id(early_id, b->p, b->len);
    if (shoal_reg_manifest_by_id(t->reg, early_id, &held) == 0 && held.signed_len == b->len &&
        memcmp(held.signed_bytes, b->p, b->len) == 0) {
        shoal_reg_manifest_used(t->reg, early_id, uv_now(t->loop));
        rv = send_ok(c, 0);
        goto out;
    }
    t->manifest_verifies++;
    rv = shoal_manifest_parse(&mf, b->p, b->len, t->cfg.publisher_keys, NULL);
    if (rv) {
        int code = rv;
        shoal_tracker_log("manifest from %s refused: %s", c->peer, shoal_strerror(code));
        rv = send_error(c, code, code == SHOAL_EUNTRUSTED ? "manifest signer is not a trusted publisher"
                                 : code == SHOAL_EBADSIG ? "manifest signature does not verify"
                                                         : "manifest is invalid");
        goto out;
    }
    const uint8_t *id = shoal_manifest_id(mf);
    struct shoal_reg_manifest old;
    bool had = shoal_reg_manifest_by_id(t->reg, id, &old) == 0;
    rv = shoal_reg_put_manifest_ex(t->reg, id, (uint8_t)shoal_manifest_repo_type(mf),
                                   shoal_manifest_repo_id(mf), shoal_manifest_commit(mf),
                                   shoal_manifest_nchunks(mf), shoal_manifest_created(mf), b->p,
                                   b->len);
    if (rv) {
        rv = send_error(c, rv, rv == SHOAL_ELIMIT ? "tracker manifest store is full"
                                                  : shoal_strerror(rv));
        goto out;
    }
    shoal_reg_manifest_used(t->reg, id, uv_now(t->loop));
    if (!had) {
        char hex[65], name[SHOAL_RELNAME_MAX + 1];
        shoal_hex(hex, id, 32);
        (void)shoal_manifest_name(mf, name, sizeof name);
        shoal_tracker_log("manifest registered %s id %s (%u chunks, %u bytes) from %s", name,
                          hex, shoal_manifest_nchunks(mf), b->len, c->peer);
    }
    if (!had || !old.signed_bytes)
        keep_manifest(t, id, b->p, b->len);
    rv = send_ok(c, 0);
out:
    shoal_manifest_free(mf);
    return rv;
}

static int handle_get_manifest(struct conn *c)
{
    struct shoal_tracker *t = c->t;
    const struct shoal_msg_get_manifest *g = &t->msg.u.get_manifest;
    struct shoal_reg_manifest mf;
    int rv = g->has_id ? shoal_reg_manifest_by_id(t->reg, g->by_id, &mf)
                       : shoal_reg_manifest_by_name(t->reg, g->repo_at_rev.p, g->repo_at_rev.len,
                                                    &mf);
    if (rv)
        return send_error(c, SHOAL_ENOTFOUND, "no such manifest");
    /* The signed bytes are sent by reference, held until the write is
     * done (the registry may forget the manifest meanwhile, see
     * registry.h), so a small request never copies megabytes into the
     * output queue. Replies gathered so far go first to keep the order. */
    shoal_reg_manifest_used(t->reg, mf.id, uv_now(t->loop));
    if (c->seal.on) {
        /* Sealed: a copy, sealed with the other replies in order. */
        struct shoal_msg *m = &t->reply;
        m->type = SHOAL_MSG_MANIFEST;
        memcpy(m->u.manifest.manifest_id, mf.id, 32);
        m->u.manifest.signed_manifest.p = mf.signed_bytes;
        m->u.manifest.signed_manifest.len = (uint32_t)mf.signed_len;
        return conn_send(c, m);
    }
    conn_flush(c);
    if (c->closing)
        return 1;
    struct shoal_buf hb;
    struct shoal_mpw w;
    shoal_buf_init(&hb, 64);
    rv = shoal_buf_append(&hb, "\0\0\0\0", SHOAL_FRAME_HDR_LEN);
    shoal_mpw_init(&w, &hb);
    shoal_mpw_array(&w, 3);
    shoal_mpw_uint(&w, SHOAL_MSG_MANIFEST);
    shoal_mpw_bin(&w, mf.id, 32);
    shoal_mpw_bin_header(&w, mf.signed_len);
    if (rv == 0)
        rv = w.err;
    if (rv == 0)
        rv = shoal_frame_header(hb.data, hb.len - SHOAL_FRAME_HDR_LEN + mf.signed_len);
    struct wreq *wr = rv == 0 ? malloc(sizeof(*wr)) : NULL;
    if (!wr) {
        shoal_buf_free(&hb);
        shoal_tracker_log("closing %s: cannot queue a manifest", c->peer);
        conn_close(c);
        return 1;
    }
    size_t hlen;
    wr->base = shoal_buf_steal(&hb, &hlen);
    wr->copy = hlen;
    wr->len = hlen + mf.signed_len;
    wr->ref = mf.signed_bytes;
    shoal_reg_bytes_hold(wr->ref);
    uv_buf_t bufs[2] = { uv_buf_init((char *)wr->base, (unsigned)hlen),
                         uv_buf_init((char *)mf.signed_bytes, (unsigned)mf.signed_len) };
    return conn_write(c, wr, bufs, 2);
}

/* How long after start this process grants re-claimed spans it does not
 * hold: the nodes of a fleet are back within a second or two of a restart
 * (they redial a down tracker every quarter of --lease-fallback-ms). */
#define RECLAIM_WINDOW_MS 30000u

/* A node re-claims a lease it holds from an earlier connection (this
 * tracker may have restarted since and lost it): granted as that very
 * span, or refused with SHOAL_EBUSY so the node drops it (see
 * shoal_reg_lease_reclaim for the rules). */
static int handle_lease_reclaim(struct conn *c, uint64_t now)
{
    struct shoal_tracker *t = c->t;
    const struct shoal_msg_lease_req *q = &t->msg.u.lease_req;
    uint64_t expires;
    /* Spans it does not hold are granted only while this process may
     * have lost leases: within RECLAIM_WINDOW_MS (or the start grace) of
     * its start. */
    uint64_t window = t->cfg.start_grace_ms > RECLAIM_WINDOW_MS ? t->cfg.start_grace_ms
                                                                : RECLAIM_WINDOW_MS;
    int rv = shoal_reg_lease_reclaim(t->reg, now, q->manifest_id, c->pk, q->hint_chunk,
                                     q->claim_count, q->claim_ms,
                                     now - t->started_ms < window, &expires);
    if (rv == SHOAL_EBUSY) {
        char hex[65], mid[65], more[96];
        if (log_due(t, &t->log_reclaim, more, sizeof more)) {
            shoal_hex(hex, c->pk, 32);
            shoal_hex(mid, q->manifest_id, 32);
            shoal_tracker_log("node %.16s re-claimed its lease of chunks %u..%u of %.16s: "
                              "refused, another node leased or fetched some of them first, or "
                              "this tracker did not grant it%s", hex, q->hint_chunk,
                              q->hint_chunk + q->claim_count - 1, mid, more);
        }
        return send_error(c, rv, "span leased to or fetched by another node, or not granted here");
    }
    if (rv == SHOAL_ETOOBIG)
        return send_error(c, SHOAL_ENOTFOUND, "manifest not published to this tracker");
    if (rv)
        return send_error(c, rv, shoal_strerror(rv));
    struct shoal_msg *m = &t->reply;
    m->type = SHOAL_MSG_LEASE;
    memcpy(m->u.lease.manifest_id, q->manifest_id, 32);
    m->u.lease.first = q->hint_chunk;
    m->u.lease.count = q->claim_count;
    m->u.lease.expires_ms = expires > now ? (uint32_t)(expires - now) : 1;
    m->u.lease.retry_after_ms = 0;
    return conn_send(c, m);
}

static int handle_lease_req(struct conn *c, uint64_t now)
{
    struct shoal_tracker *t = c->t;
    const struct shoal_msg_lease_req *q = &t->msg.u.lease_req;
    uint32_t first, count;
    uint64_t expires;
    struct shoal_reg_stats before, after;
    if (q->flags & SHOAL_LEASE_GIVE_BACK) {
        uint32_t ended;
        char hex[65], mid[65];
        shoal_reg_lease_give_back(t->reg, now, q->manifest_id, c->pk, &ended);
        shoal_hex(hex, c->pk, 32);
        shoal_hex(mid, q->manifest_id, 32);
        shoal_tracker_log("node %.16s gave back %u origin lease(s) of %.16s: the origin refuses "
                          "it; their chunks are free for other nodes", hex, ended, mid);
        struct shoal_msg *m = &t->reply;
        m->type = SHOAL_MSG_LEASE;
        memcpy(m->u.lease.manifest_id, q->manifest_id, 32);
        m->u.lease.first = m->u.lease.count = m->u.lease.expires_ms = 0;
        m->u.lease.retry_after_ms = LEASE_RETRY_MS;
        return conn_send(c, m);
    }
    if (q->flags & SHOAL_LEASE_RECLAIM)
        return handle_lease_reclaim(c, now);
    /* Restarted mid-rollout (some node announces part of the release), this
     * process knows none of the leases nodes are still fetching under; each
     * re-claims its own at login, but a node back first would otherwise be
     * granted spans another, still redialling (at most 1.25 s apart at the
     * defaults), is fetching: the origin served them twice (1.17x the
     * release in one run of 3 of ops_tracker_restart_leases). New grants
     * wait for the grace; re-claims do not. */
    if (now - t->started_ms < t->cfg.start_grace_ms &&
        shoal_reg_partly_held(t->reg, now, q->manifest_id)) {
        struct shoal_msg *m = &t->reply;
        m->type = SHOAL_MSG_LEASE;
        memcpy(m->u.lease.manifest_id, q->manifest_id, 32);
        m->u.lease.first = m->u.lease.count = m->u.lease.expires_ms = 0;
        m->u.lease.retry_after_ms = (uint32_t)(t->cfg.start_grace_ms - (now - t->started_ms));
        return conn_send(c, m);
    }
    shoal_reg_stats(t->reg, &before);
    /* Chunk count 0: only manifests published here (signed) get leases;
     * an announce's total_chunks never sizes lease state. */
    int rv = shoal_reg_lease(t->reg, now, q->manifest_id, 0, c->pk, q->max_chunks, q->hint_chunk,
                             (q->flags & SHOAL_LEASE_HINT_MISSING ? SHOAL_REG_HINT_MISSING : 0) |
                                 (q->flags & SHOAL_LEASE_HINT_STARVED ? SHOAL_REG_HINT_STARVED : 0),
                             &first, &count, &expires);
    shoal_reg_stats(t->reg, &after);
    if (rv == 0 && after.leases_regranted != before.leases_regranted) {
        char hex[65], mid[65];
        shoal_hex(hex, c->pk, 32);
        shoal_hex(mid, q->manifest_id, 32);
        shoal_tracker_log("node %.16s granted its lease of chunks %u..%u of %.16s again: "
                          "held since before it reconnected and never reported on, so the "
                          "reply may have been lost", hex, first, first + count - 1, mid);
    }
    if (rv == SHOAL_ETOOBIG)
        return send_error(c, SHOAL_ENOTFOUND, "manifest not published to this tracker");
    if (rv && rv != SHOAL_EBUSY)
        return send_error(c, rv, shoal_strerror(rv));
    struct shoal_msg *m = &t->reply;
    m->type = SHOAL_MSG_LEASE;
    memcpy(m->u.lease.manifest_id, q->manifest_id, 32);
    m->u.lease.first = first;
    m->u.lease.count = count;
    m->u.lease.expires_ms = count ? (uint32_t)(expires - now) : 0;
    m->u.lease.retry_after_ms = count ? 0 : LEASE_RETRY_MS;
    return conn_send(c, m);
}

static int handle_lease_done(struct conn *c, uint64_t now)
{
    const struct shoal_msg_lease_done *d = &c->t->msg.u.lease_done;
    int rv = shoal_reg_lease_done(c->t->reg, now, d->manifest_id, c->pk, d->first, d->count);
    if (rv)
        return send_error(c, rv, "no such lease (expired or not yours)");
    return send_ok(c, 0);
}

/* A node leaving on purpose (shoald shutting down) says BYE: it is
 * forgotten at once, every node identity of the connection, instead of when
 * its leases and then its announces time out (a rolling restart of a
 * fleet would otherwise stall the rest for a minute or more per fetcher).
 * Only an identity whose session is the one the node key last announced
 * in: a BYE from an old process's connection, still closing after a new
 * process of the same key announced, forgot the new one's leases and
 * fetched credit, which it then reported against nothing. */
static int handle_bye(struct conn *c)
{
    struct shoal_tracker *t = c->t;
    const struct shoal_str *why = &t->msg.u.bye.text;
    uint32_t n = 0;
    char hex[65] = "";
    for (uint32_t i = 0; i < c->ids_cap; i++) {
        const struct ident *id = &c->ids[i];
        if (!id->used || id->role != SHOAL_ROLE_NODE)
            continue;
        if (shoal_reg_node_session_other(t->reg, id->pk, id->has_session ? id->session : NULL)) {
            char old[65];
            shoal_hex(old, id->pk, 32);
            shoal_tracker_log("node %.16s said BYE (%.*s) from an old session; a new one has "
                              "announced since: kept", old,
                              (int)(why->len > 200 ? 200 : why->len), why->p ? why->p : "");
            continue;
        }
        if (shoal_reg_remove_node_why(t->reg, id->pk, SHOAL_REG_GONE_LEFT) == 0 && n++ == 0)
            shoal_hex(hex, id->pk, 32);
    }
    t->nodes_left += n;
    if (n == 1)
        shoal_tracker_log("node %.16s left (%.*s): forgotten at once (its origin leases end, "
                          "chunks only it fetched are leasable again)", hex,
                          (int)(why->len > 200 ? 200 : why->len), why->p ? why->p : "");
    else if (n > 1)
        shoal_tracker_log("%u nodes of connection %s left (%.*s): forgotten at once", n, c->peer,
                          (int)(why->len > 200 ? 200 : why->len), why->p ? why->p : "");
    conn_close(c);
    return 1;
}

/* A branch name a node could write as refs/<ref> (the node checks again
 * with the Hub cache's rules): printable, no path tricks. */
static bool ref_ok(const char *ref)
{
    bool ok = ref[0] && ref[0] != '/' && ref[0] != '-' && ref[0] != '.' &&
              !strstr(ref, "..") && !strstr(ref, "//") && ref[strlen(ref) - 1] != '/';
    for (const char *p = ref; ok && *p; p++)
        ok = (unsigned char)*p > ' ' && *p != 0x7f && *p != '\\';
    return ok;
}

static int handle_rollout(struct conn *c)
{
    const struct shoal_msg_rollout *ro = &c->t->msg.u.rollout;
    if (c->role != SHOAL_ROLE_ADMIN)
        return send_error(c, SHOAL_EPERM, "rollout needs the admin role");
    char name[SHOAL_MSG_REPO_MAX + 1], zone[SHOAL_MSG_ZONE_MAX + 1] = "";
    copy_str(name, &ro->repo_at_rev);
    if (ro->has_zone)
        copy_str(zone, &ro->zone);
    /* Nodes act on a rollout only through the manifest registered under
     * its name: refuse one no node could act on (a typo, or a release not
     * published here yet) rather than record it silently. A removal needs
     * none, so old entries can always be withdrawn. */
    struct shoal_reg_manifest mf;
    if (!ro->remove && shoal_reg_manifest_by_name(c->t->reg, name, strlen(name), &mf) != 0) {
        char why[SHOAL_MSG_REPO_MAX + 400];
        /* Registered manifests live in memory: after a restart only those
         * nodes still hold (and re-put) are back. A node keeps the signed
         * file of every release it held, so the operator need not read
         * the release from the Hub again. */
        snprintf(why, sizeof why, "no manifest registered for %s: publish it first (shoal "
                 "publish); if it was published before this tracker restarted, register the "
                 "signed manifest a node kept, without the Hub: shoal publish --manifest "
                 "<cache>/models--ORG--NAME/.shoal/<id>.manifest (datasets--ORG--NAME for a "
                 "dataset)", name);
        shoal_tracker_log("rollout of %s refused (asked by %s): no manifest registered", name,
                          c->peer);
        return send_error(c, SHOAL_ENOTFOUND, why);
    }
    char ref[SHOAL_MSG_REF_MAX + 1] = "";
    if (ro->has_ref && !ro->remove) {
        copy_str(ref, &ro->ref);
        if (!ref_ok(ref))
            return send_error(c, SHOAL_EBADMSG, "not a branch name nodes can write as refs/<ref>");
    }
    /* What the registry held before, to undo a change the file cannot
     * keep and to tell whether anything changed (a ref may move alone). */
    struct shoal_reg_rollout_refs *was = malloc(2 * sizeof *was), *now = was + 1;
    if (!was)
        return send_error(c, -ENOMEM, "out of memory");
    shoal_reg_rollout_refs_get(c->t->reg, was);
    int rv = ref[0] ? shoal_reg_rollout_set_ref(c->t->reg, name, zone, ref)
                    : shoal_reg_rollout_set(c->t->reg, name, zone, ro->remove);
    if (rv) {
        char why[SHOAL_MSG_REPO_MAX + SHOAL_MSG_ZONE_MAX + 160];
        if (rv == SHOAL_ENOTFOUND && ro->remove)
            snprintf(why, sizeof why, "no rollout of %s is recorded%s%s", name,
                     zone[0] ? " for zone " : " for the whole fleet", zone);
        else
            snprintf(why, sizeof why, "%s", rv == SHOAL_EBADMSG ? "expected org/name@commit (40 "
                                                                  "lowercase hex digits)"
                                            : rv == SHOAL_ELIMIT ? "too many rollouts (at most 64 "
                                                                   "entries; `shoal rollout --list` "
                                                                   "shows them, `shoal rollout "
                                                                   "NAME --remove` withdraws one)"
                                                                 : shoal_strerror(rv));
        free(was);
        return send_error(c, rv, why);
    }
    shoal_reg_rollout_refs_get(c->t->reg, now);
    bool changed = !shoal_reg_rollout_refs_equal(was, now);
    /* Written on the loop: rollouts are rare operator actions and the file
     * is small. A rollout the tracker could not record is undone, so what
     * the admin is told matches what a restart will bring back. */
    if (changed && c->t->cfg.rollout_file) {
        int wrv = shoal_rollfile_save(c->t->cfg.rollout_file, c->t->reg);
        if (wrv) {
            char why[512];
            if (shoal_reg_rollout_count(c->t->reg) != was->n)
                (void)shoal_reg_rollout_set(c->t->reg, name, zone, !ro->remove);
            shoal_reg_rollout_refs_restore(c->t->reg, was);
            free(was);
            snprintf(why, sizeof why, "rollout not %s: cannot write %s: %s",
                     ro->remove ? "removed" : "set", c->t->cfg.rollout_file, strerror(-wrv));
            shoal_tracker_log("%s (asked by %s)", why, c->peer);
            return send_error(c, wrv, why);
        }
    }
    free(was);
    shoal_tracker_log("rollout %s %s%s%s%s%s by %s", ro->remove ? "removed" : "set", name,
                      *zone ? " zone " : "", zone, *ref ? " ref " : "", ref, c->peer);
    return send_ok(c, 0);
}

static int handle_rollout_status(struct conn *c, uint64_t now)
{
    struct shoal_tracker *t = c->t;
    const struct shoal_str *name = &t->msg.u.rollout_status_req.text;
    struct shoal_reg_manifest mf;
    uint8_t zero[32] = { 0 };
    bool known = shoal_reg_manifest_by_name(t->reg, name->p, name->len, &mf) == 0;
    struct shoal_msg *m = &t->reply;
    m->type = SHOAL_MSG_ROLLOUT_STATUS;
    m->u.rollout_status.repo_at_rev = *name;
    m->u.rollout_status.has_manifest_id = known;
    if (known)
        memcpy(m->u.rollout_status.manifest_id, mf.id, 32);
    shoal_reg_rollout_status(t->reg, now, known ? mf.id : zero, &m->u.rollout_status.complete,
                             &m->u.rollout_status.partial, &m->u.rollout_status.none);
    char name_z[SHOAL_MSG_REPO_MAX + 1];
    copy_str(name_z, name);
    shoal_reg_rollout_gone(t->reg, now, name_z, &m->u.rollout_status.gone_lost,
                           &m->u.rollout_status.gone_left, &m->u.rollout_status.gone_refused);
    return conn_send(c, m);
}

/* Every rollout recorded, with ROLLOUT_STATUS's counts for each: what an
 * operator otherwise reads only in the rollout file on the tracker host. */
static int handle_rollout_list(struct conn *c, uint64_t now)
{
    struct shoal_tracker *t = c->t;
    struct shoal_reg_rollout_entry all[SHOAL_REG_ROLLOUTS_MAX];
    size_t n = shoal_reg_rollouts_all(t->reg, all, SHOAL_MSG_ROLLOUTS_MAX);
    struct shoal_msg *m = &t->reply;
    uint8_t zero[32] = { 0 };
    m->type = SHOAL_MSG_ROLLOUT_LIST;
    memset(&m->u.rollout_list, 0, sizeof m->u.rollout_list);
    m->u.rollout_list.count = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        struct shoal_msg_rollout_entry *e = &m->u.rollout_list.e[i];
        struct shoal_reg_manifest mf;
        const char *name = all[i].repo_at_rev;
        bool known = shoal_reg_manifest_by_name(t->reg, name, strlen(name), &mf) == 0;
        e->repo_at_rev.p = name;
        e->repo_at_rev.len = (uint32_t)strlen(name);
        e->has_zone = all[i].zone[0] != '\0';
        e->zone.p = all[i].zone;
        e->zone.len = (uint32_t)strlen(all[i].zone);
        e->has_ref = all[i].ref[0] != '\0';
        e->ref.p = all[i].ref;
        e->ref.len = (uint32_t)strlen(all[i].ref);
        e->has_manifest_id = known;
        if (known)
            memcpy(e->manifest_id, mf.id, 32);
        shoal_reg_rollout_status(t->reg, now, known ? mf.id : zero, &e->complete, &e->partial,
                                 &e->none);
        shoal_reg_rollout_gone(t->reg, now, name, &e->gone_lost, &e->gone_left,
                               &e->gone_refused);
    }
    return conn_send(c, m);
}

static int handle_stats(struct conn *c, uint64_t now)
{
    struct shoal_tracker *t = c->t;
    struct shoal_buf b;
    shoal_buf_init(&b, SHOAL_MSG_STATS_MAX);
    int rv = shoal_reg_prometheus(t->reg, now, &b);
    char extra[4096];
    int n = snprintf(extra, sizeof(extra),
                     "# HELP shoal_tracker_connections Open connections.\n"
                     "# TYPE shoal_tracker_connections gauge\n"
                     "shoal_tracker_connections %u\n"
                     "# HELP shoal_tracker_auth_failures_total Handshakes refused.\n"
                     "# TYPE shoal_tracker_auth_failures_total counter\n"
                     "shoal_tracker_auth_failures_total %" PRIu64 "\n"
                     "# HELP shoal_tracker_bad_input_total Connections closed for bad input.\n"
                     "# TYPE shoal_tracker_bad_input_total counter\n"
                     "shoal_tracker_bad_input_total %" PRIu64 "\n"
                     "# HELP shoal_tracker_connections_evicted_total Unauthenticated "
                     "connections closed to make room.\n"
                     "# TYPE shoal_tracker_connections_evicted_total counter\n"
                     "shoal_tracker_connections_evicted_total %" PRIu64 "\n"
                     "# HELP shoal_tracker_rate_limited_total Requests refused by the "
                     "per-connection rate limit.\n"
                     "# TYPE shoal_tracker_rate_limited_total counter\n"
                     "shoal_tracker_rate_limited_total %" PRIu64 "\n"
                     "# HELP shoal_tracker_manifest_verifies_total Manifests parsed and "
                     "signature-checked.\n"
                     "# TYPE shoal_tracker_manifest_verifies_total counter\n"
                     "shoal_tracker_manifest_verifies_total %" PRIu64 "\n"
                     "# HELP shoal_tracker_partial_bytes Body bytes received for unfinished "
                     "frames.\n"
                     "# TYPE shoal_tracker_partial_bytes gauge\n"
                     "shoal_tracker_partial_bytes %zu\n"
                     "# HELP shoal_tracker_partial_evicted_total Connections closed because "
                     "unfinished frames held more than --max-partial-mb.\n"
                     "# TYPE shoal_tracker_partial_evicted_total counter\n"
                     "shoal_tracker_partial_evicted_total %" PRIu64 "\n"
                     "# HELP shoal_tracker_frames_timed_out_total Connections closed for a "
                     "frame not finished in time.\n"
                     "# TYPE shoal_tracker_frames_timed_out_total counter\n"
                     "shoal_tracker_frames_timed_out_total %" PRIu64 "\n"
                     "# HELP shoal_tracker_frames_refused_total Frames too large for a "
                     "connection without a publisher identity.\n"
                     "# TYPE shoal_tracker_frames_refused_total counter\n"
                     "shoal_tracker_frames_refused_total %" PRIu64 "\n"
                     "# HELP shoal_tracker_conns_per_key_refused_total Authentications "
                     "refused over --max-conns-per-key.\n"
                     "# TYPE shoal_tracker_conns_per_key_refused_total counter\n"
                     "shoal_tracker_conns_per_key_refused_total %" PRIu64 "\n"
                     "# HELP shoal_tracker_nodes_left_total Nodes forgotten at once: they "
                     "said BYE (shutting down).\n"
                     "# TYPE shoal_tracker_nodes_left_total counter\n"
                     "shoal_tracker_nodes_left_total %" PRIu64 "\n"
                     "# HELP shoal_tracker_nodes_gone_total Nodes forgotten --gone-ms after "
                     "their last connection closed.\n"
                     "# TYPE shoal_tracker_nodes_gone_total counter\n"
                     "shoal_tracker_nodes_gone_total %" PRIu64 "\n",
                     t->nconns, t->auth_failures, t->bad_input, t->conns_evicted,
                     t->rate_limited, t->manifest_verifies, t->partial_total,
                     t->partial_evicted, t->frames_timed_out, t->frames_refused,
                     t->conns_key_refused, t->nodes_left, t->nodes_gone);
    if (rv == 0 && (n < 0 || (size_t)n >= sizeof(extra)))
        rv = SHOAL_ELIMIT;
    if (rv == 0)
        rv = shoal_buf_append(&b, extra, (size_t)n);
    if (rv == 0) {
        struct shoal_msg *m = &t->reply;
        m->type = SHOAL_MSG_STATS;
        m->u.stats.text.p = (const char *)b.data;
        m->u.stats.text.len = (uint32_t)b.len;
        rv = conn_send(c, m);
    } else {
        rv = send_error(c, rv, "stats too large");
    }
    shoal_buf_free(&b);
    return rv;
}

/* One frame body from |c|. Returns nonzero to stop feeding (closed). */
static int on_frame(void *user, const uint8_t *body, size_t len)
{
    struct conn *c = user;
    struct shoal_tracker *t = c->t;
    struct shoal_msg *m = &t->msg;
    c->frames_in++;
    if (c->seal.on) {
        int orv = shoal_trk_open_frame(&c->seal, &body, &len, &t->opened, &t->opened_cap);
        if (orv != 0) {
            conn_drop(c, "sealed frame does not open (%s)",
                      orv == -ENOMEM ? "out of memory" : "changed on the way, or out of order");
            return 1;
        }
    }
    int rv = shoal_msg_decode(m, body, len);
    if (rv) {
        conn_drop(c, "malformed message (%s)", shoal_strerror(rv));
        return 1;
    }
    /* conn_track_frame refuses these while they come in; one that arrived
     * before its type could be seen is refused here. */
    if (len > FRAME_MAX_NODE && !c->big_ok && m->type != SHOAL_MSG_PUT_MANIFEST) {
        t->frames_refused++;
        conn_drop(c, "%s of %zu bytes: only PUT_MANIFEST may exceed %u bytes without a "
                  "publisher identity", shoal_msg_type_name(m->type), len, FRAME_MAX_NODE);
        return 1;
    }
    if (!c->authed && m->type != SHOAL_MSG_TRK_AUTH) {
        conn_drop(c, "%s before authentication", shoal_msg_type_name(m->type));
        return 1;
    }
    uint64_t now = uv_now(t->loop);
    /* A credential's end applies to a live session too, not only to the
     * handshake. */
    if (c->authed && m->type != SHOAL_MSG_TRK_AUTH && now >= c->cred_deadline_ms) {
        char hex[65];
        shoal_hex(hex, c->pk, 32);
        shoal_tracker_log("closing %s: credential of %.16s expired", c->peer, hex);
        if (send_error(c, SHOAL_EEXPIRED, "credential expired") == 0)
            c->close_after_flush = true;
        return 1;
    }
    if (m->type == SHOAL_MSG_ROLLOUT_STATUS_REQ || m->type == SHOAL_MSG_STATS_REQ ||
        m->type == SHOAL_MSG_ROLLOUT_LIST_REQ ||
        m->type == SHOAL_MSG_GET_MANIFEST || m->type == SHOAL_MSG_PUT_MANIFEST) {
        c->tokens += (double)(now - c->tokens_ms) * COSTLY_PER_S / 1000.0;
        if (c->tokens > COSTLY_BURST)
            c->tokens = COSTLY_BURST;
        c->tokens_ms = now;
        if (c->tokens < 1) {
            t->rate_limited++;
            rv = send_error(c, SHOAL_EBUSY, "rate limited: retry later");
            goto done;
        }
        c->tokens -= 1;
    }
    switch (m->type) {
    case SHOAL_MSG_TRK_AUTH: rv = handle_auth(c); break;
    case SHOAL_MSG_ANNOUNCE: rv = handle_announce(c, now); break;
    case SHOAL_MSG_GET_PEERS: rv = handle_get_peers(c, now); break;
    case SHOAL_MSG_PUT_MANIFEST: rv = handle_put_manifest(c); break;
    case SHOAL_MSG_GET_MANIFEST: rv = handle_get_manifest(c); break;
    case SHOAL_MSG_LEASE_REQ: rv = handle_lease_req(c, now); break;
    case SHOAL_MSG_LEASE_DONE: rv = handle_lease_done(c, now); break;
    case SHOAL_MSG_ROLLOUT: rv = handle_rollout(c); break;
    case SHOAL_MSG_ROLLOUT_STATUS_REQ: rv = handle_rollout_status(c, now); break;
    case SHOAL_MSG_ROLLOUT_LIST_REQ: rv = handle_rollout_list(c, now); break;
    case SHOAL_MSG_STATS_REQ: rv = handle_stats(c, now); break;
    case SHOAL_MSG_BYE: rv = handle_bye(c); break;
    default:
        conn_drop(c, "unexpected %s", shoal_msg_type_name(m->type));
        rv = 1;
        break;
    }
done:
    /* Stop after this frame when the turn is used up or the peer is not
     * reading its replies; the rest waits in c->pend. */
    return rv || c->closing || c->close_after_flush || --c->frames_left <= 0 ||
           conn_backlogged(c);
}

/* ---- libuv callbacks ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    /* One shared buffer: on_read consumes it fully before returning. */
    if (c->t->rbuf_busy) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    c->t->rbuf_busy = true;
    *buf = uv_buf_init((char *)c->t->rbuf, READ_BUF);
}

static const struct shoal_frame_cb frame_cb = { .on_frame = on_frame };

/* The message type a frame body starts with: >= 0, -1 while too few
 * bytes are in, -2 when it does not start [type, ...]. */
static int body_type(const uint8_t *p, size_t n)
{
    size_t off, w;
    if (n < 1)
        return -1;
    if ((p[0] & 0xf0) == 0x90)
        off = 1;
    else if (p[0] == 0xdc || p[0] == 0xdd)
        off = p[0] == 0xdc ? 3 : 5;
    else
        return -2;
    if (n <= off)
        return -1;
    if (p[off] <= 0x7f)
        return p[off];
    w = p[off] == 0xcc ? 1 : p[off] == 0xcd ? 2 : p[off] == 0xce ? 4 : 0;
    if (!w)
        return -2;
    if (n <= off + w)
        return -1;
    uint32_t v = 0;
    for (size_t i = 1; i <= w; i++)
        v = v << 8 | p[off + i];
    return v > 0xffff ? -2 : (int)v;
}

/* Closes connections until the unfinished frames fit max_partial_total,
 * first the one whose frame came in slowest on average since it began:
 * a client parking a frame (or trickling it) goes before one that
 * streams a big manifest at line rate. */
static void partial_enforce(struct shoal_tracker *t)
{
    uint64_t now = uv_now(t->loop);
    while (t->partial_total > t->cfg.max_partial_total && t->partial_head) {
        struct conn *victim = NULL;
        double worst = 0;
        for (struct conn *p = t->partial_head; p; p = p->pnext) {
            double rate = (double)p->partial / (double)(now - p->frame_start_ms + 1);
            if (!victim || rate < worst) {
                victim = p;
                worst = rate;
            }
        }
        t->partial_evicted++;
        shoal_tracker_log("closing %s: unfinished frames hold %zu bytes, over the %zu of "
                          "--max-partial-mb; its frame of %zu bytes came slowest (%.0f "
                          "bytes/s since it began %" PRIu64 " ms ago)", victim->peer,
                          t->partial_total, t->cfg.max_partial_total, victim->frame_len,
                          worst * 1000.0, now - victim->frame_start_ms);
        conn_close(victim);
    }
}

/* After a feed: keeps c's frame in progress on the partial list with its
 * deadline and memory, refuses a large frame that a connection without a
 * publisher identity may not send, and gives back a buffer the decoder
 * kept from a finished frame (tracker requests are small; a manifest's
 * buffer would otherwise stay with an idle connection). */
static void conn_track_frame(struct conn *c)
{
    struct shoal_tracker *t = c->t;
    const uint8_t *head;
    size_t held, alloc;
    size_t declared = shoal_frame_dec_partial(&c->dec, &head, &held, &alloc);
    if (!declared) {
        if (alloc > READ_BUF)
            shoal_frame_dec_free(&c->dec);
        partial_unlink(c);
        return;
    }
    if (!c->on_partial || c->frame_seq != c->frames_in) {
        uint64_t now = uv_now(t->loop);
        c->frame_seq = c->frames_in;
        c->frame_len = declared;
        c->frame_start_ms = now;
        c->frame_deadline_ms = now + t->cfg.frame_timeout_ms +
                               (uint64_t)declared * 1000 / t->cfg.frame_min_rate;
        partial_link(c);
    }
    /* A sealed frame's type is known once it is whole and opened. */
    if (declared > FRAME_MAX_NODE && !c->big_ok && !c->seal.on) {
        int type = body_type(head, held);
        if (type == -2 || (type >= 0 && type != SHOAL_MSG_PUT_MANIFEST)) {
            t->frames_refused++;
            conn_drop(c, "frame of %zu bytes (type %d): only PUT_MANIFEST may exceed %u bytes "
                      "without a publisher identity", declared, type, FRAME_MAX_NODE);
            return;
        }
    }
    /* Counted as received rather than as allocated (the decoder's buffer
     * may be up to twice that): what a client sent is what decides which
     * connection goes, so the choice does not hang on growth steps. */
    t->partial_total = t->partial_total - c->partial + held;
    c->partial = held;
    partial_enforce(t);
}

static void on_frame_timer(uv_timer_t *tm)
{
    struct shoal_tracker *t = tm->data;
    uint64_t now = uv_now(t->loop);
    struct conn *next;
    for (struct conn *c = t->partial_head; c; c = next) {
        next = c->pnext;
        if (now < c->frame_deadline_ms)
            continue;
        const uint8_t *head;
        size_t held;
        (void)shoal_frame_dec_partial(&c->dec, &head, &held, NULL);
        t->frames_timed_out++;
        conn_drop(c, "frame of %zu bytes not finished within %" PRIu64 " ms (%zu bytes in)",
                  c->frame_len, c->frame_deadline_ms - c->frame_start_ms, held);
    }
}

/* Handles up to one turn of frames from |data| (the shared read buffer or
 * c->pend), keeping what is left in c->pend, then flushes the replies and
 * decides whether to keep reading. */
static void conn_feed(struct conn *c, const uint8_t *data, size_t len)
{
    c->frames_left = FRAMES_PER_TURN;
    size_t consumed = 0;
    int rv = shoal_frame_dec_feed(&c->dec, data, len, &consumed, &frame_cb, c);
    if (rv == SHOAL_ETOOBIG) {
        conn_drop(c, "frame larger than %zu bytes", c->dec.max);
    } else if (rv < 0) {
        if (!c->closing && !c->close_after_flush)
            conn_drop(c, "bad frame (%s)", shoal_strerror(rv));
    } else if (!c->closing && !c->close_after_flush && consumed < len) {
        if (data == c->pend + c->pend_off) {
            c->pend_off += consumed;
        } else {
            /* Only a fully handled pend lets reading resume, so the rest
             * of a read always fits a fresh buffer. */
            uint8_t *p = malloc(len - consumed);
            if (!p) {
                shoal_tracker_log("closing %s: out of memory", c->peer);
                conn_close(c);
                return;
            }
            memcpy(p, data + consumed, len - consumed);
            free(c->pend);
            c->pend = p;
            c->pend_len = len - consumed;
            c->pend_off = 0;
        }
    } else if (data == c->pend + c->pend_off) {
        c->pend_off = c->pend_len;
    }
    if (c->pend && c->pend_off >= c->pend_len) {
        free(c->pend);
        c->pend = NULL;
        c->pend_len = c->pend_off = 0;
    }
    if (!c->closing)
        conn_track_frame(c);
    conn_flush(c);
    conn_schedule(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    c->t->rbuf_busy = false;
    if (nread < 0) {
        char more[80] = "";
        if (nread != UV_EOF && (c->authed || log_due(c->t, &c->t->log_unauth, more, sizeof more)))
            shoal_tracker_log("closing %s: read: %s%s", c->peer, uv_strerror((int)nread), more);
        conn_close(c);
        return;
    }
    if (c->closing || c->close_after_flush)
        return; /* ignore what follows a refused handshake */
    c->last_rx_ms = uv_now(c->t->loop);
    conn_feed(c, (const uint8_t *)buf->base, (size_t)nread);
}

/* Gives every connection with pending input one more turn. Connections
 * that still have input after it queue up again for the next pass, so one
 * busy peer cannot starve the others. */
static void on_idle(uv_idle_t *h)
{
    struct shoal_tracker *t = h->data;
    struct conn *list = t->ready;
    t->ready = NULL;
    while (list) {
        struct conn *c = list;
        list = c->rnext;
        c->rnext = NULL;
        c->on_ready = false;
        if (!c->closing && c->pend)
            conn_feed(c, c->pend + c->pend_off, c->pend_len - c->pend_off);
    }
    if (!t->ready && t->idle_on) {
        uv_idle_stop(&t->idle);
        t->idle_on = false;
    }
}

static void on_auth_timeout(uv_timer_t *tm)
{
    struct conn *c = tm->data;
    conn_drop(c, "no authentication within %u ms", c->t->cfg.auth_timeout_ms);
}

/* A VM that is preempted or loses power sends no FIN: its connection
 * would stay open, and its node known, until the node TTL (90 s), however
 * short --gone-ms. Keepalive probes after 10 s of quiet, 3 s apart, and
 * unacknowledged data given up after 20 s, close it in about 20 s instead;
 * a live host's kernel answers probes whatever its shoald is doing. Best
 * effort: a socket refusing an option keeps the system's defaults. */
static void dead_host_watch(uv_tcp_t *tcp)
{
    uv_os_fd_t fd;
    int intvl = 3, cnt = 3;
    unsigned int user_timeout = 20000;

    if (uv_tcp_keepalive(tcp, 1, 10) != 0 || uv_fileno((uv_handle_t *)tcp, &fd) != 0)
        return;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct shoal_tracker *t = server->data;
    struct conn *c = NULL;
    if (status < 0) {
        shoal_tracker_log("accept: %s", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c || uv_tcp_init(t->loop, &c->tcp) != 0) {
        /* Accept into a throwaway handle is not possible without memory;
         * the listener will report the connection again. */
        free(c);
        return;
    }
    c->t = t;
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 1;
    c->next = t->conns;
    if (t->conns)
        t->conns->prev = c;
    t->conns = c;
    t->nconns++;
    uv_timer_init(t->loop, &c->timer);
    c->open_handles = 2;
    shoal_frame_dec_init(&c->dec, SHOAL_FRAME_MAX_PREAUTH);
    shoal_buf_init(&c->out, t->cfg.max_outq);
    snprintf(c->peer, sizeof(c->peer), "?");
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    dead_host_watch(&c->tcp);
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        char host[48] = "?";
        int port = 0;
        if (ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof(host));
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof(host));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
        shoal_src_key(&ss, c->src_key);
    }
    t->conns_total++;
    /* Unauthenticated connections cost a peer nothing to open: they get
     * a small pool of their own, and when it (or the whole table) is full
     * the oldest of the source holding the most makes room, so a slow
     * handshake flood can neither lock nodes out nor keep a slot for long,
     * and a flood from one source evicts its own connections, not other
     * sources' logins. */
    bool full = t->nconns > t->cfg.max_conns;
    if ((full || t->nunauth >= t->cfg.max_unauth) && t->unauth_head) {
        struct conn *old = unauth_victim(t);
        char more[80];
        t->conns_evicted++;
        if (log_due(t, &t->log_evict, more, sizeof more))
            shoal_tracker_log("closing %s: evicted, the oldest unauthenticated connection of "
                              "the source holding the most (%u of %u waiting); logged at most "
                              "every 10 s%s", old->peer, old->src ? old->src->n : 1,
                              t->nunauth, more);
        conn_close(old);
        full = false;
    }
    if (full) {
        t->conns_refused++;
        shoal_tracker_log("refusing %s: %u connections open", c->peer, t->cfg.max_conns);
        conn_close(c);
        return;
    }
    unauth_append(c);
    c->last_rx_ms = uv_now(t->loop);
    c->tokens = COSTLY_BURST;
    c->tokens_ms = c->last_rx_ms;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_start(&c->timer, on_auth_timeout, t->cfg.auth_timeout_ms, 0);
    if (send_challenge(c) != 0)
        return;
    conn_flush(c);
    conn_schedule(c);
}

/* How often --deny-keys files are looked at (a stat each). */
#define DENY_CHECK_MS 2000u

/* Reads --deny-keys again if a file changed; a key it now lists loses its
 * connections and everything the registry holds of it. */
static void deny_check(struct shoal_tracker *t)
{
    char why[512];
    bool changed;
    uint32_t closed = 0, forgot = 0;

    if (shoal_keywatch_check(t->cfg.deny, &changed, why, sizeof why) != 0) {
        shoal_tracker_log("deny-keys: %s; the keys read before still count", why);
        return;
    }
    if (!changed)
        return;
    struct conn *next;
    for (struct conn *c = t->conns; c; c = next) {
        next = c->next;
        bool denied = false;
        for (uint32_t i = 0; i < c->ids_cap && !denied; i++)
            denied = c->ids[i].used && shoal_keywatch_contains(t->cfg.deny, c->ids[i].pk);
        if (!denied)
            continue;
        shoal_tracker_log("closing %s: node key revoked (deny-keys)", c->peer);
        conn_close(c);
        closed++;
    }
    for (size_t i = 0; i < shoal_keywatch_count(t->cfg.deny); i++) {
        const uint8_t *pk = shoal_keywatch_key(t->cfg.deny, i);
        forgot += shoal_reg_remove_node_why(t->reg, pk, SHOAL_REG_GONE_REFUSED) == 0;
    }
    shoal_tracker_log("deny-keys read again: %zu revoked node key(s); %u connection(s) closed, "
                      "%u node(s) forgotten", shoal_keywatch_count(t->cfg.deny), closed, forgot);
}

static void on_expire_timer(uv_timer_t *tm)
{
    struct shoal_tracker *t = tm->data;
    uint64_t now = uv_now(t->loop);
    if (t->cfg.deny)
        deny_check(t);
    if (now - t->expired_ms >= t->expire_every) {
        t->expired_ms = now;
        shoal_reg_expire(t->reg, now);
    }
}

/* ---- lifecycle ---- */

static int parse_listen(const char *s, struct sockaddr_storage *ss)
{
    int rv = -EINVAL;
    char host[128];
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof(host))
        goto out;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535)
        goto out;
    size_t hl = (size_t)(colon - s);
    memcpy(host, s, hl);
    host[hl] = 0;
    /* "[::1]:7700" */
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = 0;
    }
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0 ||
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
        rv = 0;
out:
    return rv;
}

int shoal_tracker_new(struct shoal_tracker **out, uv_loop_t *loop,
                      const struct shoal_tracker_config *cfg)
{
    int rv;
    struct shoal_tracker *t = NULL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (!cfg->cluster_keys || shoal_keyset_count(cfg->cluster_keys) == 0 ||
        !cfg->auth_timeout_ms || !cfg->max_conns || !cfg->max_unauth ||
        !cfg->idle_timeout_ms || !cfg->max_outq_total || cfg->max_outq < SHOAL_FRAME_MAX_PREAUTH ||
        !cfg->max_partial_total || !cfg->frame_timeout_ms || !cfg->frame_min_rate ||
        !cfg->max_conns_per_key ||
        parse_listen(cfg->listen, &ss) != 0) {
        rv = -EINVAL;
        goto fail;
    }
    if (shoal_crypto_init() != 0) {
        rv = -EIO;
        goto fail;
    }
    t = calloc(1, sizeof(*t));
    if (!t) {
        rv = -ENOMEM;
        goto fail;
    }
    t->loop = loop;
    t->cfg = *cfg;
    t->port = -1;
    randombytes_buf(t->boot, sizeof t->boot);
    if ((rv = shoal_reg_new(&t->reg, &cfg->reg)) != 0)
        goto fail;
    randombytes_buf(t->bind_key, sizeof(t->bind_key));
    randombytes_buf(t->src_hkey, sizeof(t->src_hkey));
    uint32_t sb = 64;
    while (sb < cfg->max_unauth && sb < (1u << 16))
        sb *= 2;
    t->src_tab = calloc(sb, sizeof(*t->src_tab));
    t->src_at = calloc((size_t)cfg->max_unauth + 2, sizeof(*t->src_at));
    if (!t->src_tab || !t->src_at) {
        rv = -ENOMEM;
        goto fail;
    }
    t->src_mask = sb - 1;
    uint32_t nb = 64;
    while (nb < cfg->max_conns && nb < (1u << 20))
        nb *= 2;
    t->keyconns = calloc(nb, sizeof(*t->keyconns));
    if (!t->keyconns) {
        rv = -ENOMEM;
        goto fail;
    }
    t->keyconns_mask = nb - 1;
    uv_timer_init(loop, &t->frame_timer);
    t->frame_timer.data = t;
    t->frame_timer_init = true;
    uv_idle_init(loop, &t->idle);
    t->idle.data = t;
    t->idle_init = true;
    uv_tcp_init(loop, &t->listener);
    t->listener.data = t;
    t->listening = true;
    if ((rv = uv_tcp_bind(&t->listener, (struct sockaddr *)&ss, 0)) != 0 ||
        (rv = uv_listen((uv_stream_t *)&t->listener, 1024, on_connection)) != 0)
        goto fail;
    struct sockaddr_storage bound;
    int bl = sizeof(bound);
    if (uv_tcp_getsockname(&t->listener, (struct sockaddr *)&bound, &bl) == 0)
        t->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    uv_timer_init(loop, &t->expire_timer);
    t->expire_timer.data = t;
    t->timer_on = true;
    uint32_t every = cfg->reg.node_ttl_ms < cfg->reg.lease_ms ? cfg->reg.node_ttl_ms
                                                              : cfg->reg.lease_ms;
    every = every / 4 ? every / 4 : 1;
    t->expire_every = every;
    t->expired_ms = uv_now(loop);
    t->started_ms = uv_now(loop);
    /* The same timer looks at --deny-keys every DENY_CHECK_MS. */
    if (cfg->deny && every > DENY_CHECK_MS)
        every = DENY_CHECK_MS;
    uv_timer_start(&t->expire_timer, on_expire_timer, every, every);
    if (cfg->gone_ms) {
        uint32_t g = cfg->gone_ms / 4 ? cfg->gone_ms / 4 : 1;
        uv_timer_init(loop, &t->gone_timer);
        t->gone_timer.data = t;
        t->gone_timer_init = true;
        uv_timer_start(&t->gone_timer, on_gone_timer, g > 1000 ? 1000 : g, g > 1000 ? 1000 : g);
    }
    *out = t;
    return 0;
fail:
    if (t && t->listening) {
        /* The handle is registered with the loop: close it and let the
         * caller's uv_run finish the close before freeing. */
        shoal_tracker_shutdown(t);
        uv_run(loop, UV_RUN_NOWAIT);
    }
    shoal_tracker_free(t);
    return rv;
}

int shoal_tracker_port(const struct shoal_tracker *t)
{
    return t->port;
}

struct shoal_reg *shoal_tracker_registry(struct shoal_tracker *t)
{
    return t->reg;
}

void shoal_tracker_shutdown(struct shoal_tracker *t)
{
    if (!t || t->shut)
        return;
    t->shut = true;
    if (t->listening)
        uv_close((uv_handle_t *)&t->listener, NULL);
    if (t->timer_on)
        uv_close((uv_handle_t *)&t->expire_timer, NULL);
    if (t->idle_init)
        uv_close((uv_handle_t *)&t->idle, NULL);
    if (t->frame_timer_init)
        uv_close((uv_handle_t *)&t->frame_timer, NULL);
    if (t->gone_timer_init)
        uv_close((uv_handle_t *)&t->gone_timer, NULL);
    for (struct conn *c = t->conns; c; c = c->next)
        conn_close(c);
}

void shoal_tracker_free(struct shoal_tracker *t)
{
    if (!t)
        return;
    shoal_reg_free(t->reg);
    for (uint32_t i = 0; t->keyconns && i <= t->keyconns_mask; i++) {
        while (t->keyconns[i]) {
            struct keyconns *k = t->keyconns[i];
            t->keyconns[i] = k->next;
            free(k);
        }
    }
    free(t->keyconns);
    free(t->opened);
    for (uint32_t i = 0; t->src_tab && i <= t->src_mask; i++) {
        while (t->src_tab[i]) {
            struct usrc *s = t->src_tab[i];
            t->src_tab[i] = s->next;
            free(s);
        }
    }
    free(t->src_tab);
    free(t->src_at);
    free(t);
}
