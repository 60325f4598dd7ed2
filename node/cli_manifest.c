/* SPDX-License-Identifier: MIT */
/* `shoal manifest build|verify|show`: signed release manifests from folders. */
#include "cli.h"
#include "cliutil.h"
#include "mfbuild.h"

#include "error.h"
#include "hash.h"
#include "keys.h"
#include "manifest.h"

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int usage_err(const char *msg)
{
    fprintf(stderr, "shoal manifest: %s (try 'shoal help')\n", msg);
    return 2;
}

static int manifest_build(int argc, char **argv)
{
    static const struct option opts[] = {
        {"repo", required_argument, NULL, 'r'},
        {"commit", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"out", required_argument, NULL, 'o'},
        {"dataset", no_argument, NULL, 'd'},
        {"min", required_argument, NULL, 'm'},
        {"avg", required_argument, NULL, 'a'},
        {"max", required_argument, NULL, 'x'},
        {NULL, 0, NULL, 0},
    };
    const char *repo = NULL, *commit = NULL, *keyp = NULL, *outp = NULL;
    enum shoal_repo_type type = SHOAL_REPO_MODEL;
    struct shoal_cdc_params p;
    shoal_cdc_params_default(&p);
    int c;
    uint64_t v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'r': repo = optarg; break;
        case 'c': commit = optarg; break;
        case 'k': keyp = optarg; break;
        case 'o': outp = optarg; break;
        case 'd': type = SHOAL_REPO_DATASET; break;
        case 'm': case 'a': case 'x':
            if (shoal_parse_size(optarg, &v) != 0 || v > UINT32_MAX)
                return usage_err("bad size");
            if (c == 'm') p.min_size = (uint32_t)v;
            if (c == 'a') p.avg_size = (uint32_t)v;
            if (c == 'x') p.max_size = (uint32_t)v;
            break;
        default: return usage_err("unknown option");
        }
    }
    if (optind != argc - 1 || !repo || !commit || !keyp || !outp)
        return usage_err("build needs DIR --repo ORG/NAME --commit SHA --key FILE --out FILE");
    if (shoal_cdc_params_check(&p) != 0)
        return usage_err("chunk sizes need 64 <= min < avg < max <= 64M, avg a power of two");
    /* The manifest holds the commit as 40 lowercase hex digits; anything
     * else came back from the encoder as a bare "invalid message". */
    char commit_lc[41];
    size_t clen = strlen(commit);
    if (clen != 40 || strspn(commit, "0123456789abcdefABCDEF") != 40) {
        fprintf(stderr, "shoal manifest: commit must be 40 hex characters (the full git "
                        "commit sha), not '%s'\n", commit);
        return 2;
    }
    for (size_t i = 0; i <= clen; i++)
        commit_lc[i] = (char)tolower((unsigned char)commit[i]);
    commit = commit_lc;
    const char *dir = argv[optind];
    struct shoal_seckey sk;
    int rv = shoal_seckey_load(keyp, &sk);
    if (rv) {
        char why[512];
        fprintf(stderr, "shoal manifest: publisher key %s\n",
                shoal_keyfile_strerror(keyp, rv, why, sizeof why));
        return 1;
    }
    struct shoal_manifest *m = NULL;
    struct shoal_buf out;
    shoal_buf_init(&out, SHOAL_MF_MAX_BYTES_DEFAULT);
    int status = 1;
    rv = shoal_mfbuild_dir(dir, type, repo, commit, &p, stderr, &m);
    if (rv)
        goto out;
    rv = shoal_manifest_sign(m, &sk, (uint64_t)time(NULL), &out);
    if (rv) {
        fprintf(stderr, "shoal manifest: cannot sign %s@%s: %s\n", repo, commit, shoal_strerror(rv));
        goto out;
    }
    rv = shoal_write_file_atomic(outp, out.data, out.len);
    if (rv) {
        fprintf(stderr, "shoal manifest: cannot write %s: %s\n", outp, shoal_strerror(rv));
        goto out;
    }
    char hex[2 * SHOAL_HASH_LEN + 1], sz[32];
    shoal_hex(hex, shoal_manifest_id(m), SHOAL_HASH_LEN);
    printf("manifest %s: %s@%s, %u files, %u chunks, %s, %zu bytes signed\nid %s\n", outp, repo,
           commit, shoal_manifest_nfiles(m), shoal_manifest_nchunks(m),
           shoal_fmt_bytes(sz, sizeof sz, shoal_manifest_total_size(m)), out.len, hex);
    status = 0;
out:
    sodium_memzero(&sk, sizeof sk);
    shoal_manifest_free(m);
    shoal_buf_free(&out);
    return status;
}

/* Shared by verify and show: parse FILE with the --trust keys (if any). */
static int load_manifest(const char *path, struct shoal_keyset *trusted, struct shoal_manifest **m)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rv = shoal_read_file(path, SHOAL_MF_MAX_BYTES_DEFAULT, &data, &len);
    if (rv) {
        fprintf(stderr, "shoal manifest: %s: %s\n", path, shoal_strerror(rv));
        return rv;
    }
    rv = shoal_manifest_parse(m, data, len, trusted, NULL);
    free(data);
    if (rv)
        fprintf(stderr, "shoal manifest: %s: REJECTED: %s\n", path, shoal_strerror(rv));
    return rv;
}

static void print_manifest(const struct shoal_manifest *m, bool chunks)
{
    char hex[2 * SHOAL_HASH_LEN + 1], sz[32];
    const struct shoal_cdc_params *p = shoal_manifest_params(m);
    shoal_hex(hex, shoal_manifest_id(m), SHOAL_HASH_LEN);
    printf("id        %s\n", hex);
    printf("release   %s %s@%s\n",
           shoal_manifest_repo_type(m) == SHOAL_REPO_DATASET ? "dataset" : "model",
           shoal_manifest_repo_id(m), shoal_manifest_commit(m));
    shoal_hex(hex, shoal_manifest_signer(m), SHOAL_HASH_LEN);
    printf("signer    %s\n", hex);
    time_t t = (time_t)shoal_manifest_created(m);
    char tb[64];
    strftime(tb, sizeof tb, "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
    printf("created   %s\n", tb);
    printf("chunking  min %u avg %u max %u\n", p->min_size, p->avg_size, p->max_size);
    printf("size      %s in %u files, %u chunks\n",
           shoal_fmt_bytes(sz, sizeof sz, shoal_manifest_total_size(m)), shoal_manifest_nfiles(m),
           shoal_manifest_nchunks(m));
    for (uint32_t i = 0; i < shoal_manifest_nfiles(m); i++) {
        const struct shoal_mf_file *f = shoal_manifest_file(m, i);
        shoal_hex(hex, f->sha256, sizeof f->sha256);
        printf("  %-40s %12llu bytes %6u chunks sha256 %s\n", f->path, (unsigned long long)f->size,
               f->nchunks, hex);
        for (uint32_t c = 0; chunks && c < f->nchunks; c++) {
            const struct shoal_mf_chunk *k = shoal_manifest_chunk(m, f->first_chunk + c);
            shoal_hex(hex, k->id, sizeof k->id);
            printf("      %12llu %9u %s\n", (unsigned long long)k->offset, k->len, hex);
        }
    }
}

static int manifest_verify_show(int argc, char **argv, bool show)
{
    static const struct option opts[] = {
        {"trust", required_argument, NULL, 't'},
        {"chunks", no_argument, NULL, 'c'},
        {NULL, 0, NULL, 0},
    };
    struct shoal_keyset *ks = NULL;
    struct shoal_manifest *m = NULL;
    bool chunks = false;
    int status = 1, c, rv;
    if (shoal_keyset_new(&ks) != 0)
        return 1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'c') {
            chunks = true;
            continue;
        }
        if (c != 't') {
            status = usage_err("unknown option");
            goto out;
        }
        rv = shoal_keyset_load_file(ks, optarg);
        if (rv) {
            char why[512];
            fprintf(stderr, "shoal manifest: trusted key %s\n",
                    shoal_keyfile_strerror(optarg, rv, why, sizeof why));
            goto out;
        }
    }
    if (optind != argc - 1) {
        status = usage_err("expected one manifest file");
        goto out;
    }
    if (!show && shoal_keyset_count(ks) == 0) {
        status = usage_err("verify needs at least one --trust PUBFILE");
        goto out;
    }
    if (load_manifest(argv[optind], shoal_keyset_count(ks) ? ks : NULL, &m) != 0)
        goto out;
    if (show) {
        print_manifest(m, chunks);
        if (shoal_keyset_count(ks) == 0)
            printf("(signature valid; signer not checked: no --trust given)\n");
    } else {
        char hex[2 * SHOAL_HASH_LEN + 1];
        shoal_hex(hex, shoal_manifest_id(m), SHOAL_HASH_LEN);
        printf("%s: OK, %s@%s signed by a trusted publisher, id %s\n", argv[optind],
               shoal_manifest_repo_id(m), shoal_manifest_commit(m), hex);
    }
    status = 0;
out:
    shoal_manifest_free(m);
    shoal_keyset_free(ks);
    return status;
}

int shoal_cmd_manifest(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "build") == 0)
        return manifest_build(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "verify") == 0)
        return manifest_verify_show(argc - 1, argv + 1, false);
    if (argc >= 2 && strcmp(argv[1], "show") == 0)
        return manifest_verify_show(argc - 1, argv + 1, true);
    return usage_err("expected 'build', 'verify' or 'show'");
}
