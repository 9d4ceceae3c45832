"""NetFlow version 9 (RFC 3954) wire format: packet header, flowset walk, templates."""

from __future__ import annotations

import struct

from microseg.flows.ipfix import SET_HEADER, MalformedDatagram
from microseg.flows.templates import FieldSpec

VERSION = 9
HEADER = struct.Struct("!HHIIII")  # version, count, sysUptime, unix secs, sequence, source id
TEMPLATE_FLOWSET_ID = 0
OPTIONS_TEMPLATE_FLOWSET_ID = 1
MIN_DATA_FLOWSET_ID = 256


def walk_flowsets(data: bytes, start: int) -> list[tuple[int, int, int]]:
    """(flowset id, content start, content end); up to 3 trailing pad bytes are tolerated."""
    sets = []
    position, end = start, len(data)
    while end - position >= 4:
        set_id, length = SET_HEADER.unpack_from(data, position)
        if length < 4 or position + length > end:
            raise MalformedDatagram(f"flowset {set_id} length {length} overruns the packet")
        if 1 < set_id < MIN_DATA_FLOWSET_ID:
            raise MalformedDatagram(f"reserved flowset id {set_id}")
        sets.append((set_id, position + 4, position + length))
        position += length
    return sets


def parse_template_records(data: bytes, start: int, end: int):
    """(template id, fields, 0) for each template record of a template flowset (RFC 3954 5.2)."""
    records = []
    position = start
    while end - position >= 4:
        template_id, field_count = SET_HEADER.unpack_from(data, position)
        position += 4
        if template_id < MIN_DATA_FLOWSET_ID:
            raise MalformedDatagram(f"template id {template_id} is below 256")
        if field_count == 0 or end - position < 4 * field_count:
            raise MalformedDatagram(f"template {template_id} truncated")
        fields = []
        for _ in range(field_count):
            element, length = SET_HEADER.unpack_from(data, position)
            position += 4
            if length == 0 or length == 65535:
                raise MalformedDatagram(f"field type {element} has length {length}")
            fields.append(FieldSpec(element, length))
        records.append((template_id, tuple(fields), 0))
    return records


def parse_options_template_records(data: bytes, start: int, end: int):
    """(template id, fields, scope count) of an options template flowset (RFC 3954 6.1).

    Scope and option lengths are in bytes; the flowset is padded to 4 bytes.
    """
    records = []
    position = start
    while end - position >= 6:
        template_id, scope_length, option_length = struct.unpack_from("!HHH", data, position)
        position += 6
        if template_id < MIN_DATA_FLOWSET_ID:
            raise MalformedDatagram(f"options template id {template_id} is below 256")
        if scope_length % 4 or option_length % 4 or scope_length == 0:
            raise MalformedDatagram(f"options template {template_id}: bad lengths")
        if end - position < scope_length + option_length:
            raise MalformedDatagram(f"options template {template_id} truncated")
        fields = []
        for _ in range((scope_length + option_length) // 4):
            element, length = SET_HEADER.unpack_from(data, position)
            position += 4
            if length == 0 or length == 65535:
                raise MalformedDatagram(f"field type {element} has length {length}")
            fields.append(FieldSpec(element, length))
        records.append((template_id, tuple(fields), scope_length // 4))
    return records
