# SPDX-License-Identifier: MIT
"""Child-process harness shared by the Python integration tests, the demo and
the benchmarks (standard library only).

A Proc starts a child with its stdout and stderr piped, and one thread per
stream collects the lines, so a chatty child never blocks on a full pipe and
a test can look for a log line without racing the child. Every Proc is kept
in the module-level `procs` list, so a test's `finally:` can kill_all()
whatever is still running however the test ended. run() runs a command to
completion and exits the script with its stderr when it fails; make_keys()
makes the node keys and cluster credentials most cases start from.
main() runs one named case of a test script and cleans up after it.

Every shoald started here gets a control socket of its own in the test's
directory (shoald_argv()): without one, a daemon running as root binds
/run/shoald/shoald.sock, and a second test daemon, a parallel test run or
the host's own shoald would then make it exit "another shoald is answering
there". Likewise a --state-dir in the test's directory, so no test writes
to /var/lib/shoald or ~/.local/state.
"""
import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

# Every Proc ever started here, in start order; kill_all() walks it.
# The daemons and the CLI read the token huggingface_hub's login leaves
# ($HF_TOKEN_PATH, else $HF_HOME/token, else ~/.cache/huggingface/token):
# one on the machine running the tests must not reach them, nor one set
# under $HF_TOKEN's older name. Cases that test those set the variables
# for their own processes.
os.environ["HF_TOKEN_PATH"] = "/nonexistent/shoal-tests/token"
os.environ.pop("HUGGING_FACE_HUB_TOKEN", None)

procs = []

# Where shoald_argv() puts control sockets: main()'s test directory, else a
# directory of our own made on first use and removed at exit.
ctl_dir = None
_ctl_seq = [0]


def control_socket(name):
    """A fresh control socket path for the daemon |name|, in ctl_dir."""
    global ctl_dir
    if ctl_dir is None:
        ctl_dir = tempfile.mkdtemp(prefix="shoal-ctl-")
        atexit.register(shutil.rmtree, ctl_dir, True)
    _ctl_seq[0] += 1
    # sun_path holds 107 bytes: keep the name short.
    return os.path.join(ctl_dir, f"ctl{_ctl_seq[0]}-{name[:16]}.sock")


def state_dir():
    """The state directory every shoald started here shares (its files are
    named after each daemon's cache, so daemons do not mix): in ctl_dir,
    never the user's ~/.local/state or root's /var/lib/shoald."""
    control_socket("")  # makes ctl_dir when there is none yet
    return os.path.join(ctl_dir, "state")


def shoald_argv(shoald, name, args):
    """The command line of the shoald at |shoald| listening on 127.0.0.1:0
    with |args|, plus `--control-socket` at control_socket(name) unless
    |args| names one (or "none"), and `--state-dir` at state_dir() unless
    |args| names one."""
    extra = []
    if "--control-socket" not in args:
        extra = ["--control-socket", control_socket(name)]
    if "--state-dir" not in args:
        extra += ["--state-dir", state_dir()]
    return [shoald, "--listen", "127.0.0.1:0", *extra, *args]


class Proc:
    """A child process whose stdout (`out`) and stderr (`lines`) lines are
    collected by reader threads. |name| labels dump(); it defaults to the
    program's base name. |stdin| is passed to Popen (None inherits ours)."""

    def __init__(self, argv, env=None, name=None, stdin=None):
        self.argv = list(argv)
        self.name = name or os.path.basename(self.argv[0])
        self.lines = []
        self.stamps = []  # time.monotonic() at which each line of |lines| came
        self.out = []
        self.lock = threading.Lock()
        self.p = subprocess.Popen(self.argv, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env)
        procs.append(self)
        self.threads = [threading.Thread(target=self._reader, args=(f, into, st), daemon=True)
                        for f, into, st in ((self.p.stderr, self.lines, self.stamps),
                                            (self.p.stdout, self.out, None))]
        for t in self.threads:
            t.start()

    def _reader(self, f, into, stamps):
        for line in f:
            with self.lock:
                into.append(line.rstrip("\n"))
                if stamps is not None:
                    stamps.append(time.monotonic())

    def drain(self, timeout=5):
        """Waits up to |timeout| s in all for the readers to reach EOF (they
        do once the child and anything sharing its pipes are gone)."""
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(timeout=max(0.0, end - time.monotonic()))

    def wait_for(self, pattern, timeout, stdout=False):
        """The re.Match of the first line of stderr (stdout with |stdout|)
        that |pattern| matches, from the start of the child's output, waiting
        up to |timeout| s for it; None on timeout or once the child has
        exited (its remaining output read) without printing one."""
        rx = re.compile(pattern)
        src = self.out if stdout else self.lines
        end = time.monotonic() + timeout
        seen = 0
        while True:
            exited = self.p.poll() is not None
            if exited:
                self.drain(2)  # a line printed just before exit is still read
            with self.lock:
                new = src[seen:]
            seen += len(new)
            for line in new:
                m = rx.search(line)
                if m:
                    return m
            if exited or time.monotonic() >= end:
                return None
            time.sleep(0.05)

    def log(self):
        """Everything collected so far: stdout lines, then stderr lines."""
        with self.lock:
            return "\n".join(self.out + self.lines)

    def dump(self, tail=None):
        """Writes the log (only its last |tail| lines if given) to stderr."""
        if tail is None:
            sys.stderr.write(f"---- {self.name} log ----\n{self.log()}\n")
            return
        with self.lock:
            lines = (self.out + self.lines)[-tail:]
        sys.stderr.write(f"---- {self.name} log (last {len(lines)} lines) ----\n"
                         + "\n".join(lines) + "\n")

    def wait(self, timeout):
        """Waits up to |timeout| s for the child to exit by itself; returns
        its exit code, or None if it is still running."""
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=20):
        """SIGTERM, then SIGKILL if the child is still there after |timeout|
        s; returns its exit code (negative: the signal that ended it)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.drain(5)
        return self.p.returncode


class Shoald(Proc):
    """The shoald at path |shoald| with |args|, listening on 127.0.0.1:0
    with a control socket of its own (shoald_argv(); `ctl` is its path, or
    None when |args| names one); `addr` is the address it reports. If it does not report one within
    |start_timeout| s, its log is dumped and the script exits. stop() gives
    it |stop_timeout| s by default."""

    def __init__(self, shoald, name, args, start_timeout=20, stop_timeout=15):
        argv = shoald_argv(shoald, name, args)
        super().__init__(argv, name=name)
        self.ctl = argv[argv.index("--control-socket") + 1] if "--control-socket" not in args \
            else None
        self.stop_timeout = stop_timeout
        m = self.wait_for(r"listening on (127\.0\.0\.1:\d+)", start_timeout)
        if not m:
            self.dump()
            sys.exit(f"{name}: did not start")
        self.addr = m.group(1)
        # The daemon must be on the socket we gave it, never on a shared one.
        if self.ctl and not self.wait_for(r"control socket " + re.escape(self.ctl) + "$", 5):
            self.dump()
            sys.exit(f"{name}: not on its own control socket {self.ctl}")

    def stop(self, timeout=None):
        return super().stop(self.stop_timeout if timeout is None else timeout)


def rss_kib(pid):
    """Resident set of process |pid| (VmRSS), KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def on_small_disk(tmp, size, fn, what):
    """Runs fn(path) with |path| a fresh tmpfs of |size| (e.g. "8m") under
    |tmp|, for a disk that fills up; every process is killed and the tmpfs
    unmounted after. Skips (exit 77) unless root can mount one."""
    if os.geteuid() != 0:
        print(f"{what}: needs root to mount a tmpfs; skipped")
        sys.exit(77)
    small = os.path.join(tmp, "small")
    os.makedirs(small)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", small]).returncode:
        print(f"{what}: cannot mount a tmpfs; skipped")
        sys.exit(77)
    try:
        return fn(small)
    finally:
        kill_all()
        subprocess.run(["umount", "-l", small])


def kill_all(timeout=10):
    """SIGKILLs every Proc still running and reaps it (up to |timeout| s each)."""
    for p in procs:
        if p.p.poll() is None:
            p.p.kill()
    for p in procs:
        try:
            p.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass


def stop_all(nodes):
    """Stops each of |nodes| in turn, printing a FAIL line naming each one
    that did not exit 0; returns how many did not."""
    bad = 0
    for n in nodes:
        if n.stop() != 0:
            print(f"FAIL {n.name} did not shut down cleanly")
            bad += 1
    return bad


def finish(fails, nodes, dump=None, tail=None):
    """A case's end: stops |nodes| (stop_all) and, when anything failed,
    prints the log (its last |tail| lines if given) of each of |dump|, by
    default |nodes|; returns |fails| plus the nodes that did not shut down
    cleanly."""
    fails += stop_all(nodes)
    if fails:
        for n in nodes if dump is None else dump:
            n.dump(tail=tail)
    return fails


def watch_all(nodes, pattern, t_start, deadline, tick=None):
    """Watches the stderr of every Proc in |nodes| at once for a line
    matching |pattern|, each timed when its reader thread got the line (not
    when this loop came round to it: a slow |tick| would date every line
    that came meanwhile at its end): returns {name: (seconds since t_start,
    re.Match)} for those that printed one before the monotonic |deadline|,
    and the name of a node that exited without printing one (None if none
    did), at which point it stops. |tick|, when given, is called on every
    pass (about every 20 ms)."""
    rx = re.compile(pattern)
    seen = {p.name: 0 for p in nodes}
    got = {}
    while len(got) < len(nodes) and time.monotonic() < deadline:
        if tick:
            tick()
        for p in nodes:
            if p.name in got:
                continue
            with p.lock:
                lines = p.lines[seen[p.name]:]
                stamps = p.stamps[seen[p.name]:]
            seen[p.name] += len(lines)
            for line, at in zip(lines, stamps):
                m = rx.search(line)
                if m:
                    got[p.name] = (at - t_start, m)
                    break
            if p.name not in got and p.p.poll() is not None:
                return got, p.name
        time.sleep(0.02)
    return got, None


def metric(text, name):
    """The value of the unlabelled metric |name| in Prometheus text |text|
    (`shoal metrics`), or None if it is not there."""
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def main(case, cases, prefix, scan_sanitizers=False):
    """Runs the test case named |case|: cases[case](tmp), which returns how
    many checks failed, with tmp a new temporary directory named from
    |prefix|. However the case ends, every Proc still running is killed; with
    |scan_sanitizers| a sanitizer report in any Proc's log counts as one more
    failure (UBSan prints and carries on, so the exit code does not show it);
    with SHOAL_TEST_VERBOSE set every Proc's log is dumped; tmp is removed.
    Prints "CASE: ok" or "CASE: FAIL" and exits 0 or 1."""
    global ctl_dir
    if case not in cases:
        sys.exit(f"unknown case {case}")
    tmp = tempfile.mkdtemp(prefix=prefix)
    ctl_dir = tmp
    fails = 1
    try:
        fails = cases[case](tmp)
    finally:
        kill_all()
        if scan_sanitizers:
            for p in procs:
                if re.search(r"runtime error:|AddressSanitizer|LeakSanitizer", p.log()):
                    print(f"FAIL {p.name}: sanitizer report")
                    p.dump()
                    fails += 1
        if os.environ.get("SHOAL_TEST_VERBOSE"):
            for p in procs:
                p.dump()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{case}: {'FAIL' if fails else 'ok'}")
    sys.exit(1 if fails else 0)


def run(*argv, env=None, timeout=120):
    """Runs |argv| to completion and returns its stdout; exits the script
    with the command, its exit code and its output if it fails."""
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({r.returncode}): {r.stdout}{r.stderr}")
    return r.stdout


def make_keys(dir, shoal, names, cred_names, cluster="cluster", timeout=120):
    """`shoal keygen` for each of |names| in directory |dir| (made if
    missing), then a credential NAME.cred for each of |cred_names| signed by
    the key |cluster| (which must be among |names| or already in |dir|).
    Returns k(name) -> the path of that key in |dir|."""
    os.makedirs(dir, exist_ok=True)
    k = lambda n: os.path.join(dir, n)  # noqa: E731
    for n in names:
        run(shoal, "keygen", k(n), timeout=timeout)
    for n in cred_names:
        run(shoal, "cred", "issue", "--cluster-key", k(cluster), "--node", k(n) + ".pub",
            "--out", k(n) + ".cred", timeout=timeout)
    return k


def write_files(root, files):
    """Writes |files| (relative path -> bytes) under the folder |root|."""
    for path, data in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)


# Small chunks, so a few-MB test release still has dozens of chunks.
SMALL_CHUNKS = ("--min", "16K", "--avg", "64K", "--max", "256K")


def build_manifest(shoal, repo, k, out, repo_id="org/model", commit="ab" * 20,
                   extra=SMALL_CHUNKS):
    """`shoal manifest build` of the folder |repo| signed with k("publisher");
    returns the manifest id (hex)."""
    text = run(shoal, "manifest", "build", repo, "--repo", repo_id, "--commit", commit,
               "--key", k("publisher"), "--out", out, *extra, timeout=60)
    return re.search(r"^id ([0-9a-f]{64})$", text, re.M).group(1)


def start_tracker(tracker, k):
    """A shoal-tracker on a free loopback port for the cluster and publisher
    keys of |k| (make_keys), announcing every 500 ms: (its Proc, its
    address), or (its Proc, None), its output dumped, if it did not
    start."""
    trk = Proc([tracker, "--listen", "127.0.0.1:0", "--cluster-key", k("cluster") + ".pub",
                "--publisher-keys", k("publisher") + ".pub", "--announce-interval-ms", "500"],
               name="tracker")
    m = trk.wait_for(r"listening on (\S+)", 20, stdout=True)
    if not m:
        trk.dump()
        return trk, None
    return trk, m.group(1)


def node_args(k, name, tmp, extra=()):
    """shoald arguments for node |name|: its key and credential, the cluster
    and publisher keys, a cache of its own under |tmp|, quick redials. Its
    origin is a loopback port nobody serves (a later --hub-endpoint in
    |extra| wins): a test node never reaches for the real Hub."""
    return ["--node-key", k(name), "--cred", k(name) + ".cred",
            "--cluster-keys", k("cluster") + ".pub",
            "--publisher-keys", k("publisher") + ".pub",
            "--cache-dir", os.path.join(tmp, "cache-" + name),
            "--state-dir", state_dir(), "--reconnect-ms", "300",
            "--hub-endpoint", "http://127.0.0.1:9", *extra]
