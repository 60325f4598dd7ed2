/* SPDX-License-Identifier: MIT */
/*
 * Ed25519 key pairs, key files and trusted-key sets; see keys.h. This is the
 * only file in protocol/ that does file I/O: key, trust-list and credential
 * files all go through shoal_keyfile_save/load here.
 */
#include "keys.h"
#include "error.h"
#include "hash.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct shoal_keyset {
    size_t n;
    struct shoal_pubkey keys[SHOAL_KEYSET_MAX];
};

int shoal_crypto_init(void)
{
    /* 0: first start, 1: already running; both are fine. */
    return sodium_init() < 0 ? -EIO : 0;
}

int shoal_key_generate(struct shoal_pubkey *pk, struct shoal_seckey *sk)
{
    int rv = shoal_crypto_init();
    if (rv)
        return rv;
    if (crypto_sign_keypair(pk->pk, sk->sk) != 0)
        return -EIO;
    return 0;
}

void shoal_seckey_public(const struct shoal_seckey *sk, struct shoal_pubkey *pk)
{
    memcpy(pk->pk, sk->sk + crypto_sign_SEEDBYTES, SHOAL_PUBKEY_LEN);
}

/* ---- files ---- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes |line| to a fresh file: exclusively at |path| for secrets, else
 * through a temporary name renamed over |path| so readers never see half a
 * key. */
static int write_file(const char *path, const char *line, size_t len, bool secret)
{
    int rv = 0;
    int fd = -1;
    char *tmp = NULL;
    const char *target = path;
    bool created = false;

    if (secret) {
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0) {
            rv = errno == EEXIST ? SHOAL_EEXIST : -errno;
            goto out;
        }
        created = true;
    } else {
        size_t plen = strlen(path);
        tmp = malloc(plen + sizeof ".tmp.XXXXXX");
        if (!tmp) {
            rv = -ENOMEM;
            goto out;
        }
        memcpy(tmp, path, plen);
        memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
            rv = -errno;
            goto out;
        }
        target = tmp;
        created = true;
        if (fchmod(fd, 0644) != 0) {
            rv = -errno;
            goto out;
        }
    }
    rv = write_all(fd, line, len);
    if (rv)
        goto out;
    if (fsync(fd) != 0) {
        rv = -errno;
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        rv = -errno;
        goto out;
    }
    fd = -1;
    if (!secret && rename(tmp, path) != 0) {
        rv = -errno;
        goto out;
    }
out:
    if (fd >= 0)
        close(fd);
    /* Never leave a partial key behind: a later save would refuse it. */
    if (rv && created)
        unlink(target);
    free(tmp);
    return rv;
}

int shoal_keyfile_save(const char *path, const char *tag, const uint8_t *data, size_t n,
                       bool secret)
{
    size_t taglen = strlen(tag);
    if (n > (SHOAL_KEYFILE_MAX - taglen - 3) / 2)
        return -EINVAL;
    size_t len = taglen + 1 + 2 * n + 1;
    char *line = malloc(len + 1);
    if (!line)
        return -ENOMEM;
    memcpy(line, tag, taglen);
    line[taglen] = ' ';
    shoal_hex(line + taglen + 1, data, n);
    line[len - 1] = '\n';
    line[len] = '\0';
    int rv = write_file(path, line, len, secret);
    sodium_memzero(line, len);
    free(line);
    return rv;
}

/* Reads at most SHOAL_KEYFILE_MAX bytes of |path| into |buf| (capacity
 * SHOAL_KEYFILE_MAX + 1, NUL-terminated); |*mode| gets the file's mode, taken
 * from the open descriptor so a swap after the check cannot help. */
static int read_file(const char *path, char *buf, size_t *len, mode_t *mode)
{
    int rv = 0;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rv = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rv = -EINVAL;
        goto out;
    }
    *mode = st.st_mode;
    for (;;) {
        ssize_t r = read(fd, buf + got, SHOAL_KEYFILE_MAX + 1 - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rv = -errno;
            goto out;
        }
        if (r == 0)
            break;
        got += (size_t)r;
        if (got > SHOAL_KEYFILE_MAX) {
            rv = SHOAL_ETOOBIG;
            goto out;
        }
    }
    buf[got] = '\0';
    *len = got;
out:
    close(fd);
    return rv;
}

/* True when buf[0..len), blanks first skipped, starts with "|tag| ". */
static bool starts_with_tag(const char *buf, size_t len, const char *tag)
{
    size_t taglen = strlen(tag);
    while (len > 0 && is_blank(buf[0])) {
        buf++;
        len--;
    }
    return len > taglen && memcmp(buf, tag, taglen) == 0 && buf[taglen] == ' ';
}

/* Decodes "<tag> <hex>" from buf[0..len) with blanks around it ignored. */
static int parse_tagged(const char *buf, size_t len, const char *tag, uint8_t *out, size_t cap,
                        size_t *n)
{
    size_t taglen = strlen(tag);
    while (len > 0 && is_blank(buf[len - 1]))
        len--;
    while (len > 0 && is_blank(buf[0])) {
        buf++;
        len--;
    }
    if (len < taglen + 1 || memcmp(buf, tag, taglen) != 0 || buf[taglen] != ' ')
        return SHOAL_EPROTO;
    buf += taglen + 1;
    len -= taglen + 1;
    if (len % 2 != 0)
        return SHOAL_EPROTO;
    if (len / 2 > cap)
        return SHOAL_EPROTO;
    if (shoal_unhex(out, len / 2, buf, len) != 0)
        return SHOAL_EPROTO;
    *n = len / 2;
    return 0;
}

int shoal_keyfile_load(const char *path, const char *tag, uint8_t *out, size_t cap, size_t *n,
                       bool secret)
{
    size_t len = 0;
    mode_t mode = 0;
    char *buf = malloc(SHOAL_KEYFILE_MAX + 1);
    if (!buf)
        return -ENOMEM;
    int rv = read_file(path, buf, &len, &mode);
    if (rv)
        goto out;
    /* The wrong half of a key pair is the likelier mistake, and a public
     * key is not secret: say that before any word about its mode. */
    bool want_sec = strcmp(tag, SHOAL_SECKEY_TAG) == 0;
    bool want_pub = strcmp(tag, SHOAL_PUBKEY_TAG) == 0;
    if (want_sec && starts_with_tag(buf, len, SHOAL_PUBKEY_TAG))
        rv = SHOAL_EKEYPUB;
    else if (want_pub && starts_with_tag(buf, len, SHOAL_SECKEY_TAG))
        rv = SHOAL_EKEYSEC;
    else if (secret && (mode & (S_IRWXG | S_IRWXO)))
        rv = SHOAL_EKEYMODE;
    else
        rv = parse_tagged(buf, len, tag, out, cap, n);
out:
    sodium_memzero(buf, SHOAL_KEYFILE_MAX + 1);
    free(buf);
    return rv;
}

const char *shoal_keyfile_strerror(const char *path, int rv, char *buf, size_t cap)
{
    struct stat st;
    size_t plen = strlen(path);
    switch (rv) {
    case SHOAL_EKEYMODE:
        if (stat(path, &st) == 0)
            snprintf(buf, cap, "%s is %s by group/others (mode %04o): chmod 600 %s", path,
                     (st.st_mode & (S_IRGRP | S_IROTH))   ? "readable"
                     : (st.st_mode & (S_IWGRP | S_IWOTH)) ? "writable"
                                                          : "accessible",
                     (unsigned)(st.st_mode & 07777), path);
        else
            snprintf(buf, cap, "%s is readable or writable by group/others: chmod 600 %s", path,
                     path);
        break;
    case SHOAL_EKEYPUB:
        if (plen > 4 && strcmp(path + plen - 4, ".pub") == 0)
            snprintf(buf, cap, "%s is a public key; a secret key is expected here (the file "
                     "without .pub: %.*s)", path, (int)(plen - 4), path);
        else
            snprintf(buf, cap, "%s is a public key; a secret key is expected here (the file "
                     "without .pub)", path);
        break;
    case SHOAL_EKEYSEC:
        snprintf(buf, cap, "%s is a secret key; give the public key (%s.pub)", path, path);
        break;
    default:
        snprintf(buf, cap, "%s: %s", path,
                 rv == -EINVAL ? "not a regular file" : shoal_strerror(rv));
        break;
    }
    return buf;
}

int shoal_seckey_save(const char *path, const struct shoal_seckey *sk)
{
    return shoal_keyfile_save(path, SHOAL_SECKEY_TAG, sk->sk, sizeof sk->sk, true);
}

int shoal_seckey_load(const char *path, struct shoal_seckey *sk)
{
    struct shoal_seckey tmp, check;
    uint8_t pk[SHOAL_PUBKEY_LEN];
    size_t n = 0;
    int rv = shoal_crypto_init();
    if (rv)
        goto out;
    rv = shoal_keyfile_load(path, SHOAL_SECKEY_TAG, tmp.sk, sizeof tmp.sk, &n, true);
    if (rv)
        goto out;
    if (n != sizeof tmp.sk) {
        rv = SHOAL_EPROTO;
        goto out;
    }
    /* A key whose public half does not come from its seed would sign with
     * one identity and claim another. */
    if (crypto_sign_seed_keypair(pk, check.sk, tmp.sk) != 0) {
        rv = -EIO;
        goto out;
    }
    if (sodium_memcmp(check.sk, tmp.sk, sizeof tmp.sk) != 0) {
        rv = SHOAL_EPROTO;
        goto out;
    }
    memcpy(sk->sk, tmp.sk, sizeof tmp.sk);
out:
    sodium_memzero(&tmp, sizeof tmp);
    sodium_memzero(&check, sizeof check);
    return rv;
}

int shoal_pubkey_save(const char *path, const struct shoal_pubkey *pk)
{
    return shoal_keyfile_save(path, SHOAL_PUBKEY_TAG, pk->pk, sizeof pk->pk, false);
}

int shoal_pubkey_load(const char *path, struct shoal_pubkey *pk)
{
    uint8_t tmp[SHOAL_PUBKEY_LEN];
    size_t n = 0;
    int rv = shoal_keyfile_load(path, SHOAL_PUBKEY_TAG, tmp, sizeof tmp, &n, false);
    if (rv == 0 && n != sizeof tmp)
        rv = SHOAL_EPROTO;
    if (rv == 0)
        memcpy(pk->pk, tmp, sizeof tmp);
    return rv;
}

int shoal_pubkey_parse(struct shoal_pubkey *pk, const char *s, size_t n)
{
    const size_t taglen = sizeof SHOAL_PUBKEY_TAG - 1;
    while (n > 0 && is_blank(s[n - 1]))
        n--;
    while (n > 0 && is_blank(s[0])) {
        s++;
        n--;
    }
    if (n > taglen && memcmp(s, SHOAL_PUBKEY_TAG, taglen) == 0 && s[taglen] == ' ') {
        s += taglen + 1;
        n -= taglen + 1;
    }
    if (n != 2 * SHOAL_PUBKEY_LEN)
        return SHOAL_EPROTO;
    uint8_t tmp[SHOAL_PUBKEY_LEN];
    if (shoal_unhex(tmp, sizeof tmp, s, n) != 0)
        return SHOAL_EPROTO;
    memcpy(pk->pk, tmp, sizeof tmp);
    return 0;
}

/* ---- keysets ---- */

int shoal_keyset_new(struct shoal_keyset **out)
{
    struct shoal_keyset *ks = calloc(1, sizeof *ks);
    if (!ks)
        return -ENOMEM;
    *out = ks;
    return 0;
}

void shoal_keyset_free(struct shoal_keyset *ks)
{
    free(ks);
}

bool shoal_keyset_contains(const struct shoal_keyset *ks, const uint8_t pk[SHOAL_PUBKEY_LEN])
{
    if (!ks)
        return false;
    for (size_t i = 0; i < ks->n; i++) {
        if (memcmp(ks->keys[i].pk, pk, SHOAL_PUBKEY_LEN) == 0)
            return true;
    }
    return false;
}

size_t shoal_keyset_count(const struct shoal_keyset *ks)
{
    return ks ? ks->n : 0;
}

const uint8_t *shoal_keyset_key(const struct shoal_keyset *ks, size_t i)
{
    return ks->keys[i].pk;
}

int shoal_keyset_add(struct shoal_keyset *ks, const struct shoal_pubkey *pk)
{
    if (shoal_keyset_contains(ks, pk->pk))
        return 0;
    if (ks->n >= SHOAL_KEYSET_MAX)
        return SHOAL_ELIMIT;
    ks->keys[ks->n++] = *pk;
    return 0;
}

int shoal_keyset_merge(struct shoal_keyset *dst, const struct shoal_keyset *src)
{
    size_t fresh = 0;

    for (size_t i = 0; i < src->n; i++)
        fresh += !shoal_keyset_contains(dst, src->keys[i].pk);
    if (fresh > SHOAL_KEYSET_MAX - dst->n)
        return SHOAL_ELIMIT;
    for (size_t i = 0; i < src->n; i++)
        (void)shoal_keyset_add(dst, &src->keys[i]);
    return 0;
}

int shoal_keyset_load_file(struct shoal_keyset *ks, const char *path)
{
    size_t len = 0;
    struct shoal_keyset staged = *ks;
    char *buf = malloc(SHOAL_KEYFILE_MAX + 1);
    if (!buf)
        return -ENOMEM;
    mode_t mode = 0;
    int rv = read_file(path, buf, &len, &mode);
    if (rv)
        goto out;
    for (size_t pos = 0; pos < len;) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + 1;
        size_t i = 0;
        while (i < n && is_blank(line[i]))
            i++;
        if (i == n || line[i] == '#')
            continue;
        struct shoal_pubkey pk;
        if (starts_with_tag(line + i, n - i, SHOAL_SECKEY_TAG)) {
            rv = SHOAL_EKEYSEC;
            goto out;
        }
        rv = shoal_pubkey_parse(&pk, line + i, n - i);
        if (rv)
            goto out;
        rv = shoal_keyset_add(&staged, &pk);
        if (rv)
            goto out;
    }
    *ks = staged;
out:
    /* A secret key given by mistake must not linger in freed memory. */
    sodium_memzero(buf, SHOAL_KEYFILE_MAX + 1);
    free(buf);
    return rv;
}
