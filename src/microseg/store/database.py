"""Where the store lives, how to connect to it, and its schema migrations (Alembic).

SQLite by default, PostgreSQL (psycopg 3) through the same code. Every write transaction
serializes on the mainline head: `SELECT ... FOR UPDATE` of the mainline row on PostgreSQL,
`BEGIN IMMEDIATE` on SQLite (which takes the database's write lock up front, so two writers
never both read a stale head).
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any

import platformdirs
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from microseg.model import MicrosegError

DATABASE_URL_ENV = "MICROSEG_DATABASE_URL"
MIGRATIONS = Path(__file__).with_name("migrations")

# Execution option a write transaction sets on its connection: SQLite then begins with
# BEGIN IMMEDIATE instead of a deferred BEGIN.
WRITE_TRANSACTION = "microseg_write"

# How long a SQLite writer waits for another writer's lock before giving up (sqlite3 timeout).
SQLITE_BUSY_TIMEOUT_S = 30.0

# pg_advisory_xact_lock key for schema upgrades: two processes opening a fresh database at
# once must not both create the tables. ("microseg" in ASCII, as a 64-bit integer.)
POSTGRES_MIGRATION_LOCK = 0x6D6963726F736567


def database_url(url: str | None = None) -> str:
    """The store's URL: `url`, else $MICROSEG_DATABASE_URL, else SQLite in the user data dir."""
    if url:
        return url
    from_env = os.environ.get(DATABASE_URL_ENV, "").strip()
    if from_env:
        # Each command opens the store and closes it: an in-memory database would vanish with
        # the command, after reporting "imported ... as revision 1".
        if is_in_memory(parse_database_url(from_env)):
            raise MicrosegError(
                f"{DATABASE_URL_ENV}={from_env}: an in-memory database is discarded when the "
                "command ends, so nothing would be kept; give a file (sqlite:///PATH) or a "
                "PostgreSQL URL"
            )
        return from_env
    return f"sqlite:///{default_store_path()}"


def default_store_path() -> Path:
    """Where the store is when no URL is given: SQLite in the user data dir (platformdirs)."""
    return Path(platformdirs.user_data_dir("microseg")) / "microseg.db"


def prepare_default_store(url: str) -> None:
    """A store about to be created at the default path gets its directory first (SQLite makes
    the file, not the directories). Only then: a command that only reads, or names another
    store, leaves the user's data directory as it was."""
    if url != f"sqlite:///{default_store_path()}":
        return
    directory = default_store_path().parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MicrosegError(
            f"cannot create the store's directory {directory}: {error.strerror} "
            f"(set {DATABASE_URL_ENV} to choose another store)"
        ) from None


def redacted(url: str | URL) -> str:
    """The URL with any password hidden, for messages; a SQLite URI (`?mode=ro`) as the
    user wrote it, `sqlite:///PATH?mode=ro`."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "<invalid URL>"
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database.startswith("file:"):
        path = urllib.parse.unquote(urllib.parse.urlsplit(database).path)
        query = {key: value for key, value in parsed.query.items() if key != "uri"}
        parsed = parsed.set(database=path, query=query)
    return parsed.render_as_string(hide_password=True)


def parse_database_url(url: str) -> URL:
    """The URL, parsed; a malformed one is a user error saying what a URL looks like."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise MicrosegError(
            f"invalid database URL {url!r}: expected sqlite:///PATH or "
            "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None


def is_in_memory(url: URL) -> bool:
    """A SQLite database that lives only as long as its connection."""
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database or ""
    return (
        database in ("", ":memory:")
        or database.startswith("file::memory:")
        or url.query.get("mode") == "memory"
    )


def is_read_only(url: URL) -> bool:
    """A SQLite store opened with `?mode=ro`: readable, and every write refused."""
    return url.get_backend_name() == "sqlite" and url.query.get("mode") == "ro"


def check_store_exists(url: str) -> None:
    """A read must not create a store: a SQLite file that is not there is a user error
    (SQLite would create it empty). PostgreSQL creates nothing on connect: not checked."""
    parsed = parse_database_url(url)
    if parsed.get_backend_name() != "sqlite" or is_in_memory(parsed):
        return
    database = parsed.database or ""
    if database.startswith("file:"):
        database = urllib.parse.unquote(urllib.parse.urlsplit(database).path)
    path = Path(database).expanduser()
    if not path.exists():
        raise MicrosegError(f"no store at {path} (microseg db init creates one)")


def create_store_engine(url: str) -> Engine:
    """An Engine for a SQLite or PostgreSQL URL. `postgresql://` means psycopg 3."""
    parsed = parse_database_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            return _sqlite_engine(parsed)
        if backend == "postgresql":
            return _postgresql_engine(parsed)
    except (NoSuchModuleError, ImportError):
        raise MicrosegError(
            f"database URL {redacted(parsed)}: driver {parsed.get_driver_name()!r} is not "
            "available; microseg connects with pysqlite (sqlite:///PATH) and psycopg 3 "
            "(postgresql+psycopg://...)"
        ) from None
    raise MicrosegError(
        f"database URL {redacted(parsed)}: unsupported database {backend!r} "
        "(microseg stores its data in SQLite or PostgreSQL)"
    )


def _postgresql_engine(url: URL) -> Engine:
    if "mode" in url.query:
        raise MicrosegError(
            f"database URL {redacted(url)}: ?mode= is a SQLite option; for a read-only "
            "PostgreSQL store, connect as a role that may only read"
        )
    return create_engine(url)


# SQLite URL options microseg honours (SQLite URI parameters, https://sqlite.org/uri.html).
SQLITE_MODES = ("ro", "rw", "rwc", "memory")


def _sqlite_url(url: URL) -> URL:
    """The URL pysqlite is given: `?mode=` honoured (as a SQLite URI), anything else refused."""
    unknown = sorted(set(url.query) - {"mode", "uri"})
    if unknown:
        raise MicrosegError(
            f"database URL {redacted(url)}: unknown option {unknown[0]!r} "
            f"(a SQLite URL takes ?mode={'|'.join(SQLITE_MODES)})"
        )
    mode = url.query.get("mode")
    if mode is None:
        return url.set(query={}) if "uri" not in url.query else url
    if mode not in SQLITE_MODES:
        raise MicrosegError(
            f"database URL {redacted(url)}: ?mode={mode} is not one of {', '.join(SQLITE_MODES)}"
        )
    database = url.database or ""
    if url.query.get("uri") == "true" or mode == "memory":
        return url.update_query_dict({"uri": "true"})
    # SQLAlchemy passes SQLite URI parameters only for a `file:` URI with uri=true.
    location = Path(database).expanduser().absolute().as_uri()
    return url.set(database=location, query={"mode": mode, "uri": "true"})


def _sqlite_engine(url: URL) -> Engine:
    in_memory, read_only = is_in_memory(url), is_read_only(url)
    options: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    if in_memory:
        # One connection, or every checkout would see a new empty database.
        options.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    elif not read_only and "uri" not in url.query:
        try:
            Path(url.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MicrosegError(
                f"cannot open the store at {redacted(url)}: {error.strerror}: {error.filename}"
            ) from None
    engine = create_engine(_sqlite_url(url), **options)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (below): pysqlite's own transaction handling would begin
        # lazily, only at the first write, which is too late to serialize writers.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        if not in_memory and not read_only:
            # Readers do not block the writer nor wait for it.
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # SQLite: BEGIN IMMEDIATE takes the write lock now; a second writer waits here
        # (busy timeout) until the first commits, then reads the new head.
        write = connection.get_execution_options().get(WRITE_TRANSACTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_schema_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "the store ships at least one migration"
    return head


def current_schema_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at; None for an uninitialised database."""
    with engine.connect() as connection:
        return _schema_revision(connection)


def _schema_revision(connection: Connection) -> str | None:
    heads = MigrationContext.configure(connection).get_current_heads()
    if len(heads) > 1:
        raise MicrosegError(
            f"the store at {redacted(connection.engine.url)} records {len(heads)} schema "
            f"revisions ({', '.join(sorted(heads))}) in its alembic_version table, which holds "
            "one: it was changed by hand or by another tool; restore it from a backup"
        )
    return heads[0] if heads else None


def upgrade_schema(engine: Engine) -> str:
    """Create or migrate the schema to the newest revision, in one transaction. Idempotent."""
    head = head_schema_revision()
    with engine.connect() as connection:
        connection.execution_options(**{WRITE_TRANSACTION: True})
        with connection.begin():
            if engine.dialect.name == "postgresql":
                connection.exec_driver_sql(
                    f"SELECT pg_advisory_xact_lock({POSTGRES_MIGRATION_LOCK})"
                )
            current = _schema_revision(connection)
            _check_known(current, engine)
            if current != head:
                command.upgrade(_alembic_config(connection), "head")
    return head


def ensure_schema(engine: Engine) -> None:
    """Opening a store upgrades an uninitialised or older database automatically."""
    current = current_schema_revision(engine)
    if current == head_schema_revision():
        return
    _check_known(current, engine)
    upgrade_schema(engine)


def _check_known(current: str | None, engine: Engine) -> None:
    if current is None:
        return
    try:
        ScriptDirectory.from_config(_alembic_config()).get_revision(current)
    except CommandError:
        raise MicrosegError(
            f"the store at {redacted(engine.url)} has schema revision {current!r}, which this "
            "microseg does not know: it was written by a newer microseg; upgrade microseg"
        ) from None
