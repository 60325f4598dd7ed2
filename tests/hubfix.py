# SPDX-License-Identifier: MIT
"""Fixtures for tests that run the Hub stand-in and a shoal-tracker next to
real daemons (test_rollout.py, test_ops.py): one generated model acme/model
served by tests/hub/hubstub.py, the cluster's keys, a tracker on loopback,
and `shoal publish`. Every process goes through shoalproc.Proc, so it is
killed at the end of the test."""
import json
import os
import re
import sys
import urllib.request

import shoalproc

PY = "/usr/bin/python3"


class Hub:
    """The Hub stand-in (HUB_DIR is tests/hub) serving acme/model, generated
    with |shards| shards from |seed|; |faults| (a list) is handed to the
    stand-in as is."""

    def __init__(self, hub_dir, tmp, size, shards, seed, faults=None):
        self.root = os.path.join(tmp, "hub")
        self.commit = shoalproc.run(PY, os.path.join(hub_dir, "genrepo.py"), self.root,
                                    "acme/model", "--size", size, "--shards", shards,
                                    "--seed", seed).strip()
        with open(os.path.join(self.root, "models", "acme", "model", "commits", self.commit,
                               ".files.json")) as f:
            self.files = {e["path"]: e for e in json.load(f)["files"]}
        self.size = sum(e["size"] for e in self.files.values())
        args = [PY, os.path.join(hub_dir, "hubstub.py"), self.root, "--port", "0"]
        if faults:
            args += ["--faults", json.dumps(faults)]
        self.proc = shoalproc.Proc(args, name="hub")
        m = self.proc.wait_for(r"^(\d+)$", 20, stdout=True)
        if not m:
            self.proc.dump()
            sys.exit("hub stand-in did not start")
        self.url = f"http://127.0.0.1:{m.group(1)}"

    def stats(self):
        with urllib.request.urlopen(self.url + "/_stub/stats", timeout=10) as r:
            return json.load(r)

    def egress(self):
        return sum(n for k, n in self.stats()["bytes"].items() if k.startswith("model/acme/model/")
                   or k.startswith("models/acme/model/"))

    def reset(self):
        req = urllib.request.Request(self.url + "/_stub/reset", data=b"", method="POST")
        urllib.request.urlopen(req, timeout=10).read()


def make_keys(shoal, tmp, nodes):
    """Cluster, publisher and admin keys, and keys with credentials for the
    admin and |nodes|, under tmp/keys."""
    return shoalproc.make_keys(os.path.join(tmp, "keys"), shoal,
                               ["cluster", "publisher", "admin", *nodes], ["admin", *nodes])


def start_tracker(tracker, k, listen="127.0.0.1:0", extra=()):
    """A shoal-tracker trusting k's keys, announces every second; returns
    (process, its address)."""
    t = shoalproc.Proc([tracker, "--listen", listen, "--cluster-key", k("cluster") + ".pub",
                        "--publisher-keys", k("publisher") + ".pub", "--admin-keys",
                        k("admin") + ".pub", "--announce-interval-ms", "1000", *extra],
                       name="tracker")
    m = t.wait_for(r"listening on (\S+)", 20, stdout=True)
    if not m:
        t.dump()
        sys.exit("tracker did not start")
    return t, m.group(1)


def publish(shoal, k, hub, tmp, rev="main", tracker=None):
    """`shoal publish acme/model@REV` (registered with |tracker| when given);
    returns (manifest path, manifest id)."""
    env = dict(os.environ, HF_ENDPOINT=hub.url)
    env.pop("HF_TOKEN", None)
    mf = os.path.join(tmp, f"rel-{rev}.manifest")
    args = [shoal, "publish", f"acme/model@{rev}", "--key", k("publisher"), "--out", mf,
            "--quiet"]
    if tracker:
        args += ["--tracker", tracker, "--identity", k("admin"), "--cred", k("admin") + ".cred"]
    out = shoalproc.run(*args, env=env)
    return mf, re.search(r"manifest id ([0-9a-f]{64})", out).group(1)
