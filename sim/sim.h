/* SPDX-License-Identifier: MIT */
/*
 * shoal-sim's engine: a discrete-event, flow-level simulation of a fleet
 * pulling one release. Every node runs the daemon's own scheduler
 * (node/sched.h) and the tracker's own registry (tracker/registry.h) hands
 * out peer lists and origin leases; the simulator only moves bytes.
 *
 * Model. A node has an upload and a download capacity; the origin has an
 * upload capacity. Between two nodes (or origin and node) a connection
 * carries one chunk at a time, requests queue behind it (pipelining hides
 * the round trip). A node uploads to at most upload_slots peers at once and
 * answers further requests busy, as the daemon does. Bandwidth is shared by
 * progressive filling on the two links a flow touches: when a flow starts
 * or stops, the uploader's and the downloader's capacity are poured over
 * their flows, each flow capped by what its other end has left, so a share
 * one flow cannot use goes to the others (never above any link's capacity;
 * links further away catch up at their own next change). A capped zone pair
 * (zone_cap) is such a link too, shared by every flow crossing it, and is
 * filled again whenever one of its flows starts or stops. Requests reach the
 * uploader one round trip after they are made (zero latency models an ideal
 * network). Peers: a node dials up to 3/4 of max_peers (the rest is left
 * for nodes dialling it), at most a quarter of them in other zones (a
 * quarter is at least one peer from 2 peers up).
 *
 * Thread safety: none; a run is single-threaded and deterministic for a
 * given configuration (seed included).
 */
#ifndef SHOAL_SIM_H
#define SHOAL_SIM_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Bounds on scenario sizes, so a typo cannot ask for a terabyte. */
#define SHOAL_SIM_NODES_MAX 1000000u
#define SHOAL_SIM_ZONES_MAX 64u
#define SHOAL_SIM_CHUNKS_MAX 4000000u
/* A synthetic release is at most 1 PiB (and SHOAL_SIM_CHUNKS_MAX chunks). */
#define SHOAL_SIM_SIZE_MAX (1ull << 50)
/* Round trips above this are a typo (milliseconds); a run with them would
 * take simulated days. */
#define SHOAL_SIM_LAT_MAX_MS 60000.0
/* Bounds on simulated times, seconds: nodes join over at most a day (a run
 * simulates the whole spread, ticking every 10 s), and max_time and
 * fail_at are at most 30 days (a run that long is a typo for a shorter
 * one; 1e300 never ended). */
#define SHOAL_SIM_JOIN_SPREAD_MAX_S 86400.0
#define SHOAL_SIM_TIME_MAX_S (30 * 86400.0)
/* Rate bins kept for the SVG (shoal_sim_result.bins). */
#define SHOAL_SIM_BINS 1024u

/* The least simulated time a run without max_time goes on for. */
#define SHOAL_SIM_AUTO_STOP_MIN_S 3600.0

struct shoal_sim_config {
    uint32_t nodes;            /* fleet size */
    uint32_t zones;            /* nodes are spread round-robin over zones */
    uint32_t seeds;            /* nodes that start with the whole release */
    double node_up;            /* bytes/s */
    double node_down;          /* bytes/s */
    double hetero;             /* each node's bandwidths scaled by U[1-h, 1+h] */
    double origin_up;          /* bytes/s */
    double zone_cap;           /* bytes/s per ordered zone pair, 0 = unlimited */
    double lat_zone_ms;        /* round trip within a zone */
    double lat_cross_ms;       /* round trip between zones */
    double lat_origin_ms;      /* round trip to the origin */
    uint64_t release_bytes;    /* synthetic release size */
    uint32_t chunk_avg;        /* synthetic chunk sizes: avg, min, max */
    uint32_t chunk_min;
    uint32_t chunk_max;
    uint32_t files;            /* synthetic files (equal chunk counts) */
    char manifest[512];        /* signed manifest file; overrides synthetic sizes */
    uint32_t synthetic_given;  /* not a key: which of size, chunk-avg,
                                  chunk-min, chunk-max, files (bits 0-4)
                                  shoal_sim_config_set was given, for a
                                  warning that a manifest overrides them */
    double join_spread_s;      /* 0: all join at t=0; else uniform over [0, spread] */
    double fail_frac;          /* fraction of nodes that die ... */
    double fail_at_s;          /* ... at this time (at most max_sim_s) */
    uint32_t max_peers;        /* peers per node (0: no peer exchange) */
    bool tracker;              /* leases from the tracker registry; else the
                                  origin grants any lease (no-tracker fallback) */
    uint64_t seed;
    /* scheduler knobs */
    uint32_t min_depth;
    uint32_t max_depth;
    uint32_t cross_zone_delay_ms;
    uint32_t lease_chunks;     /* asked per lease (0: the daemon's default) */
    uint32_t endgame_dups;     /* 1 or more */
    uint32_t max_inflight;     /* requests in flight per node (0: no cap) */
    uint32_t upload_slots;     /* peers a node uploads to at once; a request
                                  beyond them is answered busy (0: no cap) */
    uint32_t busy_backoff_ms;  /* requester leaves a busy peer alone this long
                                  (1 or more) */
    /* Fleet roles, the tracker registry's settings (registry.h), used when
     * peers exchange chunks (max_peers > 0): in each zone the first
     * origin_fetchers nodes to announce lease spans from the origin at
     * once and the next importers nodes each import a share of the chunks
     * from other zones at once. Everyone else waits origin_delay_ms before
     * leasing and cross_zone_delay_ms before a cross-zone fetch, so they
     * only step in when a role holder is gone. A node gets its role from
     * the registry's answer to its announce and applies it as the daemon
     * does (shoal_sched_role_fleet, shoal_sched_set_role). 0 fetchers:
     * everyone leases at once; 0 importers: everyone waits
     * cross_zone_delay_ms; no tracker: no roles, everyone leases at once. */
    uint32_t origin_fetchers;
    uint32_t min_fetchers;     /* ... at least this many in all (a zone then
                                  gets ceil(min_fetchers / zones) if more) */
    uint32_t importers;
    uint32_t fill_interval_ms; /* the tracker's: how soon a node with a
                                  provisional import share announces
                                  again (registry.h; 0: never sooner than
                                  the 30 s interval) */
    uint32_t origin_delay_ms;
    uint32_t max_leases;       /* origin leases a fetcher holds at once (1 or
                                  more) */
    uint32_t lease_ms;         /* tracker setting (--lease-ms): a lease ends
                                  this long after it was granted or last
                                  reported progress (0: the tracker's
                                  default, 60 s) */
    uint32_t gone_ms;          /* a node that dies is forgotten by the
                                  tracker (leases, fetched credit) this
                                  long after (shoal-tracker --gone-ms;
                                  default 5000; 0: at once) */
    double max_sim_s;          /* stop the clock here (0: at 1000 x T_min
                                  after the last join, at least an hour,
                                  at most SHOAL_SIM_TIME_MAX_S) */
    bool progress;             /* progress lines on stderr */
    double progress_every_s;   /* ... at least every this many seconds of
                                  wall time (0: 10 s), and every T_min/10
                                  of simulated time */
    /* Not a scenario key: when set, the run reads *stop every 1,024 events
     * and, once it is non-zero (a signal handler sets it), ends there as
     * at max_sim_s, with |interrupted| set in the result. The caller owns
     * it; NULL by default. */
    volatile sig_atomic_t *stop;
};

/* Defaults: 100 nodes, 4 zones, 0 seeds, 1.25 GB/s (10 Gbit/s) up and down,
 * homogeneous, origin 1.25 GB/s, no zone cap, RTT 0.5 ms in a zone, 10 ms
 * across, 20 ms to the origin, 1 GiB release in 1 MiB (256 KiB..4 MiB)
 * chunks over 1 file, all join at once, no failures, 32 peers, tracker
 * leases, seed 1, 9 requests in flight per node, 6 upload slots with a
 * 10 ms busy back-off, 2 origin fetchers (8 in all at least) and 8
 * importers per zone (provisional shares announcing again after 200 ms
 * and up), others
 * waiting 1000 ms for the origin and 300 ms for a cross-zone fetch,
 * 2 leases per fetcher of at most 64 chunks (shortened by the registry), the
 * scheduler's defaults otherwise. */
void shoal_sim_config_default(struct shoal_sim_config *c);

/*
 * Sets one option by name (the same names as the config file and the
 * long flags: nodes, zones, seeds, up, down, bandwidth (both), hetero,
 * origin, zone_cap, lat_zone, lat_cross, lat_origin, size, chunk_avg,
 * chunk_min, chunk_max, files, manifest, join_spread, fail_frac, fail_at,
 * peers, tracker, seed, min_depth, max_depth, cross_delay, lease_chunks,
 * endgame_dups, max_time, progress, progress_every, ...), spelt with
 * dashes or underscores alike ("zone-cap" is "zone_cap"); shoald's
 * "origin-delay-ms" is "origin_delay". Sizes and rates accept K/M/G/T
 * suffixes (powers of 1024 for sizes; rates: "10Gbit" or bytes "1.25G").
 * A value out of the key's range is refused here, as config_check would
 * (the same ranges). On error, when |err| is not NULL, writes a message
 * to it (|errlen| bytes) naming the key and the value, and the range
 * with units: "nodes 1e9: must be 1 to 1000000", "bad value for 'seed':
 * '-1' (decimal digits, 0 to ...)", "unknown key 'colour'".
 * Returns 0, SHOAL_ENOTFOUND (unknown key) or SHOAL_EBADMSG (bad value).
 */
int shoal_sim_config_set(struct shoal_sim_config *c, const char *key, const char *value,
                         char *err, size_t errlen);

/*
 * Checks that |c| is a scenario shoal_sim_run can run (it refuses the same
 * ones with a bare -EINVAL): fleet, zone and seed counts, positive
 * bandwidths, hetero below 1, ordered chunk sizes, a synthetic release of
 * at most SHOAL_SIM_CHUNKS_MAX chunks, failure fraction, fail_at within
 * max_time, join_spread, max_time and fail_at within their bounds above,
 * round trips up to SHOAL_SIM_LAT_MAX_MS, and busy_backoff,
 * endgame_dups and max_leases of at least 1. On a bad scenario
 * writes a message naming the key, its value and the allowed range to
 * |err| (|errlen| bytes). Returns 0 or -EINVAL.
 */
int shoal_sim_config_check(const struct shoal_sim_config *c, char *err, size_t errlen);

struct shoal_sim_node {
    uint8_t zone;
    bool seed;
    bool failed;               /* died before it completed (it never did) */
    double up, down;           /* bytes/s */
    double join_s;
    double done_s;             /* < 0: never completed */
    double died_s;             /* < 0: never died. A node that completed
                                  and died later keeps its done_s and counts
                                  as completed; from died_s on it uploads
                                  nothing */
    /* Bytes of chunks it was missing, by source, and bytes of such
     * chunks it uploaded: useful bytes, each chunk counted once. */
    uint64_t from_origin, from_zone, from_cross, uploaded;
    /* Bytes on the wire, waste included (duplicates, the part of a chunk
     * sent before its transfer was cancelled or its connection died, and
     * of one still under way when the run ended): received from other
     * zones, and uploaded. */
    uint64_t cross_wire, uploaded_wire;
};

struct shoal_sim_result {
    uint32_t nodes;
    uint32_t nchunks;
    uint64_t release_bytes;
    /* A lower bound on the time by which every survivor (a node neither a
     * seed nor picked to fail) holds the release, over any schedule (sim.c,
     * "the lower bound T_min"); 0 when no node has to complete. */
    double t_min;              /* the larger of the two below */
    double t_min_links;        /* links, joins, round trips, failures: the
                                  largest of t0 + F/u_o (no seeds), s_i +
                                  F/d_i, and what the origin and the uploads
                                  can carry to the survivors that start
                                  at s_i or later */
    double t_min_zone;         /* zone_cap's bound (sim.c zone_cap_bound:
                                  each zone brings the release in through
                                  the origin, which all zones share, and its
                                  inbound pairs); 0 without zone_cap */
    double t_zone_1x;          /* with zone_cap, no seed and 2 or more
                                  zones with nodes: t0 + F/(Z*cap), the
                                  least time for a fleet whose origin
                                  egress is 1x (the zones import (Z-1)*F
                                  over Z*(Z-1) pairs); not part of t_min,
                                  as the origin may send more. Else 0 */
    double t_min_t0;           /* no byte can move before this: the first
                                  join plus a round trip (to the origin
                                  without seeds) */
    /* Completion times of the nodes that must complete (not seeds, not
     * failed), s; one left incomplete ranks as never done (INFINITY), and
     * with no node to rank they are NAN. */
    double p50, p90, p99, max;
    uint32_t completed, failed, incomplete; /* failed: died before completing;
                                  incomplete: live (or yet to join) and
                                  without the release when the run ended */
    uint32_t died_done;        /* completed nodes that died afterwards */
    uint32_t died_after_end;   /* ... of which at fail_at after the run had
                                  ended (every live node complete): not
                                  simulated, they could change nothing */
    uint32_t died;             /* nodes that died (all at fail_at_s) */
    /* With nodes left incomplete and peer exchange on: the groups of live
     * nodes that peer connections link whose members together lack a
     * chunk another group holds (the tracker leases each chunk from the
     * origin once: only peers could bring it), and the incomplete nodes
     * in them; of those, the nodes with no peer at all. 0 otherwise. */
    uint32_t cut_groups, cut_nodes, no_peer;
    double fail_at_s;          /* when; -1 when no node was picked to fail */
    double fail_frac;          /* the fraction asked for ... */
    uint32_t fail_pool;        /* ... of these non-seed nodes (those that
                                  joined by fail_at_s), rounded to the
                                  nearest whole node: 0.005 of 50 is none */
    uint32_t fail_pool_all;    /* all non-seed nodes */
    /* Bytes on the wire count everything sent: chunks the receiver
     * lacked, duplicates, the part of a chunk sent before its transfer was
     * cancelled or its connection died, and of one still under way when
     * the run ended. Useful bytes are chunks the receiver lacked. */
    uint64_t origin_bytes;     /* egress from the origin, on the wire */
    uint64_t cross_wire;       /* bytes that crossed zones on the wire */
    uint64_t cross_bytes;      /* ... of which useful */
    uint64_t recv_wire;        /* bytes received on the wire, all of them */
    uint64_t recv_bytes;       /* bytes of whole chunks received (incl.
                                  duplicates) */
    uint64_t wasted_bytes;     /* duplicates, cancelled and aborted transfers */
    uint64_t transfers;        /* chunk transfers completed */
    uint64_t events;
    uint64_t busy;             /* requests answered busy (upload slots full) */
    uint32_t lease_chunks;     /* chunks per origin lease the nodes asked for */
    uint64_t leases;           /* origin leases granted (non-empty) */
    uint64_t leased_chunks;    /* chunks they spanned */
    uint64_t announces;        /* announces the tracker answered */
    double end_s;              /* simulated time at the end */
    bool interrupted;          /* ended by config.stop */
    /* Ended at the default time limit (no max_time given): 1000 x T_min
     * after the last join, at least SHOAL_SIM_AUTO_STOP_MIN_S and at most
     * SHOAL_SIM_TIME_MAX_S. A fleet that far from its bound is stuck (too
     * few peers, say), and ran for ever; one stopped before T_min (at the
     * 30 days) has a rate in the wrong unit, likely. */
    bool auto_stopped;
    struct shoal_sim_node *node;
    /* Bytes received on the wire by source over time: nbins bins of
     * bin_s seconds from 0 to end_s (bin_s doubles as the run goes on, so
     * that at most SHOAL_SIM_BINS cover it), [i][0] origin, [i][1] same
     * zone, [i][2] cross zone. Each flow's bytes are in the bins it sent
     * them in, at the rates it had: a bin over bin_s is a rate that never
     * exceeds the links' and zone pairs' capacities. They add up to
     * recv_wire (in floating point). */
    uint32_t nbins;
    double bin_s;
    double (*bins)[3];
};

/*
 * Runs the scenario |c| to the end (every live node complete and nobody
 * left to join, or nothing left to happen, or max_sim_s) and returns the
 * figures in |*out| (written only on success; free with
 * shoal_sim_result_free). A run cut short leaves nodes incomplete
 * (|incomplete| > 0): the figures say so, it is not an error.
 * Returns 0; -EINVAL (inconsistent configuration), a manifest parse error,
 * a registry error, or -ENOMEM.
 */
int shoal_sim_run(const struct shoal_sim_config *c, struct shoal_sim_result **out);
void shoal_sim_result_free(struct shoal_sim_result *r);

/*
 * Call first thing in main() with main's |argv|: re-executes the program
 * once with glibc's malloc told to back its heap with transparent huge
 * pages (GLIBC_TUNABLES glibc.malloc.hugetlb=1), unless GLIBC_TUNABLES
 * already names that tunable (glibc.malloc.hugetlb=0 keeps 4 KiB pages)
 * or LD_PRELOAD is set (valgrind, a preloaded allocator). A fleet's
 * schedulers are tens of MB to GBs touched at random, and with 4 KiB pages
 * most of those touches also miss the TLB: the 1,000-node fleet runs in
 * ~7% less CPU. The results do not change. Returns only when nothing was
 * done or the exec failed (then the run goes on with ordinary pages).
 */
void shoal_sim_huge_pages(char **argv);

/* What a run will cost, estimated before it starts (sim/progress.c,
 * calibrated on the benchmarks in README.md: within a factor of ~1.5 on an
 * idle machine, slower on a shared one). */
struct shoal_sim_cost {
    uint32_t nchunks;
    uint64_t transfers;        /* expected: (nodes - seeds) x chunks; the
                                  run also counts endgame duplicates */
    double mem_bytes;          /* resident memory at the peak */
    double us_per_transfer;    /* CPU per transfer at that size */
    double seconds;            /* transfers x us_per_transfer */
};

/* A run estimated above this many transfers is warned about. */
#define SHOAL_SIM_LARGE_TRANSFERS 1e8

/* Fills |out| for the scenario |c| with |nchunks| chunks. */
void shoal_sim_cost(const struct shoal_sim_config *c, uint32_t nchunks,
                    struct shoal_sim_cost *out);

/*
 * Estimates the cost of |c| as shoal_sim_run would set it up: the synthetic
 * chunk sizes are drawn, or the manifest is read and verified, but nothing
 * else is allocated. Returns 0, -EINVAL (shoal_sim_config_check refuses
 * |c|), -ENOMEM, or the manifest's read or parse error.
 */
int shoal_sim_estimate(const struct shoal_sim_config *c, struct shoal_sim_cost *out);

/* True when |k| is above SHOAL_SIM_LARGE_TRANSFERS transfers or 80% of
 * this machine's memory. */
bool shoal_sim_cost_large(const struct shoal_sim_cost *k);
/* Whether the run's estimated memory exceeds this machine's physical
 * memory (false when that is unknown). */
bool shoal_sim_cost_exceeds_ram(const struct shoal_sim_cost *k);

/* Writes the estimate line to |f| when |progress|, and a warning line when
 * the run is large (shoal_sim_cost_large), whatever |progress|. */
void shoal_sim_cost_print(const struct shoal_sim_config *c, const struct shoal_sim_cost *k,
                          bool progress, FILE *f);

/* Progress lines of a run (shoal_sim_run keeps one when c->progress):
 * simulated time, nodes still downloading, transfers done out of those
 * expected, transfers per second of wall time, an ETA at that rate, wall
 * time so far and resident memory. */
struct shoal_sim_progress {
    uint64_t expect;           /* transfers expected */
    double t_min;
    double sim_step, next_sim; /* simulated seconds */
    double every, next_wall;   /* wall clock (CLOCK_MONOTONIC) */
    double wall0, run0;        /* when set-up began, when the run did */
    bool printed;              /* a line was written; the last one said: */
    uint64_t last_transfers;
    uint32_t last_downloading;
};
/* Call before the set-up, which takes a while in a large fleet. */
void shoal_sim_progress_init(struct shoal_sim_progress *p, const struct shoal_sim_config *c);
/* Call after it, with the transfers expected and T_min: writes a line
 * saying the set-up is done, how long it took and the memory in use. */
void shoal_sim_progress_start(struct shoal_sim_progress *p, uint32_t nodes, uint64_t expect,
                              double t_min, FILE *f);
/* True once c->progress_every_s of wall time have passed since the last
 * line (a clock read: call it every thousand events or so, not each one). */
bool shoal_sim_progress_wall_due(const struct shoal_sim_progress *p);
/* Writes one line to |f| and sets when the next is due: a line that
 * simulated time made due is skipped when nothing moved since the last
 * one (a run idle for long printed the same line thousands of times);
 * one every progress_every_s of wall time comes all the same. */
void shoal_sim_progress_print(struct shoal_sim_progress *p, double now, uint32_t downloading,
                              uint64_t transfers, FILE *f);

/* Human-readable summary (percentiles, T_min and the ratios, origin egress
 * as a multiple of the release, cross-zone share). */
void shoal_sim_print_summary(const struct shoal_sim_result *r, FILE *f);
/* One CSV row per node with a header line. Returns 0 or -EIO. */
int shoal_sim_write_csv(const struct shoal_sim_result *r, FILE *f);
/* An SVG with two plots: nodes complete over time, and receive rate by
 * source (origin, same zone, cross zone) over time. Returns 0 or -EIO. */
int shoal_sim_write_svg(const struct shoal_sim_result *r, FILE *f);

#endif
