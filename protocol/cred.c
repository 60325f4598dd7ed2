/* SPDX-License-Identifier: MIT */
/*
 * Cluster credentials: issue, encode, strict decode, verify, and the
 * credential file; see cred.h for the format. The file itself is read and
 * written by keys.c, the one place protocol/ does I/O.
 */
#include "cred.h"
#include "error.h"
#include "mp.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#define CRED_FIELDS 6
#define CRED_MSG_LEN (sizeof SHOAL_CRED_SIGN_DOMAIN + 2 * SHOAL_PUBKEY_LEN + 8)

/* The exact bytes the cluster key signs; the domain's NUL is included. */
static void cred_message(const struct shoal_cred *c, uint8_t msg[CRED_MSG_LEN])
{
    size_t o = 0;
    memcpy(msg, SHOAL_CRED_SIGN_DOMAIN, sizeof SHOAL_CRED_SIGN_DOMAIN);
    o += sizeof SHOAL_CRED_SIGN_DOMAIN;
    memcpy(msg + o, c->node_pk, SHOAL_PUBKEY_LEN);
    o += SHOAL_PUBKEY_LEN;
    memcpy(msg + o, c->cluster_pk, SHOAL_PUBKEY_LEN);
    o += SHOAL_PUBKEY_LEN;
    for (int i = 7; i >= 0; i--)
        msg[o++] = (uint8_t)(c->expires_unix >> (8 * i));
}

int shoal_cred_issue(struct shoal_cred *out, const struct shoal_seckey *cluster_sk,
                     const struct shoal_pubkey *node_pk, uint64_t expires_unix)
{
    struct shoal_cred c;
    struct shoal_pubkey cpk;
    uint8_t msg[CRED_MSG_LEN];
    int rv = shoal_crypto_init();
    if (rv)
        return rv;
    shoal_seckey_public(cluster_sk, &cpk);
    memcpy(c.node_pk, node_pk->pk, SHOAL_PUBKEY_LEN);
    memcpy(c.cluster_pk, cpk.pk, SHOAL_PUBKEY_LEN);
    c.expires_unix = expires_unix;
    cred_message(&c, msg);
    if (crypto_sign_detached(c.sig, NULL, msg, sizeof msg, cluster_sk->sk) != 0)
        return -EIO;
    *out = c;
    return 0;
}

int shoal_cred_encode(const struct shoal_cred *c, struct shoal_buf *out)
{
    struct shoal_mpw w;
    shoal_mpw_init(&w, out);
    shoal_mpw_array(&w, CRED_FIELDS);
    shoal_mpw_cstr(&w, SHOAL_CRED_MAGIC);
    shoal_mpw_uint(&w, SHOAL_CRED_VERSION);
    shoal_mpw_bin(&w, c->node_pk, SHOAL_PUBKEY_LEN);
    shoal_mpw_bin(&w, c->cluster_pk, SHOAL_PUBKEY_LEN);
    shoal_mpw_uint(&w, c->expires_unix);
    shoal_mpw_bin(&w, c->sig, SHOAL_SIG_LEN);
    return w.err;
}

int shoal_cred_decode(struct shoal_cred *c, const uint8_t *p, size_t n)
{
    struct shoal_cred tmp;
    struct shoal_mpr r;
    struct shoal_buf re;
    uint32_t count, slen;
    uint64_t version;
    const char *magic;
    int rv;

    shoal_buf_init(&re, SHOAL_CRED_MAX_ENCODED);
    if (n > SHOAL_CRED_MAX_ENCODED) {
        rv = SHOAL_ETOOBIG;
        goto out;
    }
    shoal_mpr_init(&r, p, n);
    rv = shoal_mpr_array(&r, &count, CRED_FIELDS);
    if (rv)
        goto out;
    if (count != CRED_FIELDS) {
        rv = SHOAL_EPROTO;
        goto out;
    }
    rv = shoal_mpr_str(&r, &magic, &slen, 64);
    if (rv)
        goto out;
    if (slen != sizeof SHOAL_CRED_MAGIC - 1 || memcmp(magic, SHOAL_CRED_MAGIC, slen) != 0) {
        rv = SHOAL_EPROTO;
        goto out;
    }
    rv = shoal_mpr_uint(&r, &version, UINT64_MAX);
    if (rv)
        goto out;
    if (version != SHOAL_CRED_VERSION) {
        rv = SHOAL_EVERSION;
        goto out;
    }
    if ((rv = shoal_mpr_bin_exact(&r, tmp.node_pk, SHOAL_PUBKEY_LEN)) != 0 ||
        (rv = shoal_mpr_bin_exact(&r, tmp.cluster_pk, SHOAL_PUBKEY_LEN)) != 0 ||
        (rv = shoal_mpr_uint(&r, &tmp.expires_unix, UINT64_MAX)) != 0 ||
        (rv = shoal_mpr_bin_exact(&r, tmp.sig, SHOAL_SIG_LEN)) != 0)
        goto out;
    if (shoal_mpr_left(&r) != 0) {
        rv = SHOAL_EPROTO;
        goto out;
    }
    /* The reader accepts wider integer and header forms than the writer
     * produces; insisting on the writer's bytes keeps one encoding per
     * credential, so its bytes can be compared and hashed. */
    rv = shoal_cred_encode(&tmp, &re);
    if (rv)
        goto out;
    if (re.len != n || memcmp(re.data, p, n) != 0) {
        rv = SHOAL_EPROTO;
        goto out;
    }
    *c = tmp;
out:
    shoal_buf_free(&re);
    return rv;
}

int shoal_cred_verify(const struct shoal_cred *c, const struct shoal_keyset *cluster_keys,
                      uint64_t now_unix)
{
    uint8_t msg[CRED_MSG_LEN];
    int rv = shoal_crypto_init();
    if (rv)
        return rv;
    cred_message(c, msg);
    if (crypto_sign_verify_detached(c->sig, msg, sizeof msg, c->cluster_pk) != 0)
        return SHOAL_EBADSIG;
    if (!shoal_keyset_contains(cluster_keys, c->cluster_pk))
        return SHOAL_EUNTRUSTED;
    if (now_unix >= c->expires_unix)
        return SHOAL_EEXPIRED;
    return 0;
}

int shoal_cred_save(const char *path, const struct shoal_cred *c)
{
    struct shoal_buf b;
    shoal_buf_init(&b, SHOAL_CRED_MAX_ENCODED);
    int rv = shoal_cred_encode(c, &b);
    if (rv == 0)
        rv = shoal_keyfile_save(path, SHOAL_CRED_FILE_TAG, b.data, b.len, false);
    shoal_buf_free(&b);
    return rv;
}

int shoal_cred_load(const char *path, struct shoal_cred *c)
{
    uint8_t raw[SHOAL_CRED_MAX_ENCODED];
    size_t n = 0;
    int rv = shoal_keyfile_load(path, SHOAL_CRED_FILE_TAG, raw, sizeof raw, &n, false);
    if (rv == 0)
        rv = shoal_cred_decode(c, raw, n);
    return rv;
}
