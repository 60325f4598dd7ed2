/* SPDX-License-Identifier: MIT */
/*
 * Tests of node/session.c: the peer handshake (credentials checked against
 * the cluster keys, transcript signatures) and frame sealing, run between
 * two in-memory sessions with no sockets.
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "t.h"

#include "cred.h"
#include "error.h"
#include "frame.h"
#include "keys.h"
#include "msg.h"
#include "nodelog.h"
#include "session.h"

struct node {
    struct shoal_seckey sk;
    struct shoal_pubkey pk;
    uint8_t cred[SHOAL_CRED_MAX_ENCODED];
    size_t cred_len;
};

static struct shoal_seckey cluster_sk, other_cluster_sk;
static struct shoal_pubkey cluster_pk, other_cluster_pk;
static struct shoal_keyset *cluster_keys;

static void make_node(struct node *n, const struct shoal_seckey *signer, uint64_t expires)
{
    struct shoal_cred c;
    struct shoal_buf b;

    REQUIRE(shoal_key_generate(&n->pk, &n->sk) == 0);
    REQUIRE(shoal_cred_issue(&c, signer, &n->pk, expires) == 0);
    shoal_buf_init(&b, sizeof n->cred);
    REQUIRE(shoal_cred_encode(&c, &b) == 0);
    memcpy(n->cred, b.data, b.len);
    n->cred_len = b.len;
    shoal_buf_free(&b);
}

static struct shoal_session *new_session(const struct node *n, bool initiator, bool encrypt,
                                         bool aes)
{
    struct shoal_session_local loc = {
        .node_sk = &n->sk, .cred = n->cred, .cred_len = n->cred_len, .zone = "z1",
        .listen_addr = "127.0.0.1:7000", .encrypt = encrypt, .allow_aesgcm = aes,
        .max_frame = SHOAL_FRAME_MAX_AUTH,
    };
    struct shoal_session *s = NULL;
    REQUIRE(shoal_session_new(&s, initiator, &loc) == 0);
    return s;
}

/* Delivers the HELLO frame in |b| to |to|; returns on_hello's result. */
static int deliver_hello(struct shoal_session *to, const struct shoal_buf *b, char *why,
                         size_t whylen)
{
    struct shoal_msg m;
    const uint8_t *body = b->data + SHOAL_FRAME_HDR_LEN;
    size_t len = b->len - SHOAL_FRAME_HDR_LEN;
    REQUIRE(shoal_msg_decode(&m, body, len) == 0);
    REQUIRE(m.type == SHOAL_MSG_HELLO);
    return shoal_session_on_hello(to, &m.u.hello, body, len, cluster_keys,
                                  (uint64_t)time(NULL), why, whylen);
}

static int deliver_auth(struct shoal_session *to, const struct shoal_buf *b)
{
    struct shoal_msg m;
    REQUIRE(shoal_msg_decode(&m, b->data + SHOAL_FRAME_HDR_LEN,
                             b->len - SHOAL_FRAME_HDR_LEN) == 0);
    REQUIRE(m.type == SHOAL_MSG_HELLO_AUTH);
    return shoal_session_on_auth(to, &m.u.hello_auth);
}

/* Full handshake between |a| (initiator) and |b|; returns 0 when both
 * authenticated each other. */
static int handshake(struct shoal_session *a, struct shoal_session *b)
{
    struct shoal_buf ha, hb, aa, ab;
    char why[256];
    int rv;

    shoal_buf_init(&ha, 4096);
    shoal_buf_init(&hb, 4096);
    shoal_buf_init(&aa, 4096);
    shoal_buf_init(&ab, 4096);
    REQUIRE(shoal_session_hello(a, &ha) == 0);
    REQUIRE(shoal_session_hello(b, &hb) == 0);
    rv = deliver_hello(b, &ha, why, sizeof why);
    if (rv == 0)
        rv = deliver_hello(a, &hb, why, sizeof why);
    if (rv == 0)
        rv = shoal_session_auth(a, &aa);
    if (rv == 0)
        rv = shoal_session_auth(b, &ab);
    if (rv == 0)
        rv = deliver_auth(b, &aa);
    if (rv == 0)
        rv = deliver_auth(a, &ab);
    shoal_buf_free(&ha);
    shoal_buf_free(&hb);
    shoal_buf_free(&aa);
    shoal_buf_free(&ab);
    return rv;
}

/* Encodes PING |nonce| into |b| with room for the tag. */
static void ping_frame(struct shoal_buf *b, uint64_t nonce)
{
    struct shoal_msg m = {.type = SHOAL_MSG_PING};
    m.u.ping.nonce = nonce;
    shoal_buf_init(b, 4096);
    REQUIRE(shoal_msg_encode(&m, b) == 0);
    REQUIRE(shoal_buf_reserve(b, SHOAL_SESSION_TAG_LEN) == 0);
}

/* Two nodes of the cluster with credentials good for an hour, and a session
 * for each: |a| dials, |b| answers; |enc_a| and |enc_b| say whether each asks
 * for encryption, |aes| whether AES-GCM may be chosen. */
static void two_sessions(struct node *na, struct node *nb, bool enc_a, bool enc_b, bool aes,
                         struct shoal_session **a, struct shoal_session **b)
{
    uint64_t exp = (uint64_t)time(NULL) + 3600;

    make_node(na, &cluster_sk, exp);
    make_node(nb, &cluster_sk, exp);
    *a = new_session(na, true, enc_a, aes);
    *b = new_session(nb, false, enc_b, aes);
}

/* Seals a PING with |nonce| at |from| and opens it at |to|. */
static int ping_through(struct shoal_session *from, struct shoal_session *to, uint64_t nonce,
                        bool tamper)
{
    struct shoal_msg m;
    struct shoal_buf b;
    size_t flen, plain;
    int rv;

    ping_frame(&b, nonce);
    REQUIRE(shoal_session_seal(from, b.data, b.len - SHOAL_FRAME_HDR_LEN, &flen) == 0);
    if (tamper)
        b.data[SHOAL_FRAME_HDR_LEN + 1] ^= 0x40;
    rv = shoal_session_open(to, b.data + SHOAL_FRAME_HDR_LEN, flen - SHOAL_FRAME_HDR_LEN,
                            &plain);
    if (rv == 0) {
        rv = shoal_msg_decode(&m, b.data + SHOAL_FRAME_HDR_LEN, plain);
        if (rv == 0 && (m.type != SHOAL_MSG_PING || m.u.ping.nonce != nonce))
            rv = SHOAL_EBADMSG;
    }
    shoal_buf_free(&b);
    return rv;
}

static void test_handshake_and_seal(bool aes)
{
    struct node na, nb;
    struct shoal_session *a, *b;

    two_sessions(&na, &nb, true, false, aes, &a, &b);
    CHECK_EQ(handshake(a, b), 0);
    CHECK(shoal_session_authed(a) && shoal_session_authed(b));
    /* One side asking for encryption is enough. */
    CHECK(shoal_session_encrypted(a) && shoal_session_encrypted(b));
    CHECK(strcmp(shoal_session_cipher(a), shoal_session_cipher(b)) == 0);
    CHECK(memcmp(shoal_session_peer_pk(a), nb.pk.pk, 32) == 0);
    CHECK(memcmp(shoal_session_peer_pk(b), na.pk.pk, 32) == 0);
    CHECK(strcmp(shoal_session_peer_zone(b), "z1") == 0);
    CHECK_EQ(shoal_session_send_overhead(a), SHOAL_SESSION_TAG_LEN);

    for (uint64_t i = 0; i < 5; i++) {
        CHECK_EQ(ping_through(a, b, 100 + i, false), 0);
        CHECK_EQ(ping_through(b, a, 200 + i, false), 0);
    }
    /* A flipped ciphertext bit is caught; the counter then stays put, so
     * the receiver keeps refusing (the connection is closed in practice). */
    CHECK_EQ(ping_through(a, b, 7, true), SHOAL_EBADMSG);
    CHECK_EQ(ping_through(a, b, 8, false), SHOAL_EBADMSG);
    shoal_session_free(a);
    shoal_session_free(b);
}

/* Each side learns when the other's credential ends, so the connection can
 * close the session then (the handshake alone checks it once). */
static void test_peer_expiry(void)
{
    uint64_t now = (uint64_t)time(NULL);
    struct node na, nb;
    struct shoal_session *a, *b;

    make_node(&na, &cluster_sk, now + 5);
    make_node(&nb, &cluster_sk, now + 86400);
    a = new_session(&na, true, true, true);
    b = new_session(&nb, false, true, true);
    CHECK_EQ(shoal_session_peer_expires(a), 0);
    CHECK_EQ(handshake(a, b), 0);
    CHECK_EQ(shoal_session_peer_expires(a), now + 86400);
    CHECK_EQ(shoal_session_peer_expires(b), now + 5);
    shoal_session_free(a);
    shoal_session_free(b);
}

static void test_aesgcm(void) { test_handshake_and_seal(true); }
static void test_xchacha(void) { test_handshake_and_seal(false); }

/* split seal/open */
/* The PING nonce in an opened body, or 0 when it does not decode. */
static uint64_t ping_nonce(const uint8_t *body, size_t len)
{
    struct shoal_msg m;
    if (shoal_msg_decode(&m, body, len) != 0 || m.type != SHOAL_MSG_PING)
        return 0;
    return m.u.ping.nonce;
}

static void test_split_seal_open(bool aes)
{
    /* Three frames take their counters in wire order but are sealed in
     * reverse (as workers may finish); sent in counter order they open one
     * by one with the plain open, and interleave with shoal_session_seal.
     * On the receiving side, counters reserved in arrival order open out of
     * order; a frame opened with another frame's counter fails. */
    struct node na, nb;
    struct shoal_session *a, *b;
    struct shoal_buf f[4];
    uint64_t ctr[3];
    size_t flen[4], plain;

    two_sessions(&na, &nb, true, true, aes, &a, &b);
    REQUIRE(handshake(a, b) == 0);
    for (int i = 0; i < 3; i++) {
        ping_frame(&f[i], 10 + (uint64_t)i);
        ctr[i] = shoal_session_seal_reserve(a);
    }
    CHECK(ctr[0] + 1 == ctr[1] && ctr[1] + 1 == ctr[2]);
    for (int i = 2; i >= 0; i--)
        CHECK_EQ(shoal_session_seal_at(a, ctr[i], f[i].data, f[i].len - SHOAL_FRAME_HDR_LEN,
                                       &flen[i]), 0);
    /* The loop's own seal continues the same sequence. */
    ping_frame(&f[3], 13);
    CHECK_EQ(shoal_session_seal(a, f[3].data, f[3].len - SHOAL_FRAME_HDR_LEN, &flen[3]), 0);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(flen[i], f[i].len + SHOAL_SESSION_TAG_LEN);
        REQUIRE(shoal_session_open(b, f[i].data + SHOAL_FRAME_HDR_LEN,
                                   flen[i] - SHOAL_FRAME_HDR_LEN, &plain) == 0);
        CHECK_EQ(ping_nonce(f[i].data + SHOAL_FRAME_HDR_LEN, plain), 10 + (uint64_t)i);
        shoal_buf_free(&f[i]);
    }

    /* b -> a, opened on "workers" in the order 2, 0, 1. */
    for (int i = 0; i < 3; i++) {
        ping_frame(&f[i], 20 + (uint64_t)i);
        REQUIRE(shoal_session_seal(b, f[i].data, f[i].len - SHOAL_FRAME_HDR_LEN, &flen[i]) == 0);
        ctr[i] = shoal_session_open_reserve(a);
    }
    /* On a copy: a failed open may scrub the bytes it was given. */
    uint8_t copy1[128];
    REQUIRE(flen[1] - SHOAL_FRAME_HDR_LEN <= sizeof copy1);
    memcpy(copy1, f[1].data + SHOAL_FRAME_HDR_LEN, flen[1] - SHOAL_FRAME_HDR_LEN);
    CHECK_EQ(shoal_session_open_at(a, ctr[0], copy1, flen[1] - SHOAL_FRAME_HDR_LEN, &plain),
             SHOAL_EBADMSG);
    const int order[3] = {2, 0, 1};
    for (int k = 0; k < 3; k++) {
        int i = order[k];
        uint8_t *body = f[i].data + SHOAL_FRAME_HDR_LEN;
        REQUIRE(shoal_session_open_at(a, ctr[i], body, flen[i] - SHOAL_FRAME_HDR_LEN,
                                      &plain) == 0);
        CHECK_EQ(ping_nonce(body, plain), 20 + (uint64_t)i);
        shoal_buf_free(&f[i]);
    }
    shoal_session_free(a);
    shoal_session_free(b);
}

static void test_split_aesgcm(void) { test_split_seal_open(true); }
static void test_split_xchacha(void) { test_split_seal_open(false); }

static void test_split_refused_when_plain(void)
{
    struct node na, nb;
    struct shoal_session *a, *b;
    uint8_t frame[64] = {0};
    size_t n;

    two_sessions(&na, &nb, false, false, true, &a, &b);
    REQUIRE(handshake(a, b) == 0);
    CHECK(!shoal_session_encrypted(a));
    CHECK_EQ(shoal_session_seal_at(a, 0, frame, 8, &n), -EINVAL);
    CHECK_EQ(shoal_session_open_at(a, 0, frame + 4, 24, &n), -EINVAL);
    shoal_session_free(a);
    shoal_session_free(b);
}

static void test_replay_refused(void)
{
    struct node na, nb;
    struct shoal_session *a, *s;
    struct shoal_buf b;
    uint8_t copy[64];
    size_t flen, plain;

    two_sessions(&na, &nb, true, true, false, &a, &s);
    REQUIRE(handshake(a, s) == 0);
    ping_frame(&b, 0);
    REQUIRE(shoal_session_seal(a, b.data, b.len - SHOAL_FRAME_HDR_LEN, &flen) == 0);
    REQUIRE(flen - SHOAL_FRAME_HDR_LEN <= sizeof copy);
    memcpy(copy, b.data + SHOAL_FRAME_HDR_LEN, flen - SHOAL_FRAME_HDR_LEN);
    CHECK_EQ(shoal_session_open(s, b.data + SHOAL_FRAME_HDR_LEN, flen - SHOAL_FRAME_HDR_LEN,
                                &plain), 0);
    /* The same sealed frame a second time: the nonce moved on. */
    CHECK_EQ(shoal_session_open(s, copy, flen - SHOAL_FRAME_HDR_LEN, &plain), SHOAL_EBADMSG);
    shoal_buf_free(&b);
    shoal_session_free(a);
    shoal_session_free(s);
}

static void test_plain_when_both_refuse(void)
{
    struct node na, nb;
    struct shoal_session *a, *b;

    two_sessions(&na, &nb, false, false, true, &a, &b);
    REQUIRE(handshake(a, b) == 0);
    CHECK(!shoal_session_encrypted(a));
    CHECK_EQ(shoal_session_send_overhead(a), 0);
    CHECK(strcmp(shoal_session_cipher(a), "none") == 0);
    CHECK_EQ(ping_through(a, b, 42, false), 0);
    shoal_session_free(a);
    shoal_session_free(b);
}

/* Peer |bad| is refused by a good node at HELLO time with |want|. */
static void expect_refused(struct node *bad, int want, const char *why_part)
{
    struct node good;
    struct shoal_buf h;
    char why[256] = "";
    make_node(&good, &cluster_sk, (uint64_t)time(NULL) + 3600);
    struct shoal_session *g = new_session(&good, false, true, true);
    struct shoal_session *x = new_session(bad, true, true, true);
    shoal_buf_init(&h, 4096);
    REQUIRE(shoal_session_hello(x, &h) == 0);
    CHECK_EQ(deliver_hello(g, &h, why, sizeof why), want);
    CHECK(strstr(why, why_part) != NULL);
    if (!strstr(why, why_part))
        fprintf(stderr, "  reason was: %s\n", why);
    /* Nothing can be sealed or opened for a refused peer. */
    CHECK(!shoal_session_authed(g));
    struct shoal_buf a;
    shoal_buf_init(&a, 4096);
    CHECK_EQ(shoal_session_auth(g, &a), -EINVAL);
    shoal_buf_free(&a);
    shoal_buf_free(&h);
    shoal_session_free(g);
    shoal_session_free(x);
}

static void test_credentials_refused(void)
{
    struct node n;
    uint64_t exp = (uint64_t)time(NULL) + 3600;

    make_node(&n, &cluster_sk, exp);
    n.cred_len = 0;
    expect_refused(&n, SHOAL_EPERM, "no cluster credential");

    make_node(&n, &other_cluster_sk, exp);
    expect_refused(&n, SHOAL_EUNTRUSTED, "not trusted");

    make_node(&n, &cluster_sk, (uint64_t)time(NULL) - 10);
    expect_refused(&n, SHOAL_EEXPIRED, "credential rejected");

    /* A valid credential, but for another node's key. */
    struct node victim;
    make_node(&victim, &cluster_sk, exp);
    make_node(&n, &cluster_sk, exp);
    memcpy(n.cred, victim.cred, victim.cred_len);
    n.cred_len = victim.cred_len;
    expect_refused(&n, SHOAL_EPERM, "another node key");

    make_node(&n, &cluster_sk, exp);
    n.cred[n.cred_len - 1] ^= 1; /* signature byte */
    expect_refused(&n, SHOAL_EBADSIG, "credential rejected");
}

/* A man in the middle that swaps in its own ephemeral key cannot produce a
 * HELLO_AUTH the other side accepts: the signature covers both HELLOs. */
static void test_transcript_binding(void)
{
    struct node na, nb, nm;
    uint64_t exp = (uint64_t)time(NULL) + 3600;
    struct shoal_buf ha, hb, hm, ab;
    char why[256];

    make_node(&na, &cluster_sk, exp);
    make_node(&nb, &cluster_sk, exp);
    make_node(&nm, &cluster_sk, exp);
    struct shoal_session *a = new_session(&na, true, true, true);
    struct shoal_session *b = new_session(&nb, false, true, true);
    struct shoal_session *m = new_session(&nm, true, true, true);
    shoal_buf_init(&ha, 4096);
    shoal_buf_init(&hb, 4096);
    shoal_buf_init(&hm, 4096);
    shoal_buf_init(&ab, 4096);
    REQUIRE(shoal_session_hello(a, &ha) == 0);
    REQUIRE(shoal_session_hello(b, &hb) == 0);
    REQUIRE(shoal_session_hello(m, &hm) == 0);
    /* b talks to m; a receives b's HELLO but b signs a transcript with m's. */
    REQUIRE(deliver_hello(b, &hm, why, sizeof why) == 0);
    REQUIRE(deliver_hello(a, &hb, why, sizeof why) == 0);
    REQUIRE(shoal_session_auth(b, &ab) == 0);
    struct shoal_buf aa;
    shoal_buf_init(&aa, 4096);
    REQUIRE(shoal_session_auth(a, &aa) == 0);
    CHECK_EQ(deliver_auth(a, &ab), SHOAL_EBADSIG);
    CHECK(!shoal_session_authed(a));
    shoal_buf_free(&ha);
    shoal_buf_free(&hb);
    shoal_buf_free(&hm);
    shoal_buf_free(&ab);
    shoal_buf_free(&aa);
    shoal_session_free(a);
    shoal_session_free(b);
    shoal_session_free(m);
}

/* A peer's BYE reason is logged as the peer sent it. A newline and an
 * escape sequence in it once reached the log as they were, so a peer could
 * forge a whole log line ("... authenticated: node ...") or clear the
 * operator's terminal. Every log line must stay one line of printable
 * text. */
static void test_bye_text_cannot_forge_log_lines(void)
{
    const char *t = "bye\n2030-01-01T00:00:00.000Z INFO  peer 10.0.0.9:7000 authenticated: "
                    "node deadbeef\x1b[2J\r\x7f";
    struct shoal_msg m = {0}, d;
    struct shoal_buf b;
    char path[] = "/tmp/shoal-test-log-XXXXXX";
    char got[2048];
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);
    ssize_t n;

    REQUIRE(fd >= 0 && saved >= 0);
    m.type = SHOAL_MSG_BYE;
    m.u.bye.text.p = t;
    m.u.bye.text.len = (uint32_t)strlen(t);
    shoal_buf_init(&b, 4096);
    REQUIRE(shoal_msg_encode(&m, &b) == 0);
    REQUIRE(shoal_msg_decode(&d, b.data + SHOAL_FRAME_HDR_LEN, b.len - SHOAL_FRAME_HDR_LEN) == 0);
    REQUIRE(d.type == SHOAL_MSG_BYE);
    REQUIRE(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
    /* As node/peer.c logs a refusal and a goodbye. */
    LOG_W("peer %s refused us: %.*s", "10.0.0.5:7000", (int)d.u.bye.text.len, d.u.bye.text.p);
    LOG_I("peer %s: peer said bye: %.*s", "10.0.0.5:7000", (int)d.u.bye.text.len,
          d.u.bye.text.p);
    REQUIRE(dup2(saved, STDERR_FILENO) == STDERR_FILENO);
    close(saved);
    n = pread(fd, got, sizeof got - 1, 0);
    REQUIRE(n > 0);
    got[n] = '\0';
    size_t lines = 0, ctl = 0;
    for (ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)got[i];
        lines += c == '\n';
        ctl += (c < 0x20 && c != '\n') || c == 0x7f;
    }
    CHECK_EQ(lines, 2);
    CHECK_EQ(ctl, 0);
    CHECK(got[n - 1] == '\n');
    CHECK(strstr(got, "refused us: bye?2030-01-01T00:00:00.000Z INFO  peer 10.0.0.9:7000 "
                      "authenticated: node deadbeef?[2J??\n") != NULL);
    close(fd);
    unlink(path);
    shoal_buf_free(&b);
}

int main(void)
{
    REQUIRE(shoal_crypto_init() == 0);
    REQUIRE(shoal_key_generate(&cluster_pk, &cluster_sk) == 0);
    REQUIRE(shoal_key_generate(&other_cluster_pk, &other_cluster_sk) == 0);
    REQUIRE(shoal_keyset_new(&cluster_keys) == 0);
    REQUIRE(shoal_keyset_add(cluster_keys, &cluster_pk) == 0);

    RUN(test_aesgcm);
    RUN(test_xchacha);
    RUN(test_replay_refused);
    RUN(test_split_aesgcm);
    RUN(test_split_xchacha);
    RUN(test_split_refused_when_plain);
    RUN(test_plain_when_both_refuse);
    RUN(test_credentials_refused);
    RUN(test_peer_expiry);
    RUN(test_transcript_binding);
    RUN(test_bye_text_cannot_forge_log_lines);
    shoal_keyset_free(cluster_keys);
    return t_done();
}
