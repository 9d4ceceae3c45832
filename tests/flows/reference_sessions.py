"""The session table's merge as it ran until it moved to numpy (flows/merge.py), kept as
the test oracle of the new one: every record turned into a canonical row (both directions'
aggregates side by side), and the rows merged with the active table by a DuckDB
`GROUP BY` of the session key. Here it merges at every `add`, so that it evicts when the
numpy table does; timeouts, eviction, orientation and exporter ids are the table's own. A
session's arrival number is the position of its first record among every record added
(what orders sessions as the numpy table's numbers do: of those updated at the same time,
eviction takes the earliest arrived first)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from microseg import duck
from microseg.flows.batch import FlowBatch
from microseg.flows.merge import KEY, NO_TIME, UINT64_MAX
from microseg.flows.sessions import SessionTable, _service_ports, saturated_sessions

_DIRECTION = [
    ("packets", pa.uint64()),
    ("bytes", pa.uint64()),
    ("first", pa.int64()),
    ("last", pa.int64()),
    ("flags", pa.uint16()),
    ("request", pa.uint8()),
    ("exporter", pa.uint32()),
]
CANONICAL_SCHEMA = pa.schema(
    [
        ("vrf_id", pa.uint32()),
        ("protocol", pa.uint8()),
        ("low_hi", pa.uint64()),
        ("low_lo", pa.uint64()),
        ("low_port", pa.uint16()),
        ("high_hi", pa.uint64()),
        ("high_lo", pa.uint64()),
        ("high_port", pa.uint16()),
        *[("a_" + name, kind) for name, kind in _DIRECTION],
        *[("b_" + name, kind) for name, kind in _DIRECTION],
        ("created", pa.float64()),
        ("touched", pa.float64()),
        ("arrival", pa.int64()),
    ]
)


def _saturated_sum(column: str) -> str:
    return f"least(sum({column}), {UINT64_MAX})::UBIGINT AS {column}"


MERGE = f"""
SELECT {", ".join(KEY)},
       {_saturated_sum("a_packets")}, {_saturated_sum("a_bytes")},
       min(a_first) AS a_first, max(a_last) AS a_last, bit_or(a_flags) AS a_flags,
       max(a_request) AS a_request, max(a_exporter) AS a_exporter,
       {_saturated_sum("b_packets")}, {_saturated_sum("b_bytes")},
       min(b_first) AS b_first, max(b_last) AS b_last, bit_or(b_flags) AS b_flags,
       max(b_request) AS b_request, max(b_exporter) AS b_exporter,
       min(created) AS created, max(touched) AS touched, min(arrival) AS arrival
FROM rows GROUP BY ALL
"""


class ReferenceSessionTable(SessionTable):
    """Test double of the session table: the same behaviour through the DuckDB merge."""

    def __init__(self, settings=None):
        super().__init__(settings)
        self.sessions: pa.Table | None = None
        self._connection = duck.connect()
        self._connection.execute("SET threads = 1")
        self._records_added = 0

    def __len__(self) -> int:
        return 0 if self.sessions is None else self.sessions.num_rows

    def add(self, batch: FlowBatch, now: float | None = None) -> None:
        carried = (batch.packets > 0) | (batch.rev_packets > 0)
        if not carried.all():
            batch = batch.take(carried)
        if not len(batch):
            return
        rows = self._canonical_rows(batch, 0.0 if now is None else now)
        self._records_added += len(batch)
        parts = [part for part in (self.sessions, rows) if part is not None]
        self._connection.register("rows", pa.concat_tables(parts))
        try:
            merged = self._connection.sql(MERGE).to_arrow_table()
        finally:
            self._connection.unregister("rows")
        self.sessions = merged.cast(CANONICAL_SCHEMA)
        self._evict_over_limit()

    def _columns(self) -> dict[str, np.ndarray]:
        """The table's columns as the numpy table holds them (the echo request above the
        TCP flags)."""
        sessions = CANONICAL_SCHEMA.empty_table() if self.sessions is None else self.sessions
        columns = {name: sessions.column(name).to_numpy() for name in sessions.column_names}
        for side in ("a_", "b_"):
            flags = columns.pop(side + "flags").astype(np.uint32)
            columns[side + "flags"] = flags | (
                columns.pop(side + "request").astype(np.uint32) << 16
            )
        return columns

    def _take(self, leaving: np.ndarray) -> tuple[dict[str, np.ndarray], int]:
        columns = self._columns()
        self.sessions = self.sessions.filter(pa.array(~leaving))
        taken = {name: column[leaving] for name, column in columns.items()}
        return taken, saturated_sessions(taken)

    def _clear(self) -> None:
        self.sessions = None

    def _forget_exporters(self) -> None:
        used = np.zeros(len(self._exporters), dtype=bool)
        used[0] = True
        if self.sessions is not None:
            for column in ("a_exporter", "b_exporter"):
                used[self.sessions.column(column).to_numpy()] = True
        if len(self._exporters) - used.sum() <= used.sum():
            return
        new_id = (np.cumsum(used) - 1).astype(np.uint32)
        self._exporters = [self._exporters[i] for i in np.flatnonzero(used).tolist()]
        self._exporter_ids = {
            pair: int(new_id[old]) for pair, old in self._exporter_ids.items() if used[old]
        }
        if self.sessions is not None:
            for column in ("a_exporter", "b_exporter"):
                index = self.sessions.schema.get_field_index(column)
                ids = new_id[self.sessions.column(column).to_numpy()]
                self.sessions = self.sessions.set_column(index, column, pa.array(ids))

    def _canonical_rows(self, batch: FlowBatch, now: float) -> pa.Table:
        src_port, dst_port, request = _service_ports(batch)
        swap = (batch.src_hi > batch.dst_hi) | (
            (batch.src_hi == batch.dst_hi)
            & (
                (batch.src_lo > batch.dst_lo)
                | ((batch.src_lo == batch.dst_lo) & (src_port > dst_port))
            )
        )
        exporter = self._exporter_column(batch.exporter_hi, batch.exporter_lo)
        forward = _direction_stats(
            batch.packets, batch.bytes, batch.start_ms, batch.end_ms, batch.tcp_flags, request
        )
        reverse = _direction_stats(
            batch.rev_packets,
            batch.rev_bytes,
            batch.start_ms,
            batch.end_ms,
            batch.rev_tcp_flags,
            np.zeros(len(batch), np.uint8),
        )
        columns = {
            "vrf_id": batch.vrf_id,
            "protocol": batch.protocol,
            "low_hi": np.where(swap, batch.dst_hi, batch.src_hi),
            "low_lo": np.where(swap, batch.dst_lo, batch.src_lo),
            "low_port": np.where(swap, dst_port, src_port),
            "high_hi": np.where(swap, batch.src_hi, batch.dst_hi),
            "high_lo": np.where(swap, batch.src_lo, batch.dst_lo),
            "high_port": np.where(swap, src_port, dst_port),
        }
        for name in forward:
            columns["a_" + name] = np.where(swap, reverse[name], forward[name])
            columns["b_" + name] = np.where(swap, forward[name], reverse[name])
        has_forward, has_reverse = batch.packets > 0, batch.rev_packets > 0
        columns["a_exporter"] = np.where(np.where(swap, has_reverse, has_forward), exporter, 0)
        columns["b_exporter"] = np.where(np.where(swap, has_forward, has_reverse), exporter, 0)
        columns["created"] = np.full(len(batch), float(now))
        columns["touched"] = columns["created"]
        columns["arrival"] = self._records_added + np.arange(len(batch), dtype=np.int64)
        return pa.table(columns).select(CANONICAL_SCHEMA.names).cast(CANONICAL_SCHEMA)


def _direction_stats(packets, octets, start, end, flags, request) -> dict[str, np.ndarray]:
    carried = packets > 0
    return {
        "packets": packets,
        "bytes": octets,
        "first": np.where(carried, start, NO_TIME),
        "last": np.where(carried, end, -1),
        "flags": np.where(carried, flags, 0).astype(np.uint16),
        "request": np.where(carried, request, 0).astype(np.uint8),
    }
