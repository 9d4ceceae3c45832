"""Model validation: each object rejects what EOS or common sense would reject."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from microseg.model import (
    Device,
    Group,
    MonitorObject,
    PolicyError,
    PolicySet,
    RateLimit,
    Rule,
    Service,
)


def test_service_resolves_names_numbers_and_ranges():
    service = Service(
        name="mixed", protocol="tcp", destination_ports=["www", 443, "8000-8080", "8080-8090"]
    )
    assert [tuple(r) for r in service.destination_ranges] == [(80, 80), (443, 443), (8000, 8090)]


def test_service_rejects_ports_on_icmp():
    with pytest.raises(ValidationError, match="ports need protocol tcp or udp"):
        Service(name="ping", protocol="icmp", destination_ports=[1])


def test_service_rejects_a_reversed_range():
    with pytest.raises(ValidationError, match="reversed"):
        Service(name="x", protocol="udp", destination_ports=["2000-1000"])


def test_icmp_types_by_name_and_number():
    assert Service(name="ping", protocol="icmp", icmp_types=["echo", 0]).icmp_type_numbers == (0, 8)
    assert Service(
        name="ping6", protocol="icmpv6", icmp_types=["echo-request"]
    ).icmp_type_numbers == (128,)


def test_group_except_prefix_must_lie_inside_a_prefix():
    Group(name="ok", prefixes=["10.0.0.0/8"], except_prefixes=["10.1.0.0/16"])
    with pytest.raises(ValidationError, match="not inside any prefix"):
        Group(name="bad", prefixes=["10.0.0.0/8"], except_prefixes=["192.168.0.0/16"])


def test_group_keeps_both_address_families():
    group = Group(name="dual", prefixes=["10.0.0.0/24", "2001:db8::/64"])
    assert [str(p) for p in group.prefixes_of(4)] == ["10.0.0.0/24"]
    assert [str(p) for p in group.prefixes_of(6)] == ["2001:db8::/64"]


def test_rule_any_is_the_empty_tuple_and_serialises_back_to_any():
    rule = Rule(name="r", sources="any", destinations=["g"], services="any")
    assert rule.sources == ()
    assert rule.model_dump(mode="json")["sources"] == "any"


@pytest.mark.parametrize("field", ["sources", "destinations", "services"])
@pytest.mark.parametrize("value", [[], (), None])
def test_an_empty_reach_is_an_error_not_any(field, value):
    # An allow rule with `sources: []` allowed every source.
    fields = {"sources": ["g"], "destinations": ["g"], "services": ["s"], field: value}
    with pytest.raises(ValidationError, match="is not `any`: write `any`"):
        Rule(name="r", **fields)


@pytest.mark.parametrize("field", ["sources", "destinations", "services"])
def test_a_rule_must_say_its_reach(field):
    fields = {"sources": "any", "destinations": "any", "services": "any"}
    del fields[field]
    with pytest.raises(ValidationError, match=f"{field}\n  Field required"):
        Rule(name="r", **fields)


def test_policy_set_reports_every_dangling_reference_at_once():
    with pytest.raises(PolicyError) as raised:
        PolicySet(
            groups=[Group(name="g", categories=["nope"])],
            rules=[
                Rule(
                    name="r",
                    sources=["missing"],
                    destinations="any",
                    services=["also-missing"],
                )
            ],
        )
    messages = sorted(str(p) for p in raised.value.problems)
    assert messages == [
        "group 'g' categories.0: unknown category 'nope'",
        "rule 'r' services.0: unknown service 'also-missing'",
        "rule 'r' sources.0: unknown group 'missing'",
    ]


def test_objects_are_immutable():
    group = Group(name="g", prefixes=["10.0.0.0/24"])
    with pytest.raises(ValidationError):
        group.name = "h"


def test_model_copy_rebuilds_the_name_index():
    original = PolicySet(groups=[Group(name="g", prefixes=["10.0.0.0/24"])])
    assert str(original.group("g").prefixes[0]) == "10.0.0.0/24"
    changed = original.model_copy(update={"groups": (Group(name="g", prefixes=["10.9.0.0/16"]),)})
    assert str(changed.group("g").prefixes[0]) == "10.9.0.0/16"
    assert str(original.group("g").prefixes[0]) == "10.0.0.0/24"


@pytest.mark.parametrize(
    "character",
    ["\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\ud800"],
    ids=["NUL", "ESC", "DEL", "NEL", "LINE-SEPARATOR", "PARAGRAPH-SEPARATOR", "surrogate"],
)
def test_names_and_interface_labels_are_one_line_of_storable_text(character):
    # YAML folds NEL and U+2028/9 (the name would not load back the same), PostgreSQL text
    # cannot hold NUL, and a lone surrogate is not UTF-8 at all.
    with pytest.raises(ValidationError, match="control characters or line separators"):
        Group(name=f"web{character}servers")
    for label in ("hardware", "tunnel_source_interface"):
        with pytest.raises(ValidationError, match="control characters or line separators"):
            Device(name="leaf1", **{label: f"Loopback{character}0"})


def test_names_may_be_any_other_unicode_text():
    for name in ("café", "cafe\u0301", "服务器", "web servers", "a\u00a0b", "\u200bzero-width"):
        assert Group(name=name).name == name


@pytest.mark.parametrize("character", ["\u202e", "\u202a", "\u2066", "\u2069"])
def test_names_and_descriptions_display_in_the_order_they_read(character):
    # "allow-\u202enimda" shows as "allow-admin" in a diff a reviewer approves.
    with pytest.raises(ValidationError, match="bidirectional override or isolate"):
        Group(name=f"allow-{character}nimda")
    with pytest.raises(ValidationError, match="bidirectional override or isolate"):
        Rule(
            name="r",
            description=f"harmless {character}",
            sources="any",
            destinations="any",
            services="any",
        )
    # Right-to-left text itself, and its marks, are names like any other.
    assert Group(name="خوادم\u200fweb").name == "خوادم\u200fweb"


@pytest.mark.parametrize("name", [".", ".."])
def test_a_name_is_not_a_dot_segment_which_urls_drop(name):
    with pytest.raises(ValidationError, match=r"may not be '\.' or '\.\.'"):
        Group(name=name)
    assert Group(name="...").name == "..."


def test_port_specs_are_stored_canonically_so_equal_services_are_equal():
    # `"53"` and 53 are the same port; the canonical dump and the store's object bodies
    # compare the stored specs, so they must be one value (names stay names, as written).
    written = Service(
        name="dns",
        protocol="udp",
        destination_ports=["53", " 1024 - 2000 ", " domain "],
        source_ports=["1024"],
    )
    assert written.destination_ports == (53, "1024-2000", "domain")
    assert written.source_ports == (1024,)
    assert written == Service(
        name="dns",
        protocol="udp",
        destination_ports=[53, "1024-2000", "domain"],
        source_ports=[1024],
    )


def test_icmp_types_given_as_digit_strings_are_numbers():
    assert Service(name="ping", protocol="icmp", icmp_types=["8", "echo-reply"]).icmp_types == (
        8,
        "echo-reply",
    )


@pytest.mark.parametrize(
    "protocol, message",
    [
        ("tpc", "unknown protocol 'tpc': did you mean 'tcp'? give tcp, udp, icmp, icmpv6, any "
         "or an IP protocol number 0-255"),
        ("gre", "unknown protocol 'gre': give tcp, udp, icmp, icmpv6, any or an IP protocol"),
        (300, "protocol number 300 is not 0-255"),
        ("999", "protocol number 999 is not 0-255"),
        (True, "true is not a protocol: give tcp, udp"),
    ],
)  # fmt: skip
def test_a_protocol_that_is_not_one_is_refused_saying_numbers_are_taken(protocol, message):
    with pytest.raises(ValidationError) as raised:
        Service(name="s", protocol=protocol)
    errors = raised.value.errors()
    assert len(errors) == 1 and message in errors[0]["msg"]
    assert Service(name="gre", protocol=47).protocol == 47


def test_a_bad_protocol_is_not_also_reported_as_an_unknown_port_name():
    with pytest.raises(ValidationError) as raised:
        Service(name="s", protocol="tcpp", destination_ports=["ssh"])
    assert "port name" not in str(raised.value)


@pytest.mark.parametrize(
    ("written", "expected"),
    [("100000 kbps", RateLimit(100000, "kbps")), ("10 mbps", RateLimit(10, "mbps"))],
)
def test_a_mirror_rate_limit_is_a_number_with_its_unit(written, expected):
    monitor = MonitorObject(name="m", tunnel_destination="10.0.0.1", rate_limit=written)
    assert monitor.rate_limit == expected
    assert monitor.model_dump(mode="json")["rate_limit"] == written
    assert MonitorObject(name="m", tunnel_destination="10.0.0.1").rate_limit == RateLimit(
        100000, "kbps"
    )


@pytest.mark.parametrize(
    ("written", "message"),
    [
        (100000, "100000 needs a unit: write `100000 kbps`"),
        (True, "expected a rate with its unit"),
        ("100 gbps", "is not a rate"),
        ("0 kbps", "at least 1"),
        ("9" * 5000 + " kbps", "is not a rate"),
    ],
)
def test_a_rate_limit_without_a_known_unit_is_refused(written, message):
    with pytest.raises(ValidationError, match=message):
        MonitorObject(name="m", tunnel_destination="10.0.0.1", rate_limit=written)


def test_an_nftables_device_names_its_network_namespace():
    router = Device(name="router1", platform="nftables", management_namespace="lab-router1")
    assert router.management_namespace == "lab-router1"
    assert Device(name="router2", platform="nftables").management_namespace is None
    for bad in ("a/b", "", "x" * 65, "../etc"):
        with pytest.raises(ValidationError, match="network namespace name"):
            Device(name="r", platform="nftables", management_namespace=bad)


@pytest.mark.parametrize("name", ["Loopback0 vrf MGMT", "Loopback0\u00a0", "Loopback?", ""])
def test_an_interface_name_is_one_word_not_more_words_of_the_command(name):
    # `tunnel source interface Loopback0 vrf MGMT` would hand EOS words the policy's author
    # never meant as a command; `?` asks the CLI for help.
    with pytest.raises(ValidationError, match="an interface name is one word"):
        Device(name="leaf1", tunnel_source_interface=name)
    for real in ("Loopback0", "Ethernet1/1", "Port-Channel10.100", "Management1"):
        assert Device(name="leaf1", tunnel_source_interface=real).tunnel_source_interface == real
