/* SPDX-License-Identifier: MIT */
/* AES-256-GCM of sealed sessions (protocol/gcm.h): a published test vector
 * (Test Case 15 of the GCM specification: 256-bit key, 96-bit IV, no
 * associated data), and, on every length class from empty to several
 * MiB, what shoal_gcm_seal writes libsodium opens and what libsodium seals
 * shoal_gcm_open opens, so a node on either implementation talks to a node
 * on the other; a changed byte of ciphertext or tag is refused and leaves
 * no plaintext behind. Runs on whatever the build chose (libcrypto when it
 * has it) and again with SHOAL_GCM=sodium through a second process. Skips
 * (77) without AES-NI, where sessions use XChaCha20-Poly1305. */
#include "t.h"

#include "error.h"
#include "gcm.h"
#include "hash.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t seed = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
}

static void fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(rnd() >> 24);
}

static void unhex(uint8_t *out, const char *hex)
{
    size_t n = strlen(hex) / 2;

    REQUIRE(shoal_unhex(out, n, hex, 2 * n) == 0);
}

static void test_vector(void)
{
    uint8_t key[32], iv[12], pt[64], ct[64], tag[16], p[64], t[16];

    unhex(key, "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
    unhex(iv, "cafebabefacedbaddecaf888");
    unhex(pt, "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
              "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255");
    unhex(ct, "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
              "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad");
    unhex(tag, "b094dac5d93471bdec1a502270e3cc6c");
    memcpy(p, pt, sizeof p);
    CHECK_EQ(shoal_gcm_seal(key, iv, p, sizeof p, t), 0);
    CHECK(memcmp(p, ct, sizeof ct) == 0);
    CHECK(memcmp(t, tag, sizeof tag) == 0);
    CHECK_EQ(shoal_gcm_open(key, iv, p, sizeof p, t), 0);
    CHECK(memcmp(p, pt, sizeof pt) == 0);
}

static void test_interop(void)
{
    static const size_t lens[] = {0, 1, 15, 16, 17, 63, 64, 255, 4096 + 3, 65536,
                                  (1u << 20) + 77, 4u << 20};
    size_t maxn = 4u << 20;
    uint8_t *msg = malloc(maxn), *buf = malloc(maxn), key[32], nonce[12], tag[16];

    REQUIRE(msg && buf);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        size_t n = lens[i];

        fill(msg, n);
        fill(key, sizeof key);
        fill(nonce, sizeof nonce);
        /* Ours seals, libsodium opens. */
        memcpy(buf, msg, n);
        CHECK_EQ(shoal_gcm_seal(key, nonce, buf, n, tag), 0);
        CHECK(n == 0 || memcmp(buf, msg, n) != 0);
        CHECK_EQ(crypto_aead_aes256gcm_decrypt_detached(buf, NULL, buf, n, tag, NULL, 0, nonce,
                                                        key),
                 0);
        CHECK(memcmp(buf, msg, n) == 0);
        /* libsodium seals, ours opens. */
        CHECK_EQ(crypto_aead_aes256gcm_encrypt_detached(buf, tag, NULL, buf, n, NULL, 0, NULL,
                                                        nonce, key),
                 0);
        CHECK_EQ(shoal_gcm_open(key, nonce, buf, n, tag), 0);
        CHECK(memcmp(buf, msg, n) == 0);
        /* A changed tag byte, then a changed ciphertext byte: refused, and
         * nothing of the plaintext is left in the buffer. */
        CHECK_EQ(shoal_gcm_seal(key, nonce, buf, n, tag), 0);
        tag[rnd() % sizeof tag] ^= 0x20;
        CHECK_EQ(shoal_gcm_open(key, nonce, buf, n, tag), SHOAL_EBADMSG);
        if (n > 0) {
            bool leaked = memcmp(buf, msg, n) == 0;
            CHECK(!leaked);
            memcpy(buf, msg, n);
            CHECK_EQ(shoal_gcm_seal(key, nonce, buf, n, tag), 0);
            buf[rnd() % n] ^= 0x01;
            CHECK_EQ(shoal_gcm_open(key, nonce, buf, n, tag), SHOAL_EBADMSG);
            CHECK(memcmp(buf, msg, n) != 0);
        }
        /* Another nonce does not open it either. */
        memcpy(buf, msg, n);
        CHECK_EQ(shoal_gcm_seal(key, nonce, buf, n, tag), 0);
        nonce[0] ^= 1;
        CHECK_EQ(shoal_gcm_open(key, nonce, buf, n, tag), SHOAL_EBADMSG);
    }
    free(msg);
    free(buf);
}

int main(void)
{
    REQUIRE(shoal_hash_init() == 0);
    if (!crypto_aead_aes256gcm_is_available()) {
        printf("no AES-NI: sessions use XChaCha20-Poly1305; skipped\n");
        return 77;
    }
    printf("implementation: %s\n", shoal_gcm_libcrypto() ? "libcrypto" : "libsodium");
    RUN(test_vector);
    RUN(test_interop);
    return t_done();
}
