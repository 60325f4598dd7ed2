# SPDX-License-Identifier: MIT
"""A fleet on a network with real bandwidth limits, against its physical
limit and against shoal-sim's prediction for the same fleet.

Usage: bench_netns.py SHOALD SHOAL SHOAL_TRACKER SHOAL_SIM HUB_DIR

Loopback moves bytes at memory speed, so it says nothing about how close a
fleet comes to its links' capacity. Here every daemon runs in a network
namespace of its own, joined to a bridge by a veth pair whose two ends are
shaped with tc tbf: NODE_RATE up and NODE_RATE down per node. The Hub
stand-in has a namespace of its own too, its upload shaped to ORIGIN_RATE;
the tracker runs on the bridge, unshaped (it moves no release bytes). The
release (genrepo.py, SIZE in 4 safetensors shards) is published before
the links are shaped; then all NODES daemons start at once with --pull, in
one zone, as in a rollout, and each one's completion is taken from its log.

Figures, each as `BENCH <name> <value> <unit>`:
  netns_last_over_tmin      the last node's completion over the lower bound
                            T_min = max(F/u_origin, F/d, N*F/(u_origin + N*u))
                            with the nominal shaped rates (tbf counts
                            Ethernet, IP and TCP headers, so about 4% of each
                            link is not payload: 1.04 is the floor here)
  netns_p50_over_tmin       the median node's, likewise
  netns_origin_x            bytes the Hub stand-in served over the release size
  netns_sim_last_over_tmin  shoal-sim's prediction for the same fleet (same
                            rates, the published manifest's chunk sizes,
                            one zone, 0.1 ms within it, 0.2 ms to the origin)
  netns_real_over_sim       the real last completion over the simulated one
Context lines: netns_nodes, netns_node_mbit, netns_origin_mbit,
netns_tmin_s, netns_last_s.

On stderr, a per-second timeline of how busy the origin's link and the
nodes' links were, in wire bytes (headers included) over the nominal rates.
Peers send the generated bf16 shards zstd'd (about 22% smaller), so the
nodes' figures understate the release bytes they move: a node at 78% of its
download on the wire receives the release at about the origin's rate. With
the origin as fast as a node (the default), the origin's link bounds the
rollout, and the run's distance from T_min is the TCP/IP headers (about
4.4% of a 1500-byte packet), the first fraction of a second (before a first
chunk has arrived anywhere, no peer has anything to pass on) and the tail
(the origin's last chunks still have to reach everyone).

Needs root (ip netns, tc). Without it, it says so and exits 77 (skipped).
Environment: SHOAL_NETNS_NODES (default 8), SHOAL_NETNS_RATE (Mbit/s per node
and direction, default 200), SHOAL_NETNS_ORIGIN (Mbit/s, default the node
rate), SHOAL_NETNS_SIZE (default 256M), SHOAL_NETNS_LOGS (a directory to
keep every process's log in), SHOAL_NETNS_ARGS (extra options for every
shoald), SHOAL_NETNS_QUEUE_MS (tbf's queue, as latency; default 50),
SHOAL_NETNS_CHUNKS (MIN,AVG,MAX chunk sizes, e.g. 64K,256K,1M: the release
is then chunked here and handed to every node as --manifest instead of
being published with the default 256K/1M/4M). Every process, namespace and link
made here is removed at the end, also on failure or SIGTERM. Addresses are
in 10.213.X.0/24 on the bridge only; X avoids any route the machine has.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import shoalproc  # noqa: E402

SHOALD, SHOAL, TRACKER, SIM, HUB_DIR = (os.path.abspath(a) for a in sys.argv[1:6])
NODES = int(os.environ.get("SHOAL_NETNS_NODES", "8"))
RATE = float(os.environ.get("SHOAL_NETNS_RATE", "200"))
ORIGIN = float(os.environ.get("SHOAL_NETNS_ORIGIN", str(RATE)))
SIZE = os.environ.get("SHOAL_NETNS_SIZE", "256M")
EXTRA = os.environ.get("SHOAL_NETNS_ARGS", "").split()
TBF_LATENCY_MS = int(os.environ.get("SHOAL_NETNS_QUEUE_MS", "50"))
CHUNKS = os.environ.get("SHOAL_NETNS_CHUNKS", "")
PY = "/usr/bin/python3"
T0 = time.monotonic()
TAG = "sh%d" % (os.getpid() % 100000)


def say(msg):
    sys.stderr.write("[%6.1fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stderr.flush()


def bench(name, value, unit):
    print("BENCH %s %s %s" % (name, value, unit), flush=True)


def sh(*argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), r.returncode, r.stderr.strip()))
    return r.stdout


class Net:
    """The bridge, the namespaces and the shaped veth pairs; undo() removes
    whatever was made, in any state."""

    def __init__(self):
        self.netns = []
        self.links = []
        used = sh("ip", "-4", "route", "show", "table", "all")
        self.net = next("10.213.%d" % x for x in range(20 + os.getpid() % 200, 256)
                        if "10.213.%d." % x not in used)
        self.bridge = TAG + "sw"  # host links are TAG+"a"/"b"+name: no clash
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.links.append(self.bridge)
        sh("ip", "addr", "add", self.net + ".1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def host(self, name, last_octet):
        """A namespace joined to the bridge; returns (namespace, address,
        bridge-side device, namespace-side device)."""
        ns, outer, inner = TAG + name, TAG + "a" + name, TAG + "b" + name
        sh("ip", "netns", "add", ns)
        self.netns.append(ns)
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        self.links.append(outer)
        sh("ip", "link", "set", inner, "netns", ns)
        sh("ip", "link", "set", outer, "master", self.bridge)
        sh("ip", "link", "set", outer, "up")
        addr = "%s.%d" % (self.net, last_octet)
        sh("ip", "-n", ns, "addr", "add", addr + "/24", "dev", inner)
        sh("ip", "-n", ns, "link", "set", inner, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns, addr, outer, inner

    @staticmethod
    def shape(dev, mbit, ns=None):
        """tbf at |mbit| on |dev|'s egress (in namespace |ns|)."""
        rate = mbit * 1e6 / 8
        burst = max(32 * 1024, int(rate / 100))
        pre = ["ip", "netns", "exec", ns] if ns else []
        sh(*pre, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "%dbit" % (mbit * 1e6),
           "burst", str(burst), "latency", "%dms" % TBF_LATENCY_MS)

    def undo(self):
        for ns in self.netns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=30)
        self.netns, self.links = [], []


def t_min(f, n, u, d, uo):
    return max(f / uo, f / d, n * f / (uo + n * u))


def sim_predict(mf, tmin_real):
    """shoal-sim's completion max and T_min for this fleet, in seconds."""
    out = sh(SIM, "--nodes", str(NODES), "--zones", "1", "--bandwidth", "%gMbit" % RATE,
             "--origin", "%gMbit" % ORIGIN, "--manifest", mf, "--lat_zone", "0.1",
             "--lat_origin", "0.2", "-q")
    last = float(re.search(r"completion max\s+([\d.]+) s", out).group(1))
    tmin = float(re.search(r"T_min\s+([\d.]+) s", out).group(1))
    say("shoal-sim: T_min %.3f s (ours %.3f s), last node %.3f s" % (tmin, tmin_real, last))
    return last, tmin


def run(tmp, net):
    k = lambda n: os.path.join(tmp, "keys", n)
    names = ["n%d" % i for i in range(NODES)]
    say("generating a %s release and %d node keys" % (SIZE, NODES))
    root = os.path.join(tmp, "hub")
    commit = shoalproc.run(PY, os.path.join(HUB_DIR, "genrepo.py"), root, "acme/model",
                           "--size", SIZE, "--shards", "4", "--seed", "3").strip()
    with open(os.path.join(root, "models/acme/model/commits", commit, ".files.json")) as f:
        size = sum(e["size"] for e in json.load(f)["files"])
    shoalproc.make_keys(k(""), SHOAL, ["cluster", "publisher", "admin", *names],
                        ["admin", *names], timeout=600)

    hub_ns, hub_ip, hub_outer, hub_inner = net.host("h", 2)
    hub = shoalproc.Proc(["ip", "netns", "exec", hub_ns, PY, os.path.join(HUB_DIR, "hubstub.py"),
                          root, "--port", "0", "--host", hub_ip], name="hub")
    m = hub.wait_for(r"^(\d+)$", 20, stdout=True)
    if not m:
        hub.dump()
        raise RuntimeError("the Hub stand-in did not start")
    hub_url = "http://%s:%s" % (hub_ip, m.group(1))
    trk = shoalproc.Proc([TRACKER, "--listen", net.net + ".1:0", "--cluster-key",
                          k("cluster") + ".pub", "--publisher-keys", k("publisher") + ".pub",
                          "--admin-keys", k("admin") + ".pub", "--announce-interval-ms", "1000"],
                         name="tracker")
    m = trk.wait_for(r"listening on (\S+)", 20, stdout=True)
    if not m:
        trk.dump()
        raise RuntimeError("the tracker did not start")
    taddr = m.group(1)
    mf = os.path.join(tmp, "release.manifest")
    env = dict(os.environ, HF_ENDPOINT=hub_url)
    env.pop("HF_TOKEN", None)
    say("publishing acme/model@%s (%d bytes) before the links are shaped" % (commit[:12], size))
    shoalproc.run(SHOAL, "publish", "acme/model@" + commit, "--key", k("publisher"), "--out", mf,
                  "--tracker", taddr, "--identity", k("admin"), "--cred", k("admin") + ".cred",
                  "--quiet", env=env, timeout=600)
    release = ["--pull", "acme/model@" + commit]
    if CHUNKS:
        # Other chunk sizes than publish's: the release is chunked here, and
        # every node is handed the manifest (no tracker lookup).
        files = os.path.join(tmp, "files")
        src = os.path.join(root, "models/acme/model/commits", commit)
        shutil.copytree(src, files, ignore=shutil.ignore_patterns(".files.json"))
        mn, av, mx = CHUNKS.split(",")
        shoalproc.build_manifest(SHOAL, files, k, mf, repo_id="acme/model", commit=commit,
                                 extra=("--min", mn, "--avg", av, "--max", mx))
        release = ["--manifest", mf]
    urllib.request.urlopen(urllib.request.Request(hub_url + "/_stub/reset", data=b"",
                                                  method="POST"), timeout=10).read()
    net.shape(hub_inner, ORIGIN, hub_ns)

    hosts = []
    for i, n in enumerate(names):
        ns, ip, outer, inner = net.host("n%d" % i, 10 + i)
        net.shape(inner, RATE, ns)   # its upload
        net.shape(outer, RATE)       # its download
        hosts.append((n, ns, ip, outer))
    u = d = RATE * 1e6 / 8
    uo = ORIGIN * 1e6 / 8
    tmin = t_min(size, NODES, u, d, uo)
    say("%d nodes at %g Mbit/s up and down, origin %g Mbit/s: T_min %.2f s"
        % (NODES, RATE, ORIGIN, tmin))

    denv = dict(os.environ)
    denv.pop("HF_TOKEN", None)
    nodes = []
    t_start = time.monotonic()
    for n, ns, ip, _ in hosts:
        p = shoalproc.Proc(["ip", "netns", "exec", ns, SHOALD, "--listen", ip + ":7600",
                            "--node-key", k(n), "--cred", k(n) + ".cred",
                            "--cluster-keys", k("cluster") + ".pub",
                            "--publisher-keys", k("publisher") + ".pub",
                            "--cache-dir", os.path.join(tmp, "cache-" + n),
                            "--state-dir", os.path.join(tmp, "state"),
                            "--control-socket", os.path.join(tmp, n + ".sock"),
                            "--tracker", taddr, "--hub-endpoint", hub_url, "--zone", "z1",
                            *release, *EXTRA], env=denv, name=n)
        nodes.append(p)
    deadline = t_start + 10 * tmin + 60
    # Bytes on the wire each second, from the bridge side of the veths:
    # what the origin sent, and what the nodes received and sent in all (as
    # shares of their capacity), for the timeline on stderr.
    def wire(dev, what):
        with open("/sys/class/net/%s/statistics/%s_bytes" % (dev, what)) as f:
            return int(f.read())

    def counters():
        return (wire(hub_outer, "rx"), sum(wire(h[3], "tx") for h in hosts),
                sum(wire(h[3], "rx") for h in hosts))

    timeline = []
    state = {"next": t_start + 1, "prev": counters()}

    def sample():
        if time.monotonic() < state["next"]:
            return
        state["next"] += 1
        cur, prev = counters(), state["prev"]
        timeline.append("%.0f/%.0f/%.0f%%" % ((cur[0] - prev[0]) / uo * 100,
                                              (cur[1] - prev[1]) / (NODES * d) * 100,
                                              (cur[2] - prev[2]) / (NODES * u) * 100))
        state["prev"] = cur

    got, early = shoalproc.watch_all(nodes, r"complete: \d+ bytes, .* in [\d.]+ s", t_start,
                                     deadline, sample)
    if early or len(got) < NODES:
        for p in nodes:
            if p.name not in got:
                p.dump(20)
        raise RuntimeError("%s exited before completing" % early if early else
                           "%d of %d nodes did not complete in %.0f s"
                           % (NODES - len(got), NODES, deadline - t_start))
    done = {name: t for name, (t, _) in got.items()}
    with urllib.request.urlopen(hub_url + "/_stub/stats", timeout=10) as r:
        egress = json.load(r)["total_bytes"]
    times = sorted(done.values())
    last, p50 = times[-1], times[(len(times) - 1) // 2]
    say("completion: " + ", ".join("%s %.2f s" % kv for kv in sorted(done.items())))
    say("origin served %d bytes (%.3f x the release)" % (egress, egress / size))
    say("each second, origin link / node downloads / node uploads busy: " + " ".join(timeline))
    logs = os.environ.get("SHOAL_NETNS_LOGS")
    if logs:
        os.makedirs(logs, exist_ok=True)
        for n, _, _, _ in hosts:
            r = subprocess.run([SHOAL, "metrics", "--socket", os.path.join(tmp, n + ".sock")],
                               capture_output=True, text=True, timeout=10)
            with open(os.path.join(logs, n + ".metrics"), "w") as f:
                f.write(r.stdout + r.stderr)
        for p in [hub, trk, *nodes]:
            with open(os.path.join(logs, p.name + ".log"), "w") as f:
                f.write(p.log() + "\n")
        say("logs written to " + logs)
    sim_last, sim_tmin = sim_predict(mf, tmin)
    bench("netns_nodes", NODES, "nodes")
    bench("netns_node_mbit", "%g" % RATE, "Mbit/s")
    bench("netns_origin_mbit", "%g" % ORIGIN, "Mbit/s")
    bench("netns_tmin_s", "%.3f" % tmin, "s")
    bench("netns_last_s", "%.3f" % last, "s")
    bench("netns_last_over_tmin", "%.4f" % (last / tmin), "ratio")
    bench("netns_p50_over_tmin", "%.4f" % (p50 / tmin), "ratio")
    bench("netns_origin_x", "%.4f" % (egress / size), "ratio")
    bench("netns_sim_last_over_tmin", "%.4f" % (sim_last / sim_tmin), "ratio")
    bench("netns_real_over_sim", "%.4f" % (last / sim_last), "ratio")
    return 0


def main():
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
        print("bench_netns: needs root, ip and tc (network namespaces, tbf): skipped")
        return 77
    tmp = tempfile.mkdtemp(prefix="shoal-netns-")
    net = None

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        net = Net()
        return run(tmp, net)
    except (RuntimeError, subprocess.SubprocessError, OSError, KeyboardInterrupt) as e:
        say("FAILED: %s" % (e or type(e).__name__))
        return 1
    finally:
        for p in shoalproc.procs:
            p.stop()
        if net:
            net.undo()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
