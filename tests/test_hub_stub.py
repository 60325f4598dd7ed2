# SPDX-License-Identifier: MIT
"""The Hub stand-in itself: what clients in other tests rely on.

Generates a small repo with genrepo.py, starts hubstub.py on an ephemeral
loopback port and checks the API shape, the resolve redirect and headers,
Range handling, auth, error codes, injected faults and byte accounting.
Every request has a timeout; the stub is killed at the end.
Usage: test_hub_stub.py HUBDIR  (the directory holding the two scripts)
"""

import hashlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
import urllib.parse

failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what, file=sys.stderr)


def req(port, method, path, headers=None, body=None, host="127.0.0.1"):
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def main():
    hub = sys.argv[1]
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "root")
        out = subprocess.run([py, os.path.join(hub, "genrepo.py"), root, "org/m",
                              "--size", "256K", "--shards", "2", "--tag", "v1",
                              "--print-json"], check=True, capture_output=True, timeout=60)
        info = json.loads(out.stdout)
        commit = info["commit"]
        again = subprocess.run([py, os.path.join(hub, "genrepo.py"), os.path.join(tmp, "r2"),
                                "org/m", "--size", "256K", "--shards", "2", "--tag", "v1",
                                "--print-json"], check=True, capture_output=True, timeout=60)
        check(json.loads(again.stdout)["commit"] == commit, "same seed gives the same commit")
        subprocess.run([py, os.path.join(hub, "genrepo.py"), root, "org/p", "--size", "64K",
                        "--shards", "1", "--private"], check=True, capture_output=True, timeout=60)
        stub = subprocess.Popen([py, os.path.join(hub, "hubstub.py"), root, "--token", "tok"],
                                stdout=subprocess.PIPE)
        try:
            port = int(stub.stdout.readline())
            run_checks(port, commit, info["files"], root)
        finally:
            stub.kill()
            stub.wait(timeout=10)
    print("%s" % ("ok" if failures == 0 else "%d failures" % failures))
    return 1 if failures else 0


def run_checks(port, commit, files, root):
    st, h, body = req(port, "GET", "/api/models/org/m/revision/v1?blobs=true")
    check(st == 200, "api 200")
    j = json.loads(body)
    check(j["sha"] == commit and j["id"] == "org/m", "api sha/id")
    sib = {s["rfilename"]: s for s in j["siblings"]}
    shard = next(f for f in files if f["path"].endswith(".safetensors"))
    check(sib[shard["path"]]["lfs"]["sha256"] == shard["sha256"], "lfs sha256 listed")
    check(sib["config.json"].get("lfs") is None and len(sib["config.json"]["blobId"]) == 40,
          "non-LFS file has a blob id only")
    # The safetensors header is valid: length, JSON, offsets within the file.
    path = os.path.join(root, "models", "org", "m", "commits", commit, shard["path"])
    with open(path, "rb") as f:
        raw = f.read()
    hl = int.from_bytes(raw[:8], "little")
    hdr = json.loads(raw[8:8 + hl])
    ends = [v["data_offsets"][1] for k, v in hdr.items() if k != "__metadata__"]
    check(8 + hl + max(ends) == len(raw), "safetensors offsets cover the file")
    check(all(v["dtype"] == "BF16" for k, v in hdr.items() if k != "__metadata__"), "bf16")
    check(hashlib.sha256(raw).hexdigest() == shard["sha256"], "sha256 recorded")

    st, h, _ = req(port, "HEAD", "/org/m/resolve/main/" + shard["path"])
    check(st == 302, "resolve LFS is a redirect")
    check(h.get("x-repo-commit") == commit, "X-Repo-Commit")
    check(h.get("x-linked-etag") == '"%s"' % shard["sha256"], "X-Linked-Etag")
    check(h.get("x-linked-size") == str(shard["size"]), "X-Linked-Size")
    loc = urllib.parse.urlsplit(h["location"])
    cdn = loc.path + "?" + loc.query
    st, h, data = req(port, "GET", cdn, {"Range": "bytes=100-199"})
    check(st == 206 and data == raw[100:200], "CDN range")
    check(h.get("content-range") == "bytes 100-199/%d" % len(raw), "Content-Range")
    st, _, _ = req(port, "GET", cdn, {"Range": "bytes=%d-" % len(raw)})
    check(st == 416, "range past the end is 416")
    st, _, _ = req(port, "GET", cdn.replace("sig=", "sig=0"))
    check(st == 403, "tampered CDN signature refused")

    st, h, _ = req(port, "GET", "/api/models/org/m/revision/nope")
    check(st == 404 and h.get("x-error-code") == "RevisionNotFound", "RevisionNotFound")
    st, h, _ = req(port, "GET", "/org/m/resolve/main/missing.bin")
    check(st == 404 and h.get("x-error-code") == "EntryNotFound", "EntryNotFound")
    st, h, _ = req(port, "GET", "/api/models/org/zz/revision/main")
    check(st == 404 and h.get("x-error-code") == "RepoNotFound", "RepoNotFound")
    st, h, _ = req(port, "GET", "/api/models/org/p/revision/main")
    check(st == 401, "private repo without token is 401")
    st, h, _ = req(port, "GET", "/api/models/org/p/revision/main", {"Authorization": "Bearer tok"})
    check(st == 200, "private repo with token")

    req(port, "POST", "/_stub/reset")
    rules = [{"kind": "status", "code": 429, "retry_after": 2, "match": "/api/", "times": 2},
             {"kind": "flip", "file": "config.json", "offset": 3}]
    st, _, _ = req(port, "POST", "/_stub/faults", {"Content-Type": "application/json"},
                   json.dumps(rules))
    check(st == 200, "faults accepted")
    for i in range(2):
        st, h, _ = req(port, "GET", "/api/models/org/m/revision/main")
        check(st == 429 and h.get("retry-after") == "2", "429 #%d with Retry-After" % i)
    st, _, _ = req(port, "GET", "/api/models/org/m/revision/main")
    check(st == 200, "429 only n times")
    st, _, data = req(port, "GET", "/org/m/resolve/main/config.json")
    with open(os.path.join(root, "models/org/m/commits", commit, "config.json"), "rb") as f:
        good = f.read()
    check(st == 200 and len(data) == len(good) and data != good and
          data[3] == good[3] ^ 0xFF, "flipped byte")
    st, _, body = req(port, "GET", "/_stub/stats")
    s = json.loads(body)
    check(s["bytes"].get("models/org/m/config.json") == len(good), "bytes counted per file")
    check(s["requests"]["api"] == 3, "api requests counted")

    req(port, "POST", "/_stub/reset")
    req(port, "POST", "/_stub/faults", {}, json.dumps([{"kind": "cut", "after": 1000}]))
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", cdn)
    r = c.getresponse()
    try:
        got = r.read()
        check(False, "cut body should not read fully (%d bytes)" % len(got))
    except http.client.IncompleteRead as e:
        check(len(e.partial) == 1000, "cut after 1000 bytes")
    c.close()


if __name__ == "__main__":
    sys.exit(main())
