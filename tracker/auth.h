/* SPDX-License-Identifier: MIT */
/*
 * The tracker handshake's proof of key possession, shared by the server and
 * every client (trkclient, the node daemon, tools).
 *
 * On connect the tracker sends TRK_CHALLENGE with a random 32-byte nonce.
 * The client answers TRK_AUTH with its node key, its cluster credential and
 * an Ed25519 signature by the node key over
 *     "shoal-trk-auth-v1" NUL || nonce
 * The domain string keeps a node key from ever signing a bare 32-byte value
 * an attacker chose, which could be replayed as some other shoal signature.
 */
#ifndef SHOAL_TRK_AUTH_H
#define SHOAL_TRK_AUTH_H

#include <stdint.h>

#include "keys.h"

#define SHOAL_TRK_AUTH_DOMAIN "shoal-trk-auth-v1"

/*
 * The other direction, for nodes that pin their trackers' keys: a client
 * that sent a client_nonce in TRK_AUTH gets TRK_PROOF [tracker_pk, sig],
 * an Ed25519 signature by the tracker's key over
 *     "shoal-trk-id-v1" NUL || challenge nonce || client_nonce || node_pk
 * The client's fresh nonce makes a recorded proof worthless to anyone
 * else listening on the tracker's address; the node key binds the proof to
 * the identity just proven, and another domain string keeps it apart from
 * the node's own signature.
 */
#define SHOAL_TRK_ID_DOMAIN "shoal-trk-id-v1"

/* Signs |nonce| with |sk| into |sig|. Returns 0 or -EIO (libsodium). */
int shoal_trk_auth_sign(uint8_t sig[SHOAL_SIG_LEN], const uint8_t nonce[32],
                        const struct shoal_seckey *sk);

/* Checks |sig| by |node_pk| over |nonce|. Returns 0 or SHOAL_EBADSIG. */
int shoal_trk_auth_verify(const uint8_t sig[SHOAL_SIG_LEN], const uint8_t nonce[32],
                          const uint8_t node_pk[SHOAL_PUBKEY_LEN]);

/* Signs the TRK_PROOF message for |chal| (our challenge nonce), the
 * client's |cnonce| and |node_pk| with tracker key |sk| into |sig|.
 * Returns 0 or -EIO. */
int shoal_trk_id_sign(uint8_t sig[SHOAL_SIG_LEN], const uint8_t chal[32], const uint8_t cnonce[32],
                      const uint8_t node_pk[SHOAL_PUBKEY_LEN], const struct shoal_seckey *sk);

/* Checks a TRK_PROOF signature |sig| by |tracker_pk|. Returns 0 or
 * SHOAL_EBADSIG. */
int shoal_trk_id_verify(const uint8_t sig[SHOAL_SIG_LEN], const uint8_t chal[32],
                        const uint8_t cnonce[32], const uint8_t node_pk[SHOAL_PUBKEY_LEN],
                        const uint8_t tracker_pk[SHOAL_PUBKEY_LEN]);

#endif
