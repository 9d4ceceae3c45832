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
