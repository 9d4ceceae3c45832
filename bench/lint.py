"""Lint benchmark: `lint(policy_set)` at 1,000, 3,000 and 10,000 rules, against the targets of
issue 14 (10,000 rules in <= 10 s and <= 2 GB, cost growing no faster than ~N^1.3).

The policies come from `tests/perf/perf_policies.py` (dual-stack groups with except-prefixes,
services by number, name, range, ICMP type and `any`, both directions, drop / redirect /
monitor), or with `--generator evaluate` from bench/evaluate.py (random groups in 10/8, 20 %
`any` sources, bidirectional rules: many more terms meet each other there). Timed: `lint()`
end to end (compiling, the exact analysis of every match, the verified edit plan, every
check), in CPU seconds (`time.process_time`, best of `--repeat`: the machine is shared). Each
size runs in its own process, so `peak_rss_mb` is that size's own peak resident memory. The
exponent is the least-squares slope of log(time) over log(rules). The previous engine (a
class x term bit table over the whole policy) is gone; its figures are in the README.

Run: .venv/bin/python bench/lint.py [--rules 1000 3000 10000] [--repeat 1] [--generator perf]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS, TARGET_RSS_MB, TARGET_EXPONENT = 10.0, 2048, 1.3


def policy(generator: str, rules: int):
    sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]
    from microseg.model import PolicySet

    if generator == "evaluate":
        from evaluate import generated_policy

        return generated_policy(rules, seed=1)
    from tests.perf.perf_policies import large_policy_document

    return PolicySet.model_validate(large_policy_document(rules))


def one_size(generator: str, rules: int, repeat: int) -> dict:
    """Lint one generated policy (in this process) and report its figures."""
    policy_set = policy(generator, rules)
    from microseg.evaluate.lint import lint

    times, report = [], {}
    for _ in range(repeat):
        started = time.process_time()
        report = lint(policy_set)
        times.append(time.process_time() - started)
    return {
        "rules": rules,
        "lint_cpu_s": round(min(times), 3),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "findings": dict(sorted(Counter(f["kind"] for f in report["findings"]).items())),
    }


def exponent(rows: list[dict]) -> float:
    xs = [math.log(r["rules"]) for r in rows]
    ys = [math.log(r["lint_cpu_s"]) for r in rows]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    return round(slope, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, nargs="+", default=[1000, 3000, 10000])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--generator", choices=("perf", "evaluate"), default="perf")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # the child process of one size
        print(json.dumps(one_size(args.generator, args.rules[0], args.repeat)))
        return
    rows = []
    for rules in args.rules:
        command = [sys.executable, __file__, "--one", "--rules", str(rules)]
        command += ["--repeat", str(args.repeat), "--generator", args.generator]
        rows.append(json.loads(subprocess.run(command, check=True, capture_output=True).stdout))
    largest = rows[-1]
    print(
        json.dumps(
            {
                "bench": "lint",
                "generator": args.generator,
                "sizes": rows,
                "exponent": exponent(rows) if len(rows) > 1 else None,
                "largest_rules": largest["rules"],
                "largest_cpu_s": largest["lint_cpu_s"],
                "largest_peak_rss_mb": largest["peak_rss_mb"],
                # <= 1 meets the target: time and memory of the largest size, and the exponent.
                "ratio_to_target_time": round(largest["lint_cpu_s"] / TARGET_SECONDS, 2),
                "ratio_to_target_rss": round(largest["peak_rss_mb"] / TARGET_RSS_MB, 2),
                "ratio_to_target_exponent": (
                    round(exponent(rows) / TARGET_EXPONENT, 2) if len(rows) > 1 else None
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
