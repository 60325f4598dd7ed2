/* SPDX-License-Identifier: MIT */
/*
 * Hub client throughput against a real web server: Debian's nginx, run
 * unprivileged in a temp dir on 127.0.0.1 (no daemon, no master process,
 * its own pid and log paths), serves a generated 1 GiB safetensors file in
 * the Hub's /{repo}/resolve/{rev}/{path} layout. The same URL is fetched
 * through node/hub.c and with the curl command line, best of 3 each:
 *   BENCH hub_client_mbps, BENCH curl_mbps, BENCH hub_vs_curl_ratio
 * (MB = 1e6 bytes; target ratio >= 0.9). Exits 77 when nginx or curl is
 * missing. Usage: bench_hub PYTHON HUBDIR [NGINX [CURL [SIZE]]]
 */
#include "error.h"
#include "hub.h"

#include "../tests/hub/stub.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <uv.h>

#define RUNS 3

struct sink {
    bool done;
    int status;
    uint64_t bytes;
    uint64_t next;
    bool order_ok;
    uint8_t touch;
};

static int on_data(void *user, uint64_t off, const uint8_t *p, size_t n)
{
    struct sink *s = user;

    s->order_ok = s->order_ok && off == s->next;
    /* Touch the data, as curl writing to /dev/null at least copies it. */
    if (n)
        s->touch ^= p[0] ^ p[n - 1];
    s->next = off + n;
    s->bytes += n;
    return 0;
}

static void on_done(void *user, int status, const char *msg)
{
    struct sink *s = user;
    s->done = true;
    s->status = status;
    if (status)
        fprintf(stderr, "bench_hub: %s\n", msg);
}

static void on_guard(uv_timer_t *t)
{
    (void)t;
}

static double fetch_hub(const char *endpoint, const char *commit, uint64_t size)
{
    uv_loop_t loop;
    uv_timer_t guard;
    struct shoal_hub *h = NULL;
    struct shoal_hub_config c;
    struct sink s = {.order_ok = true};
    struct shoal_hub_span sp = {0, size};
    struct shoal_hub_fetch_req req = {
        .type = SHOAL_REPO_MODEL, .repo = "bench/big", .rev = commit,
        .path = "model.safetensors", .spans = &sp, .nspans = 1,
        .on_data = on_data, .on_done = on_done, .user = &s,
    };
    double mbps = -1;
    uint64_t t0, deadline;

    uv_loop_init(&loop);
    shoal_hub_config_default(&c);
    c.endpoint = endpoint;
    c.token = "";
    if (shoal_hub_new(&h, &loop, &c) != 0)
        goto out;
    uv_timer_init(&loop, &guard);
    uv_timer_start(&guard, on_guard, 100, 100);
    t0 = uv_hrtime();
    deadline = t0 + 120ull * 1000000000ull;
    if (shoal_hub_fetch(h, &req) == 0)
        while (!s.done && uv_hrtime() < deadline)
            uv_run(&loop, UV_RUN_ONCE);
    if (s.done && s.status == 0 && s.bytes == size && s.order_ok)
        mbps = (double)size / ((double)(uv_hrtime() - t0) / 1e9) / 1e6;
    uv_close((uv_handle_t *)&guard, NULL);
    shoal_hub_free(h);
    uv_run(&loop, UV_RUN_DEFAULT);
out:
    uv_loop_close(&loop);
    return mbps;
}

static double fetch_curl(const char *curl, const char *url, uint64_t size)
{
    char *argv[] = {(char *)curl, "-s", "-f", "-o", "/dev/null", "-w", "%{size_download}",
                    (char *)url, NULL};
    char out[64];
    uint64_t t0 = uv_hrtime();

    if (hubstub_run(argv, out, sizeof(out), 120) != 0 || strtoull(out, NULL, 10) != size)
        return -1;
    return (double)size / ((double)(uv_hrtime() - t0) / 1e9) / 1e6;
}

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static bool wait_port(int port, int seconds)
{
    for (int i = 0; i < seconds * 20; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return true;
        usleep(50000);
    }
    return false;
}

int main(int argc, char **argv)
{
    const char *py, *hubdir, *nginx = "/usr/sbin/nginx", *curl = "/usr/bin/curl";
    const char *size_arg = "1G";
    char dir[256], conf[512], url[512], endpoint[64], commit[41], fn[700];
    double best_hub = -1, best_curl = -1;
    struct stat st;
    pid_t pid = -1;
    int port, rc = 1;
    FILE *fp;

    if (argc < 3) {
        fprintf(stderr, "usage: bench_hub PYTHON HUBDIR [NGINX [CURL [SIZE]]]\n");
        return 2;
    }
    py = argv[1];
    hubdir = argv[2];
    if (argc > 3)
        nginx = argv[3];
    if (argc > 4)
        curl = argv[4];
    if (argc > 5)
        size_arg = argv[5];
    if (access(nginx, X_OK) != 0 || access(curl, X_OK) != 0) {
        fprintf(stderr, "bench_hub: %s or %s missing, skipping\n", nginx, curl);
        return 77;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(dir, sizeof(dir), "/tmp/shoal-bench-hub-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    if (hubstub_genrepo(py, hubdir, dir, "bench/big", commit, "--size", size_arg, "--shards",
                        "1", NULL) != 0) {
        fprintf(stderr, "bench_hub: genrepo failed\n");
        goto out;
    }
    snprintf(fn, sizeof(fn), "%s/models/bench/big/commits/%s/model.safetensors", dir, commit);
    if (stat(fn, &st) != 0)
        goto out;

    port = free_port();
    snprintf(conf, sizeof(conf), "%s/nginx.conf", dir);
    fp = fopen(conf, "w");
    if (!fp || port <= 0)
        goto out;
    /* master_process off: one process as the current user, nothing to drop
     * privileges to, so files in our 0700 temp dir stay readable. */
    fprintf(fp,
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid %s/nginx.pid;\n"
            "error_log %s/error.log warn;\n"
            "events { worker_connections 64; }\n"
            "http {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n"
            "  client_body_temp_path %s/t1;\n  proxy_temp_path %s/t2;\n"
            "  fastcgi_temp_path %s/t3;\n  uwsgi_temp_path %s/t4;\n  scgi_temp_path %s/t5;\n"
            "  default_type application/octet-stream;\n"
            "  server {\n    listen 127.0.0.1:%d;\n"
            "    location ~ ^/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$ {\n"
            "      alias %s/models/$1/$2/commits/$3/$4;\n    }\n  }\n}\n",
            dir, dir, dir, dir, dir, dir, dir, port, dir);
    fclose(fp);
    pid = fork();
    if (pid == 0) {
        char *nargv[] = {(char *)nginx, "-p", dir, "-c", conf, "-e", fn, NULL};
        snprintf(fn, sizeof(fn), "%s/error.log", dir);
        nargv[6] = fn;
        execv(nginx, nargv);
        _exit(127);
    }
    if (pid < 0 || !wait_port(port, 10)) {
        fprintf(stderr, "bench_hub: nginx did not start (see %s/error.log)\n", dir);
        goto out;
    }
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", port);
    snprintf(url, sizeof(url), "%s/bench/big/resolve/%s/model.safetensors", endpoint, commit);

    /* Warm the page cache once so neither side pays for the disk. */
    fetch_curl(curl, url, (uint64_t)st.st_size);
    for (int i = 0; i < RUNS; i++) {
        double a = fetch_hub(endpoint, commit, (uint64_t)st.st_size);
        double b = fetch_curl(curl, url, (uint64_t)st.st_size);
        if (a > best_hub)
            best_hub = a;
        if (b > best_curl)
            best_curl = b;
    }
    printf("BENCH hub_client_mbps %.1f MB/s\n", best_hub);
    printf("BENCH curl_mbps %.1f MB/s\n", best_curl);
    /* Target: >= 0.9 (printed as measured either way). */
    printf("BENCH hub_vs_curl_ratio %.3f ratio\n",
           best_hub > 0 && best_curl > 0 ? best_hub / best_curl : 0.0);
    rc = best_hub > 0 && best_curl > 0 ? 0 : 1;
out:
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    t_rmtree(dir);
    curl_global_cleanup();
    return rc;
}
