/* SPDX-License-Identifier: MIT */
/*
 * Cluster credentials: a cluster key (an Ed25519 key pair held by the
 * operator) signs a node's public key with an expiry. Nodes present their
 * credential in the handshake; a peer without one that verifies against the
 * cluster keys it trusts gets nothing.
 *
 * Encoding (msgpack, 6-element array):
 *   [ "shoal-cred", 1, node_pk: bin 32, cluster_pk: bin 32,
 *     expires_unix: uint, sig: bin 64 ]
 * The signature is Ed25519 (crypto_sign_detached) by cluster_pk over
 *   "shoal-cred-v1" NUL || node_pk || cluster_pk || expires_unix (8 bytes BE)
 * so the version and the purpose are part of what is signed and a credential
 * signature can never be replayed as some other shoal signature.
 *
 * Credential file: one line "shoal-cred-v1 <hex of the encoding>\n"
 * (see shoal_keyfile_save), written 0644 and atomically replaced.
 */
#ifndef SHOAL_CRED_H
#define SHOAL_CRED_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "keys.h"

#define SHOAL_CRED_MAGIC "shoal-cred"
#define SHOAL_CRED_VERSION 1
#define SHOAL_CRED_SIGN_DOMAIN "shoal-cred-v1"
#define SHOAL_CRED_FILE_TAG "shoal-cred-v1"
/* Upper bound of an encoded credential (the real size is about 150 bytes). */
#define SHOAL_CRED_MAX_ENCODED 256

struct shoal_cred {
    uint8_t node_pk[SHOAL_PUBKEY_LEN];
    uint8_t cluster_pk[SHOAL_PUBKEY_LEN];
    uint64_t expires_unix;
    uint8_t sig[SHOAL_SIG_LEN];
};

/*
 * Fills |out| with a credential for |node_pk| signed by |cluster_sk|, valid
 * until |expires_unix| (exclusive). Returns 0 or -EIO (libsodium failed).
 */
int shoal_cred_issue(struct shoal_cred *out, const struct shoal_seckey *cluster_sk,
                     const struct shoal_pubkey *node_pk, uint64_t expires_unix);

/* Appends the encoding of |c| to |out|. Returns 0, SHOAL_ELIMIT (|out|'s cap)
 * or -ENOMEM; on error |out| may hold a partial encoding. */
int shoal_cred_encode(const struct shoal_cred *c, struct shoal_buf *out);

/*
 * Decodes exactly one credential from p[0..n). Strict: the input must be
 * byte for byte the encoding shoal_cred_encode gives (smallest integer and
 * header forms, nothing trailing), so one credential has one encoding.
 * Only the form is checked here, not the signature (see shoal_cred_verify).
 * Returns 0, SHOAL_ETRUNC, SHOAL_ETYPE, SHOAL_ETOOBIG (more than
 * SHOAL_CRED_MAX_ENCODED bytes or more than 6 elements), SHOAL_EPROTO (fewer
 * elements, wrong magic, trailing bytes, a non-canonical form),
 * SHOAL_EVERSION, SHOAL_EBADMSG (a key or signature of the wrong length), or
 * -ENOMEM. |c| is written only on success.
 */
int shoal_cred_decode(struct shoal_cred *c, const uint8_t *p, size_t n);

/*
 * Checks |c| at time |now_unix|: the signature by c->cluster_pk, then that
 * the cluster key is in |cluster_keys|, then the expiry.
 * Returns 0, SHOAL_EBADSIG, SHOAL_EUNTRUSTED (validly signed by a key not in
 * |cluster_keys|, or |cluster_keys| is NULL), or SHOAL_EEXPIRED
 * (now_unix >= expires_unix).
 */
int shoal_cred_verify(const struct shoal_cred *c, const struct shoal_keyset *cluster_keys,
                      uint64_t now_unix);

/* Writes |c| to |path| in the file format above. Returns 0 or a negated
 * errno. */
int shoal_cred_save(const char *path, const struct shoal_cred *c);

/* Reads a credential file into |c| (written only on success); the signature
 * is not checked. Returns 0, SHOAL_EPROTO, a shoal_cred_decode error, or a
 * negated errno. */
int shoal_cred_load(const char *path, struct shoal_cred *c);

#endif
