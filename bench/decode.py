"""Decode benchmark: IPFIX datagrams with softflowd's template, three decoders, one run.

A stream of DATAGRAMS IPFIX messages (softflowd 1.1.0's IPv4 template, taken from the shipped
capture, RECORDS_PER_DATAGRAM records each) is decoded by
  * microseg's FlowDecoder (batches of BATCH datagrams, as the collector hands them over),
  * the PyPI `netflow` package's IPFIX parser (`netflow.ipfix.IPFIXExportPacket`), the baseline,
  * a plain `struct.unpack_from` loop over the records (the second baseline).
Prints one JSON line: records/s for each and microseg's ratio to both.

    python bench/decode.py
"""

from __future__ import annotations

import json
import random
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from microseg.flows.decoder import FlowDecoder  # noqa: E402
from microseg.flows.demo import SEED_LAB_IPFIX  # noqa: E402
from microseg.flows.replay import read_ipfix_file  # noqa: E402

DATAGRAMS = 20_000
RECORDS_PER_DATAGRAM = 30
BATCH = 1024
TEMPLATE_ID = 1024
# softflowd's template 1024: src, dst, start ms, end ms, octets, packets, in/out interface,
# direction, end reason, ports, protocol, TCP flags, IP version, TOS (50 bytes)
RECORD = struct.Struct("!4s4sQQIIIIBBHHBBBB")
HEADER = struct.Struct("!HHIII")


def softflowd_template_set() -> bytes:
    """The template set (id 2) of softflowd's first message in the shipped capture."""
    message = read_ipfix_file(SEED_LAB_IPFIX)[0]
    position = HEADER.size
    while position < len(message):
        set_id, length = struct.unpack_from("!HH", message, position)
        if set_id == 2:
            return message[position : position + length]
        position += length
    raise SystemExit("no template set in the shipped capture")


def stream() -> list[bytes]:
    rng = random.Random(1)
    template_set = softflowd_template_set()
    messages, sequence = [], 0
    start = 1_763_578_369_000
    for index in range(DATAGRAMS):
        records = b"".join(
            RECORD.pack(
                rng.randbytes(4),
                rng.randbytes(4),
                start + index,
                start + index + 40,
                rng.randrange(40, 1_500_000),
                rng.randrange(1, 1000),
                0,
                0,
                rng.randrange(2),
                2,
                rng.randrange(49152, 65536),
                rng.choice((22, 53, 80, 443)),
                rng.choice((6, 17)),
                0x1B,
                4,
                0,
            )
            for _ in range(RECORDS_PER_DATAGRAM)
        )
        data_set = struct.pack("!HH", TEMPLATE_ID, 4 + len(records)) + records
        body = (template_set if index == 0 else b"") + data_set
        messages.append(HEADER.pack(10, 16 + len(body), 1_763_578_369, sequence, 0) + body)
        sequence += RECORDS_PER_DATAGRAM
    return messages


def run_microseg(messages: list[bytes]) -> int:
    decoder = FlowDecoder()
    records = 0
    for first in range(0, len(messages), BATCH):
        batch = [(m, "10.255.1.11") for m in messages[first : first + BATCH]]
        records += len(decoder.decode(batch))
    return records


def run_netflow(messages: list[bytes]) -> int:
    from netflow.ipfix import IPFIXExportPacket

    templates: dict = {}
    return sum(len(IPFIXExportPacket(m, templates).flows) for m in messages)


def run_struct_loop(messages: list[bytes]) -> int:
    rows = []
    for message in messages:
        length = HEADER.unpack_from(message)[1]
        position = HEADER.size
        while position < length:
            set_id, set_length = struct.unpack_from("!HH", message, position)
            if set_id == TEMPLATE_ID:
                end = position + set_length
                offset = position + 4
                while end - offset >= RECORD.size:
                    rows.append(RECORD.unpack_from(message, offset))
                    offset += RECORD.size
            position += set_length
    return len(rows)


def measure(function, messages, repeat: int) -> tuple[int, float]:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        records = function(messages)
        best = min(best, time.perf_counter() - began)
    return records, best


def main() -> None:
    messages = stream()
    expected = DATAGRAMS * RECORDS_PER_DATAGRAM
    results = {}
    for name, function, repeat in (
        ("microseg", run_microseg, 5),
        ("struct_loop", run_struct_loop, 3),
        ("netflow", run_netflow, 1),
    ):
        records, seconds = measure(function, messages, repeat)
        if records != expected:
            raise SystemExit(f"{name} decoded {records} records, expected {expected}")
        results[name] = records / seconds
    print(
        json.dumps(
            {
                "bench": "decode",
                "datagrams": DATAGRAMS,
                "records": expected,
                "records_per_datagram": RECORDS_PER_DATAGRAM,
                "batch_datagrams": BATCH,
                "microseg_records_per_s": round(results["microseg"]),
                "netflow_records_per_s": round(results["netflow"]),
                "struct_loop_records_per_s": round(results["struct_loop"]),
                "ratio_vs_netflow": round(results["microseg"] / results["netflow"], 1),
                "ratio_vs_struct_loop": round(results["microseg"] / results["struct_loop"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
