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
    "$sim" -q "$@" >out.txt 2>err.txt; local rc=$?
    if [ $rc -eq 1 ] && grep -Eq "$want" err.txt && ! grep -q "T_min" out.txt; then
        echo "ok   $what: $(tail -1 err.txt)"
    else echo "FAIL $what (rc=$rc)"; cat out.txt err.txt; fails=$((fails+1)); fi
}
small=(--nodes 4 --zones 2 --size 4M)
refuse "no nodes" "nodes 0: must be 1 to [0-9]+" "${small[@]}" --nodes 0
refuse "no zones" "zones 0: must be 1 to 64" "${small[@]}" --zones 0
refuse "hetero 1" "hetero 1: must be at least 0 and below 1" "${small[@]}" --hetero 1
refuse "no bandwidth" "up 0: node bandwidth must be above 0" "${small[@]}" --bandwidth 0
refuse "no origin" "origin 0: must be above 0" "${small[@]}" --origin 0
refuse "release over the chunk limit" "size 1099511627776: at most [0-9]+ bytes with chunk_min 262144" \
    --nodes 4 --size 1T
refuse "more seeds than nodes" "seeds 6: must be 0 to nodes \(5\)" --seeds 6 --nodes 5 --size 4M
refuse "chunk sizes out of order" "chunk_min <= chunk_avg <= chunk_max" "${small[@]}" --chunk_min 2M
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
refuse "busy_backoff 0" "busy_backoff 0: must be at least 1 ms" "${small[@]}" --busy_backoff 0
refuse "endgame_dups 0" "endgame_dups 0: must be at least 1" "${small[@]}" --endgame_dups 0
refuse "max_leases 0" "max_leases 0: must be at least 1" "${small[@]}" --max_leases 0
refuse "seed -1" "bad value for '--seed': -1" "${small[@]}" --seed -1
refuse "lat_zone 1e12" "lat_zone 1e\+12: a round trip is in milliseconds, at most 60000" \
    "${small[@]}" --lat_zone 1e12
refuse "lat_origin 1e12" "lat_origin 1e\+12: .* at most 60000" "${small[@]}" --lat_origin 1e12
refuse "fail_at after max_time" "fail_at 5: after max_time 2" "${small[@]}" --fail_frac 0.5 \
    --fail_at 5 --max_time 2
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
[ $fails -eq 0 ] && echo "all passed" || echo "$fails failed"
exit $((fails > 0))
