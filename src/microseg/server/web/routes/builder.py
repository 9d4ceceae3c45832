"""Policy Builder: the collected sessions a monitor rule sees (complete, half-open, `eph`
summaries), Generate with a category picker, the proposals with their evidence and quality
report, and Submit of the chosen ones into a workspace (`microseg recommend`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from microseg.builder import BuilderOptions, Recommendation, recommend
from microseg.builder.scope import Scope, scope_from, scope_mask
from microseg.builder.workspace import check_budget, selected, write_recommendation
from microseg.flows.session_columns import session_columns
from microseg.model import MicrosegError, PolicySet
from microseg.server.flowstore import SERVER_FLOW_STORE, server_sessions
from microseg.server.web.errors import WebRoute
from microseg.server.web.identity import (
    Editor,
    Viewer,
    actor,
    audit,
    store_of,
)
from microseg.server.web.render import page

router = APIRouter(route_class=WebRoute)

# Sessions listed on the page (the Generate step reads them all).
SHOWN_SESSIONS = 200


@dataclass(frozen=True)
class BuilderForm:
    """What the builder form asks for."""

    monitor_rule: str
    categories: tuple[str, ...]
    vrf: str
    between: str
    include_blocked: bool

    def scope(self, policy_set: PolicySet) -> Scope:
        """The sessions asked for: the monitor rule's, in the VRF, with an end in a prefix."""
        return scope_from(
            policy_set, self.monitor_rule or None, None, self.vrf or None, self.between.split(),
            None, None,
        )  # fmt: skip

    @classmethod
    def of(cls, values: Any) -> BuilderForm:
        return cls(
            monitor_rule=str(values.get("monitor_rule") or ""),
            categories=tuple(str(c) for c in values.getlist("categories")),
            vrf=str(values.get("vrf") or "").strip(),
            between=str(values.get("between") or "").strip(),
            include_blocked=values.get("include_blocked") == "1",
        )


def _head(request: Request) -> tuple[int, PolicySet]:
    with store_of(request) as store:
        head = store.head()
        if head is None:
            raise MicrosegError("the store has no revisions yet: import a policy first")
        return head, store.revision_policy(head)


def _recommendation(
    request: Request, asked: BuilderForm
) -> tuple[int, PolicySet, Recommendation, int]:
    head, policy_set = _head(request)
    scope = asked.scope(policy_set)
    table = server_sessions(request)
    options = BuilderOptions(
        categories=asked.categories, scope=scope, include_blocked=asked.include_blocked
    )
    columns = session_columns(table, where=SERVER_FLOW_STORE)
    return head, policy_set, recommend(policy_set, columns, options), table.num_rows


@router.get("/builder", response_class=HTMLResponse)
def builder(request: Request, _: Viewer) -> HTMLResponse:
    head, policy_set = _head(request)
    asked = BuilderForm.of(request.query_params)
    monitor_rules = [r.name for r in policy_set.rules if r.monitor]
    if not asked.monitor_rule and monitor_rules and "monitor_rule" not in request.query_params:
        asked = BuilderForm(monitor_rules[0], (), "", "", False)
    scope = asked.scope(policy_set)
    table = server_sessions(request)
    mask = scope_mask(session_columns(table, where=SERVER_FLOW_STORE), scope)
    in_scope = table.filter(mask)
    rows = in_scope.slice(0, SHOWN_SESSIONS).to_pylist()
    return page(
        request,
        "builder.html",
        "builder",
        title="Policy Builder",
        head=head,
        asked=asked,
        monitor_rules=monitor_rules,
        categories=[c.name for c in policy_set.categories],
        sessions=rows,
        in_scope=in_scope.num_rows,
        total=table.num_rows,
        complete=sum(in_scope.column("complete").to_pylist()) if in_scope.num_rows else 0,
        half_open=sum(in_scope.column("half_open").to_pylist()) if in_scope.num_rows else 0,
    )


@router.post("/builder/generate", response_class=HTMLResponse)
async def generate(request: Request, _: Viewer) -> HTMLResponse:
    asked = BuilderForm.of(await request.form())
    head, _, recommendation, _ = _recommendation(request, asked)
    return page(
        request,
        "fragments/proposals.html",
        "builder",
        head=head,
        asked=asked,
        recommendation=recommendation,
        workspace=f"builder-rev{head}",
    )


@router.post("/builder/submit")
async def submit(request: Request, _: Editor) -> Response:
    """Write the chosen proposals into a workspace, made from the head revision exactly as
    `microseg recommend rev:N --into-workspace W` writes them (same checks)."""
    form = await request.form()
    asked = BuilderForm.of(form)
    head, policy_set, recommendation, _ = _recommendation(request, asked)
    chosen = selected(recommendation, [str(name) for name in form.getlist("rule")])
    if not chosen.rules:
        raise MicrosegError("choose at least one proposed rule to submit")
    check_budget(chosen, form.get("force") == "1")
    workspace = str(form.get("workspace") or "").strip()
    with store_of(request) as store:
        written = write_recommendation(
            store, f"rev:{head}", policy_set, workspace, chosen, actor(request)
        )
    audit(request, "recommend.into_workspace", f"workspace/{workspace}", {"objects": len(written)})
    return RedirectResponse(f"/workspaces/{quote(workspace, safe='')}", status_code=303)
