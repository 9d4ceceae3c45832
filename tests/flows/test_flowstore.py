"""The flow store: atomic Parquet segments, compaction that survives a crash, retention,
and `read_sessions` over a store, Parquet, CSV and JSON lines."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flows_rows import flow_batch

from microseg.flows.flowstore import COMPACTED_FROM, FlowStore, read_sessions
from microseg.flows.sessions import SessionTable
from microseg.model import MicrosegError
from support import EXAMPLES

T0 = 1_763_578_369_000  # 2025-11-19 18:52:49 UTC


def some_sessions(first_port=51841, count=3, start=T0):
    rows = []
    for port in range(first_port, first_port + count):
        rows.append(dict(src="172.18.4.220", sport=port, dst="10.100.1.6", dport=53, start=start))
        rows.append(dict(src="10.100.1.6", sport=53, dst="172.18.4.220", dport=port, start=start))
    table = SessionTable()
    table.add(flow_batch(rows), now=0)
    return table.flush().oriented()


def test_segments_are_renamed_into_place(tmp_path):
    store = FlowStore(tmp_path).open()
    segment = store.write(some_sessions())
    assert segment.parent == tmp_path / "segments" and segment.name.startswith("seg-")
    assert list(store.segment_dir.glob(".tmp-*")) == []
    assert store.write(some_sessions(count=0)) is None
    assert pq.read_table(segment).num_rows == 3


def test_a_segment_is_sorted_unless_its_writer_vouches_for_the_order(tmp_path):
    """The segment writer hands over sessions in sort_sessions' order and says so
    (in_order): they are stored as given; anyone else's are sorted."""
    store = FlowStore(tmp_path).open()
    sessions = some_sessions(count=4)
    backwards = sessions.take(pa.array([3, 2, 1, 0]))
    sorted_ports = sessions.column("sport").to_pylist()
    assert sorted_ports == sorted(sorted_ports)
    as_given = pq.read_table(store.write(backwards, in_order=True))
    assert as_given.column("sport").to_pylist() == sorted_ports[::-1]
    assert pq.read_table(store.write(backwards)).column("sport").to_pylist() == sorted_ports


def test_open_removes_half_written_temporaries(tmp_path):
    store = FlowStore(tmp_path).open()
    store.write(some_sessions())
    (store.segment_dir / ".tmp-seg-123.parquet").write_bytes(b"PAR1 half")
    store.open()
    assert [p.name for p in store.segment_dir.iterdir() if p.name.startswith(".tmp")] == []
    assert read_sessions(tmp_path, ephemeral_port=None).num_rows == 3


def test_compaction_merges_small_segments_and_keeps_every_session(tmp_path):
    store = FlowStore(tmp_path).open()
    for block in range(5):
        store.write(some_sessions(first_port=50000 + 10 * block))
    before = read_sessions(tmp_path, ephemeral_port=None)
    assert store.compact() == 5 and len(store.segments()) == 1
    assert read_sessions(tmp_path, ephemeral_port=None).equals(before)


def test_a_crash_during_compaction_loses_and_duplicates_nothing(tmp_path):
    store = FlowStore(tmp_path).open()
    for block in range(3):
        store.write(some_sessions(first_port=50000 + 10 * block))
    sources = store.segments()
    before = read_sessions(tmp_path, ephemeral_port=None)
    # the merged segment is written, then the process dies before deleting the sources
    merged = pa.concat_tables([pq.read_table(s) for s in sources])
    names = json.dumps([s.name for s in sources]).encode()
    store._write_segment(merged.replace_schema_metadata(None), {COMPACTED_FROM: names})
    assert read_sessions(tmp_path, ephemeral_port=None).equals(before)  # readers skip sources
    store.open()  # the next start repairs it
    assert len(list(store.segment_dir.glob("seg-*"))) == 1
    assert read_sessions(tmp_path, ephemeral_port=None).equals(before)


def test_retention_drops_segments_by_last_seen(tmp_path):
    store = FlowStore(tmp_path).open()
    store.write(some_sessions(start=T0))
    store.write(some_sessions(first_port=60000, start=T0 + 86_400_000))
    now = (T0 + 86_400_000) / 1000 + 3600
    assert store.maintain(retention_seconds=7200, now=now).pruned_sessions == 3
    assert set(read_sessions(tmp_path, ephemeral_port=None).column("sport").to_pylist()) == {
        "60000",
        "60001",
        "60002",
    }


def test_session_files_in_every_format_read_the_same(tmp_path, run_cli):
    store = FlowStore(tmp_path / "store").open()
    store.write(some_sessions())
    expected = read_sessions(store.directory)
    assert (
        run_cli(
            "sessions",
            "export",
            "--parquet",
            str(tmp_path / "s.parquet"),
            "--store",
            str(store.directory),
        ).exit_code
        == 0
    )
    assert (
        run_cli(
            "sessions", "export", "--csv", str(tmp_path / "s.csv"), "--store", str(store.directory)
        ).exit_code
        == 0
    )
    listed = run_cli("sessions", "list", "--store", str(store.directory), "--json")
    (tmp_path / "s.jsonl").write_text(listed.stdout)
    for name in ("s.parquet", "s.csv", "s.jsonl"):
        assert read_sessions(tmp_path / name).equals(expected), name
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["sport"], row["dport"], row["sessions"]) == ("eph", 53, 3)
    assert row["first_seen"] == "2025-11-19T18:52:49.000Z"


def test_a_plain_csv_with_packets_and_bytes_is_accepted(tmp_path):
    path = tmp_path / "whatif.csv"
    path.write_text(
        "vrf,protocol,src,sport,dst,dport,packets,bytes\n"
        "default,tcp,10.160.1.115,43538,10.100.99.12,22,5,211\n"
    )
    (row,) = read_sessions(path).to_pylist()
    assert (row["fwd_packets"], row["fwd_bytes"], row["rev_packets"], row["sessions"]) == (
        5,
        211,
        0,
        1,
    )


def test_filters(tmp_path):
    store = FlowStore(tmp_path).open()
    store.write(some_sessions())
    assert read_sessions(tmp_path, protocol="UDP", port=53).num_rows == 1
    assert read_sessions(tmp_path, protocol="tcp").num_rows == 0
    assert read_sessions(tmp_path, src="172.18.4.220", dst="10.100.1.6").num_rows == 1
    after = datetime(2025, 11, 20, tzinfo=UTC)
    assert read_sessions(tmp_path, since=after).num_rows == 0


def test_bad_session_sources_are_clear_errors(tmp_path):
    with pytest.raises(MicrosegError, match="no such session file"):
        read_sessions(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(MicrosegError, match="missing session field"):
        read_sessions(bad)
    odd = tmp_path / "sessions.txt"
    odd.write_text("x")
    with pytest.raises(MicrosegError, match=r"\.parquet, \.csv or \.jsonl"):
        read_sessions(odd)
    empty_store = tmp_path / "empty-store"
    empty_store.mkdir()
    assert read_sessions(empty_store).num_rows == 0


SEED_CSV = EXAMPLES / "seed-lab-sessions.csv"


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        # DuckDB's sniffer took a file whose last row was cut short for one column per line:
        # "missing session field(s) protocol, src, dst, dport" of a file that has them all.
        (
            500,
            "truncated.csv: cannot read sessions: CSV Error on Line: 3; Expected Number of "
            "Columns: 19 Found: 15",
        ),
        (0, "truncated.csv: empty: a session CSV starts with a header row"),
    ],
)
def test_a_truncated_session_csv_says_which_line_is_short(tmp_path, cut, message):
    truncated = tmp_path / "truncated.csv"
    truncated.write_bytes(SEED_CSV.read_bytes()[:cut])
    with pytest.raises(MicrosegError) as raised:
        read_sessions(truncated)
    assert str(raised.value) == f"{tmp_path}/{message}"


def test_a_truncated_parquet_file_is_one_line_without_duckdbs_sql(tmp_path):
    whole = tmp_path / "whole.parquet"
    pq.write_table(read_sessions(SEED_CSV), whole)
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(whole.read_bytes()[:1000])
    with pytest.raises(MicrosegError) as raised:
        read_sessions(truncated)
    assert str(raised.value) == (
        f"{truncated}: cannot read sessions: No magic bytes found at end of file '{truncated}'"
    )


def test_a_session_csv_with_crlf_lines_and_a_bom_is_read(tmp_path):
    path = tmp_path / "windows.csv"
    path.write_bytes(
        b'\xef\xbb\xbf"vrf","protocol","src","sport","dst","dport","packets","bytes"\r\n'
        b'"default","tcp","10.0.0.1","41000","10.0.0.2","80","1","2"\r\n'
    )
    (row,) = read_sessions(path, ephemeral_port=None).to_pylist()
    assert (row["protocol"], row["src"], row["dport"]) == ("tcp", "10.0.0.1", "80")


def test_the_same_sessions_list_the_same_whatever_their_order_in_the_file(tmp_path):
    """Rows that tie on first seen and key (a file listing one connection twice, say from
    two meters) still come out in one order: every column breaks the tie."""
    rows = [
        dict(protocol="tcp", src="10.0.0.1", sport=40000, dst="10.0.0.2", dport=22, **counts)
        for counts in (
            dict(fwd_packets=5, fwd_bytes=500, first_seen="2025-11-19T18:52:49Z"),
            dict(fwd_packets=3, fwd_bytes=300, first_seen="2025-11-19T18:52:49Z"),
            dict(fwd_packets=4, fwd_bytes=900, first_seen="2025-11-19T18:52:49Z"),
        )
    ]
    listed = []
    for name, ordered in (("a.jsonl", rows), ("b.jsonl", rows[::-1])):
        path = tmp_path / name
        path.write_text("".join(json.dumps(row) + "\n" for row in ordered))
        listed.append(read_sessions(path, ephemeral_port=None).to_pylist())
    assert listed[0] == listed[1]
    assert [row["fwd_packets"] for row in listed[0]] == [3, 4, 5]


def test_address_filters_match_any_spelling_of_the_address(tmp_path):
    """--src/--dst compare addresses, not text: `2001:DB8:0::1` is `2001:db8::1`."""
    table = SessionTable()
    rows = [dict(src="2001:db8::1", sport=50000, dst="2001:db8::53", dport=53)]
    table.add(flow_batch(rows), now=0)
    FlowStore(tmp_path).open().write(table.flush().oriented())
    assert read_sessions(tmp_path, src="2001:DB8:0::1", dst="2001:db8:0:0::53").num_rows == 1
    with pytest.raises(MicrosegError, match="not an IP address"):  # not "no sessions"
        read_sessions(tmp_path, src="not-an-address")


def test_a_collector_writes_its_own_date_and_collector_partition(tmp_path):
    store = FlowStore(tmp_path, "mon1").open()
    segment = store.write(some_sessions())
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert segment.parent == tmp_path / "segments" / f"date={day}" / "collector=mon1"
    assert segment.name.startswith("seg-") and "-mon1-" in segment.name
    assert store.segments() == [segment]


def test_sessions_of_a_past_day_go_to_that_days_partition(tmp_path):
    store = FlowStore(tmp_path, "mon1").open()
    segment = store.write(some_sessions(), day=date(2025, 11, 19))
    assert segment.parent == tmp_path / "segments" / "date=2025-11-19" / "collector=mon1"
    assert read_sessions(tmp_path, ephemeral_port=None).num_rows == 3


def test_flat_and_partitioned_segments_read_together(tmp_path):
    FlowStore(tmp_path).open().write(some_sessions(first_port=50000))  # an older store
    FlowStore(tmp_path, "mon1").open().write(some_sessions(first_port=50100))
    FlowStore(tmp_path, "mon2").open().write(some_sessions(first_port=50200))
    ports = read_sessions(tmp_path, ephemeral_port=None).column("sport").to_pylist()
    assert sorted(ports) == [str(p) for b in (50000, 50100, 50200) for p in range(b, b + 3)]


def test_a_collector_removes_only_its_own_temporaries(tmp_path):
    mine, theirs = FlowStore(tmp_path, "mon1").open(), FlowStore(tmp_path, "mon2").open()
    partitions = [store.write(some_sessions()).parent for store in (mine, theirs)]
    for partition in partitions:
        (partition / ".tmp-seg-1.parquet").write_bytes(b"PAR1 half")
    (partitions[1] / ".merge-seg-2.parquet").write_bytes(b"PAR1 half")
    mine.open()
    assert not (partitions[0] / ".tmp-seg-1.parquet").exists()
    assert (partitions[1] / ".tmp-seg-1.parquet").exists()  # mon2 may be writing it
    assert (partitions[1] / ".merge-seg-2.parquet").exists()  # a compaction may be
    theirs.maintain()  # the next compaction removes what a killed one left
    assert not (partitions[1] / ".merge-seg-2.parquet").exists()


def test_compaction_merges_within_each_partition(tmp_path):
    flat = FlowStore(tmp_path).open()
    collectors = [FlowStore(tmp_path, name).open() for name in ("mon1", "mon2")]
    for block, store in enumerate([flat, flat, *collectors, *collectors, collectors[0]]):
        store.write(some_sessions(first_port=50000 + 10 * block))
    before = read_sessions(tmp_path, ephemeral_port=None)
    assert flat.maintain(dry_run=True).segments == 3
    assert flat.compact() == 7
    parents = sorted(segment.parent.name for segment in flat.segments())
    assert parents == ["collector=mon1", "collector=mon2", "segments"]
    assert read_sessions(tmp_path, ephemeral_port=None).equals(before)


def test_two_segments_of_one_name_read_once_and_the_copy_is_reported(tmp_path, caplog):
    store = FlowStore(tmp_path, "mon1").open()
    segment = store.write(some_sessions())
    elsewhere = tmp_path / "segments" / "date=2025-01-01" / "collector=mon1"
    elsewhere.mkdir(parents=True)
    (elsewhere / segment.name).write_bytes(segment.read_bytes())
    assert read_sessions(tmp_path, ephemeral_port=None).num_rows == 3
    assert "another segment has this name" in caplog.text


@pytest.mark.parametrize("collector_id", ["", "../x", "a/b", "-x", "x" * 64, "mon 1"])
def test_a_bad_collector_id_is_refused(tmp_path, run_cli, collector_id):
    result = run_cli(
        "collect",
        "--store",
        str(tmp_path),
        "--collector-id",
        collector_id,
        "--listen",
        "127.0.0.1:0",
    )
    assert result.exit_code == 1 and "--collector-id" in result.stderr
    assert not (tmp_path / "segments").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["sessions", "list", "--store"],
        ["sessions", "compact", "--store"],
        ["monitor", "rules", "--store"],
        ["recommend", str(EXAMPLES / "home-lab.yaml"), "--store"],
        ["collect", "--listen", "127.0.0.1:0", "--store"],
    ],
)
def test_a_directory_that_is_no_flow_store_is_refused_and_left_as_it_was(
    run_cli, tmp_path, command
):
    # `sessions compact --store examples` gave the examples a store's lock files and
    # segments/; `sessions list` showed an empty table, as if nothing had been collected.
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "home-lab.yaml").write_bytes((EXAMPLES / "home-lab.yaml").read_bytes())
    result = run_cli(*command, str(policies))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {policies}: not a flow store (no segments/ in it, and it is not empty): "
        "give the directory `microseg collect --store` writes\n"
    )
    assert sorted(p.name for p in policies.iterdir()) == ["home-lab.yaml"]


def test_an_empty_directory_is_a_flow_store_with_nothing_collected_yet(run_cli, tmp_path):
    result = run_cli("sessions", "list", "--store", str(tmp_path), "--json")
    assert (result.exit_code, result.stdout) == (0, "")


@pytest.mark.parametrize("given", ["10.0.0.300", "172.18.6.0/24", "web01"])
def test_an_address_filter_that_is_no_address_is_refused_not_listed_as_no_sessions(given):
    with pytest.raises(MicrosegError) as raised:
        read_sessions(SEED_CSV, src=given)
    assert str(raised.value).startswith(f"--src {given!r}: not an IP address")
    with pytest.raises(MicrosegError, match="--dst"):
        read_sessions(SEED_CSV, dst=given)
    assert read_sessions(SEED_CSV, src="2001:DB8:1:0::10").num_rows > 0  # any spelling


def test_an_address_with_a_zone_index_is_refused_not_listed_as_no_sessions():
    with pytest.raises(MicrosegError) as raised:
        read_sessions(SEED_CSV, dst="fe80::1%eth0")
    assert str(raised.value) == (
        "--dst 'fe80::1%eth0': a zone index (%eth0) matches no session: flow records carry "
        "none (give fe80::1)"
    )


def test_a_bad_filter_is_refused_before_anything_is_collected(tmp_path, monkeypatch):
    # With no flow store yet the same query answered "no sessions"; with one, an error.
    monkeypatch.setenv("MICROSEG_FLOW_STORE", str(tmp_path / "not-yet"))
    with pytest.raises(MicrosegError, match="not an IP address"):
        read_sessions(None, src="10.0.0.300")
    with pytest.raises(MicrosegError, match="unknown protocol"):
        read_sessions(None, protocol="\x00")
    assert read_sessions(None).num_rows == 0


def test_a_listing_that_missed_a_compaction_is_read_again(tmp_path, monkeypatch):
    """A directory listing is not a snapshot: one taken while a compaction deletes its
    sources may hold a source and miss both the merged segment and a deleted source; the
    sessions read from it would lack the others'."""
    store = FlowStore(tmp_path).open()
    for block in range(3):
        store.write(some_sessions(first_port=50000 + 10 * block))
    before = read_sessions(tmp_path, ephemeral_port=None)
    first = store.segments()[0]
    kept = first.read_bytes()
    assert store.compact() == 3
    listed = FlowStore._listing
    torn: list[bool] = []

    def listing(self):
        if torn:
            return listed(self)
        torn.append(True)
        first.write_bytes(kept)  # not deleted yet, and alone in the listing
        return [first]

    monkeypatch.setattr(FlowStore, "_listing", listing)
    assert read_sessions(tmp_path, ephemeral_port=None).equals(before)
    assert torn
