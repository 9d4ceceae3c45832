"""The versioned store: mainline revisions and workspaces.

Every write is one transaction that first locks the mainline row (see `database`), so
writers are serialized: two workspaces submitted at once touching the same object cannot
both win; the second sees the first's revision and gets a StoreConflict.

Example:
    with open_store() as store:
        first = store.import_policy(load_policy("examples/home-lab.yaml"), "alice", "seed lab")
        first.revision, first.changed  # 1, True
        store.workspace_create("tighten-web", author="alice")
        store.workspace_set("tighten-web", "groups", {"name": "web01_web02", "prefixes": [...]})
        store.workspace_submit("tighten-web", "alice", "narrow web group")
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session

from microseg.model import MicrosegError, PolicyError, PolicySet, Problem
from microseg.model.errors import singular
from microseg.model.objects import DOT_SEGMENTS, is_one_line
from microseg.store.accounts import AccountTable
from microseg.store.changes import ChangeTable
from microseg.store.database import (
    WRITE_TRANSACTION,
    check_store_exists,
    create_store_engine,
    database_url,
    ensure_schema,
    is_read_only,
    prepare_default_store,
    redacted,
    upgrade_schema,
)
from microseg.store.errors import (
    InvalidChange,
    NotFound,
    ObjectKey,
    StoreConflict,
    StoreUnavailable,
    WorkspaceClosed,
)
from microseg.store.records import Imported, RevisionInfo, WorkspaceInfo, default_author
from microseg.store.schema import (
    Mainline,
    ObjectVersion,
    Revision,
    Workspace,
    WorkspaceChange,
)
from microseg.store.snapshot import (
    Bodies,
    ObjectChange,
    apply_changes,
    check_section,
    object_body,
    object_changes,
    object_order,
    parse_object,
    policy_bodies,
    policy_from_bodies,
    reference_problems_of,
)


@contextmanager
def open_store(url: str | None = None, *, create: bool = True) -> Iterator[Store]:
    """The store at `url` (default: $MICROSEG_DATABASE_URL, else SQLite in the user data dir).

    An uninitialised or older database is upgraded to the current schema on open (the same
    as `microseg db init`). `create=False` is for a command that only reads: a SQLite file
    that is not there is an error, not a new empty store left behind."""
    url = database_url(url)
    if create:
        prepare_default_store(url)
    else:
        check_store_exists(url)
    engine = create_store_engine(url)
    try:
        with _reporting_connection_errors(engine):
            ensure_schema(engine)
        yield Store(engine)
    finally:
        engine.dispose()


def init_database(url: str | None = None) -> tuple[str, str]:
    """Create or upgrade the store's schema (`microseg db init`): (URL shown, schema revision)."""
    url = database_url(url)
    prepare_default_store(url)
    engine = create_store_engine(url)
    try:
        with _reporting_connection_errors(engine):
            return redacted(engine.url), upgrade_schema(engine)
    finally:
        engine.dispose()


@contextmanager
def _reporting_connection_errors(engine: Engine) -> Iterator[None]:
    with _reporting_database_errors("cannot open", redacted(engine.url)):
        yield


@contextmanager
def _reporting_database_errors(action: str, url: str) -> Iterator[None]:
    """A database that refuses (read-only file or disk, disk full, a server limit, a lost
    connection) is a user error in one line: what failed and the database's own reason.
    The transaction was rolled back: nothing was written."""
    try:
        yield
    except DBAPIError as error:
        reason = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else ""
        raise _unavailable(action, url, reason or type(error.orig).__name__) from None
    except PoolTimeoutError:
        # Every pooled connection stayed busy past the pool's timeout (many concurrent
        # requests in `serve`): a refusal to retry, not a crash.
        raise _unavailable(
            action, url, "all database connections are busy (connection pool timeout); try again"
        ) from None


def _unavailable(action: str, url: str, reason: str) -> StoreUnavailable:
    return StoreUnavailable(
        f"{action} the store at {url}: {reason}", f"{action} the store: {reason}"
    )


class Store:
    """Revisions and workspaces in one database. Methods are safe to call from threads."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self._read_only = is_read_only(engine.url)

    @property
    def url(self) -> str:
        return redacted(self._engine.url)

    @property
    def changes(self) -> ChangeTable:
        """Change control's tables: changes, their devices, approvals, events, settings."""
        return ChangeTable(self)

    @property
    def accounts(self) -> AccountTable:
        """The server's users, API tokens, UI sessions and audit trail."""
        return AccountTable(self)

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with (
            _reporting_database_errors("cannot read", self.url),
            Session(self._engine) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def _writing(self) -> Iterator[tuple[Session, Mainline]]:
        """One write transaction, serialized on the mainline row. Rolls back on any error."""
        if self._read_only:
            raise StoreUnavailable(
                f"the store at {self.url} is opened read-only: nothing written",
                "the store is opened read-only: nothing written",
            )
        with (
            _reporting_database_errors("cannot write to", self.url),
            self._engine.connect() as connection,
        ):
            connection.execution_options(**{WRITE_TRANSACTION: True})
            with Session(bind=connection) as session, session.begin():
                mainline = session.execute(
                    select(Mainline).where(Mainline.id == 1).with_for_update()
                ).scalar_one()
                yield session, mainline

    # -- mainline -----------------------------------------------------------------------

    def head(self) -> int | None:
        """The newest mainline revision, None while the store is empty."""
        with self._reading() as session:
            return session.get_one(Mainline, 1).head_revision_id

    def revision_info(self, revision: int) -> RevisionInfo:
        with self._reading() as session:
            return _revision_info(_revision(session, revision))

    def revision_policy(self, revision: int) -> PolicySet:
        """The whole policy set of a revision."""
        with self._reading() as session:
            _revision(session, revision)
            return policy_from_bodies(_revision_bodies(session, revision))

    def import_policy(
        self, policy_set: PolicySet, author: str | None = None, message: str = ""
    ) -> Imported:
        """Store a whole policy set as the next mainline revision (its number, changed).

        A policy the head already holds makes no revision: a revision records a change, and
        an empty one would be an audit entry for nothing (and a deploy of nothing)."""
        _author(author)
        _check_message(message)
        bodies = policy_bodies(policy_set)
        _check_name_lengths(bodies)
        # What is stored must load back: validate the bodies themselves (a PolicySet made
        # with model_construct skips validation).
        policy_from_bodies(bodies, "import")
        with self._writing() as (session, mainline):
            head_id = mainline.head_revision_id
            head = _revision_bodies(session, head_id) if head_id is not None else {}
            if head_id is not None and head == bodies:
                return Imported(head_id, changed=False)
            return Imported(_add_revision(session, mainline, head, bodies, author, message), True)

    def log(self, limit: int | None = None, offset: int = 0) -> list[RevisionInfo]:
        """Mainline revisions, newest first: the audit trail; `limit` of them (None: every
        one) after skipping the `offset` newest."""
        if limit is not None and limit < 0:
            raise MicrosegError(f"log limit {limit}: expected a number of revisions >= 0")
        if limit is not None and limit > MAX_REVISION_ID:
            limit = None  # more than there can be: all of them (and no driver overflow)
        with self._reading() as session:
            query = select(Revision).order_by(Revision.id.desc()).limit(limit).offset(offset)
            return [_revision_info(r) for r in session.scalars(query)]

    # -- workspaces ---------------------------------------------------------------------

    def workspace_create(
        self, name: str, base: int | None = None, author: str | None = None
    ) -> WorkspaceInfo:
        """A new open workspace on revision `base` (default: the head)."""
        _check_workspace_name(name)
        with self._writing() as (session, mainline):
            if base is None:
                base = mainline.head_revision_id
                if base is None:
                    raise NotFound("the store has no revisions yet: import a policy first")
            _revision(session, base)
            existing = _latest_workspace(session, name, lock=True)
            if existing is not None and existing.state == "open":
                raise MicrosegError(
                    f"workspace {name!r} already exists (on revision {existing.base_revision_id})"
                )
            workspace = Workspace(
                name=name,
                base_revision_id=base,
                author=_author(author),
                created_at=_now(),
                state="open",
            )
            session.add(workspace)
            session.flush()
            return _workspace_info(session, workspace)

    def workspace_list(
        self, include_closed: bool = False, limit: int | None = None, offset: int = 0
    ) -> list[WorkspaceInfo]:
        """Open workspaces by name; with `include_closed`, submitted and abandoned ones too.
        `limit` of them (None: all) after the first `offset`."""
        with self._reading() as session:
            query = select(Workspace)
            if not include_closed:
                query = query.where(Workspace.state == "open")
            # Sorted here, not by ORDER BY name: PostgreSQL sorts text by the server's
            # collation (en_US puts `a` before `B`), SQLite by bytes.
            found = sorted(session.scalars(query), key=lambda w: (w.name.encode(), w.id))
            end = None if limit is None else offset + limit
            return [_workspace_info(session, w) for w in found[offset:end]]

    def workspace_count(self, include_closed: bool = False) -> int:
        with self._reading() as session:
            query = select(func.count()).select_from(Workspace)
            if not include_closed:
                query = query.where(Workspace.state == "open")
            return session.scalar(query) or 0

    def workspace_info(self, name: str) -> WorkspaceInfo:
        with self._reading() as session:
            return _workspace_info(session, _workspace(session, name))

    def workspace_base(self, name: str) -> int:
        with self._reading() as session:
            return _workspace(session, name).base_revision_id

    def workspace_policy(self, name: str) -> PolicySet:
        """The workspace's effective policy: its base revision with its changes applied."""
        with self._reading() as session:
            workspace = _workspace(session, name)
            return policy_from_bodies(_effective_bodies(session, workspace))

    def workspace_diff(self, name: str) -> list[ObjectChange]:
        """Objects the workspace adds, changes or removes relative to its base revision."""
        with self._reading() as session:
            workspace = _workspace(session, name)
            base = _revision_bodies(session, workspace.base_revision_id)
            return object_changes(base, apply_changes(base, _changes(session, workspace).items()))

    def workspace_set(self, name: str, section: str, obj: BaseModel | Mapping[str, Any]) -> None:
        """Add or replace one object (its full body) in the workspace."""
        self.workspace_set_objects(name, [(section, obj)])

    def workspace_set_objects(
        self, name: str, objects: Iterable[tuple[str, BaseModel | Mapping[str, Any]]]
    ) -> None:
        """Add or replace several objects at once: all are written, or none.

        Each object is validated, then the workspace's effective policy as a whole: a change
        that breaks a reference is refused (InvalidChange with the problems)."""
        new_bodies, problems, unvalidated = _parsed_bodies(objects)
        _check_name_lengths(new_bodies)
        what = f"workspace {name!r}: change"
        with self._writing() as (session, _):
            workspace = _open_workspace(session, name)
            base = _revision_bodies(session, workspace.base_revision_id)
            changes = _changes(session, workspace)
            changes.update(new_bodies)
            effective = apply_changes(base, changes.items())
            if problems:  # and the reference problems of the valid ones, all at once
                for key in unvalidated:
                    effective.pop(key, None)
                problems += reference_problems_of(effective, unvalidated)
                raise InvalidChange(what, problems)
            policy_from_bodies(effective, what)
            _save_changes(session, workspace, base, changes)

    def workspace_delete(self, name: str, section: str, obj_name: str) -> None:
        """Delete an object in the workspace. Refused if anything still refers to it."""
        check_section(section)
        with self._writing() as (session, _):
            workspace = _open_workspace(session, name)
            base = _revision_bodies(session, workspace.base_revision_id)
            changes = _changes(session, workspace)
            key = (section, obj_name)
            if key not in apply_changes(base, changes.items()):
                raise NotFound(f"workspace {name!r} has no {singular(section)} {obj_name!r}")
            changes[key] = None
            policy_from_bodies(
                apply_changes(base, changes.items()),
                f"workspace {name!r}: deleting {singular(section)} {obj_name!r}",
            )
            _save_changes(session, workspace, base, changes)

    def workspace_submit(self, name: str, author: str | None = None, message: str = "") -> int:
        """Apply the workspace's changes to the head as a new revision; returns its number.

        Refused with StoreConflict if an object the workspace changes differs at the head
        from its base revision; nothing is written then."""
        with self._writing() as (session, mainline):
            workspace = _open_workspace(session, name)
            changes = _changes(session, workspace)
            if not changes:
                raise MicrosegError(f"workspace {name!r} has no changes to submit")
            base_id, head_id = workspace.base_revision_id, mainline.head_revision_id
            assert head_id is not None, "a workspace's base revision exists, so does a head"
            base = _revision_bodies(session, base_id)
            head = base if head_id == base_id else _revision_bodies(session, head_id)
            conflicts = [key for key in changes if base.get(key) != head.get(key)]
            if conflicts:
                raise StoreConflict(name, base_id, head_id, sorted(conflicts, key=object_order))
            merged = apply_changes(head, changes.items())
            policy_from_bodies(merged, f"submitting workspace {name!r} onto revision {head_id}")
            revision = _add_revision(
                session, mainline, head, merged, author, message or f"workspace {name}"
            )
            workspace.state = "submitted"
            workspace.closed_at = _now()
            workspace.submitted_revision_id = revision
            return revision

    def workspace_abandon(self, name: str) -> None:
        """Close the workspace without submitting it. Its changes stay readable."""
        with self._writing() as (session, _):
            workspace = _open_workspace(session, name)
            workspace.state = "abandoned"
            workspace.closed_at = _now()


# -- helpers (inside a transaction) ---------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _author(author: str | None) -> str:
    author = (author or "").strip() or default_author()
    if len(author) > 200:
        raise MicrosegError(f"author {author[:40]!r}...: at most 200 characters")
    if not is_one_line(author):
        raise MicrosegError(f"author {author!r}: no control characters or line separators")
    return author


def _check_message(message: str) -> None:
    # Lines and tabs are fine in a message; NUL cannot be stored in PostgreSQL text.
    if "\x00" in message:
        raise MicrosegError("revision message: no NUL characters")


def _check_workspace_name(name: str) -> None:
    if not name or name != name.strip() or len(name) > 200:
        raise MicrosegError(f"workspace name {name!r}: 1 to 200 characters, no surrounding spaces")
    if not is_one_line(name):
        raise MicrosegError(f"workspace name {name!r}: no control characters or line separators")
    if "/" in name:
        # The API and the web UI address a workspace by name in their paths, which are
        # matched decoded (ASGI): `a%2Fdiff` would reach workspace `a`'s diff.
        raise MicrosegError(f"workspace name {name!r}: no '/' (it names the workspace in URLs)")
    if name in DOT_SEGMENTS:
        raise MicrosegError(
            f"workspace name {name!r}: not '.' or '..' (in a URL they mean the path itself or "
            "its parent: /api/workspaces/../diff is /api/diff)"
        )


# Object names are part of the primary keys: PostgreSQL's B-tree index holds at most
# 2,704 bytes per entry. Every backend takes the same names, so one limit for all of them.
MAX_NAME_BYTES = 1000


def _check_name_lengths(keys: Iterable[ObjectKey]) -> None:
    for section, name in keys:
        if len(name.encode("utf-8")) > MAX_NAME_BYTES:
            raise MicrosegError(
                f"{singular(section)} {name[:40]!r}... ({len(name)} characters): the store "
                f"keeps names of at most {MAX_NAME_BYTES} bytes (UTF-8); nothing written"
            )


# Revision ids are INTEGER columns: 32-bit on PostgreSQL. A number outside that range is
# no revision, not a driver overflow (SQLite and psycopg would raise different errors).
MAX_REVISION_ID = 2**31 - 1


def _revision(session: Session, revision: int) -> Revision:
    found = session.get(Revision, revision) if 1 <= revision <= MAX_REVISION_ID else None
    if found is None:
        head = session.get_one(Mainline, 1).head_revision_id
        where = f"head is {head}" if head is not None else "the store is empty"
        raise NotFound(f"no revision {revision} ({where})")
    return found


def _revision_info(revision: Revision) -> RevisionInfo:
    return RevisionInfo(
        revision.id, revision.parent_id, revision.author, revision.message, revision.created_at
    )


def _revision_bodies(session: Session, revision: int) -> Bodies:
    """The objects of a revision: the versions valid at it."""
    rows = session.execute(
        select(ObjectVersion.section, ObjectVersion.name, ObjectVersion.body).where(
            ObjectVersion.valid_from <= revision,
            or_(ObjectVersion.valid_to.is_(None), ObjectVersion.valid_to > revision),
        )
    )
    return {(section, name): body for section, name, body in rows}


def _add_revision(
    session: Session,
    mainline: Mainline,
    head: Bodies,
    bodies: Bodies,
    author: str | None,
    message: str,
) -> int:
    """The next revision, holding `bodies`; `head` is what the head revision holds. Only the
    objects that differ are written: their current versions end here, new ones begin."""
    _check_message(message)
    # Under the mainline lock: head + 1 is free, and numbers have no gaps.
    number = (session.scalar(select(func.max(Revision.id))) or 0) + 1
    session.add(
        Revision(
            id=number,
            parent_id=mainline.head_revision_id,
            author=_author(author),
            message=message,
            created_at=_now(),
        )
    )
    session.flush()
    ended = [key for key, body in head.items() if bodies.get(key) != body]
    if ended:
        # Core executemany (one statement, many keys); the ORM's bulk UPDATE wants primary keys.
        session.connection().execute(
            update(ObjectVersion)
            .where(
                ObjectVersion.section == bindparam("key_section"),
                ObjectVersion.name == bindparam("key_name"),
                ObjectVersion.valid_to.is_(None),
            )
            .values(valid_to=number),
            [{"key_section": section, "key_name": name} for section, name in ended],
        )
    begun = [
        {"section": section, "name": name, "valid_from": number, "body": body}
        for (section, name), body in bodies.items()
        if head.get((section, name)) != body
    ]
    if begun:
        session.execute(insert(ObjectVersion), begun)
    mainline.head_revision_id = number
    return number


def _latest_workspace(session: Session, name: str, lock: bool = False) -> Workspace | None:
    # At most one workspace per name is open, and it is the newest of that name.
    query = select(Workspace).where(Workspace.name == name).order_by(Workspace.id.desc()).limit(1)
    return session.scalars(query.with_for_update() if lock else query).first()


def _workspace(session: Session, name: str, lock: bool = False) -> Workspace:
    workspace = _latest_workspace(session, name, lock)
    if workspace is None:
        raise NotFound(f"no workspace {name!r} (microseg workspace list)")
    return workspace


def _open_workspace(session: Session, name: str) -> Workspace:
    workspace = _workspace(session, name, lock=True)
    if workspace.state == "submitted":
        raise WorkspaceClosed(
            f"workspace {name!r} was submitted as revision {workspace.submitted_revision_id}; "
            "it can no longer be changed or submitted"
        )
    if workspace.state == "abandoned":
        raise WorkspaceClosed(
            f"workspace {name!r} was abandoned; it can no longer be changed or submitted"
        )
    return workspace


def _changes(session: Session, workspace: Workspace) -> dict[ObjectKey, str | None]:
    rows = session.execute(
        select(WorkspaceChange.section, WorkspaceChange.name, WorkspaceChange.body).where(
            WorkspaceChange.workspace_id == workspace.id
        )
    )
    return {(section, name): body for section, name, body in rows}


def _effective_bodies(session: Session, workspace: Workspace) -> Bodies:
    base = _revision_bodies(session, workspace.base_revision_id)
    return apply_changes(base, _changes(session, workspace).items())


def _save_changes(
    session: Session, workspace: Workspace, base: Bodies, changes: dict[ObjectKey, str | None]
) -> None:
    """Replace the workspace's change rows; a change back to the base body is no change."""
    session.execute(delete(WorkspaceChange).where(WorkspaceChange.workspace_id == workspace.id))
    rows = [
        {"workspace_id": workspace.id, "section": section, "name": name, "body": body}
        for (section, name), body in changes.items()
        if body != base.get((section, name))
    ]
    if rows:
        session.execute(insert(WorkspaceChange), rows)


def _workspace_info(session: Session, workspace: Workspace) -> WorkspaceInfo:
    count = session.scalar(
        select(func.count())
        .select_from(WorkspaceChange)
        .where(WorkspaceChange.workspace_id == workspace.id)
    )
    return WorkspaceInfo(
        name=workspace.name,
        base=workspace.base_revision_id,
        state=workspace.state,
        author=workspace.author,
        created_at=workspace.created_at,
        changes=count or 0,
        submitted_revision=workspace.submitted_revision_id,
    )


def _parsed_bodies(
    objects: Iterable[tuple[str, BaseModel | Mapping[str, Any]]],
) -> tuple[dict[ObjectKey, str], list[Problem], dict[ObjectKey, Mapping[str, Any]]]:
    """Validate each object on its own: the bodies of the valid ones, the problems of the
    others, and the invalid ones that have a name (their references are still checked)."""
    bodies: dict[ObjectKey, str] = {}
    problems: list[Problem] = []
    unvalidated: dict[ObjectKey, Mapping[str, Any]] = {}
    for number, (section, obj) in enumerate(objects, 1):
        try:
            parsed = parse_object(section, obj, number)
        except PolicyError as error:
            problems.extend(error.problems)
            if isinstance(obj, Mapping) and isinstance(name := obj.get("name"), str):
                unvalidated[(section, name)] = obj
            continue
        key = (section, parsed.name)
        if key in bodies:
            raise MicrosegError(f"{singular(section)} {parsed.name!r} is given twice")
        bodies[key] = object_body(section, parsed)
    return bodies, problems, unvalidated
