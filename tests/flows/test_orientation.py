"""The segment writer's compiled orientation (flows/orientation.py, orient_loops.py)
against the numpy and Arrow reference it replaced (sessions.orient_parts): the same table
row for row and the same Parquet bytes, over random canonical sessions as they leave the
table — IPv4 and IPv6, ICMP echo, TCP with and without flags, one or both directions,
first packets in the same millisecond, counters past what Parquet's int64 holds, exporter
ids and VRF ids — and addresses, VRFs and protocols whose texts sort unlike their numbers
("10.0.0.10" before "10.0.0.9", VRF "10" before "9" before "default")."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flows_budget import budget
from hypothesis import given, settings
from hypothesis import strategies as st

from microseg.flows import orient_loops, orientation
from microseg.flows.batch import address_halves
from microseg.flows.flowstore import SEGMENT_OPTIONS
from microseg.flows.merge import COLUMNS, NO_TIME, REQUEST, ROW
from microseg.flows.sessions import orient_parts, sort_sessions

V4 = [
    "10.0.0.9", "10.0.0.10", "10.0.0.1", "10.0.0.100", "1.2.3.4", "12.3.4.5", "1.23.4.5",
    "100.0.0.1", "0.0.0.0", "255.255.255.255", "9.9.9.9", "99.0.0.0", "192.0.2.5",
]  # fmt: skip
V6 = ["2001:db8::1", "2001:db8::10", "::1", "fe80::9", "::ffff:0:0:1"]
VRFS = [0, 1, 9, 10, 100, 2**32 - 1]
PROTOCOLS = [1, 6, 6, 17, 47, 58, 0, 255, 132]
PORTS = [0, 1, 9, 10, 53, 80, 443, 49152, 50000, 65535]
COUNTS = [0, 1, 2, 1500, 2**63 - 1, 2**63, 2**64 - 1]
EXPORTERS = ["", "192.0.2.1", "10.0.0.9", "2001:db8:ff::1", "10.0.0.10"]
FLAGS = [0, 0x02, 0x12, 0x10, 0x04, 0x01, 0x1B]
T0 = 1_763_578_369_000


def canonical_rows(generator: np.random.Generator, count: int, ipv6_share: float) -> np.ndarray:
    """`count` sessions as the table holds them: the lower endpoint first, counters per
    canonical direction, first packets in a handful of milliseconds (long runs of ties)."""
    rows = np.zeros(count, ROW)
    v4 = np.array([address_halves(address) for address in V4], np.uint64)
    v6 = np.array([address_halves(address) for address in V6], np.uint64)
    endpoints = []
    for _ in range(2):
        ipv6 = generator.random(count) < ipv6_share
        chosen = np.where(
            ipv6[:, None],
            v6[generator.integers(0, len(v6), count)],
            v4[generator.integers(0, len(v4), count)],
        )
        random_v4 = generator.random(count) < 0.3  # any address at all
        chosen[:, 1] = np.where(
            random_v4 & ~ipv6,
            np.uint64(0xFFFF << 32) | generator.integers(0, 2**32, count, np.uint64),
            chosen[:, 1],
        )
        ports = np.array(PORTS, np.uint16)[generator.integers(0, len(PORTS), count)]
        endpoints.append((chosen[:, 0], chosen[:, 1], ports))
    (hi_1, lo_1, port_1), (hi_2, lo_2, port_2) = endpoints
    swap = (hi_1 > hi_2) | ((hi_1 == hi_2) & ((lo_1 > lo_2) | ((lo_1 == lo_2) & (port_1 > port_2))))
    rows["low_hi"], rows["high_hi"] = np.where(swap, hi_2, hi_1), np.where(swap, hi_1, hi_2)
    rows["low_lo"], rows["high_lo"] = np.where(swap, lo_2, lo_1), np.where(swap, lo_1, lo_2)
    rows["low_port"] = np.where(swap, port_2, port_1)
    rows["high_port"] = np.where(swap, port_1, port_2)
    rows["vrf_id"] = np.array(VRFS, np.uint32)[generator.integers(0, len(VRFS), count)]
    rows["protocol"] = np.array(PROTOCOLS, np.uint8)[generator.integers(0, len(PROTOCOLS), count)]
    ways = generator.integers(0, 3, count)  # a only, b only, both
    for side, carried in (("a", ways != 1), ("b", ways != 0)):
        counts = np.array(COUNTS, np.uint64)
        rows[f"{side}_packets"] = np.where(
            carried, counts[generator.integers(1, len(COUNTS), count)], 0
        )
        rows[f"{side}_bytes"] = np.where(
            carried, counts[generator.integers(0, len(COUNTS), count)], 0
        )
        first = T0 + generator.integers(0, 4, count)
        rows[f"{side}_first"] = np.where(carried, first, NO_TIME)
        rows[f"{side}_last"] = np.where(carried, first + generator.integers(0, 3, count), -1)
        flags = np.array(FLAGS, np.uint32)[generator.integers(0, len(FLAGS), count)]
        request = np.where(generator.random(count) < 0.3, REQUEST, np.uint32(0))
        rows[f"{side}_flags"] = np.where(carried, flags | request, 0)
        rows[f"{side}_exporter"] = np.where(
            carried, generator.integers(1, len(EXPORTERS), count), 0
        )
    rows["arrival"] = np.arange(count)
    return rows


def leaving_parts(
    generator: np.random.Generator, sizes: list[int], ipv6_share: float, as_rows: bool
) -> list[tuple[dict[str, np.ndarray], list[str]]]:
    """Parts as LeavingSessions holds them: views of the table's rows, or plain arrays."""
    parts = []
    for size in sizes:
        rows = canonical_rows(generator, size, ipv6_share)
        columns = {name: rows[name] for name in COLUMNS}
        if not as_rows:
            columns = {name: np.array(column) for name, column in columns.items()}
        exporters = list(EXPORTERS)
        generator.shuffle(exporters[1:])  # each part numbers its exporters its own way
        parts.append((columns, exporters))
    return parts


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **SEGMENT_OPTIONS)
    return sink.getvalue()


def assert_same_as_reference(parts) -> pa.Table:
    expected = orient_parts(parts)
    oriented = orientation.oriented_sessions(parts)
    assert oriented.schema.equals(expected.schema)
    assert oriented.to_pylist() == expected.to_pylist()
    assert oriented.equals(expected)
    assert parquet_bytes(oriented) == parquet_bytes(expected)
    return oriented


@settings(max_examples=budget(60, 1000), deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=3),
    ipv6_share=st.sampled_from([0.0, 0.0, 0.0, 0.05, 1.0]),
    as_rows=st.booleans(),
)
def test_the_compiled_orientation_is_the_reference_row_for_row(seed, sizes, ipv6_share, as_rows):
    if not sum(sizes):
        sizes = [1]
    parts = leaving_parts(np.random.default_rng(seed), sizes, ipv6_share, as_rows)
    assert_same_as_reference(parts)


def test_ipv4_sessions_take_the_compiled_path(monkeypatch):
    """Without the reference; with a run of one millisecond longer than the insertion
    sort's (orient_loops.SMALL_RUN)."""
    parts = leaving_parts(np.random.default_rng(7), [400, 50], 0.0, True)
    expected = orient_parts(parts)

    def no_reference(parts):
        raise AssertionError("IPv4 sessions fell back on the reference")

    monkeypatch.setattr(orientation, "orient_parts", no_reference)
    oriented = orientation.oriented_sessions(parts)
    assert oriented.equals(expected) and sort_sessions(oriented).equals(oriented)
    first_seen = oriented["first_seen"].to_numpy()
    assert np.unique(first_seen, return_counts=True)[1].max() > 64


def test_sessions_of_one_millisecond_come_in_the_order_of_their_texts():
    """VRF 10 before 9 before default, `47` before `tcp` before `udp`, 10.0.0.10 before
    10.0.0.9 before 100.0.0.1: texts, not numbers (sort_sessions)."""
    sessions = [  # vrf id, protocol, client, server
        (0, 6, "10.0.0.9", "10.0.0.1"),
        (0, 6, "10.0.0.10", "10.0.0.1"),
        (0, 6, "100.0.0.1", "10.0.0.1"),
        (0, 6, "10.0.0.10", "9.0.0.1"),
        (0, 17, "1.2.3.4", "10.0.0.1"),
        (0, 47, "9.9.9.9", "10.0.0.1"),
        (9, 6, "10.0.0.1", "10.0.0.2"),
        (10, 6, "10.0.0.1", "10.0.0.2"),
    ]
    rows = np.zeros(len(sessions), ROW)
    for row, (vrf_id, protocol, client, server) in zip(rows, sessions, strict=True):
        (row["low_hi"], row["low_lo"]), (row["high_hi"], row["high_lo"]) = sorted(
            [address_halves(client), address_halves(server)]
        )
        client_is_low = address_halves(client) < address_halves(server)
        row["vrf_id"], row["protocol"] = vrf_id, protocol
        row["low_port"], row["high_port"] = (50000, 80) if client_is_low else (80, 50000)
        side = "a" if client_is_low else "b"  # only the client sent: half-open
        row[f"{side}_packets"], row[f"{side}_first"], row[f"{side}_last"] = 1, T0, T0
        row["b_first" if side == "a" else "a_first"] = NO_TIME
    parts = [({name: rows[name] for name in COLUMNS}, [""])]
    oriented = assert_same_as_reference(parts)
    assert list(
        zip(
            *(oriented[name].to_pylist() for name in ("vrf", "protocol", "src", "dst")), strict=True
        )
    ) == [
        ("10", "tcp", "10.0.0.1", "10.0.0.2"),
        ("9", "tcp", "10.0.0.1", "10.0.0.2"),
        ("default", "47", "9.9.9.9", "10.0.0.1"),
        ("default", "tcp", "10.0.0.10", "10.0.0.1"),
        ("default", "tcp", "10.0.0.10", "9.0.0.1"),
        ("default", "tcp", "10.0.0.9", "10.0.0.1"),
        ("default", "tcp", "100.0.0.1", "10.0.0.1"),
        ("default", "udp", "1.2.3.4", "10.0.0.1"),
    ]


def test_ipv6_sessions_fall_back_on_the_reference():
    parts = leaving_parts(np.random.default_rng(3), [50], 1.0, True)
    oriented = assert_same_as_reference(parts)
    assert ":" in oriented["src"][0].as_py()


@pytest.mark.parametrize("exporter", [5, 2**32 - 1])
def test_an_exporter_id_without_a_name_is_the_reference_s_error(exporter):
    parts = leaving_parts(np.random.default_rng(5), [10], 0.0, True)
    parts[0][0]["b_exporter"][3] = exporter
    with pytest.raises(IndexError):
        orient_parts(parts)
    with pytest.raises(IndexError):
        orientation.oriented_sessions(parts)


def test_after_the_warm_up_no_loop_compiles_again():
    """The collector warms the loops up before it listens: sessions as they leave a table
    (one exporter or several, one VRF or several, one part or more) find them compiled
    for their types, so no compile holds the GIL at a collector's first eviction."""
    loops = (orient_loops.sort_keys, orient_loops.sort_ties, orient_loops.columns)
    orientation.warm_up()
    compiled = [len(loop.signatures) for loop in loops]
    generator = np.random.default_rng(11)
    for sizes, as_rows in (([40], True), ([40, 3], True), ([5], False)):
        parts = leaving_parts(generator, sizes, 0.0, as_rows)
        orientation.oriented_sessions(parts)
        one_vrf = canonical_rows(generator, 10, 0.0)
        one_vrf["vrf_id"] = 0
        orientation.oriented_sessions([({name: one_vrf[name] for name in COLUMNS}, EXPORTERS)])
    assert [len(loop.signatures) for loop in loops] == compiled
