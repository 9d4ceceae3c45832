"""Switch bypass: drop, redirect and monitored rules covering traffic that stays on a host
bridge and never reaches the switch (the seed's "Ooops")."""

from __future__ import annotations

from microseg.compile.intent import DeviceIntent, Match
from microseg.evaluate.cells import field_set_intervals
from microseg.evaluate.lint.registry import Check, Finding, LintContext, register


@register
class Bypass(Check):
    """Drop, redirect and monitored rules whose traffic can stay inside one subnet of a
    segment that does not hairpin through the switch (hosts not isolated or no
    `ip local-proxy-arp`). Only the policy the segment's VRF meets counts, and a side counts
    when its field-sets (except-prefixes removed) hold an address of the subnet."""

    name = "bypass"
    summary = "drop/redirect/monitor rules for traffic that stays on a host bridge"

    def run(self, context: LintContext) -> list[Finding]:
        findings = []
        for device_name, intent in context.intents.items():
            device = context.policy_set.device(device_name)
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
                findings += [
                    Finding(
                        self.name,
                        f"rule '{rule_name}'",
                        f"rule {rule_name} ({bypassed[rule_name]}) covers traffic between "
                        f"hosts of segment {segment.name} on {device_name}, which stays on the "
                        "host bridge and never reaches the switch",
                        f"isolate the hosts of {segment.name} at L2 (bridge port isolation / "
                        "private VLAN) and configure `ip local-proxy-arp` on its SVI; then set "
                        "hosts_isolated and local_proxy_arp on the segment",
                        {"device": device_name, "segment": segment.name},
                    )
                    for rule_name in sorted(bypassed)
                ]
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
