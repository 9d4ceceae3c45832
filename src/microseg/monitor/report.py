"""What the counter series says: per rule hits in a window, and per device state."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from microseg.deploy.drift import drift
from microseg.evaluate.lint import hardware_entries
from microseg.monitor.poll import DEFAULT_MATCHES, Revisions, deployed_devices
from microseg.monitor.series import CounterSeries
from microseg.store import Store
from microseg.targets import registry

NO_HIT = "no hit in window"
# A drop rule without hits may be the one keeping traffic out: never offered as harmless.
NO_HIT_DROP = "no hit in window (a drop rule: removing it may widen access)"


@dataclass(frozen=True)
class RuleHits:
    policy: str
    rule: str
    action: str
    packets: int
    bytes: int
    last_hit: str | None  # ISO UTC
    note: str  # NO_HIT / NO_HIT_DROP, or ''

    @property
    def default(self) -> bool:
        return self.rule in DEFAULT_MATCHES


@dataclass(frozen=True)
class PolicyShare:
    policy: str
    packets: int
    default_packets: int | None  # None: no device of this policy counts its default match

    @property
    def default_share(self) -> float | None:
        if self.default_packets is None or self.packets == 0:
            return None
        return round(self.default_packets / self.packets, 4)


def rule_hits(series: CounterSeries, since: datetime) -> tuple[list[RuleHits], list[PolicyShare]]:
    """Per policy and rule (summed over devices), what was counted since `since`."""
    rows = series.query(
        """
        SELECT policy, rule, action, sum(packets_delta), sum(bytes_delta),
            max(CASE WHEN packets_delta > 0 THEN time END)
        FROM samples WHERE time >= ?
        GROUP BY policy, rule, action ORDER BY policy, rule, action
        """,
        [since],
    )
    hits = []
    for policy, rule, action, packets, bytes_, last in rows:
        note = ""
        if packets == 0:
            note = NO_HIT_DROP if action == "drop" else NO_HIT
        hits.append(RuleHits(policy, rule, action, int(packets), int(bytes_), _iso(last), note))
    shares = []
    for policy in sorted({hit.policy for hit in hits}):
        mine = [hit for hit in hits if hit.policy == policy]
        defaults = [hit.packets for hit in mine if hit.default]
        shares.append(
            PolicyShare(policy, sum(h.packets for h in mine), sum(defaults) if defaults else None)
        )
    return hits, shares


def rules_json(hits: list[RuleHits], shares: list[PolicyShare], since: datetime) -> dict[str, Any]:
    return {
        "since": _iso(since),
        "rules": [{**asdict(hit), "default": hit.default} for hit in hits],
        "policies": [{**asdict(share), "default_share": share.default_share} for share in shares],
    }


@dataclass(frozen=True)
class DeviceState:
    device: str
    reachable: bool
    error: str | None
    last_change: int
    deployed_at: str | None
    drift: bool | None  # None: could not be read
    hardware_entries: int
    hardware_budget: int | None
    budget_source: str
    counters_polled_at: str | None  # ISO UTC: the last poll that stored its counters
    counters_age_s: float | None  # seconds from then to `now`


def device_states(
    store: Store,
    series: CounterSeries,
    now: datetime | None = None,
    revisions: Revisions | None = None,
) -> list[DeviceState]:
    """Every deployed device: reachable (the drift read answered), last deploy, drift,
    hardware entries of what it runs vs its target's budget, age of its counters."""
    now = now or datetime.now(UTC)
    _, reports = drift(store)
    by_device = {report.device: report for report in reports}
    last_poll = dict(series.query("SELECT device, max(time) FROM samples GROUP BY device"))
    states = []
    revisions = revisions or Revisions()
    for device in deployed_devices(store, revisions):
        policy_set = revisions.policy(store, device.revision)
        intent = revisions.intents(store, device.revision).get(device.device)
        model = policy_set.get("devices", device.device) or policy_set.get(
            "monitor_nodes", device.device
        )
        budget = registry.for_device(model).limits.hardware_budget(getattr(model, "hardware", None))
        report = by_device.get(device.device)
        error = report.error if report else None
        polled = last_poll.get(device.device)
        states.append(
            DeviceState(
                device.device,
                report is not None and error is None,
                error,
                device.change,
                _iso(device.deployed_at),
                None if report is None or error else not report.in_sync,
                hardware_entries(intent) if intent else 0,
                budget.entries,
                budget.source,
                _iso(polled),
                None if polled is None else round((now - polled).total_seconds(), 1),
            )
        )
    return states


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
