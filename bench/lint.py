"""Lint benchmark: `microseg lint` on the generated 1,000-rule policy of bench/evaluate.py.

Timed: `lint(policy_set)` end to end (compiling, the exact analysis of every match, the
verified edit plan, every check), and each check alone (`select=[check]`: the shared
analysis counts in each). There is no outside baseline that decides the same questions
(brute force over the policy's packet classes would be hundreds of millions of packets), so
the figure is compared with its previous value in the README's Benchmarks table. CPU
seconds (`time.process_time`), best of `--repeat`: the machine is shared.

Run: .venv/bin/python bench/lint.py [--rules 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate import generated_policy
from microseg.evaluate.lint import CHECKS, lint


def best(repeat: int, run) -> tuple[float, dict]:
    times, report = [], {}
    for _ in range(repeat):
        started = time.process_time()
        report = run()
        times.append(time.process_time() - started)
    return min(times), report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    policy_set = generated_policy(args.rules, seed=1)
    seconds, report = best(args.repeat, lambda: lint(policy_set))
    per_check = {
        name: round(best(args.repeat, lambda name=name: lint(policy_set, select=[name]))[0], 3)
        for name in CHECKS
    }
    print(
        json.dumps(
            {
                "bench": "lint",
                "rules": args.rules,
                "lint_cpu_s": round(seconds, 3),
                "per_check_cpu_s": per_check,
                "findings": dict(Counter(f["kind"] for f in report["findings"])),
            }
        )
    )


if __name__ == "__main__":
    main()
