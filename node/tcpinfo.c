/* SPDX-License-Identifier: MIT */
/*
 * TCP's round trip for a socket (see tcpinfo.h). Apart from the rest of
 * the node: glibc's struct tcp_info stops before tcpi_min_rtt, and the
 * kernel's <linux/tcp.h>, which has it, clashes with <netinet/tcp.h> that
 * libuv's headers pull in.
 */
#include "tcpinfo.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <linux/tcp.h>

int shoal_tcp_rtt_us(int fd, uint32_t *us)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    uint32_t v;

    memset(&ti, 0, sizeof ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return -errno;
    /* An older kernel fills less of the struct: its smoothed RTT then. */
    if (len < offsetof(struct tcp_info, tcpi_rtt) + sizeof ti.tcpi_rtt)
        return -EOPNOTSUPP;
    v = ti.tcpi_rtt;
    /* The kernel keeps ~0U until its first sample. */
    if (len >= offsetof(struct tcp_info, tcpi_min_rtt) + sizeof ti.tcpi_min_rtt &&
        ti.tcpi_min_rtt != 0 && ti.tcpi_min_rtt != UINT32_MAX)
        v = ti.tcpi_min_rtt;
    if (v == 0)
        return -ENODATA;
    *us = v;
    return 0;
}

uint32_t shoal_rtt_ms_of_us(uint32_t us)
{
    return us / 1000 + (us % 1000 != 0);
}
