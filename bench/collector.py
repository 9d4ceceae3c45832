"""Collector benchmark: zero-loss receive rate over loopback, sessions/s into the store,
and memory per 1,000,000 active sessions; nfdump's nfcapd measured in the same run.

A sender process blasts IPFIX datagrams (softflowd's template, 30 records each; the stream
of bench/decode.py) at rising rates for TRIAL_SECONDS each, at `microseg collect` (a real
subprocess) and at `nfcapd`; a rate counts as zero-loss when the receiver reports every
record sent. Prints one JSON line.

    python bench/collector.py
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(Path(__file__).resolve().parent)]

from decode import RECORDS_PER_DATAGRAM, stream  # noqa: E402

RATES = [250_000, 500_000, 1_000_000, 1_500_000, 2_000_000, 2_500_000, 3_000_000, 4_000_000]
TRIAL_SECONDS = 1.0
RECEIVE_BUFFER = 64 << 20


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def blast(port: int, messages: list[bytes], datagrams_per_s: float, count: int, result) -> None:
    """Send `count` datagrams at a steady rate (paced every millisecond)."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    target = ("127.0.0.1", port)
    began = time.perf_counter()
    sent = 0
    while sent < count:
        due = min(count, int((time.perf_counter() - began) * datagrams_per_s) + 1)
        while sent < due:
            sender.sendto(messages[sent % len(messages)], target)
            sent += 1
        if sent < count and sent >= (time.perf_counter() - began) * datagrams_per_s:
            time.sleep(0.0005)
    result.put((sent, time.perf_counter() - began))


def send(port: int, messages: list[bytes], records_per_s: int) -> tuple[int, float]:
    datagrams_per_s = records_per_s / RECORDS_PER_DATAGRAM
    count = int(datagrams_per_s * TRIAL_SECONDS)
    result = multiprocessing.Queue()
    sender = multiprocessing.Process(
        target=blast, args=(port, messages, datagrams_per_s, count, result)
    )
    sender.start()
    sent, seconds = result.get()
    sender.join()
    return sent, seconds


def microseg_trial(messages, records_per_s) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="microseg-bench-") as store:
        command = [sys.executable, "-m", "microseg", "collect", "--listen", f"127.0.0.1:{port}"]
        command += ["--store", store, "--json", "--flush-interval", "1"]
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        collector = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        collector.stderr.readline()  # "listening on ..."
        began = time.perf_counter()
        sent, send_seconds = send(port, messages, records_per_s)
        time.sleep(0.5)
        stopping = time.perf_counter()
        collector.send_signal(signal.SIGTERM)
        out, _ = collector.communicate(timeout=120)
        finished = time.perf_counter()
    stats = json.loads(out.splitlines()[-1])
    return {
        "records_sent": sent * RECORDS_PER_DATAGRAM,
        "records_received": stats["records"],
        "achieved_records_per_s": sent * RECORDS_PER_DATAGRAM / send_seconds,
        "sessions_written": stats["sessions_written"],
        # end to end: first datagram sent -> every session in Parquet and the process gone
        "sessions_per_s_end_to_end": stats["sessions_written"] / (finished - began),
        # the shutdown flush alone: merge, orient, write the segment (includes process exit)
        "flush_sessions_per_s": stats["sessions_written"] / (finished - stopping),
    }


def nfcapd_trial(messages, records_per_s) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="microseg-bench-nfcapd-") as directory:
        nfcapd = subprocess.Popen(
            [
                "nfcapd",
                "-w",
                directory,
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "-B",
                str(RECEIVE_BUFFER),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(0.5)
        sent, send_seconds = send(port, messages, records_per_s)
        time.sleep(0.5)
        nfcapd.send_signal(signal.SIGTERM)
        out, _ = nfcapd.communicate(timeout=60)
    flows = re.search(r"Flows: (\d+)", out)
    return {
        "records_sent": sent * RECORDS_PER_DATAGRAM,
        "records_received": int(flows.group(1)) if flows else 0,
        "achieved_records_per_s": sent * RECORDS_PER_DATAGRAM / send_seconds,
    }


def highest_zero_loss(trial, messages) -> tuple[int, dict, str]:
    """The highest rate received without loss, its outcome, and why the next rate failed."""
    best_rate, best = 0, {}
    for rate in RATES:
        outcome = trial(messages, rate)
        if outcome["records_received"] != outcome["records_sent"]:
            lost = outcome["records_sent"] - outcome["records_received"]
            return best_rate, best, f"{rate}: lost {lost} of {outcome['records_sent']} records"
        if outcome["achieved_records_per_s"] < 0.9 * rate:
            achieved = round(outcome["achieved_records_per_s"])
            return best_rate, best, f"{rate}: the sender reached only {achieved} records/s"
        best_rate, best = rate, outcome
    return best_rate, best, "every rate tried"


def memory_per_million_sessions() -> dict:
    """A SessionTable holding 1,000,000 distinct active sessions: Arrow bytes and RSS."""
    import numpy as np

    from microseg.flows.batch import FlowBatch
    from microseg.flows.sessions import SessionTable

    count = 1_000_000
    batch = FlowBatch.empty(count)
    batch.family[:] = 4
    index = np.arange(count, dtype=np.uint64)
    batch.src_lo[:] = np.uint64(0xFFFF0A000000) | (index >> np.uint64(4))
    batch.dst_lo[:] = np.uint64(0xFFFF0B000000) | (index & np.uint64(15))
    batch.src_port[:] = 50000 + (index % 1000).astype(np.uint16)
    batch.dst_port[:] = 443
    batch.protocol[:] = 6
    batch.packets[:] = 3
    batch.bytes[:] = 180
    batch.direction[:] = -1
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    table = SessionTable()
    began = time.perf_counter()
    table.add(batch, now=0)
    active = len(table)
    merge_seconds = time.perf_counter() - began
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "active_sessions": active,
        "table_bytes_per_million": round(table.nbytes * 1_000_000 / active),
        "peak_rss_growth_mib": round((rss_after - rss_before) / 1024),
        "merge_sessions_per_s": round(active / merge_seconds),
    }


def main() -> None:
    messages = stream()
    microseg_rate, microseg, microseg_limit = highest_zero_loss(microseg_trial, messages)
    nfcapd_rate, _, nfcapd_limit = highest_zero_loss(nfcapd_trial, messages)
    memory = memory_per_million_sessions()
    print(
        json.dumps(
            {
                "bench": "collector",
                "trial_seconds": TRIAL_SECONDS,
                "rates_tried": RATES,
                "microseg_zero_loss_records_per_s": microseg_rate,
                "nfcapd_zero_loss_records_per_s": nfcapd_rate,
                "ratio_vs_nfcapd": round(microseg_rate / nfcapd_rate, 2) if nfcapd_rate else None,
                "microseg_stopped_at": microseg_limit,
                "nfcapd_stopped_at": nfcapd_limit,
                "microseg_sessions_per_s_end_to_end": round(
                    microseg.get("sessions_per_s_end_to_end", 0)
                ),
                "microseg_flush_sessions_per_s": round(microseg.get("flush_sessions_per_s", 0)),
                "sessions_written": microseg.get("sessions_written", 0),
                "memory_per_million_active_sessions_mib": round(
                    memory["table_bytes_per_million"] / (1 << 20)
                ),
                **{f"memory_{key}": value for key, value in memory.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
