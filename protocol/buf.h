/* SPDX-License-Identifier: MIT */
/*
 * A growable byte buffer with a hard size cap, on caller storage. Used by
 * every encoder so that no output can grow without bound.
 */
#ifndef SHOAL_BUF_H
#define SHOAL_BUF_H

#include <stddef.h>
#include <stdint.h>

struct shoal_buf {
    uint8_t *data;  /* owned; NULL until the first append */
    size_t len;
    size_t cap;     /* allocated */
    size_t max;     /* hard limit on len */
};

/* Empty buffer that may hold at most |max| bytes. Allocates nothing. */
void shoal_buf_init(struct shoal_buf *b, size_t max);
/* Frees the storage; the buffer is empty and reusable afterwards. */
void shoal_buf_free(struct shoal_buf *b);
/* Drops the contents, keeps the storage. */
static inline void shoal_buf_reset(struct shoal_buf *b) { b->len = 0; }
/* Ensures room for |n| more bytes. Returns 0, SHOAL_ELIMIT past max, -ENOMEM. */
int shoal_buf_reserve(struct shoal_buf *b, size_t n);
/* Appends |n| bytes. Returns 0, SHOAL_ELIMIT or -ENOMEM (buffer unchanged). */
int shoal_buf_append(struct shoal_buf *b, const void *p, size_t n);
/* Takes the storage out of |b| (caller frees with free()); |b| is left empty. */
uint8_t *shoal_buf_steal(struct shoal_buf *b, size_t *len);

#endif
