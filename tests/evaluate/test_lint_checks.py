"""One table per lint check: a small policy in, the check's findings out (ANTA-style catalog
tests). Each row runs only its own check (`lint(..., select=[check])`)."""

from __future__ import annotations

import json

import pytest

from microseg.evaluate.lint import CHECKS, lint
from microseg.model import MicrosegError, PolicySet
from support import EXAMPLES

GROUPS = [
    {"name": "web", "prefixes": ["10.0.1.0/24"]},
    {"name": "web01", "prefixes": ["10.0.1.1/32"]},
    {"name": "db", "prefixes": ["10.0.2.0/24"]},
]
SERVICES = [{"name": "ssh", "protocol": "tcp", "destination_ports": [22]}]


def _policy(rules, groups=GROUPS, default_action="forward", **extra) -> PolicySet:
    return PolicySet.model_validate(
        {
            "devices": [{"name": "leaf1"}],
            "domains": [{"name": "dc", "devices": ["leaf1"]}],
            "groups": groups,
            "services": SERVICES,
            "rules": rules,
            "policies": [
                {
                    "name": "p",
                    "id": 1,
                    "domain": "dc",
                    "rules": [r["name"] for r in rules],
                    "default_action": default_action,
                }
            ],
            **extra,
        }
    )


def _rule(name, sources="any", destinations="any", services="any", **extra) -> dict:
    return {
        "name": name,
        "sources": sources,
        "destinations": destinations,
        "services": services,
        "direction": "unidirectional",
        **extra,
    }


def _summary(policy_set: PolicySet, check: str) -> list[tuple]:
    """(subject, match or prefix, hint actions) per finding of one check."""
    return [
        (
            f["subject"],
            f.get("match") or f.get("prefix"),
            tuple(h["action"] for h in f.get("hints", ())),
        )
        for f in lint(policy_set, select=[check])["findings"]
    ]


TABLE = [
    # -- redundant ---------------------------------------------------------------------------
    pytest.param(
        "redundant",
        [
            _rule("web01-ssh", ["web01"], ["db"], ["ssh"]),
            _rule("web-ssh", ["web"], ["db"], ["ssh"]),
            _rule("deny-all", action="drop"),
        ],
        [("rule 'web01-ssh'", None, ("remove",))],
        id="an-allow-inside-a-later-allow-before-the-drop",
    ),
    pytest.param(
        "redundant",
        [_rule("web-ssh", ["web"], ["db"], ["ssh"])],
        [],
        id="an-allow-that-only-repeats-the-forward-default-is-how-policies-grow",
    ),
    pytest.param(
        "redundant",
        [_rule("drop-web01", ["web01"], action="drop"), _rule("drop-web", ["web"], action="drop")],
        [("rule 'drop-web01'", None, ("remove",))],
        id="a-drop-inside-a-later-drop",
    ),
    pytest.param(
        "redundant",
        [
            _rule("drop-web01", ["web01"], action="drop"),
            _rule("allow-web01-ssh", ["web01"], ["db"], ["ssh"]),
            _rule("drop-web", ["web"], action="drop"),
        ],
        [],
        id="a-drop-that-shields-an-allow-from-a-later-drop-is-not",
    ),
    # -- shadowed ----------------------------------------------------------------------------
    pytest.param(
        "shadowed",
        [_rule("drop-1", ["web"], action="drop"), _rule("drop-2", ["web"], action="drop")],
        [("rule 'drop-2'", "drop-2", ("remove",))],
        id="of-two-identical-drops-only-the-second-goes",
    ),
    pytest.param(
        "shadowed",
        [
            _rule("db-silent", ["db"], action="drop"),
            _rule("web-db-drop", ["web"], ["db"], action="drop", direction="bidirectional"),
        ],
        [("rule 'web-db-drop'", "web-db-drop-reverse", ("unidirectional",))],
        id="a-drops-reverse-is-shadowed-but-the-rule-stays",
    ),
    # -- never-matches -----------------------------------------------------------------------
    pytest.param(
        "never-matches",
        [_rule("from-nothing", ["empty"], action="drop")],
        [("rule 'from-nothing'", "from-nothing", ("remove",))],
        id="a-group-emptied-by-its-except-prefix",
    ),
    # -- nested-prefix -----------------------------------------------------------------------
    pytest.param(
        "nested-prefix",
        [_rule("r", ["nested"])],
        [
            ("group 'nested'", "10.0.1.0/25", ("remove-prefix",)),
            ("group 'nested'", "10.0.1.9/32", ("remove-prefix",)),
            ("group 'nested'", "fd00:1::/64", ("remove-prefix",)),
        ],
        id="prefixes-inside-another-of-the-same-group-and-family",
    ),
    pytest.param(
        "nested-prefix",
        [_rule("r", ["twice"])],
        [
            ("group 'twice'", "10.0.3.8/30", ("remove-prefix",)),  # `except-prefix ...` sorts first
            ("group 'twice'", "10.0.3.0/24", ("remove-prefix",)),
        ],
        id="a-repeated-prefix-and-an-except-prefix-inside-another",
    ),
]
EXTRA_GROUPS = [
    {"name": "empty", "prefixes": ["10.0.9.0/31"], "except_prefixes": ["10.0.9.0/31"]},
    {
        "name": "nested",
        "prefixes": ["10.0.1.0/24", "10.0.1.0/25", "10.0.1.9/32", "fd00::/16", "fd00:1::/64"],
    },
    {
        "name": "twice",
        "prefixes": ["10.0.3.0/24", "10.0.3.0/24"],
        "except_prefixes": ["10.0.3.8/29", "10.0.3.8/30"],
    },
]


# The policy's default action decides what redundancy is measured against.
DEFAULT_TABLE = [
    pytest.param(
        "drop",
        "redundant",
        [_rule("web-ssh", ["web"], ["db"], ["ssh"]), _rule("deny-all", action="drop")],
        [("rule 'deny-all'", None, ("remove",))],
        id="a-trailing-deny-all-in-a-default-drop-policy-is-redundant",
    ),
    pytest.param(
        "forward",
        "redundant",
        [_rule("web-ssh", ["web"], ["db"], ["ssh"]), _rule("deny-all", action="drop")],
        [],
        id="in-a-default-forward-policy-it-is-what-drops",
    ),
    pytest.param(
        "drop",
        "redundant",
        [_rule("web-ssh", ["web"], ["db"], ["ssh"])],
        [],
        id="an-allow-in-a-default-drop-policy-is-what-allows",
    ),
    pytest.param(
        "drop",
        "shadowed",
        [
            _rule("db-silent", ["db"], action="drop"),
            _rule("web-db-drop", ["web"], ["db"], action="drop", direction="bidirectional"),
        ],
        # Its reverse is dead: unidirectional fixes that; the default drops what its
        # forward match drops, so it can also go.
        [("rule 'web-db-drop'", "web-db-drop-reverse", ("unidirectional", "remove"))],
        id="under-a-default-drop-that-drop-can-go",
    ),
    pytest.param(
        "drop",
        "redundant",
        [
            _rule("drop-web", ["web"], action="drop"),
            _rule("web01-ssh", ["web01"], ["db"], ["ssh"]),
        ],
        [],
        id="a-drop-that-shields-an-allow-under-a-default-drop-is-not",
    ),
]


@pytest.mark.parametrize(("default_action", "check", "rules", "expected"), DEFAULT_TABLE)
def test_check_table_with_default_action(default_action, check, rules, expected):
    assert _summary(_policy(rules, default_action=default_action), check) == expected


@pytest.mark.parametrize(("check", "rules", "expected"), TABLE)
def test_check_table(check, rules, expected):
    # Only the groups the rules name, so that nested-prefix rows see their own groups.
    named = {g for r in rules for side in ("sources", "destinations") for g in r[side]}
    groups = [g for g in GROUPS + EXTRA_GROUPS if g["name"] in named or g in GROUPS]
    assert _summary(_policy(rules, groups=groups), check) == expected


def test_every_check_has_a_table_row_or_its_own_test():
    tabled = {row.values[0] for row in TABLE}
    own_tests = {"bypass", "unused", "hardware"}  # test_lint.py, test_check_bypass.py
    assert set(CHECKS) == tabled | own_tests


def test_nested_prefix_finding_names_the_group_and_both_prefixes():
    [finding] = lint(
        _policy(
            [_rule("r", ["g"])], groups=[{"name": "g", "prefixes": ["10.1.0.0/16", "10.1.2.0/24"]}]
        ),
        select=["nested-prefix"],
    )["findings"]
    assert (
        finding["message"]
        == "prefix 10.1.2.0/24 of group g is inside prefix 10.1.0.0/16 of the same group"
    )
    assert (finding["group"], finding["prefix"], finding["within"]) == (
        "g",
        "10.1.2.0/24",
        "10.1.0.0/16",
    )
    assert (
        finding["fix"]
        == "delete prefix 10.1.2.0/24 from group g: the group's addresses do not change"
    )


def test_select_and_ignore_pick_checks_in_report_order():
    policy_set = _policy(
        [_rule("drop-1", ["web"], action="drop"), _rule("drop-2", ["web"], action="drop")]
    )
    kinds = {f["kind"] for f in lint(policy_set)["findings"]}
    assert kinds == {"shadowed", "unused"}  # groups web01 and db, service ssh are unused
    assert {f["kind"] for f in lint(policy_set, ignore=["unused"])["findings"]} == {"shadowed"}
    # Ignoring every selected check leaves nothing to run: "no findings" would read as clean.
    with pytest.raises(MicrosegError, match="--ignore unused leaves no check of unused to run"):
        lint(policy_set, select=["unused"], ignore=["unused"])
    assert lint(policy_set, select=["shadowed"])["hardware"] == []  # estimate only with its check
    with pytest.raises(MicrosegError, match=r"unknown lint check.*bogus.*checks: never-matches"):
        lint(policy_set, select=["bogus"])


def test_lint_cli_select_and_ignore(run_cli):
    home_lab = str(EXAMPLES / "home-lab.yaml")
    ignored = run_cli("lint", home_lab, "--ignore", "unused")
    assert ignored.exit_code == 0, ignored.stdout
    assert "no findings" in ignored.stdout
    selected = run_cli("lint", home_lab, "--select", "unused,hardware", "--json")
    assert {f["kind"] for f in json.loads(selected.stdout)["findings"]} == {"unused"}
    bad = run_cli("lint", home_lab, "--select", "shadowed,nope")
    assert bad.exit_code == 1
    assert "unknown lint check(s): nope" in bad.stderr


@pytest.mark.parametrize("given", ["", ",", " , "])
def test_lint_select_of_no_check_is_refused_not_read_as_every_check(run_cli, given):
    # `--select "$CHECKS"` with CHECKS empty ran every check: asked for none, given all.
    refused = run_cli("lint", str(EXAMPLES / "home-lab.yaml"), "--select", given)
    assert refused.exit_code == 1 and refused.stdout == ""
    assert f"--select {given!r}: names no check" in refused.stderr
