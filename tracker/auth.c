/* SPDX-License-Identifier: MIT */
/*
 * Tracker handshake signatures (see auth.h): the signed message is the
 * domain string, its NUL, then the nonce.
 */
#include "auth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "error.h"
#include "frame.h"

#define MSG_LEN (sizeof(SHOAL_TRK_AUTH_DOMAIN) + 32)

static void auth_message(uint8_t out[MSG_LEN], const uint8_t nonce[32])
{
    memcpy(out, SHOAL_TRK_AUTH_DOMAIN, sizeof(SHOAL_TRK_AUTH_DOMAIN));
    memcpy(out + sizeof(SHOAL_TRK_AUTH_DOMAIN), nonce, 32);
}

int shoal_trk_auth_sign(uint8_t sig[SHOAL_SIG_LEN], const uint8_t nonce[32],
                        const struct shoal_seckey *sk)
{
    uint8_t msg[MSG_LEN];
    if (shoal_crypto_init() != 0)
        return -EIO;
    auth_message(msg, nonce);
    return crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk->sk) == 0 ? 0 : -EIO;
}

int shoal_trk_auth_verify(const uint8_t sig[SHOAL_SIG_LEN], const uint8_t nonce[32],
                          const uint8_t node_pk[SHOAL_PUBKEY_LEN])
{
    uint8_t msg[MSG_LEN];
    auth_message(msg, nonce);
    return crypto_sign_verify_detached(sig, msg, sizeof(msg), node_pk) == 0 ? 0 : SHOAL_EBADSIG;
}

#define BOUND_LEN (sizeof(SHOAL_TRK_AUTH_BOUND_DOMAIN) + 32 + 32)

static void put_u32(crypto_generichash_state *h, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    crypto_generichash_update(h, b, sizeof b);
}

/* An optional field: its presence, then its bytes when present. */
static void put_opt(crypto_generichash_state *h, bool has, const uint8_t *p, size_t n)
{
    uint8_t flag = has;
    crypto_generichash_update(h, &flag, 1);
    if (has)
        crypto_generichash_update(h, p, n);
}

static void bound_message(uint8_t out[BOUND_LEN], const uint8_t nonce[32],
                          const struct shoal_msg_trk_auth *a)
{
    crypto_generichash_state h;
    size_t o = sizeof(SHOAL_TRK_AUTH_BOUND_DOMAIN);

    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, a->node_pk, 32);
    put_opt(&h, a->has_client_nonce, a->client_nonce, 32);
    put_opt(&h, a->has_client_eph, a->client_eph, 32);
    put_u32(&h, a->role);
    put_u32(&h, a->zone.len);
    crypto_generichash_update(&h, (const uint8_t *)a->zone.p, a->zone.len);
    put_u32(&h, a->listen_addr.len);
    crypto_generichash_update(&h, (const uint8_t *)a->listen_addr.p, a->listen_addr.len);
    put_opt(&h, a->has_session, a->session, SHOAL_MSG_SESSION_LEN);
    put_opt(&h, a->has_publisher, a->publisher_pk, 32);
    memcpy(out, SHOAL_TRK_AUTH_BOUND_DOMAIN, o);
    memcpy(out + o, nonce, 32);
    crypto_generichash_final(&h, out + o + 32, 32);
}

int shoal_trk_auth_sign_bound(uint8_t sig[SHOAL_SIG_LEN], const uint8_t nonce[32],
                              const struct shoal_msg_trk_auth *a,
                              const struct shoal_seckey *sk)
{
    uint8_t msg[BOUND_LEN];
    if (shoal_crypto_init() != 0)
        return -EIO;
    bound_message(msg, nonce, a);
    return crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk->sk) == 0 ? 0 : -EIO;
}

int shoal_trk_auth_verify_bound(const uint8_t nonce[32], const struct shoal_msg_trk_auth *a)
{
    uint8_t msg[BOUND_LEN];
    bound_message(msg, nonce, a);
    return crypto_sign_verify_detached(a->sig, msg, sizeof(msg), a->node_pk) == 0
               ? 0
               : SHOAL_EBADSIG;
}

#define ID_LEN (sizeof(SHOAL_TRK_ID_DOMAIN) + 5 * 32)

static void id_message(uint8_t out[ID_LEN], const struct shoal_trk_id *id)
{
    size_t o = sizeof(SHOAL_TRK_ID_DOMAIN);
    memcpy(out, SHOAL_TRK_ID_DOMAIN, o);
    memcpy(out + o, id->chal, 32);
    memcpy(out + o + 32, id->cnonce, 32);
    memcpy(out + o + 64, id->node_pk, 32);
    memcpy(out + o + 96, id->client_eph, 32);
    memcpy(out + o + 128, id->tracker_eph, 32);
}

int shoal_trk_id_sign(uint8_t sig[SHOAL_SIG_LEN], const struct shoal_trk_id *id,
                      const struct shoal_seckey *sk)
{
    uint8_t msg[ID_LEN];
    if (shoal_crypto_init() != 0)
        return -EIO;
    id_message(msg, id);
    return crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk->sk) == 0 ? 0 : -EIO;
}

int shoal_trk_id_verify(const uint8_t sig[SHOAL_SIG_LEN], const struct shoal_trk_id *id,
                        const uint8_t tracker_pk[SHOAL_PUBKEY_LEN])
{
    uint8_t msg[ID_LEN];
    id_message(msg, id);
    return crypto_sign_verify_detached(sig, msg, sizeof(msg), tracker_pk) == 0 ? 0
                                                                              : SHOAL_EBADSIG;
}

int shoal_trk_seal_keys(struct shoal_trk_seal *s, bool client, const uint8_t pk[32],
                        const uint8_t sk[32], const uint8_t peer_pk[32])
{
    int rv = client ? crypto_kx_client_session_keys(s->rx, s->tx, pk, sk, peer_pk)
                    : crypto_kx_server_session_keys(s->rx, s->tx, pk, sk, peer_pk);
    s->rx_ctr = s->tx_ctr = 0;
    s->on = false;
    return rv == 0 ? 0 : SHOAL_EBADSIG;
}

static void ctr_nonce(uint8_t n[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES], uint64_t ctr)
{
    memset(n, 0, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    for (int i = 0; i < 8; i++)
        n[i] = (uint8_t)(ctr >> (8 * i));
}

int shoal_trk_seal_frame(struct shoal_trk_seal *s, struct shoal_buf *b, size_t start)
{
    static const uint8_t tag[SHOAL_TRK_SEAL_TAG];
    uint8_t n[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    unsigned long long clen;
    size_t blen = b->len - start - SHOAL_FRAME_HDR_LEN;
    int rv = shoal_buf_append(b, tag, sizeof tag);
    if (rv == 0) {
        uint8_t *p = b->data + start + SHOAL_FRAME_HDR_LEN;
        ctr_nonce(n, s->tx_ctr++);
        rv = crypto_aead_xchacha20poly1305_ietf_encrypt(p, &clen, p, blen, NULL, 0, NULL, n,
                                                        s->tx) == 0 ? 0 : -EIO;
    }
    if (rv == 0)
        rv = shoal_frame_header(b->data + start, blen + SHOAL_TRK_SEAL_TAG);
    if (rv == SHOAL_ETOOBIG)
        rv = SHOAL_ELIMIT;
    if (rv != 0)
        b->len = start;
    return rv;
}

int shoal_trk_open_frame(struct shoal_trk_seal *s, const uint8_t **body, size_t *len,
                         uint8_t **scratch, size_t *cap)
{
    uint8_t n[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    unsigned long long mlen;
    if (*len < SHOAL_TRK_SEAL_TAG)
        return SHOAL_EBADMSG;
    if (*cap < *len) {
        uint8_t *p = realloc(*scratch, *len);
        if (!p)
            return -ENOMEM;
        *scratch = p;
        *cap = *len;
    }
    ctr_nonce(n, s->rx_ctr);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(*scratch, &mlen, NULL, *body, *len, NULL, 0, n,
                                                   s->rx) != 0)
        return SHOAL_EBADMSG;
    s->rx_ctr++;
    *body = *scratch;
    *len = (size_t)mlen;
    return 0;
}
