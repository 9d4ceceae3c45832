"""How much of a request the server reads: every body, on every route, at most
MAX_REQUEST_BODY_BYTES (the largest policy file, which an import sends whole).

A body is counted as it arrives, so a client that declares no length (chunked transfer)
cannot make the server hold more than the limit: FastAPI reads a JSON body whole before
looking at it, and one unauthenticated 300 MiB login request took the server from 160 MB
to 780 MB of memory.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from microseg.policyfile.loader import MAX_POLICY_FILE_BYTES
from microseg.server.problems import problem_response

MAX_REQUEST_BODY_BYTES = MAX_POLICY_FILE_BYTES
TOO_LARGE = f"request body: larger than {MAX_REQUEST_BODY_BYTES // 2**20} MiB"


class BodyLimit:
    """ASGI middleware: 413 for a body over the limit, declared (before the route runs) or
    counted as it arrives (the route's read of it fails with the 413)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_REQUEST_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            response = problem_response(Request(scope), 413, TOO_LARGE, "too-large")
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # FastAPI and Starlette re-raise an HTTPException met reading a body.
                    raise HTTPException(413, TOO_LARGE)
            return message

        await self.app(scope, counted, send)
