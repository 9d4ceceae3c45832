"""Each shortcut taken for speed agrees with the straightforward code it replaces."""

from __future__ import annotations

import dataclasses
import gc
import inspect
import ipaddress
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microseg.compile.intent import Match, PrefixFieldSet, ServiceFieldSet
from microseg.compile.resolve import _canonical
from microseg.gc_pause import paused_garbage_collector
from microseg.model import PolicyError, PolicySet
from microseg.model.objects import (
    DOT_SEGMENTS,
    _assembled_ipv4_network,
    _canonical_ipv4_prefix,
    _check_displayed_as_read,
    _check_name,
    _check_one_line,
    _make_ipv4_network,
    _parse_prefix,
)
from microseg.policyfile import load_policy, load_policy_text
from microseg.targets.eos.render import prefixes_text
from support import EXAMPLES

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
            PolicySet.model_validate(
                {
                    "rules": [
                        {
                            "name": "r",
                            "sources": ["nowhere"],
                            "destinations": "any",
                            "services": "any",
                        }
                    ]
                }
            )
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_a_process_that_froze_objects_keeps_them_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with paused_garbage_collector():
            made = [[] for _ in range(1000)]
        # Unfreezing would release them all (0); freezing what the block made would add its
        # 1,000 lists. Frozen objects freed meanwhile (another thread's) may lower the count.
        assert frozen // 2 < gc.get_freeze_count() <= frozen
        del made
    finally:
        gc.unfreeze()


def _written_prefixes():
    """Prefix texts as people write them: canonical, and each way of not being canonical."""
    octet = st.integers(0, 300).map(str)
    padded = st.integers(0, 255).map(lambda n: f"0{n}")
    arabic = st.just("١")  # a digit to str.isdigit(), not to ipaddress
    part = st.one_of(octet, octet, octet, padded, arabic)
    length = st.one_of(st.integers(0, 40).map(str), st.sampled_from(["024", "255.255.255.0", ""]))
    return st.builds(
        lambda a, b, c, d, n, around: f"{around}{a}.{b}.{c}.{d}/{n}{around}".replace(
            "/", "", n == ""
        ),
        part,
        part,
        part,
        part,
        length,
        st.sampled_from(["", "", "", " ", "\n"]),
    )


def _slow_prefix(text: str):
    """What ipaddress makes of the text (strict), or the ValueError it raises."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as error:
        return type(error)


@settings(max_examples=500, deadline=None)
@given(st.one_of(_written_prefixes(), networks.map(str)))
def test_the_fast_ipv4_prefix_parser_takes_only_what_ipaddress_takes_and_all_it_prints(text):
    fast, slow = _canonical_ipv4_prefix(text), _slow_prefix(text)
    if fast is not None:
        assert type(fast) is type(slow) is ipaddress.IPv4Network
        assert vars(fast).keys() == vars(slow).keys()
        assert _attributes(fast) == _attributes(slow)
        if fast.prefixlen >= 24:
            assert list(fast.hosts()) == list(slow.hosts())
        assert type(fast.network_address) is ipaddress.IPv4Address
        assert (str(fast), fast.network_address, fast.netmask, fast.prefixlen, hash(fast)) == (
            str(slow),
            slow.network_address,
            slow.netmask,
            slow.prefixlen,
            hash(slow),
        )
        assert (fast.hostmask, fast.broadcast_address, fast.num_addresses) == (
            slow.hostmask,
            slow.broadcast_address,
            slow.num_addresses,
        )
        assert fast.subnet_of(slow) and slow.subnet_of(fast)
        assert pickle.loads(pickle.dumps(fast)) == slow
    elif isinstance(slow, ipaddress.IPv4Network):
        assert str(slow) != text, "a canonical prefix missed the fast path"
    # Whatever path it takes, the parse is ipaddress's (or its refusal is a ValueError).
    if isinstance(slow, type):
        with pytest.raises(ValueError):
            _parse_prefix(text)
    else:
        assert _parse_prefix(text) == slow


def test_ipv4_networks_are_assembled_on_this_python():
    # The shortcut is taken here (else the benchmark measures the constructor), and makes
    # what the constructor makes: the attributes, not only equality.
    assert _make_ipv4_network is _assembled_ipv4_network
    for address, length in [(0, 0), (0x0A000000, 8), (0xFFFFFFFC, 30), (0xC0A80100, 24)]:
        assert vars(_assembled_ipv4_network(address, length)) == vars(
            ipaddress.IPv4Network((address, length))
        )


def _attributes(network):
    """What the constructor set on a network (`hosts`, set for /31 and /32, is a function of
    its own per object: compared by what it returns)."""
    return {name: value for name, value in vars(network).items() if name != "hosts"}


def _name_as_written_before(value):
    """`_check_name` before its isprintable() shortcut (the reference it must agree with)."""
    if not isinstance(value, str):
        raise ValueError(f"a name must be a string, got {value!r}")
    if not value or value != value.strip():
        raise ValueError(f"{value!r}: a name may not be empty or start/end with whitespace")
    if value in DOT_SEGMENTS:
        raise ValueError(f"{value!r}: a name may not be '.' or '..' (URLs drop them)")
    if any(ch in value for ch in "\n\r\t"):
        raise ValueError(f"{value!r}: a name may not contain tabs or line breaks")
    _check_one_line(value, "a name")
    _check_displayed_as_read(value, "a name")
    return value


def _outcome(check, value):
    try:
        return check(value)
    except ValueError as error:
        return str(error)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(max_size=8),
        st.sampled_from(["a\tb", "a\x85b", "a\u2028b", " a", "", ".", "..", "a\u202eb"]),
    )
)
def test_the_name_check_shortcut_agrees_with_the_full_check(value):
    assert _outcome(_check_name, value) == _outcome(_name_as_written_before, value)


def test_a_policy_is_read_and_validated_without_cyclic_garbage_collection():
    groups = "".join(
        f"- name: g{i}\n  prefixes: [10.{i // 256}.{i % 256}.0/24]\n" for i in range(2000)
    )
    collections = []

    def count(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    was = gc.isenabled()
    gc.enable()
    gc.callbacks.append(count)
    try:
        policy_set = load_policy_text(f"groups:\n{groups}")
        assert collections == [] and gc.isenabled()
    finally:
        gc.callbacks.remove(count)
        gc.enable() if was else gc.disable()
    assert len(policy_set.groups) == 2000


def test_the_loaded_set_is_the_set_validation_would_make():
    loaded = load_policy(EXAMPLES / "home-lab-monitor.yaml")
    validated = PolicySet.model_validate({s: getattr(loaded, s) for s in type(loaded).model_fields})
    assert loaded == validated
    assert loaded.model_fields_set == validated.model_fields_set


@settings(max_examples=300, deadline=None)
@given(st.lists(networks, max_size=8), st.booleans())
def test_a_field_set_s_prefixes_are_in_the_networks_own_order_each_once(prefixes, ipv6):
    one_family = [p for p in prefixes if p.version == (6 if ipv6 else 4)]
    written = tuple(one_family + one_family[:2])  # with duplicates
    assert _canonical(written) == tuple(sorted(set(written)))
