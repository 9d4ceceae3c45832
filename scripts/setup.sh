#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 machine (run as root) or an already prepared one.
#
#   scripts/setup.sh demo   what `microseg demo` needs: Python with venv, .venv with microseg
#   scripts/setup.sh test   that, plus the Debian packages the system tests use (network
#                           namespaces, PostgreSQL, softflowd, nfdump, tcpdump) and the
#                           test and bench extras (the default)
#
# Debian packages are installed with apt-get only when missing. When another package manager
# holds the apt/dpkg locks (unattended-upgrades, cloud-init), setup waits for it.
set -euo pipefail

# procps: sysctl, which the kernel tests run inside their namespaces (not in a minimal Debian).
# chromium: the browser tests/web drives through Playwright (never a browser Playwright downloads).
# default-jre-headless: Java 17 on Debian 12, for the Spark engine's tests (pyspark 4 needs 17+).
TEST_PACKAGES=(nftables iproute2 procps softflowd nfdump postgresql tcpdump chromium default-jre-headless)
APT_LOCK_WAIT=${APT_LOCK_WAIT:-900} # seconds to wait for another apt/dpkg run to finish
APT_LOCK_POLL=${APT_LOCK_POLL:-5}   # seconds between tries of `apt-get update`

# The Debian packages a profile needs that are not installed.
missing_packages() {
    local profile=$1 packages=() missing=()
    [ "$profile" = test ] && packages=("${TEST_PACKAGES[@]}")
    command -v dpkg-query >/dev/null 2>&1 || return 0
    for pkg in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    # `python3 -m venv --help` works without python3-venv on Debian; only ensurepip (which venv
    # needs to put pip into .venv) is split out into python3.X-venv.
    python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
    echo "${missing[@]}"
}

# apt-get, waiting for the locks instead of failing on them. `-o DPkg::Lock::Timeout=N` makes
# apt (>= 1.9.11; Debian 12 has 2.6) wait for dpkg's frontend lock, but `apt-get update` takes
# the lists lock without waiting (apt 2.6.1: "E: Could not get lock /var/lib/apt/lists/lock.
# It is held by process N"), so a lock failure is retried until APT_LOCK_WAIT has passed.
apt_get() {
    local deadline=$((SECONDS + APT_LOCK_WAIT)) output status
    while true; do
        status=0
        output=$(apt-get -o DPkg::Lock::Timeout="$APT_LOCK_WAIT" "$@" 2>&1) || status=$?
        if [ "$status" -ne 0 ] && [ "$SECONDS" -lt "$deadline" ] \
            && grep -q "Could not get lock\|Unable to acquire the dpkg frontend lock" <<<"$output"; then
            echo "setup: another package manager holds the apt lock; waiting (apt-get $*)" >&2
            sleep "$APT_LOCK_POLL"
            continue
        fi
        if [ -n "$output" ]; then printf '%s\n' "$output"; fi
        return "$status"
    done
}

install_debian_packages() {
    local missing=("$@")
    [ ${#missing[@]} -gt 0 ] || return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages: ${missing[*]} (run as root or install them)" >&2
        return 1
    fi
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_get update -qq
    # policy-rc.d keeps the packaged postgresql/nfdump services from starting: tests run their own.
    # A policy-rc.d the machine already has (Debian container images ship one) is left alone;
    # ours is removed even when apt-get fails.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    fi
    apt_get install -y -qq --no-install-recommends "${missing[@]}"
}

install_venv() {
    local profile=$1 extras=""
    [ "$profile" = test ] && extras="[test,bench]"
    # A .venv without a working pip (e.g. left by a venv run that failed for lack of ensurepip)
    # is recreated rather than reused.
    if [ ! -x .venv/bin/python ] || ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
        python3 -m venv --clear .venv
    fi
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".$extras"
}

main() {
    local profile=${1:-test}
    case "$profile" in
    demo | test) ;;
    *)
        echo "usage: scripts/setup.sh [demo|test]" >&2
        return 2
        ;;
    esac
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    local missing
    read -r -a missing <<<"$(missing_packages "$profile")"
    install_debian_packages "${missing[@]}"
    install_venv "$profile"
}

# Sourced (by tests/test_setup.py) it only defines the functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
