/* SPDX-License-Identifier: MIT */
/*
 * shoald's settings: one table of keys used both by the config file
 * ("key = value" lines, '#' comments) and by the command line ("--key value",
 * "--flag" for booleans), so every flag can be set in the file and the two
 * never drift apart. Command-line values are applied after the file's.
 * List keys (peer, manifest, pull, cluster-keys, publisher-keys,
 * tracker-keys, tracker) accumulate.
 */
#ifndef SHOAL_CONFIG_H
#define SHOAL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SHOAL_CONFIG_LIST_MAX 64

struct shoal_config_list {
    char *v[SHOAL_CONFIG_LIST_MAX];
    size_t n;
};

struct shoal_config {
    char *listen;            /* host:port to accept peers on */
    char *advertise;         /* host:port peers should dial (default: listen) */
    char *zone;
    char *node_key;          /* secret key file */
    char *cred;              /* credential file */
    struct shoal_config_list cluster_keys;  /* trust files of cluster keys */
    struct shoal_config_list publisher_keys; /* trust files of manifest publishers */
    struct shoal_config_list tracker_keys;   /* keys trackers must prove (none: not checked) */
    struct shoal_config_list deny_keys;      /* revoked node keys, files read again on change */
    char *cache_dir;         /* NULL: HF_HUB_CACHE / HF_HOME/hub / ~/.cache/... */
    char *state_dir;         /* NULL: $STATE_DIRECTORY, /var/lib/shoald, ... (state.h) */
    struct shoal_config_list peers;      /* static peers host:port */
    struct shoal_config_list manifests;  /* signed manifest files to hold */
    struct shoal_config_list pulls;      /* manifest ids (hex) or org/name@commit */
    char *seed_dir;          /* local copy of the --manifest releases */
    bool no_encrypt;
    bool no_aesgcm;
    bool verify_store;
    bool exit_when_complete;
    bool test_corrupt_uploads;
    bool test_corrupt_hangup; /* implies test_corrupt_uploads */
    bool test_sendfile_local; /* sendfile to peers on this host too */
    uint64_t max_frame;
    /* Bytes of manifests queued to peers at once: answering a crowd of
     * WANT_MANIFESTs with a copy each would hold peers x manifest bytes
     * (3.9 GB for 1,000 pullers of a 100,000-chunk release). The default
     * 8M fits two such manifests, so one is written while the next is
     * sealed. */
    uint64_t manifest_budget;
    uint64_t max_queue_total; /* write queues of all peers together (0: none) */
    uint64_t max_peers;      /* authenticated peers and our dials in progress */
    /* Inbound connections still in their handshake: a pool of their own,
     * the oldest closed to admit a new one, so connections that never
     * authenticate can neither take max_peers slots nor stop our dials. */
    uint64_t max_unauth;
    /* Inbound HELLOs verified per second from one source (netsrc.h), with
     * twice that as burst; beyond it a HELLO is refused unverified. 0: no
     * limit. */
    uint64_t hello_rate;
    uint64_t serve_per_peer;
    uint64_t upload_slots;
    uint64_t request_timeout_ms;
    uint64_t handshake_timeout_ms;
    uint64_t peer_idle_ms;
    uint64_t ban_seconds;
    uint64_t reconnect_ms;
    uint64_t seed;
    char *log_level;
    char *control_socket;    /* NULL: default path; "none": no control socket */
    uint64_t rate_up, rate_down;           /* bytes/s, whole node; 0 none */
    uint64_t peer_rate_up, peer_rate_down; /* bytes/s, each connection */
    uint64_t compress_level; /* zstd level for served chunks; 0 off */
    char *loader_socket;     /* Unix socket for local loaders; NULL: none */
    char *loader_group;      /* group whose members may connect */
    char *loader_user;       /* a user who may connect */
    char *store;             /* "disk" (HF cache, default) or "memory" */
    struct shoal_config_list trackers;   /* trackers host:port (repeatable) */
    char *hub_endpoint;      /* origin base URL; NULL: $HF_ENDPOINT, else the Hub */
    char *hub_token_file;    /* origin token; NULL: $HF_TOKEN, else the
                              * login file (shoal_hub_config.token) */
    char *hub_ca;            /* PEM CA bundle for an https origin; NULL:
                                $CURL_CA_BUNDLE, $SSL_CERT_FILE, the system's */
    bool no_origin;          /* never fetch from the origin */
    uint64_t origin_delay_ms;    /* no origin fetch this soon after a release opens */
    uint64_t lease_fallback_ms;  /* no tracker this long: fetch without a lease */
    uint64_t starved_ms;         /* no chunk from peers this long: lease requests
                                    say the node is starved (shoal_sched_starved) */
    uint64_t lease_chunks;       /* chunks per origin lease (1-64) */
    uint64_t max_leases;         /* origin leases held at once (1-16) */
    uint64_t max_releases;       /* releases open at once (1-64) */
    /* An origin range attempt under origin_min_rate bytes/s (0: never)
     * over a whole origin_slow_window_ms (1000-3600000) is resumed on a new
     * connection (shoal_hub_config.slow_floor_bps, slow_window_ms). */
    uint64_t origin_min_rate;
    uint64_t origin_slow_window_ms;
};

/* Defaults into |c| (strings NULL or default copies). Returns 0 or -ENOMEM. */
int shoal_config_init(struct shoal_config *c);
void shoal_config_free(struct shoal_config *c);

/* Sets |key| (without "--") to |value|. Returns 0, -ENOENT (unknown key),
 * -EINVAL (bad value; |why| says why) or -ENOMEM / SHOAL_ELIMIT. */
int shoal_config_set(struct shoal_config *c, const char *key, const char *value, char *why,
                     size_t whylen);

/* Reads a config file: 'key = value' lines of at most 4095 bytes; '#' at
 * the start of a line or after a space or tab starts a comment. Errors name
 * the line: Returns 0, a negated errno (file; -EISDIR for a directory),
 * SHOAL_ELIMIT (a longer line), -EINVAL (a line without '='), or the first
 * shoal_config_set error (message in |why|). */
int shoal_config_load(struct shoal_config *c, const char *path, char *why, size_t whylen);

/* True when |key| is a boolean (command line: "--key" takes no value). */
bool shoal_config_is_flag(const char *key);
/* True when |key| names a setting at all. */
bool shoal_config_is_known(const char *key);

/* Writes "  --key VALUE   help" lines for --help. */
void shoal_config_usage(FILE *out);

#endif
