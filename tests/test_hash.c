/* SPDX-License-Identifier: MIT */
/* Hashing and hex: chunk ids and file digests match the published BLAKE2b
 * and SHA-256 test values, streaming equals one-shot however the input is
 * split, and hex parsing refuses anything but exactly 2n hex digits. The
 * SHA-256 tests run once per implementation this machine has (our SHA-NI
 * code and libsodium's), and the SHA-NI one is also cross-checked against
 * libsodium on random input of every length class, and on input that ends
 * where readable memory ends (its block loop prefetches ahead). */
#include "t.h"

#include "error.h"
#include "hash.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char fox[] = "The quick brown fox jumps over the lazy dog";

/* Hex of a digest, for comparing against the published values. */
static void hexof(char out[2 * SHOAL_HASH_LEN + 1], const uint8_t d[SHOAL_HASH_LEN])
{
    shoal_hex(out, d, SHOAL_HASH_LEN);
}

static void test_known_digests(void)
{
    uint8_t d[SHOAL_HASH_LEN];
    char h[2 * SHOAL_HASH_LEN + 1];
    struct shoal_sha256 s;

    shoal_chunk_id(d, "abc", 3);
    hexof(h, d);
    CHECK(strcmp(h, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319") == 0);
    shoal_chunk_id(d, NULL, 0);
    hexof(h, d);
    CHECK(strcmp(h, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8") == 0);

    shoal_sha256_init(&s);
    shoal_sha256_update(&s, "abc", 3);
    shoal_sha256_final(&s, d);
    hexof(h, d);
    CHECK(strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    shoal_sha256_init(&s);
    shoal_sha256_final(&s, d);
    hexof(h, d);
    CHECK(strcmp(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
}

/* Every split of the input into two updates gives the one-shot digest. */
static void test_streaming_splits(void)
{
    size_t n = strlen(fox);
    uint8_t one[SHOAL_HASH_LEN], d[SHOAL_HASH_LEN];
    char h[2 * SHOAL_HASH_LEN + 1];

    shoal_chunk_id(one, fox, n);
    hexof(h, one);
    CHECK(strcmp(h, "01718cec35cd3d796dd00020e0bfecb473ad23457d063b75eff29c0ffa2e58a9") == 0);
    for (size_t cut = 0; cut <= n; cut++) {
        struct shoal_blake2b b;
        struct shoal_sha256 s;

        shoal_blake2b_init(&b);
        shoal_blake2b_update(&b, fox, cut);
        shoal_blake2b_update(&b, fox + cut, n - cut);
        shoal_blake2b_final(&b, d);
        CHECK(memcmp(d, one, sizeof(d)) == 0);

        shoal_sha256_init(&s);
        shoal_sha256_update(&s, fox, cut);
        shoal_sha256_update(&s, fox + cut, n - cut);
        shoal_sha256_final(&s, d);
        hexof(h, d);
        CHECK(strcmp(h, "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592") == 0);
    }
}

/* SHA-256 of |len| bytes through shoal_sha256 in one update, as hex. */
static void sha_hex(char out[2 * SHOAL_HASH_LEN + 1], const void *data, size_t len)
{
    uint8_t d[SHOAL_HASH_LEN];
    struct shoal_sha256 s;

    shoal_sha256_init(&s);
    shoal_sha256_update(&s, data, len);
    shoal_sha256_final(&s, d);
    hexof(out, d);
}

/* FIPS 180-4 / NIST CAVP example messages, including the two-block
 * 448-bit message (its padding spills into a second block) and the 896-bit
 * one, and a million 'a' fed in uneven pieces. */
static void sha256_vectors(void)
{
    static const char m448[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    static const char m896[] = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                               "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    char h[2 * SHOAL_HASH_LEN + 1];
    uint8_t d[SHOAL_HASH_LEN];
    static uint8_t a[1000000];
    struct shoal_sha256 s;

    sha_hex(h, NULL, 0);
    CHECK(strcmp(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    sha_hex(h, "abc", 3);
    CHECK(strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    CHECK_EQ(strlen(m448), 56);
    sha_hex(h, m448, strlen(m448));
    CHECK(strcmp(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);
    CHECK_EQ(strlen(m896), 112);
    sha_hex(h, m896, strlen(m896));
    CHECK(strcmp(h, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1") == 0);

    memset(a, 'a', sizeof(a));
    sha_hex(h, a, sizeof(a));
    CHECK(strcmp(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
    shoal_sha256_init(&s);
    for (size_t off = 0, step = 1; off < sizeof(a); step = step * 3 % 1000 + 1) {
        size_t k = sizeof(a) - off < step ? sizeof(a) - off : step;

        shoal_sha256_update(&s, a + off, k);
        off += k;
    }
    shoal_sha256_final(&s, d);
    hexof(h, d);
    CHECK(strcmp(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
}

/* A deterministic pseudo-random byte stream for the cross-checks. */
static void fill_random(uint8_t *b, size_t n, uint64_t seed)
{
    uint64_t x = seed | 1;

    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (uint8_t)(x >> 32);
    }
}

/* Every way of splitting a 200-byte message (over three blocks) into two
 * updates, and every split into three around the first block boundary,
 * gives the one-shot digest; so do updates of 0 bytes. */
static void sha256_splits(void)
{
    uint8_t msg[200], one[SHOAL_HASH_LEN], d[SHOAL_HASH_LEN];
    struct shoal_sha256 s;

    fill_random(msg, sizeof(msg), 7);
    crypto_hash_sha256(one, msg, sizeof(msg));
    for (size_t cut = 0; cut <= sizeof(msg); cut++) {
        shoal_sha256_init(&s);
        shoal_sha256_update(&s, msg, cut);
        shoal_sha256_update(&s, NULL, 0);
        shoal_sha256_update(&s, msg + cut, sizeof(msg) - cut);
        shoal_sha256_final(&s, d);
        CHECK(memcmp(d, one, sizeof(d)) == 0);
    }
    for (size_t c1 = 50; c1 <= 70; c1++) {
        for (size_t c2 = c1; c2 <= 140; c2++) {
            shoal_sha256_init(&s);
            shoal_sha256_update(&s, msg, c1);
            shoal_sha256_update(&s, msg + c1, c2 - c1);
            shoal_sha256_update(&s, msg + c2, sizeof(msg) - c2);
            shoal_sha256_final(&s, d);
            CHECK(memcmp(d, one, sizeof(d)) == 0);
        }
    }
}

/* Against libsodium's one-shot SHA-256 (its own code, whatever we select)
 * on random bytes of every length 0..10,000, each hashed in one update and
 * in random-sized pieces. */
static void sha256_cross_check(void)
{
    enum { MAXLEN = 10000 };
    static uint8_t buf[MAXLEN];
    uint8_t ref[SHOAL_HASH_LEN], d[SHOAL_HASH_LEN];
    uint64_t r = 99;
    int bad = 0;

    for (size_t len = 0; len <= MAXLEN; len++) {
        struct shoal_sha256 s;

        fill_random(buf, len, len + 1);
        crypto_hash_sha256(ref, buf, len);

        shoal_sha256_init(&s);
        shoal_sha256_update(&s, buf, len);
        shoal_sha256_final(&s, d);
        bad += memcmp(d, ref, sizeof(d)) != 0;

        shoal_sha256_init(&s);
        for (size_t off = 0; off < len;) {
            size_t k;

            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            k = 1 + (size_t)(r % 300);
            if (k > len - off)
                k = len - off;
            shoal_sha256_update(&s, buf + off, k);
            off += k;
        }
        shoal_sha256_final(&s, d);
        bad += memcmp(d, ref, sizeof(d)) != 0;
    }
    CHECK_EQ(bad, 0);
}

/* Input that ends at the last byte before an inaccessible page: the digest
 * is right and nothing reads past the end (a load there would fault; the
 * SHA-NI loop prefetches up to 1 KiB beyond its input, which must stay a
 * prefetch: replaced by a load, this test crashes).
 * Lengths from one byte to two whole pages, fed in one update and in two,
 * so the tail goes through both the block loop and the partial block. */
static void sha256_guard_page(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t page = pg > 0 ? (size_t)pg : 4096;
    static const size_t lens[] = {1, 63, 64, 65, 1000, 1024, 4095, 4096, 8192};
    uint8_t ref[SHOAL_HASH_LEN], d[SHOAL_HASH_LEN];
    uint8_t *map;

    /* Two readable pages, then a PROT_NONE guard. */
    map = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(map != MAP_FAILED);
    REQUIRE(mprotect(map + 2 * page, page, PROT_NONE) == 0);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t len = lens[i] < 2 * page ? lens[i] : 2 * page;
        uint8_t *msg = map + 2 * page - len;
        struct shoal_sha256 s;

        fill_random(msg, len, len);
        crypto_hash_sha256(ref, msg, len);
        shoal_sha256_init(&s);
        shoal_sha256_update(&s, msg, len);
        shoal_sha256_final(&s, d);
        CHECK(memcmp(d, ref, sizeof(d)) == 0);

        shoal_sha256_init(&s);
        shoal_sha256_update(&s, msg, len / 3);
        shoal_sha256_update(&s, msg + len / 3, len - len / 3);
        shoal_sha256_final(&s, d);
        CHECK(memcmp(d, ref, sizeof(d)) == 0);
    }
    munmap(map, 3 * page);
}

/* The SHA-256 tests above under each implementation. SHA-NI is expected on
 * the machines we build for; where the CPU lacks it, selecting it must say
 * so rather than silently run something else. */
static void test_sha256_impls(void)
{
    static const enum shoal_sha256_impl impls[] = {SHOAL_SHA256_SODIUM, SHOAL_SHA256_SHANI};
    int ran = 0;

    for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
        int rv = shoal_sha256_select(impls[i]);

        if (rv == -ENOTSUP && impls[i] == SHOAL_SHA256_SHANI) {
            fprintf(stderr, "note: this CPU has no SHA extensions; SHA-NI not tested\n");
            continue;
        }
        CHECK_EQ(rv, 0);
        CHECK_EQ(shoal_sha256_impl(), impls[i]);
        sha256_vectors();
        sha256_splits();
        sha256_cross_check();
        sha256_guard_page();
        test_known_digests();
        test_streaming_splits();
        ran++;
    }
    CHECK(ran >= 1);
    CHECK_EQ(shoal_sha256_select(SHOAL_SHA256_AUTO), 0);
}

/* A state keeps the implementation it started with when the choice
 * changes midway, and the environment can force libsodium. */
static void test_sha256_select(void)
{
    uint8_t msg[300], ref[SHOAL_HASH_LEN], d[SHOAL_HASH_LEN];
    struct shoal_sha256 s;
    bool has_ni = shoal_sha256_select(SHOAL_SHA256_SHANI) == 0;

    CHECK_EQ(shoal_sha256_select((enum shoal_sha256_impl)7), -EINVAL);
    fill_random(msg, sizeof(msg), 3);
    crypto_hash_sha256(ref, msg, sizeof(msg));
    shoal_sha256_init(&s);
    shoal_sha256_update(&s, msg, 100);
    CHECK_EQ(shoal_sha256_select(has_ni ? SHOAL_SHA256_SODIUM : SHOAL_SHA256_AUTO), 0);
    shoal_sha256_update(&s, msg + 100, sizeof(msg) - 100);
    shoal_sha256_final(&s, d);
    CHECK(memcmp(d, ref, sizeof(d)) == 0);

    REQUIRE(setenv("SHOAL_SHA256", "sodium", 1) == 0);
    CHECK_EQ(shoal_sha256_select(SHOAL_SHA256_AUTO), 0);
    CHECK_EQ(shoal_sha256_impl(), SHOAL_SHA256_SODIUM);
    REQUIRE(unsetenv("SHOAL_SHA256") == 0);
    CHECK_EQ(shoal_sha256_select(SHOAL_SHA256_AUTO), 0);
    CHECK_EQ(shoal_sha256_impl(), has_ni ? SHOAL_SHA256_SHANI : SHOAL_SHA256_SODIUM);
}

static void test_hex_roundtrip(void)
{
    uint8_t in[256], back[256];
    char h[513];

    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)i;
    shoal_hex(h, in, sizeof(in));
    CHECK_EQ(strlen(h), 512);
    CHECK(memcmp(h, "000102", 6) == 0);
    CHECK(memcmp(h + 506, "fdfeff", 6) == 0);
    CHECK_EQ(shoal_unhex(back, sizeof(back), h, 512), 0);
    CHECK(memcmp(in, back, sizeof(in)) == 0);

    /* Upper case is accepted: some tools print digests that way. */
    uint8_t two[2];
    CHECK_EQ(shoal_unhex(two, 2, "aBCd", 4), 0);
    CHECK(two[0] == 0xab && two[1] == 0xcd);

    shoal_hex(h, in, 0);
    CHECK_EQ(h[0], '\0');
    CHECK_EQ(shoal_unhex(back, 0, "", 0), 0);
}

static void test_unhex_rejects(void)
{
    uint8_t out[4] = {0x11, 0x22, 0x33, 0x44};

    CHECK_EQ(shoal_unhex(out, 4, "0011223", 7), SHOAL_EPROTO);    /* short */
    CHECK_EQ(shoal_unhex(out, 4, "001122334", 9), SHOAL_EPROTO);  /* long */
    CHECK_EQ(shoal_unhex(out, 4, "0011223g", 8), SHOAL_EPROTO);   /* bad digit last */
    CHECK_EQ(shoal_unhex(out, 4, " 0112233", 8), SHOAL_EPROTO);   /* space */
    CHECK_EQ(shoal_unhex(out, 4, "0x112233", 8), SHOAL_EPROTO);   /* prefix */
    CHECK_EQ(shoal_unhex(out, 4, "00\0" "11223", 8), SHOAL_EPROTO); /* NUL inside */
    /* A bad digit late in the string leaves |out| untouched. */
    CHECK(out[0] == 0x11 && out[3] == 0x44);
    /* hexlen is honoured: a longer string is fine if hexlen says 2n. */
    CHECK_EQ(shoal_unhex(out, 2, "abcdZZZZ", 4), 0);
    CHECK(out[0] == 0xab && out[1] == 0xcd && out[2] == 0x33);
    /* 2n overflowing size_t must not wrap to a matching hexlen. */
    CHECK_EQ(shoal_unhex(out, SIZE_MAX / 2 + 1, "", 0), SHOAL_EPROTO);
}

int main(void)
{
    REQUIRE(shoal_hash_init() == 0);
    REQUIRE(shoal_hash_init() == 0); /* idempotent */
    fprintf(stderr, "sha256 implementation at start: %s\n",
            shoal_sha256_impl() == SHOAL_SHA256_SHANI ? "SHA-NI" : "libsodium");
    RUN(test_known_digests);
    RUN(test_streaming_splits);
    RUN(test_sha256_impls);
    RUN(test_sha256_select);
    RUN(test_hex_roundtrip);
    RUN(test_unhex_rejects);
    return t_done();
}
