"""Who is asking, and may they: API tokens, UI session cookies with CSRF, roles, login.

* `Authorization: Bearer mst_...`: an API token (`microseg user token add`, or POST
  /api/tokens). No cookie is involved, so no CSRF check.
* Cookie `microseg_session` (HttpOnly, SameSite=Strict, Secure under TLS), set by
  POST /api/auth/login or the UI's login form. Every request with a method that is not
  GET/HEAD/OPTIONS must also carry the session's CSRF token, in the `X-CSRF-Token` header
  (htmx: `hx-headers`) or a `csrf_token` form field; without it: 403. The token is derived
  from the session secret (HMAC), so it needs no storage and dies with the session
  (OWASP CSRF cheat sheet: synchronizer token pattern).
* Roles, lowest first: viewer (read), editor (workspaces, imports, changes), approver
  (approve, run, roll back changes), admin (users, tokens of others, devices, settings).
  Routes declare the least role they need: `Depends(require("editor"))`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from microseg.server import accounts
from microseg.server.audit import audited, record, source_address
from microseg.server.context import ServerContext, server_context
from microseg.server.problems import ApiProblem, RequestBody
from microseg.store.accounts import UserRecord

SESSION_COOKIE = "microseg_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
Role = Literal["viewer", "editor", "approver", "admin"]


@dataclass(frozen=True)
class Principal:
    """An authenticated user and how they authenticated."""

    user: UserRecord
    via: Literal["token", "session"]
    session_secret: str | None = None  # the cookie's value; only to derive the CSRF token

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def role(self) -> str:
        return self.user.role

    def __repr__(self) -> str:  # never the session secret
        return f"Principal({self.user.name!r}, {self.user.role!r}, via={self.via!r})"


def csrf_for(session_secret: str) -> str:
    return hmac.new(session_secret.encode(), b"microseg-csrf", hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str | None:
    """The CSRF token the UI must send back with the current session (None: no session)."""
    secret = request.cookies.get(SESSION_COOKIE)
    return None if not secret else csrf_for(secret)


def _unauthenticated(detail: str) -> ApiProblem:
    # RFC 9110 §11.6.1: a 401 names the scheme the client should use.
    return ApiProblem(
        401, detail, "unauthenticated", headers={"WWW-Authenticate": 'Bearer realm="microseg"'}
    )


async def authenticate(request: Request) -> Principal | None:
    """The request's user (None: no credentials at all). Cached for the request.

    Wrong credentials raise 401; a cookie session writing without its CSRF token, 403."""
    if "principal" in request.state._state:
        cached: Principal | None = request.state.principal
        return cached
    context = server_context(request)
    principal: Principal | None = None
    authorization = request.headers.get("authorization")
    secret = request.cookies.get(SESSION_COOKIE)
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthenticated("Authorization: expected 'Bearer <API token>'")
        user = await run_in_threadpool(
            context.store.accounts.user_by_token, accounts.secret_hash(token.strip())
        )
        if user is None:
            raise _unauthenticated("the API token is unknown, revoked, or its user is disabled")
        principal = Principal(user, "token")
    elif secret:
        user = await run_in_threadpool(
            context.store.accounts.user_by_session, accounts.secret_hash(secret), context.clock()
        )
        if user is None:
            raise _unauthenticated("the session has expired or was ended: log in again")
        principal = Principal(user, "session", secret)
        if request.method not in SAFE_METHODS:
            await _check_csrf(request, secret)
    request.state.principal = principal
    return principal


async def _check_csrf(request: Request, secret: str) -> None:
    sent = request.headers.get(CSRF_HEADER)
    content_type = request.headers.get("content-type", "")
    if sent is None and content_type.startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()  # Starlette keeps it: the route reads the same form
        field = form.get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    if sent is None or not hmac.compare_digest(sent, csrf_for(secret)):
        raise ApiProblem(
            403,
            f"missing or wrong CSRF token: a session must send it in the {CSRF_HEADER} header "
            f"or the {CSRF_FIELD} form field with every write",
            "csrf",
        )


def require(minimum: Role) -> Any:
    """A dependency: the principal, if their role is at least `minimum` (401 / 403 if not)."""

    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        if principal is None:
            raise _unauthenticated(
                "authentication required: log in (POST /api/auth/login) or send an API token "
                "as 'Authorization: Bearer <token>'"
            )
        if not accounts.may(principal.role, minimum):
            raise ApiProblem(
                403,
                f"user {principal.name!r} is {principal.role}; this needs the {minimum} role",
                "forbidden",
            )
        return principal

    dependency.__name__ = f"require_{minimum}"
    return dependency


# Devices and monitor nodes say where microseg connects with the device credentials:
# changing them is an admin's (issue 13: "admin (users, devices, credentials)").
ADMIN_SECTIONS = frozenset({"devices", "monitor_nodes"})


def check_sections(principal: Principal, sections: Iterable[str]) -> None:
    """403 unless `principal` may change objects of every one of `sections`."""
    touched = sorted(ADMIN_SECTIONS.intersection(sections))
    if touched and not accounts.may(principal.role, "admin"):
        raise ApiProblem(
            403,
            f"user {principal.name!r} is {principal.role}; changing {' and '.join(touched)} "
            "(where microseg connects with the device credentials) needs the admin role",
            "forbidden",
        )


Viewer = Annotated[Principal, Depends(require("viewer"))]
Editor = Annotated[Principal, Depends(require("editor"))]
Approver = Annotated[Principal, Depends(require("approver"))]
Admin = Annotated[Principal, Depends(require("admin"))]


# -- login and logout -------------------------------------------------------------------------


def login(request: Request, response: Response, username: str, password: str) -> Principal:
    """Check the password (rate-limited), start a session and set its cookie on `response`.

    The UI's login form calls this too. Raises 429 when the name or address is over its
    budget of failures, 401 on a wrong name or password (the same message for both)."""
    context = server_context(request)
    source = source_address(request)
    wait = context.limiter.retry_after(username, source)
    if wait is not None:
        raise ApiProblem(
            429,
            "too many failed logins: wait before trying again",
            "rate-limited",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    user = context.store.accounts.find_user(username)
    if not accounts.verify_password(user, password):
        context.limiter.failed(username, source)
        # A name that is no user is not written down: it may be a password typed in the
        # wrong field.
        actor = user.name if user is not None else "-"
        record(context, actor, source, "login.failed", "session", {})
        raise _unauthenticated("wrong user name or password")
    assert user is not None
    context.limiter.succeeded(username)
    secret = accounts.new_secret()
    expires = context.clock() + context.session_lifetime
    context.store.accounts.add_session(accounts.secret_hash(secret), user.name, expires, source)
    record(context, user.name, source, "login", "session", {"expires_at": expires.isoformat()})
    request.state.audited = True
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(context.session_lifetime.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=context.secure_cookies,
        path="/",
    )
    principal = Principal(user, "session", secret)
    request.state.principal = principal
    return principal


def logout(request: Request, response: Response) -> None:
    """End the request's session (if any) and clear its cookie."""
    context = server_context(request)
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        context.store.accounts.end_session(accounts.secret_hash(secret))
    response.delete_cookie(SESSION_COOKIE, path="/", samesite="strict", httponly=True)


class LoginRequest(RequestBody):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=accounts.MAX_PASSWORD)


class SessionInfo(BaseModel):
    user: str
    role: str
    via: str
    csrf_token: str | None = Field(
        None, description=f"Send it back in the {CSRF_HEADER} header with every write."
    )


router = APIRouter(prefix="/api/auth", tags=["auth"])


def _session_info(principal: Principal) -> SessionInfo:
    csrf = csrf_for(principal.session_secret) if principal.session_secret else None
    return SessionInfo(user=principal.name, role=principal.role, via=principal.via, csrf_token=csrf)


@router.post("/login", response_model=SessionInfo)
def login_route(body: LoginRequest, request: Request, response: Response) -> SessionInfo:
    """Log in with a user name and password: sets the session cookie, returns the CSRF token."""
    return _session_info(login(request, response, body.username, body.password))


@router.post("/logout", status_code=204)
def logout_route(principal: Viewer, request: Request, response: Response) -> None:
    """End this session."""
    logout(request, response)
    audited(request, principal, "logout", "session", {})


@router.get("/whoami", response_model=SessionInfo)
def whoami(principal: Viewer) -> SessionInfo:
    """The authenticated user, their role, and (for a session) the CSRF token."""
    return _session_info(principal)


__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Admin",
    "Approver",
    "Editor",
    "Principal",
    "ServerContext",
    "Viewer",
    "authenticate",
    "csrf_token",
    "login",
    "logout",
    "require",
]
