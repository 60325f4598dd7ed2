/* SPDX-License-Identifier: MIT */
/*
 * The daemon's control socket: how the `shoal` CLI on the same machine asks
 * shoald to pull a release and reads its status, peers and metrics.
 *
 * A local Unix stream socket (mode 0660, so the daemon's group may use it)
 * carries the framing of frame.h with message types of its own, 80..95,
 * encoded as msgpack arrays [type, fields...] like msg.h. Requests and
 * replies:
 *   CTL_PULL [release, follow]      -> CTL_PROGRESS ... until the release is
 *                                      complete (state COMPLETE), or one
 *                                      CTL_ERROR; with follow false, one
 *                                      CTL_PROGRESS only
 *   CTL_STATUS_REQ []               -> CTL_STATUS [[release fields]...,
 *                                      [warning]...]: the warnings (later,
 *                                      optional, sent only when there are
 *                                      some) are the node's own, not any
 *                                      release's: its credential ends, no
 *                                      tracker is connected
 *   CTL_PEERS_REQ []                -> CTL_PEERS [[peer fields]...]
 *   CTL_METRICS_REQ []              -> CTL_METRICS [text] (Prometheus)
 *   CTL_DROP [release]              -> CTL_DROPPED [name, repo_dir, note]:
 *                                      the release is no longer fetched nor
 *                                      served, nor reopened at start; its
 *                                      files stay in the cache at repo_dir
 *                                      ("" when nothing is on disk). |note|
 *                                      (optional, later) says why it may
 *                                      come back anyway: a tracker rollout
 *                                      names it
 * A request the daemon cannot serve gets CTL_ERROR [code, message].
 *
 * The decoder is as strict as msg.h's: known type, every field of its type
 * and within its limit, strings without NUL or control characters, ids of
 * exactly 32 bytes, at most SHOAL_MSG_EXTRA_MAX unknown trailing fields,
 * nothing after the array. Decoded strings are copied into the struct, so a
 * decoded message outlives the frame body (except the metrics text, a view).
 *
 * The server half runs on the daemon's libuv loop and learns what it reports
 * through struct shoal_ctl_ops, filled by the daemon; it keeps the rate
 * samples itself (bytes per second over the last ticks), so the daemon only
 * exposes counters.
 */
#ifndef SHOAL_CTL_H
#define SHOAL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"

/* ---- messages ---- */

enum shoal_ctl_type {
    SHOAL_CTL_PULL = 80,
    SHOAL_CTL_PROGRESS = 81,
    SHOAL_CTL_ERROR = 82,
    SHOAL_CTL_STATUS_REQ = 83,
    SHOAL_CTL_STATUS = 84,
    SHOAL_CTL_PEERS_REQ = 85,
    SHOAL_CTL_PEERS = 86,
    SHOAL_CTL_METRICS_REQ = 87,
    SHOAL_CTL_METRICS = 88,
    SHOAL_CTL_DROP = 89,
    SHOAL_CTL_DROPPED = 90,
};

#define SHOAL_CTL_RELEASE_MAX 256u     /* "org/name@rev" or a 64-hex id */
#define SHOAL_CTL_ERROR_MAX 512u
#define SHOAL_CTL_REASON_MAX 384u      /* why a release failed (status) */
#define SHOAL_CTL_BRANCH_MAX 255u      /* the branch a release was pulled by */
#define SHOAL_CTL_WARNINGS_MAX 8u      /* node-level lines in a STATUS */
#define SHOAL_CTL_RELEASES_MAX 64u
#define SHOAL_CTL_PEERS_MAX 256u
#define SHOAL_CTL_ZONE_MAX 64u
#define SHOAL_CTL_ADDR_MAX 128u
#define SHOAL_CTL_CIPHER_MAX 32u
#define SHOAL_CTL_METRICS_MAX (1u << 20)
#define SHOAL_CTL_PATH_MAX 4096u       /* a directory in a DROPPED reply */
/* Largest frame body either side accepts: a full CTL_PEERS or metrics. */
#define SHOAL_CTL_FRAME_MAX (SHOAL_CTL_METRICS_MAX + 4096u)
/* Largest request body the daemon accepts. */
#define SHOAL_CTL_REQUEST_MAX 4096u

enum shoal_ctl_state {
    SHOAL_CTL_WAITING = 0,     /* manifest not here yet */
    SHOAL_CTL_PULLING = 1,
    SHOAL_CTL_COMPLETE = 2,
    SHOAL_CTL_FAILED = 3,      /* could not be opened; |error| says why */
};

/* One release: PROGRESS, and each element of STATUS.
 * Wire: [id or nil, name, state, have_bytes, total_bytes, have_chunks,
 *        nchunks, rate_bps, peers, peer_bytes, origin_bytes, eta_ms, elapsed_ms,
 *        error, branch, flags]; have_bytes <= total_bytes, have_chunks <= nchunks, state
 * known. |error| (empty unless FAILED, PULLING with the origin failing,
 * or WAITING for a reason the daemon knows), |branch| and |flags|
 * (SHOAL_CTL_REL_*) came later and may be absent: a reader takes a missing
 * one as empty or 0. */
#define SHOAL_CTL_REL_ROLLOUT 0x1u /* a tracker rollout names it: kept open */
struct shoal_ctl_release {
    bool has_id;
    uint8_t id[32];
    char name[SHOAL_CTL_RELEASE_MAX + 1]; /* "[datasets/]org/name@commit", or what
                                              was asked */
    uint8_t state;                        /* enum shoal_ctl_state */
    uint64_t have_bytes, total_bytes;
    uint32_t have_chunks, nchunks;
    uint64_t rate_bps;                    /* recent arrival rate */
    uint32_t peers;                       /* peers exchanging this release */
    uint64_t peer_bytes, origin_bytes;    /* received this run, by source */
    uint64_t eta_ms;                      /* 0: unknown or done */
    uint64_t elapsed_ms;                  /* since the release opened on the
                                             daemon; 0: unknown (not open, or
                                             an older daemon) */
    /* Why it FAILED; for one PULLING, what is wrong with the origin if
     * anything; else empty. */
    char error[SHOAL_CTL_REASON_MAX + 1];
    /* The branch or tag it was pulled by ("" if none, or an older
     * daemon): refs/<branch> names it once complete. */
    char branch[SHOAL_CTL_BRANCH_MAX + 1];
    uint32_t flags;                       /* SHOAL_CTL_REL_* */
};

/* One connected peer. Wire: [node_pk, addr, zone, cipher, initiator,
 * rx_bytes, tx_bytes, rx_bps, tx_bps, conn_id, rtt_us]. |rtt_us| came
 * later and may be absent: a reader takes a missing one as 0 (unknown). */
struct shoal_ctl_peer {
    uint8_t node_pk[32];
    char addr[SHOAL_CTL_ADDR_MAX + 1];    /* its listen address */
    char zone[SHOAL_CTL_ZONE_MAX + 1];
    char cipher[SHOAL_CTL_CIPHER_MAX + 1];
    bool initiator;                       /* we dialled it */
    uint64_t rx_bytes, tx_bytes;          /* frame bytes since connected */
    uint64_t rx_bps, tx_bps;
    uint64_t conn_id;                     /* unique per connection */
    uint32_t rtt_us;                      /* TCP's least round trip to it
                                             (tcpinfo.h), µs; 0: unknown */
};

struct shoal_ctl_msg {
    uint32_t type; /* enum shoal_ctl_type */
    union {
        struct {
            char release[SHOAL_CTL_RELEASE_MAX + 1]; /* non-empty */
            bool follow;
        } pull;
        struct shoal_ctl_release progress;
        struct {
            int32_t code;                            /* a shoal error code */
            char message[SHOAL_CTL_ERROR_MAX + 1];
        } error;
        struct {
            uint32_t count;
            struct shoal_ctl_release v[SHOAL_CTL_RELEASES_MAX];
            /* What is wrong with the node itself (credential, trackers);
             * optional on the wire, absent from an older daemon. */
            uint32_t nwarnings;
            char warnings[SHOAL_CTL_WARNINGS_MAX][SHOAL_CTL_REASON_MAX + 1];
        } status;
        struct {
            uint32_t count;
            struct shoal_ctl_peer v[SHOAL_CTL_PEERS_MAX];
        } peers;
        struct {
            char release[SHOAL_CTL_RELEASE_MAX + 1]; /* non-empty */
        } drop;
        struct {
            char name[SHOAL_CTL_RELEASE_MAX + 1];    /* "org/name@commit"; non-empty */
            char repo_dir[SHOAL_CTL_PATH_MAX + 1];   /* where its files stay; may be "" */
            /* Why it comes back after all (a tracker rollout names it),
             * and what to do; "" when nothing brings it back. Optional on
             * the wire: an older daemon sends none. */
            char note[SHOAL_CTL_REASON_MAX + 1];
        } dropped;
        struct {
            const char *text; /* view into the body; NOT NUL-terminated */
            uint32_t len;     /* <= SHOAL_CTL_METRICS_MAX */
        } metrics;
    } u;
};

/*
 * Decodes frame body |body|/|len| into |m| (large: allocate it). Returns 0,
 * or SHOAL_EPROTO (unknown type, too few fields, trailing bytes), SHOAL_ETYPE,
 * SHOAL_ETRUNC, SHOAL_ETOOBIG, SHOAL_EBADMSG (bad id size, a string with NUL
 * or control characters, counters that contradict each other).
 */
int shoal_ctl_decode(struct shoal_ctl_msg *m, const uint8_t *body, size_t len);

/*
 * Appends one frame (header and body) for |m| to |out|. Validates like the
 * decoder. Returns 0, SHOAL_EPROTO, SHOAL_ETOOBIG, SHOAL_EBADMSG,
 * SHOAL_ELIMIT or -ENOMEM; |out| is unchanged on error.
 */
int shoal_ctl_encode(const struct shoal_ctl_msg *m, struct shoal_buf *out);

/* ---- metrics ---- */

struct shoal_ctl_metrics {
    uint64_t bytes_from_peers;   /* verified chunk bytes */
    uint64_t bytes_from_origin;
    uint64_t bytes_served;       /* chunk bytes sent to peers */
    uint64_t bytes_served_payload; /* the same after compression (codec.h) */
    uint64_t chunks_verified;
    uint64_t chunks_failed;      /* failed their hash */
    uint64_t busy_slots;         /* requests told busy: every upload slot taken */
    uint32_t peers;              /* authenticated connections */
    uint64_t bans_total;
    uint32_t bans_active;
    uint64_t hello_refused;      /* HELLOs refused unchecked (--hello-rate) */
    uint64_t handshake_evictions; /* handshakes closed for a newcomer (--max-unauth) */
    uint32_t releases, releases_complete;
    uint64_t wire_rx_bytes, wire_tx_bytes; /* frames, all peers, this run */
    /* The node's credential: its end (unix time; 0: no credential, and
     * neither credential gauge is written) and the time now. */
    uint64_t cred_expires_unix, now_unix;
    uint32_t trackers, trackers_connected; /* configured / authenticated */
};

/*
 * Appends Prometheus text exposition of |m| and of the releases |v|/|n|
 * (per-release gauges labelled with the release name) to |out|. Returns 0,
 * SHOAL_ELIMIT or -ENOMEM.
 */
int shoal_ctl_metrics_text(const struct shoal_ctl_metrics *m, const struct shoal_ctl_release *v,
                           uint32_t n, struct shoal_buf *out);

/* ---- server ---- */

/* What the daemon exposes to the control socket. Called on the loop. */
struct shoal_ctl_ops {
    /* Starts pulling |release| (NUL-terminated, "org/name@rev",
     * "datasets/org/name@rev" for a dataset, or a 64-hex manifest id), or
     * finds it already here or under way. Returns 0, or an
     * error with a reason for people in |why|. */
    int (*pull)(void *user, const char *release, char *why, size_t whylen);
    /* Fills |r| for |release| (as given to pull; rate_bps and eta_ms are
     * left for ctl). Returns 0, SHOAL_ENOTFOUND (not here, not under way),
     * or another error that ends a following pull (reason in |why|). */
    int (*release)(void *user, const char *release, struct shoal_ctl_release *r, char *why,
                   size_t whylen);
    /* Fills up to |max| releases (open and waiting ones); returns how many. */
    uint32_t (*releases)(void *user, struct shoal_ctl_release *v, uint32_t max);
    /* Fills up to |max| node-level warnings for status (each at most
     * SHOAL_CTL_REASON_MAX bytes, NUL-terminated); returns how many. May
     * be NULL: none. */
    uint32_t (*warnings)(void *user, char (*v)[SHOAL_CTL_REASON_MAX + 1], uint32_t max);
    /* Fills up to |max| authenticated peers (rates left for ctl). */
    uint32_t (*peers)(void *user, struct shoal_ctl_peer *v, uint32_t max);
    void (*metrics)(void *user, struct shoal_ctl_metrics *m);
    /* Stops fetching and serving |release| (as for pull) and forgets it
     * (`shoal drop`): fills |name| (|namelen| bytes) with its name
     * ("[datasets/]org/name@commit")
     * (or what was asked, for a pull still waiting for its manifest) and
     * |dir| (|dirlen| bytes) with the repo folder its files stay in ("" if
     * none), and |note| (|notelen| bytes) with why it comes back anyway
     * ("" if nothing brings it back). Returns 0, SHOAL_ENOTFOUND (neither
     * open nor being pulled) or another error; the reason for people in
     * |why|. */
    int (*drop)(void *user, const char *release, char *name, size_t namelen, char *dir,
                size_t dirlen, char *note, size_t notelen, char *why, size_t whylen);
    void *user;
};

struct shoal_ctl;

/*
 * Writes the default socket path into |buf|: $XDG_RUNTIME_DIR/shoald.sock,
 * /run/shoald/shoald.sock for root, else /tmp/shoald-<uid>/shoald.sock
 * (that directory is made private by shoal_ctl_new()).
 * Returns 0 or SHOAL_ELIMIT when it does not fit.
 */
int shoal_ctl_default_path(char *buf, size_t cap);

/*
 * Makes sure |dir| is a directory only the effective uid can use: creates
 * it mode 0700, or accepts an existing one only if it is a real directory
 * (not a symlink) owned by the effective uid with no group/other access.
 * Returns 0, -EPERM (exists but is not private and ours) or a negated
 * errno.
 */
int shoal_ctl_private_dir(const char *dir);

/*
 * Listens on |path| (NULL: the default) on |loop|. A socket file left by a
 * dead daemon is replaced; one a live daemon answers on is not
 * (SHOAL_EBUSY). The parent directory is created (0750) when missing; for
 * the default path under /tmp it must be private (shoal_ctl_private_dir(),
 * -EPERM otherwise).
 * |ops| is borrowed and must outlive the server. Returns 0, SHOAL_EBUSY,
 * SHOAL_ELIMIT (path too long for a socket) or a negated errno / libuv code.
 */
int shoal_ctl_new(struct shoal_ctl **out, uv_loop_t *loop, const char *path,
                  const struct shoal_ctl_ops *ops);
/* The path listened on. */
const char *shoal_ctl_path(const struct shoal_ctl *c);
/* A client that neither follows a pull nor sent a request for this long
 * gets CTL_ERROR "no request for N s" and is closed, so idle connections
 * cannot keep the socket's few slots (a client past them gets CTL_ERROR
 * "too many clients (N)" and is closed). */
#define SHOAL_CTL_IDLE_MS 5000u
/* Sets that idle time (0: SHOAL_CTL_IDLE_MS); for tests. */
void shoal_ctl_set_idle_ms(struct shoal_ctl *c, uint32_t ms);
/* Stops: closes the listener, every client and the timer (handles close on
 * the loop) and removes the socket file if it is still ours. Idempotent. */
void shoal_ctl_close(struct shoal_ctl *c);
/* Frees the server; after shoal_ctl_close() and once the loop has run the
 * close callbacks. NULL is fine. */
void shoal_ctl_free(struct shoal_ctl *c);

#endif
