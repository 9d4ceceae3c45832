"""`microseg collect --workers N`: N receive processes on one port (SO_REUSEPORT), each with
its own decoder, session table and partition of the store (issue 14)."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from flows_collector import Collector, collect_while_a_port_is_taken
from flows_encoder import softflowd_export

from microseg.flows.flowstore import FlowStore, read_sessions
from microseg.flows.workers import combine_stats, worker_ids
from microseg.model import MicrosegError

T0 = 1_763_578_369_000
EXPORTERS = 12  # sockets; 3 workers all missed by the kernel's hash: 3 x (1/3)^12
OPTIONS = ("--json", "--collector-id", "mon1")


def send_from_exporters(collector: Collector, sessions: int) -> None:
    """EXPORTERS exporters, one socket (source port) each, as softflowd keeps one."""
    for exporter in range(EXPORTERS):
        collector.send(softflowd_export(exporter, sessions, T0), exporter=exporter)


def final_counters(collector: Collector) -> dict:
    return json.loads(collector.stdout.splitlines()[-1])


def test_several_exporters_over_three_workers_store_every_session_exactly_once(tmp_path):
    # a long inactive timeout: sessions stay in each worker's table until SIGTERM, so the
    # store shows that every worker flushed on stop
    collector = Collector(tmp_path, *OPTIONS, "--inactive-timeout", "600", workers=3)
    try:
        send_from_exporters(collector, 300)  # queued by the kernel once sent (loopback)
        # each worker drains its socket, then flushes
        assert collector.stop() == 0, collector.stderr
    finally:
        collector.kill()
    final = final_counters(collector)
    assert final["workers"] == 3
    assert (final["records"], final["decode_errors"]) == (EXPORTERS * 300, 0)
    assert final["unknown_template_sets"] == 0  # each exporter's template met its flows
    sessions = read_sessions(tmp_path, ephemeral_port=None).to_pylist()
    keys = Counter((row["src"], row["sport"], row["dst"], row["dport"]) for row in sessions)
    assert len(keys) == EXPORTERS * 300 and set(keys.values()) == {1}  # each exactly once
    assert {row["fwd_packets"] for row in sessions} == {3}
    partitions = {path.parent.name for path in FlowStore(tmp_path).segments()}
    assert partitions <= {f"collector=mon1-w{n}" for n in (1, 2, 3)}
    assert len(partitions) >= 2  # the kernel spread the exporters
    stats_files = sorted(path.name for path in tmp_path.glob("collector-stats-*.json"))
    assert stats_files == [f"collector-stats-mon1-w{n}.json" for n in (1, 2, 3)]


def test_workers_that_evict_store_every_session_exactly_once(tmp_path):
    """Tables of 100 sessions (--max-sessions 200 over 2 workers) for 3,600 sessions: most
    leave early, through each worker's segment writer; SIGTERM writes the rest."""
    collector = Collector(
        tmp_path, *OPTIONS, "--inactive-timeout", "600", "--max-sessions", "200", workers=2
    )
    try:
        send_from_exporters(collector, 300)
        assert collector.stop() == 0, collector.stderr
    finally:
        collector.kill()
    final = final_counters(collector)
    assert final["sessions_evicted"] > 0
    assert (final["sessions_written"], final["sessions_unwritten"]) == (EXPORTERS * 300, 0)
    sessions = read_sessions(tmp_path, ephemeral_port=None).to_pylist()
    keys = Counter((row["src"], row["sport"], row["dst"], row["dport"]) for row in sessions)
    assert len(keys) == EXPORTERS * 300 and set(keys.values()) == {1}  # each exactly once
    assert {row["fwd_packets"] for row in sessions} == {3}


def worker_pids(supervisor: int) -> list[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return sorted(map(int, children))


def test_a_worker_that_dies_is_reported_and_the_others_go_on(tmp_path):
    collector = Collector(tmp_path, *OPTIONS, workers=2)
    try:
        pids = worker_pids(collector.process.pid)
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        collector.wait_for(lambda: worker_pids(collector.process.pid) == pids[1:])
        send_from_exporters(collector, 30)  # all to the worker left
        assert collector.stop() == 1
    finally:
        collector.kill()
    assert f"worker 1 (pid {pids[0]}) died (killed by signal 9)" in collector.stderr
    assert "1 of 2 workers died" in collector.stderr
    assert "Traceback" not in collector.stderr
    assert final_counters(collector)["records"] == EXPORTERS * 30
    assert len(read_sessions(tmp_path, ephemeral_port=None)) == EXPORTERS * 30


def test_a_port_in_use_is_a_user_error_before_any_worker_starts(tmp_path):
    collect_while_a_port_is_taken(tmp_path, "--listen", "127.0.0.1:{taken}", "--workers", "2")
    assert not list(tmp_path.glob("collector-stats-*"))


def test_worker_ids_name_each_worker_and_stay_valid_collector_ids():
    assert worker_ids("mon1", 3) == ["mon1-w1", "mon1-w2", "mon1-w3"]
    with pytest.raises(MicrosegError, match=r"--collector-id 'a{62}': with --workers 2"):
        worker_ids("a" * 62, 2)


def test_workers_counters_add_up_per_exporter():
    one = {"records": 30, "uptime_seconds": 2.0, "exporters": {"10.0.0.1": {"records": 30}}}
    two = {"records": 60, "uptime_seconds": 3.0, "exporters": {"10.0.0.1": {"records": 60}}}
    three = {"records": 5, "uptime_seconds": 1.0, "exporters": {"10.0.0.2": {"records": 5}}}
    assert combine_stats([one, two, three]) == {
        "records": 95,
        "uptime_seconds": 3.0,
        "exporters": {"10.0.0.1": {"records": 90}, "10.0.0.2": {"records": 5}},
        "workers": 3,
    }
