"""What-if as one pass on Spark's executors: `whatif --engine spark` on a flow store.

The session engine's fold (`flows.engines.replay_rows`) stays on the cluster. Each task
replays its rows under the base and the candidate with the code the driver runs for DuckDB
(`Replay.parts`: the same numpy evaluator; both policies compiled once here and broadcast)
and returns its part of the report: its totals, the changes' groups with their sums and
first examples, its rule hits. Spark's group-by sums the parts per group and keeps each
group's first examples; only the report's rows reach the driver.

"First" is in the session table's order, the one DuckDB's path reads the fold in: the
fold's ORDER BY sorts the rows into ranges, one per partition, and
`monotonically_increasing_id` numbers them in that order (the partition in the upper bits),
so each row carries its position in the whole table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from microseg.evaluate.whatif import (
    CHANGES,
    EXAMPLE_FIELDS,
    EXAMPLES_PER_GROUP,
    LABEL_FIELDS,
    PARTS_SCHEMA,
    Replay,
    change_group,
    rule_hit,
    whatif_report,
)
from microseg.flows.engines import REPLAY_SCHEMA, SPARK, SessionQuery, saturating_sum
from microseg.flows.spark import SparkEngine, arrow_task, ship_microseg, spark_ddl
from microseg.model import MicrosegError

# a task's parts, or the first error it met (`error`, at its first row's position)
TASK_SCHEMA = PARTS_SCHEMA.append(pa.field("error", pa.string()))
TASK_DDL = spark_ddl(TASK_SCHEMA)
_KEY = ", ".join(f"`{name}`" for name in ("part", *LABEL_FIELDS, "service"))


def whatif_on_spark(
    engine: SparkEngine, segments: list[Path], query: SessionQuery, replay: Replay, where: str
) -> dict:
    """The report for the store's `segments` under `query` (what-if's fold), replayed on
    Spark's executors. Raises one of `engine.errors` when a segment cannot be read."""
    if not segments:
        return replay.report(REPLAY_SCHEMA.empty_table(), where)
    from pyspark.sql import functions

    session = engine.session
    ship_microseg(session)
    shared = session.sparkContext.broadcast(replay)
    try:
        frame = engine.frame(segments, query)
        positioned = frame.withColumn("_position", functions.monotonically_increasing_id())
        # the parts once (small: groups and examples per task), then read by one query
        parts = positioned.mapInArrow(_task(shared, where), TASK_DDL).localCheckpoint(eager=True)
        parts.createOrReplaceTempView("whatif_parts")
        try:
            return _report(session)
        finally:
            session.catalog.dropTempView("whatif_parts")
    finally:
        shared.destroy()


def _task(shared: Any, where: str) -> Callable[[Iterator[pa.RecordBatch]], Iterator]:
    """The mapInArrow function: a task's rows (in the table's order) -> its parts."""

    def step(sessions: pa.Table, positions: np.ndarray, task_where: str) -> pa.Table:
        found = pa.Table.from_batches([shared.value.parts(sessions, positions, task_where)])
        return found.append_column("error", pa.nulls(found.num_rows, pa.string()))

    return arrow_task(step, where, REPLAY_SCHEMA, TASK_SCHEMA)


def _report(session: Any) -> dict:
    """The report from the parts in the view `whatif_parts`, collected in one query: the
    groups' sums, each group's first examples and the tasks' errors."""
    sums = ", ".join(
        saturating_sum(f"`{name}`", SPARK, name) for name in ("sessions", "packets", "bytes")
    )
    rest = ", ".join(f"`{name}`" for name in ("position", *EXAMPLE_FIELDS, "error"))
    nothing = ", ".join(f"NULL AS `{name}`" for name in ("position", *EXAMPLE_FIELDS, "error"))
    found = session.sql(
        f"""SELECT {_KEY}, {sums}, CAST(sum(CAST(`rows` AS DECIMAL(38, 0))) AS BIGINT) AS `rows`,
               {nothing}
        FROM whatif_parts WHERE part NOT LIKE '% example' AND part <> 'error' GROUP BY {_KEY}
        UNION ALL
        SELECT {_KEY}, NULL, NULL, NULL, NULL, {rest} FROM (
            SELECT *, row_number() OVER (PARTITION BY {_KEY} ORDER BY position) AS _rank
            FROM whatif_parts WHERE part LIKE '% example' OR part = 'error') AS ranked
        WHERE _rank <= {EXAMPLES_PER_GROUP}"""
    ).collect()
    errors = sorted((row["position"], row["error"]) for row in found if row["part"] == "error")
    if errors:
        raise MicrosegError(errors[0][1])
    examples_of: dict[tuple, list[dict]] = {}
    for row in sorted(
        (row for row in found if row["part"].endswith(" example")), key=lambda r: r["position"]
    ):
        key = (row["part"].removesuffix(" example"), *(row[n] for n in (*LABEL_FIELDS, "service")))
        examples_of.setdefault(key, []).append({name: row[name] for name in EXAMPLE_FIELDS})
    sessions, rows = 0, 0
    changes: dict[str, list] = {change: [] for change in CHANGES}
    hits = []
    for row in found:
        label = {name: row[name] for name in LABEL_FIELDS}
        if row["part"] == "total":
            sessions, rows = row["sessions"], row["rows"]
        elif row["part"] == "candidate_rule_hits":
            hits.append(rule_hit(label, row.asDict()))
        elif row["part"] in changes:
            key = (row["part"], *label.values(), row["service"])
            changes[row["part"]].append(
                change_group(label, row["part"], row["service"], row.asDict(), examples_of[key])
            )
    return whatif_report(sessions, rows, changes, hits)
