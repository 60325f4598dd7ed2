/* SPDX-License-Identifier: MIT */
/*
 * Blocking tracker client (see trkclient.h). Frames are read with a simple
 * length-prefixed reader over one growing buffer; every wait is a poll()
 * against a deadline so a dead tracker cannot hang a test or a tool.
 */
#include "trkclient.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <fcntl.h>

#include <sodium.h>

#include "auth.h"
#include "error.h"
#include "frame.h"
#include "hash.h"

struct shoal_trkc {
    int fd;
    uint8_t *in;       /* received bytes */
    size_t len, cap;
    size_t consumed;   /* bytes of |in| handed out by the last recv */
    uint8_t nonce[32];
    struct shoal_buf out;
    bool has_publisher;            /* shoal_trkc_set_publisher */
    uint8_t publisher_pk[32];
    char err[SHOAL_MSG_ERROR_MAX + 1]; /* the last login's ERROR text */
    /* shoal_trkc_pin: the tracker must prove one of these keys before a
     * login counts, and everything after its OK is sealed */
    struct shoal_keyset *pin;
    struct shoal_trk_seal seal;
    uint8_t proven_pk[32];
    bool proven;
    bool unproven; /* the last login failed for want of the tracker's proof */
    uint8_t *opened; /* a sealed frame's body, opened */
    size_t opened_cap;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until |fd| has |events| or the deadline passes. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = { .fd = fd, .events = events };
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

int shoal_trkc_send_raw(struct shoal_trkc *c, const void *p, size_t n, int timeout_ms)
{
    int rv = 0;
    int64_t deadline = now_ms() + timeout_ms;
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if ((rv = wait_fd(c->fd, POLLOUT, deadline)) != 0)
                break;
        } else if (w < 0 && errno != EINTR) {
            rv = errno == EPIPE ? -ECONNRESET : -errno;
            break;
        }
    }
    return rv;
}

int shoal_trkc_send(struct shoal_trkc *c, const struct shoal_msg *m, int timeout_ms)
{
    shoal_buf_reset(&c->out);
    int rv = shoal_msg_encode(m, &c->out);
    if (rv == 0 && c->seal.on)
        rv = shoal_trk_seal_frame(&c->seal, &c->out, 0);
    if (rv == 0)
        rv = shoal_trkc_send_raw(c, c->out.data, c->out.len, timeout_ms);
    return rv;
}

int shoal_trkc_recv(struct shoal_trkc *c, struct shoal_msg *m, int timeout_ms)
{
    int rv = 0;
    int64_t deadline = now_ms() + timeout_ms;
    /* Drop the frame handed out last time. */
    if (c->consumed) {
        memmove(c->in, c->in + c->consumed, c->len - c->consumed);
        c->len -= c->consumed;
        c->consumed = 0;
    }
    for (;;) {
        if (c->len >= SHOAL_FRAME_HDR_LEN) {
            size_t body = (size_t)c->in[0] << 24 | (size_t)c->in[1] << 16 |
                          (size_t)c->in[2] << 8 | c->in[3];
            if (body == 0 || body > SHOAL_FRAME_MAX_ABS) {
                rv = body ? SHOAL_ETOOBIG : SHOAL_EPROTO;
                break;
            }
            if (c->len >= SHOAL_FRAME_HDR_LEN + body) {
                const uint8_t *p = c->in + SHOAL_FRAME_HDR_LEN;
                c->consumed = SHOAL_FRAME_HDR_LEN + body;
                /* A sealed frame that does not open was changed, dropped
                 * or replayed on the way: nothing in it counts. */
                if (c->seal.on &&
                    (rv = shoal_trk_open_frame(&c->seal, &p, &body, &c->opened,
                                               &c->opened_cap)) != 0)
                    break;
                rv = shoal_msg_decode(m, p, body);
                break;
            }
            if (c->cap < SHOAL_FRAME_HDR_LEN + body) {
                uint8_t *n = realloc(c->in, SHOAL_FRAME_HDR_LEN + body);
                if (!n) {
                    rv = -ENOMEM;
                    break;
                }
                c->in = n;
                c->cap = SHOAL_FRAME_HDR_LEN + body;
            }
        }
        if (c->len == c->cap) {
            size_t ncap = c->cap ? c->cap * 2 : 65536;
            uint8_t *n = realloc(c->in, ncap);
            if (!n) {
                rv = -ENOMEM;
                break;
            }
            c->in = n;
            c->cap = ncap;
        }
        ssize_t r = recv(c->fd, c->in + c->len, c->cap - c->len, 0);
        if (r > 0) {
            c->len += (size_t)r;
        } else if (r == 0) {
            rv = -ECONNRESET;
            break;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if ((rv = wait_fd(c->fd, POLLIN, deadline)) != 0)
                break;
        } else if (errno != EINTR) {
            rv = -errno;
            break;
        }
    }
    return rv;
}

int shoal_trkc_call(struct shoal_trkc *c, const struct shoal_msg *req, struct shoal_msg *resp,
                    int timeout_ms)
{
    int rv = shoal_trkc_send(c, req, timeout_ms);
    if (rv == 0)
        rv = shoal_trkc_recv(c, resp, timeout_ms);
    return rv;
}

static int expect_challenge(struct shoal_trkc *c, int timeout_ms)
{
    struct shoal_msg *m = malloc(sizeof(*m));
    if (!m)
        return -ENOMEM;
    int rv = shoal_trkc_recv(c, m, timeout_ms);
    if (rv == 0 && m->type != SHOAL_MSG_TRK_CHALLENGE)
        rv = SHOAL_EPROTO;
    if (rv == 0)
        memcpy(c->nonce, m->u.trk_challenge.nonce, 32);
    free(m);
    return rv;
}

int shoal_trkc_connect(struct shoal_trkc **out, const char *host_port, int timeout_ms)
{
    return shoal_trkc_connect_from(out, host_port, NULL, timeout_ms);
}

int shoal_trkc_connect_from(struct shoal_trkc **out, const char *host_port, const char *from,
                            int timeout_ms)
{
    int rv;
    struct sockaddr_in src = { .sin_family = AF_INET };
    struct shoal_trkc *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->fd = -1;
    shoal_buf_init(&c->out, SHOAL_FRAME_MAX_ABS + SHOAL_FRAME_HDR_LEN);
    char host[64];
    const char *colon = strrchr(host_port, ':');
    struct sockaddr_in sa = { .sin_family = AF_INET };
    if (!colon || (size_t)(colon - host_port) >= sizeof(host)) {
        rv = -EINVAL;
        goto fail;
    }
    memcpy(host, host_port, (size_t)(colon - host_port));
    host[colon - host_port] = 0;
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
        (from && inet_pton(AF_INET, from, &src.sin_addr) != 1)) {
        rv = -EINVAL;
        goto fail;
    }
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || (from && bind(c->fd, (struct sockaddr *)&src, sizeof(src)) != 0)) {
        rv = -errno;
        goto fail;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        if (errno != EINPROGRESS) {
            rv = -errno;
            goto fail;
        }
        if ((rv = wait_fd(c->fd, POLLOUT, now_ms() + timeout_ms)) != 0)
            goto fail;
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            rv = -err;
            goto fail;
        }
    }
    if ((rv = expect_challenge(c, timeout_ms)) != 0)
        goto fail;
    *out = c;
    return 0;
fail:
    shoal_trkc_free(c);
    return rv;
}

void shoal_trkc_free(struct shoal_trkc *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    shoal_keyset_free(c->pin);
    sodium_memzero(&c->seal, sizeof c->seal);
    free(c->opened);
    free(c->in);
    shoal_buf_free(&c->out);
    free(c);
}

int shoal_trkc_fd(const struct shoal_trkc *c)
{
    return c->fd;
}

const uint8_t *shoal_trkc_nonce(const struct shoal_trkc *c)
{
    return c->nonce;
}

void shoal_trkc_set_publisher(struct shoal_trkc *c, const uint8_t pk[32])
{
    c->has_publisher = pk != NULL;
    if (pk)
        memcpy(c->publisher_pk, pk, 32);
}

const char *shoal_trkc_error(const struct shoal_trkc *c)
{
    return c->err;
}

int shoal_trkc_pin(struct shoal_trkc *c, const struct shoal_keyset *keys)
{
    struct shoal_keyset *ks = NULL;
    int rv = shoal_keyset_new(&ks);
    if (rv == 0)
        rv = shoal_keyset_merge(ks, keys);
    if (rv != 0) {
        shoal_keyset_free(ks);
        return rv;
    }
    shoal_keyset_free(c->pin);
    c->pin = ks;
    return 0;
}

const uint8_t *shoal_trkc_proven_key(const struct shoal_trkc *c)
{
    return c->proven ? c->proven_pk : NULL;
}

bool shoal_trkc_unproven(const struct shoal_trkc *c)
{
    return c->unproven;
}

/* The TRK_PROOF a pinned login waits for: the tracker's key must be pinned
 * and its signature must cover this login's nonces and both ephemeral
 * keys; then the seal's keys are derived (switched on after the OK). */
static int check_proof(struct shoal_trkc *c, const struct shoal_msg_trk_proof *p,
                       const struct shoal_trk_id *id, const uint8_t eph_sk[32])
{
    struct shoal_trk_id full = *id;
    const char *why = NULL;
    char hex[17];

    memcpy(full.tracker_eph, p->tracker_eph, 32);
    shoal_hex(hex, p->tracker_pk, 8);
    if (!shoal_keyset_contains(c->pin, p->tracker_pk))
        why = "its key is not among the pinned tracker keys";
    else if (!p->has_tracker_eph)
        why = "it offers no sealed session";
    else if (shoal_trk_id_verify(p->sig, &full, p->tracker_pk) != 0)
        why = "its proof does not verify";
    else if (shoal_trk_seal_keys(&c->seal, true, id->client_eph, eph_sk, p->tracker_eph) != 0)
        why = "its ephemeral key is unusable";
    if (why) {
        snprintf(c->err, sizeof c->err, "%s (key %s)", why, hex);
        c->unproven = true;
        sodium_memzero(&c->seal, sizeof c->seal);
        return SHOAL_EUNTRUSTED;
    }
    memcpy(c->proven_pk, p->tracker_pk, 32);
    return 0;
}

static int do_auth(struct shoal_trkc *c, const struct shoal_seckey *sk, const uint8_t *cred,
                   size_t cred_len, const char *zone, const char *addr, uint8_t role,
                   int timeout_ms, bool fresh)
{
    int rv;
    struct shoal_trk_id id;
    uint8_t eph_sk[32];
    /* Proven once per connection: a later login rides in the sealed
     * stream. */
    bool prove = c->pin && !c->seal.on;
    struct shoal_msg *m = malloc(sizeof(*m));
    if (!m)
        return -ENOMEM;
    memset(m, 0, sizeof(*m));
    memset(&id, 0, sizeof id);
    m->type = SHOAL_MSG_TRK_AUTH;
    struct shoal_msg_trk_auth *a = &m->u.trk_auth;
    struct shoal_pubkey pk;
    shoal_seckey_public(sk, &pk);
    memcpy(a->node_pk, pk.pk, 32);
    a->cred.p = cred;
    a->cred.len = (uint32_t)cred_len;
    a->zone.p = zone;
    a->zone.len = (uint32_t)strlen(zone);
    a->listen_addr.p = addr;
    a->listen_addr.len = (uint32_t)strlen(addr);
    a->role = role;
    a->has_publisher = c->has_publisher;
    memcpy(a->publisher_pk, c->publisher_pk, 32);
    if (prove) {
        memcpy(id.chal, c->nonce, 32);
        memcpy(id.node_pk, pk.pk, 32);
        randombytes_buf(id.cnonce, sizeof id.cnonce);
        crypto_kx_keypair(id.client_eph, eph_sk);
        a->has_client_nonce = a->has_client_eph = true;
        memcpy(a->client_nonce, id.cnonce, 32);
        memcpy(a->client_eph, id.client_eph, 32);
    }
    /* Signed last: a pinned login signs every field (auth.h). */
    rv = prove ? shoal_trk_auth_sign_bound(a->sig, c->nonce, a, sk)
               : shoal_trk_auth_sign(a->sig, c->nonce, sk);
    if (rv != 0)
        goto out;
    c->err[0] = '\0';
    c->unproven = false;
    if ((rv = shoal_trkc_call(c, m, m, timeout_ms)) != 0)
        goto out;
    if (prove && m->type == SHOAL_MSG_TRK_PROOF) {
        /* A copy: gcc -O1 with the sanitizers takes the union member of
         * the heap message for an 8-byte region (-Wstringop-overread). */
        struct shoal_msg_trk_proof proof = m->u.trk_proof;
        if ((rv = check_proof(c, &proof, &id, eph_sk)) != 0 ||
            (rv = shoal_trkc_recv(c, m, timeout_ms)) != 0)
            goto out;
    } else if (prove && m->type == SHOAL_MSG_OK) {
        snprintf(c->err, sizeof c->err, "it did not prove its identity (an older "
                                        "shoal-tracker, one run without --key, or not a "
                                        "tracker of this fleet)");
        c->unproven = true;
        rv = SHOAL_EUNTRUSTED;
        goto out;
    }
    if (m->type == SHOAL_MSG_ERROR) {
        rv = m->u.error.code < 0 ? m->u.error.code : SHOAL_EPERM;
        snprintf(c->err, sizeof c->err, "%.*s", (int)m->u.error.message.len,
                 m->u.error.message.p);
        goto out;
    }
    if (m->type != SHOAL_MSG_OK) {
        rv = SHOAL_EPROTO;
        goto out;
    }
    if (prove) {
        c->proven = true;
        c->seal.on = true;
    }
    if (fresh)
        rv = expect_challenge(c, timeout_ms);
out:
    sodium_memzero(eph_sk, sizeof eph_sk);
    free(m);
    return rv;
}

int shoal_trkc_auth(struct shoal_trkc *c, const struct shoal_seckey *sk, const uint8_t *cred,
                    size_t cred_len, const char *zone, const char *addr, uint8_t role,
                    int timeout_ms)
{
    return do_auth(c, sk, cred, cred_len, zone, addr, role, timeout_ms, true);
}

int shoal_trkc_switch(struct shoal_trkc *c, const struct shoal_seckey *sk, const uint8_t *cred,
                      size_t cred_len, const char *zone, const char *addr, uint8_t role,
                      int timeout_ms)
{
    return do_auth(c, sk, cred, cred_len, zone, addr, role, timeout_ms, false);
}
