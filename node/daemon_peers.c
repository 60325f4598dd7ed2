/* SPDX-License-Identifier: MIT */
/*
 * shoald's peer connections (daemon_int.h): the handshake pool and its
 * limits, dials to static and tracker-listed nodes, bans, and routing each
 * peer's messages to its releases.
 */
#include "daemon_int.h"

/* The close reason of an evicted connection; its close is not logged again. */
static const char EVICTED[] = "evicted: oldest connection still in its handshake";
/* ... and of a HELLO refused unchecked (hello-rate): the BYE's text too. */
static const char HELLO_BUSY[] = "busy: too many handshakes from your address, retry later";

static bool duplicate_refused(struct shoal_daemon *d, struct shoal_peer *p, const uint8_t pk[32]);
static bool connected_to_addr(struct shoal_daemon *d, const char *addr);

/* ---- bans ---- */

static bool is_banned(struct shoal_daemon *d, const uint8_t pk[32])
{
    return shoal_banlist_banned(d->bans, pk, uv_now(&d->loop));
}

void dmn_on_ban(void *user, struct shoal_swarm *s, struct shoal_peer *p, const uint8_t pk[32],
                uint32_t chunk, const char *why)
{
    struct shoal_daemon *d = user;
    char hex[17] = "?";
    uint64_t secs = d->cfg->ban_seconds;
    const char *note = "";

    /* More bad chunks from a sender that has gone: it is banned already. */
    if (!p && pk && is_banned(d, pk))
        return;
    /* A bad chunk may be an honest seed's disk gone bad, which it cannot
     * know until told (our BYE names the chunk): its first one bans it
     * briefly, while it checks and withholds what changed. A second
     * within --ban-seconds, from a later session (the first's are
     * refused above as banned already), bans for --ban-seconds: a liar
     * gets one short ban per --ban-seconds, a seed that withdrew its bad
     * chunks never a second. Lies that are no bad hash ban in full. */
    if (pk && chunk != SHOAL_SWARM_NO_CHUNK) {
        if (shoal_banlist_struck_within(d->bans, pk, uv_now(&d->loop),
                                        d->cfg->ban_seconds * 1000)) {
            note = " (its second bad chunk within --ban-seconds)";
        } else if (secs > FIRST_BAN_S) {
            secs = FIRST_BAN_S;
            note = " (its first: its disk may have changed; another within --ban-seconds "
                   "bans it for --ban-seconds)";
        }
    }
    if (pk) {
        dmn_hex8(hex, pk);
        shoal_banlist_add(d->bans, pk, uv_now(&d->loop), secs * 1000,
                          chunk != SHOAL_SWARM_NO_CHUNK, d->cfg->ban_seconds * 1000);
    }
    d->bans_total++;
    snprintf(d->last_ban_why, sizeof d->last_ban_why, "%s", why);
    LOG_W("banning node %s (peer %s) for %llu s: %s%s", hex,
          p ? shoal_peer_name(p) : "already disconnected", (unsigned long long)secs, why, note);
    /* Naming the chunk lets an honest node whose cached copy changed on
     * disk find out (shoal_swarm_chunk_disputed); it learns nothing else. */
    if (p) {
        char bye[200];
        snprintf(bye, sizeof bye, "banned: %s", why);
        if (chunk != SHOAL_SWARM_NO_CHUNK)
            shoal_peer_bye_chunk(p, bye, shoal_swarm_id(s), chunk);
        else
            shoal_peer_bye(p, bye);
    }
}

void dmn_peer_on_drain(struct shoal_peer *p, void *user)
{
    struct shoal_daemon *d = user;
    if (shoal_mfq_written(d->mfq, shoal_peer_id(p), shoal_peer_tx_bytes(p)) > 0)
        dmn_pump_manifests(d);
}

/* ---- peers ---- */

static uint32_t peer_limit(const struct shoal_daemon *d)
{
    return (uint32_t)d->cfg->max_peers; /* 1-MAX_PEERS_HARD (check_ranges) */
}

static uint32_t unauth_limit(const struct shoal_daemon *d)
{
    return (uint32_t)d->cfg->max_unauth; /* 1-MAX_UNAUTH_HARD (check_ranges) */
}

/* Connections that count against max-peers. */
static uint32_t counted_peers(const struct shoal_daemon *d)
{
    return d->npeers - d->nunauth;
}

/* Takes |p| out of the handshake pool; false if it was not there. */
static bool unauth_remove(struct shoal_daemon *d, struct shoal_peer *p)
{
    for (uint32_t i = 0; i < d->nunauth; i++) {
        if (d->unauth[i] == p) {
            memmove(&d->unauth[i], &d->unauth[i + 1], (d->nunauth - i - 1) * sizeof p);
            d->nunauth--;
            return true;
        }
    }
    return false;
}

/* Takes |p| out of peers[] (and the pool): a connection being closed that
 * must no longer hold a slot. Returns true if it was there. */
bool dmn_forget_peer(struct shoal_daemon *d, struct shoal_peer *p)
{
    unauth_remove(d, p);
    for (uint32_t i = 0; i < d->npeers; i++) {
        if (d->peers[i] == p) {
            d->peers[i] = d->peers[--d->npeers];
            return true;
        }
    }
    return false;
}

/* Slots of victim_of_most()'s count table: a power of two over twice the
 * pool's largest size, so probes stay short. */
#define SRC_COUNT_SLOTS 512u

static uint32_t src_slot(const uint8_t key[SHOAL_SRC_KEY_LEN])
{
    uint32_t h = 2166136261u; /* FNV-1a; collisions only cost probes */
    for (unsigned i = 0; i < SHOAL_SRC_KEY_LEN; i++)
        h = (h ^ key[i]) * 16777619u;
    return h & (SRC_COUNT_SLOTS - 1);
}

/* The pool's connection to evict: the oldest of the source (netsrc.h)
 * holding the most of them (*|held| of them). O(pool): a count per source
 * in a table on the stack, then one walk from the oldest. */
static uint32_t victim_of_most(const struct shoal_daemon *d, uint32_t *held)
{
    const uint8_t *keys[SRC_COUNT_SLOTS] = { NULL };
    uint16_t count[SRC_COUNT_SLOTS] = { 0 };
    uint32_t at[MAX_UNAUTH_HARD], most = 0, victim = 0;

    for (uint32_t i = 0; i < d->nunauth; i++) {
        const uint8_t *k = shoal_peer_source(d->unauth[i]);
        uint32_t j = src_slot(k);
        while (keys[j] && memcmp(keys[j], k, SHOAL_SRC_KEY_LEN) != 0)
            j = (j + 1) & (SRC_COUNT_SLOTS - 1);
        keys[j] = k;
        at[i] = j;
        if (++count[j] > most)
            most = count[j];
    }
    for (uint32_t i = 0; i < d->nunauth; i++) {
        if (count[at[i]] == most) {
            victim = i;
            break;
        }
    }
    *held = most;
    return victim;
}

/* Closes the oldest inbound connection still in its handshake of the
 * address holding the most of them, to admit a new one when the pool is
 * full. An idle connection costs its opener nothing, so whoever opens
 * them fastest holds the pool: evicting the oldest gives every newcomer at
 * least the time until max-unauth more arrive, which a real node's
 * handshake (one round trip) needs, and taking it from the address holding
 * the most makes one address opening connections as fast as it can evict
 * its own, not another address's handshake in progress. */
static void evict_oldest(struct shoal_daemon *d)
{
    uint32_t held;
    uint32_t v = victim_of_most(d, &held);
    struct shoal_peer *old = d->unauth[v];
    uint64_t now = uv_now(&d->loop);

    dmn_forget_peer(d, old);
    d->evicted_total++;
    if (!d->evict_logged_ms || now - d->evict_logged_ms >= EVICT_LOG_MS) {
        LOG_W("peer %s closed: evicted, the oldest handshake of the address holding the "
              "most (%u of %u; max-unauth); %llu evicted since start, logged at most every %u s",
              shoal_peer_name(old), held, unauth_limit(d), (unsigned long long)d->evicted_total,
              EVICT_LOG_MS / 1000);
        d->evict_logged_ms = now ? now : 1;
    }
    shoal_peer_close(old, EVICTED, false);
}

/* An inbound HELLO is about to be checked: a captured HELLO passes, so
 * each source may have --hello-rate checked a second (each costs a
 * signature check, our answer and its signature); past that it is refused
 * unchecked, logged at most every EVICT_LOG_MS. */
const char *dmn_peer_before_hello(struct shoal_peer *p, void *user)
{
    struct shoal_daemon *d = user;
    uint64_t now = uv_now(&d->loop);

    if (shoal_srclimit_take(d->hello_budget, shoal_peer_source(p), now))
        return NULL;
    d->hello_refused_total++;
    if (!d->hello_logged_ms || now - d->hello_logged_ms >= EVICT_LOG_MS) {
        LOG_W("peer %s refused: more than %llu HELLOs a second from its address (hello-rate); "
              "%llu refused since start, %llu since the last such line, logged at most every "
              "%u s",
              shoal_peer_name(p), (unsigned long long)d->cfg->hello_rate,
              (unsigned long long)d->hello_refused_total,
              (unsigned long long)(d->hello_refused_total - d->hello_refused_logged),
              EVICT_LOG_MS / 1000);
        d->hello_logged_ms = now ? now : 1;
        d->hello_refused_logged = d->hello_refused_total;
    }
    return HELLO_BUSY;
}

const char *dmn_peer_on_hello(struct shoal_peer *p, void *user)
{
    struct shoal_daemon *d = user;
    const uint8_t *pk = shoal_session_peer_pk(shoal_peer_session(p));

    if (memcmp(pk, d->pk.pk, 32) == 0)
        return "connected to ourselves";
    /* A node dialled at a tracker's word must be the one it
     * named: else a tracker could point us at any service under any key. */
    for (uint32_t i = 0; i < d->ndials; i++) {
        if (d->dials[i].p == p && memcmp(d->dials[i].pk, pk, 32) != 0)
            return "not the node the tracker listed at this address";
    }
    for (size_t i = 0; i < d->cfg->peers.n; i++) {
        if (d->static_conn[i] == p) {
            memcpy(d->static_pk[i], pk, 32);
            d->static_pk_known[i] = true;
        }
    }
    if (is_banned(d, pk))
        return "node is banned here";
    /* Our own dials hold their slot from the start. */
    if (!shoal_peer_initiator(p) && counted_peers(d) >= peer_limit(d))
        return "connection limit reached";
    return NULL;
}

void dmn_peer_on_ready(struct shoal_peer *p, void *user)
{
    struct shoal_daemon *d = user;

    /* It leaves the handshake pool for a peer slot; others may have taken
     * the last one since its HELLO was let through. */
    if (unauth_remove(d, p) && counted_peers(d) > peer_limit(d)) {
        dmn_forget_peer(d, p);
        LOG_W("peer %s refused: connection limit (%u) reached", shoal_peer_name(p),
              peer_limit(d));
        shoal_peer_bye(p, "connection limit reached");
        return;
    }
    /* Only now, with its key proven. */
    if (shoal_keywatch_contains(d->deny, shoal_session_peer_pk(shoal_peer_session(p)))) {
        uint64_t now = uv_now(&d->loop);
        /* A revoked node may keep dialling: a line per 30 s, not per try. */
        if (!d->deny_logged_ms || now - d->deny_logged_ms >= 30000) {
            char more[48] = "";
            if (d->deny_quiet)
                snprintf(more, sizeof more, " (and %u more since the last such line)",
                         d->deny_quiet);
            LOG_W("peer %s refused: its node key is revoked here (deny-keys)%s",
                  shoal_peer_name(p), more);
            d->deny_logged_ms = now ? now : 1;
            d->deny_quiet = 0;
        } else {
            d->deny_quiet++;
        }
        dmn_forget_peer(d, p);
        shoal_peer_bye(p, "node key revoked");
        return;
    }
    /* Only now: until its HELLO_AUTH verified, the HELLO
     * may have been a replay (see known_pk). */
    if (duplicate_refused(d, p, shoal_session_peer_pk(shoal_peer_session(p)))) {
        dmn_forget_peer(d, p);
        LOG_I("peer %s refused: duplicate connection", shoal_peer_name(p));
        shoal_peer_bye(p, "duplicate connection");
        return;
    }
    for (uint32_t i = 0; i < d->nswarms; i++)
        shoal_swarm_peer_ready(d->swarms[i], p);
    dmn_want_manifests(d, p);
}

void dmn_peer_on_msg(struct shoal_peer *p, const struct shoal_msg *m, void *user)
{
    struct shoal_daemon *d = user;
    struct shoal_swarm *s;
    struct shoal_msg r;
    size_t mlen;

    switch (m->type) {
    case SHOAL_MSG_WANT_MANIFEST:
        s = dmn_find_swarm(d, m->u.want_manifest.manifest_id);
        if (s) {
            (void)shoal_swarm_signed(s, &mlen);
            dmn_want_manifest(d, p, m->u.want_manifest.manifest_id, mlen);
        }
        return;
    case SHOAL_MSG_MANIFEST_DATA:
        dmn_on_manifest_data(d, p, &m->u.manifest);
        return;
    case SHOAL_MSG_PONG:
        return;
    case SHOAL_MSG_BYE:
        /* The peer banned us for a chunk of ours that failed its hash
         * (shoal_peer passes on only such BYEs); it is closing. */
        s = dmn_find_swarm(d, m->u.bye.manifest_id);
        if (s && m->u.bye.has_chunk)
            shoal_swarm_chunk_disputed(s, p, m->u.bye.chunk_index);
        return;
    default:
        break;
    }
    for (uint32_t i = 0; i < d->nswarms; i++) {
        if (shoal_swarm_on_msg(d->swarms[i], p, m))
            return;
    }
    if (m->type == SHOAL_MSG_REQUEST) {
        memset(&r, 0, sizeof r);
        r.type = SHOAL_MSG_REJECT;
        r.u.reject.req_id = m->u.request.req_id;
        r.u.reject.reason = d->stopping ? SHOAL_REJECT_SHUTDOWN : SHOAL_REJECT_UNKNOWN;
        (void)shoal_peer_send(p, &r);
    }
}

void dmn_peer_on_close(struct shoal_peer *p, const char *reason, void *user)
{
    struct shoal_daemon *d = user;

    if (strcmp(reason, EVICTED) == 0 || strcmp(reason, HELLO_BUSY) == 0)
        LOG_D("peer %s closed: %s", shoal_peer_name(p), reason);
    else
        LOG_I("peer %s closed: %s", shoal_peer_name(p), reason);
    for (uint32_t i = 0; i < d->nswarms; i++)
        shoal_swarm_peer_gone(d->swarms[i], p);
    /* its manifest requests leave; others may go in its place */
    if (d->mfq && shoal_mfq_peer_gone(d->mfq, shoal_peer_id(p)) > 0)
        dmn_pump_manifests(d);
    dmn_forget_peer(d, p);
    for (size_t i = 0; i < d->cfg->peers.n; i++) {
        if (d->static_conn[i] == p)
            d->static_conn[i] = NULL;
    }
    for (uint32_t i = 0; i < d->ndials; i++) {
        if (d->dials[i].p == p)
            d->dials[i].p = NULL;
    }
}

/* A new inbound connection joins the handshake pool, not the peers: until
 * it authenticates it may be anyone, and must not hold a peer slot (the
 * limit is checked when its HELLO verifies). */
void dmn_on_connection(uv_stream_t *server, int status)
{
    struct shoal_daemon *d = server->data;
    struct shoal_peer *p = NULL;

    if (status < 0 || d->stopping)
        return;
    if (shoal_peer_accept(&p, &d->pctx, &d->pcb, d, server) != 0)
        return;
    if (d->nunauth >= unauth_limit(d))
        evict_oldest(d);
    d->unauth[d->nunauth++] = p;
    d->peers[d->npeers++] = p;
}

void dmn_dial_static(struct shoal_daemon *d)
{
    /* Peers refuse an expired credential: redialling them every
     * --reconnect-ms only filled both sides' logs (on_cred_timer says what
     * to do). Still tried now and then, doubling to 5 min, since a peer's
     * clock may be behind ours. */
    if (d->cred_expires && (uint64_t)time(NULL) >= d->cred_expires) {
        uint64_t now = uv_now(&d->loop);
        if (now < d->expired_dial_at)
            return;
        d->expired_dial_gap = d->expired_dial_gap ? d->expired_dial_gap * 2 : 10000;
        if (d->expired_dial_gap > 300000)
            d->expired_dial_gap = 300000;
        d->expired_dial_at = now + d->expired_dial_gap;
    }
    for (size_t i = 0; i < d->cfg->peers.n && !d->stopping; i++) {
        struct shoal_peer *p = NULL;
        if (d->static_conn[i] || counted_peers(d) >= peer_limit(d))
            continue;
        if (connected_to_addr(d, d->cfg->peers.v[i]))
            continue;
        if (d->static_pk_known[i] && is_banned(d, d->static_pk[i])) {
            if (!d->static_ban_said[i]) {
                char hex[17];
                dmn_hex8(hex, d->static_pk[i]);
                LOG_I("not redialling %s while node %s is banned", d->cfg->peers.v[i], hex);
                d->static_ban_said[i] = true;
            }
            continue;
        }
        d->static_ban_said[i] = false;
        if (shoal_peer_connect(&p, &d->pctx, &d->pcb, d, d->cfg->peers.v[i]) != 0)
            continue;
        d->static_conn[i] = p;
        d->peers[d->npeers++] = p;
    }
}

void dmn_on_redial(uv_timer_t *t)
{
    dmn_dial_static(t->data);
}

/* A tracker-listed node is dialled again after this long at least. */
#define DIAL_RETRY_MS 5000u


/* The remote node key once the peer proved it holds it (its HELLO_AUTH
 * verified), else NULL. A HELLO alone proves nothing: it travels in the
 * clear and anyone who saw one can replay it, so a connection still in its
 * handshake must not stand for its node (a replayed HELLO left waiting
 * would otherwise refuse or replace the node's real connections). */
static const uint8_t *known_pk(const struct shoal_peer *p)
{
    static const uint8_t zero[32];
    const struct shoal_session *ss = shoal_peer_session(p);
    const uint8_t *pk = ss && shoal_peer_ready(p) ? shoal_session_peer_pk(ss) : NULL;

    return pk && memcmp(pk, zero, 32) != 0 ? pk : NULL;
}

/*
 * Two nodes that dial each other at the same moment end up with two
 * connections. Both sides keep the same one without talking about it: the
 * one dialled by the node with the smaller key; between two connections
 * dialled by the same side the older stays. Returns true when |p| (whose
 * handshake as |pk| just completed) is the one to refuse; may close the
 * other.
 */
static bool duplicate_refused(struct shoal_daemon *d, struct shoal_peer *p, const uint8_t pk[32])
{
    for (uint32_t i = 0; i < d->npeers; i++) {
        struct shoal_peer *q = d->peers[i];
        const uint8_t *qpk = q == p ? NULL : known_pk(q);
        const uint8_t *pd, *qd;

        if (!qpk || memcmp(qpk, pk, 32) != 0)
            continue;
        if (shoal_peer_initiator(p) == shoal_peer_initiator(q))
            return true;
        pd = shoal_peer_initiator(p) ? d->pk.pk : pk;
        qd = shoal_peer_initiator(q) ? d->pk.pk : pk;
        if (memcmp(pd, qd, 32) > 0)
            return true;
        shoal_peer_close(q, "duplicate connection", true);
        return false;
    }
    return false;
}

static bool connected_to_addr(struct shoal_daemon *d, const char *addr)
{
    for (uint32_t i = 0; i < d->npeers; i++) {
        const struct shoal_session *ss = shoal_peer_session(d->peers[i]);
        if (known_pk(d->peers[i]) && strcmp(shoal_session_peer_addr(ss), addr) == 0)
            return true;
    }
    return false;
}

/* Dials node |pk| at |addr| unless we are connected or tried lately. */
void dmn_dial_node(struct shoal_daemon *d, const uint8_t pk[32], const char *addr)
{
    uint64_t now = uv_now(&d->loop);
    struct shoal_peer *p = NULL;
    struct dial *dl = NULL;
    uint32_t dialing = 0;

    if (d->stopping || memcmp(pk, d->pk.pk, 32) == 0 || is_banned(d, pk) ||
        counted_peers(d) >= peer_limit(d))
        return;
    /* Our own address, under another key: only a lying tracker lists it. */
    if (strcmp(addr, d->hello_addr) == 0 || strcmp(addr, d->listen_addr) == 0 ||
        strcmp(addr, d->pctx.local.listen_addr) == 0)
        return;
    for (uint32_t i = 0; i < d->npeers; i++) {
        const uint8_t *qpk = known_pk(d->peers[i]);
        if (qpk && memcmp(qpk, pk, 32) == 0)
            return;
    }
    /* One dial per address at a time, and each address at most every
     * DIAL_RETRY_MS whatever key it is listed under. */
    for (uint32_t i = 0; i < d->ndials; i++) {
        const struct dial *o = &d->dials[i];
        if (strcmp(o->addr, addr) == 0 && (o->p || now - o->last_ms < DIAL_RETRY_MS))
            return;
        dialing += o->p && !shoal_peer_ready(o->p);
    }
    if (dialing >= MAX_DIALING)
        return;
    for (uint32_t i = 0; i < d->ndials && !dl; i++) {
        if (memcmp(d->dials[i].pk, pk, 32) == 0)
            dl = &d->dials[i];
    }
    if (dl && (dl->p || now - dl->last_ms < DIAL_RETRY_MS))
        return;
    if (!dl) {
        /* Full: reuse the entry tried longest ago that is not connected. */
        if (d->ndials < MAX_DIALS) {
            dl = &d->dials[d->ndials++];
        } else {
            for (uint32_t i = 0; i < d->ndials; i++) {
                if (!d->dials[i].p && (!dl || d->dials[i].last_ms < dl->last_ms))
                    dl = &d->dials[i];
            }
            if (!dl)
                return;
        }
        memcpy(dl->pk, pk, 32);
    }
    snprintf(dl->addr, sizeof dl->addr, "%s", addr);
    dl->last_ms = now;
    if (shoal_peer_connect(&p, &d->pctx, &d->pcb, d, addr) != 0)
        return;
    dl->p = p;
    d->peers[d->npeers++] = p;
}
