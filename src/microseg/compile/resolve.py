"""PolicySet -> DeviceIntent: every policy of a device resolved into ordered matches.

What this reproduces (EOS traffic-policies as CloudVision MSS generates them, seen in the
seed's `show running-config`):

* one traffic policy per (device, VRF); a policy with VRF `ALL` binds to every VRF;
* rules in policy order; each rule yields one match per address family its groups and
  services can meet (a group with IPv4 and IPv6 prefixes yields an `ipv4` and an `ipv6`
  match). IPv4 matches keep the rule's name; IPv6 matches are named `<rule>-ipv6`, because
  EOS match names are unique within a traffic policy across both families (pyavd's schema
  keys `matches` by name alone);
* a bidirectional rule also gets `<name>-reverse` with source and destination swapped and
  the `-reverse` service field-sets (source and destination ports swapped). EOS traffic
  policies are stateless: return traffic needs its own match. Unless that match would be
  the forward match again (the same groups on both sides, services whose reverse is
  themselves, e.g. `any`, or tcp from all ports to all ports): then the forward match
  already takes the return traffic and the rule yields one match;
* an absent side (any source, any destination, any service) is left out of the match;
* every match counts; drop / redirect next-hop / mirror to the monitor session per rule.

The resolution of groups and services is computed once per PolicySet and shared by all
devices, so compiling is linear in the number of rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

from microseg.compile.intent import (
    DeviceIntent,
    Family,
    Match,
    MirrorSession,
    PolicyIntent,
    PrefixFieldSet,
    ServiceFieldSet,
)
from microseg.gc_pause import paused_garbage_collector
from microseg.model import MicrosegError, PolicySet
from microseg.model.objects import (
    Device,
    IPNetwork,
    Policy,
    PortRange,
    Rule,
    Service,
    merge_ranges,
)
from microseg.model.ports import ICMP, ICMP_REPLY_TYPES, ICMPV6

FAMILIES: tuple[Family, ...] = ("ipv4", "ipv6")
_BOTH_FAMILIES: frozenset[Family] = frozenset(FAMILIES)
_IPV4_FAMILY: frozenset[Family] = frozenset({"ipv4"})
# A set of families -> the same families in FAMILIES order.
_IN_ORDER: dict[frozenset[Family], tuple[Family, ...]] = {
    frozenset(): (),
    _IPV4_FAMILY: ("ipv4",),
    frozenset({"ipv6"}): ("ipv6",),
    _BOTH_FAMILIES: FAMILIES,
}
_IPV4_ONLY = {IPv4Network}
_VERSION: dict[Family, int] = {"ipv4": 4, "ipv6": 6}
# Matches EOS creates itself in every traffic policy; a rule may not take these names.
RESERVED_MATCH_NAMES = frozenset({"ipv4-all-default", "ipv6-all-default"})
REVERSE_SUFFIX = "-reverse"
IPV6_SUFFIX = "-ipv6"

# Which families a protocol can be carried in: ICMP is IPv4 only, ICMPv6 IPv6 only.
_PROTOCOL_FAMILIES: dict[int, tuple[Family, ...]] = {ICMP: ("ipv4",), ICMPV6: ("ipv6",)}


class CompileError(MicrosegError):
    """The policy cannot be compiled for a device; the message names the object."""


@dataclass
class _Resolved:
    """Group and service field-sets of a PolicySet, shared by every device compiled from
    it. Groups and services are resolved up front, in one pass each; the `-reverse`
    service field-sets of bidirectional rules on first use."""

    policy_set: PolicySet
    prefix_field_sets: dict[tuple[Family, str], PrefixFieldSet]
    group_families: dict[str, frozenset[Family]]
    service_families: dict[str, tuple[Family, ...]]
    # Services of protocol `any`: a rule with one of them matches every service.
    any_services: frozenset[str]
    service_field_sets: dict[str, ServiceFieldSet]

    @classmethod
    def of(cls, policy_set: PolicySet) -> _Resolved:
        service_names = {s.name for s in policy_set.services}
        for service in policy_set.services:
            if service.name + REVERSE_SUFFIX in service_names:
                raise CompileError(
                    f"service {service.name + REVERSE_SUFFIX!r}: the name is taken by the "
                    f"reverse field-set of service {service.name!r}; rename it"
                )
        prefix_field_sets: dict[tuple[Family, str], PrefixFieldSet] = {}
        group_families: dict[str, frozenset[Family]] = {}
        for group in policy_set.groups:
            name, prefixes = group.name, group.prefixes
            if not group.except_prefixes and prefixes and set(map(type, prefixes)) == _IPV4_ONLY:
                # The common case, without the general split below.
                prefix_field_sets[("ipv4", name)] = PrefixFieldSet(
                    name, "ipv4", _canonical(prefixes)
                )
                group_families[name] = _IPV4_FAMILY
                continue
            by_family = _split_families(prefixes)
            excepts = _split_families(group.except_prefixes)
            families = []
            for index, family in enumerate(FAMILIES):
                if by_family[index]:
                    families.append(family)
                    prefix_field_sets[(family, name)] = PrefixFieldSet(
                        name, family, _canonical(by_family[index]), _canonical(excepts[index])
                    )
            group_families[name] = frozenset(families)
        service_families: dict[str, tuple[Family, ...]] = {}
        service_field_sets: dict[str, ServiceFieldSet] = {}
        for service in policy_set.services:
            name, protocol = service.name, service.protocol_number
            # `any` (no protocol number) and most protocols travel in both families.
            service_families[name] = (
                _PROTOCOL_FAMILIES.get(protocol, FAMILIES) if protocol is not None else FAMILIES
            )
            source_ports, destination_ports = service.source_ports, service.destination_ports
            service_field_sets[name] = ServiceFieldSet(
                name,
                protocol,
                _port_ranges(service, source_ports, "source") if source_ports else (),
                _port_ranges(service, destination_ports, "destination")
                if destination_ports
                else (),
                service.icmp_type_numbers if service.icmp_types else (),
                source_ports,
                destination_ports,
            )
        return cls(
            policy_set,
            prefix_field_sets,
            group_families,
            service_families,
            frozenset(s.name for s in policy_set.services if s.protocol == "any"),
            service_field_sets,
        )

    def service_field_set(self, name: str) -> ServiceFieldSet:
        """`NAME` or `NAME-reverse` (ports swapped, ICMP requests become replies)."""
        field_set = self.service_field_sets.get(name)
        if field_set is not None:
            return field_set
        forward = self.service_field_sets[name.removesuffix(REVERSE_SUFFIX)]
        replies = ICMP_REPLY_TYPES.get(forward.protocol, {}) if forward.protocol is not None else {}
        field_set = self.service_field_sets[name] = ServiceFieldSet(
            name=name,
            protocol=forward.protocol,
            source_ports=forward.destination_ports,
            destination_ports=forward.source_ports,
            icmp_types=tuple(sorted({replies.get(t, t) for t in forward.icmp_types})),
            source_port_names=forward.destination_port_names,
            destination_port_names=forward.source_port_names,
        )
        return field_set


def _canonical(prefixes: tuple) -> tuple:
    """One family's prefixes in address order (a shorter prefix before a longer one at the
    same address), each once. A field-set is a set to EOS; this order is the one the seed's
    running-config shows (`10.100.99.50/32 10.100.99.51/32 10.100.99.52/32`), and it makes
    the output independent of the order the group was written in."""
    if len(prefixes) < 2:
        return prefixes
    # The networks' own order (address, then netmask) by a key, without their Python-level
    # comparisons and hashes (tens of thousands in a big policy); equal keys, equal networks.
    ordered = sorted(prefixes, key=_address_and_length)
    unique = [ordered[0]]
    last = _address_and_length(ordered[0])
    for prefix in ordered[1:]:
        key = _address_and_length(prefix)
        if key != last:
            unique.append(prefix)
            last = key
    return tuple(unique)


def _address_and_length(prefix: IPNetwork) -> tuple[int, int]:
    return int(prefix.network_address), prefix.prefixlen


def _split_families(prefixes: tuple) -> tuple[tuple, tuple]:
    """(IPv4 prefixes, IPv6 prefixes), in their order."""
    kinds = set(map(type, prefixes))
    if kinds == _IPV4_ONLY:
        return prefixes, ()
    if not kinds:
        return (), ()
    ipv4 = tuple(p for p in prefixes if type(p) is IPv4Network)
    return ipv4, tuple(p for p in prefixes if type(p) is not IPv4Network)


def _port_ranges(service: Service, specs: tuple, side: str) -> tuple[PortRange, ...]:
    """The service's `side` ports `specs` as merged ranges (empty = all). Plain numbers are
    merged here; names and ranges go through the model's own resolution."""
    if not specs:
        return ()
    if len(specs) == 1 and type(specs[0]) is int:
        return (PortRange(specs[0], specs[0]),)
    if all(type(spec) is int for spec in specs):
        return merge_ranges([PortRange(spec, spec) for spec in specs])
    return getattr(service, f"{side}_ranges")


def compile_all(policy_set: PolicySet) -> dict[str, DeviceIntent]:
    """Every device that belongs to a security domain, by name (sorted)."""
    with paused_garbage_collector():
        resolved = _Resolved.of(policy_set)
        return {name: _compile(resolved, name) for name in _domain_devices(policy_set)}


def compile_each(policy_set: PolicySet) -> tuple[dict[str, DeviceIntent], dict[str, str]]:
    """Every device that belongs to a security domain, each on its own: the intents of those
    that compile, and why each other one does not (both by name, sorted). A CompileError of
    the policy as a whole (not of one device) is still raised."""
    with paused_garbage_collector():
        resolved = _Resolved.of(policy_set)
        intents, errors = {}, {}
        for name in _domain_devices(policy_set):
            try:
                intents[name] = _compile(resolved, name)
            except CompileError as error:
                errors[name] = str(error)
        return intents, errors


def _domain_devices(policy_set: PolicySet) -> list[str]:
    """The devices of every security domain, sorted by name."""
    return sorted({d for domain in policy_set.domains for d in domain.devices})


def compile_device(policy_set: PolicySet, device_name: str) -> DeviceIntent:
    """The DeviceIntent of one device. CompileError if it cannot be compiled."""
    with paused_garbage_collector():
        return _compile(_Resolved.of(policy_set), device_name)


def _compile(resolved: _Resolved, device_name: str) -> DeviceIntent:
    policy_set = resolved.policy_set
    device = policy_set.get("devices", device_name)
    if device is None:
        known = ", ".join(sorted(d.name for d in policy_set.devices)) or "none"
        raise CompileError(f"device {device_name!r} is not defined (devices: {known})")
    domains = {d.name for d in policy_set.domains_of(device_name)}
    if not domains:
        raise CompileError(
            f"device {device_name!r} is in no security domain: add it to a domain's devices"
        )
    policies = [p for p in policy_set.policies if p.domain in domains]
    _check_one_policy_per_vrf(device_name, policies)
    builder = _DeviceBuilder(resolved, device_name)
    intents = tuple(builder.policy(policy) for policy in policies)
    return DeviceIntent(
        device=device_name,
        platform=device.platform,
        policies=intents,
        prefix_field_sets=dict(sorted(builder.prefix_field_sets.items())),
        service_field_sets=dict(sorted(builder.service_field_sets.items())),
        mirror_sessions=dict(sorted(builder.mirror_sessions.items())),
        vrf_interfaces=_vrf_interfaces(device),
    )


def _vrf_interfaces(device: Device) -> dict[str, tuple[str, ...]]:
    by_vrf: dict[str, list[str]] = {}
    for segment in device.segments:
        by_vrf.setdefault(segment.vrf, []).append(segment.name)
    return {vrf: tuple(names) for vrf, names in sorted(by_vrf.items())}


def _check_one_policy_per_vrf(device_name: str, policies: list[Policy]) -> None:
    # EOS binds one traffic policy per VRF (`traffic-policies / vrf V / traffic-policy input`).
    by_vrf: dict[str, str] = {}
    for policy in policies:
        other = by_vrf.setdefault(policy.vrf, policy.name)
        if other != policy.name:
            raise CompileError(
                f"policies {other!r} and {policy.name!r} both bind to VRF {policy.vrf!r} on "
                f"device {device_name!r}: EOS takes one traffic policy per VRF"
            )


class _DeviceBuilder:
    """Collects the field-sets and mirror sessions the device's matches use."""

    def __init__(self, resolved: _Resolved, device_name: str):
        self.resolved = resolved
        self.device = resolved.policy_set.device(device_name)
        self.prefix_field_sets: dict[tuple[Family, str], PrefixFieldSet] = {}
        self.service_field_sets: dict[str, ServiceFieldSet] = {}
        self.mirror_sessions: dict[str, MirrorSession] = {}

    def policy(self, policy: Policy) -> PolicyIntent:
        matches: list[Match] = []
        seen: dict[str, str] = {}
        rule_named = self.resolved.policy_set.rule
        rule_matches = self._rule_matches
        for rule_name in policy.rules:
            for match in rule_matches(rule_named(rule_name), policy):
                name = match.name
                if name in RESERVED_MATCH_NAMES:
                    raise CompileError(
                        f"rule {rule_name!r}: match name {name!r} is reserved by EOS"
                    )
                if name in seen:
                    raise CompileError(
                        f"policy {policy.name!r}: rules {seen[name]!r} and {rule_name!r} "
                        f"both produce match {name!r}; rename one of them"
                    )
                seen[name] = rule_name
                matches.append(match)
        return PolicyIntent(
            name=policy.name,
            policy_id=policy.id,
            description=policy.description,
            vrf=policy.vrf,
            matches=tuple(matches),
            default_action=policy.default_action,
            default_log=policy.default_log,
        )

    def _rule_matches(self, rule: Rule, policy: Policy) -> list[Match]:
        resolved = self.resolved
        services = rule.services
        if services and not resolved.any_services.isdisjoint(services):
            services = ()  # a service of protocol `any` makes the rule match any service
        families = self._families(rule, services)
        mirror_session = self._mirror_session(rule, rule.monitor, policy) if rule.monitor else None
        matches = []
        for family in families:
            if len(services) > 1:
                service_families = resolved.service_families
                family_services = tuple(s for s in services if family in service_families[s])
            else:
                # The rule's families are within its one service's families.
                family_services = services
            sources = self._prefix_sets(rule.sources, family)
            destinations = self._prefix_sets(rule.destinations, family)
            name = rule.name if family == "ipv4" else rule.name + IPV6_SUFFIX
            next_hops = self._next_hops(rule, family) if rule.action == "redirect" else ()
            matches.append(
                Match(
                    name,
                    rule.name,
                    False,
                    family,
                    rule.description,
                    sources,
                    destinations,
                    self._use_services(family_services),
                    rule.action,
                    next_hops,
                    mirror_session,
                    rule.decap_type,
                )
            )
            if rule.direction == "bidirectional" and not self._reverse_is_forward(
                sources, destinations, family_services
            ):
                reverse_services = tuple(s + REVERSE_SUFFIX for s in family_services)
                matches.append(
                    Match(
                        name + REVERSE_SUFFIX,
                        rule.name,
                        True,
                        family,
                        rule.description,
                        destinations,
                        sources,
                        self._use_services(reverse_services),
                        rule.action,
                        next_hops,
                        mirror_session,
                        rule.decap_type,
                    )
                )
        return matches

    def _reverse_is_forward(
        self, sources: tuple[str, ...], destinations: tuple[str, ...], services: tuple[str, ...]
    ) -> bool:
        """True when the `-reverse` match would match exactly the forward match's packets:
        the same groups on both sides and services whose reverse (ports swapped, ICMP
        requests turned into replies) is the same set of conditions. Emitting it would
        waste a hardware entry on a duplicate."""
        if set(sources) != set(destinations):
            return False
        resolved = self.resolved
        forward = {_conditions(resolved.service_field_set(s)) for s in services}
        reverse = {_conditions(resolved.service_field_set(s + REVERSE_SUFFIX)) for s in services}
        return forward == reverse

    def _families(self, rule: Rule, services: tuple[str, ...]) -> tuple[Family, ...]:
        """Address families the rule can match in; an error if its objects share none."""
        resolved = self.resolved
        group_families = resolved.group_families
        service_families = resolved.service_families
        families = _BOTH_FAMILIES
        for groups in (rule.sources, rule.destinations):
            if len(groups) == 1:
                families = families & group_families[groups[0]]
            elif groups:
                families = families & frozenset().union(*(group_families[g] for g in groups))
        groups_meet = bool(families)
        if len(services) == 1:
            families = families.intersection(service_families[services[0]])
        elif services:
            families = families & frozenset().union(*(service_families[s] for s in services))
        if groups_meet and not families:
            raise CompileError(
                f"rule {rule.name!r}: its groups and services share no address family "
                f"(groups: {_describe_families(resolved, rule)}; services: "
                + ", ".join(f"{s} {'/'.join(service_families[s])}" for s in services)
                + ")"
            )
        if not groups_meet and all(group_families[g] for g in (*rule.sources, *rule.destinations)):
            raise CompileError(
                f"rule {rule.name!r}: sources and destinations share no address family "
                f"({_describe_families(resolved, rule)})"
            )
        return _IN_ORDER[families]

    def _prefix_sets(self, groups: tuple[str, ...], family: Family) -> tuple[str, ...]:
        """The groups that have prefixes of `family` (their field-sets now in use)."""
        known = self.resolved.prefix_field_sets
        if len(groups) == 1:
            key = (family, groups[0])
            field_set = known.get(key)
            if field_set is None:
                return ()
            self.prefix_field_sets[key] = field_set
            return groups
        names = []
        for group in groups:
            key = (family, group)
            field_set = known.get(key)
            if field_set is not None:
                self.prefix_field_sets[key] = field_set
                names.append(group)
        return tuple(names)

    def _use_services(self, names: tuple[str, ...]) -> tuple[str, ...]:
        resolved = self.resolved
        known = resolved.service_field_sets
        for name in names:
            field_set = known.get(name)
            if field_set is None:
                field_set = resolved.service_field_set(name)
            self.service_field_sets[name] = field_set
        return names

    def _next_hops(self, rule: Rule, family: Family) -> tuple:
        if rule.action != "redirect" or rule.redirect is None:
            return ()
        redirect = self.resolved.policy_set.redirect_object(rule.redirect)
        next_hops = tuple(a for a in redirect.next_hops if a.version == _VERSION[family])
        if not next_hops:
            raise CompileError(
                f"rule {rule.name!r}: redirect object {redirect.name!r} has no {family} "
                f"next-hop, but the rule matches {family} traffic"
            )
        return next_hops

    def _mirror_session(self, rule: Rule, monitor_name: str, policy: Policy) -> str:
        """The monitor session monitored matches mirror to: `<monitor object>-<VRF>`,
        as the seed's `show traffic-policy` reports `Mirror session andreas-vztx-ALL`."""
        monitor = self.resolved.policy_set.monitor_object(monitor_name)
        if not monitor.monitor_nodes:
            raise CompileError(
                f"rule {rule.name!r}: monitor object {monitor.name!r} has no monitor node "
                "to mirror to (set its monitor_nodes)"
            )
        name = f"{monitor.name}-{policy.vrf}"
        self.mirror_sessions.setdefault(
            name,
            MirrorSession(
                name=name,
                monitor_object=monitor.name,
                tunnel_source_interface=monitor.tunnel_source_interface,
                tunnel_destination=monitor.tunnel_destination,
                rate_limit=monitor.rate_limit,
                tunnel_source=self.device.loopback_address,
                monitor_nodes=monitor.monitor_nodes,
            ),
        )
        return name


def _conditions(field_set: ServiceFieldSet) -> tuple:
    """What a service field-set matches, without its name."""
    return (
        field_set.protocol,
        field_set.source_ports,
        field_set.destination_ports,
        field_set.icmp_types,
    )


def _describe_families(resolved: _Resolved, rule: Rule) -> str:
    parts = []
    for group in dict.fromkeys((*rule.sources, *rule.destinations)):
        families = [f for f in FAMILIES if f in resolved.group_families[group]]
        parts.append(f"{group} {'/'.join(families) or 'empty'}")
    return ", ".join(parts) or "any"
