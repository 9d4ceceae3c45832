"""Policy Monitor: per-match counters polled through drivers, stored as a time series next
to the flow store, per-rule hits and unused rules, device state, Prometheus figures.

    with open_store() as store:
        poll(store, CounterSeries(default_store_dir()))
        hits, shares = rule_hits(CounterSeries(default_store_dir()), since)
"""

from microseg.monitor.poll import (
    DEFAULT_MATCHES,
    Deployed,
    DevicePoll,
    Revisions,
    deployed_devices,
    poll,
)
from microseg.monitor.report import DeviceState, RuleHits, device_states, rule_hits
from microseg.monitor.series import CounterRow, CounterSeries

__all__ = [
    "DEFAULT_MATCHES",
    "CounterRow",
    "CounterSeries",
    "Deployed",
    "DevicePoll",
    "DeviceState",
    "Revisions",
    "RuleHits",
    "deployed_devices",
    "device_states",
    "poll",
    "rule_hits",
]
