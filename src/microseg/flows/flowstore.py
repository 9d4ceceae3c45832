"""Flow store: sessions as Parquet segments in a directory, queried with DuckDB.

Layout: `STORE/segments/seg-<created ms>-<pid>-<n>.parquet`, one file per flush. A segment is
written to `STORE/segments/.tmp-*` and renamed into place (rename is atomic on POSIX), so a
reader or a crash never sees half a segment. Compaction writes the merged segment first
(naming its sources in the Parquet metadata) and deletes the sources after; a crash in
between is repaired on the next open, and readers skip sources a compacted segment lists.

Segments hold one row per session with real port numbers; the `eph` summary is a query
(`read_sessions`), so it spans segments.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from microseg.flows.session_columns import session_columns
from microseg.flows.sessions import SESSION_SCHEMA, sort_sessions
from microseg.model import MicrosegError
from microseg.model.ports import EPHEMERAL_PORT_START

STORE_ENV = "MICROSEG_FLOW_STORE"
# vZTX: "Ephemeral Source Starting Port: 49152" (seed), the start of RFC 6335's dynamic range.
EPHEMERAL_PORT = EPHEMERAL_PORT_START
COMPACTED_FROM = b"microseg.compacted_from"
LAST_SEEN = b"microseg.last_seen_ms"
_counter = itertools.count()

# read_sessions() output: SESSION_SCHEMA with ports as text ("53" or "eph")
OUTPUT_SCHEMA = pa.schema(
    [
        field.with_type(pa.string()) if field.name in ("sport", "dport") else field
        for field in SESSION_SCHEMA
    ]
)
_NUMERIC_DEFAULTS = {
    "fwd_packets": "packets",
    "fwd_bytes": "bytes",
    "rev_packets": None,
    "rev_bytes": None,
    "complete": None,
    "half_open": None,
    "fwd_tcp_flags": None,
    "rev_tcp_flags": None,
}


def default_store_dir() -> Path:
    """$MICROSEG_FLOW_STORE, else the user data dir's `flows` (platformdirs)."""
    configured = os.environ.get(STORE_ENV)
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_data_dir("microseg")) / "flows"


class FlowStore:
    """A directory of Parquet session segments."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self.segment_dir = self.directory / "segments"

    def open(self) -> FlowStore:
        """Create the layout if needed and repair what a crash can leave behind."""
        try:
            self.segment_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MicrosegError(f"flow store {self.directory}: {error.strerror}") from None
        for stray in self.segment_dir.glob(".tmp-*"):
            stray.unlink(missing_ok=True)
        for segment in self.segment_dir.glob("seg-*.parquet"):
            for source in _compacted_from(segment):
                (self.segment_dir / source).unlink(missing_ok=True)
        return self

    def write(self, sessions: pa.Table) -> Path | None:
        """One new segment with these sessions (SESSION_SCHEMA), atomically; None if empty."""
        if sessions.num_rows == 0:
            return None
        return self._write_segment(sort_sessions(sessions.cast(SESSION_SCHEMA)), {})

    def segments(self) -> list[Path]:
        """Live segments, oldest first (sources of a finished compaction excluded)."""
        if not self.segment_dir.is_dir():
            return []
        found = sorted(self.segment_dir.glob("seg-*.parquet"))
        superseded = {name for segment in found for name in _compacted_from(segment)}
        return [segment for segment in found if segment.name not in superseded]

    def compact(self, small_bytes: int = 8 << 20) -> int:
        """Merge every segment smaller than `small_bytes` into one; returns segments merged."""
        small = [s for s in self.segments() if s.stat().st_size < small_bytes]
        if len(small) < 2:
            return 0
        merged = pa.concat_tables([pq.read_table(s).cast(SESSION_SCHEMA) for s in small])
        names = json.dumps([s.name for s in small]).encode()
        self._write_segment(sort_sessions(merged), {COMPACTED_FROM: names})
        for segment in small:
            segment.unlink(missing_ok=True)
        return len(small)

    def prune(self, max_age_seconds: float, now: float | None = None) -> int:
        """Delete segments whose newest session was last seen longer ago than the age."""
        cutoff_ms = ((time.time() if now is None else now) - max_age_seconds) * 1000
        removed = 0
        for segment in self.segments():
            metadata = pq.read_schema(segment).metadata or {}
            if int(metadata.get(LAST_SEEN, b"0")) < cutoff_ms:
                segment.unlink(missing_ok=True)
                removed += 1
        return removed

    def _write_segment(self, table: pa.Table, metadata: dict[bytes, bytes]) -> Path:
        self.segment_dir.mkdir(parents=True, exist_ok=True)
        last_seen = pa.compute.max(table.column("last_seen")).cast(pa.int64()).as_py() or 0
        metadata = {**metadata, LAST_SEEN: str(last_seen).encode()}
        table = table.replace_schema_metadata(metadata)
        name = f"seg-{time.time_ns() // 1_000_000:013d}-{os.getpid()}-{next(_counter):06d}.parquet"
        temporary = self.segment_dir / f".tmp-{name}"
        pq.write_table(table, temporary, compression="zstd")
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        final = self.segment_dir / name
        os.replace(temporary, final)
        directory = os.open(self.segment_dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return final


def _compacted_from(segment: Path) -> list[str]:
    try:
        metadata = pq.read_schema(segment).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return []
    return json.loads(metadata[COMPACTED_FROM]) if COMPACTED_FROM in metadata else []


def read_sessions(
    source: Path | str | None = None,
    *,
    ephemeral_port: int | None = EPHEMERAL_PORT,
    vrf: str | None = None,
    protocol: str | None = None,
    src: str | None = None,
    dst: str | None = None,
    port: int | None = None,
    since: datetime | None = None,
) -> pa.Table:
    """Sessions from a flow store directory, a Parquet, CSV or JSON-lines file.

    Columns (OUTPUT_SCHEMA): vrf, protocol, src, sport, dst, dport, fwd_packets, fwd_bytes,
    rev_packets, rev_bytes, complete, half_open, first_seen, last_seen, exporter,
    rev_exporter, fwd_tcp_flags, rev_tcp_flags, sessions. `src` is the initiator (client);
    `sport`/`dport` are text: a port number, or "eph" for a summary row.

    With `ephemeral_port` (default 49152, like the vZTX) every session whose client port is
    at or above it while the server port is below it is folded into one row per
    (VRF, protocol, client, server, server port) with `sport` "eph", summed counters,
    `complete`/`half_open`/`sessions` counts and the earliest first / latest last seen;
    None keeps every session as it is. Files need at least protocol, src, dst and dport;
    `packets`/`bytes` are read as fwd_packets/fwd_bytes; missing counters are 0, a missing
    vrf is "default". Filters: exact vrf, protocol, src, dst; `port` matches either port;
    `since` keeps sessions last seen at or after it. Rows come sorted by first seen, then key.
    """
    path = default_store_dir() if source is None else Path(source)
    if source is None and not path.exists():
        return OUTPUT_SCHEMA.empty_table()  # nothing collected yet
    connection = duckdb.connect()
    columns = _load(connection, path)
    if columns is None:
        return OUTPUT_SCHEMA.empty_table()
    if not path.is_dir():
        # A session file is checked row by row, in file order, by the one session-table
        # reader before it is summarised: a bad value is an error naming its row.
        session_columns(_raw_rows(connection, path), where=str(path))
    connection.execute(f"CREATE TEMP VIEW sessions AS {_normalised(columns)}")
    where, parameters = _filters(vrf, protocol, src, dst, port, since)
    try:
        if ephemeral_port is None:
            query = f"SELECT {', '.join(OUTPUT_SCHEMA.names)} FROM sessions {where}"
        else:
            query = _summary_query(where, int(ephemeral_port))
        # first seen, then the key; every other column breaks ties, so the same sessions
        # list the same whatever order they were stored or written in
        order = ["first_seen", "vrf", "protocol", "src", "sport", "dst", "dport", "exporter"]
        order += [name for name in OUTPUT_SCHEMA.names if name not in order]
        query += f" ORDER BY {', '.join(order)}"
        table = connection.sql(query, params=parameters).to_arrow_table()
    except duckdb.Error as error:
        raise MicrosegError(f"{path}: cannot read sessions: {error}") from None
    return table.cast(OUTPUT_SCHEMA)


def _raw_rows(connection, path: Path) -> pa.Table:
    try:
        return connection.sql("SELECT * FROM raw").to_arrow_table()
    except duckdb.Error as error:
        raise MicrosegError(f"{path}: cannot read sessions: {error}") from None


def _load(connection, path: Path) -> list[str] | None:
    """Register `raw` for the source; its column names, or None when there is nothing."""
    try:
        if path.is_dir():
            segments = FlowStore(path).segments()
            if not segments:
                return None
            names = ", ".join(f"'{_quote(s)}'" for s in segments)
            relation = f"read_parquet([{names}], union_by_name = true)"
        elif not path.exists():
            raise MicrosegError(f"{path}: no such session file or flow store directory")
        elif path.suffix == ".parquet":
            relation = f"read_parquet('{_quote(path)}')"
        elif path.suffix == ".csv":
            relation = f"read_csv('{_quote(path)}', header = true, all_varchar = true)"
        elif path.suffix in (".jsonl", ".json", ".ndjson"):
            relation = f"read_json('{_quote(path)}', format = 'newline_delimited')"
        else:
            raise MicrosegError(
                f"{path}: sessions come from a store directory or a .parquet, .csv or .jsonl file"
            )
        connection.execute(f"CREATE TEMP VIEW raw AS SELECT * FROM {relation}")
        columns = [row[0] for row in connection.execute("DESCRIBE raw").fetchall()]
    except duckdb.Error as error:
        raise MicrosegError(f"{path}: cannot read sessions: {error}") from None
    missing = [name for name in ("protocol", "src", "dst", "dport") if name not in columns]
    if missing:
        raise MicrosegError(f"{path}: missing session field(s) {', '.join(missing)}")
    return columns


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


def _normalised(columns: list[str]) -> str:
    def text(name: str, default: str) -> str:
        return f"CAST({name} AS VARCHAR)" if name in columns else default

    def count(name: str, alias: str | None, default: str = "0") -> str:
        for candidate in (name, alias):
            if candidate and candidate in columns:
                return f"coalesce(TRY_CAST({candidate} AS BIGINT), 0)"
        return default

    def when(name: str) -> str:
        if name not in columns:
            return "NULL::TIMESTAMPTZ"
        return f"TRY_CAST({name} AS TIMESTAMPTZ)"

    fields = [
        f"coalesce({text('vrf', 'NULL')}, 'default') AS vrf",
        "lower(CAST(protocol AS VARCHAR)) AS protocol",
        "CAST(src AS VARCHAR) AS src",
        f"coalesce({text('sport', 'NULL')}, '0') AS sport",
        "CAST(dst AS VARCHAR) AS dst",
        "CAST(dport AS VARCHAR) AS dport",
    ]
    fields += [f"{count(name, alias)} AS {name}" for name, alias in _NUMERIC_DEFAULTS.items()]
    fields += [
        f"{when('first_seen')} AS first_seen",
        f"{when('last_seen')} AS last_seen",
        f"coalesce({text('exporter', 'NULL')}, '') AS exporter",
        f"coalesce({text('rev_exporter', 'NULL')}, '') AS rev_exporter",
        f"{count('sessions', None, '1')} AS sessions",
    ]
    return "SELECT " + ", ".join(fields) + " FROM raw"


def _filters(vrf, protocol, src, dst, port, since):
    clauses, parameters = [], []
    for column, value in (("vrf", vrf), ("protocol", protocol), ("src", src), ("dst", dst)):
        if value is None:
            continue
        if column in ("src", "dst"):  # as given (a file may spell it so) or canonical
            clauses.append(f"{column} IN (?, ?)")
            parameters += [value, _canonical_address(value)]
        else:
            clauses.append(f"{column} = ?")
            parameters.append(value.lower() if column == "protocol" else value)
    if port is not None:
        clauses.append("(sport = ? OR dport = ?)")
        parameters += [str(port), str(port)]
    if since is not None:
        clauses.append("last_seen >= ?")
        parameters.append(since if since.tzinfo else since.replace(tzinfo=UTC))
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", parameters


def _canonical_address(text: str) -> str:
    """Addresses are stored in their canonical text (RFC 5952 for IPv6): match any spelling."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return text


def _summary_query(where: str, ephemeral_port: int) -> str:
    # vZTX: client ports from 49152 up are shown as `eph`, one row per client/server/service
    return f"""
    SELECT vrf, protocol, src,
           CASE WHEN TRY_CAST(sport AS INTEGER) >= {ephemeral_port}
                 AND TRY_CAST(dport AS INTEGER) < {ephemeral_port}
                THEN 'eph' ELSE sport END AS sport,
           dst, dport,
           sum(fwd_packets)::BIGINT AS fwd_packets, sum(fwd_bytes)::BIGINT AS fwd_bytes,
           sum(rev_packets)::BIGINT AS rev_packets, sum(rev_bytes)::BIGINT AS rev_bytes,
           sum(complete)::BIGINT AS complete, sum(half_open)::BIGINT AS half_open,
           min(first_seen) AS first_seen, max(last_seen) AS last_seen,
           min(exporter) AS exporter, min(rev_exporter) AS rev_exporter,
           bit_or(fwd_tcp_flags)::INTEGER AS fwd_tcp_flags,
           bit_or(rev_tcp_flags)::INTEGER AS rev_tcp_flags,
           sum(sessions)::BIGINT AS sessions
    FROM sessions {where}
    GROUP BY ALL"""
