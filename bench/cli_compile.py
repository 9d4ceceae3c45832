"""End-to-end CLI benchmark: `microseg compile FILE --device D` against Aerleon's `aclgen`.

Both compile the same N-rule policy (bench/compile.py's generator: each rule its own source
and destination group of five prefixes and one tcp/udp service) to EOS traffic-policy text,
each from its own files, each as a user runs it: a fresh process, files read, validated,
compiled, rendered and written.

* microseg: one policy YAML file; `python -m microseg compile big.yaml --device leaf1 -o F`.
* Aerleon: its layout, `policies/pol/bench.yaml` (an `arista_tp` filter of N terms) and
  `def/networks.yaml`, `def/services.yaml`; `aclgen --base_directory policies
  --definitions_directory def --output_directory out` (its defaults otherwise, as the
  Aerleon getting-started guide runs it).

Both outputs are checked (one `match rule` per rule). Bytecode is compiled first into a
private cache for both (as an install would): each command runs once, untimed, on a 10-rule
policy. Prints one JSON line per N with the best of `--repeat` runs of each, the CPU time
(user + system) of those runs, the load average, and `ratio` = aclgen / microseg (issue 14's
target: >= 10 at 5,000). Run: `python bench/cli_compile.py [--sizes 5000] [--repeat 1]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from compile import aerleon_inputs, microseg_policy  # noqa: E402

SOURCE = BENCH.parent / "src"


def write_inputs(directory: Path, n_rules: int) -> None:
    dump = yaml.CSafeDumper if hasattr(yaml, "CSafeDumper") else yaml.SafeDumper
    (directory / "big.yaml").write_text(
        yaml.dump(microseg_policy(n_rules), Dumper=dump, sort_keys=False)
    )
    policy, definitions = aerleon_inputs(n_rules)
    policy.pop("filename")
    (directory / "policies" / "pol").mkdir(parents=True)
    (directory / "def").mkdir()
    (directory / "out").mkdir()
    (directory / "policies" / "pol" / "bench.yaml").write_text(
        yaml.dump(policy, Dumper=dump, sort_keys=False)
    )
    for kind in ("networks", "services"):
        (directory / "def" / f"{kind}.yaml").write_text(
            yaml.dump({kind: definitions[kind]}, Dumper=dump, sort_keys=False)
        )


def _timed(command: list[str], directory: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system, the process and its children) of a run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed: {done.stderr[-2000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return elapsed, cpu


def _commands() -> tuple[list[str], list[str]]:
    aclgen = Path(sys.executable).with_name("aclgen")
    ours = [sys.executable, "-m", "microseg", "compile", "big.yaml"]
    ours += ["--device", "leaf1", "-o", "out/leaf1.eos"]
    theirs = [str(aclgen), "--base_directory", "policies"]
    theirs += ["--definitions_directory", "def", "--output_directory", "out"]
    return ours, theirs


def _compile_bytecode(env: dict[str, str]) -> None:
    """Both tools run once on a small policy: every module they import is compiled into the
    bytecode cache, as installing them would have done."""
    with tempfile.TemporaryDirectory(prefix="microseg-cli-compile-") as work:
        write_inputs(Path(work), 10)
        for command in _commands():
            _timed(command, Path(work), env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="microseg-cli-compile-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"PYTHONPATH": str(SOURCE), "PYTHONPYCACHEPREFIX": cache}
        _compile_bytecode(env)
        ours_command, theirs_command = _commands()
        for n_rules in (int(n) for n in args.sizes.split(",")):
            with tempfile.TemporaryDirectory(prefix="microseg-cli-compile-") as work:
                directory = Path(work)
                write_inputs(directory, n_rules)
                ours, theirs = [], []
                for _ in range(args.repeat):
                    ours.append(_timed(ours_command, directory, env))
                    (directory / "out" / "bench.atp").unlink(missing_ok=True)
                    theirs.append(_timed(theirs_command, directory, env))
                ours_text = (directory / "out" / "leaf1.eos").read_text()
                theirs_text = (directory / "out" / "bench.atp").read_text()
                assert ours_text.count("\n      match rule") == n_rules, "microseg output"
                assert theirs_text.count("match rule") >= n_rules, "aclgen output"
                print(
                    json.dumps(
                        {
                            "bench": "cli_compile",
                            "n_rules": n_rules,
                            "policy_file_bytes": (directory / "big.yaml").stat().st_size,
                            "microseg_compile_s": round(min(ours)[0], 3),
                            "aclgen_s": round(min(theirs)[0], 3),
                            "ratio": round(min(theirs)[0] / min(ours)[0], 1),
                            "target_ratio": 10,
                            "microseg_cpu_s": round(min(ours)[1], 3),
                            "aclgen_cpu_s": round(min(theirs)[1], 3),
                            "load_average": round(os.getloadavg()[0], 1),
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
