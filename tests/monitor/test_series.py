"""The counter time series: deltas between polls, counter resets, unreadable segments."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from microseg.model import MicrosegError
from microseg.monitor import CounterRow, CounterSeries, rule_hits

START = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def sample(minute: int, packets: int, bytes_: int | None, change: int = 1, match: str = "rule72"):
    return CounterRow(
        START + timedelta(minutes=minute),
        "andreasm-720xp-home",
        change,
        "dns_ntp_services",
        match,
        "rule72",
        "forward",
        packets,
        bytes_,
    )


def hits(series: CounterSeries, since_minute: int = -1):
    found, _ = rule_hits(series, START + timedelta(minutes=since_minute))
    return {(h.rule, h.packets, h.bytes) for h in found}


def test_the_first_poll_is_a_baseline_and_later_polls_count_the_difference(tmp_path):
    series = CounterSeries(tmp_path)
    for minute, packets in ((0, 1000), (1, 1010), (2, 1030)):
        series.write([sample(minute, packets, packets * 100)])
    assert hits(series) == {("rule72", 30, 3000)}


def test_a_counter_that_went_down_was_reset_and_never_gives_a_negative_delta(tmp_path):
    series = CounterSeries(tmp_path)
    for minute, packets in ((0, 500), (1, 520), (2, 7), (3, 9)):
        series.write([sample(minute, packets, packets)])
    assert hits(series) == {("rule72", 20 + 7 + 2, 29)}


def test_a_redeploy_between_polls_is_a_reset_even_when_the_counter_grew_past_the_old_value(
    tmp_path,
):
    series = CounterSeries(tmp_path)
    series.write([sample(0, 100, 100, change=1)])
    series.write([sample(1, 150, 150, change=2)])  # recreated by change 2, counted 150 since
    assert hits(series) == {("rule72", 150, 150)}


def test_the_window_uses_the_poll_before_it_as_its_baseline(tmp_path):
    series = CounterSeries(tmp_path)
    for minute, packets in ((0, 0), (10, 40), (20, 45)):
        series.write([sample(minute, packets, None)])
    assert hits(series, since_minute=15) == {("rule72", 5, 0)}


def test_an_unreadable_segment_is_skipped_and_said(tmp_path, caplog):
    series = CounterSeries(tmp_path)
    series.write([sample(0, 0, 0)])
    series.write([sample(1, 4, 4)])
    (series.directory / "seg-0000000000001-1-000000.parquet").write_bytes(b"PAR1 truncated")
    with caplog.at_level(logging.WARNING, logger="microseg.monitor"):
        assert hits(series) == {("rule72", 4, 4)}
    assert "skipped seg-0000000000001-1-000000.parquet (not a readable Parquet file" in caplog.text


def test_a_drop_rule_with_no_hit_is_not_offered_as_harmless(tmp_path):
    series = CounterSeries(tmp_path)
    for minute in (0, 1):
        row = sample(minute, 3, 3)
        series.write([row.__class__(**{**row.__dict__, "rule": "deny_ssh", "action": "drop"})])
    (hit,), _ = rule_hits(series, START)
    assert hit.note == "no hit in window (a drop rule: removing it may widen access)"


def _removing_after_listing(monkeypatch, victim):
    """`segments()` lists, then `victim` is removed before DuckDB reads it (another process
    pruning the series in between), once."""
    listed = CounterSeries.segments
    removed = []

    def segments(self):
        found = listed(self)
        if not removed:
            victim(found).unlink()
            removed.append(True)
        return found

    monkeypatch.setattr(CounterSeries, "segments", segments)
    return removed


def test_a_segment_removed_between_listing_and_reading_is_looked_for_again(tmp_path, monkeypatch):
    series = CounterSeries(tmp_path)
    for minute, packets in ((0, 100), (1, 110), (2, 130)):
        series.write([sample(minute, packets, packets)])
    removed = _removing_after_listing(monkeypatch, lambda found: found[1])
    assert hits(series) == {("rule72", 30, 30)}  # 100 -> 130: the middle poll is gone
    assert removed


def test_a_segment_with_unreadable_pages_is_a_clear_error_naming_the_series(tmp_path):
    series = CounterSeries(tmp_path)
    path = series.write([sample(0, 100, 100)])
    _corrupt_pages(path)
    with pytest.raises(
        MicrosegError, match=r"flow store .*: cannot read the counter series: don't know what type$"
    ):
        hits(series)


def _corrupt_pages(path):
    """Overwrite the data pages, leaving the magic and the footer (schema) intact."""
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    for index in range(4, len(data) - footer):
        data[index] = 0xFF
    path.write_bytes(bytes(data))


# -- compaction: one segment per poll must not pile up for ever -------------------------

ALL_SAMPLES = 'SELECT * FROM samples ORDER BY time, device, policy, "match"'


def _polls(series: CounterSeries, minutes: range, matches: tuple[str, ...] = ("rule72", "rule73")):
    for minute in minutes:
        series.write(
            [sample(minute, 10 * minute + n, 10 * minute, match=m) for n, m in enumerate(matches)]
        )


def _segment_files(series: CounterSeries) -> list[str]:
    return sorted(p.name for p in series.directory.glob("seg-*.parquet"))


def test_many_polls_are_merged_into_one_segment_that_reads_the_same(tmp_path):
    series = CounterSeries(tmp_path)
    _polls(series, range(10))
    before, counted = series.query(ALL_SAMPLES), hits(series)
    merged = series.compact()
    assert len(merged) == 10
    assert len(_segment_files(series)) == 1
    assert series.query(ALL_SAMPLES) == before
    assert hits(series) == counted == {("rule72", 2 * 90, 2 * 90)}


def test_a_compaction_waits_for_enough_small_segments(tmp_path):
    series = CounterSeries(tmp_path)
    _polls(series, range(3))
    assert series.compact(at_least=4) == [] and len(_segment_files(series)) == 3
    _polls(series, range(3, 4))
    assert len(series.compact(at_least=4)) == 4 and len(_segment_files(series)) == 1
    _polls(series, range(4, 7))  # the merged one is small too: merged again, with these
    assert len(series.compact(at_least=4)) == 4 and len(_segment_files(series)) == 1


def test_a_compaction_killed_before_deleting_its_sources_neither_loses_nor_doubles(tmp_path):
    series = CounterSeries(tmp_path)
    _polls(series, range(5))
    before = series.query(ALL_SAMPLES)
    sources = {p.name: p.read_bytes() for p in series.directory.glob("seg-*.parquet")}
    series.compact()
    for name, data in sources.items():  # as if the deletes never happened
        (series.directory / name).write_bytes(data)
    assert series.query(ALL_SAMPLES) == before
    _polls(series, range(5, 6))
    series.compact()  # deletes the leftovers; the new merged segment names them too
    assert len(_segment_files(series)) == 1
    assert series.query(ALL_SAMPLES)[: len(before)] == before
    assert len(series.query(ALL_SAMPLES)) == len(before) + 2


def test_a_killed_compactions_temporary_is_removed_and_a_polls_is_not(tmp_path):
    series = CounterSeries(tmp_path)
    _polls(series, range(3))
    merging = series.directory / ".seg-1796105629544-m4242-000007.parquet.k3x9_q.tmp"
    polling = series.directory / ".seg-1796105629544-4243-000008.parquet.a1b2c3.tmp"
    merging.write_bytes(b"PAR1 half")
    polling.write_bytes(b"PAR1 being written")
    series.compact()
    assert not merging.exists() and polling.exists()


def test_one_compaction_at_a_time_and_the_second_does_not_wait(tmp_path):
    import fcntl

    from microseg.flows.flowstore import file_lock

    series = CounterSeries(tmp_path)
    _polls(series, range(3))
    with file_lock(series.directory / ".compaction.lock", fcntl.LOCK_EX):
        assert series.compact() == []
    assert len(series.compact()) == 3


def test_a_listing_that_missed_the_merged_segment_and_a_source_is_read_again(tmp_path, monkeypatch):
    """A directory listing is not a snapshot: one taken while a compaction deletes its
    sources may hold a source, and miss both the merged segment and a deleted source."""
    series = CounterSeries(tmp_path)
    _polls(series, range(4))
    expected = series.query(ALL_SAMPLES)
    oldest = _segment_files(series)[0]
    kept = series.directory / oldest
    data = kept.read_bytes()
    series.compact()
    listed = CounterSeries.segments
    torn: list[bool] = []

    def segments(self):
        if torn:
            return listed(self)
        torn.append(True)
        kept.write_bytes(data)  # the source not deleted yet, and alone in the listing
        return [kept]

    monkeypatch.setattr(CounterSeries, "segments", segments)
    assert series.query(ALL_SAMPLES) == expected
    assert torn


def test_polls_written_while_the_series_is_compacted_are_each_read_once(tmp_path):
    import threading

    series = CounterSeries(tmp_path)
    polls, written = 120, []
    done = threading.Event()

    def poller() -> None:
        try:
            for minute in range(polls):
                _polls(CounterSeries(tmp_path), range(minute, minute + 1))
                written.append(minute)
        finally:
            done.set()

    thread = threading.Thread(target=poller)
    thread.start()
    compactions = 0
    while not done.is_set():
        at_least = len(written)
        compactions += bool(series.compact())
        ((rows, distinct, first, last),) = series.query(
            'SELECT count(*), count(DISTINCT (time, "match")), min(time), max(time) FROM samples'
        )
        assert rows == distinct  # never doubled
        assert rows >= 2 * at_least  # never lost: every poll written before the read is in
        if rows:
            assert rows == 2 * ((last - first).total_seconds() // 60 + 1)  # no hole
    thread.join()
    series.compact()
    assert len(series.query(ALL_SAMPLES)) == 2 * polls
    assert compactions > 0


def test_a_compaction_that_cannot_write_leaves_every_segment_and_no_temporary(
    tmp_path, monkeypatch
):
    import errno

    from microseg.monitor import series as series_module

    series = CounterSeries(tmp_path)
    _polls(series, range(3))
    before, files = series.query(ALL_SAMPLES), _segment_files(series)

    def full(target, content, mode):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(series_module, "replace_atomically", full)
    with pytest.raises(OSError):
        series.compact()
    assert _segment_files(series) == files
    assert sorted(p.name for p in series.directory.iterdir() if p.name.startswith(".seg")) == []
    assert series.query(ALL_SAMPLES) == before
