"""What every request of one server shares: the store, the clock, the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import Request

from microseg.server.cache import RevisionCache
from microseg.server.ratelimit import LoginLimiter
from microseg.store import Store


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ServerContext:
    store: Store
    # Cookies get `Secure` when the server speaks TLS (a browser then never sends them in clear).
    secure_cookies: bool = False
    session_lifetime: timedelta = timedelta(hours=12)
    clock: Callable[[], datetime] = _utc_now
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    # The flow store sessions, recommend and monitor read (None: $MICROSEG_FLOW_STORE or the
    # user data dir, as the CLI).
    flow_store: Path | None = None
    revisions: RevisionCache = field(init=False)

    def __post_init__(self) -> None:
        self.revisions = RevisionCache(self.store)


def server_context(request: Request) -> ServerContext:
    context: ServerContext = request.app.state.context
    return context
