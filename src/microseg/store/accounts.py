"""Persistence of the server's users, API tokens, UI sessions and audit trail.

Only storage: hashing passwords, what a role may do and how a request authenticates is
`microseg.server`. Secrets never reach this module in clear: a password arrives as its
argon2 hash, a token or session cookie as its SHA-256.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from microseg.model import MicrosegError
from microseg.store.errors import NotFound
from microseg.store.schema import ROLES, ApiToken, AuditEvent, User, UserSession

if TYPE_CHECKING:
    from microseg.store.store import Store

MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    role: str
    disabled: bool
    created_at: datetime
    password_changed_at: datetime
    password_hash: str

    def as_json(self) -> dict[str, Any]:
        """The user as the API and `user list --json` show it: never the password hash."""
        return {
            "name": self.name,
            "role": self.role,
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat(),
            "password_changed_at": self.password_changed_at.isoformat(),
        }


@dataclass(frozen=True)
class TokenRecord:
    id: int
    user: str
    name: str
    created_at: datetime
    revoked_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    source: str
    action: str
    target: str
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "source": self.source,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
        }


class AccountTable:
    """Users, tokens, sessions and the audit trail of one store (`store.accounts`)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # -- users ------------------------------------------------------------------------------

    def add_user(self, name: str, role: str, password_hash: str) -> UserRecord:
        from microseg.store.store import _now

        check_role(role)
        with self._store._writing() as (session, _):
            if session.scalar(select(User).where(User.name == name)) is not None:
                raise MicrosegError(f"user {name!r} already exists")
            now = _now()
            row = User(
                name=name,
                role=role,
                password_hash=password_hash,
                disabled=False,
                created_at=now,
                password_changed_at=now,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError:  # added by another process at the same moment
                raise MicrosegError(f"user {name!r} already exists") from None
            return _user_record(row)

    def users(self) -> list[UserRecord]:
        with self._store._reading() as session:
            found = sorted(session.scalars(select(User)), key=lambda u: u.name.encode())
            return [_user_record(user) for user in found]

    def user(self, name: str) -> UserRecord:
        with self._store._reading() as session:
            return _user_record(_user(session, name))

    def find_user(self, name: str) -> UserRecord | None:
        with self._store._reading() as session:
            row = session.scalar(select(User).where(User.name == name))
            return None if row is None else _user_record(row)

    def update_user(self, name: str, **fields: Any) -> UserRecord:
        """Set `role`, `disabled` or `password_hash`. A new password or disabling a user ends
        their UI sessions; disabling also makes their tokens useless (checked at each use)."""
        from microseg.store.store import _now

        if "role" in fields:
            check_role(fields["role"])
        with self._store._writing() as (session, _):
            row = _user(session, name)
            for field, value in fields.items():
                setattr(row, field, value)
            if "password_hash" in fields:
                row.password_changed_at = _now()
            if "password_hash" in fields or fields.get("disabled"):
                session.execute(delete(UserSession).where(UserSession.user_id == row.id))
            return _user_record(row)

    def count_admins(self) -> int:
        with self._store._reading() as session:
            query = select(func.count()).where(User.role == "admin", User.disabled.is_(False))
            return session.scalar(query.select_from(User)) or 0

    # -- API tokens -------------------------------------------------------------------------

    def add_token(self, user: str, name: str, token_hash: str) -> TokenRecord:
        from microseg.store.store import _now

        with self._store._writing() as (session, _):
            owner = _user(session, user)
            row = ApiToken(user_id=owner.id, name=name, token_hash=token_hash, created_at=_now())
            session.add(row)
            session.flush()
            return TokenRecord(row.id, owner.name, row.name, row.created_at, None)

    def tokens(self, user: str | None = None) -> list[TokenRecord]:
        with self._store._reading() as session:
            query = select(ApiToken, User.name).join(User).order_by(ApiToken.id)
            if user is not None:
                query = query.where(User.name == user)
            return [
                TokenRecord(token.id, owner, token.name, token.created_at, token.revoked_at)
                for token, owner in session.execute(query)
            ]

    def revoke_token(self, token_id: int, user: str | None = None) -> TokenRecord:
        """Revoke a token (of `user` only, when given). Revoking twice is not an error."""
        from microseg.store.store import _now

        with self._store._writing() as (session, _):
            found = session.get(ApiToken, token_id) if 1 <= token_id <= MAX_ID else None
            owner = None if found is None else session.get_one(User, found.user_id)
            if found is None or owner is None or (user is not None and owner.name != user):
                raise NotFound(f"no API token {token_id}")
            if found.revoked_at is None:
                found.revoked_at = _now()
            return TokenRecord(found.id, owner.name, found.name, found.created_at, found.revoked_at)

    def user_by_token(self, token_hash: str) -> UserRecord | None:
        """The enabled user a live (not revoked) token belongs to."""
        with self._store._reading() as session:
            row = session.scalar(
                select(User)
                .join(ApiToken)
                .where(
                    ApiToken.token_hash == token_hash,
                    ApiToken.revoked_at.is_(None),
                    User.disabled.is_(False),
                )
            )
            return None if row is None else _user_record(row)

    # -- UI sessions ------------------------------------------------------------------------

    def add_session(self, token_hash: str, user: str, expires_at: datetime, source: str) -> None:
        from microseg.store.store import _now

        with self._store._writing() as (session, _):
            owner = _user(session, user)
            now = _now()
            # Expired sessions of anyone go as a new one comes: the table stays small.
            session.execute(delete(UserSession).where(UserSession.expires_at < now))
            session.add(
                UserSession(
                    token_hash=token_hash,
                    user_id=owner.id,
                    created_at=now,
                    expires_at=expires_at,
                    source=source[:100],
                )
            )

    def user_by_session(self, token_hash: str, now: datetime) -> UserRecord | None:
        with self._store._reading() as session:
            row = session.scalar(
                select(User)
                .join(UserSession)
                .where(
                    UserSession.token_hash == token_hash,
                    UserSession.expires_at > now,
                    User.disabled.is_(False),
                )
            )
            return None if row is None else _user_record(row)

    def end_session(self, token_hash: str) -> None:
        with self._store._writing() as (session, _):
            session.execute(delete(UserSession).where(UserSession.token_hash == token_hash))

    # -- audit trail ------------------------------------------------------------------------

    def record(
        self, actor: str, source: str, action: str, target: str, detail: dict[str, Any]
    ) -> None:
        from microseg.store.store import _now

        body = json.dumps(detail, sort_keys=True, ensure_ascii=False, default=str)
        with self._store._writing() as (session, _):
            session.add(
                AuditEvent(
                    at=_now(),
                    actor=actor[:200],
                    source=source[:100],
                    action=action[:100],
                    target=target,
                    detail=body,
                )
            )

    def audit(
        self,
        limit: int = 100,
        offset: int = 0,
        actor: str | None = None,
        action: str | None = None,
    ) -> list[AuditRecord]:
        """Audit events, newest first."""
        with self._store._reading() as session:
            query = select(AuditEvent).order_by(AuditEvent.id.desc())
            if actor is not None:
                query = query.where(AuditEvent.actor == actor)
            if action is not None:
                query = query.where(AuditEvent.action == action)
            rows = session.scalars(query.offset(offset).limit(limit))
            return [
                AuditRecord(r.id, r.at, r.actor, r.source, r.action, r.target, json.loads(r.detail))
                for r in rows
            ]


def check_role(role: str) -> None:
    if role not in ROLES:
        raise MicrosegError(f"role {role!r}: expected one of {', '.join(ROLES)}")


def _user(session: Session, name: str) -> User:
    row = session.scalar(select(User).where(User.name == name))
    if row is None:
        raise NotFound(f"no user {name!r}")
    return row


def _user_record(row: User) -> UserRecord:
    return UserRecord(
        row.id,
        row.name,
        row.role,
        row.disabled,
        row.created_at,
        row.password_changed_at,
        row.password_hash,
    )
