"""Canonical dump: load -> dump -> load -> dump is byte-identical, on examples and generated sets."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microseg.model import (
    Category,
    Device,
    Group,
    MonitorNode,
    MonitorObject,
    Policy,
    PolicySet,
    RedirectObject,
    Rule,
    SecurityDomain,
    Segment,
    Service,
)
from microseg.policyfile import dump_policy, load_policy, load_policy_text
from support import EXAMPLES


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_examples_round_trip_byte_identical(example):
    first = dump_policy(load_policy(EXAMPLES / example))
    second = dump_policy(load_policy_text(first))
    assert first == second
    assert load_policy_text(first) == load_policy_text(second)


def test_dump_is_independent_of_object_order():
    a = Group(name="a", prefixes=["10.0.0.0/8"])
    b = Group(name="B", prefixes=["10.1.0.0/16"])
    assert dump_policy(PolicySet(groups=[a, b])) == dump_policy(PolicySet(groups=[b, a]))


# Any Unicode a name may hold (YAML indicators, quotes, `#`, non-ASCII, format characters),
# not only the printable ASCII of EOS names: the dump must quote or escape what needs it.
# What a name or a description may hold: one line (no control characters, line or paragraph
# separators, lone surrogates) and no bidirectional overrides or isolates; a name is not a
# URL dot segment.
ONE_LINE = st.characters(
    exclude_categories=["Cc", "Cs", "Zl", "Zp"],
    exclude_characters="\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
)
names = st.text(alphabet=ONE_LINE, min_size=1, max_size=12).filter(
    lambda name: name == name.strip() and name not in (".", "..")
)
descriptions = st.text(alphabet=ONE_LINE, max_size=30)
ipv4_prefixes = st.builds(
    lambda address, length: ipaddress.ip_network(f"{address}/{length}", strict=False),
    st.ip_addresses(v=4),
    st.integers(8, 32),
)
ipv6_prefixes = st.builds(
    lambda address, length: ipaddress.ip_network(f"{address}/{length}", strict=False),
    st.ip_addresses(v=6),
    st.integers(16, 128),
)
port_specs = st.one_of(
    st.integers(0, 65535),
    st.sampled_from(["domain", "www", "https", "1024-65535", "8000-8080", "53"]),
)


@st.composite
def policy_sets(draw):
    categories = draw(st.lists(names, max_size=3, unique=True))
    group_names = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    groups = [
        Group(
            name=name,
            description=draw(descriptions),
            prefixes=draw(st.lists(st.one_of(ipv4_prefixes, ipv6_prefixes), max_size=4)),
            categories=draw(st.lists(st.sampled_from(categories), unique=True))
            if categories
            else (),
        )
        for name in group_names
    ]
    service_names = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    services = []
    for name in service_names:
        protocol = draw(st.sampled_from(["tcp", "udp", "icmp", "any", 47]))
        ports = draw(st.lists(port_specs, max_size=3)) if protocol in ("tcp", "udp") else []
        if protocol == "udp":
            ports = [p for p in ports if p != "www"]
        services.append(
            Service(
                name=name,
                protocol=protocol,
                destination_ports=ports or "all",
                icmp_types=draw(st.lists(st.sampled_from(["echo", 0, 3]), max_size=2))
                if protocol == "icmp"
                else (),
            )
        )
    device = Device(
        name="sw1",
        loopback_address="10.255.1.10",
        segments=[
            Segment(
                name="v10", vlan=10, subnets=["10.0.10.0/24"], hosts_isolated=draw(st.booleans())
            )
        ],
    )
    node = MonitorNode(name="mon", loopback_address="10.255.1.11")
    monitor = MonitorObject(name="m", tunnel_destination="10.255.1.11", monitor_nodes=["mon"])
    redirect = RedirectObject(name="fw", next_hops=["192.0.2.1"])
    rule_names = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    rules = []
    for name in rule_names:
        action = draw(st.sampled_from(["forward", "drop", "redirect"]))
        rules.append(
            Rule(
                name=name,
                description=draw(descriptions),
                sources=draw(st.lists(st.sampled_from(group_names), max_size=2, unique=True))
                or "any",
                destinations=draw(st.lists(st.sampled_from(group_names), max_size=2, unique=True))
                or "any",
                services=draw(st.lists(st.sampled_from(service_names), max_size=2, unique=True))
                or "any",
                direction=draw(st.sampled_from(["unidirectional", "bidirectional"])),
                action=action,
                redirect="fw" if action == "redirect" else None,
                monitor=draw(st.sampled_from([None, "m"])),
            )
        )
    policy = Policy(
        name="p",
        id=draw(st.integers(1, 2**31 - 1)),
        domain="d",
        vrf=draw(st.sampled_from(["ALL", "default"])),
        rules=draw(st.permutations(rule_names)),
        default_action=(default := draw(st.sampled_from(["forward", "drop"]))),
        default_log=default == "drop" and draw(st.booleans()),
    )
    return PolicySet(
        devices=[device],
        monitor_nodes=[node],
        domains=[SecurityDomain(name="d", devices=["sw1"])],
        categories=[Category(name=c) for c in categories],
        groups=groups,
        services=services,
        monitor_objects=[monitor],
        redirect_objects=[redirect],
        rules=rules,
        policies=[policy],
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy_sets())
def test_generated_policy_sets_round_trip_byte_identical(policy_set):
    first = dump_policy(policy_set)
    reloaded = load_policy_text(first)
    second = dump_policy(reloaded)
    assert first == second
    # Nothing is lost: every object survives with the same content.
    assert sorted(reloaded.objects(), key=repr) == sorted(policy_set.objects(), key=repr)


def test_strings_yaml_1_1_would_type_are_quoted_so_fmt_output_loads(tmp_path):
    # ruamel writes YAML 1.2 and left `yes` and `on` plain; read back (YAML 1.1) they were
    # booleans: "category '#26' name: a name must be a string, got True".
    from microseg.model import Category, PolicySet
    from microseg.policyfile import dump_policy, load_policy

    names = ["yes", "on", "off", "y", "NO", "True", "1:20", "0o17", "0x1F", "1_000", ".inf"]
    names += ["null", "~", "<<", "=", "2025-11-19", "1e3", "web", "dc1/web", "a b"]
    policy_set = PolicySet(categories=[Category(name=name) for name in names])
    written = dump_policy(policy_set)
    path = tmp_path / "names.yaml"
    path.write_text(written)
    loaded = load_policy(path)
    assert sorted(c.name for c in loaded.categories) == sorted(names)
    assert dump_policy(loaded) == written
    assert "  - name: web\n" in written and "  - name: 'yes'\n" in written
