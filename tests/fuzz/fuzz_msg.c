/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for the message decoder: the input is one frame body. Beyond
 * "never crash, never read out of bounds", it checks that whatever decodes
 * also encodes, and that encoding is a fixed point after one round (decode,
 * encode, decode, encode gives the same bytes twice).
 */
#include "buf.h"
#include "error.h"
#include "msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Big (PEERS holds 256 entries): kept off the stack. */
static struct shoal_msg m1, m2;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (shoal_msg_decode(&m1, data, size) != 0)
        return 0;
    struct shoal_buf e1, e2;
    shoal_buf_init(&e1, size + 64);
    shoal_buf_init(&e2, size + 64);
    int rv = shoal_msg_encode(&m1, &e1);
    if (rv != 0) {
        fprintf(stderr, "decoded %s does not encode: %s\n", shoal_msg_type_name(m1.type),
                shoal_strerror(rv));
        abort();
    }
    if (shoal_msg_decode(&m2, e1.data + 4, e1.len - 4) != 0 || m2.type != m1.type)
        abort();
    if (shoal_msg_encode(&m2, &e2) != 0 || e2.len != e1.len ||
        memcmp(e1.data, e2.data, e1.len) != 0)
        abort();
    shoal_buf_free(&e1);
    shoal_buf_free(&e2);
    return 0;
}
