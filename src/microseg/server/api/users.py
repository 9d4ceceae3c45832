"""Users, API tokens and the audit trail (admin; a user manages their own tokens)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from microseg.server import accounts
from microseg.server.api.models import PageOffset
from microseg.server.audit import audited
from microseg.server.auth import Admin, Role, Viewer
from microseg.server.context import server_context
from microseg.server.problems import ApiProblem, RequestBody

router = APIRouter(prefix="/api", tags=["users"])


class UserOut(BaseModel):
    name: str
    role: str
    disabled: bool
    created_at: str
    password_changed_at: str


class NewUser(RequestBody):
    name: str = Field(min_length=1, max_length=64)
    role: Role
    password: str = Field(min_length=accounts.MIN_PASSWORD, max_length=accounts.MAX_PASSWORD)


class UserUpdate(RequestBody):
    role: Role | None = None
    disabled: bool | None = None
    password: str | None = Field(
        None, min_length=accounts.MIN_PASSWORD, max_length=accounts.MAX_PASSWORD
    )


class TokenOut(BaseModel):
    id: int
    user: str
    name: str
    created_at: str
    revoked_at: str | None


class NewToken(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    user: str | None = Field(None, description="Another user's token (admin only).")


class CreatedToken(TokenOut):
    token: str = Field(description="The token itself: shown this once, stored only hashed.")


class AuditOut(BaseModel):
    id: int
    at: str
    actor: str
    source: str
    action: str
    target: str
    detail: dict[str, Any]


@router.get("/users", response_model=list[UserOut])
def list_users(principal: Admin, request: Request) -> list[dict[str, Any]]:
    """Every user with their role (never a password hash)."""
    return [user.as_json() for user in server_context(request).store.accounts.users()]


@router.post("/users", response_model=UserOut, status_code=201)
def add_user(body: NewUser, principal: Admin, request: Request) -> dict[str, Any]:
    """Add a user."""
    user = accounts.add_user(server_context(request).store, body.name, body.role, body.password)
    audited(request, principal, "user.add", f"user/{user.name}", {"role": user.role})
    return user.as_json()


@router.patch("/users/{name}", response_model=UserOut)
def update_user(name: str, body: UserUpdate, principal: Admin, request: Request) -> dict[str, Any]:
    """Change a user's role, disable or enable them, or set their password."""
    store = server_context(request).store
    fields: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"password"})
    if body.password is not None:
        fields["password_hash"] = accounts.hash_password(body.password)
    if not fields:
        raise ApiProblem(
            422, "nothing to change: give role, disabled or password", "invalid-request"
        )
    before = store.accounts.user(name)
    _keep_an_admin(request, before.name, fields)
    user = store.accounts.update_user(name, **fields)
    changed: dict[str, Any] = {
        key: [getattr(before, key), value]
        for key, value in fields.items()
        if key != "password_hash"
    }
    if "password_hash" in fields:
        changed["password"] = "changed"  # never the password, nor its hash
    audited(request, principal, "user.update", f"user/{name}", changed)
    return user.as_json()


def _keep_an_admin(request: Request, name: str, fields: dict[str, Any]) -> None:
    store = server_context(request).store
    user = store.accounts.user(name)
    demoted = fields.get("role", "admin") != "admin" or fields.get("disabled") is True
    if (
        user.role == "admin"
        and not user.disabled
        and demoted
        and store.accounts.count_admins() <= 1
    ):
        raise ApiProblem(
            409, f"user {name!r} is the last enabled admin: add another admin first", "conflict"
        )


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(
    principal: Viewer,
    request: Request,
    user: Annotated[str | None, Query(description="Another user's tokens (admin only).")] = None,
) -> list[dict[str, Any]]:
    """Your API tokens (an admin: anyone's, or every token without `user`)."""
    owner = _token_owner(principal, user)
    if principal.role == "admin" and user is None:
        owner = None
    return [token.as_json() for token in server_context(request).store.accounts.tokens(owner)]


@router.post("/tokens", response_model=CreatedToken, status_code=201)
def create_token(body: NewToken, principal: Viewer, request: Request) -> dict[str, Any]:
    """Create an API token. The response holds the token itself, once."""
    owner = _token_owner(principal, body.user) or principal.name
    token, secret = accounts.create_token(server_context(request).store, owner, body.name)
    audited(
        request, principal, "token.create", f"user/{owner}/token/{token.id}", {"name": body.name}
    )
    return {**token.as_json(), "token": secret}


@router.delete("/tokens/{token_id}", response_model=TokenOut)
def revoke_token(token_id: int, principal: Viewer, request: Request) -> dict[str, Any]:
    """Revoke an API token (yours; an admin: anyone's)."""
    owner = None if principal.role == "admin" else principal.name
    token = server_context(request).store.accounts.revoke_token(token_id, owner)
    audited(request, principal, "token.revoke", f"user/{token.user}/token/{token.id}", {})
    return token.as_json()


def _token_owner(principal: Any, user: str | None) -> str | None:
    if user is not None and user != principal.name and principal.role != "admin":
        raise ApiProblem(403, "only an admin manages another user's tokens", "forbidden")
    return user if user is not None else principal.name


@router.get("/audit", response_model=list[AuditOut])
async def audit_trail(
    principal: Admin,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: PageOffset = 0,
    actor: str | None = None,
    action: str | None = None,
) -> list[dict[str, Any]]:
    """The audit trail, newest first: every write with who, when, from where and what."""
    found = await run_in_threadpool(
        server_context(request).store.accounts.audit, limit, offset, actor, action
    )
    return [event.as_json() for event in found]
