/* SPDX-License-Identifier: MIT */
/*
 * shoal-tracker as a real process on 127.0.0.1 with an ephemeral port,
 * driven through the blocking client: authentication and its refusals,
 * node expiry, zone bias, lease exclusivity and expiry, manifests and
 * their signature checks, rollouts and stats, bad frames closing only their
 * own connection, the silent-connection timeout, and recovery after a
 * restart. Every wait is bounded; argv[1] is the tracker binary.
 */
#include "t.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "auth.h"
#include "cdc.h"
#include "cred.h"
#include "hash.h"
#include "error.h"
#include "keys.h"
#include "manifest.h"
#include "msg.h"
#include "trkclient.h"

#define TMO 3000

static const char *g_bin;
static char g_dir[64];
static struct shoal_seckey g_cluster_sk, g_other_cluster_sk, g_pub_sk, g_rogue_pub_sk;
static struct shoal_msg g_m; /* large: not on the stack */
static const char *g_errlog; /* the next tracker's stderr, when set */

struct ident {
    struct shoal_seckey sk;
    struct shoal_pubkey pk;
    uint8_t cred[SHOAL_CRED_MAX_ENCODED];
    size_t cred_len;
};

struct proc {
    pid_t pid;
    int port;
    char addr[32];
};

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static void mk_ident(struct ident *id, const struct shoal_seckey *cluster, uint64_t expires)
{
    REQUIRE(shoal_key_generate(&id->pk, &id->sk) == 0);
    struct shoal_cred c;
    REQUIRE(shoal_cred_issue(&c, cluster, &id->pk, expires) == 0);
    struct shoal_buf b;
    shoal_buf_init(&b, sizeof(id->cred));
    REQUIRE(shoal_cred_encode(&c, &b) == 0);
    memcpy(id->cred, b.data, b.len);
    id->cred_len = b.len;
    shoal_buf_free(&b);
}

static uint64_t far_future(void)
{
    return (uint64_t)time(NULL) + 3600;
}

/* Starts the tracker with the common flags plus |extra| (NULL-ended). */
static struct proc start_tracker(const char *const *extra)
{
    struct proc p = { .pid = -1 };
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    char ck[128], ak[128], pk[128];
    snprintf(ck, sizeof(ck), "%s/cluster.pub", g_dir);
    snprintf(ak, sizeof(ak), "%s/admin.keys", g_dir);
    snprintf(pk, sizeof(pk), "%s/publisher.keys", g_dir);
    /* No start grace unless a test asks (the last one given counts): the
     * tests lease right after announcing part of a release. */
    const char *argv[40] = { g_bin, "--listen", "127.0.0.1:0", "--cluster-key", ck,
                             "--admin-keys", ak, "--publisher-keys", pk, "--seed", "7",
                             "--start-grace-ms", "0" };
    int n = 13;
    for (int i = 0; extra && extra[i] && n < 38; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    p.pid = fork();
    REQUIRE(p.pid >= 0);
    if (p.pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        if (g_errlog) {
            int lf = open(g_errlog, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (lf >= 0) {
                dup2(lf, 2);
                close(lf);
            }
        }
        execv(g_bin, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    char line[128];
    size_t len = 0;
    for (int tries = 0; tries < 50 && !memchr(line, '\n', len); tries++) {
        struct pollfd pf = { .fd = fds[0], .events = POLLIN };
        if (poll(&pf, 1, 100) <= 0)
            continue;
        ssize_t r = read(fds[0], line + len, sizeof(line) - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fds[0]);
    line[len] = 0;
    const char *colon = strrchr(line, ':');
    REQUIRE(strncmp(line, "listening on 127.0.0.1:", 23) == 0 && colon);
    p.port = atoi(colon + 1);
    snprintf(p.addr, sizeof(p.addr), "127.0.0.1:%d", p.port);
    return p;
}

/* SIGTERM, then waits (bounded) and returns the exit status, or -1. */
static int stop_tracker(struct proc *p)
{
    int status = -1;
    kill(p->pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        int st;
        if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
            status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            break;
        }
        sleep_ms(50);
    }
    if (status == -1) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
    }
    return status;
}

static struct shoal_trkc *join(const struct proc *p, const struct ident *id, const char *zone,
                               const char *addr, uint8_t role, int *rv_out)
{
    struct shoal_trkc *c = NULL;
    REQUIRE(shoal_trkc_connect(&c, p->addr, TMO) == 0);
    int rv = shoal_trkc_auth(c, &id->sk, id->cred, id->cred_len, zone, addr, role, TMO);
    if (rv_out)
        *rv_out = rv;
    if (rv) {
        shoal_trkc_free(c);
        c = NULL;
    }
    return c;
}

static void mid(uint8_t out[32], int i)
{
    memset(out, 0xa0 + i, 32);
}

static int announce(struct shoal_trkc *c, const uint8_t id[32], uint32_t have, uint32_t total)
{
    g_m.type = SHOAL_MSG_ANNOUNCE;
    g_m.u.announce.count = 1;
    memcpy(g_m.u.announce.entries[0].manifest_id, id, 32);
    g_m.u.announce.entries[0].have_chunks = have;
    g_m.u.announce.entries[0].total_chunks = total;
    g_m.u.announce.entries[0].complete = have == total;
    int rv = shoal_trkc_call(c, &g_m, &g_m, TMO);
    return rv ? rv : g_m.type == SHOAL_MSG_ANNOUNCE_REPLY ? 0 : SHOAL_EPROTO;
}

/* GET_PEERS into g_m; returns the count or a negative error. */
static int get_peers(struct shoal_trkc *c, const uint8_t id[32], uint32_t max)
{
    g_m.type = SHOAL_MSG_GET_PEERS;
    memcpy(g_m.u.get_peers.manifest_id, id, 32);
    g_m.u.get_peers.max = max;
    int rv = shoal_trkc_call(c, &g_m, &g_m, TMO);
    if (rv)
        return rv;
    return g_m.type == SHOAL_MSG_PEERS ? (int)g_m.u.peers.count : SHOAL_EPROTO;
}

static bool peers_have(const struct ident *id)
{
    for (uint32_t i = 0; i < g_m.u.peers.count; i++)
        if (memcmp(g_m.u.peers.peers[i].node_pk, id->pk.pk, 32) == 0)
            return true;
    return false;
}

/* True when the tracker closed |c| (a receive sees the end of stream). */
static bool closed_by_peer(struct shoal_trkc *c)
{
    return shoal_trkc_recv(c, &g_m, TMO) == -ECONNRESET;
}

/* The announce reply carries each incomplete release's role, ranked per
 * zone in announce order; a complete one gets none listed. */
static void test_roles(void)
{
    const char *extra[] = { "--origin-fetchers", "1", "--min-fetchers", "0", "--importers", "1",
                            NULL };
    struct proc p = start_tracker(extra);
    struct ident id[4];
    struct shoal_trkc *c[4];
    static const char *zone[4] = { "east", "east", "east", "west" };
    uint8_t m1[32];
    mid(m1, 1);
    for (int i = 0; i < 4; i++) {
        mk_ident(&id[i], &g_cluster_sk, far_future());
        c[i] = join(&p, &id[i], zone[i], "10.0.0.1:7000", 0, NULL);
        REQUIRE(c[i]);
    }
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(announce(c[i], m1, 1, 10), 0);
        const struct shoal_msg_announce_reply *r = &g_m.u.announce_reply;
        REQUIRE(r->nroles == 1);
        CHECK(memcmp(r->roles[0].manifest_id, m1, 32) == 0);
        CHECK_EQ(r->roles[0].fetcher, i == 0 || i == 3);
        /* A fetcher imports too while no importer rank of its zone is
         * taken (node 0 announced alone in east, node 3 is alone in west). */
        CHECK_EQ(r->roles[0].import_mod, i == 2 ? 0 : 1);
        CHECK_EQ(r->roles[0].import_rem, 0);
        /* Such a share (a zone alone, its ranks not filled) is
         * provisional: the node is asked to announce again sooner than
         * the 30 s interval (200 ms while the zone just grew), so it
         * learns its smaller share when the zone grows. */
        if (i == 0 || i == 3)
            CHECK(r->interval_ms >= 200 && r->interval_ms < 30000);
        else
            CHECK_EQ(r->interval_ms, 30000);
    }
    /* Node 0's zone filled its ranks: its share is final. */
    CHECK_EQ(announce(c[0], m1, 2, 10), 0);
    CHECK_EQ(g_m.u.announce_reply.roles[0].import_mod, 0);
    CHECK_EQ(g_m.u.announce_reply.interval_ms, 30000);
    /* Complete: no role listed, though it keeps its rank. */
    CHECK_EQ(announce(c[0], m1, 10, 10), 0);
    CHECK_EQ(g_m.u.announce_reply.nroles, 0);
    CHECK_EQ(g_m.u.announce_reply.interval_ms, 30000);
    for (int i = 0; i < 4; i++)
        shoal_trkc_free(c[i]);
    CHECK_EQ(stop_tracker(&p), 0);
}

static void test_auth_refusals(void)
{
    struct proc p = start_tracker(NULL);
    struct ident good, foreign, expired, admin;
    mk_ident(&good, &g_cluster_sk, far_future());
    mk_ident(&foreign, &g_other_cluster_sk, far_future());
    mk_ident(&expired, &g_cluster_sk, (uint64_t)time(NULL) - 10);
    mk_ident(&admin, &g_cluster_sk, far_future());

    struct shoal_trkc *c = NULL;
    int rv;
    /* No credential at all. */
    REQUIRE(shoal_trkc_connect(&c, p.addr, TMO) == 0);
    rv = shoal_trkc_auth(c, &good.sk, NULL, 0, "z", "10.0.0.1:1", 0, TMO);
    CHECK(rv != 0);
    CHECK(closed_by_peer(c));
    shoal_trkc_free(c);
    /* Credential from another cluster. */
    CHECK(join(&p, &foreign, "z", "10.0.0.1:1", 0, &rv) == NULL);
    CHECK_EQ(rv, SHOAL_EUNTRUSTED);
    /* Expired credential. */
    CHECK(join(&p, &expired, "z", "10.0.0.1:1", 0, &rv) == NULL);
    CHECK_EQ(rv, SHOAL_EEXPIRED);
    /* Someone else's credential with our key. */
    REQUIRE(shoal_trkc_connect(&c, p.addr, TMO) == 0);
    rv = shoal_trkc_auth(c, &admin.sk, good.cred, good.cred_len, "z", "10.0.0.1:1", 0, TMO);
    CHECK_EQ(rv, SHOAL_EPERM);
    shoal_trkc_free(c);
    /* Admin role without being listed. */
    CHECK(join(&p, &good, "z", "10.0.0.1:1", SHOAL_ROLE_ADMIN, &rv) == NULL);
    CHECK_EQ(rv, SHOAL_EPERM);
    /* A node that did not authenticate gets nothing. */
    REQUIRE(shoal_trkc_connect(&c, p.addr, TMO) == 0);
    uint8_t m1[32];
    mid(m1, 1);
    CHECK(get_peers(c, m1, 10) == -ECONNRESET || closed_by_peer(c));
    shoal_trkc_free(c);
    /* And the good one is in. */
    c = join(&p, &good, "z", "10.0.0.1:1", 0, &rv);
    CHECK_EQ(rv, 0);
    CHECK(c && announce(c, m1, 1, 10) == 0);
    shoal_trkc_free(c);
    CHECK_EQ(stop_tracker(&p), 0);
}

static void test_expiry_and_zones(void)
{
    const char *extra[] = { "--announce-interval-ms", "200", "--node-ttl-ms", "600",
                            "--max-peers", "8", NULL };
    struct proc p = start_tracker(extra);
    struct ident a, b;
    mk_ident(&a, &g_cluster_sk, far_future());
    mk_ident(&b, &g_cluster_sk, far_future());
    uint8_t m1[32];
    mid(m1, 1);
    struct shoal_trkc *ca = join(&p, &a, "east", "10.0.0.1:7000", 0, NULL);
    struct shoal_trkc *cb = join(&p, &b, "east", "10.0.0.2:7000", 0, NULL);
    REQUIRE(ca && cb);
    CHECK_EQ(announce(ca, m1, 5, 10), 0);
    CHECK_EQ(announce(cb, m1, 5, 10), 0);
    CHECK_EQ(g_m.u.announce_reply.interval_ms, 200);
    CHECK_EQ(get_peers(cb, m1, 10), 1);
    CHECK(peers_have(&a));
    CHECK(g_m.u.peers.count == 1 && g_m.u.peers.peers[0].addr.len == 13 &&
          memcmp(g_m.u.peers.peers[0].addr.p, "10.0.0.1:7000", 13) == 0);
    /* a falls silent; b keeps announcing. a must drop out after its TTL. */
    bool gone = false;
    for (int i = 0; i < 30 && !gone; i++) {
        sleep_ms(100);
        CHECK_EQ(announce(cb, m1, 6, 10), 0);
        gone = get_peers(cb, m1, 10) == 0;
    }
    CHECK(gone);
    /* Once it announces again it is back. */
    CHECK_EQ(announce(ca, m1, 7, 10), 0);
    CHECK_EQ(get_peers(cb, m1, 10), 1);
    shoal_trkc_free(ca);

    /* Zone bias: 8 holders in each of two zones, all carried over one
     * connection as separate identities. */
    struct ident many[16];
    struct shoal_trkc *cm = NULL;
    REQUIRE(shoal_trkc_connect(&cm, p.addr, TMO) == 0);
    uint8_t m2[32];
    mid(m2, 2);
    for (int i = 0; i < 16; i++) {
        mk_ident(&many[i], &g_cluster_sk, far_future());
        char addr[32];
        snprintf(addr, sizeof(addr), "10.1.0.%d:7000", i);
        REQUIRE(shoal_trkc_auth(cm, &many[i].sk, many[i].cred, many[i].cred_len,
                                i < 8 ? "east" : "west", addr, 0, TMO) == 0);
        CHECK_EQ(announce(cm, m2, 3, 10), 0);
    }
    /* Switching back to a verified identity needs no new challenge. */
    CHECK_EQ(shoal_trkc_switch(cm, &many[0].sk, many[0].cred, many[0].cred_len, "east",
                               "10.1.0.0:7000", 0, TMO), 0);
    CHECK_EQ(announce(cm, m2, 4, 10), 0);
    for (int k = 0; k < 3; k++) {
        CHECK_EQ(get_peers(cb, m2, 8), 8);
        int east = 0;
        for (uint32_t i = 0; i < g_m.u.peers.count; i++)
            east += g_m.u.peers.peers[i].zone.len == 4 &&
                    memcmp(g_m.u.peers.peers[i].zone.p, "east", 4) == 0;
        CHECK_EQ(east, 6);
    }
    shoal_trkc_free(cm);
    shoal_trkc_free(cb);
    CHECK_EQ(stop_tracker(&p), 0);
}

static void sign_manifest_n(const struct shoal_seckey *sk, int nchunks, uint64_t created,
                            struct shoal_buf *out);
static int put_manifest(struct shoal_trkc *c, const uint8_t *p, size_t n);

static int lease(struct shoal_trkc *c, const uint8_t id[32], uint32_t max, uint32_t hint,
                 uint32_t *first, uint32_t *count)
{
    g_m.type = SHOAL_MSG_LEASE_REQ;
    memcpy(g_m.u.lease_req.manifest_id, id, 32);
    g_m.u.lease_req.max_chunks = max;
    g_m.u.lease_req.hint_chunk = hint;
    g_m.u.lease_req.flags = 0; /* not what an earlier message left there */
    g_m.u.lease_req.claim_count = 0;
    g_m.u.lease_req.claim_ms = 0;
    int rv = shoal_trkc_call(c, &g_m, &g_m, TMO);
    if (rv)
        return rv;
    if (g_m.type != SHOAL_MSG_LEASE)
        return g_m.type == SHOAL_MSG_ERROR ? g_m.u.error.code : SHOAL_EPROTO;
    *first = g_m.u.lease.first;
    *count = g_m.u.lease.count;
    return 0;
}

/* A LEASE_REQ re-claiming chunks [first, first+count) with |left_ms| left
 * (SHOAL_LEASE_RECLAIM); the answer's span in *gf, *gc. */
static int reclaim(struct shoal_trkc *c, const uint8_t id[32], uint32_t first, uint32_t count,
                   uint32_t left_ms, uint32_t *gf, uint32_t *gc)
{
    g_m.type = SHOAL_MSG_LEASE_REQ;
    memcpy(g_m.u.lease_req.manifest_id, id, 32);
    g_m.u.lease_req.max_chunks = 0;
    g_m.u.lease_req.hint_chunk = first;
    g_m.u.lease_req.flags = SHOAL_LEASE_RECLAIM;
    g_m.u.lease_req.claim_count = count;
    g_m.u.lease_req.claim_ms = left_ms;
    int rv = shoal_trkc_call(c, &g_m, &g_m, TMO);
    if (rv)
        return rv;
    if (g_m.type != SHOAL_MSG_LEASE)
        return g_m.type == SHOAL_MSG_ERROR ? g_m.u.error.code : SHOAL_EPROTO;
    *gf = g_m.u.lease.first;
    *gc = g_m.u.lease.count;
    return 0;
}

static int lease_done(struct shoal_trkc *c, const uint8_t id[32], uint32_t first, uint32_t count)
{
    g_m.type = SHOAL_MSG_LEASE_DONE;
    memcpy(g_m.u.lease_done.manifest_id, id, 32);
    g_m.u.lease_done.first = first;
    g_m.u.lease_done.count = count;
    int rv = shoal_trkc_call(c, &g_m, &g_m, TMO);
    return rv ? rv : g_m.type == SHOAL_MSG_OK ? 0 : g_m.type == SHOAL_MSG_ERROR ? g_m.u.error.code
                                                                                 : SHOAL_EPROTO;
}

/* TRK_AUTH for |id| on |c| as shoald sends it, with the process session
 * id |session| (NULL: nil, as the CLI). For an identity new on |c| it also
 * reads the fresh challenge that follows the OK. Returns 0 or the
 * tracker's error code. */
static int auth_session(struct shoal_trkc *c, const struct ident *id, const char *addr,
                        const uint8_t *session, bool fresh)
{
    memset(&g_m, 0, sizeof(g_m));
    g_m.type = SHOAL_MSG_TRK_AUTH;
    struct shoal_msg_trk_auth *a = &g_m.u.trk_auth;
    memcpy(a->node_pk, id->pk.pk, 32);
    a->cred.p = id->cred;
    a->cred.len = (uint32_t)id->cred_len;
    REQUIRE(shoal_trk_auth_sign(a->sig, shoal_trkc_nonce(c), &id->sk) == 0);
    a->zone.p = "z";
    a->zone.len = 1;
    a->listen_addr.p = addr;
    a->listen_addr.len = (uint32_t)strlen(addr);
    a->role = SHOAL_ROLE_NODE;
    a->has_session = session != NULL;
    if (session)
        memcpy(a->session, session, SHOAL_MSG_SESSION_LEN);
    int rv = shoal_trkc_call(c, &g_m, &g_m, TMO);
    if (rv == 0 && g_m.type != SHOAL_MSG_OK)
        rv = g_m.type == SHOAL_MSG_ERROR ? g_m.u.error.code : SHOAL_EPROTO;
    if (rv == 0 && fresh) {
        rv = shoal_trkc_recv(c, &g_m, TMO);
        if (rv == 0 && g_m.type != SHOAL_MSG_TRK_CHALLENGE)
            rv = SHOAL_EPROTO;
    }
    return rv;
}

static struct shoal_trkc *join_session(const struct proc *p, const struct ident *id,
                                       const char *addr, const uint8_t *session)
{
    struct shoal_trkc *c = NULL;
    REQUIRE(shoal_trkc_connect(&c, p->addr, TMO) == 0);
    REQUIRE(auth_session(c, id, addr, session, true) == 0);
    return c;
}

/* A daemon that lost its connection logs in again with the session id it
 * drew at start: its leases and fetched credit are kept (LEASE_DONE is
 * accepted on the new connection, nobody else is granted its chunks). A
 * login with another id, or none, is a new process: its leases are
 * voided. An identity switch cannot change the id. */
static void test_session_reconnect(void)
{
    const char *extra[] = { "--lease-ms", "60000", "--fetcher-leases", "0", NULL };
    struct proc p = start_tracker(extra);
    struct ident a, b;
    mk_ident(&a, &g_cluster_sk, far_future());
    mk_ident(&b, &g_cluster_sk, far_future());
    uint8_t s1[SHOAL_MSG_SESSION_LEN], s2[SHOAL_MSG_SESSION_LEN], m1[32];
    memset(s1, 0x51, sizeof(s1));
    memcpy(s2, s1, sizeof(s2));
    s2[0] ^= 1;
    struct shoal_buf sm;
    sign_manifest_n(&g_pub_sk, 40, (uint64_t)time(NULL), &sm);
    shoal_chunk_id(m1, sm.data, sm.len);
    uint32_t f = 0, n = 0;

    struct shoal_trkc *ca = join_session(&p, &a, "10.0.0.1:7000", s1);
    CHECK_EQ(put_manifest(ca, sm.data, sm.len), 0);
    shoal_buf_free(&sm);
    CHECK_EQ(announce(ca, m1, 0, 40), 0);
    CHECK_EQ(lease(ca, m1, 16, 0, &f, &n), 0);
    CHECK(f == 0 && n == 16);
    shoal_trkc_free(ca);

    /* Same process back: the lease from the lost connection is still its. */
    ca = join_session(&p, &a, "10.0.0.1:7000", s1);
    CHECK_EQ(announce(ca, m1, 0, 40), 0);
    CHECK_EQ(lease_done(ca, m1, 0, 16), 0);
    CHECK_EQ(lease(ca, m1, 16, 0, &f, &n), 0);
    CHECK(f == 16 && n == 16);
    shoal_trkc_free(ca);
    ca = join_session(&p, &a, "10.0.0.1:7000", s1);
    CHECK_EQ(announce(ca, m1, 16, 40), 0);
    /* B (a CLI-style login, no id) gets only what A neither holds nor
     * fetched. */
    struct shoal_trkc *cb = join_session(&p, &b, "10.0.0.2:7000", NULL);
    CHECK_EQ(announce(cb, m1, 0, 40), 0);
    CHECK_EQ(lease(cb, m1, 64, 0, &f, &n), 0);
    CHECK(f == 32 && n == 8);
    /* Switching back to A on this connection cannot bring another id. */
    CHECK_EQ(auth_session(ca, &a, "10.0.0.1:7000", s2, false), SHOAL_EPERM);
    CHECK(closed_by_peer(ca));
    shoal_trkc_free(ca);

    /* A restarted (another id): its lease is void, LEASE_DONE refused,
     * and its chunks, with the credit for 0..15, go to B. */
    ca = join_session(&p, &a, "10.0.0.1:7000", s2);
    CHECK_EQ(announce(ca, m1, 0, 40), 0);
    CHECK_EQ(lease_done(ca, m1, 16, 16), SHOAL_ENOTFOUND);
    CHECK_EQ(lease(cb, m1, 64, 0, &f, &n), 0);
    CHECK(f == 0 && n == 32);
    CHECK_EQ(lease(ca, m1, 64, 0, &f, &n), 0);
    CHECK_EQ(n, 0);
    /* B logs in again without an id: a new process, whatever it held. */
    shoal_trkc_free(cb);
    cb = join_session(&p, &b, "10.0.0.2:7000", NULL);
    CHECK_EQ(announce(cb, m1, 0, 40), 0);
    CHECK_EQ(lease_done(cb, m1, 0, 32), SHOAL_ENOTFOUND);
    shoal_trkc_free(ca);
    shoal_trkc_free(cb);
    CHECK_EQ(stop_tracker(&p), 0);
}

static int bye(struct shoal_trkc *c)
{
    memset(&g_m, 0, sizeof(g_m));
    g_m.type = SHOAL_MSG_BYE;
    g_m.u.bye.text.p = "shutting down";
    g_m.u.bye.text.len = 13;
    return shoal_trkc_send(c, &g_m, TMO);
}

/* A BYE is the node's word for the process that says it: one from an old
 * process's connection, still closing after the node restarted and the
 * new process announced, forgot the new one (its lease then unknown: its
 * LEASE_DONE refused, the chunks leased to others). The new process's own
 * BYE still forgets it at once. */
static void test_bye_old_session(void)
{
    const char *extra[] = { "--lease-ms", "60000", "--fetcher-leases", "0", NULL };
    struct proc p = start_tracker(extra);
    struct ident a, b;
    mk_ident(&a, &g_cluster_sk, far_future());
    mk_ident(&b, &g_cluster_sk, far_future());
    uint8_t s1[SHOAL_MSG_SESSION_LEN], s2[SHOAL_MSG_SESSION_LEN], m1[32];
    memset(s1, 0x61, sizeof(s1));
    memset(s2, 0x62, sizeof(s2));
    struct shoal_buf sm;
    sign_manifest_n(&g_pub_sk, 40, (uint64_t)time(NULL), &sm);
    shoal_chunk_id(m1, sm.data, sm.len);
    uint32_t f = 0, n = 0;
    struct shoal_trkc *old = join_session(&p, &a, "10.0.0.1:7000", s1);
    CHECK_EQ(put_manifest(old, sm.data, sm.len), 0);
    shoal_buf_free(&sm);
    CHECK_EQ(announce(old, m1, 0, 40), 0);
    /* The new process logs in and announces while the old connection is
     * still open; its lease is the old one's span, voided and granted
     * again. */
    struct shoal_trkc *cur = join_session(&p, &a, "10.0.0.1:7000", s2);
    CHECK_EQ(announce(cur, m1, 0, 40), 0);
    CHECK_EQ(lease(cur, m1, 16, 0, &f, &n), 0);
    CHECK(f == 0 && n == 16);
    CHECK_EQ(bye(old), 0);
    CHECK(closed_by_peer(old));
    shoal_trkc_free(old);
    /* The new process's lease stands: nobody else gets its chunks, and
     * its report is accepted. */
    struct shoal_trkc *cb = join_session(&p, &b, "10.0.0.2:7000", NULL);
    CHECK_EQ(announce(cb, m1, 0, 40), 0);
    CHECK_EQ(lease(cb, m1, 8, 0, &f, &n), 0);
    CHECK(f == 16 && n == 8);
    CHECK_EQ(lease_done(cur, m1, 0, 16), 0);
    /* Its own BYE forgets it: the chunks only it fetched are free. */
    CHECK_EQ(bye(cur), 0);
    CHECK(closed_by_peer(cur));
    shoal_trkc_free(cur);
    CHECK_EQ(lease(cb, m1, 8, 0, &f, &n), 0);
    CHECK(f == 0 && n == 8);
    shoal_trkc_free(cb);
    CHECK_EQ(stop_tracker(&p), 0);
}

/* The gone FIFO (--gone-ms): a node is forgotten gone_ms after its LAST
 * connection closed. One that came back and dropped again kept its first
 * place in the FIFO and, when that came due, went to the tail behind
 * nodes that left after it: it was forgotten with them, up to twice
 * gone_ms late. Here |a| leaves at 0, is back and leaves again at ~1 s
 * (due at ~4 s with --gone-ms 3000); |x| leaves at ~2 s (due at ~5 s).
 * The sweep runs every 750 ms: |a| must go a sweep before |x|, not with
 * it. */
static void test_gone_flap(void)
{
    const char *extra[] = { "--gone-ms", "3000", "--node-ttl-ms", "600000",
                            "--announce-interval-ms", "60000", NULL };
    struct proc p = start_tracker(extra);
    struct ident a, x, o;
    mk_ident(&a, &g_cluster_sk, far_future());
    mk_ident(&x, &g_cluster_sk, far_future());
    mk_ident(&o, &g_cluster_sk, far_future());
    uint8_t m1[32];
    mid(m1, 1);
    struct shoal_trkc *co = join(&p, &o, "z", "10.0.0.3:7000", 0, NULL);
    struct shoal_trkc *ca = join(&p, &a, "z", "10.0.0.1:7000", 0, NULL);
    struct shoal_trkc *cx = join(&p, &x, "z", "10.0.0.2:7000", 0, NULL);
    REQUIRE(co && ca && cx);
    CHECK_EQ(announce(co, m1, 1, 10), 0);
    CHECK_EQ(announce(ca, m1, 1, 10), 0);
    CHECK_EQ(announce(cx, m1, 1, 10), 0);
    shoal_trkc_free(ca);
    sleep_ms(200);
    ca = join(&p, &a, "z", "10.0.0.1:7000", 0, NULL);
    REQUIRE(ca);
    CHECK_EQ(announce(ca, m1, 1, 10), 0);
    sleep_ms(800);
    shoal_trkc_free(ca);
    sleep_ms(1000);
    shoal_trkc_free(cx);
    /* Watch the peer list until |a| leaves it (bounded: 10 s). */
    bool a_in = true, x_in = true;
    for (int i = 0; i < 200 && a_in; i++) {
        sleep_ms(50);
        REQUIRE(get_peers(co, m1, 10) >= 0);
        a_in = peers_have(&a);
        x_in = peers_have(&x);
    }
    CHECK(!a_in);
    CHECK(x_in); /* forgotten before |x|, which left a second after it */
    /* And |x| in its turn. */
    for (int i = 0; i < 200 && x_in; i++) {
        sleep_ms(50);
        REQUIRE(get_peers(co, m1, 10) >= 0);
        x_in = peers_have(&x);
    }
    CHECK(!x_in);
    shoal_trkc_free(co);
    CHECK_EQ(stop_tracker(&p), 0);
}

/* Review 9: a LEASE reply lost with the connection. The same process back
 * on a new connection asks again (from elsewhere in the release) and is
 * granted the lease it did not know it held, once; others are not granted
 * those chunks meanwhile. (The client read the first reply here; the
 * tracker cannot tell.) */
static void test_lease_reply_lost(void)
{
    const char *extra[] = { "--lease-ms", "60000", "--fetcher-leases", "0", NULL };
    struct proc p = start_tracker(extra);
    struct ident a, b;
    mk_ident(&a, &g_cluster_sk, far_future());
    mk_ident(&b, &g_cluster_sk, far_future());
    uint8_t s1[SHOAL_MSG_SESSION_LEN], m1[32];
    memset(s1, 0x33, sizeof(s1));
    struct shoal_buf sm;
    sign_manifest_n(&g_pub_sk, 40, (uint64_t)time(NULL), &sm);
    shoal_chunk_id(m1, sm.data, sm.len);
    uint32_t f = 0, n = 0;
    struct shoal_trkc *ca = join_session(&p, &a, "10.0.0.1:7000", s1);
    CHECK_EQ(put_manifest(ca, sm.data, sm.len), 0);
    shoal_buf_free(&sm);
    CHECK_EQ(announce(ca, m1, 0, 40), 0);
    CHECK_EQ(lease(ca, m1, 16, 0, &f, &n), 0);
    CHECK(f == 0 && n == 16);
    shoal_trkc_free(ca);

    ca = join_session(&p, &a, "10.0.0.1:7000", s1);
    CHECK_EQ(announce(ca, m1, 0, 40), 0);
    CHECK_EQ(lease(ca, m1, 16, 30, &f, &n), 0);
    CHECK(f == 0 && n == 16);
    CHECK(g_m.u.lease.expires_ms > 0 && g_m.u.lease.expires_ms <= 60000);
    /* Once: the next request is for more. */
    CHECK_EQ(lease(ca, m1, 8, 30, &f, &n), 0);
    CHECK(f == 30 && n == 8);
    struct shoal_trkc *cb = join_session(&p, &b, "10.0.0.2:7000", NULL);
    CHECK_EQ(announce(cb, m1, 0, 40), 0);
    CHECK_EQ(lease(cb, m1, 64, 0, &f, &n), 0);
    CHECK(f == 16 && n == 14);
    CHECK_EQ(lease_done(ca, m1, 0, 16), 0);
    shoal_trkc_free(ca);
    shoal_trkc_free(cb);
    CHECK_EQ(stop_tracker(&p), 0);
}

/* QA N2: the tracker restarts (its leases lost) while node A fetches under
 * one. Back, A re-claims it on the wire and gets that very span, for no
 * longer than --lease-ms however long A says it has left; B is then
 * granted other chunks, and B's claim of A's chunks is refused. */
static void test_lease_reclaim(void)
{
    const char *extra[] = { "--lease-ms", "60000", "--fetcher-leases", "0", NULL };
    struct proc p = start_tracker(extra);
    struct ident a, b;
    mk_ident(&a, &g_cluster_sk, far_future());
    mk_ident(&b, &g_cluster_sk, far_future());
    uint8_t s1[SHOAL_MSG_SESSION_LEN], m1[32];
    memset(s1, 0x44, sizeof(s1));
    struct shoal_buf sm;
    sign_manifest_n(&g_pub_sk, 40, (uint64_t)time(NULL), &sm);
    shoal_chunk_id(m1, sm.data, sm.len);
    uint32_t f = 0, n = 0;
    struct shoal_trkc *ca = join_session(&p, &a, "10.0.0.1:7000", s1);
    CHECK_EQ(put_manifest(ca, sm.data, sm.len), 0);
    CHECK_EQ(announce(ca, m1, 0, 40), 0);
    CHECK_EQ(lease(ca, m1, 16, 0, &f, &n), 0);
    CHECK(f == 0 && n == 16);
    shoal_trkc_free(ca);
    CHECK_EQ(stop_tracker(&p), 0);

    p = start_tracker(extra);
    ca = join_session(&p, &a, "10.0.0.1:7000", s1);
    CHECK_EQ(put_manifest(ca, sm.data, sm.len), 0);
    CHECK_EQ(announce(ca, m1, 4, 40), 0);
    CHECK_EQ(reclaim(ca, m1, 0, 16, 3600000, &f, &n), 0);
    CHECK(f == 0 && n == 16);
    CHECK(g_m.u.lease.expires_ms > 0 && g_m.u.lease.expires_ms <= 60000);
    struct shoal_trkc *cb = join_session(&p, &b, "10.0.0.2:7000", NULL);
    CHECK_EQ(announce(cb, m1, 0, 40), 0);
    CHECK_EQ(lease(cb, m1, 64, 0, &f, &n), 0);
    CHECK(f == 16 && n == 24);
    CHECK_EQ(reclaim(cb, m1, 8, 8, 1000, &f, &n), SHOAL_EBUSY);
    /* A reports against the lease it re-claimed. */
    CHECK_EQ(lease_done(ca, m1, 0, 16), 0);
    shoal_trkc_free(ca);
    shoal_trkc_free(cb);
    shoal_buf_free(&sm);
    CHECK_EQ(stop_tracker(&p), 0);
}

/* A tracker just (re)started, with a node announcing part of a release (a
 * rollout under way): for --start-grace-ms it grants no new lease of it,
 * saying when to ask again, while re-claims go through; a release nobody
 * holds part of (a cold start) is leased at once. */
static void test_lease_start_grace(void)
{
    const char *extra[] = { "--lease-ms", "60000", "--fetcher-leases", "0", "--start-grace-ms",
                            "600000", NULL };
    struct proc p = start_tracker(extra);
    struct ident a, b;
    mk_ident(&a, &g_cluster_sk, far_future());
    mk_ident(&b, &g_cluster_sk, far_future());
    uint8_t m1[32], m2[32];
    struct shoal_buf sm, sm2;
    sign_manifest_n(&g_pub_sk, 40, (uint64_t)time(NULL), &sm);
    shoal_chunk_id(m1, sm.data, sm.len);
    sign_manifest_n(&g_pub_sk, 20, (uint64_t)time(NULL) - 5, &sm2);
    shoal_chunk_id(m2, sm2.data, sm2.len);
    uint32_t f = 0, n = 0;
    struct shoal_trkc *ca = join(&p, &a, "z", "10.0.0.1:7000", 0, NULL);
    struct shoal_trkc *cb = join(&p, &b, "z", "10.0.0.2:7000", 0, NULL);
    REQUIRE(ca && cb);
    CHECK_EQ(put_manifest(ca, sm.data, sm.len), 0);
    CHECK_EQ(put_manifest(ca, sm2.data, sm2.len), 0);
    CHECK_EQ(announce(ca, m1, 4, 40), 0);
    CHECK_EQ(announce(cb, m2, 0, 20), 0);
    CHECK_EQ(lease(cb, m1, 16, 0, &f, &n), 0);
    CHECK_EQ(n, 0);
    CHECK(g_m.u.lease.retry_after_ms > 0 && g_m.u.lease.retry_after_ms <= 600000);
    CHECK_EQ(reclaim(ca, m1, 8, 8, 30000, &f, &n), 0);
    CHECK(f == 8 && n == 8);
    CHECK_EQ(lease(cb, m2, 16, 0, &f, &n), 0);
    CHECK(f == 0 && n == 16);
    shoal_trkc_free(ca);
    shoal_trkc_free(cb);
    shoal_buf_free(&sm);
    shoal_buf_free(&sm2);
    CHECK_EQ(stop_tracker(&p), 0);
}

/* Review 9: one node claims every chunk with instant LEASE_DONEs and
 * announces the release complete, and keeps claiming whatever comes free.
 * An honest node asking for leases is granted chunks once the claim has
 * gone unvouched for --fetched-ttl-ms (before: never). */
static void test_fetched_claim(void)
{
    const char *extra[] = { "--fetched-ttl-ms", "1000", "--fetcher-leases", "0", NULL };
    struct proc p = start_tracker(extra);
    struct ident e, h;
    mk_ident(&e, &g_cluster_sk, far_future());
    mk_ident(&h, &g_cluster_sk, far_future());
    uint8_t m1[32];
    struct shoal_buf sm;
    sign_manifest_n(&g_pub_sk, 40, (uint64_t)time(NULL), &sm);
    shoal_chunk_id(m1, sm.data, sm.len);
    struct shoal_trkc *ce = join(&p, &e, "z", "10.0.0.1:7000", 0, NULL);
    struct shoal_trkc *ch = join(&p, &h, "z", "10.0.0.2:7000", 0, NULL);
    REQUIRE(ce && ch);
    CHECK_EQ(put_manifest(ch, sm.data, sm.len), 0);
    shoal_buf_free(&sm);
    CHECK_EQ(announce(ch, m1, 0, 40), 0);
    uint32_t f = 0, n = 0, claimed = 0, granted = 0;
    for (int i = 0; i < 10; i++) {
        CHECK_EQ(lease(ce, m1, 64, 0, &f, &n), 0);
        if (n == 0)
            break;
        CHECK_EQ(lease_done(ce, m1, f, n), 0);
        claimed += n;
    }
    CHECK_EQ(claimed, 40);
    CHECK_EQ(announce(ce, m1, 40, 40), 0);
    for (int i = 0; i < 60 && granted == 0; i++) {
        sleep_ms(100);
        CHECK_EQ(announce(ce, m1, 40, 40), 0);
        for (int k = 0; k < 10; k++) {
            CHECK_EQ(lease(ce, m1, 64, 0, &f, &n), 0);
            if (n == 0)
                break;
            CHECK_EQ(lease_done(ce, m1, f, n), 0);
        }
        CHECK_EQ(announce(ch, m1, 0, 40), 0);
        CHECK_EQ(lease(ch, m1, 64, 0, &f, &n), 0);
        granted = n;
    }
    CHECK_EQ(granted, 40);
    shoal_trkc_free(ce);
    shoal_trkc_free(ch);
    CHECK_EQ(stop_tracker(&p), 0);
}

static void test_leases(void)
{
    /* Spans as asked (the shares of --fetcher-leases are test_registry's):
     * two nodes asking for 64 of 100 chunks split them exactly. */
    const char *extra[] = { "--lease-ms", "300", "--fetcher-leases", "0", NULL };
    struct proc p = start_tracker(extra);
    struct ident a, b;
    mk_ident(&a, &g_cluster_sk, far_future());
    mk_ident(&b, &g_cluster_sk, far_future());
    struct shoal_trkc *ca = join(&p, &a, "z", "10.0.0.1:7000", 0, NULL);
    struct shoal_trkc *cb = join(&p, &b, "z", "10.0.0.2:7000", 0, NULL);
    REQUIRE(ca && cb);
    uint8_t m1[32], m9[32];
    mid(m9, 9);
    uint32_t f1 = 0, c1 = 0, f2 = 0, c2 = 0;
    /* Nobody announced m9: its size is unknown, no lease. */
    CHECK_EQ(lease(ca, m9, 8, 0, &f1, &c1), SHOAL_ENOTFOUND);
    /* Announced with a size but never published: still no lease (an
     * announce must not size lease state, review 4). */
    CHECK_EQ(announce(ca, m9, 0, 100), 0);
    CHECK_EQ(lease(ca, m9, 8, 0, &f1, &c1), SHOAL_ENOTFOUND);
    struct shoal_buf sm;
    sign_manifest_n(&g_pub_sk, 100, (uint64_t)time(NULL), &sm);
    shoal_chunk_id(m1, sm.data, sm.len);
    CHECK_EQ(put_manifest(ca, sm.data, sm.len), 0);
    shoal_buf_free(&sm);
    CHECK_EQ(announce(ca, m1, 0, 100), 0);
    CHECK_EQ(announce(cb, m1, 0, 100), 0);
    /* Both ask for the same place: they get disjoint spans. */
    CHECK_EQ(lease(ca, m1, 64, 0, &f1, &c1), 0);
    CHECK_EQ(lease(cb, m1, 64, 0, &f2, &c2), 0);
    CHECK(c1 > 0 && c2 > 0);
    CHECK(f1 + c1 <= f2 || f2 + c2 <= f1);
    CHECK_EQ(c1 + c2, 100);
    uint32_t f3 = 0, c3 = 7;
    CHECK_EQ(lease(cb, m1, 64, 0, &f3, &c3), 0);
    CHECK_EQ(c3, 0);
    CHECK(g_m.u.lease.retry_after_ms > 0);
    /* b finishes its span; a lets its lease run out. */
    CHECK_EQ(lease_done(cb, m1, f2, c2), 0);
    CHECK_EQ(lease_done(ca, m1, f2, c2), SHOAL_ENOTFOUND); /* not a's */
    bool regranted = false;
    for (int i = 0; i < 20 && !regranted; i++) {
        sleep_ms(100);
        CHECK_EQ(lease(cb, m1, 64, 0, &f3, &c3), 0);
        regranted = c3 > 0;
    }
    CHECK(regranted);
    CHECK_EQ(f3, f1);
    CHECK_EQ(c3, c1);
    CHECK_EQ(lease_done(ca, m1, f1, c1), SHOAL_ENOTFOUND); /* expired */
    shoal_trkc_free(ca);
    shoal_trkc_free(cb);
    CHECK_EQ(stop_tracker(&p), 0);
}

static const char *COMMIT = "0123456789abcdef0123456789abcdef01234567";

static void sign_manifest_n(const struct shoal_seckey *sk, int nchunks, uint64_t created,
                            struct shoal_buf *out)
{
    struct shoal_cdc_params prm;
    shoal_cdc_params_default(&prm);
    struct shoal_manifest *m = NULL;
    REQUIRE(shoal_manifest_new(&m, SHOAL_REPO_MODEL, "org/model", COMMIT, &prm) == 0);
    uint8_t sha[32] = { 1 };
    REQUIRE(shoal_manifest_add_file(m, "model.safetensors", (uint64_t)nchunks * 1000, sha) == 0);
    for (int i = 0; i < nchunks; i++) {
        uint8_t cid[32];
        memset(cid, i + 1, 32);
        memcpy(cid, &i, sizeof(i));
        REQUIRE(shoal_manifest_add_chunk(m, cid, 1000) == 0);
    }
    shoal_buf_init(out, 1 << 20);
    REQUIRE(shoal_manifest_sign(m, sk, created, out) == 0);
    shoal_manifest_free(m);
}

static void sign_manifest(const struct shoal_seckey *sk, struct shoal_buf *out)
{
    sign_manifest_n(sk, 3, (uint64_t)time(NULL), out);
}

static int put_manifest(struct shoal_trkc *c, const uint8_t *p, size_t n)
{
    g_m.type = SHOAL_MSG_PUT_MANIFEST;
    g_m.u.put_manifest.signed_manifest.p = p;
    g_m.u.put_manifest.signed_manifest.len = (uint32_t)n;
    int rv = shoal_trkc_call(c, &g_m, &g_m, TMO);
    return rv ? rv : g_m.type == SHOAL_MSG_OK ? 0 : g_m.type == SHOAL_MSG_ERROR ? g_m.u.error.code
                                                                                 : SHOAL_EPROTO;
}

static int get_manifest_by_name(struct shoal_trkc *c, const char *name)
{
    memset(&g_m.u.get_manifest, 0, sizeof(g_m.u.get_manifest));
    g_m.type = SHOAL_MSG_GET_MANIFEST;
    g_m.u.get_manifest.has_repo = true;
    g_m.u.get_manifest.repo_at_rev.p = name;
    g_m.u.get_manifest.repo_at_rev.len = (uint32_t)strlen(name);
    int rv = shoal_trkc_call(c, &g_m, &g_m, TMO);
    return rv ? rv : g_m.type == SHOAL_MSG_MANIFEST ? 0 : g_m.type == SHOAL_MSG_ERROR
                                                              ? g_m.u.error.code
                                                              : SHOAL_EPROTO;
}

static void test_manifests_rollouts_restart(void)
{
    struct proc p = start_tracker(NULL);
    struct ident node, other, admin;
    mk_ident(&node, &g_cluster_sk, far_future());
    mk_ident(&other, &g_cluster_sk, far_future());
    /* The admin's key was written to admin.keys in main. */
    struct shoal_seckey ask;
    char path[128];
    snprintf(path, sizeof(path), "%s/admin.sk", g_dir);
    REQUIRE(shoal_seckey_load(path, &ask) == 0);
    admin.sk = ask;
    shoal_seckey_public(&ask, &admin.pk);
    struct shoal_cred cr;
    REQUIRE(shoal_cred_issue(&cr, &g_cluster_sk, &admin.pk, far_future()) == 0);
    struct shoal_buf cb;
    shoal_buf_init(&cb, sizeof(admin.cred));
    REQUIRE(shoal_cred_encode(&cr, &cb) == 0);
    memcpy(admin.cred, cb.data, cb.len);
    admin.cred_len = cb.len;
    shoal_buf_free(&cb);

    struct shoal_buf good, rogue;
    sign_manifest(&g_pub_sk, &good);
    sign_manifest(&g_rogue_pub_sk, &rogue);
    struct shoal_trkc *cn = join(&p, &node, "east", "10.0.0.1:7000", 0, NULL);
    REQUIRE(cn);
    /* A flipped byte breaks the signature; an unknown signer is refused;
     * the connection stays usable after each refusal. */
    good.data[good.len - 1] ^= 1;
    CHECK(put_manifest(cn, good.data, good.len) != 0);
    CHECK(g_m.type == SHOAL_MSG_ERROR);
    good.data[good.len - 1] ^= 1;
    CHECK_EQ(put_manifest(cn, rogue.data, rogue.len), SHOAL_EUNTRUSTED);
    char name[128];
    snprintf(name, sizeof(name), "org/model@%s", COMMIT);
    CHECK_EQ(get_manifest_by_name(cn, name), SHOAL_ENOTFOUND);
    CHECK_EQ(put_manifest(cn, good.data, good.len), 0);
    CHECK_EQ(get_manifest_by_name(cn, name), 0);
    CHECK(g_m.u.manifest.signed_manifest.len == good.len &&
          memcmp(g_m.u.manifest.signed_manifest.p, good.data, good.len) == 0);
    uint8_t id[32];
    memcpy(id, g_m.u.manifest.manifest_id, 32);
    memset(&g_m.u.get_manifest, 0, sizeof(g_m.u.get_manifest));
    g_m.type = SHOAL_MSG_GET_MANIFEST;
    g_m.u.get_manifest.has_id = true;
    memcpy(g_m.u.get_manifest.by_id, id, 32);
    CHECK(shoal_trkc_call(cn, &g_m, &g_m, TMO) == 0 && g_m.type == SHOAL_MSG_MANIFEST);

    /* Rollouts: only an admin may set one; nodes in the zone learn it. */
    g_m.type = SHOAL_MSG_ROLLOUT;
    g_m.u.rollout.repo_at_rev.p = name;
    g_m.u.rollout.repo_at_rev.len = (uint32_t)strlen(name);
    g_m.u.rollout.has_zone = true;
    g_m.u.rollout.zone.p = "east";
    g_m.u.rollout.zone.len = 4;
    g_m.u.rollout.remove = false;
    g_m.u.rollout.has_ref = false;
    CHECK(shoal_trkc_call(cn, &g_m, &g_m, TMO) == 0 && g_m.type == SHOAL_MSG_ERROR &&
          g_m.u.error.code == SHOAL_EPERM);
    struct shoal_trkc *ca = join(&p, &admin, "ops", "10.9.9.9:1", SHOAL_ROLE_ADMIN, NULL);
    REQUIRE(ca);
    g_m.type = SHOAL_MSG_ROLLOUT;
    g_m.u.rollout.repo_at_rev.p = name;
    g_m.u.rollout.repo_at_rev.len = (uint32_t)strlen(name);
    g_m.u.rollout.has_zone = true;
    g_m.u.rollout.zone.p = "east";
    g_m.u.rollout.zone.len = 4;
    g_m.u.rollout.remove = false;
    g_m.u.rollout.has_ref = false;
    CHECK(shoal_trkc_call(ca, &g_m, &g_m, TMO) == 0 && g_m.type == SHOAL_MSG_OK);
    /* A release with no manifest registered here (a typo'd commit) is
     * refused, saying what to do (removals need none: test_ops
     * tracker_rollouts). */
    const char *unknown = "org/model@00000000000000000000000000000000000000ff";
    static const char want[] = "no manifest registered for org/model@0000000000000000"
                               "0000000000000000000000ff: publish it first (shoal publish); "
                               "if it was published before this tracker restarted, register "
                               "the signed manifest a node kept, without the Hub: shoal "
                               "publish --manifest <cache>/models--ORG--NAME/.shoal/<id>."
                               "manifest (datasets--ORG--NAME for a dataset)";
    g_m.type = SHOAL_MSG_ROLLOUT;
    g_m.u.rollout.repo_at_rev.p = unknown;
    g_m.u.rollout.repo_at_rev.len = (uint32_t)strlen(unknown);
    g_m.u.rollout.has_zone = false;
    g_m.u.rollout.remove = false;
    g_m.u.rollout.has_ref = false;
    REQUIRE(shoal_trkc_call(ca, &g_m, &g_m, TMO) == 0);
    CHECK(g_m.type == SHOAL_MSG_ERROR && g_m.u.error.code == SHOAL_ENOTFOUND &&
          g_m.u.error.message.len == sizeof want - 1 &&
          memcmp(g_m.u.error.message.p, want, sizeof want - 1) == 0);
    uint8_t m5[32];
    mid(m5, 5);
    CHECK_EQ(announce(cn, m5, 1, 2), 0);
    CHECK_EQ(g_m.u.announce_reply.count, 1);
    CHECK(memcmp(g_m.u.announce_reply.desired[0].manifest_id, id, 32) == 0);
    struct shoal_trkc *co = join(&p, &other, "west", "10.0.0.2:7000", 0, NULL);
    REQUIRE(co);
    CHECK_EQ(announce(co, id, 3, 3), 0);
    CHECK_EQ(g_m.u.announce_reply.count, 0); /* not its zone */
    g_m.type = SHOAL_MSG_ROLLOUT_STATUS_REQ;
    g_m.u.rollout_status_req.text.p = name;
    g_m.u.rollout_status_req.text.len = (uint32_t)strlen(name);
    CHECK(shoal_trkc_call(ca, &g_m, &g_m, TMO) == 0 && g_m.type == SHOAL_MSG_ROLLOUT_STATUS);
    CHECK(g_m.u.rollout_status.has_manifest_id);
    CHECK_EQ(g_m.u.rollout_status.complete, 0); /* "other" is in west */
    CHECK_EQ(g_m.u.rollout_status.none, 1);     /* node in east */
    g_m.type = SHOAL_MSG_STATS_REQ;
    CHECK(shoal_trkc_call(ca, &g_m, &g_m, TMO) == 0 && g_m.type == SHOAL_MSG_STATS);
    CHECK(g_m.u.stats.text.len > 0 &&
          memmem(g_m.u.stats.text.p, g_m.u.stats.text.len, "\nshoal_tracker_nodes 2\n", 23));
    CHECK(memmem(g_m.u.stats.text.p, g_m.u.stats.text.len, "shoal_tracker_auth_failures_total",
                 33) != NULL);
    shoal_trkc_free(ca);
    shoal_trkc_free(cn);
    shoal_trkc_free(co);
    CHECK_EQ(stop_tracker(&p), 0);

    /* Restart: the new process knows nothing until nodes re-announce and
     * someone re-puts the manifest. */
    p = start_tracker(NULL);
    cn = join(&p, &node, "east", "10.0.0.1:7000", 0, NULL);
    co = join(&p, &other, "west", "10.0.0.2:7000", 0, NULL);
    REQUIRE(cn && co);
    CHECK_EQ(get_peers(cn, id, 10), 0);
    CHECK_EQ(get_manifest_by_name(cn, name), SHOAL_ENOTFOUND);
    CHECK_EQ(announce(co, id, 3, 3), 0);
    CHECK_EQ(get_peers(cn, id, 10), 1);
    CHECK(peers_have(&other));
    CHECK_EQ(put_manifest(co, good.data, good.len), 0); /* a node re-puts */
    CHECK_EQ(get_manifest_by_name(cn, name), 0);
    shoal_trkc_free(cn);
    shoal_trkc_free(co);
    CHECK_EQ(stop_tracker(&p), 0);
    shoal_buf_free(&good);
    shoal_buf_free(&rogue);
}

static void test_bad_input(void)
{
    const char *extra[] = { "--auth-timeout-ms", "300", NULL };
    struct proc p = start_tracker(extra);
    struct ident a, b;
    mk_ident(&a, &g_cluster_sk, far_future());
    mk_ident(&b, &g_cluster_sk, far_future());
    struct shoal_trkc *ca = join(&p, &a, "z", "10.0.0.1:7000", 0, NULL);
    struct shoal_trkc *cb = join(&p, &b, "z", "10.0.0.2:7000", 0, NULL);
    REQUIRE(ca && cb);
    /* A frame whose body is not a message closes that connection... */
    const uint8_t junk[] = { 0, 0, 0, 3, 0xc1, 0xc1, 0xc1 };
    CHECK_EQ(shoal_trkc_send_raw(ca, junk, sizeof(junk), TMO), 0);
    CHECK(closed_by_peer(ca));
    shoal_trkc_free(ca);
    /* ...and only that one. */
    g_m.type = SHOAL_MSG_STATS_REQ;
    CHECK(shoal_trkc_call(cb, &g_m, &g_m, TMO) == 0 && g_m.type == SHOAL_MSG_STATS);
    /* Before authentication, a large frame is refused at its header. */
    struct shoal_trkc *cz = NULL;
    REQUIRE(shoal_trkc_connect(&cz, p.addr, TMO) == 0);
    const uint8_t big[] = { 0, 0x10, 0, 0, 0x91 };
    CHECK_EQ(shoal_trkc_send_raw(cz, big, sizeof(big), TMO), 0);
    CHECK(closed_by_peer(cz));
    shoal_trkc_free(cz);
    /* A node-to-node message is not served: closed. */
    REQUIRE((ca = join(&p, &a, "z", "10.0.0.1:7000", 0, NULL)) != NULL);
    g_m.type = SHOAL_MSG_PING;
    g_m.u.ping.nonce = 1;
    CHECK_EQ(shoal_trkc_send(ca, &g_m, TMO), 0);
    CHECK(closed_by_peer(ca));
    shoal_trkc_free(ca);
    /* A silent connection is timed out. */
    REQUIRE(shoal_trkc_connect(&cz, p.addr, TMO) == 0);
    CHECK_EQ(shoal_trkc_recv(cz, &g_m, 5000), -ECONNRESET);
    shoal_trkc_free(cz);
    /* The authenticated, quiet one is not. */
    uint8_t m1[32];
    mid(m1, 1);
    CHECK_EQ(announce(cb, m1, 1, 1), 0);
    shoal_trkc_free(cb);
    CHECK_EQ(stop_tracker(&p), 0);
}

/* Value of metric |name| in a STATS reply on |c|, or -1. */
static long stat_value(struct shoal_trkc *c, const char *name)
{
    g_m.type = SHOAL_MSG_STATS_REQ;
    if (shoal_trkc_call(c, &g_m, &g_m, TMO) != 0 || g_m.type != SHOAL_MSG_STATS)
        return -1;
    char pat[128];
    int n = snprintf(pat, sizeof(pat), "\n%s ", name);
    const char *p = memmem(g_m.u.stats.text.p, g_m.u.stats.text.len, pat, (size_t)n);
    return p ? atol(p + n) : -1;
}

/* Review 1: a switch back to a verified identity cannot change its zone
 * (or address); review 8: a credential's end applies to the session. */
static void test_identity_binding_and_expiry(void)
{
    struct proc p = start_tracker(NULL);
    struct ident a, b, brief;
    mk_ident(&a, &g_cluster_sk, far_future());
    mk_ident(&b, &g_cluster_sk, far_future());
    uint8_t m1[32];
    mid(m1, 1);
    struct shoal_trkc *c = join(&p, &a, "east", "10.0.0.1:7000", 0, NULL);
    REQUIRE(c);
    REQUIRE(shoal_trkc_auth(c, &b.sk, b.cred, b.cred_len, "east", "10.0.0.2:7000", 0, TMO) == 0);
    CHECK_EQ(shoal_trkc_switch(c, &a.sk, a.cred, a.cred_len, "east", "10.0.0.1:7000", 0, TMO), 0);
    CHECK_EQ(announce(c, m1, 1, 10), 0);
    CHECK_EQ(shoal_trkc_switch(c, &b.sk, b.cred, b.cred_len, "junk1", "10.0.0.2:7000", 0, TMO),
             SHOAL_EPERM);
    CHECK(closed_by_peer(c));
    shoal_trkc_free(c);

    /* A credential valid for two more seconds: fine now, refused after. */
    uint64_t end = (uint64_t)time(NULL) + 2;
    mk_ident(&brief, &g_cluster_sk, end);
    c = join(&p, &brief, "east", "10.0.0.3:7000", 0, NULL);
    REQUIRE(c);
    CHECK_EQ(announce(c, m1, 1, 10), 0);
    for (int i = 0; i < 50 && (uint64_t)time(NULL) < end + 1; i++)
        sleep_ms(100);
    g_m.type = SHOAL_MSG_GET_PEERS;
    memcpy(g_m.u.get_peers.manifest_id, m1, 32);
    g_m.u.get_peers.max = 4;
    CHECK(shoal_trkc_call(c, &g_m, &g_m, TMO) == 0 && g_m.type == SHOAL_MSG_ERROR &&
          g_m.u.error.code == SHOAL_EEXPIRED);
    CHECK(closed_by_peer(c));
    shoal_trkc_free(c);
    CHECK_EQ(stop_tracker(&p), 0);
}

/* Review 5: silent unauthenticated connections have a pool of their own;
 * a new one evicts the oldest, nodes still get in. Also the idle timeout
 * of authenticated connections (review 6). */
static void test_unauth_pool(void)
{
    const char *extra[] = { "--max-unauth", "4", "--auth-timeout-ms", "20000",
                            "--idle-timeout-ms", "500", "--announce-interval-ms", "200", NULL };
    struct proc p = start_tracker(extra);
    struct shoal_trkc *s[5] = { NULL };
    for (int i = 0; i < 4; i++)
        REQUIRE(shoal_trkc_connect(&s[i], p.addr, TMO) == 0);
    /* Those four stay while there is room. */
    CHECK_EQ(shoal_trkc_recv(s[0], &g_m, 300), -ETIMEDOUT);
    REQUIRE(shoal_trkc_connect(&s[4], p.addr, TMO) == 0);
    CHECK(closed_by_peer(s[0]));
    CHECK_EQ(shoal_trkc_recv(s[1], &g_m, 100), -ETIMEDOUT);
    struct ident a;
    mk_ident(&a, &g_cluster_sk, far_future());
    struct shoal_trkc *c = join(&p, &a, "z", "10.0.0.1:7000", 0, NULL);
    CHECK(c != NULL);
    CHECK(closed_by_peer(s[1])); /* made room for the node */
    /* Authenticated but silent past --idle-timeout-ms: closed. */
    if (c)
        CHECK(closed_by_peer(c));
    shoal_trkc_free(c);
    for (int i = 0; i < 5; i++)
        shoal_trkc_free(s[i]);
    CHECK_EQ(stop_tracker(&p), 0);
}

/* Counts the lines of file |path| containing |needle|. */
static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[2048];
    int n = 0;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* Review 9: one source (127.0.0.1) opening connections as fast as it can
 * evicts only its own: a login in progress from another source
 * (127.0.0.2, also loopback) completes. The evictions are logged once
 * with a count, not once each (the review's flood: 109k lines, 13 MB in
 * 3 s). */
static void test_unauth_flood(void)
{
    char log[128];
    snprintf(log, sizeof log, "%s/flood.log", g_dir);
    g_errlog = log;
    const char *extra[] = { "--max-unauth", "8", "--auth-timeout-ms", "20000", NULL };
    struct proc p = start_tracker(extra);
    g_errlog = NULL;
    struct ident a;
    mk_ident(&a, &g_cluster_sk, far_future());
    struct shoal_trkc *login = NULL, *fl[16] = { NULL };
    REQUIRE(shoal_trkc_connect_from(&login, p.addr, "127.0.0.2", TMO) == 0);
    int opened = 0;
    for (int i = 0; i < 300; i++) {
        shoal_trkc_free(fl[i % 16]);
        fl[i % 16] = NULL;
        if (shoal_trkc_connect_from(&fl[i % 16], p.addr, "127.0.0.1", TMO) == 0)
            opened++;
    }
    CHECK_EQ(opened, 300);
    CHECK_EQ(shoal_trkc_auth(login, &a.sk, a.cred, a.cred_len, "z", "10.0.0.1:7000", 0, TMO),
             0);
    CHECK_EQ(announce(login, (uint8_t[32]){ 1 }, 0, 10), 0);
    shoal_trkc_free(login);
    for (int i = 0; i < 16; i++)
        shoal_trkc_free(fl[i]);
    CHECK_EQ(stop_tracker(&p), 0);
    int evicted = count_lines(log, "evicted");
    CHECK(evicted >= 1 && evicted <= 2);
}

/* The admin identity main() wrote (admin.sk, listed in admin.keys), with a
 * fresh credential. */
static void load_admin(struct ident *admin)
{
    char path[128];
    struct shoal_cred cr;
    struct shoal_buf cb;
    snprintf(path, sizeof(path), "%s/admin.sk", g_dir);
    REQUIRE(shoal_seckey_load(path, &admin->sk) == 0);
    shoal_seckey_public(&admin->sk, &admin->pk);
    REQUIRE(shoal_cred_issue(&cr, &g_cluster_sk, &admin->pk, far_future()) == 0);
    shoal_buf_init(&cb, sizeof(admin->cred));
    REQUIRE(shoal_cred_encode(&cr, &cb) == 0);
    memcpy(admin->cred, cb.data, cb.len);
    admin->cred_len = cb.len;
    shoal_buf_free(&cb);
}

/* A bound login (auth.h: what a node that pins the tracker sends) as
 * |id| on a fresh connection, signed over |signed_as| and sent as |sent|
 * (both with the connection's nonce): the relay's view of the S6 attack.
 * Returns 0 (OK) or the tracker's error code. */
static int bound_login(const struct proc *p, const struct ident *id,
                       struct shoal_msg_trk_auth *signed_as, struct shoal_msg_trk_auth *sent)
{
    struct shoal_trkc *c = NULL;
    REQUIRE(shoal_trkc_connect(&c, p->addr, TMO) == 0);
    REQUIRE(shoal_trk_auth_sign_bound(sent->sig, shoal_trkc_nonce(c), signed_as, &id->sk) == 0);
    memset(&g_m, 0, sizeof(g_m));
    g_m.type = SHOAL_MSG_TRK_AUTH;
    g_m.u.trk_auth = *sent;
    int rv = shoal_trkc_call(c, &g_m, &g_m, TMO);
    if (rv == 0 && g_m.type != SHOAL_MSG_OK)
        rv = g_m.type == SHOAL_MSG_ERROR ? g_m.u.error.code : SHOAL_EPROTO;
    shoal_trkc_free(c);
    return rv;
}

/* A login asking for a sealed session (client_eph) is signed over all it
 * asks for: relayed with the ephemeral key left out (a plain session the
 * relay could use), another role, zone or address, it is refused; a plain
 * login's nonce-only signature is not taken for one that asks to seal. */
static void test_bound_login(void)
{
    struct proc p = start_tracker(NULL);
    struct ident admin;
    load_admin(&admin);
    struct shoal_msg_trk_auth a, b;
    memset(&a, 0, sizeof a);
    memcpy(a.node_pk, admin.pk.pk, 32);
    a.cred.p = admin.cred;
    a.cred.len = (uint32_t)admin.cred_len;
    a.zone.p = "z";
    a.zone.len = 1;
    a.listen_addr.p = "10.0.0.1:7000";
    a.listen_addr.len = 13;
    a.role = SHOAL_ROLE_NODE;
    a.has_client_nonce = a.has_client_eph = true;
    memset(a.client_nonce, 7, 32);
    memset(a.client_eph, 9, 32);
    b = a;
    CHECK_EQ(bound_login(&p, &admin, &a, &b), 0);
    b = a;
    b.has_client_nonce = b.has_client_eph = false;
    CHECK_EQ(bound_login(&p, &admin, &a, &b), SHOAL_EBADSIG);
    b = a;
    b.role = SHOAL_ROLE_ADMIN;
    CHECK_EQ(bound_login(&p, &admin, &a, &b), SHOAL_EBADSIG);
    b = a;
    b.zone.p = "evil";
    b.zone.len = 4;
    CHECK_EQ(bound_login(&p, &admin, &a, &b), SHOAL_EBADSIG);
    b = a;
    b.listen_addr.p = "10.6.6.6:7000";
    CHECK_EQ(bound_login(&p, &admin, &a, &b), SHOAL_EBADSIG);
    /* What the same key signs for a plain login (the nonce only) does not
     * pass for one that asks for a sealed session. */
    struct shoal_trkc *c = NULL;
    REQUIRE(shoal_trkc_connect(&c, p.addr, TMO) == 0);
    memset(&g_m, 0, sizeof(g_m));
    g_m.type = SHOAL_MSG_TRK_AUTH;
    g_m.u.trk_auth = a;
    REQUIRE(shoal_trk_auth_sign(g_m.u.trk_auth.sig, shoal_trkc_nonce(c), &admin.sk) == 0);
    CHECK_EQ(shoal_trkc_call(c, &g_m, &g_m, TMO), 0);
    CHECK(g_m.type == SHOAL_MSG_ERROR && g_m.u.error.code == SHOAL_EBADSIG);
    shoal_trkc_free(c);
    stop_tracker(&p);
}

/* A publisher login naming an untrusted signing key, again and again: each
 * is refused and counted as an auth failure, and the log gets one line
 * (throttled like any failed login), not one per attempt. */
static void test_publisher_refuse_throttled(void)
{
    char log[128];
    snprintf(log, sizeof log, "%s/pubrefuse.log", g_dir);
    g_errlog = log;
    struct proc p = start_tracker(NULL);
    g_errlog = NULL;
    struct ident admin, node;
    struct shoal_pubkey rogue_pk;
    load_admin(&admin);
    mk_ident(&node, &g_cluster_sk, far_future());
    shoal_seckey_public(&g_rogue_pub_sk, &rogue_pk);
    int refused = 0;
    for (int i = 0; i < 30; i++) {
        struct shoal_trkc *c = NULL;
        REQUIRE(shoal_trkc_connect(&c, p.addr, TMO) == 0);
        shoal_trkc_set_publisher(c, rogue_pk.pk);
        refused += shoal_trkc_auth(c, &admin.sk, admin.cred, admin.cred_len, "z",
                                   "10.0.0.1:1", SHOAL_ROLE_PUBLISHER, TMO) == SHOAL_EUNTRUSTED;
        shoal_trkc_free(c);
    }
    CHECK_EQ(refused, 30);
    struct shoal_trkc *cn = join(&p, &node, "z", "10.0.0.1:7000", 0, NULL);
    REQUIRE(cn);
    CHECK(stat_value(cn, "shoal_tracker_auth_failures_total") >= 30);
    shoal_trkc_free(cn);
    CHECK_EQ(stop_tracker(&p), 0);
    int lines = count_lines(log, "is not a trusted publisher");
    if (lines < 0)
        lines = 0;
    lines += count_lines(log, "publisher login refused");
    CHECK(lines >= 1 && lines <= 2);
    unlink(log);
}

/* Review 6: a client that pipelines requests without reading replies is
 * paused (its requests wait in the socket) instead of having megabytes of
 * replies queued and then being dropped; it gets every reply once it
 * reads. */
static void test_backpressure(void)
{
    const char *extra[] = { "--max-peers", "256", NULL };
    struct proc p = start_tracker(extra);
    static struct ident many[256];
    struct ident a;
    uint8_t m2[32];
    mid(m2, 2);
    struct shoal_trkc *cm = NULL;
    REQUIRE(shoal_trkc_connect(&cm, p.addr, TMO) == 0);
    for (int i = 0; i < 256; i++) {
        mk_ident(&many[i], &g_cluster_sk, far_future());
        char addr[32];
        snprintf(addr, sizeof(addr), "10.1.%d.%d:7000", i / 100, i % 100);
        REQUIRE(shoal_trkc_auth(cm, &many[i].sk, many[i].cred, many[i].cred_len, "east", addr, 0,
                                TMO) == 0);
        REQUIRE(announce(cm, m2, 3, 10) == 0);
    }
    mk_ident(&a, &g_cluster_sk, far_future());
    struct shoal_trkc *c = join(&p, &a, "east", "10.0.0.1:7000", 0, NULL);
    REQUIRE(c);
    /* 6,000 requests of ~15 KiB replies: 90 MB, above the 64 MiB output
     * cap of one connection if the tracker read them all at once (the
     * requests themselves fit the socket buffers). */
    enum { N = 6000 };
    struct shoal_buf req;
    shoal_buf_init(&req, 64);
    g_m.type = SHOAL_MSG_GET_PEERS;
    memcpy(g_m.u.get_peers.manifest_id, m2, 32);
    g_m.u.get_peers.max = 256;
    REQUIRE(shoal_msg_encode(&g_m, &req) == 0);
    size_t one = req.len;
    uint8_t *all = malloc(one * N);
    REQUIRE(all);
    for (int i = 0; i < N; i++)
        memcpy(all + one * (size_t)i, req.data, one);
    shoal_buf_free(&req);
    int fd = shoal_trkc_fd(c);
    size_t sent = 0;
    /* Phase 1: write without reading until the socket refuses more. */
    for (int i = 0; i < 40 && sent < one * N; i++) {
        struct pollfd pf = { .fd = fd, .events = POLLOUT };
        if (poll(&pf, 1, 50) <= 0)
            break;
        ssize_t w = send(fd, all + sent, one * N - sent, MSG_DONTWAIT);
        if (w > 0)
            sent += (size_t)w;
    }
    /* Phase 2: read the replies while sending the rest. */
    int got = 0, bad = 0;
    for (int spins = 0; got < N && spins < 2000000; spins++) {
        if (sent < one * N) {
            ssize_t w = send(fd, all + sent, one * N - sent, MSG_DONTWAIT);
            if (w > 0)
                sent += (size_t)w;
        }
        int rv = shoal_trkc_recv(c, &g_m, sent < one * N ? 1 : TMO);
        if (rv == -ETIMEDOUT)
            continue;
        if (rv)
            break;
        bad += g_m.type != SHOAL_MSG_PEERS || g_m.u.peers.count != 256;
        got++;
    }
    CHECK_EQ(got, N);
    CHECK_EQ(bad, 0);
    free(all);
    shoal_trkc_free(c);
    shoal_trkc_free(cm);
    CHECK_EQ(stop_tracker(&p), 0);
}

/* Review 7: costly requests are rate limited per connection; review 9: a
 * manifest already held is not parsed and verified again. */
static void test_rate_limit_and_reput(void)
{
    struct proc p = start_tracker(NULL);
    struct ident a;
    mk_ident(&a, &g_cluster_sk, far_future());
    struct shoal_trkc *c = join(&p, &a, "east", "10.0.0.1:7000", 0, NULL);
    REQUIRE(c);
    struct shoal_buf good;
    sign_manifest(&g_pub_sk, &good);
    CHECK_EQ(put_manifest(c, good.data, good.len), 0);
    CHECK_EQ(put_manifest(c, good.data, good.len), 0);
    CHECK_EQ(put_manifest(c, good.data, good.len), 0);
    CHECK_EQ(stat_value(c, "shoal_tracker_manifest_verifies_total"), 1);
    shoal_buf_free(&good);
    /* 100 rollout status requests in one go: the first ones are served,
     * the rest refused, and the connection stays. */
    struct shoal_buf req;
    shoal_buf_init(&req, 1 << 20);
    g_m.type = SHOAL_MSG_ROLLOUT_STATUS_REQ;
    g_m.u.rollout_status_req.text.p = "org/model@x";
    g_m.u.rollout_status_req.text.len = 11;
    for (int i = 0; i < 100; i++)
        REQUIRE(shoal_msg_encode(&g_m, &req) == 0);
    CHECK_EQ(shoal_trkc_send_raw(c, req.data, req.len, TMO), 0);
    shoal_buf_free(&req);
    int ok = 0, limited = 0;
    for (int i = 0; i < 100; i++) {
        if (shoal_trkc_recv(c, &g_m, TMO) != 0)
            break;
        ok += g_m.type == SHOAL_MSG_ROLLOUT_STATUS;
        limited += g_m.type == SHOAL_MSG_ERROR && g_m.u.error.code == SHOAL_EBUSY;
    }
    CHECK(ok >= 30 && ok <= 60);
    CHECK_EQ(ok + limited, 100);
    uint8_t m1[32];
    mid(m1, 1);
    CHECK_EQ(announce(c, m1, 1, 10), 0);
    shoal_trkc_free(c);
    CHECK_EQ(stop_tracker(&p), 0);
}

/* Review 11: a re-put of an older manifest for the same repo@commit does
 * not take the name back from a newer one. */
static void test_name_newest(void)
{
    struct proc p = start_tracker(NULL);
    struct ident a;
    mk_ident(&a, &g_cluster_sk, far_future());
    struct shoal_trkc *c = join(&p, &a, "east", "10.0.0.1:7000", 0, NULL);
    REQUIRE(c);
    struct shoal_buf older, newer;
    uint64_t now = (uint64_t)time(NULL);
    sign_manifest_n(&g_pub_sk, 3, now - 100, &older);
    sign_manifest_n(&g_pub_sk, 4, now, &newer);
    CHECK_EQ(put_manifest(c, newer.data, newer.len), 0);
    CHECK_EQ(put_manifest(c, older.data, older.len), 0);
    char name[128];
    snprintf(name, sizeof(name), "org/model@%s", COMMIT);
    CHECK_EQ(get_manifest_by_name(c, name), 0);
    CHECK(g_m.u.manifest.signed_manifest.len == newer.len &&
          memcmp(g_m.u.manifest.signed_manifest.p, newer.data, newer.len) == 0);
    shoal_buf_free(&older);
    shoal_buf_free(&newer);
    shoal_trkc_free(c);
    CHECK_EQ(stop_tracker(&p), 0);
}

/* Starts a frame of |declared| body bytes of message |type| on |c| and
 * sends |body| bytes of it (the rest never comes). Returns 0 or the send
 * error. */
static int start_frame(struct shoal_trkc *c, uint32_t declared, uint8_t type, size_t body)
{
    uint8_t *b = calloc(1, 4 + body);
    REQUIRE(b);
    b[0] = (uint8_t)(declared >> 24);
    b[1] = (uint8_t)(declared >> 16);
    b[2] = (uint8_t)(declared >> 8);
    b[3] = (uint8_t)declared;
    if (body >= 2) {
        b[4] = 0x92; /* [type, ...] */
        b[5] = type;
    }
    int rv = shoal_trkc_send_raw(c, b, 4 + body, TMO);
    free(b);
    return rv;
}

/* Waits up to |ms| for the tracker to close |c|; true when it did. */
static bool closed_within(struct shoal_trkc *c, int ms)
{
    for (int waited = 0; waited < ms; waited += 100) {
        int rv = shoal_trkc_recv(c, &g_m, 100);
        if (rv == -ECONNRESET)
            return true;
        if (rv != -ETIMEDOUT)
            return false;
    }
    return false;
}

/* Hardening 1: one node key cannot make the tracker hold big unfinished
 * frames. A connection without a publisher identity may send only
 * PUT_MANIFEST above 64 KiB (a node re-putting what it holds still can);
 * unfinished frames share a budget, the slowest going first past it. */
static void test_frame_limits(void)
{
    const char *extra[] = { "--max-partial-mb", "2", "--frame-timeout-ms", "60000", NULL };
    struct proc p = start_tracker(extra);
    struct ident a, b;
    mk_ident(&a, &g_cluster_sk, far_future());
    mk_ident(&b, &g_cluster_sk, far_future());
    struct shoal_trkc *obs = join(&p, &b, "east", "10.0.0.2:7000", 0, NULL);
    struct shoal_trkc *c = join(&p, &a, "east", "10.0.0.1:7000", 0, NULL);
    REQUIRE(obs && c);
    /* An ANNOUNCE-typed frame of 1 MiB from a node: refused once its type
     * is in, without waiting for the rest. */
    CHECK_EQ(start_frame(c, 1u << 20, SHOAL_MSG_ANNOUNCE, 1000), 0);
    CHECK(closed_within(c, TMO));
    CHECK_EQ(stat_value(obs, "shoal_tracker_frames_refused_total"), 1);
    shoal_trkc_free(c);
    /* A node's re-put of a manifest above 64 KiB goes through. */
    struct shoal_buf big;
    sign_manifest_n(&g_pub_sk, 3000, (uint64_t)time(NULL), &big);
    REQUIRE(big.len > 64 * 1024);
    c = join(&p, &a, "east", "10.0.0.1:7000", 0, NULL);
    REQUIRE(c);
    CHECK_EQ(put_manifest(c, big.data, big.len), 0);
    shoal_buf_free(&big);
    /* Budget 2 MiB: a frame parked with 1 MiB in, then another that
     * streams 1.5 MiB: the parked one (slower on average) is closed, the
     * streaming one stays. */
    struct shoal_trkc *slow = c, *fast = NULL;
    CHECK_EQ(start_frame(slow, 8u << 20, SHOAL_MSG_PUT_MANIFEST, 1u << 20), 0);
    sleep_ms(1000);
    fast = join(&p, &a, "east", "10.0.0.1:7000", 0, NULL);
    REQUIRE(fast);
    CHECK_EQ(start_frame(fast, 8u << 20, SHOAL_MSG_PUT_MANIFEST, 3u << 19), 0);
    CHECK(closed_within(slow, TMO));
    CHECK_EQ(shoal_trkc_recv(fast, &g_m, 200), -ETIMEDOUT);
    CHECK_EQ(stat_value(obs, "shoal_tracker_partial_evicted_total"), 1);
    CHECK_EQ(stat_value(obs, "shoal_tracker_partial_bytes"), 3 << 19);
    shoal_trkc_free(slow);
    shoal_trkc_free(fast);
    /* Gone with its connection. */
    for (int i = 0; i < 20 && stat_value(obs, "shoal_tracker_partial_bytes") != 0; i++)
        sleep_ms(50);
    CHECK_EQ(stat_value(obs, "shoal_tracker_partial_bytes"), 0);
    shoal_trkc_free(obs);
    CHECK_EQ(stop_tracker(&p), 0);
}

/* Hardening 1: a frame that is begun must be finished in time; trickling
 * a byte now and then (which keeps the idle timeout away) does not keep
 * it open. 1 MiB at 4 MiB/s plus 400 ms: 650 ms. */
static void test_frame_deadline(void)
{
    const char *extra[] = { "--frame-timeout-ms", "400", "--frame-min-kibps", "4096", NULL };
    struct proc p = start_tracker(extra);
    struct ident a, b;
    mk_ident(&a, &g_cluster_sk, far_future());
    mk_ident(&b, &g_cluster_sk, far_future());
    struct shoal_trkc *obs = join(&p, &b, "east", "10.0.0.2:7000", 0, NULL);
    struct shoal_trkc *c = join(&p, &a, "east", "10.0.0.1:7000", 0, NULL);
    REQUIRE(obs && c);
    CHECK_EQ(start_frame(c, 1u << 20, SHOAL_MSG_PUT_MANIFEST, 1000), 0);
    bool closed = false;
    for (int i = 0; i < 50 && !closed; i++) {
        uint8_t one = 0;
        if (shoal_trkc_send_raw(c, &one, 1, TMO) != 0)
            closed = true;
        else
            closed = shoal_trkc_recv(c, &g_m, 100) == -ECONNRESET;
    }
    CHECK(closed);
    CHECK_EQ(stat_value(obs, "shoal_tracker_frames_timed_out_total"), 1);
    /* Requests that come whole are not affected. */
    uint8_t m1[32];
    mid(m1, 1);
    CHECK_EQ(announce(obs, m1, 1, 10), 0);
    shoal_trkc_free(c);
    shoal_trkc_free(obs);
    CHECK_EQ(stop_tracker(&p), 0);
}

/* Hardening 3: one node key cannot take every connection slot. The
 * connection past --max-conns-per-key is refused with a reason; other keys
 * still get in; a key's closed connection frees its place; an identity
 * added to another key's connection counts too. */
static void test_conns_per_key(void)
{
    const char *extra[] = { "--max-conns-per-key", "2", NULL };
    struct proc p = start_tracker(extra);
    struct ident a, b;
    mk_ident(&a, &g_cluster_sk, far_future());
    mk_ident(&b, &g_cluster_sk, far_future());
    struct shoal_trkc *c1 = join(&p, &a, "east", "10.0.0.1:7000", 0, NULL);
    struct shoal_trkc *c2 = join(&p, &a, "east", "10.0.0.1:7000", 0, NULL);
    REQUIRE(c1 && c2);
    int rv = 0;
    struct shoal_trkc *c3 = join(&p, &a, "east", "10.0.0.1:7000", 0, &rv);
    CHECK(c3 == NULL);
    CHECK_EQ(rv, SHOAL_EBUSY);
    struct shoal_trkc *cb = join(&p, &b, "east", "10.0.0.2:7000", 0, NULL);
    REQUIRE(cb);
    CHECK_EQ(stat_value(cb, "shoal_tracker_conns_per_key_refused_total"), 1);
    /* Key a as a second identity on b's connection: a third for a. */
    CHECK_EQ(shoal_trkc_auth(cb, &a.sk, a.cred, a.cred_len, "east", "10.0.0.1:7000", 0, TMO),
             SHOAL_EBUSY);
    shoal_trkc_free(cb);
    shoal_trkc_free(c1);
    c3 = NULL;
    for (int i = 0; i < 40 && !c3; i++) {
        sleep_ms(50);
        c3 = join(&p, &a, "east", "10.0.0.1:7000", 0, NULL);
    }
    CHECK(c3 != NULL);
    if (c3)
        CHECK_EQ(stat_value(c3, "shoal_tracker_conns_per_key_refused_total"), 2);
    shoal_trkc_free(c3);
    shoal_trkc_free(c2);
    CHECK_EQ(stop_tracker(&p), 0);
}

/* Hardening 2: one node announcing junk ids (fresh ones each time) cannot
 * fill the manifest table: its announces go on being answered, another
 * node's announce of a new release is recorded and a publisher's put is
 * accepted. 128 manifests here (64 for unregistered ids); a node may hold
 * 32 unregistered ones. */
static void test_junk_announces(void)
{
    const char *extra[] = { "--max-manifests", "128", NULL };
    struct proc p = start_tracker(extra);
    struct ident atk, vic;
    mk_ident(&atk, &g_cluster_sk, far_future());
    mk_ident(&vic, &g_cluster_sk, far_future());
    struct shoal_trkc *a = join(&p, &atk, "east", "10.0.0.1:7000", 0, NULL);
    struct shoal_trkc *v = join(&p, &vic, "east", "10.0.0.2:7000", 0, NULL);
    REQUIRE(a && v);
    int refused = 0;
    for (int round = 0; round < 20; round++) {
        g_m.type = SHOAL_MSG_ANNOUNCE;
        g_m.u.announce.count = 40;
        for (uint32_t i = 0; i < 40; i++) {
            struct shoal_msg_announce_entry *e = &g_m.u.announce.entries[i];
            randombytes_buf(e->manifest_id, 32);
            e->have_chunks = 1;
            e->total_chunks = 10;
            e->complete = false;
        }
        REQUIRE(shoal_trkc_call(a, &g_m, &g_m, TMO) == 0);
        refused += g_m.type != SHOAL_MSG_ANNOUNCE_REPLY;
    }
    CHECK_EQ(refused, 0);
    CHECK(stat_value(a, "shoal_tracker_manifests") <= 32);
    CHECK_EQ(stat_value(a, "shoal_tracker_entries_skipped_total"), 20 * 8);
    uint8_t m3[32];
    mid(m3, 3);
    CHECK_EQ(announce(v, m3, 1, 10), 0);
    CHECK_EQ(get_peers(a, m3, 10), 1);
    struct shoal_buf good;
    sign_manifest(&g_pub_sk, &good);
    CHECK_EQ(put_manifest(v, good.data, good.len), 0);
    shoal_buf_free(&good);
    shoal_trkc_free(a);
    shoal_trkc_free(v);
    CHECK_EQ(stop_tracker(&p), 0);
}

/* Hardening 4: a full manifest store makes room: the least recently used
 * manifest nobody holds is forgotten for a new publish (the old tracker
 * refused it until restarted). Replies already queued with the forgotten
 * manifest's bytes still carry them whole. */
static void test_manifest_lru(void)
{
    const char *extra[] = { "--max-manifests", "2", NULL };
    struct proc p = start_tracker(extra);
    struct ident a;
    mk_ident(&a, &g_cluster_sk, far_future());
    struct shoal_trkc *c = join(&p, &a, "east", "10.0.0.1:7000", 0, NULL);
    REQUIRE(c);
    uint64_t now = (uint64_t)time(NULL);
    struct shoal_buf mf[3];
    uint8_t ids[3][32];
    for (int i = 0; i < 3; i++) {
        sign_manifest_n(&g_pub_sk, 3000 + i, now + (uint64_t)i, &mf[i]);
        shoal_chunk_id(ids[i], mf[i].data, mf[i].len);
    }
    CHECK_EQ(put_manifest(c, mf[0].data, mf[0].len), 0);
    CHECK_EQ(put_manifest(c, mf[1].data, mf[1].len), 0);
    /* Pipelined: three fetches of the first, one of the second, then the
     * third's put, which forgets the first (least recently used; the
     * older one also when both were used in the same millisecond). */
    struct shoal_buf req;
    shoal_buf_init(&req, 1 << 20);
    g_m.type = SHOAL_MSG_GET_MANIFEST;
    memset(&g_m.u.get_manifest, 0, sizeof(g_m.u.get_manifest));
    g_m.u.get_manifest.has_id = true;
    memcpy(g_m.u.get_manifest.by_id, ids[0], 32);
    for (int i = 0; i < 3; i++)
        REQUIRE(shoal_msg_encode(&g_m, &req) == 0);
    memcpy(g_m.u.get_manifest.by_id, ids[1], 32);
    REQUIRE(shoal_msg_encode(&g_m, &req) == 0);
    g_m.type = SHOAL_MSG_PUT_MANIFEST;
    g_m.u.put_manifest.signed_manifest.p = mf[2].data;
    g_m.u.put_manifest.signed_manifest.len = (uint32_t)mf[2].len;
    REQUIRE(shoal_msg_encode(&g_m, &req) == 0);
    CHECK_EQ(shoal_trkc_send_raw(c, req.data, req.len, TMO), 0);
    shoal_buf_free(&req);
    for (int i = 0; i < 4; i++) {
        REQUIRE(shoal_trkc_recv(c, &g_m, TMO) == 0);
        const struct shoal_buf *want = &mf[i < 3 ? 0 : 1];
        CHECK(g_m.type == SHOAL_MSG_MANIFEST &&
              g_m.u.manifest.signed_manifest.len == want->len &&
              memcmp(g_m.u.manifest.signed_manifest.p, want->data, want->len) == 0);
    }
    REQUIRE(shoal_trkc_recv(c, &g_m, TMO) == 0);
    CHECK(g_m.type == SHOAL_MSG_OK);
    /* The second (fetched last) and the third are kept, the first gone. */
    memset(&g_m.u.get_manifest, 0, sizeof(g_m.u.get_manifest));
    g_m.type = SHOAL_MSG_GET_MANIFEST;
    g_m.u.get_manifest.has_id = true;
    memcpy(g_m.u.get_manifest.by_id, ids[0], 32);
    REQUIRE(shoal_trkc_call(c, &g_m, &g_m, TMO) == 0);
    CHECK(g_m.type == SHOAL_MSG_ERROR && g_m.u.error.code == SHOAL_ENOTFOUND);
    memset(&g_m.u.get_manifest, 0, sizeof(g_m.u.get_manifest));
    g_m.type = SHOAL_MSG_GET_MANIFEST;
    g_m.u.get_manifest.has_id = true;
    memcpy(g_m.u.get_manifest.by_id, ids[1], 32);
    REQUIRE(shoal_trkc_call(c, &g_m, &g_m, TMO) == 0);
    CHECK(g_m.type == SHOAL_MSG_MANIFEST);
    CHECK_EQ(stat_value(c, "shoal_tracker_manifests_forgotten_total"), 1);
    for (int i = 0; i < 3; i++)
        shoal_buf_free(&mf[i]);
    shoal_trkc_free(c);
    CHECK_EQ(stop_tracker(&p), 0);
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2);
    g_bin = argv[1];
    signal(SIGPIPE, SIG_IGN);
    snprintf(g_dir, sizeof(g_dir), "/tmp/shoal-trk-XXXXXX");
    REQUIRE(mkdtemp(g_dir) != NULL);
    struct shoal_pubkey cpk, opk, ppk, rpk, apk;
    struct shoal_seckey ask;
    REQUIRE(shoal_key_generate(&cpk, &g_cluster_sk) == 0);
    REQUIRE(shoal_key_generate(&opk, &g_other_cluster_sk) == 0);
    REQUIRE(shoal_key_generate(&ppk, &g_pub_sk) == 0);
    REQUIRE(shoal_key_generate(&rpk, &g_rogue_pub_sk) == 0);
    REQUIRE(shoal_key_generate(&apk, &ask) == 0);
    char path[128];
    snprintf(path, sizeof(path), "%s/cluster.pub", g_dir);
    REQUIRE(shoal_pubkey_save(path, &cpk) == 0);
    snprintf(path, sizeof(path), "%s/publisher.keys", g_dir);
    REQUIRE(shoal_pubkey_save(path, &ppk) == 0);
    snprintf(path, sizeof(path), "%s/admin.keys", g_dir);
    REQUIRE(shoal_pubkey_save(path, &apk) == 0);
    snprintf(path, sizeof(path), "%s/admin.sk", g_dir);
    REQUIRE(shoal_seckey_save(path, &ask) == 0);

    RUN(test_auth_refusals);
    RUN(test_expiry_and_zones);
    RUN(test_leases);
    RUN(test_session_reconnect);
    RUN(test_bye_old_session);
    RUN(test_gone_flap);
    RUN(test_lease_reply_lost);
    RUN(test_lease_reclaim);
    RUN(test_lease_start_grace);
    RUN(test_fetched_claim);
    RUN(test_manifests_rollouts_restart);
    RUN(test_bad_input);
    RUN(test_identity_binding_and_expiry);
    RUN(test_unauth_pool);
    RUN(test_unauth_flood);
    RUN(test_publisher_refuse_throttled);
    RUN(test_backpressure);
    RUN(test_rate_limit_and_reput);
    RUN(test_name_newest);
    RUN(test_roles);
    RUN(test_frame_limits);
    RUN(test_frame_deadline);
    RUN(test_conns_per_key);
    RUN(test_junk_announces);
    RUN(test_manifest_lru);
    RUN(test_bound_login);

    const char *files[] = { "cluster.pub", "publisher.keys", "admin.keys", "admin.sk",
                            "flood.log" };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof(path), "%s/%s", g_dir, files[i]);
        unlink(path);
    }
    rmdir(g_dir);
    return t_done();
}
