"""What the server tests share: users' password, a clock the tests move, and clients that
authenticate with an API token or a browser session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

PASSWORD = "correct horse battery staple"
ROLES = ("viewer", "editor", "approver", "admin")


class FakeClock:
    """Wall clock and monotonic clock the test moves by hand (no test waits or reads time)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
        self.seconds = 1000.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.seconds += seconds


@dataclass
class Server:
    app: object
    store: object
    clock: FakeClock
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, role: str | None = None) -> TestClient:
        """A client with the API token of the user `role` (None: no credentials)."""
        client = TestClient(self.app, raise_server_exceptions=False)
        if role is not None:
            client.headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return client

    def browser(self, role: str) -> tuple[TestClient, str]:
        """A client logged in with a session cookie as `role`, and its CSRF token."""
        client = TestClient(self.app, raise_server_exceptions=False)
        answer = client.post("/api/auth/login", json={"username": role, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return client, answer.json()["csrf_token"]
