"""Each shortcut taken for speed agrees with the straightforward code it replaces."""

from __future__ import annotations

import dataclasses
import gc
import inspect
import ipaddress
import pickle
from itertools import islice

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microseg.compile.eos import prefixes_text
from microseg.compile.intent import Match, PrefixFieldSet, ServiceFieldSet
from microseg.gc_pause import paused_garbage_collector
from microseg.model import PolicyError, PolicySet
from microseg.model.objects import _FAST_IPV4_NETWORKS, _parse_prefix


def reference_parse_prefix(value):
    """_parse_prefix as it was before the IPv4 shortcut."""
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a prefix such as 10.0.0.0/24, got {value!r}")
    text = value.strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid IPv4 or IPv6 prefix") from None
    raise ValueError(f"{text} has host bits set (did you mean {loose}?)")


def outcome(parse, value):
    try:
        network = parse(value)
    except ValueError as error:
        return "error", str(error)
    # Same type, same value, same attributes (hosts() is set per instance for /31 and /32).
    attributes = {k: v for k, v in vars(network).items() if k != "hosts"}
    return type(network), str(network), attributes, list(islice(network.hosts(), 3))


octet_texts = st.one_of(
    st.integers(0, 255).map(str),
    st.integers(0, 999).map(str),
    st.integers(0, 99).map(lambda n: f"0{n}"),  # leading zeros: ipaddress refuses them
    st.sampled_from(["", "٣", "1_0", "+1", " 1", "0x1"]),
)
prefix_texts = st.one_of(
    st.builds(
        lambda octets, length: ".".join(octets) + length,
        st.lists(octet_texts, min_size=3, max_size=5),
        st.one_of(
            st.integers(0, 34).map(lambda n: f"/{n}"),
            st.sampled_from(["", "/", "/08", "/255.255.0.0", "/0.0.255.255", "/24/8", "/ 8"]),
        ),
    ),
    st.builds(lambda n: str(n), st.ip_addresses(v=4).map(lambda a: ipaddress.ip_network(a))),
    st.sampled_from(["2001:db8::/32", "2001:db8::1/32", "::/0", " 10.0.0.0/8 \n", "\t1.2.3.0/24"]),
)


def test_the_ipv4_shortcut_is_in_use():
    assert _FAST_IPV4_NETWORKS


@settings(max_examples=400, deadline=None)
@given(st.one_of(prefix_texts, st.integers(), st.none()))
def test_prefix_parsing_matches_ipaddress(value):
    assert outcome(_parse_prefix, value) == outcome(reference_parse_prefix, value)


@pytest.mark.parametrize(
    "value",
    [
        "10.0.0.0/8",
        " 10.0.0.0/8\n",
        "10.0.0.1/8",  # host bits
        "010.0.0.0/8",  # leading zeros
        "10.0.0.00/24",
        "10.0.0.0/08",
        "10.0.0.0/33",
        "256.0.0.0/8",
        "10.0.0.0",  # no length: /32
        "10.0.0/8",
        "10.0.0.0/255.0.0.0",  # netmask and hostmask forms
        "10.0.0.0/0.255.255.255",
        "\u0663.0.0.0/8",  # a non-ASCII digit
        "10.0.0.0/\u0663",
        "1.2.3.4/32",
        "1.2.3.4/31",
        "1.2.3.0/31",
        "0.0.0.0/0",
        "1.2.3.0/24/8",
        "1.2.3.0/+24",
        "2001:db8::/32",
        "2001:db8::1/32",
    ],
)
def test_prefix_parsing_matches_ipaddress_on_edge_cases(value):
    assert outcome(_parse_prefix, value) == outcome(reference_parse_prefix, value)


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(v=4), st.integers(0, 32))
def test_every_ipv4_network_parses_as_ipaddress_builds_it(address, length):
    network = ipaddress.ip_network((address, length), strict=False)
    parsed = _parse_prefix(str(network))
    assert outcome(lambda _: parsed, None) == outcome(ipaddress.ip_network, str(network))
    assert parsed == network and hash(parsed) == hash(network)
    assert parsed.broadcast_address == network.broadcast_address


networks = st.one_of(
    st.builds(
        lambda a, n: ipaddress.ip_network((a, n), strict=False),
        st.ip_addresses(v=4),
        st.integers(0, 32),
    ),
    st.builds(
        lambda a, n: ipaddress.ip_network((a, n), strict=False),
        st.ip_addresses(v=6),
        st.integers(0, 128),
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(networks, max_size=6))
def test_prefix_text_is_str(prefixes):
    assert prefixes_text(tuple(prefixes)) == " ".join(map(str, prefixes))


def values(record) -> dict:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


@pytest.mark.parametrize("record", [Match, PrefixFieldSet, ServiceFieldSet])
def test_records_keep_the_dataclass_signature_and_stay_frozen(record):
    parameters = inspect.signature(record).parameters
    fields = dataclasses.fields(record)
    assert list(parameters) == [f.name for f in fields]
    assert [p.default for p in parameters.values()] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default for f in fields
    ]
    required = {
        name: f"value-{name}"
        for name, parameter in parameters.items()
        if parameter.default is inspect.Parameter.empty
    }
    instance = record(**required)
    assert values(instance) == {f.name: required.get(f.name, f.default) for f in fields}
    with pytest.raises(dataclasses.FrozenInstanceError):
        instance.name = "other"
    assert dataclasses.replace(instance, name="other").name == "other"
    assert instance == record(*[values(instance)[f.name] for f in fields])
    assert hash(instance) == hash(record(**required))
    assert pickle.loads(pickle.dumps(instance)) == instance


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_state_is_restored(enabled):
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        with paused_garbage_collector():
            assert not gc.isenabled()
        assert gc.isenabled() is enabled
        with pytest.raises(PolicyError):
            PolicySet.model_validate({"rules": [{"name": "r", "sources": ["nowhere"]}]})
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_a_process_that_froze_objects_keeps_them_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with paused_garbage_collector():
            [object() for _ in range(10)]
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
