/* SPDX-License-Identifier: MIT */
/*
 * shoal-sim: command-line front end of the fleet simulator. Parses the
 * scenario (config file, then flags), runs it and writes the summary, CSV
 * and SVG. Everything else lives in sim.c, config.c and report.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "kvfile.h"
#include "sim.h"

static const char usage[] =
    "NAME\n"
    "    shoal-sim - simulate a shoal rollout across a fleet\n"
    "\n"
    "SYNOPSIS\n"
    "    shoal-sim [--config FILE] [--KEY VALUE | --KEY=VALUE]... [--csv FILE] [--svg FILE]\n"
    "    shoal-sim --dry-run [--config FILE] [--KEY VALUE]...\n"
    "\n"
    "DESCRIPTION\n"
    "    Runs a discrete-event, flow-level simulation of a fleet of VMs pulling one\n"
    "    release, with the daemon's own scheduler on every node and the tracker's own\n"
    "    registry handing out peer lists and origin leases. Concurrent transfers\n"
    "    share each node's upload and download link by progressive filling (a share\n"
    "    one transfer cannot use goes to the others). The run is deterministic for a\n"
    "    given seed.\n"
    "\n"
    "    It prints completion-time percentiles (a node left incomplete ranks as\n"
    "    never done: 'not reached'), origin egress as a multiple of the release,\n"
    "    cross-zone bytes on the wire (duplicates and partial transfers included)\n"
    "    and the useful part, and a lower bound T_min on the time by which the N\n"
    "    survivors (nodes neither seeds nor picked to fail) hold the release, with\n"
    "    the ratio of each percentile to it. No byte moves before t0, the first\n"
    "    join plus a round trip (to the origin without seeds); survivor i gets\n"
    "    nothing before s_i = max(t0, join_i + its shortest round trip). Then\n"
    "        T_min = max(t0 + F/u_origin (no seeds), s_i + F/d_i,\n"
    "                    the least T by which u_origin + sum of u_i carry k*F\n"
    "                    after s_i to the k survivors that start at s_i or later)\n"
    "    where a failing node uploads only until fail-at, and without peer\n"
    "    exchange (peers 0, tracker no) nobody uploads. With zone-cap (Z zones\n"
    "    with nodes, cap per ordered pair) T_min is at least the least T with\n"
    "        u_origin*(T-t0) >= sum over zones z of\n"
    "            max(0, F - (Z-1)*cap*(T-t0)       if z has no seed,\n"
    "                   N_z*F - (U_z + (Z-1)*cap)*(T-t0))\n"
    "    (N_z survivors of z, U_z their upload, a failing node's until fail-at):\n"
    "    every zone must bring the release in at least once through the origin,\n"
    "    which all zones share, and its Z-1 inbound pairs, and its survivors\n"
    "    receive N_z*F bytes from the origin, those pairs and their own uploads.\n"
    "    The bound lets the origin send a byte to each zone; a fleet whose origin\n"
    "    egress is 1x also needs\n"
    "    T >= F/(Z*cap) (the zones import (Z-1)*F over Z*(Z-1) pairs).\n"
    "\n"
    "OPTIONS\n"
    "    --config FILE     read 'key = value' lines (the scenario keys below, and\n"
    "                      csv, svg and quiet = yes as the flags; paths are taken\n"
    "                      from the current directory, as on the command line; '#'\n"
    "                      at the start of a line or after a space starts a comment,\n"
    "                      also after a value); flags override the file\n"
    "    --csv FILE        write one CSV row per node (columns: see OUTPUT below)\n"
    "    --svg FILE        write an SVG plot: nodes complete over time, and bytes\n"
    "                      received on the wire per second by source (see OUTPUT)\n"
    "    --dry-run         print what the run would cost (transfers, memory, time)\n"
    "                      and exit without running it\n"
    "    --force           run even when the estimated memory is more than this\n"
    "                      machine's physical memory (refused otherwise)\n"
    "    -q, --quiet       no progress lines on stderr (a large run is still warned\n"
    "                      about); --quiet=yes|no as the config file's quiet\n"
    "    -h, --help        this text\n"
    "\n"
    "SCENARIO KEYS (flags --KEY VALUE, or lines in the config file)\n"
    "    Keys are spelt with dashes, like every shoal program's options; the\n"
    "    underscores of earlier versions work too (--zone_cap, zone_cap = 1G).\n";

static const char usage_keys[] =
    "    nodes N           fleet size (default 100)\n"
    "    zones N           zones; nodes are assigned round-robin (default 4)\n"
    "    seeds N           nodes that start with the whole release (default 0)\n"
    "    bandwidth RATE    node upload and download capacity (default 10Gbit)\n"
    "    up RATE, down RATE    the two separately\n"
    "    origin RATE       origin (gateway) upload capacity (default 10Gbit)\n"
    "    zone-cap RATE     capacity of each ordered zone pair, shared by its flows\n"
    "                      (default 0: unlimited)\n"
    "    hetero H          scale each node's bandwidths by a factor drawn from\n"
    "                      [1-H, 1+H] (default 0: homogeneous)\n"
    "    lat-zone MS, lat-cross MS, lat-origin MS\n"
    "                      round-trip times within a zone, across zones and to the\n"
    "                      origin (defaults 0.5, 10, 20; at most 60000)\n"
    "    size BYTES        synthetic release size (default 1G)\n"
    "    chunk-avg, chunk-min, chunk-max BYTES\n"
    "                      synthetic chunk sizes (defaults 1M, 256K, 4M)\n"
    "    files N           synthetic files of equal chunk counts (default 1)\n"
    "    manifest FILE     take chunk sizes and files from a signed shoal manifest\n"
    "                      (its signature must verify; the signer is not checked);\n"
    "                      size, chunk-avg, chunk-min, chunk-max and files then do\n"
    "                      nothing (a warning says so). One that cannot be read is\n"
    "                      refused before anything runs\n"
    "    join-spread S     nodes join uniformly over [0, S] seconds (default 0: all at\n"
    "                      once; at most 86400, a day)\n"
    "    fail-frac F, fail-at S\n"
    "                      a fraction F of the non-seed nodes that have joined by S\n"
    "                      (all, without join-spread), rounded to the nearest whole\n"
    "                      node, dies at time S (default none;\n"
    "                      F needs S: half of T_min, which a run without failures\n"
    "                      prints, is mid-rollout; S at most max-time; the summary\n"
    "                      says when they died). A node that completed before S\n"
    "                      counts as completed (it stops uploading at S); only those\n"
    "                      that had not count as failed. When every live node is\n"
    "                      done before S the run ends there and the deaths are only\n"
    "                      recorded\n";

static const char usage_keys2[] =
    "    peers N           peers per node (default 32, as many as shoald's scheduler\n"
    "                      tracks per release); 0 disables peer exchange, and every\n"
    "                      node then fetches the whole release from the origin (not\n"
    "                      shoald's --max-peers, the connections it keeps)\n"
    "    tracker BOOL      origin leases from the tracker registry (default yes); with\n"
    "                      'no', every node fetches what it lacks straight from the\n"
    "                      origin, as a daemon does when no tracker answers\n"
    "    seed N            PRNG seed, decimal (default 1); it also draws the synthetic\n"
    "                      chunk sizes, so another seed is another release too (the\n"
    "                      same size in other chunks), not only another run\n"
    "    min-depth N, max-depth N\n"
    "                      bounds of each peer's request pipeline (scheduler: 2, 16)\n"
    "    cross-delay MS    wait before a node that is not an importer fetches a chunk\n"
    "                      that only cross-zone peers hold (default 300)\n"
    "    lease-chunks N    chunks a node asks per origin lease (default 0: shoald's\n"
    "                      64); the tracker grants fewer as the release runs out\n"
    "    max-leases N      origin leases a fetcher holds at once (default 2; at least 1)\n"
    "    lease-ms MS       tracker setting: a lease ends MS after it was granted or last\n"
    "                      reported a chunk fetched, and its unfetched chunks are granted\n"
    "                      again (default 0: the tracker's, 60000)\n"
    ;

/* Split: C11 compilers need not take longer string literals. */
static const char usage_keys3[] =
    "    gone-ms MS        tracker setting: a node that dies is forgotten MS later (its\n"
    "                      origin leases end, chunks only it fetched are granted again;\n"
    "                      default 5000, shoal-tracker's --gone-ms after a closed\n"
    "                      connection; a VM that vanishes without closing it takes\n"
    "                      ~20 s more; 0: at once)\n"
    "    max-inflight N    requests in flight per node, all peers together (default 9;\n"
    "                      0: no cap)\n"
    "    upload-slots N    peers a node uploads to at once; more requests are answered\n"
    "                      busy (default 6; 0: no cap)\n"
    "    busy-backoff MS   how long a requester leaves a busy peer alone (default 10;\n"
    "                      at least 1)\n"
    "    origin-fetchers N tracker setting: the first N nodes per zone to announce lease\n"
    "                      from the origin at once (default 2; 0: every node does)\n"
    "    min-fetchers N    tracker setting: at least N fetchers in all, shared by the\n"
    "                      zones (default 8)\n"
    "    importers N       tracker setting: the next N each import a share of the\n"
    "                      chunks from other zones at once (default 8)\n"
    "    fill-interval MS  tracker setting: a node whose import share is provisional\n"
    "                      (its zone fills fewer ranks than there are shares) is asked\n"
    "                      to announce again after MS or more (default 200; 0: after\n"
    "                      30 s, the announce interval); also fill-interval-ms\n"
    "    origin-delay MS   wait before other nodes lease from the origin (default 1000;\n"
    "                      with tracker 0 there are no roles: every node leases at once);\n"
    "                      also origin-delay-ms, shoald's name for it\n"
    "    endgame-dups N    copies of one request in endgame (default 2, the\n"
    "                      scheduler's; 1 to 8)\n"
    "    max-time S        stop the clock at S seconds (at most 2592000, 30 days, as\n"
    "                      for fail-at; default 0: at 1000 x T_min after the last\n"
    "                      join, at least 3600 s and at most 30 days: a fleet that\n"
    "                      far from its bound is stuck, say with too few peers, and\n"
    "                      would run for ever)\n"
    "    progress BOOL     progress lines on stderr (default yes; -q turns them off):\n"
    "                      at the start the estimated transfers, memory and time,\n"
    "                      then a line every tenth of T_min of simulated time when\n"
    "                      something moved, and at least every progress-every seconds\n"
    "                      of wall time, with\n"
    "                      transfers done out of those expected (nodes x chunks),\n"
    "                      their rate, an ETA and the memory in use\n"
    "    progress-every S  wall seconds between progress lines at most (default 10)\n";

/* Split in parts: ISO C caps one string literal at 4095 characters. */
static const char usage_tail[] =
    "\n"
    "    Sizes take K, M, G, T suffixes (powers of 1024). Rates are bytes per second\n"
    "    with K, M, G, T suffixes (powers of 1000), or bits per second with a 'bit'\n"
    "    unit: 10Gbit = 1.25G (10Gbit/s, 10Gb/s and 10Gbps too).\n"
    "\n";

static const char usage_output[] =
    "OUTPUT\n"
    "    The CSV has a header line and one row per node, with these columns:\n"
    "      node, zone      the node's index and its zone's (nodes dealt round-robin)\n"
    "      seed, failed    1 if it started with the release / died before completing\n"
    "      up_Bps, down_Bps  its upload and download capacity, bytes/s\n"
    "      join_s, done_s  when it joined and when it held the release, seconds of\n"
    "                      simulated time (done_s empty: never)\n"
    "      from_origin, from_zone, from_cross\n"
    "                      bytes of chunks it lacked, received from the origin, from\n"
    "                      peers in its zone and from peers in other zones\n"
    "      uploaded        bytes of chunks their receivers lacked that it uploaded\n"
    "      died_s          when it died, seconds (empty: never)\n"
    "      cross_wire, uploaded_wire\n"
    "                      bytes it received from other zones and uploaded on the\n"
    "                      wire: duplicates and partial transfers included\n"
    "    The SVG plots the nodes complete over time, and the bytes received on the\n"
    "    wire per second from the origin, the same zone and other zones, each\n"
    "    flow's bytes in the time bins it moved them in. There is no PNG output:\n"
    "    convert the SVG with, e.g., rsvg-convert -o plot.png\n"
    "    plot.svg (Debian's librsvg2-bin), inkscape or ImageMagick.\n"
    "\n";

static const char usage_exit[] =
    "EXIT STATUS\n"
    "    0 when every node that had to complete did, 1 on a bad option or a failed\n"
    "    run, 2 when the run ended (max-time, or nothing left to happen) with live\n"
    "    nodes, or nodes yet to join, left incomplete (the summary, CSV and SVG are\n"
    "    written all the same). SIGINT or SIGTERM stops the run where it is, as\n"
    "    max-time does: it writes the summary, CSV and SVG of the run so far, says\n"
    "    'interrupted at t=...' and exits with 128 + the signal (130 for SIGINT,\n"
    "    143 for SIGTERM); a second signal exits at once, removing output files\n"
    "    the run made and had not written.\n"
    "\n"
    "EXAMPLE\n"
    "    shoal-sim --nodes 2000 --zones 4 --size 140G --bandwidth 25Gbit \\\n"
    "              --origin 10Gbit --fail-frac 0.05 --fail-at 60 --svg rollout.svg\n";

/* An output file (--csv, --svg), opened before the run. */
struct output {
    const char *path;
    FILE *f;
    /* We made it: removed again if the run fails (or a second signal
     * comes before it is written: read by on_signal). */
    volatile sig_atomic_t created;
};

/* The outputs, where on_signal can see them, and the first signal that
 * came (the run reads it: shoal_sim_config.stop). */
static struct output outs[2];
static volatile sig_atomic_t stop_sig;

/* The first SIGINT or SIGTERM asks the run to stop where it is, as
 * max-time does, and the figures so far are written; the second exits at
 * once (a run that does not stop soon enough, or output too slow to
 * write), removing the files this run made and has not written. Only
 * async-signal-safe calls here: unlink, _exit. */
static void on_signal(int sig)
{
    if (stop_sig) {
        for (int i = 0; i < 2; i++)
            if (outs[i].created)
                unlink(outs[i].path);
        _exit(128 + stop_sig);
    }
    stop_sig = sig;
}

/* Opens |o->path| for writing without truncating an existing file yet (a
 * run that fails leaves it as it was). Returns 0, or -1 with errno set. */
static int output_open(struct output *o)
{
    int fd = open(o->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
        o->created = true;
    } else if (errno == EEXIST) {
        fd = open(o->path, O_WRONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return -1;
    if ((o->f = fdopen(fd, "w")) == NULL) {
        int e = errno;
        close(fd);
        if (o->created)
            unlink(o->path);
        o->created = false;
        errno = e;
        return -1;
    }
    return 0;
}

/* Closes an output not written, removing it if we made it. */
static void output_abandon(struct output *o)
{
    if (o->f)
        fclose(o->f);
    if (o->created)
        unlink(o->path);
    o->f = NULL;
    o->created = false;
}

/* A config file's settings: the scenario, and like every flag the outputs
 * and quiet (the same as progress = no). */
struct file_opts {
    struct shoal_sim_config *c;
    char csv[512], svg[512];
    bool quiet;
};

/* shoal_kvfile_fn: csv, svg and quiet here, the rest to
 * shoal_sim_config_set. */
static int file_set(void *ctx, const char *key, const char *value, char *why, size_t whylen)
{
    struct file_opts *o = ctx;
    if (!strcmp(key, "csv") || !strcmp(key, "svg")) {
        char *dst = key[0] == 'c' ? o->csv : o->svg;
        if (strlen(value) >= sizeof(o->csv) || value[0] == '\0') {
            snprintf(why, whylen, "bad value for '%s': '%s' (a path of 1 to %zu bytes)", key,
                     value, sizeof(o->csv) - 1);
            return SHOAL_EBADMSG;
        }
        strcpy(dst, value);
        return 0;
    }
    if (!strcmp(key, "quiet")) {
        /* A boolean read as the scenario's are (progress here only
         * holds it). */
        struct shoal_sim_config t;
        shoal_sim_config_default(&t);
        if (shoal_sim_config_set(&t, "progress", value, NULL, 0) != 0) {
            snprintf(why, whylen,
                     "bad value for 'quiet': '%s' (yes or no; yes/no, true/false, on/off or 1/0)",
                     value);
            return SHOAL_EBADMSG;
        }
        o->quiet = t.progress;
        return 0;
    }
    return shoal_sim_config_set(o->c, key, value, why, whylen);
}

int main(int argc, char **argv)
{
    struct shoal_sim_config c;
    struct shoal_sim_result *r = NULL;
    const char *csv = NULL, *svg = NULL;
    char err[512];
    int rv = 0;
    bool quiet = false, dry_run = false, force = false;

    shoal_sim_huge_pages(argv);
    shoal_sim_config_default(&c);
    /* The command line shows progress unless told otherwise; set before
     * the config file, whose 'progress = no' was overridden here. */
    c.progress = true;
    /* The config file goes first so flags override it wherever it appears. */
    struct file_opts fo = {.c = &c};
    for (int i = 1; i < argc; i++) {
        const char *path = !strcmp(argv[i], "--config") && i + 1 < argc ? argv[i + 1]
                           : !strncmp(argv[i], "--config=", 9)           ? argv[i] + 9
                                                                          : NULL;
        if (path != NULL && shoal_kvfile_load(path, file_set, &fo, NULL, err, sizeof(err)) != 0) {
            fprintf(stderr, "shoal-sim: %s\n", err);
            return 1;
        }
    }
    csv = fo.csv[0] ? fo.csv : NULL;
    svg = fo.svg[0] ? fo.svg : NULL;
    quiet = fo.quiet;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            fputs(usage_keys, stdout);
            fputs(usage_keys2, stdout);
            fputs(usage_keys3, stdout);
            fputs(usage_tail, stdout);
            fputs(usage_output, stdout);
            fputs(usage_exit, stdout);
            return 0;
        }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
            continue;
        }
        if (!strcmp(a, "--dry-run") || !strcmp(a, "--dry_run")) {
            dry_run = true;
            continue;
        }
        if (!strcmp(a, "--force")) {
            force = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "shoal-sim: unexpected argument '%s' (see --help)\n", a);
            return 1;
        }
        char key[64];
        const char *val;
        const char *eq = strchr(a, '=');
        size_t kl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (kl >= sizeof(key)) {
            fprintf(stderr, "shoal-sim: unknown option '%s' (see --help)\n", a);
            return 1;
        }
        memcpy(key, a + 2, kl);
        key[kl] = '\0';
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "shoal-sim: option '%s' needs a value\n", a);
            return 1;
        }
        if (!strcmp(key, "config"))
            continue;
        if (!strcmp(key, "quiet")) {
            /* --quiet=yes, as a config file's quiet = yes */
            struct shoal_sim_config t;
            shoal_sim_config_default(&t);
            if (shoal_sim_config_set(&t, "progress", val, NULL, 0) != 0) {
                fprintf(stderr, "shoal-sim: bad value for --quiet: '%s' (yes or no; yes/no, "
                                "true/false, on/off or 1/0)\n", val);
                return 1;
            }
            quiet = t.progress;
            continue;
        }
        if (!strcmp(key, "dry-run") || !strcmp(key, "dry_run") || !strcmp(key, "force")) {
            fprintf(stderr, "shoal-sim: option '--%s' takes no value\n", key);
            return 1;
        }
        if (!strcmp(key, "csv")) {
            csv = val;
            continue;
        }
        if (!strcmp(key, "svg")) {
            svg = val;
            continue;
        }
        rv = shoal_sim_config_set(&c, key, val, err, sizeof(err));
        if (rv == SHOAL_ENOTFOUND) {
            fprintf(stderr, "shoal-sim: unknown option '--%s' (see --help)\n", key);
            return 1;
        }
        if (rv != 0) {
            fprintf(stderr, "shoal-sim: %s\n", err);
            return 1;
        }
    }
    if (quiet)
        c.progress = false;
    if (shoal_sim_config_check(&c, err, sizeof(err)) != 0) {
        fprintf(stderr, "shoal-sim: %s\n", err);
        return 1;
    }
    /* From here a signal stops the run (on_signal); reading a large
     * manifest and setting up a large fleet take a while too. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    /* One handler at a time: a SIGTERM right behind a SIGINT is the
     * second signal, not a handler nested in the first. */
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sa.sa_flags = SA_RESTART;
    (void)sigaction(SIGINT, &sa, NULL);
    (void)sigaction(SIGTERM, &sa, NULL);
    c.stop = &stop_sig;
    /* What the run will cost, before it costs it: a 2,000-node fleet
     * pulling 140 GiB takes most of an hour and GBs of memory. */
    if (c.manifest[0] && c.synthetic_given) {
        /* The manifest's chunks are the release: say the keys that would
         * have shaped a synthetic one do nothing. */
        static const char *const names[] = {"size", "chunk-avg", "chunk-min", "chunk-max",
                                            "files"};
        fprintf(stderr, "shoal-sim: warning: the manifest %s sets the chunk sizes and files;"
                        " ignoring", c.manifest);
        for (unsigned i = 0, n = 0; i < 5; i++)
            if (c.synthetic_given & (1u << i))
                fprintf(stderr, "%s %s", n++ ? "," : "", names[i]);
        fputc('\n', stderr);
    }
    if (c.fail_at_s >= 0 && !(c.fail_frac > 0))
        /* fail-frac without fail-at is refused; this way round nothing
         * happened, and nothing said so. */
        fprintf(stderr, "shoal-sim: warning: fail-at %g without fail-frac: no node dies"
                        " (--fail-frac F kills that fraction at fail-at)\n", c.fail_at_s);
    struct shoal_sim_cost cost;
    rv = shoal_sim_estimate(&c, &cost);
    if (rv != 0) {
        /* Before the output files are made: a manifest that cannot be
         * read used to fail only after them, without its path. */
        fprintf(stderr, "shoal-sim: cannot %s%s: %s\n",
                c.manifest[0] ? "read the manifest " : "size the release", c.manifest,
                shoal_strerror(rv));
        return 1;
    }
    shoal_sim_cost_print(&c, &cost, c.progress || dry_run, dry_run ? stdout : stderr);
    if (dry_run)
        return 0;
    /* More than the machine has: it would swap for hours or be killed by
     * the kernel, taking whatever else runs here with it. */
    if (!force && shoal_sim_cost_exceeds_ram(&cost)) {
        fprintf(stderr, "shoal-sim: not run: it needs more memory than this machine has (see "
                        "the warning above); make it smaller, or add --force to run it "
                        "anyway\n");
        return 1;
    }
    /* The output files are opened before the run, which may take an hour,
     * so a path that cannot be written fails now. */
    outs[0].path = csv;
    outs[1].path = svg;
    /* A signal that came during an open() is handled as it returns, before
     * |created| says whose the file is: hold signals until it does. */
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigprocmask(SIG_BLOCK, &sigs, &old);
    for (int i = 0; i < 2 && rv == 0; i++) {
        if (outs[i].path && output_open(&outs[i]) != 0) {
            fprintf(stderr, "shoal-sim: cannot write %s: %s\n", outs[i].path, strerror(errno));
            rv = 1;
        }
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (rv != 0)
        goto out;

    rv = shoal_sim_run(&c, &r);
    if (rv != 0) {
        fprintf(stderr, "shoal-sim: run failed: %s\n", shoal_strerror(rv));
        rv = 1;
        goto out;
    }
    shoal_sim_print_summary(r, stdout);
    if (r->interrupted)
        fprintf(stderr, "shoal-sim: interrupted at t=%.3f s of simulated time (signal %d):"
                        " the summary, CSV and SVG are of the run so far (exit status %d)\n",
                r->end_s, (int)stop_sig, 128 + (int)stop_sig);
    else if (r->incomplete > 0 && r->auto_stopped && r->end_s >= SHOAL_SIM_TIME_MAX_S)
        fprintf(stderr, "shoal-sim: %u node%s left incomplete when the run ended at %.3f s, "
                        "the most a run simulates (30 days), %s T_min (%.6g s): is a rate in "
                        "the wrong unit? (10Gbit, not 10kbit) (exit status 2)\n",
                r->incomplete, r->incomplete == 1 ? "" : "s", r->end_s,
                r->end_s < r->t_min       ? "before"
                : r->end_s < 2 * r->t_min ? "within 2 x"
                                          : "within 1000 x",
                r->t_min);
    else if (r->incomplete > 0 && r->auto_stopped)
        fprintf(stderr, "shoal-sim: %u node%s left incomplete when the run ended at %.3f s, "
                        "%.0f x T_min: without max-time a run stops at 1000 x T_min after the "
                        "last join (at least %.0f s, at most 30 days); a fleet this far from its "
                        "bound is stuck (too few peers?); set max-time to run longer (exit "
                        "status 2)\n",
                r->incomplete, r->incomplete == 1 ? "" : "s", r->end_s,
                r->t_min > 0 ? r->end_s / r->t_min : 0.0, SHOAL_SIM_AUTO_STOP_MIN_S);
    else if (r->incomplete > 0)
        fprintf(stderr, "shoal-sim: %u node%s left incomplete when the run ended at %.3f s"
                        " (exit status 2)\n",
                r->incomplete, r->incomplete == 1 ? "" : "s", r->end_s);
    for (int i = 0; i < 2; i++) {
        if (!outs[i].f)
            continue;
        /* An existing file was kept as it was until now. Only a regular
         * file can be emptied: a device or a pipe (/dev/null, /dev/stdout
         * into a pipe) is just written. */
        struct stat st;
        if (fstat(fileno(outs[i].f), &st) == 0 && S_ISREG(st.st_mode) &&
            ftruncate(fileno(outs[i].f), 0) != 0) {
            fprintf(stderr, "shoal-sim: cannot write %s: %s\n", outs[i].path, strerror(errno));
            rv = 1;
            continue;
        }
        int wr = i == 0 ? shoal_sim_write_csv(r, outs[i].f) : shoal_sim_write_svg(r, outs[i].f);
        FILE *f = outs[i].f;
        outs[i].f = NULL;
        outs[i].created = false; /* written (or half written): leave it to be seen */
        if (ferror(f))
            wr = -1;
        if (fclose(f) != 0 || wr != 0) {
            fprintf(stderr, "shoal-sim: cannot write %s: %s\n", outs[i].path, strerror(errno));
            rv = 1;
        }
    }
out:
    for (int i = 0; i < 2; i++)
        output_abandon(&outs[i]);
    bool cut = rv == 0 && r != NULL && r->incomplete > 0;
    bool interrupted = rv == 0 && r != NULL && r->interrupted;
    shoal_sim_result_free(r);
    return rv ? 1 : interrupted ? 128 + (int)stop_sig : cut ? 2 : 0;
}
