"""The Policy Builder's fold in the session engine, and `recommend`'s filters in its SQL.

The engine folds sessions the builder cannot tell apart into one row (`flows.engines.
builder_rows`), so fewer rows come back; what the builder proposes, reports and measures
must not change by a byte. The store here has what could make a fold wrong: a drop rule on
client ports 40000-40999 (a cell boundary inside Linux's client ports), a server listening
on a port other clients use as theirs, unanswered and reset sessions, replies with unknown
flags, equal ports (NTP), `eph` summaries and more than three sessions per fold.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from microseg.builder import BuilderOptions, Scope, recommend
from microseg.builder.report import recommendation_json
from microseg.builder.scope import scope_from
from microseg.cli.builder import read_session_columns
from microseg.evaluate.cells import port_cuts
from microseg.flows.flowstore import read_sessions
from microseg.flows.session_columns import session_columns
from microseg.policyfile import load_policy
from support import EXAMPLES, write_sessions

DAY_MS = 1_763_510_400_000  # 2025-11-19T00:00Z
CLIENTS = [f"172.18.6.{n}" for n in range(10, 22)]
WEB, LISTENER, DNS, NTP_PEER = "10.100.99.50", "10.100.99.51", "10.100.1.6", "10.100.1.7"
POLICY_EXTRA = {
    "services:\n": """services:
  - name: WEB-FROM-HIGH-PORTS
    protocol: tcp
    destination_ports: [8080]
    source_ports: [40000-40999]
""",
    "rules:\n": """rules:
  - name: no-web-from-high-ports
    sources: [wifi_clients]
    destinations: any
    services: [WEB-FROM-HIGH-PORTS]
    action: drop
""",
    "rules: [rule72, rule73]": "rules: [no-web-from-high-ports, rule72, rule73]",
}


def _policy_file(tmp_path: Path) -> Path:
    text = (EXAMPLES / "home-lab-dns-ntp.yaml").read_text()
    for old, new in POLICY_EXTRA.items():
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def _session(client, sport, server, dport, protocol="tcp", *, at, reply="answered", vrf="default"):
    answered = reply == "answered"
    return {
        "vrf": vrf,
        "protocol": protocol,
        "src": client,
        "sport": sport,
        "dst": server,
        "dport": dport,
        "fwd_packets": 3,
        "fwd_bytes": 300 + sport % 7,
        "rev_packets": 0 if reply in ("none", "unknown") else 2,
        "rev_bytes": 0 if reply in ("none", "unknown") else 200,
        "complete": int(answered),
        "half_open": int(reply in ("none", "reset")),
        "first_seen": at,
        "last_seen": at + 500,
        "exporter": "10.0.0.1",
        "rev_exporter": "10.0.0.1" if answered else "",
        "fwd_tcp_flags": 0x02 if protocol == "tcp" else 0,
        "rev_tcp_flags": {"answered": 0x12, "reset": 0x14}.get(reply, 0)
        if protocol == "tcp"
        else 0,
        "sessions": 1,
    }


def _sessions(rng: np.random.Generator) -> list[dict]:
    rows = []
    for number in range(1500):
        at = DAY_MS + int(rng.integers(0, 40)) * 1000  # many ties on first seen
        client = CLIENTS[int(rng.integers(0, len(CLIENTS)))]
        sport = int(rng.integers(32768, 61000))  # Linux's client ports, partly `eph`
        kind = number % 10
        if kind < 5:
            reply = str(rng.choice(["answered", "answered", "answered", "none", "reset"]))
            rows.append(_session(client, sport, WEB, 8080, at=at, reply=reply))
        elif kind < 7:
            rows.append(_session(client, sport, DNS, 53, "udp", at=at))
        elif kind == 7:  # a client port other clients use as theirs is this server's port
            rows.append(_session(client, int(rng.integers(33000, 34000)), LISTENER, 41234, at=at))
            rows.append(_session(client, 41234, WEB, 8080, at=at + 1))
        elif kind == 8:
            rows.append(_session(client, sport, DNS, 22, at=at, reply="unknown"))
        else:
            rows.append(_session(NTP_PEER, 123, client, 123, "udp", at=at))
    return rows


@pytest.fixture(scope="module")
def fold_store(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("fold")
    store = write_sessions(directory / "store", _sessions(np.random.default_rng(20251130)))
    return store, _policy_file(directory)


def _recommended(policy_file: Path, store: Path, cuts, **scope) -> dict:
    policy_set = load_policy(policy_file)
    table = read_sessions(store, client_port_cuts=cuts)
    options = BuilderOptions(
        categories=("clients", "infrastructure"),
        scope=scope_from(policy_set, None, None, None, [], None, None),
        include_blocked=scope.get("include_blocked", False),
    )
    return recommendation_json(recommend(policy_set, session_columns(table), options))


@pytest.mark.parametrize("include_blocked", [False, True])
def test_the_fold_changes_not_a_byte_of_the_recommendation(fold_store, include_blocked):
    store, policy_file = fold_store
    cuts = port_cuts(load_policy(policy_file))
    assert {40000, 41000} <= set(cuts)  # the drop rule's source ports 40000-40999
    folded = _recommended(policy_file, store, cuts, include_blocked=include_blocked)
    plain = _recommended(policy_file, store, None, include_blocked=include_blocked)
    assert json.dumps(folded) == json.dumps(plain)
    assert plain["rules"] and plain["blocked_attempts"]
    assert plain["blocked_by_rules"] or include_blocked
    # the fold is where the policy's boundaries say: without them it would be wrong
    assert _recommended(policy_file, store, (), include_blocked=include_blocked) != plain


def test_the_fold_brings_back_fewer_rows_and_keeps_what_cannot_fold(fold_store):
    store, policy_file = fold_store
    plain = read_sessions(store)
    folded = read_sessions(store, client_port_cuts=port_cuts(load_policy(policy_file)))
    assert folded.num_rows < plain.num_rows * 0.75
    assert sum(folded["sessions"].to_pylist()) == sum(plain["sessions"].to_pylist())
    kept = {(r["src"], r["sport"], r["dst"], r["dport"]) for r in folded.to_pylist()}
    # a server's port is never folded away as a client port, nor an equal-port session
    assert {
        (r["src"], r["sport"], r["dst"], r["dport"])
        for r in plain.to_pylist()
        if r["sport"] in ("41234", "123")
    } <= kept


def test_a_session_file_with_a_time_window_is_read_unfolded(fold_store, tmp_path):
    """The builder's scope selects a file's rows by time after reading: a fold spanning
    the window's edge would count sessions outside it."""
    store, policy_file = fold_store
    session_file = tmp_path / "sessions.parquet"
    pq.write_table(read_sessions(store, ephemeral_port=None), session_file)
    policy_set = load_policy(policy_file)
    since = datetime.fromtimestamp((DAY_MS + 20_000) / 1000, UTC).isoformat()
    scope = scope_from(policy_set, None, None, None, [], since, None)
    options = BuilderOptions(scope=scope)
    read = read_session_columns(session_file, None, policy_set, scope)
    expected = session_columns(read_sessions(session_file))
    assert len(read) == len(expected)
    assert recommendation_json(recommend(policy_set, read, options)) == recommendation_json(
        recommend(policy_set, expected, options)
    )
    # without a window the file is folded as a store is
    assert len(read_session_columns(session_file, None, policy_set, Scope())) < len(expected)


def _store_with_vrfs_and_days(directory: Path) -> tuple[Path, list[dict]]:
    """One client's `eph` sessions to one server in two VRFs, over two days."""
    rows = []
    for day in range(2):
        for minute in range(5):
            for vrf in ("default", "blue"):
                at = DAY_MS + day * 86_400_000 + minute * 60_000
                rows.append(_session(CLIENTS[0], 50_000 + minute, WEB, 8080, at=at, vrf=vrf))
    return write_sessions(directory, rows, segments=1), rows


def test_recommend_since_and_vrf_select_sessions_inside_the_engine(tmp_path, run_cli):
    store, rows = _store_with_vrfs_and_days(tmp_path / "store")
    since = datetime.fromtimestamp((DAY_MS + 86_400_000 + 2 * 60_000 + 500) / 1000, UTC)
    policy = str(EXAMPLES / "home-lab-dns-ntp.yaml")
    result = run_cli(
        "recommend", policy, "--store", str(store), "--json",
        "--since", since.isoformat(), "--vrf", "blue",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    # every session of the one client/server/service is one `eph` row: selecting the rows
    # after the summary would keep all 10 blue ones; the sessions last seen since: 3
    expected = [
        r for r in rows if r["vrf"] == "blue" and r["last_seen"] >= since.timestamp() * 1000
    ]
    assert len(expected) == 3
    assert json.loads(result.stdout)["scoped_sessions"] == len(expected)
    until = run_cli(
        "recommend", policy, "--store", str(store), "--json", "--until", since.isoformat()
    )
    assert json.loads(until.stdout)["scoped_sessions"] == sum(
        r["first_seen"] <= since.timestamp() * 1000 for r in rows
    )


def test_sessions_without_a_time_or_seen_last_before_first_fold_as_the_builder_reads_them(
    fold_store, tmp_path
):
    """The builder reads a missing time as 0 and a last seen before the first as the first:
    a session without a first-seen time stays unfolded (it comes first), and a fold's last
    seen is the latest of its sessions' as the builder reads them."""
    store, policy_file = fold_store
    table = read_sessions(store, ephemeral_port=None)
    first, last = table["first_seen"].to_pylist(), table["last_seen"].to_pylist()
    for row in range(0, len(first), 7):
        first[row] = None
    for row in range(3, len(first), 11):
        last[row] = None if row % 2 else datetime(2025, 1, 1, tzinfo=UTC)
    table = table.set_column(
        table.schema.get_field_index("first_seen"),
        "first_seen",
        pa.array(first, table.schema.field("first_seen").type),
    )
    table = table.set_column(
        table.schema.get_field_index("last_seen"),
        "last_seen",
        pa.array(last, table.schema.field("last_seen").type),
    )
    session_file = tmp_path / "sessions.parquet"
    pq.write_table(table, session_file)
    policy_set = load_policy(policy_file)
    options = BuilderOptions(categories=("clients",))
    folded = read_session_columns(session_file, None, policy_set, Scope())
    plain = session_columns(read_sessions(session_file))
    assert len(folded) < len(plain)
    assert recommendation_json(recommend(policy_set, folded, options)) == recommendation_json(
        recommend(policy_set, plain, options)
    )
