"""Lint's advice is safe: every edit it hints, applied to the policy, is checked by brute force
over every packet class of the tiny space of `test_lint_exact` (both VXLAN decap states).

* the `remove` (rule), `unidirectional` and `remove-prefix` hints change no packet's verdict
  (action, redirect next-hops, mirror session) applied all together, each alone, or a
  random half of them;
* no hint, applied alone, widens access for any packet (drop < redirect < forward);
* when a finding says removing a rule "would change verdicts", removing it does.
"""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.evaluate.random_policies import replaced
from tests.evaluate.test_lint_exact import BATCH, FALSE_REDUNDANT, FALSE_SHADOW, policy_sets

from microseg.compile.resolve import compile_all
from microseg.evaluate import CompiledDevice
from microseg.evaluate.lint import lint
from microseg.model import PolicySet

DECAP_STATES = (("allow-all", "no-vxlan-decap"), ("allow-all", "vxlan-decap-only"))
ACCESS_RANK = {"drop": 0, "redirect": 1, "forward": 2}
SAFE_TOGETHER = ("remove", "unidirectional", "remove-prefix")


_EFFECT_CODES: dict[tuple, int] = {}


def _code(effect: tuple) -> int:
    return _EFFECT_CODES.setdefault(effect, len(_EFFECT_CODES))


def verdicts(policy_set: PolicySet) -> np.ndarray:
    """Every enumerated packet's verdict, plain and VXLAN-decapsulated, as a code of the
    first match's (action, next-hops, mirror session), or of the implicit default match's
    (the policy's default action). Codes are the same across calls."""
    intent = compile_all(policy_set)["sw1"]
    [policy] = intent.policies
    result = []
    for applies in DECAP_STATES:
        matches = tuple(m for m in policy.matches if m.decap_type in applies)
        state = replace(intent, policies=(replace(policy, matches=matches),))
        decided = CompiledDevice(state).evaluate(BATCH).match_index
        codes = [_code((m.action, m.redirect_next_hops, m.mirror_session)) for m in matches]
        default = _code((policy.default_action, (), None))
        result.append(np.array([*codes, default])[decided])  # index -1: the default
    return np.concatenate(result)


def _access(codes: np.ndarray) -> np.ndarray:
    rank = {code: ACCESS_RANK[effect[0]] for effect, code in _EFFECT_CODES.items()}
    return np.array([rank[c] for c in range(len(rank))])[codes]


def apply(policy_set: PolicySet, hints: list[dict]) -> PolicySet:
    """The policy set with the hinted edits made, as a user would make them."""
    [policy] = policy_set.policies
    order = list(policy.rules)
    rules = {r.name: r for r in policy_set.rules}
    groups = {g.name: g for g in policy_set.groups}
    for hint in hints:
        if hint["action"] == "remove":
            order.remove(hint["rule"])
        elif hint["action"] == "unidirectional":
            rule = rules[hint["rule"]]
            rules[rule.name] = rule.model_copy(update={"direction": "unidirectional"})
        elif hint["action"] == "move":
            order.remove(hint["rule"])
            order.insert(order.index(hint["above"]), hint["rule"])
        elif hint["action"] == "remove-prefix":
            group = groups[hint["group"]]
            prefixes = list(getattr(group, hint["field"]))
            prefixes.remove(next(p for p in prefixes if str(p) == hint["prefix"]))
            groups[group.name] = group.model_copy(update={hint["field"]: tuple(prefixes)})
        else:
            raise AssertionError(f"unknown hint {hint}")
    return replaced(
        policy_set,
        rules=tuple(rules.values()),
        groups=tuple(groups.values()),
        policies=(policy.model_copy(update={"rules": tuple(order)}),),
    )


def _widened(before: np.ndarray, after: np.ndarray) -> list[int]:
    return np.flatnonzero(_access(after) > _access(before)).tolist()


def _changed(before: np.ndarray, after: np.ndarray) -> bool:
    return bool((before != after).any())


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy_sets(effects=True, max_rules=14), st.randoms(use_true_random=False))
@example(FALSE_SHADOW, random.Random(0))
@example(FALSE_REDUNDANT, random.Random(0))
def test_every_hint_is_safe_by_brute_force(policy_set, rng):
    findings = lint(policy_set)["findings"]
    # Several findings may hint the same edit (each dead match of one rule): made once.
    unique = {tuple(sorted(h.items())): h for f in findings for h in f.get("hints", ())}
    hints = list(unique.values())
    before = verdicts(policy_set)

    together = [h for h in hints if h["action"] in SAFE_TOGETHER]
    subsets = [together, rng.sample(together, len(together) // 2)] if together else []
    subsets += [[hint] for hint in together]
    for subset in subsets:
        after = verdicts(apply(policy_set, subset))
        assert not _changed(before, after), f"applying {subset} changed a verdict"

    for hint in hints:
        assert not _widened(before, verdicts(apply(policy_set, [hint]))), hint

    for finding in findings:
        rule = finding.get("rule")
        said = f"do not remove rule {rule}: that would change verdicts"
        if rule and said in finding["fix"]:
            removal = {"action": "remove", "rule": rule}
            assert _changed(before, verdicts(apply(policy_set, [removal]))), finding
