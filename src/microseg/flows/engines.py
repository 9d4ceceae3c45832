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
# what-if's fold (`replay_rows`) also says how many rows of the summary each row stands for
REPLAY_SCHEMA = OUTPUT_SCHEMA.append(pa.field("summary_rows", pa.int64()))
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
    store), `client_port_cuts` and `address_classes`, the Policy Builder's fold (see
    `builder_rows`), and `replay_cuts`, what-if's (see `replay_rows`)."""

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
    address_classes: tuple[AddressClass, ...] = ()
    replay_cuts: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        # A bad filter is an error whether or not there is anything to filter yet.
        _filters(self)


@dataclass(frozen=True)
class AddressClass:
    """An IPv4 prefix for the builder's fold (`builder_rows`): an address's class is that of
    its longest matching prefix; `label` -1 makes it a class of one (the address itself)."""

    network: int
    length: int
    label: int


@dataclass(frozen=True)
class Dialect:
    """The places where DuckDB's and Spark's SQL differ; everything else is shared text."""

    # DuckDB's TIMESTAMPTZ and Spark's TIMESTAMP (session time zone UTC) are both instants
    timestamp: str
    # DuckDB sums BIGINT into HUGEINT (exact); Spark sums BIGINT into BIGINT and fails on
    # overflow (ANSI mode), so it sums DECIMAL(38, 0): 2^63 * 10^19 rows fit either way
    wide_sum: str
    # Text to INTEGER, NULL where it is no number. Spark's TRY_CAST of text that is no
    # number throws and catches an exception inside (~8 us a row: the `eph` summary rows and
    # `tcp` made a 1 M session fold take minutes), so text with a letter, which never parses,
    # is NULL before it is cast; anything else is cast as before, so the results are Spark's.
    integer: str

    def number(self, text: str) -> str:
        """`text` (SQL) as an INTEGER, or NULL."""
        return self.integer.format(text=text)


DUCKDB = Dialect(
    timestamp="TIMESTAMPTZ", wide_sum="sum({column})", integer="TRY_CAST({text} AS INTEGER)"
)
SPARK = Dialect(
    timestamp="TIMESTAMP",
    wide_sum="sum(CAST({column} AS DECIMAL(38, 0)))",
    integer="CASE WHEN {text} RLIKE '[A-Za-z]' THEN NULL ELSE TRY_CAST({text} AS INTEGER) END",
)


def session_sql(columns: list[str], query: SessionQuery, dialect: Dialect) -> tuple[str, list]:
    """The session table over the relation `raw` (with these columns): one statement and
    its `?` parameters, ordered."""
    sessions, select, parameters, fold = _session_parts(columns, query, dialect)
    if fold is None:
        return f"{sessions} {select}", parameters
    return f"{sessions}, summary AS ({select}), {fold}", parameters


def session_sql_parts(
    columns: list[str], query: SessionQuery, dialect: Dialect
) -> tuple[str, list, str | None]:
    """`session_sql` in two statements where the query folds (builder, what-if): the
    summary with its parameters, and the fold over a relation `summary`, which it reads
    several times; else the whole statement and None. An engine that recomputes a CTE at
    each read (Spark inlines them) materialises the summary once between the two."""
    sessions, select, parameters, fold = _session_parts(columns, query, dialect)
    if fold is None:
        return f"{sessions} {select}", parameters, None
    return f"{sessions} {select}", parameters, f"WITH {fold}"


def _session_parts(
    columns: list[str], query: SessionQuery, dialect: Dialect
) -> tuple[str, str, list, str | None]:
    """The `sessions` CTE, the select over it (ordered unless a fold follows), its
    parameters, and the fold's CTEs and order (None without a fold)."""
    where, parameters = _filters(query)
    if query.ephemeral_port is None:
        select = f"SELECT {', '.join(OUTPUT_SCHEMA.names)} FROM sessions {where}"
    else:
        select = _summary(where, int(query.ephemeral_port), dialect)
    limit = "" if query.limit is None else f" LIMIT {int(query.limit)}"
    sessions = f"WITH sessions AS ({_normalised(columns, dialect)})"
    if query.client_port_cuts is not None:
        folded = builder_rows(query.client_port_cuts, dialect, query.address_classes)
    elif query.replay_cuts is not None:
        folded = replay_rows(query.replay_cuts, dialect)
    else:
        return sessions, f"{select} ORDER BY {_order(ORDER)}{limit}", parameters, None
    order = _order(["first_seen", "_rest", *ORDER[1:]])
    return sessions, select, parameters, f"{folded} ORDER BY {order}{limit}"


def output_schema(query: SessionQuery) -> pa.Schema:
    """The columns `session_sql` returns for this query."""
    return REPLAY_SCHEMA if query.replay_cuts is not None else OUTPUT_SCHEMA


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
        f"{_session_protocol(dialect)} AS protocol",
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


def _session_protocol(dialect: Dialect) -> str:
    """A session file's protocol as the session table writes it (`session_protocol`): `6`,
    `006` and `TCP` are all `tcp`, so they are one protocol to a listing and its filter."""
    number = dialect.number("protocol")
    names = " ".join(f"WHEN {n} THEN '{name}'" for n, name in sorted(PROTOCOL_NAMES.items()))
    return (
        f"CASE WHEN {number} IS NULL THEN lower(trim(CAST(protocol AS STRING))) "
        f"ELSE CASE {number} {names} ELSE CAST({number} AS STRING) END END"
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
            parameters += [value, _canonical_address(value, column)]
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


def _canonical_address(text: str, column: str) -> str:
    """Addresses are stored in their canonical text (RFC 5952 for IPv6): match any spelling.
    Anything else matches no session, so it is refused rather than listed as none."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise MicrosegError(
            f"--{column} {text[:60]!r}: not an IP address (one address: sessions are "
            "filtered by their end, not by prefix)"
        ) from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        # `ip addr` prints fe80::1%eth0; a flow record carries no zone (RFC 7011 IPv6
        # address fields are the 16 address bytes), so it would match nothing.
        plain = str(address).split("%", 1)[0]
        raise MicrosegError(
            f"--{column} {text[:60]!r}: a zone index (%{address.scope_id}) matches no session: "
            f"flow records carry none (give {plain})"
        )
    return str(address)


def saturating_sum(column: str, dialect: Dialect, name: str | None = None) -> str:
    """A sum that saturates at the store's int64 maximum, as the collector's counters do."""
    total = dialect.wide_sum.format(column=column)
    return f"CAST(least({total}, {INT64_MAX}) AS BIGINT) AS {name or column}"


def _summary(where: str, ephemeral_port: int, dialect: Dialect) -> str:
    # vZTX: client ports from 49152 up are shown as `eph`, one row per client/server/service
    counters = ", ".join(
        saturating_sum(name, dialect)
        for name in ("fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes", "complete")
    )
    return f"""
    SELECT vrf, protocol, src,
           CASE WHEN {dialect.number("sport")} >= {ephemeral_port}
                 AND {dialect.number("dport")} < {ephemeral_port}
                THEN 'eph' ELSE sport END AS sport,
           dst, dport, {counters}, {saturating_sum("half_open", dialect)},
           min(first_seen) AS first_seen, max(last_seen) AS last_seen,
           min(exporter) AS exporter, min(rev_exporter) AS rev_exporter,
           CAST(bit_or(fwd_tcp_flags) AS INTEGER) AS fwd_tcp_flags,
           CAST(bit_or(rev_tcp_flags) AS INTEGER) AS rev_tcp_flags,
           {saturating_sum("sessions", dialect)}
    FROM sessions {where}
    GROUP BY ALL"""


# The Policy Builder's fold. The builder sees a session through its VRF, protocol, ends,
# server port, reply (flags; whether it completed, stayed half-open, got reverse packets),
# and its client port only through what a rule or a scope can ask of it: which side of the
# policy's port boundaries it falls on (`client_port_cuts`, cut points from every Service's
# ranges), whether it is below 1024, 49152 or the server port. Sessions alike in all of that
# fold into one row, so the builder's input grows with the clients, servers and services
# seen rather than with the sessions.
#
# Only what the builder cannot tell apart is folded: TCP and UDP sessions whose client port
# is 1024-49151 and above the server port, so the server is the destination whatever
# other evidence there is (`builder.services.server_side`), and equal to no port any session
# has as a server port (a proposed service could match it).
#
# Examples. The builder shows the first few sessions (in the table's order) of a set: a
# proposal's, an existing rule's, the unexplained ones. Each such set is a union of
# *classes*: folds alike but for their ends' addresses, where both ends' addresses are
# replaced by their class (`address_classes`: the longest matching prefix of a table the
# builder sends, from every prefix its groups, segments and scope name, labelled where
# that prefix decides the address's endpoint; any other address is a class of its own).
# So the first KEPT_ROWS rows of each class stay as they are, and so does each fold's first
# row where the fold's sessions did not all complete (a blocked attempt reports what
# stops its earliest session); the rest of a fold sums into one row with `_rest` set,
# ordered after the kept rows of the same first-seen time, whose client port is the lowest
# of the folded ones. Without classes every fold is a class of its own.
KEPT_ROWS = 3  # the builder shows this many examples (builder.recommend.EXAMPLES_PER_RULE)
_REPLY = "rev_tcp_flags, complete > 0, half_open > 0, rev_packets > 0"
_FOLD_KEY = f"vrf, protocol, src, dst, dport, _cell, {_REPLY}"
_CLASS_KEY = f"vrf, protocol, _src_class, _dst_class, dport, _cell, {_REPLY}"


def builder_rows(
    cuts: tuple[int, ...], dialect: Dialect, classes: tuple[AddressClass, ...] = ()
) -> str:
    """CTEs over `summary` ending in `result` (OUTPUT_SCHEMA and `_rest`), the summary
    with the builder's fold (above) over the client-port cells `cuts` make and the
    address `classes`."""
    sport, dport = dialect.number("sport"), dialect.number("dport")
    low, high = SYSTEM_PORTS_END, EPHEMERAL_PORT_START
    inside = sorted({int(cut) for cut in cuts if low < int(cut) < high})
    # `protocol` is a name here: `_normalised` writes 6 and 17 as tcp and udp
    foldable = (
        f"protocol IN ('tcp', 'udp') AND {sport} >= {low} AND {sport} < {high} "
        f"AND {sport} > {dport} AND first_seen IS NOT NULL"  # the builder reads no time as 0
    )
    columns = ", ".join(OUTPUT_SCHEMA.names)
    # One pass: every row ranked within its class; a kept row, or one that does not fold,
    # is a group of its own (its sport in the key: the summary has one row per sport), the
    # rest of a fold one group. Counts and times are as the builder reads them.
    rest, firsts, joined, seen = f"_fold AND _rank > {KEPT_ROWS}", "", "", ""
    if classes:
        # A class spans folds, so more is kept: the rows seen first (no later than any
        # other) of their client and of their server, since the builder numbers addresses
        # in the order they first appear, and every row of a fold whose sessions did not
        # all complete ranks in a class of that fold alone (a blocked attempt names what
        # stops its earliest session). Every row the rest sums is seen strictly later.
        rest += " AND first_seen > _src_first AND first_seen > _dst_first"
        firsts = "".join(
            f"{end}_first AS (SELECT {end} AS address, min(first_seen) AS seen "
            f"FROM summary GROUP BY {end}),"
            for end in ("src", "dst")
        )
        joined = (
            "LEFT JOIN src_first ON src_first.address = summary.src "
            "LEFT JOIN dst_first ON dst_first.address = summary.dst"
        )
        seen = ", src_first.seen AS _src_first, dst_first.seen AS _dst_first"
    return f"""
    server_ports AS (
        SELECT DISTINCT {dport} AS port FROM summary
        UNION SELECT DISTINCT {sport} FROM summary WHERE NOT coalesce({foldable}, false)),
    {_class_of(classes)}, {firsts}
    marked AS (
        SELECT summary.*, coalesce(({foldable}) AND server_ports.port IS NULL, false) AS _fold,
               {_cell(sport, inside)} AS _cell, {_class("src", "source")} AS _src_class,
               {_class("dst", "destination")} AS _dst_class{seen}
        FROM summary LEFT JOIN server_ports ON server_ports.port = {sport}
        LEFT JOIN class_of AS source ON source.address = summary.src
        LEFT JOIN class_of AS destination ON destination.address = summary.dst {joined}),
    ranked AS (
        SELECT *, row_number() OVER (
            PARTITION BY _fold, {_CLASS_KEY} ORDER BY {_order(ORDER)}) AS _rank
        FROM marked),
    {_fold_result(_FOLD_KEY, rest, dialect)}
    SELECT {columns} FROM result"""


def _class(end: str, joined: str) -> str:
    """An end's class: its prefix's label, or itself (a fold not all complete: see above)."""
    label = f"CAST({joined}.label AS STRING)"
    return f"CASE WHEN complete > 0 THEN coalesce({label}, {end}) ELSE {end} END"


def _fold_result(key: str, rest: str, dialect: Dialect, reply_flags: str = "rev_tcp_flags") -> str:
    """The CTE `result` over `ranked`: rows with `rest` set sum into one per `key`, the
    others stay one each (the summary has one row per sport); counts and times as the
    session table's reader reads them, and `_rest` and `summary_rows` per row."""
    sport = dialect.number("sport")
    counters = ", ".join(
        saturating_sum(name, dialect)
        for name in ("fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes", "complete")
    )
    return f"""result AS (
        SELECT vrf, protocol, src,
               CASE WHEN {rest} THEN CAST(min({sport}) AS STRING) ELSE min(sport) END AS sport,
               dst, dport,
               {counters}, {saturating_sum("half_open", dialect)},
               min(first_seen) AS first_seen,
               max(greatest(last_seen, first_seen)) AS last_seen,  -- never before first
               min(exporter) AS exporter, min(rev_exporter) AS rev_exporter,
               CAST(bit_or(fwd_tcp_flags) AS INTEGER) AS fwd_tcp_flags, {reply_flags},
               {saturating_sum("greatest(sessions, 1)", dialect, "sessions")},
               count(*) AS summary_rows, CASE WHEN {rest} THEN 1 ELSE 0 END AS _rest
        FROM ranked
        GROUP BY {key}, {rest}, CASE WHEN {rest} THEN NULL ELSE sport END)"""


# What-if's fold. What-if replays each row's request and reply on every device (evaluate.
# whatif): a device decides a packet by the cells its fields fall in, and a port's cell
# changes only at the policies' port boundaries (`evaluate.cells.port_cuts` of the base and
# the candidate). So TCP and UDP rows alike in VRF, protocol, ends and server port, with
# client ports in one cell, get the same verdicts from every device: each fold keeps its
# first KEPT_ROWS rows as they are (what-if shows the first 3 of a change, in the table's
# order; a change is a union of folds) and sums the rest into one row, as the builder's.
_REPLAY_KEY = "vrf, protocol, src, dst, dport, _cell"


def replay_rows(cuts: tuple[int, ...], dialect: Dialect) -> str:
    """CTEs over `summary` ending in `result` (REPLAY_SCHEMA and `_rest`): the summary with
    what-if's fold (above) over the client-port cells `cuts` make."""
    sport, dport = dialect.number("sport"), dialect.number("dport")
    inside = sorted({int(cut) for cut in cuts if 0 < int(cut) <= 65535})
    foldable = f"protocol IN ('tcp', 'udp') AND {sport} IS NOT NULL AND {dport} IS NOT NULL"
    rest = f"_fold AND _rank > {KEPT_ROWS}"
    reply_flags = "CAST(bit_or(rev_tcp_flags) AS INTEGER) AS rev_tcp_flags"
    return f"""
    marked AS (
        SELECT summary.*, coalesce({foldable}, false) AS _fold, {_cell(sport, inside)} AS _cell
        FROM summary),
    ranked AS (
        SELECT *, row_number() OVER (
            PARTITION BY _fold, {_REPLAY_KEY} ORDER BY {_order(ORDER)}) AS _rank
        FROM marked),
    {_fold_result(_REPLAY_KEY, rest, dialect, reply_flags)}
    SELECT {", ".join(REPLAY_SCHEMA.names)} FROM result"""


def _class_of(classes: tuple[AddressClass, ...]) -> str:
    """The CTE `class_of` (address, label): each IPv4 end's longest matching prefix among
    `classes`, where that prefix is labelled (>= 0). An equi-join per prefix length: the
    address's number with its host bits cleared is the network of its prefix of that length."""
    labelled = sorted({(c.network, c.length, c.label) for c in classes})
    if not any(label >= 0 for _, _, label in labelled):
        return (
            "class_of AS (SELECT * FROM (VALUES ('', -1)) AS none(address, label) WHERE label >= 0)"
        )
    rows = ", ".join(
        f"({network}, {length}, {1 << (32 - length)}, {label})"
        for network, length, label in labelled
    )
    number = " + ".join(
        f"TRY_CAST(split_part(address, '.', {part}) AS BIGINT) * {1 << (8 * (4 - part))}"
        for part in (1, 2, 3, 4)
    )
    return f"""
    prefixes AS (
        SELECT CAST(network AS BIGINT) AS network, CAST(length AS INTEGER) AS length,
               CAST(span AS BIGINT) AS span, CAST(label AS BIGINT) AS label
        FROM (VALUES {rows}) AS listed(network, length, span, label)),
    ends AS (
        SELECT address, {number} AS number
        FROM (SELECT src AS address FROM summary UNION SELECT dst FROM summary) AS seen
        WHERE address NOT LIKE '%:%'),
    matched AS (
        SELECT ends.address, max_by(prefixes.label, prefixes.length) AS label
        FROM ends CROSS JOIN (SELECT DISTINCT length, span FROM prefixes) AS lengths
        JOIN prefixes ON prefixes.length = lengths.length
                     AND prefixes.network = ends.number - ends.number % lengths.span
        GROUP BY ends.address),
    class_of AS (SELECT address, label FROM matched WHERE label >= 0)"""


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
            return output_schema(query).empty_table()
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
    return connection.sql(sql, params=parameters).to_arrow_table().cast(output_schema(query))


def quote(path: Path | str) -> str:
    """A path (or a column name) inside a single-quoted SQL string."""
    return str(path).replace("'", "''")
