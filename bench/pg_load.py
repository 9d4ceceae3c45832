"""Benchmark: the versioned store under load, on PostgreSQL and on SQLite.

`--writers` engineers (threads of one process, each with its own connection) loop for
`--seconds`: create a workspace, set one group, submit. Mostly each changes a group of its
own; every `--hot-every`-th round changes the group they all share (`load-hot`), and the
first round is that shared change by every writer at once (after a barrier, from one base
revision), so conflicts are certain: one submit wins, the others must be refused with
StoreConflict. `--readers` readers (threads spread over `--reader-processes` processes; the
threads of a process share one Store and its connection pool, as a `microseg serve` worker
does) loop reading a random revision (`revision_policy`: the objects read and validated).

Checked after the run, from the database: every submit that returned revision R is in the
log with its author, R holds exactly the prefix that submit wrote, and the head holds each
writer's last write of its own group (else it counts as a lost write); any error that is not
a StoreConflict is reported by kind. Printed per backend: submits, conflicts, errors, lost
writes, reads, p50/p99 latency of a revision read in ms, submits and reads per second.

SQLite's limits (documented in the README): one writer at a time (BEGIN IMMEDIATE); another
writer waits up to the busy timeout (30 s, `SQLITE_BUSY_TIMEOUT_S`) and then fails with
"database is locked", which would show under `errors`. PostgreSQL is a throwaway server
(tests/store/postgres_cluster.py), or `--postgres-url` of an empty database.

Prints one JSON line. Run: .venv/bin/python bench/pg_load.py [--seconds 60] [--writers 20]
[--readers 100] [--backends postgresql,sqlite] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import random
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "store"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from postgres_cluster import postgres_database

from microseg.model import MicrosegError
from microseg.policyfile import load_policy
from microseg.store import StoreConflict, open_store

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HOT = "load-hot"


@dataclass(frozen=True)
class Write:
    writer: int
    group: str
    prefix: str
    revision: int


@dataclass
class Outcome:
    writes: list[Write] = field(default_factory=list)
    conflicts: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)

    def error(self, error: BaseException) -> None:
        kind = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def add(self, other: Outcome) -> None:
        self.writes += other.writes
        self.conflicts += other.conflicts
        for kind, count in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + count
        self.latencies_ms += other.latencies_ms


def own_group(writer: int) -> str:
    return f"load-w{writer:02d}"


def _prefix(writer: int, round_number: int) -> str:
    return f"10.{200 + writer % 50}.{round_number // 256 % 256}.{round_number % 256}/32"


def _writer(url: str, writer: int, seconds: float, hot_every: int, barrier, outcome: Outcome):
    with open_store(url) as store:
        round_number, until = 0, 0.0
        while round_number == 0 or time.monotonic() < until:
            hot = round_number % hot_every == 0  # round 0: every writer at once
            group = HOT if hot else own_group(writer)
            prefix = _prefix(writer, round_number)
            workspace = f"load-{writer:02d}-{round_number}"
            try:
                store.workspace_create(workspace)
                store.workspace_set(workspace, "groups", {"name": group, "prefixes": [prefix]})
                if round_number == 0:
                    barrier.wait(120)
                    until = time.monotonic() + seconds  # the load starts all together
                revision = store.workspace_submit(workspace, f"writer{writer:02d}", group)
                outcome.writes.append(Write(writer, group, prefix, revision))
            except StoreConflict:
                outcome.conflicts += 1
                with contextlib.suppress(MicrosegError):
                    store.workspace_abandon(workspace)
            except Exception as error:
                outcome.error(error)
            round_number += 1


def _run_threads(target, arguments: list[tuple]) -> None:
    """One thread per tuple of `arguments`, all started, then all waited for."""
    threads = [threading.Thread(target=target, args=args) for args in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _writers(url: str, writers: int, seconds: float, hot_every: int, results) -> None:
    outcome = Outcome()
    barrier = threading.Barrier(writers)
    _run_threads(_writer, [(url, w, seconds, hot_every, barrier, outcome) for w in range(writers)])
    results.put(asdict(outcome))


def _reader(store, until: float, seed: int, outcome: Outcome) -> None:
    choose = random.Random(seed)
    while time.monotonic() < until:
        try:
            head = store.head()
            revision = choose.randint(1, head)
            started = time.perf_counter()
            policy = store.revision_policy(revision)
            outcome.latencies_ms.append((time.perf_counter() - started) * 1000)
            assert policy.groups, "a revision read back without its groups"
        except Exception as error:
            outcome.error(error)


def _readers(url: str, first: int, readers: int, seconds: float, results) -> None:
    outcome = Outcome()
    until = time.monotonic() + seconds
    with open_store(url) as store:
        _run_threads(_reader, [(store, until, first + r, outcome) for r in range(readers)])
    results.put(asdict(outcome))


def _lost_writes(url: str, writes: list[Write], writers: int) -> list[str]:
    """Every acknowledged submit, checked against what the database holds."""
    lost = []
    with open_store(url) as store:
        log = {info.id: info for info in store.log()}
        for write in writes:
            info = log.get(write.revision)
            if info is None or info.author != f"writer{write.writer:02d}":
                lost.append(f"revision {write.revision} of writer{write.writer:02d} missing")
                continue
            held = store.revision_policy(write.revision).group(write.group).prefixes
            if [str(prefix) for prefix in held] != [write.prefix]:
                lost.append(f"revision {write.revision}: {write.group} is {held}")
        head = store.revision_policy(store.head() or 0)
        for writer in range(writers):
            own = [w for w in writes if w.writer == writer and w.group == own_group(writer)]
            if own:
                last = max(own, key=lambda write: write.revision)
                held = [str(prefix) for prefix in head.group(own_group(writer)).prefixes]
                if held != [last.prefix]:
                    lost.append(f"head: {own_group(writer)} is {held}, last write {last.prefix}")
        if len(log) != len(writes) + 1:
            lost.append(f"{len(log)} revisions for {len(writes)} acknowledged submits + import")
    return lost


def run_load(
    url: str,
    *,
    seconds: float,
    writers: int = 20,
    readers: int = 100,
    reader_processes: int = 4,
    hot_every: int = 5,
) -> dict:
    """The load on an empty store at `url`; the figures (see the module docstring)."""
    with open_store(url) as store:
        store.import_policy(load_policy(EXAMPLES / "home-lab.yaml"), "bench", "seed lab")
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_writers, args=(url, writers, seconds, hot_every, results))]
    share = -(-readers // reader_processes)
    for first in range(0, readers, share):
        count = min(share, readers - first)
        processes.append(
            context.Process(target=_readers, args=(url, first, count, seconds, results))
        )
    for process in processes:
        process.start()
    outcome = Outcome()
    for _ in processes:
        reported = results.get(timeout=seconds + 600)
        reported["writes"] = [Write(**write) for write in reported["writes"]]
        outcome.add(Outcome(**reported))
    for process in processes:
        process.join()
    lost = _lost_writes(url, outcome.writes, writers)
    latencies = sorted(outcome.latencies_ms)

    def percentile(fraction: float) -> float:
        if not latencies:
            return 0.0
        return round(latencies[min(len(latencies) - 1, int(fraction * len(latencies)))], 2)

    return {
        "writers": writers,
        "readers": readers,
        "seconds": seconds,
        "submits": len(outcome.writes),
        "conflicts": outcome.conflicts,
        "errors": outcome.errors,
        "lost_writes": len(lost),
        "lost": lost[:5],
        "revision_reads": len(latencies),
        "read_p50_ms": percentile(0.50),
        "read_p99_ms": percentile(0.99),
        "submits_per_s": round(len(outcome.writes) / seconds, 1),
        "reads_per_s": round(len(latencies) / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--writers", type=int, default=20)
    parser.add_argument("--readers", type=int, default=100)
    parser.add_argument("--reader-processes", type=int, default=4)
    parser.add_argument("--hot-every", type=int, default=5)
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--postgres-url", help="an empty PostgreSQL database to use")
    args = parser.parse_args()
    load = dict(
        seconds=args.seconds,
        writers=args.writers,
        readers=args.readers,
        reader_processes=args.reader_processes,
        hot_every=args.hot_every,
    )
    figures: dict[str, object] = {}
    for backend in args.backends.split(","):
        if backend == "postgresql":
            with postgres_database(args.postgres_url) as url:
                figures["postgresql"] = run_load(url, **load)
        elif backend == "sqlite":
            with tempfile.TemporaryDirectory(prefix="microseg-bench-load-") as workdir:
                figures["sqlite"] = run_load(f"sqlite:///{workdir}/store.db", **load)
        else:
            parser.error(f"--backends: unknown backend {backend!r}")
    print(json.dumps({"bench": "pg_load", **figures}, sort_keys=True))


if __name__ == "__main__":
    main()
