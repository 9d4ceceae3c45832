"""Network namespaces for the kernel tests: a routing "switch" and hosts, created and removed
by the test itself (unique names), traffic only inside them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result


def in_ns(namespace: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("ip", "netns", "exec", namespace, *argv, check=check)


def require_root_and_nft() -> None:
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.fail("kernel tests need root, nft and ip (CI runs as root; see scripts/setup.sh)")


def sysctl(namespace: str, name: str, value: str) -> None:
    in_ns(namespace, "sysctl", "-qw", f"{name}={value}")


def make_router(namespace: str) -> None:
    """Forward IPv4 and IPv6, no reverse-path filter, no ICMP redirects, bridges not
    handing frames to the IP hooks (a switch's L2 never meets its traffic policy)."""
    for name, value in (
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv6.conf.all.forwarding", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
        ("net.ipv4.conf.all.send_redirects", "0"),
        ("net.ipv4.conf.default.send_redirects", "0"),
        ("net.ipv6.conf.all.accept_dad", "0"),
        ("net.ipv6.conf.default.accept_dad", "0"),
    ):
        sysctl(namespace, name, value)
    for name in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"):
        in_ns(namespace, "sysctl", "-qw", f"{name}=0", check=False)


@contextmanager
def namespaces(*roles: str) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:6]
    names = {role: f"mse{tag}{role}" for role in roles}
    created = []
    try:
        for name in names.values():
            run("ip", "netns", "add", name)
            created.append(name)
            run("ip", "-n", name, "link", "set", "lo", "up")
        yield names
    finally:
        for name in created:
            run("ip", "netns", "del", name, check=False)


def load_ruleset(namespace: str, ruleset: str, path: str) -> None:
    with open(path, "w") as out:
        out.write(ruleset)
    in_ns(namespace, "nft", "-f", path)


def match_counters(namespace: str) -> dict[str, int]:
    """Packets per match name: counters of the `microseg` table, keyed by the comment (the
    match name) of the rules that use them."""
    return {name: packets for name, (packets, _) in match_counters_with_bytes(namespace).items()}


def named_counters(namespace: str) -> dict[str, tuple[int, int]]:
    """(packets, bytes) per named counter of the `microseg` table."""
    listing = json.loads(
        in_ns(namespace, "nft", "-j", "list", "counters", "table", "inet", "microseg").stdout
    )
    return {
        item["counter"]["name"]: (item["counter"]["packets"], item["counter"]["bytes"])
        for item in listing["nftables"]
        if "counter" in item
    }


def match_counters_with_bytes(namespace: str) -> dict[str, tuple[int, int]]:
    """(packets, bytes) per match name; bytes count the L3 packet (IP header onwards)."""
    listing = json.loads(in_ns(namespace, "nft", "-j", "list", "table", "inet", "microseg").stdout)
    packets: dict[str, tuple[int, int]] = {}
    counter_match: dict[str, str] = {}
    for item in listing["nftables"]:
        if "counter" in item:
            counter = item["counter"]
            packets[counter["name"]] = (counter["packets"], counter["bytes"])
        rule = item.get("rule")
        if rule and "comment" in rule:
            for expression in rule["expr"]:
                if "counter" in expression and isinstance(expression["counter"], str):
                    counter_match[expression["counter"]] = rule["comment"]
    return {counter_match[name]: count for name, count in packets.items() if name in counter_match}
