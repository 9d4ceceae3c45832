#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 machine (run as root) or an already prepared one:
# Debian packages the system tests need, then the .venv with microseg and its test/bench extras.
set -euo pipefail
cd "$(dirname "$0")/.."

# procps: sysctl, which the kernel tests run inside their namespaces (not in a minimal Debian).
DEBIAN_PACKAGES=(nftables iproute2 procps softflowd nfdump postgresql tcpdump)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    # `python3 -m venv --help` works without python3-venv on Debian; only ensurepip (which venv
    # needs to put pip into .venv) is split out into python3.X-venv.
    python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages: ${missing[*]} (run as root or install them)" >&2
        exit 1
    fi
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps the packaged postgresql/nfdump services from starting: tests run their own.
    # A policy-rc.d the machine already has (Debian container images ship one) is left alone;
    # ours is removed even when apt-get fails.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# A .venv without a working pip (e.g. left by a venv run that failed for lack of ensurepip)
# is recreated rather than reused.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    python3 -m venv --clear .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test,bench]"
