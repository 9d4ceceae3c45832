"""The session merge's loops over records, compiled by numba (merge.py calls them).

A merge looks each record's session up in a hash index and adds the record into its row:
work per record that numpy could only spread over dozens of passes, each over every record
still probing. Compiled, one pass does it, record by record in batch order, with the
session's row (one 152-byte structured row: the 2 or 3 cache lines a record touches) at
hand. Only merge.py imports this module, and only when a session table is made: numba and
the loops it compiled earlier (cached beside this file, `cache=True`) load in the collector,
never in other commands. Where numba has nowhere to write its cache (an install read-only
to its user, whose home is not writable either, and no NUMBA_CACHE_DIR), the loops are
compiled at every start instead, with a warning: numba would refuse to define them.

Everything here works on arrays merge.py has sized for it: a row for every record that may
add one, an index at most half full. Nothing indexes past them, and nothing raises.
"""

from __future__ import annotations

import logging

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio, odd
SHIFT = np.uint64(31)
# an index slot: the hash's high 32 bits (which hold the bits that pick its slot: a slot's
# first slot is known without its row), then its row + 1 in the low 32
ROW_BITS = np.uint64(0xFFFFFFFF)
HASH_BITS = np.uint64(0xFFFFFFFF00000000)
UINT64_MAX = np.uint64(0xFFFFFFFFFFFFFFFF)
NO_TIME = np.int64(np.iinfo(np.int64).max)  # merge.NO_TIME
EMPTY = np.uint64(0)
REQUEST_SHIFT = np.uint32(16)  # merge.REQUEST: an echo request, above the TCP flags
INT64_MAX = np.uint64((1 << 63) - 1)  # sessions.INT64_MAX: the most a stored counter holds


log = logging.getLogger("microseg.flows")


def _probe() -> None:  # pragma: no cover - only its cache locator is ever asked for
    pass


def _cache_possible() -> bool:
    """Whether numba finds a writable place for this file's compiled code: its own locator
    search (NUMBA_CACHE_DIR, the file's __pycache__, the user's cache directory) runs when
    a function is defined with cache=True, and raises RuntimeError when every place fails."""
    try:
        numba.njit(cache=True)(_probe)
    except RuntimeError as error:
        log.warning(
            "collector: %s; its session merge is compiled at every start (a few seconds). "
            "Set NUMBA_CACHE_DIR to a directory this user can write to keep it compiled",
            error,
        )
        return False
    return True


CACHE = _cache_possible()
PREFETCH_AHEAD = 16  # records: a slot is fetched this far ahead, a row half as far
INDEX_CHUNK = 1 << 16  # rows hashed at a time while the index is built


@intrinsic
def _prefetch(typing_context, array, index):
    """Ask the CPU to fetch array[index]'s cache lines (its whole item, up to 3 lines)
    into cache: llvm.prefetch (read, keep, data), which never faults."""

    def codegen(context, builder, signature, arguments):
        array_type = signature.args[0]
        structure = context.make_array(array_type)(context, builder, arguments[0])
        pointer = cgutils.get_item_pointer(
            context, builder, array_type, structure, [arguments[1]], wraparound=False
        )
        byte_pointer = ir.IntType(8).as_pointer()
        prefetch = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [byte_pointer, *[ir.IntType(32)] * 3]),
            "llvm.prefetch.p0",
        )
        start = builder.bitcast(pointer, byte_pointer)
        size = context.get_abi_sizeof(context.get_data_type(array_type.dtype))
        for offset in range(0, size, 64):
            line = builder.gep(start, [ir.IntType(64)(offset)])
            builder.call(prefetch, [line, *(ir.IntType(32)(value) for value in (0, 3, 1))])
        return context.get_dummy_value()

    return types.none(array, index), codegen


@numba.njit(cache=CACHE, inline="always")
def _mix(value, word):
    value = value * MULTIPLIER
    value ^= value >> SHIFT
    return value ^ word


@numba.njit(cache=CACHE, inline="always")
def key_hash(vrf_id, protocol, low_hi, low_lo, low_port, high_hi, high_lo, high_port, seed):
    """A 64-bit hash of a session key (multiply, xor-shift over its words)."""
    small = (
        (np.uint64(vrf_id) << np.uint64(32))
        | (np.uint64(low_port) << np.uint64(16))
        | np.uint64(high_port)
    )
    value = np.uint64(protocol) ^ seed
    value = _mix(value, small)
    value = _mix(value, low_lo)
    value = _mix(value, high_lo)
    value = _mix(value, low_hi)
    value = _mix(value, high_hi)
    value = value * MULTIPLIER
    return value ^ (value >> SHIFT)


@numba.njit(cache=CACHE, inline="always")
def _canonical(src_hi, src_lo, src_port, dst_hi, dst_lo, dst_port):
    """(turned around, low endpoint, high endpoint): the lower endpoint first, by address
    then port, so that both directions of a conversation meet on one key."""
    if src_hi > dst_hi or (
        src_hi == dst_hi and (src_lo > dst_lo or (src_lo == dst_lo and src_port > dst_port))
    ):
        return True, dst_hi, dst_lo, dst_port, src_hi, src_lo, src_port
    return False, src_hi, src_lo, src_port, dst_hi, dst_lo, dst_port


@numba.njit(cache=CACHE, inline="always")
def _saturating(total, value):
    """total + value, held at 2**64-1 (RFC 7011 counters are unsigned64)."""
    added = total + value
    return UINT64_MAX if added < total else added


@numba.njit(cache=CACHE, inline="always")
def _add_a(row, packets, octets, first, last, flags, exporter):
    """A record's counters into side a; only bytes count from a record without packets."""
    row.a_packets = _saturating(row.a_packets, packets)
    row.a_bytes = _saturating(row.a_bytes, octets)
    if packets > 0:
        row.a_first = min(row.a_first, first)
        row.a_last = max(row.a_last, last)
        row.a_flags |= flags
        row.a_exporter = max(row.a_exporter, exporter)


@numba.njit(cache=CACHE, inline="always")
def _add_b(row, packets, octets, first, last, flags, exporter):
    """_add_a for side b."""
    row.b_packets = _saturating(row.b_packets, packets)
    row.b_bytes = _saturating(row.b_bytes, octets)
    if packets > 0:
        row.b_first = min(row.b_first, first)
        row.b_last = max(row.b_last, last)
        row.b_flags |= flags
        row.b_exporter = max(row.b_exporter, exporter)


@numba.njit(cache=CACHE)
def index_shift(slots):
    """How far a hash is shifted right to give a slot: its top bits pick it."""
    bits = 0
    while (1 << bits) < len(slots):
        bits += 1
    return np.uint64(64 - bits)


# nogil: a loop over a batch, or over the table, lets the collector's writer thread run
@numba.njit(cache=CACHE, nogil=True)
def merge(
    rows,
    size,
    slots,
    seed,
    hash_mask,
    vrf_id,
    protocol,
    src_hi,
    src_lo,
    src_port,
    dst_hi,
    dst_lo,
    dst_port,
    request,
    packets,
    octets,
    rev_packets,
    rev_octets,
    start,
    end,
    flags,
    rev_flags,
    exporter,
    now,
    arrived,
):
    """Merge records into the sessions rows[:size]; returns the new size. Each record is
    turned to its canonical orientation (the lower endpoint first, by address then port),
    finds its session (linear probing; keys are compared, never trusted to the hash), or
    adds a row after the others, numbered in the order sessions arrive (`arrived`: how
    many arrived before); then its forward counters go to the side it comes from, its
    reverse ones (RFC 5103) to the other, and the row's created and touched times take the
    minimum and maximum of `now`."""
    first_new = size
    shift = index_shift(slots)
    last_slot = len(slots) - 1
    count = len(protocol)
    hashes = np.empty(count, np.uint64)  # first: to fetch slots and rows ahead
    for i in range(count):
        _, low_hi, low_lo, low_port, high_hi, high_lo, high_port = _canonical(
            src_hi[i], src_lo[i], src_port[i], dst_hi[i], dst_lo[i], dst_port[i]
        )
        hashed = key_hash(
            vrf_id[i], protocol[i], low_hi, low_lo, low_port, high_hi, high_lo, high_port, seed
        )
        hashes[i] = hashed & hash_mask
    half = PREFETCH_AHEAD // 2
    for i in range(count):
        # a record's slot, then its row, are on their way while the records before merge:
        # each record waits for memory twice (slot, then row), and would, one by one
        if i + PREFETCH_AHEAD < count:
            _prefetch(slots, np.int64(hashes[i + PREFETCH_AHEAD] >> shift))
        if i + half < count:
            ahead = slots[np.int64(hashes[i + half] >> shift)]
            if ahead != EMPTY:
                _prefetch(rows, np.int64(ahead & ROW_BITS) - 1)
        swap, low_hi, low_lo, low_port, high_hi, high_lo, high_port = _canonical(
            src_hi[i], src_lo[i], src_port[i], dst_hi[i], dst_lo[i], dst_port[i]
        )
        vrf, proto = vrf_id[i], protocol[i]
        hashed = hashes[i]
        tag = hashed & HASH_BITS
        position = np.int64(hashed >> shift)
        while True:
            held = slots[position]
            if held == EMPTY:
                found = size
                size += 1
                slots[position] = tag | np.uint64(found + 1)
                row = rows[found]
                row.vrf_id, row.protocol = vrf, proto
                row.low_hi, row.low_lo, row.low_port = low_hi, low_lo, low_port
                row.high_hi, row.high_lo, row.high_port = high_hi, high_lo, high_port
                row.a_packets = row.a_bytes = row.b_packets = row.b_bytes = 0
                row.a_first = row.b_first = NO_TIME
                row.a_last = row.b_last = -1
                row.a_flags = row.b_flags = row.a_exporter = row.b_exporter = 0
                row.created = row.touched = now
                row.arrival = arrived + (found - first_new)
                break
            if (held & HASH_BITS) == tag:
                found = np.int64(held & ROW_BITS) - 1
                row = rows[found]
                if (
                    row.low_lo == low_lo
                    and row.high_lo == high_lo
                    and row.low_port == low_port
                    and row.high_port == high_port
                    and row.protocol == proto
                    and row.low_hi == low_hi
                    and row.high_hi == high_hi
                    and row.vrf_id == vrf
                ):
                    row.created = min(row.created, now)
                    row.touched = max(row.touched, now)
                    break
            position = (position + 1) & last_slot
        forward_flags = np.uint32(flags[i]) | (np.uint32(request[i]) << REQUEST_SHIFT)
        reverse_flags = np.uint32(rev_flags[i])
        if swap:
            _add_b(row, packets[i], octets[i], start[i], end[i], forward_flags, exporter[i])
            _add_a(row, rev_packets[i], rev_octets[i], start[i], end[i], reverse_flags, exporter[i])
        else:
            _add_a(row, packets[i], octets[i], start[i], end[i], forward_flags, exporter[i])
            _add_b(row, rev_packets[i], rev_octets[i], start[i], end[i], reverse_flags, exporter[i])
    return size


@numba.njit(cache=CACHE, inline="always")
def _row_hash(row, seed, hash_mask):
    """The hash of a row's key, as the merge took it."""
    return (
        key_hash(
            row.vrf_id,
            row.protocol,
            row.low_hi,
            row.low_lo,
            row.low_port,
            row.high_hi,
            row.high_lo,
            row.high_port,
            seed,
        )
        & hash_mask
    )


@numba.njit(cache=CACHE, nogil=True)
def index(rows, size, slots, seed, hash_mask):
    """Index rows[:size] (distinct keys) into empty `slots`. The rows are read in order,
    the slots at random: each slot is fetched ahead while the rows before it go in (one
    by one, each waited for memory: ~400 ns a row on this project's VM, 0.2 s for a
    table of 500,000)."""
    shift = index_shift(slots)
    last_slot = len(slots) - 1
    hashes = np.empty(min(size, INDEX_CHUNK), np.uint64)
    for start in range(0, size, INDEX_CHUNK):
        stop = min(size, start + INDEX_CHUNK)
        for found in range(start, stop):
            hashes[found - start] = _row_hash(rows[found], seed, hash_mask)
        for found in range(start, stop):
            if found + PREFETCH_AHEAD < stop:
                _prefetch(slots, np.int64(hashes[found + PREFETCH_AHEAD - start] >> shift))
            hashed = hashes[found - start]
            position = np.int64(hashed >> shift)
            while slots[position] != EMPTY:
                position = (position + 1) & last_slot
            slots[position] = (hashed & HASH_BITS) | np.uint64(found + 1)


@numba.njit(cache=CACHE, inline="always")
def _slot_of(slots, shift, hashed, found):
    """The index slot of row `found`, whose key hashes to `hashed` (-1 if the probe meets
    an empty slot first: an index that lost the row, which the tests hold never happens;
    the loops then leave the slot as it is rather than probe forever)."""
    last_slot = len(slots) - 1
    wanted = (hashed & HASH_BITS) | np.uint64(found + 1)
    position = np.int64(hashed >> shift)
    while slots[position] != wanted:
        if slots[position] == EMPTY:
            return -1
        position = (position + 1) & last_slot
    return position


@numba.njit(cache=CACHE, inline="always")
def _unindex(slots, shift, position):
    """Empty a slot, moving back the entries after it that would no longer be found past
    the gap (linear probing's deletion: Knuth, TAOCP vol. 3, 6.4, Algorithm R), so no
    lookup ever stops short of its key and no slot is left marked deleted."""
    last_slot = len(slots) - 1
    gap = position
    probe = position
    while True:
        probe = (probe + 1) & last_slot
        held = slots[probe]
        if held == EMPTY:
            break
        home = np.int64(held >> shift)  # the hash's bits in the slot pick its first slot
        # it stays if its first slot lies past the gap (cyclically): it is nearer the
        # probe than the gap is
        if ((probe - home) & last_slot) >= ((probe - gap) & last_slot):
            slots[gap] = held
            gap = probe
    slots[gap] = EMPTY


@numba.njit(cache=CACHE, nogil=True)
def remove(rows, size, leaving, out, slots, seed, hash_mask):
    """Copy rows[:size] where `leaving` holds to `out` (in row order) and take them out of
    the index; then move the last rows that stay into the rows they left, and point their
    slots there. Returns how many stay, and how many of those that left hold a counter past
    INT64_MAX (counted here, with the row at hand: four numpy passes over the copies' columns
    cost the receive loop more than this whole loop). The work is per leaving session (its
    row, its slot, and one moved row and its slot), not per session in the table: only
    `leaving` is read whole."""
    shift = index_shift(slots)
    holes = np.empty(len(out), np.int64)
    hashes = np.empty(len(out), np.uint64)
    taken = saturated = 0
    for found in range(size):
        if leaving[found]:
            holes[taken] = found
            taken += 1
    for i in range(taken):
        if i + PREFETCH_AHEAD < taken:
            _prefetch(rows, holes[i + PREFETCH_AHEAD])
        row = rows[holes[i]]
        out[i] = row
        hashes[i] = _row_hash(row, seed, hash_mask)
        if max(row.a_packets, row.a_bytes, row.b_packets, row.b_bytes) > INT64_MAX:
            saturated += 1
    for i in range(taken):
        if i + PREFETCH_AHEAD < taken:
            _prefetch(slots, np.int64(hashes[i + PREFETCH_AHEAD] >> shift))
        position = _slot_of(slots, shift, hashes[i], holes[i])
        if position >= 0:
            _unindex(slots, shift, position)
    kept = size - taken
    # the rows that stay past `kept` (the last first) move into the holes before it (the
    # first first); their slots are fetched ahead like the merge's
    moves = 0
    while moves < taken and holes[moves] < kept:
        moves += 1
    sources = np.empty(moves, np.int64)
    last = size - 1
    for i in range(moves):
        while leaving[last]:
            last -= 1
        sources[i] = last
        hashes[i] = _row_hash(rows[last], seed, hash_mask)
        last -= 1
    for i in range(moves):
        if i + PREFETCH_AHEAD < moves:
            _prefetch(slots, np.int64(hashes[i + PREFETCH_AHEAD] >> shift))
            _prefetch(rows, holes[i + PREFETCH_AHEAD])
        hole, source, hashed = holes[i], sources[i], hashes[i]
        rows[hole] = rows[source]
        position = _slot_of(slots, shift, hashed, source)
        if position >= 0:
            slots[position] = (hashed & HASH_BITS) | np.uint64(hole + 1)
    return kept, saturated
