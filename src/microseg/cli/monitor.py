"""Policy Monitor commands: monitor poll|rules|devices (issue 12)."""

from __future__ import annotations

import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from microseg.cli.app import OPERATE, app
from microseg.cli.common import (
    JSON_OPTION_HELP,
    TIME_HELP,
    emit_json,
    err_console,
    print_table,
)

if TYPE_CHECKING:
    from microseg.monitor import CounterSeries, DevicePoll, DeviceState
    from microseg.monitor.metrics import MonitorMetrics

monitor_app = typer.Typer(
    help="Policy Monitor: per-rule hit counters from deployed devices, device state.",
    no_args_is_help=True,
)
app.add_typer(monitor_app, name="monitor", rich_help_panel=OPERATE)

STORE_HELP = "Flow store directory; counters go to its counters/ (default: $MICROSEG_FLOW_STORE)."


def _series(store: Path | None, reading: bool = True) -> CounterSeries:
    """The counters of the flow store `store`; a store named for reading must exist, and one
    named for polling may be made yet, but a file or another directory is a mistake."""
    from microseg.flows.flowstore import default_store_dir, store_to_read
    from microseg.monitor import CounterSeries

    if reading or (store is not None and store.exists()):
        return CounterSeries(store_to_read(store))
    return CounterSeries(store or default_store_dir())


@monitor_app.command("poll")
def monitor_poll(
    interval: float = typer.Option(
        60.0, "--interval", min=1.0, max=86400.0, help="Seconds between polls (1 to 86400)."
    ),
    once: bool = typer.Option(False, "--once", help="Poll once and exit."),
    timeout: float = typer.Option(
        30.0, "--timeout", min=0.1, max=3600.0, help="Seconds per device request (up to 3600)."
    ),
    store: Path | None = typer.Option(None, "--store", help=STORE_HELP),
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        help="Serve Prometheus metrics on [HOST:]PORT (default host 127.0.0.1), e.g. 9464.",
    ),
) -> None:
    """Read per-match counters of every deployed device and store them (a time series).

    Example: microseg monitor poll --interval 60 --metrics 127.0.0.1:9464
    """
    from microseg.monitor import Revisions, device_states, poll
    from microseg.store import open_store

    series = _series(store, reading=False).open()  # a poll makes the store
    revisions = Revisions()  # loaded and compiled once for all polls
    with ExitStack() as stack:
        exposition = _serve_metrics(metrics, stack) if metrics is not None else None
        while True:
            with open_store() as database:
                outcomes = poll(database, series, timeout, revisions)
                if exposition is not None:
                    states = device_states(database, series, revisions=revisions)
                    _update_metrics(exposition, states, series, outcomes)
            _report_poll(outcomes)
            if once:
                if any(outcome.error for outcome in outcomes):
                    raise typer.Exit(1)
                return
            time.sleep(interval)


def _serve_metrics(address: str, stack: ExitStack) -> MonitorMetrics:
    """The poller's Prometheus endpoint, closed with `stack`."""
    from microseg.monitor.metrics import MetricsServer, MonitorMetrics, parse_metrics_address

    host, port = parse_metrics_address(address)
    exposition = MonitorMetrics()
    server = stack.enter_context(MetricsServer([exposition], host, port))
    err_console.print(f"metrics on {server.url}", markup=False)
    return exposition


def _update_metrics(
    exposition: MonitorMetrics,
    states: list[DeviceState],
    series: CounterSeries,
    outcomes: list[DevicePoll],
) -> None:
    """Device state and the default match's share (last 24 h, as `monitor rules`) next to
    the counters just read."""
    from microseg.monitor import rule_hits

    _, shares = rule_hits(series, datetime.now(UTC) - timedelta(hours=24))
    exposition.update(outcomes, states, shares)


def _report_poll(outcomes: list[DevicePoll]) -> None:
    for outcome in outcomes:
        if outcome.error:
            err_console.print(f"{outcome.device}: not polled: {outcome.error}", markup=False)
        else:
            typer.echo(f"{outcome.device}: {outcome.matches} counters (change {outcome.change})")
    if not outcomes:
        err_console.print("no deployed device to poll (microseg change run first)")


@monitor_app.command("rules")
def monitor_rules(
    since: str = typer.Option("24h", "--since", help=f"Start of the window: {TIME_HELP}."),
    store: Path | None = typer.Option(None, "--store", help=STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Per policy and rule: packets and bytes in the window, last hit, rules with no hit,
    and the share of traffic only the default match counted.

    Example: microseg monitor rules --since 24h
    """
    from microseg.builder.times import parse_moment
    from microseg.monitor import rule_hits
    from microseg.monitor.report import rules_json

    start = parse_moment(since, "--since", datetime.now(UTC))
    hits, shares = rule_hits(_series(store), start)
    if as_json:
        emit_json(rules_json(hits, shares, start))
        return
    rows = [
        [h.policy, h.rule, h.action, str(h.packets), str(h.bytes), h.last_hit or "-", h.note]
        for h in hits
    ]
    print_table(["policy", "rule", "action", "packets", "bytes", "last hit (UTC)", ""], rows)
    for share in shares:
        if share.default_share is not None:
            figure = f"{share.default_share:.1%} of {share.packets} packets"
        elif share.default_packets is None:
            figure = "not counted by its devices"
        else:
            figure = "no packets in window"
        typer.echo(f"{share.policy}: default match share {figure}")


@monitor_app.command("devices")
def monitor_devices(
    store: Path | None = typer.Option(None, "--store", help=STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Per deployed device: reachable, last deploy and its change, drift, hardware entries
    vs the target's budget, counters age.

    Example: microseg monitor devices
    """
    from dataclasses import asdict

    from microseg.monitor import device_states
    from microseg.store import open_store

    with open_store(create=False) as database:
        # Reachability, deploys and drift come from the devices: a store not polled yet
        # (or not made yet) only means "counters never polled".
        states = device_states(database, _series(store, reading=False))
    if as_json:
        emit_json([asdict(state) for state in states])
        return
    rows = [
        [
            s.device,
            "yes" if s.reachable else "no",
            f"change {s.last_change}",
            s.deployed_at or "-",
            "-" if s.drift is None else ("yes" if s.drift else "no"),
            f"{s.hardware_entries}/{s.hardware_budget if s.hardware_budget is not None else '-'}",
            "-" if s.counters_age_s is None else f"{s.counters_age_s:.0f}s",
        ]
        for s in states
    ]
    print_table(
        [
            "device",
            "reachable",
            "last deploy",
            "deployed (UTC)",
            "drift",
            "hw entries",
            "counters age",
        ],
        rows,
    )
