/* SPDX-License-Identifier: MIT */
/*
 * What a shoal-sim run will cost, and the progress lines that tell an
 * operator where a long one is. A fleet's run is one transfer per node and
 * chunk, each a few microseconds of CPU, and its memory is a scheduler per
 * node with ~13 bytes per chunk: 2,000 nodes pulling 140 GiB is 2.9e8
 * transfers and ~3.4 GiB, most of an hour, and without these lines the
 * first ten simulated seconds printed nothing for minutes. Nothing here
 * touches the simulation: it only reads its counters and the wall clock.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

/* The model, from the benchmarks in README.md (bench_sim, session 8, an
 * idle machine): memory is a fixed ~8 MiB, ~30 KiB per node (peer tables,
 * connections, the node's records) and ~12.5 bytes per node and chunk
 * (the scheduler's 12-byte chunk record and its buckets, the node's
 * have-set, the holder bitmap; the schedulers borrow the peers' have-sets,
 * shoal_sched_borrow_all): 1,000 nodes x 10,240 chunks 165 MB, 10,000 x
 * 10,240 1,583 MiB; 2,000 x 143,416 (140 GiB) took ~4.5 GB before the
 * borrowing, ~3.6 GB estimated now. The CPU per
 * transfer grows with that state, since a transfer touches ~100 lines of
 * other nodes' state and the larger it is the fewer hit the cache. On a
 * shared machine a run takes longer: the progress lines' ETA is measured. */
#define MEM_FIXED (8.0 * 1048576)
#define MEM_PER_NODE (30.0 * 1024)
#define MEM_PER_NODE_CHUNK 12.5
/* The figures above are for the default 32 peers a node. Each peer costs
 * a node ~600 bytes (its two connections, its records in the scheduler),
 * and a transfer's HAVE reaches the peers that lack the chunk, so the CPU
 * per transfer grows with the peer set too: 1,000 nodes x 256 MiB took
 * 1.15, 3.5, 7.0, 18.7 and 42 us a transfer with 8, 32, 64, 128 and 250
 * peers (a loaded machine), and 2,000 nodes x 16 MiB 28, 59, 96, 165 and
 * 300 MB. The estimate took no account of peers: --peers 250 was
 * estimated at 91 MiB and 7.6 s for 2,000 nodes x 1 GiB, and took 325 MiB
 * and over two minutes. */
#define PEERS_MODEL 32.0
#define MEM_PER_PEER 600.0

/* The CPU per transfer with |peers| against that with PEERS_MODEL:
 * (p/32)^1.2 above, (p/32)^0.8 below (the fixed part weighs more in a
 * small peer set), at least 0.2 (peers 0: the origin alone). */
static double peers_factor(uint32_t peers)
{
    double q = peers / PEERS_MODEL;
    double f = q >= 1 ? pow(q, 1.2) : pow(q, 0.8);
    return f > 0.2 ? f : 0.2;
}

static const struct {
    double mem;   /* bytes resident */
    double us;    /* microseconds of CPU per transfer */
} cpu_model[] = {
    /* Memory as resident with borrowed have-sets (the CPU figures were
     * measured before; borrowing left them unchanged). */
    {22e6, 2.2},  /* 300 nodes */
    {64e6, 3.0},  /* 1,000 nodes, 2 GiB: ~330k transfers/s */
    {185e6, 4.8}, /* 3,000 nodes */
    {1.66e9, 7.0}, /* 10,000 nodes, 10 GiB: 7.0 us, 724 s */
    /* 2,000 nodes, 140 GiB (143k chunks a node, --help's example): 4.7x
     * the 1,000-node run's CPU per transfer on the same machine in its
     * first minutes (42k against 197k transfers per CPU-second, both
     * slower than the README's idle machine); 4.5 GB then, ~3.6 GB now */
    {3.6e9, 15.0}
};

static double us_per_transfer(double mem)
{
    const size_t n = sizeof(cpu_model) / sizeof(cpu_model[0]);
    if (mem <= cpu_model[0].mem)
        return cpu_model[0].us;
    /* Linear in log(memory) between the points, and beyond the last one
     * along the last segment's slope. */
    size_t i = 1;
    while (i < n - 1 && mem > cpu_model[i].mem)
        i++;
    double x0 = log(cpu_model[i - 1].mem), x1 = log(cpu_model[i].mem);
    double y0 = cpu_model[i - 1].us, y1 = cpu_model[i].us;
    return y0 + (y1 - y0) * (log(mem) - x0) / (x1 - x0);
}

void shoal_sim_cost(const struct shoal_sim_config *c, uint32_t nchunks,
                    struct shoal_sim_cost *out)
{
    memset(out, 0, sizeof(*out));
    uint32_t leech = c->nodes > c->seeds ? c->nodes - c->seeds : 0;
    out->nchunks = nchunks;
    out->transfers = (uint64_t)leech * nchunks;
    double chunks = MEM_PER_NODE_CHUNK * (double)c->nodes * nchunks;
    double peers = ((double)c->max_peers - PEERS_MODEL) * MEM_PER_PEER;
    out->mem_bytes = MEM_FIXED + (MEM_PER_NODE + peers) * c->nodes + chunks;
    /* The model's memory is that of 32 peers: the CPU model was measured
     * there, and the peers' own cost is in the factor. */
    out->us_per_transfer = us_per_transfer(MEM_FIXED + MEM_PER_NODE * c->nodes + chunks) *
                           peers_factor(c->max_peers);
    out->seconds = (double)out->transfers * out->us_per_transfer * 1e-6;
}

/* "45 s", "12 min", "3.5 h": an order of magnitude a person reads at once. */
static void fmt_dur(char *buf, size_t len, double s)
{
    if (!(s >= 0) || !isfinite(s))
        snprintf(buf, len, "?");
    else if (s < 10)
        snprintf(buf, len, "%.1f s", s);
    else if (s < 90)
        snprintf(buf, len, "%.0f s", s);
    else if (s < 90 * 60)
        snprintf(buf, len, "%.0f min", s / 60);
    else
        snprintf(buf, len, "%.1f h", s / 3600);
}

static void fmt_bytes(char *buf, size_t len, double b)
{
    if (b >= 1073741824.0)
        snprintf(buf, len, "%.1f GiB", b / 1073741824.0);
    else
        snprintf(buf, len, "%.0f MiB", b / 1048576.0);
}

static void fmt_rate(char *buf, size_t len, double r)
{
    if (r >= 1e6)
        snprintf(buf, len, "%.2fM", r / 1e6);
    else if (r >= 1e3)
        snprintf(buf, len, "%.0fk", r / 1e3);
    else
        snprintf(buf, len, "%.0f", r);
}

/* Physical memory (0 when unknown). */
static double phys_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    return pages > 0 && psz > 0 ? (double)pages * (double)psz : 0;
}

bool shoal_sim_cost_exceeds_ram(const struct shoal_sim_cost *k)
{
    double phys = phys_bytes();
    return phys > 0 && k->mem_bytes > phys;
}

bool shoal_sim_cost_large(const struct shoal_sim_cost *k)
{
    double phys = phys_bytes();
    return (double)k->transfers > SHOAL_SIM_LARGE_TRANSFERS ||
           (phys > 0 && k->mem_bytes > 0.8 * phys);
}

void shoal_sim_cost_print(const struct shoal_sim_config *c, const struct shoal_sim_cost *k,
                          bool progress, FILE *f)
{
    char mem[32], dur[32], rate[32];
    fmt_bytes(mem, sizeof(mem), k->mem_bytes);
    fmt_dur(dur, sizeof(dur), k->seconds);
    fmt_rate(rate, sizeof(rate), 1e6 / k->us_per_transfer);
    if (progress)
        fprintf(f, "sim: %u node%s x %u chunk%s: ~%.3g transfers, ~%s of memory, roughly %s"
                   " at ~%s transfers/s\n",
                c->nodes, c->nodes == 1 ? "" : "s", k->nchunks, k->nchunks == 1 ? "" : "s",
                (double)k->transfers, mem, dur, rate);
    if (!shoal_sim_cost_large(k))
        return;
    double phys = phys_bytes();
    char note[64] = "";
    if (phys > 0 && k->mem_bytes > 0.8 * phys) {
        char b[32];
        fmt_bytes(b, sizeof(b), phys);
        snprintf(note, sizeof(note), " (this machine has %s)", b);
    }
    fprintf(f, "sim: warning: a large run: ~%.3g transfers will take roughly %s at ~%s"
               " transfers/s and need ~%s of memory%s; fewer nodes, a smaller --size or a"
               " larger --chunk-avg make it smaller\n",
            (double)k->transfers, dur, rate, mem, note);
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Resident memory now, from /proc (0 where there is none). */
static double rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &res) != 2)
        res = 0;
    fclose(f);
    return (double)res * (double)sysconf(_SC_PAGESIZE);
}

void shoal_sim_progress_init(struct shoal_sim_progress *p, const struct shoal_sim_config *c)
{
    memset(p, 0, sizeof(*p));
    p->every = c->progress_every_s > 0 ? c->progress_every_s : 10;
    p->wall0 = p->run0 = wall_now();
    p->next_wall = p->wall0 + p->every;
}

void shoal_sim_progress_start(struct shoal_sim_progress *p, uint32_t nodes, uint64_t expect,
                              double t_min, FILE *f)
{
    double w = wall_now(), m = rss_bytes();
    char dur[32], rss[32];
    p->expect = expect;
    p->t_min = t_min;
    p->sim_step = t_min > 0 ? t_min / 10 : 10;
    /* Not at t=0: the nodes joining then are handled one event at a time, and
     * a line after the first said "1 node still downloading" of 50. */
    p->next_sim = p->sim_step;
    p->run0 = w;
    p->next_wall = w + p->every;
    fmt_dur(dur, sizeof(dur), w - p->wall0);
    fmt_bytes(rss, sizeof(rss), m);
    /* Setting up a large fleet's schedulers takes a while too (40 s for
     * 2,000 nodes of 143k chunks): say it is done. */
    fprintf(f, "sim: %u node%s set up in %s%s%s; T_min %.3f s; simulating\n", nodes,
            nodes == 1 ? "" : "s", dur,
            m > 0 ? ", RSS " : "", m > 0 ? rss : "", t_min);
    fflush(f);
}

bool shoal_sim_progress_wall_due(const struct shoal_sim_progress *p)
{
    return wall_now() >= p->next_wall;
}

void shoal_sim_progress_print(struct shoal_sim_progress *p, double now, uint32_t downloading,
                              uint64_t transfers, FILE *f)
{
    double w = wall_now(), el = w - p->wall0, run = w - p->run0;
    char eta[32], rate[32], wall[32], rss[32];
    if (p->printed && transfers == p->last_transfers && downloading == p->last_downloading &&
        w < p->next_wall) {
        p->next_sim = now + p->sim_step;
        return;
    }
    p->printed = true;
    p->last_transfers = transfers;
    p->last_downloading = downloading;
    double rt = run > 0 ? (double)transfers / run : 0;
    if (transfers >= p->expect)
        snprintf(eta, sizeof(eta), "soon");
    else if (rt > 0 && transfers > 0)
        fmt_dur(eta, sizeof(eta), (double)(p->expect - transfers) / rt);
    else
        snprintf(eta, sizeof(eta), "?");
    fmt_rate(rate, sizeof(rate), rt);
    fmt_dur(wall, sizeof(wall), el);
    double m = rss_bytes();
    if (m > 0)
        fmt_bytes(rss, sizeof(rss), m);
    /* Tenths of a second, or milliseconds for a run whose T_min is under
     * a second (its lines all said t=0.0s, T_min 0.0s). */
    int dec = p->t_min > 0 && p->t_min < 1 ? 3 : 1;
    fprintf(f, "sim: t=%.*fs", dec, now);
    if (p->t_min > 0)
        fprintf(f, " (T_min %.*fs)", dec, p->t_min);
    fprintf(f, ", %u node%s still downloading, %llu of ~%llu transfers (%.1f%%), %s/s,"
               " ETA %s, wall %s%s%s\n",
            downloading, downloading == 1 ? "" : "s", (unsigned long long)transfers, (unsigned long long)p->expect,
            p->expect ? 100.0 * (double)transfers / (double)p->expect : 100.0, rate, eta, wall,
            m > 0 ? ", RSS " : "", m > 0 ? rss : "");
    fflush(f);
    p->next_sim = now + p->sim_step;
    p->next_wall = w + p->every;
}
