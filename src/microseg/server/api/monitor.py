"""Policy Monitor: per-rule hits, device state, and polling the deployed devices' counters
(the CLI's `microseg monitor`), on the server's flow store."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from microseg.server.audit import audited
from microseg.server.auth import Editor, Viewer
from microseg.server.context import server_context
from microseg.server.flowstore import flow_store_errors, flow_store_path

router = APIRouter(prefix="/api/monitor", tags=["policy monitor"])


class Polled(BaseModel):
    device: str
    change: int
    matches: int
    error: str | None


def _series(request: Request) -> Any:
    from microseg.monitor import CounterSeries

    return CounterSeries(flow_store_path(request))


@router.get("/rules", response_model=dict[str, Any])
def rules(
    principal: Viewer,
    request: Request,
    since: Annotated[
        str, Query(max_length=40, description="Window: 30m, 24h, 7d back from now, or an ISO time.")
    ] = "24h",
) -> dict[str, Any]:
    """Per policy and rule: packets and bytes in the window, last hit, rules with no hit,
    the default match's share (`microseg monitor rules --json`)."""
    from microseg.builder.times import parse_moment
    from microseg.monitor import rule_hits
    from microseg.monitor.report import rules_json

    start = parse_moment(since, "--since", datetime.now(UTC))
    with flow_store_errors(flow_store_path(request)):
        hits, shares = rule_hits(_series(request), start)
    return rules_json(hits, shares, start)


@router.get("/devices", response_model=list[dict[str, Any]])
def devices(principal: Viewer, request: Request) -> list[dict[str, Any]]:
    """Per deployed device: reachable, last deploy, drift, hardware entries vs budget,
    counters age (`microseg monitor devices --json`)."""
    from microseg.monitor import device_states

    with flow_store_errors(flow_store_path(request)):
        states = device_states(server_context(request).store, _series(request))
    return [asdict(state) for state in states]


@router.post("/poll", response_model=list[Polled])
def poll(
    principal: Editor,
    request: Request,
    timeout: Annotated[float, Query(ge=0.1, le=3600)] = 30.0,
) -> list[dict[str, Any]]:
    """Read every deployed device's counters once and store them (`monitor poll --once`)."""
    from microseg.monitor import poll as poll_devices

    with flow_store_errors(flow_store_path(request)):
        series = _series(request).open()  # before any device is asked
    outcomes = poll_devices(server_context(request).store, series, timeout)
    polled = [asdict(outcome) for outcome in outcomes]
    audited(
        request, principal, "monitor.poll", "monitor", {"devices": [p["device"] for p in polled]}
    )
    return polled
