"""bench/cli_compile.py at a small size, so the end-to-end bench cannot rot: both CLIs run as
a user runs them and compile every rule (the bench checks both outputs). Never time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench" / "cli_compile.py"


def test_the_bench_compiles_a_small_policy_with_both_clis():
    done = subprocess.run(
        [sys.executable, str(BENCH), "--sizes", "20"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.splitlines()[-1])
    assert figures["bench"] == "cli_compile" and figures["n_rules"] == 20
    assert figures["microseg_cpu_s"] > 0 and figures["aclgen_cpu_s"] > 0
    ratio = figures["aclgen_s"] / figures["microseg_compile_s"]
    assert figures["ratio"] == pytest.approx(ratio, abs=0.1)
