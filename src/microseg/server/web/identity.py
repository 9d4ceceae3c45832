"""Who is signed in and what they may do, the CSRF token of their session, and the store
and flow store of the server: what the UI takes from the app it is mounted in
(`microseg.server.auth` and its ServerContext). A page needs a session; a write needs the
role the API would need for it, and the session's CSRF token (checked by the API's
`authenticate`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, Request

from microseg.server.audit import audited
from microseg.server.auth import Role, require
from microseg.server.auth import csrf_token as session_csrf_token
from microseg.server.context import server_context
from microseg.server.problems import ApiProblem
from microseg.store import Store


class SignInRequired(Exception):
    """No session (or an expired one): the page sends the browser to the login form."""


def signed_in(request: Request) -> Any:
    """The signed-in principal (`name`, `role`), or None on the login page."""
    return request.state._state.get("principal")


def actor(request: Request) -> str:
    """The name every write made through the UI is recorded under."""
    principal = signed_in(request)
    if principal is None:
        raise SignInRequired
    return str(principal.name)


def audit(request: Request, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
    """Record a write the page made in the server's audit trail (after it succeeded), in the
    API's terms: `workspace.set`, `change.approve`..."""
    audited(request, signed_in(request), action, target, detail or {})


def csrf_token(request: Request) -> str:
    return session_csrf_token(request) or ""


def _needs(minimum: Role) -> Any:
    """The API's role check (`microseg.server.auth.require`), where no session sends the
    browser to the login form instead of answering 401."""
    check = require(minimum)

    async def dependency(request: Request) -> Any:
        try:
            return await check(request)
        except ApiProblem as problem:
            if problem.status == 401:
                raise SignInRequired from None
            raise

    dependency.__name__ = f"web_{minimum}"
    return dependency


Viewer = Annotated[Any, Depends(_needs("viewer"))]
Editor = Annotated[Any, Depends(_needs("editor"))]
Approver = Annotated[Any, Depends(_needs("approver"))]


@contextmanager
def store_of(request: Request) -> Iterator[Store]:
    """The server's store (opened once by the app factory)."""
    yield server_context(request).store
