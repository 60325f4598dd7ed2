/* SPDX-License-Identifier: MIT */
/*
 * Every message shoal sends, node<->node, node<->tracker and on the loader
 * socket, as one tagged struct, with a strict decoder and an encoder.
 *
 * A frame body (frame.h) is a msgpack array [type, fields...]. Decoding
 * allocates nothing: byte and string fields are (pointer, length) views into
 * the body, so the decoded message is valid only while the body is; 32- and
 * 64-byte keys, ids and signatures are copied into the struct; lists are
 * fixed-capacity arrays in the struct with the maxima below, except the
 * loader's file order (up to 100,000 paths), which is validated in full but
 * kept as a lazy view and walked with shoal_msg_paths_next().
 *
 * Credentials and manifests travel as opaque bin fields: this module checks
 * only their size; their own decoders verify them.
 *
 * Validation (shoal_msg_decode):
 *   - the type must be known;
 *   - each field must have the listed msgpack type (SHOAL_ETYPE), lengths,
 *     counts and values must be within the limits below (SHOAL_ETOOBIG);
 *     keys and signatures must be exactly 32/64 bytes (SHOAL_EBADMSG);
 *   - strings must be UTF-8 without NUL bytes; addresses must read
 *     "host:port" with a port in 1..65535; repo/path/release strings must be
 *     non-empty (SHOAL_EBADMSG);
 *   - per-type rules noted beside each message (SHOAL_EBADMSG);
 *   - forward compatibility: a message array, or a list element array, may
 *     carry up to SHOAL_MSG_EXTRA_MAX fields after the ones listed here (a
 *     newer peer appends fields); they are skipped. Fewer fields than listed
 *     is SHOAL_EPROTO, except that a field added to a message later may be
 *     left out by an older sender (noted beside the message; it decodes as
 *     zero/empty);
 *   - nothing may follow the top-level array (SHOAL_EPROTO).
 */
#ifndef SHOAL_MSG_H
#define SHOAL_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* ---- limits ---- */
#define SHOAL_MSG_KEY_LEN 32u           /* node keys, ids, nonces, hashes */
#define SHOAL_MSG_SIG_LEN 64u           /* Ed25519 signatures */
#define SHOAL_MSG_SESSION_LEN 16u       /* TRK_AUTH process session id */
#define SHOAL_MSG_CRED_MAX 512u
#define SHOAL_MSG_ZONE_MAX 64u
#define SHOAL_MSG_ADDR_MAX 128u         /* "host:port" */
#define SHOAL_MSG_REASON_MAX 512u       /* BYE reason */
#define SHOAL_MSG_NCHUNKS_MAX 16777216u /* chunks in one bitfield */
#define SHOAL_MSG_RAW_MAX (64u << 20)   /* CHUNK raw_len */
#define SHOAL_MSG_PAYLOAD_MAX ((64u << 20) + 1024u)
#define SHOAL_MSG_MANIFEST_MAX (64u << 20)
#define SHOAL_MSG_REPO_MAX 256u         /* "org/name@commit" */
#define SHOAL_MSG_ANNOUNCE_MAX 256u
#define SHOAL_MSG_DESIRED_MAX 64u
#define SHOAL_MSG_PEERS_MAX 256u
#define SHOAL_MSG_ERROR_MAX 512u        /* ERROR and LOADER_ERROR message */
#define SHOAL_MSG_STATS_MAX (1u << 20)
#define SHOAL_MSG_RELEASE_MAX 256u
#define SHOAL_MSG_ORDER_MAX 100000u
#define SHOAL_MSG_PATH_MAX 1024u        /* file path inside a release */
#define SHOAL_MSG_EXTRA_MAX 8u          /* unknown trailing fields skipped */
#define SHOAL_MSG_IMPORT_MAX 255u       /* ANNOUNCE_REPLY role import_mod */
#define SHOAL_MSG_REF_MAX 128u          /* a branch a rollout moves (refs/<ref>) */
#define SHOAL_MSG_ROLLOUTS_MAX 64u      /* ROLLOUT_LIST entries */

enum shoal_msg_type {
    /* node <-> node */
    SHOAL_MSG_HELLO = 1,
    SHOAL_MSG_HELLO_AUTH = 2,
    SHOAL_MSG_HAVE_BITFIELD = 3,
    SHOAL_MSG_HAVE = 4,
    SHOAL_MSG_REQUEST = 5,
    SHOAL_MSG_CHUNK = 6,
    SHOAL_MSG_CANCEL = 7,
    SHOAL_MSG_REJECT = 8,
    SHOAL_MSG_PING = 9,
    SHOAL_MSG_PONG = 10,
    SHOAL_MSG_WANT_MANIFEST = 11,
    SHOAL_MSG_MANIFEST_DATA = 12,
    SHOAL_MSG_BYE = 13,
    /* node <-> tracker */
    SHOAL_MSG_TRK_CHALLENGE = 32,
    SHOAL_MSG_TRK_AUTH = 33,
    SHOAL_MSG_ANNOUNCE = 34,
    SHOAL_MSG_ANNOUNCE_REPLY = 35,
    SHOAL_MSG_GET_PEERS = 36,
    SHOAL_MSG_PEERS = 37,
    SHOAL_MSG_PUT_MANIFEST = 38,
    SHOAL_MSG_GET_MANIFEST = 39,
    SHOAL_MSG_MANIFEST = 40,
    SHOAL_MSG_LEASE_REQ = 41,
    SHOAL_MSG_LEASE = 42,
    SHOAL_MSG_LEASE_DONE = 43,
    SHOAL_MSG_ROLLOUT = 44,
    SHOAL_MSG_ROLLOUT_STATUS_REQ = 45,
    SHOAL_MSG_ROLLOUT_STATUS = 46,
    SHOAL_MSG_OK = 47,
    SHOAL_MSG_ERROR = 48,
    SHOAL_MSG_STATS_REQ = 49,
    SHOAL_MSG_STATS = 50,
    SHOAL_MSG_TRK_PROOF = 51,
    SHOAL_MSG_ROLLOUT_LIST_REQ = 52,
    SHOAL_MSG_ROLLOUT_LIST = 53,
    /* loader socket */
    SHOAL_MSG_LOADER_WANT = 64,
    SHOAL_MSG_LOADER_FILE = 65,
    SHOAL_MSG_LOADER_DONE = 66,
    SHOAL_MSG_LOADER_ERROR = 67,
};
/* One past the highest type number. */
#define SHOAL_MSG_TYPE_END 68u

/* A byte string inside a frame body (or, for encoding, anywhere). */
struct shoal_bytes {
    const uint8_t *p;
    uint32_t len;
};

/* A UTF-8 string inside a frame body: NOT NUL-terminated. */
struct shoal_str {
    const char *p;
    uint32_t len;
};

/* HELLO flags */
#define SHOAL_HELLO_F_ENCRYPT 0x1u /* sender wants the session sealed */

/* CHUNK codecs */
enum shoal_chunk_codec {
    SHOAL_CODEC_RAW = 0,
    SHOAL_CODEC_ZSTD = 1,
    SHOAL_CODEC_ZSTD_BF16 = 2, /* zstd over byte-grouped bf16 */
};

/* REJECT reasons */
enum shoal_reject_reason {
    SHOAL_REJECT_BUSY = 1,
    SHOAL_REJECT_UNKNOWN = 2,
    SHOAL_REJECT_SHUTDOWN = 3,
    SHOAL_REJECT_RATE_LIMITED = 4,
    SHOAL_REJECT_NOT_AUTHORISED = 5,
};

/* TRK_AUTH roles */
enum shoal_role {
    SHOAL_ROLE_NODE = 0,
    SHOAL_ROLE_PUBLISHER = 1,
    SHOAL_ROLE_ADMIN = 2,
};

/* HELLO 1: [version, node_pk, cred, zone, listen_addr, eph_pk, nonce, flags,
 * max_frame]. Unknown flag bits are kept, not refused. */
struct shoal_msg_hello {
    uint32_t version;
    uint8_t node_pk[SHOAL_MSG_KEY_LEN];
    struct shoal_bytes cred;     /* <= SHOAL_MSG_CRED_MAX, opaque */
    struct shoal_str zone;       /* <= SHOAL_MSG_ZONE_MAX */
    struct shoal_str listen_addr;/* <= SHOAL_MSG_ADDR_MAX, host:port */
    uint8_t eph_pk[SHOAL_MSG_KEY_LEN]; /* crypto_kx public key */
    uint8_t nonce[SHOAL_MSG_KEY_LEN];
    uint32_t flags;              /* SHOAL_HELLO_F_* */
    uint32_t max_frame;
};

/* HELLO_AUTH 2: [sig] over the handshake transcript. */
struct shoal_msg_hello_auth {
    uint8_t sig[SHOAL_MSG_SIG_LEN];
};

/* HAVE_BITFIELD 3: [manifest_id, nchunks, bits (, flags)]. bits.len must
 * equal ceil(nchunks / 8) and the unused low bits of the last byte must be
 * zero. Bit i is (bits[i / 8] >> (7 - i % 8)) & 1 (most significant first).
 * flags is optional (0 when left out by an older sender); unknown bits are
 * ignored. */
#define SHOAL_BITFIELD_F_JOIN 0x1u /* the sender (re)opened the release on
                                    * this connection: answer with yours */
struct shoal_msg_have_bitfield {
    uint8_t manifest_id[SHOAL_MSG_KEY_LEN];
    uint32_t nchunks;            /* <= SHOAL_MSG_NCHUNKS_MAX */
    struct shoal_bytes bits;
    uint32_t flags;              /* SHOAL_BITFIELD_F_* */
};

/* HAVE 4: [manifest_id, chunk_index] */
struct shoal_msg_have {
    uint8_t manifest_id[SHOAL_MSG_KEY_LEN];
    uint32_t chunk_index;
};

/* REQUEST 5: [req_id, manifest_id, chunk_index, chunk_id] */
struct shoal_msg_request {
    uint32_t req_id;
    uint8_t manifest_id[SHOAL_MSG_KEY_LEN];
    uint32_t chunk_index;
    uint8_t chunk_id[SHOAL_MSG_KEY_LEN];
};

/* CHUNK 6: [req_id, chunk_id, codec, raw_len, payload]. For SHOAL_CODEC_RAW
 * payload.len must equal raw_len. A decoded payload points into the body. */
struct shoal_msg_chunk {
    uint32_t req_id;
    uint8_t chunk_id[SHOAL_MSG_KEY_LEN];
    uint8_t codec;               /* enum shoal_chunk_codec; any value
                                    decodes, the receiver checks it knows it */
    uint32_t raw_len;            /* <= SHOAL_MSG_RAW_MAX */
    struct shoal_bytes payload;  /* <= SHOAL_MSG_PAYLOAD_MAX */
};

/* CANCEL 7: [req_id];  OK 47: [req]. A cancelled REQUEST still earns
 * exactly one answer: REJECT unknown when the uploader drops it, else its
 * CHUNK (already on its way). */
struct shoal_msg_req_id {
    uint32_t req_id;
};

/* REJECT 8: [req_id, reason, retry_after_ms] */
struct shoal_msg_reject {
    uint32_t req_id;
    uint8_t reason;              /* enum shoal_reject_reason */
    uint32_t retry_after_ms;
};

/* PING 9 and PONG 10: [nonce] */
struct shoal_msg_ping {
    uint64_t nonce;
};

/* WANT_MANIFEST 11: [manifest_id] */
struct shoal_msg_want_manifest {
    uint8_t manifest_id[SHOAL_MSG_KEY_LEN];
};

/* MANIFEST_DATA 12 and MANIFEST 40: [manifest_id, signed_manifest] */
struct shoal_msg_manifest {
    uint8_t manifest_id[SHOAL_MSG_KEY_LEN];
    struct shoal_bytes signed_manifest; /* <= SHOAL_MSG_MANIFEST_MAX, opaque */
};

/* BYE 13: [reason (, manifest_id or nil, chunk_index)]; reason <=
 * SHOAL_MSG_REASON_MAX. The optional pair (has_chunk) names the chunk whose
 * bytes from the receiver failed their hash, so an honest node whose cached
 * file changed on disk learns which chunk to check (node/swarm.c). An older
 * sender leaves both out; chunk_index must be 0 when manifest_id is nil.
 * A node also sends one to each tracker as it shuts down (reason only):
 * the tracker forgets it at once (tracker/server.c). */
struct shoal_msg_bye {
    struct shoal_str text;
    bool has_chunk;
    uint8_t manifest_id[SHOAL_MSG_KEY_LEN]; /* meaningful with has_chunk */
    uint32_t chunk_index;
};

/* ROLLOUT_STATUS_REQ 45: [repo_at_rev] (<= SHOAL_MSG_REPO_MAX, non-empty);
 * STATS 50: [text] (<= SHOAL_MSG_STATS_MAX, Prometheus text);
 * LOADER_ERROR 67: [message] (<= SHOAL_MSG_ERROR_MAX). */
struct shoal_msg_text {
    struct shoal_str text;
};

/* TRK_CHALLENGE 32: [nonce, server_time (, boot or nil)] (unix seconds).
 * boot (SHOAL_MSG_SESSION_LEN bytes, optional) is drawn once per tracker
 * process: a client that sees the same one again knows the tracker still
 * holds what it registered there (manifests), and need not send it again. */
struct shoal_msg_trk_challenge {
    uint8_t nonce[SHOAL_MSG_KEY_LEN];
    uint64_t server_time;
    bool has_boot;
    uint8_t boot[SHOAL_MSG_SESSION_LEN];
};

/* TRK_AUTH 33: [node_pk, cred, sig, zone, listen_addr, role
 *               (, session or nil (, client_nonce or nil (, client_eph or nil
 *               (, publisher_pk or nil))))]
 * session is exactly SHOAL_MSG_SESSION_LEN bytes that a daemon draws once
 * per process, so a tracker can tell a reconnect from a restart. It is
 * optional: a client that predates it leaves it out, one that is no daemon
 * (the CLI) sends nil; both decode with has_session false. client_nonce
 * (32 random bytes, optional the same way) asks the tracker to prove its
 * own key: it answers TRK_PROOF before the OK (tracker/auth.h); with
 * client_eph (an ephemeral X25519 public key) too, what follows the OK is
 * sealed. publisher_pk (optional the same way; meaningful with role
 * publisher) asks whether the tracker would take manifests signed by that
 * key: one that would not refuses the login with ERROR SHOAL_EUNTRUSTED,
 * so `shoal publish` learns it before reading a release from the Hub. A
 * tracker that predates it skips the field and logs in as before. */
struct shoal_msg_trk_auth {
    uint8_t node_pk[SHOAL_MSG_KEY_LEN];
    struct shoal_bytes cred;     /* <= SHOAL_MSG_CRED_MAX, opaque */
    uint8_t sig[SHOAL_MSG_SIG_LEN]; /* over the challenge nonce */
    struct shoal_str zone;       /* <= SHOAL_MSG_ZONE_MAX */
    struct shoal_str listen_addr;/* <= SHOAL_MSG_ADDR_MAX, host:port */
    uint8_t role;                /* enum shoal_role */
    bool has_session;
    uint8_t session[SHOAL_MSG_SESSION_LEN]; /* meaningful with has_session */
    bool has_client_nonce;
    uint8_t client_nonce[SHOAL_MSG_KEY_LEN]; /* meaningful with has_client_nonce */
    bool has_client_eph;
    uint8_t client_eph[SHOAL_MSG_KEY_LEN];   /* meaningful with has_client_eph */
    bool has_publisher;
    uint8_t publisher_pk[SHOAL_MSG_KEY_LEN]; /* meaningful with has_publisher */
};

/* TRK_PROOF 51: [tracker_pk, sig (, tracker_eph or nil)]: the tracker's
 * answer to a TRK_AUTH with a client_nonce, sent before its OK; sig is
 * tracker_pk's signature of shoal_trk_id_sign's message. tracker_eph (its
 * ephemeral X25519 key) answers a client_eph. */
struct shoal_msg_trk_proof {
    uint8_t tracker_pk[SHOAL_MSG_KEY_LEN];
    uint8_t sig[SHOAL_MSG_SIG_LEN];
    bool has_tracker_eph;
    uint8_t tracker_eph[SHOAL_MSG_KEY_LEN];
};

/* ANNOUNCE 34: [[[manifest_id, have_chunks, total_chunks, complete], ...]]
 * have_chunks must not exceed total_chunks. */
struct shoal_msg_announce_entry {
    uint8_t manifest_id[SHOAL_MSG_KEY_LEN];
    uint32_t have_chunks;
    uint32_t total_chunks;
    bool complete;
};
struct shoal_msg_announce {
    uint32_t count;              /* <= SHOAL_MSG_ANNOUNCE_MAX */
    struct shoal_msg_announce_entry entries[SHOAL_MSG_ANNOUNCE_MAX];
};

/* ANNOUNCE_REPLY 35: [interval_ms, [[manifest_id, repo], ...]
 *                     (, [[manifest_id, fetcher, import_mod, import_rem], ...])]
 * interval_ms: announce again within this long. A tracker may change it
 * from one reply to the next (shorter while a role is provisional); any
 * u32 decodes, and a node clamps it to [SHOAL_MSG_INTERVAL_MIN_MS,
 * SHOAL_MSG_INTERVAL_MAX_MS].
 * The role list is optional: a tracker that predates roles leaves it out,
 * and a manifest it does not list has no role (the node fetches as
 * configured). import_mod <= SHOAL_MSG_IMPORT_MAX; import_rem is below a
 * non-zero import_mod and 0 with none. */
struct shoal_msg_desired {
    uint8_t manifest_id[SHOAL_MSG_KEY_LEN];
    struct shoal_str repo;       /* <= SHOAL_MSG_REPO_MAX, "org/name@commit" */
    /* Optional third item (ref or nil): the branch the rollout moves; the
     * node writes refs/<ref> = commit once the release is complete. An
     * older tracker leaves it out, an older node skips it. */
    bool has_ref;
    struct shoal_str ref;        /* <= SHOAL_MSG_REF_MAX, non-empty */
};
struct shoal_msg_role {
    uint8_t manifest_id[SHOAL_MSG_KEY_LEN];
    bool fetcher;                /* lease from the origin at once */
    uint32_t import_mod;         /* > 0: import chunks c % import_mod == import_rem */
    uint32_t import_rem;
};
/* The announce intervals a node accepts from a tracker: no faster than 5
 * a second (a tracker, or a fleet of them, cannot make nodes hammer it),
 * no slower than 10 min. */
#define SHOAL_MSG_INTERVAL_MIN_MS 200u
#define SHOAL_MSG_INTERVAL_MAX_MS 600000u
struct shoal_msg_announce_reply {
    uint32_t interval_ms;
    uint32_t count;              /* <= SHOAL_MSG_DESIRED_MAX */
    struct shoal_msg_desired desired[SHOAL_MSG_DESIRED_MAX];
    uint32_t nroles;             /* <= SHOAL_MSG_ANNOUNCE_MAX; 0 when left out */
    struct shoal_msg_role roles[SHOAL_MSG_ANNOUNCE_MAX];
};

/* GET_PEERS 36: [manifest_id, max] (max <= SHOAL_MSG_PEERS_MAX) */
struct shoal_msg_get_peers {
    uint8_t manifest_id[SHOAL_MSG_KEY_LEN];
    uint32_t max;
};

/* PEERS 37: [manifest_id, [[node_pk, addr, zone, complete, have_chunks], ...]] */
struct shoal_msg_peer {
    uint8_t node_pk[SHOAL_MSG_KEY_LEN];
    struct shoal_str addr;       /* <= SHOAL_MSG_ADDR_MAX, host:port */
    struct shoal_str zone;       /* <= SHOAL_MSG_ZONE_MAX */
    bool complete;
    uint32_t have_chunks;
};
struct shoal_msg_peers {
    uint8_t manifest_id[SHOAL_MSG_KEY_LEN];
    uint32_t count;              /* <= SHOAL_MSG_PEERS_MAX */
    struct shoal_msg_peer peers[SHOAL_MSG_PEERS_MAX];
};

/* PUT_MANIFEST 38: [signed_manifest] (<= SHOAL_MSG_MANIFEST_MAX, opaque) */
struct shoal_msg_put_manifest {
    struct shoal_bytes signed_manifest;
};

/* GET_MANIFEST 39: [by_id or nil, repo_at_rev or nil]; exactly one is given. */
struct shoal_msg_get_manifest {
    bool has_id;
    uint8_t by_id[SHOAL_MSG_KEY_LEN];
    bool has_repo;
    struct shoal_str repo_at_rev; /* <= SHOAL_MSG_REPO_MAX, non-empty */
};

/* LEASE_REQ 41: [manifest_id, max_chunks, hint_chunk, flags?, claim_count?,
 * claim_ms?] */
struct shoal_msg_lease_req {
    uint8_t manifest_id[SHOAL_MSG_KEY_LEN];
    uint32_t max_chunks;
    uint32_t hint_chunk;
    uint32_t flags;       /* SHOAL_LEASE_*; optional (0 from older nodes) */
    uint32_t claim_count; /* SHOAL_LEASE_RECLAIM only; optional */
    uint32_t claim_ms;    /* SHOAL_LEASE_RECLAIM only; optional */
};
/* The node misses hint_chunk and none of its peers offers it. */
#define SHOAL_LEASE_HINT_MISSING 1u
/* The node gives back every lease it holds on the release and asks for
 * none (max_chunks 0): the origin refuses it (HTTP 401/403), so what it
 * holds would otherwise wait for the leases to expire. A tracker that
 * predates the flag grants nothing to max_chunks 0 (or repeats a lease
 * the node then ignores), and the leases expire as before. */
#define SHOAL_LEASE_GIVE_BACK 2u
/* The node re-claims a lease it holds and has not finished, granted by an
 * earlier connection (perhaps an earlier tracker process, which lost it):
 * chunks [hint_chunk, hint_chunk + claim_count) with claim_ms of it left.
 * max_chunks is 0, so a tracker that predates the flag grants nothing
 * (a LEASE of count 0: the node keeps the lease as it is). A tracker that
 * knows it answers a LEASE of that very span (expires_ms at most its
 * --lease-ms) or an ERROR SHOAL_EBUSY when another node leased or fetched
 * a chunk of it since: the node then drops the lease. */
#define SHOAL_LEASE_RECLAIM 4u
/* With SHOAL_LEASE_HINT_MISSING: no peer has delivered the node a chunk
 * for a while and none is asked of one (shoal_sched_starved): it looks cut
 * off from every holder of what it misses, so another node's word that it
 * fetched hint_chunk long ago (--lease-ms) no longer keeps the chunk from
 * being leased to it. Without this flag a node merely waiting for its
 * zone's next import would fetch again what the fleet already has. */
#define SHOAL_LEASE_HINT_STARVED 8u

/* LEASE 42: [manifest_id, first, count, expires_ms, retry_after_ms];
 * count 0 means none granted; expires_ms is relative to receipt. */
struct shoal_msg_lease {
    uint8_t manifest_id[SHOAL_MSG_KEY_LEN];
    uint32_t first;
    uint32_t count;
    uint32_t expires_ms;
    uint32_t retry_after_ms;
};

/* LEASE_DONE 43: [manifest_id, first, count] */
struct shoal_msg_lease_done {
    uint8_t manifest_id[SHOAL_MSG_KEY_LEN];
    uint32_t first;
    uint32_t count;
};

/* ROLLOUT 44: [repo_at_rev, zone or nil, remove (, ref or nil)]. ref
 * (optional, newer senders) names a branch the rollout moves: nodes write
 * refs/<ref> once they hold the release. A tracker that predates it skips
 * it and records the rollout without a ref. */
struct shoal_msg_rollout {
    struct shoal_str repo_at_rev; /* <= SHOAL_MSG_REPO_MAX, non-empty */
    bool has_zone;
    struct shoal_str zone;        /* <= SHOAL_MSG_ZONE_MAX when has_zone */
    bool remove;
    bool has_ref;
    struct shoal_str ref;         /* <= SHOAL_MSG_REF_MAX, non-empty */
};

/* ROLLOUT_STATUS 46: [repo_at_rev, manifest_id or nil, complete, partial, none
 *                     (, gone_lost, gone_left, gone_refused)]
 * The gone counts (optional: an older tracker leaves them out, 0) are nodes
 * in the rollout's zones the tracker knew and no longer hears from: lost
 * (no announce within its TTL), left (shut down, BYE) or refused at their
 * last login (credential expired, key revoked); tracker/registry.h says
 * for how long they are remembered. They are in none of the three counts
 * before them. */
struct shoal_msg_rollout_status {
    struct shoal_str repo_at_rev; /* <= SHOAL_MSG_REPO_MAX, non-empty */
    bool has_manifest_id;
    uint8_t manifest_id[SHOAL_MSG_KEY_LEN];
    uint32_t complete;
    uint32_t partial;
    uint32_t none;
    uint32_t gone_lost;
    uint32_t gone_left;
    uint32_t gone_refused;
};

/* ROLLOUT_LIST_REQ 52: [] (no fields): every rollout the tracker holds.
 * ROLLOUT_LIST 53: [[entry, ...]], each entry
 *   [repo_at_rev, zone or nil, ref or nil, manifest_id or nil, complete,
 *    partial, none, gone_lost, gone_left, gone_refused]
 * in the order the rollouts were set; the counts are ROLLOUT_STATUS's for
 * that entry's release (its manifest_id nil when none is registered). */
struct shoal_msg_rollout_entry {
    struct shoal_str repo_at_rev; /* <= SHOAL_MSG_REPO_MAX, non-empty */
    bool has_zone;
    struct shoal_str zone;        /* <= SHOAL_MSG_ZONE_MAX */
    bool has_ref;
    struct shoal_str ref;         /* <= SHOAL_MSG_REF_MAX */
    bool has_manifest_id;
    uint8_t manifest_id[SHOAL_MSG_KEY_LEN];
    uint32_t complete;
    uint32_t partial;
    uint32_t none;
    uint32_t gone_lost;
    uint32_t gone_left;
    uint32_t gone_refused;
};
struct shoal_msg_rollout_list {
    uint32_t count;               /* <= SHOAL_MSG_ROLLOUTS_MAX */
    struct shoal_msg_rollout_entry e[SHOAL_MSG_ROLLOUTS_MAX];
};

/* ERROR 48: [code, message] (message <= SHOAL_MSG_ERROR_MAX) */
struct shoal_msg_error {
    int32_t code;
    struct shoal_str message;
};

/*
 * The lazy path list of LOADER_WANT. Decoding validates every path (count <=
 * SHOAL_MSG_ORDER_MAX, each a non-empty UTF-8 str <= SHOAL_MSG_PATH_MAX) and
 * records where the items lie in the body; shoal_msg_paths_next() walks them.
 * To encode, set |count| and point |v| at |count| strings; with |v| NULL the
 * encoder copies the items recorded by a decode (re-sending a message).
 */
struct shoal_msg_paths {
    uint32_t count;
    const struct shoal_str *v;   /* encode only; NULL after decode */
    const uint8_t *mp;           /* decode: the msgpack items, in the body */
    size_t mp_len;
};

/* LOADER_WANT 64: [release, [path, ...]]. release is repo@rev or a hex
 * manifest id (<= SHOAL_MSG_RELEASE_MAX, non-empty). */
struct shoal_msg_loader_want {
    struct shoal_str release;
    struct shoal_msg_paths order; /* lazy */
};

/* LOADER_FILE 65: [path, size, sha256, index, total]; index < total. The
 * file descriptor travels beside the frame (SCM_RIGHTS). */
struct shoal_msg_loader_file {
    struct shoal_str path;       /* <= SHOAL_MSG_PATH_MAX, non-empty */
    uint64_t size;
    uint8_t sha256[SHOAL_MSG_KEY_LEN];
    uint32_t index;
    uint32_t total;
};

/* LOADER_DONE 66: [files] */
struct shoal_msg_loader_done {
    uint32_t files;
};

/* STATS_REQ 49 and ROLLOUT_LIST_REQ 52: [] have no fields. */

struct shoal_msg {
    uint32_t type; /* enum shoal_msg_type */
    union {
        struct shoal_msg_hello hello;
        struct shoal_msg_hello_auth hello_auth;
        struct shoal_msg_have_bitfield have_bitfield;
        struct shoal_msg_have have;
        struct shoal_msg_request request;
        struct shoal_msg_chunk chunk;
        struct shoal_msg_req_id cancel;
        struct shoal_msg_reject reject;
        struct shoal_msg_ping ping;          /* PING and PONG */
        struct shoal_msg_want_manifest want_manifest;
        struct shoal_msg_manifest manifest;  /* MANIFEST_DATA and MANIFEST */
        struct shoal_msg_bye bye;
        struct shoal_msg_trk_challenge trk_challenge;
        struct shoal_msg_trk_auth trk_auth;
        struct shoal_msg_trk_proof trk_proof;
        struct shoal_msg_announce announce;
        struct shoal_msg_announce_reply announce_reply;
        struct shoal_msg_get_peers get_peers;
        struct shoal_msg_peers peers;
        struct shoal_msg_put_manifest put_manifest;
        struct shoal_msg_get_manifest get_manifest;
        struct shoal_msg_lease_req lease_req;
        struct shoal_msg_lease lease;
        struct shoal_msg_lease_done lease_done;
        struct shoal_msg_rollout rollout;
        struct shoal_msg_text rollout_status_req;
        struct shoal_msg_rollout_status rollout_status;
        struct shoal_msg_rollout_list rollout_list;
        struct shoal_msg_req_id ok;
        struct shoal_msg_error error;
        struct shoal_msg_text stats;
        struct shoal_msg_loader_want loader_want;
        struct shoal_msg_loader_file loader_file;
        struct shoal_msg_loader_done loader_done;
        struct shoal_msg_text loader_error;
    } u;
};

/*
 * Decodes the frame body |body|/|len| into |m| without allocating. On
 * success the byte/string views in |m| point into |body|, which must outlive
 * them. On error |m|'s contents are unspecified. Returns 0 or
 *   SHOAL_EPROTO  unknown type, fewer fields than listed, or bytes after the
 *                 array;
 *   SHOAL_ETYPE   a field of the wrong msgpack type;
 *   SHOAL_ETRUNC  the body ends inside an item;
 *   SHOAL_ETOOBIG a length, count or value above its limit (also more than
 *                 SHOAL_MSG_EXTRA_MAX unknown trailing fields);
 *   SHOAL_EBADMSG a rule beyond the types fails (key size, UTF-8, address,
 *                 per-message rules listed above).
 */
int shoal_msg_decode(struct shoal_msg *m, const uint8_t *body, size_t len);

/*
 * Appends one frame (4-byte header + body) for |m| to |out|. The message is
 * checked against the same rules as decoding, so shoal never sends what it
 * would refuse. Borrowed views in |m| are only read. Returns 0,
 * SHOAL_EPROTO for an unknown type, SHOAL_ETOOBIG / SHOAL_EBADMSG for a field
 * that breaks a rule, SHOAL_ELIMIT when |out| would pass its cap, or -ENOMEM;
 * on error |out| is left as it was.
 */
int shoal_msg_encode(const struct shoal_msg *m, struct shoal_buf *out);

/*
 * Appends the frame header and the encoding of CHUNK |c| up to and including
 * the payload's bin header, but not the |c->payload.len| payload bytes
 * (|c->payload.p| is ignored): the caller sends [what this wrote][payload] as
 * two buffers, and the frame length already counts the payload. Same checks
 * and return codes as shoal_msg_encode().
 */
int shoal_msg_encode_chunk_header(const struct shoal_msg_chunk *c, struct shoal_buf *out);

/* Starts a walk over a decoded or encoder-prepared path list: |*it| is a
 * copy that shoal_msg_paths_next() consumes. */
void shoal_msg_paths_begin(struct shoal_msg_paths *it, const struct shoal_msg_paths *paths);
/* Sets |*path| to the next path and returns true, or returns false at the
 * end. Paths from a decode were validated and point into the body. */
bool shoal_msg_paths_next(struct shoal_msg_paths *it, struct shoal_str *path);

/* "HELLO", "CHUNK", ...; "UNKNOWN" for a type this build does not know.
 * Never NULL; static storage. */
const char *shoal_msg_type_name(uint32_t type);

#endif
