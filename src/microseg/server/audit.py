"""The audit trail of the server: every write, with user, time, source address and what
changed (`GET /api/audit`, admin).

A route that writes calls `audited(request, principal, action, target, detail)` after the
write succeeded, saying what changed in its own terms. `AuditGuard` makes sure nothing
slips through: a write request (POST, PUT, PATCH, DELETE) that succeeded without recording
anything is recorded by method and path.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from microseg.server.auth import Principal
    from microseg.server.context import ServerContext

log = logging.getLogger("microseg.server.audit")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def source_address(request: Request) -> str:
    return request.client.host if request.client is not None else "-"


def record(
    context: ServerContext,
    actor: str,
    source: str,
    action: str,
    target: str,
    detail: dict[str, Any],
) -> None:
    context.store.accounts.record(actor, source, action, target, detail)


def audited(
    request: Request, principal: Principal, action: str, target: str, detail: dict[str, Any]
) -> None:
    """Record a write the request made (call it after the write succeeded)."""
    from microseg.server.context import server_context

    record(server_context(request), principal.name, source_address(request), action, target, detail)
    request.state.audited = True


class AuditGuard:
    """ASGI middleware: a successful write request nobody recorded is recorded generically."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, sending)
        state = scope.get("state", {})
        principal = state.get("principal")
        if status < 400 and principal is not None and not state.get("audited"):
            request = Request(scope)
            await run_in_threadpool(
                record,
                request.app.state.context,
                principal.name,
                source_address(request),
                f"{scope['method']} {scope['path']}",
                scope["path"],
                {},
            )
