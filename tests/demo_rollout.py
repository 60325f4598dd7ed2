# SPDX-License-Identifier: MIT
"""The local rollout demo (README's first command runs it through .ci/demo).

On one machine, with real processes on loopback: the Hub stand-in serves a
generated model (DEMO_SIZE, default 1G, in 8 safetensors shards); one
shoal-tracker; `shoal publish` resolves, chunks, signs and registers the
release; N shoald daemons (DEMO_NODES, default 8) in two zones, each with its
own port and HF cache; `shoal rollout` tells the fleet to hold the release.
It prints each node's completion time, the origin egress as a multiple of
the release size, and the cache layout one node ended up with.

usage: demo_rollout.py SHOALD SHOAL SHOAL_TRACKER HUB_DIR [--bench]
With --bench it also prints `BENCH demo_origin_x <value> x`.
"""
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request

import shoalproc

SHOALD, SHOAL, TRACKER, HUB_DIR = (os.path.abspath(a) for a in sys.argv[1:5])
BENCH = "--bench" in sys.argv[5:]
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
SIZE = os.environ.get("DEMO_SIZE", "1G")
NODES = int(os.environ.get("DEMO_NODES", "8"))
TIMEOUT_S = float(os.environ.get("DEMO_TIMEOUT", "600"))
procs = shoalproc.procs


def say(msg):
    print(f"\n\033[1m== {msg}\033[0m" if sys.stdout.isatty() else f"\n== {msg}", flush=True)


Proc = shoalproc.Proc


def run(*args, env=None):
    return shoalproc.run(*args, env=env, timeout=600)


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024


def main():
    tmp = tempfile.mkdtemp(prefix="shoal-demo-")
    try:
        return demo(tmp)
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def demo(tmp):
    k = lambda n: os.path.join(tmp, "keys", n)
    os.makedirs(k(""))
    names = [f"node{i}" for i in range(NODES)]

    say(f"1. the Hub stand-in serves a generated model: {SIZE} of bf16 weights in 8 shards")
    root = os.path.join(tmp, "hub")
    t0 = time.monotonic()
    commit = run(PY, os.path.join(HUB_DIR, "genrepo.py"), root, "demo/model", "--size", SIZE,
                 "--shards", "8").strip()
    with open(os.path.join(root, "models/demo/model/commits", commit, ".files.json")) as f:
        files = json.load(f)["files"]
    size = sum(e["size"] for e in files)
    print(f"generated demo/model@{commit[:12]}: {len(files)} files, {human(size)} "
          f"in {time.monotonic() - t0:.1f} s")
    hub = Proc([PY, os.path.join(HUB_DIR, "hubstub.py"), root, "--port", "0"], name="hub")
    m = hub.wait_for(r"^(\d+)$", 20, stdout=True)
    if not m:
        sys.exit("the Hub stand-in did not start:\n" + "\n".join(hub.lines))
    hub_url = f"http://127.0.0.1:{m.group(1)}"
    print(f"Hub stand-in at {hub_url}")

    say("2. keys: publisher, cluster, an admin, and a credential per node")
    shoalproc.make_keys(k(""), SHOAL, ["cluster", "publisher", "admin", *names],
                        ["admin", *names], timeout=600)
    print(f"{NODES + 3} key pairs, {NODES + 1} credentials signed by the cluster key")

    say("3. one tracker")
    trk = Proc([TRACKER, "--listen", "127.0.0.1:0",
                "--cluster-key", k("cluster") + ".pub",
                "--publisher-keys", k("publisher") + ".pub",
                "--admin-keys", k("admin") + ".pub",
                "--announce-interval-ms", "1000", "--node-ttl-ms", "10000"], name="tracker")
    m = trk.wait_for(r"listening on (\S+)", 20, stdout=True)
    if not m:
        sys.exit("the tracker did not start:\n" + "\n".join(trk.lines))
    taddr = m.group(1)
    print(f"shoal-tracker on {taddr}")

    say("4. shoal publish: resolve on the Hub, chunk, check sha256, sign, register")
    env = dict(os.environ, HF_ENDPOINT=hub_url)
    env.pop("HF_TOKEN", None)
    t0 = time.monotonic()
    out = run(SHOAL, "publish", "demo/model@main", "--key", k("publisher"), "--tracker", taddr,
              "--identity", k("admin"), "--cred", k("admin") + ".cred", "--quiet", env=env)
    print(out.strip())
    print(f"(publishing read the release from the Hub once, in {time.monotonic() - t0:.1f} s)")
    with urllib.request.urlopen(urllib.request.Request(hub_url + "/_stub/reset", data=b"",
                                                       method="POST"), timeout=10):
        pass

    say(f"5. {NODES} shoald daemons in 2 zones, each with its own port and HF cache")
    nodes = []
    for i, n in enumerate(names):
        cache = os.path.join(tmp, "cache-" + n)
        denv = dict(os.environ)
        denv.pop("HF_TOKEN", None)
        p = Proc([SHOALD, "--listen", "127.0.0.1:0", "--node-key", k(n), "--cred",
                  k(n) + ".cred", "--cluster-keys", k("cluster") + ".pub",
                  "--publisher-keys", k("publisher") + ".pub", "--cache-dir", cache,
                  "--tracker", taddr, "--hub-endpoint", hub_url,
                  "--zone", "zone-" + "ab"[i % 2], "--control-socket", "none",
                  "--state-dir", os.path.join(tmp, "state")],
                 env=denv, name=n)
        m = p.wait_for(r"listening on (127\.0\.0\.1:\d+)", 20)
        if not m:
            sys.exit(f"{n} did not start:\n" + "\n".join(p.lines[-20:]))
        p.cache, p.addr = cache, m.group(1)
        nodes.append(p)
        print(f"{n}: {p.addr} zone-{'ab'[i % 2]} cache {cache}")

    say(f"6. shoal rollout demo/model@{commit[:12]}: the fleet starts pulling")
    release = f"demo/model@{commit}"
    t_start = time.monotonic()
    print(run(SHOAL, "rollout", release, "--tracker", taddr, "--key", k("admin"), "--cred",
              k("admin") + ".cred").strip())
    rx = (r"complete: (\d+) bytes, (\d+) received from peers, (\d+) from origin, (\d+) "
          r"duplicate, (\d+) held at start, in ([\d.]+) s")
    # Watch every node at once, so each completion time is when it happened.
    got, early = shoalproc.watch_all(nodes, rx, t_start, t_start + TIMEOUT_S)
    if early:
        p = next(p for p in nodes if p.name == early)
        print(f"{p.name} exited early; last log lines:\n" + "\n".join(p.lines[-15:]))
        return 1
    results = {}
    for name, (t, m) in got.items():
        # Each byte of the release once, from where it came first:
        # "received from peers" counts endgame duplicates too, so the
        # peers' share is what neither the origin nor the cache at start
        # gave.
        total, origin, held = int(m.group(1)), int(m.group(3)), int(m.group(5))
        results[name] = (t, max(0, total - origin - held), origin)
    for p in nodes:
        if p.name not in results:
            print(f"{p.name} did not complete within {TIMEOUT_S:.0f} s; last log lines:")
            print("\n".join(p.lines[-15:]))
            return 1
    print(f"{'node':8} {'done after':>11} {'from peers':>12} {'from origin':>12}")
    for n, (t, peers, origin) in sorted(results.items(), key=lambda kv: kv[1][0]):
        print(f"{n:8} {t:10.2f}s {human(peers):>12} {human(origin):>12}")
    total_t = max(t for t, _, _ in results.values())
    print(f"all {NODES} nodes complete in {total_t:.2f} s "
          f"({NODES * size / total_t / 1e6:.0f} MB/s delivered in aggregate)")

    with urllib.request.urlopen(hub_url + "/_stub/stats", timeout=10) as r:
        egress = json.load(r)["total_bytes"]
    x = egress / size
    print(f"origin egress: {human(egress)} = {x:.3f} x the release "
          f"(without shoal: {NODES:.0f} x)")
    if BENCH:
        print(f"BENCH demo_origin_x {x:.4f} x")
        print(f"BENCH demo_wall_s {total_t:.2f} s")

    say("7. the Hugging Face cache of node0")
    # A rollout names a commit, and like huggingface_hub a node writes
    # refs/<branch> only for a release asked for by branch, so offline
    # loaders name the commit.
    print(f"load it offline: HF_HUB_CACHE={nodes[0].cache} HF_HUB_OFFLINE=1 and "
          f"from_pretrained(\"demo/model\", revision=\"{commit}\")")
    top = nodes[0].cache
    for dirpath, dirnames, fnames in sorted(os.walk(top)):
        dirnames.sort()
        rel = os.path.relpath(dirpath, top)
        if ".shoal" in rel.split(os.sep) or ".locks" in rel.split(os.sep):
            continue
        depth = 0 if rel == "." else rel.count(os.sep) + 1
        if rel != ".":
            print("  " * (depth - 1) + os.path.basename(dirpath) + "/")
        for f in sorted(fnames):
            full = os.path.join(dirpath, f)
            extra = f" -> {os.readlink(full)}" if os.path.islink(full) else ""
            print("  " * depth + f + extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
