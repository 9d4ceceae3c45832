"""The counter time series: one Parquet segment per poll, next to the flow store, read with
DuckDB.

Layout: `FLOWSTORE/counters/seg-<poll ms>-<pid>-<n>.parquet`. Each row is what one match of
one policy on one device had counted at the poll's time (the device's own cumulative
figures, not deltas). A segment is written through the one atomic writer
(`microseg.files.replace_atomically`: a temporary beside it, synced, renamed), so a reader
or a crash never sees half a poll. A file named like a segment that cannot be read as one
is skipped and reported, as the flow store does.

Compaction (`CounterSeries.compact`, run by the poller every COMPACT_AFTER polls) merges the
small segments into one, as the flow store compacts sessions: the merged segment is written
first, through the same atomic writer, naming its sources in its Parquet metadata
(`microseg.compacted_from`), and the sources are deleted after. Readers leave out the
sources a segment names, so a crash in between neither loses nor doubles a sample (the
next compaction deletes them). A merged segment's name carries `-m<pid>-`: a reader whose
directory listing raced a compaction (a listing is not a snapshot: it may hold a source
and miss both the merged segment and a source deleted since) sees a merged segment that
was not there before it read, and reads again. One compaction at a time
(`counters/.compaction.lock`); a poll writes new segments beside it, untouched.

Deltas are a query, not stored: between two polls of the same match, packets and bytes
counted in between. A counter that went down, or whose device was deployed by another
change in between (a redeploy recreates counters), was reset: its delta is its new value,
never negative. The first poll of a match is its baseline (delta 0): what it had counted
before may be from long ago.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from microseg import duck
from microseg.files import replace_atomically
from microseg.flows.flowstore import (
    COMPACTED_FROM,
    COUNTERS,
    READ_ATTEMPTS,
    SMALL_SEGMENT,
    check_flow_store,
    file_lock,
    is_segment_name,
)
from microseg.model import MicrosegError

SEGMENT_GLOB = "seg-*.parquet"
MERGED_MARK = "-m"  # in a merged segment's name: seg-<ms>-m<pid>-<n>.parquet
# What a killed compaction can leave: the atomic writer's temporaries of a merged segment
# (a poll's are `.seg-<ms>-<pid>-<n>.parquet.*.tmp`: digits, no `-m`).
MERGE_TEMPORARIES = f".seg-*{MERGED_MARK}*.parquet.*.tmp"
COMPACTION_LOCK = ".compaction.lock"
COMPACT_AFTER = 64  # small segments (polls) the poller lets gather before merging them
COUNTER_SCHEMA = pa.schema(
    [
        pa.field("time", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("device", pa.string(), nullable=False),
        pa.field("change", pa.int64()),  # the change that deployed the device, when polled
        pa.field("policy", pa.string(), nullable=False),
        pa.field("match", pa.string(), nullable=False),
        pa.field("rule", pa.string(), nullable=False),
        pa.field("action", pa.string(), nullable=False),
        pa.field("packets", pa.int64(), nullable=False),
        pa.field("bytes", pa.int64()),  # None: the device counts packets only
    ]
)
log = logging.getLogger("microseg.monitor")
_counter = itertools.count()


@dataclass(frozen=True)
class CounterRow:
    """One match's cumulative counters on one device at one poll."""

    time: datetime
    device: str
    change: int | None
    policy: str
    match: str
    rule: str
    action: str
    packets: int
    bytes: int | None


class CounterSeries:
    """The `counters` directory of a flow store."""

    def __init__(self, flow_store: Path | str):
        self.flow_store = Path(flow_store)
        self.directory = self.flow_store / COUNTERS

    def open(self) -> CounterSeries:
        """Make the directory if needed: a flow store that cannot hold the series is an error
        before any device is polled, not after (the counters read would be lost)."""
        if self.flow_store.exists():
            check_flow_store(self.flow_store)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MicrosegError(
                f"flow store {self.flow_store}: cannot keep the counter series in it: "
                f"{error.strerror}"
            ) from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise MicrosegError(
                f"flow store {self.flow_store}: cannot keep the counter series in it: "
                f"{self.directory} is not writable"
            )
        return self

    def write(self, rows: list[CounterRow]) -> Path | None:
        """One segment holding one poll's rows, atomically; None if there are none."""
        if not rows:
            return None
        columns = {name: [getattr(row, name) for row in rows] for name in COUNTER_SCHEMA.names}
        return self._write_segment(pa.table(columns, schema=COUNTER_SCHEMA), merged=False)

    def segments(self) -> list[Path]:
        """Readable segments, oldest first: unreadable ones are skipped with a warning, and
        the sources of a compaction (still there until it deletes them) left out."""
        return self._scan(self._listing())[0]

    def compact(self, at_least: int = 2, small_bytes: int = SMALL_SEGMENT) -> list[str]:
        """Merge the segments smaller than `small_bytes` into one when there are `at_least`
        of them; the names merged. Another compaction at work: nothing, at once ([])."""
        if not self.directory.is_dir():
            return []
        try:
            with file_lock(self.directory / COMPACTION_LOCK, fcntl.LOCK_EX | fcntl.LOCK_NB):
                return self._compact(at_least, small_bytes)
        except BlockingIOError:
            return []

    def _compact(self, at_least: int, small_bytes: int) -> list[str]:
        for stray in self.directory.glob(MERGE_TEMPORARIES):  # a killed compaction's
            stray.unlink(missing_ok=True)
        live, superseded, sources = self._scan(self._listing())
        for source in superseded:  # a compaction killed before it deleted its sources
            source.unlink(missing_ok=True)
        small = [path for path in live if _size(path) < small_bytes]
        if len(small) < max(at_least, 2):
            return []
        tables, merged = [], []
        for path in small:
            try:
                tables.append(pq.read_table(path, schema=COUNTER_SCHEMA))
                merged.append(path)
            except FileNotFoundError:
                continue
        if len(merged) < 2:
            return []
        # the sources' own sources too: if any survived a crash they stay left out
        names = {path.name for path in merged}
        names.update(name for path in merged for name in sources.get(path.name, ()))
        table = pa.concat_tables(tables).sort_by(
            [(column, "ascending") for column in ("time", "device", "policy", "match")]
        )
        metadata = {COMPACTED_FROM: json.dumps(sorted(names)).encode()}
        self._write_segment(table.replace_schema_metadata(metadata), merged=True)
        for path in merged:
            path.unlink(missing_ok=True)
        return [path.name for path in merged]

    def _write_segment(self, table: pa.Table, merged: bool) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        process = f"m{os.getpid()}" if merged else str(os.getpid())
        created = time.time_ns() // 1_000_000
        final = self.directory / f"seg-{created:013d}-{process}-{next(_counter):06d}.parquet"
        replace_atomically(final, lambda file: pq.write_table(table, file), 0o644)
        return final

    def _listing(self) -> list[Path]:
        """The segment files in the directory now (one readdir: not a snapshot)."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(SEGMENT_GLOB))

    def _scan(
        self, listing: list[Path]
    ) -> tuple[list[Path], list[Path], dict[str, tuple[str, ...]]]:
        """(live segments, superseded ones, each segment's compaction sources) of a listing."""
        readable: list[Path] = []
        sources: dict[str, tuple[str, ...]] = {}
        for path in listing:
            problem, named = _problem(path)
            if problem is None:
                continue  # removed since we listed it: nothing to say
            if problem:
                log.warning(
                    "warning: counter series %s: skipped %s (%s)",
                    self.directory,
                    path.name,
                    problem,
                )
            else:
                readable.append(path)
                sources[path.name] = named
        gone = {name for path in readable for name in sources[path.name] if name != path.name}
        live = [path for path in readable if path.name not in gone]
        return live, [path for path in readable if path.name in gone], sources

    def query(self, sql: str, parameters: list | None = None) -> list[tuple]:
        """`sql` over the view `samples` (every row, with per-row deltas `packets_delta`,
        `bytes_delta`); an empty series is an empty view. A segment removed between listing
        and reading (another process pruning the series) is looked for again, as the flow
        store's readers do; so is the series when a compaction merged it meanwhile."""
        for _ in range(READ_ATTEMPTS):
            segments = self.segments()
            try:
                rows = self._query(segments, sql, parameters)
            except duckdb.ProgrammingError:
                raise  # our SQL, not the data: a bug
            except duckdb.Error as error:
                if all(path.exists() for path in segments):
                    raise MicrosegError(
                        f"flow store {self.flow_store}: cannot read the counter series: "
                        f"{duck.said(error)}"
                    ) from None
                continue
            if not _merged_since(segments, self._listing()):
                return rows
        raise MicrosegError(
            f"flow store {self.flow_store}: cannot read the counter series: "
            "its segments kept changing while read"
        )

    def _query(self, segments: list[Path], sql: str, parameters: list | None) -> list[tuple]:
        connection = duck.connect()
        if segments:
            files = ", ".join("'" + str(path).replace("'", "''") + "'" for path in segments)
            source = f"read_parquet([{files}])"
        else:
            connection.register("empty_series", COUNTER_SCHEMA.empty_table())
            source = "empty_series"
        connection.execute(f"CREATE VIEW samples AS {_DELTAS.format(source=source)}")
        return connection.execute(sql, parameters or []).fetchall()


# A reset: the counter went down, or another change deployed the device in between.
_DELTAS = """
WITH ordered AS (
    SELECT *,
        lag(packets) OVER w AS previous_packets,
        lag(bytes) OVER w AS previous_bytes,
        lag(change) OVER w AS previous_change
    FROM {source}
    WINDOW w AS (PARTITION BY device, policy, "match" ORDER BY time)
), flagged AS (
    SELECT *,
        previous_packets IS NOT NULL AND (
            packets < previous_packets
            OR coalesce(bytes < previous_bytes, false)
            OR change IS DISTINCT FROM previous_change
        ) AS reset
    FROM ordered
)
SELECT time, device, change, policy, "match", rule, action, packets, bytes,
    CASE WHEN previous_packets IS NULL THEN 0
         WHEN reset THEN packets ELSE packets - previous_packets END AS packets_delta,
    CASE WHEN previous_packets IS NULL OR bytes IS NULL THEN 0
         WHEN reset THEN bytes ELSE bytes - coalesce(previous_bytes, 0) END AS bytes_delta
FROM flagged
"""


def _merged_since(read: list[Path], now: list[Path]) -> bool:
    """Whether the directory now holds a merged segment that was not read: what was read
    may have missed some of its sources (or it supersedes another merged one: read again)."""
    known = {path.name for path in read}
    return any(MERGED_MARK in path.name and path.name not in known for path in now)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _problem(path: Path) -> tuple[str | None, tuple[str, ...]]:
    """Why `path` is not a counter segment we can read ('' if it is one, None if it is
    gone), and the segments it was compacted from (plain names of this directory only)."""
    if path.is_symlink() or not path.is_file():
        return (None if not os.path.lexists(path) else "not a regular file"), ()
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        return None, ()
    except (pa.ArrowException, OSError, ValueError) as error:
        return f"not a readable Parquet file: {str(error).splitlines()[0][:100]}", ()
    if not schema.remove_metadata().equals(COUNTER_SCHEMA):
        return "not a counter segment (another schema)", ()
    try:
        named = json.loads((schema.metadata or {}).get(COMPACTED_FROM, b"[]"))
    except ValueError:
        return "not a counter segment (bad compacted_from metadata)", ()
    if not isinstance(named, list):
        return "not a counter segment (bad compacted_from metadata)", ()
    return "", tuple(name for name in named if is_segment_name(name))
