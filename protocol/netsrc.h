/* SPDX-License-Identifier: MIT */
/*
 * What counts as one source of connections, for the limits the node and
 * the tracker put on peers that have not authenticated (who gets evicted
 * from a full handshake pool, how many handshakes one source may make):
 * an IPv4 address, or an IPv6 /64, since one host commonly holds a whole
 * /64. Pure: no I/O.
 */
#ifndef SHOAL_NETSRC_H
#define SHOAL_NETSRC_H

#include <stdint.h>
#include <sys/socket.h>

#define SHOAL_SRC_KEY_LEN 16u

/* Writes the source key of address |ss| to |key|: an IPv4 address (also
 * when IPv4-mapped) as its v4-mapped IPv6 form, an IPv6 address with its
 * low 64 bits zeroed. Any other family gives the all-zero key (one source). */
void shoal_src_key(const struct sockaddr_storage *ss, uint8_t key[SHOAL_SRC_KEY_LEN]);

#endif
