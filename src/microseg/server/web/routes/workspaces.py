"""Workspace Island: a workspace's changes, Build (the per-device configuration diff with
its line counts), lint findings, what-if against collected sessions, Submit."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from microseg.compile.diff import summary
from microseg.deploy import create_change
from microseg.evaluate.lint import lint
from microseg.evaluate.whatif import whatif
from microseg.model import MicrosegError
from microseg.server.flowstore import SERVER_FLOW_STORE, server_sessions
from microseg.server.problems import client_message
from microseg.server.web.errors import WebRoute
from microseg.server.web.identity import (
    Editor,
    Viewer,
    actor,
    audit,
    store_of,
)
from microseg.server.web.render import Paging, page, page_offset
from microseg.server.web.routes.policy import policy_url
from microseg.targets.render import diff_policies

router = APIRouter(route_class=WebRoute)
WORKSPACES_PER_PAGE = 50


def island_url(name: str) -> str:
    return f"/workspaces/{quote(name, safe='')}"


@router.get("/workspaces", response_class=HTMLResponse)
def workspace_list(request: Request, _: Viewer) -> HTMLResponse:
    """A page of workspaces by name, submitted and abandoned ones too (`?offset=N`): every
    submit leaves one behind, so they are not rendered all at once."""
    offset = page_offset(request)
    with store_of(request) as store:
        paging = Paging(offset, WORKSPACES_PER_PAGE, store.workspace_count(include_closed=True))
        workspaces = store.workspace_list(True, WORKSPACES_PER_PAGE, offset)
        head = store.head()
    return page(
        request,
        "workspaces.html",
        "workspaces",
        title="Workspaces",
        workspaces=workspaces,
        head=head,
        paging=paging,
    )


@router.post("/workspaces")
async def workspace_create(request: Request, _: Editor) -> Response:
    form = await request.form()
    name = str(form.get("name") or "").strip()
    with store_of(request) as store:
        info = store.workspace_create(name, author=actor(request))
    audit(request, "workspace.create", f"workspace/{name}", {"base": info.base})
    target = policy_url(name, "rules") if form.get("next") == "policy" else island_url(name)
    return RedirectResponse(target, status_code=303)


@router.get("/workspaces/{name}", response_class=HTMLResponse)
def island(request: Request, _: Viewer, name: str, notice: str = "") -> HTMLResponse:
    with store_of(request) as store:
        info = store.workspace_info(name)
        changes = store.workspace_diff(name)
        head = store.head()
    return page(
        request,
        "island.html",
        "workspaces",
        title=f"Workspace {name}",
        ws=info,
        changes=changes,
        head=head,
        notice=notice,
        url=policy_url,
    )


@router.get("/workspaces/{name}/build", response_class=HTMLResponse)
def build(request: Request, _: Viewer, name: str) -> HTMLResponse:
    """Every device the workspace changes, compiled on both sides (`microseg workspace build`)."""
    with store_of(request) as store:
        base = store.workspace_base(name)
        old_set, new_set = store.revision_policy(base), store.workspace_policy(name)
    diffs = [
        d for d in diff_policies(old_set, new_set, None, f"rev:{base}", f"ws:{name}") if d.changed
    ]
    return page(
        request, "fragments/build.html", "workspaces", diffs=diffs, totals=summary(diffs), base=base
    )


@router.get("/workspaces/{name}/lint", response_class=HTMLResponse)
def lint_findings(request: Request, _: Viewer, name: str) -> HTMLResponse:
    with store_of(request) as store:
        report = lint(store.workspace_policy(name))
    return page(request, "fragments/lint.html", "workspaces", report=report)


@router.get("/workspaces/{name}/whatif", response_class=HTMLResponse)
def whatif_report(request: Request, _: Viewer, name: str) -> HTMLResponse:
    """Replay the collected sessions against the base and the workspace (`microseg whatif`)."""
    with store_of(request) as store:
        base = store.revision_policy(store.workspace_base(name))
        candidate = store.workspace_policy(name)
    sessions = server_sessions(request)
    report = None
    if sessions.num_rows:
        report = whatif(base, candidate, sessions, None, SERVER_FLOW_STORE)
    return page(request, "fragments/whatif.html", "workspaces", report=report)


@router.post("/workspaces/{name}/submit")
async def submit(request: Request, _: Editor, name: str) -> Response:
    form = await request.form()
    message = str(form.get("message") or "")
    who = actor(request)
    with store_of(request) as store:
        revision = store.workspace_submit(name, who, message)
        audit(request, "workspace.submit", f"workspace/{name}", {"revision": revision})
        if form.get("change") != "1":
            note = f"submitted as revision {revision}"
            return RedirectResponse(f"{island_url(name)}?notice={quote(note)}", status_code=303)
        try:
            change = create_change(store, who, revision)
            audit(request, "change.create", f"change/{change.id}", {"revision": revision})
        except MicrosegError as error:
            note = f"submitted as revision {revision}; no change created: {client_message(error)}"
            return RedirectResponse(f"{island_url(name)}?notice={quote(note)}", status_code=303)
    return RedirectResponse(f"/changes/{change.id}", status_code=303)


@router.post("/workspaces/{name}/abandon")
async def abandon(request: Request, _: Editor, name: str) -> Response:
    with store_of(request) as store:
        store.workspace_abandon(name)
    audit(request, "workspace.abandon", f"workspace/{name}")
    return RedirectResponse(f"{island_url(name)}?notice=abandoned", status_code=303)
