/* SPDX-License-Identifier: MIT */
/*
 * Hub client over libcurl multi + libuv (see hub.h for the contract).
 *
 * Plumbing: libcurl tells us which sockets to watch (socket callback ->
 * one uv_poll_t per socket) and when to wake it (timer callback -> one
 * uv_timer_t); we call curl_multi_socket_action when either fires and then
 * collect finished transfers. Every HTTP request is a "job": an API GET or
 * one merged byte range of a file. Jobs wait in a FIFO until a slot of
 * max_inflight is free, and in a delay list (one shared timer) while backing
 * off. A job owns at most one easy handle at a time; easy handles are made
 * per attempt and connections are reused through the multi handle's cache.
 *
 * Redirects are followed here, hop by hop, so the Authorization header is
 * attached only while the URL stays on the endpoint's host and port, or is
 * that host's http->https upgrade (same port, or 80 to 443); never after a
 * hop from https to http, and once a chain leaves the endpoint it never gets
 * the token back (shoal_hub_token_follows). Retries and
 * resumes restart from the original URL, since CDN URLs are signed and may
 * have expired.
 */
#include "hub.h"

#include "buf.h"
#include "error.h"
#include "hash.h"
#include "hfcache.h"
#include "json.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>
#include <uv.h>

#define HUB_MAX_REDIRECTS 10
#define hub_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define HUB_ERRBODY_MAX 2048
/* A gateway that ignores Range answers 200 with the whole file: a request
 * for a span past this offset is refused rather than paid for with every
 * byte before it (each lease of a 10 GB shard would read gigabytes). The
 * default of shoal_hub_config.range_skip_max. */
#define HUB_RANGE_SKIP_MAX (8u << 20)
/* The longest wait a Retry-After may ask for (10 min), the default of
 * shoal_hub_config.retry_after_max_ms: an origin rate-limiting us knows
 * better than our backoff cap how long to stay away. */
#define HUB_RETRY_AFTER_MAX_MS (600u * 1000)
/* Hosts remembered as having asked us to wait (per-host "not before"). */
#define HUB_HOLDS 16
#define HUB_HOST_MAX 128
/* Defaults of shoal_hub_config.slow_floor_bps and slow_window_ms: a range
 * attempt that gets less than 64 KiB/s over a minute is ended and resumed
 * on a new connection rather than left to trickle for hours. */
#define HUB_SLOW_FLOOR_BPS (64u * 1024)
#define HUB_SLOW_WINDOW_MS (60u * 1000)
#define HUB_TOKEN_MAX 4096
/* Largest CA bundle read (a distribution's whole bundle is ~200 KiB). */
#define HUB_CA_MAX (16u << 20)
#define HUB_MSG_MAX 1024
#define HUB_RECV_BUFFER (512 * 1024)
/* A revision answer listing more files than this is not trusted to list
 * them all: the Hub truncates the siblings of a large repo (huggingface_hub
 * lists /tree past 1000 too: a list of exactly 1000 is a cut one); pages
 * of /tree read at most. */
#define HUB_SIBLINGS_TRUSTED 1000u
#define HUB_TREE_PAGES_MAX 10000u
/* HEAD requests in flight at once when a gateway without /tree has its
 * files' sizes and ids read one file at a time (api_req.named). */
#define HUB_HEADS_PARALLEL 4u
/* Longest ETag value kept: a sha256 in hex, quoted, with "W/" to spare. */
#define HUB_ETAG_MAX 80

/* JOB_HEAD: a HEAD of one file of a release being listed, for its size
 * and sha256 or git blob id (api_req.named). */
enum job_kind { JOB_API, JOB_RANGE, JOB_HEAD };

/* Where a job is. Cancel and free act on this, never on whether |easy| is
 * set, so a job between attempts cannot be mistaken for a running one. */
enum job_state {
    JOB_IDLE,     /* on no list and no transfer: being decided about */
    JOB_QUEUED,   /* on the pending FIFO */
    JOB_DELAYED,  /* on the delay list, backing off */
    JOB_RUNNING,  /* its easy handle is in the multi handle */
};

/* A failed attempt counts as progress (resetting the failure count and
 * skipping most of the backoff) only if it delivered this much, or a
 * quarter of what was left: a gateway that cuts every answer after a few
 * bytes must not turn a range into a request per byte. */
#define HUB_PROGRESS_MIN (64 * 1024)
/* Every job may make cfg.max_attempts attempts plus one per this many
 * bytes of its range, however much progress each one makes. */
#define HUB_ATTEMPT_BYTES (64 * 1024)

struct fetch;
struct api_req;

struct job {
    struct job *next;           /* pending or delayed list */
    struct job *prev_all, *next_all; /* every live job, for cancel and free */
    struct shoal_hub *hub;
    enum job_kind kind;
    enum job_state state;
    struct fetch *fetch;        /* JOB_RANGE */
    struct api_req *api;        /* JOB_API, JOB_HEAD */
    size_t head_file;           /* JOB_HEAD: index in api->rel->files */
    char *url;                  /* where every attempt starts */
    char *cur_url;              /* current hop */
    char host[HUB_HOST_MAX];    /* host[:port] of cur_url, for holds */
    bool offhost;               /* current chain left the endpoint: no token */
    bool downgraded;            /* ... by a hop from https down to http */
    unsigned redirects;
    unsigned attempts;          /* failures since the last progress */
    unsigned tries;             /* attempts so far (not hops); never reset */
    uint64_t due_ms;            /* when delayed */
    uint64_t off, len, got;     /* JOB_RANGE: the range and bytes delivered */
    uint64_t got_at_start;      /* |got| when this attempt started */
    /* current attempt */
    CURL *easy;
    struct curl_slist *hdrs;
    long status;
    char *location;
    long retry_after_ms;        /* -1 when absent */
    char err_code[64];
    char err_msg[256];
    char curl_err[CURL_ERROR_SIZE]; /* libcurl's detail of a failed transfer */
    bool have_cr;
    uint64_t cr_start;          /* Content-Range start of a 206 */
    uint64_t pos;               /* file offset of the next body byte */
    uint64_t body_start;        /* file offset of the body's first byte */
    bool body_started;
    bool done_early;            /* we stopped the body because we had it all */
    bool aborted;               /* a data callback asked to stop */
    bool no_range;              /* ... or we did: a body starting far before
                                   the Range asked (a 200, or a 206 whose
                                   Content-Range starts early) */
    bool no_cr;                 /* ... or a 206 without a Content-Range */
    bool slow;                  /* ... or the rate stayed under the floor */
    uint64_t win_start_ms;      /* slow check: this window's start */
    uint64_t win_bytes;         /* ... and bytes received before it */
    uint64_t slow_bps;          /* the rate of the window that was too slow */
    int abort_rv;
    char *link_next;            /* JOB_API: a Link header's rel="next" URL */
    /* JOB_HEAD: the answer's X-Linked-Etag, ETag, X-Linked-Size,
     * Content-Length and X-Repo-Commit ("" or false: absent). */
    char linked_etag[HUB_ETAG_MAX], etag[HUB_ETAG_MAX], repo_commit[48];
    bool has_linked_size, has_clen;
    uint64_t linked_size, clen;
    char ctype[64];             /* Content-Type of the answer ("" if none) */
    bool html;                  /* ... a range answered with a web page */
    struct shoal_buf body;      /* API body, or the first bytes of an error body */
};

struct fetch {
    struct shoal_hub *hub;
    enum shoal_repo_type type;
    char *repo, *rev, *path;
    shoal_hub_data_cb on_data;
    shoal_hub_done_cb on_done;
    void *user;
    size_t jobs_left;
    int err;
    char msg[HUB_MSG_MAX];
};

struct api_req {
    enum shoal_repo_type type;
    char *repo, *rev;
    shoal_hub_resolve_cb cb;
    void *user;
    bool sha_only;              /* shoal_hub_resolve_commit: no file list */
    /* Listing the files with /tree (the revision answer's siblings could
     * not be trusted): the release so far, why, and the pages read. */
    struct shoal_hub_release *rel;
    size_t capfiles;
    unsigned pages;
    char why_tree[256];
    /* The siblings, all named but without sizes or ids (a gateway that
     * ignores ?blobs=true), kept while /tree is asked: a gateway without
     * /tree either gets a HEAD per file instead, as huggingface_hub reads
     * a file's metadata. NULL when the siblings were cut or missing. */
    struct shoal_hub_file *named;
    size_t nnamed;
    char tree_fail[HUB_MSG_MAX / 2]; /* why /tree failed, for a HEAD's error */
    size_t heads_next, heads_running;
    int heads_rv;                /* the first HEAD failure (then none starts) */
    char heads_msg[HUB_MSG_MAX];
    unsigned live;               /* its jobs on the hub's list (for free) */
};

struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct shoal_hub *hub;
    struct sock_ctx *prev, *next; /* live (not closing) sockets */
};

/* A host that answered 429 or 503 with a Retry-After: no request goes to
 * it before |until_ms|. */
struct host_hold {
    char host[HUB_HOST_MAX];
    uint64_t until_ms;          /* 0: a free slot */
};

struct shoal_hub {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t curl_timer;      /* libcurl's timeout */
    uv_timer_t retry_timer;     /* earliest delayed job */
    uv_timer_t hold_timer;      /* earliest end of a hold that keeps a job queued */
    uv_timer_t idle;            /* runs completions that have no transfer */
    char *endpoint;
    char *endpoint_shown;       /* for logs: credentials redacted */
    char *ep_scheme, *ep_host, *ep_port;
    char *token;                /* NULL: none */
    char token_src[SHOAL_HUB_TOKEN_SRC_MAX]; /* where it came from, or "" */
    char token_ignored[SHOAL_HUB_TOKEN_SRC_MAX + 64]; /* a login file that could
                                                  not be read, and why; or "" */
    /* The file the token is read from ("" for a token given or from the
     * environment), looked at again at most every TOKEN_CHECK_MS: a token
     * rotated on disk is sent from the next request on, without a restart
     * (QA F12). |token_file| is the --hub-token-file path, kept. */
    char token_watch[SHOAL_HUB_TOKEN_SRC_MAX];
    char *token_file;
    struct stat token_st;
    bool token_st_ok;
    uint64_t token_checked_ms;
    char *ca_file;              /* CA bundle for TLS; NULL: libcurl's default */
    bool token_exposed;         /* its token file is readable by others */
    struct shoal_hub_config cfg;
    struct job *pend_head, *pend_tail;
    struct job *delayed;        /* sorted by due_ms */
    struct host_hold holds[HUB_HOLDS];
    struct job *all;
    struct sock_ctx *socks;
    struct fetch **empty_fetches; /* fetches with no job, completed on idle */
    size_t nempty, capempty;
    unsigned inflight;
    uint64_t rng;
    struct shoal_hub_stats stats;
    /* Origin health (see shoal_hub_health): the current run of failures. */
    bool failing;
    bool run_reported;          /* a report named this run */
    bool run_files;             /* a file request failed in this run */
    uint64_t run_start_ms, run_failures;
    uint64_t unreported;        /* failures no report counted yet */
    uint64_t last_report_ms;    /* 0: never */
    char fail_host[128];
    char fail_error[160];
    int closing_handles;
    bool freeing;
};

/* ---------------------------------------------------------------------- */
/* small helpers                                                          */

static uint64_t now_ms(const struct shoal_hub *h)
{
    return uv_now(h->loop);
}

/* splitmix64: the jitter only needs to decorrelate clients, not be secret. */
static uint64_t rng_next(struct shoal_hub *h)
{
    uint64_t z = (h->rng += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static const char *type_word(enum shoal_repo_type t)
{
    return t == SHOAL_REPO_DATASET ? "datasets" : "models";
}

static bool repo_id_ok(const char *r)
{
    size_t n, slashes = 0, i;

    if (!r || !*r)
        return false;
    n = strlen(r);
    if (n > 200 || r[0] == '/' || r[n - 1] == '/')
        return false;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)r[i];
        if (c == '/') {
            if (++slashes > 1 || r[i + 1] == '/')
                return false;
            continue;
        }
        if (!isalnum(c) && c != '-' && c != '_' && c != '.')
            return false;
    }
    /* "." and ".." components would walk the URL path. */
    return strstr(r, "..") == NULL && r[0] != '.';
}

static bool rev_ok(const char *r)
{
    size_t i, n;

    if (!r || !*r)
        return false;
    n = strlen(r);
    if (n > 256)
        return false;
    for (i = 0; i < n; i++)
        if ((unsigned char)r[i] < 0x21 || r[i] == 0x7f)
            return false;
    return true;
}

static bool path_ok(const char *p)
{
    size_t n;

    if (!p || !*p || p[0] == '/')
        return false;
    n = strlen(p);
    if (n > SHOAL_HUB_MAX_PATH)
        return false;
    for (const char *c = p; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == '\\')
            return false;
        if ((c == p || c[-1] == '/') &&
            ((c[0] == '.' && (c[1] == '/' || c[1] == '\0')) ||
             (c[0] == '.' && c[1] == '.' && (c[2] == '/' || c[2] == '\0')) || c[0] == '/'))
            return false;
    }
    return true;
}

/* Percent-encodes |s| except unreserved characters (and '/' when
 * |keep_slash|). Returns a malloc'd string or NULL. */
static char *url_escape(const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *o = malloc(3 * n + 1);
    char *q = o;

    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
            (keep_slash && c == '/')) {
            *q++ = (char)c;
        } else {
            *q++ = '%';
            *q++ = hex[c >> 4];
            *q++ = hex[c & 15];
        }
    }
    *q = '\0';
    return o;
}

static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* ---------------------------------------------------------------------- */
/* job lists                                                              */

static void all_link(struct shoal_hub *h, struct job *j)
{
    j->prev_all = NULL;
    j->next_all = h->all;
    if (h->all)
        h->all->prev_all = j;
    h->all = j;
}

static void all_unlink(struct shoal_hub *h, struct job *j)
{
    if (j->prev_all)
        j->prev_all->next_all = j->next_all;
    else
        h->all = j->next_all;
    if (j->next_all)
        j->next_all->prev_all = j->prev_all;
}

static void pend_push(struct shoal_hub *h, struct job *j)
{
    j->state = JOB_QUEUED;
    j->next = NULL;
    if (h->pend_tail)
        h->pend_tail->next = j;
    else
        h->pend_head = j;
    h->pend_tail = j;
}

/* Removes |j| from the pending or delayed list if it is on one. */
static void lists_remove(struct shoal_hub *h, struct job *j)
{
    struct job **pp, *prev = NULL;

    j->state = JOB_IDLE;
    for (pp = &h->pend_head; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            if (h->pend_tail == j)
                h->pend_tail = prev;
            return;
        }
    }
    for (pp = &h->delayed; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            return;
        }
    }
}

static void attempt_reset(struct job *j)
{
    if (j->easy) {
        curl_easy_cleanup(j->easy);
        j->easy = NULL;
    }
    curl_slist_free_all(j->hdrs);
    j->hdrs = NULL;
    free(j->location);
    j->location = NULL;
    free(j->link_next);
    j->link_next = NULL;
    j->ctype[0] = '\0';
    j->html = false;
    j->status = 0;
    j->retry_after_ms = -1;
    j->err_code[0] = '\0';
    j->err_msg[0] = '\0';
    j->curl_err[0] = '\0';
    j->have_cr = false;
    j->cr_start = 0;
    j->linked_etag[0] = j->etag[0] = j->repo_commit[0] = '\0';
    j->has_linked_size = j->has_clen = false;
    j->pos = 0;
    j->body_start = 0;
    j->slow = false;
    j->win_start_ms = 0;
    j->win_bytes = 0;
    j->done_early = false;
    j->body_started = false;
    shoal_buf_reset(&j->body);
}

static void job_free(struct job *j)
{
    if (!j)
        return;
    attempt_reset(j);
    shoal_buf_free(&j->body);
    free(j->url);
    free(j->cur_url);
    free(j);
}

static void fetch_free(struct fetch *f)
{
    if (!f)
        return;
    free(f->repo);
    free(f->rev);
    free(f->path);
    free(f);
}

static void files_free(struct shoal_hub_file *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(f[i].path);
    free(f);
}

static void api_free(struct api_req *a)
{
    if (!a)
        return;
    files_free(a->named, a->nnamed);
    shoal_hub_release_free(a->rel);
    free(a->repo);
    free(a->rev);
    free(a);
}

/* ---------------------------------------------------------------------- */
/* libcurl <-> libuv                                                      */

static void check_multi(struct shoal_hub *h);
static void pump(struct shoal_hub *h);
static void kick(struct shoal_hub *h);

static void on_handle_closed(uv_handle_t *handle)
{
    struct shoal_hub *h = handle->data;

    if (handle->type == UV_POLL)
        free(hub_container_of((uv_poll_t *)handle, struct sock_ctx, poll));
    if (--h->closing_handles == 0 && h->freeing) {
        free(h->endpoint);
        free(h->endpoint_shown);
        free(h->ep_scheme);
        free(h->ep_host);
        free(h->ep_port);
        free(h->ca_file);
        free(h->empty_fetches);
        free(h);
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct sock_ctx *sc = hub_container_of(p, struct sock_ctx, poll);
    struct shoal_hub *h = sc->hub;
    int flags = 0, running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(h->multi, sc->fd, flags, &running);
    check_multi(h);
}

static void sock_close(struct shoal_hub *h, struct sock_ctx *sc)
{
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        h->socks = sc->next;
    if (sc->next)
        sc->next->prev = sc->prev;
    uv_poll_stop(&sc->poll);
    h->closing_handles++;
    uv_close((uv_handle_t *)&sc->poll, on_handle_closed);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct shoal_hub *h = userp;
    struct sock_ctx *sc = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            sock_close(h, sc);
            curl_multi_assign(h->multi, s, NULL);
        }
        return 0;
    }
    if (!sc) {
        sc = calloc(1, sizeof(*sc));
        if (!sc)
            return -1;
        sc->fd = s;
        sc->hub = h;
        if (uv_poll_init_socket(h->loop, &sc->poll, s) != 0) {
            free(sc);
            return -1;
        }
        sc->poll.data = h;
        sc->next = h->socks;
        if (h->socks)
            h->socks->prev = sc;
        h->socks = sc;
        curl_multi_assign(h->multi, s, sc);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&sc->poll, events, on_poll);
    return 0;
}

static void on_curl_timer_fire(uv_timer_t *t)
{
    struct shoal_hub *h = t->data;
    int running;

    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi(h);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct shoal_hub *h = userp;

    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&h->curl_timer);
    else
        uv_timer_start(&h->curl_timer, on_curl_timer_fire, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* per-response callbacks                                                 */

static bool header_is(const char *line, size_t n, const char *name, const char **val,
                      size_t *vlen)
{
    size_t k = strlen(name);

    if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return false;
    const char *v = line + k + 1;
    const char *e = line + n;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *val = v;
    *vlen = (size_t)(e - v);
    return true;
}

static void copy_field(char *dst, size_t cap, const char *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = isprint((unsigned char)v[i]) ? v[i] : '?';
    dst[n] = '\0';
}

static long parse_retry_after(const char *v, size_t n)
{
    char tmp[64];
    size_t i;
    bool digits = n > 0;

    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, v, n);
    tmp[n] = '\0';
    for (i = 0; i < n; i++)
        if (!isdigit((unsigned char)tmp[i]))
            digits = false;
    if (digits) {
        long s = n > 7 ? 9999999L : strtol(tmp, NULL, 10);
        return s * 1000;
    }
    time_t when = curl_getdate(tmp, NULL);
    if (when < 0)
        return -1;
    time_t now = time(NULL);
    return when > now ? (long)(when - now) * 1000 : 0;
}

/* The first byte's offset of "bytes A-B/S" (S may be "*"), into |*start|.
 * False for anything else: a Content-Range we cannot read places the body
 * nowhere, and is treated as missing. */
static bool parse_cr_start(const char *v, size_t n, uint64_t *start)
{
    uint64_t a = 0, b = 0;
    size_t i = 0, k;

    if (n < 6 || strncasecmp(v, "bytes", 5) != 0)
        return false;
    for (i = 5; i < n && v[i] == ' '; i++)
        ;
    /* At most 19 digits each: no overflow of a uint64_t. */
    for (k = 0; i < n && isdigit((unsigned char)v[i]) && k < 19; i++, k++)
        a = a * 10 + (uint64_t)(v[i] - '0');
    if (k == 0 || i >= n || v[i++] != '-')
        return false;
    for (k = 0; i < n && isdigit((unsigned char)v[i]) && k < 19; i++, k++)
        b = b * 10 + (uint64_t)(v[i] - '0');
    if (k == 0 || i >= n || v[i] != '/' || b < a)
        return false;
    *start = a;
    return true;
}

/* A header's decimal value (at most 19 digits: no overflow). */
static bool parse_u64(const char *v, size_t n, uint64_t *out)
{
    uint64_t x = 0;

    if (n == 0 || n > 19)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)v[i]))
            return false;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *out = x;
    return true;
}

/* The URL of the rel="next" link of a Link header value ("<u1>; rel=\"next\",
 * <u2>; rel=\"prev\""), malloc'd, or NULL: how the Hub pages /tree. */
static char *link_next(const char *v, size_t n)
{
    const char *e = v + n;

    while (v < e) {
        const char *lt = memchr(v, '<', (size_t)(e - v)), *gt, *end;
        if (!lt || !(gt = memchr(lt, '>', (size_t)(e - lt))))
            return NULL;
        /* This link's parameters run to the next '<' (a URL holds none). */
        end = memchr(gt, '<', (size_t)(e - gt));
        if (!end)
            end = e;
        for (const char *q = gt; q + 8 <= end; q++) {
            if (strncasecmp(q, "rel=", 4) != 0)
                continue;
            q += 4;
            if (*q == '"')
                q++;
            if ((size_t)(end - q) >= 4 && strncasecmp(q, "next", 4) == 0 &&
                (q + 4 == end || q[4] == '"' || q[4] == ';' || q[4] == ',' || q[4] == ' '))
                return gt - lt - 1 > 0 ? strndup(lt + 1, (size_t)(gt - lt - 1)) : NULL;
        }
        v = end;
    }
    return NULL;
}

static size_t on_header(char *line, size_t size, size_t nitems, void *ud)
{
    struct job *j = ud;
    size_t n = size * nitems;
    const char *v;
    size_t vl;

    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        /* A new response (e.g. after 100 Continue): forget the last one. */
        const char *sp = memchr(line, ' ', n);
        j->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        free(j->location);
        j->location = NULL;
        free(j->link_next);
        j->link_next = NULL;
        j->ctype[0] = '\0';
        j->retry_after_ms = -1;
        j->err_code[0] = j->err_msg[0] = '\0';
        j->have_cr = false;
        j->linked_etag[0] = j->etag[0] = j->repo_commit[0] = '\0';
        j->has_linked_size = j->has_clen = false;
    } else if (header_is(line, n, "Location", &v, &vl)) {
        free(j->location);
        j->location = strndup(v, vl);
    } else if (j->kind == JOB_API && header_is(line, n, "Link", &v, &vl)) {
        char *next = link_next(v, vl);
        if (next) {
            free(j->link_next);
            j->link_next = next;
        }
    } else if (header_is(line, n, "Content-Type", &v, &vl)) {
        copy_field(j->ctype, sizeof(j->ctype), v, vl);
    } else if (header_is(line, n, "Retry-After", &v, &vl)) {
        j->retry_after_ms = parse_retry_after(v, vl);
    } else if (header_is(line, n, "X-Error-Code", &v, &vl)) {
        copy_field(j->err_code, sizeof(j->err_code), v, vl);
    } else if (header_is(line, n, "X-Error-Message", &v, &vl)) {
        copy_field(j->err_msg, sizeof(j->err_msg), v, vl);
    } else if (header_is(line, n, "Content-Range", &v, &vl)) {
        uint64_t a;
        j->have_cr = parse_cr_start(v, vl, &a);
        j->cr_start = j->have_cr ? a : 0;
    } else if (j->kind == JOB_HEAD) {
        if (header_is(line, n, "X-Linked-Etag", &v, &vl))
            copy_field(j->linked_etag, sizeof j->linked_etag, v, vl);
        else if (header_is(line, n, "ETag", &v, &vl))
            copy_field(j->etag, sizeof j->etag, v, vl);
        else if (header_is(line, n, "X-Repo-Commit", &v, &vl))
            copy_field(j->repo_commit, sizeof j->repo_commit, v, vl);
        else if (header_is(line, n, "X-Linked-Size", &v, &vl))
            j->has_linked_size = parse_u64(v, vl, &j->linked_size);
        else if (header_is(line, n, "Content-Length", &v, &vl))
            j->has_clen = parse_u64(v, vl, &j->clen);
    }
    return n;
}

static bool is_html(const char *ctype)
{
    return strncasecmp(ctype, "text/html", 9) == 0 ||
           strncasecmp(ctype, "application/xhtml", 17) == 0;
}

static bool path_is_html(const char *path)
{
    size_t n = strlen(path);
    return (n >= 5 && strcasecmp(path + n - 5, ".html") == 0) ||
           (n >= 4 && strcasecmp(path + n - 4, ".htm") == 0);
}

/* The first bytes of |b| (|n|), for a message: one line, printable. */
static void body_shown(const uint8_t *b, size_t n, char *out, size_t cap)
{
    size_t k = 0;

    for (size_t i = 0; i < n && k + 4 < cap && i < 80; i++) {
        unsigned char c = b[i];
        if (c == '\r' || c == '\n' || c == '\t')
            c = ' ';
        if (k > 0 && c == ' ' && out[k - 1] == ' ')
            continue;
        out[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (n > 80 && k + 4 < cap)
        k += (size_t)snprintf(out + k, cap - k, "...");
    out[k] = '\0';
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct job *j = ud;
    size_t n = size * nmemb;

    if (j->status < 200 || j->status >= 300) {
        /* Redirect or error body: keep a little for the message. */
        size_t room = HUB_ERRBODY_MAX - j->body.len;
        if (room > 0)
            shoal_buf_append(&j->body, p, n < room ? n : room);
        return n;
    }
    if (j->kind == JOB_HEAD)
        return n; /* no body is asked for */
    if (j->kind == JOB_API) {
        if (shoal_buf_append(&j->body, p, n) != 0)
            return 0;
        return n;
    }
    /* JOB_RANGE: hand over the part of [pos, pos+n) inside our range. */
    uint64_t want_lo = j->off + j->got;
    if (!j->body_started) {
        j->body_started = true;
        /* A web page where file bytes were asked for (a login page, a
         * captive portal, a web UI at the endpoint): no retry cures it,
         * and its bytes are not the file's. Kept for the message. A file
         * that is itself a page may be served as one. */
        if (is_html(j->ctype) && !path_is_html(j->fetch->path)) {
            shoal_buf_append(&j->body, p, n < 120 ? n : 120);
            j->aborted = j->html = true;
            j->abort_rv = SHOAL_EPROTO;
            return 0;
        }
        /* A 200 is the whole file from byte 0; a 206 starts where its
         * Content-Range says. A 206 without one is refused: taking it to
         * start where we asked would write a misplaced body as good bytes
         * (the chunk hashes would catch it, after the origin was paid). */
        if (j->status == 206 && !j->have_cr) {
            j->aborted = j->no_cr = true;
            j->abort_rv = SHOAL_EPROTO;
            return 0;
        }
        j->pos = j->body_start = j->status == 206 ? j->cr_start : 0;
        /* Reading up to the bytes asked for costs every byte before them,
         * whether the origin ignored Range (200) or answered from an
         * earlier offset (206): refused past range_skip_max, not paid. */
        if (j->pos < want_lo && want_lo - j->pos > j->hub->cfg.range_skip_max) {
            j->aborted = j->no_range = true;
            j->abort_rv = SHOAL_EPROTO;
            return 0;
        }
    }
    uint64_t want_hi = j->off + j->len;
    uint64_t lo = j->pos, hi = j->pos + n;
    j->pos = hi;
    if (lo > want_lo)
        return 0; /* a gap: the server skipped bytes we need */
    if (hi <= want_lo)
        return n;
    uint64_t s = want_lo, e = hi < want_hi ? hi : want_hi;
    int rv = j->fetch->on_data(j->fetch->user, s, (const uint8_t *)p + (s - lo), (size_t)(e - s));
    j->got += e - s;
    j->hub->stats.bytes += e - s;
    if (rv != 0) {
        j->aborted = true;
        j->abort_rv = rv;
        return 0;
    }
    if (j->got == j->len && e < hi) {
        j->done_early = true;
        return 0;
    }
    return n;
}

/* ---------------------------------------------------------------------- */
/* starting, retrying and finishing jobs                                  */

/* An URL's scheme, host and port (the scheme's default if it names none). */
struct url_origin {
    char *scheme, *host, *port;
};

static bool url_origin_get(const char *url, struct url_origin *o)
{
    CURLU *u = curl_url();
    bool ok = false;

    memset(o, 0, sizeof *o);
    if (!u)
        return false;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &o->scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &o->host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &o->port, CURLU_DEFAULT_PORT) == CURLUE_OK)
        ok = true;
    curl_url_cleanup(u);
    return ok;
}

static void url_origin_free(struct url_origin *o)
{
    curl_free(o->scheme);
    curl_free(o->host);
    curl_free(o->port);
}

bool shoal_hub_token_follows(const char *endpoint, const char *from, const char *to)
{
    struct url_origin ep = {0}, fr = {0}, t = {0};
    bool yes = false;

    if (!url_origin_get(endpoint, &ep) || !url_origin_get(from, &fr) || !url_origin_get(to, &t))
        goto out;
    if (strcasecmp(t.host, ep.host) != 0)
        goto out;
    /* Once over TLS, never back to plain text: a downgrade would put the
     * token on the wire in the clear, wherever it goes. */
    if (strcasecmp(fr.scheme, "https") == 0 && strcasecmp(t.scheme, "http") == 0)
        goto out;
    if (strcasecmp(t.scheme, ep.scheme) == 0)
        yes = strcmp(t.port, ep.port) == 0;
    else if (strcasecmp(ep.scheme, "http") == 0 && strcasecmp(t.scheme, "https") == 0)
        yes = strcmp(t.port, ep.port) == 0 ||
              (strcmp(ep.port, "80") == 0 && strcmp(t.port, "443") == 0);
out:
    url_origin_free(&ep);
    url_origin_free(&fr);
    url_origin_free(&t);
    return yes;
}

/* libcurl's progress callback (at least once a second while a transfer
 * runs): ends a range attempt whose origin sent under slow_floor_bps over a
 * whole slow_window_ms. libcurl's own low-speed limit (stall_timeout_s)
 * only catches a transfer that has all but stopped. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct job *j = ud;
    const struct shoal_hub *h = j->hub;
    uint64_t now = now_ms(h), got = dlnow > 0 ? (uint64_t)dlnow : 0;

    (void)dltotal;
    (void)ultotal;
    (void)ulnow;
    if (j->kind != JOB_RANGE || h->cfg.slow_never ||
        now - j->win_start_ms < h->cfg.slow_window_ms)
        return 0;
    uint64_t rate = (got - j->win_bytes) * 1000 / (now - j->win_start_ms);
    if (rate < h->cfg.slow_floor_bps) {
        j->slow = true;
        j->slow_bps = rate;
        return 1; /* CURLE_ABORTED_BY_CALLBACK */
    }
    j->win_start_ms = now;
    j->win_bytes = got;
    return 0;
}

static int load_token(const struct shoal_hub_config *cfg, char **out, bool *exposed,
                      char *src, size_t srccap, char *ignored, size_t ignoredcap, char *watch,
                      size_t watchcap);

/* How often the token file is looked at (a stat): a rotated token is
 * sent within this long of being written. */
#define TOKEN_CHECK_MS 1000u

static bool same_file_version(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Reads the token file again when it changed since it was last read
 * (replaced, rewritten, created or removed), so that a token rotated on
 * disk is sent without restarting the daemon; says so through on_health.
 * A file that cannot be read, holds no token (caught mid-rewrite) or is
 * gone keeps the token read before (and is looked at again when it
 * changes). */
static void token_refresh(struct shoal_hub *h)
{
    uint64_t now = uv_now(h->loop);
    struct shoal_hub_config c;
    struct stat st;
    char src[SHOAL_HUB_TOKEN_SRC_MAX], watch[SHOAL_HUB_TOKEN_SRC_MAX];
    char *t = NULL;
    bool exposed = false, ok;
    int rv;

    if (!h->token_watch[0] || now - h->token_checked_ms < TOKEN_CHECK_MS)
        return;
    h->token_checked_ms = now;
    ok = stat(h->token_watch, &st) == 0;
    if (ok == h->token_st_ok && (!ok || same_file_version(&st, &h->token_st)))
        return;
    h->token_st_ok = ok;
    if (ok)
        h->token_st = st;
    memset(&c, 0, sizeof c);
    c.token_file = h->token_file;
    rv = load_token(&c, &t, &exposed, src, sizeof src, NULL, 0, watch, sizeof watch);
    if (rv == 0 && strcmp(watch, h->token_watch) != 0)
        rv = -ESTALE; /* the environment moved it: keep to what we started with */
    /* Caught mid-rewrite (empty), removed, or a login file now unreadable:
     * the token read before stays, rather than requests going without. */
    if (rv == 0 && !t)
        rv = ok ? -ENODATA : -ENOENT;
    if (rv == 0) {
        if (h->token) {
            sodium_memzero(h->token, strlen(h->token));
            free(h->token);
        }
        h->token = t;
        t = NULL;
        h->token_exposed = exposed;
        snprintf(h->token_src, sizeof h->token_src, "%s", src[0] ? src : h->token_watch);
    }
    if (h->cfg.on_health) {
        struct shoal_hub_health e = {
            .event = SHOAL_HUB_TOKEN_REREAD, .host = h->token_src,
            .error = rv == 0                ? ""
                     : rv == SHOAL_EPROTO ? "it holds characters not allowed in an HTTP header"
                     : rv == -ENODATA     ? "it holds no token (still being written?)"
                     : rv == -ENOENT      ? "it is gone"
                                          : shoal_strerror(rv)};
        h->cfg.on_health(h->cfg.health_user, &e);
    }
    if (t) {
        sodium_memzero(t, strlen(t));
        free(t);
    }
}

static int start_job(struct shoal_hub *h, struct job *j)
{
    int rv = -ENOMEM;
    char *hdr = NULL;

    attempt_reset(j);
    token_refresh(h);
    j->easy = curl_easy_init();
    if (!j->easy)
        goto fail;
    if (!j->offhost && h->token) {
        hdr = str_printf("Authorization: Bearer %s", h->token);
        if (!hdr)
            goto fail;
        struct curl_slist *l = curl_slist_append(j->hdrs, hdr);
        sodium_memzero(hdr, strlen(hdr));
        free(hdr);
        if (!l)
            goto fail;
        j->hdrs = l;
    }
    if (j->kind == JOB_RANGE) {
        char range[80];
        snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-%" PRIu64, j->off + j->got,
                 j->off + j->len - 1);
        struct curl_slist *l = curl_slist_append(j->hdrs, range);
        if (!l)
            goto fail;
        j->hdrs = l;
    } else if (j->kind == JOB_HEAD) {
        /* The size of the bytes themselves, not of a compressed answer,
         * as huggingface_hub asks. */
        struct curl_slist *l = curl_slist_append(j->hdrs, "Accept-Encoding: identity");
        if (!l)
            goto fail;
        j->hdrs = l;
        curl_easy_setopt(j->easy, CURLOPT_NOBODY, 1L);
    } else {
        struct curl_slist *l = curl_slist_append(j->hdrs, "Accept: application/json");
        if (!l)
            goto fail;
        j->hdrs = l;
    }
    j->got_at_start = j->got;
    curl_easy_setopt(j->easy, CURLOPT_URL, j->cur_url);
    curl_easy_setopt(j->easy, CURLOPT_HTTPHEADER, j->hdrs);
    curl_easy_setopt(j->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(j->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(j->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(j->easy, CURLOPT_USERAGENT, "shoal/0.1");
    curl_easy_setopt(j->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)h->cfg.connect_timeout_ms);
    curl_easy_setopt(j->easy, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(j->easy, CURLOPT_LOW_SPEED_TIME, (long)h->cfg.stall_timeout_s);
    curl_easy_setopt(j->easy, CURLOPT_BUFFERSIZE, (long)HUB_RECV_BUFFER);
    curl_easy_setopt(j->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(j->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(j->easy, CURLOPT_HEADERDATA, j);
    curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, j);
    j->win_start_ms = now_ms(h);
    curl_easy_setopt(j->easy, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(j->easy, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(j->easy, CURLOPT_XFERINFODATA, j);
    curl_easy_setopt(j->easy, CURLOPT_PRIVATE, j);
    curl_easy_setopt(j->easy, CURLOPT_ERRORBUFFER, j->curl_err);
    if (h->ca_file) {
        /* Only this bundle: a distribution's libcurl also trusts a
         * compiled-in CA directory, which would make the set trusted
         * depend on the build. */
        curl_easy_setopt(j->easy, CURLOPT_CAINFO, h->ca_file);
        curl_easy_setopt(j->easy, CURLOPT_CAPATH, NULL);
    }
    if (curl_multi_add_handle(h->multi, j->easy) != CURLM_OK) {
        rv = -EIO;
        goto fail;
    }
    j->state = JOB_RUNNING;
    if (j->redirects == 0)
        j->tries++; /* a redirect hop is part of the same attempt */
    h->inflight++;
    h->stats.requests++;
    return 0;
fail:
    attempt_reset(j);
    return rv;
}

static void arm_retry_timer(struct shoal_hub *h);

static void on_retry_timer(uv_timer_t *t)
{
    struct shoal_hub *h = t->data;
    uint64_t now = now_ms(h);

    while (h->delayed && h->delayed->due_ms <= now) {
        struct job *j = h->delayed;
        h->delayed = j->next;
        pend_push(h, j);   /* JOB_DELAYED -> JOB_QUEUED */
    }
    arm_retry_timer(h);
    pump(h);
}

static void arm_retry_timer(struct shoal_hub *h)
{
    if (!h->delayed) {
        uv_timer_stop(&h->retry_timer);
        return;
    }
    uint64_t now = now_ms(h);
    uint64_t due = h->delayed->due_ms;
    uv_timer_start(&h->retry_timer, on_retry_timer, due > now ? due - now : 0, 0);
}

static void delay_job(struct shoal_hub *h, struct job *j, uint64_t delay)
{
    struct job **pp;

    j->state = JOB_DELAYED;
    j->due_ms = now_ms(h) + delay;
    for (pp = &h->delayed; *pp && (*pp)->due_ms <= j->due_ms; pp = &(*pp)->next)
        ;
    j->next = *pp;
    *pp = j;
    arm_retry_timer(h);
}

/* Backoff before attempt |attempts|+1: base*2^(attempts-1) capped, full
 * jitter in [d/2, d], and never earlier than the server's Retry-After
 * (capped by retry_after_max_ms, not by backoff_max_ms). */
static uint64_t backoff_ms(struct shoal_hub *h, unsigned attempts, long retry_after_ms)
{
    uint64_t d = h->cfg.backoff_base_ms;
    unsigned i;

    for (i = 1; i < attempts && d < h->cfg.backoff_max_ms; i++)
        d *= 2;
    if (d > h->cfg.backoff_max_ms)
        d = h->cfg.backoff_max_ms;
    d = d / 2 + (d > 1 ? rng_next(h) % (d / 2 + 1) : 0);
    if (retry_after_ms >= 0) {
        uint64_t ra = (uint64_t)retry_after_ms;
        if (ra > h->cfg.retry_after_max_ms)
            ra = h->cfg.retry_after_max_ms;
        if (ra > d)
            d = ra;
    }
    return d;
}

/* ---- completion ---- */

static void api_complete(struct shoal_hub *h, struct job *j, int rv, const char *msg);
static void head_complete(struct shoal_hub *h, struct job *j, int rv, const char *msg);
static struct job *job_new(struct shoal_hub *h, enum job_kind kind, const char *url);
static void range_complete(struct shoal_hub *h, struct job *j, int rv, const char *msg);

static void job_complete(struct shoal_hub *h, struct job *j, int rv, const char *msg)
{
    all_unlink(h, j);
    if (j->kind != JOB_RANGE)
        j->api->live--;
    if (j->kind == JOB_API)
        api_complete(h, j, rv, msg);
    else if (j->kind == JOB_HEAD)
        head_complete(h, j, rv, msg);
    else
        range_complete(h, j, rv, msg);
}

/* What |j| asks for, for messages: the repo, revision and file (NULL for
 * an API request). */
static void job_what(const struct job *j, const char **repo, const char **rev, const char **path,
                     enum shoal_repo_type *type)
{
    if (j->kind == JOB_RANGE) {
        *repo = j->fetch->repo;
        *rev = j->fetch->rev;
        *path = j->fetch->path;
        *type = j->fetch->type;
        return;
    }
    *repo = j->api->repo;
    *rev = j->api->rev;
    *path = j->kind == JOB_HEAD ? j->api->rel->files[j->head_file].path : NULL;
    *type = j->api->type;
}

/* Text for a failed HTTP answer, naming what was asked. */
static int describe_http(const struct shoal_hub *h, const struct job *j, char *msg, size_t cap)
{
    const char *repo, *rev, *path = NULL;
    enum shoal_repo_type type;
    const char *hint = "";
    char moved[2 * HUB_HOST_MAX + 160] = "";
    int rv;

    job_what(j, &repo, &rev, &path, &type);
    if ((j->status == 401 || j->status == 403) && j->offhost && h->token) {
        /* The token was not sent, so it was not refused: say where the
         * request went and how to reach the repo with it. */
        if (j->downgraded)
            snprintf(moved, sizeof moved, "redirected from https down to http://%s, where the "
                     "token is not sent (never over http once a redirect chain reached https): "
                     "the origin should not send https requests back to http", j->host);
        else
            snprintf(moved, sizeof moved, "redirected to %s, where the token is not sent (only "
                     "to the endpoint's host %s:%s): if %s serves the repo, set hub-endpoint "
                     "to it", j->host, h->ep_host, h->ep_port, j->host);
    }
    switch (j->status) {
    case 401:
        rv = SHOAL_EPERM;
        if (moved[0]) {
            hint = moved;
        } else if (h->token) {
            /* Which token: one left in a login file may be an old one. */
            snprintf(moved, sizeof moved, "the token (from %.300s) was refused, or the repo does "
                     "not exist", h->token_src);
            hint = moved;
        } else {
            hint = "the repo is private or gated, or does not exist, and no token was given "
                   "(set HF_TOKEN or hub-token-file, or log in with `huggingface-cli login`, "
                   "which writes $HF_HOME/token)";
        }
        break;
    case 403:
        rv = SHOAL_EPERM;
        hint = moved[0] ? moved
               : strcmp(j->err_code, "GatedRepo") == 0
                   ? "gated repo: this token has not been granted access"
                   : "access denied";
        break;
    case 404:
        rv = SHOAL_ENOTFOUND;
        if (strcmp(j->err_code, "RevisionNotFound") == 0)
            hint = "no such revision";
        else if (strcmp(j->err_code, "EntryNotFound") == 0)
            hint = "no such file in this revision";
        else if (strcmp(j->err_code, "RepoNotFound") == 0)
            hint = "no such repo (or it is private)";
        else
            hint = "not found";
        break;
    case 416:
        rv = SHOAL_EHTTP;
        hint = "range not satisfiable: the file is shorter than expected";
        break;
    default:
        rv = SHOAL_EHTTP;
        hint = "unexpected HTTP status";
        break;
    }
    snprintf(msg, cap, "%s%s@%s%s%s: HTTP %ld%s%s: %s%s%s", type == SHOAL_REPO_DATASET ? "dataset " : "",
             repo, rev, path ? " file " : "", path ? path : "", j->status,
             j->err_code[0] ? " " : "", j->err_code, hint, j->err_msg[0] ? " — " : "",
             j->err_msg);
    return rv;
}

/* host[:port] of |url| into |out| ("?" when it does not parse). */
static void url_host(const char *url, char *out, size_t cap)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL;

    snprintf(out, cap, "?");
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        /* Only a port the URL names: the scheme's default says nothing. */
        if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
            snprintf(out, cap, "%s:%s", host, port);
        else
            snprintf(out, cap, "%s", host);
    }
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}

/* Points |j|'s current hop at |url| (copied) and notes its host.
 * Returns 0 or -ENOMEM (cur_url is then NULL). */
static int job_set_url(struct job *j, const char *url)
{
    free(j->cur_url);
    j->cur_url = strdup(url);
    if (!j->cur_url)
        return -ENOMEM;
    url_host(url, j->host, sizeof j->host);
    return 0;
}

/* ---- per-host holds ("not before", from Retry-After) ---- */

/* Until when |host| asked us to wait, or 0 if it did not (or that passed). */
static uint64_t hold_until(const struct shoal_hub *h, const char *host, uint64_t now)
{
    for (size_t i = 0; i < HUB_HOLDS; i++)
        if (h->holds[i].until_ms > now && strcmp(h->holds[i].host, host) == 0)
            return h->holds[i].until_ms;
    return 0;
}

static bool hold_any(const struct shoal_hub *h, uint64_t now)
{
    for (size_t i = 0; i < HUB_HOLDS; i++)
        if (h->holds[i].until_ms > now)
            return true;
    return false;
}

/* Holds every request to |host| until |until|: its own slot if it has one
 * (never shortened), else a free or passed one, else the one ending first
 * (more than HUB_HOLDS hosts rate-limiting us at once: the shortest hold is
 * the cheapest to forget, as its job still waits its own Retry-After). */
static void hold_set(struct shoal_hub *h, const char *host, uint64_t until, uint64_t now)
{
    struct host_hold *slot = NULL;

    for (size_t i = 0; i < HUB_HOLDS && !slot; i++)
        if (h->holds[i].until_ms > now && strcmp(h->holds[i].host, host) == 0)
            slot = &h->holds[i];
    if (slot) {
        if (until > slot->until_ms)
            slot->until_ms = until;
        return;
    }
    slot = &h->holds[0];
    for (size_t i = 0; i < HUB_HOLDS; i++) {
        if (h->holds[i].until_ms <= now) {
            slot = &h->holds[i];
            break;
        }
        if (h->holds[i].until_ms < slot->until_ms)
            slot = &h->holds[i];
    }
    snprintf(slot->host, sizeof slot->host, "%s", host);
    slot->until_ms = until;
}

static void health_emit(struct shoal_hub *h, enum shoal_hub_health_event ev, const char *host,
                        uint64_t failures, uint64_t now)
{
    struct shoal_hub_health e = {ev, host, ev == SHOAL_HUB_REACHABLE ? "" : h->fail_error,
                                 failures, now - h->run_start_ms};
    if (ev != SHOAL_HUB_REACHABLE) {
        h->last_report_ms = now ? now : 1;
        h->run_reported = true;
        h->unreported = 0;
    }
    if (h->cfg.on_health)
        h->cfg.on_health(h->cfg.health_user, &e);
}

/* Records how an attempt of |j| ended: |error| NULL for a request that
 * delivered what it asked for (every byte of a range, an API answer),
 * else what failed. Nothing else is noted: a redirect hop or an answer
 * without the bytes (a 404) shows nothing of whether files can be had, and
 * counted as an answer, the 302 of every file request ended the run just
 * before its CDN request failed again ("failing for 0 s (1 failed
 * request)" while nothing could be fetched). The first failure of a run is
 * reported at once, later ones at most once per health_summary_ms,
 * counted; so is the first failure of a run that starts soon after a
 * reported one, so a gateway that fails every other request (429s among
 * answers) costs a line or two per period, not two per request. */
static void health_note(struct shoal_hub *h, const struct job *j, const char *error)
{
    uint64_t now = now_ms(h);
    bool quiet = h->last_report_ms && now - h->last_report_ms < h->cfg.health_summary_ms;

    if (!error) {
        /* A transfer already running when its host asked us to wait may
         * still end well; the origin is not "reachable again" until the
         * wait it asked for is over. */
        if (h->failing && hold_until(h, j->host, now))
            return;
        /* An API answer shows that the API works, not the files. */
        if (h->failing && h->run_files && j->kind != JOB_RANGE)
            return;
        if (h->failing && h->run_reported) {
            char host[sizeof h->fail_host];
            url_host(j->cur_url, host, sizeof host);
            health_emit(h, SHOAL_HUB_REACHABLE, host, h->run_failures, now);
        }
        h->failing = false;
        return;
    }
    url_host(j->cur_url, h->fail_host, sizeof h->fail_host);
    snprintf(h->fail_error, sizeof h->fail_error, "%s", error);
    if (!h->failing) {
        h->failing = true;
        h->run_reported = false;
        h->run_files = false;
        h->run_start_ms = now;
        h->run_failures = 0;
    }
    if (j->kind == JOB_RANGE)
        h->run_files = true;
    h->run_failures++;
    h->unreported++;
    if (!quiet)
        health_emit(h, h->run_reported ? SHOAL_HUB_STILL_FAILING : SHOAL_HUB_FAILING,
                    h->fail_host, h->unreported, now);
}

bool shoal_hub_failing(const struct shoal_hub *h, char *why, size_t cap)
{
    if (!h || !h->failing)
        return false;
    snprintf(why, cap, "origin %s failing for %" PRIu64 " s (%" PRIu64 " failed request%s): %s",
             h->fail_host, (now_ms(h) - h->run_start_ms) / 1000, h->run_failures,
             h->run_failures == 1 ? "" : "s", h->fail_error);
    return true;
}

/* A TLS failure that trusting the right CA would cure. */
static bool tls_trust_error(CURLcode cc)
{
    return cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE ||
           cc == CURLE_SSL_ISSUER_ERROR;
}

/* What went wrong with a transfer that got no answer, for people. |detail|
 * is libcurl's error buffer ("" if it said nothing). */
static void transport_error(char *out, size_t cap, CURLcode cc, long os_errno,
                            const char *detail)
{
    if (tls_trust_error(cc))
        snprintf(out, cap, "TLS certificate not trusted: %.100s", *detail ? detail
                                                                       : curl_easy_strerror(cc));
    else if (cc == CURLE_OPERATION_TIMEDOUT)
        snprintf(out, cap, "timed out");
    else if (cc == CURLE_COULDNT_CONNECT && os_errno)
        snprintf(out, cap, "cannot connect: %s", strerror((int)os_errno));
    else if (cc == CURLE_COULDNT_RESOLVE_HOST)
        snprintf(out, cap, "cannot resolve the host name");
    else if (os_errno)
        snprintf(out, cap, "%s: %s", curl_easy_strerror(cc), strerror((int)os_errno));
    else
        snprintf(out, cap, "%s", curl_easy_strerror(cc));
}

static bool curl_retryable(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
        return true;
    default:
        return false;
    }
}

/* Decides what a finished attempt means: done, follow, retry, or fail. */
static void attempt_done(struct shoal_hub *h, struct job *j, CURLcode cc)
{
    char msg[HUB_MSG_MAX];
    int rv;
    bool progress = false;

    /* A slow attempt that delivered bytes is resumed from them, but is
     * still a failed attempt: an origin slow on every try is given up on. */
    bool resumed = j->kind == JOB_RANGE && j->got > j->got_at_start;
    if (resumed && !j->slow) {
        uint64_t left = j->len - j->got_at_start;
        uint64_t need = left / 4 < HUB_PROGRESS_MIN ? left / 4 : HUB_PROGRESS_MIN;
        progress = j->got - j->got_at_start >= (need ? need : 1);
    }
    long os_errno = 0;
    if (cc != CURLE_OK)
        curl_easy_getinfo(j->easy, CURLINFO_OS_ERRNO, &os_errno);
    /* The handle is done with whatever happens next: a redirect, a retry or
     * completion each start from a fresh one. */
    curl_multi_remove_handle(h->multi, j->easy);
    curl_easy_cleanup(j->easy);
    j->easy = NULL;
    j->state = JOB_IDLE;
    h->inflight--;

    if (j->kind == JOB_RANGE && j->fetch->err) {
        job_complete(h, j, j->fetch->err, j->fetch->msg);
        return;
    }
    if (j->aborted && j->no_range) {
        char what[96];
        if (j->status == 206)
            snprintf(what, sizeof what, "HTTP 206 from byte %" PRIu64, j->body_start);
        else
            snprintf(what, sizeof what, "HTTP %ld, the whole file", j->status);
        snprintf(msg, sizeof(msg), "%s@%s file %s: the origin ignores Range requests (%s, "
                 "for bytes from %" PRIu64 "): refused, as reading up to them would cost the "
                 "%" PRIu64 " bytes before", j->fetch->repo, j->fetch->rev, j->fetch->path,
                 what, j->off + j->got, j->off + j->got - j->body_start);
        health_note(h, j, "ignores Range requests");
        job_complete(h, j, j->abort_rv, msg);
        return;
    }
    if (j->aborted && j->html) {
        char first[100];
        body_shown(j->body.data, j->body.len, first, sizeof first);
        snprintf(msg, sizeof(msg), "%s@%s file %s: HTTP %ld %s from %s: \"%s\": a web page, not "
                 "the file's bytes (is hub-endpoint the gateway's API root, or is a login page "
                 "or captive portal in the way?)", j->fetch->repo, j->fetch->rev, j->fetch->path,
                 j->status, j->ctype, j->host, first);
        health_note(h, j, "answers with a web page (text/html)");
        job_complete(h, j, j->abort_rv, msg);
        return;
    }
    if (j->aborted && j->no_cr) {
        snprintf(msg, sizeof(msg), "%s@%s file %s: the origin answered a Range request (bytes "
                 "from %" PRIu64 ") with HTTP 206 but no valid Content-Range: refused, as where "
                 "its bytes start is unknown", j->fetch->repo, j->fetch->rev, j->fetch->path,
                 j->off + j->got);
        health_note(h, j, "HTTP 206 without Content-Range");
        job_complete(h, j, j->abort_rv, msg);
        return;
    }
    if (j->aborted) {
        snprintf(msg, sizeof(msg), "%s@%s file %s: stopped by the receiver at offset %" PRIu64 ": %s",
                 j->fetch->repo, j->fetch->rev, j->fetch->path, j->off + j->got,
                 shoal_strerror(j->abort_rv));
        job_complete(h, j, j->abort_rv, msg);
        return;
    }
    if (j->kind == JOB_RANGE && j->got == j->len) {
        health_note(h, j, NULL);
        job_complete(h, j, 0, NULL);
        return;
    }
    /* Before anything completes: a completion may start the next request. */
    char herr[160] = "";
    if (j->slow) {
        h->stats.slow++;
        snprintf(herr, sizeof herr, "slow: %" PRIu64 " B/s over %.1f s, under the floor of %"
                 PRIu64 " B/s (resumed on a new connection)", j->slow_bps,
                 h->cfg.slow_window_ms / 1000.0, h->cfg.slow_floor_bps);
    } else if (cc != CURLE_OK && !progress && !(cc == CURLE_WRITE_ERROR && j->kind == JOB_API))
        transport_error(herr, sizeof herr, cc, os_errno, j->curl_err);
    else if (cc == CURLE_OK && (j->status == 429 || j->status == 503) && j->retry_after_ms >= 0) {
        /* The origin says when to come back: nothing goes to this host
         * before then, not just this request's retry. */
        uint64_t ra = (uint64_t)j->retry_after_ms;
        if (ra > h->cfg.retry_after_max_ms)
            ra = h->cfg.retry_after_max_ms;
        hold_set(h, j->host, now_ms(h) + ra, now_ms(h));
        snprintf(herr, sizeof herr, "HTTP %ld, asked to wait %" PRIu64 " s%s: no request to it "
                 "before then", j->status, (ra + 999) / 1000,
                 (uint64_t)j->retry_after_ms > ra ? " (capped)" : "");
    } else if (cc == CURLE_OK && (j->status == 401 || j->status == 403 || j->status == 408 ||
                                j->status == 429 || j->status >= 500))
        snprintf(herr, sizeof herr, "HTTP %ld", j->status);
    else if (cc == CURLE_OK && j->kind == JOB_RANGE && j->status >= 200 && j->status < 300 &&
             !progress)
        snprintf(herr, sizeof herr, "HTTP %ld with a short body", j->status);
    if (herr[0])
        health_note(h, j, herr);
    /* The Hub answers a HEAD of an LFS file with a redirect to its CDN
     * that carries the file's X-Linked-Etag and X-Linked-Size: read there,
     * as huggingface_hub does (it follows only redirects on the same
     * site, a renamed repo's). */
    if (cc == CURLE_OK && j->kind == JOB_HEAD && j->status >= 300 && j->status < 400 &&
        (j->linked_etag[0] || j->etag[0]) && j->location &&
        !(j->location[0] == '/' && j->location[1] != '/')) {
        health_note(h, j, NULL);
        job_complete(h, j, 0, NULL);
        return;
    }
    if (cc == CURLE_OK && j->status >= 300 && j->status < 400 && j->status != 304 &&
        j->location) {
        CURLU *u = curl_url();
        char *next = NULL;
        rv = SHOAL_EPROTO;
        if (u && curl_url_set(u, CURLUPART_URL, j->cur_url, 0) == CURLUE_OK &&
            curl_url_set(u, CURLUPART_URL, j->location, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_URL, &next, 0) == CURLUE_OK &&
            (strncasecmp(next, "http://", 7) == 0 || strncasecmp(next, "https://", 8) == 0))
            rv = 0;
        curl_url_cleanup(u);
        if (rv == 0 && ++j->redirects > HUB_MAX_REDIRECTS)
            rv = SHOAL_EHTTP;
        if (rv != 0) {
            curl_free(next);
            snprintf(msg, sizeof(msg), "%s: bad or too many redirects (last to a %s URL)",
                     j->kind == JOB_RANGE ? j->fetch->path
                     : j->kind == JOB_HEAD ? j->api->rel->files[j->head_file].path
                                           : j->api->repo,
                     rv == SHOAL_EPROTO ? "malformed" : "valid");
            job_complete(h, j, rv, msg);
            return;
        }
        /* Once a chain leaves the endpoint the token stays behind. */
        bool keep = !j->offhost && shoal_hub_token_follows(h->endpoint, j->cur_url, next);
        bool down = strncasecmp(j->cur_url, "https:", 6) == 0 &&
                    strncasecmp(next, "http:", 5) == 0;
        rv = job_set_url(j, next);
        curl_free(next);
        if (rv != 0) {
            job_complete(h, j, -ENOMEM, "out of memory");
            return;
        }
        if (!keep && !j->offhost)
            j->downgraded = down;
        if (!keep)
            j->offhost = true;
        h->stats.redirects++;
        pend_push(h, j);
        return;
    }
    if (cc == CURLE_OK && j->status >= 200 && j->status < 300 && j->kind != JOB_RANGE) {
        health_note(h, j, NULL);
        job_complete(h, j, 0, NULL);
        return;
    }
    bool retry;
    const char *w_repo, *w_rev, *w_path;
    enum shoal_repo_type w_type;
    job_what(j, &w_repo, &w_rev, &w_path, &w_type);
    if (j->slow) {
        retry = true;
        snprintf(msg, sizeof(msg), "%s@%s file %s: too slow: %" PRIu64 " B/s over %.1f s, "
                 "under the floor of %" PRIu64 " B/s", j->fetch->repo, j->fetch->rev,
                 j->fetch->path, j->slow_bps, h->cfg.slow_window_ms / 1000.0,
                 h->cfg.slow_floor_bps);
        rv = -ETIMEDOUT;
    } else if (cc != CURLE_OK) {
        /* A write error on a range is a gap in the server's answer. */
        retry = curl_retryable(cc) || (cc == CURLE_WRITE_ERROR && j->kind == JOB_RANGE);
        /* Retrying cannot cure an untrusted certificate: say what would. */
        char hint[640] = "";
        if (tls_trust_error(cc))
            snprintf(hint, sizeof hint, " (%.200s%strusting %s%.200s: give the CA bundle (PEM) that "
                     "signed the origin's certificate with --hub-ca)", j->curl_err,
                     j->curl_err[0] ? "; " : "", h->ca_file ? "only the CAs of " : "the system's CAs",
                     h->ca_file ? h->ca_file : "");
        snprintf(msg, sizeof(msg), "%s@%s%s%s: transfer failed: %s%s", w_repo, w_rev,
                 w_path ? " file " : "", w_path ? w_path : "", curl_easy_strerror(cc), hint);
        if (cc == CURLE_WRITE_ERROR && j->kind == JOB_API) {
            job_complete(h, j, SHOAL_ETOOBIG, "API response larger than the limit");
            return;
        }
        /* An untrusted certificate is this node's setup (--hub-ca): what
         * it fetches may be left to nodes that trust it (swarm.c). */
        rv = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT
             : tls_trust_error(cc)          ? SHOAL_EUNTRUSTED
                                            : SHOAL_EHTTP;
    } else if (j->status == 429 || j->status == 408 || j->status >= 500 ||
               (j->status >= 200 && j->status < 300)) {
        /* A 2xx here is a range answer that ended short. */
        retry = true;
        snprintf(msg, sizeof(msg), "%s@%s%s%s: HTTP %ld%s", w_repo, w_rev,
                 w_path ? " file " : "", w_path ? w_path : "", j->status,
                 j->status < 300 ? " with a short body" : "");
        rv = SHOAL_EHTTP;
    } else {
        rv = describe_http(h, j, msg, sizeof(msg));
        job_complete(h, j, rv, msg);
        return;
    }
    if (!retry) {
        job_complete(h, j, rv, msg);
        return;
    }
    if (progress)
        j->attempts = 0;
    if (progress || (j->slow && resumed))
        h->stats.resumes++;
    uint64_t cap = h->cfg.max_attempts + (j->kind == JOB_RANGE ? j->len / HUB_ATTEMPT_BYTES : 0);
    if (++j->attempts >= h->cfg.max_attempts || j->tries >= cap) {
        char m2[HUB_MSG_MAX + 64];
        snprintf(m2, sizeof(m2), "gave up after %u attempts: %s", j->tries, msg);
        job_complete(h, j, rv, m2);
        return;
    }
    h->stats.retries++;
    long ra = j->retry_after_ms;
    /* Restart from the original URL: a signed CDN URL may have expired. */
    rv = job_set_url(j, j->url);
    j->offhost = false;
    j->downgraded = false;
    j->redirects = 0;
    attempt_reset(j);
    if (rv != 0) {
        job_complete(h, j, -ENOMEM, "out of memory");
        return;
    }
    /* Even a resume waits a little (the first backoff step), so a server
     * that keeps cutting answers is not hammered. */
    delay_job(h, j, backoff_ms(h, progress ? 1 : j->attempts, ra));
}

static void check_multi(struct shoal_hub *h)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct job *j = NULL;
        CURLcode cc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
        attempt_done(h, j, cc);
    }
    pump(h);
}

static void on_hold_timer(uv_timer_t *t)
{
    pump(t->data);
}

/* Starts queued jobs in FIFO order while slots are free, passing over
 * those whose host asked us to wait (they keep their place); the hold
 * timer wakes us when the first such wait ends. */
static void pump(struct shoal_hub *h)
{
    uint64_t now = now_ms(h), wake = 0;
    bool holds = hold_any(h, now);
    struct job **pp = &h->pend_head, *prev = NULL;

    while (!h->freeing && h->inflight < h->cfg.max_inflight && *pp) {
        struct job *j = *pp;
        uint64_t until = holds ? hold_until(h, j->host, now) : 0;
        if (until) {
            if (!wake || until < wake)
                wake = until;
            prev = j;
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        if (h->pend_tail == j)
            h->pend_tail = prev;
        j->next = NULL;
        j->state = JOB_IDLE;
        int rv = start_job(h, j);
        if (rv != 0) {
            job_complete(h, j, rv, "could not start an HTTP request");
            /* Completion may have cancelled queued jobs (|prev| among
             * them): walk again from the head. */
            pp = &h->pend_head;
            prev = NULL;
        }
    }
    if (wake && !h->freeing)
        uv_timer_start(&h->hold_timer, on_hold_timer, wake - now, 0);
}

/* ---- fetch completion ---- */

static void fetch_cancel_jobs(struct shoal_hub *h, struct fetch *f)
{
    struct job *j, *next;

    for (j = h->all; j; j = next) {
        next = j->next_all;
        if (j->fetch != f)
            continue;
        if (j->state == JOB_RUNNING) {
            curl_multi_remove_handle(h->multi, j->easy);
            h->inflight--;
        } else if (j->state != JOB_IDLE) {
            lists_remove(h, j);
        }
        all_unlink(h, j);
        job_free(j);
        f->jobs_left--;
    }
    arm_retry_timer(h);
}

static void range_complete(struct shoal_hub *h, struct job *j, int rv, const char *msg)
{
    struct fetch *f = j->fetch;

    job_free(j);
    f->jobs_left--;
    if (rv != 0 && f->err == 0) {
        f->err = rv;
        snprintf(f->msg, sizeof(f->msg), "%s", msg ? msg : shoal_strerror(rv));
        fetch_cancel_jobs(h, f);
    }
    if (f->jobs_left == 0) {
        f->on_done(f->user, f->err, f->err ? f->msg : NULL);
        fetch_free(f);
    }
}

/* ---- resolve ---- */

static int hexval(const char *s, size_t n, uint8_t *out, size_t outlen)
{
    if (n != 2 * outlen)
        return SHOAL_EPROTO;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
            return SHOAL_EPROTO;
    return shoal_unhex(out, outlen, s, n);
}

/* Why |p| (|n| bytes) cannot be a file of a release, or NULL when it can.
 * The rules are the manifest's (shoal_manifest_path_ok), which every node
 * must parse: at most SHOAL_HUB_MAX_PATH bytes, names of at most 255
 * (NAME_MAX), no control byte, no backslash, no empty, "." or ".."
 * component. |buf| (|cap| bytes) holds the text when it needs numbers. */
static const char *path_why(const char *p, size_t n, char *buf, size_t cap)
{
    size_t start = 0;

    if (n == 0)
        return "an empty name";
    if (strlen(p) != n)
        return "a NUL byte in it";
    if (n > SHOAL_HUB_MAX_PATH) {
        snprintf(buf, cap, "a path of %zu bytes, over shoal's limit of %u (that of its manifests)",
                 n, SHOAL_HUB_MAX_PATH);
        return buf;
    }
    if (p[0] == '/')
        return "an absolute path";
    for (size_t i = 0; i <= n; i++) {
        if (i < n) {
            unsigned char c = (unsigned char)p[i];
            if (c < 0x20 || c == 0x7f)
                return "a control byte in it";
            if (c == '\\')
                return "a backslash in it, which shoal's manifests refuse";
            if (c != '/')
                continue;
        }
        size_t len = i - start;
        if (len == 0)
            return "an empty folder name in it ('//' or a trailing '/')";
        if ((len == 1 && p[start] == '.') || (len == 2 && p[start] == '.' && p[start + 1] == '.'))
            return "a '.' or '..' component";
        if (len > 255) {
            snprintf(buf, cap, "a name of %zu bytes in it, over the 255 a Linux file name may hold",
                     len);
            return buf;
        }
        start = i + 1;
    }
    return NULL;
}

/* |p| (|n| bytes) for a message: control bytes escaped, cut after 96 bytes. */
static void path_shown(const char *p, size_t n, char *out, size_t cap)
{
    size_t k = 0;

    for (size_t i = 0; i < n && k + 8 < cap; i++) {
        unsigned char c = (unsigned char)p[i];
        if (i == 96) {
            k += (size_t)snprintf(out + k, cap - k, "...");
            break;
        }
        k += (size_t)snprintf(out + k, cap - k, c < 0x20 || c == 0x7f ? "\\x%02x" : "%c", c);
    }
    out[k < cap ? k : cap - 1] = '\0';
}

/* Fills |f| from one file entry: a sibling of the revision answer (|tree|
 * false: rfilename, size, blobId, lfs.sha256) or a /tree entry (path,
 * size, oid, lfs.oid). Returns 0; 1 when a sibling lacks its size or ids
 * (a gateway that ignores ?blobs=true: the caller lists /tree instead);
 * SHOAL_EPROTO or -ENOMEM with |msg|. */
static int file_from_json(const struct api_req *a, const struct shoal_json *e, bool tree,
                          struct shoal_hub_file *f, char *msg, size_t cap)
{
    const struct shoal_json *v;
    const char *s, *why;
    char shown[512], buf[160];
    uint64_t lsize;
    size_t n;

    s = shoal_json_str(shoal_json_get(e, tree ? "path" : "rfilename"), &n);
    if (!s) {
        snprintf(msg, cap, "%s@%s: a file entry of the API answer has no name", a->repo, a->rev);
        return SHOAL_EPROTO;
    }
    if ((why = path_why(s, n, buf, sizeof buf)) != NULL) {
        path_shown(s, n, shown, sizeof shown);
        snprintf(msg, cap, "%s@%s: the file '%s' cannot be part of a release: %s", a->repo,
                 a->rev, shown, why);
        return SHOAL_EPROTO;
    }
    f->path = strdup(s);
    if (!f->path) {
        snprintf(msg, cap, "out of memory");
        return -ENOMEM;
    }
    if (shoal_json_u64(shoal_json_get(e, "size"), &f->size) != 0) {
        if (!tree)
            return 1;
        snprintf(msg, cap, "%s@%s: file %s has no size in the /tree listing", a->repo, a->rev,
                 f->path);
        return SHOAL_EPROTO;
    }
    s = shoal_json_str(shoal_json_get(e, tree ? "oid" : "blobId"), &n);
    if (s) {
        if (hexval(s, n, f->blob_id, 20) != 0) {
            snprintf(msg, cap, "%s@%s: file %s has a bad %s", a->repo, a->rev, f->path,
                     tree ? "oid" : "blobId");
            return SHOAL_EPROTO;
        }
        f->has_blob_id = true;
    }
    v = shoal_json_get(e, "lfs");
    if (v && shoal_json_type_of(v) != SHOAL_JSON_NULL) {
        s = shoal_json_str(shoal_json_get(v, tree ? "oid" : "sha256"), &n);
        if (!s || hexval(s, n, f->sha256, 32) != 0 ||
            shoal_json_u64(shoal_json_get(v, "size"), &lsize) != 0 || lsize != f->size) {
            snprintf(msg, cap, "%s@%s: file %s has bad LFS info", a->repo, a->rev, f->path);
            return SHOAL_EPROTO;
        }
        f->lfs = true;
    }
    if (!f->lfs && !f->has_blob_id) {
        if (!tree)
            return 1;
        snprintf(msg, cap, "%s@%s: file %s has neither an LFS sha256 nor a blob id", a->repo,
                 a->rev, f->path);
        return SHOAL_EPROTO;
    }
    return 0;
}

/* Room for one more file in |a|'s release being listed. */
static int files_reserve(struct api_req *a)
{
    struct shoal_hub_release *r = a->rel;

    if (r->nfiles < a->capfiles)
        return 0;
    if (r->nfiles >= SHOAL_HUB_MAX_FILES)
        return SHOAL_ETOOBIG;
    size_t nc = a->capfiles ? a->capfiles * 2 : 256;
    if (nc > SHOAL_HUB_MAX_FILES)
        nc = SHOAL_HUB_MAX_FILES;
    struct shoal_hub_file *v = realloc(r->files, nc * sizeof(*v));
    if (!v)
        return -ENOMEM;
    memset(v + a->capfiles, 0, (nc - a->capfiles) * sizeof(*v));
    r->files = v;
    a->capfiles = nc;
    return 0;
}

/* The message for an API answer (|what|) that is not JSON (|rv|): a web
 * page says so, with its first bytes, and where it came from. */
static void api_not_json(const struct shoal_hub *h, const struct job *j, const char *what, int rv,
                         char *msg, size_t cap)
{
    const struct api_req *a = j->api;
    char first[100];

    body_shown(j->body.data, j->body.len, first, sizeof first);
    if (is_html(j->ctype) || (j->body.len > 0 && j->body.data[0] == '<'))
        snprintf(msg, cap, "%s@%s: the %s from %s is a web page (HTTP %ld %s: \"%s\"), not JSON: "
                 "is hub-endpoint %s the gateway's API root, or is a login page or captive "
                 "portal in the way?", a->repo, a->rev, what, j->host, j->status,
                 j->ctype[0] ? j->ctype : "without a Content-Type", first,
                 shoal_hub_endpoint(h));
    else
        snprintf(msg, cap, "%s@%s: the %s from %s is not valid JSON (%s; HTTP %ld %s: \"%s\")",
                 a->repo, a->rev, what, j->host, shoal_strerror(rv), j->status,
                 j->ctype[0] ? j->ctype : "without a Content-Type", first);
}

/* Builds |a->rel| from the revision answer: the commit always, the files
 * from its siblings unless |a->sha_only|. Sets |*tree| (with why in
 * |a->why_tree|) when the siblings cannot be trusted and /tree must list
 * the files: none, HUB_SIBLINGS_TRUSTED or more (the Hub truncates the
 * list of a large repo), or entries without size and ids (a gateway that
 * ignores ?blobs=true). */
static int parse_revision(struct shoal_hub *h, struct job *j, bool *tree, char *msg, size_t cap)
{
    struct api_req *a = j->api;
    struct shoal_json_doc *doc = NULL;
    struct shoal_hub_release *r = NULL;
    const struct shoal_json *root, *sib;
    const char *s;
    size_t n, i, nsib;
    int rv;

    *tree = false;
    rv = shoal_json_parse(&doc, (const char *)j->body.data, j->body.len, NULL);
    if (rv) {
        api_not_json(h, j, "API answer", rv, msg, cap);
        goto out;
    }
    root = shoal_json_root(doc);
    rv = SHOAL_EPROTO;
    s = shoal_json_str(shoal_json_get(root, "sha"), &n);
    if (!s || n != 40 || hexval(s, n, (uint8_t[20]){0}, 20) != 0) {
        snprintf(msg, cap, "%s@%s: the API answer has no commit sha", a->repo, a->rev);
        goto out;
    }
    r = calloc(1, sizeof(*r));
    if (!r)
        goto nomem;
    r->type = a->type;
    r->repo = strdup(a->repo);
    r->rev = strdup(a->rev);
    memcpy(r->commit, s, 40);
    r->commit[40] = '\0';
    if (!r->repo || !r->rev)
        goto nomem;
    a->rel = r;
    a->capfiles = 0;
    /* A commit asked for by id must come back as itself. */
    if (strlen(a->rev) == 40 && hexval(a->rev, 40, (uint8_t[20]){0}, 20) == 0 &&
        strcmp(a->rev, r->commit) != 0) {
        snprintf(msg, cap, "%s@%s: the Hub answered with commit %s", a->repo, a->rev, r->commit);
        goto out;
    }
    rv = 0;
    /* A pull by branch needs the commit only: its files come with the
     * signed manifest. */
    if (a->sha_only)
        goto out;
    sib = shoal_json_get(root, "siblings");
    nsib = shoal_json_type_of(sib) == SHOAL_JSON_ARRAY ? shoal_json_len(sib) : 0;
    if (nsib == 0 || nsib >= HUB_SIBLINGS_TRUSTED) {
        snprintf(a->why_tree, sizeof a->why_tree,
                 nsib ? "the API answer lists %zu files, a list the Hub may truncate"
                      : "the API answer lists no files",
                 nsib);
        *tree = true;
        goto out;
    }
    for (i = 0; i < nsib; i++) {
        if ((rv = files_reserve(a)) != 0) {
            if (rv == -ENOMEM)
                goto nomem;
            snprintf(msg, cap, "%s@%s: more than %u files", a->repo, a->rev, SHOAL_HUB_MAX_FILES);
            goto out;
        }
        rv = file_from_json(a, shoal_json_at(sib, i), false, &r->files[r->nfiles], msg, cap);
        r->nfiles++; /* its path is freed with the release */
        if (rv == 1 && !*tree) {
            snprintf(a->why_tree, sizeof a->why_tree,
                     "the API answer gives no size or blob id for %s: %s ignores ?blobs=true",
                     r->files[r->nfiles - 1].path, shoal_hub_endpoint(h));
            *tree = true;
        }
        if (rv == 1)
            rv = 0; /* the other names are read on: see api_req.named */
        if (rv)
            goto out;
    }
    if (*tree) {
        /* Every file is named: kept in case /tree is missing too. */
        a->named = r->files;
        a->nnamed = r->nfiles;
        r->files = NULL;
        r->nfiles = 0;
        a->capfiles = 0;
    }
    goto out;
nomem:
    rv = -ENOMEM;
    snprintf(msg, cap, "out of memory");
out:
    shoal_json_doc_free(doc);
    return rv;
}

/* Adds the files of one /tree page (a JSON array of {type, path, size,
 * oid, lfs}; folders skipped) to |a->rel|; |*added| is the page's entries. */
static int parse_tree_page(struct job *j, size_t *added, char *msg, size_t cap)
{
    struct api_req *a = j->api;
    struct shoal_json_doc *doc = NULL;
    const struct shoal_json *root, *e;
    const char *t;
    size_t n;
    int rv;

    *added = 0;
    rv = shoal_json_parse(&doc, (const char *)j->body.data, j->body.len, NULL);
    if (rv) {
        api_not_json(j->hub, j, "/tree answer", rv, msg, cap);
        goto out;
    }
    root = shoal_json_root(doc);
    rv = SHOAL_EPROTO;
    if (shoal_json_type_of(root) != SHOAL_JSON_ARRAY) {
        snprintf(msg, cap, "%s@%s: the /tree answer is not a list", a->repo, a->rev);
        goto out;
    }
    /* Entries of any kind: a page of folders alone still moves on. */
    *added = shoal_json_len(root);
    for (size_t i = 0; i < shoal_json_len(root); i++) {
        e = shoal_json_at(root, i);
        t = shoal_json_str(shoal_json_get(e, "type"), &n);
        /* Folders are listed too; a submodule has no bytes to fetch. */
        if (!t || n != 4 || memcmp(t, "file", 4) != 0)
            continue;
        if ((rv = files_reserve(a)) != 0) {
            snprintf(msg, cap, rv == -ENOMEM ? "out of memory" : "%s@%s: more than %u files",
                     a->repo, a->rev, SHOAL_HUB_MAX_FILES);
            goto out;
        }
        rv = file_from_json(a, e, true, &a->rel->files[a->rel->nfiles], msg, cap);
        a->rel->nfiles++;
        if (rv)
            goto out;
    }
    rv = 0;
out:
    shoal_json_doc_free(doc);
    return rv;
}

/* Queues the /tree request of |a|: |next| (a Link rel="next" of the last
 * page) or the first page at the resolved commit. */
static int start_tree(struct shoal_hub *h, struct api_req *a, const char *next, char *msg,
                      size_t cap)
{
    struct job *j;
    char *url = NULL;

    if (!next) {
        /* The commit's whole file list, recursive; pages follow Link. */
        url = str_printf("%s/api/%s/%s/tree/%s?recursive=true", h->endpoint, type_word(a->type),
                         a->repo, a->rel->commit);
    } else if (next[0] == '/' && next[1] != '/') {
        /* A path on the endpoint's own origin. */
        url = str_printf("%s://%s%s%s%s", h->ep_scheme, h->ep_host,
                         *h->ep_port ? ":" : "", h->ep_port, next);
    } else if (shoal_hub_token_follows(h->endpoint, h->endpoint, next) &&
               strncmp(next, h->endpoint, strlen(h->endpoint)) == 0) {
        url = strdup(next);
    } else {
        /* A gateway in front of the Hub may pass the Hub's own Link on
         * (https://huggingface.co/api/...): the same API path is asked of
         * the endpoint, where the token may go, not of that host. */
        const char *api = strstr(next, "/api/");
        const char *auth = strstr(next, "://");
        if (!auth || !api || api < auth || strncmp(api, "/api/", 5) != 0 ||
            memchr(auth + 3, '/', (size_t)(api - auth - 3)) != NULL) {
            char shown[256];
            shoal_url_redact(next, shown, sizeof shown);
            snprintf(msg, cap, "%s@%s: the /tree listing's next page is at %s, outside %s and "
                     "not an API path", a->repo, a->rev, shown, shoal_hub_endpoint(h));
            return SHOAL_EPROTO;
        }
        url = str_printf("%s%s", h->endpoint, api);
    }
    if (!url || !(j = job_new(h, JOB_API, url))) {
        free(url);
        snprintf(msg, cap, "out of memory");
        return -ENOMEM;
    }
    free(url);
    j->api = a;
    a->live++;
    all_link(h, j);
    pend_push(h, j);
    kick(h);
    return 0;
}

/* Whether the failed first page of /tree (|j|) says the gateway has no
 * such API (rather than that the repo, the token or the network failed,
 * which a HEAD per file would only repeat). */
static bool tree_missing(const struct job *j)
{
    return j->status == 400 || j->status == 404 || j->status == 405 || j->status == 410 ||
           j->status == 501;
}

/* Strips what HTTP wraps an entity tag in (W/ and the quotes), as
 * huggingface_hub does; |out| gets the bare value. */
static void etag_bare(const char *e, char *out, size_t cap)
{
    size_t n;

    if (strncmp(e, "W/", 2) == 0)
        e += 2;
    n = strlen(e);
    if (n >= 2 && e[0] == '"' && e[n - 1] == '"') {
        e++;
        n -= 2;
    }
    if (n >= cap)
        n = cap - 1;
    memcpy(out, e, n);
    out[n] = '\0';
}

/* Fills a file of |a| from its HEAD answer (|j|), as huggingface_hub reads
 * a file's metadata: X-Linked-Etag (the Hub's LFS sha256) else ETag (a
 * git blob id), X-Linked-Size else Content-Length. */
static int head_fill(struct api_req *a, const struct job *j, char *msg, size_t cap)
{
    struct shoal_hub_file *f = &a->rel->files[j->head_file];
    char tag[HUB_ETAG_MAX];
    size_t n;

    if (j->repo_commit[0] && strcmp(j->repo_commit, a->rel->commit) != 0) {
        snprintf(msg, cap, "%s@%s: HEAD of file %s: the answer is of commit %s, not %s", a->repo,
                 a->rev, f->path, j->repo_commit, a->rel->commit);
        return SHOAL_EPROTO;
    }
    etag_bare(j->linked_etag[0] ? j->linked_etag : j->etag, tag, sizeof tag);
    n = strlen(tag);
    f->lfs = f->has_blob_id = false;
    if (n == 64 && hexval(tag, n, f->sha256, 32) == 0)
        f->lfs = true;
    else if (n == 40 && hexval(tag, n, f->blob_id, 20) == 0)
        f->has_blob_id = true;
    if (!j->has_linked_size && !j->has_clen) {
        snprintf(msg, cap, "%s@%s: HEAD of file %s: HTTP %ld without X-Linked-Size or "
                 "Content-Length", a->repo, a->rev, f->path, j->status);
        return SHOAL_EPROTO;
    }
    f->size = j->has_linked_size ? j->linked_size : j->clen;
    if (!f->lfs && !f->has_blob_id) {
        snprintf(msg, cap, "%s@%s: HEAD of file %s: HTTP %ld without a sha256 or git blob id "
                 "(X-Linked-Etag \"%s\", ETag \"%s\")", a->repo, a->rev, f->path, j->status,
                 j->linked_etag, j->etag);
        return SHOAL_EPROTO;
    }
    return 0;
}

/* Queues the HEAD of |a|'s next file. */
static int head_start(struct shoal_hub *h, struct api_req *a)
{
    const struct shoal_hub_file *f = &a->rel->files[a->heads_next];
    char *epath = url_escape(f->path, true);
    char *url = NULL;
    struct job *j = NULL;

    if (epath)
        url = str_printf("%s/%s%s/resolve/%s/%s", h->endpoint,
                         a->type == SHOAL_REPO_DATASET ? "datasets/" : "", a->repo,
                         a->rel->commit, epath);
    if (url)
        j = job_new(h, JOB_HEAD, url);
    free(epath);
    free(url);
    if (!j)
        return -ENOMEM;
    j->api = a;
    j->head_file = a->heads_next++;
    a->heads_running++;
    a->live++;
    all_link(h, j);
    pend_push(h, j);
    kick(h);
    return 0;
}

/* Ends |a| when no HEAD is running: the release, or the first failure. */
static void heads_end(struct api_req *a)
{
    struct shoal_hub_release *rel = NULL;
    char msg[3 * HUB_MSG_MAX];

    if (a->heads_running > 0)
        return;
    if (a->heads_rv == 0) {
        rel = a->rel;
        a->rel = NULL;
    } else {
        snprintf(msg, sizeof msg, "%.255s, listing the files with GET /api/%s/%.200s/tree/%s "
                 "failed (%.511s), and reading them one by one with HEAD failed: %.1023s",
                 a->why_tree,
                 type_word(a->type), a->repo, a->rel->commit, a->tree_fail, a->heads_msg);
    }
    a->cb(a->user, a->heads_rv, rel, a->heads_rv == 0 ? NULL : msg);
    api_free(a);
}

/* HEADs the files of |a|, HUB_HEADS_PARALLEL at a time. */
static void start_heads(struct shoal_hub *h, struct api_req *a)
{
    a->heads_next = a->heads_running = 0;
    a->heads_rv = 0;
    while (a->heads_next < a->rel->nfiles && a->heads_running < HUB_HEADS_PARALLEL) {
        if (head_start(h, a) != 0) {
            a->heads_rv = -ENOMEM;
            snprintf(a->heads_msg, sizeof a->heads_msg, "out of memory");
            break;
        }
    }
    heads_end(a);
}

static void head_complete(struct shoal_hub *h, struct job *j, int rv, const char *msg)
{
    struct api_req *a = j->api;
    char pmsg[HUB_MSG_MAX];

    if (rv == 0) {
        rv = head_fill(a, j, pmsg, sizeof pmsg);
        msg = pmsg;
    }
    if (rv != 0 && a->heads_rv == 0) {
        a->heads_rv = rv;
        snprintf(a->heads_msg, sizeof a->heads_msg, "%s", msg ? msg : shoal_strerror(rv));
    }
    job_free(j);
    a->heads_running--;
    /* After a failure none starts: the release fails anyway. */
    if (a->heads_rv == 0 && a->heads_next < a->rel->nfiles && head_start(h, a) != 0) {
        a->heads_rv = -ENOMEM;
        snprintf(a->heads_msg, sizeof a->heads_msg, "out of memory");
    }
    heads_end(a);
}

static void api_complete(struct shoal_hub *h, struct job *j, int rv, const char *msg)
{
    struct api_req *a = j->api;
    struct shoal_hub_release *rel = NULL;
    char pmsg[HUB_MSG_MAX], tmsg[2 * HUB_MSG_MAX];
    bool tree = false, listing = a->rel != NULL;
    size_t added = 0;

    if (!listing) {
        /* The revision answer. */
        if (rv == 0) {
            rv = parse_revision(h, j, &tree, pmsg, sizeof pmsg);
            msg = pmsg;
        }
        if (rv == 0 && tree) {
            /* Files listed again from the start. */
            files_free(a->rel->files, a->rel->nfiles);
            a->rel->files = NULL;
            a->rel->nfiles = 0;
            a->capfiles = 0;
            rv = start_tree(h, a, NULL, pmsg, sizeof pmsg);
            if (rv == 0) {
                job_free(j);
                return;
            }
        }
    } else {
        /* A page of the /tree listing. */
        a->pages++;
        if (rv == 0) {
            rv = parse_tree_page(j, &added, pmsg, sizeof pmsg);
            msg = pmsg;
        }
        if (rv == 0 && j->link_next) {
            /* Bounded: every page lists something, and there are at
             * most HUB_TREE_PAGES_MAX of them. */
            if (added == 0 || a->pages >= HUB_TREE_PAGES_MAX) {
                rv = SHOAL_EPROTO;
                snprintf(pmsg, sizeof pmsg, "%s@%s: the /tree listing does not end (page %u %s)",
                         a->repo, a->rev, a->pages,
                         added ? "is past the limit" : "lists nothing and has a next page");
            } else {
                rv = start_tree(h, a, j->link_next, pmsg, sizeof pmsg);
                if (rv == 0) {
                    job_free(j);
                    return;
                }
            }
            msg = pmsg;
        }
        if (rv != 0 && a->pages == 1 && a->named && tree_missing(j)) {
            /* A gateway without /tree: a HEAD per named file instead. */
            snprintf(a->tree_fail, sizeof a->tree_fail, "%.511s",
                     msg ? msg : shoal_strerror(rv));
            files_free(a->rel->files, a->rel->nfiles);
            a->rel->files = a->named;
            a->rel->nfiles = a->capfiles = a->nnamed;
            a->named = NULL;
            a->nnamed = 0;
            job_free(j);
            start_heads(h, a);
            return;
        }
        if (rv != 0) {
            /* Say why /tree was asked at all: a gateway without it needs
             * to be told what it lacks. */
            snprintf(tmsg, sizeof tmsg, "%s, and listing the files with GET /api/%s/%s/tree/%s "
                     "failed: %s", a->why_tree, type_word(a->type), a->repo, a->rel->commit,
                     msg ? msg : shoal_strerror(rv));
            msg = tmsg;
        }
    }
    if (rv == 0) {
        rel = a->rel;
        a->rel = NULL;
    }
    job_free(j);
    a->cb(a->user, rv, rv == 0 ? rel : NULL, rv == 0 ? NULL : msg);
    api_free(a);
}

/* ---------------------------------------------------------------------- */
/* public API                                                             */

void shoal_hub_config_default(struct shoal_hub_config *c)
{
    memset(c, 0, sizeof(*c));
}

void shoal_hub_release_free(struct shoal_hub_release *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nfiles && r->files; i++)
        free(r->files[i].path);
    free(r->files);
    free(r->repo);
    free(r->rev);
    free(r);
}

static void trim_space(char *t);

static int read_token_file(const char *path, char **out, bool *exposed)
{
    char buf[HUB_TOKEN_MAX + 2];
    struct stat st;
    int fd, rv;
    ssize_t n;
    size_t len = 0;

    /* O_NONBLOCK: a FIFO at the path must not hang the start. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rv = SHOAL_EBADPATH;
        goto out;
    }
    /* huggingface_hub writes its token file with the umask's mode, often
     * 0644: the caller warns rather than refuses. */
    *exposed = (st.st_mode & (S_IRWXG | S_IRWXO)) != 0;
    while (len < sizeof(buf) - 1) {
        n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rv = -errno;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    /* The first line with text: blank lines and spaces around it are an
     * editor's or a template's, not the token's. */
    trim_space(buf);
    buf[strcspn(buf, "\r\n")] = '\0';
    if (strlen(buf) > HUB_TOKEN_MAX) {
        rv = SHOAL_ETOOBIG;
        goto out;
    }
    *out = strdup(buf);
    rv = *out ? 0 : -ENOMEM;
out:
    sodium_memzero(buf, sizeof(buf));
    close(fd);
    return rv;
}

const char *shoal_hub_ca_path(const struct shoal_hub_config *cfg, const char **from_env)
{
    static const char *const vars[] = {"CURL_CA_BUNDLE", "SSL_CERT_FILE"};
    const char *v;

    if (from_env)
        *from_env = NULL;
    if (cfg && cfg->ca_file)
        return cfg->ca_file;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        if ((v = getenv(vars[i])) && *v) {
            if (from_env)
                *from_env = vars[i];
            return v;
        }
    }
    return NULL;
}

int shoal_hub_ca_check(const char *path, char *why, size_t cap)
{
    static const char pem[] = "-----BEGIN CERTIFICATE-----";
    struct shoal_buf b;
    struct stat st;
    char block[65536];
    ssize_t n;
    int fd, rv;

    if (!path || !why)
        return -EINVAL;
    shoal_buf_init(&b, HUB_CA_MAX);
    /* O_NONBLOCK: a FIFO at the path must not hang the start. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        rv = -errno;
        snprintf(why, cap, "%s", strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rv = SHOAL_EBADPATH;
        snprintf(why, cap, "not a regular file");
        goto out;
    }
    for (;;) {
        n = read(fd, block, sizeof block);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rv = -errno;
            snprintf(why, cap, "%s", strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        rv = shoal_buf_append(&b, block, (size_t)n);
        if (rv != 0) {
            snprintf(why, cap, rv == -ENOMEM ? "out of memory" : "larger than %u MiB: not a CA "
                     "bundle", HUB_CA_MAX >> 20);
            goto out;
        }
    }
    /* libcurl would read any file and only fail at the first handshake,
     * with an error that does not name it: catch the wrong file here. */
    if (!b.len || !memmem(b.data, b.len, pem, sizeof pem - 1)) {
        rv = SHOAL_EPROTO;
        snprintf(why, cap, "holds no PEM certificate (%s)", pem);
        goto out;
    }
    rv = 0;
out:
    if (fd >= 0)
        close(fd);
    shoal_buf_free(&b);
    return rv;
}

int shoal_hub_ca_verify(const struct shoal_hub_config *cfg, char *msg, size_t cap)
{
    const char *env, *ca = shoal_hub_ca_path(cfg, &env);
    char why[256];
    int rv;

    if (!ca)
        return 0;
    rv = shoal_hub_ca_check(ca, why, sizeof why);
    if (rv != 0)
        snprintf(msg, cap, "CA bundle %s%s%s%s: %s", ca, env ? " (from $" : "", env ? env : "",
                 env ? ")" : "", why);
    return rv;
}

static bool token_ok(const char *t)
{
    for (; *t; t++)
        if ((unsigned char)*t < 0x21 || (unsigned char)*t > 0x7e)
            return false;
    return true;
}

/* Cuts the whitespace around |t| in place, as huggingface_hub does with
 * a token (an editor's newline, a template's spaces). */
static void trim_space(char *t)
{
    size_t n = strlen(t), a = 0;

    while (n > 0 && isspace((unsigned char)t[n - 1]))
        t[--n] = '\0';
    while (a < n && isspace((unsigned char)t[a]))
        a++;
    memmove(t, t + a, n - a + 1);
}

/* The file huggingface_hub keeps the token of `huggingface-cli login` in,
 * as it finds it: $HF_TOKEN_PATH, else "token" in its home folder
 * (shoal_hf_home_path: $HF_HOME, $XDG_CACHE_HOME/huggingface,
 * ~/.cache/huggingface). Writes its path to |out| and what named it to
 * |var| (|varcap| bytes); false when no path can be made (no HOME) or it
 * does not fit. */
static bool login_token_path(char *out, size_t cap, char *var, size_t varcap)
{
    const char *v;
    int n;

    if ((v = getenv("HF_TOKEN_PATH")) && *v) {
        snprintf(var, varcap, "$HF_TOKEN_PATH");
        n = snprintf(out, cap, "%s", v);
        return n > 0 && (size_t)n < cap;
    }
    return shoal_hf_home_path(out, cap, "token", var, varcap) == 0;
}

/* The token a hub made with |cfg| sends (see shoal_hub_config.token), into
 * |*out| (NULL: none), trimmed; |src| (|srccap| bytes, may be NULL) says
 * where it came from ("$HF_TOKEN", "the token file PATH", "PATH
 * ($HF_HOME/token)"), also on failure; "" for none. Returns 0,
 * SHOAL_EPROTO (a byte an HTTP header cannot carry left after the trim),
 * or an error reading the file (a login file that is not there is no
 * token, not an error). */
static int load_token(const struct shoal_hub_config *cfg, char **out, bool *exposed,
                      char *src, size_t srccap, char *ignored, size_t ignoredcap, char *watch,
                      size_t watchcap)
{
    const char *env;
    char path[SHOAL_HUB_TOKEN_SRC_MAX - 64], var[48];
    char from[SHOAL_HUB_TOKEN_SRC_MAX] = "";
    char *t = NULL;
    int rv = 0;
    bool implicit = false;

    *out = NULL;
    if (watch && watchcap)
        watch[0] = '\0';
    if (cfg && cfg->token) {
        snprintf(from, sizeof from, "the token given");
        t = strdup(cfg->token);
        rv = t ? 0 : -ENOMEM;
    } else if (cfg && cfg->token_file) {
        snprintf(from, sizeof from, "the token file %s", cfg->token_file);
        if (watch && watchcap)
            snprintf(watch, watchcap, "%s", cfg->token_file);
        rv = read_token_file(cfg->token_file, &t, exposed);
    } else if ((env = getenv("HF_TOKEN")) && *env) {
        snprintf(from, sizeof from, "$HF_TOKEN");
        t = strdup(env);
        rv = t ? 0 : -ENOMEM;
    } else if ((env = getenv("HUGGING_FACE_HUB_TOKEN")) && *env) {
        /* Its older name: huggingface_hub marks it deprecated but still
         * reads it, after $HF_TOKEN and before the login file. */
        snprintf(from, sizeof from, "$HUGGING_FACE_HUB_TOKEN");
        t = strdup(env);
        rv = t ? 0 : -ENOMEM;
    } else if (login_token_path(path, sizeof path, var, sizeof var)) {
        /* huggingface_hub's order after $HF_TOKEN: the login file. */
        snprintf(from, sizeof from, "%s (%s)", path, var);
        if (watch && watchcap)
            snprintf(watch, watchcap, "%s", path);
        rv = read_token_file(path, &t, exposed);
        implicit = strcmp(var, "$HF_TOKEN_PATH") != 0;
        if (rv == -ENOENT || rv == -ENOTDIR) {
            rv = 0;
            from[0] = '\0';
        } else if (rv != 0 && implicit) {
            /* A login file nobody named (a service user whose HOME is
             * root's, unreadable): no token, said in the log, rather than
             * a node that will not start even for public models. */
            if (ignored && ignoredcap)
                snprintf(ignored, ignoredcap, "%s (%s): %s", path, var,
                         rv == SHOAL_EBADPATH ? "not a regular file" : shoal_strerror(rv));
            rv = 0;
            t = NULL;
            *exposed = false;
            from[0] = '\0';
        }
    }
    if (src && srccap)
        snprintf(src, srccap, "%s", from);
    if (rv)
        return rv;
    if (t)
        trim_space(t);
    if (t && !*t) {
        free(t);
        t = NULL;
    }
    if (t && (strlen(t) > HUB_TOKEN_MAX || !token_ok(t))) {
        sodium_memzero(t, strlen(t));
        free(t);
        if (!implicit)
            return SHOAL_EPROTO;
        if (ignored && ignoredcap)
            snprintf(ignored, ignoredcap, "%s: it holds characters not allowed in an HTTP "
                     "header", from);
        if (src && srccap)
            src[0] = '\0';
        *exposed = false;
        return 0;
    }
    *out = t;
    return 0;
}

int shoal_hub_token_verify(const struct shoal_hub_config *cfg, char *msg, size_t cap)
{
    char src[SHOAL_HUB_TOKEN_SRC_MAX];
    char *t = NULL;
    bool exposed = false;
    int rv = load_token(cfg, &t, &exposed, src, sizeof src, NULL, 0, NULL, 0);

    if (t) {
        sodium_memzero(t, strlen(t));
        free(t);
    }
    if (rv == 0)
        return 0;
    if (cfg && !cfg->token && cfg->token_file)
        snprintf(msg, cap, "hub token file %s: %s", cfg->token_file,
                 rv == SHOAL_EPROTO ? "the token holds characters not allowed in an HTTP header "
                                      "(spaces around it are trimmed; inside it they are not "
                                      "allowed)"
                 : rv == SHOAL_EBADPATH ? "not a regular file"
                                        : shoal_strerror(rv));
    else
        snprintf(msg, cap, "hub token from %s: %s", src[0] ? src : "?",
                 rv == SHOAL_EPROTO ? "it holds characters not allowed in an HTTP header (spaces "
                                      "around it are trimmed; inside it they are not allowed)"
                 : rv == SHOAL_EBADPATH ? "not a regular file"
                                        : shoal_strerror(rv));
    return rv;
}

int shoal_hub_new(struct shoal_hub **out, uv_loop_t *loop, const struct shoal_hub_config *cfg)
{
    static bool curl_ready;
    struct shoal_hub *h = NULL;
    const char *ep, *env;
    CURLU *u = NULL;
    int rv = -EINVAL;

    if (!out || !loop)
        return -EINVAL;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return -ENOMEM;
        curl_ready = true;
    }
    h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->loop = loop;
    if (cfg)
        h->cfg = *cfg;
    h->cfg.endpoint = h->cfg.token = h->cfg.token_file = h->cfg.ca_file = NULL;
    if (!h->cfg.max_inflight)
        h->cfg.max_inflight = 4;
    if (!h->cfg.max_attempts)
        h->cfg.max_attempts = 8;
    if (!h->cfg.health_summary_ms)
        h->cfg.health_summary_ms = 30000;
    if (!h->cfg.backoff_base_ms)
        h->cfg.backoff_base_ms = 250;
    if (!h->cfg.backoff_max_ms)
        h->cfg.backoff_max_ms = 30000;
    if (!h->cfg.retry_after_max_ms)
        h->cfg.retry_after_max_ms = HUB_RETRY_AFTER_MAX_MS;
    if (!h->cfg.connect_timeout_ms)
        h->cfg.connect_timeout_ms = 10000;
    if (!h->cfg.stall_timeout_s)
        h->cfg.stall_timeout_s = 30;
    if (!h->cfg.range_skip_max)
        h->cfg.range_skip_max = HUB_RANGE_SKIP_MAX;
    if (!h->cfg.slow_floor_bps)
        h->cfg.slow_floor_bps = HUB_SLOW_FLOOR_BPS;
    if (!h->cfg.slow_window_ms)
        h->cfg.slow_window_ms = HUB_SLOW_WINDOW_MS;
    h->rng = h->cfg.seed ? h->cfg.seed
                         : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ uv_hrtime();

    ep = cfg && cfg->endpoint ? cfg->endpoint : NULL;
    if (!ep && (env = getenv("HF_ENDPOINT")) && *env)
        ep = env;
    if (!ep)
        ep = SHOAL_HUB_DEFAULT_ENDPOINT;
    h->endpoint = strdup(ep);
    if (!h->endpoint) {
        rv = -ENOMEM;
        goto fail;
    }
    while (*h->endpoint && h->endpoint[strlen(h->endpoint) - 1] == '/')
        h->endpoint[strlen(h->endpoint) - 1] = '\0';
    h->endpoint_shown = malloc(strlen(h->endpoint) + 4);
    if (!h->endpoint_shown) {
        rv = -ENOMEM;
        goto fail;
    }
    shoal_url_redact(h->endpoint, h->endpoint_shown, strlen(h->endpoint) + 4);
    u = curl_url();
    if (!u || curl_url_set(u, CURLUPART_URL, h->endpoint, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &h->ep_scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &h->ep_host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &h->ep_port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        (strcasecmp(h->ep_scheme, "http") != 0 && strcasecmp(h->ep_scheme, "https") != 0)) {
        rv = -EINVAL;
        goto fail;
    }
    {
        /* Keep our own copies: curl strings must go back through curl_free. */
        char *s = strdup(h->ep_scheme), *ho = strdup(h->ep_host), *p = strdup(h->ep_port);
        curl_free(h->ep_scheme);
        curl_free(h->ep_host);
        curl_free(h->ep_port);
        h->ep_scheme = s;
        h->ep_host = ho;
        h->ep_port = p;
        if (!s || !ho || !p) {
            rv = -ENOMEM;
            goto fail;
        }
    }

    rv = load_token(cfg, &h->token, &h->token_exposed, h->token_src, sizeof h->token_src,
                    h->token_ignored, sizeof h->token_ignored, h->token_watch,
                    sizeof h->token_watch);
    if (rv)
        goto fail;
    if (cfg && !cfg->token && cfg->token_file && !(h->token_file = strdup(cfg->token_file))) {
        rv = -ENOMEM;
        goto fail;
    }
    h->token_st_ok = h->token_watch[0] && stat(h->token_watch, &h->token_st) == 0;
    h->token_checked_ms = uv_now(loop);

    {
        char why[256];
        const char *ca = shoal_hub_ca_path(cfg, NULL);
        if (ca && (rv = shoal_hub_ca_check(ca, why, sizeof why)) != 0)
            goto fail;
        if (ca && !(h->ca_file = strdup(ca))) {
            rv = -ENOMEM;
            goto fail;
        }
    }

    h->multi = curl_multi_init();
    if (!h->multi) {
        rv = -ENOMEM;
        goto fail;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)h->cfg.max_inflight);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)h->cfg.max_inflight * 2);
    uv_timer_init(loop, &h->curl_timer);
    uv_timer_init(loop, &h->retry_timer);
    uv_timer_init(loop, &h->hold_timer);
    uv_timer_init(loop, &h->idle);
    h->curl_timer.data = h->retry_timer.data = h->hold_timer.data = h->idle.data = h;
    curl_url_cleanup(u);
    *out = h;
    return 0;
fail:
    curl_url_cleanup(u);
    if (h->token) {
        sodium_memzero(h->token, strlen(h->token));
        free(h->token);
    }
    if (h->multi)
        curl_multi_cleanup(h->multi);
    free(h->endpoint);
    free(h->endpoint_shown);
    free(h->ep_scheme);
    free(h->ep_host);
    free(h->ep_port);
    free(h->ca_file);
    free(h);
    return rv;
}

void shoal_hub_free(struct shoal_hub *h)
{
    struct job *j, *next;

    if (!h)
        return;
    h->freeing = true;
    for (j = h->all; j; j = next) {
        next = j->next_all;
        if (j->state == JOB_RUNNING)
            curl_multi_remove_handle(h->multi, j->easy);
        if (j->kind == JOB_RANGE) {
            /* Several jobs share a fetch: free it with its last job. */
            if (--j->fetch->jobs_left == 0)
                fetch_free(j->fetch);
        } else if (--j->api->live == 0) {
            /* A listing read with HEADs has several jobs. */
            api_free(j->api);
        }
        job_free(j);
    }
    h->all = NULL;
    for (size_t i = 0; i < h->nempty; i++)
        fetch_free(h->empty_fetches[i]);
    h->nempty = 0;
    /* Closing cached connections may call the socket callback, which closes
     * their polls; that is why handles are counted before freeing. */
    h->closing_handles++;
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    /* Whatever libcurl did not report removed is closed here. */
    while (h->socks)
        sock_close(h, h->socks);
    free(h->token_file);
    if (h->token) {
        sodium_memzero(h->token, strlen(h->token));
        free(h->token);
        h->token = NULL;
    }
    h->closing_handles += 4;
    uv_close((uv_handle_t *)&h->curl_timer, on_handle_closed);
    uv_close((uv_handle_t *)&h->retry_timer, on_handle_closed);
    uv_close((uv_handle_t *)&h->hold_timer, on_handle_closed);
    uv_close((uv_handle_t *)&h->idle, on_handle_closed);
    h->closing_handles--; /* the guard taken above */
}

void shoal_url_redact(const char *url, char *out, size_t cap)
{
    const char *sep = strstr(url, "://");
    const char *auth = sep ? sep + 3 : url;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL;

    for (const char *p = auth; p < auth + alen; p++)
        if (*p == '@')
            at = p;
    if (!at)
        snprintf(out, cap, "%s", url);
    else
        snprintf(out, cap, "%.*s***%s", (int)(auth - url), url, at);
}

const char *shoal_hub_endpoint(const struct shoal_hub *h)
{
    return h->endpoint_shown;
}

bool shoal_hub_token_exposed(const struct shoal_hub *h)
{
    return h->token_exposed;
}

const char *shoal_hub_token_source(const struct shoal_hub *h)
{
    return h->token ? h->token_src : "";
}

const char *shoal_hub_token_ignored(const struct shoal_hub *h)
{
    return h->token_ignored;
}

bool shoal_hub_has_token(const struct shoal_hub *h)
{
    return h->token != NULL;
}

void shoal_hub_get_stats(const struct shoal_hub *h, struct shoal_hub_stats *st)
{
    *st = h->stats;
}

static struct job *job_new(struct shoal_hub *h, enum job_kind kind, const char *url)
{
    struct job *j = calloc(1, sizeof(*j));

    if (!j)
        return NULL;
    j->hub = h;
    j->kind = kind;
    j->retry_after_ms = -1;
    shoal_buf_init(&j->body, kind == JOB_API ? SHOAL_HUB_MAX_API_BYTES : HUB_ERRBODY_MAX);
    j->url = strdup(url);
    if (!j->url || job_set_url(j, url) != 0) {
        job_free(j);
        return NULL;
    }
    return j;
}

static int resolve_start(struct shoal_hub *h, enum shoal_repo_type type, const char *repo,
                         const char *rev, bool sha_only, shoal_hub_resolve_cb cb, void *user)
{
    struct api_req *a = NULL;
    struct job *j = NULL;
    char *erev = NULL, *url = NULL;
    int rv = -EINVAL;

    if (!rev)
        rev = "main";
    if (!h || !cb || !repo_id_ok(repo) || !rev_ok(rev))
        goto fail;
    rv = -ENOMEM;
    a = calloc(1, sizeof(*a));
    if (!a)
        goto fail;
    a->type = type;
    a->repo = xstrdup(repo);
    a->rev = xstrdup(rev);
    a->cb = cb;
    a->user = user;
    a->sha_only = sha_only;
    /* The Hub wants a revision with '/' (refs/pr/1) as one escaped segment. */
    erev = url_escape(rev, false);
    if (!a->repo || !a->rev || !erev)
        goto fail;
    url = str_printf("%s/api/%s/%s/revision/%s?blobs=true", h->endpoint, type_word(type), repo,
                     erev);
    if (!url)
        goto fail;
    j = job_new(h, JOB_API, url);
    if (!j)
        goto fail;
    j->api = a;
    a->live = 1;
    all_link(h, j);
    pend_push(h, j);
    kick(h);
    rv = 0;
    goto out;
fail:
    api_free(a);
out:
    free(erev);
    free(url);
    return rv;
}

int shoal_hub_resolve(struct shoal_hub *h, enum shoal_repo_type type, const char *repo,
                      const char *rev, shoal_hub_resolve_cb cb, void *user)
{
    return resolve_start(h, type, repo, rev, false, cb, user);
}

int shoal_hub_resolve_commit(struct shoal_hub *h, enum shoal_repo_type type, const char *repo,
                             const char *rev, shoal_hub_resolve_cb cb, void *user)
{
    return resolve_start(h, type, repo, rev, true, cb, user);
}

static int span_cmp(const void *a, const void *b)
{
    const struct shoal_hub_span *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static void on_idle(uv_timer_t *t)
{
    struct shoal_hub *h = t->data;

    /* Fetches with nothing to do still report, but never re-entrantly. */
    while (h->nempty > 0) {
        struct fetch *f = h->empty_fetches[--h->nempty];
        f->on_done(f->user, f->err, f->err ? f->msg : NULL);
        fetch_free(f);
    }
    pump(h);
}

/* New work starts from the loop, not from the caller's stack: the caller
 * may be inside a data callback, where libcurl refuses multi calls. */
static void kick(struct shoal_hub *h)
{
    uv_timer_start(&h->idle, on_idle, 0, 0);
}

/* Room for |more| entries in empty_fetches. */
static int empty_reserve(struct shoal_hub *h, size_t more)
{
    size_t nc = h->capempty ? h->capempty : 4;
    struct fetch **nv;

    if (h->nempty + more <= h->capempty)
        return 0;
    while (nc < h->nempty + more)
        nc *= 2;
    nv = realloc(h->empty_fetches, nc * sizeof(*nv));
    if (!nv)
        return -ENOMEM;
    h->empty_fetches = nv;
    h->capempty = nc;
    return 0;
}

int shoal_hub_fetch(struct shoal_hub *h, const struct shoal_hub_fetch_req *req)
{
    struct shoal_hub_span *sp = NULL;
    struct fetch *f = NULL;
    struct job *first = NULL, *j;
    char *erev = NULL, *epath = NULL, *url = NULL;
    size_t n = 0, i;
    int rv = -EINVAL;

    if (!h || !req || !req->on_data || !req->on_done || !repo_id_ok(req->repo) ||
        !rev_ok(req->rev) || !path_ok(req->path) || (req->nspans && !req->spans))
        goto out;
    rv = -ENOMEM;
    if (req->nspans > SIZE_MAX / sizeof(*sp))
        goto out;
    sp = malloc((req->nspans ? req->nspans : 1) * sizeof(*sp));
    if (!sp)
        goto out;
    for (i = 0; i < req->nspans; i++) {
        if (req->spans[i].len == 0)
            continue;
        if (req->spans[i].off > UINT64_MAX - req->spans[i].len) {
            rv = -EINVAL;
            goto out;
        }
        sp[n++] = req->spans[i];
    }
    qsort(sp, n, sizeof(*sp), span_cmp);
    /* Merge touching and overlapping spans: one Range request each. */
    size_t m = 0;
    for (i = 0; i < n; i++) {
        if (m > 0 && sp[i].off <= sp[m - 1].off + sp[m - 1].len) {
            uint64_t end = sp[i].off + sp[i].len;
            if (end > sp[m - 1].off + sp[m - 1].len)
                sp[m - 1].len = end - sp[m - 1].off;
        } else {
            sp[m++] = sp[i];
        }
    }
    f = calloc(1, sizeof(*f));
    if (!f)
        goto out;
    f->hub = h;
    f->type = req->type;
    f->repo = strdup(req->repo);
    f->rev = strdup(req->rev);
    f->path = strdup(req->path);
    f->on_data = req->on_data;
    f->on_done = req->on_done;
    f->user = req->user;
    erev = url_escape(req->rev, false);
    epath = url_escape(req->path, true);
    if (!f->repo || !f->rev || !f->path || !erev || !epath)
        goto out;
    url = str_printf("%s/%s%s/resolve/%s/%s", h->endpoint,
                     req->type == SHOAL_REPO_DATASET ? "datasets/" : "", req->repo, erev, epath);
    if (!url)
        goto out;
    if (m == 0) {
        if (empty_reserve(h, 1) != 0)
            goto out;
        h->empty_fetches[h->nempty++] = f;
        f = NULL;
        kick(h);
        rv = 0;
        goto out;
    }
    /* Build every job before queueing any, so failure leaves nothing behind. */
    for (i = 0; i < m; i++) {
        j = job_new(h, JOB_RANGE, url);
        if (!j)
            goto out_jobs;
        j->fetch = f;
        j->off = sp[i].off;
        j->len = sp[i].len;
        j->next = first;
        first = j;
    }
    f->jobs_left = m;
    while (first) {
        j = first;
        first = j->next;
        all_link(h, j);
        pend_push(h, j);
    }
    f = NULL;
    kick(h);
    rv = 0;
    goto out;
out_jobs:
    while (first) {
        j = first;
        first = j->next;
        job_free(j);
    }
out:
    fetch_free(f);
    free(sp);
    free(erev);
    free(epath);
    free(url);
    return rv;
}

static struct job *first_job_of(struct shoal_hub *h, void *user)
{
    for (struct job *j = h->all; j; j = j->next_all) {
        if (j->kind == JOB_RANGE && j->fetch->user == user && j->fetch->err == 0)
            return j;
    }
    return NULL;
}

int shoal_hub_cancel(struct shoal_hub *h, void *user)
{
    size_t jobs = 0;
    int n = 0;
    struct job *j;

    if (!h || h->freeing)
        return 0;
    for (j = h->all; j; j = j->next_all)
        jobs += j->kind == JOB_RANGE && j->fetch->user == user && j->fetch->err == 0;
    if (jobs == 0)
        return 0;
    /* Reserved first: a fetch whose jobs are gone must reach its done
     * callback, which runs from the idle timer out of this list. */
    if (empty_reserve(h, jobs) != 0)
        return -ENOMEM;
    while ((j = first_job_of(h, user))) {
        struct fetch *f = j->fetch;
        f->err = -ECANCELED;
        snprintf(f->msg, sizeof(f->msg), "cancelled");
        fetch_cancel_jobs(h, f);
        h->empty_fetches[h->nempty++] = f;
        n++;
    }
    kick(h);
    return n;
}

/* ---------------------------------------------------------------------- */
/* SHA-1 for git blob ids (FIPS 180-4). Only used to check files the Hub
 * names by blob id; it is not a security boundary on its own, since every
 * byte is also covered by the chunk ids and the file's SHA-256. */

static uint32_t rol32(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t st[5], const uint8_t *p)
{
    uint32_t w[80], a, b, c, d, e, t;
    int i;

    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (i = 16; i < 80; i++)
        w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = st[0];
    b = st[1];
    c = st[2];
    d = st[3];
    e = st[4];
    for (i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        t = rol32(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = t;
    }
    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
    st[4] += e;
}

void shoal_gitsha1_init(struct shoal_gitsha1 *g, uint64_t size)
{
    char hdr[40];
    int n;

    g->h[0] = 0x67452301;
    g->h[1] = 0xEFCDAB89;
    g->h[2] = 0x98BADCFE;
    g->h[3] = 0x10325476;
    g->h[4] = 0xC3D2E1F0;
    g->total = 0;
    g->nbuf = 0;
    n = snprintf(hdr, sizeof(hdr), "blob %" PRIu64, size);
    /* The header's terminating NUL is part of what git hashes. */
    shoal_gitsha1_update(g, hdr, (size_t)n + 1);
}

void shoal_gitsha1_update(struct shoal_gitsha1 *g, const void *data, size_t n)
{
    const uint8_t *p = data;

    g->total += n;
    if (g->nbuf) {
        size_t k = 64 - g->nbuf < n ? 64 - g->nbuf : n;
        memcpy(g->buf + g->nbuf, p, k);
        g->nbuf += k;
        p += k;
        n -= k;
        if (g->nbuf < 64)
            return;
        sha1_block(g->h, g->buf);
        g->nbuf = 0;
    }
    while (n >= 64) {
        sha1_block(g->h, p);
        p += 64;
        n -= 64;
    }
    memcpy(g->buf, p, n);
    g->nbuf = n;
}

void shoal_gitsha1_final(struct shoal_gitsha1 *g, uint8_t out[20])
{
    uint64_t bits = g->total * 8;
    uint8_t pad[72];
    size_t padlen = (g->nbuf < 56 ? 56 : 120) - g->nbuf;

    memset(pad, 0, sizeof(pad));
    pad[0] = 0x80;
    for (int i = 0; i < 8; i++)
        pad[padlen + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    shoal_gitsha1_update(g, pad, padlen + 8);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(g->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(g->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(g->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)g->h[i];
    }
}
