"""The Policy Monitor for real: the seed's DNS/NTP policy deployed through change control to
the lab's switch as an nftables namespace, a known number of UDP datagrams sent with real
sockets, and `monitor rules` reporting exactly what the kernel counted per rule."""

from __future__ import annotations

import json
import sys

import pytest
from deploy_lab import SWITCH
from tests.deploy.test_nftables_change import nftables_lab
from tests.evaluate.netns import in_ns, namespaces, require_root_and_nft
from tests.evaluate.test_seed_lab_kernel import HOSTS, build_seed_lab

pytestmark = pytest.mark.system
POLICY = "dns_ntp_services"
PAYLOAD = b"0123456789"
DATAGRAM_BYTES = 20 + 8 + len(PAYLOAD)  # nft counts from the IPv4 header on
# The DNS/NTP server does not answer: it drops the datagrams before any socket sees them,
# so no reply or ICMP error crosses the switch and the counts stay exactly what was sent.
SILENT_SERVER = """
table ip sink {
	chain input {
		type filter hook input priority filter; policy accept;
		udp dport { 53, 123 } drop
	}
}
"""


@pytest.fixture(scope="module")
def seed_lab():
    require_root_and_nft()
    with namespaces("switch", *HOSTS) as names:
        build_seed_lab(names, isolated=True)
        yield names


def send_udp(namespace: str, address: str, port: int, count: int) -> None:
    script = (
        "import socket,sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"for _ in range({count}): s.sendto({PAYLOAD!r}, ({address!r}, {port}))\n"
    )
    in_ns(namespace, sys.executable, "-c", script)


def ok(result):
    assert result.exit_code == 0, result.stderr
    return result


def test_monitor_rules_equals_the_datagrams_sent_per_rule_and_lists_the_unused_one(
    seed_lab, store_env, run_cli, tmp_path, monkeypatch
):
    switch = seed_lab["switch"]
    in_ns(switch, "nft", "flush", "ruleset")
    (tmp_path / "sink.nft").write_text(SILENT_SERVER)
    in_ns(seed_lab["dns"], "nft", "-f", str(tmp_path / "sink.nft"))
    monkeypatch.delenv("MICROSEG_DEVICE_USERNAME")  # nftables on this host needs no login
    monkeypatch.delenv("MICROSEG_DEVICE_PASSWORD")
    policy, _ = nftables_lab("home-lab-dns-ntp.yaml", switch, tmp_path)
    ok(run_cli("import", str(policy)))
    change = json.loads(ok(run_cli("change", "create", "--device", SWITCH, "--json")).stdout)
    ok(run_cli("change", "approve", str(change["id"]), "--author", "bob"))
    ok(run_cli("change", "run", str(change["id"]), "--json"))
    store = str(tmp_path / "flows")
    ok(run_cli("monitor", "poll", "--once", "--store", store))

    send_udp(seed_lab["laptop"], "10.100.1.7", 123, 7)  # NTP: rule72
    ok(run_cli("monitor", "poll", "--once", "--store", store))
    send_udp(seed_lab["laptop"], "10.100.1.7", 123, 4)
    ok(run_cli("monitor", "poll", "--once", "--store", store))

    listing = json.loads(ok(run_cli("monitor", "rules", "--json", "--store", store)).stdout)
    by_rule = {(r["policy"], r["rule"]): r for r in listing["rules"]}
    assert (by_rule[POLICY, "rule72"]["packets"], by_rule[POLICY, "rule72"]["bytes"]) == (
        11,
        11 * DATAGRAM_BYTES,
    )
    assert by_rule[POLICY, "rule73"]["packets"] == 0
    assert by_rule[POLICY, "rule73"]["note"] == "no hit in window"
    table = ok(run_cli("monitor", "rules", "--store", store)).stdout
    assert f"{POLICY}: default match share not counted by its devices" in table
