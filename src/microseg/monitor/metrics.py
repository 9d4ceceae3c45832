"""Prometheus exposition of the Policy Monitor's and the collector's figures.

A process that serves metrics (`monitor poll --metrics`, `collect --metrics`) has its own
registry, never prometheus_client's global one, holding one of the collectors below. Each
keeps a snapshot its owner replaces after every poll (or flush) on its own thread; a scrape,
on the HTTP server's thread, only reads the snapshot, so it never touches a device, the
store or the session table. Metric names and labels are documented in the README
("Prometheus metrics"); `METRICS` below is the list it shows.

Counters are the devices' own cumulative figures (what `nft -j list table` or
`show traffic-policy interface counters` said at the last poll): Prometheus' rate() turns
them into traffic and treats a redeploy, which recreates them from zero, as a counter reset.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from microseg.flows.collector import parse_listen
from microseg.model import MicrosegError
from microseg.monitor.poll import DevicePoll
from microseg.monitor.report import DeviceState, PolicyShare

RULE_LABELS = ["device", "policy", "rule", "action"]
# (device, policy, rule, action) -> packets, bytes (None: the device counts packets only)
RuleTotals = dict[tuple[str, str, str, str], tuple[int, int | None]]

# (stats key, metric name, counter or gauge, help): the collector's figures, as
# `collect --stats` and STORE/collector-stats-<id>.json name them.
COLLECTOR_FIGURES = (
    ("datagrams", "microseg_collector_datagrams", "counter", "Datagrams received."),
    ("records", "microseg_collector_records", "counter", "Flow records decoded."),
    ("decode_errors", "microseg_collector_decode_errors", "counter",
     "Datagrams dropped whole because they break the format."),
    ("unknown_template_sets", "microseg_collector_unknown_template_sets", "counter",
     "Data sets that arrived before their template."),
    ("template_evictions", "microseg_collector_template_evictions", "counter",
     "Templates dropped at the per-exporter or stream cap."),
    ("sessions_active", "microseg_collector_sessions_active", "gauge",
     "Sessions in the active table."),
    ("sessions_written", "microseg_collector_sessions_written", "counter",
     "Sessions written to the flow store."),
    ("segments_written", "microseg_collector_segments_written", "counter",
     "Flow store segments written (one per flush that had sessions to write)."),
    ("sessions_evicted", "microseg_collector_sessions_evicted", "counter",
     "Sessions written early because the table reached --max-sessions."),
    ("sessions_unwritten", "microseg_collector_sessions_unwritten", "gauge",
     "Sessions held in memory because the store refused them."),
    ("write_failures", "microseg_collector_write_failures", "counter",
     "Segment writes the store refused."),
    ("sessions_dropped", "microseg_collector_sessions_dropped", "counter",
     "Unwritten sessions dropped past --max-unwritten."),
    ("records_rejected", "microseg_collector_records_rejected", "counter",
     "Records of a batch that could not be merged."),
    ("batch_errors", "microseg_collector_batch_errors", "counter",
     "Batches of datagrams that failed and were dropped."),
    ("receive_queue_peak_bytes", "microseg_collector_receive_queue_peak_bytes", "gauge",
     "The most bytes of datagrams that waited, read, for the decoder (workers added)."),
    ("receive_queue_full", "microseg_collector_receive_queue_full", "counter",
     "Times reading paused because --receive-queue was full."),
)  # fmt: skip
EXPORTER_FIGURES = (
    ("datagrams", "microseg_collector_exporter_datagrams", "Datagrams from the exporter."),
    ("records", "microseg_collector_exporter_records", "Flow records from the exporter."),
    ("sequence_gaps", "microseg_collector_exporter_sequence_gaps",
     "Sequence number jumps in the exporter's stream."),
    ("lost_records", "microseg_collector_exporter_lost_records",
     "Records the IPFIX sequence numbers say were lost."),
    ("lost_datagrams", "microseg_collector_exporter_lost_datagrams",
     "Export packets the NetFlow v9 sequence numbers say were lost."),
)  # fmt: skip


@dataclass(frozen=True)
class _MonitorSnapshot:
    rules: RuleTotals
    shares: tuple[PolicyShare, ...]
    states: tuple[DeviceState, ...]
    polled_at: dict[str, float]  # device -> epoch seconds of its last stored counters


class MonitorMetrics(Collector):
    """The poller's figures as of its last poll."""

    def __init__(self) -> None:
        self._snapshot = _MonitorSnapshot({}, (), (), {})
        self._device_rules: dict[str, RuleTotals] = {}

    def update(
        self, polls: list[DevicePoll], states: list[DeviceState], shares: list[PolicyShare]
    ) -> None:
        """After a poll: a device that answered replaces its rule counters; one that did not
        keeps its last ones (its counters age says how old they are)."""
        for device_poll in polls:
            if device_poll.error is None:
                self._device_rules[device_poll.device] = _rule_totals(device_poll)
        deployed = {state.device for state in states}
        rules = {
            key: value
            for device, totals in sorted(self._device_rules.items())
            if device in deployed
            for key, value in totals.items()
        }
        polled_at = {
            state.device: _epoch(state.counters_polled_at)
            for state in states
            if state.counters_polled_at is not None
        }
        self._snapshot = _MonitorSnapshot(rules, tuple(shares), tuple(states), polled_at)

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot
        packets = CounterMetricFamily(
            "microseg_rule_packets", "Packets the rule's matches counted.", labels=RULE_LABELS
        )
        bytes_ = CounterMetricFamily(
            "microseg_rule_bytes", "Bytes the rule's matches counted.", labels=RULE_LABELS
        )
        for key, (rule_packets, rule_bytes) in sorted(snapshot.rules.items()):
            packets.add_metric(list(key), rule_packets)
            if rule_bytes is not None:
                bytes_.add_metric(list(key), rule_bytes)
        yield packets
        yield bytes_
        share = GaugeMetricFamily(
            "microseg_policy_default_match_share",
            "Share of the policy's packets in the last 24 h that only the default match "
            "counted (absent when its devices do not count the default match).",
            labels=["policy"],
        )
        for policy in snapshot.shares:
            if policy.default_share is not None:
                share.add_metric([policy.policy], policy.default_share)
        yield share
        yield from _device_metrics(snapshot, time.time())


def _rule_totals(device_poll: DevicePoll) -> RuleTotals:
    """Per rule (its match and `-reverse` match summed): packets, bytes (None when the
    device counts packets only)."""
    totals: RuleTotals = {}
    for row in device_poll.counters:
        key = (row.device, row.policy, row.rule, row.action)
        packets, bytes_ = totals.get(key, (0, 0))
        totals[key] = (
            packets + row.packets,
            None if bytes_ is None or row.bytes is None else bytes_ + row.bytes,
        )
    return totals


def _device_metrics(snapshot: _MonitorSnapshot, now: float) -> Iterator[Metric]:
    families = {
        "reachable": GaugeMetricFamily(
            "microseg_device_reachable",
            "1 when the device answered the last read of its configuration.",
            labels=["device"],
        ),
        "drift": GaugeMetricFamily(
            "microseg_device_drift",
            "1 when the device runs something else than the head revision "
            "(absent when it could not be read).",
            labels=["device"],
        ),
        "entries": GaugeMetricFamily(
            "microseg_device_hardware_entries",
            "Hardware entries (TCAM) the deployed intent needs.",
            labels=["device"],
        ),
        "budget": GaugeMetricFamily(
            "microseg_device_hardware_budget",
            "The target's hardware entry budget for the device (absent: none).",
            labels=["device"],
        ),
        "change": GaugeMetricFamily(
            "microseg_device_last_change",
            "The change that last deployed the device.",
            labels=["device"],
        ),
        "age": GaugeMetricFamily(
            "microseg_device_counters_age_seconds",
            "Seconds since the device's counters were last stored (absent: never).",
            labels=["device"],
        ),
    }
    for state in snapshot.states:
        label = [state.device]
        families["reachable"].add_metric(label, int(state.reachable))
        if state.drift is not None:
            families["drift"].add_metric(label, int(state.drift))
        families["entries"].add_metric(label, state.hardware_entries)
        if state.hardware_budget is not None:
            families["budget"].add_metric(label, state.hardware_budget)
        families["change"].add_metric(label, state.last_change)
        if state.device in snapshot.polled_at:
            families["age"].add_metric(
                label, round(max(0.0, now - snapshot.polled_at[state.device]), 3)
            )
    yield from families.values()


class CollectorMetrics(Collector):
    """The flow collector's figures as of its last flush (`FlowCollector.stats()`)."""

    def __init__(self, stats: dict | None = None) -> None:
        self._stats: dict = stats or {}

    def update(self, stats: dict) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        for key, name, kind, text in COLLECTOR_FIGURES:
            family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = family_type(name, text, labels=[])
            family.add_metric([], stats.get(key, 0))
            yield family
        exporters = stats.get("exporters", {})
        for key, name, text in EXPORTER_FIGURES:
            family = CounterMetricFamily(name, text, labels=["exporter"])
            for exporter, counters in sorted(exporters.items()):
                family.add_metric([exporter], counters.get(key, 0))
            yield family


def metric_names(collector: Collector) -> list[str]:
    """The sample names a collector exposes (for the README's table and its test)."""
    return [metric.name for metric in collector.collect()]


def parse_metrics_address(text: str) -> tuple[str, int]:
    """`--metrics PORT` or `:PORT` (loopback), `HOST:PORT`, `[IPV6]:PORT`: a scrape
    endpoint is never opened to the network unless its address says so."""
    if text.isascii() and text.isdigit():
        text = f":{text}"
    if text.startswith(":"):
        text = f"127.0.0.1{text}"
    return parse_listen(text, "--metrics", "127.0.0.1:9464")


class MetricsServer:
    """An HTTP server for one registry on its own thread; `address` is where it listens."""

    def __init__(self, collectors: Iterable[Collector], host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in collectors:
            self.registry.register(collector)
        try:
            self._server, self._thread = start_http_server(port, host, self.registry)
        except OSError as error:
            raise MicrosegError(
                f"--metrics: cannot listen on {host}:{port}: {error.strerror or error}"
            ) from None
        bound = self._server.server_address
        self.address = (str(bound[0]), int(bound[1]))
        self._closed = False

    @property
    def url(self) -> str:
        host = self.address[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.address[1]}/metrics"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
