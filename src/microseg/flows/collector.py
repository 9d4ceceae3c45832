"""The UDP collector: datagrams in (asyncio), whole batches to the decoder, sessions out.

Transport only: `decoder.py` decodes, `sessions.py` merges, `flowstore.py` persists. The
receive callback only appends to a list; a timer hands the list to the decoder every
`batch_interval` seconds, while the kernel queues new datagrams in a large receive buffer.
Every `flush_interval` seconds sessions past their timeouts go to the store as one atomic
segment; on stop (SIGINT/SIGTERM) every active session does. A SIGKILL loses only the
active table since the last flush; segments already written are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from microseg.flows.decoder import FlowDecoder
from microseg.flows.flowstore import FlowStore
from microseg.flows.sessions import SessionSettings, SessionTable
from microseg.model import MicrosegError

RECEIVE_BUFFER = 64 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux: root may exceed rmem_max
STATS_FILE = "collector-stats.json"


@dataclass(frozen=True)
class CollectorSettings:
    flush_interval: float = 5.0
    batch_interval: float = 0.02
    receive_buffer: int = RECEIVE_BUFFER
    sessions: SessionSettings = field(default_factory=SessionSettings)


class FlowCollector:
    """Decoder + session table + store, fed with batches of (datagram, exporter)."""

    def __init__(self, store: FlowStore | None, settings: CollectorSettings | None = None):
        self.settings = settings or CollectorSettings()
        self.store = store.open() if store is not None else None
        self.decoder = FlowDecoder()
        self.table = SessionTable(self.settings.sessions)
        self.sessions_written = 0
        self.segments_written = 0
        self.started = time.time()

    def receive(self, datagrams: list[tuple[bytes, str]], now: float | None = None) -> None:
        self.table.add(self.decoder.decode(datagrams), now)

    def flush_expired(self, now: float | None = None) -> int:
        return self._write(self.table.expire(now))

    def flush_all(self) -> int:
        return self._write(self.table.flush())

    def _write(self, sessions) -> int:
        if self.store is not None and sessions.num_rows:
            self.store.write(sessions)
            self.segments_written += 1
        self.sessions_written += sessions.num_rows
        if self.store is not None:
            self._save_stats()
        return sessions.num_rows

    def stats(self) -> dict:
        data = self.decoder.stats()
        data.update(
            sessions_active=len(self.table),
            sessions_written=self.sessions_written,
            segments_written=self.segments_written,
            uptime_seconds=round(time.time() - self.started, 3),
        )
        return data

    def _save_stats(self) -> None:
        """Counters next to the segments, for `microseg` and the API (atomic replace)."""
        path = self.store.directory / STATS_FILE
        temporary = path.with_name(f".tmp-{os.getpid()}-{STATS_FILE}")
        temporary.write_text(json.dumps(self.stats(), indent=2, sort_keys=True) + "\n")
        os.replace(temporary, path)


def parse_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT or [IPV6]:PORT."""
    host, separator, port = listen.rpartition(":")
    digits = port.isascii() and port.isdigit() and len(port) <= 5
    if not separator or not digits or not 0 <= int(port) <= 65535:
        raise MicrosegError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:4739")
    return host.strip("[]") or "0.0.0.0", int(port)


def open_socket(host: str, port: int, receive_buffer: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, receive_buffer)
            break
        except OSError:
            continue
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise MicrosegError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.setblocking(False)
    return sock


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self):
        self.datagrams: list[tuple[bytes, str]] = []

    def datagram_received(self, data: bytes, address) -> None:
        self.datagrams.append((data, address[0]))


async def serve(
    collector: FlowCollector,
    sock: socket.socket,
    stop: asyncio.Event,
    on_flush: Callable[[FlowCollector], None] | None = None,
) -> None:
    """Receive until `stop` is set, then decode what is queued and flush every session."""
    loop = asyncio.get_running_loop()
    transport, receiver = await loop.create_datagram_endpoint(_Receiver, sock=sock)
    next_flush = time.monotonic() + collector.settings.flush_interval
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), collector.settings.batch_interval)
            if receiver.datagrams:
                batch, receiver.datagrams = receiver.datagrams, []
                collector.receive(batch)
            if time.monotonic() >= next_flush:
                collector.flush_expired()
                next_flush = time.monotonic() + collector.settings.flush_interval
                if on_flush:
                    on_flush(collector)
    finally:
        _drain(sock, receiver.datagrams)
        transport.close()
        if receiver.datagrams:
            collector.receive(receiver.datagrams)
        collector.flush_all()


def _drain(sock: socket.socket, datagrams: list) -> None:
    """On stop, take what the kernel already queued: it was sent before we stopped."""
    while True:
        try:
            data, address = sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError, OSError):
            return
        datagrams.append((data, address[0]))


def run(
    collector: FlowCollector,
    host: str,
    port: int,
    on_ready: Callable[[tuple], None] | None = None,
    on_flush: Callable[[FlowCollector], None] | None = None,
) -> None:
    """Run in the foreground until SIGINT or SIGTERM."""
    sock = open_socket(host, port, collector.settings.receive_buffer)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if on_ready:
            on_ready(sock.getsockname())
        await serve(collector, sock, stop, on_flush)

    asyncio.run(main())


class BackgroundCollector:
    """A collector on its own thread and event loop (the demo and in-process tests)."""

    def __init__(self, collector: FlowCollector, host: str = "127.0.0.1", port: int = 0):
        self.collector = collector
        self._sock = open_socket(host, port, collector.settings.receive_buffer)
        self.address: tuple = self._sock.getsockname()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="flow-collector", daemon=True)
        self._started = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            self._started.set()
            await serve(self.collector, self._sock, self._stop)

        self._loop.run_until_complete(main())
        self._loop.close()

    def __enter__(self) -> BackgroundCollector:
        self._thread.start()
        self._started.wait()
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
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join()

    def __exit__(self, *_exc) -> None:
        self.stop()
