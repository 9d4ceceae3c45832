"""The Policy Monitor on the lab: `microseg lab up` deploys the seed's final policy to the
lab's switch, lab hosts send known numbers of datagrams with real sockets, and `monitor
rules` reports per rule exactly what the switch's kernel counted, with the rules nothing
hit listed as unused."""

from __future__ import annotations

import json
import re
import sys

import pytest
from tests.lab import test_lab
from tests.lab.test_lab import cli

from microseg.lab.topology import SWITCH, State, in_ns

pytestmark = [pytest.mark.system, pytest.mark.slow]
lab_env = test_lab.lab_env  # the lab tests' fixture: own state dir, prefix and store
POLICY = "vrf_all_home"
PAYLOAD = b"microseg-monitor"
DATAGRAM_BYTES = 20 + 8 + len(PAYLOAD)  # nft counts from the IPv4 header on
# The DNS/NTP host drops what it is sent before its services see it, so no reply crosses
# the switch and the rules count exactly the datagrams sent.
SILENT_SERVER = """
table ip monitor_test_sink {
	chain input {
		type filter hook input priority filter; policy accept;
		udp dport { 53, 123 } drop
	}
}
"""
# (source host, destination, udp port, datagrams) -> the rule that decides them
TRAFFIC = (
    ("laptop", "10.100.1.6", 123, 7, "allow_all_NTP"),
    ("appserver1", "10.100.1.7", 53, 5, "allow_all_DNS"),
    # web01 -> appserver1 is routed by the switch (isolated bridge ports) and dropped there
    ("web01", "10.100.99.50", 9, 3, "drop_all_else_web-app"),
)
UNUSED = {
    "drop_http_between_webservers": "no hit in window (a drop rule: removing it may widen access)",
    "clients_to_webservers": "no hit in window",
    "ssh_to_web-app_servers": "no hit in window",
    "web-to-appserver1": "no hit in window",
}


def send_udp(namespace: str, address: str, port: int, count: int) -> None:
    script = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"for _ in range({count}): s.sendto({PAYLOAD!r}, ({address!r}, {port}))\n"
    )
    in_ns(namespace, sys.executable, "-c", script)


def test_monitor_rules_on_the_lab_equals_the_datagrams_each_rule_decided(
    lab_env, tmp_path, monkeypatch
):
    up = cli(lab_env, "lab", "up")
    assert up.returncode == 0, up.stderr
    monkeypatch.setenv("MICROSEG_LAB_DIR", lab_env["MICROSEG_LAB_DIR"])
    state = State.load(lab_env["MICROSEG_LAB_NAME"])
    assert state is not None
    (tmp_path / "sink.nft").write_text(SILENT_SERVER)
    in_ns(state.namespace("dns"), "nft", "-f", str(tmp_path / "sink.nft"))
    store = str(tmp_path / "flows")
    baseline = cli(lab_env, "monitor", "poll", "--once", "--store", store)
    assert baseline.returncode == 0 and f"{SWITCH}: " in baseline.stdout, baseline.stderr

    for source, destination, port, count, _ in TRAFFIC:
        send_udp(state.namespace(source), destination, port, count)
    polled = cli(lab_env, "monitor", "poll", "--once", "--store", store)
    assert polled.returncode == 0, polled.stderr

    listing = cli(lab_env, "monitor", "rules", "--json", "--store", store)
    assert listing.returncode == 0, listing.stderr
    by_rule = {r["rule"]: r for r in json.loads(listing.stdout)["rules"] if r["policy"] == POLICY}
    for *_, count, rule in TRAFFIC:
        assert (by_rule[rule]["packets"], by_rule[rule]["bytes"]) == (
            count,
            count * DATAGRAM_BYTES,
        ), rule
        assert by_rule[rule]["note"] == ""
    for rule, note in UNUSED.items():
        assert by_rule[rule]["packets"] == 0 and by_rule[rule]["note"] == note
    table = cli(lab_env, "monitor", "rules", "--store", store).stdout
    assert re.search(rf"drop_all_else_web-app +drop +3 +{3 * DATAGRAM_BYTES} ", table), table

    devices = cli(lab_env, "monitor", "devices", "--json", "--store", store)
    (switch,) = [d for d in json.loads(devices.stdout) if d["device"] == SWITCH]
    assert switch["reachable"] and switch["drift"] is False
    assert switch["last_change"] == 1 and switch["counters_polled_at"] is not None
