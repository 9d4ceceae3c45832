"""A client never learns where the server keeps its store: a database that fails or is
read-only is a 503 saying what failed, and the server's log says where (the CLI names the
file or server itself)."""

from __future__ import annotations

import contextlib
import logging
import os

import pytest


def test_a_store_that_fails_is_a_503_naming_no_server_path(seeded, store_url, caplog):
    # The database file is no database any more (a disk fault, an operator's mistake): the
    # client learns what failed, the server's log where.
    from microseg.store import open_store

    path = store_url.removeprefix("sqlite:///")
    seeded.app.state.context.store._engine.dispose()
    with open(path, "r+b") as database:
        database.write(b"not a database" * 512)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)
    with caplog.at_level(logging.WARNING, logger="microseg.server"):
        answer = seeded.client("viewer").get("/api/revisions")
    assert answer.status_code == 503, answer.text
    assert answer.json()["detail"].startswith("the server's store: cannot read the store: ")
    assert path not in answer.text and "/tmp" not in answer.text
    assert path in caplog.text
    with pytest.raises(Exception, match="cannot"), open_store(store_url):
        pass  # the CLI still names the file it could not read


def test_a_read_only_store_refuses_writes_naming_no_server_path(tmp_path, caplog):
    from fastapi.testclient import TestClient
    from server_kit import PASSWORD

    from microseg.server import accounts, create_app
    from microseg.store import open_store

    path = tmp_path / "private" / "store.db"
    path.parent.mkdir()
    with open_store(f"sqlite:///{path}") as store:
        accounts.add_user(store, "editor", "editor", PASSWORD)
    app = create_app(f"sqlite:///{path}?mode=ro", flow_store=tmp_path / "flows")
    with TestClient(app, raise_server_exceptions=False) as client:
        login = client.post("/api/auth/login", json={"username": "editor", "password": PASSWORD})
        if login.status_code == 200:  # a session is itself a write: refused the same way
            csrf = login.json()["csrf_token"]
            answer = client.post(
                "/api/workspaces", json={"name": "w"}, headers={"X-CSRF-Token": csrf}
            )
        else:
            answer = login
    assert answer.status_code == 503, answer.text
    assert "read-only" in answer.json()["detail"]
    assert str(path.parent) not in answer.text
