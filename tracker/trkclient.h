/* SPDX-License-Identifier: MIT */
/*
 * A minimal blocking tracker client for tests, tools and the load
 * generator: plain sockets, poll() with a timeout on every wait. The node
 * daemon has its own libuv client; this one is for code that wants a
 * simple request/reply call.
 *
 * Received messages are decoded in place: the views in a shoal_msg filled
 * by shoal_trkc_recv point into the client's buffer and stay valid until
 * the next receive on the same client.
 */
#ifndef SHOAL_TRKCLIENT_H
#define SHOAL_TRKCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "msg.h"

struct shoal_trkc;

/* Connects to |host_port| ("127.0.0.1:7700"), waiting at most |timeout_ms|,
 * and reads the tracker's TRK_CHALLENGE. Returns 0 with *out set, -EINVAL
 * (bad address), -ETIMEDOUT, SHOAL_EPROTO (first message not a challenge),
 * a negated errno, or -ENOMEM. */
int shoal_trkc_connect(struct shoal_trkc **out, const char *host_port, int timeout_ms);

/* shoal_trkc_connect from the local IPv4 address |from| (NULL: any), so
 * tests can be several sources on loopback (127.0.0.2 ...). -EINVAL also
 * for a |from| that is not an IPv4 address. */
int shoal_trkc_connect_from(struct shoal_trkc **out, const char *host_port, const char *from,
                            int timeout_ms);

/* Closes the socket and frees the client; NULL is accepted. */
void shoal_trkc_free(struct shoal_trkc *c);

/* The socket, for tests that want to misbehave on it. */
int shoal_trkc_fd(const struct shoal_trkc *c);

/*
 * Authenticates (or adds another identity, see server.h) with node key
 * |sk|, credential bytes |cred|/|cred_len| (encoded, as shoal_cred_encode
 * writes them), |zone|, listen address |addr| ("host:port") and |role|.
 * Waits for OK and then for the fresh challenge that follows a verified
 * identity (not sent on a switch back, which |expect_challenge| false
 * skips). Returns 0, the ERROR code the tracker sent (negative SHOAL_E*),
 * SHOAL_EPROTO (unexpected reply), -ETIMEDOUT, -ECONNRESET (closed), or a
 * negated errno.
 */
int shoal_trkc_auth(struct shoal_trkc *c, const struct shoal_seckey *sk, const uint8_t *cred,
                    size_t cred_len, const char *zone, const char *addr, uint8_t role,
                    int timeout_ms);

/* Like shoal_trkc_auth for an identity already verified on this connection:
 * the tracker switches to it and sends only OK. */
int shoal_trkc_switch(struct shoal_trkc *c, const struct shoal_seckey *sk, const uint8_t *cred,
                      size_t cred_len, const char *zone, const char *addr, uint8_t role,
                      int timeout_ms);

/* Sends |m| (fully written before return, within |timeout_ms|). Returns 0,
 * an encode error, -ETIMEDOUT or a negated errno. */
int shoal_trkc_send(struct shoal_trkc *c, const struct shoal_msg *m, int timeout_ms);

/* Sends raw bytes (tests use it for malformed frames). */
int shoal_trkc_send_raw(struct shoal_trkc *c, const void *p, size_t n, int timeout_ms);

/* Receives and decodes one message into |m| (views valid until the next
 * receive). Returns 0, -ETIMEDOUT, -ECONNRESET (peer closed), SHOAL_ETOOBIG
 * (frame above 64 MiB + 64 KiB), a decode error, SHOAL_EBADMSG (a sealed
 * frame that does not open: changed, dropped or replayed on the way), or a
 * negated errno. */
int shoal_trkc_recv(struct shoal_trkc *c, struct shoal_msg *m, int timeout_ms);

/* send + recv. An ERROR reply is returned as 0 with m->type ERROR. */
int shoal_trkc_call(struct shoal_trkc *c, const struct shoal_msg *req, struct shoal_msg *resp,
                    int timeout_ms);

/* The last challenge nonce received. */
const uint8_t *shoal_trkc_nonce(const struct shoal_trkc *c);

/* Logins from now on (role publisher) ask whether the tracker trusts the
 * manifest signing key |pk| (TRK_AUTH publisher_pk, copied); one that does
 * not refuses with SHOAL_EUNTRUSTED. NULL stops asking. */
void shoal_trkc_set_publisher(struct shoal_trkc *c, const uint8_t pk[32]);

/*
 * Logins from now on require the tracker to prove a key in |keys| (copied):
 * TRK_AUTH carries a fresh client nonce and an ephemeral key, the tracker
 * must answer TRK_PROOF (tracker/auth.h) before its OK, and from that OK on
 * every frame both ways is sealed, so no one on the path reads or changes
 * what this client says or is told. A tracker that proves no such key
 * fails the login with SHOAL_EUNTRUSTED and shoal_trkc_unproven true
 * (shoal_trkc_error says why). Returns 0 or -ENOMEM.
 */
int shoal_trkc_pin(struct shoal_trkc *c, const struct shoal_keyset *keys);

/* The key the tracker proved on this connection, or NULL. */
const uint8_t *shoal_trkc_proven_key(const struct shoal_trkc *c);

/* True when the last login failed because the tracker did not prove a
 * pinned key (not because it refused us). */
bool shoal_trkc_unproven(const struct shoal_trkc *c);

/* The text of the ERROR that refused the last login ("" when it was not
 * refused); valid until the next login on |c|. */
const char *shoal_trkc_error(const struct shoal_trkc *c);

#endif
