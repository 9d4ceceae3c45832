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
5. anything else is outside the network microseg knows about. It is never widened to
   0.0.0.0/0 or ::/0: outside addresses seen in the same role (server or client, of the same
   endpoints, on the same services) share one proposed group holding exactly those
   addresses, adjacent ones merged into a prefix only where every address of it was seen
   (`external-HTTP-servers`, `external-91-189-91-81` for a single host). A session between
   two outside addresses has no endpoint (index -1): no rule is proposed for it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from microseg.builder.addresses import collapse, group_size
from microseg.evaluate.cells import prefix_span
from microseg.flows.engines import AddressClass
from microseg.flows.session_columns import AddressTable
from microseg.model import Group, PolicySet
from microseg.model.objects import IPAddress, IPNetwork

EndpointKind = Literal["category", "min-share", "existing", "host", "external"]
# Existing groups used whole although only some of their addresses were seen: reported as
# widened, and group sources with the same reach share a rule.
GROUP_KINDS: frozenset[EndpointKind] = frozenset({"category", "min-share"})
Role = tuple[tuple[int, int, int], ...]  # (0 server / 1 client, peer endpoint, service)
UNMAPPED = -1  # an address only seen talking to other outside addresses
MAX_GROUP_NAME = 60


@dataclass(frozen=True)
class Endpoint:
    """A rule side: an existing group or a group the recommendation proposes."""

    name: str
    kind: EndpointKind
    size: int  # addresses the group holds
    proposed: Group | None = None  # set when the group is new


@dataclass(frozen=True)
class Peers:
    """The evidence sessions' ends and services, which give outside addresses their role."""

    client: np.ndarray  # address index per session
    server: np.ndarray
    service: np.ndarray  # index into `service_names`
    service_names: tuple[str, ...]

    def roles(
        self, outside: np.ndarray, choice: np.ndarray, endpoints: list[Endpoint]
    ) -> dict[tuple[int, ...], Role]:
        """Outside addresses grouped by role: the (server or client, peer endpoint, service)
        triples they were seen in with an endpoint inside (`choice`: each address's endpoint
        so far). Addresses with no such triple (only seen with other outside addresses) stay
        unmapped."""
        is_outside = np.zeros(len(choice), dtype=bool)
        is_outside[outside] = True
        addresses, peers, services, kinds = [], [], [], []
        for role, this, other in ((0, self.server, self.client), (1, self.client, self.server)):
            rows = is_outside[this] & ~is_outside[other]
            addresses.append(this[rows])
            peers.append(choice[other[rows]])
            services.append(self.service[rows])
            kinds.append(np.full(int(rows.sum()), role, dtype=np.int64))
        return grouped_roles(
            np.concatenate(addresses),
            np.concatenate(peers),
            np.concatenate(services),
            np.concatenate(kinds),
            len(endpoints),
            len(self.service_names),
        )


class RoleSource(Protocol):
    """Where the outside addresses' roles come from: `Peers` (the evidence in this process),
    or the Spark engine's executors (`builder.recommend_spark`)."""

    @property
    def service_names(self) -> tuple[str, ...]: ...

    def roles(
        self, outside: np.ndarray, choice: np.ndarray, endpoints: list[Endpoint]
    ) -> dict[tuple[int, ...], Role]: ...


def grouped_roles(
    address: np.ndarray,
    peer: np.ndarray,
    service: np.ndarray,
    role: np.ndarray,
    endpoint_count: int,
    service_count: int,
) -> dict[tuple[int, ...], Role]:
    """Addresses grouped by their set of (role: 0 server / 1 client, peer endpoint, service)
    sightings (one per row, repeats allowed): {addresses: role}."""
    width = max(service_count, 1)
    span = max(endpoint_count, 1) * width * 2
    triple = (peer.astype(np.int64) * width + service) * 2 + role
    found: dict[int, list[tuple[int, int, int]]] = {}
    for key in np.unique(address.astype(np.int64) * span + triple).tolist():
        at, rest = divmod(key, span)
        rest, kind = divmod(rest, 2)
        peer_endpoint, service_index = divmod(rest, width)
        found.setdefault(at, []).append((kind, peer_endpoint, service_index))
    groups: dict[Role, list[int]] = {}
    for at in sorted(found):
        groups.setdefault(tuple(found[at]), []).append(at)
    return {tuple(members): role for role, members in groups.items()}


@dataclass
class EndpointMap:
    endpoints: list[Endpoint]
    of_address: np.ndarray  # int32: address index -> endpoint index (UNMAPPED: none)

    def endpoint(self, address_index: int) -> Endpoint:
        return self.endpoints[int(self.of_address[address_index])]

    def by_name(self, index: int) -> bytes:
        """Sort key of endpoint `index`: its name, byte order."""
        return self.endpoints[index].name.encode()


def map_endpoints(
    policy_set: PolicySet,
    addresses: AddressTable,
    used: np.ndarray,
    categories: tuple[str, ...],
    min_share: float | None,
    segments: tuple[IPNetwork, ...],
    peers: RoleSource | None = None,
) -> EndpointMap:
    """Map every used address (boolean mask over `addresses`) to an endpoint. Outside
    addresses are grouped by their role in `peers` (without it, each is its own group)."""
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
        labelled, best = category_groups(policy_set, addresses, categories)
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
        roles = (
            peers.roles(np.array(outside), choice, endpoints)
            if peers is not None
            else {(int(i),): () for i in outside}
        )
        for members, role in sorted(roles.items(), key=lambda item: item[0]):
            group = external_group(
                [addresses.addresses[i] for i in members], role, endpoints, peers, taken
            )
            index[group.name] = len(endpoints)
            endpoints.append(Endpoint(group.name, "external", len(members), group))
            choice[np.array(members)] = index[group.name]
    return EndpointMap(endpoints, choice)


def category_groups(
    policy_set: PolicySet, addresses: AddressTable, categories: tuple[str, ...]
) -> tuple[list[Group], np.ndarray]:
    """The groups carrying one of `categories`, in the policy's order (with categories they
    are the map's first endpoints, whether used or not), and per address the position of
    its most specific one (-1: none). It depends on nothing but the address, so Spark's
    tasks map these addresses themselves (`builder.groupby_spark`)."""
    wanted = set(categories)
    labelled = [g for g in policy_set.groups if wanted & set(g.categories)]
    sizes = {group.name: group_size(group) for group in labelled}
    return labelled, _most_specific(addresses, labelled, sizes)


def address_classes(
    policy_set: PolicySet, categories: tuple[str, ...], named: tuple[IPNetwork, ...] = ()
) -> tuple[AddressClass, ...]:
    """The address classes of the engine's fold (`flows.engines.builder_rows`): every IPv4
    prefix a group (prefixes, except-prefixes) or a segment names, and `named` (the
    scope's). Which of them an address falls in, and so everything a policy or a scope asks
    of it, follows from its longest matching one. Those whose addresses all map to one
    category group (step 1 above) are labelled; any other address's endpoint depends on
    the address itself (a host group, an outside address's role), so its prefix has label
    -1: the address is a class of its own. Without categories there is nothing to label."""
    if not categories:
        return ()
    listed = {
        prefix
        for group in policy_set.groups
        for prefix in (*group.prefixes, *group.except_prefixes)
    }
    listed.update(s for d in policy_set.devices for seg in d.segments for s in seg.subnets)
    listed.update(named)
    prefixes = sorted(
        (p for p in listed if p.version == 4), key=lambda p: (int(p.network_address), p.prefixlen)
    )
    own = _first_own_addresses(prefixes)
    present = [index for index, address in enumerate(own) if address is not None]
    addresses = AddressTable.of([ipaddress.IPv4Address(own[index]) for index in present])
    wanted = set(categories)
    labelled = [g for g in policy_set.groups if wanted & set(g.categories)]
    sizes = {group.name: group_size(group) for group in labelled}
    best = _most_specific(addresses, labelled, sizes)
    label = dict(zip(present, (int(b) for b in best), strict=True))
    return tuple(
        AddressClass(
            int(prefix.network_address),
            prefix.prefixlen,
            index if label.get(index, -1) >= 0 else -1,
        )
        for index, prefix in enumerate(prefixes)
    )


def _first_own_addresses(prefixes: Sequence[IPNetwork]) -> list[int | None]:
    """Per prefix (sorted by network, then length), the first of its addresses that no
    longer prefix of the list holds; None when longer ones cover all of it. Prefixes nest
    or are disjoint, so a stack finds each one's longer prefixes directly inside it."""
    spans = [prefix_span(prefix) for prefix in prefixes]
    inside: list[list[int]] = [[] for _ in prefixes]
    stack: list[int] = []
    for index, (first, _) in enumerate(spans):
        while stack and spans[stack[-1]][1] < first:
            stack.pop()
        if stack:
            inside[stack[-1]].append(index)
        stack.append(index)
    result: list[int | None] = []
    for (cursor, last), children in zip(spans, inside, strict=True):
        for child_first, child_last in (spans[child] for child in children):
            if child_first > cursor:
                break
            cursor = child_last + 1
        result.append(cursor if cursor <= last else None)
    return result


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


def external_group(
    members: list[IPAddress],
    role: Role,
    endpoints: list[Endpoint],
    peers: RoleSource | None,
    taken: set[str],
) -> Group:
    """A proposed group of outside hosts seen in one role, named for what they are:
    `external-91-189-91-81` for one host, else `external-HTTP-servers`,
    `external-SSH-clients`, `external-hosts` (the services when they fit the name)."""
    prefixes = tuple(collapse(tuple(ipaddress.ip_network(a) for a in members)))
    services = sorted({peers.service_names[s] for _, _, s in role}) if peers else []
    kinds = {kind for kind, _, _ in role}
    what = {0: "servers", 1: "clients"}.get(kinds.pop(), "hosts") if len(kinds) == 1 else "hosts"
    peer_names = sorted({endpoints[p].name for _, p, _ in role})
    if len(members) == 1:
        base = "external-" + str(members[0]).replace(".", "-").replace(":", "-")
    else:
        base = f"external-{'-'.join(services)}-{what}"
        if len(base) > MAX_GROUP_NAME or not services:
            base = f"external-{what}"
    seen = what
    if peer_names:
        more = len(peer_names) - 3
        seen += " of " + ", ".join(peer_names[:3]) + (f" and {more} more" if more > 0 else "")
    if services:
        seen += f" on {', '.join(services)}"
    description = (
        f"{len(members)} host(s) outside every known group and segment, seen as {seen} "
        "(proposed by the policy builder)"
    )
    return Group(name=unique_name(base, taken), description=description, prefixes=prefixes)


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, or `base-2`, `base-3`... whichever is free; the name is then taken."""
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}-{number}"
    taken.add(name)
    return name
