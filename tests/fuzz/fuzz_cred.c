/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for the credential decoder: any bytes must decode or be
 * refused without crashing or leaking, and whatever decodes must re-encode
 * to exactly the input (one encoding per credential) and go through verify.
 */
#include "cred.h"
#include "keys.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct shoal_cred c;
    if (shoal_cred_decode(&c, data, size) != 0)
        return 0;
    struct shoal_buf b;
    shoal_buf_init(&b, SHOAL_CRED_MAX_ENCODED);
    if (shoal_cred_encode(&c, &b) != 0 || b.len != size || memcmp(b.data, data, size) != 0)
        abort();
    shoal_buf_free(&b);
    /* Any outcome is fine; it must only not crash. A trusted set holding the
     * claimed cluster key reaches the expiry check when the signature holds. */
    struct shoal_keyset *ks = NULL;
    if (shoal_keyset_new(&ks) == 0) {
        struct shoal_pubkey pk;
        memcpy(pk.pk, c.cluster_pk, sizeof pk.pk);
        shoal_keyset_add(ks, &pk);
        (void)shoal_cred_verify(&c, ks, 1700000000u);
        shoal_keyset_free(ks);
    }
    return 0;
}
