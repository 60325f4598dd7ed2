# SPDX-License-Identifier: MIT
"""A stand-in for the Hugging Face Hub, for tests and demos with no internet.

Serves the repos genrepo.py writes, in the Hub's URL layout and API shape,
on 127.0.0.1 (or --host, for the network namespaces bench_netns.py makes).
Python standard library only.

On-disk layout (ROOT is the directory given on the command line):
  ROOT/{models,datasets}/<org>/<name>/repo.json
      {"private": bool, "gated": bool, "granted": [tokens],
       "branches": {"main": commit}, "tags": {"v1": commit}}
  ROOT/{models,datasets}/<org>/<name>/commits/<commit>/.files.json
      {"commit", "parent", "files": [{path, size, sha256, lfs, blob_id,
                                      pointer_size?}]}
  ROOT/{models,datasets}/<org>/<name>/commits/<commit>/<path>   the bytes

Endpoints (datasets use /api/datasets/... and /datasets/...):
  GET  /api/models/<repo>/revision/<rev>[?blobs=true]   model info JSON:
       id, sha, private, gated, siblings [{rfilename, size?, blobId?, lfs?}]
       (size/blobId/lfs only with blobs=true, as on the Hub)
       The "listing" control rule below makes it answer as a gateway
       ignoring ?blobs=true, or truncate siblings as the Hub does for a
       large repo.
  GET  /api/models/<repo>/tree/<rev>[/<folder>][?recursive=true&cursor=N]
       the files (and folders) of that commit, as the Hub's /tree:
       [{type: "file"|"directory", path, oid, size, lfs?: {oid, size,
       pointerSize}}], paged (1000 entries, or "tree_page") with a
       'Link: <URL of the next page>; rel="next"' header.
  GET|HEAD /<repo>/resolve/<rev>/<path>
       LFS files: 302 to /cdn/<sha256>?repo=..&file=..&exp=..&sig=.. with
       X-Repo-Commit, X-Linked-Etag ("sha256"), X-Linked-Size, ETag (the
       pointer's blob id). Other files: 200 with the bytes (Range works),
       ETag = git blob id, X-Repo-Commit.
  GET|HEAD /cdn/<sha256>?...  the bytes; Range (206, Content-Range, 416),
       ETag, Content-Length. The URL is signed (HMAC over the query) like
       the Hub's CDN URLs, so it needs no Authorization header.
  Errors: 401/403/404 with X-Error-Code (RepoNotFound, RevisionNotFound,
       EntryNotFound, GatedRepo) and X-Error-Message, and a JSON body.

Private repos need "Authorization: Bearer <t>" with t given by --token or
a line of --token-file; a missing or unknown token is 401 RepoNotFound, as
on the Hub (it does not reveal the repo exists). Gated repos need a token
listed in "granted": none is 401, another one is 403 GatedRepo.

Control (never faulted):
  GET  /_stub/stats  -> {"bytes": {"<type>/<org>/<name>/<path>": n},
                         "total_bytes", "requests": {"api","resolve","cdn",
                         "other"}, "heads": n (of those, HEAD requests),
                         "cdn_auth": n (CDN requests that carried
                         Authorization), "log": [last 500 requests]}
  POST /_stub/reset  clears counters and faults
  POST /_stub/faults JSON list of rules (appended); each rule:
       {"kind": "status", "code": 429|503|..., "retry_after": s, "times": n,
        "match": "substring of the request path"}
       {"kind": "slow", "bps": bytes_per_second, "match": ..., "times": n}
       {"kind": "cut", "after": K, "times": n, "match": ...}  close the
            connection after K body bytes
       {"kind": "flip", "file": "path in repo", "offset": X, "times": n}
            bytes served of that file have byte X inverted
       {"kind": "norange", "match": ..., "times": n}  answer a Range request
            with 200 and the whole file, as a gateway ignoring Range does
       {"kind": "cr_early", "from": X, "match": ..., "times": n}  answer a
            Range request with 206 and "Content-Range: bytes X-END/SIZE"
            (X defaults to 0), sending the bytes from X: a gateway that
            serves its cached block from the start of the file
       {"kind": "nocr", "match": ..., "times": n}  answer a Range request
            with 206 and the bytes asked for, but no Content-Range header
       {"kind": "stall", "seconds": S, "match": ..., "times": n}  send the
            headers of a file answer, then nothing for S seconds
       {"kind": "cdn_host", "host": "127.0.0.1"}  redirect LFS files to
            this host name instead of the one the client used
       {"kind": "redirect", "host": H, "match": ..., "times": n}  answer
            302 to the same path on host name H (and this port), as a Hub
            moved to another name does; "port": P and "scheme": S (the
            request's own: http, or https over TLS) send it to another
            port or scheme instead
       {"kind": "html", "match": ..., "times": n}  answer 200 with a small
            text/html sign-in page, as a login page or captive portal does
       {"kind": "listing", "noblobs": bool, "notree": bool, "siblings_max": N,
        "tree_page": N, "tree_link": "relative"|"absolute"|URL-prefix}
            how the revision and /tree answers list files (until reset):
            siblings without size/blobId/lfs whatever ?blobs= says, no
            /tree at all (404, as a gateway without that API), at most
            N siblings, N entries per /tree page, next-page links relative,
            absolute (the default) or starting with the given prefix
       "times" defaults to 1 for status/cut/redirect and to unlimited (-1)
       otherwise.
  The same rules can be given at start with --faults JSON.

TLS: with --tls-cert FILE --tls-key FILE (PEM; tlscert.py makes a
throwaway CA and a certificate for 127.0.0.1 and localhost) the port speaks
TLS to a client whose first byte opens a TLS handshake and plain HTTP to any
other, so one host and port serves both http:// and https://, as a gateway
upgrading http to https on the same port does; the control endpoints work
over either. CDN redirects keep the scheme of the request. The request log
says which it was ("tls": true or false); /_stub/stats counts the TLS
handshakes begun ("tls_hellos"), refused ones too, which make no request.

Usage: hubstub.py ROOT [--port 0] [--host 127.0.0.1] [--token T] [--token-file F]
                  [--faults JSON] [--cdn-host H] [--tls-cert F --tls-key F]
Prints the bound port as the first line of stdout.
"""

import argparse
import hashlib
import hmac
import json
import os
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIGN_KEY = os.urandom(32)
CDN_TTL = 3600
COPY_BLOCK = 1 << 16


class State:
    def __init__(self, root, tokens, cdn_host):
        self.root = os.path.abspath(root)
        self.tokens = set(tokens)
        self.default_cdn_host = cdn_host
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.faults = []
            self.cdn_host = self.default_cdn_host
            self.listing = {}
            self.bytes = {}
            self.requests = {"api": 0, "resolve": 0, "cdn": 0, "other": 0}
            self.heads = 0
            self.cdn_auth = 0
            self.tls_hellos = 0
            self.log = []

    def add_faults(self, rules):
        if isinstance(rules, dict):
            rules = [rules]
        with self.lock:
            for r in rules:
                kind = r.get("kind")
                if kind == "cdn_host":
                    self.cdn_host = r.get("host") or None
                    continue
                if kind == "listing":
                    self.listing.update({k: v for k, v in r.items() if k != "kind"})
                    continue
                if kind not in ("status", "slow", "cut", "flip", "stall", "norange",
                                "cr_early", "nocr", "redirect", "html"):
                    raise ValueError("unknown fault kind %r" % kind)
                r = dict(r)
                r.setdefault("times", 1 if kind in ("status", "cut", "redirect") else -1)
                r.setdefault("match", "")
                self.faults.append(r)

    def take_fault(self, kind, path):
        """Consumes one use of the first matching rule of |kind|."""
        with self.lock:
            for r in self.faults:
                if r["kind"] != kind or r["times"] == 0 or r["match"] not in path:
                    continue
                if r["times"] > 0:
                    r["times"] -= 1
                return dict(r)
        return None

    def flips_for(self, file_key):
        with self.lock:
            out = []
            for r in self.faults:
                if r["kind"] != "flip" or r["times"] == 0:
                    continue
                f = r.get("file", "")
                if file_key == f or file_key.endswith("/" + f):
                    if r["times"] > 0:
                        r["times"] -= 1
                    out.append(int(r["offset"]))
            return out

    def count(self, kind, entry):
        with self.lock:
            self.requests[kind] += 1
            self.heads += entry["method"] == "HEAD"
            self.log.append(entry)
            if len(self.log) > 500:
                del self.log[0]

    def add_bytes(self, key, n):
        with self.lock:
            self.bytes[key] = self.bytes.get(key, 0) + n

    def stats(self):
        with self.lock:
            return {"bytes": dict(self.bytes), "total_bytes": sum(self.bytes.values()),
                    "requests": dict(self.requests), "cdn_auth": self.cdn_auth,
                    "tls_hellos": self.tls_hellos, "heads": self.heads,
                    "log": list(self.log)}


class HttpError(Exception):
    def __init__(self, code, error_code, message):
        super().__init__(message)
        self.code = code
        self.error_code = error_code
        self.message = message


def sign(query):
    return hmac.new(SIGN_KEY, query.encode(), hashlib.sha256).hexdigest()


def parse_range(header, size):
    """(start, end_inclusive) or None for the whole file; raises on 416."""
    if not header:
        return None
    if not header.startswith("bytes=") or "," in header:
        raise HttpError(416, None, "unsupported range")
    a, _, b = header[6:].strip().partition("-")
    try:
        if a == "":
            n = int(b)
            if n <= 0:
                raise ValueError
            start, end = max(0, size - n), size - 1
        else:
            start = int(a)
            end = int(b) if b else size - 1
    except ValueError:
        raise HttpError(416, None, "bad range")
    if start >= size or end < start:
        raise HttpError(416, None, "range not satisfiable")
    return start, min(end, size - 1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hubstub/1"
    # Headers and body go out in separate writes: with Nagle on, each answer
    # on a kept-alive connection waited ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    # ---- helpers ----
    @property
    def st(self):
        return self.server.state

    @property
    def scheme(self):
        return "https" if isinstance(self.connection, ssl.SSLSocket) else "http"

    def bearer(self):
        h = self.headers.get("Authorization", "")
        return h[7:].strip() if h.startswith("Bearer ") else None

    def send_json(self, code, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error_json(self, e):
        extra = {}
        if e.error_code:
            extra["X-Error-Code"] = e.error_code
        extra["X-Error-Message"] = e.message
        self.send_json(e.code, {"error": e.message}, extra)

    def repo_dir(self, kind, repo):
        if ".." in repo.split("/") or repo.count("/") > 1 or not repo:
            raise HttpError(404, "RepoNotFound", "Repository not found")
        d = os.path.join(self.st.root, kind, repo)
        meta_path = os.path.join(d, "repo.json")
        if not os.path.isfile(meta_path):
            raise HttpError(404, "RepoNotFound", "Repository Not Found for url: " + self.path)
        with open(meta_path) as f:
            meta = json.load(f)
        tok = self.bearer()
        if meta.get("private") and tok not in self.st.tokens:
            raise HttpError(401, "RepoNotFound",
                            "Repository Not Found for url: %s. Invalid username or password." % self.path)
        if meta.get("gated"):
            if tok is None or tok not in self.st.tokens:
                raise HttpError(401, "GatedRepo", "Access to this gated repo requires a token")
            if tok not in meta.get("granted", []):
                raise HttpError(403, "GatedRepo",
                                "Access to gated repo %s is restricted; you are not in the authorized list" % repo)
        return d, meta

    def resolve_rev(self, d, meta, rev):
        if rev in meta.get("branches", {}):
            commit = meta["branches"][rev]
        elif rev in meta.get("tags", {}):
            commit = meta["tags"][rev]
        elif len(rev) == 40 and all(c in "0123456789abcdef" for c in rev):
            commit = rev
        else:
            raise HttpError(404, "RevisionNotFound", "Invalid rev id: " + rev)
        listing = os.path.join(d, "commits", commit, ".files.json")
        if not os.path.isfile(listing):
            raise HttpError(404, "RevisionNotFound", "Invalid rev id: " + rev)
        with open(listing) as f:
            return commit, json.load(f)["files"]

    def check_status_fault(self, path):
        r = self.st.take_fault("redirect", path)
        if r is not None:
            loc = "%s://%s:%d%s" % (r.get("scheme", self.scheme), r.get("host", "127.0.0.1"),
                                    int(r.get("port", self.server.server_port)), path)
            self.send_json(302, {"error": "moved"}, {"Location": loc})
            return True
        r = self.st.take_fault("html", path)
        if r is not None:
            body = (b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
                    b"<body><form action=\"/login\">Please sign in to continue</form></body></html>\n")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return True
        r = self.st.take_fault("status", path)
        if r is None:
            return False
        extra = {}
        if r.get("retry_after") is not None:
            extra["Retry-After"] = str(r["retry_after"])
        self.send_json(int(r.get("code", 503)), {"error": "injected fault"}, extra)
        return True

    def send_file_bytes(self, disk_path, size, file_key, headers, status_ok=200):
        rng = parse_range(self.headers.get("Range"), size)
        if rng is not None and self.st.take_fault("norange", self.path) is not None:
            rng = None
        send_cr = True
        if rng is None:
            start, end, code = 0, size - 1, status_ok
        else:
            start, end, code = rng[0], rng[1], 206
            early = self.st.take_fault("cr_early", self.path)
            if early is not None:
                start = min(start, int(early.get("from", 0)))
            elif self.st.take_fault("nocr", self.path) is not None:
                send_cr = False
        length = end - start + 1 if size else 0
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        if code == 206 and send_cr:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        self.end_headers()
        if self.command == "HEAD" or length == 0:
            return
        stall = self.st.take_fault("stall", self.path)
        if stall is not None:
            self.wfile.flush()
            time.sleep(float(stall.get("seconds", 60)))
        cut = self.st.take_fault("cut", self.path)
        slow = self.st.take_fault("slow", self.path)
        flips = [o for o in self.st.flips_for(file_key) if start <= o <= end]
        limit = length
        if cut is not None:
            limit = min(length, int(cut.get("after", 0)))
        sent = 0
        with open(disk_path, "rb") as f:
            if cut is None and slow is None and not flips:
                # Fast path: the kernel copies, so the stand-in can feed the
                # client at memory speed.
                # Counted before sending: a client that reads the last byte
                # and asks /_stub/stats at once must see it counted. What
                # was not sent after all is taken back.
                self.st.add_bytes(file_key, length)
                try:
                    while sent < length:
                        n = self.connection.sendfile(f, start + sent, length - sent)
                        if n == 0:
                            break
                        sent += n
                finally:
                    if sent < length:
                        self.st.add_bytes(file_key, sent - length)
            else:
                f.seek(start)
                bps = float(slow["bps"]) if slow else 0.0
                t0 = time.monotonic()
                while sent < limit:
                    want = min(COPY_BLOCK, limit - sent)
                    if bps:
                        want = min(want, max(1, int(bps / 20)))
                    buf = bytearray(f.read(want))
                    if not buf:
                        break
                    for o in flips:
                        i = o - (start + sent)
                        if 0 <= i < len(buf):
                            buf[i] ^= 0xFF
                    self.st.add_bytes(file_key, len(buf))  # before: see above
                    self.wfile.write(buf)
                    sent += len(buf)
                    if bps:
                        ahead = sent / bps - (time.monotonic() - t0)
                        if ahead > 0:
                            time.sleep(ahead)
                if cut is not None and sent < length:
                    self.wfile.flush()
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    self.close_connection = True

    # ---- routes ----
    def do_HEAD(self):
        self.handle_any()

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        u = urllib.parse.urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if 0 < n <= 1 << 20 else b""
        try:
            if u.path == "/_stub/reset":
                self.st.reset()
                self.send_json(200, {"ok": True})
            elif u.path == "/_stub/faults":
                self.st.add_faults(json.loads(body or b"[]"))
                self.send_json(200, {"ok": True})
            else:
                self.send_json(404, {"error": "not found"})
        except (ValueError, TypeError) as e:
            self.send_json(400, {"error": str(e)})

    def handle_any(self):
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/_stub/stats":
            self.send_json(200, self.st.stats())
            return
        # Split before unquoting: a revision like refs%2Fpr%2F1 is one segment.
        parts = [urllib.parse.unquote(x) for x in u.path.strip("/").split("/")]
        entry = {"method": self.command, "path": self.path,
                 "range": self.headers.get("Range"),
                 "auth": self.headers.get("Authorization") is not None,
                 "host": self.headers.get("Host"), "tls": self.scheme == "https"}
        try:
            if parts[0] == "api":
                self.st.count("api", entry)
                if not self.check_status_fault(self.path):
                    self.route_api(parts[1:], u)
            elif parts[0] == "cdn":
                self.st.count("cdn", entry)
                if entry["auth"]:
                    with self.st.lock:
                        self.st.cdn_auth += 1
                if not self.check_status_fault(self.path):
                    self.route_cdn(parts[1:], u)
            elif "resolve" in parts:
                self.st.count("resolve", entry)
                if not self.check_status_fault(self.path):
                    self.route_resolve(parts)
            else:
                self.st.count("other", entry)
                raise HttpError(404, None, "Not Found")
        except HttpError as e:
            self.send_error_json(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def route_tree(self, parts, u):
        # api/{models,datasets}/<org>/<name>/tree/<rev>[/<folder>]
        if self.st.listing.get("notree"):
            raise HttpError(404, None, "Not Found")
        i = parts.index("tree")
        kind, repo = parts[0], "/".join(parts[1:i])
        if len(parts) < i + 2:
            raise HttpError(404, None, "Not Found")
        rev, folder = parts[i + 1], "/".join(parts[i + 2:])
        d, meta = self.repo_dir(kind, repo)
        commit, files = self.resolve_rev(d, meta, rev)
        q = urllib.parse.parse_qs(u.query)
        recursive = q.get("recursive", ["false"])[0] == "true"
        pre = folder + "/" if folder else ""
        entries, dirs = [], set()
        for f in sorted(files, key=lambda x: x["path"]):
            if not f["path"].startswith(pre):
                continue
            rest = f["path"][len(pre):].split("/")
            # Folders on the way, as the Hub lists them (before their files).
            for k in range(1, len(rest)):
                dp = pre + "/".join(rest[:k])
                if dp not in dirs and (recursive or k == 1):
                    dirs.add(dp)
                    entries.append({"type": "directory", "oid": hashlib.sha1(dp.encode()).hexdigest(),
                                    "size": 0, "path": dp})
            if len(rest) > 1 and not recursive:
                continue
            e = {"type": "file", "oid": f["blob_id"], "size": f["size"], "path": f["path"]}
            if f["lfs"]:
                e["lfs"] = {"oid": f["sha256"], "size": f["size"],
                            "pointerSize": f["pointer_size"]}
            entries.append(e)
        page = int(self.st.listing.get("tree_page", 1000))
        start = int(q.get("cursor", ["0"])[0] or 0)
        extra = {}
        if start + page < len(entries):
            nq = dict((k, v[0]) for k, v in q.items())
            nq["cursor"] = str(start + page)
            path = u.path + "?" + urllib.parse.urlencode(nq)
            how = self.st.listing.get("tree_link", "absolute")
            if how == "relative":
                link = path
            elif how == "absolute":
                link = "%s://%s%s" % (self.scheme, self.headers.get("Host"), path)
            else:
                link = how + path
            extra["Link"] = '<%s>; rel="next"' % link
        self.send_json(200, entries[start:start + page], extra)

    def route_api(self, parts, u):
        # api/{models,datasets}/<repo...>/revision/<rev>
        if (len(parts) >= 4 and parts[0] in ("models", "datasets") and "tree" in parts
                and "revision" not in parts):
            return self.route_tree(parts, u)
        if len(parts) < 4 or parts[0] not in ("models", "datasets") or "revision" not in parts:
            raise HttpError(404, None, "Not Found")
        i = parts.index("revision")
        kind, repo, rev = parts[0], "/".join(parts[1:i]), "/".join(parts[i + 1:])
        d, meta = self.repo_dir(kind, repo)
        commit, files = self.resolve_rev(d, meta, rev)
        blobs = urllib.parse.parse_qs(u.query).get("blobs", ["false"])[0] == "true"
        if self.st.listing.get("noblobs"):
            blobs = False
        if "siblings_max" in self.st.listing:
            files = files[:int(self.st.listing["siblings_max"])]
        sib = []
        for f in files:
            s = {"rfilename": f["path"]}
            if blobs:
                s["blobId"] = f["blob_id"]
                s["size"] = f["size"]
                if f["lfs"]:
                    s["lfs"] = {"sha256": f["sha256"], "size": f["size"],
                                "pointerSize": f["pointer_size"]}
            sib.append(s)
        info = {"_id": hashlib.sha1(repo.encode()).hexdigest()[:24], "id": repo,
                "private": bool(meta.get("private")), "gated": bool(meta.get("gated")),
                "disabled": False, "sha": commit, "lastModified": "2024-01-01T00:00:00.000Z",
                "tags": [], "siblings": sib}
        if kind == "models":
            info["modelId"] = repo
            info["library_name"] = "transformers"
        self.send_json(200, info)

    def route_resolve(self, parts):
        # [datasets/]<org>/<name>/resolve/<rev>/<path...>
        kind = "models"
        if parts[0] == "datasets":
            kind, parts = "datasets", parts[1:]
        if "resolve" not in parts:
            raise HttpError(404, None, "Not Found")
        i = parts.index("resolve")
        repo = "/".join(parts[:i])
        if len(parts) < i + 3:
            raise HttpError(404, "EntryNotFound", "Entry not found")
        rev, fpath = parts[i + 1], "/".join(parts[i + 2:])
        d, meta = self.repo_dir(kind, repo)
        commit, files = self.resolve_rev(d, meta, rev)
        f = next((x for x in files if x["path"] == fpath), None)
        if f is None:
            raise HttpError(404, "EntryNotFound", "Entry not found: %s" % fpath)
        file_key = "%s/%s/%s" % (kind, repo, fpath)
        hdr = {"X-Repo-Commit": commit}
        if f["lfs"]:
            hdr["ETag"] = '"%s"' % f["blob_id"]
            hdr["X-Linked-Etag"] = '"%s"' % f["sha256"]
            hdr["X-Linked-Size"] = str(f["size"])
            q = urllib.parse.urlencode({"repo": "%s/%s/%s" % (kind, repo, commit),
                                        "file": fpath,
                                        "exp": int(time.time()) + CDN_TTL})
            q += "&sig=" + sign(q)
            host = self.st.cdn_host
            hostport = self.headers.get("Host") or "127.0.0.1:%d" % self.server.server_port
            if host:
                hostport = "%s:%d" % (host, self.server.server_port)
            loc = "%s://%s/cdn/%s?%s" % (self.scheme, hostport, f["sha256"], q)
            body = b"Found. Redirecting"
            self.send_response(302)
            for k, v in hdr.items():
                self.send_header(k, v)
            self.send_header("Location", loc)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        hdr["ETag"] = '"%s"' % f["blob_id"]
        self.send_file_bytes(os.path.join(d, "commits", commit, fpath), f["size"],
                             file_key, hdr)

    def route_cdn(self, parts, u):
        if len(parts) != 1:
            raise HttpError(404, None, "Not Found")
        sha = parts[0]
        q, _, sig = u.query.rpartition("&sig=")
        if not hmac.compare_digest(sign(q), sig):
            raise HttpError(403, None, "Request signature does not match")
        qs = urllib.parse.parse_qs(q)
        if int(qs.get("exp", ["0"])[0]) < time.time():
            raise HttpError(403, None, "Request has expired")
        repo_commit, fpath = qs["repo"][0], qs["file"][0]
        kind, rest = repo_commit.split("/", 1)
        repo, commit = rest.rsplit("/", 1)
        d = os.path.join(self.st.root, kind, repo)
        with open(os.path.join(d, "commits", commit, ".files.json")) as fh:
            files = json.load(fh)["files"]
        f = next((x for x in files if x["path"] == fpath and x["sha256"] == sha), None)
        if f is None:
            raise HttpError(404, None, "NoSuchKey")
        self.send_file_bytes(os.path.join(d, "commits", commit, fpath), f["size"],
                             "%s/%s/%s" % (kind, repo, fpath), {"ETag": '"%s"' % sha})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    tls = None  # an ssl.SSLContext with --tls-cert

    def finish_request(self, request, client_address):
        # Runs in the connection's thread, so a slow or failed handshake
        # holds up no other client.
        if self.tls is None:
            return super().finish_request(request, client_address)
        request.settimeout(10)
        first = request.recv(1, socket.MSG_PEEK)
        if first != b"\x16":  # not a TLS handshake record: plain HTTP
            request.settimeout(None)
            return super().finish_request(request, client_address)
        with self.state.lock:
            self.state.tls_hellos += 1
        conn = self.tls.wrap_socket(request, server_side=True)
        try:
            conn.settimeout(None)
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    def handle_error(self, request, client_address):
        # Clients that hang up mid-body are normal here (tests cut and
        # abort transfers on purpose), and so are clients refusing our
        # certificate (tests without the CA); anything else is worth a line.
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError)):
            print("hubstub: %s: %r" % (client_address, exc), file=sys.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Hugging Face Hub stand-in")
    ap.add_argument("root")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--token", action="append", default=[])
    ap.add_argument("--token-file")
    ap.add_argument("--faults", help="JSON list of fault rules")
    ap.add_argument("--cdn-host", help="host name used in CDN redirects")
    ap.add_argument("--tls-cert", help="PEM certificate (chain): serve https too")
    ap.add_argument("--tls-key", help="PEM key of --tls-cert")
    a = ap.parse_args(argv)
    tokens = list(a.token)
    if a.token_file:
        with open(a.token_file) as f:
            tokens += [l.strip() for l in f if l.strip()]
    state = State(a.root, tokens, a.cdn_host)
    if a.faults:
        state.add_faults(json.loads(a.faults))
    if bool(a.tls_cert) != bool(a.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    srv = Server((a.host, a.port), Handler)
    srv.state = state
    if a.tls_cert:
        srv.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        srv.tls.load_cert_chain(a.tls_cert, a.tls_key)
    print(srv.server_port, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
