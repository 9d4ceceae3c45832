"""Taking datagrams off the collector's sockets (flows/receive.py): recvmmsg(2) into one
buffer where the system has it, one recvfrom per datagram where it does not. Both readers
give the same datagrams, in order, each with its own source address (an IPFIX Transport
Session is the exporter's socket: RFC 7011 10.3.1), drain what is queued on request, and
hand bad datagrams on to the decoder, which drops and counts them."""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from flows_encoder import softflowd_export

from microseg.flows import collector as collector_module
from microseg.flows import drain_loops, receive
from microseg.flows.collector import (
    BackgroundCollector,
    CollectorSettings,
    FlowCollector,
    StopRequest,
    open_socket,
    serve,
)
from microseg.flows.flowstore import FlowStore, read_sessions

T0 = 1_763_578_369_000
READERS = {
    "recvfrom": receive.DatagramReader,
    "recvmmsg": lambda sock: receive.BatchReader(sock, receive.RECVMMSG),
}
needs_recvmmsg = pytest.mark.skipif(receive.RECVMMSG is None, reason="no recvmmsg(2) here")


def readers() -> list:
    return [
        pytest.param("recvfrom"),
        pytest.param("recvmmsg", marks=needs_recvmmsg),
    ]


@pytest.fixture(params=readers())
def make_reader(request):
    return READERS[request.param]


def drains() -> list:
    """How a collector's sockets are read: by a Python thread, with either reader, or by
    the compiled reader (drain_loops.py), which never takes the GIL."""
    return [
        pytest.param("recvfrom"),
        pytest.param("recvmmsg", marks=needs_recvmmsg),
        pytest.param("compiled", marks=needs_recvmmsg),
    ]


def use_drain(kind: str, monkeypatch) -> None:
    if kind == "recvfrom":
        monkeypatch.setattr(receive, "RECVMMSG", None)
    if kind != "compiled":
        monkeypatch.setattr(collector_module, "compiled_drain_possible", lambda: False)


def test_recvmmsg_is_what_linux_with_glibc_reads_with():
    if receive.RECVMMSG is None:  # another system, or C library: one datagram a call
        with open_socket("127.0.0.1", 0, 1 << 16) as sock:
            assert type(receive.reader(sock)) is receive.DatagramReader
        return
    with open_socket("127.0.0.1", 0, 1 << 16) as sock:
        assert isinstance(receive.reader(sock), receive.BatchReader)


def test_without_recvmmsg_the_reader_takes_one_datagram_a_call(monkeypatch):
    monkeypatch.setattr(receive, "RECVMMSG", None)
    with open_socket("127.0.0.1", 0, 1 << 16) as sock:
        assert type(receive.reader(sock)) is receive.DatagramReader


def test_a_readable_socket_is_drained_in_bursts(make_reader):
    sock = open_socket("127.0.0.1", 0, 1 << 20)
    with sock, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for index in range(10):
            sender.sendto(bytes([index]), sock.getsockname())
        taker = make_reader(sock)
        datagrams: list = []
        taken, more = [], []
        for _ in range(4):
            more.append(taker.read(datagrams, 4))
            taken.append(len(datagrams))
        sender_port = sender.getsockname()[1]
    assert taken == [4, 8, 10, 10]  # a burst per batch; an empty socket is no error
    assert more == [True, True, False, False]  # at the limit: the next batch starts at once
    assert [data for data, _ in datagrams] == [bytes([i]) for i in range(10)]
    # the source port too: it tells exporters behind one address apart
    assert {source for _, source in datagrams} == {("127.0.0.1", sender_port)}


def test_every_datagram_keeps_its_own_exporter_address(make_reader):
    """Three exporters interleaved, more datagrams than one recvmmsg call takes, and a stop
    that drains everything queued (no limit)."""
    sock = open_socket("127.0.0.1", 0, 8 << 20)
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        sent = []
        for index in range(3 * receive.BATCH + 7):
            sender = senders[index % 3]
            payload = index.to_bytes(4, "big") * (1 + index % 50)
            sender.sendto(payload, sock.getsockname())
            sent.append((payload, ("127.0.0.1", sender.getsockname()[1])))
        datagrams: list = []
        assert make_reader(sock).read(datagrams) is False
    finally:
        for sender in senders:
            sender.close()
        sock.close()
    assert datagrams == sent


def test_ipv6_sources_read_as_recvfrom_gives_them(make_reader):
    try:
        sock = open_socket("::1", 0, 1 << 20)
    except Exception as error:  # a machine without IPv6 loopback
        pytest.skip(f"no IPv6 loopback: {error}")
    with sock, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"six", sock.getsockname())
        sender.sendto(b"again", sock.getsockname())
        datagrams: list = []
        make_reader(sock).read(datagrams)
        port = sender.getsockname()[1]
    assert datagrams == [(b"six", ("::1", port, 0, 0)), (b"again", ("::1", port, 0, 0))]


def test_the_largest_and_the_empty_datagram_come_whole(make_reader):
    largest = bytes(range(256)) * 255 + bytes(range(227))  # 65,507: UDP over IPv4's most
    sock = open_socket("127.0.0.1", 0, 4 << 20)
    with sock, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        for payload in (largest, b"", b"x"):
            sender.sendto(payload, sock.getsockname())
        datagrams: list = []
        make_reader(sock).read(datagrams)
    assert [data for data, _ in datagrams] == [largest, b"", b"x"]


@pytest.mark.parametrize("kind", drains())
def test_the_collector_stores_the_same_sessions_with_either_reader(kind, tmp_path, monkeypatch):
    """A real collector on loopback: good datagrams between bad ones (the decoder drops and
    counts those), all of it drained and stored at stop."""
    use_drain(kind, monkeypatch)
    monkeypatch.setattr(collector_module, "READ_BURST", 64)  # several reads per batch
    store = FlowStore(tmp_path / "flows")
    collector = FlowCollector(store)
    stream = softflowd_export(1, 900, T0)
    bad = [b"", b"\x00\x0a", b"\x00\x0a\x00\x20" + bytes(12), b"garbage" * 20]
    with BackgroundCollector(collector) as running:
        sent = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as exporter:
            for index, message in enumerate(stream):
                exporter.sendto(message, running.address)
                exporter.sendto(bad[index % len(bad)], running.address)
                sent += 2
        assert running.wait_for_datagrams(sent)
    stats = collector.stats()
    assert (stats["datagrams"], stats["records"]) == (sent, 900)
    assert stats["decode_errors"] == len(stream)  # every bad one, and nothing else
    sessions = read_sessions(store.directory, ephemeral_port=None)
    assert sessions.num_rows == 900
    assert set(sessions.column("fwd_packets").to_pylist()) == {3}


def huge_page_advised(address: int) -> bool:
    """Does the mapping holding `address` ask for transparent huge pages (VmFlags `hg`)?"""
    mapping = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            low, high = (int(part, 16) for part in head.split("-"))
            mapping = low <= address < high
        elif head == "VmFlags:" and mapping:
            return "hg" in line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="Linux /proc only")
def test_the_session_table_is_reserved_without_asking_for_huge_pages():
    """numpy asks for transparent huge pages on large arrays when it allocates them; a
    kernel that compacts memory to grant them stalled the receive loop. The collector turns
    that off before its table reserves its rows (it did after, and a worker's first table
    still asked)."""
    core = getattr(np, "_core", None) or np.core
    core.multiarray._set_madvise_hugepage(True)  # numpy's default
    collector = FlowCollector(None)
    rows = collector.table._active._rows
    assert rows.nbytes > 32 << 20  # its own mapping, as large as numpy advises
    assert not huge_page_advised(rows.ctypes.data + rows.nbytes // 2)


def stalled_first_batch(
    collector: FlowCollector, seconds: float, keep_gil: bool = False, on_stall=None
) -> threading.Event:
    """Make the collector's first batch take `seconds` (an eviction, time off the CPU), or
    hold the GIL that long (`keep_gil`: usleep(3) called as ctypes.PyDLL calls, with the
    GIL kept); the event is set, and `on_stall` called, when it starts."""
    started = threading.Event()
    receive_batch = collector.receive
    keeping = ctypes.PyDLL(ctypes.util.find_library("c")).usleep

    def receive_slowly(datagrams, now=None, destination=None):
        if not started.is_set():
            started.set()
            if on_stall:
                on_stall()
            if keep_gil:
                keeping(round(seconds * 1e6))
            else:
                time.sleep(seconds)
        receive_batch(datagrams, now, destination)

    collector.receive = receive_slowly  # type: ignore[method-assign]
    return started


def send_paced(address: tuple, count: int, seconds: float, size: int = 1000) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as exporter:
        for index in range(count):
            exporter.sendto(index.to_bytes(4, "big") * (size // 4), address)
            time.sleep(seconds / count)


def send_when_told(pipe: tuple[int, int], address: tuple, count: int, seconds: float) -> None:
    """send_paced once a byte comes through the pipe (in another process; at the pipe's
    end without one, nothing is sent)."""
    told, tell = pipe
    os.close(tell)  # this process's copy: the parent's closing it must end the read
    if os.read(told, 1):
        send_paced(address, count, seconds)


def received_while_stalled(
    collector: FlowCollector, stall: float, count: int, seconds: float, keep_gil: bool = False
):
    """Hold the collector's first batch for `stall` seconds, send `count` datagrams paced
    over `seconds` meanwhile, and wait until every one (and the first) was decoded. With
    the GIL kept no thread of this process runs meanwhile: a process of its own sends,
    told through a pipe when the stall starts, and forked before the collector's threads
    start (a fork beside running threads inherits whatever they hold open)."""
    told, tell = os.pipe()
    sender = None
    try:
        started = stalled_first_batch(
            collector, stall, keep_gil, on_stall=lambda: os.write(tell, b"!")
        )
        running = BackgroundCollector(collector)
        sender = multiprocessing.get_context("fork").Process(
            target=send_when_told, args=((told, tell), running.address, count, seconds)
        )
        sender.start()
        with running:
            send_paced(running.address, 1, 0)
            assert started.wait(5)
            sender.join(30)
            assert sender.exitcode == 0
            assert running.wait_for_datagrams(count + 1, timeout=20)
    finally:
        os.close(told)
        os.close(tell)
        if sender is not None and sender.is_alive():
            sender.kill()
            sender.join()


@pytest.mark.parametrize("kind", drains())
def test_the_sockets_are_read_while_the_receive_loop_is_busy(kind, monkeypatch):
    """The kernel's buffer holds ~200 of these datagrams; the loop is held for 2 s while
    1,000 come over 1 s. They are read meanwhile (a thread of its own), so none is lost:
    when the loop read the sockets itself, between batches, the kernel dropped ~800."""
    use_drain(kind, monkeypatch)
    collector = FlowCollector(None, CollectorSettings(receive_buffer=256 << 10))
    received_while_stalled(collector, 2.0, 1000, 1.0)
    stats = collector.stats()
    assert stats["datagrams"] == 1001  # garbage: each counted, dropped whole
    assert stats["decode_errors"] == 1001
    assert stats["receive_queue_full"] == 0
    assert 0 < stats["receive_queue_peak_bytes"] <= 1000 * 1000


@needs_recvmmsg
def test_the_compiled_reader_reads_while_the_receive_loop_holds_the_gil():
    """The same, but the loop's 2 s are spent holding the GIL (a C call that keeps it, as a
    thread off the CPU keeps it): a Python reader thread waits for it, and the kernel
    drops what its buffer cannot hold; the compiled reader takes no GIL, and loses none."""
    collector = FlowCollector(None, CollectorSettings(receive_buffer=256 << 10))
    assert collector_module.compiled_drain_possible()
    received_while_stalled(collector, 2.0, 1000, 1.0, keep_gil=True)
    stats = collector.stats()
    assert stats["datagrams"] == 1001
    assert stats["receive_queue_full"] == 0


@pytest.mark.parametrize("kind", drains())
def test_a_full_receive_queue_pauses_reading_and_the_kernel_keeps_the_rest(kind, monkeypatch):
    """Past --receive-queue the reader pauses (counted) and the socket's buffer fills
    instead; nothing read is dropped, and what the kernel kept is read afterwards."""
    use_drain(kind, monkeypatch)
    settings = CollectorSettings(receive_buffer=4 << 20, receive_queue=64 << 10)
    collector = FlowCollector(None, settings)
    received_while_stalled(collector, 1.5, 300, 0.5)
    stats = collector.stats()
    assert stats["datagrams"] == 301
    assert stats["receive_queue_full"] >= 1
    # the bound and at most one read past it (READ_BURST datagrams)
    assert 64 << 10 <= stats["receive_queue_peak_bytes"] < (64 << 10) + 257 * 1000


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc only")
def test_the_largest_receive_queue_reserves_address_space_not_memory():
    """--receive-queue's largest value (1 TiB) is a bound, not an allocation: the reader
    starts and reads, and the process's resident memory does not grow with it."""

    def resident_kib() -> int:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0])

    counters = collector_module.CollectorCounters()
    sock = open_socket("127.0.0.1", 0, 1 << 20)
    with sock, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as exporter:
        before = resident_kib()
        drain = collector_module.socket_drain([sock], 1 << 40, counters)
        drain.start()
        exporter.sendto(b"one", sock.getsockname())
        queued: list = []
        for _ in range(200):
            queued = drain.wait(0.05, 0.0) or []
            if queued and queued[0]:
                break
        drain.stop()
        grown = resident_kib() - before
    assert [data for data, _ in queued[0]] == [b"one"]
    assert grown < 64 << 10  # KiB: the reader's buffers as touched, not the bound


@pytest.mark.parametrize("kind", drains())
def test_a_reader_that_fails_stops_the_loop_with_its_error_after_a_flush(kind, monkeypatch):
    """A bug in the reader thread must not leave a collector that silently reads nothing:
    the receive loop raises it, having stored the sessions it holds."""

    def broken(*_arguments, **_options):
        raise RuntimeError("reader bug")

    use_drain(kind, monkeypatch)
    for reader_type in (receive.DatagramReader, receive.BatchReader):
        monkeypatch.setattr(reader_type, "read", broken)
    collector = FlowCollector(None)  # (its warm-up runs the compiled reader once)
    monkeypatch.setattr(drain_loops, "drain", broken)
    flushed = []
    monkeypatch.setattr(collector, "flush_all", lambda: flushed.append(True) or 0)
    sock = open_socket("127.0.0.1", 0, 1 << 20)
    with sock, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as exporter:
        exporter.sendto(b"one", sock.getsockname())
        with pytest.raises(RuntimeError, match="reader bug"):
            serve(collector, [sock], StopRequest())
    assert flushed == [True]
