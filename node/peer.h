/* SPDX-License-Identifier: MIT */
/*
 * One node<->node connection on the libuv loop: TCP, framing, the handshake
 * of session.h (HELLO, credential check, HELLO_AUTH), then sealed or plain
 * frames decoded into messages for the owner, and a bounded write queue.
 *
 * Before the handshake completes the frame limit is SHOAL_FRAME_MAX_PREAUTH
 * and nothing but HELLO / HELLO_AUTH is accepted; a peer whose credential
 * fails gets a BYE naming the reason and is disconnected, and the owner never
 * sees a message from it. Afterwards the limit is the configured max_frame.
 * PING is answered here; BYE closes (one that names a chunk goes to on_msg
 * first). Everything else goes to on_msg.
 * The session ends when the peer's credential does (a timer, and a check on
 * each message): closed with reason "credential expired", with a BYE saying
 * so unless frames were still queued (those are dropped, not sent late).
 *
 * Lifetime: a peer is freed only by the loop after shoal_peer_close() (or a
 * fatal error) and the on_close callback, never inside one of its callbacks;
 * after on_close the pointer is dead. Loop thread only.
 */
#ifndef SHOAL_PEER_H
#define SHOAL_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "keys.h"
#include "msg.h"
#include "ratelimit.h"
#include "session.h"

struct shoal_peer;

/* Write-queue memory all peers of a node share. While |used| is past |max|,
 * a peer holding more than its share (max / shares) counts as over its own
 * max_queue: reading from it stops and sends to it are refused. Peers that
 * never read then hold at most about twice |max| between them, not
 * max_queue each. Set |max| and |shares| (the most peers at once, at
 * least 1) before the first peer; |used| is the peers' to keep. */
struct shoal_peer_budget {
    size_t max;
    size_t shares;
    size_t used;
};

/* Shared by all peers of one node; borrowed, must outlive them. */
struct shoal_peer_ctx {
    uv_loop_t *loop;
    struct shoal_session_local local;     /* our identity and HELLO fields */
    const struct shoal_keyset *cluster_keys;
    uint32_t handshake_timeout_ms;        /* 0: 10 s */
    uint32_t idle_ms;                     /* an authenticated peer that sends
                                           * nothing this long (PINGed at a
                                           * third of it) is closed; 0: 90 s */
    size_t max_queue;                     /* write-queue bytes before sends are
                                           * refused (SHOAL_EBUSY); 0: 64 MiB */
    struct shoal_peer_budget *budget;     /* node-wide queue budget (NULL: none) */
    /* rate limits */
    /* Per-connection caps (peer_up, peer_down; 0 none) and the node-wide
     * buckets every connection also draws from (NULL: none). CHUNK frames
     * over the upload budget wait in the peer (counted as queued) and go
     * out in order as the budget refills; reading stops while the download
     * budget is in debt, so TCP slows the sender. */
    const struct shoal_rate_cfg *rate;    /* may be NULL */
    struct shoal_bucket *global_up, *global_down;
};

struct shoal_peer_cb {
    /* An accepted connection's HELLO decoded and is about to be verified
     * (its credential checked, our HELLO and HELLO_AUTH sent): return NULL
     * to go on, or a reason (static string) to refuse it unverified. The
     * reason goes out in a BYE and to on_close, and is not logged here:
     * anyone can cause it at will. May be NULL. */
    const char *(*before_hello)(struct shoal_peer *p, void *user);
    /* After the peer's HELLO verified: return NULL to go on, or a reason
     * (static string) to refuse it (banned key, duplicate connection). */
    const char *(*on_hello)(struct shoal_peer *p, void *user);
    /* Both HELLO_AUTHs are through; messages may be sent. */
    void (*on_ready)(struct shoal_peer *p, void *user);
    /* A message from an authenticated peer. Views in |m| are valid only
     * during the call. The owner may call shoal_peer_close() here. */
    void (*on_msg)(struct shoal_peer *p, const struct shoal_msg *m, void *user);
    /* The peer is closing (|reason| says why); last callback. */
    void (*on_close)(struct shoal_peer *p, const char *reason, void *user);
    /* The write queue drained below half of max_queue, or what was queued
     * at a shoal_peer_notify_written() call is written (may be NULL). */
    void (*on_drain)(struct shoal_peer *p, void *user);
};

/* Connects to |addr| ("host:port", numeric IPv4/IPv6 host) and runs the
 * handshake as initiator. Returns 0 (*out set; the outcome arrives through
 * the callbacks), -EINVAL (bad address) or a negated errno / -ENOMEM. */
int shoal_peer_connect(struct shoal_peer **out, const struct shoal_peer_ctx *ctx,
                       const struct shoal_peer_cb *cb, void *user, const char *addr);

/* Accepts a connection pending on |server| and runs the handshake as
 * responder. Returns 0 or a negated errno / -ENOMEM. */
int shoal_peer_accept(struct shoal_peer **out, const struct shoal_peer_ctx *ctx,
                      const struct shoal_peer_cb *cb, void *user, uv_stream_t *server);

/* Starts closing: reading stops, queued writes get a short grace period
 * (when |flush|), then the socket closes, on_close runs with |reason| and the
 * peer is freed. Calling it again does nothing. */
void shoal_peer_close(struct shoal_peer *p, const char *reason, bool flush);
/* Sends BYE with |reason| then closes with flush. */
void shoal_peer_bye(struct shoal_peer *p, const char *reason);
/* The same, naming chunk |chunk| of release |manifest_id| (32 bytes,
 * copied; NULL: none, as shoal_peer_bye) whose bytes from |p| failed their
 * hash, so that an honest sender can check its copy (BYE in msg.h). */
void shoal_peer_bye_chunk(struct shoal_peer *p, const char *reason, const uint8_t *manifest_id,
                          uint32_t chunk);

/*
 * Queues message |m| (encoded and sealed now; |m|'s views are only read).
 * Returns 0; SHOAL_EBUSY when the write queue is over max_queue (nothing
 * queued); -EPIPE when closing or not ready; SHOAL_ETOOBIG above the peer's
 * frame limit; or an encoder error.
 */
int shoal_peer_send(struct shoal_peer *p, const struct shoal_msg *m);

/*
 * Queues CHUNK |c| whose |c->payload.len| payload bytes are at |payload|,
 * which the peer takes over (freed with free() once written, also on error).
 * Plain sessions send [header][payload] as two buffers without copying the
 * payload; sealed ones seal both into one buffer. Same returns as
 * shoal_peer_send().
 */
int shoal_peer_send_chunk(struct shoal_peer *p, const struct shoal_msg_chunk *c,
                          uint8_t *payload);

/*
 * Queues REJECT of request |req_id| for |reason| (enum shoal_reject_reason)
 * with |retry_ms|: the one answer owed to a REQUEST that gets no CHUNK.
 * Unlike shoal_peer_send(), it is not refused for a queue past max_queue or
 * past its share of the node-wide budget while fewer than 64 REJECTs are
 * queued unwritten: a requester left without its answer waits a whole
 * request time-out for it. Returns 0; SHOAL_EBUSY when the queue is past
 * its limits and 64 are queued (a peer that sends REQUESTs and never
 * reads; what arrives from it is no longer read then); -EPIPE when closing
 * or not ready; or an encoder error.
 */
int shoal_peer_send_reject(struct shoal_peer *p, uint32_t req_id, uint8_t reason,
                           uint32_t retry_ms);

/* Whether a send would still be taken after |items| more frames of |bytes|
 * in all were queued ahead of it: the load they leave within max_queue and
 * within this peer's share of the node-wide budget while that is spent. */
bool shoal_peer_room(const struct shoal_peer *p, size_t bytes, size_t items);

/* Room a shoal_peer_send_chunk_buf() buffer keeps before the payload (for
 * the frame and CHUNK header) and after it (for the AEAD tag). */
#define SHOAL_PEER_CHUNK_HEADROOM 128u
#define SHOAL_PEER_CHUNK_TAILROOM SHOAL_SESSION_TAG_LEN
/*
 * Like shoal_peer_send_chunk(), without copying the payload for sealing:
 * |buf| (malloc'd, taken over and freed like |payload| there, also on error)
 * holds SHOAL_PEER_CHUNK_HEADROOM spare bytes, then the |c->payload.len|
 * payload bytes, then SHOAL_PEER_CHUNK_TAILROOM spare bytes. The header is
 * written into the headroom and a sealed session seals the frame in place,
 * on a worker thread when it is big (frames still leave in order). Same
 * returns as shoal_peer_send().
 */
int shoal_peer_send_chunk_buf(struct shoal_peer *p, const struct shoal_msg_chunk *c,
                              uint8_t *buf);
/*
 * Only from inside on_msg: takes the malloc'd buffer that holds the current
 * message (the views in the shoal_msg point into it), so the owner can keep
 * a CHUNK payload without copying it; free it with free(). Returns NULL when
 * the message lies in storage the peer cannot give away (copy it then).
 */
uint8_t *shoal_peer_take_body(struct shoal_peer *p);

/* True when shoal_peer_send_chunk_file() may be used: a ready, plain
 * (unsealed) session without an upload rate cap. */
bool shoal_peer_can_sendfile(const struct shoal_peer *p);
/*
 * Queues CHUNK |c| whose |c->payload.len| payload bytes are at offset |off|
 * of file |fd|, which the peer takes over (closed once sent, also on
 * error). The kernel sends them from the page cache with sendfile(2): no
 * read into a buffer and no copy into the socket here. Frames queued after
 * it leave after it. The file must hold those bytes until then, and they
 * should be in the page cache (sendfile waits for the disk on the loop
 * thread otherwise). A file that turns out shorter closes the connection.
 * Same returns as shoal_peer_send(), and -ENOTSUP when
 * shoal_peer_can_sendfile() is false.
 */
int shoal_peer_send_chunk_file(struct shoal_peer *p, const struct shoal_msg_chunk *c, int fd,
                               uint64_t off);
/*
 * Takes back the CHUNK answering request |req_id| if no byte of it has
 * gone on to be written: one waiting for the upload budget or for room on
 * the wire (chunks are handed on to be sealed and written while less than
 * about 2 MiB is on its way), or a file payload not started. A frame
 * partly written, or handed to the write queue, is never taken back (the
 * framing, and a sealed session's nonces, depend on it). Returns the
 * payload bytes taken back, 0 when there was none to take.
 */
size_t shoal_peer_withdraw_chunk(struct shoal_peer *p, uint32_t req_id);
/*
 * A buffer of at least |n| bytes that free() accepts, its size in |*cap|
 * (|cap| may be NULL); NULL when out of memory. Chunk-sized requests are
 * served from buffers handed back with shoal_peer_buf_free(), so their
 * pages are not faulted in afresh for every chunk. The bodies of received
 * chunk frames come from here. Any thread.
 */
uint8_t *shoal_peer_buf_alloc(size_t n, size_t *cap);
/* Hands back a malloc'd buffer the caller is done with (NULL is fine):
 * kept for shoal_peer_buf_alloc() while there is room (a few dozen MiB in
 * all), else freed. Meant for bodies taken with shoal_peer_take_body(),
 * which are chunk-sized; other buffers should just be freed. Any thread. */
void shoal_peer_buf_free(uint8_t *b);

/* Asks for an on_drain call once every byte queued so far has been written,
 * and returns the shoal_peer_tx_bytes() count at which that is so. When
 * nothing is queued (or the peer is closing) no call comes: the count is
 * already reached, or never will be. */
uint64_t shoal_peer_notify_written(struct shoal_peer *p);

/* Bytes queued for writing. */
size_t shoal_peer_queued(const struct shoal_peer *p);
/* The least round trip TCP has seen on the connection (tcpinfo.h), in
 * microseconds; 0 when unknown (not connected yet, no sample). */
uint32_t shoal_peer_rtt_us(const struct shoal_peer *p);
/* True after on_ready and before closing. */
bool shoal_peer_ready(const struct shoal_peer *p);
/* Unique id for this connection (never reused in the process). */
uint64_t shoal_peer_id(const struct shoal_peer *p);
/* True when we connected out. */
bool shoal_peer_initiator(const struct shoal_peer *p);
/* True when the remote end is on this host: a loopback address, or the
 * same address as our end of the connection. Known once connected (false
 * before). Senders use it to skip compression that cannot pay off when a
 * byte costs only a memcpy. */
bool shoal_peer_local(const struct shoal_peer *p);
/* "ip:port" of the remote end, or the dialled address. */
const char *shoal_peer_name(const struct shoal_peer *p);
/* The source (netsrc.h) an accepted connection came from; all zero for our
 * own dials and when the address could not be read. */
const uint8_t *shoal_peer_source(const struct shoal_peer *p);
/* The handshake state: node key, zone, listen address (after on_hello). */
const struct shoal_session *shoal_peer_session(const struct shoal_peer *p);
/* Owner's per-peer pointer. */
void shoal_peer_set_data(struct shoal_peer *p, void *data);
void *shoal_peer_data(const struct shoal_peer *p);
/* Bytes of frames received / sent (after framing). */
uint64_t shoal_peer_rx_bytes(const struct shoal_peer *p);
uint64_t shoal_peer_tx_bytes(const struct shoal_peer *p);

/* Parses "host:port" (numeric host; port 0 allowed: "any" when listening)
 * into |ss|. Returns 0 or -EINVAL. */
int shoal_parse_addr(const char *addr, struct sockaddr_storage *ss);

#endif
