"""Hardware entries: the estimated TCAM entries of each device's traffic policies against the
budget its target declares (a planning figure per platform, `targets/<platform>/target.py`)."""

from __future__ import annotations

from microseg.compile.intent import DeviceIntent, Family, Match
from microseg.evaluate.cells import ADDRESS_BITS, field_set_intervals
from microseg.evaluate.lint.registry import Check, Finding, LintContext, register
from microseg.model import PolicySet
from microseg.targets import registry


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


def _field_set_entries(intent: DeviceIntent, family: Family, name: str) -> int:
    """CIDR blocks of one prefix field-set once its except-prefixes are cut out."""
    # The same count as ipaddress.summarize_address_range, without building its networks.
    return sum(
        range_prefix_count(first, last, ADDRESS_BITS[family])
        for first, last in field_set_intervals(intent.prefix_field_sets[(family, name)])
    )


def _ports_entries(ranges) -> int:
    return sum(range_prefix_count(low, high) for low, high in ranges) or 1


def hardware_entries(intent: DeviceIntent) -> int:
    """Entries if every match is expanded: sources x destinations x service port entries, plus
    one default entry per family and policy. An upper bound: EOS compresses field-sets."""
    field_set_entries: dict[tuple[Family, str], int] = {}

    def side(match: Match, names: tuple[str, ...]) -> int:
        total = 0
        for name in names:
            key = (match.family, name)
            if key not in field_set_entries:
                field_set_entries[key] = _field_set_entries(intent, *key)
            total += field_set_entries[key]
        return max(total, 1)

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
                side(match, match.source_field_sets)
                * side(match, match.destination_field_sets)
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


@register
class Hardware(Check):
    """A device whose estimated hardware entries exceed its budget. Leaves the estimate
    per device in `context.hardware`."""

    name = "hardware"
    summary = "devices whose estimated hardware entries exceed their budget"

    def run(self, context: LintContext) -> list[Finding]:
        context.hardware = hardware_report(context.policy_set, context.intents)
        return [
            Finding(
                self.name,
                f"device '{row['device']}'",
                f"device {row['device']} needs about {row['entries']} hardware entries, over "
                f"its budget of {row['budget']}",
                "merge groups and services into fewer, wider prefixes and port ranges, or split "
                "the policy across VRFs / devices",
                {"entries": row["entries"], "budget": row["budget"]},
            )
            for row in context.hardware
            if row["budget"] is not None and row["entries"] > row["budget"]
        ]
