"""Address arithmetic is 128-bit safe: groups of any IPv4 or IPv6 prefix length, with
sessions inside and outside them, never crash the builder and map each end correctly."""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microseg.builder import BuilderOptions, recommend
from microseg.builder.endpoints import map_endpoints
from microseg.builder.seed_sessions import session
from microseg.flows.session_columns import AddressTable
from microseg.model import Category, Device, Group, Policy, PolicySet, SecurityDomain, Segment


@st.composite
def prefixes(draw):
    version = draw(st.sampled_from((4, 6)))
    bits = 32 if version == 4 else 128
    length = draw(st.integers(0, bits))
    network = draw(st.integers(0, 2**bits - 1)) >> (bits - length) << (bits - length)
    network_type = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    return network_type((network, length))


def _inside(prefix, draw) -> ipaddress._BaseAddress:
    offset = draw(st.integers(0, prefix.num_addresses - 1))
    return prefix.network_address + offset


def _outside(prefix) -> ipaddress._BaseAddress | None:
    """The address one bit away, just outside the prefix (none for /0)."""
    if prefix.prefixlen == 0:
        return None
    bits = prefix.max_prefixlen
    flipped = int(prefix.network_address) ^ (1 << (bits - prefix.prefixlen))
    return type(prefix.network_address)(flipped)


def _policy_set(prefix) -> PolicySet:
    return PolicySet(
        devices=(Device(name="leaf1", segments=(Segment(name="lan", subnets=(prefix,)),)),),
        domains=(SecurityDomain(name="site", devices=("leaf1",)),),
        categories=(Category(name="servers"),),
        groups=(Group(name="big", prefixes=(prefix,), categories=("servers",)),),
        policies=(Policy(name="site-policy", id=1, domain="site"),),
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(prefix=prefixes(), data=st.data())
def test_groups_of_every_prefix_length_map_inside_and_outside_addresses(prefix, data):
    inside = [_inside(prefix, data.draw), _inside(prefix, data.draw)]
    outside = _outside(prefix)
    policy_set = _policy_set(prefix)
    texts = [str(a) for a in inside] + ([str(outside)] if outside else [])
    addresses = AddressTable.parse(texts)
    used = np.ones(len(addresses), dtype=bool)
    for categories, min_share in ((("servers",), None), ((), 1e-45)):
        endpoints = map_endpoints(policy_set, addresses, used, categories, min_share, (prefix,))
        names = [endpoints.endpoint(i).name for i in range(len(addresses))]
        assert names[:2] == ["big", "big"]
        if outside is not None:
            assert names[2] != "big"

    rows = [session(str(inside[0]), "eph", str(inside[1]), 443, "tcp")]
    if outside is not None:
        rows.append(session(str(outside), "eph", str(inside[0]), 22, "tcp"))
    for row in rows:
        row["sport"], row["dport"] = str(row["sport"]), str(row["dport"])
    result = recommend(
        policy_set,
        pa.Table.from_pylist(rows),
        BuilderOptions(categories=("servers",), target_policy="site-policy"),
    )
    assert result.quality.coverage == 1.0
    assert all(r.allowed_combinations >= 1 for r in result.rules)
    https = next(r for r in result.rules if r.rule.services == ("HTTPS",))
    assert https.rule.sources == ("big",) and https.rule.destinations == ("big",)
    assert https.allowed_combinations == prefix.num_addresses**2
