/* SPDX-License-Identifier: MIT */
/*
 * MessagePack for shoal's wire and manifest formats.
 *
 * Writing goes through msgpack-c's packer into a capped shoal_buf. Reading is
 * our own strict cursor: msgpack-c's unpacker allocates from the counts a
 * message declares before anything is validated, so a 5-byte array header
 * could make it reserve gigabytes. Here every count and length is checked
 * against the bytes actually present and a caller-given limit first, nothing
 * is allocated, and str/bin values point into the input (zero-copy).
 */
#ifndef SHOAL_MP_H
#define SHOAL_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* ---- writer ---- */

/* Writer into |buf|. The first failure (SHOAL_ELIMIT, -ENOMEM) sticks in
 * |err| and later calls do nothing, so encoders check once at the end. */
struct shoal_mpw {
    struct shoal_buf *buf;  /* not owned */
    int err;
};

void shoal_mpw_init(struct shoal_mpw *w, struct shoal_buf *buf);
void shoal_mpw_array(struct shoal_mpw *w, uint32_t n);
void shoal_mpw_map(struct shoal_mpw *w, uint32_t n);
void shoal_mpw_uint(struct shoal_mpw *w, uint64_t v);
void shoal_mpw_int(struct shoal_mpw *w, int64_t v);
void shoal_mpw_bool(struct shoal_mpw *w, bool v);
void shoal_mpw_nil(struct shoal_mpw *w);
void shoal_mpw_str(struct shoal_mpw *w, const char *s, size_t n);
/* Convenience for NUL-terminated strings. */
void shoal_mpw_cstr(struct shoal_mpw *w, const char *s);
void shoal_mpw_bin(struct shoal_mpw *w, const void *p, size_t n);
/* Only the header of a bin of |n| bytes: the caller sends the body itself
 * (used so chunk payloads never pass through an encode buffer). */
void shoal_mpw_bin_header(struct shoal_mpw *w, size_t n);

/* ---- reader ---- */

struct shoal_mpr {
    const uint8_t *p;    /* next byte */
    const uint8_t *end;  /* one past the last byte */
};

void shoal_mpr_init(struct shoal_mpr *r, const void *data, size_t len);
static inline size_t shoal_mpr_left(const struct shoal_mpr *r) { return (size_t)(r->end - r->p); }

/*
 * Each reader returns 0 and advances past the item, or returns an error and
 * leaves the cursor where it was:
 *   SHOAL_ETRUNC  input ends inside the item
 *   SHOAL_ETYPE   the item is not of the requested type
 *   SHOAL_ETOOBIG a count, length or value is above |max|
 * Array and map counts are also refused when they exceed the bytes left
 * (every element takes at least one byte).
 */
int shoal_mpr_array(struct shoal_mpr *r, uint32_t *n, uint32_t max);
int shoal_mpr_map(struct shoal_mpr *r, uint32_t *n, uint32_t max);
/* Any non-negative integer (positive fixint, uint*, or int* >= 0), <= max. */
int shoal_mpr_uint(struct shoal_mpr *r, uint64_t *v, uint64_t max);
int shoal_mpr_u32(struct shoal_mpr *r, uint32_t *v);
int shoal_mpr_int(struct shoal_mpr *r, int64_t *v);
int shoal_mpr_bool(struct shoal_mpr *r, bool *v);
int shoal_mpr_nil(struct shoal_mpr *r);
/* True when the next item is nil (does not advance; false at end of input). */
bool shoal_mpr_peek_nil(const struct shoal_mpr *r);
/* str: |*s| points into the input and is NOT NUL-terminated. */
int shoal_mpr_str(struct shoal_mpr *r, const char **s, uint32_t *n, uint32_t max);
int shoal_mpr_bin(struct shoal_mpr *r, const uint8_t **p, uint32_t *n, uint32_t max);
/* A bin of exactly |n| bytes copied to |out| (keys, hashes); else SHOAL_ETYPE
 * for a wrong type and SHOAL_EBADMSG for a wrong length. */
int shoal_mpr_bin_exact(struct shoal_mpr *r, void *out, uint32_t n);
/* Skips one item of any type, nesting at most |max_depth| deep. */
int shoal_mpr_skip(struct shoal_mpr *r, unsigned max_depth);

#endif
