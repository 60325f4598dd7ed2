#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# shoal-tracker's command line as an operator meets it: settings from a
# --config file (flags override it), bad files and values refused naming the
# file, line and key, and time-outs that would drop healthy nodes between two
# announces refused up front; a --rollout-file it cannot read or write stops
# the start.
# The shipped unit and example config start a tracker as the unit's dynamic
# user would run it: the secret key reaches it as a systemd credential.
# usage: test_tracker_cli.sh SHOAL_TRACKER SHOAL [EXAMPLE_CONF [UNIT]]
set -u
tracker=$(readlink -f "$1"); shoal=$(readlink -f "$2")
example=$(readlink -f "${3:-/nonexistent}")
unit=$(readlink -f "${4:-/nonexistent}")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; cd "$work"
fails=0
expect() { # status, pattern, description, command...
    local want=$1 pat=$2 what=$3; shift 3
    timeout 20 "$@" >out.txt 2>&1; local rc=$?
    if [ $rc -eq "$want" ] && grep -qiE -- "$pat" out.txt; then echo "ok   $what"
    else echo "FAIL $what (rc=$rc, want $want)"; cat out.txt; fails=$((fails+1)); fi
}
"$shoal" keygen cl.key >/dev/null
# Runs the tracker until it has logged its start line (at most 10 s), stops it
# with SIGTERM and leaves its output in run.txt.
run_until_started() {
    # Emptied here too: the loop may read run.txt before the child has
    # opened it, and would then stop at the last run's "started on".
    : >run.txt
    "$tracker" "$@" >run.txt 2>&1 & local pid=$!
    for _ in $(seq 100); do grep -q "started on" run.txt && break; sleep 0.1; done
    kill -TERM $pid 2>/dev/null; wait $pid; echo "exit $?" >>run.txt
}
printf '%s\n' '# a tracker for one zone' 'cluster-key = cl.key.pub   # the cluster' \
    'listen = 127.0.0.1:0' 'announce-interval-ms = 2000' 'node-ttl-ms = 7000' \
    'lease-ms = 5000' >good.conf
# A quoted value loses its quotes, as in most such files.
printf 'cluster-key = "cl.key.pub"\nlisten = '"'"'127.0.0.1:0'"'"'\n' >quoted.conf
run_until_started --config quoted.conf
if grep -q "listening on 127.0.0.1:" run.txt && grep -q "exit 0" run.txt
then echo "ok   quoted values in a --config file"
else echo "FAIL quoted values in a --config file"; cat quoted.conf run.txt; fails=$((fails+1)); fi
# SIGHUP (a closed terminal, a log rotation) is logged and ignored.
"$tracker" --config good.conf >hup.txt 2>&1 & hpid=$!
for _ in $(seq 100); do grep -q "started on" hup.txt && break; sleep 0.1; done
kill -HUP $hpid 2>/dev/null
for _ in $(seq 50); do grep -q "SIGHUP ignored" hup.txt && break; sleep 0.1; done
alive=no; kill -0 $hpid 2>/dev/null && alive=yes
kill -TERM $hpid 2>/dev/null; wait $hpid; hrc=$?
if [ $alive = yes ] && [ $hrc -eq 0 ] && grep -q "SIGHUP ignored" hup.txt; then
    echo "ok   SIGHUP is logged and ignored; SIGTERM still stops it (exit 0)"
else echo "FAIL SIGHUP (alive after it: $alive, exit $hrc)"; cat hup.txt; fails=$((fails+1)); fi
run_until_started --config good.conf
if grep -q "listening on 127.0.0.1:" run.txt &&
   grep -q "announce 2000 ms, ttl 7000 ms, lease 5000 ms" run.txt && grep -q "exit 0" run.txt
then echo "ok   settings read from --config"
else echo "FAIL settings read from --config"; cat run.txt; fails=$((fails+1)); fi
# --gone-ms 0 (forget only after --node-ttl-ms), as --help documents it.
run_until_started --cluster-keys cl.key.pub --listen 127.0.0.1:0 --gone-ms 0
if grep -q "listening on 127.0.0.1:" run.txt && grep -q "exit 0" run.txt
then echo "ok   --gone-ms 0 is taken"
else echo "FAIL --gone-ms 0 is refused"; cat run.txt; fails=$((fails+1)); fi
# shoald's spelling of the option is taken too, on the command line and in
# a --config file.
run_until_started --cluster-keys cl.key.pub --listen 127.0.0.1:0
if grep -q "started on" run.txt && grep -q "exit 0" run.txt
then echo "ok   --cluster-keys is --cluster-key"
else echo "FAIL --cluster-keys"; cat run.txt; fails=$((fails+1)); fi
printf 'cluster-keys = cl.key.pub\nlisten = 127.0.0.1:0\n' >alias.conf
run_until_started --config alias.conf
if grep -q "started on" run.txt; then echo "ok   cluster-keys in a --config file"
else echo "FAIL cluster-keys in a --config file"; cat run.txt; fails=$((fails+1)); fi
# A key set twice is refused naming both lines (QA H4); cluster-key
# accumulates, in either spelling.
printf 'listen = 127.0.0.1:0\nlisten = 127.0.0.1:0\ncluster-key = cl.key.pub\n' >twice.conf
"$tracker" --config twice.conf >twice.txt 2>&1; trc=$?
if [ $trc -ne 0 ] && grep -q "twice.conf:2: 'listen' is set a second time (first at line 1): keep one" twice.txt
then echo "ok   a key set twice in --config is refused"
else echo "FAIL a key set twice in --config (exit $trc)"; cat twice.txt; fails=$((fails+1)); fi
printf 'cluster-key = cl.key.pub\ncluster-keys = cl.key.pub\nlisten = 127.0.0.1:0\n' >list.conf
run_until_started --config list.conf
if grep -q "started on" run.txt; then echo "ok   cluster-key repeats in a --config file"
else echo "FAIL cluster-key twice in a --config file"; cat run.txt; fails=$((fails+1)); fi
# --deny-keys: a missing file is named; the key repeats in a config file.
expect 1 "deny-keys: .*/nonexistent-deny.pub.*No such file" "missing --deny-keys file named" \
    "$tracker" --cluster-key cl.key.pub --listen 127.0.0.1:0 --deny-keys /nonexistent-deny.pub
printf '# none yet\n' >deny1.pub; cp cl.key.pub deny2.pub
printf 'cluster-key = cl.key.pub\ndeny-keys = deny1.pub\ndeny-keys = deny2.pub\nlisten = 127.0.0.1:0\n' >deny.conf
run_until_started --config deny.conf
if grep -q "deny-keys: 1 revoked node key(s)" run.txt; then echo "ok   deny-keys repeats in a --config file"
else echo "FAIL deny-keys twice in a --config file"; cat run.txt; fails=$((fails+1)); fi
run_until_started --lease-ms 9000 --config good.conf
if grep -q "lease 9000 ms" run.txt; then echo "ok   a flag overrides the file (given before it)"
else echo "FAIL a flag overrides the file"; cat run.txt; fails=$((fails+1)); fi

expect 1 "/nonexistent.conf: No such file" "missing config file" "$tracker" --config /nonexistent.conf
mkdir cfgdir
expect 1 "cfgdir: Is a directory" "config file is a directory" "$tracker" --config cfgdir
printf 'cluster-key = cl.key.pub\nmax-peerz = 3\n' >typo.conf
expect 1 "typo.conf:2: unknown key 'max-peerz'" "unknown key named with its line" \
    "$tracker" --config typo.conf
printf 'cluster-key = cl.key.pub\nmax-peers = 0\n' >range.conf
expect 1 "range.conf:2: max-peers: expected a number from 1 to 256, got '0'" \
    "out-of-range value named with its line" "$tracker" --config range.conf
printf 'cluster-key = /nonexistent/c#1.pub   # the cluster key\n' >inline.conf
expect 1 "inline.conf:1: cluster-key: /nonexistent/c#1.pub: " \
    "inline comment cut, '#' in a value kept" "$tracker" --config inline.conf
{ printf 'listen = '; head -c 5000 /dev/zero | tr '\0' a; printf '\n'; } >long.conf
expect 1 "long.conf:1: line longer than 4095 bytes" "over-long line" "$tracker" --config long.conf
expect 2 "node-ttl-ms 30000 ms is not longer than --announce-interval-ms 30000" \
    "node TTL not above the announce interval" "$tracker" --cluster-key cl.key.pub --node-ttl-ms 30000
expect 2 "idle-timeout-ms 1000 ms is not longer than --announce-interval-ms 2000" \
    "idle timeout not above the announce interval (from the file)" \
    "$tracker" --config good.conf --idle-timeout-ms 1000
expect 2 "max-peers expected a number from 1 to 256" "bad flag value is a usage error" \
    "$tracker" --cluster-key cl.key.pub --max-peers 999
expect 0 "--config FILE" "--help documents --config" "$tracker" --help
# Which key files are read at start only, and which again on change (QA F10).
expect 0 "Key files are read at start, except" "--help says key files are read at start" \
    "$tracker" --help
expect 0 "added needs a restart" "--help marks --publisher-keys read at start" "$tracker" --help
# --rollout-file: checked at start, so a tracker that could not keep its
# rollouts never runs as if it could.
expect 1 "cannot write the rollout file /nonexistent/r: No such file" \
    "rollout file in a missing directory" "$tracker" --cluster-key cl.key.pub \
    --listen 127.0.0.1:0 --rollout-file /nonexistent/r
mkfifo fifo
expect 1 "cannot read the rollout file fifo: not a regular file" "rollout file is a FIFO" \
    "$tracker" --cluster-key cl.key.pub --listen 127.0.0.1:0 --rollout-file fifo
# Lines of the rollout file that do not parse are appended to FILE.bad,
# never moved there: a second start with another bad line keeps the first
# one's copy, and a .bad that cannot be written leaves the file untouched.
good_line="rollout org/a@0123456789abcdef0123456789abcdef01234567"
printf '%s\nnonsense one\n' "$good_line" >rf
run_until_started --cluster-key cl.key.pub --listen 127.0.0.1:0 --rollout-file rf
echo "nonsense two" >>rf
run_until_started --cluster-key cl.key.pub --listen 127.0.0.1:0 --rollout-file rf
if grep -q "1 line(s) skipped (line 3: expected 'rollout ORG/NAME@COMMIT \[zone ZONE\] \[ref BRANCH\]'); copied to rf.bad" run.txt &&
   grep -qx "nonsense one" rf.bad && grep -qx "nonsense two" rf.bad &&
   grep -q "^# line 2: expected" rf.bad &&
   [ "$(grep -v '^#' rf)" = "$good_line" ]
then echo "ok   bad rollout lines appended to FILE.bad across starts, the file rewritten"
else echo "FAIL bad rollout lines kept in FILE.bad"; cat run.txt rf rf.bad; fails=$((fails+1)); fi
printf '%s\nnonsense three\n' "$good_line" >rf2
cp rf2 rf2.orig
mkdir rf2.bad
expect 1 "rf2: 1 line\(s\) do not parse .* cannot be copied to rf2.bad: Is a directory; the file is left as it is" \
    "a .bad that cannot be written stops the start" \
    "$tracker" --cluster-key cl.key.pub --listen 127.0.0.1:0 --rollout-file rf2
if cmp -s rf2 rf2.orig; then echo "ok   ... and leaves the rollout file as it was"
else echo "FAIL the rollout file changed although its bad lines were not kept"; fails=$((fails+1)); fi
# The shipped example config works once its paths point here.
if [ -f "$example" ]; then
    for k in cluster publishers admins tracker.key; do "$shoal" keygen $k >/dev/null; done
    sed -e 's|/etc/shoal/||; s|/var/lib/shoal-tracker/||; s|0.0.0.0:7700|127.0.0.1:0|' \
        "$example" >example.conf
    # The key comes from the command line, as in the unit (see below).
    run_until_started --config example.conf --key tracker.key
    if grep -q "announce 30000 ms, ttl 90000 ms" run.txt && grep -q "exit 0" run.txt &&
       grep -q "tracker key $(awk '{print $2}' tracker.key.pub): proven" run.txt &&
       [ -f rollouts ]
    then echo "ok   the example config starts a tracker (and its rollout file)"
    else echo "FAIL the example config"; cat run.txt; fails=$((fails+1)); fi
fi
# The unit runs the tracker as a dynamic user (DynamicUser=yes), which cannot
# read a root-owned 0600 key; the key must come as a credential: systemd
# copies it into a directory only that user can read, mode 0400, and %d
# names it. Done as systemd would, with nobody standing in for the dynamic
# user (root only: setpriv).
if [ -f "$unit" ] && [ -f "$example" ] && [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    cred=$(sed -n 's/^LoadCredential=//p' "$unit")
    exec_line=$(sed -n 's/^ExecStart=//p' "$unit")
    if [ "$cred" = "tracker.key:/etc/shoal/tracker.key" ] &&
       grep -q '^DynamicUser=yes' "$unit" && ! grep -qE '^[[:space:]]*key[[:space:]]*=' "$example"
    then echo "ok   the unit loads the key as a credential; the example config names no key"
    else echo "FAIL unit credential '$cred' / example config key line"; fails=$((fails+1)); fi
    svc="$work/svc"; mkdir -p "$svc/creds" "$svc/state"
    chmod 755 "$work" "$svc"
    for k in cluster publishers admins; do cp "$k.pub" "$svc/$k.pub"; done
    cp tracker.key "$svc/tracker.key"   # /etc/shoal/tracker.key: root's, 0600
    cp tracker.key "$svc/creds/tracker.key"
    chown -R nobody:nogroup "$svc/creds" "$svc/state"
    chmod 0400 "$svc/creds/tracker.key"; chmod 0500 "$svc/creds"
    sed -e "s|/etc/shoal/|$svc/|; s|/var/lib/shoal-tracker/|$svc/state/|; s|0.0.0.0:7700|127.0.0.1:0|" \
        "$example" >"$svc/shoal-tracker.conf"
    # shellcheck disable=SC2086 # the unit's command line, split as systemd does
    set -- $(printf '%s\n' "$exec_line" | sed -e "s|%d|$svc/creds|g" \
        -e "s|/etc/shoal/|$svc/|g" -e "s|^/usr/local/bin/shoal-tracker||")
    ( setpriv --reuid=nobody --regid=nogroup --clear-groups "$tracker" "$@" >run.txt 2>&1 &
      pid=$!
      for _ in $(seq 100); do grep -q "started on" run.txt && break
          kill -0 $pid 2>/dev/null || break; sleep 0.1; done
      kill -TERM $pid 2>/dev/null; wait $pid; echo "exit $?" >>run.txt )
    if grep -q "tracker key $(awk '{print $2}' tracker.key.pub): proven" run.txt &&
       grep -q "exit 0" run.txt
    then echo "ok   the unit's command line starts the tracker as its user, key from credentials"
    else echo "FAIL the unit's command line as a dynamic user would run it:"
         echo "     $exec_line"; cat run.txt; fails=$((fails+1)); fi
fi
echo "$fails failed"
[ $fails -eq 0 ]
