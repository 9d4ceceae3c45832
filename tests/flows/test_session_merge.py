"""The compiled session merge (flows/merge.py, merge_loops.py) against the DuckDB GROUP BY
it replaced (reference_sessions.py): the same sessions leave the table at every timeout
and at the end, field for field, over random batches of uniflow and biflow records, IPv4
and IPv6, TCP, UDP, ICMP and ICMPv6 (echo and errors), records that carry bytes without
packets, counters at the edge of 2**64, several exporters and VRFs; and keys whose hashes
collide are merged apart, never into one session."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from flows_budget import budget
from flows_rows import random_flows
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_sessions import ReferenceSessionTable

from microseg.flows import merge, merge_loops
from microseg.flows.batch import FlowBatch, address_halves
from microseg.flows.sessions import SessionSettings, SessionTable

V4 = ["10.0.0.1", "10.0.0.2", "10.0.1.7", "192.0.2.9"]
V6 = ["2001:db8::1", "2001:db8::2", "2001:db8:1::9", "fe80::1"]
EXPORTERS = ["10.255.1.10", "10.255.1.11", "2001:db8:ff::1"]
ICMP_TYPES = [8 << 8, 0, 3 << 8 | 1, 11 << 8]  # echo request, echo reply, errors
ICMPV6_TYPES = [128 << 8, 129 << 8, 1 << 8 | 4]
TOP = 2**64 - 1


def halves(addresses: list[str]) -> np.ndarray:
    return np.array([address_halves(address) for address in addresses], np.uint64)


def random_batch(generator: np.random.Generator, count: int, kind: str) -> FlowBatch:
    """`count` records over a few endpoints (so that sessions repeat); `kind`: uniflow,
    biflow, or huge (counters near 2**64)."""
    batch = FlowBatch.empty(count)
    batch.direction[:] = -1
    ipv6 = generator.random(count) < 0.3
    batch.family[:] = np.where(ipv6, 6, 4)
    for column_hi, column_lo in ((batch.src_hi, batch.src_lo), (batch.dst_hi, batch.dst_lo)):
        chosen = np.where(
            ipv6[:, None], *(halves(pool)[generator.integers(0, 4, count)] for pool in (V6, V4))
        )
        column_hi[:], column_lo[:] = chosen[:, 0], chosen[:, 1]
    exporter = halves(EXPORTERS)[generator.integers(0, len(EXPORTERS), count)]
    batch.exporter_hi[:], batch.exporter_lo[:] = exporter[:, 0], exporter[:, 1]
    icmp = np.where(ipv6, 58, 1)
    batch.protocol[:] = np.choose(generator.integers(0, 6, count), [6, 6, 17, 17, icmp, 47])
    is_icmp = batch.protocol == icmp
    type_code = np.where(
        ipv6,
        np.array(ICMPV6_TYPES)[generator.integers(0, len(ICMPV6_TYPES), count)],
        np.array(ICMP_TYPES)[generator.integers(0, len(ICMP_TYPES), count)],
    )
    in_port = generator.random(count) < 0.5  # softflowd: type and code in the dst port
    batch.icmp_type_code[:] = np.where(is_icmp & ~in_port, type_code, 0)
    ports = np.array([53, 443, 50000, 50001, 65535], np.uint16)
    batch.src_port[:] = np.where(is_icmp, 0, generator.choice(ports, count))
    batch.dst_port[:] = np.where(
        is_icmp,
        np.where(in_port, type_code, generator.integers(0, 3, count)),
        generator.choice(ports, count),
    )
    batch.vrf_id[:] = generator.choice([0, 0, 7], count)
    batch.packets[:] = generator.integers(0, 4, count)
    batch.bytes[:] = generator.integers(0, 3000, count)
    if kind != "uniflow":
        batch.rev_packets[:] = generator.integers(0, 3, count)
        batch.rev_bytes[:] = generator.integers(0, 3000, count)  # bytes without packets too
    if kind == "huge":
        for column in (batch.packets, batch.bytes, batch.rev_packets, batch.rev_bytes):
            big = generator.random(count) < 0.5
            column[big] = np.uint64(TOP) - generator.integers(0, 5, count, np.uint64)[big]
    batch.start_ms[:] = 1_763_578_369_000 + generator.integers(0, 60_000, count)
    batch.end_ms[:] = batch.start_ms + generator.integers(0, 5_000, count)
    batch.tcp_flags[:] = generator.integers(0, 1 << 16, count)
    batch.rev_tcp_flags[:] = generator.integers(0, 1 << 16, count)
    return batch


def run(table: SessionTable, seed: int, batches: int) -> tuple[list, dict]:
    """What leaves the table at each expiry and at the end (rows sorted), and its counters."""
    generator = np.random.default_rng(seed)
    out, now = [], 1000.0
    for _ in range(batches):
        kind = str(generator.choice(["uniflow", "biflow", "huge"], p=[0.5, 0.4, 0.1]))
        table.add(random_batch(generator, int(generator.integers(1, 120)), kind), now=now)
        now += float(generator.choice([0.0, 0.5, 3.0, 9.0]))
        if generator.random() < 0.4:
            out.append(table.expire(now=now).oriented())
    out.append(table.flush().oriented())
    return [sorted_rows(part) for part in out], vars(table.counters)


def sorted_rows(table: pa.Table) -> list:
    return sorted(tuple(row.values()) for row in table.to_pylist())


def settings_for_test() -> SessionSettings:
    return SessionSettings(inactive_timeout=12, active_timeout=40, max_sessions=100_000)


@settings(max_examples=budget(10, 300), deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_the_compiled_merge_writes_what_the_duckdb_group_by_wrote(seed):
    table = SessionTable(settings_for_test())
    reference = ReferenceSessionTable(settings_for_test())
    assert run(table, seed, 30) == run(reference, seed, 30)


def test_a_long_run_over_one_table_matches_too():
    """Many batches into one table: it grows, its index is rebuilt, sessions leave."""
    table = SessionTable(settings_for_test())
    mine = run(table, 5, 150)
    theirs = run(ReferenceSessionTable(settings_for_test()), 5, 150)
    assert mine == theirs
    assert sum(map(len, mine[0][:-1])) > 100  # sessions left at timeouts, not only at the end


def test_keys_that_share_a_hash_are_merged_apart(monkeypatch):
    """With hashes cut to 2 bits, every key shares its hash with a quarter of the others
    and its first slot with all of them: keys are compared, so the sessions are still
    those of the reference."""
    monkeypatch.setattr(merge, "HASH_MASK", 3)
    table = SessionTable(settings_for_test())
    mine = run(table, 9, 20)
    assert table._active._hash_mask == 3
    assert sum(map(len, mine[0])) > 100  # many more sessions than hashes
    assert mine == run(ReferenceSessionTable(settings_for_test()), 9, 20)


def test_a_sum_past_two_to_the_64_saturates_there():
    table = SessionTable()
    batch = random_batch(np.random.default_rng(3), 1, "uniflow")
    batch.packets[:] = TOP - 1
    for now in range(3):
        table.add(batch, now=now)
    columns = table._active.columns()
    assert int(columns["a_packets"][0] + columns["b_packets"][0]) == TOP


def test_a_table_that_outgrows_its_reserve_and_its_index_loses_nothing(monkeypatch):
    """Rows reserved for 100 sessions and an index of 1,024 slots, then 20,000 sessions:
    the rows double, the index is rebuilt larger, the sessions are the same."""
    monkeypatch.setattr(merge, "INDEX_SLOTS", 1024)
    monkeypatch.setattr(SessionTable, "_reserve", lambda self: 100)
    flows = random_flows(40_000, seed=4)

    def written(table: SessionTable) -> list:
        out = []
        for step, first in enumerate(range(0, len(flows), 2000)):
            table.add(flows.take(slice(first, first + 2000)), now=step)
            if step == 15:
                out.append(table.expire(now=step + 3).oriented())
        grown.append(table._active.capacity)
        out.append(table.flush().oriented())
        return [sorted_rows(part) for part in out]

    grown: list[int] = []
    mine = written(SessionTable(settings_for_test()))
    assert grown[0] > 10_000
    assert mine == written(ReferenceSessionTable(settings_for_test()))
    assert len(mine[-1]) > 10_000


def index_kind(patch: pytest.MonkeyPatch, kind: str) -> None:
    """sparse: the index made for the reserve (the limit and 65,536 rows: 262,144 slots,
    few keys in any one's way); dense: rows reserved for 64 sessions, so the index is up to half
    full (long runs of slots in use, wrapping at its end); colliding: hashes cut to 2 bits,
    every key's first slot the same."""
    if kind == "dense":
        patch.setattr(merge, "INDEX_SLOTS", 16)
        patch.setattr(SessionTable, "_reserve", lambda self: 64)
    elif kind == "colliding":
        patch.setattr(merge, "HASH_MASK", 3)


def index_entries(active: merge.ActiveSessions) -> list[int]:
    """Checks that each row of the table is found from its key: probing from the key's
    first slot reaches the row's own slot before an empty one. Returns the rows the index
    points at, one per slot in use."""
    slots, rows = active._slots, active._rows[: active.size]
    shift = int(merge_loops.index_shift(slots))
    for found, row in enumerate(rows):
        hashed = int(
            merge_loops.key_hash(*(row[name] for name in merge.KEY), active._seed)
            & active._hash_mask
        )
        wanted = (hashed >> 32 << 32) | (found + 1)
        position = hashed >> shift
        while int(slots[position]) != wanted:
            assert slots[position] != 0, f"row {found} is not found from its key"
            position = (position + 1) % len(slots)
    return sorted(int(held & 0xFFFFFFFF) - 1 for held in slots[slots != 0])


@pytest.mark.parametrize("kind", ["sparse", "dense", "colliding"])
def test_sessions_that_leave_leave_the_index_and_every_other_is_found_where_it_moved(
    kind, monkeypatch
):
    """After evictions and expiries, the index holds one slot per row that stays and
    nothing else (no slot of a session that left, none pointing past the rows), and each
    row is found from its key wherever it moved; merging the stayers' records again adds
    no row."""
    index_kind(monkeypatch, kind)
    table = SessionTable(SessionSettings(inactive_timeout=12, active_timeout=40, max_sessions=300))
    generator = np.random.default_rng(21)
    now = 1000.0
    for step in range(40):
        batch = random_batch(generator, int(generator.integers(20, 200)), "biflow")
        table.add(batch, now=now)
        now += float(generator.choice([0.0, 0.5, 3.0, 9.0]))
        if step % 7 == 6:
            table.expire(now=now)
        active = table._active
        assert index_entries(active) == list(range(len(table)))
        before = {tuple(row[name] for name in merge.KEY) for row in active._rows[: active.size]}
        assert len(before) == len(table)  # no key twice
    assert table.counters.sessions_evicted > 0
    stayers = table._active.columns()
    size = len(table)
    again = {name: np.zeros(size, dtype) for name, dtype in merge._RECORD_TYPES.items()}
    for side, column in (("low", "src"), ("high", "dst")):
        for part in ("hi", "lo", "port"):
            again[f"{column}_{part}"] = stayers[f"{side}_{part}"]
    again["protocol"], again["vrf_id"] = stayers["protocol"], stayers["vrf_id"]
    again["packets"] = np.ones(size, np.uint64)
    table._active.merge(merge.Records(**again), now)
    assert len(table) == size


def evicting_settings() -> SessionSettings:
    return SessionSettings(inactive_timeout=12, active_timeout=40, max_sessions=60)


@settings(max_examples=budget(10, 300), deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["sparse", "dense", "colliding"]))
def test_a_full_table_evicts_what_the_reference_evicts(seed, kind):
    """A table of 60 sessions at most: batches evict the least recently updated (many
    updated at the same time: the earliest arrived first), rows move into the rows that
    left, and every session still finds its row: what leaves at each expiry (evicted or
    timed out) and at the end is the reference's, field for field, and so are the counts."""
    with pytest.MonkeyPatch.context() as patch:
        index_kind(patch, kind)
        table = SessionTable(evicting_settings())
        mine, counters = run(table, seed, 30)
    assert counters["sessions_evicted"] > 0
    assert (mine, counters) == run(ReferenceSessionTable(evicting_settings()), seed, 30)
