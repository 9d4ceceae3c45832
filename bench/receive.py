"""Receive-thread benchmark: CPU per record of a collector's receive path, stage by stage,
in-process, against another revision's code in the same run.

What one receive worker of bench/collector.py does, without the machine's scheduling in the
way: `--exporters` exporters (one source address, each its own source port, so each is an
IPFIX Transport Session with its own template; default 4, a worker's share of that bench's
8 with 2 workers) replay bench/decode.py's stream (20,000 datagrams of softflowd's template,
30 records each, 600,000 distinct sessions) in lockstep, as that bench's sender does, so
each session gets a record from each exporter in turn (with 1 exporter every record is a
new session, and every pass over the stream evicts each: the worst case), through a loopback socket into `microseg collect`'s own reader
(recvmmsg), decoder, session table of `--max-sessions` (500,000: a worker's share of the
default 1,000,000 with 2 workers, so every pass over the stream evicts) and segment
writer's hand-over (no store: the writer thread only counts, and is not timed). The
datagrams are sent BATCH at a time (not timed) and read as the collector reads them; once
DECODE_DATAGRAMS wait, they go to `FlowCollector.receive`, as `serve` hands them over.
Thread CPU (`time.thread_time`) per record of the receive thread, around each stage:
reading the socket, decoding, the session table's merge (the compiled loop and what
prepares its columns), evictions (the least recent found, removed and handed over), and
the whole receive path.

    python bench/receive.py [--exporters 4] [--passes 3] [--repeat 3] [--against REV]

`--against REV` (a git revision, e.g. `main`) measures that revision's code too, its
`src/` taken by `git archive`, each measurement in its own process, alternating, and prints
the ratio of the medians (theirs over ours: how many times less CPU a record costs here).
One JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
BATCH = 128  # datagrams sent before the socket is read (recvmmsg takes up to 128 a call)
STAGES = ("read", "decode", "merge", "evict", "receive")


def measure(exporters: int, passes: int, max_sessions: int) -> dict:
    """One measurement of the code on sys.path: CPU-µs per record of each stage."""
    # microseg first, from sys.path: bench/decode.py puts this checkout's src/ first, and
    # the package, once imported, keeps finding its modules where it was found
    from microseg.flows import collector as collector_module
    from microseg.flows.collector import CollectorSettings, FlowCollector, open_socket
    from microseg.flows.receive import reader
    from microseg.flows.sessions import SessionSettings

    sys.path[:0] = [str(HERE)]
    from decode import stream

    settings = CollectorSettings(sessions=SessionSettings(max_sessions=max_sessions))
    collector = FlowCollector(None, settings)
    spent = dict.fromkeys(STAGES, 0.0)
    clock = time.thread_time

    def timed(owner, name: str, stage: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*args, **kwargs):
            began = clock()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[stage] += clock() - began

        setattr(owner, name, wrapper)

    timed(collector.decoder, "decode", "decode")
    timed(collector.table, "_merged", "merge")
    timed(collector.table, "_evict_over_limit", "evict")
    receiver = open_socket("127.0.0.1", 0, 64 << 20)
    destination = receiver.getsockname()
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(exporters)]
    for sender in senders:
        sender.bind(("127.0.0.1", 0))
    messages = stream()
    lockstep = [(message, sender) for message in messages for sender in senders]
    taker = reader(receiver)
    records = 0
    queued: list = []
    for _ in range(passes):
        for first in range(0, len(lockstep), BATCH):
            for message, sender in lockstep[first : first + BATCH]:
                sender.sendto(message, destination)
            began = clock()
            taker.read(queued, collector_module.READ_BURST)
            spent["read"] += clock() - began
            if len(queued) >= collector_module.DECODE_DATAGRAMS:
                records += count_records(queued)
                began = clock()
                collector.receive(queued, destination=destination)
                spent["receive"] += clock() - began
                queued = []
    if queued:
        records += count_records(queued)
        began = clock()
        collector.receive(queued, destination=destination)
        spent["receive"] += clock() - began
    collector.writer.close()
    stats = collector.stats()
    if stats["records"] != records or stats["decode_errors"]:
        raise SystemExit(f"decoded {stats['records']} of {records} records sent")
    spent["receive"] += spent["read"]
    result = {f"{stage}_us": round(spent[stage] / records * 1e6, 4) for stage in STAGES}
    result.update(records=records, sessions_evicted=stats["sessions_evicted"])
    return result


def count_records(datagrams: list) -> int:
    """Flow records in the datagrams (the stream's are 30 a datagram, after its header, its
    first message's template set and each data set's header)."""
    from decode import RECORD

    total = 0
    for data, _ in datagrams:
        set_id, length = int.from_bytes(data[16:18], "big"), int.from_bytes(data[18:20], "big")
        at = 16 + (length if set_id == 2 else 0)
        total += (int.from_bytes(data[at + 2 : at + 4], "big") - 4) // RECORD.size
    return total


def run_measure(source: Path, exporters: int, passes: int, max_sessions: int) -> dict:
    """A measurement in a process of its own, on the code in `source` (a src/ directory)."""
    environment = {**os.environ, "PYTHONPATH": str(source)}
    command = [sys.executable, __file__, "--measure", str(source)]
    command += ["--exporters", str(exporters), "--passes", str(passes)]
    command += ["--max-sessions", str(max_sessions)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"measurement of {source} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exporters", type=int, default=4, help="exporters in lockstep")
    parser.add_argument("--passes", type=int, default=3, help="passes over the stream")
    parser.add_argument("--repeat", type=int, default=3, help="measurements of each code")
    parser.add_argument("--max-sessions", type=int, default=500_000)
    parser.add_argument("--against", metavar="REV", help="a git revision to compare with")
    parser.add_argument("--measure", metavar="SRC", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.measure:
        sys.path[:0] = [options.measure]
        print(json.dumps(measure(options.exporters, options.passes, options.max_sessions)))
        return
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="receive-bench-") as scratch:
        sources = {"microseg": ROOT / "src"}
        if options.against:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", options.against, "src", "examples"],
                capture_output=True,
                check=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", scratch], input=archive, check=True)
            sources["against"] = Path(scratch) / "src"
        runs: dict[str, list[dict]] = {name: [] for name in sources}
        for _ in range(options.repeat):
            for name, source in sources.items():
                runs[name].append(
                    run_measure(source, options.exporters, options.passes, options.max_sessions)
                )
    result: dict = {
        "bench": "receive",
        "exporters": options.exporters,
        "passes": options.passes,
        "max_sessions": options.max_sessions,
        "records": runs["microseg"][0]["records"],
        "sessions_evicted": runs["microseg"][0]["sessions_evicted"],
    }
    for name, measured in runs.items():
        for stage in STAGES:
            values = [run[f"{stage}_us"] for run in measured]
            result[f"{name}_{stage}_us"] = round(statistics.median(values), 4)
        result[f"{name}_receive_us_all"] = [run["receive_us"] for run in measured]
    if options.against:
        result["against"] = options.against
        result["ratio_receive"] = round(
            result["against_receive_us"] / result["microseg_receive_us"], 2
        )
    result["load_before"] = [round(value, 2) for value in load]
    result["load_after"] = [round(value, 2) for value in os.getloadavg()]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
