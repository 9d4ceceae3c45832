"""Reliability of the flow path: counters that saturate, a batch that fails without taking the
collector along, a bounded session table, a store that a crafted or broken segment can neither
escape nor make unreadable, and retention that asks before deleting most of the data."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flows_encoder import REVERSE_PEN, Field, address, data_set, ipfix_message, ipfix_template_set
from flows_encoder import uint as encode
from flows_rows import flow_batch, random_flows

from microseg.flows.collector import CollectorSettings, FlowCollector
from microseg.flows.flowstore import (
    COMPACTED_FROM,
    LAST_SEEN,
    QUARANTINE,
    FlowStore,
    read_sessions,
)
from microseg.flows.sessions import (
    INT64_MAX,
    SESSION_SCHEMA,
    SessionSettings,
    SessionTable,
)
from microseg.model import MicrosegError

UINT64_MAX = (1 << 64) - 1
T0 = 1_763_578_369_000  # 2025-11-19 18:52:49 UTC
# an IPFIX template with 64-bit counters both ways (RFC 5103 reverse elements)
BIFLOW = [
    Field(8, 4),
    Field(12, 4),
    Field(7, 2),
    Field(11, 2),
    Field(4, 1),
    Field(2, 8),
    Field(1, 8),
    Field(2, 8, REVERSE_PEN),
    Field(1, 8, REVERSE_PEN),
    Field(152, 8),
]


def biflow_record(packets, octets, rev_packets=0, rev_octets=0, sport=51841, dport=53):
    return (
        address("172.18.4.220")
        + address("10.100.1.6")
        + encode(sport, 2)
        + encode(dport, 2)
        + encode(17, 1)
        + encode(packets, 8)
        + encode(octets, 8)
        + encode(rev_packets, 8)
        + encode(rev_octets, 8)
        + encode(T0, 8)
    )


def datagram(*records) -> tuple[bytes, str]:
    message = ipfix_message([ipfix_template_set({300: BIFLOW}), data_set(300, list(records))])
    return message, "192.0.2.1"


def stored_rows(store_dir) -> list[dict]:
    return read_sessions(store_dir, ephemeral_port=None).to_pylist()


# -- 1. counters saturate; one failing batch never stops the collector ---------------------


def test_two_records_of_2_64_minus_1_packets_saturate_and_are_stored(tmp_path):
    collector = FlowCollector(FlowStore(tmp_path))
    top = biflow_record(UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX)
    collector.receive([datagram(top, top)], now=0)
    collector.flush_all()
    (row,) = stored_rows(tmp_path)
    counters = (row["fwd_packets"], row["fwd_bytes"], row["rev_packets"], row["rev_bytes"])
    assert counters == (INT64_MAX,) * 4
    assert collector.stats()["counters_saturated"] == 1
    assert collector.stats()["records_rejected"] == 0


def test_a_single_record_of_2_63_packets_is_never_stored_negative(tmp_path):
    collector = FlowCollector(FlowStore(tmp_path))
    collector.receive([datagram(biflow_record(1 << 63, 1 << 63))], now=0)
    collector.flush_all()
    (row,) = stored_rows(tmp_path)
    assert (row["fwd_packets"], row["fwd_bytes"]) == (INT64_MAX, INT64_MAX)


def test_counters_just_below_the_limits_are_exact(tmp_path):
    collector = FlowCollector(FlowStore(tmp_path))
    half = INT64_MAX // 2
    collector.receive([datagram(biflow_record(half, 7), biflow_record(half, 8))], now=0)
    collector.flush_all()
    (row,) = stored_rows(tmp_path)
    assert (row["fwd_packets"], row["fwd_bytes"]) == (2 * half, 15)
    assert collector.stats()["counters_saturated"] == 0


def test_the_eph_summary_saturates_too(tmp_path, run_cli):
    """Two stored sessions at INT64_MAX, folded into one `eph` row, must not overflow."""
    collector = FlowCollector(FlowStore(tmp_path))
    records = [biflow_record(1 << 63, 1, sport=port) for port in (50001, 50002)]
    collector.receive([datagram(*records)], now=0)
    collector.flush_all()
    listed = run_cli("sessions", "list", "--store", str(tmp_path), "--json")
    assert listed.exit_code == 0, listed.stderr
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["sport"], row["sessions"], row["fwd_packets"]) == ("eph", 2, INT64_MAX)


class PoisonedMerge(Exception):
    """Test double: what any failure inside the merge (a DuckDB error, a bug) looks like."""


def merge_that_fails_on_vrf_666(original):
    """Wrap SessionTable._merged so a batch carrying VRF 666 cannot be merged."""

    def merged(self, records, now):
        if 666 in records.vrf_id.tolist():
            raise PoisonedMerge("cannot merge this batch")
        return original(self, records, now)

    return merged


def test_a_batch_that_cannot_be_merged_costs_only_itself(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(SessionTable, "_merged", merge_that_fails_on_vrf_666(SessionTable._merged))
    table = SessionTable()
    good = [dict(src="10.0.0.1", sport=50000 + n, dst="10.0.0.2", dport=53) for n in range(3)]
    table.add(flow_batch(good[:2]), now=0)
    assert len(table) == 2  # merged: now part of the active table
    table.add(flow_batch([dict(src="10.0.0.9", dst="10.0.0.2", dport=53, vrf=666)] * 4), now=1)
    table.add(flow_batch(good[2:]), now=2)
    with caplog.at_level(logging.ERROR, "microseg.flows"):
        flushed = table.flush().oriented()
    assert sorted(flushed.column("sport").to_pylist()) == [50000, 50001, 50002]
    assert table.counters.records_rejected == 4
    assert "4 flow records could not be merged" in caplog.text


def test_the_collector_survives_a_failing_batch_and_still_flushes_at_exit(tmp_path, monkeypatch):
    def failing_decode(datagrams):
        raise PoisonedMerge("a bug in the decoder")

    collector = FlowCollector(FlowStore(tmp_path))
    collector.receive([datagram(biflow_record(5, 500))], now=0)
    monkeypatch.setattr(collector.decoder, "decode", failing_decode)
    collector.receive([datagram(biflow_record(1, 1))], now=1)
    monkeypatch.undo()
    collector.flush_all()
    assert collector.stats()["batch_errors"] == 1
    assert [row["fwd_packets"] for row in stored_rows(tmp_path)] == [5]


# -- 9. a bounded session table: eviction writes out, never drops -------------------------


def test_the_session_table_never_holds_more_than_its_limit():
    table = SessionTable(SessionSettings(max_sessions=1000))
    flows = random_flows(20_000)  # 10,000 client -> server records and their replies
    for first in range(0, len(flows), 500):
        table.add(flows.take(slice(first, first + 500)), now=first)
        assert len(table) <= 1000
    evicted = table.take_evicted().oriented()
    rest = table.flush().oriented()
    assert table.counters.sessions_evicted == evicted.num_rows > 0
    # every record is in some written session: evicted sessions are written, not dropped
    written = pa.concat_tables([evicted, rest])
    total = sum(written.column("fwd_packets").to_pylist()) + sum(
        written.column("rev_packets").to_pylist()
    )
    assert total == int(flows.packets.sum())


def test_the_collector_writes_evicted_sessions_and_counts_them(tmp_path):
    settings = CollectorSettings(sessions=SessionSettings(max_sessions=500))
    collector = FlowCollector(FlowStore(tmp_path), settings)
    records = [biflow_record(1, 60, 1, 80, sport=40000 + n) for n in range(3000)]
    for first in range(0, 3000, 100):
        collector.receive([datagram(*records[first : first + 100])], now=first)
    collector.writer.drain()  # evicted sessions are written on the writer's thread
    stats = collector.stats()
    assert stats["sessions_active"] <= 500 and stats["max_sessions"] == 500
    assert stats["sessions_evicted"] >= 2500 and stats["sessions_written"] >= 2500
    collector.flush_all()
    assert len(stored_rows(tmp_path)) == 3000


# -- 2. a crafted segment cannot delete anything outside the store ------------------------


def some_sessions(first_port=51841, count=3, start=T0) -> pa.Table:
    rows = [
        dict(src="172.18.4.220", sport=port, dst="10.100.1.6", dport=53, start=start)
        for port in range(first_port, first_port + count)
    ]
    table = SessionTable()
    table.add(flow_batch(rows), now=0)
    return table.flush().oriented()


def crafted_segment(store: FlowStore, sources: list[str]) -> None:
    store._write_segment(some_sessions(60000, 2), {COMPACTED_FROM: json.dumps(sources).encode()})


@pytest.fixture
def outside(tmp_path):
    """Files outside the store that a crafted segment names."""
    (tmp_path / "etc").mkdir()
    precious = [tmp_path / "precious.txt", tmp_path / "etc" / "passwd"]
    for path in precious:
        path.write_text("keep me")
    return precious


def hostile_sources(tmp_path) -> list[str]:
    return [
        str(tmp_path / "precious.txt"),  # absolute
        "../../precious.txt",  # relative, out of segments/ and the store
        "../../etc/passwd",
        "seg-1.parquet/../../../precious.txt",
        "../collector-stats.json",  # inside the store, but not a segment
        "",
        ".",
    ]


def test_open_ignores_compacted_from_paths_outside_the_segment_directory(tmp_path, outside):
    store = FlowStore(tmp_path / "store").open()
    (store.directory / "collector-stats.json").write_text("{}")
    crafted_segment(store, hostile_sources(tmp_path))
    store.open()  # what `collect` does at start-up
    assert all(path.read_text() == "keep me" for path in outside)
    assert (store.directory / "collector-stats.json").exists()
    assert len(stored_rows(store.directory)) == 2  # the segment itself is still read


def test_compact_ignores_and_reports_hostile_compacted_from(tmp_path, outside, run_cli, caplog):
    store = FlowStore(tmp_path / "store").open()
    store.write(some_sessions())
    crafted_segment(store, hostile_sources(tmp_path))
    result = run_cli("sessions", "compact", "--store", str(store.directory))
    assert result.exit_code == 0, result.stderr
    assert all(path.read_text() == "keep me" for path in outside)
    assert len(stored_rows(store.directory)) == 5
    with caplog.at_level(logging.WARNING, "microseg.flows"):
        crafted_segment(store, ["../../precious.txt"])
        read_sessions(store.directory)
    assert "compacted_from entry '../../precious.txt' ignored" in caplog.text


def test_a_segment_naming_itself_as_its_source_is_not_deleted(tmp_path):
    store = FlowStore(tmp_path).open()
    segment = store.write(some_sessions())
    table = pq.read_table(segment)
    metadata = {**table.schema.metadata, COMPACTED_FROM: json.dumps([segment.name]).encode()}
    pq.write_table(table.replace_schema_metadata(metadata), segment)
    store.open()
    assert segment.exists() and len(stored_rows(tmp_path)) == 3


# -- 7. one bad segment never makes the store unreadable ----------------------------------


def bad_segments(store: FlowStore) -> dict[str, str]:
    """Every kind of broken segment, name -> what `sessions list` must say about it."""
    directory = store.segment_dir
    good = store.write(some_sessions(55000, 4))
    data = good.read_bytes()
    (directory / "seg-1-truncated.parquet").write_bytes(data[: len(data) // 2])
    (directory / "seg-2-empty.parquet").write_bytes(b"")
    (directory / "seg-3-random.parquet").write_bytes(os.urandom(4096))
    (directory / "seg-4-directory.parquet").mkdir()
    pq.write_table(pa.table({"a": [1]}), directory / "seg-5-schema.parquet")
    other_types = some_sessions().cast(
        pa.schema(
            [f.with_type(pa.string()) if f.name == "fwd_packets" else f for f in SESSION_SCHEMA]
        )
    )
    pq.write_table(other_types, directory / "seg-6-types.parquet")
    sessions = some_sessions(56000)
    for name, metadata in (
        ("seg-7-metadata.parquet", {COMPACTED_FROM: b"not json"}),
        ("seg-8-metadata.parquet", {COMPACTED_FROM: b'{"a": 1}'}),
        ("seg-9-metadata.parquet", {LAST_SEEN: b"soon"}),
    ):
        pq.write_table(sessions.replace_schema_metadata(metadata), directory / name)
    os.mkfifo(directory / "seg-10-fifo.parquet")  # opening it for reading would block
    os.symlink(good, directory / "seg-11-link.parquet")
    # a valid footer over corrupt pages: found only when the data is read
    corrupt = bytearray(data)
    corrupt[8:200] = os.urandom(192)
    (directory / "seg-12-pages.parquet").write_bytes(bytes(corrupt))
    os.unlink(good)
    return {
        "seg-1-truncated.parquet": "not a readable Parquet file",
        "seg-2-empty.parquet": "empty file",
        "seg-3-random.parquet": "not a readable Parquet file",
        "seg-4-directory.parquet": "not a regular file",
        "seg-5-schema.parquet": "not a session segment: no column vrf",
        "seg-6-types.parquet": "column fwd_packets is string, not int64",
        "seg-7-metadata.parquet": "compacted_from is not a list of names",
        "seg-8-metadata.parquet": "compacted_from is not a list of names",
        "seg-9-metadata.parquet": "last_seen_ms is not a number",
        "seg-10-fifo.parquet": "not a regular file",
        "seg-11-link.parquet": "symbolic link",
        "seg-12-pages.parquet": "unreadable data",
    }


def test_bad_segments_are_skipped_reported_and_quarantined_on_compact(tmp_path, run_cli, caplog):
    store = FlowStore(tmp_path).open()
    store.write(some_sessions())
    store.write(some_sessions(52000, 2))
    expected = read_sessions(tmp_path, ephemeral_port=None)
    reasons = bad_segments(store)
    with caplog.at_level(logging.WARNING, "microseg.flows"):
        assert read_sessions(tmp_path, ephemeral_port=None).equals(expected)
    assert f"skipped {len(reasons)} bad segment(s)" in caplog.text
    for name, reason in reasons.items():
        assert name in caplog.text and reason in caplog.text.split(name)[1].split(";")[0]
    listed = run_cli("sessions", "list", "--store", str(tmp_path), "--json")
    assert listed.exit_code == 0 and len(listed.stdout.splitlines()) == 1  # one eph row

    dry = run_cli("sessions", "compact", "--store", str(tmp_path), "--dry-run")
    assert dry.exit_code == 0 and len(list(store.segment_dir.iterdir())) == 2 + len(reasons)
    result = run_cli("sessions", "compact", "--store", str(tmp_path), "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    quarantined = {entry["segment"] for entry in report["quarantined"]}
    # the corrupt pages pass the footer check; compaction reads them and quarantines them
    assert quarantined == set(reasons) and report["segments"] == 1
    assert {p.name for p in (tmp_path / QUARANTINE).iterdir()} == set(reasons)
    caplog.clear()
    with caplog.at_level(logging.WARNING, "microseg.flows"):
        assert read_sessions(tmp_path, ephemeral_port=None).equals(expected)
    assert "bad segment" not in caplog.text


def test_sessions_list_says_how_many_segments_it_skipped_and_which(tmp_path):
    import subprocess

    from support import cli_command, cli_env

    store = FlowStore(tmp_path).open()
    store.write(some_sessions())
    (store.segment_dir / "seg-0-empty.parquet").write_bytes(b"")
    (store.segment_dir / "seg-0-random.parquet").write_bytes(b"PAR1" + os.urandom(100))
    listed = subprocess.run(
        cli_command("sessions", "list", "--store", str(tmp_path)),
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0 and "Sessions: 3" in listed.stdout
    assert "skipped 2 bad segment(s): seg-0-empty.parquet (empty file); seg-0-random" in (
        listed.stderr
    )


def test_a_bad_segment_does_not_stop_the_collector_from_starting(tmp_path):
    store = FlowStore(tmp_path).open()
    (store.segment_dir / "seg-0-empty.parquet").write_bytes(b"")
    collector = FlowCollector(FlowStore(tmp_path))
    collector.receive([datagram(biflow_record(2, 100))], now=0)
    collector.flush_all()
    assert [row["fwd_packets"] for row in stored_rows(tmp_path)] == [2]


# -- issue 9: retention asks before deleting most of the data -----------------------------

DAY_MS = 86_400_000


def store_with_ages(tmp_path, ages_in_days: list[int]) -> FlowStore:
    """One 3-session segment per age, sessions last seen that many days before now."""
    import time

    store = FlowStore(tmp_path).open()
    now_ms = int(time.time() * 1000)
    for index, age in enumerate(ages_in_days):
        store.write(some_sessions(50000 + 10 * index, start=now_ms - age * DAY_MS))
    return store


def segment_files(store: FlowStore) -> set[str]:
    return {p.name for p in store.segment_dir.iterdir()}


@pytest.mark.parametrize("ages", [[40, 40, 40], [40, 40, 40, 1]])
def test_retention_that_would_delete_all_or_most_needs_yes(tmp_path, run_cli, ages):
    store = store_with_ages(tmp_path, ages)
    before = segment_files(store)
    refused = run_cli("sessions", "compact", "--store", str(tmp_path), "--retention-days", "30")
    assert refused.exit_code == 1
    assert "retention would delete" in refused.stderr and "9 of" in refused.stderr
    assert "--yes" in refused.stderr and segment_files(store) == before

    dry = run_cli(
        "sessions", "compact", "--store", str(tmp_path), "--retention-days", "30", "--dry-run"
    )
    assert dry.exit_code == 0, dry.stderr
    assert "3 would be pruned (9 of" in dry.stdout and segment_files(store) == before

    done = run_cli(
        "sessions", "compact", "--store", str(tmp_path), "--retention-days", "30", "--yes"
    )
    assert done.exit_code == 0, done.stderr
    assert len(stored_rows(tmp_path)) == 3 * (len(ages) - 3)


def test_retention_of_less_than_half_needs_no_yes(tmp_path, run_cli):
    store = store_with_ages(tmp_path, [40, 1, 1])
    result = run_cli(
        "sessions", "compact", "--store", str(tmp_path), "--retention-days", "30", "--json"
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["pruned"], report["pruned_sessions"], report["stored_sessions"]) == (1, 3, 9)
    assert len(stored_rows(store.directory)) == 6


def test_maintain_refuses_through_the_python_api_too(tmp_path):
    store = store_with_ages(tmp_path, [40, 40])
    with pytest.raises(MicrosegError, match="all stored sessions"):
        store.maintain(retention_seconds=30 * 86400)
    assert len(stored_rows(tmp_path)) == 6


def test_quarantine_keeps_two_bad_segments_of_the_same_name(tmp_path):
    store = FlowStore(tmp_path).open()
    for _ in range(2):
        (store.segment_dir / "seg-0-empty.parquet").write_bytes(b"")
        assert [b.name for b in store.maintain().quarantined] == ["seg-0-empty.parquet"]
    assert sorted(p.name for p in (tmp_path / QUARANTINE).iterdir()) == [
        "seg-0-empty.parquet",
        "seg-0-empty.parquet.1",
    ]
    shutil.rmtree(tmp_path / QUARANTINE)


def test_an_ipv6_record_pairing_an_ipv4_mapped_address_is_dropped_and_counted(tmp_path):
    """Found by the structure-aware fuzz: `::ffff:10.0.0.1` (RFC 4291 2.5.5.2) beside a native
    IPv6 address was stored as a session from 10.0.0.1 to 2001:db8::1, which no reader takes."""
    from flows_encoder import Field, data_set, ipfix_message, ipfix_template_set

    from microseg.flows.decoder import FlowDecoder

    template = [Field(27, 16), Field(28, 16), Field(2, 4)]
    records = [
        address("::ffff:10.0.0.1") + address("2001:db8::1") + encode(1, 4),
        address("::ffff:10.0.0.1") + address("::ffff:10.0.0.2") + encode(2, 4),
        address("2001:db8::2") + address("2001:db8::1") + encode(3, 4),
    ]
    message = ipfix_message([ipfix_template_set({256: template}), data_set(256, records)])
    decoder = FlowDecoder()
    rows = decoder.decode([(message, "192.0.2.1")]).to_records()
    assert [(r["src"], r["dst"], r["family"]) for r in rows] == [
        ("10.0.0.1", "10.0.0.2", 4),
        ("2001:db8::2", "2001:db8::1", 6),
    ]
    assert decoder.counters.mixed_family_records == 1


class NearlyFullStore(FlowStore):
    """Test double: a store whose disk has room for segments of at most `room` sessions; a
    larger write fails as a full tmpfs fails it (OSError ENOSPC, errno 28, as
    test_flow_faults.py sees for real)."""

    def __init__(self, directory, room: int):
        super().__init__(directory)
        self.room = room

    def write(self, sessions, **options):
        if sessions.num_rows > self.room:
            raise OSError(28, os.strerror(28))
        return super().write(sessions, **options)


def test_at_exit_on_a_full_disk_what_fits_is_written_in_smaller_segments(tmp_path):
    collector = FlowCollector(NearlyFullStore(tmp_path, room=800))
    records = [biflow_record(1, 60, 1, 80, sport=20000 + n) for n in range(3000)]
    for first in range(0, 3000, 100):
        collector.receive([datagram(*records[first : first + 100])], now=0)
    assert collector.flush_all() == 3000
    stats = collector.stats()
    assert stats["write_failures"] >= 3 and stats["sessions_unwritten"] == 0
    assert stats["segments_written"] >= 4 and len(stored_rows(tmp_path)) == 3000


def test_what_never_fits_stays_counted_as_unwritten(tmp_path):
    collector = FlowCollector(NearlyFullStore(tmp_path, room=0))
    collector.receive([datagram(biflow_record(1, 60, sport=20000 + n)) for n in range(5)])
    assert collector.flush_all() == 0
    assert collector.stats()["sessions_unwritten"] == 5
    assert collector.last_write_error == "No space left on device"


def test_a_refused_retention_quarantines_nothing_either(tmp_path, run_cli):
    store = store_with_ages(tmp_path, [40, 40])
    (store.segment_dir / "seg-0-empty.parquet").write_bytes(b"")
    before = segment_files(store)
    refused = run_cli("sessions", "compact", "--store", str(tmp_path), "--retention-days", "30")
    assert refused.exit_code == 1 and segment_files(store) == before
    assert not (tmp_path / QUARANTINE).exists()
