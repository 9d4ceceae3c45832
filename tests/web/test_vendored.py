"""The vendored JavaScript is exactly what scripts/vendor-web.sh took from the npm
registry (pinned versions, sha256 of every file recorded), with its licence beside it;
every page loads it from /static, never from a CDN."""

from __future__ import annotations

import hashlib
import re

from support import SRC

WEB = SRC / "microseg" / "server" / "web"
VENDOR = WEB / "static" / "vendor"


def recorded() -> dict[str, str]:
    sums = {}
    for line in (VENDOR / "VERSIONS").read_text().splitlines():
        found = re.fullmatch(r"([0-9a-f]{64})  (\S+)", line)
        if found:
            sums[found[2]] = found[1]
    return sums


def test_every_vendored_file_matches_its_recorded_sha256():
    sums = recorded()
    assert set(sums) == {
        "htmx/htmx.min.js",
        "htmx/LICENSE",
        "htmx-ext-sse/sse.js",
        "htmx-ext-sse/LICENSE",
    }
    for name, digest in sums.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name


def test_versions_are_pinned_with_the_registry_integrity():
    pins = re.findall(r"^(htmx\.org|htmx-ext-sse)\s+(\d+\.\d+\.\d+)\s+(sha512-\S+)$",
                      (VENDOR / "VERSIONS").read_text(), re.MULTILINE)  # fmt: skip
    assert [(name, version) for name, version, _ in pins] == [
        ("htmx.org", "2.0.11"),
        ("htmx-ext-sse", "2.2.4"),
    ]


def test_templates_load_scripts_only_from_this_server():
    for template in (WEB / "templates").rglob("*.html"):
        for source in re.findall(r"<script[^>]*src=\"([^\"]+)\"", template.read_text()):
            assert source.startswith("/static/vendor/"), (template.name, source)
