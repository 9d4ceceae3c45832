"""Change control: create, approve, run (in the background, with progress as server-sent
events), roll back, cancel; four-eyes; drift. The logic is `microseg.deploy`'s, as the
CLI's; devices are reached with the server's own credentials (environment or file)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from microseg.deploy import (
    RunOptions,
    approve_change,
    cancel_change,
    create_change,
    drift,
    four_eyes,
    four_eyes_setting,
    list_changes,
    rollback_change,
    run_change,
    set_four_eyes,
    show_change,
    start_run,
)
from microseg.deploy.changes import RUNNABLE, progress_written
from microseg.deploy.run import DEFAULT_CONFIRM_WITHIN_S
from microseg.server.api.models import PageLimit, PageOffset
from microseg.server.audit import audited
from microseg.server.auth import Admin, Approver, Editor, Viewer
from microseg.server.context import server_context
from microseg.server.problems import RequestBody
from microseg.store import StateConflict
from microseg.store.notices import CHANGE_NOTICES

router = APIRouter(prefix="/api", tags=["change control"])

ChangeId = Annotated[int, Path(ge=1, le=2**31 - 1)]
# A change in one of these states is done: its progress stream ends.
FINAL_STATES = ("succeeded", "failed", "rolled-back", "cancelled", "interrupted")
# One server-sent event (HTML Living Standard, "Server-sent events"): its name and JSON data.
SSE_EVENT_SCHEMA = {
    "type": "object",
    "properties": {"event": {"enum": ["log", "state"]}, "data": {"type": "string"}},
    "required": ["event", "data"],
}
PROGRESS_MAX_S = 3600.0  # a stream of a change nobody runs ends by itself


class NewChange(RequestBody):
    revision: int | None = Field(None, ge=1, le=2**31 - 1, description="Default: the head.")
    devices: list[str] = Field(default_factory=list, description="Default: every changed one.")
    description: str = Field("", max_length=10_000)


class Approve(RequestBody):
    comment: str = Field("", max_length=10_000)


class Run(RequestBody):
    dry_run: bool = Field(False, description="Load and show each device's diff, then discard it.")
    parallel: int = Field(1, ge=1, le=256)
    confirm_within: int = Field(DEFAULT_CONFIRM_WITHIN_S, ge=1, le=86399)
    continue_on_error: bool = False
    force: bool = Field(False, description="Replace owned configuration edited outside microseg.")
    timeout: float = Field(30.0, ge=0.1, le=3600)


class FourEyes(BaseModel):
    on: bool
    set_by: str | None = None
    set_at: str | None = None


class FourEyesSetting(RequestBody):
    on: bool


@router.get("/changes", response_model=list[dict[str, Any]])
def changes(
    principal: Viewer,
    request: Request,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> list[dict[str, Any]]:
    """Changes, newest first (devices by name), paged as `/api/sessions` is: `limit` of
    them after the `offset` newest (an empty list past the oldest)."""
    store = server_context(request).store
    return [c.as_json(details=False) for c in list_changes(store, limit, offset)]


@router.get("/changes/{change}", response_model=dict[str, Any])
def change(change: ChangeId, principal: Viewer, request: Request) -> dict[str, Any]:
    """A change: state, devices (planned and device diffs, outcome), approvals, and its
    log: every step of every device with who and when."""
    return show_change(server_context(request).store, change).as_json()


@router.post("/changes", response_model=dict[str, Any], status_code=201)
def create(body: NewChange, principal: Editor, request: Request) -> dict[str, Any]:
    """A change deploying a revision (default: the head) to the devices it changes,
    waiting for approval."""
    record = create_change(
        server_context(request).store,
        principal.name,
        body.revision,
        body.devices or None,
        body.description,
    )
    audited(
        request,
        principal,
        "change.create",
        f"change/{record.id}",
        {"revision": record.revision, "devices": [d.device for d in record.devices]},
    )
    return record.as_json()


@router.post("/changes/{change}/approve", response_model=dict[str, Any])
def approve(
    change: ChangeId, body: Approve, principal: Approver, request: Request
) -> dict[str, Any]:
    """Approve a pending change (with four-eyes on, not by its author: 403)."""
    record = approve_change(server_context(request).store, change, principal.name, body.comment)
    audited(request, principal, "change.approve", f"change/{change}", {"comment": body.comment})
    return record.as_json()


@router.post("/changes/{change}/cancel", response_model=dict[str, Any])
def cancel(change: ChangeId, principal: Editor, request: Request) -> dict[str, Any]:
    """Cancel a change that is pending, approved or interrupted."""
    record = cancel_change(server_context(request).store, change, principal.name)
    audited(request, principal, "change.cancel", f"change/{change}", {})
    return record.as_json()


@router.post("/changes/{change}/rollback", response_model=dict[str, Any], status_code=201)
def rollback(change: ChangeId, principal: Approver, request: Request) -> dict[str, Any]:
    """A new change deploying the revision the devices ran before `change`."""
    record = rollback_change(server_context(request).store, change, principal.name)
    audited(
        request,
        principal,
        "change.rollback",
        f"change/{change}",
        {"new_change": record.id, "revision": record.revision},
    )
    return record.as_json()


@router.post(
    "/changes/{change}/run",
    response_model=dict[str, Any],
    status_code=202,
    responses={200: {"description": "A dry run's result (it runs before the answer)."}},
)
def run(change: ChangeId, body: Run, principal: Approver, request: Request) -> Any:
    """Deploy an approved change: per device load, diff, commit with a confirm timer, read
    back, confirm. The run goes on in the background (202): follow it with GET
    /api/changes/{change} or the event stream GET /api/changes/{change}/progress. A dry
    run answers with each device's own diff when it is done (200)."""
    from fastapi.responses import JSONResponse

    store = server_context(request).store
    options = RunOptions(
        body.dry_run,
        body.parallel,
        body.confirm_within,
        body.continue_on_error,
        body.force,
        body.timeout,
    )
    if body.dry_run:
        result = run_change(store, change, principal.name, options)
        request.state.audited = True  # nothing was written on any device or in the store
        return JSONResponse(result.as_json(), status_code=200)
    record = show_change(store, change)
    if record.state not in RUNNABLE:
        raise StateConflict(
            f"change {change} is {record.state}: it must be {' or '.join(RUNNABLE)} to run it"
        )
    audited(request, principal, "change.run", f"change/{change}", body.model_dump())

    start_run(store, change, principal.name, options)
    return show_change(store, change).as_json()


@router.get(
    "/changes/{change}/progress",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}}}},
)
async def progress(change: ChangeId, principal: Viewer, request: Request) -> StreamingResponse:
    """Server-sent events (text/event-stream): each new log entry of the change as an
    `event` (JSON: at, actor, device, kind, message), then `state` with the final state
    when it is done. Starts with the log so far."""
    store = server_context(request).store
    await run_in_threadpool(show_change, store, change)  # 404 now, not in the stream

    async def events() -> AsyncIterator[str]:
        sent = 0
        seen = CHANGE_NOTICES.generation(change)  # before reading: no write falls between
        give_up = asyncio.get_running_loop().time() + PROGRESS_MAX_S
        while True:
            record = await run_in_threadpool(show_change, store, change)
            for event in record.events[sent:]:
                yield f"event: log\ndata: {json.dumps(event.as_json())}\n\n"
            sent = len(record.events)
            if record.state in FINAL_STATES:
                yield f"event: state\ndata: {json.dumps({'state': record.state})}\n\n"
                return
            if await request.is_disconnected() or asyncio.get_running_loop().time() > give_up:
                return
            seen = await progress_written(record, seen)

    return StreamingResponse(events(), media_type="text/event-stream")


@router.get("/settings/four-eyes", response_model=FourEyes)
def get_four_eyes(principal: Viewer, request: Request) -> dict[str, Any]:
    """Four-eyes: when on, a change's author cannot approve it."""
    return four_eyes_setting(server_context(request).store)


@router.put("/settings/four-eyes", response_model=FourEyes)
def put_four_eyes(body: FourEyesSetting, principal: Admin, request: Request) -> dict[str, Any]:
    """Turn four-eyes on or off (admin)."""
    store = server_context(request).store
    before = four_eyes(store)
    set_four_eyes(store, body.on, principal.name)
    audited(
        request, principal, "settings.four_eyes", "settings/four-eyes", {"on": [before, body.on]}
    )
    return get_four_eyes(principal, request)


@router.get("/drift", response_model=dict[str, Any])
def device_drift(
    principal: Viewer,
    request: Request,
    device: Annotated[list[str] | None, Query(description="Only these devices.")] = None,
    timeout: Annotated[float, Query(ge=0.1, le=3600)] = 30.0,
) -> dict[str, Any]:
    """The head revision's intent vs what each device runs (`microseg drift --json`);
    `drift` is true when any device differs or cannot be read."""
    head, reports = drift(server_context(request).store, device or [], timeout)
    return {
        "revision": head,
        "drift": any(not r.in_sync or r.error for r in reports),
        "devices": [r.as_json() for r in reports],
    }
