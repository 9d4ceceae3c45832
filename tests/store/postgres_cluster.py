"""A throwaway PostgreSQL server for the store suite and the store benchmarks.

initdb as the `postgres` user (when run as root) in a temp dir, listening on a free loopback
port only, stopped and removed afterwards. Needs the Debian `postgresql` binaries.

The test suite's cluster lives in memory (`in_memory=True`: /dev/shm when it is a tmpfs with
room), as the tests want a real server, not a disk: on this machine's ext4 a CREATE
DATABASE took 0.40 s and on tmpfs 0.08 s, and removing a whole run's databases (hundreds of
copies of template1, ~300 files each) held the last test's teardown for 63 s. The
benchmarks keep theirs on disk, as a real server's.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SHARED_MEMORY = Path("/dev/shm")
IN_MEMORY_ROOM = 4 << 30  # bytes free on the tmpfs: the test databases are dropped as they go


def _postgres_bin() -> Path:
    found = sorted(
        (Path(p) for p in glob.glob(POSTGRES_BIN_GLOB) if (Path(p) / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise FileNotFoundError(
            f"PostgreSQL server binaries not found ({POSTGRES_BIN_GLOB}/initdb): install the "
            "Debian package `postgresql` (scripts/setup.sh does) — the store suite needs a "
            "real PostgreSQL server"
        )
    return found[-1]


def _as_postgres(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; as any other user it runs as that user.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory_directory() -> str | None:
    """/dev/shm when it is a tmpfs with IN_MEMORY_ROOM free; None (the default temp dir)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        free = shutil.disk_usage(SHARED_MEMORY).free
    except OSError:
        return None
    tmpfs = any(line.split()[1:3] == [str(SHARED_MEMORY), "tmpfs"] for line in mounts)
    return str(SHARED_MEMORY) if tmpfs and free >= IN_MEMORY_ROOM else None


def _run(argv: list[str], cwd: Path) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")


class PostgresServer:
    """A running throwaway cluster; `new_database()` gives a fresh empty database URL."""

    def __init__(self, port: int):
        self.port = port
        self._names = itertools.count(1)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, icu_locale: str | None = None) -> str:
        """A fresh database; with `icu_locale` (e.g. `en-US`), text sorts by that locale's
        collation, as on a server initialised in a non-C locale."""

        name = f"microseg_test_{next(self._names)}"
        collation = (
            f" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '{icu_locale}'"
            if icu_locale
            else ""
        )
        self._administer(f'CREATE DATABASE "{name}"{collation}')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database `new_database` made (its files go at once; connections still open
        to it are ended)."""
        name = url.rsplit("/", 1)[1]
        self._administer(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _administer(self, statement: str) -> None:
        """One statement as the superuser, outside a transaction (CREATE/DROP DATABASE)."""
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as admin:
            admin.execute(statement)


@contextmanager
def throwaway_postgres(in_memory: bool = False) -> Iterator[PostgresServer]:
    """initdb + pg_ctl start on a free loopback port; stopped and removed afterwards. With
    `in_memory`, its files are on /dev/shm if that can hold them (see the module's doc)."""
    binaries = _postgres_bin()
    directory = _memory_directory() if in_memory else None
    root = Path(tempfile.mkdtemp(prefix="microseg-pg-", dir=directory))
    root.chmod(0o755)  # the postgres user must be able to traverse it
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data = root / "data"
    port = _free_loopback_port()
    started = False
    try:
        _run(
            _as_postgres(
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    # Not the caller's LANG/LC_*: a fresh Debian has no locales generated
                    # (an ssh-forwarded en_US.UTF-8 makes initdb refuse to start).
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            root,
        )
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        _run(
            _as_postgres(
                [
                    str(binaries / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-l",
                    str(root / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            root,
        )
        started = True
        yield PostgresServer(port)
    finally:
        if started:
            subprocess.run(
                _as_postgres([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                cwd=root,
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_database(url: str | None) -> Iterator[str]:
    """`url` (a benchmark's `--postgres-url`) as given, or else a fresh database on a
    throwaway server, for as long as the block runs."""
    if url:
        yield url
        return
    with throwaway_postgres() as server:
        yield server.new_database()
