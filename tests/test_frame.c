/* SPDX-License-Identifier: MIT */
/* The frame decoder: identical output however the stream is split, refusal
 * of oversized and empty frames at header time, memory that follows the
 * bytes received, early stop from the callback, and the zero-copy paths. */
#include "t.h"

#include "buf.h"
#include "error.h"
#include "frame.h"

#include <stdbool.h>
#include <string.h>

/* Records every delivered frame as [8-byte length][body] so two runs can be
 * compared byte for byte. */
struct rec {
    struct shoal_buf out;
    int frames;
    int stop_at;   /* return 7 from the callback for this frame (1-based) */
    const uint8_t *last_body;
    size_t last_len;
    struct shoal_frame_dec *dec;
    size_t raise_max_to; /* if nonzero, set_max from inside the callback */
};

static int on_frame(void *user, const uint8_t *body, size_t len)
{
    struct rec *r = user;
    uint64_t l = len;
    REQUIRE(shoal_buf_append(&r->out, &l, sizeof l) == 0);
    REQUIRE(shoal_buf_append(&r->out, body, len) == 0);
    r->frames++;
    r->last_body = body;
    r->last_len = len;
    if (r->raise_max_to && r->dec)
        shoal_frame_dec_set_max(r->dec, r->raise_max_to);
    return r->frames == r->stop_at ? 7 : 0;
}

static const struct shoal_frame_cb cb = { on_frame };

static void rec_init(struct rec *r)
{
    memset(r, 0, sizeof *r);
    shoal_buf_init(&r->out, 64u << 20);
}

/* Appends a frame whose body is |n| bytes derived from |seed|. */
static void add_frame(struct shoal_buf *s, size_t n, unsigned seed)
{
    uint8_t hdr[4];
    REQUIRE(shoal_frame_header(hdr, n) == 0);
    REQUIRE(shoal_buf_append(s, hdr, 4) == 0);
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)(seed * 31u + i * 7u);
        REQUIRE(shoal_buf_append(s, &b, 1) == 0);
    }
}

static void test_header(void)
{
    uint8_t h[4] = {9, 9, 9, 9};
    CHECK_EQ(shoal_frame_header(h, 0x01020304), 0);
    CHECK(h[0] == 1 && h[1] == 2 && h[2] == 3 && h[3] == 4);
    CHECK_EQ(shoal_frame_header(h, 0), SHOAL_EPROTO);
    CHECK_EQ(shoal_frame_header(h, (size_t)SHOAL_FRAME_MAX_ABS + 1), SHOAL_ETOOBIG);
    CHECK(h[3] == 4); /* untouched on error */
    CHECK_EQ(shoal_frame_header(h, SHOAL_FRAME_MAX_ABS), 0);
}

/* Feeds |s| in the pieces delimited by |cuts| (sorted offsets) and returns
 * the record; every call must consume its whole piece. */
static void feed_pieces(const struct shoal_buf *s, const size_t *cuts, size_t ncuts, struct rec *r)
{
    struct shoal_frame_dec d;
    shoal_frame_dec_init(&d, SHOAL_FRAME_MAX_AUTH);
    size_t prev = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : s->len;
        size_t used = 12345;
        CHECK_EQ(shoal_frame_dec_feed(&d, s->data + prev, end - prev, &used, &cb, r), 0);
        CHECK_EQ(used, end - prev);
        prev = end;
    }
    CHECK_EQ(shoal_frame_dec_body_left(&d), 0);
    shoal_frame_dec_free(&d);
}

static bool same(const struct rec *a, const struct rec *b)
{
    return a->frames == b->frames && a->out.len == b->out.len &&
           memcmp(a->out.data, b->out.data, a->out.len) == 0;
}

static void test_split_anywhere(void)
{
    struct shoal_buf s;
    shoal_buf_init(&s, 1 << 20);
    add_frame(&s, 1, 1);
    add_frame(&s, 37, 2);
    add_frame(&s, 3, 3);
    add_frame(&s, 300, 4);
    add_frame(&s, 2, 5);

    struct rec ref;
    rec_init(&ref);
    feed_pieces(&s, NULL, 0, &ref);
    CHECK_EQ(ref.frames, 5);
    CHECK_EQ(ref.out.len, 5 * 8 + 1 + 37 + 3 + 300 + 2);

    /* One cut at every offset, then two cuts at every pair of offsets. */
    int bad = 0;
    for (size_t i = 0; i <= s.len; i++) {
        struct rec r;
        rec_init(&r);
        feed_pieces(&s, &i, 1, &r);
        bad += !same(&r, &ref);
        shoal_buf_free(&r.out);
    }
    for (size_t i = 0; i <= s.len; i += 1) {
        for (size_t j = i; j <= s.len; j += 3) {
            size_t cuts[2] = {i, j};
            struct rec r;
            rec_init(&r);
            feed_pieces(&s, cuts, 2, &r);
            bad += !same(&r, &ref);
            shoal_buf_free(&r.out);
        }
    }
    /* And one byte at a time. */
    struct shoal_frame_dec d;
    shoal_frame_dec_init(&d, SHOAL_FRAME_MAX_AUTH);
    struct rec r;
    rec_init(&r);
    for (size_t i = 0; i < s.len; i++) {
        size_t used = 0;
        CHECK_EQ(shoal_frame_dec_feed(&d, s.data + i, 1, &used, &cb, &r), 0);
        CHECK_EQ(used, 1);
    }
    bad += !same(&r, &ref);
    CHECK_EQ(bad, 0);
    shoal_buf_free(&r.out);
    shoal_frame_dec_free(&d);
    shoal_buf_free(&ref.out);
    shoal_buf_free(&s);
}

static void test_oversize_refused_at_header(void)
{
    struct shoal_frame_dec d;
    struct rec r;
    rec_init(&r);
    shoal_frame_dec_init(&d, SHOAL_FRAME_MAX_PREAUTH);
    /* 16 MiB declared, header split in two reads, body bytes following. */
    const uint8_t in[] = {0x01, 0x00, 0x00, 0x00, 0x93, 0x01, 0x02};
    size_t used = 99;
    CHECK_EQ(shoal_frame_dec_feed(&d, in, 2, &used, &cb, &r), 0);
    CHECK_EQ(used, 2);
    CHECK_EQ(shoal_frame_dec_feed(&d, in + 2, sizeof in - 2, &used, &cb, &r), SHOAL_ETOOBIG);
    CHECK_EQ(used, 2); /* exactly the rest of the header */
    CHECK(d.buf == NULL);
    CHECK_EQ(d.cap, 0);
    CHECK_EQ(r.frames, 0);
    /* Sticky: the connection is dead. */
    CHECK_EQ(shoal_frame_dec_feed(&d, in + 4, 3, &used, &cb, &r), SHOAL_ETOOBIG);
    CHECK_EQ(used, 0);
    shoal_frame_dec_free(&d);

    /* One over the limit is refused, the limit itself is accepted. */
    uint8_t h[4];
    shoal_frame_dec_init(&d, 1000);
    REQUIRE(shoal_frame_header(h, 1001) == 0);
    CHECK_EQ(shoal_frame_dec_feed(&d, h, 4, &used, &cb, &r), SHOAL_ETOOBIG);
    shoal_frame_dec_free(&d);
    shoal_frame_dec_init(&d, 1000);
    REQUIRE(shoal_frame_header(h, 1000) == 0);
    CHECK_EQ(shoal_frame_dec_feed(&d, h, 4, &used, &cb, &r), 0);
    CHECK_EQ(shoal_frame_dec_body_left(&d), 1000);
    shoal_frame_dec_free(&d);

    /* A limit above the absolute cap is clamped to it. */
    shoal_frame_dec_init(&d, SIZE_MAX);
    CHECK_EQ(d.max, SHOAL_FRAME_MAX_ABS);
    const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    CHECK_EQ(shoal_frame_dec_feed(&d, huge, 4, &used, &cb, &r), SHOAL_ETOOBIG);
    CHECK(d.buf == NULL);
    shoal_frame_dec_free(&d);
    shoal_buf_free(&r.out);
}

static void test_zero_length_refused(void)
{
    struct shoal_frame_dec d;
    struct rec r;
    rec_init(&r);
    shoal_frame_dec_init(&d, SHOAL_FRAME_MAX_AUTH);
    /* A valid frame, then an empty one, then another valid one. */
    const uint8_t in[] = {0, 0, 0, 1, 0xc0, 0, 0, 0, 0, 0, 0, 0, 1, 0xc0};
    size_t used = 0;
    CHECK_EQ(shoal_frame_dec_feed(&d, in, sizeof in, &used, &cb, &r), SHOAL_EPROTO);
    CHECK_EQ(used, 9);
    CHECK_EQ(r.frames, 1);
    CHECK_EQ(shoal_frame_dec_feed(&d, in + 9, 5, &used, &cb, &r), SHOAL_EPROTO);
    CHECK_EQ(r.frames, 1);
    shoal_frame_dec_free(&d);
    shoal_buf_free(&r.out);
}

static void test_memory_follows_bytes(void)
{
    struct shoal_frame_dec d;
    struct rec r;
    rec_init(&r);
    shoal_frame_dec_init(&d, SHOAL_FRAME_MAX_AUTH);
    uint8_t h[4];
    REQUIRE(shoal_frame_header(h, 16u << 20) == 0);
    size_t used;
    CHECK_EQ(shoal_frame_dec_feed(&d, h, 4, &used, &cb, &r), 0);
    CHECK(d.buf == NULL); /* nothing allocated for a bare header */
    const uint8_t five[5] = {1, 2, 3, 4, 5};
    CHECK_EQ(shoal_frame_dec_feed(&d, five, 5, &used, &cb, &r), 0);
    CHECK(d.cap >= 5 && d.cap <= 32 * 1024);
    CHECK_EQ(shoal_frame_dec_body_left(&d), (16u << 20) - 5);

    /* 1 MiB more: the buffer stays within twice what arrived plus a step. */
    static uint8_t mib[1 << 20];
    CHECK_EQ(shoal_frame_dec_feed(&d, mib, sizeof mib, &used, &cb, &r), 0);
    CHECK(d.cap <= 2 * (sizeof mib + 5) + 32 * 1024);
    CHECK_EQ(r.frames, 0);
    shoal_frame_dec_free(&d);
    shoal_buf_free(&r.out);
}

static void test_callback_stops_feed(void)
{
    struct shoal_buf s;
    shoal_buf_init(&s, 1 << 20);
    add_frame(&s, 10, 1);
    add_frame(&s, 20, 2);
    add_frame(&s, 30, 3);
    struct shoal_frame_dec d;
    struct rec r;
    rec_init(&r);
    r.stop_at = 2;
    shoal_frame_dec_init(&d, SHOAL_FRAME_MAX_AUTH);
    size_t used = 0;
    CHECK_EQ(shoal_frame_dec_feed(&d, s.data, s.len, &used, &cb, &r), 7);
    CHECK_EQ(used, 4 + 10 + 4 + 20);
    CHECK_EQ(r.frames, 2);
    CHECK_EQ(r.last_len, 20);
    /* The rest resumes cleanly. */
    CHECK_EQ(shoal_frame_dec_feed(&d, s.data + used, s.len - used, &used, &cb, &r), 0);
    CHECK_EQ(used, 4 + 30);
    CHECK_EQ(r.frames, 3);
    CHECK_EQ(r.last_len, 30);

    /* Stopping on a frame that was buffered across calls works the same. */
    struct rec r2;
    rec_init(&r2);
    r2.stop_at = 1;
    CHECK_EQ(shoal_frame_dec_feed(&d, s.data, 7, &used, &cb, &r2), 0);
    CHECK_EQ(shoal_frame_dec_feed(&d, s.data + 7, s.len - 7, &used, &cb, &r2), 7);
    CHECK_EQ(used, 4 + 10 - 7);
    CHECK_EQ(r2.frames, 1);
    shoal_frame_dec_free(&d);
    shoal_buf_free(&r.out);
    shoal_buf_free(&r2.out);
    shoal_buf_free(&s);
}

static void test_set_max_from_callback(void)
{
    /* Pre-auth limit 100: the first frame "authenticates" and raises it, so
     * a 5000-byte frame in the same read is accepted. */
    struct shoal_buf s;
    shoal_buf_init(&s, 1 << 20);
    add_frame(&s, 50, 1);
    add_frame(&s, 5000, 2);
    struct shoal_frame_dec d;
    shoal_frame_dec_init(&d, 100);
    struct rec r;
    rec_init(&r);
    r.dec = &d;
    r.raise_max_to = 10000;
    size_t used;
    CHECK_EQ(shoal_frame_dec_feed(&d, s.data, s.len, &used, &cb, &r), 0);
    CHECK_EQ(r.frames, 2);
    shoal_frame_dec_free(&d);

    /* Without the raise, the second header is refused. */
    shoal_frame_dec_init(&d, 100);
    struct rec r2;
    rec_init(&r2);
    CHECK_EQ(shoal_frame_dec_feed(&d, s.data, s.len, &used, &cb, &r2), SHOAL_ETOOBIG);
    CHECK_EQ(r2.frames, 1);
    CHECK_EQ(used, 4 + 50 + 4);
    shoal_frame_dec_free(&d);
    shoal_buf_free(&r.out);
    shoal_buf_free(&r2.out);
    shoal_buf_free(&s);
}

static void test_whole_frame_not_copied(void)
{
    struct shoal_buf s;
    shoal_buf_init(&s, 1 << 20);
    add_frame(&s, 1000, 1);
    struct shoal_frame_dec d;
    shoal_frame_dec_init(&d, SHOAL_FRAME_MAX_AUTH);
    struct rec r;
    rec_init(&r);
    size_t used;
    CHECK_EQ(shoal_frame_dec_feed(&d, s.data, s.len, &used, &cb, &r), 0);
    CHECK(r.last_body == s.data + 4);
    CHECK(d.buf == NULL);
    /* Split, it must be gathered in the decoder's own buffer. */
    CHECK_EQ(shoal_frame_dec_feed(&d, s.data, 100, &used, &cb, &r), 0);
    CHECK_EQ(shoal_frame_dec_feed(&d, s.data + 100, s.len - 100, &used, &cb, &r), 0);
    CHECK_EQ(r.frames, 2);
    CHECK(r.last_body == d.buf);
    CHECK_EQ(r.last_len, 1000);
    CHECK(memcmp(r.last_body, s.data + 4, 1000) == 0);
    shoal_frame_dec_free(&d);
    shoal_buf_free(&r.out);
    shoal_buf_free(&s);
}

static void test_direct_body_read(void)
{
    /* A 300 KB frame then a small one: the body is "read" straight into the
     * decoder in reads of at most 7000 bytes, never past the frame's end. */
    const size_t big = 300000;
    struct shoal_buf s;
    shoal_buf_init(&s, 1 << 20);
    add_frame(&s, big, 1);
    add_frame(&s, 5, 2);
    struct shoal_frame_dec d;
    shoal_frame_dec_init(&d, SHOAL_FRAME_MAX_AUTH);
    struct rec r;
    rec_init(&r);
    uint8_t *p;
    size_t n, used;
    CHECK_EQ(shoal_frame_dec_body_buf(&d, &p, &n), SHOAL_EAGAIN);
    CHECK_EQ(shoal_frame_dec_feed(&d, s.data, 10, &used, &cb, &r), 0);
    CHECK_EQ(shoal_frame_dec_body_left(&d), big - 6);
    size_t pos = 10;
    int reads = 0;
    while (shoal_frame_dec_body_left(&d) > 0 && reads < 10000) {
        REQUIRE(shoal_frame_dec_body_buf(&d, &p, &n) == 0);
        REQUIRE(n > 0);
        CHECK(n <= shoal_frame_dec_body_left(&d));
        if (n > 7000)
            n = 7000;
        memcpy(p, s.data + pos, n);
        pos += n;
        CHECK_EQ(shoal_frame_dec_body_commit(&d, n, &cb, &r), 0);
        reads++;
    }
    CHECK_EQ(pos, 4 + big);
    CHECK_EQ(r.frames, 1);
    CHECK_EQ(r.last_len, big);
    CHECK(memcmp(r.out.data + 8, s.data + 4, big) == 0);
    /* Between frames there is nothing to read into, and over-commit fails. */
    CHECK_EQ(shoal_frame_dec_body_commit(&d, 1, &cb, &r), SHOAL_ELIMIT);
    CHECK_EQ(shoal_frame_dec_feed(&d, s.data + pos, s.len - pos, &used, &cb, &r), 0);
    CHECK_EQ(r.frames, 2);
    CHECK_EQ(r.last_len, 5);
    shoal_frame_dec_free(&d);
    shoal_buf_free(&r.out);
    shoal_buf_free(&s);
}

static void test_big_buffer_released(void)
{
    /* After a 9 MiB frame (a large manifest) the connection does not keep
     * the 9 MiB; after a 1 MiB one (a chunk) it keeps it for the next. */
    const size_t big = 9u << 20;
    uint8_t *body = calloc(1, big + 4);
    REQUIRE(body);
    REQUIRE(shoal_frame_header(body, big) == 0);
    struct shoal_frame_dec d;
    shoal_frame_dec_init(&d, SHOAL_FRAME_MAX_AUTH);
    struct rec r;
    rec_init(&r);
    size_t used;
    CHECK_EQ(shoal_frame_dec_feed(&d, body, 100, &used, &cb, &r), 0);
    CHECK_EQ(shoal_frame_dec_feed(&d, body + 100, big + 4 - 100, &used, &cb, &r), 0);
    CHECK_EQ(r.frames, 1);
    CHECK_EQ(d.cap, 0);
    REQUIRE(shoal_frame_header(body, 1u << 20) == 0);
    CHECK_EQ(shoal_frame_dec_feed(&d, body, 100, &used, &cb, &r), 0);
    CHECK_EQ(shoal_frame_dec_feed(&d, body + 100, (1u << 20) + 4 - 100, &used, &cb, &r), 0);
    CHECK_EQ(r.frames, 2);
    CHECK(d.cap >= (1u << 20));
    free(body);
    shoal_frame_dec_free(&d);
    shoal_buf_free(&r.out);
}

/* body take and prealloc */
struct taker {
    struct shoal_frame_dec *dec;
    uint8_t *taken[4];
    size_t len[4];
    int frames;
};

static int take_frame(void *user, const uint8_t *body, size_t len)
{
    struct taker *t = user;
    if (t->frames < 4) {
        t->taken[t->frames] = shoal_frame_dec_body_take(t->dec, body);
        t->len[t->frames] = len;
        /* A second take of the same body finds nothing left to give. */
        CHECK(shoal_frame_dec_body_take(t->dec, body) == NULL);
    }
    t->frames++;
    return 0;
}

static void test_body_take(void)
{
    /* Two gathered frames, each taken by the callback: the caller owns
     * buffers holding the exact bodies, and the decoder goes on with a
     * fresh buffer; a frame handed straight from the input is not given. */
    static const struct shoal_frame_cb tcb = { take_frame };
    struct shoal_buf s;
    shoal_buf_init(&s, 1 << 20);
    add_frame(&s, 70000, 1);
    add_frame(&s, 3000, 2);
    size_t whole = s.len;
    add_frame(&s, 500, 3);
    struct shoal_frame_dec d;
    shoal_frame_dec_init(&d, SHOAL_FRAME_MAX_AUTH);
    struct taker t = { .dec = &d };
    size_t used, pos = 0;
    /* Byte-sized pieces up to the third frame force gathering. */
    while (pos < whole) {
        size_t n = whole - pos < 1000 ? whole - pos : 1000;
        REQUIRE(shoal_frame_dec_feed(&d, s.data + pos, n, &used, &tcb, &t) == 0);
        pos += n;
    }
    CHECK_EQ(t.frames, 2);
    REQUIRE(t.taken[0] && t.taken[1]);
    CHECK_EQ(t.len[0], 70000);
    CHECK_EQ(t.len[1], 3000);
    CHECK(memcmp(t.taken[0], s.data + 4, 70000) == 0);
    CHECK(memcmp(t.taken[1], s.data + 4 + 70000 + 4, 3000) == 0);
    CHECK(t.taken[0] != t.taken[1]);
    CHECK(d.buf == NULL);
    CHECK_EQ(shoal_frame_dec_feed(&d, s.data + pos, s.len - pos, &used, &tcb, &t), 0);
    CHECK_EQ(t.frames, 3);
    CHECK(t.taken[2] == NULL); /* in the caller's input */
    for (int i = 0; i < 3; i++)
        free(t.taken[i]);
    shoal_frame_dec_free(&d);
    shoal_buf_free(&s);
}

static void test_prealloc(void)
{
    /* With prealloc, a frame up to the bound gets its whole buffer at its
     * first body bytes (one allocation, no regrowth); a bigger one still
     * grows with what arrives. */
    struct shoal_frame_dec d;
    struct rec r;
    uint8_t h[4];
    size_t used;
    const uint8_t five[5] = {1, 2, 3, 4, 5};

    rec_init(&r);
    shoal_frame_dec_init(&d, SHOAL_FRAME_MAX_AUTH);
    shoal_frame_dec_set_prealloc(&d, 4u << 20);
    REQUIRE(shoal_frame_header(h, 1u << 20) == 0);
    CHECK_EQ(shoal_frame_dec_feed(&d, h, 4, &used, &cb, &r), 0);
    CHECK_EQ(shoal_frame_dec_feed(&d, five, 5, &used, &cb, &r), 0);
    CHECK_EQ(d.cap, 1u << 20);
    uint8_t *p;
    size_t n;
    CHECK_EQ(shoal_frame_dec_body_buf(&d, &p, &n), 0);
    CHECK_EQ(n, (1u << 20) - 5);
    shoal_frame_dec_free(&d);

    shoal_frame_dec_init(&d, SHOAL_FRAME_MAX_AUTH);
    shoal_frame_dec_set_prealloc(&d, 4u << 20);
    REQUIRE(shoal_frame_header(h, 8u << 20) == 0);
    CHECK_EQ(shoal_frame_dec_feed(&d, h, 4, &used, &cb, &r), 0);
    CHECK_EQ(shoal_frame_dec_feed(&d, five, 5, &used, &cb, &r), 0);
    CHECK(d.cap <= 32 * 1024);
    CHECK_EQ(r.frames, 0);
    shoal_frame_dec_free(&d);
    shoal_buf_free(&r.out);
}

int main(void)
{
    RUN(test_header);
    RUN(test_split_anywhere);
    RUN(test_oversize_refused_at_header);
    RUN(test_zero_length_refused);
    RUN(test_memory_follows_bytes);
    RUN(test_callback_stops_feed);
    RUN(test_set_max_from_callback);
    RUN(test_whole_frame_not_copied);
    RUN(test_direct_body_read);
    RUN(test_big_buffer_released);
    RUN(test_body_take);
    RUN(test_prealloc);
    return t_done();
}
