"""`microseg collect --listen A --listen B`: one collector, IPFIX and NetFlow v9 on different
ports at once, sessions from both in one table and one store (issue 14)."""

from __future__ import annotations

import json
import socket

from flows_collector import Collector, collect_while_a_port_is_taken
from flows_encoder import (
    Field,
    address,
    data_set,
    ipfix_message,
    ipfix_template_set,
    netflow9_packet,
    netflow9_template_flowset,
    uint,
)

from microseg.flows.flowstore import read_sessions
from microseg.flows.replay import send_datagrams

# sourceIPv4Address, destinationIPv4Address, ports, protocol, packets, octets: the same
# element numbers in IPFIX (RFC 7012) and NetFlow v9 (RFC 3954).
TEMPLATE = [Field(8, 4), Field(12, 4), Field(7, 2), Field(11, 2), Field(4, 1)]
TEMPLATE += [Field(2, 4), Field(1, 4)]


def _record(source: str, destination: str, port: int) -> bytes:
    return (
        address(source) + address(destination) + uint(50_000, 2) + uint(port, 2) + uint(6, 1)
    ) + (uint(3, 4) + uint(180, 4))


def test_ipfix_and_netflow9_on_two_ports_reach_one_store(tmp_path):
    collector = Collector(tmp_path, "--json", listen=("127.0.0.1:0", "127.0.0.1:0"))
    ports = collector.ports
    try:
        assert len(ports) == 2 and ports[0] != ports[1]
        ipfix = ipfix_message(
            [
                ipfix_template_set({300: TEMPLATE}),
                data_set(300, [_record("10.0.0.1", "10.0.9.1", 22)]),
            ]
        )
        netflow9 = netflow9_packet(
            [
                netflow9_template_flowset({300: TEMPLATE}),
                data_set(300, [_record("10.0.0.2", "10.0.9.2", 443)]),
            ],
            unix_seconds=1_763_578_400,
        )
        send_datagrams([ipfix], "127.0.0.1", ports[0])
        send_datagrams([netflow9], "127.0.0.1", ports[1])
    finally:
        assert collector.stop() == 0, collector.stderr
    final = json.loads(collector.stdout.splitlines()[-1])
    assert (final["datagrams"], final["records"], final["decode_errors"]) == (2, 2, 0)
    sessions = read_sessions(tmp_path).to_pylist()
    servers = sorted((row["dst"], row["dport"]) for row in sessions)
    assert servers == [("10.0.9.1", "22"), ("10.0.9.2", "443")]


def test_one_exporter_socket_to_two_ports_keeps_a_template_and_sequence_on_each(tmp_path):
    """RFC 7011 2, 10.3.1: a UDP Transport Session runs from one exporter socket to one
    collector socket. One exporter socket defines template 300 differently on each port."""
    collector = Collector(tmp_path, "--json", listen=("127.0.0.1:0", "127.0.0.1:0"))
    ports = collector.ports
    wide = [*TEMPLATE[:5], Field(2, 8), Field(1, 8)]  # 8-byte counters on the second port

    def message(server_port: int, sequence: int, layout: list[Field]) -> bytes:
        record = _record("10.0.0.1", "10.0.9.1", server_port)
        if layout is wide:
            record = record[:13] + uint(3, 8) + uint(180, 8)
        sets = [] if sequence else [ipfix_template_set({300: layout})]
        return ipfix_message([*sets, data_set(300, [record])], sequence=sequence)

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as exporter:
            for sequence in range(3):
                for port, server_port, layout in ((ports[0], 22, TEMPLATE), (ports[1], 443, wide)):
                    exporter.sendto(message(server_port, sequence, layout), ("127.0.0.1", port))
    finally:
        assert collector.stop() == 0, collector.stderr
    final = json.loads(collector.stdout.splitlines()[-1])
    assert (final["datagrams"], final["records"], final["decode_errors"]) == (6, 6, 0)
    assert final["exporters"]["127.0.0.1"]["sequence_gaps"] == 0
    sessions = read_sessions(tmp_path).to_pylist()
    counted = sorted((row["dport"], row["fwd_packets"], row["fwd_bytes"]) for row in sessions)
    assert counted == [("22", 9, 540), ("443", 9, 540)]


def test_an_address_that_cannot_be_bound_is_a_user_error_naming_it(tmp_path):
    collect_while_a_port_is_taken(
        tmp_path, "--listen", "127.0.0.1:0", "--listen", "127.0.0.1:{taken}"
    )
