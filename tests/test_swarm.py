# SPDX-License-Identifier: MIT
"""Integration tests of shoald with real processes on loopback.

Usage: test_swarm.py SHOALD SHOAL CASE [HOSTILE_PEER]
CASE is one of:
  pull_encrypted  two nodes: a seed imports a release from a local folder, a
                  second node fetches the manifest and every chunk from it
                  over a sealed session; the files it publishes in its HF
                  cache are byte-identical to the source.
  pull_plain      the same with --no-encrypt on both sides.
  exit_manifest   --exit-when-complete with --manifest: a node holding a
                  release it fetches from a seed exits 0 once it is complete,
                  one importing it whole from --seed-dir exits 0 at once.
  no_cred         a node whose credential is signed by an untrusted cluster
                  key is refused at HELLO (reason logged on both sides) and
                  stores no chunk. (It trusts its own rogue cluster, so its
                  credential verifies locally and it starts: shoald refuses
                  to start with a credential its own --cluster-keys reject.)
  bad_peer        a second seed serves corrupted chunks: the puller bans it,
                  still completes from the honest seed, verified, and
                  refuses the banned node when it comes back.
  bad_peer_plain  the same over plain sessions (--no-encrypt everywhere):
                  nothing proves plain bytes are the sender's (anyone on the
                  path could flip them and get an honest node banned), so
                  the puller closes the connection, says why, bans nobody,
                  and still completes verified.
  sendfile_order  over a plain session, a chunk read into memory and held
                  for room on the wire is not passed by sendfile chunks
                  asked after it: answers come in the order asked.
  cancel_queued   a peer asks a seed for 8 chunks, reads nothing for 0.5 s
                  and cancels them: what was queued and not yet on its way
                  to the socket is taken back, not sent nor counted as
                  served (at most 5 come), and answered REJECT: every
                  request gets exactly one answer; likewise from a seed at
                  --rate-up 1M.
  upload_slots    a seed with one upload slot and three pullers peering with
                  each other: the seed tells some requests busy, the pullers
                  feed each other, all complete verified; then a fourth
                  that knows only the seed gets the slot and completes.
  unauth_flood    three times --max-peers idle TCP connections to a seed and
                  to a puller: the puller still dials the seed, another
                  puller still gets in, both complete verified; the idle
                  connections received nothing (a node sends its HELLO only
                  after the other side's has verified).
  unauth_evict    a seed with --max-unauth 4 and 10 idle connections closes
                  the oldest to admit each new one (logged, rate-limited); a
                  real node still gets in, completes, and evicts the next.
  unauth_source   a flood of idle connections from 127.0.0.2 into a full
                  handshake pool evicts its own, never a handshake in
                  progress from 127.0.0.1; a real node still completes;
                  `shoal metrics` counts each eviction in
                  shoal_handshake_evictions_total (before: only logged).
  hello_budget    HELLO replays from 127.0.0.2 past --hello-rate are refused
                  unchecked (logged once; `shoal metrics` counts them in
                  shoal_hello_refused_total, before: only logged), and b
                  from 127.0.0.1 completes.
  cred_expiry     a slow puller and an idle node whose credentials expire a
                  few seconds in: the seed closes both sessions at expiry,
                  the puller gets no chunk after it and is refused when it
                  redials.
  ping_flood      a peer with a valid credential sends up to 2,000,000 PINGs
                  and never reads the PONGs: the seed stops reading from it
                  once its replies fill the peer's write queue, so its memory
                  grows by less than 400 MiB (before: 1.25 GB for 3,000,000);
                  an honest puller then still completes from the seed.
                  (HOSTILE_PEER, the fifth argument, is tests/hostile_peer.c.)
  liar            a peer announces every chunk of a release to a puller that
                  has no other source, then answers each request "unknown":
                  it is asked for each chunk once at most (before: a request
                  loop, ~40,000 a second), and for the others after each
                  refusal (a failed crossing frees the one cross-zone
                  fallback slot, as one that arrived does); a second one answers nothing: its
                  requests time out (--request-timeout-ms 1500) and it is
                  banned, the log saying why; one answering busy to
                  everything for a request time-out loses its claims
                  (logged), so they stop holding chunks back from the
                  origin; an honest seed that comes
                  later completes the release, verified.
  idle_peer       --peer-idle-ms 3000: a silent peer and one sending a frame
                  a byte a second are closed saying why; honest nodes left
                  idle for 8 s stay connected.
  unsolicited     a peer streams CHUNKs that answer no request: closed at
                  the first with a BYE saying so, logged; an honest seed
                  then serves the release.
  unknown_codec   a peer answers each request with a CHUNK of codec 7 (as a
                  newer version might): the puller closes it with a BYE
                  "CHUNK with codec 7, which this node does not know (a
                  newer shoal version?): closing, not banning" and logs it;
                  the peer connects again and is asked again (before: its
                  CHUNK failed as a bad hash and the peer was banned as a
                  liar); an honest seed then completes the release.
  bad_manifest    a peer answers the puller's WANT_MANIFEST with 200
                  copies of the signed manifest, its signature broken: the
                  puller checks one, logs "bad signature; closing the
                  connection" and closes it (before: it hashed and checked
                  all 200 on its loop thread and kept the peer); an
                  honest seed then completes it.
  cut_seed        a seed's cached shard is cut to a third after import: it
                  says once that it cannot read chunks of that file and stops
                  serving and offering them (shoal status: UNREADABLE ON
                  DISK), and answers later requests "unknown" without a read
                  (before: the same failed read in a loop with the puller);
                  the puller completes once a second seed joins.
  tracker_lies    a puller's only tracker lies (tests/fake_tracker.c, the
                  sixth argument): it lists 256 made-up node keys per
                  answer, alternately at a socket that accepts and never
                  answers and at the puller's own address. The puller dials
                  the silent socket at most once per 5 s and never itself
                  (before: 7 dials in 3 s, and dials to itself), and a seed
                  that dials it gets a peer slot: the release completes.
                  With --max-peers 64 the old dials held every slot and the
                  seed was refused ("connection limit reached").
  disk_rot        an honest seed's cached file changes on disk after it was
                  verified (one byte flipped through its snapshot symlink):
                  the first puller bans it for the chunk and completes from
                  a second seed; its BYE names the chunk, the seed hashes
                  that chunk again and logs that the file changed on disk
                  (naming it; `shoal status` says so too) and stops serving
                  and offering its bad chunks. A second puller that has only
                  that seed at first gets everything else from it, does not
                  ban it, and completes byte-identical once the second seed
                  is back. (Before: the seed went on serving the chunk, and
                  every puller banned it.)
  disk_rot_single the rotten seed is the puller's only peer: the puller bans
                  it for 30 s on its first bad chunk (before: --ban-seconds,
                  600 s, so the pull stopped for 10 min), `shoal status`
                  says the pull's only peer is banned, and once the seed
                  has repaired the chunk from a second seed the puller does
                  not know, the puller dials it again and completes from
                  it, banning nobody again.
  bad_peer_again  a peer sending only bad chunks, the puller's only one: its
                  first bad chunk bans it for 30 s, its next (a session
                  later) for --ban-seconds (600 s), and `shoal status` says
                  so.
  disk_rot_repair
                  the same rotten seed, with a shoal-tracker and a loader
                  socket: once it finds the chunk bad it tells the tracker
                  it is no longer complete (before: it went on announcing
                  complete), a loader asking it for the release gets every
                  file but the rotten one (before: the rotten one too) and
                  waits for it; restarted without --verify-store it resumes
                  one chunk short instead of serving the chunk again
                  (before: complete); once a good seed is back it fetches
                  that chunk, the loader gets the file whole, the snapshot
                  is byte-identical and the tracker counts it complete.
                  (Extra arguments: SHOAL_TRACKER, NODE_DIR.)
  disk_rot_inproc the same repair without a restart: the loader waiting for
                  the shard gets it with the right bytes once a good seed
                  sends the chunk again, the snapshot shows it again and
                  the tracker counts the seed complete again.
  disk_rot_refetch_cut
                  a seed's shard cut short: it takes the chunks it cannot
                  read back; the partial file it refills is then cut
                  shorter still: the chunks that now fail to read are
                  scanned and fetched again too (before: withheld for good,
                  so a puller with only that seed never completed).
  disk_rot_kept   the rotten seed cannot take the chunk back (a directory
                  where its partial file goes): the snapshot link stays
                  (before: removed by the failed take-back), the log and
                  `shoal status` say a restart with --verify-store repairs.
  disk_rot_shared two releases on one seed share a shard's blob (the store
                  dedups by sha256); a byte of it flips. A puller of the
                  first bans the seed for it, and the seed repairs the
                  first; the second, told by the first, withholds the shard
                  too, hashes it and takes the bad chunk back (before: it
                  went on serving the bad chunk, and a puller of it banned
                  the seed too). A puller of the second that has only this
                  seed gets everything else and bans nobody; once a good
                  seed is back both releases on the seed are whole again
                  and byte-identical.
  partial_blocked a directory (someone else's) at both partial names of one
                  shard in a seed's cache, .shoal/<sha>.incomplete and
                  .shoal/<sha>.<release id>.incomplete: the seed opens the
                  release anyway (before: it could not open it at all), logs
                  that shard as withheld naming the path and what to do,
                  `shoal status` says BLOCKED ON DISK, it never tries to
                  fetch or store that shard, serves every other file to a
                  puller, and leaves both directories alone.
  disk_rot_seed_dir
                  a --seed-dir seed restarted with --verify-store finds both
                  shards changed and has no room to repair them (8 MiB
                  tmpfs, root only): each is withheld with a log line giving
                  its own reason (before: both gave the last file's), the
                  import does not call the release complete and `shoal
                  status` shows them withheld (before: "release complete").
  disk_rot_status_reason
                  that seed withholds shard 1 for want of room, then shard 2
                  rots while served and its take-back fails for another
                  reason (a directory where its copy goes): `shoal status`
                  still says to free room for shard 1 (before: the advice
                  came from the last failure, shard 2's).
Every wait is bounded; all processes are killed at the end.
"""
import calendar
import hashlib
import glob
import os
import random
import re
import select
import shutil
import socket
import subprocess
import sys
import time

import shoalproc
from shoalproc import metric

SHOALD, SHOAL, CASE = sys.argv[1], sys.argv[2], sys.argv[3]
HOSTILE = sys.argv[4] if len(sys.argv) > 4 else None
FAKE_TRACKER = sys.argv[5] if len(sys.argv) > 5 else None
TRACKER = sys.argv[6] if len(sys.argv) > 6 else None
if len(sys.argv) > 7:
    sys.path.insert(0, sys.argv[7])
WAIT_S = 60

procs = shoalproc.procs


def run(*args):
    return shoalproc.run(SHOAL, *args, timeout=60)


def Node(name, args):
    return shoalproc.Shoald(SHOALD, name, args)


def make_repo(root):
    rnd = random.Random(1234)
    files = {
        "model-00001-of-00002.safetensors": rnd.randbytes(3 * 1024 * 1024 + 1234),
        "model-00002-of-00002.safetensors": rnd.randbytes(2 * 1024 * 1024 + 77),
        "config.json": b'{"hidden_size": 4096, "num_layers": 32}\n',
        "sub/tokenizer.json": (b'{"vocab": {' + b",".join(
            b'"tok%d": %d' % (i, i) for i in range(20000)) + b"}}\n"),
    }
    shoalproc.write_files(root, files)
    return files


def setup(tmp):
    keys = os.path.join(tmp, "keys")
    k = shoalproc.make_keys(keys, SHOAL,
                            ("cluster", "rogue-cluster", "publisher", "a", "b", "m", "c", "x"),
                            ("a", "b", "m", "x"))
    shoalproc.make_keys(keys, SHOAL, (), ("c",), cluster="rogue-cluster")
    repo = os.path.join(tmp, "repo")
    files = make_repo(repo)
    mf = os.path.join(tmp, "rel.manifest")
    mid = shoalproc.build_manifest(SHOAL, repo, k, mf)
    return k, repo, files, mf, mid


node_args = shoalproc.node_args


def one_file_release(tmp, k, tag, seed, size, chunking):
    """A release of one random model.safetensors of |size| bytes, chunked
    with |chunking| (min, avg, max): (repo, files, manifest path, id)."""
    repo = os.path.join(tmp, "repo-" + tag)
    files = {"model.safetensors": random.Random(seed).randbytes(size)}
    os.makedirs(repo)
    with open(os.path.join(repo, "model.safetensors"), "wb") as f:
        f.write(files["model.safetensors"])
    mf = os.path.join(tmp, "rel-%s.manifest" % tag)
    lo, avg, hi = chunking
    mid = shoalproc.build_manifest(SHOAL, repo, k, mf,
                                   extra=("--min", str(lo), "--avg", str(avg), "--max", str(hi)))
    return repo, files, mf, mid


def check_snapshot(tmp, name, files):
    snap = os.path.join(tmp, "cache-" + name, "models--org--model", "snapshots", "ab" * 20)
    bad = 0
    for path, data in files.items():
        full = os.path.join(snap, path)
        if not os.path.islink(full):
            print(f"FAIL {name}: {path} is not a snapshot symlink")
            bad += 1
            continue
        with open(full, "rb") as f:
            got = f.read()
        if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
            print(f"FAIL {name}: {path} differs from the source")
            bad += 1
    return bad


def load_in_background(sock, mid, paths):
    """A loader asking for |paths| of release |mid| on loader socket
    |sock|, in a thread (started): returns it and a dict that gets each
    path handed over with its sha256, or "error" with what failed."""
    import shoal_loader
    import threading
    result = {}

    def load():
        try:
            with shoal_loader.Client(sock, timeout=WAIT_S) as cl:
                for lf in cl.want(mid, paths):
                    result[lf.path] = hashlib.sha256(bytes(lf.mmap())).digest()
                    lf.close()
        except (TimeoutError, shoal_loader.LoaderError, OSError) as e:
            result["error"] = str(e)

    th = threading.Thread(target=load)
    th.start()
    return th, result


def republished(node, path):
    """Waits (10 s at most) until |node| has published |path| a second
    time: a repaired file is linked into the snapshot just after "is whole
    again" is logged, and its first "complete and verified" was the
    import."""
    done = r"%s complete and verified" % re.escape(path)
    end = time.monotonic() + 10
    while time.monotonic() < end and len(re.findall(done, node.log())) < 2:
        time.sleep(0.1)


def honest_seed_finishes(k, tmp, mf, repo, b, files, fails):
    """An honest seed dialling puller |b| gets the release through to it,
    verified; stops both (dumping b's log when anything failed, |fails|
    included). Returns the failures found here."""
    bad = 0
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--peer", b.addr]))
    if not b.wait_for(r"release [0-9a-f]+ \(.*\) complete", WAIT_S):
        print("FAIL the puller did not complete from the honest seed")
        bad += 1
    bad += check_snapshot(tmp, "b", files)
    bad += shoalproc.stop_all((a, b))
    if fails or bad:
        b.dump(80)
    return bad


def free_port():
    """A loopback TCP port nothing listens on at the moment, for a node
    that must start after another one was told to dial it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accept_backlog(port):
    """Connections waiting in the accept queue of the IPv4 socket listening
    on |port| (/proc/net/tcp: rx_queue of a LISTEN entry), or None."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if int(cols[1].split(":")[1], 16) == port and cols[3] == "0A":
                return int(cols[4].split(":")[1], 16)
    return None


def idle_connections(addr, n, timeout=20, src=None):
    """|n| TCP connections to |addr| (host:port) that never send a byte,
    as an attacker without a credential would hold them, opened one by one,
    each only once the daemon has accepted the one before (its listening
    socket's accept queue is empty again: the daemon sends nothing to a
    connection before its HELLO verifies), from address |src| if given.
    Returns the sockets, oldest first."""
    host, port = addr.rsplit(":", 1)
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)), timeout=timeout,
                                     source_address=(src, 0) if src else None)
        end = time.monotonic() + timeout
        while accept_backlog(int(port)) != 0:
            if time.monotonic() > end:
                sys.exit(f"{addr} did not take an idle connection within {timeout} s")
            time.sleep(0.01)
        socks.append(s)
    return socks


def frames_within(s, n, timeout):
    """Reads whole frames (4-byte big-endian length, then the body) from
    socket |s| until |n| have come or |timeout| s passed; returns how many
    came."""
    end, buf, got = time.monotonic() + timeout, b"", 0
    while got < n:
        while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
            buf = buf[4 + int.from_bytes(buf[:4], "big"):]
            got += 1
        left = end - time.monotonic()
        if got >= n or left <= 0 or not select.select([s], [], [], left)[0]:
            break
        data = s.recv(65536)
        if not data:
            break
        buf += data
    return min(got, n)


def read_frames(s, n, timeout):
    """The bytes of up to |n| whole frames from socket |s|, read until they
    came, the other side closed, or |timeout| s passed."""
    end, buf = time.monotonic() + timeout, b""
    while True:
        at, got = 0, 0
        while len(buf) >= at + 4 and len(buf) >= at + 4 + int.from_bytes(buf[at:at + 4], "big"):
            at += 4 + int.from_bytes(buf[at:at + 4], "big")
            got += 1
        left = end - time.monotonic()
        if got >= n or left <= 0 or not select.select([s], [], [], left)[0]:
            return buf
        try:
            data = s.recv(65536)
        except OSError:
            return buf
        if not data:
            return buf
        buf += data


def capture_hello(tmp, k, name):
    """Node |name|'s HELLO as it sends it in clear to a listener it dials,
    which anyone on the path can record: (bytes, failures)."""
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(1)
    lsn.settimeout(10)
    cap = Node("capture", node_args(k, name, tmp, ["--peer", "127.0.0.1:%d" % lsn.getsockname()[1]]))
    conn, _ = lsn.accept()
    hello, end = b"", time.monotonic() + 2
    while time.monotonic() < end and select.select([conn], [], [], end - time.monotonic())[0]:
        got = conn.recv(65536)
        if not got:
            break
        hello += got
    conn.close()
    lsn.close()
    fails = cap.stop()
    print(f"captured {len(hello)} bytes of {name}'s HELLO")
    if not hello:
        print(f"FAIL node {name} sent nothing to the listener it dialled")
        cap.dump()
        fails += 1
    return hello, fails


def closed_within(s, timeout):
    """True once the daemon has closed socket |s| (EOF or reset), reading
    and dropping anything it sent; False if |s| is still open after
    |timeout| s."""
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            return False
        try:
            if not s.recv(65536):
                return True
        except OSError:
            return True


def case_pull(tmp, encrypt):
    k, repo, files, mf, mid = setup(tmp)
    extra = [] if encrypt else ["--no-encrypt"]
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo, *extra]))
    if encrypt:
        b = Node("puller", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid,
                                                   "--exit-when-complete"]))
    else:
        # The plain case reads the puller's settings from a config file, so
        # the file format (every option as "key = value") is exercised too.
        conf = os.path.join(tmp, "b.conf")
        args = node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid,
                                       "--exit-when-complete", "--no-encrypt"])
        with open(conf, "w") as f:
            f.write("# puller\n")
            i = 0
            while i < len(args):
                key = args[i][2:]
                if i + 1 < len(args) and not args[i + 1].startswith("--"):
                    f.write(f"{key} = {args[i + 1]}\n")
                    i += 2
                else:
                    f.write(f"{key} = true\n")
                    i += 1
        b = Node("puller", ["--config", conf])
    rc = b.wait(WAIT_S)
    fails = 0
    if rc != 0:
        print(f"FAIL puller did not complete (exit {rc})")
        fails += 1
    want = "aes256gcm|xchacha20poly1305" if encrypt else "none"
    if not re.search(r"authenticated: .* cipher (%s)" % want, b.log()):
        print(f"FAIL session cipher is not {want}")
        fails += 1
    if "signature verified" not in b.log():
        print("FAIL manifest was not fetched from the peer")
        fails += 1
    fails += check_snapshot(tmp, "b", files)
    if a.stop() != 0:
        print("FAIL seed did not shut down cleanly")
        fails += 1
    if fails:
        a.dump()
    return fails


def case_exit_manifest(tmp):
    """--exit-when-complete waits for --manifest releases too: a node told to
    hold a release (fetched from a peer) exits 0 once it is complete, and
    one that imports it whole from --seed-dir exits 0 at once."""
    k, repo, files, mf, mid = setup(tmp)
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    b = Node("holder", node_args(k, "b", tmp, ["--manifest", mf, "--peer", a.addr,
                                               "--exit-when-complete"]))
    c = Node("imported", node_args(k, "m", tmp, ["--manifest", mf, "--seed-dir", repo,
                                                 "--exit-when-complete"]))
    fails = 0
    for n, what in ((b, "fetched from a peer"), (c, "imported from --seed-dir")):
        rc = n.wait(WAIT_S)
        print(f"{n.name} ({what}): exit {rc}")
        if rc != 0:
            print(f"FAIL a --manifest release {what} did not end the node with "
                  f"--exit-when-complete (exit {rc})")
            fails += 1
        elif "exiting as asked" not in n.log():
            print(f"FAIL {n.name} did not say why it exited")
            fails += 1
    fails += check_snapshot(tmp, "b", files)
    for n in (b, c):
        if n.wait(0) is None:
            n.stop()
    if a.stop() != 0:
        print("FAIL seed did not shut down cleanly")
        fails += 1
    if fails:
        b.dump()
    return fails


def case_no_cred(tmp):
    k, repo, files, mf, mid = setup(tmp)
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    # The intruder trusts its own (rogue) cluster: its credential verifies
    # there, so it starts; the real cluster must still refuse it.
    cargs = node_args(k, "c", tmp, ["--peer", a.addr, "--pull", mid])
    cargs[cargs.index("--cluster-keys") + 1] = k("rogue-cluster") + ".pub"
    c = Node("intruder", cargs)
    fails = 0
    if not a.wait_for(r"refused: credential rejected", 20):
        print("FAIL seed did not log refusing the intruder's credential")
        fails += 1
    if not c.wait_for(r"closed: peer said bye: credential rejected", 20):
        print("FAIL intruder was not told why it was refused")
        fails += 1
    # Give it a few redials: it must never get a manifest or a chunk.
    time.sleep(1.5)
    if c.stop() != 0 or a.stop() != 0:
        print("FAIL a node did not shut down cleanly")
        fails += 1
    if "authenticated" in c.log() or "signature verified" in c.log():
        print("FAIL intruder got past the handshake")
        fails += 1
    cache = os.path.join(tmp, "cache-c")
    stored = []
    for dirpath, _, names in os.walk(cache):
        if os.path.basename(dirpath) == ".locks":
            continue  # the daemon's own lock on the cache, no data
        stored += [n for n in names if not n.endswith(".state")]
    if stored:
        print(f"FAIL intruder stored something: {stored}")
        fails += 1
    if fails:
        a.dump()
        c.dump()
    return fails


def case_bad_peer(tmp, hangup=False):
    """A node serving wrong bytes is banned by its key and kept out. With
    |hangup| it closes the connection right after its first bad chunk, so
    the puller's verdict usually comes after it has gone: the ban must
    still hold when it dials back in."""
    k, repo, files, mf, mid = setup(tmp)
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    m = Node("malicious", node_args(k, "m", tmp, [
        "--manifest", mf, "--seed-dir", repo,
        "--test-corrupt-hangup" if hangup else "--test-corrupt-uploads"]))
    # b stays up after completing and would redial m (a static peer, every
    # 300 ms): it must either refuse m or, knowing m's key is banned, not
    # dial it at all.
    # m keeps sending chunks while b bans it: b must still let it read the
    # BYE saying why (a seed whose disk rotted learns it this way), not reset
    # the connection under m's writes. With |hangup| m has gone already.
    b = Node("puller", node_args(k, "b", tmp, ["--peer", m.addr, "--peer", a.addr,
                                               "--pull", mid]))
    fails = 0
    if not b.wait_for(r"release [0-9a-f]+ \(.*\) complete: ", WAIT_S):
        print("FAIL puller did not complete")
        fails += 1
    if not re.search(r"banning node .* fails its hash", b.log()):
        print("FAIL the malicious node was not banned")
        fails += 1
    if not hangup:
        told = m.wait_for(r"peer said bye: banned: sent chunk \d+ of release [0-9a-f]+ "
                          r"that fails its hash", 10)
        if not told:
            print("FAIL the malicious node was not told why it was banned")
            fails += 1
    mid_m = m.wait_for(r"shoald node ([0-9a-f]{16}) ", 5).group(1)
    port = m.addr.split(":")[1]
    kept = b.wait_for(r"peer 127\.0\.0\.1:%s refused: node is banned here|"
                      r"not redialling 127\.0\.0\.1:%s while node [0-9a-f]+ is banned"
                      % (port, port), 20)
    if not kept:
        print("FAIL the banned node was not kept out")
        fails += 1
    else:
        print("banned node kept out: " + kept.group(0))
    if b.stop() != 0:
        print("FAIL puller did not shut down cleanly")
        fails += 1
    # Its first session is the one that got it banned; it never had another.
    if len(re.findall(r"authenticated: node %s " % mid_m, b.log())) != 1:
        print("FAIL the banned node had another session with the puller")
        fails += 1
    fails += check_snapshot(tmp, "b", files)
    if a.stop() != 0 or m.stop() != 0:
        print("FAIL a seed did not shut down cleanly")
        fails += 1
    if fails:
        a.dump()
        m.dump()
        b.dump()
    return fails


def case_bad_peer_plain(tmp):
    """Bad chunks over a plain session close it without a ban."""
    k, repo, files, mf, mid = setup(tmp)
    plain = ["--no-encrypt"]
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo, *plain]))
    m = Node("malicious", node_args(k, "m", tmp, ["--manifest", mf, "--seed-dir", repo,
                                                  "--test-corrupt-uploads", *plain]))
    b = Node("puller", node_args(k, "b", tmp, ["--peer", m.addr, "--peer", a.addr,
                                               "--pull", mid, *plain]))
    fails = 0
    if not b.wait_for(r"release [0-9a-f]+ \(.*\) complete: ", WAIT_S):
        print("FAIL puller did not complete")
        fails += 1
    said = re.search(r"fails its hash; the session is plain .* node not banned", b.log())
    print(said.group(0) if said else "no plain-session verdict in the log")
    if not said:
        print("FAIL the puller did not say why it closed the plain session without a ban")
        fails += 1
    if re.search(r"banning node", b.log()):
        print("FAIL a node was banned on the word of a plain session")
        fails += 1
    fails += check_snapshot(tmp, "b", files)
    fails += shoalproc.stop_all([b, a, m])
    if fails:
        for n in (a, m, b):
            n.dump(tail=30)
    return fails


def case_manifest_queue(tmp):
    """A seed whose manifest budget (1 byte) lets one answer go at a time,
    asked by four pullers: each answer goes only when the one before it has
    been written, and every puller still gets the manifest and the whole
    release, with no answer held until the stall timeout frees it."""
    k, _, _, _, _ = setup(tmp)
    names = ("p1", "p2", "p3", "p4")
    shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL, names, names)
    # Tiny chunks, so the manifest (~20,000 chunks, ~0.7 MB) takes more
    # than one socket write and an answer stays in flight for a while.
    repo, files, mf, mid = one_file_release(tmp, k, "q", 7, 2 * 1024 * 1024 + 5, (64, 128, 256))
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--manifest-budget", "1", "--log-level", "debug"]))
    pullers = [Node(n, node_args(k, n, tmp, ["--peer", a.addr, "--pull", mid,
                                             "--exit-when-complete"])) for n in names]
    fails = 0
    for n, b in zip(names, pullers):
        rc = b.wait(WAIT_S)
        if rc != 0:
            print(f"FAIL {n} did not complete (exit {rc})")
            fails += 1
        fails += check_snapshot(tmp, n, files)
    # How many asks arrived while another answer was in flight depends on
    # timing; what must never happen is an answer whose write completion
    # went unnoticed, released only by the stall timeout.
    waited = len(re.findall(r"manifest answer waits its turn", a.log()))
    print(f"manifest answers that waited behind another: {waited}")
    if re.search(r"manifest answers not written after", a.log()):
        print("FAIL a manifest answer was only released by the stall timeout")
        fails += 1
    if a.stop() != 0:
        print("FAIL seed did not shut down cleanly")
        fails += 1
    if fails:
        a.dump()
        for b in pullers:
            b.dump()
    return fails


def case_dedup(tmp):
    """A node holding revision 1 pulls revision 2, which shares most chunks
    with it: the shared chunks are copied from its own cache, only the
    changed ones come from the peer, and the result is byte-identical."""
    k, repo, files, mf, mid = setup(tmp)
    # Revision 2: one shard edited in the middle, a new small file.
    repo2 = os.path.join(tmp, "repo2")
    shutil.copytree(repo, repo2)
    files2 = dict(files)
    shard = "model-00001-of-00002.safetensors"
    data = bytearray(files[shard])
    data[1_500_000:1_500_010] = b"0123456789"
    files2[shard] = bytes(data)
    files2["generation_config.json"] = b'{"temperature": 0.7}\n'
    for path in (shard, "generation_config.json"):
        with open(os.path.join(repo2, path), "wb") as f:
            f.write(files2[path])
    mf2 = os.path.join(tmp, "rel2.manifest")
    mid2 = shoalproc.build_manifest(SHOAL, repo2, k, mf2, commit="cd" * 20)
    total2 = sum(len(v) for v in files2.values())
    # b already holds revision 1 (seeded from a local copy), a serves revision 2.
    b0 = Node("b-rev1", node_args(k, "b", tmp, ["--manifest", mf, "--seed-dir", repo]))
    if b0.stop() != 0:
        print("FAIL seeding revision 1 did not shut down cleanly")
        return 1
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf2, "--seed-dir", repo2]))
    b = Node("puller", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid2,
                                               "--exit-when-complete"]))
    rc = b.wait(WAIT_S)
    fails = 0
    if rc != 0:
        print(f"FAIL puller did not complete (exit {rc})")
        fails += 1
    m = re.search(r"(\d+) chunks \((\d+) bytes\) copied from other releases", b.log())
    c = re.search(r"complete: (\d+) bytes, (\d+) received from peers", b.log())
    if not m or not c:
        print("FAIL no dedup or completion line")
        fails += 1
    else:
        copied, from_peers = int(m.group(2)), int(c.group(2))
        print(f"revision 2: {total2} bytes, {copied} copied locally, {from_peers} from the peer")
        if copied < total2 // 2:
            print("FAIL less than half of revision 2 was found locally")
            fails += 1
        if from_peers > total2 // 2:
            print("FAIL the peer sent more than half of revision 2")
            fails += 1
    snap = os.path.join(tmp, "cache-b", "models--org--model", "snapshots", "cd" * 20)
    for path, want in files2.items():
        try:
            with open(os.path.join(snap, path), "rb") as f:
                ok = f.read() == want
        except OSError:
            ok = False
        if not ok:
            print(f"FAIL revision 2's {path} is missing or differs")
            fails += 1
    if a.stop() != 0:
        print("FAIL seed did not shut down cleanly")
        fails += 1
    if fails:
        a.dump()
    return fails


def case_upload_slots(tmp):
    """A seed limited to one upload slot, and three pullers that also peer
    with each other: the seed uploads to one of them at a time and tells
    the others busy (its metrics count those answers), the pullers fetch
    from each other meanwhile, and all three complete with verified files."""
    k, _, _, _, _ = setup(tmp)
    names = ("p1", "p2", "p3")
    shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL, names + ("p4",), names + ("p4",))
    repo, files, mf, mid = one_file_release(tmp, k, "s", 9, 8 * 1024 * 1024 + 3,
                                            (16384, 65536, 262144))

    def sock(n):
        return os.path.join(tmp, n + ".sock")

    # The seed's rate cap keeps each upload in its queue for a while, so
    # the pullers' requests overlap however fast loopback is.
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--upload-slots", "1", "--rate-up", "16M",
                                             "--control-socket", sock("a")]))
    pullers = []
    for n in names:
        peers = [x for p in [a] + pullers for x in ("--peer", p.addr)]
        pullers.append(Node(n, node_args(k, n, tmp, [*peers, "--pull", mid,
                                                     "--control-socket", sock(n)])))
    fails = 0
    for n, b in zip(names, pullers):
        if not b.wait_for(r"\) complete: ", WAIT_S):
            print(f"FAIL {n} did not complete")
            fails += 1
        fails += check_snapshot(tmp, n, files)
    # The slot is handed on, not kept: a latecomer that knows only the seed
    # is served by it once the others are done.
    late = Node("p4", node_args(k, "p4", tmp, ["--peer", a.addr, "--pull", mid,
                                              "--exit-when-complete"]))
    rc = late.wait(WAIT_S)
    if rc != 0:
        print(f"FAIL a puller that knows only the seed did not complete (exit {rc})")
        fails += 1
    fails += check_snapshot(tmp, "p4", files)
    busy = metric(run("metrics", "--socket", sock("a")), "shoal_upload_slots_busy_total")
    shared = sum(metric(run("metrics", "--socket", sock(n)), "shoal_served_bytes_total") or 0
                 for n in names)
    print(f"seed's busy answers: {busy}; bytes the pullers served each other: {shared}")
    if not busy:
        print("FAIL the seed never told a puller busy with one upload slot")
        fails += 1
    if not shared:
        print("FAIL the pullers fetched nothing from each other")
        fails += 1
    fails += shoalproc.stop_all([a] + pullers)
    if fails:
        for n in [a] + pullers + [late]:
            n.dump()
    return fails


def case_unauth_flood(tmp):
    """Connections that never authenticate do not use up peer slots: with
    three times --max-peers of them held open (the long handshake timeout
    stands in for an attacker who reconnects as soon as one is dropped), a
    puller still dials its seed and another node still gets in; both
    complete verified."""
    k, repo, files, mf, mid = setup(tmp)
    limits = ["--max-peers", "4", "--handshake-timeout-ms", "600000"]
    flood = 12
    seed_addr = "127.0.0.1:%d" % free_port()
    # The puller is flooded before its static peer is up, so it must dial
    # the seed while the idle connections are held.
    b = Node("dialer", node_args(k, "b", tmp, ["--peer", seed_addr, "--pull", mid,
                                               "--exit-when-complete", *limits]))
    held = idle_connections(b.addr, flood)
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--listen", seed_addr, *limits]))
    held += idle_connections(a.addr, flood)
    c = Node("newcomer", node_args(k, "m", tmp, ["--peer", a.addr, "--pull", mid,
                                                 "--exit-when-complete"]))
    fails = 0
    deadline = time.monotonic() + WAIT_S
    for name, n in (("b", b), ("m", c)):
        rc = n.wait(max(1, deadline - time.monotonic()))
        if rc != 0:
            print(f"FAIL {n.name} did not complete past {flood} idle connections (exit {rc})")
            fails += 1
        fails += check_snapshot(tmp, name, files)
    # They hold no slot, but they are not dropped for others either while
    # their pool has room (--max-unauth, 64 by default).
    # Nothing is sent to a connection that has not proven anything: the
    # node's key, credential, zone and address are not given away.
    told = sum(bool(select.select([s], [], [], 0)[0]) for s in held[flood:])
    if told:
        print(f"FAIL {told} idle connections received data before sending a HELLO")
        fails += 1
    still = sum(not closed_within(s, 0.2) for s in held[flood:])
    print(f"idle connections to the seed still open: {still} of {flood}")
    if still != flood:
        print("FAIL the seed closed idle connections while its handshake pool had room")
        fails += 1
    for s in held:
        s.close()
    if a.stop() != 0:
        print("FAIL seed did not shut down cleanly")
        fails += 1
    if fails:
        for n in (a, b, c):
            n.dump()
    return fails


def puller_past_pool(tmp, k, a, mid, files, victim, what):
    """A puller dialling seed |a| past its full handshake pool completes,
    verified, and its arrival closes |victim| (|what|). Returns failures."""
    fails = 0
    b = Node("puller", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid,
                                               "--exit-when-complete"]))
    rc = b.wait(WAIT_S)
    if rc != 0:
        print(f"FAIL puller did not complete past a full handshake pool (exit {rc})")
        fails += 1
    fails += check_snapshot(tmp, "b", files)
    if not closed_within(victim, 10):
        print(f"FAIL the puller's connection did not evict {what}")
        fails += 1
    if fails:
        b.dump()
    return fails


def case_unauth_evict(tmp):
    """A full handshake pool (--max-unauth) closes its oldest connection
    to admit each new one, logging it once (not once per eviction), and a
    real node arriving last still completes its pull."""
    k, repo, files, mf, mid = setup(tmp)
    pool, flood = 4, 10
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--max-unauth", str(pool),
                                             "--handshake-timeout-ms", "600000"]))
    held = idle_connections(a.addr, flood)
    fails = 0
    gone = [closed_within(s, 10 if i == flood - pool - 1 else 0.2)
            for i, s in enumerate(held)]
    print("idle connections closed by the seed: " + "".join("x" if g else "." for g in gone))
    if gone != [True] * (flood - pool) + [False] * pool:
        print(f"FAIL the seed did not keep exactly the newest {pool} idle connections")
        fails += 1
    # The puller's arrival evicts the oldest one left.
    fails += puller_past_pool(tmp, k, a, mid, files, held[flood - pool], "the oldest idle one")
    for s in held:
        s.close()
    logged = len(re.findall(r"closed: evicted, the oldest handshake of the address holding "
                            r"the most \(\d+ of %d" % pool, a.log()))
    print(f"eviction lines logged: {logged} for {flood - pool + 1} evictions")
    if not 1 <= logged < flood - pool + 1:
        print("FAIL evictions were not logged, or logged one line each")
        fails += 1
    if a.stop() != 0:
        print("FAIL seed did not shut down cleanly")
        fails += 1
    if fails:
        a.dump()
    return fails


def case_cred_expiry(tmp):
    """A credential's end applies to a live session: a puller fetching
    slowly and an idle node, both with credentials that expire ten seconds
    after they are issued, are disconnected by the seed at expiry (the idle
    one told why); the puller receives no chunk after that and its redials
    are refused, and then come rarely (not every --reconnect-ms)."""
    expire_s = 10
    k, _, _, _, _ = setup(tmp)
    repo, files, mf, mid = one_file_release(tmp, k, "x", 11, 8 * 1024 * 1024,
                                            (16384, 65536, 262144))
    # 256 KiB/s: the release would take half a minute, well past expiry.
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--rate-up", "256K"]))
    # Issued only now, so the nodes have most of the ten seconds to connect.
    shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL, ("s", "i"), ())
    ends = []
    for n in ("s", "i"):
        out = run("cred", "issue", "--cluster-key", k("cluster"), "--node", k(n) + ".pub",
                  "--out", k(n) + ".cred", "--days", repr(expire_s / 86400))
        ends.append(calendar.timegm(time.strptime(
            re.search(r"expires (.* UTC)", out).group(1), "%Y-%m-%d %H:%M:%S UTC")))
    end = min(ends)  # the first of the two to expire
    sock = os.path.join(tmp, "s.sock")
    s = Node("slow", node_args(k, "s", tmp, ["--peer", a.addr, "--pull", mid,
                                             "--control-socket", sock]))
    i = Node("idle", node_args(k, "i", tmp, ["--peer", a.addr]))
    ids = {n.name: n.wait_for(r"shoald node ([0-9a-f]{16}) ", 5).group(1) for n in (s, i)}
    fails = 0

    def chunks():
        return metric(run("metrics", "--socket", sock), "shoal_chunks_verified_total")

    for n in (s, i):
        if not a.wait_for(r"authenticated: node %s " % ids[n.name], max(1, end - time.time())):
            print(f"FAIL {n.name} did not authenticate before its credential expired")
            fails += 1
    if fails:
        a.dump()
        return fails
    while time.time() < end and not chunks():
        time.sleep(0.2)
    before = chunks()
    print(f"chunks the slow puller verified before expiry: {before}")
    for n in (s, i):
        if not a.wait_for(r"credential of node %s expired, closing" % ids[n.name],
                          end - time.time() + 20):
            print(f"FAIL the seed kept {n.name}'s session past its credential's end")
            fails += 1
    if not i.wait_for(r"closed: peer said bye: credential expired", 10):
        print("FAIL the idle node was not told its credential expired")
        fails += 1
    # The puller has seen the close (reset or BYE) when it logs it; only
    # then is nothing of the session left in flight.
    s.wait_for(r"peer %s closed: " % re.escape(a.addr), 10)
    after = chunks()
    time.sleep(2)
    later = chunks()
    print(f"slow puller's chunks at the close: {after}, 2 s later: {later}")
    if later != after:
        print("FAIL the slow puller received chunks after its credential expired")
        fails += 1
    if not before:
        print("FAIL the slow puller fetched nothing before expiry")
        fails += 1
    if re.search(r"\) complete: ", s.log()):
        print("FAIL the slow puller completed the release")
        fails += 1
    if not a.wait_for(r"refused: credential rejected: expired", 10):
        print("FAIL the seed did not refuse a redial with the expired credential")
        fails += 1
    else:
        # Once refused, the nodes redial rarely (10 s, doubling), not every
        # --reconnect-ms (2 s), which filled both sides' logs. Over the 14 s
        # after the first refusal each node is refused at most three times:
        # a dial its own clock still saw valid (the seed's, a moment later,
        # did not), the first rare redial, once it knows, and the one 10 s
        # later; every 2 s would be about seven each.
        rx = r"^(\S+)Z warn  peer \S+ refused: credential rejected: expired"
        first = time.monotonic()
        time.sleep(14)
        at = [calendar.timegm(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) + float(t[19:])
              for t in re.findall(rx, a.log(), re.M)]
        within = [t for t in at if t - at[0] <= 14] if at else []
        print(f"seed refusals of expired credentials: {len(at)}; in the 14 s after the "
              f"first: {len(within)} (slept {time.monotonic() - first:.1f} s)")
        if len(within) > 6:
            print("FAIL nodes with expired credentials kept redialling every few seconds")
            fails += 1
    for n in (s, i):
        # A reconnect before expiry (a slow handshake on a loaded machine)
        # is fine; no session may start after it.
        log = a.log()
        end_at = log.find("credential of node %s expired" % ids[n.name])
        got = len(re.findall(r"authenticated: node %s " % ids[n.name], log[end_at:]))
        if end_at < 0 or got != 0:
            print(f"FAIL {n.name} had {got} sessions with the seed after its credential ended")
            fails += 1
    fails += shoalproc.stop_all([a, s, i])
    if fails:
        for n in (a, s, i):
            n.dump()
    return fails


def case_hello_replay(tmp):
    """A HELLO replayed by someone who saw it on the network does not stand
    for its node: a connection that sent node b's captured HELLO and then
    waits (it cannot answer the HELLO_AUTH challenge) neither makes the seed
    refuse b's real connection as a duplicate nor replaces it; b completes
    verified while the replay is held open."""
    k, repo, files, mf, mid = setup(tmp)
    hello, fails = capture_hello(tmp, k, "b")
    if not hello:
        return fails
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--handshake-timeout-ms", "600000"]))
    host, port = a.addr.rsplit(":", 1)
    replay = socket.create_connection((host, int(port)), timeout=10)
    replay.sendall(hello)
    # The seed sent its HELLO on accept; its second frame (HELLO_AUTH) comes
    # once it has verified the replayed HELLO: only then does b dial.
    if frames_within(replay, 2, 10) < 2:
        print("FAIL the seed did not answer the replayed HELLO")
        return fails + 1
    b = Node("b", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid,
                                          "--exit-when-complete"]))
    rc = b.wait(WAIT_S)
    if rc != 0:
        print(f"FAIL b did not complete while its replayed HELLO was held open (exit {rc})")
        fails += 1
    fails += check_snapshot(tmp, "b", files)
    if re.search(r"duplicate connection", a.log()):
        print("FAIL the seed took the replayed HELLO for a connection of b's")
        fails += 1
    if closed_within(replay, 0.2):
        print("FAIL the seed dropped the replay early (the test proves nothing)")
        fails += 1
    replay.close()
    fails += shoalproc.stop_all([a])
    if fails:
        for n in (a, b):
            n.dump()
    return fails


def case_liar(tmp):
    """A credentialed peer that announces every chunk and then serves none:
    answering "unknown" withdraws its claim chunk by chunk (no request loop),
    and one that lets requests time out is banned; an honest seed that
    comes later then gets the release through."""
    k, repo, files, mf, mid = setup(tmp)
    shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL, ["y"], ["y"])
    nch = int(re.search(r"(\d+) chunks", run("manifest", "show", mf)).group(1))
    b = Node("puller", node_args(k, "b", tmp, ["--manifest", mf, "--request-timeout-ms", "1500"]))
    fails = 0
    for how, key in (("busy", "y"), ("reject", "m"), ("ignore", "x")):
        h = subprocess.run([HOSTILE, b.addr, k(key), k(key) + ".cred", k("cluster") + ".pub",
                            "liar", mid, str(nch), "6", how], capture_output=True, text=True,
                           timeout=60)
        m = re.search(r"requests (\d+)", h.stdout)
        reqs = int(m.group(1)) if m else None
        closed = "closed by the node" in h.stdout
        print(f"liar ({how}): {reqs} requests in 6 s for {nch} chunks"
              f"{', closed by the node' if closed else ''}")
        if reqs is None:
            print(f"FAIL the liar did not get through: {h.stdout} {h.stderr}")
            fails += 1
        elif how == "reject" and not nch // 2 <= reqs <= nch:
            # Each chunk once at most (no loop), yet the others still asked
            # for after one is refused: it is the only source here.
            print(f"FAIL a peer answering 'unknown' was asked {reqs} times for {nch} chunks")
            fails += 1
        elif how == "busy" and (reqs > nch + 300 or not b.wait_for(
                r"has answered busy, with no chunk, for 1500 ms", 5)):
            # Asked again after each busy (10 ms back-off) for one
            # time-out, then each chunk once more at most as its claims go.
            print(f"FAIL a peer answering busy to everything was asked {reqs} times, "
                  "or its claims were not dropped after a time-out")
            fails += 1
        elif how == "ignore" and not closed:
            print("FAIL a peer that answered no request was not disconnected")
            fails += 1
    if not b.wait_for(r"banning node .*announced chunks of release .* but sent none", 10):
        print("FAIL the silent peer was not banned, saying why")
        fails += 1
    return fails + honest_seed_finishes(k, tmp, mf, repo, b, files, fails)


def case_unknown_codec(tmp):
    """A peer that answers requests with CHUNKs of a codec this node does
    not know (as a newer version would) is disconnected with a BYE saying
    so, and not banned: it connects again and is asked again."""
    k, repo, files, mf, mid = setup(tmp)
    nch = int(re.search(r"(\d+) chunks", run("manifest", "show", mf)).group(1))
    b = Node("puller", node_args(k, "b", tmp, ["--manifest", mf]))
    fails = 0
    for attempt in (1, 2):
        h = subprocess.run([HOSTILE, b.addr, k("x"), k("x") + ".cred", k("cluster") + ".pub",
                            "codec", mid, str(nch), "7", "6"], capture_output=True, text=True,
                           timeout=60)
        print(f"attempt {attempt}: {h.stdout.strip()} {h.stderr.strip()}".replace("\n", ", "))
        m = re.search(r"requests (\d+)", h.stdout)
        if not m or int(m.group(1)) == 0:
            print(f"FAIL attempt {attempt}: the peer was not asked for a chunk (banned?)")
            fails += 1
        if "closed by the node" not in h.stdout or not re.search(
                r"bye: CHUNK with codec 7, which this node does not know", h.stdout):
            print(f"FAIL attempt {attempt}: not closed with a BYE naming the codec")
            fails += 1
    mt = run("metrics", "--socket", b.ctl)
    if re.search(r"banning node|is banned", b.log()) or metric(mt, "shoal_bans_total") != 0:
        print("FAIL the peer was banned for a codec it is newer than")
        fails += 1
    if not b.wait_for(r"peer \S+ answered the request for chunk \d+ with a CHUNK with codec 7, "
                      r"which this node does not know \(a newer shoal version\?\): closing, "
                      r"not banning", 1):
        print("FAIL the log does not say why the peer was closed")
        fails += 1
    return fails + honest_seed_finishes(k, tmp, mf, repo, b, files, fails)


def case_unsolicited(tmp):
    """A peer that streams CHUNKs answering no request (each costs the
    node a decrypt at wire speed) is closed at the first, saying why; an
    honest seed then serves the release."""
    k, repo, files, mf, mid = setup(tmp)
    b = Node("puller", node_args(k, "b", tmp, ["--manifest", mf]))
    h = subprocess.run([HOSTILE, b.addr, k("x"), k("x") + ".cred", k("cluster") + ".pub",
                        "unsolicited", "200", str(1 << 20), "20"], capture_output=True,
                       text=True, timeout=60)
    print(h.stdout.strip().replace("\n", ", "), h.stderr.strip())
    fails = 0
    m = re.search(r"sent (\d+)", h.stdout)
    if "closed by the node" not in h.stdout or "bye: CHUNK not asked for" not in h.stdout:
        print("FAIL the peer sending unasked CHUNKs was not closed with a BYE saying why")
        fails += 1
    if not m:
        print("FAIL the hostile peer did not run")
        fails += 1
    if not b.wait_for(r"peer \S+ sent a CHUNK this node did not ask for \(more answers than "
                      r"requests on this connection\), closing", 5):
        print("FAIL the log does not say why the peer was closed")
        fails += 1
    n = len(re.findall(r"sent a CHUNK this node did not ask for", b.log()))
    if n != 1:
        print(f"FAIL {n} unasked CHUNKs were looked at, not the first alone")
        fails += 1
    return fails + honest_seed_finishes(k, tmp, mf, repo, b, files, fails)


def case_idle_peer(tmp):
    """With --peer-idle-ms 3000: an authenticated peer that sends nothing,
    and one that sends a frame a byte a second, are closed within a few
    seconds saying why (each held a peer slot for ever before); two honest
    nodes left idle far longer stay connected (PING and PONG)."""
    k, repo, files, mf, mid = setup(tmp)
    idle = ["--peer-idle-ms", "3000"]
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo, *idle]))
    b = Node("puller", node_args(k, "b", tmp, ["--manifest", mf, "--peer", a.addr, *idle]))
    fails = 0
    for mode, args, rx in (("silent", ["20"], r"bye: nothing received for 3 s \(a PING "
                                              r"unanswered\)"),
                           ("slowframe", [str(1 << 20), "20"], None)):
        h = subprocess.run([HOSTILE, a.addr, k("x"), k("x") + ".cred", k("cluster") + ".pub",
                            mode, *args], capture_output=True, text=True, timeout=60)
        print(f"{mode}: {h.stdout.strip()} {h.stderr.strip()}".replace("\n", ", "))
        if "closed by the node" not in h.stdout or (rx and not re.search(rx, h.stdout)):
            print(f"FAIL the {mode} peer was not closed saying why")
            fails += 1
    if not a.wait_for(r"peer \S+: a frame trickles in \(\d+ bytes in the last \d+ s\), "
                      r"closing", 5):
        print("FAIL the seed did not log closing the trickling peer")
        fails += 1
    r = subprocess.run([SHOAL, "pull", mid, "--socket", b.ctl, "--timeout", str(WAIT_S)],
                       capture_output=True, text=True, timeout=WAIT_S + 30)
    if r.returncode != 0:
        print(f"FAIL the honest pull did not complete: {r.stderr.strip()}")
        fails += 1
    time.sleep(8)  # well past 3 s of nothing to send: PINGs keep them
    # (the seed's one such line is the silent hostile peer's)
    seen = [x for x in (a.log() + "\n" + b.log()).splitlines()
            if re.search(r"nothing received for \d+ s .*, closing", x)]
    if len(seen) != 1:
        print("\n".join(seen))
        print("FAIL an honest idle peer was closed as silent")
        fails += 1
    peers = run("peers", "--socket", b.ctl)
    print(peers.strip())
    if a.addr not in peers:
        print("FAIL the idle honest nodes are not connected any more")
        fails += 1
    return fails


def case_bad_manifest(tmp):
    """A peer that answers the puller's WANT_MANIFEST with 200 copies of the
    manifest, its signature broken: the puller checks one, closes the
    connection saying why, and checks no more; an honest seed that comes
    later still gets the release through."""
    k, repo, files, mf, mid = setup(tmp)
    b = Node("puller", node_args(k, "b", tmp))
    fails = 0
    pull = subprocess.Popen([SHOAL, "pull", mid, "--socket", b.ctl, "--timeout", str(WAIT_S),
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    if not b.wait_for(r"pull %s asked by" % mid, 10):
        print("FAIL the pull was not asked for")
        fails += 1
    h = subprocess.run([HOSTILE, b.addr, k("x"), k("x") + ".cred", k("cluster") + ".pub",
                        "manifest", mf, "200", "10"], capture_output=True, text=True,
                       timeout=60)
    print(h.stdout.strip().replace("\n", ", "), h.stderr.strip())
    checked = len(re.findall(r"sent manifest [0-9a-f]+ that we refuse", b.log()))
    print(f"the puller checked {checked} of them")
    if "never asked" in h.stdout or not re.search(r"sent \d+", h.stdout):
        print("FAIL the hostile peer was never asked for the manifest")
        fails += 1
    if checked != 1:
        print(f"FAIL the puller checked {checked} bad manifests from one peer, not 1")
        fails += 1
    if "closed by the node" not in h.stdout or not b.wait_for(
            r"that we refuse: bad signature; closing the connection", 1):
        print("FAIL the peer that sent a badly signed manifest was not disconnected, "
              "saying why")
        fails += 1
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--peer", b.addr]))
    try:
        out, _ = pull.communicate(timeout=WAIT_S + 10)
    except subprocess.TimeoutExpired:
        pull.kill()
        out, _ = pull.communicate()
    if pull.returncode != 0:
        print(f"FAIL the pull did not complete from the honest seed: {out}")
        fails += 1
    fails += check_snapshot(tmp, "b", files)
    fails += shoalproc.stop_all((a, b))
    if fails:
        b.dump(80)
    return fails


def case_cut_seed(tmp):
    """A seed whose cached file was cut short after it was verified (a tool
    writing through the snapshot link): it says so once per chunk it cannot
    read and stops offering them, instead of failing the same reads in a
    loop with the puller; the puller gets the rest from it and the cut
    chunks from a second seed."""
    k, repo, files, mf, mid = setup(tmp)
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    fails = 0
    if not a.wait_for(r"imported \d+ chunks from", WAIT_S):
        print("FAIL the seed did not import the release")
        return 1
    snap = os.path.join(tmp, "cache-a", "models--org--model", "snapshots", "ab" * 20)
    cut = "model-00001-of-00002.safetensors"
    with open(os.path.join(snap, cut), "r+b") as f:
        f.truncate(len(files[cut]) // 3)
    b = Node("puller", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid]))
    # Bounded wait: the other files arrive, the cut chunks never do.
    end = time.monotonic() + 30
    while time.monotonic() < end:
        time.sleep(0.5)
        if "model-00002-of-00002.safetensors" in b.log() and \
                len(re.findall(r"complete and verified", b.log())) >= 3:
            break
    time.sleep(2)  # a request loop would show in these seconds
    reads = len(re.findall(r"cannot read chunk \d+ of \S*%s from the store" % re.escape(cut),
                           a.log()))
    print(f"seed: {reads} lines on unreadable chunks of the file; puller: "
          f"{len(re.findall(r'complete and verified', b.log()))} files complete")
    if reads != 1:
        print(f"FAIL the seed logged {reads} unreadable chunks of {cut}, want 1 line")
        fails += 1
    if "no longer serving the chunks of this file" not in a.log():
        print("FAIL the seed did not say it stops serving the unreadable chunks")
        fails += 1
    st = run("status", "--socket", a.ctl)
    if "UNREADABLE ON DISK: " + cut not in st:
        print(f"FAIL the seed's status does not name the unreadable file:\n{st}")
        fails += 1
    c = Node("seed2", node_args(k, "m", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--peer", b.addr]))
    if not b.wait_for(r"release [0-9a-f]+ \(.*\) complete", WAIT_S):
        print("FAIL the puller did not complete with a second seed")
        fails += 1
    fails += check_snapshot(tmp, "b", files)
    fails += shoalproc.stop_all((a, b, c))
    if fails:
        a.dump(40)
        b.dump(40)
    return fails


def case_hello_budget(tmp):
    """Replaying a captured HELLO costs a node a bounded amount of work: from
    one address, past --hello-rate 2 (bursts of 4) HELLOs a second, the
    seed refuses them unchecked with a BYE that gives nothing of it away,
    logs that once (not once per replay), and a real node from another
    address still gets in and completes."""
    k, repo, files, mf, mid = setup(tmp)
    hello, fails = capture_hello(tmp, k, "b")
    if not hello:
        return fails
    rate = 2
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--hello-rate", str(rate)]))
    host, port = a.addr.rsplit(":", 1)
    answered = refused = other = tries = 0
    t0 = time.monotonic()
    while tries < 200 and refused < 20:
        tries += 1
        s = socket.create_connection((host, int(port)), timeout=10,
                                     source_address=("127.0.0.2", 0))
        s.sendall(hello)
        got = read_frames(s, 2, 10)
        s.close()
        if a.addr.encode() in got:
            answered += 1  # the seed's HELLO: it checked the replay
        elif b"too many handshakes" in got:
            refused += 1
        else:
            other += 1
    took = time.monotonic() - t0
    # What the budget allows in the time the replays took, with a token of
    # slack for the clocks' ticks.
    allowed = 2 * rate + rate * took + 1
    print(f"replays from 127.0.0.2: {tries}, answered {answered} (allowed {allowed:.1f}), "
          f"refused {refused}, other {other}")
    if answered > allowed or not refused:
        print("FAIL the seed checked and answered replayed HELLOs beyond --hello-rate")
        fails += 1
    if other:
        print("FAIL replays got neither the seed's answer nor a refusal")
        fails += 1
    logged = len(re.findall(r"HELLOs a second from its address \(hello-rate\)", a.log()))
    print(f"refusal lines logged: {logged} for {refused} refusals")
    if refused and not 1 <= logged < refused:
        print("FAIL refusals were not logged, or logged one line each")
        fails += 1
    counted = metric(run("metrics", "--socket", a.ctl), "shoal_hello_refused_total")
    print(f"shoal_hello_refused_total {counted}")
    if counted is None or counted < refused:
        print(f"FAIL shoal metrics does not count the {refused} refused HELLOs")
        fails += 1
    b = Node("b", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid,
                                          "--exit-when-complete"]))
    rc = b.wait(WAIT_S)
    if rc != 0:
        print(f"FAIL b did not complete from 127.0.0.1 after the replays (exit {rc})")
        fails += 1
    fails += check_snapshot(tmp, "b", files)
    fails += shoalproc.stop_all([a])
    if fails:
        for n in (a, b):
            n.dump()
    return fails


def case_unauth_source(tmp):
    """One address opening idle connections as fast as it can (127.0.0.2)
    into a full handshake pool (--max-unauth 8) evicts its own, not a
    handshake in progress from another address (127.0.0.1): before, that
    one was the first evicted. A real node from 127.0.0.1 then still gets in
    and completes, evicting one of 127.0.0.2's."""
    k, repo, files, mf, mid = setup(tmp)
    pool, flood = 8, 30
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--max-unauth", str(pool),
                                             "--handshake-timeout-ms", "600000"]))
    slow = idle_connections(a.addr, 1)[0]
    held = idle_connections(a.addr, flood, src="127.0.0.2")
    fails = 0
    if closed_within(slow, 0.5):
        print("FAIL the flood from 127.0.0.2 evicted 127.0.0.1's handshake in progress")
        fails += 1
    keep = pool - 1
    gone = [closed_within(s, 10 if i == flood - keep - 1 else 0.2) for i, s in enumerate(held)]
    print("127.0.0.2's connections closed by the seed: " +
          "".join("x" if g else "." for g in gone))
    if gone != [True] * (flood - keep) + [False] * keep:
        print(f"FAIL the seed did not keep exactly 127.0.0.2's newest {keep}")
        fails += 1
    fails += puller_past_pool(tmp, k, a, mid, files, held[flood - keep], "127.0.0.2's oldest")
    if closed_within(slow, 0.2):
        print("FAIL 127.0.0.1's handshake in progress was evicted")
        fails += 1
    logged = len(re.findall(r"closed: evicted, the oldest handshake of the address holding "
                            r"the most \(\d+ of %d" % pool, a.log()))
    print(f"eviction lines logged: {logged} for {flood - keep + 1} evictions")
    if not 1 <= logged < flood - keep + 1:
        print("FAIL evictions were not logged, or logged one line each")
        fails += 1
    counted = metric(run("metrics", "--socket", a.ctl), "shoal_handshake_evictions_total")
    print(f"shoal_handshake_evictions_total {counted}")
    if counted != flood - keep + 1:
        print(f"FAIL shoal metrics does not count the {flood - keep + 1} evictions")
        fails += 1
    for s in held + [slow]:
        s.close()
    return shoalproc.finish(fails, [a])


def ping_flood(tmp, floods, budget, limit, what, seed_args=()):
    """Credentialed peers (keys |floods|) that flood PINGs and never read
    the PONGs may grow the seed (--max-queue-total |budget|, None: its
    default; more |seed_args|) by at most |limit| MiB, and the seed keeps
    serving, answering every request."""
    k, repo, files, mf, mid = setup(tmp)
    shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL,
                        [f for f in floods if f != "x"], [f for f in floods if f != "x"])
    # Under AddressSanitizer freed memory waits in a 256 MiB quarantine and
    # counts in RSS: keep it small so the figure is the queues'.
    os.environ["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") +
                                  ":quarantine_size_mb=16").lstrip(":")
    extra = (["--max-queue-total", budget] if budget else []) + list(seed_args)
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo, *extra]))
    fails = 0
    time.sleep(0.5)
    before = shoalproc.rss_kib(a.p.pid) / 1024
    hs = [subprocess.Popen([HOSTILE, a.addr, k(f), k(f) + ".cred", k("cluster") + ".pub",
                            "ping", "2000000", "8"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=dict(os.environ, HOLD="60"))
          for f in floods]
    sent = []
    deadline = time.monotonic() + 60
    for h in hs:
        r, _, _ = select.select([h.stdout], [], [], max(0.1, deadline - time.monotonic()))
        m = re.match(r"sent (\d+)", h.stdout.readline()) if r else None
        sent.append(int(m.group(1)) if m else None)
    time.sleep(1)
    after = shoalproc.rss_kib(a.p.pid) / 1024
    print(f"PINGs sent without reading, per peer: {sent}; seed RSS {before:.0f} -> "
          f"{after:.0f} MiB ({what})")
    if any(n is None or n < 10000 for n in sent):
        print("FAIL a hostile peer did not get through its handshake and flood")
        fails += 1
    elif after - before > limit:
        print(f"FAIL peers that never read grew the seed's memory by more than {limit} MiB")
        fails += 1
    c = Node("puller", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid,
                                               "--exit-when-complete"]))
    rc = c.wait(WAIT_S)
    if rc != 0:
        print(f"FAIL an honest puller did not complete from the flooded seed (exit {rc})")
        fails += 1
    # Every request is answered, a chunk or a REJECT, however full the
    # seed's queues: one dropped unanswered costs a whole request time-out.
    late = re.findall(r"did not answer request for chunk \d+", c.log())
    if late:
        print(f"FAIL the seed left {len(late)} of the puller's requests unanswered "
              f"until their time-out")
        fails += 1
    fails += check_snapshot(tmp, "b", files)
    for h in hs:
        h.kill()
        h.wait()
    if a.stop() != 0:
        print("FAIL seed did not shut down cleanly")
        fails += 1
    if fails:
        for n in (a, c):
            n.dump(tail=30)
    return fails


def case_ping_flood(tmp):
    """One such peer is held to the seed's per-peer write queue (64 MiB)."""
    return ping_flood(tmp, ("x",), None, 400, "one peer may queue 64 MiB")


def case_queue_budget(tmp):
    """Four such peers hold the node-wide --max-queue-total between them,
    not 64 MiB each (244 MiB without the budget). With --max-peers 250 the
    honest puller's share of the spent budget (128 KiB) holds about two of
    its chunks: the seed, short of room for the rest of those asked for,
    tells it busy rather than drop them."""
    return ping_flood(tmp, ("x", "f2", "f3", "f4"), "32M", 130,
                      "each peer alone may queue 64 MiB; all together 32 MiB",
                      ["--max-peers", "250"])


def case_tracker_lies(tmp):
    """A lying tracker's peer lists neither fill the peer slots nor make the
    node dial itself."""
    k, repo, files, mf, mid = setup(tmp)
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(512)
    sink_addr = "127.0.0.1:%d" % sink.getsockname()[1]
    own = "127.0.0.1:%d" % free_port()
    trk = shoalproc.Proc([FAKE_TRACKER, f"{sink_addr},{own}"], name="fake-tracker")
    m = trk.wait_for(r"listening on (\S+)", 10, stdout=True)
    if not m:
        trk.dump()
        return 1
    fails = 0
    t_start = time.monotonic()
    # The release is open from the start (its manifest given), so the puller
    # asks the tracker for peers before any real one is there.
    b = Node("puller", node_args(k, "b", tmp, ["--listen", own, "--tracker", m.group(1),
                                               "--manifest", mf, "--max-peers", "8"]))
    if not trk.wait_for(r"PEERS \d+", 20, stdout=True):
        print("FAIL the puller never asked the lying tracker for peers")
        fails += 1
    time.sleep(2)  # the lists have been tried for a while before the seed comes
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--peer", b.addr]))
    t0 = time.monotonic()
    done = b.wait_for(r"release \S+ \(org/model@\S+\) complete: ", WAIT_S)
    took = time.monotonic() - t0
    accepted = []
    sink.setblocking(False)
    while True:
        try:
            accepted.append(sink.accept()[0])
        except BlockingIOError:
            break
    window = time.monotonic() - t_start
    print(f"complete: {bool(done)}, {took:.1f} s after the seed started; the silent socket "
          f"was dialled {len(accepted)} times in about {window:.0f} s")
    if not done:
        print("FAIL the puller did not complete: a lying tracker's lists kept the seed out")
        fails += 1
    if len(accepted) > window / 5 + 2:
        print("FAIL the silent address was dialled more than once per 5 s")
        fails += 1
    if re.search(r"connected to ourselves", b.log()):
        print("FAIL the puller dialled its own address")
        fails += 1
    fails += check_snapshot(tmp, "b", files)
    for s in accepted:
        s.close()
    sink.close()
    fails += shoalproc.stop_all([a, b])
    if fails:
        for n in (a, b):
            n.dump(tail=30)
    return fails


def seeding(node):
    """Whether |node| imported its --seed-dir release and seeds it (its log
    is dumped if not)."""
    if node.wait_for(r"is complete here: seeding", 20):
        return True
    print("FAIL the seed did not import the release")
    node.dump()
    return False


def others_without_ban(puller, paths, who):
    """Waits for |puller| to verify each of |paths| from the seed, then a
    little longer for a ban: a bad chunk would have come with the rest.
    Returns the failures."""
    deadline = time.monotonic() + WAIT_S
    for path in paths:
        got = puller.wait_for(r"%s complete and verified|banning node" % re.escape(path),
                              max(1, deadline - time.monotonic()))
        if not got or got.group(0) == "banning node":
            print(f"FAIL {who} did not get {path} from the seed")
            return 1
    banned = puller.wait_for(r"banning node", 3)
    if banned:
        print(f"FAIL {who} banned the seed: " + banned.group(0))
        return 1
    return 0


def partial_of(blob, tag=None):
    """Where shoald fills blob |blob| (a path in blobs/): the repo's
    .shoal/<sha>.incomplete, or with |tag| .shoal/<sha>.<tag>.incomplete."""
    repo = os.path.dirname(os.path.dirname(blob))
    name = os.path.basename(blob) + ("." + tag if tag else "") + ".incomplete"
    return os.path.join(repo, ".shoal", name)


def flip_middle_byte(snap):
    """Flips the byte in the middle of the blob snapshot link |snap| points
    at, as bit rot would (its mode is put back)."""
    blob = os.path.realpath(snap)
    size = os.path.getsize(blob)
    mode = os.stat(blob).st_mode & 0o777
    os.chmod(blob, mode | 0o200)
    with open(blob, "r+b") as f:
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 1]))
    os.chmod(blob, mode)
    return blob


def case_disk_rot(tmp):
    k, repo, files, mf, mid = setup(tmp)
    shard = "model-00001-of-00002.safetensors"
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    fails = 0
    if not seeding(a):
        return 1
    snap = os.path.join(tmp, "cache-a", "models--org--model", "snapshots", "ab" * 20, shard)
    # As root writing through the snapshot link would (the blob is read-only
    # to anyone else), or bit rot.
    flip_middle_byte(snap)
    # The second seed's address is known before it runs: the first puller
    # has only the rotten seed until it has banned it.
    h_addr = "127.0.0.1:%d" % free_port()
    h_args = node_args(k, "m", tmp, ["--manifest", mf, "--seed-dir", repo, "--listen", h_addr])
    p1 = Node("puller1", node_args(k, "b", tmp, ["--peer", a.addr, "--peer", h_addr,
                                                 "--pull", mid]))
    if not p1.wait_for(r"banning node .* fails its hash", WAIT_S):
        print("FAIL the first puller did not ban the seed for the changed chunk")
        fails += 1
    h = Node("seed2", h_args)
    if not p1.wait_for(r"release [0-9a-f]+ \(.*\) complete: ", WAIT_S):
        print("FAIL the first puller did not complete from the second seed")
        fails += 1
    fails += check_snapshot(tmp, "b", files)
    err = a.wait_for(r"cached file \S*%s changed on disk after it was verified: chunk \d+"
                     % re.escape(shard), 20)
    print(err.group(0) if err else "no corruption error on the seed")
    if not err or not re.search(r"Z error .*" + re.escape(err.group(0)), a.log()):
        print("FAIL the seed did not log an error naming the changed file and chunk")
        fails += 1
    scanned = a.wait_for(r"%s: (\d+) of its (\d+) chunks changed on disk" % re.escape(shard), 20)
    if not scanned or scanned.group(1) != "1":
        print("FAIL the seed did not hash the file again and find one bad chunk")
        fails += 1
    st = run("status", "--socket", a.ctl)
    if not re.search(r"CORRUPT ON DISK: %s" % re.escape(shard), st):
        print("FAIL `shoal status` on the seed does not name the corrupt file:\n" + st)
        fails += 1
    # The second puller has only the rotten seed until it has taken all
    # that seed offers; the second seed then comes back for the rest.
    if h.stop() != 0:
        print("FAIL the second seed did not shut down cleanly")
        fails += 1
    p2 = Node("puller2", node_args(k, "x", tmp, ["--peer", a.addr, "--peer", h_addr,
                                                 "--pull", mid, "--exit-when-complete"]))
    fails += others_without_ban(p2, [p for p in files if p != shard], "the second puller")
    h = Node("seed2", h_args)
    rc = p2.wait(WAIT_S)
    if rc != 0:
        print(f"FAIL the second puller did not complete (exit {rc})")
        fails += 1
    if re.search(r"banning node", p2.log()):
        print("FAIL the second puller banned a node")
        fails += 1
    fails += check_snapshot(tmp, "x", files)
    fails += shoalproc.stop_all([p1, h, a])
    if fails:
        for n in (a, h, p1, p2):
            n.dump(tail=40)
    return fails


def case_disk_rot_repair(tmp):
    import shoal_loader
    k, repo, files, mf, mid = setup(tmp)
    shard = "model-00001-of-00002.safetensors"
    name = "org/model@" + "ab" * 20
    trk, taddr = shoalproc.start_tracker(TRACKER, k)
    if not taddr:
        return 1
    sock = os.path.join(tmp, "a-loader.sock")
    a_args = node_args(k, "a", tmp, ["--manifest", mf, "--tracker", taddr, "--no-origin",
                                     "--loader-socket", sock])
    a = Node("seed", a_args[:] + ["--seed-dir", repo])
    fails = 0
    if not seeding(a):
        return 1
    snap = os.path.join(tmp, "cache-a", "models--org--model", "snapshots", "ab" * 20, shard)
    flip_middle_byte(snap)

    def tracker_complete(want, timeout):
        """Polls the tracker until it counts |want| complete nodes; the last count."""
        end, n = time.monotonic() + timeout, None
        while time.monotonic() < end:
            out = run("rollout", name, "--status", "--tracker", taddr, "--key", k("x"),
                      "--cred", k("x") + ".cred")
            got = re.search(r"(\d+) nodes? complete", out)
            n = int(got.group(1)) if got else None
            if n == want:
                break
            time.sleep(0.3)
        return n

    if tracker_complete(1, 20) != 1:
        print("FAIL the tracker never counted the seed complete")
        fails += 1
    h_addr = "127.0.0.1:%d" % free_port()
    h_args = node_args(k, "m", tmp, ["--manifest", mf, "--seed-dir", repo, "--listen", h_addr,
                                     "--tracker", taddr])
    p1 = Node("puller1", node_args(k, "b", tmp, ["--peer", a.addr, "--peer", h_addr,
                                                 "--pull", mid, "--no-origin"]))
    if not p1.wait_for(r"banning node .* fails its hash", WAIT_S):
        print("FAIL the first puller did not ban the seed for the changed chunk")
        fails += 1
    took = a.wait_for(r"%s: fetching its (\d+) bad chunks again" % re.escape(shard), 20)
    if not took or took.group(1) != "1":
        print("FAIL the seed did not take back its one bad chunk to fetch it again")
        fails += 1
    # (3) What the seed serves, not complete, reaches the tracker.
    n = tracker_complete(0, 10)
    print(f"tracker: {n} nodes complete while the seed withholds a chunk")
    if n != 0:
        print("FAIL the seed still announces the release complete while it withholds a chunk")
        fails += 1
    # (1) A loader gets every file but the rotten one, and waits for it.
    got, waited = {}, False
    try:
        with shoal_loader.Client(sock, timeout=4) as cl:
            for lf in cl.want(mid):
                got[lf.path] = hashlib.sha256(bytes(lf.mmap()) if lf.size else b"").digest()
                lf.close()
    except TimeoutError:
        waited = True
    except shoal_loader.LoaderError as e:
        print(f"loader: {e}")
    print(f"loader: got {sorted(got)}{', then waited' if waited else ''}")
    if shard in got:
        print("FAIL a loader was handed the file known to be corrupt" +
              (" (its bytes differ from the source)"
               if got[shard] != hashlib.sha256(files[shard]).digest() else ""))
        fails += 1
    elif not waited or len(got) != len(files) - 1:
        print("FAIL the loader did not get the other files and wait for the rotten one")
        fails += 1
    # (2) A restart (no --verify-store, no seed dir) does not trust the chunk.
    if a.stop() != 0:
        print("FAIL the seed did not shut down cleanly")
        fails += 1
    a0, a = a, Node("seed-again", a_args)
    res = a.wait_for(r"resuming with (\d+) of (\d+) chunks|is complete here: seeding", 20)
    print("restarted seed: " + (res.group(0) if res else "nothing"))
    if not res or not res.group(1) or int(res.group(1)) != int(res.group(2)) - 1:
        print("FAIL the restarted seed does not know it lacks the bad chunk")
        fails += 1
    # The loader waits; a good seed comes; the seed fetches the chunk and
    # the loader gets the whole file.
    th, result = load_in_background(sock, mid, [shard])
    time.sleep(1)
    h = Node("seed2", h_args + ["--peer", a.addr])
    if not a.wait_for(r"release [0-9a-f]+ \(.*\) complete: ", WAIT_S):
        print("FAIL the restarted seed did not fetch its bad chunk again")
        fails += 1
    th.join(WAIT_S)
    if result.get(shard) != hashlib.sha256(files[shard]).digest():
        print(f"FAIL the loader did not get the repaired file whole: {result}")
        fails += 1
    fails += check_snapshot(tmp, "a", files)
    if not p1.wait_for(r"release [0-9a-f]+ \(.*\) complete: ", WAIT_S):
        print("FAIL the first puller did not complete")
        fails += 1
    n = tracker_complete(2, 20)  # the repaired seed and the second one
    print(f"tracker: {n} nodes complete at the end")
    if n != 2:
        print("FAIL the tracker does not count the repaired seed complete")
        fails += 1
    fails += shoalproc.stop_all([p1, h, a])
    if fails:
        for x in (a0, a, h, p1):
            x.dump(tail=40)
    trk.stop()
    return fails


def tracker_complete(k, taddr, name, want, timeout):
    """Polls tracker |taddr| until it counts |want| nodes complete for
    release |name|; the last count seen (None: no answer)."""
    end, n = time.monotonic() + timeout, None
    while time.monotonic() < end:
        out = run("rollout", name, "--status", "--tracker", taddr, "--key", k("x"),
                  "--cred", k("x") + ".cred")
        got = re.search(r"(\d+) nodes? complete", out)
        n = int(got.group(1)) if got else None
        if n == want:
            break
        time.sleep(0.3)
    return n


def case_disk_rot_inproc(tmp):
    """The disk-rot repair without a restart: the seed whose shard changed on
    disk takes the bad chunk back, a loader waiting for the shard gets it
    once a good seed has sent the chunk again (with the right bytes), the
    cache shows the file again, and the tracker counts the seed complete
    again."""
    k, repo, files, mf, mid = setup(tmp)
    shard = "model-00001-of-00002.safetensors"
    name = "org/model@" + "ab" * 20
    trk, taddr = shoalproc.start_tracker(TRACKER, k)
    if not taddr:
        return 1
    sock = os.path.join(tmp, "a-loader.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--tracker", taddr,
                                             "--no-origin", "--loader-socket", sock,
                                             "--seed-dir", repo]))
    fails = 0
    if not seeding(a):
        trk.stop()
        return 1
    snap = os.path.join(tmp, "cache-a", "models--org--model", "snapshots", "ab" * 20, shard)
    flip_middle_byte(snap)
    if tracker_complete(k, taddr, name, 1, 20) != 1:
        print("FAIL the tracker never counted the seed complete")
        fails += 1
    # The puller also knows where the good seed will be (it completes from
    # it once it has banned the rotten one).
    h_addr = "127.0.0.1:%d" % free_port()
    p1 = Node("puller1", node_args(k, "b", tmp, ["--peer", a.addr, "--peer", h_addr,
                                                 "--pull", mid, "--no-origin"]))
    if not p1.wait_for(r"banning node .* fails its hash", WAIT_S):
        print("FAIL the puller did not ban the seed for the changed chunk")
        fails += 1
    took = a.wait_for(r"%s: fetching its (\d+) bad chunks again" % re.escape(shard), 20)
    if not took or took.group(1) != "1":
        print("FAIL the seed did not take back its one bad chunk to fetch it again")
        fails += 1
    n = tracker_complete(k, taddr, name, 0, 10)
    if n != 0:
        print(f"FAIL the tracker counts {n} nodes complete while the seed lacks a chunk")
        fails += 1
    # A loader asks for the shard while it is being fetched again: it waits.
    th, result = load_in_background(sock, mid, [shard])
    time.sleep(1)
    if result:
        print(f"FAIL the loader did not wait for the shard being fetched again: {result}")
        fails += 1
    h = Node("seed2", node_args(k, "m", tmp, ["--manifest", mf, "--seed-dir", repo,
                                              "--listen", h_addr, "--tracker", taddr,
                                              "--peer", a.addr]))
    if not a.wait_for(r"%s is whole again" % re.escape(shard), WAIT_S):
        print("FAIL the seed did not fetch its bad chunk again")
        fails += 1
    th.join(WAIT_S)
    if result.get(shard) != hashlib.sha256(files[shard]).digest():
        print(f"FAIL the loader did not get the repaired shard whole: {result}")
        fails += 1
    republished(a, shard)
    fails += check_snapshot(tmp, "a", files)
    if "ON DISK" in run("status", "--socket", a.ctl):
        print("FAIL the seed's status still reports the repaired file")
        fails += 1
    if not p1.wait_for(r"release [0-9a-f]+ \(.*\) complete: ", WAIT_S):
        print("FAIL the puller did not complete")
        fails += 1
    n = tracker_complete(k, taddr, name, 2, 20)  # the repaired seed and the second one
    print(f"tracker: {n} nodes complete at the end")
    if n != 2:
        print("FAIL the tracker does not count the repaired seed complete")
        fails += 1
    fails += shoalproc.stop_all([p1, h, a])
    th.join(5)
    if fails:
        for x in (a, h, p1):
            x.dump(tail=40)
    trk.stop()
    return fails


def case_disk_rot_refetch_cut(tmp):
    """Chunks that cannot be read while a file is being fetched again: a
    seed's shard is cut short, so it takes the chunks it cannot read back
    and fetches them again; then the partial file it refills is cut shorter
    still. The chunks that now fail to read are hashed again and fetched
    again too (they used to be withheld for good, with no scan), so once a
    good seed has sent them the seed is whole and serves every chunk again:
    a new puller that has only this seed completes."""
    k, repo, files, mf, mid = setup(tmp)
    shard = "model-00001-of-00002.safetensors"
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--no-origin"]))
    fails = 0
    if not seeding(a):
        return 1
    snap = os.path.join(tmp, "cache-a", "models--org--model", "snapshots", "ab" * 20, shard)
    size = len(files[shard])
    blob = os.path.realpath(snap)
    mode = os.stat(blob).st_mode & 0o777
    os.chmod(blob, mode | 0o200)
    os.truncate(blob, size * 3 // 4)
    os.chmod(blob, mode)
    p1 = Node("puller1", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid,
                                                 "--no-origin"]))
    took = a.wait_for(r"%s: fetching its (\d+) bad chunks again" % re.escape(shard), WAIT_S)
    if not took:
        print("FAIL the seed did not take back the chunks it could not read")
        a.dump(40)
        fails += shoalproc.stop_all([p1, a])
        return fails + 1
    # What it refills is cut shorter: chunks it holds and offers no longer
    # read. A second puller (nothing yet) asks for them.
    if p1.stop() != 0:
        print("FAIL the first puller did not shut down cleanly")
        fails += 1
    parts = glob.glob(partial_of(blob, "*"))
    if len(parts) != 1:
        print(f"FAIL want one partial file being refilled, found {parts}")
        fails += 1
    else:
        os.truncate(parts[0], size // 4)
    before = len(re.findall(r"fetching its \d+ bad chunks again", a.log()))
    t2 = os.path.join(tmp, "p2")
    os.makedirs(t2)
    p2 = Node("puller2", node_args(k, "b", t2, ["--peer", a.addr, "--pull", mid,
                                                "--no-origin"]))
    end = time.monotonic() + 20
    while time.monotonic() < end and \
            len(re.findall(r"fetching its \d+ bad chunks again", a.log())) <= before:
        time.sleep(0.2)
    again = len(re.findall(r"fetching its \d+ bad chunks again", a.log())) - before
    print(f"seed: {again} more take-backs after the partial file was cut")
    if again < 1:
        print("FAIL the seed did not take back the chunks of the file being fetched again "
              "that it could not read")
        fails += 1
    h = Node("seed2", node_args(k, "m", tmp, ["--manifest", mf, "--seed-dir", repo,
                                              "--peer", a.addr]))
    # (Bounded so that the old code fails rather than times out.)
    if not a.wait_for(r"%s is whole again" % re.escape(shard), 40):
        print("FAIL the seed did not fetch its bad chunks again")
        fails += 1
    republished(a, shard)
    fails += check_snapshot(tmp, "a", files)
    if not fails and not p2.wait_for(r"release [0-9a-f]+ \(.*\) complete: ", WAIT_S):
        print("FAIL a puller with only the repaired seed did not complete (chunks withheld "
              "for good?)")
        fails += 1
    st = run("status", "--socket", a.ctl)
    if "ON DISK" in st:
        print(f"FAIL the seed's status still reports the file:\n{st}")
        fails += 1
    fails += shoalproc.stop_all([p2, h, a])
    if fails:
        for x in (a, h, p1, p2):
            x.dump(tail=40)
    return fails

def case_disk_rot_kept(tmp):
    """A seed that finds its shard changed on disk but cannot take the bad
    chunk back (something in the way of the partial file it would refill):
    the cache is left as it was (the snapshot link still resolves; it used
    to be removed before the step that failed), the chunk stays withheld,
    and the log and `shoal status` say a restart with --verify-store
    repairs it."""
    k, repo, files, mf, mid = setup(tmp)
    shard = "model-00001-of-00002.safetensors"
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--no-origin"]))
    fails = 0
    if not seeding(a):
        return 1
    snap = os.path.join(tmp, "cache-a", "models--org--model", "snapshots", "ab" * 20, shard)
    blob = os.path.realpath(snap)
    os.mkdir(partial_of(blob, mid[:16]))
    flip_middle_byte(snap)
    p1 = Node("puller1", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid,
                                                 "--no-origin"]))
    if not a.wait_for(r"%s: its 1 bad chunks cannot be fetched again while it is open .*"
                      r"restart shoald with --verify-store" % re.escape(shard), WAIT_S):
        print("FAIL the seed did not say it could not take the bad chunk back")
        fails += 1
    if not os.path.islink(snap) or not os.path.exists(snap):
        print("FAIL the failed take-back removed the shard's snapshot link")
        fails += 1
    st = run("status", "--socket", a.ctl)
    print(st)
    if "CORRUPT ON DISK: %s: 1 of" % shard not in st or \
            "restart shoald with --verify-store to repair" not in st:
        print("FAIL the seed's status does not say the chunk stays unserved until a repair")
        fails += 1
    fails += shoalproc.stop_all([p1, a])
    if fails:
        for x in (a, p1):
            x.dump(tail=40)
    return fails



def fill_leaving(small, left):
    """Fills the tmpfs at |small| up to |left| bytes free."""
    st = os.statvfs(small)
    with open(os.path.join(small, "filler"), "wb") as f:
        os.posix_fallocate(f.fileno(), 0, st.f_bavail * st.f_frsize - left)


def case_disk_rot_shared(tmp):
    k, repo, files, mf, mid = setup(tmp)
    shard = "model-00001-of-00002.safetensors"
    # Release 2: release 1 plus one small file, under another commit; one
    # folder holds both for --seed-dir.
    files2 = dict(files)
    files2["generation_config.json"] = b'{"temperature": 0.7}\n'
    with open(os.path.join(repo, "generation_config.json"), "wb") as f:
        f.write(files2["generation_config.json"])
    mf2 = os.path.join(tmp, "rel2.manifest")
    mid2 = shoalproc.build_manifest(SHOAL, repo, k, mf2, commit="cd" * 20)
    both = ["--manifest", mf, "--manifest", mf2, "--seed-dir", repo, "--no-origin"]
    a = Node("seed", node_args(k, "a", tmp, both))
    fails = 0
    if len(list(re.finditer(r"is complete here: seeding", a.log()))) < 2 and \
            not a.wait_for(r"(?s)is complete here: seeding.*is complete here: seeding", 20):
        print("FAIL the seed did not import both releases")
        a.dump(40)
        return 1 + shoalproc.stop_all([a])
    repo_dir = os.path.join(tmp, "cache-a", "models--org--model")
    snap1 = os.path.join(repo_dir, "snapshots", "ab" * 20, shard)
    snap2 = os.path.join(repo_dir, "snapshots", "cd" * 20, shard)
    if os.path.realpath(snap1) != os.path.realpath(snap2):
        print("FAIL the two releases do not share the shard's blob")
        fails += 1
    flip_middle_byte(snap1)
    h_addr = "127.0.0.1:%d" % free_port()
    p1 = Node("puller1", node_args(k, "b", tmp, ["--peer", a.addr, "--peer", h_addr,
                                                 "--pull", mid, "--no-origin"]))
    if not p1.wait_for(r"banning node .* fails its hash", WAIT_S):
        print("FAIL the puller of release 1 did not ban the seed for the changed chunk")
        fails += 1
    # Release 2 on the seed hears it from release 1 and takes its chunk back.
    took = a.wait_for(r"release %s: %s: fetching its (\d+) bad chunks again"
                      % (mid2[:16], re.escape(shard)), 20)
    if not took or took.group(1) != "1":
        print("FAIL release 2 on the seed did not take back the bad chunk of the shared blob")
        fails += 1
    st = run("status", "--socket", a.ctl)
    print(st)
    if len(re.findall(r"CORRUPT ON DISK: %s" % re.escape(shard), st)) != 2:
        print("FAIL `shoal status` on the seed does not show the shard bad in both releases")
        fails += 1
    # A puller of release 2 with only the seed: everything but the bad
    # chunk, and no ban (the seed does not serve it).
    p2 = Node("puller2", node_args(k, "x", tmp, ["--peer", a.addr, "--peer", h_addr,
                                                 "--pull", mid2, "--no-origin"]))
    fails += others_without_ban(p2, [p for p in files2 if p != shard],
                                "the puller of release 2")
    h = Node("seed2", node_args(k, "m", tmp, both + ["--listen", h_addr, "--peer", a.addr]))
    for m_id in (mid, mid2):
        if not a.wait_for(r"release %s: %s is whole again" % (m_id[:16], re.escape(shard)),
                          WAIT_S):
            print(f"FAIL release {m_id[:16]} on the seed was not repaired")
            fails += 1
    for who, m_id in ((p1, mid), (p2, mid2)):
        if not who.wait_for(r"release %s \(.*\) complete: " % m_id[:16], WAIT_S):
            print(f"FAIL the puller of {m_id[:16]} did not complete")
            fails += 1
    for snap in (snap1, snap2):
        with open(snap, "rb") as f:
            if f.read() != files[shard]:
                print(f"FAIL {snap} does not hold the right bytes")
                fails += 1
    fails += check_snapshot(tmp, "b", files)
    fails += shoalproc.stop_all([p1, p2, h, a])
    if fails:
        for x in (a, h, p1, p2):
            x.dump(tail=40)
    return fails


def case_partial_blocked(tmp):
    k, repo, files, mf, mid = setup(tmp)
    shard = "model-00001-of-00002.safetensors"
    sha = hashlib.sha256(files[shard]).hexdigest()
    blob = os.path.join(tmp, "cache-a", "models--org--model", "blobs", sha)
    os.makedirs(os.path.dirname(partial_of(blob)))
    dirs = [partial_of(blob), partial_of(blob, mid[:16])]
    for d in dirs:
        os.mkdir(d)
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--no-origin"]))
    fails = 0
    got = a.wait_for(r"%s is withheld: (\S+) is a directory, not a partial file of shoal's"
                     % re.escape(shard), 20)
    if not got or got.group(1) not in dirs:
        print("FAIL the seed did not withhold the shard naming the directory in the way")
        a.dump(40)
        return fails + 1 + shoalproc.stop_all([a])
    print(got.group(0))
    if "move them out of the way" not in a.log():
        print("FAIL the seed's log does not say what to do")
        fails += 1
    p1 = Node("puller1", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid,
                                                 "--no-origin"]))
    others = [p for p in files if p != shard]
    deadline = time.monotonic() + WAIT_S
    for path in others:
        if not p1.wait_for(r"%s complete and verified" % re.escape(path),
                           max(1, deadline - time.monotonic())):
            print(f"FAIL the puller did not get {path} from the seed")
            fails += 1
    st = run("status", "--socket", a.ctl)
    print(st)
    if "BLOCKED ON DISK: %s" % shard not in st:
        print("FAIL `shoal status` on the seed does not show the shard blocked")
        fails += 1
    if re.search(r"storing chunk \d+ failed|release [0-9a-f]+ \(.*\) complete: ", a.log()):
        print("FAIL the seed tried to store the blocked shard or called the release complete")
        fails += 1
    for d in dirs:
        if not os.path.isdir(d) or os.listdir(d):
            print(f"FAIL {d} was not left as it was")
            fails += 1
    fails += shoalproc.stop_all([p1, a])
    if fails:
        for x in (a, p1):
            x.dump(tail=40)
    return fails


def case_disk_rot_seed_dir(tmp):
    return shoalproc.on_small_disk(tmp, "8m", lambda small: disk_rot_seed_dir(tmp, small),
                                   "disk_rot_seed_dir")


def disk_rot_seed_dir(tmp, small):
    k, repo, files, mf, mid = setup(tmp)
    shard = "model-00001-of-00002.safetensors"
    args = node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo, "--no-origin"])
    cache = os.path.join(small, "hub")
    args[args.index("--cache-dir") + 1] = cache
    a = Node("seed", args)
    fails = 0
    if not seeding(a):
        return 1
    if a.stop() != 0:
        print("FAIL the seed did not shut down cleanly")
        fails += 1
    shards = (shard, "model-00002-of-00002.safetensors")
    for name in shards:
        flip_middle_byte(os.path.join(cache, "models--org--model", "snapshots", "ab" * 20, name))
    # Leave 1 MiB free: the repair copies need the shards' 3 and 2 MiB.
    fill_leaving(small, 1 << 20)
    a = Node("seed-again", args + ["--verify-store"])
    for name in shards:
        res = a.wait_for(r"%s does not match its sha256 and there is no room for the copy that "
                         r"repairs it \((.*)\): not served" % re.escape(name), 20)
        if not res:
            print(f"FAIL the restarted seed did not withhold {name}, which it cannot repair")
            fails += 1
        elif "to repair %s: " % name not in res.group(1):
            # Each line gives its own file's reason, not the last error.
            print(f"FAIL the line withholding {name} gives another file's reason: "
                  f"{res.group(1)}")
            fails += 1
    res = a.wait_for(r"imported \d+ chunks from .*", 20)
    print("restarted seed: " + (res.group(0) if res else "no import line"))
    if not res or "release complete" in res.group(0):
        print("FAIL the import called the release complete with a file withheld")
        fails += 1
    out = run("status", "--socket", a.ctl)
    print(out)
    if "CORRUPT ON DISK: %s" % shard not in out or re.search(r"\bcomplete\b\s+100", out):
        print("FAIL `shoal status` does not show the release incomplete with the shard withheld")
        fails += 1
    if a.wait_for(r"is complete here: seeding", 1):
        print("FAIL the seed says it seeds the whole release")
        fails += 1
    fails += shoalproc.stop_all([a])
    if fails:
        a.dump(tail=40)
    return fails


def case_disk_rot_status_reason(tmp):
    return shoalproc.on_small_disk(tmp, "8m", lambda small: disk_rot_status_reason(tmp, small),
                                   "disk_rot_status_reason")


def disk_rot_status_reason(tmp, small):
    k, repo, files, mf, mid = setup(tmp)
    shard1, shard2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    args = node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo, "--no-origin"])
    cache = os.path.join(small, "hub")
    args[args.index("--cache-dir") + 1] = cache
    snaps = os.path.join(cache, "models--org--model", "snapshots", "ab" * 20)
    a = Node("seed", args)
    fails = 0
    if not seeding(a):
        return 1
    if a.stop() != 0:
        print("FAIL the seed did not shut down cleanly")
        fails += 1
    # Shard 1: no room for its repair copy at the restart.
    flip_middle_byte(os.path.join(snaps, shard1))
    fill_leaving(small, 1 << 20)
    a = Node("seed-again", args + ["--verify-store"])
    if not a.wait_for(r"%s does not match its sha256 and there is no room" % re.escape(shard1),
                      20):
        print("FAIL the restarted seed did not withhold shard 1")
        fails += 1
    # Shard 2 rots while served, with a directory where its copy goes.
    blob = flip_middle_byte(os.path.join(snaps, shard2))
    os.mkdir(partial_of(blob, mid[:16]))
    p1 = Node("puller1", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid,
                                                 "--no-origin"]))
    if not a.wait_for(r"%s: its 1 bad chunks cannot be fetched again while it is open" %
                      re.escape(shard2), WAIT_S):
        print("FAIL the seed did not say it could not take shard 2's bad chunk back")
        fails += 1
    st = run("status", "--socket", a.ctl)
    print(st)
    # The first file's line keeps its own advice: shard 2's failure is not
    # for want of room.
    if "CORRUPT ON DISK: %s" % shard1 not in st or "no room to repair it: free" not in st or \
            "1 more file" not in st:
        print("FAIL `shoal status` does not give shard 1's own reason (no room)")
        fails += 1
    fails += shoalproc.stop_all([p1, a])
    if fails:
        for x in (a, p1):
            x.dump(tail=40)
    return fails


def case_disk_rot_single(tmp):
    """The rotten seed is its puller's only peer: the puller bans it for 30 s
    on the first bad chunk, not for --ban-seconds (600 s here, the default),
    `shoal status` says why the pull has no peer, and once the seed has
    repaired the chunk (from a second seed the puller does not know) the
    puller dials it again and completes from it, banning nobody again."""
    k, repo, files, mf, mid = setup(tmp)
    shard = "model-00001-of-00002.safetensors"
    h_addr = "127.0.0.1:%d" % free_port()
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--no-origin", "--peer", h_addr]))
    fails = 0
    if not seeding(a):
        return 1
    flip_middle_byte(os.path.join(tmp, "cache-a", "models--org--model", "snapshots",
                                  "ab" * 20, shard))
    p = Node("puller", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid,
                                               "--no-origin"]))
    ban = p.wait_for(r"banning node .* for (\d+) s: .*fails its hash.*", WAIT_S)
    print(ban.group(0) if ban else "no ban")
    if not ban or ban.group(1) != "30":
        print("FAIL the puller did not ban the seed for 30 s on its first bad chunk")
        fails += 1
    if not a.wait_for(r"%s: fetching its 1 bad chunks again" % re.escape(shard), 20):
        print("FAIL the seed did not take its bad chunk back")
        fails += 1
    st = run("status", "--socket", p.ctl)
    print(st)
    if not re.search(r"no peer: 1 node banned here \(the next ban ends in \d+ s; the last: "
                     r"sent chunk \d+ of release [0-9a-f]+ that fails its hash\)", st):
        print("FAIL `shoal status` does not say the pull's only peer is banned")
        fails += 1
    h = Node("seed2", node_args(k, "m", tmp, ["--manifest", mf, "--seed-dir", repo,
                                              "--no-origin", "--listen", h_addr]))
    if not a.wait_for(r"%s is whole again" % re.escape(shard), WAIT_S):
        print("FAIL the seed did not fetch its bad chunk again")
        fails += 1
    if h.stop() != 0:
        print("FAIL the second seed did not shut down cleanly")
        fails += 1
    # Well under --ban-seconds (600): the short ban, then the rest.
    if not p.wait_for(r"release [0-9a-f]+ \(.*\) complete: ", 80):
        print("FAIL the puller did not complete from its only seed after its short ban")
        fails += 1
    if len(re.findall(r"banning node", p.log())) != 1:
        print("FAIL the puller banned the repaired seed again")
        fails += 1
    fails += check_snapshot(tmp, "b", files)
    fails += shoalproc.stop_all([p, a])
    if fails:
        for x in (a, h, p):
            x.dump(tail=40)
    return fails


def case_bad_peer_again(tmp):
    """A peer that sends bad chunks again after its short first ban is
    banned for --ban-seconds: one free round per --ban-seconds, no more."""
    k, repo, files, mf, mid = setup(tmp)
    m = Node("malicious", node_args(k, "m", tmp, ["--manifest", mf, "--seed-dir", repo,
                                                  "--test-corrupt-uploads"]))
    b = Node("puller", node_args(k, "b", tmp, ["--peer", m.addr, "--pull", mid,
                                               "--no-origin"]))
    fails = 0
    first = b.wait_for(r"banning node .* for (\d+) s: .*fails its hash.*", WAIT_S)
    print(first.group(0) if first else "no first ban")
    if not first or first.group(1) != "30":
        print("FAIL the first bad chunk did not ban for 30 s")
        fails += 1
    second = b.wait_for(r"banning node .* for (\d+) s: .*fails its hash \(its second bad "
                        r"chunk within --ban-seconds\)", 60)
    print(second.group(0) if second else "no second ban")
    if not second or second.group(1) != "600":
        print("FAIL the bad chunk after the short ban did not ban for --ban-seconds")
        fails += 1
    st = run("status", "--socket", b.ctl)
    print(st)
    if not re.search(r"no peer: 1 node banned here \(the next ban ends in (59\d|600) s", st):
        print("FAIL `shoal status` does not show the long ban")
        fails += 1
    fails += shoalproc.stop_all([b, m])
    if fails:
        for x in (m, b):
            x.dump(tail=40)
    return fails


def case_busy_retry(tmp):
    """A peer that answers busy with retry_after_ms 2000 to everything, the
    only source for 6 s, is asked again only after each 2 s: a few rounds
    of requests, not one every 10 ms (before: hundreds). One that says
    5000 is connected while an honest seed gets the release through:
    the busy peer's back-off holds nothing back that others have."""
    k, repo, files, mf, mid = setup(tmp)
    nch = int(re.search(r"(\d+) chunks", run("manifest", "show", mf)).group(1))
    b = Node("puller", node_args(k, "b", tmp, ["--manifest", mf]))
    fails = 0
    liar = [HOSTILE, b.addr, k("x"), k("x") + ".cred", k("cluster") + ".pub", "liar", mid,
            str(nch)]
    h = subprocess.run(liar + ["6", "busy:2000"], capture_output=True, text=True, timeout=60)
    m = re.search(r"requests (\d+)", h.stdout)
    reqs = int(m.group(1)) if m else None
    print(f"busy, retry after 2000 ms: {reqs} requests in 6 s for {nch} chunks")
    # 4 rounds (0, 2, 4, 6 s) of a pipeline that stays short for a peer
    # that delivers nothing: 3 seen; 62 with the old fixed 10 ms back-off.
    if reqs is None or not 1 <= reqs <= 24:
        print(f"FAIL a peer busy for 2 s at a time was asked {reqs} times in 6 s: "
              f"{h.stdout} {h.stderr}")
        fails += 1
    hp = subprocess.Popen(liar + ["8", "busy:5000"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)  # it connects and is asked before the seed comes
        fails += honest_seed_finishes(k, tmp, mf, repo, b, files, fails)
        out = hp.communicate(timeout=30)[0]
    finally:
        if hp.poll() is None:
            hp.kill()
            hp.wait()
    # It is closed when the puller stops, after the pull, not before.
    print(f"busy, retry after 5000 ms, alongside an honest seed: {out.strip()}")
    if not re.search(r"requests [1-9]", out):
        print("FAIL the second busy peer was not asked")
        fails += 1
    return fails


def served_bytes(node):
    """Chunk bytes |node| says it sent to peers (`shoal metrics`), or None."""
    r = subprocess.run([SHOAL, "metrics", "--socket", node.ctl], capture_output=True,
                       text=True, timeout=10)
    return metric(r.stdout, "shoal_served_bytes_total")


def case_sendfile_order(tmp):
    """A plain session's chunks go out with sendfile when they are all in
    the page cache and do not compress (--test-sendfile-local: on loopback
    too), others through memory. A peer fills its queue with 12 such
    chunks, reading nothing, then asks for one that compresses (read into
    memory, it waits for room on the wire) and then for 2 more sendfile
    ones: the held one's answer (request 15) comes before those two's.
    Before, the 2 sendfile chunks went ahead of the one held in memory
    (which the requester wants first, and whose buffer stayed held
    meanwhile). Other answers may swap places: one of the 12 that is read
    on a worker thread (not all in the page cache) comes when the read
    ends, which under ASan can be after the next one's sendfile."""
    k = shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL,
                            ("cluster", "publisher", "a", "x"), ("a", "x"))
    repo = os.path.join(tmp, "repo")
    os.makedirs(repo)
    with open(os.path.join(repo, "model.safetensors"), "wb") as f:
        f.write(random.Random(7).randbytes(24 << 20))
    with open(os.path.join(repo, "notes.txt"), "wb") as f:
        f.write(b"".join(b"line %d of some text that compresses well\n" % i
                         for i in range(40000)))
    mf = os.path.join(tmp, "rel.manifest")
    shoalproc.build_manifest(SHOAL, repo, k, mf, extra=("--min", str(256 << 10), "--avg",
                                                        str(1 << 20), "--max", str(4 << 20)))
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--no-encrypt", "--test-sendfile-local"]))
    if not a.wait_for(r"is complete here: seeding", WAIT_S):
        print("FAIL the seed did not seed")
        return shoalproc.stop_all([a]) + 1
    h = subprocess.run([HOSTILE, a.addr, k("x"), k("x") + ".cred", k("cluster") + ".pub",
                        "order", mf, "model.safetensors", "notes.txt", "20"],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, HOSTILE_PLAIN="1"))
    got = re.search(r"answers (\d+)\nout of order (\d+)", h.stdout)
    print(f"answers and out of order: {got.groups() if got else None}")
    fails = 0
    if not got or int(got.group(1)) != 17:
        print(f"FAIL not every request was answered: {h.stdout} {h.stderr}")
        fails += 1
    else:
        arr = re.search(r"^arrival((?: \d+)*)$", h.stdout, re.M)
        ids = [int(x) for x in arr.group(1).split()] if arr else []
        print(f"arrival order: {ids}")
        if 15 not in ids or 16 not in ids or 17 not in ids or \
                ids.index(15) > min(ids.index(16), ids.index(17)):
            print("FAIL the chunk held in memory (request 15) came after sendfile chunks "
                  "asked after it")
            fails += 1
    return shoalproc.finish(fails, [a], tail=30)


def case_cancel_queued(tmp):
    """A peer asks a seed for 8 chunks (~8 MiB), reads nothing for 0.5 s,
    then cancels all 8: the seed has read them and queued them for it by
    then. Only what was already on its way to the socket (about 2 MiB,
    and what the socket took) still comes, at most 5; the rest is taken
    back from the queue, not sent, nor counted as served. The same from a seed at --rate-up 1M, where they
    wait for the upload budget. Before, a CANCEL only stopped a chunk
    still being read from disk: all 8 came, and counted as served. Every
    request is answered once all the same: each chunk taken back by a
    REJECT (before, by nothing: the requester's count of open requests
    stayed raised for good)."""
    k = shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL,
                            ("cluster", "publisher", "a", "c", "x"), ("a", "c", "x"))
    repo, files, mf, mid = one_file_release(tmp, k, "big", 5, 24 << 20,
                                            (256 << 10, 1 << 20, 4 << 20))
    fails = 0
    # Unlimited, the ~2 MiB handed on and what the socket took before the
    # peer stopped reading come (4 seen); capped, the first (sent at once).
    for name, key, extra, limit in (("seed", "a", [], 5),
                                    ("capped", "c", ["--rate-up", "1M"], 2)):
        a = Node(name, node_args(k, key, tmp, ["--manifest", mf, "--seed-dir", repo, *extra]))
        if not a.wait_for(r"is complete here: seeding", WAIT_S):
            print(f"FAIL {name} did not seed")
            return shoalproc.stop_all([a]) + fails + 1
        h = subprocess.run([HOSTILE, a.addr, k("x"), k("x") + ".cred", k("cluster") + ".pub",
                            "cancel", mf, "8", "6"], capture_output=True, text=True, timeout=60)
        got = re.search(r"chunks (\d+)\nbytes (\d+)\nrejects (\d+)", h.stdout)
        served = served_bytes(a)
        print(f"{name} {' '.join(extra)}: 8 chunks asked and cancelled; received "
              f"{got.group(1) if got else None} chunks, {got.group(2) if got else None} bytes, "
              f"{got.group(3) if got else None} rejects; the seed counts {served} bytes served")
        if not got or served is None:
            print(f"FAIL no figures: {h.stdout} {h.stderr}")
            fails += 1
        elif int(got.group(1)) > limit or served > (limit + 1) << 20:
            print(f"FAIL more than {limit} chunks of the 8 cancelled were sent")
            fails += 1
        elif int(got.group(1)) + int(got.group(3)) != 8:
            # Each REQUEST earns one answer, cancelled or not: the
            # requester counts them (more answers than requests close the
            # connection), and one it never gets stays counted for ever.
            print(f"FAIL {int(got.group(1)) + int(got.group(3))} answers to 8 requests "
                  f"(each chunk taken back must be answered REJECT)")
            fails += 1
        bad = shoalproc.stop_all([a])
        if bad or fails:
            a.dump(30)
        fails += bad
    return fails


shoalproc.main(CASE, {"pull_encrypted": lambda tmp: case_pull(tmp, True),
                      "pull_plain": lambda tmp: case_pull(tmp, False),
                      "no_cred": case_no_cred,
                      "exit_manifest": case_exit_manifest,
                      "bad_peer": case_bad_peer,
                      "bad_peer_hangup": lambda tmp: case_bad_peer(tmp, hangup=True),
                      "bad_peer_plain": case_bad_peer_plain,
                      "bad_peer_again": case_bad_peer_again,
                      "disk_rot_single": case_disk_rot_single,
                      "manifest_queue": case_manifest_queue,
                      "dedup": case_dedup,
                      "upload_slots": case_upload_slots,
                      "unauth_flood": case_unauth_flood,
                      "unauth_evict": case_unauth_evict,
                      "cred_expiry": case_cred_expiry,
                      "hello_replay": case_hello_replay,
                      "hello_budget": case_hello_budget,
                      "unauth_source": case_unauth_source,
                      "ping_flood": case_ping_flood, "liar": case_liar, "busy_retry": case_busy_retry,
                      "cancel_queued": case_cancel_queued,
                      "sendfile_order": case_sendfile_order,
                      "cut_seed": case_cut_seed,
                      "queue_budget": case_queue_budget,
                      "tracker_lies": case_tracker_lies,
                      "disk_rot": case_disk_rot,
                      "disk_rot_repair": case_disk_rot_repair,
                      "disk_rot_inproc": case_disk_rot_inproc,
                      "disk_rot_refetch_cut": case_disk_rot_refetch_cut,
                      "disk_rot_kept": case_disk_rot_kept,
                      "disk_rot_seed_dir": case_disk_rot_seed_dir,
                      "partial_blocked": case_partial_blocked,
                      "disk_rot_shared": case_disk_rot_shared,
                      "disk_rot_status_reason": case_disk_rot_status_reason,
                      "bad_manifest": case_bad_manifest,
                      "unknown_codec": case_unknown_codec,
                      "unsolicited": case_unsolicited,
                      "idle_peer": case_idle_peer}, "shoal-swarm-")
