"""The server's users, tokens, sessions and audit trail in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from microseg.model import MicrosegError
from microseg.store import NotFound


def test_users_tokens_and_sessions_round_trip(store):
    accounts = store.accounts
    accounts.add_user("alice", "admin", "$argon2id$fake")
    accounts.add_user("Bob", "viewer", "$argon2id$other")
    assert [u.name for u in accounts.users()] == ["Bob", "alice"]  # byte order on both backends
    with pytest.raises(MicrosegError, match="already exists"):
        accounts.add_user("alice", "viewer", "x")
    with pytest.raises(MicrosegError, match="role 'root'"):
        accounts.add_user("carol", "root", "x")
    token = accounts.add_token("alice", "ci", "a" * 64)
    assert accounts.user_by_token("a" * 64).name == "alice"
    accounts.revoke_token(token.id)
    assert accounts.user_by_token("a" * 64) is None
    with pytest.raises(NotFound):
        accounts.revoke_token(2**40)
    now = datetime(2026, 11, 30, tzinfo=UTC)
    accounts.add_session("b" * 64, "Bob", now + timedelta(hours=1), "127.0.0.1")
    assert accounts.user_by_session("b" * 64, now).name == "Bob"
    assert accounts.user_by_session("b" * 64, now + timedelta(hours=2)) is None
    accounts.update_user("Bob", disabled=True)
    assert accounts.user_by_session("b" * 64, now) is None
    assert accounts.count_admins() == 1


def test_the_audit_trail_keeps_who_where_what_newest_first(store):
    store.accounts.record(
        "alice", "192.0.2.7", "workspace.set", "workspace/w/groups/web", {"a": [1, 2]}
    )
    store.accounts.record("bob", "cli", "user.add", "user/carol", {"role": "viewer"})
    trail = store.accounts.audit()
    assert [(e.actor, e.source, e.action, e.detail) for e in trail] == [
        ("bob", "cli", "user.add", {"role": "viewer"}),
        ("alice", "192.0.2.7", "workspace.set", {"a": [1, 2]}),
    ]
    assert [e.actor for e in store.accounts.audit(actor="alice")] == ["alice"]
    assert [e.actor for e in store.accounts.audit(limit=1, offset=1)] == ["alice"]
