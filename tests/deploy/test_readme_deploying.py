"""The README's worked deploy example, run as written against the eAPI test doubles.

The README marks that block `skip` for the general README test because it needs the
doubles running; this test starts them the way the README says (a separate process,
`python3 tests/targets/seed_doubles.py`), on free ports, then runs every command of the
block in a README session and compares the output with the README's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from readme_harness import Session, check_command, parse_readme
from support import ROOT, SRC

SECTION = "Deploying"
MARK = "tests/deploy/test_readme_deploying.py"
TIMES = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def worked_example():
    section = next(s for s in parse_readme((ROOT / "README.md").read_text()) if s.title == SECTION)
    (block,) = [b for b in section.blocks if b.skip and MARK in b.skip]
    return block


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_the_worked_example_runs_as_the_readme_shows():
    block = worked_example()
    switch_port, vztx_port = free_port(), free_port()
    doubles = subprocess.Popen(
        [
            sys.executable,
            "tests/targets/seed_doubles.py",
            "--switch-port",
            str(switch_port),
            "--vztx-port",
            str(vztx_port),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    session = Session(ROOT, SRC)
    try:
        assert doubles.stdout.readline().startswith("eAPI test double andreasm-720xp-home on")
        os.symlink(ROOT / "tests", session.directory / "tests")
        for name in ("XDG_CONFIG_HOME", "MICROSEG_CREDENTIALS_FILE"):
            session.env.pop(name, None)
        for name in ("MICROSEG_DEVICE_USERNAME", "MICROSEG_DEVICE_PASSWORD"):
            session.env.pop(name, None)
        ports = f"--switch-port {switch_port} --vztx-port {vztx_port} --point"
        masks = [*block.masks, TIMES, r"run 1 by \S+", str(switch_port), "8443"]
        failures = []
        for command in block.commands:
            command.text = command.text.replace("--point", ports)
            code, output = session.run(command.text)
            failure = check_command(command, masks, code, output)
            if failure:
                failures.append(failure)
        assert not failures, "\n\n".join(failures)
    finally:
        session.close()
        doubles.terminate()
        doubles.communicate(timeout=30)
    assert doubles.returncode == 0
