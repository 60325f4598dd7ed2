/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for shoal_codec_decompress (node/codec.c): a CHUNK payload
 * from a peer is decoded into a buffer of exactly the manifest's raw length
 * before its hash is checked. Input: byte 0 picks the codec (0..3; 3 is
 * unknown), bytes 1-3 the raw length (up to 16 MiB, big-endian), the rest
 * is the payload. The output buffer is allocated to the exact length so a
 * write past it is caught. Then the payload is compressed as a chunk and,
 * if compressed, must decode back to itself.
 */
#include "codec.h"
#include "error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *out = NULL, *z = NULL, *back = NULL;
    size_t raw, plen, zlen = 0;
    const uint8_t *p;
    uint8_t codec;
    int rv;

    if (size < 4)
        return 0;
    codec = data[0] % 4;
    raw = (size_t)data[1] << 16 | (size_t)data[2] << 8 | data[3];
    p = data + 4;
    plen = size - 4;
    out = malloc(raw ? raw : 1);
    if (!out)
        goto out;
    rv = shoal_codec_decompress(codec, p, plen, out, raw);
    if (rv != 0 && rv != SHOAL_EPROTO && rv != SHOAL_ETOOBIG && rv != SHOAL_EBADMSG &&
        rv != -ENOMEM)
        abort();
    if (rv == 0 && codec == 0 && (plen != raw || memcmp(out, p, raw) != 0))
        abort();
    if (codec == 3 && rv != SHOAL_EPROTO)
        abort();
    /* The other direction: what a node sends must decode to the chunk. */
    if (plen == 0 || plen > (1u << 20))
        goto out;
    rv = shoal_codec_compress(p, plen, 1 + data[0] / 4 % 3,
                              SHOAL_CODEC_F_ZSTD | SHOAL_CODEC_F_BF16, &z, &zlen, &codec);
    if (rv != 0) {
        if (rv != -ENOMEM)
            abort();
        goto out;
    }
    if (z) {
        back = malloc(plen);
        if (!back)
            goto out;
        if (shoal_codec_decompress(codec, z, zlen, back, plen) != 0 ||
            memcmp(back, p, plen) != 0)
            abort();
    }
out:
    free(out);
    free(z);
    free(back);
    return 0;
}
