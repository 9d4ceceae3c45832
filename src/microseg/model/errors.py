"""Error types shared by every layer. Raised low, rendered once at the CLI/API edge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class MicrosegError(Exception):
    """A user-facing error: bad input or a refused operation. Never a bug."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy, located as precisely as the source allows.

    `path` locates the problem inside the policy: (section, object name, field, index...).
    The policy-file loader fills `file`, `line` and `column` from `path`.
    """

    message: str
    path: tuple[str | int, ...] = ()
    file: str | None = None
    line: int | None = None
    column: int | None = None

    @property
    def object(self) -> str:
        """The object the problem concerns, as the user names it: `rule 'web-to-app'`."""
        if len(self.path) >= 2 and isinstance(self.path[1], str):
            return f"{singular(str(self.path[0]))} '{self.path[1]}'"
        return str(self.path[0]) if self.path else ""

    @property
    def field(self) -> str:
        return ".".join(str(part) for part in self.path[2:])

    def located(self, file: str | None, line: int | None, column: int | None) -> Problem:
        return replace(self, file=file, line=line, column=column)

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        subject = " ".join(part for part in (self.object, self.field) if part)
        return f"{where}{subject}: {self.message}" if subject else f"{where}{self.message}"


class PolicyError(MicrosegError):
    """Every problem found in a policy, reported at once."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__(self._summary())

    def _summary(self) -> str:
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in policy"
        return "\n".join([head, *(f"  {problem}" for problem in self.problems)])


_SINGULAR = {
    "devices": "device",
    "monitor_nodes": "monitor node",
    "domains": "domain",
    "categories": "category",
    "groups": "group",
    "services": "service",
    "monitor_objects": "monitor object",
    "redirect_objects": "redirect object",
    "rules": "rule",
    "policies": "policy",
}


def singular(section: str) -> str:
    """`monitor_objects` -> `monitor object`, for messages."""
    return _SINGULAR.get(section, section)


def validation_problems(
    section: str, label: str, data: Any, error: ValidationError
) -> list[Problem]:
    """Pydantic's errors for one object as Problems, worded for a policy author.

    The path keeps only the keys and indexes that exist in `data`: pydantic also adds union
    tags (`literal['tcp',...]`, `int`) the author never wrote. One problem per path."""
    problems: list[Problem] = []
    seen: set[tuple[tuple, Any]] = set()
    for detail in error.errors():
        path = _input_path(data, detail["loc"])
        # A missing field is not in `data`, so its path stops at its object: key on the
        # field too, or a second missing field of the same object would be dropped.
        key = (path, detail["loc"][-1] if detail["type"] == "missing" and detail["loc"] else None)
        if key in seen:
            continue
        seen.add(key)
        problems.append(Problem(_message(detail), (section, label, *path)))
    return problems


def _input_path(data: Any, loc: tuple) -> tuple:
    kept: list[Any] = []
    for part in loc:
        if (isinstance(data, Mapping) and part in data) or (
            isinstance(data, list | tuple) and isinstance(part, int) and 0 <= part < len(data)
        ):
            data = data[part]
            kept.append(part)
    return tuple(kept)


UNKNOWN_KEY = "unknown key (not a field of this object)"


def _message(detail: Any) -> str:
    message = detail["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if detail["type"] == "extra_forbidden":
        return UNKNOWN_KEY
    if detail["type"] == "missing":
        field = detail["loc"][-1] if detail["loc"] else None
        return (
            f"required field {field!r} is missing"
            if isinstance(field, str)
            else ("required field is missing")
        )
    value = detail.get("input")
    if detail["type"] in ("tuple_type", "list_type"):
        return f"expected a list, got {'a mapping' if isinstance(value, dict) else repr(value)}"
    if detail["type"] not in ("value_error", "assertion_error") and not isinstance(
        value, dict | list
    ):
        message = f"{message} (got {value!r})"
    return message
