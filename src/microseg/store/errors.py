"""What the store refuses, as MicrosegError subclasses the CLI renders once."""

from __future__ import annotations

from microseg.model import MicrosegError, PolicyError, Problem

ObjectKey = tuple[str, str]  # (section, object name)


class StoreUnavailable(MicrosegError):
    """The database refused or failed (read-only, disk full, connection lost, pool busy):
    nothing was written. `public` says the same without where the store is (its file or
    server): what a server tells its clients, while its log keeps the whole message."""

    def __init__(self, message: str, public: str):
        super().__init__(message)
        self.public = public


class NotFound(MicrosegError):
    """A revision, workspace or object that does not exist."""


class WorkspaceClosed(MicrosegError):
    """A submitted or abandoned workspace: it can be read, never changed or submitted."""


class StoreConflict(MicrosegError):
    """A workspace changes objects that mainline changed since the workspace's base."""

    def __init__(self, workspace: str, base: int, head: int, objects: list[ObjectKey]):
        self.workspace = workspace
        self.base = base
        self.head = head
        self.objects = list(objects)
        listing = ", ".join(f"{section}/{name}" for section, name in self.objects)
        super().__init__(
            f"workspace {workspace!r} conflicts with mainline: "
            f"{len(self.objects)} object{'s' if len(self.objects) != 1 else ''} it changes "
            f"changed on mainline since its base revision {base} (head is {head}): {listing}. "
            f"Nothing was written; abandon the workspace and redo its changes in a new "
            f"workspace on revision {head}."
        )


class InvalidChange(PolicyError):
    """A change that would leave the policy invalid: the problems, and nothing written."""

    def __init__(self, what: str, problems: list[Problem]):
        self.what = what
        super().__init__(problems)

    def __str__(self) -> str:
        return f"{self.what} refused, nothing written: {super().__str__()}"
