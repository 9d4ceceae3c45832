"""Error types shared by every layer. Raised low, rendered once at the CLI/API edge."""

from __future__ import annotations

from dataclasses import dataclass, replace


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
