/* SPDX-License-Identifier: MIT */
/*
 * AES-256-GCM on libcrypto or libsodium; see gcm.h. libcrypto decrypts as
 * it authenticates (one pass), so a frame that fails its tag has been
 * decrypted already: open wipes it before saying so. libsodium's
 * implementation checks first and decrypts after, in two passes.
 */
#include "gcm.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "error.h"

#ifdef SHOAL_HAVE_LIBCRYPTO
#include <openssl/evp.h>

/* Fetched once: an implicit fetch in every EVP_EncryptInit_ex would look
 * the algorithm up (under a lock) on every frame. */
static EVP_CIPHER *gcm_cipher;
static bool use_libcrypto;
static pthread_once_t gcm_once = PTHREAD_ONCE_INIT;

static void gcm_init(void)
{
    const char *e = getenv("SHOAL_GCM");

    if (e && strcmp(e, "sodium") == 0)
        return;
    gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    use_libcrypto = gcm_cipher != NULL;
}

bool shoal_gcm_libcrypto(void)
{
    pthread_once(&gcm_once, gcm_init);
    return use_libcrypto;
}

/* EVP lengths are ints: a longer buffer goes in pieces. */
static int evp_update(EVP_CIPHER_CTX *c, bool enc, uint8_t *p, size_t n)
{
    while (n > 0) {
        int k = n > (size_t)(INT_MAX - 64) ? INT_MAX - 64 : (int)n, out = 0;

        if ((enc ? EVP_EncryptUpdate(c, p, &out, p, k) : EVP_DecryptUpdate(c, p, &out, p, k)) !=
                1 ||
            out != k)
            return -EIO;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int evp_seal(const uint8_t *key, const uint8_t *nonce, uint8_t *p, size_t n,
                    uint8_t *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int rv = -EIO, out = 0;

    if (!c)
        return -ENOMEM;
    /* The default IV length of AES-GCM is 12 bytes, our nonce's. */
    if (EVP_EncryptInit_ex(c, gcm_cipher, NULL, key, nonce) != 1 ||
        evp_update(c, true, p, n) != 0 || EVP_EncryptFinal_ex(c, p + n, &out) != 1 ||
        out != 0 || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SHOAL_GCM_TAG_LEN, tag) != 1)
        goto out;
    rv = 0;
out:
    EVP_CIPHER_CTX_free(c);
    return rv;
}

static int evp_open(const uint8_t *key, const uint8_t *nonce, uint8_t *p, size_t n,
                    const uint8_t *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    uint8_t t[SHOAL_GCM_TAG_LEN];
    int rv = -EIO, out = 0;

    if (!c)
        return -ENOMEM;
    memcpy(t, tag, sizeof t); /* the ctrl takes a non-const pointer */
    if (EVP_DecryptInit_ex(c, gcm_cipher, NULL, key, nonce) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SHOAL_GCM_TAG_LEN, t) != 1 ||
        evp_update(c, false, p, n) != 0)
        goto out;
    /* The tag is compared (in constant time) here, after decrypting. */
    if (EVP_DecryptFinal_ex(c, p + n, &out) != 1 || out != 0) {
        rv = SHOAL_EBADMSG;
        goto out;
    }
    rv = 0;
out:
    if (rv != 0)
        sodium_memzero(p, n);
    EVP_CIPHER_CTX_free(c);
    return rv;
}

#else /* !SHOAL_HAVE_LIBCRYPTO */

bool shoal_gcm_libcrypto(void)
{
    return false;
}

#endif

int shoal_gcm_seal(const uint8_t key[SHOAL_GCM_KEY_LEN], const uint8_t nonce[SHOAL_GCM_NONCE_LEN],
                   uint8_t *p, size_t n, uint8_t tag[SHOAL_GCM_TAG_LEN])
{
#ifdef SHOAL_HAVE_LIBCRYPTO
    if (shoal_gcm_libcrypto())
        return evp_seal(key, nonce, p, n, tag);
#endif
    return crypto_aead_aes256gcm_encrypt_detached(p, tag, NULL, p, n, NULL, 0, NULL, nonce,
                                                  key) == 0
               ? 0
               : -EIO;
}

int shoal_gcm_open(const uint8_t key[SHOAL_GCM_KEY_LEN], const uint8_t nonce[SHOAL_GCM_NONCE_LEN],
                   uint8_t *p, size_t n, const uint8_t tag[SHOAL_GCM_TAG_LEN])
{
#ifdef SHOAL_HAVE_LIBCRYPTO
    if (shoal_gcm_libcrypto())
        return evp_open(key, nonce, p, n, tag);
#endif
    return crypto_aead_aes256gcm_decrypt_detached(p, NULL, p, n, tag, NULL, 0, nonce, key) == 0
               ? 0
               : SHOAL_EBADMSG;
}
