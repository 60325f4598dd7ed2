/* SPDX-License-Identifier: MIT */
/*
 * A small strict JSON (RFC 8259) parser for the Hub's API responses. The
 * whole document is parsed into a read-only tree owned by one shoal_json_doc;
 * strings are unescaped (\uXXXX and surrogate pairs to UTF-8) and the input
 * must be valid UTF-8. Integers without fraction or exponent are kept exact
 * (uint64/int64), so file sizes above 2^53 survive. Input size, nesting depth
 * and node count are capped, so hostile input cannot exhaust memory or stack.
 * Duplicate object keys are accepted; lookups return the first.
 */
#ifndef SHOAL_JSON_H
#define SHOAL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum shoal_json_type {
    SHOAL_JSON_NULL = 0,
    SHOAL_JSON_BOOL,
    SHOAL_JSON_NUMBER,
    SHOAL_JSON_STRING,
    SHOAL_JSON_ARRAY,
    SHOAL_JSON_OBJECT,
};

struct shoal_json_member;

/* One value. Read it through the accessors below; fields are for them. */
struct shoal_json {
    uint8_t type;       /* enum shoal_json_type */
    uint8_t is_int;     /* NUMBER written as an integer that fits int64/uint64 */
    uint8_t is_neg;
    bool b;
    size_t n;           /* string length, or array/object element count */
    union {
        const char *s;                    /* STRING: NUL-terminated, may hold NULs */
        struct shoal_json *items;         /* ARRAY */
        struct shoal_json_member *members; /* OBJECT */
    } u;
    uint64_t uint;      /* magnitude when is_int */
    double num;         /* every NUMBER */
};

struct shoal_json_member {
    const char *key;
    size_t keylen;
    struct shoal_json val;
};

struct shoal_json_limits {
    size_t max_input;   /* bytes; default 64 MiB */
    size_t max_depth;   /* nesting; default 64 */
    size_t max_nodes;   /* values in the document; default 4,000,000 */
};

struct shoal_json_doc;

/*
 * Parses |n| bytes at |p| (leading/trailing whitespace allowed, nothing
 * else after the value). |lim| NULL means the defaults above.
 * On success *out owns the tree; free it with shoal_json_doc_free.
 * Returns 0, SHOAL_ETOOBIG (input, depth or node count over a limit),
 * SHOAL_EPROTO (not JSON, or not UTF-8), -ENOMEM.
 */
int shoal_json_parse(struct shoal_json_doc **out, const char *p, size_t n,
                     const struct shoal_json_limits *lim);
/* Frees |d| and every value in it; NULL is accepted. */
void shoal_json_doc_free(struct shoal_json_doc *d);
/* The top-level value; valid until the document is freed. */
const struct shoal_json *shoal_json_root(const struct shoal_json_doc *d);

/* Member |key| of object |v|; NULL when |v| is NULL, not an object, or has
 * no such key. */
const struct shoal_json *shoal_json_get(const struct shoal_json *v, const char *key);
/* Element |i| of array |v|; NULL when out of range or not an array. */
const struct shoal_json *shoal_json_at(const struct shoal_json *v, size_t i);
/* Element count of an array or object; 0 for anything else or NULL. */
size_t shoal_json_len(const struct shoal_json *v);
/* The string's bytes (NUL-terminated) and length in |*len| (may be NULL);
 * NULL when |v| is not a string. */
const char *shoal_json_str(const struct shoal_json *v, size_t *len);
/* A non-negative integer into |*out|. Returns 0, or SHOAL_ETYPE when |v| is
 * missing, not a number, negative, fractional or above UINT64_MAX. */
int shoal_json_u64(const struct shoal_json *v, uint64_t *out);
/* A boolean into |*out|. Returns 0 or SHOAL_ETYPE. */
int shoal_json_bool(const struct shoal_json *v, bool *out);
/* The value's type; SHOAL_JSON_NULL for a NULL pointer too. */
static inline enum shoal_json_type shoal_json_type_of(const struct shoal_json *v)
{
    return v ? (enum shoal_json_type)v->type : SHOAL_JSON_NULL;
}

#endif
