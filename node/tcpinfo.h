/* SPDX-License-Identifier: MIT */
/*
 * The kernel's round-trip figure for a connected TCP socket, for sizing
 * request pipelines (sched.h: shoal_sched_peer_rtt). TCP measures it from
 * every segment and its ACK, with no traffic of ours and none of the time
 * frames wait in our queues or the peer's: the least it has seen on the
 * connection is the path's own round trip.
 */
#ifndef SHOAL_TCPINFO_H
#define SHOAL_TCPINFO_H

#include <stdint.h>

/* The least round trip TCP has seen on socket |fd| (its min_rtt; its
 * smoothed RTT on a kernel that keeps no minimum), in microseconds, into
 * *us. Returns 0, or a negated errno (not a TCP socket: -EOPNOTSUPP or
 * what getsockopt says; -ENODATA: no sample yet). */
int shoal_tcp_rtt_us(int fd, uint32_t *us);

/* |us| in whole milliseconds as the scheduler takes a round trip: rounded
 * up, so a round trip of a few hundred microseconds (loopback, a rack) is 1
 * ms, never 0 (which the scheduler reads as "not measured"). 0 for 0. */
uint32_t shoal_rtt_ms_of_us(uint32_t us);

#endif
