#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# shoal-sim as a person runs it: a scenario it cannot run is refused before
# anything runs, with a message naming the key and what it may be, and an
# output file that cannot be written fails at once, not after the run; a
# good run writes its CSV and SVG, and a failed one leaves no empty files.
# usage: test_sim_cli.sh SHOAL_SIM
set -u
sim=$(readlink -f "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fails=0
# description, expected stderr (grep -E), arguments...: exit 1, that message,
# and no summary (nothing was simulated).
refuse() {
    local what=$1 want=$2; shift 2
    timeout 60 "$sim" -q "$@" >out.txt 2>err.txt; local rc=$?
    if [ $rc -eq 1 ] && grep -Eq "$want" err.txt && ! grep -q "T_min" out.txt; then
        echo "ok   $what: $(tail -1 err.txt)"
    else echo "FAIL $what (rc=$rc)"; cat out.txt err.txt; fails=$((fails+1)); fi
}
small=(--nodes 4 --zones 2 --size 4M)
refuse "no nodes" "nodes 0: must be 1 to [0-9]+" "${small[@]}" --nodes 0
refuse "no zones" "zones 0: must be 1 to 64" "${small[@]}" --zones 0
refuse "hetero 1" "hetero 1: must be at least 0 and below 1" "${small[@]}" --hetero 1
refuse "no bandwidth" "bandwidth 0: must be above 0 bytes/s" "${small[@]}" --bandwidth 0
refuse "no origin" "origin 0: must be above 0" "${small[@]}" --origin 0
refuse "release over the chunk limit" "size 1 TiB: must be at most 976.6 GiB \([0-9]+ bytes\) with chunk-min 256 KiB" \
    --nodes 4 --size 1T
refuse "more seeds than nodes" "seeds 6: must be 0 to nodes \(5\)" --seeds 6 --nodes 5 --size 4M
refuse "chunk sizes out of order" "chunk-min <= chunk-avg <= chunk-max" "${small[@]}" --chunk_min 2M
# 1,000,000 nodes x 10 GiB needs ~150 GiB: more than a test machine has
# (the kernel would kill it, or it would swap for hours). --dry-run still
# estimates it (above).
mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
if [ "${mem_kib:-0}" -lt $((100 * 1024 * 1024)) ]; then
    refuse "more memory than the machine has" "not run: it needs more memory than this machine has.*--force" \
        --nodes 1000000 --size 10G --csv big.csv
    [ -e big.csv ] && { echo "FAIL the refused run left big.csv"; fails=$((fails+1)); }
else echo "ok   (skipped the memory refusal: this machine has over 100 GiB)"; fi
refuse "unwritable --csv" "cannot write /nonexistent/x.csv" "${small[@]}" --csv /nonexistent/x.csv
refuse "unwritable --svg" "cannot write /nonexistent/x.svg" "${small[@]}" --svg /nonexistent/x.svg
# Config files take comments after a value, as shoald's do.
printf 'nodes = 0   # none at all\n' > zero.conf
refuse "config: nodes = 0 # comment" "nodes 0: must be 1" --config zero.conf --size 4M
printf '# a fleet\nnodes = 3 # three\nzones = 1\t# one\n' > three.conf
if "$sim" -q --config three.conf --size 4M > out.txt 2> err.txt && grep -q "^nodes *3 " out.txt; then
    echo "ok   config with inline comments runs 3 nodes"
else echo "FAIL config with inline comments"; cat out.txt err.txt; fails=$((fails+1)); fi
# An unwritable --svg after a good --csv: the CSV made for the run is gone.
refuse "unwritable --svg with --csv" "cannot write /nonexistent" "${small[@]}" --csv a.csv --svg /nonexistent/x.svg
[ ! -e a.csv ] && echo "ok   no empty CSV left behind" || { echo "FAIL a.csv left behind"; fails=$((fails+1)); }
# A good run writes both, replacing what was there.
echo old > b.csv
if "$sim" -q "${small[@]}" --csv b.csv --svg b.svg > out.txt 2> err.txt && grep -q "T_min" out.txt &&
    [ "$(head -1 b.csv | cut -d, -f1-2)" = "node,zone" ] && [ "$(wc -l < b.csv)" -eq 5 ] &&
    grep -q "<svg" b.svg; then
    echo "ok   good run writes CSV (5 lines) and SVG"
else echo "FAIL good run"; cat err.txt; head -3 b.csv; fails=$((fails+1)); fi
# Issue 7. Values that used to run something else than asked: 0 meaning
# the default (#8), a signed or octal seed (#11), round trips in the
# billions of ms and failures after max_time (#6, a run that hung).
refuse "busy_backoff 0" "busy-backoff 0: must be at least 1 ms" "${small[@]}" --busy_backoff 0
refuse "endgame_dups 0" "endgame-dups 0: must be at least 1" "${small[@]}" --endgame_dups 0
refuse "max_leases 0" "max-leases 0: must be at least 1" "${small[@]}" --max_leases 0
refuse "seed -1" "bad value for 'seed': '-1' \(decimal digits" "${small[@]}" --seed -1
refuse "lat_zone 1e12" "lat-zone 1e12: must be 0 to 60000 ms \(a round trip" \
    "${small[@]}" --lat_zone 1e12
refuse "lat_origin 1e12" "lat-origin 1e12: must be 0 to 60000 ms" "${small[@]}" --lat_origin 1e12
refuse "fail_at after max_time" "fail-at 5: after max-time 2" "${small[@]}" --fail_frac 0.5 \
    --fail_at 5 --max_time 2
# Every range error says the range with units and the value (#5); they
# said "bad value for '--nodes': 1000000000", and config files gave the
# line but not the value.
refuse "nodes 1e9" "^shoal-sim: nodes 1000000000: must be 1 to 1000000$" --nodes 1000000000
refuse "zones 100000" "^shoal-sim: zones 100000: must be 1 to 64$" --zones 100000
refuse "peers 300" "^shoal-sim: peers 300: must be 0 to 250" --peers 300
refuse "size 0" "^shoal-sim: size 0: must be 1 B to 1 PiB$" --size 0
refuse "size 1e18" "^shoal-sim: size 1e18 \(888.2 PiB\): must be 1 B to 1 PiB$" --size 1e18
refuse "chunk-avg 100M" "^shoal-sim: chunk-avg 100M \(100 MiB\): must be 1 B to 64 MiB$" --chunk-avg 100M
printf 'nodes = 20\nsize = 1e18\n' > big.conf
refuse "size 1e18 in a config file" "^shoal-sim: big.conf:2: size 1e18 \(888.2 PiB\): must be 1 B to 1 PiB$" \
    --config big.conf
# A manifest that cannot be read is refused up front, with its path, before
# any output file is made (#6: "run failed: No such file or directory",
# after the run's set-up); synthetic-size keys given with it are said to
# do nothing.
refuse "manifest that does not exist" \
    "^shoal-sim: cannot read the manifest /nonexistent/m.mf: No such file or directory$" \
    --manifest /nonexistent/m.mf --csv m.csv --size 2G --chunk-avg 2M
if [ ! -e m.csv ] && grep -q "^shoal-sim: warning: the manifest /nonexistent/m.mf sets the chunk sizes and files; ignoring size, chunk-avg$" err.txt; then
    echo "ok   manifest: no CSV made, synthetic keys warned about"
else echo "FAIL manifest: CSV or warning"; cat err.txt; fails=$((fails+1)); fi
printf 'not a manifest' > bad.mf
refuse "manifest that does not parse" "^shoal-sim: cannot read the manifest bad.mf: " --manifest bad.mf
# Simulated times have bounds (#4): --join-spread 1e300 simulated for ever.
refuse "join-spread 1e300" "join-spread 1e300: must be 0 to 86400 s \(one day" \
    "${small[@]}" --join-spread 1e300
refuse "max-time 1e300" "max-time 1e300: must be 0 \(the default limit\) to 2592000 s \(30 days\)" \
    "${small[@]}" --max-time 1e300
refuse "fail-at 1e300" "fail-at 1e300: must be 0 to 2592000 s" "${small[@]}" --fail-frac 0.5 \
    --fail-at 1e300
printf 'join-spread = 1e300\n' > spread.conf
refuse "join-spread 1e300 in a config file" "spread.conf:1: join-spread 1e300: must be 0 to 86400 s" \
    --config spread.conf "${small[@]}"
if timeout 60 "$sim" -q "${small[@]}" --join-spread 86400 > out.txt 2>&1 && grep -q "^nodes *4 (4 completed" out.txt; then
    echo "ok   join-spread 86400 runs"
else echo "FAIL join-spread 86400"; cat out.txt; fails=$((fails+1)); fi
"$sim" -q "${small[@]}" --seed 010 --csv s010.csv > /dev/null 2>&1
"$sim" -q "${small[@]}" --seed 10 --csv s10.csv > /dev/null 2>&1
"$sim" -q "${small[@]}" --seed 8 --csv s8.csv > /dev/null 2>&1
if cmp -s s010.csv s10.csv && ! cmp -s s010.csv s8.csv; then echo "ok   seed 010 is 10"
else echo "FAIL seed 010 is not seed 10"; fails=$((fails+1)); fi
# progress = no in a config file (#7): no progress lines without -q.
printf 'progress = no\n' > quiet.conf
if "$sim" --config quiet.conf "${small[@]}" > out.txt 2> err.txt && grep -q T_min out.txt &&
    ! grep -q "^sim: t=" err.txt; then echo "ok   progress = no in a config file"
else echo "FAIL progress = no ignored"; head -3 err.txt; fails=$((fails+1)); fi
"$sim" "${small[@]}" > out.txt 2> err.txt
grep -q "^sim: t=" err.txt && echo "ok   progress lines by default" ||
    { echo "FAIL no progress lines by default"; fails=$((fails+1)); }
# Live nodes left incomplete at max_time (#4): percentiles not reached, and
# exit status 2 with the summary, CSV and SVG written all the same.
"$sim" -q --nodes 20 --zones 1 --origin 1G --bandwidth 1G --size 256M --join_spread 10 \
    --max_time 3 --csv cut.csv --svg cut.svg > out.txt 2> err.txt; rc=$?
if [ $rc -eq 2 ] && grep -q "2 completed, 0 failed, 18 incomplete" out.txt &&
    grep -q "^completion p50 not reached (18 of 20 nodes incomplete at 3.000 s)" out.txt &&
    grep -q "^completion max not reached" out.txt && grep -q "18 nodes left incomplete" err.txt &&
    [ "$(wc -l < cut.csv)" -eq 21 ] && grep -q "</svg>" cut.svg; then
    echo "ok   incomplete at max_time: not reached, exit 2"
else echo "FAIL incomplete at max_time (rc=$rc)"; cat out.txt err.txt; fails=$((fails+1)); fi
"$sim" -q "${small[@]}" --fail_frac 1 --fail_at 0 > out.txt 2> err.txt; rc=$?
if [ $rc -eq 0 ] && grep -q "^completion p50 none" out.txt; then echo "ok   all failed: no percentile"
else echo "FAIL all failed (rc=$rc)"; cat out.txt; fails=$((fails+1)); fi
# The origin leases line is the tracker's (#10): none without one or
# without peer exchange, where nodes fetch what they lack themselves.
for mode in "--tracker no" "--peers 0"; do
    "$sim" -q "${small[@]}" $mode > out.txt 2>&1
    if grep -q T_min out.txt && ! grep -q "origin leases" out.txt; then echo "ok   no lease line with $mode"
    else echo "FAIL lease line with $mode"; fails=$((fails+1)); fi
done
"$sim" -q "${small[@]}" > out.txt 2>&1
grep -q "^origin leases" out.txt && echo "ok   lease line with a tracker" ||
    { echo "FAIL no lease line with a tracker"; fails=$((fails+1)); }
# Ops review 1: a run says up front what it will cost, warns when that is
# large, and its progress lines give transfers done out of those expected,
# their rate and an ETA, at least every progress-every seconds of wall
# time; none of it touches stdout or the CSV.
ex=(--nodes 2000 --zones 4 --size 140G --bandwidth 25Gbit --origin 10Gbit --fail-frac 0.05 --fail-at 60)
"$sim" --dry-run "${ex[@]}" > out.txt 2> err.txt; rc=$?
if [ $rc -eq 0 ] && grep -Eq "^sim: 2000 nodes x [0-9]+ chunks: ~2\.[0-9]+e\+08 transfers, ~[0-9.]+ GiB of memory" out.txt &&
    grep -Eq "^sim: warning: a large run: .* roughly [0-9]+ min at ~[0-9]+k transfers/s" out.txt &&
    ! grep -q T_min out.txt; then echo "ok   --dry-run of the --help example: estimate and warning"
else echo "FAIL --dry-run (rc=$rc)"; cat out.txt err.txt; fails=$((fails+1)); fi
mid=(--nodes 200 --zones 4 --size 256M)
"$sim" "${mid[@]}" --csv p.csv > p.out 2> p.err
"$sim" "${mid[@]}" --progress-every 0.001 --csv pe.csv > pe.out 2> pe.err
"$sim" -q "${mid[@]}" --csv q.csv > q.out 2> q.err
if grep -Eq "^sim: 200 nodes x [0-9]+ chunks: ~[0-9.e+]+ transfers, ~[0-9]+ MiB of memory" p.err &&
    grep -Eq "^sim: t=[0-9.]+s \(T_min [0-9.]+s\), [0-9]+ nodes still downloading, [0-9]+ of ~[0-9]+ transfers \([0-9.]+%\), [0-9.]+[kM]?/s, ETA " p.err &&
    [ "$(grep -c '^sim: t=' pe.err)" -gt "$(grep -c '^sim: t=' p.err)" ] && [ ! -s q.err ] &&
    grep -m1 '^sim: t=' p.err | grep -q ", 200 nodes still downloading," &&
    cmp -s p.out pe.out && cmp -s p.out q.out && cmp -s p.csv pe.csv && cmp -s p.csv q.csv; then
    echo "ok   progress: estimate, transfers of expected, ETA, wall-clock lines (the first counts every node joined at 0); -q silent; same stdout and CSV"
else echo "FAIL progress lines"; head -3 p.err; grep -c '^sim: t=' p.err pe.err; cat q.err; fails=$((fails+1)); fi
printf 'progress = no\n' > quiet.conf
"$sim" --config quiet.conf "${mid[@]}" > out.txt 2> err.txt
[ ! -s err.txt ] && cmp -s out.txt p.out && echo "ok   progress = no: nothing on stderr" ||
    { echo "FAIL progress = no"; cat err.txt; fails=$((fails+1)); }
"$sim" --quiet=yes "${mid[@]}" > out.txt 2> err.txt; rc=$?
[ $rc -eq 0 ] && [ ! -s err.txt ] && cmp -s out.txt p.out && echo "ok   --quiet=yes: nothing on stderr" ||
    { echo "FAIL --quiet=yes (rc=$rc)"; cat err.txt; fails=$((fails+1)); }
refuse "--quiet=maybe" "bad value for --quiet: 'maybe'" "${small[@]}" --quiet=maybe
refuse "--force=1" "option '--force' takes no value" "${small[@]}" --force=1
refuse "progress-every 0" "progress-every 0: must be above 0 and at most 86400 s" "${small[@]}" --progress-every 0
# Ops review 2: fail-frac without fail-at killed the nodes at t = 0 while
# --help said "default none"; it is refused, and the summary says when.
refuse "fail-frac without fail-at" "fail-frac 0.05 without fail-at: say when those nodes die" \
    --nodes 20 --fail-frac 0.05
printf 'nodes = 20\nfail_frac = 0.05\n' > ff.conf
refuse "fail_frac without fail_at in a config file" "fail-frac 0.05 without fail-at" --config ff.conf
"$sim" -q --nodes 20 --size 64M --fail-frac 0.1 --fail-at 0.02 --csv ff.csv > out.txt 2> err.txt; rc=$?
if [ $rc -eq 0 ] && grep -Eq "^failures +2 nodes died at 0\.020 s \(fail-at\): [0-9] before completing, [0-9] after" out.txt &&
    [ "$(awk -F, 'NR > 1 && $13 != "" { print $13 }' ff.csv | sort -u)" = "0.020000" ]; then
    echo "ok   failures: summary and CSV say when"
else echo "FAIL failures line (rc=$rc)"; cat out.txt err.txt; fails=$((fails+1)); fi
# fail-at without fail-frac killed no node and said nothing (the other
# way round is refused): a warning says so.
"$sim" -q --nodes 20 --size 16M --fail-at 0.01 > out.txt 2> err.txt; rc=$?
if [ $rc -eq 0 ] && grep -q "^shoal-sim: warning: fail-at 0.01 without fail-frac: no node dies" err.txt; then
    echo "ok   fail-at without fail-frac: warned"
else echo "FAIL fail-at without fail-frac (rc=$rc)"; cat err.txt; fails=$((fails+1)); fi
"$sim" -q "${small[@]}" --fail-frac 0.1 --fail-at 0.01 > out.txt 2> err.txt
! grep -q "without fail-frac" err.txt && echo "ok   no fail-at warning with fail-frac" ||
    { echo "FAIL fail-at warning with fail-frac"; cat err.txt; fails=$((fails+1)); }
# A fleet stuck far from its bound (2 peers a node, and a tracker that
# leases a chunk again to a node cut off from its holders only after an
# hour) ends at the default limit, 1000 x T_min (at least an hour),
# instead of running for ever.
timeout 60 "$sim" --nodes 30 --peers 2 --size 64M --lease-ms 3600000 -q > stuck.out 2> stuck.err; rc=$?
if [ $rc -eq 2 ] && grep -q "left incomplete when the run ended at 3600.000 s, [0-9]* x T_min: without max-time a run stops at 1000 x T_min" stuck.err &&
    grep -q "incomplete at 3600.000 s" stuck.out &&
    grep -q "^cut off  *30 incomplete nodes in [0-9]* peer groups that lack chunks other groups hold" stuck.out; then
    echo "ok   a stuck fleet stops at the default time limit"
else echo "FAIL a stuck fleet (rc=$rc)"; cat stuck.err; fails=$((fails+1)); fi
# A rate in the wrong unit put the default limit, 1000 x T_min, at years
# (--origin 10kbit: 27 years of simulated time) or never (1e-300 B/s ran
# until killed): it is at most 30 days, and the message says so.
timeout 30 "$sim" --nodes 1 --origin 1e-300 --size 16M -q > slow.out 2> slow.err; rc=$?
if [ $rc -eq 2 ] && grep -q "when the run ended at 2592000.000 s, the most a run simulates (30 days), before T_min (.*): is a rate in the wrong unit?" slow.err &&
    grep -q "incomplete at 2592000.000 s" slow.out; then
    echo "ok   a run stops at 30 days of simulated time at most"
else echo "FAIL a run far below its rates (rc=$rc)"; cat slow.err; fails=$((fails+1)); fi
# Progress lines come when something moved, or at the wall-clock cadence
# (#8): this run, stuck for most of its 3,000 s behind a 1 MB/s zone pair,
# printed the same line 47 times in a row. And "1 node", not "1 nodes".
"$sim" --nodes 20 --zones 2 --size 16M --zone-cap 1M --max-time 3000 > /dev/null 2> rep.err
"$sim" --nodes 1 --size 16M > /dev/null 2> one.err
reps=$(grep '^sim: t=' rep.err | sed -E 's/t=[0-9.]+s//; s/, [0-9.]+[kM]?\/s, ETA.*//' | uniq -d | wc -l)
if [ "$reps" -eq 0 ] && [ "$(grep -c '^sim: t=' rep.err)" -gt 5 ] &&
    grep -q "^sim: 1 node x 16 chunks" one.err && grep -q "^sim: 1 node set up" one.err &&
    grep -q ", 1 node still downloading," one.err && ! grep -q "1 nodes" one.err; then
    echo "ok   progress lines only when something moved; 1 node"
else echo "FAIL progress repeats ($reps) or 1 nodes"; head -5 rep.err; cat one.err; fails=$((fails+1)); fi
# The summary gives the zone caps' bound on a fleet whose origin egress is
# 1x, F/(Z*cap) after t0 (#8): README's 100 nodes over 1 Gbit/s pairs.
"$sim" -q --nodes 100 --zones 2 --zone-cap 1Gbit > out.txt 2> err.txt
grep -q "^               with origin egress 1x: at least t0 + F/(Z\*cap) = 4.315 s (2.972 x T_min)$" out.txt &&
    echo "ok   zone caps: the 1x-egress bound F/(Z*cap) is printed" ||
    { echo "FAIL no F/(Z*cap) line"; cat out.txt; fails=$((fails+1)); }
"$sim" -q "${small[@]}" > out.txt 2>&1
! grep -q "origin egress 1x" out.txt && echo "ok   no F/(Z*cap) line without caps" ||
    { echo "FAIL F/(Z*cap) line without caps"; fails=$((fails+1)); }
# csv, svg and quiet in a config file, like every other key (#8); the
# flags override them.
printf 'nodes = 4\nsize = 4M\ncsv = fc.csv\nsvg = fc.svg\nquiet = yes\n' > outs.conf
"$sim" --config outs.conf > out.txt 2> err.txt; rc=$?
"$sim" --config outs.conf --csv fl.csv > /dev/null 2>&1
if [ $rc -eq 0 ] && [ ! -s err.txt ] && [ "$(wc -l < fc.csv)" -eq 5 ] && grep -q "</svg>" fc.svg &&
    [ -s fl.csv ] && cmp -s fc.csv fl.csv; then
    echo "ok   csv, svg, quiet in a config file; --csv overrides"
else echo "FAIL csv/svg/quiet in a config file (rc=$rc)"; cat err.txt; fails=$((fails+1)); fi
printf 'nodes = 10\nnodes = 20\n' > twice.conf
refuse "a key set twice in a config file" "twice.conf:2: 'nodes' is set a second time \(first at line 1\): keep one" --config twice.conf
printf 'quiet = maybe\n' > q.conf
refuse "quiet = maybe" "q.conf:1: bad value for 'quiet': 'maybe'" --config q.conf
# --help lists every CSV column (#8), says --seed also draws the chunk
# sizes, and how to make a PNG of the SVG.
"$sim" --help > help.txt
missing=$(head -1 b.csv | tr , '\n' | while read -r col; do grep -q "\b$col\b" help.txt || echo "$col"; done)
if [ -z "$missing" ] && grep -q "^OUTPUT" help.txt && grep -q "also draws the synthetic" help.txt &&
    grep -q "rsvg-convert" help.txt; then echo "ok   --help: CSV columns, seed and chunk sizes, PNG"
else echo "FAIL --help: columns missing: $missing"; fails=$((fails+1)); fi
# A fraction that rounds to no node says so (#7: it printed nothing), and
# --help says the fraction is of the non-seed nodes.
"$sim" -q --nodes 50 --size 16M --fail-frac 0.005 --fail-at 0.01 > out.txt 2> err.txt; rc=$?
if [ $rc -eq 0 ] && grep -q "^failures       0 nodes (fail-frac 0.005 of 50 non-seed nodes rounds to none)$" out.txt &&
    "$sim" --help | grep -q "a fraction F of the non-seed nodes that have joined by S"; then
    echo "ok   fail-frac rounding to no node is said"
else echo "FAIL fail-frac 0.005 of 50 (rc=$rc)"; cat out.txt; fails=$((fails+1)); fi
# With join-spread, the nodes that die at fail-at are among those that
# have joined by then (QA H2: nodes due to join later "died" before
# joining and were reported as failed mid-rollout), and the summary says
# how many were yet to join.
"$sim" -q --nodes 40 --zones 2 --size 64M --bandwidth 100M --origin 100M --join-spread 20 \
    --fail-frac 0.25 --fail-at 10 --csv h2.csv > out.txt 2> err.txt; rc=$?
early=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "join_s") j = i; if ($i == "died_s") d = i } next }
                 $d != "" && $j + 0 > $d + 0 { n++ } END { print n + 0 }' h2.csv)
died=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "died_s") d = i; next } $d != "" { n++ } END { print n + 0 }' h2.csv)
if [ $rc -eq 0 ] && [ "$early" -eq 0 ] && [ "$died" -gt 0 ] &&
    grep -Eq "^               fail-frac 0.25 of the [0-9]+ non-seed nodes that had joined by then; the [0-9]+ yet to join do not die$" out.txt; then
    echo "ok   fail-at kills only nodes that have joined ($died died)"
else echo "FAIL fail-at with join-spread (rc=$rc): $early of $died died before joining"; cat out.txt err.txt; fails=$((fails+1)); fi
# The plot's ticks are round numbers (QA H3: 4.04, 8.09 s, 0.0896 GB/s),
# and the failure time is marked.
"$sim" -q --nodes 40 --zones 2 --size 64M --bandwidth 100M --origin 100M --join-spread 20 \
    --fail-frac 0.25 --fail-at 10 --svg h3.svg > /dev/null 2> err.txt
if python3 - h3.svg <<'PY2'
import math, re, sys
svg = open(sys.argv[1]).read()
ok = True
for anchor in ("middle", "end"):
    vals = [float(v) for v in re.findall(r"text-anchor='%s'>([0-9.e+-]+)<" % anchor, svg)]
    for panel in (vals[:len(vals) // 2], vals[len(vals) // 2:]):
        step = panel[1] - panel[0]
        mant = step / 10 ** math.floor(math.log10(step))
        if panel[0] != 0 or not any(abs(mant - m) < 1e-6 for m in (1, 2, 2.5, 5)) or \
                any(abs(b - a - step) > 1e-9 * max(1, b) for a, b in zip(panel, panel[1:])):
            print("odd ticks:", panel)
            ok = False
if not re.search(r">\d+ died<", svg):
    print("no failure marker")
    ok = False
sys.exit(0 if ok else 1)
PY2
then echo "ok   plot ticks are round, fail-at is marked"
else echo "FAIL plot ticks or failure marker"; fails=$((fails+1)); fi
# Ops review 3: dashes as every other shoal program spells its options,
# underscores as before, on the command line and in a config file, and
# shoald's --origin-delay-ms for origin_delay; all the same run.
"$sim" -q "${small[@]}" --zone_cap 1Gbit --origin_delay 500 --lat_cross 5 --csv u.csv > u.out 2> err.txt
"$sim" -q "${small[@]}" --zone-cap 1Gbit --origin-delay 500 --lat-cross=5 --csv d.csv > d.out 2> err.txt; rc=$?
"$sim" -q "${small[@]}" --zone-cap 1Gbit --origin-delay-ms 500 --lat-cross 5 --csv a.csv > a.out 2>> err.txt
printf 'zone-cap = 1Gbit\norigin-delay-ms = 500\nlat_cross = 5\n' > dash.conf
"$sim" -q "${small[@]}" --config dash.conf --csv f.csv > f.out 2>> err.txt
"$sim" -q "${small[@]}" --csv plain.csv > /dev/null 2>&1
if [ $rc -eq 0 ] && [ ! -s err.txt ] && cmp -s u.csv d.csv && cmp -s u.csv a.csv && cmp -s u.csv f.csv &&
    cmp -s u.out d.out && cmp -s u.out f.out && ! cmp -s u.csv plain.csv; then
    echo "ok   --zone-cap, --origin-delay-ms, dashed config keys: same run as the underscores"
else echo "FAIL dashed options (rc=$rc)"; cat err.txt; fails=$((fails+1)); fi
refuse "unknown dashed option" "unknown option '--zone-kap'" "${small[@]}" --zone-kap 1G
"$sim" --help > help.txt
if grep -q "^    zone-cap RATE" help.txt && grep -q "fail-frac F, fail-at S" help.txt &&
    grep -q "origin-delay-ms" help.txt && ! grep -Eq "^    [a-z]+_[a-z_]+ " help.txt &&
    grep -q -- "--fail-frac 0.05 --fail-at 60" help.txt; then echo "ok   --help spells keys with dashes"
else echo "FAIL --help spelling"; fails=$((fails+1)); fi
# SIGINT (#3): the run stops where it is, as max-time does, writes the
# summary, CSV and SVG of the run so far, says so and exits 130; it used
# to die with its output files created empty and nothing printed. The
# run (3,000 nodes, 2 GiB: ~30 s) is well under way when it is signalled.
# wait_gone PID: waits up to 60 s for PID to end, then kills it.
wait_gone() {
    for _ in $(seq 600); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null
    wait "$1"
}
big=(--nodes 3000 --zones 4 --size 2G)
"$sim" "${big[@]}" --csv int.csv --svg int.svg > int.out 2> int.err & pid=$!
for _ in $(seq 300); do grep -qs "simulating" int.err && break; sleep 0.1; done
sleep 0.5
kill -INT $pid
wait_gone $pid; rc=$?
if [ $rc -eq 130 ] && grep -q "^interrupted    at t=" int.out && grep -q "^completion p50 not reached" int.out &&
    grep -Eq "^shoal-sim: interrupted at t=[0-9.]+ s .*exit status 130" int.err &&
    [ "$(wc -l < int.csv)" -eq 3001 ] && grep -q "</svg>" int.svg; then
    echo "ok   SIGINT: summary, CSV and SVG of the run so far, exit 130"
else echo "FAIL SIGINT (rc=$rc)"; cat int.out; tail -3 int.err; wc -l int.csv; fails=$((fails+1)); fi
# A second signal exits at once: unless the run had already written
# everything, no summary and no output file the run made is left.
"$sim" "${big[@]}" --csv int2.csv > int2.out 2> int2.err & pid=$!
for _ in $(seq 300); do grep -qs "^sim: 3000 nodes x" int2.err && break; sleep 0.1; done
kill -INT $pid; kill -TERM $pid
wait_gone $pid; rc=$?
if [ $rc -eq 130 ] && { { ! grep -q T_min int2.out && [ ! -e int2.csv ]; } ||
                        [ "$(wc -l < int2.csv)" -eq 3001 ]; }; then
    echo "ok   a second signal exits at once (exit 130)"
else echo "FAIL second signal (rc=$rc)"; cat int2.out; tail -3 int2.err; ls -la int2.csv; fails=$((fails+1)); fi
[ $fails -eq 0 ] && echo "all passed" || echo "$fails failed"
exit $((fails > 0))
