/* SPDX-License-Identifier: MIT */
/*
 * The cryptographic half of a node<->node connection, with no I/O: it builds
 * our HELLO, checks the peer's (version, cluster credential against the
 * trusted cluster keys, that the credential names the key the peer claims),
 * signs and verifies the handshake transcript (HELLO_AUTH), derives the
 * per-direction session keys with crypto_kx from the ephemeral keys both
 * HELLOs carry, and seals/opens frame bodies with an AEAD.
 *
 * Handshake (both sides send HELLO at once, then HELLO_AUTH once they have
 * the other's HELLO):
 *   transcript = BLAKE2b-256("shoal-hs-v1" NUL || u32be(len I) || I ||
 *                            u32be(len R) || R)
 * where I and R are the initiator's and responder's HELLO frame bodies as
 * sent, and HELLO_AUTH carries Ed25519 by the node key over
 *   "shoal-hello-auth-v1" NUL || role (0 initiator, 1 responder) || transcript
 * so a signature can be neither replayed on another connection (fresh
 * nonces and ephemeral keys) nor reflected back to its sender (role byte).
 * The ephemeral keys are inside the signed HELLOs, so the session keys are
 * bound to both node identities.
 *
 * Sealing: once both HELLO_AUTHs are through, every later frame body is
 * sealed when either side asked for encryption (HELLO flag bit 0). The
 * cipher is AES-256-GCM when both sides set SHOAL_HELLO_F_AESGCM (the CPU has
 * AES-NI), else XChaCha20-Poly1305. Each direction has its own key and a
 * 64-bit message counter as implicit nonce, so frames cannot be reordered,
 * replayed or dropped without the next open failing. A sealed body is the
 * ciphertext followed by a 16-byte tag; the frame header counts both.
 *
 * Not thread-safe: one connection, one thread, except for the _at calls
 * below, which worker threads may run while the loop thread goes on.
 */
#ifndef SHOAL_SESSION_H
#define SHOAL_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "keys.h"
#include "msg.h"

#define SHOAL_PROTO_VERSION 1u
/* HELLO flag: the sender can run AES-256-GCM in hardware. */
#define SHOAL_HELLO_F_AESGCM 0x2u
/* Bytes a sealed body adds (the AEAD tag). */
#define SHOAL_SESSION_TAG_LEN 16u

/* What we present in our HELLO. All pointers are borrowed for the call to
 * shoal_session_new only (copied). */
struct shoal_session_local {
    const struct shoal_seckey *node_sk; /* our node identity */
    const uint8_t *cred;                /* encoded credential; may be NULL/0 */
    size_t cred_len;
    const char *zone;                   /* may be "" */
    const char *listen_addr;            /* "host:port" we accept peers on */
    bool encrypt;                       /* we want sealed frames */
    bool allow_aesgcm;                  /* false forces XChaCha20-Poly1305 */
    uint32_t max_frame;                 /* largest body we accept after auth */
};

struct shoal_session;

/*
 * New handshake state for one connection; |initiator| is true on the side
 * that connected. Generates the ephemeral kx key pair and the nonce.
 * Returns 0, -EINVAL (bad |loc|: missing key, zone/addr/cred too long), -EIO
 * (libsodium could not start) or -ENOMEM. Writes |*out| only on success.
 */
int shoal_session_new(struct shoal_session **out, bool initiator,
                      const struct shoal_session_local *loc);
/* Wipes the keys and frees; NULL is fine. */
void shoal_session_free(struct shoal_session *s);

/* Appends our HELLO frame (header + body) to |out| and records the body for
 * the transcript. Call once. Returns 0, -EINVAL (called twice), or an
 * encoder error (SHOAL_ELIMIT, -ENOMEM). */
int shoal_session_hello(struct shoal_session *s, struct shoal_buf *out);

/*
 * Checks the peer's HELLO |h|, decoded from frame body |body|/|len| (kept
 * for the transcript): protocol version, credential decodes and verifies
 * against |cluster_keys| at |now_unix|, and names h->node_pk. On failure a
 * human-readable reason goes to |why| (NUL-terminated, |whylen| bytes).
 * Returns 0, -EINVAL (second HELLO), SHOAL_EVERSION, SHOAL_EPERM (no or
 * malformed credential, or for another key), SHOAL_EBADSIG, SHOAL_EUNTRUSTED,
 * SHOAL_EEXPIRED, or -ENOMEM.
 */
int shoal_session_on_hello(struct shoal_session *s, const struct shoal_msg_hello *h,
                           const uint8_t *body, size_t len,
                           const struct shoal_keyset *cluster_keys, uint64_t now_unix,
                           char *why, size_t whylen);

/* Appends our HELLO_AUTH frame (signature over the transcript) to |out|.
 * Needs both HELLOs. Returns 0, -EINVAL (too early or twice), or an encoder
 * error. From now on shoal_session_seal() seals (when sealing is on). */
int shoal_session_auth(struct shoal_session *s, struct shoal_buf *out);

/* Verifies the peer's HELLO_AUTH. Returns 0 (the peer is authenticated and
 * every later frame from it must be opened), -EINVAL (too early or twice) or
 * SHOAL_EBADSIG. */
int shoal_session_on_auth(struct shoal_session *s, const struct shoal_msg_hello_auth *a);

/* True once the peer's HELLO_AUTH verified. */
bool shoal_session_authed(const struct shoal_session *s);
/* True when frames after the handshake are sealed (valid after on_hello). */
bool shoal_session_encrypted(const struct shoal_session *s);
/* "aes256gcm", "xchacha20poly1305" or "none" (valid after on_hello). */
const char *shoal_session_cipher(const struct shoal_session *s);
/* The peer's node key and its HELLO fields copied at on_hello. */
const uint8_t *shoal_session_peer_pk(const struct shoal_session *s);
const char *shoal_session_peer_zone(const struct shoal_session *s);
const char *shoal_session_peer_addr(const struct shoal_session *s);
uint32_t shoal_session_peer_max_frame(const struct shoal_session *s);
/* When the peer's credential ends (Unix seconds; it is expired from that
 * second on, as for shoal_cred_verify). Valid after on_hello, 0 before. The
 * handshake checks it once; keeping a live session to that end is the
 * connection owner's job (peer.h). */
uint64_t shoal_session_peer_expires(const struct shoal_session *s);

/* Bytes a frame we send grows by: SHOAL_SESSION_TAG_LEN when we seal, else 0. */
size_t shoal_session_send_overhead(const struct shoal_session *s);

/*
 * Seals in place the frame at |frame|: a 4-byte header slot followed by
 * |body_len| plaintext bytes and SHOAL_SESSION_TAG_LEN spare bytes. Writes
 * the header for the sealed length. When sealing is off it only writes the
 * header. |*frame_len| gets the bytes to send. Returns 0, SHOAL_ETOOBIG, or
 * -EINVAL (before our HELLO_AUTH).
 */
int shoal_session_seal(struct shoal_session *s, uint8_t *frame, size_t body_len,
                       size_t *frame_len);

/*
 * Opens in place a received frame body |body|/|len| from the authenticated
 * peer; |*plain_len| gets the plaintext length (the plaintext starts at
 * |body|). Identity when sealing is off. Returns 0, SHOAL_EBADMSG (tag does
 * not verify: tampered, replayed or reordered) or -EINVAL (before auth).
 */
int shoal_session_open(struct shoal_session *s, uint8_t *body, size_t len,
                       size_t *plain_len);

/* sealing off the loop thread
 * Split forms of seal and open for a connection that seals or opens big
 * frames on worker threads: the loop thread takes the next counter in wire
 * order with a reserve call (cheap), and any thread then seals or opens with
 * that counter. The _at calls read only the keys, which do not change after
 * the handshake, so several may run at once, alongside the loop's own seal,
 * open and reserve calls; the session must outlive them. Counters from
 * shoal_session_seal_reserve() and shoal_session_seal() are one sequence:
 * the frames must reach the wire in counter order, whichever thread sealed
 * them. On the receiving side, every frame after the handshake takes one
 * counter in arrival order, so a frame opened late still verifies, while a
 * replayed, reordered or dropped frame does not. */

/* The counter for the next frame we send (and advances it). Only while
 * sealing (shoal_session_send_overhead() > 0). */
uint64_t shoal_session_seal_reserve(struct shoal_session *s);
/* shoal_session_seal() with counter |ctr| from shoal_session_seal_reserve().
 * Returns 0, SHOAL_ETOOBIG, or -EINVAL when not sealing. */
int shoal_session_seal_at(const struct shoal_session *s, uint64_t ctr, uint8_t *frame,
                          size_t body_len, size_t *frame_len);
/* The counter of the next frame received from the authenticated peer (and
 * advances it). Only when shoal_session_encrypted() after the handshake. */
uint64_t shoal_session_open_reserve(struct shoal_session *s);
/* shoal_session_open() with counter |ctr| from shoal_session_open_reserve().
 * Returns 0, SHOAL_EBADMSG or -EINVAL (not authenticated, or not sealed). */
int shoal_session_open_at(const struct shoal_session *s, uint64_t ctr, uint8_t *body,
                          size_t len, size_t *plain_len);

#endif
