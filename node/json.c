/* SPDX-License-Identifier: MIT */
/*
 * Strict JSON parser for the Hub client: recursive descent over the input,
 * with a depth cap so the recursion is bounded. Unescaped strings live in
 * one arena sized from the input (an unescaped string is never longer than
 * its quoted form, so the arena cannot overflow); arrays and objects own
 * their element vectors.
 */
#include "json.h"

#include "error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define JSON_DEF_MAX_INPUT ((size_t)64 << 20)
#define JSON_DEF_MAX_DEPTH 64
#define JSON_DEF_MAX_NODES ((size_t)4000000)

struct shoal_json_doc {
    struct shoal_json root;
    char *arena;
};

struct parser {
    const char *p;
    const char *end;
    char *arena;      /* next free byte */
    size_t depth;
    size_t nodes;
    struct shoal_json_limits lim;
};

static void value_free(struct shoal_json *v)
{
    size_t i;

    if (v->type == SHOAL_JSON_ARRAY) {
        for (i = 0; i < v->n; i++)
            value_free(&v->u.items[i]);
        free(v->u.items);
    } else if (v->type == SHOAL_JSON_OBJECT) {
        for (i = 0; i < v->n; i++)
            value_free(&v->u.members[i].val);
        free(v->u.members);
    }
    v->type = SHOAL_JSON_NULL;
    v->n = 0;
}

static void skip_ws(struct parser *ps)
{
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int hex4(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    int i;

    for (i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return SHOAL_EPROTO;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence at |s| (at most |n| bytes), or 0.
 * Rejects overlong forms, surrogates and code points above U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len, i;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* Parses a string at ps->p (which is at the opening quote) into the arena. */
static int parse_string(struct parser *ps, const char **out, size_t *outlen)
{
    char *start = ps->arena;
    char *o = start;
    int rv = SHOAL_EPROTO;

    ps->p++;
    while (ps->p < ps->end) {
        unsigned char c = (unsigned char)*ps->p;
        if (c == '"') {
            ps->p++;
            *o = '\0';
            *out = start;
            *outlen = (size_t)(o - start);
            ps->arena = o + 1;
            rv = 0;
            goto out;
        }
        if (c < 0x20)
            goto out;
        if (c == '\\') {
            if (ps->end - ps->p < 2)
                goto out;
            char e = ps->p[1];
            ps->p += 2;
            switch (e) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '/': *o++ = '/'; break;
            case 'b': *o++ = '\b'; break;
            case 'f': *o++ = '\f'; break;
            case 'n': *o++ = '\n'; break;
            case 'r': *o++ = '\r'; break;
            case 't': *o++ = '\t'; break;
            case 'u': {
                uint32_t cp, lo;
                if (ps->end - ps->p < 4 || hex4(ps->p, &cp) != 0)
                    goto out;
                ps->p += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    goto out;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    /* A high surrogate must be followed by a low one. */
                    if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' ||
                        hex4(ps->p + 2, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                        goto out;
                    ps->p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                o += put_utf8(o, cp);
                break;
            }
            default:
                goto out;
            }
            continue;
        }
        size_t len = utf8_seq((const unsigned char *)ps->p, (size_t)(ps->end - ps->p));
        if (len == 0)
            goto out;
        memcpy(o, ps->p, len);
        o += len;
        ps->p += len;
    }
out:
    return rv;
}

static int parse_number(struct parser *ps, struct shoal_json *v)
{
    const char *s = ps->p;
    const char *q = s;
    bool integer = true;
    uint64_t mag = 0;
    bool overflow = false;
    char tmp[64];
    size_t len;

    if (q < ps->end && *q == '-')
        q++;
    if (q >= ps->end)
        return SHOAL_EPROTO;
    if (*q == '0') {
        q++;
    } else if (*q >= '1' && *q <= '9') {
        while (q < ps->end && *q >= '0' && *q <= '9') {
            unsigned d = (unsigned)(*q - '0');
            if (mag > (UINT64_MAX - d) / 10)
                overflow = true;
            else
                mag = mag * 10 + d;
            q++;
        }
    } else {
        return SHOAL_EPROTO;
    }
    if (q < ps->end && *q == '.') {
        integer = false;
        q++;
        if (q >= ps->end || *q < '0' || *q > '9')
            return SHOAL_EPROTO;
        while (q < ps->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        integer = false;
        q++;
        if (q < ps->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= ps->end || *q < '0' || *q > '9')
            return SHOAL_EPROTO;
        while (q < ps->end && *q >= '0' && *q <= '9')
            q++;
    }
    len = (size_t)(q - s);
    v->type = SHOAL_JSON_NUMBER;
    v->is_neg = s[0] == '-';
    v->is_int = integer && !overflow;
    v->uint = v->is_int ? mag : 0;
    if (v->is_int && v->is_neg && mag == 0)
        v->is_neg = 0;  /* -0 is 0 */
    /* strtod needs a terminated copy; long numbers only lose precision. */
    if (len >= sizeof(tmp))
        len = sizeof(tmp) - 1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    v->num = strtod(tmp, NULL);
    ps->p = q;
    return 0;
}

static int expect_word(struct parser *ps, const char *w)
{
    size_t n = strlen(w);

    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0)
        return SHOAL_EPROTO;
    ps->p += n;
    return 0;
}

static int parse_value(struct parser *ps, struct shoal_json *v);

/* Grows a vector of |elem|-sized items to hold at least |need|. */
static int grow(void **vec, size_t *cap, size_t need, size_t elem)
{
    size_t ncap;
    void *nv;

    if (need <= *cap)
        return 0;
    ncap = *cap ? *cap * 2 : 8;
    while (ncap < need)
        ncap *= 2;
    nv = realloc(*vec, ncap * elem);
    if (!nv)
        return -ENOMEM;
    *vec = nv;
    *cap = ncap;
    return 0;
}

/* Steps over |c| if it comes next. */
static bool eat(struct parser *ps, char c)
{
    if (ps->p < ps->end && *ps->p == c) {
        ps->p++;
        return true;
    }
    return false;
}

/* Opens a container whose first byte is under the cursor: 0 if |close|
 * follows at once (it is empty), 1 if an element is due. */
static int open_container(struct parser *ps, char close)
{
    ps->p++;
    skip_ws(ps);
    return eat(ps, close) ? 0 : 1;
}

/* After a container's element: 1 if a ',' says another follows, 0 if |close|
 * ends the container, SHOAL_EPROTO otherwise. */
static int after_element(struct parser *ps, char close)
{
    skip_ws(ps);
    if (eat(ps, ','))
        return 1;
    return eat(ps, close) ? 0 : SHOAL_EPROTO;
}

static int parse_array(struct parser *ps, struct shoal_json *v)
{
    struct shoal_json *items = NULL;
    size_t n = 0, cap = 0;
    int rv = open_container(ps, ']');

    while (rv == 1) {
        rv = grow((void **)&items, &cap, n + 1, sizeof(*items));
        if (rv)
            goto fail;
        rv = parse_value(ps, &items[n]);
        if (rv)
            goto fail;
        n++;
        rv = after_element(ps, ']');
    }
    if (rv)
        goto fail;
    v->type = SHOAL_JSON_ARRAY;
    v->n = n;
    v->u.items = items;
    return 0;
fail:
    while (n > 0)
        value_free(&items[--n]);
    free(items);
    return rv;
}

static int parse_object(struct parser *ps, struct shoal_json *v)
{
    struct shoal_json_member *m = NULL;
    size_t n = 0, cap = 0;
    int rv = open_container(ps, '}');

    while (rv == 1) {
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != '"') {
            rv = SHOAL_EPROTO;
            goto fail;
        }
        rv = grow((void **)&m, &cap, n + 1, sizeof(*m));
        if (rv)
            goto fail;
        rv = parse_string(ps, &m[n].key, &m[n].keylen);
        if (rv)
            goto fail;
        skip_ws(ps);
        if (!eat(ps, ':')) {
            rv = SHOAL_EPROTO;
            goto fail;
        }
        rv = parse_value(ps, &m[n].val);
        if (rv)
            goto fail;
        n++;
        rv = after_element(ps, '}');
    }
    if (rv)
        goto fail;
    v->type = SHOAL_JSON_OBJECT;
    v->n = n;
    v->u.members = m;
    return 0;
fail:
    while (n > 0)
        value_free(&m[--n].val);
    free(m);
    return rv;
}

static int parse_value(struct parser *ps, struct shoal_json *v)
{
    int rv;

    memset(v, 0, sizeof(*v));
    if (++ps->nodes > ps->lim.max_nodes)
        return SHOAL_ETOOBIG;
    skip_ws(ps);
    if (ps->p >= ps->end)
        return SHOAL_EPROTO;
    switch (*ps->p) {
    case '{':
    case '[':
        if (++ps->depth > ps->lim.max_depth)
            return SHOAL_ETOOBIG;
        rv = *ps->p == '{' ? parse_object(ps, v) : parse_array(ps, v);
        ps->depth--;
        return rv;
    case '"':
        v->type = SHOAL_JSON_STRING;
        return parse_string(ps, &v->u.s, &v->n);
    case 't':
        v->type = SHOAL_JSON_BOOL;
        v->b = true;
        return expect_word(ps, "true");
    case 'f':
        v->type = SHOAL_JSON_BOOL;
        return expect_word(ps, "false");
    case 'n':
        return expect_word(ps, "null");
    default:
        return parse_number(ps, v);
    }
}

int shoal_json_parse(struct shoal_json_doc **out, const char *p, size_t n,
                     const struct shoal_json_limits *lim)
{
    struct shoal_json_doc *d = NULL;
    struct parser ps;
    int rv;

    memset(&ps, 0, sizeof(ps));
    ps.lim.max_input = lim && lim->max_input ? lim->max_input : JSON_DEF_MAX_INPUT;
    ps.lim.max_depth = lim && lim->max_depth ? lim->max_depth : JSON_DEF_MAX_DEPTH;
    ps.lim.max_nodes = lim && lim->max_nodes ? lim->max_nodes : JSON_DEF_MAX_NODES;
    if (!out || (!p && n)) {
        rv = -EINVAL;
        goto fail;
    }
    if (n > ps.lim.max_input) {
        rv = SHOAL_ETOOBIG;
        goto fail;
    }
    d = calloc(1, sizeof(*d));
    /* Every string needs two quotes in the input, which pays for its NUL. */
    if (d)
        d->arena = malloc(n + 1);
    if (!d || !d->arena) {
        rv = -ENOMEM;
        goto fail;
    }
    ps.p = p;
    ps.end = p + n;
    ps.arena = d->arena;
    rv = parse_value(&ps, &d->root);
    if (rv)
        goto fail;
    skip_ws(&ps);
    if (ps.p != ps.end) {
        rv = SHOAL_EPROTO;
        goto fail;
    }
    *out = d;
    return 0;
fail:
    shoal_json_doc_free(d);
    return rv;
}

void shoal_json_doc_free(struct shoal_json_doc *d)
{
    if (!d)
        return;
    value_free(&d->root);
    free(d->arena);
    free(d);
}

const struct shoal_json *shoal_json_root(const struct shoal_json_doc *d)
{
    return d ? &d->root : NULL;
}

const struct shoal_json *shoal_json_get(const struct shoal_json *v, const char *key)
{
    size_t i, kl;

    if (!v || v->type != SHOAL_JSON_OBJECT || !key)
        return NULL;
    kl = strlen(key);
    for (i = 0; i < v->n; i++) {
        const struct shoal_json_member *m = &v->u.members[i];
        if (m->keylen == kl && memcmp(m->key, key, kl) == 0)
            return &m->val;
    }
    return NULL;
}

const struct shoal_json *shoal_json_at(const struct shoal_json *v, size_t i)
{
    if (!v || v->type != SHOAL_JSON_ARRAY || i >= v->n)
        return NULL;
    return &v->u.items[i];
}

size_t shoal_json_len(const struct shoal_json *v)
{
    if (!v || (v->type != SHOAL_JSON_ARRAY && v->type != SHOAL_JSON_OBJECT))
        return 0;
    return v->n;
}

const char *shoal_json_str(const struct shoal_json *v, size_t *len)
{
    if (!v || v->type != SHOAL_JSON_STRING)
        return NULL;
    if (len)
        *len = v->n;
    return v->u.s;
}

int shoal_json_u64(const struct shoal_json *v, uint64_t *out)
{
    if (!v || v->type != SHOAL_JSON_NUMBER || !v->is_int || v->is_neg)
        return SHOAL_ETYPE;
    *out = v->uint;
    return 0;
}

int shoal_json_bool(const struct shoal_json *v, bool *out)
{
    if (!v || v->type != SHOAL_JSON_BOOL)
        return SHOAL_ETYPE;
    *out = v->b;
    return 0;
}
