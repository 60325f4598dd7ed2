/* SPDX-License-Identifier: MIT */
/*
 * `shoal` subcommands that exercise the protocol library directly, with no
 * daemon: keys, cluster credentials, chunking and hashing files.
 */
#include "cli.h"
#include "cliutil.h"

#include "cdc.h"
#include "cred.h"
#include "error.h"
#include "hash.h"
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define READ_BLOCK (1u << 20)

static int usage_err(const char *cmd, const char *msg)
{
    fprintf(stderr, "shoal %s: %s (try 'shoal help %s')\n", cmd, msg, cmd);
    return 2;
}

/* ---- keygen ---- */

int shoal_cmd_keygen(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-')
        return usage_err("keygen", "expected exactly one argument: the secret key file to create");
    const char *path = argv[1];
    char pubpath[4096];
    if (snprintf(pubpath, sizeof pubpath, "%s.pub", path) >= (int)sizeof pubpath)
        return usage_err("keygen", "path too long");
    struct shoal_pubkey pk;
    struct shoal_seckey sk;
    if (shoal_crypto_init() != 0 || shoal_key_generate(&pk, &sk) != 0) {
        fprintf(stderr, "shoal keygen: could not generate a key\n");
        return 1;
    }
    int rv = shoal_seckey_save(path, &sk);
    sodium_memzero(&sk, sizeof sk);
    if (rv) {
        fprintf(stderr, "shoal keygen: cannot write secret key %s: %s\n", path, shoal_strerror(rv));
        return 1;
    }
    rv = shoal_pubkey_save(pubpath, &pk);
    if (rv) {
        fprintf(stderr, "shoal keygen: cannot write public key %s: %s\n", pubpath, shoal_strerror(rv));
        return 1;
    }
    char hex[2 * SHOAL_PUBKEY_LEN + 1];
    shoal_hex(hex, pk.pk, sizeof pk.pk);
    printf("secret key: %s (mode 0600)\npublic key: %s\n%s\n", path, pubpath, hex);
    return 0;
}

/* ---- cred ---- */

/* Longest credential: ten years. */
#define CRED_DAYS_MAX 3650

/* A number of days, fractions allowed (short-lived credentials are how a
 * cluster revokes: an hour is 0.0417), from one second to CRED_DAYS_MAX,
 * nothing after it (strtod alone took "3x" as 3 and "abc" as 0).
 * Returns 0 or -EINVAL. */
static int parse_days(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v * 86400 >= 1) || v > CRED_DAYS_MAX)
        return -EINVAL;
    *out = v;
    return 0;
}

static int cred_issue(int argc, char **argv)
{
    static const struct option opts[] = {
        {"cluster-key", required_argument, NULL, 'k'},
        {"node", required_argument, NULL, 'n'},
        {"days", required_argument, NULL, 'd'},
        {"out", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    const char *keyp = NULL, *nodep = NULL, *outp = NULL;
    double days = 30;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'k': keyp = optarg; break;
        case 'n': nodep = optarg; break;
        case 'd':
            if (parse_days(optarg, &days) != 0) {
                fprintf(stderr, "shoal cred: --days needs a number of days (fractions allowed) from "
                                "one second to %d, "
                                "not '%s'\n", CRED_DAYS_MAX, optarg);
                return 2;
            }
            break;
        case 'o': outp = optarg; break;
        default: return usage_err("cred", "unknown option");
        }
    }
    if (!keyp || !nodep || !outp)
        return usage_err("cred", "issue needs --cluster-key FILE --node PUBFILE --out FILE [--days N]");
    struct shoal_seckey sk;
    struct shoal_pubkey node;
    int rv = shoal_seckey_load(keyp, &sk);
    if (rv) {
        char why[512];
        fprintf(stderr, "shoal cred: cluster key %s\n",
                shoal_keyfile_strerror(keyp, rv, why, sizeof why));
        return 1;
    }
    rv = shoal_pubkey_load(nodep, &node);
    if (rv) {
        sodium_memzero(&sk, sizeof sk);
        char why[512];
        fprintf(stderr, "shoal cred: node public key %s\n",
                shoal_keyfile_strerror(nodep, rv, why, sizeof why));
        return 1;
    }
    struct shoal_cred cred;
    uint64_t exp = (uint64_t)time(NULL) + (uint64_t)(days * 86400);
    rv = shoal_cred_issue(&cred, &sk, &node, exp);
    sodium_memzero(&sk, sizeof sk);
    if (rv == 0)
        rv = shoal_cred_save(outp, &cred);
    if (rv) {
        fprintf(stderr, "shoal cred: cannot write %s: %s\n", outp, shoal_strerror(rv));
        return 1;
    }
    char tbuf[64];
    time_t t = (time_t)exp;
    strftime(tbuf, sizeof tbuf, "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
    printf("credential: %s (expires %s)\n", outp, tbuf);
    return 0;
}

static int cred_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        {"cluster-pub", required_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    struct shoal_keyset *ks = NULL;
    int status = 1, c, rv;
    if (shoal_keyset_new(&ks) != 0)
        return 1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c != 'p') {
            status = usage_err("cred", "unknown option");
            goto out;
        }
        rv = shoal_keyset_load_file(ks, optarg);
        if (rv) {
            char why[512];
            fprintf(stderr, "shoal cred: cluster public key %s\n",
                    shoal_keyfile_strerror(optarg, rv, why, sizeof why));
            goto out;
        }
    }
    if (optind != argc - 1 || shoal_keyset_count(ks) == 0) {
        status = usage_err("cred", "verify needs --cluster-pub PUBFILE and one credential file");
        goto out;
    }
    struct shoal_cred cred;
    rv = shoal_cred_load(argv[optind], &cred);
    if (rv == 0)
        rv = shoal_cred_verify(&cred, ks, (uint64_t)time(NULL));
    char hex[2 * SHOAL_PUBKEY_LEN + 1];
    if (rv) {
        /* A key file given where the credential goes is a likely mix-up:
         * name it rather than "malformed encoding". */
        char head[32] = "";
        FILE *f = fopen(argv[optind], "re");
        if (f) {
            if (!fgets(head, sizeof head, f))
                head[0] = '\0';
            fclose(f);
        }
        const char *what = strncmp(head, SHOAL_SECKEY_TAG, strlen(SHOAL_SECKEY_TAG)) == 0
                               ? " (it is a secret key file, not a credential)"
                           : strncmp(head, SHOAL_PUBKEY_TAG, strlen(SHOAL_PUBKEY_TAG)) == 0
                               ? " (it is a public key file, not a credential)"
                               : "";
        fprintf(stderr, "shoal cred: %s: REJECTED: %s%s\n", argv[optind], shoal_strerror(rv),
                what);
        goto out;
    }
    shoal_hex(hex, cred.node_pk, sizeof cred.node_pk);
    printf("%s: valid credential for node %s, %.1f days left\n", argv[optind], hex,
           (double)(cred.expires_unix - (uint64_t)time(NULL)) / 86400.0);
    status = 0;
out:
    shoal_keyset_free(ks);
    return status;
}

int shoal_cmd_cred(int argc, char **argv)
{
    if (argc < 2)
        return usage_err("cred", "expected 'issue' or 'verify'");
    if (strcmp(argv[1], "issue") == 0)
        return cred_issue(argc - 1, argv + 1);
    if (strcmp(argv[1], "verify") == 0)
        return cred_verify(argc - 1, argv + 1);
    return usage_err("cred", "expected 'issue' or 'verify'");
}

/* ---- chunk / hash ---- */

struct chunk_print {
    bool ids;
    uint64_t chunks;
};

static int print_chunk(void *user, uint64_t off, uint32_t len, const uint8_t id[SHOAL_HASH_LEN])
{
    struct chunk_print *cp = user;
    cp->chunks++;
    if (cp->ids) {
        char hex[2 * SHOAL_HASH_LEN + 1];
        shoal_hex(hex, id, SHOAL_HASH_LEN);
        printf("  %12llu %9u %s\n", (unsigned long long)off, len, hex);
    }
    return 0;
}

/* Streams |path| through |ch| in READ_BLOCK reads. Returns 0 or -errno. */
static int feed_file(struct shoal_chunker *ch, const char *path, shoal_chunk_cb cb, void *user,
                     uint8_t *blk)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rv = 0;
    for (;;) {
        ssize_t n = read(fd, blk, READ_BLOCK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rv = -errno;
            break;
        }
        if (n == 0)
            break;
        rv = shoal_chunker_feed(ch, blk, (size_t)n, cb, user);
        if (rv)
            break;
    }
    close(fd);
    return rv;
}

int shoal_cmd_chunk(int argc, char **argv)
{
    static const struct option opts[] = {
        {"min", required_argument, NULL, 'm'},
        {"avg", required_argument, NULL, 'a'},
        {"max", required_argument, NULL, 'x'},
        {"ids", no_argument, NULL, 'i'},
        {NULL, 0, NULL, 0},
    };
    struct shoal_cdc_params p;
    shoal_cdc_params_default(&p);
    struct chunk_print cp = {0};
    int c;
    uint64_t v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'i') {
            cp.ids = true;
            continue;
        }
        if (c == '?' || shoal_parse_size(optarg, &v) != 0 || v > UINT32_MAX)
            return usage_err("chunk", "bad option or size");
        if (c == 'm') p.min_size = (uint32_t)v;
        if (c == 'a') p.avg_size = (uint32_t)v;
        if (c == 'x') p.max_size = (uint32_t)v;
    }
    if (optind >= argc)
        return usage_err("chunk", "no files given");
    if (shoal_cdc_params_check(&p) != 0)
        return usage_err("chunk", "need 64 <= min < avg < max <= 64M with avg a power of two");
    struct shoal_chunker *ch = NULL;
    uint8_t *blk = malloc(READ_BLOCK);
    int status = 1;
    if (!blk || shoal_chunker_new(&ch, &p) != 0)
        goto out;
    for (int i = optind; i < argc; i++) {
        cp.chunks = 0;
        if (cp.ids)
            printf("%s:\n  %12s %9s %s\n", argv[i], "offset", "length", "chunk id (blake2b-256)");
        int rv = feed_file(ch, argv[i], print_chunk, &cp, blk);
        uint8_t sha[SHOAL_HASH_LEN];
        uint64_t size = 0;
        if (rv == 0)
            rv = shoal_chunker_finish(ch, print_chunk, &cp, sha, &size);
        else
            shoal_chunker_reset(ch);
        if (rv) {
            fprintf(stderr, "shoal chunk: %s: %s\n", argv[i], shoal_strerror(rv));
            goto out;
        }
        char hex[2 * SHOAL_HASH_LEN + 1], sz[32];
        shoal_hex(hex, sha, sizeof sha);
        printf("%s: %s in %llu chunks (avg %s), sha256 %s\n", argv[i],
               shoal_fmt_bytes(sz, sizeof sz, size), (unsigned long long)cp.chunks,
               cp.chunks ? shoal_fmt_bytes((char[32]){0}, 32, size / cp.chunks) : "-", hex);
    }
    status = 0;
out:
    shoal_chunker_free(ch);
    free(blk);
    return status;
}

int shoal_cmd_hash(int argc, char **argv)
{
    if (argc < 2)
        return usage_err("hash", "no files given");
    uint8_t *blk = malloc(READ_BLOCK);
    if (!blk || shoal_hash_init() != 0) {
        free(blk);
        return 1;
    }
    int status = 0;
    for (int i = 1; i < argc; i++) {
        int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "shoal hash: %s: %s\n", argv[i], strerror(errno));
            status = 1;
            continue;
        }
        struct shoal_sha256 s;
        struct shoal_blake2b b;
        shoal_sha256_init(&s);
        shoal_blake2b_init(&b);
        ssize_t n;
        while ((n = read(fd, blk, READ_BLOCK)) > 0) {
            shoal_sha256_update(&s, blk, (size_t)n);
            shoal_blake2b_update(&b, blk, (size_t)n);
        }
        int err = n < 0 ? errno : 0;
        close(fd);
        if (err) {
            fprintf(stderr, "shoal hash: %s: %s\n", argv[i], strerror(err));
            status = 1;
            continue;
        }
        uint8_t hs[SHOAL_HASH_LEN], hb[SHOAL_HASH_LEN];
        char xs[2 * SHOAL_HASH_LEN + 1], xb[2 * SHOAL_HASH_LEN + 1];
        shoal_sha256_final(&s, hs);
        shoal_blake2b_final(&b, hb);
        shoal_hex(xs, hs, sizeof hs);
        shoal_hex(xb, hb, sizeof hb);
        printf("sha256 %s  blake2b-256 %s  %s\n", xs, xb, argv[i]);
    }
    free(blk);
    return status;
}
