"""Fault injection for the store's writers: what was committed stays, history stays whole.

* SIGKILL at random points of imports and workspace submits (SQLite and PostgreSQL): after
  each kill the store passes its integrity check, revisions are numbered 1..head with each
  one's parent the one before, every revision the writer reported committed is there and
  loads, and the store takes the next write.
* ENOSPC on a small tmpfs, EROFS (the tmpfs remounted read-only), EACCES (a read-only
  directory for a process without CAP_DAC_OVERRIDE): one-line error, exit 1, nothing changed,
  and the store works again once the disk does.
* The same command run concurrently: imports all land, in order; one workspace submitted by
  several processes at once lands once.

The normal run kills a fixed number of writers; MICROSEG_FUZZ_LONG=1 (or `make fuzz`) kills many more.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import EXAMPLES, FUZZ_LONG, cli_command, cli_env

KILLS = 40 if FUZZ_LONG else 3  # per backend and writer kind
WRITER = Path(__file__).with_name("store_fault_writer.py")
HOME_LAB = str(EXAMPLES / "home-lab.yaml")
DNS_NTP = str(EXAMPLES / "home-lab-dns-ntp.yaml")


def _cli(*args: str, url: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_command(*args),
        env=cli_env(MICROSEG_DATABASE_URL=url, MICROSEG_AUTHOR="faults", **extra),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_line_user_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def assert_consistent(url: str, committed: set[int]) -> int:
    """The store's history is whole; returns the head."""
    from microseg.store import open_store

    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path)) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    with open_store(url) as store:
        log = store.log()
        head = store.head() or 0
        assert [r.id for r in log] == list(range(head, 0, -1)), "revisions 1..head, no gaps"
        assert all(r.parent == (r.id - 1 or None) for r in log), "each parent is the one before"
        assert committed <= {r.id for r in log}, "a committed revision was lost"
        for revision in log:
            store.revision_policy(revision.id)  # every revision loads and validates
        for workspace in store.workspace_list(include_closed=True):
            if workspace.state == "submitted":
                assert 1 <= (workspace.submitted_revision or 0) <= head
    return head


def _kill_a_writer(url: str, mode: str, rng: random.Random) -> set[int]:
    """Start a writer, let it commit a few revisions, SIGKILL it mid-flight."""
    writer = subprocess.Popen(
        [sys.executable, str(WRITER), url, mode],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    committed: set[int] = set()
    try:
        assert writer.stdout.readline() == "ready\n", writer.stderr.read()
        for _ in range(rng.randint(0, 3)):
            line = writer.stdout.readline()
            assert line.startswith("committed "), (line, writer.stderr.read())
            committed.add(int(line.split()[1]))
        # A random point inside the next transactions (each takes milliseconds). The delay
        # only picks the point; nothing is asserted about time.
        time.sleep(rng.uniform(0, 0.05))
    finally:
        writer.send_signal(signal.SIGKILL)
        out, err = writer.communicate(timeout=60)
    committed |= {int(line.split()[1]) for line in out.splitlines() if line.startswith("committed")}
    assert writer.returncode == -signal.SIGKILL, err
    return committed


@pytest.mark.parametrize("mode", ["import", "submit"])
def test_sigkill_at_random_points_keeps_history_whole(store_url, mode):
    rng = random.Random(f"{mode}-{store_url.split(':')[0]}")
    committed: set[int] = set()
    for _ in range(KILLS):
        committed |= _kill_a_writer(store_url, mode, rng)
        head = assert_consistent(store_url, committed)
    # The writer's imports each differ from anything a file holds: this one is a revision.
    done = _cli("import", DNS_NTP, url=store_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(f"as revision {head + 1} (13 objects)\n")
    assert_consistent(store_url, committed | {head + 1})


def test_concurrent_imports_all_land_in_order(store_url, tmp_path):
    # Each run imports a policy of its own (one rule's description differs): an import of
    # what the head already holds makes no revision, and each of these must make one.
    seed = Path(HOME_LAB).read_text()
    assert seed.count("description: allow webservers to appserver1") == 1
    policies = []
    for n in range(4):
        policies.append(tmp_path / f"run-{n}.yaml")
        policies[n].write_text(
            seed.replace("webservers to appserver1", f"webservers to appserver1, run {n}")
        )
    runs = [
        subprocess.Popen(
            cli_command("import", str(policies[n]), "-m", f"run {n}"),
            env=cli_env(MICROSEG_DATABASE_URL=store_url, MICROSEG_AUTHOR="faults"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    results = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    assert [code for code, _, _ in results] == [0] * 4, results
    numbers = sorted(int(out.split("as revision ")[1].split()[0]) for _, out, _ in results)
    assert numbers == [1, 2, 3, 4]
    assert assert_consistent(store_url, set(numbers)) == 4


def test_one_workspace_submitted_concurrently_lands_once(store_url, tmp_path):
    assert _cli("import", HOME_LAB, url=store_url).returncode == 0
    assert _cli("workspace", "create", "w", url=store_url).returncode == 0
    change = tmp_path / "rule.yaml"
    change.write_text("groups:\n  - name: printers\n    prefixes: [10.100.7.0/24]\n")
    assert _cli("workspace", "set", "w", "--file", str(change), url=store_url).returncode == 0
    runs = [
        subprocess.Popen(
            cli_command("workspace", "submit", "w"),
            env=cli_env(MICROSEG_DATABASE_URL=store_url, MICROSEG_AUTHOR="faults"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    assert sorted(code for code, _, _ in results) == [0, 1, 1], results
    for code, _, err in results:
        if code == 1:
            assert (
                err
                == "error: workspace 'w' was submitted as revision 2; it can no longer be changed or submitted\n"
            )
    assert assert_consistent(store_url, {1, 2}) == 2


# -- full, read-only and forbidden disks -----------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs mounted for the test (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.fail("the disk fault tests mount a tmpfs: run them as root (CI does)")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mountpoint)], check=True
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb") as file, contextlib.suppress(OSError):
        while True:
            file.write(b"\0" * 65536)
            file.flush()
    return filler


@pytest.mark.system
def test_a_full_disk_is_a_user_error_and_changes_nothing(small_disk):
    url = f"sqlite:///{small_disk / 'store.db'}"
    assert _cli("import", DNS_NTP, url=url).returncode == 0
    before = assert_consistent(url, {1})
    filler = _fill(small_disk)
    error = _one_line_user_error(_cli("import", HOME_LAB, url=url))
    assert "full" in error or "No space left" in error or "disk I/O" in error, error
    output = small_disk / "home-lab.yaml"
    error = _one_line_user_error(_cli("fmt", HOME_LAB, "-o", str(output), url=url))
    assert error == f"error: cannot write {output}: No space left on device"
    assert sorted(p.name for p in small_disk.iterdir() if p.name.startswith(".home-lab")) == []
    filler.unlink()
    assert assert_consistent(url, {1}) == before
    assert _cli("import", HOME_LAB, url=url).returncode == 0
    assert assert_consistent(url, {1, 2}) == 2


@pytest.mark.system
def test_a_disk_that_turns_read_only_is_a_user_error_and_changes_nothing(small_disk):
    url = f"sqlite:///{small_disk / 'store.db'}"
    assert _cli("import", DNS_NTP, url=url).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        error = _one_line_user_error(_cli("import", HOME_LAB, url=url))
        assert "read-only" in error.lower() or "readonly" in error or "unable to open" in error
        output = small_disk / "out.yaml"
        error = _one_line_user_error(_cli("fmt", HOME_LAB, "-o", str(output), url=url))
        assert error == f"error: cannot write {output}: Read-only file system"
        reading = _cli("log", url=url)
        assert reading.returncode in (0, 1) and "internal error" not in reading.stderr
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert assert_consistent(url, {1}) == 1
    assert _cli("import", HOME_LAB, url=url).returncode == 0


@pytest.mark.system
def test_a_directory_without_write_permission_is_a_user_error(tmp_path):
    directory = tmp_path / "locked"
    directory.mkdir()
    directory.chmod(0o555)
    argv = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]
    url = f"sqlite:///{directory / 'store.db'}"
    try:
        output = directory / "out.yaml"
        for args, expected in (
            (
                ("fmt", HOME_LAB, "-o", str(output)),
                f"error: cannot write {output}: Permission denied",
            ),
            (("import", HOME_LAB), "unable to open database file"),
        ):
            done = subprocess.run(
                [*argv, *cli_command(*args)],
                env=cli_env(MICROSEG_DATABASE_URL=url, MICROSEG_AUTHOR="faults"),
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert expected in _one_line_user_error(done)
        assert list(directory.iterdir()) == []
    finally:
        directory.chmod(0o755)
