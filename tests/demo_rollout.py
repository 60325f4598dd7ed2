# SPDX-License-Identifier: MIT
"""The local rollout demo (README's first command runs it through .ci/demo).

On one machine, with real processes on loopback: the Hub stand-in serves a
generated model (DEMO_SIZE, default 1G, in 8 safetensors shards); one
shoal-tracker; `shoal publish` resolves, chunks, signs and registers the
release; N shoald daemons (DEMO_NODES, default 8) in two zones, each with its
own port and HF cache; `shoal rollout` tells the fleet to hold the release.
While the fleet pulls it prints a progress line every few seconds (nodes
complete, bytes received, origin egress so far). At the end: each node's
completion time, the origin egress as a multiple of the release size, the
cache layout one node ended up with, and the commands it ran (keys,
credentials, tracker, publish, daemons, rollout), to copy for a real fleet.

Its directory is DEMO_DIR (or --dir DIR) when given, kept whole; else a new
temporary directory, which is kept after a successful demo with the keys and
node0's cache (the other caches and the generated model are removed: ~1 GiB
each) so that the printed HF_HUB_CACHE really loads; it says where and how to
remove it. A failed demo, or one with --bench, removes its temporary
directory.

usage: demo_rollout.py SHOALD SHOAL SHOAL_TRACKER HUB_DIR [--bench] [--dir DIR]
With --bench it also prints `BENCH demo_origin_x <value> x` and
`BENCH demo_wall_s <value> s`.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import shoalproc

SHOALD, SHOAL, TRACKER, HUB_DIR = (os.path.abspath(a) for a in sys.argv[1:5])
BENCH = "--bench" in sys.argv[5:]
_a = sys.argv[5:]
DIR = (_a[_a.index("--dir") + 1] if "--dir" in _a[:-1] else os.environ.get("DEMO_DIR", ""))
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
SIZE = os.environ.get("DEMO_SIZE", "1G")
NODES = int(os.environ.get("DEMO_NODES", "8"))
TIMEOUT_S = float(os.environ.get("DEMO_TIMEOUT", "600"))
procs = shoalproc.procs
PROGRESS_S = float(os.environ.get("DEMO_PROGRESS", "3"))
# The operator commands the demo ran, for the "what this did" list.
did = []


def say(msg):
    print(f"\n\033[1m== {msg}\033[0m" if sys.stdout.isatty() else f"\n== {msg}", flush=True)


Proc = shoalproc.Proc


def run(*args, env=None):
    return shoalproc.run(*args, env=env, timeout=600)


def note(argv, what, env_prefix=""):
    """Records a command for the closing "what this did" list."""
    did.append((what, env_prefix, list(argv)))


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024


def main():
    if DIR:
        tmp = os.path.abspath(DIR)
        os.makedirs(tmp, exist_ok=True)
        if os.listdir(tmp):
            sys.exit(f"demo directory {tmp} is not empty: give a new or empty one")
    else:
        tmp = tempfile.mkdtemp(prefix="shoal-demo-")
    rc = 1
    try:
        rc = demo(tmp)
        return rc
    finally:
        for p in procs:
            p.stop()
        keep(tmp, rc == 0)


def keep(tmp, ok):
    """What is left of the demo's directory once its processes are gone."""
    if DIR:
        print(f"\nthe demo's files stay in {tmp} (DEMO_DIR); remove them with: rm -rf {tmp}")
        return
    if not ok or BENCH:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    # Keep what the closing lines point at (the keys and node0's cache,
    # which loads offline) and drop the bulk: the other nodes' caches and
    # the generated model are each the size of the release.
    for name in os.listdir(tmp):
        if name not in ("keys", "cache-node0"):
            path = os.path.join(tmp, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass
    print(f"\nkept {tmp}: the keys and node0's cache (the other caches and the generated "
          f"model were removed); remove it with: rm -rf {tmp}\n"
          f"(DEMO_DIR=/some/new/dir bash .ci/demo keeps everything there)")


def demo(tmp):
    k = lambda n: os.path.join(tmp, "keys", n)
    os.makedirs(k(""))
    names = [f"node{i}" for i in range(NODES)]

    say(f"1. the Hub stand-in serves a generated model: {SIZE} of bf16 weights in 8 shards")
    root = os.path.join(tmp, "hub")
    t0 = time.monotonic()
    commit = run(PY, os.path.join(HUB_DIR, "genrepo.py"), root, "demo/model", "--size", SIZE,
                 "--shards", "8").strip()
    # The Hub stand-in is this demo's, not a fleet's: not in the list.
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
    note([SHOAL, "keygen", k("cluster")], "the cluster key (also publisher, admin and one per "
         "node: keygen writes NAME and NAME.pub)")
    note([SHOAL, "cred", "issue", "--cluster-key", k("cluster"), "--node", k("node0") + ".pub",
          "--out", k("node0") + ".cred"], "a cluster credential per node (and for admin)")
    print(f"{NODES + 3} key pairs, {NODES + 1} credentials signed by the cluster key")

    say("3. one tracker")
    targv = [TRACKER, "--listen", "127.0.0.1:0",
             "--cluster-key", k("cluster") + ".pub",
             "--publisher-keys", k("publisher") + ".pub",
             "--admin-keys", k("admin") + ".pub",
             "--announce-interval-ms", "1000", "--node-ttl-ms", "10000"]
    trk = Proc(targv, name="tracker")
    note(targv, "the tracker (a fleet's also takes --key for nodes' --tracker-keys and "
         "keeps the defaults of 30 s announces, 90 s TTL)")
    m = trk.wait_for(r"listening on (\S+)", 20, stdout=True)
    if not m:
        sys.exit("the tracker did not start:\n" + "\n".join(trk.lines))
    taddr = m.group(1)
    print(f"shoal-tracker on {taddr}")

    say("4. shoal publish: resolve on the Hub, chunk, check sha256, sign, register")
    env = dict(os.environ, HF_ENDPOINT=hub_url)
    env.pop("HF_TOKEN", None)
    t0 = time.monotonic()
    pargv = [SHOAL, "publish", "demo/model@main", "--key", k("publisher"), "--tracker", taddr,
             "--identity", k("admin"), "--cred", k("admin") + ".cred", "--quiet"]
    out = run(*pargv, env=env)
    note(pargv, "publish: resolve, chunk, sign, register", f"HF_ENDPOINT={hub_url} ")
    print(out.strip())
    print(f"(publishing read the release from the Hub once, in {time.monotonic() - t0:.1f} s)")
    with urllib.request.urlopen(urllib.request.Request(hub_url + "/_stub/reset", data=b"",
                                                       method="POST"), timeout=10):
        pass

    say(f"5. {NODES} shoald daemons in 2 zones, each with its own port and HF cache")
    nodes = []
    os.makedirs(os.path.join(tmp, "run"))
    for i, n in enumerate(names):
        cache = os.path.join(tmp, "cache-" + n)
        denv = dict(os.environ)
        denv.pop("HF_TOKEN", None)
        # A control socket each, for the progress lines (`shoal metrics`);
        # none where the path would not fit a Unix socket's.
        sock = os.path.join(tmp, "run", n + ".sock")
        if len(sock.encode()) > 100:
            sock = "none"
        dargv = [SHOALD, "--listen", "127.0.0.1:0", "--node-key", k(n), "--cred",
                 k(n) + ".cred", "--cluster-keys", k("cluster") + ".pub",
                 "--publisher-keys", k("publisher") + ".pub", "--cache-dir", cache,
                 "--tracker", taddr, "--hub-endpoint", hub_url,
                 "--zone", "zone-" + "ab"[i % 2], "--control-socket", sock,
                 "--state-dir", os.path.join(tmp, "state")]
        p = Proc(dargv, env=denv, name=n)
        if i == 0:
            note(dargv, f"a daemon per node ({NODES} here, in 2 zones; on a VM: the shipped "
                 "node/shoald.service with /etc/shoal/shoald.conf)")
        m = p.wait_for(r"listening on (127\.0\.0\.1:\d+)", 20)
        if not m:
            sys.exit(f"{n} did not start:\n" + "\n".join(p.lines[-20:]))
        p.cache, p.addr, p.sock = cache, m.group(1), sock
        nodes.append(p)
        print(f"{n}: {p.addr} zone-{'ab'[i % 2]} cache {cache}")

    say(f"6. shoal rollout demo/model@{commit[:12]}: the fleet starts pulling")
    release = f"demo/model@{commit}"
    t_start = time.monotonic()
    rargv = [SHOAL, "rollout", release, "--tracker", taddr, "--key", k("admin"), "--cred",
             k("admin") + ".cred"]
    print(run(*rargv).strip())
    note(rargv, "the rollout: every node pulls the release")
    rx = (r"complete: (\d+) bytes, (\d+) received from peers, (\d+) from origin, (\d+) "
          r"duplicate, (\d+) held at start, in ([\d.]+) s")
    # Watch every node at once, so each completion time is when it happened,
    # and say every few seconds how far the fleet is.
    got, early = shoalproc.watch_all(nodes, rx, t_start, t_start + TIMEOUT_S,
                                     tick=progress_ticker(nodes, rx, size, hub_url, t_start))
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

    # How an operator watches a rollout: the tracker's count, one node's
    # own view.
    sargv = [SHOAL, "rollout", release, "--status", "--tracker", taddr, "--key", k("admin"),
             "--cred", k("admin") + ".cred"]
    # The tracker learns of each completion at the node's next announce
    # (every second here): wait for them, a few seconds at most.
    for _ in range(20):
        st = run(*sargv)
        if f": {NODES} nodes complete" in st:
            break
        time.sleep(0.5)
    print("\n$ shoal rollout ... --status\n" + st.rstrip())
    note(sargv, "how many nodes hold it")
    if nodes[0].sock != "none":
        stargv = [SHOAL, "status", "--socket", nodes[0].sock]
        print("$ shoal status (node0)\n" + run(*stargv).rstrip())
        note(stargv, "one node's releases and their progress (shoal metrics: its Prometheus "
             "counters)")

    say("7. the Hugging Face cache of node0")
    # A rollout names a commit, and like huggingface_hub a node writes
    # refs/<branch> only for a release asked for by branch, so offline
    # loaders name the commit.
    loc = nodes[0].cache
    print(f"load it offline: HF_HUB_CACHE={loc} HF_HUB_OFFLINE=1 and "
          f"from_pretrained(\"demo/model\", revision=\"{commit}\")"
          + ("" if DIR or BENCH else " (the directory is kept: see the last line)"))
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

    say("8. what this did: the commands, to copy for a real fleet (README: Bringing up a fleet)")
    show = lambda a: a.replace(tmp, "$DEMO").replace(os.path.dirname(SHOALD) + "/", "").replace(
        os.path.dirname(SHOAL) + "/", "").replace(os.path.dirname(TRACKER) + "/", "")
    for what, pre, argv in did:
        print(f"# {what}\n  {pre}{show(' '.join(argv))}")
    print(f"($DEMO is {tmp})")
    return 0


def progress_ticker(nodes, rx, size, hub_url, t_start):
    """A watch_all tick that prints, every PROGRESS_S seconds, the nodes
    complete, the bytes the fleet has received (each node's `shoal metrics`)
    and the origin's egress so far (the Hub stand-in's count)."""
    rxc = re.compile(rx)
    state = {"next": time.monotonic() + PROGRESS_S, "done": {}}

    def received(p):
        if p.sock == "none":
            return None
        r = subprocess.run([SHOAL, "metrics", "--socket", p.sock], capture_output=True,
                           text=True, timeout=5)
        if r.returncode != 0:
            return None
        # Verified bytes of the release (what received-bytes counts also
        # holds endgame duplicates).
        got = re.findall(r'^shoal_release_have_bytes\{[^}]*\} (\d+)$', r.stdout, re.M)
        return sum(int(x) for x in got) if got else None

    def tick():
        now = time.monotonic()
        if now < state["next"]:
            return
        state["next"] = now + PROGRESS_S
        done = state["done"]
        for p in nodes:
            if p.name not in done:
                with p.lock:
                    if any(rxc.search(line) for line in p.lines):
                        done[p.name] = True
        total = 0
        known = True
        for p in nodes:
            try:
                b = size if p.name in done else received(p)
            except (OSError, subprocess.SubprocessError):
                b = None
            if b is None:
                known = False
            else:
                total += min(b, size)
        try:
            with urllib.request.urlopen(hub_url + "/_stub/stats", timeout=5) as r:
                egress = json.load(r)["total_bytes"]
            eg = f"origin egress {human(egress)} ({egress / size:.2f} x)"
        except (OSError, ValueError, KeyError):
            eg = "origin egress ?"
        got = f"{human(total)} of {human(len(nodes) * size)} received" if known else \
            "bytes received ?"
        print(f"  {now - t_start:5.1f} s: {len(done)}/{len(nodes)} nodes complete, {got}, {eg}",
              flush=True)

    return tick


if __name__ == "__main__":
    sys.exit(main())
