/* SPDX-License-Identifier: MIT */
/*
 * Per-release exchange (see swarm.h): feeds the pure scheduler, carries out
 * its REQUEST/CANCEL decisions over peer connections, verifies and stores
 * received chunks on worker threads, and serves chunks from the store.
 */
#include "swarm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "hash.h"
#include "nodelog.h"
#include "sched.h"
#include "store.h"

#define TICK_MS 100u
#define MAX_INFLIGHT SHOAL_SCHED_DEPTH_MAX
#define MAX_SWARM_PEERS SHOAL_SCHED_PEERS_MAX

struct req {
    uint32_t req_id;
    uint32_t chunk;
    uint64_t sent_ms;
};

/* Our state with one peer for this release. */
struct speer {
    struct shoal_peer *p;
    uint64_t id;
    bool joined;       /* in the scheduler (its bitfield arrived) */
    bool sent_bf;      /* we sent our bitfield on this connection */
    uint32_t nreq;
    struct req req[MAX_INFLIGHT];
    uint32_t serving;  /* its requests being read from the store */
};

/* A received chunk on its way through the store (worker thread). */
struct verify_job {
    uv_work_t w;
    struct shoal_swarm *s;
    uint64_t peer_id;
    uint32_t chunk;
    uint8_t *data;
    uint32_t len;
    uint64_t sent_ms;
    int rv;
};

/* A chunk being read for a peer (worker thread). */
struct serve_job {
    uv_work_t w;
    struct shoal_swarm *s;
    struct serve_job *next;  /* in s->serving */
    uint64_t peer_id;
    uint32_t req_id;
    uint32_t chunk;
    bool cancelled;
    uint8_t *buf;
    int rv;
};

struct shoal_swarm {
    const struct shoal_swarm_cfg *cfg;
    const struct shoal_swarm_hooks *hooks;
    struct shoal_manifest *m;
    uint8_t *signed_mf;
    size_t signed_len;
    struct shoal_store *store;
    struct shoal_sched *sched;
    uint32_t nchunks;
    uv_timer_t tick;
    bool started, stopped, complete;
    unsigned pending;          /* worker jobs outstanding */
    struct speer *peers[MAX_SWARM_PEERS];
    uint32_t npeers;
    struct serve_job *serving;
    uint64_t start_ms;
    uint64_t rx_bytes, tx_bytes;
    uint32_t bad_chunks;
    char idhex[17];
};

static uint32_t next_req_id = 1;

static uint64_t now_ms(const struct shoal_swarm *s)
{
    return uv_now(s->cfg->loop);
}

const uint8_t *shoal_swarm_id(const struct shoal_swarm *s) { return shoal_manifest_id(s->m); }
const struct shoal_manifest *shoal_swarm_manifest(const struct shoal_swarm *s) { return s->m; }
bool shoal_swarm_complete(const struct shoal_swarm *s) { return s->complete; }
bool shoal_swarm_busy(const struct shoal_swarm *s) { return s->pending > 0; }

const uint8_t *shoal_swarm_signed(const struct shoal_swarm *s, size_t *len)
{
    *len = s->signed_len;
    return s->signed_mf;
}

static void on_file(void *user, uint32_t file, int status)
{
    struct shoal_swarm *s = user;
    const struct shoal_mf_file *f = shoal_manifest_file(s->m, file);

    /* Worker thread: only log. */
    if (status == 0)
        LOG_I("release %s: %s complete and verified (%llu bytes)", s->idhex, f->path,
              (unsigned long long)f->size);
    else
        LOG_E("release %s: %s failed its sha256 or could not be published: %s", s->idhex,
              f->path, shoal_strerror(status));
}

int shoal_swarm_new(struct shoal_swarm **out, const struct shoal_swarm_cfg *cfg,
                    const struct shoal_swarm_hooks *hooks, struct shoal_manifest *m,
                    const uint8_t *signed_mf, size_t len)
{
    struct shoal_swarm *s = calloc(1, sizeof *s);
    struct shoal_sched_config sc;
    struct shoal_sched_release rel;
    struct shoal_store_opts so;
    uint32_t *file_first = NULL, nf = 0;
    char err[512] = "";
    int rv;

    if (!s) {
        shoal_manifest_free(m);
        return -ENOMEM;
    }
    s->cfg = cfg;
    s->hooks = hooks;
    s->m = m;
    s->nchunks = shoal_manifest_nchunks(m);
    shoal_hex(s->idhex, shoal_manifest_id(m), 8);
    s->signed_mf = malloc(len);
    if (!s->signed_mf) {
        rv = -ENOMEM;
        goto fail;
    }
    memcpy(s->signed_mf, signed_mf, len);
    s->signed_len = len;

    memset(&so, 0, sizeof so);
    so.flags = cfg->store_flags;
    so.branch = "main";
    so.manifest = signed_mf;
    so.manifest_len = len;
    so.on_file = on_file;
    so.user = s;
    so.err = err;
    so.errlen = sizeof err;
    rv = shoal_store_open(&s->store, cfg->cache_dir, m, &so);
    if (rv != 0) {
        LOG_E("release %s (%s@%s): cannot open store: %s", s->idhex, shoal_manifest_repo_id(m),
              shoal_manifest_commit(m), err[0] ? err : shoal_strerror(rv));
        goto fail;
    }

    file_first = malloc(sizeof *file_first * (shoal_manifest_nfiles(m) + 1));
    if (!file_first) {
        rv = -ENOMEM;
        goto fail;
    }
    for (uint32_t i = 0; i < shoal_manifest_nfiles(m); i++) {
        const struct shoal_mf_file *f = shoal_manifest_file(m, i);
        if (f->nchunks)
            file_first[nf++] = f->first_chunk;
    }
    shoal_sched_config_default(&sc);
    sc.seed = cfg->seed;
    memset(&rel, 0, sizeof rel);
    rel.nchunks = s->nchunks;
    rel.total_bytes = shoal_manifest_total_size(m);
    rel.nfiles = nf;
    rel.file_first = file_first;
    if (s->nchunks > 0) {
        rv = shoal_sched_new(&s->sched, &sc, &rel);
        if (rv != 0) {
            LOG_E("release %s: scheduler refused the release: %s", s->idhex, shoal_strerror(rv));
            goto fail;
        }
        for (uint32_t i = 0; i < s->nchunks; i++) {
            if (shoal_store_has(s->store, i))
                shoal_sched_chunk_obtained(s->sched, 0, i);
        }
    }
    free(file_first);
    s->complete = shoal_store_complete(s->store);
    *out = s;
    return 0;
fail:
    free(file_first);
    shoal_store_free(s->store);
    free(s->signed_mf);
    shoal_manifest_free(s->m);
    free(s);
    return rv;
}

void shoal_swarm_free(struct shoal_swarm *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->npeers; i++)
        free(s->peers[i]);
    shoal_sched_free(s->sched);
    shoal_store_free(s->store);
    free(s->signed_mf);
    shoal_manifest_free(s->m);
    free(s);
}

int shoal_swarm_import_dir(struct shoal_swarm *s, const char *dir, uint32_t *imported)
{
    uint32_t done = 0, maxlen = shoal_manifest_params(s->m)->max_size;
    uint8_t *buf = malloc(maxlen ? maxlen : 1);
    int rv = 0;

    if (!buf)
        return -ENOMEM;
    for (uint32_t fi = 0; fi < shoal_manifest_nfiles(s->m) && rv == 0; fi++) {
        const struct shoal_mf_file *f = shoal_manifest_file(s->m, fi);
        char path[4096];
        int fd;

        snprintf(path, sizeof path, "%s/%s", dir, f->path);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            LOG_W("import %s: %s", path, strerror(errno));
            continue;
        }
        for (uint32_t k = 0; k < f->nchunks; k++) {
            uint32_t ci = f->first_chunk + k;
            const struct shoal_mf_chunk *c = shoal_manifest_chunk(s->m, ci);
            ssize_t n;
            if (shoal_store_has(s->store, ci))
                continue;
            n = pread(fd, buf, c->len, (off_t)c->offset);
            if (n != (ssize_t)c->len) {
                LOG_W("import %s: short read at offset %llu", path,
                      (unsigned long long)c->offset);
                break;
            }
            rv = shoal_store_put_chunk(s->store, ci, buf, c->len);
            if (rv == SHOAL_EBADHASH) {
                LOG_W("import %s: chunk %u at offset %llu does not match the manifest", path,
                      ci, (unsigned long long)c->offset);
                rv = 0;
                continue;
            }
            if (rv != 0)
                break;
            if (s->sched)
                shoal_sched_chunk_obtained(s->sched, 0, ci);
            done++;
        }
        close(fd);
    }
    free(buf);
    s->complete = shoal_store_complete(s->store);
    if (imported)
        *imported = done;
    if (rv == 0)
        rv = shoal_store_flush(s->store);
    return rv;
}

static struct speer *find_peer(struct shoal_swarm *s, uint64_t id)
{
    for (uint32_t i = 0; i < s->npeers; i++) {
        if (s->peers[i]->id == id)
            return s->peers[i];
    }
    return NULL;
}

static struct speer *get_peer(struct shoal_swarm *s, struct shoal_peer *p)
{
    struct speer *sp = find_peer(s, shoal_peer_id(p));

    if (sp || s->npeers >= MAX_SWARM_PEERS)
        return sp;
    sp = calloc(1, sizeof *sp);
    if (!sp)
        return NULL;
    sp->p = p;
    sp->id = shoal_peer_id(p);
    s->peers[s->npeers++] = sp;
    return sp;
}

static void send_bitfield(struct shoal_swarm *s, struct speer *sp)
{
    size_t nb = (s->nchunks + 7) / 8;
    uint8_t *bits = calloc(1, nb ? nb : 1);
    struct shoal_msg m;

    if (!bits)
        return;
    if (shoal_store_bitfield(s->store, bits, nb) >= 0) {
        memset(&m, 0, sizeof m);
        m.type = SHOAL_MSG_HAVE_BITFIELD;
        memcpy(m.u.have_bitfield.manifest_id, shoal_manifest_id(s->m), 32);
        m.u.have_bitfield.nchunks = s->nchunks;
        m.u.have_bitfield.bits.p = bits;
        m.u.have_bitfield.bits.len = (uint32_t)nb;
        if (shoal_peer_send(sp->p, &m) == 0)
            sp->sent_bf = true;
    }
    free(bits);
}

void shoal_swarm_peer_ready(struct shoal_swarm *s, struct shoal_peer *p)
{
    struct speer *sp = get_peer(s, p);
    if (sp && !sp->sent_bf)
        send_bitfield(s, sp);
}

static void drop_peer(struct shoal_swarm *s, struct speer *sp)
{
    for (uint32_t i = 0; i < s->npeers; i++) {
        if (s->peers[i] == sp) {
            s->peers[i] = s->peers[--s->npeers];
            break;
        }
    }
    if (sp->joined && s->sched)
        shoal_sched_peer_remove(s->sched, sp->id);
    for (struct serve_job *j = s->serving; j; j = j->next) {
        if (j->peer_id == sp->id)
            j->cancelled = true;
    }
    free(sp);
}

void shoal_swarm_peer_gone(struct shoal_swarm *s, struct shoal_peer *p)
{
    struct speer *sp = find_peer(s, shoal_peer_id(p));
    if (sp)
        drop_peer(s, sp);
}

static void pump(struct shoal_swarm *s);

static void send_have(struct shoal_swarm *s, uint32_t chunk)
{
    struct shoal_msg m;

    memset(&m, 0, sizeof m);
    m.type = SHOAL_MSG_HAVE;
    memcpy(m.u.have.manifest_id, shoal_manifest_id(s->m), 32);
    m.u.have.chunk_index = chunk;
    for (uint32_t i = 0; i < s->npeers; i++) {
        if (s->peers[i]->sent_bf)
            (void)shoal_peer_send(s->peers[i]->p, &m);
    }
}

static void check_complete(struct shoal_swarm *s)
{
    if (s->complete || !shoal_store_complete(s->store))
        return;
    s->complete = true;
    (void)shoal_store_flush(s->store);
    LOG_I("release %s (%s@%s) complete: %llu bytes, %llu received from peers in %.2f s",
          s->idhex, shoal_manifest_repo_id(s->m), shoal_manifest_commit(s->m),
          (unsigned long long)shoal_manifest_total_size(s->m),
          (unsigned long long)s->rx_bytes, (double)(now_ms(s) - s->start_ms) / 1000.0);
    if (s->hooks->on_complete)
        s->hooks->on_complete(s->hooks->user, s);
}

/* Takes |sp| out of scheduling before the owner bans and closes it, so
 * nothing more is requested from it while it closes. */
static void ban_peer(struct shoal_swarm *s, struct speer *sp, const char *why)
{
    s->bad_chunks++;
    if (sp->joined && s->sched)
        shoal_sched_peer_remove(s->sched, sp->id);
    sp->joined = false;
    sp->nreq = 0;
    /* Several bad chunks may be in flight: ban and close only once. */
    if (s->hooks->on_ban && shoal_peer_ready(sp->p))
        s->hooks->on_ban(s->hooks->user, sp->p, why);
}

/* ---- receiving chunks ---- */

static void verify_work(uv_work_t *w)
{
    struct verify_job *j = w->data;
    j->rv = shoal_store_put_chunk(j->s->store, j->chunk, j->data, j->len);
}

static void verify_done(uv_work_t *w, int status)
{
    struct verify_job *j = w->data;
    struct shoal_swarm *s = j->s;
    struct speer *sp = find_peer(s, j->peer_id);
    uint64_t now = now_ms(s);

    s->pending--;
    if (status == 0 && j->rv == 0) {
        s->rx_bytes += j->len;
        if (sp && sp->joined)
            shoal_sched_req_done(s->sched, now, j->peer_id, j->chunk, j->len,
                                 now > j->sent_ms ? now - j->sent_ms : 1);
        else
            shoal_sched_chunk_obtained(s->sched, now, j->chunk);
        if (!s->stopped)
            send_have(s, j->chunk);
        check_complete(s);
    } else {
        int rv = status ? status : j->rv;
        if (sp && sp->joined)
            shoal_sched_req_failed(s->sched, now, j->peer_id, j->chunk, false);
        if (rv == SHOAL_EBADHASH) {
            char why[160];
            snprintf(why, sizeof why, "sent chunk %u of release %s that fails its hash",
                     j->chunk, s->idhex);
            if (sp)
                ban_peer(s, sp, why);
            else
                s->bad_chunks++;
        } else if (rv != SHOAL_EBUSY) {
            char err[512];
            shoal_store_last_error(s->store, err, sizeof err);
            LOG_E("release %s: storing chunk %u failed: %s (%s)", s->idhex, j->chunk,
                  shoal_strerror(rv), err);
        }
    }
    free(j->data);
    free(j);
    if (!s->stopped)
        pump(s);
}

static struct req *take_req(struct speer *sp, uint32_t req_id, struct req *out)
{
    for (uint32_t i = 0; i < sp->nreq; i++) {
        if (sp->req[i].req_id == req_id) {
            *out = sp->req[i];
            sp->req[i] = sp->req[--sp->nreq];
            return out;
        }
    }
    return NULL;
}

static bool handle_chunk(struct shoal_swarm *s, struct speer *sp, const struct shoal_msg_chunk *c)
{
    const struct shoal_mf_chunk *mc;
    struct verify_job *j;
    struct req r;

    if (!take_req(sp, c->req_id, &r))
        return false;
    mc = shoal_manifest_chunk(s->m, r.chunk);
    if (c->codec != SHOAL_CODEC_RAW || c->payload.len != mc->len ||
        memcmp(c->chunk_id, mc->id, 32) != 0) {
        char why[160];
        shoal_sched_req_failed(s->sched, now_ms(s), sp->id, r.chunk, false);
        snprintf(why, sizeof why, "answered request for chunk %u of %s with another chunk",
                 r.chunk, s->idhex);
        ban_peer(s, sp, why);
        return true;
    }
    j = calloc(1, sizeof *j);
    if (j)
        j->data = malloc(mc->len);
    if (!j || !j->data) {
        free(j);
        shoal_sched_req_failed(s->sched, now_ms(s), sp->id, r.chunk, true);
        return true;
    }
    /* The payload lives in the frame buffer only during this callback. */
    memcpy(j->data, c->payload.p, mc->len);
    j->w.data = j;
    j->s = s;
    j->peer_id = sp->id;
    j->chunk = r.chunk;
    j->len = mc->len;
    j->sent_ms = r.sent_ms;
    if (uv_queue_work(s->cfg->loop, &j->w, verify_work, verify_done) != 0) {
        free(j->data);
        free(j);
        shoal_sched_req_failed(s->sched, now_ms(s), sp->id, r.chunk, true);
        return true;
    }
    s->pending++;
    return true;
}

/* ---- serving chunks ---- */

static void serve_work(uv_work_t *w)
{
    struct serve_job *j = w->data;
    const struct shoal_mf_chunk *c = shoal_manifest_chunk(j->s->m, j->chunk);

    j->buf = malloc(c->len);
    if (!j->buf) {
        j->rv = -ENOMEM;
        return;
    }
    j->rv = shoal_store_read_chunk(j->s->store, j->chunk, j->buf, c->len);
}

static void send_reject(struct speer *sp, uint32_t req_id, uint8_t reason, uint32_t retry_ms)
{
    struct shoal_msg m;
    memset(&m, 0, sizeof m);
    m.type = SHOAL_MSG_REJECT;
    m.u.reject.req_id = req_id;
    m.u.reject.reason = reason;
    m.u.reject.retry_after_ms = retry_ms;
    (void)shoal_peer_send(sp->p, &m);
}

static void serve_done(uv_work_t *w, int status)
{
    struct serve_job *j = w->data, **pp;
    struct shoal_swarm *s = j->s;
    struct speer *sp = find_peer(s, j->peer_id);
    const struct shoal_mf_chunk *c = shoal_manifest_chunk(s->m, j->chunk);
    struct shoal_msg_chunk cm;

    s->pending--;
    for (pp = &s->serving; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    }
    if (sp)
        sp->serving--;
    if (!sp || j->cancelled || s->stopped) {
        free(j->buf);
    } else if (status != 0 || j->rv < 0) {
        free(j->buf);
        LOG_W("release %s: cannot read chunk %u for peer %s: %s", s->idhex, j->chunk,
              shoal_peer_name(sp->p), shoal_strerror(status ? status : j->rv));
        send_reject(sp, j->req_id, SHOAL_REJECT_UNKNOWN, 0);
    } else {
        if (s->cfg->corrupt_uploads)
            j->buf[c->len / 2] ^= 0x5a;
        memset(&cm, 0, sizeof cm);
        cm.req_id = j->req_id;
        memcpy(cm.chunk_id, c->id, 32);
        cm.codec = SHOAL_CODEC_RAW;
        cm.raw_len = c->len;
        cm.payload.len = c->len;
        if (shoal_peer_send_chunk(sp->p, &cm, j->buf) == 0)
            s->tx_bytes += c->len;
    }
    free(j);
}

static void handle_request(struct shoal_swarm *s, struct speer *sp,
                           const struct shoal_msg_request *r)
{
    const struct shoal_mf_chunk *c = shoal_manifest_chunk(s->m, r->chunk_index);
    uint32_t cap = s->cfg->serve_per_peer ? s->cfg->serve_per_peer : 16;
    struct serve_job *j;

    if (!c || memcmp(c->id, r->chunk_id, 32) != 0 || !shoal_store_has(s->store, r->chunk_index)) {
        send_reject(sp, r->req_id, SHOAL_REJECT_UNKNOWN, 0);
        return;
    }
    if (s->stopped) {
        send_reject(sp, r->req_id, SHOAL_REJECT_SHUTDOWN, 0);
        return;
    }
    if (sp->serving >= cap || shoal_peer_queued(sp->p) > (32u << 20)) {
        send_reject(sp, r->req_id, SHOAL_REJECT_BUSY, 50);
        return;
    }
    j = calloc(1, sizeof *j);
    if (!j) {
        send_reject(sp, r->req_id, SHOAL_REJECT_BUSY, 100);
        return;
    }
    j->w.data = j;
    j->s = s;
    j->peer_id = sp->id;
    j->req_id = r->req_id;
    j->chunk = r->chunk_index;
    if (uv_queue_work(s->cfg->loop, &j->w, serve_work, serve_done) != 0) {
        free(j);
        send_reject(sp, r->req_id, SHOAL_REJECT_BUSY, 100);
        return;
    }
    j->next = s->serving;
    s->serving = j;
    sp->serving++;
    s->pending++;
}

/* ---- scheduling ---- */

static void do_request(struct shoal_swarm *s, const struct shoal_sched_action *a)
{
    struct speer *sp = find_peer(s, a->peer);
    const struct shoal_mf_chunk *c = shoal_manifest_chunk(s->m, a->chunk);
    struct shoal_msg m;
    int rv = -EPIPE;

    if (sp && sp->nreq < MAX_INFLIGHT) {
        memset(&m, 0, sizeof m);
        m.type = SHOAL_MSG_REQUEST;
        m.u.request.req_id = next_req_id++;
        memcpy(m.u.request.manifest_id, shoal_manifest_id(s->m), 32);
        m.u.request.chunk_index = a->chunk;
        memcpy(m.u.request.chunk_id, c->id, 32);
        rv = shoal_peer_send(sp->p, &m);
        if (rv == 0) {
            sp->req[sp->nreq].req_id = m.u.request.req_id;
            sp->req[sp->nreq].chunk = a->chunk;
            sp->req[sp->nreq].sent_ms = now_ms(s);
            sp->nreq++;
        }
    }
    if (rv != 0)
        shoal_sched_req_failed(s->sched, now_ms(s), a->peer, a->chunk, true);
}

static void do_cancel(struct shoal_swarm *s, const struct shoal_sched_action *a)
{
    struct speer *sp = find_peer(s, a->peer);
    struct shoal_msg m;

    if (!sp)
        return;
    for (uint32_t i = 0; i < sp->nreq; i++) {
        if (sp->req[i].chunk == a->chunk) {
            memset(&m, 0, sizeof m);
            m.type = SHOAL_MSG_CANCEL;
            m.u.cancel.req_id = sp->req[i].req_id;
            (void)shoal_peer_send(sp->p, &m);
            sp->req[i] = sp->req[--sp->nreq];
            return;
        }
    }
}

static void pump(struct shoal_swarm *s)
{
    struct shoal_sched_action a[64];
    size_t n;

    if (!s->sched || s->complete || s->stopped || !s->started)
        return;
    do {
        n = shoal_sched_next(s->sched, now_ms(s), a, 64);
        for (size_t i = 0; i < n; i++) {
            switch (a[i].type) {
            case SHOAL_SCHED_REQUEST: do_request(s, &a[i]); break;
            case SHOAL_SCHED_CANCEL: do_cancel(s, &a[i]); break;
            case SHOAL_SCHED_LEASE_REQUEST:
                /* No tracker client yet: the origin is not reachable, so the
                 * scheduler retries after its lease back-off. */
                shoal_sched_lease_failed(s->sched, now_ms(s));
                break;
            default: break;
            }
        }
    } while (n == 64);
}

static void expire_requests(struct shoal_swarm *s)
{
    uint64_t now = now_ms(s);
    uint32_t limit = s->cfg->request_timeout_ms ? s->cfg->request_timeout_ms : 30000;

    for (uint32_t i = 0; i < s->npeers; i++) {
        struct speer *sp = s->peers[i];
        for (uint32_t k = 0; k < sp->nreq;) {
            if (now - sp->req[k].sent_ms > limit) {
                LOG_W("release %s: peer %s did not answer request for chunk %u in %u ms",
                      s->idhex, shoal_peer_name(sp->p), sp->req[k].chunk, limit);
                shoal_sched_req_failed(s->sched, now, sp->id, sp->req[k].chunk, false);
                sp->req[k] = sp->req[--sp->nreq];
            } else {
                k++;
            }
        }
    }
}

static void tick(uv_timer_t *t)
{
    struct shoal_swarm *s = t->data;
    if (s->sched && !s->complete)
        expire_requests(s);
    pump(s);
}

int shoal_swarm_start(struct shoal_swarm *s)
{
    int rv;
    if (s->started)
        return 0;
    rv = uv_timer_init(s->cfg->loop, &s->tick);
    if (rv != 0)
        return rv;
    s->tick.data = s;
    s->started = true;
    s->start_ms = now_ms(s);
    uv_timer_start(&s->tick, tick, TICK_MS, TICK_MS);
    if (s->complete)
        LOG_I("release %s (%s@%s) is complete here: seeding", s->idhex,
              shoal_manifest_repo_id(s->m), shoal_manifest_commit(s->m));
    return 0;
}

void shoal_swarm_stop(struct shoal_swarm *s)
{
    if (s->stopped)
        return;
    s->stopped = true;
    if (s->started && !uv_is_closing((uv_handle_t *)&s->tick))
        uv_close((uv_handle_t *)&s->tick, NULL);
    (void)shoal_store_flush(s->store);
}

/* ---- messages ---- */

static uint8_t bitrev(uint8_t b)
{
    b = (uint8_t)((b & 0xf0) >> 4 | (b & 0x0f) << 4);
    b = (uint8_t)((b & 0xcc) >> 2 | (b & 0x33) << 2);
    return (uint8_t)((b & 0xaa) >> 1 | (b & 0x55) << 1);
}

static void handle_bitfield(struct shoal_swarm *s, struct speer *sp,
                            const struct shoal_msg_have_bitfield *bf)
{
    uint8_t *bits;
    bool first = !sp->joined;

    if (bf->nchunks != s->nchunks) {
        LOG_W("peer %s: bitfield for %s has %u chunks, manifest has %u; ignored",
              shoal_peer_name(sp->p), s->idhex, bf->nchunks, s->nchunks);
        return;
    }
    if (!s->sched || s->stopped)
        return;
    if (!sp->joined) {
        const char *pz = shoal_session_peer_zone(shoal_peer_session(sp->p));
        int rv = shoal_sched_peer_add(s->sched, sp->id, strcmp(pz, s->cfg->zone) == 0, 1);
        if (rv != 0)
            return;
        sp->joined = true;
    }
    /* The wire is most-significant-bit first, the scheduler least. */
    bits = malloc(bf->bits.len ? bf->bits.len : 1);
    if (!bits)
        return;
    for (uint32_t i = 0; i < bf->bits.len; i++)
        bits[i] = bitrev(bf->bits.p[i]);
    shoal_sched_peer_bitfield(s->sched, sp->id, bits, bf->bits.len);
    free(bits);
    /* The first bitfield from a peer is answered with ours, once, so a
     * release opened after the connection still gets both sides talking. */
    if (first)
        send_bitfield(s, sp);
    pump(s);
}

bool shoal_swarm_on_msg(struct shoal_swarm *s, struct shoal_peer *p, const struct shoal_msg *m)
{
    const uint8_t *id = shoal_manifest_id(s->m);
    struct speer *sp;

    switch (m->type) {
    case SHOAL_MSG_HAVE_BITFIELD:
        if (memcmp(m->u.have_bitfield.manifest_id, id, 32) != 0)
            return false;
        sp = get_peer(s, p);
        if (sp)
            handle_bitfield(s, sp, &m->u.have_bitfield);
        return true;
    case SHOAL_MSG_HAVE:
        if (memcmp(m->u.have.manifest_id, id, 32) != 0)
            return false;
        sp = find_peer(s, shoal_peer_id(p));
        if (sp && sp->joined && m->u.have.chunk_index < s->nchunks) {
            shoal_sched_peer_have(s->sched, sp->id, m->u.have.chunk_index);
            pump(s);
        }
        return true;
    case SHOAL_MSG_REQUEST:
        if (memcmp(m->u.request.manifest_id, id, 32) != 0)
            return false;
        sp = get_peer(s, p);
        if (sp)
            handle_request(s, sp, &m->u.request);
        return true;
    case SHOAL_MSG_CHUNK:
        sp = find_peer(s, shoal_peer_id(p));
        return sp && handle_chunk(s, sp, &m->u.chunk);
    case SHOAL_MSG_REJECT: {
        struct req r;
        sp = find_peer(s, shoal_peer_id(p));
        if (!sp || !take_req(sp, m->u.reject.req_id, &r))
            return false;
        shoal_sched_req_failed(s->sched, now_ms(s), sp->id, r.chunk,
                               m->u.reject.reason == SHOAL_REJECT_BUSY ||
                                   m->u.reject.reason == SHOAL_REJECT_RATE_LIMITED);
        pump(s);
        return true;
    }
    case SHOAL_MSG_CANCEL:
        for (struct serve_job *j = s->serving; j; j = j->next) {
            if (j->peer_id == shoal_peer_id(p) && j->req_id == m->u.cancel.req_id) {
                j->cancelled = true;
                return true;
            }
        }
        return false;
    default:
        return false;
    }
}

void shoal_swarm_stats(const struct shoal_swarm *s, struct shoal_swarm_stats *st)
{
    memset(st, 0, sizeof *st);
    st->nchunks = s->nchunks;
    st->have_chunks = shoal_store_count(s->store);
    st->total_bytes = shoal_manifest_total_size(s->m);
    st->have_bytes = shoal_store_bytes(s->store);
    st->rx_chunk_bytes = s->rx_bytes;
    st->tx_chunk_bytes = s->tx_bytes;
    st->bad_chunks = s->bad_chunks;
    for (uint32_t i = 0; i < s->npeers; i++) {
        st->peers += s->peers[i]->joined;
        st->inflight += s->peers[i]->nreq;
    }
}
