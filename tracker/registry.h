/* SPDX-License-Identifier: MIT */
/*
 * The tracker's brain: who holds which manifest, which releases every node
 * should hold, and who may fetch which chunks from the origin.
 *
 * Pure logic: no I/O, no clock reads (every call that depends on time takes
 * |now_ms|), no libuv. Randomness comes from a small PRNG seeded by the
 * configuration, so a run is reproducible: the tracker server and the
 * simulator drive the very same code.
 *
 * State is soft. Nodes announce what they hold; a node that does not
 * announce within node_ttl_ms is dropped. Manifests are registered by the
 * server after it checked their signature. Everything is rebuilt from
 * announces and re-puts after a restart.
 *
 * Memory: nodes, manifests and zones live in flat arrays indexed by open
 * addressing hash tables; a node-manifest entry costs about 20 bytes plus
 * the node's own record (~200 bytes, shared by its entries).
 *
 * Thread safety: none; one registry is driven by one thread.
 */
#ifndef SHOAL_REGISTRY_H
#define SHOAL_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Longest listen address ("host:port") and zone name, in bytes. */
#define SHOAL_REG_ADDR_MAX 128
#define SHOAL_REG_ZONE_MAX 64
/* Distinct zone names in use at once (by nodes and zoned rollouts); a zone
 * nobody is in any more is forgotten. */
#define SHOAL_REG_ZONES_MAX 1024
/* Longest "org/name@commit" accepted as a release name. */
#define SHOAL_REG_REPO_MAX 256
/* Largest chunk count of a manifest for lease tracking (as the wire). */
#define SHOAL_REG_CHUNKS_MAX 16777216u
/* Largest span one lease grants, whatever the node asks for. */
#define SHOAL_REG_LEASE_SPAN_MAX 64
/* Leases one node may hold at the same time, over all manifests. */
#define SHOAL_REG_LEASES_PER_NODE 8
/* Desired releases (rollout entries) kept at once. */
#define SHOAL_REG_ROLLOUTS_MAX 64
/* Longest branch name a rollout moves (refs/<ref> on the nodes). */
#define SHOAL_REG_REF_MAX 128
/* Nodes remembered after the registry forgot them (shoal_reg_rollout_gone):
 * the oldest record makes room. */
#define SHOAL_REG_GONE_MAX 1024
/* Most peers returned by one shoal_reg_peers call. */
#define SHOAL_REG_PEERS_MAX 256
/* Most role ranks per (manifest, zone): origin_fetchers + importers. */
#define SHOAL_REG_RANKS_MAX 255
/* shoal_reg_role.rank of a node without a rank. */
#define SHOAL_REG_RANK_NONE UINT32_MAX

struct shoal_reg_config {
    uint32_t announce_interval_ms;  /* told to nodes in the announce reply */
    uint32_t node_ttl_ms;           /* a node silent this long is dropped */
    uint32_t lease_ms;              /* lifetime of an origin lease */
    uint32_t max_peers;             /* cap on one peer list */
    uint64_t seed;                  /* PRNG seed (peer sampling, hashing) */
    uint32_t max_nodes;
    uint32_t max_manifests;         /* manifests known by id (announced or put) */
    uint32_t max_entries_per_node;  /* manifests one announce may list */
    /* Added by the hardening against authenticated clients: */
    uint32_t max_unregistered_per_node; /* holdings one node may have of
                                       manifests not registered here (see
                                       shoal_reg_announce) */
    uint64_t manifest_ttl_ms;       /* a registered manifest nobody holds,
                                       leases, puts or fetches this long is
                                       forgotten (0 = never; see
                                       shoal_reg_put_manifest_ex) */
    /* Added beyond the original sketch: */
    uint64_t max_lease_chunks;      /* sum of nchunks over manifests with lease
                                       state (1 byte per chunk) */
    uint64_t max_manifest_bytes;    /* sum of registered signed manifests */
    /* Added by the review fixes: */
    uint32_t fetched_ttl_ms;        /* fetched-from-origin chunks become
                                       leasable again after this long while
                                       no node but their fetcher announces
                                       the whole manifest (0 = never; see
                                       shoal_reg_lease) */
    /* Fleet roles (see shoal_reg_announce): per manifest and zone, the
     * first origin_fetchers announcers lease from the origin at once (0:
     * every node does) and the next importers each import a 1/importers
     * share of the chunks from other zones at once. max(origin_fetchers,
     * min_fetchers) + importers is at most SHOAL_REG_RANKS_MAX. */
    uint32_t origin_fetchers;
    uint32_t importers;
    /* ... but with origin_fetchers > 0 there are at least min_fetchers in
     * all while enough nodes hold ranks: the zones share them, a zone with
     * fewer ranked nodes than its share making all of them fetchers and
     * leaving the rest to the others (see shoal_reg_announce). A fleet in
     * one or two zones then still has enough: a fetcher's origin download
     * shares its link with its peer downloads, and two of them could not
     * keep the origin busy (simulated 500-node fleet in one zone:
     * completion 1.71 x T_min with 2 fetchers, 1.13 with 8). 0:
     * origin_fetchers per zone. */
    uint32_t min_fetchers;
    /* Lease spans: at most a 1/(fetchers x fetcher_leases) share of the
     * chunks nobody has leased or fetched yet, so every fetcher can hold
     * fetcher_leases of them at once (a daemon's default max_leases is 2,
     * which the tracker cannot see); 0: spans are not shortened. Once
     * chunks have come back from the origin, fetchers count only nodes
     * that announced the manifest and are not complete, and one alone
     * gets what it asks (see lease_share in registry.c). */
    uint32_t fetcher_leases;
    /* A node whose import share is provisional (the small-zone split of
     * shoal_reg_announce: its zone fills fewer ranks than there are
     * import shares, so the share shrinks as the zone grows) is asked to
     * announce again sooner than announce_interval_ms, so that it learns
     * its smaller share soon after the zone grows: after as long as the
     * zone has gone without taking a rank, rounded down to this times a
     * power of two, at least this and at most announce_interval_ms (see
     * shoal_reg_role.interval_ms). A zone that fills fast has its first
     * nodes learn within about this long; one that stopped growing (a
     * zone of a few nodes) is asked about twice as seldom at every
     * announce, so it costs about log2(announce_interval_ms / this)
     * extra announces each time it grows. 0: announce_interval_ms for
     * every node. */
    uint32_t fill_interval_ms;
    /* A node forgotten (lost, left, refused) is still counted as gone by
     * rollout status this long, unless it announces again (at most
     * SHOAL_REG_GONE_MAX of them). 0: not remembered. */
    uint64_t gone_keep_ms;
};

/* Defaults: interval 30 s (200 ms for a provisional share), ttl 90 s,
 * lease 60 s, 50 peers, seed 1,
 * 100,000 nodes, 65,536 manifests, 256 entries per node (of which 32 for
 * unregistered manifests), 64 Mi lease chunks,
 * 1 GiB of registered manifests, manifest TTL 168 h, fetched TTL 10 min, 2 origin fetchers and
 * 8 importers per zone, at least 8 fetchers per manifest, spans shared for
 * 2 leases per fetcher, gone nodes remembered 24 h. */
void shoal_reg_config_default(struct shoal_reg_config *c);

struct shoal_reg;

/* New empty registry with a copy of |cfg|, into |*out| (written only on
 * success). Returns 0, -EINVAL (a zero interval/ttl/lease/limit,
 * max_entries_per_node or max_unregistered_per_node (which may be 0)
 * above 65535, max(origin_fetchers, min_fetchers) +
 * importers above SHOAL_REG_RANKS_MAX) or -ENOMEM. */
int shoal_reg_new(struct shoal_reg **out, const struct shoal_reg_config *cfg);

/* Ranks a zone may need for fetchers under |c|: as many as a zone alone
 * gets, max(origin_fetchers, min_fetchers), or 0 with origin_fetchers 0.
 * Plus importers, at most SHOAL_REG_RANKS_MAX. */
uint32_t shoal_reg_fetcher_ranks(const struct shoal_reg_config *c);
/* Frees everything; NULL is accepted. */
void shoal_reg_free(struct shoal_reg *r);

/* ---- announces and peers ---- */

struct shoal_reg_have {
    uint8_t manifest_id[32];
    uint32_t have_chunks;
    uint32_t total_chunks;
    bool complete;
};

/* A node's part in fetching one manifest, decided by the tracker so that a
 * fleet of daemons (and the simulator) leaves the origin and the zone
 * boundary to a few nodes per zone. */
struct shoal_reg_role {
    bool fetcher;         /* lease from the origin at once; others wait
                             (nobody while a complete copy is announced) */
    uint32_t import_mod;  /* > 0: import the chunks c with c % import_mod ==
                             import_rem from other zones at once */
    uint32_t import_rem;
    uint32_t rank;        /* rank within (manifest, zone), or
                             SHOAL_REG_RANK_NONE */
    bool untracked;       /* the holding was not recorded (see
                             shoal_reg_announce): no role */
    uint32_t interval_ms; /* announce again within this long: the
                             config's announce_interval_ms, or less while
                             the import share is provisional (see
                             shoal_reg_config.fill_interval_ms). A node
                             holding several releases takes the least. */
};

/*
 * Records that |node_pk| (listening on |addr|, in |zone|) holds exactly the
 * |n| manifests in |haves|, replacing whatever it announced before, and
 * marks it alive at |now_ms|. A manifest listed twice keeps the last entry.
 * |addr| and |zone| are copied (NUL-terminated; NULL means ""). A node may
 * change zone; a zone nobody is in any more is forgotten. The entries'
 * total_chunks never size lease state (see shoal_reg_lease).
 *
 * Roles: within each (manifest, zone), ranks 0 .. F + importers - 1 go to
 * announcers that are not complete, first come first served, where F =
 * max(origin_fetchers, min_fetchers). A node keeps its rank while it stays
 * (also once complete); a rank freed by a node that leaves, expires, moves
 * zone or drops the manifest goes to the next announce of that manifest in
 * that zone by a node without a rank or with a higher one, so the lowest
 * ranks (the fetchers) stay filled. In every zone rank r < f is a fetcher
 * and the next importers ranks import share r - f of importers, where f =
 * max(origin_fetchers, L) and L is the level at which the zones' ranked
 * nodes below F, each zone counting at most L, add up to min_fetchers
 * (every such node when they cannot); f changes as nodes come and go, so
 * a role may change from one announce to the next. Zones count while a
 * node there holds a rank, complete or not. With 0 origin_fetchers every
 * node is a fetcher. A node that holds chunks (have_chunks > 0) in a zone
 * whose highest rank taken, t, is below f + importers - 1 gets a share
 * of min(importers, t + 1 - f) instead; while t < f and no node of the
 * zone announces complete, fetcher r imports share r of t + 1, so that a
 * zone of a few nodes has an importer for every chunk. Such a share is
 * provisional, and the role's interval_ms is shorter (see
 * fill_interval_ms). When |roles| is
 * not NULL,
 * roles[i] receives the role for haves[i] (on success only).
 *
 * Manifests not registered (no signed bytes here): a node's holdings of
 * them are recorded only up to max_unregistered_per_node, in announce
 * order (those it already holds first), and records for such ids fill at
 * most half of max_manifests, so registered manifests always have the
 * other half. A holding past either limit, or one that would need a
 * record while the table is full, is skipped: not recorded, its role
 * marked untracked, counted in entries_skipped; the rest of the announce
 * applies. A node holding more releases than its quota right after a
 * tracker restart (before its re-puts) has them all recorded at its next
 * announce. A record of an unregistered id that no node holds any more
 * and that has no lease state is dropped at once.
 *
 * Returns 0; SHOAL_ETOOBIG when addr or zone is too long; SHOAL_ELIMIT when
 * |n| > max_entries_per_node or the node or zone tables are full (nothing
 * is changed then); -ENOMEM (the node may have lost entries).
 */
int shoal_reg_announce(struct shoal_reg *r, uint64_t now_ms, const uint8_t node_pk[32],
                       const char *addr, const char *zone, const struct shoal_reg_have *haves,
                       size_t n, struct shoal_reg_role *roles);

/* Forgets |node_pk| now, as if it had not announced within node_ttl_ms
 * (it left, died, or its key was revoked): its holdings, its leases (their
 * chunks become free again) and the chunks it fetched from the origin
 * (free again unless a node announcing the whole manifest is still
 * known). Returns 0, or SHOAL_ENOTFOUND (not known: nothing changes). */
int shoal_reg_remove_node(struct shoal_reg *r, const uint8_t node_pk[32]);

/* Why a node the registry knew is gone (rollout status says so). */
enum shoal_reg_gone {
    SHOAL_REG_GONE_LOST = 0,    /* no announce within node_ttl_ms, connection lost */
    SHOAL_REG_GONE_LEFT = 1,    /* said BYE (shut down) */
    SHOAL_REG_GONE_REFUSED = 2, /* refused at login since (credential expired, key revoked) */
};
/* shoal_reg_remove_node, remembering the node as gone for |why| (see
 * gone_keep_ms). */
int shoal_reg_remove_node_why(struct shoal_reg *r, const uint8_t node_pk[32],
                              enum shoal_reg_gone why);
/* A login by |node_pk| was refused: a node remembered as gone is now
 * counted as refused, its record kept from |now_ms|. Nothing for a key
 * not remembered: a refused stranger is not a node of the fleet. */
void shoal_reg_node_refused(struct shoal_reg *r, uint64_t now_ms, const uint8_t node_pk[32]);

/*
 * Tells the registry that |node_pk| runs a new session (the server calls it
 * on the node's first announce over a new connection): whatever the old
 * process leased or fetched may be gone with it. Voids every origin lease
 * the node holds, so its chunks are leasable at once instead of after
 * lease_ms, and drops its fetched-from-origin credit for each manifest it
 * does not now announce complete: those chunks become leasable at once
 * unless a node announcing the whole manifest is known (then only the
 * fetched_ttl_ms rule applies, as when a node leaves). Its holdings and
 * roles are untouched. Writes the count of leases voided to |*leases| and
 * of chunks made leasable again by dropped credit to |*chunks| (either may
 * be NULL). Returns 1 when anything was voided or dropped, else 0 (also
 * for an unknown key).
 */
int shoal_reg_node_restarted(struct shoal_reg *r, const uint8_t node_pk[32], uint32_t *leases,
                             uint32_t *chunks);

/* Bytes of a process session id (shoal_reg_node_session). */
#define SHOAL_REG_SESSION_LEN 16

/*
 * Records that |node_pk| logged in from the process session |session|
 * (SHOAL_REG_SESSION_LEN bytes, or NULL when the client sent none) and
 * tells a reconnect from a new session: returns 1 when |session| equals
 * the session recorded by the previous call for this key (the same process
 * lost its connection and came back: the server then keeps its leases and
 * fetched credit), else 0 (no session now or before, another one, or an
 * unknown key, for which nothing is recorded). The record is part of the
 * node's and goes when the node expires or is removed. With 1, writes the
 * origin leases the node holds to |*leases| (may be NULL) and marks them
 * unconfirmed until the node reports on them or is granted them again
 * (see shoal_reg_lease).
 */
int shoal_reg_node_session(struct shoal_reg *r, const uint8_t node_pk[32],
                           const uint8_t *session, uint32_t *leases);

/*
 * True when |node_pk| is known and the session shoal_reg_node_session last
 * recorded for it is not |session| (SHOAL_REG_SESSION_LEN bytes, or NULL
 * for none: a node recorded without one, as an older client is, is in the
 * same session): another process of the key has announced since.
 * Changes nothing.
 */
bool shoal_reg_node_session_other(const struct shoal_reg *r, const uint8_t node_pk[32],
                                  const uint8_t *session);

/* Pointers are valid until the next call that changes the registry. */
struct shoal_reg_peer {
    uint8_t node_pk[32];
    const char *addr;
    const char *zone;
    bool complete;
    uint32_t have_chunks;
};

/*
 * Writes to |out| (capacity |max|, further capped by max_peers and
 * SHOAL_REG_PEERS_MAX) a random subset of the live nodes that hold
 * |manifest_id| (complete, or at least one chunk), never |asker_pk| (which
 * may be NULL). About 3/4 of the slots go to nodes in |asker_zone| when
 * there are enough of them; within a zone at most about half are complete
 * seeds when partial holders are available, so newcomers spread over the
 * swarm instead of all hitting the same seeds. When the holders do not fill
 * the list, live nodes that announced the manifest but hold none of it yet
 * follow them (about 3/4 from |asker_zone| again): a fleet that starts
 * together connects at once. Returns the number written.
 */
size_t shoal_reg_peers(struct shoal_reg *r, uint64_t now_ms, const uint8_t manifest_id[32],
                       const uint8_t asker_pk[32], const char *asker_zone,
                       struct shoal_reg_peer *out, size_t max);

/* ---- origin leases ---- */

/*
 * Grants |node_pk| one contiguous span of chunks of |manifest_id| that are
 * neither leased nor already fetched from the origin: the first free chunk
 * at or after |hint_chunk| (wrapping), extended while free, up to
 * |max_chunks|, SHOAL_REG_LEASE_SPAN_MAX and a share of the chunks still
 * free (see lease_share in registry.c: spans shrink as the release runs
 * out, so the origin's last chunks are spread over every fetcher), never
 * wrapping inside a span.
 * The chunk count is the registered manifest's, else |nchunks| (the
 * first value seen sticks; 0 = unknown, and nothing is created). Announces
 * never set it, so a network-facing caller passes 0 and only manifests
 * registered with shoal_reg_put_manifest get lease state. The per-node
 * lease cap is checked before lease state is charged to max_lease_chunks.
 * An unknown node is created without holdings so it expires unless it
 * announces.
 * Fetched chunks become free again (1) when the node that fetched them is
 * removed or expires while no node announces the whole manifest, (2) when
 * they were fetched fetched_ttl_ms ago and no node other than their
 * fetcher announces the whole manifest (a node may report a lease done
 * without fetching, and announce complete without holding anything); the
 * fetcher is then not granted them again for another fetched_ttl_ms, and
 * (3) all at once when the manifest has had no live holder (with chunks)
 * and no completed lease for node_ttl_ms: the swarm lost them.
 * A node back on a new connection in the same session (see
 * shoal_reg_node_session) that asks while it holds a lease of the
 * manifest it has not reported on is granted that lease again (the one
 * covering |hint_chunk| first; same span and expiry; once per lease):
 * the reply that granted it may have been lost with the old connection.
 * With SHOAL_REG_HINT_MISSING in |flags| the node says it misses
 * |hint_chunk| and none of its peers offers it: if the tracker holds that
 * chunk fetched or leased on this node's own word, or, with
 * SHOAL_REG_HINT_STARVED too (no peer has delivered it a chunk for a
 * while: it is cut off from the holders), fetched on another node's word
 * lease_ms ago or more, the word is withdrawn and the chunk leasable
 * again (see withdraw_hint).
 * On success writes *first, *count (0 when nothing is free) and
 * *expires_ms (absolute, now_ms + lease_ms). Returns 0; SHOAL_EBUSY (with
 * *count = 0) when the node already holds SHOAL_REG_LEASES_PER_NODE leases;
 * SHOAL_ETOOBIG (nchunks unknown, 0 or above SHOAL_REG_CHUNKS_MAX);
 * SHOAL_ELIMIT (node/manifest tables or the lease-chunk budget full);
 * -ENOMEM.
 */
int shoal_reg_lease(struct shoal_reg *r, uint64_t now_ms, const uint8_t manifest_id[32],
                    uint32_t nchunks, const uint8_t node_pk[32], uint32_t max_chunks,
                    uint32_t hint_chunk, uint32_t flags, uint32_t *first, uint32_t *count,
                    uint64_t *expires_ms);
#define SHOAL_REG_HINT_MISSING 1u
#define SHOAL_REG_HINT_STARVED 8u

/* Whether some live node announces part of |manifest_id| (chunks, not
 * complete): a rollout was under way. */
bool shoal_reg_partly_held(const struct shoal_reg *r, uint64_t now_ms,
                           const uint8_t manifest_id[32]);

/*
 * Ends every lease |node_pk| holds on |manifest_id| at once, as if each had
 * expired (its unfetched chunks are free to lease again): the node's origin
 * refuses it. Writes how many ended to *|ended|. Returns 0 (also when the
 * node or the manifest is unknown: nothing to end).
 */
int shoal_reg_lease_give_back(struct shoal_reg *r, uint64_t now_ms, const uint8_t manifest_id[32],
                              const uint8_t node_pk[32], uint32_t *ended);

/*
 * Node |node_pk| re-claims an origin lease it holds and has not finished,
 * granted on an earlier connection, perhaps by an earlier tracker process
 * whose state is lost: chunks [first, first+count) of |manifest_id| with
 * |left_ms| of it left. A restarted tracker otherwise leased spans nodes
 * were still fetching to other nodes, and the origin served them twice.
 * Granted, first come, when every chunk of the span is free or reported
 * fetched by the claimer itself (none leased, even to the claimer under
 * another lease, nor fetched by another node) and no bar keeps the node
 * from it: the lease then runs min(|left_ms|, lease_ms) from now, so a
 * claim cannot stretch a lease beyond what a grant gives. A lease of the node with that very span (the
 * tracker kept it across a reconnect) is confirmed, expiry unchanged.
 * A claim counts against SHOAL_REG_LEASES_PER_NODE like any lease. Only
 * a tracker that may have lost leases (|fresh|: it started moments ago)
 * grants a span it does not hold for the node: otherwise a claim only
 * confirms a kept lease, so a credentialed node cannot pick exact spans
 * past its share whenever it likes (review F1). On
 * success writes *expires_ms (absolute). Returns 0; SHOAL_EBUSY (refused:
 * another node's chunks, a bar, or the per-node cap); SHOAL_EBADMSG (count
 * 0 or above SHOAL_REG_LEASE_SPAN_MAX, a span beyond the manifest,
 * |left_ms| 0); SHOAL_ETOOBIG (the manifest is not registered here);
 * SHOAL_ELIMIT (tables or the lease-chunk budget full); -ENOMEM.
 */
int shoal_reg_lease_reclaim(struct shoal_reg *r, uint64_t now_ms, const uint8_t manifest_id[32],
                            const uint8_t node_pk[32], uint32_t first, uint32_t count,
                            uint32_t left_ms, bool fresh, uint64_t *expires_ms);

/*
 * Marks chunks [first, first+count) of |manifest_id| fetched. The range must
 * lie inside one unexpired lease held by |node_pk|; a lease whose chunks are
 * all fetched ends, and one that is not runs lease_ms from now when the
 * report marked any chunk newly fetched (a slow fetch that progresses
 * keeps its lease). Returns 0, SHOAL_ENOTFOUND (no such lease: expired,
 * never granted, or someone else's) or SHOAL_EBADMSG (count 0).
 */
int shoal_reg_lease_done(struct shoal_reg *r, uint64_t now_ms, const uint8_t manifest_id[32],
                         const uint8_t node_pk[32], uint32_t first, uint32_t count);

/* Drops nodes not announced within node_ttl_ms (with their leases), reverts
 * expired leases, forgets unregistered manifests nobody holds or leases,
 * and registered ones nobody held, leased, put or fetched (see
 * shoal_reg_manifest_used) for manifest_ttl_ms. */
void shoal_reg_expire(struct shoal_reg *r, uint64_t now_ms);

/* ---- manifests ---- */

/* Pointers are valid until the next call that changes the registry. */
struct shoal_reg_manifest {
    uint8_t id[32];
    uint8_t repo_type;
    const char *repo;         /* "org/name" */
    const char *commit;       /* 40 hex */
    const char *repo_at_rev;  /* its name: "org/name@commit" for a model,
                                 "datasets/org/name@commit" for a dataset */
    uint32_t nchunks;
    const uint8_t *signed_bytes;
    size_t signed_len;
};

/*
 * Registers a manifest whose signature the caller has verified: copies
 * |signed_bytes| and the names. Registering an id again is a no-op; a new
 * id for the same "repo@commit" takes over the name when it is not older:
 * |created| (the signing time, unix seconds) is at least the current
 * owner's. A re-put counts as a use (see shoal_reg_manifest_used, at the
 * latest time the registry was given).
 *
 * Registered manifests are forgotten (name, bytes and all) when nobody
 * holds or leases them and they were not used for manifest_ttl_ms (by
 * shoal_reg_expire), and, when the table or max_manifest_bytes is full, the
 * least recently used of those make room for a new one. The copied signed
 * bytes stay at one address until then; a server that sends them by
 * reference takes shoal_reg_bytes_hold() on them and they stay valid until
 * its shoal_reg_bytes_release(), even past the manifest or the registry.
 * Returns 0, SHOAL_ETOOBIG (repo too long, nchunks too large),
 * SHOAL_EBADMSG (empty repo or commit, '@' in them), SHOAL_ELIMIT (manifest
 * table or byte budget full of manifests held or leased) or -ENOMEM.
 */
int shoal_reg_put_manifest_ex(struct shoal_reg *r, const uint8_t manifest_id[32],
                              uint8_t repo_type, const char *repo, const char *commit,
                              uint32_t nchunks, uint64_t created, const uint8_t *signed_bytes,
                              size_t len);
/* shoal_reg_put_manifest_ex with |created| 0 (unknown: oldest). */
int shoal_reg_put_manifest(struct shoal_reg *r, const uint8_t manifest_id[32], uint8_t repo_type,
                           const char *repo, const char *commit, uint32_t nchunks,
                           const uint8_t *signed_bytes, size_t len);

/* Records a use of registered manifest |manifest_id| at |now_ms| (a fetch
 * or a put): it is kept manifest_ttl_ms from then. Unknown ids are
 * ignored. */
void shoal_reg_manifest_used(struct shoal_reg *r, const uint8_t manifest_id[32], uint64_t now_ms);

/* Takes a reference on |signed_bytes| (shoal_reg_manifest.signed_bytes of
 * a registered manifest): they stay valid, at that address, until the
 * matching shoal_reg_bytes_release, whatever the registry forgets or
 * frees meanwhile. Single-threaded, as the registry. */
void shoal_reg_bytes_hold(const uint8_t *signed_bytes);
/* Drops a reference from shoal_reg_bytes_hold; NULL is accepted. */
void shoal_reg_bytes_release(const uint8_t *signed_bytes);

/* Looks up a registered manifest by id. Returns 0 or SHOAL_ENOTFOUND. */
int shoal_reg_manifest_by_id(const struct shoal_reg *r, const uint8_t manifest_id[32],
                             struct shoal_reg_manifest *out);
/* Looks up a registered manifest by its name, "org/name@commit" for a
 * model or "datasets/org/name@commit" for a dataset (|len| bytes, not
 * necessarily NUL-terminated): a model and a dataset of one org/name are
 * two names. Returns 0 or SHOAL_ENOTFOUND. */
int shoal_reg_manifest_by_name(const struct shoal_reg *r, const char *repo_at_rev, size_t len,
                               struct shoal_reg_manifest *out);

/* ---- desired releases (rollouts) ---- */

/*
 * Adds (or with |remove|, deletes) the wish that every node in |zone| (NULL
 * or "": every node) holds |repo_at_rev| ("[datasets/]org/name@commit"). Adding an
 * existing entry is a no-op; removing a missing one returns
 * SHOAL_ENOTFOUND. Returns 0, SHOAL_ETOOBIG (names too long), SHOAL_EBADMSG
 * (no '@'), SHOAL_ELIMIT (SHOAL_REG_ROLLOUTS_MAX entries) or
 * SHOAL_ENOTFOUND.
 */
int shoal_reg_rollout_set(struct shoal_reg *r, const char *repo_at_rev, const char *zone,
                          bool remove);

/*
 * Gives the rollout entry (|repo_at_rev|, |zone|) the branch |ref| (adding
 * the entry when missing, as shoal_reg_rollout_set): nodes write
 * refs/<ref> = the commit once they hold the release. The newest wins:
 * any other entry of the same repository naming |ref| loses it. |ref|
 * NULL or "" clears the entry's ref. Returns shoal_reg_rollout_set's
 * codes, SHOAL_ETOOBIG for a ref over SHOAL_REG_REF_MAX.
 */
int shoal_reg_rollout_set_ref(struct shoal_reg *r, const char *repo_at_rev, const char *zone,
                              const char *ref);

/* Every entry's ref, by release and zone, to put back with
 * shoal_reg_rollout_refs_restore when a change cannot be saved (about
 * 29 KiB: allocate it). */
struct shoal_reg_rollout_refs {
    uint32_t n;
    struct {
        char repo_at_rev[SHOAL_REG_REPO_MAX + 1];
        char zone[SHOAL_REG_ZONE_MAX + 1];
        char ref[SHOAL_REG_REF_MAX + 1];
    } e[SHOAL_REG_ROLLOUTS_MAX];
};
void shoal_reg_rollout_refs_get(const struct shoal_reg *r, struct shoal_reg_rollout_refs *out);
/* True when |a| and |b| list the same entries with the same refs. */
bool shoal_reg_rollout_refs_equal(const struct shoal_reg_rollout_refs *a,
                                  const struct shoal_reg_rollout_refs *b);
/* Gives each entry the ref |in| lists for its release and zone (none when
 * it lists the entry not). */
void shoal_reg_rollout_refs_restore(struct shoal_reg *r, const struct shoal_reg_rollout_refs *in);

/* One rollout entry as set; the strings are valid until the next change. */
struct shoal_reg_rollout_entry {
    const char *repo_at_rev;
    const char *zone;  /* "" = every zone */
    const char *ref;   /* "" = none */
};

/* Rollout entries set now. */
uint32_t shoal_reg_rollout_count(const struct shoal_reg *r);

/* Writes up to |max| rollout entries, in the order they were set, for
 * saving them (shoal_rollfile_save). Returns the count written. */
size_t shoal_reg_rollouts_all(const struct shoal_reg *r, struct shoal_reg_rollout_entry *out,
                              size_t max);

struct shoal_reg_desired {
    const char *repo_at_rev;  /* valid until the next change */
    const char *ref;          /* branch it moves, "" = none; valid as above */
    uint8_t manifest_id[32];  /* meaningful only when |known| */
    bool known;               /* a manifest with that name is registered */
};

/* Writes up to |max| desired releases that apply to a node in |zone| (NULL
 * = ""): entries without a zone, and those naming |zone|. Only releases
 * whose manifest is registered are listed when |known_only|. Returns the
 * count written. */
size_t shoal_reg_rollouts_for(const struct shoal_reg *r, const char *zone, bool known_only,
                              struct shoal_reg_desired *out, size_t max);

/*
 * Counts live nodes by how much of |manifest_id| they hold: *complete,
 * *partial (some chunks) and *none. When rollout entries for this
 * manifest's name exist and all name zones, only nodes in those zones count.
 * Costs O(holders of the manifest + zones), not O(nodes); nodes past their
 * TTL that shoal_reg_expire has not dropped yet count as none.
 */
void shoal_reg_rollout_status(const struct shoal_reg *r, uint64_t now_ms,
                              const uint8_t manifest_id[32], uint32_t *complete,
                              uint32_t *partial, uint32_t *none);

/* Nodes remembered as gone (forgotten within gone_keep_ms of |now_ms|,
 * not back since) in the scope shoal_reg_rollout_status counts for the
 * release named |repo_at_rev| (the zones its rollouts name, every zone
 * when none does), by why they went. O(SHOAL_REG_GONE_MAX). */
void shoal_reg_rollout_gone(const struct shoal_reg *r, uint64_t now_ms, const char *repo_at_rev,
                            uint32_t *lost, uint32_t *left, uint32_t *refused);

/* ---- stats ---- */

struct shoal_reg_stats {
    uint64_t nodes;            /* nodes currently known */
    uint64_t manifests;        /* manifests known by id */
    uint64_t registered;       /* of which registered (signed bytes held) */
    uint64_t unregistered;     /* of which known from announces only */
    uint64_t entries;          /* node-manifest holdings */
    uint64_t announces;        /* total since start */
    uint64_t leases_granted;
    uint64_t leases_expired;
    uint64_t leases_done;
    uint64_t leases_active;
    uint64_t nodes_expired;
    uint64_t entries_skipped;  /* holdings of unregistered manifests not
                                  recorded (see shoal_reg_announce) */
    uint64_t manifests_forgotten; /* registered ones, by TTL or to make room */
    uint64_t fetched_expired;  /* chunks whose fetched credit ran out with
                                  nobody vouching for it (fetched_ttl_ms) */
    uint64_t leases_regranted; /* leases granted again to a node that may
                                  have lost the reply (shoal_reg_lease) */
    uint64_t fetched_withdrawn; /* chunks fetched (or leased) on a node's
                                   word that it then asked to lease */
    uint64_t leases_given_back; /* ended early by their node (its origin
                                   refuses it: shoal_reg_lease_give_back) */
    uint64_t leases_reclaimed;  /* re-claims granted (shoal_reg_lease_reclaim) */
    uint64_t leases_reclaim_refused; /* re-claims refused: another node's */
};

void shoal_reg_stats(const struct shoal_reg *r, struct shoal_reg_stats *st);

/* Announces per second averaged over the last 10 s before |now_ms|. */
double shoal_reg_announce_rate(const struct shoal_reg *r, uint64_t now_ms);

/* Appends the stats as Prometheus text exposition (metric names
 * shoal_tracker_*) to |out|. Returns 0 or the buffer's error. */
int shoal_reg_prometheus(const struct shoal_reg *r, uint64_t now_ms, struct shoal_buf *out);

#endif
