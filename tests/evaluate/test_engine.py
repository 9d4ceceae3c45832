"""The vectorised engine agrees with the obvious per-packet loop, and with the seed."""

from __future__ import annotations

import ipaddress
import random

import numpy as np
import pytest
from tests.evaluate.random_policies import pool_addresses, random_policy_set

from microseg.compile.intent import (
    DeviceIntent,
    Match,
    PolicyIntent,
    PrefixFieldSet,
    ServiceFieldSet,
)
from microseg.compile.resolve import compile_all
from microseg.evaluate import CompiledDevice, PacketBatch
from microseg.evaluate.engine import pack_rows
from microseg.evaluate.reference import evaluate_one
from microseg.model import MicrosegError, PortRange

PROTOCOLS = (6, 17, 1, 58, 47)
PORT_CHOICES = (0, 22, 53, 80, 443, 999, 1000, 1200, 1500, 2000, 2600, 5000, 49152, 65535)


def random_packets(rng: random.Random, count: int) -> dict:
    addresses = [*pool_addresses(), "10.67.0.1", "fd67::1"]
    v4 = [a for a in addresses if "." in a]
    v6 = [a for a in addresses if ":" in a]
    columns: dict[str, list] = {
        k: [] for k in ("vrf", "protocol", "src", "dst", "sport", "dport", "icmp_type")
    }
    for _ in range(count):
        pool = rng.choice((v4, v6))
        columns["vrf"].append(rng.choice(("default", "blue")))
        columns["protocol"].append(rng.choice(PROTOCOLS))
        columns["src"].append(rng.choice(pool))
        columns["dst"].append(rng.choice(pool))
        columns["sport"].append(rng.choice(PORT_CHOICES))
        columns["dport"].append(rng.choice(PORT_CHOICES))
        columns["icmp_type"].append(rng.choice((0, 3, 8, 128, 129)))
    return columns


def assert_agrees_with_reference(intent: DeviceIntent, columns: dict) -> None:
    evaluation = CompiledDevice(intent).evaluate(PacketBatch.from_fields(**columns))
    for position in range(len(columns["src"])):
        packet = {name: values[position] for name, values in columns.items()}
        expected = evaluate_one(intent, **packet)
        decision = evaluation.decision(position)
        assert (decision.verdict, decision.policy, decision.match) == expected, packet


@pytest.mark.parametrize("seed", range(40))
def test_engine_matches_per_packet_loop_on_random_policies(seed):
    policy_set = random_policy_set(
        seed,
        rules=random.Random(seed).randint(2, 14),
        default_action="drop" if seed % 2 else "forward",
        adversarial_names=seed % 3 == 0,
    )
    intent = compile_all(policy_set)["sw1"]
    assert_agrees_with_reference(intent, random_packets(random.Random(seed), 400))


def _hand_built_intent() -> DeviceIntent:
    """Two VRF bindings, except-prefixes, ICMP types, port ranges, redirect: built by hand."""
    web = PrefixFieldSet(
        "web",
        "ipv4",
        (ipaddress.ip_network("10.0.0.0/24"),),
        (ipaddress.ip_network("10.0.0.128/25"),),
    )
    web6 = PrefixFieldSet("web", "ipv6", (ipaddress.ip_network("2001:db8::/64"),))
    high = ServiceFieldSet(
        "high", 6, destination_ports=(PortRange(1024, 2047), PortRange(8080, 8080))
    )
    echo = ServiceFieldSet("echo", 1, icmp_types=(8,))
    blue = PolicyIntent(
        "blue",
        2,
        "",
        "blue",
        (
            Match("to-web-high", "to-web-high", False, "ipv4", "", (), ("web",), ("high",), "drop"),
            Match("echo", "echo", False, "ipv4", "", ("web",), (), ("echo",), "redirect"),
            Match("v6", "v6", False, "ipv6", "", (), ("web",), (), "drop"),
        ),
    )
    every = PolicyIntent(
        "every",
        1,
        "",
        "ALL",
        (Match("web-any", "web-any", False, "ipv4", "", ("web",), (), (), "drop"),),
    )
    return DeviceIntent(
        "sw",
        "eos",
        (every, blue),
        {("ipv4", "web"): web, ("ipv6", "web"): web6},
        {"high": high, "echo": echo},
    )


def test_hand_built_intent_vrf_binding_except_prefix_and_icmp_type():
    device = CompiledDevice(_hand_built_intent())

    def decide(**packet):
        decision = device.evaluate_packet(**packet)
        return decision.verdict, decision.policy, decision.match

    # The VRF's own binding wins over ALL (EOS: a per-VRF traffic-policy overrides vrf ALL).
    assert decide(vrf="red", protocol="tcp", src="10.0.0.5", dst="1.1.1.1", sport=1, dport=2) == (
        "drop",
        "every",
        "web-any",
    )
    assert decide(
        vrf="blue", protocol="tcp", src="9.9.9.9", dst="10.0.0.5", sport=1, dport=2047
    ) == ("drop", "blue", "to-web-high")
    # 10.0.0.200 is excepted from `web`: the default forwards it.
    assert decide(
        vrf="blue", protocol="tcp", src="9.9.9.9", dst="10.0.0.200", sport=1, dport=2047
    ) == ("forward", "blue", "ipv4-all-default")
    assert decide(
        vrf="blue", protocol="tcp", src="9.9.9.9", dst="10.0.0.5", sport=1, dport=2048
    ) == ("forward", "blue", "ipv4-all-default")
    assert decide(vrf="blue", protocol="icmp", src="10.0.0.1", dst="8.8.8.8", icmp_type=8) == (
        "redirect",
        "blue",
        "echo",
    )
    assert decide(vrf="blue", protocol="icmp", src="10.0.0.1", dst="8.8.8.8", icmp_type=0) == (
        "forward",
        "blue",
        "ipv4-all-default",
    )
    assert decide(
        vrf="blue", protocol="udp", src="2001:db8:1::1", dst="2001:db8::9", sport=5, dport=6
    ) == ("drop", "blue", "v6")
    assert decide(
        vrf="red", protocol="udp", src="2001:db8:1::1", dst="2001:db8::9", sport=5, dport=6
    ) == ("forward", "every", "ipv6-all-default")


def test_hand_built_intent_agrees_with_per_packet_loop():
    columns = random_packets(random.Random(7), 300)
    rng = random.Random(8)
    extra = ["10.0.0.1", "10.0.0.127", "10.0.0.128", "10.0.0.255", "2001:db8::1", "2001:db8:0:1::1"]
    for key in ("src", "dst"):
        columns[key] = [rng.choice(extra) if rng.random() < 0.5 else a for a in columns[key]]
    for position, (src, dst) in enumerate(zip(columns["src"], columns["dst"], strict=True)):
        if ("." in src) != ("." in dst):
            columns["dst"][position] = src
    columns["dport"] = [rng.choice((1023, 1024, 2047, 2048, 8080, 8081)) for _ in columns["dport"]]
    assert_agrees_with_reference(_hand_built_intent(), columns)


def test_many_packets_no_policy_for_vrf_forward(home_lab):
    intent = compile_all(home_lab)["andreasm-720xp-home"]
    stripped = DeviceIntent(intent.device, intent.platform, ())
    batch = PacketBatch.from_fields(
        vrf="default",
        protocol=[6] * 3,
        src=["10.100.99.51"] * 3,
        dst=["10.100.99.52"] * 3,
        sport=[1, 2, 3],
        dport=[80, 80, 80],
    )
    evaluation = CompiledDevice(stripped).evaluate(batch)
    assert evaluation.forwarded.all()
    assert evaluation.decision(0).policy is None


def test_seed_first_match_decides(home_lab):
    device = CompiledDevice(compile_all(home_lab)["andreasm-720xp-home"])
    batch = PacketBatch.from_fields(
        vrf="default",
        protocol=["tcp", "tcp", "tcp"],
        src=["10.100.99.51", "172.18.6.138", "10.100.99.52"],
        dst=["10.100.99.52", "10.100.99.52", "10.100.99.51"],
        sport=[49152, 49152, 80],
        dport=[80, 80, 49152],
    )
    evaluation = device.evaluate(batch)
    assert [evaluation.decision(i).match for i in range(3)] == [
        "drop_http_between_webservers",
        "clients_to_webservers",
        "drop_http_between_webservers-reverse",
    ]
    assert list(evaluation.verdict) == [1, 0, 1]
    assert np.array_equal(evaluation.forwarded, [False, True, False])


def test_bad_packet_fields_are_user_errors():
    with pytest.raises(MicrosegError, match="not an IPv4 or IPv6 address"):
        PacketBatch.from_fields(vrf="default", protocol=[6], src=["10.0.0.300"], dst=["10.0.0.1"])
    with pytest.raises(MicrosegError, match="different address families"):
        PacketBatch.from_fields(vrf="default", protocol=[6], src=["10.0.0.1"], dst=["::1"])
    with pytest.raises(MicrosegError, match="unknown protocol"):
        PacketBatch.from_fields(
            vrf="default", protocol=["tcpp"], src=["10.0.0.1"], dst=["10.0.0.2"]
        )
    with pytest.raises(MicrosegError, match="not 0-65535"):
        PacketBatch.from_fields(
            vrf="default", protocol=[6], src=["10.0.0.1"], dst=["10.0.0.2"], dport=[70000]
        )


def test_policy_without_rules_forwards_by_default(home_lab):
    from tests.evaluate.random_policies import replaced

    policy = home_lab.policies[0].model_copy(update={"rules": ()})
    intent = compile_all(replaced(home_lab, policies=(policy,)))["andreasm-720xp-home"]
    decision = CompiledDevice(intent).evaluate_packet(
        vrf="default", protocol="tcp", src="10.100.99.51", dst="10.100.99.52", sport=1, dport=80
    )
    assert (decision.verdict, decision.policy, decision.match) == (
        "forward",
        "vrf_all_home",
        "ipv4-all-default",
    )


def test_a_default_deny_policy_drops_what_no_rule_matches_and_only_that(home_lab):
    from tests.evaluate.random_policies import replaced

    policy = home_lab.policies[0].model_copy(update={"default_action": "drop"})
    intent = compile_all(replaced(home_lab, policies=(policy,)))["andreasm-720xp-home"]
    device = CompiledDevice(intent)
    unmatched = device.evaluate_packet(
        vrf="default", protocol="tcp", src="172.18.6.138", dst="192.0.2.7", sport=1, dport=25
    )
    assert (unmatched.verdict, unmatched.match) == ("drop", "ipv4-all-default")
    unmatched_v6 = device.evaluate_packet(
        vrf="default", protocol="udp", src="2001:db8::1", dst="2001:db8::2", sport=1, dport=53
    )
    assert (unmatched_v6.verdict, unmatched_v6.match) == ("drop", "ipv6-all-default")
    # The seed's DNS rule still forwards what it matches.
    dns = device.evaluate_packet(
        vrf="default", protocol="udp", src="172.18.6.138", dst="10.100.1.6", sport=50000, dport=53
    )
    assert (dns.verdict, dns.rule) == ("forward", "allow_all_DNS")


def test_the_one_match_of_a_self_reverse_rule_takes_both_directions():
    from microseg.policyfile import load_policy_text

    policy_set = load_policy_text(
        """
devices: [{name: sw1, platform: nftables}]
domains: [{name: d1, devices: [sw1]}]
groups: [{name: lan, prefixes: [10.0.0.0/24]}]
rules:
  - {name: lan-drop, sources: [lan], destinations: [lan], services: any, action: drop}
policies: [{name: p1, id: 1, domain: d1, rules: [lan-drop]}]
"""
    )
    intent = compile_all(policy_set)["sw1"]
    assert [m.name for m in intent.policies[0].matches] == ["lan-drop"]
    device = CompiledDevice(intent)
    for src, dst, sport, dport in (
        ("10.0.0.1", "10.0.0.2", 49152, 22),
        ("10.0.0.2", "10.0.0.1", 22, 49152),
    ):
        decision = device.evaluate_packet(
            vrf="default", protocol="tcp", src=src, dst=dst, sport=sport, dport=dport
        )
        assert (decision.verdict, decision.match) == ("drop", "lan-drop")


@pytest.mark.parametrize("seed", range(3))
def test_tables_built_a_word_at_a_time_are_the_whole_policy_s_tables(seed):
    # 70-90 rules: 100+ terms, so two or more words and a last word only partly used.
    policy_set = random_policy_set(seed, rules=70 + 10 * seed)
    intent = compile_all(policy_set)["sw1"]
    device = CompiledDevice(intent)
    for compiled, policy in zip(device.policies, intent.policies, strict=True):
        terms = [t for i, m in enumerate(policy.matches) for t in device.terms(i, m)]
        assert len(terms) > 64
        rows = list(zip(*[device.conditions(term) for term in terms], strict=True))
        whole = [pack_rows(np.stack(table)) for table in rows]  # every term's bools at once
        built = [
            compiled.source_rows,
            compiled.destination_rows,
            compiled.protocol_rows,
            compiled.source_port_rows,
            compiled.destination_port_rows,
            compiled.icmp_rows,
        ]
        for mine, expected in zip(built, whole, strict=True):
            assert mine.dtype == expected.dtype and np.array_equal(mine, expected)
    assert_agrees_with_reference(intent, random_packets(random.Random(seed), 600))
