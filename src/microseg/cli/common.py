"""What every command shares: output, JSON, and resolving a POLICY argument."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from microseg.model import MicrosegError, PolicySet

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

JSON_OPTION_HELP = "Print machine-readable JSON instead of a table."
POLICY_HELP = "A policy file or directory, rev:N (a stored revision) or ws:NAME (a workspace)."


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`1 device`, `2 devices`, `0 devices`: a count with its noun in the right number."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def section_count(section: str, count: int) -> str:
    """`1 monitor node`, `2 categories`: how many objects of a policy section."""
    from microseg.model.errors import singular

    return counted(count, singular(section), section.replace("_", " "))


def emit_json(data: Any) -> None:
    """Deterministic JSON on stdout: same input, same bytes."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_output(path: Path, text: str) -> None:
    """Write a command's `-o FILE` so readers see the old file or the new one, never a part.

    A file that cannot be written (no such directory, a directory in the way, no permission)
    is a user error naming it; nothing is left behind."""
    directory = path.parent if str(path.parent) else Path(".")
    try:
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise MicrosegError(f"cannot write {path}: {error.strerror}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise MicrosegError(f"cannot write {path}: {error.strerror}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def resolve_policy(spec: str) -> PolicySet:
    """A POLICY argument: a path, `rev:N` or `ws:NAME`."""
    number = spec.removeprefix("rev:")
    # ASCII digits only: str.isdigit() also accepts `²`, which int() refuses.
    if spec.startswith("rev:") and not (number.isascii() and number.isdigit()):
        raise MicrosegError(f"{spec!r}: a revision is rev:N with N a number")
    if spec.startswith(("rev:", "ws:")):
        from microseg.store import open_store

        with open_store() as store:
            if spec.startswith("rev:"):
                return store.revision_policy(int(number))
            return store.workspace_policy(spec.removeprefix("ws:"))
    from microseg.policyfile import load_policy

    return load_policy(Path(spec))
