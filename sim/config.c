/* SPDX-License-Identifier: MIT */
/*
 * Scenario options for shoal-sim: defaults, "key = value" parsing shared by
 * the config file and the command line, with size and rate suffixes.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sim.h"
#include "registry.h"
#include "sched.h"

void shoal_sim_config_default(struct shoal_sim_config *c)
{
    memset(c, 0, sizeof(*c));
    c->nodes = 100;
    c->zones = 4;
    c->node_up = 1.25e9;
    c->node_down = 1.25e9;
    c->origin_up = 1.25e9;
    c->lat_zone_ms = 0.5;
    c->lat_cross_ms = 10;
    c->lat_origin_ms = 20;
    c->release_bytes = 1ull << 30;
    c->chunk_avg = 1u << 20;
    c->chunk_min = 256u << 10;
    c->chunk_max = 4u << 20;
    c->files = 1;
    c->tracker = true;
    c->seed = 1;
    /* The daemon's own scheduler defaults and serve policy. */
    struct shoal_sched_config sc;
    shoal_sched_config_default(&sc);
    /* A daemon dials every node the tracker lists (up to 64 connections)
     * and its scheduler tracks up to max_peers of them per release. */
    c->max_peers = sc.max_peers;
    c->cross_zone_delay_ms = sc.cross_zone_delay_ms;
    c->max_inflight = sc.max_inflight;
    c->busy_backoff_ms = sc.busy_backoff_ms;
    c->endgame_dups = sc.endgame_dups;
    c->upload_slots = SHOAL_UPLOAD_SLOTS_DEFAULT;
    /* ... and the tracker's fleet roles. */
    struct shoal_reg_config rc;
    shoal_reg_config_default(&rc);
    c->origin_fetchers = rc.origin_fetchers;
    c->min_fetchers = rc.min_fetchers;
    c->importers = rc.importers;
    c->fill_interval_ms = rc.fill_interval_ms;
    c->origin_delay_ms = 1000;
    c->gone_ms = 5000;
    c->max_leases = sc.max_leases;
    /* No failure time until one is given: fail_frac alone is refused
     * (config_check), it used to kill the nodes at t = 0. */
    c->fail_at_s = -1;
}

/* A non-negative number with an optional K/M/G/T suffix (|bin|: powers of
 * 1024, else of 1000) and, for rates, an optional "bit" or "bps" unit
 * meaning bits per second (divided by 8). */
static int parse_num(const char *v, bool bin, bool rate, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || errno != 0 || !(x >= 0) || !isfinite(x))
        return SHOAL_EBADMSG;
    double k = bin ? 1024.0 : 1000.0;
    switch (toupper((unsigned char)*end)) {
    case 'K': x *= k; end++; break;
    case 'M': x *= k * k; end++; break;
    case 'G': x *= k * k * k; end++; break;
    case 'T': x *= k * k * k * k; end++; break;
    default: break;
    }
    if (*end == 'i' && bin)
        end++;
    /* Bits: "bit", "b" or "bps", and "bit/s" or "b/s" as people write
     * them (10GB/s was taken and 10Gbit/s refused). */
    if (rate && *end == 'b') {
        x /= 8;
        end += strncmp(end, "bit", 3) == 0 || strcmp(end, "bps") == 0 ? 3 : 1;
    } else if (*end == 'B') {
        end++;
    }
    if (rate && strcmp(end, "/s") == 0)
        end += 2;
    if (*end != '\0')
        return SHOAL_EBADMSG;
    *out = x;
    return 0;
}

/* |x| bytes in the largest binary unit it reaches ("1 TiB", "976.6 GiB",
 * "300 B"), into |buf|. */
static const char *fmt_size(char *buf, size_t n, double x)
{
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    while (x >= 1024 && u < 6) {
        x /= 1024;
        u++;
    }
    snprintf(buf, n, "%.4g %s", x, unit[u]);
    return buf;
}

/* |key| as the messages spell it, with dashes (--zone-cap, zone-cap =). */
static void dashed(char *out, size_t n, const char *key)
{
    size_t i = 0;
    for (; key[i] && i + 1 < n; i++)
        out[i] = key[i] == '_' ? '-' : key[i];
    out[i] = '\0';
}

/* The message for a value of |key| that is not what it must be: "|key|
 * |v|: must be |range|", or with |what| (a syntax error) "bad value for
 * '|key|': '|v|' (|what|; |range|)". */
static int bad(char *err, size_t errlen, const char *key, const char *v, const char *what,
               const char *range)
{
    char k[64];
    dashed(k, sizeof(k), key);
    if (err != NULL && what != NULL)
        snprintf(err, errlen, "bad value for '%s': '%s' (%s; %s)", k, v, what, range);
    else if (err != NULL)
        snprintf(err, errlen, "%s %s: must be %s", k, v, range);
    return SHOAL_EBADMSG;
}

/* A whole number |lo| to |hi| (K/M/G/T suffixes, powers of 1000), |unit|
 * appended to the range in messages ("" for a count). */
static int set_u32(uint32_t *dst, const char *key, const char *v, uint32_t lo, uint32_t hi,
                   const char *unit, char *err, size_t errlen)
{
    double x;
    char range[96];
    snprintf(range, sizeof(range), "%" PRIu32 " to %" PRIu32 "%s", lo, hi, unit);
    if (parse_num(v, false, false, &x) != 0 || x != floor(x))
        return bad(err, errlen, key, v, "a whole number", range);
    if (x < lo || x > hi)
        return bad(err, errlen, key, v, NULL, range);
    *dst = (uint32_t)x;
    return 0;
}

/* A number (seconds or milliseconds) from |lo| to |hi|, |range| saying so
 * in messages. */
static int set_time(double *dst, const char *key, const char *v, double lo, double hi,
                    const char *range, char *err, size_t errlen)
{
    double x;
    if (parse_num(v, false, false, &x) != 0)
        return bad(err, errlen, key, v, "a number", range);
    if (x < lo || x > hi)
        return bad(err, errlen, key, v, NULL, range);
    *dst = x;
    return 0;
}

/* The ranges of the times, as config_set and config_check say them. */
#define LAT_RANGE "0 to 60000 ms (a round trip: one minute at most)"
#define JOIN_RANGE "0 to 86400 s (one day; the run simulates the whole spread)"
#define FAIL_AT_RANGE "0 to 2592000 s (30 days)"
#define MAX_TIME_RANGE "0 (the default limit) to 2592000 s (30 days)"

/* A size in bytes from |lo| to |hi| (K/M/G/T suffixes, powers of 1024). */
static int set_size(double *dst, const char *key, const char *v, double lo, double hi, char *err,
                    size_t errlen)
{
    double x;
    char range[96], l[32], h[32];
    snprintf(range, sizeof(range), "%s to %s", fmt_size(l, sizeof(l), lo),
             fmt_size(h, sizeof(h), hi));
    if (parse_num(v, true, false, &x) != 0)
        return bad(err, errlen, key, v, "a size in bytes with K, M, G, T (powers of 1024)",
                   range);
    if (x < lo || x > hi) {
        /* Say what the value came to: 1e18 is 888 PiB. */
        char said[96], xs[32];
        snprintf(said, sizeof(said), "%s (%s)", v, fmt_size(xs, sizeof(xs), x));
        return bad(err, errlen, key, x >= 1024 && strcmp(v, xs) ? said : v, NULL, range);
    }
    *dst = x;
    return 0;
}

static int set_bool(bool *dst, const char *key, const char *v, char *err, size_t errlen)
{
    if (!strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on"))
        *dst = true;
    else if (!strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off"))
        *dst = false;
    else
        return bad(err, errlen, key, v, "yes or no", "yes/no, true/false, on/off or 1/0");
    return 0;
}

/* The daemon's and the tracker's spellings of the same quantity in the
 * same unit, taken as they are (after dashes became underscores). */
static const struct {
    const char *alias, *key;
} aliases[] = {
    {"origin_delay_ms", "origin_delay"}, /* shoald --origin-delay-ms */
    {"fill_interval_ms", "fill_interval"}, /* shoal-tracker --fill-interval-ms */
};

/* Chunk sizes: the manifest format's limit. */
#define CHUNK_MAX (64.0 * 1024 * 1024)

int shoal_sim_config_set(struct shoal_sim_config *c, const char *name, const char *v, char *err,
                         size_t errlen)
{
    double x = 0;
    int rv = 0;
    /* Dashes are the spelling of every other shoal program (--zone-cap);
     * the underscores of the first versions still work. */
    char key[64];
    size_t kl = strlen(name);
    if (kl >= sizeof(key)) {
        if (err != NULL)
            snprintf(err, errlen, "unknown key '%.64s...'", name);
        return SHOAL_ENOTFOUND;
    }
    for (size_t i = 0; i <= kl; i++)
        key[i] = name[i] == '-' ? '_' : name[i];
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (!strcmp(key, aliases[i].alias))
            strcpy(key, aliases[i].key);
    if (!strcmp(key, "nodes")) {
        rv = set_u32(&c->nodes, key, v, 1, SHOAL_SIM_NODES_MAX, "", err, errlen);
    } else if (!strcmp(key, "zones")) {
        rv = set_u32(&c->zones, key, v, 1, SHOAL_SIM_ZONES_MAX, "", err, errlen);
    } else if (!strcmp(key, "seeds")) {
        rv = set_u32(&c->seeds, key, v, 0, SHOAL_SIM_NODES_MAX, " (and at most nodes)", err,
                     errlen);
    } else if (!strcmp(key, "up") || !strcmp(key, "down") || !strcmp(key, "bandwidth") ||
               !strcmp(key, "origin") || !strcmp(key, "zone_cap")) {
        bool cap = !strcmp(key, "zone_cap");
        const char *range = cap ? "0 (no cap) or more bytes/s" : "above 0 bytes/s";
        rv = parse_num(v, false, true, &x);
        if (rv != 0)
            rv = bad(err, errlen, key, v,
                     "a rate: bytes/s with K, M, G, T (powers of 1000), or bits/s: 10Gbit",
                     range);
        else if (!cap && x <= 0)
            rv = bad(err, errlen, key, v, NULL, range);
        else if (!strcmp(key, "up"))
            c->node_up = x;
        else if (!strcmp(key, "down"))
            c->node_down = x;
        else if (!strcmp(key, "bandwidth"))
            c->node_up = c->node_down = x;
        else if (!strcmp(key, "origin"))
            c->origin_up = x;
        else
            c->zone_cap = x;
    } else if (!strcmp(key, "hetero") || !strcmp(key, "fail_frac")) {
        bool h = !strcmp(key, "hetero");
        const char *range = h ? "at least 0 and below 1" : "0 to 1";
        if (parse_num(v, false, false, &x) != 0)
            rv = bad(err, errlen, key, v, "a number", range);
        else if (h ? !(x < 1) : !(x <= 1))
            rv = bad(err, errlen, key, v, NULL, range);
        else if (h)
            c->hetero = x;
        else
            c->fail_frac = x;
    } else if (!strcmp(key, "lat_zone")) {
        rv = set_time(&c->lat_zone_ms, key, v, 0, SHOAL_SIM_LAT_MAX_MS, LAT_RANGE, err, errlen);
    } else if (!strcmp(key, "lat_cross")) {
        rv = set_time(&c->lat_cross_ms, key, v, 0, SHOAL_SIM_LAT_MAX_MS, LAT_RANGE, err, errlen);
    } else if (!strcmp(key, "lat_origin")) {
        rv = set_time(&c->lat_origin_ms, key, v, 0, SHOAL_SIM_LAT_MAX_MS, LAT_RANGE, err,
                      errlen);
    } else if (!strcmp(key, "join_spread")) {
        rv = set_time(&c->join_spread_s, key, v, 0, SHOAL_SIM_JOIN_SPREAD_MAX_S, JOIN_RANGE, err,
                      errlen);
    } else if (!strcmp(key, "fail_at")) {
        rv = set_time(&c->fail_at_s, key, v, 0, SHOAL_SIM_TIME_MAX_S, FAIL_AT_RANGE, err, errlen);
    } else if (!strcmp(key, "max_time")) {
        rv = set_time(&c->max_sim_s, key, v, 0, SHOAL_SIM_TIME_MAX_S, MAX_TIME_RANGE, err,
                      errlen);
    } else if (!strcmp(key, "size")) {
        rv = set_size(&x, key, v, 1, SHOAL_SIM_SIZE_MAX, err, errlen);
        if (rv == 0) {
            c->release_bytes = (uint64_t)x;
            c->synthetic_given |= 1u << 0;
        }
    } else if (!strcmp(key, "chunk_avg") || !strcmp(key, "chunk_min") ||
               !strcmp(key, "chunk_max")) {
        rv = set_size(&x, key, v, 1, CHUNK_MAX, err, errlen);
        if (rv == 0) {
            uint32_t *d = !strcmp(key, "chunk_avg")   ? &c->chunk_avg
                          : !strcmp(key, "chunk_min") ? &c->chunk_min
                                                      : &c->chunk_max;
            *d = (uint32_t)x;
            c->synthetic_given |= 1u << (d == &c->chunk_avg ? 1 : d == &c->chunk_min ? 2 : 3);
        }
    } else if (!strcmp(key, "files")) {
        rv = set_u32(&c->files, key, v, 0, 1000000, " (0: 1)", err, errlen);
        if (rv == 0)
            c->synthetic_given |= 1u << 4;
    } else if (!strcmp(key, "manifest")) {
        char range[64];
        snprintf(range, sizeof(range), "a path of at most %zu bytes", sizeof(c->manifest) - 1);
        if (strlen(v) >= sizeof(c->manifest))
            rv = bad(err, errlen, key, v, "too long", range);
        else
            strcpy(c->manifest, v);
    } else if (!strcmp(key, "peers")) {
        rv = set_u32(&c->max_peers, key, v, 0, SHOAL_SCHED_PEERS_MAX, " (0: no peer exchange)",
                     err, errlen);
    } else if (!strcmp(key, "tracker")) {
        rv = set_bool(&c->tracker, key, v, err, errlen);
    } else if (!strcmp(key, "progress")) {
        rv = set_bool(&c->progress, key, v, err, errlen);
    } else if (!strcmp(key, "progress_every")) {
        const char *range = "above 0 and at most 86400 s (wall time)";
        if (parse_num(v, false, false, &x) != 0)
            rv = bad(err, errlen, key, v, "a number", range);
        else if (!(x > 0 && x <= 86400))
            rv = bad(err, errlen, key, v, NULL, range);
        else
            c->progress_every_s = x;
    } else if (!strcmp(key, "seed")) {
        /* Decimal digits only: strtoull alone takes a sign (-1 wraps to
         * 2^64-1), leading blanks, and with base 0 reads 010 as 8. */
        char *end;
        errno = 0;
        unsigned long long s = isdigit((unsigned char)v[0]) ? strtoull(v, &end, 10) : 0;
        if (!isdigit((unsigned char)v[0]) || *end || errno)
            rv = bad(err, errlen, key, v, "decimal digits", "0 to 18446744073709551615");
        else
            c->seed = s;
    } else if (!strcmp(key, "min_depth")) {
        rv = set_u32(&c->min_depth, key, v, 0, 64, " (0: the scheduler's)", err, errlen);
    } else if (!strcmp(key, "max_depth")) {
        rv = set_u32(&c->max_depth, key, v, 0, 64, " (0: the scheduler's)", err, errlen);
    } else if (!strcmp(key, "cross_delay")) {
        rv = set_u32(&c->cross_zone_delay_ms, key, v, 0, 3600000, " ms", err, errlen);
    } else if (!strcmp(key, "lease_chunks")) {
        rv = set_u32(&c->lease_chunks, key, v, 0, 64, " chunks (0: shoald's)", err, errlen);
    } else if (!strcmp(key, "endgame_dups")) {
        /* 0 is refused by config_check, which says what it used to mean. */
        rv = set_u32(&c->endgame_dups, key, v, 0, 8, "", err, errlen);
    } else if (!strcmp(key, "upload_slots")) {
        rv = set_u32(&c->upload_slots, key, v, 0, 250, " (0: no cap)", err, errlen);
    } else if (!strcmp(key, "busy_backoff")) {
        rv = set_u32(&c->busy_backoff_ms, key, v, 0, 3600000, " ms", err, errlen);
    } else if (!strcmp(key, "max_inflight")) {
        rv = set_u32(&c->max_inflight, key, v, 0, 64 * 250, " (0: no cap)", err, errlen);
    } else if (!strcmp(key, "origin_fetchers")) {
        rv = set_u32(&c->origin_fetchers, key, v, 0, SHOAL_REG_RANKS_MAX, "", err, errlen);
    } else if (!strcmp(key, "min_fetchers")) {
        rv = set_u32(&c->min_fetchers, key, v, 0, SHOAL_REG_RANKS_MAX, "", err, errlen);
    } else if (!strcmp(key, "importers")) {
        rv = set_u32(&c->importers, key, v, 0, SHOAL_REG_RANKS_MAX, "", err, errlen);
    } else if (!strcmp(key, "fill_interval")) {
        rv = set_u32(&c->fill_interval_ms, key, v, 0, 86400000, " ms", err, errlen);
    } else if (!strcmp(key, "origin_delay")) {
        rv = set_u32(&c->origin_delay_ms, key, v, 0, 3600000, " ms", err, errlen);
    } else if (!strcmp(key, "max_leases")) {
        rv = set_u32(&c->max_leases, key, v, 0, 8, "", err, errlen);
    } else if (!strcmp(key, "gone_ms")) {
        rv = set_u32(&c->gone_ms, key, v, 0, 86400000, " ms (0: at once)", err, errlen);
    } else if (!strcmp(key, "lease_ms")) {
        rv = set_u32(&c->lease_ms, key, v, 0, 86400000, " ms (0: the tracker's default)", err,
                     errlen);
    } else {
        if (err != NULL)
            snprintf(err, errlen, "unknown key '%s'", name);
        rv = SHOAL_ENOTFOUND;
    }
    return rv;
}

/* sim.c's own refusal is a bare -EINVAL after the whole setup: say here,
 * before anything runs, which key is wrong and what it may be. */
int shoal_sim_config_check(const struct shoal_sim_config *c, char *err, size_t errlen)
{
    if (c->nodes == 0 || c->nodes > SHOAL_SIM_NODES_MAX) {
        snprintf(err, errlen, "nodes %" PRIu32 ": must be 1 to %u", c->nodes,
                 SHOAL_SIM_NODES_MAX);
    } else if (c->zones == 0 || c->zones > SHOAL_SIM_ZONES_MAX) {
        snprintf(err, errlen, "zones %" PRIu32 ": must be 1 to %u", c->zones,
                 SHOAL_SIM_ZONES_MAX);
    } else if (c->seeds > c->nodes) {
        snprintf(err, errlen, "seeds %" PRIu32 ": must be 0 to nodes (%" PRIu32 ")", c->seeds,
                 c->nodes);
    } else if (!(c->node_up > 0) || !(c->node_down > 0)) {
        snprintf(err, errlen, "%s %g: must be above 0 bytes/s (node bandwidth: bandwidth, up, down)",
                 !(c->node_up > 0) ? "up" : "down", !(c->node_up > 0) ? c->node_up : c->node_down);
    } else if (!(c->origin_up > 0)) {
        snprintf(err, errlen, "origin %g: must be above 0 bytes/s", c->origin_up);
    } else if (!(c->hetero >= 0 && c->hetero < 1)) {
        snprintf(err, errlen, "hetero %g: must be at least 0 and below 1", c->hetero);
    } else if (c->chunk_min == 0 || c->chunk_min > c->chunk_avg || c->chunk_avg > c->chunk_max ||
               c->chunk_max > CHUNK_MAX) {
        char a[32], b[32], d[32];
        snprintf(err, errlen,
                 "chunk-min %s, chunk-avg %s, chunk-max %s: must be"
                 " 1 B <= chunk-min <= chunk-avg <= chunk-max <= 64 MiB",
                 fmt_size(a, sizeof(a), c->chunk_min), fmt_size(b, sizeof(b), c->chunk_avg),
                 fmt_size(d, sizeof(d), c->chunk_max));
    } else if (!c->manifest[0] && (c->release_bytes == 0 || c->release_bytes > SHOAL_SIM_SIZE_MAX)) {
        char a[32], b[32];
        snprintf(err, errlen, "size %s: must be 1 B to %s",
                 fmt_size(a, sizeof(a), (double)c->release_bytes),
                 fmt_size(b, sizeof(b), (double)SHOAL_SIM_SIZE_MAX));
    } else if (!c->manifest[0] &&
               c->release_bytes / c->chunk_min + 2 > SHOAL_SIM_CHUNKS_MAX) {
        /* sim.c sizes its chunk table for the worst case, every chunk at
         * chunk_min. */
        uint64_t most = (uint64_t)(SHOAL_SIM_CHUNKS_MAX - 2) * c->chunk_min;
        char a[32], b[32], d[32];
        snprintf(err, errlen,
                 "size %s: must be at most %s (%" PRIu64 " bytes) with chunk-min %s"
                 " (%u chunks at most; raise chunk-min for a larger release)",
                 fmt_size(a, sizeof(a), (double)c->release_bytes),
                 fmt_size(b, sizeof(b), (double)most), most,
                 fmt_size(d, sizeof(d), c->chunk_min), SHOAL_SIM_CHUNKS_MAX);
    } else if (c->max_peers > SHOAL_SCHED_PEERS_MAX) {
        snprintf(err, errlen, "peers %" PRIu32 ": must be 0 to %u", c->max_peers,
                 SHOAL_SCHED_PEERS_MAX);
    } else if (!(c->fail_frac >= 0 && c->fail_frac <= 1)) {
        snprintf(err, errlen, "fail-frac %g: must be 0 to 1", c->fail_frac);
    } else if (c->fail_frac > 0 && !(c->fail_at_s >= 0)) {
        /* It used to mean t = 0, which --help called "none": say when. */
        snprintf(err, errlen,
                 "fail-frac %g without fail-at: say when those nodes die (--fail-at SECONDS;"
                 " half of T_min, which a run without failures prints, is mid-rollout)",
                 c->fail_frac);
    } else if (!(c->lat_zone_ms >= 0 && c->lat_cross_ms >= 0 && c->lat_origin_ms >= 0)) {
        snprintf(err, errlen, "lat-zone %g, lat-cross %g, lat-origin %g: each must be " LAT_RANGE,
                 c->lat_zone_ms, c->lat_cross_ms, c->lat_origin_ms);
    } else if (!(c->lat_zone_ms <= SHOAL_SIM_LAT_MAX_MS && c->lat_cross_ms <= SHOAL_SIM_LAT_MAX_MS &&
                 c->lat_origin_ms <= SHOAL_SIM_LAT_MAX_MS)) {
        const char *k = c->lat_zone_ms > SHOAL_SIM_LAT_MAX_MS    ? "lat-zone"
                        : c->lat_cross_ms > SHOAL_SIM_LAT_MAX_MS ? "lat-cross"
                                                                 : "lat-origin";
        double v = c->lat_zone_ms > SHOAL_SIM_LAT_MAX_MS    ? c->lat_zone_ms
                   : c->lat_cross_ms > SHOAL_SIM_LAT_MAX_MS ? c->lat_cross_ms
                                                            : c->lat_origin_ms;
        snprintf(err, errlen, "%s %g: must be " LAT_RANGE, k, v);
    } else if (!(c->join_spread_s >= 0 && c->join_spread_s <= SHOAL_SIM_JOIN_SPREAD_MAX_S)) {
        /* A run simulates the whole spread: 1e300 never ended. */
        snprintf(err, errlen, "join-spread %g: must be " JOIN_RANGE, c->join_spread_s);
    } else if (!(c->max_sim_s >= 0 && c->max_sim_s <= SHOAL_SIM_TIME_MAX_S)) {
        snprintf(err, errlen, "max-time %g: must be " MAX_TIME_RANGE, c->max_sim_s);
    } else if (c->fail_frac > 0 && !(c->fail_at_s <= SHOAL_SIM_TIME_MAX_S)) {
        snprintf(err, errlen, "fail-at %g: must be " FAIL_AT_RANGE, c->fail_at_s);
    } else if (c->fail_frac > 0 && c->max_sim_s > 0 && c->fail_at_s > c->max_sim_s) {
        snprintf(err, errlen, "fail-at %g: after max-time %g, the failures would never happen",
                 c->fail_at_s, c->max_sim_s);
    } else if (c->busy_backoff_ms == 0 || c->endgame_dups == 0 || c->max_leases == 0) {
        /* 0 used to stand for the default, which --help did not say. */
        struct shoal_sched_config sc;
        shoal_sched_config_default(&sc);
        if (c->busy_backoff_ms == 0)
            snprintf(err, errlen, "busy-backoff 0: must be at least 1 ms (default %" PRIu32 ")",
                     sc.busy_backoff_ms);
        else if (c->endgame_dups == 0)
            snprintf(err, errlen, "endgame-dups 0: must be at least 1 (default %" PRIu32 ")",
                     sc.endgame_dups);
        else
            snprintf(err, errlen, "max-leases 0: must be at least 1 (default %" PRIu32 ")",
                     sc.max_leases);
    } else {
        return 0;
    }
    return -EINVAL;
}
