/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for shoal_ctl_decode, the control socket's message decoder
 * (node/ctl.c): any local client of the daemon can send these frames. A
 * body that decodes must encode again (the encoder validates like the
 * decoder), the result must decode, and encoding that must give the very
 * same bytes: what the daemon accepts it can also say, the same way.
 */
#include "buf.h"
#include "ctl.h"
#include "error.h"
#include "frame.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Large (hundreds of KiB): static, not on the stack. */
static struct shoal_ctl_msg m1, m2;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct shoal_buf b1, b2;

    if (size > SHOAL_CTL_FRAME_MAX)
        return 0;
    if (shoal_ctl_decode(&m1, data, size) != 0)
        return 0;
    shoal_buf_init(&b1, SHOAL_CTL_FRAME_MAX + SHOAL_FRAME_HDR_LEN);
    shoal_buf_init(&b2, SHOAL_CTL_FRAME_MAX + SHOAL_FRAME_HDR_LEN);
    if (shoal_ctl_encode(&m1, &b1) != 0 || b1.len < SHOAL_FRAME_HDR_LEN)
        abort();
    if (shoal_ctl_decode(&m2, b1.data + SHOAL_FRAME_HDR_LEN, b1.len - SHOAL_FRAME_HDR_LEN) != 0)
        abort();
    if (shoal_ctl_encode(&m2, &b2) != 0 || b1.len != b2.len ||
        memcmp(b1.data, b2.data, b1.len) != 0)
        abort();
    shoal_buf_free(&b1);
    shoal_buf_free(&b2);
    return 0;
}
