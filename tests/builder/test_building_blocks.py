"""Server side, services, endpoint groups, scope and aggregation, one behaviour at a time."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest
import seed_policies
from seed_policies import replaced

from microseg.builder import BuilderOptions, Scope, recommend
from microseg.builder.scope import Selector, policy_selectors, rule_selector
from microseg.builder.seed_sessions import (
    APPSERVER1,
    LAPTOP,
    WEB01,
    WEB02,
    session,
    web_app_sessions,
)
from microseg.builder.services import EVIDENCE, server_side
from microseg.builder.times import parse_moment, parse_time
from microseg.flows.flowstore import read_sessions
from microseg.flows.session_columns import session_columns
from microseg.model import Group, MicrosegError, Rule, Service


def table(rows: list[dict]) -> pa.Table:
    for row in rows:
        row["sport"], row["dport"] = str(row["sport"]), str(row["dport"])
    return pa.Table.from_pylist(rows)


def sides(rows: list[dict]) -> list[tuple[str, str, int, str]]:
    columns = session_columns(table(rows))
    side = server_side(columns)
    addresses = columns.addresses.addresses
    return [
        (str(addresses[c]), str(addresses[s]), int(p), EVIDENCE[e])
        for c, s, p, e in zip(
            side.client, side.server, side.server_port, side.evidence, strict=True
        )
    ]


def test_server_side_is_decided_by_the_strongest_evidence_available():
    rows = [
        # a completed TCP handshake: the destination answered the SYN, even on a high port
        session(LAPTOP, 1025, WEB01, 50000, "tcp"),
        # a session recorded server-first (no handshake seen): the ephemeral side is the client
        session(WEB01, 53, LAPTOP, 51515, "udp"),
        # a summary row: `eph` is the client
        session(WEB02, 8080, LAPTOP, "eph", "udp"),
        # well-known (< 1024) against a registered port
        session(WEB01, 123, LAPTOP, 4000, "udp"),
        # two registered ports: the lower one serves
        session(LAPTOP, 40000, WEB02, 4567, "udp"),
        # NTP symmetric mode, 123 <-> 123: the session's own direction
        session(LAPTOP, 123, WEB01, 123, "udp"),
    ]
    rows[0]["complete"] = 1
    assert sides(rows) == [
        (LAPTOP, WEB01, 50000, "tcp-handshake"),
        (LAPTOP, WEB01, 53, "ephemeral-port"),
        (LAPTOP, WEB02, 8080, "ephemeral-port"),
        (LAPTOP, WEB01, 123, "well-known-port"),
        (LAPTOP, WEB02, 4567, "lower-port"),
        (LAPTOP, WEB01, 123, "direction"),
    ]


def test_symmetric_ports_make_the_side_with_more_peers_the_server():
    """NTP symmetric mode (123 <-> 123): the collector cannot say who started; the NTP
    server is the end many peers talk to, whichever way a session was recorded."""
    rows = [
        session(WEB01, 123, "10.100.1.7", 123),
        session("10.100.1.7", 123, WEB02, 123),
        session(APPSERVER1, 123, "10.100.1.7", 123),
    ]
    assert sides(rows) == [
        (WEB01, "10.100.1.7", 123, "fan-in"),
        (WEB02, "10.100.1.7", 123, "fan-in"),
        (APPSERVER1, "10.100.1.7", 123, "fan-in"),
    ]


def test_syn_ack_in_the_reply_flags_marks_the_server():
    row = session(WEB01, 40000, LAPTOP, 50000, "tcp", reply=True)
    row["complete"] = 0
    row["rev_tcp_flags"] = 0x12  # SYN+ACK
    assert sides([row]) == [(WEB01, LAPTOP, 50000, "tcp-handshake")]


def test_services_reuse_exact_existing_ones_and_propose_well_known_names():
    web_app_monitor = seed_policies.web_app_monitor()
    rows = [
        session(WEB01, 41000, APPSERVER1, 4567, "tcp"),  # existing appserver1-tcp
        session(WEB01, 41001, APPSERVER1, 443, "tcp"),  # new: HTTPS
        session(WEB01, 41002, APPSERVER1, 9999, "tcp"),  # new: tcp-9999
        session(WEB01, 0, APPSERVER1, 8 * 256, "icmp"),  # echo request (type 8, code 0)
        session(WEB01, 0, APPSERVER1, 0, "icmp"),  # the session table's ICMP row: an echo
    ]
    result = recommend(web_app_monitor, table(rows))
    assert result.rules[0].rule.services == ("HTTPS", "appserver1-tcp", "icmp-echo", "tcp-9999")
    assert {
        (s.name, s.protocol, s.destination_ports, s.icmp_types) for s in result.new_services
    } == {
        ("HTTPS", "tcp", (443,), ()),
        ("tcp-9999", "tcp", (9999,), ()),
        ("icmp-echo", "icmp", (), (8,)),
    }
    assert result.quality.coverage == 1.0


def test_a_taken_name_or_a_wider_service_is_not_reused():
    web_app_monitor = seed_policies.web_app_monitor()
    wide = Service(name="web-ports", protocol="tcp", destination_ports=("80-443",))
    https = Service(name="HTTPS", protocol="udp", destination_ports=(443,))
    policy_set = replaced(web_app_monitor, services=(*web_app_monitor.services, wide, https))
    result = recommend(policy_set, table([session(WEB01, 41001, APPSERVER1, 443, "tcp")]))
    assert result.rules[0].rule.services == ("HTTPS-2",)


def test_min_share_uses_a_whole_group_and_says_what_it_widened():
    web_app_monitor = seed_policies.web_app_monitor()
    rows = [r for r in web_app_sessions() if r["src"] == WEB01 and r["dport"] == 4567]
    exact = recommend(web_app_monitor, table([dict(r) for r in rows]))
    assert [r.rule.sources for r in exact.rules] == [("host-10-100-99-51",)]

    widened = recommend(
        web_app_monitor, table([dict(r) for r in rows]), BuilderOptions(min_share=0.5)
    )
    rule = widened.rules[0]
    assert rule.rule.sources == ("web01_web02",) and rule.rule.destinations == ("appserver1",)
    assert [
        (w.group, w.reason, w.observed_addresses, w.group_addresses, w.unseen_addresses)
        for w in rule.widened
    ] == [("web01_web02", "min-share", 1, 2, 1)]
    assert widened.quality.over_permissiveness == 1.0  # web02 -> appserver1 never seen

    below = recommend(
        web_app_monitor, table([dict(r) for r in rows]), BuilderOptions(min_share=0.6)
    )
    assert below.rules[0].rule.sources == ("host-10-100-99-51",)


def test_ipv6_endpoints_get_128_host_groups_inside_and_outside():
    web_app_monitor = seed_policies.web_app_monitor()
    v6 = Group(name="lab-v6", prefixes=("2001:db8:99::/64",))
    policy_set = replaced(web_app_monitor, groups=(*web_app_monitor.groups, v6))
    rows = [session("2001:db8:99::51", "eph", "2606:4700::1111", 443, "tcp")]
    result = recommend(policy_set, table(rows))
    groups = {g.name: g for g in result.new_groups}
    assert [str(p) for p in groups["host-2001-db8-99--51"].prefixes] == ["2001:db8:99::51/128"]
    outside = groups["external-2606-4700--1111"]
    assert [str(p) for p in outside.prefixes] == ["2606:4700::1111/128"]
    assert outside.except_prefixes == ()
    assert result.quality.coverage == 1.0


def test_time_window_and_vrf_scope_select_sessions():
    web_app_monitor = seed_policies.web_app_monitor()
    rows = web_app_sessions()
    rows[0]["vrf"] = "guests"
    everything = recommend(web_app_monitor, table([dict(r) for r in rows]))
    early = Scope(until_ms=parse_time("2025-11-19T18:05:00", "--until"))
    windowed = recommend(
        web_app_monitor, table([dict(r) for r in rows]), BuilderOptions(scope=early)
    )
    assert 0 < windowed.scoped_sessions < everything.scoped_sessions
    guests = Scope(all_of=((Selector(label="vrf", vrfs=("guests",)),),))
    in_vrf = recommend(
        web_app_monitor, table([dict(r) for r in rows]), BuilderOptions(scope=guests)
    )
    assert in_vrf.scoped_sessions == rows[0]["sessions"]


def test_a_policy_scope_is_what_its_monitor_rules_mirror():
    web_app_monitor = seed_policies.web_app_monitor()
    selectors = policy_selectors(web_app_monitor, "vrf_all_home")
    assert [s.label for s in selectors] == ["policy vrf_all_home rule web-appserver-discovery"]
    outside = session("172.18.6.20", "eph", "10.100.5.10", 22, "tcp")
    rows = [*web_app_sessions(), outside]
    result = recommend(
        web_app_monitor,
        table([dict(r) for r in rows]),
        BuilderOptions(scope=Scope(all_of=(selectors,)), target_policy="vrf_all_home"),
    )
    assert result.scoped_sessions == sum(r["sessions"] for r in web_app_sessions())


def test_bad_options_are_clear_errors():
    web_app_monitor = seed_policies.web_app_monitor()
    rows = table([session(WEB01, 41000, APPSERVER1, 4567, "tcp")])
    with pytest.raises(MicrosegError, match="unknown category servers"):
        recommend(web_app_monitor, rows, BuilderOptions(categories=("servers",)))
    with pytest.raises(MicrosegError, match="--min-share"):
        recommend(web_app_monitor, rows, BuilderOptions(min_share=1.5))
    with pytest.raises(MicrosegError, match=r"below the floor of 0\.5.*--force-min-share"):
        recommend(web_app_monitor, rows, BuilderOptions(min_share=0.49))
    forced = recommend(web_app_monitor, rows, BuilderOptions(min_share=0.49, force_min_share=True))
    assert forced.rules[0].rule.sources == ("web01_web02",)  # 1 of its 2 addresses seen
    with pytest.raises(MicrosegError, match="policy 'nope'"):
        recommend(web_app_monitor, rows, BuilderOptions(target_policy="nope"))
    with pytest.raises(MicrosegError, match="not an IPv4 or IPv6 address"):
        recommend(web_app_monitor, table([session("web01", 1, APPSERVER1, 80, "tcp")]))
    with pytest.raises(MicrosegError, match="missing field"):
        session_columns(pa.table({"src": [WEB01]}))


def test_coverage_from_representatives_equals_replaying_every_session():
    """Coverage evaluates one session per class of sessions the switch cannot tell apart;
    replaying every session's request and reply one by one must give the same count."""
    home_lab_final = seed_policies.home_lab_final()
    import numpy as np

    from microseg.builder.quality import covered_sessions, replay_packets
    from microseg.builder.seed_sessions import blocked_attempts, dns_ntp_sessions
    from microseg.compile import compile_all
    from microseg.evaluate import CompiledDevice

    rows = web_app_sessions() + dns_ntp_sessions(20) + blocked_attempts()
    rows += [session(WEB01, 40000 + i, WEB02, 80, "tcp") for i in range(5)]  # dropped HTTP
    evidence = session_columns(table([dict(r) for r in rows]))
    intents = compile_all(home_lab_final)
    device = CompiledDevice(intents["andreasm-720xp-home"])
    replay = replay_packets(evidence)
    one_by_one = np.array(
        [
            device.evaluate(replay.request.take(np.array([i]))).forwarded[0]
            and device.evaluate(replay.reply.take(np.array([i]))).forwarded[0]
            for i in range(len(evidence))
        ]
    )
    expected = int(evidence.sessions[one_by_one].sum())
    assert 0 < expected < int(evidence.sessions.sum())
    assert covered_sessions(home_lab_final, evidence) == expected


def test_each_switch_of_a_fabric_decides_only_the_sessions_that_pass_it():
    """Three leaves, one subnet each: a switch sees a session with an end in its segments
    (a session with no end on any switch passes them all); its decisions hold those sessions
    only, so a fabric of hundreds of leaves does not multiply the work by its size."""
    import numpy as np

    from microseg.builder.quality import decide, replay_packets, session_positions
    from microseg.builder.standing import standing
    from microseg.compile import compile_all
    from microseg.model import (
        Device,
        Policy,
        PolicySet,
        SecurityDomain,
        Segment,
    )

    leaves = tuple(
        Device(name=f"leaf{n}", segments=(Segment(name="hosts", subnets=(f"10.{n}.0.0/24",)),))
        for n in (1, 2, 3)
    )
    fabric = PolicySet(
        devices=leaves,
        domains=(SecurityDomain(name="dc", devices=("leaf1", "leaf2", "leaf3")),),
        groups=tuple(Group(name=f"net{n}", prefixes=(f"10.{n}.0.0/24",)) for n in (1, 2, 3)),
        services=(
            Service(name="SSH", protocol="tcp", destination_ports=(22,)),
            Service(name="HTTPS", protocol="tcp", destination_ports=(443,)),
        ),
        rules=(
            Rule(
                name="no-ssh",
                sources=["net1"],
                destinations=["net2"],
                services=["SSH"],
                action="drop",
            ),
            Rule(name="web", sources=["net3"], destinations=["net3"], services=["HTTPS"]),
        ),
        policies=(Policy(name="dc", id=1, domain="dc", rules=("no-ssh", "web")),),
    )
    rows = [
        session("10.1.0.5", 50000, "10.2.0.5", 22, "tcp"),  # leaf1 and leaf2
        session("10.3.0.5", 50001, "10.3.0.6", 443, "tcp"),  # leaf3 only
        session("192.0.2.1", 50002, "198.51.100.1", 53, "udp"),  # on no leaf: all of them
        session("10.2.0.7", 50003, "10.1.0.7", 443, "tcp"),  # leaf2 and leaf1
    ]
    columns = session_columns(table(rows))
    decisions = decide(fabric, compile_all(fabric), columns, replay=replay_packets(columns))
    seen = {d.intent.device: sorted(d.rows.tolist()) for d in decisions}
    assert seen == {"leaf1": [0, 2, 3], "leaf2": [0, 2, 3], "leaf3": [1, 2]}
    decided = standing(decisions, len(columns))
    assert [decided.rules[i][0] if i >= 0 else None for i in decided.blocked_by] == [
        "no-ssh",
        None,
        None,
        None,
    ]
    assert [decided.rules[i][0] if i >= 0 else None for i in decided.allowed_by] == [
        None,
        "web",
        None,
        None,
    ]
    # a subset keeps each switch's sessions, numbered as in the subset
    subset = [d.take(session_positions(len(columns), np.array([1, 3]))) for d in decisions]
    assert {d.intent.device: d.rows.tolist() for d in subset} == {
        "leaf1": [1],
        "leaf2": [1],
        "leaf3": [0],
    }


def test_an_empty_policy_gets_the_proposals_first_and_fully_covered(tmp_path):
    lab = seed_policies.dns_ntp_before()
    empty = replaced(
        lab, rules=(), policies=(lab.policy("dns_ntp_services").model_copy(update={"rules": ()}),)
    )
    result = recommend(
        empty,
        read_sessions(seed_policies.dns_ntp_file(tmp_path)),
        BuilderOptions(categories=("clients", "infrastructure")),
    )
    assert [r.insert_at for r in result.rules] == [0] and result.quality.coverage == 1.0
    assert [d.rule for d in result.rules[0].current_decisions] == [None]  # the default match


def test_a_tcp_session_answered_only_by_a_reset_is_an_attempt_blocked():
    """README: a TCP session with reverse packets that never completed (a RST) is an
    attempt blocked, never an allow rule; only without any TCP flags is a reply trusted."""
    web_app_monitor = seed_policies.web_app_monitor()
    refused = session(LAPTOP, 50001, APPSERVER1, 4567, "tcp")  # a reply came back ...
    refused.update(complete=0, half_open=0, fwd_tcp_flags=0x02, rev_tcp_flags=0x14)  # RST+ACK
    no_flags = session(LAPTOP, 50002, WEB01, 4567, "tcp")  # a file without flags or states
    no_flags.update(complete=0, half_open=0)
    mid_stream = session(LAPTOP, 50003, WEB02, 4567, "tcp")  # began before collection did
    mid_stream.update(complete=0, half_open=0, fwd_tcp_flags=0x18, rev_tcp_flags=0x18)
    result = recommend(web_app_monitor, table([refused, no_flags, mid_stream]))
    assert [(a.source, a.destination, a.service) for a in result.blocked_attempts] == [
        (LAPTOP, APPSERVER1, "appserver1-tcp")  # the existing service for tcp/4567
    ]
    assert [r.rule.destinations for r in result.rules] == [
        ("host-10-100-99-51", "host-10-100-99-52")  # web01 and web02, one rule
    ]


def test_a_monitor_rule_naming_an_empty_group_selects_nothing_on_that_side():
    """An empty group holds no address; it is not `any` (which a rule spells `any`)."""
    web_app_monitor = seed_policies.web_app_monitor()
    empty = Group(name="not_yet_deployed")
    watch_empty = Rule(
        name="watch-empty", sources=("not_yet_deployed",), destinations="any", services="any"
    )
    policy_set = replaced(
        web_app_monitor,
        groups=(*web_app_monitor.groups, empty),
        rules=(*web_app_monitor.rules, watch_empty),
    )
    rows = table([dict(r) for r in web_app_sessions()])
    scope = Scope(all_of=((rule_selector(policy_set, "watch-empty"),),))
    assert recommend(policy_set, rows, BuilderOptions(scope=scope)).scoped_sessions == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", datetime(2025, 11, 18, 18, 0, tzinfo=UTC)),
        ("30m", datetime(2025, 11, 19, 17, 30, tzinfo=UTC)),
        ("7d", datetime(2025, 11, 12, 18, 0, tzinfo=UTC)),
        ("2025-11-19T12:00", datetime(2025, 11, 19, 12, 0, tzinfo=UTC)),
        ("2025-11-19T12:00:00Z", datetime(2025, 11, 19, 12, 0, tzinfo=UTC)),
        ("2025-11-19T13:00+01:00", datetime(2025, 11, 19, 12, 0, tzinfo=UTC)),
    ],
)
def test_every_since_and_until_reads_a_duration_or_an_iso_time(text, expected):
    now = datetime(2025, 11, 19, 18, 0, tzinfo=UTC)
    assert parse_moment(text, "--until", now) == expected
    assert parse_time(text, "--until", now) == int(expected.timestamp() * 1000)
