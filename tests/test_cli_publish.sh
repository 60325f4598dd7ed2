#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `shoal publish` and `shoal rollout` end to end, with real processes on
# loopback: the Hub stand-in serves a generated model, a real shoal-tracker
# runs; publishing writes a manifest that verifies and registers it with the
# tracker; a rollout needs the admin role and then shows up in the status;
# a release the Hub does not have fails with a message naming it; one with a
# file no manifest may name is refused before anything is downloaded.
# usage: test_cli_publish.sh SHOAL SHOAL_TRACKER HUB_DIR
set -u
shoal=$(readlink -f "$1"); tracker=$(readlink -f "$2"); hubdir=$(readlink -f "$3")
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails+1)); }
# Waits (bounded: 10 s) for a line matching $2 in file $1; prints the match.
wait_line() { for _ in $(seq 100); do grep -m1 "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }

/usr/bin/python3 "$hubdir/genrepo.py" --size 8M --shards 2 hub acme/tiny >/dev/null || { echo "genrepo failed"; exit 1; }
/usr/bin/python3 "$hubdir/hubstub.py" --port 0 hub > hub.out 2> hub.err & pids+=($!)
hubport=$(wait_line hub.out '^[0-9]*$') || { bad "hub stand-in did not start"; cat hub.err; exit 1; }

for k in publisher cluster node admin; do "$shoal" keygen $k.key >/dev/null; done
"$shoal" cred issue --cluster-key cluster.key --node node.key.pub --out node.cred >/dev/null
"$shoal" cred issue --cluster-key cluster.key --node admin.key.pub --out admin.cred >/dev/null
"$tracker" --listen 127.0.0.1:0 --cluster-key cluster.key.pub --publisher-keys publisher.key.pub \
    --admin-keys admin.key.pub > trk.out 2> trk.err & pids+=($!)
trkaddr=$(wait_line trk.out 'listening on' | sed 's/.*listening on //') || { bad "tracker did not start"; cat trk.err; exit 1; }

# Exit status as --help says: 1 for a startup error, 2 for a usage error.
"$tracker" --cluster-key missing.pub > /dev/null 2> tk.err
rc=$?; [ $rc -eq 1 ] && grep -q "missing.pub" tk.err && ok "tracker: missing key file exits 1" || { bad "tracker: missing key file (rc=$rc)"; cat tk.err; }
"$tracker" --cluster-key cluster.key.pub --max-peers many > /dev/null 2> tk.err
rc=$?; [ $rc -eq 2 ] && ok "tracker: malformed number exits 2" || { bad "tracker: malformed number (rc=$rc)"; cat tk.err; }

export HF_ENDPOINT=http://127.0.0.1:$hubport
if "$shoal" publish acme/tiny@main --key publisher.key --out tiny.mf --tracker "$trkaddr" \
    --identity admin.key --cred admin.cred > pub.out 2> pub.err; then ok "publish"; else bad "publish"; cat pub.err; fi
commit=$(sed -n 's/^published acme\/tiny@\([0-9a-f]*\):.*/\1/p' pub.out)
[ ${#commit} -eq 40 ] && ok "publish pinned the commit $commit" || { bad "no commit in output"; cat pub.out; }
"$shoal" manifest verify tiny.mf --trust publisher.key.pub > /dev/null && ok "published manifest verifies" || bad "manifest does not verify"
grep -q "registered with tracker" pub.err && ok "registered with the tracker" || bad "not registered"

stats() { curl -s "http://127.0.0.1:$hubport/_stub/stats" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["total_bytes"])'; }
# Publishing the same commit again (a re-run pipeline) streams nothing and
# keeps the manifest nodes already hold; --force signs a new one.
id1=$(sed -n 's/^manifest id \([0-9a-f]*\).*/\1/p' pub.out)
curl -s -X POST "http://127.0.0.1:$hubport/_stub/reset" >/dev/null
"$shoal" publish acme/tiny@main --key publisher.key --out again.mf --tracker "$trkaddr" \
    --identity admin.key --cred admin.cred > again.out 2> again.err
rc=$?
id2=$(sed -n 's/^manifest id \([0-9a-f]*\).*/\1/p' again.out)
if [ $rc -eq 0 ] && grep -q "^already published acme/tiny@$commit" again.out && [ "$id2" = "$id1" ] &&
   [ "$(stats)" = 0 ] && cmp -s tiny.mf again.mf; then
    ok "publishing the same commit again streams nothing and keeps manifest $id1"
else bad "re-publish (rc=$rc, id $id2 vs $id1, $(stats) bytes streamed)"; cat again.out again.err; fi
"$shoal" publish acme/tiny@main --key publisher.key --force --tracker "$trkaddr" \
    --identity admin.key --cred admin.cred > force.out 2> force.err
id3=$(sed -n 's/^manifest id \([0-9a-f]*\).*/\1/p' force.out)
if grep -q "^published acme/tiny@$commit" force.out && [ -n "$id3" ] && [ "$(stats)" -gt 0 ]; then
    ok "--force streams and signs anew ($id3)"
else bad "--force (id '$id3', $(stats) bytes streamed)"; cat force.out force.err; fi

# A tracker that will not take the release is found out before anything is
# streamed from the Hub: a key outside --admin-keys, a tracker not there.
stats() { curl -s "http://127.0.0.1:$hubport/_stub/stats" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["total_bytes"])'; }
curl -s -X POST "http://127.0.0.1:$hubport/_stub/reset" >/dev/null
"$shoal" publish acme/tiny@main --key publisher.key --tracker "$trkaddr" \
    --identity node.key --cred node.cred > np.out 2> np.err
rc=$?
if [ $rc -eq 1 ] && grep -q "node.key must be listed in the tracker's --admin-keys" np.err; then
    ok "publish by a key outside --admin-keys refused: $(tail -1 np.err)"
else bad "publish by a non-admin key (rc=$rc)"; cat np.err; fi
[ "$(stats)" = 0 ] && ok "... before streaming the release" || bad "release streamed ($(stats) bytes) before the tracker refused"
# An admin key with another key's credential: the mismatch is named, not
# --admin-keys (the key is in it).
"$shoal" publish acme/tiny@main --key publisher.key --tracker "$trkaddr" \
    --identity admin.key --cred node.cred > wc.out 2> wc.err
rc=$?
if [ $rc -eq 1 ] && grep -q "credential node.cred was issued for key [0-9a-f]*, not for admin.key" wc.err &&
   ! grep -q -- "--admin-keys" wc.err; then
    ok "a credential for another key is named as such: $(tail -1 wc.err)"
else bad "credential for another key (rc=$rc)"; cat wc.err; fi
"$shoal" publish acme/tiny@main --key publisher.key --tracker 127.0.0.1:1 \
    --identity admin.key --cred admin.cred > nt.out 2> nt.err
rc=$?
if [ $rc -eq 1 ] && grep -q "tracker 127.0.0.1:1" nt.err && [ "$(stats)" = 0 ]; then
    ok "unreachable tracker reported before streaming: $(tail -1 nt.err)"
else bad "unreachable tracker (rc=$rc, $(stats) bytes streamed)"; cat nt.err; fi
# A signing key the tracker does not trust is found out the same way, before
# the release is read from the Hub (before, all of it was streamed and
# hashed, then the manifest refused).
mkdir keep && (cd keep && "$shoal" publish acme/tiny@main --key ../node.key --tracker "$trkaddr" \
    --identity ../admin.key --cred ../admin.cred > ../kp.out 2> ../kp.err)
rc=$?
if [ $rc -eq 1 ] && grep -q "will not take manifests signed by ../node.key: signing key [0-9a-f]* is not a trusted publisher here (not in the tracker's --publisher-keys)" kp.err &&
   grep -q -- "add ../node.key.pub to its --publisher-keys and restart it: the tracker reads that file at start only" kp.err &&
   [ "$(stats)" = 0 ]; then
    ok "untrusted signing key refused before streaming: $(tail -1 kp.err)"
else bad "untrusted signing key (rc=$rc, $(stats) bytes streamed)"; cat kp.err; fi

"$shoal" publish acme/tiny@no-such-branch --key publisher.key --out x.mf > miss.out 2> miss.err
rc=$?
if [ $rc -eq 1 ] && grep -q "acme/tiny" miss.err; then ok "missing revision: $(tail -1 miss.err)"; else bad "missing revision (rc=$rc)"; cat miss.err; fi

"$shoal" rollout "acme/tiny@$commit" --tracker "$trkaddr" --key node.key --cred node.cred > r1.out 2> r1.err
[ $? -eq 1 ] && ok "rollout refused without the admin role: $(tail -1 r1.err)" || bad "rollout by a plain node accepted"
"$shoal" rollout "acme/tiny@$commit" --tracker "$trkaddr" --key admin.key --cred admin.cred > r2.out 2> r2.err \
    && ok "rollout recorded" || { bad "rollout"; cat r2.err; }
"$shoal" rollout "acme/tiny@$commit" --status --tracker "$trkaddr" --key node.key --cred node.cred > st.out 2> st.err
if grep -q "0 nodes complete" st.out && ! grep -q "no manifest" st.out; then ok "status: $(cat st.out)"; else bad "status"; cat st.out st.err; fi

# A release with a file no manifest may name (a DEL byte in its name) is
# refused before anything is downloaded, naming the file.
/usr/bin/python3 "$hubdir/genrepo.py" --size 2M --shards 1 hub acme/odd >/dev/null
/usr/bin/python3 - hub/models/acme/odd <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
c = os.listdir(os.path.join(d, "commits"))[0]
name, data = "odd\x7fname.txt", b"hello\n"
with open(os.path.join(d, "commits", c, name), "wb") as f:
    f.write(data)
listing = os.path.join(d, "commits", c, ".files.json")
j = json.load(open(listing))
j["files"].append({"path": name, "size": len(data), "lfs": False,
                   "sha256": hashlib.sha256(data).hexdigest(),
                   "blob_id": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()})
json.dump(j, open(listing, "w"))
PY
curl -s -X POST "http://127.0.0.1:$hubport/_stub/reset" >/dev/null
"$shoal" publish acme/odd@main --key publisher.key --out odd.mf > odd.out 2> odd.err
rc=$?
if [ $rc -eq 1 ] && grep -q "odd.x7fname.txt. cannot be part of a release: a control byte" odd.err && [ "$(stats)" = 0 ]; then
    ok "a file no manifest may name is refused before any download: $(tail -1 odd.err)"
else bad "odd file name (rc=$rc, $(stats) bytes downloaded)"; cat odd.err; fi

[ $fails -eq 0 ] && echo "all passed" || echo "$fails failed"
exit $((fails > 0))
