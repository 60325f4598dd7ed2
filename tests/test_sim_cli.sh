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
[ $fails -eq 0 ] && echo "all passed" || echo "$fails failed"
exit $((fails > 0))
