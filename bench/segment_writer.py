"""Segment writer benchmark: CPU per evicted session to turn it initiator first and write it
as a Parquet segment, the collector's compiled path against the numpy/Arrow path it
replaced, in one run, on the sessions bench/collector.py's workers evict.

The sessions: bench/decode.py's stream (600,000 sessions, softflowd's template) decoded
and merged into one worker's session table (500,000 of the default --max-sessions with 2
workers) twice over, as the bench's exporters replay it; every eviction (~120,000 of the
least recently updated sessions) is kept, as the receive loop hands it to the writer.
Each eviction is then oriented and written (fsync and rename included) both ways in turn,
REPEAT times, and the least CPU time (this process's, all threads) of each step counts
(with the collector's allocator settings, collector.keep_freed_memory):

  * reference: sessions.orient_parts (numpy selections, Arrow's address formatting and sort),
    then what FlowStore.write did before: sort_sessions again, Parquet with zstd and
    dictionary encoding of every column;
  * compiled: LeavingSessions.oriented (orientation.py) and FlowStore.write(in_order=True):
    no second sort, dictionary encoding only where values repeat (DICTIONARY_COLUMNS).

Both give the same table (checked: the bench stops with exit 1 otherwise). Prints one JSON
line: microseconds of CPU per session for each step and path, segment bytes per session,
the ratio, and the load average.

    python bench/segment_writer.py [--evictions N] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(Path(__file__).resolve().parent)]

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from decode import stream  # noqa: E402
from microseg.flows.collector import keep_freed_memory  # noqa: E402
from microseg.flows.decoder import FlowDecoder  # noqa: E402
from microseg.flows.flowstore import FlowStore  # noqa: E402
from microseg.flows.sessions import (  # noqa: E402
    SESSION_SCHEMA,
    LeavingSessions,
    SessionSettings,
    SessionTable,
    orient_parts,
    sort_sessions,
)

WORKER_SESSIONS = 500_000  # a worker's share of the default --max-sessions, 2 workers
BATCH = 1024  # datagrams a receive batch
PASSES = 2


def evictions(count: int) -> list[LeavingSessions]:
    """The first `count` evictions of a worker's table fed the bench's stream."""
    messages = stream()
    decoder = FlowDecoder()
    table = SessionTable(SessionSettings(max_sessions=WORKER_SESSIONS))
    evicted: list[LeavingSessions] = []
    now = 1_000.0
    for _ in range(PASSES):
        for first in range(0, len(messages), BATCH):
            datagrams = [(message, "10.255.1.11") for message in messages[first : first + BATCH]]
            table.add(decoder.decode(datagrams), now=now)
            now += 0.02
            if table.evicted_rows:
                evicted.append(table.take_evicted())
                if len(evicted) == count:
                    return evicted
    raise SystemExit(f"the stream made {len(evicted)} evictions, not {count}")


def cpu(step: Callable[[], object]) -> tuple[object, float]:
    began = time.process_time()
    result = step()
    return result, time.process_time() - began


def write_before(sessions: pa.Table, directory: Path) -> Path:
    """FlowStore.write before this change: sorted again, every column dictionary-encoded."""
    table = sort_sessions(sessions.cast(SESSION_SCHEMA))
    path = directory / "reference.parquet"
    pq.write_table(table, path, compression="zstd")
    with open(path, "rb") as written:
        os.fsync(written.fileno())
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evictions", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    load_before = os.getloadavg()
    keep_freed_memory()  # the collector's allocator settings, for both paths
    leaving = evictions(options.evictions)
    best = {
        key: [float("inf")] * len(leaving) for key in ("ref_orient", "ref_write", "orient", "write")
    }
    sizes = {"reference": 0, "compiled": 0}
    with tempfile.TemporaryDirectory() as directory:
        store = FlowStore(Path(directory) / "store").open()
        LeavingSessions(leaving[0].parts).oriented()  # numba loads its compiled loops
        for _ in range(options.repeat):
            for index, sessions in enumerate(leaving):
                reference, seconds = cpu(lambda s=sessions: orient_parts(s.parts))
                best["ref_orient"][index] = min(best["ref_orient"][index], seconds)
                path, seconds = cpu(lambda r=reference: write_before(r, Path(directory)))
                best["ref_write"][index] = min(best["ref_write"][index], seconds)
                sizes["reference"] = Path(path).stat().st_size
                oriented, seconds = cpu(sessions.oriented)
                best["orient"][index] = min(best["orient"][index], seconds)
                if not oriented.equals(reference):
                    raise SystemExit("the compiled orientation differs from the reference")
                path, seconds = cpu(lambda o=oriented: store.write(o, in_order=True))
                best["write"][index] = min(best["write"][index], seconds)
                sizes["compiled"] = Path(path).stat().st_size
                Path(path).unlink()
    sessions_count = sum(sessions.num_rows for sessions in leaving)
    last_rows = leaving[-1].num_rows

    def per_session(key: str) -> float:
        return round(sum(best[key]) / sessions_count * 1e6, 3)

    before = per_session("ref_orient") + per_session("ref_write")
    after = per_session("orient") + per_session("write")
    print(
        json.dumps(
            {
                "bench": "segment_writer",
                "evictions": len(leaving),
                "sessions": sessions_count,
                "repeat": options.repeat,
                "reference_orient_us": per_session("ref_orient"),
                "reference_write_us": per_session("ref_write"),
                "reference_us": round(before, 3),
                "compiled_orient_us": per_session("orient"),
                "compiled_write_us": per_session("write"),
                "compiled_us": round(after, 3),
                "ratio": round(before / after, 2),
                "reference_segment_bytes_per_session": round(sizes["reference"] / last_rows, 1),
                "compiled_segment_bytes_per_session": round(sizes["compiled"] / last_rows, 1),
                "load_before": [round(value, 2) for value in load_before],
                "load_after": [round(value, 2) for value in os.getloadavg()],
            }
        )
    )


if __name__ == "__main__":
    main()
