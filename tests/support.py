"""Shared test constants and helpers (import as `from support import ...`)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SRC = ROOT / "src"
# The seed's two switch configurations (examples/seed-720xp-*.eos), verbatim copies of
# shared/reference/: the golden outputs, shipped beside the policies they come from.
REFERENCE = EXAMPLES
SHARED_REFERENCE = ROOT.parent / "shared" / "reference"
# The fuzz and fault suites' longer run (`make fuzz`): a larger budget than every test run.
FUZZ_LONG = os.environ.get("MICROSEG_FUZZ_LONG") == "1" or os.environ.get("MICROSEG_FUZZ") == "long"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def cli_command(*args: str) -> list[str]:
    """argv for running microseg from this checkout in a subprocess."""
    return [sys.executable, "-m", "microseg", *args]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def write_sessions(directory: Path, rows: list[dict], segments: int = 2) -> Path:
    """Session rows (SESSION_SCHEMA fields) written into a flow store at `directory` as
    `segments` segments of collector leaf1 on 2025-11-19 (rows dealt out in turn, so
    every segment holds some of each kind); returns `directory`."""
    from datetime import date

    import pyarrow as pa

    from microseg.flows.flowstore import FlowStore
    from microseg.flows.sessions import SESSION_SCHEMA

    store = FlowStore(directory, "leaf1").open()
    for part in (rows[k::segments] for k in range(segments)):
        store.write(pa.Table.from_pylist(part).cast(SESSION_SCHEMA), day=date(2025, 11, 19))
    return directory
