/* SPDX-License-Identifier: MIT */
/*
 * AES-256-GCM for sealed peer sessions, on the fastest implementation the
 * build has: OpenSSL's libcrypto when it was found at configure time (its
 * AES-GCM uses VAES and VPCLMULQDQ where the CPU has them: 5.9-6.5 GB/s on
 * the development VM against libsodium's 1.9-2.4), else libsodium. Both
 * compute the same standard AES-256-GCM (12-byte nonce, 16-byte tag, no
 * associated data), so either end may use either.
 *
 * Stateless and thread-safe: every call takes the raw key, so seals and
 * opens of one session may run on several threads at once.
 */
#ifndef SHOAL_GCM_H
#define SHOAL_GCM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHOAL_GCM_KEY_LEN 32
#define SHOAL_GCM_NONCE_LEN 12
#define SHOAL_GCM_TAG_LEN 16

/* True when the calls below run on libcrypto (the build has it and
 * SHOAL_GCM=sodium is not set in the environment); false: libsodium's
 * crypto_aead_aes256gcm, which needs AES-NI (crypto_aead_aes256gcm_is_available). */
bool shoal_gcm_libcrypto(void);

/* Encrypts |n| bytes at |p| in place with |key| and |nonce| and writes the
 * tag to |tag|. Returns 0, or -ENOMEM / -EIO when libcrypto fails (then
 * |p| holds no ciphertext to send). */
int shoal_gcm_seal(const uint8_t key[SHOAL_GCM_KEY_LEN], const uint8_t nonce[SHOAL_GCM_NONCE_LEN],
                   uint8_t *p, size_t n, uint8_t tag[SHOAL_GCM_TAG_LEN]);

/* Checks |tag| and decrypts |n| bytes at |p| in place. Returns 0, or
 * SHOAL_EBADMSG when the tag does not match (then |p| is zeroed: no
 * unverified plaintext is left behind), or -ENOMEM / -EIO. */
int shoal_gcm_open(const uint8_t key[SHOAL_GCM_KEY_LEN], const uint8_t nonce[SHOAL_GCM_NONCE_LEN],
                   uint8_t *p, size_t n, const uint8_t tag[SHOAL_GCM_TAG_LEN]);

#endif
