"""Shared fixtures: the seed examples and an in-process CLI runner."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SRC = ROOT / "src"
# The seed's two switch configurations, verbatim copies of shared/reference/ (golden outputs).
REFERENCE = ROOT / "tests" / "data" / "reference"
SHARED_REFERENCE = ROOT.parent / "shared" / "reference"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys):
    """Run `microseg ARGS...` in-process, the way a user would; returns exit code and output."""
    from microseg.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


def cli_command(*args: str) -> list[str]:
    """argv for running microseg from this checkout in a subprocess."""
    return [sys.executable, "-m", "microseg", *args]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


@pytest.fixture
def home_lab():
    from microseg.policyfile import load_policy

    return load_policy(EXAMPLES / "home-lab.yaml")
