"""bench/scale.py at its --quick size, so the scale bench cannot rot: the store it generates
is the flow store's own layout with exactly the sessions asked for, `recommend` (the CLI, in
a subprocess) scopes exactly the sessions the generator counted for the monitor rules, with
DuckDB and with Spark (`local[2]`) alike, and a second run reuses the store instead of writing
it again. Correctness only, never time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import scale
from microseg.flows.flowstore import FlowStore, read_sessions

pytestmark = pytest.mark.slow


def test_the_quick_scale_bench_generates_the_store_and_recommends_from_it(tmp_path):
    options = scale.arguments(["--quick", "--data", str(tmp_path), "--engines", "duckdb,spark"])
    figures = scale.bench(options)

    assert [store["sessions"] for store in figures["stores"]] == list(scale.QUICK_SIZES)
    for store_figures in figures["stores"]:  # the builder's fold brings fewer rows back
        assert 0 < store_figures["builder_rows"] < store_figures["summary_rows"]
        assert store_figures["summary_rows"] < store_figures["sessions"]
    for run in figures["runs"]:
        assert run["ok"], run
        assert run["scoped_as_generated"], run
        assert run["rules"] > 0
    largest = scale.QUICK_SIZES[-1]
    assert figures["largest_store_within_limit"] == {"duckdb": largest, "spark": largest}
    # the engines' recommendations are the same JSON, byte for byte, at every size
    assert figures["identical_proposals"] == {str(size): True for size in scale.QUICK_SIZES}

    # the collector's layout: date and collector partitions, segments named by collector
    store = FlowStore(tmp_path / "store")
    partitions = {segment.parent.relative_to(store.segment_dir) for segment in store.segments()}
    assert len(partitions) == scale.DAYS * scale.COLLECTORS
    assert all(
        str(p).startswith("date=2026-11-") and "/collector=mon" in str(p) for p in partitions
    )
    view = tmp_path / "views" / str(scale.QUICK_SIZES[-1])
    assert read_sessions(view, ephemeral_port=None).num_rows == scale.QUICK_SIZES[-1]

    # the next run reuses the store: a larger size adds a round, nothing is written again,
    # and the smaller size's view still holds exactly its own sessions
    before = sorted(store.segments())
    larger = 2 * scale.QUICK_SIZES[-1]
    data = scale.DataDir(tmp_path, options.seed)
    manifest = data.generate([*scale.QUICK_SIZES, larger], 1000, print)
    assert [r["until"] for r in manifest["rounds"]] == [*scale.QUICK_SIZES, larger]
    assert set(before) < set(store.segments())
    assert scale.stored(data.view(manifest, scale.QUICK_SIZES[-1]))[0] == scale.QUICK_SIZES[-1]
    assert scale.stored(data.view(manifest, larger))[0] == larger
