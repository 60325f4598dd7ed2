/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for the manifest parser. Each input is tried twice:
 *   1. as a whole signed manifest (envelope, signature, then body);
 *   2. as a body, signed here with a fixed key, so the body decoder and the
 *      validator see inputs a fuzzer could never sign by itself.
 * Whatever parses must rebuild through the publisher API, sign, and parse
 * again to the same release: parse and sign share one set of rules.
 */
#include "error.h"
#include "keys.h"
#include "manifest.h"
#include "mp.h"

#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_BODY (1u << 20)

static struct shoal_seckey fuzz_sk;
static int have_key;

static void fuzz_key(void)
{
    if (have_key)
        return;
    struct shoal_pubkey pk;
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, 0x42, sizeof seed);
    if (sodium_init() < 0 || crypto_sign_seed_keypair(pk.pk, fuzz_sk.sk, seed) != 0)
        abort();
    have_key = 1;
}

/* The signed form of manifest.h around |body|. */
static int seal(const uint8_t *body, size_t n, struct shoal_buf *out)
{
    const size_t dlen = sizeof SHOAL_MANIFEST_SIGN_DOMAIN;
    uint8_t *msg = malloc(dlen + n);
    if (!msg)
        return -1;
    memcpy(msg, SHOAL_MANIFEST_SIGN_DOMAIN, dlen);
    if (n)
        memcpy(msg + dlen, body, n);
    uint8_t sig[64];
    crypto_sign_detached(sig, NULL, msg, dlen + n, fuzz_sk.sk);
    free(msg);
    struct shoal_mpw w;
    shoal_mpw_init(&w, out);
    shoal_mpw_array(&w, 5);
    shoal_mpw_cstr(&w, SHOAL_MANIFEST_MAGIC);
    shoal_mpw_uint(&w, 1); /* the version of SHOAL_MANIFEST_SIGN_DOMAIN */
    shoal_mpw_bin(&w, body, n);
    shoal_mpw_bin(&w, fuzz_sk.sk + 32, 32);
    shoal_mpw_bin(&w, sig, 64);
    return w.err;
}

/* Rebuilds |m| with the builder, signs, parses, and compares. */
static void rebuild(const struct shoal_manifest *m)
{
    struct shoal_manifest *b = NULL, *p = NULL;
    struct shoal_buf out;
    shoal_buf_init(&out, SHOAL_MF_MAX_BYTES_DEFAULT);
    if (shoal_manifest_new(&b, shoal_manifest_repo_type(m), shoal_manifest_repo_id(m),
                           shoal_manifest_commit(m), shoal_manifest_params(m)) != 0)
        abort();
    for (uint32_t i = 0; i < shoal_manifest_nfiles(m); i++) {
        const struct shoal_mf_file *f = shoal_manifest_file(m, i);
        if (shoal_manifest_add_file(b, f->path, f->size, f->sha256) != 0)
            abort();
        for (uint32_t c = f->first_chunk; c < f->first_chunk + f->nchunks; c++) {
            const struct shoal_mf_chunk *ch = shoal_manifest_chunk(m, c);
            if (ch->file != i || shoal_manifest_add_chunk(b, ch->id, ch->len) != 0)
                abort();
        }
    }
    if (shoal_manifest_sign(b, &fuzz_sk, shoal_manifest_created(m), &out) != 0)
        abort();
    if (shoal_manifest_parse(&p, out.data, out.len, NULL, NULL) != 0)
        abort();
    if (shoal_manifest_nfiles(p) != shoal_manifest_nfiles(m) ||
        shoal_manifest_nchunks(p) != shoal_manifest_nchunks(m) ||
        shoal_manifest_total_size(p) != shoal_manifest_total_size(m) ||
        shoal_manifest_created(p) != shoal_manifest_created(m))
        abort();
    for (uint32_t i = 0; i < shoal_manifest_nfiles(m); i++) {
        const struct shoal_mf_file *f = shoal_manifest_file(m, i);
        if (shoal_manifest_find_file(p, f->path) != (int)i)
            abort();
    }
    shoal_manifest_free(p);
    shoal_manifest_free(b);
    shoal_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct shoal_manifest *m = NULL;
    fuzz_key();
    if (shoal_manifest_parse(&m, data, size, NULL, NULL) == 0) {
        rebuild(m);
        shoal_manifest_free(m);
        m = NULL;
    }
    if (size > FUZZ_MAX_BODY)
        return 0;
    struct shoal_buf sb;
    shoal_buf_init(&sb, FUZZ_MAX_BODY + 256);
    if (seal(data, size, &sb) == 0 &&
        shoal_manifest_parse(&m, sb.data, sb.len, NULL, NULL) == 0) {
        rebuild(m);
        shoal_manifest_free(m);
    }
    shoal_buf_free(&sb);
    return 0;
}
