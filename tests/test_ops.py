# SPDX-License-Identifier: MIT
"""What an operator sees of shoald through the `shoal` CLI, its log and its
cache, with real processes on loopback (Hub stand-in, shoal-tracker, shoald).

Usage: test_ops.py SHOALD SHOAL SHOAL_TRACKER HUB_DIR CASE
CASE is one of:
  origin_bytes  a node with no peers pulls a release from the Hub stand-in:
                `shoal pull` reports every byte as from the origin (100%),
                `shoal status` shows ORIGIN 100% and the metric
                shoal_received_bytes_total{source="origin"} is the release
                size.
Every wait is bounded; all processes are killed at the end.
"""
import json
import os
import re
import subprocess
import sys

import shoalproc

SHOALD, SHOAL, TRACKER, HUB_DIR, CASE = sys.argv[1:6]
PY = "/usr/bin/python3"
WAIT_S = 90
Proc = shoalproc.Proc
run = shoalproc.run


class Hub:
    """The Hub stand-in serving one generated model, acme/model."""

    def __init__(self, tmp, size, shards="2"):
        self.root = os.path.join(tmp, "hub")
        self.commit = run(PY, os.path.join(HUB_DIR, "genrepo.py"), self.root, "acme/model",
                          "--size", size, "--shards", shards, "--seed", "9").strip()
        with open(os.path.join(self.root, "models", "acme", "model", "commits", self.commit,
                               ".files.json")) as f:
            self.files = {e["path"]: e for e in json.load(f)["files"]}
        self.size = sum(e["size"] for e in self.files.values())
        self.proc = Proc([PY, os.path.join(HUB_DIR, "hubstub.py"), self.root, "--port", "0"],
                         name="hub")
        m = self.proc.wait_for(r"^(\d+)$", 20, stdout=True)
        if not m:
            self.proc.dump()
            sys.exit("hub stand-in did not start")
        self.url = f"http://127.0.0.1:{m.group(1)}"


def make_keys(tmp, nodes):
    return shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL,
                               ["cluster", "publisher", "admin", *nodes], ["admin", *nodes])


def publish(k, hub, tmp, rev="main", tracker=None):
    """`shoal publish acme/model@REV`; returns (manifest path, manifest id)."""
    env = dict(os.environ, HF_ENDPOINT=hub.url)
    env.pop("HF_TOKEN", None)
    mf = os.path.join(tmp, f"rel-{rev}.manifest")
    args = [SHOAL, "publish", f"acme/model@{rev}", "--key", k("publisher"), "--out", mf,
            "--quiet"]
    if tracker:
        args += ["--tracker", tracker, "--identity", k("admin"), "--cred", k("admin") + ".cred"]
    out = run(*args, env=env)
    return mf, re.search(r"manifest id ([0-9a-f]{64})", out).group(1)


def node(name, k, tmp, hub, extra=(), cache=None):
    """A shoald with its own control socket (node.sock) and the Hub stand-in
    as its origin."""
    args = shoalproc.node_args(k, name, tmp, ["--control-socket",
                                              os.path.join(tmp, name + ".sock"), *extra])
    if cache:
        args[args.index("--cache-dir") + 1] = cache
    if hub:
        args += ["--hub-endpoint", hub.url]
    n = shoalproc.Shoald(SHOALD, name, args)
    n.sock = os.path.join(tmp, name + ".sock")
    n.cache = cache or os.path.join(tmp, "cache-" + name)
    return n


def cli(*args, timeout=60):
    return subprocess.run([SHOAL, *args], capture_output=True, text=True, timeout=timeout)


def case_origin_bytes(tmp):
    k = make_keys(tmp, ["o"])
    hub = Hub(tmp, "6M")
    mf, mid = publish(k, hub, tmp)
    n = node("o", k, tmp, hub, ["--manifest", mf])
    fails = 0
    r = cli("pull", mid, "--socket", n.sock, "--timeout", str(WAIT_S))
    print(r.stdout.strip())
    m = re.search(r"complete: \S+ [^,]+, (\d+) bytes from peers, (\d+) from origin \((\d+)%\)",
                  r.stdout)
    if r.returncode != 0 or not m:
        print(f"FAIL shoal pull: exit {r.returncode}: {r.stdout}{r.stderr}")
        return fails + 1
    if (int(m.group(1)), int(m.group(2)), int(m.group(3))) != (0, hub.size, 100):
        print(f"FAIL shoal pull: want 0 from peers, {hub.size} from origin (100%)")
        fails += 1
    st = cli("status", "--socket", n.sock).stdout
    if not re.search(r"acme/model@%s\s+complete\s+100\.0%%.*\s100%%\s" % hub.commit, st):
        print(f"FAIL status does not show 100% from the origin:\n{st}")
        fails += 1
    mt = cli("metrics", "--socket", n.sock).stdout
    got = re.search(r'^shoal_received_bytes_total\{source="origin"\} (\d+)$', mt, re.M)
    if not got or int(got.group(1)) != hub.size:
        print(f"FAIL metrics: origin bytes != {hub.size}:\n{mt}")
        fails += 1
    fails += shoalproc.stop_all([n])
    if fails:
        n.dump()
    return fails


shoalproc.main(CASE, {"origin_bytes": case_origin_bytes}, "shoal-ops-", scan_sanitizers=True)
