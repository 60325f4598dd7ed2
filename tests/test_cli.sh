#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The `shoal` tool as a person uses it: keys are written with the right
# modes and never overwritten, credentials verify only against their cluster,
# a manifest built from a repo folder verifies, lists every file with the
# right sha256, and any flipped byte or untrusted signer is refused.
# usage: test_cli.sh SHOAL_BINARY
set -u
shoal=$(readlink -f "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fails=0
check() { # description, command...
    local what=$1; shift
    if "$@" >out.txt 2>&1; then echo "ok   $what"; else echo "FAIL $what"; cat out.txt; fails=$((fails+1)); fi
}
refuse() { # description, command... (must fail with status 1 and say why)
    local what=$1; shift
    "$@" >out.txt 2>&1; local rc=$?
    if [ $rc -eq 1 ] && [ -s out.txt ]; then echo "ok   $what: $(tail -1 out.txt)"; else echo "FAIL $what (rc=$rc)"; cat out.txt; fails=$((fails+1)); fi
}

says() { # description, text, command... (must fail with status 1, printing text)
    local what=$1 text=$2; shift 2
    "$@" >out.txt 2>&1; local rc=$?
    if [ $rc -eq 1 ] && grep -qF -- "$text" out.txt; then echo "ok   $what"
    else echo "FAIL $what (rc=$rc; want \"$text\")"; cat out.txt; fails=$((fails+1)); fi
}

check "keygen" "$shoal" keygen pub.key
check "secret key is mode 600" test "$(stat -c %a pub.key)" = 600
refuse "keygen refuses to overwrite" "$shoal" keygen pub.key
chmod 644 pub.key
says "a secret key readable by others is refused, saying so" \
    "pub.key is readable by group/others (mode 0644): chmod 600 pub.key" \
    "$shoal" manifest build . --repo a/b --commit 0000000000000000000000000000000000000000 --key pub.key --out x
chmod 600 pub.key

check "cluster keygen" "$shoal" keygen cluster.key
check "node keygen" "$shoal" keygen node.key
check "cred issue" "$shoal" cred issue --cluster-key cluster.key --node node.key.pub --out node.cred
check "cred verify" "$shoal" cred verify --cluster-pub cluster.key.pub node.cred
# The halves of a key pair given the wrong way round: each named as such.
says "a .pub where a secret key is expected" \
    "cluster.key.pub is a public key; a secret key is expected here (the file without .pub: cluster.key)" \
    "$shoal" cred issue --cluster-key cluster.key.pub --node node.key.pub --out x.cred
says "a secret key where a public key is expected" \
    "node.key is a secret key; give the public key (node.key.pub)" \
    "$shoal" cred issue --cluster-key cluster.key --node node.key --out x.cred
says "a secret key as a trust list" "cluster.key is a secret key; give the public key" \
    "$shoal" cred verify --cluster-pub cluster.key node.cred
says "a secret key given as the credential" "node.key: REJECTED: " \
    "$shoal" cred verify --cluster-pub cluster.key.pub node.key
grep -qF "(it is a secret key file, not a credential)" out.txt &&
    echo "ok   ... named as a secret key file" ||
    { echo "FAIL a secret key given as the credential is not named as such"; cat out.txt; fails=$((fails+1)); }
"$shoal" keygen other.key >/dev/null
refuse "cred from another cluster" "$shoal" cred verify --cluster-pub other.key.pub node.cred

mkdir -p repo/sub
head -c 3000000 /dev/urandom > repo/model.safetensors
echo '{"a": 1}' > repo/config.json
echo 'nested' > repo/sub/file.txt
mkdir repo/.git && echo junk > repo/.git/HEAD
commit=0123456789abcdef0123456789abcdef01234567
check "manifest build" "$shoal" manifest build repo --repo org/name --commit $commit --key pub.key --out r.mf --min 64K --avg 256K --max 1M
check "manifest verify" "$shoal" manifest verify r.mf --trust pub.key.pub
"$shoal" manifest show r.mf --trust pub.key.pub > show.txt
sha=$(sha256sum repo/model.safetensors | cut -d' ' -f1)
check "show lists the shard with its sha256" grep -q "model.safetensors .*$sha" show.txt
check "show lists nested files" grep -q "sub/file.txt" show.txt
if grep -q "\.git" show.txt; then echo "FAIL .git was included"; fails=$((fails+1)); else echo "ok   .git is skipped"; fi
refuse "untrusted publisher" "$shoal" manifest verify r.mf --trust other.key.pub
# Symlinks: a Hugging Face snapshot's links into ../../blobs are followed;
# one leading out of the folder (a secret elsewhere) is refused, named.
mkdir -p hf/models--o--n/blobs hf/models--o--n/snapshots/$commit outside
echo '{"b": 2}' > hf/models--o--n/blobs/aaaa
ln -s ../../blobs/aaaa hf/models--o--n/snapshots/$commit/config.json
check "manifest build of an HF snapshot folder (links into its blobs)" \
    "$shoal" manifest build hf/models--o--n/snapshots/$commit --repo o/n --commit $commit \
    --key pub.key --out hf.mf
echo 'secret' > outside/id_secret
ln -s "$work/outside/id_secret" repo/tokenizer.json
refuse "manifest build refuses a symlink out of the folder" \
    "$shoal" manifest build repo --repo org/name --commit $commit --key pub.key --out bad.mf
if grep -q "tokenizer.json: a symlink to .*outside the folder" out.txt && [ ! -e bad.mf ]; then
    echo "ok   the refusal names the link and writes nothing"
else echo "FAIL the refusal should name repo/tokenizer.json"; cat out.txt; fails=$((fails+1)); fi
rm repo/tokenizer.json
ln -s "$work/nowhere" repo/dangling
refuse "manifest build refuses a dangling symlink" \
    "$shoal" manifest build repo --repo org/name --commit $commit --key pub.key --out bad.mf
grep -q "dangling: a symlink whose target cannot be read" out.txt ||
    { echo "FAIL the dangling link is not named"; cat out.txt; fails=$((fails+1)); }
rm repo/dangling
size=$(stat -c %s r.mf)
flips=0
for off in 0 7 $((size/3)) $((size/2)) $((size-70)) $((size-1)); do
    cp r.mf t.mf
    b=$(od -An -tu1 -j $off -N1 t.mf | tr -d ' ')
    printf "$(printf '\\%03o' $(( (b ^ 1) & 255 )))" | dd of=t.mf bs=1 seek=$off conv=notrunc status=none
    if "$shoal" manifest verify t.mf --trust pub.key.pub >/dev/null 2>&1; then
        echo "FAIL flipped byte at $off accepted"; fails=$((fails+1)); else flips=$((flips+1)); fi
done
echo "ok   $flips flipped-byte manifests refused"
head -c $((size - 10)) r.mf > trunc.mf
refuse "truncated manifest" "$shoal" manifest verify trunc.mf --trust pub.key.pub

"$shoal" chunk --min 64K --avg 256K --max 1M --ids repo/model.safetensors > chunks.txt
n=$(grep -cE '^ +[0-9]+ +[0-9]+ [0-9a-f]{64}$' chunks.txt)
check "chunk --ids lists chunks ($n)" test "$n" -ge 3
total=$(grep -E '^ +[0-9]+ +[0-9]+ [0-9a-f]{64}$' chunks.txt | awk '{s+=$2} END {print s}')
check "chunk lengths add up to the file size" test "$total" = 3000000
"$shoal" nosuchcmd >/dev/null 2>&1; rc=$?
check "unknown command exits 2" test $rc = 2
check "help" "$shoal" help

# Usage errors exit 2 and say what was wrong with what.
usage_err() { # description, expected output (grep -E), command...
    local what=$1 want=$2; shift 2
    "$@" >out.txt 2>&1; local rc=$?
    if [ $rc -eq 2 ] && grep -Eq -- "$want" out.txt; then echo "ok   $what: $(tail -1 out.txt)"
    else echo "FAIL $what (rc=$rc)"; cat out.txt; fails=$((fails+1)); fi
}
# The daemon's commands too (they printed a one-line usage to stderr, exit 2).
for cmd in publish rollout "cred issue" manifest chunk hash keygen pull status peers metrics \
           drop "pull org/x@main"; do
    # shellcheck disable=SC2086
    "$shoal" $cmd --help >out.txt 2>err.txt; rc=$?
    if [ $rc -eq 0 ] && grep -q "^  shoal ${cmd%% *} " out.txt && [ ! -s err.txt ]; then
        echo "ok   shoal $cmd --help"
    else echo "FAIL shoal $cmd --help (rc=$rc)"; cat out.txt err.txt; fails=$((fails+1)); fi
done
for d in 0 0.00001 abc 3x -1 99999 nan; do
    usage_err "cred issue --days $d" "from one second to 3650, not '$d'" \
        "$shoal" cred issue --cluster-key cluster.key --node node.key.pub --out d.cred --days "$d"
done
check "cred issue --days 7" "$shoal" cred issue --cluster-key cluster.key --node node.key.pub --out d.cred --days 7
check "cred issue --days 0.0417 (an hour)" "$shoal" cred issue --cluster-key cluster.key --node node.key.pub --out d.cred --days 0.0417
usage_err "manifest build --commit 0123" "commit must be 40 hex characters" \
    "$shoal" manifest build repo --repo a/b --commit 0123 --key pub.key --out c.mf
"$shoal" manifest build repo --repo a/b --commit "$(printf 'AB%.0s' $(seq 20))" --key pub.key \
    --out c.mf > upper.txt 2>&1
check "manifest build takes an upper-case commit, stored in lower case" \
    grep -q "a/b@abababababababababababababababababababab" upper.txt
usage_err "rollout --status --zone" "--status counts the nodes of every zone the rollout names" \
    "$shoal" rollout a/b@0 --status --zone za --tracker 127.0.0.1:1 --key node.key --cred node.cred
usage_err "rollout --remove --status" "--remove and --status do not go together" \
    "$shoal" rollout a/b@0 --remove --status --tracker 127.0.0.1:1 --key node.key --cred node.cred
# The control-socket commands say what was wrong before their usage line.
for t in -1 abc nan ""; do
    usage_err "pull --timeout '$t'" "--timeout takes seconds, 0 or more \(0: no limit\), not '$t'" \
        "$shoal" pull org/x@main --timeout "$t"
done
usage_err "pull --timeout with no value" "--timeout needs a value" "$shoal" pull org/x@main --timeout
usage_err "pull of two releases" "one release at a time \('a/b@main' and 'c/d@main'\)" \
    "$shoal" pull a/b@main c/d@main
usage_err "pull of nothing" "which release\?" "$shoal" pull
usage_err "status with a release" "takes no release \('a/b@main'\)" "$shoal" status a/b@main
usage_err "peers --bogus" "unknown option '--bogus'" "$shoal" peers --bogus

[ $fails -eq 0 ] && echo "all passed" || echo "$fails failed"
exit $((fails > 0))
