"""The UDP collector: datagrams in, whole batches to the decoder, sessions out.

Transport only: `decoder.py` decodes, `sessions.py` merges, `flowstore.py` persists. A
thread of its own (`SocketDrain`) takes what the kernel has queued on the sockets into a
bounded queue, while the receive loop decodes, merges and evicts: the kernel's receive
buffer is emptied every few milliseconds whatever the loop is doing. The loop takes the
queue to the decoder as one batch once DECODE_DATAGRAMS wait or the oldest has waited
`decode_interval` seconds: a batch costs a fixed amount of numpy calls whatever its size,
so few large batches cost less per record than many small ones. `workers.py` runs several
of these processes on one port.
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
import importlib
import json
import logging
import mmap
import os
import platform
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from microseg.flows import receive
from microseg.flows.batch import format_addresses
from microseg.flows.decoder import Datagram, FlowDecoder
from microseg.flows.flowstore import FlowStore
from microseg.flows.receive import BatchReader, reader
from microseg.flows.sessions import SessionSettings, SessionTable
from microseg.flows.writer import SegmentWriter
from microseg.model import MicrosegError

RECEIVE_BUFFER = 64 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux: root may exceed rmem_max
STATS_FILE = "collector-stats.json"
READ_BURST = 256  # datagrams taken from a socket per read, before the queue's bound is checked
DECODE_DATAGRAMS = 1024  # datagrams taken before they are decoded, whatever their age
RECEIVE_QUEUE = 64 << 20  # bytes of datagrams read and not yet decoded, at most
READ_INTERVAL = 0.005  # while datagrams come, the sockets are read this often
POLL_TIMEOUT_MS = 100  # an idle reader thread wakes up this often to see a stop
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
    receive_queue: int = RECEIVE_QUEUE  # bytes read off the sockets, waiting for the decoder
    max_unwritten: int = 1_000_000  # sessions held while the store cannot take them
    sessions: SessionSettings = field(default_factory=SessionSettings)


@dataclass
class CollectorCounters:
    batch_errors: int = 0  # batches that failed (logged) and were dropped
    receive_queue_peak_bytes: int = 0  # the most the receive queue held
    receive_queue_full: int = 0  # times the queue was full and reading paused (the
    # kernel's buffer then fills, and past it the kernel drops datagrams)


class FlowCollector:
    """Decoder + session table + store, fed with batches of (datagram, source address)."""

    def __init__(self, store: FlowStore | None, settings: CollectorSettings | None = None):
        keep_freed_memory()  # before the session table reserves its rows
        warm_up_arrow()
        if compiled_drain_possible():  # compiled (or loaded) before anything is received
            importlib.import_module("microseg.flows.drain_loops").warm_up()
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


class SocketDrain:
    """Takes what the kernel queued on the sockets into a bounded queue, on a thread of its
    own, for the receive loop to decode.

    A datagram waits in the socket's receive buffer until it is read, and past the buffer's
    size the kernel drops it. When the receive loop read the sockets itself, between its
    batches, everything it did held the reading back: an eviction of 100,000 sessions, or
    time off the CPU while the segment writers and the exporters ran, held it 60-100 ms at
    750 k records/s over 2 workers (this project's bench, 2 cores), about what a worker's
    4 MiB of buffer lasts, and datagrams were lost with the workers' CPU half idle. This
    thread reads every READ_INTERVAL while datagrams come, so the kernel's buffer stays
    nearly empty, and what was read waits in memory instead: at most `limit` bytes and one
    read (READ_BURST datagrams a socket), past which reading pauses (counted) and the
    kernel's buffer takes the rest, then drops, as before. It waits for datagrams in poll(2), and reads with recvmmsg(2) through ctypes:
    both release the GIL, and the Python around them is a few steps a datagram."""

    def __init__(
        self,
        sockets: list[socket.socket],
        limit: int,
        counters: CollectorCounters,
        batch: int = DECODE_DATAGRAMS,
    ):
        self.readers = [reader(sock) for sock in sockets]
        self.limit = limit
        self.batch = batch  # queued datagrams that wake the receive loop
        self.counters = counters
        self._queued: list[list[Datagram]] = [[] for _ in sockets]
        self._count = 0  # datagrams queued
        self._bytes = 0
        self._oldest = 0.0  # when the oldest queued datagram was read (monotonic)
        self._changed = threading.Condition()
        self._stopping = False
        self._failure: BaseException | None = None
        self._poller = select.poll()
        for sock in sockets:
            self._poller.register(sock, select.POLLIN)
        self._thread = threading.Thread(target=self._run, name="microseg-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float, max_age: float) -> list[list[Datagram]] | None:
        """Wait up to `timeout` seconds for `batch` datagrams; then take the queue (each
        socket's datagrams in the order read) if it holds that many or its oldest has
        waited `max_age`, else None. Raises what ended the reader thread, if anything."""
        with self._changed:
            if self._count < self.batch and self._failure is None:
                self._changed.wait(timeout)
            if self._failure is not None:
                raise self._failure
            if not self._count or (
                self._count < self.batch and time.monotonic() - self._oldest < max_age
            ):
                return None
            return self._take()

    def take(self) -> list[list[Datagram]]:
        """Whatever is queued now."""
        with self._changed:
            return self._take()

    def stop(self) -> list[list[Datagram]]:
        """End the thread, then read everything the kernel still holds (it was sent before
        the stop); returns it with what was queued."""
        with self._changed:
            self._stopping = True
        self._thread.join()
        return read_the_rest(self.readers, self.take(), self._failure)

    def _take(self) -> list[list[Datagram]]:
        queued, self._queued = self._queued, [[] for _ in self._queued]
        self._count = self._bytes = 0
        return queued

    def _run(self) -> None:
        try:
            self._read_until_stopped()
        except BaseException as error:  # a bug: the receive loop raises it, and stops
            with self._changed:
                self._failure = error
                self._changed.notify_all()

    def _read_until_stopped(self) -> None:
        fresh: list[list[Datagram]] = [[] for _ in self.readers]
        paused = False
        while not self._stopping:
            if self._bytes >= self.limit:  # read without the lock: only a hint
                if not paused:
                    paused = True
                    self.counters.receive_queue_full += 1
                time.sleep(READ_INTERVAL)
                continue
            paused = False
            if not self._poller.poll(POLL_TIMEOUT_MS):
                continue
            more = False
            for taker, datagrams in zip(self.readers, fresh, strict=True):
                more |= taker.read(datagrams, READ_BURST)
            count = sum(len(datagrams) for datagrams in fresh)
            if count:
                size = sum(len(data) for datagrams in fresh for data, _ in datagrams)
                with self._changed:
                    if not self._count:
                        self._oldest = time.monotonic()
                    for queued, datagrams in zip(self._queued, fresh, strict=True):
                        queued.extend(datagrams)
                    self._count += count
                    self._bytes += size
                    if self._bytes > self.counters.receive_queue_peak_bytes:
                        self.counters.receive_queue_peak_bytes = self._bytes
                    if self._count >= self.batch:
                        self._changed.notify_all()
                fresh = [[] for _ in self.readers]
            if not more:  # let datagrams gather: a read takes many at once
                time.sleep(READ_INTERVAL)


class CompiledDrain:
    """SocketDrain's work done by compiled code that never takes the GIL (drain_loops.py):
    the sockets are read every READ_INTERVAL while datagrams come even while the receive
    loop's thread holds the GIL and is off the CPU, or inside a long call that keeps it
    (a Python reader thread then waits, and at 1.6-1.8 M records/s on this project's 2
    cores its reads were 50-115 ms apart, longer than a worker's 4 MiB of buffer lasts).

    The reader fills one of two halves; `take` makes the other half the one filled, under
    the mutex they share, and turns the full one into (bytes, source address) pairs. Each
    half holds `limit` bytes and one read past it, reserved as memory the kernel maps only
    when written. Used where recvmmsg(2) is (Linux, glibc); else SocketDrain."""

    def __init__(
        self,
        sockets: list[socket.socket],
        limit: int,
        counters: CollectorCounters,
        batch: int = DECODE_DATAGRAMS,
    ):
        from microseg.flows import drain_loops as loops

        self._loops = loops
        self.readers = [reader(sock) for sock in sockets]  # the last read, at stop
        self.counters = counters
        self.batch = batch
        first = self.readers[0]
        assert isinstance(first, BatchReader)  # socket_drain checked for recvmmsg
        self._reader = first  # its buffers serve every socket; its addresses too
        view = self._reader.compiled_view()
        calls = view["fields"].shape[0]
        self._most = max(DECODE_DATAGRAMS, limit // 256)  # datagrams a half holds
        self._half = limit + calls * view["slot"]  # one read past the bound
        rows = self._most + calls
        self._data_map = _reserve(2 * self._half)
        self._data = np.frombuffer(self._data_map, np.uint8).reshape(2, self._half)
        self._meta = np.frombuffer(_reserve(2 * rows * loops.META_FIELDS * 8), np.int64).reshape(
            2, rows, loops.META_FIELDS
        )
        self._sources = np.frombuffer(_reserve(2 * rows * loops.SOURCE), np.uint8).reshape(
            2, rows, loops.SOURCE
        )
        self._state = np.zeros(loops.STATE_SLOTS, np.int64)
        self._mutex = np.zeros(64, np.uint8)  # glibc's PTHREAD_MUTEX_INITIALIZER is zeros
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._stop = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._arguments = (
            loops.poll_table([sock.fileno() for sock in sockets] + [self._stop]),
            np.array([sock.fileno() for sock in sockets], np.int64),
            view["messages"],
            view["fields"],
            view["namelen_field"],
            view["length_field"],
            view["slot"],
            view["scratch"],
            view["names"],
            view["name_room"],
            self._data,
            self._meta,
            self._sources,
            self._state,
            self._mutex,
            self._wake,
            np.ones(1, np.uint64),
            np.zeros(2, np.int64),
            limit,
            self._most,
            READ_BURST,
            batch,
            round(READ_INTERVAL * 1e6),
            POLL_TIMEOUT_MS,
        )
        self._waker = select.poll()
        self._waker.register(self._wake, select.POLLIN)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="microseg-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float, max_age: float) -> list[list[Datagram]] | None:
        """As SocketDrain.wait."""
        loops, state = self._loops, self._state
        half = state[loops.ACTIVE]
        if (
            state[loops.COUNT + half] < self.batch
            and self._failure is None
            and self._waker.poll(max(0, round(timeout * 1000)))
        ):
            with contextlib.suppress(BlockingIOError):  # another wait took the wake-up
                os.eventfd_read(self._wake)
        if self._failure is not None:
            raise self._failure
        half = state[loops.ACTIVE]  # read without the mutex: only a hint
        count = state[loops.COUNT + half]
        age = time.monotonic() - state[loops.OLDEST] / 1e9
        if not count or (count < self.batch and age < max_age):
            self._copy_counters()
            return None
        return self.take()

    def take(self) -> list[list[Datagram]]:
        """What the reader has read: the half it filled, turned into datagrams."""
        loops, state = self._loops, self._state
        mutex = self._mutex.ctypes.data
        loops.mutex_lock(mutex)  # lets the GIL go while it waits
        half = int(state[loops.ACTIVE])
        count = int(state[loops.COUNT + half])
        if count:
            state[loops.ACTIVE] = 1 - half
            state[loops.COUNT + 1 - half] = state[loops.BYTES + 1 - half] = 0
            state[loops.WOKEN] = 0
        loops.mutex_unlock(mutex)
        self._copy_counters()
        queued: list[list[Datagram]] = [[] for _ in self.readers]
        if not count:
            return queued
        meta = self._meta[half, :count]
        offsets = meta[:, self._loops.OFFSET].tolist()
        lengths = meta[:, self._loops.LENGTH].tolist()
        sockets = meta[:, self._loops.SOCKET].tolist()
        name_lengths = meta[:, self._loops.NAME_LENGTH].tolist()
        names = self._sources[half, :count].tobytes()
        data, base = self._data_map, half * self._half
        source, room = self._reader.source, self._loops.SOURCE
        for index in range(count):
            at = base + offsets[index]
            name_at = index * room
            queued[sockets[index]].append(
                (
                    data[at : at + lengths[index]],
                    source(names[name_at : name_at + name_lengths[index]]),
                )
            )
        return queued

    def stop(self) -> list[list[Datagram]]:
        """As SocketDrain.stop."""
        os.eventfd_write(self._stop, 1)
        self._thread.join()
        for descriptor in (self._wake, self._stop):
            os.close(descriptor)
        return read_the_rest(self.readers, self.take(), self._failure)

    def _copy_counters(self) -> None:
        """The reader's pause count and queue peak into the collector's counters."""
        self.counters.receive_queue_full = int(self._state[self._loops.FULL])
        self.counters.receive_queue_peak_bytes = int(self._state[self._loops.PEAK])

    def _run(self) -> None:
        try:
            self._loops.drain(*self._arguments)
        except BaseException as error:  # a bug: the receive loop raises it, and stops
            self._failure = error
            os.eventfd_write(self._wake, 1)


def read_the_rest(
    readers: list, queued: list[list[Datagram]], failure: BaseException | None
) -> list[list[Datagram]]:
    """What a stopped drain had queued, then what the kernel still holds on each socket (it
    was sent before the stop); a reader that failed is not asked again."""
    if failure is None:
        for taker, datagrams in zip(readers, queued, strict=True):
            taker.read(datagrams)
    return queued


def compiled_drain_possible() -> bool:
    return receive.RECVMMSG is not None and hasattr(os, "eventfd")


def _reserve(size: int) -> mmap.mmap:
    """Anonymous private memory the kernel maps only as it is written, not counted against
    its overcommit heuristic (MAP_NORESERVE, mmap(2): a large --receive-queue reserves
    address space, not memory; 0x4000 on x86-64 and arm64, the flag Python 3.11 lacks)."""
    no_reserve = getattr(mmap, "MAP_NORESERVE", 0)
    if not no_reserve and platform.machine() in ("x86_64", "aarch64"):
        no_reserve = 0x4000
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | no_reserve)


def socket_drain(
    sockets: list[socket.socket], limit: int, counters: CollectorCounters
) -> SocketDrain | CompiledDrain:
    """The compiled reader where recvmmsg(2) and eventfds are, and its halves can be
    reserved; a Python thread elsewhere."""
    if compiled_drain_possible():
        try:
            return CompiledDrain(sockets, limit, counters)
        except OSError as error:  # the address space refused (ulimit -v, strict overcommit)
            log.warning(
                "collector: cannot reserve %d bytes for the compiled reader's queue (%s); "
                "a Python thread reads the sockets instead",
                2 * limit,
                error.strerror or error,
            )
    return SocketDrain(sockets, limit, counters)


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

    The sockets are read by a SocketDrain's thread. This loop takes its queue to the
    decoder once DECODE_DATAGRAMS are waiting, their oldest is `decode_interval` old, or
    a flush is due; it waits for that at most `batch_interval` at a time, so a stop is
    seen within it. A plain loop that waits, not an asyncio one: on this project's VM an
    asyncio sleep cost ~170 µs of CPU a wake-up against ~40 for time.sleep, and at 50
    wake-ups a second that was 0.15 CPU-s every 10 s for each idle worker."""
    settings = collector.settings
    next_flush = time.monotonic() + settings.flush_interval
    locals_ = [sock.getsockname() for sock in sockets]
    drain = socket_drain(sockets, settings.receive_queue, collector.counters)
    drain.start()
    try:
        while not stop.is_set():
            now = time.monotonic()
            flush_due = now >= next_flush
            if flush_due:
                _decode(collector, drain.take(), locals_)
                collector.flush_expired()
                next_flush = time.monotonic() + settings.flush_interval
                if on_flush:
                    on_flush(collector)
                continue
            wait = min(settings.batch_interval, next_flush - now)
            queued = drain.wait(wait, settings.decode_interval)
            if queued is not None:
                _decode(collector, queued, locals_)
    finally:
        _decode(collector, drain.stop(), locals_)
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
