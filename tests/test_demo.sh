#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The README's demo (tests/demo_rollout.py) as an operator runs it, small:
# the HF_HUB_CACHE it tells you to load from is still there once it has
# exited (it used to delete its whole directory), it says where it kept
# what and how to remove it; it prints progress while the fleet pulls;
# it lists the commands it ran (keys, credential, tracker, publish, daemon,
# rollout); DEMO_DIR keeps everything in a given directory; --bench still
# prints its BENCH lines.
# usage: test_demo.sh SHOALD SHOAL SHOAL_TRACKER HUB_DIR
set -u
demo=$(dirname "$(readlink -f "$0")")/demo_rollout.py
work=$(mktemp -d)
kept=
trap 'rm -rf "$work" $kept' EXIT
fails=0
export DEMO_SIZE=128M DEMO_NODES=3 DEMO_PROGRESS=0.2 DEMO_TIMEOUT=120
timeout 170 /usr/bin/python3 "$demo" "$@" > "$work/out.txt" 2>&1; rc=$?
cache=$(grep -o 'HF_HUB_CACHE=[^ ]*' "$work/out.txt" | head -1 | cut -d= -f2)
top=$(grep -o '^kept /tmp/shoal-demo-[^:]*' "$work/out.txt" | cut -c6-)
kept=${top:-}
if [ $rc -eq 0 ] && [ -n "$cache" ] && [ -d "$cache/models--demo--model/snapshots" ] &&
    [ -n "$top" ] && [ "${cache#$top/}" != "$cache" ] &&
    grep -q "remove it with: rm -rf $top" "$work/out.txt" && [ ! -e "$top/cache-node1" ]; then
    echo "ok   the printed HF_HUB_CACHE is kept ($cache), and the demo says how to remove it"
else echo "FAIL cache kept (rc=$rc, cache=$cache, top=$top)"; tail -30 "$work/out.txt"; fails=$((fails+1)); fi
if grep -Eq '^ +[0-9.]+ s: [0-9]/3 nodes complete, .* received, origin egress ' "$work/out.txt"; then
    echo "ok   progress lines during the rollout"
else echo "FAIL no progress lines"; fails=$((fails+1)); fi
missing=
for cmd in '^  shoal keygen ' '^  shoal cred issue --cluster-key ' '^  shoal-tracker --listen ' \
    '^  HF_ENDPOINT=[^ ]* shoal publish demo/model@main ' '^  shoald --listen .*--node-key ' \
    '^  shoal rollout demo/model@[0-9a-f]{40} --tracker' '^  shoal rollout .*--status' \
    '^  shoal status --socket '; do
    grep -Eq "$cmd" "$work/out.txt" || missing="$missing [$cmd]"
done
[ -z "$missing" ] && grep -q "^== 8. what this did" "$work/out.txt" &&
    echo "ok   the commands it ran are listed" ||
    { echo "FAIL commands missing:$missing"; fails=$((fails+1)); }
grep -q "^BENCH" "$work/out.txt" && { echo "FAIL BENCH lines without --bench"; fails=$((fails+1)); }
# DEMO_DIR: everything stays there; with --bench the figures are printed.
DEMO_DIR="$work/dd" timeout 170 /usr/bin/python3 "$demo" "$@" --bench > "$work/out2.txt" 2>&1; rc=$?
if [ $rc -eq 0 ] && [ -d "$work/dd/cache-node2/models--demo--model" ] && [ -d "$work/dd/keys" ] &&
    grep -Eq '^BENCH demo_origin_x [0-9.]+ x$' "$work/out2.txt" &&
    grep -Eq '^BENCH demo_wall_s [0-9.]+ s$' "$work/out2.txt" &&
    grep -q "stay in $work/dd (DEMO_DIR)" "$work/out2.txt"; then
    echo "ok   DEMO_DIR keeps everything; --bench prints BENCH lines"
else echo "FAIL DEMO_DIR / --bench (rc=$rc)"; tail -20 "$work/out2.txt"; fails=$((fails+1)); fi
[ $fails -eq 0 ] && echo "all passed" || echo "$fails failed"
exit $((fails > 0))
