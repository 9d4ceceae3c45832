"""Times as the commands print and filter them: UTC, second precision, ISO 8601; every
--since/--until option reads its value here."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from microseg.model import MicrosegError

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def iso_time(milliseconds: int) -> str:
    """ms since the epoch -> `2025-11-19T18:53:40Z` (UTC, second precision)."""
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, option: str, now: datetime | None = None) -> int:
    """A --since/--until value (see parse_moment; `now` default: the clock) -> ms since epoch."""
    return int(parse_moment(text, option, now or datetime.now(UTC)).timestamp() * 1000)


def parse_moment(text: str, option: str, now: datetime) -> datetime:
    """A --since/--until value: `30m`, `24h`, `7d` before `now`, or an ISO 8601 time (UTC
    unless it names a zone), which gives the same window, and output, on every run."""
    if _DURATION.match(text.strip()):
        return now - parse_window(text, option)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _not_a_time(text, option) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_window(text: str, option: str = "--since") -> timedelta:
    """`30m`, `24h`, `7d`: a window length; anything else is a user error."""
    found = _DURATION.match(text.strip())
    if not found or int(found.group(1)) == 0:
        raise _not_a_time(text, option)
    try:
        window = timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
        datetime.now(UTC) - window
    except OverflowError:
        raise MicrosegError(f"{option} {text!r}: longer than the calendar reaches") from None
    return window


def _not_a_time(text: str, option: str) -> MicrosegError:
    return MicrosegError(
        f"{option} {text!r}: expected a duration like 30m, 24h or 7d, or an ISO time "
        "like 2025-11-19T18:00"
    )
