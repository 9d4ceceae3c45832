"""Where a proposed rule goes in the target policy so that it changes no explicit decision.

First match wins, so a rule inserted at position p can only change the verdict of packets
that an existing rule at p or later decides today. A proposal (a forward rule) therefore goes
after every drop or redirect rule of the policy that could match a packet it matches — a
hand-written drop stays in force — and, within that bound, before the first rule that decides
its own sessions today (a monitor rule), so the proposal is what decides them from then on.

"Could match a packet it matches" is decided on the rules' groups and services, both
directions of a bidirectional rule included. It is conservative: an overlap that earlier
rules would take anyway still counts, which can only move a proposal later, never earlier.
"""

from __future__ import annotations

from dataclasses import dataclass

from microseg.model import PolicySet, Rule, Service
from microseg.model.objects import PortRange

Intervals = tuple[tuple[int, int, int], ...]  # (IP version, first, last) address ranges
ANY = None  # a rule side naming no group, or no service


@dataclass(frozen=True)
class _Side:
    """The traffic one direction of a rule matches: addresses and services (None = any)."""

    sources: Intervals | None
    destinations: Intervals | None
    services: tuple[_Service, ...] | None


@dataclass(frozen=True)
class _Service:
    protocol: int | None  # None = any IP protocol
    source_ports: tuple[PortRange, ...]  # empty = every port
    destination_ports: tuple[PortRange, ...]
    icmp_types: tuple[int, ...]  # empty = every type

    def reversed(self) -> _Service:
        return _Service(self.protocol, self.destination_ports, self.source_ports, self.icmp_types)


class RuleSpace:
    """The packets rules match, resolved once per group and service of a policy set."""

    def __init__(self, policy_set: PolicySet):
        self.policy_set = policy_set
        self._groups: dict[str, Intervals] = {}

    def directions(self, rule: Rule) -> list[_Side]:
        """The rule's forward match, and its reverse one when it is bidirectional."""
        services = None
        if rule.services:
            services = tuple(_service(self.policy_set.service(n)) for n in rule.services)
        forward = _Side(self._side(rule.sources), self._side(rule.destinations), services)
        if rule.direction != "bidirectional":
            return [forward]
        reverse_services = None if services is None else tuple(s.reversed() for s in services)
        return [forward, _Side(forward.destinations, forward.sources, reverse_services)]

    def overlap(self, proposal: Rule, existing: Rule) -> bool:
        """Whether some packet matches both rules (in any of their directions)."""
        return any(
            _sides_overlap(mine, theirs)
            for mine in self.directions(proposal)
            for theirs in self.directions(existing)
        )

    def _side(self, names: tuple[str, ...]) -> Intervals | None:
        if not names:
            return ANY
        return tuple(interval for name in names for interval in self._group(name))

    def _group(self, name: str) -> Intervals:
        if name not in self._groups:
            group = self.policy_set.group(name)
            self._groups[name] = tuple(
                interval
                for prefix in group.prefixes
                for interval in _minus(
                    (prefix.version, int(prefix.network_address), int(prefix.broadcast_address)),
                    [e for e in group.except_prefixes if e.version == prefix.version],
                )
            )
        return self._groups[name]


def placements(
    policy_set: PolicySet,
    target: str,
    proposals: list[Rule],
    deciding_today: list[set[int]],
    keep_deciders: bool,
) -> list[int]:
    """Per proposal, the index in the target policy's rule list it goes before.

    `deciding_today[i]`: positions of the policy's rules that decide proposal i's sessions
    today. With `keep_deciders` false (--include-blocked) a drop rule that decides them does
    not bound the proposal: the user asked to allow what it drops."""
    space = RuleSpace(policy_set)
    rule_names = policy_set.policy(target).rules
    stopping = [
        (position, policy_set.rule(name))
        for position, name in enumerate(rule_names)
        if policy_set.rule(name).action != "forward"
    ]
    positions = []
    for proposal, deciders in zip(proposals, deciding_today, strict=True):
        floor = 0
        for position, existing in stopping:
            if position in deciders and not keep_deciders:
                continue
            if space.overlap(proposal, existing):
                floor = position + 1
        preferred = min(deciders, default=len(rule_names))
        positions.append(max(floor, preferred))
    return positions


def _service(service: Service) -> _Service:
    return _Service(
        service.protocol_number,
        service.source_ranges,
        service.destination_ranges,
        service.icmp_type_numbers,
    )


def _minus(interval: tuple[int, int, int], excepts) -> list[tuple[int, int, int]]:
    """An address range minus except-prefixes."""
    pieces = [interval]
    for excluded in excepts:
        low, high = int(excluded.network_address), int(excluded.broadcast_address)
        remaining = []
        for version, first, last in pieces:
            if high < first or low > last:
                remaining.append((version, first, last))
                continue
            if first < low:
                remaining.append((version, first, low - 1))
            if high < last:
                remaining.append((version, high + 1, last))
        pieces = remaining
    return pieces


def _addresses_overlap(left: Intervals | None, right: Intervals | None) -> bool:
    if left is ANY:
        return right is ANY or bool(right)
    if right is ANY:
        return bool(left)
    return any(a[0] == b[0] and a[1] <= b[2] and b[1] <= a[2] for a in left for b in right)


def _ranges_overlap(left: tuple[PortRange, ...], right: tuple[PortRange, ...]) -> bool:
    if not left or not right:
        return True
    return any(a.low <= b.high and b.low <= a.high for a in left for b in right)


def _services_overlap(left: _Service, right: _Service) -> bool:
    if None not in (left.protocol, right.protocol) and left.protocol != right.protocol:
        return False
    if left.icmp_types and right.icmp_types and not set(left.icmp_types) & set(right.icmp_types):
        return False
    return _ranges_overlap(left.source_ports, right.source_ports) and _ranges_overlap(
        left.destination_ports, right.destination_ports
    )


def _sides_overlap(left: _Side, right: _Side) -> bool:
    if not _addresses_overlap(left.sources, right.sources):
        return False
    if not _addresses_overlap(left.destinations, right.destinations):
        return False
    if left.services is None or right.services is None:
        return True
    return any(_services_overlap(a, b) for a in left.services for b in right.services)
