"""The session table: both directions meet, the initiator is found, and the vZTX's
complete / half-open / eph semantics hold."""

from __future__ import annotations

import numpy as np
from flows_rows import flow_batch, random_flows
from hypothesis import given, settings
from hypothesis import strategies as st

from microseg.flows import sessions as sessions_module
from microseg.flows.batch import address_halves, format_addresses
from microseg.flows.flowstore import FlowStore, read_sessions
from microseg.flows.sessions import KEPT_EXPORTERS, SessionSettings, SessionTable

CLIENT, DNS = "172.18.4.220", "10.100.1.6"
SYN, ACK, SYN_ACK, RST = 0x02, 0x10, 0x12, 0x04


def sessions_of(rows, **settings):
    table = SessionTable(SessionSettings(**settings))
    table.add(flow_batch(rows), now=0)
    return table.flush().oriented().to_pylist()


def test_query_and_reply_meet_in_one_session_oriented_client_first():
    (session,) = sessions_of(
        [
            # softflowd exports the reply first: its "forward" is the lower address
            dict(src=DNS, sport=53, dst=CLIENT, dport=51841, bytes=80, start=1000),
            dict(src=CLIENT, sport=51841, dst=DNS, dport=53, bytes=55, start=1000),
        ]
    )
    assert (session["src"], session["sport"], session["dst"], session["dport"]) == (
        CLIENT,
        51841,
        DNS,
        53,
    )
    assert (session["fwd_bytes"], session["rev_bytes"]) == (55, 80)
    assert (session["complete"], session["half_open"]) == (1, 0)


def test_unanswered_syn_is_half_open_and_rst_answer_is_neither():
    sessions = sessions_of(
        [
            dict(src="10.9.9.9", sport=40000, dst="10.100.99.13", dport=443, proto=6, flags=SYN),
            dict(src="10.9.9.9", sport=40001, dst="10.100.99.13", dport=25, proto=6, flags=SYN),
            dict(
                src="10.100.99.13", sport=25, dst="10.9.9.9", dport=40001, proto=6, flags=RST | ACK
            ),
        ]
    )
    by_port = {s["dport"]: (s["complete"], s["half_open"]) for s in sessions}
    assert by_port == {443: (0, 1), 25: (0, 0)}


def test_tcp_handshake_makes_complete_and_syn_side_is_the_client_even_with_high_ports():
    (session,) = sessions_of(
        [
            dict(src="10.0.0.1", sport=60000, dst="10.0.0.2", dport=50000, proto=6, flags=0x1B),
            dict(
                src="10.0.0.2", sport=50000, dst="10.0.0.1", dport=60000, proto=6, flags=ACK | 0x08
            ),
        ]
    )
    # only 10.0.0.1 sent a SYN: it initiated although its port is the larger one... and the
    # responder never sent SYN+ACK in this export, so the session is not complete
    assert (session["src"], session["sport"]) == ("10.0.0.1", 60000)
    assert (session["complete"], session["half_open"]) == (0, 0)
    (complete,) = sessions_of(
        [
            dict(src="10.0.0.2", sport=50000, dst="10.0.0.1", dport=60000, proto=6, flags=SYN_ACK),
            dict(src="10.0.0.1", sport=60000, dst="10.0.0.2", dport=50000, proto=6, flags=SYN),
        ]
    )
    assert (complete["src"], complete["complete"]) == ("10.0.0.1", 1)


def test_earlier_first_packet_is_the_initiator_when_flags_do_not_tell():
    (session,) = sessions_of(
        [
            dict(src="10.0.0.1", sport=123, dst="10.0.0.2", dport=123, start=2000),
            dict(src="10.0.0.2", sport=123, dst="10.0.0.1", dport=123, start=1000),
        ]
    )
    assert session["src"] == "10.0.0.2"


def test_icmp_echo_request_and_reply_are_one_session():
    (session,) = sessions_of(
        [
            dict(src="10.100.99.11", dst="10.160.1.115", proto=1, icmp=0x0000, packets=2),
            dict(src="10.160.1.115", dst="10.100.99.11", proto=1, icmp=0x0800, packets=2),
        ]
    )
    assert (session["src"], session["dst"], session["complete"]) == (
        "10.160.1.115",
        "10.100.99.11",
        1,
    )


def test_biflow_reverse_counters_fill_the_other_direction():
    (session,) = sessions_of(
        [
            dict(
                src=DNS,
                sport=53,
                dst=CLIENT,
                dport=51841,
                packets=0,
                bytes=0,
                rev_packets=1,
                rev_bytes=54,
            )
        ]
    )
    assert (session["src"], session["fwd_bytes"], session["rev_packets"]) == (CLIENT, 54, 0)
    assert session["half_open"] == 1


def test_exporter_is_kept_per_direction():
    (session,) = sessions_of(
        [
            dict(src=CLIENT, sport=51841, dst=DNS, dport=53, exporter="10.255.1.11"),
            dict(src=DNS, sport=53, dst=CLIENT, dport=51841, exporter="10.255.1.12"),
        ]
    )
    assert (session["exporter"], session["rev_exporter"]) == ("10.255.1.11", "10.255.1.12")


def test_vrfs_keep_sessions_apart():
    sessions = sessions_of(
        [
            dict(src=CLIENT, sport=51841, dst=DNS, dport=53, vrf=0),
            dict(src=CLIENT, sport=51841, dst=DNS, dport=53, vrf=7),
        ]
    )
    assert sorted(s["vrf"] for s in sessions) == ["7", "default"]


def test_inactive_and_active_timeouts():
    table = SessionTable(SessionSettings(inactive_timeout=15, active_timeout=100))
    table.add(flow_batch([dict(src=CLIENT, sport=51841, dst=DNS, dport=53)]), now=0)
    table.add(flow_batch([dict(src=CLIENT, sport=51842, dst=DNS, dport=53)]), now=10)
    assert table.expire(now=14).num_rows == 0
    assert table.expire(now=15).oriented().column("sport").to_pylist() == [51841]
    for moment in range(20, 101, 10):  # keeps being refreshed, never idle
        table.add(flow_batch([dict(src=CLIENT, sport=51842, dst=DNS, dport=53)]), now=moment)
        if moment < 100:
            assert table.expire(now=moment).num_rows == 0
    (rotated,) = table.expire(now=110).oriented().to_pylist()
    assert rotated["fwd_packets"] == 10 and len(table) == 0


def test_eph_summary_is_one_row_per_client_server_service(tmp_path):
    rows = []
    for port in (51841, 63375, 61817):
        rows.append(dict(src=CLIENT, sport=port, dst=DNS, dport=53, bytes=55))
        rows.append(dict(src=DNS, sport=53, dst=CLIENT, dport=port, bytes=80))
    rows.append(dict(src="10.160.1.115", sport=43538, dst="10.100.1.7", dport=53, bytes=87))
    table = SessionTable()
    table.add(flow_batch(rows), now=0)
    FlowStore(tmp_path).open().write(table.flush().oriented())
    summary = read_sessions(tmp_path).to_pylist()  # same first seen: ordered by key
    assert [(s["src"], s["sport"], s["dport"], s["sessions"]) for s in summary] == [
        ("10.160.1.115", "43538", "53", 1),
        (CLIENT, "eph", "53", 3),
    ]
    assert (summary[1]["fwd_bytes"], summary[1]["rev_bytes"], summary[1]["complete"]) == (
        165,
        240,
        3,
    )
    assert summary[0]["half_open"] == 1
    kept = read_sessions(tmp_path, ephemeral_port=None)
    assert sorted(kept.column("sport").to_pylist()) == ["43538", "51841", "61817", "63375"]


def test_many_records_merge_in_batches():
    table = SessionTable()
    flows = random_flows(400_000)
    table.add(flows.take(slice(0, 200_000)), now=0)
    table.add(flows.take(slice(200_000, 400_000)), now=1)
    sessions = table.flush().oriented()
    # every forward record has its reverse record in the other half: sessions meet
    assert sessions.num_rows <= 200_000
    assert sum(sessions.column("fwd_packets").to_pylist()) + sum(
        sessions.column("rev_packets").to_pylist()
    ) == int(flows.packets.sum())
    assert set(sessions.column("dport").to_pylist()) <= {22, 53, 80, 443}


def test_records_without_packets_or_with_absurd_clocks_do_not_break_the_store(tmp_path):
    from microseg.flows.decoder import LATEST_MS

    table = SessionTable()
    table.add(flow_batch([dict(src=CLIENT, sport=1, dst=DNS, dport=53, packets=0)]), now=0)
    assert len(table) == 0
    late = dict(src=CLIENT, sport=2, dst=DNS, dport=53, start=LATEST_MS, end=LATEST_MS)
    table.add(flow_batch([late]), now=0)
    FlowStore(tmp_path).open().write(table.flush().oriented())
    (row,) = read_sessions(tmp_path).to_pylist()
    assert row["first_seen"].year == 9999


def test_exporter_names_of_sessions_gone_are_forgotten(monkeypatch):
    """The exporter id table is compacted as sessions leave, so a long-running collector
    fed by ever new (or spoofed) exporters does not grow it without end (here with no
    names kept regardless: see the next test for KEPT_EXPORTERS)."""
    monkeypatch.setattr(sessions_module, "KEPT_EXPORTERS", 0)
    table = SessionTable(SessionSettings(inactive_timeout=15))
    for moment in range(40):
        exporter = f"10.255.{moment // 200}.{moment % 200 + 1}"
        row = dict(src=CLIENT, sport=40000 + moment, dst=DNS, dport=53, exporter=exporter)
        table.add(flow_batch([row]), now=moment)
        table.expire(now=moment)
    assert len(table._exporters) <= 2 * 15 + 2  # 15 sessions active, one exporter each
    last = table.flush().oriented().to_pylist()
    assert [s["exporter"] for s in last] == [f"10.255.0.{n + 1}" for n in range(25, 40)]
    assert len(table._exporters) == 1


def test_icmp_errors_keep_their_type_apart_from_echo():
    """Only echo request and reply (RFC 792 8/0, RFC 4443 128/129) meet on ports 0; an
    error such as port unreachable (3/3) keeps type*256+code as its dport (RFC 7012
    icmpTypeCode), so nothing downstream reads it as an echo request."""
    sessions = sessions_of(
        [
            dict(src="10.100.99.11", dst="10.160.1.115", proto=1, icmp=0x0800),
            dict(src="10.160.1.115", dst="10.100.99.11", proto=1, icmp=0x0000),
            dict(src="10.160.1.115", dst="10.100.99.11", proto=1, icmp=0x0303, start=2000),
            dict(src="2001:db8::1", dst="2001:db8::2", proto=58, icmp=0x8000),
            dict(src="2001:db8::2", dst="2001:db8::1", proto=58, icmp=0x8100),
        ]
    )
    assert sorted((s["src"], s["sport"], s["dport"], s["complete"]) for s in sessions) == [
        ("10.100.99.11", 0, 0, 1),
        ("10.160.1.115", 0, 0x0303, 0),
        ("2001:db8::1", 0, 0, 1),
    ]


# IPv4 is stored IPv4-mapped (batch.py), so ::ffff:a.b.c.d itself reads back as a.b.c.d
IPV6 = st.ip_addresses(v=6).filter(lambda address: address.ipv4_mapped is None)


@given(st.lists(st.one_of(st.ip_addresses(v=4), IPV6), min_size=1, max_size=40))
@settings(max_examples=200, deadline=None)
def test_addresses_are_written_as_python_writes_them_ipv4_formatted_in_bulk(addresses):
    halves = [address_halves(str(address)) for address in addresses]
    high = np.array([h for h, _ in halves], np.uint64)
    low = np.array([lo for _, lo in halves], np.uint64)
    assert format_addresses(high, low).to_pylist() == [str(address) for address in addresses]


def test_sessions_keep_their_exporter_among_ipv4_and_ipv6_exporters():
    rows = [
        dict(src="192.0.2.1", sport=40000 + n, dst="192.0.2.9", dport=443, exporter=exporter)
        for n, exporter in enumerate(["10.255.1.10", "2001:db8::1", "2001:db8:1::1", "10.0.0.1"])
    ]
    table = SessionTable()
    table.add(flow_batch(rows[:2]), now=0)
    table.add(flow_batch(rows[2:]), now=0)
    sessions = sorted(table.flush().oriented().to_pylist(), key=lambda row: row["sport"])
    assert [row["exporter"] for row in sessions] == [
        "10.255.1.10",
        "2001:db8::1",
        "2001:db8:1::1",
        "10.0.0.1",
    ]


def test_exporters_no_session_uses_are_forgotten_once_there_are_many():
    """Past KEPT_EXPORTERS names, those no active session uses go when sessions leave (a
    flood of spoofed exporters cannot grow the table without end); what left keeps its
    exporters' names, and the sessions that stay keep theirs."""
    table = SessionTable()
    many = [
        dict(
            src="10.0.0.1",
            sport=1000 + n,
            dst="10.0.0.2",
            dport=53,
            exporter=f"10.9.{n // 250}.{n % 250 + 1}",
        )
        for n in range(2 * KEPT_EXPORTERS)
    ]
    table.add(flow_batch(many), now=0)
    table.add(
        flow_batch([dict(src="10.0.0.3", dst="10.0.0.2", dport=53, exporter="10.8.0.1")]), now=10
    )
    left = table.expire(now=20).oriented()  # inactive 15 s: the first batch leaves
    assert left.column("exporter").to_pylist() == [row["exporter"] for row in many]
    assert table._exporters == ["", "10.8.0.1"]
    (stayed,) = table.flush().oriented().to_pylist()
    assert stayed["exporter"] == "10.8.0.1"
