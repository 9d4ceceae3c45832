"""What the store reports: revisions and workspaces as plain data, and who is writing."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

AUTHOR_ENV = "MICROSEG_AUTHOR"


def default_author() -> str:
    """$MICROSEG_AUTHOR, else the OS user name."""
    from_env = os.environ.get(AUTHOR_ENV, "").strip()
    if from_env:
        return from_env
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"uid-{os.getuid()}"


@dataclass(frozen=True)
class RevisionInfo:
    """A mainline revision as the log shows it."""

    id: int
    parent: int | None
    author: str
    message: str
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parent": self.parent,
            "author": self.author,
            "message": self.message,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class Imported:
    """What an import did: `revision` is the new head, or the head it left as it was when
    the policy is the head's own (`changed` False: no empty revision is made)."""

    revision: int
    changed: bool

    def as_json(self) -> dict[str, Any]:
        return {"revision": self.revision, "changed": self.changed}


@dataclass(frozen=True)
class WorkspaceInfo:
    """A workspace: its base, state (open / submitted / abandoned) and number of changes."""

    name: str
    base: int
    state: str
    author: str
    created_at: datetime
    changes: int
    submitted_revision: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base": self.base,
            "state": self.state,
            "author": self.author,
            "created_at": self.created_at.isoformat(),
            "changes": self.changes,
            "submitted_revision": self.submitted_revision,
        }
