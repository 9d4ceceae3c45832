"""The collector's segment writer (flows/writer.py): sessions that leave the table are
written on a thread of their own, off the receive loop. Whatever the store does (slow,
refusing, a bug), every session handed over is stored exactly once or counted as not
stored; segments come in the order the sessions were handed over; at most `max_waiting`
sessions wait; closing writes everything. No test here times anything: a store double
holds its writes until the test lets them go."""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from flows_encoder import softflowd_export
from flows_rows import flow_batch

from microseg.flows.collector import CollectorSettings, FlowCollector
from microseg.flows.flowstore import FlowStore, read_sessions
from microseg.flows.sessions import LeavingSessions, SessionSettings, SessionTable, least_recent
from microseg.flows.writer import SegmentWriter

LIVENESS = 60  # seconds a thread is given to finish what it no longer waits for
T0 = 1_763_578_369_000


def leaving(first: int, count: int) -> LeavingSessions:
    """`count` DNS sessions, client ports first.. first+count-1, as they leave a table."""
    table = SessionTable()
    rows = [dict(src="10.0.0.1", sport=first + n, dst="10.0.0.2", dport=53) for n in range(count)]
    table.add(flow_batch(rows), now=0)
    return table.flush()


def stored_ports(directory) -> Counter:
    sessions = read_sessions(directory, ephemeral_port=None)
    return Counter(int(port) for port in sessions.column("sport").to_pylist())


class GatedStore(FlowStore):
    """Test double: a store whose writes wait at a gate the test opens, and which refuses
    (OSError `refusing`) while `refusals` lasts."""

    def __init__(self, directory):
        super().__init__(directory)
        self.gate = threading.Event()
        self.gate.set()
        self.writing = threading.Event()  # a write is waiting at the gate
        self.refusals = 0
        self.refusing = errno.EROFS

    def write(self, sessions, **options):
        self.writing.set()
        assert self.gate.wait(LIVENESS), "the test never opened the gate"
        if self.refusals:
            self.refusals -= 1
            raise OSError(self.refusing, os.strerror(self.refusing))
        return super().write(sessions, **options)


def segment_ports(store: FlowStore) -> list[list[int]]:
    """Each segment's client ports, segments in the order they were written."""
    segments = sorted(store.segments(), key=lambda path: path.name)
    return [sorted(pq.read_table(path).column("sport").to_pylist()) for path in segments]


def test_segments_come_in_the_order_the_sessions_were_handed_over(tmp_path):
    store = FlowStore(tmp_path).open()
    writer = SegmentWriter(store, max_unwritten=1000, max_waiting=1000)
    for first in (100, 200, 300):
        writer.put(leaving(first, 3))
    writer.close()
    assert segment_ports(store) == [[100, 101, 102], [200, 201, 202], [300, 301, 302]]
    assert (writer.sessions_written, writer.segments_written) == (9, 3)


def test_a_hand_over_past_max_waiting_waits_for_the_writer_and_nothing_is_lost(tmp_path):
    store = GatedStore(tmp_path).open()
    store.gate.clear()
    writer = SegmentWriter(store, max_unwritten=1000, max_waiting=5)
    writer.put(leaving(100, 3))  # taken by the writer, held at the gate
    assert store.writing.wait(LIVENESS)
    writer.put(leaving(200, 2))  # 5 waiting: the bound, still taken
    third = threading.Thread(target=writer.put, args=(leaving(300, 1),))
    third.start()
    third.join(0.5)
    assert third.is_alive()  # a sixth session waits until the writer catches up
    assert writer.waiting == 5
    store.gate.set()
    third.join(LIVENESS)
    assert not third.is_alive()
    writer.close()
    assert stored_ports(tmp_path) == Counter([*range(100, 103), 200, 201, 300])
    assert writer.waiting == 0


def test_a_store_that_refuses_keeps_the_sessions_until_a_later_write_succeeds(tmp_path, caplog):
    store = GatedStore(tmp_path).open()
    store.refusals = 1
    writer = SegmentWriter(store, max_unwritten=1000, max_waiting=1000)
    with caplog.at_level(logging.ERROR, "microseg.flows"):
        writer.put(leaving(100, 4))
        writer.drain()
    assert writer.unwritten == 4 and writer.counters.write_failures == 1
    assert writer.last_write_error == "Read-only file system"
    assert "cannot write 4 sessions" in caplog.text and "kept in memory" in caplog.text
    writer.put(leaving(200, 2))  # the next write takes both
    writer.close()
    assert writer.unwritten == 0
    assert stored_ports(tmp_path) == Counter([*range(100, 104), 200, 201])  # each once


def test_a_flush_with_nothing_new_retries_what_the_store_refused(tmp_path):
    store = GatedStore(tmp_path).open()
    store.refusals = 1
    writer = SegmentWriter(store, max_unwritten=1000, max_waiting=1000)
    writer.put(leaving(100, 2))
    writer.drain()
    writer.put(LeavingSessions())  # a flush when no session expired
    writer.close()
    assert writer.unwritten == 0 and stored_ports(tmp_path) == Counter([100, 101])


def test_what_the_store_never_takes_is_counted_at_close(tmp_path):
    store = GatedStore(tmp_path).open()
    store.refusals = 1_000
    writer = SegmentWriter(store, max_unwritten=3, max_waiting=1000)
    writer.put(leaving(100, 2))
    writer.put(leaving(200, 2), final=True)
    writer.close()
    # 3 kept (the bound), the oldest dropped; neither stored: the collector exits 1
    assert (writer.unwritten, writer.counters.sessions_dropped) == (3, 1)
    assert writer.sessions_written == 0


def test_a_bug_making_a_segment_is_said_counted_and_the_writer_goes_on(
    tmp_path, monkeypatch, caplog
):
    store = FlowStore(tmp_path).open()
    writer = SegmentWriter(store, max_unwritten=1000, max_waiting=1000)
    broken = leaving(100, 3)
    monkeypatch.setattr(broken, "oriented", lambda: 1 / 0)
    with caplog.at_level(logging.ERROR, "microseg.flows"):
        writer.put(broken)
        writer.put(leaving(200, 2))
        writer.close()
    assert writer.counters.sessions_dropped == 3 and writer.counters.write_failures == 1
    assert writer.last_write_error == "division by zero"
    assert "3 sessions could not be made into a segment and are lost" in caplog.text
    assert "ZeroDivisionError" in caplog.text  # with its traceback
    assert stored_ports(tmp_path) == Counter([200, 201])


def test_a_bug_anywhere_in_a_write_never_ends_the_writer(tmp_path, monkeypatch, caplog):
    store = FlowStore(tmp_path).open()
    writer = SegmentWriter(store, max_unwritten=1000, max_waiting=1000)
    store_sessions = writer._store
    calls = iter([lambda *arguments: {}["bug"], store_sessions])
    monkeypatch.setattr(writer, "_store", lambda *arguments: next(calls)(*arguments))
    with caplog.at_level(logging.ERROR, "microseg.flows"):
        writer.put(leaving(100, 3))
        writer.put(leaving(200, 2))
        drained = threading.Thread(target=writer.drain, daemon=True)
        drained.start()
        drained.join(LIVENESS)
        assert not drained.is_alive()  # the writer's thread lived on and wrote the rest
        writer.close()
    assert writer.counters.sessions_dropped == 3 and writer.last_write_error == "'bug'"
    assert "3 sessions could not be made into a segment and are lost" in caplog.text
    assert stored_ports(tmp_path) == Counter([200, 201])


def test_a_writer_closed_and_handed_more_starts_again(tmp_path):
    store = FlowStore(tmp_path).open()
    writer = SegmentWriter(store, max_unwritten=1000, max_waiting=1000)
    writer.put(leaving(100, 1))
    writer.close()
    writer.put(leaving(200, 1))
    writer.close()
    assert stored_ports(tmp_path) == Counter([100, 200])


def test_evicting_does_not_wait_for_a_slow_store_and_the_stop_writes_everything(tmp_path):
    """The receive loop hands evicted sessions over and goes on while the store is held
    (as many may wait as the table holds: 640 evicted here, 1,000 the bound); flush_all
    (what SIGTERM runs) waits until every session is written, each once."""
    store = GatedStore(tmp_path)
    settings = CollectorSettings(sessions=SessionSettings(max_sessions=1000))
    collector = FlowCollector(store, settings)
    store.gate.clear()
    messages = softflowd_export(0, 1500, T0)  # 1,500 sessions, 30 a message

    def receive_all() -> None:
        for moment, message in enumerate(messages):
            collector.receive([(message, "192.0.2.1")], now=moment)

    receiving = threading.Thread(target=receive_all)
    receiving.start()
    receiving.join(LIVENESS)
    assert not receiving.is_alive()  # every hand-over returned with the store held
    assert collector.stats()["sessions_evicted"] == 640 and collector.sessions_written == 0
    store.gate.set()
    assert collector.flush_all() == 1500
    sources = read_sessions(tmp_path, ephemeral_port=None).column("src").to_pylist()
    assert len(sources) == len(set(sources)) == 1500


@pytest.mark.parametrize("seed", range(20))
def test_the_least_recent_are_those_a_sort_by_update_then_arrival_puts_first(seed):
    """Of sessions updated at the same time (many here), the earliest arrived leave first;
    rows are in no order of arrival (they move as others leave)."""
    generator = np.random.default_rng(seed)
    touched = generator.integers(0, 5, int(generator.integers(1, 300))).astype(np.float64)
    arrival = generator.permutation(3 * len(touched))[: len(touched)].astype(np.int64)
    count = int(generator.integers(0, len(touched) + 1))
    expected = np.zeros(len(touched), dtype=bool)
    expected[np.lexsort((arrival, touched))[:count]] = True
    assert (least_recent(touched, arrival, count) == expected).all()
