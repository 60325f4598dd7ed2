#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# shoald refuses bad setups with a clear message and a clean exit (status 1,
# no crash, no core), takes every option from the shipped example config, and
# answers --help and unknown options as documented.
# usage: test_shoald_errors.sh SHOALD SHOAL EXAMPLE_CONF
set -u
shoald=$(readlink -f "$1"); shoal=$(readlink -f "$2"); conf=$(readlink -f "$3")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; cd "$work"
fails=0
expect() { # status, pattern, description, command...
    local want=$1 pat=$2 what=$3; shift 3
    timeout 20 "$@" >out.txt 2>&1; local rc=$?
    if [ $rc -eq "$want" ] && grep -qiE "$pat" out.txt; then echo "ok   $what"
    else echo "FAIL $what (rc=$rc, want $want)"; cat out.txt; fails=$((fails+1)); fi
}
expect 0 "usage: shoald" "--help" "$shoald" --help
expect 2 "unknown|usage" "unknown option" "$shoald" --no-such-option
expect 1 "node key /nonexistent" "missing node key named" "$shoald" --node-key /nonexistent --cache-dir "$work/c"
expect 1 "no node key" "no node key at all" "$shoald" --cache-dir "$work/c"
"$shoal" keygen n.key >/dev/null; "$shoal" keygen cl.key >/dev/null
"$shoal" cred issue --cluster-key cl.key --node n.key.pub --out n.cred >/dev/null
common=(--node-key n.key --cred n.cred --cluster-keys cl.key.pub --publisher-keys cl.key.pub
        --cache-dir "$work/c" --listen 127.0.0.1:0 --control-socket none)
expect 1 "store 'bogus'" "bad --store value" "$shoald" "${common[@]}" --store bogus
expect 1 "log-level" "bad --log-level" "$shoald" "${common[@]}" --log-level loud
chmod 644 n.key
expect 1 "n.key" "secret key readable by others" "$shoald" "${common[@]}"
chmod 600 n.key
expect 1 "manifest" "unreadable manifest" "$shoald" "${common[@]}" --manifest /nonexistent.mf
# Out-of-range values are refused naming the range, not clamped in silence;
# a missing token file is named as such (not as the origin).
expect 1 "max-frame 1024: use 4259840 " "--max-frame below one chunk" "$shoald" "${common[@]}" --max-frame 1K
expect 1 "compress-level 9: use 1-3" "--compress-level 9" "$shoald" "${common[@]}" --compress-level 9
expect 1 "max-peers 0: use 1-250" "--max-peers 0" "$shoald" "${common[@]}" --max-peers 0
expect 1 "max-leases 100: use 1-16" "--max-leases 100" "$shoald" "${common[@]}" --max-leases 100
expect 1 "max-leases 0: use 1-16" "--max-leases 0" "$shoald" "${common[@]}" --max-leases 0
expect 1 "max-unauth 0: use 1-256" "--max-unauth 0" "$shoald" "${common[@]}" --max-unauth 0
expect 1 "max-unauth 100000: use 1-256" "--max-unauth 100000" "$shoald" "${common[@]}" --max-unauth 100000
expect 1 "hello-rate 100001: use 0 .no limit. to 100000" "--hello-rate 100001" "$shoald" "${common[@]}" --hello-rate 100001
# 0 would stop redialling for good; 2^32 wrapped to 0, i.e. the default.
expect 1 "reconnect-ms 0: use 10-3600000" "--reconnect-ms 0" "$shoald" "${common[@]}" --reconnect-ms 0
expect 1 "request-timeout-ms 4294967296: use 100-3600000" "--request-timeout-ms 2^32" \
    "$shoald" "${common[@]}" --request-timeout-ms 4294967296
expect 1 "handshake-timeout-ms 4294967296: use 100-3600000" "--handshake-timeout-ms 2^32" \
    "$shoald" "${common[@]}" --handshake-timeout-ms 4294967296
expect 1 "handshake-timeout-ms 0: use 100-3600000" "--handshake-timeout-ms 0" \
    "$shoald" "${common[@]}" --handshake-timeout-ms 0
expect 1 "hub token file /nonexistent: no such file" "missing --hub-token-file named" \
    "$shoald" "${common[@]}" --hub-token-file /nonexistent
# Config files: a missing one, a directory, an over-long line are setup
# errors (status 1) naming the file; an inline comment is not part of a value.
expect 1 "/nonexistent.conf: No such file" "missing config file" "$shoald" --config /nonexistent.conf
mkdir cfgdir
expect 1 "cfgdir: Is a directory" "config file is a directory" "$shoald" --config cfgdir
{ printf 'zone = '; head -c 5000 /dev/zero | tr '\0' a; printf '\nnode-key = /nonexistent/x.key\n'; } > long.conf
expect 1 "long.conf:1: line longer than 4095 bytes" "over-long config line" "$shoald" --config long.conf
# A line of exactly 4095 bytes (and its newline) is fine.
{ printf 'zone = '; head -c 4088 /dev/zero | tr '\0' a; printf '\nnode-key = /nonexistent/x.key\n'; } > max.conf
expect 1 "node key /nonexistent/x.key" "a 4095-byte config line is read" "$shoald" --config max.conf
# --config=FILE as well as --config FILE (it was "unknown setting 'config'").
expect 1 "node key /nonexistent/x.key" "--config=FILE" "$shoald" --config=max.conf
expect 1 "/nonexistent.conf: No such file" "--config=FILE missing" "$shoald" --config=/nonexistent.conf
expect 2 "config needs a file" "--config= with no file" "$shoald" --config=
printf 'node-key = /nonexistent/k#1.key   # the node key\n' > inline.conf
expect 1 "node key /nonexistent/k#1.key: No such file" "inline comment cut, '#' in a value kept" \
    "$shoald" --config inline.conf --cache-dir "$work/c" --control-socket none
# The example config parses: the only complaint is its (absent) key file.
expect 1 "node key /etc/shoal/node.key" "example config parses" "$shoald" --config "$conf"
# Packaging agrees with itself: the loader socket the docs and clients name
# is the example config's; the unit's runtime directory lets loader-group
# members (not in group shoal) reach it, the unit puts the daemon in that
# group so it may hand the socket over, and Documentation= names no man page
# that does not exist.
nodedir=$(dirname "$conf"); unit="$nodedir/shoald.service"
lsock=$(sed -n 's/^loader-socket *= *//p' "$conf"); lgroup=$(sed -n 's/^loader-group *= *//p' "$conf")
for f in LOADER-PROTOCOL.md shoal_loader.py shoal_loader.h; do
    if grep -q "/run/[a-z]*/loader.sock" "$nodedir/$f" && ! grep -q "$lsock" "$nodedir/$f"; then
        echo "FAIL $f names another loader socket than the example config's $lsock"; fails=$((fails+1))
    else echo "ok   $f: loader socket $lsock"; fi
done
mode=$(sed -n 's/^RuntimeDirectoryMode=//p' "$unit")
[ $(( 0$mode & 1 )) -eq 1 ] && echo "ok   runtime directory mode $mode is searchable by loader-group" \
    || { echo "FAIL RuntimeDirectoryMode=$mode: members of $lgroup cannot reach $lsock"; fails=$((fails+1)); }
grep -q "^SupplementaryGroups=.*\b$lgroup\b" "$unit" && echo "ok   unit joins $lgroup" \
    || { echo "FAIL unit not in loader-group $lgroup"; fails=$((fails+1)); }
grep -q "^Documentation=man:" "$unit" && { echo "FAIL Documentation= names a man page shoal does not ship"; fails=$((fails+1)); } \
    || echo "ok   Documentation= $(sed -n 's/^Documentation=//p' "$unit")"
# shoald takes the first entry of $STATE_DIRECTORY as its state directory.
first=$(sed -n 's/^StateDirectory=//p' "$unit" | awk '{print $1}')
[ "$first" = shoald ] && echo "ok   StateDirectory= lists shoald first" \
    || { echo "FAIL StateDirectory= lists '$first' first: shoald would keep its state there"; fails=$((fails+1)); }
if grep -qiE "assert|sanitizer|segmentation" out.txt; then echo "FAIL crash text"; fails=$((fails+1)); fi
[ $fails -eq 0 ] && echo "all passed" || echo "$fails failed"
exit $((fails > 0))
