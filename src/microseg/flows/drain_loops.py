"""The collector's socket reader, compiled by numba so that it never waits for the GIL
(collector.CompiledDrain runs it on a thread of its own and takes what it read).

A reader thread written in Python needs the GIL between its system calls: while the thread
that holds the GIL is off the CPU (2 cores shared with exporters, other workers, segment
writers), or inside a long call that keeps it, the sockets are not read, and past the
kernel's receive buffer datagrams are lost. This loop calls poll(2), recvmmsg(2), usleep(3)
and the pthread mutex it shares with the receive loop straight from compiled code, as C
would (the symbols are resolved in this process's libc when numba loads the code, so the
code is cached like the merge's), and holds no GIL from start to stop.

What it reads goes into one of two halves: it fills the active half (datagrams back to
back, and per datagram its offset, length, socket and source address), and the receive
loop, under the mutex, makes the other half active and converts the full one at leisure.
When the active half holds `limit` bytes or `most` datagrams, reading pauses (counted) and
the kernel's buffer takes the rest, as with the Python reader. It wakes the receive loop
through an eventfd once `batch` datagrams wait, and stops when its stop eventfd is
readable. Only collector.py imports this module, and only in a collector (numba).
"""

from __future__ import annotations

import ctypes
import os

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from microseg.flows.merge_loops import CACHE

# the state array shared with the receive loop (int64 slots; under the mutex)
ACTIVE = 0  # the half being filled: 0 or 1
COUNT = 1  # COUNT + half: datagrams in that half
BYTES = 3  # BYTES + half: their bytes
OLDEST = 5  # CLOCK_MONOTONIC ns when the active half got its first datagram
FULL = 6  # times reading paused with the active half full
PEAK = 7  # the most bytes the active half held
WOKEN = 8  # 1 once the active half woke the receive loop
STATE_SLOTS = 9
# a datagram's row in `meta`
OFFSET, LENGTH, SOCKET, NAME_LENGTH = 0, 1, 2, 3
META_FIELDS = 4
SOURCE = 32  # bytes kept of a source address: sizeof(struct sockaddr_in6) is 28

MSG_DONTWAIT = 0x40  # Linux <bits/socket.h>
CLOCK_MONOTONIC = 1  # Linux <linux/time.h>
POLLIN = 1

_I32, _I64, _POINTER = ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()

# the receive loop's side of the mutex, through ctypes (which lets the GIL go while it
# waits); CDLL(None): the symbols this process has loaded, libc's among them (find_library
# would run ldconfig in a child process, from whatever thread makes a drain)
_PROCESS = ctypes.CDLL(None)
mutex_lock, mutex_unlock = _PROCESS.pthread_mutex_lock, _PROCESS.pthread_mutex_unlock
for _function in (mutex_lock, mutex_unlock):
    _function.argtypes, _function.restype = [ctypes.c_void_p], ctypes.c_int


def _libc(symbol: str, result: ir.IntType, *parameters: ir.Type):
    """An intrinsic calling the C function `symbol` (found in this process when the code is
    loaded), its arguments given as integers: each cast to its parameter's type (an int,
    or a pointer from an address). It returns the function's int result as an int64."""

    def codegen(context, builder, signature, values):
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(result, parameters), symbol
        )
        arguments = []
        for value, parameter in zip(values, parameters, strict=True):
            if parameter == _POINTER:
                arguments.append(builder.inttoptr(value, _POINTER))
            elif parameter.width < 64:
                arguments.append(builder.trunc(value, parameter))
            else:
                arguments.append(value)
        returned = builder.call(function, arguments)
        return builder.sext(returned, _I64) if result.width < 64 else returned

    def one(typing_context, a):
        return types.int64(types.int64), codegen

    def two(typing_context, a, b):
        return types.int64(types.int64, types.int64), codegen

    def three(typing_context, a, b, c):
        return types.int64(*[types.int64] * 3), codegen

    def five(typing_context, a, b, c, d, e):
        return types.int64(*[types.int64] * 5), codegen

    typing = {1: one, 2: two, 3: three, 5: five}[len(parameters)]
    typing.__name__ = f"libc_{symbol}"
    return intrinsic(typing)


_recvmmsg = _libc("recvmmsg", _I32, _I32, _POINTER, _I32, _I32, _POINTER)
_poll = _libc("poll", _I32, _POINTER, _I64, _I32)
_usleep = _libc("usleep", _I32, _I32)
_lock = _libc("pthread_mutex_lock", _I32, _POINTER)
_unlock = _libc("pthread_mutex_unlock", _I32, _POINTER)
_write = _libc("write", _I64, _I32, _POINTER, _I64)
_clock_gettime = _libc("clock_gettime", _I32, _I32, _POINTER)


@numba.njit(cache=CACHE, inline="always")
def _has_room(state, mutex, limit, most):
    """Whether the active half can take another read (read under the mutex)."""
    _lock(mutex)
    half = state[ACTIVE]
    room = state[BYTES + half] < limit and state[COUNT + half] < most
    _unlock(mutex)
    return room


@numba.njit(cache=CACHE, nogil=True)
def drain(
    pollfds,
    sockets,
    messages,
    fields,
    namelen_field,
    length_field,
    slot,
    scratch,
    names,
    name_room,
    data,
    meta,
    sources,
    state,
    mutex,
    wake,
    word,
    clock,
    limit,
    most,
    burst,
    batch,
    pause_us,
    poll_ms,
):
    """Read `sockets` until the stop eventfd (the last of `pollfds`) is readable.

    pollfds: struct pollfd as int16 words (fd in two, events, revents); the sockets', then
    the stop eventfd's. messages: the address of the struct mmsghdr array recvmmsg fills;
    fields: it as uint32 words, a message a row (namelen and msg_len at their indices);
    scratch/names: each message's slot of `slot` bytes and `name_room` bytes of address.
    data: two halves of bytes; meta: [half, datagram, field]; sources: [half, datagram,
    SOURCE bytes]. mutex: the address of a pthread_mutex_t; wake: an eventfd, `word` the
    address of an 8-byte 1 to write to it; clock: the address of a struct timespec (two
    int64). Reads up to `burst` datagrams a socket in a round, then sleeps `pause_us` if
    none had more; waits in poll(2) up to `poll_ms` when nothing comes."""
    count_sockets = len(sockets)
    calls = fields.shape[0]
    pollfds_at = pollfds.ctypes.data
    mutex_at = mutex.ctypes.data
    stop_at = pollfds_at + 8 * count_sockets  # sizeof(struct pollfd) is 8
    paused = False
    while True:
        if not _has_room(state, mutex_at, limit, most):
            if not paused:
                paused = True
                _lock(mutex_at)
                state[FULL] += 1
                _unlock(mutex_at)
            if _poll(stop_at, 1, max(1, pause_us // 1000)) > 0:
                return
            continue
        paused = False
        if _poll(pollfds_at, count_sockets + 1, poll_ms) <= 0:
            continue
        if pollfds[4 * count_sockets + 3] != 0:  # the stop eventfd's revents
            return
        more = False
        for socket in range(count_sockets):
            taken = 0
            while taken < burst:
                if taken and not _has_room(state, mutex_at, limit, most):
                    break
                wanted = min(calls, burst - taken)
                got = _recvmmsg(sockets[socket], messages, wanted, MSG_DONTWAIT, 0)
                if got <= 0:  # EAGAIN (nothing queued) or an error: nothing to take
                    break
                _lock(mutex_at)
                half = state[ACTIVE]
                count = state[COUNT + half]
                used = state[BYTES + half]
                if count == 0:
                    _clock_gettime(CLOCK_MONOTONIC, clock.ctypes.data)
                    state[OLDEST] = clock[0] * 1_000_000_000 + clock[1]
                for index in range(got):
                    length = fields[index, length_field]
                    data[half, used : used + length] = scratch[index * slot : index * slot + length]
                    name_length = min(fields[index, namelen_field], SOURCE)
                    at = index * name_room
                    sources[half, count, :name_length] = names[at : at + name_length]
                    meta[half, count, OFFSET] = used
                    meta[half, count, LENGTH] = length
                    meta[half, count, SOCKET] = socket
                    meta[half, count, NAME_LENGTH] = name_length
                    fields[index, namelen_field] = name_room  # in: the room for the next call
                    count += 1
                    used += length
                state[COUNT + half] = count
                state[BYTES + half] = used
                if used > state[PEAK]:
                    state[PEAK] = used
                woken = count >= batch and state[WOKEN] == 0
                if woken:
                    state[WOKEN] = 1
                _unlock(mutex_at)
                if woken:
                    _write(wake, word.ctypes.data, 8)
                taken += got
                if got < wanted:  # the socket is empty (more may arrive meanwhile)
                    break
            if taken >= burst:
                more = True
        if not more:  # let datagrams gather: a read takes many at once
            _usleep(pause_us)


def poll_table(descriptors: list[int]) -> np.ndarray:
    """struct pollfd for each descriptor, asking for POLLIN, as drain takes them (int16
    words: the int fd in two, events, revents)."""
    table = np.zeros(4 * len(descriptors), np.int16)
    table.view(np.int32)[0::2] = descriptors
    table[2::4] = POLLIN
    return table


def warm_up() -> None:
    """Compile drain (or load it from its cache) before a collector says it is listening,
    with arrays of the types a collector passes: a stop already asked for, no socket."""
    stop = os.eventfd(1, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    try:
        drain(
            poll_table([stop]),
            np.zeros(0, np.int64),
            0,
            np.zeros((1, 16), np.uint32),
            2,
            14,
            1,
            np.zeros(1, np.uint8),
            np.zeros(1, np.uint8),
            1,
            np.zeros((2, 1), np.uint8),
            np.zeros((2, 1, META_FIELDS), np.int64),
            np.zeros((2, 1, SOURCE), np.uint8),
            np.zeros(STATE_SLOTS, np.int64),
            np.zeros(64, np.uint8),
            -1,
            np.ones(1, np.uint64),
            np.zeros(2, np.int64),
            1,
            1,
            1,
            1,
            1000,
            0,
        )
    finally:
        os.close(stop)
