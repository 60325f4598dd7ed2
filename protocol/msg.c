/* SPDX-License-Identifier: MIT */
/*
 * Message codecs; see msg.h. Each message is described once, as a table of
 * field descriptors (kind, offset in its struct, limits), and one decoder and
 * one encoder walk those tables. So the two directions cannot drift apart,
 * the same limits apply to what shoal sends and what it accepts, and a new
 * message is a few table lines plus, if it needs one, a rule function.
 */
#include "msg.h"
#include "error.h"
#include "frame.h"
#include "mp.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* How deep an unknown trailing field may nest before we stop skipping it. */
#define SKIP_DEPTH 8u

enum kind {
    K_U8,          /* uint8_t in [lo, hi] */
    K_U32,         /* uint32_t in [lo, hi] */
    K_U64,         /* uint64_t */
    K_I32,         /* int32_t */
    K_BOOL,        /* bool */
    K_FIX,         /* uint8_t[hi], a bin of exactly hi bytes */
    K_FIX_OR_NIL,  /* as K_FIX, or nil; presence in the bool at has_off */
    K_BIN,         /* struct shoal_bytes, len <= hi */
    K_STR,         /* struct shoal_str, len <= hi, rules in flags */
    K_STR_OR_NIL,  /* as K_STR, or nil; presence in the bool at has_off */
    K_LIST,        /* uint32_t count at off, elements per |list| */
    K_PATHS,       /* struct shoal_msg_paths (lazy) */
};

/* String rules beyond UTF-8 without NUL. */
#define S_NONEMPTY 0x1u
#define S_ADDR 0x2u /* "host:port", implies non-empty */
/* Any kind: a field added after the first release of its message, which
 * an older sender leaves out. Only trailing fields may be optional. */
#define F_OPT 0x80u

struct list_desc;

struct field {
    uint8_t kind;
    uint8_t flags;
    uint16_t off;
    uint16_t has_off;
    uint64_t lo;
    uint64_t hi;
    const struct list_desc *list;
};

struct list_desc {
    const struct field *f;
    uint16_t nf;
    uint16_t items_off;  /* where the element array starts in the struct */
    uint16_t elem_size;
};

struct msg_desc {
    const char *name;
    const struct field *f;
    uint16_t nf;
    uint16_t size;  /* of the union member, cleared before decoding */
    /* Rules across fields; SHOAL_EBADMSG when broken. */
    int (*rule)(const void *s);
};

#define U8(st, fld, l, h) { .kind = K_U8, .off = offsetof(st, fld), .lo = (l), .hi = (h) }
#define U32(st, fld) { .kind = K_U32, .off = offsetof(st, fld), .hi = UINT32_MAX }
#define U32_MAX(st, fld, h) { .kind = K_U32, .off = offsetof(st, fld), .hi = (h) }
/* A number added after the first release of its message (0 when absent). */
#define U32_OPT(st, fld) { .kind = K_U32, .flags = F_OPT, .off = offsetof(st, fld), .hi = UINT32_MAX }
#define U64(st, fld) { .kind = K_U64, .off = offsetof(st, fld), .hi = UINT64_MAX }
#define I32(st, fld) { .kind = K_I32, .off = offsetof(st, fld) }
#define BOOL(st, fld) { .kind = K_BOOL, .off = offsetof(st, fld) }
#define KEY(st, fld) { .kind = K_FIX, .off = offsetof(st, fld), .hi = SHOAL_MSG_KEY_LEN }
#define SIG(st, fld) { .kind = K_FIX, .off = offsetof(st, fld), .hi = SHOAL_MSG_SIG_LEN }
#define KEY_OR_NIL(st, fld, has) \
    { .kind = K_FIX_OR_NIL, .off = offsetof(st, fld), .has_off = offsetof(st, has), \
      .hi = SHOAL_MSG_KEY_LEN }
/* A fixed-size bin or nil, added after the first release of its message. */
#define FIX_OR_NIL_OPT(st, fld, has, n) \
    { .kind = K_FIX_OR_NIL, .flags = F_OPT, .off = offsetof(st, fld), \
      .has_off = offsetof(st, has), .hi = (n) }
#define BIN(st, fld, h) { .kind = K_BIN, .off = offsetof(st, fld), .hi = (h) }
#define STR(st, fld, h, fl) { .kind = K_STR, .flags = (fl), .off = offsetof(st, fld), .hi = (h) }
#define STR_OR_NIL(st, fld, has, h, fl) \
    { .kind = K_STR_OR_NIL, .flags = (fl), .off = offsetof(st, fld), \
      .has_off = offsetof(st, has), .hi = (h) }
/* A string or nil, added after the first release of its message. */
#define STR_OR_NIL_OPT(st, fld, has, h, fl) \
    { .kind = K_STR_OR_NIL, .flags = (uint8_t)(F_OPT | (fl)), .off = offsetof(st, fld), \
      .has_off = offsetof(st, has), .hi = (h) }
#define LIST(st, cnt, h, ld) { .kind = K_LIST, .off = offsetof(st, cnt), .hi = (h), .list = (ld) }
#define LIST_OPT(st, cnt, h, ld) \
    { .kind = K_LIST, .flags = F_OPT, .off = offsetof(st, cnt), .hi = (h), .list = (ld) }
#define PATHS(st, fld) { .kind = K_PATHS, .off = offsetof(st, fld), .hi = SHOAL_MSG_ORDER_MAX }

/* ---- the message set ---- */

static const struct field hello_f[] = {
    U32(struct shoal_msg_hello, version),
    KEY(struct shoal_msg_hello, node_pk),
    BIN(struct shoal_msg_hello, cred, SHOAL_MSG_CRED_MAX),
    STR(struct shoal_msg_hello, zone, SHOAL_MSG_ZONE_MAX, 0),
    STR(struct shoal_msg_hello, listen_addr, SHOAL_MSG_ADDR_MAX, S_ADDR),
    KEY(struct shoal_msg_hello, eph_pk),
    KEY(struct shoal_msg_hello, nonce),
    U32(struct shoal_msg_hello, flags),
    U32(struct shoal_msg_hello, max_frame),
};
static const struct field hello_auth_f[] = {
    SIG(struct shoal_msg_hello_auth, sig),
};
static const struct field have_bitfield_f[] = {
    KEY(struct shoal_msg_have_bitfield, manifest_id),
    U32_MAX(struct shoal_msg_have_bitfield, nchunks, SHOAL_MSG_NCHUNKS_MAX),
    BIN(struct shoal_msg_have_bitfield, bits, (SHOAL_MSG_NCHUNKS_MAX + 7) / 8),
    U32_OPT(struct shoal_msg_have_bitfield, flags),
};
static const struct field have_f[] = {
    KEY(struct shoal_msg_have, manifest_id),
    U32(struct shoal_msg_have, chunk_index),
};
static const struct field request_f[] = {
    U32(struct shoal_msg_request, req_id),
    KEY(struct shoal_msg_request, manifest_id),
    U32(struct shoal_msg_request, chunk_index),
    KEY(struct shoal_msg_request, chunk_id),
};
static const struct field chunk_f[] = {
    U32(struct shoal_msg_chunk, req_id),
    KEY(struct shoal_msg_chunk, chunk_id),
    /* Any codec decodes: one this build does not know comes from a newer
     * sender, and the receiver refuses it saying so (not "malformed"). */
    U8(struct shoal_msg_chunk, codec, SHOAL_CODEC_RAW, UINT8_MAX),
    U32_MAX(struct shoal_msg_chunk, raw_len, SHOAL_MSG_RAW_MAX),
    /* Last on purpose: the header-only encoder stops at its bin header. */
    BIN(struct shoal_msg_chunk, payload, SHOAL_MSG_PAYLOAD_MAX),
};
static const struct field req_id_f[] = {
    U32(struct shoal_msg_req_id, req_id),
};
static const struct field reject_f[] = {
    U32(struct shoal_msg_reject, req_id),
    U8(struct shoal_msg_reject, reason, SHOAL_REJECT_BUSY, SHOAL_REJECT_NOT_AUTHORISED),
    U32(struct shoal_msg_reject, retry_after_ms),
};
static const struct field ping_f[] = {
    U64(struct shoal_msg_ping, nonce),
};
static const struct field want_manifest_f[] = {
    KEY(struct shoal_msg_want_manifest, manifest_id),
};
static const struct field manifest_f[] = {
    KEY(struct shoal_msg_manifest, manifest_id),
    BIN(struct shoal_msg_manifest, signed_manifest, SHOAL_MSG_MANIFEST_MAX),
};
static const struct field bye_f[] = {
    STR(struct shoal_msg_bye, text, SHOAL_MSG_REASON_MAX, 0),
    FIX_OR_NIL_OPT(struct shoal_msg_bye, manifest_id, has_chunk, SHOAL_MSG_KEY_LEN),
    U32_OPT(struct shoal_msg_bye, chunk_index),
};
static const struct field trk_challenge_f[] = {
    KEY(struct shoal_msg_trk_challenge, nonce),
    U64(struct shoal_msg_trk_challenge, server_time),
    FIX_OR_NIL_OPT(struct shoal_msg_trk_challenge, boot, has_boot, SHOAL_MSG_SESSION_LEN),
};
static const struct field trk_auth_f[] = {
    KEY(struct shoal_msg_trk_auth, node_pk),
    BIN(struct shoal_msg_trk_auth, cred, SHOAL_MSG_CRED_MAX),
    SIG(struct shoal_msg_trk_auth, sig),
    STR(struct shoal_msg_trk_auth, zone, SHOAL_MSG_ZONE_MAX, 0),
    STR(struct shoal_msg_trk_auth, listen_addr, SHOAL_MSG_ADDR_MAX, S_ADDR),
    U8(struct shoal_msg_trk_auth, role, SHOAL_ROLE_NODE, SHOAL_ROLE_ADMIN),
    FIX_OR_NIL_OPT(struct shoal_msg_trk_auth, session, has_session, SHOAL_MSG_SESSION_LEN),
    FIX_OR_NIL_OPT(struct shoal_msg_trk_auth, client_nonce, has_client_nonce, SHOAL_MSG_KEY_LEN),
    FIX_OR_NIL_OPT(struct shoal_msg_trk_auth, client_eph, has_client_eph, SHOAL_MSG_KEY_LEN),
    FIX_OR_NIL_OPT(struct shoal_msg_trk_auth, publisher_pk, has_publisher, SHOAL_MSG_KEY_LEN),
};
static const struct field trk_proof_f[] = {
    KEY(struct shoal_msg_trk_proof, tracker_pk),
    SIG(struct shoal_msg_trk_proof, sig),
    FIX_OR_NIL_OPT(struct shoal_msg_trk_proof, tracker_eph, has_tracker_eph, SHOAL_MSG_KEY_LEN),
};
static const struct field announce_entry_f[] = {
    KEY(struct shoal_msg_announce_entry, manifest_id),
    U32(struct shoal_msg_announce_entry, have_chunks),
    U32(struct shoal_msg_announce_entry, total_chunks),
    BOOL(struct shoal_msg_announce_entry, complete),
};
static const struct list_desc announce_l = {
    announce_entry_f, ARRAY_LEN(announce_entry_f),
    offsetof(struct shoal_msg_announce, entries), sizeof(struct shoal_msg_announce_entry),
};
static const struct field announce_f[] = {
    LIST(struct shoal_msg_announce, count, SHOAL_MSG_ANNOUNCE_MAX, &announce_l),
};
static const struct field desired_f[] = {
    KEY(struct shoal_msg_desired, manifest_id),
    STR(struct shoal_msg_desired, repo, SHOAL_MSG_REPO_MAX, S_NONEMPTY),
    STR_OR_NIL_OPT(struct shoal_msg_desired, ref, has_ref, SHOAL_MSG_REF_MAX, S_NONEMPTY),
};
static const struct list_desc desired_l = {
    desired_f, ARRAY_LEN(desired_f),
    offsetof(struct shoal_msg_announce_reply, desired), sizeof(struct shoal_msg_desired),
};
static const struct field role_f[] = {
    KEY(struct shoal_msg_role, manifest_id),
    BOOL(struct shoal_msg_role, fetcher),
    U32_MAX(struct shoal_msg_role, import_mod, SHOAL_MSG_IMPORT_MAX),
    U32_MAX(struct shoal_msg_role, import_rem, SHOAL_MSG_IMPORT_MAX),
};
static const struct list_desc role_l = {
    role_f, ARRAY_LEN(role_f),
    offsetof(struct shoal_msg_announce_reply, roles), sizeof(struct shoal_msg_role),
};
static const struct field announce_reply_f[] = {
    U32(struct shoal_msg_announce_reply, interval_ms),
    LIST(struct shoal_msg_announce_reply, count, SHOAL_MSG_DESIRED_MAX, &desired_l),
    LIST_OPT(struct shoal_msg_announce_reply, nroles, SHOAL_MSG_ANNOUNCE_MAX, &role_l),
};
static const struct field get_peers_f[] = {
    KEY(struct shoal_msg_get_peers, manifest_id),
    U32_MAX(struct shoal_msg_get_peers, max, SHOAL_MSG_PEERS_MAX),
};
static const struct field peer_f[] = {
    KEY(struct shoal_msg_peer, node_pk),
    STR(struct shoal_msg_peer, addr, SHOAL_MSG_ADDR_MAX, S_ADDR),
    STR(struct shoal_msg_peer, zone, SHOAL_MSG_ZONE_MAX, 0),
    BOOL(struct shoal_msg_peer, complete),
    U32(struct shoal_msg_peer, have_chunks),
};
static const struct list_desc peers_l = {
    peer_f, ARRAY_LEN(peer_f),
    offsetof(struct shoal_msg_peers, peers), sizeof(struct shoal_msg_peer),
};
static const struct field peers_f[] = {
    KEY(struct shoal_msg_peers, manifest_id),
    LIST(struct shoal_msg_peers, count, SHOAL_MSG_PEERS_MAX, &peers_l),
};
static const struct field put_manifest_f[] = {
    BIN(struct shoal_msg_put_manifest, signed_manifest, SHOAL_MSG_MANIFEST_MAX),
};
static const struct field get_manifest_f[] = {
    KEY_OR_NIL(struct shoal_msg_get_manifest, by_id, has_id),
    STR_OR_NIL(struct shoal_msg_get_manifest, repo_at_rev, has_repo, SHOAL_MSG_REPO_MAX,
               S_NONEMPTY),
};
static const struct field lease_req_f[] = {
    KEY(struct shoal_msg_lease_req, manifest_id),
    U32(struct shoal_msg_lease_req, max_chunks),
    U32(struct shoal_msg_lease_req, hint_chunk),
    U32_OPT(struct shoal_msg_lease_req, flags),
    U32_OPT(struct shoal_msg_lease_req, claim_count),
    U32_OPT(struct shoal_msg_lease_req, claim_ms),
};
static const struct field lease_f[] = {
    KEY(struct shoal_msg_lease, manifest_id),
    U32(struct shoal_msg_lease, first),
    U32(struct shoal_msg_lease, count),
    U32(struct shoal_msg_lease, expires_ms),
    U32(struct shoal_msg_lease, retry_after_ms),
};
static const struct field lease_done_f[] = {
    KEY(struct shoal_msg_lease_done, manifest_id),
    U32(struct shoal_msg_lease_done, first),
    U32(struct shoal_msg_lease_done, count),
};
static const struct field rollout_f[] = {
    STR(struct shoal_msg_rollout, repo_at_rev, SHOAL_MSG_REPO_MAX, S_NONEMPTY),
    STR_OR_NIL(struct shoal_msg_rollout, zone, has_zone, SHOAL_MSG_ZONE_MAX, 0),
    BOOL(struct shoal_msg_rollout, remove),
    STR_OR_NIL_OPT(struct shoal_msg_rollout, ref, has_ref, SHOAL_MSG_REF_MAX, S_NONEMPTY),
};
static const struct field rollout_status_req_f[] = {
    STR(struct shoal_msg_text, text, SHOAL_MSG_REPO_MAX, S_NONEMPTY),
};
static const struct field rollout_status_f[] = {
    STR(struct shoal_msg_rollout_status, repo_at_rev, SHOAL_MSG_REPO_MAX, S_NONEMPTY),
    KEY_OR_NIL(struct shoal_msg_rollout_status, manifest_id, has_manifest_id),
    U32(struct shoal_msg_rollout_status, complete),
    U32(struct shoal_msg_rollout_status, partial),
    U32(struct shoal_msg_rollout_status, none),
    U32_OPT(struct shoal_msg_rollout_status, gone_lost),
    U32_OPT(struct shoal_msg_rollout_status, gone_left),
    U32_OPT(struct shoal_msg_rollout_status, gone_refused),
};
static const struct field rollout_entry_f[] = {
    STR(struct shoal_msg_rollout_entry, repo_at_rev, SHOAL_MSG_REPO_MAX, S_NONEMPTY),
    STR_OR_NIL(struct shoal_msg_rollout_entry, zone, has_zone, SHOAL_MSG_ZONE_MAX, S_NONEMPTY),
    STR_OR_NIL(struct shoal_msg_rollout_entry, ref, has_ref, SHOAL_MSG_REF_MAX, S_NONEMPTY),
    KEY_OR_NIL(struct shoal_msg_rollout_entry, manifest_id, has_manifest_id),
    U32(struct shoal_msg_rollout_entry, complete),
    U32(struct shoal_msg_rollout_entry, partial),
    U32(struct shoal_msg_rollout_entry, none),
    U32(struct shoal_msg_rollout_entry, gone_lost),
    U32(struct shoal_msg_rollout_entry, gone_left),
    U32(struct shoal_msg_rollout_entry, gone_refused),
};
static const struct list_desc rollout_entry_l = {
    rollout_entry_f, ARRAY_LEN(rollout_entry_f),
    offsetof(struct shoal_msg_rollout_list, e), sizeof(struct shoal_msg_rollout_entry),
};
static const struct field rollout_list_f[] = {
    LIST(struct shoal_msg_rollout_list, count, SHOAL_MSG_ROLLOUTS_MAX, &rollout_entry_l),
};
static const struct field error_f[] = {
    I32(struct shoal_msg_error, code),
    STR(struct shoal_msg_error, message, SHOAL_MSG_ERROR_MAX, 0),
};
static const struct field stats_f[] = {
    STR(struct shoal_msg_text, text, SHOAL_MSG_STATS_MAX, 0),
};
static const struct field loader_want_f[] = {
    STR(struct shoal_msg_loader_want, release, SHOAL_MSG_RELEASE_MAX, S_NONEMPTY),
    PATHS(struct shoal_msg_loader_want, order),
};
static const struct field loader_file_f[] = {
    STR(struct shoal_msg_loader_file, path, SHOAL_MSG_PATH_MAX, S_NONEMPTY),
    U64(struct shoal_msg_loader_file, size),
    KEY(struct shoal_msg_loader_file, sha256),
    U32(struct shoal_msg_loader_file, index),
    U32(struct shoal_msg_loader_file, total),
};
static const struct field loader_done_f[] = {
    U32(struct shoal_msg_loader_done, files),
};
static const struct field loader_error_f[] = {
    STR(struct shoal_msg_text, text, SHOAL_MSG_ERROR_MAX, 0),
};

static int rule_have_bitfield(const void *s)
{
    const struct shoal_msg_have_bitfield *b = s;
    int rv = 0;
    uint32_t want = b->nchunks / 8 + (b->nchunks % 8 != 0);
    if (b->bits.len != want)
        rv = SHOAL_EBADMSG;
    /* Spare bits must be zero, so one set of chunks has one encoding. */
    else if (b->nchunks % 8 && (b->bits.p[want - 1] & (0xffu >> (b->nchunks % 8))))
        rv = SHOAL_EBADMSG;
    return rv;
}

static int rule_chunk(const void *s)
{
    const struct shoal_msg_chunk *c = s;
    return c->codec == SHOAL_CODEC_RAW && c->payload.len != c->raw_len ? SHOAL_EBADMSG : 0;
}

static int rule_announce(const void *s)
{
    const struct shoal_msg_announce *a = s;
    int rv = 0;
    for (uint32_t i = 0; i < a->count && rv == 0; i++)
        if (a->entries[i].have_chunks > a->entries[i].total_chunks)
            rv = SHOAL_EBADMSG;
    return rv;
}

static int rule_announce_reply(const void *s)
{
    const struct shoal_msg_announce_reply *a = s;
    int rv = 0;
    /* One encoding per role: no share is (0, 0). */
    for (uint32_t i = 0; i < a->nroles && rv == 0; i++)
        if (a->roles[i].import_mod ? a->roles[i].import_rem >= a->roles[i].import_mod
                                   : a->roles[i].import_rem != 0)
            rv = SHOAL_EBADMSG;
    return rv;
}

static int rule_bye(const void *s)
{
    const struct shoal_msg_bye *b = s;
    /* One encoding for "no chunk named". */
    return !b->has_chunk && b->chunk_index != 0 ? SHOAL_EBADMSG : 0;
}

static int rule_get_manifest(const void *s)
{
    const struct shoal_msg_get_manifest *g = s;
    return g->has_id == g->has_repo ? SHOAL_EBADMSG : 0;
}

static int rule_loader_file(const void *s)
{
    const struct shoal_msg_loader_file *f = s;
    return f->index < f->total ? 0 : SHOAL_EBADMSG;
}

#define MSG(t, nm, fl, st, r) \
    [t] = { .name = nm, .f = fl, .nf = ARRAY_LEN(fl), .size = sizeof(st), .rule = r }

static const struct msg_desc msgs[SHOAL_MSG_TYPE_END] = {
    MSG(SHOAL_MSG_HELLO, "HELLO", hello_f, struct shoal_msg_hello, NULL),
    MSG(SHOAL_MSG_HELLO_AUTH, "HELLO_AUTH", hello_auth_f, struct shoal_msg_hello_auth, NULL),
    MSG(SHOAL_MSG_HAVE_BITFIELD, "HAVE_BITFIELD", have_bitfield_f,
        struct shoal_msg_have_bitfield, rule_have_bitfield),
    MSG(SHOAL_MSG_HAVE, "HAVE", have_f, struct shoal_msg_have, NULL),
    MSG(SHOAL_MSG_REQUEST, "REQUEST", request_f, struct shoal_msg_request, NULL),
    MSG(SHOAL_MSG_CHUNK, "CHUNK", chunk_f, struct shoal_msg_chunk, rule_chunk),
    MSG(SHOAL_MSG_CANCEL, "CANCEL", req_id_f, struct shoal_msg_req_id, NULL),
    MSG(SHOAL_MSG_REJECT, "REJECT", reject_f, struct shoal_msg_reject, NULL),
    MSG(SHOAL_MSG_PING, "PING", ping_f, struct shoal_msg_ping, NULL),
    MSG(SHOAL_MSG_PONG, "PONG", ping_f, struct shoal_msg_ping, NULL),
    MSG(SHOAL_MSG_WANT_MANIFEST, "WANT_MANIFEST", want_manifest_f,
        struct shoal_msg_want_manifest, NULL),
    MSG(SHOAL_MSG_MANIFEST_DATA, "MANIFEST_DATA", manifest_f, struct shoal_msg_manifest, NULL),
    MSG(SHOAL_MSG_BYE, "BYE", bye_f, struct shoal_msg_bye, rule_bye),
    MSG(SHOAL_MSG_TRK_CHALLENGE, "TRK_CHALLENGE", trk_challenge_f,
        struct shoal_msg_trk_challenge, NULL),
    MSG(SHOAL_MSG_TRK_AUTH, "TRK_AUTH", trk_auth_f, struct shoal_msg_trk_auth, NULL),
    MSG(SHOAL_MSG_ANNOUNCE, "ANNOUNCE", announce_f, struct shoal_msg_announce, rule_announce),
    MSG(SHOAL_MSG_ANNOUNCE_REPLY, "ANNOUNCE_REPLY", announce_reply_f,
        struct shoal_msg_announce_reply, rule_announce_reply),
    MSG(SHOAL_MSG_GET_PEERS, "GET_PEERS", get_peers_f, struct shoal_msg_get_peers, NULL),
    MSG(SHOAL_MSG_PEERS, "PEERS", peers_f, struct shoal_msg_peers, NULL),
    MSG(SHOAL_MSG_PUT_MANIFEST, "PUT_MANIFEST", put_manifest_f, struct shoal_msg_put_manifest,
        NULL),
    MSG(SHOAL_MSG_GET_MANIFEST, "GET_MANIFEST", get_manifest_f, struct shoal_msg_get_manifest,
        rule_get_manifest),
    MSG(SHOAL_MSG_MANIFEST, "MANIFEST", manifest_f, struct shoal_msg_manifest, NULL),
    MSG(SHOAL_MSG_LEASE_REQ, "LEASE_REQ", lease_req_f, struct shoal_msg_lease_req, NULL),
    MSG(SHOAL_MSG_LEASE, "LEASE", lease_f, struct shoal_msg_lease, NULL),
    MSG(SHOAL_MSG_LEASE_DONE, "LEASE_DONE", lease_done_f, struct shoal_msg_lease_done, NULL),
    MSG(SHOAL_MSG_ROLLOUT, "ROLLOUT", rollout_f, struct shoal_msg_rollout, NULL),
    MSG(SHOAL_MSG_ROLLOUT_STATUS_REQ, "ROLLOUT_STATUS_REQ", rollout_status_req_f,
        struct shoal_msg_text, NULL),
    MSG(SHOAL_MSG_ROLLOUT_STATUS, "ROLLOUT_STATUS", rollout_status_f,
        struct shoal_msg_rollout_status, NULL),
    MSG(SHOAL_MSG_OK, "OK", req_id_f, struct shoal_msg_req_id, NULL),
    MSG(SHOAL_MSG_ERROR, "ERROR", error_f, struct shoal_msg_error, NULL),
    /* STATS_REQ has no fields; a zero-length table cannot be written in C. */
    [SHOAL_MSG_STATS_REQ] = { .name = "STATS_REQ", .f = NULL, .nf = 0, .size = 0 },
    MSG(SHOAL_MSG_STATS, "STATS", stats_f, struct shoal_msg_text, NULL),
    MSG(SHOAL_MSG_TRK_PROOF, "TRK_PROOF", trk_proof_f, struct shoal_msg_trk_proof, NULL),
    [SHOAL_MSG_ROLLOUT_LIST_REQ] = { .name = "ROLLOUT_LIST_REQ", .f = NULL, .nf = 0, .size = 0 },
    MSG(SHOAL_MSG_ROLLOUT_LIST, "ROLLOUT_LIST", rollout_list_f, struct shoal_msg_rollout_list,
        NULL),
    MSG(SHOAL_MSG_LOADER_WANT, "LOADER_WANT", loader_want_f, struct shoal_msg_loader_want,
        NULL),
    MSG(SHOAL_MSG_LOADER_FILE, "LOADER_FILE", loader_file_f, struct shoal_msg_loader_file,
        rule_loader_file),
    MSG(SHOAL_MSG_LOADER_DONE, "LOADER_DONE", loader_done_f, struct shoal_msg_loader_done,
        NULL),
    MSG(SHOAL_MSG_LOADER_ERROR, "LOADER_ERROR", loader_error_f, struct shoal_msg_text, NULL),
};

static const struct msg_desc *lookup(uint64_t type)
{
    return type < SHOAL_MSG_TYPE_END && msgs[type].name ? &msgs[type] : NULL;
}

const char *shoal_msg_type_name(uint32_t type)
{
    const struct msg_desc *d = lookup(type);
    return d ? d->name : "UNKNOWN";
}

/* ---- string rules ---- */

/* Well-formed UTF-8 (no overlong forms, surrogates or values above
 * U+10FFFF) without NUL, which would cut the string short in C. */
static bool utf8_ok(const uint8_t *s, uint32_t n)
{
    uint32_t i = 0;
    bool ok = true;
    while (ok && i < n) {
        uint8_t c = s[i];
        uint32_t extra, cp, min;
        if (c == 0) {
            ok = false;
            break;
        } else if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            extra = 1, cp = c & 0x1fu, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            extra = 2, cp = c & 0x0fu, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            extra = 3, cp = c & 0x07u, min = 0x10000;
        } else {
            ok = false;
            break;
        }
        if (extra > n - i - 1) {
            ok = false;
            break;
        }
        for (uint32_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                ok = false;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            ok = false;
        i += 1 + extra;
    }
    return ok;
}

/* "host:port": a non-empty host (an IPv6 literal in brackets), a decimal
 * port 1..65535. Name resolution is the caller's business. */
static bool addr_ok(const char *s, uint32_t n)
{
    uint32_t colon = n; /* index just past the last ':' */
    while (colon > 0 && s[colon - 1] != ':')
        colon--;
    bool ok = colon >= 2 && colon < n && n - colon <= 5;
    uint32_t port = 0;
    for (uint32_t i = colon; ok && i < n; i++) {
        ok = s[i] >= '0' && s[i] <= '9';
        port = port * 10 + (uint32_t)(s[i] - '0');
    }
    ok = ok && port >= 1 && port <= 65535;
    if (ok) {
        uint32_t hl = colon - 1;
        if (s[0] == '[' || s[hl - 1] == ']')
            ok = s[0] == '[' && s[hl - 1] == ']' && hl >= 3;
    }
    return ok;
}

static int check_str(const struct field *f, const char *s, uint32_t n)
{
    int rv = 0;
    if (n > f->hi)
        rv = SHOAL_ETOOBIG;
    else if (n && !s)
        rv = SHOAL_EBADMSG;
    else if (n == 0 && (f->flags & (S_NONEMPTY | S_ADDR)))
        rv = SHOAL_EBADMSG;
    else if (!utf8_ok((const uint8_t *)s, n))
        rv = SHOAL_EBADMSG;
    else if ((f->flags & S_ADDR) && !addr_ok(s, n))
        rv = SHOAL_EBADMSG;
    return rv;
}

static const struct field path_field = {
    .kind = K_STR, .flags = S_NONEMPTY, .hi = SHOAL_MSG_PATH_MAX,
};

/* ---- decoding ---- */

static int decode_fields(struct shoal_mpr *r, uint8_t *base, const struct field *f, unsigned nf,
                         uint32_t have);

/* Reads one path of a LOADER_WANT order list and applies the path rules. */
static int read_path(struct shoal_mpr *r, struct shoal_str *out)
{
    int rv = shoal_mpr_str(r, &out->p, &out->len, SHOAL_MSG_PATH_MAX);
    if (rv == 0)
        rv = check_str(&path_field, out->p, out->len);
    return rv;
}

static int decode_field(struct shoal_mpr *r, uint8_t *base, const struct field *f)
{
    void *dst = base + f->off;
    int rv = 0;
    uint64_t u;
    int64_t i;
    uint32_t n;
    switch ((enum kind)f->kind) {
    case K_U8:
    case K_U32:
    case K_U64:
        rv = shoal_mpr_uint(r, &u, f->hi);
        if (rv == 0 && u < f->lo)
            rv = SHOAL_EBADMSG;
        if (rv == 0 && f->kind == K_U8)
            *(uint8_t *)dst = (uint8_t)u;
        else if (rv == 0 && f->kind == K_U32)
            *(uint32_t *)dst = (uint32_t)u;
        else if (rv == 0)
            *(uint64_t *)dst = u;
        break;
    case K_I32:
        rv = shoal_mpr_int(r, &i);
        if (rv == 0 && (i < INT32_MIN || i > INT32_MAX))
            rv = SHOAL_ETOOBIG;
        if (rv == 0)
            *(int32_t *)dst = (int32_t)i;
        break;
    case K_BOOL:
        rv = shoal_mpr_bool(r, (bool *)dst);
        break;
    case K_FIX_OR_NIL:
        if (shoal_mpr_peek_nil(r)) {
            rv = shoal_mpr_nil(r);
            break;
        }
        *(bool *)(base + f->has_off) = true;
        /* fall through */
    case K_FIX:
        rv = shoal_mpr_bin_exact(r, dst, (uint32_t)f->hi);
        break;
    case K_BIN: {
        struct shoal_bytes *b = dst;
        rv = shoal_mpr_bin(r, &b->p, &b->len, (uint32_t)f->hi);
        break;
    }
    case K_STR_OR_NIL:
        if (shoal_mpr_peek_nil(r)) {
            rv = shoal_mpr_nil(r);
            break;
        }
        *(bool *)(base + f->has_off) = true;
        /* fall through */
    case K_STR: {
        struct shoal_str *s = dst;
        rv = shoal_mpr_str(r, &s->p, &s->len, (uint32_t)f->hi);
        if (rv == 0)
            rv = check_str(f, s->p, s->len);
        break;
    }
    case K_LIST: {
        const struct list_desc *l = f->list;
        rv = shoal_mpr_array(r, &n, (uint32_t)f->hi);
        for (uint32_t k = 0; rv == 0 && k < n; k++) {
            uint32_t have;
            rv = shoal_mpr_array(r, &have, l->nf + SHOAL_MSG_EXTRA_MAX);
            if (rv == 0)
                rv = decode_fields(r, base + l->items_off + (size_t)k * l->elem_size, l->f,
                                   l->nf, have);
        }
        if (rv == 0)
            *(uint32_t *)dst = n;
        break;
    }
    case K_PATHS: {
        struct shoal_msg_paths *ps = dst;
        struct shoal_str s;
        rv = shoal_mpr_array(r, &n, (uint32_t)f->hi);
        const uint8_t *start = r->p;
        for (uint32_t k = 0; rv == 0 && k < n; k++)
            rv = read_path(r, &s);
        if (rv == 0) {
            ps->count = n;
            ps->v = NULL;
            ps->mp = start;
            ps->mp_len = (size_t)(r->p - start);
        }
        break;
    }
    }
    return rv;
}

/* Decodes |nf| fields into |base| from an array whose header announced
 * |have| items, skipping the trailing ones this build does not know. The
 * optional fields (F_OPT, always last) an older sender left out stay
 * zero. */
static int decode_fields(struct shoal_mpr *r, uint8_t *base, const struct field *f, unsigned nf,
                         uint32_t have)
{
    int rv = 0;
    unsigned nreq = nf;
    while (nreq > 0 && (f[nreq - 1].flags & F_OPT))
        nreq--;
    if (have < nreq)
        rv = SHOAL_EPROTO;
    else if (have > nf && have - nf > SHOAL_MSG_EXTRA_MAX)
        rv = SHOAL_ETOOBIG;
    for (unsigned k = 0; rv == 0 && k < nf && k < have; k++)
        rv = decode_field(r, base, &f[k]);
    for (uint32_t k = nf; rv == 0 && k < have; k++)
        rv = shoal_mpr_skip(r, SKIP_DEPTH);
    return rv;
}

int shoal_msg_decode(struct shoal_msg *m, const uint8_t *body, size_t len)
{
    struct shoal_mpr r;
    uint32_t have;
    uint64_t type;
    const struct msg_desc *d = NULL;
    shoal_mpr_init(&r, body, len);
    int rv = shoal_mpr_array(&r, &have, UINT32_MAX);
    if (rv)
        goto out;
    if (have == 0) {
        rv = SHOAL_EPROTO;
        goto out;
    }
    rv = shoal_mpr_uint(&r, &type, UINT64_MAX);
    if (rv)
        goto out;
    d = lookup(type);
    if (!d) {
        rv = SHOAL_EPROTO;
        goto out;
    }
    m->type = (uint32_t)type;
    memset(&m->u, 0, d->size);
    rv = decode_fields(&r, (uint8_t *)&m->u, d->f, d->nf, have - 1);
    if (rv)
        goto out;
    if (shoal_mpr_left(&r) != 0) {
        rv = SHOAL_EPROTO;
        goto out;
    }
    if (d->rule)
        rv = d->rule(&m->u);
out:
    return rv;
}

/* ---- encoding ---- */

static int encode_fields(struct shoal_mpw *w, const uint8_t *base, const struct field *f,
                         unsigned nf, bool payload_header_only);

static int encode_paths(struct shoal_mpw *w, const struct shoal_msg_paths *ps)
{
    int rv = 0;
    if (ps->count > SHOAL_MSG_ORDER_MAX) {
        rv = SHOAL_ETOOBIG;
        goto out;
    }
    if (!ps->v && ps->count && !ps->mp) {
        rv = SHOAL_EBADMSG;
        goto out;
    }
    shoal_mpw_array(w, ps->count);
    if (ps->v) {
        for (uint32_t k = 0; rv == 0 && k < ps->count; k++) {
            rv = check_str(&path_field, ps->v[k].p, ps->v[k].len);
            if (rv == 0)
                shoal_mpw_str(w, ps->v[k].p, ps->v[k].len);
        }
        goto out;
    }
    /* Re-sending decoded items: check they are exactly |count| valid paths,
     * then copy them as they are. */
    struct shoal_mpr r;
    struct shoal_str s;
    shoal_mpr_init(&r, ps->mp, ps->mp_len);
    for (uint32_t k = 0; rv == 0 && k < ps->count; k++)
        rv = read_path(&r, &s) ? SHOAL_EBADMSG : 0;
    if (rv == 0 && shoal_mpr_left(&r) != 0)
        rv = SHOAL_EBADMSG;
    if (rv == 0 && w->err == 0 && ps->mp_len) {
        int arv = shoal_buf_append(w->buf, ps->mp, ps->mp_len);
        if (arv)
            w->err = arv;
    }
out:
    return rv;
}

static int encode_field(struct shoal_mpw *w, const uint8_t *base, const struct field *f,
                        bool payload_header_only)
{
    const void *src = base + f->off;
    int rv = 0;
    uint64_t u = 0;
    switch ((enum kind)f->kind) {
    case K_U8:
    case K_U32:
    case K_U64:
        if (f->kind == K_U8)
            u = *(const uint8_t *)src;
        else if (f->kind == K_U32)
            u = *(const uint32_t *)src;
        else
            u = *(const uint64_t *)src;
        if (u > f->hi)
            rv = SHOAL_ETOOBIG;
        else if (u < f->lo)
            rv = SHOAL_EBADMSG;
        else
            shoal_mpw_uint(w, u);
        break;
    case K_I32:
        shoal_mpw_int(w, *(const int32_t *)src);
        break;
    case K_BOOL:
        shoal_mpw_bool(w, *(const bool *)src);
        break;
    case K_FIX_OR_NIL:
        if (!*(const bool *)(base + f->has_off)) {
            shoal_mpw_nil(w);
            break;
        }
        /* fall through */
    case K_FIX:
        shoal_mpw_bin(w, src, (size_t)f->hi);
        break;
    case K_BIN: {
        const struct shoal_bytes *b = src;
        if (b->len > f->hi)
            rv = SHOAL_ETOOBIG;
        else if (payload_header_only)
            shoal_mpw_bin_header(w, b->len);
        else if (b->len && !b->p)
            rv = SHOAL_EBADMSG;
        else
            shoal_mpw_bin(w, b->p, b->len);
        break;
    }
    case K_STR_OR_NIL:
        if (!*(const bool *)(base + f->has_off)) {
            shoal_mpw_nil(w);
            break;
        }
        /* fall through */
    case K_STR: {
        const struct shoal_str *s = src;
        rv = check_str(f, s->p, s->len);
        if (rv == 0)
            shoal_mpw_str(w, s->p, s->len);
        break;
    }
    case K_LIST: {
        const struct list_desc *l = f->list;
        uint32_t n = *(const uint32_t *)src;
        if (n > f->hi) {
            rv = SHOAL_ETOOBIG;
            break;
        }
        shoal_mpw_array(w, n);
        for (uint32_t k = 0; rv == 0 && k < n; k++) {
            shoal_mpw_array(w, l->nf);
            rv = encode_fields(w, base + l->items_off + (size_t)k * l->elem_size, l->f, l->nf,
                               false);
        }
        break;
    }
    case K_PATHS:
        rv = encode_paths(w, src);
        break;
    }
    return rv;
}

static int encode_fields(struct shoal_mpw *w, const uint8_t *base, const struct field *f,
                         unsigned nf, bool payload_header_only)
{
    int rv = 0;
    for (unsigned k = 0; rv == 0 && k < nf; k++)
        rv = encode_field(w, base, &f[k], payload_header_only && k == nf - 1);
    return rv;
}

/* Appends header + body of message |type| whose struct is |s|. With
 * |payload_header_only| the last field (a bin) is written as its header only
 * and |extra| bytes, sent separately by the caller, count in the length. */
static int encode_frame(uint32_t type, const void *s, struct shoal_buf *out,
                        bool payload_header_only, size_t extra)
{
    const struct msg_desc *d = lookup(type);
    size_t start = out->len;
    struct shoal_mpw w;
    uint8_t hdr[SHOAL_FRAME_HDR_LEN] = {0};
    int rv = 0;
    if (!d) {
        rv = SHOAL_EPROTO;
        goto out;
    }
    if (d->rule) {
        rv = d->rule(s);
        if (rv)
            goto out;
    }
    rv = shoal_buf_append(out, hdr, sizeof hdr);
    if (rv)
        goto out;
    shoal_mpw_init(&w, out);
    shoal_mpw_array(&w, 1u + d->nf);
    shoal_mpw_uint(&w, type);
    rv = encode_fields(&w, s, d->f, d->nf, payload_header_only);
    if (rv == 0)
        rv = w.err;
    if (rv)
        goto out;
    rv = shoal_frame_header(out->data + start, out->len - start - sizeof hdr + extra);
out:
    if (rv && out->len > start)
        out->len = start;
    return rv;
}

int shoal_msg_encode(const struct shoal_msg *m, struct shoal_buf *out)
{
    return encode_frame(m->type, &m->u, out, false, 0);
}

int shoal_msg_encode_chunk_header(const struct shoal_msg_chunk *c, struct shoal_buf *out)
{
    return encode_frame(SHOAL_MSG_CHUNK, c, out, true, c->payload.len);
}

/* ---- lazy path list ---- */

void shoal_msg_paths_begin(struct shoal_msg_paths *it, const struct shoal_msg_paths *paths)
{
    *it = *paths;
}

bool shoal_msg_paths_next(struct shoal_msg_paths *it, struct shoal_str *path)
{
    bool ok = false;
    if (it->count == 0)
        goto out;
    if (it->v) {
        *path = *it->v++;
        ok = true;
    } else if (it->mp) {
        struct shoal_mpr r;
        shoal_mpr_init(&r, it->mp, it->mp_len);
        ok = read_path(&r, path) == 0;
        it->mp_len -= (size_t)(r.p - it->mp);
        it->mp = r.p;
    }
    if (ok)
        it->count--;
    else
        it->count = 0;
out:
    return ok;
}
