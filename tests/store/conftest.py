"""Store fixtures: every store test runs against SQLite and a real PostgreSQL server.

The PostgreSQL server is a throwaway cluster this session creates with the Debian
`postgresql` binaries (initdb as the `postgres` user, in a temp dir, loopback only) and
removes afterwards. Without the binaries the PostgreSQL tests fail: CI installs them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from postgres_cluster import PostgresServer, throwaway_postgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway cluster for the whole session (see postgres_cluster)."""
    try:
        with throwaway_postgres(in_memory=True) as server:
            yield server
    except FileNotFoundError as missing:
        pytest.fail(str(missing))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> Iterator[str]:
    """A fresh empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.new_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def store(store_url):
    from microseg.store import open_store

    with open_store(store_url) as opened:
        yield opened
