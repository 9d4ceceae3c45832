"""The engine seam of `read_sessions` (the Spark engine's own tests: test_spark_engine.py)."""

from __future__ import annotations

import re

import duckdb
import pyarrow as pa
import pytest
from test_flowstore import some_sessions

from microseg.flows.engines import DUCKDB, SPARK, DuckDBEngine, SessionQuery, session_sql
from microseg.flows.flowstore import FlowStore, read_sessions, session_batches
from microseg.model import MicrosegError


class BrokenStreamEngineDouble(DuckDBEngine):
    """DuckDB whose stream breaks after its first chunk, as a Spark job does when the
    cluster goes away half-way through an export."""

    def batches(self, segments, query):
        table = self.table(segments, query)
        yield table.slice(0, 1).to_batches()[0]
        raise duckdb.IOException("connection to the cluster lost")


def test_an_export_streams_the_rows_read_sessions_returns(tmp_path):
    store = FlowStore(tmp_path).open()
    store.write(some_sessions())
    store.write(some_sessions(52000, 2))
    for ephemeral_port in (49152, None):
        streamed = pa.Table.from_batches(
            list(session_batches(tmp_path, ephemeral_port=ephemeral_port))
        )
        assert (
            streamed.to_pylist()
            == read_sessions(tmp_path, ephemeral_port=ephemeral_port).to_pylist()
        )


def test_a_stream_that_breaks_after_its_first_chunk_is_a_user_error(tmp_path):
    FlowStore(tmp_path).open().write(some_sessions())
    batches = session_batches(tmp_path, ephemeral_port=None, engine=BrokenStreamEngineDouble())
    next(batches)
    with pytest.raises(MicrosegError, match="cannot read sessions: connection to the cluster lost"):
        next(batches)


@pytest.mark.parametrize("cuts", [None, (22, 40000, 41000)], ids=["summary", "builder's fold"])
def test_the_engines_share_the_sql_but_for_the_dialect(cuts):
    query = SessionQuery(vrf="blue", port=53, client_port_cuts=cuts)
    columns = ["vrf", "protocol", "src", "sport", "dst", "dport", "first_seen"]
    duckdb_sql, duckdb_parameters = session_sql(columns, query, DUCKDB)
    spark_sql, spark_parameters = session_sql(columns, query, SPARK)
    assert duckdb_parameters == spark_parameters == ["blue", "53", "53"]
    assert "TIMESTAMPTZ" in duckdb_sql and "DECIMAL" not in duckdb_sql
    translated = duckdb_sql.replace("TIMESTAMPTZ", "TIMESTAMP")
    for column in (
        "fwd_packets",
        "fwd_bytes",
        "rev_packets",
        "rev_bytes",
        "complete",
        "half_open",
        "sessions",
        "greatest(sessions, 1)",
    ):
        translated = translated.replace(f"sum({column})", f"sum(CAST({column} AS DECIMAL(38, 0)))")
    translated = re.sub(r"TRY_CAST\((\w+) AS INTEGER\)", lambda m: SPARK.number(m[1]), translated)
    assert translated == spark_sql
    assert ("row_number()" in spark_sql) == (cuts is not None)


def test_a_page_is_the_first_rows_of_the_table(tmp_path):
    store = FlowStore(tmp_path).open()
    store.write(some_sessions())
    store.write(some_sessions(52000, 2))
    every = read_sessions(tmp_path, ephemeral_port=None)
    assert every.num_rows == 5
    assert read_sessions(tmp_path, ephemeral_port=None, limit=2).equals(every.slice(0, 2))


class DeadDriverSessionDouble:
    """A SparkSession whose driver JVM has died (out of heap): py4j's socket refuses, as a
    10 M-session `recommend --engine spark` with the default 1g driver showed."""

    @property
    def read(self):
        raise ConnectionRefusedError(111, "Connection refused")


def test_a_dead_spark_driver_is_a_user_error_with_the_heap_setting(tmp_path):
    from microseg.flows.spark import SparkEngine, SparkSettings

    FlowStore(tmp_path).open().write(some_sessions())
    engine = SparkEngine(SparkSettings("local[2]"), session=DeadDriverSessionDouble())
    with pytest.raises(MicrosegError, match=r"Spark driver stopped.*spark\.driver\.memory=6g"):
        read_sessions(tmp_path, ephemeral_port=None, engine=engine)
    assert len(FlowStore(tmp_path).scan({}).live) == 1  # nothing taken for a bad segment


def test_duckdb_works_within_its_memory_limit_and_says_which_when_it_runs_out(tmp_path):
    store = FlowStore(tmp_path).open()
    store.write(some_sessions(50000, 400))
    every = read_sessions(tmp_path, ephemeral_port=None)
    assert read_sessions(tmp_path, ephemeral_port=None, engine=DuckDBEngine("64MB")).equals(every)
    with pytest.raises(MicrosegError, match=r"memory limit is 1MB.*MICROSEG_DUCKDB_MEMORY=8GB"):
        read_sessions(tmp_path, ephemeral_port=None, engine=DuckDBEngine("1MB"))


def test_the_duckdb_memory_limit_is_a_size_or_a_user_error(tmp_path, monkeypatch, run_cli):
    FlowStore(tmp_path).open().write(some_sessions())
    monkeypatch.setenv("MICROSEG_DUCKDB_MEMORY", "800MiB")
    assert DuckDBEngine().memory_limit == "800MiB"
    monkeypatch.setenv("MICROSEG_DUCKDB_MEMORY", "lots")
    result = run_cli("sessions", "list", "--store", str(tmp_path))
    assert result.exit_code == 1
    assert "$MICROSEG_DUCKDB_MEMORY 'lots': expected a size such as 4GB or 800MiB" in result.stderr


def test_duckdb_counts_the_rows_it_would_return(tmp_path):
    store = FlowStore(tmp_path).open()
    store.write(some_sessions())
    store.write(some_sessions(41000, 40))
    segments = FlowStore(tmp_path).scan().live
    for query in (SessionQuery(), SessionQuery(ephemeral_port=None), SessionQuery(limit=2)):
        assert (
            DuckDBEngine().rows(segments, query)
            == read_sessions(
                tmp_path, ephemeral_port=query.ephemeral_port, limit=query.limit
            ).num_rows
        )
    assert DuckDBEngine().rows([], SessionQuery()) == 0
