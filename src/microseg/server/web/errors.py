"""How a page answers what goes wrong: no session -> the login form; a refusal (bad input,
a conflict, a missing role or CSRF token) -> the page's own error message with the status
the API would give, never a traceback and never a problem document in a browser."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from microseg.model import MicrosegError
from microseg.server.flowstore import FlowStoreUnavailable
from microseg.server.problems import ApiProblem, client_message
from microseg.server.web.identity import SignInRequired
from microseg.server.web.render import error_page
from microseg.store import (
    NotFound,
    StateConflict,
    StoreConflict,
    StoreUnavailable,
    WorkspaceClosed,
)


def _status(error: MicrosegError) -> int:
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, StoreConflict | StateConflict | WorkspaceClosed):
        return 409
    if isinstance(error, FlowStoreUnavailable | StoreUnavailable):
        return 503
    return 400


class WebRoute(APIRoute):
    """A UI route: errors become pages (or, for htmx, fragments swapped into the page)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                if request.headers.get("HX-Request"):
                    return Response(status_code=401, headers={"HX-Redirect": "/login"})
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
            except ApiProblem as problem:
                return error_page(request, problem.detail, problem.status, problem.headers)
            except MicrosegError as error:
                return error_page(request, client_message(error), _status(error))

        return answer
