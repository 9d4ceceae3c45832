"""One session-table reader: `recommend`, `whatif` and `sessions list` accept and refuse the
same files, with one located message per bad value (issue 10 #15)."""

from __future__ import annotations

import json

import pytest

from support import EXAMPLES

HOME_LAB = str(EXAMPLES / "home-lab.yaml")
HEADER = "vrf,protocol,src,sport,dst,dport,packets,bytes\n"
# The what-if format of the README: no reply information, `packets` / `bytes` only.
WHATIF_ROWS = (
    "default,tcp,172.18.6.138,eph,10.100.99.52,80,40,9000\n"
    "default,tcp,172.18.6.138,51000,10.100.99.51,80,10,1000\n"
    "default,udp,10.100.99.50,eph,10.100.1.7,53,4,300\n"
    "default,icmp,10.100.99.50,0,8.8.8.8,2048,2,196\n"
)


def _commands(path: str) -> dict[str, tuple[str, ...]]:
    return {
        "recommend": ("recommend", HOME_LAB, "--sessions", path),
        "whatif": ("whatif", "--base", HOME_LAB, "--candidate", HOME_LAB, "--sessions", path),
        "sessions list": ("sessions", "list", "--store", path),
    }


def test_a_csv_in_the_whatif_format_gives_recommendations(run_cli, tmp_path):
    path = tmp_path / "sessions.csv"
    path.write_text(HEADER + WHATIF_ROWS)
    whatif = run_cli(*_commands(str(path))["whatif"], "--json")
    assert whatif.exit_code == 0, whatif.stderr
    assert json.loads(whatif.stdout)["sessions"] == 4

    result = run_cli("recommend", str(EXAMPLES / "home-lab-monitor.yaml"), "--sessions", str(path))
    assert result.exit_code == 0, result.stderr
    data = json.loads(
        run_cli(
            "recommend", str(EXAMPLES / "home-lab-monitor.yaml"), "--sessions", str(path), "--json"
        ).stdout
    )
    assert data["quality"]["evidence_sessions"] == 3 and data["blocked_attempts"] == []
    assert [(a["rule"], a["sessions"]) for a in data["already_allowed"]] == [("allow_all_DNS", 1)]
    assert data["quality"]["notes"][0].startswith("3 session(s) carry no reply information")
    assert "taken as answered" in result.stdout


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("default,,10.0.0.1,1234,10.0.0.2,22,1,1", "protocol is empty"),
        ("default,tcp,10.0.0.1,1234,10.0.0.2,22,-5,1", "packets is negative"),
        ("default,tcp,10.0.0.1,1234,10.0.0.2,22,1,-1", "bytes is negative"),
        ("default,tcp,10.0.0.1,1234,10.0.0.2,22,many,1", "packets is not a whole number"),
        ("default,tcp,10.0.0.1,1234,2001:db8::2,22,1,1", "mixes IPv4 and IPv6 addresses"),
        ("default,tcp,10.0.0.1,1234,10.0.0.2,70000,1,1", "dport '70000' is not a port"),
        ("default,tcp,10.0.0.1,,,22,1,1", "dst is empty"),
        ("default,tcp,10.0.0.1,1234,10.0.0.999,22,1,1", "dst '10.0.0.999' is not an IPv4"),
        ("default,bogus,10.0.0.1,1234,10.0.0.2,22,1,1", "unknown protocol 'bogus'"),
        (
            "default,tcp,10.0.0.1,1234,10.0.0.2,22,99999999999999999999,1",
            "packets is larger than 2**63-1",
        ),
    ],
)
def test_every_command_refuses_a_bad_row_the_same_way(run_cli, tmp_path, row, message):
    path = tmp_path / "sessions.csv"
    path.write_text(HEADER + "default,udp,10.0.0.1,5000,10.0.0.2,53,1,1\n" + row + "\n")
    for name, command in _commands(str(path)).items():
        result = run_cli(*command)
        assert result.exit_code == 1, (name, result.stdout, result.stderr)
        assert f"{path}: row 2" in result.stderr and message in result.stderr, (name, result.stderr)
        assert "internal error" not in result.stderr and "Traceback" not in result.stderr


def test_a_bad_time_is_located_too(run_cli, tmp_path):
    path = tmp_path / "sessions.jsonl"
    rows = [
        {"protocol": "tcp", "src": "10.0.0.1", "dst": "10.0.0.2", "dport": 22},
        {
            "protocol": "tcp",
            "src": "10.0.0.1",
            "dst": "10.0.0.2",
            "dport": 22,
            "first_seen": "yesterday",
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, command in _commands(str(path)).items():
        result = run_cli(*command)
        assert result.exit_code == 1, (name, result.stderr)
        assert "row 2" in result.stderr and "first_seen 'yesterday'" in result.stderr, name


def test_times_in_every_iso_8601_spelling_are_read():
    import pyarrow as pa

    from microseg.flows.session_columns import session_columns

    spellings = [
        "2025-11-19T18:00:00Z",
        "2025-11-19T19:00:00+01:00",
        "2025-11-19 18:00:00",
        "2025-11-19T18:00:00.000+00:00",
        "",
    ]
    table = pa.table(
        {
            "protocol": ["tcp"] * 5,
            "src": ["10.0.0.1"] * 5,
            "dst": ["10.0.0.2"] * 5,
            "dport": ["22"] * 5,
            "first_seen": spellings,
        }
    )
    expected = 1763575200000  # 2025-11-19T18:00:00Z
    assert session_columns(table).first_seen.tolist() == [expected] * 4 + [0]


BIG = 2**63 - 1
COUNTERS = "vrf,protocol,src,sport,dst,dport,fwd_packets,fwd_bytes,rev_packets,rev_bytes,complete\n"


def test_counters_near_2_63_give_exact_saturated_totals_without_warnings(run_cli, tmp_path):
    """The store saturates counters at 2**63-1: the builder's sums are exact below it and
    saturate there (int64 wrapped in `example`, float64 sums lost the low bits above 2**53)."""
    import warnings

    import numpy as np

    near = 2**53 + 1  # float64 cannot hold it
    path = tmp_path / "sessions.csv"
    path.write_text(
        COUNTERS
        + f"default,tcp,172.18.6.138,eph,10.100.99.52,443,{BIG},{BIG},{BIG},5,1\n"
        + f"default,tcp,172.18.6.138,1000,10.100.99.52,443,{near},1,1,1,1\n"
        + f"default,tcp,172.18.6.139,eph,10.100.99.52,443,{near},{near},2,3,1\n"
        + f"default,tcp,172.18.6.139,1000,10.100.99.51,443,{near},{near},0,4,1\n"
    )
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        result = run_cli(
            "recommend", HOME_LAB, "--sessions", str(path), "--include-blocked", "--json"
        )
    assert result.exit_code == 0, result.stderr
    rules = {r["name"]: r["evidence"] for r in json.loads(result.stdout)["rules"]}
    first = rules["allow_host-172-18-6-138_to_host-10-100-99-52"]
    assert (first["sessions"], first["packets"], first["bytes"]) == (2, BIG, BIG)
    assert [(e["packets"], e["bytes"]) for e in first["examples"]] == [(near + 1, 2), (BIG, BIG)]
    # one rule, two destinations: the sum of two triples, exact above 2**53
    second = rules["allow_host-172-18-6-139_to_host-10-100-99-51_and_1_more"]
    assert (second["packets"], second["bytes"]) == (2 * near + 2, 2 * near + 7)
