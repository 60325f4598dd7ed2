/* SPDX-License-Identifier: MIT */
/* One source of connections (see netsrc.h). */
#include "netsrc.h"

#include <netinet/in.h>
#include <string.h>

void shoal_src_key(const struct sockaddr_storage *ss, uint8_t key[SHOAL_SRC_KEY_LEN])
{
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

    memset(key, 0, SHOAL_SRC_KEY_LEN);
    if (ss->ss_family == AF_INET) {
        memcpy(key, mapped, sizeof mapped);
        memcpy(key + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
        memcpy(key, a, memcmp(a, mapped, sizeof mapped) == 0 ? 16 : 8);
    }
}
