/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for node/json.c, the parser of Hub API responses (model and
 * dataset info, file trees). Input is parsed with small limits; on success
 * the whole tree is walked through the public accessors, and each member
 * is looked up again by its key, which must find a value (the first member
 * with that key). Anything the limits allow must parse
 * without reading out of bounds, and each string's bytes must be
 * NUL-terminated at the reported length.
 */
#include "error.h"
#include "json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const struct shoal_json *v, unsigned depth)
{
    size_t len, n;
    uint64_t u;
    bool b;

    if (depth > 80) /* deeper than max_depth allows */
        abort();
    switch (shoal_json_type_of(v)) {
    case SHOAL_JSON_STRING: {
        const char *s = shoal_json_str(v, &len);
        if (!s || s[len] != '\0')
            abort();
        break;
    }
    case SHOAL_JSON_NUMBER:
        if (shoal_json_u64(v, &u) == 0 && v->is_neg && u != 0)
            abort();
        break;
    case SHOAL_JSON_BOOL:
        if (shoal_json_bool(v, &b) != 0)
            abort();
        break;
    case SHOAL_JSON_ARRAY:
        n = shoal_json_len(v);
        for (size_t i = 0; i < n; i++) {
            const struct shoal_json *e = shoal_json_at(v, i);
            if (!e)
                abort();
            walk(e, depth + 1);
        }
        if (shoal_json_at(v, n) != NULL)
            abort();
        break;
    case SHOAL_JSON_OBJECT:
        n = shoal_json_len(v);
        for (size_t i = 0; i < n; i++) {
            const struct shoal_json_member *m = &v->u.members[i];
            walk(&m->val, depth + 1);
            /* Keys with an embedded NUL cannot be asked for by name. */
            if (memchr(m->key, '\0', m->keylen) == NULL) {
                if (!shoal_json_get(v, m->key))
                    abort();
            }
        }
        /* The accessors the Hub client uses on every response. */
        (void)shoal_json_str(shoal_json_get(v, "sha"), &len);
        (void)shoal_json_u64(shoal_json_get(v, "size"), &u);
        (void)shoal_json_len(shoal_json_get(v, "siblings"));
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct shoal_json_limits lim = {1 << 20, 64, 100000};
    struct shoal_json_doc *doc = NULL;
    int rv;

    rv = shoal_json_parse(&doc, (const char *)data, size, &lim);
    if (rv == 0) {
        walk(shoal_json_root(doc), 0);
        shoal_json_doc_free(doc);
    } else if (rv != SHOAL_EPROTO && rv != SHOAL_ETOOBIG && rv != -ENOMEM) {
        abort();
    }
    return 0;
}
