"""Bad input: 100,000 malformed datagrams derived from real softflowd exports.

No exception escapes the decoder, memory stays bounded (template, stream and pending caps),
error counters rise, and the real datagrams still decode exactly afterwards.
"""

from __future__ import annotations

import random
import shutil
import socket
import struct
from collections import Counter

import pytest
from flows_encoder import Field, data_set, ipfix_message, ipfix_template_set, uint
from flows_traffic import seed_lab_traffic, write_pcap
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microseg.flows.decoder import FlowDecoder
from microseg.flows.demo import SEED_LAB_IPFIX
from microseg.flows.replay import read_ipfix_file, softflowd_replay

MUTATED_DATAGRAMS = 100_000
EXPORTERS = ["127.0.0.1", "127.0.0.2", "::1"]


def softflowd_datagrams(pcap, version: int, biflow: bool) -> list[bytes]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(0.3)
        softflowd_replay(pcap, "127.0.0.1", receiver.getsockname()[1], version, biflow)
        datagrams = []
        try:
            while True:
                datagrams.append(receiver.recv(65535))
        except TimeoutError:
            return datagrams


@pytest.fixture(scope="module")
def real_datagrams(tmp_path_factory) -> list[bytes]:
    """softflowd's own IPFIX, NetFlow v9 and biflow datagrams (the shipped capture without it)."""
    if not shutil.which("softflowd"):
        return read_ipfix_file(SEED_LAB_IPFIX)
    pcap = write_pcap(seed_lab_traffic(), tmp_path_factory.mktemp("fuzz") / "lab.pcap")
    found = []
    for version, biflow in ((10, False), (9, False), (10, True)):
        found += softflowd_datagrams(pcap, version, biflow)
    return found


def mutate(datagram: bytes, rng: random.Random) -> bytes:
    data = bytearray(datagram)
    kind = rng.randrange(9)
    if kind == 0:  # bit flips
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncation
        del data[rng.randrange(len(data)) :]
    elif kind == 2:  # wrong message length
        struct.pack_into("!H", data, 2, rng.randrange(65536))
    elif kind == 3 and len(data) > 24:  # wrong or huge set length
        offset = 16 if data[1] == 10 else 20
        struct.pack_into(
            "!H", data, offset + 2, rng.choice([0, 1, 3, 0xFFFF, rng.randrange(65536)])
        )
    elif kind == 4 and len(data) > 28:  # a zero field length somewhere in a template
        position = rng.randrange(20, len(data) - 2) & ~1
        struct.pack_into("!H", data, position, 0)
    elif kind == 5 and len(data) > 24:  # template / set ids below 256
        position = rng.randrange(16, len(data) - 2) & ~1
        struct.pack_into("!H", data, position, rng.randrange(256))
    elif kind == 6:  # a template flood: many random template ids, softflowd's fields
        return template_flood(rng)
    elif kind == 7:  # garbage appended or prepended
        junk = rng.randbytes(rng.randrange(1, 64))
        return bytes(data + junk) if rng.random() < 0.5 else junk + bytes(data)
    else:  # random bytes behind a valid-looking header
        return bytes(data[:20]) + rng.randbytes(rng.randrange(0, 200))
    return bytes(data)


def template_flood(rng: random.Random) -> bytes:
    fields = [Field(8, 4), Field(12, 4), Field(2, 4), Field(rng.randrange(1, 400), 2)]
    templates = {rng.randrange(256, 65536): fields for _ in range(40)}
    return ipfix_message([ipfix_template_set(templates)], domain=rng.randrange(8))


@pytest.mark.slow
def test_a_hundred_thousand_malformed_datagrams(real_datagrams):
    rng = random.Random(20251119)
    decoder = FlowDecoder(max_templates_per_exporter=64, max_streams=32, max_pending_sets=128)
    batch = []
    for index in range(MUTATED_DATAGRAMS):
        seed = real_datagrams[index % len(real_datagrams)]
        batch.append((mutate(seed, rng), EXPORTERS[index % len(EXPORTERS)]))
        if len(batch) == 256:
            decoder.decode(batch)
            batch = []
    decoder.decode(batch)
    counters = decoder.counters
    assert counters.datagrams == MUTATED_DATAGRAMS
    assert counters.decode_errors > MUTATED_DATAGRAMS // 4
    assert counters.template_evictions > 0
    # memory stays bounded: every cache is capped
    assert len(decoder.templates) <= 32
    assert all(len(t) <= 64 for t in decoder.templates.values())
    assert decoder.stats()["pending_sets"] <= 128
    # and the real datagrams still decode exactly as on a fresh decoder (templates refresh);
    # data sets held from the fuzz for those templates may decode along with them
    fresh = FlowDecoder().decode([(d, "127.0.0.1") for d in real_datagrams]).to_records()
    after = decoder.decode([(d, "127.0.0.1") for d in real_datagrams]).to_records()
    missing = Counter(tuple(r.values()) for r in fresh) - Counter(tuple(r.values()) for r in after)
    assert not missing
    assert len(fresh) >= 22


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.lists(st.sampled_from([1, 2, 3, 4, 6, 8, 16]), min_size=0, max_size=6),
    elements=st.lists(st.integers(1, 500), min_size=6, max_size=6),
    enterprise=st.sampled_from([0, 0, 29305, 9]),
    count=st.integers(0, 40),
)
def test_any_template_shape_decodes_its_records(lengths, elements, enterprise, count):
    fields = [Field(8, 4), Field(12, 4)]
    fields += [Field(e, n, enterprise) for e, n in zip(elements, lengths, strict=False)]
    record = bytes([10, 0, 0, 1, 10, 0, 0, 2]) + bytes(sum(lengths))
    message = ipfix_message(
        [ipfix_template_set({256: fields}), data_set(256, [record] * count, pad=True)]
    )
    decoder = FlowDecoder()
    batch = decoder.decode([(message, "127.0.0.1")])
    assert decoder.counters.decode_errors == 0
    assert len(batch) == count
    assert batch.to_records()[0]["src"] == "10.0.0.1" if count else len(batch) == 0


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=300), version=st.sampled_from([9, 10]))
def test_random_bytes_after_a_header_never_raise(payload, version):
    header = struct.pack("!HH", version, 20 + len(payload) if version == 10 else 1)
    decoder = FlowDecoder()
    decoder.decode([(header + bytes(16) + payload, "127.0.0.1")])
    decoder.decode([(header + uint(0, 2), "127.0.0.1")])
    assert decoder.counters.datagrams == 2


def test_mutated_datagrams_through_collector_store_and_listing(real_datagrams, tmp_path, run_cli):
    from microseg.flows.collector import FlowCollector
    from microseg.flows.flowstore import FlowStore, read_sessions

    rng = random.Random(7)
    collector = FlowCollector(FlowStore(tmp_path))
    for first in range(0, 10_000, 500):
        batch = [
            (mutate(real_datagrams[i % len(real_datagrams)], rng), EXPORTERS[i % 3])
            for i in range(first, first + 500)
        ]
        collector.receive(batch, now=first)
        collector.flush_expired(now=first)
    collector.flush_all()
    assert read_sessions(tmp_path).num_rows > 0
    listed = run_cli("sessions", "list", "--store", str(tmp_path), "--json")
    assert listed.exit_code == 0 and listed.stdout.count("\n") > 0
