"""Structure-aware fuzz of the whole flow path: decoder -> session table -> flow store.

Hypothesis builds *valid-looking* IPFIX and NetFlow v9 exports — template sets and data sets
that follow the wire format — whose values sit at the edges: counters of 0, 2^63 and 2^64-1
in every reduced size (RFC 7011 6.2), times at 1970, 9999 and far beyond in milliseconds,
seconds and NTP format, uptime-relative times, variable-length fields across the 255 escape
(RFC 7011 7), unknown and enterprise elements, RFC 5103 reverse counters, data sets that
arrive before their template. Every record must decode to exactly what was encoded (times
clamped to 1970..9999), counters must saturate and never turn negative, and whatever the
session table holds must be stored and read back unchanged.

Budget: `budget()` examples in every run; `make fuzz` (MICROSEG_FUZZ=long) runs many more.
"""

from __future__ import annotations

import ipaddress
import struct
import tempfile
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow.compute as pc
import pytest
from flows_budget import LONG, budget
from flows_encoder import (
    REVERSE_PEN,
    Field,
    data_set,
    ipfix_message,
    ipfix_template_set,
    netflow9_packet,
    netflow9_template_flowset,
    variable,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microseg.flows.decoder import LATEST_MS, NTP_TO_UNIX_SECONDS, FlowDecoder
from microseg.flows.flowstore import FlowStore, read_sessions
from microseg.flows.sessions import INT64_MAX, SessionTable

EXAMPLES = budget(80, 2000)
FIGURES = Counter()  # datagrams, records, sessions tried (printed by `make fuzz`)

# role -> (element id, enterprise); the IANA numbers RFC 7011 / RFC 3954 share
ELEMENTS = {
    "sport": (7, 0),
    "dport": (11, 0),
    "protocol": (4, 0),
    "packets": (2, 0),
    "bytes": (1, 0),
    "flags": (6, 0),
    "icmp": (32, 0),
    "vrf": (234, 0),
    "rev_packets": (2, REVERSE_PEN),
    "rev_bytes": (1, REVERSE_PEN),
    "rev_flags": (6, REVERSE_PEN),
}
TIME_ELEMENTS = {  # unit -> (start element, end element, length)
    "ms": (152, 153, 8),
    "s": (150, 151, 4),
    "ntp": (156, 157, 8),
    "uptime": (22, 21, 4),
}
# elements microseg does not use: skipped by their length (interfaces, next hop, ToS...)
UNKNOWN = [(10, 4), (14, 4), (15, 4), (5, 1), (136, 1), (60, 1), (89, 4), (300, 3), (480, 13)]


def extreme(length: int) -> st.SearchStrategy[int]:
    top = (1 << (8 * length)) - 1
    edges = [0, 1, top, top - 1, min(top, (1 << 63) - 1), min(top, 1 << 63), top >> 1]
    return st.one_of(st.sampled_from(edges), st.integers(0, top))


@dataclass
class Layout:
    """One template: which roles it carries, in which order, at which length."""

    version: int
    family: int
    fields: list[tuple[str, int, int, int]]  # (role, element, length, enterprise)
    time_unit: str | None

    def template(self) -> list[Field]:
        return [Field(element, length, pen) for _, element, length, pen in self.fields]


@st.composite
def layouts(draw, version: int) -> Layout:
    family = draw(st.sampled_from([4, 6]))
    address = 4 if family == 4 else 16
    source, destination = (8, 12) if family == 4 else (27, 28)
    fields = [("src", source, address, 0), ("dst", destination, address, 0)]
    ipfix = version == 10
    for role, (element, pen) in ELEMENTS.items():
        if pen and not ipfix:
            continue  # reverse elements are IPFIX (RFC 5103)
        if not draw(st.booleans()):
            continue
        if role in ("packets", "bytes", "rev_packets", "rev_bytes"):
            length = draw(st.integers(1, 8))  # RFC 7011 6.2 reduced-size encoding
        elif role in ("sport", "dport", "icmp"):
            length = 2
        elif role in ("flags", "rev_flags"):
            length = draw(st.sampled_from([1, 2]))
        else:
            length = {"protocol": 1, "vrf": 4}[role]
        fields.append((role, element, length, pen))
    time_unit = draw(st.sampled_from([None, "ms", "s", "ntp", "uptime"]))
    if time_unit:
        start, end, length = TIME_ELEMENTS[time_unit]
        fields.append(("start", start, length, 0))
        if draw(st.booleans()):
            fields.append(("end", end, length, 0))
    for element, length in draw(st.lists(st.sampled_from(UNKNOWN), max_size=3)):
        fields.append(("unknown", element, length, 0))
    if ipfix:
        for _ in range(draw(st.integers(0, 2))):
            kind = draw(st.sampled_from(["enterprise", "variable"]))
            if kind == "enterprise":
                fields.append(("unknown", draw(st.integers(1, 500)), draw(st.integers(1, 9)), 9))
            else:
                fields.append(("variable", draw(st.sampled_from([82, 83, 94, 96])), 65535, 0))
    order = draw(st.permutations(range(len(fields))))
    return Layout(version, family, [fields[i] for i in order], time_unit)


@st.composite
def records(draw, layout: Layout) -> list[tuple[bytes, dict]]:
    """Records of a layout: (wire bytes, what was encoded per role)."""
    found = []
    for _ in range(draw(st.integers(1, 12))):
        wire, values = b"", {}
        for role, _, length, _ in layout.fields:
            if role in ("src", "dst"):
                value = draw(st.integers(0, (1 << (8 * length)) - 1))
                if length == 16 and draw(st.integers(0, 5)) == 0:  # ::ffff:a.b.c.d
                    value = 0xFFFF00000000 | (value & 0xFFFFFFFF)
            elif role == "variable":
                blob = draw(st.binary(max_size=300))
                wire += variable(blob)
                continue
            elif role in ("start", "end") and layout.time_unit == "ms":
                value = draw(st.sampled_from([0, LATEST_MS, LATEST_MS + 1, 1 << 63, (1 << 64) - 1]))
                value = draw(st.one_of(st.just(value), st.integers(0, (1 << 64) - 1)))
            else:
                value = draw(extreme(length))
            values.setdefault(role, value)
            wire += value.to_bytes(length, "big")
        found.append((wire, values))
    return found


@dataclass
class Export:
    """Datagrams of one exporter stream and the records they carry."""

    exporter: str
    datagrams: list[bytes] = field(default_factory=list)
    expected: list[dict] = field(default_factory=list)
    mixed: int = 0  # records the decoder must drop (IPv4-mapped beside native IPv6)


@st.composite
def exports(draw) -> list[Export]:
    found = []
    for index in range(draw(st.integers(1, 3))):
        version = draw(st.sampled_from([9, 10]))
        layout = draw(layouts(version))
        export = Export(f"192.0.2.{index + 1}")
        export_seconds = draw(st.sampled_from([0, 1_763_578_369, (1 << 32) - 1]))
        uptime = draw(st.sampled_from([0, 10_000, (1 << 32) - 1]))
        template_id = draw(st.integers(256, 65535))
        sets = [draw(records(layout)) for _ in range(draw(st.integers(1, 3)))]
        data_first = draw(st.booleans())  # RFC 7011 8: data may arrive before its template
        template = layout.template()
        for number, chunk in enumerate(sets):
            body = data_set(template_id, [wire for wire, _ in chunk])
            with_template = number == (1 if data_first and len(sets) > 1 else 0)
            if version == 10:
                parts = [ipfix_template_set({template_id: template})] if with_template else []
                message = ipfix_message([*parts, body], domain=index, export_time=export_seconds)
            else:
                parts = (
                    [netflow9_template_flowset({template_id: template})] if with_template else []
                )
                message = netflow9_packet(
                    [*parts, body], source_id=index, uptime_ms=uptime, unix_seconds=export_seconds
                )
            export.datagrams.append(message)
            for _, values in chunk:
                if mixed(layout, values):
                    export.mixed += 1
                else:
                    export.expected.append(expected_row(layout, values, export_seconds, uptime))
        found.append(export)
    return found


def clamp(ms: int) -> int:
    return min(max(ms, 0), LATEST_MS)


def to_ms(unit: str, value: int, version: int, export_seconds: int, uptime: int) -> int | None:
    """What the record's time means, in Unix ms (None: checked by range only)."""
    if unit == "ms":
        return clamp(value)
    if unit == "s":
        return clamp(value * 1000)
    if unit == "ntp":
        seconds = (value >> 32) - NTP_TO_UNIX_SECONDS
        return clamp(seconds * 1000 + (((value & 0xFFFFFFFF) * 1000) >> 32))
    if version == 10:
        return clamp(value)  # no systemInitTimeMilliseconds was sent: counts from 0
    return None  # NetFlow v9 sysUptime arithmetic with wrap-around: range-checked


def mapped(address: int) -> bool:
    """An IPv4-mapped IPv6 address, ::ffff:a.b.c.d (RFC 4291 2.5.5.2)."""
    return address >> 32 == 0xFFFF


def mixed(layout: Layout, values: dict) -> bool:
    """An IPv6 record pairing a mapped and a native address: the decoder drops it."""
    return layout.family == 6 and mapped(values["src"]) != mapped(values["dst"])


def expected_row(layout: Layout, values: dict, export_seconds: int, uptime: int) -> dict:
    src, dst = values["src"], values["dst"]
    kind = ipaddress.IPv4Address if layout.family == 4 else ipaddress.IPv6Address
    if layout.family == 6 and mapped(src) and mapped(dst):
        src, dst = src & 0xFFFFFFFF, dst & 0xFFFFFFFF  # IPv4, as the session table keeps it
        kind = ipaddress.IPv4Address
    row = {"src": str(kind(src)), "dst": str(kind(dst))}
    for role in ELEMENTS:
        row[role] = values.get(role, 0)
    row["flags"] &= 0xFFFF
    if layout.time_unit is None:
        row["start"] = row["end"] = clamp(export_seconds * 1000)
    else:
        start = to_ms(layout.time_unit, values["start"], layout.version, export_seconds, uptime)
        end = start
        if "end" in values:
            end = to_ms(layout.time_unit, values["end"], layout.version, export_seconds, uptime)
        row["start"], row["end"] = start, end
    return row


def decoded_rows(batch) -> list[dict]:
    rows = []
    for record in batch.to_records():
        rows.append(
            {
                "src": record["src"],
                "dst": record["dst"],
                "sport": record["src_port"],
                "dport": record["dst_port"],
                "protocol": record["protocol"],
                "packets": record["packets"],
                "bytes": record["bytes"],
                "flags": record["tcp_flags"],
                "icmp": record["icmp_type_code"],
                "vrf": record["vrf_id"],
                "rev_packets": record["rev_packets"],
                "rev_bytes": record["rev_bytes"],
                "rev_flags": record["rev_tcp_flags"],
                "start": record["start_ms"],
                "end": record["end_ms"],
            }
        )
    return rows


def comparable(row: dict, exact_times: bool) -> tuple:
    keys = sorted(row) if exact_times else sorted(set(row) - {"start", "end"})
    return tuple((key, row[key]) for key in keys)


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(streams=exports())
def test_valid_looking_exports_with_extreme_values_decode_saturate_and_store(streams):
    decoder = FlowDecoder()
    datagrams = [(d, export.exporter) for export in streams for d in export.datagrams]
    batch = decoder.decode(datagrams)
    FIGURES.update(datagrams=len(datagrams), records=len(batch))
    assert decoder.counters.decode_errors == 0
    assert decoder.counters.mixed_family_records == sum(export.mixed for export in streams)

    # every record decodes to what was encoded
    decoded = decoded_rows(batch)
    expected = [row for export in streams for row in export.expected]
    assert len(decoded) == len(expected)
    exact = all(row["start"] is not None for row in expected)
    assert Counter(comparable(r, exact) for r in decoded) == Counter(
        comparable(r, exact) for r in expected
    )
    assert all(0 <= r["start"] <= LATEST_MS and 0 <= r["end"] <= LATEST_MS for r in decoded)

    # the session table saturates, never overflows, and keeps every packet it can count
    table = SessionTable()
    table.add(batch, now=0)
    sessions = table.flush().oriented()
    FIGURES.update(sessions=sessions.num_rows)
    assert table.counters.records_rejected == 0
    counters = ["fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes"]
    for name in counters:
        values = sessions.column(name).to_numpy()
        assert ((values >= 0) & (values <= INT64_MAX)).all()
    carried = (batch.packets > 0) | (batch.rev_packets > 0)
    for forward, reverse in (("packets", "rev_packets"), ("bytes", "rev_bytes")):
        sent = sum(
            getattr(batch, forward)[carried].tolist() + getattr(batch, reverse)[carried].tolist()
        )
        kept = sum(sum(sessions.column(f"{side}_{forward}").to_pylist()) for side in ("fwd", "rev"))
        assert kept == sent if table.counters.counters_saturated == 0 else kept <= sent
    assert sessions.num_rows <= int(carried.sum())

    # and the store gives back exactly what the table wrote
    with tempfile.TemporaryDirectory(prefix="microseg-fuzz-") as directory:
        store = FlowStore(directory).open()
        store.write(sessions)
        stored = read_sessions(directory, ephemeral_port=None)
        assert stored.num_rows == sessions.num_rows
        for name in counters:
            assert pc.sum(stored.column(name)).as_py() == pc.sum(sessions.column(name)).as_py()
        read_sessions(directory)  # the eph summary sums saturate too
        assert store.scan().bad == []


def test_figures_of_the_long_run(capsys):
    """`make fuzz` prints what it tried (the README's figures come from here)."""
    if LONG:
        with capsys.disabled():
            print(f"\nflows structure-aware fuzz: {dict(FIGURES)}, crashes 0")
    assert EXAMPLES > 0


def test_the_encoder_of_this_suite_round_trips_a_plain_record():
    """The suite's own oracle, checked once against a record decoded by hand."""
    layout = Layout(
        10,
        4,
        [("src", 8, 4, 0), ("dst", 12, 4, 0), ("packets", 2, 3, 0), ("start", 150, 4, 0)],
        "s",
    )
    values = {"src": 0x0A000001, "dst": 0x0A000002, "packets": 0xFFFFFF, "start": 1_763_578_369}
    wire = struct.pack("!IIHBI", values["src"], values["dst"], 0xFFFF, 0xFF, values["start"])
    message = ipfix_message([ipfix_template_set({256: layout.template()}), data_set(256, [wire])])
    (row,) = decoded_rows(FlowDecoder().decode([(message, "192.0.2.1")]))
    assert row == expected_row(layout, values, 0, 0) | {"sport": 0, "dport": 0}
    assert row["packets"] == 0xFFFFFF and row["start"] == 1_763_578_369_000
    assert np.uint64(row["packets"]) == 16_777_215
