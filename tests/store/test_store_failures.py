"""A store that cannot keep what it is given says so: exit 1, one line, nothing written.

In-memory URLs, malformed URLs, drivers microseg does not use, `?mode=ro`, a read-only
database file, a schema version table edited by hand, names too long for an index."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess

import pytest

from support import EXAMPLES, cli_command, cli_env

HOME_LAB = str(EXAMPLES / "home-lab.yaml")
DNS_NTP = str(EXAMPLES / "home-lab-dns-ntp.yaml")


def _one_line_error(result) -> str:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    return lines[0]


@pytest.fixture
def use_url(monkeypatch):
    def use(url: str) -> None:
        monkeypatch.setenv("MICROSEG_DATABASE_URL", url)

    monkeypatch.setenv("MICROSEG_AUTHOR", "andreas")
    return use


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite+pysqlite://"])
@pytest.mark.parametrize("command", [("import", HOME_LAB), ("log",), ("workspace", "create", "w")])
def test_an_in_memory_database_is_refused_rather_than_forgotten(run_cli, use_url, url, command):
    use_url(url)
    error = _one_line_error(run_cli(*command))
    assert error == (
        f"error: MICROSEG_DATABASE_URL={url}: an in-memory database is discarded when the "
        "command ends, so nothing would be kept; give a file (sqlite:///PATH) or a PostgreSQL URL"
    )


@pytest.mark.parametrize(
    "url, message",
    [
        (
            "postgresql+psycopg2://microseg@localhost/microseg",
            "driver 'psycopg2' is not available",
        ),
        ("postgresql+nosuchdriver://microseg@localhost/microseg", "driver 'nosuchdriver'"),
        ("postgresql://microseg@localhost:notaport/microseg", "invalid database URL"),
        ("postgresql://[::1/microseg", "invalid database URL"),
        ("sqlite:/relative", "invalid database URL"),
        ("not a url", "invalid database URL"),
        ("mysql://microseg@localhost/microseg", "unsupported database 'mysql'"),
        ("sqlite:////tmp/x.db?journal=off", "unknown option 'journal'"),
        ("sqlite:////tmp/x.db?mode=sideways", "?mode=sideways is not one of"),
        ("postgresql://microseg@127.0.0.1:1/microseg?mode=ro", "?mode= is a SQLite option"),
    ],
)
def test_a_url_microseg_cannot_use_is_one_clear_line(run_cli, use_url, url, message):
    use_url(url)
    assert message in _one_line_error(run_cli("import", HOME_LAB))


def test_mode_ro_reads_and_refuses_every_write(run_cli, use_url, tmp_path):
    database = tmp_path / "store.db"
    use_url(f"sqlite:///{database}")
    assert run_cli("import", HOME_LAB).exit_code == 0
    assert run_cli("workspace", "create", "w").exit_code == 0
    before = database.read_bytes()

    use_url(f"sqlite:///{database}?mode=ro")
    log = run_cli("log", "--json")
    assert log.exit_code == 0 and '"id": 1' in log.stdout
    assert run_cli("fmt", "rev:1").exit_code == 0
    for command in (
        ("import", HOME_LAB),
        ("workspace", "create", "x"),
        ("workspace", "abandon", "w"),
    ):
        error = _one_line_error(run_cli(*command))
        assert "read-only" in error or "readonly" in error, error
        assert f"sqlite:///{database}?mode=ro" in error or "cannot open" in error, error
    assert run_cli("db", "init").exit_code == 0  # already at the schema: nothing to write
    use_url(f"sqlite:///{database}")
    assert run_cli("log", "--json").stdout.count('"id"') == 1
    assert database.read_bytes() == before


def test_mode_ro_on_a_missing_file_creates_nothing(run_cli, use_url, tmp_path):
    use_url(f"sqlite:///{tmp_path / 'none.db'}?mode=ro")
    assert "no store at" in _one_line_error(run_cli("log"))
    assert list(tmp_path.iterdir()) == []


def test_two_rows_in_alembic_version_are_a_clear_error(run_cli, use_url, store_url):
    use_url(store_url)
    assert run_cli("db", "init").exit_code == 0
    from sqlalchemy import create_engine, text

    engine = create_engine(store_url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO alembic_version (version_num) VALUES ('0badc0ffee')"))
    engine.dispose()
    for command in (("log",), ("import", HOME_LAB), ("db", "init")):
        error = _one_line_error(run_cli(*command))
        assert "records 2 schema revisions (" in error and "0badc0ffee" in error, error


def test_a_name_longer_than_the_store_keeps_is_refused_on_every_backend(
    run_cli, use_url, store_url, tmp_path
):
    # PostgreSQL's B-tree index takes at most 2,704 bytes per entry: a 10,000-character name
    # was an internal error with the SQL dumped.
    use_url(store_url)
    policy = tmp_path / "long.yaml"
    policy.write_text(f"groups:\n  - name: {'g' * 10_000}\n    prefixes: [10.0.0.0/24]\n")
    error = _one_line_error(run_cli("import", str(policy)))
    assert "(10000 characters): the store keeps names of at most 1000 bytes" in error
    assert run_cli("log", "--json").stdout.strip() == "[]"
    run_cli("import", HOME_LAB)
    run_cli("workspace", "create", "w")
    changes = tmp_path / "changes.yaml"
    changes.write_text(f"services:\n  - name: {'s' * 1001}\n    protocol: tcp\n")
    assert "at most 1000 bytes" in _one_line_error(
        run_cli("workspace", "set", "w", "--file", str(changes))
    )


def _without_dac_override(*args: str, url: str) -> subprocess.CompletedProcess:
    """microseg as root without the capabilities that let root ignore file permissions: what
    any other user gets from a file it may only read."""
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed"
    argv = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]
    return subprocess.run(
        [*argv, *cli_command(*args)],
        env=cli_env(MICROSEG_DATABASE_URL=url, MICROSEG_AUTHOR="andreas"),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.system
@pytest.mark.parametrize("read_only", ["file", "directory and file"])
def test_a_read_only_database_file_is_a_user_error(tmp_path, read_only):
    directory = tmp_path / "store"
    directory.mkdir()
    database = directory / "store.db"
    url = f"sqlite:///{database}"
    first = _without_dac_override("import", HOME_LAB, url=url)
    assert first.returncode == 0, first.stderr
    with sqlite3.connect(database) as connection:  # checkpoint: the WAL is empty
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    contents = database.read_bytes()
    database.chmod(0o444)
    if read_only == "directory and file":
        directory.chmod(0o555)
    try:
        # A policy other than the head's (the head's own makes no revision: nothing to write).
        done = _without_dac_override("import", DNS_NTP, url=url)
    finally:
        directory.chmod(0o755)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "readonly database" in lines[0] or "unable to open" in lines[0], lines[0]
    assert database.read_bytes() == contents


def test_a_connection_pool_that_stays_busy_is_a_user_error(tmp_path):
    """`serve` under load: every pooled connection busy past the pool's timeout is a clear
    error naming the store, not a traceback (it was sqlalchemy's TimeoutError)."""
    from sqlalchemy import create_engine

    from microseg.model import MicrosegError
    from microseg.store import Store, init_database

    url = f"sqlite:///{tmp_path / 'store.db'}"
    init_database(url)
    engine = create_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.05)
    # The pool's only connection is held while the store asks for one.
    with engine.connect(), pytest.raises(MicrosegError, match="connection pool timeout"):
        Store(engine).head()
    engine.dispose()
