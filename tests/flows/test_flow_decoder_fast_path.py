"""The decoder's fast paths against the general path: one data set filling an IPFIX message,
taken message by message, and runs of such messages decoded together with numpy.

`FlowDecoder.fast_path = False` sends every message through the general walk, the reference.
Both decoders get the same generated exports, cut into the same batches: IPFIX streams whose
sequence numbers follow RFC 7011 (records before the message), softflowd's inclusive count,
or jump; padding, empty data sets, options records (systemInitTimeMilliseconds), template
withdrawals and redefinitions, data before its template, several exporters and domains, and
mutated datagrams; exporters as addresses or (address, port) sockets, batches sent to one of
two collector sockets. Records, counters and sequence state must be identical.
"""

from __future__ import annotations

import random
import struct

from flows_encoder import (
    Field,
    data_set,
    ipfix_message,
    ipfix_options_template_set,
    ipfix_template_set,
    ipfix_withdrawal_set,
    uint,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microseg.flows.decoder import FlowDecoder

FLOW = [Field(8, 4), Field(12, 4), Field(7, 2), Field(11, 2), Field(4, 1), Field(2, 4)]
WIDE = [*FLOW, Field(1, 8), Field(152, 8), Field(153, 8)]
UPTIME = [*FLOW, Field(22, 4), Field(21, 4)]
VARIABLE = [*FLOW, Field(82, 65535)]
LAYOUTS = [FLOW, WIDE, UPTIME, VARIABLE]
OPTIONS_ID = 300
OPTIONS = ipfix_options_template_set(OPTIONS_ID, [Field(144, 4)], [Field(160, 8)])


def record(rng: random.Random, fields: list[Field]) -> bytes:
    wire = b""
    for spec in fields:
        if spec.length == 65535:
            size = rng.choice([0, 3, 254, 300])
            body = rng.randbytes(size)
            wire += bytes([size]) + body if size < 255 else b"\xff" + uint(size, 2) + body
        else:
            wire += rng.randbytes(spec.length)
    return wire


def exports(seed: int, messages: int) -> list[tuple[bytes, str | tuple]]:
    """One shuffled-together series of messages from a few IPFIX streams."""
    rng = random.Random(seed)
    streams = []
    for index in range(rng.randint(1, 4)):
        exporter: str | tuple = rng.choice(["192.0.2.1", "192.0.2.2", "2001:db8::1"])
        if rng.random() < 0.5:  # a socket: two streams may share the address, not the port
            exporter = (exporter, rng.choice([4739, 40000 + index]))
        streams.append(
            {
                "exporter": exporter,
                "domain": index,
                "template": rng.randint(256, 299),
                "layout": rng.choice(LAYOUTS),
                "sequence": rng.choice([0, (1 << 32) - 5]),
                "inclusive": rng.random() < 0.4,
            }
        )
    found = []
    for _ in range(messages):
        s = rng.choice(streams)
        kind = rng.randrange(20)
        sets = []
        if kind == 0 or not found:
            sets.append(ipfix_template_set({s["template"]: s["layout"]}))
        elif kind == 1:
            sets.append(ipfix_withdrawal_set([s["template"]]))
        elif kind == 2:
            s["layout"] = rng.choice(LAYOUTS)
            sets.append(ipfix_template_set({s["template"]: s["layout"]}))
        elif kind == 3:
            sets += [OPTIONS, data_set(OPTIONS_ID, [uint(s["domain"], 4) + rng.randbytes(8)])]
        count = rng.choice([0, 1, 2, 30])
        sets.append(
            data_set(
                s["template"],
                [record(rng, s["layout"]) for _ in range(count)],
                pad=rng.random() < 0.5,
            )
        )
        if kind == 4:
            sets.append(data_set(s["template"], [record(rng, s["layout"])]))
        counted = 0 if s["inclusive"] else count
        if kind == 5:
            s["sequence"] += rng.choice([1, -1, 1000, -count])  # a gap, a reordering
        if s["inclusive"]:
            s["sequence"] += count
        message = ipfix_message(
            sets,
            sequence=s["sequence"] % (1 << 32),
            domain=s["domain"],
            export_time=rng.choice([0, 1_763_578_369]),
        )
        if not s["inclusive"]:
            s["sequence"] += counted
        if kind == 6:  # mutated: a byte flipped, a length broken, truncated
            data = bytearray(message)
            choice = rng.randrange(3)
            if choice == 0:
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            elif choice == 1 and len(data) >= 20:
                struct.pack_into("!H", data, 18, rng.randrange(65536))
            else:
                del data[rng.randrange(len(data)) :]
            message = bytes(data)
        found.append((message, s["exporter"]))
    return found


def state(decoder: FlowDecoder) -> tuple:
    return (
        decoder.stats(),
        dict(decoder._sequence),
        dict(decoder._system_init),
        {stream: sorted(templates) for stream, templates in decoder.templates.items()},
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 1 << 32),
    messages=st.integers(1, 120),
    cut=st.integers(1, 64),
    shortest_run=st.integers(1, 9),
)
def test_the_fast_path_decodes_exactly_as_the_general_path(seed, messages, cut, shortest_run):
    datagrams = exports(seed, messages)
    fast, general = FlowDecoder(), FlowDecoder()
    fast.shortest_run = shortest_run
    general.fast_path = False
    for first in range(0, len(datagrams), cut):
        part = datagrams[first : first + cut]
        destination = ("127.0.0.1", 4739 + (first // cut) % 2 * (seed % 2))
        expected = general.decode(part, destination).to_records()
        assert fast.decode(part, destination).to_records() == expected
        assert state(fast) == state(general)


def test_a_run_of_plain_data_messages_is_decoded_together_and_counts_like_the_general_path():
    """Not vacuous: two exporters' usual messages interleaved go as one run; a gap in one
    stream still counts its lost records, and a stream that follows softflowd's inclusive
    count keeps it."""
    rng = random.Random(9)
    template = ipfix_template_set({256: FLOW})
    datagrams = [(ipfix_message([template]), ("192.0.2.1", port)) for port in (1, 2)]
    sequence = {1: 0, 2: 30}  # port 2 counts the message's own records (inclusive)
    for n in range(12):
        for port in (1, 2):
            body = data_set(256, [record(rng, FLOW) for _ in range(30)], pad=False)
            if port == 1 and n == 6:
                sequence[1] += 60  # 60 records lost
            datagrams.append((ipfix_message([body], sequence=sequence[port]), ("192.0.2.1", port)))
            sequence[port] += 30
    fast, general = FlowDecoder(), FlowDecoder()
    general.fast_path = False
    runs = []
    original = fast._ipfix_run

    def spy(part, *args):
        runs.append((len(part), original(part, *args)))
        return runs[-1][1]

    fast._ipfix_run = spy  # type: ignore[method-assign]
    assert fast.decode(datagrams).to_records() == general.decode(datagrams).to_records()
    assert runs == [(24, True)]
    assert state(fast) == state(general)
    exporter = fast.counters.exporters["192.0.2.1"]
    assert (exporter.records, exporter.sequence_gaps, exporter.lost_records) == (720, 2, 60)


def test_the_fast_path_is_taken_for_plain_data_messages_and_counts_like_the_general_path():
    """Not vacuous: the usual message goes the fast way, and a gap still counts as lost."""
    template = ipfix_template_set({256: FLOW})
    rng = random.Random(7)
    body = [data_set(256, [record(rng, FLOW) for _ in range(30)], pad=False) for _ in range(3)]
    messages = [
        ipfix_message([template], sequence=0),
        ipfix_message([body[0]], sequence=0),
        ipfix_message([body[1]], sequence=30),
        ipfix_message([body[2]], sequence=90),  # 30 records lost
    ]
    fast, general = FlowDecoder(), FlowDecoder()
    general.fast_path = False
    taken = []
    original = fast._ipfix_one_data_set

    def spy(*args):
        taken.append(original(*args))
        return taken[-1]

    fast._ipfix_one_data_set = spy
    datagrams = [(m, "192.0.2.1") for m in messages]
    assert fast.decode(datagrams).to_records() == general.decode(datagrams).to_records()
    assert taken == [False, True, True, True]
    for decoder in (fast, general):
        exporter = decoder.counters.exporters["192.0.2.1"]
        assert (exporter.records, exporter.sequence_gaps, exporter.lost_records) == (90, 1, 30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1 << 32), messages=st.integers(1, 120))
def test_a_batch_holds_the_records_its_datagrams_hold_one_by_one(seed, messages):
    """Streams that share a template layout are decoded as one (their records, exporters,
    domains and time bases side by side): a batch gives, record for record, what each of
    its datagrams gives alone (in another order: grouped by stream), and the same counters."""
    datagrams = exports(seed, messages)
    whole, alone = FlowDecoder(), FlowDecoder()
    alone.fast_path = False
    batch = whole.decode(datagrams, ("127.0.0.1", 4739)).to_records()
    one_by_one = [
        record
        for datagram in datagrams
        for record in alone.decode([datagram], ("127.0.0.1", 4739)).to_records()
    ]
    assert sorted(batch, key=repr) == sorted(one_by_one, key=repr)
    assert state(whole) == state(alone)


def test_exporters_sharing_a_template_layout_keep_their_own_records():
    """Not vacuous: three exporters send the same template, in runs and in single messages
    (a template set with data), interleaved; each record keeps its exporter, domain and
    export time."""
    rng = random.Random(5)
    datagrams = []
    for index, exporter in enumerate(["192.0.2.1", "192.0.2.2", "2001:db8::7"]):
        sets = [ipfix_template_set({256 + index: FLOW})]
        datagrams.append((ipfix_message(sets, domain=index, export_time=1000 + index), exporter))
    for n in range(30):
        for index, exporter in enumerate(["192.0.2.1", "192.0.2.2", "2001:db8::7"]):
            sets = [data_set(256 + index, [record(rng, FLOW) for _ in range(2)], pad=False)]
            if n % 10 == 9:  # not a one-data-set message: the general path, amid the runs
                sets.insert(0, ipfix_template_set({256 + index: FLOW}))
            message = ipfix_message(sets, sequence=2 * n, domain=index, export_time=n * 7 + index)
            datagrams.append((message, exporter))
    decoder = FlowDecoder()
    records = decoder.decode(datagrams).to_records()
    assert len(records) == 180
    seen = {(row["exporter"], row["observation_domain"], row["start_ms"]) for row in records}
    expected = {
        (exporter, index, (n * 7 + index) * 1000)
        for n in range(30)
        for index, exporter in enumerate(["192.0.2.1", "192.0.2.2", "2001:db8::7"])
    }
    assert seen == expected
