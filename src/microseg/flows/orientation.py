"""Leaving sessions to SESSION_SCHEMA rows by compiled loops (orient_loops.py): what the
collector's segment writer does with every session that leaves the table.

The result is exactly the reference's (sessions.orient_parts: numpy and Arrow), row for row
and byte for byte, in sort_sessions' order (tests/flows/test_orientation.py holds them equal
on random tables). Sessions with an address that is not IPv4-mapped (IPv6) take the
reference, and so would more than 2**24 VRFs or texts past Arrow's 2 GiB of a string array.
Imported by LeavingSessions.oriented, so only where a session table was made: numba loads
with it. `warm_up` compiles the loops (or loads them from their cache) before a collector
says it is listening: a compile on the writer's thread would hold the GIL, and with it the
receive loop, for seconds.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from microseg.flows import orient_loops
from microseg.flows.merge import COLUMNS, ROW
from microseg.flows.sessions import (
    PROTOCOLS,
    SESSION_SCHEMA,
    orient_parts,
    vrf_name,
)

Parts = list[tuple[dict[str, np.ndarray], list[str]]]
MAX_VRF_RANK = 1 << 24  # bits of the sort key that hold a VRF's rank
ARROW_TEXT_BYTES = 1 << 31  # an Arrow string array's int32 offsets


def _text_ranks(texts: list[str]) -> np.ndarray:
    """Each text's rank in Arrow's order of texts (their UTF-8 bytes); equal texts share one."""
    distinct = sorted({text.encode() for text in texts})
    rank = {text: index for index, text in enumerate(distinct)}
    return np.array([rank[text.encode()] for text in texts], np.uint64)


def _names(names: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Names as the compiled loops take them: Arrow string offsets, bytes, the longest."""
    encoded = [name.encode() for name in names]
    offsets = np.zeros(len(encoded) + 1, np.int32)
    np.cumsum([len(text) for text in encoded], out=offsets[1:])
    # writable whatever the names (np.frombuffer of bytes is read-only, another type to
    # numba: a compile at a collector's first eviction)
    data = np.frombuffer(bytearray(b"".join(encoded)), np.uint8)
    return offsets, data, max((len(text) for text in encoded), default=0)


OCTETS = [str(octet) for octet in range(256)]
OCTET_RANK = _text_ranks(OCTETS)
OCTET_LENGTH = np.array([len(text) for text in OCTETS], np.int64)
OCTET_TEXT = np.zeros((256, 4), np.uint8)  # each octet's text and "."
for _octet, _text in enumerate(OCTETS):
    OCTET_TEXT[_octet, : len(_text) + 1] = np.frombuffer(f"{_text}.".encode(), np.uint8)
PROTOCOL_NAMES = PROTOCOLS.to_pylist()
PROTOCOL_RANK = _text_ranks(PROTOCOL_NAMES).astype(np.uint8)
PROTOCOL_TEXTS = _names(PROTOCOL_NAMES)


def oriented_sessions(parts: Parts) -> pa.Table:
    """The parts' sessions initiator first (SESSION_SCHEMA), sorted as sort_sessions does:
    sessions.orient_parts, by compiled loops."""
    rows, exporters = _rows(parts)
    count = len(rows)
    vrf_names, vrf_rank = _vrf_ranks(rows["vrf_id"])
    longest = max(len(name.encode()) for name in [*exporters, *vrf_names, *PROTOCOL_NAMES])
    low_is_client = np.empty(count, np.bool_)
    first = np.empty(count, np.int64)
    upper, lower = np.empty(count, np.uint64), np.empty(count, np.uint64)
    if (
        len(vrf_names) > MAX_VRF_RANK
        or count * max(longest, orient_loops.ADDRESS_BYTES) >= ARROW_TEXT_BYTES
        or not orient_loops.sort_keys(
            rows,
            len(exporters),
            vrf_rank,
            PROTOCOL_RANK,
            OCTET_RANK,
            low_is_client,
            first,
            upper,
            lower,
        )
    ):
        return orient_parts(parts)
    # numpy's stable sort (timsort) takes rows nearly in order of first seen, as they
    # leave the table, in one pass; numba's (a merge sort) took 60 times longer
    order = np.argsort(first, kind="stable")
    orient_loops.sort_ties(order, first, upper, lower)
    columns = orient_loops.columns(
        rows,
        order,
        low_is_client,
        vrf_rank,
        _names(vrf_names),
        PROTOCOL_TEXTS,
        _names(exporters),
        (OCTET_TEXT, OCTET_LENGTH),
    )
    seen = pa.timestamp("ms", tz="UTC")
    arrays = []
    # the loops' columns come in SESSION_SCHEMA's order, all but `sessions` (the last)
    for field, column in zip(SESSION_SCHEMA, columns, strict=False):
        if isinstance(column, tuple):
            offsets, data = column
            arrays.append(
                pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data))
            )
        elif field.type == seen:
            arrays.append(pa.Array.from_buffers(seen, count, [None, pa.py_buffer(column)]))
        else:
            arrays.append(pa.array(column))
    arrays.append(pa.array(np.ones(count, np.int64)))  # sessions: one each
    return pa.Table.from_arrays(arrays, schema=SESSION_SCHEMA)


def warm_up() -> None:
    """Run every loop once (numba compiles them at their first call, or loads its cache)."""
    rows = np.zeros(2, ROW)
    rows["low_lo"], rows["high_lo"] = 0xFFFF0A000001, 0xFFFF0A000002
    rows["a_packets"] = 1
    rows["vrf_id"] = [0, 1]
    oriented_sessions([({name: rows[name] for name in COLUMNS}, [""])])


def _rows(parts: Parts) -> tuple[np.ndarray, list[str]]:
    """The parts' sessions as one array of table rows (merge.ROW) and the exporter names
    its ids stand for. A part handed over as the table's rows is used as it is; others
    are copied, their exporter ids moved past the names of the parts before them."""
    if len(parts) == 1:
        columns, exporters = parts[0]
        rows = _table_rows(columns)
        if rows is not None:
            return rows, exporters
    rows = np.empty(sum(len(columns["protocol"]) for columns, _ in parts), ROW)
    names: list[str] = []
    start = 0
    for columns, exporters in parts:
        part = rows[start : start + len(columns["protocol"])]
        for name in COLUMNS:
            part[name] = columns[name]
        for name in ("a_exporter", "b_exporter"):
            part[name] += np.uint32(len(names))
        names.extend(exporters)
        start += len(part)
    return rows, names


def _table_rows(columns: dict[str, np.ndarray]) -> np.ndarray | None:
    """The rows whose fields `columns` are (views of one contiguous merge.ROW array), if
    they are."""
    rows = columns["protocol"].base
    if not (
        isinstance(rows, np.ndarray)
        and rows.dtype == ROW
        and rows.ndim == 1
        and rows.flags.c_contiguous
        and rows.flags.writeable
        and len(rows) == len(columns["protocol"])
    ):
        return None
    for name in COLUMNS:
        column, field = columns[name], rows[name]
        if column.base is not rows or _address(column) != _address(field):
            return None
    return rows


def _address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def _vrf_ranks(vrf_id: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The VRFs' names in text order and each session's VRF as its rank among them."""
    if not len(vrf_id) or (vrf_id == vrf_id[0]).all():
        return [vrf_name(int(vrf_id[0]) if len(vrf_id) else 0)], np.zeros(len(vrf_id), np.uint32)
    distinct, inverse = np.unique(vrf_id, return_inverse=True)
    names = [vrf_name(value) for value in distinct.tolist()]
    rank = _text_ranks(names).astype(np.uint32)
    return sorted(names, key=str.encode), rank[inverse.reshape(-1)]
