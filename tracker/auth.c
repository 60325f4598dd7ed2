/* SPDX-License-Identifier: MIT */
/*
 * Tracker handshake signatures (see auth.h): the signed message is the
 * domain string, its NUL, then the nonce.
 */
#include "auth.h"

#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "error.h"

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

#define ID_LEN (sizeof(SHOAL_TRK_ID_DOMAIN) + 32 + 32 + SHOAL_PUBKEY_LEN)

static void id_message(uint8_t out[ID_LEN], const uint8_t chal[32], const uint8_t cnonce[32],
                       const uint8_t node_pk[SHOAL_PUBKEY_LEN])
{
    size_t o = sizeof(SHOAL_TRK_ID_DOMAIN);
    memcpy(out, SHOAL_TRK_ID_DOMAIN, o);
    memcpy(out + o, chal, 32);
    memcpy(out + o + 32, cnonce, 32);
    memcpy(out + o + 64, node_pk, SHOAL_PUBKEY_LEN);
}

int shoal_trk_id_sign(uint8_t sig[SHOAL_SIG_LEN], const uint8_t chal[32], const uint8_t cnonce[32],
                      const uint8_t node_pk[SHOAL_PUBKEY_LEN], const struct shoal_seckey *sk)
{
    uint8_t msg[ID_LEN];
    if (shoal_crypto_init() != 0)
        return -EIO;
    id_message(msg, chal, cnonce, node_pk);
    return crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk->sk) == 0 ? 0 : -EIO;
}

int shoal_trk_id_verify(const uint8_t sig[SHOAL_SIG_LEN], const uint8_t chal[32],
                        const uint8_t cnonce[32], const uint8_t node_pk[SHOAL_PUBKEY_LEN],
                        const uint8_t tracker_pk[SHOAL_PUBKEY_LEN])
{
    uint8_t msg[ID_LEN];
    id_message(msg, chal, cnonce, node_pk);
    return crypto_sign_verify_detached(sig, msg, sizeof(msg), tracker_pk) == 0 ? 0
                                                                              : SHOAL_EBADSIG;
}
