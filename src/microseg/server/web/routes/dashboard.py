"""Dashboard: devices and monitor nodes, policies, open workspaces, recent changes and
revisions; device reachability and drift are read on demand (they ask every device)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from microseg.deploy import DriftReport, drift, list_changes
from microseg.server.web.errors import WebRoute
from microseg.server.web.identity import Viewer, store_of
from microseg.server.web.render import page

router = APIRouter(route_class=WebRoute)

# The dashboard must answer while a device does not: drift waits this long for each.
DRIFT_TIMEOUT_S = 5.0


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, _: Viewer) -> HTMLResponse:
    with store_of(request) as store:
        head = store.head()
        policy_set = store.revision_policy(head) if head is not None else None
        devices = []
        if policy_set is not None:
            for kind, section in (("switch", "devices"), ("monitor node", "monitor_nodes")):
                for device in getattr(policy_set, section):
                    last = store.changes.last_deployed(device.name)
                    devices.append((kind, device, last))
        context: dict[str, Any] = {
            "head": head,
            "policy_set": policy_set,
            "devices": devices,
            "workspaces": store.workspace_list(),
            "changes": list_changes(store, limit=8),
            "revisions": store.log(8),
        }
    return page(request, "dashboard.html", "dashboard", title="Dashboard", **context)


@router.get("/dashboard/device-state", response_class=HTMLResponse)
def device_state(request: Request, _: Viewer) -> HTMLResponse:
    """Reachable and in sync, per device of the head revision (`microseg drift`)."""
    with store_of(request) as store:
        if store.head() is None:
            reports: list[DriftReport] = []
        else:
            _, reports = drift(store, timeout=DRIFT_TIMEOUT_S)
    return page(request, "fragments/device_state.html", "dashboard", reports=reports)
