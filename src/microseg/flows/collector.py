"""The UDP collector: datagrams in, whole batches to the decoder, sessions out.

Transport only: `decoder.py` decodes, `sessions.py` merges, `flowstore.py` persists. Every
`batch_interval` seconds the collector takes what the kernel has queued on its sockets (up
to READ_BURST datagrams a socket); meanwhile the kernel queues new datagrams in a large
receive buffer. What was taken goes to the decoder as one batch once DECODE_DATAGRAMS have
been taken or the oldest has waited `decode_interval` seconds: a batch costs a fixed amount
of numpy calls whatever its size, so few large batches cost less per record than many small
ones. `workers.py` runs several of these processes on one port.
Every `flush_interval` seconds sessions past their timeouts go to the store as one atomic
segment; on stop (SIGINT/SIGTERM) every active session does. Sessions leave the table in
the receive loop, but are written by the segment writer's thread (`writer.py`), so the loop
goes on reading meanwhile; a stop waits until it has written everything. A SIGKILL loses
only the active table since the last flush and what waited for the writer; segments
already written are never touched.

Nothing in one batch stops the collector: an error is logged, counted, and the batch
dropped. When the store cannot take a segment (full disk, read-only), the sessions stay in
memory (at most `max_unwritten`, the oldest dropped past it, counted) and every flush tries
again; at exit what fits is written, in smaller segments if the disk is full.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from microseg.flows.batch import format_addresses
from microseg.flows.decoder import Datagram, FlowDecoder
from microseg.flows.flowstore import FlowStore
from microseg.flows.receive import reader
from microseg.flows.sessions import SessionSettings, SessionTable
from microseg.flows.writer import SegmentWriter
from microseg.model import MicrosegError

RECEIVE_BUFFER = 64 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux: root may exceed rmem_max
STATS_FILE = "collector-stats.json"
READ_BURST = 4096  # datagrams taken from a socket per batch before other work gets a turn
DECODE_DATAGRAMS = 1024  # datagrams taken before they are decoded, whatever their age
# mallopt(3) parameters (glibc malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 256 << 20
log = logging.getLogger("microseg.flows")


@dataclass(frozen=True)
class CollectorSettings:
    flush_interval: float = 5.0
    batch_interval: float = 0.02  # sockets are read this often
    decode_interval: float = 0.2  # what was read waits at most this long for the decoder
    receive_buffer: int = RECEIVE_BUFFER
    max_unwritten: int = 1_000_000  # sessions held while the store cannot take them
    sessions: SessionSettings = field(default_factory=SessionSettings)


@dataclass
class CollectorCounters:
    batch_errors: int = 0  # batches that failed (logged) and were dropped


class FlowCollector:
    """Decoder + session table + store, fed with batches of (datagram, source address)."""

    def __init__(self, store: FlowStore | None, settings: CollectorSettings | None = None):
        keep_freed_memory()  # before the session table reserves its rows
        warm_up_arrow()
        self.settings = settings or CollectorSettings()
        self.store = store.open() if store is not None else None
        self.decoder = FlowDecoder()
        self.table = SessionTable(self.settings.sessions)
        self.counters = CollectorCounters()
        # as many sessions may wait for the writer as the table holds
        self.writer = SegmentWriter(
            self.store, self.settings.max_unwritten, self.settings.sessions.max_sessions
        )
        self.started = time.time()

    def receive(
        self,
        datagrams: list[Datagram],
        now: float | None = None,
        destination: tuple | None = None,
    ) -> None:
        """Decode and merge a batch; `destination`: the address of the socket it came in on
        (with the exporter's, it names an IPFIX Transport Session)."""
        try:
            self.table.add(self.decoder.decode(datagrams, destination), now)
        except Exception:  # a bug must cost one batch, never the collector and its table
            self.counters.batch_errors += 1
            log.exception(
                "collector: a batch of %d datagrams failed and is dropped; collecting goes on",
                len(datagrams),
            )
        if self.table.evicted_rows:  # the table is full: the least recent sessions leave
            self.writer.put(self.table.take_evicted())

    def flush_expired(self, now: float | None = None) -> None:
        """Sessions past their timeouts to the writer (and what the store refused before)."""
        self.writer.put(self.table.expire(now))
        self._save_stats()

    def flush_all(self) -> int:
        """Every session to the store, waiting for the writer; returns the sessions stored
        from this call on (with those that waited for the writer)."""
        before = self.writer.sessions_written
        self.writer.put(self.table.flush(), final=True)
        self.writer.close()
        self._save_stats()
        return self.writer.sessions_written - before

    @property
    def sessions_written(self) -> int:
        return self.writer.sessions_written

    @property
    def last_write_error(self) -> str:
        return self.writer.last_write_error

    def stats(self) -> dict:
        data = self.decoder.stats()
        data.update(
            sessions_active=len(self.table),
            sessions_written=self.writer.sessions_written,
            segments_written=self.writer.segments_written,
            sessions_unwritten=self.writer.unwritten,
            max_sessions=self.settings.sessions.max_sessions,
            **asdict(self.table.counters),
            **asdict(self.counters),
            **asdict(self.writer.counters),
            uptime_seconds=round(time.time() - self.started, 3),
        )
        return data

    def _save_stats(self) -> None:
        """Counters next to the segments, for `microseg` and the API (atomic replace);
        best effort: a full or read-only store must not stop the collector."""
        if self.store is None:
            return
        path = stats_path(self.store)
        temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        try:
            temporary.write_text(json.dumps(self.stats(), indent=2, sort_keys=True) + "\n")
            os.replace(temporary, path)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)


def stats_path(store: FlowStore) -> Path:
    """`STORE/collector-stats.json`, or `STORE/collector-stats-<id>.json` for a collector
    with an id: collectors sharing a store keep their own counters."""
    if store.collector_id is None:
        return store.directory / STATS_FILE
    return store.directory / f"collector-stats-{store.collector_id}.json"


def parse_listen(
    listen: str, option: str = "--listen", example: str = "127.0.0.1:4739"
) -> tuple[str, int]:
    """HOST:PORT or [IPV6]:PORT (an empty HOST: every address)."""
    host, separator, port = listen.rpartition(":")
    given = repr(listen if len(listen) <= 60 else f"{listen[:57]}...")
    if not separator or not (port.isascii() and port.isdigit()):
        raise MicrosegError(f"{option} {given}: expected HOST:PORT, e.g. {example}")
    if len(port) > 5 or int(port) > 65535:
        shown = port if len(port) <= 12 else f"{port[:9]}..."
        raise MicrosegError(f"{option} {given}: port {shown} is not 0-65535")
    return host.strip("[]") or "0.0.0.0", int(port)


def open_socket(
    host: str, port: int, receive_buffer: int, reuse_port: bool = False
) -> socket.socket:
    """A non-blocking UDP socket bound to (host, port); `reuse_port`: one of a group of
    sockets on the same address among which the kernel spreads datagrams (workers.py)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, receive_buffer)
            break
        except OSError:
            continue
    try:
        if reuse_port:  # socket(7): "must be set on each socket (including the first
            # socket) prior to calling bind(2)"
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise MicrosegError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.setblocking(False)
    return sock


class StopRequest:
    """A request to stop the receive loop, which a signal handler may make: a flag. (A
    threading.Event's set() takes a lock, which a handler running in the thread that holds
    it, inside Event.wait, would wait for forever.)"""

    def __init__(self) -> None:
        self.made = False

    def set(self) -> None:
        self.made = True

    def is_set(self) -> bool:
        return self.made


def serve(
    collector: FlowCollector,
    sockets: list[socket.socket],
    stop: StopRequest,
    on_flush: Callable[[FlowCollector], None] | None = None,
) -> None:
    """Receive on every socket until `stop` is set, then decode what is queued and flush
    every session. The sockets feed one decoder (it tells IPFIX from NetFlow v9 by each
    datagram's version, and keeps templates per exporter, version and our socket) and one
    session table.

    Every `batch_interval` the sockets are read until the kernel has nothing queued (at most
    READ_BURST datagrams each; more waiting: the next batch starts at once). No wake-up per
    datagram: reading on readiness woke the loop for every few datagrams, and the wake-ups
    cost more than the datagrams (the kernel queues them in the receive buffer meanwhile).
    A plain loop that sleeps, not an asyncio one: on this project's VM an asyncio sleep cost
    ~170 µs of CPU a wake-up against ~40 for time.sleep, and at 50 wake-ups a second that
    was 0.15 CPU-s every 10 s for each idle worker. A stop is seen within `batch_interval`.
    What was read is decoded once DECODE_DATAGRAMS are waiting, their oldest is
    `decode_interval` old, or a flush is due."""
    settings = collector.settings
    next_flush = time.monotonic() + settings.flush_interval
    locals_ = [sock.getsockname() for sock in sockets]
    readers = [reader(sock) for sock in sockets]
    queued: list[list[Datagram]] = [[] for _ in sockets]
    oldest = 0.0  # when the oldest datagram waiting to be decoded was read
    try:
        while not stop.is_set():
            more = False
            for taker, datagrams in zip(readers, queued, strict=True):
                more |= taker.read(datagrams, READ_BURST)
            waiting = sum(len(datagrams) for datagrams in queued)
            now = time.monotonic()
            if waiting and not oldest:
                oldest = now
            flush_due = now >= next_flush
            if waiting and (
                flush_due or waiting >= DECODE_DATAGRAMS or now - oldest >= settings.decode_interval
            ):
                _decode(collector, queued, locals_)
                oldest = 0.0
            if flush_due:
                collector.flush_expired()
                next_flush = time.monotonic() + settings.flush_interval
                if on_flush:
                    on_flush(collector)
            if not more:  # a signal's handler runs, then the sleep goes on (PEP 475)
                time.sleep(settings.batch_interval)
    finally:
        for taker, datagrams in zip(readers, queued, strict=True):
            taker.read(datagrams)  # all of it: it was sent before we stopped
        _decode(collector, queued, locals_)
        collector.flush_all()


def _decode(collector: FlowCollector, queued: list[list[Datagram]], locals_: list) -> None:
    """Hand each socket's waiting datagrams to the collector, and empty the queues."""
    for index, datagrams in enumerate(queued):
        if datagrams:
            queued[index] = []
            collector.receive(datagrams, destination=locals_[index][:2])


def run(
    collector: FlowCollector,
    addresses: list[tuple[str, int]],
    on_ready: Callable[[list[tuple]], None] | None = None,
    on_flush: Callable[[FlowCollector], None] | None = None,
) -> None:
    """Run in the foreground on every (host, port) until SIGINT or SIGTERM."""
    sockets = open_sockets(addresses, collector.settings.receive_buffer)
    try:
        run_on(collector, sockets, on_ready, on_flush)
    finally:
        for sock in sockets:
            sock.close()


def run_on(
    collector: FlowCollector,
    sockets: list[socket.socket],
    on_ready: Callable[[list[tuple]], None] | None = None,
    on_flush: Callable[[FlowCollector], None] | None = None,
) -> None:
    """Receive on these open sockets until SIGINT or SIGTERM, then flush every session (in
    the main thread: Python runs signal handlers there)."""
    stop = StopRequest()
    previous = {
        signum: signal.signal(signum, lambda _signum, _frame: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        if on_ready:
            on_ready([sock.getsockname() for sock in sockets])
        serve(collector, sockets, stop, on_flush)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def keep_freed_memory() -> None:
    """Memory for a receive loop that allocates the same numpy temporaries every batch.

    glibc maps blocks of 128 KiB and more with mmap and unmaps them when freed, and returns
    the top of its heap to the kernel past 128 KiB, so each batch page-faulted every page of
    its temporaries in again, zeroed by the kernel (mallopt(3): M_MMAP_THRESHOLD,
    M_TRIM_THRESHOLD). Blocks under 32 MiB now come from the heap, and up to 256 MiB freed
    at its top stays mapped. And numpy asks for transparent huge pages for arrays of 4 MiB
    and more (madvise MADV_HUGEPAGE): where the kernel grants them only after compacting
    memory, as on this bench's VM, a first touch of the session table's rows cost 25 µs
    a page instead of 3.5 µs, and the receive loop stalled meanwhile. numpy asks when it
    allocates, so this runs before the collector's session table reserves its rows (it
    ran after, and a worker's first table paid the huge pages: 0.3 CPU-s per million
    records more, in one of two runs). Without glibc, the allocator is left as it is."""
    core = getattr(np, "_core", None)  # numpy 2 (numpy 1: np.core, same function)
    set_hugepage = getattr(
        getattr(core or np.core, "multiarray", None), "_set_madvise_hugepage", None
    )
    if set_hugepage is not None:
        set_hugepage(False)
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def warm_up_arrow() -> None:
    """Arrow sets up its compute functions at their first call: the first cast in a process
    took 0.7-1.2 s on this project's VM, and a collector's first batch formats its
    exporters' addresses with one, while the kernel queued datagrams (with 2 workers and
    nfcapd's 8 MiB of buffer between them, more than it could hold even at 62,500 records/s).
    Paid here, before the collector says it is listening."""
    format_addresses(np.zeros(1, np.uint64), np.full(1, 0xFFFF7F000001, np.uint64))


def open_sockets(addresses: list[tuple[str, int]], receive_buffer: int) -> list[socket.socket]:
    """One socket per address, or none: a second that cannot be bound closes the first."""
    sockets: list[socket.socket] = []
    try:
        for host, port in addresses:
            sockets.append(open_socket(host, port, receive_buffer))
    except MicrosegError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class BackgroundCollector:
    """A collector on its own thread (the demo and in-process tests)."""

    def __init__(self, collector: FlowCollector, host: str = "127.0.0.1", port: int = 0):
        self.collector = collector
        self._sock = open_socket(host, port, collector.settings.receive_buffer)
        self.address: tuple = self._sock.getsockname()
        self._stop = StopRequest()
        self._thread = threading.Thread(
            target=serve, args=(collector, [self._sock], self._stop), name="flow-collector"
        )
        self._thread.daemon = True

    def __enter__(self) -> BackgroundCollector:
        self._thread.start()
        return self

    def wait_for_datagrams(self, count: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.collector.decoder.counters.datagrams >= count:
                return True
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()

    def __exit__(self, *_exc) -> None:
        self.stop()
