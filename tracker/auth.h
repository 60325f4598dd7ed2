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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "keys.h"
#include "msg.h"

#define SHOAL_TRK_AUTH_DOMAIN "shoal-trk-auth-v1"

/*
 * The other direction, for nodes that pin their trackers' keys: a client
 * that sent a client_nonce (and an ephemeral X25519 key, client_eph) in
 * TRK_AUTH gets TRK_PROOF [tracker_pk, sig, tracker_eph], an Ed25519
 * signature by the tracker's key over
 *     "shoal-trk-id-v1" NUL || challenge nonce || client_nonce || node_pk
 *                           || client_eph || tracker_eph
 * (an absent ephemeral key as 32 zero bytes). The client's fresh nonce
 * makes a recorded proof worthless to anyone else listening on the
 * tracker's address; the node key binds the proof to the identity just
 * proven, and another domain string keeps it apart from the node's own
 * signature. With both ephemeral keys, everything after the tracker's OK
 * is sealed in both directions (shoal_trk_seal_*), with keys no one but
 * the two ends can derive: a node that pins the tracker's key talks to it
 * alone, and what it learns (manifests, peers, leases) is neither read nor
 * changed on the way.
 */
#define SHOAL_TRK_ID_DOMAIN "shoal-trk-id-v1"

/*
 * A login that pins the tracker (TRK_AUTH with client_nonce and client_eph)
 * is signed over more than the challenge: over
 *     "shoal-trk-auth-v2" NUL || nonce || BLAKE2b-256(node_pk || client_nonce
 *         || client_eph || role || zone || listen_addr || session || publisher_pk)
 * (strings and optional fields with their lengths or presence). It is sent
 * before the tracker has proven its key, so whoever relays it could
 * otherwise log in with it elsewhere: as it is, it is good only unchanged,
 * and then for a session sealed with keys the relay does not have (a
 * plain login, another role, zone or address, fails the signature).
 */
#define SHOAL_TRK_AUTH_BOUND_DOMAIN "shoal-trk-auth-v2"

/* Signs TRK_AUTH |a| (every field but sig and cred set) for challenge
 * |nonce| with |sk| into |sig|. Returns 0 or -EIO. */
int shoal_trk_auth_sign_bound(uint8_t sig[SHOAL_SIG_LEN], const uint8_t nonce[32],
                              const struct shoal_msg_trk_auth *a,
                              const struct shoal_seckey *sk);

/* Checks |a|'s sig over challenge |nonce| and |a|'s fields by a->node_pk.
 * Returns 0 or SHOAL_EBADSIG. */
int shoal_trk_auth_verify_bound(const uint8_t nonce[32], const struct shoal_msg_trk_auth *a);

/* Signs |nonce| with |sk| into |sig|. Returns 0 or -EIO (libsodium). */
int shoal_trk_auth_sign(uint8_t sig[SHOAL_SIG_LEN], const uint8_t nonce[32],
                        const struct shoal_seckey *sk);

/* Checks |sig| by |node_pk| over |nonce|. Returns 0 or SHOAL_EBADSIG. */
int shoal_trk_auth_verify(const uint8_t sig[SHOAL_SIG_LEN], const uint8_t nonce[32],
                          const uint8_t node_pk[SHOAL_PUBKEY_LEN]);

/* What a TRK_PROOF signs, besides the domain string. */
struct shoal_trk_id {
    uint8_t chal[32];      /* the tracker's challenge nonce */
    uint8_t cnonce[32];    /* the client's nonce */
    uint8_t node_pk[SHOAL_PUBKEY_LEN];
    uint8_t client_eph[32]; /* zero: none */
    uint8_t tracker_eph[32];
};

/* Signs |id| with tracker key |sk| into |sig|. Returns 0 or -EIO. */
int shoal_trk_id_sign(uint8_t sig[SHOAL_SIG_LEN], const struct shoal_trk_id *id,
                      const struct shoal_seckey *sk);

/* Checks a TRK_PROOF signature |sig| by |tracker_pk| over |id|. Returns 0
 * or SHOAL_EBADSIG. */
int shoal_trk_id_verify(const uint8_t sig[SHOAL_SIG_LEN], const struct shoal_trk_id *id,
                        const uint8_t tracker_pk[SHOAL_PUBKEY_LEN]);

/* One end of a sealed tracker connection: XChaCha20-Poly1305 with a key
 * per direction and a frame counter as the nonce, so frames cannot be
 * dropped, replayed or reordered unnoticed. */
#define SHOAL_TRK_SEAL_TAG 16u
struct shoal_trk_seal {
    uint8_t rx[32], tx[32];
    uint64_t rx_ctr, tx_ctr;
    bool on;               /* set by the caller once both ends seal */
};

/* Derives |s|'s keys from our ephemeral X25519 pair (|pk|, |sk|), the
 * other end's |peer_pk| and our role (|client|: the node). Returns 0 or
 * SHOAL_EBADSIG (a degenerate peer key). |s| is not switched on. */
int shoal_trk_seal_keys(struct shoal_trk_seal *s, bool client, const uint8_t pk[32],
                        const uint8_t sk[32], const uint8_t peer_pk[32]);

/* Seals the frame (header and body) encoded at b->data + |start| up to
 * b->len in place: the tag goes after the body and the header gets the
 * new length. On failure b->len is |start| again (nothing half-sealed is
 * left). Returns 0, SHOAL_ELIMIT (past b's max or the frame limit) or
 * -EIO / -ENOMEM. */
int shoal_trk_seal_frame(struct shoal_trk_seal *s, struct shoal_buf *b, size_t start);

/* Opens the sealed frame body *|body| (*|len| bytes, tag included) into
 * *|scratch| (grown as needed, *|cap| bytes; the caller frees it) and
 * points *|body|, *|len| at the opened bytes. Returns 0, SHOAL_EBADMSG
 * (too short, or not sealed by the other end in this order) or -ENOMEM. */
int shoal_trk_open_frame(struct shoal_trk_seal *s, const uint8_t **body, size_t *len,
                         uint8_t **scratch, size_t *cap);

#endif
