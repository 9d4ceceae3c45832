"""Policy Manager: every section of the policy (head revision or a workspace), and the
forms that edit it. Editing always happens in an open workspace and goes through the
store's own validation: a problem is shown next to the field it names, nothing written."""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from microseg.model import SECTIONS, MicrosegError, PolicyError, PolicySet, Problem
from microseg.model.errors import singular
from microseg.policyfile import dump_policy, read_policy_source_text
from microseg.server.auth import check_sections
from microseg.server.problems import client_message
from microseg.server.web.errors import WebRoute
from microseg.server.web.identity import Editor, Viewer, audit, store_of
from microseg.server.web.render import page
from microseg.store import Store
from microseg.store.sources import set_from_source

router = APIRouter(route_class=WebRoute)

# Tabs in the order CloudVision's Policy Manager shows them.
TABS = (
    "policies",
    "rules",
    "groups",
    "categories",
    "services",
    "domains",
    "monitor_objects",
    "redirect_objects",
    "devices",
    "monitor_nodes",
)
# Sections with a form of their own; every other object is edited as policy-file YAML.
FORMS = {"groups": "forms/group.html", "rules": "forms/rule.html"}
DIRECTIONS = ("bidirectional", "unidirectional")
DECAP_TYPES = ("allow-all", "vxlan-decap-only", "no-vxlan-decap")
ACTIONS = ("forward", "drop", "redirect")


def policy_url(workspace: str | None, section: str = "policies") -> str:
    url = f"/policy?section={section}"
    return url + (f"&ws={quote(workspace, safe='')}" if workspace else "")


def _ports(values: tuple[Any, ...]) -> str:
    return ", ".join(str(v) for v in values) or "any"


def _listed(values: tuple[Any, ...]) -> str:
    return ", ".join(str(v) for v in values)


# Per section: (column, the cell's text), what the table of that tab shows.
COLUMNS: dict[str, tuple[tuple[str, Any], ...]] = {
    "rules": (
        ("sources", lambda r: _listed(r.sources) or "any"),
        ("destinations", lambda r: _listed(r.destinations) or "any"),
        ("services", lambda r: _listed(r.services) or "any"),
        ("direction", lambda r: r.direction),
        ("monitor", lambda r: r.monitor or ""),
    ),
    "groups": (
        ("prefixes", lambda g: _listed(g.prefixes)),
        ("except", lambda g: _listed(g.except_prefixes)),
        ("categories", lambda g: _listed(g.categories)),
    ),
    "categories": (("description", lambda c: c.description),),
    "services": (
        ("protocol", lambda s: str(s.protocol)),
        ("destination ports", lambda s: _ports(s.destination_ports)),
        ("source ports", lambda s: _ports(s.source_ports)),
        ("ICMP types", lambda s: _listed(s.icmp_types)),
    ),
    "domains": (
        ("devices", lambda d: _listed(d.devices)),
        ("VRFs", lambda d: _listed(d.vrfs)),
    ),
    "monitor_objects": (
        ("tunnel destination", lambda m: str(m.tunnel_destination)),
        ("monitor nodes", lambda m: _listed(m.monitor_nodes)),
        ("active timeout (ms)", lambda m: str(m.active_timeout_ms)),
    ),
    "redirect_objects": (("next hops", lambda r: _listed(r.next_hops)),),
    "devices": (
        ("platform", lambda d: d.platform),
        ("management", lambda d: str(d.management_address or "")),
        ("segments", lambda d: _listed(tuple(s.name for s in d.segments))),
    ),
    "monitor_nodes": (
        ("management", lambda n: str(n.management_address or "")),
        ("loopback", lambda n: str(n.loopback_address)),
        ("collector", lambda n: f"{n.collector_address}:{n.collector_port}"),
    ),
}


def _policy_of(store: Store, workspace: str | None) -> PolicySet | None:
    if workspace:
        return store.workspace_policy(workspace)
    head = store.head()
    return None if head is None else store.revision_policy(head)


@router.get("/policy", response_class=HTMLResponse)
def policy_manager(
    request: Request, _: Viewer, section: str = "policies", ws: str | None = None
) -> HTMLResponse:
    if section not in SECTIONS:
        section = "policies"
    with store_of(request) as store:
        workspace = store.workspace_info(ws) if ws else None
        policy_set = _policy_of(store, ws)
        open_workspaces = store.workspace_list()
        changed = {(c.section, c.name): c.change for c in store.workspace_diff(ws)} if ws else {}
    editable = workspace is not None and workspace.state == "open"
    return page(
        request,
        "policy.html",
        "policy",
        title="Policy Manager",
        tab=section,
        tabs=TABS,
        singular=singular,
        workspace=workspace,
        editable=editable,
        policy_set=policy_set,
        objects=getattr(policy_set, section) if policy_set is not None else (),
        open_workspaces=open_workspaces,
        changed=changed,
        url=policy_url,
        columns=COLUMNS.get(section, ()),
    )


@router.get("/workspaces/{ws}/edit/{section}", response_class=HTMLResponse)
def edit_object(
    request: Request, _: Editor, ws: str, section: str, name: str | None = None
) -> HTMLResponse:
    """The form for object `name` of `section` (a new one without `name`)."""
    with store_of(request) as store:
        policy_set = store.workspace_policy(ws)
    obj = policy_set.get(section, name) if name else None
    if name and obj is None:
        raise MicrosegError(f"workspace {ws!r} has no {singular(section)} {name!r}")
    values: dict[str, Any] = obj.model_dump(mode="json") if obj is not None else {}
    return _form(request, ws, section, policy_set, values, existing=obj is not None)


def _form(
    request: Request,
    ws: str,
    section: str,
    policy_set: PolicySet,
    values: dict[str, Any],
    existing: bool,
    problems: list[Problem] | None = None,
    yaml_text: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    if section not in SECTIONS:
        raise MicrosegError(f"unknown section {section!r}")
    name = values.get("name") if isinstance(values.get("name"), str) else ""
    template = FORMS.get(section, "forms/yaml.html")
    by_field: dict[str, list[str]] = defaultdict(list)
    general: list[str] = []
    for problem in problems or []:
        # The YAML editor shows each problem at its line and column in the text.
        if (
            template in FORMS.values()
            and problem.path[:2] == (section, name)
            and len(problem.path) >= 3
        ):
            by_field[str(problem.path[2])].append(problem.message)
        else:
            general.append(str(problem))
    if template == "forms/yaml.html" and yaml_text is None:
        yaml_text = _object_yaml(section, values) if values else f"{section}:\n  - name: \n"
    title = f"{'Edit' if existing else 'New'} {singular(section)}" + (
        f" {name}" if existing else ""
    )
    return page(
        request,
        template,
        "policy",
        status_code=status_code,
        title=title,
        ws=ws,
        tab=section,
        values=values,
        existing=existing,
        field_problems=by_field,
        general_problems=general,
        policy_set=policy_set,
        yaml_text=yaml_text,
        directions=DIRECTIONS,
        decap_types=DECAP_TYPES,
        actions=ACTIONS,
        url=policy_url,
    )


def _object_yaml(section: str, values: dict[str, Any]) -> str:
    obj = SECTIONS[section].model_validate(values)
    return dump_policy(PolicySet.model_construct(None, **{section: (obj,)}))


@router.post("/workspaces/{ws}/objects/{section}", response_class=HTMLResponse)
async def save_object(request: Request, principal: Editor, ws: str, section: str) -> Response:
    form = await request.form()
    existing = form.get("existing") == "1"
    # Devices and monitor nodes say where microseg uses the device credentials: admin only,
    # as in the API (whatever sections the editor's YAML names).
    check_sections(principal, [section])
    with store_of(request) as store:
        if section in FORMS:
            values = _values_from_form(section, form)
            objects: list[tuple[str, Any]] = [(section, values)]
            append_to = str(form.get("add_to_policy") or "")
            if section == "rules" and append_to and not existing:
                policy = store.workspace_policy(ws).get("policies", append_to)
                if policy is None:
                    raise MicrosegError(f"workspace {ws!r} has no policy {append_to!r}")
                body = policy.model_dump(mode="json")
                body["rules"] = [*body["rules"], values.get("name")]
                objects.append(("policies", body))
            try:
                store.workspace_set_objects(ws, objects)
            except PolicyError as error:
                return _form(
                    request,
                    ws,
                    section,
                    store.workspace_policy(ws),
                    values,
                    existing,
                    error.problems,
                    status_code=422,
                )
        else:
            text = str(form.get("yaml") or "")
            source = read_policy_source_text(text, "editor")
            check_sections(principal, (obj.section for obj in source.objects))
            try:
                set_from_source(store, ws, source, "editor")
            except MicrosegError as error:
                problems = (
                    error.problems
                    if isinstance(error, PolicyError)
                    else [Problem(client_message(error))]
                )
                first = source.objects[0].data if source.objects else {}
                return _form(
                    request,
                    ws,
                    section,
                    store.workspace_policy(ws),
                    first,
                    existing,
                    problems,
                    yaml_text=text,
                    status_code=422,
                )
    audit(request, "workspace.set", f"workspace/{ws}", {"section": section})
    return RedirectResponse(policy_url(ws, section), status_code=303)


def _values_from_form(section: str, form: Any) -> dict[str, Any]:
    """The object's mapping from the form, as a policy file would give it. Nothing is
    guessed: an empty reference list stays empty (the model refuses it: `any` must be said)."""
    values: dict[str, Any] = {"name": str(form.get("name") or "").strip()}
    if description := str(form.get("description") or "").strip():
        values["description"] = description
    if section == "groups":
        values["prefixes"] = _words(form.get("prefixes"))
        values["except_prefixes"] = _words(form.get("except_prefixes"))
        values["categories"] = list(form.getlist("categories"))
    elif section == "rules":
        for field in ("sources", "destinations", "services"):
            chosen = list(form.getlist(field))
            values[field] = "any" if "any" in chosen else chosen
        for field in ("direction", "decap_type", "action"):
            values[field] = str(form.get(field) or "")
        for field in ("redirect", "monitor"):
            if chosen_name := str(form.get(field) or ""):
                values[field] = chosen_name
    return values


def _words(value: Any) -> list[str]:
    return str(value or "").replace(",", " ").split()


@router.post("/workspaces/{ws}/objects/{section}/delete")
async def delete_object(request: Request, principal: Editor, ws: str, section: str) -> Response:
    name = str((await request.form()).get("name") or "")
    check_sections(principal, [section])
    with store_of(request) as store:
        store.workspace_delete(ws, section, name)
    audit(request, "workspace.delete", f"workspace/{ws}", {"section": section, "name": name})
    return RedirectResponse(policy_url(ws, section), status_code=303)


@router.post("/workspaces/{ws}/policies/move")
async def move_rule(request: Request, _: Editor, ws: str) -> Response:
    """Move a rule one place up or down in a policy (first match wins: order decides)."""
    form = await request.form()
    policy_name, rule, direction = (str(form.get(k) or "") for k in ("policy", "rule", "to"))
    with store_of(request) as store:
        policy = store.workspace_policy(ws).get("policies", policy_name)
        if policy is None or rule not in policy.rules:
            raise MicrosegError(f"policy {policy_name!r} has no rule {rule!r}")
        rules = list(policy.rules)
        at = rules.index(rule)
        to = at - 1 if direction == "up" else at + 1
        if 0 <= to < len(rules):
            rules[at], rules[to] = rules[to], rules[at]
            store.workspace_set(ws, "policies", {**policy.model_dump(mode="json"), "rules": rules})
            detail = {"policy": policy_name, "rule": rule, "to": direction}
            audit(request, "workspace.move_rule", f"workspace/{ws}", detail)
    return RedirectResponse(policy_url(ws, "policies"), status_code=303)
