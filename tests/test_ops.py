# SPDX-License-Identifier: MIT
"""What an operator sees of shoald through the `shoal` CLI, its log and its
cache, with real processes on loopback (Hub stand-in, shoal-tracker, shoald).

Usage: test_ops.py SHOALD SHOAL SHOAL_TRACKER HUB_DIR CASE
CASE is one of:
  origin_bytes  a node with no peers pulls a release from the Hub stand-in:
                `shoal pull` reports every byte as from the origin (100%),
                `shoal status` shows ORIGIN 100% and the metric
                shoal_received_bytes_total{source="origin"} is the release
                size.
  store_full    (root only, else skipped) the puller's --cache-dir is a
                20 MiB tmpfs and the release 24 MiB: `shoal pull` fails
                within seconds, non-zero, printing the store's "no space"
                error; `shoal status` shows the release by name as failed
                with that error; no *.incomplete file is left on the tmpfs;
                the daemon does not retry in a loop (one failed open until
                the next `shoal pull`, which tries again at once).
  names         `shoal pull` of a malformed name (../../etc@x, no org, an
                uppercase commit, an empty revision) or, on a node without a
                Hub endpoint (--no-origin), of a branch fails at once with a
                message saying what is wrong, instead of waiting forever.
  branch        a node with the Hub stand-in and a tracker pulls
                acme/model@main: the Hub resolves the branch to its commit
                and the pull completes with that commit's files; a branch
                the Hub does not have fails with the Hub's reason; a
                commit nobody published waits, saying no tracker has its manifest;
                a node with --no-origin refuses the branch naming that option.
  refs          the Hub stand-in has main at one commit and dev at another:
                `shoal pull acme/model@main` writes refs/main with main's
                commit; pulling dev's commit by its hash afterwards leaves
                refs/main alone and writes no ref (as huggingface_hub does:
                a ref only for a revision asked for by name).
  tracker_stats `shoal tracker-stats` prints a real tracker's Prometheus
                text: shoal_tracker_nodes goes 0 -> 1 and
                shoal_tracker_announces_total grows once a shoald announces;
                a key without a credential the tracker trusts gets exit 1
                and the tracker's refusal, a missing option exit 2.
  wildcard_listen a seed listening on 0.0.0.0 with no --advertise and a
                tracker on 127.0.0.1 announces itself as 127.0.0.1:PORT (and
                logs it); a second node gets that address from the tracker,
                dials it and completes a small release from it. A node
                with --advertise 0.0.0.0:7600 has its announce refused, and
                its log shows the tracker's reason. A node listening on
                0.0.0.0 that reaches a tracker on [::1] announces nothing
                and says to listen on [::] or set --advertise.
  max_releases  a node with --max-releases 2 pulls three releases: the third
                closes the first (least recently used), status lists two,
                and pulling the first again reopens it from the cache (0
                bytes from peers), closing the second. Restarted with
                --max-releases 1 and the third given by --manifest, the
                release its state file lists is left closed, saying why,
                and the configured one keeps the slot.
  max_releases_rollout --max-releases 2, one release a tracker rollout
                names and one pulled, restarted with a third, incomplete,
                by --manifest: the state file marks the rollout's release
                (complete+rollout), and after the restart it is not closed
                for room; the pulled one is left closed, saying why
                (before: the rollout's release was closed at the start and
                reopened at the tracker's first answer, closing the other).
  pull_refused  `shoal status` and `shoal pull` of a node whose credential
                is for another key say the tracker refused its identity
                and why, and of a node whose --publisher-keys do not list
                the signer say "manifest refused: signed by an untrusted
                key (check --publisher-keys)" (before: "no tracker
                reachable yet" and a bare "waiting for the manifest").
  waiting_reason a pull by manifest id with no tracker and no peer says
                so; with a peer that lacks it, status says none of 1 peer
                has offered its manifest.
  branch_follow a branch pulled after its commit gets its ref; a branch
                that moved on the Hub is followed when pulled again (new
                snapshot, refs/main moves); a pull of a branch the Hub does
                not have yet fails at once and is dropped, and a new pull
                once the branch exists completes it.
  hub_refused   `shoal pull` of a repo (acme/nosuch@main) or a revision
                (acme/model@nosuch) the Hub answers 404 for fails at once,
                exit 1, "ORG/NAME@REV not found on the Hub URL (HTTP 404
                ...)"; of a private repo or a gated one with no token,
                "refused by the Hub ... HTTP 401" saying private or gated;
                each pull is dropped (status lists none, the log says so,
                `shoal drop` finds nothing) rather than retried every 30 s
                until someone drops it (before: kept and retried).
  loader_branch a loader asking for acme/model@main (a branch) on a node
                that holds main's commit (pulled by commit) gets every file,
                again once the tracker is gone (the Hub resolves the name).
  origin_down   the Hub stand-in is stopped after publishing: a node
                pulling from it logs "origin 127.0.0.1:PORT failing:
                cannot connect: Connection refused" within 5 s, one
                warning and no more while it lasts; `shoal status` shows
                the origin failing under the release; once the stand-in is
                back on the same port the pull completes and the log says
                the origin is reachable again.
  restart       a node pulling from a slowed Hub stand-in through a tracker
                with --lease-ms and --fetched-ttl-ms at 120 s is killed
                (SIGKILL) mid-download and started again on the same cache:
                the tracker logs that it voided the old process's leases,
                and the second `shoal pull` completes within 60 s (before,
                it waited for the dead process's leases to expire).
  keep_seed     a release pulled with `shoal pull acme/model@main` is
                complete; the node is stopped (SIGTERM) and started again
                with the same --state-dir and the Hub stand-in stopped: it
                reopens the release unasked (its state file lists it, with
                the branch), and a second node with --no-origin, only that
                node as peer and no tracker pulls it by manifest id.
  keep_resume   a node pulling from a slowed Hub stand-in is killed
                (SIGKILL) mid-download; started again, it completes the
                release with nobody running `shoal pull` again.
  keep_drop     while a release is pulling from a slowed Hub stand-in, a
                loader waits for it and `shoal pull` follows it; `shoal drop
                acme/model@COMMIT` exits 0 saying the files stay in the cache,
                the loader gets an error and `shoal pull` exits 1 (neither
                hangs); status no longer lists it, a second drop exits 1
                saying it is not here; after a restart it is not reopened;
                pulled again, it completes.
  keep_corrupt  a state file full of garbage is reported ("ignored"), moved
                aside as .bad, and the daemon starts and answers `shoal
                status`; a good header with one bad line loads the rest.
  reconnect     two nodes pull from the slowed Hub stand-in through that
                tracker, one of them through a TCP proxy in this script;
                mid-download the proxy cuts its connections and refuses new
                ones for 1 s, so the daemon (the same process) reconnects
                (and sends the LEASE_DONEs the outage held, logged): the tracker logs that the
                node reconnected in the same session and kept its leases,
                and voids nothing; both pulls complete with the generated
                bytes, the origin was asked for no byte twice and served
                exactly the release (before, the tracker voided the
                reconnected node's leases, refused their LEASE_DONE and
                granted the same chunks to the other node).
  manifest_sweep a dropped release's kept manifest stays while its snapshot
                does (a release with the same files then takes them from
                the cache) and is removed by the start-up sweep once the
                snapshot is deleted, logged as a kept manifest.
  status_table  three releases of two repos pulled by branch and commit:
                `shoal status` lists them by repo, then oldest first, with a
                BRANCH column (main / -), and no node-level warning.
  drop_rollout  `shoal drop` of a release a tracker rollout names: exit 0,
                saying it comes back at the tracker's next answer and to
                remove the rollout first (shoal rollout ... --remove); once
                removed, the drop says it is gone for good, and it is.
  drop_stalled  the Hub stand-in sends the headers of every file answer and
                then nothing for 60 s; `shoal drop` of the release pulling
                from it ends those requests at once, so the same release can
                be pulled again well within 10 s (before, it was "still
                closing" until the stalled requests timed out, 30 s).
  publish_retry a directory sits where the snapshot link of config.json
                must go, so every chunk verifies but the release cannot be
                published: `shoal status` says "verified, but not yet in
                the cache" with the reason and the log says it will try
                again; once the directory is removed the daemon publishes
                on its own and `shoal pull` completes (before, nothing tried
                again until a restart and the pull waited forever).
  origin_bad    a node with no tracker pulls from a Hub stand-in that
                serves one shard with a byte inverted, every time: the
                node logs the bad chunk, and over 6 s asks the stand-in for
                that shard at most 10 times (before, with nothing to slow
                it, hundreds of times: about 19 a second); `shoal status`
                gives the origin's bad bytes as the reason under the
                release, with no rate and no ETA (before: no reason, and
                a rate and an ETA while nothing was stored); once the
                stand-in serves the right bytes again the pull completes.
  origin_refused a node with no tracker pulls from a Hub stand-in that
                answers every file (CDN) request 403: over 5 s it asks
                for files at most 10 times and logs "origin fetch of
                chunks ... failed" at most 3 times (before: each refusal
                had the span asked for again at once, 24 requests and 25
                lines in 5 s here); the same against the stand-in over
                https with a certificate the node does not trust: at most
                25 TLS handshakes, counted by the stand-in as nothing
                reaches HTTP (before: 61 and 63 lines). Once the stand-in
                answers again the pull completes.
  origin_leased a node taking origin leases from a tracker (--lease-ms
                4000) is refused by the origin (the stand-in over https,
                a certificate it does not trust): over 5 s it makes at
                most 25 TLS handshakes and logs at most 3 failed fetches;
                a second node trusting the CA, on the same tracker, gets
                the spans once the first one's leases expire and
                completes the release from the origin (before: the first
                node took the spans again as soon as they were free, and
                the second had not completed after 90 s).
  fetcher_gone  two origin fetchers holding 10-minute leases on a slow
                stand-in leave, one killed, one SIGTERMed: the tracker
                forgets the first --gone-ms (1 s) after its connection
                closed and the second at once (its BYE), and a third node
                completes the release within 45 s (before: it waited for
                the node TTL, 120 s here, or the leases).
  lease_wait    an origin fetcher holding 10-minute leases on a slow
                stand-in is killed and the tracker keeps its leases; the
                other node, with nothing left to fetch, gets a status
                reason line ("waiting for other nodes: no origin lease
                granted ... everything missing is leased to or fetched by
                other nodes") with rate 0 and no ETA, and `shoal pull`
                prints it (before: no reason, and a rate and an ETA of
                seconds from before the stall for 30 s).
  tracker_gone  the only tracker stops mid-pull and stays down: `shoal
                status` says "no tracker reachable for N s; new origin
                fetches wait for one (without a lease after 5 s)", then,
                past --lease-fallback-ms, that they go (or it fetches)
                without a lease (before: no reason line at all).
  tracker_restart the only tracker is down for 3 s mid-pull: the node logs
                in again within 2.2 s of its return and never fetches
                from the origin without a lease (before: up to 4 s
                after, often after the 5 s lease fallback).
  fallback_reclaim a node fetching without a lease (no tracker) re-claims
                its lease-less spans when one is back and reports every
                chunk, the last too: no lease outstanding at the end.
  ref_unwritable a release complete here is pulled by branch while refs/
                is a file: the pull fails naming refs/main; once it can
                be written, the pull completes with the ref.
  origin_health the Hub stand-in answers 503 to every CDN request but its
                /resolve/ redirects fine: `shoal status` says the origin
                has been failing for several seconds with as many failed
                requests as the stand-in refused, and the log says no
                "reachable again" while it lasts (before: every 302 reset
                the run: "failing for 0 s (1 failed request)" with 12
                refused).
  tracker_rollouts `shoal rollout` refuses a branch (exit 2, "not a
                commit") and the tracker a commit with no manifest
                registered ("publish it first", exit 1; before, both were
                recorded and nothing happened). A tracker with
                --rollout-file keeps two rollouts (one from the file, for
                a zone named with a space) in the file; restarted on
                the same port it says it restored 2, and a node started
                after the restart with nothing to pull learns the rollout
                and completes the release. Lines that do not parse are
                skipped and logged, the file is kept as FILE.bad and
                rewritten with the good entries; `shoal rollout --remove`
                takes an entry out of the file (one never published: a
                removal needs no manifest); a change the tracker cannot
                write (the file is a directory) is refused, exit 1.
  cache_lock    a second shoald on a cache another one uses exits 1 at once,
                saying "cache DIR is used by another shoald (pid N)" with
                the first one's pid: with the same --cache-dir, and with it
                spelt another way and --state-dir none (before, both ran
                and filled the same partial files). One with --store
                memory, which writes nothing there, starts; and once the
                first is killed (SIGKILL) the cache is free again.
  origin_min_rate a node with --origin-min-rate 1M --origin-slow-window-ms
                1000 pulls from a Hub stand-in whose first two file
                answers trickle at 60 KB/s: the node logs "origin HOST failing:
                slow: N B/s over 1.0 s, under the floor of 1048576 B/s",
                resumes that range on a new connection and completes the
                release. A node whose config file sets origin-min-rate = 0
                (never) and origin-slow-window-ms = 1000, against the same
                trickle for a range long enough to last two windows, ends
                no request for being slow and completes too (before: no
                such option; the floor was 64 KiB/s over 60 s, fixed).
  register_manifest a release published to tracker A with --out is
                registered with tracker B by `shoal publish --manifest FILE`:
                exit 0, the same manifest id, B logs it registered; a node
                that knows only B and the id gets the manifest from B, takes
                origin leases from B (B never answers "not published") and
                completes. Again is fine (exit 0); a tracker that does not
                trust the signer refuses it (exit 1, naming the signer's
                key); a damaged file, a missing one, or --manifest with
                --key are refused (before: no such option).
  tracker_forgot a node pulls through a tracker (--max-manifests 1,
                --node-ttl-ms 1500, --lease-ms 2000) reached through a
                proxy in this script, from a slowed Hub stand-in;
                mid-download the proxy refuses the node's connections until
                the tracker has dropped the node and, to register another
                release, forgotten this one. Back on the same tracker
                process, the node does not put the manifest at login (that
                process accepted it), so its lease request is answered
                "not published": the node logs that it sends the manifest,
                the tracker registers it again (same id), and the pull
                completes from the origin with the generated bytes.
  hub_ca        the Hub stand-in serves https on 127.0.0.1 with a
                certificate a throwaway CA signed (tests/hub/tlscert.py,
                openssl): `shoal publish --hub-endpoint https://...
                --hub-ca CA` publishes (without --hub-ca it exits 1 with
                the certificate error; with a missing file, exit 1 naming
                it); a node with --hub-ca and a token file pulls the
                release from it, every byte over TLS, the files equal to
                the generated ones; a node without --hub-ca (no
                $CURL_CA_BUNDLE or $SSL_CERT_FILE either) fails: its log
                says the certificate is not trusted and to give --hub-ca,
                `shoal pull` does not complete, nothing is in its cache's
                snapshot, and the stand-in saw no request from it at all
                (so no token left the node).
  cli_tracker_identity  shoal publish, rollout and tracker-stats with
                --tracker-keys: a publish through a recording proxy shows
                nothing of the manifest; a proxy that flips the remove flag of
                the command frame turns an unpinned rollout into its removal
                (exit 0, "recorded") but makes a pinned one fail with nothing
                recorded; trackers proving another key or none, and key files
                empty or missing, are refused with what was wrong (exit 1).
  origin_refused_give_back  a private repo: a node without a token is
                refused by the origin (401) and gives back the leases it
                was granted (tracker log, tracker-stats counter), so a node
                with a token completes although leases last 10 min here;
                the refused node then completes from it; both hold the
                generated bytes.
  deny_keys     a node key listed in --deny-keys on a running seed and
                tracker (no restart): its sessions close; a copy of the
                key and credential is refused by the tracker and the seed;
                with the file removed it pulls again.
  tracker_repin a node pinning its tracker's key (--tracker-keys) reaches
                it through a proxy in this script; the proxy drops the
                connection: the node logs in again (the tracker proves its
                key a second time) and no frame of the new login is read
                with the last session's keys ("does not open").
  hf_partial    a node pulling from a slowed Hub stand-in is stopped
                (SIGTERM) mid-download: no blobs/*.incomplete (huggingface_hub's
                own resumable download name, which it would publish unchecked
                at full size), its partial files are under .shoal/. Moved into
                blobs/ as an older shoald left them, the restarted node moves
                them back with their verified chunks (it resumes where it
                stopped). While this script holds huggingface_hub's flock on
                .locks/models--acme--model/<sha256>.lock the shard is not
                renamed into blobs/ and the log says why; let go, the release
                completes with the generated bytes.
  hf_unverified huggingface_hub filled the cache for acme/model@main first
                (blobs/<ETag>, snapshot links, refs/main; it hashes
                nothing), one shard with 16 bytes wrong, its size right.
                `shoal pull acme/model@main` completes with every file's
                generated bytes, fetching from the origin more than nothing
                and less than that shard; the log says it hashed the files
                shoald had not verified, one of them wrong, naming it
                (before: all were trusted unhashed, the pull said complete
                with the wrong shard in the snapshot). Restarted, with
                config.json's blob replaced by a copy of itself, it hashes
                that one blob and no other; a peer pulling only from it
                completes with the right bytes.
  hf_gateway_etag huggingface_hub filled the cache through a gateway with
                ETags of its own: the largest shard's snapshot link points at
                blobs/ffff... (right bytes). `shoal pull acme/model@main`
                fetches nothing, logs that it kept those bytes under the
                blob's own name, and blobs/ffff... is gone (before: the
                shard was fetched again and blobs/ffff... left behind,
                linked by no snapshot, where delete-cache never frees it).
  hf_delete_cache a node seeding acme/model@main (pulled by branch) has
                that revision removed as `huggingface-cli delete-cache`
                does (snapshot, blobs, refs/main); `shoal pull
                acme/model@main`, and after a second deletion `shoal pull`
                of its manifest id, each logs that its files are gone,
                fetches the whole release again from the origin and exits
                0 with every file's generated bytes in the snapshot and
                refs/main at the commit (before: exit 0 at once, nothing
                fetched, nothing in the cache, refs/main written to the
                deleted snapshot).
  hf_hash_busy  the cache huggingface_hub filled (hf_unverified, every byte
                right), on a slow disk (slowfs: each read of a blob takes
                0.25 s): `shoal pull acme/model@main` hashes those blobs on
                a worker, and `shoal status` answers meanwhile, saying it is
                hashing the files found in the cache; the pull then exits 0
                with nothing fetched from the origin (before: they were
                hashed on the event loop while the release opened, and
                status waited for that to end; it never said "hashing").
  hub_token_file a private repo on the Hub stand-in: a node with no
                token but the one `huggingface-cli login` leaves in
                $HF_HOME/token (a blank line and spaces around it) logs
                that its token comes from there and completes `shoal pull
                acme/model@main`; with $HF_TOKEN_PATH naming a file with an
                old token, that one is sent (before $HF_HOME/token) and the
                refusal names it; $HF_TOKEN comes before both (before: no
                file was read, every pull was refused with "no token").
  hf_check_busy the same check of a complete release's files, on a slow
                disk (slowfs: each readlink of a snapshot entry takes 0.4
                s): `shoal status` answers while a `shoal pull` of it is
                being checked, saying so, and the pull then exits 0
                (before: the check ran on the event loop and status waited
                for it to end; it never said "checking").
  hf_blob_names a release published from the Hub stand-in and pulled: each
                snapshot link points at blobs/<ETag> as huggingface_hub names
                blobs, the git blob sha1 for config.json, tokenizer.json and
                the index, the sha256 for the LFS shards, and blobs/ holds
                exactly those; a second node pulls it from the first.
  datasets      the Hub stand-in holds a model and a dataset both named
                acme/model; both are published through a tracker (the
                dataset with `shoal publish --dataset`, which prints
                datasets/acme/model@COMMIT; so does a publish of
                datasets/acme/model@main, without --dataset). One node
                pulls the dataset by datasets/acme/model@main (the Hub's
                datasets API resolves the branch; before, the models API
                answered 404) into datasets--acme--model/ with refs/main,
                then the model by acme/model@main into
                models--acme--model/; `shoal status` lists
                datasets/acme/model@DC and acme/model@MC. A loader asking
                for datasets/acme/model@DC gets the dataset's files;
                acme/model@DC (the model's name, the dataset's commit) is
                not the dataset: it waits for a manifest. A dataset the Hub
                does not have fails as a model's does (404, exit 1).
                spaces/ and models/ prefixes are usage errors (exit 2) for
                pull, rollout and publish. `shoal rollout
                datasets/acme/model@DC` is recorded and --status names it;
                `shoal drop datasets/acme/model@DC` takes the dataset out
                and leaves the model; a second node with shoald --pull
                datasets/acme/model@main completes the dataset.
  hub_listing   a gateway that ignores ?blobs=true (siblings without size
                or ids, QA K14): `shoal publish acme/model@main` lists the
                files with /tree instead and publishes all of them, and
                `shoal pull acme/model@main` (which needs only the commit)
                completes; before, both failed "file config.json has no
                size". With 1000 siblings (a cut list) too.
  origin_404    a gateway answering 404 for a release's files (QA K16):
                `shoal pull` and `shoal status` show why it is held up
                ("origin URL: ... HTTP 404 ... (not on the gateway? ...)")
                instead of a bare "pulling 0.0%".
  hub_api_failing while the Hub's API answers 503 (QA K10), a pull by
                branch shows why it waits, in `shoal pull` and `shoal status`:
                "asking the Hub where main is; origin HOST failing for N s
                (M failed requests): HTTP 503".
Every wait is bounded; all processes are killed at the end.
"""
import fcntl
import glob
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import hubfix
import shoalproc

SHOALD, SHOAL, TRACKER, HUB_DIR, CASE = sys.argv[1:6]
PY = "/usr/bin/python3"
WAIT_S = 90
Proc = shoalproc.Proc
run = shoalproc.run


def Hub(tmp, size, shards="2"):
    return hubfix.Hub(HUB_DIR, tmp, size, shards, "9")


def make_keys(tmp, nodes):
    return hubfix.make_keys(SHOAL, tmp, nodes)


def publish(k, hub, tmp, rev="main", tracker=None):
    return hubfix.publish(SHOAL, k, hub, tmp, rev, tracker)


def node(name, k, tmp, hub, extra=(), cache=None, publishers=None):
    """A shoald with its own control socket (node.sock) and the Hub stand-in
    as its origin; |publishers| replaces the publisher key list (repeated
    --publisher-keys add up)."""
    args = shoalproc.node_args(k, name, tmp, ["--control-socket",
                                              os.path.join(tmp, name + ".sock"), *extra])
    if cache:
        args[args.index("--cache-dir") + 1] = cache
    if publishers:
        args[args.index("--publisher-keys") + 1] = publishers
    if hub:
        args += ["--hub-endpoint", hub.url]
    n = shoalproc.Shoald(SHOALD, name, args)
    n.sock = os.path.join(tmp, name + ".sock")
    n.cache = cache or os.path.join(tmp, "cache-" + name)
    return n


def cli(*args, timeout=60):
    return subprocess.run([SHOAL, *args], capture_output=True, text=True, timeout=timeout)


def status_saying(n, want, tries=50):
    """Node |n|'s `shoal status` once it says |want|, or after |tries| looks
    0.2 s apart (the caller checks)."""
    st = ""
    for _ in range(tries):
        st = cli("status", "--socket", n.sock).stdout
        if want in st:
            break
        time.sleep(0.2)
    return st


def case_origin_bytes(tmp):
    k = make_keys(tmp, ["o"])
    hub = Hub(tmp, "6M")
    mf, mid = publish(k, hub, tmp)
    n = node("o", k, tmp, hub, ["--manifest", mf])
    fails = 0
    r = cli("pull", mid, "--socket", n.sock, "--timeout", str(WAIT_S))
    print(r.stdout.strip())
    m = re.search(r"complete: \S+ [^,]+, (\d+) bytes from peers, (\d+) from origin \((\d+)%\)",
                  r.stdout)
    if r.returncode != 0 or not m:
        print(f"FAIL shoal pull: exit {r.returncode}: {r.stdout}{r.stderr}")
        return fails + 1
    if (int(m.group(1)), int(m.group(2)), int(m.group(3))) != (0, hub.size, 100):
        print(f"FAIL shoal pull: want 0 from peers, {hub.size} from origin (100%)")
        fails += 1
    st = cli("status", "--socket", n.sock).stdout
    if not re.search(r"acme/model@%s\s+complete\s+100\.0%%.*\s100%%\s" % hub.commit, st):
        print(f"FAIL status does not show 100% from the origin:\n{st}")
        fails += 1
    mt = cli("metrics", "--socket", n.sock).stdout
    got = re.search(r'^shoal_received_bytes_total\{source="origin"\} (\d+)$', mt, re.M)
    if not got or int(got.group(1)) != hub.size:
        print(f"FAIL metrics: origin bytes != {hub.size}:\n{mt}")
        fails += 1
    return shoalproc.finish(fails, [n])


def start_tracker(k):
    return hubfix.start_tracker(TRACKER, k)


def expect_refused(n, release, pattern, code=None):
    """`shoal pull RELEASE` on node |n| must fail within 10 s with stderr
    matching |pattern| (and exit status |code| if given); returns 0 or 1
    (printing why)."""
    t0 = time.monotonic()
    r = cli("pull", release, "--socket", n.sock, "--timeout", "10")
    took = time.monotonic() - t0
    print(f"shoal pull {release}: exit {r.returncode} in {took:.1f} s: {r.stderr.strip()}")
    if r.returncode == 0 or not re.search(pattern, r.stderr) or "timed out" in r.stderr:
        print(f"FAIL shoal pull {release}: want a refusal matching {pattern!r}")
        return 1
    if code is not None and r.returncode != code:
        print(f"FAIL shoal pull {release}: exit {r.returncode}, want {code}")
        return 1
    return 0


def case_names(tmp):
    k = make_keys(tmp, ["n"])
    trk, taddr = start_tracker(k)
    n = node("n", k, tmp, None, ["--tracker", taddr, "--no-origin"])
    c = "ab" * 20
    fails = 0
    # Malformed names are usage errors: exit 2.
    fails += expect_refused(n, "../../etc@x", r"not a repo id", 2)
    fails += expect_refused(n, "model@" + c, r"'model' is not a repo id: expected org/name", 2)
    fails += expect_refused(n, "org//model@" + c, r"not a repo id", 2)
    fails += expect_refused(n, "org/mo..del@" + c, r"not a repo id", 2)
    fails += expect_refused(n, "org/model@" + c.upper(), r"uppercase hex", 2)
    fails += expect_refused(n, "org/model@", r"not a revision", 2)
    fails += expect_refused(n, "org/model@main",
                            r"revision must be a 40-hex commit; got 'main'", 2)
    fails += expect_refused(n, "org/model", r"not org/name@commit", 2)
    st = cli("status", "--socket", n.sock).stdout
    if "(no releases)" not in st:
        print(f"FAIL refused pulls were kept:\n{st}")
        fails += 1
    return shoalproc.finish(fails, [n])


def case_branch(tmp):
    k = make_keys(tmp, ["h", "o"])
    hub = Hub(tmp, "4M")
    trk, taddr = start_tracker(k)
    publish(k, hub, tmp, "main", taddr)
    n = node("h", k, tmp, hub, ["--tracker", taddr])
    fails = 0
    r = cli("pull", "acme/model@main", "--socket", n.sock, "--timeout", str(WAIT_S))
    print(r.stdout.strip().splitlines()[-1:] if r.stdout.strip() else r.stderr)
    if r.returncode != 0 or f"complete: acme/model@{hub.commit}" not in r.stdout:
        print(f"FAIL shoal pull acme/model@main: exit {r.returncode}: {r.stdout}{r.stderr}")
        fails += 1
    snap = os.path.join(n.cache, "models--acme--model", "snapshots", hub.commit)
    for path in hub.files:
        if not os.path.islink(os.path.join(snap, path)):
            print(f"FAIL {path} is not in the snapshot of {hub.commit}")
            fails += 1
    if not n.wait_for(r"the Hub resolves main to commit %s" % hub.commit, 1):
        print("FAIL the log does not say what main resolved to")
        fails += 1
    if not re.search(r"s here, [\d.]+ MiB fetched \(", r.stdout):
        print("FAIL the first pull by branch does not say what it fetched")
        fails += 1
    # Pulled by branch again, complete: this command fetched nothing (its
    # first replies come while the branch resolves, before the release
    # shows with the counters it had).
    before = hub.egress()
    r = cli("pull", "acme/model@main", "--socket", n.sock, "--timeout", str(WAIT_S))
    last = (r.stdout.strip().splitlines() or [""])[-1]
    print(f"again by branch: {last}")
    if r.returncode != 0 or "nothing fetched (it was here already)" not in last or \
            hub.egress() != before:
        print("FAIL a pull by branch of a complete release says it fetched it again")
        fails += 1
    fails += expect_refused(n, "acme/model@nosuch", r"nosuch")
    # A commit nobody published: the pull waits (it may be published
    # later) but says why.
    r = cli("pull", "acme/model@" + "3" * 40, "--socket", n.sock, "--timeout", "4")
    print(r.stdout.strip().splitlines()[-1:])
    if r.returncode == 0 or "no tracker has answered with its manifest yet" not in r.stdout:
        print(f"FAIL an unpublished release: exit {r.returncode}, no reason shown: {r.stdout}")
        fails += 1
    # A node with --no-origin does not ask the Hub (though it has an
    # endpoint): a branch is refused, naming that option as the reason.
    o = node("o", k, tmp, hub, ["--tracker", taddr, "--no-origin"])
    r = cli("pull", "acme/model@main", "--socket", o.sock, "--timeout", "10")
    print(f"--no-origin node: exit {r.returncode}: {r.stderr.strip()}")
    if r.returncode == 0 or "--no-origin" not in r.stderr:
        print("FAIL a branch pulled on a --no-origin node is not refused naming --no-origin")
        fails += 1
    return shoalproc.finish(fails, [n, o])


def case_status_table(tmp):
    """QA F9: `shoal status` lists releases by repo, then by when they
    opened (oldest first, so each repo's newest is its last row), with a
    BRANCH column naming the branch each was pulled by ("-": by commit);
    no node-level warning while the credential is fresh and the tracker
    connected (before: open order, no branch)."""
    k = make_keys(tmp, ["n"])
    hub = Hub(tmp, "4M")
    dev = run(PY, os.path.join(HUB_DIR, "genrepo.py"), hub.root, "acme/model", "--size", "4M",
              "--shards", "2", "--seed", "10", "--branch", "dev").strip()
    aaa = run(PY, os.path.join(HUB_DIR, "genrepo.py"), hub.root, "acme/aaa", "--size", "1M",
              "--shards", "1", "--seed", "11").strip()
    trk, taddr = start_tracker(k)
    publish(k, hub, tmp, "main", taddr)
    publish(k, hub, tmp, "dev", taddr)
    env = dict(os.environ, HF_ENDPOINT=hub.url)
    env.pop("HF_TOKEN", None)
    run(SHOAL, "publish", "acme/aaa@main", "--key", k("publisher"), "--out",
        os.path.join(tmp, "aaa.manifest"), "--quiet", "--tracker", taddr, "--identity",
        k("admin"), "--cred", k("admin") + ".cred", env=env)
    n = node("n", k, tmp, hub, ["--tracker", taddr])
    fails = 0
    for rel in ("acme/model@main", "acme/model@" + dev, "acme/aaa@main"):
        r = cli("pull", rel, "--socket", n.sock, "--timeout", str(WAIT_S))
        if r.returncode != 0:
            print(f"FAIL shoal pull {rel}: exit {r.returncode}: {r.stderr}")
            return shoalproc.finish(1, [n])
    st = cli("status", "--socket", n.sock).stdout
    print(st.strip())
    lines = st.splitlines()
    rows = [ln.split() for ln in lines[1:] if ln and not ln.startswith(" ")]
    got = [(row[0], row[-1]) for row in rows]
    want = [(f"acme/aaa@{aaa}", "main"), (f"acme/model@{hub.commit}", "main"),
            (f"acme/model@{dev}", "-")]
    if not lines or not lines[0].rstrip().endswith("ETA  BRANCH") or got != want:
        print(f"FAIL want rows (release, branch) {want} under a BRANCH column, got {got}")
        fails += 1
    if "warning:" in st:
        print("FAIL a node with a fresh credential and its tracker connected shows a warning")
        fails += 1
    return shoalproc.finish(fails, [n])


def case_manifest_sweep(tmp):
    """QA F2: a dropped release's kept manifest (.shoal/<id>.manifest) stays
    while a snapshot of its commit is left, so a later release with the same
    files still takes them from the cache (no origin bytes), and is removed
    by the start-up sweep once its snapshot is gone (huggingface-cli
    delete-cache), which logs it apart from partial files and progress
    sidecars (before: every manifest stayed for ever and was parsed at every
    release open)."""
    k = make_keys(tmp, ["m"])
    hub = Hub(tmp, "4M")
    c1 = hub.commit
    trk, taddr = start_tracker(k)
    _, id1 = publish(k, hub, tmp, c1, taddr)
    # The same files in a new commit (its parent differs).
    c2 = run(PY, os.path.join(HUB_DIR, "genrepo.py"), hub.root, "acme/model", "--size", "4M",
             "--shards", "2", "--seed", "9").strip()
    _, id2 = publish(k, hub, tmp, c2, taddr)
    folder = None
    fails = 0
    n = node("m", k, tmp, hub, ["--tracker", taddr])
    folder = os.path.join(n.cache, "models--acme--model")
    kept = lambda mid: os.path.exists(os.path.join(folder, ".shoal", mid + ".manifest"))
    r = cli("pull", "acme/model@" + c1, "--socket", n.sock, "--timeout", str(WAIT_S))
    if r.returncode != 0 or c1 == c2:
        print(f"FAIL pull of {c1} (c2 {c2}): exit {r.returncode}: {r.stderr}")
        return shoalproc.finish(1, [n])
    r = cli("drop", "acme/model@" + c1, "--socket", n.sock)
    fails += shoalproc.stop_all([n])
    # Restarted: the sweep keeps the dropped release's manifest (its
    # snapshot is there) and the new commit's files come from the cache.
    n = node("m", k, tmp, hub, ["--tracker", taddr])
    if not kept(id1):
        print("FAIL the manifest of a dropped release whose snapshot is left was removed")
        fails += 1
    before = hub.egress()
    r = cli("pull", "acme/model@" + c2, "--socket", n.sock, "--timeout", str(WAIT_S))
    print(f"pull {c2}: exit {r.returncode}; origin bytes {hub.egress() - before}")
    if r.returncode != 0 or hub.egress() != before:
        print("FAIL the release with the same files was not taken from the cache")
        fails += 1
    fails += shoalproc.stop_all([n])
    # huggingface-cli delete-cache of c1's revision: its snapshot goes.
    shutil.rmtree(os.path.join(folder, "snapshots", c1))
    n = node("m", k, tmp, hub, ["--tracker", taddr])
    m = n.wait_for(r"removed \d+ partial files?, \d+ progress sidecars? and (\d+) kept "
                   r"manifests? \(", 10)
    print(f"log: {m.group(0) if m else None}; kept: {id1[:8]} {kept(id1)}, {id2[:8]} {kept(id2)}")
    if kept(id1) or not m or m.group(1) != "1":
        print("FAIL the manifest of a dropped release with no snapshot left was not swept "
              "(and logged as a kept manifest)")
        fails += 1
    if not kept(id2):
        print("FAIL the manifest of the open release was removed")
        fails += 1
    if not status_saying(n, "complete").count(c2):
        print("FAIL the open release is not complete after the restart")
        fails += 1
    return shoalproc.finish(fails, [n])


def read_ref(n, branch):
    try:
        with open(os.path.join(n.cache, "models--acme--model", "refs", branch)) as f:
            return f.read().strip()
    except OSError:
        return None


def case_refs(tmp):
    k = make_keys(tmp, ["r"])
    hub = Hub(tmp, "4M")
    main = hub.commit
    dev = run(PY, os.path.join(HUB_DIR, "genrepo.py"), hub.root, "acme/model", "--size", "4M",
              "--shards", "2", "--seed", "10", "--branch", "dev").strip()
    trk, taddr = start_tracker(k)
    publish(k, hub, tmp, "main", taddr)
    publish(k, hub, tmp, "dev", taddr)
    n = node("r", k, tmp, hub, ["--tracker", taddr])
    fails = 0
    for rel in ("acme/model@main", "acme/model@" + dev):
        r = cli("pull", rel, "--socket", n.sock, "--timeout", str(WAIT_S))
        if r.returncode != 0:
            print(f"FAIL shoal pull {rel}: exit {r.returncode}: {r.stderr}")
            fails += 1
        print(f"after {rel}: refs/main {read_ref(n, 'main')}, refs/dev {read_ref(n, 'dev')}")
        if read_ref(n, "main") != main:
            print(f"FAIL refs/main is not main's commit {main}")
            fails += 1
    if read_ref(n, "dev") is not None:
        print("FAIL a pull by commit wrote refs/dev")
        fails += 1
    if not os.path.isdir(os.path.join(n.cache, "models--acme--model", "snapshots", dev)):
        print("FAIL dev's commit has no snapshot")
        fails += 1
    # Branch and tag names git and the Hub take, though not made only of
    # [A-Za-z0-9._/-]: pulled by name, each gets its refs/ file.
    rel = run(PY, os.path.join(HUB_DIR, "genrepo.py"), hub.root, "acme/model", "--size", "4M",
              "--shards", "2", "--seed", "12", "--branch", "release@2024", "--tag",
              "v1.0+cu118").strip()
    publish(k, hub, tmp, rel, taddr)
    for name in ("release@2024", "v1.0+cu118"):
        r = cli("pull", "acme/model@" + name, "--socket", n.sock, "--timeout", str(WAIT_S))
        print(f"pull @{name}: exit {r.returncode} {r.stderr.strip()[-160:]}")
        if r.returncode != 0 or f"complete: acme/model@{rel}" not in r.stdout:
            print(f"FAIL shoal pull acme/model@{name} did not complete {rel}")
            fails += 1
        if read_ref(n, name) != rel:
            print(f"FAIL refs/{name} is {read_ref(n, name)}, not {rel}")
            fails += 1
    # huggingface_hub moves main on (it fetched @main after the branch
    # moved): a restart of shoald, which pulled main when it was the old
    # commit, restores refs it lost, but never moves one back (K11).
    ref = os.path.join(n.cache, "models--acme--model", "refs", "main")
    with open(ref, "w") as f:
        f.write(dev)
    # An older shoald killed inside a ref write left its temporary file in
    # refs/, which huggingface_hub reads as a ref (K9): swept at open.
    left = os.path.join(n.cache, "models--acme--model", "refs", ".shoal-tmp-1-1")
    with open(left, "w") as f:
        f.write("")
    os.utime(left, (time.time() - 3600, time.time() - 3600))
    fails += shoalproc.stop_all([n])
    n = node("r", k, tmp, hub, ["--tracker", taddr])
    if not n.wait_for(r"state: release acme/model@%s: refs/main names %s now \(moved since\): "
                      r"left as it is" % (main, dev), 15):
        print("FAIL the restart did not say it left a moved refs/main alone")
        fails += 1
    r = cli("pull", "acme/model@" + main, "--socket", n.sock, "--timeout", str(WAIT_S))
    print(f"after a restart: refs/main {read_ref(n, 'main')}")
    if read_ref(n, "main") != dev:
        print(f"FAIL a restart moved refs/main back from {dev} to {read_ref(n, 'main')}")
        fails += 1
    refs = sorted(os.listdir(os.path.dirname(ref)))
    if any(x.startswith(".shoal") for x in refs):
        print(f"FAIL a temporary file of shoal's is left in refs/: {refs}")
        fails += 1
    return shoalproc.finish(fails, [n])


def local_release(tmp, k, files):
    """Writes |files| (path -> bytes) under tmp/repo and builds their
    manifest as org/model@abab...; returns (repo dir, manifest, id)."""
    repo = os.path.join(tmp, "repo")
    shoalproc.write_files(repo, files)
    mf = os.path.join(tmp, "local.manifest")
    mid = shoalproc.build_manifest(SHOAL, repo, k, mf,
                                   extra=("--min", "64K", "--avg", "256K", "--max", "1M"))
    return repo, mf, mid


def case_store_full(tmp):
    return shoalproc.on_small_disk(tmp, "20m", lambda small: store_full(tmp, small),
                                   "store_full")


def store_full(tmp, small):
    k = make_keys(tmp, ["a", "b"])
    rnd = random.Random(11)
    files = {f"model-{i}.safetensors": rnd.randbytes(8 << 20) for i in range(3)}
    repo, mf, mid = local_release(tmp, k, files)
    name = "org/model@" + "ab" * 20
    a = node("a", k, tmp, None, ["--manifest", mf, "--seed-dir", repo])
    b = node("b", k, tmp, None, ["--peer", a.addr], cache=os.path.join(small, "hub"))
    fails = 0
    if not b.wait_for(r"authenticated", 20):
        print("FAIL the nodes did not connect")
        fails += 1
    t0 = time.monotonic()
    r = cli("pull", mid, "--socket", b.sock, "--timeout", "30")
    print(f"shoal pull: exit {r.returncode} after {time.monotonic() - t0:.1f} s: "
          f"{r.stderr.strip()}")
    if r.returncode == 0 or "no space left" not in r.stderr or name not in r.stderr:
        print("FAIL shoal pull did not fail naming the release and the store error")
        fails += 1
    st = cli("status", "--socket", b.sock).stdout
    if not re.search(r"^%s\s+failed\s.*\n\s+error: .*no space left" % re.escape(name), st,
                     re.M):
        print(f"FAIL status does not show the release failed with the error:\n{st}")
        fails += 1
    left = glob.glob(os.path.join(small, "hub", "*", "blobs", "*.incomplete")) + \
        glob.glob(os.path.join(small, "hub", "*", ".shoal", "*.incomplete"))
    if left:
        print(f"FAIL preallocated files left on the full disk: {left}")
        fails += 1
    time.sleep(4)  # twice the old retry period
    opens = len(re.findall(r"pull \S+ failed: cannot open store", b.log()))
    if opens != 1:
        print(f"FAIL {opens} failed opens logged, want 1 (no retry loop)")
        fails += 1
    r = cli("pull", name, "--socket", b.sock, "--timeout", "30")
    if r.returncode == 0 or "no space left" not in r.stderr:
        print(f"FAIL a second shoal pull did not fail with the store error: {r.stderr}")
        fails += 1
    if len(re.findall(r"pull \S+ failed: cannot open store", b.log())) != 2:
        print("FAIL the second shoal pull did not try to open the release again")
        fails += 1
    return shoalproc.finish(fails, [a, b])


def case_wildcard_listen(tmp):
    k = make_keys(tmp, ["a", "b", "c", "d"])
    rnd = random.Random(12)
    repo, mf, mid = local_release(tmp, k, {"model.safetensors": rnd.randbytes(3 << 20),
                                           "config.json": b'{"a": 1}'})
    trk, taddr = start_tracker(k)
    # Not Shoald(): that one listens on 127.0.0.1.
    sock_a = os.path.join(tmp, "a.sock")
    a = Proc([SHOALD, "--listen", "0.0.0.0:0", "--control-socket", sock_a,
              *shoalproc.node_args(k, "a", tmp, ["--manifest", mf, "--seed-dir", repo,
                                                 "--tracker", taddr, "--no-origin"])],
             name="a")
    m = a.wait_for(r"listening on 0\.0\.0\.0:(\d+)", 20)
    if not m:
        a.dump()
        return 1
    want = f"127.0.0.1:{m.group(1)}"
    fails = 0
    if not a.wait_for(r"tracker \S+: announcing this node as %s" % re.escape(want), 20):
        print(f"FAIL the seed did not log that it announces {want}")
        fails += 1
    b = node("b", k, tmp, None, ["--tracker", taddr, "--no-origin"])
    r = cli("pull", mid, "--socket", b.sock, "--timeout", "60")
    print(r.stdout.strip().splitlines()[-1:] if r.stdout.strip() else r.stderr)
    if r.returncode != 0 or not re.search(r"complete: .* [1-9]\d* bytes from peers", r.stdout):
        print(f"FAIL b did not complete from the seed: exit {r.returncode}: {r.stdout}{r.stderr}")
        fails += 1
    peers = cli("peers", "--socket", b.sock).stdout
    if want not in peers:
        print(f"FAIL b is not connected to the seed at {want}:\n{peers}")
        fails += 1
    c = node("c", k, tmp, None, ["--tracker", taddr, "--no-origin", "--advertise",
                                 "0.0.0.0:7600"])
    if not c.wait_for(r"tracker \S+ refused our announce: address 0\.0\.0\.0:7600 cannot be "
                      r"dialled by peers: its host is the wildcard 0\.0\.0\.0", 20):
        print("FAIL c's log does not show the tracker refusing its wildcard address")
        fails += 1
    # A tracker reached over IPv6 by a node listening on IPv4 only: no
    # address peers could dial is announced, and the log says what to do.
    trk6, taddr6 = hubfix.start_tracker(TRACKER, k, "[::1]:0")
    sock_d = os.path.join(tmp, "d.sock")
    d = Proc([SHOALD, "--listen", "0.0.0.0:0", "--control-socket", sock_d,
              *shoalproc.node_args(k, "d", tmp, ["--tracker", taddr6, "--no-origin"])],
             name="d")
    if not d.wait_for(r"listens on IPv4 only \(0\.0\.0\.0\) but reaches the tracker over "
                      r"IPv6.*listen on \[::\] or set --advertise", 20):
        print("FAIL an IPv4-only node reaching an IPv6 tracker does not say why it cannot "
              "announce")
        fails += 1
    procs = [a, b, c, d]
    fails += shoalproc.stop_all(procs)
    trk6.stop()
    if fails:
        for p in (trk, trk6, *procs):
            p.dump()
    return fails


def case_origin_down(tmp):
    k = make_keys(tmp, ["o"])
    hub = Hub(tmp, "2M")
    mf, mid = publish(k, hub, tmp)
    port = hub.url.rsplit(":", 1)[1]
    hub.proc.stop()
    t0 = time.monotonic()
    n = node("o", k, tmp, None, ["--manifest", mf, "--hub-endpoint", hub.url])
    fails = 0
    failing = r"warn\s+origin 127\.0\.0\.1:%s failing: cannot connect: Connection refused" % port
    if not n.wait_for(failing, 5):
        print("FAIL no warning naming the origin and the error within 5 s")
        fails += 1
    else:
        print(f"origin failure logged {time.monotonic() - t0:.1f} s after the node started")
    time.sleep(3)
    st = cli("status", "--socket", n.sock).stdout
    print(st.strip())
    if not re.search(r"pulling .*\n\s+origin 127\.0\.0\.1:%s failing for \d+ s \(\d+ failed "
                     r"requests?\): cannot connect" % port, st):
        print("FAIL shoal status does not show the origin failing under the release")
        fails += 1
    warned = len(re.findall(r"origin \S+ (still )?failing", n.log()))
    if warned != 1:
        print(f"FAIL {warned} origin warnings in 3 s, want 1 (a count every 30 s after it)")
        fails += 1
    back = Proc([PY, os.path.join(HUB_DIR, "hubstub.py"), hub.root, "--port", port], name="hub2")
    if not back.wait_for(r"^(\d+)$", 20, stdout=True):
        back.dump()
        return fails + 1
    r = cli("pull", mid, "--socket", n.sock, "--timeout", str(WAIT_S))
    print(r.stdout.strip().splitlines()[-1:] if r.stdout.strip() else r.stderr)
    if r.returncode != 0:
        print(f"FAIL the pull did not complete once the origin was back: {r.stderr}")
        fails += 1
    if not n.wait_for(r"info\s+origin 127\.0\.0\.1:%s reachable again, after \d+ failed "
                      r"requests over [\d.]+ s" % port, 5):
        print("FAIL the log does not say the origin is reachable again")
        fails += 1
    st = cli("status", "--socket", n.sock).stdout
    if "failing" in st:
        print(f"FAIL status still shows the origin failing:\n{st}")
        fails += 1
    return shoalproc.finish(fails, [n])


def case_hub_ca(tmp):
    # The CA bundle would otherwise come from these: the node without
    # --hub-ca must trust the system's CAs, which know nothing of ours.
    os.environ.pop("CURL_CA_BUNDLE", None)
    os.environ.pop("SSL_CERT_FILE", None)
    certs = os.path.join(tmp, "tls")
    run(PY, os.path.join(HUB_DIR, "tlscert.py"), certs)
    ca = os.path.join(certs, "ca.pem")
    k = make_keys(tmp, ["a", "b"])
    hub = hubfix.Hub(HUB_DIR, tmp, "4M", "2", "9", tls=certs)
    fails = 0
    mf = os.path.join(tmp, "rel.manifest")
    pub = [SHOAL, "publish", "acme/model@main", "--key", k("publisher"), "--out", mf, "--quiet",
           "--hub-endpoint", hub.https_url]
    r = subprocess.run(pub, capture_output=True, text=True, timeout=60)
    print(f"publish without --hub-ca: exit {r.returncode}: {r.stderr.strip()}")
    if r.returncode != 1 or "certificate" not in r.stderr or "--hub-ca" not in r.stderr:
        print("FAIL publish over https without the CA: want exit 1 and the certificate error")
        fails += 1
    missing = os.path.join(tmp, "no-such-ca.pem")
    r = subprocess.run(pub + ["--hub-ca", missing], capture_output=True, text=True, timeout=60)
    if r.returncode != 1 or f"CA bundle {missing}: No such file" not in r.stderr:
        print(f"FAIL publish --hub-ca MISSING: exit {r.returncode}: {r.stderr}")
        fails += 1
    hub.reset()
    r = subprocess.run(pub + ["--hub-ca", ca], capture_output=True, text=True, timeout=60)
    m = re.search(r"manifest id ([0-9a-f]{64})", r.stdout)
    if r.returncode != 0 or not m:
        print(f"FAIL publish --hub-ca: exit {r.returncode}: {r.stdout}{r.stderr}")
        return fails + 1
    mid = m.group(1)
    plain = [e for e in hub.stats()["log"] if not e["tls"]]
    if plain:
        print(f"FAIL publish over https made plain http requests: {plain[:3]}")
        fails += 1
    token = os.path.join(tmp, "hf-token")
    with open(token, "w") as f:
        f.write("hf_secret_for_tls_test\n")
    os.chmod(token, 0o600)
    common = ["--manifest", mf, "--hub-endpoint", hub.https_url, "--hub-token-file", token]

    hub.reset()
    a = node("a", k, tmp, None, [*common, "--hub-ca", ca])
    if not a.wait_for(r"origin TLS: trusting only the CAs in " + re.escape(ca), 5):
        print("FAIL node a does not log the CA bundle it trusts")
        fails += 1
    r = cli("pull", mid, "--socket", a.sock, "--timeout", str(WAIT_S))
    print("a:", (r.stdout.strip().splitlines() or [r.stderr])[-1])
    if r.returncode != 0:
        print(f"FAIL node a with --hub-ca did not complete: {r.stdout}{r.stderr}")
        fails += 1
    fails += hubfix.check_files(a, hub)
    log = hub.stats()["log"]
    if not log or any(not e["tls"] for e in log) or not all(e["auth"] for e in log
                                                            if "/resolve/" in e["path"]):
        print(f"FAIL node a's requests were not all over TLS with the token: {log[:4]}")
        fails += 1

    hub.reset()
    b = node("b", k, tmp, None, common)
    r = cli("pull", mid, "--socket", b.sock, "--timeout", "6")
    print(f"b: exit {r.returncode}: {(r.stdout.strip().splitlines() or [r.stderr])[-1]}")
    if r.returncode == 0:
        print("FAIL node b without --hub-ca completed the pull")
        fails += 1
    if not b.wait_for(r"warn\s+origin 127\.0\.0\.1:\d+ failing: TLS certificate not trusted: "
                      r"SSL certificate problem", 5):
        print("FAIL node b's log does not say the origin's certificate is not trusted")
        fails += 1
    if not b.wait_for(r"origin fetch of chunks \d+\.\.\d+ failed: .*certificate.*trusting the "
                      r"system's CAs: give the CA bundle .* with --hub-ca", 5):
        print("FAIL node b's log does not say to give --hub-ca")
        fails += 1
    snap = os.path.join(b.cache, "models--acme--model", "snapshots")
    shown = [f for _, _, fs in os.walk(snap) for f in fs] if os.path.isdir(snap) else []
    if shown:
        print(f"FAIL node b exposes files in its snapshot: {shown}")
        fails += 1
    st = hub.stats()
    if st["log"] or any(st["requests"].values()):
        print(f"FAIL the stand-in saw requests from node b: {st['requests']} {st['log'][:3]}")
        fails += 1
    if "hf_secret_for_tls_test" in a.log() + b.log():
        print("FAIL a token was logged")
        fails += 1
    return shoalproc.finish(fails, [a, b])


def tracker_metric(text, name):
    """The value of |name| in the Prometheus text |text|, or None."""
    m = re.search(r"^%s ([0-9.e+]+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def case_tracker_stats(tmp):
    k = make_keys(tmp, ["s"])
    run(SHOAL, "keygen", k("stranger"))
    run(SHOAL, "keygen", k("other-cluster"))
    run(SHOAL, "cred", "issue", "--cluster-key", k("other-cluster"), "--node",
        k("stranger") + ".pub", "--out", k("stranger") + ".cred")
    trk, taddr = start_tracker(k)
    ident = ["--tracker", taddr, "--key", k("admin"), "--cred", k("admin") + ".cred"]
    fails = 0
    r = cli("tracker-stats", *ident)
    before = r.stdout
    print(f"before: nodes {tracker_metric(before, 'shoal_tracker_nodes')}, announces "
          f"{tracker_metric(before, 'shoal_tracker_announces_total')}")
    if r.returncode != 0 or tracker_metric(before, "shoal_tracker_nodes") != 0 or \
            tracker_metric(before, "shoal_tracker_announces_total") is None or \
            "# TYPE shoal_tracker_connections gauge" not in before:
        print(f"FAIL tracker-stats before any node: exit {r.returncode}:\n{r.stdout}{r.stderr}")
        return 1
    n = node("s", k, tmp, None, ["--tracker", taddr, "--no-origin"])
    if not n.wait_for(r"tracker \S+: authenticated", 20):
        print("FAIL the node did not authenticate with the tracker")
        fails += 1
    after = ""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        after = cli("tracker-stats", *ident).stdout
        if tracker_metric(after, "shoal_tracker_nodes") == 1 and \
                tracker_metric(after, "shoal_tracker_announces_total") > \
                tracker_metric(before, "shoal_tracker_announces_total"):
            break
        time.sleep(0.3)
    else:
        print(f"FAIL no node or announce counted after the node announced:\n{after}")
        fails += 1
    print(f"after: nodes {tracker_metric(after, 'shoal_tracker_nodes')}, announces "
          f"{tracker_metric(after, 'shoal_tracker_announces_total')}")
    r = cli("tracker-stats", "--tracker", taddr, "--key", k("stranger"), "--cred",
            k("stranger") + ".cred")
    if r.returncode != 1 or "refused us" not in r.stderr or r.stdout:
        print(f"FAIL an untrusted credential: exit {r.returncode}: {r.stdout}{r.stderr}")
        fails += 1
    r = cli("tracker-stats", "--tracker", taddr)
    if r.returncode != 2 or "usage" not in r.stderr:
        print(f"FAIL without --key/--cred: exit {r.returncode}: {r.stderr}")
        fails += 1
    fails += shoalproc.stop_all([n])
    if fails:
        n.dump()
        trk.dump()
    return fails


def release_pct(n, commit):
    """The progress `shoal status` shows for acme/model@COMMIT, or None."""
    st = cli("status", "--socket", n.sock).stdout
    m = re.search(r"acme/model@%s\s+\S+\s+([\d.]+)%%" % commit, st)
    return float(m.group(1)) if m else None


def slow_origin(hub):
    """About 1.5 MB/s per range request from the Hub stand-in: long enough
    to act mid-download while a node holds leases, short enough to finish
    well within the tests' bounds."""
    hub.add_faults([{"kind": "slow", "bps": 1500000, "match": "/cdn/"}])


def lease_tracker(k):
    """A tracker whose leases and fetched credit outlive the test (120 s):
    only a void can free a node's chunks. It grants at once (no
    --start-grace-ms, the wait of a tracker that may have restarted): the
    tests catch leases held early in the pull. Returns (process, address)."""
    return hubfix.start_tracker(TRACKER, k, extra=["--lease-ms", "120000",
                                                   "--fetched-ttl-ms", "120000",
                                                   "--start-grace-ms", "0"])


def finish_pulls(nodes, pulls, hub, timeout):
    """Waits for each background `shoal pull` of |pulls| (at most |timeout|
    seconds each), prints its last line, and checks its node's files;
    returns the failures."""
    fails = 0
    for n, p in zip(nodes, pulls):
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        last = (out.strip().splitlines() or ["(no output)"])[-1]
        print(f"{n.name}: shoal pull exit {p.returncode}: {last}")
        if p.returncode != 0:
            print(f"FAIL node {n.name} did not complete the release")
            fails += 1
        fails += hubfix.check_files(n, hub)
    return fails


def catch_mid_download(n, commit, low=15, high=85):
    """Waits (60 s at most) until `shoal status` on |n| shows the release
    at |low|% or more; returns that percentage, or None (printing a FAIL
    line) when it was not caught between |low| and |high|."""
    pct = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pct = release_pct(n, commit)
        if pct is not None and pct >= low:
            break
        time.sleep(0.2)
    if pct is None or pct < low or pct >= high:
        print(f"FAIL could not catch the pull mid-download (at {pct}%)")
        return None
    return pct


def case_restart(tmp):
    k = make_keys(tmp, ["r"])
    hub = Hub(tmp, "24M", shards="3")
    slow_origin(hub)
    t, taddr = lease_tracker(k)
    _, mid = publish(k, hub, tmp, "main", taddr)
    fails = 0
    n = node("r", k, tmp, hub, ["--tracker", taddr])
    first = subprocess.Popen([SHOAL, "pull", mid, "--socket", n.sock, "--timeout", "60"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pct = catch_mid_download(n, hub.commit)
    if pct is None:
        n.dump()
        first.kill()
        first.wait()
        return 1
    n.p.kill()
    n.p.wait()
    first.wait(timeout=30)
    print(f"killed the node (SIGKILL) at {pct:.1f}%")
    n2 = node("r", k, tmp, hub, ["--tracker", taddr])
    t0 = time.monotonic()
    r = cli("pull", mid, "--socket", n2.sock, "--timeout", "60", timeout=90)
    took = time.monotonic() - t0
    print(f"pull after the restart: exit {r.returncode} in {took:.1f} s: "
          f"{(r.stdout.strip().splitlines() or [r.stderr.strip()])[-1]}")
    if r.returncode != 0:
        print("FAIL the restarted node did not complete within 60 s (--lease-ms and "
              "--fetched-ttl-ms are 120 s)")
        fails += 1
    v = t.wait_for(r"node [0-9a-f]{16} announced in a new session: voided (\d+) origin leases?, "
                   r"(\d+) fetched chunks? leasable again", 5)
    if not v or int(v.group(1)) + int(v.group(2)) == 0:
        print("FAIL the tracker did not log voiding the old process's leases")
        fails += 1
    else:
        print(v.group(0))
    fails += shoalproc.stop_all([n2])
    if fails:
        n.dump(tail=40)
        n2.dump(tail=60)
        t.dump(tail=40)
    return fails


class CutProxy:
    """A TCP proxy on 127.0.0.1 in front of |target| ("host:port"), run by
    threads of this script. cut() ends every connection it carries, as a
    network failure would, and it keeps listening, so a client redials
    through it. `accepted` counts the connections it took."""

    def __init__(self, target):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.addr = "127.0.0.1:%d" % self.ls.getsockname()[1]
        self.lock = threading.Lock()
        self.socks = []
        self.accepted = 0
        self.paused_until = 0.0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return  # closed
            if time.monotonic() < self.paused_until:
                c.close()  # the network is still down
                continue
            try:
                u = socket.create_connection(self.target, timeout=5)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.socks += [c, u]
                self.accepted += 1
            for src, dst in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        # Each socket is the source of one pump, which alone closes it.
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        src.close()

    def cut(self, down_s=0.0):
        """Ends every connection now (both sides see them close), and
        closes new ones for |down_s| seconds."""
        self.paused_until = time.monotonic() + down_s
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.ls.close()
        self.cut()


def origin_repeats(hub):
    """Byte ranges of one file that the Hub stand-in was asked for more than
    once, from its request log: [(file, start, end)]."""
    seen = {}
    for e in hub.stats()["log"]:
        m = re.match(r"bytes=(\d+)-(\d+)$", e.get("range") or "")
        if "/cdn/" not in e["path"] or not m:
            continue
        seen.setdefault(e["path"].split("?")[0], []).append((int(m.group(1)), int(m.group(2))))
    rep = []
    for f, spans in seen.items():
        spans.sort()
        for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
            if s1 <= e0:
                rep.append((f, s1, min(e0, e1)))
    return rep


def case_reconnect(tmp):
    k = make_keys(tmp, ["a", "b"])
    hub = Hub(tmp, "24M", shards="3")
    t, taddr = lease_tracker(k)
    _, mid = publish(k, hub, tmp, "main", taddr)
    hub.reset()  # forget what publishing read (and the faults: set them after)
    slow_origin(hub)
    proxy = CutProxy(taddr)
    fails = 0
    a = node("a", k, tmp, hub, ["--tracker", proxy.addr])
    b = node("b", k, tmp, hub, ["--tracker", taddr])
    pulls = [subprocess.Popen([SHOAL, "pull", mid, "--socket", n.sock, "--timeout", "90"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for n in (a, b)]
    pct = catch_mid_download(a, hub.commit)
    if pct is None:
        for p in pulls:
            p.kill()
            p.wait()
        a.dump(tail=40)
        t.dump(tail=40)
        return 1
    # Down for 1 s (well under the 5 s after which a node fetches without
    # leases): an origin span node a finishes meanwhile is reported
    # (LEASE_DONE) once it is back, not lost.
    proxy.cut(1.0)
    print(f"cut node a's tracker connection at {pct:.1f}%, for 1 s")
    kept = t.wait_for(r"node [0-9a-f]{16} reconnected in the same session: kept its (\d+) "
                      r"origin leases?", 20)
    if not kept:
        print("FAIL the tracker did not log that node a reconnected in the same session")
        fails += 1
    else:
        print(kept.group(0))
        # Mid-download the node holds leases (its max is 2): with none the
        # case would prove nothing.
        if int(kept.group(1)) == 0:
            print("FAIL node a held no lease when its connection was cut")
            fails += 1
    fails += finish_pulls((a, b), pulls, hub, 120)
    if proxy.accepted < 2:
        print(f"FAIL node a connected through the proxy {proxy.accepted} time(s), not 2")
        fails += 1
    # Whether a span ended inside the outage is timing, so this is only
    # shown; what it prevents is checked above (no range fetched twice).
    held = a.wait_for(r"sent (\d+) LEASE_DONEs? held while the connection was down", 1)
    print(held.group(0) if held else "no LEASE_DONE was held")
    voided = re.findall(r".*announced in a new session: voided.*", t.log())
    if voided:
        print("FAIL the tracker voided leases of a node that only reconnected:\n"
              + "\n".join(voided))
        fails += 1
    repeats = origin_repeats(hub)
    egress = hub.egress()
    print(f"origin served {egress} B for a {hub.size} B release to 2 nodes; "
          f"ranges asked for twice: {len(repeats)}")
    if repeats:
        print(f"FAIL the origin was asked for the same bytes twice: {repeats[:5]}")
        fails += 1
    if egress != hub.size:
        print(f"FAIL the origin served {egress} B, not the release's {hub.size} B")
        fails += 1
    proxy.close()
    fails += shoalproc.stop_all([a, b])
    if fails:
        a.dump(tail=60)
        b.dump(tail=30)
        t.dump(tail=40)
    return fails


def case_branch_follow(tmp):
    k = make_keys(tmp, ["f"])
    hub = Hub(tmp, "4M")
    a = hub.commit
    trk, taddr = start_tracker(k)
    publish(k, hub, tmp, "main", taddr)
    n = node("f", k, tmp, hub, ["--tracker", taddr])
    fails = 0

    def pull(rel, want_rc=0):
        r = cli("pull", rel, "--socket", n.sock, "--timeout", str(WAIT_S))
        print(f"pull {rel}: exit {r.returncode}, refs/main {read_ref(n, 'main')}")
        if r.returncode != want_rc:
            print(f"FAIL shoal pull {rel}: exit {r.returncode}, not {want_rc}: "
                  f"{r.stdout}{r.stderr}")
            return 1
        return 0

    # By commit first (no ref), then by branch: the release is open already
    # and the ref must still be written.
    fails += pull("acme/model@" + a)
    fails += pull("acme/model@main")
    if read_ref(n, "main") != a:
        print("FAIL refs/main not written for a branch pulled after its commit")
        fails += 1
    # The branch moves on the Hub: asking for it again follows it.
    b = run(PY, os.path.join(HUB_DIR, "genrepo.py"), hub.root, "acme/model", "--size", "4M",
            "--shards", "2", "--seed", "10", "--branch", "main").strip()
    publish(k, hub, tmp, "main", taddr)
    fails += pull("acme/model@main")
    if read_ref(n, "main") != b:
        print(f"FAIL refs/main is not main's new commit {b} after a second pull")
        fails += 1
    if not os.path.isdir(os.path.join(n.cache, "models--acme--model", "snapshots", b)):
        print("FAIL main's new commit has no snapshot")
        fails += 1
    # A branch the Hub does not have fails the pull and is dropped (a 404
    # is the Hub's answer, not an outage); once the branch is there, a new
    # `shoal pull` asks the Hub again and completes.
    fails += expect_refused(n, "acme/model@dev", r"acme/model@dev not found on the Hub")
    dev = run(PY, os.path.join(HUB_DIR, "genrepo.py"), hub.root, "acme/model", "--size", "4M",
              "--shards", "2", "--seed", "11", "--branch", "dev").strip()
    publish(k, hub, tmp, "dev", taddr)
    fails += pull("acme/model@dev")
    if read_ref(n, "dev") != dev:
        print(f"FAIL refs/dev is not {dev} after pulling the branch once it existed")
        fails += 1
    return shoalproc.finish(fails, [n])


def token_node(name, k, tmp, hub, extra, env):
    """node() whose environment has the HF_* variables of |env| (None: unset)
    instead of the test's (which keep any login token away)."""
    saved = dict(os.environ)
    for var in ("HF_TOKEN", "HF_TOKEN_PATH", "HF_HOME"):
        os.environ.pop(var, None)
    os.environ.update({v: x for v, x in env.items() if x is not None})
    try:
        return node(name, k, tmp, hub, extra)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def case_hub_token_file(tmp):
    k = make_keys(tmp, ["f", "g", "e"])
    hub = hubfix.Hub(HUB_DIR, tmp, "4M", "2", "9", tokens=["tok-ok"], private=True)
    trk, taddr = start_tracker(k)
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_TOKEN="tok-ok")
    r = subprocess.run([SHOAL, "publish", "acme/model@main", "--key", k("publisher"), "--out",
                        os.path.join(tmp, "rel.manifest"), "--tracker", taddr, "--identity",
                        k("admin"), "--cred", k("admin") + ".cred", "--quiet"],
                       capture_output=True, text=True, env=env, timeout=60)
    if r.returncode != 0:
        print(f"FAIL publish: {r.stdout} {r.stderr}")
        return 1
    home = os.path.join(tmp, "hfhome")
    os.makedirs(home)
    with open(os.path.join(home, "token"), "w") as f:
        f.write("\n  tok-ok  \n")  # an editor's blank line and spaces: trimmed
    os.chmod(os.path.join(home, "token"), 0o600)
    bad = os.path.join(tmp, "old-token")
    with open(bad, "w") as f:
        f.write("tok-old\n")
    os.chmod(bad, 0o600)
    fails = 0
    # $HF_HOME/token, as `huggingface-cli login` leaves it.
    f_ = token_node("f", k, tmp, hub, ["--tracker", taddr], {"HF_HOME": home})
    if not f_.wait_for(r"origin \S+ \(with a token from %s \(\$HF_HOME/token\);"
                       % re.escape(os.path.join(home, "token")), 5):
        print("FAIL the log does not say the token came from $HF_HOME/token")
        fails += 1
    r = cli("pull", "acme/model@main", "--socket", f_.sock, "--timeout", "60", timeout=90)
    print(f"with $HF_HOME/token: shoal pull exit {r.returncode}")
    if r.returncode != 0:
        print(f"FAIL the pull with the login token did not complete: {r.stderr.strip()}")
        fails += 1
    fails += hubfix.check_files(f_, hub)
    # $HF_TOKEN_PATH comes before $HF_HOME/token: its (old) token is the
    # one sent, and the refusal names it.
    g = token_node("g", k, tmp, hub, ["--tracker", taddr],
                   {"HF_HOME": home, "HF_TOKEN_PATH": bad})
    fails += expect_refused(g, "acme/model@main", r"HTTP 401.*the token \(from %s "
                            r"\(\$HF_TOKEN_PATH\)\) was refused" % re.escape(bad))
    # The token rotated on disk (a new file renamed over the old one, as
    # a secrets agent does) is sent from then on, without a restart (QA
    # F12: before, the refusal kept naming the file that by then held a
    # valid token, until shoald restarted).
    with open(bad + ".new", "w") as f:
        f.write("tok-ok\n")
    os.chmod(bad + ".new", 0o600)
    os.rename(bad + ".new", bad)
    time.sleep(1.2)  # the file is looked at again at most every second
    r = cli("pull", "acme/model@main", "--socket", g.sock, "--timeout", "60", timeout=90)
    print(f"after the token file was rotated: shoal pull exit {r.returncode}")
    if r.returncode != 0:
        print(f"FAIL the rotated token was not used: {r.stderr.strip()}")
        fails += 1
    if not g.wait_for(r"origin token read again from %s \(\$HF_TOKEN_PATH\): it changed on "
                      r"disk" % re.escape(bad), 5):
        print("FAIL the log does not say the token was read again")
        fails += 1
    # Caught empty (a writer that truncates, then writes): the token read
    # before stays, said in the log, rather than requests going without.
    with open(bad, "w") as f:
        f.write("")
    time.sleep(1.2)
    r = cli("pull", "acme/model@main", "--socket", g.sock, "--timeout", "60", timeout=90)
    if not g.wait_for(r"origin token file .* changed but cannot be read \(it holds no token", 5):
        print("FAIL the log does not say the emptied token file was not taken")
        fails += 1
    # $HF_TOKEN comes before both.
    e = token_node("e", k, tmp, hub, ["--tracker", taddr],
                   {"HF_HOME": home, "HF_TOKEN_PATH": bad, "HF_TOKEN": "tok-ok"})
    if not e.wait_for(r"origin \S+ \(with a token from \$HF_TOKEN;", 5):
        print("FAIL the log does not say the token came from $HF_TOKEN")
        fails += 1
    r = cli("pull", "acme/model@main", "--socket", e.sock, "--timeout", "60", timeout=90)
    print(f"with $HF_TOKEN over the files: shoal pull exit {r.returncode}")
    if r.returncode != 0:
        print(f"FAIL the pull with $HF_TOKEN did not complete: {r.stderr.strip()}")
        fails += 1
    return shoalproc.finish(fails, [f_, g, e])


def case_origin_refused_give_back(tmp):
    """A node the origin refuses (no token for a private repo) gives back
    the origin leases it was granted at once, so a node with a token is
    granted their chunks without waiting for them to expire (10 min here),
    and then serves the refused node."""
    k = make_keys(tmp, ["a", "b"])
    hub = hubfix.Hub(HUB_DIR, tmp, "4M", "2", "9", tokens=["tok-ok"], private=True)
    trk, taddr = hubfix.start_tracker(TRACKER, k, extra=["--lease-ms", "600000"])
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_TOKEN="tok-ok")
    mf = os.path.join(tmp, "rel.manifest")
    r = subprocess.run([SHOAL, "publish", "acme/model@main", "--key", k("publisher"), "--out", mf,
                        "--tracker", taddr, "--identity", k("admin"), "--cred",
                        k("admin") + ".cred", "--quiet"], capture_output=True, text=True,
                       env=env, timeout=60)
    m = re.search(r"manifest id ([0-9a-f]{64})", r.stdout)
    if r.returncode != 0 or not m:
        print(f"FAIL publish: {r.stdout} {r.stderr}")
        return 1
    mid = m.group(1)
    tok = os.path.join(tmp, "hf-token")
    with open(tok, "w") as f:
        f.write("tok-ok\n")
    os.chmod(tok, 0o600)
    fails = 0
    a = node("a", k, tmp, hub, ["--tracker", taddr])
    b = node("b", k, tmp, hub, ["--tracker", taddr, "--hub-token-file", tok])
    pa = subprocess.Popen([SHOAL, "pull", mid, "--socket", a.sock, "--timeout", "90"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not a.wait_for(r"the origin refuses this node \(.*HTTP 401.*\): gave back [1-9]\d* "
                      r"origin lease\(s\) so that nodes the origin serves fetch them", 30):
        print("FAIL the refused node did not give its leases back")
        fails += 1
    if not trk.wait_for(r"node [0-9a-f]{16} gave back [1-9]\d* origin lease\(s\) of", 10):
        print("FAIL the tracker did not log the leases given back")
        fails += 1
    r = cli("pull", mid, "--socket", b.sock, "--timeout", "60", timeout=90)
    print(f"node with a token: exit {r.returncode} {r.stdout.strip()[-120:]!r}")
    if r.returncode != 0:
        print(f"FAIL the node with a token did not complete while the refused node's leases "
              f"(10 min) ran: {r.stderr.strip()[-300:]}")
        fails += 1
    try:
        out, err = pa.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        pa.kill()
        out, err = pa.communicate()
    print(f"refused node: exit {pa.returncode} {out.strip()[-120:]!r}")
    if pa.returncode != 0:
        print(f"FAIL the refused node did not complete from its peer: {err.strip()[-300:]}")
        fails += 1
    for n in (a, b):
        fails += hubfix.check_files(n, hub)
    st = cli("tracker-stats", "--tracker", taddr, "--key", k("admin"), "--cred",
             k("admin") + ".cred").stdout
    if not re.search(r"^shoal_tracker_leases_given_back_total [1-9]", st, re.M):
        print("FAIL tracker-stats does not count the leases given back")
        fails += 1
    return shoalproc.finish(fails, [a, b, trk], tail=25)


def case_deny_keys(tmp):
    """A leaked node key is revoked on running daemons and trackers by
    listing it in their --deny-keys file (no restart): its sessions close,
    a copy of it is refused by the seed and by the tracker although its
    credential is valid, and taking it off the list lets it in again."""
    k = make_keys(tmp, ["s", "x"])
    rnd = random.Random(21)
    repo, mf, mid = local_release(tmp, k, {"model.safetensors": rnd.randbytes(3 << 20)})
    deny = os.path.join(tmp, "deny.pub")
    with open(deny, "w") as f:
        f.write("# revoked node keys\n")
    trk, taddr = hubfix.start_tracker(TRACKER, k, extra=["--deny-keys", deny])
    fails = 0
    s = node("s", k, tmp, None, ["--tracker", taddr, "--manifest", mf, "--seed-dir", repo,
                                 "--deny-keys", deny])
    x = node("x", k, tmp, None, ["--tracker", taddr])
    r = cli("pull", mid, "--socket", x.sock, "--timeout", "60")
    if r.returncode != 0:
        print(f"FAIL node x did not pull before it was revoked: {r.stderr.strip()}")
        return fails + 1
    with open(k("x") + ".pub") as f, open(deny, "a") as g:
        g.write(f.read())
    for who, rx in ((s, r"peer \S+ closed: its node key is now revoked here \(deny-keys\)"),
                    (s, r"deny-keys read again: 1 revoked node key\(s\); [1-9]\d* session"),
                    (trk, r"closing \S+: node key revoked \(deny-keys\)"),
                    (trk, r"deny-keys read again: 1 revoked node key\(s\); [1-9]\d* "
                          r"connection\(s\) closed, 1 node\(s\) forgotten")):
        if not who.wait_for(rx, 15):
            print(f"FAIL no /{rx}/")
            fails += 1
    fails += shoalproc.stop_all([x])
    # A copy of the leaked key and credential, on another machine: the
    # tracker refuses it and the seed (dialled directly) too.
    y = node("x", k, tmp, None, ["--tracker", taddr, "--peer", s.addr],
             cache=os.path.join(tmp, "cache-stolen"))
    r = cli("pull", mid, "--socket", y.sock, "--timeout", "6")
    print(f"revoked copy: exit {r.returncode}")
    if r.returncode == 0:
        print("FAIL a revoked key pulled the release")
        fails += 1
    if not y.wait_for(r"refused our identity: node key revoked \(deny-keys\)", 10):
        print("FAIL the tracker did not refuse the revoked key's login")
        fails += 1
    if not s.wait_for(r"peer \S+ refused: its node key is revoked here \(deny-keys\)", 10):
        print("FAIL the seed did not refuse the revoked key")
        fails += 1
    # Taken off the list (the file removed): let in again.
    os.unlink(deny)
    if not s.wait_for(r"deny-keys read again: 0 revoked", 15):
        print("FAIL the seed did not read the removed file as no key")
        fails += 1
    r = cli("pull", mid, "--socket", y.sock, "--timeout", "60")
    if r.returncode != 0:
        print(f"FAIL the key, no longer revoked, could not pull: {r.stderr.strip()}")
        fails += 1
    return shoalproc.finish(fails, [s, y, trk], tail=25)


def case_hub_refused(tmp):
    k = make_keys(tmp, ["r"])
    hub = Hub(tmp, "4M")
    for repo, flag in (("acme/secret", "--private"), ("acme/gated", "--gated")):
        run(PY, os.path.join(HUB_DIR, "genrepo.py"), hub.root, repo, "--size", "1M",
            "--shards", "1", flag)
    trk, taddr = start_tracker(k)
    n = node("r", k, tmp, hub, ["--tracker", taddr])
    fails = 0
    fails += expect_refused(n, "acme/nosuch@main",
                            r"acme/nosuch@main not found on the Hub http://127\.0\.0\.1:\d+ "
                            r"\(HTTP 404 RepoNotFound.*not tried again")
    fails += expect_refused(n, "acme/model@nosuch",
                            r"acme/model@nosuch not found on the Hub .*RevisionNotFound: no such "
                            r"revision")
    fails += expect_refused(n, "acme/secret@main",
                            r"acme/secret@main refused by the Hub .*HTTP 401.*private or gated.*"
                            r"no token")
    fails += expect_refused(n, "acme/gated@main",
                            r"acme/gated@main refused by the Hub .*HTTP 401 GatedRepo")
    # Dropped, not retried: nothing is left for `shoal drop` to end.
    st = status_saying(n, "(no releases)", 10)
    if "(no releases)" not in st:
        print(f"FAIL pulls the Hub refused are still kept:\n{st}")
        fails += 1
    if not n.wait_for(r"pull dropped: acme/nosuch@main not found on the Hub", 1):
        print("FAIL the log does not say the pull was dropped")
        fails += 1
    r = cli("drop", "acme/model@nosuch", "--socket", n.sock)
    if r.returncode == 0:
        print(f"FAIL shoal drop found the refused pull still there: {r.stdout}")
        fails += 1
    return shoalproc.finish(fails, [n])


def case_hub_listing(tmp):
    k = make_keys(tmp, ["h"])
    hub = Hub(tmp, "2M")
    hub.add_faults([{"kind": "listing", "noblobs": True}])
    trk, taddr = start_tracker(k)
    fails = 0
    env = dict(os.environ, HF_ENDPOINT=hub.url)
    env.pop("HF_TOKEN", None)
    mf = os.path.join(tmp, "rel.manifest")
    r = subprocess.run([SHOAL, "publish", "acme/model@main", "--key", k("publisher"), "--out", mf,
                        "--quiet", "--tracker", taddr, "--identity", k("admin"), "--cred",
                        k("admin") + ".cred"], capture_output=True, text=True, env=env,
                       timeout=120)
    print(f"publish through a gateway ignoring ?blobs=true: exit {r.returncode}: "
          f"{(r.stdout + r.stderr).strip()[-300:]}")
    if r.returncode != 0 or f"{len(hub.files)} files" not in r.stdout:
        print("FAIL publish through a gateway ignoring ?blobs=true")
        fails += 1
    n = node("h", k, tmp, hub, ["--tracker", taddr])
    r = cli("pull", "acme/model@main", "--socket", n.sock, "--timeout", str(WAIT_S))
    last = (r.stdout.strip().splitlines() or [r.stderr.strip()])[-1]
    print(f"pull by branch through it: exit {r.returncode}: {last}")
    if r.returncode != 0 or f"complete: acme/model@{hub.commit}" not in r.stdout:
        print(f"FAIL pull by branch through a gateway ignoring ?blobs=true: {r.stderr}")
        fails += 1
    fails += hubfix.check_files(n, hub)
    return shoalproc.finish(fails, [n])


def case_loader_branch(tmp):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "node"))
    import shoal_loader
    k = make_keys(tmp, ["l"])
    hub = Hub(tmp, "4M")
    trk, taddr = start_tracker(k)
    publish(k, hub, tmp, "main", taddr)
    lsock = os.path.join(tmp, "loader.sock")
    n = node("l", k, tmp, hub, ["--tracker", taddr, "--loader-socket", lsock])
    fails = 0
    # Held already (pulled by commit); a loader names it by branch.
    r = cli("pull", "acme/model@" + hub.commit, "--socket", n.sock, "--timeout", str(WAIT_S))
    if r.returncode != 0:
        print(f"FAIL shoal pull by commit: exit {r.returncode}: {r.stderr}")
        fails += 1
    got = []
    try:
        with shoal_loader.Client(lsock, timeout=30) as c:
            for f in c.want("acme/model@main"):
                got.append(f.path)
                f.close()
    except (shoal_loader.LoaderError, TimeoutError, OSError) as e:
        print(f"FAIL a loader asking by branch: {e!r}")
        fails += 1
    print(f"files handed to a loader asking for acme/model@main: {len(got)} of {len(hub.files)}")
    if sorted(got) != sorted(hub.files):
        print("FAIL the loader did not get every file of main's commit")
        fails += 1
    # With the tracker gone the Hub still resolves the branch, and the
    # release it names is open here: no tracker is needed.
    trk.stop()
    got = []
    try:
        with shoal_loader.Client(lsock, timeout=20) as c:
            for f in c.want("acme/model@main"):
                got.append(f.path)
                f.close()
    except (shoal_loader.LoaderError, TimeoutError, OSError) as e:
        print(f"FAIL a loader asking by branch with no tracker up: {e!r}")
        fails += 1
    if sorted(got) != sorted(hub.files):
        print(f"FAIL with no tracker up the loader got {len(got)} of {len(hub.files)} files")
        fails += 1
    return shoalproc.finish(fails, [n])


def case_datasets(tmp):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "node"))
    import shoal_loader
    k = make_keys(tmp, ["d", "e"])
    hub = Hub(tmp, "4M")
    dc = run(PY, os.path.join(HUB_DIR, "genrepo.py"), hub.root, "acme/model", "--size", "3M",
             "--shards", "1", "--seed", "21", "--dataset").strip()
    with open(os.path.join(hub.root, "datasets", "acme", "model", "commits", dc,
                           ".files.json")) as f:
        dfiles = {e["path"]: e for e in json.load(f)["files"]}
    trk, taddr = start_tracker(k)
    publish(k, hub, tmp, "main", taddr)
    env = dict(os.environ, HF_ENDPOINT=hub.url)
    env.pop("HF_TOKEN", None)
    admin = ["--tracker", taddr, "--identity", k("admin"), "--cred", k("admin") + ".cred"]
    r = subprocess.run([SHOAL, "publish", "acme/model@main", "--dataset", "--key",
                        k("publisher"), "--quiet", *admin], capture_output=True, text=True,
                       env=env, timeout=60)
    print(f"shoal publish --dataset: exit {r.returncode}: {r.stdout.strip()} {r.stderr.strip()}")
    fails = 0
    if r.returncode != 0 or f"published datasets/acme/model@{dc}:" not in r.stdout:
        print("FAIL publish --dataset does not print the dataset's name datasets/acme/model@DC")
        fails += 1
    # The prefix says --dataset too; another prefix is a usage error.
    for name, rc, says in (("datasets/acme/model@main", 0, f"published datasets/acme/model@{dc}:"),
                           ("spaces/acme/model@main", 2, "'spaces/' is not a prefix shoal takes")):
        r = subprocess.run([SHOAL, "publish", name, "--key", k("publisher"), "--quiet", "--out",
                            os.path.join(tmp, "ds.manifest")], capture_output=True, text=True,
                           env=env, timeout=60)
        print(f"shoal publish {name}: exit {r.returncode}: {r.stdout.strip()} {r.stderr.strip()}")
        if r.returncode != rc or says not in r.stdout + r.stderr:
            print(f"FAIL shoal publish {name}: want exit {rc} saying {says!r}")
            fails += 1
    lsock = os.path.join(tmp, "loader.sock")
    n = node("d", k, tmp, hub, ["--tracker", taddr, "--loader-socket", lsock])
    for name, commit, kind, files in (("datasets/acme/model@main", dc, "datasets", dfiles),
                                      ("acme/model@main", hub.commit, "models", hub.files)):
        r = cli("pull", name, "--socket", n.sock, "--timeout", str(WAIT_S))
        print(f"shoal pull {name}: exit {r.returncode}: "
              f"{(r.stdout.strip().splitlines() or [''])[-1]} {r.stderr.strip()}")
        full = ("datasets/" if kind == "datasets" else "") + "acme/model@" + commit
        if r.returncode != 0 or f"complete: {full} " not in r.stdout:
            print(f"FAIL shoal pull {name} did not complete {full}")
            fails += 1
            continue
        folder = os.path.join(n.cache, kind + "--acme--model")
        for path, e in files.items():
            link = os.path.join(folder, "snapshots", commit, path)
            if not os.path.islink(link) or os.path.getsize(link) != e["size"]:
                print(f"FAIL {path} of {full} is not in {folder}'s snapshot")
                fails += 1
        try:
            ref = open(os.path.join(folder, "refs", "main")).read().strip()
        except OSError:
            ref = None
        if ref != commit:
            print(f"FAIL {kind}--acme--model/refs/main is {ref}, want {commit}")
            fails += 1
    st = cli("status", "--socket", n.sock).stdout
    print(st.strip())
    names = [ln.split()[0] for ln in st.splitlines()[1:] if ln.strip()]
    for want in (f"datasets/acme/model@{dc}", f"acme/model@{hub.commit}"):
        if want not in names:
            print(f"FAIL status does not list {want}")
            fails += 1
    got = []
    try:
        with shoal_loader.Client(lsock, timeout=30) as c:
            for f in c.want(f"datasets/acme/model@{dc}"):
                got.append(f.path)
                f.close()
    except (shoal_loader.LoaderError, TimeoutError, OSError) as e:
        print(f"FAIL a loader asking for the dataset by name: {e!r}")
        fails += 1
    print(f"files handed to a loader asking for datasets/acme/model@DC: {len(got)}")
    if sorted(got) != sorted(dfiles):
        print("FAIL the loader did not get the dataset's files")
        fails += 1
    # The model's name with the dataset's commit names no release here.
    r = cli("pull", "acme/model@" + dc, "--socket", n.sock, "--timeout", "4")
    print(f"shoal pull acme/model@DC: exit {r.returncode}")
    if r.returncode == 0 or "no tracker has answered with its manifest yet" not in r.stdout:
        print(f"FAIL acme/model@DC was taken for the dataset: {r.stdout}{r.stderr}")
        fails += 1
    cli("drop", "acme/model@" + dc, "--socket", n.sock)
    fails += expect_refused(n, "datasets/acme/nosuch@main",
                            r"^shoal pull: datasets/acme/nosuch@main not found on the Hub \S+ "
                            r"\(HTTP 404 RepoNotFound", 1)
    for bad in ("spaces/acme/model@main", "models/acme/model@main"):
        fails += expect_refused(n, bad, r"is not a prefix shoal takes: a model is named "
                                        r"org/name@rev, a dataset datasets/org/name@rev", 2)
    r = cli("rollout", "spaces/acme/model@" + dc, *admin)
    print(f"shoal rollout spaces/...: exit {r.returncode}: {r.stderr.strip()}")
    if r.returncode != 2 or "not a prefix shoal takes" not in r.stderr:
        print("FAIL shoal rollout spaces/... is not a usage error")
        fails += 1
    for args in ([], ["--status"]):
        r = cli("rollout", f"datasets/acme/model@{dc}", *args, *admin)
        print(f"shoal rollout datasets/acme/model@DC {' '.join(args)}: exit {r.returncode}: "
              f"{r.stdout.strip()} {r.stderr.strip()}")
        if r.returncode != 0 or f"datasets/acme/model@{dc}" not in r.stdout:
            print("FAIL the dataset's rollout was not taken by its name")
            fails += 1
    r = cli("drop", f"datasets/acme/model@{dc}", "--socket", n.sock)
    print(f"shoal drop datasets/acme/model@DC: exit {r.returncode}: {r.stdout.strip()}")
    if r.returncode != 0:
        print(f"FAIL shoal drop of the dataset: {r.stderr}")
        fails += 1
    # The rollout would bring it back at the next announce: that is the
    # tracker's to say; what is checked is that the model stayed.
    st = cli("status", "--socket", n.sock).stdout
    if f"acme/model@{hub.commit}" not in st:
        print(f"FAIL dropping the dataset took the model too:\n{st}")
        fails += 1
    # shoald --pull takes the same name.
    e = node("e", k, tmp, hub, ["--tracker", taddr, "--pull", "datasets/acme/model@main"])
    want = f"datasets/acme/model@{dc} complete"
    st = status_saying(e, want, tries=int(WAIT_S / 0.2))
    print(f"node e (--pull datasets/acme/model@main):\n{st.strip()}")
    if not re.search(r"^%s\s+complete\s" % re.escape(f"datasets/acme/model@{dc}"), st, re.M):
        print("FAIL shoald --pull datasets/acme/model@main did not complete the dataset")
        fails += 1
    return shoalproc.finish(fails, [n, e])


def case_waiting_reason(tmp):
    """A pull by manifest id that nobody can serve yet says why it waits:
    no tracker and no peer, then a peer that does not have it."""
    k = make_keys(tmp, ["w", "p"])
    n = node("w", k, tmp, None, ["--no-origin"])
    mid = "5a" * 32
    fails = 0
    want = "no tracker configured and no peer connected"
    r = cli("pull", mid, "--socket", n.sock, "--timeout", "3")
    print(r.stdout.strip().splitlines()[-1:])
    if r.returncode == 0 or want not in r.stdout:
        print(f"FAIL a by-id pull with nobody to ask shows no reason: {r.stdout}{r.stderr}")
        fails += 1
    p = node("p", k, tmp, None, ["--no-origin", "--peer", n.addr])
    want = "no tracker configured; none of 1 peer has offered its manifest"
    st = status_saying(n, want)
    print(st.strip())
    if want not in st:
        print("FAIL status does not say the one peer has not offered the manifest")
        fails += 1
    fails += shoalproc.stop_all([n, p])
    if fails:
        n.dump()
    return fails


def case_pull_refused(tmp):
    """A pull stuck on a refusal says so: a node whose credential another
    cluster signed (it starts, trusting that cluster's key, and the tracker
    refuses its login), and one whose --publisher-keys do not list the
    manifest's signer."""
    k = make_keys(tmp, ["a", "b"])
    shoalproc.make_keys(os.path.join(tmp, "keys"), SHOAL, ["rogue", "r"], ["r"],
                        cluster="rogue")
    hub = Hub(tmp, "4M")
    trk, taddr = start_tracker(k)
    publish(k, hub, tmp, "main", taddr)
    rel = f"acme/model@{hub.commit}"
    fails = 0
    cases = (
        # another cluster's credential: the tracker refuses r's login, every time.
        ("r", ["--cluster-keys", k("rogue") + ".pub"], None,
         f"tracker {taddr} refused this node's identity: "),
        # the admin's key is no publisher: the manifest comes and is refused.
        ("b", [], k("admin") + ".pub",
         "manifest refused: signed by an untrusted key (check --publisher-keys)"),
    )
    nodes = []
    for name, extra, pubs, want in cases:
        n = node(name, k, tmp, None, ["--no-origin", "--tracker", taddr, *extra], publishers=pubs)
        nodes.append(n)
        r = cli("pull", rel, "--socket", n.sock, "--timeout", "1")
        st = status_saying(n, want)
        print(f"{name}: {st.strip()}")
        if want not in st:
            print(f"FAIL shoal status does not say \"{want}\"")
            fails += 1
        r = cli("pull", rel, "--socket", n.sock, "--timeout", "2")
        last = (r.stdout.strip().splitlines() or [""])[-1]
        print(f"{name}: shoal pull: exit {r.returncode}: {last}")
        if r.returncode == 0 or want not in r.stdout:
            print(f"FAIL shoal pull does not say \"{want}\"")
            fails += 1
    fails += shoalproc.stop_all(nodes)
    if fails:
        for n in nodes:
            n.dump(tail=20)
    return fails


def state_file(n):
    """The state file node |n| logged at start (None if it did not)."""
    m = n.wait_for(r"state file (\S+): \d+ releases? reopened", 5)
    return m.group(1) if m else None


def status_lists(n, commit):
    return ("acme/model@" + commit) in cli("status", "--socket", n.sock).stdout


def case_keep_seed(tmp):
    k = make_keys(tmp, ["s", "p"])
    hub = Hub(tmp, "4M")
    trk, taddr = start_tracker(k)
    _, mid = publish(k, hub, tmp, "main", taddr)
    fails = 0
    n = node("s", k, tmp, hub, ["--tracker", taddr])
    r = cli("pull", "acme/model@main", "--socket", n.sock, "--timeout", str(WAIT_S))
    if r.returncode != 0:
        print(f"FAIL shoal pull acme/model@main: exit {r.returncode}: {r.stderr}")
        return 1
    path = state_file(n)
    if n.stop() != 0:
        print("FAIL the node did not stop cleanly")
        fails += 1
    text = open(path).read() if path and os.path.exists(path) else ""
    print(f"state file {path}:\n{text.strip()}")
    if not re.search(r"^%s model acme/model@%s main complete /\S+/\.shoal/%s\.manifest$"
                     % (mid, hub.commit, mid), text, re.M):
        print("FAIL the state file does not list the release (id, repo@commit, branch main, "
              "complete, its manifest)")
        fails += 1
    # Nothing from the Hub or a tracker from here on: the release must come
    # back from the cache and the state file alone.
    hub.proc.stop()
    trk.stop()
    n2 = node("s", k, tmp, hub)
    if not n2.wait_for(r"state file \S+: 1 release reopened, 0 dropped", 10):
        print("FAIL the restarted node did not say it reopened one release")
        fails += 1
    if not status_lists(n2, hub.commit):
        print("FAIL the restarted node's status does not list the release")
        fails += 1
    p = node("p", k, tmp, None, ["--no-origin", "--peer", n2.addr])
    t0 = time.monotonic()
    r = cli("pull", mid, "--socket", p.sock, "--timeout", "60", timeout=90)
    print(f"second node's pull by manifest id from the restarted node: exit {r.returncode} "
          f"in {time.monotonic() - t0:.1f} s")
    if r.returncode != 0:
        print(f"FAIL the restarted node does not seed the release: {r.stderr.strip()}")
        fails += 1
    fails += shoalproc.stop_all([p, n2])
    if fails:
        n.dump(tail=30)
        n2.dump(tail=40)
        p.dump(tail=40)
    return fails


def slow_hub(hub, bps):
    hub.add_faults([{"kind": "slow", "bps": bps, "match": "/cdn/"}])


def case_keep_resume(tmp):
    k = make_keys(tmp, ["r"])
    hub = Hub(tmp, "16M", shards="2")
    slow_hub(hub, 1500000)
    trk, taddr = start_tracker(k)
    _, mid = publish(k, hub, tmp, "main", taddr)
    fails = 0
    n = node("r", k, tmp, hub, ["--tracker", taddr])
    first = subprocess.Popen([SHOAL, "pull", mid, "--socket", n.sock, "--timeout", "60"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pct = catch_mid_download(n, hub.commit, low=10, high=85)
    if pct is None:
        first.kill()
        first.wait()
        n.dump()
        return 1
    n.p.kill()
    n.p.wait()
    first.wait(timeout=30)
    print(f"killed the node (SIGKILL) at {pct:.1f}%")
    slow_hub(hub, 20000000)
    n2 = node("r", k, tmp, hub, ["--tracker", taddr])
    if not n2.wait_for(r"state file \S+: 1 release reopened", 10):
        print("FAIL the restarted node did not reopen the release it was pulling")
        fails += 1
    # Nobody asks again: the node must finish on its own.
    done = n2.wait_for(r"release [0-9a-f]{16} \(acme/model@%s\) complete" % hub.commit, 60)
    print(f"completed after the restart, unasked: {bool(done)}")
    if not done:
        print("FAIL the interrupted pull did not resume after the restart")
        fails += 1
    elif release_pct(n2, hub.commit) != 100.0:
        print("FAIL status does not show the release complete")
        fails += 1
    fails += shoalproc.stop_all([n2])
    if fails:
        n.dump(tail=30)
        n2.dump(tail=60)
    return fails


def case_keep_leftovers(tmp):
    """An unfinished release dropped at start (its manifest deleted) leaves
    no partial file behind; one still listed keeps them and resumes."""
    k = make_keys(tmp, ["l"])
    hub = Hub(tmp, "16M", shards="2")
    slow_hub(hub, 1000000)
    trk, taddr = start_tracker(k)
    _, mid = publish(k, hub, tmp, "main", taddr)
    fails = 0
    n = node("l", k, tmp, hub, ["--tracker", taddr])
    first = subprocess.Popen([SHOAL, "pull", mid, "--socket", n.sock, "--timeout", "60"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pct = catch_mid_download(n, hub.commit, low=10, high=85)
    n.p.kill()
    n.p.wait()
    first.wait(timeout=30)
    if pct is None:
        n.dump()
        return 1
    print(f"killed the node (SIGKILL) at {pct:.1f}%")
    repo = os.path.join(n.cache, "models--acme--model")
    meta = os.path.join(repo, ".shoal")

    def ours():
        return sorted(f for f in os.listdir(meta)
                      if f.endswith(".incomplete") or f.endswith(".state"))
    before = ours()
    # Not shoald's, whatever their names say: never touched.
    foreign = [os.path.join(meta, "notes.incomplete"), os.path.join(repo, "blobs", "a" * 64 +
                                                                   ".incomplete")]
    for f in foreign:
        with open(f, "w") as fh:
            fh.write("not shoald's\n")
    os.mkdir(os.path.join(meta, "b" * 64 + ".incomplete"))
    print(f"left by the kill: {before}")
    if not any(f.endswith(".incomplete") for f in before):
        print("FAIL no partial file to look after (the test is wrong)")
        return 1
    # Still listed in the state file: it resumes, its files stay.
    n2 = node("l", k, tmp, hub, ["--tracker", taddr])
    if not n2.wait_for(r"state file \S+: 1 release reopened, 0 dropped", 10):
        print("FAIL the restarted node did not reopen the release it was pulling")
        fails += 1
    # Logged once start-up (the sweep too) is over.
    n2.wait_for(r"shoald node \S+ zone", 10)
    n2.p.kill()
    n2.p.wait()
    kept = ours()
    if n2.wait_for(r"removed \d+ partial file", 0.1) or \
            not set(f for f in before if f.endswith(".incomplete")) <= set(kept):
        print(f"FAIL a restart removed partial files of a release still listed: {kept}")
        fails += 1
    # Its manifest deleted by hand: dropped at start, and its files go too.
    os.unlink(os.path.join(meta, mid + ".manifest"))
    n3 = node("l", k, tmp, hub)
    if not n3.wait_for(r"state: release acme/model@\w+ \(\w+\) not reopened, dropped from "
                       r"the state: its manifest \S+: gone", 10):
        print("FAIL the release whose manifest is gone was not dropped at start")
        fails += 1
    m = n3.wait_for(r"removed (\d+) partial files?, \d+ progress sidecars? and \d+ kept "
                    r"manifests? \(([\d.]+) MiB\) of releases no longer open or listed in the "
                    r"state file", 5)
    left = ours()
    print(f"log: {m.group(0) if m else 'nothing about partial files'}; left: {left}")
    if not m or float(m.group(2)) < 16 or left != ["b" * 64 + ".incomplete", "notes.incomplete"]:
        print("FAIL the partial files of the release dropped at start were not removed (and "
              "logged with their size)")
        fails += 1
    if not all(os.path.exists(f) for f in foreign):
        print("FAIL a file that is not shoald's was removed")
        fails += 1
    fails += shoalproc.stop_all([n3])
    if fails:
        n.dump(tail=30)
        n2.dump(tail=30)
        n3.dump(tail=30)
    return fails


def case_keep_drop(tmp):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "node"))
    import shoal_loader
    import threading
    k = make_keys(tmp, ["d"])
    hub = Hub(tmp, "16M", shards="2")
    slow_hub(hub, 1000000)
    trk, taddr = start_tracker(k)
    _, mid = publish(k, hub, tmp, "main", taddr)
    rel = "acme/model@" + hub.commit
    lsock = os.path.join(tmp, "loader.sock")
    fails = 0
    n = node("d", k, tmp, hub, ["--tracker", taddr, "--loader-socket", lsock])
    follower = subprocess.Popen([SHOAL, "pull", rel, "--socket", n.sock, "--timeout", "60"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pct = catch_mid_download(n, hub.commit, low=5, high=90)
    if pct is None:
        follower.kill()
        follower.communicate()
        n.dump()
        return 1
    got = {"err": None, "files": 0}

    def loader():
        try:
            with shoal_loader.Client(lsock, timeout=30) as c:
                for f in c.want(rel):
                    got["files"] += 1
                    f.close()
        except Exception as e:  # noqa: BLE001 - any outcome is recorded
            got["err"] = e
    lt = threading.Thread(target=loader, daemon=True)
    lt.start()
    if not n.wait_for(r"loader pid \d+ uid \d+: ", 10):
        print("FAIL the loader did not connect")
        fails += 1
    r = cli("drop", rel, "--socket", n.sock)
    print(f"shoal drop {rel}: exit {r.returncode}\n{r.stdout.strip()}{r.stderr.strip()}")
    if r.returncode != 0 or "huggingface-cli delete-cache" not in r.stdout \
            or "models--acme--model" not in r.stdout:
        print("FAIL shoal drop did not succeed saying where the files stay and how to "
              "delete them")
        fails += 1
    lt.join(15)
    print(f"loader: {got['files']} files, then {got['err']!r}")
    if lt.is_alive() or not isinstance(got["err"], shoal_loader.LoaderError) \
            or "dropped" not in str(got["err"]):
        print("FAIL the loader waiting for the dropped release did not get an error")
        fails += 1
    try:
        out, err = follower.communicate(timeout=15)
        print(f"the following `shoal pull`: exit {follower.returncode}: {err.strip()}")
        if follower.returncode != 1:
            print("FAIL the `shoal pull` following the dropped release did not fail")
            fails += 1
    except subprocess.TimeoutExpired:
        follower.kill()
        follower.communicate()
        print("FAIL the `shoal pull` following the dropped release hangs")
        fails += 1
    if status_lists(n, hub.commit):
        print("FAIL status still lists the dropped release")
        fails += 1
    r = cli("drop", rel, "--socket", n.sock)
    print(f"second drop: exit {r.returncode}: {r.stderr.strip()}")
    if r.returncode != 1 or "neither open here nor being pulled" not in r.stderr:
        print("FAIL a drop of a release that is not here must exit 1 saying so")
        fails += 1
    if not glob.glob(os.path.join(n.cache, "models--acme--model", ".shoal", "*.manifest")):
        print("FAIL the dropped release's files were removed from the cache")
        fails += 1
    path = state_file(n)
    if n.stop() != 0:
        print("FAIL the node did not stop cleanly after the drop")
        fails += 1
    text = open(path).read() if path and os.path.exists(path) else None
    if text is None or mid in text:
        print(f"FAIL the state file still lists the dropped release:\n{text}")
        fails += 1
    n2 = node("d", k, tmp, hub, ["--tracker", taddr])
    if not n2.wait_for(r"state file \S+: 0 releases reopened", 10):
        print("FAIL the restarted node's log does not say it reopened nothing")
        fails += 1
    time.sleep(1)
    if status_lists(n2, hub.commit):
        print("FAIL the dropped release was reopened after a restart")
        fails += 1
    # Dropped is not banned: asked for again, it resumes from what is held.
    slow_hub(hub, 20000000)
    r = cli("pull", rel, "--socket", n2.sock, "--timeout", str(WAIT_S))
    if r.returncode != 0:
        print(f"FAIL pulling the dropped release again: exit {r.returncode}: {r.stderr}")
        fails += 1
    fails += shoalproc.stop_all([n2])
    if fails:
        n.dump(tail=60)
        n2.dump(tail=40)
    return fails


def case_keep_corrupt(tmp):
    k = make_keys(tmp, ["c"])
    fails = 0
    n = node("c", k, tmp, None)
    path = state_file(n)
    n.stop()
    if not path:
        print("FAIL the node did not log its state file")
        n.dump()
        return 1
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\x00\xffnot a state file\n" * 3)
    n2 = node("c", k, tmp, None)
    m = n2.wait_for(r"state file %s ignored: (.*)" % re.escape(path), 5)
    print(m.group(0) if m else "no report of the corrupt state file")
    if not m or "not a shoald state file" not in m.group(1):
        print("FAIL a corrupt state file was not reported clearly")
        fails += 1
    if not os.path.exists(path + ".bad"):
        print("FAIL the corrupt state file was not kept aside as .bad")
        fails += 1
    r = cli("status", "--socket", n2.sock)
    if r.returncode != 0:
        print(f"FAIL the daemon does not answer after a corrupt state file: {r.stderr}")
        fails += 1
    fails += shoalproc.stop_all([n2])
    # A good header with one bad line: the line is named, the rest loads
    # (here: nothing else, so the one release listed is dropped, as its
    # manifest is not in this cache).
    with open(path) as f:
        header = f.readline()
    with open(path, "w") as f:
        f.write(header + "this line is wrong\n" + "ab" * 32 + " model acme/model@" + "cd" * 20
                + " - complete /nonexistent/x.manifest\n")
    n3 = node("c", k, tmp, None)
    if not n3.wait_for(r"state file \S+: 1 bad lines skipped, the first: line 2: expected 6 "
                       r"fields", 5):
        print("FAIL a bad line is not named")
        fails += 1
    if not n3.wait_for(r"state: release acme/model@(cd)+ \(abababababababab\) not reopened, "
                       r"dropped from the state: its manifest /nonexistent/x\.manifest: gone", 5):
        print("FAIL a listed release whose manifest is gone is not reported")
        fails += 1
    fails += shoalproc.stop_all([n3])
    if fails:
        n2.dump()
        n3.dump()
    return fails


def three_releases(tmp, k, seed):
    """Three 1 MiB releases org/m0..m2 with signed manifests, and a folder
    holding all their files (for a seed's --seed-dir): (folder, [(manifest
    file, manifest id, name@commit)])."""
    rnd = random.Random(seed)
    both = os.path.join(tmp, "all")
    rels = []
    for i in range(3):
        files = {f"w{i}.safetensors": rnd.randbytes(1 << 20)}
        repo = os.path.join(tmp, f"repo{i}")
        shoalproc.write_files(repo, files)
        shoalproc.write_files(both, files)
        mf = os.path.join(tmp, f"r{i}.manifest")
        commit = "%x" % (i + 1) * 40
        mid = shoalproc.build_manifest(SHOAL, repo, k, mf, repo_id=f"org/m{i}", commit=commit,
                                       extra=("--min", "64K", "--avg", "256K", "--max", "1M"))
        rels.append((mf, mid, f"org/m{i}@{commit}"))
    return both, rels


def case_max_releases(tmp):
    """With --max-releases 2, opening a third release closes the complete
    one used least recently; asked for again, it reopens from the cache."""
    k = make_keys(tmp, ["s", "m"])
    both, rels = three_releases(tmp, k, 7)
    seed = node("s", k, tmp, None, ["--no-origin", "--seed-dir", both,
                                    *[a for mf, _, _ in rels for a in ("--manifest", mf)]])
    m = node("m", k, tmp, None, ["--no-origin", "--peer", seed.addr, "--max-releases", "2"])
    fails = 0

    def pull(i, want=r"complete: "):
        r = cli("pull", rels[i][1], "--socket", m.sock, "--timeout", "60")
        if r.returncode != 0 or not re.search(want, r.stdout):
            print(f"FAIL pull of {rels[i][2]}: exit {r.returncode}: {r.stdout}{r.stderr}")
            return 1
        return 0

    fails += pull(0) + pull(1) + pull(2)
    if not m.wait_for(r"release \S+ \(%s\) closed to make room for %s: max-releases \(2\)"
                      % (re.escape(rels[0][2]), re.escape(rels[2][2])), 10):
        print("FAIL opening a third release did not close the least recently used one")
        fails += 1
    st = cli("status", "--socket", m.sock).stdout
    print(st.strip())
    if rels[0][2] in st or rels[1][2] not in st or rels[2][2] not in st:
        print("FAIL status should list the last two releases only")
        fails += 1
    # Reopened from the cache: nothing comes from peers again.
    fails += pull(0, r"complete: .* 0 bytes from peers")
    if not m.wait_for(r"\(%s\) closed to make room for %s" % (re.escape(rels[1][2]),
                                                                re.escape(rels[0][2])), 10):
        print("FAIL reopening the first release did not close the next least recently used")
        fails += 1
    # Restarted with --max-releases 1 and the third release configured: the
    # state file lists the first and the third, both complete. The one the
    # configuration names keeps the slot; the listed one is left closed
    # (before: reopening the listed one closed the configured one, "least
    # recently used" in a tie at start).
    fails += shoalproc.stop_all([m])
    m = node("m", k, tmp, None, ["--no-origin", "--peer", seed.addr, "--max-releases", "1",
                                 "--manifest", rels[2][0]])
    if not m.wait_for(r"state: release %s \(\S+\) not reopened, dropped from the state: "
                      r"max-releases reached \(1 open\): 0 named by a tracker rollout, 0 "
                      r"sending files to a loader, 0 still pulling, 1 complete"
                      % re.escape(rels[0][2]), 20):
        print("FAIL the listed release was not the one left closed at the restart, saying why")
        fails += 1
    st = cli("status", "--socket", m.sock).stdout
    print(st.strip())
    closed = [ln for ln in m.lines if "closed to make room" in ln]
    if closed or rels[2][2] not in st or rels[0][2] in st:
        print("FAIL the configured release did not keep its slot at the restart:\n" +
              "\n".join(closed))
        fails += 1
    fails += shoalproc.stop_all([m, seed])
    if fails:
        m.dump()
    return fails


def case_drop_stalled(tmp):
    k = make_keys(tmp, ["d"])
    hub = Hub(tmp, "8M", shards="2")
    trk, taddr = start_tracker(k)
    publish(k, hub, tmp, "main", taddr)
    rel = "acme/model@" + hub.commit
    hub.add_faults([{"kind": "stall", "seconds": 60, "match": "/cdn/", "times": -1}])
    fails = 0
    n = node("d", k, tmp, hub, ["--tracker", taddr])
    follower = subprocess.Popen([SHOAL, "pull", rel, "--socket", n.sock, "--timeout", "60"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stalled = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not stalled:
        stalled = any("/cdn/" in e.get("path", "") for e in hub.stats().get("log", []))
        time.sleep(0.2)
    if not stalled:
        print("FAIL the node never asked the stalled stand-in for a file")
        follower.kill()
        follower.communicate()
        n.dump(tail=40)
        return 1
    time.sleep(0.5)
    r = cli("drop", rel, "--socket", n.sock)
    t_drop = time.monotonic()
    print(f"shoal drop {rel}: exit {r.returncode}")
    if r.returncode != 0:
        print(f"FAIL shoal drop: {r.stderr.strip()}")
        fails += 1
    _, ferr = follower.communicate(timeout=15)
    # The pull that followed it says why it ended.
    print(f"the following pull: exit {follower.returncode}: {ferr.strip()}")
    if follower.returncode == 0 or "dropped on this node" not in ferr:
        print("FAIL the pull following the dropped release did not say it was dropped")
        fails += 1
    # Its unfinished files (preallocated to full size, where delete-cache
    # never looks) go once it has closed.
    m = n.wait_for(r"dropped by the control socket: .* (\d+) unfinished \(([^)]*)\) are removed", 5)
    parts = os.path.join(n.cache, "models--acme--model", ".shoal")
    left = None
    while time.monotonic() - t_drop < 10:
        left = [f for f in os.listdir(parts) if f.endswith(".incomplete")]
        if not left:
            break
        time.sleep(0.2)
    print(f"drop: {m.group(0) if m else 'no log line'}; partial files left: {left}")
    if not m or int(m.group(1)) == 0 or left:
        print("FAIL the dropped release's unfinished files were not removed")
        fails += 1
    again = None
    while time.monotonic() - t_drop < 10:
        again = cli("pull", rel, "--socket", n.sock, "--timeout", "1", timeout=20)
        if "still closing" not in again.stderr:
            break
        time.sleep(0.2)
    took = time.monotonic() - t_drop
    print(f"pulled again {took:.1f} s after the drop: exit {again.returncode}: "
          f"{again.stderr.strip()}")
    if "still closing" in again.stderr:
        print("FAIL the dropped release was still closing 10 s after the drop: its stalled "
              "origin requests were not ended (they would hold it for the 30 s stall "
              "time-out)")
        fails += 1
    return shoalproc.finish(fails, [n], tail=40)


def case_publish_retry(tmp):
    k = make_keys(tmp, ["p"])
    hub = Hub(tmp, "4M", shards="2")
    trk, taddr = start_tracker(k)
    publish(k, hub, tmp, "main", taddr)
    rel = "acme/model@" + hub.commit
    n = node("p", k, tmp, hub, ["--tracker", taddr])
    blocker = os.path.join(n.cache, "models--acme--model", "snapshots", hub.commit,
                           "config.json")
    os.makedirs(os.path.join(blocker, "in-the-way"))
    fails = 0
    follower = subprocess.Popen([SHOAL, "pull", rel, "--socket", n.sock, "--timeout", "60"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "not yet in the cache" not in seen:
        seen = cli("status", "--socket", n.sock).stdout
        time.sleep(0.3)
    print(f"status while the link is blocked:\n{seen.strip()}")
    if "verified, but not yet in the cache" not in seen or "config.json" not in seen:
        print("FAIL status does not say the verified release could not be published, and why")
        fails += 1
    if not n.wait_for(r"publishing into the cache failed again: .*config\.json.*trying again "
                      r"in \d+ s", 20):
        print("FAIL the log does not say publishing failed and will be tried again")
        fails += 1
    t0 = time.monotonic()
    os.rename(blocker, os.path.join(tmp, "moved-away"))
    try:
        out, err = follower.communicate(timeout=60)
        print(f"shoal pull after the blocker went: exit {follower.returncode} in "
              f"{time.monotonic() - t0:.1f} s")
        if follower.returncode != 0:
            print(f"FAIL shoal pull did not complete once the cache had room: {err.strip()}")
            fails += 1
    except subprocess.TimeoutExpired:
        follower.kill()
        follower.communicate()
        print("FAIL shoal pull still waits 60 s after the blocker went")
        fails += 1
    if not n.wait_for(r"file\(s\) published into the cache on a new try", 5):
        print("FAIL the log does not say the new try published the file")
        fails += 1
    fails += hubfix.check_files(n, hub)
    return shoalproc.finish(fails, [n], tail=40)


def case_origin_bad(tmp):
    k = make_keys(tmp, ["b"])
    hub = Hub(tmp, "4M", shards="2")
    mf, _ = publish(k, hub, tmp, "main")
    shard = "model-00001-of-00002.safetensors"
    flip = [{"kind": "flip", "file": shard, "offset": 1000, "times": -1}]
    hub.add_faults(flip)
    fails = 0
    n = node("b", k, tmp, hub, ["--manifest", mf])
    if not n.wait_for(r"chunk \d+ from the origin not stored: .*do not match", 20):
        print("FAIL the node did not report the origin's bad bytes")
        n.dump(tail=30)
        return 1
    # `shoal status` says why the pull does not move, and gives no rate or
    # ETA while nothing is stored (before: no reason, and an ETA of seconds).
    deadline, line = time.monotonic() + 20, None
    while time.monotonic() < deadline:
        st = cli("status", "--socket", n.sock).stdout
        line = re.search(r"pulling .* 0 B/s .*--:--\n  origin's bytes for chunk \d+ do not "
                         r"match the manifest \(\d+ times?; not stored, asked again later\)",
                         st)
        if line:
            break
        time.sleep(0.5)
    print(st)
    if not line:
        print("FAIL `shoal status` does not give the origin's bad bytes as the reason, or "
              "still shows a rate or an ETA")
        fails += 1
    hub.reset()  # also clears the fault: re-add it, then count for 6 s
    hub.add_faults(flip)
    time.sleep(6)
    asked = sum(1 for e in hub.stats().get("log", []) if shard in e.get("path", "")
                and "/cdn/" in e.get("path", ""))
    print(f"requests for the bad shard over 6 s: {asked}")
    if asked > 10:
        print("FAIL the node asks the origin again and again for the chunk it just got wrong")
        fails += 1
    hub.reset()
    r = cli("pull", f"acme/model@{hub.commit}", "--socket", n.sock, "--timeout", "90",
            timeout=120)
    print(f"pull once the stand-in is right again: exit {r.returncode}")
    if r.returncode != 0:
        print(f"FAIL the pull did not complete: {r.stderr.strip()}")
        fails += 1
    return shoalproc.finish(fails, [n], tail=40)


def fetch_fail_lines(n):
    return len(re.findall(r"origin fetch of chunks \d+\.\.\d+ failed", n.log()))


def refused_window(n, count, what, max_asks=20, max_lines=3, window=5):
    """Fails (returns 1) when over |window| s node |n| asks the origin more
    than |max_asks| times (|count|() says how many so far) or logs more
    than |max_lines| failed fetches."""
    a0, l0 = count(), fetch_fail_lines(n)
    time.sleep(window)
    asks, lines = count() - a0, fetch_fail_lines(n) - l0
    print(f"{what}: over {window} s, {asks} requests to the origin, {lines} failed-fetch lines")
    if asks > max_asks or lines > max_lines:
        print(f"FAIL {what}: the node asks the origin again and again (want at most "
              f"{max_asks} requests and {max_lines} lines)")
        return 1
    return 0


def case_origin_refused(tmp):
    os.environ.pop("CURL_CA_BUNDLE", None)
    os.environ.pop("SSL_CERT_FILE", None)
    certs = os.path.join(tmp, "tls")
    run(PY, os.path.join(HUB_DIR, "tlscert.py"), certs)
    k = make_keys(tmp, ["r", "t"])
    hub = hubfix.Hub(HUB_DIR, tmp, "4M", "2", "9", tls=certs)
    mf, mid = publish(k, hub, tmp, "main")
    fails = 0
    deny = [{"kind": "status", "code": 403, "times": -1, "match": "/cdn/"}]
    hub.reset()
    hub.add_faults(deny)
    n = node("r", k, tmp, hub, ["--manifest", mf])
    if not n.wait_for(r"origin fetch of chunks \d+\.\.\d+ failed: .*HTTP 403", 20):
        print("FAIL the node did not log the refused fetch")
        n.dump(tail=30)
        return 1
    # Holds of 0.5, 1, 2, 4 s: at most 4 tries of its 2 shards in 5 s.
    fails += refused_window(n, lambda: hub.stats()["requests"]["cdn"], "HTTP 403", max_asks=10)
    t = node("t", k, tmp, None, ["--manifest", mf, "--hub-endpoint", hub.https_url])
    if not t.wait_for(r"origin fetch of chunks \d+\.\.\d+ failed: .*certificate", 20):
        print("FAIL the node did not log the untrusted certificate")
        t.dump(tail=30)
        return fails + 1
    # Every file fails here: 5 files a try.
    fails += refused_window(t, lambda: hub.stats()["tls_hellos"], "untrusted TLS", max_asks=25)
    st = cli("status", "--socket", t.sock).stdout
    print(st.strip())
    if "TLS certificate not trusted" not in st:
        print("FAIL shoal status does not show the certificate error")
        fails += 1
    hub.reset()
    r = cli("pull", mid, "--socket", n.sock, "--timeout", "90", timeout=120)
    print(f"pull once the stand-in answers again: exit {r.returncode}")
    if r.returncode != 0:
        print(f"FAIL the pull did not complete: {r.stderr.strip()}")
        fails += 1
    return shoalproc.finish(fails, [n, t], tail=40)


def case_origin_leased(tmp):
    os.environ.pop("CURL_CA_BUNDLE", None)
    os.environ.pop("SSL_CERT_FILE", None)
    certs = os.path.join(tmp, "tls")
    run(PY, os.path.join(HUB_DIR, "tlscert.py"), certs)
    k = make_keys(tmp, ["a", "b"])
    hub = hubfix.Hub(HUB_DIR, tmp, "4M", "2", "9", tls=certs)
    # Leases of 10 min: node a, which does not trust the certificate,
    # gives back what it is granted (K17), so b is not kept waiting.
    tr, addr = hubfix.start_tracker(TRACKER, k, extra=["--lease-ms", "600000"])
    mf, mid = publish(k, hub, tmp, "main", tracker=addr)
    fails = 0
    common = ["--tracker", addr, "--hub-endpoint", hub.https_url, "--origin-delay-ms", "0"]
    a = node("a", k, tmp, None, [*common, "--manifest", mf])
    if not a.wait_for(r"origin fetch of chunks \d+\.\.\d+ failed: .*certificate", 20):
        print("FAIL node a did not log the untrusted certificate")
        a.dump(tail=30)
        tr.stop()
        return 1
    fails += refused_window(a, lambda: hub.stats()["tls_hellos"], "leased, untrusted TLS",
                            max_asks=25)
    b = node("b", k, tmp, None, [*common, "--hub-ca", os.path.join(certs, "ca.pem")])
    r = cli("pull", mid, "--socket", b.sock, "--timeout", "90", timeout=120)
    print("b:", (r.stdout.strip().splitlines() or [r.stderr])[-1])
    if r.returncode != 0:
        print(f"FAIL node b trusting the CA did not complete: {r.stderr.strip()}")
        fails += 1
    fails += hubfix.check_files(b, hub)
    fails = shoalproc.finish(fails, [a, b], tail=40)
    tr.stop()
    return fails


def case_fetcher_gone(tmp):
    """Two origin fetchers leave mid-rollout: one is killed (kill -9), one
    shuts down (SIGTERM), each holding origin leases of 10 min on a slow
    gateway. The tracker forgets the killed one --gone-ms (1 s) after its
    connection closed and the stopped one at once (its BYE), saying so, and a
    third node pulls the release to the end in well under the leases' 10 min
    or the node TTL's 2 (before, it waited for them)."""
    k = make_keys(tmp, ["a", "b", "c"])
    hub = Hub(tmp, "4M", shards="2")
    tr, addr = hubfix.start_tracker(TRACKER, k, extra=["--lease-ms", "600000", "--node-ttl-ms",
                                                       "120000", "--gone-ms", "1000"])
    mf, mid = publish(k, hub, tmp, "main", tracker=addr)
    hub.reset()
    # Each file request at 256 KiB/s: a lease's fetch takes seconds.
    hub.add_faults([{"kind": "slow", "bps": 262144, "times": -1, "match": "/cdn/"}])
    fails = 0
    common = ["--tracker", addr, "--origin-delay-ms", "0", "--manifest", mf]
    a = node("a", k, tmp, hub, common)
    c = node("c", k, tmp, hub, common)
    # Both fetching under their leases (every node is a fetcher: min-fetchers).
    end = time.monotonic() + 20
    while time.monotonic() < end and \
            sum(1 for e in hub.stats()["log"] if "/cdn/" in e.get("path", "")) < 2:
        time.sleep(0.2)
    time.sleep(1)
    a.p.kill()
    a.p.wait(10)
    if c.stop() != 0:
        print("FAIL node c did not shut down cleanly")
        fails += 1
    if not tr.wait_for(r"node \S+ left \(shutting down\): forgotten at once", 10):
        print("FAIL the tracker did not forget the node that said it was leaving")
        fails += 1
    if not tr.wait_for(r"node \S+ gone: no connection for 1000 ms", 10):
        print("FAIL the tracker did not forget the killed node 1 s after its connection closed")
        fails += 1
    st = cli("tracker-stats", "--tracker", addr, "--key", k("admin"), "--cred",
             k("admin") + ".cred").stdout
    left, gone = (tracker_metric(st, "shoal_tracker_nodes_left_total"),
                  tracker_metric(st, "shoal_tracker_nodes_gone_total"))
    print(f"tracker-stats: nodes left {left}, gone {gone}")
    if left != 1 or gone != 1:
        print("FAIL tracker-stats does not count one node left and one gone")
        fails += 1
    b = node("b", k, tmp, hub, ["--tracker", addr, "--origin-delay-ms", "0"])
    r = cli("pull", mid, "--socket", b.sock, "--timeout", "45", timeout=90)
    print("b:", (r.stdout.strip().splitlines() or [r.stderr])[-1])
    if r.returncode != 0:
        print(f"FAIL node b did not complete while the leases of the nodes gone would have "
              f"held: {r.stderr.strip()}")
        fails += 1
    fails += hubfix.check_files(b, hub)
    fails = shoalproc.finish(fails, [b], tail=40)
    if fails:
        tr.dump()
    tr.stop()
    return fails


def case_cut_off(tmp):
    """A node cut off from every holder of the release: a and b, one peer
    each (--max-peers 1), hold each other's only slot, so c, dialling
    them, is refused and has no peer. The tracker credits every chunk as
    fetched by a, and a is complete: c waited for ever (the fetched-credit
    TTL frees nothing while a node is complete). Its lease requests flag
    each chunk missing and unoffered, and starved (no chunk from a peer
    for --starved-ms, 1 s here), and once a's fetch is --lease-ms (3 s) old
    the tracker leases it again, to c, which completes from the origin."""
    k = make_keys(tmp, ["a", "b", "c"])
    hub = Hub(tmp, "4M", shards="2")
    tr, addr = hubfix.start_tracker(TRACKER, k, extra=["--lease-ms", "3000", "--node-ttl-ms",
                                                       "120000"])
    mf, mid = publish(k, hub, tmp, "main", tracker=addr)
    hub.reset()
    fails = 0
    common = ["--tracker", addr, "--origin-delay-ms", "0", "--max-peers", "1",
              "--starved-ms", "1000"]
    a = node("a", k, tmp, hub, common + ["--manifest", mf])
    nodes = [a]
    r = cli("pull", mid, "--socket", a.sock, "--timeout", "30", timeout=60)
    if r.returncode != 0:
        print(f"FAIL node a did not complete: {r.stderr.strip()}")
        fails += 1
    # b dials a (its only peer) and takes the release from it.
    b = node("b", k, tmp, hub, common)
    nodes.append(b)
    r = cli("pull", mid, "--socket", b.sock, "--timeout", "30", timeout=60)
    if r.returncode != 0:
        print(f"FAIL node b did not complete: {r.stderr.strip()}")
        fails += 1
    c = node("c", k, tmp, hub, common)
    nodes.append(c)
    r = cli("pull", mid, "--socket", c.sock, "--timeout", "30", timeout=60)
    print("c:", (r.stdout.strip().splitlines() or [r.stderr])[-1])
    if r.returncode != 0:
        print(f"FAIL node c, cut off from the holders, did not complete: {r.stderr.strip()}")
        fails += 1
    elif not c.wait_for(r"refused: connection limit|connection limit reached", 1) and \
            not (a.wait_for(r"connection limit", 1) or b.wait_for(r"connection limit", 1)):
        print("FAIL nothing refused c: it was not cut off, the case tests nothing")
        fails += 1
    st = cli("tracker-stats", "--tracker", addr, "--key", k("admin"), "--cred",
             k("admin") + ".cred").stdout
    wd = tracker_metric(st, "shoal_tracker_fetched_withdrawn_total")
    print(f"tracker-stats: fetched withdrawn {wd}")
    if not wd:
        print("FAIL the tracker withdrew no fetched credit for c")
        fails += 1
    fails += hubfix.check_files(c, hub)
    fails = shoalproc.finish(fails, nodes, tail=40)
    if fails:
        tr.dump()
    tr.stop()
    return fails


def status_row(st, name):
    """The fields of |name|'s row in `shoal status` output |st| and the
    reason line under it ("" without one), or (None, "")."""
    lines = st.splitlines()
    for i, ln in enumerate(lines):
        if ln.startswith(name + " "):
            why = lines[i + 1].strip() if i + 1 < len(lines) and lines[i + 1].startswith("  ") \
                else ""
            return ln.split(), why
    return None, ""


def case_lease_wait(tmp):
    """A node waiting for chunks that another node's origin leases hold
    (that node killed, the tracker keeping its leases for 10 min) says so in
    `shoal status` and `shoal pull`, and shows no rate or ETA from before."""
    k = make_keys(tmp, ["a", "b"])
    hub = Hub(tmp, "4M", shards="2")
    tr, addr = hubfix.start_tracker(TRACKER, k, extra=["--lease-ms", "600000", "--node-ttl-ms",
                                                       "600000", "--gone-ms", "600000"])
    mf, mid = publish(k, hub, tmp, "main", tracker=addr)
    hub.reset()
    # Each file request at 256 KiB/s: a lease's fetch takes seconds.
    hub.add_faults([{"kind": "slow", "bps": 262144, "times": -1, "match": "/cdn/"}])
    fails = 0
    common = ["--tracker", addr, "--origin-delay-ms", "0", "--manifest", mf]
    a = node("a", k, tmp, hub, common)
    end = time.monotonic() + 20
    while time.monotonic() < end and \
            sum(1 for e in hub.stats()["log"] if "/cdn/" in e.get("path", "")) < 1:
        time.sleep(0.1)
    b = node("b", k, tmp, hub, common)
    # b leased its share too and has stored some of it: a rate to go stale.
    name = f"acme/model@{hub.commit}"
    end = time.monotonic() + 30
    row = None
    while time.monotonic() < end:
        row, _ = status_row(cli("status", "--socket", b.sock).stdout, name)
        if row and not row[4].startswith("0 ") and row[3] != "0":
            break
        time.sleep(0.2)
    a.p.kill()
    a.p.wait(10)
    want = "waiting for other nodes: no origin lease granted for "
    st, why, last = "", "", ""
    end = time.monotonic() + 60
    while time.monotonic() < end:
        st = cli("status", "--socket", b.sock).stdout
        row, why = status_row(st, name)
        if want in why or (row and row[1] == "complete"):
            break
        time.sleep(0.5)
    print(st.strip())
    if not row or row[1] != "pulling":
        print("FAIL node b was not left pulling with the dead node's leases held "
              "(test setup: the stall did not happen)")
        return shoalproc.finish(1, [b], tail=40) or 1
    if want not in why or "everything missing is leased to or fetched by other nodes" not in why:
        print("FAIL shoal status gives no reason for the stall")
        fails += 1
    # Rate and ETA columns: "0 B/s" and "--:--" once the reason shows.
    text = " ".join(row)
    if " 0 B/s " not in text + " " or row[-1] != "--:--":
        print(f"FAIL shoal status shows a rate or an ETA while nothing arrives: {text}")
        fails += 1
    r = cli("pull", mid, "--socket", b.sock, "--timeout", "2")
    print(f"shoal pull: exit {r.returncode}: {r.stdout.strip()[-300:]} {r.stderr.strip()}")
    if r.returncode == 0 or want not in r.stdout:
        print("FAIL shoal pull does not print the reason")
        fails += 1
    fails = shoalproc.finish(fails, [b], tail=40)
    if fails:
        tr.dump()
    tr.stop()
    return fails


def case_tracker_gone(tmp):
    """The only tracker goes away mid-pull: status says none is reachable,
    then that the node fetches from the origin without leases."""
    k = make_keys(tmp, ["a"])
    hub = Hub(tmp, "4M", shards="2")
    tr, addr = hubfix.start_tracker(TRACKER, k)
    mf, mid = publish(k, hub, tmp, "main", tracker=addr)
    hub.reset()
    hub.add_faults([{"kind": "slow", "bps": 65536, "times": -1, "match": "/cdn/"}])
    fails = 0
    a = node("a", k, tmp, hub, ["--tracker", addr, "--origin-delay-ms", "0", "--manifest", mf])
    if not a.wait_for(r"tracker \S+: authenticated", 20):
        print("FAIL the node did not log in to the tracker")
        return shoalproc.finish(1, [a, tr], tail=30) or 1
    time.sleep(1)
    name = f"acme/model@{hub.commit}"
    st = cli("status", "--socket", a.sock).stdout
    _, why = status_row(st, name)
    if "tracker" in why:
        print(f"FAIL status names a tracker problem while the tracker is up: {why}")
        fails += 1
    tr.stop()
    for want in (r"no tracker reachable for \d+ s; new origin fetches wait for one \(without "
                 r"a lease after 5 s\)",
                 r"no tracker reachable for \d+ s; (fetching \d+ spans? from the origin "
                 r"without a lease|new origin fetches go without a lease)"):
        why, end = "", time.monotonic() + 15
        while time.monotonic() < end:
            row, why = status_row(cli("status", "--socket", a.sock).stdout, name)
            if re.search(want, why) or not row or row[1] != "pulling":
                break
            time.sleep(0.3)
        print(f"status: {why}")
        if not re.search(want, why):
            print(f"FAIL status does not say /{want}/")
            fails += 1
    return shoalproc.finish(fails, [a], tail=40)


def case_tracker_restart(tmp):
    """The only tracker restarts mid-pull, down for 3 s (an upgrade): the
    node, dialling a down tracker at least every 1.25 s while it has no
    other (a quarter of --lease-fallback-ms), logs in again within about
    that of the tracker's return and never fetches from the origin
    without a lease (before: its back-off had grown to 2-4 s, then 4-8 s,
    so it was often back only after the 5 s fallback, and every node fell
    back: 1.8-2.6x the release from the origin in an 8-node fleet)."""
    k = make_keys(tmp, ["a"])
    hub = Hub(tmp, "4M", shards="2")
    tr, addr = hubfix.start_tracker(TRACKER, k)
    mf, mid = publish(k, hub, tmp, "main", tracker=addr)
    hub.reset()
    hub.add_faults([{"kind": "slow", "bps": 131072, "times": -1, "match": "/cdn/"}])
    fails = 0
    a = node("a", k, tmp, hub, ["--tracker", addr, "--origin-delay-ms", "0", "--manifest", mf])
    if not a.wait_for(r"tracker \S+: authenticated", 20):
        print("FAIL the node did not log in to the tracker")
        return shoalproc.finish(1, [a], tail=30) or 1
    time.sleep(1)
    tr.stop()
    down = time.monotonic()
    time.sleep(3)
    # Counted while the tracker is down: the node may log in again before
    # start_tracker returns (it waits for the tracker's start line).
    logins = len(re.findall(r"tracker \S+: authenticated", a.log()))
    tr2, addr2 = hubfix.start_tracker(TRACKER, k, listen=addr)
    back = time.monotonic()
    end = back + 10
    while time.monotonic() < end and \
            len(re.findall(r"tracker \S+: authenticated", a.log())) == logins:
        time.sleep(0.1)
    now = time.monotonic()
    print(f"tracker down {back - down:.1f} s: the node logged in again {now - back:.1f} s "
          f"after it was back")
    if len(re.findall(r"tracker \S+: authenticated", a.log())) == logins:
        print("FAIL the node did not log in to the restarted tracker within 10 s")
        fails += 1
    elif now - back > 2.2:
        print("FAIL the node dialled the restarted tracker more than 1.25 s (a quarter of "
              "the lease fallback) apart")
        fails += 1
    if "without a lease" in a.log():
        print("FAIL the node fetched from the origin without a lease while the tracker restarted")
        fails += 1
    fails = shoalproc.finish(fails, [a], tail=40)
    tr2.stop()
    return fails


def case_fallback_reclaim(tmp):
    """A node that fetched without a lease while no tracker answered
    (--lease-fallback-ms) re-claims those lease-less spans when the tracker
    is back and reports their chunks, also those that complete the
    release: the tracker's leases end as fulfilled, none outstanding once
    the release is complete (before: the swarm stopped running its
    scheduler at completion, so the LEASE_DONE of the last chunks was
    never sent and the lease stayed outstanding until --lease-ms, its
    chunks uncredited)."""
    k = make_keys(tmp, ["a"])
    hub = Hub(tmp, "8M", shards="2")
    tr, addr = hubfix.start_tracker(TRACKER, k, extra=["--start-grace-ms", "0"])
    mf, mid = publish(k, hub, tmp, "main", tracker=addr)
    hub.reset()
    hub.add_faults([{"kind": "slow", "bps": 524288, "times": -1, "match": "/cdn/"}])
    fails = 0
    tr.stop()  # down from the start: the node fetches without a lease
    a = node("a", k, tmp, hub, ["--tracker", addr, "--origin-delay-ms", "0",
                                "--lease-fallback-ms", "1000", "--manifest", mf])
    pull = subprocess.Popen([SHOAL, "pull", mid, "--socket", a.sock, "--timeout", "100"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not a.wait_for(r"fetching from the origin without a lease", 15):
        print("FAIL the node did not fall back to fetching without a lease")
        fails += 1
    pct = None
    end = time.monotonic() + 30
    while time.monotonic() < end and not (pct and pct > 10):
        time.sleep(0.3)
        pct = release_pct(a, hub.commit)
    tr2, _ = hubfix.start_tracker(TRACKER, k, listen=addr, extra=["--start-grace-ms", "0"])
    print(f"tracker up at {pct}% fetched without it")
    try:
        out, _ = pull.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        pull.kill()
        out, _ = pull.communicate()
    if pull.returncode != 0:
        print(f"FAIL the pull did not complete: {out.strip()[-300:]}")
        fails += 1
    held = len(re.findall(r"holds our origin lease of chunks \d+\.\.\d+ again", a.log()))
    print(f"lease-less leases re-claimed: {held}")
    if held == 0:
        print("FAIL the node re-claimed no lease-less lease")
        fails += 1
    ident = ["--tracker", addr, "--key", k("admin"), "--cred", k("admin") + ".cred"]
    active = None
    end = time.monotonic() + 10
    while time.monotonic() < end and active != 0:
        r = cli("tracker-stats", *ident)
        active = tracker_metric(r.stdout, "shoal_tracker_leases_active")
        if active != 0:
            time.sleep(0.5)
    print(f"leases outstanding at the tracker once the release is complete: {active}")
    if active != 0:
        print("FAIL re-claimed leases stay outstanding: the chunks fetched before the claim "
              "were not reported")
        fails += 1
    fails = shoalproc.finish(fails, [a], tail=40)
    if fails:
        tr2.dump(tail=40)
    tr2.stop()
    return fails


def case_tracker_restart_leases(tmp):
    """The only tracker restarts (its state lost) while three nodes fetch
    under its leases from a slow origin: each node re-claims the leases
    it is still fetching when it logs in again, and the new tracker grants
    no new lease for --start-grace-ms while they come back, so it grants
    those spans to nobody else and the origin serves the release about
    once (before: the restarted tracker leased spans the nodes were still
    fetching to the others, and the origin served 1.25x the release; with
    re-claims but no grace, 1.17-1.39x in 3 runs of 5)."""
    names = ["a", "b", "c"]
    k = make_keys(tmp, names)
    hub = Hub(tmp, "16M", shards="2")
    tr, addr = hubfix.start_tracker(TRACKER, k)
    mf, mid = publish(k, hub, tmp, "main", tracker=addr)
    hub.reset()
    # Each range request at 256 KiB/s: a lease's fetch takes seconds.
    hub.add_faults([{"kind": "slow", "bps": 262144, "times": -1, "match": "/cdn/"}])
    fails = 0
    nodes = [node(n, k, tmp, hub, ["--tracker", addr, "--origin-delay-ms", "0",
                                   "--manifest", mf]) for n in names]
    pulls = [subprocess.Popen([SHOAL, "pull", mid, "--socket", n.sock, "--timeout", "100"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for n in nodes]
    # Every node fetching under its leases.
    end = time.monotonic() + 30
    while time.monotonic() < end and \
            sum(1 for e in hub.stats()["log"] if "/cdn/" in e.get("path", "")) < 4:
        time.sleep(0.2)
    # ...and holding some of it (announced: the new tracker then knows a
    # rollout is under way).
    pct = [None] * len(nodes)
    end = time.monotonic() + 30
    while time.monotonic() < end and not all(p and p > 0 for p in pct):
        time.sleep(0.3)
        pct = [release_pct(n, hub.commit) for n in nodes]
    time.sleep(1.5)
    tr.stop()
    time.sleep(2)
    tr2, _ = hubfix.start_tracker(TRACKER, k, listen=addr)
    print(f"tracker restarted at {pct}% (down 2 s)")
    fails += finish_pulls(nodes, pulls, hub, 150)
    held = sum(len(re.findall(r"holds our origin lease of chunks \d+\.\.\d+ again", n.log()))
               for n in nodes)
    refused = sum(len(re.findall(r"refused our re-claim", n.log())) for n in nodes)
    print(f"re-claimed leases granted by the new tracker: {held}, refused: {refused}")
    if held == 0:
        print("FAIL no node re-claimed a lease from the restarted tracker")
        fails += 1
    if any("without a lease" in n.log() for n in nodes):
        print("FAIL a node fetched from the origin without a lease")
        fails += 1
    egress = hub.egress()
    print(f"origin served {egress} B for a {hub.size} B release to 3 nodes: "
          f"{egress / hub.size:.3f}x")
    if egress > hub.size * 1.05:
        print("FAIL the origin served more than 1.05x the release across the tracker restart")
        fails += 1
    fails = shoalproc.finish(fails, nodes, tail=40)
    if fails:
        tr2.dump(tail=40)
    tr2.stop()
    return fails


def case_loader_urgent_lease(tmp):
    """A cold fleet of three fetches a four-shard release from a slow origin
    under one tracker; two nodes start first and lease it front to back. A
    loader on the third asks for the last shard: the node's lease request
    is hinted at that shard's first chunk (no peer has it), and the tracker
    grants the first free chunk at or after a hint, so the third node's
    first origin fetch is of that shard, from its first byte (its log; the
    origin's request log), not of where the fleet's walk has got to (as it
    was with a tracker ignoring the hint). QA N3's second half asked for an
    urgent hint: the hint the node sends already is one."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "node"))
    import shoal_loader
    names = ["a", "b", "c"]
    k = make_keys(tmp, names)
    hub = Hub(tmp, "48M", shards="4")
    tr, addr = hubfix.start_tracker(TRACKER, k)
    mf, mid = publish(k, hub, tmp, "main", tracker=addr)
    hub.reset()
    # 1 MiB/s per range request: the first leases of b and c (3 chunks
    # each, their share of a cold fleet) take seconds.
    hub.add_faults([{"kind": "slow", "bps": 1048576, "times": -1, "match": "/cdn/"}])
    fails = 0
    common = ["--tracker", addr, "--origin-delay-ms", "0", "--manifest", mf]
    b = node("b", k, tmp, hub, common)
    c = node("c", k, tmp, hub, common)
    pulls = [subprocess.Popen([SHOAL, "pull", mid, "--socket", n.sock, "--timeout", "100"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for n in (b, c)]
    end = time.monotonic() + 30
    while time.monotonic() < end and \
            sum(1 for e in hub.stats()["log"] if "/cdn/" in e.get("path", "")) < 4:
        time.sleep(0.1)
    shards = sorted(p for p in hub.files if p.endswith(".safetensors"))
    lsock = os.path.join(tmp, "loader.sock")
    a = node("a", k, tmp, hub, ["--tracker", addr, "--origin-delay-ms", "0",
                                "--loader-socket", lsock, "--log-level", "debug"])
    got = []
    try:
        with shoal_loader.Client(lsock, timeout=100) as cl:
            for f in cl.want(mid, [shards[-1]]):
                got.append(f.path)
                f.close()
                break
    except (shoal_loader.LoaderError, TimeoutError, OSError) as e:
        print(f"FAIL the loader on node a: {e!r}")
        fails += 1
    print(f"loader got {got[:1]}, asked for {shards[-1]}")
    for n, p in zip((b, c), pulls):
        try:
            p.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
    reqs = []
    for e in hub.stats()["log"]:
        m = re.match(r"bytes=(\d+)-(\d+)$", e.get("range") or "")
        if "/cdn/" in e.get("path", "") and m:
            q = urllib.parse.parse_qs(urllib.parse.urlparse(e["path"]).query)
            path = (q.get("file") or [""])[0]
            if path in shards:
                reqs.append((path, int(m.group(1)), int(m.group(2)) + 1 - int(m.group(1))))
    print("origin requests in order: " + ", ".join(f"{p.split('-')[1]}@{o}" for p, o, _ in reqs))
    # Node a's first origin fetch is of the loader's shard.
    m = re.search(r"fetching chunks \d+\.\.\d+ \((\d+) bytes of (\S+)\) from the origin", a.log())
    print(f"node a's first origin fetch: {m.group(0) if m else None}")
    if not m or m.group(2) != shards[-1]:
        print("FAIL node a's first origin lease was not of the loader's shard")
        fails += 1
    elif (shards[-1], 0, int(m.group(1))) not in reqs:
        print("FAIL node a's first origin fetch did not start at the shard's first byte")
        fails += 1
    fails = shoalproc.finish(fails, [a, b, c], tail=30)
    if fails:
        tr.dump(tail=30)
    tr.stop()
    return fails


def case_ref_unwritable(tmp):
    """A release complete here (pulled by commit) asked for by branch while
    refs/ cannot be written (a file is in its place, as a full disk would
    refuse the write): `shoal pull ...@main` fails saying the ref could not
    be written, instead of saying complete while huggingface_hub finds
    nothing by that name; once refs/ can be written, it completes."""
    k = make_keys(tmp, ["h"])
    hub = Hub(tmp, "2M")
    trk, taddr = start_tracker(k)
    publish(k, hub, tmp, "main", taddr)
    n = node("h", k, tmp, hub, ["--tracker", taddr])
    fails = 0
    r = cli("pull", "acme/model@" + hub.commit, "--socket", n.sock, "--timeout", str(WAIT_S))
    if r.returncode != 0:
        print(f"FAIL the pull by commit did not complete: {r.stdout}{r.stderr}")
        return shoalproc.finish(1, [n], tail=30) or 1
    refs = os.path.join(n.cache, "models--acme--model", "refs")
    shutil.rmtree(refs, ignore_errors=True)
    with open(refs, "w") as f:
        f.write("in the way\n")
    r = cli("pull", "acme/model@main", "--socket", n.sock, "--timeout", "20")
    out = (r.stdout + r.stderr).strip()
    print(f"by branch, refs/ unwritable: exit {r.returncode}: {out[-300:]}")
    if r.returncode == 0 or "refs/main could not be written" not in out:
        print("FAIL the pull by branch did not fail saying refs/main could not be written")
        fails += 1
    os.unlink(refs)
    r = cli("pull", "acme/model@main", "--socket", n.sock, "--timeout", "20")
    if r.returncode != 0 or not os.path.isfile(os.path.join(refs, "main")):
        print(f"FAIL once refs/ could be written the pull did not complete with the ref: "
              f"{r.stdout}{r.stderr}")
        fails += 1
    fails = shoalproc.finish(fails, [n], tail=30)
    trk.stop()
    return fails


def case_origin_health(tmp):
    k = make_keys(tmp, ["h"])
    hub = Hub(tmp, "4M", shards="2")
    mf, _ = publish(k, hub, tmp, "main")
    hub.reset()
    hub.add_faults([{"kind": "status", "code": 503, "times": -1, "match": "/cdn/"}])
    fails = 0
    n = node("h", k, tmp, hub, ["--manifest", mf])
    port = hub.url.rsplit(":", 1)[1]
    if not n.wait_for(r"warn\s+origin 127\.0\.0\.1:%s failing: HTTP 503" % port, 20):
        print("FAIL the node did not log the failing origin")
        n.dump(tail=30)
        return 1
    # The small files (no redirect) are in within a second: from then on
    # every request that reaches the origin's files fails.
    time.sleep(1.5)
    mark = len(n.log())
    time.sleep(6)
    st = cli("status", "--socket", n.sock).stdout
    print(st.strip())
    refused = sum(1 for e in hub.stats()["log"] if "/cdn/" in e.get("path", ""))
    m = re.search(r"origin 127\.0\.0\.1:%s failing for (\d+) s \((\d+) failed requests?\)"
                  % port, st)
    if not m:
        print("FAIL shoal status does not show the origin failing")
        fails += 1
    else:
        secs, count = int(m.group(1)), int(m.group(2))
        print(f"status: failing for {secs} s, {count} failed; the stand-in refused {refused}")
        if secs < 5:
            print("FAIL the failing time restarts while every file request fails")
            fails += 1
        if count < refused // 2 or count < 3:
            print("FAIL the failed request count restarts while every file request fails")
            fails += 1
    back = [l for l in n.log()[mark:].splitlines() if "reachable again" in l]
    if back:
        print(f"FAIL the log says the origin is reachable again while it fails: {back[:3]}")
        fails += 1
    return shoalproc.finish(fails, [n], tail=40)


def case_origin_404(tmp):
    k = make_keys(tmp, ["h"])
    hub = Hub(tmp, "2M", shards="1")
    mf, _ = publish(k, hub, tmp, "main")
    hub.reset()
    hub.add_faults([{"kind": "status", "code": 404, "times": -1, "match": "/resolve/"}])
    fails = 0
    n = node("h", k, tmp, hub, ["--manifest", mf])
    r = cli("pull", "acme/model@" + hub.commit, "--socket", n.sock, "--timeout", "6")
    print(f"pull: exit {r.returncode}: {r.stdout.strip()[-400:]} {r.stderr.strip()}")
    if r.returncode == 0 or "HTTP 404" not in r.stdout + r.stderr or \
            "not on the gateway" not in r.stdout + r.stderr:
        print("FAIL shoal pull does not say the origin answers 404 for the files")
        fails += 1
    st = status_saying(n, "HTTP 404", 25)
    print(st.strip())
    if "HTTP 404" not in st or "not on the gateway" not in st:
        print("FAIL shoal status does not say the origin answers 404 for a file")
        fails += 1
    return shoalproc.finish(fails, [n], tail=40)


def case_hub_api_failing(tmp):
    k = make_keys(tmp, ["h"])
    hub = Hub(tmp, "1M", shards="1")
    hub.add_faults([{"kind": "status", "code": 503, "times": -1, "match": "/api/"}])
    trk, taddr = start_tracker(k)
    fails = 0
    n = node("h", k, tmp, hub, ["--tracker", taddr])
    r = cli("pull", "acme/model@main", "--socket", n.sock, "--timeout", "4")
    last = (r.stdout.strip().splitlines() or [""])[-1]
    print(f"pull: exit {r.returncode}: {last} {r.stderr.strip()}")
    want = re.compile(r"asking the Hub where main is; origin 127\.0\.0\.1:\d+ failing for \d+ s "
                      r"\(\d+ failed requests?\): HTTP 503")
    if r.returncode == 0 or not want.search(r.stdout):
        print("FAIL shoal pull does not say the Hub's API is failing")
        fails += 1
    st = status_saying(n, "failing", 10)
    print(st.strip())
    if not want.search(st):
        print("FAIL shoal status does not say the Hub's API is failing")
        fails += 1
    return shoalproc.finish(fails, [n], tail=40)


def case_tracker_rollouts(tmp):
    k = make_keys(tmp, ["s", "n"])
    hub = Hub(tmp, "4M")
    rf = os.path.join(tmp, "rollouts")
    extra = ["--rollout-file", rf]
    with open(rf, "w") as f:
        f.write(f"rollout {'acme/other@' + 'ab' * 20} zone zone%20b\n")
    t1, taddr = hubfix.start_tracker(TRACKER, k, extra=extra)
    publish(k, hub, tmp, "main", taddr)
    rel = f"acme/model@{hub.commit}"
    other = "acme/other@" + "ab" * 20
    admin = ["--tracker", taddr, "--key", k("admin"), "--cred", k("admin") + ".cred"]
    fails = 0
    seed = node("s", k, tmp, hub, ["--tracker", taddr])
    # A rollout names a commit whose manifest the tracker holds: a branch
    # is refused by the CLI, a commit nobody published by the tracker
    # (before, both were "recorded", and no node ever acted on them).
    typo = "acme/model@" + hub.commit[:-1] + ("0" if hub.commit[-1] != "0" else "1")
    for args, rc, says in (
            (["acme/model@main"], 2, "'main' is not a commit: a rollout pins a release to "
                                     "the full 40-hex commit"),
            ([typo], 1, f"tracker says: no manifest registered for {typo}: publish it first "
                        "(shoal publish)")):
        r = cli("rollout", *args, *admin)
        print(f"shoal rollout {args[0]}: exit {r.returncode}: {r.stderr.strip()}")
        if r.returncode != rc or says not in r.stderr:
            print(f"FAIL want exit {rc} saying \"{says}\"")
            fails += 1
    # `other` was never published: it can only come from the file (as one
    # recorded by an older tracker would), which is how it is set here.
    # --identity is rollout's other name for --key.
    r = cli("rollout", rel, "--tracker", taddr, "--identity", k("admin"), "--cred",
            k("admin") + ".cred")
    if r.returncode != 0:
        print(f"FAIL shoal rollout {rel} --identity: exit {r.returncode}: {r.stderr}")
        return 1
    if not seed.wait_for(r"release \S+ \(%s\) complete: " % re.escape(rel), WAIT_S):
        print("FAIL the seed did not complete the rolled-out release")
        seed.dump(tail=30)
        return 1
    text = open(rf).read()
    print(f"rollout file:\n{text.strip()}")
    want = [f"rollout {other} zone zone%20b", f"rollout {rel}"]
    if [ln for ln in text.splitlines() if not ln.startswith("#")] != want:
        print(f"FAIL the rollout file should hold exactly {want}")
        fails += 1
    if t1.stop() != 0:
        print("FAIL the tracker did not stop cleanly")
        fails += 1
    t2, _ = hubfix.start_tracker(TRACKER, k, listen=taddr, extra=extra)
    if not t2.wait_for(r"rollout file \S+: 2 rollout\(s\) restored", 10):
        print("FAIL the restarted tracker did not say it restored 2 rollouts")
        fails += 1
    # Started after the restart with nothing to pull: only the restored
    # rollout can make it pull (the seed re-puts the manifest).
    n = node("n", k, tmp, hub, ["--tracker", taddr])
    if not n.wait_for(r"rollout: tracker .* asks for %s" % re.escape(rel), 30):
        print("FAIL a node joining after the restart was not told of the rollout")
        fails += 1
    elif not n.wait_for(r"release \S+ \(%s\) complete: " % re.escape(rel), WAIT_S):
        print("FAIL the node joining after the restart did not complete the release")
        fails += 1
    t2.stop()
    with open(rf, "a") as f:
        f.write("rollout\nnonsense here\n")
    t3, _ = hubfix.start_tracker(TRACKER, k, listen=taddr, extra=extra)
    if not t3.wait_for(r"rollout file \S+: 2 line\(s\) skipped \(line 4: expected "
                       r"'rollout ORG/NAME@COMMIT \[zone ZONE\] \[ref BRANCH\]'\); copied to "
                       r"\S+\.bad", 10):
        print("FAIL the tracker did not report the two bad lines")
        fails += 1
    bad = open(rf + ".bad").read() if os.path.exists(rf + ".bad") else ""
    good = [ln for ln in open(rf).read().splitlines() if not ln.startswith("#")]
    if "nonsense here" not in bad or good != want:
        print(f"FAIL want the bad lines copied to .bad and the file rewritten with {want}; "
              f"got {good}")
        fails += 1
    r = cli("rollout", other, "--zone", "zone b", "--remove", *admin)
    good = [ln for ln in open(rf).read().splitlines() if not ln.startswith("#")]
    if r.returncode != 0 or good != want[1:]:
        print(f"FAIL shoal rollout --remove: exit {r.returncode} {r.stderr.strip()}; "
              f"file now {good}")
        fails += 1
    # Removing what is not recorded says so (not a bare "not found").
    r = cli("rollout", other, "--zone", "nosuch", "--remove", *admin)
    print(f"removing a rollout not recorded: exit {r.returncode}: {r.stderr.strip()}")
    if r.returncode == 0 or f"no rollout of {other} is recorded for zone nosuch" not in r.stderr:
        print("FAIL removing a rollout that is not recorded does not say so")
        fails += 1
    os.remove(rf)
    os.mkdir(rf)
    r = cli("rollout", rel, "--remove", *admin)
    print(f"rollout with an unwritable file: exit {r.returncode}: {r.stderr.strip()}")
    if r.returncode != 1 or "cannot write" not in r.stderr:
        print("FAIL a rollout the tracker cannot record must be refused, saying why")
        fails += 1
    fails += shoalproc.stop_all([n, seed])
    if fails:
        for p in (t1, t2, t3):
            p.dump(tail=20)
    return fails


class Listener:
    """A server on 127.0.0.1 (self.addr) that hands each connection to
    self.handle(conn) on its own thread, until close()."""

    def __init__(self):
        self.conns = 0
        self.stop = False
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.ls.settimeout(0.2)
        self.addr = "127.0.0.1:%d" % self.ls.getsockname()[1]
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        while not self.stop:
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            self.conns += 1
            self.handle(c)

    def close(self):
        self.stop = True
        self.th.join(5)
        self.ls.close()


class RecordingProxy(Listener):
    """A TCP relay to |target| ("host:port") on 127.0.0.1 that keeps every
    byte it relays from the target (self.down) and to it (self.up)."""

    def __init__(self, target):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.up, self.down = bytearray(), bytearray()
        super().__init__()

    def pump(self, a, b, sink):
        a.settimeout(0.2)
        while not self.stop:
            try:
                d = a.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not d:
                break
            sink += d
            try:
                b.sendall(d)
            except OSError:
                break
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle(self, c):
        t = socket.create_connection(self.target)
        threading.Thread(target=self.pump, args=(c, t, self.up), daemon=True).start()
        threading.Thread(target=self.pump, args=(t, c, self.down), daemon=True).start()


def case_tracker_identity(tmp):
    """Nodes that pin their trackers' keys (--tracker-keys) use a tracker
    that proves one of them, and refuse one that proves another key or
    none, before using anything it says."""
    k = make_keys(tmp, ["s", "n", "m", "p", "q"])
    for name in ("trk", "other"):
        run(SHOAL, "keygen", k(name))
    hub = Hub(tmp, "4M")
    t, taddr = hubfix.start_tracker(TRACKER, k, extra=["--key", k("trk")])
    t2, taddr2 = hubfix.start_tracker(TRACKER, k)
    fails = 0
    if not t.wait_for(r"tracker key [0-9a-f]{64}: proven to nodes that pin it", 10):
        print("FAIL the tracker did not log its key")
        fails += 1
    mf, mid = publish(k, hub, tmp, "main", taddr)
    pin = ["--tracker-keys", k("trk") + ".pub"]
    seed = node("s", k, tmp, hub, ["--tracker", taddr, *pin, "--manifest", mf])
    r = cli("pull", mid, "--socket", seed.sock, "--timeout", str(WAIT_S))
    if r.returncode != 0:
        print(f"FAIL the seed did not pull from the origin: {r.stderr.strip()}")
        fails += 1
    # No origin and no --peer: only peers the pinned tracker lists can serve.
    # Its tracker connection goes through a proxy that records it.
    px = RecordingProxy(taddr)
    n = node("n", k, tmp, None, ["--tracker", px.addr, *pin, "--no-origin"])
    r = cli("pull", mid, "--socket", n.sock, "--timeout", str(WAIT_S))
    print(f"pull through the proven tracker: exit {r.returncode} {r.stdout.strip()[-90:]}")
    if r.returncode != 0:
        print(f"FAIL a node pinning the tracker's key did not complete: {r.stderr.strip()}")
        fails += 1
    if not n.wait_for(r"tracker \S+ proved its key [0-9a-f]{16}", 5):
        print("FAIL the node did not log the tracker's proof")
        fails += 1
    fails += hubfix.check_files(n, hub)
    # What the pinned tracker told the node (the release's name and
    # commit, peers, leases) came sealed; a node that does not pin it gets
    # the same in the clear (so the check can see it).
    px2 = RecordingProxy(taddr)
    m2 = node("m", k, tmp, None, ["--tracker", px2.addr, "--no-origin"])
    r2 = cli("pull", mid, "--socket", m2.sock, "--timeout", str(WAIT_S))
    time.sleep(0.5)
    sealed, clear = bytes(px.down), bytes(px2.down)
    print(f"tracker to node: {len(sealed)} bytes sealed, {len(clear)} in the clear")
    if r2.returncode != 0 or b"model" not in clear or hub.commit.encode() not in clear:
        print("FAIL the unpinned node's tracker traffic should show the manifest in the clear")
        fails += 1
    if len(sealed) < 512 or b"model" in sealed or hub.commit.encode() in sealed:
        print("FAIL the pinned tracker's answers were readable on the way")
        fails += 1
    px.close()
    px2.close()
    p = node("p", k, tmp, None, ["--tracker", taddr, "--tracker-keys", k("other") + ".pub",
                                 "--no-origin"])
    if not p.wait_for(r"tracker \S+ refused: its key is not in tracker-keys", 20):
        print("FAIL a tracker proving another key was not refused")
        fails += 1
    q = node("q", k, tmp, None, ["--tracker", taddr2, *pin, "--no-origin"])
    if not q.wait_for(r"tracker \S+ did not prove its identity", 20):
        print("FAIL a tracker proving no key was not refused")
        fails += 1
    for x in (p, q):
        if x.wait_for(r"tracker \S+: authenticated", 0.5):
            print(f"FAIL node {x.name} used a tracker it refused")
            fails += 1
    fails += shoalproc.stop_all([n, m2, p, q, seed])
    for tr in (t, t2):
        if tr.stop() != 0:
            print("FAIL a tracker did not stop cleanly")
            fails += 1
    if fails:
        for x in (t, seed, n, p, q):
            x.dump(tail=20)
    return fails


class FrameFlipProxy(RecordingProxy):
    """A RecordingProxy that flips the last bit of the second-to-last byte
    of the |nth| frame (1-based) the client sends: the frame after the
    login is the command itself, that byte in the clear ROLLOUT's "remove"
    flag (false 0xc2 -> true 0xc3; the nil ref follows it), in a sealed
    session part of the tag."""

    def __init__(self, target, nth):
        self.nth = nth
        self.flipped = 0
        super().__init__(target)

    def pump(self, a, b, sink):
        if sink is self.down:
            return super().pump(a, b, sink)
        import struct
        buf, seen = bytearray(), 0
        a.settimeout(0.2)
        while not self.stop:
            try:
                d = a.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not d:
                break
            sink += d
            buf += d
            out = bytearray()
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                n = 4 + struct.unpack(">I", buf[:4])[0]
                frame = bytearray(buf[:n])
                del buf[:n]
                seen += 1
                if seen == self.nth:
                    frame[-2] ^= 1
                    self.flipped += 1
                out += frame
            try:
                b.sendall(out)
            except OSError:
                break
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def case_cli_tracker_identity(tmp):
    """The admin commands pin the tracker as nodes do (--tracker-keys): a
    tracker proving a listed key is used and the session is sealed (a
    publish shows nothing of the manifest on the way, a rollout changed on
    the way is refused instead of recorded as its opposite); one proving
    another key or none is sent nothing but the login."""
    k = make_keys(tmp, [])
    for name in ("trk", "other"):
        run(SHOAL, "keygen", k(name))
    with open(os.path.join(tmp, "empty.pub"), "w") as f:
        f.write("# no key yet\n")
    hub = Hub(tmp, "4M")
    t, taddr = hubfix.start_tracker(TRACKER, k, extra=["--key", k("trk")])
    t2, taddr2 = hubfix.start_tracker(TRACKER, k)
    ident = ["--key", k("admin"), "--cred", k("admin") + ".cred"]
    pin = ["--tracker-keys", k("trk") + ".pub"]
    fails = 0

    def rollout_lines():
        t.drain(1)
        return [x for x in t.lines if re.search(r"rollout (set|removed) ", x)]

    # publish through a recording proxy: the signed manifest goes sealed.
    px = RecordingProxy(taddr)
    env = dict(os.environ, HF_ENDPOINT=hub.url)
    env.pop("HF_TOKEN", None)
    r = subprocess.run([SHOAL, "publish", "acme/model@main", "--key", k("publisher"), "--tracker",
                        px.addr, "--identity", k("admin"), "--cred", k("admin") + ".cred", *pin,
                        "--quiet"], capture_output=True, text=True, env=env, timeout=60)
    m = re.search(r"published acme/model@([0-9a-f]{40})", r.stdout)
    print(f"pinned publish: exit {r.returncode}, {len(px.up)} bytes up")
    if r.returncode != 0 or not m:
        print(f"FAIL a pinned publish did not register: {r.stdout} {r.stderr}")
        return fails + 1
    rel = "acme/model@" + m.group(1)
    if len(px.up) < 1024 or b"acme/model" in px.up or b"config.json" in px.up:
        print("FAIL the manifest a pinned publish sent was readable on the way")
        fails += 1
    px.close()
    r = cli("rollout", rel, "--tracker", taddr, *ident, *pin)
    if r.returncode != 0 or "rollout recorded" not in r.stdout + r.stderr or \
            not t.wait_for(r"rollout set " + re.escape(rel), 5):
        print(f"FAIL a pinned rollout was not recorded: {r.stdout} {r.stderr}")
        fails += 1
    # The rollout set again, its command frame changed on the way.
    # Unpinned, the change goes through: the admin is told "recorded" and
    # the tracker removes it (what --tracker-keys is for).
    before = len(rollout_lines())
    fx = FrameFlipProxy(taddr, 2)
    r = cli("rollout", rel, "--tracker", fx.addr, *ident)
    lines = rollout_lines()[before:]
    print(f"unpinned rollout through the flipping proxy: exit {r.returncode} "
          f"{r.stdout.strip()[-80:]!r} {r.stderr.strip()[-100:]!r}, tracker: {lines}")
    if fx.flipped != 1 or r.returncode != 0 or not any("rollout removed" in x for x in lines):
        print("FAIL the proxy should turn an unpinned rollout into its removal unnoticed")
        fails += 1
    fx.close()
    before = len(rollout_lines())
    fx = FrameFlipProxy(taddr, 2)
    r = cli("rollout", rel, "--tracker", fx.addr, *ident, *pin)
    time.sleep(0.5)
    lines = rollout_lines()[before:]
    print(f"pinned rollout through the flipping proxy: exit {r.returncode} "
          f"{r.stderr.strip()[-100:]!r}, tracker: {lines}")
    if fx.flipped != 1 or r.returncode != 1 or lines:
        print("FAIL a pinned rollout changed on the way must fail and change nothing")
        fails += 1
    if not t.wait_for(r"sealed frame does not open", 5):
        print("FAIL the tracker did not log the changed sealed frame")
        fails += 1
    fx.close()
    r = cli("rollout", rel, "--tracker", taddr, *ident, *pin)
    if r.returncode != 0 or len(rollout_lines()) != before + 1:
        print(f"FAIL a pinned rollout was not recorded again: {r.stdout} {r.stderr}")
        fails += 1
    r = cli("rollout", rel, "--status", "--tracker", taddr, *ident, *pin)
    if r.returncode != 0:
        print(f"FAIL pinned rollout --status: {r.stdout} {r.stderr}")
        fails += 1
    r = cli("tracker-stats", "--tracker", taddr, *ident, *pin)
    if r.returncode != 0 or "shoal_tracker_" not in r.stdout:
        print(f"FAIL pinned tracker-stats: exit {r.returncode} {r.stderr}")
        fails += 1
    # Trackers that prove another key, or none: refused after the login.
    before = len(rollout_lines())
    refusals = [
        (["rollout", rel, "--remove", "--tracker", taddr, *ident, "--tracker-keys",
          k("other") + ".pub"], 1, r"tracker \S+ not used: its key is not among the pinned "
         r"tracker keys \(key [0-9a-f]{16}\); nothing was sent to it but the login"),
        (["tracker-stats", "--tracker", taddr2, *ident, *pin], 1,
         r"tracker \S+ not used: it did not prove its identity"),
        (["rollout", rel, "--remove", "--tracker", taddr, *ident, "--tracker-keys",
          os.path.join(tmp, "empty.pub")], 1, r"tracker keys \S+empty.pub: no key in the file"),
        (["rollout", rel, "--tracker", taddr, *ident, "--tracker-keys",
          os.path.join(tmp, "missing.pub")], 1, r"tracker keys \S+missing.pub"),
    ]
    for argv, code, rx in refusals:
        r = cli(*argv)
        print(f"{argv[0]} {argv[-1][-12:]}: exit {r.returncode} {r.stderr.strip()!r}")
        if r.returncode != code or not re.search(rx, r.stderr):
            print(f"FAIL expected exit {code} and /{rx}/")
            fails += 1
    if rollout_lines()[before:]:
        print("FAIL a refused tracker recorded a rollout change")
        fails += 1
    return shoalproc.finish(fails, [t, t2], dump=[t], tail=30)


class FlappingTracker(Listener):
    """A tracker stand-in (the wire by hand) that logs any node in, answers
    its announce and manifest puts, and closes each connection 300 ms after
    the login: counts connections and manifest puts. |boot| is the tracker
    process id its challenges carry."""

    def __init__(self):
        import struct
        self.struct = struct
        self.boot = os.urandom(16)
        self.puts = 0
        super().__init__()

    def frame(self, body):
        return self.struct.pack(">I", len(body)) + body

    def read(self, c):
        hdr = b""
        while len(hdr) < 4:
            d = c.recv(4 - len(hdr))
            if not d:
                return None
            hdr += d
        n = self.struct.unpack(">I", hdr)[0]
        body = b""
        while len(body) < n:
            d = c.recv(min(1 << 20, n - len(body)))
            if not d:
                return None
            body += d
        return body

    def serve(self, c):
        c.settimeout(2)
        c.sendall(self.frame(bytes([0x94, 32, 0xc4, 32]) + os.urandom(32) + b"\xcf" +
                             self.struct.pack(">Q", int(time.time())) + b"\xc4\x10" + self.boot))
        if self.read(c) is None:  # TRK_AUTH, not checked
            return
        c.sendall(self.frame(bytes([0x92, 47, 0])))
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            c.settimeout(max(0.01, end - time.monotonic()))
            try:
                body = self.read(c)
            except socket.timeout:
                break
            if body is None:
                break
            kind = body[1]
            if kind == 34:    # ANNOUNCE -> ANNOUNCE_REPLY [1000 ms, no releases]
                c.sendall(self.frame(bytes([0x93, 35, 0xcd, 0x03, 0xe8, 0x90])))
            elif kind == 38:  # PUT_MANIFEST -> OK
                self.puts += 1
                c.sendall(self.frame(bytes([0x92, 47, 0])))
            else:             # anything else: this tracker goes away
                break

    def handle(self, c):
        try:
            self.serve(c)
        except OSError:
            pass
        c.close()


def case_tracker_flap(tmp):
    """A tracker that closes every connection right after the login is
    redialled with a growing back-off, not 4 times a second, and a manifest
    it accepted is not sent again until another tracker process answers."""
    k = make_keys(tmp, ["s"])
    hub = Hub(tmp, "2M")
    mf, mid = publish(k, hub, tmp)
    ft = FlappingTracker()
    fails = 0
    n = node("s", k, tmp, hub, ["--manifest", mf, "--tracker", ft.addr])
    time.sleep(8)
    conns, puts = ft.conns, ft.puts
    print(f"8 s against a tracker that closes after each login: {conns} logins, {puts} "
          f"manifest puts")
    if conns < 2 or conns > 12:
        print("FAIL want a few logins with a growing back-off (2-12 in 8 s; 42 before)")
        fails += 1
    if puts != 1:
        print("FAIL the manifest the tracker accepted was put again on the same tracker process")
        fails += 1
    ft.boot = os.urandom(16)  # the tracker restarted: it knows nothing
    deadline = time.monotonic() + 20
    while ft.puts == puts and time.monotonic() < deadline:
        time.sleep(0.2)
    print(f"after the tracker process changed: {ft.puts} puts")
    if ft.puts != puts + 1:
        print("FAIL a new tracker process was not given the manifest again")
        fails += 1
    fails += shoalproc.stop_all([n])
    ft.close()
    if fails:
        n.dump(tail=30)
    return fails


def case_tracker_repin(tmp):
    """A node pinning its tracker's key gets back onto the tracker after the
    connection drops: the new login proves the key again and the session
    is sealed afresh, not opened with the last connection's keys."""
    k = make_keys(tmp, ["s"])
    run(SHOAL, "keygen", k("trk"))
    hub = Hub(tmp, "2M")
    t, taddr = hubfix.start_tracker(TRACKER, k, extra=["--key", k("trk")])
    mf, mid = publish(k, hub, tmp, "main", taddr)
    proxy = CutProxy(taddr)
    fails = 0
    n = node("s", k, tmp, hub, ["--manifest", mf, "--tracker", proxy.addr,
                                "--tracker-keys", k("trk") + ".pub"])
    proof = r"tracker \S+ proved its key [0-9a-f]{16}"
    if not n.wait_for(proof, 15):
        print("FAIL the node did not log the tracker's proof")
        fails += 1
    proxy.cut(0.5)
    print("cut the node's tracker connection for 0.5 s")
    deadline = time.monotonic() + 20
    while len(re.findall(proof, n.log())) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    proofs = len(re.findall(proof, n.log()))
    print(f"proofs logged: {proofs}; connections through the proxy: {proxy.accepted}")
    if proofs < 2:
        print("FAIL the node did not log in to its pinned tracker again after the cut")
        fails += 1
    bad = re.findall(r".*does not open.*", n.log())
    if bad:
        print("FAIL the new login's frames were read with the old session's keys:\n"
              + "\n".join(bad[:3]))
        fails += 1
    proxy.close()
    fails += shoalproc.stop_all([n])
    if fails:
        n.dump(tail=30)
        t.dump(tail=20)
    return fails


def case_drop_repull(tmp):
    """`shoal drop` then `shoal pull` of the same release while the peer it
    came from stays connected: the pull goes on from that peer (which knew
    this node from the first open of the release) instead of waiting for
    ever."""
    k = make_keys(tmp, ["s", "p"])
    hub = Hub(tmp, "16M")
    mf, mid = publish(k, hub, tmp)
    fails = 0
    seed = node("s", k, tmp, hub, ["--manifest", mf])
    r = cli("pull", mid, "--socket", seed.sock, "--timeout", str(WAIT_S))
    if r.returncode != 0:
        print(f"FAIL the seed did not pull from the origin: {r.stderr.strip()}")
        return 1
    # No origin: only the seed can serve, and slowly enough to drop midway.
    p = node("p", k, tmp, None, ["--peer", seed.addr, "--no-origin", "--peer-rate-down", "3M"])
    first = subprocess.Popen([SHOAL, "pull", mid, "--socket", p.sock, "--timeout", "60"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pct = catch_mid_download(p, hub.commit, low=15, high=85)
    r = cli("drop", mid, "--socket", p.sock)
    first.communicate(timeout=30)
    print(f"dropped at {pct}%: exit {r.returncode}")
    if pct is None or r.returncode != 0:
        print("FAIL could not drop the release mid-download")
        fails += 1
    r = cli("pull", mid, "--socket", p.sock, "--timeout", "40")
    print(f"pulled again: exit {r.returncode} {r.stdout.strip()[-100:]} {r.stderr.strip()}")
    if r.returncode != 0:
        print("FAIL pulling a dropped release again did not complete from the connected seed")
        fails += 1
    else:
        fails += hubfix.check_files(p, hub)
    fails += shoalproc.stop_all([p, seed])
    if fails:
        for x in (seed, p):
            x.dump(tail=20)
    return fails


def case_drop_rollout(tmp):
    """QA F1: `shoal drop` of a release a tracker rollout names drops it
    (exit 0) but says it comes back at the tracker's next answer and how to
    end that (remove the rollout); after `shoal rollout --remove` the drop
    says it is gone for good, and it stays gone (before: both said "does
    not reopen it" and the first was back within milliseconds)."""
    k = make_keys(tmp, ["n"])
    hub = Hub(tmp, "4M")
    t, taddr = hubfix.start_tracker(TRACKER, k)
    publish(k, hub, tmp, "main", taddr)
    rel = f"acme/model@{hub.commit}"
    admin = ["--tracker", taddr, "--key", k("admin"), "--cred", k("admin") + ".cred"]
    fails = 0
    n = node("n", k, tmp, hub, ["--tracker", taddr])
    r = cli("rollout", rel, *admin)
    if r.returncode != 0:
        print(f"FAIL shoal rollout: {r.stderr}")
        return 1
    if not n.wait_for(r"release \S+ \(%s\) complete: " % re.escape(rel), WAIT_S):
        print("FAIL the rolled-out release did not complete")
        n.dump(tail=30)
        return 1
    r = cli("drop", rel, "--socket", n.sock)
    print(f"shoal drop (rollout names it): exit {r.returncode}\n{r.stdout.strip()}")
    if r.returncode != 0 or "does not reopen" in r.stdout or \
            f"a rollout on tracker {taddr} names it: it comes back" not in r.stdout or \
            f"shoal rollout {rel} --remove" not in r.stdout:
        print("FAIL the drop of a release a rollout names does not say it comes back and "
              "that the rollout must be removed first")
        fails += 1
    if not n.wait_for(r"rollout: tracker \S+ asks for acme/model", 10):
        print("FAIL the rollout did not bring the release back (what the reply says)")
        fails += 1
    if rel not in status_saying(n, "complete"):
        print("FAIL the release is not back in status")
        fails += 1
    r = cli("rollout", rel, "--remove", *admin)
    if r.returncode != 0:
        print(f"FAIL shoal rollout --remove: {r.stderr}")
        fails += 1
    # The removal reaches the node with its next announces (every second).
    time.sleep(2.5)
    r = cli("drop", rel, "--socket", n.sock)
    print(f"shoal drop (rollout removed): exit {r.returncode}\n{r.stdout.strip()}")
    if r.returncode != 0 or "does not reopen it" not in r.stdout or "rollout" in r.stdout:
        print("FAIL once the rollout is removed the drop does not say it is gone for good")
        fails += 1
    time.sleep(2.5)  # two announces
    if rel in cli("status", "--socket", n.sock).stdout:
        print("FAIL the release came back after the rollout was removed")
        fails += 1
    fails += shoalproc.stop_all([n])
    if t.stop() != 0:
        print("FAIL the tracker did not stop cleanly")
        fails += 1
    if fails:
        n.dump(tail=30)
    return fails


def case_cache_lock(tmp):
    k = make_keys(tmp, ["a", "b"])
    a = node("a", k, tmp, None)
    cache = a.cache
    fails = 0
    other_way = os.path.join(cache, "..", os.path.basename(cache))
    for label, cdir, extra in (("same cache-dir", cache, []),
                               ("spelt another way, state-dir none", other_way,
                                ["--state-dir", "none"])):
        args = shoalproc.node_args(k, "b", tmp, ["--control-socket",
                                                 os.path.join(tmp, "b.sock")])
        args[args.index("--cache-dir") + 1] = cdir
        if extra:
            args[args.index("--state-dir") + 1] = extra[1]
        b = Proc(shoalproc.shoald_argv(SHOALD, "b", args), name="b")
        rc = b.wait(30)
        want = f"used by another shoald (pid {a.p.pid})"
        if rc != 1 or want not in b.log():
            print(f"FAIL {label}: a second shoald on the cache: exit {rc}, "
                  f"expected 1 and '{want}'")
            b.dump(20)
            fails += 1
        if rc is None:
            b.p.kill()
            b.p.wait()
    args = shoalproc.node_args(k, "b", tmp, ["--control-socket", os.path.join(tmp, "m.sock"),
                                             "--store", "memory"])
    args[args.index("--cache-dir") + 1] = cache
    m = shoalproc.Shoald(SHOALD, "memory", args)
    fails += shoalproc.stop_all([m])
    a.p.kill()
    a.p.wait()
    b = node("b", k, tmp, None, cache=cache)
    print(f"after the first was killed: {b.name} started on {cache}")
    fails += shoalproc.stop_all([b])
    return fails


def case_register_manifest(tmp):
    k = make_keys(tmp, ["n"])
    run(SHOAL, "keygen", k("other-publisher"))
    hub = Hub(tmp, "2M", shards="1")
    ta, aaddr = start_tracker(k)
    tb, baddr = start_tracker(k)
    mf, mid = publish(k, hub, tmp, tracker=aaddr)
    fails = 0
    login = ["--identity", k("admin"), "--cred", k("admin") + ".cred"]
    r = cli("publish", "--manifest", mf, "--tracker", baddr, *login)
    print(r.stdout.strip())
    m = re.search(r"manifest id ([0-9a-f]{64})", r.stdout)
    if r.returncode != 0 or not m or m.group(1) != mid or \
            f"registered acme/model@{hub.commit}" not in r.stdout:
        print(f"FAIL shoal publish --manifest: exit {r.returncode}, want manifest id {mid}:\n"
              f"{r.stdout}{r.stderr}")
        return fails + 1
    if not tb.wait_for(r"manifest registered acme/model@%s id %s" % (hub.commit, mid), 5):
        print("FAIL tracker B does not log the manifest registered under the same id")
        fails += 1
    # Once more: the tracker already holds it, which is fine.
    r = cli("publish", "--manifest", mf, "--tracker", baddr, *login)
    if r.returncode != 0 or mid not in r.stdout:
        print(f"FAIL registering again: exit {r.returncode}: {r.stdout}{r.stderr}")
        fails += 1
    hub.reset()
    n = node("n", k, tmp, hub, ["--tracker", baddr])
    r = cli("pull", mid, "--socket", n.sock, "--timeout", str(WAIT_S))
    print(r.stdout.strip().splitlines()[-1:] if r.stdout.strip() else r.stderr)
    if r.returncode != 0 or not re.search(r"complete: .* 0 bytes from peers, %d from origin "
                                          r"\(100%%\)" % hub.size, r.stdout):
        print(f"FAIL the node did not complete from the origin: exit {r.returncode}: "
              f"{r.stdout}{r.stderr}")
        fails += 1
    if not n.wait_for(r"release %s: origin leases from tracker %s" % (mid[:16], re.escape(baddr)),
                      5):
        print("FAIL the node took no origin leases from tracker B")
        fails += 1
    if "not published to it" in n.log():
        print("FAIL tracker B did not hold the manifest: the node had to send it")
        fails += 1
    if hub.egress() > hub.size * 1.2:
        print(f"FAIL the origin served {hub.egress()} bytes for a {hub.size}-byte release")
        fails += 1
    fails += hubfix.check_files(n, hub)
    # A tracker that does not trust the signer says so, naming its key.
    tc, caddr = hubfix.start_tracker(TRACKER, lambda name: k("other-publisher")
                                     if name == "publisher" else k(name))
    r = cli("publish", "--manifest", mf, "--tracker", caddr, *login)
    print(r.stderr.strip())
    if r.returncode != 1 or "will not take manifests signed by" not in r.stderr or \
            "the signer's public key" not in r.stderr:
        print(f"FAIL an untrusted signer: exit {r.returncode}: {r.stdout}{r.stderr}")
        fails += 1
    bad = os.path.join(tmp, "bad.manifest")
    with open(mf, "rb") as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    with open(bad, "wb") as f:
        f.write(bytes(data))
    for args, rc, want in (
            (["--manifest", bad, "--tracker", baddr, *login], 1, "not a valid signed manifest"),
            (["--manifest", os.path.join(tmp, "nope.manifest"), "--tracker", baddr, *login], 1,
             "nope.manifest"),
            (["--manifest", mf, "--tracker", baddr, "--key", k("publisher"), *login], 2,
             "usage"),
            (["--manifest", mf, "--tracker", baddr], 2, "usage")):
        r = cli("publish", *args)
        if r.returncode != rc or want not in r.stderr:
            print(f"FAIL shoal publish {' '.join(args[:2])} ...: exit {r.returncode} (want {rc}, "
                  f"'{want}'): {r.stderr}")
            fails += 1
    fails += shoalproc.stop_all([n])
    for t in (ta, tb, tc):
        t.stop()
    if fails:
        n.dump(tail=40)
        tb.dump(tail=20)
    return fails


def case_tracker_forgot(tmp):
    k = make_keys(tmp, ["n"])
    hub = Hub(tmp, "8M", shards="2")
    t, taddr = hubfix.start_tracker(TRACKER, k, extra=["--max-manifests", "1", "--node-ttl-ms",
                                                       "1500", "--lease-ms", "2000"])
    mf, mid = publish(k, hub, tmp, tracker=taddr)
    registered = r"manifest registered acme/model@%s id %s" % (hub.commit, mid)
    other = os.path.join(tmp, "other")
    shoalproc.write_files(other, {"config.json": b'{"other": true}\n'})
    mf2 = os.path.join(tmp, "other.manifest")
    shoalproc.build_manifest(SHOAL, other, k, mf2, repo_id="acme/other")
    hub.reset()
    hub.add_faults([{"kind": "slow", "bps": 500000, "match": "/cdn/"}])
    proxy = CutProxy(taddr)
    # No origin fetch without a lease while the tracker is away: only the
    # tracker's leases may finish the release. A chunk a lease, so that
    # leases are still to ask for after the cut: a node alone with the
    # tracker is granted all it asks for, the rest of the release at once.
    n = node("n", k, tmp, hub, ["--tracker", proxy.addr, "--manifest", mf,
                                "--lease-fallback-ms", "120000", "--lease-chunks", "1"])
    fails = 0
    if not n.wait_for(r"tracker %s: authenticated" % re.escape(proxy.addr), 20):
        print("FAIL the node did not log in to the tracker")
        fails += 1
    pull = subprocess.Popen([SHOAL, "pull", mid, "--socket", n.sock, "--timeout", str(WAIT_S)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if catch_mid_download(n, hub.commit, low=5, high=70) is None:
        fails += 1
    proxy.cut(down_s=60)
    # The tracker drops the silent node (and its leases) after 1.5 s; then
    # the other release takes the only registered slot, forgetting ours.
    login = ["--identity", k("admin"), "--cred", k("admin") + ".cred"]
    r = None
    for _ in range(40):
        time.sleep(0.25)
        r = cli("publish", "--manifest", mf2, "--tracker", taddr, *login)
        if r.returncode == 0:
            break
    if r.returncode != 0:
        print(f"FAIL the tracker never made room for another release: {r.stderr}")
        fails += 1
    mt = cli("tracker-stats", "--tracker", taddr, "--key", k("admin"), "--cred",
             k("admin") + ".cred").stdout
    forgot = shoalproc.metric(mt, "shoal_tracker_manifests_forgotten_total")
    print(f"tracker forgot {forgot} manifest(s) to register the other release")
    if not forgot:
        print("FAIL the tracker did not forget the release's manifest")
        fails += 1
    proxy.paused_until = 0.0
    resent = r"release %s: tracker %s does not hold its manifest \(not published to it\), so " \
        r"it leases none of it: sending it ours" % (mid[:16], re.escape(proxy.addr))
    if not n.wait_for(resent, 30):
        print("FAIL the node did not send the manifest back on \"not published\"")
        fails += 1
    try:
        out, err = pull.communicate(timeout=WAIT_S + 10)
    except subprocess.TimeoutExpired:
        pull.kill()
        out, err = pull.communicate()
    print(out.strip().splitlines()[-1:] if out.strip() else err)
    if pull.returncode != 0:
        print(f"FAIL the pull did not complete: {out}{err}")
        fails += 1
    regs = [ln for ln in t.log().splitlines() if re.search(registered, ln)]
    if len(regs) != 2:
        print(f"FAIL the tracker registered the manifest {len(regs)} times, want 2 (published, "
              "then sent back by the node)")
        fails += 1
    if not n.wait_for(r"release %s: origin leases from tracker" % mid[:16], 1):
        print("FAIL the node took no origin leases")
        fails += 1
    fails += hubfix.check_files(n, hub)
    fails += shoalproc.stop_all([n])
    proxy.close()
    t.stop()
    if fails:
        n.dump(tail=50)
        t.dump(tail=30)
    return fails


def case_origin_min_rate(tmp):
    k = make_keys(tmp, ["f", "z"])
    hub = Hub(tmp, "1M", shards="1")
    mf, mid = publish(k, hub, tmp)
    port = hub.url.rsplit(":", 1)[1]
    # The node asks for the shard in up to two ranges at once: both
    # trickle, whichever comes first; a resume comes later, at full speed.
    # 60 KB/s is under the hub's own default floor (64 KiB/s) too.
    trickle = {"kind": "slow", "bps": 60000, "times": 2, "match": "/cdn/"}
    slow_line = r"origin 127\.0\.0\.1:%s failing: slow: \d+ B/s over ([\d.]+) s, under the " \
        r"floor of (\d+) B/s" % port
    fails = 0
    hub.reset()
    hub.add_faults([trickle])
    f = node("f", k, tmp, hub, ["--manifest", mf, "--origin-min-rate", "1M",
                                "--origin-slow-window-ms", "1000"])
    r = cli("pull", mid, "--socket", f.sock, "--timeout", str(WAIT_S))
    print(r.stdout.strip().splitlines()[-1:] if r.stdout.strip() else r.stderr)
    if r.returncode != 0:
        print(f"FAIL with a 1M floor the pull did not complete: {r.stdout}{r.stderr}")
        fails += 1
    m = re.search(slow_line, f.log())
    if not m or (m.group(1), m.group(2)) != ("1.0", str(1 << 20)):
        print("FAIL with --origin-min-rate 1M --origin-slow-window-ms 1000 the trickling "
              "request was not ended as slow under a 1048576 B/s floor over 1.0 s")
        fails += 1
    else:
        print(f"logged: {m.group(0)}")
    fails += hubfix.check_files(f, hub)
    fails += shoalproc.stop_all([f])

    # 0 never aborts: the same trickle, over a range that lasts at least
    # two windows at 100 KB/s, is left to finish.
    hub.reset()
    hub.add_faults([trickle])
    conf = os.path.join(tmp, "never.conf")
    with open(conf, "w") as c:
        c.write("origin-min-rate = 0\norigin-slow-window-ms = 1000\n")
    z = node("z", k, tmp, hub, ["--config", conf, "--manifest", mf])
    r = cli("pull", mid, "--socket", z.sock, "--timeout", str(WAIT_S))
    print(r.stdout.strip().splitlines()[-1:] if r.stdout.strip() else r.stderr)
    if r.returncode != 0:
        print(f"FAIL with origin-min-rate = 0 the pull did not complete: {r.stdout}{r.stderr}")
        fails += 1
    cdn = [e.get("range") or "" for e in hub.stats()["log"] if e["path"].startswith("/cdn/")]
    spans = [re.match(r"bytes=(\d+)-(\d+)$", x) for x in cdn]
    spans = sorted((int(m.group(1)), int(m.group(2))) for m in spans if m)
    longest = max((b - a + 1 for a, b in spans), default=0)
    if len(spans) != len(cdn) or longest < 2 * trickle["bps"]:
        print(f"FAIL no trickled request long enough to outlast two windows: {cdn}")
        fails += 1
    elif any(spans[i][1] >= spans[i + 1][0] for i in range(len(spans) - 1)):
        # A resumed range starts inside the one it continues.
        print(f"FAIL an origin request was resumed: {cdn}")
        fails += 1
    else:
        print(f"trickled requests {cdn} at {trickle['bps']} B/s, none ended")
    if re.search(r"failing: slow: ", z.log()):
        print("FAIL with origin-min-rate = 0 a request was ended as slow")
        fails += 1
    if not z.wait_for(r"no range is ended for being slow", 1):
        print("FAIL the log does not say no range is ended for being slow")
        fails += 1
    fails += hubfix.check_files(z, hub)
    fails += shoalproc.stop_all([z])
    if fails:
        f.dump(tail=40)
        z.dump(tail=40)
    return fails


def case_hf_partial(tmp):
    k = make_keys(tmp, ["h"])
    hub = Hub(tmp, "16M", shards="2")
    slow_hub(hub, 1500000)
    trk, taddr = start_tracker(k)
    _, mid = publish(k, hub, tmp, "main", taddr)
    fails = 0
    n = node("h", k, tmp, hub, ["--tracker", taddr])
    repo = os.path.join(n.cache, "models--acme--model")
    first = subprocess.Popen([SHOAL, "pull", mid, "--socket", n.sock, "--timeout", "60"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pct = catch_mid_download(n, hub.commit, low=10, high=85)
    if pct is None:
        first.kill()
        first.wait()
        n.dump()
        return 1
    n.p.terminate()
    n.p.wait()
    first.wait(timeout=30)
    hf_names = glob.glob(os.path.join(repo, "blobs", "*.incomplete"))
    parts = glob.glob(os.path.join(repo, ".shoal", "*.incomplete"))
    print(f"stopped (SIGTERM) at {pct:.1f}%: {len(hf_names)} blobs/*.incomplete, "
          f"{len(parts)} .shoal/*.incomplete")
    if hf_names:
        print(f"FAIL partial files under huggingface_hub's own download name: {hf_names}")
        fails += 1
    if not parts:
        print("FAIL no partial file under .shoal/")
        n.dump(tail=30)
        return fails + 1
    # What an older shoald left: its partial files in blobs/ under
    # huggingface_hub's name, which it made of the sha256. The restarted
    # node moves them back (keeping their verified chunks). Only the LFS
    # shards' partials (named by the sha256, their ETag): a file kept in git
    # is named by its git blob id now, and blobs/<that>.incomplete is
    # huggingface_hub's own download, never ours to move (it made this case
    # fail whenever the stop caught config.json unfinished).
    parts = [p for p in parts if re.fullmatch(r"[0-9a-f]{64}", os.path.basename(p).split(".")[0])]
    for p in parts:
        os.rename(p, os.path.join(repo, "blobs", os.path.basename(p)))
    slow_hub(hub, 1000000)
    n2 = node("h", k, tmp, hub, ["--tracker", taddr])
    if not n2.wait_for(r"state file \S+: 1 release reopened", 10):
        print("FAIL the restarted node did not reopen the release it was pulling")
        fails += 1
    again = release_pct(n2, hub.commit)
    print(f"restarted at {again}%")
    if again is None or again < pct * 0.9:
        print("FAIL the verified chunks of the moved partial files were not kept")
        fails += 1
    left = glob.glob(os.path.join(repo, "blobs", "*.incomplete"))
    moved = [p for p in parts if os.path.exists(p)]
    print(f"after the restart: {len(left)} blobs/*.incomplete, {len(moved)} of "
          f"{len(parts)} moved back to .shoal/")
    if left or not moved:
        print(f"FAIL the older partial files were not moved out of blobs/: {left}")
        fails += 1
    # huggingface_hub downloading the same shard (its flock held): the node
    # does not rename the shard into blobs/ until it lets go.
    sha = os.path.basename(max(moved or parts, key=os.path.getsize)).split(".")[0]
    lockdir = os.path.join(n.cache, ".locks", "models--acme--model")
    os.makedirs(lockdir, exist_ok=True)
    lock = open(os.path.join(lockdir, sha + ".lock"), "a+")
    fcntl.flock(lock, fcntl.LOCK_EX)
    t0 = time.monotonic()
    blocked = n2.wait_for(r"publishing into the cache failed.*holds \S+/\.locks/models--acme--model/"
                          + sha + r"\.lock", 60)
    if not blocked:
        print("FAIL the node did not wait for huggingface_hub's lock before publishing")
        fails += 1
    if os.path.exists(os.path.join(repo, "blobs", sha)):
        print("FAIL the shard was renamed into blobs/ while huggingface_hub held its lock")
        fails += 1
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()
    done = n2.wait_for(r"release [0-9a-f]{16} \(acme/model@%s\) complete" % hub.commit, 60)
    print(f"held the lock {time.monotonic() - t0:.1f} s; complete once let go: {bool(done)}")
    if not done:
        print("FAIL the release did not complete once the lock was let go")
        fails += 1
    fails += hubfix.check_files(n2, hub)
    left = glob.glob(os.path.join(repo, "blobs", "*.incomplete"))
    if left:
        print(f"FAIL partial files left in blobs/: {left}")
        fails += 1
    fails += shoalproc.stop_all([n2])
    if fails:
        n.dump(tail=30)
        n2.dump(tail=60)
    return fails


def case_hf_blob_names(tmp):
    k = make_keys(tmp, ["b", "m"])
    hub = Hub(tmp, "8M", shards="2")
    trk, taddr = start_tracker(k)
    _, mid = publish(k, hub, tmp, "main", taddr)
    fails = 0
    n = node("b", k, tmp, hub, ["--tracker", taddr])
    r = cli("pull", "acme/model@main", "--socket", n.sock, "--timeout", "60", timeout=90)
    if r.returncode != 0:
        print(f"FAIL the pull did not complete: {r.stderr.strip()}")
        fails += 1
    fails += hubfix.check_files(n, hub)
    repo = os.path.join(n.cache, "models--acme--model")
    snap = os.path.join(repo, "snapshots", hub.commit)
    want = set()
    ngit = 0
    for path, e in sorted(hub.files.items()):
        # huggingface_hub's name: the ETag, i.e. the sha256 of an LFS file,
        # the git blob sha1 of one kept in git.
        name = e["sha256"] if e["lfs"] else e["blob_id"]
        ngit += not e["lfs"]
        want.add(name)
        link = os.path.join(snap, path)
        target = os.readlink(link) if os.path.islink(link) else None
        print(f"{path}: lfs {e['lfs']}, link -> {target}")
        if target is None or os.path.basename(target) != name or \
                os.path.dirname(target) != os.path.join(*([".."] * (path.count("/") + 2)),
                                                        "blobs"):
            print(f"FAIL {path} links to {target}, want ../../blobs/{name}")
            fails += 1
    have = set(os.listdir(os.path.join(repo, "blobs")))
    if have != want:
        print(f"FAIL blobs/ holds {sorted(have - want)} beyond, misses {sorted(want - have)}")
        fails += 1
    if ngit == 0:
        print("FAIL the generated repo has no file kept in git")
        fails += 1
    # A second node gets the release from the first (chunks served from
    # blobs named by blob id), with no origin.
    m = node("m", k, tmp, None, ["--tracker", taddr, "--no-origin", "--peer", n.addr])
    r = cli("pull", mid, "--socket", m.sock, "--timeout", "60", timeout=90)
    if r.returncode != 0:
        print(f"FAIL a peer could not pull from the first node: {r.stderr.strip()}")
        fails += 1
    fails += hubfix.check_files(m, hub)
    fails += shoalproc.stop_all([n, m])
    if fails:
        n.dump(tail=40)
        m.dump(tail=40)
    return fails


def hf_fill(cache, hub, bad=None, names=None):
    """What huggingface_hub's hf_hub_download of each file of acme/model@main
    leaves in |cache| (it hashes nothing it downloads): blobs/<ETag> (the
    sha256 of an LFS file, the git blob id of another), a relative link
    snapshots/<commit>/<path> to it, refs/main. The blob of |bad| (a path)
    gets 16 bytes inverted mid-file, its size unchanged: what a gateway
    serving wrong bytes leaves. |names| maps paths to the blob name to use
    instead (a gateway's own ETag). Returns the repo folder."""
    repo = os.path.join(cache, "models--acme--model")
    src = os.path.join(hub.root, "models", "acme", "model", "commits", hub.commit)
    for path, e in hub.files.items():
        name = (names or {}).get(path) or (e["sha256"] if e["lfs"] else e["blob_id"])
        blob = os.path.join(repo, "blobs", name)
        os.makedirs(os.path.dirname(blob), exist_ok=True)
        with open(os.path.join(src, path), "rb") as f:
            data = bytearray(f.read())
        if path == bad:
            mid = len(data) // 2
            data[mid:mid + 16] = bytes(b ^ 0xff for b in data[mid:mid + 16])
        with open(blob, "wb") as f:
            f.write(data)
        link = os.path.join(repo, "snapshots", hub.commit, path)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(hub.commit)
    return repo


def case_hf_unverified(tmp):
    k = make_keys(tmp, ["u", "p"])
    hub = Hub(tmp, "8M", shards="2")
    trk, taddr = start_tracker(k)
    _, mid = publish(k, hub, tmp, "main", taddr)
    fails = 0
    shard = max((p for p, e in hub.files.items() if e["lfs"]), key=lambda p: hub.files[p]["size"])
    cache = os.path.join(tmp, "cache-u")
    repo = hf_fill(cache, hub, bad=shard)
    before = hub.egress()
    n = node("u", k, tmp, hub, ["--tracker", taddr])
    r = cli("pull", "acme/model@main", "--socket", n.sock, "--timeout", "60", timeout=90)
    fetched = hub.egress() - before
    print(f"pull into the cache huggingface_hub filled ({shard} wrong): exit {r.returncode}, "
          f"{fetched} bytes from the origin")
    if r.returncode != 0:
        print(f"FAIL the pull did not complete: {r.stderr.strip()}")
        fails += 1
    # Its wrong bytes are fetched again (only the chunks that differ), the
    # rest is kept; before, every blob was trusted unhashed and the wrong
    # shard called complete and handed out.
    fails += hubfix.check_files(n, hub)
    nfiles = len(hub.files)
    said = n.wait_for(r"hashed %d cached file\(s\) \(\d+ bytes\) shoald had not verified: "
                      r"%d matched, 1 did not" % (nfiles, nfiles - 1), 5)
    if not said:
        print(f"FAIL the log does not say it hashed the {nfiles} files it found, one wrong")
        fails += 1
    if not n.wait_for(r"%s\) was not verified by shoald and does not match its sha256"
                      % re.escape(shard), 5):
        print(f"FAIL the log does not name {shard} as found wrong")
        fails += 1
    if not 0 < fetched < hub.files[shard]["size"]:
        print(f"FAIL fetched {fetched} bytes: want more than none and less than the shard "
              f"({hub.files[shard]['size']})")
        fails += 1
    n.stop()
    # A restart hashes nothing shoald verified; a blob replaced since (a
    # new file, same bytes: copied back by hand) is hashed once.
    cfg = hub.files["config.json"]
    blob = os.path.join(repo, "blobs", cfg["blob_id"])
    with open(blob, "rb") as f:
        data = f.read()
    os.unlink(blob)
    with open(blob, "wb") as f:
        f.write(data)
    n2 = node("u", k, tmp, hub, ["--tracker", taddr])
    if not n2.wait_for(r"state file \S+: 1 release reopened, 0 dropped", 10):
        print("FAIL the restarted node did not reopen the release")
        fails += 1
    # The blob is hashed on a worker: its line may follow the reopen's.
    n2.wait_for(r"shoald had not verified", 10)
    hashed = [ln for ln in n2.lines if "shoald had not verified" in ln]
    print("after the restart: " + ("; ".join(hashed) or "nothing hashed"))
    if len(hashed) != 1 or not re.search(r"hashed 1 cached file\(s\) \(%d bytes\) shoald had "
                                         r"not verified: 1 matched" % cfg["size"], hashed[0]):
        print("FAIL the restart did not hash exactly the one blob replaced since")
        fails += 1
    # What it serves is right: a peer pulling only from it completes.
    p = node("p", k, tmp, None, ["--no-origin", "--peer", n2.addr])
    r = cli("pull", mid, "--socket", p.sock, "--timeout", "60", timeout=90)
    if r.returncode != 0:
        print(f"FAIL a peer could not pull from the node: {r.stderr.strip()}")
        fails += 1
    fails += hubfix.check_files(p, hub)
    fails += shoalproc.stop_all([n2, p])
    if fails:
        n.dump(tail=40)
        n2.dump(tail=40)
        p.dump(tail=30)
    return fails


def hf_delete_revision(repo, commit):
    """What `huggingface-cli delete-cache` does to revision |commit| of
    |repo| (a repo folder) when no other revision shares its blobs: its
    snapshot folder, its blobs and the refs naming it go; .shoal/ stays."""
    shutil.rmtree(os.path.join(repo, "snapshots", commit), ignore_errors=True)
    for b in os.listdir(os.path.join(repo, "blobs")):
        os.unlink(os.path.join(repo, "blobs", b))
    refs = os.path.join(repo, "refs")
    for r in os.listdir(refs) if os.path.isdir(refs) else []:
        with open(os.path.join(refs, r)) as f:
            if f.read().strip() == commit:
                os.unlink(os.path.join(refs, r))


def case_hf_gateway_etag(tmp):
    k = make_keys(tmp, ["g"])
    hub = Hub(tmp, "8M", shards="2")
    trk, taddr = start_tracker(k)
    publish(k, hub, tmp, "main", taddr)
    fails = 0
    shard = max((p for p, e in hub.files.items() if e["lfs"]), key=lambda p: hub.files[p]["size"])
    gw = "f" * 64
    repo = hf_fill(os.path.join(tmp, "cache-g"), hub, names={shard: gw})
    before = hub.egress()
    n = node("g", k, tmp, hub, ["--tracker", taddr])
    r = cli("pull", "acme/model@main", "--socket", n.sock, "--timeout", "60", timeout=90)
    fetched = hub.egress() - before
    left = sorted(os.listdir(os.path.join(repo, "blobs")))
    print(f"pull with {shard} under blobs/{gw[:8]}...: exit {r.returncode}, {fetched} bytes from "
          f"the origin; blobs/ holds {len(left)}: {[b[:12] for b in left]}")
    if r.returncode != 0:
        print(f"FAIL the pull did not complete: {r.stderr.strip()}")
        fails += 1
    fails += hubfix.check_files(n, hub)
    if fetched != 0:
        print("FAIL bytes that were in the cache were fetched again")
        fails += 1
    if gw in left:
        print(f"FAIL blobs/{gw} is left behind, linked by no snapshot")
        fails += 1
    if not n.wait_for(r"linked to blobs/%s .*whose bytes match its sha256: kept as blobs/%s"
                      % (gw, hub.files[shard]["sha256"]), 5):
        print("FAIL the log does not say the gateway's blob was kept under its own name")
        fails += 1
    return shoalproc.finish(fails, [n], tail=40)


def case_hf_delete_cache(tmp):
    k = make_keys(tmp, ["d"])
    hub = Hub(tmp, "4M", shards="2")
    trk, taddr = start_tracker(k)
    _, mid = publish(k, hub, tmp, "main", taddr)
    fails = 0
    n = node("d", k, tmp, hub, ["--tracker", taddr])
    r = cli("pull", "acme/model@main", "--socket", n.sock, "--timeout", "60", timeout=90)
    if r.returncode != 0:
        print(f"FAIL the first pull did not complete: {r.stderr.strip()}")
        return 1
    repo = os.path.join(n.cache, "models--acme--model")
    # Deleted while the node seeds it, then pulled again: by branch, then
    # by manifest id. Each pull fetches the release again and puts it back
    # (snapshot, blobs, refs/main); before, it said complete at once with
    # nothing fetched, and wrote refs/main to the deleted snapshot.
    for i, rel in enumerate(("acme/model@main", mid)):
        hf_delete_revision(repo, hub.commit)
        before = hub.egress()
        r = cli("pull", rel, "--socket", n.sock, "--timeout", "60", timeout=90)
        fetched = hub.egress() - before
        ref = read_ref(n, "main")
        print(f"deleted, then `shoal pull {rel[:24]}`: exit {r.returncode}, {fetched} bytes "
              f"from the origin (the release: {hub.size}), refs/main {ref}")
        if r.returncode != 0:
            print(f"FAIL the pull did not complete: {r.stdout.strip()} {r.stderr.strip()}")
            fails += 1
        if fetched < hub.size:
            print("FAIL the deleted files were not fetched again")
            fails += 1
        fails += hubfix.check_files(n, hub)
        if ref != hub.commit:
            print(f"FAIL refs/main is {ref}, want {hub.commit}")
            fails += 1
        gone = [ln for ln in n.lines if re.search(r"its files are gone from the cache "
                                                  r"\(\S+ is not in snapshots/" + hub.commit, ln)]
        if len(gone) != i + 1:
            print(f"FAIL the log says {len(gone)} times that the release's files were gone, "
                  f"want {i + 1}")
            fails += 1
    return shoalproc.finish(fails, [n], tail=60)


def slow_node(name, k, tmp, hub, extra, ms):
    """node() with slowfs preloaded (the test's SHOAL_TEST_SLOWFS): its disk
    is slow while the returned flag file exists, by |ms| per operation."""
    flag = os.path.join(tmp, name + ".slow")
    saved = dict(os.environ)
    os.environ.update(LD_PRELOAD=os.environ["SHOAL_TEST_SLOWFS"], SHOAL_SLOWFS_FLAG=flag,
                      SHOAL_SLOWFS_MS=str(ms),
                      # The sanitizers' runtime would insist on coming first.
                      ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                      ":verify_asan_link_order=0")
    try:
        n = node(name, k, tmp, hub, extra)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return n, flag


def case_hf_hash_busy(tmp):
    k = make_keys(tmp, ["h"])
    hub = Hub(tmp, "8M", shards="2")
    trk, taddr = start_tracker(k)
    publish(k, hub, tmp, "main", taddr)
    hf_fill(os.path.join(tmp, "cache-h"), hub)
    n, flag = slow_node("h", k, tmp, hub, ["--tracker", taddr], 250)
    fails = 0
    open(flag, "w").close()
    before = hub.egress()
    p = Proc([SHOAL, "pull", "acme/model@main", "--socket", n.sock, "--timeout", "60"],
             name="pull")
    st = status_saying(n, "found in the cache that shoald had not verified", tries=50)
    print(st.strip())
    if not re.search(r"hashing \d+ file\(s\) \(\d+ bytes\) found in the cache that shoald had "
                     r"not verified", st):
        print("FAIL `shoal status` never showed the files found in the cache being hashed")
        fails += 1
    code = p.wait(60)
    os.unlink(flag)
    fetched = hub.egress() - before
    print(f"shoal pull acme/model@main: exit {code}, {fetched} bytes from the origin")
    if code != 0:
        print(f"FAIL the pull did not complete: {' '.join(p.out + p.lines)}")
        fails += 1
    if fetched != 0:
        print("FAIL bytes that were in the cache were fetched from the origin")
        fails += 1
    nfiles = len(hub.files)
    if not n.wait_for(r"hashed %d cached file\(s\) \(\d+ bytes\) shoald had not verified: "
                      r"%d matched, 0 did not" % (nfiles, nfiles), 5):
        print(f"FAIL the log does not say it hashed the {nfiles} files it found")
        fails += 1
    fails += hubfix.check_files(n, hub)
    return shoalproc.finish(fails, [n])


def case_hf_check_busy(tmp):
    k = make_keys(tmp, ["c"])
    hub = Hub(tmp, "4M", shards="2")
    trk, taddr = start_tracker(k)
    _, mid = publish(k, hub, tmp, "main", taddr)
    n, flag = slow_node("c", k, tmp, hub, ["--tracker", taddr], 400)
    fails = 0
    r = cli("pull", "acme/model@main", "--socket", n.sock, "--timeout", "60", timeout=90)
    if r.returncode != 0:
        print(f"FAIL the first pull did not complete: {r.stderr.strip()}")
        return shoalproc.finish(1, [n])
    open(flag, "w").close()
    p = Proc([SHOAL, "pull", mid, "--socket", n.sock, "--timeout", "60"], name="pull")
    st = status_saying(n, "checking that its files are still in the cache", tries=40)
    print(st.strip())
    if "checking that its files are still in the cache" not in st:
        print("FAIL `shoal status` never showed the release being checked")
        fails += 1
    code = p.wait(60)
    os.unlink(flag)
    print(f"shoal pull {mid[:16]}: exit {code}: {' '.join(p.out).strip()}")
    if code != 0 or not any("complete" in ln for ln in p.out):
        print("FAIL the pull of the complete release did not exit 0 saying complete")
        fails += 1
    gone = [ln for ln in n.lines if "files are gone" in ln]
    if gone:
        print("FAIL the release's files were taken as gone:\n" + "\n".join(gone))
        fails += 1
    fails += hubfix.check_files(n, hub)
    return shoalproc.finish(fails, [n])


def case_max_releases_rollout(tmp):
    """--max-releases 2, two releases open (one a tracker rollout names, one
    pulled), and a restart with a third, incomplete release given by
    --manifest, which opens first: the rollout's release is never closed
    for room, the pulled one is left closed (before: the state file did not
    say a rollout wanted it, so at the start it was closed for the pulled
    one, then reopened at the tracker's first answer, closing that)."""
    k = make_keys(tmp, ["s", "m"])
    both, rels = three_releases(tmp, k, 11)
    t, taddr = start_tracker(k)
    admin = ["--tracker", taddr, "--key", k("admin"), "--cred", k("admin") + ".cred"]
    for mf, _, _ in rels:
        r = cli("publish", "--manifest", mf, "--tracker", taddr, "--identity", k("admin"),
                "--cred", k("admin") + ".cred")
        if r.returncode != 0:
            print(f"FAIL publish {mf}: {r.stderr}")
            return 1
    seed = node("s", k, tmp, None, ["--no-origin", "--seed-dir", both, "--tracker", taddr,
                                    *[a for mf, _, _ in rels for a in ("--manifest", mf)]])
    margs = ["--no-origin", "--tracker", taddr, "--max-releases", "2"]
    m = node("m", k, tmp, None, margs)
    fails = 0
    r = cli("rollout", rels[0][2], *admin)
    if r.returncode != 0:
        print(f"FAIL shoal rollout: {r.stderr}")
        return 1
    if not m.wait_for(r"release \S+ \(%s\) complete" % re.escape(rels[0][2]), 60) and \
            not status_saying(m, "complete"):
        print("FAIL the rollout's release did not complete")
        fails += 1
    r = cli("pull", rels[2][1], "--socket", m.sock, "--timeout", "60")
    if r.returncode != 0:
        print(f"FAIL pull of {rels[2][2]}: exit {r.returncode}: {r.stdout}{r.stderr}")
        fails += 1
    sf = state_file(m)
    fails += shoalproc.stop_all([m])
    with open(sf) as f:
        listed = f.read()
    print(listed.strip())
    if not re.search(r"^%s model %s - complete\+rollout /" % (rels[0][1], re.escape(rels[0][2])),
                     listed, re.M):
        print("FAIL the state file does not say a rollout named the first release")
        fails += 1
    # Restarted with a --manifest release it has none of: that one opens
    # first, incomplete, and the two listed contend for the other slot
    # before any tracker has answered.
    m2 = node("m", k, tmp, None, margs + ["--manifest", rels[1][0]])
    if not m2.wait_for(r"release \S+ \(%s\) complete" % re.escape(rels[1][2]), 60) or \
            not m2.wait_for(r"tracker \S+: authenticated", 10):
        print(f"FAIL the --manifest release {rels[1][2]} did not complete")
        fails += 1
    time.sleep(2.5)  # two announces (every second) and their answers
    st = cli("status", "--socket", m2.sock).stdout
    print(st.strip())
    closed = [ln for ln in m2.lines if "closed to make room" in ln]
    if closed:
        print("FAIL releases were closed for room after the restart:\n" + "\n".join(closed))
        fails += 1
    if rels[0][2] not in st or rels[1][2] not in st:
        print("FAIL the rollout's and the --manifest release are not the two open")
        fails += 1
    if not m2.wait_for(r"state: release %s \(\S+\) not reopened, dropped from the state: "
                       r"max-releases reached \(2 open\): 1 named by a tracker rollout, 0 "
                       r"sending files to a loader, 1 still pulling" % re.escape(rels[2][2]), 0):
        print("FAIL the pulled release was not the one left closed, saying why")
        fails += 1
    # Both slots held by rollouts: shoal drop would not help (the rollout
    # brings its release back), and the refusal says what does (QA G1).
    r = cli("rollout", rels[1][2], *admin)
    if r.returncode != 0:
        print(f"FAIL shoal rollout: {r.stderr}")
        fails += 1
    time.sleep(2.5)  # the rollout reaches the node with its next announces
    r = cli("pull", rels[2][1], "--socket", m2.sock, "--timeout", "20")
    print(r.stdout + r.stderr)
    if r.returncode == 0 or not re.search(r"2 named by a tracker rollout.*remove its rollout "
                                          r"\(shoal rollout --remove\)", r.stdout + r.stderr):
        print(f"FAIL with both slots held by rollouts, the refusal of {rels[2][2]} does not "
              "say to remove a rollout")
        fails += 1
    fails += shoalproc.stop_all([m2, seed])
    if fails or os.environ.get("DUMP"):
        m2.dump(tail=60)
    return fails


def case_rollout_list_ref(tmp):
    """What an operator running release after release sees of the tracker's
    rollouts (QA19 F3, F4, F6, F11): `shoal rollout --list` lists every
    rollout with its counts and ref (before: a usage error), tracker-stats
    has shoal_tracker_rollouts, `shoal status` marks the releases a rollout
    pins; `--ref main` moves refs/main on every node, the newest rollout
    naming it winning (before: refs were never written by rollouts); a node
    lost from the fleet is counted as gone (before: it vanished from every
    count); and a rollout of a release the tracker has no manifest for
    names `shoal publish --manifest`."""
    k = make_keys(tmp, ["a", "b"])
    hub = Hub(tmp, "4M")
    v1 = hub.commit
    v2 = run(PY, os.path.join(HUB_DIR, "genrepo.py"), hub.root, "acme/model", "--size", "4M",
             "--shards", "2", "--seed", "10", "--branch", "dev").strip()
    rf = os.path.join(tmp, "rollouts")
    trk, taddr = hubfix.start_tracker(TRACKER, k, extra=["--rollout-file", rf,
                                                         "--node-ttl-ms", "3000"])
    publish(k, hub, tmp, "main", taddr)
    publish(k, hub, tmp, "dev", taddr)
    admin = ["--tracker", taddr, "--key", k("admin"), "--cred", k("admin") + ".cred"]
    as_a = ["--tracker", taddr, "--key", k("a"), "--cred", k("a") + ".cred"]
    nodes = [node(n, k, tmp, hub, ["--tracker", taddr]) for n in ("a", "b")]
    fails = 0

    def refs_main(want):
        for _ in range(int(WAIT_S / 0.2)):
            if all(read_ref(n, "main") == want for n in nodes):
                return True
            time.sleep(0.2)
        return False

    r = cli("rollout", "--list", *as_a)
    print(f"--list, none: exit {r.returncode}: {r.stdout.strip()} {r.stderr.strip()}")
    if r.returncode != 0 or "0 rollouts recorded" not in r.stdout:
        print("FAIL shoal rollout --list with no rollout did not say 0")
        fails += 1
    for rel in (v1, v2):
        r = cli("rollout", "acme/model@" + rel, "--ref", "main", *admin)
        print(f"rollout {rel[:8]} --ref main: exit {r.returncode}: {r.stdout.strip()}")
        if r.returncode != 0 or "nodes write refs/main" not in r.stdout:
            print(f"FAIL shoal rollout acme/model@{rel} --ref main")
            fails += 1
        if not refs_main(rel):
            print(f"FAIL refs/main on the nodes is not {rel}: "
                  f"{[read_ref(n, 'main') for n in nodes]}")
            fails += 1
    # The older rollout lost the ref: a later announce does not move it back.
    time.sleep(2.5)
    if [read_ref(n, "main") for n in nodes] != [v2, v2]:
        print("FAIL refs/main moved back to the older rollout's commit")
        fails += 1
    r = cli("rollout", "--list", *as_a)
    print(r.stdout.strip())
    want = [f"acme/model@{v1} (all zones): 2 complete, 0 partial, 0 without it",
            f"acme/model@{v2} (all zones) ref main: 2 complete, 0 partial, 0 without it"]
    if r.returncode != 0 or "2 rollouts recorded" not in r.stdout or \
            [ln for ln in r.stdout.splitlines()[1:]] != want:
        print(f"FAIL shoal rollout --list should list {want}")
        fails += 1
    text = open(rf).read()
    if f"rollout acme/model@{v2} ref main\n" not in text or \
            f"rollout acme/model@{v1}\n" not in text:
        print(f"FAIL the rollout file does not keep the ref with the newest rollout:\n{text}")
        fails += 1
    r = cli("tracker-stats", *as_a)
    if "shoal_tracker_rollouts 2\n" not in r.stdout:
        print("FAIL tracker-stats has no shoal_tracker_rollouts 2")
        fails += 1
    st = cli("status", "--socket", nodes[0].sock).stdout
    print(st.strip())
    if st.count("rollout: a tracker rollout names it") != 2:
        print("FAIL shoal status does not mark both rolled-out releases")
        fails += 1
    # A node lost without a word: counted as gone, not just out of the counts.
    nodes[1].p.kill()
    nodes[1].p.wait()
    out = ""
    for _ in range(100):
        r = cli("rollout", "acme/model@" + v2, "--status", *as_a)
        out = r.stdout
        if "gone since" in out:
            break
        time.sleep(0.2)
    print(out.strip())
    if "1 node complete, 0 partial, 0 without it" not in out or \
            "1 node gone since it last announced (not counted above): 1 lost" not in out:
        print("FAIL rollout --status does not count the lost node as gone")
        fails += 1
    typo = "acme/model@" + "ab" * 20
    r = cli("rollout", typo, *admin)
    print(f"rollout {typo}: {r.stderr.strip()}")
    if r.returncode != 1 or "shoal publish --manifest" not in r.stderr or \
            "restarted" not in r.stderr:
        print("FAIL a rollout of an unregistered release does not name shoal publish --manifest")
        fails += 1
    return fails


def case_rollout_gone_refused(tmp):
    """QA19 F4 as reported: a node whose credential runs out is refused by
    the tracker and drops out of every live count; `shoal rollout --status`
    says so ("1 node gone since it last announced ...: 1 refused at login")
    instead of reading 1 complete of 2 as done. Before, the node vanished
    from the counts without a word."""
    k = make_keys(tmp, ["a", "c"])
    # c's credential ends 8 s from now.
    run(SHOAL, "cred", "issue", "--cluster-key", k("cluster"), "--node", k("c") + ".pub",
        "--out", k("c") + ".cred", "--days", "0.0000926")
    hub = Hub(tmp, "4M")
    trk, taddr = hubfix.start_tracker(TRACKER, k, extra=["--node-ttl-ms", "3000",
                                                         "--gone-ms", "500"])
    publish(k, hub, tmp, "main", taddr)
    rel = f"acme/model@{hub.commit}"
    admin = ["--tracker", taddr, "--key", k("admin"), "--cred", k("admin") + ".cred"]
    as_a = ["--tracker", taddr, "--key", k("a"), "--cred", k("a") + ".cred"]
    r = cli("rollout", rel, *admin)
    if r.returncode != 0:
        print(f"FAIL shoal rollout: {r.stderr}")
        return 1
    nodes = [node(n, k, tmp, hub, ["--tracker", taddr]) for n in ("a", "c")]
    fails = 0
    out = ""
    for _ in range(150):
        out = cli("rollout", rel, "--status", *as_a).stdout
        if "refused at login" in out:
            break
        time.sleep(0.2)
    print(out.strip())
    if "1 node complete, 0 partial, 0 without it" not in out or \
            "1 node gone since it last announced (not counted above): 1 refused at login " \
            "(credential expired or key revoked)" not in out:
        print("FAIL rollout --status does not count the node shut out by its credential")
        fails += 1
    return fails


def case_tracker_manifest_dir(tmp):
    """QA19 F6: a tracker restart forgot every registered manifest no node
    held, so a rollback failed ("no manifest registered ... publish it
    first") and publish read the whole release from the Hub again. With
    --manifest-dir the tracker keeps what it registers and registers it
    again at start, signatures checked again: the rollout of a release no
    node ever held succeeds after a restart, and a kept file whose bytes
    were changed is refused and logged."""
    k = make_keys(tmp, [])
    hub = Hub(tmp, "4M")
    md = os.path.join(tmp, "manifests")
    extra = ["--manifest-dir", md]
    t1, taddr = hubfix.start_tracker(TRACKER, k, extra=extra)
    mf, mid = publish(k, hub, tmp, "main", taddr)
    rel = f"acme/model@{hub.commit}"
    admin = ["--tracker", taddr, "--key", k("admin"), "--cred", k("admin") + ".cred"]
    fails = 0
    kept = os.path.join(md, mid + ".manifest")
    if not os.path.exists(kept) or open(kept, "rb").read() != open(mf, "rb").read():
        print(f"FAIL the registered manifest is not kept as {kept}")
        fails += 1
    # A planted file that does not hash to its name, signed or not.
    bad = os.path.join(md, "ab" * 32 + ".manifest")
    with open(bad, "wb") as f:
        f.write(open(mf, "rb").read())
    t1.stop()
    t2, _ = hubfix.start_tracker(TRACKER, k, listen=taddr, extra=extra)
    if not t2.wait_for(r"manifest dir \S+: 1 manifest\(s\) registered again, 0 past "
                       r"--manifest-ttl-h removed, 1 refused", 10) or \
            not t2.wait_for(r"manifest file \S+abab\.manifest not registered: its bytes do "
                            r"not hash to its name", 1):
        print("FAIL the restarted tracker did not register the kept manifest and refuse "
              "the planted one")
        t2.dump(tail=10)
        fails += 1
    r = cli("rollout", rel, *admin)
    print(f"rollout after the restart: exit {r.returncode}: {r.stdout.strip()} "
          f"{r.stderr.strip()}")
    if r.returncode != 0:
        print("FAIL the rollout of a release no node holds failed after a restart")
        fails += 1
    return fails


shoalproc.main(CASE, {"origin_min_rate": case_origin_min_rate,
                      "max_releases_rollout": case_max_releases_rollout,
                      "register_manifest": case_register_manifest,
                      "tracker_forgot": case_tracker_forgot, "origin_bytes": case_origin_bytes, "store_full": case_store_full,
                      "names": case_names, "branch": case_branch, "refs": case_refs,
                      "tracker_stats": case_tracker_stats,
                      "tracker_identity": case_tracker_identity,
                      "cli_tracker_identity": case_cli_tracker_identity,
                      "origin_refused_give_back": case_origin_refused_give_back,
                      "deny_keys": case_deny_keys,
                      "drop_repull": case_drop_repull, "drop_rollout": case_drop_rollout,
                      "status_table": case_status_table,
                      "manifest_sweep": case_manifest_sweep,
                      "tracker_flap": case_tracker_flap,
                      "tracker_repin": case_tracker_repin,
                      "wildcard_listen": case_wildcard_listen,
                      "origin_down": case_origin_down,
                      "branch_follow": case_branch_follow,
                      "loader_branch": case_loader_branch,
                      "restart": case_restart, "cache_lock": case_cache_lock,
                      "waiting_reason": case_waiting_reason, "lease_wait": case_lease_wait,
                      "tracker_gone": case_tracker_gone, "keep_seed": case_keep_seed,
                      "pull_refused": case_pull_refused,
                      "keep_resume": case_keep_resume, "keep_drop": case_keep_drop,
                      "keep_leftovers": case_keep_leftovers,
                      "keep_corrupt": case_keep_corrupt, "reconnect": case_reconnect,
                      "max_releases": case_max_releases,
                      "tracker_rollouts": case_tracker_rollouts,
                      "rollout_list_ref": case_rollout_list_ref,
                      "rollout_gone_refused": case_rollout_gone_refused,
                      "tracker_manifest_dir": case_tracker_manifest_dir,
                      "drop_stalled": case_drop_stalled,
                      "publish_retry": case_publish_retry,
                      "origin_bad": case_origin_bad, "hub_refused": case_hub_refused,
                      "hub_ca": case_hub_ca, "hf_partial": case_hf_partial,
                      "hf_blob_names": case_hf_blob_names,
                      "hf_unverified": case_hf_unverified,
                      "hf_delete_cache": case_hf_delete_cache,
                      "hf_gateway_etag": case_hf_gateway_etag,
                      "hf_check_busy": case_hf_check_busy,
                      "hf_hash_busy": case_hf_hash_busy,
                      "hub_token_file": case_hub_token_file,
                      "origin_refused": case_origin_refused,
                      "origin_leased": case_origin_leased,
                      "fetcher_gone": case_fetcher_gone, "cut_off": case_cut_off, "fallback_reclaim": case_fallback_reclaim,
                      "tracker_restart": case_tracker_restart,
                      "tracker_restart_leases": case_tracker_restart_leases,
                      "loader_urgent_lease": case_loader_urgent_lease,
                      "ref_unwritable": case_ref_unwritable,
                      "origin_health": case_origin_health, "datasets": case_datasets,
                      "hub_listing": case_hub_listing, "origin_404": case_origin_404,
                      "hub_api_failing": case_hub_api_failing},
               "shoal-ops-", scan_sanitizers=True)
