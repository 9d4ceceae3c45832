"""Session engines: where the session-table query over a flow store's segments runs.

`read_sessions` (flowstore) picks the live segments of a store (complete ones only, bad
ones skipped and reported) and hands them to a `SessionEngine`, which runs the session-table
query over them and returns the session table (OUTPUT_SCHEMA) in its one order. Two engines
answer it with the same SQL text, built here:

* `DuckDBEngine` — embedded, in this process (the default);
* `SparkEngine` (`microseg.flows.spark`) — Spark SQL on `local[*]` or a cluster, for stores
  larger than one machine; only the result (the summarised session table) reaches the driver.

Where the two SQL dialects differ, the difference is a field of `Dialect`, commented there.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from microseg.flows.sessions import INT64_MAX, SESSION_SCHEMA
from microseg.model import MicrosegError
from microseg.model.ports import (
    EPHEMERAL_PORT_START,
    PROTOCOL_NAMES,
    SYSTEM_PORTS_END,
    session_protocol,
)

ENGINES = ("duckdb", "spark")
# vZTX: "Ephemeral Source Starting Port: 49152" (seed), the start of RFC 6335's dynamic range.
EPHEMERAL_PORT = EPHEMERAL_PORT_START

# read_sessions() output: SESSION_SCHEMA with ports as text ("53" or "eph")
OUTPUT_SCHEMA = pa.schema(
    [
        field.with_type(pa.string()) if field.name in ("sport", "dport") else field
        for field in SESSION_SCHEMA
    ]
)
# first seen, then the key; every other column breaks ties, so the same sessions list the
# same whatever order they were stored or written in
_ORDER = ["first_seen", "vrf", "protocol", "src", "sport", "dst", "dport", "exporter"]
ORDER = _ORDER + [name for name in OUTPUT_SCHEMA.names if name not in _ORDER]
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


@dataclass(frozen=True)
class SessionQuery:
    """What `read_sessions` asks for: the `eph` summary (None: every session as stored), the
    filters (exact vrf, protocol, src, dst; `port` either port; `since` last seen at or
    after; `until` first seen at or before), `limit`, the first rows only (a page of a large
    store), and `client_port_cuts`, the Policy Builder's fold (see `builder_rows`)."""

    ephemeral_port: int | None = EPHEMERAL_PORT
    vrf: str | None = None
    protocol: str | None = None
    src: str | None = None
    dst: str | None = None
    port: int | None = None
    since: datetime | None = None
    limit: int | None = None
    until: datetime | None = None
    client_port_cuts: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Dialect:
    """The places where DuckDB's and Spark's SQL differ; everything else is shared text."""

    # DuckDB's TIMESTAMPTZ and Spark's TIMESTAMP (session time zone UTC) are both instants
    timestamp: str
    # DuckDB sums BIGINT into HUGEINT (exact); Spark sums BIGINT into BIGINT and fails on
    # overflow (ANSI mode), so it sums DECIMAL(38, 0): 2^63 * 10^19 rows fit either way
    wide_sum: str


DUCKDB = Dialect(timestamp="TIMESTAMPTZ", wide_sum="sum({column})")
SPARK = Dialect(timestamp="TIMESTAMP", wide_sum="sum(CAST({column} AS DECIMAL(38, 0)))")


def session_sql(columns: list[str], query: SessionQuery, dialect: Dialect) -> tuple[str, list]:
    """The session table over the relation `raw` (with these columns): one statement and
    its `?` parameters, ordered."""
    where, parameters = _filters(query)
    if query.ephemeral_port is None:
        select = f"SELECT {', '.join(OUTPUT_SCHEMA.names)} FROM sessions {where}"
    else:
        select = _summary(where, int(query.ephemeral_port), dialect)
    order = _order(ORDER)
    limit = "" if query.limit is None else f" LIMIT {int(query.limit)}"
    sessions = f"WITH sessions AS ({_normalised(columns, dialect)})"
    if query.client_port_cuts is not None:
        return (
            f"{sessions}, summary AS ({select}), {builder_rows(query.client_port_cuts, dialect)}"
            f" ORDER BY {_order(['first_seen', '_rest', *ORDER[1:]])}{limit}",
            parameters,
        )
    return f"{sessions} {select} ORDER BY {order}{limit}", parameters


def _order(names: list[str]) -> str:
    return ", ".join(f"{name} NULLS LAST" for name in names)  # DuckDB's default; not Spark's


def _normalised(columns: list[str], dialect: Dialect) -> str:
    def text(name: str, default: str) -> str:
        return f"CAST({name} AS STRING)" if name in columns else default

    def count(name: str, alias: str | None, default: str = "0") -> str:
        for candidate in (name, alias):
            if candidate and candidate in columns:
                return f"coalesce(TRY_CAST({candidate} AS BIGINT), 0)"
        return default

    def when(name: str) -> str:
        if name not in columns:
            return f"CAST(NULL AS {dialect.timestamp})"
        return f"TRY_CAST({name} AS {dialect.timestamp})"

    fields = [
        f"coalesce({text('vrf', 'NULL')}, 'default') AS vrf",
        f"{_SESSION_PROTOCOL} AS protocol",
        "CAST(src AS STRING) AS src",
        f"coalesce({text('sport', 'NULL')}, '0') AS sport",
        "CAST(dst AS STRING) AS dst",
        "CAST(dport AS STRING) AS dport",
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


# A session file's protocol as the session table writes it (`session_protocol`): `6`, `006`
# and `TCP` are all `tcp`, so they are one protocol to a listing and its filter.
_SESSION_PROTOCOL = (
    "CASE WHEN TRY_CAST(protocol AS INTEGER) IS NULL THEN lower(trim(CAST(protocol AS STRING))) "
    "ELSE CASE TRY_CAST(protocol AS INTEGER) "
    + " ".join(f"WHEN {number} THEN '{name}'" for number, name in sorted(PROTOCOL_NAMES.items()))
    + " ELSE CAST(TRY_CAST(protocol AS INTEGER) AS STRING) END END"
)


def _protocol_filter(text: str) -> str:
    canonical = session_protocol(text)
    if canonical is None:
        raise MicrosegError(
            f"--proto {text[:40]!r}: unknown protocol (tcp, udp, icmp, icmpv6, sctp or a "
            "number 0-255)"
        )
    return canonical


def _filters(query: SessionQuery) -> tuple[str, list]:
    clauses: list[str] = []
    parameters: list = []
    for column, value in (
        ("vrf", query.vrf),
        ("protocol", query.protocol),
        ("src", query.src),
        ("dst", query.dst),
    ):
        if value is None:
            continue
        if column in ("src", "dst"):  # as given (a file may spell it so) or canonical
            clauses.append(f"{column} IN (?, ?)")
            parameters += [value, _canonical_address(value)]
        else:
            clauses.append(f"{column} = ?")
            parameters.append(_protocol_filter(value) if column == "protocol" else value)
    if query.port is not None:
        clauses.append("(sport = ? OR dport = ?)")
        parameters += [str(query.port), str(query.port)]
    for clause, moment in (("last_seen >= ?", query.since), ("first_seen <= ?", query.until)):
        if moment is not None:
            clauses.append(clause)
            parameters.append(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", parameters


def _canonical_address(text: str) -> str:
    """Addresses are stored in their canonical text (RFC 5952 for IPv6): match any spelling."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return text


def _total(column: str, dialect: Dialect, name: str | None = None) -> str:
    """A sum that saturates at the store's int64 maximum, as the collector's counters do."""
    total = dialect.wide_sum.format(column=column)
    return f"CAST(least({total}, {INT64_MAX}) AS BIGINT) AS {name or column}"


def _summary(where: str, ephemeral_port: int, dialect: Dialect) -> str:
    # vZTX: client ports from 49152 up are shown as `eph`, one row per client/server/service
    counters = ", ".join(
        _total(name, dialect)
        for name in ("fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes", "complete")
    )
    return f"""
    SELECT vrf, protocol, src,
           CASE WHEN TRY_CAST(sport AS INTEGER) >= {ephemeral_port}
                 AND TRY_CAST(dport AS INTEGER) < {ephemeral_port}
                THEN 'eph' ELSE sport END AS sport,
           dst, dport, {counters}, {_total("half_open", dialect)},
           min(first_seen) AS first_seen, max(last_seen) AS last_seen,
           min(exporter) AS exporter, min(rev_exporter) AS rev_exporter,
           CAST(bit_or(fwd_tcp_flags) AS INTEGER) AS fwd_tcp_flags,
           CAST(bit_or(rev_tcp_flags) AS INTEGER) AS rev_tcp_flags,
           {_total("sessions", dialect)}
    FROM sessions {where}
    GROUP BY ALL"""


# The Policy Builder's fold. The builder sees a session through its VRF, protocol, ends,
# server port, reply (flags; whether it completed, stayed half-open, got reverse packets),
# and its client port only through what a rule or a scope can ask of it: which side of the
# policy's port boundaries it falls on (`client_port_cuts`, cut points from every Service's
# ranges), whether it is below 1024, 49152 or the server port. Sessions alike in all of that
# fold into one row, so the builder's input grows with the clients, servers and services
# seen rather than with the sessions. Each fold keeps its first rows (in the table's order)
# as they are, for the examples the builder shows (any group of folds has its first rows
# among them), and sums the rest into one row with `_rest` set, ordered after the kept rows
# of the same first-seen time, whose client port is the lowest of the folded ones.
#
# Only what the builder cannot tell apart is folded: TCP and UDP sessions whose client port
# is 1024-49151 and above the server port, so the server is the destination whatever
# other evidence there is (`builder.services.server_side`), and equal to no port any session
# has as a server port (a proposed service could match it).
KEPT_ROWS = 3  # the builder shows this many examples (builder.recommend.EXAMPLES_PER_RULE)
_FOLD_KEY = (
    "vrf, protocol, src, dst, dport, _cell, rev_tcp_flags, "
    "complete > 0, half_open > 0, rev_packets > 0"
)


def builder_rows(cuts: tuple[int, ...], dialect: Dialect) -> str:
    """CTEs over `summary` ending in `result` (OUTPUT_SCHEMA and `_rest`), the summary
    with the builder's fold (above) over the client-port cells `cuts` make."""
    sport, dport = "TRY_CAST(sport AS INTEGER)", "TRY_CAST(dport AS INTEGER)"
    low, high = SYSTEM_PORTS_END, EPHEMERAL_PORT_START
    inside = sorted({int(cut) for cut in cuts if low < int(cut) < high})
    # `protocol` is a name here: `_normalised` writes 6 and 17 as tcp and udp
    foldable = (
        f"protocol IN ('tcp', 'udp') AND {sport} >= {low} AND {sport} < {high} "
        f"AND {sport} > {dport} AND first_seen IS NOT NULL"  # the builder reads no time as 0
    )
    columns = ", ".join(OUTPUT_SCHEMA.names)
    counters = ", ".join(
        _total(name, dialect)
        for name in ("fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes", "complete")
    )
    # One pass: every row ranked within its fold; a kept row, or one that does not fold,
    # is a group of its own (its sport in the key: the summary has one row per sport), the
    # rest of a fold one group. Counts and times are as the builder reads them.
    rest = f"_fold AND _rank > {KEPT_ROWS}"
    return f"""
    server_ports AS (
        SELECT DISTINCT {dport} AS port FROM summary
        UNION SELECT DISTINCT {sport} FROM summary WHERE NOT coalesce({foldable}, false)),
    marked AS (
        SELECT summary.*, coalesce(({foldable}) AND server_ports.port IS NULL, false) AS _fold,
               {_cell(sport, inside)} AS _cell
        FROM summary LEFT JOIN server_ports ON server_ports.port = {sport}),
    ranked AS (
        SELECT *, row_number() OVER (
            PARTITION BY _fold, {_FOLD_KEY} ORDER BY {_order(ORDER)}) AS _rank
        FROM marked),
    result AS (
        SELECT vrf, protocol, src,
               CASE WHEN {rest} THEN CAST(min({sport}) AS STRING) ELSE min(sport) END AS sport,
               dst, dport,
               {counters}, {_total("half_open", dialect)},
               min(first_seen) AS first_seen,
               max(greatest(last_seen, first_seen)) AS last_seen,  -- never before first
               min(exporter) AS exporter, min(rev_exporter) AS rev_exporter,
               CAST(bit_or(fwd_tcp_flags) AS INTEGER) AS fwd_tcp_flags, rev_tcp_flags,
               {_total("greatest(sessions, 1)", dialect, "sessions")},
               CASE WHEN {rest} THEN 1 ELSE 0 END AS _rest
        FROM ranked
        GROUP BY {_FOLD_KEY}, {rest}, CASE WHEN {rest} THEN NULL ELSE sport END)
    SELECT {columns} FROM result"""


def _cell(port: str, cuts: list[int], first: int = 0) -> str:
    """The number of `cuts` (sorted) at or below `port`: a binary search written as CASE."""
    if not cuts:
        return str(first)
    middle = len(cuts) // 2
    below = _cell(port, cuts[:middle], first)
    above = _cell(port, cuts[middle + 1 :], first + middle + 1)
    return f"CASE WHEN {port} < {cuts[middle]} THEN {below} ELSE {above} END"


class SessionEngine(Protocol):
    """Runs the session-table query over a store's live segments.

    Both methods take the live segments (maybe none) and return the rows in the one order (OUTPUT_SCHEMA) and raise one of `errors`
    when a segment cannot be read (the caller then finds it, skips it and asks again)."""

    name: str

    @property
    def errors(self) -> tuple[type[BaseException], ...]: ...

    def table(self, segments: list[Path], query: SessionQuery) -> pa.Table:
        """The whole result, in this process (a list, the builder's input)."""
        ...

    def batches(self, segments: list[Path], query: SessionQuery) -> Iterator[pa.RecordBatch]:
        """The result in bounded chunks, in order (an export)."""
        ...

    def describe(self, error: BaseException) -> str:
        """One line for a user: what went wrong."""
        ...

    def close(self) -> None: ...


MEMORY_ENV = "MICROSEG_DUCKDB_MEMORY"
_SIZE = re.compile(r"[0-9]{1,9}(\.[0-9]{1,3})? ?([KMGT]i?B)", re.IGNORECASE)


def duckdb_memory_limit() -> str:
    """DuckDB's memory limit for a store's session query: $MICROSEG_DUCKDB_MEMORY (`4GB`,
    `800MiB`), else a quarter of this machine's memory. Past it DuckDB spills to a
    temporary directory instead of growing (its own default is 80 %): the rows the query
    returns, and the builder's work on them, need memory too."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if not text:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return f"{physical // 4 >> 20}MiB"
    if not _SIZE.fullmatch(text):
        raise MicrosegError(f"${MEMORY_ENV} {text!r}: expected a size such as 4GB or 800MiB")
    return text


class DuckDBEngine:
    """The session table with embedded DuckDB: one connection per read, within
    `memory_limit` (`duckdb_memory_limit`), spilling into a temporary directory."""

    name = "duckdb"

    def __init__(self, memory_limit: str | None = None):
        self.memory_limit = memory_limit or duckdb_memory_limit()

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        import duckdb

        return (duckdb.Error,)

    def table(self, segments: list[Path], query: SessionQuery) -> pa.Table:
        if not segments:
            return OUTPUT_SCHEMA.empty_table()
        with self._connection(segments) as connection:
            return duckdb_session_table(connection, SESSION_SCHEMA.names, query)

    def rows(self, segments: list[Path], query: SessionQuery) -> int:
        """How many rows `table` returns, counted where they are made (the scale bench's
        rows-back figure)."""
        if not segments:
            return 0
        sql, parameters = session_sql(SESSION_SCHEMA.names, query, DUCKDB)
        with self._connection(segments) as connection:
            counted = connection.sql(f"SELECT count(*) FROM ({sql})", params=parameters)
            return int(counted.fetchall()[0][0])

    @contextmanager
    def _connection(self, segments: list[Path]) -> Iterator[Any]:
        """A connection with the view `raw` over the segments, within the memory limit."""
        from microseg import duck

        names = ", ".join(f"'{quote(segment)}'" for segment in segments)
        with tempfile.TemporaryDirectory(prefix="microseg-duckdb-") as spill:
            connection = duck.connect()
            try:
                connection.execute(f"SET temp_directory = '{quote(Path(spill))}'")
                connection.execute(f"SET memory_limit = '{self.memory_limit}'")
                connection.execute("SET preserve_insertion_order = false")  # the SQL orders
                connection.execute(f"CREATE TEMP VIEW raw AS SELECT * FROM read_parquet([{names}])")
                yield connection
            finally:
                connection.close()

    def batches(self, segments: list[Path], query: SessionQuery) -> Iterator[pa.RecordBatch]:
        return iter(self.table(segments, query).to_batches())

    def describe(self, error: BaseException) -> str:
        import duckdb

        from microseg import duck

        if isinstance(error, duckdb.OutOfMemoryException):
            said = (str(error).strip().splitlines() or ["out of memory"])[0]
            return (
                f"{said} (DuckDB's memory limit is {self.memory_limit}, past which it spills "
                f"into {tempfile.gettempdir()}: give it more with ${MEMORY_ENV}, e.g. "
                f"{MEMORY_ENV}=8GB, or free disk space there)"
            )
        return duck.said(error)

    def close(self) -> None:
        return None


def duckdb_session_table(connection, columns: list[str], query: SessionQuery) -> pa.Table:
    """The session table over the view `raw` of a DuckDB connection; raises duckdb.Error."""
    sql, parameters = session_sql(columns, query, DUCKDB)
    return connection.sql(sql, params=parameters).to_arrow_table().cast(OUTPUT_SCHEMA)


def quote(path: Path | str) -> str:
    """A path (or a column name) inside a single-quoted SQL string."""
    return str(path).replace("'", "''")
