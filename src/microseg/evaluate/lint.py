"""Policy lint: shadowed and dead matches, unused objects, switch bypass, hardware entries.

Shadowing is decided exactly, as Batfish's filterLineReachability does, but over a finite
space: the atomic cells of the device's field-sets (addresses and ports cut at every
boundary, protocols and ICMP types grouped by identical rule membership). A match is
shadowed when no cell of its own space is decided by it; the earlier matches that decide
those cells cover it, and the reported set is reduced until no member can be dropped.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import numpy as np

from microseg.compile.intent import DeviceIntent, Match
from microseg.compile.resolve import compile_all
from microseg.evaluate.cells import field_set_intervals
from microseg.evaluate.engine import CompiledDevice, CompiledPolicy, lowest_set_bit
from microseg.model import PolicySet
from microseg.targets import registry

GRID_CHUNK = 1 << 18  # grid points per step of the shadow scan


@dataclass(frozen=True)
class Finding:
    """One lint result; `kind` orders and names it."""

    kind: str  # shadowed, never-matches, bypass, unused, hardware
    subject: str  # `rule 'x'`, `group 'g'`, `device 'd'`
    message: str
    fix: str
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "message": self.message,
            "fix": self.fix,
            **self.details,
        }


KIND_ORDER = ("never-matches", "shadowed", "bypass", "unused", "hardware")


# -- shadowing -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Space:
    """A policy's decision space as classes per dimension (rows of the bit tables)."""

    source: np.ndarray  # uint64[class, word]
    destination: np.ndarray
    service: np.ndarray


def _classes(rows: np.ndarray) -> np.ndarray:
    """The distinct rows, in order of first occurrence. Each row is compared as one opaque
    byte string (a void view): several times faster than np.unique(axis=0), which sorts
    field by field."""
    rows = np.ascontiguousarray(rows)
    as_bytes = rows.view(np.dtype((np.void, rows.shape[1] * rows.itemsize))).reshape(-1)
    _, first = np.unique(as_bytes, return_index=True)
    return rows[np.sort(first)]


def _combined(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The distinct non-empty ANDs of a row of `left` with a row of `right`."""
    rows = (left[:, None, :] & right[None, :, :]).reshape(-1, left.shape[1])
    return _classes(rows[(rows != 0).any(axis=1)])


def _space(compiled: CompiledPolicy) -> _Space:
    """The service classes are the distinct ANDs of protocol, ICMP-type and port classes,
    combined pairwise and deduplicated at each step (AND is associative), so the full
    four-way product is never built."""
    protocol = _classes(compiled.protocol_rows)
    sport = _classes(compiled.source_port_rows)
    dport = _classes(compiled.destination_port_rows)
    icmp = _classes(compiled.icmp_rows)
    service = _combined(_combined(protocol, icmp), _combined(sport, dport))
    return _Space(_classes(compiled.source_rows), _classes(compiled.destination_rows), service)


def _has_bit(rows: np.ndarray, term: int | np.integer) -> np.ndarray:
    return ((rows[:, term // 64] >> np.uint64(term % 64)) & np.uint64(1)).astype(bool)


@dataclass(frozen=True)
class Coverage:
    """For one match: whether it ever decides, and which earlier matches decide its space."""

    empty: bool
    reachable: bool
    deciders: tuple[int, ...]  # irredundant set of earlier match indexes covering it


def match_coverage(compiled: CompiledPolicy, space: _Space, match_index: int) -> Coverage:
    terms = np.flatnonzero(compiled.term_match == match_index)
    deciders: set[int] = set()
    grids = []
    empty = True
    for term in terms:
        # Only terms up to this one can decide its grid (its own bit is set in every row),
        # so the words after its own are left out.
        words = term // 64 + 1
        sources = space.source[_has_bit(space.source, term), :words]
        destinations = space.destination[_has_bit(space.destination, term), :words]
        services = space.service[_has_bit(space.service, term), :words]
        if not (len(sources) and len(destinations) and len(services)):
            continue
        empty = False
        for grid in _grid_chunks(sources, destinations, services):
            word = (grid != 0).argmax(axis=1)
            rows = np.arange(len(grid))
            first_term = word * 64 + lowest_set_bit(grid[rows, word])
            deciding = compiled.term_match[first_term]
            if (deciding == match_index).any():
                return Coverage(False, True, ())
            deciders.update(int(m) for m in np.unique(deciding))
            grids.append(grid)
    if empty:
        return Coverage(True, False, ())
    return Coverage(False, False, _irredundant(compiled, sorted(deciders), grids))


def _grid_chunks(sources: np.ndarray, destinations: np.ndarray, services: np.ndarray):
    """Rows of every (source, destination, service) class combination, in chunks."""
    pair_count = len(destinations) * len(services)
    per_chunk = max(1, GRID_CHUNK // max(pair_count, 1))
    pairs = (destinations[:, None, :] & services[None, :, :]).reshape(-1, sources.shape[1])
    for start in range(0, len(sources), per_chunk):
        chunk = sources[start : start + per_chunk]
        yield (chunk[:, None, :] & pairs[None, :, :]).reshape(-1, sources.shape[1])


def _irredundant(compiled: CompiledPolicy, deciders: list[int], grids: list[np.ndarray]) -> tuple:
    """Drop deciders (latest first) while the others still cover every grid point."""
    covers = {}
    for match in deciders:
        terms = np.flatnonzero(compiled.term_match == match)
        covers[match] = np.concatenate(
            [np.any([_has_bit(grid, t) for t in terms], axis=0) for grid in grids]
        )
    kept = list(deciders)
    for match in reversed(deciders):
        others = [covers[m] for m in kept if m != match]
        if others and np.logical_or.reduce(others).all():
            kept.remove(match)
    return tuple(kept)


def shadow_findings(intent: DeviceIntent, seen: set[str]) -> list[Finding]:
    device = CompiledDevice(intent)
    findings = []
    for position, policy in enumerate(intent.policies):
        if policy.name in seen:
            continue
        seen.add(policy.name)
        compiled = device.policies[position]
        space = _space(compiled)
        for index, match in enumerate(policy.matches):
            coverage = match_coverage(compiled, space, index)
            if coverage.empty:
                findings.append(_never_matches(policy.name, match, intent))
            elif not coverage.reachable:
                blockers = [policy.matches[i] for i in coverage.deciders]
                findings.append(_shadowed(policy.name, match, blockers))
    return findings


def _never_matches(policy: str, match: Match, intent: DeviceIntent) -> Finding:
    empty_groups = [
        name
        for name in (*match.source_field_sets, *match.destination_field_sets)
        if not field_set_intervals(intent.prefix_field_sets[(match.family, name)])
    ]
    reason = (
        f"group(s) {', '.join(sorted(set(empty_groups)))} hold no {match.family} address once "
        "their except-prefixes are removed"
        if empty_groups
        else "no packet fits its sources, destinations and services together"
    )
    return Finding(
        "never-matches",
        f"rule '{match.rule}'",
        f"match {match.name} in policy {policy} can never match: {reason}",
        "fix the groups' prefixes / except-prefixes or the services, or remove the rule",
        {"policy": policy, "match": match.name},
    )


def _shadowed(policy: str, match: Match, blockers: list[Match]) -> Finding:
    names = ", ".join(b.name for b in blockers)
    conflicting = [b for b in blockers if b.action != match.action]
    if conflicting:
        verdict = (
            f"earlier matches {names} take all its traffic and "
            f"{conflicting[0].action} what this rule would {match.action}"
        )
        fix = f"move rule {match.rule} above {conflicting[0].rule}, or remove it"
    else:
        verdict = f"earlier matches {names} take all its traffic with the same action"
        fix = f"remove rule {match.rule}: it is redundant"
    return Finding(
        "shadowed",
        f"rule '{match.rule}'",
        f"match {match.name} in policy {policy} is shadowed: {verdict}",
        fix,
        {
            "policy": policy,
            "match": match.name,
            "shadowed_by": [b.name for b in blockers],
            "action_differs": bool(conflicting),
        },
    )


# -- unused objects ----------------------------------------------------------------------------
def unused_findings(policy_set: PolicySet) -> list[Finding]:
    in_policy = {r for p in policy_set.policies for r in p.rules}
    findings = [
        Finding(
            "unused",
            f"rule '{rule.name}'",
            f"rule {rule.name} is in no policy, so no device enforces it",
            "add it to a policy's rules, or delete it",
        )
        for rule in policy_set.rules
        if rule.name not in in_policy
    ]
    used_rules = [r for r in policy_set.rules if r.name in in_policy]
    references = {
        "group": {g for r in used_rules for g in (*r.sources, *r.destinations)},
        "service": {s for r in used_rules for s in r.services},
        "monitor object": {r.monitor for r in used_rules if r.monitor},
        "redirect object": {r.redirect for r in used_rules if r.redirect},
        "category": {c for g in policy_set.groups for c in g.categories},
    }
    sections = {
        "group": policy_set.groups,
        "service": policy_set.services,
        "monitor object": policy_set.monitor_objects,
        "redirect object": policy_set.redirect_objects,
        "category": policy_set.categories,
    }
    for kind, objects in sections.items():
        for obj in objects:
            if obj.name in references[kind]:
                continue
            user = "no group carries it" if kind == "category" else "no rule in a policy uses it"
            findings.append(
                Finding(
                    "unused",
                    f"{kind} '{obj.name}'",
                    f"{kind} {obj.name} is unused: {user}",
                    f"delete {kind} {obj.name}, or reference it",
                )
            )
    return findings


# -- switch bypass ------------------------------------------------------------------------------
def bypass_findings(policy_set: PolicySet, intents: dict[str, DeviceIntent]) -> list[Finding]:
    """Drop, redirect and monitored rules whose traffic can stay inside one subnet of a
    segment that does not hairpin through the switch (hosts not isolated or no
    `ip local-proxy-arp`). Only the policy the segment's VRF meets counts, and a side counts
    when its field-sets (except-prefixes removed) hold an address of the subnet."""
    findings = []
    for device_name, intent in intents.items():
        device = policy_set.device(device_name)
        for segment in device.segments:
            if segment.enforces_intra_subnet:
                continue
            policy = intent.policy_for_vrf(segment.vrf)
            if policy is None:
                continue
            bypassed = {
                match.rule: match.action if match.action != "forward" else "monitor"
                for match in policy.matches
                if (match.action != "forward" or match.mirror_session)
                and any(
                    _side_touches(intent, match, match.source_field_sets, subnet)
                    and _side_touches(intent, match, match.destination_field_sets, subnet)
                    for subnet in segment.subnets
                    if f"ipv{subnet.version}" == match.family
                )
            }
            for rule_name in sorted(bypassed):
                findings.append(
                    Finding(
                        "bypass",
                        f"rule '{rule_name}'",
                        f"rule {rule_name} ({bypassed[rule_name]}) covers traffic between "
                        f"hosts of segment {segment.name} on {device_name}, which stays on the "
                        "host bridge and never reaches the switch",
                        f"isolate the hosts of {segment.name} at L2 (bridge port isolation / "
                        "private VLAN) and configure `ip local-proxy-arp` on its SVI; then set "
                        "hosts_isolated and local_proxy_arp on the segment",
                        {"device": device_name, "segment": segment.name},
                    )
                )
    return findings


def _side_touches(intent: DeviceIntent, match: Match, names: tuple[str, ...], subnet) -> bool:
    if not names:
        return True
    first, last = int(subnet.network_address), int(subnet.broadcast_address)
    return any(
        low <= last and high >= first
        for name in names
        for low, high in field_set_intervals(intent.prefix_field_sets[(match.family, name)])
    )


# -- hardware entries ---------------------------------------------------------------------------
def range_prefix_count(low: int, high: int, bits: int = 16) -> int:
    """Ternary entries one value range needs (its prefix decomposition)."""
    count = 0
    while low <= high:
        size = low & -low if low else 1 << bits
        while size > high - low + 1:
            size >>= 1
        low += size
        count += 1
    return count


def _side_entries(intent: DeviceIntent, match: Match, names: tuple[str, ...]) -> int:
    if not names:
        return 1
    total = 0
    for name in names:
        for first, last in field_set_intervals(intent.prefix_field_sets[(match.family, name)]):
            address = ipaddress.ip_address if match.family == "ipv4" else ipaddress.IPv6Address
            total += len(list(ipaddress.summarize_address_range(address(first), address(last))))
    return max(total, 1)


def _ports_entries(ranges) -> int:
    return sum(range_prefix_count(low, high) for low, high in ranges) or 1


def hardware_entries(intent: DeviceIntent) -> int:
    """Entries if every match is expanded: sources x destinations x service port entries, plus
    one default entry per family and policy. An upper bound: EOS compresses field-sets."""
    total = 0
    for policy in intent.policies:
        total += 2
        for match in policy.matches:
            services = [intent.service_field_sets[s] for s in match.service_field_sets]
            service_entries = (
                sum(
                    _ports_entries(s.source_ports) * _ports_entries(s.destination_ports)
                    for s in services
                )
                or 1
            )
            total += (
                _side_entries(intent, match, match.source_field_sets)
                * _side_entries(intent, match, match.destination_field_sets)
                * service_entries
            )
    return total


def hardware_report(policy_set: PolicySet, intents: dict[str, DeviceIntent]) -> list[dict]:
    rows = []
    for name, intent in intents.items():
        device = policy_set.device(name)
        # The device's target knows its hardware budget (targets/<platform>/target.py).
        budget = registry.for_device(device).limits.hardware_budget(device.hardware)
        rows.append(
            {
                "device": name,
                "platform": device.platform,
                "hardware": device.hardware,
                "entries": hardware_entries(intent),
                "budget": budget.entries,
                "budget_source": budget.source,
            }
        )
    return rows


def hardware_findings(report: list[dict]) -> list[Finding]:
    return [
        Finding(
            "hardware",
            f"device '{row['device']}'",
            f"device {row['device']} needs about {row['entries']} hardware entries, over its "
            f"budget of {row['budget']}",
            "merge groups and services into fewer, wider prefixes and port ranges, or split "
            "the policy across VRFs / devices",
            {"entries": row["entries"], "budget": row["budget"]},
        )
        for row in report
        if row["budget"] is not None and row["entries"] > row["budget"]
    ]


# -- all of it ----------------------------------------------------------------------------------
def lint(policy_set: PolicySet) -> dict:
    """Every finding, in a deterministic order, plus the hardware estimate per device."""
    intents = compile_all(policy_set)
    seen: set[str] = set()
    findings: list[Finding] = []
    for intent in intents.values():
        findings += shadow_findings(intent, seen)
    findings += bypass_findings(policy_set, intents)
    findings += unused_findings(policy_set)
    hardware = hardware_report(policy_set, intents)
    findings += hardware_findings(hardware)
    order = {name: position for position, name in enumerate(_rule_order(policy_set))}
    findings.sort(
        key=lambda f: (
            KIND_ORDER.index(f.kind),
            order.get(f.subject, len(order)),
            f.subject,
            f.details.get("match", ""),
            f.message,
        )
    )
    return {
        "clean": not findings,
        "findings": [f.as_dict() for f in findings],
        "hardware": hardware,
    }


def _rule_order(policy_set: PolicySet) -> list[str]:
    names = [f"rule '{r}'" for p in policy_set.policies for r in p.rules]
    return list(dict.fromkeys(names))
