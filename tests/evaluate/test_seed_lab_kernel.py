"""The seed lab in network namespaces: the table of `microseg check` replayed with sockets.

A "switch" namespace routes the lab's segments and enforces the home-lab policy rendered to
nftables. Vlan299 is a Linux bridge whose ports (appserver1, web01, web02) are isolated and
whose SVI answers ARP for them (`proxy_arp_pvlan`, Linux's `ip local-proxy-arp`), as in
the seed; in the second lab the ports are not isolated, and web01 reaches web02 over the
bridge although the policy would drop it, exactly as `check` says ("not enforced").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.evaluate.netns import (
    in_ns,
    load_ruleset,
    make_router,
    match_counters,
    namespaces,
    require_root_and_nft,
    run,
    sysctl,
)
from tests.evaluate.test_check import SEED_TABLE, vlan299_not_isolated

from microseg.compile.resolve import compile_device
from microseg.evaluate.check import check_connection
from microseg.targets.nftables.render import render_ruleset
from support import cli_env

pytestmark = pytest.mark.system
SWITCH = "andreasm-720xp-home"
# The live lab's own services and probes: TCP greetings, DNS answers, ICMP echo.
SERVICES = (sys.executable, "-m", "microseg.lab.services")

# host -> (address/prefix, gateway, switch interface, switch address or None for Vlan299)
HOSTS = {
    "laptop": ("172.18.6.138/24", "172.18.6.1", "wifi", "172.18.6.1/24"),
    "mgmt": ("10.100.5.10/24", "10.100.5.1", "mgmt", "10.100.5.1/24"),
    "dns": ("10.100.1.7/24", "10.100.1.1", "infrastructure", "10.100.1.1/24"),
    "internet": ("172.31.255.2/30", "172.31.255.1", "uplink", "172.31.255.1/30"),
    "app1": ("10.100.99.50/24", "10.100.99.1", "vp50", None),
    "web01": ("10.100.99.51/24", "10.100.99.1", "vp51", None),
    "web02": ("10.100.99.52/24", "10.100.99.1", "vp52", None),
}
ADDRESS_HOST = {spec[0].split("/")[0]: name for name, spec in HOSTS.items()}
ADDRESS_HOST["8.8.8.8"] = "internet"


def build_seed_lab(names: dict[str, str], isolated: bool) -> None:
    switch = names["switch"]
    make_router(switch)
    run("ip", "-n", switch, "link", "add", "Vlan299", "type", "bridge")
    run("ip", "-n", switch, "addr", "add", "10.100.99.1/24", "dev", "Vlan299")
    run("ip", "-n", switch, "link", "set", "Vlan299", "up")
    if isolated:
        # `ip local-proxy-arp` on the SVI: answer ARP for hosts of the same subnet.
        sysctl(switch, "net.ipv4.conf.Vlan299.proxy_arp", "1")
        sysctl(switch, "net.ipv4.conf.Vlan299.proxy_arp_pvlan", "1")
        # As EOS, at once (Linux's default waits up to 0.8 s; see microseg.lab.topology).
        sysctl(switch, "net.ipv4.neigh.Vlan299.proxy_delay", "0")
    for host, (address, gateway, interface, switch_address) in HOSTS.items():
        namespace = names[host]
        run(
            "ip",
            "link",
            "add",
            interface,
            "netns",
            switch,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            namespace,
        )
        run("ip", "-n", namespace, "addr", "add", address, "dev", "eth0")
        run("ip", "-n", namespace, "link", "set", "eth0", "up")
        run("ip", "-n", namespace, "route", "add", "default", "via", gateway)
        if switch_address is None:
            run("ip", "-n", switch, "link", "set", interface, "master", "Vlan299")
            if isolated:
                run("bridge", "-n", switch, "link", "set", "dev", interface, "isolated", "on")
        else:
            run("ip", "-n", switch, "addr", "add", switch_address, "dev", interface)
        run("ip", "-n", switch, "link", "set", interface, "up")
    run("ip", "-n", names["internet"], "addr", "add", "8.8.8.8/32", "dev", "lo")
    run("ip", "-n", switch, "route", "add", "8.8.8.8/32", "via", "172.31.255.2")


def replay(names: dict[str, str], rows) -> list[str]:
    """Run every row's client at once; the kernel's answer per row."""
    clients = []
    for source, destination, protocol, port, *_ in rows:
        clients.append(
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    names[ADDRESS_HOST[source]],
                    *SERVICES,
                    "probe",
                    protocol,
                    destination,
                    str(port or 0),
                ],
                env=cli_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for client in clients:
        out, err = client.communicate(timeout=30)
        assert client.returncode == 0, err
        results.append(out.strip())
    return results


def start_servers(names: dict[str, str]) -> list[subprocess.Popen]:
    servers = []
    for host in ("app1", "web01", "web02", "dns", "internet"):
        server = subprocess.Popen(
            ["ip", "netns", "exec", names[host], *SERVICES, "serve"],
            env=cli_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout.readline().strip() == "ready"
        servers.append(server)
    return servers


def _lab(home_lab, tmp_path: Path, isolated: bool, rows) -> tuple[list[str], dict[str, int]]:
    require_root_and_nft()
    with namespaces("switch", *HOSTS) as names:
        build_seed_lab(names, isolated)
        ruleset = render_ruleset(compile_device(home_lab, SWITCH))
        load_ruleset(names["switch"], ruleset, str(tmp_path / "home-lab.nft"))
        servers = start_servers(names)
        try:
            results = replay(names, rows)
            counters = match_counters(names["switch"])
        finally:
            for server in servers:
                server.kill()
                server.wait()
        in_ns(names["switch"], "nft", "delete", "table", "inet", "microseg")
    return results, counters


def test_seed_table_with_real_sockets_matches_check(home_lab, tmp_path):
    results, counters = _lab(home_lab, tmp_path, isolated=True, rows=SEED_TABLE)
    for row, kernel in zip(SEED_TABLE, results, strict=True):
        source, destination, protocol, port, expected, deciding = row
        checked = check_connection(home_lab, source, destination, protocol, port)
        assert kernel == ("connects" if checked.connects else "blocked"), row
        assert kernel == ("connects" if expected == "connects" else "blocked"), row
        blocking = [deciding] if isinstance(deciding, str) else list(deciding)
        for match in blocking:
            assert counters[match] > 0, (row, counters)


def test_web01_reaches_web02_over_the_bridge_when_not_isolated(home_lab, tmp_path):
    rows = [
        ("10.100.99.51", "10.100.99.52", "tcp", 22),
        ("10.100.99.51", "10.100.99.52", "tcp", 80),
    ]
    results, counters = _lab(home_lab, tmp_path, isolated=False, rows=rows)
    # The policy would drop both, but the traffic never reaches the switch.
    assert results == ["connects", "connects"]
    assert counters["drop_all_else_web-app"] == 0
    assert counters["drop_http_between_webservers"] == 0
    variant = vlan299_not_isolated(home_lab)
    for source, destination, protocol, port in rows:
        checked = check_connection(variant, source, destination, protocol, port)
        assert (checked.enforced, checked.connects, checked.policy_allows) == (False, True, False)
