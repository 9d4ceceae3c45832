"""Group sizes and prefix sets, with Python's integers: an IPv6 group holds up to 2**128
addresses, beyond any numpy integer."""

from __future__ import annotations

import ipaddress

from microseg.model import Group
from microseg.model.objects import IPNetwork


def group_size(group: Group) -> int:
    """Number of addresses a static group holds (prefixes minus except-prefixes)."""
    networks = collapse(group.prefixes)
    excluded = collapse(tuple(e for e in group.except_prefixes))
    return sum(n.num_addresses for n in networks) - sum(e.num_addresses for e in excluded)


def collapse(prefixes: tuple[IPNetwork, ...]) -> list[IPNetwork]:
    """Overlapping and adjacent prefixes merged, IPv4 first."""
    out: list[IPNetwork] = []
    for version in (4, 6):
        same = [p for p in prefixes if p.version == version]
        # `same` holds one IP version; typeshed's collapse_addresses wants one network class.
        out.extend(ipaddress.collapse_addresses(same))  # type: ignore[type-var]
    return out
