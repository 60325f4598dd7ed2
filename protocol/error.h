/* SPDX-License-Identifier: MIT */
/*
 * One error space for all of shoal. Functions return 0 on success or a
 * negative code: either a negated errno value (I/O, allocation) or one of the
 * SHOAL_E* codes below. Codes at or below SHOAL_EFATAL_BASE mean "the peer or
 * input is broken": tear the connection down, do not retry.
 */
#ifndef SHOAL_ERROR_H
#define SHOAL_ERROR_H

enum shoal_err {
    SHOAL_OK = 0,
    /* Recoverable: caller may retry or wait. */
    SHOAL_EAGAIN = -1000,      /* need more input */
    SHOAL_ELIMIT = -1001,      /* a configured limit (buffer cap, count) was hit */
    SHOAL_ENOTFOUND = -1002,   /* no such key, file, manifest, chunk */
    SHOAL_EEXIST = -1003,      /* already present */
    SHOAL_EBUSY = -1004,       /* resource in use, try later */
    SHOAL_EEXPIRED = -1005,    /* credential or lease past its expiry */
    SHOAL_EUNTRUSTED = -1006,  /* valid signature, but not by a trusted key */
    SHOAL_EPERM = -1007,       /* not allowed (auth, role) */
    SHOAL_EHTTP = -1008,       /* HTTP status error from the Hub */
    SHOAL_ENOSPC = -1009,      /* disk full */
    /* Key files given the wrong way round or too open (keys.c): each says
     * what to do, since "permission denied" sent operators to file modes
     * for a file that was simply the wrong one. */
    SHOAL_EKEYMODE = -1010,    /* secret key readable/writable by group or others */
    SHOAL_EKEYPUB = -1011,     /* a public key where a secret key is expected */
    SHOAL_EKEYSEC = -1012,     /* a secret key where a public key is expected */

    /* Fatal for the connection or input: never retry the same bytes. */
    SHOAL_EFATAL_BASE = -2000,
    SHOAL_EPROTO = -2000,      /* malformed encoding */
    SHOAL_ETOOBIG = -2001,     /* a length or count above its limit */
    SHOAL_ETYPE = -2002,       /* wrong msgpack type for a field */
    SHOAL_ETRUNC = -2003,      /* input ends inside an item */
    SHOAL_EBADSIG = -2004,     /* signature does not verify */
    SHOAL_EBADHASH = -2005,    /* content does not match its hash */
    SHOAL_EBADPATH = -2006,    /* path escapes, is absolute, or duplicates */
    SHOAL_EVERSION = -2007,    /* unsupported format or protocol version */
    SHOAL_EBADMSG = -2008,     /* decoded, but fails validation */
};

/* Human-readable text for |code| (0, a SHOAL_E* code, or a negated errno).
 * Never returns NULL; the string is static. */
const char *shoal_strerror(int code);

/* Nonzero when |code| means the connection or input must be abandoned. */
static inline int shoal_is_fatal(int code) { return code <= SHOAL_EFATAL_BASE; }

#endif
