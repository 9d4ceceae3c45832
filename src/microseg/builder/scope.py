"""Which sessions a recommendation looks at: a monitor rule, a policy, filters, a window.

A selector is what a rule matches: sources, destinations, services (each empty = any) and
VRFs. A session is selected when its request packet or its reply packet (ports swapped)
matches the selector: a monitor rule mirrors a session as soon as either direction hits it,
and a bidirectional rule's `-reverse` match is exactly the reply matched forward.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import numpy as np

from microseg.builder.times import parse_time
from microseg.flows.session_columns import EPHEMERAL, AddressTable, SessionColumns, icmp_types
from microseg.model import MicrosegError, PolicySet, Service
from microseg.model.objects import IPNetwork, PortRange
from microseg.model.ports import EPHEMERAL_PORT_START


@dataclass(frozen=True)
class Selector:
    """Traffic a rule (or a filter) matches. Empty tuples mean any."""

    label: str
    sources: tuple[IPNetwork, ...] = ()
    source_excepts: tuple[IPNetwork, ...] = ()
    destinations: tuple[IPNetwork, ...] = ()
    destination_excepts: tuple[IPNetwork, ...] = ()
    services: tuple[Service, ...] = ()
    vrfs: tuple[str, ...] = ()  # empty = every VRF
    rule: str | None = None  # the monitor rule this selector stands for
    matches_nothing: bool = False  # a side names only groups without addresses


@dataclass(frozen=True)
class Scope:
    """Every condition must hold; within `any_of`, one selector is enough."""

    all_of: tuple[tuple[Selector, ...], ...] = ()
    since_ms: int | None = None
    until_ms: int | None = None
    description: tuple[str, ...] = field(default_factory=tuple)


def scope_prefixes(scope: Scope) -> tuple[IPNetwork, ...]:
    """Every prefix a scope's selectors name (sources, destinations and their excepts)."""
    return tuple(
        prefix
        for any_of in scope.all_of
        for selector in any_of
        for prefix in (
            *selector.sources,
            *selector.source_excepts,
            *selector.destinations,
            *selector.destination_excepts,
        )
    )


def rule_selector(policy_set: PolicySet, rule_name: str) -> Selector:
    rule = policy_set.rule(rule_name) if policy_set.get("rules", rule_name) else None
    if rule is None:
        known = ", ".join(sorted(r.name for r in policy_set.rules)) or "none"
        raise MicrosegError(f"monitor rule {rule_name!r} is not in the policy (rules: {known})")
    holders = [p for p in policy_set.policies if rule_name in p.rules]
    vrfs: tuple[str, ...] = ()
    if holders and all(p.vrf != "ALL" for p in holders):
        vrfs = tuple(sorted({p.vrf for p in holders}))
    sources = [policy_set.group(name) for name in rule.sources]
    destinations = [policy_set.group(name) for name in rule.destinations]
    return Selector(
        label=f"rule {rule_name}",
        sources=tuple(p for g in sources for p in g.prefixes),
        source_excepts=tuple(p for g in sources for p in g.except_prefixes),
        destinations=tuple(p for g in destinations for p in g.prefixes),
        destination_excepts=tuple(p for g in destinations for p in g.except_prefixes),
        services=tuple(policy_set.service(name) for name in rule.services),
        vrfs=vrfs,
        rule=rule_name,
        # `any` is a rule side naming no group; groups that hold no address match nothing
        matches_nothing=any(
            names and not any(g.prefixes for g in groups)
            for names, groups in ((rule.sources, sources), (rule.destinations, destinations))
        ),
    )


def policy_selectors(policy_set: PolicySet, policy_name: str) -> tuple[Selector, ...]:
    """A policy's sessions: those its monitor rules mirror, in its VRF; with no monitor
    rule, every session in its VRF."""
    policy = policy_set.get("policies", policy_name)
    if policy is None:
        known = ", ".join(sorted(p.name for p in policy_set.policies)) or "none"
        raise MicrosegError(f"policy {policy_name!r} is not in the policy set (policies: {known})")
    vrfs = () if policy.vrf == "ALL" else (policy.vrf,)
    monitored = [name for name in policy.rules if policy_set.rule(name).monitor]
    if not monitored:
        return (Selector(label=f"policy {policy_name}", vrfs=vrfs),)
    selectors = []
    for name in monitored:
        selector = rule_selector(policy_set, name)
        selectors.append(
            Selector(
                **{**selector.__dict__, "label": f"policy {policy_name} rule {name}", "vrfs": vrfs}
            )
        )
    return tuple(selectors)


def scope_mask(sessions: SessionColumns, scope: Scope) -> np.ndarray:
    selected = np.ones(len(sessions), dtype=bool)
    if scope.since_ms is not None:
        selected &= sessions.last_seen >= scope.since_ms
    if scope.until_ms is not None:
        selected &= sessions.first_seen <= scope.until_ms
    for any_of in scope.all_of:
        matched = np.zeros(len(sessions), dtype=bool)
        for selector in any_of:
            matched |= selector_mask(sessions, selector)
        selected &= matched
    return selected


def selector_mask(sessions: SessionColumns, selector: Selector) -> np.ndarray:
    """Sessions whose request or reply packet matches the selector."""
    if selector.matches_nothing:
        return np.zeros(len(sessions), dtype=bool)
    in_sources = _members(sessions.addresses, selector.sources, selector.source_excepts)
    in_destinations = _members(
        sessions.addresses, selector.destinations, selector.destination_excepts
    )
    request = in_sources[sessions.src] & in_destinations[sessions.dst]
    request &= _service_match(sessions, selector.services, sessions.sport, sessions.dport)
    reply = in_sources[sessions.dst] & in_destinations[sessions.src]
    reply &= _service_match(sessions, selector.services, sessions.dport, sessions.sport)
    selected = request | reply
    if selector.vrfs:
        wanted = np.array([name in selector.vrfs for name in sessions.vrf_names], dtype=bool)
        selected &= wanted[sessions.vrf]
    return selected


def _members(addresses: AddressTable, prefixes: tuple, excepts: tuple) -> np.ndarray:
    if not prefixes:
        return np.ones(len(addresses), dtype=bool)
    return addresses.in_prefixes(prefixes) & ~addresses.in_prefixes(excepts)


def _service_match(
    sessions: SessionColumns,
    services: tuple[Service, ...],
    source_port: np.ndarray,
    destination_port: np.ndarray,
) -> np.ndarray:
    if not services:
        return np.ones(len(sessions), dtype=bool)
    matched = np.zeros(len(sessions), dtype=bool)
    for service in services:
        number = service.protocol_number
        this = np.ones(len(sessions), dtype=bool) if number is None else sessions.protocol == number
        if service.destination_ranges:
            this &= _in_ranges(destination_port, service.destination_ranges)
        if service.source_ranges:
            this &= _in_ranges(source_port, service.source_ranges)
        if service.icmp_types:
            icmp_type = icmp_types(sessions.protocol, sessions.dport)
            this &= np.isin(icmp_type, service.icmp_type_numbers)
        matched |= this
    return matched


def _in_ranges(ports: np.ndarray, ranges: tuple[PortRange, ...]) -> np.ndarray:
    """`eph` stands for some port at or above 49152: inside a range reaching that far."""
    inside = np.zeros(len(ports), dtype=bool)
    for low, high in ranges:
        inside |= (ports >= low) & (ports <= high)
        if high >= EPHEMERAL_PORT_START:
            inside |= ports == EPHEMERAL
    return inside


def scope_from(
    policy_set: PolicySet,
    monitor_rule: str | None,
    policy_name: str | None,
    vrf: str | None,
    between: list[str],
    since: str | None,
    until: str | None,
) -> Scope:
    """The scope a recommend request names: a monitor rule, a policy, a VRF, prefixes an
    end is in (`between`) and a time window (ISO times); all of them at once."""
    conditions: list[tuple[Selector, ...]] = []
    if monitor_rule:
        conditions.append((rule_selector(policy_set, monitor_rule),))
    if policy_name:
        conditions.append(policy_selectors(policy_set, policy_name))
    if vrf:
        conditions.append((Selector(label=f"vrf {vrf}", vrfs=(vrf,)),))
    if between:
        prefixes = []
        for text in between:
            try:
                prefixes.append(ipaddress.ip_network(text.strip(), strict=False))
            except ValueError:
                raise MicrosegError(f"--between: {text!r} is not an IP prefix") from None
        conditions.append((Selector(label="between", sources=tuple(prefixes)),))
    since_ms = parse_time(since, "--since") if since else None
    until_ms = parse_time(until, "--until") if until else None
    if since_ms is not None and until_ms is not None and since_ms > until_ms:
        raise MicrosegError(f"--since {since} is after --until {until}")
    return Scope(all_of=tuple(conditions), since_ms=since_ms, until_ms=until_ms)
