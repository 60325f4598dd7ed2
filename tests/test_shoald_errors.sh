#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# shoald refuses bad setups with a clear message and a clean exit (status 1,
# no crash, no core), takes every option from the shipped example config, and
# answers --help and unknown options as documented.
# usage: test_shoald_errors.sh SHOALD SHOAL EXAMPLE_CONF
set -u
shoald=$(readlink -f "$1"); shoal=$(readlink -f "$2"); conf=$(readlink -f "$3")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; cd "$work"
# Not the token a login left on this machine (read after $HF_TOKEN).
export HF_TOKEN_PATH=/nonexistent/shoal-tests/token
unset HF_TOKEN
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
long=$(printf 'x%.0s' $(seq 120))
expect 1 "the path is too long for a Unix socket" "--control-socket path too long" \
    "$shoald" "${common[@]}" --control-socket "$work/$long.sock"
expect 1 "control-socket and loader-socket are the same path" "one path for both sockets" \
    "$shoald" "${common[@]}" --control-socket "$work/same.sock" --loader-socket "$work/same.sock"
# A socket in a directory someone else may write is refused: they could
# move it aside and listen in its place (loaders would take their files),
# or swap it for a link between bind and chmod. Links on the way count.
mkdir open && chmod 0777 open && ln -s open linked
expect 1 "loader socket .*open/l.sock: directory .*/open is writable by every user \(mode 0777, not sticky\)" \
    "--loader-socket in a world-writable directory" "$shoald" "${common[@]}" --loader-socket "$work/open/l.sock"
expect 1 "control socket .*open/c.sock: directory .*/open is writable by every user" \
    "--control-socket in a world-writable directory" "$shoald" "${common[@]}" --control-socket "$work/open/c.sock"
expect 1 "loader socket .*linked/l.sock: directory .*/open is writable by every user" \
    "--loader-socket through a link to such a directory" "$shoald" "${common[@]}" --loader-socket "$work/linked/l.sock"
mkdir grp && chmod 0770 grp
expect 1 "directory .*/grp is writable by its group \(mode 0770" "--loader-socket in a group-writable directory" \
    "$shoald" "${common[@]}" --loader-socket "$work/grp/sub/l.sock"
if [ "$(id -u)" = 0 ]; then
    # ... and a link on the way that someone else owns (they could point
    # it elsewhere after the check).
    mkdir mine && ln -s mine theirlink && chown -h 65534 theirlink
    expect 1 "link .*/theirlink belongs to uid 65534, not to root or to this user" \
        "--loader-socket through another user's link" "$shoald" "${common[@]}" --loader-socket "$work/theirlink/l.sock"
    mkdir theirs && chown 65534 theirs
    expect 1 "directory .*/theirs belongs to uid 65534, not to root or to this user" \
        "--control-socket in another user's directory" "$shoald" "${common[@]}" --control-socket "$work/theirs/c.sock"
fi
test ! -e open/l.sock && test ! -e open/c.sock || { echo "FAIL a refused socket was made"; fails=$((fails+1)); }
expect 1 "deny-keys: .*/nonexistent-deny.pub.*No such file" "missing --deny-keys file named" \
    "$shoald" "${common[@]}" --deny-keys /nonexistent-deny.pub
# Out-of-range values are refused naming the range, not clamped in silence;
# a missing token file is named as such (not as the origin).
expect 1 "max-frame 1024: use 4259840 " "--max-frame below one chunk" "$shoald" "${common[@]}" --max-frame 1K
expect 1 "compress-level 9: use 1-3" "--compress-level 9" "$shoald" "${common[@]}" --compress-level 9
expect 1 "max-peers 0: use 1-250" "--max-peers 0" "$shoald" "${common[@]}" --max-peers 0
expect 1 "max-leases 100: use 1-16" "--max-leases 100" "$shoald" "${common[@]}" --max-leases 100
expect 1 "max-leases 0: use 1-16" "--max-leases 0" "$shoald" "${common[@]}" --max-leases 0
expect 1 "starved-ms 0: use 1000-86400000" "--starved-ms 0" "$shoald" "${common[@]}" --starved-ms 0
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
# The origin's CA bundle (--hub-ca, else $CURL_CA_BUNDLE, else
# $SSL_CERT_FILE) is read at start: a missing one, or one holding no
# certificate, stops shoald naming the file and where it came from.
unset CURL_CA_BUNDLE SSL_CERT_FILE
# The token huggingface_hub's login saved (here $HF_TOKEN_PATH) is read
# like --hub-token-file: one with a byte an HTTP header cannot carry stops
# shoald naming the file and the variable; a missing one is no token.
printf '  tok en\n' > login-token
HF_TOKEN_PATH=$PWD/login-token expect 1 \
    'hub token from \S*login-token \(\$HF_TOKEN_PATH\): it holds characters not allowed' \
    "bad login token file named" "$shoald" "${common[@]}"
expect 1 "hub-ca: CA bundle /nonexistent-ca.pem: No such file" "missing --hub-ca named" \
    "$shoald" "${common[@]}" --hub-endpoint https://127.0.0.1:9 --hub-ca /nonexistent-ca.pem
expect 1 'CA bundle /nonexistent-env.pem \(from \$SSL_CERT_FILE\): No such file' \
    "missing \$SSL_CERT_FILE named" \
    env SSL_CERT_FILE=/nonexistent-env.pem "$shoald" "${common[@]}" --hub-endpoint https://127.0.0.1:9
echo "not a certificate" > notpem.pem
printf 'hub-ca = notpem.pem\n' > ca.conf
expect 1 "CA bundle notpem.pem: holds no PEM certificate" "hub-ca without a certificate, from a config file" \
    "$shoald" --config ca.conf "${common[@]}" --hub-endpoint https://127.0.0.1:9
chmod 000 notpem.pem
[ "$(id -u)" -ne 0 ] && expect 1 "CA bundle notpem.pem: Permission denied" "unreadable --hub-ca" \
    "$shoald" "${common[@]}" --hub-endpoint https://127.0.0.1:9 --hub-ca notpem.pem
expect 0 "hub-ca FILE +PEM bundle of the CAs" "--help documents --hub-ca" "$shoald" --help
# Were clamped or replaced in silence: 1000000 chunks a lease became 64, 0
# the default; 10^17 ban seconds wrapped (x1000) to a ban already over;
# serve-per-peer 0 became 16.
expect 1 "lease-chunks 1000000: use 1-64" "--lease-chunks 1000000" "$shoald" "${common[@]}" --lease-chunks 1000000
expect 1 "lease-chunks 0: use 1-64" "--lease-chunks 0" "$shoald" "${common[@]}" --lease-chunks 0
expect 1 "ban-seconds 99999999999999999: use 1-31536000" "--ban-seconds 10^17" \
    "$shoald" "${common[@]}" --ban-seconds 99999999999999999
expect 1 "serve-per-peer 0: use 1-64" "--serve-per-peer 0" "$shoald" "${common[@]}" --serve-per-peer 0
expect 0 "lease-chunks N +chunks asked for per origin lease \(64; 1-64" "--help states lease-chunks' range" "$shoald" --help
expect 0 "serve-per-peer N +uploads in flight per peer \(16; 1-64\)" "--help states serve-per-peer's range" "$shoald" --help
# Rates: nonsense is refused (nan was 9223372036854775808 bytes/s), as is
# a bit rate in powers of 1024 ("Mibit").
expect 2 "'nan' is not a rate" "--rate-up nan" "$shoald" "${common[@]}" --rate-up nan
expect 2 "'-5M' is not a rate" "--rate-up -5M" "$shoald" "${common[@]}" --rate-up -5M
expect 2 "'inf' is not a rate" "--peer-rate-down inf" "$shoald" "${common[@]}" --peer-rate-down inf
expect 2 "'100Mibit': a bit rate takes K/M/G/T as powers of 1000" "--rate-down 100Mibit" \
    "$shoald" "${common[@]}" --rate-down 100Mibit
# The slow-origin floor (hub.c's slow_floor_bps, slow_window_ms): a rate
# like the others, a window in range, both also in the config file.
expect 2 "'origin-min-rate': 'fast' is not a rate" "--origin-min-rate fast" \
    "$shoald" "${common[@]}" --origin-min-rate fast
expect 1 "origin-slow-window-ms 999: use 1000-3600000" "--origin-slow-window-ms 999" \
    "$shoald" "${common[@]}" --origin-slow-window-ms 999
expect 1 "origin-slow-window-ms 3600001: use 1000-3600000" "--origin-slow-window-ms 3600001" \
    "$shoald" "${common[@]}" --origin-slow-window-ms 3600001
printf 'origin-slow-window-ms = 0\n' > window.conf
expect 1 "origin-slow-window-ms 0: use 1000-3600000" "origin-slow-window-ms 0 in a config file" \
    "$shoald" --config window.conf "${common[@]}"
# A key set twice in the file is refused naming both lines (QA H4: the
# last one won without a word); list keys accumulate.
printf 'zone = a\nzone = b\n' > twice.conf
expect 1 "twice.conf:2: 'zone' is set a second time \\(first at line 1\\): keep one" \
    "a key set twice in the config file" "$shoald" --config twice.conf "${common[@]}"
printf 'origin-min-rate = 1 K\n' > minrate.conf
expect 1 "'1 K' is not a rate" "a bad origin-min-rate in the config file" "$shoald" --config minrate.conf
expect 0 "origin-min-rate RATE +end an origin range request under RATE" "--help lists origin-min-rate" \
    "$shoald" --help
printf 'rate-up = 100 M\n' > rate.conf
expect 1 "'100 M' is not a rate" "a bad rate in the config file" "$shoald" --config rate.conf
expect 0 "in powers of 1000 \(100Mbit =" "--help says what b and bit mean" "$shoald" --help

# starts WHAT PATTERN CMD...: CMD gets to "listening" and its log matches
# PATTERN; then it is stopped (SIGTERM).
starts() {
    local what=$1 pat=$2; shift 2
    # Emptied here, not only by the child's redirection: the loop below may
    # read the file before the child has opened it, and would then find the
    # last call's "listening on" (seen when several tests load the machine).
    : >start.txt
    "$@" >start.txt 2>&1 & local pid=$! i alive
    # Up to 30 s: a loaded CI machine (the suite runs two tests at once)
    # once took over 10 s to show a start-up line here.
    for i in $(seq 300); do
        grep -q "listening on" start.txt && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.1
    done
    if grep -q "listening on" start.txt && grep -qE "$pat" start.txt; then echo "ok   $what"
    else
        kill -0 $pid 2>/dev/null && alive="still running" || alive="exited"
        echo "FAIL $what ($alive after $((i / 10)) s; its output follows)"; cat start.txt
        fails=$((fails+1))
    fi
    kill $pid 2>/dev/null; wait $pid 2>/dev/null
}
# A state dir that is the cache dir, or inside it (a new folder at its top,
# a repo folder, a symlink into it), would put files among the repo
# folders: refused at start, not run without a state file.
mkdir -p "$work/c/models--acme--m1/blobs"; ln -s "$work/c" "$work/clink"
expect 1 "state-dir .* is the cache dir" "state-dir = cache-dir: refused" \
    "$shoald" "${common[@]}" --state-dir "$work/c"
expect 1 "state-dir .* is inside the cache dir" "state-dir a new folder in the cache: refused" \
    "$shoald" "${common[@]}" --state-dir "$work/c/shoald-state"
expect 1 "state-dir .* is inside the cache dir" "state-dir a repo folder: refused" \
    "$shoald" "${common[@]}" --state-dir "$work/c/models--acme--m1"
expect 1 "state-dir .* is inside the cache dir" "state-dir a symlink into the cache: refused" \
    "$shoald" "${common[@]}" --state-dir "$work/clink/new/deeper"
ls -A "$work/c" | grep -qvE '^(\.locks|models--acme--m1)$' &&
    { echo "FAIL something was written at the top of the cache: $(ls -A "$work/c")"
      fails=$((fails+1)); } || echo "ok   ... and nothing written at the top of the cache"
[ -z "$(ls "$work/c/models--acme--m1")" ] || [ "$(ls "$work/c/models--acme--m1")" = blobs ] &&
    echo "ok   ... nor in the repo folder" ||
    { echo "FAIL a file was written in the repo folder"; fails=$((fails+1)); }
# Next to the cache, with a name it starts with, is fine.
starts "state-dir next to the cache (c-state) taken" "state file .*/c-state/releases-" \
    "$shoald" "${common[@]}" --state-dir "$work/c-state"
# SIGHUP (a closed terminal, a log rotation) is logged and ignored; SIGTERM
# still shuts down cleanly, removing the control socket.
"$shoald" "${common[@]}" --control-socket "$PWD/hup.sock" >hup.txt 2>&1 & hpid=$!
for _ in $(seq 100); do grep -q "listening on" hup.txt && break; sleep 0.1; done
kill -HUP $hpid 2>/dev/null
for _ in $(seq 50); do grep -q "SIGHUP ignored" hup.txt && break; sleep 0.1; done
alive=no; kill -0 $hpid 2>/dev/null && alive=yes
kill -TERM $hpid 2>/dev/null; wait $hpid; hrc=$?
if [ $alive = yes ] && [ $hrc -eq 0 ] && grep -q "SIGHUP ignored" hup.txt &&
   grep -q "shut down cleanly" hup.txt && [ ! -e hup.sock ]; then
    echo "ok   SIGHUP is logged and ignored; SIGTERM then shuts down cleanly"
else echo "FAIL SIGHUP (alive after it: $alive, exit $hrc)"; cat hup.txt; fails=$((fails+1)); fi
# "100Mb" is 100 Mbit/s, as in shoal-sim (it was 100 MiB/s), and the log
# gives every cap in both units.
starts "--rate-up 100Mb is 100 Mbit/s, logged in both units" \
    "rate limits: up 11.92 MiB/s \(100 Mbit/s\), down 2.00 MiB/s \(16.78 Mbit/s\)" \
    "$shoald" "${common[@]}" --rate-up 100Mb --rate-down 2M

# The floor in force is logged with the origin: the defaults, a value
# from the command line, and 0 (never), this one from a config file.
starts "origin floor: default 64K over 60 s, logged" \
    "origin http://127.0.0.1:9 \(without a token; a range under 64.00 KiB/s \(524.3 kbit/s\) over 60.0 s is resumed\)" \
    "$shoald" "${common[@]}" --hub-endpoint http://127.0.0.1:9
# A login token file nobody named that cannot be read (a service user whose
# HOME is root's; here a directory in its place) is ignored with a warning:
# the node still starts, and pulls public models without a token.
mkdir -p home-x/.cache/huggingface/token
HOME=$PWD/home-x HF_TOKEN_PATH= starts "unreadable login token file ignored" \
    "hub login token file .*home-x/.cache/huggingface/token \(~/.cache/huggingface/token\): not a regular file: ignored" \
    "$shoald" "${common[@]}" --hub-endpoint http://127.0.0.1:9
starts "--origin-min-rate 1M --origin-slow-window-ms 2500, logged" \
    "a range under 1.00 MiB/s \(8.389 Mbit/s\) over 2.5 s is resumed" \
    "$shoald" "${common[@]}" --hub-endpoint http://127.0.0.1:9 --origin-min-rate 1M \
    --origin-slow-window-ms 2500
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
    -out ca.pem -days 1 -subj "/CN=shoal test CA" 2>/dev/null
starts "--hub-ca: which CAs the origin's TLS trusts, logged" \
    "origin TLS: trusting only the CAs in ca.pem" \
    "$shoald" "${common[@]}" --hub-endpoint https://127.0.0.1:9 --hub-ca ca.pem
printf 'origin-min-rate = 0\n' > never.conf
starts "origin-min-rate = 0 in a config file: never, logged" "no range is ended for being slow" \
    "$shoald" --config never.conf "${common[@]}" --hub-endpoint http://127.0.0.1:9

# Setups that can never work are refused at start, not discovered later:
# a credential for another node key (was a warning), one issued by a
# cluster not in --cluster-keys (was silent: every peer refused the node),
# an expired one (was not checked), none at all on a node with a tracker
# or a peer, no publisher keys (no manifest could ever be accepted).
"$shoal" keygen other.key >/dev/null; "$shoal" keygen rogue.key >/dev/null
"$shoal" cred issue --cluster-key cl.key --node other.key.pub --out other.cred >/dev/null
"$shoal" cred issue --cluster-key rogue.key --node n.key.pub --out rogue.cred >/dev/null
"$shoal" cred issue --cluster-key cl.key --node n.key.pub --out short.cred --days 0.0000116 >/dev/null
base=(--node-key n.key --cluster-keys cl.key.pub --publisher-keys cl.key.pub
      --cache-dir "$work/c" --listen 127.0.0.1:0 --control-socket none --state-dir none)
expect 1 "credential other.cred was issued for node key [0-9a-f]+, not this node's" \
    "credential of another node key" "$shoald" "${base[@]}" --cred other.cred
expect 1 "credential rogue.cred was issued by cluster key [0-9a-f]+, which is not in cluster-keys \(cl.key.pub\)" \
    "credential of another cluster" "$shoald" "${base[@]}" --cred rogue.cred
sleep 2 # short.cred has ended
expect 1 "credential short.cred expired at .*shoal cred issue" "expired credential" \
    "$shoald" "${base[@]}" --cred short.cred
expect 1 "no credential \(cred\): every tracker and peer would refuse this node" \
    "no credential, with a tracker" "$shoald" "${base[@]}" --tracker 127.0.0.1:9
expect 1 "no credential \(cred\): every peer would refuse" "no credential, with a peer" \
    "$shoald" "${base[@]}" --peer 127.0.0.1:9
starts "no credential, standalone (no tracker, no peer): starts" "no credential .*standalone" \
    "$shoald" "${base[@]}"
expect 1 "no cluster keys \(cluster-keys\): the credential n.cred cannot be checked" \
    "a credential and no cluster keys" "$shoald" --node-key n.key --cred n.cred \
    --publisher-keys cl.key.pub --cache-dir "$work/c" --listen 127.0.0.1:0 --control-socket none
expect 1 "no publisher keys \(publisher-keys\)" "no publisher keys" "$shoald" --node-key n.key \
    --cred n.cred --cluster-keys cl.key.pub --cache-dir "$work/c" --listen 127.0.0.1:0 --control-socket none
expect 0 "Required with a" "--help says when cred is required" "$shoald" --help
# A cache that cannot be created or written (was a warning about the lock;
# every pull failed later while systemd showed the daemon active).
touch notadir
expect 1 "cache $work/notadir/sub/hub cannot be written by this user .*Not a directory" \
    "cache dir under a file" "$shoald" "${common[@]}" --cache-dir "$work/notadir/sub/hub"
mkdir -p rootonly
if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null; then
    # nobody must read the keys and run shoald: copies it owns (the build
    # may sit below a 0700 directory, as a CI clone in mktemp -d does), the
    # cache under root's.
    mkdir nob; cp n.key n.cred cl.key.pub "$shoald" nob/; chown -R nobody nob; chmod 700 nob
    chmod 755 "$work"  # mktemp -d is 0700: nobody could not reach nob/
    expect 1 "cache $work/rootonly/sub/hub cannot be written by this user \(uid [0-9]+\).*Permission denied" \
        "cache dir not writable (runuser -u nobody)" runuser -u nobody -- "$work/nob/shoald" \
        --node-key nob/n.key --cred nob/n.cred --cluster-keys nob/cl.key.pub --publisher-keys nob/cl.key.pub \
        --listen 127.0.0.1:0 --control-socket none --state-dir none --cache-dir "$work/rootonly/sub/hub"
else
    chmod 555 rootonly
    expect 1 "cache $work/rootonly/sub/hub cannot be written by this user .*Permission denied" \
        "cache dir not writable" "$shoald" "${common[@]}" --cache-dir "$work/rootonly/sub/hub"
    chmod 755 rootonly
fi
# publisher-keys (and tracker-keys) may repeat: each file's keys count
# (a second line used to replace the first, so the release signed by the
# first file's key was refused).
"$shoal" keygen pub1.key >/dev/null; "$shoal" keygen pub2.key >/dev/null
mkdir -p repo; echo '{"a": 1}' > repo/config.json
"$shoal" manifest build repo --repo org/m --commit "$(printf 'ab%.0s' $(seq 20))" --key pub1.key \
    --out rel.manifest >/dev/null
printf 'publisher-keys = pub1.key.pub\npublisher-keys = pub2.key.pub\ntracker-keys = pub1.key.pub\ntracker-keys = pub2.key.pub\n' > twopub.conf
starts "publisher-keys repeated: a release signed by the first file's key opens" \
    "release [0-9a-f]+: org/m@" "$shoald" --config twopub.conf --node-key n.key --cred n.cred \
    --cluster-keys cl.key.pub --cache-dir "$work/c2" --listen 127.0.0.1:0 --control-socket none \
    --state-dir none --manifest rel.manifest
# A tracker-keys file with no key in it is named (each file is read once,
# checked on its own, then merged).
printf '# nothing here yet\n' > nokeys.pub
expect 1 "tracker keys nokeys.pub: no key in the file" "tracker-keys file with no key" \
    "$shoald" "${common[@]}" --tracker 127.0.0.1:9 --tracker-keys nokeys.pub
# The example config is a template for many VMs: no fixed advertise address.
if grep -qE '^[[:space:]]*advertise[[:space:]]*=' "$conf"; then
    echo "FAIL the example config sets advertise: every VM copying it would announce one host"
    fails=$((fails+1))
else echo "ok   example config leaves advertise unset"; fi
grep -q '^# may repeat (peer, manifest, pull, tracker, cluster-keys, publisher-keys,' "$conf" \
    && echo "ok   example config lists tracker among the keys that repeat" \
    || { echo "FAIL example config's list of repeatable keys"; fails=$((fails+1)); }
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
