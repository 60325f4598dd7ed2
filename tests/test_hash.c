/* SPDX-License-Identifier: MIT */
/* Hashing and hex: chunk ids and file digests match the published BLAKE2b
 * and SHA-256 test values, streaming equals one-shot however the input is
 * split, and hex parsing refuses anything but exactly 2n hex digits. */
#include "t.h"

#include "error.h"
#include "hash.h"

#include <string.h>

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
    RUN(test_known_digests);
    RUN(test_streaming_splits);
    RUN(test_hex_roundtrip);
    RUN(test_unhex_rejects);
    return t_done();
}
