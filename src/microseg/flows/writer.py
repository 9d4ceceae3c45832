"""The collector's segment writer: sessions that left the table go to the store on a thread
of their own, off the receive loop.

Turning sessions initiator first and writing them as a Parquet segment (sort, zstd, fsync,
rename) took the receive loop 0.3-1.2 s for the 100,000 sessions a full table evicts at
once, while the kernel dropped what the exporters sent meanwhile. Here the receive loop
hands the sessions over as they stood in the table (`LeavingSessions`, a copy of their
rows) and goes on; this thread orients and writes them, in the order given, one segment
per hand-over. Most of that work runs without the GIL (the compiled orientation,
orientation.py, and Arrow's Parquet writer), so it takes little from the receive loop
beside it.

Memory stays bounded: at most `max_waiting` sessions wait for this thread (a hand-over
past that waits until it has caught up; the receive loop then falls behind and the kernel
drops datagrams, counted). When the store cannot take a segment (full disk, read-only),
its sessions stay in memory, at most `max_unwritten` (the oldest are dropped past it,
counted), and go with the next write; `close` writes everything handed over (at exit in
smaller segments if the disk is full, see FlowCollector) and ends the thread.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections import deque
from dataclasses import dataclass

import pyarrow as pa

from microseg.flows.flowstore import FlowStore
from microseg.flows.sessions import LeavingSessions, sort_sessions

SPLIT_PIECES = 64  # at exit on a full disk, segments down to 1/64 of what is left are tried
log = logging.getLogger("microseg.flows")


@dataclass
class WriterCounters:
    write_failures: int = 0  # segment writes the store refused (full, read-only...)
    sessions_dropped: int = 0  # unwritten sessions past max_unwritten (oldest first)


class SegmentWriter:
    """Writes LeavingSessions to `store` (None: counts them) on its own thread, started at
    the first `put` after a `close`. Only the thread that calls `put` calls `close`."""

    def __init__(self, store: FlowStore | None, max_unwritten: int, max_waiting: int):
        if store is not None:  # compiled now, not on the thread while the receive loop runs
            # (imported here: numba loads with it, and commands that import the collector
            # module without collecting, such as the monitor's, do not need it)
            from microseg.flows.orientation import warm_up

            warm_up()
        self.store = store
        self.max_unwritten = max_unwritten
        self.max_waiting = max_waiting
        self.counters = WriterCounters()
        self.sessions_written = 0
        self.segments_written = 0
        self.last_write_error = ""
        self.unwritten = 0  # sessions the store refused, held in memory
        self._unwritten: list[pa.Table] = []
        self._jobs: deque[tuple[LeavingSessions, bool]] = deque()
        self._waiting = 0  # sessions handed over and not written (or kept) yet
        self._changed = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def put(self, sessions: LeavingSessions, *, final: bool = False) -> None:
        """Hand sessions over to be written as one segment (with what the store refused
        before); waits while `max_waiting` sessions are waiting already. `final`: the last
        write, which on a full disk tries smaller segments. With nothing to write and
        nothing refused before, nothing happens."""
        count = sessions.num_rows
        if not count and not final and not self.unwritten:
            return
        with self._changed:
            while self._waiting and self._waiting + count > self.max_waiting:
                self._changed.wait()
            self._jobs.append((sessions, final))
            self._waiting += count
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="microseg-segment-writer", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()

    @property
    def waiting(self) -> int:
        """Sessions handed over and not yet written or kept."""
        return self._waiting

    def drain(self) -> None:
        """Wait until everything handed over is written (or kept, the store refusing)."""
        with self._changed:
            while self._waiting or self._jobs:
                self._changed.wait()

    def close(self) -> None:
        """Write everything handed over, then end the thread."""
        thread = self._thread
        if thread is None:
            return
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        thread.join()
        self._thread, self._closing = None, False

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._jobs and not self._closing:
                    self._changed.wait()
                if not self._jobs:
                    return
                sessions, final = self._jobs[0]
            try:
                self._write(sessions, final)
            except Exception as error:  # a bug: the thread lives on, or put and drain would
                # wait for it forever; what it held is counted as lost, not retried
                held = sum(table.num_rows for table in self._unwritten)
                self._unwritten, self.unwritten = [], 0
                self._lose(held or sessions.num_rows, error)
            finally:
                with self._changed:
                    self._jobs.popleft()
                    self._waiting -= sessions.num_rows
                    self._changed.notify_all()

    def _write(self, sessions: LeavingSessions, final: bool) -> None:
        """Store these sessions and those earlier writes could not."""
        if self.store is None:  # nowhere to write: counted as written
            self.sessions_written += sessions.num_rows
            return
        if sessions.num_rows:
            try:
                self._unwritten.append(sessions.oriented())
            except Exception as error:  # a bug: said loudly, counted, never the thread's end
                self._lose(sessions.num_rows, error)
        if not self._unwritten:
            return
        # each table here is in sort_sessions' order (oriented, or a slice of one in order)
        if len(self._unwritten) == 1:
            pending = self._unwritten[0]
        else:
            pending = sort_sessions(pa.concat_tables(self._unwritten))
        self._unwritten = []
        self._store(self.store, pending, final)
        self.unwritten = sum(table.num_rows for table in self._unwritten)

    def _lose(self, count: int, error: Exception) -> None:
        self.counters.write_failures += 1
        self.counters.sessions_dropped += count
        self.last_write_error = describe(error)
        log.error(
            "collector: %d sessions could not be made into a segment and are lost: %s",
            count,
            self.last_write_error,
            exc_info=error,
        )

    def _store(self, store: FlowStore, sessions: pa.Table, final: bool) -> None:
        """Write `sessions`, in sort_sessions' order (so is every slice of them)."""
        pieces = [sessions]
        smallest = max(1024, sessions.num_rows // SPLIT_PIECES)
        while pieces:
            piece = pieces.pop(0)
            try:
                store.write(piece, in_order=True)
            except Exception as error:  # OSError mostly; the sessions must survive any
                self.counters.write_failures += 1
                self.last_write_error = describe(error)
                full = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
                if final and full and piece.num_rows > smallest:  # smaller segments may fit
                    half = piece.num_rows // 2
                    pieces[:0] = [piece.slice(0, half), piece.slice(half)]
                    continue
                self._unwritten = [piece, *pieces]
                self._keep_within_bound()
                log.error(
                    "collector: cannot write %d sessions to %s: %s; %s",
                    sum(table.num_rows for table in self._unwritten),
                    store.directory,
                    self.last_write_error,
                    "they are lost at exit"
                    if final
                    else "kept in memory, written at the next flush that succeeds",
                )
                if not isinstance(error, OSError):
                    log.error("collector: the write failed with", exc_info=error)
                return
            self.segments_written += 1
            self.sessions_written += piece.num_rows

    def _keep_within_bound(self) -> None:
        excess = sum(table.num_rows for table in self._unwritten) - self.max_unwritten
        if excess <= 0:
            return
        pending = pa.concat_tables(self._unwritten)
        self._unwritten = [pending.slice(excess)]
        self.counters.sessions_dropped += excess
        log.error(
            "collector: %d oldest unwritten sessions dropped: at most %d are kept in memory "
            "while the store cannot take them (--max-unwritten)",
            excess,
            self.max_unwritten,
        )


def describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
