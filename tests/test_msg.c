/* SPDX-License-Identifier: MIT */
/*
 * Message codecs: every type round-trips field for field; every decoder
 * refuses truncation, wrong field types, over-limit values, junk after the
 * array and unknown types with the documented codes; CHUNK payloads decode
 * in place; the lazy LOADER_WANT path list walks correctly.
 *
 * Run as `test_msg --write-corpus MSG_DIR FRAME_DIR` it writes one valid
 * encoding per message type: the fuzzers' committed seed corpus.
 */
#include "t.h"

#include "buf.h"
#include "error.h"
#include "frame.h"
#include "mp.h"
#include "msg.h"

#include <stdio.h>
#include <string.h>

#define S(lit) ((struct shoal_str){ lit, (uint32_t)(sizeof(lit) - 1) })

static const uint8_t *key(unsigned seed)
{
    static uint8_t keys[64][SHOAL_MSG_SIG_LEN];
    for (unsigned i = 0; i < SHOAL_MSG_SIG_LEN; i++)
        keys[seed][i] = (uint8_t)(seed * 37u + i);
    return keys[seed];
}

static const uint8_t *blob(size_t n)
{
    static uint8_t b[4096];
    for (size_t i = 0; i < sizeof b; i++)
        b[i] = (uint8_t)(i * 13u + 5u);
    REQUIRE(n <= sizeof b);
    return b;
}

static const struct shoal_str sample_paths[3] = {
    { "config.json", 11 },
    { "model-00001-of-00002.safetensors", 32 },
    { "tokenizer/ü.json", 17 },
};

/* Every message type, plus the nil branches of the optional fields. */
static const uint32_t sample_types[] = {
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
    32, 33, 33, 34, 35, 35, 36, 37, 38, 39, 39, 40, 41, 42, 43, 44, 44, 45, 46, 46, 47, 48, 49, 50, 51, 52, 53, 53,
    64, 65, 66, 67,
};
#define NSAMPLES (sizeof sample_types / sizeof sample_types[0])

/* Fills |m| with sample |i|: distinct, non-default values in every field. */
static void sample(struct shoal_msg *m, size_t i)
{
    memset(m, 0, sizeof *m);
    m->type = sample_types[i];
    bool alt = i > 0 && sample_types[i - 1] == m->type;
    switch (m->type) {
    case SHOAL_MSG_HELLO: {
        struct shoal_msg_hello *h = &m->u.hello;
        h->version = 3;
        memcpy(h->node_pk, key(1), 32);
        h->cred = (struct shoal_bytes){ blob(200), 200 };
        h->zone = S("eu-west-1a");
        h->listen_addr = S("10.0.0.7:7400");
        memcpy(h->eph_pk, key(2), 32);
        memcpy(h->nonce, key(3), 32);
        h->flags = SHOAL_HELLO_F_ENCRYPT;
        h->max_frame = SHOAL_FRAME_MAX_AUTH;
        break;
    }
    case SHOAL_MSG_HELLO_AUTH:
        memcpy(m->u.hello_auth.sig, key(4), 64);
        break;
    case SHOAL_MSG_HAVE_BITFIELD: {
        static const uint8_t bits[3] = {0xa5, 0x0f, 0xf8};
        memcpy(m->u.have_bitfield.manifest_id, key(5), 32);
        m->u.have_bitfield.nchunks = 21;
        m->u.have_bitfield.bits = (struct shoal_bytes){ bits, 3 };
        m->u.have_bitfield.flags = SHOAL_BITFIELD_F_JOIN | 0x40;
        break;
    }
    case SHOAL_MSG_HAVE:
        memcpy(m->u.have.manifest_id, key(6), 32);
        m->u.have.chunk_index = 12345;
        break;
    case SHOAL_MSG_REQUEST:
        m->u.request.req_id = 77;
        memcpy(m->u.request.manifest_id, key(7), 32);
        m->u.request.chunk_index = 9;
        memcpy(m->u.request.chunk_id, key(8), 32);
        break;
    case SHOAL_MSG_CHUNK:
        m->u.chunk.req_id = 78;
        memcpy(m->u.chunk.chunk_id, key(9), 32);
        m->u.chunk.codec = SHOAL_CODEC_ZSTD;
        m->u.chunk.raw_len = 5000;
        m->u.chunk.payload = (struct shoal_bytes){ blob(300), 300 };
        break;
    case SHOAL_MSG_CANCEL:
        m->u.cancel.req_id = 79;
        break;
    case SHOAL_MSG_REJECT:
        m->u.reject.req_id = 80;
        m->u.reject.reason = SHOAL_REJECT_RATE_LIMITED;
        m->u.reject.retry_after_ms = 1500;
        break;
    case SHOAL_MSG_PING:
        m->u.ping.nonce = 0x0123456789abcdefULL;
        break;
    case SHOAL_MSG_PONG:
        m->u.ping.nonce = 0xfedcba9876543210ULL;
        break;
    case SHOAL_MSG_WANT_MANIFEST:
        memcpy(m->u.want_manifest.manifest_id, key(10), 32);
        break;
    case SHOAL_MSG_MANIFEST_DATA:
    case SHOAL_MSG_MANIFEST:
        memcpy(m->u.manifest.manifest_id, key(m->type == SHOAL_MSG_MANIFEST ? 30 : 11), 32);
        m->u.manifest.signed_manifest = (struct shoal_bytes){ blob(1000), 1000 };
        break;
    case SHOAL_MSG_BYE:
        m->u.bye.text = S("banned: sent a chunk that fails its hash");
        m->u.bye.has_chunk = true;
        memcpy(m->u.bye.manifest_id, key(15), 32);
        m->u.bye.chunk_index = 7;
        break;
    case SHOAL_MSG_TRK_CHALLENGE:
        memcpy(m->u.trk_challenge.nonce, key(12), 32);
        m->u.trk_challenge.server_time = 1700000000;
        m->u.trk_challenge.has_boot = true;
        memcpy(m->u.trk_challenge.boot, key(47), SHOAL_MSG_SESSION_LEN);
        break;
    case SHOAL_MSG_TRK_AUTH: {
        struct shoal_msg_trk_auth *a = &m->u.trk_auth;
        memcpy(a->node_pk, key(13), 32);
        a->cred = (struct shoal_bytes){ blob(512), 512 };
        memcpy(a->sig, key(14), 64);
        a->zone = S("us-east-2b");
        a->listen_addr = S("[fe80::1]:7400");
        a->role = SHOAL_ROLE_PUBLISHER;
        /* The alternative is a login without a session id (the CLI). */
        if (!alt) {
            a->has_session = true;
            memcpy(a->session, key(41), SHOAL_MSG_SESSION_LEN);
            a->has_client_nonce = true;
            memcpy(a->client_nonce, key(44), 32);
            a->has_client_eph = true;
            memcpy(a->client_eph, key(48), 32);
            a->has_publisher = true;
            memcpy(a->publisher_pk, key(50), 32);
        }
        break;
    }
    case SHOAL_MSG_TRK_PROOF:
        memcpy(m->u.trk_proof.tracker_pk, key(45), 32);
        memcpy(m->u.trk_proof.sig, key(46), 64);
        m->u.trk_proof.has_tracker_eph = true;
        memcpy(m->u.trk_proof.tracker_eph, key(49), 32);
        break;
    case SHOAL_MSG_ANNOUNCE:
        m->u.announce.count = 3;
        for (unsigned k = 0; k < 3; k++) {
            struct shoal_msg_announce_entry *e = &m->u.announce.entries[k];
            memcpy(e->manifest_id, key(15 + k), 32);
            e->have_chunks = 100 * k;
            e->total_chunks = 200;
            e->complete = k == 2;
        }
        m->u.announce.entries[2].have_chunks = 200;
        break;
    case SHOAL_MSG_ANNOUNCE_REPLY:
        m->u.announce_reply.interval_ms = 30000;
        m->u.announce_reply.count = 2;
        memcpy(m->u.announce_reply.desired[0].manifest_id, key(18), 32);
        m->u.announce_reply.desired[0].repo = S("org/model@0123abcd");
        memcpy(m->u.announce_reply.desired[1].manifest_id, key(19), 32);
        m->u.announce_reply.desired[1].repo = S("org/data@ffff");
        if (!alt) {
            m->u.announce_reply.desired[1].has_ref = true;
            m->u.announce_reply.desired[1].ref = S("main");
        }
        if (!alt) {
            /* A fetcher, an importer, and a node with no role. */
            m->u.announce_reply.nroles = 3;
            memcpy(m->u.announce_reply.roles[0].manifest_id, key(15), 32);
            m->u.announce_reply.roles[0].fetcher = true;
            memcpy(m->u.announce_reply.roles[1].manifest_id, key(16), 32);
            m->u.announce_reply.roles[1].import_mod = 4;
            m->u.announce_reply.roles[1].import_rem = 3;
            memcpy(m->u.announce_reply.roles[2].manifest_id, key(17), 32);
        }
        break;
    case SHOAL_MSG_GET_PEERS:
        memcpy(m->u.get_peers.manifest_id, key(20), 32);
        m->u.get_peers.max = 50;
        break;
    case SHOAL_MSG_PEERS:
        memcpy(m->u.peers.manifest_id, key(21), 32);
        m->u.peers.count = 3;
        for (unsigned k = 0; k < 3; k++) {
            struct shoal_msg_peer *p = &m->u.peers.peers[k];
            memcpy(p->node_pk, key(22 + k), 32);
            p->addr = k == 1 ? S("node-1.example:7400") : S("10.1.2.3:65535");
            p->zone = k == 2 ? S("") : S("z1");
            p->complete = k == 0;
            p->have_chunks = 1000 + k;
        }
        break;
    case SHOAL_MSG_PUT_MANIFEST:
        m->u.put_manifest.signed_manifest = (struct shoal_bytes){ blob(2000), 2000 };
        break;
    case SHOAL_MSG_GET_MANIFEST:
        if (alt) {
            m->u.get_manifest.has_repo = true;
            m->u.get_manifest.repo_at_rev = S("org/model@main");
        } else {
            m->u.get_manifest.has_id = true;
            memcpy(m->u.get_manifest.by_id, key(25), 32);
        }
        break;
    case SHOAL_MSG_LEASE_REQ:
        memcpy(m->u.lease_req.manifest_id, key(26), 32);
        m->u.lease_req.max_chunks = 64;
        m->u.lease_req.hint_chunk = 4000;
        m->u.lease_req.flags = SHOAL_LEASE_HINT_MISSING;
        m->u.lease_req.claim_count = 12;
        m->u.lease_req.claim_ms = 45000;
        break;
    case SHOAL_MSG_LEASE:
        memcpy(m->u.lease.manifest_id, key(27), 32);
        m->u.lease.first = 4000;
        m->u.lease.count = 16;
        m->u.lease.expires_ms = 60000;
        m->u.lease.retry_after_ms = 250;
        break;
    case SHOAL_MSG_LEASE_DONE:
        memcpy(m->u.lease_done.manifest_id, key(28), 32);
        m->u.lease_done.first = 4000;
        m->u.lease_done.count = 16;
        break;
    case SHOAL_MSG_ROLLOUT:
        m->u.rollout.repo_at_rev = S("org/model@v2");
        if (!alt) {
            m->u.rollout.has_zone = true;
            m->u.rollout.zone = S("eu-west-1a");
        }
        m->u.rollout.remove = !alt;
        if (alt) {
            m->u.rollout.has_ref = true;
            m->u.rollout.ref = S("release/v2");
        }
        break;
    case SHOAL_MSG_ROLLOUT_STATUS_REQ:
        m->u.rollout_status_req.text = S("org/model@v2");
        break;
    case SHOAL_MSG_ROLLOUT_STATUS:
        m->u.rollout_status.repo_at_rev = S("org/model@v2");
        if (!alt) {
            m->u.rollout_status.has_manifest_id = true;
            memcpy(m->u.rollout_status.manifest_id, key(29), 32);
        }
        m->u.rollout_status.complete = 10;
        m->u.rollout_status.partial = 20;
        m->u.rollout_status.none = 30;
        m->u.rollout_status.gone_lost = 1;
        m->u.rollout_status.gone_left = 2;
        m->u.rollout_status.gone_refused = 3;
        break;
    case SHOAL_MSG_ROLLOUT_LIST_REQ:
        break;
    case SHOAL_MSG_ROLLOUT_LIST:
        m->u.rollout_list.count = alt ? 0 : 2;
        m->u.rollout_list.e[0].repo_at_rev = S("org/model@v2");
        m->u.rollout_list.e[0].has_zone = true;
        m->u.rollout_list.e[0].zone = S("z1");
        m->u.rollout_list.e[0].has_manifest_id = true;
        memcpy(m->u.rollout_list.e[0].manifest_id, key(30), 32);
        m->u.rollout_list.e[0].complete = 4;
        m->u.rollout_list.e[0].partial = 5;
        m->u.rollout_list.e[0].none = 6;
        m->u.rollout_list.e[0].gone_lost = 7;
        m->u.rollout_list.e[1].repo_at_rev = S("datasets/org/d@v3");
        m->u.rollout_list.e[1].has_ref = true;
        m->u.rollout_list.e[1].ref = S("main");
        m->u.rollout_list.e[1].gone_left = 8;
        m->u.rollout_list.e[1].gone_refused = 9;
        break;
    case SHOAL_MSG_OK:
        m->u.ok.req_id = 81;
        break;
    case SHOAL_MSG_ERROR:
        m->u.error.code = -42;
        m->u.error.message = S("no such manifest");
        break;
    case SHOAL_MSG_STATS_REQ:
        break;
    case SHOAL_MSG_STATS:
        m->u.stats.text = S("# TYPE shoal_up gauge\nshoal_up 1\n");
        break;
    case SHOAL_MSG_LOADER_WANT:
        m->u.loader_want.release = S("org/model@0123abcd");
        m->u.loader_want.order.count = 3;
        m->u.loader_want.order.v = sample_paths;
        break;
    case SHOAL_MSG_LOADER_FILE:
        m->u.loader_file.path = S("model-00001-of-00002.safetensors");
        m->u.loader_file.size = 5000000000ULL;
        memcpy(m->u.loader_file.sha256, key(31), 32);
        m->u.loader_file.index = 1;
        m->u.loader_file.total = 2;
        break;
    case SHOAL_MSG_LOADER_DONE:
        m->u.loader_done.files = 12;
        break;
    case SHOAL_MSG_LOADER_ERROR:
        m->u.loader_error.text = S("release not found");
        break;
    default:
        REQUIRE(!"sample type missing");
    }
}

static bool bytes_eq(struct shoal_bytes a, struct shoal_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static bool str_eq(struct shoal_str a, struct shoal_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

#define KEQ(a, b) (memcmp((a), (b), sizeof(a)) == 0)

static bool paths_eq(const struct shoal_msg_paths *a, const struct shoal_msg_paths *b)
{
    struct shoal_msg_paths ia, ib;
    struct shoal_str sa, sb;
    if (a->count != b->count)
        return false;
    shoal_msg_paths_begin(&ia, a);
    shoal_msg_paths_begin(&ib, b);
    for (uint32_t k = 0; k < a->count; k++) {
        if (!shoal_msg_paths_next(&ia, &sa) || !shoal_msg_paths_next(&ib, &sb) ||
            !str_eq(sa, sb))
            return false;
    }
    return !shoal_msg_paths_next(&ia, &sa) && !shoal_msg_paths_next(&ib, &sb);
}

/* Field-for-field equality, written out per type (not via the codec's
 * tables, so a table mistake shows up here). */
static bool msg_eq(const struct shoal_msg *a, const struct shoal_msg *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case SHOAL_MSG_HELLO: {
        const struct shoal_msg_hello *x = &a->u.hello, *y = &b->u.hello;
        return x->version == y->version && KEQ(x->node_pk, y->node_pk) &&
               bytes_eq(x->cred, y->cred) && str_eq(x->zone, y->zone) &&
               str_eq(x->listen_addr, y->listen_addr) && KEQ(x->eph_pk, y->eph_pk) &&
               KEQ(x->nonce, y->nonce) && x->flags == y->flags && x->max_frame == y->max_frame;
    }
    case SHOAL_MSG_HELLO_AUTH:
        return KEQ(a->u.hello_auth.sig, b->u.hello_auth.sig);
    case SHOAL_MSG_HAVE_BITFIELD:
        return KEQ(a->u.have_bitfield.manifest_id, b->u.have_bitfield.manifest_id) &&
               a->u.have_bitfield.nchunks == b->u.have_bitfield.nchunks &&
               bytes_eq(a->u.have_bitfield.bits, b->u.have_bitfield.bits) &&
               a->u.have_bitfield.flags == b->u.have_bitfield.flags;
    case SHOAL_MSG_HAVE:
        return KEQ(a->u.have.manifest_id, b->u.have.manifest_id) &&
               a->u.have.chunk_index == b->u.have.chunk_index;
    case SHOAL_MSG_REQUEST:
        return a->u.request.req_id == b->u.request.req_id &&
               KEQ(a->u.request.manifest_id, b->u.request.manifest_id) &&
               a->u.request.chunk_index == b->u.request.chunk_index &&
               KEQ(a->u.request.chunk_id, b->u.request.chunk_id);
    case SHOAL_MSG_CHUNK:
        return a->u.chunk.req_id == b->u.chunk.req_id &&
               KEQ(a->u.chunk.chunk_id, b->u.chunk.chunk_id) &&
               a->u.chunk.codec == b->u.chunk.codec && a->u.chunk.raw_len == b->u.chunk.raw_len &&
               bytes_eq(a->u.chunk.payload, b->u.chunk.payload);
    case SHOAL_MSG_CANCEL:
        return a->u.cancel.req_id == b->u.cancel.req_id;
    case SHOAL_MSG_REJECT:
        return a->u.reject.req_id == b->u.reject.req_id &&
               a->u.reject.reason == b->u.reject.reason &&
               a->u.reject.retry_after_ms == b->u.reject.retry_after_ms;
    case SHOAL_MSG_PING:
    case SHOAL_MSG_PONG:
        return a->u.ping.nonce == b->u.ping.nonce;
    case SHOAL_MSG_WANT_MANIFEST:
        return KEQ(a->u.want_manifest.manifest_id, b->u.want_manifest.manifest_id);
    case SHOAL_MSG_MANIFEST_DATA:
    case SHOAL_MSG_MANIFEST:
        return KEQ(a->u.manifest.manifest_id, b->u.manifest.manifest_id) &&
               bytes_eq(a->u.manifest.signed_manifest, b->u.manifest.signed_manifest);
    case SHOAL_MSG_BYE:
        return str_eq(a->u.bye.text, b->u.bye.text) &&
               a->u.bye.has_chunk == b->u.bye.has_chunk &&
               (!a->u.bye.has_chunk || KEQ(a->u.bye.manifest_id, b->u.bye.manifest_id)) &&
               a->u.bye.chunk_index == b->u.bye.chunk_index;
    case SHOAL_MSG_ROLLOUT_STATUS_REQ:
    case SHOAL_MSG_STATS:
    case SHOAL_MSG_LOADER_ERROR:
        return str_eq(a->u.bye.text, b->u.bye.text);
    case SHOAL_MSG_TRK_CHALLENGE:
        return KEQ(a->u.trk_challenge.nonce, b->u.trk_challenge.nonce) &&
               a->u.trk_challenge.server_time == b->u.trk_challenge.server_time &&
               a->u.trk_challenge.has_boot == b->u.trk_challenge.has_boot &&
               (!a->u.trk_challenge.has_boot ||
                memcmp(a->u.trk_challenge.boot, b->u.trk_challenge.boot, SHOAL_MSG_SESSION_LEN) == 0);
    case SHOAL_MSG_TRK_AUTH: {
        const struct shoal_msg_trk_auth *x = &a->u.trk_auth, *y = &b->u.trk_auth;
        return KEQ(x->node_pk, y->node_pk) && bytes_eq(x->cred, y->cred) && KEQ(x->sig, y->sig) &&
               str_eq(x->zone, y->zone) && str_eq(x->listen_addr, y->listen_addr) &&
               x->role == y->role && x->has_session == y->has_session &&
               (!x->has_session || KEQ(x->session, y->session)) &&
               x->has_client_nonce == y->has_client_nonce &&
               (!x->has_client_nonce || KEQ(x->client_nonce, y->client_nonce)) &&
               x->has_client_eph == y->has_client_eph &&
               (!x->has_client_eph || KEQ(x->client_eph, y->client_eph)) &&
               x->has_publisher == y->has_publisher &&
               (!x->has_publisher || KEQ(x->publisher_pk, y->publisher_pk));
    }
    case SHOAL_MSG_TRK_PROOF:
        return KEQ(a->u.trk_proof.tracker_pk, b->u.trk_proof.tracker_pk) &&
               KEQ(a->u.trk_proof.sig, b->u.trk_proof.sig) &&
               a->u.trk_proof.has_tracker_eph == b->u.trk_proof.has_tracker_eph &&
               (!a->u.trk_proof.has_tracker_eph ||
                KEQ(a->u.trk_proof.tracker_eph, b->u.trk_proof.tracker_eph));
    case SHOAL_MSG_ANNOUNCE:
        if (a->u.announce.count != b->u.announce.count)
            return false;
        for (uint32_t k = 0; k < a->u.announce.count; k++) {
            const struct shoal_msg_announce_entry *x = &a->u.announce.entries[k];
            const struct shoal_msg_announce_entry *y = &b->u.announce.entries[k];
            if (!KEQ(x->manifest_id, y->manifest_id) || x->have_chunks != y->have_chunks ||
                x->total_chunks != y->total_chunks || x->complete != y->complete)
                return false;
        }
        return true;
    case SHOAL_MSG_ANNOUNCE_REPLY:
        if (a->u.announce_reply.interval_ms != b->u.announce_reply.interval_ms ||
            a->u.announce_reply.count != b->u.announce_reply.count)
            return false;
        for (uint32_t k = 0; k < a->u.announce_reply.count; k++) {
            const struct shoal_msg_desired *x = &a->u.announce_reply.desired[k];
            const struct shoal_msg_desired *y = &b->u.announce_reply.desired[k];
            if (!KEQ(x->manifest_id, y->manifest_id) || !str_eq(x->repo, y->repo) ||
                x->has_ref != y->has_ref || (x->has_ref && !str_eq(x->ref, y->ref)))
                return false;
        }
        if (a->u.announce_reply.nroles != b->u.announce_reply.nroles)
            return false;
        for (uint32_t k = 0; k < a->u.announce_reply.nroles; k++) {
            const struct shoal_msg_role *x = &a->u.announce_reply.roles[k];
            const struct shoal_msg_role *y = &b->u.announce_reply.roles[k];
            if (!KEQ(x->manifest_id, y->manifest_id) || x->fetcher != y->fetcher ||
                x->import_mod != y->import_mod || x->import_rem != y->import_rem)
                return false;
        }
        return true;
    case SHOAL_MSG_GET_PEERS:
        return KEQ(a->u.get_peers.manifest_id, b->u.get_peers.manifest_id) &&
               a->u.get_peers.max == b->u.get_peers.max;
    case SHOAL_MSG_PEERS:
        if (!KEQ(a->u.peers.manifest_id, b->u.peers.manifest_id) ||
            a->u.peers.count != b->u.peers.count)
            return false;
        for (uint32_t k = 0; k < a->u.peers.count; k++) {
            const struct shoal_msg_peer *x = &a->u.peers.peers[k], *y = &b->u.peers.peers[k];
            if (!KEQ(x->node_pk, y->node_pk) || !str_eq(x->addr, y->addr) ||
                !str_eq(x->zone, y->zone) || x->complete != y->complete ||
                x->have_chunks != y->have_chunks)
                return false;
        }
        return true;
    case SHOAL_MSG_PUT_MANIFEST:
        return bytes_eq(a->u.put_manifest.signed_manifest, b->u.put_manifest.signed_manifest);
    case SHOAL_MSG_GET_MANIFEST: {
        const struct shoal_msg_get_manifest *x = &a->u.get_manifest, *y = &b->u.get_manifest;
        return x->has_id == y->has_id && (!x->has_id || KEQ(x->by_id, y->by_id)) &&
               x->has_repo == y->has_repo && (!x->has_repo || str_eq(x->repo_at_rev, y->repo_at_rev));
    }
    case SHOAL_MSG_LEASE_REQ:
        return KEQ(a->u.lease_req.manifest_id, b->u.lease_req.manifest_id) &&
               a->u.lease_req.max_chunks == b->u.lease_req.max_chunks &&
               a->u.lease_req.hint_chunk == b->u.lease_req.hint_chunk &&
               a->u.lease_req.flags == b->u.lease_req.flags &&
               a->u.lease_req.claim_count == b->u.lease_req.claim_count &&
               a->u.lease_req.claim_ms == b->u.lease_req.claim_ms;
    case SHOAL_MSG_LEASE:
        return KEQ(a->u.lease.manifest_id, b->u.lease.manifest_id) &&
               a->u.lease.first == b->u.lease.first && a->u.lease.count == b->u.lease.count &&
               a->u.lease.expires_ms == b->u.lease.expires_ms &&
               a->u.lease.retry_after_ms == b->u.lease.retry_after_ms;
    case SHOAL_MSG_LEASE_DONE:
        return KEQ(a->u.lease_done.manifest_id, b->u.lease_done.manifest_id) &&
               a->u.lease_done.first == b->u.lease_done.first &&
               a->u.lease_done.count == b->u.lease_done.count;
    case SHOAL_MSG_ROLLOUT: {
        const struct shoal_msg_rollout *x = &a->u.rollout, *y = &b->u.rollout;
        return str_eq(x->repo_at_rev, y->repo_at_rev) && x->has_zone == y->has_zone &&
               (!x->has_zone || str_eq(x->zone, y->zone)) && x->remove == y->remove &&
               x->has_ref == y->has_ref && (!x->has_ref || str_eq(x->ref, y->ref));
    }
    case SHOAL_MSG_ROLLOUT_STATUS: {
        const struct shoal_msg_rollout_status *x = &a->u.rollout_status, *y = &b->u.rollout_status;
        return str_eq(x->repo_at_rev, y->repo_at_rev) && x->has_manifest_id == y->has_manifest_id &&
               (!x->has_manifest_id || KEQ(x->manifest_id, y->manifest_id)) &&
               x->complete == y->complete && x->partial == y->partial && x->none == y->none &&
               x->gone_lost == y->gone_lost && x->gone_left == y->gone_left &&
               x->gone_refused == y->gone_refused;
    }
    case SHOAL_MSG_ROLLOUT_LIST_REQ:
        return true;
    case SHOAL_MSG_ROLLOUT_LIST:
        if (a->u.rollout_list.count != b->u.rollout_list.count)
            return false;
        for (uint32_t k = 0; k < a->u.rollout_list.count; k++) {
            const struct shoal_msg_rollout_entry *x = &a->u.rollout_list.e[k];
            const struct shoal_msg_rollout_entry *y = &b->u.rollout_list.e[k];
            if (!str_eq(x->repo_at_rev, y->repo_at_rev) || x->has_zone != y->has_zone ||
                (x->has_zone && !str_eq(x->zone, y->zone)) || x->has_ref != y->has_ref ||
                (x->has_ref && !str_eq(x->ref, y->ref)) ||
                x->has_manifest_id != y->has_manifest_id ||
                (x->has_manifest_id && !KEQ(x->manifest_id, y->manifest_id)) ||
                x->complete != y->complete || x->partial != y->partial || x->none != y->none ||
                x->gone_lost != y->gone_lost || x->gone_left != y->gone_left ||
                x->gone_refused != y->gone_refused)
                return false;
        }
        return true;
    case SHOAL_MSG_OK:
        return a->u.ok.req_id == b->u.ok.req_id;
    case SHOAL_MSG_ERROR:
        return a->u.error.code == b->u.error.code && str_eq(a->u.error.message, b->u.error.message);
    case SHOAL_MSG_STATS_REQ:
        return true;
    case SHOAL_MSG_LOADER_WANT:
        return str_eq(a->u.loader_want.release, b->u.loader_want.release) &&
               paths_eq(&a->u.loader_want.order, &b->u.loader_want.order);
    case SHOAL_MSG_LOADER_FILE: {
        const struct shoal_msg_loader_file *x = &a->u.loader_file, *y = &b->u.loader_file;
        return str_eq(x->path, y->path) && x->size == y->size && KEQ(x->sha256, y->sha256) &&
               x->index == y->index && x->total == y->total;
    }
    case SHOAL_MSG_LOADER_DONE:
        return a->u.loader_done.files == b->u.loader_done.files;
    default:
        return false;
    }
}

/* Encodes |m| and returns the frame in |b| (header checked). */
static void encode_ok(const struct shoal_msg *m, struct shoal_buf *b)
{
    shoal_buf_init(b, 1u << 20);
    int rv = shoal_msg_encode(m, b);
    if (rv)
        fprintf(stderr, "encode %s: %s\n", shoal_msg_type_name(m->type), shoal_strerror(rv));
    REQUIRE(rv == 0);
    REQUIRE(b->len > 4);
    size_t n = (size_t)b->data[0] << 24 | (size_t)b->data[1] << 16 | (size_t)b->data[2] << 8 |
               b->data[3];
    REQUIRE(n == b->len - 4);
}

static struct shoal_msg ma, mb; /* big (PEERS holds 256 entries): not on the stack */

static void test_roundtrip_every_type(void)
{
    bool seen[SHOAL_MSG_TYPE_END] = {false};
    for (size_t i = 0; i < NSAMPLES; i++) {
        sample(&ma, i);
        struct shoal_buf b, b2;
        encode_ok(&ma, &b);
        memset(&mb, 0xa5, sizeof mb);
        int rv = shoal_msg_decode(&mb, b.data + 4, b.len - 4);
        CHECK_EQ(rv, 0);
        if (rv == 0 && !msg_eq(&ma, &mb)) {
            fprintf(stderr, "  %s differs after round trip\n", shoal_msg_type_name(ma.type));
            CHECK(false);
        }
        seen[ma.type] = true;
        /* The decoded view re-encodes to the very same bytes. */
        encode_ok(&mb, &b2);
        CHECK(b2.len == b.len && memcmp(b2.data, b.data, b.len) == 0);
        shoal_buf_free(&b);
        shoal_buf_free(&b2);
    }
    int known = 0;
    for (uint32_t t = 0; t < SHOAL_MSG_TYPE_END; t++) {
        bool named = strcmp(shoal_msg_type_name(t), "UNKNOWN") != 0;
        CHECK(named == seen[t]);
        known += named;
    }
    CHECK_EQ(known, 13 + 22 + 4);
}

static void test_wire_layout(void)
{
    /* HAVE as the spec draws it: 4-byte length, then [4, bin32, 12345]. */
    uint8_t want[4 + 39] = {0, 0, 0, 39, 0x93, 0x04, 0xc4, 0x20};
    memcpy(want + 8, key(6), 32);
    want[40] = 0xcd, want[41] = 0x30, want[42] = 0x39;
    sample(&ma, 3);
    REQUIRE(ma.type == SHOAL_MSG_HAVE);
    struct shoal_buf b;
    encode_ok(&ma, &b);
    CHECK_EQ(b.len, sizeof want);
    CHECK(b.len == sizeof want && memcmp(b.data, want, sizeof want) == 0);
    shoal_buf_free(&b);
    CHECK(strcmp(shoal_msg_type_name(SHOAL_MSG_CHUNK), "CHUNK") == 0);
    CHECK(strcmp(shoal_msg_type_name(SHOAL_MSG_ROLLOUT_STATUS_REQ), "ROLLOUT_STATUS_REQ") == 0);
    CHECK(strcmp(shoal_msg_type_name(14), "UNKNOWN") == 0);
    CHECK(strcmp(shoal_msg_type_name(UINT32_MAX), "UNKNOWN") == 0);
}

static void test_every_truncation(void)
{
    int bad = 0;
    for (size_t i = 0; i < NSAMPLES; i++) {
        sample(&ma, i);
        struct shoal_buf b;
        encode_ok(&ma, &b);
        const uint8_t *body = b.data + 4;
        size_t len = b.len - 4;
        for (size_t cut = 0; cut < len; cut++) {
            int rv = shoal_msg_decode(&mb, body, cut);
            if (rv != SHOAL_ETRUNC) {
                fprintf(stderr, "  %s cut at %zu/%zu: %s\n", shoal_msg_type_name(ma.type), cut,
                        len, shoal_strerror(rv));
                bad++;
            }
        }
        shoal_buf_free(&b);
    }
    CHECK_EQ(bad, 0);
}

/* Copies the top-level array of |body| with item |k| replaced by |rep| (or
 * dropped when rep_len is 0); the array header is copied as it is. */
static size_t replace_item(const uint8_t *body, size_t len, uint32_t k, const uint8_t *rep,
                           size_t rep_len, uint8_t *out)
{
    struct shoal_mpr r;
    uint32_t n;
    shoal_mpr_init(&r, body, len);
    REQUIRE(shoal_mpr_array(&r, &n, 1000) == 0);
    REQUIRE(k < n);
    size_t o = (size_t)(r.p - body);
    memcpy(out, body, o);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *start = r.p;
        REQUIRE(shoal_mpr_skip(&r, 8) == 0);
        if (i == k) {
            if (rep_len)
                memcpy(out + o, rep, rep_len);
            o += rep_len;
        } else {
            memcpy(out + o, start, (size_t)(r.p - start));
            o += (size_t)(r.p - start);
        }
    }
    return o;
}

static bool is_int_byte(uint8_t t)
{
    return t <= 0x7f || t >= 0xe0 || (t >= 0xcc && t <= 0xd3);
}

static void test_wrong_field_type(void)
{
    static uint8_t out[1 << 16];
    static const uint8_t an_int[] = {0x05};
    static const uint8_t a_str[] = {0xa1, 'x'};
    int bad = 0;
    for (size_t i = 0; i < NSAMPLES; i++) {
        sample(&ma, i);
        struct shoal_buf b;
        encode_ok(&ma, &b);
        const uint8_t *body = b.data + 4;
        size_t len = b.len - 4;
        uint32_t n = (uint32_t)(body[0] & 0x0f);
        REQUIRE((body[0] & 0xf0) == 0x90);
        /* Each field, the type included, replaced by a value of another
         * type: an int where anything else was, a str where an int was. */
        for (uint32_t k = 0; k < n; k++) {
            struct shoal_mpr r;
            uint32_t cnt;
            shoal_mpr_init(&r, body, len);
            REQUIRE(shoal_mpr_array(&r, &cnt, 100) == 0);
            for (uint32_t s = 0; s < k; s++)
                REQUIRE(shoal_mpr_skip(&r, 8) == 0);
            bool was_int = is_int_byte(r.p[0]);
            size_t ol = replace_item(body, len, k, was_int ? a_str : an_int,
                                     was_int ? sizeof a_str : sizeof an_int, out);
            int rv = shoal_msg_decode(&mb, out, ol);
            if (rv != SHOAL_ETYPE) {
                fprintf(stderr, "  %s field %u: %s\n", shoal_msg_type_name(ma.type), k,
                        shoal_strerror(rv));
                bad++;
            }
        }
        shoal_buf_free(&b);
    }
    CHECK_EQ(bad, 0);
}

/* Builds a body with the writer and returns the decode result. */
static struct shoal_buf wb;
static struct shoal_mpw w;
static void wbegin(uint32_t nfields, uint32_t type)
{
    shoal_buf_free(&wb);
    shoal_buf_init(&wb, 4u << 20);
    shoal_mpw_init(&w, &wb);
    shoal_mpw_array(&w, nfields);
    shoal_mpw_uint(&w, type);
}
static int wdecode(void)
{
    REQUIRE(w.err == 0);
    return shoal_msg_decode(&mb, wb.data, wb.len);
}

static void test_nested_wrong_types(void)
{
    /* ANNOUNCE entry whose complete flag is a str. */
    wbegin(2, SHOAL_MSG_ANNOUNCE);
    shoal_mpw_array(&w, 1);
    shoal_mpw_array(&w, 4);
    shoal_mpw_bin(&w, key(1), 32);
    shoal_mpw_uint(&w, 1);
    shoal_mpw_uint(&w, 2);
    shoal_mpw_cstr(&w, "true");
    CHECK_EQ(wdecode(), SHOAL_ETYPE);
    /* PEERS entry that is not an array. */
    wbegin(3, SHOAL_MSG_PEERS);
    shoal_mpw_bin(&w, key(1), 32);
    shoal_mpw_array(&w, 1);
    shoal_mpw_uint(&w, 1);
    CHECK_EQ(wdecode(), SHOAL_ETYPE);
    /* LOADER_WANT path that is a bin. */
    wbegin(3, SHOAL_MSG_LOADER_WANT);
    shoal_mpw_cstr(&w, "org/m@r");
    shoal_mpw_array(&w, 2);
    shoal_mpw_cstr(&w, "a");
    shoal_mpw_bin(&w, "b", 1);
    CHECK_EQ(wdecode(), SHOAL_ETYPE);
    /* Negative integers where unsigned ones belong. */
    wbegin(2, SHOAL_MSG_CANCEL);
    shoal_mpw_int(&w, -1);
    CHECK_EQ(wdecode(), SHOAL_ETYPE);
    wbegin(1, (uint32_t)0);
    shoal_buf_reset(&wb);
    shoal_mpw_array(&w, 2);
    shoal_mpw_int(&w, -4);
    shoal_mpw_uint(&w, 1);
    CHECK_EQ(wdecode(), SHOAL_ETYPE);
    /* Nullable fields accept nil but not other types. */
    wbegin(3, SHOAL_MSG_GET_MANIFEST);
    shoal_mpw_nil(&w);
    shoal_mpw_bool(&w, true);
    CHECK_EQ(wdecode(), SHOAL_ETYPE);
}

static void test_over_limits(void)
{
    static char big[SHOAL_MSG_STATS_MAX + 2];
    memset(big, 'a', sizeof big);

    /* Strings one over their limit (by hand: the encoder refuses these). */
    wbegin(10, SHOAL_MSG_HELLO);
    shoal_mpw_uint(&w, 3);
    shoal_mpw_bin(&w, key(1), 32);
    shoal_mpw_bin(&w, big, SHOAL_MSG_CRED_MAX + 1);
    shoal_mpw_cstr(&w, "z");
    shoal_mpw_cstr(&w, "h:1");
    shoal_mpw_bin(&w, key(2), 32);
    shoal_mpw_bin(&w, key(3), 32);
    shoal_mpw_uint(&w, 0);
    shoal_mpw_uint(&w, 0);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);

    wbegin(2, SHOAL_MSG_BYE);
    shoal_mpw_str(&w, big, SHOAL_MSG_REASON_MAX + 1);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);
    wbegin(2, SHOAL_MSG_STATS);
    shoal_mpw_str(&w, big, SHOAL_MSG_STATS_MAX + 1);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);
    wbegin(2, SHOAL_MSG_STATS);
    shoal_mpw_str(&w, big, SHOAL_MSG_STATS_MAX);
    CHECK_EQ(wdecode(), 0);
    wbegin(3, SHOAL_MSG_ERROR);
    shoal_mpw_int(&w, 1);
    shoal_mpw_str(&w, big, SHOAL_MSG_ERROR_MAX + 1);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);
    wbegin(4, SHOAL_MSG_ROLLOUT);
    shoal_mpw_cstr(&w, "o/n@r");
    shoal_mpw_str(&w, big, SHOAL_MSG_ZONE_MAX + 1);
    shoal_mpw_bool(&w, false);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);

    /* Counts one over their limit. */
    wbegin(3, SHOAL_MSG_GET_PEERS);
    shoal_mpw_bin(&w, key(1), 32);
    shoal_mpw_uint(&w, SHOAL_MSG_PEERS_MAX + 1);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);
    wbegin(2, SHOAL_MSG_ANNOUNCE);
    shoal_mpw_array(&w, SHOAL_MSG_ANNOUNCE_MAX + 1);
    for (unsigned k = 0; k <= SHOAL_MSG_ANNOUNCE_MAX; k++) {
        shoal_mpw_array(&w, 4);
        shoal_mpw_bin(&w, key(1), 32);
        shoal_mpw_uint(&w, 1);
        shoal_mpw_uint(&w, 1);
        shoal_mpw_bool(&w, true);
    }
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);
    wbegin(3, SHOAL_MSG_PEERS);
    shoal_mpw_bin(&w, key(1), 32);
    shoal_mpw_array(&w, SHOAL_MSG_PEERS_MAX + 1);
    for (unsigned k = 0; k <= SHOAL_MSG_PEERS_MAX; k++)
        shoal_mpw_nil(&w);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);
    wbegin(3, SHOAL_MSG_ANNOUNCE_REPLY);
    shoal_mpw_uint(&w, 1);
    shoal_mpw_array(&w, SHOAL_MSG_DESIRED_MAX + 1);
    for (unsigned k = 0; k <= SHOAL_MSG_DESIRED_MAX; k++)
        shoal_mpw_nil(&w);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);
    /* A count far above the bytes present is refused before any walk. */
    wbegin(2, SHOAL_MSG_ANNOUNCE);
    shoal_buf_append(&wb, "\xdd\x7f\xff\xff\xff", 5);
    CHECK(wdecode() == SHOAL_ETOOBIG);

    /* LOADER_WANT: exactly 100,000 paths pass, 100,001 do not. */
    for (unsigned extra = 0; extra <= 1; extra++) {
        wbegin(3, SHOAL_MSG_LOADER_WANT);
        shoal_mpw_cstr(&w, "org/m@r");
        shoal_mpw_array(&w, SHOAL_MSG_ORDER_MAX + extra);
        for (unsigned k = 0; k < SHOAL_MSG_ORDER_MAX + extra; k++)
            shoal_mpw_str(&w, "p", 1);
        CHECK_EQ(wdecode(), extra ? SHOAL_ETOOBIG : 0);
        if (!extra)
            CHECK_EQ(mb.u.loader_want.order.count, SHOAL_MSG_ORDER_MAX);
    }
    wbegin(3, SHOAL_MSG_LOADER_WANT);
    shoal_mpw_cstr(&w, "org/m@r");
    shoal_mpw_array(&w, 1);
    shoal_mpw_str(&w, big, SHOAL_MSG_PATH_MAX + 1);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);

    /* Values above their range. */
    wbegin(4, SHOAL_MSG_HAVE_BITFIELD);
    shoal_mpw_bin(&w, key(1), 32);
    shoal_mpw_uint(&w, SHOAL_MSG_NCHUNKS_MAX + 1);
    shoal_mpw_bin(&w, big, 1);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);
    wbegin(6, SHOAL_MSG_CHUNK);
    shoal_mpw_uint(&w, 1);
    shoal_mpw_bin(&w, key(1), 32);
    shoal_mpw_uint(&w, 256); /* codec: a byte */
    shoal_mpw_uint(&w, 1);
    shoal_mpw_bin(&w, big, 1);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);
    /* A codec this build does not know decodes: the receiver refuses it
     * as version skew, naming it, rather than as a malformed frame. */
    wbegin(6, SHOAL_MSG_CHUNK);
    shoal_mpw_uint(&w, 1);
    shoal_mpw_bin(&w, key(1), 32);
    shoal_mpw_uint(&w, 3); /* codec */
    shoal_mpw_uint(&w, 1);
    shoal_mpw_bin(&w, big, 1);
    CHECK_EQ(wdecode(), 0);
    CHECK_EQ(mb.u.chunk.codec, 3);
    wbegin(6, SHOAL_MSG_CHUNK);
    shoal_mpw_uint(&w, 1);
    shoal_mpw_bin(&w, key(1), 32);
    shoal_mpw_uint(&w, 1);
    shoal_mpw_uint(&w, SHOAL_MSG_RAW_MAX + 1);
    shoal_mpw_bin(&w, big, 1);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);
    wbegin(2, SHOAL_MSG_CANCEL);
    shoal_mpw_uint(&w, 1ULL << 32);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);
    wbegin(3, SHOAL_MSG_ERROR);
    shoal_mpw_int(&w, (int64_t)INT32_MIN - 1);
    shoal_mpw_cstr(&w, "m");
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);
    wbegin(3, SHOAL_MSG_ERROR);
    shoal_mpw_int(&w, INT32_MIN);
    shoal_mpw_cstr(&w, "m");
    CHECK_EQ(wdecode(), 0);
    CHECK_EQ(mb.u.error.code, INT32_MIN);

    /* A declared bin length beyond its limit is refused even when the bytes
     * are not there (no reading ahead on a lying length). */
    wbegin(2, SHOAL_MSG_PUT_MANIFEST);
    shoal_buf_append(&wb, "\xc6\x04\x00\x00\x01", 5);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);
}

/* How many of |type|'s last fields are optional. */
static uint32_t opt_fields(uint32_t type)
{
    switch (type) {
    case SHOAL_MSG_TRK_AUTH: return 4;
    case SHOAL_MSG_LEASE_REQ: return 3;
    case SHOAL_MSG_BYE: return 2;
    case SHOAL_MSG_ROLLOUT_STATUS: return 3;
    case SHOAL_MSG_ROLLOUT:
    case SHOAL_MSG_ANNOUNCE_REPLY:
    case SHOAL_MSG_HAVE_BITFIELD:
    case SHOAL_MSG_TRK_CHALLENGE:
    case SHOAL_MSG_TRK_PROOF: return 1;
    default: return 0;
    }
}

/* Clears optional field |k| (0: the first optional one) of |m|, as a
 * sender that left it out. */
static void clear_opt(struct shoal_msg *m, uint32_t k)
{
    switch (m->type) {
    case SHOAL_MSG_TRK_AUTH:
        if (k == 0)
            m->u.trk_auth.has_session = false;
        else if (k == 1)
            m->u.trk_auth.has_client_nonce = false;
        else if (k == 2)
            m->u.trk_auth.has_client_eph = false;
        else
            m->u.trk_auth.has_publisher = false;
        break;
    case SHOAL_MSG_ANNOUNCE_REPLY: m->u.announce_reply.nroles = 0; break;
    case SHOAL_MSG_HAVE_BITFIELD: m->u.have_bitfield.flags = 0; break;
    case SHOAL_MSG_LEASE_REQ:
        if (k == 0)
            m->u.lease_req.flags = 0;
        else if (k == 1)
            m->u.lease_req.claim_count = 0;
        else
            m->u.lease_req.claim_ms = 0;
        break;
    case SHOAL_MSG_TRK_CHALLENGE: m->u.trk_challenge.has_boot = false; break;
    case SHOAL_MSG_TRK_PROOF: m->u.trk_proof.has_tracker_eph = false; break;
    case SHOAL_MSG_ROLLOUT: m->u.rollout.has_ref = false; break;
    case SHOAL_MSG_ROLLOUT_STATUS:
        if (k == 0)
            m->u.rollout_status.gone_lost = 0;
        else if (k == 1)
            m->u.rollout_status.gone_left = 0;
        else
            m->u.rollout_status.gone_refused = 0;
        break;
    case SHOAL_MSG_BYE:
        if (k == 0)
            m->u.bye.has_chunk = false;
        else
            m->u.bye.chunk_index = 0;
        break;
    default: break;
    }
}

static void test_field_counts_and_junk(void)
{
    int bad = 0;
    static uint8_t out[1 << 16];
    for (size_t i = 0; i < NSAMPLES; i++) {
        sample(&ma, i);
        struct shoal_buf b;
        encode_ok(&ma, &b);
        uint8_t *body = b.data + 4;
        size_t len = b.len - 4;
        /* Junk after the array. */
        memcpy(out, body, len);
        out[len] = 0xc0;
        bad += shoal_msg_decode(&mb, out, len + 1) != SHOAL_EPROTO;
        /* One field short (the array count lowered, the last item dropped). */
        uint32_t n = body[0] & 0x0f;
        /* The last fields of some messages are optional (an older sender
         * leaves them out): the message decodes without each of them, the
         * last first; one field more short does not. */
        uint32_t nopt = opt_fields(ma.type);
        static uint8_t cur[1 << 16], nxt[1 << 16];
        static struct shoal_msg want;
        size_t cl = len;
        memcpy(cur, body, len);
        want = ma;
        for (uint32_t d = 1; n > d && d <= nopt + 1; d++) {
            cl = replace_item(cur, cl, n - d, NULL, 0, nxt);
            nxt[0] = (uint8_t)(0x90 | (n - d));
            memcpy(cur, nxt, cl);
            if (d > nopt) {
                bad += shoal_msg_decode(&mb, cur, cl) != SHOAL_EPROTO;
                break;
            }
            clear_opt(&want, nopt - d);
            bad += shoal_msg_decode(&mb, cur, cl) != 0 || !msg_eq(&want, &mb);
        }
        /* Unknown trailing fields are skipped (a newer peer)... */
        memcpy(out, body, len);
        out[0] = (uint8_t)(0x90 | (n + 2));
        memcpy(out + len, "\x92\xa1x\x07\xc0", 5);
        int rv = shoal_msg_decode(&mb, out, len + 5);
        bad += rv != 0 || !msg_eq(&ma, &mb);
        shoal_buf_free(&b);
    }
    CHECK_EQ(bad, 0);
    /* ...but not without bound. */
    wbegin(2 + SHOAL_MSG_EXTRA_MAX, SHOAL_MSG_CANCEL);
    shoal_mpw_uint(&w, 5);
    for (unsigned k = 0; k < SHOAL_MSG_EXTRA_MAX; k++)
        shoal_mpw_nil(&w);
    CHECK_EQ(wdecode(), 0);
    CHECK_EQ(mb.u.cancel.req_id, 5);
    wbegin(3 + SHOAL_MSG_EXTRA_MAX, SHOAL_MSG_CANCEL);
    shoal_mpw_uint(&w, 5);
    for (unsigned k = 0; k <= SHOAL_MSG_EXTRA_MAX; k++)
        shoal_mpw_nil(&w);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);
    /* List elements may grow too. */
    wbegin(2, SHOAL_MSG_ANNOUNCE);
    shoal_mpw_array(&w, 1);
    shoal_mpw_array(&w, 5);
    shoal_mpw_bin(&w, key(1), 32);
    shoal_mpw_uint(&w, 1);
    shoal_mpw_uint(&w, 2);
    shoal_mpw_bool(&w, false);
    shoal_mpw_cstr(&w, "future");
    CHECK_EQ(wdecode(), 0);
    CHECK_EQ(mb.u.announce.count, 1);
    CHECK_EQ(mb.u.announce.entries[0].total_chunks, 2);
    /* An empty array, and a bare non-array body. */
    CHECK_EQ(shoal_msg_decode(&mb, (const uint8_t *)"\x90", 1), SHOAL_EPROTO);
    CHECK_EQ(shoal_msg_decode(&mb, (const uint8_t *)"\x04", 1), SHOAL_ETYPE);
    CHECK_EQ(shoal_msg_decode(&mb, (const uint8_t *)"", 0), SHOAL_ETRUNC);
}

/* ANNOUNCE_REPLY roles: a reply from a tracker without roles (no third
 * field) means no role for anything; a role list is checked as strictly
 * as the rest. */
static void test_announce_reply_roles(void)
{
    /* [35, 1000, [[id, "o/m@c"]]]: the shape trackers sent before roles. */
    wbegin(3, SHOAL_MSG_ANNOUNCE_REPLY);
    shoal_mpw_uint(&w, 1000);
    shoal_mpw_array(&w, 1);
    shoal_mpw_array(&w, 2);
    shoal_mpw_bin(&w, key(1), 32);
    shoal_mpw_cstr(&w, "o/m@c");
    CHECK_EQ(wdecode(), 0);
    CHECK_EQ(mb.u.announce_reply.interval_ms, 1000);
    CHECK_EQ(mb.u.announce_reply.count, 1);
    CHECK_EQ(mb.u.announce_reply.nroles, 0);

    /* [fetcher, import_mod, import_rem] combinations. */
    static const struct {
        bool fetcher;
        uint64_t mod, rem;
        int want;
    } cases[] = {
        { true, 0, 0, 0 },
        { false, 4, 3, 0 },
        { true, 255, 254, 0 },
        { false, 0, 0, 0 },
        { false, 4, 4, SHOAL_EBADMSG },   /* share outside the modulus */
        { false, 0, 1, SHOAL_EBADMSG },   /* a remainder without a share */
        { false, 256, 1, SHOAL_ETOOBIG }, /* above SHOAL_MSG_IMPORT_MAX */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wbegin(4, SHOAL_MSG_ANNOUNCE_REPLY);
        shoal_mpw_uint(&w, 1000);
        shoal_mpw_array(&w, 0);
        shoal_mpw_array(&w, 1);
        shoal_mpw_array(&w, 4);
        shoal_mpw_bin(&w, key(2), 32);
        shoal_mpw_bool(&w, cases[i].fetcher);
        shoal_mpw_uint(&w, cases[i].mod);
        shoal_mpw_uint(&w, cases[i].rem);
        CHECK_EQ(wdecode(), cases[i].want);
        if (cases[i].want == 0) {
            CHECK_EQ(mb.u.announce_reply.nroles, 1);
            CHECK(memcmp(mb.u.announce_reply.roles[0].manifest_id, key(2), 32) == 0);
            CHECK_EQ(mb.u.announce_reply.roles[0].fetcher, cases[i].fetcher);
            CHECK_EQ(mb.u.announce_reply.roles[0].import_mod, cases[i].mod);
            CHECK_EQ(mb.u.announce_reply.roles[0].import_rem, cases[i].rem);
        }
    }
    /* More roles than an announce may list manifests. */
    wbegin(4, SHOAL_MSG_ANNOUNCE_REPLY);
    shoal_mpw_uint(&w, 1000);
    shoal_mpw_array(&w, 0);
    shoal_mpw_array(&w, SHOAL_MSG_ANNOUNCE_MAX + 1);
    for (unsigned k = 0; k <= SHOAL_MSG_ANNOUNCE_MAX; k++)
        shoal_mpw_nil(&w);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);
    /* A role element missing its last field. */
    wbegin(4, SHOAL_MSG_ANNOUNCE_REPLY);
    shoal_mpw_uint(&w, 1000);
    shoal_mpw_array(&w, 0);
    shoal_mpw_array(&w, 1);
    shoal_mpw_array(&w, 3);
    shoal_mpw_bin(&w, key(2), 32);
    shoal_mpw_bool(&w, true);
    shoal_mpw_uint(&w, 0);
    CHECK_EQ(wdecode(), SHOAL_EPROTO);
}

/* TRK_AUTH's session id: exactly SHOAL_MSG_SESSION_LEN bytes, nil, or
 * left out by a client that predates it; nothing else. */
static void trk_auth_head(uint32_t nfields)
{
    wbegin(nfields, SHOAL_MSG_TRK_AUTH);
    shoal_mpw_bin(&w, key(13), 32);
    shoal_mpw_bin(&w, blob(10), 10);
    shoal_mpw_bin(&w, key(14), 64);
    shoal_mpw_cstr(&w, "z");
    shoal_mpw_cstr(&w, "10.0.0.1:7400");
    shoal_mpw_uint(&w, SHOAL_ROLE_NODE);
}

static void test_trk_auth_session(void)
{
    /* The six fields clients sent before session ids. */
    trk_auth_head(7);
    CHECK_EQ(wdecode(), 0);
    CHECK(!mb.u.trk_auth.has_session);
    CHECK_EQ(mb.u.trk_auth.role, SHOAL_ROLE_NODE);
    /* nil: no session either. */
    trk_auth_head(8);
    shoal_mpw_nil(&w);
    CHECK_EQ(wdecode(), 0);
    CHECK(!mb.u.trk_auth.has_session);
    /* 16 bytes: the daemon's id, kept as sent. */
    trk_auth_head(8);
    shoal_mpw_bin(&w, key(42), SHOAL_MSG_SESSION_LEN);
    CHECK_EQ(wdecode(), 0);
    CHECK(mb.u.trk_auth.has_session);
    CHECK(memcmp(mb.u.trk_auth.session, key(42), SHOAL_MSG_SESSION_LEN) == 0);
    /* A client nonce after it: 32 bytes or nil. */
    trk_auth_head(9);
    shoal_mpw_nil(&w);
    shoal_mpw_bin(&w, key(44), 32);
    CHECK_EQ(wdecode(), 0);
    CHECK(!mb.u.trk_auth.has_session);
    CHECK(mb.u.trk_auth.has_client_nonce);
    CHECK(memcmp(mb.u.trk_auth.client_nonce, key(44), 32) == 0);
    trk_auth_head(9);
    shoal_mpw_bin(&w, key(42), SHOAL_MSG_SESSION_LEN);
    shoal_mpw_bin(&w, key(44), 31);
    CHECK_EQ(wdecode(), SHOAL_EBADMSG);
    /* The publisher's signing key (shoal publish asks whether the tracker
     * trusts it): 32 bytes or nil, after the ephemeral key. */
    trk_auth_head(11);
    shoal_mpw_nil(&w);
    shoal_mpw_nil(&w);
    shoal_mpw_nil(&w);
    shoal_mpw_bin(&w, key(50), 32);
    CHECK_EQ(wdecode(), 0);
    CHECK(mb.u.trk_auth.has_publisher);
    CHECK(memcmp(mb.u.trk_auth.publisher_pk, key(50), 32) == 0);
    trk_auth_head(11);
    shoal_mpw_nil(&w);
    shoal_mpw_nil(&w);
    shoal_mpw_nil(&w);
    shoal_mpw_bin(&w, key(50), 33);
    CHECK_EQ(wdecode(), SHOAL_EBADMSG);
    /* and a field a newer client appends after them is skipped. */
    trk_auth_head(12);
    shoal_mpw_bin(&w, key(42), SHOAL_MSG_SESSION_LEN);
    shoal_mpw_nil(&w);
    shoal_mpw_bin(&w, key(48), 32);
    shoal_mpw_nil(&w);
    shoal_mpw_cstr(&w, "future");
    CHECK_EQ(wdecode(), 0);
    CHECK(mb.u.trk_auth.has_session);
    CHECK(!mb.u.trk_auth.has_client_nonce);
    CHECK(mb.u.trk_auth.has_client_eph);
    CHECK(!mb.u.trk_auth.has_publisher);
    CHECK(memcmp(mb.u.trk_auth.client_eph, key(48), 32) == 0);
    /* Any other length, even one byte off, is refused. */
    static const uint32_t bad_len[] = {0, 1, SHOAL_MSG_SESSION_LEN - 1,
                                       SHOAL_MSG_SESSION_LEN + 1, 32};
    for (size_t i = 0; i < sizeof bad_len / sizeof bad_len[0]; i++) {
        trk_auth_head(8);
        shoal_mpw_bin(&w, key(42), bad_len[i]);
        CHECK_EQ(wdecode(), SHOAL_EBADMSG);
    }
    /* A declared length with no bytes behind it reads nothing. */
    trk_auth_head(8);
    shoal_buf_append(&wb, "\xc6\xff\xff\xff\xff", 5);
    CHECK_EQ(wdecode(), SHOAL_ETRUNC);
    /* Not a bin or nil. */
    trk_auth_head(8);
    shoal_mpw_cstr(&w, "0123456789abcdef");
    CHECK_EQ(wdecode(), SHOAL_ETYPE);
    trk_auth_head(8);
    shoal_mpw_bool(&w, false);
    CHECK_EQ(wdecode(), SHOAL_ETYPE);
    /* Encoded: a session as a 16-byte bin, none as nil (never left out, so
     * a decoder cannot mistake the next field for it). */
    memset(&ma, 0, sizeof ma);
    ma.type = SHOAL_MSG_TRK_AUTH;
    ma.u.trk_auth.zone = S("z");
    ma.u.trk_auth.listen_addr = S("h:1");
    struct shoal_buf b;
    encode_ok(&ma, &b);
    CHECK_EQ(b.data[4], 0x9b); /* type and ten fields */
    CHECK_EQ(b.data[b.len - 4], 0xc0);
    CHECK_EQ(b.data[b.len - 3], 0xc0);
    CHECK_EQ(b.data[b.len - 2], 0xc0);
    CHECK_EQ(b.data[b.len - 1], 0xc0);
    shoal_buf_free(&b);
    ma.u.trk_auth.has_session = true;
    memcpy(ma.u.trk_auth.session, key(43), SHOAL_MSG_SESSION_LEN);
    encode_ok(&ma, &b);
    CHECK_EQ(b.data[4], 0x9b); /* type and ten fields */
    CHECK(b.len > 21 && b.data[b.len - 21] == 0xc4 && b.data[b.len - 20] == 16 &&
          memcmp(b.data + b.len - 19, key(43), 16) == 0 && b.data[b.len - 3] == 0xc0 &&
          b.data[b.len - 2] == 0xc0 && b.data[b.len - 1] == 0xc0);
    shoal_buf_free(&b);
}

/* BYE's optional chunk: left out by an older sender, named, or nil with
 * index 0; a nil id with another index is refused. A node that predates
 * it skips both (they are unknown trailing fields there). */
static void test_bye_chunk(void)
{
    wbegin(2, SHOAL_MSG_BYE);
    shoal_mpw_cstr(&w, "shutting down");
    CHECK_EQ(wdecode(), 0);
    CHECK(!mb.u.bye.has_chunk);
    CHECK_EQ(mb.u.bye.chunk_index, 0u);

    wbegin(4, SHOAL_MSG_BYE);
    shoal_mpw_cstr(&w, "banned");
    shoal_mpw_bin(&w, key(3), 32);
    shoal_mpw_uint(&w, 123456);
    CHECK_EQ(wdecode(), 0);
    CHECK(mb.u.bye.has_chunk);
    CHECK(memcmp(mb.u.bye.manifest_id, key(3), 32) == 0);
    CHECK_EQ(mb.u.bye.chunk_index, 123456u);

    wbegin(4, SHOAL_MSG_BYE);
    shoal_mpw_cstr(&w, "banned");
    shoal_mpw_nil(&w);
    shoal_mpw_uint(&w, 0);
    CHECK_EQ(wdecode(), 0);
    CHECK(!mb.u.bye.has_chunk);

    wbegin(4, SHOAL_MSG_BYE);
    shoal_mpw_cstr(&w, "banned");
    shoal_mpw_nil(&w);
    shoal_mpw_uint(&w, 5);
    CHECK_EQ(wdecode(), SHOAL_EBADMSG);

    wbegin(4, SHOAL_MSG_BYE);
    shoal_mpw_cstr(&w, "banned");
    shoal_mpw_bin(&w, key(3), 31);
    shoal_mpw_uint(&w, 5);
    CHECK_EQ(wdecode(), SHOAL_EBADMSG);

    /* The encoder keeps to the same rule. */
    struct shoal_msg m;
    struct shoal_buf b;
    memset(&m, 0, sizeof m);
    m.type = SHOAL_MSG_BYE;
    m.u.bye.text.p = "x";
    m.u.bye.text.len = 1;
    m.u.bye.chunk_index = 2;
    shoal_buf_init(&b, 1024);
    CHECK_EQ(shoal_msg_encode(&m, &b), SHOAL_EBADMSG);
    shoal_buf_free(&b);
}

static void test_unknown_type(void)
{
    static const uint64_t types[] = {0, 14, 31, 54, 63, 68, 79, 255, 1u << 20, 1ULL << 40};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        wbegin(2, 0);
        shoal_buf_reset(&wb);
        shoal_mpw_array(&w, 2);
        shoal_mpw_uint(&w, types[i]);
        shoal_mpw_uint(&w, 1);
        CHECK_EQ(wdecode(), SHOAL_EPROTO);
    }
    ma.type = 14;
    struct shoal_buf b;
    shoal_buf_init(&b, 1 << 20);
    CHECK_EQ(shoal_msg_encode(&ma, &b), SHOAL_EPROTO);
    CHECK_EQ(b.len, 0);
    shoal_buf_free(&b);
}

/* Encodes sample |i| after |mutate| and decodes it, returning the decode
 * result; the encoder must refuse the same message with |enc_want|. */
static int bad_value(size_t i, void (*mutate)(struct shoal_msg *), int enc_want)
{
    sample(&ma, i);
    struct shoal_buf b;
    encode_ok(&ma, &b);
    int rv = shoal_msg_decode(&mb, b.data + 4, b.len - 4);
    REQUIRE(rv == 0);
    /* Mutate the decoded view: its strings still point into |b|. */
    mutate(&mb);
    struct shoal_buf out;
    shoal_buf_init(&out, 1 << 20);
    REQUIRE(shoal_buf_append(&out, "keep", 4) == 0);
    CHECK_EQ(shoal_msg_encode(&mb, &out), enc_want);
    CHECK_EQ(out.len, 4); /* left as it was */
    shoal_buf_free(&out);
    shoal_buf_free(&b);
    return enc_want;
}

static size_t idx_of(uint32_t type)
{
    for (size_t i = 0; i < NSAMPLES; i++)
        if (sample_types[i] == type)
            return i;
    REQUIRE(!"no sample");
    return 0;
}

static void mut_zone_long(struct shoal_msg *m) { m->u.hello.zone.len = SHOAL_MSG_ZONE_MAX + 1; }
static void mut_bits_len(struct shoal_msg *m) { m->u.have_bitfield.nchunks = 25; }
static void mut_raw_len(struct shoal_msg *m) { m->u.chunk.codec = SHOAL_CODEC_RAW; }
static void mut_both(struct shoal_msg *m) { m->u.get_manifest.has_repo = true;
                                            m->u.get_manifest.repo_at_rev.p = "o/n@r";
                                            m->u.get_manifest.repo_at_rev.len = 5; }
static void mut_neither(struct shoal_msg *m) { m->u.get_manifest.has_id = false; }
static void mut_reason(struct shoal_msg *m) { m->u.reject.reason = 0; }
static void mut_role(struct shoal_msg *m) { m->u.trk_auth.role = 3; }
static void mut_index(struct shoal_msg *m) { m->u.loader_file.index = 2; }
static void mut_have(struct shoal_msg *m) { m->u.announce.entries[0].have_chunks = 201; }
static void mut_peers(struct shoal_msg *m) { m->u.peers.count = SHOAL_MSG_PEERS_MAX + 1; }
static void mut_paths(struct shoal_msg *m) { m->u.loader_want.order.count = 4; }
static void mut_addr(struct shoal_msg *m) { m->u.hello.listen_addr.len = 9; } /* "10.0.0.7:" */

static void test_encoder_refuses(void)
{
    bad_value(idx_of(SHOAL_MSG_HELLO), mut_zone_long, SHOAL_ETOOBIG);
    bad_value(idx_of(SHOAL_MSG_HELLO), mut_addr, SHOAL_EBADMSG);
    bad_value(idx_of(SHOAL_MSG_HAVE_BITFIELD), mut_bits_len, SHOAL_EBADMSG);
    bad_value(idx_of(SHOAL_MSG_CHUNK), mut_raw_len, SHOAL_EBADMSG);
    bad_value(idx_of(SHOAL_MSG_GET_MANIFEST), mut_both, SHOAL_EBADMSG);
    bad_value(idx_of(SHOAL_MSG_GET_MANIFEST), mut_neither, SHOAL_EBADMSG);
    bad_value(idx_of(SHOAL_MSG_REJECT), mut_reason, SHOAL_EBADMSG);
    bad_value(idx_of(SHOAL_MSG_TRK_AUTH), mut_role, SHOAL_ETOOBIG);
    bad_value(idx_of(SHOAL_MSG_LOADER_FILE), mut_index, SHOAL_EBADMSG);
    bad_value(idx_of(SHOAL_MSG_ANNOUNCE), mut_have, SHOAL_EBADMSG);
    bad_value(idx_of(SHOAL_MSG_PEERS), mut_peers, SHOAL_ETOOBIG);
    /* A decoded path list re-sent with a count that does not match it. */
    bad_value(idx_of(SHOAL_MSG_LOADER_WANT), mut_paths, SHOAL_EBADMSG);

    /* An output cap is reported, not overrun. */
    sample(&ma, idx_of(SHOAL_MSG_PUT_MANIFEST));
    struct shoal_buf small;
    shoal_buf_init(&small, 100);
    CHECK_EQ(shoal_msg_encode(&ma, &small), SHOAL_ELIMIT);
    CHECK_EQ(small.len, 0);
    shoal_buf_free(&small);
}

/* Hand-encoded messages that type-check but break a rule: SHOAL_EBADMSG. */
static void test_rule_violations(void)
{
    /* Key and signature sizes. */
    wbegin(3, SHOAL_MSG_HAVE);
    shoal_mpw_bin(&w, key(1), 31);
    shoal_mpw_uint(&w, 1);
    CHECK_EQ(wdecode(), SHOAL_EBADMSG);
    wbegin(3, SHOAL_MSG_HAVE);
    shoal_mpw_bin(&w, key(1), 33);
    shoal_mpw_uint(&w, 1);
    CHECK_EQ(wdecode(), SHOAL_EBADMSG);
    wbegin(2, SHOAL_MSG_HELLO_AUTH);
    shoal_mpw_bin(&w, key(1), 63);
    CHECK_EQ(wdecode(), SHOAL_EBADMSG);

    /* Bitfield: length must match nchunks, spare bits must be zero. */
    static const uint8_t bits[3] = {0xff, 0xff, 0xf8};
    for (int variant = 0; variant < 4; variant++) {
        wbegin(4, SHOAL_MSG_HAVE_BITFIELD);
        shoal_mpw_bin(&w, key(1), 32);
        static const uint32_t nch[4] = {21, 21, 24, 20};
        static const int want[4] = {0, SHOAL_EBADMSG, 0, SHOAL_EBADMSG};
        shoal_mpw_uint(&w, nch[variant]);
        shoal_mpw_bin(&w, bits, variant == 1 ? 2 : 3);
        CHECK_EQ(wdecode(), want[variant]);
    }
    wbegin(4, SHOAL_MSG_HAVE_BITFIELD);
    shoal_mpw_bin(&w, key(1), 32);
    shoal_mpw_uint(&w, 0);
    shoal_mpw_bin(&w, bits, 0);
    CHECK_EQ(wdecode(), 0);

    /* Raw CHUNK payload must be raw_len bytes. */
    wbegin(6, SHOAL_MSG_CHUNK);
    shoal_mpw_uint(&w, 1);
    shoal_mpw_bin(&w, key(1), 32);
    shoal_mpw_uint(&w, SHOAL_CODEC_RAW);
    shoal_mpw_uint(&w, 4);
    shoal_mpw_bin(&w, "abc", 3);
    CHECK_EQ(wdecode(), SHOAL_EBADMSG);

    /* GET_MANIFEST needs exactly one of its two keys. */
    wbegin(3, SHOAL_MSG_GET_MANIFEST);
    shoal_mpw_nil(&w);
    shoal_mpw_nil(&w);
    CHECK_EQ(wdecode(), SHOAL_EBADMSG);
    wbegin(3, SHOAL_MSG_GET_MANIFEST);
    shoal_mpw_bin(&w, key(1), 32);
    shoal_mpw_cstr(&w, "o/n@r");
    CHECK_EQ(wdecode(), SHOAL_EBADMSG);
    wbegin(3, SHOAL_MSG_GET_MANIFEST);
    shoal_mpw_nil(&w);
    shoal_mpw_cstr(&w, "o/n@r");
    CHECK_EQ(wdecode(), 0);
    CHECK(!mb.u.get_manifest.has_id && mb.u.get_manifest.has_repo);

    /* Strings: bad UTF-8, NUL, bad addresses, empty required strings. */
    static const struct { const char *s; size_t n; int want; } strs[] = {
        { "eu-west", 7, 0 },
        { "\xc3\xbc", 2, 0 },            /* ü */
        { "\xf0\x9f\x90\x9f", 4, 0 },    /* U+1F41F */
        { "a\0b", 3, SHOAL_EBADMSG },
        { "\xc3", 1, SHOAL_EBADMSG },    /* cut sequence */
        { "\xc0\xaf", 2, SHOAL_EBADMSG },/* overlong */
        { "\xed\xa0\x80", 3, SHOAL_EBADMSG }, /* surrogate */
        { "\xf4\x90\x80\x80", 4, SHOAL_EBADMSG }, /* above U+10FFFF */
        { "\xff", 1, SHOAL_EBADMSG },
    };
    for (size_t k = 0; k < sizeof strs / sizeof strs[0]; k++) {
        wbegin(2, SHOAL_MSG_BYE);
        shoal_mpw_str(&w, strs[k].s, strs[k].n);
        CHECK_EQ(wdecode(), strs[k].want);
    }
    static const struct { const char *s; int want; } addrs[] = {
        { "10.0.0.1:7400", 0 }, { "h:1", 0 }, { "[::1]:65535", 0 }, { "a.b.c:80", 0 },
        { "", SHOAL_EBADMSG }, { "host", SHOAL_EBADMSG }, { ":80", SHOAL_EBADMSG },
        { "h:", SHOAL_EBADMSG }, { "h:0", SHOAL_EBADMSG }, { "h:65536", SHOAL_EBADMSG },
        { "h:123456", SHOAL_EBADMSG }, { "h:8x", SHOAL_EBADMSG }, { "[::1:80", SHOAL_EBADMSG },
        { "::1]:80", SHOAL_EBADMSG }, { "[]:80", SHOAL_EBADMSG },
    };
    for (size_t k = 0; k < sizeof addrs / sizeof addrs[0]; k++) {
        wbegin(3, SHOAL_MSG_PEERS);
        shoal_mpw_bin(&w, key(1), 32);
        shoal_mpw_array(&w, 1);
        shoal_mpw_array(&w, 5);
        shoal_mpw_bin(&w, key(2), 32);
        shoal_mpw_cstr(&w, addrs[k].s);
        shoal_mpw_cstr(&w, "z");
        shoal_mpw_bool(&w, true);
        shoal_mpw_uint(&w, 3);
        int rv = wdecode();
        if (rv != addrs[k].want)
            fprintf(stderr, "  addr \"%s\": %s\n", addrs[k].s, shoal_strerror(rv));
        CHECK_EQ(rv, addrs[k].want);
    }
    wbegin(2, SHOAL_MSG_ROLLOUT_STATUS_REQ);
    shoal_mpw_cstr(&w, "");
    CHECK_EQ(wdecode(), SHOAL_EBADMSG);
    wbegin(3, SHOAL_MSG_LOADER_WANT);
    shoal_mpw_cstr(&w, "o/n@r");
    shoal_mpw_array(&w, 2);
    shoal_mpw_cstr(&w, "a");
    shoal_mpw_cstr(&w, "");
    CHECK_EQ(wdecode(), SHOAL_EBADMSG);

    /* Enumerations and cross-field rules. */
    wbegin(4, SHOAL_MSG_REJECT);
    shoal_mpw_uint(&w, 1);
    shoal_mpw_uint(&w, 0);
    shoal_mpw_uint(&w, 0);
    CHECK_EQ(wdecode(), SHOAL_EBADMSG);
    wbegin(4, SHOAL_MSG_REJECT);
    shoal_mpw_uint(&w, 1);
    shoal_mpw_uint(&w, 6);
    shoal_mpw_uint(&w, 0);
    CHECK_EQ(wdecode(), SHOAL_ETOOBIG);
    wbegin(6, SHOAL_MSG_LOADER_FILE);
    shoal_mpw_cstr(&w, "f");
    shoal_mpw_uint(&w, 1);
    shoal_mpw_bin(&w, key(1), 32);
    shoal_mpw_uint(&w, 3);
    shoal_mpw_uint(&w, 3);
    CHECK_EQ(wdecode(), SHOAL_EBADMSG);
    wbegin(2, SHOAL_MSG_ANNOUNCE);
    shoal_mpw_array(&w, 1);
    shoal_mpw_array(&w, 4);
    shoal_mpw_bin(&w, key(1), 32);
    shoal_mpw_uint(&w, 3);
    shoal_mpw_uint(&w, 2);
    shoal_mpw_bool(&w, false);
    CHECK_EQ(wdecode(), SHOAL_EBADMSG);
}

/* CHUNK as the node sends it: [header][payload] in two buffers. */
struct chunk_seen {
    int frames;
    int rv;
    bool inside;
    uint32_t len;
    bool same_bytes;
    const uint8_t *payload;
};

static int on_chunk_frame(void *user, const uint8_t *body, size_t len)
{
    struct chunk_seen *cs = user;
    static struct shoal_msg m;
    cs->frames++;
    cs->rv = shoal_msg_decode(&m, body, len);
    if (cs->rv == 0 && m.type == SHOAL_MSG_CHUNK) {
        const uint8_t *p = m.u.chunk.payload.p;
        cs->inside = p >= body && p + m.u.chunk.payload.len == body + len;
        cs->len = m.u.chunk.payload.len;
        cs->same_bytes = memcmp(p, cs->payload, cs->len) == 0;
        cs->inside = cs->inside && m.u.chunk.req_id == 4242 && m.u.chunk.raw_len == cs->len;
    }
    return 0;
}

static void test_chunk_header_only(void)
{
    static uint8_t payload[200000];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7u + 1u);
    struct shoal_msg_chunk c = {
        .req_id = 4242, .codec = SHOAL_CODEC_RAW, .raw_len = sizeof payload,
        .payload = { NULL, sizeof payload },
    };
    memcpy(c.chunk_id, key(40), 32);
    struct shoal_buf h;
    shoal_buf_init(&h, 1 << 10);
    CHECK_EQ(shoal_msg_encode_chunk_header(&c, &h), 0);
    CHECK(h.len < 64); /* the payload is not in it */
    size_t flen = (size_t)h.data[0] << 24 | (size_t)h.data[1] << 16 | (size_t)h.data[2] << 8 |
                  h.data[3];
    CHECK_EQ(flen, h.len - 4 + sizeof payload);

    /* Same bytes as the one-buffer encoder. */
    struct shoal_msg full;
    memset(&full, 0, sizeof full);
    full.type = SHOAL_MSG_CHUNK;
    full.u.chunk = c;
    full.u.chunk.payload.p = payload;
    struct shoal_buf fb;
    shoal_buf_init(&fb, 1 << 20);
    CHECK_EQ(shoal_msg_encode(&full, &fb), 0);
    CHECK(fb.len == h.len + sizeof payload && memcmp(fb.data, h.data, h.len) == 0 &&
          memcmp(fb.data + h.len, payload, sizeof payload) == 0);

    /* Two writes arriving as three reads: header+some payload, and the rest. */
    struct shoal_frame_dec d;
    shoal_frame_dec_init(&d, SHOAL_FRAME_MAX_AUTH);
    struct chunk_seen cs = { .payload = payload };
    const struct shoal_frame_cb cb = { on_chunk_frame };
    size_t used;
    CHECK_EQ(shoal_frame_dec_feed(&d, h.data, h.len, &used, &cb, &cs), 0);
    CHECK_EQ(shoal_frame_dec_feed(&d, payload, 1000, &used, &cb, &cs), 0);
    CHECK_EQ(shoal_frame_dec_feed(&d, payload + 1000, sizeof payload - 1000, &used, &cb, &cs), 0);
    CHECK_EQ(cs.frames, 1);
    CHECK_EQ(cs.rv, 0);
    CHECK(cs.inside);
    CHECK_EQ(cs.len, sizeof payload);
    CHECK(cs.same_bytes);
    shoal_frame_dec_free(&d);

    /* The header-only encoder applies the same rules. */
    c.raw_len = 5;
    size_t before = h.len;
    CHECK_EQ(shoal_msg_encode_chunk_header(&c, &h), SHOAL_EBADMSG);
    CHECK_EQ(h.len, before);
    c.codec = SHOAL_CODEC_ZSTD;
    c.payload.len = SHOAL_MSG_PAYLOAD_MAX + 1;
    CHECK_EQ(shoal_msg_encode_chunk_header(&c, &h), SHOAL_ETOOBIG);
    c.payload.len = SHOAL_MSG_PAYLOAD_MAX;
    CHECK_EQ(shoal_msg_encode_chunk_header(&c, &h), 0);
    shoal_buf_free(&h);
    shoal_buf_free(&fb);
}

static void test_lazy_paths(void)
{
    sample(&ma, idx_of(SHOAL_MSG_LOADER_WANT));
    struct shoal_buf b;
    encode_ok(&ma, &b);
    CHECK_EQ(shoal_msg_decode(&mb, b.data + 4, b.len - 4), 0);
    const struct shoal_msg_paths *o = &mb.u.loader_want.order;
    CHECK_EQ(o->count, 3);
    CHECK(o->v == NULL);
    CHECK(o->mp >= b.data && o->mp + o->mp_len == b.data + b.len);
    struct shoal_msg_paths it;
    struct shoal_str s;
    shoal_msg_paths_begin(&it, o);
    for (int k = 0; k < 3; k++) {
        CHECK(shoal_msg_paths_next(&it, &s));
        CHECK(str_eq(s, sample_paths[k]));
        CHECK((const uint8_t *)s.p > b.data && (const uint8_t *)s.p < b.data + b.len);
    }
    CHECK(!shoal_msg_paths_next(&it, &s));
    CHECK(!shoal_msg_paths_next(&it, &s));
    /* Walking again from the message starts over. */
    shoal_msg_paths_begin(&it, o);
    CHECK(shoal_msg_paths_next(&it, &s) && str_eq(s, sample_paths[0]));
    /* An empty order is fine. */
    wbegin(3, SHOAL_MSG_LOADER_WANT);
    shoal_mpw_cstr(&w, "0123abcd");
    shoal_mpw_array(&w, 0);
    CHECK_EQ(wdecode(), 0);
    shoal_msg_paths_begin(&it, &mb.u.loader_want.order);
    CHECK(!shoal_msg_paths_next(&it, &s));
    shoal_buf_free(&b);
}

static int write_file(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t put = fwrite(p, 1, n, f);
    return fclose(f) == 0 && put == n ? 0 : -1;
}

/* One valid encoding per message variant: bodies for fuzz_msg, frames for
 * fuzz_frame (plus one file with every frame back to back). */
static int write_corpus(const char *msg_dir, const char *frame_dir)
{
    struct shoal_buf all;
    shoal_buf_init(&all, 1 << 20);
    REQUIRE(shoal_buf_append(&all, "\x2a", 1) == 0);
    for (size_t i = 0; i < NSAMPLES; i++) {
        sample(&ma, i);
        struct shoal_buf b;
        encode_ok(&ma, &b);
        char name[64];
        snprintf(name, sizeof name, "%02u_%s%s", ma.type, shoal_msg_type_name(ma.type),
                 i > 0 && sample_types[i - 1] == ma.type ? "_alt" : "");
        /* fuzz_frame takes its first byte as the seed of its read sizes. */
        uint8_t seed = (uint8_t)(i * 7u);
        struct shoal_buf fr;
        shoal_buf_init(&fr, 1 << 20);
        if (write_file(msg_dir, name, b.data + 4, b.len - 4) ||
            shoal_buf_append(&fr, &seed, 1) || shoal_buf_append(&fr, b.data, b.len) ||
            write_file(frame_dir, name, fr.data, fr.len) ||
            shoal_buf_append(&all, b.data, b.len))
            return 1;
        shoal_buf_free(&fr);
        shoal_buf_free(&b);
    }
    int rv = write_file(frame_dir, "all_types", all.data, all.len);
    shoal_buf_free(&all);
    return rv ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--write-corpus") == 0)
        return write_corpus(argv[2], argv[3]);
    RUN(test_roundtrip_every_type);
    RUN(test_wire_layout);
    RUN(test_every_truncation);
    RUN(test_wrong_field_type);
    RUN(test_nested_wrong_types);
    RUN(test_over_limits);
    RUN(test_field_counts_and_junk);
    RUN(test_announce_reply_roles);
    RUN(test_trk_auth_session);
    RUN(test_bye_chunk);
    RUN(test_unknown_type);
    RUN(test_encoder_refuses);
    RUN(test_rule_violations);
    RUN(test_chunk_header_only);
    RUN(test_lazy_paths);
    shoal_buf_free(&wb);
    return t_done();
}
