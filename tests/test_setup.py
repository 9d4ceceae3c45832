"""`make demo` / `make test` and scripts/setup.sh, without touching this machine's packages.

The script's functions are sourced in bash with test doubles first on PATH: `dpkg-query`
(answers "not installed" for everything) and `apt-get` (records its arguments; while told
to, it fails as apt 2.6.1 does when another process holds the lists lock, message copied
from a real run on Debian 12: `E: Could not get lock /var/lib/apt/lists/lock. It is held by
process 28716 (python3)` / `E: Unable to lock directory /var/lib/apt/lists/`, exit 100)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from support import ROOT

SETUP = ROOT / "scripts" / "setup.sh"
TEST_PACKAGES = (
    "nftables iproute2 procps softflowd nfdump postgresql tcpdump chromium default-jre-headless"
)

FAKE_DPKG_QUERY = """#!/bin/sh
# Test double of dpkg-query -W: no package is installed.
echo "dpkg-query: no packages found matching $3" >&2
exit 1
"""

FAKE_APT_GET = """#!/bin/sh
# Test double of apt-get: records its arguments; fails on the lists lock while $LOCKED_TRIES > 0.
echo "$*" >> "$APT_LOG"
tries=$(cat "$LOCK_STATE")
if [ "$tries" -gt 0 ]; then
    echo $((tries - 1)) > "$LOCK_STATE"
    echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 28716 (python3)"
    echo "E: Unable to lock directory /var/lib/apt/lists/"
    exit 100
fi
case "$*" in *no-such-package*) echo "E: Unable to locate package no-such-package"; exit 100;; esac
exit 0
"""


@pytest.fixture
def doubles(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("dpkg-query", FAKE_DPKG_QUERY), ("apt-get", FAKE_APT_GET)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return tmp_path


def _bash(doubles: Path, script: str, locked_tries: int = 0) -> subprocess.CompletedProcess:
    (doubles / "lock-state").write_text(f"{locked_tries}\n")
    env = {
        "PATH": f"{doubles / 'bin'}:/usr/bin:/bin:/usr/sbin:/sbin",
        "APT_LOG": str(doubles / "apt.log"),
        "LOCK_STATE": str(doubles / "lock-state"),
        "APT_LOCK_POLL": "0",
    }
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; source {SETUP}; {script}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_demo_needs_no_test_packages_and_test_needs_them_all(doubles):
    demo = _bash(doubles, "missing_packages demo")
    test = _bash(doubles, "missing_packages test")
    assert demo.returncode == 0 and test.returncode == 0, demo.stderr + test.stderr
    assert demo.stdout.split() == []  # python3 and ensurepip are here: nothing to install
    assert test.stdout.split() == TEST_PACKAGES.split()


def test_apt_update_waits_for_the_lists_lock_instead_of_failing(doubles):
    result = _bash(doubles, "apt_get update -qq", locked_tries=2)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = (doubles / "apt.log").read_text().splitlines()
    assert calls == ["-o DPkg::Lock::Timeout=900 update -qq"] * 3
    assert result.stderr.count("another package manager holds the apt lock; waiting") == 2
    assert "Could not get lock" not in result.stdout  # only the final attempt's output


def test_apt_gives_up_on_the_lock_after_the_wait(doubles):
    result = _bash(doubles, "APT_LOCK_WAIT=0 apt_get update -qq", locked_tries=5)
    assert result.returncode == 100
    assert "Could not get lock /var/lib/apt/lists/lock" in result.stdout


def test_apt_errors_other_than_the_lock_fail_at_once(doubles):
    result = _bash(doubles, "apt_get install -y no-such-package")
    assert result.returncode == 100
    assert "Unable to locate package no-such-package" in result.stdout
    assert (doubles / "apt.log").read_text().count("install") == 1


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(
    ("goal", "profile", "runs"),
    [("demo", "demo", ".venv/bin/microseg demo"), ("test", "test", ".venv/bin/python -m pytest")],
)
def test_make_goal_sets_up_only_its_profile(tmp_path, goal, profile, runs):
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    plan = subprocess.run(
        ["make", "-n", goal], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    setups = [line for line in plan if "scripts/setup.sh" in line]
    assert setups == [f"scripts/setup.sh {profile}"]
    assert any(line.startswith(runs) for line in plan)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lint_runs_ruff_and_the_type_checker(tmp_path):
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    plan = subprocess.run(
        ["make", "-n", "lint"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert ".venv/bin/ruff check src tests bench" in plan
    assert ".venv/bin/mypy" in plan  # files and options: [tool.mypy] in pyproject.toml
