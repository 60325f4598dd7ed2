# SPDX-License-Identifier: MIT
"""Swarm benchmarks: real shoald processes on loopback, against a baseline.

Usage: bench_swarm.py SHOALD SHOAL BLAKE2B_RATE HUBDIR

Figures (MB = 1e6 bytes), each printed as `BENCH <name> <value> <unit>`:
  blake2b_mbps              one core of BLAKE2b-256 (BLAKE2B_RATE, the same
                            libsodium code the daemon verifies chunks with),
                            measured in this run: the baseline. Timed in CPU
                            time, so other work on the machine does not lower
                            it (it would lower the transfers, not flatter
                            the ratios).
  loopback_plain_mbps       a 2 GiB release (genrepo.py, 8 bf16 shards, the
                            default 256K/1M/4M chunking) moved from a seed to a
                            puller, both --no-encrypt. The time runs from the
                            puller's exec to its exit with --exit-when-complete,
                            so it includes process start-up, the handshake,
                            fetching and verifying the signed manifest from the
                            seed, every chunk's transfer, BLAKE2b check and
                            pwrite, the whole-file SHA-256 checks and linking
                            into the HF cache layout. Best of SHOAL_BENCH_RUNS
                            runs; the seed's files are in the page cache (read
                            once first), the puller's cache is a fresh
                            directory on the same filesystem, and dirty pages
                            are synced before each run. Memory is taken as the
                            machine has it (no pre-faulting: see below).
  loopback_encrypted_mbps   the same with sealed sessions (AES-256-GCM).
  loopback_plain_ratio      loopback_plain_mbps / blake2b_mbps (target >= 0.7)
  loopback_encrypted_ratio  loopback_encrypted_mbps / blake2b_mbps (>= 0.6)
  loopback_{plain,encrypted}_{puller,seed}_cpu_s_per_gb
                            context, not targets: each side's CPU seconds
                            (user + system) per GB moved, the least over the
                            runs. On two shared cores these, not the rates,
                            compare between builds; the per-run lines on
                            stderr also give the load average at each start.
  pagecache_write_mbps      context, not a target: writing as many fresh
                            bytes into a new file with 1 MiB pwrites, as the
                            puller's store must; on a VM that hands freed
                            memory back to its host, this and not BLAKE2b can
                            be the ceiling of the loopback figures.
  node_rss_mib              a seed's peak RSS (VmHWM) beyond an idle daemon's
                            (same binary and options, no release, no peers;
                            measured in this run), while it holds a release of
                            >= 100,000 chunks (min 256 / avg 1K / max 4K) and
                            32 pullers fetch all of it from it at once
                            (target < 64). The seed is restarted on its
                            completed store before the pullers start, so the
                            peak covers holding and serving, not the import.
                            node_rss_pullers and node_rss_chunks say how many
                            pullers and chunks the figure was measured with.

Cold memory: the development VM reports freed guest pages to its host
(virtio-balloon free page reporting, about 2 s after they are freed), and
the guest's next touch of such a page faults on the host. The puller must
fill 2 GiB of new page cache, and a page-cache write runs at 0.15 s of CPU
per GB on pages the host still backs but 0.9-1.3 s/GB on reported ones
(the host fault counts as the writer's CPU time), so the figures spread
widely from run to run. Pre-faulting was tried and is not done: touching
3 GiB of anonymous memory and freeing it just before the puller starts,
or freeing it 256 MiB at a time just ahead of what the puller had
written, gave no better figures over several runs on this machine. The
per-run lines on stderr give each side's CPU seconds per GB.

Environment knobs, for quick runs while developing: SHOAL_BENCH_SIZE (release
size, default 2G), SHOAL_BENCH_RUNS (default 2), SHOAL_BENCH_PULLERS (default
32), SHOAL_BENCH_SMALL_SIZE (the many-chunk release, default 120M),
SHOAL_BENCH_ONLY (loopback or rss), SHOAL_BENCH_DAEMON_ARGS (extra options for
every shoald, e.g. "--compress-level 0"; the figures are of the defaults
otherwise). Progress goes to stderr. Every process
started here is killed and the work directory removed at the end, also on
failure or SIGTERM. Exit status 1 if a transfer fails or a check does not
hold (the figures measured so far are still printed).
"""
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import shoalproc  # noqa: E402

SHOALD, SHOAL, B2RATE, HUBDIR = sys.argv[1:5]
SIZE = os.environ.get("SHOAL_BENCH_SIZE", "2G")
RUNS = int(os.environ.get("SHOAL_BENCH_RUNS", "2"))
PULLERS = int(os.environ.get("SHOAL_BENCH_PULLERS", "32"))
SMALL_SIZE = os.environ.get("SHOAL_BENCH_SMALL_SIZE", "120M")
ONLY = os.environ.get("SHOAL_BENCH_ONLY", "")
DAEMON_ARGS = os.environ.get("SHOAL_BENCH_DAEMON_ARGS", "").split()
MIN_CHUNKS = 100000
PY = "/usr/bin/python3"
TRANSFER_TIMEOUT_S = 240
RSS_TIMEOUT_S = 300

T0 = time.monotonic()


def say(msg):
    sys.stderr.write("[%6.1fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stderr.flush()


def bench(name, value, unit):
    print("BENCH %s %s %s" % (name, value, unit), flush=True)


class Fail(Exception):
    pass


def run(argv, timeout=600):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise Fail("%s failed (exit %d): %s" % (" ".join(argv), r.returncode, r.stderr))
    return r.stdout


def shoal(*args):
    return run([SHOAL, *args])


def status_kib(pid, field):
    """A VmXXX field of /proc/PID/status in KiB, or None once it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_s(pid):
    """utime + stime of a live process, in seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def sample_peak(p, peak):
    """Keeps the largest VmHWM of process |p| in peak[0] until it exits."""
    while p.poll() is None:
        v = status_kib(p.pid, "VmHWM")
        if v:
            peak[0] = max(peak[0], v)
        time.sleep(0.1)


class Node(shoalproc.Proc):
    """A shoald on 127.0.0.1:0; threads keep its output lines."""

    def __init__(self, name, args, wait_listen=True):
        self.t_start = time.monotonic()
        super().__init__(shoalproc.shoald_argv(SHOALD, name, args), name=name,
                         stdin=subprocess.DEVNULL)
        self.addr = None
        if wait_listen:
            m = self.wait_for(r"listening on (127\.0\.0\.1:\d+)", 300)
            if not m:
                self.dump()
                raise Fail("%s: did not start listening" % name)
            self.addr = m.group(1)

    def dump(self, tail=40):
        super().dump(tail)


kill_all = shoalproc.kill_all


def make_keys(tmp, names, roots=True):
    """Node keys and credentials for |names|; with |roots|, first the cluster
    and publisher keys they are issued under."""
    keys = os.path.join(tmp, "keys")
    os.makedirs(keys, exist_ok=True)
    k = lambda n: os.path.join(keys, n)
    for n in (("cluster", "publisher") if roots else ()) + tuple(names):
        shoal("keygen", k(n))
    for n in names:
        shoal("cred", "issue", "--cluster-key", k("cluster"), "--node", k(n) + ".pub",
              "--out", k(n) + ".cred")
    return k


def node_args(k, name, cache, extra=()):
    # --no-origin: the seed holds everything, and no run may reach out to
    # the real Hub (no tracker either, so no leases would be granted).
    return ["--node-key", k(name), "--cred", k(name) + ".cred",
            "--cluster-keys", k("cluster") + ".pub",
            "--publisher-keys", k("publisher") + ".pub",
            "--cache-dir", cache, "--no-origin", *DAEMON_ARGS, *extra]


def gen_release(tmp, tag, size, shards):
    """genrepo.py into tmp/gen-TAG; returns (release dir, files list). The
    release dir hard-links the commit's files without genrepo's .files.json,
    so it is exactly the repo's content."""
    root = os.path.join(tmp, "gen-" + tag)
    commit = run([PY, os.path.join(HUBDIR, "genrepo.py"), "--size", size,
                  "--shards", str(shards), root, "org/" + tag]).strip().split()[-1]
    src = os.path.join(root, "models", "org", tag, "commits", commit)
    with open(os.path.join(src, ".files.json")) as f:
        files = json.load(f)["files"]
    rel = os.path.join(tmp, "release-" + tag)
    for ent in files:
        dst = os.path.join(rel, ent["path"])
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.link(os.path.join(src, ent["path"]), dst)
    return rel, commit, files


def build_manifest(k, rel, tag, commit, out, extra=()):
    text = shoal("manifest", "build", rel, "--repo", "org/" + tag, "--commit", commit,
                 "--key", k("publisher"), "--out", out, *extra)
    mid = re.search(r"^id ([0-9a-f]{64})$", text, re.M)
    if not mid:
        raise Fail("manifest build printed no id:\n" + text)
    return mid.group(1), text


def read_all(path):
    """Reads every file under |path| (page cache warm-up)."""
    n = 0
    for dirpath, _, names in os.walk(path):
        for nm in names:
            full = os.path.join(dirpath, nm)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            with open(full, "rb", buffering=0) as f:
                while True:
                    b = f.read(1 << 22)
                    if not b:
                        break
                    n += len(b)
    return n


def write_floor(tmp, total):
    """MB/s of writing |total| fresh bytes into a new file in |tmp| with 1 MiB
    pwrites, after a sync, as the puller's store does: the page-cache floor
    under any transfer on this machine. On a VM whose freed memory goes back
    to the host (virtio-balloon free page reporting), every freshly allocated
    page faults on the host first, and this is far below memcpy speed."""
    block = os.urandom(1 << 20)
    path = os.path.join(tmp, "write-floor")
    os.sync()
    t0 = time.monotonic()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        off = 0
        while off < total:
            n = min(len(block), total - off)
            os.pwrite(fd, block[:n] if n < len(block) else block, off)
            off += n
    finally:
        os.close(fd)
    dt = time.monotonic() - t0
    os.unlink(path)
    return total / dt / 1e6


def check_snapshot(cache, tag, commit, files, full):
    """The puller's snapshot has every file, linked to the blob named by the
    Hub sha256 the generator recorded; with |full|, the bytes are hashed
    here too."""
    import hashlib
    snap = os.path.join(cache, "models--org--" + tag, "snapshots", commit)
    for ent in files:
        p = os.path.join(snap, ent["path"])
        if not os.path.islink(p):
            raise Fail("puller: %s is not a snapshot symlink" % ent["path"])
        if os.path.getsize(p) != ent["size"]:
            raise Fail("puller: %s has %d bytes, want %d"
                       % (ent["path"], os.path.getsize(p), ent["size"]))
        if full:
            h = hashlib.sha256()
            with open(p, "rb", buffering=0) as f:
                while True:
                    b = f.read(1 << 22)
                    if not b:
                        break
                    h.update(b)
            if h.hexdigest() != ent["sha256"]:
                raise Fail("puller: %s differs from the source" % ent["path"])


def blake2b_rate():
    out = run([B2RATE])
    m = re.search(r"^BENCH blake2b_mbps ([0-9.]+) MB/s$", out, re.M)
    if not m:
        raise Fail("blake2b_rate printed no figure:\n" + out)
    return float(m.group(1))


def pull_once(k, mode, label, seed, mid, pull_cache, total, commit, files):
    """One puller run from |seed|; returns (MB/s, puller CPU s/GB, seed CPU
    s/GB), or None (logged) when it did not complete with the right
    cipher."""
    extra = ["--no-encrypt"] if mode == "plain" else []
    shutil.rmtree(pull_cache, ignore_errors=True)
    os.sync()
    load = os.getloadavg()[0]
    seed_cpu0 = cpu_s(seed.p.pid)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    b = Node("puller-%s-%s" % (mode, label),
             node_args(k, "puller", pull_cache,
                       ["--peer", seed.addr, "--pull", mid,
                        "--exit-when-complete", *extra]), wait_listen=False)
    # Block in waitpid (no polling delay in the figure); a timer kills
    # a puller that hangs, and a sampler keeps its peak RSS.
    watchdog = threading.Timer(TRANSFER_TIMEOUT_S, b.p.kill)
    peak = [0]
    sampler = threading.Thread(target=sample_peak, args=(b.p, peak), daemon=True)
    watchdog.start()
    sampler.start()
    rc = b.p.wait()
    dt = time.monotonic() - t0
    watchdog.cancel()
    sampler.join()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    seed_cpu = cpu_s(seed.p.pid) - seed_cpu0
    b.drain(5)
    if rc != 0:
        b.dump()
        seed.dump()
        say("%s %s: puller did not complete (exit %s)" % (mode, label, rc))
        b.stop()
        return None
    want = "none" if mode == "plain" else "aes256gcm|xchacha20poly1305"
    cm = re.search(r"authenticated: .* cipher (\S+)", b.log())
    if not cm or not re.fullmatch(want, cm.group(1)):
        say("%s %s: session cipher is %s, want %s"
            % (mode, label, cm.group(1) if cm else "?", want))
        return None
    check_snapshot(pull_cache, "big", commit, files, full=True)
    mbps = total / dt / 1e6
    pcpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    say("%s %s: %d bytes in %.2f s = %.1f MB/s (cipher %s; puller cpu %.2f s = %.2f s/GB, "
        "seed cpu %.2f s = %.2f s/GB, puller VmHWM %.0f MiB; load average %.1f at the start)"
        % (mode, label, total, dt, mbps, cm.group(1), pcpu, pcpu / (total / 1e9), seed_cpu,
           seed_cpu / (total / 1e9), peak[0] / 1024, load))
    return mbps, pcpu / (total / 1e9), seed_cpu / (total / 1e9)


def loopback(tmp, k, b2):
    say("generating a %s release (genrepo.py, 8 shards)" % SIZE)
    rel, commit, files = gen_release(tmp, "big", SIZE, 8)
    total = sum(e["size"] for e in files)
    mf = os.path.join(tmp, "big.manifest")
    say("building its manifest (default chunk params)")
    mid, _ = build_manifest(k, rel, "big", commit, mf)
    seed_cache = os.path.join(tmp, "cache-seed")
    pull_cache = os.path.join(tmp, "cache-puller")
    fails = 0
    figures = {}
    for mode in ("plain", "encrypted"):
        extra = ["--no-encrypt"] if mode == "plain" else []
        # The first seed imports the release into its store; the second finds
        # it complete and starts at once.
        say("%s: starting the seed" % mode)
        seed = Node("seed-" + mode, node_args(k, "seed", seed_cache,
                                              ["--manifest", mf, "--seed-dir", rel, *extra]))
        read_all(seed_cache)
        if mode == "plain":
            floor = write_floor(tmp, total)
            say("page-cache write floor: %.1f MB/s" % floor)
            bench("pagecache_write_mbps", "%.1f" % floor, "MB/s")
        best = 0.0
        cpu = None
        for r in range(RUNS):
            got = pull_once(k, mode, "run %d" % r, seed, mid, pull_cache, total, commit,
                            files)
            if got is None:
                fails += 1
                continue
            best = max(best, got[0])
            # Each side's least CPU per GB over the runs: the figures that
            # compare between builds when other work shares the cores and
            # the wall-clock rates swing with it.
            cpu = got[1:] if cpu is None else (min(cpu[0], got[1]), min(cpu[1], got[2]))
        if seed.stop() != 0:
            say("%s: seed did not shut down cleanly" % mode)
            fails += 1
        if best > 0:
            figures[mode] = best
            bench("loopback_%s_mbps" % mode, "%.1f" % best, "MB/s")
            bench("loopback_%s_ratio" % mode, "%.3f" % (best / b2), "ratio")
            bench("loopback_%s_puller_cpu_s_per_gb" % mode, "%.2f" % cpu[0], "s/GB")
            bench("loopback_%s_seed_cpu_s_per_gb" % mode, "%.2f" % cpu[1], "s/GB")
    shutil.rmtree(pull_cache, ignore_errors=True)
    shutil.rmtree(seed_cache, ignore_errors=True)
    if figures.get("plain", 1e9) < 0.7 * b2:
        say("loopback_plain_ratio is under its target 0.7")
    if figures.get("encrypted", 1e9) < 0.6 * b2:
        say("loopback_encrypted_ratio is under its target 0.6")
    return fails


def rss(tmp, k):
    names = ["p%d" % i for i in range(PULLERS)]
    make_keys(tmp, names, roots=False)
    say("generating a %s release for the many-chunk manifest" % SMALL_SIZE)
    rel, commit, files = gen_release(tmp, "small", SMALL_SIZE, 2)
    mf = os.path.join(tmp, "small.manifest")
    mid, text = build_manifest(k, rel, "small", commit, mf,
                               ["--min", "256", "--avg", "1K", "--max", "4K"])
    m = re.search(r"(\d+) chunks", text)
    nchunks = int(m.group(1)) if m else None
    say("manifest %s: %s chunks, %d bytes, manifest file %d bytes"
        % (mid[:12], nchunks, sum(e["size"] for e in files), os.path.getsize(mf)))
    if nchunks is not None and nchunks < MIN_CHUNKS:
        raise Fail("the release has %d chunks, fewer than %d: raise SHOAL_BENCH_SMALL_SIZE"
                   % (nchunks, MIN_CHUNKS))
    fails = 0
    seed_cache = os.path.join(tmp, "cache-rss-seed")

    # Baseline: the same binary and options, holding nothing, with no peer.
    idle = Node("idle", node_args(k, "seed", os.path.join(tmp, "cache-idle")))
    time.sleep(1.0)
    idle_kib = status_kib(idle.p.pid, "VmHWM")
    idle.stop()
    say("idle daemon: VmHWM %.1f MiB" % (idle_kib / 1024))

    say("seed importing the release")
    imp = Node("rss-import", node_args(k, "seed", seed_cache,
                                       ["--manifest", mf, "--seed-dir", rel]))
    import_kib = status_kib(imp.p.pid, "VmHWM")
    if imp.stop() != 0:
        raise Fail("importing seed did not shut down cleanly")
    say("importing seed: VmHWM %.1f MiB (not counted)" % (import_kib / 1024))

    seed = Node("rss-seed", node_args(k, "seed", seed_cache, ["--manifest", mf]))
    held_kib = status_kib(seed.p.pid, "VmRSS")
    say("seed restarted on its complete store: VmRSS %.1f MiB holding the manifest"
        % (held_kib / 1024))
    pullers = []
    t0 = time.monotonic()
    for i, n in enumerate(names):
        pullers.append(Node("puller-%s" % n,
                            node_args(k, n, os.path.join(tmp, "cache-rss-" + n),
                                      ["--peer", seed.addr, "--pull", mid,
                                       "--exit-when-complete"]), wait_listen=False))
    # Sample while they run: the seed's peak is what counts; the pullers'
    # peaks are reported for context.
    seed_peak = 0
    puller_peak = 0
    end = t0 + RSS_TIMEOUT_S
    while time.monotonic() < end:
        v = status_kib(seed.p.pid, "VmHWM")
        if v:
            seed_peak = max(seed_peak, v)
        live = 0
        for pn in pullers:
            if pn.p.poll() is None:
                live += 1
                v = status_kib(pn.p.pid, "VmHWM")
                if v:
                    puller_peak = max(puller_peak, v)
        if live == 0:
            break
        time.sleep(0.25)
    dt = time.monotonic() - t0
    v = status_kib(seed.p.pid, "VmHWM")
    if v:
        seed_peak = max(seed_peak, v)
    seed_cpu = cpu_s(seed.p.pid)
    done = 0
    for pn in pullers:
        if pn.p.poll() is None:
            pn.stop()
        elif pn.p.returncode == 0:
            done += 1
    say("%d of %d pullers completed in %.1f s (seed cpu %.1f s); seed VmHWM %.1f MiB, "
        "largest puller VmHWM %.1f MiB"
        % (done, len(pullers), dt, seed_cpu, seed_peak / 1024, puller_peak / 1024))
    if done != len(pullers):
        for pn in pullers:
            if pn.p.returncode != 0:
                pn.dump(15)
                break
        seed.dump()
        fails += 1
    else:
        check_snapshot(os.path.join(tmp, "cache-rss-" + names[-1]), "small", commit,
                       files, full=True)
    if seed.stop() != 0:
        say("rss seed did not shut down cleanly")
        fails += 1
    bench("node_rss_pullers", len(pullers), "peers")
    bench("node_rss_chunks", nchunks if nchunks is not None else 0, "chunks")
    bench("node_rss_mib", "%.1f" % ((seed_peak - idle_kib) / 1024), "MiB")
    if (seed_peak - idle_kib) / 1024 >= 64:
        say("node_rss_mib is over its target 64")
    return fails


def main():
    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    tmp = tempfile.mkdtemp(prefix="shoal-bench-swarm-", dir="/tmp")
    fails = 0
    try:
        say("workdir %s" % tmp)
        b2 = blake2b_rate()
        bench("blake2b_mbps", "%.1f" % b2, "MB/s")
        k = make_keys(tmp, ["seed", "puller"])
        if ONLY in ("", "loopback"):
            fails += loopback(tmp, k, b2)
        if ONLY in ("", "rss"):
            fails += rss(tmp, k)
    except Fail as e:
        say("FAIL: %s" % e)
        fails += 1
    finally:
        kill_all()
        shutil.rmtree(tmp, ignore_errors=True)
    say("done in %.0f s%s" % (time.monotonic() - T0, ", with failures" if fails else ""))
    sys.exit(1 if fails else 0)


main()
