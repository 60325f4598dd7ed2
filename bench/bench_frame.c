/* SPDX-License-Identifier: MIT */
/*
 * Wire path throughput, as a node moves chunks: the sender encodes a CHUNK
 * header with the header-only encoder and sends [header][payload] as two
 * buffers; the receiver feeds what arrives to the frame decoder (which
 * gathers the body: one copy) and decodes the frame as a message (payload
 * left in place). Reported in Gbit/s of payload over ~2 GiB of 1 MiB chunks.
 * Also: the same with the body read straight into the decoder (the memcpy
 * here stands for the socket read itself, so the decoder adds no copy), and
 * small HAVE messages per second through encode + frame + decode.
 */
#include "buf.h"
#include "error.h"
#include "frame.h"
#include "msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK (1u << 20)
#define FRAMES 2048u /* 2 GiB of payload */
#define READ_SIZE (256u * 1024u) /* what one socket read might return */
/* Distinct payloads cycled through, so the source is not one L2-hot MiB
 * (on a node it comes from the page cache). */
#define POOL 64u

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct sink {
    struct shoal_msg m;
    uint64_t payload_bytes;
    uint64_t check;
    int bad;
};

static int on_frame(void *user, const uint8_t *body, size_t len)
{
    struct sink *s = user;
    if (shoal_msg_decode(&s->m, body, len) != 0) {
        s->bad++;
        return 0;
    }
    if (s->m.type == SHOAL_MSG_CHUNK) {
        s->payload_bytes += s->m.u.chunk.payload.len;
        s->check += s->m.u.chunk.payload.p[s->m.u.chunk.payload.len - 1];
    } else if (s->m.type == SHOAL_MSG_HAVE) {
        s->check += s->m.u.have.chunk_index;
    }
    return 0;
}

static const struct shoal_frame_cb cb = { on_frame };

/* Feeds [hdr][payload] in reads of at most READ_SIZE. */
static int feed_split(struct shoal_frame_dec *d, const uint8_t *p, size_t n, struct sink *s)
{
    int rv = 0;
    for (size_t off = 0; rv == 0 && off < n;) {
        size_t take = n - off < READ_SIZE ? n - off : READ_SIZE;
        size_t used;
        rv = shoal_frame_dec_feed(d, p + off, take, &used, &cb, s);
        off += used;
    }
    return rv;
}

int main(void)
{
    uint8_t *pool = malloc((size_t)POOL * CHUNK);
    static struct sink sink;
    struct shoal_buf hdr, out;
    struct shoal_frame_dec d;
    int rv = 1;
    shoal_buf_init(&hdr, 1024);
    shoal_buf_init(&out, 1 << 20);
    shoal_frame_dec_init(&d, SHOAL_FRAME_MAX_AUTH);
    if (!pool)
        goto out;
    for (size_t i = 0; i < (size_t)POOL * CHUNK; i++)
        pool[i] = (uint8_t)(i * 2654435761u >> 13);
    const uint8_t *payload = pool;
    struct shoal_msg_chunk c = {
        .req_id = 1, .codec = SHOAL_CODEC_RAW, .raw_len = CHUNK, .payload = { NULL, CHUNK },
    };
    memset(c.chunk_id, 0x5a, sizeof c.chunk_id);

    /* 1. feed path: the decoder gathers each body (one copy). */
    double t0 = now();
    for (unsigned f = 0; f < FRAMES; f++) {
        c.req_id = f;
        payload = pool + (size_t)(f % POOL) * CHUNK;
        shoal_buf_reset(&hdr);
        if (shoal_msg_encode_chunk_header(&c, &hdr) != 0 ||
            feed_split(&d, hdr.data, hdr.len, &sink) != 0 ||
            feed_split(&d, payload, CHUNK, &sink) != 0)
            goto out;
    }
    double t1 = now();
    if (sink.bad || sink.payload_bytes != (uint64_t)FRAMES * CHUNK)
        goto out;
    printf("BENCH frame_chunk_gbps %.2f Gbit/s\n", (double)sink.payload_bytes * 8 / (t1 - t0) / 1e9);
    shoal_frame_dec_free(&d);

    /* 2. direct path: bodies land in the decoder's buffer from the "read". */
    sink.payload_bytes = 0;
    shoal_frame_dec_init(&d, SHOAL_FRAME_MAX_AUTH);
    t0 = now();
    for (unsigned f = 0; f < FRAMES; f++) {
        c.req_id = f;
        payload = pool + (size_t)(f % POOL) * CHUNK;
        shoal_buf_reset(&hdr);
        size_t used;
        if (shoal_msg_encode_chunk_header(&c, &hdr) != 0 ||
            shoal_frame_dec_feed(&d, hdr.data, hdr.len, &used, &cb, &sink) != 0)
            goto out;
        size_t off = 0;
        while (shoal_frame_dec_body_left(&d) > 0) {
            uint8_t *p;
            size_t room;
            if (shoal_frame_dec_body_buf(&d, &p, &room) != 0)
                goto out;
            if (room > READ_SIZE)
                room = READ_SIZE;
            memcpy(p, payload + off, room); /* the socket read */
            off += room;
            if (shoal_frame_dec_body_commit(&d, room, &cb, &sink) != 0)
                goto out;
        }
    }
    t1 = now();
    if (sink.bad || sink.payload_bytes != (uint64_t)FRAMES * CHUNK)
        goto out;
    printf("BENCH frame_chunk_direct_gbps %.2f Gbit/s\n",
           (double)sink.payload_bytes * 8 / (t1 - t0) / 1e9);
    shoal_frame_dec_free(&d);

    /* 3. small messages: HAVE encode + frame decode + msg decode. */
    const unsigned haves = 2000000;
    struct shoal_msg m;
    memset(&m, 0, sizeof m);
    m.type = SHOAL_MSG_HAVE;
    memset(m.u.have.manifest_id, 0x33, sizeof m.u.have.manifest_id);
    shoal_frame_dec_init(&d, SHOAL_FRAME_MAX_AUTH);
    t0 = now();
    for (unsigned i = 0; i < haves; i += 1000) {
        shoal_buf_reset(&out);
        for (unsigned k = 0; k < 1000; k++) {
            m.u.have.chunk_index = i + k;
            if (shoal_msg_encode(&m, &out) != 0)
                goto out;
        }
        if (feed_split(&d, out.data, out.len, &sink) != 0)
            goto out;
    }
    t1 = now();
    if (sink.bad)
        goto out;
    printf("BENCH frame_have_mps %.2f Mmsg/s\n", haves / (t1 - t0) / 1e6);
    fprintf(stderr, "(check %llu)\n", (unsigned long long)sink.check);
    rv = 0;
out:
    if (rv)
        fprintf(stderr, "bench_frame: failed\n");
    shoal_buf_free(&hdr);
    shoal_buf_free(&out);
    shoal_frame_dec_free(&d);
    free(pool);
    return rv;
}
