#!/usr/bin/env bash
# Installs the Debian packages cascadefs needs to build, test and demo,
# only those missing. Sourced by demo.sh and test.sh; runnable on its own.
# Needs root (or sudo) when anything is missing.

cascade_packages=(
    build-essential pkg-config meson ninja-build
    libssl-dev libfuse3-dev fuse3 libcmocka-dev
    attr python3 xxd util-linux
    scdoc man-db bash-completion zsh
)

cascade_install_deps() {
    local missing=() p
    for p in "${cascade_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q &&
        $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    cascade_install_deps
fi
