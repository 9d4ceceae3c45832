"""Compiling is deterministic byte for byte: the same large policy gives the same texts,
in one process and across processes with different string-hash seeds (set and dict
order of names must never leak into the output)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from perf_policies import compiled_texts, digest

from support import cli_env

N_RULES = 1500


def test_large_policy_compiles_to_identical_texts_twice():
    first = compiled_texts(N_RULES)
    second = compiled_texts(N_RULES)
    assert first == second
    eos = first["leaf1.eos"]
    # Every path of the generated policy was taken.
    assert eos.count("\n      match rule") > N_RULES
    for expected in ("-reverse ipv4", "-ipv6 ipv6", "except ", "redirect next-hop", "mirror"):
        assert expected in eos
    assert "type 8 13 code all" in eos and "type 0 14 code all" in eos
    assert "destination port domain ntp" in eos
    assert "table inet" in first["leaf1.nft"]


def test_texts_do_not_depend_on_the_string_hash_seed():
    n_rules = N_RULES // 3
    script = f"from perf_policies import compiled_texts, digest\nprint(digest(compiled_texts({n_rules})))"
    digests = set()
    for seed in ("1", "2"):
        env = cli_env(PYTHONHASHSEED=seed)
        env["PYTHONPATH"] = str(Path(__file__).parent) + ":" + env["PYTHONPATH"]
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        digests.add(done.stdout.strip())
    assert digests == {digest(compiled_texts(n_rules))}
