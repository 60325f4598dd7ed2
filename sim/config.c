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
#include "kvfile.h"
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
    c->origin_delay_ms = 1000;
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
    if (rate && (strcmp(end, "bit") == 0 || strcmp(end, "bps") == 0 || strcmp(end, "b") == 0)) {
        x /= 8;
        end += strlen(end);
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

static int set_u32(uint32_t *dst, const char *v, uint32_t max)
{
    double x;
    if (parse_num(v, false, false, &x) != 0 || x > max || x != floor(x))
        return SHOAL_EBADMSG;
    *dst = (uint32_t)x;
    return 0;
}

static int set_bool(bool *dst, const char *v)
{
    if (!strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on"))
        *dst = true;
    else if (!strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off"))
        *dst = false;
    else
        return SHOAL_EBADMSG;
    return 0;
}

/* The daemon's and the tracker's spellings of the same quantity in the
 * same unit, taken as they are (after dashes became underscores). */
static const struct {
    const char *alias, *key;
} aliases[] = {
    {"origin_delay_ms", "origin_delay"}, /* shoald --origin-delay-ms */
};

int shoal_sim_config_set(struct shoal_sim_config *c, const char *name, const char *v)
{
    double x = 0;
    int rv = 0;
    /* Dashes are the spelling of every other shoal program (--zone-cap);
     * the underscores of the first versions still work. */
    char key[64];
    size_t kl = strlen(name);
    if (kl >= sizeof(key))
        return SHOAL_ENOTFOUND;
    for (size_t i = 0; i <= kl; i++)
        key[i] = name[i] == '-' ? '_' : name[i];
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (!strcmp(key, aliases[i].alias))
            strcpy(key, aliases[i].key);
    if (!strcmp(key, "nodes")) {
        rv = set_u32(&c->nodes, v, SHOAL_SIM_NODES_MAX);
    } else if (!strcmp(key, "zones")) {
        rv = set_u32(&c->zones, v, SHOAL_SIM_ZONES_MAX);
    } else if (!strcmp(key, "seeds")) {
        rv = set_u32(&c->seeds, v, SHOAL_SIM_NODES_MAX);
    } else if (!strcmp(key, "up") || !strcmp(key, "down") || !strcmp(key, "bandwidth") ||
               !strcmp(key, "origin") || !strcmp(key, "zone_cap")) {
        rv = parse_num(v, false, true, &x);
        if (rv == 0 && !strcmp(key, "up"))
            c->node_up = x;
        else if (rv == 0 && !strcmp(key, "down"))
            c->node_down = x;
        else if (rv == 0 && !strcmp(key, "bandwidth"))
            c->node_up = c->node_down = x;
        else if (rv == 0 && !strcmp(key, "origin"))
            c->origin_up = x;
        else if (rv == 0)
            c->zone_cap = x;
    } else if (!strcmp(key, "hetero") || !strcmp(key, "lat_zone") || !strcmp(key, "lat_cross") ||
               !strcmp(key, "lat_origin") || !strcmp(key, "join_spread") ||
               !strcmp(key, "fail_frac") || !strcmp(key, "fail_at") ||
               !strcmp(key, "max_time")) {
        rv = parse_num(v, false, false, &x);
        if (rv == 0) {
            if (!strcmp(key, "hetero"))
                c->hetero = x;
            else if (!strcmp(key, "lat_zone"))
                c->lat_zone_ms = x;
            else if (!strcmp(key, "lat_cross"))
                c->lat_cross_ms = x;
            else if (!strcmp(key, "lat_origin"))
                c->lat_origin_ms = x;
            else if (!strcmp(key, "join_spread"))
                c->join_spread_s = x;
            else if (!strcmp(key, "fail_frac"))
                c->fail_frac = x;
            else if (!strcmp(key, "fail_at"))
                c->fail_at_s = x;
            else
                c->max_sim_s = x;
        }
    } else if (!strcmp(key, "size")) {
        rv = parse_num(v, true, false, &x);
        if (rv == 0 && (x < 1 || x > 1e15))
            rv = SHOAL_EBADMSG;
        if (rv == 0)
            c->release_bytes = (uint64_t)x;
    } else if (!strcmp(key, "chunk_avg") || !strcmp(key, "chunk_min") ||
               !strcmp(key, "chunk_max")) {
        rv = parse_num(v, true, false, &x);
        if (rv == 0 && (x < 1 || x > 64.0 * 1024 * 1024))
            rv = SHOAL_EBADMSG;
        if (rv == 0) {
            uint32_t *d = !strcmp(key, "chunk_avg")   ? &c->chunk_avg
                          : !strcmp(key, "chunk_min") ? &c->chunk_min
                                                      : &c->chunk_max;
            *d = (uint32_t)x;
        }
    } else if (!strcmp(key, "files")) {
        rv = set_u32(&c->files, v, 1000000);
    } else if (!strcmp(key, "manifest")) {
        if (strlen(v) >= sizeof(c->manifest))
            rv = SHOAL_EBADMSG;
        else
            strcpy(c->manifest, v);
    } else if (!strcmp(key, "peers")) {
        rv = set_u32(&c->max_peers, v, 250);
    } else if (!strcmp(key, "tracker")) {
        rv = set_bool(&c->tracker, v);
    } else if (!strcmp(key, "progress")) {
        rv = set_bool(&c->progress, v);
    } else if (!strcmp(key, "progress_every")) {
        rv = parse_num(v, false, false, &x);
        if (rv == 0 && !(x > 0 && x <= 86400))
            rv = SHOAL_EBADMSG;
        if (rv == 0)
            c->progress_every_s = x;
    } else if (!strcmp(key, "seed")) {
        /* Decimal digits only: strtoull alone takes a sign (-1 wraps to
         * 2^64-1), leading blanks, and with base 0 reads 010 as 8. */
        char *end;
        errno = 0;
        unsigned long long s = isdigit((unsigned char)v[0]) ? strtoull(v, &end, 10) : 0;
        if (!isdigit((unsigned char)v[0]) || *end || errno)
            rv = SHOAL_EBADMSG;
        else
            c->seed = s;
    } else if (!strcmp(key, "min_depth")) {
        rv = set_u32(&c->min_depth, v, 64);
    } else if (!strcmp(key, "max_depth")) {
        rv = set_u32(&c->max_depth, v, 64);
    } else if (!strcmp(key, "cross_delay")) {
        rv = set_u32(&c->cross_zone_delay_ms, v, 3600000);
    } else if (!strcmp(key, "lease_chunks")) {
        rv = set_u32(&c->lease_chunks, v, 64);
    } else if (!strcmp(key, "endgame_dups")) {
        rv = set_u32(&c->endgame_dups, v, 8);
    } else if (!strcmp(key, "upload_slots")) {
        rv = set_u32(&c->upload_slots, v, 250);
    } else if (!strcmp(key, "busy_backoff")) {
        rv = set_u32(&c->busy_backoff_ms, v, 3600000);
    } else if (!strcmp(key, "max_inflight")) {
        rv = set_u32(&c->max_inflight, v, 64 * 250);
    } else if (!strcmp(key, "origin_fetchers")) {
        rv = set_u32(&c->origin_fetchers, v, SHOAL_REG_RANKS_MAX);
    } else if (!strcmp(key, "min_fetchers")) {
        rv = set_u32(&c->min_fetchers, v, SHOAL_REG_RANKS_MAX);
    } else if (!strcmp(key, "importers")) {
        rv = set_u32(&c->importers, v, SHOAL_REG_RANKS_MAX);
    } else if (!strcmp(key, "origin_delay")) {
        rv = set_u32(&c->origin_delay_ms, v, 3600000);
    } else if (!strcmp(key, "max_leases")) {
        rv = set_u32(&c->max_leases, v, 8);
    } else {
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
        snprintf(err, errlen, "%s %g: node bandwidth must be above 0 (bandwidth, up, down)",
                 !(c->node_up > 0) ? "up" : "down", !(c->node_up > 0) ? c->node_up : c->node_down);
    } else if (!(c->origin_up > 0)) {
        snprintf(err, errlen, "origin %g: must be above 0", c->origin_up);
    } else if (!(c->hetero >= 0 && c->hetero < 1)) {
        snprintf(err, errlen, "hetero %g: must be at least 0 and below 1", c->hetero);
    } else if (c->chunk_min == 0 || c->chunk_min > c->chunk_avg || c->chunk_avg > c->chunk_max) {
        snprintf(err, errlen,
                 "chunk-min %" PRIu32 ", chunk-avg %" PRIu32 ", chunk-max %" PRIu32
                 ": must be 1 <= chunk-min <= chunk-avg <= chunk-max",
                 c->chunk_min, c->chunk_avg, c->chunk_max);
    } else if (!c->manifest[0] && c->release_bytes == 0) {
        snprintf(err, errlen, "size 0: must be at least 1 byte");
    } else if (!c->manifest[0] &&
               c->release_bytes / c->chunk_min + 2 > SHOAL_SIM_CHUNKS_MAX) {
        /* sim.c sizes its chunk table for the worst case, every chunk at
         * chunk_min. */
        snprintf(err, errlen,
                 "size %" PRIu64 ": at most %" PRIu64 " bytes with chunk-min %" PRIu32
                 " (%u chunks at most; raise chunk-min for a larger release)",
                 c->release_bytes, (uint64_t)(SHOAL_SIM_CHUNKS_MAX - 2) * c->chunk_min,
                 c->chunk_min, SHOAL_SIM_CHUNKS_MAX);
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
        snprintf(err, errlen, "lat-zone, lat-cross, lat-origin: must be 0 or more");
    } else if (!(c->lat_zone_ms <= SHOAL_SIM_LAT_MAX_MS && c->lat_cross_ms <= SHOAL_SIM_LAT_MAX_MS &&
                 c->lat_origin_ms <= SHOAL_SIM_LAT_MAX_MS)) {
        const char *k = c->lat_zone_ms > SHOAL_SIM_LAT_MAX_MS    ? "lat-zone"
                        : c->lat_cross_ms > SHOAL_SIM_LAT_MAX_MS ? "lat-cross"
                                                                 : "lat-origin";
        double v = c->lat_zone_ms > SHOAL_SIM_LAT_MAX_MS    ? c->lat_zone_ms
                   : c->lat_cross_ms > SHOAL_SIM_LAT_MAX_MS ? c->lat_cross_ms
                                                            : c->lat_origin_ms;
        snprintf(err, errlen,
                 "%s %g: a round trip is in milliseconds, at most %.0f (one minute)", k, v,
                 SHOAL_SIM_LAT_MAX_MS);
    } else if (!(c->join_spread_s >= 0 && c->join_spread_s <= SHOAL_SIM_JOIN_SPREAD_MAX_S)) {
        /* A run simulates the whole spread: 1e300 never ended. */
        snprintf(err, errlen,
                 "join-spread %g: must be 0 to %.0f s (one day; the run simulates the whole"
                 " spread)", c->join_spread_s, SHOAL_SIM_JOIN_SPREAD_MAX_S);
    } else if (!(c->max_sim_s >= 0 && c->max_sim_s <= SHOAL_SIM_TIME_MAX_S)) {
        snprintf(err, errlen, "max-time %g: must be 0 (no limit) to %.0f s (30 days)",
                 c->max_sim_s, SHOAL_SIM_TIME_MAX_S);
    } else if (c->fail_frac > 0 && !(c->fail_at_s <= SHOAL_SIM_TIME_MAX_S)) {
        snprintf(err, errlen, "fail-at %g: must be 0 to %.0f s (30 days)", c->fail_at_s,
                 SHOAL_SIM_TIME_MAX_S);
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

/* shoal_kvfile_fn over shoal_sim_config_set. */
static int set_one(void *ctx, const char *key, const char *value, char *why, size_t whylen)
{
    int rv = shoal_sim_config_set(ctx, key, value);
    if (rv != 0)
        snprintf(why, whylen, "%s '%s'", rv == SHOAL_ENOTFOUND ? "unknown key" : "bad value for",
                 key);
    return rv;
}

int shoal_sim_config_load(struct shoal_sim_config *c, const char *path, char *err,
                          size_t errlen)
{
    return shoal_kvfile_load(path, set_one, c, err, errlen);
}
