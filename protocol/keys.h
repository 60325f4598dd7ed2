/* SPDX-License-Identifier: MIT */
/*
 * Ed25519 keys (libsodium crypto_sign) for publishers, clusters and nodes:
 * generation, key files, and a small set of trusted public keys.
 *
 * Key files are the one place protocol/ touches the file system; the
 * helpers shoal_keyfile_save/load are shared with cred.c so that all file
 * I/O stays in keys.c.
 *
 * File formats (ASCII, one line, lowercase hex, trailing newline):
 *   secret key:  "shoal-secret-key-v1 <128 hex: 32-byte seed, 32-byte public key>\n"
 *                created with mode 0600; never overwritten
 *   public key:  "shoal-public-key-v1 <64 hex>\n"
 *   trust list:  one public key per line, either the public-key line above
 *                or bare 64-char hex; blank lines and lines starting with '#'
 *                (after optional blanks) are ignored
 */
#ifndef SHOAL_KEYS_H
#define SHOAL_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHOAL_PUBKEY_LEN 32
#define SHOAL_SECKEY_LEN 64
#define SHOAL_SIG_LEN 64
/* Trusted keys a keyset can hold. */
#define SHOAL_KEYSET_MAX 64
/* Largest key, credential or trust-list file read (bytes). */
#define SHOAL_KEYFILE_MAX 65536

#define SHOAL_SECKEY_TAG "shoal-secret-key-v1"
#define SHOAL_PUBKEY_TAG "shoal-public-key-v1"

struct shoal_pubkey {
    uint8_t pk[SHOAL_PUBKEY_LEN];
};

/* libsodium layout: 32-byte seed followed by the 32-byte public key. */
struct shoal_seckey {
    uint8_t sk[SHOAL_SECKEY_LEN];
};

/* Initialises libsodium once; every function here calls it as needed, so
 * callers only need it before using libsodium themselves.
 * Returns 0, or -EIO when libsodium cannot start (no entropy source). */
int shoal_crypto_init(void);

/* Makes a fresh random key pair into |pk| and |sk|.
 * Returns 0 or -EIO (libsodium failed to initialise). */
int shoal_key_generate(struct shoal_pubkey *pk, struct shoal_seckey *sk);

/* Copies the public half of |sk| into |pk|. */
void shoal_seckey_public(const struct shoal_seckey *sk, struct shoal_pubkey *pk);

/*
 * Writes |sk| to a new file |path| with mode 0600 (O_CREAT|O_EXCL: an
 * existing file is never replaced). Returns 0, SHOAL_EEXIST when |path|
 * exists, or a negated errno. On a write error the partial file is removed.
 */
int shoal_seckey_save(const char *path, const struct shoal_seckey *sk);

/*
 * Reads a secret key file into |sk|. The file must be a regular file that
 * neither group nor others may read or write, and its public half must match
 * its seed. Returns 0, SHOAL_EKEYMODE (mode allows group/other access),
 * SHOAL_EKEYPUB (the file is a public key), SHOAL_EPROTO (bad format or
 * inconsistent key), SHOAL_ETOOBIG, -EINVAL (not a regular file) or a
 * negated errno (-ENOENT ...). |sk| is written only on success.
 */
int shoal_seckey_load(const char *path, struct shoal_seckey *sk);

/*
 * Writes |pk| to |path| (mode 0644), atomically replacing any existing file.
 * Returns 0 or a negated errno.
 */
int shoal_pubkey_save(const char *path, const struct shoal_pubkey *pk);

/*
 * Reads a public key file into |pk| (written only on success).
 * Returns 0, SHOAL_EKEYSEC (the file is a secret key), SHOAL_EPROTO,
 * SHOAL_ETOOBIG or a negated errno.
 */
int shoal_pubkey_load(const char *path, struct shoal_pubkey *pk);

/* Parses one public key from text: "shoal-public-key-v1 <hex>" or bare hex,
 * surrounding blanks ignored. Returns 0 or SHOAL_EPROTO. */
int shoal_pubkey_parse(struct shoal_pubkey *pk, const char *s, size_t n);

/* ---- files shared with cred.c ---- */

/*
 * Writes "<tag> <hex of data>\n" to |path|. With |secret|, the file is
 * created 0600 with O_EXCL (SHOAL_EEXIST if present); otherwise it is written
 * 0644 to a temporary name and renamed over |path|. Returns 0, SHOAL_EEXIST,
 * -EINVAL (|n| too large for a key file) or a negated errno.
 */
int shoal_keyfile_save(const char *path, const char *tag, const uint8_t *data, size_t n,
                       bool secret);

/*
 * Reads a file written by shoal_keyfile_save with |tag| and decodes its hex
 * into |out| (capacity |cap|); |*n| gets the decoded length. With |secret|,
 * a file readable or writable by group or others is refused
 * (SHOAL_EKEYMODE). Where |tag| is the secret-key tag, a public key file is
 * SHOAL_EKEYPUB; where it is the public-key tag, a secret key file is
 * SHOAL_EKEYSEC (the usual mix-ups, named as such). Returns 0, those,
 * SHOAL_EPROTO (bad format, or more than |cap| bytes of data),
 * SHOAL_ETOOBIG (file larger than SHOAL_KEYFILE_MAX), -EINVAL (not a
 * regular file) or a negated errno.
 */
int shoal_keyfile_load(const char *path, const char *tag, uint8_t *out, size_t cap, size_t *n,
                       bool secret);

/*
 * Writes into |buf| (capacity |cap|) what a person should read when key,
 * credential or trust-list file |path| failed to load with |rv|: the file
 * named, what is wrong and, for the mix-ups above, what to do ("X is
 * readable by group/others (mode 0644): chmod 600 X", "X is a public key;
 * a secret key is expected here (the file without .pub: Y)", "X is a secret
 * key; give the public key (X.pub)"); otherwise "X: <shoal_strerror>".
 * Returns |buf|.
 */
const char *shoal_keyfile_strerror(const char *path, int rv, char *buf, size_t cap);

/* ---- trusted keys ---- */

/* An unordered set of at most SHOAL_KEYSET_MAX public keys. */
struct shoal_keyset;

/* Empty set into |*out|. Returns 0 or -ENOMEM. */
int shoal_keyset_new(struct shoal_keyset **out);
/* Frees |ks|; NULL is accepted. */
void shoal_keyset_free(struct shoal_keyset *ks);
/* Adds a copy of |pk|; adding a key already present does nothing.
 * Returns 0 or SHOAL_ELIMIT when the set is full. */
int shoal_keyset_add(struct shoal_keyset *ks, const struct shoal_pubkey *pk);
/* Adds every key of |src| to |dst| (keys already there count once). All
 * or nothing: returns 0, or SHOAL_ELIMIT with |dst| unchanged. */
int shoal_keyset_merge(struct shoal_keyset *dst, const struct shoal_keyset *src);
/* True when |pk| is in |ks| (false for a NULL set). */
bool shoal_keyset_contains(const struct shoal_keyset *ks, const uint8_t pk[SHOAL_PUBKEY_LEN]);
/* Number of keys in |ks|. */
size_t shoal_keyset_count(const struct shoal_keyset *ks);
/* The |i|th key of |ks| (i < shoal_keyset_count), in no particular order. */
const uint8_t *shoal_keyset_key(const struct shoal_keyset *ks, size_t i);
/*
 * Adds every key listed in the trust file |path| (format above). All or
 * nothing: on any error |ks| is unchanged. Returns 0, SHOAL_EKEYSEC (a line
 * holds a secret key), SHOAL_EPROTO (a line that is neither comment nor
 * key), SHOAL_ELIMIT (set would overflow),
 * SHOAL_ETOOBIG (file too large) or a negated errno.
 */
int shoal_keyset_load_file(struct shoal_keyset *ks, const char *path);

#endif
