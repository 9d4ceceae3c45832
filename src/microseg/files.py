"""The one atomic file writer: the CLI's output files and the targets' state files."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

Writer = Callable[[BinaryIO], None]


def replace_atomically(target: Path, content: str | bytes | Writer, mode: int) -> None:
    """Replace `target` with `content`: readers see the old file or the new one, never a
    part. The temporary file has a unique name beside it, synced before the rename, and is
    removed on failure."""
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            write_content(file, content)
            file.flush()
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_content(file: BinaryIO, content: str | bytes | Writer) -> None:
    """Text (as UTF-8), bytes, or what a writer function writes."""
    if isinstance(content, str):
        file.write(content.encode("utf-8"))
    elif isinstance(content, bytes):
        file.write(content)
    else:
        content(file)
