"""What the Spark benches over the scale bench's store share (bench/builder_split.py,
bench/whatif_spark.py): their arguments, the store's rounds generated, one Spark session for
every size, and a timer."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from microseg.flows.spark import SparkEngine, spark_settings, start_session
from scale import DataDir, parse_size

SizeBench = Callable[[DataDir, dict, int, SparkEngine], dict]


def timed(run: Callable[[], object]) -> tuple[float, object]:
    """Seconds `run` took (to 0.1 s) and what it returned."""
    clock = time.perf_counter()
    result = run()
    return round(time.perf_counter() - clock, 1), result


def arguments(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, required=True, help="the scale bench's data")
    parser.add_argument(
        "--sizes",
        type=lambda text: [parse_size(part) for part in text.split(",")],
        default=[1_000_000],
        help="store sizes in sessions (rounds of bench/scale.py's store)",
    )
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--spark-conf", action="append", default=["spark.driver.memory=6g"])
    parser.add_argument("--batch", default=2_000_000, type=int, help="sessions per batch")
    parser.add_argument("--seed", default=7, type=int)
    return parser.parse_args(argv)


def bench(name: str, options: argparse.Namespace, bench_size: SizeBench) -> dict:
    """`bench_size` at every size asked, in one Spark session; the bench's JSON figures."""
    data = DataDir(options.data, options.seed)
    with data.locked():
        manifest = data.generate(sorted(options.sizes), options.batch, lambda text: None)
    settings = spark_settings(options.spark_master, options.spark_conf)
    session, started = start_session(settings)
    try:
        engine = SparkEngine(settings, session)
        sizes = [bench_size(data, manifest, size, engine) for size in sorted(options.sizes)]
    finally:
        if started:
            session.stop()
    return {"bench": name, "spark_master": options.spark_master, "sizes": sizes}
