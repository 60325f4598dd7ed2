/* SPDX-License-Identifier: MIT */
/*
 * The control socket (see ctl.h): its messages' strict codec, the Prometheus
 * text, and the server on the daemon's loop that answers the `shoal` CLI and
 * streams pull progress.
 */
#include "ctl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "error.h"
#include "frame.h"
#include "mp.h"
#include "msg.h"
#include "sockpath.h"

#define RELEASE_FIELDS 13u
#define PEER_FIELDS 10u
#define TICK_MS 500u
#define MAX_CLIENTS 32u
/* Reply bytes a client may have queued (counted as allocated, with the
 * write request): while it holds this much, its requests are not read,
 * so a client that asks and never reads holds at most this plus one reply
 * (up to SHOAL_CTL_FRAME_MAX, a metrics text). Replies are a few KiB; the
 * largest, status of 64 releases or peers of 256, are ~100 KiB. */
#define CLIENT_QUEUE_MAX (256u << 10)
/* malloc's own bytes per block, roughly. */
#define ALLOC_OVERHEAD 32u

/* ---- codec ---- */

/* Text for people: well-formed UTF-8 with no control characters (no
 * terminal escapes from a socket), except newlines where |nl| allows. */
static bool text_ok(const char *str, uint32_t n, bool nl)
{
    const uint8_t *s = (const uint8_t *)str;
    uint32_t i = 0;

    while (i < n) {
        uint8_t c = s[i];
        uint32_t extra, cp, min;
        if (c < 0x80) {
            if ((c < 0x20 && !(nl && c == '\n')) || c == 0x7f)
                return false;
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0)
            extra = 1, cp = c & 0x1fu, min = 0x80;
        else if ((c & 0xf0) == 0xe0)
            extra = 2, cp = c & 0x0fu, min = 0x800;
        else if ((c & 0xf8) == 0xf0)
            extra = 3, cp = c & 0x07u, min = 0x10000;
        else
            return false;
        if (extra > n - i - 1)
            return false;
        for (uint32_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += 1 + extra;
    }
    return true;
}

/* A str of at most |max| bytes, checked and copied NUL-terminated into
 * |dst| (|max| + 1 bytes). */
static int read_text(struct shoal_mpr *r, char *dst, uint32_t max, bool nonempty)
{
    struct shoal_mpr save = *r;
    const char *s;
    uint32_t n;
    int rv = shoal_mpr_str(r, &s, &n, max);

    if (rv == 0 && ((nonempty && n == 0) || !text_ok(s, n, false))) {
        *r = save;
        rv = SHOAL_EBADMSG;
    }
    if (rv == 0) {
        memcpy(dst, s, n);
        dst[n] = '\0';
    }
    return rv;
}

static int read_bool(struct shoal_mpr *r, bool *v) { return shoal_mpr_bool(r, v); }

static int read_u32(struct shoal_mpr *r, uint32_t *v)
{
    uint64_t x;
    int rv = shoal_mpr_uint(r, &x, UINT32_MAX);
    if (rv == 0)
        *v = (uint32_t)x;
    return rv;
}

static int read_u64(struct shoal_mpr *r, uint64_t *v)
{
    return shoal_mpr_uint(r, v, UINT64_MAX);
}

/* Opens an array of |want| fields, allowing up to SHOAL_MSG_EXTRA_MAX more
 * (a newer sender); |*extra| gets how many to skip after the known ones. */
static int open_array(struct shoal_mpr *r, uint32_t want, uint32_t *extra)
{
    uint32_t n;
    int rv = shoal_mpr_array(r, &n, want + SHOAL_MSG_EXTRA_MAX);

    if (rv == 0 && n < want)
        rv = SHOAL_EPROTO;
    if (rv == 0)
        *extra = n - want;
    return rv;
}

static int skip_extra(struct shoal_mpr *r, uint32_t extra)
{
    int rv = 0;
    for (uint32_t i = 0; i < extra && rv == 0; i++)
        rv = shoal_mpr_skip(r, 8);
    return rv;
}

static int read_release(struct shoal_mpr *r, struct shoal_ctl_release *v)
{
    uint32_t extra;
    int rv = open_array(r, RELEASE_FIELDS, &extra);

    memset(v, 0, sizeof *v);
    if (rv == 0) {
        if (shoal_mpr_peek_nil(r)) {
            rv = shoal_mpr_nil(r);
        } else {
            v->has_id = true;
            rv = shoal_mpr_bin_exact(r, v->id, 32);
        }
    }
    if (rv == 0)
        rv = read_text(r, v->name, SHOAL_CTL_RELEASE_MAX, true);
    if (rv == 0) {
        uint64_t st;
        rv = shoal_mpr_uint(r, &st, SHOAL_CTL_FAILED);
        v->state = (uint8_t)st;
    }
    if (rv == 0)
        rv = read_u64(r, &v->have_bytes);
    if (rv == 0)
        rv = read_u64(r, &v->total_bytes);
    if (rv == 0)
        rv = read_u32(r, &v->have_chunks);
    if (rv == 0)
        rv = read_u32(r, &v->nchunks);
    if (rv == 0)
        rv = read_u64(r, &v->rate_bps);
    if (rv == 0)
        rv = read_u32(r, &v->peers);
    if (rv == 0)
        rv = read_u64(r, &v->peer_bytes);
    if (rv == 0)
        rv = read_u64(r, &v->origin_bytes);
    if (rv == 0)
        rv = read_u64(r, &v->eta_ms);
    if (rv == 0)
        rv = read_u64(r, &v->elapsed_ms);
    /* Added after the first release of the CLI: optional. */
    if (rv == 0 && extra > 0) {
        rv = read_text(r, v->error, SHOAL_CTL_REASON_MAX, false);
        extra--;
    }
    if (rv == 0 && extra > 0) {
        rv = read_text(r, v->branch, SHOAL_CTL_BRANCH_MAX, false);
        extra--;
    }
    if (rv == 0 && extra > 0) {
        rv = read_u32(r, &v->flags);
        extra--;
    }
    if (rv == 0)
        rv = skip_extra(r, extra);
    if (rv == 0 && (v->have_bytes > v->total_bytes || v->have_chunks > v->nchunks))
        rv = SHOAL_EBADMSG;
    return rv;
}

static int read_peer(struct shoal_mpr *r, struct shoal_ctl_peer *v)
{
    uint32_t extra;
    int rv = open_array(r, PEER_FIELDS, &extra);

    memset(v, 0, sizeof *v);
    if (rv == 0)
        rv = shoal_mpr_bin_exact(r, v->node_pk, 32);
    if (rv == 0)
        rv = read_text(r, v->addr, SHOAL_CTL_ADDR_MAX, false);
    if (rv == 0)
        rv = read_text(r, v->zone, SHOAL_CTL_ZONE_MAX, false);
    if (rv == 0)
        rv = read_text(r, v->cipher, SHOAL_CTL_CIPHER_MAX, false);
    if (rv == 0)
        rv = read_bool(r, &v->initiator);
    if (rv == 0)
        rv = read_u64(r, &v->rx_bytes);
    if (rv == 0)
        rv = read_u64(r, &v->tx_bytes);
    if (rv == 0)
        rv = read_u64(r, &v->rx_bps);
    if (rv == 0)
        rv = read_u64(r, &v->tx_bps);
    if (rv == 0)
        rv = read_u64(r, &v->conn_id);
    /* Added after the first release of the CLI: optional. */
    if (rv == 0 && extra > 0) {
        rv = read_u32(r, &v->rtt_us);
        extra--;
    }
    if (rv == 0)
        rv = skip_extra(r, extra);
    return rv;
}

/* Fields after the type, per message type; -1 for an unknown type. */
static int nfields(uint32_t type)
{
    switch (type) {
    case SHOAL_CTL_PULL: return 2;
    case SHOAL_CTL_PROGRESS: return 1;
    case SHOAL_CTL_ERROR: return 2;
    case SHOAL_CTL_STATUS: return 1;
    case SHOAL_CTL_PEERS: return 1;
    case SHOAL_CTL_METRICS: return 1;
    case SHOAL_CTL_DROP: return 1;
    case SHOAL_CTL_DROPPED: return 2;
    case SHOAL_CTL_STATUS_REQ:
    case SHOAL_CTL_PEERS_REQ:
    case SHOAL_CTL_METRICS_REQ: return 0;
    default: return -1;
    }
}

int shoal_ctl_decode(struct shoal_ctl_msg *m, const uint8_t *body, size_t len)
{
    struct shoal_mpr r;
    uint32_t n, extra = 0;
    uint64_t type;
    int64_t code;
    int want, rv;

    shoal_mpr_init(&r, body, len);
    rv = shoal_mpr_array(&r, &n, 1 + 2 + SHOAL_MSG_EXTRA_MAX);
    if (rv == 0 && n < 1)
        rv = SHOAL_EPROTO;
    if (rv == 0)
        rv = shoal_mpr_uint(&r, &type, UINT32_MAX);
    if (rv != 0)
        return rv;
    want = nfields((uint32_t)type);
    if (want < 0 || n - 1 < (uint32_t)want)
        return SHOAL_EPROTO;
    if (n - 1 - (uint32_t)want > SHOAL_MSG_EXTRA_MAX)
        return SHOAL_ETOOBIG;
    extra = n - 1 - (uint32_t)want;
    m->type = (uint32_t)type;
    switch (m->type) {
    case SHOAL_CTL_PULL:
        rv = read_text(&r, m->u.pull.release, SHOAL_CTL_RELEASE_MAX, true);
        if (rv == 0)
            rv = read_bool(&r, &m->u.pull.follow);
        break;
    case SHOAL_CTL_PROGRESS:
        rv = read_release(&r, &m->u.progress);
        break;
    case SHOAL_CTL_ERROR:
        rv = shoal_mpr_int(&r, &code);
        if (rv == 0 && (code < INT32_MIN || code > INT32_MAX))
            rv = SHOAL_ETOOBIG;
        if (rv == 0) {
            m->u.error.code = (int32_t)code;
            rv = read_text(&r, m->u.error.message, SHOAL_CTL_ERROR_MAX, false);
        }
        break;
    case SHOAL_CTL_STATUS:
        rv = shoal_mpr_array(&r, &m->u.status.count, SHOAL_CTL_RELEASES_MAX);
        for (uint32_t i = 0; rv == 0 && i < m->u.status.count; i++)
            rv = read_release(&r, &m->u.status.v[i]);
        /* Added later: optional. */
        m->u.status.nwarnings = 0;
        if (rv == 0 && extra > 0) {
            rv = shoal_mpr_array(&r, &m->u.status.nwarnings, SHOAL_CTL_WARNINGS_MAX);
            for (uint32_t i = 0; rv == 0 && i < m->u.status.nwarnings; i++)
                rv = read_text(&r, m->u.status.warnings[i], SHOAL_CTL_REASON_MAX, true);
            extra--;
        }
        break;
    case SHOAL_CTL_PEERS:
        rv = shoal_mpr_array(&r, &m->u.peers.count, SHOAL_CTL_PEERS_MAX);
        for (uint32_t i = 0; rv == 0 && i < m->u.peers.count; i++)
            rv = read_peer(&r, &m->u.peers.v[i]);
        break;
    case SHOAL_CTL_DROP:
        rv = read_text(&r, m->u.drop.release, SHOAL_CTL_RELEASE_MAX, true);
        break;
    case SHOAL_CTL_DROPPED:
        rv = read_text(&r, m->u.dropped.name, SHOAL_CTL_RELEASE_MAX, true);
        if (rv == 0)
            rv = read_text(&r, m->u.dropped.repo_dir, SHOAL_CTL_PATH_MAX, false);
        /* Added later: optional. */
        m->u.dropped.note[0] = '\0';
        if (rv == 0 && extra > 0) {
            rv = read_text(&r, m->u.dropped.note, SHOAL_CTL_REASON_MAX, false);
            extra--;
        }
        break;
    case SHOAL_CTL_METRICS:
        rv = shoal_mpr_str(&r, &m->u.metrics.text, &m->u.metrics.len, SHOAL_CTL_METRICS_MAX);
        if (rv == 0 && !text_ok(m->u.metrics.text, m->u.metrics.len, true))
            rv = SHOAL_EBADMSG;
        break;
    default:
        break;
    }
    if (rv == 0)
        rv = skip_extra(&r, extra);
    if (rv == 0 && shoal_mpr_left(&r) != 0)
        rv = SHOAL_EPROTO;
    return rv;
}

/* A NUL-terminated field of a struct that must fit its wire limit. */
static bool cstr_ok(const char *s, size_t max, bool nonempty)
{
    size_t n = strnlen(s, max + 1);
    return n <= max && (!nonempty || n > 0) && text_ok(s, (uint32_t)n, false);
}

static bool release_ok(const struct shoal_ctl_release *v)
{
    size_t n = strnlen(v->name, sizeof v->name);
    return n > 0 && n <= SHOAL_CTL_RELEASE_MAX && text_ok(v->name, (uint32_t)n, false) &&
           v->state <= SHOAL_CTL_FAILED && cstr_ok(v->error, SHOAL_CTL_REASON_MAX, false) &&
           cstr_ok(v->branch, SHOAL_CTL_BRANCH_MAX, false) &&
           v->have_bytes <= v->total_bytes &&
           v->have_chunks <= v->nchunks;
}

static void write_release(struct shoal_mpw *w, const struct shoal_ctl_release *v)
{
    shoal_mpw_array(w, RELEASE_FIELDS + 3);
    if (v->has_id)
        shoal_mpw_bin(w, v->id, 32);
    else
        shoal_mpw_nil(w);
    shoal_mpw_cstr(w, v->name);
    shoal_mpw_uint(w, v->state);
    shoal_mpw_uint(w, v->have_bytes);
    shoal_mpw_uint(w, v->total_bytes);
    shoal_mpw_uint(w, v->have_chunks);
    shoal_mpw_uint(w, v->nchunks);
    shoal_mpw_uint(w, v->rate_bps);
    shoal_mpw_uint(w, v->peers);
    shoal_mpw_uint(w, v->peer_bytes);
    shoal_mpw_uint(w, v->origin_bytes);
    shoal_mpw_uint(w, v->eta_ms);
    shoal_mpw_uint(w, v->elapsed_ms);
    shoal_mpw_cstr(w, v->error);
    shoal_mpw_cstr(w, v->branch);
    shoal_mpw_uint(w, v->flags);
}

static bool peer_ok(const struct shoal_ctl_peer *v)
{
    return cstr_ok(v->addr, SHOAL_CTL_ADDR_MAX, false) &&
           cstr_ok(v->zone, SHOAL_CTL_ZONE_MAX, false) &&
           cstr_ok(v->cipher, SHOAL_CTL_CIPHER_MAX, false);
}

static void write_peer(struct shoal_mpw *w, const struct shoal_ctl_peer *v)
{
    shoal_mpw_array(w, PEER_FIELDS + 1);
    shoal_mpw_bin(w, v->node_pk, 32);
    shoal_mpw_cstr(w, v->addr);
    shoal_mpw_cstr(w, v->zone);
    shoal_mpw_cstr(w, v->cipher);
    shoal_mpw_bool(w, v->initiator);
    shoal_mpw_uint(w, v->rx_bytes);
    shoal_mpw_uint(w, v->tx_bytes);
    shoal_mpw_uint(w, v->rx_bps);
    shoal_mpw_uint(w, v->tx_bps);
    shoal_mpw_uint(w, v->conn_id);
    shoal_mpw_uint(w, v->rtt_us);
}

/* Checks |m| against the decoder's rules. */
static int validate(const struct shoal_ctl_msg *m)
{
    switch (m->type) {
    case SHOAL_CTL_PULL:
        return cstr_ok(m->u.pull.release, SHOAL_CTL_RELEASE_MAX, true) ? 0 : SHOAL_EBADMSG;
    case SHOAL_CTL_PROGRESS:
        return release_ok(&m->u.progress) ? 0 : SHOAL_EBADMSG;
    case SHOAL_CTL_ERROR:
        return cstr_ok(m->u.error.message, SHOAL_CTL_ERROR_MAX, false) ? 0 : SHOAL_EBADMSG;
    case SHOAL_CTL_DROP:
        return cstr_ok(m->u.drop.release, SHOAL_CTL_RELEASE_MAX, true) ? 0 : SHOAL_EBADMSG;
    case SHOAL_CTL_DROPPED:
        return cstr_ok(m->u.dropped.name, SHOAL_CTL_RELEASE_MAX, true) &&
                       cstr_ok(m->u.dropped.repo_dir, SHOAL_CTL_PATH_MAX, false) &&
                       cstr_ok(m->u.dropped.note, SHOAL_CTL_REASON_MAX, false)
                   ? 0
                   : SHOAL_EBADMSG;
    case SHOAL_CTL_STATUS:
        if (m->u.status.count > SHOAL_CTL_RELEASES_MAX)
            return SHOAL_ETOOBIG;
        for (uint32_t i = 0; i < m->u.status.count; i++)
            if (!release_ok(&m->u.status.v[i]))
                return SHOAL_EBADMSG;
        if (m->u.status.nwarnings > SHOAL_CTL_WARNINGS_MAX)
            return SHOAL_ETOOBIG;
        for (uint32_t i = 0; i < m->u.status.nwarnings; i++)
            if (!cstr_ok(m->u.status.warnings[i], SHOAL_CTL_REASON_MAX, true))
                return SHOAL_EBADMSG;
        return 0;
    case SHOAL_CTL_PEERS:
        if (m->u.peers.count > SHOAL_CTL_PEERS_MAX)
            return SHOAL_ETOOBIG;
        for (uint32_t i = 0; i < m->u.peers.count; i++)
            if (!peer_ok(&m->u.peers.v[i]))
                return SHOAL_EBADMSG;
        return 0;
    case SHOAL_CTL_METRICS:
        if (m->u.metrics.len > SHOAL_CTL_METRICS_MAX)
            return SHOAL_ETOOBIG;
        return text_ok(m->u.metrics.text, m->u.metrics.len, true) ? 0 : SHOAL_EBADMSG;
    case SHOAL_CTL_STATUS_REQ:
    case SHOAL_CTL_PEERS_REQ:
    case SHOAL_CTL_METRICS_REQ:
        return 0;
    default:
        return SHOAL_EPROTO;
    }
}

/* Fields added after the first release, sent only when they say
 * something, so an older reader sees the message it knows. */
static uint32_t optional_fields(const struct shoal_ctl_msg *m)
{
    switch (m->type) {
    case SHOAL_CTL_DROPPED: return m->u.dropped.note[0] ? 1 : 0;
    case SHOAL_CTL_STATUS: return m->u.status.nwarnings > 0 ? 1 : 0;
    default: return 0;
    }
}

int shoal_ctl_encode(const struct shoal_ctl_msg *m, struct shoal_buf *out)
{
    size_t start = out->len;
    struct shoal_mpw w;
    uint8_t hdr[SHOAL_FRAME_HDR_LEN] = {0};
    int rv = validate(m);

    if (rv != 0)
        return rv;
    /* Room for the header first; it is filled in once the body's length
     * is known. */
    rv = shoal_buf_append(out, hdr, sizeof hdr);
    if (rv != 0)
        return rv;
    shoal_mpw_init(&w, out);
    shoal_mpw_array(&w, 1 + (uint32_t)nfields(m->type) + optional_fields(m));
    shoal_mpw_uint(&w, m->type);
    switch (m->type) {
    case SHOAL_CTL_PULL:
        shoal_mpw_cstr(&w, m->u.pull.release);
        shoal_mpw_bool(&w, m->u.pull.follow);
        break;
    case SHOAL_CTL_PROGRESS:
        write_release(&w, &m->u.progress);
        break;
    case SHOAL_CTL_ERROR:
        shoal_mpw_int(&w, m->u.error.code);
        shoal_mpw_cstr(&w, m->u.error.message);
        break;
    case SHOAL_CTL_STATUS:
        shoal_mpw_array(&w, m->u.status.count);
        for (uint32_t i = 0; i < m->u.status.count; i++)
            write_release(&w, &m->u.status.v[i]);
        if (m->u.status.nwarnings > 0) {
            shoal_mpw_array(&w, m->u.status.nwarnings);
            for (uint32_t i = 0; i < m->u.status.nwarnings; i++)
                shoal_mpw_cstr(&w, m->u.status.warnings[i]);
        }
        break;
    case SHOAL_CTL_PEERS:
        shoal_mpw_array(&w, m->u.peers.count);
        for (uint32_t i = 0; i < m->u.peers.count; i++)
            write_peer(&w, &m->u.peers.v[i]);
        break;
    case SHOAL_CTL_METRICS:
        shoal_mpw_str(&w, m->u.metrics.text, m->u.metrics.len);
        break;
    case SHOAL_CTL_DROP:
        shoal_mpw_cstr(&w, m->u.drop.release);
        break;
    case SHOAL_CTL_DROPPED:
        shoal_mpw_cstr(&w, m->u.dropped.name);
        shoal_mpw_cstr(&w, m->u.dropped.repo_dir);
        if (m->u.dropped.note[0])
            shoal_mpw_cstr(&w, m->u.dropped.note);
        break;
    default:
        break;
    }
    rv = w.err;
    if (rv == 0)
        rv = shoal_frame_header(out->data + start, out->len - start - SHOAL_FRAME_HDR_LEN);
    if (rv != 0)
        out->len = start;
    return rv;
}

/* ---- metrics ---- */

/* Prometheus label values escape backslash, quote and newline. */
static void label_escape(char *dst, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 3 < cap; s++) {
        if (*s == '\\' || *s == '"')
            dst[o++] = '\\';
        else if (*s == '\n') {
            dst[o++] = '\\';
            dst[o++] = 'n';
            continue;
        }
        dst[o++] = *s;
    }
    dst[o] = '\0';
}

static int put(struct shoal_buf *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int put(struct shoal_buf *out, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line)
        return SHOAL_ELIMIT;
    return shoal_buf_append(out, line, (size_t)n);
}

static int metric(struct shoal_buf *out, const char *name, const char *type, const char *help,
                  uint64_t v)
{
    int rv = put(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    if (rv == 0)
        rv = put(out, "%s %llu\n", name, (unsigned long long)v);
    return rv;
}

/* One gauge per release, labelled with its name; |total| picks total_bytes
 * over have_bytes. Nothing at all when there are no releases. */
static int release_gauge(struct shoal_buf *out, const char *name, const char *help,
                         const struct shoal_ctl_release *v, uint32_t n, bool total)
{
    char lbl[2 * SHOAL_CTL_RELEASE_MAX + 8];
    int rv = 0;

    if (n > 0)
        rv = put(out, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
    for (uint32_t i = 0; rv == 0 && i < n; i++) {
        label_escape(lbl, sizeof lbl, v[i].name);
        rv = put(out, "%s{release=\"%s\"} %llu\n", name, lbl,
                 (unsigned long long)(total ? v[i].total_bytes : v[i].have_bytes));
    }
    return rv;
}

int shoal_ctl_metrics_text(const struct shoal_ctl_metrics *m, const struct shoal_ctl_release *v,
                           uint32_t n, struct shoal_buf *out)
{
    /* The unlabelled ones, in the order they are written. */
    const struct {
        const char *name, *type, *help;
        uint64_t v;
    } plain[] = {
        {"shoal_served_bytes_total", "counter", "Chunk bytes sent to peers.", m->bytes_served},
        {"shoal_served_payload_bytes_total", "counter",
         "CHUNK payload bytes sent to peers, after compression.", m->bytes_served_payload},
        {"shoal_chunks_verified_total", "counter",
         "Chunks received from peers that matched their id.", m->chunks_verified},
        {"shoal_chunks_failed_total", "counter",
         "Chunks received that failed their id (or did not decode).", m->chunks_failed},
        {"shoal_upload_slots_busy_total", "counter",
         "Requests told busy because every upload slot was taken.", m->busy_slots},
        {"shoal_peers", "gauge", "Authenticated peer connections.", m->peers},
        {"shoal_bans_total", "counter", "Nodes banned since start.", m->bans_total},
        {"shoal_bans_active", "gauge", "Nodes banned right now.", m->bans_active},
        {"shoal_hello_refused_total", "counter",
         "HELLOs refused unchecked: their address was over --hello-rate.", m->hello_refused},
        {"shoal_handshake_evictions_total", "counter",
         "Connections in their handshake closed to make room for a new one (--max-unauth).",
         m->handshake_evictions},
        {"shoal_releases", "gauge", "Releases held or being pulled.", m->releases},
        {"shoal_releases_complete", "gauge", "Releases complete here.", m->releases_complete},
    };
    size_t start = out->len;
    int rv;

    rv = put(out, "# HELP shoal_received_bytes_total Verified chunk bytes received, by source.\n"
                  "# TYPE shoal_received_bytes_total counter\n"
                  "shoal_received_bytes_total{source=\"peers\"} %llu\n"
                  "shoal_received_bytes_total{source=\"origin\"} %llu\n",
             (unsigned long long)m->bytes_from_peers, (unsigned long long)m->bytes_from_origin);
    for (size_t i = 0; rv == 0 && i < sizeof plain / sizeof plain[0]; i++)
        rv = metric(out, plain[i].name, plain[i].type, plain[i].help, plain[i].v);
    if (rv == 0)
        rv = put(out, "# HELP shoal_peer_wire_bytes Frame bytes on the current peer connections.\n"
                      "# TYPE shoal_peer_wire_bytes gauge\n"
                      "shoal_peer_wire_bytes{direction=\"rx\"} %llu\n"
                      "shoal_peer_wire_bytes{direction=\"tx\"} %llu\n",
                 (unsigned long long)m->wire_rx_bytes, (unsigned long long)m->wire_tx_bytes);
    if (rv == 0)
        rv = metric(out, "shoal_trackers", "gauge", "Trackers configured.", m->trackers);
    if (rv == 0)
        rv = metric(out, "shoal_trackers_connected", "gauge",
                    "Trackers this node is logged in to.", m->trackers_connected);
    /* Both forms, so an alert needs no arithmetic: "expires within 7 days"
     * is shoal_credential_expiry_seconds < 604800 (negative once ended). */
    if (rv == 0 && m->cred_expires_unix)
        rv = metric(out, "shoal_credential_expiry_timestamp_seconds", "gauge",
                    "When this node's cluster credential ends (unix time).",
                    m->cred_expires_unix);
    if (rv == 0 && m->cred_expires_unix)
        rv = put(out, "# HELP shoal_credential_expiry_seconds Seconds until this node's cluster "
                      "credential ends (negative: ended; renew with shoal cred issue).\n"
                      "# TYPE shoal_credential_expiry_seconds gauge\n"
                      "shoal_credential_expiry_seconds %lld\n",
                 (long long)m->cred_expires_unix - (long long)m->now_unix);
    if (rv == 0)
        rv = release_gauge(out, "shoal_release_have_bytes", "Verified bytes of each release here.",
                           v, n, false);
    if (rv == 0)
        rv = release_gauge(out, "shoal_release_total_bytes", "Size of each release.", v, n, true);
    if (rv != 0)
        out->len = start;
    return rv;
}

/* ---- server ---- */

struct client {
    uv_pipe_t pipe;
    struct shoal_ctl *c;
    struct client *next;
    struct shoal_frame_dec dec;
    size_t queued;          /* reply bytes in flight, as allocated */
    bool reading;           /* uv_read_start in effect */
    size_t rpos, rlen;      /* rbuf[rpos..rlen): read, not yet decoded */
    bool closing;
    bool close_when_flushed;
    bool following;
    uint64_t last_ms;       /* loop time of its last request (or accept) */
    char follow[SHOAL_CTL_RELEASE_MAX + 1]; /* as the client named it */
    uint8_t rbuf[4096];
};

struct wreq {
    uv_write_t req;
    struct client *cl;
    uint8_t *data;
    size_t len;
    size_t cost;            /* what it counts in cl->queued */
};

/* A release grows in whole verified chunks (1 MiB on average, up to 4), so
 * at a few MiB/s a tick sees one chunk or none: a per-tick figure, even
 * blended, swung 0.5-1.75x the real rate, and between chunks on a slow
 * link fell towards zero, the ETA to hours. Its rate is therefore its
 * growth since a past growth (a tick that saw |have| rise) at least
 * RATE_WINDOW_MS old with RATE_GROWTHS growths since, or the oldest kept:
 * with chunks arriving every T, that is at least RATE_GROWTHS/(RATE_GROWTHS
 * + 1) of the real rate, and while nothing lands it falls as 1/t, not
 * geometrically. */
#define RATE_WINDOW_MS 10000u
#define RATE_GROWTHS 4u
#define RATE_SLOTS (RATE_WINDOW_MS / TICK_MS + RATE_GROWTHS + 1)

/* Rates come from counters sampled every tick. */
struct sample {             /* a peer's */
    uint64_t key_conn;      /* connection id */
    uint64_t a, b;          /* last counters: rx, tx */
    uint64_t rate_a, rate_b;
    uint64_t at_ms;
};

struct rel_sample {
    uint8_t key_id[32];     /* manifest id */
    uint64_t a;             /* have_bytes */
    uint64_t rate_a;
    uint64_t grew_ms;       /* when |a| last grew (or was first seen) */
    /* |a| and the time when it was first seen and at each growth since,
     * oldest first */
    uint64_t hist_a[RATE_SLOTS], hist_ms[RATE_SLOTS];
    uint32_t nhist;
};

/* A release that stored nothing for STALL_MS while its status gives a
 * reason (an origin sending bad bytes, every peer banned), or for
 * STALL_LONG_MS, shows no rate and no ETA: the windowed rate takes
 * RATE_WINDOW_MS to fall to zero, and an ETA counting down from it is
 * never met. Without a reason a slow link may take a while over one big
 * chunk. */
#define STALL_MS 5000
#define STALL_LONG_MS 30000

struct shoal_ctl {
    uv_loop_t *loop;
    const struct shoal_ctl_ops *ops;
    uv_pipe_t *listener;    /* own allocation: freed by its close callback */
    uv_timer_t tick;
    bool timer_on, closed;
    struct client *clients;
    uint32_t nclients;
    uint32_t idle_ms;       /* see shoal_ctl_set_idle_ms */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    dev_t dev;
    ino_t ino;
    struct rel_sample rel[SHOAL_CTL_RELEASES_MAX], rel_new[SHOAL_CTL_RELEASES_MAX];
    uint32_t nrel;
    struct sample peer[SHOAL_CTL_PEERS_MAX], peer_new[SHOAL_CTL_PEERS_MAX];
    uint32_t npeer;
    struct shoal_ctl_msg msg;  /* scratch for replies (large) */
};

/* The default path; |*in_tmp| says it is under the shared /tmp, where its
 * directory must be made private before use. */
static int default_path(char *buf, size_t cap, bool *in_tmp)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n;

    *in_tmp = false;
    if (geteuid() == 0) {
        n = snprintf(buf, cap, "/run/shoald/shoald.sock");
    } else if (xdg && xdg[0] == '/') {
        n = snprintf(buf, cap, "%s/shoald.sock", xdg);
    } else {
        /* A socket directly in /tmp can be bound first by any local user;
         * a directory only this uid may enter cannot be squatted. */
        n = snprintf(buf, cap, "/tmp/shoald-%u/shoald.sock", (unsigned)geteuid());
        *in_tmp = true;
    }
    return n < 0 || (size_t)n >= cap ? SHOAL_ELIMIT : 0;
}

int shoal_ctl_default_path(char *buf, size_t cap)
{
    bool in_tmp;

    return default_path(buf, cap, &in_tmp);
}

int shoal_ctl_private_dir(const char *dir)
{
    struct stat st;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return -errno;
    /* lstat: a symlink planted in /tmp must not lead us elsewhere. Someone
     * else's directory, or ours with group/other access, is refused rather
     * than repaired: its contents may already be theirs. */
    if (lstat(dir, &st) != 0)
        return -errno;
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0)
        return -EPERM;
    return 0;
}

const char *shoal_ctl_path(const struct shoal_ctl *c) { return c->path; }

/* Records a growth of |s| at |now| and sets its rate (see RATE_WINDOW_MS). */
static void window_rate(struct rel_sample *s, uint64_t now)
{
    if (s->nhist == 0 || s->a > s->hist_a[s->nhist - 1]) {
        if (s->nhist == RATE_SLOTS) {
            memmove(s->hist_a, s->hist_a + 1, (RATE_SLOTS - 1) * sizeof s->hist_a[0]);
            memmove(s->hist_ms, s->hist_ms + 1, (RATE_SLOTS - 1) * sizeof s->hist_ms[0]);
            s->nhist--;
        }
        s->hist_a[s->nhist] = s->a;
        s->hist_ms[s->nhist] = now;
        s->nhist++;
    }
    /* The newest past growth old enough and with enough growths since. */
    uint32_t j = 0;
    for (uint32_t i = s->nhist; i-- > 0;) {
        if (s->nhist - 1 - i >= RATE_GROWTHS && now - s->hist_ms[i] >= RATE_WINDOW_MS) {
            j = i;
            break;
        }
    }
    s->rate_a = 0;
    if (now > s->hist_ms[j] && s->a > s->hist_a[j])
        s->rate_a = (s->a - s->hist_a[j]) * 1000 / (now - s->hist_ms[j]);
}

/* Blends a new per-second figure into a rate so a bar does not jitter. */
static uint64_t blend(uint64_t old, uint64_t delta, uint64_t dt_ms, bool first)
{
    uint64_t inst = dt_ms ? delta * 1000 / dt_ms : 0;
    return first ? inst : (old * 3 + inst * 2) / 5;
}

static void sample_all(struct shoal_ctl *c)
{
    struct shoal_ctl_release *rv = c->msg.u.status.v;
    struct shoal_ctl_peer *pv = c->msg.u.peers.v;
    uint64_t now = uv_now(c->loop);
    uint32_t n, k;

    n = c->ops->releases(c->ops->user, rv, SHOAL_CTL_RELEASES_MAX);
    for (uint32_t i = 0; i < n; i++) {
        struct rel_sample *s = &c->rel_new[i];
        memcpy(s->key_id, rv[i].id, 32);
        s->a = rv[i].have_bytes;
        s->grew_ms = now;
        s->nhist = 0;
        for (k = 0; k < c->nrel; k++) {
            const struct rel_sample *o = &c->rel[k];
            if (memcmp(o->key_id, rv[i].id, 32) == 0) {
                /* Less than before (dropped, reopened): a new window. */
                if (s->a >= o->a) {
                    memcpy(s->hist_a, o->hist_a, o->nhist * sizeof o->hist_a[0]);
                    memcpy(s->hist_ms, o->hist_ms, o->nhist * sizeof o->hist_ms[0]);
                    s->nhist = o->nhist;
                }
                if (s->a == o->a)
                    s->grew_ms = o->grew_ms;
                break;
            }
        }
        window_rate(s, now);
    }
    memcpy(c->rel, c->rel_new, sizeof c->rel[0] * n);
    c->nrel = n;

    n = c->ops->peers(c->ops->user, pv, SHOAL_CTL_PEERS_MAX);
    for (uint32_t i = 0; i < n; i++) {
        struct sample *s = &c->peer_new[i];
        memset(s, 0, sizeof *s);
        s->key_conn = pv[i].conn_id;
        s->a = pv[i].rx_bytes;
        s->b = pv[i].tx_bytes;
        s->at_ms = now;
        for (k = 0; k < c->npeer; k++) {
            struct sample *o = &c->peer[k];
            if (o->key_conn == s->key_conn) {
                s->rate_a = blend(o->rate_a, s->a - o->a, now - o->at_ms, o->rate_a == 0);
                s->rate_b = blend(o->rate_b, s->b - o->b, now - o->at_ms, o->rate_b == 0);
                break;
            }
        }
    }
    memcpy(c->peer, c->peer_new, sizeof c->peer[0] * n);
    c->npeer = n;
}

static void add_release_rate(struct shoal_ctl *c, struct shoal_ctl_release *r)
{
    r->rate_bps = 0;
    r->eta_ms = 0;
    for (uint32_t k = 0; k < c->nrel; k++) {
        if (r->has_id && memcmp(c->rel[k].key_id, r->id, 32) == 0) {
            r->rate_bps = c->rel[k].rate_a;
            uint64_t still = uv_now(c->loop) - c->rel[k].grew_ms;
            if (still >= STALL_LONG_MS || (still >= STALL_MS && r->error[0]))
                r->rate_bps = 0;
            break;
        }
    }
    /* The blend decays over seconds: a complete release receives nothing. */
    if (r->state == SHOAL_CTL_COMPLETE)
        r->rate_bps = 0;
    if (r->state != SHOAL_CTL_COMPLETE && r->rate_bps > 0 && r->total_bytes > r->have_bytes)
        r->eta_ms = (r->total_bytes - r->have_bytes) * 1000 / r->rate_bps;
}

static void add_peer_rate(struct shoal_ctl *c, struct shoal_ctl_peer *p)
{
    p->rx_bps = p->tx_bps = 0;
    for (uint32_t k = 0; k < c->npeer; k++) {
        if (c->peer[k].key_conn == p->conn_id) {
            p->rx_bps = c->peer[k].rate_a;
            p->tx_bps = c->peer[k].rate_b;
            break;
        }
    }
}

static void client_closed(uv_handle_t *h)
{
    struct client *cl = h->data;
    struct shoal_ctl *c = cl->c;

    for (struct client **pp = &c->clients; *pp; pp = &(*pp)->next) {
        if (*pp == cl) {
            *pp = cl->next;
            break;
        }
    }
    c->nclients--;
    shoal_frame_dec_free(&cl->dec);
    free(cl);
}

static void client_close(struct client *cl)
{
    if (cl->closing)
        return;
    cl->closing = true;
    cl->following = false;
    uv_close((uv_handle_t *)&cl->pipe, client_closed);
}

static void client_consume(struct client *cl);

static void write_done(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct client *cl = w->cl;

    cl->queued -= w->cost;
    free(w->data);
    free(w);
    if (status < 0 || (cl->close_when_flushed && cl->queued == 0)) {
        client_close(cl);
        return;
    }
    /* Its requests waited while its replies did: read on. */
    if (!cl->reading && cl->queued < CLIENT_QUEUE_MAX)
        client_consume(cl);
}

/* Encodes |m| and queues it to |cl|. Requests are not read while a client
 * holds CLIENT_QUEUE_MAX (client_consume), so this stays under that plus
 * one reply; a client past that (progress it does not read) is dropped. */
static void client_send(struct client *cl, const struct shoal_ctl_msg *m)
{
    struct shoal_buf b;
    struct wreq *w = NULL;
    uv_buf_t ub;
    int rv;

    if (cl->closing)
        return;
    if (cl->queued > CLIENT_QUEUE_MAX + SHOAL_CTL_FRAME_MAX) {
        client_close(cl);
        return;
    }
    shoal_buf_init(&b, SHOAL_CTL_FRAME_MAX + SHOAL_FRAME_HDR_LEN);
    rv = shoal_ctl_encode(m, &b);
    if (rv == 0) {
        w = calloc(1, sizeof *w);
        rv = w ? 0 : -ENOMEM;
    }
    if (rv == 0) {
        size_t cap = b.cap;
        w->cl = cl;
        w->len = b.len;
        w->data = shoal_buf_steal(&b, NULL);
        /* The buffer grew by doubling: give back what the frame does not
         * use rather than hold up to twice its size while it waits. */
        if (cap > w->len + w->len / 8) {
            uint8_t *p = realloc(w->data, w->len);
            if (p) {
                w->data = p;
                cap = w->len;
            }
        }
        w->cost = cap + sizeof *w + 2 * ALLOC_OVERHEAD;
        ub = uv_buf_init((char *)w->data, (unsigned)w->len);
        rv = uv_write(&w->req, (uv_stream_t *)&cl->pipe, &ub, 1, write_done);
        if (rv == 0) {
            cl->queued += w->cost;
            return;
        }
        free(w->data);
        free(w);
    }
    shoal_buf_free(&b);
    client_close(cl);
}

static void send_error(struct client *cl, int code, const char *fmt, const char *detail)
{
    struct shoal_ctl_msg *m = &cl->c->msg;

    memset(&m->u.error, 0, sizeof m->u.error);
    m->type = SHOAL_CTL_ERROR;
    m->u.error.code = code;
    snprintf(m->u.error.message, sizeof m->u.error.message, fmt, detail);
    /* The message may carry a name from the request: strip what the
     * encoder would refuse rather than send nothing. */
    for (char *p = m->u.error.message; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    client_send(cl, m);
}

/* One PROGRESS for the release |cl| follows; stops following at the end. */
static void send_progress(struct client *cl)
{
    struct shoal_ctl *c = cl->c;
    struct shoal_ctl_msg *m = &c->msg;
    char why[SHOAL_CTL_ERROR_MAX + 1] = "";
    int rv;

    memset(&m->u.progress, 0, sizeof m->u.progress);
    m->type = SHOAL_CTL_PROGRESS;
    rv = c->ops->release(c->ops->user, cl->follow, &m->u.progress, why, sizeof why);
    if (rv != 0) {
        cl->following = false;
        cl->close_when_flushed = true;
        send_error(cl, rv, "%s", why[0] ? why : shoal_strerror(rv));
        return;
    }
    if (cl->queued >= CLIENT_QUEUE_MAX) {
        /* Not reading its progress for minutes: gone, or stuck. */
        client_close(cl);
        return;
    }
    add_release_rate(c, &m->u.progress);
    if (m->u.progress.state == SHOAL_CTL_COMPLETE)
        cl->following = false;
    client_send(cl, m);
}

static void handle_request(struct client *cl, const struct shoal_ctl_msg *req)
{
    struct shoal_ctl *c = cl->c;
    struct shoal_ctl_msg *m = &c->msg;
    char why[SHOAL_CTL_ERROR_MAX + 1] = "";
    struct shoal_buf text;
    struct shoal_ctl_metrics mt;
    uint32_t n;
    int rv;

    switch (req->type) {
    case SHOAL_CTL_PULL:
        rv = c->ops->pull(c->ops->user, req->u.pull.release, why, sizeof why);
        if (rv != 0) {
            send_error(cl, rv, "%s", why[0] ? why : shoal_strerror(rv));
            return;
        }
        memcpy(cl->follow, req->u.pull.release, sizeof cl->follow);
        cl->following = req->u.pull.follow;
        send_progress(cl);
        return;
    case SHOAL_CTL_STATUS_REQ:
        n = c->ops->releases(c->ops->user, m->u.status.v, SHOAL_CTL_RELEASES_MAX);
        m->type = SHOAL_CTL_STATUS;
        m->u.status.count = n;
        for (uint32_t i = 0; i < n; i++)
            add_release_rate(c, &m->u.status.v[i]);
        m->u.status.nwarnings = c->ops->warnings
                                    ? c->ops->warnings(c->ops->user, m->u.status.warnings,
                                                       SHOAL_CTL_WARNINGS_MAX)
                                    : 0;
        client_send(cl, m);
        return;
    case SHOAL_CTL_PEERS_REQ:
        n = c->ops->peers(c->ops->user, m->u.peers.v, SHOAL_CTL_PEERS_MAX);
        m->type = SHOAL_CTL_PEERS;
        m->u.peers.count = n;
        for (uint32_t i = 0; i < n; i++)
            add_peer_rate(c, &m->u.peers.v[i]);
        client_send(cl, m);
        return;
    case SHOAL_CTL_METRICS_REQ:
        memset(&mt, 0, sizeof mt);
        c->ops->metrics(c->ops->user, &mt);
        n = c->ops->releases(c->ops->user, m->u.status.v, SHOAL_CTL_RELEASES_MAX);
        shoal_buf_init(&text, SHOAL_CTL_METRICS_MAX);
        rv = shoal_ctl_metrics_text(&mt, m->u.status.v, n, &text);
        if (rv == 0) {
            m->type = SHOAL_CTL_METRICS;
            m->u.metrics.text = (const char *)text.data;
            m->u.metrics.len = (uint32_t)text.len;
            client_send(cl, m);
        } else {
            send_error(cl, rv, "cannot format metrics: %s", shoal_strerror(rv));
        }
        shoal_buf_free(&text);
        return;
    case SHOAL_CTL_DROP:
        if (!c->ops->drop) {
            send_error(cl, SHOAL_EPROTO, "%s", "this daemon cannot drop releases");
            return;
        }
        memset(&m->u.dropped, 0, sizeof m->u.dropped);
        rv = c->ops->drop(c->ops->user, req->u.drop.release, m->u.dropped.name,
                          sizeof m->u.dropped.name, m->u.dropped.repo_dir,
                          sizeof m->u.dropped.repo_dir, m->u.dropped.note,
                          sizeof m->u.dropped.note, why, sizeof why);
        if (rv != 0) {
            send_error(cl, rv, "%s", why[0] ? why : shoal_strerror(rv));
            return;
        }
        m->type = SHOAL_CTL_DROPPED;
        client_send(cl, m);
        return;
    default:
        send_error(cl, SHOAL_EPROTO, "%s", "not a request");
        return;
    }
}

static int on_frame(void *user, const uint8_t *body, size_t len)
{
    struct client *cl = user;
    struct shoal_ctl_msg *req;
    int rv;

    if (cl->closing || cl->close_when_flushed)
        return 1;
    cl->last_ms = uv_now(cl->c->loop);
    /* The request is decoded apart from the reply scratch it may fill. */
    req = malloc(sizeof *req);
    if (!req) {
        client_close(cl);
        return 1;
    }
    rv = shoal_ctl_decode(req, body, len);
    if (rv != 0) {
        cl->close_when_flushed = true;
        send_error(cl, rv, "malformed request: %s", shoal_strerror(rv));
    } else {
        handle_request(cl, req);
    }
    free(req);
    /* Stop at a full queue: the rest waits in rbuf (client_consume). */
    return cl->closing || cl->queued >= CLIENT_QUEUE_MAX ? 1 : 0;
}

static const struct shoal_frame_cb frame_cb = {.on_frame = on_frame};

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct client *cl = h->data;
    *buf = uv_buf_init((char *)cl->rbuf, sizeof cl->rbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Decodes and answers the requests read into rbuf until they are done or
 * the client's queue is full; reading stops while bytes wait (rbuf is
 * the read buffer) and goes on once they are answered, so a client that
 * asks and never reads holds one queue of replies, not one per request. */
static void client_consume(struct client *cl)
{
    while (cl->rpos < cl->rlen && !cl->closing && !cl->close_when_flushed &&
           cl->queued < CLIENT_QUEUE_MAX) {
        size_t consumed = 0;
        int rv = shoal_frame_dec_feed(&cl->dec, cl->rbuf + cl->rpos, cl->rlen - cl->rpos,
                                      &consumed, &frame_cb, cl);
        cl->rpos += consumed;
        if (rv < 0 && !cl->closing && !cl->close_when_flushed) {
            cl->close_when_flushed = true;
            send_error(cl, rv, "bad frame: %s", shoal_strerror(rv));
        }
        if (rv < 0)
            cl->rpos = cl->rlen;
    }
    if (cl->closing)
        return;
    if (cl->close_when_flushed)
        cl->rpos = cl->rlen; /* nothing more is answered */
    if (cl->rpos < cl->rlen) {
        if (cl->reading)
            uv_read_stop((uv_stream_t *)&cl->pipe);
        cl->reading = false;
    } else if (!cl->reading) {
        cl->reading = uv_read_start((uv_stream_t *)&cl->pipe, alloc_cb, read_cb) == 0;
        if (!cl->reading)
            client_close(cl);
    }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct client *cl = s->data;

    if (cl->closing)
        return;
    if (nread < 0) {
        client_close(cl);
        return;
    }
    if (nread == 0)
        return;
    cl->rpos = 0;
    cl->rlen = (size_t)nread;
    client_consume(cl);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct shoal_ctl *c = server->data;
    struct client *cl;

    if (status < 0 || c->closed)
        return;
    cl = calloc(1, sizeof *cl);
    if (!cl)
        return;
    cl->c = c;
    shoal_frame_dec_init(&cl->dec, SHOAL_CTL_REQUEST_MAX);
    uv_pipe_init(c->loop, &cl->pipe, 0);
    cl->pipe.data = cl;
    cl->next = c->clients;
    c->clients = cl;
    c->nclients++;
    cl->last_ms = uv_now(c->loop);
    if (uv_accept(server, (uv_stream_t *)&cl->pipe) != 0) {
        client_close(cl);
    } else if (c->nclients > MAX_CLIENTS) {
        /* Say why, so `shoal` can tell its user rather than just fail. */
        char n[16];
        snprintf(n, sizeof n, "%u", MAX_CLIENTS);
        cl->close_when_flushed = true;
        send_error(cl, SHOAL_EBUSY, "too many clients (%s); try again", n);
    } else if (uv_read_start((uv_stream_t *)&cl->pipe, alloc_cb, read_cb) != 0) {
        client_close(cl);
    } else {
        cl->reading = true;
    }
}

static void on_tick(uv_timer_t *t)
{
    struct shoal_ctl *c = t->data;

    uint64_t now = uv_now(c->loop);

    sample_all(c);
    for (struct client *cl = c->clients; cl; cl = cl->next) {
        if (cl->closing)
            continue;
        if (cl->following) {
            cl->last_ms = now; /* idle only from when it stops following */
            send_progress(cl);
            continue;
        }
        /* Slots are few: one that asks nothing is given back. A pull being
         * followed is never idle (it gets progress every tick). */
        if (now - cl->last_ms < c->idle_ms)
            continue;
        if (!cl->close_when_flushed) {
            char secs[16];
            snprintf(secs, sizeof secs, "%.1f", (double)c->idle_ms / 1000.0);
            cl->close_when_flushed = true;
            send_error(cl, -ETIMEDOUT, "no request for %s s: closing", secs);
        } else if (now - cl->last_ms >= 2 * (uint64_t)c->idle_ms) {
            client_close(cl); /* not even reading the error */
        }
    }
}

void shoal_ctl_set_idle_ms(struct shoal_ctl *c, uint32_t ms)
{
    c->idle_ms = ms ? ms : SHOAL_CTL_IDLE_MS;
}

/* Is a daemon answering on |path|? Decides whether a socket file is stale. */
static bool socket_alive(const char *path)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool alive;

    if (fd < 0)
        return false;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    alive = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return alive;
}

static int prepare_path(const char *path, bool private_dir)
{
    struct stat st;
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char *slash;
    int rv;

    snprintf(dir, sizeof dir, "%s", path);
    slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (private_dir) {
            rv = shoal_ctl_private_dir(dir);
            if (rv != 0)
                return rv;
        } else if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
            return -errno;
        }
    }
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    if (socket_alive(path))
        return SHOAL_EBUSY;
    /* Left by a daemon that died without cleaning up. */
    if (unlink(path) != 0 && errno != ENOENT)
        return -errno;
    return 0;
}

int shoal_ctl_new(struct shoal_ctl **out, uv_loop_t *loop, const char *path,
                  const struct shoal_ctl_ops *ops)
{
    struct shoal_ctl *c = calloc(1, sizeof *c);
    struct stat st;
    bool in_tmp = false;
    int rv;

    if (!c)
        return -ENOMEM;
    c->loop = loop;
    c->ops = ops;
    c->idle_ms = SHOAL_CTL_IDLE_MS;
    if (path) {
        rv = strlen(path) < sizeof c->path ? 0 : SHOAL_ELIMIT;
        if (rv == 0)
            memcpy(c->path, path, strlen(path) + 1);
    } else {
        rv = default_path(c->path, sizeof c->path, &in_tmp);
    }
    if (rv == 0 && !c->path[0])
        rv = -EINVAL;
    if (rv == 0)
        rv = prepare_path(c->path, in_tmp);
    if (rv != 0)
        goto fail;
    c->listener = calloc(1, sizeof *c->listener);
    if (!c->listener) {
        rv = -ENOMEM;
        goto fail;
    }
    uv_pipe_init(loop, c->listener, 0);
    c->listener->data = c;
    rv = uv_pipe_bind(c->listener, c->path);
    if (rv == 0)
        rv = shoal_sockpath_set_mode(c->path, 0660, (gid_t)-1);
    if (rv == 0 && stat(c->path, &st) == 0) {
        c->dev = st.st_dev;
        c->ino = st.st_ino;
    }
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)c->listener, 16, on_connection);
    if (rv != 0)
        goto fail;
    uv_timer_init(loop, &c->tick);
    c->tick.data = c;
    c->timer_on = true;
    uv_timer_start(&c->tick, on_tick, TICK_MS, TICK_MS);
    *out = c;
    return 0;
fail:
    /* Nothing but the listener exists yet, and it frees itself. */
    shoal_ctl_close(c);
    free(c);
    return rv;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

void shoal_ctl_close(struct shoal_ctl *c)
{
    struct stat st;

    if (!c || c->closed)
        return;
    c->closed = true;
    if (c->listener) {
        uv_close((uv_handle_t *)c->listener, free_handle);
        /* Remove the file only if it is still the one we bound: another
         * daemon may have replaced it. */
        if (c->ino && stat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
            unlink(c->path);
    }
    if (c->timer_on)
        uv_close((uv_handle_t *)&c->tick, NULL);
    for (struct client *cl = c->clients; cl; cl = cl->next)
        client_close(cl);
}

void shoal_ctl_free(struct shoal_ctl *c)
{
    free(c);
}
