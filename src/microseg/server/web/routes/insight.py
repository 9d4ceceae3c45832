"""Policy Monitor (per-rule hits, unused rules, device state), Check ("can A reach B") and
the Application Map."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from microseg.builder.times import parse_window
from microseg.evaluate.check import check_connection, check_groups, is_address, outcome
from microseg.model import MicrosegError, PolicySet
from microseg.monitor import CounterSeries, device_states, rule_hits
from microseg.server.flowstore import flow_store_errors, flow_store_path, server_sessions
from microseg.server.web.appmap import app_map, svg
from microseg.server.web.errors import WebRoute
from microseg.server.web.identity import Viewer, store_of
from microseg.server.web.render import page

router = APIRouter(route_class=WebRoute)


def _policy(request: Request, workspace: str | None) -> tuple[str, PolicySet | None]:
    """The policy to look at: a workspace's, else the head revision's."""
    with store_of(request) as store:
        if workspace:
            return f"workspace {workspace}", store.workspace_policy(workspace)
        head = store.head()
        if head is None:
            return "the empty store", None
        return f"revision {head}", store.revision_policy(head)


@router.get("/monitor", response_class=HTMLResponse)
def monitor(request: Request, _: Viewer, since: str = "24h") -> HTMLResponse:
    window = parse_window(since)
    start = datetime.now(UTC) - window
    with flow_store_errors(flow_store_path(request)):
        hits, shares = rule_hits(CounterSeries(flow_store_path(request)), start)
    return page(
        request,
        "monitor.html",
        "monitor",
        title="Policy Monitor",
        since=since,
        hits=hits,
        shares=shares,
        unused=[hit for hit in hits if hit.note and not hit.default],
    )


@router.get("/monitor/devices", response_class=HTMLResponse)
def monitor_devices(request: Request, _: Viewer) -> HTMLResponse:
    """Per deployed device (asks each one): reachable, drift, hardware, counters age."""
    with store_of(request) as store, flow_store_errors(flow_store_path(request)):
        states = device_states(store, CounterSeries(flow_store_path(request)))
    return page(request, "fragments/monitor_devices.html", "monitor", states=states)


@router.get("/check", response_class=HTMLResponse)
def check(
    request: Request,
    _: Viewer,
    source: str = "",
    destination: str = "",
    protocol: str = "tcp",
    port: str = "",
    vrf: str = "default",
    ws: str = "",
) -> HTMLResponse:
    context: dict = {"source": source, "destination": destination, "protocol": protocol}
    context.update(port=port, vrf=vrf, ws=ws, result=None, pairs=[])
    with store_of(request) as store:
        context["workspaces"] = [w.name for w in store.workspace_list()]
    if source and destination:
        label, policy_set = _policy(request, ws or None)
        if policy_set is None:
            raise MicrosegError("the store has no revisions yet: import a policy first")
        number = _port(port)
        if is_address(source) and is_address(destination):
            single = check_connection(
                policy_set, source, destination, protocol, number, None, vrf, None
            )
            context["result"], context["connects"] = single.result, single.connects
            context["service"] = single.service
            context["pairs"] = [
                {
                    "source": [source],
                    "destination": [destination],
                    "outcome": outcome(single),
                    "check": single.as_dict(),
                }
            ]
        else:
            groups = check_groups(
                policy_set, source, destination, protocol, number, None, vrf, None
            )
            data = groups.as_dict()
            context["result"], context["connects"] = data["result"], data["connects"]
            context["service"], context["pairs"] = data["service"], data["pairs"]
        context["policy_label"] = label
    return page(request, "check.html", "check", title="Check", **context)


def _port(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= 65535:
        raise MicrosegError(f"port {text[:20]!r}: a number from 0 to 65535")
    return int(text)


@router.get("/map", response_class=HTMLResponse)
def application_map(request: Request, _: Viewer) -> HTMLResponse:
    label, policy_set = _policy(request, None)
    picture = None
    if policy_set is not None:
        picture = app_map(policy_set, server_sessions(request))
    drawing = Markup(svg(picture)) if picture is not None else Markup("")
    return page(
        request,
        "map.html",
        "map",
        title="Application Map",
        picture=picture,
        drawing=drawing,
        policy_label=label,
    )
