"""What-if replay: sessions a candidate policy would newly block or allow, and rule hits."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.evaluate.random_policies import replaced

from microseg.evaluate.check import check_connection
from microseg.evaluate.whatif import replay, session_packets, whatif
from microseg.policyfile import dump_policy
from support import EXAMPLES

SESSIONS = [
    # vrf, protocol, src, sport, dst, dport, packets, bytes
    ("default", "tcp", "172.18.6.138", "eph", "10.100.99.52", "80", 40, 9000),
    ("default", "tcp", "172.18.6.138", "51000", "10.100.99.51", "80", 10, 1000),
    ("default", "tcp", "172.18.6.138", "eph", "10.100.99.51", "22", 100, 20000),
    ("default", "udp", "10.100.99.50", "eph", "10.100.1.7", "53", 4, 300),
    ("default", "icmp", "10.100.99.50", "0", "8.8.8.8", "2048", 2, 196),
]


def test_icmp_sessions_are_echo_requests_from_the_client(home_lab):
    # The session table zeroes ICMP ports (the client is the echo requester); NetFlow puts
    # type * 256 + code in the destination port. Both replay as echo / echo-reply.
    rows = [
        ("default", "icmp", "10.100.1.7", "0", "10.100.99.50", "0", 2, 196),
        ("default", "icmp", "10.100.1.7", "0", "10.100.99.50", "2048", 2, 196),
    ]
    columns = session_packets(_table(rows))
    assert columns.request.icmp_type.tolist() == [8, 8]
    assert columns.reply.icmp_type.tolist() == [0, 0]
    assert columns.service.tolist() == ["icmp type 8", "icmp type 8"]


COLUMNS = ("vrf", "protocol", "src", "sport", "dst", "dport", "packets", "bytes")


def _table(rows) -> pa.Table:
    return pa.table({name: [row[i] for row in rows] for i, name in enumerate(COLUMNS)})


def _without_rule(policy_set, rule_name):
    policy = policy_set.policies[0]
    rules = tuple(r for r in policy.rules if r != rule_name)
    return replaced(policy_set, policies=(policy.model_copy(update={"rules": rules}),))


def test_removing_clients_to_webservers_newly_blocks_http(home_lab):
    candidate = _without_rule(home_lab, "clients_to_webservers")
    report = whatif(home_lab, candidate, _table(SESSIONS))
    blocked = report["newly_blocked"]
    assert (blocked["sessions"], blocked["packets"], blocked["bytes"]) == (2, 50, 10000)
    [group] = blocked["groups"]
    assert (group["match"], group["service"], group["sessions"]) == (
        "drop_all_else_web-app-reverse",
        "tcp/80",
        2,
    )
    assert {e["dst"] for e in group["examples"]} == {"10.100.99.51", "10.100.99.52"}
    assert report["newly_allowed"]["groups"] == []
    hits = {h["match"]: h["sessions"] for h in report["candidate_rule_hits"]}
    assert hits == {
        "drop_all_else_web-app-reverse": 2,
        "ssh_to_web-app_servers": 1,
        "allow_all_DNS": 1,
        "drop_all_else_web-app": 1,
    }


def test_adding_a_rule_back_is_newly_allowed(home_lab):
    base = _without_rule(home_lab, "ssh_to_web-app_servers")
    report = whatif(base, home_lab, _table(SESSIONS))
    [group] = report["newly_allowed"]["groups"]
    assert (group["role"], group["match"], group["service"], group["packets"]) == (
        "was blocked by",
        "drop_all_else_web-app-reverse",
        "tcp/22",
        100,
    )
    assert report["newly_blocked"]["groups"] == []


def test_replay_agrees_with_check_for_every_session(home_lab):
    rng = random.Random(4)
    hosts = [
        "172.18.6.138",
        "10.100.5.10",
        "10.100.99.50",
        "10.100.99.51",
        "10.100.99.52",
        "10.100.1.6",
        "10.100.1.7",
        "8.8.8.8",
    ]
    rows = []
    for _ in range(300):
        protocol = rng.choice(("tcp", "udp", "icmp"))
        port = rng.choice(("22", "53", "80", "123", "4567")) if protocol != "icmp" else "2048"
        rows.append(("default", protocol, rng.choice(hosts), "eph", rng.choice(hosts), port, 1, 1))
    columns = session_packets(_table(rows))
    outcome = replay(home_lab, columns, None)
    for position, row in enumerate(rows):
        port = None if row[1] == "icmp" else int(row[5])
        checked = check_connection(home_lab, row[2], row[4], row[1], port)
        assert bool(outcome.gets_through[position]) == checked.policy_allows, row
        expected = checked.blocking or checked.request_decisions[0]
        assert outcome.labels[outcome.deciding[position]]["match"] == expected.match, row


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_whatif_cli_reads_csv_jsonl_parquet(run_cli, tmp_path, home_lab, suffix):
    path = tmp_path / f"sessions{suffix}"
    table = _table(SESSIONS)
    if suffix == ".csv":
        path.write_text(
            ",".join(COLUMNS) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in SESSIONS)
        )
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))
    else:
        pq.write_table(table, path)
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(dump_policy(_without_rule(home_lab, "clients_to_webservers")))
    result = run_cli(
        "whatif",
        "--base",
        str(EXAMPLES / "home-lab.yaml"),
        "--candidate",
        str(candidate),
        "--sessions",
        str(path),
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["newly_blocked"]["sessions"] == 2
    text = run_cli(
        "whatif",
        "--base",
        str(EXAMPLES / "home-lab.yaml"),
        "--candidate",
        str(candidate),
        "--sessions",
        str(path),
    )
    assert "newly blocked: 2 sessions" in text.stdout
    assert "drop_all_else_web-app-reverse" in text.stdout


def test_whatif_bad_sessions_file_is_a_clear_error(run_cli, tmp_path):
    path = tmp_path / "sessions.csv"
    path.write_text("vrf,protocol,src,sport,dst,dport\ndefault,tcp,10.0.0.999,1,10.0.0.1,22\n")
    home = str(EXAMPLES / "home-lab.yaml")
    result = run_cli("whatif", "--base", home, "--candidate", home, "--sessions", str(path))
    assert result.exit_code == 1
    assert "10.0.0.999" in result.stderr
    missing = run_cli(
        "whatif", "--base", home, "--candidate", home, "--sessions", str(tmp_path / "x.csv")
    )
    assert missing.exit_code == 1 and "Traceback" not in missing.stderr


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("default,tcp,10.0.0.1,1,10.0.0.2,99999999999999999999999", "dport"),
        ("default,bogus,10.0.0.1,1,10.0.0.2,22", "unknown protocol 'bogus'"),
    ],
)
def test_whatif_bad_session_values_are_clear_errors(run_cli, tmp_path, row, message):
    path = tmp_path / "sessions.csv"
    path.write_text(f"vrf,protocol,src,sport,dst,dport\n{row}\n")
    home = str(EXAMPLES / "home-lab.yaml")
    result = run_cli("whatif", "--base", home, "--candidate", home, "--sessions", str(path))
    assert result.exit_code == 1
    assert message in result.stderr
    assert "internal error" not in result.stderr


def test_a_default_drop_newly_blocks_what_no_rule_decides(home_lab):
    policy = home_lab.policies[0].model_copy(update={"default_action": "drop"})
    candidate = replaced(home_lab, policies=(policy,))
    internet = ("default", "tcp", "172.18.6.138", "eph", "192.0.2.80", "443", 7, 700)
    report = whatif(home_lab, candidate, _table([*SESSIONS, internet]))
    blocked = report["newly_blocked"]
    assert (blocked["sessions"], blocked["packets"], blocked["bytes"]) == (1, 7, 700)
    [group] = blocked["groups"]
    assert (group["match"], group["service"]) == ("ipv4-all-default", "tcp/443")
    assert report["newly_allowed"]["groups"] == []


def test_counters_near_2_63_give_exact_saturated_totals(home_lab):
    """The store saturates counters at 2**63-1: a request plus its reply saturates there too
    (int64 `+` wrapped to a negative), and sums above 2**53 stay exact (float64 weights
    lost the low bits)."""
    big, near = 2**63 - 1, 2**53 + 1
    names = ("vrf", "protocol", "src", "sport", "dst", "dport")
    counters = ("fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes")
    rows = [
        (*SESSIONS[0][:6], near, big, 1, big),
        (*SESSIONS[1][:6], near, 5, near, 0),
    ]
    table = pa.table({name: [row[i] for row in rows] for i, name in enumerate(names + counters)})
    report = whatif(home_lab, _without_rule(home_lab, "clients_to_webservers"), table)
    blocked = report["newly_blocked"]
    assert (blocked["sessions"], blocked["packets"], blocked["bytes"]) == (2, 3 * near + 1, big)
    [group] = blocked["groups"]
    assert (group["packets"], group["bytes"]) == (3 * near + 1, big)
    assert sum(hit["packets"] for hit in report["candidate_rule_hits"]) == 3 * near + 1
