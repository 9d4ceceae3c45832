"""Where the Policy Builder's per-session work runs with `--engine spark`: on the driver, as
`recommend` does, or on Spark's executors (mapInArrow), measured on a scale bench store.

`recommend --engine spark` brings the builder's fold (`flows.engines.builder_rows`) back to
the driver and runs the builder there with numpy. The alternative: run the builder's work per
session on the executors, with the same code (`builder.recommend.classify`: scope, server
side, every device's decision, the existing rule that allows or blocks it), and let Spark
group the result, so that fewer rows reach the driver. This bench times both halves of that
trade on one store:

1. the fold for `--store`, made with DuckDB (the same rows Spark makes, tested in
   tests/flows/test_spark_engine.py), written to a temporary Parquet file that Spark reads
   and checkpoints (`fold_rows`);
2. today: the fold to the driver (`toArrow`, `to_driver_s`), `classify` over it there
   (`driver_classify_s`), and the whole builder (`builder_s`: `recommend`, which classifies,
   aggregates, places and verifies);
3. the alternative's first pass: `classify` on the executors over the fold's partitions
   (mapInArrow, Arrow batches into the same numpy code) and Spark's group-by of the rows by
   class (`executors_cold_s` with fresh Python workers, `executors_warm_s` with reused ones);
   the counts per class must equal the driver's (`same_classes`);
4. what the recommendation lists whatever runs where (`listed`): its rules, the blocked
   attempts (one per client, server and service) and the rest, the rows that must come back.

Executors need microseg importable and pandas (pyspark's mapInArrow requires it): with a
local master the Python workers are this interpreter with this checkout's `src` on their
path. Prints one JSON line.

    .venv/bin/python bench/builder_split.py --store /srv/scale-data/views/1000000 \\
        --policy /srv/scale-data/policy.yaml --spark-master 'local[2]'
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from microseg.builder import BuilderOptions, recommend  # noqa: E402
from microseg.builder.endpoints import address_classes  # noqa: E402
from microseg.builder.recommend import classify  # noqa: E402
from microseg.builder.report import recommendation_json  # noqa: E402
from microseg.builder.scope import scope_from, scope_mask, scope_prefixes  # noqa: E402
from microseg.cli.common import resolve_policy  # noqa: E402
from microseg.evaluate.cells import port_cuts  # noqa: E402
from microseg.flows.engines import OUTPUT_SCHEMA, DuckDBEngine  # noqa: E402
from microseg.flows.flowstore import read_sessions  # noqa: E402
from microseg.flows.session_columns import session_columns  # noqa: E402
from microseg.model import PolicySet  # noqa: E402
from scale import CATEGORIES  # noqa: E402

# a session's class: the builder's classify, or out of scope
CLASSES = ("out of scope", "evidence", "already allowed", "blocked by a rule", "unanswered")
CLASS_SCHEMA = "class INT, sessions BIGINT"


def builder_options(policy_set: PolicySet, target: str) -> BuilderOptions:
    scope = scope_from(policy_set, None, target, None, [], None, None)
    return BuilderOptions(categories=CATEGORIES, scope=scope, target_policy=target)


def classes(policy_set: PolicySet, options: BuilderOptions, table: pa.Table) -> np.ndarray:
    """Per row of a fold, its class (an index into CLASSES)."""
    columns = session_columns(table)
    in_scope = scope_mask(columns, options.scope)
    scoped = columns.take(in_scope)
    classified = classify(policy_set, scoped, options)
    kind = np.select(
        [classified.evidence, classified.allowed, classified.blocked], [1, 2, 3], default=4
    )
    result = np.zeros(len(columns), dtype=np.int32)
    result[in_scope] = kind
    return result


def on_executors(policy: str, target: str) -> Callable[[Iterator[pa.RecordBatch]], Iterator]:
    """The mapInArrow function: a task's fold rows -> (class, sessions) per row. The
    policy is read and compiled, and every device's decisions made, once per task: Arrow
    brings a task's rows in batches of 10,000 (spark.sql.execution.arrow.maxRecordsPerBatch),
    and each device's evaluator has a fixed cost per call, so the batches are classified as
    one table (the alternative's best case)."""

    def batches(rows: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        policy_set = resolve_policy(policy)
        table = pa.Table.from_batches(list(rows))
        if not table.num_rows:
            return
        options = builder_options(policy_set, target)
        kind = classes(policy_set, options, table.select(OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA))
        sessions = table["sessions"].combine_chunks()
        yield pa.RecordBatch.from_arrays([pa.array(kind), sessions], names=["class", "sessions"])

    return batches


def counted(kind: np.ndarray, sessions: np.ndarray) -> dict:
    return {
        name: [int((kind == code).sum()), int(sessions[kind == code].sum())]
        for code, name in enumerate(CLASSES)
        if (kind == code).any()
    }


def bench(options: argparse.Namespace) -> dict:
    if importlib.util.find_spec("pandas") is None:
        raise SystemExit("needs pandas for pyspark's mapInArrow: pip install 'pandas>=2.2,<3'")
    from pyspark import StorageLevel

    from microseg.flows.spark import spark_settings, start_session

    policy_set = resolve_policy(str(options.policy))
    builder = builder_options(policy_set, options.target)
    named = scope_prefixes(builder.scope)
    fold = read_sessions(
        options.store,
        engine=DuckDBEngine(),
        client_port_cuts=port_cuts(policy_set),
        address_classes=address_classes(policy_set, CATEGORIES, named),
    )
    figures: dict = {"store": str(options.store), "fold_rows": fold.num_rows}
    # the executors' Python: this interpreter, importing this checkout's microseg
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    settings = spark_settings(options.spark_master, options.spark_conf)
    session, started = start_session(settings)
    try:
        with tempfile.TemporaryDirectory(prefix="microseg-split-") as scratch:
            path = Path(scratch) / "fold.parquet"
            pq.write_table(fold, path)
            frame = session.read.parquet(str(path)).localCheckpoint(
                eager=True, storageLevel=StorageLevel.DISK_ONLY
            )
            clock = time.perf_counter()
            back = frame.toArrow().select(OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA)
            figures["to_driver_s"] = round(time.perf_counter() - clock, 1)
            clock = time.perf_counter()
            kind = classes(policy_set, builder, back)
            figures["driver_classify_s"] = round(time.perf_counter() - clock, 1)
            driver = counted(kind, back["sessions"].to_numpy())
            clock = time.perf_counter()
            recommendation = recommend(policy_set, back, builder)
            figures["builder_s"] = round(time.perf_counter() - clock, 1)
            executors: dict = {}
            for run in ("cold", "warm"):
                clock = time.perf_counter()
                grouped = (
                    frame.repartition(options.partitions)
                    .mapInArrow(on_executors(str(options.policy), options.target), CLASS_SCHEMA)
                    .groupBy("class")
                    .agg({"*": "count", "sessions": "sum"})
                    .collect()
                )
                figures[f"executors_{run}_s"] = round(time.perf_counter() - clock, 1)
                executors = {
                    CLASSES[row["class"]]: [int(row["count(1)"]), int(row["sum(sessions)"])]
                    for row in sorted(grouped, key=lambda row: row["class"])
                }
    finally:
        if started:
            session.stop()
    figures["classes_rows_sessions"] = driver
    figures["same_classes"] = executors == driver
    data = recommendation_json(recommendation)
    figures["listed"] = {key: len(value) for key, value in data.items() if isinstance(value, list)}
    figures["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return figures


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="a flow store (a scale view)")
    parser.add_argument("--policy", type=Path, required=True, help="the scale bench's policy")
    parser.add_argument("--target", default="dc-prod", help="the policy recommended into")
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--spark-conf", action="append", default=["spark.driver.memory=6g"])
    parser.add_argument("--partitions", type=int, default=2, help="executor tasks per pass")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    sys.stdout.write(json.dumps(bench(arguments(argv))) + "\n")


if __name__ == "__main__":
    main()
