"""Workspaces: change sets on a revision. Objects are set and deleted with the validation
`microseg workspace set` applies (every problem, located in the body); build shows the
per-device diff; submit makes the next revision (and, if asked, a change)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from microseg.model import SECTIONS, MicrosegError, PolicyError
from microseg.policyfile import object_document, policy_document
from microseg.server.api.bodies import (
    OBJECT_SCHEMA,
    POLICY_DOCUMENT_SCHEMA,
    body_text,
    invalid_policy,
    object_source,
    policy_source,
    request_body_doc,
)
from microseg.server.api.models import (
    DiffReport,
    ObjectChangeOut,
    ObjectNameInPath,
    PolicyDocument,
    WorkspaceOut,
)
from microseg.server.audit import audited
from microseg.server.auth import Editor, Viewer, check_sections
from microseg.server.context import server_context
from microseg.server.problems import ApiProblem, RequestBody
from microseg.store import NotFound
from microseg.store.sources import set_from_source
from microseg.targets.render import diff_policies

router = APIRouter(prefix="/api/workspaces", tags=["workspaces"])

WorkspaceName = Annotated[str, Path(min_length=1, max_length=200)]
Section = Annotated[str, Path(description=f"One of: {', '.join(SECTIONS)}.")]


class NewWorkspace(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    base: int | None = Field(None, ge=1, le=2**31 - 1, description="Default: the head.")


class WorkspaceDetail(BaseModel):
    workspace: WorkspaceOut
    objects: dict[str, int]


class WorkspaceDiff(BaseModel):
    workspace: str
    base: int
    changes: list[ObjectChangeOut]


class SetResult(BaseModel):
    workspace: str
    objects: list[str] = Field(description="section/name of each object set.")


class Submit(RequestBody):
    message: str = Field("", max_length=10_000)
    change: bool = Field(False, description="Also create a change deploying the new revision.")


class Submitted(BaseModel):
    workspace: str
    revision: int
    change: int | None = None


def _section(section: str) -> str:
    if section not in SECTIONS:
        raise ApiProblem(
            404, f"unknown section {section!r} (known: {', '.join(SECTIONS)})", "not-found"
        )
    return section


@router.get("", response_model=list[WorkspaceOut])
def list_workspaces(
    principal: Viewer,
    request: Request,
    all: Annotated[bool, Query(description="Include submitted and abandoned ones.")] = False,
) -> list[dict[str, Any]]:
    """Open workspaces by name (`all`: submitted and abandoned ones too)."""
    return [w.as_json() for w in server_context(request).store.workspace_list(all)]


@router.post("", response_model=WorkspaceOut, status_code=201)
def create_workspace(body: NewWorkspace, principal: Editor, request: Request) -> dict[str, Any]:
    """Open a workspace on a revision (default: the head)."""
    info = server_context(request).store.workspace_create(body.name, body.base, principal.name)
    audited(request, principal, "workspace.create", f"workspace/{info.name}", {"base": info.base})
    return info.as_json()


@router.get("/{name}", response_model=WorkspaceDetail)
def show_workspace(name: WorkspaceName, principal: Viewer, request: Request) -> dict[str, Any]:
    """A workspace and its effective policy's number of objects per section."""
    store = server_context(request).store
    info = store.workspace_info(name)
    policy_set = store.workspace_policy(name)
    counts = {section: len(getattr(policy_set, section)) for section in SECTIONS}
    return {"workspace": info.as_json(), "objects": counts}


@router.get("/{name}/diff", response_model=WorkspaceDiff)
def workspace_diff(name: WorkspaceName, principal: Viewer, request: Request) -> dict[str, Any]:
    """What the workspace adds, changes and removes relative to its base revision."""
    store = server_context(request).store
    info = store.workspace_info(name)
    changes = store.workspace_diff(name)
    return {"workspace": info.name, "base": info.base, "changes": [c.as_json() for c in changes]}


@router.get("/{name}/build", response_model=DiffReport)
def workspace_build(name: WorkspaceName, principal: Viewer, request: Request) -> dict[str, Any]:
    """Every device the workspace changes, compiled against its base: per-device diff and
    summary (`microseg workspace build`)."""
    from microseg.compile.diff import summary

    store = server_context(request).store
    base = store.workspace_base(name)
    old_set, new_set = store.revision_policy(base), store.workspace_policy(name)
    diffs = [
        d for d in diff_policies(old_set, new_set, None, f"rev:{base}", f"ws:{name}") if d.changed
    ]
    return {
        "old": f"rev:{base}",
        "new": f"ws:{name}",
        "devices": [d.as_json() for d in diffs],
        "summary": summary(diffs),
    }


@router.get("/{name}/objects", response_model=PolicyDocument)
def workspace_objects(name: WorkspaceName, principal: Viewer, request: Request) -> dict[str, Any]:
    """The workspace's effective policy as a policy document (sections of objects)."""
    return policy_document(server_context(request).store.workspace_policy(name))


@router.get("/{name}/objects/{section}", response_model=list[dict[str, Any]])
def workspace_section(
    name: WorkspaceName, section: Section, principal: Viewer, request: Request
) -> list[dict[str, Any]]:
    """The objects of one section of the workspace's effective policy, by name."""
    document = policy_document(server_context(request).store.workspace_policy(name))
    return document.get(_section(section), [])


@router.get("/{name}/objects/{section}/{object_name:path}", response_model=dict[str, Any])
def workspace_object(
    name: WorkspaceName,
    section: Section,
    object_name: ObjectNameInPath,
    principal: Viewer,
    request: Request,
) -> dict[str, Any]:
    """One object of the workspace's effective policy."""
    policy_set = server_context(request).store.workspace_policy(name)
    found = policy_set.get(_section(section), object_name)
    if found is None:
        raise NotFound(f"workspace {name!r} has no {section} object {object_name!r}")
    return object_document(section, found)


@router.post(
    "/{name}/objects",
    response_model=SetResult,
    openapi_extra=request_body_doc(
        POLICY_DOCUMENT_SCHEMA, "Objects by section, like a policy file (JSON or YAML)."
    ),
)
async def set_objects(name: WorkspaceName, principal: Editor, request: Request) -> dict[str, Any]:
    """Add or replace objects (each given whole): all of them, or none if any problem."""
    source = policy_source(await body_text(request))
    return await _set(request, principal, name, source, single=False)


@router.put(
    "/{name}/objects/{section}/{object_name:path}",
    response_model=SetResult,
    openapi_extra=request_body_doc(OBJECT_SCHEMA, "The whole object (JSON or YAML)."),
)
async def put_object(
    name: WorkspaceName,
    section: Section,
    object_name: ObjectNameInPath,
    principal: Editor,
    request: Request,
) -> dict[str, Any]:
    """Add or replace one object; its `name` must be the one in the path."""
    source = object_source(_section(section), await body_text(request))
    named = [obj.name for obj in source.objects]
    if not source.problems and named != [object_name]:
        raise _not_the_named_object(section, object_name, named)
    return await _set(request, principal, name, source, single=True)


def _not_the_named_object(section: str, object_name: str, named: list[str | None]) -> ApiProblem:
    if len(named) == 1:
        detail = (
            f"the body's name {named[0]!r} is not {object_name!r}, the object named in the path"
        )
        field, pointer, message = "name", "#/name", "must be the name in the path"
    else:
        detail = f"the body holds {len(named)} objects: give the one object named in the path"
        field, pointer, message = "", "#", "must be one object"
    return ApiProblem(
        422,
        detail,
        "invalid-request",
        errors=[{"object": section, "field": field, "pointer": pointer, "message": message}],
    )


async def _set(
    request: Request, principal: Any, name: str, source: Any, single: bool
) -> dict[str, Any]:
    from starlette.concurrency import run_in_threadpool

    check_sections(principal, (obj.section for obj in source.objects))
    store = server_context(request).store
    before = await run_in_threadpool(_bodies_of, store, name, source)
    try:
        keys = await run_in_threadpool(set_from_source, store, name, source, "request body")
    except PolicyError as error:
        raise invalid_policy(error, source, single) from None
    changed = {
        f"{section}/{obj}": {"before": before.get((section, obj)), "after": data}
        for (section, obj), data in _given(source).items()
    }
    audited(request, principal, "workspace.set", f"workspace/{name}", changed)
    return {"workspace": name, "objects": [f"{section}/{obj}" for section, obj in keys]}


def _given(source: Any) -> dict[tuple[str, str], Any]:
    return {(obj.section, str(obj.name)): obj.data for obj in source.objects}


def _bodies_of(store: Any, name: str, source: Any) -> dict[tuple[str, str], Any]:
    """What the objects the source sets were before, for the audit trail."""
    try:
        policy_set = store.workspace_policy(name)
    except MicrosegError:
        return {}
    before = {}
    for section, obj_name in _given(source):
        found = policy_set.get(section, obj_name) if section in SECTIONS else None
        if found is not None:
            before[(section, obj_name)] = object_document(section, found)
    return before


@router.delete("/{name}/objects/{section}/{object_name:path}", status_code=204)
def delete_object(
    name: WorkspaceName,
    section: Section,
    object_name: ObjectNameInPath,
    principal: Editor,
    request: Request,
) -> None:
    """Delete an object in the workspace; refused (422, every problem) while anything refers
    to it."""
    check_sections(principal, [_section(section)])
    store = server_context(request).store
    existing = store.workspace_policy(name).get(section, object_name)
    store.workspace_delete(name, section, object_name)
    before = None if existing is None else object_document(section, existing)
    audited(
        request,
        principal,
        "workspace.delete",
        f"workspace/{name}",
        {f"{section}/{object_name}": {"before": before, "after": None}},
    )


@router.post("/{name}/submit", response_model=Submitted)
def submit_workspace(
    name: WorkspaceName, body: Submit, principal: Editor, request: Request
) -> dict[str, Any]:
    """Apply the workspace to the head as the next revision (409 on conflict); with
    `change`, also create a change deploying it, waiting for approval."""
    store = server_context(request).store
    revision = store.workspace_submit(name, principal.name, body.message)
    change = None
    if body.change:
        from microseg.deploy import create_change

        change = create_change(store, principal.name, revision).id
    audited(
        request,
        principal,
        "workspace.submit",
        f"workspace/{name}",
        {"revision": revision, "change": change},
    )
    return {"workspace": name, "revision": revision, "change": change}


@router.post("/{name}/abandon", response_model=WorkspaceOut)
def abandon_workspace(name: WorkspaceName, principal: Editor, request: Request) -> dict[str, Any]:
    """Close the workspace without submitting it (its changes stay readable)."""
    store = server_context(request).store
    store.workspace_abandon(name)
    audited(request, principal, "workspace.abandon", f"workspace/{name}", {})
    return store.workspace_info(name).as_json()
