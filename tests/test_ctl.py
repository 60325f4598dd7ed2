# SPDX-License-Identifier: MIT
"""The `shoal` CLI against real shoald processes over their control sockets.

Usage: test_ctl.py SHOALD SHOAL CASE
CASE is one of:
  pull_status  a seed holds a release; a second node, started with nothing
               to pull, is asked by `shoal pull <manifest id>` over its
               control socket and the command exits 0 once the release is
               complete, with files byte-identical to the source. Then
               `shoal status`, `shoal peers` and `shoal metrics` on both
               nodes print what happened: the release complete at 100%, the
               seed as the one peer with its address, zone and cipher, bytes
               received equal to the release size, bytes served by the seed
               equal to it too, and fewer payload bytes than that (the JSON
               files went zstd-compressed). A release nobody has, asked by
               name with no tracker, fails with a reason.
  rate_limit   the seed caps uploads at 4 MiB/s per peer (--peer-rate-up 4M):
               a 16 MiB release of incompressible bytes takes at least ~3 s
               to pull (3.5 s in theory; the margin is generous), and still
               arrives intact.
  squat        (root only, else skipped) another local user binds the
               default control socket paths of a user who has no
               $XDG_RUNTIME_DIR (the old /tmp/shoald-<uid>.sock and the
               directory /tmp/shoald-<uid>/, made 0777 by the squatter):
               `shoal status` run as that user must refuse a socket served
               by someone else and send it nothing.
  slots        a `shoal pull` and 31 clients that send nothing hold every
               slot: `shoal status` is
               refused with 'too many clients (32)' and exit 1 (it was
               killed by SIGPIPE, exit 141, saying nothing); each idle
               client gets 'no request for 5.0 s' and is closed, and then
               `shoal status` works. The pull (of a release nobody has)
               keeps receiving progress past the idle time, until its own
               --timeout.
  unread       clients that ask and never read their replies: 16 of them
               each send 2,000 `metrics` requests (~5 MB of replies) and read
               nothing; the daemon stops reading each one at a 256 KiB queue,
               so its RSS grows by less than 32 MiB (before: ~8 MiB each, in
               buffers up to twice that: +200 MB), `shoal status` is still
               answered, and once they hang up their slots come back. A
               client that reads late still gets every one of 2,000 replies.
  pull_summary `shoal pull`'s last line counts this command's own bytes: a pull
               from nothing says it fetched the release's size, at a rate;
               asking again for the complete release says nothing was
               fetched (before: "0.0 s here (15.62 GiB/s)", the daemon's
               run counters over this command's 10 ms). With shoald
               stopped (SIGSTOP), `shoal pull` without --timeout exits 1
               saying shoald is not answering, after ~10 s without a
               progress message (before: it waited forever).
  cred_expiry  a node whose credential ends in 3 days logs a warning at start
               naming the file, when it ends and how to renew it, and so
               does its `shoal status` (a `warning:` line, with another
               saying no tracker is connected; before: none); `shoal
               metrics` has shoal_credential_expiry_seconds (2-3 days) and
               shoal_credential_expiry_timestamp_seconds (the credential's
               end), shoal_trackers 1 and shoal_trackers_connected 0 (its
               tracker's port is closed). A node whose credential has 30
               days logs no such warning (before: no warning, no gauge; a
               fleet's credentials ended together with nothing said).
  loopback_announce a node listening on 127.0.0.1 with a tracker warns that
               it announces a loopback address other hosts cannot reach,
               saying to set --listen 0.0.0.0:PORT or --advertise; one with
               --advertise on a routable address, or without a tracker,
               does not (before: silent).
  socket_denied (root only, else skipped) `shoal status` and `shoal metrics`
               run by a uid that may not open the daemon's 0660 socket say
               "permission denied on PATH (owner root, group root, mode
               0660)" and to run as root or join group root (before: "cannot
               reach shoald at PATH: Permission denied (is it running?)");
               in the socket's group the same uid gets its status; with a
               directory on the way shut to it, that is what is said.
  peers_rtt    `shoal peers` on two connected nodes has an RTT column, and
               each peer's is a number of milliseconds, >= 0 and under 5 s,
               on loopback (TCP's min_rtt; before: no such column).
Every wait is bounded; all processes are killed at the end.
"""
import calendar
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

import shoalproc
from shoalproc import metric

SHOALD, SHOAL, CASE = sys.argv[1], sys.argv[2], sys.argv[3]
procs = shoalproc.procs


def run(*args, check=True, timeout=90):
    r = subprocess.run([SHOAL, *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        sys.exit(f"shoal {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


def Node(name, args):
    return shoalproc.Shoald(SHOALD, name, args)


def setup(tmp, files):
    k = shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL, ("cluster", "publisher", "a", "b"),
                            ("a", "b"), timeout=90)
    repo = os.path.join(tmp, "repo")
    shoalproc.write_files(repo, files)
    mf = os.path.join(tmp, "rel.manifest")
    mid = shoalproc.build_manifest(SHOAL, repo, k, mf,
                                   extra=("--min", "64K", "--avg", "256K", "--max", "1M"))
    return k, repo, mf, mid


def node_args(k, name, tmp, extra=()):
    return shoalproc.node_args(k, name, tmp, ["--control-socket",
                                              os.path.join(tmp, name + ".sock"), *extra])


def check_snapshot(tmp, name, files):
    snap = os.path.join(tmp, "cache-" + name, "models--org--model", "snapshots", "ab" * 20)
    bad = 0
    for path, data in files.items():
        try:
            with open(os.path.join(snap, path), "rb") as f:
                same = hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
        except OSError as e:
            print(f"FAIL {name}: {path}: {e}")
            bad += 1
            continue
        if not same:
            print(f"FAIL {name}: {path} differs from the source")
            bad += 1
    return bad


def case_pull_status(tmp):
    rnd = random.Random(7)
    files = {
        "model.safetensors": rnd.randbytes(3 * 1024 * 1024 + 99),
        "config.json": b'{"hidden_size": 4096, "num_layers": 32, "vocab_size": 32000}\n' * 40,
        "tokenizer.json": (b'{"vocab": {' + b",".join(
            b'"tok%d": %d' % (i, i) for i in range(60000)) + b"}}\n"),
    }
    total = sum(len(v) for v in files.values())
    k, repo, mf, mid = setup(tmp, files)
    sa, sb = os.path.join(tmp, "a.sock"), os.path.join(tmp, "b.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    b = Node("puller", node_args(k, "b", tmp, ["--peer", a.addr]))
    fails = 0
    if not b.wait_for(r"authenticated", 20):
        print("FAIL the nodes did not connect")
        fails += 1

    r = run("pull", mid, "--socket", sb, "--timeout", "60", check=False)
    if r.returncode != 0 or "complete: org/model@" + "ab" * 20 not in r.stdout:
        print(f"FAIL shoal pull: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        fails += 1
    fails += check_snapshot(tmp, "b", files)
    # Asking again for what is here returns at once, by name this time.
    r = run("pull", "org/model@" + "ab" * 20, "--socket", sb, "--timeout", "10", check=False)
    if r.returncode != 0:
        print(f"FAIL a second pull of a complete release: {r.stderr}")
        fails += 1
    r = run("pull", "org/nothing@" + "cd" * 20, "--socket", sb, "--timeout", "10", check=False)
    if r.returncode != 1 or "no tracker" not in r.stderr or "--manifest FILE" not in r.stderr:
        print(f"FAIL an unknown release: exit {r.returncode}: {r.stderr}")
        fails += 1

    st = run("status", "--socket", sb).stdout
    if not re.search(r"org/model@%s\s+complete\s+100\.0%%" % ("ab" * 20), st):
        print(f"FAIL status does not show the release complete:\n{st}")
        fails += 1
    # The columns line up under their headings, however long the name.
    head, row = (st.splitlines() + ["", ""])[:2]
    if head.find("STATE") < 0 or head.find("STATE") != row.find("complete"):
        print(f"FAIL status columns do not line up:\n{st}")
        fails += 1
    pe = run("peers", "--socket", sb).stdout
    if not re.search(r"%s\s+default\s+(aes256gcm|xchacha20poly1305)\s+out" % re.escape(a.addr),
                     pe):
        print(f"FAIL peers does not show the seed:\n{pe}")
        fails += 1
    mb = run("metrics", "--socket", sb).stdout
    got = re.search(r'^shoal_received_bytes_total\{source="peers"\} (\d+)$', mb, re.M)
    if not got or int(got.group(1)) != total:
        print(f"FAIL puller metrics: bytes from peers != {total}:\n{mb}")
        fails += 1
    if metric(mb, "shoal_peers") != 1 or not metric(mb, "shoal_chunks_verified_total") \
            or metric(mb, "shoal_releases_complete") != 1 or metric(mb, "shoal_bans_total") != 0:
        print(f"FAIL puller metrics:\n{mb}")
        fails += 1
    ma = run("metrics", "--socket", sa).stdout
    served, payload = metric(ma, "shoal_served_bytes_total"), \
        metric(ma, "shoal_served_payload_bytes_total")
    if served != total or payload is None or not payload < served:
        print(f"FAIL seed metrics: served {served}, payload {payload}, release {total}")
        fails += 1
    fails += shoalproc.stop_all((a, b))
    for s in (sa, sb):
        if os.path.exists(s):
            print(f"FAIL {s} left behind")
            fails += 1
    if fails:
        a.dump()
        b.dump()
    return fails


def case_rate_limit(tmp):
    files = {"model.safetensors": random.Random(3).randbytes(16 * 1024 * 1024)}
    k, repo, mf, mid = setup(tmp, files)
    sb = os.path.join(tmp, "b.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--peer-rate-up", "4M", "--no-encrypt"]))
    b = Node("puller", node_args(k, "b", tmp, ["--peer", a.addr, "--no-encrypt"]))
    fails = 0
    if not b.wait_for(r"authenticated", 20):
        print("FAIL the nodes did not connect")
        fails += 1
    t0 = time.monotonic()
    r = run("pull", mid, "--socket", sb, "--timeout", "90", check=False)
    took = time.monotonic() - t0
    print(f"16 MiB at --peer-rate-up 4M took {took:.2f} s")
    if r.returncode != 0:
        print(f"FAIL shoal pull: exit {r.returncode}: {r.stderr}")
        fails += 1
    elif took < 2.8:
        print(f"FAIL the upload cap did not hold: {took:.2f} s < 2.8 s")
        fails += 1
    fails += check_snapshot(tmp, "b", files)
    # A complete release receives nothing: its rate is 0, not the decaying
    # average of the download that just ended (seconds of samples here).
    st = run("status", "--socket", sb).stdout
    head, row = (st.splitlines() + ["", ""])[:2]
    rate = head.find("RATE")
    print(st.strip())
    if rate < 0 or not re.match(r"\s*0 B/s", row[rate - 4:]):
        print("FAIL status shows a rate for a complete release")
        fails += 1
    fails += shoalproc.stop_all((a, b))
    if fails:
        a.dump()
        b.dump()
    return fails


def case_squat(tmp):
    import select
    import socket
    if os.geteuid() != 0:
        print("squat: needs root to act as two users; skipped")
        sys.exit(77)
    # Uids of their own, so runs in other build trees do not collide.
    victim = 40000 + os.getpid() % 20000
    squatter = victim + 1
    paths = [f"/tmp/shoald-{victim}.sock", f"/tmp/shoald-{victim}/shoald.sock"]
    ready_r, ready_w = os.pipe()
    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        got = 0
        try:
            os.close(ready_r)
            os.close(stop_w)
            os.setgid(squatter)
            os.setuid(squatter)
            os.umask(0)
            os.makedirs(os.path.dirname(paths[1]), mode=0o777, exist_ok=True)
            listeners, conns = [], []
            for p in paths:
                if os.path.exists(p):
                    os.unlink(p)
                ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                ls.bind(p)
                os.chmod(p, 0o777)
                ls.listen(4)
                listeners.append(ls)
            os.write(ready_w, b"r")
            deadline = time.time() + 60
            while time.time() < deadline:
                rd, _, _ = select.select(listeners + conns + [stop_r], [], [], 0.2)
                if stop_r in rd:
                    break
                for s in rd:
                    if s in listeners:
                        conns.append(s.accept()[0])
                    else:
                        d = s.recv(65536)
                        got += len(d)
                        if not d:
                            conns.remove(s)
                            s.close()
            for p in paths:
                os.unlink(p)
            os.rmdir(os.path.dirname(paths[1]))
        finally:
            os.write(ready_w, str(got).encode())
            os._exit(0)
    os.close(ready_w)
    os.close(stop_r)
    fails = 0
    try:
        if os.read(ready_r, 1) != b"r":
            sys.exit("squat: the squatter did not start")
        env = dict(os.environ)
        env.pop("XDG_RUNTIME_DIR", None)

        def as_victim():
            os.setgid(victim)
            os.setuid(victim)

        # The victim uid may not traverse the build tree (a checkout in a
        # 0700 directory): give it its own copy of the binary.
        bindir = tempfile.mkdtemp(prefix="shoal-ctl-bin-")
        os.chmod(bindir, 0o755)
        victim_shoal = os.path.join(bindir, "shoal")
        shutil.copy2(os.path.abspath(SHOAL), victim_shoal)
        os.chmod(victim_shoal, 0o755)
        try:
            r = subprocess.run([victim_shoal, "status"], capture_output=True, text=True,
                               timeout=40, env=env, preexec_fn=as_victim, cwd="/")
        finally:
            shutil.rmtree(bindir, ignore_errors=True)
        if r.returncode == 0:
            print("squat: shoal status succeeded against a squatter")
            fails += 1
        if "refusing" not in r.stderr:
            print(f"squat: no refusal in shoal's output: {r.stderr.strip()}")
            fails += 1
    finally:
        os.write(stop_w, b"s")
        got = os.read(ready_r, 32)
        os.waitpid(pid, 0)
    if got != b"0":
        print(f"squat: the squatter received {got.decode()} bytes from shoal")
        fails += 1
    return fails


def case_slots(tmp):
    import select
    import socket
    k = shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL, ("cluster", "publisher", "a"),
                            ("a",), timeout=90)
    sa = os.path.join(tmp, "a.sock")
    a = Node("node", node_args(k, "a", tmp))
    fails = 0
    # A followed pull is not idle, however long it waits: it holds one of
    # the 32 slots throughout.
    t0 = time.monotonic()
    pull = subprocess.Popen([SHOAL, "pull", "ef" * 32, "--socket", sa, "--timeout", "9"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    held = []
    for _ in range(31):
        s = socket.socket(socket.AF_UNIX)
        s.connect(sa)
        held.append(s)
    time.sleep(0.3)  # let the daemon accept them all
    r = run("status", "--socket", sa, check=False, timeout=30)
    if r.returncode != 1 or "too many clients (32)" not in r.stderr:
        print(f"FAIL status with every slot held: exit {r.returncode}: {r.stderr.strip()}")
        fails += 1
    end, closed = time.monotonic() + 20, 0
    for s in held:
        data = b""
        while time.monotonic() < end:
            if not select.select([s], [], [], max(0.1, end - time.monotonic()))[0]:
                continue
            b = s.recv(4096)
            if not b:
                break
            data += b
        closed += b"no request for 5.0 s" in data
        s.close()
    if closed != 31:
        print(f"FAIL {closed} of 31 idle clients were closed with a reason")
        fails += 1
    r = run("status", "--socket", sa, check=False, timeout=30)
    if r.returncode != 0:
        print(f"FAIL status once the idle clients were gone: exit {r.returncode}: {r.stderr}")
        fails += 1
    try:
        out, err = pull.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        pull.kill()
        out, err = pull.communicate()
    took = time.monotonic() - t0
    if pull.returncode != 1 or "timed out" not in err or took < 8:
        print(f"FAIL a pull waiting {took:.1f} s: exit {pull.returncode}: {err.strip()}")
        fails += 1
    fails += shoalproc.stop_all((a,))
    if fails:
        a.dump()
    return fails


def case_unread(tmp):
    import select
    import socket
    import struct
    files = {"m.bin": random.Random(4).randbytes(1 << 20)}
    k, repo, mf, mid = setup(tmp, files)
    sa = os.path.join(tmp, "a.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    fails = 0
    reply = len(run("metrics", "--socket", sa).stdout)
    req = struct.pack(">I", 2) + bytes([0x91, 87])  # [METRICS_REQ]
    n = 2000
    before = shoalproc.rss_kib(a.p.pid)
    held = []
    for _ in range(16):
        s = socket.socket(socket.AF_UNIX)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(sa)
        s.setblocking(False)
        held.append([s, req * n])
    # Send everything (the daemon reads only while a client's queue has room,
    # so a send may block: keep going round, bounded in time).
    end = time.monotonic() + 20
    while any(h[1] for h in held) and time.monotonic() < end:
        for h in held:
            try:
                h[1] = h[1][h[0].send(h[1]):] if h[1] else h[1]
            except BlockingIOError:
                pass
        time.sleep(0.05)
    time.sleep(1)
    grew = shoalproc.rss_kib(a.p.pid) - before
    unsent = sum(len(h[1]) for h in held)
    print(f"16 clients x {n} metrics requests of ~{reply} B, unread: RSS +{grew} KiB "
          f"({unsent} request bytes left unsent)")
    with open(f"/proc/{a.p.pid}/maps") as f, open(SHOALD, "rb") as exe:
        if "libasan" in f.read() or b"__asan_init" in exe.read():
            print("AddressSanitizer build: RSS not checked")
            grew = 0
    if grew >= 32 << 10:
        print(f"FAIL clients that never read held {grew} KiB of the daemon")
        fails += 1
    r = run("status", "--socket", sa, check=False, timeout=30)
    if r.returncode != 0:
        print(f"FAIL status while unread clients wait: exit {r.returncode}: {r.stderr}")
        fails += 1
    for h in held:
        h[0].close()
    # A client that reads late gets every reply: its requests waited, none lost.
    s = socket.socket(socket.AF_UNIX)
    s.connect(sa)
    s.sendall(req * n)
    time.sleep(1)
    data, got, end = b"", 0, time.monotonic() + 60
    while got < n and time.monotonic() < end:
        if not select.select([s], [], [], 1)[0]:
            continue
        b = s.recv(1 << 20)
        if not b:
            break
        data += b
        while len(data) >= 4 and len(data) >= 4 + struct.unpack(">I", data[:4])[0]:
            data = data[4 + struct.unpack(">I", data[:4])[0]:]
            got += 1
    s.close()
    if got != n:
        print(f"FAIL a client reading late got {got} of {n} replies")
        fails += 1
    fails += shoalproc.stop_all((a,))
    if fails:
        a.dump(60)
    return fails


def case_pull_summary(tmp):
    import signal
    files = {"model.safetensors": random.Random(5).randbytes(6 * 1024 * 1024)}
    k, repo, mf, mid = setup(tmp, files)
    sb = os.path.join(tmp, "b.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    b = Node("puller", node_args(k, "b", tmp, ["--peer", a.addr]))
    fails = 0
    if not b.wait_for(r"authenticated", 20):
        print("FAIL the nodes did not connect")
        return 1
    line = re.compile(r"complete: \S+ (\S+ \S+), \d+ bytes from peers, \d+ from origin "
                      r"\(\d+%\), [\d.]+ s here, (.*)$", re.M)
    r = run("pull", mid, "--socket", sb, "--timeout", "60", check=False)
    m = line.search(r.stdout)
    print(m.group(0) if m else r.stdout + r.stderr)
    if r.returncode != 0 or not m or not re.fullmatch(re.escape(m.group(1)) +
                                                      r" fetched \([\d.]+ \S+/s\)", m.group(2)):
        print("FAIL a pull from nothing does not say it fetched the whole release")
        fails += 1
    r = run("pull", mid, "--socket", sb, "--timeout", "60", check=False)
    m = line.search(r.stdout)
    print(m.group(0) if m else r.stdout + r.stderr)
    if r.returncode != 0 or not m or m.group(2) != "nothing fetched (it was here already)":
        print("FAIL a pull of a complete release claims a rate")
        fails += 1
    # A stopped daemon: the pull must not wait silently forever.
    os.kill(b.p.pid, signal.SIGSTOP)
    try:
        try:
            r = subprocess.run([SHOAL, "pull", mid, "--socket", sb], capture_output=True,
                               text=True, timeout=60)
            rc, err = r.returncode, r.stderr.strip()
        except subprocess.TimeoutExpired:
            rc, err = None, "still waiting after 60 s"
    finally:
        os.kill(b.p.pid, signal.SIGCONT)
    print(f"pull with shoald stopped: exit {rc}: {err}")
    if rc != 1 or "shoald is not answering" not in err:
        print("FAIL a pull from a stopped shoald did not give up saying why")
        fails += 1
    fails += shoalproc.stop_all((b, a))
    return fails


def case_cred_expiry(tmp):
    k = shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL, ("cluster", "publisher", "a", "b"),
                            ("b",), timeout=90)
    out = run("cred", "issue", "--cluster-key", k("cluster"), "--node", k("a") + ".pub",
              "--out", k("a") + ".cred", "--days", "3").stdout
    end = calendar.timegm(time.strptime(re.search(r"expires (.* UTC)", out).group(1),
                                        "%Y-%m-%d %H:%M:%S UTC"))
    # A tracker address nobody answers on: configured, never connected.
    a = Node("a", node_args(k, "a", tmp, ["--tracker", "127.0.0.1:9"]))
    b = Node("b", node_args(k, "b", tmp))
    fails = 0
    cred = re.escape(k("a") + ".cred")
    if not a.wait_for(r"warn .*credential %s expires at \S+ \S+ UTC, in [23] days .*"
                      r"shoal cred issue .*restart shoald" % cred, 10):
        print("FAIL no warning that the credential ends within 7 days")
        fails += 1
    text = run("metrics", "--socket", os.path.join(tmp, "a.sock")).stdout
    left = re.search(r"^shoal_credential_expiry_seconds (-?\d+)$", text, re.M)
    print(f"credential ends {end}; metrics: expiry_seconds "
          f"{left.group(1) if left else None}, timestamp "
          f"{metric(text, 'shoal_credential_expiry_timestamp_seconds')}")
    if not left or not 2 * 86400 < int(left.group(1)) <= 3 * 86400:
        print("FAIL shoal_credential_expiry_seconds missing or not about 3 days")
        fails += 1
    if metric(text, "shoal_credential_expiry_timestamp_seconds") != end:
        print("FAIL shoal_credential_expiry_timestamp_seconds is not the credential's end")
        fails += 1
    if metric(text, "shoal_trackers") != 1 or metric(text, "shoal_trackers_connected") != 0:
        print("FAIL shoal_trackers 1 / shoal_trackers_connected 0 expected")
        fails += 1
    text = run("metrics", "--socket", os.path.join(tmp, "b.sock")).stdout
    left = re.search(r"^shoal_credential_expiry_seconds (-?\d+)$", text, re.M)
    if not left or int(left.group(1)) <= 29 * 86400:
        print("FAIL b's 30-day credential: expiry_seconds missing or short")
        fails += 1
    if "credential" in "\n".join(l for l in b.lines if " warn " in l):
        print("FAIL a 30-day credential was warned about")
        fails += 1
    # `shoal status` says both (QA F4): the credential ends within 7 days,
    # and no tracker has connected (shown once a login had time, 2 s).
    want = [r"^warning: credential %s expires at \S+ \S+ UTC, in [23] days .*shoal cred "
            r"issue" % cred,
            r"^warning: no tracker connected \(1 configured\) for \d+ s: no rollouts reach"]
    for _ in range(50):
        st = run("status", "--socket", os.path.join(tmp, "a.sock")).stdout
        if all(re.search(w, st, re.M) for w in want):
            break
        time.sleep(0.2)
    print(st.strip())
    for w in want:
        if not re.search(w, st, re.M):
            print(f"FAIL a's shoal status has no line matching {w}")
            fails += 1
    st = run("status", "--socket", os.path.join(tmp, "b.sock")).stdout
    if "warning:" in st:
        print(f"FAIL b (30-day credential, no tracker configured) shows a warning:\n{st}")
        fails += 1
    return shoalproc.finish(fails, [a, b])


def case_loopback_announce(tmp):
    k = shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL,
                            ("cluster", "publisher", "a", "b", "c"), ("a", "b", "c"), timeout=90)
    a = Node("a", node_args(k, "a", tmp, ["--tracker", "127.0.0.1:9"]))
    b = Node("b", node_args(k, "b", tmp, ["--tracker", "127.0.0.1:9",
                                          "--advertise", "10.0.0.12:7600"]))
    c = Node("c", node_args(k, "c", tmp))
    fails = 0
    if not a.wait_for(r"warn .*announcing a loopback address \(%s\) to tracker 127\.0\.0\.1:9: "
                      r"peers on other hosts cannot reach this node; set --listen "
                      r"0\.0\.0\.0:\d+ or --advertise" % re.escape(a.addr), 5):
        print("FAIL no warning that a loopback address is announced to the tracker")
        fails += 1
    fails += shoalproc.stop_all([a, b, c])
    for n in (b, c):
        if "loopback" in n.log():
            print(f"FAIL {n.name} warned about a loopback announce it does not make")
            fails += 1
    if fails:
        for n in (a, b, c):
            n.dump()
    return fails


def case_socket_denied(tmp):
    if os.geteuid() != 0:
        print("socket_denied: needs root to act as another user; skipped")
        sys.exit(77)
    # A uid and a gid of their own, so runs in other build trees do not
    # collide; neither has a name, as a fresh service user's might not.
    uid = 40000 + os.getpid() % 20000
    gid = uid + 7
    k = shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL, ("cluster", "publisher", "a"),
                            ("a",), timeout=90)
    # The socket's directory must be open to that uid (tmp may be 0700);
    # so must a copy of the binary (the build tree may not be).
    pub = tempfile.mkdtemp(prefix="shoal-ctl-denied-")
    os.chmod(pub, 0o755)
    sockdir = os.path.join(pub, "run")
    os.mkdir(sockdir, 0o755)
    sock = os.path.join(sockdir, "a.sock")
    other_shoal = os.path.join(pub, "shoal")
    shutil.copy2(os.path.abspath(SHOAL), other_shoal)
    os.chmod(other_shoal, 0o755)
    a = Node("a", shoalproc.node_args(k, "a", tmp, ["--control-socket", sock]))
    fails = 0

    def shoal_as(groups, *args):
        def become():
            os.setgroups(groups)
            os.setgid(uid)
            os.setuid(uid)
        return subprocess.run([other_shoal, *args, "--socket", sock], capture_output=True,
                              text=True, timeout=40, preexec_fn=become, cwd="/")

    try:
        for cmd in ("status", "metrics"):
            r = shoal_as([], cmd)
            print(f"shoal {cmd} as uid {uid}: exit {r.returncode}: {r.stderr.strip()}")
            # Adding users to group root is not advice to give: a group of
            # shoald's own is.
            if r.returncode == 0 or not re.search(
                    r"permission denied on %s \(owner root, group root, mode 0660\): run shoal "
                    r"as root, or run shoald under a group of its own" % re.escape(sock),
                    r.stderr) or "usermod" in r.stderr:
                print(f"FAIL shoal {cmd}: want 'permission denied on {sock}' naming the "
                      "owner, and no advice to join group root")
                fails += 1
        # The hint holds: in the socket's group, the same user gets in.
        os.chown(sock, 0, gid)
        r = shoal_as([gid], "status")
        if r.returncode != 0:
            print(f"FAIL shoal status in the socket's group: exit {r.returncode}: {r.stderr}")
            fails += 1
        # A directory on the way it may not search is named as such.
        os.chmod(sockdir, 0o700)
        r = shoal_as([], "status")
        print(f"shoal status through a shut directory: {r.stderr.strip()}")
        if r.returncode == 0 or not re.search(r"permission denied on %s: a directory on the way"
                                              % re.escape(sock), r.stderr):
            print("FAIL a shut directory on the way is not named")
            fails += 1
    finally:
        fails += shoalproc.stop_all([a])
        shutil.rmtree(pub, ignore_errors=True)
    if fails:
        a.dump()
    return fails


def case_peers_rtt(tmp):
    k, repo, mf, mid = setup(tmp, {"config.json": b'{"a": 1}\n'})
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    b = Node("puller", node_args(k, "b", tmp, ["--peer", a.addr]))
    fails = 0
    if not b.wait_for(r"authenticated", 20):
        print("FAIL the nodes did not connect")
        fails += 1
    for name in ("a", "b"):
        out = run("peers", "--socket", os.path.join(tmp, name + ".sock")).stdout
        print(out.rstrip())
        lines = out.splitlines()
        head = lines[0].split() if lines else []
        m = [re.search(r"\s(\d+(?:\.\d+)?) ms$", ln) for ln in lines[1:]]
        if not head or head[-1] != "RTT" or len(m) != 1 or not m[0] \
                or not 0 <= float(m[0].group(1)) < 5000:
            print(f"FAIL {name}: `shoal peers` has no RTT column with a round trip in ms")
            fails += 1
    fails += shoalproc.stop_all((a, b))
    return fails


shoalproc.main(CASE, {"pull_status": case_pull_status, "rate_limit": case_rate_limit,
                      "squat": case_squat, "slots": case_slots, "unread": case_unread,
                      "pull_summary": case_pull_summary, "cred_expiry": case_cred_expiry,
                      "loopback_announce": case_loopback_announce,
                      "socket_denied": case_socket_denied, "peers_rtt": case_peers_rtt}, "shoal-ctl-")
