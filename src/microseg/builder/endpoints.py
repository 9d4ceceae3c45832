"""Which group an endpoint address belongs to in a recommendation.

Each distinct address is mapped once, in this order:

1. with categories: the most specific existing group carrying one of them (longest
   matching prefix, then the smallest group, then the name);
2. with `min_share`: the most specific existing group containing it, when at least that
   share of the group's addresses was observed (NSX's "matching ratio"); the widening is
   reported;
3. an existing group that is exactly this one address (/32 or /128) is reused;
4. an address inside a known group or a segment of the domain gets its own proposed host
   group (`host-10-100-99-51`, a /32 or /128): the seed's "rule for every IP";
5. anything else is outside the network microseg knows about: the proposed `internet`
   group (0.0.0.0/0 and ::/0 minus every known group prefix and segment subnet).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from microseg.builder.addresses import collapse, group_size
from microseg.flows.session_columns import AddressTable
from microseg.model import Group, PolicySet
from microseg.model.objects import IPAddress, IPNetwork

EndpointKind = Literal["category", "min-share", "existing", "host", "internet"]
INTERNET = "internet"


@dataclass(frozen=True)
class Endpoint:
    """A rule side: an existing group or a group the recommendation proposes."""

    name: str
    kind: EndpointKind
    size: int  # addresses the group holds (the internet counts as one endpoint)
    proposed: Group | None = None  # set when the group is new


@dataclass
class EndpointMap:
    endpoints: list[Endpoint]
    of_address: np.ndarray  # int32: address index -> endpoint index
    observed: dict[str, int] = field(default_factory=dict)  # endpoint name -> addresses seen

    def endpoint(self, address_index: int) -> Endpoint:
        return self.endpoints[int(self.of_address[address_index])]


def map_endpoints(
    policy_set: PolicySet,
    addresses: AddressTable,
    used: np.ndarray,
    categories: tuple[str, ...],
    min_share: float | None,
    segments: tuple[IPNetwork, ...],
) -> EndpointMap:
    """Map every used address (boolean mask over `addresses`) to an endpoint."""
    undecided = used.copy()
    choice = np.full(len(addresses), -1, dtype=np.int32)
    endpoints: list[Endpoint] = []
    index: dict[str, int] = {}

    def assign(mask: np.ndarray, endpoint: Endpoint) -> None:
        if endpoint.name not in index:
            index[endpoint.name] = len(endpoints)
            endpoints.append(endpoint)
        choice[mask] = index[endpoint.name]
        undecided[mask] = False

    sizes = {group.name: group_size(group) for group in policy_set.groups}
    if categories:
        wanted = set(categories)
        labelled = [g for g in policy_set.groups if wanted & set(g.categories)]
        best = _most_specific(addresses, labelled, sizes)
        for position, group in enumerate(labelled):
            assign(
                undecided & (best == position), Endpoint(group.name, "category", sizes[group.name])
            )
    if min_share is not None:
        best = _most_specific(addresses, list(policy_set.groups), sizes)
        for position, group in enumerate(policy_set.groups):
            members = undecided & (best == position)
            if members.any() and int(members.sum()) >= min_share * sizes[group.name]:
                assign(members, Endpoint(group.name, "min-share", sizes[group.name]))
    host_groups = {
        g.prefixes[0].network_address: g
        for g in sorted(policy_set.groups, key=lambda g: g.name.encode())
        if len(g.prefixes) == 1 and not g.except_prefixes and g.prefixes[0].num_addresses == 1
    }
    known_space = tuple(p for g in policy_set.groups for p in g.prefixes) + segments
    known = addresses.in_prefixes(known_space)
    taken = {g.name for g in policy_set.groups}
    outside = []
    for address_index in np.flatnonzero(undecided):
        address = addresses.addresses[address_index]
        if address in host_groups:
            endpoint = Endpoint(host_groups[address].name, "existing", 1)
        elif known[address_index]:
            group = host_group(address, taken)
            endpoint = Endpoint(group.name, "host", 1, group)
        else:
            outside.append(address_index)
            continue
        index.setdefault(endpoint.name, len(endpoints))
        if index[endpoint.name] == len(endpoints):
            endpoints.append(endpoint)
        choice[address_index] = index[endpoint.name]
    if outside:
        families = {addresses.addresses[i].version for i in outside}
        internet = _internet(known_space, families, taken)
        index[internet.name] = len(endpoints)
        endpoints.append(internet)
        choice[np.array(outside)] = index[internet.name]
    observed = {}
    for position, endpoint in enumerate(endpoints):
        observed[endpoint.name] = int((used & (choice == position)).sum())
    return EndpointMap(endpoints, choice, observed)


def _most_specific(
    addresses: AddressTable, groups: list[Group], sizes: dict[str, int]
) -> np.ndarray:
    """Per address, the position in `groups` of its most specific group; -1 for none.

    Group sizes reach 2**128 (an IPv6 /0), beyond any numpy integer: numpy compares each
    group's rank among the distinct sizes, computed with Python's integers."""
    best = np.full(len(addresses), -1, dtype=np.int32)
    best_length = np.full(len(addresses), -1, dtype=np.int16)
    best_rank = np.full(len(addresses), len(groups), dtype=np.int64)
    size_rank = {size: rank for rank, size in enumerate(sorted({sizes[g.name] for g in groups}))}
    order = sorted(range(len(groups)), key=lambda i: groups[i].name.encode())
    for position in order:
        group = groups[position]
        length = np.where(addresses.in_group(group), addresses.longest_match(group.prefixes), -1)
        rank = size_rank[sizes[group.name]]
        better = (length >= 0) & (
            (length > best_length) | ((length == best_length) & (rank < best_rank))
        )
        best = np.where(better, position, best)
        best_length = np.where(better, length, best_length)
        best_rank = np.where(better, rank, best_rank)
    return best


def host_group(address: IPAddress, taken: set[str]) -> Group:
    """A proposed one-address group, named from the address with EOS-safe characters."""
    text = str(address).replace(".", "-").replace(":", "-")
    name = unique_name(f"host-{text}", taken)
    return Group(
        name=name,
        description=f"host {address} (proposed by the policy builder)",
        prefixes=(ipaddress.ip_network(address),),
    )


def _internet(
    known_space: tuple[IPNetwork, ...], families: Collection[int], taken: set[str]
) -> Endpoint:
    """The rest of the world, in the address families it was seen in."""
    everything = [
        ipaddress.ip_network(p) for v, p in ((4, "0.0.0.0/0"), (6, "::/0")) if v in families
    ]
    name = unique_name(INTERNET, taken)
    group = Group(
        name=name,
        description="outside every known group and segment (proposed by the policy builder)",
        prefixes=tuple(everything),
        except_prefixes=tuple(p for p in collapse(known_space) if p.version in families),
    )
    return Endpoint(name, "internet", 1, group)


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, or `base-2`, `base-3`... whichever is free; the name is then taken."""
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}-{number}"
    taken.add(name)
    return name
