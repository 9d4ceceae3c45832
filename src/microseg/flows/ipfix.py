"""IPFIX (RFC 7011) wire format: message header, set walk, (options) template records.

Knows nothing of sessions or sockets; `decoder.py` turns data sets into columns.
"""

from __future__ import annotations

import functools
import struct
from operator import itemgetter

import numpy as np

from microseg.flows.templates import FieldSpec

VERSION = 10
HEADER = struct.Struct("!HHIII")  # version, length, export time, sequence, observation domain
SET_HEADER = struct.Struct("!HH")
TEMPLATE_SET_ID = 2
OPTIONS_TEMPLATE_SET_ID = 3
MIN_DATA_SET_ID = 256
# a message header and its first set header, as numpy reads them from many messages at once
HEADS = np.dtype(
    [
        ("version", ">u2"),
        ("length", ">u2"),
        ("export_time", ">u4"),
        ("sequence", ">u4"),
        ("domain", ">u4"),
        ("set_id", ">u2"),
        ("set_length", ">u2"),
    ]
)


class MalformedDatagram(ValueError):
    """A datagram that does not follow the wire format; it is dropped whole."""


def walk_sets(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(set id, content start, content end) of every set; the chain must fill the message."""
    sets = []
    position = start
    while position < end:
        if end - position < 4:
            raise MalformedDatagram(f"{end - position} stray bytes after the last set")
        set_id, length = SET_HEADER.unpack_from(data, position)
        if length < 4 or position + length > end:
            raise MalformedDatagram(f"set {set_id} length {length} overruns the message")
        if set_id < MIN_DATA_SET_ID and set_id not in (TEMPLATE_SET_ID, OPTIONS_TEMPLATE_SET_ID):
            raise MalformedDatagram(f"reserved set id {set_id}")
        sets.append((set_id, position + 4, position + length))
        position += length
    return sets


def one_data_set_runs(messages: list[bytes], shortest: int) -> tuple[np.ndarray, list]:
    """The headers of every message (zeros for one too short to have them) and the runs
    (start, end) of at least `shortest` consecutive messages that are IPFIX, as long as
    their datagram, and hold one data set that fills them, the usual message of an
    exporter: what may be decoded as a run. Nothing here is trusted further than that."""
    size = HEADS.itemsize
    lengths = np.fromiter(map(len, messages), np.int64, len(messages))
    if (lengths >= size).all():  # the usual batch: a C-level map, no Python step a message
        joined = b"".join(map(itemgetter(slice(0, size)), messages))
    else:
        joined = b"".join([data[:size] if len(data) >= size else bytes(size) for data in messages])
    heads = np.frombuffer(joined, HEADS)
    one_set = (
        (heads["version"] == VERSION)
        & (heads["length"] == lengths)
        & (heads["length"] >= size)
        & (heads["set_id"] >= MIN_DATA_SET_ID)
        & (heads["set_length"].astype(np.int64) == lengths - HEADER.size)
    )
    edges = np.flatnonzero(np.diff(np.concatenate(([0], one_set.view(np.int8), [0]))))
    runs = [
        (int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= shortest
    ]
    return heads, runs


# (template id, fields, scope count); fields None: a withdrawal (RFC 7011 8.1)
TemplateRecord = tuple[int, tuple[FieldSpec, ...] | None, int]


def parse_template_records(
    data: bytes, start: int, end: int, options: bool
) -> list[TemplateRecord]:
    """Template records of one (options) template set.

    Each is (template id, fields, scope count); fields is None for a withdrawal (field count
    0, RFC 7011 8.1). A template id of 2 (or 3) with no fields withdraws every template.
    """
    records: list[TemplateRecord] = []
    position = start
    while end - position >= 4:
        template_id, field_count = SET_HEADER.unpack_from(data, position)
        position += 4
        if field_count == 0:
            if template_id < MIN_DATA_SET_ID and template_id not in (2, 3):
                raise MalformedDatagram(f"withdrawal of reserved template id {template_id}")
            records.append((template_id, None, 0))
            continue
        if template_id < MIN_DATA_SET_ID:
            raise MalformedDatagram(f"template id {template_id} is below 256")
        scope_count = 0
        if options:
            if end - position < 2:
                raise MalformedDatagram("options template record truncated")
            (scope_count,) = struct.unpack_from("!H", data, position)
            position += 2
            if scope_count == 0 or scope_count > field_count:
                raise MalformedDatagram(f"options template {template_id}: bad scope count")
        fields, position = _field_specifiers(data, position, end, field_count)
        records.append((template_id, fields, scope_count))
    if any(data[position:end]):
        raise MalformedDatagram("template set padding is not zero")
    return records


def _field_specifiers(
    data: bytes, position: int, end: int, count: int
) -> tuple[tuple[FieldSpec, ...], int]:
    """A template record's `count` field specifiers starting at `position`, and where they end."""
    if end - position >= 4 * count:
        plain = _PLAIN_FIELDS.get(count) or _PLAIN_FIELDS.setdefault(
            count, struct.Struct("!" + "HH" * count)
        )
        values = plain.unpack_from(data, position)
        if not any(element & 0x8000 for element in values[::2]) and all(values[1::2]):
            # the common case: no enterprise elements, no zero lengths
            pairs = zip(values[::2], values[1::2], strict=True)
            fields = tuple(_field_spec(element, length) for element, length in pairs)
            return fields, position + 4 * count
    specifiers: list[FieldSpec] = []
    for _ in range(count):
        if end - position < 4:
            raise MalformedDatagram("template record truncated")
        element, length = SET_HEADER.unpack_from(data, position)
        position += 4
        enterprise = 0
        if element & 0x8000:  # RFC 7011 3.2: enterprise bit, then a 4-byte PEN
            if end - position < 4:
                raise MalformedDatagram("enterprise number truncated")
            (enterprise,) = struct.unpack_from("!I", data, position)
            position += 4
            element &= 0x7FFF
        if length == 0:
            raise MalformedDatagram(f"element {element} has length 0")
        specifiers.append(FieldSpec(element, length, enterprise))
    return tuple(specifiers), position


_PLAIN_FIELDS: dict[int, struct.Struct] = {}


@functools.lru_cache(maxsize=4096)
def _field_spec(element: int, length: int) -> FieldSpec:
    return FieldSpec(element, length)


def variable_record_offsets(
    data: bytes, start: int, end: int, fields: tuple[FieldSpec, ...]
) -> list[list[int]]:
    """Per record, the offset of every field, for templates with variable-length fields.

    RFC 7011 7: a 1-byte length, or 255 then a 2-byte length. This walk is per record by
    nature (each record's layout depends on the previous one); only such templates use it.
    """
    records = []
    position = start
    while position < end:
        record_start = position
        offsets = []
        for spec in fields:
            if spec.length == 65535:
                if position >= end:
                    position = end + 1  # overrun: padding or truncation, decided below
                    break
                length = data[position]
                position += 1
                if length == 255:
                    if end - position < 2:
                        position = end + 1
                        break
                    (length,) = struct.unpack_from("!H", data, position)
                    position += 2
            else:
                length = spec.length
            offsets.append(position)
            position += length
        if position > end:
            if any(data[record_start:end]):  # RFC 7011 3.3.1: only zero padding may follow
                raise MalformedDatagram("data record overruns its set")
            break
        records.append(offsets)
    return records
