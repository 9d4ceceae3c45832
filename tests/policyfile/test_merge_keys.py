"""YAML merge keys (`<<: *defaults`) are bounded like aliases: they may reuse a mapping's
fields, never multiply them, and a mapping that merges itself is a located error."""

from __future__ import annotations

import tracemalloc

import pytest

from microseg.model import PolicyError
from microseg.policyfile import load_policy
from microseg.policyfile.located import MAX_DEPTH


def _problems(tmp_path, text: str) -> list[str]:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    return [str(problem) for problem in raised.value.problems]


@pytest.mark.parametrize(
    "text, line",
    [
        ("services:\n  - &a {<<: *a}\n", 2),
        ("services:\n  - &a\n    name: x\n    <<: [*a]\n", 4),
    ],
)
def test_a_mapping_that_merges_itself_is_a_located_error_not_a_recursion_error(
    tmp_path, text, line
):
    problems = _problems(tmp_path, text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{tmp_path}/policy.yaml:{line}:")
    assert problems[0].endswith("invalid YAML: `<<` merges a mapping into itself")


def test_a_mapping_that_merges_its_own_container_is_a_located_error(tmp_path):
    # Each merge of `a` brings `b` back, which merges `a` again: a cycle through values.
    problems = _problems(tmp_path, "x: &a {b: {<<: *a}}\n")
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path}/policy.yaml:1:")
    assert problems[0].endswith(f"nested too deeply (more than {MAX_DEPTH} levels)")


def test_merges_that_multiply_fields_are_refused_without_building_them(tmp_path):
    # 400 merges of one 1,000-field mapping name 400,000 fields in 28 KB of YAML. The loader
    # must stop counting them before it holds them all (the unbounded version collected every
    # merged pair first: n^2 memory, 5 GB for a 64 KB file).
    fields = ", ".join(f"f{i}: {i}" for i in range(1000))
    text = f"x: &a {{{fields}}}\ny: {{<<: [{', '.join(['*a'] * 400)}]}}\n"
    tracemalloc.start()
    try:
        problems = _problems(tmp_path, text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert problems == [
        f"{tmp_path}/policy.yaml: the YAML aliases expand to more than {len(text) + 100_000} "
        "values (anchors and aliases may reuse values, not multiply them)"
    ]
    assert peak < 16 * 2**20, f"peak {peak} bytes while refusing the merges"


def test_merges_nested_deeper_than_the_depth_limit_are_refused(tmp_path):
    levels = ["m0: &m0 {a: 1}"]
    levels += [f"m{i}: &m{i} {{<<: *m{i - 1}}}" for i in range(1, MAX_DEPTH + 2)]
    problems = _problems(tmp_path, "\n".join(levels) + "\n")
    assert len(problems) == 1
    assert problems[0].endswith(f"merges nested too deeply (more than {MAX_DEPTH} levels)")


def test_nested_merges_within_the_limits_still_merge(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(
        "services:\n"
        "  - &tcp {name: base, protocol: tcp}\n"
        "  - &web {<<: *tcp, name: HTTP, destination_ports: [80]}\n"
        "  - {<<: [*web, *tcp], name: HTTP-alt, destination_ports: [8080]}\n"
    )
    policy_set = load_policy(path)
    assert policy_set.service("HTTP-alt").protocol == "tcp"
    assert policy_set.service("HTTP-alt").destination_ports == (8080,)
