"""bench/scale.py at its --quick size, so the scale bench cannot rot: the store it generates
is the flow store's own layout with exactly the sessions asked for, `recommend` (the CLI, in
a subprocess) scopes exactly the sessions the generator counted for the monitor rules, and a
second run reuses the store instead of writing it again. Correctness only, never time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import scale
from microseg.flows.flowstore import FlowStore, read_sessions

pytestmark = pytest.mark.slow


def test_the_quick_scale_bench_generates_the_store_and_recommends_from_it(tmp_path):
    options = scale.arguments(["--quick", "--data", str(tmp_path), "--engines", "duckdb"])
    figures = scale.bench(options)

    assert [store["sessions"] for store in figures["stores"]] == list(scale.QUICK_SIZES)
    for run in figures["runs"]:
        assert run["ok"], run
        assert run["scoped_as_generated"], run
        assert run["rules"] > 0
    assert figures["largest_store_within_limit"] == {"duckdb": scale.QUICK_SIZES[-1]}

    # the collector's layout: date and collector partitions, segments named by collector
    store = FlowStore(tmp_path / "store")
    partitions = {segment.parent.relative_to(store.segment_dir) for segment in store.segments()}
    assert len(partitions) == scale.DAYS * scale.COLLECTORS
    assert all(
        str(p).startswith("date=2026-11-") and "/collector=mon" in str(p) for p in partitions
    )
    smallest = read_sessions(tmp_path / "views" / str(scale.QUICK_SIZES[0]), ephemeral_port=None)
    assert smallest.num_rows == scale.QUICK_SIZES[0]

    # a second run reuses the generated store: no segment is written again
    before = sorted(store.segments())
    manifest = scale.DataDir(tmp_path, options.seed).generate(list(scale.QUICK_SIZES), 1000, print)
    assert sorted(store.segments()) == before
    assert [r["until"] for r in manifest["rounds"]] == list(scale.QUICK_SIZES)
