"""Near-valid policy documents: a located error or a valid policy, never a crash.

Hypothesis starts from the shipped example policies (valid documents) and changes them the
way people and tools get them wrong: a value of the wrong type or out of range (booleans,
huge and negative integers, floats, nulls, nested lists), control characters and unicode in
names, missing and unknown keys, objects given twice, anchors, aliases and merge keys, tabs,
truncated text. Each document is loaded the way `microseg validate` loads it; it must give a
PolicySet or a PolicyError whose every problem names the file (and, when the YAML parsed, the
line). The normal run tries a fixed number of documents; MICROSEG_FUZZ_LONG=1 (or `make fuzz`) tries more.
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from microseg.compile import compile_all
from microseg.model import MicrosegError, PolicyError, PolicySet
from microseg.policyfile import load_policy_text
from support import EXAMPLES, FUZZ_LONG

DOCUMENTS = 3000 if FUZZ_LONG else 250
FILENAME = "fuzz.yaml"
# Integers past Python's 4,300-digit str() limit are written into the YAML text directly.
HUGE_INTEGER = "HUGE_INTEGER"

SEEDS = {
    path.name: yaml.safe_load(path.read_text())
    for path in sorted(EXAMPLES.glob("*.yaml"))
    if isinstance(yaml.safe_load(path.read_text()), dict)
}

hostile_scalars = st.one_of(
    st.booleans(),
    st.none(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 65535, 65536, 2**31, 2**63, 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            HUGE_INTEGER,
            "",
            " ",
            "any",
            "ALL",
            "\x00",
            "\x1b[31m",
            "a\u2028b",
            "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
            "fe80::1%eth0/128",
            "10.0.0.1/24",
            "10.0.0.0/33",
            "::/0",
            "0.0.0.0/0",
            "1-65535",
            "65535-1",
            "0-0",
            "domain",
            "tcp",
            "icmp",
            "256",
            "x" * 300,
            "a+b",
            "a_b",
            "rule-reverse",
            "ipv4-all-default",
        ]
    ),
)
hostile_values = st.recursive(
    hostile_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def _paths(node, prefix=()):
    """Every place in the document a value sits."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _parent_and_key(document, path):
    node = document
    for part in path[:-1]:
        node = node[part]
    return node, path[-1]


@st.composite
def near_valid_documents(draw) -> str:
    document = copy.deepcopy(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = [p for p in _paths(document) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent_and_key(document, path)
        change = draw(st.sampled_from(["replace", "delete", "unknown key", "duplicate"]))
        if change == "replace":
            parent[key] = draw(hostile_values)
        elif change == "delete":
            del parent[key]
        elif change == "unknown key" and isinstance(parent[key], dict):
            parent[key][draw(st.sampled_from(["colour", "Name", "", "name "]))] = 1
        elif change == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=10_000)
    text = text.replace(HUGE_INTEGER, "9" * 4400)
    return draw(_text_mutation(text))


@st.composite
def _text_mutation(draw, text: str) -> str:
    kind = draw(
        st.sampled_from(["none", "none", "truncate", "tab", "anchor", "merge", "self merge"])
    )
    lines = text.splitlines(keepends=True)
    if kind == "truncate":
        return text[: draw(st.integers(min_value=0, max_value=len(text)))]
    if kind == "tab" and lines:
        index = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        lines[index] = "\t" + lines[index]
    elif kind == "anchor":
        lines.insert(0, "x-defaults: &d {protocol: tcp, destination_ports: [80]}\n")
    elif kind == "merge":
        lines.insert(
            0, "services:\n  - &s {name: s0, protocol: tcp}\n  - {<<: [*s, *s], name: s1}\n"
        )
    elif kind == "self merge":
        lines.insert(0, "categories:\n  - &c {<<: *c, name: c}\n")
    return "".join(lines)


def _check_located(error: PolicyError, text: str) -> None:
    for problem in error.problems:
        assert problem.file == FILENAME, f"problem without its file: {problem}"
        parsed = True
        try:
            yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError:
            parsed = False
        if parsed and not problem.message.startswith(
            ("the YAML aliases expand", "unknown section")
        ):
            assert problem.line is not None or problem.path == (), (
                f"problem without a line: {problem}"
            )


@settings(
    max_examples=DOCUMENTS,
    deadline=None,
    derandomize=not FUZZ_LONG,
    # A failure prints its document; shrinking multi-kilobyte documents takes minutes.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(near_valid_documents())
def test_a_near_valid_policy_loads_or_fails_located(text):
    try:
        policy_set = load_policy_text(text, FILENAME)
    except PolicyError as error:
        _check_located(error, text)
        return
    assert isinstance(policy_set, PolicySet)
    # What loads must also compile or be refused as a user error (the CLI's exit 1).
    with contextlib.suppress(MicrosegError):
        compile_all(policy_set)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_the_seeds_are_valid_policies(name):
    load_policy_text((EXAMPLES / name).read_text(), name)
