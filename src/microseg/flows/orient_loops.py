"""The segment writer's loops over leaving sessions, compiled by numba (orientation.py
calls them).

Turning 100,000 sessions initiator first took numpy and Arrow ~1 us a session (a selection
per column, each distinct address formatted and joined, a sort of the address texts) on the
collector's writer thread, whose CPU the receive loops need. Here two passes over the rows
do it: one works out each session's initiator and its sort key, the other writes the
SESSION_SCHEMA columns in sort order, IPv4 addresses straight into an Arrow string array's
buffers. Only orientation.py imports this module, and only in a collector (numba loads
there, never in other commands); the loops are cached beside this file like merge_loops'.

The order is sort_sessions' (first seen, vrf, protocol, src, sport, dst, dport, the texts
compared as Arrow compares them: byte by byte, a prefix first), reproduced from numbers that
sort as the texts do: a name's rank among the names, and for an IPv4 address the ranks of
its four octets' texts. Two dotted quads first differ in an octet; if one octet's text is
a prefix of the other's ("5" and "50"), the shorter is followed by "." or the end, both
below any digit, so the texts compare as their octets' texts do, octet by octet.
"""

from __future__ import annotations

import numba
import numpy as np

from microseg.flows.merge_loops import CACHE, _prefetch

IPV4_MAPPED = np.uint64(0xFFFF)  # ::ffff:a.b.c.d (RFC 4291 2.5.5.2): the top of the low word
SYN, ACK = np.uint32(0x02), np.uint32(0x10)
FLAGS = np.uint32(0xFFFF)  # merge.REQUEST rides above the TCP flags
TCP = 6
INT64_MAX = np.uint64((1 << 63) - 1)
SMALL_RUN = 64  # rows of one first-seen millisecond sorted by insertion up to this many
PREFETCH_AHEAD = 8  # rows: taken in sort order, each is fetched this far ahead
ADDRESS_BYTES = 15  # "255.255.255.255"


@numba.njit(cache=CACHE, inline="always")
def _low_is_client(row):
    """Did the lower endpoint start the session? sessions.initiator_is_low, for one row."""
    a_has, b_has = row.a_packets > 0, row.b_packets > 0
    if a_has != b_has:
        return a_has
    if row.protocol == TCP:
        a_syn, b_syn = (row.a_flags & SYN) != 0, (row.b_flags & SYN) != 0
        if a_syn != b_syn:
            return a_syn
    a_request, b_request = (row.a_flags >> 16) > 0, (row.b_flags >> 16) > 0
    if a_request != b_request:
        return a_request
    if row.a_first != row.b_first:
        return row.a_first < row.b_first
    return row.low_port >= row.high_port  # same millisecond: the server's port is smaller


@numba.njit(cache=CACHE, inline="always")
def _ipv4_key(address, octet_rank):
    """An IPv4-mapped address's text order: its octets' text ranks, most significant first."""
    key = np.uint64(0)
    for shift in (24, 16, 8, 0):
        key = (key << np.uint64(8)) | octet_rank[(address >> np.uint64(shift)) & np.uint64(255)]
    return key


# nogil: these run on the collector's writer thread, beside the receive loop
@numba.njit(cache=CACHE, nogil=True)
def sort_keys(
    rows, exporters, vrf_rank, protocol_rank, octet_rank, low_is_client, first, upper, lower
):
    """Per session: whether the low endpoint is the client, and its sort key: first seen,
    then `upper` (vrf rank, protocol rank, src) and `lower` (sport, dst, dport). Returns
    False, leaving the rest unwritten, if an address is not IPv4-mapped or an exporter id
    is not below `exporters`."""
    for i in range(len(rows)):
        row = rows[i]
        if (
            row.a_exporter >= exporters
            or row.b_exporter >= exporters
            or row.low_hi != 0
            or row.high_hi != 0
            or (row.low_lo >> np.uint64(32)) != IPV4_MAPPED
            or (row.high_lo >> np.uint64(32)) != IPV4_MAPPED
        ):
            return False
        client = _low_is_client(row)
        low_key = _ipv4_key(row.low_lo, octet_rank)
        high_key = _ipv4_key(row.high_lo, octet_rank)
        src_key, dst_key = (low_key, high_key) if client else (high_key, low_key)
        sport, dport = (row.low_port, row.high_port) if client else (row.high_port, row.low_port)
        low_is_client[i] = client
        first[i] = min(row.a_first, row.b_first)
        upper[i] = (
            (np.uint64(vrf_rank[i]) << np.uint64(40))
            | (np.uint64(protocol_rank[row.protocol]) << np.uint64(32))
            | src_key
        )
        lower[i] = (
            (np.uint64(sport) << np.uint64(48)) | (dst_key << np.uint64(16)) | np.uint64(dport)
        )
    return True


@numba.njit(cache=CACHE, nogil=True)
def sort_ties(order, first, upper, lower):
    """`order`, the rows in a stable order by first seen, made their stable order by
    (first, upper, lower): each run of one millisecond sorted by the rest (by insertion
    when short, else by two stable sorts)."""
    run_upper = np.empty(SMALL_RUN, np.uint64)
    run_lower = np.empty(SMALL_RUN, np.uint64)
    run_rows = np.empty(SMALL_RUN, order.dtype)
    start = 0
    count = len(order)
    while start < count:
        end = start + 1
        while end < count and first[order[end]] == first[order[start]]:
            end += 1
        if end - start > SMALL_RUN:
            run = order[start:end].copy()
            run = run[np.argsort(lower[run], kind="mergesort")]
            order[start:end] = run[np.argsort(upper[run], kind="mergesort")]
        elif end - start > 1:
            for k in range(end - start):  # insertion sort of the run's keys, side by side
                row = order[start + k]
                key_upper, key_lower = upper[row], lower[row]
                j = k - 1
                while j >= 0 and (
                    run_upper[j] > key_upper
                    or (run_upper[j] == key_upper and run_lower[j] > key_lower)
                ):
                    run_upper[j + 1], run_lower[j + 1], run_rows[j + 1] = (
                        run_upper[j],
                        run_lower[j],
                        run_rows[j],
                    )
                    j -= 1
                run_upper[j + 1], run_lower[j + 1], run_rows[j + 1] = key_upper, key_lower, row
            order[start:end] = run_rows[: end - start]
        start = end


@numba.njit(cache=CACHE, inline="always")
def _stored(counter):
    """uint64 -> int64, held at INT64_MAX (sessions._stored_count)."""
    return np.int64(min(counter, INT64_MAX))


@numba.njit(cache=CACHE, inline="always")
def _put_ipv4(address, octet_text, octet_length, offsets, data, i):
    """An address's dotted quad as text i of (offsets, data). Each octet's 4 bytes (its
    text, ".", padding) are stored whole and the next starts where its text and dot end,
    so no loop runs per character; `data` has room for the last one's padding."""
    at = offsets[i]
    for shift in (24, 16, 8, 0):
        octet = (address >> np.uint64(shift)) & np.uint64(255)
        for k in range(4):
            data[at + k] = octet_text[octet, k]
        at += octet_length[octet] + (1 if shift else 0)
    offsets[i + 1] = at


@numba.njit(cache=CACHE, inline="always")
def _put_text(names_offsets, names_data, name, offsets, data, i):
    """Name `name` of (names_offsets, names_data) as text i of (offsets, data)."""
    at = offsets[i]
    for k in range(names_offsets[name], names_offsets[name + 1]):
        data[at] = names_data[k]
        at += 1
    offsets[i + 1] = at


@numba.njit(cache=CACHE, inline="always")
def _texts(count, longest):
    """Room for `count` texts of at most `longest` bytes: Arrow's offsets and bytes (and 3
    bytes more, for _put_ipv4's padding after the last)."""
    offsets = np.empty(count + 1, np.int32)
    offsets[0] = 0
    return offsets, np.empty(count * longest + 3, np.uint8)


@numba.njit(cache=CACHE, nogil=True)
def columns(rows, order, low_is_client, vrf_rank, vrfs, protocols, exporters, octets):
    """The SESSION_SCHEMA columns of the rows in `order`: numbers, and texts as Arrow
    string offsets and bytes (vrf, protocol, src, dst, exporter, rev_exporter); `vrfs`,
    `protocols`, `exporters` are names as (offsets, bytes, longest), `octets` the texts
    of 0-255 as (4 bytes each: the text, ".", padding; the texts' lengths)."""
    count = len(order)
    octet_text, octet_length = octets
    vrf_offsets, vrf_data = _texts(count, vrfs[2])
    protocol_offsets, protocol_data = _texts(count, protocols[2])
    src_offsets, src_data = _texts(count, ADDRESS_BYTES)
    dst_offsets, dst_data = _texts(count, ADDRESS_BYTES)
    exporter_offsets, exporter_data = _texts(count, exporters[2])
    rev_exporter_offsets, rev_exporter_data = _texts(count, exporters[2])
    sport = np.empty(count, np.int32)
    dport = np.empty(count, np.int32)
    fwd_packets = np.empty(count, np.int64)
    fwd_bytes = np.empty(count, np.int64)
    rev_packets = np.empty(count, np.int64)
    rev_bytes = np.empty(count, np.int64)
    complete = np.empty(count, np.int64)
    half_open = np.empty(count, np.int64)
    first_seen = np.empty(count, np.int64)
    last_seen = np.empty(count, np.int64)
    fwd_flags = np.empty(count, np.int32)
    rev_flags = np.empty(count, np.int32)
    for i in range(count):
        if i + PREFETCH_AHEAD < count:
            _prefetch(rows, order[i + PREFETCH_AHEAD])
        row = rows[order[i]]
        if low_is_client[order[i]]:
            src, dst = row.low_lo, row.high_lo
            sport[i], dport[i] = row.low_port, row.high_port
            packets, octets_sent, flags, sender = (
                row.a_packets,
                row.a_bytes,
                row.a_flags,
                row.a_exporter,
            )
            back_packets, back_octets = row.b_packets, row.b_bytes
            back_flags, back_sender = row.b_flags, row.b_exporter
        else:
            src, dst = row.high_lo, row.low_lo
            sport[i], dport[i] = row.high_port, row.low_port
            packets, octets_sent, flags, sender = (
                row.b_packets,
                row.b_bytes,
                row.b_flags,
                row.b_exporter,
            )
            back_packets, back_octets = row.a_packets, row.a_bytes
            back_flags, back_sender = row.a_flags, row.a_exporter
        flags &= FLAGS
        back_flags &= FLAGS
        _put_text(vrfs[0], vrfs[1], vrf_rank[order[i]], vrf_offsets, vrf_data, i)
        _put_text(protocols[0], protocols[1], row.protocol, protocol_offsets, protocol_data, i)
        _put_ipv4(src, octet_text, octet_length, src_offsets, src_data, i)
        _put_ipv4(dst, octet_text, octet_length, dst_offsets, dst_data, i)
        _put_text(exporters[0], exporters[1], sender, exporter_offsets, exporter_data, i)
        _put_text(
            exporters[0], exporters[1], back_sender, rev_exporter_offsets, rev_exporter_data, i
        )
        fwd_packets[i], fwd_bytes[i] = _stored(packets), _stored(octets_sent)
        rev_packets[i], rev_bytes[i] = _stored(back_packets), _stored(back_octets)
        both = packets > 0 and back_packets > 0
        handshake = (flags & SYN) != 0 and (back_flags & (SYN | ACK)) == (SYN | ACK)
        no_flags = (flags | back_flags) == 0
        complete[i] = both and (row.protocol != TCP or handshake or no_flags)
        half_open[i] = packets > 0 and back_packets == 0
        first_seen[i] = min(row.a_first, row.b_first)
        last_seen[i] = max(row.a_last, row.b_last)
        fwd_flags[i], rev_flags[i] = flags, back_flags
    return (
        (vrf_offsets, vrf_data[: vrf_offsets[count]]),
        (protocol_offsets, protocol_data[: protocol_offsets[count]]),
        (src_offsets, src_data[: src_offsets[count]]),
        sport,
        (dst_offsets, dst_data[: dst_offsets[count]]),
        dport,
        fwd_packets,
        fwd_bytes,
        rev_packets,
        rev_bytes,
        complete,
        half_open,
        first_seen,
        last_seen,
        (exporter_offsets, exporter_data[: exporter_offsets[count]]),
        (rev_exporter_offsets, rev_exporter_data[: rev_exporter_offsets[count]]),
        fwd_flags,
        rev_flags,
    )
