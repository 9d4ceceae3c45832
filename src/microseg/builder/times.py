"""Times as the builder prints and filters them: UTC, second precision, ISO 8601."""

from __future__ import annotations

from datetime import UTC, datetime

from microseg.model import MicrosegError


def iso_time(milliseconds: int) -> str:
    """ms since the epoch -> `2025-11-19T18:53:40Z` (UTC, second precision)."""
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, option: str) -> int:
    """A --since/--until value (ISO 8601; UTC when no zone is given) -> ms since epoch."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise MicrosegError(
            f"{option}: {text!r} is not an ISO 8601 time such as 2025-11-19T18:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
