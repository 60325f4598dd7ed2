/* SPDX-License-Identifier: MIT */
/*
 * Hugging Face Hub client: resolves a release (repo@rev -> commit and file
 * list) and downloads byte ranges of its files, over libcurl's multi
 * interface driven by the caller's libuv loop (no threads, no blocking).
 *
 * The same code talks to huggingface.co, a regional gateway with the same
 * HTTP API, or the test stand-in (tests/hub/hubstub.py). Redirects are
 * followed by this module, not by libcurl, so that the Bearer token is sent
 * only to the endpoint's own host and port (or, from an http endpoint, to
 * the same host over https: shoal_hub_token_follows) and never to a CDN
 * host a redirect points at. The token is never logged and never leaves
 * this module for anything but the Hub.
 *
 * Failures: 429, 408 and 5xx answers and transport errors are retried with
 * exponential backoff and full jitter; a Retry-After on a 429 or 503 holds
 * every request to that host until it passes (up to retry_after_max_ms),
 * not only the retry of the request that got it; a body cut
 * short resumes with a new Range from the last byte delivered (an attempt
 * that made progress does not count against the retry cap), and so does one
 * slower than a floor for a window (counted as failed); 401/403/404/416
 * fail at once with a message naming the repo, revision and file.
 *
 * Integrity is the caller's: bytes are handed over as they arrive, and the
 * caller checks chunk ids and file hashes (shoal_gitsha1_* below helps with
 * files the Hub identifies only by their git blob id).
 */
#ifndef SHOAL_HUB_H
#define SHOAL_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifest.h" /* enum shoal_repo_type */

/* libuv's loop (uv_loop_t), declared rather than included: <uv.h> pulls in
 * <pthread.h>, and this header must stay includable from node/, where
 * sched.h would shadow the system <sched.h> that pthread.h needs. */
struct uv_loop_s;

#define SHOAL_HUB_DEFAULT_ENDPOINT "https://huggingface.co"
/* Files a release may list, and the longest path accepted from the API. */
#define SHOAL_HUB_MAX_FILES 100000u
#define SHOAL_HUB_MAX_PATH 1024u
/* Largest API response body accepted. */
#define SHOAL_HUB_MAX_API_BYTES ((size_t)64 << 20)

/* Whether the origin answers, as the hub sees it: a failed request is one
 * attempt that got no usable answer (no connection, a timeout, a transfer
 * cut without progress, HTTP 401, 403, 408, 429 or 5xx); any other answer
 * (404 included: the origin answered) ends a run of failures. */
enum shoal_hub_health_event {
    /* The first failure of a run (or, right after a run reported within
     * health_summary_ms, the first failure once that much time passed). */
    SHOAL_HUB_FAILING,
    /* Still failing: at most one per health_summary_ms while it lasts. */
    SHOAL_HUB_STILL_FAILING,
    /* An answer after a run of failures that was reported. */
    SHOAL_HUB_REACHABLE,
    /* The token file changed on disk and its new token is sent from now
     * on (|host|: where it came from, |error| ""), or could not be read
     * (|error| why: the token read before is kept). */
    SHOAL_HUB_TOKEN_REREAD,
};

struct shoal_hub_health {
    enum shoal_hub_health_event event;
    const char *host;   /* host[:port] of the URL that failed (or answered) */
    const char *error;  /* the last failure, e.g. "cannot connect: Connection
                           refused", "timed out", "HTTP 503"; "" for REACHABLE */
    uint64_t failures;  /* FAILING, STILL_FAILING: failed requests since the
                           last report; REACHABLE: in the whole run */
    uint64_t run_ms;    /* since the run's first failure */
};

/* Told about |ev| (views valid during the call), from the loop. The hub
 * may not be freed from inside it. */
typedef void (*shoal_hub_health_cb)(void *user, const struct shoal_hub_health *ev);

struct shoal_hub_config {
    /* Base URL without a trailing slash. NULL: $HF_ENDPOINT, else
     * SHOAL_HUB_DEFAULT_ENDPOINT. */
    const char *endpoint;
    /* Bearer token. NULL: the first line of |token_file| if set, else
     * $HF_TOKEN, else its deprecated older name $HUGGING_FACE_HUB_TOKEN,
     * else, as huggingface_hub finds the token `huggingface-cli login` saved,
     * the first line of $HF_TOKEN_PATH, else of
     * $HF_HOME/token, else $XDG_CACHE_HOME/huggingface/token, else
     * ~/.cache/huggingface/token (a login file that is not there: no
     * token), else none. "" means none. Whitespace around it is cut
     * (shoal_hub_token_verify). Copied; wiped on free. */
    const char *token;
    const char *token_file;
    /* PEM bundle of the CAs an https origin's certificate (and that of any
     * host it redirects to) must chain to, instead of the system's
     * (CURLOPT_CAINFO; libcurl's compiled-in CA directory is not used
     * either). NULL: $CURL_CA_BUNDLE, else $SSL_CERT_FILE, else libcurl's
     * default. Read once at shoal_hub_new (shoal_hub_ca_check) and by
     * libcurl at each new TLS connection. The path is copied. */
    const char *ca_file;
    unsigned max_inflight;       /* HTTP requests at once; 0 = 4 */
    /* Tries per request without progress; 0 = 8. An attempt that ended
     * short counts as progress only if it delivered 64 KiB or a quarter of
     * what was left; a range gets at most max_attempts + len/64 KiB tries
     * in all, and every retry, resumes included, waits at least one
     * backoff step. */
    unsigned max_attempts;
    unsigned backoff_base_ms;    /* first retry delay; 0 = 250 */
    unsigned backoff_max_ms;     /* cap on a backoff delay; 0 = 30000 */
    /* Cap on a Retry-After (of a 429 or 503), which holds every request
     * to that host[:port], queued ones of other fetches too, until it
     * passes; 0 = 600000 (10 min). */
    unsigned retry_after_max_ms;
    unsigned connect_timeout_ms; /* 0 = 10000 */
    unsigned stall_timeout_s;    /* abort a transfer under 1 KiB/s this long; 0 = 30 */
    /* A range attempt that receives under slow_floor_bps bytes/s over a
     * whole slow_window_ms is ended and resumed from its last byte on a
     * new connection, counted as a failed attempt (so an origin slow on
     * every try is given up on after max_attempts) and reported as
     * "slow: ..." to on_health. 0 = 65536 bytes/s, 60000 ms. With
     * |slow_never| no attempt is ended for being slow (only the stall
     * timeout applies) and the two are unused. */
    uint64_t slow_floor_bps;
    unsigned slow_window_ms;
    bool slow_never;
    uint64_t seed;               /* jitter PRNG seed; 0 = from time and pid */
    shoal_hub_health_cb on_health; /* NULL: nobody is told */
    void *health_user;
    unsigned health_summary_ms;  /* least time between failure reports; 0 = 30000 */
    /* An answer to a Range request whose body starts more than this many
     * bytes before the first byte asked for (a 200, the whole file, or a
     * 206 whose Content-Range starts early) fails the fetch with
     * SHOAL_EPROTO ("ignores Range") instead of reading every byte before
     * them; 0 = 8 MiB. A 206 without a Content-Range fails it too. */
    uint64_t range_skip_max;
};

struct shoal_hub;

/* One file of a resolved release. */
struct shoal_hub_file {
    char *path;            /* relative path in the repo, NUL-terminated */
    uint64_t size;
    bool lfs;              /* stored in LFS: |sha256| is the Hub's LFS oid */
    uint8_t sha256[32];
    bool has_blob_id;      /* |blob_id| is the git blob sha1 of the file (non-LFS)
                              or of its LFS pointer */
    uint8_t blob_id[20];
};

/* A release pinned to a commit. Owned by whoever got it from resolve. */
struct shoal_hub_release {
    enum shoal_repo_type type;
    char *repo;            /* "org/name" */
    char *rev;             /* as asked: branch, tag or commit */
    char commit[41];       /* 40 lowercase hex + NUL */
    size_t nfiles;
    struct shoal_hub_file *files;
};

/* Frees |r| and everything in it; NULL is accepted. */
void shoal_hub_release_free(struct shoal_hub_release *r);

/* Counters since the hub was created. */
struct shoal_hub_stats {
    uint64_t requests;   /* HTTP requests started, redirect hops included */
    uint64_t redirects;
    uint64_t retries;    /* requests re-issued after a failure */
    uint64_t resumes;    /* of those, ones that continued a cut or slow body */
    uint64_t slow;       /* range attempts ended as too slow */
    uint64_t bytes;      /* range bytes delivered to callers */
};

/* Fills |c| with zeros/NULLs, meaning "defaults and environment". */
void shoal_hub_config_default(struct shoal_hub_config *c);

/*
 * Creates a client on |loop| (which must outlive it). |cfg| NULL means all
 * defaults. Initialises libcurl globally on first use.
 * Returns 0, -EINVAL (bad endpoint URL), -ENOMEM, a negated errno reading
 * the token file, SHOAL_EBADPATH (the token file is not a regular file: a
 * FIFO is not waited on), or SHOAL_EPROTO (token with characters not
 * allowed in an HTTP header), or, for the CA bundle (shoal_hub_ca_path),
 * any error of shoal_hub_ca_check: callers that want to name which file
 * failed check it first.
 */
int shoal_hub_new(struct shoal_hub **out, struct uv_loop_s *loop,
                  const struct shoal_hub_config *cfg);

/*
 * The CA bundle a hub made with |cfg| (NULL: defaults) trusts:
 * |cfg->ca_file|, else a non-empty $CURL_CA_BUNDLE, else $SSL_CERT_FILE;
 * NULL when none is set (libcurl's default CAs). |*from_env| (if not NULL)
 * is set to the variable's name when the path came from one, else NULL.
 * The returned string is |cfg|'s or the environment's: not to be freed.
 */
const char *shoal_hub_ca_path(const struct shoal_hub_config *cfg, const char **from_env);

/*
 * Checks that |path| is a CA bundle libcurl can use: a readable regular file
 * of at most 16 MiB holding at least one PEM certificate. Returns 0, a
 * negated errno (open or read), SHOAL_EBADPATH (not a regular file),
 * SHOAL_ELIMIT (too large), SHOAL_EPROTO (no "-----BEGIN CERTIFICATE-----")
 * or -ENOMEM, and then |why| (|cap| bytes) says what is wrong, without the
 * path (the caller names it).
 */
int shoal_hub_ca_check(const char *path, char *why, size_t cap);

/* shoal_hub_ca_check of the bundle a hub made with |cfg| would use
 * (shoal_hub_ca_path), with a message for people in |msg| (|cap| bytes) on
 * failure that names the file and, if so, the variable it came from.
 * Returns 0 when no bundle is set or it is fine, else the check's error. */
int shoal_hub_ca_verify(const struct shoal_hub_config *cfg, char *msg, size_t cap);

/* Longest description of where a token came from (shoal_hub_token_source). */
#define SHOAL_HUB_TOKEN_SRC_MAX 4200

/*
 * Checks the token a hub made with |cfg| would send (shoal_hub_config.token:
 * the token given, else the token file, else $HF_TOKEN, else
 * $HUGGING_FACE_HUB_TOKEN, else the login file), after cutting the
 * whitespace around it as huggingface_hub does. Returns 0 (a usable token
 * or none), SHOAL_EPROTO (bytes an HTTP header cannot carry are left), or
 * an error reading the file, and then |msg| (|cap| bytes) names the
 * source ("hub token file PATH: ...", "hub token from $HF_TOKEN: ...",
 * "hub token from PATH ($HF_HOME/token): ...").
 */
int shoal_hub_token_verify(const struct shoal_hub_config *cfg, char *msg, size_t cap);

/*
 * Cancels every request (their callbacks are NOT called), wipes the token
 * and closes the hub's libuv handles; the memory is released by the close
 * callbacks, so run the loop afterwards (uv_run) before closing it. Must
 * not be called from inside one of the hub's callbacks. NULL is accepted.
 */
void shoal_hub_free(struct shoal_hub *h);

/* The endpoint in use (no trailing slash), fit for logs: a user:password@
 * in it shows as ***@. */
const char *shoal_hub_endpoint(const struct shoal_hub *h);

/* |url| with any user:password@ of its authority shown as ***@, into |out|
 * (cut to |cap|). For logs and messages. */
void shoal_url_redact(const char *url, char *out, size_t cap);

/*
 * Whether a redirect from |from| to |to| keeps the token of a hub whose
 * endpoint is |endpoint| (all absolute http or https URLs). Yes only when
 * |to| is the endpoint's host (case-insensitive) and either has the
 * endpoint's scheme and port, or upgrades an http endpoint to https on the
 * same port or from http's default port (80) to https's (443), as a
 * gateway redirecting http://host/ to https://host/ does. Never on a hop
 * from https to http (a downgrade, even back to an http endpoint), nor to
 * another host or port. libcurl's own rule (CURLOPT_UNRESTRICTED_AUTH off)
 * treats any scheme change as another host, so the hub follows redirects
 * itself. False for a URL that does not parse. Once a chain has left, the
 * token stays behind for the rest of it (the caller's part).
 */
bool shoal_hub_token_follows(const char *endpoint, const char *from, const char *to);
/* True when a token will be sent to the endpoint. */
/* True when the token came from a file other users may read (group or
 * other permission bits set): worth a warning, as a node key would be. */
bool shoal_hub_token_exposed(const struct shoal_hub *h);
/* Where the token sent came from, for logs: "$HF_TOKEN", "the token file
 * PATH", "PATH ($HF_TOKEN_PATH)", "PATH ($HF_HOME/token)", ...; "" with
 * no token. */
const char *shoal_hub_token_source(const struct shoal_hub *h);
/* The login token file (huggingface_hub's, not one named with
 * --hub-token-file or $HF_TOKEN_PATH) that could not be read and was
 * ignored, with why; "" when none. */
const char *shoal_hub_token_ignored(const struct shoal_hub *h);
bool shoal_hub_has_token(const struct shoal_hub *h);
void shoal_hub_get_stats(const struct shoal_hub *h, struct shoal_hub_stats *st);
/* True while the origin's last request failed (see shoal_hub_health);
 * then |why| (|cap| bytes, NUL-terminated) says since when, how often and
 * the last error. */
bool shoal_hub_failing(const struct shoal_hub *h, char *why, size_t cap);

/*
 * Called once per resolve. On success |status| is 0 and |rel| is the
 * release, owned by the callee (free with shoal_hub_release_free). On
 * failure |rel| is NULL, |status| is SHOAL_ENOTFOUND (repo or revision
 * unknown), SHOAL_EPERM (401/403: private or gated repo, missing or refused
 * token), SHOAL_EHTTP (other HTTP error, or retries exhausted), SHOAL_EPROTO
 * or SHOAL_ETOOBIG (response not as expected), or a negated errno, and
 * |msg| explains it naming the repo and revision (valid during the call).
 */
typedef void (*shoal_hub_resolve_cb)(void *user, int status, struct shoal_hub_release *rel,
                                     const char *msg);

/*
 * Starts resolving |repo| ("name" or "org/name") at |rev| (branch, tag or
 * 40-hex commit; NULL = "main") with GET /api/{models|datasets}/{repo}/
 * revision/{rev}?blobs=true. |cb| runs later, from the loop.
 * The files come from the answer's siblings when it lists 1 to 1000 of
 * them, each with its size and blob id or LFS sha256. Otherwise (none,
 * more than 1000: the Hub truncates the siblings of a large repo; or no
 * sizes and ids: a gateway that ignores ?blobs=true) they are listed with
 * GET /api/{models|datasets}/{repo}/tree/{commit}?recursive=true, page by
 * page as its Link rel="next" headers lead, as huggingface_hub does (a
 * link elsewhere, as a gateway passing the Hub's own on gives, is asked of
 * the endpoint: endpoint + its /api/... path; the token never leaves).
 * A gateway without /tree either (its first page 400, 404, 405, 410 or
 * 501), whose siblings named every file, has each file read with a HEAD
 * of /resolve/{commit}/{path}: X-Linked-Etag else ETag (sha256 or git
 * blob id), X-Linked-Size else Content-Length, as huggingface_hub reads a
 * file's metadata. A failure then says why /tree (and HEAD) was asked.
 * Returns 0 (cb will be called), -EINVAL (bad repo id or revision), -ENOMEM.
 */
int shoal_hub_resolve(struct shoal_hub *h, enum shoal_repo_type type, const char *repo,
                      const char *rev, shoal_hub_resolve_cb cb, void *user);

/* shoal_hub_resolve for the commit alone: the release it gives has no
 * files (nfiles 0), and nothing in the answer but "sha" is read, so a
 * branch resolves however many files the repo has and whatever the
 * siblings hold. */
int shoal_hub_resolve_commit(struct shoal_hub *h, enum shoal_repo_type type, const char *repo,
                             const char *rev, shoal_hub_resolve_cb cb, void *user);

/* A byte range of a file. */
struct shoal_hub_span {
    uint64_t off;
    uint64_t len;
};

/*
 * Receives bytes [off, off+n) of the file, in increasing order within each
 * merged range; different ranges of one fetch may interleave. A nonzero
 * return cancels the fetch, whose done callback then gets that value.
 */
typedef int (*shoal_hub_data_cb)(void *user, uint64_t off, const uint8_t *p, size_t n);
/*
 * Called once when every range was delivered (|status| 0) or the fetch
 * failed: SHOAL_ENOTFOUND (404), SHOAL_EPERM (401/403), SHOAL_EHTTP (other
 * status, 416, retries exhausted), SHOAL_EPROTO (bad redirect or range
 * answer), -ENOMEM, or a data callback's return. |msg| names repo, revision
 * and file, and is valid during the call. Bytes already delivered stay
 * delivered.
 */
typedef void (*shoal_hub_done_cb)(void *user, int status, const char *msg);

struct shoal_hub_fetch_req {
    enum shoal_repo_type type;
    const char *repo;
    const char *rev;        /* normally the resolved commit */
    const char *path;
    /* Spans to fetch; copied. They are sorted, and spans that touch or
     * overlap are merged into one Range request (overlaps delivered once).
     * Zero-length spans are ignored. */
    const struct shoal_hub_span *spans;
    size_t nspans;
    shoal_hub_data_cb on_data;
    shoal_hub_done_cb on_done;
    void *user;
};

/*
 * Starts downloading |req|'s spans of GET {endpoint}/[datasets/]{repo}/
 * resolve/{rev}/{path}. Requests queue behind max_inflight. on_done runs
 * later from the loop, even when there is nothing to fetch.
 * Returns 0 (on_done will be called), -EINVAL (bad repo, rev, path or
 * callbacks), -ENOMEM.
 */
int shoal_hub_fetch(struct shoal_hub *h, const struct shoal_hub_fetch_req *req);

/*
 * Ends every fetch of |user| (its request's |user|) that has not completed:
 * running transfers stop now, queued ones never start, and each fetch's
 * on_done runs later from the loop with -ECANCELED (bytes delivered stay
 * delivered). Without it a fetch stops only at its next data callback, which
 * a stalled gateway may not make for the whole stall time-out. Not to be
 * called from a hub callback. Returns the fetches cancelled, or -ENOMEM
 * (none cancelled; they still stop at their next data callback if told to).
 */
int shoal_hub_cancel(struct shoal_hub *h, void *user);

/* ---- git blob ids (SHA-1 of "blob <size>\0" + content) ---- */

struct shoal_gitsha1 {
    uint32_t h[5];
    uint64_t total;
    uint8_t buf[64];
    size_t nbuf;
};
/* Starts the blob id of a |size|-byte file. */
void shoal_gitsha1_init(struct shoal_gitsha1 *g, uint64_t size);
void shoal_gitsha1_update(struct shoal_gitsha1 *g, const void *p, size_t n);
void shoal_gitsha1_final(struct shoal_gitsha1 *g, uint8_t out[20]);

#endif
