"""The store's tables (SQLAlchemy 2 typed ORM). Alembic migrations create exactly these.

History is stored as object versions: a row holds one object's canonical JSON body
(`microseg.policyfile.object_document`) and the revisions it is valid in, from `valid_from`
up to (not including) `valid_to`, or to the head while `valid_to` is NULL. A revision that
changes one object adds one row and closes one, whatever the size of the policy set, and
reading revision N is one query (the versions valid at N), never a replay of history. A
workspace holds only its changes: one row per object it sets (body) or deletes (no body).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Dialect, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

WORKSPACE_STATES = ("open", "submitted", "abandoned")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite has no timezone type)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Mainline(Base):
    """One row (id 1): the head revision. Write transactions lock it to serialize."""

    __tablename__ = "mainline"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    head_revision_id: Mapped[int | None] = mapped_column(ForeignKey("revisions.id"))


class Revision(Base):
    """A mainline revision: the audit trail is the list of these."""

    __tablename__ = "revisions"

    # Numbered head + 1 under the mainline lock: no gaps, unlike a sequence.
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    # Unique: mainline is a line, never a tree.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("revisions.id"), unique=True)
    author: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ObjectVersion(Base):
    """One version of one object: its body in revisions valid_from <= N < valid_to (or N up
    to the head while valid_to is NULL). A revision that changes or deletes the object sets
    valid_to to its own number; a change also adds the next version from that number on."""

    __tablename__ = "object_versions"
    __table_args__ = (
        CheckConstraint(
            "valid_to IS NULL OR valid_to > valid_from", name="ck_object_versions_interval"
        ),
        # At most one current version per object: what the head holds.
        Index(
            "uq_object_versions_current",
            "section",
            "name",
            unique=True,
            sqlite_where=text("valid_to IS NULL"),
            postgresql_where=text("valid_to IS NULL"),
        ),
    )

    section: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String, primary_key=True)
    valid_from: Mapped[int] = mapped_column(ForeignKey("revisions.id"), primary_key=True)
    valid_to: Mapped[int | None] = mapped_column(ForeignKey("revisions.id"))
    body: Mapped[str] = mapped_column(Text)


class Workspace(Base):
    """A named change set on a base revision."""

    __tablename__ = "workspaces"
    __table_args__ = (
        CheckConstraint("state IN ('open', 'submitted', 'abandoned')", name="ck_workspaces_state"),
        # At most one open workspace per name; closed ones stay for the record.
        Index(
            "uq_workspaces_open_name",
            "name",
            unique=True,
            sqlite_where=text("state = 'open'"),
            postgresql_where=text("state = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    base_revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id"))
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(20), default="open")
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    submitted_revision_id: Mapped[int | None] = mapped_column(ForeignKey("revisions.id"))


class WorkspaceChange(Base):
    """An object a workspace sets (its full canonical body) or deletes (body is NULL)."""

    __tablename__ = "workspace_changes"

    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    section: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String, primary_key=True)
    body: Mapped[str | None] = mapped_column(Text)


# -- change control ---------------------------------------------------------------------------

CHANGE_STATES = (
    "pending-approval",
    "approved",
    "running",
    "succeeded",
    "failed",
    "rolled-back",
    "cancelled",
    "interrupted",
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Change(Base):
    """A reviewed deploy of one revision to some devices (`microseg change`)."""

    __tablename__ = "changes"
    __table_args__ = (CheckConstraint(_in("state", CHANGE_STATES), name="ck_changes_state"),)

    # Numbered max + 1 under the mainline lock, like revisions: no gaps.
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id"))
    # The revision the devices ran before (the last deployed one): what a rollback deploys.
    base_revision_id: Mapped[int | None] = mapped_column(ForeignKey("revisions.id"))
    rollback_of_id: Mapped[int | None] = mapped_column(ForeignKey("changes.id"))
    author: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(20))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Runs so far; each run names its device sessions after the change and the attempt.
    attempts: Mapped[int] = mapped_column(default=0)
    # The process running the change (`host:pid:start`) and when it last said it was alive.
    runner: Mapped[str | None] = mapped_column(String(300))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ChangeDevice(Base):
    """One device of a change: what it gets, and how its deploy went."""

    __tablename__ = "change_devices"

    change_id: Mapped[int] = mapped_column(
        ForeignKey("changes.id", ondelete="CASCADE"), primary_key=True
    )
    device: Mapped[str] = mapped_column(String, primary_key=True)
    position: Mapped[int] = mapped_column()
    platform: Mapped[str] = mapped_column(String(40))
    config: Mapped[str] = mapped_column(Text)  # the intended owned sections
    planned_diff: Mapped[str] = mapped_column(Text)  # vs what microseg last deployed there
    state: Mapped[str] = mapped_column(String(20), default="pending")
    session: Mapped[str | None] = mapped_column(String(64))  # the device's config session
    device_diff: Mapped[str | None] = mapped_column(Text)  # the device's own diff
    before: Mapped[str | None] = mapped_column(Text)  # owned sections before the first run
    read_back: Mapped[str | None] = mapped_column(Text)  # owned sections after the commit
    error: Mapped[str | None] = mapped_column(Text)
    deployed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ChangeApproval(Base):
    __tablename__ = "change_approvals"

    id: Mapped[int] = mapped_column(primary_key=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id", ondelete="CASCADE"), index=True)
    approver: Mapped[str] = mapped_column(String(200))
    comment: Mapped[str] = mapped_column(Text)
    approved_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ChangeEvent(Base):
    """The change's audit trail and per-device log: who did what, when."""

    __tablename__ = "change_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    device: Mapped[str | None] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String(30))
    message: Mapped[str] = mapped_column(Text)


class Setting(Base):
    """A store-wide setting (`four_eyes`), with who set it last and when."""

    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    changed_by: Mapped[str] = mapped_column(String(200))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


# -- users, API tokens, UI sessions, audit trail (`microseg serve`) ---------------------------

ROLES = ("viewer", "editor", "approver", "admin")


class User(Base):
    """A person or script that may use the server, with one role (`microseg user`)."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="ck_users_role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(Text)  # argon2id, PHC string format
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A bearer token of a user. Only its SHA-256 is stored; the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UserSession(Base):
    """A logged-in browser: the cookie's SHA-256, whose user, until when."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(100))


class AuditEvent(Base):
    """One write through the server (or a login): who, when, from where, what changed."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)  # JSON: what changed
