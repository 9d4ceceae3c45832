"""The fast builders (libyaml's events for a plain policy file, lines for a block-style one)
build exactly what the node builder builds, positions included, and give up on everything
else (issue 14)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_loader_fuzz import near_valid_documents

from microseg.policyfile.located import (
    _RESOLVER,
    _STR_TAG,
    ALIAS_EXPANSION_ALLOWANCE,
    LocatedList,
    LocatedMap,
    YamlProblem,
    _EventBuilder,
    _LineBuilder,
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


def _by_lines(text: str) -> Any:
    try:
        return _LineBuilder(text).load()
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
    """What the event builder made of `text` (GIVEN_UP if it gave up), after checking it, and
    the line builder's, against the node builder."""
    lines, events, nodes = _by_lines(text), _by_events(text), _by_nodes(text)
    for built in (lines, events):
        if built is not GIVEN_UP:
            assert not isinstance(nodes, YamlProblem), f"the node builder refuses: {nodes.message}"
            _same(built, nodes)
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


def test_a_generated_large_policy_is_read_by_lines():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "perf"))
    from perf_policies import large_policy_document

    text = yaml.safe_dump(large_policy_document(300), sort_keys=False)
    assert _by_lines(text) is not GIVEN_UP
    _check(text)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_the_examples_as_dumped_are_read_by_lines(path):
    from microseg.policyfile import dump_policy, load_policy

    text = dump_policy(load_policy(path))
    assert _by_lines(text) is not GIVEN_UP
    _check(text)


# Lines as they may be written: every indentation, `- `, key and value the line builder takes,
# and some it must not (a comment after a value, a tab, a trailing space, a block scalar...).
_INDENTS = st.sampled_from([0, 0, 1, 2, 2, 3, 4, 4, 6])
_KEYS = st.sampled_from(["a", "b", "name", "prefixes", "yes", "null", "On", "x_1", "_"])
_VALUES = st.sampled_from(
    [
        "v",
        "10.0.0.0/8",
        "2001:db8::/32",
        "1",
        "012",
        "1_000",
        "0x1F",
        "1:30",
        "1.5",
        ".inf",
        ".nan",
        "~",
        "2001-12-14",
        "yes",
        "a b",
        "a:b",
        "a: b",
        "a #b",
        "a#b",
        "...",
        "'q'",
        "'it''s'",
        "''",
        '"d"',
        '"a\\tb"',
        "|",
        ">",
        "[a, b]",
        "{a: 1}",
        "&x v",
        "*x",
        "!!str 1",
        "v # c",
        "v ",
        "\tv",
        "9" * 4400,
        "<<",
        "=",
        "-1",
        "- v",
        "---",
    ]
)
# Mostly values the line builder takes, so that most documents are read by it.
_TAKEN_VALUES = st.sampled_from(
    ["v", "10.0.0.0/8", "2001:db8::/32", "1", "012", "1:30", ".nan", "~", "yes", "a b", "'q'"]
)
_SOME_VALUES = st.one_of(_TAKEN_VALUES, _TAKEN_VALUES, _TAKEN_VALUES, _TAKEN_VALUES, _VALUES)
_LINES = st.one_of(
    st.builds(
        lambda indent, dash, key, value: (
            " " * indent
            + ("- " if dash else "")
            + (f"{key}:" if key is not None else "")
            + (" " if key is not None and value is not None else "")
            + (value or "")
        ),
        _INDENTS,
        st.booleans(),
        st.none() | _KEYS,
        st.none() | _VALUES,
    ),
    st.sampled_from(["", "   ", "# c", "  # c", "---", "...", "-", "- ", "\t"]),
)


def _block(draw: Any, column: int, depth: int) -> list[str]:
    """The lines of a block mapping whose keys are at `column`."""
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        key = draw(_KEYS)
        kind = draw(st.sampled_from(["scalar", "scalar", "sequence", "mapping"]))
        if kind == "scalar" or depth > 3:
            lines.append(f"{' ' * column}{key}: {draw(_SOME_VALUES)}")
        elif kind == "mapping":
            inner = column + draw(st.sampled_from([1, 2, 4]))
            lines += [f"{' ' * column}{key}:", *_block(draw, inner, depth + 1)]
        else:
            lines.append(f"{' ' * column}{key}:")
            lines += _sequence(draw, column + draw(st.sampled_from([0, 0, 1, 2])), depth + 1)
    return lines


def _sequence(draw: Any, dash: int, depth: int) -> list[str]:
    """The lines of a block sequence whose `- `s are at column `dash`."""
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            lines.append(f"{' ' * dash}- {draw(_SOME_VALUES)}")
        else:
            mapping = _block(draw, dash + 2, depth)
            lines += [f"{' ' * dash}- {mapping[0].lstrip(' ')}", *mapping[1:]]
    return lines


@st.composite
def _block_documents(draw: Any) -> str:
    """A block-style document with every indentation YAML allows, then perhaps one line
    replaced, re-indented or preceded by a comment or a blank line."""
    lines = _block(draw, 0, 0)
    change = draw(st.sampled_from(["none", "none", "replace", "indent", "insert"]))
    index = draw(st.integers(0, len(lines) - 1))
    if change == "replace":
        lines[index] = draw(_LINES)
    elif change == "indent":
        lines[index] = " " * draw(st.integers(0, 3)) + lines[index].lstrip(" ")
    elif change == "insert":
        lines.insert(index, draw(st.sampled_from(["", "  ", "# c", "    # c", "  x", "  - x"])))
    return "\n".join(lines) + draw(st.sampled_from(["\n", ""]))


@settings(
    max_examples=1500,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.one_of(_block_documents(), st.lists(_LINES, min_size=1, max_size=6).map("\n".join)))
def test_the_line_builder_agrees_with_the_node_builder_on_any_lines(text):
    _check(text)


def test_no_implicit_type_takes_a_slash():
    """The shortcut `/` in a plain scalar -> a string: no implicit type's pattern takes a `/`
    (no `/` in it, no `.` wildcard, no negated class or class escape that would take one)."""
    for resolvers in _RESOLVER.yaml_implicit_resolvers.values():
        for _tag, regexp in resolvers:
            pattern = regexp.pattern.replace("\\.", "")
            assert not any(part in pattern for part in ("/", ".", "[^", "\\S", "\\W", "\\D"))
    for text in ("1/2", "2001-12-14/1", "0x1F/8", ".inf/", "1:30/4", "yes/no", "~/"):
        assert _RESOLVER.resolve(yaml.ScalarNode, text, (True, False)) == _STR_TAG
