/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for the frame decoder. The first input byte seeds the read
 * sizes; the rest is the byte stream, with a small frame limit. The stream is
 * decoded three ways (in one read, in pseudo-random reads, and through the
 * direct body-read path) and all three must deliver the same frames, stop
 * with the same result and consume the same bytes. Each frame is decoded as
 * a message.
 */
#include "error.h"
#include "frame.h"
#include "msg.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_FRAME 4096u

struct run {
    uint64_t hash;   /* FNV-1a over every frame's length and bytes */
    unsigned frames;
    size_t used;
    int rv;
};

static struct shoal_msg msg;

static void mix(uint64_t *h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ p[i]) * 0x100000001b3ULL;
}

static int on_frame(void *user, const uint8_t *body, size_t len)
{
    struct run *r = user;
    uint64_t l = len;
    if (len == 0 || len > FUZZ_MAX_FRAME)
        abort();
    mix(&r->hash, (const uint8_t *)&l, sizeof l);
    mix(&r->hash, body, len);
    r->frames++;
    (void)shoal_msg_decode(&msg, body, len);
    return 0;
}

static const struct shoal_frame_cb cb = { on_frame };

static uint32_t next_rand(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

/* mode 0: one read; 1: random reads; 2: random reads, bodies read direct. */
static void run(const uint8_t *data, size_t size, uint32_t seed, int mode, struct run *r)
{
    struct shoal_frame_dec d;
    shoal_frame_dec_init(&d, FUZZ_MAX_FRAME);
    memset(r, 0, sizeof *r);
    r->hash = 0xcbf29ce484222325ULL;
    size_t pos = 0;
    int rv = 0;
    while (rv == 0 && pos < size) {
        size_t n = mode == 0 ? size - pos : 1 + next_rand(&seed) % 300;
        if (n > size - pos)
            n = size - pos;
        size_t used = 0;
        if (mode == 2 && shoal_frame_dec_body_left(&d) > 0) {
            uint8_t *p;
            size_t room;
            rv = shoal_frame_dec_body_buf(&d, &p, &room);
            if (rv == 0) {
                if (room == 0 || room > shoal_frame_dec_body_left(&d))
                    abort();
                used = n < room ? n : room;
                memcpy(p, data + pos, used);
                rv = shoal_frame_dec_body_commit(&d, used, &cb, r);
            }
        } else {
            rv = shoal_frame_dec_feed(&d, data + pos, n, &used, &cb, r);
            if (used > n || (rv == 0 && used != n))
                abort();
        }
        pos += used;
    }
    r->used = pos;
    r->rv = rv;
    shoal_frame_dec_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t seed = data[0];
    struct run a, b, c;
    run(data + 1, size - 1, seed, 0, &a);
    run(data + 1, size - 1, seed, 1, &b);
    run(data + 1, size - 1, seed, 2, &c);
    if (a.frames != b.frames || a.hash != b.hash || a.rv != b.rv || a.used != b.used)
        abort();
    if (a.frames != c.frames || a.hash != c.hash || a.rv != c.rv || a.used != c.used)
        abort();
    if (a.rv != 0 && a.rv != SHOAL_ETOOBIG && a.rv != SHOAL_EPROTO)
        abort();
    return 0;
}
