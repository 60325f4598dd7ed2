/* SPDX-License-Identifier: MIT */
/*
 * Tracker load generator. Starts shoal-tracker (argv[1]) on 127.0.0.1,
 * pinned to CPU 0 with taskset when there are two CPUs or more, and runs
 * itself on CPU 1. 10,000 simulated nodes, each holding 3 of 30 manifests,
 * are carried over 4 connections: each connection authenticates its 2,500
 * node identities once (full credential and signature checks), then for
 * every announce switches to the node's identity (TRK_AUTH naming a key
 * already verified on that connection, see tracker/server.h) and sends its
 * ANNOUNCE, pipelined in batches.
 *
 * Prints:
 *   BENCH tracker_auths_per_s         full handshakes per second (setup)
 *   BENCH tracker_announces_per_s     announces answered per second
 *   BENCH tracker_announces_per_cpu_s announces per tracker CPU second
 *   BENCH tracker_peers_idle_p99_us   GET_PEERS round trip, no other load
 *   BENCH tracker_peers_p99_us        GET_PEERS round trip during announces
 *   BENCH tracker_bytes_per_entry     tracker VmRSS growth from startup to
 *                                     all 30,000 node-manifest entries held,
 *                                     divided by 30,000 (includes the
 *                                     connections' identity tables)
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cred.h"
#include "error.h"
#include "keys.h"
#include "msg.h"
#include "trkclient.h"

#define NODES 10000
#define CONNS 4
#define PER_CONN (NODES / CONNS)
#define MANIFESTS 30
#define PER_NODE 3
#define ROUNDS 10
#define BATCH 128
#define TMO 10000

struct node {
    struct shoal_seckey sk;
    uint8_t cred[SHOAL_CRED_MAX_ENCODED];
    size_t cred_len;
    char addr[32];
    const char *zone;
};

static struct node *g_nodes;
static char g_addr[32];
static atomic_int g_load_running;

struct worker {
    int idx;
    struct shoal_trkc *c;
    struct shoal_buf frames;        /* per node: switch frame + announce frame */
    size_t off[PER_CONN + 1];       /* where node i's frames start */
    uint64_t announces;
    int err;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* CPU seconds (user + system) the process has used so far, or -1. */
static double cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    double v = -1;
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* Fields after the command name, which may contain spaces. */
    const char *p = strrchr(buf, ')');
    unsigned long ut, st;
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
        v = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    return v;
}

static void manifest_id(uint8_t out[32], int m)
{
    memset(out, 0, 32);
    out[0] = 0x4d;
    out[1] = (uint8_t)m;
}

/* Pre-encodes node |i|'s identity switch and announce. */
static int encode_node(struct worker *w, int i, struct shoal_msg *m)
{
    const struct node *nd = &g_nodes[w->idx * PER_CONN + i];
    struct shoal_pubkey pk;
    shoal_seckey_public(&nd->sk, &pk);
    memset(m, 0, sizeof(*m));
    m->type = SHOAL_MSG_TRK_AUTH;
    memcpy(m->u.trk_auth.node_pk, pk.pk, 32);
    m->u.trk_auth.cred.p = nd->cred;
    m->u.trk_auth.cred.len = (uint32_t)nd->cred_len;
    /* A switch back is not re-verified; the signature field is filler. */
    m->u.trk_auth.zone.p = nd->zone;
    m->u.trk_auth.zone.len = (uint32_t)strlen(nd->zone);
    m->u.trk_auth.listen_addr.p = nd->addr;
    m->u.trk_auth.listen_addr.len = (uint32_t)strlen(nd->addr);
    int rv = shoal_msg_encode(m, &w->frames);
    if (rv)
        return rv;
    m->type = SHOAL_MSG_ANNOUNCE;
    m->u.announce.count = PER_NODE;
    int node = w->idx * PER_CONN + i;
    for (int k = 0; k < PER_NODE; k++) {
        struct shoal_msg_announce_entry *e = &m->u.announce.entries[k];
        manifest_id(e->manifest_id, (node % 10) * PER_NODE + k);
        e->total_chunks = 1000;
        e->have_chunks = (uint32_t)(node * 7 + k) % 1001;
        e->complete = e->have_chunks == 1000;
    }
    return shoal_msg_encode(m, &w->frames);
}

static void *announce_worker(void *arg)
{
    struct worker *w = arg;
    struct shoal_msg *m = malloc(sizeof(*m));
    if (!m) {
        w->err = -ENOMEM;
        return NULL;
    }
    /* Batches are sent one ahead of the replies being read, so the tracker
     * always has a batch to work on while this thread drains the last. */
    for (int r = 0; r < ROUNDS && !w->err; r++) {
        w->err = shoal_trkc_send_raw(w->c, w->frames.data + w->off[0],
                                     w->off[BATCH < PER_CONN ? BATCH : PER_CONN] - w->off[0], TMO);
        for (int b = 0; b < PER_CONN && !w->err; b += BATCH) {
            int e = b + BATCH < PER_CONN ? b + BATCH : PER_CONN;
            if (e < PER_CONN) {
                int e2 = e + BATCH < PER_CONN ? e + BATCH : PER_CONN;
                w->err = shoal_trkc_send_raw(w->c, w->frames.data + w->off[e],
                                             w->off[e2] - w->off[e], TMO);
            }
            for (int i = b; i < e && !w->err; i++) {
                if ((w->err = shoal_trkc_recv(w->c, m, TMO)) == 0 && m->type != SHOAL_MSG_OK)
                    w->err = SHOAL_EPROTO;
                if (!w->err && (w->err = shoal_trkc_recv(w->c, m, TMO)) == 0 &&
                    m->type != SHOAL_MSG_ANNOUNCE_REPLY)
                    w->err = SHOAL_EPROTO;
                if (!w->err)
                    w->announces++;
            }
        }
    }
    free(m);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* GET_PEERS round trips on |c| until |stop| says so (or |max_n| done);
 * returns the p99 in microseconds, or -1. */
static double peers_p99(struct shoal_trkc *c, int max_n, bool while_loaded)
{
    struct shoal_msg *m = malloc(sizeof(*m));
    double *lat = malloc(sizeof(double) * (size_t)max_n);
    int n = 0;
    double p99 = -1;
    if (!m || !lat)
        goto out;
    while (n < max_n && (!while_loaded || atomic_load(&g_load_running))) {
        m->type = SHOAL_MSG_GET_PEERS;
        manifest_id(m->u.get_peers.manifest_id, n % MANIFESTS);
        m->u.get_peers.max = 50;
        double t0 = now_s();
        if (shoal_trkc_call(c, m, m, TMO) != 0 || m->type != SHOAL_MSG_PEERS)
            goto out;
        lat[n++] = (now_s() - t0) * 1e6;
    }
    if (n > 0) {
        qsort(lat, (size_t)n, sizeof(double), cmp_double);
        p99 = lat[(size_t)((n - 1) * 0.99)];
    }
    fprintf(stderr, "bench_tracker: %d GET_PEERS samples%s, p50 %.1f us\n", n,
            while_loaded ? " under load" : "", n ? lat[n / 2] : -1.0);
out:
    free(m);
    free(lat);
    return p99;
}

static pid_t start_tracker(const char *bin, const char *keyfile, int *port)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    bool pin = sysconf(_SC_NPROCESSORS_ONLN) >= 2 && access("/usr/bin/taskset", X_OK) == 0;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        const char *args[] = { "--listen", "127.0.0.1:0", "--cluster-key", keyfile,
                               "--node-ttl-ms", "600000", "--seed", "1", NULL };
        if (pin) {
            execl("/usr/bin/taskset", "taskset", "-c", "0", bin, args[0], args[1], args[2],
                  args[3], args[4], args[5], args[6], args[7], (char *)NULL);
        } else {
            execl(bin, bin, args[0], args[1], args[2], args[3], args[4], args[5], args[6],
                  args[7], (char *)NULL);
        }
        _exit(127);
    }
    close(fds[1]);
    char line[128] = "";
    size_t len = 0;
    for (int i = 0; i < 100 && !memchr(line, '\n', len); i++) {
        struct pollfd p = { .fd = fds[0], .events = POLLIN };
        if (poll(&p, 1, 100) > 0) {
            ssize_t r = read(fds[0], line + len, sizeof(line) - 1 - len);
            if (r <= 0)
                break;
            len += (size_t)r;
            line[len] = 0;
        }
    }
    close(fds[0]);
    const char *colon = strrchr(line, ':');
    *port = colon ? atoi(colon + 1) : -1;
    return pid;
}

int main(int argc, char **argv)
{
    int status = 1;
    if (argc != 2) {
        fprintf(stderr, "usage: bench_tracker PATH-TO-shoal-tracker\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (sysconf(_SC_NPROCESSORS_ONLN) >= 2) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(1, &set);
        sched_setaffinity(0, sizeof(set), &set);
    }
    char dir[] = "/tmp/shoal-bench-trk-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char keyfile[64];
    snprintf(keyfile, sizeof(keyfile), "%s/cluster.pub", dir);
    struct shoal_pubkey cpk;
    struct shoal_seckey csk;
    struct worker w[CONNS];
    memset(w, 0, sizeof(w));
    pid_t pid = -1;
    struct shoal_trkc *probe = NULL;
    struct shoal_msg *m = malloc(sizeof(*m));
    g_nodes = calloc(NODES, sizeof(*g_nodes));
    if (!m || !g_nodes || shoal_key_generate(&cpk, &csk) != 0 ||
        shoal_pubkey_save(keyfile, &cpk) != 0)
        goto out;

    uint64_t expires = (uint64_t)time(NULL) + 86400;
    for (int i = 0; i < NODES; i++) {
        struct node *nd = &g_nodes[i];
        struct shoal_pubkey pk;
        struct shoal_cred cr;
        struct shoal_buf b;
        if (shoal_key_generate(&pk, &nd->sk) != 0 || shoal_cred_issue(&cr, &csk, &pk, expires))
            goto out;
        shoal_buf_init(&b, sizeof(nd->cred));
        if (shoal_cred_encode(&cr, &b) != 0) {
            shoal_buf_free(&b);
            goto out;
        }
        memcpy(nd->cred, b.data, b.len);
        nd->cred_len = b.len;
        shoal_buf_free(&b);
        snprintf(nd->addr, sizeof(nd->addr), "10.%d.%d.%d:7000", i >> 16, (i >> 8) & 255, i & 255);
        nd->zone = i % 4 == 0 ? "zone-b" : "zone-a";
    }

    int port;
    pid = start_tracker(argv[1], keyfile, &port);
    if (pid <= 0 || port <= 0) {
        fprintf(stderr, "bench_tracker: tracker did not start\n");
        goto out;
    }
    snprintf(g_addr, sizeof(g_addr), "127.0.0.1:%d", port);
    usleep(100000);
    long rss0 = rss_kb(pid);

    /* Setup: every node identity authenticates in full once. */
    double t0 = now_s();
    for (int k = 0; k < CONNS; k++) {
        w[k].idx = k;
        shoal_buf_init(&w[k].frames, 64u << 20);
        if (shoal_trkc_connect(&w[k].c, g_addr, TMO) != 0)
            goto out;
        for (int i = 0; i < PER_CONN; i++) {
            const struct node *nd = &g_nodes[k * PER_CONN + i];
            int rv = shoal_trkc_auth(w[k].c, &nd->sk, nd->cred, nd->cred_len, nd->zone, nd->addr,
                                     0, TMO);
            if (rv) {
                fprintf(stderr, "bench_tracker: auth: %s\n", shoal_strerror(rv));
                goto out;
            }
        }
        for (int i = 0; i < PER_CONN; i++) {
            w[k].off[i] = w[k].frames.len;
            if (encode_node(&w[k], i, m) != 0)
                goto out;
        }
        w[k].off[PER_CONN] = w[k].frames.len;
    }
    double auth_s = now_s() - t0;

    /* The probe connection: one more node asking for peers. */
    if (shoal_trkc_connect(&probe, g_addr, TMO) != 0 ||
        shoal_trkc_auth(probe, &g_nodes[0].sk, g_nodes[0].cred, g_nodes[0].cred_len, "zone-a",
                        g_nodes[0].addr, 0, TMO) != 0)
        goto out;

    /* Peer requests run beside the announce load; the idle baseline is
     * taken after it, on the same (by then full) registry. */
    pthread_t th[CONNS];
    atomic_store(&g_load_running, 1);
    double cpu0 = cpu_s(pid);
    t0 = now_s();
    for (int k = 0; k < CONNS; k++)
        pthread_create(&th[k], NULL, announce_worker, &w[k]);
    double p99_load = peers_p99(probe, 20000, true);
    for (int k = 0; k < CONNS; k++)
        pthread_join(th[k], NULL);
    double ann_s = now_s() - t0;
    double cpu1 = cpu_s(pid);
    atomic_store(&g_load_running, 0);
    uint64_t announces = 0;
    for (int k = 0; k < CONNS; k++) {
        if (w[k].err) {
            fprintf(stderr, "bench_tracker: announce worker %d: %s\n", k,
                    shoal_strerror(w[k].err));
            goto out;
        }
        announces += w[k].announces;
    }
    long rss1 = rss_kb(pid);
    double p99_idle = peers_p99(probe, 5000, false);

    m->type = SHOAL_MSG_STATS_REQ;
    if (shoal_trkc_call(probe, m, m, TMO) == 0 && m->type == SHOAL_MSG_STATS) {
        const char *e = memmem(m->u.stats.text.p, m->u.stats.text.len, "\nshoal_tracker_entries ", 23);
        if (e)
            fprintf(stderr, "bench_tracker: tracker reports entries %ld\n", atol(e + 23));
    }

    double entries = (double)NODES * PER_NODE;
    printf("BENCH tracker_auths_per_s %.0f auths/s\n", NODES / auth_s);
    printf("BENCH tracker_announces_per_s %.0f announces/s\n", (double)announces / ann_s);
    /* Announces per second of tracker CPU time (GET_PEERS requests of the
     * probe included): the capacity of one core even when other processes
     * share it during the run. */
    printf("BENCH tracker_announces_per_cpu_s %.0f announces/s\n",
           cpu0 >= 0 && cpu1 > cpu0 ? (double)announces / (cpu1 - cpu0) : -1.0);
    printf("BENCH tracker_peers_idle_p99_us %.1f us\n", p99_idle);
    printf("BENCH tracker_peers_p99_us %.1f us\n", p99_load);
    printf("BENCH tracker_bytes_per_entry %.0f bytes\n",
           rss0 > 0 && rss1 > 0 ? (double)(rss1 - rss0) * 1024.0 / entries : -1.0);
    fprintf(stderr, "bench_tracker: %llu announces in %.2f s over %d connections, rss %ld -> %ld kB\n",
            (unsigned long long)announces, ann_s, CONNS, rss0, rss1);
    status = 0;
out:
    shoal_trkc_free(probe);
    for (int k = 0; k < CONNS; k++) {
        shoal_trkc_free(w[k].c);
        shoal_buf_free(&w[k].frames);
    }
    if (pid > 0) {
        kill(pid, SIGTERM);
        for (int i = 0; i < 100; i++) {
            if (waitpid(pid, NULL, WNOHANG) == pid) {
                pid = -1;
                break;
            }
            usleep(50000);
        }
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
    }
    unlink(keyfile);
    rmdir(dir);
    free(m);
    free(g_nodes);
    return status;
}
