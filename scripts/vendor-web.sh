#!/usr/bin/env bash
# Vendor the web UI's JavaScript from the npm registry (run by a developer, never at run
# time or in CI): `npm pack` the pinned versions, check each tarball's integrity against the
# one recorded in static/vendor/VERSIONS, copy the files and their LICENSE, and rewrite the
# sha256 sums that tests/web/test_vendored.py checks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENDOR=src/microseg/server/web/static/vendor
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# package version integrity -> the packed directory
fetch() {
    local package=$1 version=$2 integrity=$3
    (cd "$WORK" && npm pack --silent "$package@$version" >/dev/null)
    local tarball="$WORK/${package}-${version}.tgz"
    local actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
    if [ "$actual" != "$integrity" ]; then
        echo "vendor-web: $package@$version: integrity $actual, expected $integrity" >&2
        exit 1
    fi
    mkdir -p "$WORK/$package" && tar xzf "$tarball" -C "$WORK/$package"
}

while read -r package version integrity; do
    fetch "$package" "$version" "$integrity"
done < <(grep -E '^[a-z]' "$VENDOR/VERSIONS" | grep -v '^[0-9a-f]\{64\}')

mkdir -p "$VENDOR/htmx" "$VENDOR/htmx-ext-sse"
cp "$WORK/htmx.org/package/dist/htmx.min.js" "$WORK/htmx.org/package/LICENSE" "$VENDOR/htmx/"
cp "$WORK/htmx-ext-sse/package/dist/sse.js" "$WORK/htmx-ext-sse/package/LICENSE" "$VENDOR/htmx-ext-sse/"
(cd "$VENDOR" && sha256sum htmx/htmx.min.js htmx/LICENSE htmx-ext-sse/sse.js htmx-ext-sse/LICENSE) >"$WORK/sums"
{ grep -v '^[0-9a-f]\{64\}' "$VENDOR/VERSIONS"; cat "$WORK/sums"; } >"$WORK/VERSIONS"
mv "$WORK/VERSIONS" "$VENDOR/VERSIONS"
echo "vendor-web: $(grep -c '^[0-9a-f]\{64\}' "$VENDOR/VERSIONS") files vendored"
