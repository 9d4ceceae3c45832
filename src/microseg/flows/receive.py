"""Taking datagrams off a UDP socket: many per system call where the system has recvmmsg(2).

A datagram read with `socket.recvfrom` costs a system call and a few Python objects: 4-5 µs
on this project's bench VM, as much as decoding and merging its 30 records. recvmmsg(2)
(Linux, glibc) fills up to BATCH datagrams into one preallocated buffer per call: each
datagram has a slot of 64 KiB, the largest a UDP datagram can be, so none is ever cut
short, and the pages of a slot are touched only as far as its datagrams reach. Reading
then costs ~1 µs a datagram: the bytes of each, and its source address, which is parsed
once per distinct address (the exporter's (host, port): RFC 7011 10.3.1, a Transport
Session is the exporter's socket).

Where recvmmsg cannot be called (another system, another C library, no ctypes), the
reader takes one datagram per `recvfrom` call, as the collector always did: the same
datagrams, in the same order, with the same addresses (tests/flows/test_collector_receive.py
runs both).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import platform
import socket
import sys
from collections.abc import Callable

import numpy as np

SLOT = 1 << 16  # one datagram's room: more than the largest UDP payload (65,535 - 8)
BATCH = 128  # datagrams per recvmmsg call: an 8 MiB buffer, mostly never touched
NAME = 128  # sizeof(struct sockaddr_storage)
MSG_DONTWAIT = 0x40  # Linux <bits/socket.h>
ADDRESSES = 4096  # parsed source addresses kept; past it the cache starts again


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):  # struct msghdr, glibc (sys/socket.h)
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(_IoVec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):  # struct mmsghdr, recvmmsg(2)
    _fields_ = [("header", _MsgHdr), ("length", ctypes.c_uint)]


def _load_recvmmsg() -> Callable | None:
    """libc's recvmmsg, where the struct layouts above are the system's: Linux with glibc."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).recvmmsg
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_void_p,
    ]
    function.restype = ctypes.c_int
    return function


RECVMMSG = _load_recvmmsg()


class DatagramReader:
    """Reads what the kernel queued on one socket, one datagram per recvfrom call."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def read(self, datagrams: list, limit: int | None = None) -> bool:
        """Append (bytes, source address) of what the kernel has queued, at most `limit`
        datagrams (None: all of it). True if it stopped at the limit (more may wait)."""
        append = datagrams.append
        recvfrom = self.sock.recvfrom
        taken = 0
        while limit is None or taken < limit:
            try:
                data, address = recvfrom(SLOT)
            except OSError:  # BlockingIOError: nothing queued; any other: nothing to take
                return False
            append((data, address))  # (host, port, ...): the port tells exporters apart
            taken += 1
        return True


class BatchReader(DatagramReader):
    """Reads up to BATCH datagrams per recvmmsg(2) call into one preallocated buffer."""

    def __init__(self, sock: socket.socket, recvmmsg: Callable):
        super().__init__(sock)
        self._recvmmsg = recvmmsg
        self._buffer = mmap.mmap(-1, BATCH * SLOT)  # anonymous: pages mapped when written
        self._names = mmap.mmap(-1, BATCH * NAME)
        buffer = ctypes.addressof(ctypes.c_char.from_buffer(self._buffer))
        names = ctypes.addressof(ctypes.c_char.from_buffer(self._names))
        self._vectors = (_IoVec * BATCH)()
        self._messages = (_MMsgHdr * BATCH)()
        for index in range(BATCH):
            self._vectors[index].base = buffer + index * SLOT
            self._vectors[index].length = SLOT
            header = self._messages[index].header
            header.name = names + index * NAME
            header.namelen = NAME
            header.iov = ctypes.pointer(self._vectors[index])
            header.iovlen = 1
        # each message's namelen (in: room, out: the address's size) and length, as numpy
        # reads and resets them for a whole call at once
        layout = np.dtype(
            {
                "names": ["namelen", "length"],
                "formats": [np.uint32, np.uint32],
                "offsets": [_MsgHdr.namelen.offset, _MMsgHdr.length.offset],
                "itemsize": ctypes.sizeof(_MMsgHdr),
            }
        )
        self._fields = np.frombuffer(self._messages, layout)  # type: ignore[call-overload]
        self._pointer = ctypes.addressof(self._messages)
        self._addresses: dict[bytes, tuple] = {}

    def compiled_view(self) -> dict:
        """What the compiled reader (drain_loops.drain) needs to call recvmmsg with this
        reader's buffers: the messages' address, them as uint32 words (a row a message,
        with the indices of namelen and msg_len), the datagram and address slots."""
        words = ctypes.sizeof(_MMsgHdr) // 4
        return {
            "messages": self._pointer,
            "fields": np.frombuffer(self._messages, np.uint32).reshape(BATCH, words),  # type: ignore[call-overload]
            "namelen_field": _MsgHdr.namelen.offset // 4,
            "length_field": _MMsgHdr.length.offset // 4,
            "slot": SLOT,
            "scratch": np.frombuffer(self._buffer, np.uint8),
            "names": np.frombuffer(self._names, np.uint8),
            "name_room": NAME,
        }

    def source(self, name: bytes) -> tuple:
        """The address recvfrom gives for this struct sockaddr (kept for the next time)."""
        address = self._addresses.get(name)
        return self._remember(name) if address is None else address

    def read(self, datagrams: list, limit: int | None = None) -> bool:
        append = datagrams.append
        fd = self.sock.fileno()
        buffer, names, addresses = self._buffer, self._names, self._addresses
        taken = 0
        while limit is None or taken < limit:
            wanted = BATCH if limit is None else min(BATCH, limit - taken)
            got = self._recvmmsg(fd, self._pointer, wanted, MSG_DONTWAIT, None)
            if got <= 0:  # -1: EAGAIN (nothing queued) or an error; either way, no more
                return False
            fields = self._fields[:got]
            lengths, name_lengths = fields["length"].tolist(), fields["namelen"].tolist()
            fields["namelen"] = NAME
            for index in range(got):
                at, name_at = index * SLOT, index * NAME
                name = names[name_at : name_at + name_lengths[index]]
                address = addresses.get(name)
                if address is None:
                    address = self._remember(name)
                append((buffer[at : at + lengths[index]], address))
            taken += got
            if got < wanted:  # the queue is empty (a datagram may arrive meanwhile)
                return False
        return True

    def _remember(self, name: bytes) -> tuple:
        """The address recvfrom would give for this struct sockaddr (its numeric host, as
        getnameinfo(3) writes it: an IPv6 link-local address keeps its %scope)."""
        if len(self._addresses) >= ADDRESSES:  # spoofed sources must not grow it
            self._addresses.clear()
        family = int.from_bytes(name[:2], sys.byteorder)
        port = int.from_bytes(name[2:4], "big")
        if family == socket.AF_INET:
            address: tuple = (socket.inet_ntop(socket.AF_INET, name[4:8]), port)
        elif family == socket.AF_INET6:
            flowinfo = int.from_bytes(name[4:8], "big")
            scope = int.from_bytes(name[24:28], sys.byteorder)
            host = socket.inet_ntop(socket.AF_INET6, name[8:24])
            if scope:
                flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
                host = socket.getnameinfo((host, port, flowinfo, scope), flags)[0]
            address = (host, port, flowinfo, scope)
        else:  # not an IP socket: nothing to name, as recvfrom gives no host either
            address = ("", 0)
        self._addresses[name] = address
        return address


def reader(sock: socket.socket) -> DatagramReader:
    """The fastest reader this system has for a UDP socket."""
    if RECVMMSG is None:
        return DatagramReader(sock)
    return BatchReader(sock, RECVMMSG)
