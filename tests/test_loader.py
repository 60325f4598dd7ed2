# SPDX-License-Identifier: MIT
"""Integration tests of the loader socket with real shoald processes.

Usage: test_loader.py SHOALD SHOAL LOADER_EXAMPLE NODE_DIR CASE [SHOAL_TRACKER]
CASE is one of:
  multi_node    a seed, a second puller and a loader's node on loopback. The
                loader asks by manifest id (which starts the pull on its
                node) for the 8 shards in a shuffled order; it receives every
                shard exactly once, its first-wanted shard first, each with a
                descriptor of the very HF-cache blob (same inode), tensors
                bit-identical to the source. A second loader asking by
                repo@rev for every file, and the C example loader, get the
                same files.
  memory        --store memory: the descriptors are memfds (nothing in the
                cache dir), two loaders map the same inode, tensors match.
  stalled       a loader that asks for a release of 400 small files (long
                paths) and then reads nothing until the pull is over: the
                daemon's socket to it fills (the hand-off threads leave the
                rest to the loop, which the daemon logs), yet it then gets
                every file exactly once, indexes 0..n-1 once each (and the
                same index per path as the other loader), then LOADER_DONE;
                a second loader reading all along finishes before the
                stalled one reads anything.
  by_name       a shoal-tracker, a seed that registers the release with it,
                and a node that holds nothing and knows only the tracker
                (no peers, no origin). A loader asks that node by name
                (org/model@commit) for the shards in a shuffled order: the
                node resolves the name through the tracker, finds the seed
                there, pulls, and the loader gets every shard exactly once,
                bit-identical to the source. A loader asking for a name the
                tracker does not know gets LOADER_ERROR saying so, and a
                malformed name is refused at once.
  refused       an unknown release and an unknown path get LOADER_ERROR; as
                root, a process running as 'nobody' cannot connect (socket
                mode), is refused by the SO_PEERCRED check when the mode is
                opened up, and is accepted when --loader-group lets it in,
                also as a supplementary group of a process that connected
                and exited before the daemon accepted (the groups are the
                connection's, SO_PEERGROUPS, not read from a pid that may
                be gone or another process's by then).
  limits        slots and memory of clients that never finish a request:
                a connection that sends nothing, or half a frame, gets
                LOADER_ERROR 'no LOADER_WANT within 5.0 s' and is closed;
                of 64 idle connections of one uid, 48 are refused ('too
                many loaders of uid 0') and another user is still served,
                let in by --loader-user alone (the socket is 0666 then;
                before, it was 0660 and nobody got EACCES), while uid 1 is
                refused 'not authorised';
                16 connections each sending 8 MiB of an unfinished request
                raise the daemon's RSS by less than 64 MiB (most get 'busy'),
                while a complete request of 2 MB (an order of 2,000 long
                paths) is still read and answered.
  abandoned     pull slots that loaders leave behind come back: 64 loaders
                each ask for an id nobody has and hang up; `shoal pull` of
                the real release then still starts (before: 'too many
                releases being pulled (64 under way)' for good), and
                `shoal status` lists none of the 64. One uid's loaders wait
                for at most 4 releases not open yet: a fifth is refused
                'busy', one joining a wait under way is not, and once they
                hang up their pulls are withdrawn too.
  pending_orders
                loaders waiting for a release that never comes keep their
                orders within the 32 MiB request budget: of 12 loaders each
                sending an 8 MB order for an id nobody has, those past the
                budget get 'busy' (before: all 12 kept, RSS +100 MB), the
                daemon's RSS grows by less than 64 MiB, and once they hang
                up the budget is whole again.
  store_full    a loader asking by manifest id for a release that cannot be
                opened (the node's cache is an 8 MiB tmpfs, the release 13
                MiB; root only) gets LOADER_ERROR naming the disk error
                soon, rather than waiting for a release that will not come.
  short_done    a loader that reads slowly while its release is dropped gets
                LOADER_ERROR (saying how many files were handed), not the
                LOADER_DONE that was queued behind files never sent; and both
                clients (shoal_loader.py, the C example) treat a LOADER_DONE
                that comes before every announced file as an error.
  cache_perm    after a pull, a local user outside --loader-group (nobody,
                no supplementary groups; root only) can open no blob and no
                snapshot path of the cache (before: every folder 0755, every
                blob 0444), while the same uid with the loader group as a
                supplementary group reads every file, bit-identical; the
                owner's mode bits allow reading (0440 blobs, 02750 folders
                of the loader group).
  cache_removed the cache folder of a complete, open release is removed
                (rm -r, as huggingface-cli delete-cache does, without shoal
                drop): a loader still gets every file, bit-identical (the
                node hands its own open copy of each verified inode and logs
                that the cache entry was removed), and the log counts the
                descriptors sent. Before: 'daemon closed the connection
                before LOADER_DONE' with no LOADER_ERROR, logged as '(8 of 8
                files handed)' when none was.
  evict         --max-releases 1 and a loader receiving a complete release
                of 600 small files that reads nothing yet: `shoal pull` of
                another release is refused saying a loader is receiving its
                files (before: the release was closed under the loader,
                which got LOADER_ERROR 'closed on this node to make room'
                part-way), the loader then gets all 600 files and
                LOADER_DONE, and the same pull then succeeds.
  half_close    a loader that shuts down its sending side (SHUT_WR) right
                after its LOADER_WANT, for a release its node pulls on
                demand, still gets every file and LOADER_DONE (before: taken
                for gone, the pull withdrawn, nothing sent).
  unread_memory 15 loaders ask a seed for every file of a release of 8,000
                small files and never read: the daemon's RSS grows by less
                than 16 MiB (it keeps which files are ready and builds each
                frame when the socket takes it; before: one queued frame per
                file per loader, ~364 B each, +41 MiB), and a loader that
                reads meanwhile gets all 8,000 in manifest order, then
                LOADER_DONE.
  inflight      descriptors in flight to loaders that do not read count
                against shoald's open-files limit (root only: shoald runs
                as nobody with a limit of 320). With 4 loaders of a
                100-file release not reading, a reading loader still gets
                every file (each loader's socket holds about 64 frames now;
                before, ~550: all 100 each, and the reading one was cut off
                with LOADER_ERROR). With the limit then lowered to 200,
                below what those 4 hold, a new reading loader waits (logged)
                instead of being cut off, and gets every file once they
                leave. While it waits, the daemon's loop wakes at most 30
                times more in 2 s than in 2 s without a stall (it backs off
                and retries on what can end the stall: before, it tried
                every 20 ms, ~100 more).
  slow_reader   a seed with 400 small files and a loader that asks for
                all of them, then reads nothing for 2 s (its socket full,
                frames waiting in the daemon) and then reads a few hundred
                bytes at a time: the daemon uses under 0.3 s of CPU over the
                2 s (it sleeps until the socket drains; one retrying in a
                loop would use ~2 s) and wakes its loop at most 20 times more
                than over 2 s without a loader; the loader gets every
                LOADER_FILE in manifest order (index 0..399), one descriptor
                each, then LOADER_DONE. A second loader that reads a little
                and hangs up mid-send is closed ("loader went away") and
                leaves no descriptor open in the daemon.
  late_joiner   a node capped at --rate-down 4M pulls a 24 MiB release (1 MiB
                chunks) from two seeds for a loader asking for every shard
                in manifest order; a second loader joins once 2 MiB are in
                and asks for the last shard only. It is handed before the
                node has received half of what was missing when it joined
                (the shard aside): before, the requests already queued at
                the peers (9-12 chunks, seconds at the cap) came first and
                it came after ~3/4 of it (QA H1).
  late_joiner_slow  the same with no cap on the pulling node, the seeds
                uploading at --rate-up 2M each: the in-flight bound comes
                from the rate the node measures (before, 6 requests were
                queued at each seed and the shard came after ~64% of the
                rest).
  late_joiner_peer_cap  the same with the puller at --peer-rate-down 2M and
                fast seeds: a capped peer answers slowly, and the bound
                follows.
  rate_down_shared  a node at --rate-down 4M pulling two releases says it
                bounds each from 2 MiB/s; both complete.
Every wait is bounded; all processes are killed at the end.
"""
import hashlib
import json
import os
import random
import re
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time

import numpy as np

import shoalproc

SHOALD, SHOAL, EXAMPLE, NODE_DIR, CASE = sys.argv[1:6]
TRACKER = sys.argv[6] if len(sys.argv) > 6 else None
sys.path.insert(0, NODE_DIR)
import shoal_loader  # noqa: E402

WAIT_S = 60
NSHARDS = 8
procs = shoalproc.procs


def run(*args):
    return shoalproc.run(SHOAL, *args, timeout=60)


def Node(name, args, start_timeout=20):
    return shoalproc.Shoald(SHOALD, name, args, start_timeout=start_timeout)


def safetensors_bytes(rnd, tensors):
    """Builds a safetensors file from {name: numpy array, bf16 as ('BF16', u16 array)}."""
    hdr, blobs, off = {}, [], 0
    for name, (dtype, arr) in tensors.items():
        b = arr.tobytes()
        hdr[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hdr["__metadata__"] = {"format": "pt"}
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def make_repo(root, shard_bytes=2 * 1024 * 1024):
    rng = np.random.default_rng(7)
    rnd = random.Random(7)
    files = {}
    for i in range(NSHARDS):
        n = shard_bytes // 16
        tensors = {
            f"layers.{i}.attn.weight": ("F32", rng.standard_normal((n // 64, 32)).astype("<f4")),
            f"layers.{i}.mlp.weight": ("BF16", rng.integers(0, 65536, (n // 32, 64),
                                                             dtype=np.uint16)),
            f"layers.{i}.ids": ("I64", rng.integers(-2**62, 2**62, (n // 16,), dtype="<i8")),
            f"layers.{i}.mask": ("U8", rng.integers(0, 256, (n // 8 + i,), dtype=np.uint8)),
        }
        files[f"model-{i + 1:05d}-of-{NSHARDS:05d}.safetensors"] = safetensors_bytes(rnd, tensors)
    files["config.json"] = b'{"hidden_size": 4096}\n'
    files["empty.txt"] = b""
    shoalproc.write_files(root, files)
    return files


def setup(tmp, shard_bytes=2 * 1024 * 1024):
    k = shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL,
                            ("cluster", "publisher", "a", "b", "c"), ("a", "b", "c"))
    repo = os.path.join(tmp, "repo")
    files = make_repo(repo, shard_bytes)
    mf = os.path.join(tmp, "rel.manifest")
    mid = shoalproc.build_manifest(SHOAL, repo, k, mf)
    return k, repo, files, mf, mid


node_args = shoalproc.node_args


def make_release(tmp, k, files, **kw):
    """Writes |files| under tmp/repo and signs their manifest with |k| as
    tmp/rel.manifest (build_manifest's keywords pass through); returns
    (repo, manifest path, manifest id)."""
    repo = os.path.join(tmp, "repo")
    shoalproc.write_files(repo, files)
    mf = os.path.join(tmp, "rel.manifest")
    return repo, mf, shoalproc.build_manifest(SHOAL, repo, k, mf, **kw)


def close_passed_fds(anc):
    """Closes the descriptors an SCM_RIGHTS message passed (the ancillary
    data of a recvmsg); returns how many."""
    n = 0
    for lvl, typ, fds in anc:
        if lvl == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            for i in range(0, len(fds) - len(fds) % 4, 4):
                os.close(struct.unpack("i", fds[i:i + 4])[0])
                n += 1
    return n


def sock_dir(tmp):
    d = os.path.join(tmp, "run")
    os.makedirs(d, exist_ok=True)
    # Traversable by everyone, so the socket's own mode is what decides.
    os.chmod(tmp, 0o755)
    os.chmod(d, 0o755)
    return d


def check_tensors(f, src):
    """Fails unless every tensor read through the loader equals the source."""
    bad = 0
    mm = f.mmap()
    if hashlib.sha256(mm).digest() != hashlib.sha256(src).digest():
        print(f"FAIL {f.path}: mapped bytes differ from the source")
        return 1
    (hlen,) = struct.unpack("<Q", src[:8])
    hdr = json.loads(src[8:8 + hlen])
    hdr.pop("__metadata__", None)
    got = dict(f.tensors())
    if set(got) != set(hdr):
        print(f"FAIL {f.path}: tensors {sorted(got)} != {sorted(hdr)}")
        return 1
    want_dtype = {"F32": np.float32, "I64": np.int64, "U8": np.uint8}
    for name, t in hdr.items():
        a = got[name]
        b, e = t["data_offsets"]
        if a.tobytes() != src[8 + hlen + b:8 + hlen + e] or list(a.shape) != t["shape"]:
            print(f"FAIL {f.path}: tensor {name} differs from the source")
            bad += 1
        if t["dtype"] in want_dtype and a.dtype != want_dtype[t["dtype"]]:
            print(f"FAIL {f.path}: tensor {name} has dtype {a.dtype}")
            bad += 1
        if a.flags.writeable or a.base is None:
            print(f"FAIL {f.path}: tensor {name} is not a read-only view of the mapping")
            bad += 1
    return bad


def collect(client, release, order, files, label):
    """Drains one loader; returns (fails, [paths in arrival order], inodes)."""
    fails, seen, inodes = 0, [], {}
    for f in client.want(release, order):
        seen.append(f.path)
        if f.path not in files:
            print(f"FAIL {label}: got unknown file {f.path}")
            fails += 1
            f.close()
            continue
        st = os.fstat(f.fd)
        inodes[f.path] = (st.st_dev, st.st_ino)
        if f.size != len(files[f.path]) or f.sha256 != hashlib.sha256(files[f.path]).digest():
            print(f"FAIL {label}: {f.path} metadata differs from the source")
            fails += 1
        flags = int(open(f"/proc/self/fdinfo/{f.fd}").read().split("flags:")[1].split()[0], 8)
        if flags & os.O_ACCMODE != os.O_RDONLY:
            print(f"FAIL {label}: {f.path} descriptor is not read-only")
            fails += 1
        if f.path.endswith(".safetensors"):
            fails += check_tensors(f, files[f.path])
        elif f.size and bytes(f.mmap()) != files[f.path]:
            print(f"FAIL {label}: {f.path} differs from the source")
            fails += 1
        f.close()
    return fails, seen, inodes


def exactly_once(seen, want, label):
    if sorted(seen) != sorted(want) or len(set(seen)) != len(seen):
        print(f"FAIL {label}: received {seen}, wanted each of {sorted(want)} once")
        return 1
    return 0


def case_multi_node(tmp):
    # Shards of ~50 chunks: with files of a dozen, the first-wanted one could
    # finish second merely because its verification or fsync ran slower
    # than the next file's, while peer pipelines hold several files at once.
    k, repo, files, mf, mid = setup(tmp, 8 * 1024 * 1024)
    sock = os.path.join(sock_dir(tmp), "b.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    c = Node("puller-c", node_args(k, "c", tmp, ["--peer", a.addr, "--pull", mid]))
    b = Node("loader-node", node_args(k, "b", tmp, ["--peer", a.addr, "--peer", c.addr,
                                                    "--loader-socket", sock]))
    fails = 0
    if not b.wait_for(r"loader socket on", 10) or not b.wait_for(r"authenticated", 10):
        print("FAIL loader node did not start its socket or connect to peers")
        return 1
    mode = stat.S_IMODE(os.stat(sock).st_mode)
    if mode != 0o660:
        print(f"FAIL socket mode is {oct(mode)}, not 0o660")
        fails += 1
    shards = sorted(p for p in files if p.endswith(".safetensors"))
    order = shards[:]
    random.Random(3).shuffle(order)
    order.remove(shards[-1])
    order.insert(0, shards[-1])  # the last shard in manifest order comes first
    blobs = os.path.join(tmp, "cache-b", "models--org--model", "blobs")

    def blob_inode(path):
        # A file is handed over once verified, which may be before it is
        # renamed into blobs/: wait for the name.
        name = os.path.join(blobs, hashlib.sha256(files[path]).hexdigest())
        end = time.monotonic() + WAIT_S
        while True:
            try:
                st = os.stat(name)
                return (st.st_dev, st.st_ino)
            except FileNotFoundError:
                if time.monotonic() > end:
                    return None
                time.sleep(0.05)

    result = {}

    def second_loader():
        # Joins once the release is open on the node, by repo@rev, all files.
        if not b.wait_for(r"watching org/model@", WAIT_S):
            result["err"] = "first loader never started watching"
            return
        try:
            with shoal_loader.Client(sock, timeout=WAIT_S) as cl:
                result["v"] = collect(cl, "org/model@" + "ab" * 20, None, files, "loader 2")
        except Exception as e:  # reported below
            result["err"] = repr(e)

    t = threading.Thread(target=second_loader)
    t.start()
    t0 = time.monotonic()
    with shoal_loader.Client(sock, timeout=WAIT_S) as cl:
        f1, seen, inodes = collect(cl, mid, order, files, "loader 1")
    t.join(WAIT_S)
    # No copy: what the loader got (and read in full, above) is the inode
    # that the cache publishes.
    for path, ino in inodes.items():
        want = blob_inode(path)
        if want != ino:
            print(f"FAIL loader 1: {path} descriptor is inode {ino}, the cache has {want}")
            fails += 1
    fails += f1 + exactly_once(seen, order, "loader 1")
    print(f"loader 1 order asked:    {order}\nloader 1 order received: {seen} "
          f"({time.monotonic() - t0:.2f} s)")
    # "In its order where the swarm allows": peers' pipelines hold the next
    # wanted shards while the first one finishes, and on a loaded machine
    # its verification and fsync may end just after theirs, so the first
    # wanted shard must be among the first three, and the first half of the
    # order must on the whole come before the second (a random order passes
    # both about one time in five).
    if seen and order[0] not in seen[:3]:
        print(f"FAIL loader 1 got {seen[:3]} first, asked for {order[0]} first")
        fails += 1
    half = len(order) // 2
    pos = {p: i for i, p in enumerate(seen)}
    if len(seen) == len(order) and \
            sum(pos[p] for p in order[:half]) >= sum(pos[p] for p in order[half:]):
        print("FAIL loader 1: the first half of its order did not come before the second")
        fails += 1
    if "err" in result or "v" not in result:
        print(f"FAIL second loader: {result.get('err', 'did not finish')}")
        fails += 1
    else:
        f2, seen2, _ = result["v"]
        fails += f2 + exactly_once(seen2, list(files), "loader 2")
    # The C client, through the example loader, on the now complete release.
    r = subprocess.run([EXAMPLE, sock, mid, *shards[:3]], capture_output=True, text=True,
                       timeout=WAIT_S)
    got = re.findall(r"^FILE (\d+) (\S+) (\d+) ([0-9a-f]{64}) ", r.stdout, re.M)
    if r.returncode != 0 or not r.stdout.rstrip().endswith("DONE 3") or \
            [g[1] for g in got] != shards[:3] or \
            any(g[3] != hashlib.sha256(files[g[1]]).hexdigest() for g in got):
        print(f"FAIL C example loader: rc {r.returncode}\n{r.stdout}{r.stderr}")
        fails += 1
    if b.stop() != 0 or a.stop() != 0 or c.stop() != 0:
        print("FAIL a node did not shut down cleanly")
        fails += 1
    if os.path.exists(sock):
        print("FAIL the socket file outlived the daemon")
        fails += 1
    if fails:
        a.dump()
        c.dump()
        b.dump()
    return fails


def case_two_loaders(tmp):
    """Two loaders on a node capped at --rate-down 4M (so its pipeline holds
    about half a second, less than a shard): the first asks for the last
    shard first; the second, joining while it comes, asks for every file
    front to back, its first file changing each time one completes. The
    first loader's shard comes first: a loader's new first file does not go
    ahead of one another loader has waited for longer. (With the second
    loader's files placed first, each of its files in turn went ahead of the
    rest of the last shard, which came after the first shard.)"""
    k, repo, files, mf, mid = setup(tmp, 8 * 1024 * 1024)
    sock = os.path.join(sock_dir(tmp), "b.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    b = Node("loader-node", node_args(k, "b", tmp, ["--peer", a.addr, "--loader-socket", sock,
                                                    "--rate-down", "4M"]))
    fails = 0
    if not b.wait_for(r"loader socket on", 10) or not b.wait_for(r"authenticated", 10):
        print("FAIL loader node did not start its socket or connect to its peer")
        return 1 + shoalproc.stop_all([b, a])
    shards = sorted(p for p in files if p.endswith(".safetensors"))
    order = [shards[-1]] + shards[:-1]
    result = {}

    def second_loader():
        if not b.wait_for(r"watching org/model@.*in its order", WAIT_S):
            result["err"] = "the first loader never started watching"
            return
        try:
            with shoal_loader.Client(sock, timeout=WAIT_S) as cl:
                result["v"] = collect(cl, mid, None, files, "loader 2")
        except Exception as e:  # reported below
            result["err"] = repr(e)

    t = threading.Thread(target=second_loader)
    t.start()
    with shoal_loader.Client(sock, timeout=WAIT_S) as cl:
        f1, seen, _ = collect(cl, mid, order, files, "loader 1")
    t.join(WAIT_S)
    fails += f1 + exactly_once(seen, order, "loader 1")
    print(f"loader 1 asked {order}\nloader 1 received {seen}")
    if seen and seen[0] != order[0]:
        print(f"FAIL loader 1 got {seen[0]} first, asked for {order[0]} first")
        fails += 1
    if "err" in result or "v" not in result:
        print(f"FAIL second loader: {result.get('err', 'did not finish')}")
        fails += 1
    else:
        f2, seen2, _ = result["v"]
        fails += f2 + exactly_once(seen2, list(files), "loader 2")
        print(f"loader 2 received {seen2}")
    fails += shoalproc.stop_all([b, a])
    if fails:
        b.dump(60)
    return fails


def loader_error(sock, release, order=None):
    """The LOADER_ERROR text a loader asking for |release| gets (None: it got
    files instead)."""
    try:
        with shoal_loader.Client(sock, timeout=WAIT_S) as cl:
            for f in cl.want(release, order):
                f.close()
    except shoal_loader.LoaderError as e:
        return str(e)
    return None


def case_by_name(tmp):
    if not TRACKER:
        print("FAIL no shoal-tracker given")
        return 1
    k, repo, files, mf, mid = setup(tmp)
    name = "org/model@" + "ab" * 20
    trk, taddr = shoalproc.start_tracker(TRACKER, k)
    if not taddr:
        return 1
    # The seed gives the tracker the manifest it holds, and announces it.
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--tracker", taddr]))
    fails = 0
    if not trk.wait_for(r"manifest registered org/model@", WAIT_S):
        print("FAIL the seed did not register the release with the tracker")
        trk.dump()
        a.dump()
        return 1
    sock = os.path.join(sock_dir(tmp), "b.sock")
    b = Node("loader-node", node_args(k, "b", tmp, ["--tracker", taddr, "--no-origin",
                                                    "--loader-socket", sock]))
    if not b.wait_for(r"tracker .*: authenticated", WAIT_S):
        print("FAIL the loader's node did not reach the tracker")
        fails += 1
    shards = sorted(p for p in files if p.endswith(".safetensors"))
    order = shards[:]
    random.Random(5).shuffle(order)
    # Malformed: refused before anything is asked of the tracker.
    err = loader_error(sock, "org/model")
    if err is None or "unknown release 'org/model'" not in err or "not org/name@commit" not in err:
        print(f"FAIL a malformed name got {err!r}")
        fails += 1
    # A name nobody published: the tracker says so, the loader hears it.
    unknown = "org/model@" + "ef" * 20
    t0 = time.monotonic()
    err = loader_error(sock, unknown, order)
    if err is None or f"release '{unknown}' cannot be fetched" not in err or "no tracker knows" not in err:
        print(f"FAIL a name the tracker does not know got {err!r}")
        fails += 1
    print(f"unknown name refused in {time.monotonic() - t0:.2f} s: {err}")
    # The published name: resolved through the tracker, pulled from the
    # seed the tracker lists.
    t0 = time.monotonic()
    with shoal_loader.Client(sock, timeout=WAIT_S) as cl:
        f1, seen, _ = collect(cl, name, order, files, "loader by name")
    fails += f1 + exactly_once(seen, order, "loader by name")
    print(f"by name: received {seen} ({time.monotonic() - t0:.2f} s)")
    if not b.wait_for(r"manifest [0-9a-f]+ for org/model@[0-9a-f]+ received from a tracker", 1):
        print("FAIL the node did not resolve the name through the tracker")
        fails += 1
    # Now held: a name is served at once, by id too.
    for release in (name, mid):
        with shoal_loader.Client(sock, timeout=WAIT_S) as cl:
            f2, seen2, _ = collect(cl, release, ["config.json"], files, "loader after pull")
        fails += f2 + exactly_once(seen2, ["config.json"], "loader after pull")
    if b.stop() != 0 or a.stop() != 0:
        print("FAIL a node did not shut down cleanly")
        fails += 1
    if fails:
        trk.dump()
        a.dump()
        b.dump()
    return fails


STALL_FILES = 400


def case_stalled(tmp):
    k = shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL,
                            ("cluster", "publisher", "a", "b"), ("a", "b"))
    repo = os.path.join(tmp, "repo")
    rnd = random.Random(11)
    files = {}
    # Long paths make big frames, so a few hundred of them fill the socket.
    for i in range(STALL_FILES):
        path = f"part-{i % 4}/" + "w" * 200 + f"-{i:04d}.bin"
        files[path] = rnd.randbytes(64 + rnd.randrange(512))
        os.makedirs(os.path.dirname(os.path.join(repo, path)), exist_ok=True)
        with open(os.path.join(repo, path), "wb") as f:
            f.write(files[path])
    mf = os.path.join(tmp, "rel.manifest")
    mid = shoalproc.build_manifest(SHOAL, repo, k, mf, repo_id="org/many", commit="cd" * 20,
                                   extra=())
    sock = os.path.join(sock_dir(tmp), "b.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    b = Node("loader-node", node_args(k, "b", tmp, ["--peer", a.addr,
                                                    "--loader-socket", sock]))
    fails = 0
    if not b.wait_for(r"loader socket on", 10) or not b.wait_for(r"authenticated", 10):
        print("FAIL loader node did not start its socket or connect to its peer")
        return 1
    result = {}

    def reader():
        # Connects once the release is open, reads as files come.
        if not b.wait_for(r"watching org/many@", WAIT_S):
            result["err"] = "the stalled loader never started watching"
            return
        try:
            with shoal_loader.Client(sock, timeout=WAIT_S) as cl:
                got = []
                for f in cl.want(mid):
                    got.append((f.path, f.index))
                    f.close()
                result["v"] = got
        except Exception as e:  # reported below
            result["err"] = repr(e)

    t = threading.Thread(target=reader)
    t.start()
    with shoal_loader.Client(sock, timeout=WAIT_S) as cl:
        it = cl.want(mid)  # the request goes out now; nothing is read yet
        done = b.wait_for(r"release [0-9a-f]+ \(org/many@[0-9a-f]+\) complete", WAIT_S)
        t.join(WAIT_S)  # the other loader is not held up by this one
        seen, idx = [], []
        try:
            for f in it:
                seen.append(f.path)
                idx.append(f.index)
                if f.total != STALL_FILES or f.size != len(files[f.path]) or \
                        bytes(f.mmap()) != files[f.path]:
                    print(f"FAIL stalled loader: {f.path} differs from the source")
                    fails += 1
                f.close()
        except (shoal_loader.LoaderError, TimeoutError) as e:
            print(f"FAIL stalled loader: {e!r} after {len(seen)} files")
            fails += 1
    if not done:
        print("FAIL the pull did not complete")
        fails += 1
    fails += exactly_once(seen, list(files), "stalled loader")
    if sorted(idx) != list(range(STALL_FILES)):
        print("FAIL stalled loader: indexes are not 0..n-1 once each")
        fails += 1
    if not b.wait_for(r"is not keeping up: its socket is full", 1):
        print("FAIL the daemon never found the stalled loader's socket full "
              "(the test did not exercise the loop's fallback)")
        fails += 1
    if "err" in result or "v" not in result:
        print(f"FAIL reading loader: {result.get('err', 'did not finish')}")
        fails += 1
    else:
        fails += exactly_once([p for p, _ in result["v"]], list(files), "reading loader")
        if sorted(result["v"]) != sorted(zip(seen, idx)):
            print("FAIL the two loaders got different indexes for the same paths")
            fails += 1
    if b.stop() != 0 or a.stop() != 0:
        print("FAIL a node did not shut down cleanly")
        fails += 1
    if fails:
        a.dump()
        b.dump()
    return fails


def case_memory(tmp):
    k, repo, files, mf, mid = setup(tmp)
    sock = os.path.join(sock_dir(tmp), "b.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    b = Node("memory-node", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid,
                                                    "--store", "memory",
                                                    "--loader-socket", sock]))
    fails = 0
    with shoal_loader.Client(sock, timeout=WAIT_S) as c1:
        f1, seen1, ino1 = collect(c1, mid, None, files, "loader 1")
    fails += f1 + exactly_once(seen1, list(files), "loader 1")
    # A second loader after completion maps the same memfds.
    with shoal_loader.Client(sock, timeout=WAIT_S) as c2:
        fds = []
        for f in c2.want(mid, ["config.json", "model-00001-of-00008.safetensors"]):
            link = os.readlink(f"/proc/self/fd/{f.fd}")
            if not link.startswith("/memfd:"):
                print(f"FAIL {f.path} is not a memfd: {link}")
                fails += 1
            st = os.fstat(f.fd)
            if (st.st_dev, st.st_ino) != ino1.get(f.path):
                print(f"FAIL {f.path}: second loader got another inode")
                fails += 1
            fds.append(f)
        for f in fds:
            f.close()
    cache = os.path.join(tmp, "cache-b")
    stored = [n for _, _, names in os.walk(cache) for n in names] if os.path.isdir(cache) else []
    if stored:
        print(f"FAIL memory store wrote files: {stored}")
        fails += 1
    if b.stop() != 0 or a.stop() != 0:
        print("FAIL a node did not shut down cleanly")
        fails += 1
    if fails:
        a.dump()
        b.dump()
    return fails


def as_nobody(fn, groups=(), uid=65534):
    """Runs fn() in a forked child as uid/gid nobody (or |uid|); returns its
    exit code."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.setgroups(list(groups))
            os.setgid(65534)
            os.setuid(uid)
            code = fn()
        except BaseException as e:  # the child must never return into the test
            print(f"child: {e!r}")
        finally:
            sys.stdout.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def try_connect(sock, mid):
    """0: refused by the socket mode; 1: refused by the daemon; 2: served;
    5: refused by the socket mode without the client saying who may use it."""
    try:
        cl = shoal_loader.Client(sock, timeout=20)
    except PermissionError as e:
        # The client explains (owner, group, mode, who may), as the CLI
        # does, not a bare errno traceback.
        ok = isinstance(e, shoal_loader.LoaderError) and "(owner " in str(e)
        print(f"child: {e}")
        return 0 if ok else 5
    try:
        n = 0
        for f in cl.want(mid):
            n += 1
            f.close()
        return 2 if n else 3
    except shoal_loader.LoaderError as e:
        return 1 if "not authorised" in str(e) else 4
    finally:
        cl.close()


def check_departed_member(node, sock, mid):
    """A process (uid nobody, primary gid 65533, supplementary nogroup)
    connects and sends its request while the daemon is stopped, hands the
    socket to us and exits; then the daemon runs on and accepts. It must
    judge the groups the connection was made with: the pid it would read
    /proc for is gone (or, on a busy machine, someone else's). Served."""
    ours, theirs = socket.socketpair()
    os.kill(node.p.pid, signal.SIGSTOP)
    try:
        pid = os.fork()
        if pid == 0:
            code = 99
            try:
                os.setgroups([65534])
                os.setgid(65533)
                os.setuid(65534)
                cl = socket.socket(socket.AF_UNIX)
                cl.connect(sock)
                cl.sendall(shoal_loader._frame([shoal_loader.LOADER_WANT, mid, []]))
                socket.send_fds(theirs, [b"s"], [cl.fileno()])
                code = 0
            except BaseException as e:  # the child must never return into the test
                print(f"child: {e!r}")
            finally:
                sys.stdout.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        got = socket.recv_fds(ours, 16, 1) if os.waitstatus_to_exitcode(status) == 0 else None
    finally:
        os.kill(node.p.pid, signal.SIGCONT)
    if not got or not got[1]:
        print("FAIL the departed member's connection could not be set up")
        return 1
    cl = socket.socket(fileno=got[1][0])
    cl.settimeout(20)
    data = b""
    try:
        while True:
            b = cl.recv(65536)
            if not b:
                break
            data += b
    except OSError as e:
        print(f"FAIL the departed member's connection: {e}")
        return 1
    finally:
        cl.close()
    # Served: the first frame is a LOADER_FILE, [65, path, ...] (7 fields).
    if data[4:6] != bytes([0x97, shoal_loader.LOADER_FILE]):
        print(f"FAIL a member that exited before the accept was not served: {data[:200]!r}")
        return 1
    return 0


def case_refused(tmp):
    k, repo, files, mf, mid = setup(tmp)
    sock = os.path.join(sock_dir(tmp), "a.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--loader-socket", sock]))
    fails = 0
    for release, order, want in (("org/nope@main", None, "unknown release"),
                                 (mid, ["no/such/file.bin"], "has no file 'no/such/file.bin'")):
        try:
            with shoal_loader.Client(sock, timeout=20) as cl:
                list(cl.want(release, order))
            print(f"FAIL {release} {order}: no LOADER_ERROR")
            fails += 1
        except shoal_loader.LoaderError as e:
            if want not in str(e):
                print(f"FAIL {release}: error '{e}' does not say '{want}'")
                fails += 1
    # The example loader says what went wrong, without a traceback, and
    # exits 1: a release the daemon refuses, a socket nobody serves.
    for argv, want in (([sock, "org/nope@main"], "unknown release"),
                       ([os.path.join(tmp, "nobody.sock"), mid], "No such file")):
        r = subprocess.run([sys.executable, os.path.join(NODE_DIR, "examples", "load_model.py"),
                            *argv], capture_output=True, text=True, timeout=60)
        if r.returncode != 1 or "Traceback" in r.stderr or not re.search(
                r"^load_model: .*" + want, r.stderr, re.M):
            print(f"FAIL load_model.py {argv[1]}: exit {r.returncode}: {r.stderr}")
            fails += 1
    if os.geteuid() != 0:
        print("not root: skipping the unauthorised-user checks")
    else:
        rc = as_nobody(lambda: try_connect(sock, mid))
        if rc != 0:
            print(f"FAIL nobody was not stopped by the socket mode (child result {rc})")
            fails += 1
        os.chmod(sock, 0o666)
        rc = as_nobody(lambda: try_connect(sock, mid))
        if rc != 1:
            print(f"FAIL nobody was not refused by SO_PEERCRED (child result {rc})")
            fails += 1
        if not a.wait_for(r"not authorised: uid 65534", 10):
            print("FAIL the daemon did not log the refusal")
            fails += 1
        # With --loader-group nogroup, the same user is let in.
        sock2 = os.path.join(sock_dir(tmp), "g.sock")
        g = Node("group-node", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid,
                                                       "--loader-socket", sock2,
                                                       "--loader-group", "nogroup"]))
        st = os.stat(sock2)
        if st.st_gid != 65534:
            print(f"FAIL the socket was not chown'd to nogroup (gid {st.st_gid})")
            fails += 1
        rc = as_nobody(lambda: try_connect(sock2, mid), groups=[65534])
        if rc != 2:
            print(f"FAIL a member of --loader-group was not served (child result {rc})")
            fails += 1
        fails += check_departed_member(g, sock2, mid)
        if g.stop() != 0:
            print("FAIL group node did not shut down cleanly")
            fails += 1
        if fails:
            g.dump()
    if a.stop() != 0:
        print("FAIL seed did not shut down cleanly")
        fails += 1
    if fails:
        a.dump()
    return fails


def read_until_closed(s, timeout):
    """Every byte |s| receives until the daemon closes it (or |timeout| s
    pass: then None)."""
    data, end = b"", time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            return None
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            return data
        if not b:
            return data
        data += b


def case_limits(tmp):
    k, repo, files, mf, mid = setup(tmp)
    sock = os.path.join(sock_dir(tmp), "a.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                             "--loader-socket", sock, "--loader-user", "nobody"]))
    fails = 0
    if not a.wait_for(r"loader socket on", 10):
        print("FAIL no loader socket")
        return 1

    # Silent, and half a frame: both closed after the deadline, saying why.
    quiet, half = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
    quiet.connect(sock)
    half.connect(sock)
    half.sendall(shoal_loader._frame([shoal_loader.LOADER_WANT, mid, []])[:9])
    for name, s in (("silent", quiet), ("half-frame", half)):
        data = read_until_closed(s, 20)
        if data is None or b"no LOADER_WANT within 5.0 s" not in data:
            print(f"FAIL a {name} connection was not closed with a reason: {data!r}")
            fails += 1
        s.close()

    # One uid cannot take every slot: of 64 idle connections, those past 16
    # are refused at once, and another user is served meanwhile.
    held = []
    for _ in range(64):
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        held.append(s)
    too_many, end = 0, time.monotonic() + 15
    for s in held[16:]:
        data = read_until_closed(s, max(0.1, end - time.monotonic()))
        too_many += bool(data and b"too many loaders of uid 0" in data)
    if too_many != 48:
        print(f"FAIL {too_many} of 48 connections past one uid's share were refused")
        fails += 1
    # --loader-user alone lets nobody in: the socket's mode no longer
    # stops it before the credential check (the test used to chmod 0666).
    rc = as_nobody(lambda: try_connect(sock, mid))
    if rc != 2:
        print(f"FAIL another user was not served while uid 0 held its slots (child {rc})")
        fails += 1
    # ...and any other uid is still refused, saying so.
    rc = as_nobody(lambda: try_connect(sock, mid), uid=1)
    if rc != 1:
        print(f"FAIL uid 1 was not refused by SO_PEERCRED (child {rc})")
        fails += 1
    for s in held:
        s.close()

    # Unfinished large requests: at most the daemon's budget is held.
    before = shoalproc.rss_kib(a.p.pid)
    big = []
    busy = 0
    for _ in range(16):
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.settimeout(20)
        big.append(s)
        try:
            s.sendall(struct.pack(">I", 16 << 20) + b"\x92" + b"\0" * ((8 << 20) - 1))
        except OSError:
            pass  # refused half-way: the daemon closed it
    time.sleep(0.5)
    grew = shoalproc.rss_kib(a.p.pid) - before
    end = time.monotonic() + 20
    for s in big:
        data = read_until_closed(s, max(0.1, end - time.monotonic()))
        busy += bool(data and b"busy: unfinished loader requests" in data)
        s.close()
    print(f"16 unfinished 8 MiB requests: RSS +{grew} KiB, {busy} refused as busy")
    with open(f"/proc/{a.p.pid}/maps") as f, open(SHOALD, "rb") as exe:
        if "libasan" in f.read() or b"__asan_init" in exe.read():
            # AddressSanitizer keeps freed buffers in quarantine: RSS says
            # nothing about what the daemon holds there.
            print("AddressSanitizer build: RSS not checked")
            grew = 0
    if grew >= 64 << 10 or busy < 11:
        print(f"FAIL unfinished requests held {grew} KiB ({busy} of 16 refused as busy)")
        fails += 1

    # A long order is still a request: 2,000 paths of 1,000 bytes (2 MB).
    order = ["x" * 996 + f"{i:04d}" for i in range(2000)]
    err = loader_error(sock, mid, order)
    if not err or "has no file '" + order[0][:100] not in err:
        print(f"FAIL a 2 MB request was not read and answered: {err and err[:200]}")
        fails += 1
    if a.stop() != 0:
        print("FAIL seed did not shut down cleanly")
        fails += 1
    if fails:
        a.dump()
    return fails


def status_ids(ctl, ids):
    """Which of |ids| (hex) `shoal status` at |ctl| still lists."""
    out = subprocess.run([SHOAL, "status", "--socket", ctl], capture_output=True, text=True,
                         timeout=30).stdout
    return [i for i in ids if i[:16] in out or i in out]


def case_abandoned(tmp):
    k, repo, files, mf, mid = setup(tmp, shard_bytes=256 * 1024)
    sock = os.path.join(sock_dir(tmp), "b.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    b = Node("puller", node_args(k, "b", tmp, ["--peer", a.addr, "--loader-socket", sock]))
    fails = 0
    if not b.wait_for(r"authenticated", 20):
        print("FAIL the puller did not reach the seed")
        return 1
    rnd = random.Random(11)
    bogus = [rnd.randbytes(32).hex() for _ in range(64)]
    for mid_x in bogus:
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.sendall(shoal_loader._frame([shoal_loader.LOADER_WANT, mid_x, []]))
        time.sleep(0.02)  # the daemon reads the request before the hang-up
        s.close()
    # Withdrawn as their loaders leave: bounded wait for the status to say so.
    left, end = bogus, time.monotonic() + 20
    while left and time.monotonic() < end:
        time.sleep(0.2)
        left = status_ids(b.ctl, bogus)
    if left:
        print(f"FAIL {len(left)} of 64 pulls whose loaders left are still listed")
        fails += 1
    r = subprocess.run([SHOAL, "pull", mid, "--socket", b.ctl, "--timeout", "60"],
                       capture_output=True, text=True, timeout=90)
    if r.returncode != 0:
        print(f"FAIL shoal pull after 64 abandoned loader pulls: {r.returncode} {r.stderr}")
        fails += 1

    # One uid: 4 releases not open yet at once; joining one is free.
    held = []
    for mid_x in bogus[:4] + [bogus[0]]:
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.sendall(shoal_loader._frame([shoal_loader.LOADER_WANT, mid_x, []]))
        held.append(s)
    if not b.wait_for(r"loader .*: waiting for release " + bogus[3], 10):
        print("FAIL the fourth loader's release is not being fetched")
        fails += 1
    err = loader_error(sock, bogus[4])
    if not err or "busy: loaders of uid 0 already wait for 4 releases" not in err:
        print(f"FAIL a fifth release for one uid was not refused as busy: {err}")
        fails += 1
    for s in held:
        if select.select([s], [], [], 0.5)[0]:
            print(f"FAIL a waiting loader was answered: {s.recv(300)!r}")
            fails += 1
            break
    if len(status_ids(b.ctl, bogus[:4])) != 4:
        print("FAIL the 4 releases loaders wait for are not being pulled")
        fails += 1
    for s in held:
        s.close()
    left, end = bogus[:4], time.monotonic() + 20
    while left and time.monotonic() < end:
        time.sleep(0.2)
        left = status_ids(b.ctl, bogus[:4])
    if left:
        print(f"FAIL {len(left)} pulls still listed after their loaders left")
        fails += 1
    fails += shoalproc.stop_all([b, a])
    if fails:
        b.dump(200)
    return fails


def asan_build(pid):
    """Whether shoald (process |pid|) runs with AddressSanitizer, which keeps
    freed buffers in quarantine: RSS then says nothing of what it holds."""
    with open(f"/proc/{pid}/maps") as f, open(SHOALD, "rb") as exe:
        return "libasan" in f.read() or b"__asan_init" in exe.read()


def case_pending_orders(tmp):
    k, repo, files, mf, mid = setup(tmp, shard_bytes=256 * 1024)
    sock = os.path.join(sock_dir(tmp), "b.sock")
    b = Node("b", node_args(k, "b", tmp, ["--loader-socket", sock]))
    fails = 0
    if not b.wait_for(r"loader socket on", 10):
        print("FAIL no loader socket")
        return 1
    nobody = random.Random(3).randbytes(32).hex()
    order = [f"p{i:05d}-" + "x" * 993 for i in range(8000)]  # 8 MB
    frame = shoal_loader._frame([shoal_loader.LOADER_WANT, nobody, order])
    before = shoalproc.rss_kib(b.p.pid)
    held = []
    for _ in range(12):
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.settimeout(30)
        try:
            s.sendall(frame)
        except OSError:
            pass  # refused half-way: the daemon closed it
        held.append(s)
    busy = waiting = 0
    end = time.monotonic() + 20
    for s in held:
        # A waiting loader hears nothing; a refused one is told and closed.
        if not select.select([s], [], [], max(0.1, min(1.0, end - time.monotonic())))[0]:
            waiting += 1
            continue
        data = read_until_closed(s, max(0.1, end - time.monotonic())) or b""
        # Refused as its order arrived, or once it was in: both say busy.
        busy += b"busy: " in data
    grew = shoalproc.rss_kib(b.p.pid) - before
    print(f"12 loaders with 8 MB orders waiting: {waiting} kept, {busy} busy, RSS +{grew} KiB")
    if asan_build(b.p.pid):
        print("AddressSanitizer build: RSS not checked")
        grew = 0
    if waiting > 4 or busy + waiting != 12 or grew >= 64 << 10:
        print("FAIL waiting loaders' orders are not bounded by the budget")
        fails += 1
    for s in held:
        s.close()
    # Their bytes come back: a new one is kept again (bounded wait).
    ok, end = False, time.monotonic() + 20
    while not ok and time.monotonic() < end:
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.sendall(frame)
        ok = not select.select([s], [], [], 1.0)[0]
        s.close()
    if not ok:
        print("FAIL the budget did not come back after the waiting loaders left")
        fails += 1
    if b.stop() != 0:
        print("FAIL b did not shut down cleanly")
        fails += 1
    if fails:
        b.dump(100)
    return fails


def read_frames(data):
    """The msgpack bodies of the frames in |data|, decoded."""
    out, off = [], 0
    while off + 4 <= len(data):
        (n,) = struct.unpack(">I", data[off:off + 4])
        if off + 4 + n > len(data):
            break
        out.append(shoal_loader._Reader(data[off + 4:off + 4 + n]).item())
        off += 4 + n
    return out


def fake_daemon(path, frames_for):
    """A loader socket at |path| that answers one connection's request with
    the frames frames_for(fd) returns ([(bytes, fd or None)]), then closes;
    runs in a thread, returns it."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)

    def serve():
        srv.settimeout(WAIT_S)
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)  # the request
            fd = os.open(path + ".blob", os.O_RDONLY)
            for data, with_fd in frames_for(fd):
                anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", with_fd))] \
                    if with_fd is not None else []
                conn.sendmsg([data], anc)
            os.close(fd)
        srv.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def case_short_done(tmp):
    # The daemon: a dropped release does not end a slow loader with DONE.
    k = shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL, ("cluster", "publisher", "b"),
                            ("b",))
    files = {f"shard-{i:04d}.bin": os.urandom(100) + bytes([i % 256]) for i in range(1500)}
    repo, mf, mid = make_release(tmp, k, files)
    sock = os.path.join(sock_dir(tmp), "b.sock")
    # Opening 1500 seeded files takes seconds before the node listens: on
    # a loaded machine (CI runs three tests at a time) more than 20.
    b = Node("b", node_args(k, "b", tmp, ["--manifest", mf, "--seed-dir", repo,
                                          "--loader-socket", sock]), start_timeout=60)
    fails = 0
    if not b.wait_for(r"release .* complete", 60):
        print("FAIL the release did not complete from its seed dir")
        return 1
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(shoal_loader._frame([shoal_loader.LOADER_WANT, mid, []]))
    # Every file is queued at once (complete already); the socket fills.
    if not b.wait_for(r"every one of 1500 files of .* queued", 20):
        print("FAIL the loader's files were not queued")
        fails += 1
    r = subprocess.run([SHOAL, "drop", mid, "--socket", b.ctl], capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0:
        print(f"FAIL shoal drop: {r.returncode} {r.stderr}")
        fails += 1
    data = read_until_closed(s, 20)
    s.close()
    frames = read_frames(data or b"")
    nfile = sum(1 for f in frames if f and f[0] == shoal_loader.LOADER_FILE)
    last = frames[-1] if frames else None
    print(f"slow loader during the drop: {nfile} files, then {last and last[:2]}")
    if nfile >= 1500:
        print("FAIL every file fit in the socket: the case shows nothing")
        fails += 1
    elif not last or last[0] != shoal_loader.LOADER_ERROR or "dropped" not in last[1] or \
            f"({nfile} of its 1500 files were handed over)" not in last[1]:
        print(f"FAIL the slow loader did not end with LOADER_ERROR naming {nfile} files")
        fails += 1
    if not b.wait_for(rf"closed: LOADER_ERROR sent \({nfile} of 1500 files handed\)", 10):
        print("FAIL the daemon's log does not say how many files were handed")
        fails += 1
    if b.stop() != 0:
        print("FAIL b did not shut down cleanly")
        fails += 1

    # The clients: LOADER_DONE before every announced file is an error.
    blob = b"x" * 100
    for label, done_files in (("DONE short of total", 1), ("DONE lying", 2)):
        path = os.path.join(sock_dir(tmp), f"fake{done_files}.sock")
        with open(path + ".blob", "wb") as f:
            f.write(blob)
        sha = hashlib.sha256(blob).digest()

        def frames_for(fd):
            return [(shoal_loader._frame([shoal_loader.LOADER_FILE, "a.bin", 100, sha, 0, 2, 0]),
                     fd),
                    (shoal_loader._frame([shoal_loader.LOADER_DONE, done_files]), None)]
        for client in ("python", "c"):
            t = fake_daemon(path, frames_for)
            if client == "python":
                try:
                    with shoal_loader.Client(path, timeout=WAIT_S) as cl:
                        n = sum(1 for f in cl.want("org/x@" + "ab" * 20) if not f.close())
                    err = f"ended normally after {n} files"
                except shoal_loader.LoaderError as e:
                    err = str(e)
                ok = "LOADER_DONE after 1 files of 2" in err
            else:
                r = subprocess.run([EXAMPLE, path, "org/x@" + "ab" * 20], capture_output=True,
                                   text=True, timeout=WAIT_S)
                err = f"exit {r.returncode}: {r.stdout.strip()} {r.stderr.strip()}"
                ok = r.returncode != 0 and "LOADER_DONE after 1 files of 2" in r.stderr
            t.join(WAIT_S)
            os.unlink(path)
            if not ok:
                print(f"FAIL {client} client, {label}: {err}")
                fails += 1
    if fails:
        b.dump(60)
    return fails


def case_store_full(tmp):
    return shoalproc.on_small_disk(tmp, "8m", lambda small: loader_store_full(tmp, small),
                                   "store_full")


def loader_store_full(tmp, small):
    k, repo, files, mf, mid = setup(tmp, shard_bytes=4 * 1024 * 1024)
    sock = os.path.join(sock_dir(tmp), "b.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    args = node_args(k, "b", tmp, ["--peer", a.addr, "--loader-socket", sock])
    args[args.index("--cache-dir") + 1] = os.path.join(small, "hub")
    b = Node("puller", args)
    fails = 0
    if not b.wait_for(r"authenticated", 20):
        print("FAIL the puller did not reach the seed")
        return 1
    try:
        with shoal_loader.Client(sock, timeout=30) as cl:
            n = sum(1 for f in cl.want(mid) if not f.close())
        err = f"got {n} files from a release that does not fit"
    except shoal_loader.LoaderError as e:
        err = str(e)
        print(f"loader: {err}")
    except OSError as e:  # the old daemon: no answer at all
        err = f"no answer: {e}"
    if "no space left" not in err.lower():
        print(f"FAIL the loader waiting by id was not told the release failed: {err}")
        fails += 1
    fails += shoalproc.stop_all([b, a])
    if fails:
        b.dump(60)
    return fails


def loader_group():
    """A group nobody is not in, for --loader-group: (name, gid)."""
    import grp
    for name in ("users", "staff", "daemon"):
        try:
            return name, grp.getgrnam(name).gr_gid
        except KeyError:
            continue
    return None, None


def try_read(paths, files):
    """For as_nobody: 0 when no path opens, 1 when all read right, 2 mixed,
    3 when something read differs from the source."""
    opened = 0
    for p, rel in paths:
        try:
            with open(p, "rb") as fh:
                data = fh.read()
        except PermissionError:
            continue
        opened += 1
        if data != files[rel]:
            print(f"child: {p} differs from the source")
            return 3
    return 0 if opened == 0 else 1 if opened == len(paths) else 2


def case_cache_perm(tmp):
    if os.geteuid() != 0:
        print("not root: cannot run a check as another user")
        sys.exit(77)
    gname, gid = loader_group()
    if gname is None:
        print("no group to use as --loader-group")
        sys.exit(77)
    k, repo, files, mf, mid = setup(tmp)
    sock = os.path.join(sock_dir(tmp), "b.sock")  # tmp is now traversable by all
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    b = Node("b", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid,
                                          "--loader-socket", sock, "--loader-group", gname]))
    fails = 0
    if not b.wait_for(r"release [0-9a-f]+ \(org/model@[0-9a-f]+\) complete", WAIT_S):
        print("FAIL the pull did not complete")
        fails += 1
    cache = os.path.join(tmp, "cache-b")
    folder = os.path.join(cache, "models--org--model")
    snaps = os.path.join(folder, "snapshots")
    commits = os.listdir(snaps) if os.path.isdir(snaps) else []
    paths = [(os.path.join(snaps, c, rel), rel) for c in commits for rel in files]
    for rel in files:  # the blobs, found by the snapshot links
        if commits:
            paths.append((os.path.realpath(os.path.join(snaps, commits[0], rel)), rel))
    if len(paths) != 2 * len(files):
        print(f"FAIL the cache holds {len(paths)} of {2 * len(files)} expected paths")
        fails += 1
    for p, _ in paths:
        st = os.stat(p)
        if p.startswith(os.path.join(folder, "blobs")) and stat.S_IMODE(st.st_mode) != 0o440:
            print(f"FAIL blob {p} has mode {oct(stat.S_IMODE(st.st_mode))}, not 0440")
            fails += 1
    for d in (folder, os.path.join(folder, "blobs"), snaps):
        st = os.stat(d)
        if st.st_gid != gid or stat.S_IMODE(st.st_mode) != 0o2750:
            print(f"FAIL folder {d}: group {st.st_gid} mode {oct(stat.S_IMODE(st.st_mode))}, "
                  f"not group {gid} mode 02750")
            fails += 1
    rc = as_nobody(lambda: try_read(paths, files))
    if rc != 0:
        print(f"FAIL nobody (not in {gname}) could read the cache (child result {rc})")
        fails += 1
    rc = as_nobody(lambda: try_read(paths, files), groups=[gid])
    if rc != 1:
        print(f"FAIL a member of {gname} could not read every file of the cache "
              f"(child result {rc})")
        fails += 1
    fails += shoalproc.stop_all([b, a])
    if fails:
        b.dump(60)
    return fails


def case_cache_removed(tmp):
    import shutil
    k, repo, files, mf, mid = setup(tmp)
    sock = os.path.join(tmp, "b.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    b = Node("b", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid,
                                          "--loader-socket", sock]))
    fails = 0
    if not b.wait_for(r"release [0-9a-f]+ \(org/model@[0-9a-f]+\) complete", WAIT_S):
        print("FAIL the pull did not complete")
        return 1
    shutil.rmtree(os.path.join(tmp, "cache-b", "models--org--model"))
    got = {}
    try:
        with shoal_loader.Client(sock, timeout=20) as cl:
            for f in cl.want(mid):
                got[f.path] = hashlib.sha256(f.mmap()).digest() if f.size else \
                    hashlib.sha256(b"").digest()
                f.close()
    except (shoal_loader.LoaderError, OSError) as e:
        print(f"FAIL the loader got {len(got)} of {len(files)} files, then: {e}")
        fails += 1
    for rel, data in files.items():
        if rel in got and got[rel] != hashlib.sha256(data).digest():
            print(f"FAIL {rel}: the bytes handed differ from the source")
            fails += 1
    if not fails and len(got) != len(files):
        print(f"FAIL the loader got {len(got)} of {len(files)} files")
        fails += 1
    if not b.wait_for(r"cache entry of .* was removed under the daemon", 10):
        print("FAIL the daemon did not log that the cache entry was removed")
        fails += 1
    n = len(files)
    if not b.wait_for(rf"closed: every file handed \({n} of {n} files handed\)", 10):
        print("FAIL the log does not count the files handed")
        fails += 1
    fails += shoalproc.stop_all([b, a])
    if fails:
        b.dump(60)
    return fails


def recv_all(s, timeout):
    """Frames and descriptors |s| receives until the daemon closes it:
    (list of decoded frames, number of descriptors); the descriptors are
    closed. None on timeout."""
    data, nfd, end = b"", 0, time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            return None
        d, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(64 * 4))
        nfd += close_passed_fds(anc)
        if not d:
            return read_frames(data), nfd
        data += d


def case_evict(tmp):
    n = 600
    k = shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL,
                            ("cluster", "publisher", "a", "b"), ("a", "b"))
    repo = os.path.join(tmp, "repo")
    rnd = random.Random(7)
    shoalproc.write_files(repo, {f"f-{i:04d}.bin": rnd.randbytes(1024) for i in range(n)})
    mf, mf2 = os.path.join(tmp, "rel.manifest"), os.path.join(tmp, "rel2.manifest")
    mid = shoalproc.build_manifest(SHOAL, repo, k, mf, commit="ab" * 20)
    mid2 = shoalproc.build_manifest(SHOAL, repo, k, mf2, commit="cd" * 20)
    sock = os.path.join(tmp, "b.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--manifest", mf2,
                                             "--seed-dir", repo]))
    b = Node("b", node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid, "--max-releases", "1",
                                          "--loader-socket", sock]))
    fails = 0
    if not b.wait_for(r"release [0-9a-f]+ \(org/model@ab[0-9a-f]+\) complete", WAIT_S):
        print("FAIL the pull did not complete")
        return 1
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(shoal_loader._frame([shoal_loader.LOADER_WANT, mid, []]))
    if not b.wait_for(r"loader .*: every one of 600 files", 10):
        print("FAIL the loader's files were not queued")
        fails += 1
    r = subprocess.run([SHOAL, "pull", mid2, "--socket", b.ctl, "--timeout", "20", "--quiet"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode == 0 or "loader" not in r.stderr:
        print(f"FAIL shoal pull while a loader receives the only release: exit "
              f"{r.returncode}: {r.stderr.strip()[:300]}")
        fails += 1
    got = recv_all(s, 20)
    s.close()
    if got is None:
        print("FAIL the loader was not served to the end")
        fails += 1
    else:
        frames, nfd = got
        kinds = [f[0] for f in frames]
        if nfd != n or kinds.count(shoal_loader.LOADER_FILE) != n or \
                kinds[-1:] != [shoal_loader.LOADER_DONE]:
            print(f"FAIL the slow loader got {nfd} descriptors, "
                  f"{kinds.count(shoal_loader.LOADER_FILE)} LOADER_FILE, last "
                  f"{frames[-1] if frames else None!r}")
            fails += 1
    # Its loader done, the release may go: the same pull now opens.
    r = subprocess.run([SHOAL, "pull", mid2, "--socket", b.ctl, "--timeout", "30", "--quiet"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        print(f"FAIL shoal pull once the loader was done: exit {r.returncode}: "
              f"{r.stderr.strip()[:300]}")
        fails += 1
    fails += shoalproc.stop_all([b, a])
    if fails:
        b.dump(60)
    return fails


def case_half_close(tmp):
    k, repo, files, mf, mid = setup(tmp)
    sock = os.path.join(tmp, "b.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    b = Node("b", node_args(k, "b", tmp, ["--peer", a.addr, "--loader-socket", sock]))
    fails = 0
    if not b.wait_for(r"authenticated", 20):
        print("FAIL the node did not reach the seed")
        return 1
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(shoal_loader._frame([shoal_loader.LOADER_WANT, mid, []]))
    s.shutdown(socket.SHUT_WR)
    got = recv_all(s, WAIT_S)
    s.close()
    if got is None:
        print("FAIL the half-closed loader was not served to the end")
        fails += 1
    else:
        frames, nfd = got
        kinds = [f[0] for f in frames]
        if nfd != len(files) or kinds[-1:] != [shoal_loader.LOADER_DONE]:
            print(f"FAIL the half-closed loader got {nfd} of {len(files)} descriptors, last "
                  f"{frames[-1] if frames else None!r}")
            fails += 1
    fails += shoalproc.stop_all([b, a])
    if fails:
        b.dump(60)
    return fails


UNREAD_FILES = 8000
UNREAD_LOADERS = 15  # one uid holds at most 16 slots; the reader takes the last


def case_unread_memory(tmp):
    k = shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL,
                            ("cluster", "publisher", "a"), ("a",))
    # Long paths, as in a real repo of many small files: bigger frames.
    files = {f"d{i % 50:02d}/" + "x" * 90 + f"-{i:06d}.json": b'{"a": 1}\n'
             for i in range(UNREAD_FILES)}
    repo, mf, mid = make_release(tmp, k, files, extra=())
    sock = os.path.join(tmp, "a.sock")
    a = shoalproc.Shoald(SHOALD, "seed", node_args(k, "a", tmp, [
        "--manifest", mf, "--seed-dir", repo, "--loader-socket", sock]), start_timeout=60)
    fails = 0
    if not a.wait_for(r"\(org/model@[0-9a-f]+\) is complete here", 20):
        print("FAIL the seed did not open its release")
        a.dump(30)
        return 1
    time.sleep(0.5)  # the seed's own start-up allocations settle
    before = shoalproc.rss_kib(a.p.pid)
    stalled = []
    for _ in range(UNREAD_LOADERS):
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.sendall(shoal_loader._frame([shoal_loader.LOADER_WANT, mid, []]))
        stalled.append(s)
    # Every one of them bound (each logs it), then whatever the daemon
    # queues for them is queued: a bounded wait on the log, not a sleep.
    end = time.monotonic() + WAIT_S
    while a.log().count("watching org/model@") < UNREAD_LOADERS and time.monotonic() < end:
        time.sleep(0.1)
    time.sleep(0.5)
    grew = shoalproc.rss_kib(a.p.pid) - before
    print(f"{UNREAD_LOADERS} loaders not reading {UNREAD_FILES} files: RSS +{grew} KiB")
    if asan_build(a.p.pid):
        print("AddressSanitizer build: RSS not checked")
        grew = 0
    if a.log().count("watching org/model@") < UNREAD_LOADERS or grew >= 16 << 10:
        print("FAIL loaders that do not read make the daemon hold memory per file")
        fails += 1
    # A reader is served meanwhile, in manifest order, to the end.
    idx = []
    try:
        with shoal_loader.Client(sock, timeout=WAIT_S) as cl:
            for f in cl.want(mid):
                idx.append(f.index)
                f.close()
    except (shoal_loader.LoaderError, TimeoutError, OSError) as e:
        print(f"FAIL the reading loader: {e!r} after {len(idx)} files")
        fails += 1
    if idx != list(range(UNREAD_FILES)):
        print(f"FAIL the reading loader got {len(idx)} files, not 0..{UNREAD_FILES - 1} in order")
        fails += 1
    for s in stalled:
        s.close()
    fails += shoalproc.stop_all([a])
    if fails:
        a.dump(60)
    return fails


INFLIGHT_FILES = 100


def read_loader(sock, mid, out):
    """A loader reading every file of |mid|: out["n"] files, out["err"] the
    exception that ended it early, if any."""
    out["n"] = 0
    try:
        with shoal_loader.Client(sock, timeout=WAIT_S) as cl:
            for f in cl.want(mid):
                out["n"] += 1
                f.close()
    except Exception as e:  # reported by the caller
        out["err"] = repr(e)


def loop_wakeups(pid):
    """Times the daemon's loop thread (its main thread) has slept and been
    woken: voluntary context switches."""
    with open(f"/proc/{pid}/task/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """User + system CPU time of process |pid|, all threads, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SLOW_FILES = 400


def case_slow_reader(tmp):
    k = shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL,
                            ("cluster", "publisher", "a"), ("a",))
    rnd = random.Random(9)
    files = {f"d/{'y' * 60}-{i:04d}.bin": rnd.randbytes(1024) for i in range(SLOW_FILES)}
    repo, mf, mid = make_release(tmp, k, files, extra=())
    sock = os.path.join(tmp, "a.sock")
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                            "--loader-socket", sock]))
    if not a.wait_for(r"\(org/model@[0-9a-f]+\) is complete here", WAIT_S):
        print("FAIL the seed did not open its release")
        a.dump(30)
        return 1
    fails = 0
    time.sleep(0.5)
    pid = a.p.pid
    fds_before = len(os.listdir(f"/proc/{pid}/fd"))
    w0 = loop_wakeups(pid)
    time.sleep(2)
    idle = loop_wakeups(pid) - w0

    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(shoal_loader._frame([shoal_loader.LOADER_WANT, mid, []]))
    if not a.wait_for(r"watching org/model@", 10):
        print("FAIL the loader was not bound to its release")
        return fails + 1
    time.sleep(0.3)  # the daemon fills the socket, then has frames left over
    c0, w0 = cpu_seconds(pid), loop_wakeups(pid)
    time.sleep(2)
    cpu, woke = cpu_seconds(pid) - c0, loop_wakeups(pid) - w0
    print(f"loader not reading for 2 s: the daemon used {cpu:.3f} s of CPU, its loop woke "
          f"{woke} times ({idle} over 2 s without a loader)")
    if cpu > 0.3 or woke - idle > 20:
        print("FAIL the daemon works while it waits for a loader to read")
        fails += 1
    # Now read slowly, a few hundred bytes at a time.
    data, nfd, end = b"", 0, time.monotonic() + WAIT_S
    while time.monotonic() < end:
        if not select.select([s], [], [], end - time.monotonic())[0]:
            break
        d, anc, _, _ = s.recvmsg(300, socket.CMSG_SPACE(16 * 4))
        nfd += close_passed_fds(anc)
        if not d:
            break
        data += d
        time.sleep(0.001)
    s.close()
    frames = read_frames(data)
    kinds = [f[0] for f in frames]
    idx = [f[4] for f in frames if f[0] == shoal_loader.LOADER_FILE]
    paths = [f[1] for f in frames if f[0] == shoal_loader.LOADER_FILE]
    print(f"slow reader: {len(idx)} LOADER_FILE, {nfd} descriptors, last frame type "
          f"{kinds[-1] if kinds else None}")
    if idx != list(range(SLOW_FILES)) or nfd != SLOW_FILES or kinds[-1:] != [
            shoal_loader.LOADER_DONE] or paths != sorted(files):
        print("FAIL the slow reader did not get every file, in order, each with its "
              "descriptor, then LOADER_DONE")
        fails += 1

    # A loader that leaves mid-send: closed, nothing left open for it.
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(shoal_loader._frame([shoal_loader.LOADER_WANT, mid, []]))
    select.select([s], [], [], 10)
    s.recvmsg(100, socket.CMSG_SPACE(16 * 4))  # its descriptor, if any, closes with s
    time.sleep(0.2)
    s.close()
    if not a.wait_for(r"closed: loader went away \(\d+ of %d files handed\)" % SLOW_FILES, 10):
        print("FAIL a loader that hung up mid-send was not closed")
        fails += 1
    end = time.monotonic() + 10
    while len(os.listdir(f"/proc/{pid}/fd")) > fds_before and time.monotonic() < end:
        time.sleep(0.1)
    fds_after = len(os.listdir(f"/proc/{pid}/fd"))
    if fds_after > fds_before:
        print(f"FAIL the daemon holds {fds_after} descriptors, {fds_before} before the loaders")
        fails += 1
    fails += shoalproc.stop_all([a])
    if fails:
        a.dump(40)
    return fails


def case_inflight(tmp):
    if os.geteuid() != 0:
        print("not root: cannot run shoald as another user")
        sys.exit(77)
    k = shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL,
                            ("cluster", "publisher", "a", "b"), ("a", "b"))
    rnd = random.Random(5)
    files = {f"f-{i:04d}.bin": rnd.randbytes(2048) for i in range(INFLIGHT_FILES)}
    repo, mf, mid = make_release(tmp, k, files, extra=())
    a = Node("seed", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo]))
    # b runs as nobody: its keys, cache and socket folder are nobody's.
    nd = os.path.join(sock_dir(tmp), "nb")
    os.makedirs(nd)
    for path in [nd] + [k(n) + ext for n in ("b", "cluster", "publisher")
                        for ext in ("", ".pub", ".cred")]:
        if os.path.exists(path):
            os.chown(path, 65534, 65534)
    os.chown(os.path.join(tmp, "keys"), 65534, 65534)
    sock = os.path.join(nd, "b.sock")
    args = node_args(k, "b", tmp, ["--peer", a.addr, "--pull", mid, "--loader-socket", sock,
                                   "--control-socket", os.path.join(nd, "ctl.sock")])
    args[args.index("--cache-dir") + 1] = os.path.join(nd, "cache")
    args[args.index("--state-dir") + 1] = os.path.join(nd, "state")
    # 4 loaders not reading hold ~64 descriptors each now, all 100 before:
    # between the two, 320 is a limit they take from a reading loader
    # only on the old code.
    b = shoalproc.Proc(["prlimit", "--nofile=320:320", "--", "setpriv", "--reuid=65534",
                        "--regid=65534", "--clear-groups",
                        *shoalproc.shoald_argv(SHOALD, "b", args)], name="b")
    fails = 0
    if not b.wait_for(r"release [0-9a-f]+ \(org/model@[0-9a-f]+\) complete", WAIT_S):
        print("FAIL the pull did not complete")
        b.dump(40)
        return 1
    stalled = []
    for _ in range(4):
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.sendall(shoal_loader._frame([shoal_loader.LOADER_WANT, mid, []]))
        stalled.append(s)
    end = time.monotonic() + WAIT_S
    while b.log().count("watching org/model@") < 4 and time.monotonic() < end:
        time.sleep(0.1)
    time.sleep(0.3)
    got = {}
    read_loader(sock, mid, got)
    print(f"4 loaders not reading, limit 320: the reading loader got {got['n']} files"
          f"{', then ' + got['err'] if 'err' in got else ''}")
    if got["n"] != INFLIGHT_FILES or "err" in got:
        print("FAIL loaders that do not read took the reading loader's descriptors")
        fails += 1
    # Below what the 4 hold (~64 each): the next hand-off meets ETOOMANYREFS.
    fds, low = len(os.listdir(f"/proc/{b.p.pid}/fd")), 200
    if fds > low - 30:
        print(f"FAIL shoald holds {fds} descriptors itself: no room to test a limit of {low}")
        return fails + 1
    # What wakes the daemon's loop when nothing is stalled (its own timers).
    w0 = loop_wakeups(b.p.pid)
    time.sleep(2)
    idle = loop_wakeups(b.p.pid) - w0
    # As nobody: a root without CAP_SYS_RESOURCE (a container) may not.
    subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "prlimit",
                    "--pid", str(b.p.pid), f"--nofile={low}:{low}"], check=True)
    got = {}
    t = threading.Thread(target=read_loader, args=(sock, mid, got))
    t.start()
    stalled_seen = b.wait_for(r"reach this process's open-files limit", 10)
    # While the stall lasts nothing the daemon can see changes: it should
    # mostly sleep (before, it woke every 20 ms to try the send again).
    w0 = loop_wakeups(b.p.pid)
    time.sleep(2)
    woke = loop_wakeups(b.p.pid) - w0
    print(f"the daemon's loop woke {woke} times over 2 s of the stall, {idle} over 2 s "
          f"without one")
    if stalled_seen and woke - idle > 30:
        print("FAIL the daemon keeps waking to retry a stalled hand-off (want at most 30 "
              "more times in 2 s than without a stall)")
        fails += 1
    for s in stalled:
        s.close()
    t.join(WAIT_S)
    print(f"limit {low} ({fds} open): the reading loader got {got.get('n')} files"
          f"{', then ' + got['err'] if 'err' in got else ''}")
    if not stalled_seen:
        print("FAIL the daemon never met the in-flight limit (the case shows nothing)")
        fails += 1
    if t.is_alive() or got.get("n") != INFLIGHT_FILES or "err" in got:
        print("FAIL a hand-off stalled by the in-flight limit did not resume")
        fails += 1
    fails += shoalproc.stop_all([b, a])
    if fails:
        b.dump(40)
    return fails



LATE_RATE = 4 << 20


def received_bytes(node):
    """Chunk bytes |node| received from peers (`shoal metrics`), or None."""
    r = subprocess.run([SHOAL, "metrics", "--socket", node.ctl], capture_output=True,
                       text=True, timeout=10)
    m = re.search(r'^shoal_received_bytes_total\{source="peers"\} (\d+)$', r.stdout, re.M)
    return int(m.group(1)) if m else None


def late_join(tmp, puller, seed):
    """A node started with |puller| pulls a 24 MiB release (1 MiB chunks)
    from two seeds started with |seed| for a loader asking for every shard
    in manifest order; a second loader joins once 2 MiB are in and asks for
    the last shard only. Fails unless that shard is handed before half of
    what was missing when it joined (the shard aside) has arrived."""
    k = shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL,
                            ("cluster", "publisher", "a", "b", "c"), ("a", "b", "c"))
    repo = os.path.join(tmp, "repo")
    files = make_repo(repo, 7 * 1024 * 1024)  # shards of ~3 MiB
    mf = os.path.join(tmp, "rel.manifest")
    # The default ~1 MiB chunks: a few requests in flight are seconds at the cap.
    mid = shoalproc.build_manifest(SHOAL, repo, k, mf, extra=())
    sock = os.path.join(sock_dir(tmp), "b.sock")
    a = Node("seed-a", node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo, *seed]))
    c = Node("seed-c", node_args(k, "c", tmp, ["--manifest", mf, "--seed-dir", repo, *seed]))
    b = Node("puller", node_args(k, "b", tmp, ["--peer", a.addr, "--peer", c.addr, *puller,
                                               "--loader-socket", sock]))
    nodes = [b, a, c]
    if not b.wait_for(r"loader socket on", 10):
        print("FAIL the pulling node did not open its loader socket")
        return shoalproc.stop_all(nodes) + 1
    shards = sorted(p for p in files if p.endswith(".safetensors"))
    late = shards[-1]
    total = sum(len(v) for v in files.values())
    first = {}

    def first_loader():
        try:
            with shoal_loader.Client(sock, timeout=WAIT_S) as cl:
                first["v"] = collect(cl, mid, shards, files, "loader 1")
        except Exception as e:  # reported below
            first["err"] = repr(e)

    t = threading.Thread(target=first_loader)
    t.start()
    fails = 0
    got = None
    end = time.monotonic() + WAIT_S
    while time.monotonic() < end:
        got = received_bytes(b)
        if got is not None and got >= 2 << 20:
            break
        time.sleep(0.05)
    if got is None or got < 2 << 20 or got > total // 2:
        print(f"FAIL the pulling node had received {got} bytes, not 2 MiB to half of {total}")
        t.join(WAIT_S)
        return shoalproc.stop_all(nodes) + 1
    at_join = got
    at_file = None
    with shoal_loader.Client(sock, timeout=WAIT_S) as cl:
        for f in cl.want(mid, [late]):
            at_file = received_bytes(b)
            ok = f.path == late and f.sha256 == hashlib.sha256(files[late]).digest()
            f.close()
            if not ok:
                print(f"FAIL loader 2 got {f.path}, wanted {late} (bytes as the source)")
                fails += 1
    t.join(WAIT_S)
    rest = total - at_join - len(files[late])
    ahead = (at_file or total) - at_join - len(files[late])
    print(f"loader 2 joined at {at_join} of {total} bytes; its {len(files[late])}-byte shard "
          f"was handed at {at_file}: {ahead} bytes of the other {rest} missing came first")
    if at_file is None or ahead >= rest // 2:
        print("FAIL the late loader's shard came after half of the rest of the pull")
        fails += 1
    if "err" in first or "v" not in first:
        print(f"FAIL loader 1: {first.get('err', 'did not finish')}")
        fails += 1
    else:
        f1, seen, _ = first["v"]
        fails += f1 + exactly_once(seen, shards, "loader 1")
    fails += shoalproc.stop_all(nodes)
    if fails:
        b.dump(40)
    return fails


def case_late_joiner(tmp):
    return late_join(tmp, ["--rate-down", "4M"], [])


def case_late_joiner_slow(tmp):
    # No cap on the puller: the seeds are slow (2 MiB/s each).
    return late_join(tmp, [], ["--rate-up", "2M"])


def case_rate_down_shared(tmp):
    """A node at --rate-down 4M pulling two releases at once: each one's
    requests in flight are bounded from its share of the cap (2 MiB/s,
    said in the log), not the whole cap each; and from 4 MiB/s again for
    the one left when the other completes (it says nothing then). Both
    complete, verified."""
    k = shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL,
                            ("cluster", "publisher", "a", "b", "c"), ("a", "b", "c"))
    repo1 = os.path.join(tmp, "repo")
    make_repo(repo1, 1024 * 1024)
    mf1 = os.path.join(tmp, "one.manifest")
    shoalproc.build_manifest(SHOAL, repo1, k, mf1, extra=())
    repo2 = os.path.join(tmp, "repo2")
    shoalproc.write_files(repo2, {"model.safetensors": random.Random(9).randbytes(6 << 20)})
    mf2 = os.path.join(tmp, "two.manifest")
    shoalproc.build_manifest(SHOAL, repo2, k, mf2, repo_id="org/other", extra=())
    a = Node("seed-a", node_args(k, "a", tmp, ["--manifest", mf1, "--seed-dir", repo1]))
    c = Node("seed-c", node_args(k, "c", tmp, ["--manifest", mf2, "--seed-dir", repo2]))
    b = Node("capped", node_args(k, "b", tmp, ["--peer", a.addr, "--peer", c.addr,
                                               "--manifest", mf1, "--manifest", mf2,
                                               "--rate-down", "4M"]))
    nodes = [b, a, c]
    fails = 0
    if not b.wait_for(r"rate-down 4\.00 MiB/s .*shared by 2 releases pulling: 2\.00 MiB/s",
                      WAIT_S):
        print("FAIL the capped node did not share --rate-down between its two releases")
        fails += 1
    done = 0
    end = time.monotonic() + WAIT_S
    while done < 2 and time.monotonic() < end:
        done = sum(1 for line in list(b.lines) if re.search(r"\) complete: ", line))
        time.sleep(0.1)
    if done < 2:
        print(f"FAIL {done} of the 2 releases completed")
        fails += 1
    fails += shoalproc.stop_all(nodes)
    if fails:
        b.dump(40)
    return fails


def case_late_joiner_peer_cap(tmp):
    # A cap on each peer the puller downloads from, none on the whole node.
    return late_join(tmp, ["--peer-rate-down", "2M"], [])


shoalproc.main(CASE, {"store_full": case_store_full, "multi_node": case_multi_node, "memory": case_memory,
                      "stalled": case_stalled, "refused": case_refused,
                      "by_name": case_by_name, "limits": case_limits,
                      "abandoned": case_abandoned, "pending_orders": case_pending_orders,
                      "short_done": case_short_done, "cache_perm": case_cache_perm,
                      "cache_removed": case_cache_removed, "evict": case_evict,
                      "half_close": case_half_close, "unread_memory": case_unread_memory,
                      "inflight": case_inflight, "slow_reader": case_slow_reader,
                      "late_joiner": case_late_joiner,
                      "late_joiner_slow": case_late_joiner_slow,
                      "late_joiner_peer_cap": case_late_joiner_peer_cap,
                      "rate_down_shared": case_rate_down_shared,
                      "two_loaders": case_two_loaders},
               "shoal-loader-")
