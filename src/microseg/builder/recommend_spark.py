"""The Policy Builder's per-session step on Spark's executors: `recommend --engine spark`.

The builder's fold (`flows.engines.builder_rows`) stays on the cluster. Each task classifies
its rows with the code the driver runs for DuckDB (`builder.recommend.classify`: scope,
server side, every device's decision, the existing rule that allows or blocks each session;
the policy compiled once here and broadcast) and returns its parts:

* its standing decisions (`Classified.reported`): per existing rule, the sessions it already
  allows or blocks and their first examples; Spark sums them per rule and keeps each one's
  first 3 (in the session table's order);
* the sessions the rest of the builder aggregates (`ClassifiedRows`), the evidence and the
  unanswered (each unanswered session is part of a blocked attempt the output lists),
  classified: server side, what stops each today, what the policy in force decides for it;
* where each of its addresses first appears, as a client (`src`) and as a server: the
  builder numbers addresses in their order of appearance in the whole fold.

The parts stay on the cluster (a local checkpoint, the view `builder_parts`); the driver
gets the standing decisions, and the group-by into rules runs on the executors over the
kept sessions (`builder.groupby_spark`). Sessions out of scope and those an existing rule
already decides only count in the standing decisions.

A session's class depends on that session alone, except for sessions with equal ports (NTP
123 <-> 123), whose server is the side more peers talk to on that port (`server_side`): the
fold is repartitioned so that all of those of one protocol and port meet in one task. Every
row keeps its position in the session table's order (`monotonically_increasing_id` over the
fold's ordered ranges), which orders the examples and the addresses as DuckDB's path does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from microseg.builder.groupby_spark import example_from_json, example_json, group_on_spark
from microseg.builder.proposal import (
    BuilderOptions,
    Recommendation,
    SessionExample,
    StandingDecision,
)
from microseg.builder.quality import TodayFacts, replay_packets, session_positions, today_facts
from microseg.builder.recommend import (
    ClassifiedRows,
    Compiled,
    Reported,
    answered,
    check_options,
    classify,
    compile_policy,
    example,
    recommend,
    target_policy,
)
from microseg.builder.scope import scope_mask
from microseg.builder.services import ServerSide
from microseg.builder.standing import EXAMPLES
from microseg.flows.engines import OUTPUT_SCHEMA, SPARK, SessionQuery, saturating_sum
from microseg.flows.session_columns import SessionColumns, session_columns
from microseg.flows.spark import SparkEngine, arrow_task, null_filled, ship_microseg, spark_ddl
from microseg.flows.sums import total
from microseg.model import MicrosegError, PolicySet

REPORTS = ("already_allowed", "blocked_by_rules")
_TIMES = ("first_seen", "last_seen")
_FOLD = pa.schema([f.with_type(pa.int64()) if f.name in _TIMES else f for f in OUTPUT_SCHEMA])
# What a task returns: one row per part (`part`), each using the columns it needs
_SIDE = [
    ("protocol_number", pa.int32()),
    ("client_is_src", pa.bool_()),
    ("client_port", pa.int32()),
    ("server_port", pa.int32()),
    ("side_evidence", pa.int8()),
    ("evidence", pa.bool_()),
    ("stopped", pa.string()),
    ("deciding", pa.list_(pa.int64())),
    ("current_rules", pa.list_(pa.string())),
    ("current_verdicts", pa.list_(pa.int64())),
]
_PARTS = [
    ("part", pa.string()),
    ("position", pa.int64()),
    ("report", pa.string()),
    ("rule", pa.string()),
    ("verdict", pa.string()),
    ("example", pa.string()),  # a SessionExample as JSON
    ("address", pa.string()),
    ("src_position", pa.int64()),
    ("dst_position", pa.int64()),
    ("error", pa.string()),
]
TASK_SCHEMA = pa.schema([*_PARTS, *_FOLD, *_SIDE])
TASK_DDL = spark_ddl(TASK_SCHEMA)
_ROW_COLUMNS = ["position", *_FOLD.names, *(name for name, _ in _SIDE)]
# the kept rows as the group-by's tasks read them (`groupby_spark`)
ROW_SCHEMA = pa.schema([("_position", pa.int64()), *(TASK_SCHEMA.field(n) for n in _ROW_COLUMNS)])


@dataclass(frozen=True)
class ExecutorStep:
    """What every task needs, broadcast once: the policy set compiled, the options."""

    policy_set: PolicySet
    options: BuilderOptions
    target: str | None
    compiled: Compiled

    def parts(self, fold: pa.Table, positions: np.ndarray, where: str) -> pa.Table:
        """The parts (TASK_SCHEMA) of a slice of the fold whose rows are at `positions`
        (increasing) in the whole."""
        columns = session_columns(fold, where)
        in_scope = scope_mask(columns, self.options.scope)
        scoped = columns.take(in_scope)
        at = positions[in_scope]
        classified = classify(self.policy_set, scoped, self.options, self.compiled)
        # the standing decisions with row numbers for examples: made into examples below,
        # with their positions, which order them across tasks
        reported = classified.reported(scoped, examples=lambda sessions, side, row: row)
        kept = np.flatnonzero(classified.evidence | ~answered(scoped))
        facts = today_facts(classified.today, self.policy_set, self.target)
        passed = _passed_on(
            fold.filter(pa.array(in_scope)).take(pa.array(kept)),
            at[kept],
            scoped,
            classified.side,
            kept,
            classified.evidence[kept],
            (classified.existing.stopped_by, classified.existing.stoppers),
            facts.take(session_positions(len(scoped), kept)),
        )
        return pa.concat_tables(
            [
                _shaped(
                    {"part": ["total"], "position": [int(positions[0])]}, total(scoped.sessions)
                ),
                _standing(reported, scoped, classified.side, at),
                _first_appearances(fold, positions),
                passed,
            ]
        )


def recommend_on_spark(
    engine: SparkEngine,
    segments: list[Path],
    query: SessionQuery,
    policy_set: PolicySet,
    options: BuilderOptions,
    where: str,
) -> Recommendation:
    """The recommendation for the store's `segments` under `query` (the builder's fold),
    classified on Spark's executors. Raises one of `engine.errors` when a segment cannot be
    read."""
    check_options(policy_set, options)
    if not segments:
        return recommend(policy_set, OUTPUT_SCHEMA.empty_table(), options)
    from pyspark.sql import functions

    session = engine.session
    ship_microseg(session)
    target = target_policy(policy_set, options)
    step = ExecutorStep(policy_set, options, target, compile_policy(policy_set))
    shared = session.sparkContext.broadcast(step)
    try:
        frame = engine.frame(segments, query)
        positioned = frame.withColumn("_position", functions.monotonically_increasing_id())
        equal_ports = functions.col("sport") == functions.col("dport")
        task_of = functions.when(
            equal_ports, functions.concat_ws("/", "protocol", "dport")
        ).otherwise(functions.col("_position").cast("string"))
        parts = (
            positioned.repartition(task_of)
            .sortWithinPartitions("_position")
            .mapInArrow(_task(shared, where), TASK_DDL)
            .localCheckpoint(eager=True)
        )
        parts.createOrReplaceTempView("builder_parts")
        try:
            return _recommendation(session, policy_set, options, where)
        finally:
            session.catalog.dropTempView("builder_parts")
    finally:
        shared.destroy()


def _task(shared: Any, where: str) -> Callable[[Iterator[pa.RecordBatch]], Iterator]:
    """The mapInArrow function: a task's rows (in the table's order) -> its parts."""

    def step(fold: pa.Table, positions: np.ndarray, task_where: str) -> pa.Table:
        return shared.value.parts(fold, positions, task_where)

    return arrow_task(step, where, OUTPUT_SCHEMA, TASK_SCHEMA)


def _shaped(columns: dict[str, list | pa.Array], sessions: int | None = None) -> pa.Table:
    """Parts with the given columns (the same length), every other column null."""
    if sessions is not None:
        columns = {**columns, "sessions": [sessions]}
    return null_filled(TASK_SCHEMA, columns)


def _standing(
    reported: Reported, scoped: SessionColumns, side: ServerSide, at: np.ndarray
) -> pa.Table:
    """Per standing decision, its sessions and its first examples with their positions."""
    names = ("part", "report", "rule", "verdict", "sessions", "position", "first_seen", "example")
    columns: dict[str, list] = {name: [] for name in names}
    for report in REPORTS:
        for decision in getattr(reported, report):
            rows = [int(row) for row in decision.examples]
            entries = [("standing", decision.sessions, None, None, None)] + [
                (
                    "standing example",
                    None,
                    int(at[row]),
                    int(scoped.first_seen[row]),
                    example_json(example(scoped, side, row)),
                )
                for row in rows
            ]
            for part, sessions, position, first_seen, shown in entries:
                columns["part"].append(part)
                columns["report"].append(report)
                columns["rule"].append(decision.rule)
                columns["verdict"].append(decision.verdict)
                columns["sessions"].append(sessions)
                columns["position"].append(position)
                columns["first_seen"].append(first_seen)
                columns["example"].append(shown)
    if not columns["part"]:
        return TASK_SCHEMA.empty_table()
    return _shaped(columns)


def _first_appearances(fold: pa.Table, positions: np.ndarray) -> pa.Table:
    """Per address of the slice, as the fold spells it, the position of its first row as
    `src` and as `dst`."""
    first: dict[str, list[int | None]] = {}
    for end, name in enumerate(("src", "dst")):
        encoded = pc.dictionary_encode(fold[name].combine_chunks())
        texts = encoded.dictionary.to_pylist()
        seen, row = np.unique(encoded.indices.to_numpy(zero_copy_only=False), return_index=True)
        for code, at in zip(seen.tolist(), positions[row].tolist(), strict=True):
            first.setdefault(texts[code], [None, None])[end] = at
    return _shaped(
        {
            "part": ["address"] * len(first),
            "address": list(first),
            "src_position": [src for src, _ in first.values()],
            "dst_position": [dst for _, dst in first.values()],
        }
    )


def _passed_on(
    rows: pa.Table,
    at: np.ndarray,
    scoped: SessionColumns,
    side: ServerSide,
    kept: np.ndarray,
    evidence: np.ndarray,
    stopped: tuple[np.ndarray, list[str]],
    facts: TodayFacts,
) -> pa.Table:
    """The sessions passed on to the driver (`kept` of `scoped`), as the fold's rows with
    what the per-session step found (`ClassifiedRows`)."""
    if not len(kept):
        return TASK_SCHEMA.empty_table()
    codes, texts = stopped
    stopper = np.array([*texts, None], dtype=object)[codes[kept]]  # -1: the None
    names = np.array(facts.current_names, dtype=object)
    columns: dict[str, list | pa.Array] = {
        "part": ["row"] * len(kept),
        "position": pa.array(at),
        **{
            name: rows[name].cast(pa.int64()) if name in _TIMES else rows[name]
            for name in OUTPUT_SCHEMA.names
        },
        "protocol_number": pa.array(scoped.protocol[kept].astype(np.int32)),
        "client_is_src": pa.array(side.client[kept] == scoped.src[kept]),
        "client_port": pa.array(side.client_port[kept]),
        "server_port": pa.array(side.server_port[kept]),
        "side_evidence": pa.array(side.evidence[kept]),
        "evidence": pa.array(evidence),
        "stopped": pa.array(stopper, pa.string()),
        "deciding": _lists(facts.deciding_row, facts.deciding_rule, len(kept)),
        "current_rules": _lists(facts.current_row, names[facts.current_rule], len(kept)),
        "current_verdicts": _lists(facts.current_row, facts.current_verdict, len(kept)),
    }
    return _shaped(
        {k: v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v for k, v in columns.items()}
    )


def _lists(rows: np.ndarray, values: np.ndarray, count: int) -> pa.ListArray:
    """Per row 0..count-1, the values of the pairs (rows, values) that name it."""
    order = np.argsort(rows, kind="stable")
    offsets = np.zeros(count + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=count), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[order]))


def _recommendation(
    session: Any, policy_set: PolicySet, options: BuilderOptions, where: str
) -> Recommendation:
    """The recommendation from the parts in the view `builder_parts`."""
    errors = _to_driver(
        session.sql("SELECT position, error FROM builder_parts WHERE part = 'error'"), "errors"
    )
    if errors.num_rows:
        first = int(np.argmin(errors["position"].to_numpy()))
        raise MicrosegError(errors["error"][first].as_py())
    reported = _reported(session)
    return group_on_spark(
        session,
        lambda frame, what: _to_driver(frame, what),
        policy_set,
        options,
        target_policy(policy_set, options),
        reported,
        _task_rows,
        f"SELECT position AS _position, {', '.join(f'`{n}`' for n in _ROW_COLUMNS)} "
        "FROM builder_parts WHERE part = 'row'",
        ROW_SCHEMA,
        where,
    )


def _task_rows(rows: pa.Table, where: str) -> ClassifiedRows:
    """A group-by task's rows (ROW_SCHEMA) as the builder reads them."""
    return _classified_rows(rows, where)


def _to_driver(frame: Any, what: str) -> pa.Table:
    """A query's result in this process: every row that reaches the driver comes here
    (`what`: which query, for those who count them)."""
    return frame.toArrow()


def _reported(session: Any) -> Reported:
    """The standing decisions and the sessions in scope, summed over the tasks."""
    sums = saturating_sum("sessions", SPARK, "sessions")
    key = "report, rule, verdict"
    # every sum is grouped: the sum of no rows is NULL, which Spark's LEAST saturates
    found = _to_driver(
        session.sql(
            f"""SELECT 'standing' AS part, {key}, {sums},
                   NULL AS first_seen, NULL AS position, NULL AS example
            FROM builder_parts WHERE part = 'standing' GROUP BY {key}
            UNION ALL
            SELECT 'total', NULL, NULL, NULL, {sums}, NULL, NULL, NULL
            FROM builder_parts WHERE part = 'total' GROUP BY part
            UNION ALL
            SELECT part, {key}, NULL, first_seen, position, example FROM (
                SELECT *, row_number() OVER (
                    PARTITION BY {key} ORDER BY first_seen, position) AS _rank
                FROM builder_parts WHERE part = 'standing example') AS ranked
            WHERE _rank <= {EXAMPLES}"""
        ),
        "standing",
    ).to_pylist()
    examples: dict[tuple, list[SessionExample]] = {}
    for row in sorted(
        (row for row in found if row["part"] == "standing example"),
        key=lambda row: (row["first_seen"], row["position"]),
    ):
        key_of = (row["report"], row["rule"], row["verdict"])
        examples.setdefault(key_of, []).append(example_from_json(row["example"]))
    decisions: dict[str, list[StandingDecision]] = {report: [] for report in REPORTS}
    scoped_sessions = 0
    for row in found:
        if row["part"] == "total":
            scoped_sessions = int(row["sessions"] or 0)
        elif row["part"] == "standing":
            key_of = (row["report"], row["rule"], row["verdict"])
            decisions[row["report"]].append(
                StandingDecision(
                    row["rule"], row["verdict"], int(row["sessions"]), tuple(examples[key_of])
                )
            )
    allowed, blocked = (
        tuple(sorted(decisions[report], key=lambda d: (-d.sessions, d.rule.encode())))
        for report in REPORTS
    )
    return Reported(allowed, blocked, scoped_sessions)


def _classified_rows(rows: pa.Table, where: str) -> ClassifiedRows:
    """Sessions the per-session step passed on (`_passed_on`), as the rest of the builder
    reads them (their addresses numbered as they appear in `rows`: the group-by's tasks
    name them by address, never by number)."""
    fold = pa.table(
        [
            rows[f.name].cast(pa.timestamp("ms", tz="UTC")) if f.name in _TIMES else rows[f.name]
            for f in OUTPUT_SCHEMA
        ],
        names=OUTPUT_SCHEMA.names,
    ).cast(OUTPUT_SCHEMA)
    columns = session_columns(fold, where)
    client_is_src = _numbers(rows, "client_is_src").astype(bool)
    side = ServerSide(
        client=np.where(client_is_src, columns.src, columns.dst),
        server=np.where(client_is_src, columns.dst, columns.src),
        client_port=_numbers(rows, "client_port").astype(np.int32),
        server_port=_numbers(rows, "server_port").astype(np.int32),
        evidence=_numbers(rows, "side_evidence").astype(np.int8),
    )
    stoppers = pc.dictionary_encode(rows["stopped"].combine_chunks())
    stopped_by = pc.fill_null(stoppers.indices, -1).to_numpy(zero_copy_only=False)
    current_rules = pc.dictionary_encode(pc.list_flatten(rows["current_rules"].combine_chunks()))
    facts = TodayFacts(
        deciding_row=_parents(rows, "deciding"),
        deciding_rule=_flattened(rows, "deciding"),
        current_row=_parents(rows, "current_rules"),
        current_rule=current_rules.indices.to_numpy(zero_copy_only=False).astype(np.int64),
        current_verdict=_flattened(rows, "current_verdicts"),
        current_names=tuple(current_rules.dictionary.to_pylist()),
    )
    return ClassifiedRows(
        columns,
        side,
        replay_packets(columns, side),
        _numbers(rows, "evidence").astype(bool),
        (stopped_by.astype(np.int64), stoppers.dictionary.to_pylist()),
        facts,
    )


def _numbers(rows: pa.Table, name: str) -> np.ndarray:
    return rows[name].combine_chunks().to_numpy(zero_copy_only=False)


def _parents(rows: pa.Table, name: str) -> np.ndarray:
    lists = rows[name].combine_chunks()
    return pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)


def _flattened(rows: pa.Table, name: str) -> np.ndarray:
    lists = rows[name].combine_chunks()
    return pc.list_flatten(lists).to_numpy(zero_copy_only=False).astype(np.int64)
