"""Start-up benchmark: `microseg --version` and `microseg --help` against `import typer, rich`.

Each is a fresh interpreter, run as a user runs it (`python -m microseg ...` on this checkout,
which is what the `microseg` script does). The baseline is the import any Typer + rich
application pays, `python -c "import typer, rich"`, timed in the same run, interleaved with
ours so a busy machine slows both alike. Bytecode is compiled first into a private cache
(PYTHONPYCACHEPREFIX), as `pip install` compiles an installed package; a checkout run with
PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module on every start.

Prints one JSON line: the median of `--repeat` runs of each, and `version_ratio` /
`help_ratio` = microseg / baseline (issue 14's target: <= 2).
Run: `python bench/startup.py [--repeat 15]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"

COMMANDS = {
    "baseline": [sys.executable, "-c", "import typer, rich"],
    "version": [sys.executable, "-m", "microseg", "--version"],
    "help": [sys.executable, "-m", "microseg", "--help"],
}


def _run(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="microseg-startup-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"PYTHONPATH": str(SOURCE), "PYTHONPYCACHEPREFIX": cache, "COLUMNS": "80"}
        for command in COMMANDS.values():  # warm-up: compile bytecode, fill the page cache
            _run(command, env)
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(args.repeat):
            for name, command in COMMANDS.items():
                times[name].append(_run(command, env))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(
        json.dumps(
            {
                "bench": "startup",
                "repeat": args.repeat,
                "baseline_import_typer_rich_s": round(median["baseline"], 4),
                "version_s": round(median["version"], 4),
                "help_s": round(median["help"], 4),
                "version_ratio": round(median["version"] / median["baseline"], 2),
                "help_ratio": round(median["help"] / median["baseline"], 2),
                "target_ratio": 2.0,
            }
        )
    )


if __name__ == "__main__":
    main()
