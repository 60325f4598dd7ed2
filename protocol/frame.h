/* SPDX-License-Identifier: MIT */
/*
 * Framing shared by every shoal connection (node<->node, node<->tracker and
 * the loader socket): a 4-byte big-endian body length, then the body, which
 * is one msgpack array [type, fields...] (see msg.h).
 *
 * The decoder is fed whatever a read returned, keeps its state across reads
 * (a split may fall anywhere, even inside the length), and reports each
 * complete body through a callback. It never trusts the declared length: a
 * length above the current maximum is refused as soon as the 4 header bytes
 * are in, and the body buffer grows with the bytes that actually arrive, so
 * a peer that claims 16 MiB and sends 5 bytes costs 5 bytes plus a small
 * step. Like the rest of protocol/, it does no I/O.
 */
#ifndef SHOAL_FRAME_H
#define SHOAL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define SHOAL_FRAME_HDR_LEN 4u
/* Limit before the peer has authenticated: HELLO/TRK_AUTH fit easily. */
#define SHOAL_FRAME_MAX_PREAUTH (64u * 1024u)
/* Limit after authentication: a 4 MiB chunk or a manifest of a few MB. */
#define SHOAL_FRAME_MAX_AUTH (16u * 1024u * 1024u + 1024u)
/* No decoder accepts, and shoal_frame_header() writes, no body above this,
 * whatever a peer negotiates: the largest message (a 64 MiB CHUNK payload
 * plus its fields) fits. */
#define SHOAL_FRAME_MAX_ABS (64u * 1024u * 1024u + 64u * 1024u)

/*
 * Writes the 4-byte header for a body of |body_len| bytes into |out|.
 * Returns 0, SHOAL_EPROTO for an empty body (no valid frame is empty) or
 * SHOAL_ETOOBIG above SHOAL_FRAME_MAX_ABS; |out| is untouched on error.
 */
int shoal_frame_header(uint8_t out[SHOAL_FRAME_HDR_LEN], size_t body_len);

struct shoal_frame_cb {
    /*
     * One complete frame. |body| points either into the decoder's buffer or
     * into the caller's input and is valid only until the callback returns;
     * copy what must outlive it. Return 0 to go on, or any nonzero value to
     * make shoal_frame_dec_feed() stop after this frame and return it (the
     * decoder stays usable; feed the unconsumed rest later). The callback may
     * call shoal_frame_dec_set_max() (e.g. after a successful handshake) but
     * must neither feed nor free the decoder: |body| may be its buffer.
     */
    int (*on_frame)(void *user, const uint8_t *body, size_t len);
};

/*
 * Streaming decoder on caller storage. Treat the fields as private; they are
 * visible only so the decoder can live inside a connection struct.
 */
struct shoal_frame_dec {
    uint8_t hdr[SHOAL_FRAME_HDR_LEN];
    uint8_t hdr_have;  /* header bytes gathered for the current frame */
    int err;           /* sticky fatal error, 0 while healthy */
    size_t max;        /* largest body accepted */
    size_t need;       /* declared body length; 0 while reading a header */
    uint8_t *buf;      /* owned body storage, NULL until a frame needs it */
    size_t len;        /* body bytes held */
    size_t cap;        /* allocated size of buf */
    size_t prealloc;   /* bodies up to this get their whole buffer at once */
    /* where those whole buffers come from (NULL: malloc) */
    uint8_t *(*alloc)(size_t n, size_t *cap);
};

/* Empty decoder accepting bodies up to |max| bytes (clamped to
 * SHOAL_FRAME_MAX_ABS). Allocates nothing. */
void shoal_frame_dec_init(struct shoal_frame_dec *d, size_t max);
/* Frees the buffer. Accepts a decoder that was zeroed or already freed.
 * Between frames (shoal_frame_dec_partial() returns 0) the decoder stays
 * usable: this only gives back a buffer kept from an earlier frame. */
void shoal_frame_dec_free(struct shoal_frame_dec *d);
/*
 * Changes the largest accepted body (clamped to SHOAL_FRAME_MAX_ABS). Takes
 * effect at the next frame header; a frame whose header is already in keeps
 * the limit it was checked against.
 */
void shoal_frame_dec_set_max(struct shoal_frame_dec *d, size_t max);

/*
 * Consumes up to |len| bytes of |data|, calling |cb->on_frame| for each
 * complete frame, and sets |*consumed| to the bytes taken (always set, also
 * on error). A frame that arrives whole in one call while nothing is buffered
 * is handed to the callback straight from |data|, without a copy.
 * Returns:
 *   0               all of |data| was consumed
 *   nonzero from the callback: stopped right after that frame
 *   SHOAL_ETOOBIG   a header declared a body above the maximum
 *   SHOAL_EPROTO    a header declared an empty body
 *   -ENOMEM         the body buffer could not grow
 * The three errors are sticky: the connection is broken and every later call
 * returns the same code without consuming anything. |*consumed| then counts
 * the bytes up to and including the offending header.
 */
int shoal_frame_dec_feed(struct shoal_frame_dec *d, const uint8_t *data, size_t len,
                         size_t *consumed, const struct shoal_frame_cb *cb, void *user);

/*
 * The frame being gathered, for owners that apply limits of their own to
 * frames in progress (by message type, or to the memory unfinished frames
 * pin): returns its declared body length, 0 between frames (also while a
 * header is incomplete or after a sticky error). Sets |*head| to the body
 * bytes buffered so far and |*held| to their count (NULL and 0 when none),
 * and |*alloc| (may be NULL) to the bytes the decoder holds allocated.
 */
size_t shoal_frame_dec_partial(const struct shoal_frame_dec *d, const uint8_t **head,
                               size_t *held, size_t *alloc);

/*
 * Zero-copy receive for large bodies. While a frame body is partly in
 * (shoal_frame_dec_body_left() > 0), the caller may read from its socket
 * straight into the decoder: shoal_frame_dec_body_buf() returns writable room
 * at the end of the body gathered so far, at most the bytes the frame still
 * needs (so a read cannot run into the next frame), and
 * shoal_frame_dec_body_commit() records |n| bytes written there and delivers
 * the frame through |cb| when it is complete.
 */
/* Body bytes the current frame still needs; 0 between frames and while the
 * header is incomplete (then use shoal_frame_dec_feed()). */
size_t shoal_frame_dec_body_left(const struct shoal_frame_dec *d);
/* Sets |*p|, |*n| to room for the next body bytes, growing the buffer by at
 * most the bytes held so far plus a small step. Returns 0, SHOAL_EAGAIN when
 * no body is in progress, -ENOMEM, or the sticky error. */
int shoal_frame_dec_body_buf(struct shoal_frame_dec *d, uint8_t **p, size_t *n);
/* Accounts |n| bytes written into the room from shoal_frame_dec_body_buf().
 * Returns 0, the callback's nonzero value if the frame completed and the
 * callback returned one, SHOAL_ELIMIT if |n| exceeds that room (nothing is
 * recorded), or the sticky error. */
int shoal_frame_dec_body_commit(struct shoal_frame_dec *d, size_t n,
                                const struct shoal_frame_cb *cb, void *user);

/* handing bodies over without a copy */

/*
 * Lets bodies of up to |n| bytes (clamped to the current maximum when used)
 * get their whole buffer as soon as the header is in, instead of growing
 * with the bytes that arrive. Meant for authenticated peers, whose frames
 * are trusted to be as long as they say; 0 (the default) turns it off.
 * Takes effect at the next frame header.
 */
void shoal_frame_dec_set_prealloc(struct shoal_frame_dec *d, size_t n);
/*
 * Has the whole buffers of set_prealloc() come from |alloc| instead of
 * malloc (NULL: back to malloc): it returns a buffer that free() accepts,
 * of at least |n| bytes, and its size in |*cap|; or NULL when out of
 * memory. Lets the owner recycle the chunk-sized buffers it takes with
 * shoal_frame_dec_body_take() instead of faulting fresh ones in. */
void shoal_frame_dec_set_alloc(struct shoal_frame_dec *d,
                               uint8_t *(*alloc)(size_t n, size_t *cap));

/*
 * Only from inside on_frame, for the |body| it was handed: when |body| is
 * the decoder's own buffer, gives that buffer (malloc'd, |body| at its
 * start, at least the body's length) to the caller, who frees it with
 * free(), and returns it; the decoder allocates afresh for the next frame.
 * Returns NULL, and keeps everything, when |body| lies in the caller's input
 * to shoal_frame_dec_feed() (copy it then) or is not the current body.
 */
uint8_t *shoal_frame_dec_body_take(struct shoal_frame_dec *d, const uint8_t *body);

#endif
