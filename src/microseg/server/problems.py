"""Errors as RFC 9457 problem documents (`application/problem+json`), rendered once here.

Every error the API returns has `type`, `title`, `status`, `detail` and `instance`; errors
about a policy object or a request field add `errors`, one per problem, each naming the
`object` (`rule 'web'`), the `field` (`sources.0`) and, for a request body, the JSON
`pointer` into it (RFC 9457 §3 shows the same extension).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from microseg.deploy.changes import FourEyesRefusal
from microseg.model import MicrosegError, PolicyError, Problem
from microseg.server.flowstore import FlowStoreUnavailable
from microseg.store import (
    NotFound,
    StateConflict,
    StoreConflict,
    StoreUnavailable,
    WorkspaceClosed,
)

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("microseg.server")


class RequestBody(BaseModel):
    """What a client sends: a field the request does not have is refused (422), not dropped.
    A typo must not change what happens: `{"dryrun": true}` would otherwise run a change
    for real, `{"revison": 3}` would deploy the head."""

    model_config = ConfigDict(extra="forbid")


_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "object": {"type": "string"},
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "pointer": {"type": ["string", "null"]},
                },
            },
        },
    },
}

# Every route may answer with these (the OpenAPI document says so).
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": _title,
        "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
    }
    for status, _title in (
        (400, "Bad request: a refused operation or bad input"),
        (401, "Not authenticated"),
        (403, "Forbidden: role, CSRF token or four-eyes"),
        (404, "Not found"),
        (409, "Conflict: state or concurrent change"),
        (413, "Request too large"),
        (415, "Unsupported media type"),
        (422, "Invalid input: every problem, with object, field and pointer"),
        (429, "Too many failed logins"),
        (503, "The server's store or flow store cannot be read or written (its log says why)"),
    )
}


class ApiProblem(Exception):
    """An error with its HTTP status, raised by routes and dependencies."""

    def __init__(
        self,
        status: int,
        detail: str,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.headers = headers or {}
        self.extensions = extensions


def problem_response(
    request: Request,
    status: int,
    detail: str,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:microseg:problem:{kind}" if kind else "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extensions,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def policy_problem(problem: Problem, pointer_base: str | None = None) -> dict[str, Any]:
    """One problem of a policy as an `errors` entry: object, field, message (and location)."""
    entry: dict[str, Any] = {
        "object": problem.object,
        "field": problem.field,
        "message": problem.message,
        "path": [str(part) for part in problem.path],
    }
    if problem.file is not None:
        entry.update(file=problem.file, line=problem.line, column=problem.column)
    if pointer_base is not None and len(problem.path) > 2:
        entry["pointer"] = pointer_base + "".join(f"/{part}" for part in problem.path[2:])
    return entry


def _status_of(error: MicrosegError) -> tuple[int, str]:
    if isinstance(error, NotFound):
        return 404, "not-found"
    if isinstance(error, StoreConflict | StateConflict | WorkspaceClosed):
        return 409, "conflict"
    if isinstance(error, PolicyError):
        return 422, "invalid-policy"
    if isinstance(error, FourEyesRefusal):
        return 403, "four-eyes"
    if isinstance(error, FlowStoreUnavailable):
        return 503, "flow-store-unavailable"
    if isinstance(error, StoreUnavailable):
        return 503, "store-unavailable"
    return 400, "refused"


def client_message(error: MicrosegError) -> str:
    """What a client is told: never where the server keeps its store (its log says)."""
    if isinstance(error, StoreUnavailable):
        log.warning("%s", error)
        return f"the server's store: {error.public}"
    return str(error)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, error: ApiProblem) -> JSONResponse:
        return problem_response(
            request, error.status, error.detail, error.kind, error.headers, **error.extensions
        )

    @app.exception_handler(MicrosegError)
    async def _microseg_error(request: Request, error: MicrosegError) -> JSONResponse:
        status, kind = _status_of(error)
        extensions: dict[str, Any] = {}
        if isinstance(error, PolicyError):
            base = getattr(error, "pointer_base", None)
            extensions["errors"] = [policy_problem(p, base) for p in error.problems]
        if isinstance(error, StoreConflict):
            extensions["objects"] = [f"{section}/{name}" for section, name in error.objects]
        return problem_response(request, status, client_message(error), kind, **extensions)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [_request_error(detail) for detail in error.errors()]
        detail = "; ".join(f"{e['field'] or e['in']}: {e['message']}" for e in errors)
        return problem_response(request, 422, detail, "invalid-request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        detail = error.detail if isinstance(error.detail, str) else _TITLES.get(error.status_code)
        kind = "too-large" if error.status_code == 413 else None
        return problem_response(
            request, error.status_code, str(detail), kind, headers=dict(error.headers or {})
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, error: Exception) -> JSONResponse:
        # A bug: logged with its traceback for the operator, never sent to the client.
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=error)
        return problem_response(
            request, 500, f"internal error ({type(error).__name__}); this is a bug in microseg"
        )


def _request_error(detail: Any) -> dict[str, Any]:
    """A FastAPI validation error without its `input` (it may be a password)."""
    location = [str(part) for part in detail.get("loc", ())]
    where, path = (location[0], location[1:]) if location else ("body", [])
    message = detail.get("msg", "invalid")
    if detail.get("type") == "json_invalid":
        # loc is (body, character offset): not a field, so no field or pointer names it.
        reason = (detail.get("ctx") or {}).get("error", "")
        message = f"not valid JSON at character {path[0] if path else 0}: {reason}".rstrip(": ")
        path = []
    elif detail.get("type") == "extra_forbidden":
        message = "unknown field (not a field of this request)"
    return {
        "in": where,
        "field": ".".join(path),
        "pointer": "#/" + "/".join(path) if where == "body" else None,
        "message": message,
    }
