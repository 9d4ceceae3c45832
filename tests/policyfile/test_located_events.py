"""The event builder (the fast way to read a plain policy file) builds exactly what the node
builder builds, positions included, and gives up on everything else (issue 14)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from test_loader_fuzz import near_valid_documents

from microseg.policyfile.located import (
    ALIAS_EXPANSION_ALLOWANCE,
    LocatedList,
    LocatedMap,
    YamlProblem,
    _EventBuilder,
    load_composed,
    load_located,
)
from support import EXAMPLES

GIVEN_UP = object()


def _by_events(text: str) -> Any:
    try:
        return _EventBuilder(len(text) + ALIAS_EXPANSION_ALLOWANCE).load(text)
    except Exception:
        return GIVEN_UP


def _by_nodes(text: str) -> Any:
    try:
        return load_composed(text)
    except YamlProblem as problem:
        return problem


def _same(events: Any, nodes: Any) -> None:
    assert type(events) is type(nodes), (events, nodes)
    if isinstance(events, LocatedMap):
        assert (events.position, events.key_positions, events.value_positions) == (
            nodes.position,
            nodes.key_positions,
            nodes.value_positions,
        )
        assert list(events) == list(nodes)
        for key in events:
            _same(events[key], nodes[key])
    elif isinstance(events, LocatedList):
        assert (events.position, events.item_positions) == (nodes.position, nodes.item_positions)
        assert len(events) == len(nodes)
        for mine, theirs in zip(events, nodes, strict=True):
            _same(mine, theirs)
    elif isinstance(events, float) and events != events:
        assert nodes != nodes  # .nan
    else:
        assert events == nodes


def _check(text: str) -> Any:
    events, nodes = _by_events(text), _by_nodes(text)
    if events is GIVEN_UP:
        return GIVEN_UP
    assert not isinstance(nodes, YamlProblem), f"the node builder refuses: {nodes.message}"
    _same(events, nodes)
    return events


PLAIN = [
    "",
    "# only a comment\n",
    "a: 1\n",
    "groups:\n  - name: web\n    prefixes: [10.0.0.0/24, '10.0.1.0/24', \"2001:db8::/64\"]\n",
    "x: [yes, no, on, off, true, False, ~, null, '', 0x1F, 0o17, 017, 1_000, 1:30, -1, +2]\n",
    "x: [1.5, .inf, -.Inf, .nan, 1e3, 6.8523015e+5, 2001-12-14, 2001-12-14t21:59:43.10-05:00]\n",
    "x: ['yes', \"1\", '~', \"\", 'a: b']\n",
    "x: |\n  literal\n  text\ny: >\n  folded\n  text\n",
    "{flow: {a: [1, {b: c}]}, other: x}\n",
    "x:\n- a\n-\n- - nested\n  - list\n",
    "=: value\n",
    "key with spaces: ünïcödé ✓\n",
    "? complex\n: value\n",
    "x: !!str 1\n",
    "x: &a 1\ny: *a\n",
    "base: &b {p: 1}\nx: {<<: *b, q: 2}\n",
    "x: {<<: {p: 1}}\n",
    "a: 1\na: 2\n",
    "--- 1\n--- 2\n",
    "[1, 2]\n",
    "'just a string'\n",
    "x: 1\n\tbad: tab\n",
    "x: [1, 2\n",
    "x: " + "9" * 4400 + "\n",
    "x: " + "[" * 70 + "]" * 70 + "\n",
    "? [a, b]\n: c\n",
    "x: ! 12\n",
]


@pytest.mark.parametrize("text", PLAIN)
def test_both_builders_agree(text):
    _check(text)


@pytest.mark.parametrize(
    "text",
    ["x: &a 1\ny: *a\n", "base: &b {p: 1}\nx: {<<: *b}\n", "x: {<<: {p: 1}}\n", "a: 1\na: 2\n"],
)
def test_anchors_merges_and_duplicates_are_left_to_the_node_builder(text):
    assert _by_events(text) is GIVEN_UP
    if "a: 1\na: 2" not in text:
        assert load_located(text) == load_composed(text)


def test_a_duplicate_key_is_still_refused_with_its_line():
    with pytest.raises(YamlProblem) as refused:
        load_located("groups: []\nrules:\n  - a: 1\n    a: 2\n")
    assert refused.value.position == (4, 5)
    assert "duplicate key 'a'" in refused.value.message


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_the_examples_are_read_by_events(path):
    assert _check(path.read_text()) is not GIVEN_UP


def test_a_generated_large_policy_is_read_by_events():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "perf"))
    from perf_policies import large_policy_document

    text = yaml.safe_dump(large_policy_document(300), sort_keys=False)
    assert _check(text) is not GIVEN_UP


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(near_valid_documents())
def test_both_builders_agree_on_mutated_policies(text):
    _check(text)
