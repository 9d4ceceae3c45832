"""The whole policy: every object, with referential integrity checked at once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from functools import cached_property
from types import SimpleNamespace
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from microseg.model.errors import PolicyError, Problem, singular
from microseg.model.objects import (
    Category,
    Device,
    Group,
    MonitorNode,
    MonitorObject,
    Policy,
    PolicyObject,
    RedirectObject,
    Rule,
    SecurityDomain,
    Service,
)
from microseg.model.sections import SECTION_NAMES

# Section name -> object type, in the order sections are written to a policy file.
SECTIONS: dict[str, type[PolicyObject]] = dict(
    zip(
        SECTION_NAMES,
        (
            Device,
            MonitorNode,
            SecurityDomain,
            Category,
            Group,
            Service,
            MonitorObject,
            RedirectObject,
            Rule,
            Policy,
        ),
        strict=True,
    )
)

# (section, field) -> section the field's names refer to.
REFERENCES: dict[tuple[str, str], str] = {
    ("domains", "devices"): "devices",
    ("groups", "categories"): "categories",
    ("monitor_objects", "monitor_nodes"): "monitor_nodes",
    ("rules", "sources"): "groups",
    ("rules", "destinations"): "groups",
    ("rules", "services"): "services",
    ("rules", "redirect"): "redirect_objects",
    ("rules", "monitor"): "monitor_objects",
    ("policies", "domain"): "domains",
    ("policies", "rules"): "rules",
}


class PolicySet(BaseModel):
    """Every object of a policy. Construction fails with a PolicyError listing each problem.

    Example: PolicySet(groups=[Group(name="web", prefixes=["10.0.0.0/24"])])
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    devices: tuple[Device, ...] = ()
    monitor_nodes: tuple[MonitorNode, ...] = ()
    domains: tuple[SecurityDomain, ...] = ()
    categories: tuple[Category, ...] = ()
    groups: tuple[Group, ...] = ()
    services: tuple[Service, ...] = ()
    monitor_objects: tuple[MonitorObject, ...] = ()
    redirect_objects: tuple[RedirectObject, ...] = ()
    rules: tuple[Rule, ...] = ()
    policies: tuple[Policy, ...] = ()

    @model_validator(mode="after")
    def _referential_integrity(self) -> PolicySet:
        problems = reference_problems(self)
        if problems:
            raise PolicyError(problems)
        return self

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> PolicySet:
        """A copy whose name index is rebuilt (the cached one would point at the old objects)."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("_index", None)
        return copy

    # Lookups by name: policy.group("web01_web02")
    @cached_property
    def _index(self) -> dict[str, dict[str, Any]]:
        return {section: {o.name: o for o in getattr(self, section)} for section in SECTIONS}

    def get(self, section: str, name: str) -> Any:
        return self._index[section].get(name)

    def device(self, name: str) -> Device:
        return self._index["devices"][name]

    def group(self, name: str) -> Group:
        return self._index["groups"][name]

    def service(self, name: str) -> Service:
        return self._index["services"][name]

    def rule(self, name: str) -> Rule:
        return self._index["rules"][name]

    def policy(self, name: str) -> Policy:
        return self._index["policies"][name]

    def domain(self, name: str) -> SecurityDomain:
        return self._index["domains"][name]

    def monitor_object(self, name: str) -> MonitorObject:
        return self._index["monitor_objects"][name]

    def monitor_node(self, name: str) -> MonitorNode:
        return self._index["monitor_nodes"][name]

    def redirect_object(self, name: str) -> RedirectObject:
        return self._index["redirect_objects"][name]

    def domains_of(self, device: str) -> tuple[SecurityDomain, ...]:
        return tuple(d for d in self.domains if device in d.devices)

    def objects(self) -> list[tuple[str, PolicyObject]]:
        """Every object as (section, object), sections in file order."""
        return [(section, obj) for section in SECTIONS for obj in getattr(self, section)]


def reference_problems(
    policy_set: PolicySet, unvalidated: dict[str, list[Any]] | None = None
) -> list[Problem]:
    """Duplicate names, dangling references and inconsistent bindings, all of them.

    `unvalidated` holds objects that failed their own validation (anything with a `name` and
    the reference fields): their names count as defined, and their references are checked
    too, so one pass reports every problem."""
    unvalidated = unvalidated or {}
    problems: list[Problem] = []
    names: dict[str, set[str]] = {}
    for section in SECTIONS:
        objects = getattr(policy_set, section)
        names[section] = {o.name for o in objects} | {o.name for o in unvalidated.get(section, ())}
        counts = Counter(o.name for o in objects)
        for name, count in sorted(counts.items()):
            if count > 1:
                problems.append(
                    Problem(f"duplicate name: defined {count} times", (section, name, "name"))
                )
    for (section, field), target in REFERENCES.items():
        for obj in (*getattr(policy_set, section), *unvalidated.get(section, ())):
            value = getattr(obj, field)
            refs = (value,) if isinstance(value, str) else value or ()
            for index, ref in enumerate(refs):
                if ref not in names[target]:
                    path = (section, obj.name, field) + (
                        (index,) if not isinstance(value, str) else ()
                    )
                    problems.append(Problem(f"unknown {singular(target)} {ref!r}", path))
    problems.extend(_binding_problems(policy_set))
    return problems


def _binding_problems(policy_set: PolicySet) -> list[Problem]:
    problems: list[Problem] = (
        _segment_problems(policy_set)
        + _monitor_tunnel_problems(policy_set)
        + _repeated_rule_problems(policy_set)
    )
    domains = {d.name: d for d in policy_set.domains}
    for policy in policy_set.policies:
        domain = domains.get(policy.domain)
        if domain and policy.vrf != "ALL" and policy.vrf not in domain.vrfs:
            problems.append(
                Problem(
                    f"VRF {policy.vrf!r} is not in domain {domain.name!r} "
                    f"(its VRFs: {', '.join(domain.vrfs)}; or use ALL)",
                    ("policies", policy.name, "vrf"),
                )
            )
    ids = Counter(p.id for p in policy_set.policies)
    for policy in policy_set.policies:
        if ids[policy.id] > 1:
            problems.append(
                Problem(
                    f"policy id {policy.id} is used by another policy",
                    ("policies", policy.name, "id"),
                )
            )
    return problems


def _repeated_rule_problems(policy_set: PolicySet) -> list[Problem]:
    """A policy lists each rule once: a second listing could never match (first match wins)
    and would give the switch two matches of one name."""
    problems: list[Problem] = []
    for policy in policy_set.policies:
        first: dict[str, int] = {}
        for index, rule in enumerate(policy.rules):
            earlier = first.setdefault(rule, index)
            if earlier != index:
                problems.append(
                    Problem(
                        f"rule {rule!r} is listed twice (also rules.{earlier}): a policy lists "
                        "each rule once",
                        ("policies", policy.name, "rules", index),
                    )
                )
    return problems


def _monitor_tunnel_problems(policy_set: PolicySet) -> list[Problem]:
    """Two switches given the same monitor tunnel number would share one TunnelN."""
    problems: list[Problem] = []
    taken: dict[int, str] = {}
    for device in policy_set.devices:
        number = device.monitor_tunnel
        if number is None:
            continue
        other = taken.setdefault(number, device.name)
        if other != device.name:
            problems.append(
                Problem(
                    f"monitor tunnel {number} is also device {other!r}'s",
                    ("devices", device.name, "monitor_tunnel"),
                )
            )
    return problems


def _segment_problems(policy_set: PolicySet) -> list[Problem]:
    """A device's segments each have their own name and VLAN (one SVI per VLAN)."""
    problems: list[Problem] = []
    for device in policy_set.devices:
        names: dict[str, int] = {}
        vlans: dict[int, str] = {}
        for index, segment in enumerate(device.segments):
            path = ("devices", device.name, "segments", index)
            if segment.name in names:
                problems.append(
                    Problem(f"segment name {segment.name!r} is given twice", (*path, "name"))
                )
            names.setdefault(segment.name, index)
            if segment.vlan is not None and segment.vlan in vlans:
                other = vlans[segment.vlan]
                message = f"VLAN {segment.vlan} is also segment {other!r}"
                problems.append(Problem(message, (*path, "vlan")))
            if segment.vlan is not None:
                vlans.setdefault(segment.vlan, segment.name)
    return problems


def references_of(section: str, name: str, data: Any) -> SimpleNamespace:
    """The name and reference fields of an object that failed its own validation, as far as
    they are names: enough for `reference_problems(unvalidated=...)`."""
    fields: dict[str, Any] = {}
    for ref_section, ref_field in REFERENCES:
        if ref_section != section:
            continue
        value = data.get(ref_field) if hasattr(data, "get") else None
        if isinstance(value, list | tuple):
            value = tuple(v for v in value if isinstance(v, str))
        elif value == "any" or not isinstance(value, str):
            value = () if ref_field.endswith("s") else None
        fields[ref_field] = value
    return SimpleNamespace(name=name, **fields)
