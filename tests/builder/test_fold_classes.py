"""The builder's fold keeps its examples per address class (`flows.engines.builder_rows`,
`builder.endpoints.address_classes`): on generated stores, with nested, excepted and
one-address groups, addresses in no group, two switches with their own segments, drop
rules on client-port ranges and a monitor rule's scope, `recommend` reads exactly what it
reads unfolded, and fewer rows come back than with a class per fold."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from microseg.builder import BuilderOptions, Scope, recommend
from microseg.builder.endpoints import _first_own_addresses, address_classes
from microseg.builder.recommend import classify
from microseg.builder.report import recommendation_json
from microseg.builder.scope import scope_from, scope_mask, scope_prefixes
from microseg.cli.builder import read_session_columns
from microseg.evaluate.cells import port_cuts
from microseg.flows.flowstore import FlowStore, read_sessions
from microseg.flows.session_columns import session_columns
from microseg.flows.sessions import SESSION_SCHEMA
from microseg.policyfile import load_policy
from support import write_sessions

POLICY = """
devices:
  - name: leaf1
    platform: eos
    loopback_address: 10.255.1.1
    segments:
      - {name: apps, subnets: [10.0.0.0/16]}
  - name: leaf2
    platform: eos
    loopback_address: 10.255.1.2
    segments:
      - {name: users, subnets: [10.1.0.0/24]}
domains:
  - {name: dc, devices: [leaf1, leaf2], vrfs: [default]}
categories:
  - {name: apps}
  - {name: clients}
groups:
  - {name: servers, prefixes: [10.0.1.0/24], categories: [apps]}
  - {name: web, prefixes: [10.0.1.0/26], categories: [apps]}
  - {name: vip, prefixes: [10.0.1.10/32], categories: [apps]}
  - {name: db, prefixes: [10.0.2.0/24], except_prefixes: [10.0.2.128/25], categories: [apps]}
  - {name: admins, prefixes: [10.0.3.0/28]}
  - {name: users, prefixes: [10.1.0.0/24, 'fd00::/64'], categories: [clients]}
  - {name: jump, prefixes: [10.1.0.5/32]}
services:
  - {name: HTTP, protocol: tcp, destination_ports: [80]}
  - {name: APP, protocol: tcp, destination_ports: [8000-8100]}
  - {name: HIGH-HTTPS, protocol: tcp, destination_ports: [443], source_ports: [40000-40999]}
  - {name: DNS, protocol: udp, destination_ports: [53]}
rules:
  - {name: users-web, sources: [users], destinations: [web], services: [HTTP]}
  - {name: no-high-https, sources: [users], destinations: any, services: [HIGH-HTTPS],
     action: drop}
  - {name: admins-no-db, sources: [admins], destinations: [db], services: any, action: drop}
  - {name: watch, sources: any, destinations: [servers, db, admins], services: any,
     monitor: mon}
monitor_nodes:
  - {name: node1, platform: eos, management_address: 10.255.0.2, loopback_address: 10.255.0.2}
monitor_objects:
  - {name: mon, exporter_interface: Loopback0, tunnel_destination: 10.255.0.2,
     tunnel_source_interface: Loopback0, monitor_nodes: [node1]}
policies:
  - {name: dc-policy, id: 7, domain: dc, vrf: ALL,
     rules: [users-web, no-high-https, admins-no-db, watch]}
"""
SERVERS = ["10.0.1.5", "10.0.1.10", "10.0.1.70", "10.0.2.9", "10.0.2.200", "10.0.3.3",
           "10.0.9.9", "10.0.9.10", "10.0.9.11", "203.0.113.7", "fd00::80"]  # fmt: skip
CLIENTS = ["10.1.0.7", "10.1.0.8", "10.1.0.5", "10.0.3.2", "10.0.3.4", "10.0.1.20",
           "198.51.100.4", "198.51.100.5", "fd00::7"]  # fmt: skip
SERVICES = [("tcp", 80), ("tcp", 443), ("tcp", 8080), ("tcp", 5432), ("udp", 53), ("tcp", 22)]
DAY_MS = 1_763_510_400_000


def _store(directory: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(2500):
        client, server = str(rng.choice(CLIENTS)), str(rng.choice(SERVERS))
        protocol, dport = SERVICES[int(rng.integers(len(SERVICES)))]
        reply = int(rng.choice(4, p=[0.7, 0.1, 0.1, 0.1]))  # answered, none, reset, unknown
        if rng.random() < 0.5:  # a few busy clients and servers: folds of many sessions
            client, server = str(rng.choice(CLIENTS[:4])), str(rng.choice(SERVERS[3:9]))
            protocol, dport, reply = "tcp", 8080, int(rng.choice(2, p=[0.9, 0.1]))
        if (":" in client) != (":" in server):
            continue
        sport = int(rng.choice([rng.integers(1024, 49152), rng.integers(39990, 41010)]))
        at = DAY_MS + int(rng.integers(0, 30)) * 1000  # many ties on first seen
        tcp = protocol == "tcp"
        rows.append(
            {
                "vrf": "default", "protocol": protocol, "src": client, "sport": sport,
                "dst": server, "dport": dport, "fwd_packets": int(rng.integers(1, 9)),
                "fwd_bytes": int(rng.integers(60, 9000)),
                "rev_packets": 2 if reply in (0, 2) else 0,
                "rev_bytes": 120 if reply in (0, 2) else 0,
                "complete": int(reply == 0), "half_open": int(reply in (1, 2)),
                "first_seen": at, "last_seen": at + int(rng.integers(0, 5000)),
                "exporter": "10.255.0.2", "rev_exporter": "10.255.0.2" if reply == 0 else "",
                "fwd_tcp_flags": 0x02 if tcp else 0,
                "rev_tcp_flags": {0: 0x12, 2: 0x14}.get(reply, 0) if tcp else 0,
                "sessions": 1,
            }
        )  # fmt: skip
    return write_sessions(directory, rows)


OPTIONS = {
    "categories": dict(categories=("apps", "clients")),
    "blocked": dict(categories=("apps", "clients"), include_blocked=True),
    "min-share": dict(categories=("clients",), min_share=0.5),
    "monitor-rule": dict(categories=("apps", "clients"), monitor_rule="watch"),
}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_examples_per_address_class_change_not_a_byte_of_the_recommendation(tmp_path, seed, case):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    policy_set = load_policy(policy_file)
    store = _store(tmp_path / "store", seed)
    settings = dict(OPTIONS[case])
    monitor_rule = settings.pop("monitor_rule", None)
    scope = scope_from(policy_set, monitor_rule, None, None, [], None, None)
    options = BuilderOptions(scope=scope, **settings)
    plain = session_columns(read_sessions(store))
    folded = read_session_columns(store, None, policy_set, scope, None, options.categories)
    per_fold = read_sessions(store, client_port_cuts=port_cuts(policy_set))
    expected = recommendation_json(recommend(policy_set, plain, options))
    assert json.dumps(recommendation_json(recommend(policy_set, folded, options))) == json.dumps(
        expected
    )
    assert expected["rules"] and expected["quality"]["evidence_sessions"]
    assert len(folded) < per_fold.num_rows < len(plain)
    # the builder numbers addresses by first appearance (host groups, outside addresses'
    # groups and the rules named after them follow that order): numbered alike
    assert folded.addresses.addresses == plain.addresses.addresses


def test_address_classes_label_the_prefixes_whose_addresses_map_to_one_category_group(tmp_path):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    policy_set = load_policy(policy_file)
    scope = scope_from(policy_set, None, None, None, ["10.0.9.0/24"], None, None)
    classes = address_classes(policy_set, ("apps",), scope_prefixes(scope))
    labelled = {
        f"{'.'.join(str(c.network >> s & 255) for s in (24, 16, 8, 0))}/{c.length}": c.label >= 0
        for c in classes
    }
    assert labelled == {
        "10.0.0.0/16": False,  # a segment: its other addresses get host groups
        "10.0.1.0/24": True,
        "10.0.1.0/26": True,
        "10.0.1.10/32": True,
        "10.0.2.0/24": True,
        "10.0.2.128/25": False,  # excepted from db
        "10.0.3.0/28": False,  # admins: no category
        "10.0.9.0/24": False,  # the scope's --between
        "10.1.0.0/24": False,  # clients is not asked for
        "10.1.0.5/32": False,
    }
    assert address_classes(policy_set, ()) == ()


def test_a_prefix_covered_by_longer_ones_has_no_address_of_its_own():
    import ipaddress

    prefixes = [ipaddress.ip_network(p) for p in ("10.0.0.0/30", "10.0.0.0/31", "10.0.0.2/31")]
    assert _first_own_addresses(prefixes) == [None, int(prefixes[1][0]), int(prefixes[2][0])]
    prefixes = [ipaddress.ip_network(p) for p in ("10.0.0.0/30", "10.0.0.0/32", "10.0.0.2/32")]
    assert _first_own_addresses(prefixes) == [
        int(prefixes[0][1]),
        int(prefixes[1][0]),
        int(prefixes[2][0]),
    ]


def _written(directory: Path, rows: list[dict]) -> Path:
    table = pa.Table.from_pylist(rows)
    for field in SESSION_SCHEMA:
        if field.name not in table.column_names:
            table = table.append_column(field.name, pa.nulls(len(rows), field.type))
    store = FlowStore(directory, "leaf1").open()
    store.write(table.select(SESSION_SCHEMA.names).cast(SESSION_SCHEMA), day=date(2025, 11, 19))
    return directory


def _attempt(client: str, sport: int, server: str, dport: int, at: int, **more) -> dict:
    return {
        "vrf": "default", "protocol": "tcp", "src": client, "sport": sport, "dst": server,
        "dport": dport, "fwd_packets": 2, "fwd_bytes": 120, "half_open": 1,
        "first_seen": DAY_MS + at, "last_seen": DAY_MS + at + 900, "exporter": "10.255.0.2",
        "fwd_tcp_flags": 0x02, "sessions": 1, **more,
    }  # fmt: skip


def test_addresses_are_numbered_in_the_order_they_first_appear_unfolded(tmp_path):
    """10.1.0.7's first session is its class's fourth: summed with its fold's others it
    would sort after the outside client's session of the same second, and the builder
    would number (and name the groups and rules of) the two addresses the other way round.
    The first session of every client and server stays a row of its own."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    policy_set = load_policy(policy_file)
    done = {"complete": 1, "half_open": 0, "rev_packets": 2, "rev_tcp_flags": 0x12}
    rows = [_attempt("10.1.0.8", 20000 + n, "10.0.1.5", 8080, 0, **done) for n in range(3)]
    rows += [_attempt("10.1.0.7", 21000 + n, "10.0.1.5", 8080, 5000 + n, **done) for n in range(3)]
    rows += [_attempt("198.51.100.4", 22000, "10.0.1.5", 8080, 5000, **done)]
    store = _written(tmp_path / "store", rows)
    folded = read_session_columns(store, None, policy_set, Scope(), None, ("clients",))
    plain = session_columns(read_sessions(store))
    assert len(folded) < len(plain)
    assert folded.addresses.addresses == plain.addresses.addresses


def test_a_blocked_attempt_says_what_stops_its_earliest_session_when_its_fold_is_not_kept(
    tmp_path,
):
    """10.1.0.7's first attempt on https (client port 40500: the drop rule's range) and a
    second one (45000) start in the same second; three attempts of another user came
    earlier, so the first one's fold is not among its class's kept rows. It still stays as
    it is: folded into a sum it would sort after the second one, and the blocked attempt
    would name what stops the second (nothing) instead of the drop rule."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    policy_set = load_policy(policy_file)
    rows = [
        _attempt(client, sport, "10.0.1.5", 443, at)
        for client, sport, at in [
            ("10.1.0.8", 40100, 0), ("10.1.0.8", 40200, 0), ("10.1.0.8", 40300, 0),
            ("10.1.0.7", 40500, 5000), ("10.1.0.7", 45000, 5000),
        ]
    ]  # fmt: skip
    # both ends were seen before (their own first rows are kept anyway)
    done = {"complete": 1, "half_open": 0, "rev_packets": 2, "rev_tcp_flags": 0x12}
    rows.append(_attempt("10.1.0.7", 30000, "10.0.1.5", 8080, 1000, **done))
    store = _written(tmp_path / "store", rows)
    options = BuilderOptions(categories=("apps", "clients"))
    folded = read_session_columns(store, None, policy_set, options.scope, None, ("clients",))
    attempts = {
        (a.source, a.stopped_by) for a in recommend(policy_set, folded, options).blocked_attempts
    }
    assert ("10.1.0.7", "drop by rule no-high-https") in attempts


def _classes(policy_set, table: pa.Table, options: BuilderOptions) -> list[tuple]:
    """Per session in scope: (evidence, allowed, blocked, the deciding rule, what stops it)."""
    columns = session_columns(table)
    scoped = columns.take(scope_mask(columns, options.scope))
    classified = classify(policy_set, scoped, options)
    existing = classified.existing
    allowed_by = [existing.rules[code][0] if code >= 0 else None for code in existing.allowed_by]
    stopped_by = [existing.stoppers[code] if code >= 0 else None for code in existing.stopped_by]
    return list(
        zip(
            classified.evidence.tolist(),
            classified.allowed.tolist(),
            classified.blocked.tolist(),
            allowed_by,
            stopped_by,
            strict=True,
        )
    )


@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_each_session_is_classified_alone_so_executors_can_classify_a_part_each(tmp_path, case):
    """`classify` is the builder's per-session step (`recommend --engine spark` runs it on
    Spark's executors over the fold's partitions: `builder.recommend_spark`): classified in
    parts, every session of the fold gets the class, the allowing rule and the stopping rule
    it gets in the whole."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    policy_set = load_policy(policy_file)
    store = _store(tmp_path / "store", 2)
    settings = dict(OPTIONS[case])
    scope = scope_from(policy_set, settings.pop("monitor_rule", None), None, None, [], None, None)
    options = BuilderOptions(scope=scope, **settings)
    folded = read_sessions(
        store,
        client_port_cuts=port_cuts(policy_set),
        address_classes=address_classes(policy_set, options.categories, scope_prefixes(scope)),
    )
    # server_side counts peers across sessions only where both ports are equal: none here
    assert not pc.any(pc.equal(folded["sport"], folded["dport"])).as_py()
    whole = _classes(policy_set, folded, options)
    parts = [folded.slice(start, 97) for start in range(0, folded.num_rows, 97)]
    assert len(parts) > 3
    assert [row for part in parts for row in _classes(policy_set, part, options)] == whole
    kinds = {(evidence, allowed, blocked) for evidence, allowed, blocked, _, _ in whole}
    assert {(True, False, False), (False, True, False)} <= kinds
    assert any(stopped for *_, stopped in whole)
