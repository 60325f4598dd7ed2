/* SPDX-License-Identifier: MIT */
/*
 * Length-prefixed framing; see frame.h. The decoder is a two-state machine
 * (gathering the 4 header bytes, gathering the body) over caller storage.
 * Memory follows the bytes received, never the length a peer declares: the
 * body buffer at most doubles what it holds, plus FRAME_STEP.
 */
#include "frame.h"
#include "error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Smallest growth of the body buffer: small frames take one allocation. */
#define FRAME_STEP (16u * 1024u)
/* A buffer above this is released after its frame, so one big manifest does
 * not pin memory on an idle connection; chunk-sized frames (<= 4 MiB) keep
 * theirs and stream without reallocating. */
#define FRAME_RETAIN (8u * 1024u * 1024u)

static size_t clamp_max(size_t max)
{
    return max > SHOAL_FRAME_MAX_ABS ? SHOAL_FRAME_MAX_ABS : max;
}

int shoal_frame_header(uint8_t out[SHOAL_FRAME_HDR_LEN], size_t body_len)
{
    if (body_len == 0)
        return SHOAL_EPROTO;
    if (body_len > SHOAL_FRAME_MAX_ABS)
        return SHOAL_ETOOBIG;
    out[0] = (uint8_t)(body_len >> 24);
    out[1] = (uint8_t)(body_len >> 16);
    out[2] = (uint8_t)(body_len >> 8);
    out[3] = (uint8_t)body_len;
    return 0;
}

void shoal_frame_dec_init(struct shoal_frame_dec *d, size_t max)
{
    memset(d, 0, sizeof *d);
    d->max = clamp_max(max);
}

void shoal_frame_dec_free(struct shoal_frame_dec *d)
{
    free(d->buf);
    d->buf = NULL;
    d->cap = 0;
    d->len = 0;
}

void shoal_frame_dec_set_max(struct shoal_frame_dec *d, size_t max)
{
    d->max = clamp_max(max);
}

size_t shoal_frame_dec_body_left(const struct shoal_frame_dec *d)
{
    return d->err || d->need == 0 ? 0 : d->need - d->len;
}

size_t shoal_frame_dec_partial(const struct shoal_frame_dec *d, const uint8_t **head,
                               size_t *held, size_t *alloc)
{
    size_t declared = d->err ? 0 : d->need;
    *head = declared && d->len ? d->buf : NULL;
    *held = declared ? d->len : 0;
    if (alloc)
        *alloc = d->cap;
    return declared;
}

/* Makes room for at least |want| body bytes in total (want <= need). */
static int grow(struct shoal_frame_dec *d, size_t want)
{
    int rv = 0;
    if (want <= d->cap)
        goto out;
    size_t cap = d->cap > SIZE_MAX / 2 ? SIZE_MAX : d->cap * 2;
    if (cap < d->len + FRAME_STEP)
        cap = d->len + FRAME_STEP;
    if (cap > d->need || d->need <= d->prealloc)
        cap = d->need;
    if (cap < want)
        cap = want;
    if (!d->buf && d->alloc && cap == d->need && d->need <= d->prealloc) {
        /* a whole body from the owner's allocator */
        uint8_t *b = d->alloc(cap, &cap);
        if (!b) {
            rv = -ENOMEM;
            goto out;
        }
        d->buf = b;
        d->cap = cap;
        goto out;
    }
    uint8_t *p = realloc(d->buf, cap);
    if (!p) {
        rv = -ENOMEM;
        goto out;
    }
    d->buf = p;
    d->cap = cap;
out:
    return rv;
}

/* Parses a complete header: sets need, or the sticky error. */
static int take_header(struct shoal_frame_dec *d)
{
    size_t n = (size_t)d->hdr[0] << 24 | (size_t)d->hdr[1] << 16 |
               (size_t)d->hdr[2] << 8 | d->hdr[3];
    d->hdr_have = 0;
    if (n == 0)
        d->err = SHOAL_EPROTO;
    else if (n > d->max)
        d->err = SHOAL_ETOOBIG;
    else
        d->need = n;
    return d->err;
}

/* Hands the buffered body to the callback and resets for the next header. */
static int deliver(struct shoal_frame_dec *d, const struct shoal_frame_cb *cb, void *user)
{
    size_t n = d->len;
    /* Reset first: the callback sees a decoder that is between frames. */
    d->need = 0;
    d->len = 0;
    int rv = cb->on_frame(user, d->buf, n);
    if (d->cap > FRAME_RETAIN) {
        free(d->buf);
        d->buf = NULL;
        d->cap = 0;
    }
    return rv;
}

int shoal_frame_dec_feed(struct shoal_frame_dec *d, const uint8_t *data, size_t len,
                         size_t *consumed, const struct shoal_frame_cb *cb, void *user)
{
    size_t pos = 0;
    int rv = d->err;
    while (rv == 0 && pos < len) {
        if (d->need == 0) {
            size_t take = SHOAL_FRAME_HDR_LEN - d->hdr_have;
            if (take > len - pos)
                take = len - pos;
            memcpy(d->hdr + d->hdr_have, data + pos, take);
            d->hdr_have = (uint8_t)(d->hdr_have + take);
            pos += take;
            if (d->hdr_have < SHOAL_FRAME_HDR_LEN)
                break;
            rv = take_header(d);
            if (rv)
                break;
            if (len - pos >= d->need) {
                /* The whole body is in the caller's input: no copy. */
                size_t n = d->need;
                d->need = 0;
                pos += n;
                rv = cb->on_frame(user, data + pos - n, n);
            }
            continue;
        }
        size_t take = d->need - d->len;
        if (take > len - pos)
            take = len - pos;
        rv = grow(d, d->len + take);
        if (rv) {
            d->err = rv;
            break;
        }
        memcpy(d->buf + d->len, data + pos, take);
        d->len += take;
        pos += take;
        if (d->len == d->need)
            rv = deliver(d, cb, user);
    }
    *consumed = pos;
    return rv;
}

void shoal_frame_dec_set_prealloc(struct shoal_frame_dec *d, size_t n)
{
    d->prealloc = n;
}

void shoal_frame_dec_set_alloc(struct shoal_frame_dec *d,
                               uint8_t *(*alloc)(size_t n, size_t *cap))
{
    d->alloc = alloc;
}

uint8_t *shoal_frame_dec_body_take(struct shoal_frame_dec *d, const uint8_t *body)
{
    uint8_t *p = NULL;

    /* deliver() clears |need| and |len| before the callback, so the only
     * sign that |body| is ours is the pointer itself. */
    if (body && body == d->buf) {
        p = d->buf;
        d->buf = NULL;
        d->cap = 0;
    }
    return p;
}

int shoal_frame_dec_body_buf(struct shoal_frame_dec *d, uint8_t **p, size_t *n)
{
    int rv = d->err;
    if (rv)
        goto out;
    if (d->need == 0) {
        rv = SHOAL_EAGAIN;
        goto out;
    }
    /* Grow only when the room left is too small to be worth a read. */
    if (d->cap - d->len < FRAME_STEP && d->cap < d->need) {
        rv = grow(d, d->cap + 1);
        if (rv) {
            d->err = rv;
            goto out;
        }
    }
    size_t room = d->cap - d->len;
    if (room > d->need - d->len)
        room = d->need - d->len;
    *p = d->buf + d->len;
    *n = room;
out:
    return rv;
}

int shoal_frame_dec_body_commit(struct shoal_frame_dec *d, size_t n,
                                const struct shoal_frame_cb *cb, void *user)
{
    int rv = d->err;
    if (rv)
        goto out;
    if (d->need == 0 || n > d->cap - d->len || n > d->need - d->len) {
        rv = SHOAL_ELIMIT;
        goto out;
    }
    d->len += n;
    if (d->len == d->need)
        rv = deliver(d, cb, user);
out:
    return rv;
}
