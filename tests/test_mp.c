/* SPDX-License-Identifier: MIT */
/* The strict MessagePack reader: round trips with the msgpack-c writer, and
 * refusal of truncated, oversized and wrongly typed input. */
#include "t.h"

#include "buf.h"
#include "error.h"
#include "mp.h"

#include <string.h>

static void test_roundtrip(void)
{
    struct shoal_buf b;
    shoal_buf_init(&b, 1 << 20);
    struct shoal_mpw w;
    shoal_mpw_init(&w, &b);
    shoal_mpw_array(&w, 7);
    shoal_mpw_uint(&w, 5);
    shoal_mpw_uint(&w, 1ULL << 40);
    shoal_mpw_int(&w, -70000);
    shoal_mpw_cstr(&w, "hello");
    shoal_mpw_bin(&w, "\x01\x02\x03", 3);
    shoal_mpw_bool(&w, true);
    shoal_mpw_nil(&w);
    REQUIRE(w.err == 0);

    struct shoal_mpr r;
    shoal_mpr_init(&r, b.data, b.len);
    uint32_t n;
    uint64_t u;
    int64_t i;
    const char *s;
    const uint8_t *p;
    bool bo;
    CHECK_EQ(shoal_mpr_array(&r, &n, 16), 0);
    CHECK_EQ(n, 7);
    CHECK_EQ(shoal_mpr_uint(&r, &u, 10), 0);
    CHECK_EQ(u, 5);
    CHECK_EQ(shoal_mpr_uint(&r, &u, 100), SHOAL_ETOOBIG);
    CHECK_EQ(shoal_mpr_uint(&r, &u, UINT64_MAX), 0);
    CHECK(u == 1ULL << 40);
    CHECK_EQ(shoal_mpr_uint(&r, &u, UINT64_MAX), SHOAL_ETYPE); /* negative */
    CHECK_EQ(shoal_mpr_int(&r, &i), 0);
    CHECK_EQ(i, -70000);
    CHECK_EQ(shoal_mpr_str(&r, &s, &n, 4), SHOAL_ETOOBIG);
    CHECK_EQ(shoal_mpr_str(&r, &s, &n, 100), 0);
    CHECK(n == 5 && memcmp(s, "hello", 5) == 0);
    CHECK_EQ(shoal_mpr_str(&r, &s, &n, 100), SHOAL_ETYPE); /* it is bin */
    uint8_t two[2];
    CHECK_EQ(shoal_mpr_bin_exact(&r, two, 2), SHOAL_EBADMSG);
    CHECK_EQ(shoal_mpr_bin(&r, &p, &n, 100), 0);
    CHECK(n == 3 && p[2] == 3);
    CHECK_EQ(shoal_mpr_bool(&r, &bo), 0);
    CHECK(bo);
    CHECK(shoal_mpr_peek_nil(&r));
    CHECK_EQ(shoal_mpr_nil(&r), 0);
    CHECK_EQ(shoal_mpr_left(&r), 0);
    CHECK_EQ(shoal_mpr_nil(&r), SHOAL_ETRUNC);

    /* Truncation at every length is refused without reading past the end. */
    for (size_t cut = 0; cut < b.len; cut++) {
        shoal_mpr_init(&r, b.data, cut);
        CHECK(shoal_mpr_skip(&r, 4) != 0);
    }
    shoal_mpr_init(&r, b.data, b.len);
    CHECK_EQ(shoal_mpr_skip(&r, 4), 0);
    CHECK_EQ(shoal_mpr_left(&r), 0);
    shoal_buf_free(&b);
}

static void test_hostile_counts(void)
{
    /* array32 claiming 4 billion elements in a 5-byte input */
    const uint8_t big[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    struct shoal_mpr r;
    uint32_t n;
    shoal_mpr_init(&r, big, sizeof big);
    CHECK_EQ(shoal_mpr_array(&r, &n, UINT32_MAX), SHOAL_ETRUNC);
    CHECK_EQ(shoal_mpr_array(&r, &n, 10), SHOAL_ETOOBIG);
    CHECK_EQ(shoal_mpr_left(&r), 5);
    /* bin32 claiming more than present */
    const uint8_t bin[] = {0xc6, 0x00, 0x10, 0x00, 0x00, 1, 2};
    const uint8_t *p;
    shoal_mpr_init(&r, bin, sizeof bin);
    CHECK_EQ(shoal_mpr_bin(&r, &p, &n, UINT32_MAX), SHOAL_ETRUNC);
    /* deep nesting is bounded */
    uint8_t deep[64];
    memset(deep, 0x91, sizeof deep);
    shoal_mpr_init(&r, deep, sizeof deep);
    CHECK_EQ(shoal_mpr_skip(&r, 8), SHOAL_ETOOBIG);
    /* reserved type byte */
    const uint8_t res[] = {0xc1};
    shoal_mpr_init(&r, res, 1);
    CHECK_EQ(shoal_mpr_skip(&r, 8), SHOAL_ETYPE);
}

static void test_buf_cap(void)
{
    struct shoal_buf b;
    shoal_buf_init(&b, 10);
    CHECK_EQ(shoal_buf_append(&b, "0123456789", 10), 0);
    CHECK_EQ(shoal_buf_append(&b, "x", 1), SHOAL_ELIMIT);
    CHECK_EQ(b.len, 10);
    struct shoal_mpw w;
    shoal_buf_reset(&b);
    shoal_mpw_init(&w, &b);
    shoal_mpw_cstr(&w, "a string longer than ten bytes");
    CHECK_EQ(w.err, SHOAL_ELIMIT);
    shoal_buf_free(&b);
}

int main(void)
{
    RUN(test_roundtrip);
    RUN(test_hostile_counts);
    RUN(test_buf_cap);
    return t_done();
}
