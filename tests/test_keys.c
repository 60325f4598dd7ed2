/* SPDX-License-Identifier: MIT */
/* Key pairs and key files: round trips, refusal to overwrite a secret key or
 * to read one that others can read, malformed files, and trusted-key sets. */
#include "t.h"

#include "error.h"
#include "hash.h"
#include "keys.h"
#include "keywatch.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static const char *tpath(const char *name)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    REQUIRE(fchmod(fd, mode) == 0);
    close(fd);
}

static size_t read_text(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    ssize_t n = read(fd, buf, cap - 1);
    REQUIRE(n >= 0);
    buf[n] = '\0';
    close(fd);
    return (size_t)n;
}

static void test_secret_roundtrip(void)
{
    struct shoal_pubkey pk, pk2;
    struct shoal_seckey sk, sk2;
    REQUIRE(shoal_key_generate(&pk, &sk) == 0);
    shoal_seckey_public(&sk, &pk2);
    CHECK(memcmp(pk.pk, pk2.pk, 32) == 0);

    const char *p = tpath("node.key");
    CHECK_EQ(shoal_seckey_save(p, &sk), 0);
    struct stat st;
    REQUIRE(stat(p, &st) == 0);
    CHECK_EQ(st.st_mode & 0777, 0600);
    char text[512];
    size_t n = read_text(p, text, sizeof text);
    CHECK_EQ(n, strlen(SHOAL_SECKEY_TAG) + 1 + 128 + 1);
    CHECK(strncmp(text, SHOAL_SECKEY_TAG " ", strlen(SHOAL_SECKEY_TAG) + 1) == 0);
    CHECK(text[n - 1] == '\n');

    CHECK_EQ(shoal_seckey_load(p, &sk2), 0);
    CHECK(memcmp(sk.sk, sk2.sk, sizeof sk.sk) == 0);

    /* The loaded key signs what the public key verifies. */
    uint8_t sig[64];
    const uint8_t msg[] = "release";
    crypto_sign_detached(sig, NULL, msg, sizeof msg, sk2.sk);
    CHECK_EQ(crypto_sign_verify_detached(sig, msg, sizeof msg, pk.pk), 0);

    /* A read-only owner file is fine. */
    REQUIRE(chmod(p, 0400) == 0);
    CHECK_EQ(shoal_seckey_load(p, &sk2), 0);
    unlink(p);
}

static void test_secret_not_overwritten(void)
{
    struct shoal_pubkey pk;
    struct shoal_seckey a, b, got;
    REQUIRE(shoal_key_generate(&pk, &a) == 0);
    REQUIRE(shoal_key_generate(&pk, &b) == 0);
    const char *p = tpath("keep.key");
    REQUIRE(shoal_seckey_save(p, &a) == 0);
    CHECK_EQ(shoal_seckey_save(p, &b), SHOAL_EEXIST);
    REQUIRE(shoal_seckey_load(p, &got) == 0);
    CHECK(memcmp(got.sk, a.sk, sizeof a.sk) == 0);
    unlink(p);

    /* Nor is any other file that happens to be at the path. */
    write_text(p, "precious\n", 0600);
    CHECK_EQ(shoal_seckey_save(p, &b), SHOAL_EEXIST);
    char text[64];
    read_text(p, text, sizeof text);
    CHECK(strcmp(text, "precious\n") == 0);
    unlink(p);
}

static void test_secret_mode_refused(void)
{
    struct shoal_pubkey pk;
    struct shoal_seckey sk, got;
    memset(&got, 0xaa, sizeof got);
    REQUIRE(shoal_key_generate(&pk, &sk) == 0);
    const char *p = tpath("loose.key");
    REQUIRE(shoal_seckey_save(p, &sk) == 0);
    const mode_t bad[] = {0644, 0640, 0604, 0620, 0602, 0660, 0606};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        REQUIRE(chmod(p, bad[i]) == 0);
        CHECK_EQ(shoal_seckey_load(p, &got), SHOAL_EKEYMODE);
    }
    /* The message names the file, its mode and the fix. */
    REQUIRE(chmod(p, 0644) == 0);
    char msg[1024], want[1024];
    snprintf(want, sizeof want, "%s is readable by group/others (mode 0644): chmod 600 %s", p, p);
    CHECK_STR(shoal_keyfile_strerror(p, SHOAL_EKEYMODE, msg, sizeof msg), want);
    /* Nothing was written into the output on refusal. */
    for (size_t i = 0; i < sizeof got.sk; i++)
        CHECK_EQ(got.sk[i], 0xaa);
    REQUIRE(chmod(p, 0600) == 0);
    CHECK_EQ(shoal_seckey_load(p, &got), 0);
    unlink(p);
}

/* The two halves of a key pair given the wrong way round say so, whatever
 * the mode, instead of "permission denied" or "malformed encoding". */
static void test_key_mixups(void)
{
    struct shoal_pubkey pk, gotpk;
    struct shoal_seckey sk, gotsk;
    struct shoal_keyset *ks = NULL;
    char msg[1024], want[1024];
    REQUIRE(shoal_key_generate(&pk, &sk) == 0);
    const char *p = tpath("n3");
    char pub[300];
    snprintf(pub, sizeof pub, "%s.pub", p);
    REQUIRE(shoal_seckey_save(p, &sk) == 0);
    REQUIRE(shoal_pubkey_save(pub, &pk) == 0);

    /* A .pub where a secret key is expected: 0644 as written, and 0600. */
    CHECK_EQ(shoal_seckey_load(pub, &gotsk), SHOAL_EKEYPUB);
    REQUIRE(chmod(pub, 0600) == 0);
    CHECK_EQ(shoal_seckey_load(pub, &gotsk), SHOAL_EKEYPUB);
    snprintf(want, sizeof want,
             "%s is a public key; a secret key is expected here (the file without .pub: %s)",
             pub, p);
    CHECK_STR(shoal_keyfile_strerror(pub, SHOAL_EKEYPUB, msg, sizeof msg), want);

    /* A secret key where a public key or a trust list is expected. */
    CHECK_EQ(shoal_pubkey_load(p, &gotpk), SHOAL_EKEYSEC);
    REQUIRE(shoal_keyset_new(&ks) == 0);
    CHECK_EQ(shoal_keyset_load_file(ks, p), SHOAL_EKEYSEC);
    CHECK_EQ(shoal_keyset_count(ks), 0);
    snprintf(want, sizeof want, "%s is a secret key; give the public key (%s.pub)", p, p);
    CHECK_STR(shoal_keyfile_strerror(p, SHOAL_EKEYSEC, msg, sizeof msg), want);

    /* Others keep their plain text, naming the file. */
    snprintf(want, sizeof want, "%s: not found", p);
    CHECK_STR(shoal_keyfile_strerror(p, SHOAL_ENOTFOUND, msg, sizeof msg), want);
    /* And the right files still load. */
    CHECK_EQ(shoal_seckey_load(p, &gotsk), 0);
    CHECK_EQ(shoal_pubkey_load(pub, &gotpk), 0);
    CHECK_EQ(shoal_keyset_load_file(ks, pub), 0);
    shoal_keyset_free(ks);
    unlink(p);
    unlink(pub);
}

static void test_secret_bad_format(void)
{
    struct shoal_pubkey pk;
    struct shoal_seckey sk, got;
    REQUIRE(shoal_key_generate(&pk, &sk) == 0);
    char hex[129];
    shoal_hex(hex, sk.sk, 64);
    char line[300];
    const char *p = tpath("bad.key");

    /* Wrong tag: the public one is named as such (test_key_mixups). */
    snprintf(line, sizeof line, "%s %s\n", SHOAL_PUBKEY_TAG, hex);
    write_text(p, line, 0600);
    CHECK_EQ(shoal_seckey_load(p, &got), SHOAL_EKEYPUB);
    snprintf(line, sizeof line, "shoal-cred-v1 %s\n", hex);
    write_text(p, line, 0600);
    CHECK_EQ(shoal_seckey_load(p, &got), SHOAL_EPROTO);
    /* Not hex. */
    snprintf(line, sizeof line, "%s %.127sz\n", SHOAL_SECKEY_TAG, hex);
    write_text(p, line, 0600);
    CHECK_EQ(shoal_seckey_load(p, &got), SHOAL_EPROTO);
    /* Too short. */
    snprintf(line, sizeof line, "%s %.126s\n", SHOAL_SECKEY_TAG, hex);
    write_text(p, line, 0600);
    CHECK_EQ(shoal_seckey_load(p, &got), SHOAL_EPROTO);
    /* Public half does not belong to the seed. */
    hex[127] = hex[127] == '0' ? '1' : '0';
    snprintf(line, sizeof line, "%s %s\n", SHOAL_SECKEY_TAG, hex);
    write_text(p, line, 0600);
    CHECK_EQ(shoal_seckey_load(p, &got), SHOAL_EPROTO);
    /* Empty file. */
    write_text(p, "", 0600);
    CHECK_EQ(shoal_seckey_load(p, &got), SHOAL_EPROTO);
    unlink(p);
    CHECK_EQ(shoal_seckey_load(p, &got), -ENOENT);
    /* A directory is not a key file. */
    CHECK(shoal_seckey_load(dir, &got) != 0);
}

static void test_public_roundtrip(void)
{
    struct shoal_pubkey pk, pk2, got;
    struct shoal_seckey sk;
    REQUIRE(shoal_key_generate(&pk, &sk) == 0);
    REQUIRE(shoal_key_generate(&pk2, &sk) == 0);
    const char *p = tpath("node.pub");
    CHECK_EQ(shoal_pubkey_save(p, &pk), 0);
    struct stat st;
    REQUIRE(stat(p, &st) == 0);
    CHECK_EQ(st.st_mode & 0777, 0644);
    CHECK_EQ(shoal_pubkey_load(p, &got), 0);
    CHECK(memcmp(got.pk, pk.pk, 32) == 0);
    /* Public keys may be replaced. */
    CHECK_EQ(shoal_pubkey_save(p, &pk2), 0);
    CHECK_EQ(shoal_pubkey_load(p, &got), 0);
    CHECK(memcmp(got.pk, pk2.pk, 32) == 0);

    char hex[65], line[200];
    shoal_hex(hex, pk.pk, 32);
    snprintf(line, sizeof line, "%s %s", SHOAL_PUBKEY_TAG, hex); /* no newline */
    write_text(p, line, 0644);
    CHECK_EQ(shoal_pubkey_load(p, &got), 0);
    CHECK(memcmp(got.pk, pk.pk, 32) == 0);
    snprintf(line, sizeof line, "%s %s00\n", SHOAL_PUBKEY_TAG, hex); /* 33 bytes */
    write_text(p, line, 0644);
    CHECK_EQ(shoal_pubkey_load(p, &got), SHOAL_EPROTO);
    snprintf(line, sizeof line, "%s\n", hex); /* bare hex is for trust lists */
    write_text(p, line, 0644);
    CHECK_EQ(shoal_pubkey_load(p, &got), SHOAL_EPROTO);
    unlink(p);
}

static void test_keyset(void)
{
    struct shoal_keyset *ks = NULL;
    REQUIRE(shoal_keyset_new(&ks) == 0);
    struct shoal_pubkey keys[SHOAL_KEYSET_MAX + 1];
    struct shoal_seckey sk;
    for (size_t i = 0; i <= SHOAL_KEYSET_MAX; i++)
        REQUIRE(shoal_key_generate(&keys[i], &sk) == 0);
    CHECK(!shoal_keyset_contains(ks, keys[0].pk));
    CHECK_EQ(shoal_keyset_add(ks, &keys[0]), 0);
    CHECK(shoal_keyset_contains(ks, keys[0].pk));
    CHECK(!shoal_keyset_contains(ks, keys[1].pk));
    CHECK_EQ(shoal_keyset_add(ks, &keys[0]), 0);
    CHECK_EQ(shoal_keyset_count(ks), 1);
    for (size_t i = 1; i < SHOAL_KEYSET_MAX; i++)
        CHECK_EQ(shoal_keyset_add(ks, &keys[i]), 0);
    CHECK_EQ(shoal_keyset_count(ks), SHOAL_KEYSET_MAX);
    CHECK_EQ(shoal_keyset_add(ks, &keys[SHOAL_KEYSET_MAX]), SHOAL_ELIMIT);
    CHECK(!shoal_keyset_contains(ks, keys[SHOAL_KEYSET_MAX].pk));
    CHECK(shoal_keyset_contains(ks, keys[SHOAL_KEYSET_MAX - 1].pk));
    CHECK(!shoal_keyset_contains(NULL, keys[0].pk));
    /* Merging: keys already there count once; a merge that would overflow
     * changes nothing. */
    struct shoal_keyset *two = NULL, *full = ks;
    REQUIRE(shoal_keyset_new(&ks) == 0);
    REQUIRE(shoal_keyset_new(&two) == 0);
    CHECK_EQ(shoal_keyset_add(ks, &keys[0]), 0);
    CHECK_EQ(shoal_keyset_add(two, &keys[0]), 0);
    CHECK_EQ(shoal_keyset_add(two, &keys[1]), 0);
    CHECK_EQ(shoal_keyset_merge(ks, two), 0);
    CHECK_EQ(shoal_keyset_count(ks), 2);
    CHECK(shoal_keyset_contains(ks, keys[1].pk));
    CHECK_EQ(shoal_keyset_merge(two, full), 0); /* keys[0..MAX-1]: fits exactly */
    CHECK_EQ(shoal_keyset_count(two), SHOAL_KEYSET_MAX);
    shoal_keyset_free(two);
    REQUIRE(shoal_keyset_new(&two) == 0);
    CHECK_EQ(shoal_keyset_add(two, &keys[SHOAL_KEYSET_MAX]), 0);
    CHECK_EQ(shoal_keyset_merge(full, two), SHOAL_ELIMIT);
    CHECK_EQ(shoal_keyset_count(full), SHOAL_KEYSET_MAX);
    CHECK(!shoal_keyset_contains(full, keys[SHOAL_KEYSET_MAX].pk));
    shoal_keyset_free(two);
    shoal_keyset_free(full);
    shoal_keyset_free(ks);
    shoal_keyset_free(NULL);
}

static void test_keyset_file(void)
{
    struct shoal_pubkey a, b, c;
    struct shoal_seckey sk;
    REQUIRE(shoal_key_generate(&a, &sk) == 0);
    REQUIRE(shoal_key_generate(&b, &sk) == 0);
    REQUIRE(shoal_key_generate(&c, &sk) == 0);
    char ha[65], hb[65], hc[65];
    shoal_hex(ha, a.pk, 32);
    shoal_hex(hb, b.pk, 32);
    shoal_hex(hc, c.pk, 32);
    char text[1024];
    snprintf(text, sizeof text,
             "# publishers of the fleet\n"
             "\n"
             "%s %s\n"
             "   # indented comment\n"
             "  %s  \r\n"
             "%s", /* last line without newline */
             SHOAL_PUBKEY_TAG, ha, hb, hc);
    char p[256];
    snprintf(p, sizeof p, "%s", tpath("trusted")); /* tpath's buffer is reused below */
    write_text(p, text, 0644);
    struct shoal_keyset *ks = NULL;
    REQUIRE(shoal_keyset_new(&ks) == 0);
    CHECK_EQ(shoal_keyset_load_file(ks, p), 0);
    CHECK_EQ(shoal_keyset_count(ks), 3);
    CHECK(shoal_keyset_contains(ks, a.pk));
    CHECK(shoal_keyset_contains(ks, b.pk));
    CHECK(shoal_keyset_contains(ks, c.pk));
    shoal_keyset_free(ks);

    /* One bad line: nothing is added. */
    snprintf(text, sizeof text, "%s\n%s\nnot a key\n", ha, hb);
    write_text(p, text, 0644);
    REQUIRE(shoal_keyset_new(&ks) == 0);
    CHECK_EQ(shoal_keyset_load_file(ks, p), SHOAL_EPROTO);
    CHECK_EQ(shoal_keyset_count(ks), 0);
    CHECK(!shoal_keyset_contains(ks, a.pk));
    snprintf(text, sizeof text, "%s\n%.63s\n", ha, hb); /* short key */
    write_text(p, text, 0644);
    CHECK_EQ(shoal_keyset_load_file(ks, p), SHOAL_EPROTO);
    CHECK_EQ(shoal_keyset_count(ks), 0);

    /* More keys than the set holds: refused as a whole. */
    FILE *f = fopen(p, "w");
    REQUIRE(f);
    for (int i = 0; i <= SHOAL_KEYSET_MAX; i++) {
        struct shoal_pubkey k;
        char hk[65];
        REQUIRE(shoal_key_generate(&k, &sk) == 0);
        shoal_hex(hk, k.pk, 32);
        fprintf(f, "%s\n", hk);
    }
    fclose(f);
    CHECK_EQ(shoal_keyset_load_file(ks, p), SHOAL_ELIMIT);
    CHECK_EQ(shoal_keyset_count(ks), 0);

    /* A huge file is refused before it is parsed. */
    f = fopen(p, "w");
    REQUIRE(f);
    for (int i = 0; i < SHOAL_KEYFILE_MAX / 8 + 1; i++)
        fputs("#######\n", f);
    fclose(f);
    CHECK_EQ(shoal_keyset_load_file(ks, p), SHOAL_ETOOBIG);
    CHECK_EQ(shoal_keyset_load_file(ks, tpath("missing")), -ENOENT);
    shoal_keyset_free(ks);
    unlink(p);
}

/* A key list read again when its file changes (deny-keys): a rewrite
 * adds keys, garbage keeps what was read, a removed file lists none. */
static void test_keywatch(void)
{
    struct shoal_pubkey a, b;
    struct shoal_seckey sk;
    char ha[65], hb[65], text[256], why[256], p[256];
    struct shoal_keywatch *w = NULL;
    bool changed = true;

    REQUIRE(shoal_key_generate(&a, &sk) == 0);
    REQUIRE(shoal_key_generate(&b, &sk) == 0);
    shoal_hex(ha, a.pk, 32);
    shoal_hex(hb, b.pk, 32);
    snprintf(p, sizeof p, "%s", tpath("deny"));
    const char *paths[] = {p};
    CHECK(shoal_keywatch_new(&w, paths, 1, why, sizeof why) != 0); /* missing at start */
    CHECK(strstr(why, "deny") != NULL);
    snprintf(text, sizeof text, "%s\n", ha);
    write_text(p, text, 0644);
    REQUIRE(shoal_keywatch_new(&w, paths, 1, why, sizeof why) == 0);
    CHECK_EQ(shoal_keywatch_count(w), 1);
    CHECK(shoal_keywatch_contains(w, a.pk) && !shoal_keywatch_contains(w, b.pk));
    CHECK_EQ(shoal_keywatch_check(w, &changed, why, sizeof why), 0);
    CHECK(!changed);
    snprintf(text, sizeof text, "%s\n# and\n%s\n", ha, hb);
    write_text(p, text, 0644);
    CHECK_EQ(shoal_keywatch_check(w, &changed, why, sizeof why), 0);
    CHECK(changed && shoal_keywatch_count(w) == 2 && shoal_keywatch_contains(w, b.pk));
    write_text(p, "not a key at all\n", 0644);
    CHECK(shoal_keywatch_check(w, &changed, why, sizeof why) != 0);
    CHECK(!changed && shoal_keywatch_count(w) == 2 && strstr(why, "deny") != NULL);
    CHECK_EQ(unlink(p), 0);
    CHECK_EQ(shoal_keywatch_check(w, &changed, why, sizeof why), 0);
    CHECK(changed && shoal_keywatch_count(w) == 0 && !shoal_keywatch_contains(w, a.pk));
    shoal_keywatch_free(w);
    CHECK(!shoal_keywatch_contains(NULL, a.pk));
    /* A file that cannot be looked at (here a loop of links on its way) is
     * not a removed one: the keys read before still count. */
    char d[256], q[300];
    snprintf(d, sizeof d, "%s", tpath("denydir"));
    snprintf(q, sizeof q, "%s/deny", d);
    REQUIRE(mkdir(d, 0700) == 0);
    write_text(q, text, 0644);
    const char *qpaths[] = {q};
    REQUIRE(shoal_keywatch_new(&w, qpaths, 1, why, sizeof why) == 0);
    CHECK_EQ(unlink(q), 0);
    CHECK_EQ(rmdir(d), 0);
    REQUIRE(symlink(d, d) == 0);
    CHECK(shoal_keywatch_check(w, &changed, why, sizeof why) == -ELOOP);
    CHECK(!changed && shoal_keywatch_count(w) == 2 && strstr(why, "denydir") != NULL);
    shoal_keywatch_free(w);
    CHECK_EQ(unlink(d), 0);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/shoal_test_keys.XXXXXX");
    REQUIRE(mkdtemp(dir));
    RUN(test_secret_roundtrip);
    RUN(test_secret_not_overwritten);
    RUN(test_secret_mode_refused);
    RUN(test_key_mixups);
    RUN(test_secret_bad_format);
    RUN(test_public_roundtrip);
    RUN(test_keyset);
    RUN(test_keyset_file);
    RUN(test_keywatch);
    CHECK_EQ(rmdir(dir), 0); /* every test removed its files */
    return t_done();
}
