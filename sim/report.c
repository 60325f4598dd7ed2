/* SPDX-License-Identifier: MIT */
/*
 * shoal-sim's outputs: the text summary, the per-node CSV and an SVG with
 * two plots (nodes complete over time; receive rate by source over time).
 * The SVG is written by hand so the simulator needs no plotting library.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "sim.h"

static double ratio(double a, double b) { return b > 0 ? a / b : 0; }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One percentile line: a time that was reached with its ratio to T_min,
 * else why there is none. */
static void pct_line(FILE *f, const char *name, double t, const struct shoal_sim_result *r)
{
    if (isnan(t))
        fprintf(f, "%s none (no node had to complete: all seeds or failed)\n", name);
    else if (isinf(t))
        fprintf(f, "%s not reached (%u of %u nodes incomplete at %.3f s)\n", name,
                r->incomplete, r->completed + r->incomplete, r->end_s);
    else if (r->t_min > 0)
        fprintf(f, "%s %.3f s (%.3f x T_min)\n", name, t, ratio(t, r->t_min));
    else
        fprintf(f, "%s %.3f s\n", name, t);
}

/* With staggered joins, how long the nodes took from their own join: the
 * same ranking as the percentiles (incomplete nodes never done). */
static void since_join_line(const struct shoal_sim_result *r, FILE *f)
{
    double *t = malloc((r->nodes + 1) * sizeof(double));
    uint32_t n = 0;
    bool staggered = false;
    if (t == NULL)
        return;
    for (uint32_t i = 0; i < r->nodes; i++) {
        const struct shoal_sim_node *nd = &r->node[i];
        if (nd->seed || nd->failed)
            continue;
        staggered |= nd->join_s > 0;
        t[n++] = nd->done_s >= 0 ? nd->done_s - nd->join_s : INFINITY;
    }
    if (staggered && n > 0) {
        qsort(t, n, sizeof(double), cmp_double);
        double p50 = t[(size_t)ceil(0.50 * n) - 1], mx = t[n - 1];
        fprintf(f, "since join     ");
        if (isinf(p50))
            fprintf(f, "p50 not reached, ");
        else
            fprintf(f, "p50 %.3f s, ", p50);
        if (isinf(mx))
            fprintf(f, "max not reached\n");
        else
            fprintf(f, "max %.3f s\n", mx);
    }
    free(t);
}

void shoal_sim_print_summary(const struct shoal_sim_result *r, FILE *f)
{
    double F = (double)r->release_bytes;
    fprintf(f, "release        %.3f GiB in %u chunks\n", F / 1073741824.0, r->nchunks);
    uint32_t seeds = r->nodes - r->completed - r->failed - r->incomplete;
    if (seeds > 0)
        fprintf(f, "nodes          %u (%u seed%s, %u completed, %u failed, %u incomplete)\n",
                r->nodes, seeds, seeds == 1 ? "" : "s", r->completed, r->failed, r->incomplete);
    else
        fprintf(f, "nodes          %u (%u completed, %u failed, %u incomplete)\n", r->nodes,
                r->completed, r->failed, r->incomplete);
    if (r->interrupted)
        fprintf(f, "interrupted    at t=%.3f s (a signal): the figures are those of the run"
                   " so far\n", r->end_s);
    /* With join-spread, only the nodes there at fail-at can die. */
    char joined[96] = "";
    if (r->fail_pool < r->fail_pool_all)
        snprintf(joined, sizeof joined, " of the %u that had joined by then", r->fail_pool);
    if (r->fail_frac > 0 && r->fail_at_s < 0)
        /* The fraction rounded to no node at all: say so, not nothing. */
        fprintf(f, "failures       0 nodes (fail-frac %g of %u non-seed node%s%s rounds to"
                   " none)\n", r->fail_frac, r->fail_pool_all, r->fail_pool_all == 1 ? "" : "s",
                joined);
    if (r->died > 0)
        fprintf(f, "failures       %u node%s died at %.3f s (fail-at): %u before completing,"
                   " %u after\n", r->died, r->died == 1 ? "" : "s", r->fail_at_s, r->failed,
                r->died - r->failed);
    if (r->died > 0 && joined[0])
        fprintf(f, "               fail-frac %g of the %u non-seed nodes that had joined by"
                   " then; the %u yet to join do not die\n", r->fail_frac, r->fail_pool,
                r->fail_pool_all - r->fail_pool);
    if (r->died_done > 0)
        fprintf(f, "               %u of the completed died afterwards (counted as completed;"
                   " they stopped uploading)\n", r->died_done);
    if (r->died_after_end > 0) {
        fprintf(f, "               %u of them at fail-at %.3f s, after the rollout had ended"
                   " (not simulated: no one needed them)\n", r->died_after_end, r->fail_at_s);
    }
    if (r->t_min <= 0) {
        fprintf(f, "T_min          0 s (no node has to complete: all are seeds or fail)\n");
    } else if (r->t_min_zone > 0) {
        /* Say which bound binds, and what it is made of: an operator
         * reading a ratio far above 1 should see whether the caps set it. */
        fprintf(f, "T_min          %.3f s = max(links %.3f s, zone caps %.3f s)\n", r->t_min,
                r->t_min_links, r->t_min_zone);
        fprintf(f, "               no byte moves before t0 = %.3f s (first join, round trip)\n"
                   "               links: max(t0 + F/u_origin, s_i + F/d_i, survivors"
                   " starting after s_i over u_origin + sum u_i)\n"
                   "               zone caps: least T with u_origin*(T-t0) >= sum over zones z"
                   " of\n"
                   "               max(0, F - (Z-1)*cap*(T-t0) if z has no seed,"
                   " N_z*F - (U_z + (Z-1)*cap)*(T-t0))\n", r->t_min_t0);
        if (r->t_zone_1x > 0)
            /* What an operator meets first: with the origin sending each
             * byte once, the zones bring (Z-1)*F across Z*(Z-1) pairs. */
            fprintf(f, "               with origin egress 1x: at least t0 + F/(Z*cap) = %.3f s"
                       " (%.3f x T_min)\n", r->t_zone_1x, ratio(r->t_zone_1x, r->t_min));
    } else {
        fprintf(f, "T_min          %.3f s (no byte moves before %.3f s: first join, round trip)\n",
                r->t_min, r->t_min_t0);
    }
    pct_line(f, "completion p50", r->p50, r);
    pct_line(f, "completion p90", r->p90, r);
    pct_line(f, "completion p99", r->p99, r);
    pct_line(f, "completion max", r->max, r);
    since_join_line(r, f);
    if (r->cut_nodes > 0) {
        /* Why they are stuck, when it is the peers: "too few peers?"
         * was a guess. */
        bool one = r->cut_groups == 1;
        fprintf(f, "cut off        %u incomplete node%s in %u peer group%s that lack%s chunks other"
                   " groups hold: the tracker leases a chunk again only once its fetch is"
                   " lease-ms old, and no peer links the groups (more peers would)\n",
                r->cut_nodes, r->cut_nodes == 1 ? "" : "s", r->cut_groups, one ? "" : "s",
                one ? "s" : "");
        if (r->no_peer > 0)
            fprintf(f, "               %u of them ha%s no peer: every node the tracker listed"
                       " had its peer set full\n", r->no_peer, r->no_peer == 1 ? "s" : "ve");
    }
    fprintf(f, "origin egress  %.3f GiB (%.4f x release)\n", (double)r->origin_bytes / 1073741824.0,
            ratio((double)r->origin_bytes, F));
    /* What crosses zones is billed by the byte on the wire, waste and
     * all; the share is of the bytes received on the wire, likewise. */
    fprintf(f, "cross-zone     %.3f GiB on the wire (%.3f GiB useful), %.5f of the bytes"
               " received on the wire\n",
            (double)r->cross_wire / 1073741824.0, (double)r->cross_bytes / 1073741824.0,
            ratio((double)r->cross_wire, (double)r->recv_wire));
    if (r->lease_chunks)
        fprintf(f, "origin leases  %u chunks asked (shoald --lease-chunks %u), %llu granted,"
                   " %.1f chunks each\n",
                r->lease_chunks, r->lease_chunks, (unsigned long long)r->leases,
                r->leases ? (double)r->leased_chunks / (double)r->leases : 0.0);
    if (r->announces && r->end_s > 0)
        fprintf(f, "announces      %llu to the tracker, %.2f per node, %.2f per node per"
                   " simulated minute\n", (unsigned long long)r->announces,
                (double)r->announces / (double)r->nodes,
                (double)r->announces / (double)r->nodes / (r->end_s / 60.0));
    fprintf(f, "received       %.3f GiB on the wire, wasted %.3f GiB (duplicates, cancelled"
               " and aborted transfers)\n",
            (double)r->recv_wire / 1073741824.0, (double)r->wasted_bytes / 1073741824.0);
    fprintf(f, "transfers      %llu chunk transfers, %llu events, %.3f s simulated\n",
            (unsigned long long)r->transfers, (unsigned long long)r->events, r->end_s);
}

int shoal_sim_write_csv(const struct shoal_sim_result *r, FILE *f)
{
    fprintf(f, "node,zone,seed,failed,up_Bps,down_Bps,join_s,done_s,from_origin,from_zone,"
               "from_cross,uploaded,died_s,cross_wire,uploaded_wire\n");
    for (uint32_t i = 0; i < r->nodes; i++) {
        const struct shoal_sim_node *n = &r->node[i];
        fprintf(f, "%u,%u,%d,%d,%.0f,%.0f,%.6f,", i, n->zone, n->seed, n->failed, n->up,
                n->down, n->join_s);
        if (n->done_s >= 0)
            fprintf(f, "%.6f", n->done_s);
        fprintf(f, ",%llu,%llu,%llu,%llu,", (unsigned long long)n->from_origin,
                (unsigned long long)n->from_zone, (unsigned long long)n->from_cross,
                (unsigned long long)n->uploaded);
        if (n->died_s >= 0)
            fprintf(f, "%.6f", n->died_s);
        fprintf(f, ",%llu,%llu\n", (unsigned long long)n->cross_wire,
                (unsigned long long)n->uploaded_wire);
    }
    return ferror(f) ? -EIO : 0;
}

/* A tick step for an axis from 0 to |max|: 1, 2, 2.5 or 5 times a power of
 * ten, about five to an axis, so ticks read 0, 2, 4 s, not 4.04, 8.09. */
static double nice_step(double max)
{
    static const double m[] = {1, 2, 2.5, 5, 10};
    double raw = max > 0 ? max / 5 : 1, p = pow(10, floor(log10(raw)));
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (m[i] * p >= raw * (1 - 1e-9))
            return m[i] * p;
    return 10 * p;
}

/* |max| rounded up to a whole number of |step|s. */
static double nice_max(double max, double step)
{
    double n = ceil(max / step * (1 - 1e-12));
    return (n < 1 ? 1 : n) * step;
}

/* Plot frame at (x0, y0) of w x h with axis labels and ticks every
 * |tstep| up to |tmax| and |ystep| up to |ymax|. */
static void frame(FILE *f, double x0, double y0, double w, double h, double tmax, double tstep,
                  double ymax, double ystep, const char *title, const char *ylabel,
                  const char *yfmt)
{
    fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#333'/>\n",
            x0, y0, w, h);
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='14' text-anchor='middle'>%s</text>\n",
            x0 + w / 2, y0 - 8, title);
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='11' text-anchor='middle'>time (s)</text>\n",
            x0 + w / 2, y0 + h + 32);
    fprintf(f,
            "<text x='%.1f' y='%.1f' font-size='11' text-anchor='middle' "
            "transform='rotate(-90 %.1f %.1f)'>%s</text>\n",
            x0 - 48, y0 + h / 2, x0 - 48, y0 + h / 2, ylabel);
    for (int i = 0; i * tstep <= tmax * (1 + 1e-9) && i <= 20; i++) {
        double tx = x0 + w * i * tstep / tmax;
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ccc'/>\n", tx, y0, tx,
                y0 + h);
        fprintf(f, "<text x='%.1f' y='%.1f' font-size='10' text-anchor='middle'>%.4g</text>\n",
                tx, y0 + h + 14, i * tstep);
    }
    for (int i = 0; i * ystep <= ymax * (1 + 1e-9) && i <= 20; i++) {
        double ty = y0 + h - h * i * ystep / ymax;
        fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ccc'/>\n", x0, ty,
                x0 + w, ty);
        fprintf(f, "<text x='%.1f' y='%.1f' font-size='10' text-anchor='end'>", x0 - 4, ty + 3);
        fprintf(f, yfmt, i * ystep);
        fprintf(f, "</text>\n");
    }
}

/* A dashed vertical line at time |t| across a frame, labelled. */
static void marker(FILE *f, double x0, double y0, double w, double h, double t, double tmax,
                   const char *color, const char *label, int row)
{
    double x = x0 + w * t / tmax;
    fprintf(f,
            "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='%s' stroke-dasharray='4 3'/>\n"
            "<text x='%.1f' y='%.1f' font-size='10' fill='%s'>%s</text>\n",
            x, y0, x, y0 + h, color, x + 3, y0 + 12 + 12 * row, color, label);
}

int shoal_sim_write_svg(const struct shoal_sim_result *r, FILE *f)
{
    const double W = 800, H = 260, X0 = 80, Y1 = 40, Y2 = 380;
    double tmax = r->end_s > 0 ? r->end_s : 1;
    if (r->t_min > tmax)
        tmax = r->t_min;
    double tstep = nice_step(tmax);
    tmax = nice_max(tmax, tstep);
    double nstep = nice_step(r->nodes);
    if (nstep < 1)
        nstep = 1;
    double nmax = nice_max(r->nodes, nstep);
    double *t = malloc((r->completed + 1) * sizeof(double));
    uint32_t n = 0;
    if (t == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < r->nodes; i++)
        if (r->node[i].done_s >= 0 && !r->node[i].seed && !r->node[i].failed && n < r->completed)
            t[n++] = r->node[i].done_s;
    qsort(t, n, sizeof(double), cmp_double);

    fprintf(f, "<?xml version='1.0' encoding='UTF-8'?>\n"
               "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
               "font-family='sans-serif'>\n<rect width='100%%' height='100%%' fill='white'/>\n",
            X0 + W + 40, Y2 + H + 70);
    frame(f, X0, Y1, W, H, tmax, tstep, nmax, nstep, "Nodes complete over time", "nodes",
          "%.0f");
    marker(f, X0, Y1, W, H, r->t_min, tmax, "#c00", "T_min", 0);
    if (r->died > 0 && r->fail_at_s >= 0) {
        char what[64];
        snprintf(what, sizeof what, "%u died", r->died);
        marker(f, X0, Y1, W, H, r->fail_at_s, tmax, "#555", what, 1);
    }
    fprintf(f, "<polyline fill='none' stroke='#1f77b4' stroke-width='1.5' points='%.1f,%.1f",
            X0, Y1 + H);
    for (uint32_t i = 0; i < n; i++) {
        double x = X0 + W * t[i] / tmax;
        fprintf(f, " %.1f,%.1f %.1f,%.1f", x, Y1 + H - H * i / nmax, x,
                Y1 + H - H * (i + 1) / nmax);
    }
    fprintf(f, "'/>\n");
    free(t);

    /* Receive rate by source, GB/s per bin: each flow's bytes in the bins
     * it sent them in (sim.c settle, bin_spread). */
    uint32_t nb = (uint32_t)(tmax / r->bin_s) + 1;
    if (nb > r->nbins)
        nb = r->nbins;
    double ymax = 1e-9;
    for (uint32_t i = 0; i < nb; i++) {
        double s = (r->bins[i][0] + r->bins[i][1] + r->bins[i][2]) / r->bin_s / 1e9;
        if (s > ymax)
            ymax = s;
    }
    double ystep = nice_step(ymax);
    ymax = nice_max(ymax, ystep);
    frame(f, X0, Y2, W, H, tmax, tstep, ymax, ystep, "Bytes received on the wire by source",
          "GB/s", "%.4g");
    if (r->died > 0 && r->fail_at_s >= 0)
        marker(f, X0, Y2, W, H, r->fail_at_s, tmax, "#555", "fail-at", 0);
    static const char *color[3] = {"#d62728", "#2ca02c", "#ff7f0e"};
    static const char *label[3] = {"origin", "same zone", "cross zone"};
    for (int k = 0; k < 3; k++) {
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='", color[k]);
        for (uint32_t i = 0; i < nb; i++) {
            double y = r->bins[i][k] / r->bin_s / 1e9;
            fprintf(f, "%s%.1f,%.1f", i ? " " : "", X0 + W * (i + 0.5) * r->bin_s / tmax,
                    Y2 + H - H * y / ymax);
        }
        fprintf(f, "'/>\n<text x='%.1f' y='%.1f' font-size='11' fill='%s'>%s</text>\n",
                X0 + W - 90, Y2 + 16 + 14 * k, color[k], label[k]);
    }
    fprintf(f, "</svg>\n");
    return ferror(f) ? -EIO : 0;
}
