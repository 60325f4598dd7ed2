# SPDX-License-Identifier: MIT
# Sourced by .ci/test and .ci/demo: installs the Debian packages shoal needs
# to build, test and benchmark, only when something is missing. Works as root
# (CI) and as a user with sudo. openssl (the command) makes the throwaway
# CA and certificate of the https tests (tests/hub/tlscert.py).
shoal_packages="meson ninja-build pkg-config gcc libc6-dev libsodium-dev libuv1-dev
libmsgpack-dev libzstd-dev libcurl4-openssl-dev libssl-dev python3 python3-numpy curl nginx
clang libclang-rt-14-dev zstd iproute2 procps util-linux openssl"

shoal_install_deps() {
    local missing=() p
    for p in $shoal_packages; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}
