"""Fault injection on the flow path, for real: a full disk (a small tmpfs, ENOSPC), a store
remounted read-only (EROFS), SIGKILL at random points of collect, flush and compaction, and
three compactions at once beside a running collector.

The guarantees under test: nothing already stored is lost or changed, the store stays
readable, the collector keeps its sessions in memory (bounded) until the store takes them
again, and what cannot be stored is counted and said, never silently dropped. Each fault runs
against one collector process and against `--workers 2` (a supervisor and two receive
processes, killed all at once for SIGKILL).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from flows_budget import budget
from flows_collector import Collector
from flows_encoder import SOFTFLOWD_V4, data_set, ipfix_message, ipfix_template_set
from flows_encoder import softflowd_v4_record as record
from flows_rows import flow_batch
from flows_traffic import collected_sessions, expected_sessions, seed_lab_traffic

from microseg.flows.decoder import FlowDecoder
from microseg.flows.demo import SEED_LAB_IPFIX
from microseg.flows.flowstore import FlowStore, read_sessions
from microseg.flows.replay import read_ipfix_file
from microseg.flows.sessions import SessionTable
from support import cli_command, cli_env

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root"),
]
KILL_RUNS = budget(4, 30)
T0 = 1_763_578_369_000


@pytest.fixture(params=[1, 2], ids=["one-process", "two-workers"])
def workers(request) -> int:
    return request.param


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs mounted for the test (and unmounted after it)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def remount(mount: Path, mode: str) -> None:
    """mount -o remount,ro|rw; a writer holding a file open makes it EBUSY for a moment."""
    for _ in range(100):
        if subprocess.run(["mount", "-o", f"remount,{mode}", str(mount)]).returncode == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"cannot remount {mount} {mode}")


def fill(mount: Path) -> Path:
    filler = mount / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(descriptor, bytes(65536))
    except OSError as error:
        assert error.errno == 28  # ENOSPC
    finally:
        os.close(descriptor)
    return filler


def stored_before(store: Path) -> dict[str, str]:
    """A store with sessions already in it; returns file -> sha256 of its segments."""
    table = SessionTable()
    rows = [dict(src="192.0.2.7", sport=40000 + n, dst="192.0.2.8", dport=443) for n in range(5)]
    table.add(flow_batch(rows), now=0)
    FlowStore(store).open().write(table.flush().oriented())
    return checksums(store)


def checksums(store: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in FlowStore(store).segments()
    }


def lab_sessions(store: Path) -> dict:
    sessions = collected_sessions(read_sessions(store, ephemeral_port=None))
    return {key: value for key, value in sessions.items() if key[1] != "192.0.2.7"}


LAB = read_ipfix_file(SEED_LAB_IPFIX)


# -- 8. full disk and read-only store ------------------------------------------------------


def test_a_full_disk_keeps_sessions_in_memory_until_space_returns(small_disk, workers):
    store = small_disk / "flows"
    before = stored_before(store)
    collector = Collector(store, workers=workers)
    filler = fill(small_disk)
    collector.send(LAB)
    collector.wait_for(lambda: "No space left on device" in collector.stderr)
    assert "kept in memory" in collector.stderr
    assert checksums(store) == before  # nothing stored is touched
    assert list((store / "segments").rglob(".tmp-*")) == []  # no partial segment eats space
    filler.unlink()
    collector.wait_for(lambda: len(checksums(store)) > len(before))
    assert collector.stop() == 0, collector.stderr
    assert lab_sessions(store) == expected_sessions(seed_lab_traffic())
    assert {k: v for k, v in checksums(store).items() if k in before} == before


def test_a_disk_still_full_at_exit_says_what_was_lost_and_keeps_the_store(small_disk, workers):
    store = small_disk / "flows"
    before = stored_before(store)
    collector = Collector(store, workers=workers)
    fill(small_disk)
    collector.send(LAB)
    collector.wait_for(lambda: "No space left on device" in collector.stderr)
    assert collector.stop() == 1
    lost = len(seed_lab_traffic().sessions)
    assert f"{lost} sessions could not be stored" in collector.stderr
    assert "Traceback" not in collector.stderr
    assert checksums(store) == before
    assert len(read_sessions(store, ephemeral_port=None)) == 5


def test_a_store_remounted_read_only_is_retried_until_writable_again(small_disk, workers):
    store = small_disk / "flows"
    before = stored_before(store)
    collector = Collector(store, workers=workers)
    remount(small_disk, "ro")
    try:
        collector.send(LAB)
        collector.wait_for(lambda: "Read-only file system" in collector.stderr)
        assert checksums(store) == before
    finally:
        remount(small_disk, "rw")
    collector.wait_for(lambda: len(checksums(store)) > len(before))
    assert collector.stop() == 0, collector.stderr
    assert lab_sessions(store) == expected_sessions(seed_lab_traffic())


def test_memory_for_unwritten_sessions_is_bounded_and_what_is_dropped_is_counted(
    small_disk, workers
):
    store = small_disk / "flows"
    before = stored_before(store)
    collector = Collector(store, "--max-unwritten", "4", "--json", workers=workers)
    remount(small_disk, "ro")
    try:
        collector.send(LAB)
        collector.wait_for(lambda: "unwritten sessions dropped" in collector.stderr)
        assert collector.stop() == 1
    finally:
        remount(small_disk, "rw")
    final = json.loads(collector.stdout.splitlines()[-1])
    lab = len(seed_lab_traffic().sessions)
    assert final["sessions_dropped"] + final["sessions_unwritten"] == lab
    assert final["sessions_unwritten"] <= 4 and final["write_failures"] > 0
    assert "--max-unwritten" in collector.stderr
    assert "sessions could not be stored" in collector.stderr
    assert checksums(store) == before


# -- 6. concurrent compaction beside a collector -------------------------------------------


@pytest.mark.slow
def test_three_compactions_at_once_beside_a_collector_duplicate_nothing(tmp_path):
    store = tmp_path / "flows"
    flow_store = FlowStore(store).open()
    for block in range(40):
        table = SessionTable()
        rows = [
            dict(src="192.0.2.7", sport=20000 + 10 * block + n, dst="192.0.2.8", dport=443)
            for n in range(3)
        ]
        table.add(flow_batch(rows), now=0)
        flow_store.write(table.flush().oriented())
    initial = Counter(map(row_key, read_sessions(store, ephemeral_port=None).to_pylist()))
    lab_packets = packets_in(LAB)
    collector = Collector(store)
    rounds = 0
    for _ in range(2):
        compactions = [
            subprocess.Popen(
                cli_command("sessions", "compact", "--store", str(store)),
                env=cli_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        while any(c.poll() is None for c in compactions):
            collector.send(LAB)
            rounds += 1
            time.sleep(0.02)
        for compaction in compactions:
            _, err = compaction.communicate()
            assert compaction.returncode == 0, err
    assert collector.stop() == 0, collector.stderr
    rows = read_sessions(store, ephemeral_port=None).to_pylist()
    stored = Counter(map(row_key, rows))
    assert not initial - stored  # every stored session is still there, once
    assert sum(n for key, n in stored.items() if key in initial) == sum(initial.values())
    collected = [r for r in rows if r["src"] != "192.0.2.7"]
    assert sum(r["fwd_packets"] + r["rev_packets"] for r in collected) == rounds * lab_packets
    assert FlowStore(store).scan().bad == []


def packets_in(datagrams: list[bytes]) -> int:
    batch = FlowDecoder().decode([(d, "127.0.0.1") for d in datagrams])
    return int(batch.packets.sum() + batch.rev_packets.sum())


def row_key(row: dict) -> tuple:
    return tuple(row[name] for name in sorted(row))


# -- "make it stay fixed": SIGKILL at random points ----------------------------------------


def random_export(rng: random.Random, datagrams: int) -> list[bytes]:
    """softflowd-style IPFIX with random endpoints: enough sessions for real flushes."""
    messages = []
    for index in range(datagrams):
        records = [
            record(
                f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                f"10.200.0.{rng.randrange(1, 255)}",
                T0 + index,
                T0 + index + 40,
                rng.randrange(40, 150_000),
                rng.randrange(1, 100),
                rng.randrange(49152, 65536),
                rng.choice((22, 53, 80, 443)),
                rng.choice((6, 17)),
                0x1B,
            )
            for _ in range(30)
        ]
        sets = [ipfix_template_set({1024: SOFTFLOWD_V4})] if index % 50 == 0 else []
        messages.append(ipfix_message([*sets, data_set(1024, records)], sequence=30 * index))
    return messages


@pytest.mark.slow
def test_sigkill_at_random_points_never_loses_what_was_stored(tmp_path, workers):
    rng = random.Random(20251130)
    store = tmp_path / "flows"
    stored = Counter()
    for run in range(KILL_RUNS):
        flush = str(rng.choice([0.05, 0.1, 0.3]))
        collector = Collector(store, "--flush-interval", flush, workers=workers)
        compaction = None
        if run % 2:
            compaction = subprocess.Popen(
                cli_command("sessions", "compact", "--store", str(store)),
                env=cli_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        stop = threading.Event()
        export = random_export(rng, 150)

        def keep_sending(collector=collector, export=export, stop=stop):
            while not stop.is_set():
                for first in range(0, len(export), 10):
                    if stop.is_set():
                        return
                    collector.send(export[first : first + 10], exporter=first // 10 % 2)

        segments_before = set(checksums(store))
        sender = threading.Thread(target=keep_sending, daemon=True)
        sender.start()
        if run % 2 == 0:
            # A fresh collector on a loaded machine takes seconds to its first segment (its
            # first decode and first Parquet write are cold), so kills drawn from the
            # sender's start alone may all come before anything is stored and prove nothing:
            # every other run kills at a random point after this run's first segment.
            collector.wait_for(lambda before=segments_before: set(checksums(store)) - before)
        time.sleep(rng.uniform(0.05, 1.5))
        if compaction is not None and compaction.poll() is None:
            compaction.send_signal(signal.SIGKILL)
        assert collector.stop(signal.SIGKILL) == -signal.SIGKILL
        stop.set()
        sender.join()
        collector.close()
        if compaction is not None:
            compaction.wait(timeout=60)
        scan = FlowStore(store).scan()
        assert scan.bad == [] and scan.ignored == []
        now = Counter(map(row_key, read_sessions(store, ephemeral_port=None).to_pylist()))
        assert not stored - now, f"run {run}: stored sessions lost"
        stored = now
    assert sum(stored.values()) > 0
    # and the store is still what a last compaction and a reader expect
    result = subprocess.run(
        cli_command("sessions", "compact", "--store", str(store)),
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    after = Counter(map(row_key, read_sessions(store, ephemeral_port=None).to_pylist()))
    assert after == stored
