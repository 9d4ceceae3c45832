"""Change Control: the list, a change with its per-device diffs and log, Approve, Run with
live per-device progress (server-sent events), Cancel, Rollback.

Progress is read from the store, where the runner records every device step before the
device sees it: the page follows a run started here, by `microseg change run` in a shell,
or by another server alike, and a reload shows the same thing."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from microseg.deploy import (
    RunOptions,
    approve_change,
    cancel_change,
    list_changes,
    rollback_change,
    show_change,
    start_run,
)
from microseg.deploy.changes import RUNNABLE, progress_written
from microseg.deploy.run import DEFAULT_CONFIRM_WITHIN_S
from microseg.model import MicrosegError
from microseg.server.web.errors import WebRoute
from microseg.server.web.identity import Approver, Editor, Viewer, actor, audit, store_of
from microseg.server.web.render import ENVIRONMENT, Paging, page, page_offset
from microseg.store import ChangeRecord
from microseg.store.notices import CHANGE_NOTICES

router = APIRouter(route_class=WebRoute)

START_WAIT_POLLS, START_WAIT_POLL_S = 200, 0.05
CHANGES_PER_PAGE = 50


@router.get("/changes", response_class=HTMLResponse)
def changes(request: Request, _: Viewer) -> HTMLResponse:
    """A page of changes, newest first (`?offset=N`): a store with thousands of runs is not
    rendered all at once."""
    offset = page_offset(request)
    with store_of(request) as store:
        paging = Paging(offset, CHANGES_PER_PAGE, store.changes.count())
        records = list_changes(store, CHANGES_PER_PAGE, offset)
    return page(
        request,
        "changes.html",
        "changes",
        title="Change Control",
        changes=records,
        paging=paging,
    )


@router.get("/changes/{change}", response_class=HTMLResponse)
def change_detail(request: Request, _: Viewer, change: int) -> HTMLResponse:
    return _change_page(request, change, "change.html")


@router.get("/changes/{change}/panel", response_class=HTMLResponse)
def change_panel(request: Request, _: Viewer, change: int) -> HTMLResponse:
    """The change's state, devices and log: what the page swaps in when a run ends."""
    return _change_page(request, change, "fragments/change_panel.html")


def _change_page(request: Request, change: int, template: str) -> HTMLResponse:
    with store_of(request) as store:
        record = show_change(store, change)
    return page(
        request,
        template,
        "changes",
        title=f"Change {record.id}",
        change=record,
        live=record.state == "running",
        runnable=record.state in RUNNABLE,
        confirm_within=DEFAULT_CONFIRM_WITHIN_S,
    )


@router.post("/changes/{change}/approve")
async def approve(request: Request, _: Approver, change: int) -> Response:
    comment = str((await request.form()).get("comment") or "")
    with store_of(request) as store:
        approve_change(store, change, actor(request), comment)
    audit(request, "change.approve", f"change/{change}", {"comment": comment})
    return RedirectResponse(f"/changes/{change}", status_code=303)


@router.post("/changes/{change}/cancel")
async def cancel(request: Request, _: Editor, change: int) -> Response:
    with store_of(request) as store:
        cancel_change(store, change, actor(request))
    audit(request, "change.cancel", f"change/{change}")
    return RedirectResponse(f"/changes/{change}", status_code=303)


@router.post("/changes/{change}/rollback")
async def rollback(request: Request, _: Approver, change: int) -> Response:
    with store_of(request) as store:
        record = rollback_change(store, change, actor(request))
    audit(request, "change.rollback", f"change/{change}", {"change": record.id})
    return RedirectResponse(f"/changes/{record.id}", status_code=303)


@router.post("/changes/{change}/run")
async def run(request: Request, _: Approver, change: int) -> Response:
    """Start the run in the background and show the change, which follows its progress."""
    form = await request.form()
    options = RunOptions(
        parallel=_whole(form.get("parallel"), 1, 256, 4, "parallel"),
        confirm_within=_whole(
            form.get("confirm_within"), 1, 86399, DEFAULT_CONFIRM_WITHIN_S, "confirm within"
        ),
        continue_on_error=form.get("continue_on_error") == "1",
    )
    who = actor(request)
    with store_of(request) as store:
        record = show_change(store, change)
        if record.state not in RUNNABLE:
            raise MicrosegError(
                f"change {change} is {record.state}: it must be {' or '.join(RUNNABLE)} to run it"
            )
        runner = start_run(store, change, who, options)
    audit(request, "change.run", f"change/{change}", {"parallel": options.parallel})
    await run_in_threadpool(_until_moved, request, change, record.state, runner)
    return RedirectResponse(f"/changes/{change}", status_code=303)


def _until_moved(request: Request, change: int, state: str, runner: threading.Thread) -> None:
    """Wait until the run has recorded that it started (or ended), so the page that follows
    shows it running; at most START_WAIT_POLLS looks."""
    for _ in range(START_WAIT_POLLS):
        with store_of(request) as store:
            if store.changes.get(change).state != state or not runner.is_alive():
                return
        runner.join(START_WAIT_POLL_S)


def _whole(value: object, low: int, high: int, default: int, what: str) -> int:
    text = str(value or "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise MicrosegError(f"{what} {text[:20]!r}: a whole number from {low} to {high}")
    return int(text)


@router.get("/changes/{change}/events")
async def events(request: Request, _: Viewer, change: int) -> StreamingResponse:
    """Server-sent events: `device-N` (the cells of the device's row, whenever its state or
    last log line changes) and `done` when the run has ended."""

    def snapshot() -> ChangeRecord:
        with store_of(request) as store:
            return show_change(store, change)

    async def stream() -> AsyncIterator[str]:
        sent: dict[str, str] = {}
        seen = CHANGE_NOTICES.generation(change)  # before reading: no write falls between
        while not await request.is_disconnected():
            record = await run_in_threadpool(snapshot)
            for position, device in enumerate(record.devices):
                row = ENVIRONMENT.get_template("fragments/device_cells.html").render(
                    device=device, last=_last_line(record, device.device)
                )
                if sent.get(device.device) != row:
                    sent[device.device] = row
                    yield _event(f"device-{position}", row)
            if record.state != "running":
                yield _event("done", record.state)
                return
            seen = await progress_written(record, seen)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def _last_line(record: ChangeRecord, device: str) -> str:
    for event in reversed(record.events):
        if event.device == device:
            return event.message.splitlines()[0] if event.message else ""
    return ""


def _event(name: str, data: str) -> str:
    """One SSE event; each line of the data on a `data:` line (WHATWG HTML, 9.2.6)."""
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {name}\n{lines}\n"
