/* SPDX-License-Identifier: MIT */
/*
 * The daemon's libuv tracker client (see trkconn.h): a connection per
 * tracker with its own handshake, reply FIFO, announce timer and reconnect
 * backoff, and the routing of requests over whichever trackers are up.
 */
#include "trkconn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "auth.h"
#include "error.h"
#include "frame.h"
#include "hash.h"
#include "nodelog.h"
#include "peer.h" /* shoal_parse_addr */

#define READ_BUF 65536u
#define WATCHDOG_MS 250u
/* Least time between an announce and one asked for "soon" (a release
 * opened, a first chunk): a rollout's nodes wait for that reply's fleet
 * role before they use the origin. */
#define SOON_GAP_MS 100u
/* LEASE_DONEs kept per tracker while its connection is down: a daemon
 * holds at most 16 leases per release (--max-leases), a few releases at
 * once; beyond this the oldest are dropped (their leases expire). */
#define HELD_DONE_MAX 64u
/* Manifests remembered as accepted by a tracker process (a node holds at
 * most 64 releases). */
#define PUT_IDS 64u
/* The slowest link to a tracker a request's time-out allows for. */
#define LINK_MIN_BPS (64u * 1024u)
/* A login that lasted this long was a success: the reconnect back-off
 * starts again from its minimum. One that ends sooner (a tracker that
 * closes right after the login, a proxy cutting the link) keeps doubling
 * it, instead of redialling 4 times a second for ever. */
#define STABLE_MS 10000u
#define DEFAULT_INTERVAL_MS 30000u
/* Unsent bytes per connection: one manifest of the largest size and some. */
#define MAX_QUEUED ((size_t)SHOAL_MSG_MANIFEST_MAX + (1u << 20))
/* Largest reply body accepted once authenticated (a full manifest). */
#define MAX_FRAME_AUTH (SHOAL_MSG_MANIFEST_MAX + 1024u)

enum conn_state { C_IDLE, C_CONNECTING, C_CHALLENGE, C_AUTH, C_READY, C_CLOSING };

/* A manifest lookup; it moves from tracker to tracker until one has it. */
struct mquery {
    uint64_t tag;
    bool by_id;
    uint8_t id[32];
    char name[SHOAL_MSG_REPO_MAX + 1];
    uint32_t tried; /* bit per tracker index that said no */
};

/* A request waiting for its reply. */
struct pend {
    uint32_t type;
    uint64_t tag;
    uint64_t sent_ms;
    uint64_t due_ms;  /* sent_ms + timeout + its share of a slow link */
    uint8_t id[32];   /* PUT_MANIFEST, LEASE_REQ: the manifest's id */
    struct mquery *q; /* GET_MANIFEST only; owned by the entry */
    bool reclaim;     /* LEASE_REQ re-claiming chunks [first, first+count) */
    uint32_t first, count;
};

struct conn {
    struct shoal_trkconn *t;
    uint32_t idx;
    char addr[SHOAL_MSG_ADDR_MAX + 1];
    struct sockaddr_storage ss;
    enum conn_state st;
    uv_tcp_t tcp;
    bool tcp_open;
    uv_connect_t creq;
    uv_timer_t timer; /* reconnect backoff while idle, announces while ready */
    struct shoal_frame_dec dec;
    struct pend pend[SHOAL_TRKCONN_PENDING_MAX];
    uint32_t phead, pn;
    uint32_t backoff_ms;
    uint32_t interval_ms;
    uint64_t since_ms;        /* entered the current state */
    uint64_t last_announce_ms;
    uint64_t announce_due_ms;
    size_t queued;
    uint32_t fails;           /* attempts since the last success */
    /* Why the last login failed on the tracker's word or on ours (it
     * refused our identity, or did not prove its own); "" once a login
     * succeeds or the tracker cannot be reached at all. */
    char refused[SHOAL_MSG_ERROR_MAX + 96];
    char adv[SHOAL_MSG_ADDR_MAX + 1];     /* cfg->advertise_port: what we announce */
    char adv_logged[SHOAL_MSG_ADDR_MAX + 1]; /* the last one logged */
    bool stop_feed;           /* a hook closed us while a read was fed */
    /* cfg->tracker_keys: the nonces of this login and whether the tracker
     * proved its key over them (TRK_PROOF before the OK). */
    uint8_t chal[32], cnonce[32];
    bool proven;
    uint8_t proven_pk[32];    /* the key it proved (proven) */
    /* Our ephemeral X25519 pair for this login (the secret wiped once the
     * keys are derived), and the sealed session from the OK on. */
    uint8_t eph_pk[32], eph_sk[32];
    struct shoal_trk_seal seal;
    bool seal_next;
    uint8_t *opened;          /* a sealed frame's body, opened */
    size_t opened_cap;
    /* The tracker process of the last challenge (has_boot: it sent one),
     * and the manifests it accepted from us (put_ids, a ring of PUT_IDS);
     * put_boot is the process those were accepted by. */
    bool has_boot, put_valid;
    uint8_t boot[SHOAL_MSG_SESSION_LEN], put_boot[SHOAL_MSG_SESSION_LEN];
    uint8_t put_ids[PUT_IDS][32];
    uint32_t nput, put_next;
    /* LEASE_DONEs that found the connection down: sent after the next
     * login's first announce and on_ready (which re-claims our leases).
     * This process logs in with the same session id, so the tracker kept
     * the leases, or (restarted) has them back by then, and takes them (a
     * lease that expired meanwhile is refused, as it would have been
     * anyway). */
    struct held_done {
        uint8_t id[32];
        uint32_t first, count;
    } held_done[HELD_DONE_MAX];
    uint32_t nheld_done;
    uint8_t rbuf[READ_BUF];
};

struct wreq {
    uv_write_t req;
    struct conn *c;
    uint8_t *data;
    size_t len;
};

struct shoal_trkconn {
    const struct shoal_trkconn_cfg *cfg;
    const struct shoal_trkconn_hooks *hooks;
    uv_loop_t *loop;
    struct conn *conns[SHOAL_TRKCONN_MAX];
    uint32_t n;
    uv_timer_t watchdog;
    bool started, stopping;
    uint64_t rng;
    uint32_t timeout_ms, bmin, bmax, balone;
    struct shoal_msg in;   /* decoded reply */
    struct shoal_msg out;  /* message being encoded */
};

static const struct shoal_frame_cb frame_cb;

static uint64_t now(const struct shoal_trkconn *t) { return uv_now(t->loop); }

static uint64_t rnd(struct shoal_trkconn *t)
{
    /* xorshift64*: jitter only, no need for quality. */
    t->rng ^= t->rng >> 12;
    t->rng ^= t->rng << 25;
    t->rng ^= t->rng >> 27;
    return t->rng * 2685821657736338717ull;
}

uint32_t shoal_trkconn_count(const struct shoal_trkconn *t) { return t->n; }

bool shoal_trkconn_ready_idx(const struct shoal_trkconn *t, int idx)
{
    return idx >= 0 && (uint32_t)idx < t->n && t->conns[idx]->st == C_READY;
}

uint32_t shoal_trkconn_ready(const struct shoal_trkconn *t)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < t->n; i++)
        k += t->conns[i]->st == C_READY;
    return k;
}

/* Rendezvous weight of tracker |c| for |manifest_id|: a hash of the id and
 * the tracker's name, its proven key when keys are pinned (the same
 * whatever address a node lists it by), else its configured address. */
static uint64_t arbiter_weight(const struct conn *c, const uint8_t manifest_id[32])
{
    crypto_generichash_state st;
    uint8_t h[8];
    uint64_t w = 0;

    crypto_generichash_init(&st, NULL, 0, sizeof h);
    crypto_generichash_update(&st, (const uint8_t *)"shoal-lease-trk-v1", 18);
    crypto_generichash_update(&st, manifest_id, 32);
    if (c->proven)
        crypto_generichash_update(&st, c->proven_pk, 32);
    else
        crypto_generichash_update(&st, (const uint8_t *)c->addr, strlen(c->addr));
    crypto_generichash_final(&st, h, sizeof h);
    for (size_t i = 0; i < sizeof h; i++)
        w = w << 8 | h[i];
    return w;
}

int shoal_trkconn_arbiter(const struct shoal_trkconn *t, const uint8_t manifest_id[32])
{
    int best = -1;
    uint64_t best_w = 0;

    /* Trackers share no lease state, so every node must ask the same one
     * for a release: configuration order differs between nodes (the
     * review's alternating [T1,T2]/[T2,T1] fleet fetched 1.8x the
     * release), a rendezvous hash does not, and a tracker going down only
     * moves the releases it leased. */
    for (uint32_t i = 0; i < t->n; i++) {
        const struct conn *c = t->conns[i];
        /* A tracker still on its first login counts too (the caller waits
         * for it): else a node that starts leasing before its last login
         * is done asks another tracker than the fleet does. */
        bool first_login = c->st != C_READY && c->st != C_CLOSING && c->fails == 0;
        if (c->st != C_READY && !first_login)
            continue;
        uint64_t w = arbiter_weight(c, manifest_id);
        if (best < 0 || w > best_w) {
            best = (int)i;
            best_w = w;
        }
    }
    return best;
}

const char *shoal_trkconn_addr(const struct shoal_trkconn *t, uint32_t idx)
{
    return idx < t->n ? t->conns[idx]->addr : "?";
}

const char *shoal_trkconn_refused(const struct shoal_trkconn *t, uint32_t idx)
{
    return idx < t->n && t->conns[idx]->refused[0] ? t->conns[idx]->refused : NULL;
}

const char *shoal_trkconn_advertised(const struct shoal_trkconn *t, uint32_t idx)
{
    return idx < t->n && t->cfg->advertise_port && t->conns[idx]->adv[0] ? t->conns[idx]->adv
                                                                           : NULL;
}

int shoal_trkconn_new(struct shoal_trkconn **out, const struct shoal_trkconn_cfg *cfg,
                      const struct shoal_trkconn_hooks *hooks)
{
    struct shoal_trkconn *t;
    int rv = 0;

    if (!cfg || !hooks || !cfg->loop || !cfg->sk || cfg->naddrs == 0 ||
        cfg->naddrs > SHOAL_TRKCONN_MAX)
        return -EINVAL;
    t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->cfg = cfg;
    t->hooks = hooks;
    t->loop = cfg->loop;
    t->rng = cfg->seed ? cfg->seed : 0x9e3779b97f4a7c15ull;
    t->timeout_ms = cfg->request_timeout_ms ? cfg->request_timeout_ms : 5000;
    t->bmin = cfg->backoff_min_ms ? cfg->backoff_min_ms : 250;
    t->bmax = cfg->backoff_max_ms ? cfg->backoff_max_ms : 10000;
    if (t->bmax < t->bmin)
        t->bmax = t->bmin;
    t->balone = cfg->backoff_alone_max_ms;
    if (t->balone && t->balone < t->bmin)
        t->balone = t->bmin;
    for (size_t i = 0; i < cfg->naddrs; i++) {
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            rv = -ENOMEM;
            goto fail;
        }
        t->conns[t->n++] = c;
        c->t = t;
        c->idx = (uint32_t)i;
        c->backoff_ms = t->bmin;
        c->interval_ms = DEFAULT_INTERVAL_MS;
        if (strlen(cfg->addrs[i]) >= sizeof c->addr ||
            shoal_parse_addr(cfg->addrs[i], &c->ss) != 0) {
            LOG_E("tracker address '%s' is not a numeric host:port", cfg->addrs[i]);
            rv = -EINVAL;
            goto fail;
        }
        strcpy(c->addr, cfg->addrs[i]);
    }
    *out = t;
    return 0;
fail:
    for (uint32_t i = 0; i < t->n; i++)
        free(t->conns[i]);
    free(t);
    return rv;
}

/* ---- sending ---- */

static void fail_conn(struct conn *c, const char *why, bool loud);

static void write_done(uv_write_t *req, int status)
{
    struct wreq *w = req->data;
    struct conn *c = w->c;

    c->queued -= w->len;
    free(w->data);
    free(w);
    if (status < 0 && status != UV_ECANCELED && c->st != C_CLOSING && c->st != C_IDLE) {
        char why[96];
        snprintf(why, sizeof why, "write failed: %s", uv_strerror(status));
        fail_conn(c, why, true);
    }
}

/* Encodes t->out and queues it on |c|. Returns 0 or an error (nothing
 * queued; the connection is left as it was). */
static int send_out(struct conn *c)
{
    struct shoal_trkconn *t = c->t;
    struct shoal_buf b;
    struct wreq *w = NULL;
    uv_buf_t ub;
    int rv;

    if (!c->tcp_open || c->st == C_CLOSING || c->st == C_IDLE || c->st == C_CONNECTING)
        return -ENOTCONN;
    shoal_buf_init(&b, SHOAL_FRAME_HDR_LEN + (size_t)SHOAL_FRAME_MAX_ABS);
    rv = shoal_msg_encode(&t->out, &b);
    if (rv == 0 && c->seal.on)
        rv = shoal_trk_seal_frame(&c->seal, &b, 0);
    if (rv == 0 && c->queued + b.len > MAX_QUEUED)
        rv = SHOAL_ELIMIT;
    if (rv == 0) {
        w = calloc(1, sizeof *w);
        if (!w)
            rv = -ENOMEM;
    }
    if (rv != 0)
        goto out;
    w->req.data = w;
    w->c = c;
    w->data = shoal_buf_steal(&b, &w->len);
    ub = uv_buf_init((char *)w->data, (unsigned)w->len);
    rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, write_done);
    if (rv != 0) {
        free(w->data);
        free(w);
        goto out;
    }
    c->queued += w->len;
out:
    shoal_buf_free(&b);
    return rv;
}

/* Sends t->out as a request whose reply is matched later. A request
 * queued behind megabytes (a manifest put on a slow link) is given the
 * time those take at LINK_MIN_BPS on top of the time-out, or it would
 * time out, reconnect and be sent again for ever. */
static int request(struct conn *c, uint64_t tag, struct mquery *q)
{
    int rv;

    if (c->st != C_READY)
        return -ENOTCONN;
    if (c->pn >= SHOAL_TRKCONN_PENDING_MAX)
        return SHOAL_ELIMIT;
    rv = send_out(c);
    if (rv == 0) {
        struct pend *p = &c->pend[(c->phead + c->pn) % SHOAL_TRKCONN_PENDING_MAX];
        p->type = c->t->out.type;
        p->tag = tag;
        p->sent_ms = now(c->t);
        p->due_ms = p->sent_ms + c->t->timeout_ms + (uint64_t)c->queued * 1000 / LINK_MIN_BPS;
        p->q = q;
        p->reclaim = false;
        c->pn++;
    }
    return rv;
}

/* ---- manifest lookups ---- */

/* Sends |q| to the first ready tracker that has not refused it yet.
 * Returns 0 or -ENOTCONN (none left; |q| is still the caller's). */
static int query_send(struct shoal_trkconn *t, struct mquery *q)
{
    for (uint32_t i = 0; i < t->n; i++) {
        struct conn *c = t->conns[i];
        if (c->st != C_READY || (q->tried & (1u << i)))
            continue;
        memset(&t->out, 0, sizeof t->out);
        t->out.type = SHOAL_MSG_GET_MANIFEST;
        if (q->by_id) {
            t->out.u.get_manifest.has_id = true;
            memcpy(t->out.u.get_manifest.by_id, q->id, 32);
        } else {
            t->out.u.get_manifest.has_repo = true;
            t->out.u.get_manifest.repo_at_rev.p = q->name;
            t->out.u.get_manifest.repo_at_rev.len = (uint32_t)strlen(q->name);
        }
        if (request(c, q->tag, q) == 0)
            return 0;
        q->tried |= 1u << i;
    }
    return -ENOTCONN;
}

/* Tracker |idx| could not answer |q|: ask the next, or report not found. */
static void query_refused(struct shoal_trkconn *t, struct mquery *q, uint32_t idx)
{
    q->tried |= 1u << idx;
    if (t->stopping || query_send(t, q) == 0)
        return;
    if (t->hooks->on_manifest)
        t->hooks->on_manifest(t->hooks->user, q->tag, SHOAL_ENOTFOUND, NULL);
    free(q);
}

int shoal_trkconn_get_manifest(struct shoal_trkconn *t, const uint8_t *manifest_id,
                               const char *repo_at_rev, uint64_t tag)
{
    struct mquery *q;

    if (!manifest_id && (!repo_at_rev || !*repo_at_rev ||
                         strlen(repo_at_rev) > SHOAL_MSG_REPO_MAX))
        return -EINVAL;
    if (t->stopping || shoal_trkconn_ready(t) == 0)
        return -ENOTCONN;
    q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    q->tag = tag;
    q->by_id = manifest_id != NULL;
    if (manifest_id)
        memcpy(q->id, manifest_id, 32);
    else
        strcpy(q->name, repo_at_rev);
    if (query_send(t, q) != 0) {
        free(q);
        return -ENOTCONN;
    }
    return 0;
}

/* ---- connection life ---- */

static void connect_now(struct conn *c);

static void on_retry_timer(uv_timer_t *h)
{
    struct conn *c = h->data;
    if (!c->t->stopping && c->st == C_IDLE)
        connect_now(c);
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct shoal_trkconn *t = c->t;
    uint32_t delay;

    c->tcp_open = false;
    c->st = C_IDLE;
    if (t->stopping)
        return;
    /* Full jitter over [backoff/2, backoff] keeps a fleet from redialling a
     * restarted tracker in lockstep. */
    uint32_t b = c->backoff_ms;
    /* With every tracker down, the longest back-off (10 s) would find a
     * tracker restarted in 3 s only after the lease fallback (5 s) had
     * sent the whole fleet to the origin without leases (QA N2: 1.8-2.6x
     * the release from the origin). */
    if (t->balone && b > t->balone && !c->refused[0] && shoal_trkconn_ready(t) == 0)
        b = t->balone;
    delay = b / 2 + (uint32_t)(rnd(t) % (b / 2 + 1));
    c->backoff_ms = c->backoff_ms * 2 > t->bmax ? t->bmax : c->backoff_ms * 2;
    uv_timer_start(&c->timer, on_retry_timer, delay, 0);
}

/* Fails every request still waiting on |c| (their hooks learn it). */
static void fail_pending(struct conn *c)
{
    struct shoal_trkconn *t = c->t;

    while (c->pn > 0 && !t->stopping) {
        struct pend p = c->pend[c->phead];
        c->phead = (c->phead + 1) % SHOAL_TRKCONN_PENDING_MAX;
        c->pn--;
        if (p.type == SHOAL_MSG_GET_MANIFEST)
            query_refused(t, p.q, c->idx);
        else if (p.type == SHOAL_MSG_LEASE_REQ && p.reclaim)
            continue; /* kept as it is: claimed again at the next login */
        else if (p.type == SHOAL_MSG_LEASE_REQ && t->hooks->on_lease)
            t->hooks->on_lease(t->hooks->user, p.tag, c->idx, -ECONNRESET, NULL);
    }
}

/*
 * Drops the connection: closes the socket (the close callback schedules
 * the redial) and fails its pending requests. |loud| logs at warning level;
 * repeated failures to reach a tracker that is down are logged once.
 */
static void fail_conn(struct conn *c, const char *why, bool loud)
{
    bool was_ready = c->st == C_READY;

    if (c->st == C_CLOSING || c->st == C_IDLE)
        return;
    if (was_ready && now(c->t) - c->since_ms >= STABLE_MS)
        c->backoff_ms = c->t->bmin;
    c->st = C_CLOSING;
    c->stop_feed = true;
    c->fails++;
    if (was_ready)
        LOG_W("tracker %s: connection lost: %s", c->addr, why);
    else if (loud || c->fails == 1)
        LOG_W("tracker %s: %s%s", c->addr, why, c->fails == 1 ? " (will keep retrying)" : "");
    else
        LOG_D("tracker %s: %s", c->addr, why);
    uv_timer_stop(&c->timer);
    if (c->tcp_open) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
    }
    fail_pending(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    *buf = uv_buf_init((char *)c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t left = nread > 0 ? (size_t)nread : 0, used;
    int rv;

    if (nread < 0) {
        fail_conn(c, nread == UV_EOF ? "closed by the tracker" : uv_strerror((int)nread),
                  c->st == C_READY);
        return;
    }
    c->stop_feed = false;
    while (left > 0) {
        rv = shoal_frame_dec_feed(&c->dec, p, left, &used, &frame_cb, c);
        p += used;
        left -= used;
        if (c->stop_feed || c->t->stopping)
            return;
        if (rv < 0) {
            char why[96];
            snprintf(why, sizeof why, "bad frame from the tracker: %s", shoal_strerror(rv));
            fail_conn(c, why, true);
            return;
        }
    }
}

/* Sets c->adv to this end's address of the connection with the configured
 * port, and logs it when it is new. Returns 0, or an error with the reason
 * in |why|. */
static int local_address(struct conn *c, char *why, size_t whylen)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char host[64];
    int rv = uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len);
    bool v6 = rv == 0 && ss.ss_family == AF_INET6;

    if (v6 && c->t->cfg->advertise_ipv4_only) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
        if (!IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            snprintf(why, whylen, "this node listens on IPv4 only (0.0.0.0) but reaches the "
                     "tracker over IPv6, so peers could not dial the address it would "
                     "announce: listen on [::] or set --advertise");
            return UV_EAFNOSUPPORT;
        }
        /* ::ffff:a.b.c.d is an IPv4 peer's view: announce a.b.c.d. */
        struct sockaddr_in s4 = {.sin_family = AF_INET};
        memcpy(&s4.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
        rv = uv_ip4_name(&s4, host, sizeof host);
        v6 = false;
    } else if (v6) {
        rv = uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof host);
    } else if (rv == 0 && ss.ss_family == AF_INET) {
        rv = uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof host);
    } else if (rv == 0) {
        rv = UV_EAFNOSUPPORT;
    }
    if (rv != 0) {
        snprintf(why, whylen, "cannot tell this node's address on the connection: %s",
                 uv_strerror(rv));
        return rv;
    }
    snprintf(c->adv, sizeof c->adv, v6 ? "[%s]:%u" : "%s:%u", host,
             (unsigned)c->t->cfg->advertise_port);
    if (strcmp(c->adv, c->adv_logged) != 0) {
        LOG_I("tracker %s: announcing this node as %s, its address on the connection to the "
              "tracker (it listens on a wildcard address; --advertise sets another)",
              c->addr, c->adv);
        memcpy(c->adv_logged, c->adv, sizeof c->adv);
    }
    return 0;
}

static void on_connected(uv_connect_t *req, int status)
{
    struct conn *c = req->data;

    if (c->t->stopping || c->st != C_CONNECTING)
        return;
    if (status < 0) {
        char why[96];
        snprintf(why, sizeof why, "cannot connect: %s", uv_strerror(status));
        c->refused[0] = '\0'; /* down now: an old refusal is not the reason */
        fail_conn(c, why, false);
        return;
    }
    char why[256];
    if (c->t->cfg->advertise_port && local_address(c, why, sizeof why) != 0) {
        fail_conn(c, why, false); /* logged once: it will not change by itself */
        return;
    }
    c->st = C_CHALLENGE;
    c->since_ms = now(c->t);
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        fail_conn(c, "cannot read", true);
}

static void connect_now(struct conn *c)
{
    int rv;

    shoal_frame_dec_free(&c->dec);
    shoal_frame_dec_init(&c->dec, SHOAL_FRAME_MAX_PREAUTH);
    c->phead = c->pn = 0;
    /* A new connection starts in the clear: the last one's sealed session
     * (pinned tracker keys) would otherwise try to open the new challenge
     * with old keys, and the node never got back onto its tracker after a
     * tracker restart or a dropped connection. */
    sodium_memzero(&c->seal, sizeof c->seal);
    c->seal_next = false;
    c->proven = false;
    rv = uv_tcp_init(c->t->loop, &c->tcp);
    if (rv != 0) {
        uv_timer_start(&c->timer, on_retry_timer, c->backoff_ms, 0);
        return;
    }
    c->tcp.data = c;
    c->tcp_open = true;
    c->st = C_CONNECTING;
    c->since_ms = now(c->t);
    c->creq.data = c;
    rv = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&c->ss, on_connected);
    if (rv != 0) {
        char why[96];
        snprintf(why, sizeof why, "cannot connect: %s", uv_strerror(rv));
        fail_conn(c, why, false);
    }
}

/* ---- announces ---- */

static void send_announce(struct conn *c)
{
    struct shoal_trkconn *t = c->t;
    int rv;

    memset(&t->out, 0, sizeof t->out);
    t->out.type = SHOAL_MSG_ANNOUNCE;
    if (t->hooks->fill_announce)
        t->hooks->fill_announce(t->hooks->user, &t->out.u.announce);
    if (t->out.u.announce.count > SHOAL_MSG_ANNOUNCE_MAX)
        t->out.u.announce.count = SHOAL_MSG_ANNOUNCE_MAX;
    rv = request(c, 0, NULL);
    if (rv != 0)
        LOG_W("tracker %s: cannot send announce: %s", c->addr, shoal_strerror(rv));
    c->last_announce_ms = now(t);
}

static void on_announce_timer(uv_timer_t *h);

static void schedule_announce(struct conn *c, uint64_t due)
{
    uint64_t n = now(c->t);
    c->announce_due_ms = due;
    uv_timer_start(&c->timer, on_announce_timer, due > n ? due - n : 0, 0);
}

static void on_announce_timer(uv_timer_t *h)
{
    struct conn *c = h->data;

    if (c->t->stopping || c->st != C_READY)
        return;
    send_announce(c);
    schedule_announce(c, c->last_announce_ms + c->interval_ms);
}

void shoal_trkconn_announce_soon(struct shoal_trkconn *t)
{
    for (uint32_t i = 0; i < t->n && !t->stopping; i++) {
        struct conn *c = t->conns[i];
        uint64_t due = c->last_announce_ms + SOON_GAP_MS;
        if (c->st == C_READY && due < c->announce_due_ms)
            schedule_announce(c, due);
    }
}

/* ---- replies ---- */

static void send_held_done(struct conn *c);
static void put_forget(struct conn *c, const uint8_t id[32]);
static void put_accepted(struct conn *c, const uint8_t id[32]);

/* A TRK_PROOF while tracker keys are pinned: the tracker's key must be one
 * of them and its signature must cover this login's nonces. */
static void on_proof(struct conn *c, const struct shoal_msg_trk_proof *p)
{
    struct shoal_trkconn *t = c->t;
    struct shoal_pubkey pk;
    const char *why = NULL;
    char hex[65];

    struct shoal_trk_id id;

    shoal_seckey_public(t->cfg->sk, &pk);
    shoal_hex(hex, p->tracker_pk, 32);
    memset(&id, 0, sizeof id);
    memcpy(id.chal, c->chal, 32);
    memcpy(id.cnonce, c->cnonce, 32);
    memcpy(id.node_pk, pk.pk, 32);
    memcpy(id.client_eph, c->eph_pk, 32);
    memcpy(id.tracker_eph, p->tracker_eph, 32);
    if (!shoal_keyset_contains(t->cfg->tracker_keys, p->tracker_pk))
        why = "its key is not in tracker-keys";
    else if (!p->has_tracker_eph)
        why = "it offers no sealed session";
    else if (shoal_trk_id_verify(p->sig, &id, p->tracker_pk) != 0)
        why = "its proof does not verify";
    else if (shoal_trk_seal_keys(&c->seal, true, c->eph_pk, c->eph_sk, p->tracker_eph) != 0)
        why = "its ephemeral key is unusable";
    sodium_memzero(c->eph_sk, sizeof c->eph_sk);
    if (why) {
        LOG_E("tracker %s refused: %s (key %.16s): not used", c->addr, why, hex);
        snprintf(c->refused, sizeof c->refused, "this node does not use tracker %s: %s (key %.16s)",
                 c->addr, why, hex);
        c->backoff_ms = t->bmax;
        fail_conn(c, "tracker identity refused", false);
        return;
    }
    c->proven = true;
    memcpy(c->proven_pk, p->tracker_pk, 32);
    c->seal_next = true;
    LOG_I("tracker %s proved its key %.16s; the session is sealed from its OK on", c->addr, hex);
}

static void on_auth_reply(struct conn *c, const struct shoal_msg *m)
{
    struct shoal_trkconn *t = c->t;

    if (m->type == SHOAL_MSG_ERROR) {
        LOG_E("tracker %s refused our identity: %.*s (%s)", c->addr, (int)m->u.error.message.len,
              m->u.error.message.p, shoal_strerror(m->u.error.code));
        snprintf(c->refused, sizeof c->refused, "tracker %s refused this node's identity: %.*s",
                 c->addr, (int)m->u.error.message.len, m->u.error.message.p);
        /* Retrying at once will not change the answer. */
        c->backoff_ms = t->bmax;
        fail_conn(c, "authentication refused", false);
        return;
    }
    if (m->type == SHOAL_MSG_TRK_PROOF && t->cfg->tracker_keys && !c->proven) {
        on_proof(c, &m->u.trk_proof);
        return;
    }
    if (m->type != SHOAL_MSG_OK) {
        fail_conn(c, "unexpected reply to TRK_AUTH", true);
        return;
    }
    if (t->cfg->tracker_keys && !c->proven) {
        LOG_E("tracker %s did not prove its identity (tracker-keys is set, and it sent no "
              "TRK_PROOF: an old shoal-tracker, one run without --key, or not a tracker of "
              "this fleet): not used", c->addr);
        snprintf(c->refused, sizeof c->refused, "this node does not use tracker %s: it did not "
                 "prove its identity (tracker-keys is set)", c->addr);
        c->backoff_ms = t->bmax;
        fail_conn(c, "tracker identity not proven", false);
        return;
    }
    c->st = C_READY;
    c->since_ms = now(t);
    c->fails = 0;
    c->refused[0] = '\0';
    if (c->seal_next) {
        c->seal_next = false;
        c->seal.on = true;
    }
    shoal_frame_dec_set_max(&c->dec, MAX_FRAME_AUTH + SHOAL_TRK_SEAL_TAG);
    LOG_I("tracker %s: authenticated", c->addr);
    send_announce(c);
    schedule_announce(c, c->last_announce_ms + c->interval_ms);
    /* The owner puts its manifests and re-claims its leases first: a
     * tracker that restarted knows neither, and then takes the reports of
     * chunks fetched meanwhile against the leases re-claimed. */
    if (t->hooks->on_ready)
        t->hooks->on_ready(t->hooks->user, c->idx);
    if (!t->stopping)
        send_held_done(c);
}

static void on_challenge(struct conn *c, const struct shoal_msg *m)
{
    struct shoal_trkconn *t = c->t;
    const struct shoal_trkconn_cfg *cfg = t->cfg;
    struct shoal_msg_trk_auth *a = &t->out.u.trk_auth;
    struct shoal_pubkey pk;
    int rv;

    memset(&t->out, 0, sizeof t->out);
    t->out.type = SHOAL_MSG_TRK_AUTH;
    shoal_seckey_public(cfg->sk, &pk);
    memcpy(a->node_pk, pk.pk, 32);
    a->cred.p = cfg->cred;
    a->cred.len = (uint32_t)cfg->cred_len;
    a->zone.p = cfg->zone ? cfg->zone : "";
    a->zone.len = (uint32_t)strlen(a->zone.p);
    a->listen_addr.p = cfg->advertise_port ? c->adv : cfg->listen_addr;
    a->listen_addr.len = (uint32_t)strlen(a->listen_addr.p);
    a->role = SHOAL_ROLE_NODE;
    if (cfg->session) {
        a->has_session = true;
        memcpy(a->session, cfg->session, SHOAL_MSG_SESSION_LEN);
    }
    c->has_boot = m->u.trk_challenge.has_boot;
    memcpy(c->boot, m->u.trk_challenge.boot, sizeof c->boot);
    c->proven = false;
    c->seal_next = false;
    memset(&c->seal, 0, sizeof c->seal);
    if (cfg->tracker_keys) {
        memcpy(c->chal, m->u.trk_challenge.nonce, 32);
        randombytes_buf(c->cnonce, sizeof c->cnonce);
        a->has_client_nonce = true;
        memcpy(a->client_nonce, c->cnonce, 32);
        crypto_kx_keypair(c->eph_pk, c->eph_sk);
        a->has_client_eph = true;
        memcpy(a->client_eph, c->eph_pk, 32);
    }
    /* Pinned: every field signed, so a relay cannot use the login (auth.h). */
    if (cfg->tracker_keys)
        rv = shoal_trk_auth_sign_bound(a->sig, m->u.trk_challenge.nonce, a, cfg->sk);
    else
        rv = shoal_trk_auth_sign(a->sig, m->u.trk_challenge.nonce, cfg->sk);
    if (rv == 0)
        rv = send_out(c);
    if (rv != 0) {
        char why[96];
        snprintf(why, sizeof why, "cannot answer the challenge: %s", shoal_strerror(rv));
        fail_conn(c, why, true);
        return;
    }
    c->st = C_AUTH;
}

static int error_code(const struct shoal_msg *m)
{
    return m->u.error.code < 0 ? m->u.error.code : SHOAL_EBADMSG;
}

/* Takes the announce interval a tracker asked for, within bounds: a
 * tracker shortens it while this node's import share is provisional (so
 * it learns the smaller share soon after its zone grows), and lengthens it
 * again. Logged when it changes: shorter at info, since that is the
 * tracker asking for more of this node's traffic, longer at debug. */
static void set_interval(struct conn *c, uint32_t asked)
{
    uint32_t iv = asked;
    if (iv < SHOAL_MSG_INTERVAL_MIN_MS)
        iv = SHOAL_MSG_INTERVAL_MIN_MS;
    if (iv > SHOAL_MSG_INTERVAL_MAX_MS)
        iv = SHOAL_MSG_INTERVAL_MAX_MS;
    if (iv == c->interval_ms)
        return;
    if (iv < c->interval_ms)
        LOG_I("tracker %s: announcing every %u ms (asked for %u ms; %u ms before)", c->addr,
              iv, asked, c->interval_ms);
    else
        LOG_D("tracker %s: announcing every %u ms (asked for %u ms; %u ms before)", c->addr,
              iv, asked, c->interval_ms);
    c->interval_ms = iv;
}

static void on_reply(struct conn *c, const struct shoal_msg *m)
{
    struct shoal_trkconn *t = c->t;
    bool err = m->type == SHOAL_MSG_ERROR;
    struct pend p;
    uint32_t want;

    if (m->type == SHOAL_MSG_TRK_CHALLENGE)
        return; /* the fresh nonce after OK, for another identity: unused */
    if (c->pn == 0) {
        fail_conn(c, "reply without a request", true);
        return;
    }
    p = c->pend[c->phead];
    switch (p.type) {
    case SHOAL_MSG_ANNOUNCE: want = SHOAL_MSG_ANNOUNCE_REPLY; break;
    case SHOAL_MSG_GET_PEERS: want = SHOAL_MSG_PEERS; break;
    case SHOAL_MSG_GET_MANIFEST: want = SHOAL_MSG_MANIFEST; break;
    case SHOAL_MSG_LEASE_REQ: want = SHOAL_MSG_LEASE; break;
    default: want = SHOAL_MSG_OK; break;
    }
    if (!err && m->type != want) {
        char why[96];
        snprintf(why, sizeof why, "answered %s with %s", shoal_msg_type_name(p.type),
                 shoal_msg_type_name(m->type));
        fail_conn(c, why, true);
        return;
    }
    c->phead = (c->phead + 1) % SHOAL_TRKCONN_PENDING_MAX;
    c->pn--;
    switch (p.type) {
    case SHOAL_MSG_ANNOUNCE:
        if (err) {
            LOG_W("tracker %s refused our announce: %.*s", c->addr, (int)m->u.error.message.len,
                  m->u.error.message.p);
            break;
        }
        set_interval(c, m->u.announce_reply.interval_ms);
        if (c->last_announce_ms + c->interval_ms < c->announce_due_ms)
            schedule_announce(c, c->last_announce_ms + c->interval_ms);
        if (t->hooks->on_announce_reply)
            t->hooks->on_announce_reply(t->hooks->user, c->idx, &m->u.announce_reply);
        if (c->nheld_done > 0)
            send_held_done(c); /* some found the request window full */
        break;
    case SHOAL_MSG_GET_PEERS:
        if (!err && t->hooks->on_peers)
            t->hooks->on_peers(t->hooks->user, c->idx, &m->u.peers);
        break;
    case SHOAL_MSG_GET_MANIFEST:
        if (err) {
            query_refused(t, p.q, c->idx);
        } else {
            if (t->hooks->on_manifest)
                t->hooks->on_manifest(t->hooks->user, p.tag, 0, &m->u.manifest);
            free(p.q);
        }
        break;
    case SHOAL_MSG_LEASE_REQ:
        /* "Not published to this tracker": whatever we put there before is
         * gone (it forgot it), so the next put must not be skipped. */
        if (err && error_code(m) == SHOAL_ENOTFOUND)
            put_forget(c, p.id);
        if (p.reclaim) {
            if (t->hooks->on_reclaim)
                t->hooks->on_reclaim(t->hooks->user, c->idx, p.id, p.first, p.count,
                                     err ? error_code(m) : 0, err ? NULL : &m->u.lease);
            break;
        }
        if (t->hooks->on_lease)
            t->hooks->on_lease(t->hooks->user, p.tag, c->idx, err ? error_code(m) : 0,
                               err ? NULL : &m->u.lease);
        break;
    case SHOAL_MSG_PUT_MANIFEST:
        if (!err) {
            put_accepted(c, p.id);
            break;
        }
        LOG_D("tracker %s: %s refused: %.*s", c->addr, shoal_msg_type_name(p.type),
              (int)m->u.error.message.len, m->u.error.message.p);
        break;
    default:
        if (err)
            LOG_D("tracker %s: %s refused: %.*s", c->addr, shoal_msg_type_name(p.type),
                  (int)m->u.error.message.len, m->u.error.message.p);
        break;
    }
}

static int on_frame(void *user, const uint8_t *body, size_t len)
{
    struct conn *c = user;
    struct shoal_trkconn *t = c->t;
    int rv;

    if (c->seal.on && (rv = shoal_trk_open_frame(&c->seal, &body, &len, &c->opened,
                                                 &c->opened_cap)) != 0) {
        fail_conn(c, rv == -ENOMEM ? "out of memory opening a sealed frame"
                                   : "a sealed frame from the tracker does not open (changed "
                                     "on the way)", true);
        return 1;
    }
    rv = shoal_msg_decode(&t->in, body, len);

    if (rv != 0) {
        char why[96];
        snprintf(why, sizeof why, "undecodable message from the tracker: %s",
                 shoal_strerror(rv));
        fail_conn(c, why, true);
        return 1;
    }
    switch (c->st) {
    case C_CHALLENGE:
        if (t->in.type != SHOAL_MSG_TRK_CHALLENGE)
            fail_conn(c, "tracker did not start with a challenge", true);
        else
            on_challenge(c, &t->in);
        break;
    case C_AUTH:
        on_auth_reply(c, &t->in);
        break;
    case C_READY:
        on_reply(c, &t->in);
        break;
    default:
        break;
    }
    /* A hook may have stopped everything or dropped this connection. */
    return t->stopping || c->st == C_CLOSING || c->st == C_IDLE;
}

static const struct shoal_frame_cb frame_cb = {.on_frame = on_frame};

/* ---- watchdog ---- */

static void on_watchdog(uv_timer_t *h)
{
    struct shoal_trkconn *t = h->data;
    uint64_t n = now(t);

    for (uint32_t i = 0; i < t->n && !t->stopping; i++) {
        struct conn *c = t->conns[i];
        char why[96];
        if (c->st == C_CONNECTING || c->st == C_CHALLENGE || c->st == C_AUTH) {
            if (n - c->since_ms > t->timeout_ms) {
                snprintf(why, sizeof why, "no handshake within %u ms", t->timeout_ms);
                fail_conn(c, why, false);
            }
        } else if (c->st == C_READY && c->pn > 0 &&
                   n > c->pend[c->phead].due_ms) {
            snprintf(why, sizeof why, "no answer to %s within %llu ms",
                     shoal_msg_type_name(c->pend[c->phead].type),
                     (unsigned long long)(c->pend[c->phead].due_ms - c->pend[c->phead].sent_ms));
            fail_conn(c, why, true);
        }
    }
}

int shoal_trkconn_start(struct shoal_trkconn *t)
{
    int rv;

    if (t->started)
        return 0;
    rv = uv_timer_init(t->loop, &t->watchdog);
    if (rv != 0)
        return rv;
    t->watchdog.data = t;
    t->started = true;
    for (uint32_t i = 0; i < t->n; i++) {
        struct conn *c = t->conns[i];
        uv_timer_init(t->loop, &c->timer);
        c->timer.data = c;
        connect_now(c);
    }
    uv_timer_start(&t->watchdog, on_watchdog, WATCHDOG_MS, WATCHDOG_MS);
    return 0;
}

/* Tells a tracker we are leaving, so that it ends our origin leases and
 * frees what only we fetched now rather than after lease_ms and its node
 * TTL: the rest of the fleet would wait that long for those chunks. Best
 * effort and never blocking: uv_try_write writes nothing while libuv still
 * holds bytes of ours to send (a write whose callback is pending but whose
 * bytes reached the socket does not stop it), and a partial write leaves a
 * cut frame, which the tracker takes as a lost connection, forgetting us
 * --gone-ms later. A tracker without BYE logs it as unexpected and closes,
 * which is what we are doing anyway. */
static void say_bye(struct conn *c)
{
    struct shoal_trkconn *t = c->t;
    struct shoal_buf b;
    uv_buf_t ub;
    static const char why[] = "shutting down";

    if (c->st != C_READY || !c->tcp_open)
        return;
    memset(&t->out, 0, sizeof t->out);
    t->out.type = SHOAL_MSG_BYE;
    t->out.u.bye.text.p = why;
    t->out.u.bye.text.len = sizeof why - 1;
    shoal_buf_init(&b, SHOAL_FRAME_HDR_LEN + 1024);
    if (shoal_msg_encode(&t->out, &b) == 0 &&
        (!c->seal.on || shoal_trk_seal_frame(&c->seal, &b, 0) == 0)) {
        ub = uv_buf_init((char *)b.data, (unsigned)b.len);
        (void)uv_try_write((uv_stream_t *)&c->tcp, &ub, 1);
    }
    shoal_buf_free(&b);
}

void shoal_trkconn_stop(struct shoal_trkconn *t)
{
    if (!t || t->stopping)
        return;
    t->stopping = true;
    if (!t->started)
        return;
    uv_close((uv_handle_t *)&t->watchdog, NULL);
    for (uint32_t i = 0; i < t->n; i++) {
        struct conn *c = t->conns[i];
        say_bye(c);
        uv_close((uv_handle_t *)&c->timer, NULL);
        if (c->tcp_open && !uv_is_closing((uv_handle_t *)&c->tcp)) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
        }
        c->st = C_CLOSING;
    }
}

void shoal_trkconn_free(struct shoal_trkconn *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; i < t->n; i++) {
        struct conn *c = t->conns[i];
        for (uint32_t k = 0; k < c->pn; k++) {
            struct pend *p = &c->pend[(c->phead + k) % SHOAL_TRKCONN_PENDING_MAX];
            free(p->q);
        }
        shoal_frame_dec_free(&c->dec);
        free(c->opened);
        sodium_memzero(c, sizeof *c);
        free(c);
    }
    free(t);
}

/* ---- requests ---- */

uint32_t shoal_trkconn_get_peers(struct shoal_trkconn *t, const uint8_t manifest_id[32],
                                 uint32_t max)
{
    uint32_t asked = 0;

    for (uint32_t i = 0; i < t->n && !t->stopping; i++) {
        memset(&t->out, 0, sizeof t->out);
        t->out.type = SHOAL_MSG_GET_PEERS;
        memcpy(t->out.u.get_peers.manifest_id, manifest_id, 32);
        t->out.u.get_peers.max = max > SHOAL_MSG_PEERS_MAX ? SHOAL_MSG_PEERS_MAX : max;
        if (request(t->conns[i], 0, NULL) == 0)
            asked++;
    }
    return asked;
}

int shoal_trkconn_lease(struct shoal_trkconn *t, const uint8_t manifest_id[32],
                        uint32_t max_chunks, uint32_t hint_chunk, bool starved, uint64_t tag)
{
    int rv = -ENOTCONN;
    int i = t->stopping ? -1 : shoal_trkconn_arbiter(t, manifest_id);

    if (i >= 0 && t->conns[i]->st != C_READY)
        rv = -EAGAIN;
    else if (i >= 0) {
        struct conn *c = t->conns[i];
        memset(&t->out, 0, sizeof t->out);
        t->out.type = SHOAL_MSG_LEASE_REQ;
        memcpy(t->out.u.lease_req.manifest_id, manifest_id, 32);
        t->out.u.lease_req.max_chunks = max_chunks;
        t->out.u.lease_req.hint_chunk = hint_chunk;
        t->out.u.lease_req.flags =
            SHOAL_LEASE_HINT_MISSING | (starved ? SHOAL_LEASE_HINT_STARVED : 0);
        rv = request(c, tag, NULL);
        if (rv == 0)
            memcpy(c->pend[(c->phead + c->pn - 1) % SHOAL_TRKCONN_PENDING_MAX].id, manifest_id,
                   32);
    }
    return rv;
}

int shoal_trkconn_lease_reclaim(struct shoal_trkconn *t, uint32_t idx,
                                const uint8_t manifest_id[32], uint32_t first, uint32_t count,
                                uint32_t left_ms)
{
    struct conn *c;
    int rv;

    if (idx >= t->n || t->stopping || t->conns[idx]->st != C_READY)
        return -ENOTCONN;
    c = t->conns[idx];
    memset(&t->out, 0, sizeof t->out);
    t->out.type = SHOAL_MSG_LEASE_REQ;
    memcpy(t->out.u.lease_req.manifest_id, manifest_id, 32);
    /* max_chunks 0: a tracker that predates the flag grants nothing. */
    t->out.u.lease_req.hint_chunk = first;
    t->out.u.lease_req.flags = SHOAL_LEASE_RECLAIM;
    t->out.u.lease_req.claim_count = count;
    t->out.u.lease_req.claim_ms = left_ms ? left_ms : 1;
    rv = request(c, 0, NULL);
    if (rv == 0) {
        struct pend *p = &c->pend[(c->phead + c->pn - 1) % SHOAL_TRKCONN_PENDING_MAX];
        memcpy(p->id, manifest_id, 32);
        p->reclaim = true;
        p->first = first;
        p->count = count;
    }
    return rv;
}

void shoal_trkconn_lease_give_back(struct shoal_trkconn *t, uint32_t idx,
                                   const uint8_t manifest_id[32])
{
    struct conn *c;

    if (idx >= t->n || t->stopping || t->conns[idx]->st != C_READY)
        return;
    c = t->conns[idx];
    memset(&t->out, 0, sizeof t->out);
    t->out.type = SHOAL_MSG_LEASE_REQ;
    memcpy(t->out.u.lease_req.manifest_id, manifest_id, 32);
    t->out.u.lease_req.flags = SHOAL_LEASE_GIVE_BACK;
    /* Tag 0: no release's lease request waits for the answer. */
    if (request(c, 0, NULL) == 0)
        memcpy(c->pend[(c->phead + c->pn - 1) % SHOAL_TRKCONN_PENDING_MAX].id, manifest_id, 32);
}

static int send_lease_done(struct conn *c, const uint8_t manifest_id[32], uint32_t first,
                           uint32_t count)
{
    struct shoal_trkconn *t = c->t;
    memset(&t->out, 0, sizeof t->out);
    t->out.type = SHOAL_MSG_LEASE_DONE;
    memcpy(t->out.u.lease_done.manifest_id, manifest_id, 32);
    t->out.u.lease_done.first = first;
    t->out.u.lease_done.count = count;
    return request(c, 0, NULL);
}

void shoal_trkconn_lease_done(struct shoal_trkconn *t, uint32_t idx,
                              const uint8_t manifest_id[32], uint32_t first, uint32_t count)
{
    struct conn *c;

    if (idx >= t->n || t->stopping || count == 0)
        return;
    c = t->conns[idx];
    if (send_lease_done(c, manifest_id, first, count) == 0)
        return;
    /* Down (or its request window full): hold it for the next login, so
     * the fetch is credited and nobody else is granted those chunks.
     * Chunks are reported as they land: one that extends the last held
     * run joins it. */
    if (c->nheld_done > 0) {
        struct held_done *h = &c->held_done[c->nheld_done - 1];
        if (memcmp(h->id, manifest_id, 32) == 0 && h->first + h->count == first) {
            h->count += count;
            return;
        }
    }
    if (c->nheld_done == HELD_DONE_MAX) {
        LOG_D("tracker %s: LEASE_DONE of chunks %u..%u not kept: %u already wait", c->addr,
              c->held_done[0].first, c->held_done[0].first + c->held_done[0].count - 1,
              HELD_DONE_MAX);
        memmove(&c->held_done[0], &c->held_done[1],
                (HELD_DONE_MAX - 1) * sizeof c->held_done[0]);
        c->nheld_done--;
    }
    memcpy(c->held_done[c->nheld_done].id, manifest_id, 32);
    c->held_done[c->nheld_done].first = first;
    c->held_done[c->nheld_done].count = count;
    c->nheld_done++;
}

/* After a login's first announce: the LEASE_DONEs the outage held. */
static void send_held_done(struct conn *c)
{
    uint32_t sent = 0;
    while (sent < c->nheld_done && c->st == C_READY &&
           send_lease_done(c, c->held_done[sent].id, c->held_done[sent].first,
                           c->held_done[sent].count) == 0)
        sent++;
    if (sent > 0)
        LOG_I("tracker %s: sent %u LEASE_DONE%s held while the connection was down", c->addr,
              sent, sent == 1 ? "" : "s");
    memmove(&c->held_done[0], &c->held_done[sent],
            (c->nheld_done - sent) * sizeof c->held_done[0]);
    c->nheld_done -= sent;
}

/* Whether tracker process c->boot accepted manifest |id| from us. */
static bool put_known(struct conn *c, const uint8_t id[32])
{
    if (!c->has_boot || !c->put_valid || memcmp(c->boot, c->put_boot, sizeof c->boot) != 0)
        return false;
    for (uint32_t k = 0; k < c->nput; k++)
        if (memcmp(c->put_ids[k], id, 32) == 0)
            return true;
    return false;
}

/* Tracker |c| said it does not hold manifest |id|, whatever it accepted
 * before (it forgot it): the next put of it must go out. */
static void put_forget(struct conn *c, const uint8_t id[32])
{
    for (uint32_t k = 0; k < c->nput; k++)
        if (memcmp(c->put_ids[k], id, 32) == 0)
            memset(c->put_ids[k], 0, 32);
}

static void put_accepted(struct conn *c, const uint8_t id[32])
{
    if (!c->has_boot)
        return;
    if (!c->put_valid || memcmp(c->boot, c->put_boot, sizeof c->boot) != 0) {
        /* Another tracker process: it knows none of what the last one did. */
        memcpy(c->put_boot, c->boot, sizeof c->boot);
        c->put_valid = true;
        c->nput = c->put_next = 0;
    }
    if (put_known(c, id))
        return;
    memcpy(c->put_ids[c->put_next], id, 32);
    c->put_next = (c->put_next + 1) % PUT_IDS;
    if (c->nput < PUT_IDS)
        c->nput++;
}

void shoal_trkconn_put_manifest(struct shoal_trkconn *t, uint32_t idx, const uint8_t id[32],
                                const uint8_t *signed_mf, size_t len)
{
    if (t->stopping || len == 0 || len > SHOAL_MSG_MANIFEST_MAX)
        return;
    for (uint32_t i = 0; i < t->n; i++) {
        struct conn *c = t->conns[i];
        if ((idx != SHOAL_TRKCONN_NONE && i != idx) || put_known(c, id))
            continue;
        memset(&t->out, 0, sizeof t->out);
        t->out.type = SHOAL_MSG_PUT_MANIFEST;
        t->out.u.put_manifest.signed_manifest.p = signed_mf;
        t->out.u.put_manifest.signed_manifest.len = (uint32_t)len;
        if (request(c, 0, NULL) == 0)
            memcpy(c->pend[(c->phead + c->pn - 1) % SHOAL_TRKCONN_PENDING_MAX].id, id, 32);
    }
}
