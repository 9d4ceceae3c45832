"""`whatif --engine spark` as one pass on Spark's executors against bringing its fold back,
measured on the scale bench's store (`bench/scale.py`'s generator and layout).

Two ways to the same report, in the same run, on one Spark session:

* `fold_to_driver`: what `whatif --engine spark` did before: the engine's fold
  (`flows.engines.replay_rows`) comes back to the driver (`toArrow`) and is replayed there
  with numpy (`Replay.report`); `to_driver_s` and `replay_s` are its two halves;
* `one_pass`: what it does now (`evaluate.whatif_spark`): the executors replay their rows
  with the same code (mapInArrow), Spark's group-by sums the changes and keeps their first
  examples, and only the report's rows come back.

Each is run twice, alternately, the fold first (`first_s` includes Spark's first start of
its Python workers for `one_pass`), and both reports must be byte for byte DuckDB's
(`whatif --engine duckdb`, timed too). `rows_to_driver` counts what each brings back: the
fold's rows, or the report's (its totals, groups, examples and rule hits).

The candidate: the store's policy without its drop rule `drop-users-to-db` (users' sessions
to the databases are newly allowed) and with a new rule dropping the web tiers' traffic to
the app tiers on their ports 8000-8999 (newly blocked). Prints one JSON line.

    flock /work/wt/bench.lock .venv/bin/python bench/whatif_spark.py --data /srv/scale-data \\
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
from microseg.evaluate.whatif import Replay, replay_cuts, whatif_sessions  # noqa: E402
from microseg.flows.engines import DuckDBEngine  # noqa: E402
from microseg.flows.flowstore import read_sessions  # noqa: E402
from microseg.flows.spark import SparkEngine  # noqa: E402
from microseg.model import PolicySet, Rule, Service  # noqa: E402
from microseg.policyfile import dump_policy, load_policy  # noqa: E402
from scale import DataDir  # noqa: E402
from spark_sizes import timed  # noqa: E402


def candidate_policy(base: PolicySet) -> PolicySet:
    """The base without `drop-users-to-db`, with web -> app on 8000-8999 dropped first."""
    service = Service(name="APP-8K", protocol="tcp", destination_ports=("8000-8999",))
    rule = Rule(
        name="drop-web-to-app-8k",
        sources=["web-tiers"],
        destinations=["app-tiers"],
        services=[service.name],
        action="drop",
    )
    [policy] = base.policies
    rules = (rule.name, *(name for name in policy.rules if name != "drop-users-to-db"))
    return base.model_copy(
        update={
            "services": (*base.services, service),
            "rules": (*(r for r in base.rules if r.name != "drop-users-to-db"), rule),
            "policies": (policy.model_copy(update={"rules": rules}),),
        }
    )


def report_rows(report: dict) -> int:
    """The rows `one_pass` collects: the totals, each group and its examples, each hit."""
    changes = (report["newly_blocked"], report["newly_allowed"])
    groups = [group for change in changes for group in change["groups"]]
    examples = sum(len(group["examples"]) for group in groups)
    return 1 + len(groups) + examples + len(report["candidate_rule_hits"])


def bench_size(data: DataDir, manifest: dict, size: int, engine: SparkEngine) -> dict:
    view = data.view(manifest, size)
    base = load_policy(data.policy)
    candidate_path = data.root / "whatif-candidate.yaml"
    candidate_path.write_text(dump_policy(candidate_policy(base)))
    candidate = load_policy(candidate_path)
    replay, cuts = Replay.of(base, candidate), replay_cuts(base, candidate)
    figures: dict = {"sessions": size, "load_average_1m_before": round(os.getloadavg()[0], 2)}
    seconds, expected = timed(lambda: whatif_sessions(base, candidate, str(view), DuckDBEngine()))
    figures["duckdb_s"] = seconds
    expected_json = json.dumps(expected)
    runs: dict = {"fold_to_driver": [], "one_pass": []}
    for _ in range(2):
        to_driver_s, fold = timed(lambda: read_sessions(view, engine=engine, replay_cuts=cuts))
        replay_s, report = timed(lambda fold=fold: replay.report(fold, str(view)))
        runs["fold_to_driver"].append(
            {
                "s": round(to_driver_s + replay_s, 1),
                "to_driver_s": to_driver_s,
                "replay_s": replay_s,
                "rows_to_driver": fold.num_rows,
                "same_as_duckdb": json.dumps(report) == expected_json,
            }
        )
        del fold
        seconds, report = timed(lambda: whatif_sessions(base, candidate, str(view), engine))
        runs["one_pass"].append(
            {
                "s": seconds,
                "rows_to_driver": report_rows(report),
                "same_as_duckdb": json.dumps(report) == expected_json,
            }
        )
    for name, done in runs.items():
        figures[name] = {
            "first_s": done[0]["s"],
            "second_s": done[1]["s"],
            **{key: value for key, value in done[1].items() if key != "s"},
            "same_as_duckdb": all(run["same_as_duckdb"] for run in done),
        }
    figures["fold_to_driver_over_one_pass"] = round(
        figures["fold_to_driver"]["second_s"] / figures["one_pass"]["second_s"], 2
    )
    figures["changes"] = {
        change: {
            "sessions": expected[change]["sessions"],
            "groups": len(expected[change]["groups"]),
        }
        for change in ("newly_blocked", "newly_allowed")
    }
    figures["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return figures


def bench(options: argparse.Namespace) -> dict:
    return spark_sizes.bench("whatif_spark", options, bench_size)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    return spark_sizes.arguments(__doc__.splitlines()[0], argv)


def main(argv: list[str] | None = None) -> None:
    sys.stdout.write(json.dumps(bench(arguments(argv))) + "\n")


if __name__ == "__main__":
    main()
