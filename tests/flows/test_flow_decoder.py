"""IPFIX and NetFlow v9 decoding, on hand-built datagrams for what softflowd never sends."""

from __future__ import annotations

import ipaddress
import socket

import numpy as np
from flows_encoder import (
    REVERSE_PEN,
    SOFTFLOWD_V4,
    Field,
    address,
    data_set,
    ipfix_message,
    ipfix_options_template_set,
    ipfix_template_set,
    ipfix_withdrawal_set,
    netflow9_options_flowset,
    netflow9_packet,
    netflow9_template_flowset,
    softflowd_v4_record,
    uint,
    variable,
)

from microseg.flows.collector import BackgroundCollector, FlowCollector
from microseg.flows.decoder import FlowDecoder
from microseg.flows.demo import SEED_LAB_IPFIX
from microseg.flows.flowstore import FlowStore, read_sessions
from microseg.flows.replay import read_ipfix_file

EXPORTER = "192.0.2.1"


def dns_query(sport=51841, octets=55, packets=1, start=1_763_578_369_000):
    return softflowd_v4_record(
        "172.18.4.220", "10.100.1.6", start, start + 4, octets, packets, sport, 53, 17, 0
    )


def softflowd_message(records, sequence=0, domain=0, with_template=True):
    sets = [ipfix_template_set({1024: SOFTFLOWD_V4})] if with_template else []
    return ipfix_message([*sets, data_set(1024, records)], sequence=sequence, domain=domain)


def decode(decoder, *datagrams, exporter=EXPORTER):
    return decoder.decode([(d, exporter) for d in datagrams]).to_records()


def test_softflowd_records_become_columns():
    decoder = FlowDecoder()
    rows = decode(decoder, softflowd_message([dns_query(), dns_query(63375, 56, 2)]))
    assert [(r["src"], r["src_port"], r["dst"], r["dst_port"]) for r in rows] == [
        ("172.18.4.220", 51841, "10.100.1.6", 53),
        ("172.18.4.220", 63375, "10.100.1.6", 53),
    ]
    assert [(r["packets"], r["bytes"], r["protocol"]) for r in rows] == [(1, 55, 17), (2, 56, 17)]
    assert rows[0]["start_ms"] == 1_763_578_369_000 and rows[0]["end_ms"] == 1_763_578_369_004
    assert rows[0]["exporter"] == EXPORTER and rows[0]["family"] == 4
    assert decoder.counters.records == 2 and decoder.counters.decode_errors == 0


def test_many_datagrams_are_gathered_per_template_in_order():
    decoder = FlowDecoder()
    first = softflowd_message([dns_query(1000 + i) for i in range(30)])
    rest = [
        softflowd_message([dns_query(2000 + 30 * n + i) for i in range(30)], with_template=False)
        for n in range(50)
    ]
    batch = decoder.decode([(d, EXPORTER) for d in [first, *rest]])
    assert len(batch) == 30 * 51
    assert batch.src_port.tolist() == [1000 + i for i in range(30)] + list(range(2000, 3500))


def test_biflow_reverse_elements_and_unknown_enterprise_element():
    # RFC 5103: reverse elements are the forward element ids under PEN 29305
    template = [
        Field(8, 4),
        Field(12, 4),
        Field(7, 2),
        Field(11, 2),
        Field(4, 1),
        Field(2, 8),
        Field(1, 8),
        Field(6, 2),
        Field(2, 8, REVERSE_PEN),
        Field(1, 8, REVERSE_PEN),
        Field(6, 2, REVERSE_PEN),
        Field(42, 6, 9999),  # some vendor's element: skipped by its length
        Field(152, 8),
    ]
    record = (
        address("10.160.1.115")
        + address("10.100.99.12")
        + uint(43538, 2)
        + uint(22, 2)
        + uint(6, 1)
        + uint(5, 8)
        + uint(211, 8)
        + uint(0x1B, 2)
        + uint(3, 8)
        + uint(131, 8)
        + uint(0x12, 2)
        + b"vendor"
        + uint(1_763_578_370_000, 8)
    )
    message = ipfix_message([ipfix_template_set({300: template}), data_set(300, [record])])
    (row,) = decode(FlowDecoder(), message)
    assert (row["packets"], row["bytes"], row["tcp_flags"]) == (5, 211, 0x1B)
    assert (row["rev_packets"], row["rev_bytes"], row["rev_tcp_flags"]) == (3, 131, 0x12)
    assert row["start_ms"] == 1_763_578_370_000 == row["end_ms"]


def test_variable_length_elements():
    template = [Field(8, 4), Field(82, 65535), Field(12, 4), Field(2, 4), Field(96, 65535)]
    records = [
        address("10.0.0.1") + variable(b"Et1") + address("10.0.0.2") + uint(7, 4) + variable(b""),
        address("10.0.0.3")
        + variable(b"x" * 300)  # RFC 7011 7.2: 255 escape, then a 2-byte length
        + address("10.0.0.4")
        + uint(9, 4)
        + variable(b"app"),
    ]
    message = ipfix_message([ipfix_template_set({400: template}), data_set(400, records)])
    rows = decode(FlowDecoder(), message)
    assert [(r["src"], r["dst"], r["packets"]) for r in rows] == [
        ("10.0.0.1", "10.0.0.2", 7),
        ("10.0.0.3", "10.0.0.4", 9),
    ]


def test_options_template_records_are_counted_not_flows():
    options = ipfix_options_template_set(
        256, [Field(143, 4)], [Field(160, 8), Field(82, 16)]
    )  # meteringProcessId scope, as softflowd sends it
    record = uint(1, 4) + uint(1_763_578_369_000, 8) + b"/tmp/lab.pcap".ljust(16, b"\0")
    decoder = FlowDecoder()
    rows = decode(decoder, ipfix_message([options, data_set(256, [record])]))
    assert rows == []
    assert decoder.counters.options_records == 1 and decoder.counters.records == 0


def test_template_withdrawal_and_withdraw_all():
    decoder = FlowDecoder()
    assert len(decode(decoder, softflowd_message([dns_query()]))) == 1
    decode(decoder, ipfix_message([ipfix_withdrawal_set([1024])]))  # RFC 7011 8.1
    assert decode(decoder, softflowd_message([dns_query()], with_template=False)) == []
    assert decoder.counters.template_withdrawals == 1
    assert decoder.counters.unknown_template_sets == 1
    decode(decoder, ipfix_message([ipfix_template_set({1024: SOFTFLOWD_V4, 1025: SOFTFLOWD_V4})]))
    decode(decoder, ipfix_message([ipfix_withdrawal_set([2])]))  # id 2: every template
    assert decoder.templates[(EXPORTER, 0, 10, 0, None)] == {}


def test_template_refresh_changes_the_layout():
    decoder = FlowDecoder()
    decode(decoder, softflowd_message([dns_query()]))
    swapped = [Field(12, 4), Field(8, 4), Field(2, 4)]
    message = ipfix_message(
        [
            ipfix_template_set({1024: swapped}),
            data_set(1024, [address("10.0.0.9") + address("10.0.0.8") + uint(4, 4)]),
        ]
    )
    (row,) = decode(decoder, message)
    assert (row["src"], row["dst"], row["packets"]) == ("10.0.0.8", "10.0.0.9", 4)


def test_observation_domains_keep_their_own_templates():
    decoder = FlowDecoder()
    other_layout = [Field(27, 16), Field(28, 16), Field(4, 1), Field(2, 2)]
    v6_record = address("2001:db8::1") + address("2001:db8::2") + uint(58, 1) + uint(3, 2)
    domain_one = softflowd_message([dns_query()], domain=1)
    domain_two = ipfix_message(
        [ipfix_template_set({1024: other_layout}), data_set(1024, [v6_record])], domain=2
    )
    later_one = softflowd_message([dns_query(51842)], domain=1, with_template=False)
    rows = decode(decoder, domain_one, domain_two, later_one)
    by_domain = {(r["observation_domain"], r["src"], r["packets"]) for r in rows}
    assert by_domain == {(1, "172.18.4.220", 1), (2, "2001:db8::1", 3)} and len(rows) == 3


def test_data_before_its_template_is_held_then_decoded():
    decoder = FlowDecoder()
    assert decode(decoder, softflowd_message([dns_query()], with_template=False)) == []
    rows = decode(decoder, ipfix_message([ipfix_template_set({1024: SOFTFLOWD_V4})]))
    assert len(rows) == 1 and rows[0]["src_port"] == 51841
    assert decoder.counters.unknown_template_sets == 1
    assert decoder.counters.unknown_template_decoded == 1


def test_held_data_sets_are_bounded():
    decoder = FlowDecoder(max_pending_sets=10)
    for template_id in range(300, 350):
        message = ipfix_message([data_set(template_id, [dns_query()])])
        decode(decoder, message)
    assert decoder.stats()["pending_sets"] == 10
    assert decoder.counters.unknown_template_dropped == 40


def test_templates_per_exporter_are_capped_and_a_flood_cannot_lock_out_real_ones():
    decoder = FlowDecoder(max_templates_per_exporter=16)
    flood = {256 + i: SOFTFLOWD_V4 for i in range(100)}
    decode(decoder, ipfix_message([ipfix_template_set(flood)]))
    assert len(decoder.templates[(EXPORTER, 0, 10, 0, None)]) == 16
    assert decoder.counters.template_evictions == 84
    assert set(decoder.templates[(EXPORTER, 0, 10, 0, None)]) == set(range(256 + 84, 256 + 100))
    assert len(decode(decoder, softflowd_message([dns_query()]))) == 1


def test_reduced_size_counters_and_time_formats():
    template = [
        Field(8, 4),
        Field(12, 4),
        Field(1, 3),  # RFC 7011 6.2: octetDeltaCount in 3 bytes
        Field(2, 2),
        Field(150, 4),  # flowStartSeconds
        Field(157, 8),  # flowEndNanoseconds, NTP format (RFC 7011 6.1.10)
    ]
    ntp_seconds = 1_763_578_370 + 2_208_988_800
    record = (
        address("10.0.0.1")
        + address("10.0.0.2")
        + uint(70_000, 3)
        + uint(12, 2)
        + uint(1_763_578_369, 4)
        + uint(ntp_seconds, 4)
        + uint(1 << 31, 4)  # half a second
    )
    message = ipfix_message([ipfix_template_set({500: template}), data_set(500, [record])])
    (row,) = decode(FlowDecoder(), message)
    assert (row["bytes"], row["packets"]) == (70_000, 12)
    assert row["start_ms"] == 1_763_578_369_000 and row["end_ms"] == 1_763_578_370_500


def test_netflow9_switched_times_are_relative_to_uptime():
    # RFC 3954: FIRST_SWITCHED / LAST_SWITCHED are sysUptime ms; the header gives both clocks
    template = [Field(8, 4), Field(12, 4), Field(7, 2), Field(11, 2), Field(4, 1)]
    template += [Field(2, 4), Field(1, 4), Field(22, 4), Field(21, 4), Field(6, 1)]
    record = (
        address("10.160.1.115")
        + address("10.100.99.12")
        + uint(43538, 2)
        + uint(22, 2)
        + uint(6, 1)
        + uint(5, 4)
        + uint(211, 4)
        + uint(5_000, 4)
        + uint(9_000, 4)
        + uint(0x1B, 1)
    )
    packet = netflow9_packet(
        [netflow9_template_flowset({260: template}), data_set(260, [record])],
        uptime_ms=10_000,
        unix_seconds=1_763_578_400,
    )
    decoder = FlowDecoder()
    (row,) = decode(decoder, packet)
    assert row["start_ms"] == 1_763_578_400_000 - 10_000 + 5_000
    assert row["end_ms"] == 1_763_578_400_000 - 1_000
    assert (row["src_port"], row["dst_port"], row["packets"], row["tcp_flags"]) == (
        43538,
        22,
        5,
        0x1B,
    )


def test_netflow9_options_template_and_lost_packets():
    options = netflow9_options_flowset(256, [Field(1, 4)], [Field(34, 4), Field(35, 1)])
    decoder = FlowDecoder()
    decode(decoder, netflow9_packet([options, data_set(256, [uint(0, 4) + uint(1, 4) + b"\x02"])]))
    assert decoder.counters.options_records == 1
    decode(decoder, netflow9_packet([], sequence=1))
    decode(decoder, netflow9_packet([], sequence=5))  # 2, 3, 4 never arrived
    exporter = decoder.counters.exporters[EXPORTER]
    assert (exporter.sequence_gaps, exporter.lost_datagrams) == (1, 3)


def test_ipfix_sequence_numbers_count_lost_records():
    decoder = FlowDecoder()
    decode(decoder, softflowd_message([dns_query()] * 3, sequence=0))
    decode(decoder, softflowd_message([dns_query()] * 2, sequence=3, with_template=False))
    assert decoder.counters.exporters[EXPORTER].sequence_gaps == 0
    decode(decoder, softflowd_message([dns_query()], sequence=25, with_template=False))
    exporter = decoder.counters.exporters[EXPORTER]
    assert (exporter.sequence_gaps, exporter.lost_records) == (1, 20)


def test_softflowd_sequence_off_by_one_counts_one_gap():
    # softflowd 1.1.0 numbers a message by the records *including* its own
    decoder = FlowDecoder()
    messages = read_ipfix_file(SEED_LAB_IPFIX)
    decode(decoder, *messages, exporter="127.0.0.1")
    exporter = decoder.counters.exporters["127.0.0.1"]
    assert (exporter.sequence_gaps, exporter.lost_records) == (1, 0)
    assert decoder.counters.decode_errors == 0


def test_a_malformed_datagram_changes_nothing():
    decoder = FlowDecoder()
    good_template = ipfix_template_set({1024: SOFTFLOWD_V4})
    overrun = b"\x04\x00\xff\xf0" + bytes(8)  # a data set claiming 65520 bytes
    message = ipfix_message([good_template, overrun])
    assert decode(decoder, message) == []
    assert decoder.counters.decode_errors == 1
    assert decoder.templates == {}


def test_ipv6_addresses_round_trip():
    template = [Field(27, 16), Field(28, 16), Field(7, 2), Field(11, 2), Field(4, 1)]
    record = address("2001:db8:1::10") + address("2001:db8:99::11") + uint(50010, 2)
    record += uint(443, 2) + uint(6, 1)
    batch = FlowDecoder().decode(
        [(ipfix_message([ipfix_template_set({700: template}), data_set(700, [record])]), "::1")]
    )
    value = (int(batch.src_hi[0]) << 64) | int(batch.src_lo[0])
    assert ipaddress.IPv6Address(value) == ipaddress.IPv6Address("2001:db8:1::10")
    assert batch.family.tolist() == [6] and batch.to_records()[0]["exporter"] == "::1"
    assert np.all(batch.direction == -1)


def test_exporter_counters_are_bounded_too():
    decoder = FlowDecoder(max_streams=4)
    for host in range(10):
        decode(decoder, softflowd_message([dns_query()]), exporter=f"192.0.2.{host}")
        decode(decoder, ipfix_message([data_set(999, [dns_query()])]), exporter=f"192.0.2.{host}")
    assert len(decoder.counters.exporters) == 5 and decoder.counters.exporters["other"].datagrams
    assert len(decoder.templates) <= 4


def test_ipfix_uptime_times_count_from_the_system_init_time_in_options():
    options = ipfix_options_template_set(256, [Field(143, 4)], [Field(160, 8)])
    booted = 1_763_578_000_000
    template = [Field(8, 4), Field(12, 4), Field(22, 4), Field(21, 4)]
    record = address("10.0.0.1") + address("10.0.0.2") + uint(369_000, 4) + uint(370_000, 4)
    message = ipfix_message(
        [
            options,
            data_set(256, [uint(1, 4) + uint(booted, 8)]),
            ipfix_template_set({600: template}),
            data_set(600, [record]),
        ]
    )
    (row,) = decode(FlowDecoder(), message)
    assert (row["start_ms"], row["end_ms"]) == (booted + 369_000, booted + 370_000)


def test_netflow9_switched_times_before_a_sysuptime_wrap():
    """sysUptime is a 32-bit millisecond counter (RFC 3954 5.1) and wraps after 49.7 days:
    a flow that started just before the wrap has FIRST_SWITCHED above the header's uptime."""
    template = [Field(8, 4), Field(12, 4), Field(2, 4), Field(1, 4), Field(22, 4), Field(21, 4)]
    record = address("10.0.0.1") + address("10.0.0.2") + uint(1, 4) + uint(60, 4)
    record += uint((1 << 32) - 3_000, 4) + uint(1_000, 4)  # started 3 s before the wrap
    packet = netflow9_packet(
        [netflow9_template_flowset({260: template}), data_set(260, [record])],
        uptime_ms=5_000,  # 5 s after the wrap
        unix_seconds=1_763_578_400,
    )
    (row,) = decode(FlowDecoder(), packet)
    assert row["start_ms"] == 1_763_578_400_000 - 8_000
    assert row["end_ms"] == 1_763_578_400_000 - 4_000


def test_sequence_numbers_wrap_around_at_2_to_the_32():
    """RFC 7011 3.1 and RFC 3954 5.1: sequence numbers are modulo 2^32; a wrap is no gap."""
    decoder = FlowDecoder()
    decode(decoder, softflowd_message([dns_query()] * 3, sequence=(1 << 32) - 2))
    decode(decoder, softflowd_message([dns_query()], sequence=1, with_template=False))
    decode(decoder, netflow9_packet([], sequence=(1 << 32) - 1))
    decode(decoder, netflow9_packet([], sequence=0))
    exporter = decoder.counters.exporters[EXPORTER]
    assert (exporter.sequence_gaps, exporter.lost_records, exporter.lost_datagrams) == (0, 0, 0)
    decode(decoder, softflowd_message([dns_query()], sequence=7, with_template=False))
    assert (exporter.sequence_gaps, exporter.lost_records) == (1, 5)


def test_per_stream_state_stays_bounded_under_a_flood_of_streams_and_exporters():
    """Sequence numbers are tracked per (exporter, domain) even without templates, and a
    flood of observation domains or spoofed exporters must not grow any table without end."""
    decoder = FlowDecoder(max_streams=4)
    for domain in range(50):  # one exporter, many observation domains, no templates
        decode(decoder, ipfix_message([], sequence=domain, domain=domain))
    for host in range(50):  # many exporters, each with a template and data
        decode(decoder, softflowd_message([dns_query()]), exporter=f"198.51.100.{host}")
        decode(decoder, netflow9_packet([], source_id=host), exporter=f"198.51.100.{host}")
    assert len(decoder._sequence) <= 4
    assert len(decoder._template_order) <= 4
    assert len(decoder._exporter_halves) <= 4
    assert len(decode(decoder, softflowd_message([dns_query()]))) == 1


def test_records_without_time_fields_are_stamped_with_the_export_time():
    """A template with no flow time (some meters send none) takes the message's export time
    (RFC 7011 3.1 Export Time; RFC 3954 5.1 UNIX Secs), not 1970, which retention by age
    would delete at once."""
    template = [Field(8, 4), Field(12, 4), Field(2, 4), Field(1, 4)]
    record = address("10.0.0.1") + address("10.0.0.2") + uint(1, 4) + uint(60, 4)
    ipfix = ipfix_message(
        [ipfix_template_set({300: template}), data_set(300, [record])], export_time=1_763_578_400
    )
    netflow = netflow9_packet(
        [netflow9_template_flowset({300: template}), data_set(300, [record])],
        uptime_ms=10_000,
        unix_seconds=1_763_578_401,
    )
    rows = decode(FlowDecoder(), ipfix, netflow)
    assert [(r["start_ms"], r["end_ms"]) for r in rows] == [
        (1_763_578_400_000, 1_763_578_400_000),
        (1_763_578_401_000, 1_763_578_401_000),
    ]


def test_two_exporters_behind_one_address_keep_their_templates_apart():
    """RFC 7011 8 and 10.3.1: a template belongs to its UDP transport session, the source
    address *and port*; two exporters behind one address (NAT, two meters on one host) may
    both use template 1024 with different layouts."""
    decoder = FlowDecoder()
    v6_layout = [Field(27, 16), Field(28, 16), Field(4, 1), Field(2, 2)]
    v6_record = address("2001:db8::1") + address("2001:db8::2") + uint(58, 1) + uint(3, 2)
    first, second = (EXPORTER, 40001), (EXPORTER, 40002)
    batch = decoder.decode(
        [
            (softflowd_message([dns_query()]), first),
            (ipfix_message([ipfix_template_set({1024: v6_layout})]), second),
            (softflowd_message([dns_query(51842)], with_template=False), first),
            (ipfix_message([data_set(1024, [v6_record])]), second),
        ]
    )
    rows = batch.to_records()
    assert [(r["src"], r["src_port"], r["packets"]) for r in rows] == [
        ("172.18.4.220", 51841, 1),
        ("172.18.4.220", 51842, 1),
        ("2001:db8::1", 0, 3),
    ]
    assert {r["exporter"] for r in rows} == {EXPORTER}  # the stored exporter: its address
    assert decoder.counters.decode_errors == 0


def test_two_exporters_behind_one_address_keep_their_own_sequence_numbers():
    """RFC 7011 3.1: sequence numbers count per observation domain within a transport
    session; two exporters on one address, each numbering its own messages, lose nothing."""
    decoder = FlowDecoder()
    datagrams = []
    for n in range(4):
        for port in (40001, 40002):
            message = softflowd_message([dns_query()] * 3, sequence=3 * n, with_template=n == 0)
            datagrams.append((message, (EXPORTER, port)))
    assert len(decoder.decode(datagrams)) == 24
    exporter = decoder.counters.exporters[EXPORTER]
    assert (exporter.sequence_gaps, exporter.lost_records) == (0, 0)
    assert exporter.records == 24


def test_one_exporter_socket_sending_to_two_of_our_ports_is_two_transport_sessions():
    """RFC 7011 2 and 10.3.1: a UDP Transport Session runs from one exporter socket to one
    collector socket; an exporter sending to two of our --listen ports keeps a template and
    a sequence on each (here template 1024 has a different layout on each port)."""
    decoder = FlowDecoder()
    v6_layout = [Field(27, 16), Field(28, 16), Field(4, 1), Field(2, 2)]
    v6_record = address("2001:db8::1") + address("2001:db8::2") + uint(58, 1) + uint(3, 2)
    source, first, second = (EXPORTER, 40001), ("127.0.0.1", 4739), ("127.0.0.1", 4740)
    ipv4 = [
        softflowd_message([dns_query(51841 + n)], sequence=n, with_template=n == 0)
        for n in range(3)
    ]
    ipv6 = [
        ipfix_message([ipfix_template_set({1024: v6_layout}), data_set(1024, [v6_record])]),
        ipfix_message([data_set(1024, [v6_record])], sequence=1),
    ]
    rows = []
    for message, destination in [
        (ipv4[0], first),
        (ipv6[0], second),
        (ipv4[1], first),
        (ipv6[1], second),
        (ipv4[2], first),
    ]:
        rows += decoder.decode([(message, source)], destination).to_records()
    assert [(r["src"], r["src_port"], r["packets"]) for r in rows] == [
        ("172.18.4.220", 51841, 1),
        ("2001:db8::1", 0, 3),
        ("172.18.4.220", 51842, 1),
        ("2001:db8::1", 0, 3),
        ("172.18.4.220", 51843, 1),
    ]
    exporter = decoder.counters.exporters[EXPORTER]
    assert (exporter.sequence_gaps, exporter.lost_records, exporter.decode_errors) == (0, 0, 0)


def test_netflow9_templates_belong_to_the_source_id_not_the_port():
    """RFC 3954 5.1: the source address and the Source ID identify the exporting device's
    NetFlow instance; an exporter whose source port changed keeps its templates."""
    decoder = FlowDecoder()
    template = [Field(8, 4), Field(12, 4), Field(2, 4), Field(1, 4)]
    record = address("10.0.0.1") + address("10.0.0.2") + uint(4, 4) + uint(400, 4)
    decoder.decode(
        [(netflow9_packet([netflow9_template_flowset({256: template})]), (EXPORTER, 40001))]
    )
    rows = decoder.decode(
        [(netflow9_packet([data_set(256, [record])], sequence=1), (EXPORTER, 40002))]
    ).to_records()
    assert [(r["src"], r["packets"], r["bytes"]) for r in rows] == [("10.0.0.1", 4, 400)]
    assert decoder.counters.exporters[EXPORTER].sequence_gaps == 0


def test_the_collector_tells_exporters_apart_by_their_source_port(tmp_path):
    """Over real loopback sockets: two exporters on 127.0.0.1 with conflicting template 1024
    (the collector must hand the decoder each datagram's source port, not only its address)."""
    store = FlowStore(tmp_path / "flows")
    collector = FlowCollector(store)
    v6_layout = [Field(27, 16), Field(28, 16), Field(4, 1), Field(2, 2)]
    v6_record = address("2001:db8::1") + address("2001:db8::2") + uint(58, 1) + uint(3, 2)
    with (
        BackgroundCollector(collector) as running,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second,
    ):
        first.sendto(softflowd_message([dns_query()]), running.address)
        second.sendto(ipfix_message([ipfix_template_set({1024: v6_layout})]), running.address)
        first.sendto(softflowd_message([dns_query()], with_template=False), running.address)
        second.sendto(ipfix_message([data_set(1024, [v6_record])]), running.address)
        assert running.wait_for_datagrams(4)
    sessions = read_sessions(store.directory, ephemeral_port=None).to_pylist()
    assert [(s["src"], s["dst"], s["fwd_packets"], s["exporter"]) for s in sessions] == [
        ("2001:db8::1", "2001:db8::2", 3, "127.0.0.1"),  # no flow time: export time 0
        ("172.18.4.220", "10.100.1.6", 2, "127.0.0.1"),
    ]
