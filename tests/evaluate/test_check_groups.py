"""`check --from GROUP --to GROUP`: one answer for every address of both groups, with the
deciding rules per address class; and `check` says when the deciding match mirrors."""

from __future__ import annotations

import ipaddress
import json
import random

import pytest

from microseg.evaluate.check import check_connection, check_groups, outcome
from microseg.policyfile import load_policy
from support import EXAMPLES

HOME_LAB = EXAMPLES / "home-lab.yaml"
MONITOR = EXAMPLES / "home-lab-monitor.yaml"
SERVICES = [("tcp", 22, None), ("tcp", 80, None), ("udp", 53, None), ("icmp", None, None)]


def _addresses(address_class, rng: random.Random, count: int = 4) -> list[str]:
    found = []
    for _ in range(count):
        first, last = rng.choice(address_class.intervals)
        found.append(str(ipaddress.ip_address(rng.randint(first, last))))
    return found


def _deciding(check) -> tuple:
    return tuple(
        (d.device, d.policy, d.match, d.verdict)
        for d in (check.deciding(check.request_decisions), check.deciding(check.reply_decisions))
        if d is not None
    )


@pytest.mark.parametrize("example", [HOME_LAB, MONITOR], ids=lambda p: p.name)
def test_every_address_of_a_class_gets_the_answer_of_its_class(example):
    policy_set = load_policy(example)
    groups = [g.name for g in policy_set.groups]
    rng = random.Random(example.name)
    for source in groups:
        for destination in groups:
            for protocol, port, icmp_type in SERVICES:
                result = check_groups(policy_set, source, destination, protocol, port, icmp_type)
                for pair in result.pairs:
                    for src in _addresses(pair.source, rng):
                        for dst in _addresses(pair.destination, rng):
                            one = check_connection(policy_set, src, dst, protocol, port, icmp_type)
                            assert outcome(one) == outcome(pair.check), (
                                source,
                                destination,
                                src,
                                dst,
                            )
                            assert _deciding(one) == _deciding(pair.check)


def test_the_classes_cover_each_group_exactly():
    policy_set = load_policy(HOME_LAB)
    result = check_groups(policy_set, "wifi_clients", "web-appserver1", "tcp", 80)
    sources = {p for pair in result.pairs for p in pair.source.prefixes()}
    destinations = sorted({p for pair in result.pairs for p in pair.destination.prefixes()})
    assert sources == {"172.18.6.0/24"}
    assert destinations == ["10.100.99.50/32", "10.100.99.51/32", "10.100.99.52/32"]


def test_a_group_check_says_which_rule_decides_for_which_addresses(run_cli):
    result = run_cli(
        "check", str(HOME_LAB), "--from", "wifi_clients", "--to", "web-appserver1", "--port", "80"
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "group wifi_clients -> group web-appserver1 tcp/80, VRF default",
        "  172.18.6.0/24 -> 10.100.99.50/32  dropped",
        # web-appserver1's own drop rule is bidirectional; its -reverse match meets the request
        "      request  andreasm-720xp-home vrf_all_home: drop_all_else_web-app (match drop_all_else_web-app-reverse)",
        "      reply    andreasm-720xp-home vrf_all_home: drop_all_else_web-app (match drop_all_else_web-app)",
        "  172.18.6.0/24 -> 10.100.99.51/32, 10.100.99.52/32  connects",
        "      request  andreasm-720xp-home vrf_all_home: clients_to_webservers (match clients_to_webservers)",
        "      reply    andreasm-720xp-home vrf_all_home: clients_to_webservers (match clients_to_webservers-reverse)",
        "result: partly: of 2 address class pairs, 1 connects, 1 dropped",
    ]


def test_a_group_check_exit_code_is_the_worst_outcome(run_cli):
    argv = ["check", str(HOME_LAB), "--to", "web-appserver1", "--port", "80", "--exit-code"]
    assert run_cli(*argv, "--from", "wifi_clients").exit_code == 3
    assert run_cli(*argv[:3], "web01_web02", *argv[4:], "--from", "wifi_clients").exit_code == 0


def test_a_group_and_an_address_mix(run_cli):
    result = run_cli(
        "check",
        str(HOME_LAB),
        "--from",
        "172.18.6.138",
        "--to",
        "web01_web02",
        "--port",
        "22",
        "--json",
    )
    data = json.loads(result.stdout)
    assert data["source"] == {"text": "172.18.6.138", "group": None}
    assert [pair["source"] for pair in data["pairs"]] == [["172.18.6.138/32"]]
    assert data["connects"] is True and data["result"] == "connects for every address of both sides"


def test_a_name_that_is_neither_address_nor_group_is_a_user_error(run_cli):
    result = run_cli(
        "check", str(HOME_LAB), "--from", "wifi", "--to", "web01_web02", "--port", "22"
    )
    assert result.exit_code == 1
    assert "--from 'wifi' is neither an IPv4 or IPv6 address nor a group (groups: " in result.stderr


def test_check_says_when_the_deciding_match_mirrors(run_cli):
    argv = ["check", str(MONITOR), "--from", "172.18.6.138", "--to", "10.100.99.51", "--port", "80"]
    text = run_cli(*argv).stdout
    assert (
        "  mirrored: request on andreasm-720xp-home: match web-appserver-discovery-reverse "
        "mirrors to monitor session andreas-vztx-ALL (monitor object andreas-vztx, to "
        "andreas-ztx1)"
    ) in text
    mirrored = json.loads(run_cli(*argv, "--json").stdout)["mirrored"]
    assert [(m["direction"], m["match"], m["session"]) for m in mirrored] == [
        ("request", "web-appserver-discovery-reverse", "andreas-vztx-ALL"),
        ("reply", "web-appserver-discovery", "andreas-vztx-ALL"),
    ]
    unmonitored = run_cli("check", str(HOME_LAB), *argv[2:])
    assert "mirrored" not in unmonitored.stdout
