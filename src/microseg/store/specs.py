"""`rev:N` and `ws:NAME`: a stored policy named the way the CLI and the API both take it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from microseg.model import MicrosegError, PolicySet

if TYPE_CHECKING:
    from microseg.store.store import Store

STORED_PREFIXES = ("rev:", "ws:")


def is_stored_spec(spec: str) -> bool:
    return spec.startswith(STORED_PREFIXES)


def revision_number(spec: str) -> int:
    """N of `rev:N`; a number of thousands of digits is no revision (and past what int()
    converts)."""
    number = spec.removeprefix("rev:")
    # ASCII digits only: str.isdigit() also accepts `²`, which int() refuses.
    if not (number.isascii() and number.isdigit()):
        raise MicrosegError(f"{spec[:40]!r}: a revision is rev:N with N a number")
    digits = number.lstrip("0") or "0"
    if len(digits) > 18:
        raise MicrosegError(f"no revision {digits[:20]}... (a number of {len(digits)} digits)")
    return int(digits)


def check_stored_spec(spec: str) -> None:
    """Refuse a malformed `rev:N` before anything opens the store."""
    if spec.startswith("rev:"):
        revision_number(spec)


def stored_policy(store: Store, spec: str) -> PolicySet:
    """The policy set of `rev:N` (a revision) or `ws:NAME` (a workspace's effective policy)."""
    if spec.startswith("rev:"):
        return store.revision_policy(revision_number(spec))
    if spec.startswith("ws:"):
        return store.workspace_policy(spec.removeprefix("ws:"))
    raise MicrosegError(f"{spec[:40]!r}: expected rev:N (a revision) or ws:NAME (a workspace)")
