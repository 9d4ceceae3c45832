"""Several receive workers on one port: a group of SO_REUSEPORT sockets, one process each.

socket(7), SO_REUSEPORT: "Permits multiple AF_INET or AF_INET6 sockets to be bound to an
identical socket address. This option must be set on each socket (including the first
socket) prior to calling bind(2) on the socket. [...] For UDP sockets, the use of this option
can provide better distribution of incoming datagrams to multiple processes (or threads) as
compared to the traditional technique of having multiple processes compete to receive
datagrams on the same socket." Linux picks the socket of the group by a hash of the
datagram's source and destination addresses and ports (net/ipv4/udp.c: udp_ehashfn() ->
reuseport_select_sock()), so every datagram of one exporter's transport session (for UDP,
its source address and port: RFC 7011 10.3.1) reaches the same worker: its templates and its
flows meet in that worker's decoder and session table. Processes, not threads: decoding and
merging hold the GIL.

Each worker is a whole collector (decoder, session table, store writer) with a collector id
of its own, `<collector id>-w<N>`: it writes only its own partition directories, so segment
names stay unique in the store, each segment is seen once by readers and merged only with
its own partition's segments by compaction, and its counters are its own stats file. The
supervisor (this process) binds every socket before any worker starts (a port in use is a
user error, nothing started), forwards SIGINT/SIGTERM to every worker, waits until each has
flushed, and reports a worker that dies: its active sessions since its last flush are lost,
and the kernel gives its exporters to the other workers (which decode their data again from
the exporters' next template refresh, RFC 7011 8.4). A worker dies with the supervisor
(PR_SET_PDEATHSIG: SIGTERM, so it flushes first).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from microseg.flows.collector import FlowCollector, open_socket, run_on
from microseg.flows.flowstore import COLLECTOR_ID
from microseg.model import MicrosegError

PR_SET_PDEATHSIG = 1  # prctl(2)
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
log = logging.getLogger("microseg.flows")


def worker_ids(collector_id: str, workers: int) -> list[str]:
    """The collector ids of a collector's workers: `<collector id>-w1` ... `-wN`."""
    ids = [f"{collector_id}-w{index}" for index in range(1, workers + 1)]
    if not COLLECTOR_ID.fullmatch(ids[-1]):
        raise MicrosegError(
            f"--collector-id {collector_id!r}: with --workers {workers} its workers are named "
            f"{ids[-1]!r}, longer than 63 characters; give a shorter id"
        )
    return ids


def open_groups(
    addresses: list[tuple[str, int]], workers: int, receive_buffer: int
) -> list[list[socket.socket]]:
    """groups[w][a]: worker w's socket on address a. The first socket of an address binds
    it (port 0: the kernel picks one), the others join it on the same port."""
    groups: list[list[socket.socket]] = [[] for _ in range(workers)]
    try:
        for host, port in addresses:
            first = open_socket(host, port, receive_buffer, reuse_port=True)
            groups[0].append(first)
            bound = first.getsockname()[1]
            for group in groups[1:]:
                group.append(open_socket(host, bound, receive_buffer, reuse_port=True))
    except MicrosegError:
        for group in groups:
            for sock in group:
                sock.close()
        raise
    return groups


def combine_stats(figures: list[dict]) -> dict:
    """One collector's counters from its workers': numbers added (uptime: the longest),
    per-exporter counters added per exporter."""
    combined: dict[str, Any] = {}
    for stats in figures:
        for key, value in stats.items():
            if key == "exporters":
                exporters = combined.setdefault(key, {})
                for name, counters in value.items():
                    into = exporters.setdefault(name, dict.fromkeys(counters, 0))
                    for counter, number in counters.items():
                        into[counter] = into.get(counter, 0) + number
            elif key == "uptime_seconds":
                combined[key] = max(combined.get(key, 0), value)
            elif isinstance(value, int | float):
                combined[key] = combined.get(key, 0) + value
    if "exporters" in combined:
        combined["exporters"] = dict(sorted(combined["exporters"].items()))
    combined["workers"] = len(figures)
    return combined


class Supervisor:
    """Runs `workers` collectors on the same addresses until SIGINT or SIGTERM.

    `make_collector(index)` builds worker `index`'s collector (in the worker's process);
    `on_stats(index, stats)` hears every worker's counters at each of its flushes."""

    def __init__(
        self,
        make_collector: Callable[[int], FlowCollector],
        addresses: list[tuple[str, int]],
        workers: int,
        receive_buffer: int,
    ):
        self.make_collector = make_collector
        self.groups = open_groups(addresses, workers, receive_buffer)
        self.addresses = [sock.getsockname() for sock in self.groups[0]]
        self.latest: dict[int, dict] = {}  # worker -> its last counters
        self.final: dict[int, dict] = {}  # worker -> its counters at exit
        self.deaths: list[str] = []  # what the supervisor said about workers that died
        self.last_write_error = ""

    def run(
        self,
        on_ready: Callable[[list[tuple]], None] | None = None,
        on_stats: Callable[[int, dict], None] | None = None,
    ) -> dict:
        """Start the workers, wait for them all to stop; returns the combined counters."""
        context = multiprocessing.get_context("fork")  # the workers inherit their sockets
        processes: dict[int, Any] = {}
        connections: dict[int, Connection] = {}
        stopping = False

        def stop(_signum, _frame) -> None:
            nonlocal stopping
            stopping = True
            for process in processes.values():
                if process.is_alive():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGTERM)

        previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
        # blocked while the workers start: a worker inherits the mask and unblocks them once
        # its event loop handles them; here they wait until every worker is known
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            for index in range(1, len(self.groups) + 1):
                receiving, sending = context.Pipe(duplex=False)
                process = context.Process(
                    target=_worker,
                    args=(index, self.groups, self.make_collector, sending, os.getpid()),
                    name=f"microseg-collect-w{index}",
                    daemon=False,
                )
                process.start()
                sending.close()
                processes[index], connections[index] = process, receiving
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            for group in self.groups:  # the workers have them; a socket left open here
                for sock in group:  # would take its share of datagrams and never read it
                    sock.close()
            ready: set[int] = set()
            while processes:
                waiting = [*connections.values(), *(p.sentinel for p in processes.values())]
                for item in multiprocessing.connection.wait(waiting):
                    index = self._worker_of(item, connections, processes)
                    if item is connections.get(index):
                        self._receive(index, connections, ready, on_stats)
                        if on_ready and len(ready) == len(self.groups):
                            on_ready(self.addresses)
                            on_ready = None
                    else:
                        self._ended(index, processes, connections, stopping)
                        if index not in ready and not stopping:  # it never started
                            stop(signal.SIGTERM, None)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        figures = [self.final.get(i) or self.latest.get(i) or {} for i in self._indexes()]
        return combine_stats(figures)

    def _indexes(self) -> range:
        return range(1, len(self.groups) + 1)

    @staticmethod
    def _worker_of(item, connections, processes) -> int:
        for index, connection in connections.items():
            if item is connection:
                return index
        return next(i for i, process in processes.items() if process.sentinel == item)

    def _receive(self, index, connections, ready, on_stats) -> None:
        try:
            message = connections[index].recv()
        except (EOFError, OSError):  # the worker is gone: its sentinel says how
            connections.pop(index).close()
            return
        kind = message[0]
        if kind == "ready":
            ready.add(index)
        elif kind == "stats":
            self.latest[index] = message[1]
            if on_stats:
                on_stats(index, message[1])
        elif kind == "final":
            self.final[index] = message[1]
            self.last_write_error = message[2] or self.last_write_error

    def _ended(self, index, processes, connections, stopping) -> None:
        process = processes.pop(index)
        process.join()
        connection = connections.pop(index, None)
        if connection is not None:  # what it said before it went
            while connection.poll():
                try:
                    self._receive_final(index, connection.recv())
                except (EOFError, OSError):
                    break
            connection.close()
        if process.exitcode == 0 and stopping and index in self.final:
            return
        how = (
            f"killed by signal {-process.exitcode}"
            if process.exitcode < 0
            else f"exit status {process.exitcode}"
        )
        said = (
            f"collect: worker {index} (pid {process.pid}) died ({how}): its sessions since its "
            "last flush are lost; the kernel gives its exporters to the other workers"
            if processes
            else f"collect: worker {index} (pid {process.pid}) died ({how}), the last one"
        )
        self.deaths.append(said)
        log.error("%s", said)

    def _receive_final(self, index: int, message: tuple) -> None:
        if message[0] == "stats":
            self.latest[index] = message[1]
        elif message[0] == "final":
            self.final[index] = message[1]
            self.last_write_error = message[2] or self.last_write_error


def _worker(
    index: int,
    groups: list[list[socket.socket]],
    make_collector: Callable[[int], FlowCollector],
    connection: Connection,
    supervisor: int,
) -> None:
    _die_with(supervisor)
    sockets = groups[index - 1]
    for group in groups:  # another worker's socket held open here would never be read
        if group is not sockets:
            for sock in group:
                sock.close()
    collector = make_collector(index)

    def ready(_addresses) -> None:  # the event loop handles SIGINT/SIGTERM from here on
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        connection.send(("ready",))

    try:
        run_on(
            collector,
            sockets,
            on_ready=ready,
            on_flush=lambda current: connection.send(("stats", current.stats())),
        )
    finally:
        connection.send(("final", collector.stats(), collector.last_write_error))
        connection.close()


def _die_with(supervisor: int) -> None:
    """SIGTERM (flush, then exit) when the supervisor goes, however it goes (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it went before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
