"""The obvious evaluator: one packet at a time, one match at a time, straight from the intent.

It is the baseline of `bench/evaluate.py` and the oracle the vectorised engine is tested
against; it shares no code with the engine beyond the DeviceIntent it reads.
"""

from __future__ import annotations

import ipaddress

from microseg.compile.intent import DeviceIntent, Match, ServiceFieldSet
from microseg.model.ports import ICMP_BY_IP_VERSION, PORT_PROTOCOLS


def evaluate_one(
    intent: DeviceIntent,
    vrf: str,
    protocol: int,
    src: str,
    dst: str,
    sport: int,
    dport: int,
    icmp_type: int | None,
) -> tuple[str, str | None, str | None]:
    """(verdict, policy name or None, match name or the default match name or None)."""
    source = ipaddress.ip_address(src)
    destination = ipaddress.ip_address(dst)
    policy = intent.policy_for_vrf(vrf)
    if policy is None:
        return "forward", None, None
    family = f"ipv{source.version}"
    if protocol not in PORT_PROTOCOLS:
        sport = dport = 0
    if protocol != ICMP_BY_IP_VERSION[source.version]:
        icmp_type = None
    for match in policy.matches:
        if match.family != family:
            continue
        if not _side(intent, match, match.source_field_sets, source):
            continue
        if not _side(intent, match, match.destination_field_sets, destination):
            continue
        services = [intent.service_field_sets[name] for name in match.service_field_sets]
        if services and not any(
            _service(service, protocol, sport, dport, icmp_type) for service in services
        ):
            continue
        return match.action, policy.name, match.name
    return policy.default_action, policy.name, f"{family}-all-default"


def _side(intent: DeviceIntent, match: Match, names: tuple[str, ...], address) -> bool:
    if not names:
        return True
    for name in names:
        field_set = intent.prefix_field_sets[(match.family, name)]
        if any(address in prefix for prefix in field_set.prefixes) and not any(
            address in prefix for prefix in field_set.except_prefixes
        ):
            return True
    return False


def _service(
    service: ServiceFieldSet, protocol: int, sport: int, dport: int, icmp_type: int | None
) -> bool:
    if service.protocol is not None and service.protocol != protocol:
        return False
    if service.source_ports and not any(low <= sport <= high for low, high in service.source_ports):
        return False
    if service.destination_ports and not any(
        low <= dport <= high for low, high in service.destination_ports
    ):
        return False
    return not service.icmp_types or icmp_type in service.icmp_types
