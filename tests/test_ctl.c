/* SPDX-License-Identifier: MIT */
/*
 * Tests of the control socket (node/ctl.h): its messages round-trip and the
 * decoder refuses what breaks a rule; the Prometheus text; and the server on
 * a real loop, talked to by a blocking client thread like the `shoal` CLI:
 * status, a followed pull that streams progress to completion, a refused
 * pull, a malformed request, a stale socket file replaced and a live one
 * left alone; and its slots: idle clients are closed with a reason, a
 * followed pull is never idle, a client past the last slot is told why;
 * a release that stores nothing while its status gives a reason shows no
 * rate and no ETA.
 * The loop must close cleanly at the end.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"
#include "error.h"
#include "frame.h"
#include "mp.h"
#include "msg.h"
#include "t.h"

static struct shoal_ctl_msg ma, mb; /* large: not on the stack */

static void set_release(struct shoal_ctl_release *r, const char *name, uint8_t idb)
{
    memset(r, 0, sizeof *r);
    r->has_id = true;
    memset(r->id, idb, 32);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->state = SHOAL_CTL_PULLING;
    r->have_bytes = 100;
    r->total_bytes = 400;
    r->have_chunks = 1;
    r->nchunks = 4;
    r->rate_bps = 12345;
    r->peers = 3;
    r->peer_bytes = 90;
    r->origin_bytes = 10;
    r->eta_ms = 7000;
    r->elapsed_ms = 1500;
}

/* Encodes |m| and decodes the body into |out|. */
static int cycle(const struct shoal_ctl_msg *m, struct shoal_ctl_msg *out, struct shoal_buf *b)
{
    int rv;
    shoal_buf_reset(b);
    rv = shoal_ctl_encode(m, b);
    if (rv == 0)
        rv = shoal_ctl_decode(out, b->data + SHOAL_FRAME_HDR_LEN, b->len - SHOAL_FRAME_HDR_LEN);
    return rv;
}

static void test_roundtrip(void)
{
    struct shoal_buf b;
    static const char text[] = "shoal_peers 2\nshoal_bans_total 0\n";

    shoal_buf_init(&b, SHOAL_CTL_FRAME_MAX);
    ma.type = SHOAL_CTL_PULL;
    snprintf(ma.u.pull.release, sizeof ma.u.pull.release, "org/model@%s", "ab12");
    ma.u.pull.follow = true;
    CHECK_EQ(cycle(&ma, &mb, &b), 0);
    CHECK_EQ(mb.type, SHOAL_CTL_PULL);
    CHECK(strcmp(mb.u.pull.release, "org/model@ab12") == 0 && mb.u.pull.follow);

    ma.type = SHOAL_CTL_DROP;
    snprintf(ma.u.drop.release, sizeof ma.u.drop.release, "org/model@%s", "cd34");
    CHECK_EQ(cycle(&ma, &mb, &b), 0);
    CHECK_EQ(mb.type, SHOAL_CTL_DROP);
    CHECK(strcmp(mb.u.drop.release, "org/model@cd34") == 0);
    ma.u.drop.release[0] = '\0'; /* a drop names a release */
    CHECK_EQ(cycle(&ma, &mb, &b), SHOAL_EBADMSG);
    ma.type = SHOAL_CTL_DROPPED;
    snprintf(ma.u.dropped.name, sizeof ma.u.dropped.name, "org/model@cd34");
    snprintf(ma.u.dropped.repo_dir, sizeof ma.u.dropped.repo_dir, "/c/models--org--model");
    CHECK_EQ(cycle(&ma, &mb, &b), 0);
    CHECK(strcmp(mb.u.dropped.name, "org/model@cd34") == 0 &&
          strcmp(mb.u.dropped.repo_dir, "/c/models--org--model") == 0);
    ma.u.dropped.repo_dir[0] = '\0'; /* memory store: nothing on disk */
    CHECK_EQ(cycle(&ma, &mb, &b), 0);
    CHECK(mb.u.dropped.repo_dir[0] == '\0');
    ma.u.dropped.repo_dir[0] = '\x1b'; /* no terminal escapes */
    CHECK_EQ(cycle(&ma, &mb, &b), SHOAL_EBADMSG);
    ma.u.dropped.repo_dir[0] = '\0';
    /* The note (later, optional): sent only when set, read back. */
    snprintf(ma.u.dropped.note, sizeof ma.u.dropped.note, "a tracker rollout names it");
    CHECK_EQ(cycle(&ma, &mb, &b), 0);
    CHECK(strcmp(mb.u.dropped.note, "a tracker rollout names it") == 0);
    ma.u.dropped.note[0] = '\x1b';
    CHECK_EQ(cycle(&ma, &mb, &b), SHOAL_EBADMSG);
    ma.u.dropped.note[0] = '\0';
    memset(mb.u.dropped.note, 'x', 8);
    CHECK_EQ(cycle(&ma, &mb, &b), 0);
    CHECK(mb.u.dropped.note[0] == '\0');

    ma.type = SHOAL_CTL_PROGRESS;
    set_release(&ma.u.progress, "org/model@ab12", 7);
    CHECK_EQ(cycle(&ma, &mb, &b), 0);
    CHECK(memcmp(&ma.u.progress, &mb.u.progress, sizeof ma.u.progress) == 0);

    ma.type = SHOAL_CTL_STATUS;
    ma.u.status.count = 2;
    set_release(&ma.u.status.v[0], "a/b@1", 1);
    set_release(&ma.u.status.v[1], "c/d@2", 2);
    ma.u.status.v[1].has_id = false;
    memset(ma.u.status.v[1].id, 0, 32);
    ma.u.status.v[1].state = SHOAL_CTL_WAITING;
    CHECK_EQ(cycle(&ma, &mb, &b), 0);
    CHECK_EQ(mb.u.status.count, 2);
    CHECK(memcmp(ma.u.status.v, mb.u.status.v, 2 * sizeof ma.u.status.v[0]) == 0);
    CHECK_EQ(mb.u.status.nwarnings, 0);
    /* Later fields: a release's branch, the node's warnings. */
    strcpy(ma.u.status.v[0].branch, "main");
    ma.u.status.nwarnings = 2;
    strcpy(ma.u.status.warnings[0], "credential expired");
    strcpy(ma.u.status.warnings[1], "no tracker connected");
    CHECK_EQ(cycle(&ma, &mb, &b), 0);
    CHECK(strcmp(mb.u.status.v[0].branch, "main") == 0 && !mb.u.status.v[1].branch[0]);
    CHECK_EQ(mb.u.status.nwarnings, 2);
    CHECK(strcmp(mb.u.status.warnings[1], "no tracker connected") == 0);
    ma.u.status.warnings[1][0] = '\0'; /* a warning says something */
    CHECK_EQ(cycle(&ma, &mb, &b), SHOAL_EBADMSG);
    ma.u.status.nwarnings = SHOAL_CTL_WARNINGS_MAX + 1;
    CHECK_EQ(cycle(&ma, &mb, &b), SHOAL_ETOOBIG);
    ma.u.status.nwarnings = 0;
    ma.u.status.v[0].branch[0] = '\0';

    ma.type = SHOAL_CTL_PEERS;
    ma.u.peers.count = 1;
    memset(&ma.u.peers.v[0], 0, sizeof ma.u.peers.v[0]);
    memset(ma.u.peers.v[0].node_pk, 0xab, 32);
    strcpy(ma.u.peers.v[0].addr, "127.0.0.1:7601");
    strcpy(ma.u.peers.v[0].zone, "eu-west");
    strcpy(ma.u.peers.v[0].cipher, "aes256gcm");
    ma.u.peers.v[0].initiator = true;
    ma.u.peers.v[0].rx_bytes = 1u << 30;
    ma.u.peers.v[0].tx_bps = 99;
    ma.u.peers.v[0].conn_id = 42;
    CHECK_EQ(cycle(&ma, &mb, &b), 0);
    CHECK(memcmp(&ma.u.peers.v[0], &mb.u.peers.v[0], sizeof ma.u.peers.v[0]) == 0);

    ma.type = SHOAL_CTL_ERROR;
    ma.u.error.code = SHOAL_ENOTFOUND;
    strcpy(ma.u.error.message, "release org/x@1 is not known here");
    CHECK_EQ(cycle(&ma, &mb, &b), 0);
    CHECK_EQ(mb.u.error.code, SHOAL_ENOTFOUND);
    CHECK(strcmp(mb.u.error.message, ma.u.error.message) == 0);

    ma.type = SHOAL_CTL_METRICS;
    ma.u.metrics.text = text;
    ma.u.metrics.len = (uint32_t)strlen(text);
    CHECK_EQ(cycle(&ma, &mb, &b), 0);
    CHECK(mb.u.metrics.len == strlen(text) && memcmp(mb.u.metrics.text, text, strlen(text)) == 0);

    ma.type = SHOAL_CTL_STATUS_REQ;
    CHECK_EQ(cycle(&ma, &mb, &b), 0);
    CHECK_EQ(mb.type, SHOAL_CTL_STATUS_REQ);
    shoal_buf_free(&b);
}

/* Raw bodies built field by field, to feed the decoder what our encoder
 * would never write. */
static int decode_raw(struct shoal_buf *b)
{
    return shoal_ctl_decode(&mb, b->data, b->len);
}

static void pull_body(struct shoal_buf *b, uint32_t n, const char *release, size_t rlen)
{
    struct shoal_mpw w;
    shoal_buf_reset(b);
    shoal_mpw_init(&w, b);
    shoal_mpw_array(&w, n);
    shoal_mpw_uint(&w, SHOAL_CTL_PULL);
    if (n > 1)
        shoal_mpw_str(&w, release, rlen);
    if (n > 2)
        shoal_mpw_bool(&w, true);
    for (uint32_t i = 3; i < n; i++)
        shoal_mpw_uint(&w, i);
}

/* A peer's round trip (a later field) survives the codec, and a peer from a
 * daemon that predates it, ten fields, decodes with rtt_us 0 (unknown). */
static void test_peer_rtt(void)
{
    struct shoal_buf b;
    struct shoal_mpw w;
    uint8_t pk[32];

    shoal_buf_init(&b, SHOAL_CTL_FRAME_MAX + 64);
    memset(&ma, 0, sizeof ma);
    ma.type = SHOAL_CTL_PEERS;
    ma.u.peers.count = 1;
    strcpy(ma.u.peers.v[0].addr, "127.0.0.1:7601");
    ma.u.peers.v[0].rtt_us = 1234;
    CHECK_EQ(cycle(&ma, &mb, &b), 0);
    CHECK_EQ(mb.u.peers.v[0].rtt_us, 1234);

    memset(pk, 0xab, sizeof pk);
    shoal_buf_reset(&b);
    shoal_mpw_init(&w, &b);
    shoal_mpw_array(&w, 2);
    shoal_mpw_uint(&w, SHOAL_CTL_PEERS);
    shoal_mpw_array(&w, 1);
    shoal_mpw_array(&w, 10);
    shoal_mpw_bin(&w, pk, 32);
    shoal_mpw_cstr(&w, "127.0.0.1:7601");
    shoal_mpw_cstr(&w, "eu");
    shoal_mpw_cstr(&w, "aes256gcm");
    shoal_mpw_bool(&w, true);
    for (int i = 0; i < 5; i++)
        shoal_mpw_uint(&w, 7);
    CHECK_EQ(w.err, 0);
    mb.u.peers.v[0].rtt_us = 99;
    CHECK_EQ(decode_raw(&b), 0);
    CHECK_EQ(mb.u.peers.count, 1);
    CHECK_EQ(mb.u.peers.v[0].conn_id, 7);
    CHECK_EQ(mb.u.peers.v[0].rtt_us, 0);
    shoal_buf_free(&b);
}

static void test_decode_strict(void)
{
    struct shoal_buf b;
    struct shoal_mpw w;
    char big[SHOAL_CTL_RELEASE_MAX + 2];

    shoal_buf_init(&b, SHOAL_CTL_FRAME_MAX);
    pull_body(&b, 3, "org/m@1", 7);
    CHECK_EQ(decode_raw(&b), 0);
    /* A newer client's extra fields are skipped, up to a bound. */
    pull_body(&b, 5, "org/m@1", 7);
    CHECK_EQ(decode_raw(&b), 0);
    pull_body(&b, 3 + SHOAL_MSG_EXTRA_MAX + 1, "org/m@1", 7);
    CHECK(decode_raw(&b) != 0);
    /* Too few fields; nothing after the array. */
    pull_body(&b, 2, "org/m@1", 7);
    CHECK_EQ(decode_raw(&b), SHOAL_EPROTO);
    pull_body(&b, 3, "org/m@1", 7);
    shoal_buf_append(&b, "\x01", 1);
    CHECK_EQ(decode_raw(&b), SHOAL_EPROTO);
    /* Strings: empty, a terminal escape, a NUL, bad UTF-8, too long. */
    pull_body(&b, 3, "", 0);
    CHECK_EQ(decode_raw(&b), SHOAL_EBADMSG);
    pull_body(&b, 3, "\x1b[2Jorg/m@1", 11);
    CHECK_EQ(decode_raw(&b), SHOAL_EBADMSG);
    pull_body(&b, 3, "org\0/m@1", 8);
    CHECK_EQ(decode_raw(&b), SHOAL_EBADMSG);
    pull_body(&b, 3, "org/\xc3\x28", 6);
    CHECK_EQ(decode_raw(&b), SHOAL_EBADMSG);
    memset(big, 'a', sizeof big);
    pull_body(&b, 3, big, SHOAL_CTL_RELEASE_MAX + 1);
    CHECK_EQ(decode_raw(&b), SHOAL_ETOOBIG);
    pull_body(&b, 3, big, SHOAL_CTL_RELEASE_MAX);
    CHECK_EQ(decode_raw(&b), 0);

    /* Unknown types, including the other protocols' numbers. */
    for (uint32_t t = 0; t < 100; t++) {
        shoal_buf_reset(&b);
        shoal_mpw_init(&w, &b);
        shoal_mpw_array(&w, 1);
        shoal_mpw_uint(&w, t);
        if (t == SHOAL_CTL_STATUS_REQ || t == SHOAL_CTL_PEERS_REQ || t == SHOAL_CTL_METRICS_REQ)
            CHECK_EQ(decode_raw(&b), 0);
        else
            CHECK(decode_raw(&b) == SHOAL_EPROTO);
    }

    /* A bool where a str goes; a PROGRESS with a 31-byte id; one whose
     * counters contradict; a STATUS list above its cap. */
    shoal_buf_reset(&b);
    shoal_mpw_init(&w, &b);
    shoal_mpw_array(&w, 3);
    shoal_mpw_uint(&w, SHOAL_CTL_PULL);
    shoal_mpw_bool(&w, true);
    shoal_mpw_bool(&w, true);
    CHECK_EQ(decode_raw(&b), SHOAL_ETYPE);

    ma.type = SHOAL_CTL_PROGRESS;
    set_release(&ma.u.progress, "a/b@c", 1);
    shoal_buf_reset(&b);
    REQUIRE(shoal_ctl_encode(&ma, &b) == 0);
    {
        /* The id is the first field of the release: a bin8 of 32 right
         * after [type, [ (a fixarray, or an array16 once the release has
         * 16 fields or more); make it claim 31 bytes. */
        uint8_t *p = b.data + SHOAL_FRAME_HDR_LEN;
        size_t len = b.len - SHOAL_FRAME_HDR_LEN;
        size_t at = p[2] == 0xdc ? 5 : 3;
        CHECK_EQ(shoal_ctl_decode(&mb, p, len), 0);
        REQUIRE(p[at] == 0xc4 && p[at + 1] == 32);
        p[at + 1] = 31;
        CHECK(shoal_ctl_decode(&mb, p, len) != 0);
        p[at + 1] = 32;
        /* Every truncation is refused, never read past. */
        for (size_t cut = 0; cut < len; cut++)
            CHECK(shoal_ctl_decode(&mb, p, cut) != 0);
    }
    ma.u.progress.have_bytes = 401;
    shoal_buf_reset(&b);
    CHECK_EQ(shoal_ctl_encode(&ma, &b), SHOAL_EBADMSG);
    CHECK_EQ(b.len, 0);

    shoal_buf_reset(&b);
    shoal_mpw_init(&w, &b);
    shoal_mpw_array(&w, 2);
    shoal_mpw_uint(&w, SHOAL_CTL_STATUS);
    shoal_mpw_array(&w, SHOAL_CTL_RELEASES_MAX + 1);
    for (uint32_t i = 0; i <= SHOAL_CTL_RELEASES_MAX; i++)
        shoal_mpw_nil(&w);
    CHECK_EQ(decode_raw(&b), SHOAL_ETOOBIG);

    /* Metrics text may hold newlines but no other control bytes. */
    shoal_buf_reset(&b);
    shoal_mpw_init(&w, &b);
    shoal_mpw_array(&w, 2);
    shoal_mpw_uint(&w, SHOAL_CTL_METRICS);
    shoal_mpw_cstr(&w, "a 1\n\x1b[31mb 2\n");
    CHECK_EQ(decode_raw(&b), SHOAL_EBADMSG);
    shoal_buf_free(&b);
}

static void test_metrics_text(void)
{
    struct shoal_ctl_metrics m;
    struct shoal_ctl_release r;
    struct shoal_buf b;
    char *s;

    memset(&m, 0, sizeof m);
    m.bytes_from_peers = 5000;
    m.bytes_from_origin = 700;
    m.bytes_served = 123;
    m.chunks_verified = 9;
    m.peers = 2;
    m.bans_total = 1;
    m.releases = 1;
    set_release(&r, "org/we\"ird@1", 3);
    shoal_buf_init(&b, SHOAL_CTL_METRICS_MAX);
    REQUIRE(shoal_ctl_metrics_text(&m, &r, 1, &b) == 0);
    REQUIRE(shoal_buf_append(&b, "", 1) == 0);
    s = (char *)b.data;
    CHECK(strstr(s, "\nshoal_received_bytes_total{source=\"peers\"} 5000\n") != NULL);
    CHECK(strstr(s, "\nshoal_received_bytes_total{source=\"origin\"} 700\n") != NULL);
    CHECK(strstr(s, "\nshoal_served_bytes_total 123\n") != NULL);
    CHECK(strstr(s, "\nshoal_chunks_verified_total 9\n") != NULL);
    CHECK(strstr(s, "# TYPE shoal_peers gauge\nshoal_peers 2\n") != NULL);
    CHECK(strstr(s, "shoal_release_have_bytes{release=\"org/we\\\"ird@1\"} 100\n") != NULL);
    shoal_buf_free(&b);
}

/* ---- the server, with a fake daemon behind it ---- */

struct fake {
    int release_calls;
    int pulls;
};

static int f_pull(void *user, const char *release, char *why, size_t whylen)
{
    struct fake *f = user;
    if (strcmp(release, "org/model@1") != 0) {
        snprintf(why, whylen, "release %s is not known here", release);
        return SHOAL_ENOTFOUND;
    }
    f->pulls++;
    return 0;
}

/* Each look advances the release by a quarter until it is complete. */
static int f_release(void *user, const char *release, struct shoal_ctl_release *r, char *why,
                     size_t whylen)
{
    struct fake *f = user;
    int step = f->release_calls < 4 ? f->release_calls : 4;

    f->release_calls++;
    set_release(r, "org/model@1", 0x11);
    r->have_bytes = 100u * (unsigned)step;
    r->have_chunks = (uint32_t)step;
    r->state = step == 4 ? SHOAL_CTL_COMPLETE : SHOAL_CTL_PULLING;
    return 0;
}

static uint32_t f_releases(void *user, struct shoal_ctl_release *v, uint32_t max)
{
    set_release(&v[0], "org/model@1", 0x11);
    set_release(&v[1], "org/other@2", 0x22);
    v[1].state = SHOAL_CTL_COMPLETE;
    v[1].have_bytes = v[1].total_bytes;
    v[1].have_chunks = v[1].nchunks;
    return 2;
}

static uint32_t f_peers(void *user, struct shoal_ctl_peer *v, uint32_t max)
{
    memset(&v[0], 0, sizeof v[0]);
    memset(v[0].node_pk, 0x5a, 32);
    strcpy(v[0].addr, "127.0.0.1:9");
    strcpy(v[0].zone, "z1");
    strcpy(v[0].cipher, "none");
    v[0].conn_id = 7;
    return 1;
}

static void f_metrics(void *user, struct shoal_ctl_metrics *m)
{
    m->peers = 1;
    m->bytes_from_peers = 4242;
}

static struct fake fake;
static const struct shoal_ctl_ops ops = {
    .pull = f_pull, .release = f_release, .releases = f_releases, .peers = f_peers,
    .metrics = f_metrics, .user = &fake,
};

static char sock_path[108];
static atomic_int client_done;
static int client_failures;

static int dial(void)
{
    struct sockaddr_un sa;
    struct timeval tv = {.tv_sec = 10};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    strcpy(sa.sun_path, sock_path);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool read_all(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

/* Reads one frame into |body| (static) and decodes it into |m|. */
static int recv_msg(int fd, struct shoal_ctl_msg *m)
{
    static uint8_t body[SHOAL_CTL_FRAME_MAX];
    uint8_t hdr[4];
    uint32_t len;

    if (!read_all(fd, hdr, 4))
        return -EPIPE;
    len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (len == 0 || len > sizeof body || !read_all(fd, body, len))
        return -EPIPE;
    return shoal_ctl_decode(m, body, len);
}

static bool send_msg(int fd, const struct shoal_ctl_msg *m)
{
    struct shoal_buf b;
    bool ok;
    shoal_buf_init(&b, 65536);
    ok = shoal_ctl_encode(m, &b) == 0 && write(fd, b.data, b.len) == (ssize_t)b.len;
    shoal_buf_free(&b);
    return ok;
}

#define C_CHECK(cond)                                                          \
    do {                                                                       \
        if (!(cond)) {                                                         \
            client_failures++;                                                 \
            fprintf(stderr, "%s:%d: client check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                      \
    } while (0)

static struct shoal_ctl_msg creq, crep;

static void *client(void *arg)
{
    int fd, n = 0;
    uint64_t last = 0;
    bool done = false;

    /* STATUS */
    fd = dial();
    C_CHECK(fd >= 0);
    creq.type = SHOAL_CTL_STATUS_REQ;
    C_CHECK(send_msg(fd, &creq));
    C_CHECK(recv_msg(fd, &crep) == 0);
    C_CHECK(crep.type == SHOAL_CTL_STATUS && crep.u.status.count == 2);
    C_CHECK(strcmp(crep.u.status.v[1].name, "org/other@2") == 0);
    /* PEERS and METRICS on the same connection. */
    creq.type = SHOAL_CTL_PEERS_REQ;
    C_CHECK(send_msg(fd, &creq));
    C_CHECK(recv_msg(fd, &crep) == 0);
    C_CHECK(crep.type == SHOAL_CTL_PEERS && crep.u.peers.count == 1 &&
            strcmp(crep.u.peers.v[0].zone, "z1") == 0);
    creq.type = SHOAL_CTL_METRICS_REQ;
    C_CHECK(send_msg(fd, &creq));
    C_CHECK(recv_msg(fd, &crep) == 0);
    C_CHECK(crep.type == SHOAL_CTL_METRICS &&
            memmem(crep.u.metrics.text, crep.u.metrics.len,
                   "shoal_received_bytes_total{source=\"peers\"} 4242\n", 46) != NULL);
    close(fd);

    /* A pull the daemon refuses: one ERROR with its reason. */
    fd = dial();
    creq.type = SHOAL_CTL_PULL;
    strcpy(creq.u.pull.release, "org/unknown@9");
    creq.u.pull.follow = true;
    C_CHECK(send_msg(fd, &creq));
    C_CHECK(recv_msg(fd, &crep) == 0);
    C_CHECK(crep.type == SHOAL_CTL_ERROR && crep.u.error.code == SHOAL_ENOTFOUND &&
            strstr(crep.u.error.message, "org/unknown@9") != NULL);
    close(fd);

    /* A followed pull streams progress, never backwards, to COMPLETE. */
    fd = dial();
    strcpy(creq.u.pull.release, "org/model@1");
    C_CHECK(send_msg(fd, &creq));
    while (!done && n < 50 && recv_msg(fd, &crep) == 0) {
        n++;
        C_CHECK(crep.type == SHOAL_CTL_PROGRESS);
        C_CHECK(crep.u.progress.have_bytes >= last);
        last = crep.u.progress.have_bytes;
        done = crep.u.progress.state == SHOAL_CTL_COMPLETE;
    }
    C_CHECK(done && last == 400 && n >= 4);
    close(fd);

    /* Garbage: an ERROR, then the server hangs up. */
    fd = dial();
    C_CHECK(write(fd, "\x00\x00\x00\x02\x91\xc1", 6) == 6);
    C_CHECK(recv_msg(fd, &crep) == 0 && crep.type == SHOAL_CTL_ERROR);
    C_CHECK(recv_msg(fd, &crep) == -EPIPE);
    close(fd);

    atomic_store(&client_done, 1);
    return arg;
}

static struct shoal_ctl *server;
static uv_timer_t watch;
static int watch_ticks;

static void on_watch(uv_timer_t *t)
{
    /* Bounded: 30 s at most, whatever the client does. */
    if (atomic_load(&client_done) || ++watch_ticks > 1500) {
        shoal_ctl_close(server);
        uv_close((uv_handle_t *)t, NULL);
    }
}

static void test_server(void)
{
    uv_loop_t loop;
    struct shoal_ctl *other = NULL;
    struct sockaddr_un sa;
    struct stat st;
    char dir[] = "/tmp/shoal-ctl-XXXXXX";
    pthread_t th;
    int fd;

    REQUIRE(mkdtemp(dir));
    snprintf(sock_path, sizeof sock_path, "%s/run/shoald.sock", dir);
    REQUIRE(uv_loop_init(&loop) == 0);

    /* A socket file left by a dead daemon: bound, never unlinked. */
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/run", dir);
    REQUIRE(mkdir(sa.sun_path, 0750) == 0);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    strcpy(sa.sun_path, sock_path);
    REQUIRE(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    close(fd);

    CHECK_EQ(shoal_ctl_new(&server, &loop, sock_path, &ops), 0);
    REQUIRE(server);
    CHECK(stat(sock_path, &st) == 0 && (st.st_mode & 0777) == 0660);
    /* A second daemon on the same path is refused, and the first keeps it. */
    CHECK_EQ(shoal_ctl_new(&other, &loop, sock_path, &ops), SHOAL_EBUSY);
    CHECK(other == NULL);
    CHECK(stat(sock_path, &st) == 0);

    uv_timer_init(&loop, &watch);
    uv_timer_start(&watch, on_watch, 20, 20);
    REQUIRE(pthread_create(&th, NULL, client, NULL) == 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    CHECK(atomic_load(&client_done));
    CHECK_EQ(client_failures, 0);
    CHECK(fake.pulls == 1);
    /* Closing removed our socket file, and every handle closed. */
    CHECK(stat(sock_path, &st) != 0 && errno == ENOENT);
    CHECK_EQ(uv_loop_close(&loop), 0);
    shoal_ctl_free(server);

    /* A path that cannot be a socket address is refused up front. */
    {
        char longp[200];
        memset(longp, 'x', sizeof longp);
        longp[0] = '/';
        longp[sizeof longp - 1] = '\0';
        REQUIRE(uv_loop_init(&loop) == 0);
        CHECK_EQ(shoal_ctl_new(&other, &loop, longp, &ops), SHOAL_ELIMIT);
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK_EQ(uv_loop_close(&loop), 0);
    }
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/run", dir);
    rmdir(sa.sun_path);
    rmdir(dir);
}

/* Slots, with an idle time of 1 s: a followed pull streams progress to
 * COMPLETE over ~2 s (four ticks of 500 ms) without being cut off as idle,
 * while 31 silent clients hold the other slots; a 33rd client is refused
 * with 'too many clients (32)'; each silent one gets 'no request for 1.0
 * s', then EOF. */
static void *slots_client(void *arg)
{
    int fds[31], pull, extra, n = 0, idle_closed = 0;
    bool done = false;

    fake.release_calls = 0;
    pull = dial();
    C_CHECK(pull >= 0);
    creq.type = SHOAL_CTL_PULL;
    strcpy(creq.u.pull.release, "org/model@1");
    creq.u.pull.follow = true;
    C_CHECK(send_msg(pull, &creq));
    for (int i = 0; i < 31; i++)
        fds[i] = dial();
    extra = dial();
    C_CHECK(extra >= 0 && recv_msg(extra, &crep) == 0 && crep.type == SHOAL_CTL_ERROR &&
            strstr(crep.u.error.message, "too many clients (32)") != NULL);
    C_CHECK(recv_msg(extra, &crep) == -EPIPE);
    close(extra);
    while (!done && n < 50 && recv_msg(pull, &crep) == 0) {
        n++;
        C_CHECK(crep.type == SHOAL_CTL_PROGRESS);
        done = crep.u.progress.state == SHOAL_CTL_COMPLETE;
    }
    C_CHECK(done && n >= 4);
    close(pull);
    for (int i = 0; i < 31; i++) {
        C_CHECK(fds[i] >= 0);
        if (fds[i] < 0)
            continue;
        if (recv_msg(fds[i], &crep) == 0 && crep.type == SHOAL_CTL_ERROR &&
            strstr(crep.u.error.message, "no request for 1.0 s") != NULL &&
            recv_msg(fds[i], &crep) == -EPIPE)
            idle_closed++;
        close(fds[i]);
    }
    C_CHECK(idle_closed == 31);
    atomic_store(&client_done, 1);
    return arg;
}

static void test_server_slots(void)
{
    uv_loop_t loop;
    char dir[] = "/tmp/shoal-ctl-XXXXXX";
    pthread_t th;

    REQUIRE(mkdtemp(dir));
    snprintf(sock_path, sizeof sock_path, "%s/shoald.sock", dir);
    REQUIRE(uv_loop_init(&loop) == 0);
    CHECK_EQ(shoal_ctl_new(&server, &loop, sock_path, &ops), 0);
    REQUIRE(server);
    shoal_ctl_set_idle_ms(server, 1000);
    atomic_store(&client_done, 0);
    client_failures = 0;
    watch_ticks = 0;
    uv_timer_init(&loop, &watch);
    uv_timer_start(&watch, on_watch, 20, 20);
    REQUIRE(pthread_create(&th, NULL, slots_client, NULL) == 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    CHECK(atomic_load(&client_done));
    CHECK_EQ(client_failures, 0);
    CHECK_EQ(uv_loop_close(&loop), 0);
    shoal_ctl_free(server);
    rmdir(dir);
}

/* Stall: a release grows at ~10 MB/s for 2 s, then stores nothing while
 * its status gives a reason (an origin sending bad bytes). Within 8 s of
 * the stall STATUS shows no rate and no ETA (before: the blended rate took
 * ~16 s to decay, and an ETA of seconds stayed all along). */
static uv_loop_t *stall_loop;
static uint64_t stall_start;

static uint32_t stall_releases(void *user, struct shoal_ctl_release *v, uint32_t max)
{
    uint64_t ms = uv_now(stall_loop) - stall_start;
    set_release(&v[0], "org/model@1", 0x11);
    v[0].total_bytes = 100u << 20;
    v[0].have_bytes = (ms < 2000 ? ms : 2000) * 10000;
    v[0].rate_bps = v[0].eta_ms = 0; /* the server's to fill */
    snprintf(v[0].error, sizeof v[0].error, "origin's bytes for chunk 3 do not match");
    return 1;
}

static const struct shoal_ctl_ops stall_ops = {
    .pull = f_pull, .release = f_release, .releases = stall_releases, .peers = f_peers,
    .metrics = f_metrics, .user = &fake,
};

/* One STATUS on a connection of its own, which must list |n| releases:
 * their rates and ETAs. */
static bool status_look(uint32_t n, uint64_t *rate, uint64_t *eta)
{
    int fd = dial();
    bool ok;

    if (fd < 0)
        return false;
    memset(&creq, 0, sizeof creq);
    creq.type = SHOAL_CTL_STATUS_REQ;
    ok = send_msg(fd, &creq) && recv_msg(fd, &crep) == 0 && crep.type == SHOAL_CTL_STATUS &&
         crep.u.status.count == n;
    for (uint32_t i = 0; ok && i < n; i++) {
        rate[i] = crep.u.status.v[i].rate_bps;
        eta[i] = crep.u.status.v[i].eta_ms;
    }
    close(fd);
    return ok;
}

static bool stall_look(uint64_t *rate, uint64_t *eta) { return status_look(1, rate, eta); }

static void *stall_client(void *arg)
{
    uint64_t rate = 0, eta = 0;
    bool still = false;

    usleep(1600 * 1000); /* growing: three ticks of samples */
    C_CHECK(stall_look(&rate, &eta));
    C_CHECK(rate > 0 && eta > 0);
    usleep(400 * 1000);
    /* Stalled from 2 s on: bounded looks, 500 ms apart, up to 8 s. */
    for (int i = 0; i < 16 && !still; i++) {
        usleep(500 * 1000);
        C_CHECK(stall_look(&rate, &eta));
        still = rate == 0 && eta == 0;
    }
    if (!still)
        fprintf(stderr, "stalled 8 s: rate %llu B/s, eta %llu ms\n", (unsigned long long)rate,
                (unsigned long long)eta);
    C_CHECK(still);
    atomic_store(&client_done, 1);
    return arg;
}

/* A server with |sops| whose release figures follow the loop's clock from
 * now, and |asker| asking it on a thread of its own until it is done. */
static void run_timed_server(const struct shoal_ctl_ops *sops, void *(*asker)(void *))
{
    uv_loop_t loop;
    char dir[] = "/tmp/shoal-ctl-XXXXXX";
    pthread_t th;

    REQUIRE(mkdtemp(dir));
    snprintf(sock_path, sizeof sock_path, "%s/shoald.sock", dir);
    REQUIRE(uv_loop_init(&loop) == 0);
    stall_loop = &loop;
    stall_start = uv_now(&loop);
    CHECK_EQ(shoal_ctl_new(&server, &loop, sock_path, sops), 0);
    REQUIRE(server);
    atomic_store(&client_done, 0);
    client_failures = 0;
    watch_ticks = 0;
    uv_timer_init(&loop, &watch);
    uv_timer_start(&watch, on_watch, 20, 20);
    REQUIRE(pthread_create(&th, NULL, asker, NULL) == 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    CHECK(atomic_load(&client_done));
    CHECK_EQ(client_failures, 0);
    CHECK_EQ(uv_loop_close(&loop), 0);
    shoal_ctl_free(server);
    rmdir(dir);
}

static void test_server_stall(void) { run_timed_server(&stall_ops, stall_client); }

/* Releases that grow in whole 1 MiB chunks at a steady pace (a capped link,
 * a slow peer): ticks see a chunk or none. Release 0 gets one a second, and
 * its rate must stay near 1 MiB/s (a per-tick blend swung between 0.75 and
 * 1.25, QA G2); release 1 one every 3 s, and between chunks its rate must
 * not fall towards zero (the blend showed 1/5 of it, an ETA of hours:
 * QA G3). */
static uint32_t steady_releases(void *user, struct shoal_ctl_release *v, uint32_t max)
{
    uint64_t ms = uv_now(stall_loop) - stall_start;
    (void)user;
    (void)max;
    set_release(&v[0], "org/model@1", 0x11);
    set_release(&v[1], "org/slow@2", 0x22);
    v[0].total_bytes = v[1].total_bytes = 100u << 20;
    v[0].have_bytes = (ms / 1000) << 20;
    v[1].have_bytes = (ms / 3000) << 20;
    v[0].rate_bps = v[0].eta_ms = v[1].rate_bps = v[1].eta_ms = 0;
    return 2;
}

static const struct shoal_ctl_ops steady_ops = {
    .pull = f_pull, .release = f_release, .releases = steady_releases, .peers = f_peers,
    .metrics = f_metrics, .user = &fake,
};

static void *steady_client(void *arg)
{
    uint64_t rate[2] = {0}, eta[2] = {0}, lo[2] = {UINT64_MAX, UINT64_MAX}, hi[2] = {0};

    usleep(4500 * 1000);
    for (int i = 0; i < 8; i++) {
        C_CHECK(status_look(2, rate, eta));
        for (int k = 0; k < 2; k++) {
            lo[k] = rate[k] < lo[k] ? rate[k] : lo[k];
            hi[k] = rate[k] > hi[k] ? rate[k] : hi[k];
            C_CHECK(eta[k] > 0);
        }
        usleep(500 * 1000);
    }
    if (lo[0] < (8u << 20) / 10 || hi[0] > (12u << 20) / 10)
        fprintf(stderr, "1 MiB/s in chunks: rate shown %.2f-%.2f MiB/s\n", lo[0] / 1048576.0,
                hi[0] / 1048576.0);
    C_CHECK(lo[0] >= (8u << 20) / 10 && hi[0] <= (12u << 20) / 10);
    /* 1/3 MiB/s: at least half of it, at most 1.5x, between chunks too */
    if (lo[1] < (1u << 20) / 6 || hi[1] > (1u << 20) / 2)
        fprintf(stderr, "1 MiB per 3 s: rate shown %.0f-%.0f KiB/s\n", lo[1] / 1024.0,
                hi[1] / 1024.0);
    C_CHECK(lo[1] >= (1u << 20) / 6 && hi[1] <= (1u << 20) / 2);
    atomic_store(&client_done, 1);
    return arg;
}

static void test_server_steady_rate(void) { run_timed_server(&steady_ops, steady_client); }

/* Runs in a child whose euid is |uid| (set when we are root): the default
 * control socket without $XDG_RUNTIME_DIR. It was /tmp/shoald-<uid>.sock,
 * which any local user could bind first; it must be inside a directory
 * only this uid can use, and a directory someone else prepared (another
 * owner, group/other access, a symlink) must be refused, not used. */
static void default_path_child(bool as_root)
{
    uv_loop_t loop;
    struct shoal_ctl *c = NULL;
    struct stat st;
    char path[108], dir[108], other[128];
    char *slash;

    unsetenv("XDG_RUNTIME_DIR");
    REQUIRE(shoal_ctl_default_path(path, sizeof path) == 0);
    snprintf(dir, sizeof dir, "%s", path);
    slash = strrchr(dir, '/');
    REQUIRE(slash);
    *slash = '\0';
    CHECK(strcmp(dir, "/tmp") != 0);
    if (as_root) {
        /* The parent, as root, made it 0777 and gave it to another uid. */
        REQUIRE(uv_loop_init(&loop) == 0);
        CHECK_EQ(shoal_ctl_new(&c, &loop, NULL, &ops), -EPERM);
        CHECK(c == NULL);
        CHECK(lstat(path, &st) != 0);
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK_EQ(uv_loop_close(&loop), 0);
        return;
    }
    REQUIRE(uv_loop_init(&loop) == 0);
    rmdir(dir);
    CHECK_EQ(shoal_ctl_new(&c, &loop, NULL, &ops), 0);
    CHECK(lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() &&
          (st.st_mode & 0777) == 0700);
    CHECK(lstat(path, &st) == 0 && S_ISSOCK(st.st_mode));
    if (c) {
        shoal_ctl_close(c);
        uv_run(&loop, UV_RUN_DEFAULT);
        shoal_ctl_free(c);
    }
    c = NULL;
    /* Ours, but open to others: refused. */
    CHECK(chmod(dir, 0755) == 0);
    CHECK_EQ(shoal_ctl_new(&c, &loop, NULL, &ops), -EPERM);
    CHECK(rmdir(dir) == 0);
    /* A symlink to a private directory of ours: refused too. */
    snprintf(other, sizeof other, "%s.real", dir);
    rmdir(other);
    CHECK(mkdir(other, 0700) == 0);
    CHECK(symlink(other, dir) == 0);
    CHECK_EQ(shoal_ctl_new(&c, &loop, NULL, &ops), -EPERM);
    CHECK(c == NULL);
    unlink(dir);
    rmdir(other);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(&loop), 0);
}

static void test_default_path_private(void)
{
    /* A uid of its own per run: tests in other build trees may run at the
     * same time, and their directories must not collide with ours. */
    uid_t uid = geteuid() == 0 ? (uid_t)(40000 + getpid() % 20000) : geteuid();
    char dir[64];
    int status = -1;
    pid_t pid;

    for (int pass = 0; pass < 2; pass++) {
        bool squat = pass == 1;
        if (squat && geteuid() != 0)
            break; /* only root can hand a directory to another uid */
        snprintf(dir, sizeof dir, "/tmp/shoald-%u", (unsigned)uid);
        if (squat) {
            rmdir(dir);
            REQUIRE(mkdir(dir, 0777) == 0);
            REQUIRE(chmod(dir, 0777) == 0);
            REQUIRE(chown(dir, uid + 1, uid + 1) == 0);
        }
        fflush(stderr);
        pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            /* The child counts only its own checks: an earlier test's
             * failure must not fail this one too. */
            t_failures = 0;
            if (geteuid() == 0 && (setgid(uid) != 0 || setuid(uid) != 0))
                _exit(3);
            default_path_child(squat);
            _exit(t_failures ? 1 : 0);
        }
        REQUIRE(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        rmdir(dir);
    }
}

int main(void)
{
    RUN(test_roundtrip);
    RUN(test_decode_strict);
    RUN(test_peer_rtt);
    RUN(test_metrics_text);
    RUN(test_server);
    RUN(test_server_slots);
    RUN(test_server_stall);
    RUN(test_server_steady_rate);
    RUN(test_default_path_private);
    return t_done();
}
