"""Persistence of change control: changes, their devices, approvals, events, settings.

Only storage: which transitions are allowed, who may approve and how a change runs is
`microseg.deploy`. Every write here is one transaction serialized on the mainline row
(`Store._writing`), so a state change is a compare-and-set: `transition` moves a change
only from the states its caller expects, or raises StateConflict naming the state it is in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from microseg.model import MicrosegError
from microseg.store.errors import NotFound
from microseg.store.notices import CHANGE_NOTICES
from microseg.store.schema import (
    Change,
    ChangeApproval,
    ChangeDevice,
    ChangeEvent,
    Setting,
)

if TYPE_CHECKING:
    from microseg.store.store import Store

MAX_CHANGE_ID = 2**31 - 1
DEPLOYED_STATES = ("confirmed", "unchanged")  # a device row whose config the device runs


class StateConflict(MicrosegError):
    """A change is not in a state that allows what was asked."""


@dataclass(frozen=True)
class PlannedDevice:
    """A device as a change is created: what it gets and how that differs from its last deploy."""

    device: str
    platform: str
    config: str
    planned_diff: str


@dataclass(frozen=True)
class DeviceRecord:
    device: str
    position: int
    platform: str
    config: str
    planned_diff: str
    state: str
    session: str | None
    device_diff: str | None
    before: str | None
    read_back: str | None
    error: str | None
    deployed_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "platform": self.platform,
            "state": self.state,
            "session": self.session,
            "planned_diff": self.planned_diff,
            "device_diff": self.device_diff,
            "error": self.error,
            "deployed_at": _iso(self.deployed_at),
        }


@dataclass(frozen=True)
class Approval:
    approver: str
    comment: str
    approved_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "approver": self.approver,
            "comment": self.comment,
            "approved_at": self.approved_at.isoformat(),
        }


@dataclass(frozen=True)
class Event:
    at: datetime
    actor: str
    device: str | None
    kind: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "device": self.device,
            "kind": self.kind,
            "message": self.message,
        }


@dataclass(frozen=True)
class ChangeRecord:
    """A change with its devices, approvals and events (oldest first)."""

    id: int
    revision: int
    base_revision: int | None
    rollback_of: int | None
    author: str
    description: str
    created_at: datetime
    state: str
    updated_at: datetime
    attempts: int
    runner: str | None
    heartbeat_at: datetime | None
    devices: tuple[DeviceRecord, ...] = ()
    approvals: tuple[Approval, ...] = ()
    events: tuple[Event, ...] = ()

    def device(self, name: str) -> DeviceRecord:
        return next(d for d in self.devices if d.device == name)

    def as_json(self, details: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "revision": self.revision,
            "base_revision": self.base_revision,
            "rollback_of": self.rollback_of,
            "author": self.author,
            "description": self.description,
            "created_at": self.created_at.isoformat(),
            "state": self.state,
            "updated_at": self.updated_at.isoformat(),
            "attempts": self.attempts,
            "devices": [d.device for d in self.devices],
        }
        if details:
            data["devices"] = [d.as_json() for d in self.devices]
            data["approvals"] = [a.as_json() for a in self.approvals]
            data["events"] = [e.as_json() for e in self.events]
        return data


class ChangeTable:
    """The change-control tables of one store (`store.changes`)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @contextmanager
    def _writing(self, change: int) -> Iterator[Session]:
        """One write transaction of `change`; once committed, its event streams in this
        process are woken (store/notices.py)."""
        with self._store._writing() as (session, _):
            yield session
        CHANGE_NOTICES.written(change)

    # -- changes ----------------------------------------------------------------------------

    def create(
        self,
        revision: int,
        base_revision: int | None,
        author: str,
        description: str,
        devices: Sequence[PlannedDevice],
        rollback_of: int | None = None,
    ) -> int:
        from microseg.store.store import _author, _now, _revision

        with self._store._writing() as (session, _):
            _revision(session, revision)
            number = (session.scalar(select(func.max(Change.id))) or 0) + 1
            now, who = _now(), _author(author)
            session.add(
                Change(
                    id=number,
                    revision_id=revision,
                    base_revision_id=base_revision,
                    rollback_of_id=rollback_of,
                    author=who,
                    description=description,
                    created_at=now,
                    state="pending-approval",
                    updated_at=now,
                    attempts=0,
                )
            )
            session.flush()
            for position, planned in enumerate(devices):
                session.add(
                    ChangeDevice(
                        change_id=number,
                        device=planned.device,
                        position=position,
                        platform=planned.platform,
                        config=planned.config,
                        planned_diff=planned.planned_diff,
                        state="pending",
                    )
                )
            names = ", ".join(d.device for d in devices)
            _event(session, number, who, "created", f"deploy revision {revision} to {names}")
            return number

    def get(self, change: int) -> ChangeRecord:
        with self._store._reading() as session:
            return _record(session, _change(session, change), details=True)

    def list(self, limit: int | None = None, offset: int = 0) -> list[ChangeRecord]:
        """Changes, newest first (devices, without approvals and events): `limit` of them
        (None: every one) after skipping the `offset` newest."""
        with self._store._reading() as session:
            query = select(Change).order_by(Change.id.desc()).limit(limit).offset(offset)
            return [_record(session, change, details=False) for change in session.scalars(query)]

    def count(self) -> int:
        with self._store._reading() as session:
            return session.scalar(select(func.count()).select_from(Change)) or 0

    def transition(
        self,
        change: int,
        allowed: Iterable[str],
        state: str,
        actor: str,
        message: str,
        **fields: Any,
    ) -> ChangeRecord:
        """Move `change` to `state` if it is in one of `allowed`; one event records it.

        `fields` are other columns to set at the same time (`runner`, `attempts`, ...)."""
        from microseg.store.store import _author, _now

        with self._writing(change) as session:
            row = _change_in(session, change, allowed, f"to become {state}")
            row.state = state
            row.updated_at = _now()
            for name, value in fields.items():
                setattr(row, name, value)
            _event(session, change, _author(actor), state, message)
            return _record(session, row, details=True)

    def heartbeat(self, change: int, runner: str) -> None:
        from microseg.store.store import _now

        with self._store._writing() as (session, _):
            session.execute(
                update(Change)
                .where(Change.id == change, Change.runner == runner)
                .values(heartbeat_at=_now())
            )

    def approve(
        self, change: int, approver: str, comment: str, allowed: Iterable[str], state: str
    ) -> ChangeRecord:
        """Record an approval and move the change from `allowed` to `state`, at once."""
        from microseg.store.store import _author, _now

        with self._writing(change) as session:
            row = _change_in(session, change, allowed, "to approve it")
            who, now = _author(approver), _now()
            session.add(
                ChangeApproval(change_id=change, approver=who, comment=comment, approved_at=now)
            )
            _event(session, change, who, "approval", comment or "approved")
            row.state, row.updated_at = state, now
            _event(session, change, who, state, f"approved by {who}")
            return _record(session, row, details=True)

    def mark_devices(self, change: int, states: Iterable[str], state: str) -> None:
        """Every device row of `change` in one of `states` goes to `state`."""
        with self._writing(change) as session:
            session.execute(
                update(ChangeDevice)
                .where(ChangeDevice.change_id == change, ChangeDevice.state.in_(tuple(states)))
                .values(state=state)
            )

    # -- devices and their logs -------------------------------------------------------------

    def update_device(
        self, change: int, device: str, actor: str = "", notes: Sequence[str] = (), **fields: Any
    ) -> None:
        """Set columns of a device row and add its log lines (`notes`, by `actor`) at once."""
        with self._writing(change) as session:
            row = session.get(ChangeDevice, (change, device))
            if row is None:
                raise NotFound(f"change {change} has no device {device!r}")
            for name, value in fields.items():
                setattr(row, name, value)
            for note in notes:
                _event(session, change, actor, "device", note, device)

    def log(
        self, change: int, actor: str, kind: str, message: str, device: str | None = None
    ) -> None:
        with self._writing(change) as session:
            _event(session, change, actor, kind, message, device)

    def last_deployed(self, device: str) -> tuple[int, DeviceRecord] | None:
        """The newest change that left `device` running its configuration, with its row."""
        with self._store._reading() as session:
            row = session.scalars(
                select(ChangeDevice)
                .where(
                    ChangeDevice.device == device,
                    ChangeDevice.state.in_(DEPLOYED_STATES),
                    ChangeDevice.deployed_at.is_not(None),
                )
                .order_by(ChangeDevice.deployed_at.desc(), ChangeDevice.change_id.desc())
                .limit(1)
            ).first()
            return None if row is None else (row.change_id, _device_record(row))

    def last_succeeded_revision(self) -> int | None:
        """The revision of the newest succeeded change: what the devices run."""
        with self._store._reading() as session:
            return session.scalar(
                select(Change.revision_id)
                .where(Change.state == "succeeded")
                .order_by(Change.id.desc())
                .limit(1)
            )

    # -- settings ---------------------------------------------------------------------------

    def setting(self, name: str) -> tuple[str, str, datetime] | None:
        """(value, who set it, when), or None while never set."""
        with self._store._reading() as session:
            row = session.get(Setting, name)
            return None if row is None else (row.value, row.changed_by, row.changed_at)

    def set_setting(self, name: str, value: str, actor: str) -> None:
        from microseg.store.store import _author, _now

        with self._store._writing() as (session, _):
            row = session.get(Setting, name)
            if row is None:
                row = Setting(name=name)
                session.add(row)
            row.value, row.changed_by, row.changed_at = value, _author(actor), _now()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _change(session: Session, change: int, lock: bool = False) -> Change:
    query = select(Change).where(Change.id == change)
    found = (
        session.scalars(query.with_for_update() if lock else query).first()
        if 1 <= change <= MAX_CHANGE_ID
        else None
    )
    if found is None:
        count = session.scalar(select(func.count()).select_from(Change)) or 0
        where = f"newest is {count}" if count else "there are none yet"
        raise NotFound(f"no change {change} ({where}; microseg change list)")
    return found


def _change_in(session: Session, change: int, allowed: Iterable[str], purpose: str) -> Change:
    """The change, locked, if it is in one of the `allowed` states; else StateConflict."""
    row = _change(session, change, lock=True)
    allowed = tuple(allowed)
    if row.state not in allowed:
        raise StateConflict(
            f"change {change} is {row.state}: it must be {' or '.join(allowed)} {purpose}"
        )
    return row


def _event(
    session: Session,
    change: int,
    actor: str,
    kind: str,
    message: str,
    device: str | None = None,
) -> None:
    from microseg.store.store import _now

    session.add(
        ChangeEvent(
            change_id=change, at=_now(), actor=actor, device=device, kind=kind, message=message
        )
    )


def _device_record(row: ChangeDevice) -> DeviceRecord:
    return DeviceRecord(
        row.device,
        row.position,
        row.platform,
        row.config,
        row.planned_diff,
        row.state,
        row.session,
        row.device_diff,
        row.before,
        row.read_back,
        row.error,
        row.deployed_at,
    )


def _record(session: Session, change: Change, details: bool) -> ChangeRecord:
    devices = session.scalars(
        select(ChangeDevice)
        .where(ChangeDevice.change_id == change.id)
        .order_by(ChangeDevice.position)
    )
    approvals: tuple[Approval, ...] = ()
    events: tuple[Event, ...] = ()
    if details:
        approvals = tuple(
            Approval(a.approver, a.comment, a.approved_at)
            for a in session.scalars(
                select(ChangeApproval)
                .where(ChangeApproval.change_id == change.id)
                .order_by(ChangeApproval.id)
            )
        )
        events = tuple(
            Event(e.at, e.actor, e.device, e.kind, e.message)
            for e in session.scalars(
                select(ChangeEvent)
                .where(ChangeEvent.change_id == change.id)
                .order_by(ChangeEvent.id)
            )
        )
    return ChangeRecord(
        id=change.id,
        revision=change.revision_id,
        base_revision=change.base_revision_id,
        rollback_of=change.rollback_of_id,
        author=change.author,
        description=change.description,
        created_at=change.created_at,
        state=change.state,
        updated_at=change.updated_at,
        attempts=change.attempts,
        runner=change.runner,
        heartbeat_at=change.heartbeat_at,
        devices=tuple(_device_record(d) for d in devices),
        approvals=approvals,
        events=events,
    )


__all__ = [
    "Approval",
    "ChangeRecord",
    "ChangeTable",
    "DeviceRecord",
    "Event",
    "PlannedDevice",
    "StateConflict",
]
