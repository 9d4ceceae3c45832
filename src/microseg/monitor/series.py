"""The counter time series: one Parquet segment per poll, next to the flow store, read with
DuckDB.

Layout: `FLOWSTORE/counters/seg-<poll ms>-<pid>-<n>.parquet`. Each row is what one match of
one policy on one device had counted at the poll's time (the device's own cumulative
figures, not deltas). A segment is written through the one atomic writer
(`microseg.files.replace_atomically`: a temporary beside it, synced, renamed), so a reader
or a crash never sees half a poll. A file named like a segment that cannot be read as one
is skipped and reported, as the flow store does.

Deltas are a query, not stored: between two polls of the same match, packets and bytes
counted in between. A counter that went down, or whose device was deployed by another
change in between (a redeploy recreates counters), was reset: its delta is its new value,
never negative. The first poll of a match is its baseline (delta 0): what it had counted
before may be from long ago.
"""

from __future__ import annotations

import itertools
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
from microseg.flows.flowstore import COUNTERS, READ_ATTEMPTS, check_flow_store
from microseg.model import MicrosegError

SEGMENT_GLOB = "seg-*.parquet"
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
        table = pa.table(columns, schema=COUNTER_SCHEMA)
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"seg-{time.time_ns() // 1_000_000:013d}-{os.getpid()}-{next(_counter):06d}.parquet"
        final = self.directory / name
        replace_atomically(final, lambda file: pq.write_table(table, file), 0o644)
        return final

    def segments(self) -> list[Path]:
        """Readable segments, oldest first; unreadable ones are skipped with a warning."""
        if not self.directory.is_dir():
            return []
        readable = []
        for path in sorted(self.directory.glob(SEGMENT_GLOB)):
            problem = _problem(path)
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
        return readable

    def query(self, sql: str, parameters: list | None = None) -> list[tuple]:
        """`sql` over the view `samples` (every row, with per-row deltas `packets_delta`,
        `bytes_delta`); an empty series is an empty view. A segment removed between listing
        and reading (another process pruning the series) is looked for again, as the flow
        store's readers do."""
        for _ in range(READ_ATTEMPTS):
            segments = self.segments()
            try:
                return self._query(segments, sql, parameters)
            except duckdb.ProgrammingError:
                raise  # our SQL, not the data: a bug
            except duckdb.Error as error:
                if all(path.exists() for path in segments):
                    raise MicrosegError(
                        f"flow store {self.flow_store}: cannot read the counter series: "
                        f"{duck.said(error)}"
                    ) from None
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


def _problem(path: Path) -> str | None:
    """Why `path` is not a counter segment we can read ('' if it is one, None if it is gone)."""
    if path.is_symlink() or not path.is_file():
        return None if not os.path.lexists(path) else "not a regular file"
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        return None
    except (pa.ArrowException, OSError, ValueError) as error:
        return f"not a readable Parquet file: {str(error).splitlines()[0][:100]}"
    if not schema.remove_metadata().equals(COUNTER_SCHEMA):
        return "not a counter segment (another schema)"
    return ""
