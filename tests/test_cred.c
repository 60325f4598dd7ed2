/* SPDX-License-Identifier: MIT */
/* Cluster credentials: issue and verify, expiry, untrusted cluster keys, and
 * a decoder that refuses every flipped bit, truncation, wrong type, wrong
 * count and non-canonical form. */
#include "t.h"

#include "cred.h"
#include "error.h"
#include "keys.h"
#include "mp.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define NOW 1700000000u
#define EXPIRES (NOW + 86400u)

static struct shoal_pubkey cluster_pk, other_pk, node_pk;
static struct shoal_seckey cluster_sk, other_sk, node_sk;
static struct shoal_keyset *trusted;

static void setup(void)
{
    REQUIRE(shoal_key_generate(&cluster_pk, &cluster_sk) == 0);
    REQUIRE(shoal_key_generate(&other_pk, &other_sk) == 0);
    REQUIRE(shoal_key_generate(&node_pk, &node_sk) == 0);
    REQUIRE(shoal_keyset_new(&trusted) == 0);
    REQUIRE(shoal_keyset_add(trusted, &cluster_pk) == 0);
}

static void test_issue_verify(void)
{
    struct shoal_cred c;
    REQUIRE(shoal_cred_issue(&c, &cluster_sk, &node_pk, EXPIRES) == 0);
    CHECK(memcmp(c.node_pk, node_pk.pk, 32) == 0);
    CHECK(memcmp(c.cluster_pk, cluster_pk.pk, 32) == 0);
    CHECK(c.expires_unix == EXPIRES);
    CHECK_EQ(shoal_cred_verify(&c, trusted, NOW), 0);
    CHECK_EQ(shoal_cred_verify(&c, trusted, EXPIRES - 1), 0);
    CHECK_EQ(shoal_cred_verify(&c, trusted, EXPIRES), SHOAL_EEXPIRED);
    CHECK_EQ(shoal_cred_verify(&c, trusted, EXPIRES + 1000000), SHOAL_EEXPIRED);

    /* Another cluster's credential, and no trusted keys at all. */
    struct shoal_cred o;
    REQUIRE(shoal_cred_issue(&o, &other_sk, &node_pk, EXPIRES) == 0);
    CHECK_EQ(shoal_cred_verify(&o, trusted, NOW), SHOAL_EUNTRUSTED);
    CHECK_EQ(shoal_cred_verify(&c, NULL, NOW), SHOAL_EUNTRUSTED);
    /* A node vouching for itself is just another untrusted key. */
    struct shoal_cred self;
    REQUIRE(shoal_cred_issue(&self, &node_sk, &node_pk, EXPIRES) == 0);
    CHECK_EQ(shoal_cred_verify(&self, trusted, NOW), SHOAL_EUNTRUSTED);

    /* Changing any field breaks the signature. */
    struct shoal_cred t = c;
    t.expires_unix++;
    CHECK_EQ(shoal_cred_verify(&t, trusted, NOW), SHOAL_EBADSIG);
    t = c;
    memcpy(t.node_pk, other_pk.pk, 32);
    CHECK_EQ(shoal_cred_verify(&t, trusted, NOW), SHOAL_EBADSIG);
    t = c;
    memcpy(t.cluster_pk, other_pk.pk, 32); /* claim another cluster */
    CHECK_EQ(shoal_cred_verify(&t, trusted, NOW), SHOAL_EBADSIG);
    t = c;
    t.sig[10] ^= 1;
    CHECK_EQ(shoal_cred_verify(&t, trusted, NOW), SHOAL_EBADSIG);
}

static void test_roundtrip_and_flips(void)
{
    struct shoal_cred c, d;
    REQUIRE(shoal_cred_issue(&c, &cluster_sk, &node_pk, EXPIRES) == 0);
    struct shoal_buf b;
    shoal_buf_init(&b, SHOAL_CRED_MAX_ENCODED);
    REQUIRE(shoal_cred_encode(&c, &b) == 0);
    CHECK(b.len <= SHOAL_CRED_MAX_ENCODED);
    CHECK_EQ(shoal_cred_decode(&d, b.data, b.len), 0);
    CHECK(memcmp(&c, &d, sizeof c) == 0);
    CHECK_EQ(shoal_cred_verify(&d, trusted, NOW), 0);

    /* Every single-bit change is caught by decode or verify. */
    int caught = 0, total = 0;
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            b.data[i] ^= (uint8_t)(1u << bit);
            int rv = shoal_cred_decode(&d, b.data, b.len);
            if (rv == 0)
                rv = shoal_cred_verify(&d, trusted, NOW);
            total++;
            if (rv != 0)
                caught++;
            else
                fprintf(stderr, "flip byte %zu bit %d accepted\n", i, bit);
            b.data[i] ^= (uint8_t)(1u << bit);
        }
    }
    CHECK_EQ(caught, total);
    CHECK_EQ(shoal_cred_decode(&d, b.data, b.len), 0);

    /* Every prefix is refused, and so is a trailing byte. */
    for (size_t cut = 0; cut < b.len; cut++)
        CHECK(shoal_cred_decode(&d, b.data, cut) != 0);
    REQUIRE(shoal_buf_append(&b, "\0", 1) == 0);
    CHECK_EQ(shoal_cred_decode(&d, b.data, b.len), SHOAL_EPROTO);
    shoal_buf_free(&b);
}

enum variant {
    V_OK, V_MAGIC_BIN, V_MAGIC_WRONG, V_VERSION2, V_VERSION_STR, V_EXPIRES_STR,
    V_EXPIRES_NEG, V_PK_SHORT, V_SIG_LONG, V_SEVEN, V_FIVE, V_WIDE_INT, V_MAP,
};

/* Hand-writes a credential for |c| with one field made wrong. */
static void craft(struct shoal_buf *b, const struct shoal_cred *c, enum variant v)
{
    struct shoal_mpw w;
    shoal_buf_reset(b);
    shoal_mpw_init(&w, b);
    if (v == V_MAP) {
        shoal_mpw_map(&w, 3);
    } else {
        shoal_mpw_array(&w, v == V_SEVEN ? 7 : v == V_FIVE ? 5 : 6);
    }
    if (v == V_MAGIC_BIN)
        shoal_mpw_bin(&w, SHOAL_CRED_MAGIC, strlen(SHOAL_CRED_MAGIC));
    else
        shoal_mpw_cstr(&w, v == V_MAGIC_WRONG ? "shoal-creq" : SHOAL_CRED_MAGIC);
    if (v == V_VERSION_STR)
        shoal_mpw_cstr(&w, "1");
    else
        shoal_mpw_uint(&w, v == V_VERSION2 ? 2 : 1);
    shoal_mpw_bin(&w, c->node_pk, v == V_PK_SHORT ? 31 : 32);
    shoal_mpw_bin(&w, c->cluster_pk, 32);
    if (v == V_EXPIRES_STR) {
        shoal_mpw_cstr(&w, "tomorrow");
    } else if (v == V_EXPIRES_NEG) {
        shoal_mpw_int(&w, -1);
    } else if (v == V_WIDE_INT) {
        /* The right value in a wider form than the writer uses. */
        uint8_t u64[9] = {0xcf};
        for (int i = 0; i < 8; i++)
            u64[1 + i] = (uint8_t)(c->expires_unix >> (56 - 8 * i));
        REQUIRE(shoal_buf_append(b, u64, sizeof u64) == 0);
    } else {
        shoal_mpw_uint(&w, c->expires_unix);
    }
    if (v == V_SIG_LONG) {
        uint8_t sig[65] = {0};
        memcpy(sig, c->sig, 64);
        shoal_mpw_bin(&w, sig, sizeof sig);
    } else {
        shoal_mpw_bin(&w, c->sig, 64);
    }
    if (v == V_SEVEN)
        shoal_mpw_nil(&w);
    REQUIRE(w.err == 0);
}

static void test_malformed(void)
{
    struct shoal_cred c, d;
    REQUIRE(shoal_cred_issue(&c, &cluster_sk, &node_pk, EXPIRES) == 0);
    struct shoal_buf b;
    shoal_buf_init(&b, 1024);
    static const struct {
        enum variant v;
        int want;
    } cases[] = {
        {V_OK, 0},
        {V_MAGIC_BIN, SHOAL_ETYPE},
        {V_MAGIC_WRONG, SHOAL_EPROTO},
        {V_VERSION2, SHOAL_EVERSION},
        {V_VERSION_STR, SHOAL_ETYPE},
        {V_EXPIRES_STR, SHOAL_ETYPE},
        {V_EXPIRES_NEG, SHOAL_ETYPE},
        {V_PK_SHORT, SHOAL_EBADMSG},
        {V_SIG_LONG, SHOAL_EBADMSG},
        {V_SEVEN, SHOAL_ETOOBIG},
        {V_FIVE, SHOAL_EPROTO},
        {V_WIDE_INT, SHOAL_EPROTO},
        {V_MAP, SHOAL_ETYPE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        craft(&b, &c, cases[i].v);
        int rv = shoal_cred_decode(&d, b.data, b.len);
        if (rv != cases[i].want)
            fprintf(stderr, "variant %d: got %d\n", (int)cases[i].v, rv);
        CHECK_EQ(rv, cases[i].want);
    }
    /* The well-formed hand-written one is the writer's bytes. */
    struct shoal_buf e;
    shoal_buf_init(&e, SHOAL_CRED_MAX_ENCODED);
    craft(&b, &c, V_OK);
    REQUIRE(shoal_cred_encode(&c, &e) == 0);
    CHECK(e.len == b.len && memcmp(e.data, b.data, b.len) == 0);

    /* Oversized input is refused before it is looked at. */
    uint8_t big[SHOAL_CRED_MAX_ENCODED + 1];
    memset(big, 0, sizeof big);
    memcpy(big, e.data, e.len);
    CHECK_EQ(shoal_cred_decode(&d, big, sizeof big), SHOAL_ETOOBIG);
    /* A 32-bit array count with nothing behind it. */
    const uint8_t huge[] = {0xdd, 0x7f, 0xff, 0xff, 0xff};
    CHECK(shoal_cred_decode(&d, huge, sizeof huge) != 0);
    CHECK(shoal_cred_decode(&d, NULL, 0) != 0);
    shoal_buf_free(&e);
    shoal_buf_free(&b);
}

static void test_file(void)
{
    char dir[] = "/tmp/shoal_test_cred.XXXXXX";
    REQUIRE(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/node.cred", dir);
    struct shoal_cred c, d;
    REQUIRE(shoal_cred_issue(&c, &cluster_sk, &node_pk, EXPIRES) == 0);
    CHECK_EQ(shoal_cred_save(path, &c), 0);
    memset(&d, 0, sizeof d);
    CHECK_EQ(shoal_cred_load(path, &d), 0);
    CHECK(memcmp(&c, &d, sizeof c) == 0);
    CHECK_EQ(shoal_cred_verify(&d, trusted, NOW), 0);

    char text[1024];
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    REQUIRE(n > 0);
    text[n] = '\0';
    CHECK(strncmp(text, SHOAL_CRED_FILE_TAG " ", strlen(SHOAL_CRED_FILE_TAG) + 1) == 0);
    CHECK(text[n - 1] == '\n');

    /* A renewed credential replaces the old one. */
    struct shoal_cred c2;
    REQUIRE(shoal_cred_issue(&c2, &cluster_sk, &node_pk, EXPIRES + 100) == 0);
    CHECK_EQ(shoal_cred_save(path, &c2), 0);
    CHECK_EQ(shoal_cred_load(path, &d), 0);
    CHECK(d.expires_unix == EXPIRES + 100);

    /* One changed hex digit: the decoder or the signature notices. */
    char *digit = text + strlen(SHOAL_CRED_FILE_TAG) + 1 + 100;
    *digit = *digit == '0' ? '1' : '0';
    fd = open(path, O_WRONLY | O_TRUNC);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, text, (size_t)n) == n);
    close(fd);
    int rv = shoal_cred_load(path, &d);
    if (rv == 0)
        rv = shoal_cred_verify(&d, trusted, NOW);
    CHECK(rv != 0);

    fd = open(path, O_WRONLY | O_TRUNC);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, "shoal-cred-v1 zz\n", 17) == 17);
    close(fd);
    CHECK_EQ(shoal_cred_load(path, &d), SHOAL_EPROTO);
    unlink(path);
    CHECK_EQ(shoal_cred_load(path, &d), -ENOENT);
    rmdir(dir);
}

static void write_seed(const char *dir, const char *name, const struct shoal_buf *b, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    REQUIRE(fwrite(b->data, 1, n, f) == n);
    REQUIRE(fclose(f) == 0);
}

/* Writes the fuzz seeds for fuzz_cred: one valid credential and a few
 * slightly broken ones. */
static void write_corpus(const char *dir)
{
    struct shoal_cred c;
    struct shoal_buf b;
    shoal_buf_init(&b, 1024);
    REQUIRE(shoal_cred_issue(&c, &cluster_sk, &node_pk, EXPIRES) == 0);
    craft(&b, &c, V_OK);
    write_seed(dir, "valid", &b, b.len);
    write_seed(dir, "truncated", &b, b.len - 7);
    static const struct {
        enum variant v;
        const char *name;
    } broken[] = {
        {V_VERSION2, "version2"}, {V_WIDE_INT, "wide_int"}, {V_PK_SHORT, "pk_short"},
        {V_SEVEN, "seven_fields"}, {V_EXPIRES_STR, "expires_str"},
    };
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        craft(&b, &c, broken[i].v);
        write_seed(dir, broken[i].name, &b, b.len);
    }
    shoal_buf_free(&b);
}

int main(int argc, char **argv)
{
    setup();
    /* test_cred --write-corpus DIR: regenerate the committed fuzz seeds. */
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) {
        write_corpus(argv[2]);
        shoal_keyset_free(trusted);
        return 0;
    }
    RUN(test_issue_verify);
    RUN(test_roundtrip_and_flips);
    RUN(test_malformed);
    RUN(test_file);
    shoal_keyset_free(trusted);
    return t_done();
}
