/* SPDX-License-Identifier: MIT */
/*
 * Handshake transcript, credential checks and frame sealing for one peer
 * connection (see session.h for the protocol). Pure: libsodium and the
 * message codec, no sockets.
 */
#include "session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cred.h"
#include "error.h"
#include "frame.h"
#include "gcm.h"
#include "hash.h"

#define HS_DOMAIN "shoal-hs-v1"
#define AUTH_DOMAIN "shoal-hello-auth-v1"

enum cipher { CIPHER_NONE = 0, CIPHER_AESGCM, CIPHER_XCHACHA };

struct shoal_session {
    bool initiator;
    bool hello_sent, hello_got, auth_sent, auth_got;
    enum cipher cipher;

    struct shoal_seckey node_sk;
    uint8_t cred[SHOAL_MSG_CRED_MAX];
    size_t cred_len;
    char zone[SHOAL_MSG_ZONE_MAX + 1];
    char listen_addr[SHOAL_MSG_ADDR_MAX + 1];
    uint32_t flags;
    uint32_t max_frame;
    uint8_t eph_pk[crypto_kx_PUBLICKEYBYTES];
    uint8_t eph_sk[crypto_kx_SECRETKEYBYTES];

    /* Both HELLO bodies, kept until the transcript is hashed. */
    uint8_t *my_hello, *peer_hello;
    size_t my_hello_len, peer_hello_len;
    uint8_t transcript[SHOAL_HASH_LEN];

    uint8_t peer_pk[SHOAL_PUBKEY_LEN];
    uint8_t peer_eph[crypto_kx_PUBLICKEYBYTES];
    char peer_zone[SHOAL_MSG_ZONE_MAX + 1];
    char peer_addr[SHOAL_MSG_ADDR_MAX + 1];
    uint32_t peer_flags;
    uint32_t peer_max_frame;
    uint64_t peer_expires;   /* the peer's credential's expires_unix */

    uint8_t rx_key[32], tx_key[32];
    uint64_t rx_ctr, tx_ctr;
};

int shoal_session_new(struct shoal_session **out, bool initiator,
                      const struct shoal_session_local *loc)
{
    struct shoal_session *s = NULL;
    int rv = 0;

    if (!out || !loc || !loc->node_sk || !loc->zone || !loc->listen_addr ||
        strlen(loc->zone) > SHOAL_MSG_ZONE_MAX ||
        strlen(loc->listen_addr) > SHOAL_MSG_ADDR_MAX || loc->cred_len > SHOAL_MSG_CRED_MAX ||
        (loc->cred_len && !loc->cred)) {
        rv = -EINVAL;
        goto out;
    }
    if (shoal_crypto_init() != 0) {
        rv = -EIO;
        goto out;
    }
    /* The GCM states need 16-byte alignment, which malloc gives on the
     * platforms shoal runs on; aligned_alloc makes it explicit. */
    s = aligned_alloc(16, (sizeof *s + 15) & ~(size_t)15);
    if (!s) {
        rv = -ENOMEM;
        goto out;
    }
    memset(s, 0, sizeof *s);
    s->initiator = initiator;
    s->node_sk = *loc->node_sk;
    if (loc->cred_len)
        memcpy(s->cred, loc->cred, loc->cred_len);
    s->cred_len = loc->cred_len;
    snprintf(s->zone, sizeof s->zone, "%s", loc->zone);
    snprintf(s->listen_addr, sizeof s->listen_addr, "%s", loc->listen_addr);
    s->flags = loc->encrypt ? SHOAL_HELLO_F_ENCRYPT : 0;
    if (loc->allow_aesgcm && crypto_aead_aes256gcm_is_available())
        s->flags |= SHOAL_HELLO_F_AESGCM;
    s->max_frame = loc->max_frame ? loc->max_frame : SHOAL_FRAME_MAX_AUTH;
    crypto_kx_keypair(s->eph_pk, s->eph_sk);
    *out = s;
out:
    return rv;
}

void shoal_session_free(struct shoal_session *s)
{
    if (!s)
        return;
    free(s->my_hello);
    free(s->peer_hello);
    sodium_memzero(s, sizeof *s);
    free(s);
}

int shoal_session_hello(struct shoal_session *s, struct shoal_buf *out)
{
    struct shoal_msg m;
    size_t before = out->len;
    int rv;

    if (s->hello_sent)
        return -EINVAL;
    memset(&m, 0, sizeof m);
    m.type = SHOAL_MSG_HELLO;
    m.u.hello.version = SHOAL_PROTO_VERSION;
    shoal_seckey_public(&s->node_sk, (struct shoal_pubkey *)m.u.hello.node_pk);
    m.u.hello.cred.p = s->cred;
    m.u.hello.cred.len = (uint32_t)s->cred_len;
    m.u.hello.zone.p = s->zone;
    m.u.hello.zone.len = (uint32_t)strlen(s->zone);
    m.u.hello.listen_addr.p = s->listen_addr;
    m.u.hello.listen_addr.len = (uint32_t)strlen(s->listen_addr);
    memcpy(m.u.hello.eph_pk, s->eph_pk, sizeof s->eph_pk);
    randombytes_buf(m.u.hello.nonce, sizeof m.u.hello.nonce);
    m.u.hello.flags = s->flags;
    m.u.hello.max_frame = s->max_frame;
    rv = shoal_msg_encode(&m, out);
    if (rv != 0)
        goto out;
    s->my_hello_len = out->len - before - SHOAL_FRAME_HDR_LEN;
    s->my_hello = malloc(s->my_hello_len);
    if (!s->my_hello) {
        out->len = before;
        rv = -ENOMEM;
        goto out;
    }
    memcpy(s->my_hello, out->data + before + SHOAL_FRAME_HDR_LEN, s->my_hello_len);
    s->hello_sent = true;
out:
    return rv;
}

static void copy_str(char *dst, size_t cap, struct shoal_str v)
{
    size_t n = v.len < cap - 1 ? v.len : cap - 1;
    memcpy(dst, v.p, n);
    dst[n] = '\0';
}

int shoal_session_on_hello(struct shoal_session *s, const struct shoal_msg_hello *h,
                           const uint8_t *body, size_t len,
                           const struct shoal_keyset *cluster_keys, uint64_t now_unix,
                           char *why, size_t whylen)
{
    struct shoal_cred cred;
    int rv;

    if (s->hello_got) {
        snprintf(why, whylen, "second HELLO");
        rv = -EINVAL;
        goto out;
    }
    if (h->version != SHOAL_PROTO_VERSION) {
        snprintf(why, whylen, "protocol version %u, we speak %u", h->version,
                 SHOAL_PROTO_VERSION);
        rv = SHOAL_EVERSION;
        goto out;
    }
    if (h->cred.len == 0) {
        snprintf(why, whylen, "no cluster credential");
        rv = SHOAL_EPERM;
        goto out;
    }
    rv = shoal_cred_decode(&cred, h->cred.p, h->cred.len);
    if (rv != 0) {
        snprintf(why, whylen, "malformed credential: %s", shoal_strerror(rv));
        rv = SHOAL_EPERM;
        goto out;
    }
    if (sodium_memcmp(cred.node_pk, h->node_pk, SHOAL_PUBKEY_LEN) != 0) {
        snprintf(why, whylen, "credential was issued to another node key");
        rv = SHOAL_EPERM;
        goto out;
    }
    rv = shoal_cred_verify(&cred, cluster_keys, now_unix);
    if (rv != 0) {
        snprintf(why, whylen, "credential rejected: %s%s", shoal_strerror(rv),
                 rv == SHOAL_EUNTRUSTED ? " (cluster key not trusted)" : "");
        goto out;
    }
    s->peer_hello = malloc(len);
    if (!s->peer_hello) {
        snprintf(why, whylen, "out of memory");
        rv = -ENOMEM;
        goto out;
    }
    memcpy(s->peer_hello, body, len);
    s->peer_hello_len = len;
    memcpy(s->peer_pk, h->node_pk, sizeof s->peer_pk);
    memcpy(s->peer_eph, h->eph_pk, sizeof s->peer_eph);
    copy_str(s->peer_zone, sizeof s->peer_zone, h->zone);
    copy_str(s->peer_addr, sizeof s->peer_addr, h->listen_addr);
    s->peer_flags = h->flags;
    s->peer_max_frame = h->max_frame;
    s->peer_expires = cred.expires_unix;
    if (!((s->flags | s->peer_flags) & SHOAL_HELLO_F_ENCRYPT))
        s->cipher = CIPHER_NONE;
    else if (s->flags & s->peer_flags & SHOAL_HELLO_F_AESGCM)
        s->cipher = CIPHER_AESGCM;
    else
        s->cipher = CIPHER_XCHACHA;
    s->hello_got = true;
out:
    return rv;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Hashes both HELLOs in initiator/responder order and derives the session
 * keys; both sides get the same transcript and mirrored keys. */
static int finish_hellos(struct shoal_session *s)
{
    struct shoal_blake2b b;
    uint8_t lenbuf[4];
    const uint8_t *ini = s->initiator ? s->my_hello : s->peer_hello;
    const uint8_t *res = s->initiator ? s->peer_hello : s->my_hello;
    size_t ini_len = s->initiator ? s->my_hello_len : s->peer_hello_len;
    size_t res_len = s->initiator ? s->peer_hello_len : s->my_hello_len;
    int rv;

    shoal_blake2b_init(&b);
    shoal_blake2b_update(&b, HS_DOMAIN, sizeof HS_DOMAIN);
    put_be32(lenbuf, (uint32_t)ini_len);
    shoal_blake2b_update(&b, lenbuf, 4);
    shoal_blake2b_update(&b, ini, ini_len);
    put_be32(lenbuf, (uint32_t)res_len);
    shoal_blake2b_update(&b, lenbuf, 4);
    shoal_blake2b_update(&b, res, res_len);
    shoal_blake2b_final(&b, s->transcript);

    if (s->initiator)
        rv = crypto_kx_client_session_keys(s->rx_key, s->tx_key, s->eph_pk, s->eph_sk,
                                           s->peer_eph);
    else
        rv = crypto_kx_server_session_keys(s->rx_key, s->tx_key, s->eph_pk, s->eph_sk,
                                           s->peer_eph);
    sodium_memzero(s->eph_sk, sizeof s->eph_sk);
    if (rv != 0)
        return SHOAL_EBADMSG; /* the peer's ephemeral key is a bad point */
    free(s->my_hello);
    free(s->peer_hello);
    s->my_hello = s->peer_hello = NULL;
    return 0;
}

static void auth_message(const struct shoal_session *s, bool initiator_role,
                         uint8_t out[sizeof AUTH_DOMAIN + 1 + SHOAL_HASH_LEN])
{
    memcpy(out, AUTH_DOMAIN, sizeof AUTH_DOMAIN);
    out[sizeof AUTH_DOMAIN] = initiator_role ? 0 : 1;
    memcpy(out + sizeof AUTH_DOMAIN + 1, s->transcript, SHOAL_HASH_LEN);
}

int shoal_session_auth(struct shoal_session *s, struct shoal_buf *out)
{
    uint8_t msgbuf[sizeof AUTH_DOMAIN + 1 + SHOAL_HASH_LEN];
    struct shoal_msg m;
    int rv;

    if (!s->hello_sent || !s->hello_got || s->auth_sent) {
        rv = -EINVAL;
        goto out;
    }
    rv = finish_hellos(s);
    if (rv != 0)
        goto out;
    memset(&m, 0, sizeof m);
    m.type = SHOAL_MSG_HELLO_AUTH;
    auth_message(s, s->initiator, msgbuf);
    crypto_sign_detached(m.u.hello_auth.sig, NULL, msgbuf, sizeof msgbuf, s->node_sk.sk);
    rv = shoal_msg_encode(&m, out);
    if (rv == 0)
        s->auth_sent = true;
out:
    return rv;
}

int shoal_session_on_auth(struct shoal_session *s, const struct shoal_msg_hello_auth *a)
{
    uint8_t msgbuf[sizeof AUTH_DOMAIN + 1 + SHOAL_HASH_LEN];

    if (!s->auth_sent || s->auth_got)
        return -EINVAL;
    auth_message(s, !s->initiator, msgbuf);
    if (crypto_sign_verify_detached(a->sig, msgbuf, sizeof msgbuf, s->peer_pk) != 0)
        return SHOAL_EBADSIG;
    s->auth_got = true;
    return 0;
}

bool shoal_session_authed(const struct shoal_session *s) { return s->auth_got; }
bool shoal_session_encrypted(const struct shoal_session *s) { return s->cipher != CIPHER_NONE; }

const char *shoal_session_cipher(const struct shoal_session *s)
{
    switch (s->cipher) {
    case CIPHER_AESGCM: return "aes256gcm";
    case CIPHER_XCHACHA: return "xchacha20poly1305";
    default: return "none";
    }
}

const uint8_t *shoal_session_peer_pk(const struct shoal_session *s) { return s->peer_pk; }
const char *shoal_session_peer_zone(const struct shoal_session *s) { return s->peer_zone; }
const char *shoal_session_peer_addr(const struct shoal_session *s) { return s->peer_addr; }
uint32_t shoal_session_peer_max_frame(const struct shoal_session *s) { return s->peer_max_frame; }
uint64_t shoal_session_peer_expires(const struct shoal_session *s) { return s->peer_expires; }

size_t shoal_session_send_overhead(const struct shoal_session *s)
{
    return s->cipher != CIPHER_NONE && s->auth_sent ? SHOAL_SESSION_TAG_LEN : 0;
}

/* Counter nonce: little-endian counter in the first 8 bytes, rest zero.
 * Keys are per direction, so the counters need no direction bit. */
static void make_nonce(uint8_t *nonce, size_t n, uint64_t ctr)
{
    memset(nonce, 0, n);
    for (int i = 0; i < 8; i++)
        nonce[i] = (uint8_t)(ctr >> (8 * i));
}

/* Seals |body_len| bytes after the header slot at |frame| with counter
 * |ctr| and writes the header; reads only the keys (any thread). */
static int seal_with(const struct shoal_session *s, uint64_t ctr, uint8_t *frame,
                     size_t body_len, size_t *frame_len)
{
    uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    uint8_t *p = frame + SHOAL_FRAME_HDR_LEN;
    size_t sealed = body_len + SHOAL_SESSION_TAG_LEN;
    int rv;

    /* Checked first: nothing is encrypted for a frame that cannot be sent. */
    rv = shoal_frame_header(frame, sealed);
    if (rv != 0)
        goto out;
    if (s->cipher == CIPHER_AESGCM) {
        make_nonce(nonce, SHOAL_GCM_NONCE_LEN, ctr);
        rv = shoal_gcm_seal(s->tx_key, nonce, p, body_len, p + body_len);
    } else {
        make_nonce(nonce, sizeof nonce, ctr);
        crypto_aead_xchacha20poly1305_ietf_encrypt_detached(p, p + body_len, NULL, p,
                                                            body_len, NULL, 0, NULL, nonce,
                                                            s->tx_key);
    }
    if (rv == 0)
        *frame_len = sealed + SHOAL_FRAME_HDR_LEN;
out:
    return rv;
}

int shoal_session_seal(struct shoal_session *s, uint8_t *frame, size_t body_len,
                       size_t *frame_len)
{
    int rv;

    if (s->cipher == CIPHER_NONE || !s->auth_sent) {
        rv = shoal_frame_header(frame, body_len);
        if (rv == 0)
            *frame_len = body_len + SHOAL_FRAME_HDR_LEN;
        return rv;
    }
    rv = seal_with(s, s->tx_ctr, frame, body_len, frame_len);
    if (rv == 0)
        s->tx_ctr++;
    return rv;
}

/* Opens |body|/|len| in place with counter |ctr| (any thread). */
static int open_with(const struct shoal_session *s, uint64_t ctr, uint8_t *body, size_t len,
                     size_t *plain_len)
{
    uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    size_t n;
    int rc;

    if (len < SHOAL_SESSION_TAG_LEN)
        return SHOAL_EBADMSG;
    n = len - SHOAL_SESSION_TAG_LEN;
    if (s->cipher == CIPHER_AESGCM) {
        make_nonce(nonce, SHOAL_GCM_NONCE_LEN, ctr);
        rc = shoal_gcm_open(s->rx_key, nonce, body, n, body + n);
    } else {
        make_nonce(nonce, sizeof nonce, ctr);
        rc = crypto_aead_xchacha20poly1305_ietf_decrypt_detached(body, NULL, body, n, body + n,
                                                                 NULL, 0, nonce, s->rx_key);
    }
    if (rc != 0)
        return SHOAL_EBADMSG;
    *plain_len = n;
    return 0;
}

int shoal_session_open(struct shoal_session *s, uint8_t *body, size_t len, size_t *plain_len)
{
    int rv;

    if (!s->auth_got)
        return -EINVAL;
    if (s->cipher == CIPHER_NONE) {
        *plain_len = len;
        return 0;
    }
    rv = open_with(s, s->rx_ctr, body, len, plain_len);
    if (rv == 0)
        s->rx_ctr++;
    return rv;
}

/* sealing off the loop thread */
uint64_t shoal_session_seal_reserve(struct shoal_session *s)
{
    return s->tx_ctr++;
}

int shoal_session_seal_at(const struct shoal_session *s, uint64_t ctr, uint8_t *frame,
                          size_t body_len, size_t *frame_len)
{
    if (s->cipher == CIPHER_NONE || !s->auth_sent)
        return -EINVAL;
    return seal_with(s, ctr, frame, body_len, frame_len);
}

uint64_t shoal_session_open_reserve(struct shoal_session *s)
{
    return s->rx_ctr++;
}

int shoal_session_open_at(const struct shoal_session *s, uint64_t ctr, uint8_t *body,
                          size_t len, size_t *plain_len)
{
    if (!s->auth_got || s->cipher == CIPHER_NONE)
        return -EINVAL;
    return open_with(s, ctr, body, len, plain_len);
}
