#!/bin/sh
# Runs one libFuzzer target for a bounded time: new inputs go to a scratch
# corpus in the build dir, the committed seeds are read from the second dir.
# usage: run_fuzz.sh FUZZER SEED_DIR WORK_DIR
set -eu
fuzzer=$1 seeds=$2 work=$3
mkdir -p "$work/corpus" "$work/artifacts"
exec "$fuzzer" -max_total_time="${FUZZ_SECONDS:-20}" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" "$seeds"
