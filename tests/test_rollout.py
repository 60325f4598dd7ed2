# SPDX-License-Identifier: MIT
"""Rollouts with real processes on loopback: Hub stand-in, shoal-tracker,
`shoal publish`, and shoald nodes that find each other through the tracker
and share origin fetches through its leases.

Usage: test_rollout.py SHOALD SHOAL SHOAL_TRACKER HUB_DIR CASE
CASE is one of:
  swarm8        a generated model (64 MiB) on the Hub stand-in, published to
                the tracker; 8 nodes in two zones, each with its own port and
                cache, list the live tracker and a dead one. Six pull the
                release by name (org/name@commit); two start idle and begin
                pulling when `shoal rollout` records the release. All eight
                publish byte-identical files (sha256 equal to the generated
                files) in their HF cache, and the origin serves less than
                1.2x the release in total.
  restart       a single node pulls from a slowed origin; it is stopped once
                a file is complete and started again: it resumes with what
                it had verified, and what it fetches after the restart is
                exactly the rest (nothing verified is fetched again; the
                origin's byte count agrees).
  tracker_down  the tracker a node lists is down; two nodes holding only the
                manifest still complete from the origin (no lease) and exit
                0 with --exit-when-complete.
  roles         a tracker with --origin-fetchers 1 --min-fetchers 0
                --importers 1 and 6 nodes in two zones pulling one release:
                in each zone exactly one node is told it is the origin
                fetcher, one the importer, one neither; each logs its role
                once; all complete.
  two_trackers  two trackers, the release published to the first only and
                rolled out through it; 4 nodes list both. Once every node
                has opened the release (resolved by name from the first)
                the first is killed: the second, which only the nodes can
                have told of the manifest, leases the rest and all nodes
                complete (before, it answered every lease "manifest not
                published to this tracker" and the fleet stalled).
  tracker_order two trackers, one manifest (published once, given to the
                nodes as a file); 4 nodes list them in alternating orders
                ([T1,T2], [T2,T1]) and pull from a slowed origin: every node
                asks the same tracker for the release's leases, so the
                origin serves under 1.2x the release (before, each node
                asked the first it listed and the fleet fetched ~1.8x).
  slow_lease    a tracker with --lease-ms 1000 granting whole spans and an
                origin slow enough that a lease's span takes several lease
                times (each chunk less than one): 2 nodes report
                chunks as they land, the tracker extends a lease that
                progresses, and the origin serves under 1.1x the release
                (before, the span's unreported chunks were granted to the
                other node at expiry and fetched twice).
Every wait is bounded; all processes are stopped at the end.
"""
import os
import re
import socket
import sys
import time

import hubfix
import shoalproc

SHOALD, SHOAL, TRACKER, HUB_DIR, CASE = sys.argv[1:6]
PY = "/usr/bin/python3"
WAIT_S = 90

procs = shoalproc.procs
Proc = shoalproc.Proc
run = shoalproc.run


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def Hub(tmp, size, faults=None):
    return hubfix.Hub(HUB_DIR, tmp, size, "4", "5", faults)


def make_keys(tmp, nodes):
    return hubfix.make_keys(SHOAL, tmp, nodes)


def start_tracker(k, listen="127.0.0.1:0", extra=()):
    return hubfix.start_tracker(TRACKER, k, listen,
                                ("--node-ttl-ms", "5000", "--lease-ms", "20000", *extra))


def publish(k, hub, tmp, tracker=None):
    return hubfix.publish(SHOAL, k, hub, tmp, "main", tracker)


class Node(Proc):
    def __init__(self, name, k, tmp, hub, extra):
        self.cache = os.path.join(tmp, "cache-" + name)
        env = dict(os.environ)
        env.pop("HF_TOKEN", None)
        env.pop("HF_ENDPOINT", None)
        super().__init__(shoalproc.shoald_argv(SHOALD, name, [
            "--node-key", k(name), "--cred", k(name) + ".cred", "--cluster-keys",
            k("cluster") + ".pub", "--publisher-keys", k("publisher") + ".pub",
            "--cache-dir", self.cache, "--hub-endpoint", hub.url, *extra]), env=env, name=name)
        if not self.wait_for(r"listening on 127\.0\.0\.1:\d+", 20):
            self.dump()
            sys.exit(f"{name}: did not start")

    def completion(self, timeout):
        """(peers, origin, duplicate, held at start, seconds) from the
        completion line, or None."""
        m = self.wait_for(r"complete: (\d+) bytes, (\d+) received from peers, (\d+) from origin, "
                          r"(\d+) duplicate, (\d+) held at start, in ([\d.]+) s", timeout)
        if not m:
            return None
        return tuple(int(m.group(i)) for i in range(2, 6)) + (float(m.group(6)),)


def check_files(node, hub):
    return hubfix.check_files(node, hub)


def case_swarm8(tmp):
    names = [f"n{i}" for i in range(8)]
    k = make_keys(tmp, names)
    hub = Hub(tmp, "64M")
    trk, taddr = start_tracker(k)
    publish(k, hub, tmp, taddr)
    hub.reset()  # publishing read the release once; count only the nodes
    dead = f"127.0.0.1:{free_port()}"
    release = f"acme/model@{hub.commit}"
    nodes = []
    for i, n in enumerate(names):
        extra = ["--tracker", dead, "--tracker", taddr, "--zone", "zone-" + "ab"[i % 2]]
        if i < 6:
            extra += ["--pull", release]
        nodes.append(Node(n, k, tmp, hub, extra))
    fails = 0
    # The idle nodes start pulling only when the rollout is recorded.
    time.sleep(0.5)
    for n in nodes[6:]:
        if "rollout:" in n.log():
            print(f"FAIL {n.name} pulled before any rollout")
            fails += 1
    out = run(SHOAL, "rollout", release, "--tracker", taddr, "--key", k("admin"),
              "--cred", k("admin") + ".cred")
    print(out.strip())
    stats = {}
    for n in nodes:
        st = n.completion(WAIT_S)
        if not st:
            print(f"FAIL {n.name} did not complete")
            fails += 1
            continue
        stats[n.name] = st
    for n in nodes[6:]:
        if not n.wait_for(r"rollout: tracker .* asks for acme/model@", 1):
            print(f"FAIL {n.name} did not learn the rollout from the tracker")
            fails += 1
    for n in nodes:
        fails += check_files(n, hub)
    egress = hub.egress()
    ratio = egress / hub.size
    for name, st in sorted(stats.items()):
        print(f"{name}: {st[4]:.2f} s, {st[0]} B from peers, {st[1]} B from origin")
    print(f"release {hub.size} B; origin egress {egress} B = {ratio:.3f}x the release")
    print(f"BENCH rollout8_origin_x {ratio:.3f} x")
    if ratio >= 1.2:
        print("FAIL origin egress is not under 1.2x the release")
        fails += 1
    origin_sum = sum(st[1] for st in stats.values())
    if origin_sum > egress:
        print(f"FAIL nodes claim {origin_sum} B from the origin, the origin served {egress} B")
        fails += 1
    out = run(SHOAL, "rollout", release, "--status", "--tracker", taddr, "--key", k("n0"),
              "--cred", k("n0") + ".cred")
    print(out.strip())
    return shoalproc.finish(fails, nodes, procs)


def case_restart(tmp):
    k = make_keys(tmp, ["r"])
    hub = Hub(tmp, "24M")
    trk, taddr = start_tracker(k)
    publish(k, hub, tmp, taddr)
    hub.reset()
    # 6 MiB/s per origin request: a 24 MiB release takes a few seconds.
    # Set after the reset, which clears faults: before, only leases of a
    # chunk or two made a lone node that slow.
    hub.add_faults([{"kind": "slow", "bps": 6 << 20}])
    release = f"acme/model@{hub.commit}"
    extra = ["--tracker", taddr, "--pull", release, "--exit-when-complete"]
    fails = 0
    a = Node("r", k, tmp, hub, extra)
    # A whole shard in: well into the download, and long before its end.
    if not a.wait_for(r"\.safetensors complete and verified", WAIT_S):
        print("FAIL no shard completed before the restart")
        a.dump()
        return 1
    if a.stop() != 0:
        print("FAIL the node did not shut down cleanly mid-download")
        fails += 1
    if a.completion(0):
        print("FAIL the release completed before the restart; the test proves nothing")
        a.dump()
        return fails + 1
    # The stand-in writes a slowed answer a block at a time until it finds
    # the connection gone: those writes, counted after the reset, were
    # taken for bytes served to the restarted node.
    before = hub.egress()
    for _ in range(25):
        time.sleep(0.2)
        now = hub.egress()
        if now == before:
            break
        before = now
    hub.reset()
    b = Node("r", k, tmp, hub, extra)
    m = b.wait_for(r"resuming with (\d+) of (\d+) chunks \((\d+) bytes\)", 20)
    st = b.completion(WAIT_S)
    rc = b.p.wait(timeout=20) if st else None
    after = hub.egress()
    if not m or not st:
        print("FAIL the restarted node did not resume and complete")
        fails += 1
    else:
        had = int(m.group(3))
        peers, origin, dup, held = st[0], st[1], st[2], st[3]
        fresh = peers + origin - dup
        print(f"had {had} of {hub.size} B at restart; fetched {fresh} B after it "
              f"({dup} duplicate); origin served {before} B before and {after} B after")
        if not 0 < had < hub.size:
            print("FAIL the restart did not happen mid-download")
            fails += 1
        if held != had or fresh != hub.size - had or dup != 0:
            print("FAIL verified chunks were fetched again after the restart")
            fails += 1
        if after != hub.size - had:
            print("FAIL the origin served more than the missing part after the restart")
            fails += 1
        if rc != 0:
            print(f"FAIL --exit-when-complete exit status {rc}")
            fails += 1
    fails += check_files(b, hub)
    if fails:
        for p in procs:
            p.dump()
    return fails


def case_tracker_down(tmp):
    k = make_keys(tmp, ["d0", "d1"])
    hub = Hub(tmp, "16M")
    mf, mid = publish(k, hub, tmp)
    hub.reset()
    dead = f"127.0.0.1:{free_port()}"
    nodes = [Node(n, k, tmp, hub, ["--tracker", dead, "--manifest", mf, "--pull", mid,
                                   "--exit-when-complete", "--lease-fallback-ms", "1000"])
             for n in ("d0", "d1")]
    fails = 0
    for n in nodes:
        rc = n.wait(WAIT_S)
        if rc != 0:
            print(f"FAIL {n.name} did not complete and exit 0 (exit {rc})")
            fails += 1
        st = n.completion(5)
        if not st or st[1] == 0:
            print(f"FAIL {n.name} got nothing from the origin")
            fails += 1
        if not n.wait_for(r"no tracker has answered .* without a lease", 1):
            print(f"FAIL {n.name} did not say it fell back to the origin without a lease")
            fails += 1
        fails += check_files(n, hub)
    print(f"origin served {hub.egress()} B for a {hub.size} B release to 2 nodes")
    if fails:
        for p in procs:
            p.dump()
    return fails


def case_roles(tmp):
    names = [f"r{i}" for i in range(6)]
    k = make_keys(tmp, names)
    hub = Hub(tmp, "32M")
    trk, taddr = start_tracker(k, extra=["--origin-fetchers", "1", "--min-fetchers", "0",
                                         "--importers", "1"])
    publish(k, hub, tmp, taddr)
    hub.reset()
    release = f"acme/model@{hub.commit}"
    zone = {n: "zone-" + "ab"[i % 2] for i, n in enumerate(names)}
    nodes = [Node(n, k, tmp, hub, ["--tracker", taddr, "--zone", zone[n], "--pull", release])
             for n in names]
    fails = 0
    for n in nodes:
        if not n.completion(WAIT_S):
            print(f"FAIL {n.name} did not complete")
            fails += 1
    pat = re.compile(r"release [0-9a-f]+: tracker role: (origin fetcher|importer of share 0/1|"
                     r"none) (?:for|in) zone (\S+)")
    told = {z: [] for z in zone.values()}
    for n in nodes:
        roles = pat.findall(n.log())
        print(f"{n.name} ({zone[n.name]}): {roles}")
        # The role given at the first announce is the one checked; a zone
        # whose first node completes has no fetcher from then on, so a
        # later "none" is right. A fetcher holding chunks before its zone's
        # importer announced is given the zone's import share for a while
        # ("origin fetcher and importer of share ...", which pat skips) and
        # then its own role again, so a repeat of the first role is right
        # too (any other later role is not).
        if not roles or any(r not in (("none", zone[n.name]), roles[0]) for r in roles[1:]):
            print(f"FAIL {n.name} logged roles {roles}, not one (and then only none)")
            fails += 1
            continue
        if roles[0][1] != zone[n.name]:
            print(f"FAIL {n.name} names zone {roles[0][1]}, not {zone[n.name]}")
            fails += 1
        told[zone[n.name]].append(roles[0][0])
    for z, roles in sorted(told.items()):
        if sorted(roles) != ["importer of share 0/1", "none", "origin fetcher"]:
            print(f"FAIL {z}: roles {sorted(roles)}, not one fetcher, one importer, one none")
            fails += 1
    fails += egress_over(hub, 1.2)
    return shoalproc.finish(fails, nodes, procs)


def egress_over(hub, limit, why=""):
    """Prints the origin's egress over the release size; 1 (a failure) if it
    is not under |limit|."""
    ratio = hub.egress() / hub.size
    print(f"origin egress {ratio:.3f}x the release")
    if ratio < limit:
        return 0
    print(f"FAIL origin egress is not under {limit}x the release{why}")
    return 1


def case_two_trackers(tmp):
    names = [f"t{i}" for i in range(4)]
    k = make_keys(tmp, names)
    hub = Hub(tmp, "16M")
    t1, a1 = start_tracker(k)
    t2, a2 = start_tracker(k)
    publish(k, hub, tmp, a1)
    hub.reset()
    # Slow enough that the origin still owes most of the release when the
    # first tracker dies.
    hub.add_faults([{"kind": "slow", "bps": 2000000}])
    release = f"acme/model@{hub.commit}"
    nodes = [Node(n, k, tmp, hub, ["--tracker", a1, "--tracker", a2, "--reconnect-ms", "300"])
             for n in names]
    fails = 0
    # Both logins first, so that a manifest put at login cannot be what
    # tells the second tracker: only the one sent when the release opens.
    for n in nodes:
        for a in (a1, a2):
            if not n.wait_for(r"tracker %s: authenticated" % re.escape(a), 20):
                print(f"FAIL {n.name} did not log in to tracker {a}")
                fails += 1
    if fails:
        for p in procs:
            p.dump()
        return fails
    r = run(SHOAL, "rollout", release, "--tracker", a1, "--key", k("admin"), "--cred",
            k("admin") + ".cred")
    for n in nodes:
        if not n.wait_for(r"release [0-9a-f]+: %s, " % re.escape(release), 20):
            print(f"FAIL {n.name} did not open the rolled-out release")
            fails += 1
    t1.p.kill()
    t1.p.wait()
    print("tracker 1 killed once every node opened the release")
    done = 0
    end = time.monotonic() + 60
    for n in nodes:
        st = n.completion(max(1.0, end - time.monotonic()))
        if not st:
            print(f"FAIL {n.name} did not complete with tracker 1 gone")
            fails += 1
            continue
        done += 1
        fails += check_files(n, hub)
    if not (t2.wait_for(r"manifest registered %s " % re.escape(release), 1) or
            t2.wait_for(r"manifest registered %s " % re.escape(release), 1, stdout=True)):
        print("FAIL tracker 2 never registered the release's manifest")
        fails += 1
    print(f"{done}/{len(nodes)} complete; origin egress {hub.egress() / hub.size:.3f}x")
    return shoalproc.finish(fails, nodes, procs, tail=40)


def case_tracker_order(tmp):
    names = [f"o{i}" for i in range(4)]
    k = make_keys(tmp, names)
    hub = Hub(tmp, "16M")
    t1, a1 = start_tracker(k)
    t2, a2 = start_tracker(k)
    mf, mid = publish(k, hub, tmp)
    hub.reset()
    hub.add_faults([{"kind": "slow", "bps": 4000000}])
    nodes = []
    for i, n in enumerate(names):
        order = [a1, a2] if i % 2 == 0 else [a2, a1]
        nodes.append(Node(n, k, tmp, hub, ["--tracker", order[0], "--tracker", order[1],
                                           "--manifest", mf, "--pull", mid]))
    fails = 0
    end = time.monotonic() + 60
    for n in nodes:
        if not n.completion(max(1.0, end - time.monotonic())):
            print(f"FAIL {n.name} did not complete")
            fails += 1
    said = set()
    for n in nodes:
        m = n.wait_for(r"origin leases from tracker (\S+) ", 1)
        if m:
            said.add(m.group(1))
    print(f"lease tracker named by the nodes: {sorted(said)}")
    if len(said) != 1:
        print("FAIL the nodes did not all name one lease tracker for the release")
        fails += 1
    fails += egress_over(hub, 1.2)
    return shoalproc.finish(fails, nodes, procs, tail=30)


def case_slow_lease(tmp):
    names = ["s0", "s1"]
    k = make_keys(tmp, names)
    hub = Hub(tmp, "32M")
    # Spans as asked for (not shrunk to a share): one node leases the
    # whole release at once and fetches it for several lease times.
    trk, taddr = start_tracker(k, extra=["--lease-ms", "1000", "--fetcher-leases", "0"])
    mf, mid = publish(k, hub, tmp, taddr)
    hub.reset()
    # Each request (one file's run) at 1.5 MB/s: a chunk (~1 MiB) lands
    # within the lease time, a file's run of them does not.
    hub.add_faults([{"kind": "slow", "bps": 1500000}])
    nodes = [Node(n, k, tmp, hub, ["--tracker", taddr, "--manifest", mf, "--pull", mid])
             for n in names]
    fails = 0
    end = time.monotonic() + 60
    for n in nodes:
        if not n.completion(max(1.0, end - time.monotonic())):
            print(f"FAIL {n.name} did not complete")
            fails += 1
    fails += egress_over(hub, 1.1, ": leased chunks fetched twice")
    return shoalproc.finish(fails, nodes, procs, tail=30)


def case_interval(tmp):
    """A node alone in its zone imports every chunk (the small-zone split)
    for now, so the tracker asks it to announce again soon rather than at
    the 60 s interval, and the node takes that interval (logged). When a
    second node joins the zone, the first learns its smaller share (origin
    fetcher only) from its next announce, before it completes. Before, it
    kept the larger share until an announce 60 s on (or its completion)."""
    k = make_keys(tmp, ["a0", "a1"])
    hub = Hub(tmp, "32M")
    trk, taddr = start_tracker(k, extra=["--origin-fetchers", "1", "--min-fetchers", "0",
                                         "--importers", "1", "--announce-interval-ms", "60000",
                                         "--node-ttl-ms", "120000"])
    mf, mid = publish(k, hub, tmp, taddr)
    hub.reset()
    # Each request at 1 MB/s: the pull lasts well beyond the first
    # shorter intervals.
    hub.add_faults([{"kind": "slow", "bps": 1000000}])
    args = ["--tracker", taddr, "--zone", "za", "--manifest", mf, "--pull", mid]
    a0 = Node("a0", k, tmp, hub, args)
    fails = 0
    if not a0.wait_for(r"tracker role: origin fetcher and importer of share 0/1 for zone za",
                       WAIT_S):
        print("FAIL a0 was not told to import every chunk while alone in its zone")
        return shoalproc.finish(1, [a0], procs)
    m = a0.wait_for(r"tracker \S+: announcing every (\d+) ms \(asked for (\d+) ms", 5)
    if not m or not 200 <= int(m.group(1)) < 60000:
        print(f"FAIL a0 did not log a shorter announce interval: {m and m.group(0)}")
        fails += 1
    else:
        print(f"a0: {m.group(0)}")
    a1 = Node("a1", k, tmp, hub, args)
    nodes = [a0, a1]
    for n in nodes:
        if not n.completion(WAIT_S):
            print(f"FAIL {n.name} did not complete")
            fails += 1
    # Its roles in order: origin fetcher (holding nothing yet: the full
    # share, none), importer of every chunk (alone, holding some), then
    # origin fetcher again once a1 took the importer rank.
    lines = a0.log().splitlines()
    split = [i for i, ln in enumerate(lines) if "importer of share 0/1 for zone za" in ln]
    told = [i for i, ln in enumerate(lines) if "tracker role: origin fetcher for zone za" in ln
            and split and i > split[0]]
    done = [i for i, ln in enumerate(lines) if re.search(r"complete: \d+ bytes", ln)]
    if not told or not done or told[0] > done[0]:
        print("FAIL a0 did not learn its smaller share (origin fetcher only) before it "
              "completed")
        fails += 1
    fails += egress_over(hub, 1.2)
    return shoalproc.finish(fails, nodes, procs)


def case_seeded(tmp):
    """A fleet that joins a complete copy (a seed) takes nothing from the
    origin: a complete holder means nobody is told to fetch at once, and
    after its origin delay a node leases only what its peers lack (nothing).
    Before, the fetchers leased spans at once, before their peers' HAVEs
    came: a simulated 200-node fleet with 20 seeds took 0.61x the release
    from the origin."""
    names = ["seed", "p0", "p1", "p2", "p3"]
    k = make_keys(tmp, names)
    hub = Hub(tmp, "16M")
    trk, taddr = start_tracker(k, extra=["--origin-fetchers", "2"])
    mf, mid = publish(k, hub, tmp, taddr)
    hub.reset()
    seed = Node("seed", k, tmp, hub, ["--tracker", taddr, "--manifest", mf, "--pull", mid])
    fails = 0
    if not seed.completion(WAIT_S):
        print("FAIL the seed did not complete")
        return 1 + shoalproc.finish(0, [seed])
    hub.reset()
    # The seed announces itself complete at once (SOON_GAP_MS later at the
    # most); give that time to reach the tracker.
    time.sleep(1.0)
    pullers = [Node(n, k, tmp, hub, ["--tracker", taddr, "--manifest", mf, "--pull", mid])
               for n in names[1:]]
    end = time.monotonic() + WAIT_S
    for n in pullers:
        if not n.completion(max(1.0, end - time.monotonic())):
            print(f"FAIL {n.name} did not complete")
            fails += 1
    egress = hub.egress()
    print(f"origin egress with a seed: {egress} bytes ({egress / hub.size:.3f}x the release)")
    if egress > 0:
        print("FAIL the pullers took bytes from the origin while a seed had them all")
        fails += 1
    return shoalproc.finish(fails, [seed] + pullers)


shoalproc.main(CASE, {"swarm8": case_swarm8, "restart": case_restart,
                      "tracker_down": case_tracker_down, "roles": case_roles,
                      "two_trackers": case_two_trackers, "tracker_order": case_tracker_order,
                      "slow_lease": case_slow_lease, "seeded": case_seeded,
                      "interval": case_interval},
               "shoal-rollout-", scan_sanitizers=True)
