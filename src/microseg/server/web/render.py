"""Templates: one Jinja2 environment, autoescaping everything (an object may be named
`<script>alert(1)</script>`; it is shown as text everywhere), and the helpers pages share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

from microseg.compile.diff import DeviceDiff
from microseg.model import MicrosegError
from microseg.model.ports import PROTOCOL_NAMES
from microseg.server.web.identity import csrf_token, signed_in

ENVIRONMENT = Environment(
    loader=PackageLoader("microseg.server.web", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

# The navigation, in the order of the seed's CloudVision "Network Security" section.
NAVIGATION = (
    ("dashboard", "Dashboard", "/"),
    ("policy", "Policy Manager", "/policy"),
    ("workspaces", "Workspaces", "/workspaces"),
    ("changes", "Change Control", "/changes"),
    ("builder", "Policy Builder", "/builder"),
    ("monitor", "Policy Monitor", "/monitor"),
    ("check", "Check", "/check"),
    ("map", "Application Map", "/map"),
)


@dataclass(frozen=True)
class DiffLine:
    """One line of a unified diff with the class that colours it."""

    kind: str  # add, remove, hunk, file, context
    text: str


def diff_lines(text: str) -> list[DiffLine]:
    lines = []
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "remove"
        else:
            kind = "context"
        lines.append(DiffLine(kind, line))
    return lines


def diff_counts(diff: DeviceDiff) -> str:
    return f"+{diff.added} −{diff.removed}"


def when(value: datetime | str | None) -> str:
    """A time as the CLI prints it: UTC, to the second."""
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def names(value: tuple[str, ...] | list[str]) -> str:
    """A rule's sources, destinations or services: `any` for the empty tuple."""
    return ", ".join(value) if value else "any"


def as_json(value: Any) -> str:
    """A value as JSON text, the way `workspace diff` prints it (escaped by the template)."""
    return json.dumps(value, ensure_ascii=False)


def protocol_name(number: int | str) -> str:
    """`tcp` for 6, as the CLI prints a packet; a number without a name stays a number."""
    return PROTOCOL_NAMES.get(number, str(number)) if isinstance(number, int) else number


ENVIRONMENT.filters["protocol"] = protocol_name
ENVIRONMENT.filters["when"] = when
ENVIRONMENT.filters["json"] = as_json
ENVIRONMENT.filters["names"] = names
ENVIRONMENT.globals["diff_lines"] = diff_lines


@dataclass(frozen=True)
class Paging:
    """Where a list page is in its list (changes newest first, workspaces by name): the
    `offset` first skipped, `size` per page, `total` in the list. Paged with `?offset=N`,
    as the API's lists are."""

    offset: int
    size: int
    total: int

    @property
    def last(self) -> int:
        """The position of the page's last row (1-based)."""
        return min(self.offset + self.size, self.total)

    @property
    def earlier(self) -> int | None:
        """The offset of the page before, None on the first."""
        return max(self.offset - self.size, 0) if self.offset else None

    @property
    def later(self) -> int | None:
        """The offset of the page after, None on the last."""
        return self.offset + self.size if self.offset + self.size < self.total else None


MAX_OFFSET = 2**31 - 1  # as the API's `offset` query parameters


def page_offset(request: Request) -> int:
    """The `offset` query parameter of a list page: a whole number, 0 when absent."""
    text = request.query_params.get("offset", "0")
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > MAX_OFFSET:
        raise MicrosegError(f"offset {text[:20]!r}: expected a whole number from 0 to {MAX_OFFSET}")
    return int(text)


ENVIRONMENT.globals["diff_counts"] = diff_counts
ENVIRONMENT.globals["navigation"] = NAVIGATION


def page(
    request: Request, template: str, section: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A whole page (or, for an htmx request of a fragment template, just the fragment)."""
    html = render(
        template,
        request=request,
        section=section,
        user=signed_in(request),
        csrf_token=csrf_token(request),
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def render(template: str, **context: Any) -> str:
    return ENVIRONMENT.get_template(template).render(**context)


def error_page(
    request: Request, message: str, status_code: int, headers: dict[str, str] | None = None
) -> HTMLResponse:
    """What was refused and why: the whole page, or for htmx the message alone (swapped
    where the answer was to go)."""
    template = "fragments/error.html" if request.headers.get("HX-Request") else "error.html"
    response = page(
        request, template, "", status_code=status_code, title="Refused", message=message
    )
    response.headers.update(headers or {})
    return response
