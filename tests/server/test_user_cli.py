"""`microseg user`: users, roles and API tokens from the command line."""

from __future__ import annotations

import io
import json
import sys

import pytest
from fastapi.testclient import TestClient
from server_kit import PASSWORD


@pytest.fixture
def database(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'microseg.db'}"
    monkeypatch.setenv("MICROSEG_DATABASE_URL", url)
    monkeypatch.setenv("MICROSEG_AUTHOR", "root")
    return url


@pytest.fixture
def with_stdin(monkeypatch):
    def feed(text: str) -> None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))

    return feed


def test_a_user_added_on_the_cli_logs_in_to_the_api(database, run_cli, with_stdin):
    from microseg.server import create_app

    with_stdin(PASSWORD + "\n")
    added = run_cli("user", "add", "alice", "--role", "admin", "--password-stdin")
    assert (added.exit_code, added.stdout) == (0, "user 'alice' added (admin)\n")
    listed = json.loads(run_cli("user", "list", "--json").stdout)
    assert [(u["name"], u["role"], u["disabled"]) for u in listed] == [("alice", "admin", False)]
    with TestClient(create_app(database)) as client:
        login = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200
        assert login.json()["role"] == "admin"


def test_a_token_is_printed_once_works_and_stops_when_revoked(database, run_cli, with_stdin):
    from microseg.server import create_app

    with_stdin(PASSWORD + "\n")
    run_cli("user", "add", "ci-bot", "--role", "editor", "--password-stdin")
    created = run_cli("user", "token", "add", "ci-bot", "--name", "terraform")
    assert created.exit_code == 0
    token = created.stdout.strip()
    assert token.startswith("mst_") and "shown once" in created.stderr
    listed = run_cli("user", "token", "list", "--json")
    assert token not in listed.stdout
    assert json.loads(listed.stdout)[0]["name"] == "terraform"
    with TestClient(create_app(database)) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/revisions", headers=headers).status_code == 200
        assert run_cli("user", "token", "revoke", "1").exit_code == 0
        assert client.get("/api/revisions", headers=headers).status_code == 401


def test_passwd_and_disable(database, run_cli, with_stdin):
    from microseg.server import create_app

    with_stdin(PASSWORD + "\n")
    run_cli("user", "add", "bob", "--role", "viewer", "--password-stdin")
    with_stdin("a brand new password\n")
    assert run_cli("user", "passwd", "bob", "--password-stdin").exit_code == 0
    with TestClient(create_app(database)) as client:

        def login(password: str) -> int:
            return client.post(
                "/api/auth/login", json={"username": "bob", "password": password}
            ).status_code

        assert login(PASSWORD) == 401
        assert login("a brand new password") == 200
        assert run_cli("user", "disable", "bob").stdout == "user 'bob' disabled\n"
        assert login("a brand new password") == 401
    table = run_cli("user", "list").stdout
    assert table.splitlines()[1].split()[:3] == ["bob", "viewer", "disabled"]


def test_user_errors_exit_1_without_writing(database, run_cli, with_stdin):
    with_stdin("short\n")
    short = run_cli("user", "add", "carol", "--role", "admin", "--password-stdin")
    assert (short.exit_code, short.stderr.strip()) == (1, "error: password: at least 10 characters")
    with_stdin(PASSWORD + "\n")
    role = run_cli("user", "add", "carol", "--role", "root", "--password-stdin")
    assert role.exit_code == 1 and "expected one of viewer, editor, approver, admin" in role.stderr
    bad_name = run_cli("user", "add", "car ol", "--role", "admin", "--password-stdin")
    assert bad_name.exit_code == 1 and "user name" in bad_name.stderr
    assert run_cli("user", "disable", "nobody").stderr == "error: no user 'nobody'\n"
    with_stdin("")
    empty = run_cli("user", "add", "carol", "--role", "admin", "--password-stdin")
    assert empty.exit_code == 1 and "standard input is empty" in empty.stderr
    assert json.loads(run_cli("user", "list", "--json").stdout) == []


def test_a_wrong_role_is_said_before_a_password_is_asked_for(database, run_cli, with_stdin):
    with_stdin("")  # no password to read: the role's error must come first
    role = run_cli("user", "add", "carol", "--role", "superuser", "--password-stdin")
    assert role.exit_code == 1
    assert role.stderr == (
        "error: role 'superuser': expected one of viewer, editor, approver, admin\n"
    )


def test_the_last_admin_cannot_be_disabled(database, run_cli, with_stdin):
    with_stdin(PASSWORD + "\n")
    run_cli("user", "add", "root-admin", "--role", "admin", "--password-stdin")
    refused = run_cli("user", "disable", "root-admin")
    assert refused.exit_code == 1 and "last enabled admin" in refused.stderr


def test_cli_user_changes_are_in_the_audit_trail(database, run_cli, with_stdin):
    from microseg.store import open_store

    with_stdin(PASSWORD + "\n")
    run_cli("user", "add", "dora", "--role", "editor", "--password-stdin")
    run_cli("user", "role", "dora", "approver")
    with open_store(database) as store:
        trail = store.accounts.audit()
    assert [(e.actor, e.source, e.action, e.detail) for e in trail] == [
        ("root", "cli", "user.update", {"role": ["editor", "approver"]}),
        ("root", "cli", "user.add", {"role": "editor"}),
    ]
