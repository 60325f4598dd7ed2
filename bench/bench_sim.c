/* SPDX-License-Identifier: MIT */
/*
 * Benchmarks of shoal-sim (suite 'sim'): how fast the simulator runs, and
 * how well the scheduler does as the simulator sees it.
 *
 *   bench_sim            the homogeneous 1,000-node fleet in 4 equal zones
 *                        (10 Gbit/s nodes and origin, 2 GiB release, 1 MiB
 *                        average chunks): completion over T_min, origin
 *                        egress, cross-zone share, the same with 5% of the
 *                        nodes failing half-way, and transfers per second.
 *   bench_sim --10k      the 10,000-node, 4-zone, 10 GiB rollout: wall time
 *                        and peak RSS.
 *
 * Each figure is printed as "BENCH <name> <value> <unit>", met or not.
 * Rates and times come both from the wall clock and from this process's
 * CPU time: on a machine shared with other work the CPU figures are the
 * ones that compare (the simulator is single-threaded).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Peak resident set of this process, MiB (VmHWM). */
static double peak_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kib = 0;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kib = strtod(line + 6, NULL);
    fclose(f);
    return kib / 1024.0;
}

static void fleet(struct shoal_sim_config *c, uint32_t nodes, uint64_t size)
{
    shoal_sim_config_default(c);
    c->nodes = nodes;
    c->zones = 4;
    c->release_bytes = size;
    c->node_up = c->node_down = c->origin_up = 1.25e9;
}

static int run_1k(void)
{
    struct shoal_sim_config c;
    struct shoal_sim_result *r = NULL;
    fleet(&c, 1000, 2ull << 30);
    double t0 = wall(), c0 = cpu();
    if (shoal_sim_run(&c, &r) != 0) {
        fprintf(stderr, "bench_sim: 1k run failed\n");
        return 1;
    }
    double dt = wall() - t0, dc = cpu() - c0;
    shoal_sim_print_summary(r, stderr);
    printf("BENCH sim_1k_last_over_tmin %.4f ratio\n", r->max / r->t_min);
    printf("BENCH sim_1k_p99_over_tmin %.4f ratio\n", r->p99 / r->t_min);
    printf("BENCH sim_1k_origin_x %.4f ratio\n", (double)r->origin_bytes / (double)r->release_bytes);
    /* Bytes that crossed zones on the wire, waste included, over all
     * bytes received on the wire (before: useful bytes across over whole
     * chunks received, duplicates included). */
    printf("BENCH sim_1k_cross_zone_frac %.5f ratio\n",
           (double)r->cross_wire / (double)r->recv_wire);
    printf("BENCH sim_transfers_per_s %.0f transfers/s\n", (double)r->transfers / dt);
    printf("BENCH sim_transfers_per_cpu_s %.0f transfers/s\n", (double)r->transfers / dc);
    shoal_sim_result_free(r);

    fleet(&c, 1000, 2ull << 30);
    c.fail_frac = 0.05;
    c.fail_at_s = 0.5 * 1.75; /* about half of T_min for this fleet (kept fixed
                                 as T_min was refined, so runs compare) */
    if (shoal_sim_run(&c, &r) != 0) {
        fprintf(stderr, "bench_sim: 1k failure run failed\n");
        return 1;
    }
    shoal_sim_print_summary(r, stderr);
    printf("BENCH sim_1k_fail_last_over_tmin %.4f ratio\n", r->max / r->t_min);
    shoal_sim_result_free(r);
    return 0;
}

static int run_10k(void)
{
    struct shoal_sim_config c;
    struct shoal_sim_result *r = NULL;
    fleet(&c, 10000, 10ull << 30);
    c.progress = true;
    double t0 = wall(), c0 = cpu();
    if (shoal_sim_run(&c, &r) != 0) {
        fprintf(stderr, "bench_sim: 10k run failed\n");
        return 1;
    }
    double dt = wall() - t0, dc = cpu() - c0;
    shoal_sim_print_summary(r, stderr);
    printf("BENCH sim_10k_wall_s %.1f s\n", dt);
    printf("BENCH sim_10k_cpu_s %.1f s\n", dc);
    printf("BENCH sim_10k_rss_mib %.0f MiB\n", peak_rss_mib());
    printf("BENCH sim_10k_transfers_per_s %.0f transfers/s\n", (double)r->transfers / dt);
    shoal_sim_result_free(r);
    return 0;
}

int main(int argc, char **argv)
{
    shoal_sim_huge_pages(argv);
    if (argc > 1 && strcmp(argv[1], "--10k") == 0)
        return run_10k();
    return run_1k();
}
