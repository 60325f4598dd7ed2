/* SPDX-License-Identifier: MIT */
/* Text for shoal's error codes; see error.h for the conventions. */
#include "error.h"

#include <string.h>

const char *shoal_strerror(int code)
{
    switch (code) {
    case SHOAL_OK: return "success";
    case SHOAL_EAGAIN: return "need more input";
    case SHOAL_ELIMIT: return "limit reached";
    case SHOAL_ENOTFOUND: return "not found";
    case SHOAL_EEXIST: return "already exists";
    case SHOAL_EBUSY: return "busy";
    case SHOAL_EEXPIRED: return "expired";
    case SHOAL_EUNTRUSTED: return "signed by an untrusted key";
    case SHOAL_EPERM: return "permission denied";
    case SHOAL_EHTTP: return "HTTP error";
    case SHOAL_ENOSPC: return "no space left on device";
    case SHOAL_EKEYMODE:
        return "secret key readable or writable by group/others: chmod 600 it";
    case SHOAL_EKEYPUB:
        return "a public key, where a secret key is expected (the file without .pub)";
    case SHOAL_EKEYSEC: return "a secret key, where a public key is expected (its .pub file)";
    case SHOAL_EPROTO: return "malformed encoding";
    case SHOAL_ETOOBIG: return "length or count over limit";
    case SHOAL_ETYPE: return "wrong type";
    case SHOAL_ETRUNC: return "truncated input";
    case SHOAL_EBADSIG: return "bad signature";
    case SHOAL_EBADHASH: return "content does not match its hash";
    case SHOAL_EBADPATH: return "bad path";
    case SHOAL_EVERSION: return "unsupported version";
    case SHOAL_EBADMSG: return "invalid message";
    default:
        break;
    }
    if (code < 0 && code > -4096)
        return strerror(-code);
    return "unknown error";
}
