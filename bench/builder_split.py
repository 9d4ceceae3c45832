"""`recommend --engine spark` with the builder's per-session step on Spark's executors
against bringing the whole fold back, measured on the scale bench's store (`bench/scale.py`'s
generator, layout and policy, `recommend --policy dc-prod --categories ...` as it runs it).

Two ways to the same recommendation, in the same run, on one Spark session:

* `fold_to_driver`: what `recommend --engine spark` did before: the builder's fold
  (`flows.engines.builder_rows`) comes back to the driver (`toArrow`, `to_driver_s`) and the
  whole builder runs there with numpy (`builder_s`: classify, aggregate, place, verify);
* `executors`: what it does now (`builder.recommend_spark`, `builder.groupby_spark`): the
  executors classify their rows with the same code (mapInArrow into
  `builder.recommend.classify`), make the group-by's parts per (source endpoint,
  destination endpoint, service) triple, Spark merges them, the driver merges the triples
  into rules, and a second pass replays the evidence under the proposals; only the
  evidence's addresses, the services, the triples and what the output lists per rule and
  blocked attempt come back.

Each is run twice, alternately, the fold first (`first_s` of `executors` includes Spark's
first start of its Python workers), and both JSON documents must be byte for byte DuckDB's
(`recommend --engine duckdb`, timed too). `rows_to_driver` counts what each brings back
(`rows_to_driver_by_query`: per query of the executors' way).
Prints one JSON line.

    flock /work/wt/bench.lock .venv/bin/python bench/builder_split.py --data /srv/scale-data \\
        --sizes 1000000 --spark-master 'local[2]'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import spark_sizes  # noqa: E402
from microseg.builder import (  # noqa: E402
    BuilderOptions,
    recommend,
    recommend_spark,
)
from microseg.builder.report import recommendation_json  # noqa: E402
from microseg.builder.scope import scope_from  # noqa: E402
from microseg.cli.builder import _recommended, read_session_columns  # noqa: E402
from microseg.flows.engines import DuckDBEngine  # noqa: E402
from microseg.flows.spark import SparkEngine  # noqa: E402
from microseg.policyfile import load_policy  # noqa: E402
from scale import CATEGORIES, DataDir  # noqa: E402
from spark_sizes import timed  # noqa: E402

TARGET = "dc-prod"


def bench_size(data: DataDir, manifest: dict, size: int, engine: SparkEngine) -> dict:
    view = data.view(manifest, size)
    policy_set = load_policy(data.policy)
    scope = scope_from(policy_set, None, TARGET, None, [], None, None)
    options = BuilderOptions(categories=CATEGORIES, scope=scope, target_policy=TARGET)
    figures: dict = {"sessions": size, "load_average_1m_before": round(os.getloadavg()[0], 2)}

    def as_json(recommendation) -> str:
        return json.dumps(recommendation_json(recommendation))

    seconds, expected = timed(lambda: _recommended(view, DuckDBEngine(), policy_set, options, None))
    figures["duckdb_s"] = seconds
    expected_json = as_json(expected)
    collected: list[tuple[str, int]] = []
    original = recommend_spark._to_driver

    def counted(frame, what):
        table = original(frame, what)
        collected.append((what, table.num_rows))
        return table

    recommend_spark._to_driver = counted
    runs: dict = {"fold_to_driver": [], "executors": []}
    try:
        for _ in range(2):
            to_driver_s, fold = timed(
                lambda: read_session_columns(
                    view, engine, policy_set, scope, None, options.categories
                )
            )
            builder_s, found = timed(lambda fold=fold: recommend(policy_set, fold, options))
            runs["fold_to_driver"].append(
                {
                    "s": round(to_driver_s + builder_s, 1),
                    "to_driver_s": to_driver_s,
                    "builder_s": builder_s,
                    "rows_to_driver": len(fold),
                    "same_as_duckdb": as_json(found) == expected_json,
                }
            )
            del fold
            collected.clear()
            seconds, found = timed(lambda: _recommended(view, engine, policy_set, options, None))
            runs["executors"].append(
                {
                    "s": seconds,
                    "rows_to_driver": sum(rows for _, rows in collected),
                    "rows_to_driver_by_query": _by_query(collected),
                    "same_as_duckdb": as_json(found) == expected_json,
                }
            )
    finally:
        recommend_spark._to_driver = original
    for name, done in runs.items():
        figures[name] = {
            "first_s": done[0]["s"],
            "second_s": done[1]["s"],
            **{key: value for key, value in done[1].items() if key != "s"},
            "same_as_duckdb": all(run["same_as_duckdb"] for run in done),
        }
    figures["fold_to_driver_over_executors"] = round(
        figures["fold_to_driver"]["second_s"] / figures["executors"]["second_s"], 2
    )
    data_json = recommendation_json(expected)
    figures["listed"] = {
        key: len(value) for key, value in data_json.items() if isinstance(value, list)
    }
    figures["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return figures


def _by_query(collected: list[tuple[str, int]]) -> dict[str, int]:
    found: dict[str, int] = {}
    for what, rows in collected:
        found[what] = found.get(what, 0) + rows
    return found


def bench(options: argparse.Namespace) -> dict:
    return spark_sizes.bench("builder_split", options, bench_size)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    return spark_sizes.arguments(__doc__.splitlines()[0], argv)


def main(argv: list[str] | None = None) -> None:
    sys.stdout.write(json.dumps(bench(arguments(argv))) + "\n")


if __name__ == "__main__":
    main()
