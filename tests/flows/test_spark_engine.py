"""`--engine spark` gives what `--engine duckdb` gives, row for row and byte for byte.

One store with three collectors over two days, a flat-layout segment, IPv4 and IPv6, counters
that saturate at 2^63-1 when summed, every kind of bad segment (one with a valid footer over
corrupt pages, which only the Spark job itself finds), a quarantined segment and a temporary
one a collector is still writing. Both engines read it for `sessions list` (with each
filter), `sessions export` (Parquet and CSV), `recommend --json` and `whatif --json`.

Spark runs `local[2]` on loopback, one JVM for the whole test session (`spark_session`).
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime
from ipaddress import IPv4Address
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_flow_reliability import bad_segments
from tests.builder.seed_policies import with_leaf2

from microseg.builder import BuilderOptions, recommend_spark
from microseg.builder.endpoints import category_groups
from microseg.builder.scope import scope_from, scope_mask
from microseg.cli.builder import read_session_columns
from microseg.flows import spark as spark_module
from microseg.flows.engines import SPARK, AddressClass, DuckDBEngine
from microseg.flows.flowstore import FlowStore, read_sessions
from microseg.flows.sessions import INT64_MAX, SESSION_SCHEMA
from microseg.flows.spark import SparkEngine, spark_settings
from microseg.model import MicrosegError
from microseg.policyfile import load_policy
from microseg.policyfile.dumper import dump_policy
from support import EXAMPLES, cli_command, cli_env

pytestmark = [pytest.mark.slow, pytest.mark.system]
# the module, not the function `microseg.builder.recommend` the package exports
recommend_module = importlib.import_module("microseg.builder.recommend")

DAYS = {"2025-11-18": 1_763_424_000_000, "2025-11-19": 1_763_510_400_000}
COLLECTORS = ("leaf1-4739", "leaf2-4739", "spine1-2055")
CLIENTS_V4 = [f"172.18.6.{n}" for n in range(10, 40)] + ["192.0.2.7"]
SERVERS_V4 = ["10.100.1.6", "10.100.1.7", "10.100.99.50", "10.100.99.51", "198.51.100.9"]
CLIENTS_V6 = [f"2001:db8:6::{n:x}" for n in range(10, 20)]
SERVERS_V6 = ["2001:db8:1::6", "2001:db8:99::50"]
SERVICES = {"tcp": [22, 80, 443, 8080], "udp": [53, 123], "icmp": [0, 771]}
DNS_NTP = str(EXAMPLES / "home-lab-dns-ntp.yaml")
HOME_LAB = str(EXAMPLES / "home-lab.yaml")


def _segment(rng: np.random.Generator, rows: int, start_ms: int, exporter: str) -> pa.Table:
    records = []
    for _ in range(rows):
        v6 = rng.random() < 0.25
        client = str(rng.choice(CLIENTS_V6 if v6 else CLIENTS_V4))
        server = str(rng.choice(SERVERS_V6 if v6 else SERVERS_V4))
        protocol = str(rng.choice(["tcp", "tcp", "udp", "icmp"]))
        dport = int(rng.choice(SERVICES[protocol]))
        kind = rng.random()
        if protocol == "icmp":
            sport = 0
        elif kind < 0.6:
            sport = int(rng.integers(49152, 65536))
        else:  # Linux's ephemeral range starts at 32768: not summarised
            sport = int(rng.integers(32768, 49152))
        answered = rng.random() < 0.85
        huge = rng.random() < 0.03
        first = start_ms + int(rng.integers(0, 4)) * 1000  # many ties on first seen
        records.append(
            {
                "vrf": "blue" if rng.random() < 0.1 else "default",
                "protocol": protocol,
                "src": client,
                "sport": sport,
                "dst": server,
                "dport": dport,
                "fwd_packets": int(rng.integers(1, 50)),
                "fwd_bytes": INT64_MAX - int(rng.integers(0, 9))
                if huge
                else int(rng.integers(60, 10**6)),
                "rev_packets": int(rng.integers(1, 50)) if answered else 0,
                "rev_bytes": int(rng.integers(60, 10**6)) if answered else 0,
                "complete": int(answered),
                "half_open": int(not answered),
                "first_seen": first,
                "last_seen": first + int(rng.integers(0, 60_000)),
                "exporter": exporter,
                "rev_exporter": exporter if answered else "",
                "fwd_tcp_flags": 0x1B if protocol == "tcp" else 0,
                "rev_tcp_flags": (0x12 if answered else 0) if protocol == "tcp" else 0,
                "sessions": 1,
            }
        )
    return pa.Table.from_pylist(records).cast(SESSION_SCHEMA)


def _saturating_pair(start_ms: int) -> pa.Table:
    """Two sessions of one summary row whose bytes add up past 2^63-1."""
    rows = [
        {
            **{name: 0 for name in SESSION_SCHEMA.names},
            "vrf": "default",
            "protocol": "udp",
            "src": "172.18.6.99",
            "sport": port,
            "dst": "10.100.1.6",
            "dport": 53,
            "fwd_packets": 1,
            "fwd_bytes": INT64_MAX - 5,
            "rev_packets": 1,
            "rev_bytes": 80,
            "complete": 1,
            "first_seen": start_ms,
            "last_seen": start_ms + 10,
            "exporter": "192.0.2.254",
            "rev_exporter": "192.0.2.254",
            "sessions": 1,
        }
        for port in (50001, 50002)
    ]
    return pa.Table.from_pylist(rows).cast(SESSION_SCHEMA)


def _one_busy_client(rng: np.random.Generator, start_ms: int) -> pa.Table:
    """Many sessions of one client to one web server from Linux client ports (below 49152,
    so not `eph`): what the builder's fold folds, some of them reset."""
    rows = []
    for _ in range(150):
        reset = rng.random() < 0.2
        first = start_ms + int(rng.integers(0, 4)) * 1000
        rows.append(
            {
                **{name: 0 for name in SESSION_SCHEMA.names},
                "vrf": "default",
                "protocol": "tcp",
                "src": "172.18.6.77",
                "sport": int(rng.integers(32768, 49152)),
                "dst": "10.100.99.50",
                "dport": 80,
                "fwd_packets": int(rng.integers(1, 9)),
                "fwd_bytes": int(rng.integers(60, 9000)),
                "rev_packets": 1,
                "rev_bytes": 60,
                "complete": int(not reset),
                "half_open": int(reset),
                "first_seen": first,
                "last_seen": first + 10,
                "exporter": "10.0.0.8",
                "rev_exporter": "10.0.0.8",
                "fwd_tcp_flags": 0x1B,
                "rev_tcp_flags": 0x14 if reset else 0x1B,
                "sessions": 1,
            }
        )
    return pa.Table.from_pylist(rows).cast(SESSION_SCHEMA)


def _symmetric_ntp(start_ms: int) -> pa.Table:
    """An NTP server, 10.100.99.51, opening symmetric sessions (123 <-> 123) to four clients: with
    equal ports the server is the end more peers talk to on that port (`server_side`), which
    only all four sessions together tell; one of them alone would make the client serve."""
    rows = [
        {
            **{name: 0 for name in SESSION_SCHEMA.names},
            "vrf": "default",
            "protocol": "udp",
            "src": "10.100.99.51",
            "sport": 123,
            "dst": f"172.18.6.{50 + number}",
            "dport": 123,
            "fwd_packets": 1,
            "fwd_bytes": 76,
            "rev_packets": 1,
            "rev_bytes": 76,
            "complete": 1,
            "first_seen": start_ms - 10_000 + 1000 * number,  # the store's first: examples
            "last_seen": start_ms - 10_000 + 1000 * number + 5,
            "exporter": "10.0.0.9",
            "rev_exporter": "10.0.0.9",
            "sessions": 1,
        }
        for number in range(4)
    ]
    return pa.Table.from_pylist(rows).cast(SESSION_SCHEMA)


def _port_scan(start_ms: int) -> pa.Table:
    """A client trying ports no other session uses, never answered: blocked attempts whose
    services only the unanswered sessions have (a port scan's, as at scale)."""
    rows = [
        {
            **{name: 0 for name in SESSION_SCHEMA.names},
            "vrf": "default",
            "protocol": "tcp",
            "src": "172.18.6.33",
            "sport": 40000 + port % 1000,
            "dst": "10.100.1.7",
            "dport": port,
            "fwd_packets": 1,
            "fwd_bytes": 60,
            "half_open": 1,
            "first_seen": start_ms + port,
            "last_seen": start_ms + port,
            "exporter": "10.0.0.9",
            "fwd_tcp_flags": 0x02,
            "sessions": 1,
        }
        for port in (21, 1001, 1002, 3389, 5000, 50000)
    ]
    return pa.Table.from_pylist(rows).cast(SESSION_SCHEMA)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("spark-store")
    rng = np.random.default_rng(20251119)
    for number, collector in enumerate(COLLECTORS):
        collector_store = FlowStore(directory, collector).open()
        for day, start_ms in DAYS.items():
            for _ in range(2):
                segment = _segment(rng, 400, start_ms, f"10.0.0.{number + 1}")
                collector_store.write(segment, day=date.fromisoformat(day))
    flat = FlowStore(directory).open()
    flat.write(_saturating_pair(DAYS["2025-11-19"]))
    flat.write(_one_busy_client(rng, DAYS["2025-11-19"]))
    flat.write(_symmetric_ntp(DAYS["2025-11-18"]))
    flat.write(_port_scan(DAYS["2025-11-19"]))
    good = flat.write(_segment(rng, 200, DAYS["2025-11-19"], "10.0.0.9"))
    (directory / "quarantine").mkdir()
    shutil.copy(good, directory / "quarantine" / good.name)  # out of the read path
    partition = next(flat.segment_dir.glob("date=*/collector=*"))
    shutil.copy(good, partition / f".tmp-{good.name}")  # a segment still being written
    bad_segments(flat)
    return directory


@pytest.fixture(scope="module")
def spark(spark_session) -> SparkEngine:
    return SparkEngine(session=spark_session)


QUERIES = {
    "summary": {},
    "every session": {"ephemeral_port": None},
    "vrf, protocol, port": {"vrf": "default", "protocol": "TCP", "port": 443},
    "IPv6 client in another spelling, since": {
        "src": "2001:DB8:6:0::b",
        "since": datetime(2025, 11, 19, tzinfo=UTC),
    },
    "server, every session, a page": {"dst": "10.100.99.50", "ephemeral_port": None, "limit": 9},
    "the builder's fold, until": {
        "client_port_cuts": (22, 23, 40000, 41000),
        "until": datetime(2025, 11, 19, 0, 0, 2, tzinfo=UTC),  # the busy client's first half
    },
    "the builder's fold, examples per address class": {
        "client_port_cuts": (22, 23, 40000, 41000),
        "address_classes": (
            AddressClass(int(IPv4Address("172.18.6.0")), 24, 0),
            AddressClass(int(IPv4Address("172.18.6.128")), 25, -1),
            AddressClass(int(IPv4Address("10.100.0.0")), 16, 2),
            AddressClass(int(IPv4Address("10.100.99.50")), 32, -1),
        ),
    },
    "what-if's fold": {"replay_cuts": (22, 23, 40000, 41000)},
}


@pytest.mark.parametrize("query", QUERIES.values(), ids=QUERIES.keys())
def test_spark_reads_the_store_row_for_row_as_duckdb_does(store, spark, query):
    expected = read_sessions(store, **query)
    got = read_sessions(store, engine=spark, **query)
    assert expected.num_rows > 0
    assert got.schema == expected.schema
    assert got.to_pylist() == expected.to_pylist()


def test_sparks_text_to_integer_is_its_try_cast_without_the_exceptions(spark):
    """The letter guard (`Dialect.integer`) changes no result: text with a letter never
    parses, anything else is Spark's own TRY_CAST."""
    texts = [
        "6",
        " 6 ",
        "+6",
        "-0",
        "006",
        "6\t",
        "6.0",
        "6.",
        ".5",
        "",
        "tcp",
        "TCP",
        "eph",
        "1e3",
        "0x10",
        "\uff16",
        "99999999999",
        "-2147483648",
        "2147483648",
        "--",
        None,
    ]
    rows = ", ".join("(CAST(NULL AS STRING))" if t is None else f"('{t}')" for t in texts)
    answer = spark.session.sql(
        f"SELECT TRY_CAST(text AS INTEGER) AS cast, {SPARK.number('text')} AS number "
        f"FROM (VALUES {rows}) AS texts(text)"
    ).collect()
    assert [row["number"] for row in answer] == [row["cast"] for row in answer]
    assert [row["number"] for row in answer][:5] == [6, 6, 6, 0, 6]


def test_the_store_has_what_the_comparison_needs(store):
    rows = read_sessions(store).to_pylist()
    assert {row["protocol"] for row in rows} == {"tcp", "udp", "icmp"}
    assert any(":" in row["src"] for row in rows) and any("." in row["src"] for row in rows)
    assert any(row["sport"] == "eph" for row in rows)
    assert any(row["sport"] not in ("eph", "0") for row in rows)
    saturated = [r for r in rows if r["src"] == "172.18.6.99"]
    assert [r["fwd_bytes"] for r in saturated] == [INT64_MAX]
    assert {r["exporter"] for r in rows} >= {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.9"}


def test_a_bad_segment_is_skipped_and_reported_the_same_way(store, spark, caplog):
    with caplog.at_level("WARNING", "microseg.flows"):
        read_sessions(store, engine=DuckDBEngine())
    duckdb_said, caplog.records[:] = caplog.text, []
    caplog.clear()
    with caplog.at_level("WARNING", "microseg.flows"):
        read_sessions(store, engine=spark)
    assert "seg-12-pages.parquet (unreadable data" in caplog.text  # found by the Spark job
    assert (
        caplog.text.splitlines()[-1].split("skipped")[1]
        == (duckdb_said.splitlines()[-1].split("skipped")[1])
    )


def _both(run_cli, *args: str) -> tuple[str, str]:
    duckdb_run = run_cli(*args)
    spark_run = run_cli(*args, "--engine", "spark")
    assert duckdb_run.exit_code == 0, duckdb_run.stderr
    assert spark_run.exit_code == 0, spark_run.stderr
    return duckdb_run.stdout, spark_run.stdout


def test_sessions_list_prints_the_same_table_and_json(store, spark, run_cli):
    for output in (["--proto", "icmp", "--limit", "30"], ["--no-eph", "--json"]):
        duckdb_out, spark_out = _both(run_cli, "sessions", "list", "--store", str(store), *output)
        assert duckdb_out == spark_out
    assert len(duckdb_out.splitlines()) > 1000


def test_sessions_export_writes_the_same_files_in_chunks(
    store, spark, run_cli, tmp_path, monkeypatch
):
    monkeypatch.setattr(spark_module, "CHUNK_ROWS", 100)  # many chunks, streamed in order
    for option, name in (("--csv", "sessions.csv"), ("--parquet", "sessions.parquet")):
        (tmp_path / "duckdb").mkdir(exist_ok=True)
        (tmp_path / "spark").mkdir(exist_ok=True)
        duckdb_file, spark_file = tmp_path / "duckdb" / name, tmp_path / "spark" / name
        duckdb_run = run_cli("sessions", "export", "--store", str(store), option, str(duckdb_file))
        spark_run = run_cli(
            "sessions",
            "export",
            "--store",
            str(store),
            option,
            str(spark_file),
            "--engine",
            "spark",
        )
        assert duckdb_run.exit_code == spark_run.exit_code == 0, spark_run.stderr
        assert duckdb_run.stdout.replace("duckdb", "spark") == spark_run.stdout
        if option == "--csv":
            assert duckdb_file.read_bytes() == spark_file.read_bytes()
        else:
            assert pq.read_table(spark_file).equals(pq.read_table(duckdb_file))
            assert pq.ParquetFile(spark_file).metadata.num_row_groups > 10


def test_the_builders_fold_leaves_fewer_rows_here(store):
    query = QUERIES["the builder's fold, until"]
    folded = read_sessions(store, **query).num_rows
    assert folded < read_sessions(store, until=query["until"]).num_rows - 100


def test_recommend_groups_on_the_executors_and_proposes_the_same_bytes(
    store, spark, run_cli, monkeypatch
):
    """The builder's per-session step (`classify` is never called in this process), its
    group-by into rules, the blocked attempts and the replay under the proposals run on the
    executors: what comes back is per rule, triple, attempt or address, never per session
    (`_brought_back_per_rule_not_per_session`). The output is DuckDB's byte for byte, JSON
    and text, with the fold in 5 and 3 tasks, so standing decisions, triples, examples,
    blocked attempts and addresses span tasks."""
    policy_set = load_policy(HOME_LAB)
    conf = spark.session.conf
    for extra, partitions, proposes in (
        (["--json"], "5", True),
        (["--json", "--categories", "clients,infrastructure", "--include-blocked"], None, True),
        (["--since", "2025-11-19T00:00:01", "--vrf", "blue"], "3", True),
        (["--json", "--between", "203.0.113.0/24"], None, False),  # nothing in scope
        (["--json", "--vrf", "nosuch"], None, False),  # an empty fold: no task has rows
    ):
        args = ("recommend", HOME_LAB, "--store", str(store), *extra)
        duckdb_run = run_cli(*args)
        assert duckdb_run.exit_code == 0, duckdb_run.stderr
        passed_on = _passed_on_rows(store, policy_set, extra)
        collected: list[tuple[str, int]] = []
        with monkeypatch.context() as patched:
            patched.setattr(recommend_module, "classify", _not_on_the_driver)
            patched.setattr(recommend_spark, "classify", _not_on_the_driver)
            patched.setattr(recommend_spark, "_to_driver", _counting(collected))
            if partitions:
                conf.set("spark.sql.adaptive.coalescePartitions.enabled", "false")
                conf.set("spark.sql.shuffle.partitions", partitions)
            try:
                spark_run = run_cli(*args, "--engine", "spark")
            finally:
                conf.unset("spark.sql.adaptive.coalescePartitions.enabled")
                conf.unset("spark.sql.shuffle.partitions")
        assert spark_run.exit_code == 0, spark_run.stderr
        assert spark_run.stdout == duckdb_run.stdout
        assert ("allow_" in spark_run.stdout) == proposes
        _brought_back_per_rule_not_per_session(collected, passed_on, extra, spark_run.stdout)


def _brought_back_per_rule_not_per_session(
    collected: list[tuple[str, int]], passed_on: dict[str, int], extra: list[str], output: str
) -> None:
    """What each query brought back: nothing per session (the group-by into rules, the
    blocked attempts and the replay under the proposals run on the executors), only what
    the output lists, the evidence's addresses and the group-by's triples."""
    counted: Counter = Counter()
    for what, rows in collected:
        counted[what] += rows
    assert counted["errors"] == 0
    # only those in no category group: the tasks map those themselves
    assert counted["addresses"] <= passed_on["addresses outside categories"]
    # the evidence's services only: the unanswered sessions' ports (a port scan's) are
    # named by the tasks and come back only in the blocked attempts
    assert counted["services"] <= passed_on["services"]
    if passed_on["evidence"]:
        assert max(rows for _, rows in collected) < passed_on["evidence"] < passed_on["fold"]
    if "--json" in extra:
        listed = json.loads(output)
        rules = listed["rules"]
        assert counted["examples"] == sum(len(r["evidence"]["examples"]) for r in rules)
        assert counted["current"] == sum(len(r["current_decisions"]) for r in rules)
        assert counted["blocked"] == len(listed["blocked_attempts"])
        assert counted["triples"] <= listed["quality"]["observed_combinations"]
        assert counted["measured"] <= 2 + len(listed["quality"]["unverified"])


def test_recommend_on_spark_counts_what_passes_a_device_that_does_not_compile(
    store, spark, run_cli, tmp_path
):
    """The replay under the proposals on the executors (`groupby_spark`'s second pass)
    counts the evidence that passes a device whose policy does not compile, as DuckDB's
    path does: leaf2's two domains both bind VRF ALL (EOS takes one traffic policy per VRF),
    and its segment holds the store's DNS servers."""
    broken = with_leaf2(load_policy(HOME_LAB), leaf2_segment="10.100.1.0/24")
    path = tmp_path / "leaf2.yaml"
    path.write_text(dump_policy(broken))
    args = ("recommend", str(path), "--store", str(store), "--policy", "vrf_all_home")
    duckdb_out, spark_out = _both(run_cli, *args, "--json")
    assert spark_out == duckdb_out
    unverified = json.loads(spark_out)["quality"]["unverified"]
    assert [u["device"] for u in unverified] == ["leaf2"] and unverified[0]["sessions"] > 0


def _not_on_the_driver(*args, **kwargs):
    raise AssertionError("recommend --engine spark classified sessions on the driver")


def _counting(collected: list[tuple[str, int]]):
    def to_driver(frame, what):
        table = frame.toArrow()
        collected.append((what, table.num_rows))
        return table

    return to_driver


def _passed_on_rows(store: Path, policy_set, extra: list[str]) -> dict[str, int]:
    """With DuckDB and the builder on this process: the fold's rows, how many of them are
    evidence (what the rules are made of), the evidence's distinct addresses in no category
    group and distinct services (protocol and server port)."""

    def given(option: str) -> str | None:
        return extra[extra.index(option) + 1] if option in extra else None

    categories = tuple((given("--categories") or "").split(",")) if "--categories" in extra else ()
    vrf, since, between = given("--vrf"), given("--since"), given("--between")
    options = BuilderOptions(
        categories=categories,
        scope=scope_from(policy_set, None, None, vrf, [between] if between else [], since, None),
        include_blocked="--include-blocked" in extra,
    )
    columns = read_session_columns(store, None, policy_set, options.scope, vrf, categories)
    scoped = columns.take(scope_mask(columns, options.scope))
    classified = recommend_module.classify(policy_set, scoped, options)
    evidence = classified.evidence
    ends = np.concatenate((scoped.src[evidence], scoped.dst[evidence]))
    services = (
        scoped.protocol[evidence].astype(np.int64) * 65536 + classified.side.server_port[evidence]
    )
    used = np.unique(ends)
    _, category = category_groups(policy_set, scoped.addresses, categories)
    return {
        "fold": len(columns),
        "evidence": int(evidence.sum()),
        "addresses outside categories": int((category[used] < 0).sum()),
        "services": len(np.unique(services)),
    }


def test_whatif_replays_on_the_executors_and_reports_the_same_bytes(
    store, spark, run_cli, monkeypatch
):
    """One pass on the executors (the fold never comes to the driver: `table` is not
    called), byte for byte DuckDB's report, examples too: with the fold in 5 ranges (5 tasks,
    so groups and their first examples span tasks) and in whatever AQE makes of it."""

    def no_fold_to_the_driver(*args):
        raise AssertionError("whatif --engine spark brought the fold to the driver")

    monkeypatch.setattr(SparkEngine, "table", no_fold_to_the_driver)
    conf = spark.session.conf
    for base, candidate, changed, partitions in (
        (DNS_NTP, HOME_LAB, "newly_blocked", "5"),
        (HOME_LAB, DNS_NTP, "newly_allowed", None),
    ):
        if partitions:
            conf.set("spark.sql.adaptive.coalescePartitions.enabled", "false")
            conf.set("spark.sql.shuffle.partitions", partitions)
        try:
            duckdb_out, spark_out = _both(
                run_cli, "whatif", "--base", base, "--candidate", candidate,
                "--sessions", str(store), "--json",
            )  # fmt: skip
        finally:
            conf.unset("spark.sql.adaptive.coalescePartitions.enabled")
            conf.unset("spark.sql.shuffle.partitions")
        assert duckdb_out == spark_out
        report = json.loads(spark_out)
        assert report["rows"] > 1000 and report["candidate_rule_hits"]
        groups = report[changed]["groups"]
        assert len(groups) > 3 and all(len(group["examples"]) == 3 for group in groups)


def test_whatif_and_recommend_on_spark_say_what_is_wrong_in_one_line(
    store, spark, run_cli, tmp_path
):
    """A device no policy names fails before Spark runs; a bad address in the store fails
    in an executor's task and comes back as the same kind of error DuckDB's path gives."""
    result = run_cli(
        "whatif", "--base", DNS_NTP, "--candidate", HOME_LAB, "--sessions", str(store),
        "--device", "nosuch", "--engine", "spark",
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith("error: device 'nosuch' enforces no policy (devices: ")
    bad = FlowStore(tmp_path / "bad").open()
    rows = _saturating_pair(DAYS["2025-11-18"]).to_pylist()
    bad.write(pa.Table.from_pylist([rows[0], {**rows[1], "src": "10.0.0.300"}]))
    said = []
    for engine in ("duckdb", "spark"):
        result = run_cli(
            "whatif", "--base", DNS_NTP, "--candidate", HOME_LAB,
            "--sessions", str(tmp_path / "bad"), "--engine", engine,
        )  # fmt: skip
        assert result.exit_code == 1 and not result.stdout
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        said.append(result.stderr)
    assert said[0].endswith("'10.0.0.300' is not an IPv4 or IPv6 address\n")
    assert said[1].replace(", Spark partition 0", "") == said[0]
    for engine in ("duckdb", "spark"):  # the builder's executors say it the same way
        result = run_cli(
            "recommend", HOME_LAB, "--store", str(tmp_path / "bad"), "--engine", engine
        )
        assert result.exit_code == 1 and not result.stdout
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.endswith("src '10.0.0.300' is not an IPv4 or IPv6 address\n")
    assert ", Spark partition " in result.stderr


def test_the_cli_starts_its_own_spark_quietly_on_loopback(store):
    """A real `microseg` process with its own JVM: stdout and stderr are exactly what
    `--engine duckdb` prints (the bad-segment warning), nothing of Spark's own."""
    outputs = []
    spark = ["--spark-master", "local[1]", "--spark-conf", "spark.sql.shuffle.partitions=2"]
    for engine in (["--engine", "duckdb"], ["--engine", "spark", *spark]):
        done = subprocess.run(
            cli_command("sessions", "list", "--store", str(store), "--json", *engine),
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        outputs.append((done.stdout, done.stderr))
    assert outputs[0] == outputs[1]
    assert "skipped 12 bad segment(s)" in outputs[1][1]


def test_a_session_file_is_read_with_duckdb_only(spark, tmp_path):
    path = tmp_path / "sessions.csv"
    path.write_text("protocol,src,dst,dport\ntcp,10.0.0.1,10.0.0.2,22\n")
    with pytest.raises(MicrosegError, match="a session file is read with --engine duckdb"):
        read_sessions(path, engine=spark)


@pytest.mark.parametrize(
    ("master", "conf", "message"),
    [
        ("localhost", [], "--spark-master 'localhost': expected local"),
        ("local[0]", [], "--spark-master 'local[0]': expected"),
        (
            "local[*]",
            ["executor.memory=4g"],
            "--spark-conf 'executor.memory=4g': expected spark.KEY",
        ),
        ("local[*]", ["spark.executor.memory"], "expected spark.KEY=VALUE"),
    ],
)
def test_bad_spark_settings_are_user_errors(master, conf, message):
    with pytest.raises(MicrosegError, match=message.replace("[", r"\[").replace("*", r"\*")):
        spark_settings(master, conf)


def test_spark_settings_come_from_the_environment_then_the_options(monkeypatch):
    monkeypatch.setenv("MICROSEG_SPARK_MASTER", "spark://10.0.0.5:7077")
    monkeypatch.setenv("MICROSEG_SPARK_CONF", "spark.executor.memory=4g 'spark.app.name=a b'")
    settings = spark_settings(None, ["spark.executor.memory=8g"])
    assert settings.master == "spark://10.0.0.5:7077" and not settings.local
    conf = settings.spark_conf()
    assert conf["spark.executor.memory"] == "8g" and conf["spark.app.name"] == "a b"
    assert "spark.driver.host" not in conf  # a cluster must reach the driver: the user says how
    assert spark_settings("local[2]").spark_conf()["spark.driver.bindAddress"] == "127.0.0.1"
    monkeypatch.setenv("MICROSEG_SPARK_CONF", "'unclosed")
    with pytest.raises(MicrosegError, match=r"\$MICROSEG_SPARK_CONF: No closing quotation"):
        spark_settings()


def test_without_java_the_error_says_what_to_install(store):
    done = subprocess.run(
        cli_command("sessions", "list", "--store", str(store), "--engine", "spark"),
        env=cli_env(JAVA_HOME="/nonexistent/jvm"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "needs Java 17 or later" in done.stderr and "default-jre-headless" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_without_pyspark_the_error_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyspark" else real(name, *a)
    )
    with pytest.raises(MicrosegError, match=r"needs pyspark: pip install 'microseg\[spark\]'"):
        spark_module.start_session(spark_module.SparkSettings())


def test_spark_options_without_the_spark_engine_are_refused(run_cli, store):
    result = run_cli("sessions", "list", "--store", str(store), "--spark-master", "local[2]")
    assert result.exit_code == 1
    assert "--spark-master: only with --engine spark" in result.stderr
    result = run_cli("sessions", "list", "--store", str(store), "--engine", "hadoop")
    assert result.exit_code == 1 and "--engine 'hadoop': expected duckdb or spark" in result.stderr


def test_a_store_path_hadoop_would_take_for_a_pattern_is_refused(spark, tmp_path):
    odd = tmp_path / "flows[1]"
    FlowStore(odd).open().write(_saturating_pair(DAYS["2025-11-18"]))
    with pytest.raises(MicrosegError, match=r"cannot read a path with \[ \] in it"):
        read_sessions(odd, engine=spark)


def test_the_spark_module_imports_pyspark_only_when_a_session_starts():
    probe = "import sys, microseg.flows.spark, microseg.cli.common; print('pyspark' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=cli_env(), capture_output=True, text=True, timeout=120
    )
    assert done.stdout.split() == ["False"], done.stderr
