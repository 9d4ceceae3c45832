"""Server fixtures: an app on a fresh SQLite store with one user per role (server_kit)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from server_kit import PASSWORD, ROLES, FakeClock, Server

from support import EXAMPLES


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch):
    # Still argon2id, with its smallest cost: each test adds four users.
    from microseg.server import accounts

    monkeypatch.setattr(
        accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


@pytest.fixture
def store_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def flow_store(tmp_path):
    """The server's flow store: empty (a test module overrides the fixture)."""
    return tmp_path / "flows"


@pytest.fixture
def server(store_url, flow_store) -> Iterator[Server]:
    from microseg.server import accounts, create_app
    from microseg.server.ratelimit import LoginLimiter

    clock = FakeClock()
    app = create_app(
        store_url, clock=clock, limiter=LoginLimiter(clock=clock.monotonic), flow_store=flow_store
    )
    store = app.state.context.store
    running = Server(app, store, clock)
    for role in ROLES:
        accounts.add_user(store, role, role, PASSWORD)
        running.tokens[role] = accounts.create_token(store, role, "tests")[1]
    with TestClient(app):  # runs the lifespan: the store closes at the end
        yield running


@pytest.fixture
def seeded(server) -> Server:
    """The server with the seed lab imported as revision 1."""
    from microseg.policyfile import load_policy

    server.store.import_policy(load_policy(EXAMPLES / "home-lab.yaml"), "andreas", "seed lab")
    return server
