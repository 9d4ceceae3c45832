"""Mainline revisions: the log, one revision, its objects, its canonical YAML, and import."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from microseg.model import SECTIONS, MicrosegError, PolicyError
from microseg.policyfile import build_policy, dump_policy, object_document
from microseg.server.api.bodies import (
    POLICY_DOCUMENT_SCHEMA,
    body_text,
    invalid_policy,
    policy_source,
    request_body_doc,
)
from microseg.server.api.models import ObjectNameInPath, PageLimit, PageOffset, PolicyDocument
from microseg.server.audit import audited
from microseg.server.auth import Editor, Viewer, check_sections
from microseg.server.context import server_context
from microseg.server.problems import ApiProblem
from microseg.store import NotFound

router = APIRouter(prefix="/api/revisions", tags=["revisions"])

RevisionNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]


class RevisionOut(BaseModel):
    id: int
    parent: int | None
    author: str
    message: str
    created_at: str


class RevisionDetail(BaseModel):
    revision: RevisionOut
    objects: dict[str, int]


class Imported(BaseModel):
    revision: int
    objects: int
    changed: bool = Field(
        description="False when the policy is the head's own: no revision was made "
        "(200, `revision` is the head)"
    )


@router.get("", response_model=list[RevisionOut])
def revision_log(
    principal: Viewer,
    request: Request,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> list[dict[str, Any]]:
    """Mainline revisions, newest first (`microseg log`), paged as `/api/changes` is:
    `limit` of them after the `offset` newest (an empty list past the oldest)."""
    return [r.as_json() for r in server_context(request).store.log(limit, offset)]


@router.post(
    "",
    response_model=Imported,
    status_code=201,
    responses={200: {"model": Imported, "description": "The head's own policy: no revision"}},
    openapi_extra=request_body_doc(
        POLICY_DOCUMENT_SCHEMA, "A whole policy, like a policy file (JSON or YAML)."
    ),
)
async def import_revision(
    principal: Editor,
    request: Request,
    response: Response,
    message: Annotated[str, Query(max_length=10_000)] = "",
) -> dict[str, Any]:
    """Validate a whole policy and store it as the next revision (`microseg import`); a
    policy with any problem stores nothing (422, every problem located in the body)."""
    source = policy_source(await body_text(request))
    try:
        policy_set = build_policy(source)
    except PolicyError as error:
        raise invalid_policy(error, source) from None
    count = len(policy_set.objects())
    if not count:
        raise MicrosegError("request body: the policy holds no objects: nothing imported")
    store = server_context(request).store
    check_sections(principal, await run_in_threadpool(_changed_sections, store, policy_set))
    imported = await run_in_threadpool(
        store.import_policy, policy_set, principal.name, message or "import through the API"
    )
    if imported.changed:
        audited(
            request,
            principal,
            "revision.import",
            f"revision/{imported.revision}",
            {"objects": count},
        )
    else:
        response.status_code = 200  # nothing created
    return {**imported.as_json(), "objects": count}


def _changed_sections(store: Any, policy_set: Any) -> list[str]:
    """The sections whose objects differ between the head and `policy_set`."""
    from microseg.store.snapshot import policy_bodies

    head = store.head()
    before = policy_bodies(store.revision_policy(head)) if head is not None else {}
    after = policy_bodies(policy_set)
    return sorted(
        {key[0] for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    )


@router.get("/{number}", response_model=RevisionDetail)
def show_revision(number: RevisionNumber, principal: Viewer, request: Request) -> dict[str, Any]:
    """One revision and its number of objects per section."""
    store = server_context(request).store
    info = store.revision_info(number)
    policy_set = server_context(request).revisions.policy(number)
    counts = {section: len(getattr(policy_set, section)) for section in SECTIONS}
    return {"revision": info.as_json(), "objects": counts}


@router.get(
    "/{number}/export",
    response_class=PlainTextResponse,
    responses={200: {"content": {"application/yaml": {"schema": POLICY_DOCUMENT_SCHEMA}}}},
)
def export_revision(
    number: RevisionNumber, principal: Viewer, request: Request
) -> PlainTextResponse:
    """The revision as canonical YAML (`microseg export`: the same bytes as `microseg fmt`)."""
    text = dump_policy(server_context(request).revisions.policy(number))
    return PlainTextResponse(text, media_type="application/yaml")


@router.get("/{number}/objects", response_model=PolicyDocument)
def revision_objects(number: RevisionNumber, principal: Viewer, request: Request) -> Response:
    """The revision's policy as a policy document (sections of objects)."""
    # Serialized once per revision (revisions never change), not validated per request.
    return Response(
        server_context(request).revisions.document_json(number), media_type="application/json"
    )


@router.get("/{number}/objects/{section}/{object_name:path}", response_model=dict[str, Any])
def revision_object(
    number: RevisionNumber,
    section: str,
    object_name: ObjectNameInPath,
    principal: Viewer,
    request: Request,
) -> dict[str, Any]:
    """One object of a revision."""
    if section not in SECTIONS:
        raise ApiProblem(
            404, f"unknown section {section!r} (known: {', '.join(SECTIONS)})", "not-found"
        )
    found = server_context(request).revisions.policy(number).get(section, object_name)
    if found is None:
        raise NotFound(f"revision {number} has no {section} object {object_name!r}")
    return object_document(section, found)
