/* SPDX-License-Identifier: MIT */
/* Capped dynamic buffer; see buf.h. */
#include "buf.h"
#include "error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void shoal_buf_init(struct shoal_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void shoal_buf_free(struct shoal_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

int shoal_buf_reserve(struct shoal_buf *b, size_t n)
{
    if (n > b->max - b->len)
        return SHOAL_ELIMIT;
    size_t need = b->len + n;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max)
        cap = b->max;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int shoal_buf_append(struct shoal_buf *b, const void *p, size_t n)
{
    int rv = shoal_buf_reserve(b, n);
    if (rv)
        return rv;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

uint8_t *shoal_buf_steal(struct shoal_buf *b, size_t *len)
{
    uint8_t *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
