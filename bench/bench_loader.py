# SPDX-License-Identifier: MIT
"""Loader hand-off benchmarks (suite 'loader'), with real shoald processes.

Usage: bench_loader.py SHOALD SHOAL NODE_DIR [--read-gib N] [--shard-mib N]

--shard-mib sets the size of each of the 8 shards of the first-shard pull
(default 32); the figures in README use the default.

Prints, each on its own line:
  BENCH loader_handoff_p50_us <v> us
      from the daemon's CLOCK_MONOTONIC stamp when the store reported a file
      ready (its last chunk verified and its whole sha256 matched; this is
      before the fsync and the renames that publish it in the HF cache,
      which the loader does not wait for) to the Python loader holding that
      file's descriptor (same clock, same host); median over every file
      handed live to two loaders watching a multi-node pull. The loader's
      stamp is taken as its recvmsg returns the descriptor.
  BENCH loader_handoff_daemon_p50_us <v> us
      the daemon's share of that: from the same stamp to its sendmsg of the
      descriptor returning (from its log), median over the same hand-offs.
  BENCH first_shard_fraction <v> ratio
      a loader asks a node that holds nothing for 8 shards in order (which
      starts the pull from two seeds): time to its first shard over the time
      to its last (1/8 would be perfect); both are when the loader holds
      the descriptor, so the cache publication after it is not counted.
  BENCH loader_read_gbps <v> GB/s
      the Python client reading every tensor of a 2 GiB release (8 shards,
      --store memory) as numpy arrays from the received descriptors: wall
      time from the request to the last tensor read in full (an xor-reduce
      over every byte), 1 GB = 1e9 bytes.
"""
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import threading
import time

import numpy as np

SHOALD, SHOAL, NODE_DIR = sys.argv[1:4]
READ_GIB = float(sys.argv[sys.argv.index("--read-gib") + 1]) if "--read-gib" in sys.argv else 2.0
SHARD_MIB = int(sys.argv[sys.argv.index("--shard-mib") + 1]) if "--shard-mib" in sys.argv else 32
sys.path.insert(0, NODE_DIR)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import shoalproc  # noqa: E402
import shoal_loader  # noqa: E402

def run(*args):
    return shoalproc.run(SHOAL, *args, timeout=600)


class Node(shoalproc.Proc):
    def __init__(self, name, args, start_timeout=300):
        super().__init__(shoalproc.shoald_argv(SHOALD, name, args), name=name)
        m = self.wait_for(r"listening on (127\.0\.0\.1:\d+)", start_timeout)
        if not m:
            sys.stderr.write(self.log())
            sys.exit(f"{name}: did not start")
        self.addr = m.group(1)

    def log(self):
        return super().log() + "\n"

    def stop(self, timeout=30):
        return super().stop(timeout)


def write_shards(root, nshards, shard_bytes, seed):
    """Safetensors shards of random bf16/f32 tensors (every tensor a multiple
    of 8 bytes), plus a config.json."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    names = []
    for i in range(nshards):
        per = shard_bytes // 4 // 8 * 8
        hdr, off = {}, 0
        for j, dt in enumerate(("BF16", "F32", "BF16", "F32")):
            hdr[f"layers.{i}.w{j}"] = {"dtype": dt, "shape": [per // (2 if dt == "BF16" else 4)],
                                       "data_offsets": [off, off + per]}
            off += per
        h = json.dumps(hdr).encode()
        h += b" " * (-len(h) % 8)
        name = f"model-{i + 1:05d}-of-{nshards:05d}.safetensors"
        with open(os.path.join(root, name), "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h)
            for _ in range(4):
                f.write(rng.bytes(per))
        names.append(name)
    with open(os.path.join(root, "config.json"), "w") as f:
        f.write('{"model_type": "bench"}\n')
    return names


def keys(tmp, names):
    return shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL, ("cluster", "publisher", *names),
                               names, timeout=600)


def build_manifest(k, repo, out):
    o = run("manifest", "build", repo, "--repo", "org/bench", "--commit", "cd" * 20,
            "--key", k("publisher"), "--out", out)
    return re.search(r"^id ([0-9a-f]{64})$", o, re.M).group(1)


def node_args(k, name, tmp, extra=()):
    return ["--node-key", k(name), "--cred", k(name) + ".cred",
            "--cluster-keys", k("cluster") + ".pub", "--publisher-keys", k("publisher") + ".pub",
            "--cache-dir", os.path.join(tmp, "cache-" + name), "--reconnect-ms", "300",
            "--log-level", os.environ.get("SHOAL_BENCH_LOG_LEVEL", "info"), *extra]


def bench_pull(tmp):
    """Handoff latency and first-shard fraction on a 3-node pull."""
    k = keys(tmp, ["a", "c", "b"])
    repo = os.path.join(tmp, "repo-pull")
    shards = write_shards(repo, 8, SHARD_MIB << 20, 1)
    mf = os.path.join(tmp, "pull.manifest")
    mid = build_manifest(k, repo, mf)
    a = Node("seed-a", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    c = Node("seed-c", node_args(k, "c", tmp, ["--manifest", mf, "--seed-dir", repo]))
    sock = os.path.join(tmp, "b.sock")
    b = Node("loader-node", node_args(k, "b", tmp, ["--peer", a.addr, "--peer", c.addr,
                                                    "--loader-socket", sock]))
    time.sleep(1.0)  # let the sessions come up: the pull starts with the request
    lat, second = [], {}

    def watcher():
        # A second loader, on every file, once the release is open.
        time.sleep(0.3)
        try:
            with shoal_loader.Client(sock, timeout=300) as cl:
                for f in cl.want(mid):
                    if f.ready_ns:
                        second.setdefault("lat", []).append(f.received_ns - f.ready_ns)
                    f.close()
        except shoal_loader.LoaderError as e:
            second["err"] = str(e)

    t = threading.Thread(target=watcher)
    with shoal_loader.Client(sock, timeout=300) as cl:
        t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        it = cl.want(mid, shards)
        t.start()
        first = last = None
        n = 0
        for f in it:
            now = f.received_ns
            first = first or now
            last = now
            n += 1
            if f.ready_ns:
                lat.append(f.received_ns - f.ready_ns)
            f.close()
    t.join(300)
    lat += second.get("lat", [])
    for x in (b, a, c):
        x.stop()
    daemon = [float(v) for v in
              re.findall(r"descriptor of file \d+ sent (\d+) us after", b.log())]
    if os.environ.get("SHOAL_BENCH_VERBOSE"):
        sys.stderr.write(b.log())
    if n != len(shards) or first is None:
        sys.stderr.write(b.log())
        sys.exit(f"loader got {n} of {len(shards)} shards")
    print(f"# first shard held at {(first - t0) / 1e6:.0f} ms, last at {(last - t0) / 1e6:.0f} ms")
    return lat, daemon, (first - t0) / (last - t0), (last - t0) / 1e9


def bench_read(tmp):
    """Reading a 2 GiB release through the loader socket (memory store)."""
    os.makedirs(os.path.join(tmp, "r"))
    k = keys(os.path.join(tmp, "r"), ["s"])
    repo = os.path.join(tmp, "repo-read")
    write_shards(repo, 8, int(READ_GIB * (1 << 30)) // 8, 2)
    mf = os.path.join(tmp, "read.manifest")
    mid = build_manifest(k, repo, mf)
    sock = os.path.join(tmp, "s.sock")
    s = Node("seed", node_args(k, "s", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--store", "memory", "--loader-socket", sock]))
    shutil.rmtree(repo)  # only the daemon's copy (in memfds) remains
    total, acc = 0, 0
    with shoal_loader.Client(sock, timeout=300) as cl:
        t0 = time.monotonic()
        for f in cl.want(mid):
            if not f.path.endswith(".safetensors"):
                f.close()
                continue
            for _, a in f.tensors():
                v = a.reshape(-1).view(np.uint64)
                acc ^= int(np.bitwise_xor.reduce(v))
                total += a.nbytes
            del a, v
            f.close()
        dt = time.monotonic() - t0
    s.stop()
    return total, dt, acc


def main():
    # Loader threads wait in recvmsg; a waking one should not queue behind
    # the default 5 ms GIL switch interval of the log reader threads.
    sys.setswitchinterval(0.0002)
    tmp = tempfile.mkdtemp(prefix="shoal-bench-loader-")
    try:
        lat, daemon, frac, pull_s = bench_pull(tmp)
        lat.sort()
        p50 = lat[len(lat) // 2] / 1000 if lat else float("nan")
        print(f"# handoff samples {len(lat)}: min {lat[0] / 1000:.0f} us, "
              f"max {lat[-1] / 1000:.0f} us; 8 x {SHARD_MIB} MiB pull took {pull_s:.2f} s" if lat else
              "# no live hand-off samples")
        print(f"BENCH loader_handoff_p50_us {p50:.0f} us")
        daemon.sort()
        if daemon:
            print(f"# daemon side, {len(daemon)} samples: min {daemon[0]:.0f} us, "
                  f"max {daemon[-1]:.0f} us")
        d50 = daemon[len(daemon) // 2] if daemon else float("nan")
        print(f"BENCH loader_handoff_daemon_p50_us {d50:.0f} us")
        print(f"BENCH first_shard_fraction {frac:.3f} ratio")
        shutil.rmtree(tmp)
        os.makedirs(tmp)
        total, dt, _ = bench_read(tmp)
        print(f"# read {total / 2**30:.2f} GiB of tensors in {dt:.2f} s")
        print(f"BENCH loader_read_gbps {total / dt / 1e9:.2f} GB/s")
    finally:
        shoalproc.kill_all()
        shutil.rmtree(tmp, ignore_errors=True)


main()
