"""DeviceIntent: a policy resolved for one device, target-neutral, typed and immutable.

Every renderer (EOS, nftables), the evaluator and the linter read this one structure, so
what we check is exactly what we ship. It holds no layout: names, prefixes, ports, order.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, TypeVar

from microseg.model.objects import DecapType, IPAddress, IPNetwork, PortRange

Family = Literal["ipv4", "ipv6"]
Verdict = Literal["forward", "drop", "redirect"]

_Record = TypeVar("_Record")


def _slot_init(cls: type[_Record]) -> type[_Record]:
    """Give a frozen, slotted dataclass an __init__ that stores each field straight into
    its slot.

    The __init__ dataclasses generates for a frozen class goes through
    object.__setattr__ once per field, and creating matches and field-sets is a large part
    of compiling a large policy. This one has the same parameters and defaults and makes
    the same instance, about twice as fast; the class stays frozen (assignment still
    raises FrozenInstanceError). Slots also keep the hundreds of thousands of records of a
    large policy small (no per-instance dict)."""
    parameters, lines, namespace = [], [], {}
    for record_field in fields(cls):  # type: ignore[arg-type]
        name = record_field.name
        if record_field.default_factory is not MISSING or not record_field.init:
            raise TypeError(f"{cls.__name__}.{name}: plain fields only")
        if record_field.default is MISSING:
            parameters.append(name)
        else:
            namespace[f"_default_{name}"] = record_field.default
            parameters.append(f"{name}=_default_{name}")
        namespace[f"_set_{name}"] = cls.__dict__[name].__set__  # the slot's own setter
        lines.append(f"    _set_{name}(self, {name})\n")
    source = f"def __init__(self, {', '.join(parameters)}):\n" + "".join(lines)
    exec(source, namespace)  # as dataclasses itself builds __init__
    init: Any = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[misc]
    return cls


@_slot_init
@dataclass(frozen=True, slots=True)
class PrefixFieldSet:
    """`field-set ipv4 prefix NAME`: one group's prefixes of one address family."""

    name: str
    family: Family
    prefixes: tuple[IPNetwork, ...]
    except_prefixes: tuple[IPNetwork, ...] = ()


@_slot_init
@dataclass(frozen=True, slots=True)
class ServiceFieldSet:
    """`field-set service NAME`: protocol plus source/destination ports (empty = all).

    The `-reverse` field-set of a bidirectional rule has the ports swapped."""

    name: str
    protocol: int | None  # IP protocol number; None = any protocol
    source_ports: tuple[PortRange, ...] = ()
    destination_ports: tuple[PortRange, ...] = ()
    icmp_types: tuple[int, ...] = ()  # empty = every type
    # The ports as the policy wrote them (`domain`, 53), for renderers that print names.
    source_port_names: tuple[int | str, ...] = ()
    destination_port_names: tuple[int | str, ...] = ()


@dataclass(frozen=True)
class MirrorSession:
    """Where a monitored match mirrors to (GRE to the monitor node)."""

    name: str  # EOS monitor session name, e.g. `andreas-vztx-ALL`
    monitor_object: str
    tunnel_source_interface: str
    tunnel_destination: IPAddress
    rate_limit: int
    # The address of `tunnel_source_interface` on this device (its Loopback0): EOS takes an
    # address, not an interface, in `destination tunnel mode gre source A destination B`.
    tunnel_source: IPAddress | None = None
    monitor_nodes: tuple[str, ...] = ()


@_slot_init
@dataclass(frozen=True, slots=True)
class Match:
    """One ordered match of a traffic policy. `reverse` matches carry `-reverse` names."""

    name: str  # `allow_all_DNS` or `allow_all_DNS-reverse`
    rule: str  # the rule it comes from
    reverse: bool
    family: Family
    comment: str  # the rule description, rendered as `!! comment`
    source_field_sets: tuple[str, ...] = ()  # empty = any source
    destination_field_sets: tuple[str, ...] = ()  # empty = any destination
    service_field_sets: tuple[str, ...] = ()  # empty = any service
    action: Verdict = "forward"
    redirect_next_hops: tuple[IPAddress, ...] = ()
    mirror_session: str | None = None
    decap_type: DecapType = "allow-all"


@dataclass(frozen=True)
class PolicyIntent:
    """One traffic policy bound on a device to a VRF (`ALL` = every VRF)."""

    name: str
    policy_id: int
    description: str
    vrf: str
    matches: tuple[Match, ...]


@dataclass(frozen=True)
class DeviceIntent:
    """Everything one device enforces, resolved from the PolicySet."""

    device: str
    platform: Literal["eos", "nftables"]
    policies: tuple[PolicyIntent, ...]
    prefix_field_sets: dict[tuple[Family, str], PrefixFieldSet] = field(default_factory=dict)
    service_field_sets: dict[str, ServiceFieldSet] = field(default_factory=dict)
    mirror_sessions: dict[str, MirrorSession] = field(default_factory=dict)
    # VRF -> the device's segments (interfaces) in it, for targets that see interfaces
    # rather than VRFs (nftables keys a packet's VRF on its ingress interface).
    vrf_interfaces: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def policy_for_vrf(self, vrf: str) -> PolicyIntent | None:
        """The policy a packet in `vrf` meets: a VRF's own binding wins over `ALL`."""
        own = [p for p in self.policies if p.vrf == vrf]
        if own:
            return own[0]
        return next((p for p in self.policies if p.vrf == "ALL"), None)
