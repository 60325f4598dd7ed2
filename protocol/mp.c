/* SPDX-License-Identifier: MIT */
/* MessagePack writer (msgpack-c packer) and strict zero-copy reader; see mp.h. */
#include "mp.h"
#include "error.h"

#include <msgpack.h>
#include <string.h>

/* ---- writer ---- */

static int mpw_write(void *data, const char *p, size_t n)
{
    struct shoal_mpw *w = data;
    if (w->err)
        return -1;
    int rv = shoal_buf_append(w->buf, p, n);
    if (rv) {
        w->err = rv;
        return -1;
    }
    return 0;
}

#define MPW_PACKER(w, pk) \
    msgpack_packer pk;    \
    msgpack_packer_init(&pk, (w), mpw_write)

void shoal_mpw_init(struct shoal_mpw *w, struct shoal_buf *buf)
{
    w->buf = buf;
    w->err = 0;
}

void shoal_mpw_array(struct shoal_mpw *w, uint32_t n)
{
    MPW_PACKER(w, pk);
    msgpack_pack_array(&pk, n);
}

void shoal_mpw_map(struct shoal_mpw *w, uint32_t n)
{
    MPW_PACKER(w, pk);
    msgpack_pack_map(&pk, n);
}

void shoal_mpw_uint(struct shoal_mpw *w, uint64_t v)
{
    MPW_PACKER(w, pk);
    msgpack_pack_uint64(&pk, v);
}

void shoal_mpw_int(struct shoal_mpw *w, int64_t v)
{
    MPW_PACKER(w, pk);
    msgpack_pack_int64(&pk, v);
}

void shoal_mpw_bool(struct shoal_mpw *w, bool v)
{
    MPW_PACKER(w, pk);
    if (v)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
}

void shoal_mpw_nil(struct shoal_mpw *w)
{
    MPW_PACKER(w, pk);
    msgpack_pack_nil(&pk);
}

void shoal_mpw_str(struct shoal_mpw *w, const char *s, size_t n)
{
    MPW_PACKER(w, pk);
    if (msgpack_pack_str(&pk, n) == 0)
        msgpack_pack_str_body(&pk, s, n);
}

void shoal_mpw_cstr(struct shoal_mpw *w, const char *s)
{
    shoal_mpw_str(w, s, strlen(s));
}

void shoal_mpw_bin(struct shoal_mpw *w, const void *p, size_t n)
{
    MPW_PACKER(w, pk);
    if (msgpack_pack_bin(&pk, n) == 0)
        msgpack_pack_bin_body(&pk, p, n);
}

void shoal_mpw_bin_header(struct shoal_mpw *w, size_t n)
{
    MPW_PACKER(w, pk);
    msgpack_pack_bin(&pk, n);
}

/* ---- reader ---- */

void shoal_mpr_init(struct shoal_mpr *r, const void *data, size_t len)
{
    r->p = data;
    r->end = r->p + len;
}

static uint64_t be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Reads a length-prefixed header: |hdr| bytes of type tag already checked,
 * then |lenbytes| big-endian length. */
static int need(const struct shoal_mpr *r, size_t n)
{
    return shoal_mpr_left(r) < n ? SHOAL_ETRUNC : 0;
}

static int read_count(struct shoal_mpr *r, uint8_t fixmask, uint8_t fixtag, uint8_t t16, uint8_t t32,
                      uint32_t *n, uint32_t max)
{
    if (need(r, 1))
        return SHOAL_ETRUNC;
    uint8_t t = r->p[0];
    uint32_t count;
    size_t hdr;
    if ((t & fixmask) == fixtag) {
        count = t & (uint8_t)~fixmask;
        hdr = 1;
    } else if (t == t16) {
        if (need(r, 3))
            return SHOAL_ETRUNC;
        count = (uint32_t)be(r->p + 1, 2);
        hdr = 3;
    } else if (t == t32) {
        if (need(r, 5))
            return SHOAL_ETRUNC;
        count = (uint32_t)be(r->p + 1, 4);
        hdr = 5;
    } else {
        return SHOAL_ETYPE;
    }
    if (count > max)
        return SHOAL_ETOOBIG;
    if (count > shoal_mpr_left(r) - hdr)
        return SHOAL_ETRUNC;
    r->p += hdr;
    *n = count;
    return 0;
}

int shoal_mpr_array(struct shoal_mpr *r, uint32_t *n, uint32_t max)
{
    return read_count(r, 0xf0, 0x90, 0xdc, 0xdd, n, max);
}

int shoal_mpr_map(struct shoal_mpr *r, uint32_t *n, uint32_t max)
{
    int rv = read_count(r, 0xf0, 0x80, 0xde, 0xdf, n, max);
    return rv;
}

/* Decodes any integer into a sign flag and magnitude without advancing. */
static int peek_int(const struct shoal_mpr *r, bool *neg, uint64_t *mag, size_t *len)
{
    if (need(r, 1))
        return SHOAL_ETRUNC;
    uint8_t t = r->p[0];
    if (t <= 0x7f) {
        *neg = false;
        *mag = t;
        *len = 1;
        return 0;
    }
    if (t >= 0xe0) {
        *neg = true;
        *mag = (uint64_t)(-(int64_t)(int8_t)t);
        *len = 1;
        return 0;
    }
    unsigned nb;
    bool is_signed;
    switch (t) {
    case 0xcc: nb = 1; is_signed = false; break;
    case 0xcd: nb = 2; is_signed = false; break;
    case 0xce: nb = 4; is_signed = false; break;
    case 0xcf: nb = 8; is_signed = false; break;
    case 0xd0: nb = 1; is_signed = true; break;
    case 0xd1: nb = 2; is_signed = true; break;
    case 0xd2: nb = 4; is_signed = true; break;
    case 0xd3: nb = 8; is_signed = true; break;
    default: return SHOAL_ETYPE;
    }
    if (need(r, 1 + nb))
        return SHOAL_ETRUNC;
    uint64_t raw = be(r->p + 1, nb);
    *len = 1 + nb;
    if (!is_signed) {
        *neg = false;
        *mag = raw;
        return 0;
    }
    /* Sign-extend the nb-byte two's complement value. */
    int64_t sv;
    if (nb == 8) {
        sv = (int64_t)raw;
    } else {
        uint64_t sign = 1ULL << (nb * 8 - 1);
        sv = (int64_t)((raw ^ sign) - sign);
    }
    *neg = sv < 0;
    *mag = sv < 0 ? (uint64_t)0 - (uint64_t)sv : (uint64_t)sv;
    return 0;
}

int shoal_mpr_uint(struct shoal_mpr *r, uint64_t *v, uint64_t max)
{
    bool neg;
    uint64_t mag;
    size_t len;
    int rv = peek_int(r, &neg, &mag, &len);
    if (rv)
        return rv;
    if (neg)
        return SHOAL_ETYPE;
    if (mag > max)
        return SHOAL_ETOOBIG;
    r->p += len;
    *v = mag;
    return 0;
}

int shoal_mpr_u32(struct shoal_mpr *r, uint32_t *v)
{
    uint64_t x;
    int rv = shoal_mpr_uint(r, &x, UINT32_MAX);
    if (rv == 0)
        *v = (uint32_t)x;
    return rv;
}

int shoal_mpr_int(struct shoal_mpr *r, int64_t *v)
{
    bool neg;
    uint64_t mag;
    size_t len;
    int rv = peek_int(r, &neg, &mag, &len);
    if (rv)
        return rv;
    if (!neg && mag > (uint64_t)INT64_MAX)
        return SHOAL_ETOOBIG;
    if (neg && mag > (uint64_t)INT64_MAX + 1)
        return SHOAL_ETOOBIG;
    r->p += len;
    *v = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return 0;
}

int shoal_mpr_bool(struct shoal_mpr *r, bool *v)
{
    if (need(r, 1))
        return SHOAL_ETRUNC;
    if (r->p[0] != 0xc2 && r->p[0] != 0xc3)
        return SHOAL_ETYPE;
    *v = r->p[0] == 0xc3;
    r->p++;
    return 0;
}

int shoal_mpr_nil(struct shoal_mpr *r)
{
    if (need(r, 1))
        return SHOAL_ETRUNC;
    if (r->p[0] != 0xc0)
        return SHOAL_ETYPE;
    r->p++;
    return 0;
}

bool shoal_mpr_peek_nil(const struct shoal_mpr *r)
{
    return shoal_mpr_left(r) > 0 && r->p[0] == 0xc0;
}

/* Reads a str or bin header (selected by |want_str|) and its body. */
static int read_raw(struct shoal_mpr *r, bool want_str, const uint8_t **p, uint32_t *n, uint32_t max)
{
    if (need(r, 1))
        return SHOAL_ETRUNC;
    uint8_t t = r->p[0];
    size_t hdr;
    uint64_t len;
    if (want_str && (t & 0xe0) == 0xa0) {
        hdr = 1;
        len = t & 0x1f;
    } else {
        unsigned nb;
        if (want_str && t == 0xd9) nb = 1;
        else if (want_str && t == 0xda) nb = 2;
        else if (want_str && t == 0xdb) nb = 4;
        else if (!want_str && t == 0xc4) nb = 1;
        else if (!want_str && t == 0xc5) nb = 2;
        else if (!want_str && t == 0xc6) nb = 4;
        else return SHOAL_ETYPE;
        if (need(r, 1 + nb))
            return SHOAL_ETRUNC;
        hdr = 1 + nb;
        len = be(r->p + 1, nb);
    }
    if (len > max)
        return SHOAL_ETOOBIG;
    if (len > shoal_mpr_left(r) - hdr)
        return SHOAL_ETRUNC;
    *p = r->p + hdr;
    *n = (uint32_t)len;
    r->p += hdr + len;
    return 0;
}

int shoal_mpr_str(struct shoal_mpr *r, const char **s, uint32_t *n, uint32_t max)
{
    const uint8_t *p;
    int rv = read_raw(r, true, &p, n, max);
    if (rv == 0)
        *s = (const char *)p;
    return rv;
}

int shoal_mpr_bin(struct shoal_mpr *r, const uint8_t **p, uint32_t *n, uint32_t max)
{
    return read_raw(r, false, p, n, max);
}

int shoal_mpr_bin_exact(struct shoal_mpr *r, void *out, uint32_t n)
{
    struct shoal_mpr save = *r;
    const uint8_t *p;
    uint32_t got;
    int rv = read_raw(r, false, &p, &got, UINT32_MAX);
    if (rv)
        return rv;
    if (got != n) {
        *r = save;
        return SHOAL_EBADMSG;
    }
    memcpy(out, p, n);
    return 0;
}

int shoal_mpr_skip(struct shoal_mpr *r, unsigned max_depth)
{
    if (need(r, 1))
        return SHOAL_ETRUNC;
    struct shoal_mpr save = *r;
    uint8_t t = r->p[0];
    int rv = 0;
    uint32_t n;
    const uint8_t *p;
    if (t <= 0x7f || t >= 0xe0 || (t >= 0xcc && t <= 0xd3)) {
        int64_t iv;
        uint64_t uv;
        rv = (t == 0xcf) ? shoal_mpr_uint(r, &uv, UINT64_MAX) : shoal_mpr_int(r, &iv);
    } else if ((t & 0xe0) == 0xa0 || (t >= 0xd9 && t <= 0xdb)) {
        rv = read_raw(r, true, &p, &n, UINT32_MAX);
    } else if (t >= 0xc4 && t <= 0xc6) {
        rv = read_raw(r, false, &p, &n, UINT32_MAX);
    } else if (t == 0xc0 || t == 0xc2 || t == 0xc3) {
        r->p++;
    } else if (t == 0xca || t == 0xcb) {
        size_t sz = t == 0xca ? 5 : 9;
        if (need(r, sz))
            return SHOAL_ETRUNC;
        r->p += sz;
    } else if ((t & 0xf0) == 0x90 || t == 0xdc || t == 0xdd ||
               (t & 0xf0) == 0x80 || t == 0xde || t == 0xdf) {
        if (max_depth == 0)
            return SHOAL_ETOOBIG;
        bool is_map = (t & 0xf0) == 0x80 || t == 0xde || t == 0xdf;
        rv = is_map ? shoal_mpr_map(r, &n, UINT32_MAX) : shoal_mpr_array(r, &n, UINT32_MAX);
        uint64_t items = is_map ? 2ULL * n : n;
        for (uint64_t i = 0; rv == 0 && i < items; i++)
            rv = shoal_mpr_skip(r, max_depth - 1);
    } else {
        /* ext types and the reserved 0xc1 are never used by shoal. */
        rv = SHOAL_ETYPE;
    }
    if (rv)
        *r = save;
    return rv;
}
