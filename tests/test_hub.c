/* SPDX-License-Identifier: MIT */
/*
 * The Hub client against the stand-in (tests/hub/hubstub.py on loopback):
 * resolving releases, ranged downloads with merged spans, every injected
 * fault survived or reported, auth errors named, and the token kept away
 * from a CDN host. Also the JSON parser and git blob ids it relies on.
 * Usage: test_hub PYTHON HUBDIR
 */
#include "t.h"

#include "error.h"
#include "hash.h"
#include "hub.h"
#include "json.h"

#include "hub/stub.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <uv.h>

static const char *py, *hubdir;
static char root[256];
static char commit_m[41], commit_p[41];
static struct hubstub stub;
static uv_loop_t loop;

#define SHARD1 "model-00001-of-00002.safetensors"

/* ---- loop driving, bounded in time ---- */

static void on_guard(uv_timer_t *t)
{
    (void)t;
}

static void run_until(const bool *flag, int seconds)
{
    uv_timer_t guard;
    uint64_t deadline = uv_hrtime() + (uint64_t)seconds * 1000000000ull;

    uv_timer_init(&loop, &guard);
    uv_timer_start(&guard, on_guard, 50, 50);
    while (!*flag && uv_hrtime() < deadline)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static void hub_close(struct shoal_hub *h)
{
    shoal_hub_free(h);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* A hub on the stand-in with no token, the fixed jitter seed, and
 * |max_inflight| (0: the default) and |range_skip_max| (0: the default). */
static struct shoal_hub *hub_with(unsigned max_inflight, uint64_t range_skip_max)
{
    struct shoal_hub_config c;
    struct shoal_hub *h = NULL;

    shoal_hub_config_default(&c);
    c.endpoint = stub.url;
    c.token = "";
    c.max_inflight = max_inflight;
    c.range_skip_max = range_skip_max;
    c.seed = 42;
    REQUIRE(shoal_hub_new(&h, &loop, &c) == 0);
    return h;
}

/* A hub on |endpoint| (NULL: the stand-in) with |token| (NULL: none),
 * |attempts| tries per request and the CA bundle |ca| (NULL: the default). */
static struct shoal_hub *hub_open_ca(const char *endpoint, const char *token, unsigned attempts,
                                     const char *ca)
{
    struct shoal_hub_config c;
    struct shoal_hub *h = NULL;

    shoal_hub_config_default(&c);
    c.endpoint = endpoint ? endpoint : stub.url;
    c.token = token ? token : "";
    c.ca_file = ca;
    c.max_attempts = attempts;
    c.backoff_base_ms = 20;
    c.backoff_max_ms = 3000;
    c.seed = 42;
    REQUIRE(shoal_hub_new(&h, &loop, &c) == 0);
    return h;
}

static struct shoal_hub *hub_open(const char *endpoint, const char *token, unsigned attempts)
{
    return hub_open_ca(endpoint, token, attempts, NULL);
}

/* ---- resolve ---- */

struct resolved {
    bool done;
    int status;
    struct shoal_hub_release *rel;
    char msg[1024];
};

static void on_resolved(void *user, int status, struct shoal_hub_release *rel, const char *msg)
{
    struct resolved *r = user;
    r->done = true;
    r->status = status;
    r->rel = rel;
    snprintf(r->msg, sizeof(r->msg), "%s", msg ? msg : "");
}

static int resolve(struct shoal_hub *h, const char *repo, const char *rev, struct resolved *r)
{
    memset(r, 0, sizeof(*r));
    REQUIRE(shoal_hub_resolve(h, SHOAL_REPO_MODEL, repo, rev, on_resolved, r) == 0);
    run_until(&r->done, 60);
    REQUIRE(r->done);
    return r->status;
}

/* ---- fetch ---- */

struct fetched {
    bool done;
    int status;
    char msg[1024];
    uint8_t *buf;
    size_t cap;
    uint64_t delivered;
    bool out_of_order;
    uint64_t next_expected;
    int fail_after;   /* >0: the data callback fails on that call */
    int calls;
};

static int on_data(void *user, uint64_t off, const uint8_t *p, size_t n)
{
    struct fetched *f = user;
    if (f->fail_after && ++f->calls >= f->fail_after)
        return SHOAL_EBADHASH;
    if (off + n <= f->cap)
        memcpy(f->buf + off, p, n);
    f->delivered += n;
    return 0;
}

static void on_done(void *user, int status, const char *msg)
{
    struct fetched *f = user;
    f->done = true;
    f->status = status;
    snprintf(f->msg, sizeof(f->msg), "%s", msg ? msg : "");
}

static int fetch(struct shoal_hub *h, const char *repo, const char *rev, const char *path,
                 const struct shoal_hub_span *sp, size_t n, struct fetched *f, size_t cap)
{
    struct shoal_hub_fetch_req req = {
        .type = SHOAL_REPO_MODEL, .repo = repo, .rev = rev, .path = path,
        .spans = sp, .nspans = n, .on_data = on_data, .on_done = on_done, .user = f,
    };
    int fail_after = f->fail_after;
    memset(f, 0, sizeof(*f));
    f->fail_after = fail_after;
    f->cap = cap;
    f->buf = calloc(1, cap ? cap : 1);
    REQUIRE(f->buf);
    REQUIRE(shoal_hub_fetch(h, &req) == 0);
    run_until(&f->done, 90);
    REQUIRE(f->done);
    return f->status;
}

static uint8_t *read_disk(const char *repo_kind, const char *repo, const char *commit,
                          const char *path, size_t *len)
{
    char fn[1024];
    struct stat st;
    FILE *fp;
    uint8_t *b;

    snprintf(fn, sizeof(fn), "%s/%s/%s/commits/%s/%s", root, repo_kind, repo, commit, path);
    REQUIRE(stat(fn, &st) == 0);
    b = malloc((size_t)st.st_size + 1);
    fp = fopen(fn, "rb");
    REQUIRE(b && fp);
    REQUIRE(fread(b, 1, (size_t)st.st_size, fp) == (size_t)st.st_size);
    fclose(fp);
    *len = (size_t)st.st_size;
    return b;
}

static void stub_reset(void)
{
    REQUIRE(hubstub_post(&stub, "/_stub/reset", "{}") == 200);
}

/* Requests a freed hub left on the wire (test_abort_after_redirect frees
 * one mid-transfer) can reach the stub's threads after the next test's
 * reset and count there: wait until its request counts have stayed the
 * same for 300 ms (at most 5 s), so a reset after this starts clean. */
static void stub_settle(void)
{
    long long last = -1;
    int same = 0;
    for (int i = 0; i < 50 && same < 3; i++) {
        long long n = hubstub_stat(&stub, "\"requests\"", "cdn") +
                      hubstub_stat(&stub, "\"requests\"", "resolve");
        same = n == last ? same + 1 : 0;
        last = n;
        usleep(100000);
    }
}

static void stub_fault(const char *json)
{
    REQUIRE(hubstub_post(&stub, "/_stub/faults", json) == 200);
}

/* ---- tests ---- */

static void test_json(void)
{
    struct shoal_json_doc *d = NULL;
    const char *ok = " {\"a\": [1, -2, 3.5e2, true, null, \"x\\u00e9\\ud83d\\ude00\\n\"],"
                     " \"big\": 18446744073709551615, \"o\": {}} ";
    size_t n;

    REQUIRE(shoal_json_parse(&d, ok, strlen(ok), NULL) == 0);
    const struct shoal_json *r = shoal_json_root(d);
    const struct shoal_json *a = shoal_json_get(r, "a");
    uint64_t u = 0;
    CHECK_EQ(shoal_json_len(a), 6);
    CHECK(shoal_json_u64(shoal_json_at(a, 0), &u) == 0 && u == 1);
    CHECK_EQ(shoal_json_u64(shoal_json_at(a, 1), &u), SHOAL_ETYPE);
    CHECK_EQ(shoal_json_u64(shoal_json_at(a, 2), &u), SHOAL_ETYPE);
    CHECK(shoal_json_at(a, 2)->num == 350.0);
    const char *s = shoal_json_str(shoal_json_at(a, 5), &n);
    CHECK(s && n == 8 && memcmp(s, "x\xc3\xa9\xf0\x9f\x98\x80\n", 8) == 0);
    CHECK(shoal_json_u64(shoal_json_get(r, "big"), &u) == 0 && u == UINT64_MAX);
    CHECK(shoal_json_get(r, "missing") == NULL);
    shoal_json_doc_free(d);

    static const char *bad[] = {
        "", "{", "[1,]", "{\"a\":1,}", "01", "1.", "\"\\x\"", "\"a", "tru", "[1] 2",
        "\"\\ud800\"", "\"\x01\"", "\"\xc0\xaf\"", "{1:2}", "-", "1e", "nul",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        d = NULL;
        int rv = shoal_json_parse(&d, bad[i], strlen(bad[i]), NULL);
        CHECK(rv == SHOAL_EPROTO);
        if (rv != SHOAL_EPROTO)
            fprintf(stderr, "  accepted bad json #%zu\n", i);
        shoal_json_doc_free(d);
    }
    /* Depth cap: 100 nested arrays against a limit of 64. */
    char deep[201];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    deep[200] = '\0';
    d = NULL;
    CHECK_EQ(shoal_json_parse(&d, deep, 200, NULL), SHOAL_ETOOBIG);
    struct shoal_json_limits lim = {.max_nodes = 3};
    CHECK_EQ(shoal_json_parse(&d, "[1,2,3]", 7, &lim), SHOAL_ETOOBIG);
}

static void test_gitsha1(void)
{
    /* `printf 'hello\n' | git hash-object --stdin` */
    struct shoal_gitsha1 g;
    uint8_t out[20];
    char hex[41];

    shoal_gitsha1_init(&g, 6);
    shoal_gitsha1_update(&g, "hel", 3);
    shoal_gitsha1_update(&g, "lo\n", 3);
    shoal_gitsha1_final(&g, out);
    shoal_hex(hex, out, 20);
    CHECK(strcmp(hex, "ce013625030ba8dba906f756967f9e9ca394464a") == 0);
    /* The empty blob, a well-known id. */
    shoal_gitsha1_init(&g, 0);
    shoal_gitsha1_final(&g, out);
    shoal_hex(hex, out, 20);
    CHECK(strcmp(hex, "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391") == 0);
    /* 768 bytes fed in odd pieces, across block boundaries. */
    uint8_t d[768];
    for (int i = 0; i < 768; i++)
        d[i] = (uint8_t)i;
    shoal_gitsha1_init(&g, sizeof(d));
    for (size_t off = 0, k = 1; off < sizeof(d); off += k, k = k * 3 % 97 + 1)
        shoal_gitsha1_update(&g, d + off, off + k <= sizeof(d) ? k : sizeof(d) - off);
    shoal_gitsha1_final(&g, out);
    shoal_hex(hex, out, 20);
    CHECK(strcmp(hex, "d88d75086be4e95d2edadda5a4361e3e64e8532f") == 0);
}

static void test_resolve(void)
{
    struct shoal_hub *h = hub_open(NULL, NULL, 0);
    struct resolved r, r2, r3;

    stub_reset();
    CHECK_EQ(resolve(h, "org/m", "main", &r), 0);
    REQUIRE(r.rel);
    CHECK(strcmp(r.rel->commit, commit_m) == 0);
    CHECK_EQ(r.rel->nfiles, 5);
    for (size_t i = 0; i < r.rel->nfiles; i++) {
        const struct shoal_hub_file *f = &r.rel->files[i];
        size_t len;
        uint8_t *b = read_disk("models", "org/m", commit_m, f->path, &len);
        CHECK_EQ(f->size, len);
        if (f->lfs) {
            struct shoal_sha256 s;
            uint8_t d[32];
            shoal_sha256_init(&s);
            shoal_sha256_update(&s, b, len);
            shoal_sha256_final(&s, d);
            CHECK(memcmp(d, f->sha256, 32) == 0);
        } else {
            struct shoal_gitsha1 g;
            uint8_t d[20];
            CHECK(f->has_blob_id);
            shoal_gitsha1_init(&g, len);
            shoal_gitsha1_update(&g, b, len);
            shoal_gitsha1_final(&g, d);
            CHECK(memcmp(d, f->blob_id, 20) == 0);
        }
        CHECK_EQ(f->lfs, strstr(f->path, ".safetensors") && !strstr(f->path, ".json"));
        free(b);
    }
    CHECK_EQ(resolve(h, "org/m", "v1", &r2), 0);
    CHECK(r2.rel && strcmp(r2.rel->commit, commit_m) == 0);
    CHECK_EQ(resolve(h, "org/m", commit_m, &r3), 0);
    CHECK(r3.rel && strcmp(r3.rel->commit, commit_m) == 0);
    shoal_hub_release_free(r.rel);
    shoal_hub_release_free(r2.rel);
    shoal_hub_release_free(r3.rel);
    CHECK(shoal_hub_resolve(h, SHOAL_REPO_MODEL, "../etc", "main", on_resolved, &r) == -EINVAL);
    CHECK(shoal_hub_resolve(h, SHOAL_REPO_MODEL, "org/m", "ma in", on_resolved, &r) == -EINVAL);
    hub_close(h);
}

/* QA K14: a gateway that ignores ?blobs=true and has no /tree: each file's
 * size and sha256 or git blob id come from a HEAD of it, the same as the
 * Hub's own listing gives. Freeing the hub while those HEADs wait (a 503
 * asking for 30 s) frees the listing once, nothing left behind. */
static void test_resolve_by_head(void)
{
    struct shoal_hub *h = hub_open(NULL, NULL, 0);
    struct resolved want, r, r2;

    stub_settle();
    stub_reset();
    CHECK_EQ(resolve(h, "org/m", "main", &want), 0);
    stub_fault("[{\"kind\":\"listing\",\"noblobs\":true,\"notree\":true}]");
    CHECK_EQ(resolve(h, "org/m", "main", &r), 0);
    if (r.msg[0])
        fprintf(stderr, "  %s\n", r.msg);
    REQUIRE(want.rel && r.rel);
    CHECK(strcmp(r.rel->commit, commit_m) == 0);
    CHECK_EQ(r.rel->nfiles, want.rel->nfiles);
    CHECK_EQ(hubstub_stat(&stub, NULL, "heads"), (long long)want.rel->nfiles);
    for (size_t i = 0; i < r.rel->nfiles; i++) {
        const struct shoal_hub_file *f = &r.rel->files[i], *w = NULL;
        for (size_t k = 0; k < want.rel->nfiles && !w; k++)
            if (strcmp(want.rel->files[k].path, f->path) == 0)
                w = &want.rel->files[k];
        REQUIRE(w);
        CHECK_EQ(f->size, w->size);
        CHECK_EQ(f->lfs, w->lfs);
        if (w->lfs)
            CHECK(memcmp(f->sha256, w->sha256, 32) == 0);
        else
            CHECK(f->has_blob_id && memcmp(f->blob_id, w->blob_id, 20) == 0);
    }
    shoal_hub_release_free(want.rel);
    shoal_hub_release_free(r.rel);

    stub_reset();
    stub_fault("[{\"kind\":\"listing\",\"noblobs\":true,\"notree\":true},"
               "{\"kind\":\"status\",\"code\":503,\"retry_after\":30,\"times\":-1,"
               "\"match\":\"/resolve/\"}]");
    memset(&r2, 0, sizeof r2);
    REQUIRE(shoal_hub_resolve(h, SHOAL_REPO_MODEL, "org/m", "main", on_resolved, &r2) == 0);
    for (int i = 0; i < 250 && hubstub_stat(&stub, NULL, "heads") < 1; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(20000);
    }
    CHECK(hubstub_stat(&stub, NULL, "heads") >= 1);
    CHECK(!r2.done);
    hub_close(h);
    CHECK(!r2.done);
}

static void test_spans_merged(void)
{
    struct shoal_hub *h = hub_open(NULL, NULL, 0);
    struct shoal_hub_span sp[] = {{5000, 10}, {0, 1000}, {1000, 1000}, {4000, 500}, {4100, 50},
                                  {9000, 0}};
    struct fetched f = {0};
    size_t len;
    uint8_t *want = read_disk("models", "org/m", commit_m, SHARD1, &len);

    stub_reset();
    CHECK_EQ(fetch(h, "org/m", commit_m, SHARD1, sp, 6, &f, len), 0);
    CHECK_EQ(f.delivered, 2000 + 500 + 10);
    CHECK(memcmp(f.buf, want, 2000) == 0);
    CHECK(memcmp(f.buf + 4000, want + 4000, 500) == 0);
    CHECK(memcmp(f.buf + 5000, want + 5000, 10) == 0);
    /* Three merged ranges: three resolve requests, three CDN requests. */
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "resolve"), 3);
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "cdn"), 3);
    CHECK_EQ(hubstub_stat(&stub, NULL, "total_bytes"), 2510);
    free(f.buf);
    free(want);
    hub_close(h);
}

static void whole_file(struct shoal_hub *h, const char *path, struct fetched *f, int expect)
{
    size_t len;
    uint8_t *want = read_disk("models", "org/m", commit_m, path, &len);
    struct shoal_hub_span sp = {0, len};

    CHECK_EQ(fetch(h, "org/m", commit_m, path, &sp, 1, f, len), expect);
    if (expect == 0) {
        CHECK_EQ(f->delivered, len);
        CHECK(memcmp(f->buf, want, len) == 0);
    }
    free(want);
}

static void test_429_retry_after(void)
{
    struct shoal_hub *h = hub_open(NULL, NULL, 0);
    struct resolved r;
    struct shoal_hub_stats st;

    stub_reset();
    stub_fault("[{\"kind\":\"status\",\"code\":429,\"retry_after\":1,\"times\":2,\"match\":\"/api/\"}]");
    CHECK_EQ(resolve(h, "org/m", "main", &r), 0);
    CHECK(r.rel && strcmp(r.rel->commit, commit_m) == 0);
    shoal_hub_get_stats(h, &st);
    CHECK_EQ(st.retries, 2);
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "api"), 3);
    shoal_hub_release_free(r.rel);
    hub_close(h);
}

static void test_503_then_ok(void)
{
    struct shoal_hub *h = hub_open(NULL, NULL, 0);
    struct fetched f = {0};

    stub_reset();
    stub_fault("[{\"kind\":\"status\",\"code\":503,\"times\":2,\"match\":\"/cdn/\"},"
               "{\"kind\":\"status\",\"code\":502,\"times\":1,\"match\":\"/resolve/\"}]");
    whole_file(h, SHARD1, &f, 0);
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "cdn"), 3);
    free(f.buf);
    hub_close(h);
}

static void test_cut_resume(void)
{
    struct shoal_hub *h = hub_open(NULL, NULL, 0);
    struct fetched f = {0};
    struct shoal_hub_stats st;
    size_t len;
    free(read_disk("models", "org/m", commit_m, SHARD1, &len));

    stub_reset();
    stub_fault("[{\"kind\":\"cut\",\"after\":100000,\"times\":3,\"match\":\"/cdn/\"}]");
    whole_file(h, SHARD1, &f, 0);
    shoal_hub_get_stats(h, &st);
    CHECK_EQ(st.resumes, 3);
    /* Resumed, not restarted: the origin sent each byte once. */
    CHECK_EQ(hubstub_stat(&stub, NULL, "total_bytes"), (long long)len);
    free(f.buf);
    hub_close(h);
}

static void test_slow_body(void)
{
    struct shoal_hub *h = hub_open(NULL, NULL, 0);
    struct fetched f = {0};

    stub_reset();
    stub_fault("[{\"kind\":\"slow\",\"bps\":600000,\"match\":\"/cdn/\"}]");
    whole_file(h, SHARD1, &f, 0);
    free(f.buf);
    hub_close(h);
}

static void test_gives_up(void)
{
    struct shoal_hub *h = hub_open(NULL, NULL, 3);
    struct resolved r;

    stub_reset();
    stub_fault("[{\"kind\":\"status\",\"code\":503,\"times\":100,\"match\":\"/api/\"}]");
    CHECK_EQ(resolve(h, "org/m", "main", &r), SHOAL_EHTTP);
    CHECK(r.rel == NULL);
    CHECK(strstr(r.msg, "gave up after 3 attempts") && strstr(r.msg, "org/m@main"));
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "api"), 3);
    hub_close(h);
}

/* ---- origin health ---- */

struct health_log {
    struct shoal_hub *h;
    int n;
    enum shoal_hub_health_event ev[16];
    uint64_t failures[16];
    char host[16][64];
    char error[16][160];
    bool failing_seen; /* shoal_hub_failing() said so during FAILING */
};

static void on_health(void *user, const struct shoal_hub_health *e)
{
    struct health_log *l = user;
    char why[512];
    if (l->n >= 16)
        return;
    l->ev[l->n] = e->event;
    l->failures[l->n] = e->failures;
    snprintf(l->host[l->n], sizeof l->host[0], "%s", e->host);
    snprintf(l->error[l->n], sizeof l->error[0], "%s", e->error);
    if (e->event == SHOAL_HUB_FAILING && shoal_hub_failing(l->h, why, sizeof why))
        l->failing_seen = strstr(why, e->error) != NULL;
    l->n++;
}

static struct shoal_hub *hub_open_health(const char *endpoint, unsigned attempts,
                                         struct health_log *l)
{
    struct shoal_hub_config c;
    shoal_hub_config_default(&c);
    c.endpoint = endpoint;
    c.token = "";
    c.max_attempts = attempts;
    c.backoff_base_ms = 20;
    c.backoff_max_ms = 100;
    c.seed = 42;
    c.on_health = on_health;
    c.health_user = l;
    /* Longer than the test: later failures are only counted. */
    c.health_summary_ms = 600000;
    memset(l, 0, sizeof *l);
    REQUIRE(shoal_hub_new(&l->h, &loop, &c) == 0);
    return l->h;
}

/* A run of 503s is reported once, at its first failure, naming the host and
 * the status; the answer that ends it is reported with the run's count. */
static void test_health_run(void)
{
    struct health_log l;
    struct shoal_hub *h = hub_open_health(stub.url, 10, &l);
    struct resolved r;
    char why[512], host[64];

    snprintf(host, sizeof host, "%s", stub.url + strlen("http://"));
    stub_reset();
    stub_fault("[{\"kind\":\"status\",\"code\":503,\"times\":5,\"match\":\"/api/\"}]");
    CHECK_EQ(resolve(h, "org/m", "main", &r), 0);
    CHECK_EQ(l.n, 2);
    CHECK(l.ev[0] == SHOAL_HUB_FAILING && l.failures[0] == 1);
    CHECK(strcmp(l.host[0], host) == 0 && strcmp(l.error[0], "HTTP 503") == 0);
    CHECK(l.failing_seen);
    CHECK(l.ev[1] == SHOAL_HUB_REACHABLE && l.failures[1] == 5);
    CHECK(!shoal_hub_failing(h, why, sizeof why));
    shoal_hub_release_free(r.rel);
    hub_close(h);
}

/* Nothing listens: the first refused connection is reported as such. */
static void test_health_refused(void)
{
    struct health_log l;
    struct shoal_hub *h = hub_open_health("http://127.0.0.1:1", 3, &l);
    struct resolved r;
    char why[512];

    CHECK(resolve(h, "org/m", "main", &r) != 0);
    CHECK_EQ(l.n, 1);
    CHECK(l.ev[0] == SHOAL_HUB_FAILING && strcmp(l.host[0], "127.0.0.1:1") == 0);
    CHECK(strcmp(l.error[0], "cannot connect: Connection refused") == 0);
    CHECK(shoal_hub_failing(h, why, sizeof why) && strstr(why, "(3 failed requests)"));
    hub_close(h);
}

/* An origin that answers 429 with Retry-After: 3 gets no request at all
 * for those 3 s (with backoff_max_ms 1000, the retry went after 1 s, and
 * the other queued ranges, and another file's fetch, went at once), the
 * log says it asked to wait, and everything then completes. One request
 * at a time, so which request meets the 429 is fixed. */
static void test_retry_after_holds_host(void)
{
    struct health_log l;
    struct shoal_hub_config c;
    struct fetched f = {0}, g = {0};
    size_t len, clen;
    uint8_t *want = read_disk("models", "org/m", commit_m, SHARD1, &len);
    uint8_t *cwant = read_disk("models", "org/m", commit_m, "config.json", &clen);
    struct shoal_hub_span sp[4] = {{0, 100}, {200000, 100}, {400000, 100}, {600000, 100}};
    struct shoal_hub_span whole = {0, clen};

    shoal_hub_config_default(&c);
    c.endpoint = stub.url;
    c.token = "";
    c.max_inflight = 1;
    c.backoff_base_ms = 20;
    c.backoff_max_ms = 1000;
    c.seed = 42;
    c.on_health = on_health;
    c.health_user = &l;
    c.health_summary_ms = 600000;
    memset(&l, 0, sizeof l);
    REQUIRE(shoal_hub_new(&l.h, &loop, &c) == 0);
    stub_settle();
    stub_reset();
    stub_fault("[{\"kind\":\"status\",\"code\":429,\"retry_after\":3,\"times\":1,"
               "\"match\":\"/resolve/\"}]");
    struct shoal_hub_fetch_req req = {
        .type = SHOAL_REPO_MODEL, .repo = "org/m", .rev = commit_m, .path = SHARD1,
        .spans = sp, .nspans = 4, .on_data = on_data, .on_done = on_done, .user = &f,
    };
    f.cap = len;
    g.cap = clen;
    f.buf = calloc(1, len);
    g.buf = calloc(1, clen);
    REQUIRE(f.buf && g.buf);
    REQUIRE(shoal_hub_fetch(l.h, &req) == 0);
    req.path = "config.json";
    req.spans = &whole;
    req.nspans = 1;
    req.user = &g;
    REQUIRE(shoal_hub_fetch(l.h, &req) == 0);
    /* 2 s of loop (1 s short of the wait, for a loaded machine): only the
     * request that got the 429 reached the stand-in. */
    bool never = false;
    run_until(&never, 2);
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "resolve"), 1);
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "cdn"), 0);
    CHECK(!f.done && !g.done);
    CHECK(l.n == 1 && l.ev[0] == SHOAL_HUB_FAILING && strstr(l.error[0], "HTTP 429") &&
          strstr(l.error[0], "asked to wait 3 s"));
    fprintf(stderr, "  origin %s failing: %s\n", l.host[0], l.error[0]);
    run_until(&f.done, 30);
    run_until(&g.done, 30);
    CHECK(f.done && f.status == 0 && g.done && g.status == 0);
    CHECK_EQ(f.delivered, 400);
    for (size_t i = 0; i < 4; i++)
        CHECK(memcmp(f.buf + sp[i].off, want + sp[i].off, 100) == 0);
    CHECK(g.delivered == clen && memcmp(g.buf, cwant, clen) == 0);
    /* The 429, then each range's and the config's resolve, once. */
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "resolve"), 6);
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "cdn"), 4);
    CHECK(l.n == 2 && l.ev[1] == SHOAL_HUB_REACHABLE);
    free(f.buf);
    free(g.buf);
    free(want);
    free(cwant);
    hub_close(l.h);
}

/* An origin alive but slow (2 KB/s on the first attempt) is not left to
 * trickle: under the floor (64 KiB/s) for the window (1 s here) the attempt
 * ends, the range resumes from its last byte on a new connection, the
 * health report says slow, and the origin sends each byte once. The old
 * code stayed on the first attempt (about 500 s for this 1 MB file). */
static void test_slow_resumed(void)
{
    struct health_log l;
    struct shoal_hub_config c;
    struct shoal_hub_stats st;
    struct fetched f = {0};
    size_t len;
    uint8_t *want = read_disk("models", "org/m", commit_m, SHARD1, &len);
    struct shoal_hub_span sp = {0, len};

    shoal_hub_config_default(&c);
    c.endpoint = stub.url;
    c.token = "";
    c.backoff_base_ms = 20;
    c.seed = 42;
    c.slow_floor_bps = 64 * 1024;
    c.slow_window_ms = 1000;
    c.on_health = on_health;
    c.health_user = &l;
    c.health_summary_ms = 600000;
    memset(&l, 0, sizeof l);
    REQUIRE(shoal_hub_new(&l.h, &loop, &c) == 0);
    stub_settle();
    stub_reset();
    stub_fault("[{\"kind\":\"slow\",\"bps\":2000,\"times\":1,\"match\":\"/cdn/\"}]");
    struct shoal_hub_fetch_req req = {
        .type = SHOAL_REPO_MODEL, .repo = "org/m", .rev = commit_m, .path = SHARD1,
        .spans = &sp, .nspans = 1, .on_data = on_data, .on_done = on_done, .user = &f,
    };
    f.cap = len;
    f.buf = calloc(1, len);
    REQUIRE(f.buf);
    REQUIRE(shoal_hub_fetch(l.h, &req) == 0);
    /* Bounded: the slow attempt alone would take about 500 s. */
    run_until(&f.done, 20);
    CHECK(f.done && f.status == 0);
    CHECK(f.delivered == len && memcmp(f.buf, want, len) == 0);
    shoal_hub_get_stats(l.h, &st);
    CHECK_EQ(st.slow, 1);
    CHECK_EQ(st.resumes, 1);
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "cdn"), 2);
    CHECK(l.n >= 1 && l.ev[0] == SHOAL_HUB_FAILING && strncmp(l.error[0], "slow: ", 6) == 0);
    if (l.n >= 1)
        fprintf(stderr, "  origin %s failing: %s\n", l.host[0], l.error[0]);
    CHECK(l.n == 2 && l.ev[1] == SHOAL_HUB_REACHABLE);
    /* Resumed, not restarted: the stand-in counts a block of 100 bytes
     * before writing it, so up to two may be counted but never read. */
    long long sent = hubstub_stat(&stub, NULL, "total_bytes");
    CHECK(sent >= (long long)len && sent <= (long long)len + 200);
    fprintf(stderr, "  origin sent %lld bytes for %zu\n", sent, len);
    free(f.buf);
    free(want);
    hub_close(l.h);
}

static void test_not_found(void)
{
    struct shoal_hub *h = hub_open(NULL, NULL, 0);
    struct resolved r;
    struct fetched f = {0};
    struct shoal_hub_span sp = {0, 10};

    stub_reset();
    CHECK_EQ(resolve(h, "org/m", "nope", &r), SHOAL_ENOTFOUND);
    CHECK(strstr(r.msg, "org/m@nope") && strstr(r.msg, "revision"));
    CHECK_EQ(resolve(h, "org/zz", "main", &r), SHOAL_ENOTFOUND);
    CHECK(strstr(r.msg, "org/zz"));
    CHECK_EQ(fetch(h, "org/m", commit_m, "nope.bin", &sp, 1, &f, 10), SHOAL_ENOTFOUND);
    CHECK(strstr(f.msg, "nope.bin") && strstr(f.msg, commit_m));
    /* Not retried. */
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "resolve"), 1);
    free(f.buf);
    fprintf(stderr, "  e.g.: %s\n", r.msg);
    hub_close(h);
}

/* QA K7: a web page (a login page, a captive portal, the gateway's web UI)
 * where the API or a file's bytes were asked for is named as such, with
 * its first bytes, and a file fetch is not retried. */
static void test_html_answer(void)
{
    struct shoal_hub *h = hub_open(NULL, NULL, 0);
    struct resolved r;
    struct fetched f = {0};
    struct shoal_hub_span sp = {0, 100};

    stub_reset();
    stub_fault("[{\"kind\":\"html\",\"match\":\"/api/\"}]");
    CHECK_EQ(resolve(h, "org/m", "main", &r), SHOAL_EPROTO);
    fprintf(stderr, "  e.g.: %s\n", r.msg);
    CHECK(strstr(r.msg, "web page") && strstr(r.msg, "text/html") && strstr(r.msg, "Sign in") &&
          strstr(r.msg, "API root"));
    stub_reset();
    stub_fault("[{\"kind\":\"html\",\"match\":\"/resolve/\",\"times\":-1}]");
    CHECK_EQ(fetch(h, "org/m", commit_m, "config.json", &sp, 1, &f, 100), SHOAL_EPROTO);
    fprintf(stderr, "  e.g.: %s\n", f.msg);
    CHECK(strstr(f.msg, "config.json") && strstr(f.msg, "web page") && strstr(f.msg, "text/html"));
    /* Asked once: no retry cures a web page; none of its bytes delivered. */
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "resolve"), 1);
    CHECK_EQ(f.delivered, 0);
    free(f.buf);
    hub_close(h);
}

static void test_private_and_gated(void)
{
    struct shoal_hub *anon = hub_open(NULL, NULL, 0);
    struct shoal_hub *good = hub_open(NULL, "tok", 0);
    struct resolved r;
    struct fetched f = {0};
    size_t len;
    uint8_t *want = read_disk("models", "org/p", commit_p, "model.safetensors", &len);
    struct shoal_hub_span sp = {0, len};

    stub_reset();
    CHECK_EQ(resolve(anon, "org/p", "main", &r), SHOAL_EPERM);
    CHECK(strstr(r.msg, "org/p") && strstr(r.msg, "token"));
    fprintf(stderr, "  e.g.: %s\n", r.msg);
    CHECK_EQ(resolve(good, "org/p", "main", &r), 0);
    CHECK(r.rel && strcmp(r.rel->commit, commit_p) == 0);
    shoal_hub_release_free(r.rel);
    CHECK_EQ(fetch(good, "org/p", commit_p, "model.safetensors", &sp, 1, &f, len), 0);
    CHECK(f.delivered == len && memcmp(f.buf, want, len) == 0);
    free(f.buf);
    CHECK_EQ(fetch(anon, "org/p", commit_p, "model.safetensors", &sp, 1, &f, len), SHOAL_EPERM);
    CHECK(strstr(f.msg, "org/p") && strstr(f.msg, "model.safetensors"));
    free(f.buf);
    /* A valid token that was not granted the gated repo. */
    CHECK_EQ(resolve(good, "org/g", "main", &r), SHOAL_EPERM);
    CHECK(strstr(r.msg, "org/g") && strstr(r.msg, "gated"));
    free(want);
    hub_close(anon);
    hub_close(good);
}

static void test_token_stays_home(void)
{
    char ep[64];
    struct shoal_hub *h;
    struct fetched f = {0};
    size_t len;
    free(read_disk("models", "org/p", commit_p, "model.safetensors", &len));
    struct shoal_hub_span sp = {0, len};

    /* The client talks to "localhost"; the CDN redirect goes to 127.0.0.1,
     * another host name: the token must not follow. */
    snprintf(ep, sizeof(ep), "http://localhost:%d", stub.port);
    h = hub_open(ep, "tok", 0);
    stub_reset();
    stub_fault("[{\"kind\":\"cdn_host\",\"host\":\"127.0.0.1\"}]");
    CHECK_EQ(fetch(h, "org/p", commit_p, "model.safetensors", &sp, 1, &f, len), 0);
    free(f.buf);
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "cdn"), 1);
    CHECK_EQ(hubstub_stat(&stub, NULL, "cdn_auth"), 0);
    /* The resolve request did carry it (the repo is private). */
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "resolve"), 1);

    /* Control: a redirect to the same host keeps the token, so the check
     * above is able to see one. */
    stub_reset();
    CHECK_EQ(fetch(h, "org/p", commit_p, "model.safetensors", &sp, 1, &f, len), 0);
    free(f.buf);
    CHECK_EQ(hubstub_stat(&stub, NULL, "cdn_auth"), 1);
    hub_close(h);
}

/* Where a redirect may take the token: the endpoint's own host and port,
 * and an http endpoint's upgrade to https on the same host (a gateway
 * answering http://host/ with 302 https://host/); never a downgrade, even
 * back to an http endpoint, another host, or another port. The old rule
 * (same scheme, host and port only) left the token behind on the upgrade,
 * so a private repo behind such a gateway failed with 401. */
static void test_token_follows(void)
{
    static const struct {
        const char *ep, *from, *to;
        bool yes;
    } cases[] = {
        /* the endpoint's own host, scheme and port */
        {"http://hf.internal", "http://hf.internal/a", "http://hf.internal/b", true},
        {"https://hf.internal", "https://hf.internal/a", "https://HF.internal:443/b", true},
        {"http://127.0.0.1:8080", "http://127.0.0.1:8080/a", "http://127.0.0.1:8080/b", true},
        /* same-host upgrade: default ports, or the same explicit port */
        {"http://hf.internal", "http://hf.internal/a", "https://hf.internal/a", true},
        {"http://hf.internal:80", "http://hf.internal/a", "https://hf.internal:443/a", true},
        {"http://hf.internal:8443", "http://hf.internal:8443/a", "https://hf.internal:8443/a",
         true},
        {"http://hf.internal", "https://hf.internal/a", "https://hf.internal/b", true},
        /* downgrades: never, whatever the endpoint */
        {"https://hf.internal", "https://hf.internal/a", "http://hf.internal/a", false},
        {"https://hf.internal", "https://hf.internal/a", "http://hf.internal:443/a", false},
        {"http://hf.internal", "https://hf.internal/a", "http://hf.internal/a", false},
        /* another host or port */
        {"http://hf.internal", "http://hf.internal/a", "https://cdn.internal/a", false},
        {"http://hf.internal", "http://hf.internal/a", "http://cdn.internal/a", false},
        {"http://hf.internal", "http://hf.internal/a", "https://hf.internal:8443/a", false},
        {"http://hf.internal", "http://hf.internal/a", "http://hf.internal:8080/a", false},
        {"https://hf.internal", "https://hf.internal/a", "https://hf.internal:8443/a", false},
        {"http://hf.internal:8080", "http://hf.internal:8080/a", "https://hf.internal/a", false},
        {"http://127.0.0.1:8080", "http://127.0.0.1:8080/a", "http://localhost:8080/a", false},
        /* not URLs */
        {"http://hf.internal", "http://hf.internal/a", "nonsense", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool got = shoal_hub_token_follows(cases[i].ep, cases[i].from, cases[i].to);
        if (got != cases[i].yes)
            fprintf(stderr, "  endpoint %s: %s -> %s: token %s, want %s\n", cases[i].ep,
                    cases[i].from, cases[i].to, got ? "sent" : "kept", cases[i].yes ? "sent" : "kept");
        CHECK(got == cases[i].yes);
    }
}

/* A redirect to the same host on another port (a second stand-in that
 * knows the token): the token stays home, so the private file is refused
 * there with 401 and the message names where the request went; without
 * the redirect the same fetch works. */
static void test_token_other_port(void)
{
    struct hubstub other;
    struct shoal_hub *h;
    struct fetched f = {0};
    struct shoal_hub_span sp = {0, 100};
    char fault[160], there[64];

    REQUIRE(hubstub_start(&other, py, hubdir, root, "--token", "tok", NULL) == 0);
    h = hub_open(stub.url, "tok", 0);
    stub_reset();
    snprintf(fault, sizeof fault, "[{\"kind\":\"redirect\",\"host\":\"127.0.0.1\",\"port\":%d,"
             "\"match\":\"/resolve/\"}]", other.port);
    stub_fault(fault);
    snprintf(there, sizeof there, "redirected to 127.0.0.1:%d", other.port);
    CHECK_EQ(fetch(h, "org/p", commit_p, "model.safetensors", &sp, 1, &f, 100), SHOAL_EPERM);
    CHECK(strstr(f.msg, "HTTP 401") && strstr(f.msg, there));
    fprintf(stderr, "  %s\n", f.msg);
    free(f.buf);
    memset(&f, 0, sizeof f);
    CHECK_EQ(hubstub_stat(&other, "\"requests\"", "resolve"), 1);
    /* Control: the same fetch, not redirected, carries the token. */
    CHECK_EQ(fetch(h, "org/p", commit_p, "model.safetensors", &sp, 1, &f, 100), 0);
    free(f.buf);
    hub_close(h);
    hubstub_stop(&other);
}

/* A Hub that redirects to another host name (localhost -> 127.0.0.1) for
 * a private repo: the token stays home, so the 401 there must not be
 * blamed on the token ("the token was refused"): the message names where
 * the request went and says to point hub-endpoint at it. Both for a
 * file and for the API. */
static void test_offhost_401(void)
{
    char ep[64], there[64];
    struct shoal_hub *h;
    struct fetched f = {0};
    struct resolved r;
    struct shoal_hub_span sp = {0, 100};

    snprintf(ep, sizeof(ep), "http://localhost:%d", stub.port);
    snprintf(there, sizeof(there), "redirected to 127.0.0.1:%d", stub.port);
    h = hub_open(ep, "tok", 0);
    stub_reset();
    stub_fault("[{\"kind\":\"redirect\",\"host\":\"127.0.0.1\",\"match\":\"/resolve/\"}]");
    CHECK_EQ(fetch(h, "org/p", commit_p, "model.safetensors", &sp, 1, &f, 100), SHOAL_EPERM);
    CHECK(strstr(f.msg, "HTTP 401") && strstr(f.msg, there) && strstr(f.msg, "hub-endpoint"));
    CHECK(strstr(f.msg, "token was refused") == NULL);
    fprintf(stderr, "  %s\n", f.msg);
    free(f.buf);
    stub_fault("[{\"kind\":\"redirect\",\"host\":\"127.0.0.1\",\"match\":\"/api/\"}]");
    CHECK_EQ(resolve(h, "org/p", "main", &r), SHOAL_EPERM);
    CHECK(strstr(r.msg, there) && strstr(r.msg, "token was refused") == NULL);
    /* Control: without the redirect the token works. */
    CHECK_EQ(resolve(h, "org/p", "main", &r), 0);
    shoal_hub_release_free(r.rel);
    hub_close(h);
}

static void test_env_and_token_file(void)
{
    struct shoal_hub_config c;
    struct shoal_hub *h = NULL;
    struct resolved r;
    char tf[300];
    FILE *fp;

    /* HF_ENDPOINT and HF_TOKEN, as huggingface_hub reads them. */
    setenv("HF_ENDPOINT", stub.url, 1);
    setenv("HF_TOKEN", "tok", 1);
    shoal_hub_config_default(&c);
    REQUIRE(shoal_hub_new(&h, &loop, &c) == 0);
    CHECK(strcmp(shoal_hub_endpoint(h), stub.url) == 0);
    CHECK(shoal_hub_has_token(h));
    {
        /* Credentials in the endpoint never reach a log line. */
        char out[128];
        shoal_url_redact("http://gwuser:s3cret@gw:8080/hub?x=a@b", out, sizeof out);
        CHECK(strcmp(out, "http://***@gw:8080/hub?x=a@b") == 0);
        shoal_url_redact("https://hub.example/p@q", out, sizeof out);
        CHECK(strcmp(out, "https://hub.example/p@q") == 0);
        shoal_url_redact("u:p@host", out, sizeof out);
        CHECK(strcmp(out, "***@host") == 0);
    }
    CHECK_EQ(resolve(h, "org/p", "main", &r), 0);
    shoal_hub_release_free(r.rel);
    hub_close(h);
    unsetenv("HF_TOKEN");

    /* A token file: first line, newline stripped. */
    snprintf(tf, sizeof(tf), "%s/token", root);
    fp = fopen(tf, "w");
    REQUIRE(fp);
    fputs("tok\n", fp);
    fclose(fp);
    shoal_hub_config_default(&c);
    c.token_file = tf;
    REQUIRE(chmod(tf, 0600) == 0);
    REQUIRE(shoal_hub_new(&h, &loop, &c) == 0);
    CHECK(!shoal_hub_token_exposed(h));
    CHECK_EQ(resolve(h, "org/p", "main", &r), 0);
    shoal_hub_release_free(r.rel);
    hub_close(h);
    /* Readable by others: used, and said (the daemon warns). */
    REQUIRE(chmod(tf, 0644) == 0);
    REQUIRE(shoal_hub_new(&h, &loop, &c) == 0);
    CHECK(shoal_hub_token_exposed(h));
    hub_close(h);
    /* A FIFO in its place is refused at once, not waited on. */
    REQUIRE(unlink(tf) == 0 && mkfifo(tf, 0600) == 0);
    CHECK_EQ(shoal_hub_new(&h, &loop, &c), SHOAL_EBADPATH);
    REQUIRE(unlink(tf) == 0);
    unsetenv("HF_ENDPOINT");

    /* No token anywhere: the private repo is refused. */
    shoal_hub_config_default(&c);
    c.endpoint = stub.url;
    REQUIRE(shoal_hub_new(&h, &loop, &c) == 0);
    CHECK(!shoal_hub_has_token(h));
    CHECK_EQ(resolve(h, "org/p", "main", &r), SHOAL_EPERM);
    hub_close(h);
    c.endpoint = "ftp://example.org";
    CHECK_EQ(shoal_hub_new(&h, &loop, &c), -EINVAL);
}

/* ---- https: a stand-in whose certificate a throwaway CA signed ---- */

static struct hubstub tls;            /* one port: TLS and plain HTTP */
static char tls_url[64];              /* https://127.0.0.1:PORT */
static char ca_pem[300], other_ca_pem[300], server_pem[300], server_key[300];

/* The stand-in's request log entries for paths holding |path_part|, with
 * (1) or without (0) an Authorization header and over TLS (1) or not (0);
 * -1 matches either. Crude, as hubstub_stat: the log is ours. */
static int log_count(const struct hubstub *s, const char *path_part, int auth, int over_tls)
{
    static char buf[1 << 20];
    int n = 0;

    REQUIRE(hubstub_http(s, "/_stub/stats", NULL, buf, sizeof buf) == 200);
    for (char *e = strstr(buf, "{\"method\""); e; e = strstr(e + 1, "{\"method\"")) {
        char *end = strchr(e, '}');
        REQUIRE(end);
        char save = end[1];
        end[1] = '\0';
        bool match = strstr(e, path_part) &&
                     (auth < 0 || strstr(e, auth ? "\"auth\": true" : "\"auth\": false")) &&
                     (over_tls < 0 || strstr(e, over_tls ? "\"tls\": true" : "\"tls\": false"));
        end[1] = save;
        n += match;
    }
    return n;
}

/* A release over https from a gateway with a private CA: with its CA
 * given, resolved and every byte fetched (through the https CDN redirect)
 * equal to the file; with the system's CAs, or another CA, refused at the
 * handshake with an error that names the certificate problem and
 * --hub-ca, and the stand-in never sees a request (so no token left). */
static void test_tls_ca(void)
{
    struct shoal_hub *h;
    struct resolved r;
    struct fetched f = {0};
    size_t len;
    uint8_t *want = read_disk("models", "org/m", commit_m, SHARD1, &len);
    struct shoal_hub_span sp = {0, len};

    REQUIRE(hubstub_post(&tls, "/_stub/reset", "{}") == 200);
    h = hub_open_ca(tls_url, "tok", 2, ca_pem);
    CHECK_EQ(resolve(h, "org/m", "main", &r), 0);
    CHECK(r.rel && strcmp(r.rel->commit, commit_m) == 0);
    shoal_hub_release_free(r.rel);
    CHECK_EQ(fetch(h, "org/m", commit_m, SHARD1, &sp, 1, &f, len), 0);
    CHECK(f.delivered == len && memcmp(f.buf, want, len) == 0);
    free(f.buf);
    /* It did go over TLS, CDN hop included, with the token at home only. */
    CHECK_EQ(log_count(&tls, "/resolve/", 1, 1), 1);
    CHECK_EQ(log_count(&tls, "/cdn/", 1, 1), 1);
    CHECK_EQ(log_count(&tls, "/", -1, 0), 0);
    hub_close(h);

    REQUIRE(hubstub_post(&tls, "/_stub/reset", "{}") == 200);
    h = hub_open_ca(tls_url, "tok", 2, NULL);
    CHECK_EQ(resolve(h, "org/m", "main", &r), SHOAL_EUNTRUSTED);
    fprintf(stderr, "  no CA: %s\n", r.msg);
    CHECK(strstr(r.msg, "certificate") && strstr(r.msg, "--hub-ca") &&
          strstr(r.msg, "the system's CAs"));
    CHECK_EQ(fetch(h, "org/m", commit_m, SHARD1, &sp, 1, &f, len), SHOAL_EUNTRUSTED);
    CHECK(strstr(f.msg, "certificate") && strstr(f.msg, SHARD1));
    CHECK_EQ(f.delivered, 0);
    free(f.buf);
    hub_close(h);
    h = hub_open_ca(tls_url, "tok", 2, other_ca_pem);
    CHECK_EQ(resolve(h, "org/m", "main", &r), SHOAL_EUNTRUSTED);
    fprintf(stderr, "  another CA: %s\n", r.msg);
    CHECK(strstr(r.msg, "certificate") && strstr(r.msg, other_ca_pem));
    hub_close(h);
    CHECK_EQ(log_count(&tls, "/", -1, -1), 0);
    free(want);
}

/* The CA bundle from $CURL_CA_BUNDLE, else $SSL_CERT_FILE (as curl and
 * OpenSSL users set them), the option before both; a missing file, a
 * directory and a file without a certificate refused by shoal_hub_new,
 * and shoal_hub_ca_verify names the file and where it came from. */
static void test_tls_ca_env(void)
{
    struct shoal_hub_config c;
    struct shoal_hub *h = NULL;
    struct resolved r;
    char msg[640], missing[300];
    const char *from;

    unsetenv("CURL_CA_BUNDLE");
    unsetenv("SSL_CERT_FILE");
    shoal_hub_config_default(&c);
    c.endpoint = tls_url;
    c.token = "";
    CHECK(shoal_hub_ca_path(&c, &from) == NULL && from == NULL);
    setenv("SSL_CERT_FILE", ca_pem, 1);
    CHECK(shoal_hub_ca_path(&c, &from) != NULL && strcmp(from, "SSL_CERT_FILE") == 0);
    REQUIRE(shoal_hub_new(&h, &loop, &c) == 0);
    CHECK_EQ(resolve(h, "org/m", "main", &r), 0);
    shoal_hub_release_free(r.rel);
    hub_close(h);
    /* CURL_CA_BUNDLE wins over SSL_CERT_FILE, and the option over both. */
    setenv("CURL_CA_BUNDLE", other_ca_pem, 1);
    REQUIRE(shoal_hub_new(&h, &loop, &c) == 0);
    CHECK_EQ(resolve(h, "org/m", "main", &r), SHOAL_EUNTRUSTED);
    hub_close(h);
    c.ca_file = ca_pem;
    REQUIRE(shoal_hub_new(&h, &loop, &c) == 0);
    CHECK_EQ(resolve(h, "org/m", "main", &r), 0);
    shoal_hub_release_free(r.rel);
    hub_close(h);

    snprintf(missing, sizeof missing, "%s/no-such-ca.pem", root);
    setenv("CURL_CA_BUNDLE", missing, 1);
    c.ca_file = NULL;
    CHECK_EQ(shoal_hub_new(&h, &loop, &c), -ENOENT);
    CHECK_EQ(shoal_hub_ca_verify(&c, msg, sizeof msg), -ENOENT);
    fprintf(stderr, "  %s\n", msg);
    CHECK(strstr(msg, missing) && strstr(msg, "$CURL_CA_BUNDLE") &&
          strstr(msg, "No such file"));
    unsetenv("CURL_CA_BUNDLE");
    unsetenv("SSL_CERT_FILE");
    c.ca_file = missing;
    CHECK_EQ(shoal_hub_ca_verify(&c, msg, sizeof msg), -ENOENT);
    CHECK(strstr(msg, missing) && !strstr(msg, "$"));
    c.ca_file = root;
    CHECK_EQ(shoal_hub_new(&h, &loop, &c), SHOAL_EBADPATH);
    c.ca_file = server_key; /* PEM, but a key */
    CHECK_EQ(shoal_hub_new(&h, &loop, &c), SHOAL_EPROTO);
    CHECK_EQ(shoal_hub_ca_verify(&c, msg, sizeof msg), SHOAL_EPROTO);
    fprintf(stderr, "  %s\n", msg);
    CHECK(strstr(msg, server_key) && strstr(msg, "no PEM certificate"));
    c.ca_file = NULL;
    CHECK_EQ(shoal_hub_ca_verify(&c, msg, sizeof msg), 0);
}

/* shoal_hub_token_follows, live: a gateway at http://127.0.0.1:P that
 * redirects to https on the same host and port (the stand-in speaks both
 * on one port) gets the token over https, so the private file comes;
 * https back down to http never carries it (401 there); nor does an
 * upgrade to https on another port (the rule allows a port change only
 * from 80 to 443, which a test without root cannot bind). */
static void test_token_upgrade_live(void)
{
    char ep[64], fault[256], there[64];
    struct hubstub tls2;
    struct shoal_hub *h;
    struct fetched f = {0};
    size_t len;
    uint8_t *want = read_disk("models", "org/p", commit_p, "model.safetensors", &len);
    struct shoal_hub_span sp = {0, len};

    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", tls.port);
    h = hub_open_ca(ep, "tok", 2, ca_pem);

    /* Upgrade on the same host and port: the token goes along. */
    REQUIRE(hubstub_post(&tls, "/_stub/reset", "{}") == 200);
    REQUIRE(hubstub_post(&tls, "/_stub/faults", "[{\"kind\":\"redirect\",\"scheme\":"
                         "\"https\",\"match\":\"/resolve/\"}]") == 200);
    CHECK_EQ(fetch(h, "org/p", commit_p, "model.safetensors", &sp, 1, &f, len), 0);
    CHECK(f.delivered == len && memcmp(f.buf, want, len) == 0);
    if (f.status)
        fprintf(stderr, "  upgrade: %s\n", f.msg);
    free(f.buf);
    CHECK_EQ(log_count(&tls, "/resolve/", 1, 0), 1); /* the http request */
    CHECK_EQ(log_count(&tls, "/resolve/", 1, 1), 1); /* its https upgrade */
    CHECK_EQ(log_count(&tls, "/resolve/", 0, -1), 0);

    /* http -> https -> http on the same host and port: the downgrade hop
     * goes without the token, so the private file is refused there. */
    REQUIRE(hubstub_post(&tls, "/_stub/reset", "{}") == 200);
    REQUIRE(hubstub_post(&tls, "/_stub/faults", "[{\"kind\":\"redirect\",\"scheme\":"
                         "\"https\",\"match\":\"/resolve/\"},{\"kind\":\"redirect\","
                         "\"scheme\":\"http\",\"match\":\"/resolve/\"}]") == 200);
    CHECK_EQ(fetch(h, "org/p", commit_p, "model.safetensors", &sp, 1, &f, len), SHOAL_EPERM);
    fprintf(stderr, "  downgrade: %s\n", f.msg);
    CHECK(strstr(f.msg, "HTTP 401") && strstr(f.msg, "from https down to http://"));
    CHECK_EQ(f.delivered, 0);
    free(f.buf);
    CHECK_EQ(log_count(&tls, "/resolve/", 1, 0), 1);
    CHECK_EQ(log_count(&tls, "/resolve/", 1, 1), 1);
    CHECK_EQ(log_count(&tls, "/resolve/", 0, 0), 1); /* back on http: no token */

    /* Upgrade to another port (a second https stand-in that knows the
     * token): the token stays home, so the file is refused there. */
    REQUIRE(hubstub_start(&tls2, py, hubdir, root, "--token", "tok", "--tls-cert", server_pem,
                          "--tls-key", server_key, NULL) == 0);
    REQUIRE(hubstub_post(&tls, "/_stub/reset", "{}") == 200);
    snprintf(fault, sizeof fault, "[{\"kind\":\"redirect\",\"scheme\":\"https\",\"port\":%d,"
             "\"match\":\"/resolve/\"}]", tls2.port);
    REQUIRE(hubstub_post(&tls, "/_stub/faults", fault) == 200);
    snprintf(there, sizeof there, "redirected to 127.0.0.1:%d", tls2.port);
    CHECK_EQ(fetch(h, "org/p", commit_p, "model.safetensors", &sp, 1, &f, len), SHOAL_EPERM);
    fprintf(stderr, "  other port: %s\n", f.msg);
    CHECK(strstr(f.msg, "HTTP 401") && strstr(f.msg, there));
    free(f.buf);
    CHECK_EQ(log_count(&tls2, "/resolve/", 0, 1), 1);
    CHECK_EQ(log_count(&tls2, "/resolve/", 1, -1), 0);
    hubstub_stop(&tls2);
    free(want);
    hub_close(h);
}

static void test_receiver_abort(void)
{
    struct shoal_hub *h = hub_open(NULL, NULL, 0);
    struct fetched f = {0};

    stub_reset();
    f.fail_after = 1;
    whole_file(h, SHARD1, &f, SHOAL_EBADHASH);
    CHECK(strstr(f.msg, SHARD1));
    free(f.buf);
    hub_close(h);
}

static void test_many_in_flight(void)
{
    struct shoal_hub *h = hub_open(NULL, NULL, 0);
    struct fetched f = {0};
    size_t len;
    uint8_t *want = read_disk("models", "org/m", commit_m, SHARD1, &len);
    struct shoal_hub_span sp[16];
    size_t n = 0;

    /* Sixteen disjoint spans: four at a time over reused connections. */
    for (uint64_t off = 0; off + 8192 <= len && n < 16; off += len / 16)
        sp[n++] = (struct shoal_hub_span){off, 4096};
    stub_reset();
    CHECK_EQ(fetch(h, "org/m", commit_m, SHARD1, sp, n, &f, len), 0);
    CHECK_EQ(f.delivered, n * 4096);
    for (size_t i = 0; i < n; i++)
        CHECK(memcmp(f.buf + sp[i].off, want + sp[i].off, 4096) == 0);
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "cdn"), (long long)n);
    free(f.buf);
    free(want);
    hub_close(h);
}

/* A gateway that ignores Range answers 200 with the whole file. A span near
 * the start is still cut out of it; one past range_skip_max fails with a
 * message saying why, instead of reading every byte before it (62x the
 * bytes wanted for eight 1 MiB spans near the end of a 64 MiB file). */
static void test_ignores_range(void)
{
    struct shoal_hub *h = hub_with(0, 64 * 1024);
    struct fetched f = {0};
    size_t len;
    uint8_t *want = read_disk("models", "org/m", commit_m, SHARD1, &len);
    struct shoal_hub_span near = {4096, 10}, far = {600000, 100};

    stub_settle();
    stub_reset();
    stub_fault("[{\"kind\": \"norange\", \"match\": \"/cdn/\", \"times\": -1}]");
    CHECK_EQ(fetch(h, "org/m", commit_m, SHARD1, &near, 1, &f, len), 0);
    CHECK_EQ(f.delivered, 10);
    CHECK(memcmp(f.buf + 4096, want + 4096, 10) == 0);
    free(f.buf);
    CHECK_EQ(fetch(h, "org/m", commit_m, SHARD1, &far, 1, &f, len), SHOAL_EPROTO);
    CHECK_EQ(f.delivered, 0);
    CHECK(strstr(f.msg, "ignores Range") != NULL);
    fprintf(stderr, "  %s\n", f.msg);
    free(f.buf);
    stub_reset();
    free(want);
    hub_close(h);
}

/* A gateway that answers every Range with a 206 from byte 0 (its cached
 * block, say) is the same waste as one ignoring Range: a span near the
 * start is cut out of it, one past range_skip_max fails at its first body
 * byte instead of reading everything before it (the review's origin made a
 * 25.5 MB release cost 113 MB that way, without a word). A 206 without a
 * Content-Range is refused rather than taken to start where we asked. The
 * stand-in sends at 1 MB/s, so what it sent is what the client read. */
static void test_range_starts_early(void)
{
    struct shoal_hub *h = hub_with(0, 64 * 1024);
    struct fetched f = {0};
    size_t len;
    uint8_t *want = read_disk("models", "org/m", commit_m, SHARD1, &len);
    struct shoal_hub_span near = {4096, 10}, far = {600000, 100};

    stub_settle();
    stub_reset();
    stub_fault("[{\"kind\": \"cr_early\", \"match\": \"/cdn/\", \"times\": -1},"
               " {\"kind\": \"slow\", \"bps\": 1000000, \"match\": \"/cdn/\", \"times\": -1}]");
    CHECK_EQ(fetch(h, "org/m", commit_m, SHARD1, &near, 1, &f, len), 0);
    CHECK_EQ(f.delivered, 10);
    CHECK(memcmp(f.buf + 4096, want + 4096, 10) == 0);
    free(f.buf);
    CHECK(hubstub_stat(&stub, NULL, "total_bytes") == 4096 + 10);
    stub_reset();
    stub_fault("[{\"kind\": \"cr_early\", \"match\": \"/cdn/\", \"times\": -1},"
               " {\"kind\": \"slow\", \"bps\": 1000000, \"match\": \"/cdn/\", \"times\": -1}]");
    CHECK_EQ(fetch(h, "org/m", commit_m, SHARD1, &far, 1, &f, len), SHOAL_EPROTO);
    CHECK_EQ(f.delivered, 0);
    CHECK(strstr(f.msg, "ignores Range") && strstr(f.msg, "206 from byte 0"));
    fprintf(stderr, "  %s\n", f.msg);
    free(f.buf);
    /* The 600,000 bytes before the span were not all read. */
    long long sent = hubstub_stat(&stub, NULL, "total_bytes");
    CHECK(sent >= 0 && sent < 300000);
    fprintf(stderr, "  origin sent %lld bytes\n", sent);

    stub_reset();
    stub_fault("[{\"kind\": \"nocr\", \"match\": \"/cdn/\", \"times\": -1}]");
    CHECK_EQ(fetch(h, "org/m", commit_m, SHARD1, &far, 1, &f, len), SHOAL_EPROTO);
    CHECK_EQ(f.delivered, 0);
    CHECK(strstr(f.msg, "206 but no valid Content-Range") != NULL);
    fprintf(stderr, "  %s\n", f.msg);
    free(f.buf);
    stub_reset();
    free(want);
    hub_close(h);
}

/* A gateway that sends headers and then nothing: shoal_hub_cancel ends the
 * running request and the queued ones at once (max_inflight 1, four
 * ranges), the done callback comes from the loop with -ECANCELED, another
 * user's fetch is untouched, and the hub serves the next fetch normally. */
static void test_cancel_stalled(void)
{
    struct shoal_hub *h = hub_with(1, 0);
    struct fetched f = {0}, g = {0};
    size_t len;
    uint8_t *want = read_disk("models", "org/m", commit_m, SHARD1, &len);
    struct shoal_hub_span sp[4] = {{0, 100}, {200000, 100}, {400000, 100}, {600000, 100}};
    struct shoal_hub_span one = {4096, 10};

    stub_settle();
    stub_reset();
    stub_fault("[{\"kind\": \"stall\", \"seconds\": 30, \"match\": \"/cdn/\", \"times\": 1}]");
    struct shoal_hub_fetch_req req = {
        .type = SHOAL_REPO_MODEL, .repo = "org/m", .rev = commit_m, .path = SHARD1,
        .spans = sp, .nspans = 4, .on_data = on_data, .on_done = on_done, .user = &f,
    };
    f.cap = g.cap = len;
    f.buf = calloc(1, len);
    g.buf = calloc(1, len);
    REQUIRE(f.buf && g.buf);
    REQUIRE(shoal_hub_fetch(h, &req) == 0);
    req.spans = &one;
    req.nspans = 1;
    req.user = &g;
    REQUIRE(shoal_hub_fetch(h, &req) == 0);
    /* Until the stand-in holds the first range request. */
    for (int i = 0; i < 100 && hubstub_stat(&stub, "\"requests\"", "cdn") < 1; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(20000);
    }
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "cdn"), 1);
    CHECK(!f.done);
    CHECK_EQ(shoal_hub_cancel(h, &f), 1);
    CHECK(!f.done); /* reported from the loop, not from inside the call */
    CHECK_EQ(shoal_hub_cancel(h, &f), 0);
    /* The stall lasts 30 s: done well before it means the cancel ended it. */
    run_until(&f.done, 10);
    CHECK(f.done);
    CHECK_EQ(f.status, -ECANCELED);
    CHECK_EQ(f.delivered, 0);
    /* The other user's fetch then runs (the stall was used up). */
    run_until(&g.done, 30);
    CHECK(g.done);
    CHECK_EQ(g.status, 0);
    CHECK_EQ(g.delivered, 10);
    CHECK(memcmp(g.buf + 4096, want + 4096, 10) == 0);
    free(f.buf);
    free(g.buf);
    free(want);
    hub_close(h);
}

/* After a redirect a job waits on the pending list for its next hop. A
 * receiver abort then cancels it: with one request at a time and four
 * ranges behind a 302 to the CDN, the cancel once freed queued jobs still
 * on that list (and wrapped the in-flight count, so the next fetch never
 * started). The next fetch must run normally. */
static void test_abort_after_redirect(void)
{
    struct shoal_hub *h = hub_with(1, 0);
    struct fetched f = {0};
    size_t len;
    uint8_t *want = read_disk("models", "org/m", commit_m, SHARD1, &len);
    struct shoal_hub_span sp[4] = {{0, 100}, {200000, 100}, {400000, 100}, {600000, 100}};
    struct shoal_hub_span one = {4096, 10};

    stub_reset();
    f.fail_after = 1;
    CHECK_EQ(fetch(h, "org/m", commit_m, SHARD1, sp, 4, &f, len), SHOAL_EBADHASH);
    free(f.buf);
    f.fail_after = 0;
    CHECK_EQ(fetch(h, "org/m", commit_m, SHARD1, &one, 1, &f, len), 0);
    CHECK_EQ(f.delivered, 10);
    CHECK(memcmp(f.buf + 4096, want + 4096, 10) == 0);
    free(f.buf);
    /* Freeing with jobs in every state (running, queued after a redirect)
     * must not touch freed memory either: start one and free mid-way (the
     * CDN slowed, or the four spans can all land within one loop turn). */
    stub_fault("[{\"kind\":\"slow\",\"bps\":2000,\"match\":\"/cdn/\"}]");
    memset(&f, 0, sizeof(f));
    struct shoal_hub_fetch_req req = {
        .type = SHOAL_REPO_MODEL, .repo = "org/m", .rev = commit_m, .path = SHARD1,
        .spans = sp, .nspans = 4, .on_data = on_data, .on_done = on_done, .user = &f,
    };
    f.cap = len;
    f.buf = calloc(1, len);
    REQUIRE(f.buf);
    REQUIRE(shoal_hub_fetch(h, &req) == 0);
    uv_timer_t guard;
    uv_timer_init(&loop, &guard);
    uv_timer_start(&guard, on_guard, 10, 10);
    for (int i = 0; i < 3000 && f.delivered < 100 && !f.done; i++)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    CHECK(!f.done);
    shoal_hub_free(h);
    uv_run(&loop, UV_RUN_DEFAULT);
    free(f.buf);
    free(want);
}

/* A gateway that cuts every answer after one byte: each attempt delivers
 * a byte, which must not count as progress, so the fetch gives up after
 * max_attempts requests instead of one request per byte. A server that
 * cuts after 100 kB every time still gets the whole file, resumed. */
static void test_cut_every_byte(void)
{
    struct shoal_hub *h = hub_open(NULL, NULL, 0);
    struct fetched f = {0};
    struct shoal_hub_stats st;
    struct shoal_hub_span sp = {0, 3000};
    size_t len;
    free(read_disk("models", "org/m", commit_m, SHARD1, &len));

    stub_settle();
    stub_reset();
    stub_fault("[{\"kind\":\"cut\",\"after\":1,\"times\":-1,\"match\":\"/cdn/\"}]");
    CHECK_EQ(fetch(h, "org/m", commit_m, SHARD1, &sp, 1, &f, len), SHOAL_EHTTP);
    CHECK(strstr(f.msg, "gave up after 8 attempts"));
    CHECK(f.delivered < 3000);
    CHECK_EQ(hubstub_stat(&stub, "\"requests\"", "cdn"), 8);
    shoal_hub_get_stats(h, &st);
    CHECK_EQ(st.resumes, 0);
    free(f.buf);
    hub_close(h);

    h = hub_open(NULL, NULL, 0);
    stub_reset();
    stub_fault("[{\"kind\":\"cut\",\"after\":100000,\"times\":-1,\"match\":\"/cdn/\"}]");
    whole_file(h, SHARD1, &f, 0);
    shoal_hub_get_stats(h, &st);
    CHECK_EQ(st.resumes, (len + 99999) / 100000 - 1);
    CHECK_EQ(hubstub_stat(&stub, NULL, "total_bytes"), (long long)len);
    free(f.buf);
    hub_close(h);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_hub PYTHON HUBDIR\n");
        return 2;
    }
    py = argv[1];
    hubdir = argv[2];
    /* Not the token a login left on this machine. */
    setenv("HF_TOKEN_PATH", "/nonexistent/shoal-tests/token", 1);
    unsetenv("HUGGING_FACE_HUB_TOKEN");
    shoal_hash_init();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    REQUIRE(uv_loop_init(&loop) == 0);
    /* The CA bundle comes from these when set (test_tls_ca_env sets them):
     * the other tests must see the system's CAs. */
    unsetenv("CURL_CA_BUNDLE");
    unsetenv("SSL_CERT_FILE");

    RUN(test_json);
    RUN(test_gitsha1);
    RUN(test_token_follows);

    snprintf(root, sizeof(root), "/tmp/shoal-test-hub-XXXXXX");
    REQUIRE(mkdtemp(root));
    REQUIRE(hubstub_genrepo(py, hubdir, root, "org/m", commit_m, "--size", "2M", "--shards", "2",
                            "--tag", "v1", NULL) == 0);
    REQUIRE(hubstub_genrepo(py, hubdir, root, "org/p", commit_p, "--size", "300K", "--shards",
                            "1", "--private", NULL) == 0);
    REQUIRE(hubstub_genrepo(py, hubdir, root, "org/g", NULL, "--size", "64K", "--shards", "1",
                            "--gated", "--grant", "other", NULL) == 0);
    REQUIRE(hubstub_start(&stub, py, hubdir, root, "--token", "tok", "--token", "other",
                          NULL) == 0);

    RUN(test_resolve);
    RUN(test_resolve_by_head);
    RUN(test_html_answer);
    RUN(test_spans_merged);
    RUN(test_429_retry_after);
    RUN(test_503_then_ok);
    RUN(test_cut_resume);
    RUN(test_slow_body);
    RUN(test_gives_up);
    RUN(test_health_run);
    RUN(test_health_refused);
    RUN(test_retry_after_holds_host);
    RUN(test_slow_resumed);
    RUN(test_not_found);
    RUN(test_private_and_gated);
    RUN(test_token_stays_home);
    RUN(test_offhost_401);
    RUN(test_token_other_port);
    RUN(test_env_and_token_file);

    {
        char dir[270], script[1100];
        snprintf(dir, sizeof dir, "%s/tls", root);
        snprintf(script, sizeof script, "%s/tlscert.py", hubdir);
        char *gen[] = {(char *)py, script, dir, NULL};
        REQUIRE(hubstub_run(gen, NULL, 0, 120) == 0);
        snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", dir);
        snprintf(other_ca_pem, sizeof other_ca_pem, "%s/other-ca.pem", dir);
        snprintf(server_pem, sizeof server_pem, "%s/server.pem", dir);
        snprintf(server_key, sizeof server_key, "%s/server.key", dir);
        REQUIRE(hubstub_start(&tls, py, hubdir, root, "--token", "tok", "--tls-cert", server_pem,
                              "--tls-key", server_key, NULL) == 0);
        snprintf(tls_url, sizeof tls_url, "https://127.0.0.1:%d", tls.port);
    }
    RUN(test_tls_ca);
    RUN(test_tls_ca_env);
    RUN(test_token_upgrade_live);
    hubstub_stop(&tls);
    RUN(test_receiver_abort);
    RUN(test_many_in_flight);
    RUN(test_cancel_stalled);
    RUN(test_ignores_range);
    RUN(test_range_starts_early);
    RUN(test_abort_after_redirect);
    RUN(test_cut_every_byte);

    hubstub_stop(&stub);
    t_rmtree(root);
    /* Every hub handle was closed: the loop must close cleanly. */
    CHECK_EQ(uv_loop_close(&loop), 0);
    curl_global_cleanup();
    return t_done();
}
